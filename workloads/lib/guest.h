/* The guest library of ptemu workloads: freestanding, no libc, no system headers.
 *
 * Everything a workload needs: fixed-size types, one inline wrapper per guest system call
 * (all going through the per-ISA stub ptemu_syscall6 in rt/<isa>/crt0.S), atomics, a
 * xorshift PRNG and a tiny formatter for the write syscall. See workloads/README.md.
 *
 * sparc64 note: every non-leaf function costs a register window, and each window trap is
 * handled by the host outside guest mode, so keep call chains shallow (README.md,
 * "sparc64 call depth").
 * The wrappers here are inline and ptemu_syscall6 is a leaf, so a system call costs no
 * window.
 */
#ifndef PTEMU_GUEST_H
#define PTEMU_GUEST_H

#include "ptemu_abi.h"

typedef __UINT8_TYPE__ u8;
typedef __UINT16_TYPE__ u16;
typedef __UINT32_TYPE__ u32;
typedef __UINT64_TYPE__ u64;
typedef __INT64_TYPE__ i64;
typedef __UINTPTR_TYPE__ uptr;
typedef __SIZE_TYPE__ size_t;

#define NULL ((void *)0)
#define GUEST_WORD_BITS (8 * (int)sizeof(long))
#define noinline __attribute__((noinline))
#define always_inline inline __attribute__((always_inline))
#define unlikely(x) __builtin_expect(!!(x), 0)

/* ---- system calls ------------------------------------------------------------------- */

/* The native system-call instruction, in rt/<isa>/crt0.S. A leaf on every ISA. */
long ptemu_syscall6(long nr, long a0, long a1, long a2, long a3, long a4, long a5);

/* Results: >= 0 success, -PTEMU_E* failure. mmap returns an address, which on 32-bit arm
 * may be above 2 GiB and so negative as a long: test with sys_failed(), as Linux does. */
static inline int sys_failed(long r)
{
	return (unsigned long)r >= (unsigned long)-4095L;
}

static inline long sys_exit(long code)
{
	return ptemu_syscall6(PTEMU_SYS_exit, code, 0, 0, 0, 0, 0);
}
static inline long sys_exit_group(long code)
{
	return ptemu_syscall6(PTEMU_SYS_exit_group, code, 0, 0, 0, 0, 0);
}
static inline long sys_write(const void *buf, unsigned long len)
{
	return ptemu_syscall6(PTEMU_SYS_write, (long)buf, (long)len, 0, 0, 0, 0);
}
static inline long sys_mmap(void *addr, unsigned long len, long prot, long flags, long fd,
			    unsigned long off)
{
	return ptemu_syscall6(PTEMU_SYS_mmap, (long)addr, (long)len, prot, flags, fd, (long)off);
}
static inline long sys_munmap(void *addr, unsigned long len)
{
	return ptemu_syscall6(PTEMU_SYS_munmap, (long)addr, (long)len, 0, 0, 0, 0);
}
static inline long sys_mprotect(void *addr, unsigned long len, long prot)
{
	return ptemu_syscall6(PTEMU_SYS_mprotect, (long)addr, (long)len, prot, 0, 0, 0);
}
static inline long sys_madvise(void *addr, unsigned long len, long advice)
{
	return ptemu_syscall6(PTEMU_SYS_madvise, (long)addr, (long)len, advice, 0, 0, 0);
}
static inline long sys_shm_open(long key, unsigned long size)
{
	return ptemu_syscall6(PTEMU_SYS_shm_open, key, (long)size, 0, 0, 0, 0);
}
static inline long sys_file_open(long key, unsigned long size)
{
	return ptemu_syscall6(PTEMU_SYS_file_open, key, (long)size, 0, 0, 0, 0);
}
static inline long sys_ftruncate(long fd, unsigned long size)
{
	return ptemu_syscall6(PTEMU_SYS_ftruncate, fd, (long)size, 0, 0, 0, 0);
}
static inline long sys_punch_hole(long fd, unsigned long off, unsigned long len)
{
	return ptemu_syscall6(PTEMU_SYS_punch_hole, fd, (long)off, (long)len, 0, 0, 0);
}
static inline long sys_gettid(void)
{
	return ptemu_syscall6(PTEMU_SYS_gettid, 0, 0, 0, 0, 0, 0);
}
static inline long sys_vcpu_id(void)
{
	return ptemu_syscall6(PTEMU_SYS_vcpu_id, 0, 0, 0, 0, 0, 0);
}
static inline long sys_yield(void)
{
	return ptemu_syscall6(PTEMU_SYS_yield, 0, 0, 0, 0, 0, 0);
}
static inline long sys_clock(void)
{
	return ptemu_syscall6(PTEMU_SYS_clock, 0, 0, 0, 0, 0, 0);
}
static inline long sys_thp_mapped(const void *addr)
{
	return ptemu_syscall6(PTEMU_SYS_thp_mapped, (long)addr, 0, 0, 0, 0, 0);
}
/* On 32-bit arm expected/got carry 32 bits: compare 64-bit data as two halves (check_u64). */
static inline long sys_report(long kind, const volatile void *addr, unsigned long expected,
			      unsigned long got)
{
	return ptemu_syscall6(PTEMU_SYS_report, kind, (long)addr, (long)expected, (long)got, 0, 0);
}
static inline long sys_wait_khugepaged(void)
{
	return ptemu_syscall6(PTEMU_SYS_wait_khugepaged, 0, 0, 0, 0, 0, 0);
}
static inline long sys_should_stop(void)
{
	return ptemu_syscall6(PTEMU_SYS_should_stop, 0, 0, 0, 0, 0, 0);
}
static inline long sys_param(long key)
{
	return ptemu_syscall6(PTEMU_SYS_param, key, 0, 0, 0, 0, 0);
}
static inline long sys_bench_mark(long phase, unsigned long accesses)
{
	return ptemu_syscall6(PTEMU_SYS_bench_mark, phase, (long)accesses, 0, 0, 0, 0);
}

