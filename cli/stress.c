/* ptemu stress: the core's page-table stress, without guests. */
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include <ptemu/check.h>
#include <ptemu/ptstress.h>
#include <ptemu/stats.h>
#include <ptemu/sync.h>

#include "cli.h"

static int stress_main(int argc, char **argv);

static const struct cli_use stress_options[] = {
	{ OPT_ARCH, NULL, false },
	{ OPT_SECONDS, NULL, false },
	{ OPT_SEED, NULL, false },
	{ OPT_WORKERS, NULL, false },
	{ OPT_TABLES, NULL, false },
	{ OPT_INJECT, NULL, false },
	{ OPT_DETERMINISTIC, NULL, false },
	{ OPT_SCHED, NULL, false },
	{ OPT_PCT_DEPTH, NULL, false },
	{ OPT_OPS, "default: until --seconds; 2000 when deterministic, which is bounded by it, not by time",
	  false },
	{ OPT_FAIL_FAST, NULL, false },
	{ OPT_MEMORY, NULL, false },
	{ OPT_JSON, NULL, false },
	{ 0 },
};

static const struct cli_opts stress_defaults = {
	.arch_list = "all", .seconds = 2, .seed = 1, .workers = 3, .tables = 8, .inject_list = "none",
	.sched = PTEMU_SCHED_RANDOM, .pct_depth = 3, .memory = 256,
};

const struct cli_command cmd_stress = {
	"stress", "[options]",
	"page-table stress of the core: workers map, lock and update PTEs while a retractor detaches "
	"tables and frees them by RCU",
	stress_options, &stress_defaults, false, NULL, stress_main,
};

static void print_stress(FILE *summary, const struct ptemu_machine *m, const struct ptemu_pt_stress_config *cfg,
			 const struct ptemu_pt_stress_result *r)
{
	uint64_t nviol = check_violation_count(m);

	fprintf(summary,
		"%-9s %-9s updates=%" PRIu64 " reads=%" PRIu64 " retracts=%" PRIu64
		" pte_map_failures=%" PRIu64 " pmd_recheck_retries=%" PRIu64
		" detach_with_reader=%" PRIu64 " rcu_freed=%" PRIu64 " violations=%" PRIu64 "\n",
		m->arch->name, nviol ? "VIOLATION" : "clean", r->locked_updates, r->lockless_reads,
		r->retracts, ptemu_stat_get(&m->stats, PTEMU_STAT_pte_map_failures),
		ptemu_stat_get(&m->stats, PTEMU_STAT_pmd_recheck_retries),
		ptemu_stat_get(&m->stats, PTEMU_STAT_detach_with_reader),
		ptemu_stat_get(&m->stats, PTEMU_STAT_tables_rcu_freed), nviol);
	if (cfg->deterministic)
		fprintf(summary, "          steps=%" PRIu64 " digest=%016" PRIx64 "\n", r->steps, r->digest);
	if (nviol)
		print_violation_kinds(summary, m);
	fflush(summary);
}

static void print_stress_json(FILE *f, const struct ptemu_machine *m, const struct ptemu_pt_stress_config *cfg,
			      enum ptemu_injection inj, const struct ptemu_pt_stress_result *r)
{
	json_run_head(f, m, "pt-stress", cfg->seed, inj);
	fprintf(f, "\"locked_updates\":%" PRIu64 ",\"lockless_reads\":%" PRIu64
		   ",\"map_failed\":%" PRIu64 ",\"retracts\":%" PRIu64 ",\"elapsed_s\":%.3f",
		r->locked_updates, r->lockless_reads, r->map_failed, r->retracts, r->elapsed);
	json_run_tail(f, m);
}

static int stress_main(int argc, char **argv)
{
	struct cli_opts o = stress_defaults;
	struct out_file json = { 0 };
	int rc = cli_parse(&cmd_stress, argc, argv, &o, 0, 0), status = EXIT_CLEAN;
	FILE *summary = stdout;

	if (rc)
		return rc == CLI_HELP ? EXIT_CLEAN : rc;
	enum ptemu_injection inj = (enum ptemu_injection)o.injects[0];
	struct ptemu_pt_stress_config cfg = {
		.workers = (unsigned)o.workers, .tables = (unsigned)o.tables, .seed = o.seed,
		.seconds = o.seconds, .max_ops = o.ops,
		.deterministic = o.deterministic || o.given[OPT_SCHED - OPT_FIRST] ||
				 o.given[OPT_PCT_DEPTH - OPT_FIRST],
	};

	if (cfg.deterministic) {
		cfg.sched = (struct ptemu_sched_config){ .seed = o.seed, .strategy = o.sched,
							 .pct_depth = (unsigned)o.pct_depth, .max_steps = 10000000 };
		if (!cfg.max_ops)
			cfg.max_ops = 2000;	/* a deterministic stress is bounded by operations */
	}
	if ((rc = check_injection(&o)))
		return rc;
	if ((rc = json_list_begin(&json, o.json, "runs", &summary)))
		return rc;
	for (unsigned i = 0; i < o.narches; i++) {
		/* The harness detaches tables as a retract does; without THP the kernel never
		 * retracts (nor has khugepaged), so there is nothing to stress. */
		if (!o.arches[i]->pmd_leaf_shift) {
			fprintf(summary, "%-9s skipped   no THP on this model, so no retraction to stress\n",
				o.arches[i]->name);
			continue;
		}
		struct ptemu_machine_config mc = {
			.arch = o.arches[i],
			.phys_bytes = o.memory << 20,
			.check_mode = o.fail_fast ? PTEMU_CHECK_FAIL_FAST : PTEMU_CHECK_CONTINUE,
			.inject = inj,
		};
		char err[256];
		struct ptemu_machine *m = ptemu_machine_create(&mc, err, sizeof(err));
		struct ptemu_pt_stress_result r = { 0 };

		if (!m) {
			fprintf(stderr, "ptemu: %s\n", err);
			status = EXIT_USAGE;
			break;
		}
		fprintf(stderr, "ptemu: %s: stress for %.1f s...\n", m->arch->name, cfg.seconds);
		ptemu_thread_register(m, "retractor");
		if (ptemu_pt_stress(m, &cfg, &r)) {
			fprintf(stderr, "ptemu: %s: stress could not run: %s\n", m->arch->name,
				strerror(errno));
			status = EXIT_INTERNAL;
		}
		ptemu_thread_unregister();
		print_stress(summary, m, &cfg, &r);
		if (check_violation_count(m) && status == EXIT_CLEAN)
			status = EXIT_VIOLATIONS;
		if (json.path) {
			if (i)
				fputc(',', json.f);
			print_stress_json(json.f, m, &cfg, inj, &r);
		}
		ptemu_machine_destroy(m);
	}
	return json_list_end(&json, status);
}
