// --reclaim-empty-tables: MADV_DONTNEED frees a PTE table its zap left empty (Linux 6.14's
// try_to_free_pte on v6.6 primitives). A fault that mapped the table before the clear is
// then kept out of it by pte_offset_map_lock's pmd_same re-check alone.
#include "fixture.h"

#include <chrono>
#include <string>
#include <thread>

#include <ptemu/fault.h>
#include <ptemu/khugepaged.h>
#include <ptemu/file.h>
#include <ptemu/run.h>
#include <ptemu/uaccess.h>

#include "../workloads/include/ptemu_abi.h"

using namespace ptemu_test;

namespace {

class Reclaim : public testing::TestWithParam<const char *> {};

struct Space : MachineHolder {
	explicit Space(const char *arch, bool reclaim = true, enum ptemu_injection inject = INJECT_NONE)
	    : MachineHolder(arch, inject)
	{
		if (!m)
			return;
		m->features.reclaim_empty_tables = reclaim;
		mm = mm_alloc(m);
	}
	~Space()
	{
		if (mm)
			mm_destroy(mm);
	}
	uint64_t page() const { return ptemu_page_size(m->arch); }
	uint64_t pmd_size() const { return ptemu_pmd_size(m->arch); }
	int64_t map_anon(uint64_t len, uint64_t at = 0)
	{
		return do_mmap(mm, at, len, PTEMU_PROT_READ | PTEMU_PROT_WRITE,
			       PTEMU_MAP_PRIVATE | PTEMU_MAP_ANONYMOUS | (at ? PTEMU_MAP_FIXED : 0), nullptr, 0);
	}
	uint64_t read64(uint64_t a)
	{
		uint64_t v = ~0ull;
		EXPECT_EQ(copy_from_user(mm, &v, a, 8), 0) << std::hex << a;
		return v;
	}
	void write64(uint64_t a, uint64_t v) { EXPECT_EQ(copy_to_user(mm, a, &v, 8), 0) << std::hex << a; }
	int dontneed(uint64_t a, uint64_t len) { return do_madvise(mm, a, len, PTEMU_MADV_DONTNEED); }
	// The table the pmd of `a` points at, 0 when it is not a table.
	uint64_t table_at(uint64_t a)
	{
		pmd_t *pmd = mm_find_pmd(mm, a);
		uint64_t t = 0;
		if (!pmd || pmd_kind(pmdp_get_lockless(pmd), &t) != PTEMU_ENTRY_TABLE)
			return 0;
		return t;
	}
	mm_struct *mm = nullptr;
};

} // namespace

TEST_P(Reclaim, DontneedOfAWholePmdFreesTheEmptyTableAndFaultsGetAFreshOne)
{
	Space s(GetParam());
	int64_t a = s.map_anon(s.pmd_size());
	ASSERT_GT(a, 0);
	ASSERT_EQ(a % s.pmd_size(), 0);
	for (uint64_t off = 0; off < s.pmd_size(); off += 16 * s.page())
		s.write64(a + off, 0x5500 + off);
	uint64_t table = s.table_at(a);
	ASSERT_NE(table, 0u);
	int64_t pt = mm_pgtables_bytes(s.mm);

	ASSERT_EQ(s.dontneed(a, s.pmd_size()), 0);
	EXPECT_TRUE(pmd_none(pmdp_get_lockless(mm_find_pmd(s.mm, a))));
	EXPECT_EQ(s.stat(PTEMU_STAT_tables_reclaimed), 1u);
	// Through the zap's mmu_gather (6.14's free_pte), not pte_free_defer.
	EXPECT_EQ(s.stat(PTEMU_STAT_tables_gathered), 1u);
	EXPECT_EQ(s.stat(PTEMU_STAT_tables_freed_deferred), 0u);
	ptemu_table_state st = check_table_state(s.m, table);
	EXPECT_TRUE(st == TABLE_RCU_PENDING || st == TABLE_FREE) << ptemu_table_state_name(st);
	EXPECT_EQ(pt - mm_pgtables_bytes(s.mm), (int64_t)s.arch()->pte_table_bytes);
	EXPECT_EQ(get_mm_counter(s.mm, MM_ANONPAGES), 0);
	mm_audit_counters(s.mm);
	rcu_barrier();
	// The only table in the mm: on s390 its page-mate half is free too.
	EXPECT_EQ(check_table_state(s.m, table), TABLE_FREE);

	// A later fault installs a new table and reads zeroes.
	EXPECT_EQ(s.read64(a + 16 * s.page()), 0u);
	EXPECT_NE(s.table_at(a), 0u);
	EXPECT_EQ(mm_pgtables_bytes(s.mm), pt);
	EXPECT_EQ(get_mm_counter(s.mm, MM_ANONPAGES), 1);
	// munmap frees tables through free_pgtables, not through reclaim.
	ASSERT_EQ(do_munmap(s.mm, a, s.pmd_size()), 0);
	EXPECT_EQ(s.stat(PTEMU_STAT_tables_reclaimed), 1u);
	mm_audit_counters(s.mm);
	EXPECT_EQ(s.violations(), 0u) << s.describe();
}

