/* ptemu campaign: deterministic runs over seeds and configurations, each run in a forked
 * worker process so that a crash or a hang costs that run and not the campaign; a table
 * (and JSON) of what they found; and the merge of a campaign's shards. */
#define _GNU_SOURCE	/* ppoll */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <ptemu/check.h>
#include <ptemu/loader.h>
#include <ptemu/machine.h>
#include <ptemu/run.h>
#include <ptemu/stats.h>

#include "cli.h"

static int campaign_main(int argc, char **argv);
static int merge_main(int argc, char **argv);

static const struct cli_use campaign_options[] = {
	{ OPT_ARCH, "required", false },
	{ OPT_SEEDS, "required", false },
	{ OPT_SEED_BASE, NULL, false },
	{ OPT_INJECT, NULL, true },
	{ OPT_PROTOCOL, NULL, true },
	{ OPT_RECLAIM, NULL, false },
	{ OPT_KHUGEPAGED, NULL, false },
	{ OPT_WORKLOAD, NULL, false },
	{ OPT_PROCS, NULL, false },
	{ OPT_VCPUS, NULL, false },
	{ OPT_STEPS, NULL, false },
	{ OPT_SCHED, NULL, false },
	{ OPT_PCT_DEPTH, NULL, false },
	{ OPT_JOBS, "default: online CPUs", false },
	{ OPT_SHARD, NULL, false },
	{ OPT_JSON, NULL, false },
	{ OPT_QUIET, NULL, false },
	{ 0 },
};

static const struct cli_opts campaign_defaults = {
	.seed_base = 1, .inject_list = "none", .protocol_list = "lockless", .workload = "shmem-stress",
	.procs = 2, .vcpus = 2, .steps = 400000, .sched = PTEMU_SCHED_PCT, .pct_depth = 3, .shard = 1,
	.nshards = 1,
};

const struct cli_command cmd_campaign = {
	"campaign", "[options]",
	"deterministic runs over seeds, models, injections and protocols in worker processes, one "
	"configuration per arch x injection x protocol: a table of what they found",
	campaign_options, &campaign_defaults, true,
	"  A row per configuration: runs, clean, errors, violation counts by kind and coverage\n"
	"  counters summed over runs, the smallest failing seed and the commands that record and\n"
	"  replay it. SIGINT or SIGTERM stops the workers and writes the runs that finished,\n"
	"  marked partial, then ends the campaign by that signal.\n"
	"  exit status: 3 when a run failed with an error (a crash, a guest error, a hang), else\n"
	"  1 when a run had violations, else 0; 2 for bad usage or input files\n",
	campaign_main,
};

static const struct cli_use merge_options[] = {
	{ OPT_PARTIAL, NULL, false },
	{ OPT_JSON, NULL, false },
	{ 0 },
};

static const struct cli_opts merge_defaults = { 0 };

const struct cli_command cmd_campaign_merge = {
	"campaign merge", "FILE... [options]",
	"combine the --json files of the shards of a campaign; missing shards are refused unless "
	"--partial",
	merge_options, &merge_defaults, false, NULL, merge_main,
};

/* A row keeps its smallest failing seeds, this many. */
#define MAX_FAILING 32

/* The counters a row sums: how often the races the checker watches were exercised. */
static const enum ptemu_stat coverage_stats[] = {
	PTEMU_STAT_pte_map_failures, PTEMU_STAT_pmd_recheck_retries, PTEMU_STAT_detach_with_reader,
	PTEMU_STAT_walk_raced_detach, PTEMU_STAT_collapses, PTEMU_STAT_retracts,
	PTEMU_STAT_removal_saw_pmd_change,
};
#define NCOVERAGE (sizeof(coverage_stats) / sizeof(coverage_stats[0]))

/* One configuration and what its runs found: a row of the table, an object of the JSON.
 * Names rather than pointers, so that merged files fill it the same way. */
struct row {
	char arch[32], inject[32], protocol[16], workload[64], sched[8];
	bool reclaim, khugepaged;
	uint64_t procs, vcpus, pct_depth, steps, seed_base, seeds;
	uint64_t runs, clean, errors, steps_run, digest_sum;
	uint64_t cpu_us;		/* host CPU time of its workers, user + system */
	uint64_t kinds[VIOLATION_KIND_COUNT];
	uint64_t coverage[NCOVERAGE];
	uint64_t failing[MAX_FAILING];	/* the smallest failing seeds, ascending */
	unsigned nfailing;
	unsigned shards;		/* merge: how many shard files held it */
};

/* What a worker sends back. It fits one pipe write, which is atomic: the parent gets all
 * of it, or knows that the run ended without a result. */
struct run_record {
	uint64_t seed;
	uint32_t config;
	uint32_t error;			/* enum ptemu_run_error */
	uint64_t kinds[VIOLATION_KIND_COUNT];
	uint64_t coverage[NCOVERAGE];
	uint64_t digest, steps;
	char message[256];
};
_Static_assert(sizeof(struct run_record) <= PIPE_BUF, "a record is one atomic pipe write");

struct worker {
	pid_t pid;			/* 0: free */
	int fd;
	uint32_t config;
	uint64_t seed;
	size_t got;
	struct run_record rec;
};

struct campaign {
	sigset_t mask;			/* the signal mask of the workers and of ppoll */
	struct sigaction old_int, old_term;	/* what the workers get back */
	int stop_signal;		/* SIGINT or SIGTERM stopped the campaign */
	struct row *rows;
	unsigned nrows;
	uint64_t shard, nshards;	/* this process runs shard `shard` (1-based) of nshards */
	uint64_t jobs;
	bool quiet, tty;
	unsigned next_config;		/* the next run to start */
	uint64_t next_k;
	uint64_t total, done, failing;
	struct timespec start;
	uint64_t tenths_shown;		/* progress without a terminal */
	bool line_open;			/* progress on a terminal: the line is on screen */
};

/* How many of the seed indices 0..seeds-1 are k with k % nshards == shard - 1. */
static uint64_t runs_in_shard(uint64_t seeds, uint64_t shard, uint64_t nshards)
{
	return seeds >= shard ? (seeds - shard) / nshards + 1 : 0;
}

