/* The baton's moves between scheduled threads: stack switches on the host thread that holds
 * it (baton.h says why). */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "internal.h"
#include "baton.h"

#if defined(__SANITIZE_ADDRESS__)
#define BATON_ASAN 1
#endif
#if defined(__SANITIZE_THREAD__)
#define BATON_TSAN 1
#endif
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BATON_ASAN 1
#endif
#if __has_feature(thread_sanitizer)
#define BATON_TSAN 1
#endif
#endif
#ifdef BATON_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif
#ifdef BATON_TSAN
#include <sanitizer/tsan_interface.h>
#endif

/* The parking loop's stack: it only sleeps and switches (sanitizers' frames are larger). */
#define PARK_STACK_BYTES (256u << 10)

struct baton_host {
	/* Set (release) by a waker once `run` is: the parked loop resumes it. */
	int wake;
	struct baton_ctx *run;
	struct baton_regs park_regs;
	void *park_stack;
	void *park_fiber;
	/* What the code resumed after a switch on this host finishes for the one that left:
	 * marks it suspended, and sends it home if it is leaving. */
	struct baton_ctx *left;
	bool left_goes_home;
	unsigned homes;		/* contexts whose home this is */
};

static __thread struct baton_host *this_host;

/* ---- the registers ------------------------------------------------------------------ */

#ifdef BATON_SWAP_ASM
/* Pushes the callee-saved registers (and the SSE and x87 control words, callee-saved too),
 * saves the stack pointer to *save, loads `load` and pops the other side's. */
void baton_swap(struct baton_regs *save, struct baton_regs *load) __asm__("ptemu_baton_swap");
__asm__(".text\n"
	".globl ptemu_baton_swap\n"
	".hidden ptemu_baton_swap\n"
	".type ptemu_baton_swap, @function\n"
	"ptemu_baton_swap:\n"
	"	pushq %rbp\n"
	"	pushq %rbx\n"
	"	pushq %r12\n"
	"	pushq %r13\n"
	"	pushq %r14\n"
	"	pushq %r15\n"
	"	subq $8, %rsp\n"
	"	stmxcsr (%rsp)\n"
	"	fnstcw 4(%rsp)\n"
	"	movq %rsp, (%rdi)\n"
	"	movq (%rsi), %rsp\n"
	"	ldmxcsr (%rsp)\n"
	"	fldcw 4(%rsp)\n"
	"	addq $8, %rsp\n"
	"	popq %r15\n"
	"	popq %r14\n"
	"	popq %r13\n"
	"	popq %r12\n"
	"	popq %rbx\n"
	"	popq %rbp\n"
	"	ret\n"
	".size ptemu_baton_swap, .-ptemu_baton_swap\n");

/* A first frame for baton_swap to pop into entry(), which must not return: the return
 * address sits where a call would leave it, 8 bytes below a 16-byte boundary. */
static void regs_make(struct baton_regs *r, void *stack, size_t size, void (*entry)(void))
{
	uintptr_t top = ((uintptr_t)stack + size) & ~(uintptr_t)15;
	uint64_t *sp = (uint64_t *)(top - 16);
	uint32_t ctl[2];

	__asm__ volatile("stmxcsr %0\n\tfnstcw %1" : "=m"(ctl[0]), "=m"(ctl[1]));
	*sp = (uint64_t)(uintptr_t)entry;
	sp -= 6;
	memset(sp, 0, 6 * sizeof(*sp));
	sp--;
	memcpy(sp, ctl, sizeof(ctl));
	r->sp = sp;
}
#else
static void baton_swap(struct baton_regs *save, struct baton_regs *load)
{
	if (swapcontext(&save->uc, &load->uc))
		ptemu_bug("baton: swapcontext failed");
}

static void regs_make(struct baton_regs *r, void *stack, size_t size, void (*entry)(void))
{
	if (getcontext(&r->uc))
		ptemu_bug("baton: getcontext failed");
	r->uc.uc_stack.ss_sp = stack;
	r->uc.uc_stack.ss_size = size;
	r->uc.uc_link = NULL;
	makecontext(&r->uc, entry, 0);
}
#endif

/* ---- hosts -------------------------------------------------------------------------- */

static struct baton_host *host(void)
{
	if (!this_host) {
		this_host = calloc(1, sizeof(*this_host));
		if (!this_host)
			ptemu_bug("baton: out of memory");
	}
	return this_host;
}

/* Waits until c's registers are saved, and claims them (resumed once). */
static void claim(struct baton_ctx *c)
{
	while (!__atomic_exchange_n(&c->suspended, 0, __ATOMIC_ACQUIRE))
#if defined(__x86_64__)
		__builtin_ia32_pause();
#else
		;
#endif
}

static void send_home(struct baton_ctx *c)
{
	struct baton_host *h = c->home;

	h->run = c;
	__atomic_store_n(&h->wake, 1, __ATOMIC_RELEASE);
	ptemu_futex_wake(&h->wake, 1);
}

