/* Trace files: writer, hardened reader (docs/trace-format.md). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <capstone/capstone.h>
#include <unicorn/unicorn.h>

#include <ptemu/arch.h>
#include <ptemu/check.h>
#include <ptemu/inject.h>
#include <ptemu/sched.h>
#include <ptemu/tlb.h>
#include <ptemu/trace.h>

#ifndef PTEMU_VERSION_STRING
#define PTEMU_VERSION_STRING "0.1.0"
#endif

/* Sizes on disk: everything little-endian, no padding. The header is its fixed part, then
 * the workload name or image path (as long as it is, without a NUL). */
#define HEADER_FIXED_BYTES (8 + 4 + 4 + 16 + 4 + 4 + 8 + 16 + 8 + 4 + 4 + 8 + 4 + 4 + 4 + 8 + 8 + 4)
#define HEADER_MAX_BYTES (HEADER_FIXED_BYTES + PTEMU_TRACE_MAX_WORKLOAD - 1)
#define EVENT_BYTES 24
#define TRAILER_BYTES (8 + 8 + 8 + 4 + 8 + 8)
#define FNV_BASIS 0xcbf29ce484222325ull

static uint64_t fnv(uint64_t h, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

enum { CONFIG_RECLAIM = 1u << 16, CONFIG_KHUGEPAGED = 1u << 17, CONFIG_FAIL_FAST = 1u << 18 };
/* Bits 20-24: log2 of --tlb-entries, 0 for the model's size. */
enum { CONFIG_TLB_SHIFT = 20, CONFIG_TLB_MASK = 0x1f };

static unsigned config_tlb_shift(const struct ptemu_trace_header *h)
{
	return h->inject >> CONFIG_TLB_SHIFT & CONFIG_TLB_MASK;
}

uint32_t ptemu_trace_pack_config(const struct ptemu_run_config *cfg)
{
	return (uint32_t)cfg->inject | (uint32_t)cfg->protocol << 8 |
	       (cfg->features.reclaim_empty_tables ? CONFIG_RECLAIM : 0) |
	       (cfg->khugepaged ? CONFIG_KHUGEPAGED : 0) |
	       (cfg->check_mode == PTEMU_CHECK_FAIL_FAST ? CONFIG_FAIL_FAST : 0) |
	       (cfg->tlb_entries ? (uint32_t)__builtin_ctz(cfg->tlb_entries) << CONFIG_TLB_SHIFT : 0);
}

enum ptemu_injection ptemu_trace_injection(const struct ptemu_trace_header *h)
{
	return (enum ptemu_injection)(h->inject & 0xff);
}

void ptemu_trace_apply_config(const struct ptemu_trace_header *h, struct ptemu_run_config *cfg)
{
	cfg->inject = ptemu_trace_injection(h);
	cfg->protocol = (enum ptemu_protocol)(h->inject >> 8 & 0xf);
	cfg->features.reclaim_empty_tables = h->inject & CONFIG_RECLAIM;
	cfg->khugepaged = h->inject & CONFIG_KHUGEPAGED;
	cfg->check_mode = h->inject & CONFIG_FAIL_FAST ? PTEMU_CHECK_FAIL_FAST : PTEMU_CHECK_CONTINUE;
	cfg->tlb_entries = config_tlb_shift(h) ? 1u << config_tlb_shift(h) : 0;
}

uint64_t ptemu_build_id(void)
{
	static const char id[] = PTEMU_VERSION_STRING " " __DATE__ " " __TIME__;

	return fnv(FNV_BASIS, (const uint8_t *)id, sizeof(id) - 1);
}

void ptemu_trace_header_init(struct ptemu_trace_header *h)
{
	unsigned ucmaj, ucmin;
	int csmaj, csmin;

	memset(h, 0, sizeof(*h));
	h->format_version = PTEMU_TRACE_VERSION;
	snprintf(h->ptemu_version, sizeof(h->ptemu_version), "%s", PTEMU_VERSION_STRING);
	uc_version(&ucmaj, &ucmin);
	cs_version(&csmaj, &csmin);
	h->unicorn_version = ucmaj << 8 | ucmin;
	h->capstone_version = (uint32_t)csmaj << 8 | (uint32_t)csmin;
	h->build_id = ptemu_build_id();
}

void ptemu_trace_append(void *trace, uint64_t kind, uint64_t a, uint64_t b)
{
	struct ptemu_trace *t = trace;

	if (t->nevents == t->cap) {
		size_t cap = t->cap ? 2 * t->cap : 4096;
		struct ptemu_trace_event *e = realloc(t->events, cap * sizeof(*e));

		if (!e)
			return;	/* the write notices the shortfall through the count */
		t->events = e;
		t->cap = cap;
	}
	t->events[t->nevents++] = (struct ptemu_trace_event){ kind, a, b };
}

void ptemu_trace_free(struct ptemu_trace *t)
{
	free(t->events);
	t->events = NULL;
	t->nevents = t->cap = 0;
}

const char *ptemu_trace_event_name(uint64_t kind)
{
	static const char *const checker[] = { "violation", "table", "map", "unmap", "read", "write" };

	switch (kind & 0xff) {
	case PTEMU_EV_SWITCH:
		return "switch";
	case PTEMU_EV_CALL_RCU:
		return "call_rcu";
	case PTEMU_EV_GP_END:
		return "grace-period";
	case PTEMU_EV_FAULT:
		return "fault";
	case PTEMU_EV_INSN:
		return "insn";
	case PTEMU_EV_SYSCALL:
		return "syscall";
	case PTEMU_EV_SHOOTDOWN:
		return "shootdown";
	default:
		return (kind & 0xff) >= 16 && (kind & 0xff) < 22 ? checker[(kind & 0xff) - 16] : "?";
	}
}

/* ---- byte-level encoding ---------------------------------------------------------------- */

struct out {
	uint8_t *p;
	size_t n;
};

static void put(struct out *o, uint64_t v, unsigned bytes)
{
	for (unsigned i = 0; i < bytes; i++)
		o->p[o->n++] = (uint8_t)(v >> (8 * i));
}

static void put_str(struct out *o, const char *s, unsigned bytes)
{
	size_t len = strnlen(s, bytes - 1);

	memcpy(o->p + o->n, s, len);
	memset(o->p + o->n + len, 0, bytes - len);
	o->n += bytes;
}

struct in {
	const uint8_t *p;
	size_t at;
};

static uint64_t get(struct in *i, unsigned bytes)
{
	uint64_t v = 0;

	for (unsigned k = 0; k < bytes; k++)
		v |= (uint64_t)i->p[i->at + k] << (8 * k);
	i->at += bytes;
	return v;
}

/* A fixed field must hold a NUL-terminated string. */
static int get_str(struct in *i, char *dst, unsigned bytes)
{
	if (!memchr(i->p + i->at, 0, bytes))
		return -1;
	memcpy(dst, i->p + i->at, bytes);
	i->at += bytes;
	return 0;
}

#ifdef PTEMU_TRACE_FUZZ
/* The fuzz target's build (tests/fuzz): a mutated file almost never carries the right
 * checksum, and every check after it would go unfuzzed. */
#define CHECKSUM_CHECKED 0
#else
#define CHECKSUM_CHECKED 1
#endif

int ptemu_trace_write(const char *path, const struct ptemu_trace *t, char *err, size_t errlen)
{
	const struct ptemu_trace_header *h = &t->h;
	size_t wlen = strnlen(h->workload, sizeof(h->workload) - 1);
	size_t hsize = HEADER_FIXED_BYTES + wlen;
	size_t size = hsize + t->nevents * EVENT_BYTES + TRAILER_BYTES;
	struct out o = { malloc(size), 0 };
	FILE *f;

	if (!o.p) {
		snprintf(err, errlen, "%s: out of host memory for %zu events", path, t->nevents);
		return -1;
	}
	memcpy(o.p, PTEMU_TRACE_MAGIC, 8);
	o.n = 8;
	put(&o, h->format_version, 4);
	put(&o, hsize, 4);
	put_str(&o, h->ptemu_version, 16);
	put(&o, h->unicorn_version, 4);
	put(&o, h->capstone_version, 4);
	put(&o, h->build_id, 8);
	put_str(&o, h->arch, 16);
	put(&o, h->image_hash, 8);
	put(&o, h->procs, 4);
	put(&o, h->vcpus, 4);
	put(&o, h->seed, 8);
	put(&o, h->inject, 4);
	put(&o, h->strategy, 4);
	put(&o, h->pct_depth, 4);
	put(&o, h->max_steps, 8);
	put(&o, h->phys_bytes, 8);
	put(&o, wlen, 4);
	memcpy(o.p + o.n, h->workload, wlen);
	o.n += wlen;
	for (size_t k = 0; k < t->nevents; k++) {
		put(&o, t->events[k].kind, 8);
		put(&o, t->events[k].a, 8);
		put(&o, t->events[k].b, 8);
	}
	put(&o, t->digest, 8);
	put(&o, t->steps, 8);
	put(&o, t->violations, 8);
	put(&o, t->first_kind, 4);
	put(&o, t->first_event, 8);
	put(&o, fnv(FNV_BASIS, o.p, o.n), 8);
	f = fopen(path, "wb");
	if (!f || fwrite(o.p, 1, o.n, f) != o.n || fclose(f)) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		if (f)
			fclose(f);
		free(o.p);
		return -1;
	}
	free(o.p);
	return 0;
}