TEST_P(Reclaim, WithoutTheFeatureTheEmptyTableStays)
{
	Space s(GetParam(), false);
	int64_t a = s.map_anon(s.pmd_size());
	ASSERT_GT(a, 0);
	s.write64(a, 1);
	s.write64(a + s.pmd_size() - 8, 2);
	uint64_t table = s.table_at(a);
	ASSERT_NE(table, 0u);
	ASSERT_EQ(s.dontneed(a, s.pmd_size()), 0);
	EXPECT_EQ(s.table_at(a), table);
	EXPECT_EQ(check_table_state(s.m, table), TABLE_ATTACHED);
	EXPECT_EQ(s.stat(PTEMU_STAT_tables_reclaimed), 0u);
	EXPECT_EQ(get_mm_counter(s.mm, MM_ANONPAGES), 0);
	EXPECT_EQ(s.read64(a), 0u);
	mm_audit_counters(s.mm);
	EXPECT_EQ(s.violations(), 0u) << s.describe();
}

// 6.14 reclaims a table only in a zap that covered its whole PMD range
// (reclaim_pt_is_enabled): a partial DONTNEED leaves the table, so does a second one that
// empties it, and a third over the whole range takes it.
TEST_P(Reclaim, PartialDontneedsLeaveTheTableEvenEmptyAndAWholePmdOneTakesIt)
{
	Space s(GetParam());
	int64_t a = s.map_anon(s.pmd_size());
	ASSERT_GT(a, 0);
	for (uint64_t i = 0; i < 8; i++)
		s.write64(a + i * s.page(), 0x700 + i);
	uint64_t table = s.table_at(a);
	ASSERT_NE(table, 0u);
	ASSERT_EQ(s.dontneed(a, 4 * s.page()), 0);
	EXPECT_EQ(get_mm_counter(s.mm, MM_ANONPAGES), 4);
	EXPECT_EQ(s.table_at(a), table);
	ASSERT_EQ(s.dontneed(a + 4 * s.page(), s.pmd_size() - 4 * s.page()), 0);
	EXPECT_EQ(get_mm_counter(s.mm, MM_ANONPAGES), 0);
	EXPECT_EQ(s.table_at(a), table);
	EXPECT_EQ(check_table_state(s.m, table), TABLE_ATTACHED);
	EXPECT_EQ(s.stat(PTEMU_STAT_tables_reclaimed), 0u);

	ASSERT_EQ(s.dontneed(a, s.pmd_size()), 0);
	EXPECT_EQ(s.table_at(a), 0u);
	EXPECT_EQ(s.stat(PTEMU_STAT_tables_reclaimed), 1u);
	EXPECT_EQ(s.read64(a), 0u);
	mm_audit_counters(s.mm);
	EXPECT_EQ(s.violations(), 0u) << s.describe();
}

