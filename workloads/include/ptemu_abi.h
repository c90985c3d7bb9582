/* The guest ABI of ptemu: system call numbers, flags and the layout of what the host
 * hands a vCPU at start. Shared verbatim by the host (core/) and the guest runtime
 * (workloads/), so that the two can never disagree. Freestanding: no libc types.
 *
 * Calling convention per ISA (the native system-call instruction, Linux's registers):
 *   aarch64  svc #0        number x8,  args x0-x5,  result x0
 *   arm      svc #0        number r7,  args r0-r5,  result r0
 *   s390x    svc 0         number r1,  args r2-r7,  result r2
 *   sparc64  ta 0x6d       number g1,  args o0-o5,  result o0
 *   ppc64    sc            number r0,  args r3-r8,  result r3
 * Results are >= 0 on success and a negative PTEMU_E* code on failure (no carry/SO flag).
 *
 * Start-up: every vCPU of a process starts at the ELF entry with
 *   arg0 = vCPU index within its process, arg1 = vCPUs in the process,
 *   arg2 = process index, arg3 = number of processes,
 * in the first four argument registers above (aarch64 x0-x3, arm r0-r3, s390x r2-r5,
 * sparc64 o0-o3, ppc64 r3-r6), and a 16-byte aligned stack pointer inside its own stack
 * (sparc64: with the 2047 bias applied, and a 176-byte register save area reserved).
 */
#ifndef PTEMU_ABI_H
#define PTEMU_ABI_H

enum ptemu_sys {
	PTEMU_SYS_exit = 0,		/* (code): this vCPU ends; the process ends with its last */
	PTEMU_SYS_exit_group = 1,	/* (code): the whole process exits now (exit_mmap) */
	PTEMU_SYS_write = 2,		/* (buf, len): to the run log; returns len */
	PTEMU_SYS_mmap = 3,		/* (addr, len, prot, flags, fd, offset): address */
	PTEMU_SYS_munmap = 4,		/* (addr, len) */
	PTEMU_SYS_mprotect = 5,		/* (addr, len, prot) */
	PTEMU_SYS_madvise = 6,		/* (addr, len, advice) */
	PTEMU_SYS_shm_open = 7,		/* (key, size): fd of the shmem object named key,
					 * created with size if it does not exist */
	PTEMU_SYS_file_open = 8,	/* (key, size): fd of a read-only regular file whose
					 * contents are ptemu_file_word(key, offset) */
	PTEMU_SYS_ftruncate = 9,	/* (fd, size): shmem only */
	PTEMU_SYS_punch_hole = 10,	/* (fd, offset, len): shmem only, page-aligned */
	PTEMU_SYS_gettid = 11,		/* (): a run-wide thread id */
	PTEMU_SYS_vcpu_id = 12,		/* (): index of this vCPU in its process */
	PTEMU_SYS_yield = 13,		/* (): let others run (a scheduling point) */
	PTEMU_SYS_clock = 14,		/* (): logical time, monotonic, in scheduler steps or ns */
	PTEMU_SYS_thp_mapped = 15,	/* (addr): 1 if addr is mapped by a PMD leaf, else 0 */
	PTEMU_SYS_report = 16,		/* (kind, addr, expected, got): a guest-detected mismatch */
	PTEMU_SYS_wait_khugepaged = 17,	/* (): returns after khugepaged's next full scan;
					 * -ENOSYS without khugepaged, -ESRCH at once when
					 * this process has not registered with it (no
					 * MADV_HUGEPAGE on a range it may collapse) */
	PTEMU_SYS_should_stop = 18,	/* (): 1 once the run's --seconds/--ops bound is reached */
	PTEMU_SYS_param = 19,		/* (key): a run parameter, PTEMU_PARAM_* */
	PTEMU_SYS_bench_mark = 20,	/* (phase, accesses): the host's clock is read; the time
					 * since the previous mark goes to `phase`, with that
					 * many accesses (PTEMU_BENCH_*). Free-running only: a
					 * deterministic run ignores it */
	PTEMU_SYS_count
};

/* PTEMU_SYS_param keys. */
enum ptemu_param {
	PTEMU_PARAM_seed = 0,		/* the run's seed */
	PTEMU_PARAM_pmd_size = 1,	/* bytes mapped by one PMD of the model (THP size) */
	PTEMU_PARAM_page_size = 2,	/* base page size of the model */
	PTEMU_PARAM_ops = 3,		/* the --ops bound, 0 if none */
	PTEMU_PARAM_collapse = 4,	/* 1: the workload may ask for MADV_COLLAPSE (0 in benchmarks) */
	PTEMU_PARAM_thp = 5,		/* 1: the model has PMD THP; else MADV_HUGEPAGE, NOHUGEPAGE and
					 * COLLAPSE fail with EINVAL, as without CONFIG_TRANSPARENT_HUGEPAGE */
	PTEMU_PARAM_pte_tables_per_page = 6,	/* PTE tables sharing one page: 1; 2 on s390;
						 * powerpc's fragments: 16 (hash), 256 (radix) */
	PTEMU_PARAM_tlb_entries = 7,	/* this vCPU's logical TLB entries */
};

/* PTEMU_SYS_bench_mark phases. */
enum ptemu_bench_phase {
	PTEMU_BENCH_setup = 0,		/* not measured: only starts the next interval */
	PTEMU_BENCH_hits = 1,		/* accesses that hit every TLB */
	PTEMU_BENCH_misses = 2,		/* the same accesses, each a TLB miss */
	PTEMU_BENCH_PHASES
};

/* PTEMU_SYS_report kinds. */
enum ptemu_report_kind {
	PTEMU_REPORT_data_mismatch = 1,	/* addr held `got`, the oracle says `expected` */
};

/* mmap prot, flags; madvise advice (Linux's values). */
#define PTEMU_PROT_NONE 0x0
#define PTEMU_PROT_READ 0x1
#define PTEMU_PROT_WRITE 0x2
#define PTEMU_PROT_EXEC 0x4
#define PTEMU_MAP_SHARED 0x01
#define PTEMU_MAP_PRIVATE 0x02
#define PTEMU_MAP_FIXED 0x10
#define PTEMU_MAP_ANONYMOUS 0x20
#define PTEMU_MADV_DONTNEED 4
#define PTEMU_MADV_HUGEPAGE 14
#define PTEMU_MADV_NOHUGEPAGE 15
#define PTEMU_MADV_COLLAPSE 25

/* Error results (Linux's errno values, negated by the host). */
#define PTEMU_EPERM 1
#define PTEMU_ENOENT 2
#define PTEMU_ESRCH 3
#define PTEMU_EAGAIN 11
#define PTEMU_ENOMEM 12
#define PTEMU_EACCES 13
#define PTEMU_EFAULT 14
#define PTEMU_EBUSY 16
#define PTEMU_EEXIST 17
#define PTEMU_EINVAL 22
#define PTEMU_EMFILE 24
#define PTEMU_ENOSYS 38

/* The contents of read-only file `key`: the 64-bit word at byte offset `off` (a multiple
 * of 8), in the guest's byte order. Host and guest compute the same value. */
static inline unsigned long long ptemu_file_word(unsigned long long key, unsigned long long off)
{
	return (0x9E3779B97F4A7C15ull * (key + 1)) ^ (off * 0xD6E8FEB86659FD93ull) ^ off;
}

#endif
