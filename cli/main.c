/* ptemu: the command-line program. */
#include <errno.h>
#include <unistd.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <capstone/capstone.h>

#include <ptemu/arch.h>
#include <ptemu/bench.h>
#include <ptemu/check.h>
#include <ptemu/inject.h>
#include <ptemu/machine.h>
#include <ptemu/ptstress.h>
#include <ptemu/run.h>
#include <ptemu/stats.h>
#include <ptemu/trace.h>
#include <ptemu/loader.h>
#include <ptemu/sync.h>

#include "cli.h"

static const char usage_text[] =
	"usage: ptemu <command> [options]\n"
	"\n"
	"commands:\n"
	"  run [options]           run a guest workload on Unicorn vCPUs over a model\n"
	"  stress [options]        page-table stress of the core: workers map, lock and update\n"
	"                          PTEs while a retractor detaches tables and frees them by RCU\n"
	"  bench overhead [--arch A[,B]] [--seconds S] [--json FILE|-]\n"
	"                          shmem-stress through ptemu and on bare Unicorn with an\n"
	"                          identity TLB fill: throughput ratio and logical-miss cost\n"
	"  bench latency [--arch A[,B]] [--seconds S] [--seed N] [--procs P] [--vcpus V]\n"
	"                [--json FILE|-]\n"
	"                          shmem-stress with khugepaged and MADV_COLLAPSE, free-running,\n"
	"                          under the lockless and the legacy protocol: fault latency\n"
	"                          p50/p99/max, retraction success rate, and their ratios\n"
	"  replay FILE [--force] [--image ELF]\n"
	"                          re-run a recorded trace under its decisions; report the\n"
	"                          first divergent event, or the violations reproduced\n"
	"  minimize FILE -o OUT    shrink a failing trace (run length, then decisions) keeping\n"
	"                          its first violation's kind\n"
	"  trace dump FILE [--limit N] [--disasm] | trace stats FILE\n"
	"  trace export --format perfetto FILE -o OUT   Chrome trace-event JSON\n"
	"  campaign [options]      deterministic runs over seeds, models, injections and\n"
	"                          protocols in worker processes: a table of what they found\n"
	"  list arches|workloads|injections|violations\n"
	"  help                    this text\n"
	"  version\n"
	"\n"
	"run options:\n"
	"  --arch A[,B...]|all     models to run (default: all with a guest ISA)\n"
	"  --workload NAME         guest program (default shmem-stress; 'ptemu list workloads')\n"
	"  --image FILE            run this ELF instead of a built-in workload\n"
	"  --procs P               guest processes sharing the workload's objects, 1..16 (default 2)\n"
	"  --vcpus N               vCPUs per process, 1..16 (default 1)\n"
	"  --seconds S             time bound, 0.1..3600 (default 3)\n"
	"  --ops N                 each vCPU stops after N operations of its workload (default:\n"
	"                          until --seconds); a guest that ignores both is ended\n"
	"  --watchdog S            report a hang when no vCPU progresses for S s (default 10)\n"
	"  --exit-after S          the last process exits S s into the run (as if killed), its\n"
	"                          exit_mmap racing the others' faults (needs --procs >= 2)\n"
	"  --deterministic         only one thread runs at a time; the seed decides who, and\n"
	"                          when grace periods end: the same seed gives the same run\n"
	"  --sched random|pct      deterministic strategy (default random; implies --deterministic)\n"
	"  --pct-depth D           PCT's depth, 1..16 (default 3)\n"
	"  --steps N               deterministic run length in scheduler steps (default 200000)\n"
	"  --record FILE           write a trace of the run (deterministic; one --arch)\n"
	"  --protocol P            lockless (v6.6, default) or legacy (retraction under\n"
	"                          mmap_write_trylock, as before v6.6)\n"
	"  --reclaim-empty-tables  MADV_DONTNEED frees PTE tables its zap left empty (6.14)\n"
	"  --khugepaged on|off     run the khugepaged thread (default off): it scans the mms\n"
	"                          that asked for MADV_HUGEPAGE and collapses their file and\n"
	"                          shmem ranges\n"
	"  --scan-sleep-ms MS      khugepaged's sleep between passes (default 10; when\n"
	"                          deterministic, 100 scheduler steps per ms)\n"
	"  --pages-to-scan N       pages per pass (default 8 PMD ranges)\n"
	"  --max-ptes-none N       holes a range may have (default HPAGE_PMD_NR - 1)\n"
	"  --seed N, --inject NAME, --fail-fast, --memory MIB, --json FILE|-  as for stress\n"
	"  --quiet                 do not print the guests' output (stderr otherwise)\n"
	"\n"
	"stress options:\n"
	"  --arch A[,B...]|all     models to run (default: all; see 'ptemu list arches')\n"
	"  --seconds S             time bound per model, 0.1..3600 (default 2)\n"
	"  --seed N                random seed (default 1)\n"
	"  --workers W             worker threads, 1..32 (default 3)\n"
	"  --tables T              PMD ranges in play, 1..4096 (default 8)\n"
	"  --inject NAME           remove one protocol step (see 'ptemu list injections')\n"
	"  --deterministic, --sched random|pct, --pct-depth D   as for run; the stress is then\n"
	"                          bounded by --ops N per worker (default 2000), not by time\n"
	"  --fail-fast             stop a model's run at its first violation\n"
	"  --memory MIB            simulated physical memory in MiB (default 256)\n"
	"  --json FILE|-           also write a JSON report ('-' for stdout; the summary then\n"
	"                          goes to stderr)\n"
	"\n"
	CAMPAIGN_USAGE
	"\n"
	"exit status: 0 clean, 1 violations found, 2 bad usage or input file, 3 internal or guest\n"
	"error (a wild guest access, a guest that does not stop)\n";

static int cmd_list(int argc, char **argv)
{
	const char *what = argc > 1 ? argv[1] : NULL;

	if (what && !strcmp(what, "arches")) {
		for (const struct ptemu_arch *const *a = ptemu_arch_all(); *a; a++)
			printf("%-10s %s\n", (*a)->name, (*a)->description);
		return EXIT_CLEAN;
	}
	if (what && !strcmp(what, "injections")) {
		for (const struct ptemu_injection_info *i = ptemu_injections(); i->name; i++) {
			printf("%-24s %s [models:", i->name, i->what);
			for (const struct ptemu_arch *const *a = ptemu_arch_all(); *a; a++)
				if (ptemu_injection_applies(i->id, *a))
					printf(" %s", (*a)->name);
			printf("]\n");
		}
		return EXIT_CLEAN;
	}
	if (what && !strcmp(what, "violations")) {
		for (int k = 0; k < VIOLATION_KIND_COUNT; k++)
			printf("%s\n", ptemu_violation_name((enum ptemu_violation_kind)k));
		return EXIT_CLEAN;
	}
	if (what && !strcmp(what, "workloads")) {
		char names[] = PTEMU_WORKLOAD_NAMES;

		for (char *save, *w = strtok_r(names, ",", &save); w; w = strtok_r(NULL, ",", &save))
			printf("%s\n", w);
		return EXIT_CLEAN;
	}
	fprintf(stderr, "ptemu: list what? one of: arches, workloads, injections, violations\n");
	return EXIT_USAGE;
}

static bool parse_seconds(const char *s, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !(v >= 0.1 && v <= 3600))
		return false;
	*out = v;
	return true;
}

static void json_string(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			fprintf(f, "\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			fprintf(f, "\\u%04x", *s);
		else
			fputc(*s, f);
	}
	fputc('"', f);
}

struct stress_opts {
	const struct ptemu_arch *arches[16];
	unsigned narches;
	struct ptemu_pt_stress_config cfg;
	enum ptemu_injection inject;
	bool fail_fast;
	uint64_t memory;
	const char *json;
};

static int parse_arches(const char *list, struct stress_opts *o, bool need_isa)
{
	char buf[256];

	if (!strcmp(list, "all")) {
		for (const struct ptemu_arch *const *a = ptemu_arch_all(); *a && o->narches < 16; a++)
			if (!need_isa || (*a)->isa.workload_dir)
				o->arches[o->narches++] = *a;
		return 0;
	}
	snprintf(buf, sizeof(buf), "%s", list);
	for (char *save, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		const struct ptemu_arch *a = ptemu_arch_find(tok);

		if (!a) {
			fprintf(stderr, "ptemu: unknown architecture '%s'; valid: ", tok);
			print_arch_names(stderr);
			fprintf(stderr, ", all\n");
			return -1;
		}
		if (need_isa && !a->isa.workload_dir) {
			fprintf(stderr, "ptemu: model %s has no guest support yet\n", a->name);
			return -1;
		}
		if (o->narches < 16)
			o->arches[o->narches++] = a;
	}
	return o->narches ? 0 : -1;
}