// Two VMAs in one PMD range: no DONTNEED of either covers the whole PMD, so their table
// stays even once both are dropped and it is empty.
TEST_P(Reclaim, ATableSharedByTwoVmasIsNeverReclaimed)
{
	Space s(GetParam());
	int64_t base = s.map_anon(2 * s.pmd_size());
	ASSERT_GT(base, 0);
	uint64_t lo = (uint64_t)base + s.pmd_size() - (uint64_t)base % s.pmd_size();
	ASSERT_EQ(do_munmap(s.mm, base, 2 * s.pmd_size()), 0);
	int64_t a = s.map_anon(4 * s.page(), lo);
	int64_t b = s.map_anon(4 * s.page(), lo + 8 * s.page());
	ASSERT_EQ(a, (int64_t)lo);
	ASSERT_EQ(b, (int64_t)(lo + 8 * s.page()));
	for (uint64_t i = 0; i < 4; i++)
		s.write64(a + i * s.page(), 0xa0 + i);
	s.write64(b + 2 * s.page(), 0xb2);
	uint64_t table = s.table_at(lo);
	ASSERT_NE(table, 0u);

	ASSERT_EQ(s.dontneed(a, 4 * s.page()), 0);
	EXPECT_EQ(s.read64(b + 2 * s.page()), 0xb2u);
	ASSERT_EQ(s.dontneed(b, 4 * s.page()), 0);
	EXPECT_EQ(s.table_at(lo), table);
	EXPECT_EQ(s.stat(PTEMU_STAT_tables_reclaimed), 0u);
	EXPECT_EQ(s.read64(a), 0u);
	EXPECT_EQ(s.read64(b + 2 * s.page()), 0u);
	mm_audit_counters(s.mm);
	EXPECT_EQ(s.violations(), 0u) << s.describe();
}

// Shared (shmem) mappings lose only their table: the data stays in the page cache.
TEST_P(Reclaim, ShmemTableIsReclaimedAndTheDataSurvives)
{
	Space s(GetParam());
	ptemu_file *f = ptemu_file_create(s.m, 3, true, s.pmd_size(), s.pmd_size());
	int64_t a = do_mmap(s.mm, 0, s.pmd_size(), PTEMU_PROT_READ | PTEMU_PROT_WRITE,
			    PTEMU_MAP_SHARED, f, 0);
	ASSERT_GT(a, 0);
	s.write64(a + 3 * s.page(), 33);
	s.write64(a + 9 * s.page(), 99);
	ASSERT_EQ(s.dontneed(a, s.pmd_size()), 0);
	EXPECT_EQ(s.table_at(a), 0u);
	EXPECT_EQ(s.stat(PTEMU_STAT_tables_reclaimed), 1u);
	EXPECT_EQ(get_mm_counter(s.mm, MM_SHMEMPAGES), 0);
	EXPECT_EQ(s.read64(a + 3 * s.page()), 33u);
	EXPECT_EQ(s.read64(a + 9 * s.page()), 99u);
	mm_audit_counters(s.mm);
	ptemu_file_put(f);
	EXPECT_EQ(s.violations(), 0u) << s.describe();
}

