/* ptemu bench overhead and bench latency: measurements, not checks. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <ptemu/bench.h>
#include <ptemu/stats.h>
#include <ptemu/tlb.h>

#include "cli.h"

static int overhead_main(int argc, char **argv);
static int latency_main(int argc, char **argv);

static const struct cli_use overhead_options[] = {
	{ OPT_ARCH, "default: all with a guest ISA", false },
	{ OPT_SECONDS, "default 2, each run's", false },
	{ OPT_SEED, NULL, false },
	{ OPT_MEMORY, "default 256; a size whose tlb-miss sweep exceeds half gets no miss cost", false },
	{ OPT_TLB_ENTRIES, "default: the model's size, 4 and 16 times it", false },
	{ OPT_REPEAT, "default 3", false },
	{ OPT_JSON, NULL, false },
	{ 0 },
};

static const struct cli_opts overhead_defaults = {
	.arch_list = "all", .seconds = 2, .seed = 1, .memory = 256, .repeat = 3,
};

const struct cli_command cmd_bench_overhead = {
	"bench overhead", "[options]",
	"shmem-stress and tlb-miss through ptemu and on bare Unicorn with an identity TLB fill, each "
	"run --repeat times interleaved: medians and spread of the throughput ratio (shmem-stress; "
	"also to a bare Unicorn that flushes its TLB as ptemu does so that Unicorn grows it) and of "
	"what a miss costs the guest on each side (tlb-miss); with shmem-stress's logical misses, "
	"Unicorn refills from the logical TLB and flushes of Unicorn's whole TLB",
	overhead_options, &overhead_defaults, true, NULL, overhead_main,
};

static const struct cli_use latency_options[] = {
	{ OPT_ARCH, "default: all with a guest ISA", false },
	{ OPT_SECONDS, NULL, false },
	{ OPT_SEED, NULL, false },
	{ OPT_PROCS, NULL, false },
	{ OPT_VCPUS, NULL, false },
	{ OPT_MEMORY, NULL, false },
	{ OPT_REPEAT, "each protocol's; default 5", false },
	{ OPT_JSON, NULL, false },
	{ 0 },
};

static const struct cli_opts latency_defaults = {
	.arch_list = "all", .seconds = 5, .seed = 1, .procs = 2, .vcpus = 2, .memory = 256, .repeat = 5,
};

const struct cli_command cmd_bench_latency = {
	"bench latency", "[options]",
	"shmem-stress with khugepaged and MADV_COLLAPSE, free-running, under the lockless and the "
	"legacy protocol, each run --repeat times interleaved: medians of fault latency "
	"p50/p99/max and retraction success, their spread, and whether the difference is larger",
	latency_options, &latency_defaults, true, NULL, latency_main,
};

/* One protocol's free-running run under collapse load, for bench latency. */
struct latency_row {
	struct ptemu_run_result r;
	uint64_t retracts, skips, collapses, attempts, faults;
	double rate;	/* retracts / (retracts + skips) */
};

static int latency_run(const struct ptemu_arch *a, const struct cli_opts *o, enum ptemu_protocol p,
		       struct latency_row *row)
{
	char path[4096];
	struct ptemu_run_config cfg = {
		.arch = a, .workload = "shmem-stress", .procs = (unsigned)o->procs, .vcpus = (unsigned)o->vcpus,
		.seconds = o->seconds, .seed = o->seed, .phys_bytes = o->memory << 20,
		.protocol = p, .khugepaged = true, .scan_sleep_ms = 1, .time_faults = true,
	};
	struct ptemu_machine *m;

	workload_image_path(a, "shmem-stress", path, sizeof(path));
	cfg.image_path = path;
	fprintf(stderr, "ptemu: %s: shmem-stress %ux%u with khugepaged, %s, %.1f s...\n", a->name, cfg.procs,
		cfg.vcpus, ptemu_protocol_name(p), o->seconds);
	char what[64];
	int rc;

