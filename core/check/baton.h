/* How the deterministic scheduler's baton moves (sched.c): the host thread that holds it
 * switches stacks to the next scheduled thread and runs it, instead of waking that thread's
 * own host thread and sleeping. Every other host thread sleeps in its parking loop; one is
 * woken only to start the baton (nobody held it) or to take its own thread back at the end.
 *
 * A scheduled thread therefore runs on whichever host thread holds the baton. Its stack
 * and registers go with it; sched.c makes it `current` again wherever it resumes, and its
 * other per-thread state is ptemu_thread_local's (sync.h). What belongs to a host thread
 * must not be held across a scheduling point: a __thread variable, a pthread lock (the
 * model's sleeping locks are words for this reason, sync.c), liburcu's reader state
 * (rcu.c), errno. */
#ifndef PTEMU_BATON_H
#define PTEMU_BATON_H

#include <stdbool.h>
#include <stddef.h>

struct baton_host;

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

#endif
