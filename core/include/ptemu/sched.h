/* The deterministic scheduler (DESIGN.md section 7). Every ptemu thread is a real thread,
 * but only the one holding the baton runs, on whichever host thread holds it (a pass is
 * a switch of stacks, check/baton.h); at each scheduling point the holder asks the
 * scheduler which thread runs next (seeded random walk, or PCT). Blocking waits are
 * known to it: a thread whose lock is taken blocks on the lock and is not picked again
 * until the lock is released; when no thread can run, that is a deadlock, reported with
 * every thread's state. Grace periods are scheduler decisions too: callbacks run in the
 * scheduler's own RCU thread once every reader that was inside a section when they were
 * queued has left it, at a step the seed chooses.
 *
 * Without a scheduler (free-running mode) every call here is a no-op. */
#ifndef PTEMU_SCHED_H
#define PTEMU_SCHED_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct ptemu_machine;
struct ptemu_rcu_head;

enum ptemu_sched_strategy { PTEMU_SCHED_RANDOM, PTEMU_SCHED_PCT };

/* Threads one scheduler can hold: the RCU thread, khugepaged and every vCPU of the
 * largest run (16 processes x 16 vCPUs), with room to spare. */
#define PTEMU_SCHED_MAX_THREADS 320

/* One scheduling decision: at `step`, the baton went to thread `to`. */
struct ptemu_sched_decision {
	uint64_t step;
	uint32_t to;
};

/* Every event folded into the digest, in order (for traces). */
typedef void (*ptemu_sched_event_fn)(void *ctx, uint64_t kind, uint64_t a, uint64_t b);

/* Event kinds of the scheduler itself; the checker's start at 16. */
enum { PTEMU_EV_SWITCH = 1, PTEMU_EV_CALL_RCU = 2, PTEMU_EV_GP_END = 3 };
/* Guest events of vCPU threads: a fault (a: va << 2 | FAULT_FLAG_*, b: pc) followed by the
 * faulting instruction's first 16 bytes (a, b in guest memory order), and a syscall
 * (a: number, b: pc). */
enum { PTEMU_EV_FAULT = 22, PTEMU_EV_INSN = 23, PTEMU_EV_SYSCALL = 24 };
/* A TLB shootdown sent (a: start, b: end). */
enum { PTEMU_EV_SHOOTDOWN = 25 };
/* A switch event's a: from << 16 | to (0xffff: nobody yet); b: the step. */

struct ptemu_sched_config {
	uint64_t seed;
	enum ptemu_sched_strategy strategy;
	unsigned pct_depth;	/* PCT: d, the number of priority change points + 1 */
	uint64_t max_steps;	/* PCT's horizon and the run's length */
	/* Replay: the decisions to follow instead of the strategy's, in step order. A step
	 * without a decision continues the thread that runs. */
	const struct ptemu_sched_decision *forced;
	size_t nforced;
	ptemu_sched_event_fn on_event;
	void *event_ctx;
};

/* Attaches a scheduler to the machine; threads registered from now on are scheduled. */
int ptemu_sched_create(struct ptemu_machine *m, const struct ptemu_sched_config *cfg);
/* Stops the RCU thread and detaches. Every other scheduled thread must have exited. The
 * final digest and step count (with the RCU thread's last callbacks) go to the non-NULL
 * out parameters. */
void ptemu_sched_destroy(struct ptemu_machine *m, uint64_t *digest, uint64_t *steps);

/* A scheduling point of the calling thread. */
void ptemu_sched_point(void);
/* The same inside a window of the protocol on a PTE table (a walk between its pmd and PTE
 * reads, a map before its lock or unmap), where the races the checker watches happen:
 * switches are likelier there, and PCT adds preemptions there beyond its change points. */
void ptemu_sched_point_window(uint64_t table_pa);
/* A window point where nothing the caller holds keeps the racing side out, so a race
 * needs only the preemption and another thread's whole operation (a table removal between
 * its look at the pmd and its pmd lock, and a zap that reclaims the table): PCT always
 * preempts there, resumes the caller after every other preempted thread, and meanwhile
 * lets the caller's own long window preempt no one on that table. */
void ptemu_sched_point_wide_window(uint64_t table_pa);
/* A long window of the protocol that will change `tables`: a collapse from its copy (after
 * the unmap) to its retract, collapse_pte_mapped_thp from emptying a table to removing it.
 * On a machine other CPUs run meanwhile, through their own windows, so PCT always preempts
 * at its start and at other threads' window points on those tables while it is open; the
 * first thread preempted goes on first. Begin is a scheduling point; end is not. */
void ptemu_sched_long_window_begin(const uint64_t *tables, unsigned n);
/* The tables a long window names; more are not looked at. */
#define PTEMU_SCHED_LONG_WINDOW_TABLES 32
void ptemu_sched_long_window_end(void);
/* A point of the thread inside its own long window, where it preempts as at its start
 * (a plain point outside one). */
void ptemu_sched_long_window_point(void);
/* The same at a guest block, where a switch is made more rarely. */
void ptemu_sched_point_guest(void);
/* Let another thread run: always switches if anyone can. */
void ptemu_sched_yield(void);
/* The same in a spin-wait for another thread's progress (a shootdown's acknowledgement):
 * PCT then passes over the caller while anyone else can run, or two spinners waiting for
 * a third would only ever hand the baton to each other. */
void ptemu_sched_spin_wait(void);
/* The calling thread sleeps for `steps` scheduling steps of the others (the deterministic
 * run's clock): it is not picked before then. When nobody else can run, the clock skips
 * to the first sleeper's wake-up. */
void ptemu_sched_sleep(uint64_t steps);
/* The calling thread waits for `token` (a lock, a folio, ...): it is not picked again until
 * ptemu_sched_wake(token). Returns at once when not deterministic. */
void ptemu_sched_block(const void *token, const char *what);
void ptemu_sched_wake(const void *token);
/* The creator of a thread waits until it has registered, so that ids are deterministic;
 * `count` includes the scheduler's own RCU thread. */
void ptemu_sched_wait_threads(struct ptemu_machine *m, unsigned count);
/* Hands out the first baton, once every initial thread is registered. */
void ptemu_sched_start(struct ptemu_machine *m);
/* Makes the calling (registered) thread a scheduled one, or not any more. Before
 * ptemu_sched_start the caller runs on, to create the others; the start then waits for
 * its turn. */
void ptemu_sched_attach_current(void);
void ptemu_sched_detach_current(void);
/* A reader left its outermost RCU section: a grace period may now end. */
void ptemu_sched_rcu_reader_left(void);

bool ptemu_sched_active(const struct ptemu_machine *m);
/* Is the calling thread a scheduled one? */
bool ptemu_sched_scheduled(void);
uint64_t ptemu_sched_steps(const struct ptemu_machine *m);
/* The run digest: a hash over the ordered scheduling decisions and checked events. */
uint64_t ptemu_sched_digest(const struct ptemu_machine *m);
void ptemu_sched_fold(struct ptemu_machine *m, uint64_t kind, uint64_t a, uint64_t b);
/* Set after a deadlock was reported: the threads involved can never finish. */
bool ptemu_sched_deadlocked(const struct ptemu_machine *m);

/* call_rcu and rcu_barrier in deterministic mode (called by rcu.c). */
void ptemu_sched_call_rcu(struct ptemu_machine *m, struct ptemu_rcu_head *head);
void ptemu_sched_rcu_barrier(struct ptemu_machine *m);

#ifdef __cplusplus
}
#endif
#endif