/* The head of a run's JSON object, up to the opening of "stats". */
static void json_run_head(FILE *f, const struct ptemu_machine *m, const char *workload,
			  uint64_t seed, enum ptemu_injection inj)
{
	fprintf(f, "{\"arch\":\"%s\",\"workload\":", m->arch->name);
	json_string(f, workload);
	fprintf(f, ",\"seed\":%" PRIu64 ",\"protocol\":\"%s\",\"reclaim_empty_tables\":%s,\"inject\":",
		seed, ptemu_protocol_name(m->protocol), m->features.reclaim_empty_tables ? "true" : "false");
	json_string(f, injection_name(inj));
	fprintf(f, ",\"result\":\"%s\",\"stats\":{", check_violation_count(m) ? "violation" : "clean");
}

/* The machine's counters, then the end of "stats" and the violations. */
static void json_run_tail(FILE *f, const struct ptemu_machine *m)
{
	size_t nv;
	const struct ptemu_violation *v = check_violations(m, &nv);

	for (int k = 0; k < PTEMU_STAT_COUNT; k++)
		fprintf(f, ",\"%s\":%" PRIu64, ptemu_stat_name((enum ptemu_stat)k),
			ptemu_stat_get(&m->stats, (enum ptemu_stat)k));
	fprintf(f, "},\"violation_count\":%" PRIu64 ",\"violations\":[", check_violation_count(m));
	for (size_t i = 0; i < nv; i++) {
		fprintf(f, "%s{\"kind\":\"%s\",\"thread\":", i ? "," : "",
			ptemu_violation_name(v[i].kind));
		json_string(f, v[i].thread_name);
		fprintf(f, ",\"addr\":%" PRIu64 ",\"event\":%" PRIu64 ",\"message\":", v[i].addr,
			v[i].event);
		json_string(f, v[i].message);
		fputc('}', f);
	}
	fprintf(f, "]}");
}

static void print_stress_json(FILE *f, const struct ptemu_machine *m, const struct stress_opts *o,
			      const struct ptemu_pt_stress_result *r)
{
	json_run_head(f, m, "pt-stress", o->cfg.seed, o->inject);
	fprintf(f, "\"locked_updates\":%" PRIu64 ",\"lockless_reads\":%" PRIu64
		   ",\"map_failed\":%" PRIu64 ",\"retracts\":%" PRIu64 ",\"elapsed_s\":%.3f",
		r->locked_updates, r->lockless_reads, r->map_failed, r->retracts, r->elapsed);
	json_run_tail(f, m);
}

/* The first violation of each kind, for the human summary. */
static void print_violation_kinds(FILE *out, const struct ptemu_machine *m)
{
	size_t nrec;
	const struct ptemu_violation *rec = check_violations(m, &nrec);
	unsigned kinds_seen = 0;

	for (size_t k = 0; k < nrec; k++) {
		if (kinds_seen & (1u << rec[k].kind))
			continue;
		kinds_seen |= 1u << rec[k].kind;
		fprintf(out, "  %s (x%" PRIu64 ") at event %" PRIu64 " in %s: %s\n",
			ptemu_violation_name(rec[k].kind), check_kind_count(m, rec[k].kind),
			rec[k].event, rec[k].thread_name, rec[k].message);
	}
}

/* Options shared by run and stress. */
enum { OPT_ARCH = 256, OPT_SECONDS, OPT_SEED, OPT_INJECT, OPT_FAIL_FAST, OPT_MEMORY, OPT_JSON,
       OPT_WORKERS, OPT_TABLES, OPT_WORKLOAD, OPT_IMAGE, OPT_PROCS, OPT_VCPUS, OPT_OPS,
       OPT_QUIET, OPT_WATCHDOG, OPT_EXIT_AFTER, OPT_DETERMINISTIC, OPT_SCHED, OPT_PCT_DEPTH,
       OPT_STEPS, OPT_RECORD, OPT_FORCE, OPT_LIMIT, OPT_PROTOCOL, OPT_RECLAIM, OPT_KHUGEPAGED, OPT_SCAN_SLEEP, OPT_PAGES_TO_SCAN,
       OPT_MAX_PTES_NONE, OPT_HELP };

#define COMMON_LONGOPTS                                                   \
	{ "arch", required_argument, NULL, OPT_ARCH },                    \
	{ "seconds", required_argument, NULL, OPT_SECONDS },              \
	{ "seed", required_argument, NULL, OPT_SEED },                    \
	{ "inject", required_argument, NULL, OPT_INJECT },                \
	{ "fail-fast", no_argument, NULL, OPT_FAIL_FAST },                \
	{ "memory", required_argument, NULL, OPT_MEMORY },                \
	{ "json", required_argument, NULL, OPT_JSON },                    \
	{ "help", no_argument, NULL, OPT_HELP }

struct common_opts {
	const char *arch_list;
	double seconds;
	uint64_t seed;
	enum ptemu_injection inject;
	bool fail_fast;
	uint64_t memory;
	const char *json;
};

/* 0: handled; 1: not a common option; EXIT_USAGE: bad value (message printed). */
static int common_option(int c, const char *arg, struct common_opts *o)
{
	switch (c) {
	case OPT_ARCH:
		o->arch_list = arg;
		return 0;
	case OPT_SECONDS:
		if (!parse_seconds(arg, &o->seconds))
			return usage_error("--seconds: '%s' is not a number in 0.1..3600", arg);
		return 0;
	case OPT_SEED:
		if (!parse_u64(arg, 0, UINT64_MAX, &o->seed))
			return usage_error("--seed: '%s' is not an unsigned 64-bit number", arg);
		return 0;
	case OPT_INJECT:
		o->inject = ptemu_injection_from_name(arg);
		if (o->inject == INJECT_COUNT) {
			fprintf(stderr, "ptemu: unknown injection '%s'; valid: none", arg);
			for (const struct ptemu_injection_info *i = ptemu_injections(); i->name; i++)
				fprintf(stderr, ", %s", i->name);
			fputc('\n', stderr);
			return EXIT_USAGE;
		}
		return 0;
	case OPT_FAIL_FAST:
		o->fail_fast = true;
		return 0;
	case OPT_MEMORY:
		if (!parse_u64(arg, 1, 65536, &o->memory))
			return usage_error("--memory: '%s' is not a size in MiB in 1..65536", arg);
		return 0;
	case OPT_JSON:
		o->json = arg;
		return 0;
	default:
		return 1;
	}
}

/* Closes the list that open_json's caller opened, and the file unless it is stdout. */
static void json_close(FILE *json)
{
	if (!json)
		return;
	fprintf(json, "]}\n");
	if (json != stdout)
		fclose(json);
}

/* --deterministic, --sched, --pct-depth: shared by run and stress. 0: handled; 1: not
 * one of these; EXIT_USAGE: bad value (message printed). */
static int sched_option(int c, const char *arg, struct ptemu_sched_config *sc, bool *deterministic)
{
	uint64_t v;

	switch (c) {
	case OPT_DETERMINISTIC:
		*deterministic = true;
		return 0;
	case OPT_SCHED:
		if (strcmp(arg, "random") && strcmp(arg, "pct"))
			return usage_error("--sched: '%s' is not one of: random, pct", arg);
		sc->strategy = strcmp(arg, "pct") ? PTEMU_SCHED_RANDOM : PTEMU_SCHED_PCT;
		*deterministic = true;
		return 0;
	case OPT_PCT_DEPTH:
		if (!parse_u64(arg, 1, 16, &v))
			return usage_error("--pct-depth: '%s' is not in 1..16", arg);
		sc->pct_depth = (unsigned)v;
		*deterministic = true;
		return 0;
	default:
		return 1;
	}
}

static int check_injection(const struct stress_opts *o, enum ptemu_injection inj)
{
	for (unsigned i = 0; i < o->narches; i++) {
		if (!ptemu_injection_applies(inj, o->arches[i])) {
			fprintf(stderr, "ptemu: injection not offered by model %s ('ptemu list injections')\n",
				o->arches[i]->name);
			return EXIT_USAGE;
		}
	}
	return 0;
}

/* Opens the JSON destination: '-' is stdout, and the human summary then goes to stderr. */
static FILE *open_json(const char *path, FILE **summary)
{
	FILE *f;

	if (!strcmp(path, "-")) {
		*summary = stderr;
		return stdout;
	}
	f = fopen(path, "w");
	if (!f)
		fprintf(stderr, "ptemu: cannot write %s: %s\n", path, strerror(errno));
	return f;
}