	snprintf(what, sizeof(what), "%s %s", a->name, ptemu_protocol_name(p));
	if ((rc = bench_run(what, &cfg, &m, &row->r)))
		return rc;
	row->retracts = ptemu_stat_get(&m->stats, PTEMU_STAT_retracts);
	row->skips = ptemu_stat_get(&m->stats, PTEMU_STAT_retract_skips);
	row->collapses = ptemu_stat_get(&m->stats, PTEMU_STAT_collapses);
	row->attempts = ptemu_stat_get(&m->stats, PTEMU_STAT_collapse_attempts);
	row->faults = ptemu_stat_get(&m->stats, PTEMU_STAT_faults);
	row->rate = row->retracts + row->skips ? (double)row->retracts / (double)(row->retracts + row->skips) : 0;
	ptemu_machine_destroy(m);
	return EXIT_CLEAN;
}

/* The lockless/legacy difference is larger than the spread when the two ranges of the
 * repeats do not overlap. */
static bool beyond_spread(struct spread a, struct spread b)
{
	return a.hi < b.lo || b.hi < a.lo;
}

enum { M_P50, M_P99, M_MAX, M_RATE, M_COUNT };
static const char *const metric_names[M_COUNT] = { "p50_ns", "p99_ns", "max_ns", "retraction_success" };
/* In the summary line the rate is in percent, the latencies in ns. */

/* The same seed and collapse load (khugepaged and the guests' MADV_COLLAPSE) under the
 * lockless and the legacy protocol, each run --repeat times, the two interleaved so that
 * a drift of the machine falls on both: medians, their spread, and whether the
 * difference is larger than the spread. */
static int latency_main(int argc, char **argv)
{
	struct cli_opts o = latency_defaults;
	struct out_file json = { 0 };
	FILE *summary = stdout;
	int rc = cli_parse(&cmd_bench_latency, argc, argv, &o, 0, 0);

	if (rc)
		return rc == CLI_HELP ? EXIT_CLEAN : rc;
	if ((rc = json_list_begin(&json, o.json, "latency", &summary)))
		return rc;
	fprintf(summary, "%-11s %-9s %9s %9s %9s %10s %9s %9s %9s %8s\n", "arch", "protocol", "faults",
		"p50 ns", "p99 ns", "max ns", "collapses", "retracts", "skipped", "success");
	for (unsigned i = 0; i < o.narches; i++) {
		const struct ptemu_arch *a = o.arches[i];
		unsigned k = (unsigned)o.repeat;
		static double v[2][M_COUNT][BENCH_MAX_REPEAT];
		struct spread sp[2][M_COUNT];

		for (unsigned r = 0; r < k; r++)
			for (int p = 0; p < 2; p++) {
				enum ptemu_protocol proto = p ? PTEMU_PROTOCOL_LEGACY : PTEMU_PROTOCOL_LOCKLESS;
				struct latency_row row;

				if ((rc = latency_run(a, &o, proto, &row))) {
					out_discard(&json);
					return rc;
				}
				fprintf(summary, "%-11s %-9s %9" PRIu64 " %9" PRIu64 " %9" PRIu64 " %10" PRIu64
					" %9" PRIu64 " %9" PRIu64 " %9" PRIu64 " %7.1f%%\n", a->name,
					ptemu_protocol_name(proto), row.r.faults_timed, row.r.fault_p50_ns,
					row.r.fault_p99_ns, row.r.fault_max_ns, row.collapses, row.retracts,
					row.skips, 100 * row.rate);
				v[p][M_P50][r] = (double)row.r.fault_p50_ns;
				v[p][M_P99][r] = (double)row.r.fault_p99_ns;
				v[p][M_MAX][r] = (double)row.r.fault_max_ns;
				v[p][M_RATE][r] = row.rate;
			}
		for (int p = 0; p < 2; p++)
			for (int mtr = 0; mtr < M_COUNT; mtr++)
				sp[p][mtr] = spread_of(v[p][mtr], k);
		fprintf(summary, "%-11s medians of %u runs, lockless / legacy [lowest..highest]:", a->name, k);
		for (int mtr = 0; mtr < M_COUNT; mtr++) {
			double scale = mtr == M_RATE ? 100 : 1;	/* the rate in percent */

			fprintf(summary, " %s %.*f [%.*f..%.*f] / %.*f [%.*f..%.*f] (%s)%s", metric_names[mtr],
				mtr == M_RATE, scale * sp[0][mtr].median, mtr == M_RATE, scale * sp[0][mtr].lo,
				mtr == M_RATE, scale * sp[0][mtr].hi, mtr == M_RATE, scale * sp[1][mtr].median,
				mtr == M_RATE, scale * sp[1][mtr].lo, mtr == M_RATE, scale * sp[1][mtr].hi,
				beyond_spread(sp[0][mtr], sp[1][mtr]) ? "differs" : "within spread",
				mtr + 1 < M_COUNT ? "," : "\n");
		}
		fflush(summary);
		if (json.path) {
			fprintf(json.f, "%s{\"arch\":\"%s\",\"seconds\":%.1f,\"seed\":%" PRIu64 ",\"repeat\":%u",
				i ? "," : "", a->name, o.seconds, o.seed, k);
			for (int p = 0; p < 2; p++) {
				fprintf(json.f, ",\"%s\":{", p ? "legacy" : "lockless");
				for (int mtr = 0; mtr < M_COUNT; mtr++) {
					fprintf(json.f, "%s\"%s\":{\"median\":%.4f,\"min\":%.4f,\"max\":%.4f,\"runs\":[",
						mtr ? "," : "", metric_names[mtr], sp[p][mtr].median, sp[p][mtr].lo,
						sp[p][mtr].hi);
					for (unsigned r = 0; r < k; r++)
						fprintf(json.f, "%s%.4f", r ? "," : "", v[p][mtr][r]);
					fprintf(json.f, "]}");
				}
				fprintf(json.f, "}");
			}
			for (int mtr = 0; mtr < M_COUNT; mtr++)
				fprintf(json.f, ",\"%s_ratio\":%.3f,\"%s_differs\":%s", metric_names[mtr],
					sp[0][mtr].median / (sp[1][mtr].median ? sp[1][mtr].median : 1),
					metric_names[mtr], beyond_spread(sp[0][mtr], sp[1][mtr]) ? "true" : "false");
			fprintf(json.f, "}");
		}
	}
	return json_list_end(&json, EXIT_CLEAN);
}