/* Run on this host right after every switch, by whichever side it resumed. */
static void finish_switch(void *asan_fake)
{
	struct baton_host *h = host();
	struct baton_ctx *left = h->left;

#ifdef BATON_ASAN
	__sanitizer_finish_switch_fiber(asan_fake, NULL, NULL);
#else
	(void)asan_fake;
#endif
	if (!left)
		return;
	h->left = NULL;
	__atomic_store_n(&left->suspended, 1, __ATOMIC_RELEASE);
	if (h->left_goes_home)
		send_home(left);
}

/* Switches this host from `left` (saved into `save`) to the registers `load`, whose stack
 * and fiber are given for the sanitizers. */
static void swap_here(struct baton_host *h, struct baton_ctx *left, bool goes_home, struct baton_regs *save,
		      struct baton_regs *load, const void *stack_lo, size_t stack_size, void *fiber)
{
	void *fake = NULL;

	h->left = left;
	h->left_goes_home = goes_home;
#ifdef BATON_ASAN
	__sanitizer_start_switch_fiber(&fake, stack_lo, stack_size);
#else
	(void)stack_lo, (void)stack_size;
#endif
#ifdef BATON_TSAN
	__tsan_switch_to_fiber(fiber, 0);
#else
	(void)fiber;
#endif
	baton_swap(save, load);
	finish_switch(fake);
}

/* The parking loop, where a host thread's first frame on its parking stack starts: it
 * sleeps until asked to resume a context. It never returns (nothing to return to) and
 * calls nothing that does not, which AddressSanitizer would handle before the switch is
 * finished. */
static void park_entry(void)
{
	struct baton_host *h = host();

	finish_switch(NULL);
	for (;;) {
		while (!__atomic_load_n(&h->wake, __ATOMIC_ACQUIRE))
			ptemu_futex_wait(&h->wake, 0);
		__atomic_store_n(&h->wake, 0, __ATOMIC_RELAXED);
		struct baton_ctx *c = h->run;

		claim(c);
		swap_here(h, NULL, false, &h->park_regs, &c->regs, c->stack_lo, c->stack_size, c->tsan_fiber);
	}
}

static void park_here(struct baton_ctx *from, bool goes_home)
{
	struct baton_host *h = host();

	if (!h->park_stack) {
		h->park_stack = mmap(NULL, PARK_STACK_BYTES, PROT_READ | PROT_WRITE,
				     MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
		if (h->park_stack == MAP_FAILED)
			ptemu_bug("baton: no memory for a parking stack");
		regs_make(&h->park_regs, h->park_stack, PARK_STACK_BYTES, park_entry);
#ifdef BATON_TSAN
		h->park_fiber = __tsan_create_fiber(0);
#endif
	}
	swap_here(h, from, goes_home, &from->regs, &h->park_regs, h->park_stack, PARK_STACK_BYTES,
		  h->park_fiber);
}

static void switch_here(struct baton_ctx *from, struct baton_ctx *to, bool goes_home)
{
	struct baton_host *h = host();

	claim(to);
	swap_here(h, from, goes_home, &from->regs, &to->regs, to->stack_lo, to->stack_size, to->tsan_fiber);
}

/* ---- the interface ------------------------------------------------------------------ */

void baton_ctx_init(struct baton_ctx *c)
{
	struct baton_host *h = host();
	pthread_attr_t attr;
	void *lo = NULL;
	size_t size = 0;

	if (h->homes)
		ptemu_bug("baton: a host thread with two scheduled threads");
	if (!pthread_getattr_np(pthread_self(), &attr)) {
		pthread_attr_getstack(&attr, &lo, &size);
		pthread_attr_destroy(&attr);
	}
	memset(c, 0, sizeof(*c));
	c->home = h;
	c->stack_lo = lo;
	c->stack_size = size;
#ifdef BATON_TSAN
	c->tsan_fiber = __tsan_get_current_fiber();
#endif
	h->homes++;
}

bool baton_at_home(const struct baton_ctx *c)
{
	return c->home == this_host;
}

void baton_switch(struct baton_ctx *from, struct baton_ctx *to, bool send_home)
{
	switch_here(from, to, send_home);
}

void baton_park(struct baton_ctx *from, bool send_home)
{
	park_here(from, send_home);
}

void baton_resume_at_home(struct baton_ctx *c)
{
	send_home(c);
}

void baton_ctx_done(struct baton_ctx *c)
{
	struct baton_host *h = c->home;

	if (h != this_host)
		ptemu_bug("baton: a scheduled thread ends away from its host thread");
	if (--h->homes)
		return;
	if (h->park_stack) {
#ifdef BATON_ASAN
		/* The parked frames' redzones stay poisoned, and whatever is mapped here next
		 * is no stack. */
		__asan_unpoison_memory_region(h->park_stack, PARK_STACK_BYTES);
#endif
		munmap(h->park_stack, PARK_STACK_BYTES);
	}
#ifdef BATON_TSAN
	if (h->park_fiber)
		__tsan_destroy_fiber(h->park_fiber);
#endif
	this_host = NULL;
	free(h);
}
