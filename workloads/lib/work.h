/* The frame every workload shares: the run context, the stop rule, mismatch reporting,
 * the shared control page with the run summary, and tagged page records with their
 * exact oracles. See workloads/README.md for the record format and the oracles.
 */
#ifndef PTEMU_WORK_H
#define PTEMU_WORK_H

#include "guest.h"

#define CTRL_SLOTS 64		/* per-process words in the control page */
#define REPORT_CAP 32		/* report syscalls per vCPU; later mismatches are only counted */
#define STOP_POLL 16		/* ops between should_stop polls */

/* One page of a shmem object (its own key per workload) shared by every vCPU of the run. */
struct ctrl {
	u32 done;		/* vCPUs that finished */
	u32 mismatches;
	unsigned long ops;
	unsigned long extra;
	unsigned long slot[CTRL_SLOTS];	/* workload-defined (mprotect-race: per-process address) */
};

struct wctx {
	const char *name;
	long vcpu, nvcpus, proc, nprocs;
	u32 slot, W;		/* writer slot proc*nvcpus+vcpu of W = nprocs*nvcpus */
	unsigned long page, pmd;	/* PTEMU_PARAM_page_size, PTEMU_PARAM_pmd_size */
	u64 ops_limit;		/* PTEMU_PARAM_ops: per vCPU, 0 = unbounded */
	u64 ops;
	u32 mismatches, reported;
	unsigned long extra;	/* a workload-defined counter for the summary */
	const char *extra_name;
	struct rng rng;
	volatile struct ctrl *ctrl;
};

void wctx_init(struct wctx *c, const char *name, long vcpu, long nvcpus, long proc, long nprocs,
	       long ctrl_key);
/* Adds this vCPU's counts to the control page; the last vCPU of the run writes the summary
 * line. Returns 0 (what guest_main returns). */
int wctx_finish(struct wctx *c);

/* 1 while the workload should go on: PTEMU_PARAM_ops not yet done and, polled every
 * STOP_POLL ops, PTEMU_SYS_should_stop not yet 1. Counts the op. */
static inline int wctx_more(struct wctx *c)
{
	if (c->ops_limit && c->ops >= c->ops_limit)
		return 0;
	if ((c->ops % STOP_POLL) == 0 && c->ops && sys_should_stop() == 1)
		return 0;
	c->ops++;
	return 1;
}

/* A guest-detected mismatch: counted, reported (PTEMU_REPORT_data_mismatch) up to
 * REPORT_CAP times, and the first one also written to the run log. */
noinline void mismatch(struct wctx *c, const volatile void *addr, unsigned long expected,
			    unsigned long got);

/* 64-bit data: on 32-bit guests the report carries the mismatching 32-bit half. */
static always_inline void check_u64(struct wctx *c, const volatile u64 *p, u64 expected, u64 got)
{
	if (got == expected)
		return;
	if (sizeof(long) == 8) {
		mismatch(c, p, (unsigned long)expected, (unsigned long)got);
	} else {
		const volatile u32 *h = (const volatile u32 *)p;
		int lo = __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ ? 0 : 1;

		if ((u32)expected != (u32)got)
			mismatch(c, h + lo, (u32)expected, (u32)got);
		if ((u32)(expected >> 32) != (u32)(got >> 32))
			mismatch(c, h + (1 - lo), (u32)(expected >> 32), (u32)(got >> 32));
	}
}

/* madvise with a THP advice (MADV_HUGEPAGE, NOHUGEPAGE, COLLAPSE): 0 also when the model
 * has no THP and the kernel refused the advice as unknown (EINVAL), as a program that
 * treats the advice as a hint does. */
long thp_madvise(void *addr, unsigned long len, long advice);

/* Set-up helpers; they die on failure. */
void *anon_map(unsigned long len);			/* private anonymous, RW */
void *shm_map(long key, unsigned long size, long *fd);	/* shm_open + MAP_SHARED RW */
/* A read-only file mapped MAP_PRIVATE and executable, with MADV_HUGEPAGE: v6.6 collapses
 * a regular file only in a VM_EXEC mapping (file_thp_enabled). */
const volatile u64 *file_map_huge(long key, unsigned long size);

/* The helpers below are always inlined: on sparc64 each out-of-line level would cost a
 * register window (README.md, "sparc64 call depth"). */

/* ---- tagged page records ------------------------------------------------------------
 * A page owned by writer `owner` at index `idx` of its object holds REC_N records, at byte
 * offsets 0, page/2 and page-8 of the page. A record is two u32: tag, round.
 *   never written (or punched): tag 0, round 0
 *   written in round r >= 1:    tag rec_tag(owner, idx), round r
 * Writers store the tag, then the round with release, record 0 first. Readers load the
 * round with acquire, then the tag. */
#define REC_N 3

