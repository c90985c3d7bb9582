/* retract-reclaim: MADV_DONTNEEDs of whole PMD extents of a shmem object while khugepaged
 * and MADV_COLLAPSE collapse the extents and remove their page tables. With
 * --reclaim-empty-tables such a DONTNEED frees the table it emptied (6.14), and can do so
 * between a removal's look at the pmd and its pmd lock: the window of the re-checks that
 * retract_page_tables (6.14) and collapse_pte_mapped_thp (6.13) gained, which the
 * injections retract-no-recheck and cpmt-no-recheck take away.
 *
 * collapse_file retracts an extent's tables when it collapses the extent's small pages,
 * which a striped extent has only once: DONTNEED drops mappings, not the huge folio. So
 * the dropper (below) keeps a scratch extent, one more PMD of the object that no one
 * writes, churning: it punches a page (the punch splits the huge folio, and khugepaged
 * collapses the extent again: tens of retracts per run instead of one per extent), reads
 * a page back (a table for the next retract to find) and drops the extent (the zap that
 * frees that table in a retract's window).
 *
 * To reach collapse_pte_mapped_thp again and again, vCPU 0 of each process makes an
 * extent PTE-mapped every SPLIT_EVERY ops: MADV_NOHUGEPAGE on its lower half splits the
 * VMA (the split zaps the huge pmd), a read of each half then faults by PTEs (neither half
 * is a whole PMD), and MADV_HUGEPAGE merges the VMA again. khugepaged and MADV_COLLAPSE
 * find a PTE-mapped THP there and hand it to collapse_pte_mapped_thp.
 *
 * Every op of every vCPU writes its next page, reads a random one, drops a random extent
 * and reads a page of it back; except that, with several vCPUs, the last vCPU of each
 * process (the dropper) does only the drop on DROPPER_OP_EVERY - 1 ops of DROPPER_OP_EVERY,
 * and a scratch op on the others. A vCPU that touches pages often waits on a folio lock a
 * collapse holds, holding mmap_lock (v6.6 retracts before it unlocks the huge folio), so
 * that vCPU 0's split, a writer, and then every DONTNEED of the process queue behind it;
 * the dropper touches no striped page on most ops, and no one else touches the scratch
 * extent, so its zaps are what free a table in a removal's window (issue 15's notes give
 * the catch rates).
 *
 * Oracle: as shmem-stress, the first EXTENTS PMD extents of the object (key 80) are
 * striped: page idx belongs to writer idx % W, which checks each own page exactly before and after
 * writing the next round; readers check others' pages for exact tags and rounds that
 * never go backwards. A DONTNEED, a split or a merge drops mappings only, never data. The
 * scratch extent is never written: a hole, a punched page and a collapsed one read 0.
 */
#include "lib/work.h"

#define SHM_KEY 80
#define CTRL_KEY 81
#define EXTENTS 4		/* striped extents; the scratch extent follows them */
#define DROPPER_OP_EVERY 3
#define SPLIT_EVERY 4		/* vCPU 0's ops between making an extent PTE-mapped */
#define COLLAPSE_EVERY 16	/* vCPU 0 of process 0: ops between MADV_COLLAPSE requests */

int guest_main(long vcpu, long nvcpus, long proc, long nprocs);

static void madvise_or_die(void *addr, unsigned long len, long advice, const char *what)
{
	long r = advice == PTEMU_MADV_DONTNEED ? sys_madvise(addr, len, advice) :
						 thp_madvise(addr, len, advice);

	if (sys_failed(r))
		die(what, r);
}

/* One of the dropper's ops on the scratch extent: punch a page (which splits the extent's
 * huge folio, so that khugepaged collapses it again), read a page back (a table to
 * retract), or drop the extent (which frees that table in a removal's window). Nothing
 * ever writes there, so every read must find zeros. */
static void scratch_op(struct wctx *c, char *scratch, long fd, unsigned long off)
{
	u32 pages = (u32)(c->pmd / c->page), pg = rng_below(&c->rng, pages);
	long r;

	switch (rng_below(&c->rng, 4)) {
	case 0:
		r = sys_punch_hole(fd, off + (unsigned long)pg * c->page, c->page);
		if (sys_failed(r))
			die("punch_hole in the scratch extent", r);
		break;
	case 1:
		madvise_or_die(scratch, c->pmd, PTEMU_MADV_DONTNEED, "madvise(MADV_DONTNEED) of the scratch extent");
		break;
	default: {
		const volatile u64 *w = (const volatile u64 *)(scratch + (uptr)pg * c->page);

		check_u64(c, w, 0, *w);
	}
	}
}

int guest_main(long vcpu, long nvcpus, long proc, long nprocs)
{
	struct wctx c;
	struct stripe s;
	unsigned long len;
	char *base, *scratch;
	long collapse, fd;

	wctx_init(&c, "retract-reclaim", vcpu, nvcpus, proc, nprocs, CTRL_KEY);
	collapse = sys_param(PTEMU_PARAM_collapse) == 1;
	c.extra_name = "splits";

	len = EXTENTS * c.pmd;
	base = shm_map(SHM_KEY, len + c.pmd, &fd);
	scratch = base + len;
	madvise_or_die(base, len + c.pmd, PTEMU_MADV_HUGEPAGE, "madvise(MADV_HUGEPAGE) on shmem");
	stripe_init(&c, &s, base, (u32)(len / c.page));

	while (wctx_more(&c)) {
		char *ext = base + (uptr)rng_below(&c.rng, EXTENTS) * c.pmd;

		/* The dropper's drop-only ops. */
		if (nvcpus > 1 && vcpu == nvcpus - 1 && c.ops % DROPPER_OP_EVERY) {
			madvise_or_die(ext, c.pmd, PTEMU_MADV_DONTNEED, "madvise(MADV_DONTNEED) of an extent");
			continue;
		}
		if (nvcpus > 1 && vcpu == nvcpus - 1)
			scratch_op(&c, scratch, fd, len);

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
