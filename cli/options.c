/* The one table of the ptemu program's options: each option's name, argument, help and
 * parser with its range, defined here once; the commands list the ones they take. */
#include <assert.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <ptemu/tlb.h>
#include <ptemu/trace.h>

#include "cli.h"

enum kind { K_FLAG, K_U64, K_POW2, K_SECONDS, K_STRING, K_ARCHES, K_INJECTS, K_PROTOCOLS, K_SCHED, K_ONOFF,
	    K_WORKLOAD, K_SHARD, K_FORMAT };

struct cli_option {
	enum cli_opt id;
	const char *name;	/* long name; NULL for a short-only option */
	char short_name;
	const char *arg;	/* NULL: a flag */
	enum kind kind;
	uint64_t lo, hi;	/* K_U64, K_POW2 */
	size_t offset;		/* of the value in struct cli_opts */
	const char *help;
};

#define V(field) offsetof(struct cli_opts, field)
#define SECONDS_RANGE "0.1..3600"

static const struct cli_option options[] = {
	{ OPT_ARCH, "arch", 0, "A[,B...]|all", K_ARCHES, 0, 0, V(arch_list),
	  "models, 'all' for every one ('ptemu list arches')" },
	{ OPT_SECONDS, "seconds", 0, "S", K_SECONDS, 0, 0, V(seconds),
	  "time bound of each run, " SECONDS_RANGE },
	{ OPT_SEED, "seed", 0, "N", K_U64, 0, UINT64_MAX, V(seed), "random seed, 0..2^64-1" },
	{ OPT_INJECT, "inject", 0, "NAME", K_INJECTS, 0, 0, V(inject_list),
	  "remove one protocol step, or none ('ptemu list injections')" },
	{ OPT_FAIL_FAST, "fail-fast", 0, NULL, K_FLAG, 0, 0, V(fail_fast), "stop a run at its first violation" },
	{ OPT_MEMORY, "memory", 0, "MIB", K_U64, 1, PTEMU_TRACE_MAX_MEMORY_MIB, V(memory),
	  "simulated physical memory in MiB, 1..65536" },
	{ OPT_JSON, "json", 0, "FILE|-", K_STRING, 0, 0, V(json),
	  "also write the results as JSON ('-': stdout; the human summary then goes to stderr)" },
	{ OPT_WORKERS, "workers", 0, "W", K_U64, 1, 32, V(workers), "worker threads, 1..32" },
	{ OPT_TABLES, "tables", 0, "T", K_U64, 1, 4096, V(tables), "PMD ranges in play, 1..4096" },
	{ OPT_WORKLOAD, "workload", 0, "NAME", K_WORKLOAD, 0, 0, V(workload),
	  "guest program ('ptemu list workloads')" },
	{ OPT_IMAGE, "image", 0, "ELF", K_STRING, 0, 0, V(image), "this guest ELF instead of the workload's" },
	{ OPT_PROCS, "procs", 0, "P", K_U64, 1, 16, V(procs),
	  "guest processes sharing the workload's objects, 1..16" },
	{ OPT_VCPUS, "vcpus", 0, "V", K_U64, 1, 16, V(vcpus), "vCPUs per process, 1..16" },
	{ OPT_OPS, "ops", 0, "N", K_U64, 1, UINT64_MAX, V(ops),
	  "each vCPU (run) or worker (stress) stops after N operations" },
	{ OPT_QUIET, "quiet", 0, NULL, K_FLAG, 0, 0, V(quiet), "do not print the guests' output (run) or the progress line (campaign) on stderr" },
	{ OPT_WATCHDOG, "watchdog", 0, "S", K_SECONDS, 0, 0, V(watchdog),
	  "report a hang when no vCPU progresses for S s, " SECONDS_RANGE },
	{ OPT_EXIT_AFTER, "exit-after", 0, "S", K_SECONDS, 0, 0, V(exit_after),
	  "the last process exits S s into the run (as if killed), its exit_mmap racing the "
	  "others' faults; needs --procs >= 2, not with --deterministic; " SECONDS_RANGE },
	{ OPT_DETERMINISTIC, "deterministic", 0, NULL, K_FLAG, 0, 0, V(deterministic),
	  "only one thread runs at a time; the seed decides who, and when grace periods end: "
	  "the same seed gives the same run" },
	{ OPT_SCHED, "sched", 0, "random|pct", K_SCHED, 0, 0, V(sched),
	  "deterministic strategy (implies --deterministic)" },
	{ OPT_PCT_DEPTH, "pct-depth", 0, "D", K_U64, 1, 16, V(pct_depth),
	  "PCT's depth, 1..16 (implies --deterministic)" },
	{ OPT_STEPS, "steps", 0, "N", K_U64, 1000, PTEMU_TRACE_MAX_STEPS, V(steps),
	  "deterministic run length in scheduler steps, 1000..10^12 (implies --deterministic)" },
	{ OPT_RECORD, "record", 0, "FILE", K_STRING, 0, 0, V(record),
	  "write a trace of the run (implies --deterministic; one --arch)" },
	{ OPT_PROTOCOL, "protocol", 0, "P", K_PROTOCOLS, 0, 0, V(protocol_list),
	  "lockless (v6.6) or legacy (retraction under mmap_write_trylock, as before v6.6)" },
	{ OPT_RECLAIM, "reclaim-empty-tables", 0, NULL, K_FLAG, 0, 0, V(reclaim),
	  "MADV_DONTNEED frees a PTE table when it zapped the table's whole PMD range (6.14's "
	  "PT_RECLAIM); upstream only on x86-64, so a what-if on every model here ('ptemu list "
	  "arches' says why); lockless protocol only" },
	{ OPT_KHUGEPAGED, "khugepaged", 0, "on|off", K_ONOFF, 0, 0, V(khugepaged),
	  "run the khugepaged thread: it scans the mms that asked for MADV_HUGEPAGE and "
	  "collapses their file and shmem ranges" },
	{ OPT_SCAN_SLEEP, "scan-sleep-ms", 0, "MS", K_U64, 0, 60000, V(scan_sleep_ms),
	  "khugepaged's sleep between passes, 0..60000 (when deterministic, 100 scheduler steps "
	  "per ms)" },
	{ OPT_PAGES_TO_SCAN, "pages-to-scan", 0, "N", K_U64, 1, 1u << 30, V(pages_to_scan),
	  "khugepaged's pages per pass, 1..2^30" },
	{ OPT_MAX_PTES_NONE, "max-ptes-none", 0, "N", K_U64, 0, 1u << 20, V(max_ptes_none),
	  "holes a range may have, 0..2^20" },
	{ OPT_FORCE, "force", 0, NULL, K_FLAG, 0, 0, V(force),
	  "run a trace of another build, library or image anyway" },
	{ OPT_LIMIT, "limit", 0, "N", K_U64, 1, UINT64_MAX, V(limit), "only the first N events" },
	{ OPT_DISASM, "disasm", 0, NULL, K_FLAG, 0, 0, V(disasm), "disassemble the instruction of each fault" },
	{ OPT_FORMAT, "format", 0, "perfetto", K_FORMAT, 0, 0, V(format),
	  "Chrome trace-event JSON (ui.perfetto.dev), the only format" },
	{ OPT_OUT, NULL, 'o', "OUT", K_STRING, 0, 0, V(out), "the file to write" },
	{ OPT_SEEDS, "seeds", 0, "N", K_U64, 1, 1000000000, V(seeds),
	  "runs per configuration, seeds B..B+N-1, 1..10^9" },
	{ OPT_SEED_BASE, "seed-base", 0, "B", K_U64, 0, UINT64_MAX, V(seed_base), "the first seed, B" },
	{ OPT_JOBS, NULL, 'j', "J", K_U64, 1, 1024, V(jobs), "worker processes, one run each, 1..1024" },
	{ OPT_SHARD, "shard", 0, "I/N", K_SHARD, 0, 0, 0,
	  "only the seeds whose index k (from 0) has k % N == I-1; the N shards together run the "
	  "campaign once" },
	{ OPT_PARTIAL, "partial", 0, NULL, K_FLAG, 0, 0, V(partial), "merge even when shards are missing" },
	{ OPT_REPEAT, "repeat", 0, "K", K_U64, 1, 1000, V(repeat), "runs of each configuration, interleaved, 1..1000" },
	{ OPT_TLB_ENTRIES, "tlb-entries", 0, "N", K_POW2, PTEMU_TLB_MIN_ENTRIES, PTEMU_TLB_MAX_ENTRIES,
	  V(tlb_entries), "each vCPU's logical TLB, a power of two, 16..65536 (a block or huge leaf "
	  "is one entry)" },
	{ OPT_HELP, "help", 0, NULL, K_FLAG, 0, 0, 0, "this text" },
};
#define NOPTIONS (sizeof(options) / sizeof(options[0]))
_Static_assert(NOPTIONS == OPT_END - OPT_FIRST, "one table entry per option, in enum order");

