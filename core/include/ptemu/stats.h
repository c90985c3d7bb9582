/* Run counters, updated atomically from any thread. */
#ifndef PTEMU_STATS_H
#define PTEMU_STATS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* X-macro: every counter has one name, used for the struct, JSON and reports. */
#define PTEMU_STAT_LIST(X)                                                                  \
	X(pte_maps)               /* successful __pte_offset_map */                           \
	X(pte_map_none)           /* map failed: pmd none or migration */                     \
	X(pte_map_leaf)           /* map failed: pmd is a huge leaf */                        \
	X(pte_map_bad)            /* map failed: pmd bad (cleared by pmd_clear_bad) */         \
	X(pte_map_failures)       /* the caller saw a table, the map/lock then failed: detached */ \
	X(pmd_recheck_retries)    /* pte_offset_map_lock saw pmd_same fail under ptl */       \
	X(detach_with_reader)     /* a table was detached while someone had it mapped */      \
	X(walk_raced_detach)      /* a walker was inside a table when it was detached */      \
	X(tables_allocated)                                                                   \
	X(tables_freed_now)       /* never attached (pmd_install's loser), freed at once */   \
	X(tables_freed_attached_now) /* once attached, freed without a grace period */        \
	X(tables_freed_deferred)  /* handed to pte_free_defer */                              \
	X(tables_gathered)        /* handed to an mmu_gather (pte_free_tlb) */                \
	X(tables_rcu_freed)       /* freed after a grace period (pte_free_defer, gather) */   \
	X(pmd_installs)                                                                       \
	X(pmd_install_races)      /* pmd_install found the pmd populated: its table went unused */ \
	X(tlb_range_flushes)                                                                  \
	X(tlb_last_level_flushes) /* of which last-level only (TLBI VALE1IS): walk caches kept */ \
	X(faults)                 /* user faults handled */                                   \
	X(uaccess_faults)         /* copy_{to,from}_user faulted a page in (kernel-mode faults) */ \
	X(collapses)              /* collapse_file committed a huge folio */                  \
	X(retracts)               /* retract_page_tables detached a table */                  \
	X(retract_skips)          /* a VMA retract_page_tables passed over */                 \
	X(collapse_attempts)      /* collapse_file calls (khugepaged and MADV_COLLAPSE) */   \
	X(khugepaged_full_scans)  /* passes of the khugepaged thread over every mm slot */   \
	X(tables_reclaimed)       /* MADV_DONTNEED detached a table its zap left empty (6.14) */ \
	X(removal_saw_pmd_change) /* a table removal found its pmd changed under pml (6.13/6.14 re-checks) */ \
	X(fault_retries)          /* a fault found its table gone and let the access retry */ \
	X(access_fixups)          /* faults that only made a present PTE young and/or dirty */ \
	X(adjust_pte_calls)       /* make_coherent's adjust_pte of a shared alias (arm VIVT) */ \
	X(adjust_pte_no_table)    /* of which the alias had no PTE table (map failed) */      \
	X(tsb_hits)               /* sparc64: a TLB miss found its translation in the TSB */ \
	X(tsb_misses)             /* sparc64: a TSB miss ran the page-table walk */           \
	X(tsb_pmd_scans)          /* sparc64: set_pmd_at over a table read it to flush its PTEs */ \
	X(tsb_grows)              /* sparc64: a fault grew a TSB with the RSS (tsb_grow) */  \
	X(window_spills)          /* sparc64: register-window spill traps handled */          \
	X(window_fills)           /* sparc64: register-window fill traps handled */           \
	X(hpt_hits)               /* ppc64-hash: a TLB miss found its HPTE in the HPT */      \
	X(hpt_misses)             /* ppc64-hash: hash_page ran (no HPTE, or a store to a read-only one) */ \
	X(hpte_evictions)         /* ppc64-hash: hpte_remove made room in a full group */    \
	X(hpte_invalidations)     /* ppc64-hash: a flush by slot found its HPTE and cleared it */ \
	X(hash_page_busy)         /* ppc64-hash: hash_page found the PTE BUSY and let the access retry */ \
	X(pte_update_busy_waits)  /* a pte_update waited for a hash_page holding the entry BUSY */ \
	X(hw_walks)               /* logical-TLB misses: the model's walker ran */           \
	X(hw_refills)             /* Unicorn's TLB missed and the logical TLB had the page */ \
	X(hw_flushes)             /* Unicorn's whole TLB flushed (it has no per-page flush) */

enum ptemu_stat {
#define PTEMU_STAT_ENUM(n) PTEMU_STAT_##n,
	PTEMU_STAT_LIST(PTEMU_STAT_ENUM)
#undef PTEMU_STAT_ENUM
	PTEMU_STAT_COUNT
};

struct ptemu_stats {
	uint64_t v[PTEMU_STAT_COUNT];
};

const char *ptemu_stat_name(enum ptemu_stat s);

static inline void ptemu_stat_add(struct ptemu_stats *s, enum ptemu_stat k, uint64_t n)
{
	__atomic_fetch_add(&s->v[k], n, __ATOMIC_RELAXED);
}
static inline uint64_t ptemu_stat_get(const struct ptemu_stats *s, enum ptemu_stat k)
{
	return __atomic_load_n(&s->v[k], __ATOMIC_RELAXED);
}

#ifdef __cplusplus
}
#endif
#endif
