// The pte_offset_map family (kernel-spec 1.2-1.5) and the checked accessors, per model.
#include "fixture.h"

using namespace ptemu_test;

namespace {

class PteOffsetMap : public testing::TestWithParam<const char *> {};

pmd_t leaf_pmd(const ptemu_arch *a)
{
	ptemu_leaf l{(1ull << (a->pmd_leaf_shift - a->page_shift)) * 3, PTEMU_PROT_READ | PTEMU_PTE_YOUNG};
	return __pmd(a->mk_pmd_leaf(l));
}

void store_pmd(MmHolder &h, pmd_t v)
{
	ptemu_spinlock *pml = pmd_lock(h.mm, h.pmd);
	set_pmd_at(h.mm, h.addr, h.pmd, v);
	spin_unlock(pml);
}

} // namespace

// The checker finds a PTE table's slot by shifting its address: a page holds a power of
// two of tables that fill it exactly.
TEST_P(PteOffsetMap, TablesTileTheirPageInAPowerOfTwo)
{
	const ptemu_arch *a = ptemu_arch_find(GetParam());
	ASSERT_NE(a, nullptr);
	EXPECT_EQ(a->tables_per_page & (a->tables_per_page - 1), 0u);
	EXPECT_EQ((uint64_t)a->pte_table_bytes * a->tables_per_page, ptemu_page_size(a));
}

TEST_P(PteOffsetMap, NonePmdFailsWithRcuBalanced)
{
	MmHolder h(GetParam());
	ASSERT_TRUE(pmd_none(pmdp_get_lockless(h.pmd)));
	EXPECT_EQ(pte_offset_map(h.pmd, h.addr), nullptr);
	EXPECT_EQ(h.rcu_depth(), 0);
	EXPECT_EQ(h.stat(PTEMU_STAT_pte_map_none), 1u);
	ptemu_spinlock *ptl = nullptr;
	EXPECT_EQ(pte_offset_map_lock(h.mm, h.pmd, h.addr, &ptl), nullptr);
	EXPECT_EQ(ptl, nullptr);  // left unchanged, nothing held
	EXPECT_EQ(ptemu_current()->nr_held, 0);
	EXPECT_EQ(h.rcu_depth(), 0);
	EXPECT_EQ(h.stat(PTEMU_STAT_pte_map_failures), 0u);  // never saw a table
	EXPECT_EQ(h.violations(), 0u) << h.describe();
}

TEST_P(PteOffsetMap, HugeLeafPmdFails)
{
	MmHolder h(GetParam());
	pmd_t huge = leaf_pmd(h.arch());
	ASSERT_TRUE(pmd_trans_huge(huge));
	store_pmd(h, huge);
	EXPECT_EQ(pte_offset_map(h.pmd, h.addr), nullptr);
	EXPECT_EQ(h.rcu_depth(), 0);
	EXPECT_EQ(h.stat(PTEMU_STAT_pte_map_leaf), 1u);
	EXPECT_TRUE(pmd_same(pmdp_get_lockless(h.pmd), huge));  // a leaf is left alone
	store_pmd(h, __pmd(h.arch()->none_entry(h.pmd_level())));
	EXPECT_EQ(h.violations(), 0u) << h.describe();
}

TEST_P(PteOffsetMap, BadPmdFailsAndIsCleared)
{
	MmHolder h(GetParam());
	const ptemu_arch *a = h.arch();
	// Search the encodings for one the model calls bad.
	uint64_t bad = 0, unused;
	for (uint64_t v = 1; v < (1u << 12) && !bad; v++)
		if (a->classify(ptemu_pmd_level(a), v, &unused) == PTEMU_ENTRY_BAD)
			bad = v;
	if (!bad) {
		// arm-lpae: pmd_trans_huge is "not a table", and __pte_offset_map tests it
		// before pmd_bad, so no pmd value ever reaches pmd_clear_bad.
		ASSERT_NE(a->pmd_leaf_shift, 0u) << "the model has no bad pmd encoding below 4096";
		for (uint64_t v = 1; v < (1u << 12); v++) {
			enum ptemu_entry_kind k = a->classify(ptemu_pmd_level(a), v, &unused);
			ASSERT_TRUE(k == PTEMU_ENTRY_TABLE || k == PTEMU_ENTRY_LEAF) << v;
		}
		GTEST_SKIP() << "every pmd that is neither none nor a table is huge on " << a->name;
	}
	ptemu_entry_store(h.m, ptemu_slot_pa(h.m, h.pmd), bad);
	EXPECT_EQ(pte_offset_map(h.pmd, h.addr), nullptr);
	EXPECT_EQ(h.rcu_depth(), 0);
	EXPECT_EQ(h.stat(PTEMU_STAT_pte_map_bad), 1u);
	EXPECT_TRUE(pmd_none(pmdp_get_lockless(h.pmd)));  // pmd_clear_bad cleared the slot
	EXPECT_EQ(h.violations(), 0u) << h.describe();    // BAD -> NONE is legal
}

