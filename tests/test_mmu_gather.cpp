// Page tables freed through the mmu_gather (v6.6 mm/mmu_gather.c): after the flush and,
// on models whose kernel selects MMU_GATHER_RCU_TABLE_FREE, a grace period; invalidations
// classified by the arm64 primitive the kernel uses; s390's pmdp_collapse_flush as IDTE.
#include "fixture.h"

#include <atomic>
#include <thread>
#include <vector>

#include <ptemu/mmu_gather.h>
#include <ptemu/uaccess.h>

#include "../workloads/include/ptemu_abi.h"

using namespace ptemu_test;

namespace {

// A reader on another thread that keeps every grace period from ending until it is
// destroyed: a table's RCU_PENDING state is then stable for the checks, which liburcu's
// callback thread would otherwise race.
class GracePeriodHeld {
      public:
	explicit GracePeriodHeld(ptemu_machine *m)
	    : reader_([this, m] {
		      ptemu_thread_register(m, "reader");
		      rcu_read_lock();
		      entered_ = true;
		      while (!release_)
			      std::this_thread::yield();
		      rcu_read_unlock();
		      ptemu_thread_unregister();
	      })
	{
		while (!entered_)
			std::this_thread::yield();
	}
	~GracePeriodHeld()
	{
		release_ = true;
		reader_.join();
	}

      private:
	std::atomic<bool> entered_{false}, release_{false};
	std::thread reader_;
};


struct Flush {
	uint64_t start, end;
	bool tables;
};

// The machine's invalidations go to *v (no vCPUs: nothing is cached).
void record_flushes(ptemu_machine *m, std::vector<Flush> *v)
{
	m->tlb.ctx = v;
	m->tlb.flush_range = [](void *c, mm_struct *, uint64_t s, uint64_t e, bool t) {
		static_cast<std::vector<Flush> *>(c)->push_back({s, e, t});
	};
}

// A table installed, detached as retract does and deferred, its flushes recorded.
struct Retracted : MmHolder {
	Retracted(const char *arch, ptemu_injection inject) : MmHolder(arch, inject)
	{
		record_flushes(m, &flushes);
		uint64_t table = install_table();
		detach_table();
		pte_free_defer(mm, table);
	}
	~Retracted() { m->tlb.flush_range = nullptr; }
	uint64_t pmd_start() const { return addr & ~(ptemu_pmd_size(m->arch) - 1); }
	std::vector<Flush> flushes;
};

// A machine with one mm whose invalidations are recorded.
struct Space : MachineHolder {
	explicit Space(const char *arch, ptemu_injection inject = INJECT_NONE)
	    : MachineHolder(arch, inject)
	{
		mm = mm_alloc(m);
		record_flushes(m, &flushes);
	}
	~Space()
	{
		m->tlb.flush_range = nullptr;
		if (mm)
			mm_destroy(mm);
	}
	uint64_t page() const { return ptemu_page_size(m->arch); }
	uint64_t pmd_size() const { return ptemu_pmd_size(m->arch); }
	// Anonymous memory over whole PMD ranges, every page touched: each range has a table.
	uint64_t map_touched(unsigned pmds)
	{
		int64_t a = do_mmap(mm, 0, pmds * pmd_size(), PTEMU_PROT_READ | PTEMU_PROT_WRITE,
				    PTEMU_MAP_PRIVATE | PTEMU_MAP_ANONYMOUS, nullptr, 0);
		EXPECT_GT(a, 0);
		for (unsigned i = 0; i < pmds; i++) {
			uint64_t v = 1;
			EXPECT_EQ(copy_to_user(mm, (uint64_t)a + i * pmd_size(), &v, 8), 0);
		}
		return (uint64_t)a;
	}
	uint64_t table_at(uint64_t addr)
	{
		uint64_t t = 0;
		pmd_t *pmd = mm_find_pmd(mm, addr);
		if (pmd && pmd_kind(pmdp_get_lockless(pmd), &t) == PTEMU_ENTRY_TABLE)
			return t;
		return 0;
	}
	ptemu_table_state state(uint64_t t) const { return check_table_state(m, t); }
	mm_struct *mm = nullptr;
	std::vector<Flush> flushes;
};

class MmuGather : public testing::TestWithParam<const char *> {};

} // namespace

