/* The bare-Unicorn side of `ptemu bench overhead`: the same image with an identity TLB
 * fill and a flat memory layout, so that the ratio to a ptemu run is the model's cost. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include <unicorn/unicorn.h>

#include <ptemu/arch.h>
#include <ptemu/bench.h>
#include <ptemu/clock.h>
#include <ptemu/loader.h>
#include <ptemu/tlb.h>

#include "workloads/include/ptemu_abi.h"

#define BARE_BYTES (512ull << 20)
#define BARE_STACK_TOP (BARE_BYTES - (1ull << 20))
#define BARE_MMAP_BASE (64ull << 20)

struct bare {
	const struct ptemu_arch *arch;
	uc_engine *uc;
	uint8_t *mem;
	uint64_t next;		/* bump allocator for mmap */
	uint64_t objects[64][3];	/* key, kind (1 shm, 2 file), address */
	unsigned nobjects;
	uint64_t fds[32];	/* fd -> object index + 1 */
	double deadline;
	uint64_t seed;
	unsigned tlb_entries;	/* what the guest is told its TLB holds */
	bool grow_tlb;
	struct ptemu_hw_tlb_growth growth;
	struct ptemu_bench_bare_result *res;
};

static bool identity_fill(uc_engine *uc, uint64_t vaddr, uc_mem_type type, uc_tlb_entry *e, void *user)
{
	struct bare *b = user;

	if (b->grow_tlb && ptemu_hw_tlb_grow_due(&b->growth))
		uc_ctl_flush_tlb(uc);
	e->paddr = vaddr;
	e->perms = UC_PROT_ALL;
	b->res->fills++;
	return vaddr < BARE_BYTES;
}

static uint64_t bump(struct bare *b, uint64_t len)
{
	uint64_t pmd = ptemu_pmd_size(b->arch);
	uint64_t align = len >= pmd ? pmd : ptemu_page_size(b->arch);
	uint64_t a = (b->next + align - 1) & ~(align - 1);

	if (a + len > BARE_STACK_TOP - (4ull << 20))
		return 0;
	b->next = a + len;
	return a;
}

static int64_t bare_mmap(struct bare *b, uint64_t len, uint64_t flags, uint64_t fd)
{
	uint64_t psize = ptemu_page_size(b->arch);

	len = (len + psize - 1) & ~(psize - 1);
	if (flags & PTEMU_MAP_ANONYMOUS) {
		uint64_t a = bump(b, len);

		return a ? (int64_t)a : -PTEMU_ENOMEM;
	}
	if (fd >= 32 || !b->fds[fd])
		return -PTEMU_EINVAL;
	uint64_t *o = b->objects[b->fds[fd] - 1];

	if (!o[2]) {
		o[2] = bump(b, len);
		if (!o[2])
			return -PTEMU_ENOMEM;
		if (o[1] == 2) {
			for (uint64_t off = 0; off < len; off += 8) {
				uint64_t w = ptemu_file_word(o[0], off);

				if (b->arch->big_endian)
					w = __builtin_bswap64(w);
				memcpy(b->mem + o[2] + off, &w, 8);
			}
		}
	}
	return (int64_t)o[2];
}

static int64_t bare_open(struct bare *b, uint64_t key, uint64_t kind)
{
	unsigned i;

	for (i = 0; i < b->nobjects; i++)
		if (b->objects[i][0] == key && b->objects[i][1] == kind)
			break;
	if (i == b->nobjects) {
		if (b->nobjects == 64)
			return -PTEMU_ENOMEM;
		b->objects[b->nobjects][0] = key;
		b->objects[b->nobjects][1] = kind;
		b->objects[b->nobjects][2] = 0;
		b->nobjects++;
	}
	for (int fd = 3; fd < 32; fd++) {
		if (!b->fds[fd]) {
			b->fds[fd] = i + 1;
			return fd;
		}
	}
	return -PTEMU_EAGAIN;
}