namespace {

// A fault on a none PTE of a populated table; between its map and its lock of the table
// (map_before_lock), another thread DONTNEEDs the whole PMD, which empties and reclaims the
// table. The other thread is needed: the faulting one holds RCU, where mmap_lock may not be
// taken.
struct RaceCtx {
	Space *s;
	int64_t a;
	ptemu_thread *faulter = nullptr;
	int fired = 0;  // the faulting thread's passes (the DONTNEED's zap passes here too)
	uint64_t table = 0;
	uint64_t state_after_reclaim = 0;  // the table's state once the DONTNEED returned
};

unsigned fault_racing_reclaim(Space &s, RaceCtx &ctx)
{
	for (uint64_t i = 0; i < 4; i++)
		s.write64(ctx.a + i * s.page(), 0xc0 + i);
	ctx.table = s.table_at(ctx.a);
	ctx.faulter = ptemu_current();
	s.m->test_hooks.ctx = &ctx;
	s.m->test_hooks.map_before_lock = [](void *c, mm_struct *, void *) {
		auto *x = static_cast<RaceCtx *>(c);
		if (ptemu_current() != x->faulter || x->fired++)
			return;
		std::thread t([x] {
			ptemu_thread_register(x->s->m, "madvise");
			EXPECT_EQ(x->s->dontneed(x->a, x->s->pmd_size()), 0);
			ptemu_thread_unregister();
		});
		t.join();
		// The faulting thread still holds the table mapped inside RCU.
		x->state_after_reclaim = check_table_state(x->s->m, x->table);
	};
	unsigned ret = ptemu_user_fault(s.mm, ctx.a + 7 * s.page(), FAULT_FLAG_WRITE);
	s.m->test_hooks.map_before_lock = nullptr;
	return ret;
}

} // namespace

TEST_P(Reclaim, FaultThatMappedTheTableBeforeReclaimSeesThePmdChangeAndRetries)
{
	Space s(GetParam());
	RaceCtx ctx{&s, s.map_anon(s.pmd_size())};
	ASSERT_GT(ctx.a, 0);
	unsigned ret = fault_racing_reclaim(s, ctx);
	EXPECT_EQ(ctx.fired, 1);  // the retry pass found the pmd none: no second lock attempt
	EXPECT_EQ(ret, VM_FAULT_NOPAGE);  // nothing installed: the access retries
	EXPECT_EQ(s.stat(PTEMU_STAT_tables_reclaimed), 1u);
	EXPECT_EQ(ctx.state_after_reclaim, (uint64_t)TABLE_RCU_PENDING);
	EXPECT_EQ(s.stat(PTEMU_STAT_pmd_recheck_retries), 1u);
	EXPECT_EQ(s.stat(PTEMU_STAT_pte_map_failures), 1u);
	EXPECT_EQ(s.stat(PTEMU_STAT_detach_with_reader), 1u);
	EXPECT_GE(s.stat(PTEMU_STAT_fault_retries), 1u);
	EXPECT_EQ(get_mm_counter(s.mm, MM_ANONPAGES), 0);
	// Before any new table can take its page.
	rcu_barrier();
	EXPECT_EQ(check_table_state(s.m, ctx.table), TABLE_FREE);
	// The retried access allocates a fresh table; the dropped pages read zero.
	s.write64(ctx.a + 7 * s.page(), 77);
	EXPECT_EQ(s.read64(ctx.a + 7 * s.page()), 77u);
	EXPECT_EQ(s.read64(ctx.a), 0u);
	EXPECT_EQ(get_mm_counter(s.mm, MM_ANONPAGES), 2);
	mm_audit_counters(s.mm);
	EXPECT_EQ(s.violations(), 0u) << s.describe();
}

TEST_P(Reclaim, WithoutThePmdRecheckTheFaultWritesIntoTheReclaimedTable)
{
	Space s(GetParam(), true, INJECT_NO_PMD_RECHECK);
	RaceCtx ctx{&s, s.map_anon(s.pmd_size())};
	ASSERT_GT(ctx.a, 0);
	fault_racing_reclaim(s, ctx);
	EXPECT_EQ(ctx.fired, 1);
	EXPECT_EQ(s.stat(PTEMU_STAT_tables_reclaimed), 1u);
	EXPECT_EQ(s.stat(PTEMU_STAT_pmd_recheck_retries), 0u);
	EXPECT_GE(s.count(VIOLATION_PTE_IN_DETACHED_TABLE), 1u) << s.describe();
}