static int cmd_stress(int argc, char **argv)
{
	static const struct option longopts[] = {
		COMMON_LONGOPTS,
		{ "workers", required_argument, NULL, OPT_WORKERS },
		{ "tables", required_argument, NULL, OPT_TABLES },
		{ "deterministic", no_argument, NULL, OPT_DETERMINISTIC },
		{ "sched", required_argument, NULL, OPT_SCHED },
		{ "pct-depth", required_argument, NULL, OPT_PCT_DEPTH },
		{ "ops", required_argument, NULL, OPT_OPS },
		{ 0 },
	};
	struct common_opts co = { .arch_list = "all", .seconds = 2, .seed = 1, .memory = 256 };
	struct stress_opts o = { .cfg = { .workers = 3, .tables = 8 } };
	uint64_t v;
	int c, rc, status = EXIT_CLEAN;
	FILE *json = NULL, *summary = stdout;

	optind = 1;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		rc = common_option(c, optarg, &co);
		if (rc == 1)
			rc = sched_option(c, optarg, &o.cfg.sched, &o.cfg.deterministic);
		if (rc == 0)
			continue;
		if (rc != 1)
			return rc;
		switch (c) {
		case OPT_WORKERS:
			if (!parse_u64(optarg, 1, 32, &v))
				return usage_error("--workers: '%s' is not in 1..32", optarg);
			o.cfg.workers = (unsigned)v;
			break;
		case OPT_TABLES:
			if (!parse_u64(optarg, 1, 4096, &v))
				return usage_error("--tables: '%s' is not in 1..4096", optarg);
			o.cfg.tables = (unsigned)v;
			break;
		case OPT_OPS:
			if (!parse_u64(optarg, 1, UINT64_MAX, &o.cfg.max_ops))
				return usage_error("--ops: '%s' is not a positive number", optarg);
			break;
		case OPT_HELP:
			fputs(usage_text, stdout);
			return EXIT_CLEAN;
		default:
			return usage_error("%s", "bad option for 'stress'");
		}
	}
	if (optind < argc)
		return usage_error("unexpected argument '%s'", argv[optind]);
	o.cfg.seed = co.seed;
	o.cfg.seconds = co.seconds;
	o.inject = co.inject;
	if (o.cfg.deterministic) {
		o.cfg.sched.seed = co.seed;
		o.cfg.sched.max_steps = 10000000;
		if (!o.cfg.sched.pct_depth)
			o.cfg.sched.pct_depth = 3;
		if (!o.cfg.max_ops)
			o.cfg.max_ops = 2000;	/* a deterministic stress is bounded by operations */
	}
	if (parse_arches(co.arch_list, &o, false) || check_injection(&o, co.inject))
		return EXIT_USAGE;
	if (co.json) {
		if (!(json = open_json(co.json, &summary)))
			return EXIT_USAGE;
		fprintf(json, "{\"runs\":[");
	}
	for (unsigned i = 0; i < o.narches; i++) {
		struct ptemu_machine_config mc = {
			.arch = o.arches[i],
			.phys_bytes = co.memory << 20,
			.check_mode = co.fail_fast ? PTEMU_CHECK_FAIL_FAST : PTEMU_CHECK_CONTINUE,
			.inject = co.inject,
		};
		char err[256];
		struct ptemu_machine *m = ptemu_machine_create(&mc, err, sizeof(err));
		struct ptemu_pt_stress_result r = { 0 };

		if (!m) {
			fprintf(stderr, "ptemu: %s\n", err);
			status = EXIT_USAGE;
			break;
		}
		fprintf(stderr, "ptemu: %s: stress for %.1f s...\n", m->arch->name, o.cfg.seconds);
		ptemu_thread_register(m, "retractor");
		if (ptemu_pt_stress(m, &o.cfg, &r)) {
			fprintf(stderr, "ptemu: %s: stress could not run: %s\n", m->arch->name,
				strerror(errno));
			status = EXIT_INTERNAL;
		}
		ptemu_thread_unregister();

		uint64_t nviol = check_violation_count(m);
		fprintf(summary,
			"%-9s %-9s updates=%" PRIu64 " reads=%" PRIu64 " retracts=%" PRIu64
			" pte_map_failures=%" PRIu64 " pmd_recheck_retries=%" PRIu64
			" detach_with_reader=%" PRIu64 " rcu_freed=%" PRIu64 " violations=%" PRIu64 "\n",
			m->arch->name, nviol ? "VIOLATION" : "clean", r.locked_updates, r.lockless_reads,
			r.retracts, ptemu_stat_get(&m->stats, PTEMU_STAT_pte_map_failures),
			ptemu_stat_get(&m->stats, PTEMU_STAT_pmd_recheck_retries),
			ptemu_stat_get(&m->stats, PTEMU_STAT_detach_with_reader),
			ptemu_stat_get(&m->stats, PTEMU_STAT_tables_rcu_freed), nviol);
		if (o.cfg.deterministic)
			fprintf(summary, "          steps=%" PRIu64 " digest=%016" PRIx64 "\n", r.steps, r.digest);
		if (nviol) {
			print_violation_kinds(summary, m);
			if (status == EXIT_CLEAN)
				status = EXIT_VIOLATIONS;
		}
		fflush(summary);
		if (json) {
			if (i)
				fputc(',', json);
			print_stress_json(json, m, &o, &r);
		}
		ptemu_machine_destroy(m);
	}
	json_close(json);
	return status;
}

/* The header and outcome of a trace recorded by a run (its events are already in). */
static void finish_trace(struct ptemu_trace *trace, const struct ptemu_arch *a,
			 const struct ptemu_run_config *cfg, const struct ptemu_run_result *r,
			 const struct ptemu_machine *m)
{
	size_t nv;
	const struct ptemu_violation *v = check_violations(m, &nv);

	ptemu_trace_header_init(&trace->h);
	snprintf(trace->h.arch, sizeof(trace->h.arch), "%s", a->name);
	snprintf(trace->h.workload, sizeof(trace->h.workload), "%s", cfg->workload);
	trace->h.image_hash = r->image_hash;
	trace->h.procs = cfg->procs;
	trace->h.vcpus = cfg->vcpus;
	trace->h.seed = cfg->seed;
	trace->h.inject = ptemu_trace_pack_config(cfg);
	trace->h.strategy = cfg->sched.strategy;
	trace->h.pct_depth = cfg->sched.pct_depth;
	trace->h.max_steps = cfg->sched.max_steps;
	trace->h.phys_bytes = cfg->phys_bytes;
	trace->digest = r->digest;
	trace->steps = r->steps;
	trace->violations = check_violation_count(m);
	trace->first_kind = nv ? v[0].kind : VIOLATION_KIND_COUNT;
	trace->first_event = nv ? v[0].event : 0;
}