/* ---- memory ------------------------------------------------------------------------- */

/* clang may emit calls to these (struct copies, zeroing); lib/guest.c defines them. */
void *memset(void *dst, int c, size_t n);
void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);

/* Shared-memory accesses: every word another vCPU may touch goes through these. */
static inline u32 ld32(const volatile u32 *p)
{
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}
static inline u32 ld32_acq(const volatile u32 *p)
{
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}
static inline void st32(volatile u32 *p, u32 v)
{
	__atomic_store_n(p, v, __ATOMIC_RELAXED);
}
static inline void st32_rel(volatile u32 *p, u32 v)
{
	__atomic_store_n(p, v, __ATOMIC_RELEASE);
}
static inline u32 add32(volatile u32 *p, u32 v)	/* returns the new value */
{
	return __atomic_add_fetch(p, v, __ATOMIC_SEQ_CST);
}
static inline unsigned long ldw(const volatile unsigned long *p)
{
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}
static inline unsigned long ldw_acq(const volatile unsigned long *p)
{
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}
static inline void stw(volatile unsigned long *p, unsigned long v)
{
	__atomic_store_n(p, v, __ATOMIC_RELAXED);
}
static inline void stw_rel(volatile unsigned long *p, unsigned long v)
{
	__atomic_store_n(p, v, __ATOMIC_RELEASE);
}
static inline unsigned long addw(volatile unsigned long *p, unsigned long v)
{
	return __atomic_add_fetch(p, v, __ATOMIC_SEQ_CST);
}
/* A 64-bit word of private or read-only data (two 32-bit loads on arm: never torn there,
 * as nobody writes it concurrently). */
static inline u64 ld64_plain(const volatile u64 *p)
{
	return *p;
}

static inline unsigned long round_up(unsigned long x, unsigned long a)	/* a: power of 2 */
{
	return (x + a - 1) & ~(a - 1);
}

/* ---- PRNG: xorshift64* -------------------------------------------------------------- */

struct rng {
	u64 s;
};

static inline u64 mix64(u64 x)	/* splitmix64's finaliser: a bijection */
{
	x ^= x >> 30;
	x *= 0xBF58476D1CE4E5B9ull;
	x ^= x >> 27;
	x *= 0x94D049BB133111EBull;
	x ^= x >> 31;
	return x;
}
static inline void rng_seed(struct rng *r, u64 seed, u64 stream)
{
	r->s = mix64(seed ^ mix64(stream + 0x9E3779B97F4A7C15ull));
	if (r->s == 0)
		r->s = 1;
}
static inline u64 rng_next(struct rng *r)
{
	u64 x = r->s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	r->s = x;
	return x * 0x2545F4914F6CDD1Dull;
}
/* Uniform in [0, n) for n < 2^32, by multiply-high: no division. */
static inline u32 rng_below(struct rng *r, u32 n)
{
	return (u32)(((rng_next(r) >> 32) * (u64)n) >> 32);
}

/* ---- formatter for sys_write --------------------------------------------------------- */

#define FMT_CAP 200
/* The buffer is volatile so that no byte copy into it becomes a memory-to-memory
 * instruction: Unicorn 2.1.1 crashes the host when s390x MVC/XC/CLC need a TLB fill
 * (workloads/README.md). */
struct fmt {
	unsigned n;
	volatile char b[FMT_CAP];
};

/* Leaf functions in lib/guest.c (no window on sparc64), except fmt_flush (one window). */
void fmt_init(struct fmt *f);
void fmt_str(struct fmt *f, const char *s);
void fmt_char(struct fmt *f, char c);
void fmt_u64(struct fmt *f, u64 v);
void fmt_i64(struct fmt *f, i64 v);
void fmt_hex(struct fmt *f, u64 v);	/* 0x-prefixed, no leading zeros */
long fmt_flush(struct fmt *f);		/* sys_write of the text, then empty */

/* Write a message and end the whole process (exit_group 2): for set-up failures only. */
noinline void die(const char *what, long err);

#endif