__attribute__((format(printf, 3, 4)))
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -1;
}

/* Every configuration field against what the CLI accepts, so that a replay is a run the
 * CLI could have started (and no arithmetic on them can overflow). */
static int check_config(const struct ptemu_trace_header *h, char *err, size_t errlen)
{
	const uint64_t mib = 1ull << 20;

	if (!ptemu_arch_find(h->arch))
		return fail(err, errlen, "corrupted trace: unknown model '%s'", h->arch);
	if (!h->procs || h->procs > 16 || !h->vcpus || h->vcpus > 16)
		return fail(err, errlen, "corrupted trace: %u processes of %u vCPUs (each must be in 1..16)",
			    h->procs, h->vcpus);
	unsigned tlb_shift = config_tlb_shift(h);

	if (ptemu_trace_injection(h) >= INJECT_COUNT || (h->inject >> 8 & 0xf) > PTEMU_PROTOCOL_LEGACY ||
	    (h->inject & ~(0x7ffffu | (uint32_t)CONFIG_TLB_MASK << CONFIG_TLB_SHIFT)) || (h->inject & 0xf000u) ||
	    (tlb_shift && ((1u << tlb_shift) < PTEMU_TLB_MIN_ENTRIES || (1u << tlb_shift) > PTEMU_TLB_MAX_ENTRIES)))
		return fail(err, errlen, "corrupted trace: configuration word 0x%x out of range", h->inject);
	if (h->strategy > PTEMU_SCHED_PCT || !h->pct_depth || h->pct_depth > 16)
		return fail(err, errlen, "corrupted trace: strategy %u or PCT depth %u out of range",
			    h->strategy, h->pct_depth);
	if (!h->max_steps || h->max_steps > PTEMU_TRACE_MAX_STEPS)
		return fail(err, errlen, "corrupted trace: run length %llu steps not in 1..%llu",
			    (unsigned long long)h->max_steps, PTEMU_TRACE_MAX_STEPS);
	if (h->phys_bytes % mib || !h->phys_bytes || h->phys_bytes / mib > PTEMU_TRACE_MAX_MEMORY_MIB)
		return fail(err, errlen, "corrupted trace: simulated memory of %llu bytes is not 1..%llu MiB",
			    (unsigned long long)h->phys_bytes, PTEMU_TRACE_MAX_MEMORY_MIB);
	return 0;
}

