/* ptemu: the command-line program. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ptemu/arch.h>
#include <ptemu/check.h>
#include <ptemu/inject.h>
#include <ptemu/machine.h>
#include <ptemu/ptstress.h>
#include <ptemu/stats.h>
#include <ptemu/sync.h>

enum { EXIT_CLEAN = 0, EXIT_VIOLATIONS = 1, EXIT_USAGE = 2, EXIT_INTERNAL = 3 };

static const char usage_text[] =
	"usage: ptemu <command> [options]\n"
	"\n"
	"commands:\n"
	"  stress [options]        page-table stress of the core: workers map, lock and update\n"
	"                          PTEs while a retractor detaches tables and frees them by RCU\n"
	"  list arches|injections|violations\n"
	"  help                    this text\n"
	"  version\n"
	"\n"
	"stress options:\n"
	"  --arch A[,B...]|all     models to run (default: all; see 'ptemu list arches')\n"
	"  --seconds S             time bound per model, 0.1..3600 (default 2)\n"
	"  --seed N                random seed (default 1)\n"
	"  --workers W             worker threads, 1..32 (default 3)\n"
	"  --tables T              PMD ranges in play, 1..4096 (default 8)\n"
	"  --inject NAME           remove one protocol step (see 'ptemu list injections')\n"
	"  --fail-fast             stop a model's run at its first violation\n"
	"  --memory MIB            simulated physical memory in MiB (default 256)\n"
	"  --json FILE|-           also write a JSON report ('-' for stdout; the summary then\n"
	"                          goes to stderr)\n"
	"\n"
	"exit status: 0 clean, 1 violations found, 2 bad usage, 3 internal error\n";

static int usage_error(const char *fmt, const char *arg)
{
	fprintf(stderr, "ptemu: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\nTry 'ptemu help'.\n");
	return EXIT_USAGE;
}

static void print_arch_names(FILE *f)
{
	for (const struct ptemu_arch *const *a = ptemu_arch_all(); *a; a++)
		fprintf(f, "%s%s", a == ptemu_arch_all() ? "" : ", ", (*a)->name);
}

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
	fprintf(stderr, "ptemu: list what? one of: arches, injections, violations\n");
	return EXIT_USAGE;
}

static bool parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s || *end || s[0] == '-' || v < lo || v > hi)
		return false;
	*out = v;
	return true;
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

static int parse_arches(const char *list, struct stress_opts *o)
{
	char buf[256];

	if (!strcmp(list, "all")) {
		for (const struct ptemu_arch *const *a = ptemu_arch_all(); *a && o->narches < 16; a++)
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
		if (o->narches < 16)
			o->arches[o->narches++] = a;
	}
	return o->narches ? 0 : -1;
}

static void print_run_json(FILE *f, const struct ptemu_machine *m, const struct stress_opts *o,
			   const struct ptemu_pt_stress_result *r)
{
	size_t nv;
	const struct ptemu_violation *v = check_violations(m, &nv);
	const struct ptemu_injection_info *inj = NULL;

	for (const struct ptemu_injection_info *i = ptemu_injections(); i->name; i++)
		if (i->id == o->inject)
			inj = i;
	fprintf(f, "{\"arch\":\"%s\",\"workload\":\"pt-stress\",\"seed\":%" PRIu64
		   ",\"protocol\":\"lockless\",\"inject\":",
		m->arch->name, o->cfg.seed);
	json_string(f, inj ? inj->name : "none");
	fprintf(f, ",\"result\":\"%s\",\"stats\":{", check_violation_count(m) ? "violation" : "clean");
	fprintf(f, "\"locked_updates\":%" PRIu64 ",\"lockless_reads\":%" PRIu64
		   ",\"map_failed\":%" PRIu64 ",\"retracts\":%" PRIu64 ",\"elapsed_s\":%.3f",
		r->locked_updates, r->lockless_reads, r->map_failed, r->retracts, r->elapsed);
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

static int cmd_stress(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "arch", required_argument, NULL, 'a' },
		{ "seconds", required_argument, NULL, 's' },
		{ "seed", required_argument, NULL, 'S' },
		{ "workers", required_argument, NULL, 'w' },
		{ "tables", required_argument, NULL, 't' },
		{ "inject", required_argument, NULL, 'i' },
		{ "fail-fast", no_argument, NULL, 'f' },
		{ "memory", required_argument, NULL, 'm' },
		{ "json", required_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct stress_opts o = {
		.cfg = { .workers = 3, .tables = 8, .seed = 1, .seconds = 2 },
		.memory = 256,
	};
	const char *arch_list = "all";
	uint64_t v;
	int c, status = EXIT_CLEAN;
	FILE *json = NULL, *summary = stdout;

	optind = 1;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'a':
			arch_list = optarg;
			break;
		case 's':
			if (!parse_seconds(optarg, &o.cfg.seconds))
				return usage_error("--seconds: '%s' is not a number in 0.1..3600", optarg);
			break;
		case 'S':
			if (!parse_u64(optarg, 0, UINT64_MAX, &o.cfg.seed))
				return usage_error("--seed: '%s' is not an unsigned 64-bit number", optarg);
			break;
		case 'w':
			if (!parse_u64(optarg, 1, 32, &v))
				return usage_error("--workers: '%s' is not in 1..32", optarg);
			o.cfg.workers = (unsigned)v;
			break;
		case 't':
			if (!parse_u64(optarg, 1, 4096, &v))
				return usage_error("--tables: '%s' is not in 1..4096", optarg);
			o.cfg.tables = (unsigned)v;
			break;
		case 'i':
			o.inject = ptemu_injection_from_name(optarg);
			if (o.inject == INJECT_COUNT) {
				fprintf(stderr, "ptemu: unknown injection '%s'; valid: none", optarg);
				for (const struct ptemu_injection_info *i = ptemu_injections(); i->name; i++)
					fprintf(stderr, ", %s", i->name);
				fputc('\n', stderr);
				return EXIT_USAGE;
			}
			break;
		case 'f':
			o.fail_fast = true;
			break;
		case 'm':
			if (!parse_u64(optarg, 1, 65536, &o.memory))
				return usage_error("--memory: '%s' is not a size in MiB in 1..65536", optarg);
			break;
		case 'j':
			o.json = optarg;
			break;
		case 'h':
			fputs(usage_text, stdout);
			return EXIT_CLEAN;
		default:
			return usage_error("%s", "bad option for 'stress'");
		}
	}
	if (optind < argc)
		return usage_error("unexpected argument '%s'", argv[optind]);
	if (parse_arches(arch_list, &o))
		return EXIT_USAGE;
	for (unsigned i = 0; i < o.narches; i++) {
		if (!ptemu_injection_applies(o.inject, o.arches[i])) {
			fprintf(stderr, "ptemu: injection not offered by model %s ('ptemu list injections')\n",
				o.arches[i]->name);
			return EXIT_USAGE;
		}
	}
	if (o.json) {
		if (!strcmp(o.json, "-")) {
			json = stdout;
			summary = stderr;
		} else if (!(json = fopen(o.json, "w"))) {
			fprintf(stderr, "ptemu: cannot write %s: %s\n", o.json, strerror(errno));
			return EXIT_USAGE;
		}
		fprintf(json, "{\"runs\":[");
	}

	for (unsigned i = 0; i < o.narches; i++) {
		struct ptemu_machine_config mc = {
			.arch = o.arches[i],
			.phys_bytes = o.memory << 20,
			.check_mode = o.fail_fast ? PTEMU_CHECK_FAIL_FAST : PTEMU_CHECK_CONTINUE,
			.inject = o.inject,
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
		if (nviol) {
			size_t nrec;
			const struct ptemu_violation *rec = check_violations(m, &nrec);
			unsigned kinds_seen = 0;

			/* The first violation of each kind. */
			for (size_t k = 0; k < nrec; k++) {
				if (kinds_seen & (1u << rec[k].kind))
					continue;
				kinds_seen |= 1u << rec[k].kind;
				fprintf(summary, "  %s (x%" PRIu64 ") at event %" PRIu64 " in %s: %s\n",
					ptemu_violation_name(rec[k].kind), check_kind_count(m, rec[k].kind),
					rec[k].event, rec[k].thread_name, rec[k].message);
			}
			if (status == EXIT_CLEAN)
				status = EXIT_VIOLATIONS;
		}
		fflush(summary);
		if (json) {
			if (i)
				fputc(',', json);
			print_run_json(json, m, &o, &r);
		}
		ptemu_machine_destroy(m);
	}
	if (json) {
		fprintf(json, "]}\n");
		if (json != stdout)
			fclose(json);
	}
	return status;
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
	return usage_error("unknown command '%s'", argv[1]);
}
