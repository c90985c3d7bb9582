/* The guest's benchmark marks (PTEMU_SYS_bench_mark), kept by ptemu's vCPUs and by the
 * bare-Unicorn harness alike: here, below both. */
#include <stdint.h>

#include <ptemu/bench.h>

#include "workloads/include/ptemu_abi.h"

_Static_assert(PTEMU_BENCH_PHASES == PTEMU_BENCH_MARK_PHASES, "bench.h's copy of the ABI's phase count");

int ptemu_bench_mark(struct ptemu_bench_marks *b, uint64_t phase, uint64_t accesses, uint64_t now_ns)
{
	if (phase >= PTEMU_BENCH_PHASES)
		return -1;
	if (b->last_ns) {
		b->ns[phase] += now_ns - b->last_ns;
		b->accesses[phase] += accesses;
	}
	b->last_ns = now_ns;
	return 0;
}

double ptemu_bench_miss_ns(const struct ptemu_bench_marks *b)
{
	if (!b->accesses[PTEMU_BENCH_hits] || !b->accesses[PTEMU_BENCH_misses])
		return 0;
	return (double)b->ns[PTEMU_BENCH_misses] / (double)b->accesses[PTEMU_BENCH_misses] -
	       (double)b->ns[PTEMU_BENCH_hits] / (double)b->accesses[PTEMU_BENCH_hits];
}
