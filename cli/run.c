/* ptemu run: guest workloads on Unicorn vCPUs over each model. */
#include <inttypes.h>
#include <string.h>
#include <unistd.h>

#include <ptemu/check.h>
#include <ptemu/stats.h>

#include "cli.h"

static int run_main(int argc, char **argv);

static const struct cli_use run_options[] = {
	{ OPT_ARCH, "default: all with a guest ISA", false },
	{ OPT_WORKLOAD, NULL, false },
	{ OPT_IMAGE, NULL, false },
	{ OPT_PROCS, NULL, false },
	{ OPT_VCPUS, NULL, false },
	{ OPT_SECONDS, NULL, false },
	{ OPT_OPS, "default: until --seconds; a guest that ignores both is ended", false },
	{ OPT_WATCHDOG, NULL, false },
	{ OPT_EXIT_AFTER, "default: none", false },
	{ OPT_DETERMINISTIC, NULL, false },
	{ OPT_SCHED, NULL, false },
	{ OPT_PCT_DEPTH, NULL, false },
	{ OPT_STEPS, NULL, false },
	{ OPT_RECORD, NULL, false },
	{ OPT_PROTOCOL, NULL, false },
	{ OPT_RECLAIM, NULL, false },
	{ OPT_KHUGEPAGED, NULL, false },
	{ OPT_SCAN_SLEEP, NULL, false },
	{ OPT_PAGES_TO_SCAN, "default 8 PMD ranges", false },
	{ OPT_MAX_PTES_NONE, "default HPAGE_PMD_NR - 1", false },
	{ OPT_SEED, NULL, false },
	{ OPT_INJECT, NULL, false },
	{ OPT_FAIL_FAST, NULL, false },
	{ OPT_MEMORY, NULL, false },
	{ OPT_TLB_ENTRIES, "default: the model's ('ptemu list arches')", false },
	{ OPT_JSON, NULL, false },
	{ OPT_QUIET, NULL, false },
	{ 0 },
};

static const struct cli_opts run_defaults = {
	.arch_list = "all", .workload = "shmem-stress", .procs = 2, .vcpus = 1, .seconds = 3,
	.watchdog = 10, .sched = PTEMU_SCHED_RANDOM, .pct_depth = 3, .steps = 200000,
	.protocol_list = "lockless", .scan_sleep_ms = 10, .seed = 1, .inject_list = "none", .memory = 256,
};

const struct cli_command cmd_run = {
	"run", "[options]", "run a guest workload on Unicorn vCPUs over a model",
	run_options, &run_defaults, true, NULL, run_main,
};

static bool given(const struct cli_opts *o, enum cli_opt id)
{
	return o->given[id - OPT_FIRST];
}

/* Checks the options against each other, before anything runs. */
static int check_run_options(const struct cli_opts *o, bool deterministic, bool tuned)
{
	if (deterministic && given(o, OPT_EXIT_AFTER))
		return usage_error("%s", "--exit-after is wall-clock time: not with --deterministic");
	if (given(o, OPT_EXIT_AFTER) && o->procs < 2)
		return usage_error("%s", "--exit-after ends the last of several processes: it needs --procs >= 2");
	if (o->record && o->narches != 1)
		return usage_error("%s", "--record records one run: give one --arch");
	if (o->record && tuned)
		return usage_error("%s", "a trace records khugepaged with its default tunables only");
	if (tuned && !o->khugepaged)
		return usage_error("%s", "khugepaged tunables need --khugepaged on");
	int rc = check_injection(o);

	if (!rc && !o->image)
		note_injection_reach(o, (enum ptemu_injection)o->injects[0]);
	return rc;
}

static void print_run(FILE *summary, const struct ptemu_arch *a, const struct ptemu_run_config *cfg,
		      enum ptemu_run_error e, const struct ptemu_run_result *r, const struct ptemu_machine *m)
{
	uint64_t nviol = m ? check_violation_count(m) : 0;