/* One ptemu run of the bench, one vCPU without collapse (bare Unicorn has none), and its
 * counters; 0, or the exit status with the reason on stderr. */
static int overhead_run(const struct ptemu_arch *a, const struct cli_opts *o, const char *workload,
			unsigned tlb_entries, struct ptemu_run_result *r, struct ptemu_stats *stats)
{
	char path[4096];
	struct ptemu_run_config cfg = {
		.arch = a, .workload = workload, .image_path = path, .procs = 1, .vcpus = 1,
		.seconds = o->seconds, .seed = o->seed, .phys_bytes = o->memory << 20,
		.tlb_entries = tlb_entries, .no_collapse = true,
	};
	struct ptemu_machine *m;
	char what[96];
	int rc;

	workload_image_path(a, workload, path, sizeof(path));
	fprintf(stderr, "ptemu: %s: %s through ptemu, %u TLB entries, %.1f s...\n", a->name, workload,
		tlb_entries, o->seconds);
	snprintf(what, sizeof(what), "%s %s", a->name, workload);
	if ((rc = bench_run(what, &cfg, &m, r)))
		return rc;
	*stats = m->stats;
	ptemu_machine_destroy(m);
	if (r->exit_codes[0]) {
		fprintf(stderr, "ptemu: %s: the guest exited with %d\n", what, r->exit_codes[0]);
		return EXIT_INTERNAL;
	}
	return 0;
}

