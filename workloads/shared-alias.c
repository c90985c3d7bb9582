/* shared-alias: every vCPU maps one shmem object (key 96, 2 PMD extents) twice in its own
 * mm, at two different addresses, and writes each page through one alias and reads it back
 * through the other, while the other vCPUs of the same mm map, unmap and fault their own
 * aliases of the same pages, a truncator cuts the object shorter and grows it back, and
 * khugepaged and MADV_COLLAPSE collapse the extents and retract their tables. A fault on a
 * shared page then has other mappings of that page in the same mm: on classic arm,
 * update_mmu_cache's make_coherent walks i_mmap for them and adjust_pte()s each one, under
 * that alias's PTE lock, in a table that may be being zapped, freed or retracted.
 *
 * The two aliases of a vCPU:
 *   A  the whole object, PMD-aligned (offsets and addresses agree modulo the PMD size),
 *      MADV_HUGEPAGE: collapsed and retracted; remapped every REMAP_A_EVERY ops.
 *   B  a window of 1..WINDOW_MAX pages at a page offset, shorter than a PMD so only
 *      page-aligned: its pages sit at addresses not congruent to A's (and a window may
 *      share a PTE table with another vCPU's window of the same pages); one remap in
 *      FULL_B_ONE_IN maps the whole object instead (a second congruent, collapsible
 *      alias). Remapped whenever the next page to visit lies outside it, and one op in
 *      REMAP_B_ONE_IN anyway.
 * A remap maps the new alias first and then unmaps the old one, so a third alias exists
 * for a moment and the new one never reuses the old address. Every DONTNEED_EVERY ops a
 * random range of one alias is dropped (the data stays), so both aliases fault again.
 *
 * Layout and oracle: the last TAIL pages (pmd/8) belong to writer 0 (proc 0, vCPU 0), the
 * truncator; the pages before are striped, idx % W (lib/work.h, struct stripe). No other
 * vCPU touches the tail, which may lie beyond EOF (a fault there is SIGBUS, which ends the
 * run), though its aliases map it. Each op a writer visits its next own page: the page
 * must hold exactly the round it last wrote, read through one alias; it writes the next
 * round through the other alias and reads it back exactly through both. It then reads a
 * random page of its window through B and then A, and a random page through A: own pages
 * exactly, others' with an exact tag and a record-0 round that never goes backwards (the
 * same per-page minimum across both aliases, since they are one page). The truncator,
 * one op in TRUNC_ONE_IN, picks a tail range, checks it exactly through one alias (the
 * generation it last wrote there, or zero), ftruncates the object to a random size inside
 * the tail and back, checks the range through the other alias (pages below the cut keep
 * their generation, pages at or above it are zero, and so are the pages above the cut it
 * does not look at now), writes a new generation through that alias and reads it back
 * through the first.
 */
#include "lib/work.h"

#define SHM_KEY 96
#define CTRL_KEY 97
#define EXTENTS 2
#define WINDOW_MAX 64		/* pages in a window alias (also below pmd/page) */
#define REMAP_A_EVERY 32	/* ops between remaps of the whole-object alias */
#define REMAP_B_ONE_IN 8	/* ops that remap the window alias though it fits */
#define FULL_B_ONE_IN 8		/* window remaps that map the whole object instead */
#define DONTNEED_EVERY 2	/* ops between MADV_DONTNEEDs of an alias range */
#define DONTNEED_MAX 16		/* pages per MADV_DONTNEED */
#define TRUNC_ONE_IN 4		/* the truncator's ops that truncate */
#define TRUNC_RANGE 8		/* tail pages the truncator checks per truncation */
#define COLLAPSE_EVERY 64	/* the collapser's ops between MADV_COLLAPSE requests */

int guest_main(long vcpu, long nvcpus, long proc, long nprocs);

/* Object pages [first, first + n) mapped at base. */
struct alias {
	uptr base;
	u32 first, n;
};

struct obj {
	long fd;
	unsigned long size;
	u32 npages, nstripe, tail;	/* tail pages: [nstripe, npages) */
	u32 wmax;			/* longest window: below a PMD, at most WINDOW_MAX */
	u32 gen;
	u32 *exp;			/* writer 0: per tail page, the generation it holds */
	struct alias a, b;
};

static always_inline int alias_has(const struct alias *al, u32 first, u32 n)
{
	return al->first <= first && first + n <= al->first + al->n;
}

static always_inline uptr alias_page(const struct wctx *c, const struct alias *al, u32 idx)
{
	return al->base + (uptr)(idx - al->first) * c->page;
}