TEST_P(PteOffsetMap, TableGivesPointerWithRcuHeld)
{
	MmHolder h(GetParam());
	const ptemu_arch *a = h.arch();
	uint64_t table = h.install_table();
	pte_t *pte = pte_offset_map(h.pmd, h.addr);
	ASSERT_NE(pte, nullptr);
	EXPECT_EQ(h.rcu_depth(), 1);
	EXPECT_EQ(ptemu_current()->nr_maps, 1);
	EXPECT_EQ(ptemu_slot_pa(h.m, pte),
		  table + ptemu_level_index(a, ptemu_pte_level(a), h.addr) * a->entry_bytes);
	EXPECT_TRUE(pte_none(ptep_get(pte)));
	pte_unmap(pte);
	EXPECT_EQ(h.rcu_depth(), 0);
	EXPECT_EQ(ptemu_current()->nr_maps, 0);
	EXPECT_EQ(h.violations(), 0u) << h.describe();
}

TEST_P(PteOffsetMap, MapLockRetriesWhenThePmdChangesBeforeTheLock)
{
	MmHolder h(GetParam());
	uint64_t first = h.install_table();
	struct Ctx {
		MmHolder *h;
		uint64_t second = 0;
		int calls = 0;
	} ctx{&h};
	// Between map and lock: retract the table and install another one.
	h.m->test_hooks.ctx = &ctx;
	h.m->test_hooks.map_before_lock = [](void *c, mm_struct *, void *) {
		auto *x = static_cast<Ctx *>(c);
		if (x->calls++)
			return;
		x->h->detach_table();
		x->second = x->h->install_table();
	};
	ptemu_spinlock *ptl = nullptr;
	pte_t *pte = pte_offset_map_lock(h.mm, h.pmd, h.addr, &ptl);
	h.m->test_hooks.map_before_lock = nullptr;
	ASSERT_NE(pte, nullptr);
	ASSERT_NE(ctx.second, 0u);
	EXPECT_EQ(ctx.calls, 2);
	EXPECT_EQ(h.stat(PTEMU_STAT_pmd_recheck_retries), 1u);
	uint64_t pa = ptemu_slot_pa(h.m, pte);
	EXPECT_EQ(pa & ~(uint64_t)(h.arch()->pte_table_bytes - 1), ctx.second);
	EXPECT_EQ(ptl, &pfn_to_page(h.m->phys, ctx.second >> h.arch()->page_shift)->ptl);
	EXPECT_TRUE(ptemu_holds_lock(ptl));
	EXPECT_EQ(h.rcu_depth(), 1);  // one pass's RCU left over, no more
	pte_unmap_unlock(pte, ptl);
	EXPECT_EQ(h.rcu_depth(), 0);
	EXPECT_EQ(h.stat(PTEMU_STAT_detach_with_reader), 1u);  // the first pass had it mapped
	pte_free_defer(h.mm, first);
	rcu_barrier();
	// A half waits for its page-mate (kernel-spec 2.5); whole-page tables go at once.
	EXPECT_EQ(check_table_state(h.m, first),
		  h.arch()->tables_per_page == 1 ? TABLE_FREE : TABLE_RCU_PENDING);
	EXPECT_EQ(h.violations(), 0u) << h.describe();
}

