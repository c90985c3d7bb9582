/* ptemu bench determinism: what the deterministic scheduler costs. The same workload, seed
 * and configuration free-running and deterministic; guest instructions per host
 * CPU-second (user + system time of the whole process, so that the number of cores does
 * not matter) of each, and their ratio; and what one baton pass costs alone. A
 * measurement, not a check. */
#include <inttypes.h>
#include <math.h>
#include <sys/resource.h>

#include <ptemu/bench.h>

#include "cli.h"

static int determinism_main(int argc, char **argv);

static const struct cli_use determinism_options[] = {
	{ OPT_ARCH, "default: all with a guest ISA", false },
	{ OPT_WORKLOAD, NULL, false },
	{ OPT_SECONDS, "here the free-running run's; default 3", false },
	{ OPT_STEPS, "here the deterministic run's length, the other run being free; default 2000000, "
		     "past the workload's setup (page faults of its first touches)", false },
	{ OPT_SEED, NULL, false },
	{ OPT_PROCS, NULL, false },
	{ OPT_VCPUS, NULL, false },
	{ OPT_KHUGEPAGED, NULL, false },
	{ OPT_MEMORY, NULL, false },
	{ OPT_REPEAT, "each side's; default 3", false },
	{ OPT_JSON, NULL, false },
	{ 0 },
};

static const struct cli_opts determinism_defaults = {
	.arch_list = "all", .workload = "shmem-stress", .seconds = 3, .steps = 2000000, .seed = 1,
	.procs = 2, .vcpus = 2, .khugepaged = true, .memory = 256, .sched = PTEMU_SCHED_PCT,
	.pct_depth = 3, .repeat = 3,
};

const struct cli_command cmd_bench_determinism = {
	"bench determinism", "[options]",
	"one workload free-running and deterministic (PCT), each --repeat times interleaved: "
	"guest instructions per host CPU-second of each, and the cost of determinism as their "
	"ratio (target <= 5): the median pair's, with the lowest and highest ratio; and the "
	"CPU time of one baton pass between threads that only yield (2 and 8 threads)",
	determinism_options, &determinism_defaults, true, NULL, determinism_main,
};

static double cpu_seconds(void)
{
	struct rusage u;

	getrusage(RUSAGE_SELF, &u);
	return (double)u.ru_utime.tv_sec + (double)u.ru_utime.tv_usec / 1e6 + (double)u.ru_stime.tv_sec +
	       (double)u.ru_stime.tv_usec / 1e6;
}

struct determinism_row {
	uint64_t instructions, steps;
	double cpu, elapsed, per_cpu_second;
};

/* One run; 0, or the exit status with the reason on stderr (a run that is not clean
 * measures nothing). */
static int measure(const struct ptemu_arch *a, const struct cli_opts *o, bool deterministic,
		   struct determinism_row *row)
{
	char path[4096];
	struct ptemu_run_config cfg = {
		.arch = a, .workload = o->workload, .procs = (unsigned)o->procs, .vcpus = (unsigned)o->vcpus,
		.seconds = o->seconds, .seed = o->seed, .phys_bytes = o->memory << 20,
		.khugepaged = o->khugepaged, .deterministic = deterministic,
		.sched = { .seed = o->seed, .strategy = o->sched, .pct_depth = (unsigned)o->pct_depth,
			   .max_steps = o->steps },
	};
	struct ptemu_run_result r;
	struct ptemu_machine *m;
	double before;
	int rc;

	workload_image_path(a, o->workload, path, sizeof(path));
	cfg.image_path = path;
	if (deterministic)
		fprintf(stderr, "ptemu: %s: %s, %" PRIu64 " steps (deterministic)...\n", a->name, o->workload,
			o->steps);
	else
		fprintf(stderr, "ptemu: %s: %s, %.1f s (free-running)...\n", a->name, o->workload, o->seconds);
	before = cpu_seconds();
	rc = bench_run(a->name, &cfg, &m, &r);
	row->cpu = cpu_seconds() - before;
	if (rc)
		return rc;
	ptemu_machine_destroy(m);
	row->instructions = r.instructions;
	row->steps = r.steps;
	row->elapsed = r.elapsed;
	row->per_cpu_second = row->cpu > 0 ? (double)r.instructions / row->cpu : 0;
	return 0;
}

/* Baton passes between threads that do nothing else, at two thread counts: fewer and more
 * threads than this machine's 2 cores. */
#define BATON_BENCH_PASSES 500000
static const unsigned baton_bench_threads[2] = { 2, 8 };

