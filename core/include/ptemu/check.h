/* The invariant checker (DESIGN.md section 5, kernel-spec section 5).
 *
 * It sees only what happens (maps, accesses, lock operations, table lifetime events); it
 * never reads which bug is injected. Lifetime state is kept per PTE table (per half or
 * fragment where tables share a page) with a generation number that every map captures,
 * so that reuse of one half is visible to a stale pointer into it. */
#ifndef PTEMU_CHECK_H
#define PTEMU_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct ptemu_machine;

#define PTEMU_VIOLATION_LIST(X)                                     \
	X(PT_USE_AFTER_FREE, "pt-use-after-free")                   \
	X(PT_READ_UNPROTECTED, "pt-read-unprotected")               \
	X(PT_FREE_WHILE_MAPPED, "pt-free-while-mapped")             \
	X(PTE_IN_DETACHED_TABLE, "pte-in-detached-table")           \
	X(DETACHED_TABLE_NOT_EMPTY, "detached-table-not-empty")     \
	X(PTL_NOT_HELD, "ptl-not-held")                             \
	X(RCU_IMBALANCE, "rcu-imbalance")                           \
	X(MAP_UNMAP_IMBALANCE, "map-unmap-imbalance")               \
	X(SLEEP_IN_ATOMIC, "sleep-in-atomic")                       \
	X(LOCK_ORDER, "lock-order")                                 \
	X(TLB_MAPS_FREED_PAGE, "tlb-maps-freed-page")               \
	X(DATA_MISMATCH, "data-mismatch")                           \
	X(COUNTER_MISMATCH, "counter-mismatch")                     \
	X(LEAK, "leak")                                             \
	X(HANG, "hang")                                             \
	X(INSTALLED_TABLE_NOT_EMPTY, "installed-table-not-empty")   \
	X(HW_TWIN_MISMATCH, "hw-twin-mismatch")                     \
	X(PT_FREE_BEFORE_GRACE_PERIOD, "pt-free-before-grace-period")

enum ptemu_violation_kind {
#define PTEMU_VIOLATION_ENUM(id, name) VIOLATION_##id,
	PTEMU_VIOLATION_LIST(PTEMU_VIOLATION_ENUM)
#undef PTEMU_VIOLATION_ENUM
	VIOLATION_KIND_COUNT
};

const char *ptemu_violation_name(enum ptemu_violation_kind k);
/* Returns VIOLATION_KIND_COUNT for an unknown name. */
enum ptemu_violation_kind ptemu_violation_from_name(const char *name);

struct ptemu_violation {
	enum ptemu_violation_kind kind;
	int thread;		/* ptemu thread id, -1 for an unregistered context */
	char thread_name[32];
	uint64_t addr;		/* table or entry physical address, or virtual address */
	uint64_t event;		/* event number at which it was seen */
	char message[200];
};

enum ptemu_check_mode {
	PTEMU_CHECK_CONTINUE,	/* record every violation and keep going */
	PTEMU_CHECK_FAIL_FAST,	/* record the first, then ask every thread to stop */
};

/* Lifetime of one PTE table (DESIGN.md section 3). */
enum ptemu_table_state {
	TABLE_FREE,
	TABLE_ALLOCATED,	/* allocated, not yet in a pmd */
	TABLE_ATTACHED,		/* a pmd points at it */
	TABLE_DETACHED,		/* its pmd was cleared; not yet handed to pte_free_defer */
	TABLE_RCU_PENDING,	/* pte_free_defer'd, waiting for a grace period */
};
const char *ptemu_table_state_name(enum ptemu_table_state s);

struct ptemu_checker *check_create(struct ptemu_machine *m, enum ptemu_check_mode mode);
void check_destroy(struct ptemu_checker *c);

/* Every checked operation takes an event number; violations carry it. */
uint64_t check_event(struct ptemu_machine *m);
/* The last event number handed out, without taking one: when a lock was acquired. */
uint64_t check_event_now(const struct ptemu_machine *m);

void ptemu_report(struct ptemu_machine *m, enum ptemu_violation_kind kind, uint64_t addr,
		  const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Set once fail-fast mode has seen a violation: long-running loops poll it. */
bool ptemu_should_stop(const struct ptemu_machine *m);
uint64_t check_violation_count(const struct ptemu_machine *m);
uint64_t check_kind_count(const struct ptemu_machine *m, enum ptemu_violation_kind kind);
/* Recorded violations (the first PTEMU_MAX_RECORDED; counts go on beyond). */
#define PTEMU_MAX_RECORDED 256
const struct ptemu_violation *check_violations(const struct ptemu_machine *m, size_t *n);

/* Table lifetime events, by table physical address. */
void check_table_alloc(struct ptemu_machine *m, uint64_t table_pa);
void check_table_attach(struct ptemu_machine *m, uint64_t table_pa);
void check_table_detach(struct ptemu_machine *m, uint64_t table_pa);
/* At pte_free_defer: the table must be detached and empty (arch pte_none). Returns the
 * state it had: TABLE_FREE is a free of no table, which must go no further. */
enum ptemu_table_state check_table_defer(struct ptemu_machine *m, uint64_t table_pa);
/* The table's destructor; returns the state it had. A table handed to pte_free_defer may be
 * destructed only by an RCU callback queued after that: anything else freed it before its
 * grace period (pt-free-before-grace-period). */
enum ptemu_table_state check_table_free(struct ptemu_machine *m, uint64_t table_pa);
enum ptemu_table_state check_table_state(const struct ptemu_machine *m, uint64_t table_pa);
uint32_t check_table_generation(const struct ptemu_machine *m, uint64_t table_pa);

/* RCU order: call_rcu stamps each callback; every RCU callback the grace-period machinery
 * runs (liburcu's or the scheduler's) is bracketed with its stamp, enter returning what
 * leave restores. */
uint64_t check_rcu_stamp(void);
uint64_t check_rcu_callback_enter(uint64_t queued_stamp);
void check_rcu_callback_leave(uint64_t outer);

/* Entry accesses through the pte_offset_map family (pte_pa: the entry's address). */
void check_pte_read(struct ptemu_machine *m, uint64_t pte_pa);
/* A PTE read under its ptl whose hardware twin (classic arm) is not what set_pte_ext makes
 * of it: every writer holds the ptl and writes both, so none may be half-done. */
void check_hw_twin(struct ptemu_machine *m, uint64_t pte_pa, uint64_t pte);
void check_pte_write(struct ptemu_machine *m, uint64_t pte_pa);
/* A hardware or software walker reading an entry of a table at level `level`. */
void check_walk_read(struct ptemu_machine *m, uint64_t table_pa, unsigned level, bool pte_level);
/* A walker entering/leaving a PTE table (walk_raced_detach). */
void check_walk_enter(struct ptemu_machine *m, uint64_t table_pa);
void check_walk_leave(struct ptemu_machine *m, uint64_t table_pa);

/* pte_offset_map bookkeeping: a map of the table holding pte_pa, and its unmap. */
void check_map(struct ptemu_machine *m, uint64_t pte_pa);
void check_unmap(struct ptemu_machine *m, uint64_t pte_pa);

/* The end of a syscall, fault, scan step or test operation: RCU depth and maps must be
 * balanced and no lock held. An imbalance is reported and then unwound, so that a leaked
 * RCU read lock becomes a violation instead of an rcu_barrier hang. */
void check_op_end(const char *op);

/* After teardown and rcu_barrier: every page except the reserved one must be free. */
void check_leaks(struct ptemu_machine *m, uint64_t pages_expected_in_use);

#ifdef __cplusplus
}
#endif
#endif
