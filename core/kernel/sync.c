/* Lock wrappers and ptemu threads. Each acquisition is checked against the calling
 * thread's held locks (sleep-in-atomic, lock-order) and recorded for ptl-not-held. */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ptemu/check.h>
#include <ptemu/machine.h>
#include <ptemu/sched.h>
#include <ptemu/sync.h>

#include "internal.h"

static _Thread_local struct ptemu_thread *current_thread;
static int next_thread_id;
static int next_local_slot;

struct ptemu_thread *ptemu_current(void)
{
	return current_thread;
}

void ptemu_thread_resumed(struct ptemu_thread *t)
{
	current_thread = t;
}

struct ptemu_thread *ptemu_thread_register(struct ptemu_machine *m, const char *name)
{
	struct ptemu_thread *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->machine = m;
	t->id = __atomic_fetch_add(&next_thread_id, 1, __ATOMIC_RELAXED);
	snprintf(t->name, sizeof(t->name), "%s", name ? name : "thread");
	/* A thread may work for a second machine for a while (tests do): stack them, and
	 * register with RCU only once. */
	t->prev = current_thread;
	t->sched_id = -1;
	if (!t->prev)
		ptemu_rcu_register_thread();
	current_thread = t;
	if (m->sched)
		ptemu_sched_attach(t);
	return t;
}

void ptemu_thread_unregister(void)
{
	struct ptemu_thread *t = current_thread;

	if (!t)
		return;
	check_op_end("thread exit");
	if (t->sched_id >= 0)
		ptemu_sched_detach(t);
	current_thread = t->prev;
	if (!current_thread)
		ptemu_rcu_unregister_thread();
	for (int i = 0; i < PTEMU_THREAD_LOCALS; i++)
		free(t->locals[i]);
	free(t);
}

void *ptemu_thread_local(struct ptemu_thread_local_key *key, void *host)
{
	struct ptemu_thread *t = current_thread;
	int slot = __atomic_load_n(&key->slot, __ATOMIC_ACQUIRE);

	if (!t)
		return host;
	if (!slot) {
		int mine = __atomic_add_fetch(&next_local_slot, 1, __ATOMIC_RELAXED);

		if (mine > PTEMU_THREAD_LOCALS)
			ptemu_bug("more than PTEMU_THREAD_LOCALS thread-local keys");
		/* Two first users race: one slot wins, the other stays unused. */
		if (!__atomic_compare_exchange_n(&key->slot, &slot, mine, false, __ATOMIC_ACQ_REL,
						 __ATOMIC_ACQUIRE))
			mine = slot;
		slot = mine;
	}
	if (!t->locals[slot - 1] && !(t->locals[slot - 1] = calloc(1, key->size)))
		ptemu_bug("out of memory for thread-local storage");
	return t->locals[slot - 1];
}

static const char *const class_names[LOCK_CLASS_COUNT] = {
	[LOCK_CLASS_MMAP] = "mmap_lock",
	[LOCK_CLASS_FOLIO] = "folio_lock",
	[LOCK_CLASS_I_MMAP] = "i_mmap_rwsem",
	[LOCK_CLASS_PML] = "pmd_lock",
	[LOCK_CLASS_PTL] = "ptl",
	[LOCK_CLASS_PGTABLE_LIST] = "pgtable_list_lock",
	[LOCK_CLASS_XA] = "xa_lock",
	[LOCK_CLASS_TEST] = "test_lock",
};

const char *ptemu_lock_class_name(enum ptemu_lock_class c)
{
	return c < LOCK_CLASS_COUNT ? class_names[c] : "?";
}

bool ptemu_holds_lock_exclusive(const void *lock)
{
	struct ptemu_thread *t = current_thread;

	for (int i = t ? t->nr_held - 1 : -1; i >= 0; i--)
		if (t->held[i].lock == lock)
			return t->held[i].exclusive;
	return false;
}

bool ptemu_holds_class_exclusive(enum ptemu_lock_class c)
{
	struct ptemu_thread *t = current_thread;

	for (int i = t ? t->nr_held - 1 : -1; i >= 0; i--)
		if (t->held[i].lclass == c && t->held[i].exclusive)
			return true;
	return false;
}

bool ptemu_holds_lock(const void *lock)
{
	struct ptemu_thread *t = current_thread;

	if (!t)
		return false;
	for (int i = t->nr_held - 1; i >= 0; i--)
		if (t->held[i].lock == lock)
			return true;
	return false;
}

static bool holds_spinlock(const struct ptemu_thread *t)
{
	for (int i = 0; i < t->nr_held; i++)
		if (!t->held[i].sleeps)
			return true;
	return false;
}

void might_sleep(const char *what)
{
	struct ptemu_thread *t = current_thread;

	if (t && (t->rcu_depth > 0 || holds_spinlock(t)))
		ptemu_report(t->machine, VIOLATION_SLEEP_IN_ATOMIC, 0,
			     "%s may sleep, called with rcu depth %d%s", what, t->rcu_depth,
			     holds_spinlock(t) ? " under a spinlock" : "");
}

