/* Traces of deterministic runs (docs/trace-format.md): the configuration that made the
 * run, and every event the run digest folded, in order, scheduling decisions included.
 * Replaying a trace re-runs that configuration under its recorded decisions and compares
 * the events one by one. */
#ifndef PTEMU_TRACE_H
#define PTEMU_TRACE_H

#include <stddef.h>
#include <stdint.h>

#include <ptemu/machine.h>
#include <ptemu/run.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PTEMU_TRACE_MAGIC "PTEMUTRC"
#define PTEMU_TRACE_VERSION 2u

/* What the CLI accepts, and so what a trace may hold: --steps, --memory (MiB), and the
 * longest workload name or image path (with its NUL). */
#define PTEMU_TRACE_MAX_STEPS 1000000000000ull
#define PTEMU_TRACE_MAX_MEMORY_MIB 65536ull
#define PTEMU_TRACE_MAX_WORKLOAD 4096

struct ptemu_trace_event {
	uint64_t kind, a, b;
};

struct ptemu_trace_header {
	uint32_t format_version;
	char ptemu_version[16];
	uint32_t unicorn_version;	/* major << 8 | minor */
	uint32_t capstone_version;	/* major << 8 | minor */
	uint64_t build_id;
	char arch[16];
	char workload[PTEMU_TRACE_MAX_WORKLOAD];	/* a workload name or a whole image path */
	uint64_t image_hash;
	uint32_t procs, vcpus;
	uint64_t seed;
	uint32_t inject;		/* ptemu_trace_pack_config: injection, protocol, features */
	uint32_t strategy, pct_depth;
	uint64_t max_steps;
	uint64_t phys_bytes;
};

struct ptemu_trace {
	struct ptemu_trace_header h;
	struct ptemu_trace_event *events;
	size_t nevents, cap;
	/* The outcome, for replay to compare. */
	uint64_t digest, steps, violations;
	uint32_t first_kind;		/* VIOLATION_KIND_COUNT when clean */
	uint64_t first_event;
};

/* The header's configuration word: bits 0-7 the injection, 8-11 the protocol, 16 reclaim-
 * empty-tables, 17 the khugepaged thread (default tunables), 18 fail-fast checking, 20-24
 * log2 of the logical TLB's entries (0: the model's size). Traces of earlier builds hold
 * the injection alone, and read the same. */
uint32_t ptemu_trace_pack_config(const struct ptemu_run_config *cfg);
/* Sets the fields of cfg that the configuration word holds. */
void ptemu_trace_apply_config(const struct ptemu_trace_header *h, struct ptemu_run_config *cfg);
enum ptemu_injection ptemu_trace_injection(const struct ptemu_trace_header *h);

/* Appends an event (the scheduler's on_event callback, ctx = the trace). */
void ptemu_trace_append(void *trace, uint64_t kind, uint64_t a, uint64_t b);
/* This build's identity, for headers and for refusing another build's traces. */
void ptemu_trace_header_init(struct ptemu_trace_header *h);
uint64_t ptemu_build_id(void);

/* 0, or -1 with a one-line message. The reader checks the header (magic and version
 * first, then every field's range and the sizes against the file's size) before it reads
 * or allocates anything more, then a checksum over the whole file. */
int ptemu_trace_write(const char *path, const struct ptemu_trace *t, char *err, size_t errlen);
int ptemu_trace_read(const char *path, struct ptemu_trace *t, char *err, size_t errlen);
int ptemu_trace_parse(const uint8_t *data, size_t size, struct ptemu_trace *t, char *err, size_t errlen);
void ptemu_trace_free(struct ptemu_trace *t);
const char *ptemu_trace_event_name(uint64_t kind);

#ifdef __cplusplus
}
#endif
#endif