static int cmd_run(int argc, char **argv)
{
	static const struct option longopts[] = {
		COMMON_LONGOPTS,
		{ "workload", required_argument, NULL, OPT_WORKLOAD },
		{ "image", required_argument, NULL, OPT_IMAGE },
		{ "procs", required_argument, NULL, OPT_PROCS },
		{ "vcpus", required_argument, NULL, OPT_VCPUS },
		{ "ops", required_argument, NULL, OPT_OPS },
		{ "quiet", no_argument, NULL, OPT_QUIET },
		{ "watchdog", required_argument, NULL, OPT_WATCHDOG },
		{ "exit-after", required_argument, NULL, OPT_EXIT_AFTER },
		{ "deterministic", no_argument, NULL, OPT_DETERMINISTIC },
		{ "sched", required_argument, NULL, OPT_SCHED },
		{ "pct-depth", required_argument, NULL, OPT_PCT_DEPTH },
		{ "steps", required_argument, NULL, OPT_STEPS },
		{ "record", required_argument, NULL, OPT_RECORD },
		{ "protocol", required_argument, NULL, OPT_PROTOCOL },
		{ "reclaim-empty-tables", no_argument, NULL, OPT_RECLAIM },
		{ "khugepaged", required_argument, NULL, OPT_KHUGEPAGED },
		{ "scan-sleep-ms", required_argument, NULL, OPT_SCAN_SLEEP },
		{ "pages-to-scan", required_argument, NULL, OPT_PAGES_TO_SCAN },
		{ "max-ptes-none", required_argument, NULL, OPT_MAX_PTES_NONE },
		{ 0 },
	};
	bool khugepaged = false, tuned = false;
	uint64_t scan_sleep_ms = 10, pages_to_scan = 0, max_ptes_none = 0;
	struct common_opts co = { .arch_list = "all", .seconds = 3, .seed = 1, .memory = 256 };
	enum ptemu_protocol protocol = PTEMU_PROTOCOL_LOCKLESS;
	struct ptemu_features features = { 0 };
	struct stress_opts arches = { 0 };
	const char *workload = "shmem-stress", *image = NULL;
	uint64_t procs = 2, vcpus = 1, ops = 0;
	double watchdog = 10, exit_after = 0;
	bool deterministic = false;
	const char *record = NULL;
	struct ptemu_sched_config sched = { .strategy = PTEMU_SCHED_RANDOM, .pct_depth = 3,
					    .max_steps = 200000 };
	bool quiet = false;
	int c, rc, status = EXIT_CLEAN;
	FILE *json = NULL, *summary = stdout;
	char err[256];

	optind = 1;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		rc = common_option(c, optarg, &co);
		if (rc == 1)
			rc = sched_option(c, optarg, &sched, &deterministic);
		if (rc == 0)
			continue;
		if (rc != 1)
			return rc;
		switch (c) {
		case OPT_WORKLOAD:
			if (!known_workload(optarg)) {
				fprintf(stderr, "ptemu: unknown workload '%s'; valid: %s\n", optarg,
					PTEMU_WORKLOAD_NAMES);
				return EXIT_USAGE;
			}
			workload = optarg;
			break;
		case OPT_IMAGE:
			image = optarg;
			break;
		case OPT_PROTOCOL:
			if (ptemu_protocol_from_name(optarg) < 0)
				return usage_error("--protocol: '%s' is not lockless or legacy", optarg);
			protocol = (enum ptemu_protocol)ptemu_protocol_from_name(optarg);
			break;
		case OPT_RECLAIM:
			features.reclaim_empty_tables = true;
			break;
		case OPT_KHUGEPAGED:
			if (strcmp(optarg, "on") && strcmp(optarg, "off"))
				return usage_error("--khugepaged: '%s' is not on or off", optarg);
			khugepaged = !strcmp(optarg, "on");
			break;
		case OPT_SCAN_SLEEP:
			if (!parse_u64(optarg, 0, 60000, &scan_sleep_ms))
				return usage_error("--scan-sleep-ms: '%s' is not in 0..60000", optarg);
			tuned = true;
			break;
		case OPT_PAGES_TO_SCAN:
			if (!parse_u64(optarg, 1, 1u << 30, &pages_to_scan))
				return usage_error("--pages-to-scan: '%s' is not in 1..2^30", optarg);
			tuned = true;
			break;
		case OPT_MAX_PTES_NONE:
			if (!parse_u64(optarg, 0, 1u << 20, &max_ptes_none))
				return usage_error("--max-ptes-none: '%s' is not in 0..2^20", optarg);
			tuned = true;
			break;
		case OPT_PROCS:
			if (!parse_u64(optarg, 1, 16, &procs))
				return usage_error("--procs: '%s' is not in 1..16", optarg);
			break;
		case OPT_VCPUS:
			if (!parse_u64(optarg, 1, 16, &vcpus))
				return usage_error("--vcpus: '%s' is not in 1..16", optarg);
			break;
		case OPT_OPS:
			if (!parse_u64(optarg, 1, UINT64_MAX, &ops))
				return usage_error("--ops: '%s' is not a positive number", optarg);
			break;
		case OPT_QUIET:
			quiet = true;
			break;
		case OPT_WATCHDOG:
			if (!parse_seconds(optarg, &watchdog))
				return usage_error("--watchdog: '%s' is not a number in 0.1..3600", optarg);
			break;
		case OPT_EXIT_AFTER:
			if (!parse_seconds(optarg, &exit_after))
				return usage_error("--exit-after: '%s' is not a number in 0.1..3600", optarg);
			break;
		case OPT_STEPS:
			if (!parse_u64(optarg, 1000, 1000000000000ull, &sched.max_steps))
				return usage_error("--steps: '%s' is not in 1000..10^12", optarg);
			deterministic = true;
			break;
		case OPT_RECORD:
			record = optarg;
			deterministic = true;
			break;
		case OPT_HELP:
			fputs(usage_text, stdout);
			return EXIT_CLEAN;
		default:
			return usage_error("%s", "bad option for 'run'");
		}
	}
	if (optind < argc)
		return usage_error("unexpected argument '%s'", argv[optind]);
	if (deterministic && exit_after > 0)
		return usage_error("%s", "--exit-after is wall-clock time: not with --deterministic");
	sched.seed = co.seed;
	if (record && (!strcmp(co.arch_list, "all") || strchr(co.arch_list, ',')))
		return usage_error("%s", "--record records one run: give one --arch");
	if (record && tuned)
		return usage_error("%s", "a trace records khugepaged with its default tunables only");
	if (tuned && !khugepaged)
		return usage_error("%s", "khugepaged tunables need --khugepaged on");
	if (ptemu_check_unicorn(err, sizeof(err))) {
		fprintf(stderr, "ptemu: %s\n", err);
		return EXIT_INTERNAL;
	}
	if (parse_arches(co.arch_list, &arches, true) || check_injection(&arches, co.inject))
		return EXIT_USAGE;
	if (co.json) {
		if (!(json = open_json(co.json, &summary)))
			return EXIT_USAGE;
		fprintf(json, "{\"runs\":[");
	}
	for (unsigned i = 0; i < arches.narches; i++) {
		const struct ptemu_arch *a = arches.arches[i];
		char path[4096];
		struct ptemu_run_config cfg = {
			.arch = a,
			.workload = image ? image : workload,
			.procs = (unsigned)procs,
			.vcpus = (unsigned)vcpus,
			.seconds = co.seconds,
			.ops = ops,
			.seed = co.seed,
			.inject = co.inject,
			.protocol = protocol,
			.features = features,
			.khugepaged = khugepaged,
			.scan_sleep_ms = (double)scan_sleep_ms,
			.pages_to_scan = pages_to_scan,
			.max_ptes_none = (unsigned)max_ptes_none,
			.check_mode = co.fail_fast ? PTEMU_CHECK_FAIL_FAST : PTEMU_CHECK_CONTINUE,
			.phys_bytes = co.memory << 20,
			.log = quiet ? NULL : stderr,
			.watchdog_seconds = watchdog,
			.exit_after = exit_after,
			.deterministic = deterministic,
			.sched = sched,
		};
		struct ptemu_run_result r;
		struct ptemu_machine *m;
		struct ptemu_trace trace = { 0 };

		workload_image_path(a, workload, path, sizeof(path));
		cfg.image_path = image ? image : path;
		if (record) {
			cfg.sched.on_event = ptemu_trace_append;
			cfg.sched.event_ctx = &trace;
		}
		if (deterministic)
			fprintf(stderr, "ptemu: %s: %s, %u process%s x %u vCPU%s, %" PRIu64 " steps (deterministic)...\n",
				a->name, cfg.workload, cfg.procs, cfg.procs == 1 ? "" : "es", cfg.vcpus,
				cfg.vcpus == 1 ? "" : "s", cfg.sched.max_steps);
		else
			fprintf(stderr, "ptemu: %s: %s, %u process%s x %u vCPU%s, %.1f s...\n", a->name,
				cfg.workload, cfg.procs, cfg.procs == 1 ? "" : "es", cfg.vcpus,
				cfg.vcpus == 1 ? "" : "s", cfg.seconds);
		enum ptemu_run_error e = ptemu_run(&cfg, &m, &r);

		if (e == PTEMU_RUN_BAD_INPUT) {
			fprintf(stderr, "ptemu: %s: %s\n", a->name, r.message);
			if (m)
				ptemu_machine_destroy(m);
			status = EXIT_USAGE;
			break;
		}
		uint64_t nviol = m ? check_violation_count(m) : 0;

		fprintf(summary,
			"%-9s %-9s %s instructions=%" PRIu64 " tlb_fills=%" PRIu64 " faults=%" PRIu64
			" fault_retries=%" PRIu64 " syscalls=%" PRIu64 " shootdowns=%" PRIu64
			" collapses=%" PRIu64 " retracts=%" PRIu64 " violations=%" PRIu64,
			a->name, e != PTEMU_RUN_OK ? "ERROR" : nviol ? "VIOLATION" : "clean", cfg.workload,
			r.instructions, r.tlb_fills, m ? ptemu_stat_get(&m->stats, PTEMU_STAT_faults) : 0,
			m ? ptemu_stat_get(&m->stats, PTEMU_STAT_fault_retries) : 0, r.syscalls,
			r.shootdowns, m ? ptemu_stat_get(&m->stats, PTEMU_STAT_collapses) : 0,
			m ? ptemu_stat_get(&m->stats, PTEMU_STAT_retracts) : 0, nviol);
		if (deterministic)
			fprintf(summary, " steps=%" PRIu64 " digest=%016" PRIx64, r.steps, r.digest);
		fputc('\n', summary);
		if (e != PTEMU_RUN_OK) {
			fprintf(summary, "  error: %s\n", r.message);
			status = EXIT_INTERNAL;
		}
		if (nviol) {
			print_violation_kinds(summary, m);
			if (status == EXIT_CLEAN)
				status = EXIT_VIOLATIONS;
		}
		fflush(summary);
		if (json && m) {
			if (i)
				fputc(',', json);
			json_run_head(json, m, cfg.workload, cfg.seed, cfg.inject);
			if (deterministic)
				fprintf(json, "\"steps\":%" PRIu64 ",\"digest\":\"%016" PRIx64 "\",",
					r.steps, r.digest);
			fprintf(json, "\"procs\":%u,\"vcpus\":%u,\"elapsed_s\":%.3f,\"instructions\":%" PRIu64
				",\"blocks\":%" PRIu64 ",\"tlb_fills\":%" PRIu64 ",\"syscalls\":%" PRIu64
				",\"shootdowns\":%" PRIu64,
				cfg.procs, cfg.vcpus, r.elapsed, r.instructions, r.blocks, r.tlb_fills,
				r.syscalls, r.shootdowns);
			json_run_tail(json, m);
		}
		if (record && m && !r.hung) {
			finish_trace(&trace, a, &cfg, &r, m);
			if (ptemu_trace_write(record, &trace, err, sizeof(err))) {
				fprintf(stderr, "ptemu: %s\n", err);
				status = EXIT_INTERNAL;
			} else {
				fprintf(stderr, "ptemu: recorded %zu events (%.1f per step) to %s\n", trace.nevents,
					r.steps ? (double)trace.nevents / (double)r.steps : 0.0, record);
			}
		}
		ptemu_trace_free(&trace);
		if (r.hung) {
			/* Stuck vCPU threads still use the machine: report and leave now. */
			if (json)
				fprintf(json, "]}\n");
			fflush(NULL);
			_exit(EXIT_VIOLATIONS);
		}
		if (m)
			ptemu_machine_destroy(m);
	}
	json_close(json);
	return status;
}

