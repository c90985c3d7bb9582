/* How the deterministic scheduler's baton moves (sched.c): the host thread that holds it
 * switches stacks to the next scheduled thread and runs it, instead of waking that thread's
 * own host thread and sleeping. Every other host thread sleeps in its parking loop; one is
 * woken only to start the baton (nobody held it) or to take its own thread back at the end.
 *
 * A scheduled thread therefore runs on whichever host thread holds the baton. What is its
 * own travels with it: its stack, its registers, and the thread-local words registered with
 * baton_local_register (sync.c's `current`, among others). What belongs to a host thread
 * must not be held across a scheduling point: a pthread lock (the model's sleeping locks
 * are words for this reason, sync.c), liburcu's reader state (rcu.c), errno. */
#ifndef PTEMU_BATON_H
#define PTEMU_BATON_H

#include <stdbool.h>
#include <stddef.h>

struct baton_host;

/* Room for the thread-local words that travel (baton_local_register). */
#define BATON_LOCAL_SLOTS 8
#define BATON_LOCAL_BYTES 64

/* The registers: a stack pointer on x86-64, whose switch is a few instructions; ucontext's
 * elsewhere (a signal-mask system call per switch). PTEMU_BATON_UCONTEXT builds the
 * ucontext path on x86-64 too, to test it there. */
#if defined(__x86_64__) && !defined(PTEMU_BATON_UCONTEXT)
#define BATON_SWAP_ASM 1
struct baton_regs {
	void *sp;
};
#else
#include <ucontext.h>
struct baton_regs {
	ucontext_t uc;
};
#endif

/* One scheduled thread's context. */
struct baton_ctx {
	struct baton_host *home;	/* the host thread it was created on */
	struct baton_regs regs;		/* valid while suspended */
	int suspended;			/* regs saved: it may be resumed (atomic) */
	const void *stack_lo;		/* its stack, for AddressSanitizer */
	size_t stack_size;
	void *tsan_fiber;
	unsigned char locals[BATON_LOCAL_BYTES];
};

/* `c` is the thread the calling host thread runs, and this host thread its home. */
void baton_ctx_init(struct baton_ctx *c);
/* Whether the caller runs on c's own host thread. */
bool baton_at_home(const struct baton_ctx *c);
/* Suspends `from` (running here) and runs `to` here; returns when someone resumes
 * `from`, on whatever host thread then holds the baton. `to` must be suspended or about
 * to be (it is waited for). `send_home`: `from` leaves the scheduler, and once it is
 * suspended its own host thread resumes it, outside the baton. */
void baton_switch(struct baton_ctx *from, struct baton_ctx *to, bool send_home);
/* Suspends `from` (send_home as above); this host thread parks until asked to resume
 * some context. */
void baton_park(struct baton_ctx *from, bool send_home);
/* From outside any context (or from one staying at home): c's own host thread, parked,
 * resumes it. */
void baton_resume_at_home(struct baton_ctx *c);
/* `c`, back on its own host thread for good: frees what its host kept for parking. */
void baton_ctx_done(struct baton_ctx *c);

/* A host thread-local word that belongs to the scheduled thread and travels with it: each
 * switch copies it out of the host thread it leaves and into the one it runs on. `address`
 * returns the calling host thread's instance. Register before the first write;
 * idempotent. Only for words read by value: a pointer to one, kept across a scheduling
 * point, would point into another host thread's (ptemu_thread_local is for those). */
struct baton_local {
	void *(*address)(void);
	size_t size;
	int slot;	/* 0: not registered yet, else slot + 1 */
};
void baton_local_register(struct baton_local *l);

#endif