/* Checks taking `lock` against what the thread holds, before it blocks on it. */
void ptemu_lock_acquire_check(const void *lock, uint8_t lclass, bool sleeps, bool nested)
{
	struct ptemu_thread *t = current_thread;

	if (!t)
		return;
	if (sleeps && (t->rcu_depth > 0 || holds_spinlock(t)))
		ptemu_report(t->machine, VIOLATION_SLEEP_IN_ATOMIC, (uintptr_t)lock,
			     "%s (sleeping) taken with rcu depth %d%s", class_names[lclass],
			     t->rcu_depth, holds_spinlock(t) ? " under a spinlock" : "");
	for (int i = 0; i < t->nr_held; i++) {
		uint8_t hc = t->held[i].lclass;

		if (t->held[i].lock == lock)
			ptemu_report(t->machine, VIOLATION_LOCK_ORDER, (uintptr_t)lock,
				     "%s taken again by its holder (self-deadlock)",
				     class_names[lclass]);
		else if (hc > lclass || (hc == lclass && !nested))
			ptemu_report(t->machine, VIOLATION_LOCK_ORDER, (uintptr_t)lock,
				     "%s taken while holding %s", class_names[lclass],
				     class_names[hc]);
	}
}

void ptemu_lock_acquired(const void *lock, uint8_t lclass, bool sleeps, bool exclusive)
{
	struct ptemu_thread *t = current_thread;

	if (!t)
		return;
	if (t->nr_held == PTEMU_MAX_HELD_LOCKS) {
		ptemu_report(t->machine, VIOLATION_LOCK_ORDER, (uintptr_t)lock,
			     "more than %d locks held at once", PTEMU_MAX_HELD_LOCKS);
		return;
	}
	t->held[t->nr_held++] = (struct ptemu_held_lock){ lock, lclass, sleeps, exclusive,
							  check_event_now(t->machine) };
}

void ptemu_lock_released(const void *lock)
{
	struct ptemu_thread *t = current_thread;

	if (!t)
		return;
	for (int i = t->nr_held - 1; i >= 0; i--) {
		if (t->held[i].lock != lock)
			continue;
		memmove(&t->held[i], &t->held[i + 1], (size_t)(t->nr_held - i - 1) * sizeof(t->held[0]));
		t->nr_held--;
		return;
	}
	ptemu_report(t->machine, VIOLATION_LOCK_ORDER, (uintptr_t)lock,
		     "release of a lock the thread does not hold");
}

/* ---- spinlock ------------------------------------------------------------------- */

/* Atomic: a table page's ptl is initialised again when the page is, and under an injected
 * early free a stale locker may still be at it. The checker reports that; the host stays
 * well defined meanwhile. */
void ptemu_spin_init(struct ptemu_spinlock *l, enum ptemu_lock_class c)
{
	__atomic_store_n(&l->locked, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&l->lclass, (uint8_t)c, __ATOMIC_RELAXED);
}

static uint8_t spin_class(const struct ptemu_spinlock *l)
{
	return __atomic_load_n(&l->lclass, __ATOMIC_RELAXED);
}

static bool spin_try(struct ptemu_spinlock *l)
{
	return !__atomic_load_n(&l->locked, __ATOMIC_RELAXED) &&
	       !__atomic_exchange_n(&l->locked, 1, __ATOMIC_ACQUIRE);
}

/* Waits for a lock held by someone else: the deterministic scheduler runs others until
 * the holder releases it; free-running, yield now and then rather than burn the holder's
 * core (two cores, more threads). */
static void wait_for(const void *lock, uint8_t lclass, unsigned *spins)
{
	if (ptemu_sched_scheduled())
		ptemu_sched_block(lock, class_names[lclass]);
	else if (++*spins > 64)
		sched_yield();
}

static void spin_acquire(struct ptemu_spinlock *l, bool nested)
{
	unsigned spins = 0;

	ptemu_sched_point();
	ptemu_lock_acquire_check(l, spin_class(l), false, nested);
	while (!spin_try(l))
		wait_for(l, spin_class(l), &spins);
	ptemu_lock_acquired(l, spin_class(l), false, true);
}

void spin_lock(struct ptemu_spinlock *l)
{
	spin_acquire(l, false);
}

void spin_lock_nested(struct ptemu_spinlock *l)
{
	spin_acquire(l, true);
}

bool spin_trylock(struct ptemu_spinlock *l)
{
	if (!spin_try(l))
		return false;
	ptemu_lock_acquired(l, spin_class(l), false, true);
	return true;
}

void spin_unlock(struct ptemu_spinlock *l)
{
	ptemu_lock_released(l);
	__atomic_store_n(&l->locked, 0, __ATOMIC_RELEASE);
	ptemu_sched_wake(l);
}

