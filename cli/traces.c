/* Trace files as run, replay, minimize and trace use them. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <ptemu/check.h>
#include <ptemu/loader.h>

#include "cli.h"

void finish_trace(struct ptemu_trace *trace, const struct ptemu_arch *a, const struct ptemu_run_config *cfg,
		  const struct ptemu_run_result *r, const struct ptemu_machine *m)
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

int write_trace(struct out_file *o, const struct ptemu_trace *t)
{
	char err[512];

	if (ptemu_trace_write(out_write_path(o), t, err, sizeof(err))) {
		fprintf(stderr, "ptemu: %s\n", err);
		out_discard(o);
		return EXIT_INTERNAL;
	}
	return out_commit(o);
}

/* Reads a trace and finds its image; refuses another build, library or image unless
 * forced. 0, or EXIT_USAGE with the reason printed. */
int load_trace_for_run(const char *file, bool force, const char *image, struct ptemu_trace *t,
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
struct ptemu_sched_decision *trace_decisions(const struct ptemu_trace *t, size_t *n)
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
struct ptemu_run_config trace_run_config(const struct ptemu_trace *t, const struct ptemu_arch *a,
					 const char *path, const struct ptemu_sched_decision *d, size_t nd,
					 uint64_t steps)
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

void print_event(FILE *f, const struct ptemu_trace_event *e)
{
	fprintf(f, "%s (kind %#" PRIx64 ") a=%#" PRIx64 " b=%#" PRIx64, ptemu_trace_event_name(e->kind),
		e->kind, e->a, e->b);
}