namespace {

// A shmem file's first PMD mapped shared, half its pages written through PTEs.
struct ShmemSpace : Space {
	ShmemSpace(const char *arch, enum ptemu_injection inject) : Space(arch, true, inject)
	{
		f = ptemu_file_create(m, 11, true, pmd_size(), pmd_size());
		addr = do_mmap(mm, 0, pmd_size(), PTEMU_PROT_READ | PTEMU_PROT_WRITE, PTEMU_MAP_SHARED, f, 0);
		EXPECT_GT(addr, 0);
		for (uint64_t i = 0; i < pmd_size() / page(); i += 2)
			write64(addr + i * page(), 0xabc000 + i);
	}
	~ShmemSpace()
	{
		if (mm)
			mm_destroy(mm);
		mm = nullptr;
		ptemu_file_put(f);
	}
	ptemu_file *f;
	int64_t addr;
};

// Between a removal's lockless look at the pmd and its pmd lock (before_retract_lock),
// another thread DONTNEEDs the whole PMD: the table is empty by then (try_to_unmap or
// collapse_pte_mapped_thp cleared it), so the zap reclaims it and the pmd is none.
struct ReclaimBeforeLock {
	ShmemSpace *s;
	bool fired = false;

	void install()
	{
		s->m->test_hooks.ctx = this;
		s->m->test_hooks.before_retract_lock = [](void *c, mm_struct *mm, void *) {
			auto *x = static_cast<ReclaimBeforeLock *>(c);
			if (mm != x->s->mm || x->fired)
				return;
			x->fired = true;
			std::thread t([x] {
				ptemu_thread_register(x->s->m, "madvise");
				EXPECT_EQ(x->s->dontneed(x->s->addr, x->s->pmd_size()), 0);
				ptemu_thread_unregister();
			});
			t.join();
		};
	}
	~ReclaimBeforeLock() { s->m->test_hooks.before_retract_lock = nullptr; }
};

} // namespace

// retract_page_tables re-checks under the pmd lock that the pmd still points at a table
// (6.14's check_pmd_state). v6.6 (retract-no-recheck) goes on with the none pmd and frees
// pmd_pgtable of it as a table.
TEST_P(Reclaim, RetractRechecksAPmdThatReclaimEmptiedBeforeItsLock)
{
	for (ptemu_injection inj : {INJECT_NONE, INJECT_RETRACT_NO_RECHECK}) {
		SCOPED_TRACE(inj == INJECT_NONE ? "correct" : "retract-no-recheck");
		ShmemSpace s(GetParam(), inj);
		{
			ReclaimBeforeLock race{&s};
			race.install();
			EXPECT_EQ(collapse_file(nullptr, 0, s.f, 0, nullptr), SCAN_SUCCEED) << s.describe();
			ASSERT_TRUE(race.fired);
		}
		EXPECT_EQ(s.table_at(s.addr), 0u);
		EXPECT_EQ(s.stat(PTEMU_STAT_removal_saw_pmd_change), 1u);
		if (inj == INJECT_NONE) {
			EXPECT_EQ(s.stat(PTEMU_STAT_retracts), 0u);
			EXPECT_EQ(s.read64(s.addr + 2 * s.page()), 0xabc002u);
			EXPECT_EQ(s.violations(), 0u) << s.describe();
		} else {
			EXPECT_GE(s.count(VIOLATION_PT_USE_AFTER_FREE), 1u) << s.describe();
		}
	}
}