/* Failures come in any order (workers, shards): keep the smallest seeds. */
static void add_failing(struct row *r, uint64_t seed)
{
	unsigned i = r->nfailing;

	if (i == MAX_FAILING) {
		if (seed > r->failing[MAX_FAILING - 1])
			return;
		i--;
	} else {
		r->nfailing++;
	}
	for (; i && r->failing[i - 1] > seed; i--)
		r->failing[i] = r->failing[i - 1];
	r->failing[i] = seed;
}

/* In the worker: one run, configured as 'ptemu run' with the options that the reproduce
 * line prints, then its record. No teardown: _exit frees everything, and the threads of
 * a hung run still use the machine. */
static _Noreturn void run_one(const struct row *row, uint32_t config, uint64_t seed, int fd)
{
	const struct ptemu_arch *a = ptemu_arch_find(row->arch);
	char path[4096];
	struct ptemu_run_config cfg = {
		.arch = a,
		.workload = row->workload,
		.procs = (unsigned)row->procs,
		.vcpus = (unsigned)row->vcpus,
		.seconds = 3,	/* run's default; a deterministic run ends by its steps */
		.seed = seed,
		.inject = ptemu_injection_from_name(row->inject),
		.protocol = (enum ptemu_protocol)ptemu_protocol_from_name(row->protocol),
		.features = { .reclaim_empty_tables = row->reclaim },
		.khugepaged = row->khugepaged,
		/* Not fail-fast: a trace does not record the check mode and replays without
		 * it, so only such a run replays as it was recorded. */
		.check_mode = PTEMU_CHECK_CONTINUE,
		.phys_bytes = PTEMU_DEFAULT_PHYS_BYTES,	/* run's default --memory */
		.watchdog_seconds = 10,
		.deterministic = true,
		.sched = { .seed = seed, .pct_depth = (unsigned)row->pct_depth, .max_steps = row->steps,
			   .strategy = strcmp(row->sched, "pct") ? PTEMU_SCHED_RANDOM : PTEMU_SCHED_PCT },
	};
	struct run_record rec = { .seed = seed, .config = config };
	struct ptemu_run_result r = { 0 };
	struct ptemu_machine *m;

	workload_image_path(a, row->workload, path, sizeof(path));
	cfg.image_path = path;
	rec.error = ptemu_run(&cfg, &m, &r);
	for (int k = 0; m && k < VIOLATION_KIND_COUNT; k++)
		rec.kinds[k] = check_kind_count(m, (enum ptemu_violation_kind)k);
	for (size_t i = 0; m && i < NCOVERAGE; i++)
		rec.coverage[i] = ptemu_stat_get(&m->stats, coverage_stats[i]);
	rec.digest = r.digest;
	rec.steps = r.steps;
	if (rec.error != PTEMU_RUN_OK)
		snprintf(rec.message, sizeof(rec.message), "%.255s", r.message);
	_exit(write(fd, &rec, sizeof(rec)) == (ssize_t)sizeof(rec) ? 0 : 1);
}

static double elapsed(const struct campaign *c)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - c->start.tv_sec) + (double)(now.tv_nsec - c->start.tv_nsec) / 1e9;
}

/* Rewritten in place on a terminal; otherwise a line each tenth of the runs. */
static void progress(struct campaign *c)
{
	uint64_t tenths = c->done * 10 / c->total;

	if (c->quiet || (!c->tty && tenths == c->tenths_shown))
		return;
	c->tenths_shown = tenths;
	fprintf(stderr, "%scampaign: %" PRIu64 "/%" PRIu64 " runs, %" PRIu64 " failing, %.1f s%s",
		c->tty ? "\r" : "", c->done, c->total, c->failing, elapsed(c), c->tty ? "" : "\n");
	c->line_open = c->tty;
}

static void run_error(struct campaign *c, const struct row *r, uint64_t seed, const char *what)
{
	if (c->line_open)
		fputs("\r\033[K", stderr);
	c->line_open = false;
	fprintf(stderr, "campaign: %s %s %s seed %" PRIu64 ": %s\n", r->arch, r->inject, r->protocol,
		seed, what);
}

/* The next run of this shard, if any. */
static bool next_run(struct campaign *c, uint32_t *config, uint64_t *seed)
{
	while (c->next_config < c->nrows && c->next_k >= c->rows[c->next_config].seeds) {
		c->next_config++;
		c->next_k = c->shard - 1;
	}
	if (c->next_config == c->nrows)
		return false;
	*config = c->next_config;
	*seed = c->rows[c->next_config].seed_base + c->next_k;
	return true;
}

/* The parent has no threads, so the worker starts as a clean copy. -1 with errno. */
static int start_run(const struct campaign *c, struct worker *w, uint32_t config, uint64_t seed)
{
	int fds[2];
	pid_t pid;

	if (pipe(fds))
		return -1;
	pid = fork();
	if (pid < 0) {
		int e = errno;

		close(fds[0]);
		close(fds[1]);
		errno = e;
		return -1;
	}
	if (!pid) {
		sigaction(SIGINT, &c->old_int, NULL);
		sigaction(SIGTERM, &c->old_term, NULL);
		sigprocmask(SIG_SETMASK, &c->mask, NULL);
		close(fds[0]);
		run_one(&c->rows[config], config, seed, fds[1]);
	}
	close(fds[1]);
	*w = (struct worker){ .pid = pid, .fd = fds[0], .config = config, .seed = seed };
	return 0;
}

/* A worker's pipe is complete or closed: count its run. A worker that died, or said
 * nothing, is an error run: never dropped. */
