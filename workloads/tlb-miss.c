/* tlb-miss (for `ptemu bench overhead`): what one TLB miss costs, end to end. The first
 * vCPU sweeps the same number of loads over 16 pages, which every TLB holds, and then over
 * twice as many pages as the logical TLB (at least 512, past Unicorn's 256-entry TLB), so
 * that each load misses every TLB: the difference per load is the miss, from the guest's
 * side (Unicorn's slow path, the fill hook, the walk and Unicorn's TLB insert), on ptemu
 * and on bare Unicorn alike. The host clocks the two phases at PTEMU_SYS_bench_mark. An
 * op is one pair of sweeps (--ops bounds them; bare Unicorn has no bound but time).
 *
 * Oracle: none; the pages are written once and only read.
 */
#include "lib/guest.h"

int guest_main(long vcpu, long nvcpus, long proc, long nprocs);

#define HIT_PAGES 16

/* The loop of both phases: one load per iteration, from page (i & mask). A leaf (no
 * register window on sparc64), and the same code in both phases. */
static noinline unsigned long sweep(const volatile char *base, unsigned shift, unsigned long mask,
				    unsigned long n)
{
	unsigned long sum = 0;

	for (unsigned long i = 0; i < n; i++)
		sum += ldw((const volatile unsigned long *)(base + ((i & mask) << shift)));
	return sum;
}

int guest_main(long vcpu, long nvcpus, long proc, long nprocs)
{
	unsigned long psize = (unsigned long)sys_param(PTEMU_PARAM_page_size);
	long entries = sys_param(PTEMU_PARAM_tlb_entries), ops = sys_param(PTEMU_PARAM_ops);
	unsigned shift = (unsigned)__builtin_ctzl(psize);
	unsigned long pages = 2 * (unsigned long)(entries > 256 ? entries : 256);
	unsigned long n = 8 * pages, sum = 0;

	(void)nvcpus, (void)nprocs;
	if (vcpu || proc)
		return 0;
	long a = sys_mmap(NULL, pages << shift, PTEMU_PROT_READ | PTEMU_PROT_WRITE,
			  PTEMU_MAP_PRIVATE | PTEMU_MAP_ANONYMOUS, -1, 0);

	if (sys_failed(a))
		return 1;
	/* Base pages only: a huge leaf would hold the whole sweep in one TLB entry. Fails
	 * with EINVAL where the model has no THP, which is as good. */
	sys_madvise((void *)a, pages << shift, PTEMU_MADV_NOHUGEPAGE);
	/* Every 64 pages a poll: the faults of a large sweep may outlast a short run. */
	for (unsigned long i = 0; i < pages; i++) {
		if (i % 64 == 0 && sys_should_stop())
			return 0;
		stw((volatile unsigned long *)(a + (i << shift)), i);
	}
	for (long done = 0; !sys_should_stop() && (!ops || done < ops); done++) {
		sys_bench_mark(PTEMU_BENCH_setup, 0);
		sum += sweep((const volatile char *)a, shift, HIT_PAGES - 1, n);
		sys_bench_mark(PTEMU_BENCH_hits, n);
		sum += sweep((const volatile char *)a, shift, pages - 1, n);
		sys_bench_mark(PTEMU_BENCH_misses, n);
	}
	/* Every page holds its index: each sweep's sum is known. */
	return sum % pages == 0 ? 0 : 2;
}