/* Decodes the header from p[0, n), the start of a file of file_size bytes: magic and
 * version first, then the sizes against the file's, then every field; so a caller can
 * refuse a file from its first bytes. *hsize: the header's size. */
static int parse_header(const uint8_t *p, size_t n, uint64_t file_size, struct ptemu_trace_header *h,
			size_t *hsize, char *err, size_t errlen)
{
	struct in i = { p, 8 };
	uint64_t wlen;

	memset(h, 0, sizeof(*h));
	if (n < 8 || memcmp(p, PTEMU_TRACE_MAGIC, 8))
		return fail(err, errlen, "not a ptemu trace (bad magic)");
	if (n < 16)
		return fail(err, errlen, "truncated trace: %zu bytes", n);
	h->format_version = (uint32_t)get(&i, 4);
	if (h->format_version != PTEMU_TRACE_VERSION)
		return fail(err, errlen, "trace format version %u%s; this ptemu reads version %u only",
			    h->format_version,
			    h->format_version < PTEMU_TRACE_VERSION ? " (an older ptemu's: record the run again)" : "",
			    PTEMU_TRACE_VERSION);
	*hsize = (size_t)get(&i, 4);
	if (*hsize <= HEADER_FIXED_BYTES || *hsize > HEADER_MAX_BYTES)
		return fail(err, errlen, "corrupted trace: header size %zu not in %d..%d", *hsize,
			    HEADER_FIXED_BYTES + 1, HEADER_MAX_BYTES);
	if (file_size < *hsize + TRAILER_BYTES || n < *hsize)
		return fail(err, errlen, "truncated trace: %llu bytes, this one has at least %zu",
			    (unsigned long long)file_size, *hsize + TRAILER_BYTES);
	if ((file_size - *hsize - TRAILER_BYTES) % EVENT_BYTES)
		return fail(err, errlen, "truncated or corrupted trace: %llu bytes is not a whole number of events",
			    (unsigned long long)file_size);
	if (get_str(&i, h->ptemu_version, 16))
		return fail(err, errlen, "corrupted trace: version string not terminated");
	h->unicorn_version = (uint32_t)get(&i, 4);
	h->capstone_version = (uint32_t)get(&i, 4);
	h->build_id = get(&i, 8);
	if (get_str(&i, h->arch, 16))
		return fail(err, errlen, "corrupted trace: model name not terminated");
	h->image_hash = get(&i, 8);
	h->procs = (uint32_t)get(&i, 4);
	h->vcpus = (uint32_t)get(&i, 4);
	h->seed = get(&i, 8);
	h->inject = (uint32_t)get(&i, 4);
	h->strategy = (uint32_t)get(&i, 4);
	h->pct_depth = (uint32_t)get(&i, 4);
	h->max_steps = get(&i, 8);
	h->phys_bytes = get(&i, 8);
	wlen = get(&i, 4);
	if (wlen != *hsize - HEADER_FIXED_BYTES || memchr(p + i.at, 0, wlen))
		return fail(err, errlen, "corrupted trace: workload length %llu does not fill the header",
			    (unsigned long long)wlen);
	memcpy(h->workload, p + i.at, wlen);
	return check_config(h, err, errlen);
}