/* One protocol's free-running run under collapse load, for bench latency. */
struct latency_row {
	struct ptemu_run_result r;
	uint64_t retracts, skips, collapses, attempts, faults;
	double rate;	/* retracts / (retracts + skips) */
};

static int latency_run(const struct ptemu_arch *a, const struct common_opts *co, enum ptemu_protocol p,
		       unsigned procs, unsigned vcpus, struct latency_row *row)
{
	char path[4096];
	struct ptemu_run_config cfg = {
		.arch = a, .workload = "shmem-stress", .procs = procs, .vcpus = vcpus,
		.seconds = co->seconds, .seed = co->seed, .phys_bytes = co->memory << 20,
		.protocol = p, .khugepaged = true, .scan_sleep_ms = 1, .time_faults = true,
	};
	struct ptemu_machine *m;

	workload_image_path(a, "shmem-stress", path, sizeof(path));
	cfg.image_path = path;
	fprintf(stderr, "ptemu: %s: shmem-stress %ux%u with khugepaged, %s, %.1f s...\n", a->name, procs,
		vcpus, ptemu_protocol_name(p), co->seconds);
	enum ptemu_run_error e = ptemu_run(&cfg, &m, &row->r);

	if (e != PTEMU_RUN_OK || check_violation_count(m)) {
		fprintf(stderr, "ptemu: %s %s: %s\n", a->name, ptemu_protocol_name(p),
			e != PTEMU_RUN_OK ? row->r.message : "violations: the measurement is void");
		if (m && !row->r.hung)
			ptemu_machine_destroy(m);
		return e != PTEMU_RUN_OK ? EXIT_INTERNAL : EXIT_VIOLATIONS;
	}
	row->retracts = ptemu_stat_get(&m->stats, PTEMU_STAT_retracts);
	row->skips = ptemu_stat_get(&m->stats, PTEMU_STAT_retract_skips);
	row->collapses = ptemu_stat_get(&m->stats, PTEMU_STAT_collapses);
	row->attempts = ptemu_stat_get(&m->stats, PTEMU_STAT_collapse_attempts);
	row->faults = ptemu_stat_get(&m->stats, PTEMU_STAT_faults);
	row->rate = row->retracts + row->skips ? (double)row->retracts / (double)(row->retracts + row->skips) : 0;
	ptemu_machine_destroy(m);
	return EXIT_CLEAN;
}

/* bench latency: the same seed and collapse load (khugepaged and the guests' MADV_COLLAPSE)
 * under the lockless and the legacy protocol. */
static int cmd_bench_latency(int argc, char **argv)
{
	static const struct option longopts[] = {
		COMMON_LONGOPTS,
		{ "procs", required_argument, NULL, OPT_PROCS },
		{ "vcpus", required_argument, NULL, OPT_VCPUS },
		{ 0 },
	};
	struct common_opts co = { .arch_list = "all", .seconds = 5, .seed = 1, .memory = 256 };
	struct stress_opts arches = { 0 };
	uint64_t procs = 2, vcpus = 2;
	FILE *json = NULL, *summary = stdout;
	int c, rc;

	optind = 2;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		rc = common_option(c, optarg, &co);
		if (rc == 0)
			continue;
		if (rc != 1)
			return rc;
		if (c == OPT_PROCS && !parse_u64(optarg, 1, 16, &procs))
			return usage_error("--procs: '%s' is not in 1..16", optarg);
		if (c == OPT_VCPUS && !parse_u64(optarg, 1, 16, &vcpus))
			return usage_error("--vcpus: '%s' is not in 1..16", optarg);
		if (c == OPT_PROCS || c == OPT_VCPUS)
			continue;
		if (c == OPT_HELP) {
			fputs(usage_text, stdout);
			return EXIT_CLEAN;
		}
		return usage_error("%s", "bad option for 'bench latency'");
	}
	if (optind < argc)
		return usage_error("unexpected argument '%s'", argv[optind]);
	if (parse_arches(co.arch_list, &arches, true))
		return EXIT_USAGE;
	if (co.json) {
		if (!(json = open_json(co.json, &summary)))
			return EXIT_USAGE;
		fprintf(json, "{\"latency\":[");
	}
	fprintf(summary, "%-9s %-9s %9s %9s %9s %10s %9s %9s %9s %8s\n", "arch", "protocol", "faults",
		"p50 ns", "p99 ns", "max ns", "collapses", "retracts", "skipped", "success");
	for (unsigned i = 0; i < arches.narches; i++) {
		const struct ptemu_arch *a = arches.arches[i];
		struct latency_row rows[2];

		for (int p = 0; p < 2; p++) {
			rc = latency_run(a, &co, p ? PTEMU_PROTOCOL_LEGACY : PTEMU_PROTOCOL_LOCKLESS,
					 (unsigned)procs, (unsigned)vcpus, &rows[p]);
			if (rc != EXIT_CLEAN) {
				json_close(json);
				return rc;
			}
			fprintf(summary, "%-9s %-9s %9" PRIu64 " %9" PRIu64 " %9" PRIu64 " %10" PRIu64 " %9" PRIu64
				" %9" PRIu64 " %9" PRIu64 " %7.1f%%\n", a->name,
				ptemu_protocol_name(p ? PTEMU_PROTOCOL_LEGACY : PTEMU_PROTOCOL_LOCKLESS),
				rows[p].r.faults_timed, rows[p].r.fault_p50_ns, rows[p].r.fault_p99_ns,
				rows[p].r.fault_max_ns, rows[p].collapses, rows[p].retracts, rows[p].skips,
				100 * rows[p].rate);
		}
		double r50 = (double)rows[0].r.fault_p50_ns / (double)(rows[1].r.fault_p50_ns ? rows[1].r.fault_p50_ns : 1);
		double r99 = (double)rows[0].r.fault_p99_ns / (double)(rows[1].r.fault_p99_ns ? rows[1].r.fault_p99_ns : 1);
		double rmax = (double)rows[0].r.fault_max_ns / (double)(rows[1].r.fault_max_ns ? rows[1].r.fault_max_ns : 1);

		fprintf(summary, "%-9s lockless/legacy: p50 %.2f, p99 %.2f, max %.2f, retraction success "
			"%.1f%% vs %.1f%%\n", a->name, r50, r99, rmax, 100 * rows[0].rate, 100 * rows[1].rate);
		fflush(summary);
		if (json) {
			fprintf(json, "%s{\"arch\":\"%s\",\"seconds\":%.1f,\"seed\":%" PRIu64, i ? "," : "",
				a->name, co.seconds, co.seed);
			for (int p = 0; p < 2; p++)
				fprintf(json, ",\"%s\":{\"faults\":%" PRIu64 ",\"p50_ns\":%" PRIu64
					",\"p99_ns\":%" PRIu64 ",\"max_ns\":%" PRIu64 ",\"collapses\":%" PRIu64
					",\"collapse_attempts\":%" PRIu64 ",\"retracts\":%" PRIu64
					",\"retract_skips\":%" PRIu64 ",\"retraction_success\":%.4f}",
					p ? "legacy" : "lockless", rows[p].r.faults_timed, rows[p].r.fault_p50_ns,
					rows[p].r.fault_p99_ns, rows[p].r.fault_max_ns, rows[p].collapses,
					rows[p].attempts, rows[p].retracts, rows[p].skips, rows[p].rate);
			fprintf(json, ",\"ratio_p50\":%.3f,\"ratio_p99\":%.3f,\"ratio_max\":%.3f}", r50, r99, rmax);
		}
	}
	json_close(json);
	return EXIT_CLEAN;
}

