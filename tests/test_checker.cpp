// The checker's own behaviour: records, modes, names, generations.
#include "fixture.h"

#include <cstring>

using namespace ptemu_test;

TEST(Checker, ViolationNamesRoundTrip)
{
	for (int k = 0; k < VIOLATION_KIND_COUNT; k++) {
		const char *name = ptemu_violation_name((ptemu_violation_kind)k);
		EXPECT_EQ(ptemu_violation_from_name(name), k) << name;
	}
	EXPECT_EQ(ptemu_violation_from_name("no-such-kind"), VIOLATION_KIND_COUNT);
	EXPECT_STREQ(ptemu_violation_name(VIOLATION_PT_USE_AFTER_FREE), "pt-use-after-free");
}

TEST(Checker, RecordsKindThreadAddressEventAndMessage)
{
	MachineHolder h("arm64");
	ptemu_report(h.m, VIOLATION_LEAK, 0x1234, "first %d", 1);
	ptemu_report(h.m, VIOLATION_HANG, 0x5678, "second");
	size_t n;
	const ptemu_violation *v = check_violations(h.m, &n);
	ASSERT_EQ(n, 2u);
	EXPECT_EQ(v[0].kind, VIOLATION_LEAK);
	EXPECT_EQ(v[0].addr, 0x1234u);
	EXPECT_STREQ(v[0].message, "first 1");
	EXPECT_STREQ(v[0].thread_name, "test");
	EXPECT_EQ(v[0].thread, ptemu_current()->id);
	EXPECT_LT(v[0].event, v[1].event);
	EXPECT_EQ(h.count(VIOLATION_HANG), 1u);
}

TEST(Checker, FailFastAsksThreadsToStopContinueModeDoesNot)
{
	MachineHolder cont("arm64");
	ptemu_report(cont.m, VIOLATION_LEAK, 0, "x");
	EXPECT_FALSE(ptemu_should_stop(cont.m));
}

TEST(Checker, FailFastStopsAfterTheFirstViolation)
{
	MachineHolder ff("arm64", INJECT_NONE, PTEMU_CHECK_FAIL_FAST);
	EXPECT_FALSE(ptemu_should_stop(ff.m));
	ptemu_report(ff.m, VIOLATION_LEAK, 0, "x");
	EXPECT_TRUE(ptemu_should_stop(ff.m));
}

TEST(Checker, CountsBeyondTheRecordLimit)
{
	MachineHolder h("arm64");
	for (int i = 0; i < PTEMU_MAX_RECORDED + 10; i++)
		ptemu_report(h.m, VIOLATION_LEAK, (uint64_t)i, "n");
	size_t n;
	check_violations(h.m, &n);
	EXPECT_EQ(n, (size_t)PTEMU_MAX_RECORDED);
	EXPECT_EQ(h.violations(), (uint64_t)PTEMU_MAX_RECORDED + 10);
}

TEST(Checker, EveryAllocationOfATableSlotBumpsItsGeneration)
{
	MmHolder h("arm64");
	uint64_t t = pte_alloc_one(h.mm);
	uint32_t g1 = check_table_generation(h.m, t);
	EXPECT_EQ(check_table_state(h.m, t), TABLE_ALLOCATED);
	pte_free(h.mm, t);
	EXPECT_EQ(check_table_state(h.m, t), TABLE_FREE);
	uint64_t again = pte_alloc_one(h.mm);
	ASSERT_EQ(again, t);  // the buddy allocator hands the last freed page out first
	EXPECT_EQ(check_table_generation(h.m, t), g1 + 1);
	pte_free(h.mm, again);
	EXPECT_EQ(h.violations(), 0u) << h.describe();
}

TEST(Checker, TableStatesFollowTheLifecycle)
{
	MmHolder h("s390");
	uint64_t t = h.install_table();
	EXPECT_EQ(check_table_state(h.m, t), TABLE_ATTACHED);
	h.detach_table();
	EXPECT_EQ(check_table_state(h.m, t), TABLE_DETACHED);
	pte_free_defer(h.mm, t);
	EXPECT_EQ(check_table_state(h.m, t), TABLE_RCU_PENDING);
	rcu_barrier();
	EXPECT_EQ(check_table_state(h.m, t), TABLE_FREE);
	EXPECT_STREQ(ptemu_table_state_name(TABLE_RCU_PENDING), "rcu-pending");
	EXPECT_EQ(h.violations(), 0u) << h.describe();
}

TEST(Checker, WalkIntoAFreedTableIsUseAfterFree)
{
	MmHolder h("arm64");
	uint64_t t = h.install_table();
	ptemu_walk_ctx ctx;
	ptemu_checked_walk_ctx(h.m, &ctx);
	ptemu_walk_result res{};
	EXPECT_EQ(h.arch()->hw_walk(&ctx, h.mm->pgd_pa, h.addr, PTEMU_ACCESS_READ, &res),
		  PTEMU_WALK_TRANSLATION);  // PTE none
	EXPECT_EQ(h.violations(), 0u) << h.describe();
	h.detach_table();
	pte_free(h.mm, t);
	// A walk cache still pointing at the old table would read it: the checker must see it.
	ctx.read_entry(&ctx, ptemu_pte_level(h.arch()), t, 0);
	EXPECT_EQ(h.count(VIOLATION_PT_USE_AFTER_FREE), 1u) << h.describe();
}

