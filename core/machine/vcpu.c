/* Unicorn vCPUs: one engine and one host thread per vCPU, every TLB miss answered by the
 * model's walker over the tables in simulated memory, faults and syscalls handled outside
 * guest mode (DESIGN.md section 2). Also the run around them: processes, the guest ABI's
 * system calls, and the end of a run. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <capstone/capstone.h>
#include <unicorn/unicorn.h>

#include <ptemu/bench.h>
#include <ptemu/check.h>
#include <ptemu/clock.h>
#include <ptemu/fault.h>
#include <ptemu/file.h>
#include <ptemu/khugepaged.h>
#include <ptemu/loader.h>
#include <ptemu/machine.h>
#include <ptemu/mm.h>
#include <ptemu/pgtable.h>
#include <ptemu/phys.h>
#include <ptemu/rcu.h>
#include <ptemu/run.h>
#include <ptemu/sched.h>
#include <ptemu/tlb.h>
#include <ptemu/uaccess.h>

#include "workloads/include/ptemu_abi.h"
#include "internal.h"

#define MAX_PROCS 16
#define MAX_VCPUS 16
/* Every vCPU, khugepaged and the RCU thread are scheduled threads in deterministic runs. */
_Static_assert(MAX_PROCS * MAX_VCPUS + 2 <= PTEMU_SCHED_MAX_THREADS, "the scheduler holds every thread");
#define MAX_FDS 1024		/* RLIMIT_NOFILE's usual soft limit */
#define MAX_OBJECTS 64
#define STACK_BYTES (256u << 10)
/* How long past --seconds a guest may take to notice should_stop before it is ended. */
#define GRACE_SECONDS 2.0
/* Steps a deterministic run allows each vCPU past its bound before calling it a livelock. */
#define LIVELOCK_STEPS_PER_VCPU 20000
/* Faults in a row at one instruction and address, with no syscall between, that end a
 * vCPU as livelocked: a fault the handler resolves is retried once, or a few times when
 * other CPUs race it; never this often. */
#define LIVELOCK_FAULTS 50000
/* The accesses (address and kind) such a streak may cycle through: an instruction that
 * touches two pages can fault on each in turn. */
#define LIVELOCK_KEYS 4

struct run;
struct process;

struct vcpu {
	struct run *run;
	struct process *proc;
	unsigned index;		/* within the process */
	unsigned global;	/* within the run */
	uc_engine *uc;
	uc_hook hooks[3];
	pthread_t thread;
	bool started;
	struct ptemu_tlb tlb;
	struct ptemu_walk_ctx walk;
	uint64_t walk_va;	/* the address being walked, for the walk cache */
	uint64_t walk_cached;	/* its walk-cache hit (a PTE table), 0 on a miss */
	uint64_t walk_table;	/* PTE table the current walk entered (walk_raced_detach) */
	/* What a walk-cache hit gives the walker at each level above the pmd: a table entry
	 * (its address unused), made once by the model's mk_table. */
	uint64_t cached_upper[PTEMU_MAX_LEVELS];
	/* What made the last run stop. */
	bool fault;
	uint64_t fault_va;
	unsigned fault_flags;
	bool syscall;
	int trap;		/* a trap for the ISA's handle_trap, 0 if none */
	int terminate;		/* atomic: leave at the next block */
	bool hw_flush_pending;	/* Unicorn's TLB to be flushed before the next run */
	struct ptemu_hw_tlb_growth hw_growth;
	bool deterministic;
	/* Counters, owner-written; read by the watchdog. */
	uint64_t blocks, block_bytes, fills, syscalls, progress, polls;
	uint64_t hw_refills, hw_flushes;
	struct ptemu_bench_marks marks;	/* the guest's PTEMU_SYS_bench_mark */
	/* cfg->time_faults: each fault's handling time, for percentiles. */
	uint32_t *fault_ns;
	size_t nfault_ns, cap_fault_ns;
	/* The last fault and how many times in a row it came (LIVELOCK_FAULTS). */
	uint64_t last_fault_pc, last_fault_keys[LIVELOCK_KEYS];
	unsigned nlast_fault_keys;
	uint64_t same_faults;
	/* What the vCPU is doing, for the watchdog's report. */
	int activity;		/* enum vcpu_activity, atomic */
	uint64_t activity_arg;	/* syscall number or fault address */
	struct ptemu_thread *thread_rec;
};

enum vcpu_activity { ACT_STARTING, ACT_GUEST, ACT_SYSCALL, ACT_FAULT, ACT_EXITED };

struct process {
	struct run *run;
	unsigned index;
	struct mm_struct *mm;
	struct vcpu vcpus[MAX_VCPUS];
	unsigned nvcpus;
	int alive;		/* vCPUs still running, atomic */
	int exit_group;		/* atomic */
	int exit_code;
	bool killed;		/* by --exit-after: its status 137 is no guest error */
	bool mm_destroyed;	/* by the last vCPU out; read by the main thread after joins */
	struct ptemu_file *fds[MAX_FDS];
	pthread_mutex_t fd_lock;
};

struct object {
	uint64_t key;
	bool shmem;
	struct ptemu_file *file;
};

struct run {
	const struct ptemu_run_config *cfg;
	struct ptemu_machine *m;
	struct ptemu_elf_image image;
	struct process procs[MAX_PROCS];
	unsigned nprocs;
	double start, deadline;
	int stop;		/* atomic: the guests should stop */
	int launched;		/* atomic: every vCPU thread was started */
	pthread_mutex_t lock;	/* objects, errors, the log */
	struct object objects[MAX_OBJECTS];
	unsigned nobjects;
	enum ptemu_run_error error;
	char message[512];
	uint64_t shootdowns, kicks;
};

/* Only the owner writes progress; the watchdog reads it. A relaxed store of the owner's
 * own increment: no locked instruction on the hot path. */
static inline void note_progress(struct vcpu *v)
{
	__atomic_store_n(&v->progress, v->progress + 1, __ATOMIC_RELAXED);
}

