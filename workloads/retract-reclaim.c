/* retract-reclaim: MADV_DONTNEEDs of whole PMD extents of a shmem object while khugepaged
 * and MADV_COLLAPSE collapse the extents and remove their page tables. With
 * --reclaim-empty-tables such a DONTNEED frees the table it emptied (6.14), and can do so
 * between a removal's look at the pmd and its pmd lock: the window of the re-checks that
 * retract_page_tables (6.14) and collapse_pte_mapped_thp (6.13) gained, which the
 * injections retract-no-recheck and cpmt-no-recheck take away.
 *
 * collapse_file retracts each extent's tables once, when it first collapses. To reach
 * collapse_pte_mapped_thp again and again, vCPU 0 of each process now and then makes an
 * extent PTE-mapped: MADV_NOHUGEPAGE on its lower half splits the VMA (the split zaps the
 * huge pmd), a read of each half then faults by PTEs (neither half is a whole PMD), and
 * MADV_HUGEPAGE merges the VMA again. khugepaged and MADV_COLLAPSE find a PTE-mapped THP
 * there and hand it to collapse_pte_mapped_thp.
 *
 * Every op of every vCPU writes its next page, reads a random one, drops a random extent
 * and reads a page of it back; except that, with several vCPUs, the last vCPU of each
 * process (the dropper) does only the drop on DROPPER_OP_EVERY - 1 ops of DROPPER_OP_EVERY.
 * A vCPU that touches pages often waits on a folio lock a collapse holds, and so never
 * reaches the pmd while a removal looks at it; the dropper touches none there, and its
 * zap is what frees the table in the removal's window (with it, retract-no-recheck is
 * caught in most seeds, issue 15's note).
 *
 * Oracle: as shmem-stress, the object (key 80, EXTENTS PMD extents) is striped: page idx
 * belongs to writer idx % W, which checks each own page exactly before and after writing
 * the next round; readers check others' pages for exact tags and rounds that never go
 * backwards. A DONTNEED, a split or a merge drops mappings only, never data.
 */
#include "lib/work.h"

#define SHM_KEY 80
#define CTRL_KEY 81
#define EXTENTS 4
#define DROPPER_OP_EVERY 3
#define SPLIT_EVERY 8		/* vCPU 0's ops between making an extent PTE-mapped */
#define COLLAPSE_EVERY 16	/* vCPU 0 of process 0: ops between MADV_COLLAPSE requests */

int guest_main(long vcpu, long nvcpus, long proc, long nprocs);

static void madvise_or_die(void *addr, unsigned long len, long advice, const char *what)
{
	long r = advice == PTEMU_MADV_DONTNEED ? sys_madvise(addr, len, advice) :
						 thp_madvise(addr, len, advice);

	if (sys_failed(r))
		die(what, r);
}

int guest_main(long vcpu, long nvcpus, long proc, long nprocs)
{
	struct wctx c;
	struct stripe s;
	unsigned long len;
	char *base;
	long collapse;

	wctx_init(&c, "retract-reclaim", vcpu, nvcpus, proc, nprocs, CTRL_KEY);
	collapse = sys_param(PTEMU_PARAM_collapse) == 1;
	c.extra_name = "splits";

	len = EXTENTS * c.pmd;
	base = shm_map(SHM_KEY, len, NULL);
	madvise_or_die(base, len, PTEMU_MADV_HUGEPAGE, "madvise(MADV_HUGEPAGE) on shmem");
	stripe_init(&c, &s, base, (u32)(len / c.page));

	while (wctx_more(&c)) {
		char *ext = base + (uptr)rng_below(&c.rng, EXTENTS) * c.pmd;

		/* The dropper's drop-only ops. */
		if (nvcpus > 1 && vcpu == nvcpus - 1 && c.ops % DROPPER_OP_EVERY) {
			madvise_or_die(ext, c.pmd, PTEMU_MADV_DONTNEED, "madvise(MADV_DONTNEED) of an extent");
			continue;
		}

		stripe_step(&c, &s);
		stripe_check(&c, &s, rng_below(&c.rng, s.npages));
		/* Then read the extent back: a vCPU that dropped an extent under collapse waits
		 * for the collapse there (its folios are locked), and the collapse goes on with
		 * the table gone. */
		madvise_or_die(ext, c.pmd, PTEMU_MADV_DONTNEED, "madvise(MADV_DONTNEED) of an extent");
		stripe_check(&c, &s, (u32)((uptr)(ext - base) / c.page) + rng_below(&c.rng, (u32)(c.pmd / c.page)));
		if (vcpu == 0 && c.ops % SPLIT_EVERY == 0) {
			u32 lo = (u32)((uptr)(ext - base) / c.page), half = (u32)(c.pmd / c.page / 2);

			madvise_or_die(ext, c.pmd / 2, PTEMU_MADV_NOHUGEPAGE, "madvise(MADV_NOHUGEPAGE) of half an extent");
			stripe_check(&c, &s, lo + rng_below(&c.rng, half));
			stripe_check(&c, &s, lo + half + rng_below(&c.rng, half));
			madvise_or_die(ext, c.pmd / 2, PTEMU_MADV_HUGEPAGE, "madvise(MADV_HUGEPAGE) of half an extent");
			c.extra++;
		}
		/* -EAGAIN (a page busy) and the like are normal: the data must survive. */
		if (collapse && proc == 0 && vcpu == 0 && c.ops % COLLAPSE_EVERY == 0)
			sys_madvise(base + (uptr)(c.ops / COLLAPSE_EVERY % EXTENTS) * c.pmd, c.pmd,
				    PTEMU_MADV_COLLAPSE);
	}
	return wctx_finish(&c);
}