static int cmd_bench(int argc, char **argv)
{
	static const struct option longopts[] = { COMMON_LONGOPTS, { 0 } };
	struct common_opts co = { .arch_list = "all", .seconds = 3, .seed = 1, .memory = 256 };
	struct stress_opts arches = { 0 };
	FILE *json = NULL, *summary = stdout;
	int c, rc;

	if (argc >= 2 && !strcmp(argv[1], "latency"))
		return cmd_bench_latency(argc, argv);
	if (argc < 2 || strcmp(argv[1], "overhead")) {
		fprintf(stderr, "ptemu: bench what? 'overhead' or 'latency'\n");
		return EXIT_USAGE;
	}
	optind = 2;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		rc = common_option(c, optarg, &co);
		if (rc == 0)
			continue;
		if (rc != 1)
			return rc;
		if (c == OPT_HELP) {
			fputs(usage_text, stdout);
			return EXIT_CLEAN;
		}
		return usage_error("%s", "bad option for 'bench overhead'");
	}
	if (parse_arches(co.arch_list, &arches, true))
		return EXIT_USAGE;
	if (co.json) {
		if (!(json = open_json(co.json, &summary)))
			return EXIT_USAGE;
		fprintf(json, "{\"overhead\":[");
	}
	for (unsigned i = 0; i < arches.narches; i++) {
		const struct ptemu_arch *a = arches.arches[i];
		char path[4096];
		struct ptemu_run_config cfg = {
			.arch = a, .workload = "shmem-stress", .procs = 1, .vcpus = 1,
			.seconds = co.seconds, .seed = co.seed, .phys_bytes = co.memory << 20,
			.time_fills = true, .no_collapse = true,	/* bare Unicorn has no collapse */
		};
		struct ptemu_run_result r;
		struct ptemu_bench_bare_result bare;
		struct ptemu_machine *m;

		workload_image_path(a, "shmem-stress", path, sizeof(path));
		cfg.image_path = path;
		fprintf(stderr, "ptemu: %s: shmem-stress through ptemu, %.1f s...\n", a->name, co.seconds);
		if (ptemu_run(&cfg, &m, &r) != PTEMU_RUN_OK) {
			fprintf(stderr, "ptemu: %s: %s\n", a->name, r.message);
			if (m)
				ptemu_machine_destroy(m);
			return EXIT_INTERNAL;
		}
		ptemu_machine_destroy(m);
		fprintf(stderr, "ptemu: %s: the same image on bare Unicorn, %.1f s...\n", a->name, co.seconds);
		if (ptemu_bench_bare(a, path, co.seconds, co.seed, &bare)) {
			fprintf(stderr, "ptemu: %s: bare run: %s\n", a->name, bare.error);
			return EXIT_INTERNAL;
		}
		double ops_ptemu = 16.0 * (double)r.polls / r.elapsed;
		double ops_bare = 16.0 * (double)bare.polls / bare.elapsed;
		double miss = r.misses_timed ? (double)r.miss_ns / (double)r.misses_timed : 0;
		double fill = bare.fills ? (double)bare.fill_ns / (double)bare.fills : 0;

		fprintf(summary,
			"%-9s ops/s ptemu=%.0f bare=%.0f ratio=%.2f (target >= 0.8) | "
			"ns per fill: logical miss=%.0f identity=%.0f ratio=%.2f (target <= 2) | "
			"fills ptemu=%" PRIu64 " bare=%" PRIu64 " instructions/s ptemu=%.0f\n",
			a->name, ops_ptemu, ops_bare, ops_ptemu / ops_bare, miss, fill, miss / fill,
			r.tlb_fills, bare.fills, (double)r.instructions / r.elapsed);
		fflush(summary);
		if (json)
			fprintf(json, "%s{\"arch\":\"%s\",\"ops_per_s_ptemu\":%.0f,\"ops_per_s_bare\":%.0f,"
				"\"throughput_ratio\":%.3f,\"miss_ns\":%.1f,\"identity_fill_ns\":%.1f,"
				"\"miss_ratio\":%.3f,\"fills_ptemu\":%" PRIu64 ",\"fills_bare\":%" PRIu64 "}",
				i ? "," : "", a->name, ops_ptemu, ops_bare, ops_ptemu / ops_bare, miss, fill,
				miss / fill, r.tlb_fills, bare.fills);
	}
	json_close(json);
	return EXIT_CLEAN;
}

/* Replay compares events as they come: the first difference is where it diverged. */
struct replay_check {
	const struct ptemu_trace *trace;
	size_t next;
	bool diverged;
	size_t at;
	struct ptemu_trace_event got;
};

static void replay_on_event(void *ctx, uint64_t kind, uint64_t a, uint64_t b)
{
	struct replay_check *c = ctx;
	const struct ptemu_trace_event *want = c->next < c->trace->nevents ? &c->trace->events[c->next] : NULL;

	if (c->diverged)
		return;
	if (want && want->kind == kind && want->a == a && want->b == b) {
		c->next++;
		return;
	}
	c->diverged = true;
	c->at = c->next;
	c->got = (struct ptemu_trace_event){ kind, a, b };
}

static void print_event(FILE *f, const struct ptemu_trace_event *e)
{
	fprintf(f, "%s (kind %#" PRIx64 ") a=%#" PRIx64 " b=%#" PRIx64, ptemu_trace_event_name(e->kind),
		e->kind, e->a, e->b);
}

/* Reads a trace and finds its image; refuses another build, library or image unless
 * forced. 0, or EXIT_USAGE with the reason printed. */
static int load_trace_for_run(const char *file, bool force, const char *image, struct ptemu_trace *t,
			      const struct ptemu_arch **ap, char *path, size_t pathlen)
{
	struct ptemu_trace_header now;
	struct ptemu_elf_image img;
	char err[512];

	if (ptemu_trace_read(file, t, err, sizeof(err))) {
		fprintf(stderr, "ptemu: %s\n", err);
		return EXIT_USAGE;
	}
	ptemu_trace_header_init(&now);
	const struct ptemu_arch *a = ptemu_arch_find(t->h.arch);
	const char *why = !a ? "its model is unknown here" :
			  t->h.build_id != now.build_id ? "it was recorded by another ptemu build" :
			  t->h.unicorn_version != now.unicorn_version ? "it was recorded with another Unicorn" :
			  t->h.capstone_version != now.capstone_version ? "it was recorded with another Capstone" :
			  NULL;
	if (why && (!a || !force)) {
		fprintf(stderr, "ptemu: %s: refused: %s%s\n", file, why, a ? " (--force replays it anyway)" : "");
		ptemu_trace_free(t);
		return EXIT_USAGE;
	}
	if (image)
		snprintf(path, pathlen, "%s", image);
	else if (known_workload(t->h.workload))
		workload_image_path(a, t->h.workload, path, pathlen);
	else
		snprintf(path, pathlen, "%s", t->h.workload);
	if (ptemu_elf_load(path, a->isa.elf_machine, a->isa.elf_class, &img, err, sizeof(err))) {
		fprintf(stderr, "ptemu: %s\n", err);
		ptemu_trace_free(t);
		return EXIT_USAGE;
	}
	uint64_t hash = img.hash;

	ptemu_elf_free(&img);
	if (hash != t->h.image_hash && !force) {
		fprintf(stderr, "ptemu: %s: refused: the image %s differs from the one recorded "
			"(--force replays it anyway)\n", file, path);
		ptemu_trace_free(t);
		return EXIT_USAGE;
	}
	*ap = a;
	return 0;
}

/* The recorded decisions: every switch, at its step. NULL on OOM. */
static struct ptemu_sched_decision *trace_decisions(const struct ptemu_trace *t, size_t *n)
{
	struct ptemu_sched_decision *d = malloc((t->nevents ? t->nevents : 1) * sizeof(*d));

	*n = 0;
	for (size_t k = 0; d && k < t->nevents; k++)
		if ((t->events[k].kind & 0xff) == PTEMU_EV_SWITCH)
			d[(*n)++] = (struct ptemu_sched_decision){ t->events[k].b,
								   (uint32_t)(t->events[k].a & 0xffff) };
	return d;
}

/* A run configured as the trace's, following `d`, for `steps` steps. */
static struct ptemu_run_config trace_run_config(const struct ptemu_trace *t, const struct ptemu_arch *a,
						const char *path, const struct ptemu_sched_decision *d,
						size_t nd, uint64_t steps)
{
	struct ptemu_run_config cfg = {
		.arch = a, .image_path = path, .workload = t->h.workload, .procs = t->h.procs,
		.vcpus = t->h.vcpus, .seconds = 3600, .seed = t->h.seed,
		.phys_bytes = t->h.phys_bytes,
		.deterministic = true,
		.sched = { .seed = t->h.seed, .strategy = (enum ptemu_sched_strategy)t->h.strategy,
			   .pct_depth = t->h.pct_depth, .max_steps = steps, .forced = d, .nforced = nd },
	};

	ptemu_trace_apply_config(&t->h, &cfg);
	return cfg;
}

