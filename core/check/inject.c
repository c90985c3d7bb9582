#include <string.h>

#include <ptemu/arch.h>
#include <ptemu/inject.h>
#include <ptemu/machine.h>

static const struct ptemu_injection_info injections[] = {
	{ INJECT_FREE_IMMEDIATELY, "free-immediately",
	  "retract and collapse_pte_mapped_thp free the detached table at once (pte_free, not pte_free_defer)", false,
	  "shmem-stress", true, false },
	{ INJECT_NO_RCU_READ_LOCK, "no-rcu-read-lock",
	  "pte_offset_map maps the table without entering an RCU read-side section", false,
	  "shmem-stress", true, false },
	{ INJECT_SKIP_PTE_UNMAP, "skip-pte-unmap",
	  "a successful pte_offset_map is not balanced by pte_unmap", false,
	  "shmem-stress", true, false },
	{ INJECT_NO_PMD_RECHECK, "no-pmd-recheck",
	  "pte_offset_map_lock does not re-check pmd_same after taking the ptl", false,
	  "dontneed-race", false, true },
	{ INJECT_NO_TLB_FLUSH, "no-tlb-flush",
	  "pmdp_collapse_flush clears the pmd without invalidating TLBs and walk caches (s390: "
	  "the lazy path of pmdp_flush_lazy, invalid bit set and purge left to the mm's next "
	  "flush, taken although other CPUs have the mm attached)", false,
	  "shmem-stress", true, false },
	{ INJECT_LEAF_FLUSH_ONLY, "leaf-flush-only",
	  "pmdp_collapse_flush invalidates the last level only (TLBI VALE1IS, not "
	  "flush_tlb_range's VAE1IS), so walk caches keep the detached table", false,
	  "shmem-stress", true, false },
	{ INJECT_S390_IGNORE_PENDING, "s390-ignore-pending-half",
	  "s390's page_table_alloc ignores the PP bit, handing out a half whose free by RCU "
	  "(page_table_free_rcu) is still in flight", true,
	  "munmap-race", true, false },
	{ INJECT_S390_RELIST_ACTIVE, "s390-relist-active-page",
	  "s390 puts an Active page (a half deferred by pte_free_defer) back on pgtable_list, "
	  "so the deferred half is handed out again before its grace period", true,
	  "shmem-stress", true, false },
	{ INJECT_RETRACT_NO_RECHECK, "retract-no-recheck",
	  "retract_page_tables as v6.6 wrote it: no check_pmd_state under the pmd lock (undoes "
	  "6.14's fix); reachable with --reclaim-empty-tables, which can empty the pmd first",
	  false,
	  "retract-reclaim", true, true },
	{ INJECT_CPMT_NO_RECHECK, "cpmt-no-recheck",
	  "collapse_pte_mapped_thp as v6.6 wrote it: no pmd_same re-check before removing the "
	  "table (undoes 6.13's fix); reachable with --reclaim-empty-tables",
	  false,
	  "retract-reclaim", true, true },
	{ INJECT_SPARC_MISS_IRQS_ON, "sparc-miss-irqs-on",
	  "sparc64's TSB-miss page-table walk runs as if interrupts were on: it is no RCU "
	  "read-side section, so a table pte_free_defer queued can be freed under it", true,
	  "shmem-stress", true, false },
	{ INJECT_SPARC_NO_TLB_BATCH, "sparc-no-tlb-batch",
	  "sparc64 clears a PTE without tlb_batch_add: no TSB flush and no demap, so the TSB "
	  "and TLBs keep mapping the old page", true,
	  "shmem-stress", true, false },
	{ INJECT_PPC_V66_FRAG_DESTROY, "ppc-v6.6-frag-destroy",
	  "powerpc's pte_frag_destroy at exit frees the mm's cursor page at once when its "
	  "count drops to 0, without looking at PG_active: a fragment of it still in its "
	  "grace period after pte_free_defer goes with it (v6.6; fixed upstream in 2026)", true,
	  "frag-rollover", true, false },
	{ INJECT_PPC_FRAG_REUSE, "ppc-frag-reuse",
	  "powerpc's pte_free_defer puts the fragment back in the mm's fragment cache: it is "
	  "handed out again while a lockless walker may still be inside it", true,
	  "shmem-stress", true, false },
	{ INJECT_PPC_NO_PAGE_ACTIVE, "ppc-no-page-active",
	  "powerpc's pte_free_defer without SetPageActive: when the page's last fragment goes "
	  "the page is freed at once, before the deferred fragment's grace period", true,
	  "frag-rollover", true, false },
	{ INJECT_PPC_HASH_NO_BUSY, "ppc-hash-no-busy",
	  "ppc64-hash's hash_page inserts its HPTE without the BUSY handshake on the PTE: a "
	  "pte_update that clears the PTE meanwhile neither waits nor finds the HPTE to flush, "
	  "which then maps a page that was unmapped", true,
	  "truncate-race", true, false },
	{ INJECT_PPC_NO_SERIALIZE, "ppc-no-serialize",
	  "ppc64-hash's pmdp_collapse_flush without serialize_against_pte_lookup. Expected to "
	  "stay clean: file collapse cleared every PTE of the table, and flushed its HPTE, "
	  "under the handshake before the retract, so a hash_page still in flight finds none "
	  "present and the detached table is RCU-protected; only anonymous collapse, which "
	  "copies from PTEs still mapped, needs the wait", true,
	  "shmem-stress", true, false },
	{ INJECT_NONE, NULL, NULL, false, NULL, false, false },
};

