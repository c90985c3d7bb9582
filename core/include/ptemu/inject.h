/* Bug injection: each removes one safety step of the protocol, on a path where that step
 * is the only guard (DESIGN.md section 5). Core and models consult ptemu_injected() at
 * the step; the checker never does. */
#ifndef PTEMU_INJECT_H
#define PTEMU_INJECT_H

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

struct ptemu_machine;
struct ptemu_arch;

enum ptemu_injection {
	INJECT_NONE,
	INJECT_FREE_IMMEDIATELY,	/* a retracted table is pte_free'd, not pte_free_defer'd */
	INJECT_NO_RCU_READ_LOCK,	/* __pte_offset_map maps outside an RCU section */
	INJECT_SKIP_PTE_UNMAP,		/* a successful map is left without its pte_unmap */
	INJECT_NO_PMD_RECHECK,		/* pte_offset_map_lock skips pmd_same under ptl */
	INJECT_NO_TLB_FLUSH,		/* pmdp_collapse_flush clears without invalidation */
	INJECT_LEAF_FLUSH_ONLY,		/* pmdp_collapse_flush invalidates the last level only */
	INJECT_S390_IGNORE_PENDING,	/* s390 alloc ignores a half's PP bit */
	INJECT_S390_RELIST_ACTIVE,	/* s390 puts an Active page back on pgtable_list */
	INJECT_RETRACT_NO_RECHECK,	/* retract without 6.14's pmd re-check under pml (v6.6) */
	INJECT_CPMT_NO_RECHECK,		/* collapse_pte_mapped_thp without 6.13's pmd re-check */
	INJECT_SPARC_MISS_IRQS_ON,	/* sparc64's TSB-miss walk is no RCU read-side section */
	INJECT_SPARC_NO_TLB_BATCH,	/* sparc64 clears a PTE without tlb_batch_add */
	INJECT_PPC_V66_FRAG_DESTROY,	/* powerpc pte_frag_destroy ignores PG_active (v6.6) */
	INJECT_PPC_FRAG_REUSE,		/* powerpc hands a deferred fragment out again */
	INJECT_PPC_NO_PAGE_ACTIVE,	/* powerpc pte_free_defer without SetPageActive */
	INJECT_PPC_HASH_NO_BUSY,	/* ppc64-hash's hash_page without the BUSY handshake */
	INJECT_PPC_NO_SERIALIZE,	/* hash pmdp_collapse_flush without serialize_against_pte_lookup */
	INJECT_COUNT
};

struct ptemu_injection_info {
	enum ptemu_injection id;
	const char *name;
	const char *what;
	/* Offered only by models that list it in their model_injections mask. */
	bool model_specific;
	/* The configuration whose races reach it, as the tests' cases and issue 15's catch
	 * rates run it: --workload, --khugepaged on, --reclaim-empty-tables. */
	const char *workload;
	bool khugepaged;
	bool reclaim_empty_tables;
};

/* Whether a model contains the path the injection needs (DESIGN.md section 5): NULL, or
 * why the model has no such path. */
const char *ptemu_injection_why_not(enum ptemu_injection inj, const struct ptemu_arch *arch);
bool ptemu_injection_applies(enum ptemu_injection inj, const struct ptemu_arch *arch);

/* The offered injections (without INJECT_NONE), terminated by a NULL name. */
const struct ptemu_injection_info *ptemu_injections(void);
/* The entry of an injection, or NULL (INJECT_NONE, or not one). */
const struct ptemu_injection_info *ptemu_injection_find(enum ptemu_injection inj);
/* INJECT_COUNT for an unknown name. */
enum ptemu_injection ptemu_injection_from_name(const char *name);

bool ptemu_injected(const struct ptemu_machine *m, enum ptemu_injection inj);

#ifdef __cplusplus
}
#endif
#endif