static always_inline volatile u32 *rec_at(uptr pg, unsigned long page, int k)
{
	return (volatile u32 *)(pg + (k == 0 ? 0 : k == 1 ? page / 2 : page - 8));
}
static always_inline u32 rec_tag(u32 owner, u32 idx)
{
	return 0x80000000u | (owner & 0x7ffu) << 20 | (idx & 0xfffffu);
}
static always_inline void rec_write(uptr pg, unsigned long page, u32 tag, u32 round)
{
	for (int k = 0; k < REC_N; k++) {
		volatile u32 *r = rec_at(pg, page, k);

		st32(&r[0], tag);
		st32_rel(&r[1], round);
	}
}
/* The owner's oracle: exactly (tag, round), or (0, 0) for round 0. */
static always_inline void rec_check_exact(struct wctx *c, uptr pg, u32 tag, u32 round)
{
	u32 etag = round ? tag : 0;

	for (int k = 0; k < REC_N; k++) {
		volatile u32 *r = rec_at(pg, c->page, k);
		u32 gr = ld32(&r[1]), gt = ld32(&r[0]);

		if (unlikely(gt != etag))
			mismatch(c, &r[0], etag, gt);
		if (unlikely(gr != round))
			mismatch(c, &r[1], round, gr);
	}
}
/* A reader's oracle for a page whose owner only ever increases the round: the tag is
 * exact, record 0's round never goes below what this reader saw before (*last, updated),
 * and record k's round is at least record 0's minus one (the owner writes record 0 of
 * round r only after every record of round r-1). */
static always_inline void rec_check_other(struct wctx *c, uptr pg, u32 tag, u32 *last)
{
	u32 r0 = 0;

	for (int k = 0; k < REC_N; k++) {
		volatile u32 *r = rec_at(pg, c->page, k);
		u32 gr = ld32_acq(&r[1]), gt = ld32(&r[0]);

		if (unlikely(gt != tag && (gr != 0 || gt != 0)))
			mismatch(c, &r[0], tag, gt);
		if (k == 0) {
			r0 = gr;
			if (last) {
				if (unlikely(gr < *last))
					mismatch(c, &r[1], *last, gr);
				else
					*last = gr;
			}
		} else if (unlikely(gr + 1 < r0)) {
			mismatch(c, &r[1], r0 - 1, gr);
		}
	}
}
/* A reader's oracle for a page that may be punched or truncated at any time: each tag is
 * 0 or exact; rounds are not constrained. */
static always_inline void rec_check_tag(struct wctx *c, uptr pg, u32 tag)
{
	for (int k = 0; k < REC_N; k++) {
		volatile u32 *r = rec_at(pg, c->page, k);
		u32 gt = ld32(&r[0]);

		if (unlikely(gt != tag && gt != 0))
			mismatch(c, &r[0], tag, gt);
	}
}

/* ---- striped ownership ---------------------------------------------------------------
 * Pages [0, npages) of a mapping; page idx belongs to writer idx % W. The owner visits
 * its pages in order: at each visit it checks round `pass` exactly, writes pass+1 and
 * checks that; after its last page, pass++. So own page number i (idx = slot + i*W)
 * holds pass+1 if i < cursor, else pass. */
struct stripe {
	uptr base;
	u32 npages;
	u32 nown, cursor, pass;
	u32 *last;		/* per page: the highest record-0 round seen as a reader */
};

void stripe_init(struct wctx *c, struct stripe *s, void *base, u32 npages);

static always_inline u32 stripe_expected(const struct stripe *s, u32 i)
{
	return i < s->cursor ? s->pass + 1 : s->pass;
}
static always_inline uptr stripe_page(const struct wctx *c, const struct stripe *s, u32 idx)
{
	return s->base + (uptr)idx * c->page;
}
/* Visit the next own page; returns its index, or -1 if this writer owns none. */
static always_inline long stripe_step(struct wctx *c, struct stripe *s)
{
	u32 idx, tag;
	uptr pg;

	if (!s->nown)
		return -1;
	idx = c->slot + s->cursor * c->W;
	pg = stripe_page(c, s, idx);
	tag = rec_tag(c->slot, idx);
	rec_check_exact(c, pg, tag, s->pass);
	rec_write(pg, c->page, tag, s->pass + 1);
	rec_check_exact(c, pg, tag, s->pass + 1);
	if (++s->cursor == s->nown) {
		s->cursor = 0;
		s->pass++;
	}
	return idx;
}
/* Check page idx with the oracle that fits its owner. */
static always_inline void stripe_check(struct wctx *c, struct stripe *s, u32 idx)
{
	u32 owner = idx % c->W;
	uptr pg = stripe_page(c, s, idx);

	if (owner == c->slot)
		rec_check_exact(c, pg, rec_tag(owner, idx), stripe_expected(s, idx / c->W));
	else
		rec_check_other(c, pg, rec_tag(owner, idx), &s->last[idx]);
}

#endif