// munmap frees the tables it empties through the gather: after its flush, which is not
// last-level, and a grace period. Before the grace period the table is RCU_PENDING.
TEST_P(MmuGather, MunmapFreesTablesAfterTheFlushAndAGracePeriod)
{
	Space s(GetParam());
	uint64_t a = s.map_touched(2);
	uint64_t t0 = s.table_at(a), t1 = s.table_at(a + s.pmd_size());
	ASSERT_NE(t0, 0u);
	ASSERT_NE(t1, 0u);
	s.flushes.clear();
	{
		GracePeriodHeld held(s.m);
		ASSERT_EQ(do_munmap(s.mm, a, 2 * s.pmd_size()), 0);
		EXPECT_EQ(s.state(t0), TABLE_RCU_PENDING);
		EXPECT_EQ(s.state(t1), TABLE_RCU_PENDING);
	}
	if (flushes_only_hashed(s.arch())) {
		EXPECT_TRUE(s.flushes.empty()) << "nothing was hashed";
	} else if (s.arch()->flush_tlb_range_is_noop) {
		// sparc64: the gather's flush is empty; each touched page was demapped by the
		// tlb_batch of the zap, and nothing else is invalidated.
		ASSERT_EQ(s.flushes.size(), 2u);
		for (unsigned i = 0; i < 2; i++) {
			EXPECT_EQ(s.flushes[i].start, a + i * s.pmd_size());
			EXPECT_EQ(s.flushes[i].end, a + i * s.pmd_size() + s.page());
			EXPECT_FALSE(s.flushes[i].tables);
		}
	} else {
		ASSERT_EQ(s.flushes.size(), 1u) << "one flush for the zap and free_pgtables";
		EXPECT_TRUE(s.flushes[0].tables) << "a gather that freed tables is not last-level only";
		EXPECT_LE(s.flushes[0].start, a);
		EXPECT_GE(s.flushes[0].end, a + s.pmd_size() + s.page());
	}
	rcu_barrier();
	EXPECT_EQ(s.state(t0), TABLE_FREE);
	EXPECT_EQ(s.state(t1), TABLE_FREE);
	EXPECT_EQ(s.stat(PTEMU_STAT_tables_gathered), 2u);
	EXPECT_EQ(s.stat(PTEMU_STAT_tables_rcu_freed), 2u);
	EXPECT_EQ(s.stat(PTEMU_STAT_tables_freed_attached_now), 0u);
	EXPECT_EQ(s.stat(PTEMU_STAT_tables_freed_now), 0u);
	EXPECT_EQ(s.violations(), 0u) << s.describe();
}

// exit_mmap's tables go the same way: no table that was attached is freed at once.
TEST_P(MmuGather, ExitFreesTablesThroughTheGather)
{
	Space s(GetParam());
	uint64_t a = s.map_touched(3);
	uint64_t t = s.table_at(a);
	{
		GracePeriodHeld held(s.m);
		mm_destroy(s.mm);
		s.mm = nullptr;
		EXPECT_EQ(s.state(t), TABLE_RCU_PENDING);
	}
	rcu_barrier();
	EXPECT_EQ(s.state(t), TABLE_FREE);
	EXPECT_EQ(s.stat(PTEMU_STAT_tables_gathered), 3u);
	EXPECT_EQ(s.stat(PTEMU_STAT_tables_freed_attached_now), 0u);
	if (flushes_only_hashed(s.arch()))
		EXPECT_TRUE(s.flushes.empty()) << "nothing was hashed";
	else if (s.arch()->flush_tlb_range_is_noop)
		EXPECT_EQ(s.flushes.size(), 3u) << "the zap's demaps of the touched pages, nothing more";
	else
		EXPECT_TRUE(s.flushes.back().tables) << "flush_tlb_mm drops walk caches";
	EXPECT_EQ(s.violations(), 0u) << s.describe();
}

// A table that was never attached (pmd_install's loser, a preallocated one) is freed at
// once, and counted apart.
TEST_P(MmuGather, NeverAttachedTableIsFreedAtOnce)
{
	Space s(GetParam());
	uint64_t t = pte_alloc_one(s.mm);
	ASSERT_NE(t, 0u);
	pte_free(s.mm, t);
	EXPECT_EQ(s.state(t), TABLE_FREE);
	EXPECT_EQ(s.stat(PTEMU_STAT_tables_freed_now), 1u);
	EXPECT_EQ(s.stat(PTEMU_STAT_tables_freed_attached_now), 0u);
}

