/* dontneed-race: MADV_DONTNEED on a private anonymous PMD (must read back zeros) and on a
 * shared shmem PMD (key 48: must keep its data; only the mappings go), racing faults; and
 * on the whole of a PMD of anonymous memory that all vCPUs of a process share and only
 * read, so that the zap leaves its PTE table empty while the other vCPUs fault in it
 * (--reclaim-empty-tables frees such a table).
 *
 * Oracle, anon: every page holds pat(slot, page, word) at three words, except the pages
 * just dropped, which read 0 until rewritten. Shmem: striped as in shmem-stress; after a
 * DONTNEED of any range, own pages in it hold their round exactly, others' exact tags and
 * rounds that never go backwards. Shared zero PMD: never written, every read is 0.
 */
#include "lib/work.h"

#define SHM_KEY 48
#define CTRL_KEY 49
#define MAXRANGE 16	/* pages per DONTNEED */
#define ZERO_READS 8	/* reads of the shared zero PMD per op */

int guest_main(long vcpu, long nvcpus, long proc, long nprocs);

static inline unsigned long pat(const struct wctx *c, u32 pg, int k)
{
	return (unsigned long)mix64(((u64)c->slot << 40) ^ ((u64)pg << 2) ^ (u64)k) | 1;
}

static inline volatile unsigned long *word_at(const struct wctx *c, uptr base, u32 pg, int k)
{
	uptr p = base + (uptr)pg * c->page;

	return (volatile unsigned long *)(k == 0 ? p : k == 1 ? p + c->page / 2 : p + c->page - sizeof(long));
}

static always_inline void anon_fill(struct wctx *c, uptr base, u32 first, u32 n)
{
	for (u32 pg = first; pg < first + n; pg++)
		for (int k = 0; k < 3; k++)
			*word_at(c, base, pg, k) = pat(c, pg, k);
}

/* zero: the page must read 0 (just dropped) instead of its pattern. */
static always_inline void anon_check(struct wctx *c, uptr base, u32 pg, int zero)
{
	for (int k = 0; k < 3; k++) {
		volatile unsigned long *w = word_at(c, base, pg, k);
		unsigned long e = zero ? 0 : pat(c, pg, k), v = *w;

		if (unlikely(v != e))
			mismatch(c, w, e, v);
	}
}

int guest_main(long vcpu, long nvcpus, long proc, long nprocs)
{
	struct wctx c;
	struct stripe s;
	uptr anon, zero;
	void *sh;
	u32 npages;
	long r;

	wctx_init(&c, "dontneed-race", vcpu, nvcpus, proc, nprocs, CTRL_KEY);
	c.extra_name = "dontneeds";
	npages = (u32)(c.pmd / c.page);

	anon = (uptr)anon_map(c.pmd);
	r = thp_madvise((void *)anon, c.pmd, PTEMU_MADV_HUGEPAGE);
	if (sys_failed(r))
		die("madvise(MADV_HUGEPAGE) on anon", r);
	anon_fill(&c, anon, 0, npages);

	sh = shm_map(SHM_KEY, c.pmd, NULL);
	r = thp_madvise(sh, c.pmd, PTEMU_MADV_HUGEPAGE);
	if (sys_failed(r))
		die("madvise(MADV_HUGEPAGE) on shmem", r);
	stripe_init(&c, &s, sh, npages);

	/* The process's shared zero PMD: vCPU 0 maps it and publishes the address in the
	 * control page; the others wait for it. */
	if (proc >= CTRL_SLOTS)
		die("dontneed-race supports at most 64 processes", proc);
	if (vcpu == 0) {
		zero = (uptr)anon_map(c.pmd);
		stw_rel(&c.ctrl->slot[proc], zero);
	} else {
		while ((zero = ldw_acq(&c.ctrl->slot[proc])) == 0)
			sys_yield();
	}

	while (wctx_more(&c)) {
		u32 n = 1 + rng_below(&c.rng, npages < MAXRANGE ? npages : MAXRANGE);
		u32 a = rng_below(&c.rng, npages - n + 1), q;

		/* Private anonymous: dropped pages read zero, the rest keep the pattern. */
		r = sys_madvise((void *)(anon + a * c.page), n * c.page, PTEMU_MADV_DONTNEED);
		if (sys_failed(r))
			die("madvise(MADV_DONTNEED) on anon", r);
		c.extra++;
		for (u32 pg = a; pg < a + n; pg++)
			anon_check(&c, anon, pg, 1);
		if (a > 0)
			anon_check(&c, anon, a - 1, 0);
		if (a + n < npages)
			anon_check(&c, anon, a + n, 0);
		q = rng_below(&c.rng, npages);
		anon_check(&c, anon, q, q >= a && q < a + n);
		anon_fill(&c, anon, a, n);
		anon_check(&c, anon, a, 0);

		/* Shared: write an own page, drop a random range, its data must survive. */
		stripe_step(&c, &s);
		n = 1 + rng_below(&c.rng, npages < MAXRANGE ? npages : MAXRANGE);
		a = rng_below(&c.rng, npages - n + 1);
		r = sys_madvise((char *)sh + a * c.page, n * c.page, PTEMU_MADV_DONTNEED);
		if (sys_failed(r))
			die("madvise(MADV_DONTNEED) on shmem", r);
		for (u32 pg = a; pg < a + n; pg++)
			stripe_check(&c, &s, pg);

		/* Shared zero PMD: fault pages in by reading them, then drop it whole. */
		for (int i = 0; i < ZERO_READS; i++) {
			volatile unsigned long *w =
				(volatile unsigned long *)(zero + (uptr)rng_below(&c.rng, npages) * c.page);
			unsigned long v = *w;

			if (unlikely(v != 0))
				mismatch(&c, w, 0, v);
		}
		r = sys_madvise((void *)zero, c.pmd, PTEMU_MADV_DONTNEED);
		if (sys_failed(r))
			die("madvise(MADV_DONTNEED) on the zero PMD", r);
	}
	return wctx_finish(&c);
}