static int overhead_bare(const struct ptemu_arch *a, const struct cli_opts *o, const char *workload,
			 unsigned tlb_entries, bool grow_tlb, struct ptemu_bench_bare_result *bare)
{
	char path[4096];

	workload_image_path(a, workload, path, sizeof(path));
	fprintf(stderr, "ptemu: %s: %s on bare Unicorn%s, %.1f s...\n", a->name, workload,
		grow_tlb ? " growing its TLB" : "", o->seconds);
	if (!ptemu_bench_bare(a, path, o->seconds, o->seed, tlb_entries, grow_tlb, bare))
		return 0;
	fprintf(stderr, "ptemu: %s: %s on bare Unicorn: %s\n", a->name, workload, bare->error);
	return EXIT_INTERNAL;
}

/* tlb-miss sweeps 2 * max(entries, 256) pages: the largest size it is run at must fit in
 * half of the simulated memory, and in bare Unicorn's flat memory. */
static bool miss_measurable(const struct ptemu_arch *a, const struct cli_opts *o, unsigned entries)
{
	uint64_t bytes = 2ull * (entries > 256 ? entries : 256) * ptemu_page_size(a);

	return bytes <= (o->memory << 20) / 2 && bytes <= PTEMU_BENCH_BARE_SWEEP_MAX;
}

enum { O_RATIO, O_RATIO_GROWN, O_MISS, O_FILL, O_MISS_RATIO, O_FILLS, O_REFILLS, O_HW_FLUSHES, O_COUNT };
static const char *const overhead_names[O_COUNT] = { "throughput_ratio", "throughput_ratio_grown_bare",
						      "miss_ns", "identity_fill_ns", "miss_ratio",
						      "fills_ptemu", "refills_ptemu", "hw_flushes_ptemu" };

/* Per size: throughput from shmem-stress, with no clock read in any fill on either side
 * (against bare Unicorn as it comes, the target's baseline, and against one that grows its
 * TLB as ptemu's vCPUs do), and the miss cost from tlb-miss (each side's ns per missing
 * load less its ns per hitting load). Each repetition runs every side and size, so that a
 * drift of the machine falls on all of them; each ratio is taken within its repetition. */
