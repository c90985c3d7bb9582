/* munmap-race: every vCPU of a process maps, fills, verifies and unmaps private anonymous
 * regions (1 PMD, or 1-8 pages) in the same mm, so that munmap's page-table freeing races
 * faults next door; each vCPU also keeps a striped shared shmem extent (key 16) going.
 *
 * Oracle: a region's touched words hold pat(slot, serial, page, word) exactly and an
 * untouched page reads 0, checked right after filling and again after the next region
 * was mapped (just before this one is unmapped). The shmem extent: as shmem-stress.
 */
#include "lib/work.h"

#define SHM_KEY 16
#define CTRL_KEY 17
#define TOUCH 8		/* pages touched per region */

int guest_main(long vcpu, long nvcpus, long proc, long nprocs);

struct region {
	uptr base;
	unsigned long len;
	u32 serial;
	u32 npages;
	u32 touched[TOUCH];	/* page numbers (repeats allowed) */
	u32 untouched;		/* a page not in touched[], or npages if none */
};

static inline unsigned long pat(const struct wctx *c, u32 serial, u32 pg, u32 word)
{
	return (unsigned long)mix64(((u64)c->slot << 48) ^ ((u64)serial << 24) ^ ((u64)pg << 2) ^ word) | 1;
}

static inline volatile unsigned long *word_at(const struct wctx *c, const struct region *g, u32 pg,
					      int k)
{
	uptr p = g->base + (uptr)pg * c->page;

	return (volatile unsigned long *)(k ? p + c->page - sizeof(long) : p);
}

static always_inline void region_verify(struct wctx *c, const struct region *g)
{
	for (int i = 0; i < TOUCH; i++)
		for (int k = 0; k < 2; k++) {
			volatile unsigned long *w = word_at(c, g, g->touched[i], k);
			unsigned long e = pat(c, g->serial, g->touched[i], (u32)k), v = *w;

			if (unlikely(v != e))
				mismatch(c, w, e, v);
		}
	if (g->untouched < g->npages) {
		volatile unsigned long *w = word_at(c, g, g->untouched, 0);
		unsigned long v = *w;

		if (unlikely(v != 0))
			mismatch(c, w, 0, v);
	}
}

int guest_main(long vcpu, long nvcpus, long proc, long nprocs)
{
	struct wctx c;
	struct stripe s;
	/* Two slots swapped by pointer: a struct copy would be an s390x MVC. */
	struct region slots[2], *cur = &slots[0], *prev = &slots[1], *tmp;
	void *sh;
	long r;

	wctx_init(&c, "munmap-race", vcpu, nvcpus, proc, nprocs, CTRL_KEY);
	c.extra_name = "pmd_regions";
	sh = shm_map(SHM_KEY, c.pmd, NULL);
	r = thp_madvise(sh, c.pmd, PTEMU_MADV_HUGEPAGE);
	if (sys_failed(r))
		die("madvise(MADV_HUGEPAGE) on shmem", r);
	stripe_init(&c, &s, sh, (u32)(c.pmd / c.page));
	prev->base = 0;

	while (wctx_more(&c)) {
		int big = rng_below(&c.rng, 4) == 0;

		cur->len = big ? c.pmd : (1 + rng_below(&c.rng, 8)) * c.page;
		r = sys_mmap(NULL, cur->len, PTEMU_PROT_READ | PTEMU_PROT_WRITE,
			     PTEMU_MAP_PRIVATE | PTEMU_MAP_ANONYMOUS, -1, 0);
		if (sys_failed(r))
			die("mmap anonymous region", r);
		cur->base = (uptr)r;
		cur->serial = (u32)c.ops;
		cur->npages = (u32)(cur->len / c.page);
		if (big) {
			c.extra++;
			if (rng_below(&c.rng, 2))
				sys_madvise((void *)cur->base, cur->len, PTEMU_MADV_HUGEPAGE);
		}
		/* Touch the first and last page and TOUCH-2 random ones; leave one untouched. */
		cur->untouched = cur->npages;
		for (int i = 0; i < TOUCH; i++) {
			u32 pg = i == 0 ? 0 : i == 1 ? cur->npages - 1 : rng_below(&c.rng, cur->npages);

			cur->touched[i] = pg;
			for (int k = 0; k < 2; k++)
				*word_at(&c, cur, pg, k) = pat(&c, cur->serial, pg, (u32)k);
		}
		if (cur->npages > TOUCH) {
			u32 pg = rng_below(&c.rng, cur->npages);
			int hit = 0;

			for (int i = 0; i < TOUCH; i++)
				hit |= cur->touched[i] == pg;
			if (!hit)
				cur->untouched = pg;
		}
		region_verify(&c, cur);

		/* The previous region outlived one more mmap: verify it again, then unmap. */
		if (prev->base) {
			region_verify(&c, prev);
			r = sys_munmap((void *)prev->base, prev->len);
			if (sys_failed(r))
				die("munmap", r);
		}
		tmp = prev;
		prev = cur;
		cur = tmp;

		stripe_step(&c, &s);
		stripe_check(&c, &s, rng_below(&c.rng, s.npages));
	}
	if (prev->base)
		sys_munmap((void *)prev->base, prev->len);
	return wctx_finish(&c);
}
