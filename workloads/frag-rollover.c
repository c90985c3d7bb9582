/* frag-rollover: the PTE tables of a fresh fragment page all retracted or unmapped before
 * exit. Where PTE tables are fragments of a shared page (powerpc: 16 or 256 to a 64 KiB
 * page), the mm's fragment cursor page is freed by pte_frag_destroy at the start of
 * exit_mmap once none of its fragments is left, and a fragment of it that went to
 * pte_free_defer must still make that free wait for a grace period (v6.6 does not:
 * ppc-v6.6-frag-destroy). vCPU 0 of each process, once:
 *  1. touches one page in each of T PMD extents of a private anonymous region, T the
 *     model's PTE tables per page, so that the fragment cursor moves to a fresh page;
 *  2. maps the shmem object (key 120, EXTENTS PMD extents, MADV_HUGEPAGE) and writes its
 *     own pages: their tables are the first fragments of the fresh page;
 *  3. unmaps the anonymous region (its tables go through the mmu_gather and RCU);
 *  4. has every extent collapsed (MADV_COLLAPSE, or khugepaged's next full scan where
 *     MADV_COLLAPSE is not allowed), which retracts the extents' tables by pte_free_defer,
 *     and reads its pages back;
 *  5. drops the object's mappings (MADV_DONTNEED), with them a huge pmd's deposited
 *     table (ppc64-hash), another fragment of the page;
 *  6. returns, and the process exits.
 * Other vCPUs return at once.
 *
 * Oracle: the object is striped by process (page idx belongs to process idx % nprocs); an
 * owner's pages hold exactly round 1 after its write and again after the collapses. */
#include "lib/work.h"

#define SHM_KEY 120
#define CTRL_KEY 121
#define EXTENTS 2

int guest_main(long vcpu, long nvcpus, long proc, long nprocs);

static void check_own_pages(struct wctx *c, char *base, u32 npages)
{
	for (u32 i = (u32)c->proc; i < npages; i += (u32)c->nprocs)
		rec_check_exact(c, (uptr)base + (uptr)i * c->page, rec_tag((u32)c->proc, i), 1);
}

int guest_main(long vcpu, long nvcpus, long proc, long nprocs)
{
	struct wctx c;
	unsigned long tables = (unsigned long)sys_param(PTEMU_PARAM_pte_tables_per_page);
	unsigned long len;
	char *anon, *base;
	u32 npages;
	long r;

	wctx_init(&c, "frag-rollover", vcpu, nvcpus, proc, nprocs, CTRL_KEY);
	if (vcpu || !wctx_more(&c))
		return wctx_finish(&c);

	anon = anon_map(tables * c.pmd);
	for (unsigned long e = 0; e < tables; e++)
		st32((volatile u32 *)(anon + e * c.pmd), (u32)e);

	len = EXTENTS * c.pmd;
	npages = (u32)(len / c.page);
	base = shm_map(SHM_KEY, len, NULL);
	r = thp_madvise(base, len, PTEMU_MADV_HUGEPAGE);
	if (sys_failed(r))
		die("frag-rollover: madvise(MADV_HUGEPAGE)", r);
	for (u32 i = (u32)proc; i < npages; i += (u32)nprocs)
		rec_write((uptr)base + (uptr)i * c.page, c.page, rec_tag((u32)proc, i), 1);
	check_own_pages(&c, base, npages);

	r = sys_munmap(anon, tables * c.pmd);
	if (sys_failed(r))
		die("frag-rollover: munmap", r);

	/* -EAGAIN (a page busy under the other process's collapse) is normal. */
	if (sys_param(PTEMU_PARAM_collapse) == 1)
		for (unsigned long e = 0; e < EXTENTS; e++)
			thp_madvise(base + e * c.pmd, c.pmd, PTEMU_MADV_COLLAPSE);
	else
		sys_wait_khugepaged();
	check_own_pages(&c, base, npages);
	c.extra = (unsigned long)sys_thp_mapped(base);
	c.extra_name = "thp_seen";
	/* Drop the mappings (the data stays in the object): where a huge pmd keeps a
	 * deposited table (ppc64-hash), that fragment of the same page goes with the zap, so
	 * that the page's last fragments are the cursor's at exit. */
	r = sys_madvise(base, len, PTEMU_MADV_DONTNEED);
	if (sys_failed(r))
		die("frag-rollover: madvise(MADV_DONTNEED)", r);
	return wctx_finish(&c);
}
