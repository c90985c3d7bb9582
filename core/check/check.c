/* The invariant checker: violation records and per-table lifetime state. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ptemu/check.h>
#include <ptemu/machine.h>
#include <ptemu/pgtable.h>
#include <ptemu/phys.h>
#include <ptemu/rcu.h>
#include <ptemu/sched.h>
#include <ptemu/sync.h>

#include "internal.h"

/* Lifetime of one PTE table slot (a page, a half or a fragment). */
struct table_slot {
	uint32_t state;		/* enum ptemu_table_state */
	uint32_t gen;		/* bumped at every allocation of the slot */
	int32_t maps;		/* pte_offset_map pointers held into it */
	int32_t walkers;	/* walkers inside it */
	/* Event numbers of this allocation's attach and detach (0: not yet), which tell
	 * whether a lock was taken while the table was attached. */
	uint64_t attached_at;
	uint64_t detached_at;
	/* The RCU stamp of its pte_free_defer (or gather): only a callback queued later may
	 * free it. */
	uint64_t deferred_stamp;
};

struct ptemu_checker {
	struct ptemu_machine *machine;
	enum ptemu_check_mode mode;
	uint64_t nslots;
	/* A slot per PTE table: slot index = pa >> slot_shift, as a page holds a power of two
	 * of equal tables. */
	unsigned slot_shift;
	struct table_slot *slots;
	uint64_t events;
	bool stop;
	pthread_mutex_t lock;	/* guards the records; the checker's own, not modelled */
	uint64_t total;
	uint64_t by_kind[VIOLATION_KIND_COUNT];
	size_t nrecorded;
	struct ptemu_violation recorded[PTEMU_MAX_RECORDED];
};

static const char *const kind_names[VIOLATION_KIND_COUNT] = {
#define PTEMU_VIOLATION_NAME(id, name) name,
	PTEMU_VIOLATION_LIST(PTEMU_VIOLATION_NAME)
#undef PTEMU_VIOLATION_NAME
};

const char *ptemu_violation_name(enum ptemu_violation_kind k)
{
	return k < VIOLATION_KIND_COUNT ? kind_names[k] : "?";
}

enum ptemu_violation_kind ptemu_violation_from_name(const char *name)
{
	for (int k = 0; k < VIOLATION_KIND_COUNT; k++)
		if (!strcmp(kind_names[k], name))
			return (enum ptemu_violation_kind)k;
	return VIOLATION_KIND_COUNT;
}

const char *ptemu_table_state_name(enum ptemu_table_state s)
{
	static const char *const names[] = { "free", "allocated", "attached", "detached",
					     "rcu-pending" };
	return s <= TABLE_RCU_PENDING ? names[s] : "?";
}

struct ptemu_checker *check_create(struct ptemu_machine *m, enum ptemu_check_mode mode)
{
	struct ptemu_checker *c = calloc(1, sizeof(*c));
	uint64_t npages = phys_size(m->phys) >> m->arch->page_shift;

	if (!c)
		return NULL;
	c->machine = m;
	c->mode = mode;
	c->nslots = npages * m->arch->tables_per_page;
	c->slot_shift = m->arch->page_shift - (unsigned)__builtin_ctz(m->arch->tables_per_page);
	c->slots = calloc(c->nslots, sizeof(*c->slots));
	if (!c->slots) {
		free(c);
		return NULL;
	}
	pthread_mutex_init(&c->lock, NULL);
	return c;
}

void check_destroy(struct ptemu_checker *c)
{
	if (!c)
		return;
	pthread_mutex_destroy(&c->lock);
	free(c->slots);
	free(c);
}

uint64_t check_event(struct ptemu_machine *m)
{
	return __atomic_add_fetch(&m->checker->events, 1, __ATOMIC_RELAXED);
}

uint64_t check_event_now(const struct ptemu_machine *m)
{
	return __atomic_load_n(&m->checker->events, __ATOMIC_RELAXED);
}

/* Event kinds in the run digest. */
enum { DIGEST_VIOLATION = 16, DIGEST_TABLE, DIGEST_MAP, DIGEST_UNMAP, DIGEST_READ, DIGEST_WRITE };

static void digest_event(struct ptemu_machine *m, uint64_t kind, uint64_t a, uint64_t b)
{
	struct ptemu_thread *t = ptemu_current();

	if (m->sched)
		ptemu_sched_fold(m, kind | (uint64_t)(t ? t->sched_id + 1 : 0) << 8, a, b);
}

