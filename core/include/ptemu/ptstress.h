/* A page-table stress of the core alone (no guest): worker threads map, lock and update
 * PTEs and read them locklessly at random addresses while a retractor detaches whole PTE
 * tables the way retract_page_tables does (pmd lock, then ptl; entries cleared, pmd
 * cleared and flushed, table freed by pte_free_defer). The checker judges the run. */
#ifndef PTEMU_PTSTRESS_H
#define PTEMU_PTSTRESS_H

#include <stdbool.h>
#include <stdint.h>

#include <ptemu/sched.h>

#ifdef __cplusplus
extern "C" {
#endif

struct ptemu_machine;

struct ptemu_pt_stress_config {
	unsigned workers;	/* 1..32 */
	unsigned tables;	/* PMD ranges in play, 1..4096 */
	uint64_t seed;
	double seconds;		/* wall-clock bound of the run */
	uint64_t max_ops;	/* per worker; 0: only the time bound */
	/* Deterministic: a scheduler with this configuration runs the workers, the
	 * retractor and RCU; the run is bounded by max_ops (required), not by time. */
	bool deterministic;
	struct ptemu_sched_config sched;
};

struct ptemu_pt_stress_result {
	uint64_t locked_updates;	/* pte_offset_map_lock succeeded and a PTE was written */
	uint64_t lockless_reads;	/* pte_offset_map succeeded and entries were read */
	uint64_t map_failed;		/* either map returned NULL */
	uint64_t retracts;		/* tables detached and freed by the retractor */
	double elapsed;
	uint64_t digest;		/* deterministic runs: the run digest */
	uint64_t steps;
};

/* 0 on completion (the verdict is in the checker), -1 with errno-style failure if threads
 * or memory could not be had. Leaves every page free again and checks for leaks. */
int ptemu_pt_stress(struct ptemu_machine *m, const struct ptemu_pt_stress_config *cfg,
		    struct ptemu_pt_stress_result *res);

#ifdef __cplusplus
}
#endif
#endif