// collapse_pte_mapped_thp re-checks the pmd before removing the table it emptied (6.13).
// v6.6 (cpmt-no-recheck) removes whatever the pmd holds: here none, freed as a table.
TEST_P(Reclaim, CollapsePteMappedThpRechecksAPmdThatReclaimEmptied)
{
	for (ptemu_injection inj : {INJECT_NONE, INJECT_CPMT_NO_RECHECK}) {
		SCOPED_TRACE(inj == INJECT_NONE ? "correct" : "cpmt-no-recheck");
		ShmemSpace s(GetParam(), inj);
		// The huge folio in the page cache, the range still PTE-mapped through the old
		// table: its retraction was skipped because the mm looked exiting.
		__atomic_store_n(&s.mm->mm_users, 0, __ATOMIC_RELEASE);
		EXPECT_EQ(collapse_file(nullptr, 0, s.f, 0, nullptr), SCAN_SUCCEED) << s.describe();
		__atomic_store_n(&s.mm->mm_users, 1, __ATOMIC_RELEASE);
		EXPECT_EQ(s.read64(s.addr + 4 * s.page()), 0xabc004u);
		ASSERT_NE(s.table_at(s.addr), 0u);
		{
			ReclaimBeforeLock race{&s};
			race.install();
			down_read(&s.mm->mmap_lock);
			enum scan_result r = collapse_pte_mapped_thp(s.mm, s.addr, false);
			up_read(&s.mm->mmap_lock);
			ASSERT_TRUE(race.fired);
			if (inj == INJECT_NONE) {
				EXPECT_EQ(r, SCAN_FAIL);
			}
		}
		EXPECT_EQ(s.table_at(s.addr), 0u);
		EXPECT_EQ(s.stat(PTEMU_STAT_removal_saw_pmd_change), 1u);
		if (inj == INJECT_NONE) {
			EXPECT_EQ(s.read64(s.addr + 4 * s.page()), 0xabc004u);
			EXPECT_EQ(s.violations(), 0u) << s.describe();
		} else {
			EXPECT_GE(s.count(VIOLATION_PT_USE_AFTER_FREE), 1u) << s.describe();
		}
	}
}

namespace {

// exit_mmap as v6.6 orders it: every VMA zapped first, the file VMAs unlinked from i_mmap
// only in free_pgtables. A retract between its look at the pmd and its pmd lock holds
// i_mmap_rwsem for read: the exit's zap runs meanwhile, and its unlink waits for it.
struct ExitDuringRetract {
	ShmemSpace *s;
	std::thread exiter;
	bool fired = false, zapped_while_retracting = false;

	void install()
	{
		s->m->test_hooks.ctx = this;
		s->m->test_hooks.before_retract_lock = [](void *c, mm_struct *mm, void *) {
			auto *x = static_cast<ExitDuringRetract *>(c);
			if (mm != x->s->mm || x->fired)
				return;
			x->fired = true;
			mm_struct *exiting = x->s->mm;
			x->exiter = std::thread([x, exiting] {
				ptemu_thread_register(x->s->m, "exit");
				exit_mmap(exiting);
				ptemu_thread_unregister();
			});
			// The zap drops the anonymous page; the old order waited in the unlink.
			for (int i = 0; i < 2000 && !x->zapped_while_retracting; i++) {
				x->zapped_while_retracting = get_mm_counter(exiting, MM_ANONPAGES) == 0;
				std::this_thread::sleep_for(std::chrono::milliseconds(1));
			}
		};
	}
	~ExitDuringRetract() { s->m->test_hooks.before_retract_lock = nullptr; }
};

} // namespace

TEST_P(Reclaim, ExitZapsBeforeItLeavesIMmapSoARetractCanRaceTheZap)
{
	ShmemSpace s(GetParam(), INJECT_NONE);
	int64_t anon = s.map_anon(s.page());
	ASSERT_GT(anon, 0);
	s.write64(anon, 1);
	ASSERT_EQ(get_mm_counter(s.mm, MM_ANONPAGES), 1);
	{
		ExitDuringRetract race{&s, {}};
		race.install();
		EXPECT_EQ(collapse_file(nullptr, 0, s.f, 0, nullptr), SCAN_SUCCEED) << s.describe();
		ASSERT_TRUE(race.fired);
		race.exiter.join();
		s.mm = nullptr;	// gone with the exit
		EXPECT_TRUE(race.zapped_while_retracting);
	}
	// The retract went on in the exiting mm, the exit then freed what was left.
	EXPECT_EQ(s.stat(PTEMU_STAT_retracts), 1u);
	rcu_barrier();
	EXPECT_EQ(s.violations(), 0u) << s.describe();
}

