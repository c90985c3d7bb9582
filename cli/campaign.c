/* ptemu campaign: deterministic runs over seeds and configurations, each run in a forked
 * worker process so that a crash or a hang costs that run and not the campaign; a table
 * (and JSON) of what they found; and the merge of a campaign's shards. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <ptemu/check.h>
#include <ptemu/loader.h>
#include <ptemu/machine.h>
#include <ptemu/run.h>
#include <ptemu/stats.h>

#include "cli.h"

/* A row keeps its smallest failing seeds, this many. */
#define MAX_FAILING 32
#define MAX_SHARDS 1000000u

/* The counters a row sums: how often the races the checker watches were exercised. */
static const enum ptemu_stat coverage_stats[] = {
	PTEMU_STAT_pte_map_failures, PTEMU_STAT_pmd_recheck_retries, PTEMU_STAT_detach_with_reader,
	PTEMU_STAT_walk_raced_detach, PTEMU_STAT_collapses, PTEMU_STAT_retracts,
};
#define NCOVERAGE (sizeof(coverage_stats) / sizeof(coverage_stats[0]))

/* One configuration and what its runs found: a row of the table, an object of the JSON.
 * Names rather than pointers, so that merged files fill it the same way. */
struct row {
	char arch[32], inject[32], protocol[16], workload[64], sched[8];
	bool reclaim, khugepaged;
	uint64_t procs, vcpus, pct_depth, steps, seed_base, seeds;
	uint64_t runs, clean, errors, steps_run, digest_sum;
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

