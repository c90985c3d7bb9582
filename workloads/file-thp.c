/* file-thp: read-only file text collapse (CONFIG_READ_ONLY_THP_FOR_FS). Every process maps
 * the same read-only file of EXTENTS PMD extents, privately and executable (v6.6 collapses
 * a regular file only in a VM_EXEC mapping), and asks for MADV_HUGEPAGE;
 * every vCPU reads random words and checks each against the file's contents. The last
 * writer slot asks for MADV_COLLAPSE of an extent (in turn) every COLLAPSE_EVERY
 * operations; with --khugepaged on the khugepaged thread collapses them too. After a
 * collapse the ranges refault by PMD: extra counts the samples where thp_mapped said so.
 *
 * Oracle: file key 4 must read ptemu_file_word(4, off) at every offset, before, during
 * and after each collapse. */
#include "lib/work.h"

#define FILE_KEY 4
#define CTRL_KEY 5
#define EXTENTS 2
#define THP_POLL 64
#define COLLAPSE_EVERY 128

int guest_main(long vcpu, long nvcpus, long proc, long nprocs);

int guest_main(long vcpu, long nvcpus, long proc, long nprocs)
{
	struct wctx c;
	const volatile u64 *file;
	unsigned long flen;
	long collapser;

	wctx_init(&c, "file-thp", vcpu, nvcpus, proc, nprocs, CTRL_KEY);
	c.extra_name = "thp_seen";
	collapser = sys_param(PTEMU_PARAM_collapse) == 1 && c.slot == c.W - 1;
	flen = EXTENTS * c.pmd;
	file = file_map_huge(FILE_KEY, flen);

	while (wctx_more(&c)) {
		unsigned long off = (unsigned long)rng_below(&c.rng, (u32)(flen / 8)) * 8;

		check_u64(&c, &file[off / 8], ptemu_file_word(FILE_KEY, off), ld64_plain(&file[off / 8]));
		if (collapser && c.ops % COLLAPSE_EVERY == 0) {
			/* -EAGAIN (a page busy) is normal: the data must survive. */
			uptr ext = (uptr)file + (c.ops / COLLAPSE_EVERY % EXTENTS) * c.pmd;

			sys_madvise((void *)ext, c.pmd, PTEMU_MADV_COLLAPSE);
		}
		if (c.ops % THP_POLL == 0) {
			uptr ext = (uptr)file + rng_below(&c.rng, EXTENTS) * c.pmd;

			if (sys_thp_mapped((void *)ext) == 1)
				c.extra++;
		}
	}
	return wctx_finish(&c);
}