TEST_P(PteOffsetMap, MapLockFailsWhenTheTableIsRetractedBeforeTheLock)
{
	MmHolder h(GetParam());
	uint64_t table = h.install_table();
	h.m->test_hooks.ctx = &h;
	h.m->test_hooks.map_before_lock = [](void *c, mm_struct *, void *) {
		static_cast<MmHolder *>(c)->detach_table();
	};
	ptemu_spinlock *ptl = nullptr;
	EXPECT_EQ(pte_offset_map_lock(h.mm, h.pmd, h.addr, &ptl), nullptr);
	h.m->test_hooks.map_before_lock = nullptr;
	EXPECT_EQ(ptl, nullptr);
	EXPECT_EQ(h.rcu_depth(), 0);
	EXPECT_EQ(ptemu_current()->nr_held, 0);
	EXPECT_EQ(h.stat(PTEMU_STAT_pmd_recheck_retries), 1u);
	EXPECT_EQ(h.stat(PTEMU_STAT_pte_map_failures), 1u);
	pte_free_defer(h.mm, table);
	EXPECT_EQ(h.violations(), 0u) << h.describe();
}

TEST_P(PteOffsetMap, NolockGivesThePtlOfExactlyTheMappedTable)
{
	MmHolder h(GetParam());
	const ptemu_arch *a = h.arch();
	uint64_t table = h.install_table();
	ptemu_spinlock *ptl = nullptr;
	pte_t *pte = pte_offset_map_nolock(h.mm, h.pmd, h.addr, &ptl);
	ASSERT_NE(pte, nullptr);
	EXPECT_EQ(ptl, &pfn_to_page(h.m->phys, table >> a->page_shift)->ptl);
	EXPECT_FALSE(ptemu_holds_lock(ptl));  // nolock: not taken
	EXPECT_NE(ptl, pmd_lockptr(h.mm, h.pmd));
	pte_unmap(pte);
	// Tables sharing a page share its lock (s390 halves).
	if (a->tables_per_page > 1) {
		uint64_t other_addr = h.addr + ptemu_pmd_size(a);
		pmd_t *other = pmd_alloc_path(h.mm, other_addr);
		ASSERT_EQ(__pte_alloc(h.mm, other), 0);
		uint64_t t2;
		pmd_kind(pmdp_get_lockless(other), &t2);
		EXPECT_EQ(t2 >> a->page_shift, table >> a->page_shift) << "second table in a new page";
		ptemu_spinlock *ptl2 = nullptr;
		pte_t *p2 = pte_offset_map_nolock(h.mm, other, other_addr, &ptl2);
		ASSERT_NE(p2, nullptr);
		EXPECT_EQ(ptl2, ptl);
		pte_unmap(p2);
	}
	EXPECT_EQ(h.violations(), 0u) << h.describe();
}

TEST_P(PteOffsetMap, AllocMapLockInstallsOnceAndCounts)
{
	MmHolder h(GetParam());
	int64_t before = mm_pgtables_bytes(h.mm);
	ptemu_spinlock *ptl;
	pte_t *pte = pte_alloc_map_lock(h.mm, h.pmd, h.addr, &ptl);
	ASSERT_NE(pte, nullptr);
	set_pte_at(h.mm, h.addr, pte, h.leaf_pte(77));
	pte_unmap_unlock(pte, ptl);
	EXPECT_EQ(mm_pgtables_bytes(h.mm) - before, (int64_t)h.arch()->pte_table_bytes);
	pte = pte_alloc_map_lock(h.mm, h.pmd, h.addr, &ptl);
	ASSERT_NE(pte, nullptr);
	EXPECT_EQ(h.arch()->pte_leaf(ptep_get(pte).val).pfn, 77u);
	pte_clear(h.mm, h.addr, pte);
	pte_unmap_unlock(pte, ptl);
	EXPECT_EQ(h.stat(PTEMU_STAT_pmd_installs), 1u);
	EXPECT_EQ(h.violations(), 0u) << h.describe();
}

TEST_P(PteOffsetMap, PmdInstallLoserFreesItsTable)
{
	MmHolder h(GetParam());
	uint64_t winner = h.install_table();
	uint64_t loser = pte_alloc_one(h.mm);
	ASSERT_NE(loser, 0u);
	uint64_t t = loser;
	pmd_install(h.mm, h.pmd, &t);
	EXPECT_EQ(t, loser);  // not consumed: the pmd was populated
	EXPECT_EQ(h.table_of_pmd(), winner);
	pte_free(h.mm, loser);
	EXPECT_EQ(check_table_state(h.m, loser), TABLE_FREE);
	EXPECT_EQ(h.violations(), 0u) << h.describe();
}

