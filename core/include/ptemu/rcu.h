/* RCU wrappers over liburcu (memb flavour). rcu_read_lock/unlock track the calling
 * thread's depth and section number for the checker; call_rcu carries deferred page-table
 * frees; rcu_barrier waits for every callback queued so far.
 *
 * liburcu's headers are kept out of this one: they #define the kernel names used here. */
#ifndef PTEMU_RCU_H
#define PTEMU_RCU_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct ptemu_rcu_head {
	void *urcu_head[2];	/* liburcu's struct rcu_head; rcu.c asserts the size */
	void (*func)(struct ptemu_rcu_head *head);
	uint64_t queued_stamp;	/* check_rcu_stamp() at call_rcu */
};

void rcu_read_lock(void);
void rcu_read_unlock(void);
void call_rcu(struct ptemu_rcu_head *head, void (*func)(struct ptemu_rcu_head *head));
void synchronize_rcu(void);
/* Waits for every callback queued, and for those they queue in turn: unlike the kernel's,
 * it returns only once none is left (teardown's need). */
void rcu_barrier(void);

#ifdef __cplusplus
}
#endif
#endif