void ptemu_report(struct ptemu_machine *m, enum ptemu_violation_kind kind, uint64_t addr,
		  const char *fmt, ...)
{
	struct ptemu_checker *c = m->checker;
	struct ptemu_thread *t = ptemu_current();
	uint64_t ev = check_event(m);
	va_list ap;

	pthread_mutex_lock(&c->lock);
	c->total++;
	c->by_kind[kind]++;
	if (c->nrecorded < PTEMU_MAX_RECORDED) {
		struct ptemu_violation *v = &c->recorded[c->nrecorded++];

		v->kind = kind;
		v->thread = t ? t->id : -1;
		snprintf(v->thread_name, sizeof(v->thread_name), "%s", t ? t->name : "rcu-callback");
		v->addr = addr;
		v->event = ev;
		va_start(ap, fmt);
		vsnprintf(v->message, sizeof(v->message), fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&c->lock);
	/* The event number, not the address: lock addresses are host pointers. */
	digest_event(m, DIGEST_VIOLATION, kind, ev);
	if (c->mode == PTEMU_CHECK_FAIL_FAST)
		__atomic_store_n(&c->stop, true, __ATOMIC_RELEASE);
}

bool ptemu_should_stop(const struct ptemu_machine *m)
{
	return __atomic_load_n(&m->checker->stop, __ATOMIC_ACQUIRE);
}

uint64_t check_violation_count(const struct ptemu_machine *m)
{
	uint64_t n;

	pthread_mutex_lock(&m->checker->lock);
	n = m->checker->total;
	pthread_mutex_unlock(&m->checker->lock);
	return n;
}

uint64_t check_kind_count(const struct ptemu_machine *m, enum ptemu_violation_kind kind)
{
	uint64_t n;

	pthread_mutex_lock(&m->checker->lock);
	n = m->checker->by_kind[kind];
	pthread_mutex_unlock(&m->checker->lock);
	return n;
}

const struct ptemu_violation *check_violations(const struct ptemu_machine *m, size_t *n)
{
	pthread_mutex_lock(&m->checker->lock);
	*n = m->checker->nrecorded;
	pthread_mutex_unlock(&m->checker->lock);
	return m->checker->recorded;
}

/* ---- table lifetime --------------------------------------------------------------- */

static uint64_t slot_index(const struct ptemu_machine *m, uint64_t pa)
{
	return pa >> m->checker->slot_shift;
}

static struct table_slot *slot_of(const struct ptemu_machine *m, uint64_t pa)
{
	return &m->checker->slots[slot_index(m, pa)];
}

/* Base address of the table holding an entry. */
static uint64_t table_base(const struct ptemu_machine *m, uint64_t pa)
{
	return pa & ~(uint64_t)(m->arch->pte_table_bytes - 1);
}

static uint32_t slot_state(const struct table_slot *s)
{
	return __atomic_load_n(&s->state, __ATOMIC_SEQ_CST);
}

void check_table_alloc(struct ptemu_machine *m, uint64_t table_pa)
{
	struct table_slot *s = slot_of(m, table_pa);
	uint32_t old = __atomic_exchange_n(&s->state, TABLE_ALLOCATED, __ATOMIC_SEQ_CST);

	__atomic_add_fetch(&s->gen, 1, __ATOMIC_SEQ_CST);
	__atomic_store_n(&s->attached_at, 0, __ATOMIC_SEQ_CST);
	__atomic_store_n(&s->detached_at, 0, __ATOMIC_SEQ_CST);
	check_event(m);
	digest_event(m, DIGEST_TABLE, table_pa, TABLE_ALLOCATED);
	if (old != TABLE_FREE)
		ptemu_report(m, VIOLATION_PT_USE_AFTER_FREE, table_pa,
			     "table %#" PRIx64 " handed out again while %s", table_pa,
			     ptemu_table_state_name(old));
}

/* Reports the table's first entry that is not none, if any. */
static void report_if_not_empty(struct ptemu_machine *m, uint64_t table_pa,
				enum ptemu_violation_kind kind, const char *when)
{
	const struct ptemu_arch *a = m->arch;

	for (unsigned i = 0; i < ptemu_ptes_per_table(a); i++) {
		uint64_t v = ptemu_table_entry_load(m, table_pa, ptemu_pte_level(a), i);

		if (!a->pte_none(v)) {
			ptemu_report(m, kind, table_pa, "table %#" PRIx64 " %s: entry %u is %#" PRIx64,
				     table_pa, when, i, v);
			return;
		}
	}
}

void check_table_attach(struct ptemu_machine *m, uint64_t table_pa)
{
	struct table_slot *s = slot_of(m, table_pa);
	uint32_t old = __atomic_exchange_n(&s->state, TABLE_ATTACHED, __ATOMIC_SEQ_CST);

	__atomic_store_n(&s->attached_at, check_event(m), __ATOMIC_SEQ_CST);
	digest_event(m, DIGEST_TABLE, table_pa, TABLE_ATTACHED);
	if (old != TABLE_ALLOCATED)
		ptemu_report(m, VIOLATION_PT_USE_AFTER_FREE, table_pa,
			     "table %#" PRIx64 " installed in a pmd while %s", table_pa,
			     ptemu_table_state_name(old));
	/* Every table is allocated empty: an entry here was left by a table freed with live
	 * entries whose memory was handed out again (an s390 half is not cleared on reuse). */
	report_if_not_empty(m, table_pa, VIOLATION_INSTALLED_TABLE_NOT_EMPTY, "installed in a pmd");
}

void check_table_detach(struct ptemu_machine *m, uint64_t table_pa)
{
	struct table_slot *s = slot_of(m, table_pa);

	__atomic_store_n(&s->state, TABLE_DETACHED, __ATOMIC_SEQ_CST);
	__atomic_store_n(&s->detached_at, check_event(m), __ATOMIC_SEQ_CST);
	digest_event(m, DIGEST_TABLE, table_pa, TABLE_DETACHED);
	if (__atomic_load_n(&s->maps, __ATOMIC_SEQ_CST) > 0)
		ptemu_stat_add(&m->stats, PTEMU_STAT_detach_with_reader, 1);
	if (__atomic_load_n(&s->walkers, __ATOMIC_SEQ_CST) > 0)
		ptemu_stat_add(&m->stats, PTEMU_STAT_walk_raced_detach, 1);
}

enum ptemu_table_state check_table_defer(struct ptemu_machine *m, uint64_t table_pa)
{
	struct table_slot *s = slot_of(m, table_pa);
	uint32_t old = __atomic_exchange_n(&s->state, TABLE_RCU_PENDING, __ATOMIC_SEQ_CST);

	__atomic_store_n(&s->deferred_stamp, check_rcu_stamp(), __ATOMIC_SEQ_CST);
	check_event(m);
	digest_event(m, DIGEST_TABLE, table_pa, TABLE_RCU_PENDING);
	if (old == TABLE_FREE) {
		/* Freed already, or never a table: pmd_pgtable of a pmd that no longer points
		 * to one is the page of pfn 0. It stays free, so a second such defer is caught
		 * the same way. */
		__atomic_store_n(&s->state, TABLE_FREE, __ATOMIC_SEQ_CST);
		ptemu_report(m, VIOLATION_PT_USE_AFTER_FREE, table_pa,
			     "pte_free_defer of table %#" PRIx64 ", which is free", table_pa);
		return TABLE_FREE;
	}
	if (old != TABLE_DETACHED)
		ptemu_report(m, VIOLATION_PT_FREE_WHILE_MAPPED, table_pa,
			     "pte_free_defer of table %#" PRIx64 " while %s (not detached)",
			     table_pa, ptemu_table_state_name(old));
	report_if_not_empty(m, table_pa, VIOLATION_DETACHED_TABLE_NOT_EMPTY, "handed to pte_free_defer");
	return (enum ptemu_table_state)old;
}

/* One order for call_rcu and the deferrals: a callback queued after a table's deferral
 * runs after a grace period that began after it. */
static uint64_t rcu_stamps;
/* The stamp of the RCU callback the calling thread is running, 0 outside one: the model
 * thread's (the scheduler's RCU thread), or the host thread's (liburcu's callback thread,
 * which never registers). */
static _Thread_local uint64_t host_running_callback_stamp;
static struct ptemu_thread_local_key running_callback_stamp_key = { sizeof(uint64_t), 0 };

static uint64_t *running_callback_stamp(void)
{
	return ptemu_thread_local(&running_callback_stamp_key, &host_running_callback_stamp);
}

uint64_t check_rcu_stamp(void)
{
	return __atomic_add_fetch(&rcu_stamps, 1, __ATOMIC_SEQ_CST);
}

uint64_t check_rcu_callback_enter(uint64_t queued_stamp)
{
	uint64_t outer = *running_callback_stamp();

	*running_callback_stamp() = queued_stamp;
	return outer;
}

void check_rcu_callback_leave(uint64_t outer)
{
	*running_callback_stamp() = outer;
}

enum ptemu_table_state check_table_free(struct ptemu_machine *m, uint64_t table_pa)
{
	struct table_slot *s = slot_of(m, table_pa);
	uint32_t old = __atomic_exchange_n(&s->state, TABLE_FREE, __ATOMIC_SEQ_CST);
	int32_t maps = __atomic_load_n(&s->maps, __ATOMIC_SEQ_CST);

	check_event(m);
	digest_event(m, DIGEST_TABLE, table_pa, TABLE_FREE);
	if (old == TABLE_FREE)
		ptemu_report(m, VIOLATION_PT_USE_AFTER_FREE, table_pa,
			     "table %#" PRIx64 " freed twice", table_pa);
	else if (maps > 0)
		ptemu_report(m, VIOLATION_PT_FREE_WHILE_MAPPED, table_pa,
			     "table %#" PRIx64 " freed (%s) while %d pte_offset_map pointer%s into it",
			     table_pa, ptemu_table_state_name(old), maps, maps == 1 ? " points" : "s point");
	else if (old == TABLE_ATTACHED)
		ptemu_report(m, VIOLATION_PT_FREE_WHILE_MAPPED, table_pa,
			     "table %#" PRIx64 " freed while a pmd still points at it", table_pa);
	else if (old == TABLE_RCU_PENDING &&
		 *running_callback_stamp() <= __atomic_load_n(&s->deferred_stamp, __ATOMIC_SEQ_CST))
		ptemu_report(m, VIOLATION_PT_FREE_BEFORE_GRACE_PERIOD, table_pa,
			     "table %#" PRIx64 " freed %s: nothing waited for a grace period after "
			     "its pte_free_defer", table_pa,
			     *running_callback_stamp() ? "by an RCU callback queued before it was deferred"
						       : "outside an RCU callback");
	return (enum ptemu_table_state)old;
}

enum ptemu_table_state check_table_state(const struct ptemu_machine *m, uint64_t table_pa)
{
	return (enum ptemu_table_state)slot_state(slot_of(m, table_pa));
}

uint32_t check_table_generation(const struct ptemu_machine *m, uint64_t table_pa)
{
	return __atomic_load_n(&slot_of(m, table_pa)->gen, __ATOMIC_SEQ_CST);
}

/* ---- accesses ----------------------------------------------------------------------- */

static struct ptemu_held_map *find_map(struct ptemu_thread *t, uint64_t slot)
{
	if (!t)
		return NULL;
	for (int i = t->nr_maps - 1; i >= 0; i--)
		if (t->maps[i].slot == slot)
			return &t->maps[i];
	return NULL;
}

static struct ptemu_spinlock *ptl_of(const struct ptemu_machine *m, uint64_t pa)
{
	return ptemu_table_ptl(m, pa);
}

static bool ptl_held_for(const struct ptemu_machine *m, uint64_t pa)
{
	return ptemu_holds_lock(ptl_of(m, pa));
}

/* Did this thread take the ptl of the table holding pa while that table was attached?
 * Detaching takes the same lock, so then the table stays put until the thread lets go.
 * The lock is the page's, shared by every half or fragment in it: holding it says nothing
 * of a table there that was already detached when it was taken. */
static bool ptl_taken_while_attached(const struct ptemu_machine *m, const struct ptemu_thread *t,
				     const struct table_slot *s, uint64_t pa)
{
	const struct ptemu_spinlock *ptl = ptl_of(m, pa);
	uint64_t attached = __atomic_load_n(&s->attached_at, __ATOMIC_SEQ_CST);
	uint64_t detached = __atomic_load_n(&s->detached_at, __ATOMIC_SEQ_CST);

	for (int i = 0; t && i < t->nr_held; i++)
		if (t->held[i].lock == ptl)
			return attached && attached <= t->held[i].since && detached > t->held[i].since;
	return false;
}

/* A detached table may be touched only through a map taken inside an RCU section that is
 * still open (kernel-spec 5.2), or under the table's ptl taken while it was attached. */
static bool detached_access_protected(const struct ptemu_machine *m, struct ptemu_thread *t,
				      const struct table_slot *s, const struct ptemu_held_map *hm,
				      uint64_t pa)
{
	if (hm && hm->rcu_section && t->rcu_depth > 0 && t->rcu_section == hm->rcu_section)
		return true;
	return ptl_taken_while_attached(m, t, s, pa);
}

/* Common part of read and write checks; returns the slot state seen. */
static uint32_t check_access(struct ptemu_machine *m, uint64_t pte_pa, const char *what)
{
	uint64_t idx = slot_index(m, pte_pa);
	struct table_slot *s = &m->checker->slots[idx];
	struct ptemu_thread *t = ptemu_current();
	struct ptemu_held_map *hm = find_map(t, idx);
	uint32_t st = slot_state(s);

	check_event(m);
	digest_event(m, what[0] == 'r' ? DIGEST_READ : DIGEST_WRITE, pte_pa, st);
	if (st == TABLE_FREE) {
		ptemu_report(m, VIOLATION_PT_USE_AFTER_FREE, pte_pa,
			     "%s of entry %#" PRIx64 " in a freed table", what, pte_pa);
	} else if (hm && hm->gen != __atomic_load_n(&s->gen, __ATOMIC_SEQ_CST)) {
		ptemu_report(m, VIOLATION_PT_USE_AFTER_FREE, pte_pa,
			     "%s of entry %#" PRIx64 " through a map of an earlier table there "
			     "(freed and reused)", what, pte_pa);
	} else if ((st == TABLE_DETACHED || st == TABLE_RCU_PENDING) &&
		   !detached_access_protected(m, t, s, hm, pte_pa)) {
		ptemu_report(m, VIOLATION_PT_READ_UNPROTECTED, pte_pa,
			     "%s of entry %#" PRIx64 " in a %s table outside the RCU section that "
			     "mapped it, without its ptl taken while it was attached", what, pte_pa,
			     ptemu_table_state_name(st));
	}
	return st;
}

void check_pte_read(struct ptemu_machine *m, uint64_t pte_pa)
{
	check_access(m, pte_pa, "read");
}

void check_hw_twin(struct ptemu_machine *m, uint64_t pte_pa, uint64_t pte)
{
	const struct ptemu_arch *a = m->arch;

	if (!a->pte_hw_twin || !ptl_held_for(m, pte_pa))
		return;
	uint64_t hw = ptemu_table_entry_load(m, pte_pa + a->hw_twin_offset, ptemu_pte_level(a), 0);

	if (hw != a->pte_hw_twin(pte))
		ptemu_report(m, VIOLATION_HW_TWIN_MISMATCH, pte_pa,
			     "PTE %#" PRIx64 " is %#" PRIx64 " but its hardware twin is %#" PRIx64
			     " (set_pte_ext writes %#" PRIx64 ")", pte_pa, pte, hw, a->pte_hw_twin(pte));
}

void check_pte_write(struct ptemu_machine *m, uint64_t pte_pa)
{
	uint32_t st = check_access(m, pte_pa, "write");

	if (st == TABLE_DETACHED || st == TABLE_RCU_PENDING)
		ptemu_report(m, VIOLATION_PTE_IN_DETACHED_TABLE, pte_pa,
			     "PTE %#" PRIx64 " written in a %s table", pte_pa,
			     ptemu_table_state_name(st));
	if (!ptl_held_for(m, pte_pa))
		ptemu_report(m, VIOLATION_PTL_NOT_HELD, pte_pa,
			     "PTE %#" PRIx64 " modified without its table's ptl", pte_pa);
}

void check_walk_read(struct ptemu_machine *m, uint64_t table_pa, unsigned level, bool pte_level)
{
	if (!pte_level) {
		struct page *page = pfn_to_page(m->phys, table_pa >> m->arch->page_shift);

		if (!PageFlag(page, PG_table))
			ptemu_report(m, VIOLATION_PT_USE_AFTER_FREE, table_pa,
				     "walk read a level-%u table at %#" PRIx64 " that is not a table",
				     level, table_pa);
		return;
	}
	uint32_t st = slot_state(slot_of(m, table_pa));
	struct ptemu_thread *t = ptemu_current();

	if (st == TABLE_FREE)
		ptemu_report(m, VIOLATION_PT_USE_AFTER_FREE, table_pa,
			     "walk read freed PTE table %#" PRIx64, table_pa);
	else if (st == TABLE_RCU_PENDING &&
		 !(m->arch->walker_is_rcu_reader && t && t->rcu_depth > 0))
		ptemu_report(m, VIOLATION_PT_READ_UNPROTECTED, table_pa,
			     "walk read PTE table %#" PRIx64 " after its invalidation completed "
			     "(rcu-pending), outside any RCU section", table_pa);
}

void check_walk_enter(struct ptemu_machine *m, uint64_t table_pa)
{
	__atomic_add_fetch(&slot_of(m, table_pa)->walkers, 1, __ATOMIC_SEQ_CST);
}

void check_walk_leave(struct ptemu_machine *m, uint64_t table_pa)
{
	__atomic_sub_fetch(&slot_of(m, table_pa)->walkers, 1, __ATOMIC_SEQ_CST);
}

/* ---- maps --------------------------------------------------------------------------- */

void check_map(struct ptemu_machine *m, uint64_t pte_pa)
{
	uint64_t idx = slot_index(m, pte_pa);
	struct table_slot *s = &m->checker->slots[idx];
	struct ptemu_thread *t = ptemu_current();

	__atomic_add_fetch(&s->maps, 1, __ATOMIC_SEQ_CST);
	check_event(m);
	digest_event(m, DIGEST_MAP, pte_pa, 0);
	if (slot_state(s) == TABLE_FREE)
		ptemu_report(m, VIOLATION_PT_USE_AFTER_FREE, pte_pa,
			     "pte_offset_map of freed table %#" PRIx64, table_base(m, pte_pa));
	if (!t)
		return;
	if (t->nr_maps == PTEMU_MAX_MAPS) {
		ptemu_report(m, VIOLATION_MAP_UNMAP_IMBALANCE, pte_pa,
			     "more than %d tables mapped at once", PTEMU_MAX_MAPS);
		__atomic_sub_fetch(&s->maps, 1, __ATOMIC_SEQ_CST);
		return;
	}
	t->maps[t->nr_maps++] = (struct ptemu_held_map){
		.slot = idx,
		.gen = __atomic_load_n(&s->gen, __ATOMIC_SEQ_CST),
		.rcu_section = t->rcu_depth > 0 ? t->rcu_section : 0,
	};
}

static void drop_map(struct ptemu_machine *m, struct ptemu_thread *t, int i)
{
	__atomic_sub_fetch(&m->checker->slots[t->maps[i].slot].maps, 1, __ATOMIC_SEQ_CST);
	memmove(&t->maps[i], &t->maps[i + 1], (size_t)(t->nr_maps - i - 1) * sizeof(t->maps[0]));
	t->nr_maps--;
}

void check_unmap(struct ptemu_machine *m, uint64_t pte_pa)
{
	uint64_t idx = slot_index(m, pte_pa);
	struct ptemu_thread *t = ptemu_current();

	check_event(m);
	digest_event(m, DIGEST_UNMAP, pte_pa, 0);
	if (!t)
		return;
	for (int i = t->nr_maps - 1; i >= 0; i--) {
		if (t->maps[i].slot == idx) {
			drop_map(m, t, i);
			return;
		}
	}
	ptemu_report(m, VIOLATION_MAP_UNMAP_IMBALANCE, pte_pa,
		     "pte_unmap of %#" PRIx64 " without a matching pte_offset_map", pte_pa);
}

void check_op_end(const char *op)
{
	struct ptemu_thread *t = ptemu_current();

	if (!t)
		return;
	if (t->nr_maps)
		ptemu_report(t->machine, VIOLATION_MAP_UNMAP_IMBALANCE, 0,
			     "%d pte_offset_map pointer%s not unmapped at the end of %s", t->nr_maps,
			     t->nr_maps == 1 ? "" : "s", op);
	if (t->rcu_depth)
		ptemu_report(t->machine, VIOLATION_RCU_IMBALANCE, 0,
			     "RCU read-side depth %d at the end of %s", t->rcu_depth, op);
	/* Unwind, so that the run goes on and grace periods can complete. */
	while (t->nr_maps)
		drop_map(t->machine, t, t->nr_maps - 1);
	while (t->rcu_depth)
		rcu_read_unlock();
}

void check_leaks(struct ptemu_machine *m, uint64_t pages_expected_in_use)
{
	struct ptemu_phys_stats s = phys_stats(m->phys);

	pages_expected_in_use += m->arch_mem_pages;
	if (s.pages_allocated > pages_expected_in_use)
		ptemu_report(m, VIOLATION_LEAK, 0,
			     "%" PRIu64 " pages still allocated after teardown (%" PRIu64
			     " expected), %" PRIu64 " of them page tables",
			     s.pages_allocated, pages_expected_in_use, s.table_pages);
}
