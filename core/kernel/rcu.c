/* RCU over liburcu's memb flavour, with per-thread depth and section numbers for the
 * checker. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include <urcu/urcu-memb.h>

#include <ptemu/check.h>
#include <ptemu/machine.h>
#include <ptemu/rcu.h>
#include <ptemu/sched.h>
#include <ptemu/sync.h>

#include "internal.h"

_Static_assert(sizeof(struct rcu_head) <= sizeof(((struct ptemu_rcu_head *)0)->urcu_head),
	       "ptemu_rcu_head too small for liburcu's rcu_head");

static uint64_t next_section;

/* liburcu is not built with ThreadSanitizer, so the orderings it provides (call_rcu to
 * its callback, read-side unlocks to the end of a grace period, callbacks to
 * rcu_barrier) are invisible to it: state them. */
#if defined(__SANITIZE_THREAD__)
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
#define hb_release(a) __tsan_release(a)
#define hb_acquire(a) __tsan_acquire(a)
#else
#define hb_release(a) ((void)(a))
#define hb_acquire(a) ((void)(a))
#endif
static int grace_period_hb, barrier_hb;
/* Callbacks queued to liburcu and not yet run (rcu_barrier's drain). */
static uint64_t callbacks_in_flight;

void ptemu_rcu_register_thread(void)
{
	urcu_memb_register_thread();
}

void ptemu_rcu_unregister_thread(void)
{
	urcu_memb_unregister_thread();
}

void rcu_read_lock(void)
{
	struct ptemu_thread *t = ptemu_current();

	ptemu_sched_point();
	if (t && t->rcu_depth++ == 0) {
		/* A scheduled thread's sections are the scheduler's to end (its grace periods
		 * are), and liburcu's reader state belongs to a host thread, which a scheduled
		 * thread changes at baton passes. */
		t->rcu_on_urcu = t->sched_id < 0;
		t->rcu_section = __atomic_add_fetch(&next_section, 1, __ATOMIC_RELAXED);
		t->rcu_sections_entered++;
	}
	if (!t || t->rcu_on_urcu)
		urcu_memb_read_lock();
}

void rcu_read_unlock(void)
{
	struct ptemu_thread *t = ptemu_current();
	bool on_urcu = !t || t->rcu_on_urcu;

	if (t) {
		if (t->rcu_depth == 0) {
			/* liburcu would corrupt its nesting count: report and ignore. */
			ptemu_report(t->machine, VIOLATION_RCU_IMBALANCE, 0,
				     "rcu_read_unlock outside any RCU read-side section");
			return;
		}
		if (--t->rcu_depth == 0) {
			t->rcu_section = 0;
			ptemu_sched_rcu_reader_left();
		}
	}
	hb_release(&grace_period_hb);
	if (on_urcu)
		urcu_memb_read_unlock();
	ptemu_sched_point();
}

static void rcu_trampoline(struct rcu_head *urcu)
{
	struct ptemu_rcu_head *head = (struct ptemu_rcu_head *)(void *)urcu;

	hb_acquire(head);
	hb_acquire(&grace_period_hb);
	uint64_t outer = check_rcu_callback_enter(head->queued_stamp);

	head->func(head);
	check_rcu_callback_leave(outer);
	hb_release(&barrier_hb);
	__atomic_sub_fetch(&callbacks_in_flight, 1, __ATOMIC_RELEASE);
}

void call_rcu(struct ptemu_rcu_head *head, void (*func)(struct ptemu_rcu_head *head))
{
	struct ptemu_thread *t = ptemu_current();

	head->func = func;
	head->queued_stamp = check_rcu_stamp();
	if (t && t->machine->sched) {
		ptemu_sched_call_rcu(t->machine, head);	/* the grace period is the scheduler's */
		return;
	}
	hb_release(head);
	__atomic_add_fetch(&callbacks_in_flight, 1, __ATOMIC_RELAXED);
	urcu_memb_call_rcu((struct rcu_head *)(void *)head->urcu_head, rcu_trampoline);
}

/* Waiting for a grace period from inside a read-side section never returns: report it
 * and do not wait. */
static bool may_wait_for_gp(const char *what)
{
	struct ptemu_thread *t = ptemu_current();

	if (t && t->rcu_depth > 0) {
		ptemu_report(t->machine, VIOLATION_SLEEP_IN_ATOMIC, 0,
			     "%s inside an RCU read-side section (depth %d)", what, t->rcu_depth);
		return false;
	}
	return true;
}

static void gp_marker_done(struct ptemu_rcu_head *head)
{
	__atomic_store_n((int *)&head->urcu_head[0], 1, __ATOMIC_RELEASE);
}

void synchronize_rcu(void)
{
	struct ptemu_thread *t = ptemu_current();

	if (t && t->machine->sched && may_wait_for_gp("synchronize_rcu")) {
		/* A callback queued now runs once every current reader has left. */
		struct ptemu_rcu_head marker = { { 0 }, NULL, 0 };

		call_rcu(&marker, gp_marker_done);
		ptemu_sched_rcu_barrier(t->machine);
		return;
	}
	if (may_wait_for_gp("synchronize_rcu")) {
		urcu_memb_synchronize_rcu();
		hb_acquire(&grace_period_hb);
	}
}

void rcu_barrier(void)
{
	struct ptemu_thread *t = ptemu_current();

	if (t && t->machine->sched && t->sched_id >= 0 && may_wait_for_gp("rcu_barrier")) {
		ptemu_sched_rcu_barrier(t->machine);
		return;
	}
	if (!may_wait_for_gp("rcu_barrier"))
		return;
	/* Until none is left: a callback may queue another (s390's __tlb_remove_table
	 * queues pte_free_now), and a teardown needs them all run. */
	do
		urcu_memb_barrier();
	while (__atomic_load_n(&callbacks_in_flight, __ATOMIC_ACQUIRE));
	hb_acquire(&barrier_hb);
}