/* Map object pages [first, first + n) anywhere (MADV_HUGEPAGE if it is the whole object),
 * then unmap what *al mapped before, if anything. */
static always_inline void alias_remap(struct wctx *c, struct obj *o, struct alias *al, u32 first, u32 n)
{
	unsigned long len = (unsigned long)n * c->page;
	long r = sys_mmap(NULL, len, PTEMU_PROT_READ | PTEMU_PROT_WRITE, PTEMU_MAP_SHARED, o->fd,
			  (unsigned long)first * c->page);

	if (sys_failed(r))
		die("mmap alias", r);
	if (n == o->npages) {
		long h = thp_madvise((void *)r, len, PTEMU_MADV_HUGEPAGE);

		if (sys_failed(h))
			die("madvise(MADV_HUGEPAGE) on an alias", h);
	}
	if (al->base) {
		long u = sys_munmap((void *)al->base, (unsigned long)al->n * c->page);

		if (sys_failed(u))
			die("munmap alias", u);
	}
	al->base = (uptr)r;
	al->first = first;
	al->n = n;
	c->extra++;
}

/* A new window alias B holding pages [first, first + n): the whole object one time in
 * FULL_B_ONE_IN, else a random window around them. */
static always_inline void window_remap(struct wctx *c, struct obj *o, u32 first, u32 n)
{
	u32 len, lo, hi;

	if (rng_below(&c->rng, FULL_B_ONE_IN) == 0 || n > o->wmax) {
		alias_remap(c, o, &o->b, 0, o->npages);
		return;
	}
	len = n + rng_below(&c->rng, o->wmax - n + 1);
	lo = first + n > len ? first + n - len : 0;
	hi = o->npages - len < first ? o->npages - len : first;
	alias_remap(c, o, &o->b, lo + rng_below(&c->rng, hi - lo + 1), len);
}

/* B must hold [first, first + n) for this op; sometimes it moves anyway. */
static always_inline void window_cover(struct wctx *c, struct obj *o, u32 first, u32 n)
{
	if (!alias_has(&o->b, first, n) || rng_below(&c->rng, REMAP_B_ONE_IN) == 0)
		window_remap(c, o, first, n);
}

/* Page idx of the striped part, read through alias al: own pages exactly, others' by tag
 * and a monotonic round (s->last is per page, so A and B share it). */
static always_inline void striped_check(struct wctx *c, struct stripe *s, const struct alias *al, u32 idx)
{
	u32 owner = idx % c->W;
	uptr pg = alias_page(c, al, idx);

	if (owner == c->slot)
		rec_check_exact(c, pg, rec_tag(owner, idx), stripe_expected(s, idx / c->W));
	else
		rec_check_other(c, pg, rec_tag(owner, idx), &s->last[idx]);
}

/* The writer's next own striped page: exact old round through one alias, the new round
 * written through the other and read back exactly through both. */
static always_inline void own_step(struct wctx *c, struct stripe *s, struct obj *o)
{
	u32 idx, tag;
	int b_writes = (int)rng_below(&c->rng, 2);
	const struct alias *w, *r;

	if (!s->nown)
		return;
	idx = c->slot + s->cursor * c->W;
	tag = rec_tag(c->slot, idx);
	window_cover(c, o, idx, 1);
	w = b_writes ? &o->b : &o->a;
	r = b_writes ? &o->a : &o->b;
	rec_check_exact(c, alias_page(c, r, idx), tag, s->pass);
	rec_write(alias_page(c, w, idx), c->page, tag, s->pass + 1);
	rec_check_exact(c, alias_page(c, r, idx), tag, s->pass + 1);
	rec_check_exact(c, alias_page(c, w, idx), tag, s->pass + 1);
	if (++s->cursor == s->nown) {
		s->cursor = 0;
		s->pass++;
	}
}

static always_inline void tail_check(struct wctx *c, struct obj *o, const struct alias *al, u32 first, u32 n)
{
	for (u32 p = first; p < first + n; p++)
		rec_check_exact(c, alias_page(c, al, p), rec_tag(0, p), o->exp[p]);
}

/* Writer 0's truncation: a tail range exact through one alias, the object cut inside the
 * tail and grown back, the range exact (kept below the cut, zero from it) through the
 * other alias, rewritten there and read back through the first. */