INSTANTIATE_TEST_SUITE_P(Models, Reclaim, testing::ValuesIn(kModels), ModelName);

// The guest side: dontneed-race's shared zero PMD is read by both vCPUs of a process and
// dropped whole, so one vCPU's fault races the other's reclaim. Deterministic random walk
// (PCT rarely preempts a faulter in its one-step window between map and lock).
namespace {

class ReclaimGuest : public testing::TestWithParam<const char *> {};

struct DontneedRace {
	DontneedRace(const char *arch, ptemu_injection inject, uint64_t seed = 1,
		     ptemu_sched_strategy strategy = PTEMU_SCHED_RANDOM)
	{
		const ptemu_arch *a = ptemu_arch_find(arch);
		path = workload_image(arch, "dontneed-race");
		cfg = guest_run_config(a, "dontneed-race", path, 2, 2, 60);
		cfg.seed = seed;
		cfg.inject = inject;
		cfg.features.reclaim_empty_tables = true;
		cfg.phys_bytes = 128ull << 20;
		make_deterministic(cfg, seed, strategy);
		error = ptemu_run(&cfg, &m, &res);
	}
	~DontneedRace() { ptemu_machine_destroy(m); }
	uint64_t stat(ptemu_stat s) const { return m ? ptemu_stat_get(&m->stats, s) : 0; }

	std::string path;
	ptemu_run_config cfg{};
	ptemu_machine *m = nullptr;
	ptemu_run_result res{};
	ptemu_run_error error;
};

} // namespace

TEST_P(ReclaimGuest, FaultsRacingReclaimRetryAndTheRunIsClean)
{
	DontneedRace r(GetParam(), INJECT_NONE);
	ASSERT_EQ(r.error, PTEMU_RUN_OK) << r.res.message;
	EXPECT_EQ(check_violation_count(r.m), 0u);
	EXPECT_GT(r.stat(PTEMU_STAT_tables_reclaimed), 0u);
	EXPECT_GT(r.stat(PTEMU_STAT_pmd_recheck_retries), 0u);  // the race did happen
	EXPECT_EQ(phys_stats(r.m->phys).pages_allocated, r.m->arch_mem_pages);
}

TEST_P(ReclaimGuest, WithoutThePmdRecheckAFaultWritesIntoAReclaimedTable)
{
	DontneedRace r(GetParam(), INJECT_NO_PMD_RECHECK);
	ASSERT_NE(r.m, nullptr) << r.res.message;
	EXPECT_GT(check_kind_count(r.m, VIOLATION_PTE_IN_DETACHED_TABLE), 0u);
}

// dontneed-race's vCPU 1 yields until its vCPU 0 publishes an address. A guest's yield is
// a spin-wait to the scheduler: at these seeds (a campaign's) PCT had preempted vCPU 0 at a
// window point, and the two processes' waiting vCPUs handed the baton only to each other
// until the livelock bound.
TEST_P(ReclaimGuest, WaitingGuestsDoNotLivelockUnderPct)
{
	const bool s390 = std::string(GetParam()) == "s390";
	DontneedRace r(GetParam(), INJECT_NONE, s390 ? 5 : 2, PTEMU_SCHED_PCT);
	ASSERT_EQ(r.error, PTEMU_RUN_OK) << r.res.message;
	EXPECT_EQ(check_violation_count(r.m), 0u);
}

INSTANTIATE_TEST_SUITE_P(Guests, ReclaimGuest, testing::Values("arm64", "s390"), ModelName);
