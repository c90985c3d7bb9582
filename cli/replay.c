/* ptemu replay: a recorded trace re-run under its decisions. */
#include <inttypes.h>
#include <stdlib.h>

#include <ptemu/check.h>

#include "cli.h"

static int replay_main(int argc, char **argv);

static const struct cli_use replay_options[] = {
	{ OPT_FORCE, NULL, false },
	{ OPT_IMAGE, "default: the recorded workload's or image", false },
	{ 0 },
};

static const struct cli_opts replay_defaults = { 0 };

const struct cli_command cmd_replay = {
	"replay", "FILE [options]",
	"re-run a recorded trace under its decisions; report the first divergent event, or the "
	"violations reproduced",
	replay_options, &replay_defaults, true, NULL, replay_main,
};

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

static void print_divergence(const struct replay_check *check, const struct ptemu_trace *t)
{
	printf("DIVERGED at event %zu of %zu\n  recorded: ", check->at, t->nevents);
	if (check->diverged && check->at < t->nevents)
		print_event(stdout, &t->events[check->at]);
	else if (check->diverged)
		printf("(end of the trace)");
	else
		print_event(stdout, &t->events[check->next]);
	printf("\n  replayed: ");
	if (check->diverged)
		print_event(stdout, &check->got);
	else
		printf("(the run ended)");
	printf("\n");
}

static int replay_main(int argc, char **argv)
{
	struct cli_opts o = replay_defaults;
	struct ptemu_trace t;
	const struct ptemu_arch *a;
	char path[4096];
	int rc = cli_parse(&cmd_replay, argc, argv, &o, 1, 1);

	if (rc)
		return rc == CLI_HELP ? EXIT_CLEAN : rc;
	if ((rc = load_trace_for_run(o.args[0], o.force, o.image, &t, &a, path, sizeof(path))))
		return rc;
	size_t nd;
	struct ptemu_sched_decision *d = trace_decisions(&t, &nd);
	struct replay_check check = { .trace = &t };
	struct ptemu_run_config cfg = trace_run_config(&t, a, path, d, nd, t.h.max_steps);

	cfg.sched.on_event = replay_on_event;
	cfg.sched.event_ctx = &check;
	struct ptemu_run_result r;
	struct ptemu_machine *m;

	fprintf(stderr, "ptemu: replaying %s: %s %s, %zu events, %zu decisions\n", o.args[0], a->name,
		t.h.workload, t.nevents, nd);
	enum ptemu_run_error e = ptemu_run(&cfg, &m, &r);
	int status = EXIT_CLEAN;

	if (e == PTEMU_RUN_BAD_INPUT) {
		fprintf(stderr, "ptemu: %s\n", r.message);
		status = EXIT_USAGE;
	} else if (check.diverged || check.next != t.nevents) {
		print_divergence(&check, &t);
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
