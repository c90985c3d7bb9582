/* deep-calls (tests): call chains DEPTH frames deep into stack pages that were just
 * dropped. Each op zaps the vCPU's stack below guest_main's page (MADV_DONTNEED), then
 * recurses DEPTH frames; every frame keeps three values live across its call and folds
 * them into the result on the way back. On sparc64 each frame is a register window, so
 * the op is DEPTH window spills into zapped pages, each of which faults, and DEPTH fills;
 * elsewhere the prologues' stores fault the same pages in.
 *
 * Oracle: the result equals the same fold computed without recursion, from a table of each
 * frame's seed in an anonymous page (a window lost or restored wrongly changes it).
 */
#include "lib/work.h"

#define CTRL_KEY 113
#define DEPTH 300		/* about 65 KiB of sparc64 frames: 8 or more 8 KiB pages */
#define ZAP_BYTES (128ul << 10)	/* below guest_main's page; the stack is 256 KiB */

int guest_main(long vcpu, long nvcpus, long proc, long nprocs);

static inline u64 next_seed(u64 s, u64 depth)
{
	return s * 0x9E3779B97F4A7C15ull + depth;
}

static inline u64 fold(u64 r, u64 s, u64 depth)
{
	u64 a = mix64(s), b = a ^ (a >> 7), c = b + depth * 3;

	return (r ^ a) * (b | 1) + c;
}

/* Recursion on purpose: the values of a frame (s, depth) are live across the call. */
static noinline u64 descend(u64 depth, u64 s)
{
	if (depth == 0)
		return mix64(s);
	return fold(descend(depth - 1, next_seed(s, depth)), s, depth);
}

/* The same value with a loop: seeds down into seeds[], then the folds up. Out of line
 * (a leaf: no window on sparc64) to keep guest_main's registers few: s390x clang spills
 * with MVC otherwise. */
static noinline u64 reference(volatile u64 *seeds, u64 s)
{
	u64 r;

	for (u64 d = DEPTH; d > 0; d--) {
		seeds[d] = s;
		s = next_seed(s, d);
	}
	r = mix64(s);
	for (u64 d = 1; d <= DEPTH; d++)
		r = fold(r, seeds[d], d);
	return r;
}

int guest_main(long vcpu, long nvcpus, long proc, long nprocs)
{
	struct wctx c;
	volatile u64 *seeds;
	volatile char here = 0;
	uptr zap_end;

	wctx_init(&c, "deep-calls", vcpu, nvcpus, proc, nprocs, CTRL_KEY);
	c.extra_name = "frames";
	seeds = anon_map(round_up((DEPTH + 1) * sizeof(u64), c.page));
	zap_end = (uptr)&here & ~(uptr)(c.page - 1);
	while (wctx_more(&c)) {
		u64 s = rng_next(&c.rng), want = reference(seeds, s), got;
		long r = sys_madvise((void *)(zap_end - ZAP_BYTES), ZAP_BYTES, PTEMU_MADV_DONTNEED);

		if (sys_failed(r))
			die("madvise(MADV_DONTNEED) of the stack", r);
		got = descend(DEPTH, s);
		check_u64(&c, seeds, want, got);
		c.extra += DEPTH;
	}
	return wctx_finish(&c);
}