static const struct cli_option *option(enum cli_opt id)
{
	assert(options[id - OPT_FIRST].id == id);
	return &options[id - OPT_FIRST];
}

int usage_error(const char *fmt, const char *arg)
{
	fprintf(stderr, "ptemu: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\nTry 'ptemu help'.\n");
	return EXIT_USAGE;
}

void print_arch_names(FILE *f)
{
	for (const struct ptemu_arch *const *a = ptemu_arch_all(); *a; a++)
		fprintf(f, "%s%s", a == ptemu_arch_all() ? "" : ", ", (*a)->name);
}

bool parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
	uint64_t v = 0;

	if (!*s)
		return false;
	for (; *s; s++) {
		unsigned d = (unsigned)(*s - '0');

		if (d > 9 || v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	if (v < lo || v > hi)
		return false;
	*out = v;
	return true;
}

/* Digits with at most one '.' followed by digits, nothing else (no sign, exponent, hex, inf
 * or spaces). */
static bool parse_seconds(const char *s, double *out)
{
	size_t digits = strspn(s, "0123456789"), frac = 0;
	double v;

	if (s[digits] == '.')
		frac = 1 + strspn(s + digits + 1, "0123456789");
	if (s[digits + frac] || digits + frac == 0 || frac == 1)
		return false;
	v = strtod(s, NULL);
	if (!(v >= 0.1 && v <= 3600))
		return false;
	*out = v;
	return true;
}

bool parse_shard(const char *s, uint64_t *shard, uint64_t *nshards)
{
	char buf[64];
	char *slash;

	if (strlen(s) >= sizeof(buf))
		return false;
	strcpy(buf, s);
	slash = strchr(buf, '/');
	if (!slash)
		return false;
	*slash = '\0';
	return parse_u64(slash + 1, 1, 1000000, nshards) && parse_u64(buf, 1, *nshards, shard);
}

const char *injection_name(enum ptemu_injection inj)
{
	const struct ptemu_injection_info *i = ptemu_injection_find(inj);

	return i ? i->name : "none";
}

void print_injection_reach(FILE *f, const struct ptemu_injection_info *i)
{
	fprintf(f, "--workload %s%s%s", i->workload, i->khugepaged ? " --khugepaged on" : "",
		i->reclaim_empty_tables ? " --reclaim-empty-tables" : "");
}

void note_injection_reach(const struct cli_opts *o, enum ptemu_injection inj)
{
	const struct ptemu_injection_info *i = ptemu_injection_find(inj);

	if (!i || (!strcmp(o->workload, i->workload) && (o->khugepaged || !i->khugepaged) &&
			 (o->reclaim || !i->reclaim_empty_tables)))
		return;
	fprintf(stderr, "ptemu: note: %s is reached by ", i->name);
	print_injection_reach(stderr, i);
	fprintf(stderr, " ('ptemu list injections'): these options may find nothing\n");
}

bool known_workload(const char *name)
{
	char names[] = PTEMU_WORKLOAD_NAMES;

	for (char *save, *w = strtok_r(names, ",", &save); w; w = strtok_r(NULL, ",", &save))
		if (!strcmp(w, name))
			return true;
	return false;
}

/* One name of a list: 0 with its ids added (duplicates dropped), or EXIT_USAGE with the
 * reason printed. need_guest: only models that run guests. */
typedef int (*lookup_fn)(const char *name, bool need_guest, int *ids, unsigned max, unsigned *n);

static void add_id(int id, int *ids, unsigned max, unsigned *n)
{
	for (unsigned i = 0; i < *n; i++)
		if (ids[i] == id)
			return;
	if (*n < max)
		ids[(*n)++] = id;
}

static int lookup_arch(const char *name, bool need_guest, int *ids, unsigned max, unsigned *n)
{
	const struct ptemu_arch *const *all = ptemu_arch_all();
	const struct ptemu_arch *a = ptemu_arch_find(name);

	if (!strcmp(name, "all")) {
		for (int i = 0; all[i]; i++)
			if (!need_guest || all[i]->isa.workload_dir)
				add_id(i, ids, max, n);
		return 0;
	}
	if (a && need_guest && !a->isa.workload_dir) {
		fprintf(stderr, "ptemu: model %s has no guest support yet\n", a->name);
		return EXIT_USAGE;
	}
	for (int i = 0; a && all[i]; i++)
		if (all[i] == a)
			add_id(i, ids, max, n);
	if (a)
		return 0;
	fprintf(stderr, "ptemu: unknown architecture '%s'; valid: ", name);
	print_arch_names(stderr);
	fprintf(stderr, ", all\n");
	return EXIT_USAGE;
}

static int lookup_injection(const char *name, bool need_guest, int *ids, unsigned max, unsigned *n)
{
	enum ptemu_injection inj = ptemu_injection_from_name(name);

	(void)need_guest;
	if (inj != INJECT_COUNT) {
		add_id((int)inj, ids, max, n);
		return 0;
	}
	fprintf(stderr, "ptemu: unknown injection '%s'; valid: none", name);
	for (const struct ptemu_injection_info *i = ptemu_injections(); i->name; i++)
		fprintf(stderr, ", %s", i->name);
	fputc('\n', stderr);
	return EXIT_USAGE;
}

static int lookup_protocol(const char *name, bool need_guest, int *ids, unsigned max, unsigned *n)
{
	int p = ptemu_protocol_from_name(name);

	(void)need_guest;
	if (p >= 0) {
		add_id(p, ids, max, n);
		return 0;
	}
	fprintf(stderr, "ptemu: --protocol: '%s' is not lockless or legacy\n", name);
	return EXIT_USAGE;
}

/* A comma-separated list: every element named, none empty. */
static int parse_list(const char *opt, const char *list, lookup_fn lookup, bool need_guest, int *ids,
		      unsigned max, unsigned *n)
{
	*n = 0;
	for (const char *p = list;;) {
		size_t len = strcspn(p, ",");
		char *name = strndup(p, len);
		int rc;

		if (!len) {
			fprintf(stderr, "ptemu: --%s: '%s' has an empty name; give names separated by "
				"commas\n", opt, list);
			rc = EXIT_USAGE;
		} else if (!name) {
			fprintf(stderr, "ptemu: out of memory\n");
			rc = EXIT_INTERNAL;
		} else {
			rc = lookup(name, need_guest, ids, max, n);
		}
		free(name);
		if (rc || !p[len])
			return rc;
		p += len + 1;
	}
}

/* The lists, once every option is read. */
static int resolve_lists(const struct cli_command *cmd, struct cli_opts *o, bool inject_list,
			 bool protocol_list)
{
	int ids[MAX_ARCHES];
	int rc;

	if (o->arch_list) {
		if ((rc = parse_list("arch", o->arch_list, lookup_arch, cmd->need_guest, ids, MAX_ARCHES,
				     &o->narches)))
			return rc;
		for (unsigned i = 0; i < o->narches; i++)
			o->arches[i] = ptemu_arch_all()[ids[i]];
	}
	if (o->inject_list) {
		if ((rc = parse_list("inject", o->inject_list, lookup_injection, false, o->injects, INJECT_COUNT,
				     &o->ninjects)))
			return rc;
		if (o->ninjects > 1 && !inject_list)
			return usage_error("--inject: '%s' is more than one injection", o->inject_list);
	}
	if (o->protocol_list) {
		if ((rc = parse_list("protocol", o->protocol_list, lookup_protocol, false, o->protocols, 2,
				     &o->nprotocols)))
			return rc;
		if (o->nprotocols > 1 && !protocol_list)
			return usage_error("--protocol: '%s' is more than one protocol", o->protocol_list);
	}
	for (unsigned i = 0; o->reclaim && i < o->nprotocols; i++)
		if (o->protocols[i] == PTEMU_PROTOCOL_LEGACY)
			return usage_error("%s", PTEMU_RECLAIM_NEEDS_LOCKLESS);
	for (unsigned i = 0; o->reclaim && i < o->narches; i++)
		if (!o->arches[i]->rcu_table_free)
			return usage_error("--reclaim-empty-tables on model %s: " PTEMU_RECLAIM_NEEDS_RCU,
					   o->arches[i]->name);
	return 0;
}

int check_injection(const struct cli_opts *o)
{
	for (unsigned i = 0; i < o->narches; i++) {
		const char *why = ptemu_injection_why_not((enum ptemu_injection)o->injects[0], o->arches[i]);

		if (why) {
			fprintf(stderr, "ptemu: injection not offered by model %s: %s ('ptemu list injections')\n",
				o->arches[i]->name, why);
			return EXIT_USAGE;
		}
	}
	return 0;
}

static int parse_value(const struct cli_option *def, const char *arg, struct cli_opts *o)
{
	char *field = (char *)o + def->offset;
	char name[32];

	if (def->name)
		snprintf(name, sizeof(name), "--%s", def->name);
	else
		snprintf(name, sizeof(name), "-%c", def->short_name);
	switch (def->kind) {
	case K_FLAG:
		*(bool *)field = true;
		return 0;
	case K_U64:
		if (parse_u64(arg, def->lo, def->hi, (uint64_t *)field))
			return 0;
		fprintf(stderr, "ptemu: %s: '%s' is not a decimal number in %" PRIu64 "..%" PRIu64 "\n", name,
			arg, def->lo, def->hi);
		return EXIT_USAGE;
	case K_POW2:
		if (parse_u64(arg, def->lo, def->hi, (uint64_t *)field) &&
		    !(*(uint64_t *)field & (*(uint64_t *)field - 1)))
			return 0;
		fprintf(stderr, "ptemu: %s: '%s' is not a power of two in %" PRIu64 "..%" PRIu64 "\n", name,
			arg, def->lo, def->hi);
		return EXIT_USAGE;
	case K_SECONDS:
		if (parse_seconds(arg, (double *)field))
			return 0;
		fprintf(stderr, "ptemu: %s: '%s' is not a decimal number of seconds in " SECONDS_RANGE "\n",
			name, arg);
		return EXIT_USAGE;
	case K_STRING:
	case K_ARCHES:
	case K_INJECTS:
	case K_PROTOCOLS:
		*(const char **)field = arg;
		return 0;
	case K_SCHED:
		if (strcmp(arg, "random") && strcmp(arg, "pct"))
			return usage_error("--sched: '%s' is not one of: random, pct", arg);
		*(enum ptemu_sched_strategy *)field = strcmp(arg, "pct") ? PTEMU_SCHED_RANDOM : PTEMU_SCHED_PCT;
		return 0;
	case K_ONOFF:
		if (strcmp(arg, "on") && strcmp(arg, "off"))
			return fprintf(stderr, "ptemu: %s: '%s' is not on or off\n", name, arg), EXIT_USAGE;
		*(bool *)field = !strcmp(arg, "on");
		return 0;
	case K_WORKLOAD:
		if (known_workload(arg)) {
			*(const char **)field = arg;
			return 0;
		}
		fprintf(stderr, "ptemu: unknown workload '%s'; valid: %s\n", arg, PTEMU_WORKLOAD_NAMES);
		return EXIT_USAGE;
	case K_SHARD:
		if (parse_shard(arg, &o->shard, &o->nshards))
			return 0;
		return usage_error("--shard: '%s' is not I/N with 1 <= I <= N", arg);
	case K_FORMAT:
		if (strcmp(arg, "perfetto"))
			return usage_error("--format: '%s' is not one of: perfetto", arg);
		*(const char **)field = arg;
		return 0;
	}
	return EXIT_INTERNAL;
}

static const struct cli_use help_use = { OPT_HELP, NULL, false };

int cli_parse(const struct cli_command *cmd, int argc, char **argv, struct cli_opts *o, int min_args,
	      int max_args)
{
	struct option longopts[NOPTIONS + 1];
	char shorts[2 * NOPTIONS + 2] = ":";
	const struct cli_use *uses[NOPTIONS + 1];
	bool inject_list = false, protocol_list = false;
	size_t nlong = 0, nuse = 0;
	int c, rc;

	for (const struct cli_use *u = cmd->opts; u->id; u++)
		uses[nuse++] = u;
	uses[nuse++] = &help_use;
	for (size_t i = 0; i < nuse; i++) {
		const struct cli_option *def = option(uses[i]->id);

		inject_list |= def->id == OPT_INJECT && uses[i]->list;
		protocol_list |= def->id == OPT_PROTOCOL && uses[i]->list;
		if (def->name) {
			longopts[nlong++] = (struct option){ def->name, def->arg ? required_argument : no_argument,
							     NULL, def->id };
		} else {
			size_t n = strlen(shorts);

			shorts[n] = def->short_name;
			shorts[n + 1] = ':';
			shorts[n + 2] = '\0';
		}
	}
	longopts[nlong] = (struct option){ 0 };
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, shorts, longopts, NULL)) != -1) {
		const struct cli_option *def = NULL;

		if (c == '?' || c == ':') {
			const char *what = argv[optind - 1];
			char buf[3] = { '-', (char)optopt, 0 };

			if (optopt && optopt < OPT_FIRST)
				what = buf;
			fprintf(stderr, "ptemu: %s: ", cmd->name);
			if (c == ':')
				fprintf(stderr, "%s needs a value\n", what);
			else
				fprintf(stderr, "no option '%s'\n", what);
			fprintf(stderr, "Try 'ptemu %s --help'.\n", cmd->name);
			return EXIT_USAGE;
		}
		for (size_t i = 0; i < NOPTIONS && !def; i++)
			if (c < OPT_FIRST ? options[i].short_name == c : (int)options[i].id == c)
				def = &options[i];
		if (def->id == OPT_HELP) {
			cli_help(stdout, cmd, false);
			return CLI_HELP;
		}
		if ((rc = parse_value(def, optarg, o)))
			return rc;
		o->given[def->id - OPT_FIRST] = true;
	}
	o->args = argv + optind;
	o->nargs = argc - optind;
	if (o->nargs > max_args)
		return fprintf(stderr, "ptemu: %s: unexpected argument '%s'\nTry 'ptemu %s --help'.\n",
			       cmd->name, argv[optind + max_args], cmd->name), EXIT_USAGE;
	if (o->nargs < min_args)
		return fprintf(stderr, "ptemu: %s %s: missing argument\nTry 'ptemu %s --help'.\n", cmd->name,
			       cmd->synopsis, cmd->name), EXIT_USAGE;
	return resolve_lists(cmd, o, inject_list, protocol_list);
}