static int cmd_replay(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "force", no_argument, NULL, OPT_FORCE },
		{ "image", required_argument, NULL, OPT_IMAGE },
		{ "help", no_argument, NULL, OPT_HELP },
		{ 0 },
	};
	const char *image = NULL;
	bool force = false;
	struct ptemu_trace t;
	char path[4096];
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		if (c == OPT_FORCE)
			force = true;
		else if (c == OPT_IMAGE)
			image = optarg;
		else if (c == OPT_HELP) {
			fputs(usage_text, stdout);
			return EXIT_CLEAN;
		} else
			return usage_error("%s", "bad option for 'replay'");
	}
	if (optind + 1 != argc)
		return usage_error("%s", "replay takes one trace file");
	const struct ptemu_arch *a;
	int rc = load_trace_for_run(argv[optind], force, image, &t, &a, path, sizeof(path));

	if (rc)
		return rc;
	size_t nd;
	struct ptemu_sched_decision *d = trace_decisions(&t, &nd);
	struct replay_check check = { .trace = &t };
	struct ptemu_run_config cfg = trace_run_config(&t, a, path, d, nd, t.h.max_steps);

	cfg.sched.on_event = replay_on_event;
	cfg.sched.event_ctx = &check;
	struct ptemu_run_result r;
	struct ptemu_machine *m;

	fprintf(stderr, "ptemu: replaying %s: %s %s, %zu events, %zu decisions\n", argv[optind], a->name,
		t.h.workload, t.nevents, nd);
	enum ptemu_run_error e = ptemu_run(&cfg, &m, &r);
	int status = EXIT_CLEAN;

	if (e == PTEMU_RUN_BAD_INPUT) {
		fprintf(stderr, "ptemu: %s\n", r.message);
		status = EXIT_USAGE;
	} else if (check.diverged || check.next != t.nevents) {
		printf("DIVERGED at event %zu of %zu\n  recorded: ", check.at, t.nevents);
		if (check.diverged && check.at < t.nevents)
			print_event(stdout, &t.events[check.at]);
		else if (check.diverged)
			printf("(end of the trace)");
		else
			print_event(stdout, &t.events[check.next]);
		printf("\n  replayed: ");
		if (check.diverged)
			print_event(stdout, &check.got);
		else
			printf("(the run ended)");
		printf("\n");
		status = EXIT_INTERNAL;
	} else {
		size_t nv = 0;
		const struct ptemu_violation *v = m ? check_violations(m, &nv) : NULL;

		printf("replay matches: %zu events, %" PRIu64 " steps, digest %016" PRIx64 " (recorded %016" PRIx64 ")\n",
		       t.nevents, r.steps, r.digest, t.digest);
		if (t.violations || nv) {
			printf("  recorded: %" PRIu64 " violation(s), first %s at event %" PRIu64 "\n", t.violations,
			       t.first_kind < VIOLATION_KIND_COUNT ? ptemu_violation_name(t.first_kind) : "none",
			       t.first_event);
			printf("  replayed: %" PRIu64 " violation(s), first %s at event %" PRIu64 "\n",
			       check_violation_count(m), nv ? ptemu_violation_name(v[0].kind) : "none",
			       nv ? v[0].event : 0);
			if (nv)
				print_violation_kinds(stdout, m);
			status = EXIT_VIOLATIONS;
		}
		if (e != PTEMU_RUN_OK) {
			printf("  error: %s\n", r.message);
			status = EXIT_INTERNAL;
		}
	}
	free(d);
	ptemu_trace_free(&t);
	if (m)
		ptemu_machine_destroy(m);
	return status;
}

/* One minimization trial: does the run still show the violation kind? Its trace, if so,
 * replaces *best. */
static bool minimize_trial(const struct ptemu_trace *t, const struct ptemu_arch *a, const char *path,
			   const struct ptemu_sched_decision *d, size_t nd, uint64_t steps,
			   unsigned kind, struct ptemu_trace *best, unsigned *trials)
{
	struct ptemu_trace out = { 0 };
	struct ptemu_run_config cfg = trace_run_config(t, a, path, d, nd, steps);
	struct ptemu_run_result r;
	struct ptemu_machine *m;
	bool kept = false;

	cfg.sched.on_event = ptemu_trace_append;
	cfg.sched.event_ctx = &out;
	(*trials)++;
	if (ptemu_run(&cfg, &m, &r) == PTEMU_RUN_OK && m && check_kind_count(m, (enum ptemu_violation_kind)kind)) {
		finish_trace(&out, a, &cfg, &r, m);
		ptemu_trace_free(best);
		*best = out;
		kept = true;
	} else {
		ptemu_trace_free(&out);
	}
	if (m)
		ptemu_machine_destroy(m);
	return kept;
}

static int cmd_minimize(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "force", no_argument, NULL, OPT_FORCE },
		{ "image", required_argument, NULL, OPT_IMAGE },
		{ "help", no_argument, NULL, OPT_HELP },
		{ 0 },
	};
	const char *image = NULL, *out = NULL;
	bool force = false;
	struct ptemu_trace t, best = { 0 };
	const struct ptemu_arch *a;
	char path[4096], err[512];
	unsigned trials = 0;
	int c;

	optind = 1;
	while ((c = getopt_long(argc, argv, "o:", longopts, NULL)) != -1) {
		if (c == 'o')
			out = optarg;
		else if (c == OPT_FORCE)
			force = true;
		else if (c == OPT_IMAGE)
			image = optarg;
		else if (c == OPT_HELP) {
			fputs(usage_text, stdout);
			return EXIT_CLEAN;
		} else
			return usage_error("%s", "bad option for 'minimize'");
	}
	if (optind + 1 != argc || !out)
		return usage_error("%s", "minimize takes one trace file and -o OUT");
	int rc = load_trace_for_run(argv[optind], force, image, &t, &a, path, sizeof(path));

	if (rc)
		return rc;
	if (t.first_kind >= VIOLATION_KIND_COUNT) {
		fprintf(stderr, "ptemu: %s: the run was clean: nothing to minimize\n", argv[optind]);
		ptemu_trace_free(&t);
		return EXIT_USAGE;
	}
	unsigned kind = t.first_kind;
	size_t nd;
	struct ptemu_sched_decision *d = trace_decisions(&t, &nd);
	uint64_t lo = 1000, hi = t.steps;

	fprintf(stderr, "ptemu: minimizing %s: keeping %s; %" PRIu64 " steps, %zu decisions\n", argv[optind],
		ptemu_violation_name((enum ptemu_violation_kind)kind), t.steps, nd);
	/* Run length first: the shortest prefix of the schedule that still shows the kind. */
	if (!minimize_trial(&t, a, path, d, nd, hi, kind, &best, &trials)) {
		fprintf(stderr, "ptemu: the recorded violation does not reproduce: replay it to see where\n");
		free(d);
		ptemu_trace_free(&t);
		return EXIT_INTERNAL;
	}
	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;

		if (minimize_trial(&t, a, path, d, nd, mid, kind, &best, &trials))
			hi = mid;
		else
			lo = mid + 1;
	}
	if (!minimize_trial(&t, a, path, d, nd, hi, kind, &best, &trials))
		fprintf(stderr, "ptemu: warning: the shortest length did not reproduce twice\n");
	/* Then the decisions (delta debugging): drop chunks the violation does not need. A
	 * dropped decision lets the running thread go on. */
	while (nd && d[nd - 1].step > hi)
		nd--;
	for (size_t chunk = nd / 2; chunk >= 1 && trials < 60; chunk /= 2) {
		for (size_t at = 0; at + chunk <= nd && trials < 60;) {
			struct ptemu_sched_decision *trial = malloc((nd ? nd : 1) * sizeof(*trial));
			size_t nt = 0;

			for (size_t k = 0; trial && k < nd; k++)
				if (k < at || k >= at + chunk)
					trial[nt++] = d[k];
			if (trial && minimize_trial(&t, a, path, trial, nt, hi, kind, &best, &trials)) {
				free(d);
				d = trial;
				nd = nt;
			} else {
				free(trial);
				at += chunk;
			}
		}
	}
	if (ptemu_trace_write(out, &best, err, sizeof(err))) {
		fprintf(stderr, "ptemu: %s\n", err);
		rc = EXIT_INTERNAL;
	} else {
		printf("minimized in %u runs: %" PRIu64 " -> %" PRIu64 " steps, %zu -> %zu events, "
		       "%" PRIu64 " violation(s), first %s at event %" PRIu64 "; written to %s\n",
		       trials, t.steps, best.steps, t.nevents, best.nevents, best.violations,
		       ptemu_violation_name((enum ptemu_violation_kind)best.first_kind), best.first_event, out);
		rc = EXIT_CLEAN;
	}
	free(d);
	ptemu_trace_free(&best);
	ptemu_trace_free(&t);
	return rc;
}

/* The instruction of an insn event, disassembled for the trace's model. */
static void print_insn(FILE *f, const struct ptemu_arch *a, const struct ptemu_trace_event *e, uint64_t pc)
{
	uint8_t bytes[16];
	csh cs;
	cs_insn *insn;

	memcpy(bytes, &e->a, 8);
	memcpy(bytes + 8, &e->b, 8);
	if (!a || cs_open((cs_arch)a->isa.cs_arch, (cs_mode)a->isa.cs_mode, &cs) != CS_ERR_OK)
		return;
	if (cs_disasm(cs, bytes, sizeof(bytes), pc, 1, &insn) == 1) {
		fprintf(f, "  %#" PRIx64 ": %s %s", pc, insn->mnemonic, insn->op_str);
		cs_free(insn, 1);
	}
	cs_close(&cs);
}

/* Chrome trace-event JSON (ui.perfetto.dev): a track per scheduler thread with its running
 * spans, faults and syscalls as instants, violations as global instants. Time is the
 * scheduler step (1 step = 1 us on the time axis). */
