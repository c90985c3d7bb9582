// pte_free_defer: a retracted table outlives every reader that could still hold it.
#include "fixture.h"

#include <atomic>
#include <thread>

using namespace ptemu_test;

namespace {

class Defer : public testing::TestWithParam<const char *> {};

// A reader thread that maps the table and holds it until told to let go.
struct Reader {
	MmHolder *h;
	std::atomic<int> phase{0};  // 1: mapped, 2: release, 3: done
	std::thread t;

	explicit Reader(MmHolder *holder) : h(holder)
	{
		t = std::thread([this] {
			ptemu_thread_register(h->m, "reader");
			pte_t *pte = pte_offset_map(h->pmd, h->addr);
			phase = 1;
			while (phase.load() != 2)
				std::this_thread::yield();
			if (pte) {
				(void)ptep_get(pte);  // still legal: inside the mapping section
				pte_unmap(pte);
			}
			ptemu_thread_unregister();
			phase = 3;
		});
		while (phase.load() != 1)
			std::this_thread::yield();
	}
	void release()
	{
		phase = 2;
		t.join();
	}
};

} // namespace

TEST_P(Defer, NotFreedWhileAReaderHoldsItInsideRcu)
{
	MmHolder h(GetParam());
	uint64_t table = h.install_table();
	uint64_t pages = phys_stats(h.m->phys).pages_allocated;
	Reader r(&h);
	h.detach_table();
	EXPECT_EQ(h.stat(PTEMU_STAT_detach_with_reader), 1u);
	pte_free_defer(h.mm, table);
	// Give liburcu every chance to end a grace period early, were it wrong to.
	for (int i = 0; i < 20; i++)
		std::this_thread::sleep_for(std::chrono::milliseconds(5));
	EXPECT_EQ(check_table_state(h.m, table), TABLE_RCU_PENDING);
	EXPECT_EQ(phys_stats(h.m->phys).pages_allocated, pages);
	r.release();
	h.arch_exit_mmap();	// powerpc: the fragment's page goes with the cursor
	rcu_barrier();
	EXPECT_EQ(check_table_state(h.m, table), TABLE_FREE);
	EXPECT_EQ(phys_stats(h.m->phys).pages_allocated, pages - 1);
	EXPECT_EQ(h.stat(PTEMU_STAT_tables_freed_deferred), 1u);
	EXPECT_EQ(h.stat(PTEMU_STAT_tables_rcu_freed), 1u);
	EXPECT_EQ(h.violations(), 0u) << h.describe();
}

TEST_P(Defer, FreedAfterTheGracePeriodAndCountsBalance)
{
	MmHolder h(GetParam());
	ptemu_phys_stats before = phys_stats(h.m->phys);
	std::vector<uint64_t> tables;
	// Several tables, retracted and deferred one after another at different pmds.
	for (int i = 0; i < 6; i++) {
		uint64_t addr = h.addr + (uint64_t)i * ptemu_pmd_size(h.arch());
		pmd_t *pmd = pmd_alloc_path(h.mm, addr);
		ASSERT_EQ(__pte_alloc(h.mm, pmd), 0);
		uint64_t t;
		pmd_kind(pmdp_get_lockless(pmd), &t);
		ptemu_spinlock *pml = pmd_lock(h.mm, pmd);
		pmdp_collapse_flush(h.mm, addr, pmd);
		spin_unlock(pml);
		pte_free_defer(h.mm, t);
		tables.push_back(t);
	}
	h.arch_exit_mmap();
	rcu_barrier();
	for (uint64_t t : tables)
		EXPECT_EQ(check_table_state(h.m, t), TABLE_FREE) << std::hex << t;
	EXPECT_EQ(h.stat(PTEMU_STAT_tables_freed_deferred), 6u);
	EXPECT_EQ(h.stat(PTEMU_STAT_tables_rcu_freed), 6u);
	EXPECT_EQ(phys_stats(h.m->phys).pages_allocated, before.pages_allocated);
	EXPECT_EQ(phys_stats(h.m->phys).table_pages, before.table_pages);
	EXPECT_EQ(h.violations(), 0u) << h.describe();
}

TEST_P(Defer, ImmediateFreeUnderAReaderIsCaught)
{
	MmHolder h(GetParam());
	uint64_t table = h.install_table();
	Reader r(&h);
	h.detach_table();
	pte_free(h.mm, table);  // what pte_free_defer exists to prevent
	EXPECT_EQ(h.count(VIOLATION_PT_FREE_WHILE_MAPPED), 1u) << h.describe();
	r.release();  // its read of the freed table is a use after free
	EXPECT_GE(h.count(VIOLATION_PT_USE_AFTER_FREE), 1u) << h.describe();
}

// The contract of pte_free_defer is a free from an RCU callback: a destructor run anywhere
// else did not wait for the grace period, whether or not a reader happened to be inside.
TEST_P(Defer, AFreeOfADeferredTableOutsideAnRcuCallbackIsCaught)
{
	MmHolder h(GetParam());
	uint64_t table = h.install_table();
	h.detach_table();
	pte_free_defer(h.mm, table);
	ASSERT_EQ(check_table_state(h.m, table), TABLE_RCU_PENDING);
	ptemu_pte_table_dtor(h.m, table);
	EXPECT_EQ(h.count(VIOLATION_PT_FREE_BEFORE_GRACE_PERIOD), 1u) << h.describe();
	rcu_barrier();	// the callback frees the page; the table is not destructed twice
	EXPECT_EQ(h.count(VIOLATION_PT_USE_AFTER_FREE), 0u) << h.describe();
	EXPECT_EQ(h.violations(), 1u) << h.describe();
}

// A callback queued before the deferral proves nothing about the deferred table's readers.
TEST_P(Defer, AFreeByAnRcuCallbackQueuedBeforeTheDeferralIsCaught)
{
	MmHolder h(GetParam());
	uint64_t table = h.install_table();
	h.detach_table();
	uint64_t queued_before = check_rcu_stamp();	// a callback queued before the deferral
	pte_free_defer(h.mm, table);
	uint64_t outer = check_rcu_callback_enter(queued_before);
	ptemu_pte_table_dtor(h.m, table);
	check_rcu_callback_leave(outer);
	EXPECT_EQ(h.count(VIOLATION_PT_FREE_BEFORE_GRACE_PERIOD), 1u) << h.describe();
	rcu_barrier();
	EXPECT_EQ(h.violations(), 1u) << h.describe();
}

INSTANTIATE_TEST_SUITE_P(Models, Defer, testing::ValuesIn(kModels), ModelName);