static void finish_run(struct campaign *c, struct worker *w)
{
	struct row *row = &c->rows[w->config];
	const struct run_record *rec = &w->rec;
	char why[320];
	int st = 0;
	bool have, violated = false;

	struct rusage ru = { 0 };

	close(w->fd);
	while (wait4(w->pid, &st, 0, &ru) < 0 && errno == EINTR)
		;
	w->pid = 0;
	row->cpu_us += (uint64_t)ru.ru_utime.tv_sec * 1000000 + (uint64_t)ru.ru_utime.tv_usec +
		       (uint64_t)ru.ru_stime.tv_sec * 1000000 + (uint64_t)ru.ru_stime.tv_usec;
	have = WIFEXITED(st) && !WEXITSTATUS(st) && w->got == sizeof(*rec) && rec->seed == w->seed &&
	       rec->config == w->config;
	if (have) {
		for (int k = 0; k < VIOLATION_KIND_COUNT; k++) {
			row->kinds[k] += rec->kinds[k];
			violated |= rec->kinds[k] != 0;
		}
		for (size_t i = 0; i < NCOVERAGE; i++)
			row->coverage[i] += rec->coverage[i];
		row->steps_run += rec->steps;
		row->digest_sum += rec->digest;
	}
	if (WIFSIGNALED(st))
		snprintf(why, sizeof(why), "the worker was killed by signal %d (%s)", WTERMSIG(st),
			 strsignal(WTERMSIG(st)));
	else if (!have)
		snprintf(why, sizeof(why), "the worker ended (status %d) without a result",
			 WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	else if (rec->error != PTEMU_RUN_OK)
		snprintf(why, sizeof(why), "error: %.255s", rec->message);
	else
		why[0] = '\0';
	row->runs++;
	c->done++;
	if (why[0]) {
		row->errors++;
		run_error(c, row, w->seed, why);
	}
	if (why[0] || violated) {
		c->failing++;
		add_failing(row, w->seed);
	} else {
		row->clean++;
	}
	progress(c);
}

static volatile sig_atomic_t stop_signal;

static void on_stop_signal(int sig)
{
	stop_signal = sig;
}

/* A stop signal that came while the workers' pipes were read. */
static void note_pending_stop(void)
{
	sigset_t pending;

	if (sigpending(&pending))
		return;
	if (sigismember(&pending, SIGINT))
		stop_signal = SIGINT;
	else if (sigismember(&pending, SIGTERM))
		stop_signal = SIGTERM;
}

/* The runs still going are not counted: their workers get the signal, and are reaped. */
static void stop_workers(struct worker *w, unsigned nworkers, int sig)
{
	for (unsigned i = 0; i < nworkers; i++)
		if (w[i].pid)
			kill(w[i].pid, sig);
	for (unsigned i = 0; i < nworkers; i++) {
		if (!w[i].pid)
			continue;
		close(w[i].fd);
		while (waitpid(w[i].pid, NULL, 0) < 0 && errno == EINTR)
			;
		w[i].pid = 0;
	}
}

/* Runs every run of the shard, c->jobs at a time, until SIGINT or SIGTERM (then
 * c->stop_signal). SIGINT and SIGTERM are blocked but while waiting for the workers, and
 * stay blocked (their handler set) for the caller to write the results first. 0, or
 * EXIT_INTERNAL when no worker could be started at all. */
static int run_all(struct campaign *c)
{
	unsigned nworkers = (unsigned)(c->jobs < c->total ? c->jobs : c->total);
	struct worker *w = calloc(nworkers, sizeof(*w));
	struct pollfd *pfd = calloc(nworkers, sizeof(*pfd));
	struct sigaction sa = { .sa_handler = on_stop_signal };
	sigset_t stops;
	unsigned active = 0;
	int rc = 0;

	sigemptyset(&stops);
	sigaddset(&stops, SIGINT);
	sigaddset(&stops, SIGTERM);
	sigprocmask(SIG_BLOCK, &stops, &c->mask);
	/* A signal ignored when the campaign started (nohup, a background job) stays so. */
	sigaction(SIGINT, NULL, &c->old_int);
	sigaction(SIGTERM, NULL, &c->old_term);
	if (c->old_int.sa_handler != SIG_IGN)
		sigaction(SIGINT, &sa, NULL);
	if (c->old_term.sa_handler != SIG_IGN)
		sigaction(SIGTERM, &sa, NULL);
	clock_gettime(CLOCK_MONOTONIC, &c->start);
	c->next_k = c->shard - 1;
	if (nworkers && (!w || !pfd)) {
		fprintf(stderr, "ptemu: campaign: out of memory\n");
		rc = EXIT_INTERNAL;
	}
	while (!rc && !stop_signal) {
		uint32_t config;
		uint64_t seed;

		for (unsigned i = 0; i < nworkers; i++) {
			if (w[i].pid || !next_run(c, &config, &seed))
				continue;
			if (start_run(c, &w[i], config, seed)) {
				/* Out of processes or descriptors: wait for a run to end. */
				if (active)
					break;
				fprintf(stderr, "ptemu: campaign: cannot start a worker: %s\n", strerror(errno));
				rc = EXIT_INTERNAL;
				break;
			}
			c->next_k += c->nshards;
			active++;
		}
		if (!active)
			break;
		for (unsigned i = 0; i < nworkers; i++)
			pfd[i] = (struct pollfd){ .fd = w[i].pid ? w[i].fd : -1, .events = POLLIN };
		if (ppoll(pfd, nworkers, NULL, &c->mask) < 0)
			continue;	/* EINTR; nothing else can fail with these arguments */
		/* A worker the terminal's SIGINT killed is not an error: the campaign stops. */
		note_pending_stop();
		for (unsigned i = 0; i < nworkers && !stop_signal; i++) {
			ssize_t n;

			if (!w[i].pid || !pfd[i].revents)
				continue;
			n = read(w[i].fd, (char *)&w[i].rec + w[i].got, sizeof(w[i].rec) - w[i].got);
			if (n < 0 && errno == EINTR)
				continue;
			if (n > 0)
				w[i].got += (size_t)n;
			if (n > 0 && w[i].got < sizeof(w[i].rec))
				continue;
			finish_run(c, &w[i]);
			active--;
		}
	}
	if (stop_signal)
		stop_workers(w, nworkers, stop_signal);
	c->stop_signal = stop_signal;
	if (c->line_open)
		fputc('\n', stderr);
	free(pfd);
	free(w);
	return rc;
}

/* Exploration speed: runs per hour of one host core (the workers' own CPU time). */
static uint64_t runs_per_core_hour(const struct row *r)
{
	return r->cpu_us ? (uint64_t)((double)r->runs * 3600e6 / (double)r->cpu_us + 0.5) : 0;
}

static void print_table(FILE *f, const struct row *rows, unsigned n)
{
	fprintf(f, "%-9s %-23s %-16s %6s %6s %6s %10s %10s  %s\n", "arch", "inject", "protocol", "runs",
		"clean", "errors", "first-fail", "runs/core-h", "violations, coverage");
	for (unsigned i = 0; i < n; i++) {
		const struct row *r = &rows[i];
		char proto[32], first[24] = "-";
		bool any = false;

		snprintf(proto, sizeof(proto), "%s%s%s", r->protocol, r->reclaim ? "+reclaim" : "",
			 r->khugepaged ? "+khugepaged" : "");
		if (r->nfailing)
			snprintf(first, sizeof(first), "%" PRIu64, r->failing[0]);
		fprintf(f, "%-9s %-23s %-16s %6" PRIu64 " %6" PRIu64 " %6" PRIu64 " %10s %11" PRIu64 "  ", r->arch,
			r->inject, proto, r->runs, r->clean, r->errors, first, runs_per_core_hour(r));
		for (int k = 0; k < VIOLATION_KIND_COUNT; k++) {
			if (!r->kinds[k])
				continue;
			fprintf(f, "%s%s=%" PRIu64, any ? "," : "",
				ptemu_violation_name((enum ptemu_violation_kind)k), r->kinds[k]);
			any = true;
		}
		fprintf(f, "%s,", any ? "" : "no violations");
		for (size_t c = 0; c < NCOVERAGE; c++)
			fprintf(f, " %s=%" PRIu64, ptemu_stat_name(coverage_stats[c]), r->coverage[c]);
		fputc('\n', f);
		if (!r->nfailing)
			continue;
		/* The smallest failing seed, as one run that records its trace; the trace's name
		 * tells the protocol and reclaim apart where they are not the defaults. */
		char trace[160];

		snprintf(trace, sizeof(trace), "fail-%s-%s%s%s%s%s-%" PRIu64 ".trc", r->arch, r->inject,
			 strcmp(r->protocol, "lockless") ? "-" : "", strcmp(r->protocol, "lockless") ? r->protocol : "",
			 r->reclaim ? "-reclaim" : "", r->khugepaged ? "-khugepaged" : "", r->failing[0]);
		fprintf(f, "  reproduce: ptemu run --arch %s --workload %s --procs %" PRIu64 " --vcpus %" PRIu64
			   " --sched %s --pct-depth %" PRIu64 " --steps %" PRIu64 " --seed %" PRIu64
			   " --inject %s --protocol %s%s%s --record %s\n",
			r->arch, r->workload, r->procs, r->vcpus, r->sched, r->pct_depth, r->steps,
			r->failing[0], r->inject, r->protocol, r->reclaim ? " --reclaim-empty-tables" : "",
			r->khugepaged ? " --khugepaged on" : "", trace);
		fprintf(f, "  replay:    ptemu replay %s\n", trace);
	}
	fflush(f);
}

/* The names written are identifiers (of this build, or read back by read_row, which
 * refuses quotes, backslashes and control characters): nothing to escape. */
static void print_json(FILE *f, const struct row *rows, unsigned n, const char *shard, bool partial)
{
	fprintf(f, "{\"configs\":[");
	for (unsigned i = 0; i < n; i++) {
		const struct row *r = &rows[i];

		fprintf(f, "%s\n{\"arch\":\"%s\",\"inject\":\"%s\",\"protocol\":\"%s\",\"reclaim_empty_tables\":%s,"
			   "\"khugepaged\":%s,\"workload\":\"%s\",\"procs\":%" PRIu64 ",\"vcpus\":%" PRIu64 ",\"sched\":\"%s\","
			   "\"pct_depth\":%" PRIu64 ",\"steps\":%" PRIu64 ",\"seed_base\":%" PRIu64
			   ",\"seeds\":%" PRIu64 ",\"runs\":%" PRIu64 ",\"clean\":%" PRIu64 ",\"errors\":%" PRIu64
			   ",\"violations_by_kind\":{",
			i ? "," : "", r->arch, r->inject, r->protocol, r->reclaim ? "true" : "false",
			r->khugepaged ? "true" : "false", r->workload,
			r->procs, r->vcpus, r->sched, r->pct_depth, r->steps, r->seed_base, r->seeds, r->runs,
			r->clean, r->errors);
		for (int k = 0; k < VIOLATION_KIND_COUNT; k++)
			fprintf(f, "%s\"%s\":%" PRIu64, k ? "," : "",
				ptemu_violation_name((enum ptemu_violation_kind)k), r->kinds[k]);
		fprintf(f, "},\"coverage\":{");
		for (size_t c = 0; c < NCOVERAGE; c++)
			fprintf(f, "%s\"%s\":%" PRIu64, c ? "," : "", ptemu_stat_name(coverage_stats[c]),
				r->coverage[c]);
		fprintf(f, "},\"steps_run\":%" PRIu64 ",\"cpu_us\":%" PRIu64 ",\"runs_per_core_hour\":%" PRIu64
			   ",\"digest_sum\":\"%016" PRIx64 "\",\"first_failing_seed\":",
			r->steps_run, r->cpu_us, runs_per_core_hour(r), r->digest_sum);
		if (r->nfailing)
			fprintf(f, "%" PRIu64, r->failing[0]);
		else
			fprintf(f, "null");
		fprintf(f, ",\"failing_seeds\":[");
		for (unsigned s = 0; s < r->nfailing; s++)
			fprintf(f, "%s%" PRIu64, s ? "," : "", r->failing[s]);
		fprintf(f, "]}");
	}
	fprintf(f, "\n],\"shard\":\"%s\"%s}\n", shard, partial ? ",\"partial\":true" : "");
}

static int campaign_status(const struct row *rows, unsigned n)
{
	int status = EXIT_CLEAN;

	for (unsigned i = 0; i < n; i++) {
		if (rows[i].errors)
			return EXIT_INTERNAL;
		if (rows[i].runs > rows[i].clean)
			status = EXIT_VIOLATIONS;
	}
	return status;
}

/* --- merge: a reader for exactly what print_json writes --- */

struct reader {
	const char *buf, *p;
};

/* Skips the layout print_json adds, then expects s. */
static bool lit(struct reader *r, const char *s)
{
	size_t n = strlen(s);

	while (*r->p == '\n')
		r->p++;
	if (strncmp(r->p, s, n))
		return false;
	r->p += n;
	return true;
}

static bool str(struct reader *r, char *out, size_t n)
{
	size_t len = 0;

	if (!lit(r, "\""))
		return false;
	for (; r->p[len] != '"'; len++)
		if (!r->p[len] || r->p[len] == '\\' || (unsigned char)r->p[len] < 0x20 || len + 1 >= n)
			return false;
	if (!len)
		return false;
	memcpy(out, r->p, len);
	out[len] = '\0';
	r->p += len + 1;
	return true;
}

static bool num(struct reader *r, uint64_t *v, int base)
{
	char *end;

	if (!(base == 16 ? strchr("0123456789abcdef", *r->p) : strchr("0123456789", *r->p)) || !*r->p)
		return false;
	errno = 0;
	*v = strtoull(r->p, &end, base);
	r->p = end;
	return !errno;
}

static bool read_row(struct reader *r, struct row *w)
{
	char key[64];
	uint64_t seed, first = 0, rate;
	bool has_first;
	bool ok = lit(r, "{\"arch\":") && str(r, w->arch, sizeof(w->arch)) &&
		  lit(r, ",\"inject\":") && str(r, w->inject, sizeof(w->inject)) &&
		  lit(r, ",\"protocol\":") && str(r, w->protocol, sizeof(w->protocol)) &&
		  lit(r, ",\"reclaim_empty_tables\":") &&
		  ((w->reclaim = lit(r, "true")) || lit(r, "false")) &&
		  lit(r, ",\"khugepaged\":") && ((w->khugepaged = lit(r, "true")) || lit(r, "false")) &&
		  lit(r, ",\"workload\":") && str(r, w->workload, sizeof(w->workload)) &&
		  lit(r, ",\"procs\":") && num(r, &w->procs, 10) &&
		  lit(r, ",\"vcpus\":") && num(r, &w->vcpus, 10) &&
		  lit(r, ",\"sched\":") && str(r, w->sched, sizeof(w->sched)) &&
		  lit(r, ",\"pct_depth\":") && num(r, &w->pct_depth, 10) &&
		  lit(r, ",\"steps\":") && num(r, &w->steps, 10) &&
		  lit(r, ",\"seed_base\":") && num(r, &w->seed_base, 10) &&
		  lit(r, ",\"seeds\":") && num(r, &w->seeds, 10) &&
		  lit(r, ",\"runs\":") && num(r, &w->runs, 10) &&
		  lit(r, ",\"clean\":") && num(r, &w->clean, 10) &&
		  lit(r, ",\"errors\":") && num(r, &w->errors, 10) &&
		  lit(r, ",\"violations_by_kind\":{");

	for (int k = 0; ok && k < VIOLATION_KIND_COUNT; k++) {
		snprintf(key, sizeof(key), "%s\"%s\":", k ? "," : "",
			 ptemu_violation_name((enum ptemu_violation_kind)k));
		ok = lit(r, key) && num(r, &w->kinds[k], 10);
	}
	ok = ok && lit(r, "},\"coverage\":{");
	for (size_t c = 0; ok && c < NCOVERAGE; c++) {
		snprintf(key, sizeof(key), "%s\"%s\":", c ? "," : "", ptemu_stat_name(coverage_stats[c]));
		ok = lit(r, key) && num(r, &w->coverage[c], 10);
	}
	ok = ok && lit(r, "},\"steps_run\":") && num(r, &w->steps_run, 10) &&
	     lit(r, ",\"cpu_us\":") && num(r, &w->cpu_us, 10) &&
	     lit(r, ",\"runs_per_core_hour\":") && num(r, &rate, 10) &&
	     lit(r, ",\"digest_sum\":\"") && num(r, &w->digest_sum, 16) && lit(r, "\"") &&
	     lit(r, ",\"first_failing_seed\":");
	has_first = ok && !lit(r, "null");
	ok = ok && (!has_first || num(r, &first, 10)) && lit(r, ",\"failing_seeds\":[");
	if (ok && !lit(r, "]")) {
		do {
			ok = w->nfailing < MAX_FAILING && num(r, &seed, 10);
			if (ok)
				w->failing[w->nfailing++] = seed;
		} while (ok && lit(r, ","));
		ok = ok && lit(r, "]");
	}
	/* The first failing seed is the head of the list, and null with an empty one. */
	return ok && lit(r, "}") && has_first == (w->nfailing > 0) && (!has_first || first == w->failing[0]);
}

/* What must hold of a row of shard I/N that print_json wrote; NULL when it does. */
static const char *row_inconsistency(const struct row *w, uint64_t shard, uint64_t nshards)
{
	uint64_t failed = w->runs - w->clean;

	/* The names go into a command line to reproduce: only those of this build. */
	if (!ptemu_arch_find(w->arch))
		return "its arch is not a model of this build ('ptemu list arches')";
	if (ptemu_injection_from_name(w->inject) == INJECT_COUNT)
		return "its inject is not an injection of this build ('ptemu list injections')";
	if (ptemu_protocol_from_name(w->protocol) < 0)
		return "its protocol is neither lockless nor legacy";
	if (!known_workload(w->workload))
		return "its workload is not one of this build ('ptemu list workloads')";
	if (strcmp(w->sched, "pct") && strcmp(w->sched, "random"))
		return "sched is neither pct nor random";
	if (w->runs != runs_in_shard(w->seeds, shard, nshards))
		return "its runs are not the number of seeds in its shard";
	if (w->clean > w->runs || w->errors > failed)
		return "clean or errors exceed its runs";
	if (w->nfailing != (failed < MAX_FAILING ? failed : MAX_FAILING))
		return "its failing seeds do not match its runs";
	for (unsigned s = 0; s < w->nfailing; s++) {
		uint64_t k = w->failing[s] - w->seed_base;

		if ((s && w->failing[s] <= w->failing[s - 1]) || w->failing[s] < w->seed_base ||
		    k >= w->seeds || k % nshards != shard - 1)
			return "a failing seed is not one of its shard's, or out of order";
	}
	return NULL;
}

static bool same_config(const struct row *a, const struct row *b)
{
	return !strcmp(a->arch, b->arch) && !strcmp(a->inject, b->inject) &&
	       !strcmp(a->protocol, b->protocol) && a->reclaim == b->reclaim &&
	       a->khugepaged == b->khugepaged &&
	       !strcmp(a->workload, b->workload) && a->procs == b->procs && a->vcpus == b->vcpus &&
	       !strcmp(a->sched, b->sched) && a->pct_depth == b->pct_depth && a->steps == b->steps &&
	       a->seed_base == b->seed_base && a->seeds == b->seeds;
}

struct shard_file {
	const char *name;
	uint64_t shard, nshards;
	struct row *rows;
	unsigned nrows;
};

/* The whole file as a string; NULL with the reason in why. */
static char *slurp(const char *path, char *why, size_t whylen)
{
	FILE *f = fopen(path, "r");
	size_t len = 0, cap = 65536, n;
	char *buf = NULL;
	struct stat st;
	bool bad;

	if (f && !fstat(fileno(f), &st) && S_ISDIR(st.st_mode))
		errno = EISDIR;
	else if (f)
		buf = malloc(cap);
	if (!buf) {
		snprintf(why, whylen, "cannot read it: %s", strerror(errno));
		if (f)
			fclose(f);
		return NULL;
	}
	while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
		len += n;
		if (len + 1 < cap)
			continue;
		char *more = cap < (64u << 20) ? realloc(buf, cap *= 2) : NULL;

		if (!more) {
			snprintf(why, whylen, "larger than any JSON file of 'ptemu campaign --json'");
			free(buf);
			fclose(f);
			return NULL;
		}
		buf = more;
	}
	buf[len] = '\0';
	bad = ferror(f) || strlen(buf) != len;
	if (ferror(f))
		snprintf(why, whylen, "cannot read it: %s", strerror(errno));
	else if (bad)
		snprintf(why, whylen, "a NUL byte at byte %zu: not a JSON file of 'ptemu campaign --json'",
			 strlen(buf));
	fclose(f);
	if (bad) {
		free(buf);
		return NULL;
	}
	return buf;
}