static always_inline void truncator_op(struct wctx *c, struct obj *o)
{
	u32 n = 1 + rng_below(&c->rng, o->tail < TRUNC_RANGE ? o->tail : TRUNC_RANGE);
	u32 first = o->nstripe + rng_below(&c->rng, o->tail - n + 1);
	u32 cut = o->nstripe + rng_below(&c->rng, o->tail);
	int b_first = (int)rng_below(&c->rng, 2);
	const struct alias *x, *y;
	long r;

	window_cover(c, o, first, n);
	x = b_first ? &o->b : &o->a;
	y = b_first ? &o->a : &o->b;
	tail_check(c, o, x, first, n);
	r = sys_ftruncate(o->fd, (unsigned long)cut * c->page);
	if (sys_failed(r))
		die("ftruncate down", r);
	r = sys_ftruncate(o->fd, o->size);
	if (sys_failed(r))
		die("ftruncate up", r);
	for (u32 p = cut; p < o->npages; p++)
		o->exp[p] = 0;
	tail_check(c, o, y, first, n);
	o->gen++;
	for (u32 p = first; p < first + n; p++) {
		rec_write(alias_page(c, y, p), c->page, rec_tag(0, p), o->gen);
		o->exp[p] = o->gen;
	}
	tail_check(c, o, x, first, n);
}

/* Drop the mapping of a random range of one alias: a zap; the data stays. */
static always_inline void drop_range(struct wctx *c, const struct alias *al)
{
	u32 n = 1 + rng_below(&c->rng, al->n < DONTNEED_MAX ? al->n : DONTNEED_MAX);
	u32 at = rng_below(&c->rng, al->n - n + 1);

	sys_madvise((void *)(al->base + (uptr)at * c->page), (unsigned long)n * c->page,
		    PTEMU_MADV_DONTNEED);
}

int guest_main(long vcpu, long nvcpus, long proc, long nprocs)
{
	struct wctx c;
	struct stripe s;
	struct obj o;
	long collapser;

	wctx_init(&c, "shared-alias", vcpu, nvcpus, proc, nprocs, CTRL_KEY);
	c.extra_name = "remaps";
	memset(&o, 0, sizeof(o));
	o.size = EXTENTS * c.pmd;
	o.fd = sys_shm_open(SHM_KEY, o.size);
	if (sys_failed(o.fd))
		die("shm_open", o.fd);
	o.npages = (u32)(o.size / c.page);
	o.tail = (u32)(c.pmd / c.page) / 8;
	if (o.tail == 0)
		o.tail = 1;
	o.nstripe = o.npages - o.tail;
	o.wmax = (u32)(c.pmd / c.page) - 1;
	if (o.wmax > WINDOW_MAX)
		o.wmax = WINDOW_MAX;
	if (o.wmax == 0)
		o.wmax = 1;
	stripe_init(&c, &s, NULL, o.nstripe);
	o.exp = c.slot == 0 ? anon_map(round_up(o.npages * sizeof(u32), c.page)) : NULL;
	alias_remap(&c, &o, &o.a, 0, o.npages);
	window_remap(&c, &o, 0, 1);
	collapser = sys_param(PTEMU_PARAM_collapse) == 1 && c.slot == c.W - 1;

	while (wctx_more(&c)) {
		u32 q;

		if (c.ops % REMAP_A_EVERY == c.slot % REMAP_A_EVERY)
			alias_remap(&c, &o, &o.a, 0, o.npages);
		if (c.slot == 0 && rng_below(&c.rng, TRUNC_ONE_IN) == 0)
			truncator_op(&c, &o);
		else
			own_step(&c, &s, &o);

		/* A random page of the window, through B and then A (tail pages: writer 0's only). */
		q = o.b.first + rng_below(&c.rng, o.b.n);
		if (q < o.nstripe) {
			striped_check(&c, &s, &o.b, q);
			striped_check(&c, &s, &o.a, q);
		} else if (c.slot == 0) {
			tail_check(&c, &o, &o.b, q, 1);
			tail_check(&c, &o, &o.a, q, 1);
		}
		/* A random striped page through A. */
		striped_check(&c, &s, &o.a, rng_below(&c.rng, o.nstripe));

		if (c.ops % DONTNEED_EVERY == 0)
			drop_range(&c, rng_below(&c.rng, 2) ? &o.a : &o.b);
		if (collapser && c.ops % COLLAPSE_EVERY == 0) {
			/* -EAGAIN (a page busy) and the like are normal: the data must survive. */
			uptr ext = o.a.base + (c.ops / COLLAPSE_EVERY % EXTENTS) * c.pmd;

			sys_madvise((void *)ext, c.pmd, PTEMU_MADV_COLLAPSE);
		}
	}
	return wctx_finish(&c);
}