// A zap that frees no table (MADV_DONTNEED) flushes the last level only, which keeps walk
// caches on arm64 (TLBI VALE1IS) and purges everything on s390. On sparc64 it is the
// tlb_batch's demap of the page, which has no walk cache to keep.
TEST_P(MmuGather, ZapWithoutFreedTablesIsALastLevelFlush)
{
	Space s(GetParam());
	uint64_t a = s.map_touched(1);
	s.flushes.clear();
	uint64_t before = s.stat(PTEMU_STAT_tlb_last_level_flushes);
	ASSERT_EQ(do_madvise(s.mm, a, s.pmd_size(), PTEMU_MADV_DONTNEED), 0);
	EXPECT_NE(s.table_at(a), 0u) << "the table stays";
	if (flushes_only_hashed(s.arch())) {
		EXPECT_TRUE(s.flushes.empty()) << "nothing was hashed";
		return;
	}
	ASSERT_EQ(s.flushes.size(), 1u);
	EXPECT_EQ(s.flushes[0].start, a);
	EXPECT_EQ(s.flushes[0].end, a + s.page()) << "the range of the entries cleared";
	EXPECT_EQ(s.flushes[0].tables,
		  s.arch()->leaf_flush_drops_walk_cache && !s.arch()->flush_tlb_range_is_noop);
	EXPECT_EQ(s.stat(PTEMU_STAT_tlb_last_level_flushes), before + 1);
}

// flush_tlb_range and flush_tlb_mm are never last-level; flush_tlb_page always is. On
// sparc64 all three are empty.
TEST_P(MmuGather, FlushPrimitivesAreClassifiedAsOnArm64)
{
	Space s(GetParam());
	flush_tlb_range(s.mm, 0x200000, 0x400000);
	flush_tlb_mm(s.mm);
	flush_tlb_page(s.mm, 0x200000);
	if (s.arch()->flush_tlb_range_is_noop) {
		EXPECT_TRUE(s.flushes.empty());
		return;
	}
	ASSERT_EQ(s.flushes.size(), 3u);
	EXPECT_TRUE(s.flushes[0].tables);
	EXPECT_TRUE(s.flushes[1].tables);
	EXPECT_EQ(s.flushes[1].end, 1ull << s.arch()->va_bits);
	EXPECT_EQ(s.flushes[2].end - s.flushes[2].start, s.page());
	EXPECT_EQ(s.flushes[2].tables, s.arch()->leaf_flush_drops_walk_cache);
}

INSTANTIATE_TEST_SUITE_P(Models, MmuGather, testing::ValuesIn(kModels), ModelName);

// leaf-flush-only: pmdp_collapse_flush's invalidation becomes last-level, so an arm64 walk
// cache would keep the detached table. Offered only where that is possible.
TEST(LeafFlushOnly, CollapseFlushKeepsWalkCachesOnlyUnderTheInjection)
{
	for (ptemu_injection inj : {INJECT_NONE, INJECT_LEAF_FLUSH_ONLY}) {
		Retracted h("arm64", inj);
		ASSERT_EQ(h.flushes.size(), 1u);
		EXPECT_EQ(h.flushes[0].tables, inj == INJECT_NONE);
	}
	EXPECT_TRUE(ptemu_injection_applies(INJECT_LEAF_FLUSH_ONLY, ptemu_arch_find("arm64")));
	EXPECT_TRUE(ptemu_injection_applies(INJECT_LEAF_FLUSH_ONLY, ptemu_arch_find("arm64-39")));
	EXPECT_FALSE(ptemu_injection_applies(INJECT_LEAF_FLUSH_ONLY, ptemu_arch_find("s390")));
}