/* 0, or EXIT_USAGE with the reason, naming the file, printed. */
static int read_shard_file(struct shard_file *sf)
{
	char shard[64], where[48] = "", unread[160];
	char *text = slurp(sf->name, unread, sizeof(unread));
	struct reader r = { text, text };
	const char *why = NULL;
	bool ok, interrupted = false;

	if (!text) {
		fprintf(stderr, "ptemu: campaign merge: %s: %s\n", sf->name, unread);
		return EXIT_USAGE;
	}
	ok = lit(&r, "{\"configs\":[");
	if (ok && !lit(&r, "]")) {
		do {
			struct row *more = realloc(sf->rows, (sf->nrows + 1) * sizeof(*more));

			if (!more) {
				ok = false;
				break;
			}
			sf->rows = more;
			memset(&more[sf->nrows], 0, sizeof(*more));
			ok = read_row(&r, &more[sf->nrows]);
			sf->nrows += ok;
		} while (ok && lit(&r, ","));
		ok = ok && lit(&r, "]");
	}
	ok = ok && lit(&r, ",\"shard\":") && str(&r, shard, sizeof(shard)) &&
	     ((interrupted = lit(&r, ",\"partial\":true")) || true) && lit(&r, "}\n") && !*r.p;
	if (!ok) {
		why = "not a JSON file of 'ptemu campaign --json'";
		snprintf(where, sizeof(where), " (at byte %td)", r.p - r.buf);
	} else if (interrupted) {
		why = "the campaign was interrupted: its runs are partial; run its shard again";
	} else if (!parse_shard(shard, &sf->shard, &sf->nshards)) {
		why = !strcmp(shard, "partial") ? "a partial merge: merge its shards instead" :
						  "its shard is not I/N";
	}
	for (unsigned i = 0; !why && i < sf->nrows; i++) {
		why = row_inconsistency(&sf->rows[i], sf->shard, sf->nshards);
		for (unsigned j = 0; !why && j < i; j++)
			if (same_config(&sf->rows[i], &sf->rows[j]))
				why = "a configuration appears twice";
		if (why && !where[0])
			snprintf(where, sizeof(where), " (configuration %u)", i + 1);
	}
	free(text);
	if (why) {
		fprintf(stderr, "ptemu: campaign merge: %s: %s%s\n", sf->name, why, where);
		return EXIT_USAGE;
	}
	return 0;
}

