/* Locks and ptemu threads.
 *
 * Every lock in core/ and mmu/ is one of these wrappers. Each acquisition and release
 * records the lock in the calling thread's held-lock list, which the checker uses for
 * ptl-not-held, sleep-in-atomic and lock-order; each wrapper is a real function so that
 * the deterministic scheduler can make it a scheduling point.
 *
 * Fields are plain integers accessed with __atomic builtins so that C++ tests can include
 * this header.
 */
#ifndef PTEMU_SYNC_H
#define PTEMU_SYNC_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct ptemu_machine;

/* Lock classes in the order kernel-spec 5.6 allows them to nest (outermost first). A lock
 * may be taken only while every held lock has a lower class, except by trylock or as a
 * declared nesting (ptl inside ptl, pgtable-list lock inside ptl). */
enum ptemu_lock_class {
	LOCK_CLASS_MMAP,	/* mm->mmap_lock (rwsem, sleeps) */
	LOCK_CLASS_FOLIO,	/* folio lock (sleeps) */
	LOCK_CLASS_I_MMAP,	/* mapping->i_mmap_rwsem (sleeps) */
	LOCK_CLASS_PML,		/* pmd lock / mm->page_table_lock (spin) */
	LOCK_CLASS_PTL,		/* split PTE-table lock (spin) */
	LOCK_CLASS_PGTABLE_LIST,	/* mm->context.lock around fragment lists (spin) */
	LOCK_CLASS_XA,		/* a file's page-cache index lock, xa_lock (spin) */
	LOCK_CLASS_TEST,	/* locks private to tests and tools (sleeps) */
	LOCK_CLASS_COUNT
};

const char *ptemu_lock_class_name(enum ptemu_lock_class c);

struct ptemu_spinlock {
	int locked;
	uint8_t lclass;
};

/* What a sleeping lock is: a word, not a pthread lock, as a kernel lock belongs to no host
 * thread and a ptemu thread need not stay on one (glibc's rwlock tells a writer's unlock
 * by the host thread that calls it). count: readers, or -1 for a writer; sleepers:
 * free-running threads asleep on count. */
struct ptemu_sleep_word {
	int count;
	int sleepers;
};

struct ptemu_rwsem {
	struct ptemu_sleep_word w;
	uint8_t lclass;
};

struct ptemu_mutex {
	struct ptemu_sleep_word w;
	uint8_t lclass;
};

void ptemu_spin_init(struct ptemu_spinlock *l, enum ptemu_lock_class c);
void spin_lock(struct ptemu_spinlock *l);
/* For a second lock of the same class taken deliberately (kernel spin_lock_nested). */
void spin_lock_nested(struct ptemu_spinlock *l);
bool spin_trylock(struct ptemu_spinlock *l);
void spin_unlock(struct ptemu_spinlock *l);
bool spin_is_locked(const struct ptemu_spinlock *l);

void ptemu_rwsem_init(struct ptemu_rwsem *s, enum ptemu_lock_class c);
void ptemu_rwsem_destroy(struct ptemu_rwsem *s);
void down_read(struct ptemu_rwsem *s);
void down_write(struct ptemu_rwsem *s);
bool down_read_trylock(struct ptemu_rwsem *s);
bool down_write_trylock(struct ptemu_rwsem *s);
void up_read(struct ptemu_rwsem *s);
void up_write(struct ptemu_rwsem *s);

void ptemu_mutex_init(struct ptemu_mutex *m, enum ptemu_lock_class c);
void ptemu_mutex_destroy(struct ptemu_mutex *m);
void mutex_lock(struct ptemu_mutex *m);
void mutex_unlock(struct ptemu_mutex *m);

/* ---- ptemu threads ---------------------------------------------------------------- */

#define PTEMU_MAX_HELD_LOCKS 16
#define PTEMU_MAX_MAPS 8

struct ptemu_held_lock {
	const void *lock;
	uint8_t lclass;
	bool sleeps;
	bool exclusive;		/* a spinlock, a mutex, a folio lock, an rwsem taken for write */
	uint64_t since;		/* the checker's event number when it was acquired */
};

/* One pte_offset_map pointer the thread holds: the table slot and the generation of the
 * table it mapped, and the RCU section it was mapped in. */
struct ptemu_held_map {
	uint64_t slot;
	uint32_t gen;
	uint64_t rcu_section;	/* 0 when mapped outside any RCU section */
};

#define PTEMU_THREAD_LOCALS 8

struct ptemu_thread {
	struct ptemu_machine *machine;
	char name[32];
	int id;
	int rcu_depth;
	uint64_t rcu_section;	/* sequence number of the current outermost RCU section */
	uint64_t rcu_sections_entered;
	bool rcu_on_urcu;	/* the outermost section holds liburcu's read lock */
	int nr_held;
	struct ptemu_held_lock held[PTEMU_MAX_HELD_LOCKS];
	int nr_maps;
	struct ptemu_held_map maps[PTEMU_MAX_MAPS];
	struct ptemu_thread *prev;	/* the registration this one stacks on, if any */
	int sched_id;		/* index in the deterministic scheduler, -1 when not scheduled */
	/* Folio locks held: counted, with one held-lock entry for the class, as lockdep does
	 * not track them one by one either (collapse_file holds hundreds). */
	int folios_held;
	/* ptemu_thread_local's storage, by key. */
	void *locals[PTEMU_THREAD_LOCALS];
};

/* Storage of the model's thread, for state the kernel keeps per CPU and that must not
 * follow the host thread: in a deterministic run a ptemu thread runs on whichever host
 * thread holds the baton. `key` is zero-initialised with its size set; `host` is the host
 * thread's own instance, for threads that never registered (which stay on theirs). The
 * storage starts zeroed and lives until the thread unregisters. */
struct ptemu_thread_local_key {
	size_t size;
	int slot;	/* 0 until first used, then slot + 1 */
};
void *ptemu_thread_local(struct ptemu_thread_local_key *key, void *host);

/* Registers the calling thread with a machine and with RCU; every thread that touches the
 * model must do this first. A second registration stacks on the first until its
 * unregister. Returns NULL when out of memory. */
struct ptemu_thread *ptemu_thread_register(struct ptemu_machine *m, const char *name);
void ptemu_thread_unregister(void);
/* The calling thread's record (NULL if it never registered): the kernel's `current`. */
struct ptemu_thread *ptemu_current(void);

/* A call that may sleep (GFP_KERNEL allocation, waiting): sleep-in-atomic inside RCU or
 * under a spinlock. */
void might_sleep(const char *what);

/* Is a lock held by the calling thread? */
bool ptemu_holds_lock(const void *lock);
/* ... and exclusively (an rwsem for write)? */
bool ptemu_holds_lock_exclusive(const void *lock);
/* Does the calling thread hold some lock of class c exclusively? */
bool ptemu_holds_class_exclusive(enum ptemu_lock_class c);

#ifdef __cplusplus
}
#endif
#endif