static int measure_baton(const struct ptemu_arch *a, double cpu_ns[2], double wall_ns[2])
{
	for (unsigned i = 0; i < 2; i++) {
		struct ptemu_bench_baton_result r;

		if (ptemu_bench_baton(a, baton_bench_threads[i], BATON_BENCH_PASSES / baton_bench_threads[i],
				      &r)) {
			fprintf(stderr, "ptemu: %s: baton bench: %s\n", a->name, r.error);
			return EXIT_INTERNAL;
		}
		cpu_ns[i] = r.cpu_seconds * 1e9 / (double)r.passes;
		wall_ns[i] = r.elapsed * 1e9 / (double)r.passes;
	}
	return 0;
}

/* The free-running and deterministic runs of one model, interleaved so that a drift of
 * the machine falls on both sides; the pair whose ratio is the median stands for them. */
static int determinism_main(int argc, char **argv)
{
	struct cli_opts o = determinism_defaults;
	struct out_file json = { 0 };
	FILE *summary = stdout;
	int rc = cli_parse(&cmd_bench_determinism, argc, argv, &o, 0, 0);

	if (rc)
		return rc == CLI_HELP ? EXIT_CLEAN : rc;
	if ((rc = json_list_begin(&json, o.json, "determinism", &summary)))
		return rc;
	for (unsigned i = 0; i < o.narches; i++) {
		const struct ptemu_arch *a = o.arches[i];
		struct determinism_row free_runs[BENCH_MAX_REPEAT], dets[BENCH_MAX_REPEAT];
		double costs[BENCH_MAX_REPEAT];
		unsigned k = (unsigned)o.repeat, mid = 0;

		for (unsigned r = 0; r < k; r++) {
			if (k > 1)
				fprintf(stderr, "ptemu: %s: repetition %u of %u\n", a->name, r + 1, k);
			if ((rc = measure(a, &o, false, &free_runs[r])) || (rc = measure(a, &o, true, &dets[r]))) {
				out_discard(&json);
				return rc;
			}
			costs[r] = dets[r].per_cpu_second > 0 ? free_runs[r].per_cpu_second / dets[r].per_cpu_second
							      : 0;
		}
		struct spread cost = spread_of(costs, k);
		double baton_cpu[2], baton_wall[2];

		if ((rc = measure_baton(a, baton_cpu, baton_wall))) {
			out_discard(&json);
			return rc;
		}

		/* The repetition nearest the median ratio (the median itself when k is odd). */
		for (unsigned r = 1; r < k; r++)
			if (fabs(costs[r] - cost.median) < fabs(costs[mid] - cost.median))
				mid = r;
		const struct determinism_row *f = &free_runs[mid], *d = &dets[mid];

		fprintf(summary,
			"%-11s free-running %.0f instr/cpu-s (%" PRIu64 " in %.2f cpu-s) | deterministic "
			"%.0f instr/cpu-s (%" PRIu64 " in %.2f cpu-s, %" PRIu64 " steps) | cost %.2f "
			"[%.2f..%.2f of %u] (target <= 5) | baton pass %.0f ns (2 threads), %.0f ns (8) of "
			"CPU\n",
			a->name, f->per_cpu_second, f->instructions, f->cpu, d->per_cpu_second,
			d->instructions, d->cpu, d->steps, costs[mid], cost.lo, cost.hi, k, baton_cpu[0],
			baton_cpu[1]);
		fflush(summary);
		if (json.path)
			fprintf(json.f, "%s{\"arch\":\"%s\",\"workload\":\"%s\",\"seed\":%" PRIu64
				",\"free_running\":{\"instructions\":%" PRIu64 ",\"cpu_seconds\":%.6f,"
				"\"elapsed\":%.3f,\"instructions_per_cpu_second\":%.0f},"
				"\"deterministic\":{\"instructions\":%" PRIu64 ",\"cpu_seconds\":%.6f,"
				"\"elapsed\":%.3f,\"steps\":%" PRIu64 ",\"instructions_per_cpu_second\":%.0f},"
				"\"cost_ratio\":%.3f,\"cost_ratio_lowest\":%.3f,\"cost_ratio_highest\":%.3f,"
				"\"repeat\":%u,\"baton_pass\":[{\"threads\":%u,\"cpu_ns\":%.1f,"
				"\"elapsed_ns\":%.1f},{\"threads\":%u,\"cpu_ns\":%.1f,\"elapsed_ns\":%.1f}]}",
				i ? "," : "", a->name, o.workload, o.seed, f->instructions, f->cpu, f->elapsed,
				f->per_cpu_second, d->instructions, d->cpu, d->elapsed, d->steps, d->per_cpu_second,
				costs[mid], cost.lo, cost.hi, k, baton_bench_threads[0], baton_cpu[0], baton_wall[0],
				baton_bench_threads[1], baton_cpu[1], baton_wall[1]);
	}
	return json_list_end(&json, EXIT_CLEAN);
}