/* Syscalls are answered inside the hook: nothing here needs to leave the run. */
static void bare_intr(uc_engine *uc, uint32_t intno, void *user)
{
	struct bare *b = user;
	const struct ptemu_isa *isa = &b->arch->isa;
	uint64_t nr = 0, a[6] = { 0 }, pc;
	int64_t ret = 0;

	if (isa->wants_trap && isa->wants_trap((int)intno)) {
		/* sparc64's window traps, on the engine's identity-mapped memory (no mm). */
		if (isa->handle_trap(uc, NULL, (int)intno, b->res->error, sizeof(b->res->error)))
			uc_emu_stop(uc);
		return;
	}
	if ((int)intno != isa->syscall_intno) {
		snprintf(b->res->error, sizeof(b->res->error), "guest exception %u", intno);
		uc_emu_stop(uc);
		return;
	}
	uc_reg_read(uc, isa->reg_sysno, &nr);
	for (int i = 0; i < 6; i++)
		uc_reg_read(uc, isa->reg_arg[i], &a[i]);
	b->res->syscalls++;
	switch (nr) {
	case PTEMU_SYS_exit:
	case PTEMU_SYS_exit_group:
		uc_emu_stop(uc);
		return;
	case PTEMU_SYS_mmap:
		ret = bare_mmap(b, a[1], a[3], a[4]);
		break;
	case PTEMU_SYS_shm_open:
		ret = bare_open(b, a[0], 1);
		break;
	case PTEMU_SYS_file_open:
		ret = bare_open(b, a[0], 2);
		break;
	case PTEMU_SYS_should_stop:
		b->res->polls++;
		ret = ptemu_now() >= b->deadline;
		break;
	case PTEMU_SYS_param:
		ret = a[0] == PTEMU_PARAM_seed ? (int64_t)b->seed :
		      a[0] == PTEMU_PARAM_pmd_size ? (int64_t)ptemu_pmd_size(b->arch) :
		      a[0] == PTEMU_PARAM_page_size ? (int64_t)ptemu_page_size(b->arch) :
		      a[0] == PTEMU_PARAM_tlb_entries ? (int64_t)b->tlb_entries : 0;
		break;
	case PTEMU_SYS_bench_mark:
		ret = ptemu_bench_mark(&b->res->marks, a[0], a[1], ptemu_now_ns()) ? -PTEMU_EINVAL : 0;
		break;
	case PTEMU_SYS_write:
		ret = (int64_t)a[1];
		break;
	default:
		ret = 0;	/* munmap, mprotect, madvise, yield, report...: nothing to model */
		break;
	}
	uc_reg_write(uc, isa->reg_ret, &ret);
	if (!isa->pc_after_syscall) {
		uc_reg_read(uc, isa->reg_pc, &pc);
		pc += isa->syscall_insn_bytes;
		uc_reg_write(uc, isa->reg_pc, &pc);
	}
}

int ptemu_bench_bare(const struct ptemu_arch *arch, const char *image, double seconds, uint64_t seed,
		     unsigned tlb_entries, bool grow_tlb, struct ptemu_bench_bare_result *res)
{
	const struct ptemu_isa *isa = &arch->isa;
	struct ptemu_elf_image img;
	struct bare b = { .arch = arch, .next = BARE_MMAP_BASE, .seed = seed, .tlb_entries = tlb_entries,
			  .grow_tlb = grow_tlb, .res = res };
	uc_hook h1, h2;
	uint64_t v;
	int rc = -1;

	memset(res, 0, sizeof(*res));
	if (ptemu_elf_load_for(arch, image, &img, res->error, sizeof(res->error)))
		return -1;
	b.mem = mmap(NULL, BARE_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
		     -1, 0);
	if (b.mem == MAP_FAILED) {
		snprintf(res->error, sizeof(res->error), "no host memory: %s", strerror(errno));
		ptemu_elf_free(&img);
		return -1;
	}
	for (unsigned i = 0; i < img.nsegments; i++)
		if (img.segments[i].vaddr + img.segments[i].memsz < BARE_MMAP_BASE)
			memcpy(b.mem + img.segments[i].vaddr, img.segments[i].data, img.segments[i].filesz);
	if (uc_open((uc_arch)isa->uc_arch, (uc_mode)isa->uc_mode, &b.uc) ||
	    uc_ctl_tlb_mode(b.uc, UC_TLB_VIRTUAL) ||
	    uc_mem_map_ptr(b.uc, 0, BARE_BYTES, UC_PROT_ALL, b.mem) || uc_ctl_exits_enable(b.uc) ||
	    uc_hook_add(b.uc, &h1, UC_HOOK_TLB_FILL, (void *)identity_fill, &b, 1, 0) ||
	    uc_hook_add(b.uc, &h2, UC_HOOK_INTR, (void *)bare_intr, &b, 1, 0) ||
	    (isa->cpu_init && isa->cpu_init(b.uc))) {
		snprintf(res->error, sizeof(res->error), "cannot set up Unicorn");
		goto out;
	}
	v = BARE_STACK_TOP - 64 - isa->stack_reserve - isa->stack_bias;
	uc_reg_write(b.uc, isa->reg_sp, &v);
	v = 0;
	uc_reg_write(b.uc, isa->reg_arg[0], &v);
	uc_reg_write(b.uc, isa->reg_arg[2], &v);
	v = 1;
	uc_reg_write(b.uc, isa->reg_arg[1], &v);
	uc_reg_write(b.uc, isa->reg_arg[3], &v);
	b.deadline = ptemu_now() + seconds;
	double start = ptemu_now();
	uc_err e = uc_emu_start(b.uc, img.entry, 0, 0, 0);

	res->elapsed = ptemu_now() - start;
	if (e != UC_ERR_OK && !res->error[0])
		snprintf(res->error, sizeof(res->error), "%s", uc_strerror(e));
	rc = res->error[0] ? -1 : 0;
out:
	if (b.uc)
		uc_close(b.uc);
	munmap(b.mem, BARE_BYTES);
	ptemu_elf_free(&img);
	return rc;
}