/* Text from column col, wrapped at 92 columns to lines indented by indent. */
void cli_print_wrapped(FILE *f, int col, int indent, const char *text)
{
	bool first = true;

	while (*text) {
		size_t len = strcspn(text, " ");

		if (!first && col + 1 + (int)len > 92) {
			fprintf(f, "\n%*s", indent, "");
			col = indent;
		} else if (!first) {
			fputc(' ', f);
			col++;
		}
		first = false;
		fprintf(f, "%.*s", (int)len, text);
		col += (int)len;
		text += len;
		text += strspn(text, " ");
	}
	fputc('\n', f);
}

/* "(default X)" from the command's defaults, or "" when there is none to show. */
static void default_text(const struct cli_option *def, const struct cli_opts *d, char *buf, size_t n)
{
	const char *field = (const char *)d + def->offset;

	buf[0] = '\0';
	switch (def->kind) {
	case K_U64:
	case K_POW2:
		snprintf(buf, n, "(default %" PRIu64 ")", *(const uint64_t *)field);
		break;
	case K_SECONDS:
		snprintf(buf, n, "(default %g)", *(const double *)field);
		break;
	case K_SCHED:
		snprintf(buf, n, "(default %s)", *(const enum ptemu_sched_strategy *)field == PTEMU_SCHED_PCT ?
			 "pct" : "random");
		break;
	case K_ONOFF:
		snprintf(buf, n, "(default %s)", *(const bool *)field ? "on" : "off");
		break;
	case K_STRING:
	case K_ARCHES:
	case K_INJECTS:
	case K_PROTOCOLS:
	case K_WORKLOAD:
	case K_FORMAT:
		if (*(const char *const *)field)
			snprintf(buf, n, "(default %s)", *(const char *const *)field);
		break;
	case K_FLAG:
	case K_SHARD:
		break;
	}
}