static int export_perfetto(const struct ptemu_trace *t, const char *out)
{
	FILE *f = fopen(out, "w");
	int running = -1;
	uint64_t now = 0, last_start = 0;

	if (!f) {
		fprintf(stderr, "ptemu: cannot write %s: %s\n", out, strerror(errno));
		return EXIT_USAGE;
	}
	fprintf(f, "{\"displayTimeUnit\":\"ns\",\"traceEvents\":[");
	fprintf(f, "{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":1,\"args\":{\"name\":\"ptemu %s %s\"}}",
		t->h.arch, t->h.workload);
	for (size_t k = 0; k < t->nevents; k++) {
		const struct ptemu_trace_event *e = &t->events[k];
		int who = (int)((e->kind >> 8) & 0xff) - 1;

		switch (e->kind & 0xff) {
		case PTEMU_EV_SWITCH:
			now = e->b;
			if (running >= 0 && now > last_start)
				fprintf(f, ",{\"name\":\"running\",\"ph\":\"X\",\"pid\":1,\"tid\":%d,\"ts\":%" PRIu64
					   ",\"dur\":%" PRIu64 "}", running, last_start, now - last_start);
			running = (int)(e->a & 0xffff);
			last_start = now;
			break;
		case PTEMU_EV_FAULT:
			fprintf(f, ",{\"name\":\"fault\",\"ph\":\"i\",\"s\":\"t\",\"pid\":1,\"tid\":%d,\"ts\":%" PRIu64
				   ",\"args\":{\"va\":\"%#" PRIx64 "\",\"pc\":\"%#" PRIx64 "\"}}", who, now, e->a >> 2, e->b);
			break;
		case PTEMU_EV_SYSCALL:
			fprintf(f, ",{\"name\":\"syscall %" PRIu64 "\",\"ph\":\"i\",\"s\":\"t\",\"pid\":1,\"tid\":%d,\"ts\":%" PRIu64 "}",
				e->a, who, now);
			break;
		case PTEMU_EV_SHOOTDOWN:
			fprintf(f, ",{\"name\":\"shootdown\",\"ph\":\"i\",\"s\":\"t\",\"pid\":1,\"tid\":%d,\"ts\":%" PRIu64
				   ",\"args\":{\"start\":\"%#" PRIx64 "\",\"end\":\"%#" PRIx64 "\"}}", who, now, e->a, e->b);
			break;
		case PTEMU_EV_GP_END:
			fprintf(f, ",{\"name\":\"grace period: %" PRIu64 " callbacks\",\"ph\":\"i\",\"s\":\"t\",\"pid\":1,\"tid\":0,\"ts\":%" PRIu64 "}",
				e->a, now);
			break;
		case 16:	/* violation */
			fprintf(f, ",{\"name\":\"%s\",\"ph\":\"i\",\"s\":\"g\",\"pid\":1,\"tid\":%d,\"ts\":%" PRIu64 "}",
				e->a < VIOLATION_KIND_COUNT ? ptemu_violation_name((enum ptemu_violation_kind)e->a) : "?",
				who, now);
			break;
		default:
			break;
		}
	}
	if (running >= 0 && t->steps > last_start)
		fprintf(f, ",{\"name\":\"running\",\"ph\":\"X\",\"pid\":1,\"tid\":%d,\"ts\":%" PRIu64 ",\"dur\":%" PRIu64 "}",
			running, last_start, t->steps - last_start);
	fprintf(f, "]}\n");
	if (fclose(f)) {
		fprintf(stderr, "ptemu: cannot write %s: %s\n", out, strerror(errno));
		return EXIT_INTERNAL;
	}
	return EXIT_CLEAN;
}

static int cmd_trace(int argc, char **argv)
{
	struct ptemu_trace t;
	char err[512];
	bool dump = argc >= 2 && !strcmp(argv[1], "dump"), stats = argc >= 2 && !strcmp(argv[1], "stats");
	bool export = argc >= 2 && !strcmp(argv[1], "export"), disasm = false;
	uint64_t limit = UINT64_MAX;
	const char *file = NULL, *out = NULL;

	if (!dump && !stats && !export)
		return usage_error("%s", "trace what? dump FILE [--limit N] [--disasm] | stats FILE | "
				   "export --format perfetto FILE -o OUT");
	for (int i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "--limit") && i + 1 < argc && dump) {
			if (!parse_u64(argv[++i], 1, UINT64_MAX, &limit))
				return usage_error("--limit: '%s' is not a positive number", argv[i]);
		} else if (!strcmp(argv[i], "--disasm") && dump) {
			disasm = true;
		} else if (!strcmp(argv[i], "--format") && i + 1 < argc && export) {
			if (strcmp(argv[++i], "perfetto"))
				return usage_error("--format: '%s' is not one of: perfetto", argv[i]);
		} else if (!strcmp(argv[i], "-o") && i + 1 < argc && export) {
			out = argv[++i];
		} else if (!file && argv[i][0] != '-') {
			file = argv[i];
		} else {
			return usage_error("unexpected argument '%s'", argv[i]);
		}
	}
	if (!file)
		return usage_error("%s", "trace dump|stats|export takes a trace file");
	if (export && !out)
		return usage_error("%s", "trace export needs -o OUT");
	if (ptemu_trace_read(file, &t, err, sizeof(err))) {
		fprintf(stderr, "ptemu: %s\n", err);
		return EXIT_USAGE;
	}
	if (export) {
		int rc = export_perfetto(&t, out);

		ptemu_trace_free(&t);
		return rc;
	}
	const struct ptemu_arch *arch = ptemu_arch_find(t.h.arch);
	uint64_t last_pc = 0;

	printf("trace %s: format %u, ptemu %s, unicorn %u.%u, capstone %u.%u, build %016" PRIx64 "\n",
	       file, t.h.format_version, t.h.ptemu_version, t.h.unicorn_version >> 8,
	       t.h.unicorn_version & 0xff, t.h.capstone_version >> 8, t.h.capstone_version & 0xff,
	       t.h.build_id);
	struct ptemu_run_config rc = { 0 };

	ptemu_trace_apply_config(&t.h, &rc);
	printf("run: %s %s image %016" PRIx64 ", %u process(es) x %u vCPU(s), seed %" PRIu64
	       ", inject %s, protocol %s%s%s%s, sched %s depth %u, %" PRIu64 " steps max, %" PRIu64
	       " MiB\n",
	       t.h.arch, t.h.workload, t.h.image_hash, t.h.procs, t.h.vcpus, t.h.seed,
	       injection_name(rc.inject), ptemu_protocol_name(rc.protocol),
	       rc.features.reclaim_empty_tables ? ", reclaim-empty-tables" : "",
	       rc.khugepaged ? ", khugepaged" : "",
	       rc.check_mode == PTEMU_CHECK_FAIL_FAST ? ", fail-fast" : "",
	       t.h.strategy ? "pct" : "random",
	       t.h.pct_depth, t.h.max_steps, t.h.phys_bytes >> 20);
	printf("outcome: %" PRIu64 " steps, digest %016" PRIx64 ", %" PRIu64 " violation(s)", t.steps,
	       t.digest, t.violations);
	if (t.first_kind < VIOLATION_KIND_COUNT)
		printf(", first %s at event %" PRIu64, ptemu_violation_name(t.first_kind), t.first_event);
	printf("\n");
	if (stats) {
		uint64_t by[256] = { 0 };

		for (size_t k = 0; k < t.nevents; k++)
			by[t.events[k].kind & 0xff]++;
		printf("%zu events, %.2f per step, %.1f MiB per million steps\n", t.nevents,
		       t.steps ? (double)t.nevents / (double)t.steps : 0.0,
		       t.steps ? (double)t.nevents * 24.0 / (double)t.steps : 0.0);
		for (int k = 0; k < 256; k++)
			if (by[k])
				printf("  %-13s %" PRIu64 "\n", ptemu_trace_event_name((uint64_t)k), by[k]);
	} else {
		for (size_t k = 0; k < t.nevents && k < limit; k++) {
			printf("%8zu thread %-3d ", k, (int)((t.events[k].kind >> 8) & 0xff) - 1);
			print_event(stdout, &t.events[k]);
			if ((t.events[k].kind & 0xff) == PTEMU_EV_FAULT)
				last_pc = t.events[k].b;
			if (disasm && (t.events[k].kind & 0xff) == PTEMU_EV_INSN)
				print_insn(stdout, arch, &t.events[k], last_pc);
			printf("\n");
		}
	}
	ptemu_trace_free(&t);
	return EXIT_CLEAN;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fputs(usage_text, stderr);
		return EXIT_USAGE;
	}
	if (!strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		fputs(usage_text, stdout);
		return EXIT_CLEAN;
	}
	if (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version")) {
		printf("ptemu %s\n", PTEMU_VERSION);
		return EXIT_CLEAN;
	}
	if (!strcmp(argv[1], "list"))
		return cmd_list(argc - 1, argv + 1);
	if (!strcmp(argv[1], "stress"))
		return cmd_stress(argc - 1, argv + 1);
	if (!strcmp(argv[1], "run"))
		return cmd_run(argc - 1, argv + 1);
	if (!strcmp(argv[1], "bench"))
		return cmd_bench(argc - 1, argv + 1);
	if (!strcmp(argv[1], "replay"))
		return cmd_replay(argc - 1, argv + 1);
	if (!strcmp(argv[1], "trace"))
		return cmd_trace(argc - 1, argv + 1);
	if (!strcmp(argv[1], "minimize"))
		return cmd_minimize(argc - 1, argv + 1);
	if (!strcmp(argv[1], "campaign"))
		return cmd_campaign(argc - 1, argv + 1);
	return usage_error("unknown command '%s'", argv[1]);
}