int ptemu_trace_parse(const uint8_t *data, size_t size, struct ptemu_trace *t, char *err, size_t errlen)
{
	size_t hsize, nevents;
	struct in i;

	memset(t, 0, sizeof(*t));
	if (parse_header(data, size, size, &t->h, &hsize, err, errlen))
		return -1;
	struct in sum = { data, size - 8 };

	if (CHECKSUM_CHECKED && fnv(FNV_BASIS, data, size - 8) != get(&sum, 8))
		return fail(err, errlen, "corrupted trace: checksum mismatch");
	i = (struct in){ data, hsize };
	nevents = (size - hsize - TRAILER_BYTES) / EVENT_BYTES;
	if (nevents) {
		t->events = malloc(nevents * sizeof(*t->events));
		if (!t->events)
			return fail(err, errlen, "out of host memory for %zu events", nevents);
	}
	t->nevents = t->cap = nevents;
	for (size_t k = 0; k < nevents; k++) {
		struct ptemu_trace_event *e = &t->events[k];

		e->kind = get(&i, 8);
		e->a = get(&i, 8);
		e->b = get(&i, 8);
		const char *name = ptemu_trace_event_name(e->kind);

		if (e->kind >> 16 || !strcmp(name, "?") ||
		    (!strcmp(name, "violation") && e->a >= VIOLATION_KIND_COUNT)) {
			fail(err, errlen, "corrupted trace: event %zu (kind 0x%llx, a 0x%llx) unknown", k,
			     (unsigned long long)e->kind, (unsigned long long)e->a);
			ptemu_trace_free(t);
			return -1;
		}
	}
	t->digest = get(&i, 8);
	t->steps = get(&i, 8);
	t->violations = get(&i, 8);
	t->first_kind = (uint32_t)get(&i, 4);
	t->first_event = get(&i, 8);
	if (t->first_kind > VIOLATION_KIND_COUNT || (t->first_kind == VIOLATION_KIND_COUNT) != !t->violations) {
		ptemu_trace_free(t);
		return fail(err, errlen, "corrupted trace: first violation kind %u with %llu violations",
			    t->first_kind, (unsigned long long)t->violations);
	}
	return 0;
}

int ptemu_trace_read(const char *path, struct ptemu_trace *t, char *err, size_t errlen)
{
	uint8_t head[HEADER_MAX_BYTES], *buf = NULL;
	char inner[256];
	struct stat st;
	size_t hsize, n;
	FILE *f = fopen(path, "rb");
	int rc = -1;

	memset(t, 0, sizeof(*t));
	if (!f || fstat(fileno(f), &st)) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		if (f)
			fclose(f);
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, errlen, "%s: not a regular file", path);
		fclose(f);
		return -1;
	}
	/* The header alone first: a junk or hostile file is refused before it costs memory. */
	n = fread(head, 1, sizeof(head), f);
	if (parse_header(head, n, (uint64_t)st.st_size, &t->h, &hsize, inner, sizeof(inner))) {
		memset(t, 0, sizeof(*t));
		snprintf(err, errlen, "%s: %s", path, inner);
		fclose(f);
		return -1;
	}
	buf = malloc((size_t)st.st_size);
	if (!buf || fseek(f, 0, SEEK_SET) || fread(buf, 1, (size_t)st.st_size, f) != (size_t)st.st_size) {
		snprintf(err, errlen, "%s: cannot read: %s", path, buf ? strerror(errno) : "out of host memory");
		memset(t, 0, sizeof(*t));
	} else if ((rc = ptemu_trace_parse(buf, (size_t)st.st_size, t, inner, sizeof(inner)))) {
		snprintf(err, errlen, "%s: %s", path, inner);
	}
	free(buf);
	fclose(f);
	return rc;
}