void cli_help(FILE *f, const struct cli_command *cmd, bool brief)
{
	if (!brief) {
		fprintf(f, "usage: ptemu %s %s\n", cmd->name, cmd->synopsis);
		cli_print_wrapped(f, fprintf(f, "  "), 2, cmd->what);
	}
	if (cmd->opts[0].id)
		fprintf(f, "%s options:\n", cmd->name);
	for (const struct cli_use *u = cmd->opts; u->id; u++) {
		const struct cli_option *def = option(u->id);
		char head[64], dflt[512], text[1024];
		int col;

		if (def->name)
			snprintf(head, sizeof(head), "  --%s%s%s%s", def->name, def->arg ? " " : "",
				 def->arg ? def->arg : "", u->list ? "[,...]" : "");
		else
			snprintf(head, sizeof(head), "  -%c %s", def->short_name, def->arg);
		col = fprintf(f, "%-26s", head);
		if (strlen(head) >= 26)
			col = fprintf(f, "\n%26s", "") - 1;
		if (u->note)
			snprintf(dflt, sizeof(dflt), "(%s)", u->note);
		else
			default_text(def, cmd->defaults, dflt, sizeof(dflt));
		snprintf(text, sizeof(text), "%s%s%s", def->help, dflt[0] ? " " : "", dflt);
		cli_print_wrapped(f, col, 26, text);
	}
	if (cmd->more)
		fputs(cmd->more, f);
}