/* Sums a shard's row into the merged one: NULL, or the field whose sum is beyond 2^64-1
 * (the digest sum wraps: it is compared, not counted). */
static const char *add_row(struct row *to, const struct row *from)
{
	struct row sum = *to;

	if (__builtin_add_overflow(sum.runs, from->runs, &sum.runs))
		return "runs";
	if (__builtin_add_overflow(sum.clean, from->clean, &sum.clean))
		return "clean";
	if (__builtin_add_overflow(sum.errors, from->errors, &sum.errors))
		return "errors";
	if (__builtin_add_overflow(sum.steps_run, from->steps_run, &sum.steps_run))
		return "steps_run";
	if (__builtin_add_overflow(sum.cpu_us, from->cpu_us, &sum.cpu_us))
		return "cpu_us";
	for (int k = 0; k < VIOLATION_KIND_COUNT; k++)
		if (__builtin_add_overflow(sum.kinds[k], from->kinds[k], &sum.kinds[k]))
			return ptemu_violation_name((enum ptemu_violation_kind)k);
	for (size_t c = 0; c < NCOVERAGE; c++)
		if (__builtin_add_overflow(sum.coverage[c], from->coverage[c], &sum.coverage[c]))
			return ptemu_stat_name(coverage_stats[c]);
	sum.digest_sum += from->digest_sum;
	for (unsigned s = 0; s < from->nfailing; s++)
		add_failing(&sum, from->failing[s]);
	sum.shards++;
	*to = sum;
	return NULL;
}

