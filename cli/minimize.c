/* ptemu minimize: a failing trace shrunk, keeping its first violation's kind. */
#include <inttypes.h>
#include <stdlib.h>

#include <ptemu/check.h>

#include "cli.h"

static int minimize_main(int argc, char **argv);

static const struct cli_use minimize_options[] = {
	{ OPT_OUT, "required", false },
	{ OPT_FORCE, NULL, false },
	{ OPT_IMAGE, "default: the recorded workload's or image", false },
	{ 0 },
};

static const struct cli_opts minimize_defaults = { 0 };

const struct cli_command cmd_minimize = {
	"minimize", "FILE -o OUT [options]",
	"shrink a failing trace (run length, then decisions) keeping its first violation's kind",
	minimize_options, &minimize_defaults, true, NULL, minimize_main,
};

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

/* Shrinks t into *best: 0, or EXIT_INTERNAL when the violation does not reproduce. */
static int minimize(const struct ptemu_trace *t, const struct ptemu_arch *a, const char *path, unsigned kind,
		    struct ptemu_trace *best, unsigned *trials)
{
	size_t nd;
	struct ptemu_sched_decision *d = trace_decisions(t, &nd);
	uint64_t lo = 1000, hi = t->steps;

	fprintf(stderr, "ptemu: minimizing: keeping %s; %" PRIu64 " steps, %zu decisions\n",
		ptemu_violation_name((enum ptemu_violation_kind)kind), t->steps, nd);
	/* Run length first: the shortest prefix of the schedule that still shows the kind. */
	if (!minimize_trial(t, a, path, d, nd, hi, kind, best, trials)) {
		fprintf(stderr, "ptemu: the recorded violation does not reproduce: replay it to see where\n");
		free(d);
		return EXIT_INTERNAL;
	}
	while (lo < hi) {
		uint64_t mid = lo + (hi - lo) / 2;

		if (minimize_trial(t, a, path, d, nd, mid, kind, best, trials))
			hi = mid;
		else
			lo = mid + 1;
	}
	if (!minimize_trial(t, a, path, d, nd, hi, kind, best, trials))
		fprintf(stderr, "ptemu: warning: the shortest length did not reproduce twice\n");
	/* Then the decisions (delta debugging): drop chunks the violation does not need. A
	 * dropped decision lets the running thread go on. */
	while (nd && d[nd - 1].step > hi)
		nd--;
	for (size_t chunk = nd / 2; chunk >= 1 && *trials < 60; chunk /= 2) {
		for (size_t at = 0; at + chunk <= nd && *trials < 60;) {
			struct ptemu_sched_decision *trial = malloc((nd ? nd : 1) * sizeof(*trial));
			size_t nt = 0;

			for (size_t k = 0; trial && k < nd; k++)
				if (k < at || k >= at + chunk)
					trial[nt++] = d[k];
			if (trial && minimize_trial(t, a, path, trial, nt, hi, kind, best, trials)) {
				free(d);
				d = trial;
				nd = nt;
			} else {
				free(trial);
				at += chunk;
			}
		}
	}
	free(d);
	return 0;
}

static int minimize_main(int argc, char **argv)
{
	struct cli_opts o = minimize_defaults;
	struct ptemu_trace t, best = { 0 };
	struct out_file out;
	const struct ptemu_arch *a;
	char path[4096];
	unsigned trials = 0;
	int rc = cli_parse(&cmd_minimize, argc, argv, &o, 1, 1);

	if (rc)
		return rc == CLI_HELP ? EXIT_CLEAN : rc;
	if (!o.out)
		return usage_error("%s", "minimize takes one trace file and -o OUT");
	if ((rc = load_trace_for_run(o.args[0], o.force, o.image, &t, &a, path, sizeof(path))))
		return rc;
	if (t.first_kind >= VIOLATION_KIND_COUNT) {
		fprintf(stderr, "ptemu: %s: the run was clean: nothing to minimize\n", o.args[0]);
		ptemu_trace_free(&t);
		return EXIT_USAGE;
	}
	if ((rc = out_open(&out, o.out, false))) {
		ptemu_trace_free(&t);
		return rc;
	}
	rc = minimize(&t, a, path, t.first_kind, &best, &trials);
	if (rc)
		out_discard(&out);
	else if (!(rc = write_trace(&out, &best)))
		printf("minimized in %u runs: %" PRIu64 " -> %" PRIu64 " steps, %zu -> %zu events, "
		       "%" PRIu64 " violation(s), first %s at event %" PRIu64 "; written to %s\n",
		       trials, t.steps, best.steps, t.nevents, best.nevents, best.violations,
		       ptemu_violation_name((enum ptemu_violation_kind)best.first_kind), best.first_event, o.out);
	ptemu_trace_free(&best);
	ptemu_trace_free(&t);
	return rc;
}
