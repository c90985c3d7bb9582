/* truncate-race: one shmem object (key 64, 2 PMD extents) that writer 0 (proc 0, vcpu 0)
 * hole-punches and truncates while every other writer writes and verifies its own pages
 * of the same PMD extents (truncation racing collapse and faults). The last writer asks for
 * MADV_COLLAPSE of an extent (in turn) every COLLAPSE_EVERY operations; a punch inside a
 * collapsed extent splits its huge folio, so the extent is PTE-mapped again and the next
 * collapse retracts its tables again, while the truncator's unmapping walks them.
 *
 * Layout: the last TAIL pages belong to writer 0 (ftruncate down past them and back up,
 * or punch a sub-range); the pages before are striped, idx % W. Oracle for writer 0: an
 * own page holds exactly what it last wrote (round exp[idx]) before a punch/truncate and
 * exactly zero right after. Others: as shmem-stress for their own and each other's pages;
 * writer 0's pages may read zero at any time, so there only the tag (0 or exact) is checked.
 */
#include "lib/work.h"

#define SHM_KEY 64
#define CTRL_KEY 65
#define EXTENTS 2
#define MAXPUNCH 8
#define COLLAPSE_EVERY 64	/* the collapser's ops between MADV_COLLAPSE requests */

int guest_main(long vcpu, long nvcpus, long proc, long nprocs);

struct trunc {
	uptr base;
	long fd;
	unsigned long size;
	u32 npages, nstripe, tail;	/* tail pages: [nstripe, npages) */
	u32 gen;
	u32 *exp;			/* writer 0: last round written per page, 0 = zero */
};

static always_inline void own_check(struct wctx *c, struct trunc *t, u32 first, u32 n, int zero)
{
	for (u32 p = first; p < first + n; p++)
		rec_check_exact(c, t->base + (uptr)p * c->page, rec_tag(0, p), zero ? 0 : t->exp[p]);
}

static always_inline void own_write(struct wctx *c, struct trunc *t, u32 first, u32 n)
{
	t->gen++;
	for (u32 p = first; p < first + n; p++) {
		rec_write(t->base + (uptr)p * c->page, c->page, rec_tag(0, p), t->gen);
		t->exp[p] = t->gen;
	}
}

static always_inline void punch(struct wctx *c, struct trunc *t, u32 first, u32 n)
{
	long r = sys_punch_hole(t->fd, (unsigned long)first * c->page, (unsigned long)n * c->page);

	if (sys_failed(r))
		die("punch_hole", r);
}

/* Writer 0's op: punch an own striped page or a tail range, or cut the tail off and
 * grow it back; in each case exact data before, zeros after, then rewrite. */
static always_inline void truncator_op(struct wctx *c, struct trunc *t)
{
	u32 what = rng_below(&c->rng, 4), first, n;
	u32 nown = (t->nstripe + c->W - 1) / c->W;
	long r;

	if (what < 2 && nown) {
		first = rng_below(&c->rng, nown) * c->W;
		n = 1;
		own_check(c, t, first, n, 0);
		punch(c, t, first, n);
	} else if (what != 3) {	/* a tail range (also when writer 0 owns no striped page) */
		n = 1 + rng_below(&c->rng, t->tail < MAXPUNCH ? t->tail : MAXPUNCH);
		first = t->nstripe + rng_below(&c->rng, t->tail - n + 1);
		own_check(c, t, first, n, 0);
		punch(c, t, first, n);
	} else {
		first = t->nstripe;
		n = t->tail;
		own_check(c, t, first, n, 0);
		r = sys_ftruncate(t->fd, (unsigned long)t->nstripe * c->page);
		if (sys_failed(r))
			die("ftruncate down", r);
		r = sys_ftruncate(t->fd, t->size);
		if (sys_failed(r))
			die("ftruncate up", r);
	}
	c->extra++;
	own_check(c, t, first, n, 1);
	own_write(c, t, first, n);
	own_check(c, t, first, n, 0);
}

int guest_main(long vcpu, long nvcpus, long proc, long nprocs)
{
	struct wctx c;
	struct stripe s;
	struct trunc t;
	long r, collapser;

	wctx_init(&c, "truncate-race", vcpu, nvcpus, proc, nprocs, CTRL_KEY);
	c.extra_name = "truncations";
	t.size = EXTENTS * c.pmd;
	t.base = (uptr)shm_map(SHM_KEY, t.size, &t.fd);
	r = thp_madvise((void *)t.base, t.size, PTEMU_MADV_HUGEPAGE);
	if (sys_failed(r))
		die("madvise(MADV_HUGEPAGE) on shmem", r);
	t.npages = (u32)(t.size / c.page);
	t.tail = (u32)(c.pmd / c.page) / 8;
	if (t.tail == 0)
		t.tail = 1;
	t.nstripe = t.npages - t.tail;
	t.gen = 0;
	stripe_init(&c, &s, (void *)t.base, t.nstripe);
	t.exp = c.slot == 0 ? anon_map(round_up(t.npages * sizeof(u32), c.page)) : NULL;
	collapser = sys_param(PTEMU_PARAM_collapse) == 1 && c.W > 1 && c.slot == c.W - 1;

	while (wctx_more(&c)) {
		u32 q, owner;

		if (c.slot == 0)
			truncator_op(&c, &t);
		else
			stripe_step(&c, &s);
		if (collapser && c.ops % COLLAPSE_EVERY == 0) {
			/* -EAGAIN (a page busy) and the like are normal: the data must survive. */
			uptr ext = t.base + (c.ops / COLLAPSE_EVERY % EXTENTS) * c.pmd;

			sys_madvise((void *)ext, c.pmd, PTEMU_MADV_COLLAPSE);
		}

		/* A random striped page (never the tail: it may be beyond EOF right now). */
		q = rng_below(&c.rng, t.nstripe);
		owner = q % c.W;
		if (owner == 0 && c.slot == 0)
			own_check(&c, &t, q, 1, 0);
		else if (owner == 0)
			rec_check_tag(&c, t.base + (uptr)q * c.page, rec_tag(0, q));
		else
			stripe_check(&c, &s, q);
	}
	return wctx_finish(&c);
}