// s390: page_table_free_rcu leaves the half's PP bit set until __tlb_remove_table clears
// it after the grace period; until then alloc passes the half over.
TEST(S390Gather, FreedHalfIsPendingUntilTheGracePeriodEnds)
{
	Space s("s390");
	uint64_t a = s.map_touched(1);
	uint64_t t = s.table_at(a);
	ASSERT_NE(t, 0u);
	uint64_t other = pte_alloc_one(s.mm);  // the page's other half, kept allocated
	ASSERT_EQ(other & ~4095ull, t & ~4095ull);
	page *pg = pfn_to_page(s.m->phys, t >> 12);
	unsigned bit = (t >> 11) & 1;
	uint64_t c;
	{
		GracePeriodHeld held(s.m);
		ASSERT_EQ(do_munmap(s.mm, a, s.pmd_size()), 0);
		EXPECT_EQ(__atomic_load_n(&pg->pt_frag, __ATOMIC_ACQUIRE) & (0x11u << bit), 0x10u << bit)
			<< "AA cleared, PP set";
		c = pte_alloc_one(s.mm);
		EXPECT_NE(c, t) << "a half whose free is in flight is not handed out";
	}
	rcu_barrier();
	EXPECT_EQ(__atomic_load_n(&pg->pt_frag, __ATOMIC_ACQUIRE) & (0x11u << bit), 0u);
	EXPECT_EQ(s.state(t), TABLE_FREE);
	uint64_t d = pte_alloc_one(s.mm);
	uint64_t e = d == t ? 0 : pte_alloc_one(s.mm);
	EXPECT_TRUE(d == t || e == t) << "reusable once PP is clear";
	for (uint64_t x : {other, c, d, e})
		if (x)
			pte_free(s.mm, x);
	EXPECT_EQ(s.violations(), 0u) << s.describe();
}

// s390-ignore-pending-half: alloc ignores PP and hands the half out during its grace
// period; the checker sees a table handed out again while RCU_PENDING.
TEST(S390Gather, IgnoringThePendingBitIsCaught)
{
	Space s("s390", INJECT_S390_IGNORE_PENDING);
	uint64_t a = s.map_touched(1);
	uint64_t t = s.table_at(a);
	uint64_t other = pte_alloc_one(s.mm);
	ASSERT_EQ(other & ~4095ull, t & ~4095ull);
	{
		GracePeriodHeld held(s.m);
		ASSERT_EQ(do_munmap(s.mm, a, s.pmd_size()), 0);
		EXPECT_EQ(s.count(VIOLATION_PT_USE_AFTER_FREE), 0u);
		uint64_t c = pte_alloc_one(s.mm);
		uint64_t d = c == t ? 0 : pte_alloc_one(s.mm);
		EXPECT_TRUE(c == t || d == t);
		EXPECT_GT(s.count(VIOLATION_PT_USE_AFTER_FREE), 0u) << s.describe();
	}
	EXPECT_TRUE(ptemu_injection_applies(INJECT_S390_IGNORE_PENDING, s.arch()));
	EXPECT_FALSE(ptemu_injection_applies(INJECT_S390_IGNORE_PENDING, ptemu_arch_find("arm64")));
}

// s390's pmdp_collapse_flush is IDTE: one invalidation of the segment with walk caches.
// Under no-tlb-flush it is the lazy path: nothing purged now, the purge owed to the mm's
// next flush, which then covers the whole mm and walk caches.
TEST(S390Gather, CollapseFlushIsIdteAndNoTlbFlushIsTheLazyPath)
{
	for (ptemu_injection inj : {INJECT_NONE, INJECT_NO_TLB_FLUSH}) {
		Retracted h("s390", inj);
		const std::vector<Flush> &seen = h.flushes;
		EXPECT_TRUE(pmd_none(pmdp_get_lockless(h.pmd)));
		if (inj == INJECT_NONE) {
			ASSERT_EQ(seen.size(), 1u);
			EXPECT_EQ(seen[0].start, h.pmd_start());
			EXPECT_EQ(seen[0].end, h.pmd_start() + ptemu_pmd_size(h.arch()));
			EXPECT_TRUE(seen[0].tables);
		} else {
			EXPECT_TRUE(seen.empty());
			flush_tlb_page(h.mm, 0x100000);
			ASSERT_EQ(seen.size(), 1u);
			EXPECT_EQ(seen[0].start, 0u);
			EXPECT_EQ(seen[0].end, 1ull << h.arch()->va_bits);
			EXPECT_TRUE(seen[0].tables);
			flush_tlb_page(h.mm, 0x100000);
			EXPECT_EQ(seen[1].end - seen[1].start, ptemu_page_size(h.arch())) << "owed once";
		}
	}
}
