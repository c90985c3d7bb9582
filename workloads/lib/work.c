#include "work.h"

void *anon_map(unsigned long len)
{
	long r = sys_mmap(NULL, len, PTEMU_PROT_READ | PTEMU_PROT_WRITE,
			  PTEMU_MAP_PRIVATE | PTEMU_MAP_ANONYMOUS, -1, 0);

	if (sys_failed(r))
		die("mmap anonymous", r);
	return (void *)r;
}

void *shm_map(long key, unsigned long size, long *fd)
{
	long f = sys_shm_open(key, size), r;

	if (sys_failed(f))
		die("shm_open", f);
	r = sys_mmap(NULL, size, PTEMU_PROT_READ | PTEMU_PROT_WRITE, PTEMU_MAP_SHARED, f, 0);
	if (sys_failed(r))
		die("mmap shmem", r);
	if (fd)
		*fd = f;
	return (void *)r;
}

long thp_madvise(void *addr, unsigned long len, long advice)
{
	long r = sys_madvise(addr, len, advice);

	return r == -PTEMU_EINVAL && !sys_param(PTEMU_PARAM_thp) ? 0 : r;
}

const volatile u64 *file_map_huge(long key, unsigned long size)
{
	long fd = sys_file_open(key, size), r;

	if (sys_failed(fd))
		die("file_open", fd);
	r = sys_mmap(NULL, size, PTEMU_PROT_READ | PTEMU_PROT_EXEC, PTEMU_MAP_PRIVATE, fd, 0);
	if (sys_failed(r))
		die("mmap file", r);
	if (sys_failed(thp_madvise((void *)r, size, PTEMU_MADV_HUGEPAGE)))
		die("madvise(MADV_HUGEPAGE) on the file", -1);
	return (const volatile u64 *)r;
}

void wctx_init(struct wctx *c, const char *name, long vcpu, long nvcpus, long proc, long nprocs,
	       long ctrl_key)
{
	long page = sys_param(PTEMU_PARAM_page_size), pmd = sys_param(PTEMU_PARAM_pmd_size);

	memset(c, 0, sizeof(*c));
	c->name = name;
	c->vcpu = vcpu;
	c->nvcpus = nvcpus;
	c->proc = proc;
	c->nprocs = nprocs;
	if (nvcpus < 1 || nprocs < 1 || vcpu < 0 || vcpu >= nvcpus || proc < 0 || proc >= nprocs)
		die("bad start arguments", vcpu);
	c->slot = (u32)(proc * nvcpus + vcpu);
	c->W = (u32)(nprocs * nvcpus);
	if (c->W > 2048)
		die("more than 2048 vCPUs in the run", (long)c->W);
	if (page < 8 || (page & (page - 1)) || sys_failed(page))
		die("bad page size", page);
	if (pmd < page || (pmd & (pmd - 1)) || sys_failed(pmd))
		die("bad pmd size", pmd);
	c->page = (unsigned long)page;
	c->pmd = (unsigned long)pmd;
	c->ops_limit = (u64)sys_param(PTEMU_PARAM_ops);
	rng_seed(&c->rng, (u64)sys_param(PTEMU_PARAM_seed), c->slot);
	c->ctrl = shm_map(ctrl_key, c->page, NULL);
}

int wctx_finish(struct wctx *c)
{
	volatile struct ctrl *k = c->ctrl;
	unsigned long ops, extra;
	u32 mism;

	addw(&k->ops, (unsigned long)c->ops);
	addw(&k->extra, c->extra);
	add32(&k->mismatches, c->mismatches);
	if (add32(&k->done, 1) == c->W) {
		struct fmt f;

		ops = ldw(&k->ops);
		extra = ldw(&k->extra);
		mism = ld32(&k->mismatches);
		fmt_init(&f);
		fmt_str(&f, c->name);
		fmt_str(&f, mism ? ": FAIL procs=" : ": ok procs=");
		fmt_u64(&f, (u64)c->nprocs);
		fmt_str(&f, " vcpus=");
		fmt_u64(&f, (u64)c->nvcpus);
		fmt_str(&f, " ops=");
		fmt_u64(&f, ops);
		fmt_str(&f, " mismatches=");
		fmt_u64(&f, mism);
		if (c->extra_name) {
			fmt_char(&f, ' ');
			fmt_str(&f, c->extra_name);
			fmt_char(&f, '=');
			fmt_u64(&f, extra);
		}
		fmt_char(&f, '\n');
		sys_write((const char *)f.b, f.n);
	}
	return 0;
}

void mismatch(struct wctx *c, const volatile void *addr, unsigned long expected, unsigned long got)
{
	c->mismatches++;
	if (c->reported >= REPORT_CAP)
		return;
	c->reported++;
	sys_report(PTEMU_REPORT_data_mismatch, addr, expected, got);
	if (c->reported == 1) {
		struct fmt f;

		fmt_init(&f);
		fmt_str(&f, c->name);
		fmt_str(&f, ": mismatch proc ");
		fmt_u64(&f, (u64)c->proc);
		fmt_str(&f, " vcpu ");
		fmt_u64(&f, (u64)c->vcpu);
		fmt_str(&f, " at ");
		fmt_hex(&f, (uptr)addr);
		fmt_str(&f, " expected ");
		fmt_hex(&f, expected);
		fmt_str(&f, " got ");
		fmt_hex(&f, got);
		fmt_char(&f, '\n');
		sys_write((const char *)f.b, f.n);	/* not fmt_flush: one sparc64 window less */
	}
}

void stripe_init(struct wctx *c, struct stripe *s, void *base, u32 npages)
{
	if (npages > 0x100000)
		die("more than 2^20 pages in a striped object", (long)npages);
	s->base = (uptr)base;
	s->npages = npages;
	s->nown = c->slot < npages ? (npages - c->slot + c->W - 1) / c->W : 0;
	s->cursor = 0;
	s->pass = 0;
	s->last = anon_map(round_up(npages * sizeof(u32), c->page));
}
