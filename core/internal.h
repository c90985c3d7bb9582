/* Core-private declarations shared between core/ files. Not for mmu/ or tests. */
#ifndef PTEMU_CORE_INTERNAL_H
#define PTEMU_CORE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ptemu_machine;

void ptemu_rcu_register_thread(void);
void ptemu_rcu_unregister_thread(void);

/* The held-lock bookkeeping behind every lock wrapper, for locks built elsewhere (the
 * folio lock). */
void ptemu_lock_acquire_check(const void *lock, uint8_t lclass, bool sleeps, bool nested);
void ptemu_lock_acquired(const void *lock, uint8_t lclass, bool sleeps, bool exclusive);
void ptemu_lock_released(const void *lock);

struct ptemu_thread;
/* A scheduled thread resumed after a baton pass, maybe on another host thread: it is
 * `current` there (sched.c). */
void ptemu_thread_resumed(struct ptemu_thread *t);
/* Scheduler membership of a registering or exiting thread (sync.c). */
void ptemu_sched_attach(struct ptemu_thread *t);
void ptemu_sched_detach(struct ptemu_thread *t);

/* Fatal misuse of the API by a caller (not a protocol violation): message and abort. */
_Noreturn void ptemu_bug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Room for element n of an array that grows by doubling from `first` elements: returns
 * the array, reallocated when n == *cap. The host out of memory is fatal (`what`). */
void *ptemu_array_reserve(void *arr, size_t *cap, size_t n, size_t elem, size_t first,
			  const char *what);

/* The host's futex: sleeps while *word == val (or until woken; callers re-check), and
 * wakes up to n sleepers on word. */
void ptemu_futex_wait(int *word, int val);
void ptemu_futex_wake(int *word, int n);

/* The calling thread's machine; a thread that never registered is a caller bug. */
struct ptemu_machine *ptemu_current_machine(void);

#endif