static int overhead_main(int argc, char **argv)
{
	struct cli_opts o = overhead_defaults;
	struct out_file json = { 0 };
	FILE *summary = stdout;
	int rc = cli_parse(&cmd_bench_overhead, argc, argv, &o, 0, 0);

	if (rc)
		return rc == CLI_HELP ? EXIT_CLEAN : rc;
	if ((rc = json_list_begin(&json, o.json, "overhead", &summary)))
		return rc;
	unsigned k = (unsigned)o.repeat;
	/* By TLB size, measure and repetition. */
	double(*v)[O_COUNT][BENCH_MAX_REPEAT] = calloc(3, sizeof(*v));

	if (!v) {
		out_discard(&json);
		return EXIT_INTERNAL;
	}
	for (unsigned i = 0, rows = 0; i < o.narches; i++) {
		const struct ptemu_arch *a = o.arches[i];
		/* The logical TLB's sizes: the one given, or the model's and two larger. */
		unsigned sizes[3], nsizes = 0;
		bool measurable[3];

		if (o.given[OPT_TLB_ENTRIES - OPT_FIRST]) {
			sizes[nsizes++] = (unsigned)o.tlb_entries;
		} else {
			for (unsigned f = 1; f <= 16 && a->tlb_entries * f <= PTEMU_TLB_MAX_ENTRIES; f *= 4)
				sizes[nsizes++] = a->tlb_entries * f;
		}
		for (unsigned z = 0; z < nsizes; z++)
			measurable[z] = miss_measurable(a, &o, sizes[z]);
		for (unsigned r = 0; r < k && !rc; r++) {
			struct ptemu_bench_bare_result bare;

			fprintf(stderr, "ptemu: %s: repetition %u of %u\n", a->name, r + 1, k);
			if ((rc = overhead_bare(a, &o, "shmem-stress", 0, false, &bare)))
				break;
			double ops_bare = 16.0 * (double)bare.polls / bare.elapsed;

			if ((rc = overhead_bare(a, &o, "shmem-stress", 0, true, &bare)))
				break;
			double ops_grown = 16.0 * (double)bare.polls / bare.elapsed;

			for (unsigned z = 0; z < nsizes && !rc; z++) {
				struct ptemu_run_result res;
				struct ptemu_stats st;

				if ((rc = overhead_run(a, &o, "shmem-stress", sizes[z], &res, &st)))
					break;
				v[z][O_RATIO][r] = 16.0 * (double)res.polls / res.elapsed / ops_bare;
				v[z][O_RATIO_GROWN][r] = 16.0 * (double)res.polls / res.elapsed / ops_grown;
				v[z][O_FILLS][r] = (double)res.tlb_fills;
				v[z][O_REFILLS][r] = (double)ptemu_stat_get(&st, PTEMU_STAT_hw_refills);
				v[z][O_HW_FLUSHES][r] = (double)ptemu_stat_get(&st, PTEMU_STAT_hw_flushes);
				if (!measurable[z])
					continue;
				if ((rc = overhead_bare(a, &o, "tlb-miss", sizes[z], false, &bare)) ||
				    (rc = overhead_run(a, &o, "tlb-miss", sizes[z], &res, &st)))
					break;
				double miss = ptemu_bench_miss_ns(&res.marks), fill = ptemu_bench_miss_ns(&bare.marks);

				if (!miss || !fill)
					fprintf(stderr, "ptemu: %s: tlb-miss at %u TLB entries completed no sweep "
						"in %.1f s on %s: its miss cost is 0 (raise --seconds)\n", a->name,
						sizes[z], o.seconds, !miss ? "ptemu" : "bare Unicorn");

				v[z][O_MISS][r] = miss;
				v[z][O_FILL][r] = fill;
				v[z][O_MISS_RATIO][r] = fill > 0 ? miss / fill : 0;
			}
		}
		if (rc) {
			free(v);
			out_discard(&json);
			return rc;
		}
		for (unsigned z = 0; z < nsizes; z++, rows++) {
			struct spread sp[O_COUNT];

			for (int mtr = 0; mtr < O_COUNT; mtr++)
				sp[mtr] = spread_of(v[z][mtr], k);
			fprintf(summary, "%-11s tlb=%-5u medians of %u: ratio=%.2f [%.2f..%.2f] (target >= 0.8), "
				"to a bare Unicorn grown like ptemu's %.2f | ", a->name, sizes[z], k, sp[O_RATIO].median,
				sp[O_RATIO].lo, sp[O_RATIO].hi, sp[O_RATIO_GROWN].median);
			if (measurable[z])
				fprintf(summary, "ns per miss: logical=%.0f identity=%.0f ratio=%.2f [%.2f..%.2f] "
					"(target <= 2)", sp[O_MISS].median, sp[O_FILL].median,
					sp[O_MISS_RATIO].median, sp[O_MISS_RATIO].lo, sp[O_MISS_RATIO].hi);
			else
				fprintf(summary, "miss cost not measured: tlb-miss's sweep does not fit in "
					"--memory %" PRIu64 " MiB", o.memory);
			fprintf(summary, " | logical misses=%.0f, Unicorn refills=%.0f after %.0f flushes of it\n",
				sp[O_FILLS].median, sp[O_REFILLS].median, sp[O_HW_FLUSHES].median);
			fflush(summary);
			if (!json.path)
				continue;
			fprintf(json.f, "%s{\"arch\":\"%s\",\"tlb_entries\":%u,\"repeat\":%u,\"seconds\":%.1f",
				rows ? "," : "", a->name, sizes[z], k, o.seconds);
			for (int mtr = 0; mtr < O_COUNT; mtr++) {
				if (!measurable[z] && (mtr == O_MISS || mtr == O_FILL || mtr == O_MISS_RATIO))
					fprintf(json.f, ",\"%s\":null,\"%s_spread\":null", overhead_names[mtr],
						overhead_names[mtr]);
				else
					fprintf(json.f, ",\"%s\":%.3f,\"%s_spread\":[%.3f,%.3f]", overhead_names[mtr],
						sp[mtr].median, overhead_names[mtr], sp[mtr].lo, sp[mtr].hi);
			}
			fprintf(json.f, "}");
		}
	}
	free(v);
	return json_list_end(&json, EXIT_CLEAN);
}