/* The table (on stderr when the JSON goes to stdout), then the JSON, written. */
static int report(const struct row *rows, unsigned n, struct out_file *json, const char *shard, bool partial,
		  const char *heading)
{
	FILE *table = summary_stream(json);

	fputs(heading, table);
	print_table(table, rows, n);
	if (!json->path)
		return 0;
	print_json(json->f, rows, n, shard, partial);
	return out_commit(json);
}

/* Which shards of N the files hold a row's configuration in: the missing ones, listed. */
static void print_missing(const struct row *r, const struct shard_file *files, unsigned nfiles,
			  bool *present)
{
	uint64_t n = files[0].nshards, shown = 0;

	memset(present, 0, n + 1);
	for (unsigned f = 0; f < nfiles; f++)
		for (unsigned i = 0; i < files[f].nrows; i++)
			if (same_config(r, &files[f].rows[i]))
				present[files[f].shard] = true;
	fprintf(stderr, "ptemu: campaign merge: %s %s %s%s (%s, seeds %" PRIu64 "..%" PRIu64
			"): missing shard", r->arch, r->inject, r->protocol,
		r->reclaim ? "+reclaim" : (r->khugepaged ? "+khugepaged" : ""),
		r->workload, r->seed_base, r->seed_base + (r->seeds - 1));
	for (uint64_t s = 1; s <= n; s++) {
		if (present[s])
			continue;
		if (shown++ == 8) {
			fprintf(stderr, " ...");
			break;
		}
		fprintf(stderr, " %" PRIu64 "/%" PRIu64, s, n);
	}
	fputc('\n', stderr);
}