	fprintf(summary,
		"%-9s %-9s %s instructions=%" PRIu64 " tlb_fills=%" PRIu64 " faults=%" PRIu64
		" fault_retries=%" PRIu64 " syscalls=%" PRIu64 " shootdowns=%" PRIu64
		" collapses=%" PRIu64 " retracts=%" PRIu64 " violations=%" PRIu64,
		a->name, e != PTEMU_RUN_OK ? "ERROR" : nviol ? "VIOLATION" : "clean", cfg->workload,
		r->instructions, r->tlb_fills, m ? ptemu_stat_get(&m->stats, PTEMU_STAT_faults) : 0,
		m ? ptemu_stat_get(&m->stats, PTEMU_STAT_fault_retries) : 0, r->syscalls,
		r->shootdowns, m ? ptemu_stat_get(&m->stats, PTEMU_STAT_collapses) : 0,
		m ? ptemu_stat_get(&m->stats, PTEMU_STAT_retracts) : 0, nviol);
	if (m)
		fprintf(summary, " access_fixups=%" PRIu64 " uaccess_faults=%" PRIu64,
			ptemu_stat_get(&m->stats, PTEMU_STAT_access_fixups),
			ptemu_stat_get(&m->stats, PTEMU_STAT_uaccess_faults));
	/* The model's own machinery: VIVT alias fix-ups, shared table pages, the HPT, TSBs,
	 * register windows. */
	if (m && a->flush_dcache_mmap_lock)
		fprintf(summary, " adjust_pte=%" PRIu64 " adjust_pte_no_table=%" PRIu64,
			ptemu_stat_get(&m->stats, PTEMU_STAT_adjust_pte_calls),
			ptemu_stat_get(&m->stats, PTEMU_STAT_adjust_pte_no_table));
	if (m && a->tables_per_page > 1)
		fprintf(summary, " pt_frags_allocated=%" PRIu64 " pt_frags_deferred=%" PRIu64,
			ptemu_stat_get(&m->stats, PTEMU_STAT_tables_allocated),
			ptemu_stat_get(&m->stats, PTEMU_STAT_tables_freed_deferred));
	if (m && a->pte_busy_bit)
		fprintf(summary, " hpt_hits=%" PRIu64 " hpt_misses=%" PRIu64 " hpte_evictions=%" PRIu64
			" hpte_invalidations=%" PRIu64 " hash_page_busy=%" PRIu64
			" pte_update_busy_waits=%" PRIu64,
			ptemu_stat_get(&m->stats, PTEMU_STAT_hpt_hits),
			ptemu_stat_get(&m->stats, PTEMU_STAT_hpt_misses),
			ptemu_stat_get(&m->stats, PTEMU_STAT_hpte_evictions),
			ptemu_stat_get(&m->stats, PTEMU_STAT_hpte_invalidations),
			ptemu_stat_get(&m->stats, PTEMU_STAT_hash_page_busy),
			ptemu_stat_get(&m->stats, PTEMU_STAT_pte_update_busy_waits));
	else if (m && a->hw_cache_maps_pfn)
		fprintf(summary, " tsb_hits=%" PRIu64 " tsb_misses=%" PRIu64 " tsb_pmd_scans=%" PRIu64
			" tsb_grows=%" PRIu64,
			ptemu_stat_get(&m->stats, PTEMU_STAT_tsb_hits),
			ptemu_stat_get(&m->stats, PTEMU_STAT_tsb_misses),
			ptemu_stat_get(&m->stats, PTEMU_STAT_tsb_pmd_scans),
			ptemu_stat_get(&m->stats, PTEMU_STAT_tsb_grows));
	if (m && a->isa.wants_trap)
		fprintf(summary, " window_spills=%" PRIu64 " window_fills=%" PRIu64,
			ptemu_stat_get(&m->stats, PTEMU_STAT_window_spills),
			ptemu_stat_get(&m->stats, PTEMU_STAT_window_fills));
	if (cfg->deterministic)
		fprintf(summary, " steps=%" PRIu64 " digest=%016" PRIx64, r->steps, r->digest);
	fputc('\n', summary);
	if (e != PTEMU_RUN_OK)
		fprintf(summary, "  error: %s\n", r->message);
	if (nviol)
		print_violation_kinds(summary, m);
	fflush(summary);
}

static void print_run_json(FILE *f, const struct ptemu_run_config *cfg, const struct ptemu_run_result *r,
			   const struct ptemu_machine *m)
{
	json_run_head(f, m, cfg->workload, cfg->seed, cfg->inject);
	if (cfg->deterministic)
		fprintf(f, "\"steps\":%" PRIu64 ",\"digest\":\"%016" PRIx64 "\",", r->steps, r->digest);
	fprintf(f, "\"procs\":%u,\"vcpus\":%u,\"elapsed_s\":%.3f,\"instructions\":%" PRIu64
		",\"blocks\":%" PRIu64 ",\"tlb_fills\":%" PRIu64 ",\"syscalls\":%" PRIu64
		",\"shootdowns\":%" PRIu64,
		cfg->procs, cfg->vcpus, r->elapsed, r->instructions, r->blocks, r->tlb_fills, r->syscalls,
		r->shootdowns);
	json_run_tail(f, m);
}