bool spin_is_locked(const struct ptemu_spinlock *l)
{
	return __atomic_load_n(&l->locked, __ATOMIC_RELAXED) != 0;
}

/* ---- rwsem and mutex (sleeping) ------------------------------------------------- */

static bool word_try_read(struct ptemu_sleep_word *w)
{
	int v = __atomic_load_n(&w->count, __ATOMIC_RELAXED);

	while (v >= 0)
		if (__atomic_compare_exchange_n(&w->count, &v, v + 1, true, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
			return true;
	return false;
}

static bool word_try_write(struct ptemu_sleep_word *w)
{
	int v = 0;

	return __atomic_compare_exchange_n(&w->count, &v, -1, false, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED);
}

/* Waits until the word may let a reader (or a writer) in. A scheduled thread never sleeps
 * in the host while it holds the baton: it blocks in the scheduler until the lock is
 * released. Free-running, it sleeps on the word; the sleeper count and the word are both
 * sequentially consistent, so a release either sees the sleeper or is seen by it. */
static void word_wait(const void *lock, struct ptemu_sleep_word *w, uint8_t lclass, bool write)
{
	if (ptemu_sched_scheduled()) {
		ptemu_sched_block(lock, class_names[lclass]);
		return;
	}
	__atomic_add_fetch(&w->sleepers, 1, __ATOMIC_SEQ_CST);
	int v = __atomic_load_n(&w->count, __ATOMIC_SEQ_CST);

	if (write ? v != 0 : v < 0)
		ptemu_futex_wait(&w->count, v);
	__atomic_sub_fetch(&w->sleepers, 1, __ATOMIC_RELAXED);
}

/* After a release: the sleepers when the word is free, and every blocked scheduled
 * thread at every release (one that still cannot take it blocks again). */
static void word_released(const void *lock, struct ptemu_sleep_word *w, int now)
{
	if (!now && __atomic_load_n(&w->sleepers, __ATOMIC_SEQ_CST))
		ptemu_futex_wake(&w->count, INT32_MAX);
	ptemu_sched_wake(lock);
}

static void word_read_unlock(const void *lock, struct ptemu_sleep_word *w)
{
	word_released(lock, w, __atomic_sub_fetch(&w->count, 1, __ATOMIC_SEQ_CST));
}

static void word_write_unlock(const void *lock, struct ptemu_sleep_word *w)
{
	__atomic_store_n(&w->count, 0, __ATOMIC_SEQ_CST);
	word_released(lock, w, 0);
}

void ptemu_rwsem_init(struct ptemu_rwsem *s, enum ptemu_lock_class c)
{
	s->w = (struct ptemu_sleep_word){ 0, 0 };
	s->lclass = (uint8_t)c;
}

void ptemu_rwsem_destroy(struct ptemu_rwsem *s)
{
	(void)s;
}

void down_read(struct ptemu_rwsem *s)
{
	ptemu_sched_point();
	ptemu_lock_acquire_check(s, s->lclass, true, false);
	while (!word_try_read(&s->w))
		word_wait(s, &s->w, s->lclass, false);
	ptemu_lock_acquired(s, s->lclass, true, false);
}

void down_write(struct ptemu_rwsem *s)
{
	ptemu_sched_point();
	ptemu_lock_acquire_check(s, s->lclass, true, false);
	while (!word_try_write(&s->w))
		word_wait(s, &s->w, s->lclass, true);
	ptemu_lock_acquired(s, s->lclass, true, true);
}

bool down_read_trylock(struct ptemu_rwsem *s)
{
	if (!word_try_read(&s->w))
		return false;
	ptemu_lock_acquired(s, s->lclass, true, false);
	return true;
}

bool down_write_trylock(struct ptemu_rwsem *s)
{
	if (!word_try_write(&s->w))
		return false;
	ptemu_lock_acquired(s, s->lclass, true, true);
	return true;
}

void up_read(struct ptemu_rwsem *s)
{
	ptemu_lock_released(s);
	word_read_unlock(s, &s->w);
}

void up_write(struct ptemu_rwsem *s)
{
	ptemu_lock_released(s);
	word_write_unlock(s, &s->w);
}

void ptemu_mutex_init(struct ptemu_mutex *m, enum ptemu_lock_class c)
{
	m->w = (struct ptemu_sleep_word){ 0, 0 };
	m->lclass = (uint8_t)c;
}

void ptemu_mutex_destroy(struct ptemu_mutex *m)
{
	(void)m;
}

void mutex_lock(struct ptemu_mutex *m)
{
	ptemu_sched_point();
	ptemu_lock_acquire_check(m, m->lclass, true, false);
	while (!word_try_write(&m->w))
		word_wait(m, &m->w, m->lclass, true);
	ptemu_lock_acquired(m, m->lclass, true, true);
}

void mutex_unlock(struct ptemu_mutex *m)
{
	ptemu_lock_released(m);
	word_write_unlock(m, &m->w);
}