namespace {

// Detaches the table under a pmd as retract does, with the locks taken here.
uint64_t detach_locked(MmHolder &h, pmd_t *pmd, uint64_t addr)
{
	uint64_t table = 0;
	pmd_kind(pmdp_get_lockless(pmd), &table);
	pmdp_collapse_flush(h.mm, addr, pmd);
	mm_inc_pgtables(h.mm, -(int64_t)h.arch()->pte_table_bytes);
	return table;
}

} // namespace

// kernel-spec 5.2: a detached table is read safely only inside the RCU section that mapped
// it, or under its ptl taken while it was still attached (the detacher needs that lock).
TEST(Checker, ReadOfADetachedTableWithoutRcuOrAPtlTakenWhileAttachedIsReadUnprotected)
{
	for (const char *model : kModels) {
		MmHolder h(model);
		h.install_table();
		pmd_t attached = pmdp_get_lockless(h.pmd);
		uint64_t table = h.detach_table();
		pte_t *pte = (pte_t *)ptemu_slot_ptr(h.m, table);
		(void)ptep_get(pte);  // no RCU section, no lock: not freed yet, so not a use after free
		EXPECT_EQ(h.count(VIOLATION_PT_READ_UNPROTECTED), 1u) << model << "\n" << h.describe();
		EXPECT_EQ(h.count(VIOLATION_PT_USE_AFTER_FREE), 0u) << model << "\n" << h.describe();
		ptemu_spinlock *ptl = pte_lockptr(h.mm, &attached);
		spin_lock(ptl);
		(void)ptep_get(pte);  // its ptl, but taken after the detach: no protection either
		spin_unlock(ptl);
		EXPECT_EQ(h.count(VIOLATION_PT_READ_UNPROTECTED), 2u) << model << "\n" << h.describe();
		pte_free_defer(h.mm, table);
	}
}

TEST(Checker, PtlTakenWhileAttachedProtectsTheTableItsHolderDetaches)
{
	for (const char *model : kModels) {
		MmHolder h(model);
		h.install_table();
		pmd_t attached = pmdp_get_lockless(h.pmd);
		ptemu_spinlock *pml = pmd_lock(h.mm, h.pmd);
		ptemu_spinlock *ptl = pte_lockptr(h.mm, &attached);
		spin_lock_nested(ptl);
		uint64_t table = detach_locked(h, h.pmd, h.addr);
		(void)ptep_get((pte_t *)ptemu_slot_ptr(h.m, table));
		spin_unlock(ptl);
		spin_unlock(pml);
		EXPECT_EQ(h.violations(), 0u) << model << "\n" << h.describe();
		pte_free_defer(h.mm, table);
	}
}

// s390: both 2 KiB halves of a page share the page's ptl. Holding it for half A, taken
// while half B was already detached, must not cover a read of B.
TEST(Checker, S390LockOfOneHalfDoesNotProtectTheOtherDetachedHalf)
{
	MmHolder h("s390");
	uint64_t addr_b = h.addr + ptemu_pmd_size(h.arch());
	pmd_t *pmd_b = pmd_alloc_path(h.mm, addr_b);
	uint64_t a = h.install_table();
	ASSERT_EQ(__pte_alloc(h.mm, pmd_b), 0);
	uint64_t b = 0;
	pmd_kind(pmdp_get_lockless(pmd_b), &b);
	ASSERT_EQ(a >> 12, b >> 12) << "the two tables are not halves of one page";
	ASSERT_NE(a, b);

	ptemu_spinlock *pml = pmd_lock(h.mm, pmd_b);
	pmd_t attached_b = pmdp_get_lockless(pmd_b);
	ptemu_spinlock *ptl = pte_lockptr(h.mm, &attached_b);
	spin_lock_nested(ptl);
	detach_locked(h, pmd_b, addr_b);
	spin_unlock(ptl);
	spin_unlock(pml);

	pmd_t attached_a = pmdp_get_lockless(h.pmd);
	ptemu_spinlock *ptl_a = pte_lockptr(h.mm, &attached_a);
	ASSERT_EQ(ptl_a, ptl);
	spin_lock(ptl_a);
	(void)ptep_get((pte_t *)ptemu_slot_ptr(h.m, a));
	EXPECT_EQ(h.violations(), 0u) << h.describe();
	(void)ptep_get((pte_t *)ptemu_slot_ptr(h.m, b));
	spin_unlock(ptl_a);
	EXPECT_EQ(h.count(VIOLATION_PT_READ_UNPROTECTED), 1u) << h.describe();
	pte_free_defer(h.mm, b);
}