/* Sums the files' rows by configuration into *out. 0, or the exit status with the reason
 * printed. */
static int merge_rows(const struct shard_file *files, unsigned nfiles, struct row **out, unsigned *nout)
{
	for (unsigned f = 0; f < nfiles; f++) {
		for (unsigned i = 0; i < files[f].nrows; i++) {
			const struct row *r = &files[f].rows[i];
			const char *overflow;
			unsigned o = 0;

			while (o < *nout && !same_config(&(*out)[o], r))
				o++;
			if (o < *nout) {
				if (!(overflow = add_row(&(*out)[o], r)))
					continue;
				fprintf(stderr, "ptemu: campaign merge: %s: configuration %u: its %s summed with "
					"the other shards' is beyond 2^64-1\n", files[f].name, i + 1, overflow);
				return EXIT_USAGE;
			}
			struct row *more = realloc(*out, (*nout + 1) * sizeof(*more));

			if (!more) {
				fprintf(stderr, "ptemu: campaign merge: out of memory\n");
				return EXIT_INTERNAL;
			}
			*out = more;
			more[*nout] = *r;
			more[(*nout)++].shards = 1;
		}
	}
	return 0;
}

static int merge_main(int argc, char **argv)
{
	struct cli_opts o = merge_defaults;
	struct out_file json = { 0 };
	struct shard_file *files = NULL;
	struct row *out = NULL;
	bool *present = NULL;
	unsigned nfiles, nout = 0, incomplete = 0;
	char heading[128];
	int rc = cli_parse(&cmd_campaign_merge, argc, argv, &o, 1, INT32_MAX);

	if (rc)
		return rc == CLI_HELP ? EXIT_CLEAN : rc;
	nfiles = (unsigned)o.nargs;
	files = calloc(nfiles, sizeof(*files));
	if (!files)
		return EXIT_INTERNAL;
	for (unsigned i = 0; i < nfiles && !rc; i++) {
		files[i].name = o.args[i];
		rc = read_shard_file(&files[i]);
		for (unsigned j = 0; j < i && !rc; j++) {
			if (files[j].nshards != files[i].nshards) {
				fprintf(stderr, "ptemu: campaign merge: %s is shard %" PRIu64 "/%" PRIu64 " but %s is shard %"
					PRIu64 "/%" PRIu64 ": not shards of one campaign\n", files[j].name,
					files[j].shard, files[j].nshards, files[i].name, files[i].shard,
					files[i].nshards);
				rc = EXIT_USAGE;
			} else if (files[j].shard == files[i].shard) {
				fprintf(stderr, "ptemu: campaign merge: %s and %s are both shard %" PRIu64 "/%" PRIu64
					"\n", files[j].name, files[i].name, files[i].shard, files[i].nshards);
				rc = EXIT_USAGE;
			}
		}
	}
	if (!rc)
		rc = merge_rows(files, nfiles, &out, &nout);
	if (!rc && !(present = malloc(files[0].nshards + 1)))
		rc = EXIT_INTERNAL;
	for (unsigned i = 0; i < nout && !rc; i++) {
		if (out[i].shards == files[0].nshards)
			continue;
		incomplete++;
		print_missing(&out[i], files, nfiles, present);
	}
	if (!rc && incomplete && !o.partial) {
		fprintf(stderr, "ptemu: campaign merge: %u configuration%s incomplete (--partial merges what "
			"there is)\n", incomplete, incomplete == 1 ? " is" : "s are");
		rc = EXIT_USAGE;
	}
	if (!rc && o.json)
		rc = out_open(&json, o.json, true);
	if (!rc) {
		snprintf(heading, sizeof(heading), "campaign: %u file%s, %s of %" PRIu64 " shards\n", nfiles,
			 nfiles == 1 ? "" : "s", incomplete ? "parts" : "all", files[0].nshards);
		rc = report(out, nout, &json, incomplete ? "partial" : "1/1", false, heading);
	}
	if (!rc)
		rc = campaign_status(out, nout);
	for (unsigned f = 0; f < nfiles; f++)
		free(files[f].rows);
	free(files);
	free(out);
	free(present);
	return rc;
}

/* The image of the workload for each model, loaded once here so that a missing or wrong
 * one is a usage error and not a campaign of failed runs. */
static int check_images(const struct cli_opts *o)
{
	for (unsigned i = 0; i < o->narches; i++) {
		const struct ptemu_arch *a = o->arches[i];
		struct ptemu_elf_image img;
		char path[4096], err[512];

		workload_image_path(a, o->workload, path, sizeof(path));
		if (ptemu_elf_load_for(a, path, &img, err, sizeof(err))) {
			fprintf(stderr, "ptemu: %s\n", err);
			return EXIT_USAGE;
		}
		ptemu_elf_free(&img);
	}
	return 0;
}