TEST_P(PteOffsetMap, PteWriteWithoutPtlIsReported)
{
	MmHolder h(GetParam());
	h.install_table();
	pte_t *pte = pte_offset_map(h.pmd, h.addr);
	ASSERT_NE(pte, nullptr);
	set_pte_at(h.mm, h.addr, pte, h.leaf_pte(5));
	pte_unmap(pte);
	EXPECT_EQ(h.count(VIOLATION_PTL_NOT_HELD), 1u) << h.describe();
	EXPECT_EQ(h.violations(), 1u);
}

TEST_P(PteOffsetMap, PmdPopulateWithoutPmdLockIsReported)
{
	MmHolder h(GetParam());
	uint64_t t = pte_alloc_one(h.mm);
	pmd_populate(h.mm, h.pmd, t);
	EXPECT_EQ(h.count(VIOLATION_PTL_NOT_HELD), 1u) << h.describe();
}

TEST_P(PteOffsetMap, WriteIntoADetachedTableIsReported)
{
	MmHolder h(GetParam());
	uint64_t table = h.install_table();
	ptemu_spinlock *ptl = nullptr;
	pte_t *pte = pte_offset_map_nolock(h.mm, h.pmd, h.addr, &ptl);
	ASSERT_NE(pte, nullptr);
	h.detach_table();
	spin_lock(ptl);
	// No pmd_same re-check: this is the write the re-check exists to prevent.
	set_pte_at(h.mm, h.addr, pte, h.leaf_pte(9));
	pte_unmap_unlock(pte, ptl);
	EXPECT_EQ(h.count(VIOLATION_PTE_IN_DETACHED_TABLE), 1u) << h.describe();
	EXPECT_EQ(h.count(VIOLATION_PT_USE_AFTER_FREE), 0u) << h.describe();
	pte_free(h.mm, table);
}

TEST_P(PteOffsetMap, DetachedTableMayBeReadOnlyInsideTheMappingRcuSection)
{
	MmHolder h(GetParam());
	uint64_t table = h.install_table();
	pte_t *pte = pte_offset_map(h.pmd, h.addr);
	ASSERT_NE(pte, nullptr);
	h.detach_table();
	(void)ptep_get(pte);  // legal: mapped before the detach, section still open
	EXPECT_EQ(h.violations(), 0u) << h.describe();
	pte_unmap(pte);
	(void)ptep_get(pte);  // the section is closed: the table may be gone any moment
	EXPECT_EQ(h.count(VIOLATION_PT_READ_UNPROTECTED), 1u) << h.describe();
	EXPECT_EQ(h.count(VIOLATION_PT_USE_AFTER_FREE), 0u) << h.describe();
	pte_free_defer(h.mm, table);
}

TEST_P(PteOffsetMap, DeferringANonEmptyTableIsReported)
{
	MmHolder h(GetParam());
	ptemu_spinlock *ptl;
	pte_t *pte = pte_alloc_map_lock(h.mm, h.pmd, h.addr, &ptl);
	ASSERT_NE(pte, nullptr);
	set_pte_at(h.mm, h.addr, pte, h.leaf_pte(11));
	pte_unmap_unlock(pte, ptl);
	uint64_t table = h.detach_table();
	pte_free_defer(h.mm, table);
	EXPECT_EQ(h.count(VIOLATION_DETACHED_TABLE_NOT_EMPTY), 1u) << h.describe();
}

TEST_P(PteOffsetMap, StalePointerIntoAReusedTableIsUseAfterFree)
{
	MmHolder h(GetParam());
	if (fragments_never_reused(h.arch()))
		GTEST_SKIP() << "a freed fragment is never handed out again (ppc-frag-reuse's bug)";
	uint64_t table = h.install_table();
	pte_t *pte = pte_offset_map(h.pmd, h.addr);
	ASSERT_NE(pte, nullptr);
	uint32_t gen = check_table_generation(h.m, table);
	h.detach_table();
	pte_free(h.mm, table);  // the bug: freed at once while mapped
	EXPECT_EQ(h.count(VIOLATION_PT_FREE_WHILE_MAPPED), 1u) << h.describe();
	// Reallocate until the same slot comes back, then read through the old map.
	std::vector<uint64_t> others;
	uint64_t again = 0;
	while (again != table) {
		again = pte_alloc_one(h.mm);
		if (!again)
			break;
		others.push_back(again);
	}
	ASSERT_EQ(again, table) << "the allocator did not hand the slot out again";
	EXPECT_NE(check_table_generation(h.m, table), gen);
	(void)ptep_get(pte);
	EXPECT_GE(h.count(VIOLATION_PT_USE_AFTER_FREE), 1u) << h.describe();
	pte_unmap(pte);
	for (uint64_t t : others)
		pte_free(h.mm, t);
}

