/* Benchmarks (commands, never tests): the same guest image through ptemu and on bare
 * Unicorn with an identity TLB fill, to measure what the model costs. */
#ifndef PTEMU_BENCH_H
#define PTEMU_BENCH_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct ptemu_arch;

struct ptemu_bench_bare_result {
	double elapsed;
	uint64_t instructions;	/* estimated from block sizes, as ptemu run estimates them */
	uint64_t fills;
	uint64_t fill_ns;	/* time spent in the identity fill hook */
	uint64_t syscalls;
	uint64_t polls;		/* should_stop calls: the guest's ops / 16 */
	char error[256];
};

/* Runs `image` on one vCPU with guest-virtual == guest-physical memory, an identity fill
 * hook, and the guest ABI's calls answered by a flat memory layout (no page tables, no
 * faults after the first fill). The block hook only counts, as ptemu's does when nothing is
 * pending. 0, or -1 with a message in error. */
int ptemu_bench_bare(const struct ptemu_arch *arch, const char *image, double seconds, uint64_t seed,
		     struct ptemu_bench_bare_result *res);

#ifdef __cplusplus
}
#endif
#endif
