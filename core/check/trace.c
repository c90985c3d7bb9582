/* Trace files: writer, hardened reader (docs/trace-format.md). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <capstone/capstone.h>
#include <unicorn/unicorn.h>

#include <ptemu/check.h>
#include <ptemu/inject.h>
#include <ptemu/sched.h>
#include <ptemu/trace.h>

#ifndef PTEMU_VERSION_STRING
#define PTEMU_VERSION_STRING "0.1.0"
#endif

/* Sizes on disk: everything little-endian, no padding. */
#define HEADER_BYTES (8 + 4 + 4 + 16 + 4 + 4 + 8 + 16 + 64 + 8 + 4 + 4 + 8 + 4 + 4 + 4 + 8 + 8)
#define EVENT_BYTES 24
#define TRAILER_BYTES (8 + 8 + 8 + 4 + 8 + 8)

static uint64_t fnv(uint64_t h, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		h ^= p[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

enum { CONFIG_RECLAIM = 1u << 16, CONFIG_KHUGEPAGED = 1u << 17, CONFIG_FAIL_FAST = 1u << 18 };

uint32_t ptemu_trace_pack_config(const struct ptemu_run_config *cfg)
{
	return (uint32_t)cfg->inject | (uint32_t)cfg->protocol << 8 |
	       (cfg->features.reclaim_empty_tables ? CONFIG_RECLAIM : 0) |
	       (cfg->khugepaged ? CONFIG_KHUGEPAGED : 0) |
	       (cfg->check_mode == PTEMU_CHECK_FAIL_FAST ? CONFIG_FAIL_FAST : 0);
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
}

uint64_t ptemu_build_id(void)
{
	static const char id[] = PTEMU_VERSION_STRING " " __DATE__ " " __TIME__;

	return fnv(0xcbf29ce484222325ull, (const uint8_t *)id, sizeof(id) - 1);
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
	size_t n, at;
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

int ptemu_trace_write(const char *path, const struct ptemu_trace *t, char *err, size_t errlen)
{
	size_t size = HEADER_BYTES + t->nevents * EVENT_BYTES + TRAILER_BYTES;
	struct out o = { malloc(size), 0 };
	const struct ptemu_trace_header *h = &t->h;
	FILE *f;

	if (!o.p) {
		snprintf(err, errlen, "%s: out of host memory for %zu events", path, t->nevents);
		return -1;
	}
	memcpy(o.p, PTEMU_TRACE_MAGIC, 8);
	o.n = 8;
	put(&o, h->format_version, 4);
	put(&o, HEADER_BYTES, 4);
	put_str(&o, h->ptemu_version, 16);
	put(&o, h->unicorn_version, 4);
	put(&o, h->capstone_version, 4);
	put(&o, h->build_id, 8);
	put_str(&o, h->arch, 16);
	put_str(&o, h->workload, 64);
	put(&o, h->image_hash, 8);
	put(&o, h->procs, 4);
	put(&o, h->vcpus, 4);
	put(&o, h->seed, 8);
	put(&o, h->inject, 4);
	put(&o, h->strategy, 4);
	put(&o, h->pct_depth, 4);
	put(&o, h->max_steps, 8);
	put(&o, h->phys_bytes, 8);
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
	put(&o, fnv(0xcbf29ce484222325ull, o.p, o.n), 8);
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

int ptemu_trace_parse(const uint8_t *data, size_t size, struct ptemu_trace *t, char *err, size_t errlen)
{
	struct in i = { data, size, 0 };
	struct ptemu_trace_header *h = &t->h;
	uint64_t nevents;

	memset(t, 0, sizeof(*t));
	if (size < 8 || memcmp(data, PTEMU_TRACE_MAGIC, 8)) {
		snprintf(err, errlen, "not a ptemu trace (bad magic)");
		return -1;
	}
	if (size < HEADER_BYTES + TRAILER_BYTES) {
		snprintf(err, errlen, "truncated trace: %zu bytes, a trace has at least %d", size,
			 HEADER_BYTES + TRAILER_BYTES);
		return -1;
	}
	i.at = 8;
	h->format_version = (uint32_t)get(&i, 4);
	if (h->format_version != PTEMU_TRACE_VERSION) {
		snprintf(err, errlen, "trace format version %u; this ptemu reads version %u",
			 h->format_version, PTEMU_TRACE_VERSION);
		return -1;
	}
	if (get(&i, 4) != HEADER_BYTES) {
		snprintf(err, errlen, "corrupted trace: header size field is wrong");
		return -1;
	}
	if ((size - HEADER_BYTES - TRAILER_BYTES) % EVENT_BYTES) {
		snprintf(err, errlen, "truncated or corrupted trace: %zu bytes is not a whole number of events",
			 size);
		return -1;
	}
	struct in sum = { data, size, size - 8 };

	if (fnv(0xcbf29ce484222325ull, data, size - 8) != get(&sum, 8)) {
		snprintf(err, errlen, "corrupted trace: checksum mismatch");
		return -1;
	}
	if (get_str(&i, h->ptemu_version, 16)) {
		snprintf(err, errlen, "corrupted trace: version string not terminated");
		return -1;
	}
	h->unicorn_version = (uint32_t)get(&i, 4);
	h->capstone_version = (uint32_t)get(&i, 4);
	h->build_id = get(&i, 8);
	if (get_str(&i, h->arch, 16) || get_str(&i, h->workload, 64)) {
		snprintf(err, errlen, "corrupted trace: model or workload name not terminated");
		return -1;
	}
	h->image_hash = get(&i, 8);
	h->procs = (uint32_t)get(&i, 4);
	h->vcpus = (uint32_t)get(&i, 4);
	h->seed = get(&i, 8);
	h->inject = (uint32_t)get(&i, 4);
	h->strategy = (uint32_t)get(&i, 4);
	h->pct_depth = (uint32_t)get(&i, 4);
	h->max_steps = get(&i, 8);
	h->phys_bytes = get(&i, 8);
	if (!h->procs || h->procs > 16 || !h->vcpus || h->vcpus > 16 ||
	    ptemu_trace_injection(h) >= INJECT_COUNT || (h->inject >> 8 & 0xf) > PTEMU_PROTOCOL_LEGACY ||
	    (h->inject & ~0x7ffffu) || (h->inject & 0xf000u) ||
	    h->strategy > PTEMU_SCHED_PCT || !h->pct_depth || h->pct_depth > 16 || !h->max_steps) {
		snprintf(err, errlen, "corrupted trace: configuration out of range");
		return -1;
	}
	nevents = (size - HEADER_BYTES - TRAILER_BYTES) / EVENT_BYTES;
	if (nevents) {
		t->events = malloc(nevents * sizeof(*t->events));
		if (!t->events) {
			snprintf(err, errlen, "out of host memory for %llu events", (unsigned long long)nevents);
			return -1;
		}
	}
	for (uint64_t k = 0; k < nevents; k++) {
		t->events[k].kind = get(&i, 8);
		t->events[k].a = get(&i, 8);
		t->events[k].b = get(&i, 8);
	}
	t->nevents = t->cap = (size_t)nevents;
	t->digest = get(&i, 8);
	t->steps = get(&i, 8);
	t->violations = get(&i, 8);
	t->first_kind = (uint32_t)get(&i, 4);
	t->first_event = get(&i, 8);
	if (t->first_kind > VIOLATION_KIND_COUNT) {
		ptemu_trace_free(t);
		snprintf(err, errlen, "corrupted trace: violation kind out of range");
		return -1;
	}
	return 0;
}

int ptemu_trace_read(const char *path, struct ptemu_trace *t, char *err, size_t errlen)
{
	struct stat st;
	FILE *f = fopen(path, "rb");
	uint8_t *buf;
	int rc;

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
	buf = malloc(st.st_size ? (size_t)st.st_size : 1);
	if (!buf || fread(buf, 1, (size_t)st.st_size, f) != (size_t)st.st_size) {
		snprintf(err, errlen, "%s: cannot read: %s", path, buf ? strerror(errno) : "out of memory");
		free(buf);
		fclose(f);
		return -1;
	}
	fclose(f);
	char inner[256];

	rc = ptemu_trace_parse(buf, (size_t)st.st_size, t, inner, sizeof(inner));
	if (rc)
		snprintf(err, errlen, "%s: %s", path, inner);
	free(buf);
	return rc;
}