TEST_P(PteOffsetMap, SkippedUnmapIsCaughtAtTheEndOfTheOperation)
{
	MmHolder h(GetParam());
	h.install_table();
	pte_t *pte = pte_offset_map(h.pmd, h.addr);
	ASSERT_NE(pte, nullptr);
	check_op_end("test op");
	EXPECT_EQ(h.count(VIOLATION_RCU_IMBALANCE), 1u) << h.describe();
	EXPECT_EQ(h.count(VIOLATION_MAP_UNMAP_IMBALANCE), 1u) << h.describe();
	EXPECT_EQ(h.rcu_depth(), 0);  // unwound, so grace periods go on
	synchronize_rcu();
}

TEST_P(PteOffsetMap, UnmapWithoutMapIsReported)
{
	MmHolder h(GetParam());
	uint64_t table = h.install_table();
	rcu_read_lock();  // keep liburcu balanced; the checker looks at the map records
	pte_unmap(static_cast<pte_t *>(ptemu_slot_ptr(h.m, table)));
	EXPECT_EQ(h.count(VIOLATION_MAP_UNMAP_IMBALANCE), 1u) << h.describe();
	EXPECT_EQ(h.rcu_depth(), 0);
}

TEST_P(PteOffsetMap, CollapseFlushInvalidatesThePmdRangeWithTables)
{
	struct Seen {
		int calls = 0;
		uint64_t start = 0, end = 0;
		bool tables = false;
	};
	for (ptemu_injection inj : {INJECT_NONE, INJECT_NO_TLB_FLUSH}) {
		if (!ptemu_injection_applies(inj, ptemu_arch_find(GetParam())))
			continue;	// sparc64: there is no retract flush to leave out
		MmHolder h(GetParam(), inj);
		Seen seen;
		h.m->tlb.ctx = &seen;
		h.m->tlb.flush_range = [](void *c, mm_struct *, uint64_t s, uint64_t e, bool t) {
			auto *x = static_cast<Seen *>(c);
			x->calls++;
			x->start = s;
			x->end = e;
			x->tables = t;
		};
		uint64_t table = h.install_table();
		h.detach_table();
		pte_free_defer(h.mm, table);
		uint64_t size = ptemu_pmd_size(h.arch());
		if (flushes_only_hashed(h.arch())) {
			EXPECT_EQ(seen.calls, 0) << "nothing was hashed";
		} else if (h.arch()->retract_flush == PTEMU_RETRACT_FLUSH_NONE) {
			// sparc64: flush_tlb_range is empty and set_pmd_at's scan of the detached
			// table finds no valid PTE to demap.
			EXPECT_EQ(seen.calls, 0);
		} else if (inj == INJECT_NONE) {
			EXPECT_EQ(seen.calls, 1);
			EXPECT_EQ(seen.start, h.addr & ~(size - 1));
			EXPECT_EQ(seen.end, (h.addr & ~(size - 1)) + size);
			EXPECT_TRUE(seen.tables);
		} else {
			EXPECT_EQ(seen.calls, 0) << "no-tlb-flush must leave the flush out";
		}
		EXPECT_TRUE(pmd_none(pmdp_get_lockless(h.pmd)));
		h.m->tlb.flush_range = nullptr;
	}
}

TEST_P(PteOffsetMap, NoRcuInjectionMapsOutsideAnySection)
{
	MmHolder h(GetParam(), INJECT_NO_RCU_READ_LOCK);
	h.install_table();
	pte_t *pte = pte_offset_map(h.pmd, h.addr);
	ASSERT_NE(pte, nullptr);
	EXPECT_EQ(h.rcu_depth(), 0);
	EXPECT_EQ(ptemu_current()->maps[0].rcu_section, 0u);
	pte_unmap(pte);
	EXPECT_EQ(h.violations(), 0u) << h.describe();
}

INSTANTIATE_TEST_SUITE_P(Models, PteOffsetMap, testing::ValuesIn(kModels), ModelName);
