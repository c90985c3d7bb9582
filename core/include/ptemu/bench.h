/* Benchmarks (commands, never tests): the same guest image through ptemu and on bare
 * Unicorn with an identity TLB fill, to measure what the model costs. */
#ifndef PTEMU_BENCH_H
#define PTEMU_BENCH_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct ptemu_arch;

/* The guest's PTEMU_SYS_bench_mark intervals (workloads/tlb-miss.c), on either side, by
 * phase (the guest ABI's PTEMU_BENCH_*: not included here, its macros clash with arch.h). */
#define PTEMU_BENCH_MARK_PHASES 3
struct ptemu_bench_marks {
	uint64_t last_ns;			/* the previous mark; 0: none yet */
	uint64_t ns[PTEMU_BENCH_MARK_PHASES];
	uint64_t accesses[PTEMU_BENCH_MARK_PHASES];
};

/* A mark at now_ns: the interval since the previous one is `phase`'s. -1 for an unknown
 * phase (nothing is recorded). */
int ptemu_bench_mark(struct ptemu_bench_marks *b, uint64_t phase, uint64_t accesses, uint64_t now_ns);
/* What one miss costs from the guest's side: ns per missing access less ns per hitting
 * access; 0 without both. */
double ptemu_bench_miss_ns(const struct ptemu_bench_marks *b);

struct ptemu_bench_bare_result {
	double elapsed;
	uint64_t fills;
	uint64_t syscalls;
	uint64_t polls;		/* should_stop calls: the guest's ops / 16 */
	struct ptemu_bench_marks marks;
	char error[256];
};

/* The largest mapping bare Unicorn's flat memory has room for. */
#define PTEMU_BENCH_BARE_SWEEP_MAX (256ull << 20)

/* Runs `image` on one vCPU with guest-virtual == guest-physical memory, an identity fill
 * hook, and the guest ABI's calls answered by a flat memory layout (no page tables, no
 * faults after the first fill) and no other hook: no block hook, unlike ptemu. The guest
 * is told its TLB holds tlb_entries (PTEMU_PARAM_tlb_entries). Without grow_tlb the engine
 * keeps Unicorn's first 256 TLB entries, as bare Unicorn does; with it, the engine's TLB
 * is flushed as ptemu's vCPUs flush theirs (ptemu_hw_tlb_grow_due), so that Unicorn grows
 * it. 0, or -1 with a message in error. */
int ptemu_bench_bare(const struct ptemu_arch *arch, const char *image, double seconds, uint64_t seed,
		     unsigned tlb_entries, bool grow_tlb, struct ptemu_bench_bare_result *res);

/* The deterministic scheduler's baton pass alone: `threads` scheduled threads (at most
 * PTEMU_BENCH_BATON_MAX_THREADS) that yield `yields` times each, every yield a pass to
 * another (random walk), on a machine of `arch` that runs no guest. The time is from the
 * start of the schedule to the last thread's exit; CPU time is the whole process's (user
 * + system), as the host threads it takes are the measure. 0, or -1 with a message. */
#define PTEMU_BENCH_BATON_MAX_THREADS 64
struct ptemu_bench_baton_result {
	uint64_t passes, steps;
	double cpu_seconds, elapsed;
	char error[256];
};
int ptemu_bench_baton(const struct ptemu_arch *arch, unsigned threads, uint64_t yields,
		      struct ptemu_bench_baton_result *res);

#ifdef __cplusplus
}
#endif
#endif