/* A model without an injection's path is left out of that configuration; only an
 * injection no listed model offers is an error. A configuration other than the one whose
 * races reach the injection gets a note: it may well find nothing. */
static int check_injections(const struct cli_opts *o)
{
	for (unsigned i = 0; i < o->ninjects; i++) {
		unsigned offered = 0;

		for (unsigned a = 0; a < o->narches; a++)
			offered += ptemu_injection_applies((enum ptemu_injection)o->injects[i], o->arches[a]);
		if (!offered) {
			fprintf(stderr, "ptemu: injection %s not offered by %s ('ptemu list injections')\n",
				injection_name((enum ptemu_injection)o->injects[i]),
				o->narches == 1 ? o->arches[0]->name : "any of the models given");
			return EXIT_USAGE;
		}
		note_injection_reach(o, (enum ptemu_injection)o->injects[i]);
	}
	return 0;
}

/* The configurations: arch x injection x protocol. */
static int make_rows(struct campaign *c, const struct cli_opts *o)
{
	struct row base = { .procs = o->procs, .vcpus = o->vcpus, .pct_depth = o->pct_depth,
			    .steps = o->steps, .seed_base = o->seed_base, .seeds = o->seeds,
			    .reclaim = o->reclaim, .khugepaged = o->khugepaged };

	snprintf(base.workload, sizeof(base.workload), "%s", o->workload);
	snprintf(base.sched, sizeof(base.sched), "%s", o->sched == PTEMU_SCHED_PCT ? "pct" : "random");
	c->rows = calloc((size_t)o->narches * o->ninjects * o->nprotocols, sizeof(*c->rows));
	if (!c->rows)
		return EXIT_INTERNAL;
	for (unsigned a = 0; a < o->narches; a++) {
		for (unsigned i = 0; i < o->ninjects; i++) {
			enum ptemu_injection inj = (enum ptemu_injection)o->injects[i];

			if (!ptemu_injection_applies(inj, o->arches[a])) {
				fprintf(stderr, "ptemu: campaign: %s does not apply to %s (%s): left out\n",
					injection_name(inj), o->arches[a]->name,
					ptemu_injection_why_not(inj, o->arches[a]));
				continue;
			}
			for (unsigned p = 0; p < o->nprotocols; p++) {
				struct row *r = &c->rows[c->nrows++];

				*r = base;
				snprintf(r->arch, sizeof(r->arch), "%s", o->arches[a]->name);
				snprintf(r->inject, sizeof(r->inject), "%s", injection_name(inj));
				snprintf(r->protocol, sizeof(r->protocol), "%s",
					 ptemu_protocol_name((enum ptemu_protocol)o->protocols[p]));
			}
		}
	}
	return 0;
}

static int campaign_main(int argc, char **argv)
{
	struct cli_opts o = campaign_defaults;
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	struct campaign c = { 0 };
	struct out_file json = { 0 };
	char heading[320], shard[48];
	int rc;

	o.jobs = cpus > 0 ? (uint64_t)cpus : 1;
	if ((rc = cli_parse(&cmd_campaign, argc, argv, &o, 0, 0)))
		return rc == CLI_HELP ? EXIT_CLEAN : rc;
	if (!o.given[OPT_ARCH - OPT_FIRST] || !o.given[OPT_SEEDS - OPT_FIRST])
		return usage_error("%s", "campaign needs --arch and --seeds");
	if (o.seeds - 1 > UINT64_MAX - o.seed_base)
		return usage_error("%s", "--seed-base: the last seed would be beyond 2^64-1");
	if ((rc = check_injections(&o)))
		return rc;
	if (ptemu_check_unicorn(heading, sizeof(heading))) {
		fprintf(stderr, "ptemu: %s\n", heading);
		return EXIT_INTERNAL;
	}
	if ((rc = check_images(&o)) || (rc = make_rows(&c, &o)))
		return rc;
	c.shard = o.shard;
	c.nshards = o.nshards;
	c.jobs = o.jobs;
	c.quiet = o.quiet;
	c.total = c.nrows * runs_in_shard(o.seeds, c.shard, c.nshards);
	c.tty = isatty(STDERR_FILENO);
	if (o.json && (rc = out_open(&json, o.json, true))) {
		free(c.rows);
		return rc;
	}
	rc = run_all(&c);
	if (!rc) {
		struct row all = { 0 };

		for (unsigned i = 0; i < c.nrows; i++) {
			all.runs += c.rows[i].runs;
			all.cpu_us += c.rows[i].cpu_us;
		}
		snprintf(shard, sizeof(shard), "%" PRIu64 "/%" PRIu64, c.shard, c.nshards);
		snprintf(heading, sizeof(heading), "campaign: %s, %" PRIu64 " process%s x %" PRIu64
			 " vCPU%s, sched %s depth %" PRIu64 ", %" PRIu64 " steps, seeds %" PRIu64 "..%" PRIu64
			 ", shard %s, %.1f s, %.1f core-s, %" PRIu64 " runs per core-hour\n",
			 o.workload, o.procs, o.procs == 1 ? "" : "es", o.vcpus, o.vcpus == 1 ? "" : "s",
			 c.rows[0].sched, o.pct_depth, o.steps, o.seed_base, o.seed_base + (o.seeds - 1), shard,
			 elapsed(&c), (double)all.cpu_us / 1e6, runs_per_core_hour(&all));
		if (c.stop_signal)
			snprintf(heading + strlen(heading), sizeof(heading) - strlen(heading),
				 "campaign: stopped by %s: partial, %" PRIu64 " of %" PRIu64 " runs\n",
				 c.stop_signal == SIGINT ? "SIGINT" : "SIGTERM", c.done, c.total);
		rc = report(c.rows, c.nrows, &json, shard, c.stop_signal, heading);
	} else {
		out_discard(&json);
	}
	if (!rc)
		rc = campaign_status(c.rows, c.nrows);
	free(c.rows);
	if (c.stop_signal) {
		/* The results are written: end as the signal asked, for the shell to see. */
		signal(c.stop_signal, SIG_DFL);
		sigprocmask(SIG_SETMASK, &c.mask, NULL);
		raise(c.stop_signal);
	}
	return rc;
}