static int run_main(int argc, char **argv)
{
	struct cli_opts o = run_defaults;
	struct out_file json = { 0 }, record = { 0 };
	int rc = cli_parse(&cmd_run, argc, argv, &o, 0, 0), status = EXIT_CLEAN;
	bool tuned, deterministic;
	FILE *summary = stdout;
	char err[256];

	if (rc)
		return rc == CLI_HELP ? EXIT_CLEAN : rc;
	tuned = given(&o, OPT_SCAN_SLEEP) || given(&o, OPT_PAGES_TO_SCAN) || given(&o, OPT_MAX_PTES_NONE);
	deterministic = o.deterministic || given(&o, OPT_SCHED) || given(&o, OPT_PCT_DEPTH) ||
			given(&o, OPT_STEPS) || o.record;
	if ((rc = check_run_options(&o, deterministic, tuned)))
		return rc;
	if (ptemu_check_unicorn(err, sizeof(err))) {
		fprintf(stderr, "ptemu: %s\n", err);
		return EXIT_INTERNAL;
	}
	if (o.record && (rc = out_open(&record, o.record, false)))
		return rc;
	if ((rc = json_list_begin(&json, o.json, "runs", &summary))) {
		out_discard(&record);
		return rc;
	}
	for (unsigned i = 0; i < o.narches; i++) {
		const struct ptemu_arch *a = o.arches[i];
		char path[4096];
		struct ptemu_run_config cfg = {
			.arch = a,
			.workload = o.image ? o.image : o.workload,
			.procs = (unsigned)o.procs,
			.vcpus = (unsigned)o.vcpus,
			.seconds = o.seconds,
			.ops = o.ops,
			.seed = o.seed,
			.inject = (enum ptemu_injection)o.injects[0],
			.protocol = (enum ptemu_protocol)o.protocols[0],
			.features = { .reclaim_empty_tables = o.reclaim },
			.khugepaged = o.khugepaged,
			.scan_sleep_ms = (double)o.scan_sleep_ms,
			.pages_to_scan = o.pages_to_scan,
			.max_ptes_none = (unsigned)o.max_ptes_none,
			.check_mode = o.fail_fast ? PTEMU_CHECK_FAIL_FAST : PTEMU_CHECK_CONTINUE,
			.phys_bytes = o.memory << 20,
			.tlb_entries = (unsigned)o.tlb_entries,
			.log = o.quiet ? NULL : stderr,
			.watchdog_seconds = o.watchdog,
			.exit_after = o.exit_after,
			.deterministic = deterministic,
			.sched = { .seed = o.seed, .strategy = o.sched, .pct_depth = (unsigned)o.pct_depth,
				   .max_steps = o.steps },
		};
		struct ptemu_run_result r;
		struct ptemu_machine *m;
		struct ptemu_trace trace = { 0 };

		workload_image_path(a, o.workload, path, sizeof(path));
		cfg.image_path = o.image ? o.image : path;
		if (o.record) {
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
		print_run(summary, a, &cfg, e, &r, m);
		if (e != PTEMU_RUN_OK)
			status = EXIT_INTERNAL;
		else if (m && check_violation_count(m) && status == EXIT_CLEAN)
			status = EXIT_VIOLATIONS;
		if (json.path && m) {
			if (i)
				fputc(',', json.f);
			print_run_json(json.f, &cfg, &r, m);
		}
		if (o.record && m && !r.hung) {
			finish_trace(&trace, a, &cfg, &r, m);
			if ((rc = write_trace(&record, &trace)))
				status = rc;
			else
				fprintf(stderr, "ptemu: recorded %zu events (%.1f per step) to %s\n", trace.nevents,
					r.steps ? (double)trace.nevents / (double)r.steps : 0.0, o.record);
		}
		ptemu_trace_free(&trace);
		if (r.hung) {
			/* Stuck vCPU threads still use the machine: report and leave now. */
			status = json_list_end(&json, status);
			out_discard(&record);
			fflush(NULL);
			_exit(status);
		}
		if (m)
			ptemu_machine_destroy(m);
	}
	out_discard(&record);
	return json_list_end(&json, status);
}
