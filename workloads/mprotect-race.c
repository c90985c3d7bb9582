/* mprotect-race: each vCPU owns REGION pages of its process's anonymous mapping and of a
 * shmem mapping shared by every process (key 32), and toggles them between PROT_READ and
 * PROT_READ|PROT_WRITE, splitting and merging the VMAs the other vCPUs fault in.
 *
 * Oracle: each own page holds round r exactly (records as in lib/work.h; round 0 = never
 * written) whether writable or not; rounds advance only while writable. Other writers'
 * shmem pages: exact tags, rounds never going backwards.
 */
#include "lib/work.h"

#define SHM_KEY 32
#define CTRL_KEY 33
#define REGION 8	/* pages per vCPU and mapping */

int guest_main(long vcpu, long nvcpus, long proc, long nprocs);

static always_inline void region_check(struct wctx *c, uptr base, u32 first, u32 round)
{
	for (u32 i = 0; i < REGION; i++)
		rec_check_exact(c, base + (uptr)(first + i) * c->page, rec_tag(c->slot, first + i), round);
}

static always_inline void region_write(struct wctx *c, uptr base, u32 first, u32 round)
{
	for (u32 i = 0; i < REGION; i++)
		rec_write(base + (uptr)(first + i) * c->page, c->page, rec_tag(c->slot, first + i), round);
}

static always_inline void protect(void *addr, unsigned long len, long prot)
{
	long r = sys_mprotect(addr, len, prot);

	if (sys_failed(r))
		die("mprotect", r);
}

int guest_main(long vcpu, long nvcpus, long proc, long nprocs)
{
	struct wctx c;
	unsigned long alen, slen, rlen;
	uptr anon, shm;
	u32 *last, round = 0, apage, spage, snpages;
	int writable = 1;
	long r;

	wctx_init(&c, "mprotect-race", vcpu, nvcpus, proc, nprocs, CTRL_KEY);
	c.extra_name = "toggles";
	if (proc >= CTRL_SLOTS)
		die("mprotect-race supports at most 64 processes", proc);
	rlen = REGION * c.page;

	/* The process's anonymous mapping: vCPU 0 maps it and publishes the address in the
	 * control page; the others wait for it. */
	alen = round_up((unsigned long)nvcpus * rlen, c.pmd);
	if (vcpu == 0) {
		anon = (uptr)anon_map(alen);
		r = thp_madvise((void *)anon, alen, PTEMU_MADV_HUGEPAGE);
		if (sys_failed(r))
			die("madvise(MADV_HUGEPAGE) on anon", r);
		stw_rel(&c.ctrl->slot[proc], anon);
	} else {
		while ((anon = ldw_acq(&c.ctrl->slot[proc])) == 0)
			sys_yield();
	}
	apage = (u32)vcpu * REGION;

	slen = round_up((unsigned long)c.W * rlen, c.pmd);
	shm = (uptr)shm_map(SHM_KEY, slen, NULL);
	r = thp_madvise((void *)shm, slen, PTEMU_MADV_HUGEPAGE);
	if (sys_failed(r))
		die("madvise(MADV_HUGEPAGE) on shmem", r);
	spage = c.slot * REGION;
	snpages = (u32)(slen / c.page);
	last = anon_map(round_up(snpages * sizeof(u32), c.page));

	while (wctx_more(&c)) {
		u32 q;

		region_check(&c, anon, apage, round);
		region_check(&c, shm, spage, round);
		if (writable) {
			round++;
			region_write(&c, anon, apage, round);
			region_write(&c, shm, spage, round);
			region_check(&c, anon, apage, round);
			region_check(&c, shm, spage, round);
			protect((void *)(anon + apage * c.page), rlen, PTEMU_PROT_READ);
			protect((void *)(shm + spage * c.page), rlen, PTEMU_PROT_READ);
		} else {
			protect((void *)(anon + apage * c.page), rlen, PTEMU_PROT_READ | PTEMU_PROT_WRITE);
			protect((void *)(shm + spage * c.page), rlen, PTEMU_PROT_READ | PTEMU_PROT_WRITE);
		}
		writable = !writable;
		c.extra++;
		region_check(&c, anon, apage, round);
		region_check(&c, shm, spage, round);

		/* A random shmem page of another writer (pages past W*REGION are never written). */
		q = rng_below(&c.rng, snpages);
		if (q / REGION != c.slot) {
			if (q / REGION < c.W)
				rec_check_other(&c, shm + (uptr)q * c.page, rec_tag(q / REGION, q), &last[q]);
			else
				rec_check_exact(&c, shm + (uptr)q * c.page, 0, 0);
		}
	}
	return wctx_finish(&c);
}