const struct ptemu_injection_info *ptemu_injections(void)
{
	return injections;
}

const struct ptemu_injection_info *ptemu_injection_find(enum ptemu_injection inj)
{
	for (const struct ptemu_injection_info *i = injections; i->name; i++)
		if (i->id == inj)
			return i;
	return NULL;
}

enum ptemu_injection ptemu_injection_from_name(const char *name)
{
	if (!strcmp(name, "none"))
		return INJECT_NONE;
	for (const struct ptemu_injection_info *i = injections; i->name; i++)
		if (!strcmp(i->name, name))
			return i->id;
	return INJECT_COUNT;
}

/* The injections that remove a step of collapse or retraction. */
static bool needs_collapse(enum ptemu_injection inj)
{
	return inj == INJECT_FREE_IMMEDIATELY || inj == INJECT_NO_TLB_FLUSH ||
	       inj == INJECT_LEAF_FLUSH_ONLY || inj == INJECT_RETRACT_NO_RECHECK ||
	       inj == INJECT_CPMT_NO_RECHECK;
}

const char *ptemu_injection_why_not(enum ptemu_injection inj, const struct ptemu_arch *arch)
{
	const struct ptemu_injection_info *i = ptemu_injection_find(inj);

	if (inj == INJECT_NONE)
		return NULL;
	if (!i)
		return "no such injection";
	if (i->model_specific)
		return (arch->model_injections >> inj) & 1u ? NULL : "a step of another model's own code";
	if (needs_collapse(inj) && !arch->pmd_leaf_shift)
		return "no THP, so no collapse and no retraction";
	if (inj == INJECT_NO_TLB_FLUSH && arch->retract_flush == PTEMU_RETRACT_FLUSH_NONE)
		return "retract issues no invalidation here, so there is none to leave out";
	if (inj == INJECT_NO_TLB_FLUSH && arch->retract_flush == PTEMU_RETRACT_FLUSH_HASH)
		return "the retract's HPTE flush has nothing to do: file collapse cleared every PTE "
		       "of the table, and flushed its HPTE, under the BUSY handshake before it";
	if (inj == INJECT_LEAF_FLUSH_ONLY) {
		if (arch->retract_flush != PTEMU_RETRACT_FLUSH_RANGE || arch->pmdp_collapse_flush)
			return "the model's pmdp_collapse_flush is not flush_tlb_range";
		if (arch->leaf_flush_drops_walk_cache)
			return "every invalidation of the model also drops walk caches: there is no "
			       "last-level-only form";
	}
	/* Without RCU table freeing nothing detaches a table under a map: the re-check and the
	 * RCU section guard a window the model never opens. */
	if ((inj == INJECT_NO_RCU_READ_LOCK || inj == INJECT_NO_PMD_RECHECK) && !arch->pmd_leaf_shift &&
	    !arch->rcu_table_free)
		return "without THP or RCU table freeing a table is detached only by free_pgtables, "
		       "after its VMAs left the VMA tree and i_mmap, so no map can reach it";
	return NULL;
}

bool ptemu_injection_applies(enum ptemu_injection inj, const struct ptemu_arch *arch)
{
	return !ptemu_injection_why_not(inj, arch);
}

bool ptemu_injected(const struct ptemu_machine *m, enum ptemu_injection inj)
{
	return m->inject == inj;
}