static void run_fail(struct run *r, enum ptemu_run_error e, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void run_fail(struct run *r, enum ptemu_run_error e, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&r->lock);
	if (r->error == PTEMU_RUN_OK) {
		r->error = e;
		va_start(ap, fmt);
		vsnprintf(r->message, sizeof(r->message), fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&r->lock);
	__atomic_store_n(&r->stop, 1, __ATOMIC_RELEASE);
	for (unsigned p = 0; p < r->nprocs; p++)
		for (unsigned v = 0; v < r->procs[p].nvcpus; v++)
			__atomic_store_n(&r->procs[p].vcpus[v].terminate, 1, __ATOMIC_RELEASE);
}

int ptemu_check_unicorn(char *err, size_t errlen)
{
	unsigned major, minor;

	uc_version(&major, &minor);
	if (major > 2 || (major == 2 && minor >= 1))
		return 0;
	snprintf(err, errlen, "Unicorn %u.%u found; ptemu needs >= 2.1 (UC_TLB_VIRTUAL and "
		 "UC_HOOK_TLB_FILL). Run scripts/deps.", major, minor);
	return -1;
}

/* ---- TLB hooks of the machine ------------------------------------------------------ */

/* Every flush of the vCPU's whole Unicorn TLB, counted (hw_flushes). */
static void flush_hw_now(struct vcpu *v)
{
	v->hw_flushes++;
	uc_ctl_flush_tlb(v->uc);
}

/* Inside a run (the fill or block hook) Unicorn's TLB is flushed at once; outside one
 * (a syscall or fault of this vCPU) it is flushed just before the next run starts, so
 * that even the first instruction fetch cannot use a translation the logical TLB no
 * longer has (which would also make logical misses depend on Unicorn's TLB sizing). */
static void flush_hw(void *ctx)
{
	struct vcpu *v = ctx;

	if (__atomic_load_n(&v->tlb.mode, __ATOMIC_RELAXED) == VCPU_IN_GUEST)
		flush_hw_now(v);
	else
		v->hw_flush_pending = true;
}

/* The vCPU the calling model thread runs, NULL in any other. */
static __thread struct vcpu *host_current_vcpu;
static struct ptemu_thread_local_key current_vcpu_key = { sizeof(struct vcpu *), 0 };

static struct vcpu **current_vcpu(void)
{
	return ptemu_thread_local(&current_vcpu_key, &host_current_vcpu);
}

/* Whose TLB can still be used: a vCPU that has exited never translates again, so it is
 * no shootdown target and its stale entries are no violation (with 256 vCPUs, checking
 * every TLB at each page an exiting process frees would dominate the run). */
static bool vcpu_translates(struct vcpu *v)
{
	return __atomic_load_n(&v->started, __ATOMIC_ACQUIRE) &&
	       __atomic_load_n(&v->activity, __ATOMIC_ACQUIRE) != ACT_EXITED;
}

static void run_flush_range(void *ctx, struct mm_struct *mm, uint64_t start, uint64_t end,
			    bool tables)
{
	struct run *r = ctx;
	struct ptemu_tlb *targets[MAX_VCPUS];
	unsigned n = 0;

	for (unsigned p = 0; p < r->nprocs; p++) {
		struct process *pr = &r->procs[p];

		if (__atomic_load_n(&pr->mm, __ATOMIC_RELAXED) != mm)
			continue;
		for (unsigned i = 0; i < pr->nvcpus; i++)
			if (vcpu_translates(&pr->vcpus[i]))
				targets[n++] = &pr->vcpus[i].tlb;
	}
	if (!n)
		return;
	__atomic_fetch_add(&r->shootdowns, 1, __ATOMIC_RELAXED);
	if (ptemu_sched_scheduled())
		ptemu_sched_fold(r->m, PTEMU_EV_SHOOTDOWN | (uint64_t)(ptemu_current()->sched_id + 1) << 8,
				 start, end);
	struct vcpu *self = *current_vcpu();

	ptemu_tlb_shootdown(targets, n, self && self->proc->mm == mm ? &self->tlb : NULL, start, end, tables);
}

/* tlb_remove_table_sync_one's IPI: an empty request to every vCPU that can translate. A
 * vCPU in guest mode acknowledges it only between walks (as a CPU takes an interrupt only
 * once its interrupts-off section is over); one outside guest mode is in no walk. */
static void run_ipi_all(void *ctx)
{
	struct run *r = ctx;
	struct ptemu_tlb *targets[MAX_VCPUS];
	unsigned n = 0;

	for (unsigned p = 0; p < r->nprocs; p++)
		for (unsigned i = 0; i < r->procs[p].nvcpus; i++)
			if (vcpu_translates(&r->procs[p].vcpus[i]))
				targets[n++] = &r->procs[p].vcpus[i].tlb;
	if (!n)
		return;
	if (ptemu_sched_scheduled())
		ptemu_sched_fold(r->m, PTEMU_EV_SHOOTDOWN | (uint64_t)(ptemu_current()->sched_id + 1) << 8,
				 0, 0);
	struct vcpu *self = *current_vcpu();

	ptemu_tlb_shootdown(targets, n, self ? &self->tlb : NULL, 0, 0, false);
}

static void run_pages_freed(void *ctx, uint64_t pfn, uint64_t nr)
{
	struct run *r = ctx;
	uint64_t va;

	for (unsigned p = 0; p < r->nprocs; p++)
		for (unsigned i = 0; i < r->procs[p].nvcpus; i++) {
			struct vcpu *v = &r->procs[p].vcpus[i];

			if (vcpu_translates(v) && ptemu_tlb_maps_pfn(&v->tlb, pfn, nr, &va))
				ptemu_report(r->m, VIOLATION_TLB_MAPS_FREED_PAGE, pfn << r->m->arch->page_shift,
					     "page %#" PRIx64 " freed while vCPU %u.%u's TLB maps it at %#" PRIx64,
					     pfn << r->m->arch->page_shift, p, i, va);
		}
	if (!r->m->arch->hw_cache_maps_pfn)
		return;
	/* The model's own translation cache of each mm a vCPU can still translate through. */
	for (unsigned p = 0; p < r->nprocs; p++) {
		bool live = false;

		for (unsigned i = 0; i < r->procs[p].nvcpus; i++)
			live |= vcpu_translates(&r->procs[p].vcpus[i]);
		if (live && r->m->arch->hw_cache_maps_pfn(r->procs[p].mm, pfn, nr, &va))
			ptemu_report(r->m, VIOLATION_TLB_MAPS_FREED_PAGE, pfn << r->m->arch->page_shift,
				     "page %#" PRIx64 " freed while process %u's translation cache in "
				     "memory (TSB, HPT) maps it at %#" PRIx64,
				     pfn << r->m->arch->page_shift, p, va);
	}
}

static void run_table_freed(void *ctx, uint64_t table_pa)
{
	struct run *r = ctx;
	uint64_t va;

	for (unsigned p = 0; p < r->nprocs; p++)
		for (unsigned i = 0; i < r->procs[p].nvcpus; i++) {
			struct vcpu *v = &r->procs[p].vcpus[i];

			if (vcpu_translates(v) && ptemu_tlb_caches_table(&v->tlb, table_pa, &va))
				ptemu_report(r->m, VIOLATION_TLB_MAPS_FREED_PAGE, table_pa,
					     "PTE table %#" PRIx64 " freed while vCPU %u.%u's walk cache "
					     "points at it for %#" PRIx64, table_pa, p, i, va);
		}
}

/* ---- the fill hook ------------------------------------------------------------------ */

/* Walk-cache-aware reader: on a hit, upper levels are not read at all and the pmd level
 * yields the cached table, exactly what a paging-structure cache does. */
static uint64_t vcpu_read_entry(const struct ptemu_walk_ctx *ctx, unsigned level, uint64_t table_pa,
				unsigned index)
{
	struct vcpu *v = ctx->opaque;
	struct ptemu_machine *m = v->run->m;
	const struct ptemu_arch *a = m->arch;
	unsigned pmd_level = ptemu_pmd_level(a);

	if (level <= pmd_level && v->walk_cached) {
		if (level < pmd_level)
			return v->cached_upper[level];
		if (!v->walk_table) {
			v->walk_table = v->walk_cached;
			check_walk_enter(m, v->walk_cached);
			if (v->deterministic)
				ptemu_sched_point_window(v->walk_cached);	/* as below, from the walk cache */
		}
		return a->mk_table(level, v->walk_cached);
	}
	check_walk_read(m, table_pa, level, level == ptemu_pte_level(a));
	uint64_t e = ptemu_table_entry_load(m, table_pa, level, index);

	if (level == pmd_level) {
		uint64_t t;

		if (a->classify(level, e, &t) == PTEMU_ENTRY_TABLE) {
			ptemu_walk_cache_insert(&v->tlb, v->walk_va, t);
			v->walk_table = t;
			check_walk_enter(m, t);
			/* A walk is not atomic: another CPU may detach the table before we read
			 * the PTE from it. */
			if (v->deterministic)
				ptemu_sched_point_window(t);
		}
	}
	return e;
}

static unsigned to_uc_perms(unsigned p)
{
	return (p & PTEMU_PROT_READ ? UC_PROT_READ : 0) | (p & PTEMU_PROT_WRITE ? UC_PROT_WRITE : 0) |
	       (p & PTEMU_PROT_EXEC ? UC_PROT_EXEC : 0);
}

static bool tlb_fill_hook(uc_engine *uc, uint64_t vaddr, uc_mem_type type, uc_tlb_entry *result,
			  void *user)
{
	struct vcpu *v = user;
	struct ptemu_machine *m = v->run->m;
	const struct ptemu_arch *a = m->arch;
	uint64_t psize = ptemu_page_size(a);
	unsigned need = type == UC_MEM_WRITE ? PTEMU_PROT_WRITE :
			type == UC_MEM_FETCH ? PTEMU_PROT_EXEC : PTEMU_PROT_READ;
	uint64_t pa;
	unsigned perms;

	if (ptemu_hw_tlb_grow_due(&v->hw_growth))
		flush_hw_now(v);
	if (ptemu_tlb_lookup(&v->tlb, vaddr, &pa, &perms) && (perms & need)) {
		v->hw_refills++;
		result->paddr = pa + (vaddr & (psize - 1));
		result->perms = to_uc_perms(perms);
		return true;
	}
	/* A logical miss: the only place tables are read by "hardware". */
	struct ptemu_walk_result res;
	enum ptemu_access acc = type == UC_MEM_WRITE ? PTEMU_ACCESS_WRITE :
				type == UC_MEM_FETCH ? PTEMU_ACCESS_FETCH : PTEMU_ACCESS_READ;

	v->fills++;
	note_progress(v);
	if (v->deterministic)
		ptemu_sched_point();
	v->walk_va = vaddr;
	v->walk.mm = v->proc->mm;
	enum ptemu_walk_fault f;

	for (;;) {
		v->walk_table = 0;
		if (!ptemu_walk_cache_lookup(&v->tlb, vaddr, &v->walk_cached))
			v->walk_cached = 0;
		f = a->hw_walk(&v->walk, v->proc->mm->pgd_pa, vaddr, acc, &res);
		if (v->walk_table)
			check_walk_leave(m, v->walk_table);
		if (f != PTEMU_WALK_RETRY)
			break;
		/* The access again, once whoever holds the entry has gone on; between the two
		 * the CPU takes the invalidations posted to it, as a return to the guest does.
		 * A yield, not a spin-wait: PCT passes over spinners while others can run, and
		 * initiators spinning for this CPU's acknowledgement would starve it. */
		ptemu_tlb_apply_requests(&v->tlb);
		if (v->deterministic)
			ptemu_sched_yield();
		else
			sched_yield();
		if (__atomic_load_n(&v->terminate, __ATOMIC_ACQUIRE))
			break;
	}
	if (f == PTEMU_WALK_OK && (res.perms & need)) {
		uint64_t page_pa = res.paddr & ~(psize - 1);

		ptemu_tlb_insert(&v->tlb, vaddr, res.paddr, res.leaf_size, res.perms);
		result->paddr = page_pa + (vaddr & (psize - 1));
		result->perms = to_uc_perms(res.perms);
		return true;
	}
	v->fault = true;
	v->fault_va = vaddr;
	v->fault_flags = acc == PTEMU_ACCESS_WRITE ? FAULT_FLAG_WRITE :
			 acc == PTEMU_ACCESS_FETCH ? FAULT_FLAG_INSTRUCTION : 0;
	return false;
}

static void note_fault_time(struct vcpu *v, double seconds)
{
	if (v->nfault_ns == v->cap_fault_ns) {
		size_t cap = v->cap_fault_ns ? 2 * v->cap_fault_ns : 4096;
		uint32_t *p = realloc(v->fault_ns, cap * sizeof(*p));

		if (!p)
			return;	/* a sample less: the percentiles stay meaningful */
		v->fault_ns = p;
		v->cap_fault_ns = cap;
	}
	double ns = seconds * 1e9;

	v->fault_ns[v->nfault_ns++] = ns > 4e9 ? UINT32_MAX : (uint32_t)ns;
}

static void block_hook(uc_engine *uc, uint64_t address, uint32_t size, void *user)
{
	struct vcpu *v = user;

	v->blocks++;
	note_progress(v);
	v->block_bytes += size;
	if (v->deterministic)
		ptemu_sched_point_guest();
	if (__atomic_load_n(&v->tlb.kick, __ATOMIC_ACQUIRE)) {
		ptemu_tlb_apply_requests(&v->tlb);
		/* Leave the run so that chained blocks look their pages up again. */
		uc_emu_stop(uc);
	}
	if (__atomic_load_n(&v->terminate, __ATOMIC_ACQUIRE) ||
	    __atomic_load_n(&v->proc->exit_group, __ATOMIC_ACQUIRE))
		uc_emu_stop(uc);
}

static void intr_hook(uc_engine *uc, uint32_t intno, void *user)
{
	struct vcpu *v = user;

	const struct ptemu_isa *isa = &v->run->m->arch->isa;

	if ((int)intno == isa->syscall_intno) {
		v->syscall = true;
		uc_emu_stop(uc);	/* from the vCPU's own thread: safe */
		return;
	}
	if (isa->wants_trap && isa->wants_trap((int)intno)) {
		v->trap = (int)intno;	/* handled outside guest mode: it may fault */
		uc_emu_stop(uc);
		return;
	}
	run_fail(v->run, PTEMU_RUN_GUEST_ERROR, "process %u vCPU %u: guest exception %u",
		 v->proc->index, v->index, intno);
	uc_emu_stop(uc);
}

/* ---- registers ----------------------------------------------------------------------- */

static uint64_t reg_read(struct vcpu *v, int reg)
{
	uint64_t val = 0;

	uc_reg_read(v->uc, reg, &val);
	if (v->run->m->arch->isa.elf_class == 32)
		val &= 0xffffffffu;
	return val;
}

static void reg_write(struct vcpu *v, int reg, uint64_t val)
{
	uc_reg_write(v->uc, reg, &val);
}

/* ---- the guest's report of a wild access ------------------------------------------------ */

static void describe_insn(struct vcpu *v, uint64_t pc, char *out, size_t n)
{
	const struct ptemu_isa *isa = &v->run->m->arch->isa;
	uint8_t bytes[16];
	csh cs;
	cs_insn *insn;

	snprintf(out, n, "(instruction not readable)");
	if (copy_from_user(v->proc->mm, bytes, pc, sizeof(bytes)) &&
	    copy_from_user(v->proc->mm, bytes, pc, 4))
		return;
	if (cs_open((cs_arch)isa->cs_arch, (cs_mode)isa->cs_mode, &cs) != CS_ERR_OK)
		return;
	if (cs_disasm(cs, bytes, sizeof(bytes), pc, 1, &insn) == 1) {
		snprintf(out, n, "%.31s %.80s", insn->mnemonic, insn->op_str);
		cs_free(insn, 1);
	}
	cs_close(&cs);
}

/* ---- system calls ---------------------------------------------------------------------- */

static struct ptemu_file *object_get(struct run *r, uint64_t key, bool shmem, uint64_t size)
{
	struct ptemu_file *f = NULL;
	uint64_t psize = ptemu_page_size(r->m->arch);

	pthread_mutex_lock(&r->lock);
	for (unsigned i = 0; i < r->nobjects; i++)
		if (r->objects[i].key == key && r->objects[i].shmem == shmem)
			f = r->objects[i].file;
	if (!f && r->nobjects < MAX_OBJECTS && size && size <= (1ull << 32)) {
		size = (size + psize - 1) & ~(psize - 1);
		f = ptemu_file_create(r->m, key, shmem, size, size);
		if (f)
			r->objects[r->nobjects++] = (struct object){ key, shmem, f };
	}
	if (f)
		ptemu_file_get(f);
	pthread_mutex_unlock(&r->lock);
	return f;
}

static int64_t fd_install(struct process *p, struct ptemu_file *f)
{
	int64_t fd = -PTEMU_EMFILE;

	pthread_mutex_lock(&p->fd_lock);
	for (int i = 3; i < MAX_FDS; i++) {
		if (!p->fds[i]) {
			p->fds[i] = f;
			fd = i;
			break;
		}
	}
	pthread_mutex_unlock(&p->fd_lock);
	if (fd < 0)
		ptemu_file_put(f);
	return fd;
}

static struct ptemu_file *fd_file(struct process *p, uint64_t fd)
{
	return fd < MAX_FDS ? p->fds[fd] : NULL;
}

/* Returns false when the vCPU must stop (exit). */
static bool do_syscall(struct vcpu *v)
{
	struct run *r = v->run;
	struct process *p = v->proc;
	const struct ptemu_isa *isa = &r->m->arch->isa;
	uint64_t nr = reg_read(v, isa->reg_sysno), a[6];
	int64_t ret = 0;
	bool go_on = true;

	for (int i = 0; i < 6; i++)
		a[i] = reg_read(v, isa->reg_arg[i]);
	v->syscalls++;
	note_progress(v);
	switch (nr) {
	case PTEMU_SYS_exit:
		return false;
	case PTEMU_SYS_exit_group:
		if (!__atomic_exchange_n(&p->exit_group, 1, __ATOMIC_ACQ_REL))
			__atomic_store_n(&p->exit_code, (int)a[0], __ATOMIC_RELAXED);
		return false;
	case PTEMU_SYS_write: {
		char buf[1024];
		uint64_t len = a[1] < sizeof(buf) ? a[1] : sizeof(buf);

		if (copy_from_user(p->mm, buf, a[0], len)) {
			ret = -PTEMU_EFAULT;
			break;
		}
		if (r->cfg->log) {
			pthread_mutex_lock(&r->lock);
			fprintf(r->cfg->log, "[p%u.v%u] %.*s", p->index, v->index, (int)len, buf);
			if (len && buf[len - 1] != '\n')
				fputc('\n', r->cfg->log);
			pthread_mutex_unlock(&r->lock);
		}
		ret = (int64_t)len;
		break;
	}
	case PTEMU_SYS_mmap:
		if (a[3] & PTEMU_MAP_ANONYMOUS) {
			ret = do_mmap(p->mm, a[0], a[1], (unsigned)a[2], (unsigned)a[3], NULL, a[5]);
		} else {
			struct ptemu_file *f = fd_file(p, a[4]);

			ret = f ? do_mmap(p->mm, a[0], a[1], (unsigned)a[2], (unsigned)a[3], f, a[5])
				: -PTEMU_EINVAL;
		}
		break;
	case PTEMU_SYS_munmap:
		ret = do_munmap(p->mm, a[0], a[1]);
		break;
	case PTEMU_SYS_mprotect:
		ret = do_mprotect(p->mm, a[0], a[1], (unsigned)a[2]);
		break;
	case PTEMU_SYS_madvise:
		ret = do_madvise(p->mm, a[0], a[1], (int)a[2]);
		break;
	case PTEMU_SYS_shm_open:
	case PTEMU_SYS_file_open: {
		struct ptemu_file *f = object_get(r, a[0], nr == PTEMU_SYS_shm_open, a[1]);

		ret = f ? fd_install(p, f) : -PTEMU_ENOMEM;
		break;
	}
	case PTEMU_SYS_ftruncate: {
		struct ptemu_file *f = fd_file(p, a[0]);

		ret = f ? shmem_truncate(f, a[1]) : -PTEMU_EINVAL;
		break;
	}
	case PTEMU_SYS_punch_hole: {
		struct ptemu_file *f = fd_file(p, a[0]);

		ret = f ? shmem_punch_hole(f, a[1], a[2]) : -PTEMU_EINVAL;
		break;
	}
	case PTEMU_SYS_gettid:
		ret = ptemu_current()->id;
		break;
	case PTEMU_SYS_vcpu_id:
		ret = v->index;
		break;
	case PTEMU_SYS_yield:
		/* A guest yields while it waits for another's progress: two such waiters must
		 * not hand the baton only to each other. */
		if (v->deterministic)
			ptemu_sched_spin_wait();
		else
			sched_yield();
		break;
	case PTEMU_SYS_clock:
		/* Logical time when deterministic: the run must not depend on the host. */
		ret = v->deterministic ? (int64_t)ptemu_sched_steps(r->m) :
					 (int64_t)((ptemu_now() - r->start) * 1e9);
		break;
	case PTEMU_SYS_thp_mapped: {
		pmd_t *pmd;

		down_read(&p->mm->mmap_lock);
		pmd = mm_find_pmd(p->mm, a[0]);
		ret = pmd && pmd_trans_huge(pmdp_get_lockless(pmd));
		up_read(&p->mm->mmap_lock);
		break;
	}
	case PTEMU_SYS_report:
		ptemu_report(r->m, VIOLATION_DATA_MISMATCH, a[1],
			     "guest process %u vCPU %u: %#" PRIx64 " holds %#" PRIx64 ", expected %#" PRIx64,
			     p->index, v->index, a[1], a[3], a[2]);
		break;
	case PTEMU_SYS_wait_khugepaged:
		ret = khugepaged_wait_full_scan(p->mm);
		break;
	case PTEMU_SYS_should_stop:
		v->polls++;
		if (v->deterministic)
			ret = ptemu_sched_steps(r->m) >= r->cfg->sched.max_steps || ptemu_should_stop(r->m);
		else
			ret = __atomic_load_n(&r->stop, __ATOMIC_ACQUIRE) || ptemu_now() >= r->deadline ||
			      ptemu_should_stop(r->m);
		break;
	case PTEMU_SYS_param:
		ret = a[0] == PTEMU_PARAM_seed ? (int64_t)r->cfg->seed :
		      a[0] == PTEMU_PARAM_pmd_size ? (int64_t)ptemu_pmd_size(r->m->arch) :
		      a[0] == PTEMU_PARAM_page_size ? (int64_t)ptemu_page_size(r->m->arch) :
		      a[0] == PTEMU_PARAM_ops ? (int64_t)r->cfg->ops :
		      a[0] == PTEMU_PARAM_collapse ? (int64_t)!r->cfg->no_collapse :
		      a[0] == PTEMU_PARAM_thp ? (int64_t)(r->m->arch->pmd_leaf_shift != 0) :
		      a[0] == PTEMU_PARAM_pte_tables_per_page ? (int64_t)r->m->arch->tables_per_page :
		      a[0] == PTEMU_PARAM_tlb_entries ? (int64_t)v->tlb.capacity :
		      -PTEMU_EINVAL;
		break;
	case PTEMU_SYS_bench_mark:
		/* Host time must not reach a deterministic run, not even its statistics. */
		if (a[0] >= PTEMU_BENCH_PHASES)
			ret = -PTEMU_EINVAL;
		else if (!v->deterministic)
			ptemu_bench_mark(&v->marks, a[0], a[1], ptemu_now_ns());
		break;
	default:
		ret = -PTEMU_ENOSYS;
		break;
	}
	check_op_end("syscall");
	reg_write(v, isa->reg_ret, (uint64_t)ret);
	return go_on;
}

/* ---- the vCPU ----------------------------------------------------------------------- */

static int vcpu_create_engine(struct vcpu *v)
{
	struct run *r = v->run;
	const struct ptemu_arch *a = r->m->arch;
	uc_err e;

	e = uc_open((uc_arch)a->isa.uc_arch, (uc_mode)a->isa.uc_mode, &v->uc);
	if (e != UC_ERR_OK)
		return -1;
	if (uc_ctl_tlb_mode(v->uc, UC_TLB_VIRTUAL) != UC_ERR_OK ||
	    uc_mem_map_ptr(v->uc, 0, phys_size(r->m->phys), UC_PROT_ALL, phys_base(r->m->phys)) ||
	    uc_ctl_exits_enable(v->uc) != UC_ERR_OK)
		return -1;
	/* Every hook before the first run: they are compiled into translated blocks. */
	if (uc_hook_add(v->uc, &v->hooks[0], UC_HOOK_TLB_FILL, (void *)tlb_fill_hook, v, 1, 0) ||
	    uc_hook_add(v->uc, &v->hooks[1], UC_HOOK_BLOCK, (void *)block_hook, v, 1, 0) ||
	    uc_hook_add(v->uc, &v->hooks[2], UC_HOOK_INTR, (void *)intr_hook, v, 1, 0))
		return -1;
	if (a->isa.cpu_init && a->isa.cpu_init(v->uc))
		return -1;
	return 0;
}

/* Faults a range in for writing (MAP_POPULATE). Unicorn 2.1.1's s390x block instructions
 * (MVC, XC, CLC) crash the host when their TLB fill is refused, so memory they use
 * without the guest choosing to (stack, image) must never fault. */
static int populate(struct mm_struct *mm, uint64_t start, uint64_t len)
{
	uint64_t psize = ptemu_page_size(mm->machine->arch);
	uint64_t word;

	for (uint64_t a = start & ~(psize - 1); a < start + len; a += psize) {
		int err = copy_from_user(mm, &word, a, sizeof(word)) ||
			  copy_to_user(mm, a, &word, sizeof(word));

		check_op_end("populate");	/* each page's fault is an operation */
		if (err)
			return -1;
	}
	return 0;
}

/* Maps the vCPU's stack and sets the start-up registers of the guest ABI. */
static int vcpu_setup(struct vcpu *v)
{
	const struct ptemu_isa *isa = &v->run->m->arch->isa;
	struct process *p = v->proc;
	int64_t stack = do_mmap(p->mm, 0, STACK_BYTES, PTEMU_PROT_READ | PTEMU_PROT_WRITE,
				PTEMU_MAP_PRIVATE | PTEMU_MAP_ANONYMOUS, NULL, 0);

	if (stack < 0 || populate(p->mm, (uint64_t)stack, STACK_BYTES))
		return -1;
	reg_write(v, isa->reg_sp, (uint64_t)stack + STACK_BYTES - 64 - isa->stack_reserve - isa->stack_bias);
	reg_write(v, isa->reg_arg[0], v->index);
	reg_write(v, isa->reg_arg[1], p->nvcpus);
	reg_write(v, isa->reg_arg[2], p->index);
	reg_write(v, isa->reg_arg[3], v->run->nprocs);
	reg_write(v, isa->reg_pc, v->run->image.entry);
	return 0;
}

static const char *access_name(unsigned fault_flags)
{
	return fault_flags & FAULT_FLAG_WRITE ? "writing" :
	       fault_flags & FAULT_FLAG_INSTRUCTION ? "executing" : "reading";
}

static void vcpu_wild_access(struct vcpu *v, uint64_t pc, unsigned ret)
{
	char insn[128];

	describe_insn(v, pc, insn, sizeof(insn));
	run_fail(v->run, PTEMU_RUN_GUEST_ERROR,
		 "process %u vCPU %u: %s %s the page at 0x%" PRIx64 " (%s), pc 0x%" PRIx64 ": %s",
		 v->proc->index, v->index, ret & VM_FAULT_SIGBUS ? "bus error" : "segmentation fault",
		 access_name(v->fault_flags), v->fault_va,
		 ret & VM_FAULT_OOM ? "out of simulated memory; give more --memory" : "no mapping allows it",
		 pc, insn);
}

/* A fault's event and its instruction's bytes, for traces (dump --disasm). */
static void fold_fault(struct vcpu *v, uint64_t pc)
{
	uint64_t who = (uint64_t)(ptemu_current()->sched_id + 1) << 8;
	uint8_t bytes[16] = { 0 };
	uint64_t lo, hi;

	ptemu_sched_fold(v->run->m, PTEMU_EV_FAULT | who, v->fault_va << 2 | v->fault_flags, pc);
	if (copy_from_user(v->proc->mm, bytes, pc, sizeof(bytes)))
		copy_from_user(v->proc->mm, bytes, pc, 4);
	check_op_end("fault");
	memcpy(&lo, bytes, 8);
	memcpy(&hi, bytes + 8, 8);
	ptemu_sched_fold(v->run->m, PTEMU_EV_INSN | who, lo, hi);
}

/* The same faults again, each resolved by the handler and refused by the walk again:
 * after LIVELOCK_FAULTS in a row at one instruction, on at most LIVELOCK_KEYS accesses,
 * the vCPU can never go on, and the run ends at once. */
static bool fault_livelocked(struct vcpu *v, uint64_t pc)
{
	uint64_t key = v->fault_va | v->fault_flags;	/* page-aligned: the low bits are free */
	bool known = false;

	for (unsigned i = 0; i < v->nlast_fault_keys; i++)
		known |= v->last_fault_keys[i] == key;
	if (!v->same_faults || pc != v->last_fault_pc ||
	    (!known && v->nlast_fault_keys == LIVELOCK_KEYS)) {
		v->last_fault_pc = pc;
		v->nlast_fault_keys = 0;
		v->same_faults = 0;
		known = false;
	}
	if (!known)
		v->last_fault_keys[v->nlast_fault_keys++] = key;
	if (++v->same_faults < LIVELOCK_FAULTS)
		return false;
	char insn[128];

	describe_insn(v, pc, insn, sizeof(insn));
	run_fail(v->run, PTEMU_RUN_GUEST_ERROR,
		 "process %u vCPU %u: livelock: %" PRIu64 " faults in a row at pc 0x%" PRIx64
		 " (%s) on %u access(es), the last %s the page at 0x%" PRIx64 ": the fault handler "
		 "resolves each, the page-table walk refuses the access again", v->proc->index,
		 v->index, v->same_faults, pc, insn, v->nlast_fault_keys, access_name(v->fault_flags),
		 v->fault_va);
	return true;
}

static void vcpu_loop(struct vcpu *v)
{
	struct run *r = v->run;
	const struct ptemu_isa *isa = &r->m->arch->isa;

	for (;;) {
		if (__atomic_load_n(&v->terminate, __ATOMIC_ACQUIRE) ||
		    __atomic_load_n(&v->proc->exit_group, __ATOMIC_ACQUIRE))
			return;
		uint64_t pc = reg_read(v, isa->reg_pc);

		v->fault = false;
		v->syscall = false;
		v->trap = 0;
		__atomic_store_n(&v->activity, ACT_GUEST, __ATOMIC_RELAXED);
		ptemu_tlb_enter_guest(&v->tlb);
		if (v->hw_flush_pending) {
			v->hw_flush_pending = false;
			flush_hw_now(v);
		}
		uc_err e = uc_emu_start(v->uc, pc, 0, 0, 0);

		ptemu_tlb_leave_guest(&v->tlb);
		if (v->fault) {
			pc = reg_read(v, isa->reg_pc);
			if (v->deterministic)
				fold_fault(v, pc);
			v->activity_arg = v->fault_va;
			__atomic_store_n(&v->activity, ACT_FAULT, __ATOMIC_RELAXED);
			note_progress(v);
			double t0 = v->run->cfg->time_faults ? ptemu_now() : 0;
			unsigned ret = ptemu_user_fault(v->proc->mm, v->fault_va, v->fault_flags);

			if (v->run->cfg->time_faults)
				note_fault_time(v, ptemu_now() - t0);
			check_op_end("fault");
			if (ret & VM_FAULT_ERROR) {
				vcpu_wild_access(v, pc, ret);
				return;
			}
			if (fault_livelocked(v, pc))
				return;
			continue;	/* restart at the faulting instruction */
		}
		if (v->syscall) {
			pc = reg_read(v, isa->reg_pc);
			if (!isa->pc_after_syscall)
				pc += isa->syscall_insn_bytes;
			reg_write(v, isa->reg_pc, pc);
			v->activity_arg = reg_read(v, isa->reg_sysno);
			__atomic_store_n(&v->activity, ACT_SYSCALL, __ATOMIC_RELAXED);
			if (v->deterministic)
				ptemu_sched_fold(r->m, PTEMU_EV_SYSCALL | (uint64_t)(ptemu_current()->sched_id + 1) << 8,
						 v->activity_arg, pc);
			v->same_faults = 0;	/* the guest made progress */
			if (!do_syscall(v))
				return;
			continue;
		}
		if (v->trap) {
			char err[256];

			__atomic_store_n(&v->activity, ACT_FAULT, __ATOMIC_RELAXED);
			note_progress(v);
			int rc = isa->handle_trap(v->uc, v->proc->mm, v->trap, err, sizeof(err));

			check_op_end("trap");
			if (rc) {
				run_fail(r, PTEMU_RUN_GUEST_ERROR, "process %u vCPU %u: %s", v->proc->index,
					 v->index, err);
				return;
			}
			continue;
		}
		if (e != UC_ERR_OK) {
			pc = reg_read(v, isa->reg_pc);
			char insn[128];

			describe_insn(v, pc, insn, sizeof(insn));
			run_fail(r, PTEMU_RUN_GUEST_ERROR, "process %u vCPU %u: %s at pc %#" PRIx64 ": %s",
				 v->proc->index, v->index, uc_strerror(e), pc, insn);
			return;
		}
	}
}

static void process_exit(struct process *p)
{
	/* The last vCPU out tears the address space down (exit_mmap). */
	if (__atomic_sub_fetch(&p->alive, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	for (int i = 0; i < MAX_FDS; i++)
		if (p->fds[i])
			ptemu_file_put(p->fds[i]);
	exit_mmap(p->mm);
	/* p->mm keeps its value: other processes' flushes compare against it, racily. */
	p->mm_destroyed = true;
}

static void *vcpu_main(void *arg)
{
	struct vcpu *v = arg;
	char name[32];

	snprintf(name, sizeof(name), "vcpu-%u.%u", v->proc->index, v->index);
	v->thread_rec = ptemu_thread_register(v->run->m, name);
	*current_vcpu() = v;
	vcpu_loop(v);
	__atomic_store_n(&v->activity, ACT_EXITED, __ATOMIC_RELEASE);
	/* Stop being a shootdown target before the engine goes. */
	__atomic_store_n(&v->tlb.mode, VCPU_OUTSIDE_GUEST, __ATOMIC_SEQ_CST);
	*current_vcpu() = NULL;
	process_exit(v->proc);
	ptemu_thread_unregister();
	return NULL;
}

/* ---- the run ---------------------------------------------------------------------------- */

/* Maps the image's loadable segments as private memory and copies them in. */
static int load_image(struct run *r, struct process *p)
{
	const struct ptemu_arch *a = r->m->arch;
	uint64_t psize = ptemu_page_size(a);
	uint64_t mapped_end = 0;

	for (unsigned i = 0; i < r->image.nsegments; i++) {
		const struct ptemu_elf_segment *s = &r->image.segments[i];
		uint64_t start = s->vaddr & ~(psize - 1);
		uint64_t end = (s->vaddr + s->memsz + psize - 1) & ~(psize - 1);

		/* A page shared with the previous segment is already mapped. */
		if (start < mapped_end)
			start = mapped_end;
		if (start < end &&
		    do_mmap(p->mm, start, end - start, PTEMU_PROT_READ | PTEMU_PROT_WRITE,
			    PTEMU_MAP_PRIVATE | PTEMU_MAP_ANONYMOUS | PTEMU_MAP_FIXED, NULL, 0) < 0)
			return -1;
		for (uint64_t off = 0; off < s->filesz;) {
			uint64_t n = psize - ((s->vaddr + off) & (psize - 1));

			if (n > s->filesz - off)
				n = s->filesz - off;
			int err = copy_to_user(p->mm, s->vaddr + off, s->data + off, n);

			check_op_end("image load");	/* each page's fault is an operation */
			if (err)
				return -1;
			off += n;
		}
		if (populate(p->mm, s->vaddr, s->memsz))
			return -1;
		if (end > mapped_end)
			mapped_end = end;
	}
	/* Then the segments' own protections (code is never writable: no self-modifying code). */
	for (unsigned i = 0; i < r->image.nsegments; i++) {
		const struct ptemu_elf_segment *s = &r->image.segments[i];
		uint64_t start = s->vaddr & ~(psize - 1);
		uint64_t end = (s->vaddr + s->memsz + psize - 1) & ~(psize - 1);
		unsigned prot = s->prot;

		for (unsigned j = 0; j < r->image.nsegments; j++) {
			const struct ptemu_elf_segment *o = &r->image.segments[j];

			if (j != i && (o->vaddr & ~(psize - 1)) < end &&
			    ((o->vaddr + o->memsz + psize - 1) & ~(psize - 1)) > start)
				prot |= o->prot;	/* shared pages get both */
		}
		if (do_mprotect(p->mm, start, end - start, prot))
			return -1;
	}
	return 0;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return (x > y) - (x < y);
}

/* Every vCPU's fault times merged: p50, p99, max. */
static void fault_percentiles(struct run *r, struct ptemu_run_result *res)
{
	size_t n = 0, k = 0;

	for (unsigned p = 0; p < r->nprocs; p++)
		for (unsigned i = 0; i < r->procs[p].nvcpus; i++)
			n += r->procs[p].vcpus[i].nfault_ns;
	uint32_t *all = n ? malloc(n * sizeof(*all)) : NULL;

	for (unsigned p = 0; p < r->nprocs; p++)
		for (unsigned i = 0; i < r->procs[p].nvcpus; i++) {
			struct vcpu *v = &r->procs[p].vcpus[i];

			if (all)
				memcpy(all + k, v->fault_ns, v->nfault_ns * sizeof(*all));
			k += v->nfault_ns;
			free(v->fault_ns);
			v->fault_ns = NULL;
		}
	if (!all)
		return;
	qsort(all, n, sizeof(*all), cmp_u32);
	res->faults_timed = n;
	res->fault_p50_ns = all[n / 2];
	res->fault_p99_ns = all[n * 99 / 100];
	res->fault_max_ns = all[n - 1];
	free(all);
}

/* khugepaged's end: every vCPU gone, or the run's bound reached (in steps when
 * deterministic, so that the thread's last step does not depend on wall-clock time). */
static bool khugepaged_run_over(void *ctx)
{
	struct run *r = ctx;
	bool any = false;

	/* It starts before the vCPUs: no process alive yet is not the end. */
	for (unsigned p = 0; p < r->nprocs; p++)
		any |= __atomic_load_n(&r->procs[p].alive, __ATOMIC_ACQUIRE) > 0;
	if (!any && __atomic_load_n(&r->launched, __ATOMIC_ACQUIRE))
		return true;
	if (r->cfg->deterministic)
		return ptemu_sched_steps(r->m) >= r->cfg->sched.max_steps;
	return __atomic_load_n(&r->stop, __ATOMIC_ACQUIRE) || ptemu_now() >= r->deadline;
}

static uint64_t run_progress(struct run *r)
{
	uint64_t sum = 0;

	for (unsigned p = 0; p < r->nprocs; p++)
		for (unsigned i = 0; i < r->procs[p].nvcpus; i++)
			sum += __atomic_load_n(&r->procs[p].vcpus[i].progress, __ATOMIC_RELAXED);
	return sum;
}

static const char *syscall_name(uint64_t nr)
{
	static const char *const names[PTEMU_SYS_count] = {
		[PTEMU_SYS_exit] = "exit", [PTEMU_SYS_exit_group] = "exit_group",
		[PTEMU_SYS_write] = "write", [PTEMU_SYS_mmap] = "mmap", [PTEMU_SYS_munmap] = "munmap",
		[PTEMU_SYS_mprotect] = "mprotect", [PTEMU_SYS_madvise] = "madvise",
		[PTEMU_SYS_shm_open] = "shm_open", [PTEMU_SYS_file_open] = "file_open",
		[PTEMU_SYS_ftruncate] = "ftruncate", [PTEMU_SYS_punch_hole] = "punch_hole",
		[PTEMU_SYS_gettid] = "gettid", [PTEMU_SYS_vcpu_id] = "vcpu_id",
		[PTEMU_SYS_yield] = "yield", [PTEMU_SYS_clock] = "clock",
		[PTEMU_SYS_thp_mapped] = "thp_mapped", [PTEMU_SYS_report] = "report",
		[PTEMU_SYS_wait_khugepaged] = "wait_khugepaged", [PTEMU_SYS_should_stop] = "should_stop",
		[PTEMU_SYS_param] = "param", [PTEMU_SYS_bench_mark] = "bench_mark",
	};

	return nr < PTEMU_SYS_count && names[nr] ? names[nr] : "an unknown syscall";
}

/* The hang report: what every vCPU was doing and which locks it held. The records are
 * read racily on purpose: the threads are stuck, or this is only a snapshot. */
static void report_hang(struct run *r, const char *why)
{
	static const char *const what[] = { "starting", "in guest mode", "in syscall",
					    "in a fault", "exited" };
	char buf[1024];
	size_t n = 0;

	for (unsigned p = 0; p < r->nprocs; p++) {
		for (unsigned i = 0; i < r->procs[p].nvcpus && n < sizeof(buf) - 1; i++) {
			struct vcpu *v = &r->procs[p].vcpus[i];
			int act = __atomic_load_n(&v->activity, __ATOMIC_RELAXED);
			struct ptemu_thread *t = v->thread_rec;

			n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%u.%u %s", n ? "; " : "", p,
					      i, what[act]);
			if (act == ACT_SYSCALL && n < sizeof(buf) - 1)
				n += (size_t)snprintf(buf + n, sizeof(buf) - n, " %s", syscall_name(v->activity_arg));
			if (act == ACT_FAULT && n < sizeof(buf) - 1)
				n += (size_t)snprintf(buf + n, sizeof(buf) - n, " %#" PRIx64, v->activity_arg);
			if (t && act != ACT_EXITED) {
				for (int l = 0; l < t->nr_held && n < sizeof(buf) - 1; l++)
					n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%s",
							      l ? "," : " holding ",
							      ptemu_lock_class_name(t->held[l].lclass));
				if (t->rcu_depth && n < sizeof(buf) - 1)
					n += (size_t)snprintf(buf + n, sizeof(buf) - n, " rcu %d", t->rcu_depth);
			}
		}
	}
	ptemu_report(r->m, VIOLATION_HANG, 0, "%s: %s", why, buf);
	if (r->cfg->log)
		fprintf(r->cfg->log, "ptemu: hang: %s\n", buf);
}

enum ptemu_run_error ptemu_run(const struct ptemu_run_config *cfg, struct ptemu_machine **machine_out,
			       struct ptemu_run_result *res)
{
	struct run *r = calloc(1, sizeof(*r));
	struct ptemu_machine_config mc = {
		.arch = cfg->arch,
		.phys_bytes = cfg->phys_bytes,
		.tlb_entries = cfg->tlb_entries,
		.check_mode = cfg->check_mode,
		.inject = cfg->inject,
		.protocol = cfg->protocol,
		.features = cfg->features,
		.log = cfg->log,
	};
	char err[256];
	enum ptemu_run_error status;

	memset(res, 0, sizeof(*res));
	*machine_out = NULL;
	if (!r) {
		snprintf(res->message, sizeof(res->message), "out of host memory");
		return res->error = PTEMU_RUN_INTERNAL;
	}
	r->cfg = cfg;
	pthread_mutex_init(&r->lock, NULL);
	if (ptemu_check_unicorn(err, sizeof(err))) {
		snprintf(res->message, sizeof(res->message), "%s", err);
		free(r);
		return res->error = PTEMU_RUN_INTERNAL;
	}
	if (!cfg->procs || cfg->procs > MAX_PROCS || !cfg->vcpus || cfg->vcpus > MAX_VCPUS) {
		snprintf(res->message, sizeof(res->message), "--procs and --vcpus must be in 1..%d",
			 MAX_VCPUS);
		free(r);
		return res->error = PTEMU_RUN_BAD_INPUT;
	}
	if (!cfg->arch->isa.reg_sysno && !cfg->arch->isa.reg_pc) {
		snprintf(res->message, sizeof(res->message),
			 "model %s has no guest ISA support yet", cfg->arch->name);
		free(r);
		return res->error = PTEMU_RUN_BAD_INPUT;
	}
	if (ptemu_elf_load_for(cfg->arch, cfg->image_path, &r->image, err, sizeof(err))) {
		snprintf(res->message, sizeof(res->message), "%s", err);
		free(r);
		return res->error = PTEMU_RUN_BAD_INPUT;
	}
	res->image_hash = r->image.hash;
	r->m = ptemu_machine_create(&mc, err, sizeof(err));
	if (!r->m) {
		snprintf(res->message, sizeof(res->message), "%s", err);
		ptemu_elf_free(&r->image);
		free(r);
		return res->error = PTEMU_RUN_BAD_INPUT;
	}
	*machine_out = r->m;
	r->m->tlb = (struct ptemu_tlb_ops){
		.flush_range = run_flush_range,
		.ipi_all = run_ipi_all,
		.pages_freed = run_pages_freed,
		.table_freed = run_table_freed,
		.ctx = r,
	};
	ptemu_thread_register(r->m, "main");
	r->nprocs = cfg->procs;

	/* Processes: an mm each, the image loaded, the vCPUs' engines and stacks. */
	for (unsigned pi = 0; pi < r->nprocs && r->error == PTEMU_RUN_OK; pi++) {
		struct process *p = &r->procs[pi];

		p->run = r;
		p->index = pi;
		p->nvcpus = cfg->vcpus;
		pthread_mutex_init(&p->fd_lock, NULL);
		p->mm = mm_alloc(r->m);
		/* The run's own reference: other processes' page frees look into this mm's
		 * translation caches (run_pages_freed) while it may be exiting. */
		if (p->mm)
			mmgrab(p->mm);
		int loaded = p->mm ? load_image(r, p) : -1;

		check_op_end("image load");
		if (loaded) {
			run_fail(r, PTEMU_RUN_INTERNAL, "process %u: cannot load %s into the model "
				 "(out of simulated memory?)", pi, cfg->image_path);
			break;
		}
		for (unsigned vi = 0; vi < p->nvcpus; vi++) {
			struct vcpu *v = &p->vcpus[vi];

			v->run = r;
			v->proc = p;
			v->index = vi;
			v->global = pi * cfg->vcpus + vi;
			v->walk.read_entry = vcpu_read_entry;
			v->walk.opaque = v;
			for (unsigned l = 0; l < ptemu_pmd_level(r->m->arch); l++)
				v->cached_upper[l] = r->m->arch->mk_table(
					l, (uint64_t)ptemu_page_size(r->m->arch) << 4);
			int ok = !ptemu_tlb_init(&v->tlb, r->m) && !vcpu_create_engine(v) && !vcpu_setup(v);

			check_op_end("vCPU set-up");
			if (!ok) {
				run_fail(r, PTEMU_RUN_INTERNAL, "process %u vCPU %u: cannot set up "
					 "the Unicorn engine", pi, vi);
				break;
			}
			v->tlb.flush_hw = flush_hw;
			v->tlb.flush_ctx = v;
		}
	}
	if (cfg->deterministic && r->error == PTEMU_RUN_OK) {
		/* The main thread registered before the scheduler exists: it only watches. */
		if (ptemu_sched_create(r->m, &cfg->sched))
			run_fail(r, PTEMU_RUN_INTERNAL, "cannot start the deterministic scheduler");
	}
	/* khugepaged first: a guest's first MADV_HUGEPAGE must find it to register with. Then
	 * every vCPU (registered one by one, so that scheduler ids never depend on timing),
	 * then watch. */
	unsigned nstarted = 0;

	/* The run's time starts with its vCPUs: setting up 256 of them takes seconds. A
	 * deterministic run ends by steps, never by time. */
	r->start = ptemu_now();
	r->deadline = cfg->deterministic ? 1e300 : r->start + cfg->seconds;

	if (cfg->khugepaged && r->error == PTEMU_RUN_OK) {
		struct khugepaged_tunables t = {
			.scan_sleep_ms = cfg->scan_sleep_ms > 0 ? cfg->scan_sleep_ms : 10,
			.pages_to_scan = cfg->pages_to_scan,
			.max_ptes_none = cfg->max_ptes_none,
			.should_stop = khugepaged_run_over,
			.ctx = r,
		};

		t.scan_sleep_steps = (uint64_t)(t.scan_sleep_ms * 100);
		if (khugepaged_start(r->m, &t))
			run_fail(r, PTEMU_RUN_INTERNAL, "cannot start the khugepaged thread");
		else if (r->m->khugepaged)	/* none without THP */
			ptemu_sched_wait_threads(r->m, 1 + ++nstarted);
	}

	for (unsigned pi = 0; pi < r->nprocs && r->error == PTEMU_RUN_OK; pi++) {
		struct process *p = &r->procs[pi];

		/* Every vCPU counts from the start: one that exits before the next is created
		 * must not be the last out, or it would tear the mm down under the others. */
		__atomic_store_n(&p->alive, (int)p->nvcpus, __ATOMIC_RELEASE);
		for (unsigned vi = 0; vi < p->nvcpus; vi++) {
			p->vcpus[vi].deterministic = cfg->deterministic;
			__atomic_store_n(&p->vcpus[vi].started, true, __ATOMIC_RELEASE);
			if (pthread_create(&p->vcpus[vi].thread, NULL, vcpu_main, &p->vcpus[vi])) {
				__atomic_store_n(&p->vcpus[vi].started, false, __ATOMIC_RELEASE);
				/* The ones never created are out; if no created one is left, the
				 * mm is the main thread's to tear down (below, after the joins). */
				__atomic_sub_fetch(&p->alive, (int)(p->nvcpus - vi), __ATOMIC_ACQ_REL);
				run_fail(r, PTEMU_RUN_INTERNAL, "cannot start a vCPU thread");
				break;
			}
			ptemu_sched_wait_threads(r->m, 1 + ++nstarted);
		}
	}
	__atomic_store_n(&r->launched, 1, __ATOMIC_RELEASE);
	ptemu_sched_start(r->m);
	double watchdog = cfg->watchdog_seconds > 0 ? cfg->watchdog_seconds : 10.0;
	uint64_t nvcpus_total = (uint64_t)cfg->procs * cfg->vcpus;
	double last_change = ptemu_now(), ending = 0, last_exit = 0;
	uint64_t last_progress = 0;
	long last_alive = -1;

	for (;;) {
		long alive = 0;

		for (unsigned pi = 0; pi < r->nprocs; pi++)
			alive += __atomic_load_n(&r->procs[pi].alive, __ATOMIC_ACQUIRE);
		if (!alive)
			break;
		double t = ptemu_now();
		uint64_t progress = run_progress(r);

		if (alive != last_alive) {
			last_alive = alive;
			last_exit = t;
		}

		if (progress != last_progress) {
			last_progress = progress;
			last_change = t;
		}
		if (t >= r->deadline)
			__atomic_store_n(&r->stop, 1, __ATOMIC_RELEASE);
		if (cfg->exit_after > 0 && t >= r->start + cfg->exit_after && r->nprocs > 1) {
			struct process *victim = &r->procs[r->nprocs - 1];

			if (!__atomic_exchange_n(&victim->exit_group, 1, __ATOMIC_ACQ_REL)) {
				__atomic_store_n(&victim->exit_code, 137, __ATOMIC_RELAXED);
				victim->killed = true;
			}
		}
		/* The grace starts again at each vCPU's exit: hundreds of vCPUs on a few host
		 * CPUs take a while to all see the stop, while none may ignore it. */
		if (!ending && t >= r->deadline + GRACE_SECONDS && t >= last_exit + GRACE_SECONDS) {
			run_fail(r, PTEMU_RUN_GUEST_ERROR, "the guest did not stop within %.0f s of "
				 "the end of the run (it must poll should_stop)", GRACE_SECONDS);
			ending = t;
		}
		if (!ending && ptemu_sched_deadlocked(r->m)) {
			run_fail(r, PTEMU_RUN_GUEST_ERROR, "deadlock (see the hang violation)");
			ending = t;
		}
		/* Deterministic runs end by steps: guests that never reach should_stop (a
		 * vCPU faulting forever at one instruction, say) are a livelock. Each vCPU
		 * takes its own steps to finish its operation and see the stop (a 16x16
		 * shmem-stress run past its bound takes about 1.2 million). */
		if (!ending && cfg->deterministic &&
		    ptemu_sched_steps(r->m) > 4 * cfg->sched.max_steps + 1000000 +
						      LIVELOCK_STEPS_PER_VCPU * nvcpus_total) {
			char why[128];

			snprintf(why, sizeof(why), "livelock: %" PRIu64 " steps and the guests have not "
				 "stopped (bound %" PRIu64 ")", ptemu_sched_steps(r->m), cfg->sched.max_steps);
			report_hang(r, why);
			run_fail(r, PTEMU_RUN_GUEST_ERROR, "%s", why);
			for (unsigned pi = 0; pi < r->nprocs; pi++)
				for (unsigned vi = 0; vi < r->procs[pi].nvcpus; vi++)
					__atomic_store_n(&r->procs[pi].vcpus[vi].terminate, 1, __ATOMIC_RELEASE);
			ending = t;
		}
		if (!ending && t - last_change >= watchdog) {
			char why[64];

			snprintf(why, sizeof(why), "no vCPU made progress for %.0f s", t - last_change);
			report_hang(r, why);
			run_fail(r, PTEMU_RUN_GUEST_ERROR, "hang: no progress for %.0f s", t - last_change);
			ending = t;
		}
		if (ending && t - ending >= GRACE_SECONDS) {
			/* Threads stuck in the model cannot be joined: leave everything as it is
			 * for the caller, who must exit without tearing the machine down. */
			res->hung = true;
			res->error = r->error;
			snprintf(res->message, sizeof(res->message), "%.400s; vCPU threads are stuck",
				 r->message);
			return r->error;
		}
		struct timespec ts = { 0, 5 * 1000 * 1000 };

		nanosleep(&ts, NULL);
	}
	/* Every thread first: an exiting process still checks the others' TLBs, and leaves
	 * its khugepaged slot. */
	for (unsigned pi = 0; pi < r->nprocs; pi++)
		for (unsigned vi = 0; vi < r->procs[pi].nvcpus; vi++)
			if (r->procs[pi].vcpus[vi].started)
				pthread_join(r->procs[pi].vcpus[vi].thread, NULL);
	khugepaged_stop(r->m);
	/* Callbacks still queued (retracted tables) check the vCPUs' walk caches: let them
	 * run while those exist. The scheduler's RCU thread drains its own. */
	if (r->m->sched) {
		ptemu_sched_destroy(r->m, &res->digest, &res->steps);
	} else {
		rcu_barrier();
	}
	fault_percentiles(r, res);
	for (unsigned pi = 0; pi < r->nprocs; pi++) {
		struct process *p = &r->procs[pi];

		for (unsigned vi = 0; vi < p->nvcpus; vi++) {
			struct vcpu *v = &p->vcpus[vi];

			res->instructions += v->block_bytes / 4;
			res->blocks += v->blocks;
			res->tlb_fills += v->fills;
			ptemu_stat_add(&r->m->stats, PTEMU_STAT_hw_walks, v->fills);
			ptemu_stat_add(&r->m->stats, PTEMU_STAT_hw_refills, v->hw_refills);
			ptemu_stat_add(&r->m->stats, PTEMU_STAT_hw_flushes, v->hw_flushes);
			res->syscalls += v->syscalls;
			res->polls += v->polls;
			for (int ph = 0; ph < PTEMU_BENCH_MARK_PHASES; ph++) {
				res->marks.ns[ph] += v->marks.ns[ph];
				res->marks.accesses[ph] += v->marks.accesses[ph];
			}
			if (v->uc)
				uc_close(v->uc);
			ptemu_tlb_destroy(&v->tlb);
		}
		if (p->mm && !p->mm_destroyed) {
			/* Never started: tear down here. */
			for (int i = 0; i < MAX_FDS; i++)
				if (p->fds[i])
					ptemu_file_put(p->fds[i]);
			mm_destroy(p->mm);
		}
		if (p->mm)
			mmdrop(p->mm);
		res->exit_codes[pi] = p->exit_code;
		/* A guest that gave up (its runtime's die(), a failed check) is no clean run. */
		if (p->exit_code && !p->killed)
			run_fail(r, PTEMU_RUN_GUEST_ERROR, "process %u exited with status %d", pi,
				 p->exit_code);
		pthread_mutex_destroy(&p->fd_lock);
	}
	r->m->tlb = (struct ptemu_tlb_ops){ 0 };
	for (unsigned i = 0; i < r->nobjects; i++)
		ptemu_file_put(r->objects[i].file);
	rcu_barrier();
	check_leaks(r->m, 0);
	ptemu_thread_unregister();
	res->elapsed = ptemu_now() - r->start;
	res->shootdowns = r->shootdowns;
	res->error = r->error;
	snprintf(res->message, sizeof(res->message), "%s", r->message);
	status = r->error;
	ptemu_elf_free(&r->image);
	pthread_mutex_destroy(&r->lock);
	free(r);
	return status;
}
