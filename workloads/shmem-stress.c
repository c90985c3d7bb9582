/* shmem-stress (the default workload): writers and readers over PMD-sized shmem extents
 * shared by every process, with khugepaged collapsing them underneath, plus reads of a
 * read-only file mapping. Writer 0 asks for MADV_COLLAPSE of one extent (in turn) and of
 * the file every COLLAPSE_EVERY operations, so collapse and retraction race every access;
 * with collapse on, every vCPU also drops the mapping of a random shmem page every
 * DONTNEED_EVERY operations, a zap that races the retracts without any page lock.
 *
 * Oracle: the shmem object (key 1, 4 PMD extents) is striped: page idx belongs to writer
 * idx % W. A writer checks each own page exactly before and after writing the next round
 * (lib/work.h, struct stripe); a reader checks other writers' pages for exact tags and
 * rounds that never go backwards. File key 2 (1 PMD) must read ptemu_file_word(2, off).
 */
#include "lib/work.h"

#define SHM_KEY 1
#define FILE_KEY 2
#define CTRL_KEY 3
#define EXTENTS 4
#define THP_POLL 64	/* ops between thp_mapped samples */
#define DONTNEED_EVERY 4	/* with collapse: ops between MADV_DONTNEEDs */
#define COLLAPSE_EVERY 256	/* writer 0's ops between MADV_COLLAPSE requests */

int guest_main(long vcpu, long nvcpus, long proc, long nprocs);

int guest_main(long vcpu, long nvcpus, long proc, long nprocs)
{
	struct wctx c;
	struct stripe s;
	unsigned long len, flen;
	const volatile u64 *file;
	void *base;
	long r, collapse;

	wctx_init(&c, "shmem-stress", vcpu, nvcpus, proc, nprocs, CTRL_KEY);
	collapse = sys_param(PTEMU_PARAM_collapse) == 1;
	c.extra_name = "thp_seen";

	len = EXTENTS * c.pmd;
	base = shm_map(SHM_KEY, len, NULL);
	r = thp_madvise(base, len, PTEMU_MADV_HUGEPAGE);
	if (sys_failed(r))
		die("madvise(MADV_HUGEPAGE) on shmem", r);
	stripe_init(&c, &s, base, (u32)(len / c.page));

	flen = c.pmd;
	file = file_map_huge(FILE_KEY, flen);

	while (wctx_more(&c)) {
		u32 idx;
		unsigned long off;

		/* Write the next own page; then read a random page (any owner). */
		stripe_step(&c, &s);
		idx = rng_below(&c.rng, s.npages);
		stripe_check(&c, &s, idx);
		/* Now and then drop a page's mapping (the data stays in the shmem object): a zap
		 * that walks the tables without taking any page lock, racing the retracts. Not
		 * a page just touched: a collapse holds those locked, so the touch waits. */
		if (collapse && c.ops % DONTNEED_EVERY == 0)
			sys_madvise((char *)base + (uptr)rng_below(&c.rng, s.npages) * c.page, c.page,
				    PTEMU_MADV_DONTNEED);

		/* One word of the read-only file. */
		off = (unsigned long)rng_below(&c.rng, (u32)(flen / 8)) * 8;
		check_u64(&c, &file[off / 8], ptemu_file_word(FILE_KEY, off), ld64_plain(&file[off / 8]));

		if (collapse && proc == 0 && vcpu == 0 && c.ops % COLLAPSE_EVERY == 0) {
			/* -EAGAIN (a page busy) and the like are normal: the data must survive. */
			uptr ext = (uptr)base + (c.ops / COLLAPSE_EVERY % EXTENTS) * c.pmd;

			sys_madvise((void *)ext, c.pmd, PTEMU_MADV_COLLAPSE);
			sys_madvise((void *)file, flen, PTEMU_MADV_COLLAPSE);
		}
		if (c.ops % THP_POLL == 0) {
			uptr ext = (uptr)base + rng_below(&c.rng, EXTENTS) * c.pmd;

			if (sys_thp_mapped((void *)ext) == 1)
				c.extra++;
		}
	}
	return wctx_finish(&c);
}