	close(w->fd);
	while (waitpid(w->pid, &st, 0) < 0 && errno == EINTR)
		;
	w->pid = 0;
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

/* Runs every run of the shard, c->jobs at a time. 0, or EXIT_INTERNAL when no worker
 * could be started at all. */
static int run_all(struct campaign *c)
{
	unsigned nworkers = (unsigned)(c->jobs < c->total ? c->jobs : c->total);
	struct worker *w = calloc(nworkers, sizeof(*w));
	struct pollfd *pfd = calloc(nworkers, sizeof(*pfd));
	unsigned active = 0;
	int rc = 0;

	clock_gettime(CLOCK_MONOTONIC, &c->start);
	c->next_k = c->shard - 1;
	if (nworkers && (!w || !pfd)) {
		fprintf(stderr, "ptemu: campaign: out of memory\n");
		rc = EXIT_INTERNAL;
	}
	while (!rc) {
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
		if (poll(pfd, nworkers, -1) < 0)
			continue;	/* EINTR; nothing else can fail with these arguments */
		for (unsigned i = 0; i < nworkers; i++) {
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
	if (c->line_open)
		fputc('\n', stderr);
	free(pfd);
	free(w);
	return rc;
}

static void print_table(FILE *f, const struct row *rows, unsigned n)
{
	fprintf(f, "%-9s %-23s %-16s %6s %6s %6s %10s  %s\n", "arch", "inject", "protocol", "runs",
		"clean", "errors", "first-fail", "violations, coverage");
	for (unsigned i = 0; i < n; i++) {
		const struct row *r = &rows[i];
		char proto[32], first[24] = "-";
		bool any = false;

		snprintf(proto, sizeof(proto), "%s%s%s", r->protocol, r->reclaim ? "+reclaim" : "",
			 r->khugepaged ? "+khugepaged" : "");
		if (r->nfailing)
			snprintf(first, sizeof(first), "%" PRIu64, r->failing[0]);
		fprintf(f, "%-9s %-23s %-16s %6" PRIu64 " %6" PRIu64 " %6" PRIu64 " %10s  ", r->arch,
			r->inject, proto, r->runs, r->clean, r->errors, first);
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
static void print_json(FILE *f, const struct row *rows, unsigned n, const char *shard)
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
		fprintf(f, "},\"steps_run\":%" PRIu64 ",\"digest_sum\":\"%016" PRIx64 "\",\"first_failing_seed\":",
			r->steps_run, r->digest_sum);
		if (r->nfailing)
			fprintf(f, "%" PRIu64, r->failing[0]);
		else
			fprintf(f, "null");
		fprintf(f, ",\"failing_seeds\":[");
		for (unsigned s = 0; s < r->nfailing; s++)
			fprintf(f, "%s%" PRIu64, s ? "," : "", r->failing[s]);
		fprintf(f, "]}");
	}
	fprintf(f, "\n],\"shard\":\"%s\"}\n", shard);
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

static bool parse_shard(const char *s, uint64_t *shard, uint64_t *nshards)
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
	return parse_u64(slash + 1, 1, MAX_SHARDS, nshards) && parse_u64(buf, 1, *nshards, shard);
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
	uint64_t seed, first = 0;
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

/* The whole file as a string; NULL with errno. */
static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	size_t len = 0, cap = 65536, n;
	char *buf = malloc(cap);

	if (!f || !buf) {
		free(buf);
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
			free(buf);
			fclose(f);
			errno = EFBIG;
			return NULL;
		}
		buf = more;
	}
	buf[len] = '\0';
	if (ferror(f) || strlen(buf) != len) {
		free(buf);
		fclose(f);
		errno = EINVAL;
		return NULL;
	}
	fclose(f);
	return buf;
}

/* 0, or EXIT_USAGE with the reason, naming the file, printed. */
static int read_shard_file(struct shard_file *sf)
{
	char *text = slurp(sf->name);
	struct reader r = { text, text };
	char shard[64], where[48] = "";
	const char *why = NULL;
	bool ok;

	if (!text) {
		fprintf(stderr, "ptemu: campaign merge: cannot read %s: %s\n", sf->name, strerror(errno));
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
	ok = ok && lit(&r, ",\"shard\":") && str(&r, shard, sizeof(shard)) && lit(&r, "}\n") && !*r.p;
	if (!ok) {
		why = "not a JSON file of 'ptemu campaign --json'";
		snprintf(where, sizeof(where), " (at byte %td)", r.p - r.buf);
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

static void add_row(struct row *to, const struct row *from)
{
	to->runs += from->runs;
	to->clean += from->clean;
	to->errors += from->errors;
	to->steps_run += from->steps_run;
	to->digest_sum += from->digest_sum;
	for (int k = 0; k < VIOLATION_KIND_COUNT; k++)
		to->kinds[k] += from->kinds[k];
	for (size_t c = 0; c < NCOVERAGE; c++)
		to->coverage[c] += from->coverage[c];
	for (unsigned s = 0; s < from->nfailing; s++)
		add_failing(to, from->failing[s]);
	to->shards++;
}

/* '-' is stdout. NULL with the reason printed. */
static FILE *open_json(const char *path)
{
	FILE *f = strcmp(path, "-") ? fopen(path, "w") : stdout;

	if (!f)
		fprintf(stderr, "ptemu: cannot write %s: %s\n", path, strerror(errno));
	return f;
}

/* The table (on stderr when the JSON goes to stdout), then the JSON. */
static int report(const struct row *rows, unsigned n, FILE *json, const char *shard, const char *heading)
{
	FILE *table = json == stdout ? stderr : stdout;

	fputs(heading, table);
	print_table(table, rows, n);
	if (!json)
		return 0;
	print_json(json, rows, n, shard);
	if (json == stdout ? fflush(json) : fclose(json)) {
		fprintf(stderr, "ptemu: cannot write the JSON: %s\n", strerror(errno));
		return EXIT_INTERNAL;
	}
	return 0;
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

static int cmd_merge(int argc, char **argv)
{
	enum { OPT_PARTIAL = 256, OPT_JSON, OPT_HELP };
	static const struct option longopts[] = {
		{ "partial", no_argument, NULL, OPT_PARTIAL },
		{ "json", required_argument, NULL, OPT_JSON },
		{ "help", no_argument, NULL, OPT_HELP },
		{ 0 },
	};
	const char *json_path = NULL;
	struct shard_file *files = NULL;
	struct row *out = NULL;
	bool *present = NULL;
	unsigned nfiles, nout = 0, incomplete = 0;
	bool partial = false;
	char heading[128];
	FILE *json = NULL;
	int c, rc = 0;

	optind = 1;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		if (c == OPT_PARTIAL) {
			partial = true;
		} else if (c == OPT_JSON) {
			json_path = optarg;
		} else if (c == OPT_HELP) {
			fputs(CAMPAIGN_USAGE, stdout);
			return EXIT_CLEAN;
		} else {
			return usage_error("%s", "bad option for 'campaign merge'");
		}
	}
	nfiles = (unsigned)(argc - optind);
	if (!nfiles)
		return usage_error("%s", "campaign merge takes the --json files of a campaign's shards");
	files = calloc(nfiles, sizeof(*files));
	if (!files)
		return EXIT_INTERNAL;
	for (unsigned i = 0; i < nfiles && !rc; i++) {
		files[i].name = argv[optind + (int)i];
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
	for (unsigned f = 0; f < nfiles && !rc; f++) {
		for (unsigned i = 0; i < files[f].nrows && !rc; i++) {
			const struct row *r = &files[f].rows[i];
			unsigned o = 0;

			while (o < nout && !same_config(&out[o], r))
				o++;
			if (o == nout) {
				struct row *more = realloc(out, (nout + 1) * sizeof(*more));

				if (!more) {
					rc = EXIT_INTERNAL;
					break;
				}
				out = more;
				out[nout] = *r;
				out[nout++].shards = 1;
			} else {
				add_row(&out[o], r);
			}
		}
	}
	if (!rc && !(present = malloc(files[0].nshards + 1)))
		rc = EXIT_INTERNAL;
	for (unsigned o = 0; o < nout && !rc; o++) {
		if (out[o].shards == files[0].nshards)
			continue;
		incomplete++;
		print_missing(&out[o], files, nfiles, present);
	}
	if (!rc && incomplete && !partial) {
		fprintf(stderr, "ptemu: campaign merge: %u configuration%s incomplete (--partial merges what "
			"there is)\n", incomplete, incomplete == 1 ? " is" : "s are");
		rc = EXIT_USAGE;
	}
	if (!rc && json_path && !(json = open_json(json_path)))
		rc = EXIT_USAGE;
	if (!rc) {
		snprintf(heading, sizeof(heading), "campaign: %u file%s, %s of %" PRIu64 " shards\n", nfiles,
			 nfiles == 1 ? "" : "s", incomplete ? "parts" : "all", files[0].nshards);
		rc = report(out, nout, json, incomplete ? "partial" : "1/1", heading);
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

/* Looks up one name of a list: its id, or -1 with the reason printed. */
typedef int (*lookup_fn)(const char *name);

static int lookup_arch(const char *name)
{
	const struct ptemu_arch *const *all = ptemu_arch_all();

	for (int i = 0; all[i]; i++) {
		if (strcmp(all[i]->name, name))
			continue;
		if (all[i]->isa.workload_dir)
			return i;
		fprintf(stderr, "ptemu: model %s has no guest support yet\n", name);
		return -1;
	}
	fprintf(stderr, "ptemu: unknown architecture '%s'; valid: ", name);
	print_arch_names(stderr);
	fprintf(stderr, ", all\n");
	return -1;
}

static int lookup_injection(const char *name)
{
	enum ptemu_injection inj = ptemu_injection_from_name(name);

	if (inj != INJECT_COUNT)
		return (int)inj;
	fprintf(stderr, "ptemu: unknown injection '%s'; valid: none", name);
	for (const struct ptemu_injection_info *i = ptemu_injections(); i->name; i++)
		fprintf(stderr, ", %s", i->name);
	fputc('\n', stderr);
	return -1;
}

static int lookup_protocol(const char *name)
{
	int p = ptemu_protocol_from_name(name);

	if (p < 0)
		fprintf(stderr, "ptemu: --protocol: '%s' is not lockless or legacy\n", name);
	return p;
}

/* A comma-separated list, duplicates dropped. 0, or EXIT_USAGE with the reason printed. */
static int parse_list(const char *opt, const char *list, lookup_fn lookup, int *ids, unsigned max,
		      unsigned *n)
{
	char *copy = strdup(list);
	int rc = 0;

	*n = 0;
	if (!copy)
		return EXIT_INTERNAL;
	for (char *save, *tok = strtok_r(copy, ",", &save); tok && !rc; tok = strtok_r(NULL, ",", &save)) {
		int id = lookup(tok);
		unsigned i = 0;

		if (id < 0) {
			rc = EXIT_USAGE;
			break;
		}
		while (i < *n && ids[i] != id)
			i++;
		if (i == *n && *n < max)
			ids[(*n)++] = id;
	}
	free(copy);
	if (!rc && !*n)
		rc = usage_error("%s: an empty list", opt);
	return rc;
}

/* The image of the workload for each model, loaded once here so that a missing or wrong
 * one is a usage error and not a campaign of failed runs. */
static int check_images(const int *arches, unsigned narches, const char *workload)
{
	for (unsigned i = 0; i < narches; i++) {
		const struct ptemu_arch *a = ptemu_arch_all()[arches[i]];
		struct ptemu_elf_image img;
		char path[4096], err[512];

		workload_image_path(a, workload, path, sizeof(path));
		if (ptemu_elf_load(path, a->isa.elf_machine, a->isa.elf_class, &img, err, sizeof(err))) {
			fprintf(stderr, "ptemu: %s\n", err);
			return EXIT_USAGE;
		}
		ptemu_elf_free(&img);
	}
	return 0;
}

int cmd_campaign(int argc, char **argv)
{
	enum { OPT_ARCH = 256, OPT_SEEDS, OPT_SEED_BASE, OPT_WORKLOAD, OPT_INJECT, OPT_PROTOCOL,
	       OPT_RECLAIM, OPT_PROCS, OPT_VCPUS, OPT_STEPS, OPT_SCHED, OPT_PCT_DEPTH, OPT_JSON,
	       OPT_SHARD, OPT_QUIET, OPT_KHUGEPAGED, OPT_HELP };
	static const struct option longopts[] = {
		{ "arch", required_argument, NULL, OPT_ARCH },
		{ "seeds", required_argument, NULL, OPT_SEEDS },
		{ "seed-base", required_argument, NULL, OPT_SEED_BASE },
		{ "workload", required_argument, NULL, OPT_WORKLOAD },
		{ "inject", required_argument, NULL, OPT_INJECT },
		{ "protocol", required_argument, NULL, OPT_PROTOCOL },
		{ "reclaim-empty-tables", no_argument, NULL, OPT_RECLAIM },
		{ "khugepaged", required_argument, NULL, OPT_KHUGEPAGED },
		{ "procs", required_argument, NULL, OPT_PROCS },
		{ "vcpus", required_argument, NULL, OPT_VCPUS },
		{ "steps", required_argument, NULL, OPT_STEPS },
		{ "sched", required_argument, NULL, OPT_SCHED },
		{ "pct-depth", required_argument, NULL, OPT_PCT_DEPTH },
		{ "json", required_argument, NULL, OPT_JSON },
		{ "shard", required_argument, NULL, OPT_SHARD },
		{ "quiet", no_argument, NULL, OPT_QUIET },
		{ "help", no_argument, NULL, OPT_HELP },
		{ 0 },
	};
	const char *arch_list = NULL, *inject_list = "none", *protocol_list = "lockless";
	const char *json_path = NULL;
	struct row base = { .workload = "shmem-stress", .sched = "pct", .procs = 2, .vcpus = 2,
			    .pct_depth = 3, .steps = 200000, .seed_base = 1 };
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	struct campaign c = { .shard = 1, .nshards = 1, .jobs = cpus > 0 ? (uint64_t)cpus : 1 };
	int arches[16], injections[INJECT_COUNT], protocols[2];
	unsigned narches, ninjections, nprotocols;
	char heading[256];
	FILE *json = NULL;
	int opt, rc;

	if (argc >= 2 && !strcmp(argv[1], "merge"))
		return cmd_merge(argc - 1, argv + 1);
	optind = 1;
	while ((opt = getopt_long(argc, argv, "j:", longopts, NULL)) != -1) {
		switch (opt) {
		case OPT_ARCH:
			arch_list = optarg;
			break;
		case OPT_SEEDS:
			if (!parse_u64(optarg, 1, 1000000000, &base.seeds))
				return usage_error("--seeds: '%s' is not in 1..10^9", optarg);
			break;
		case OPT_SEED_BASE:
			if (!parse_u64(optarg, 0, UINT64_MAX, &base.seed_base))
				return usage_error("--seed-base: '%s' is not an unsigned 64-bit number", optarg);
			break;
		case OPT_WORKLOAD:
			if (!known_workload(optarg) || strlen(optarg) >= sizeof(base.workload)) {
				fprintf(stderr, "ptemu: unknown workload '%s'; valid: %s\n", optarg,
					PTEMU_WORKLOAD_NAMES);
				return EXIT_USAGE;
			}
			strcpy(base.workload, optarg);
			break;
		case OPT_INJECT:
			inject_list = optarg;
			break;
		case OPT_PROTOCOL:
			protocol_list = optarg;
			break;
		case OPT_RECLAIM:
			base.reclaim = true;
			break;
		case OPT_KHUGEPAGED:
			if (strcmp(optarg, "on") && strcmp(optarg, "off"))
				return usage_error("--khugepaged: '%s' is not on or off", optarg);
			base.khugepaged = !strcmp(optarg, "on");
			break;
		case OPT_PROCS:
			if (!parse_u64(optarg, 1, 16, &base.procs))
				return usage_error("--procs: '%s' is not in 1..16", optarg);
			break;
		case OPT_VCPUS:
			if (!parse_u64(optarg, 1, 16, &base.vcpus))
				return usage_error("--vcpus: '%s' is not in 1..16", optarg);
			break;
		case OPT_STEPS:
			if (!parse_u64(optarg, 1000, 1000000000000ull, &base.steps))
				return usage_error("--steps: '%s' is not in 1000..10^12", optarg);
			break;
		case OPT_SCHED:
			if (strcmp(optarg, "random") && strcmp(optarg, "pct"))
				return usage_error("--sched: '%s' is not one of: random, pct", optarg);
			strcpy(base.sched, optarg);
			break;
		case OPT_PCT_DEPTH:
			if (!parse_u64(optarg, 1, 16, &base.pct_depth))
				return usage_error("--pct-depth: '%s' is not in 1..16", optarg);
			break;
		case 'j':
			if (!parse_u64(optarg, 1, 1024, &c.jobs))
				return usage_error("-j: '%s' is not in 1..1024", optarg);
			break;
		case OPT_JSON:
			json_path = optarg;
			break;
		case OPT_SHARD:
			if (!parse_shard(optarg, &c.shard, &c.nshards))
				return usage_error("--shard: '%s' is not I/N with 1 <= I <= N", optarg);
			break;
		case OPT_QUIET:
			c.quiet = true;
			break;
		case OPT_HELP:
			fputs(CAMPAIGN_USAGE, stdout);
			return EXIT_CLEAN;
		default:
			return usage_error("%s", "bad option for 'campaign'");
		}
	}
	if (optind < argc)
		return usage_error("unexpected argument '%s'", argv[optind]);
	if (!arch_list || !base.seeds)
		return usage_error("%s", "campaign needs --arch and --seeds");
	if (base.seeds - 1 > UINT64_MAX - base.seed_base)
		return usage_error("%s", "--seed-base: the last seed would be beyond 2^64-1");
	if (!strcmp(arch_list, "all")) {
		narches = 0;
		for (int i = 0; ptemu_arch_all()[i] && narches < 16; i++)
			if (ptemu_arch_all()[i]->isa.workload_dir)
				arches[narches++] = i;
	} else if ((rc = parse_list("--arch", arch_list, lookup_arch, arches, 16, &narches))) {
		return rc;
	}
	if ((rc = parse_list("--inject", inject_list, lookup_injection, injections, INJECT_COUNT, &ninjections)) ||
	    (rc = parse_list("--protocol", protocol_list, lookup_protocol, protocols, 2, &nprotocols)))
		return rc;
	/* A model without an injection's path is left out of that configuration; only an
	 * injection no listed model offers is an error. */
	for (unsigned i = 0; i < ninjections; i++) {
		unsigned offered = 0;

		for (unsigned a = 0; a < narches; a++)
			offered += ptemu_injection_applies((enum ptemu_injection)injections[i],
							   ptemu_arch_all()[arches[a]]);
		if (!offered) {
			fprintf(stderr, "ptemu: injection %s not offered by %s ('ptemu list injections')\n",
				injection_name((enum ptemu_injection)injections[i]),
				narches == 1 ? ptemu_arch_all()[arches[0]]->name : "any of the models given");
			return EXIT_USAGE;
		}
	}
	if (ptemu_check_unicorn(heading, sizeof(heading))) {
		fprintf(stderr, "ptemu: %s\n", heading);
		return EXIT_INTERNAL;
	}
	if ((rc = check_images(arches, narches, base.workload)))
		return rc;
	c.rows = calloc(narches * ninjections * nprotocols, sizeof(*c.rows));
	if (!c.rows)
		return EXIT_INTERNAL;
	for (unsigned a = 0; a < narches; a++) {
		for (unsigned i = 0; i < ninjections; i++) {
			if (!ptemu_injection_applies((enum ptemu_injection)injections[i],
						     ptemu_arch_all()[arches[a]])) {
				fprintf(stderr, "ptemu: campaign: %s does not apply to %s: left out\n",
					injection_name((enum ptemu_injection)injections[i]),
					ptemu_arch_all()[arches[a]]->name);
				continue;
			}
			for (unsigned p = 0; p < nprotocols; p++) {
				struct row *r = &c.rows[c.nrows++];

				*r = base;
				snprintf(r->arch, sizeof(r->arch), "%s", ptemu_arch_all()[arches[a]]->name);
				snprintf(r->inject, sizeof(r->inject), "%s",
					 injection_name((enum ptemu_injection)injections[i]));
				snprintf(r->protocol, sizeof(r->protocol), "%s",
					 ptemu_protocol_name((enum ptemu_protocol)protocols[p]));
			}
		}
	}
	c.total = c.nrows * runs_in_shard(base.seeds, c.shard, c.nshards);
	c.tty = isatty(STDERR_FILENO);
	if (json_path && !(json = open_json(json_path))) {
		free(c.rows);
		return EXIT_USAGE;
	}
	rc = run_all(&c);
	if (!rc) {
		char shard[48];

		snprintf(shard, sizeof(shard), "%" PRIu64 "/%" PRIu64, c.shard, c.nshards);
		snprintf(heading, sizeof(heading), "campaign: %s, %" PRIu64 " process%s x %" PRIu64
			 " vCPU%s, sched %s depth %" PRIu64 ", %" PRIu64 " steps, seeds %" PRIu64 "..%" PRIu64
			 ", shard %s, %.1f s\n",
			 base.workload, base.procs, base.procs == 1 ? "" : "es", base.vcpus,
			 base.vcpus == 1 ? "" : "s", base.sched, base.pct_depth, base.steps, base.seed_base,
			 base.seed_base + (base.seeds - 1), shard, elapsed(&c));
		rc = report(c.rows, c.nrows, json, shard, heading);
	} else if (json && json != stdout) {
		fclose(json);
	}
	if (!rc)
		rc = campaign_status(c.rows, c.nrows);
	free(c.rows);
	return rc;
}
