// Guest runs with collapse active (khugepaged and MADV_COLLAPSE), deterministic under PCT:
// the correct protocol is clean while collapses and retracts happen, and each injected bug
// is caught with its kind at a seed that a campaign found (ptemu campaign --seeds 50
// --steps 200000 --khugepaged on --inject NAME), the same way twice.
#include "fixture.h"

#include <ptemu/run.h>

#include <algorithm>
#include <map>
#include <string>
#include <utility>
#include <vector>

#ifndef PTEMU_WORKLOAD_DIR
#error "PTEMU_WORKLOAD_DIR must name the built images"
#endif

using namespace ptemu_test;

namespace {

// What a run has on besides the workload: the khugepaged thread, empty-table reclaim.
enum : unsigned { kKhugepaged = 1, kReclaim = 2 };

struct CollapseRun {
	CollapseRun(const char *arch, const char *workload, uint64_t seed, ptemu_injection inject,
		    unsigned with = kKhugepaged, unsigned depth = 3)
	{
		const ptemu_arch *a = ptemu_arch_find(arch);
		path = workload_image(arch, workload);
		cfg = guest_run_config(a, workload, path, 2, 2, 3);
		cfg.seed = seed;
		cfg.inject = inject;
		cfg.khugepaged = with & kKhugepaged;
		cfg.features.reclaim_empty_tables = with & kReclaim;
		make_deterministic(cfg, seed, PTEMU_SCHED_PCT, depth);
		error = ptemu_run(&cfg, &m, &res);
	}
	~CollapseRun()
	{
		if (!res.hung)
			ptemu_machine_destroy(m);
	}
	uint64_t stat(ptemu_stat s) const { return m ? ptemu_stat_get(&m->stats, s) : 0; }
	const ptemu_violation *first() const
	{
		size_t n = 0;
		const ptemu_violation *v = m ? check_violations(m, &n) : nullptr;
		return n ? v : nullptr;
	}

	std::string path;
	ptemu_run_config cfg{};
	ptemu_machine *m = nullptr;
	ptemu_run_result res{};
	ptemu_run_error error;
};

class CollapseGuest : public testing::TestWithParam<const char *> {};

std::string injection_name(int inj)
{
	const ptemu_injection_info *i = ptemu_injection_find((ptemu_injection)inj);
	return i ? i->name : std::to_string(inj);
}

struct Caught {
	ptemu_injection inj;
	const char *workload;
	unsigned with;
	std::map<std::string, uint64_t> seeds;	// by model; a model not named does not offer it
	unsigned depth;
	std::vector<ptemu_violation_kind> kinds;
};

} // namespace

TEST_P(CollapseGuest, CorrectProtocolIsCleanWhileCollapsesAndRetractsHappen)
{
	for (const char *w : {"shmem-stress", "truncate-race", "retract-reclaim"}) {
		CollapseRun r(GetParam(), w, 2, INJECT_NONE);
		ASSERT_EQ(r.error, PTEMU_RUN_OK) << w << ": " << r.res.message;
		EXPECT_EQ(check_violation_count(r.m), 0u) << w;
		EXPECT_GT(r.stat(PTEMU_STAT_collapses), 0u) << w;
		EXPECT_GT(r.stat(PTEMU_STAT_retracts), 0u) << w;
		EXPECT_GT(r.stat(PTEMU_STAT_khugepaged_full_scans), 0u) << w;
	}
}

// The races of the mission really happen with collapse active (DESIGN.md section 8): over
// five seeds of shmem-stress, each coverage counter is above zero and nothing is reported.
// The window is a campaign's (ptemu campaign --seeds 5 --seed-base 31 --steps 200000
// --khugepaged on): walk_raced_detach is the rare one (none on ppc64-radix in seeds 1..15).
TEST_P(CollapseGuest, EveryCoverageCounterIsHitOverFiveSeeds)
{
	const ptemu_stat counters[] = {PTEMU_STAT_pte_map_failures, PTEMU_STAT_pmd_recheck_retries,
				       PTEMU_STAT_detach_with_reader, PTEMU_STAT_walk_raced_detach};
	const uint64_t base = 31;
	uint64_t sum[4] = {};
	for (uint64_t seed = base; seed < base + 5; seed++) {
		CollapseRun r(GetParam(), "shmem-stress", seed, INJECT_NONE);
		ASSERT_EQ(r.error, PTEMU_RUN_OK) << "seed " << seed << ": " << r.res.message;
		EXPECT_EQ(check_violation_count(r.m), 0u) << "seed " << seed;
		for (int i = 0; i < 4; i++)
			sum[i] += r.stat(counters[i]);
	}
	for (int i = 0; i < 4; i++)
		EXPECT_GT(sum[i], 0u) << ptemu_stat_name(counters[i]);
}

TEST_P(CollapseGuest, EachInjectionIsCaughtWithItsKindTheSameWayTwice)
{
	const Caught cases[] = {
		{INJECT_FREE_IMMEDIATELY, "shmem-stress", kKhugepaged,
		 {{"arm64", 1}, {"s390", 1}, {"arm-lpae", 1}, {"sparc64", 1}, {"ppc64-radix", 1},
		  {"ppc64-hash", 2}}, 3,
		 {VIOLATION_PT_USE_AFTER_FREE, VIOLATION_PT_FREE_WHILE_MAPPED}},
		{INJECT_NO_RCU_READ_LOCK, "shmem-stress", kKhugepaged,
		 {{"arm64", 1}, {"s390", 1}, {"arm-lpae", 1}, {"sparc64", 1}, {"ppc64-radix", 1},
		  {"ppc64-hash", 1}}, 3,
		 {VIOLATION_PT_READ_UNPROTECTED, VIOLATION_PT_USE_AFTER_FREE,
		  VIOLATION_PT_FREE_WHILE_MAPPED}},
		{INJECT_SKIP_PTE_UNMAP, "shmem-stress", kKhugepaged,
		 {{"arm64", 1}, {"s390", 1}, {"arm-lpae", 1}, {"sparc64", 1}, {"ppc64-radix", 1},
		  {"ppc64-hash", 1}}, 3,
		 {VIOLATION_RCU_IMBALANCE, VIOLATION_MAP_UNMAP_IMBALANCE}},
		// Most failing runs of no-tlb-flush then loop on a stale walk cache until the
		// livelock bound (on arm64 and ppc64-radix every one, on arm-lpae 45 of 50, their
		// walks reading the detached table through the walk cache): their first violation
		// is the deterministic part.
		{INJECT_NO_TLB_FLUSH, "shmem-stress", kKhugepaged,
		 {{"arm64", 1}, {"s390", 1}, {"arm-lpae", 1}, {"ppc64-radix", 1}}, 3,
		 {VIOLATION_PT_USE_AFTER_FREE, VIOLATION_TLB_MAPS_FREED_PAGE,
		  VIOLATION_PT_READ_UNPROTECTED}},
		{INJECT_NO_PMD_RECHECK, "dontneed-race", kReclaim,
		 {{"arm64", 1}, {"s390", 1}, {"arm-lpae", 1}, {"sparc64", 1}, {"ppc64-radix", 1},
		  {"ppc64-hash", 1}}, 3,
		 {VIOLATION_PTE_IN_DETACHED_TABLE, VIOLATION_DATA_MISMATCH}},
		// A walk cache that keeps the detached table: every failing run then livelocks.
		// (or reads the table through it once its grace period has begun)
		{INJECT_LEAF_FLUSH_ONLY, "shmem-stress", kKhugepaged, {{"arm64", 1}, {"ppc64-radix", 1}}, 3,
		 {VIOLATION_PT_USE_AFTER_FREE, VIOLATION_TLB_MAPS_FREED_PAGE, VIOLATION_PT_READ_UNPROTECTED}},
		{INJECT_S390_RELIST_ACTIVE, "shmem-stress", kKhugepaged, {{"s390", 1}}, 3,
		 {VIOLATION_PT_USE_AFTER_FREE}},
		// A half freed through the mmu_gather is reused only by a later allocation in the
		// same mm: munmap-race frees tables while it runs, shmem-stress only at exit.
		{INJECT_S390_IGNORE_PENDING, "munmap-race", kKhugepaged, {{"s390", 1}}, 3,
		 {VIOLATION_PT_USE_AFTER_FREE, VIOLATION_PT_FREE_WHILE_MAPPED, VIOLATION_TLB_MAPS_FREED_PAGE}},
		// A whole-extent DONTNEED that reclaims the table a removal has looked at but not
		// locked yet: v6.6's retract and collapse_pte_mapped_thp then free pmd_pgtable of
		// the none pmd (at these tests' 200000 steps, 40 to 49 seeds in 50 per model find
		// the first, 18 to 43 the second).
		{INJECT_RETRACT_NO_RECHECK, "retract-reclaim", kKhugepaged | kReclaim,
		 {{"arm64", 1}, {"s390", 1}, {"arm-lpae", 1}, {"sparc64", 1}, {"ppc64-radix", 1},
		  {"ppc64-hash", 1}}, 3,
		 {VIOLATION_PT_USE_AFTER_FREE}},
		{INJECT_CPMT_NO_RECHECK, "retract-reclaim", kKhugepaged | kReclaim,
		 {{"arm64", 1}, {"s390", 2}, {"arm-lpae", 2}, {"sparc64", 2}, {"ppc64-radix", 1},
		  {"ppc64-hash", 1}}, 3,
		 {VIOLATION_PT_USE_AFTER_FREE}},
		// The TSB-miss walk outside a read-side section: the retracted table is freed
		// under it, or it reads one whose free is already queued.
		{INJECT_SPARC_MISS_IRQS_ON, "shmem-stress", kKhugepaged, {{"sparc64", 9}}, 3,
		 {VIOLATION_PT_USE_AFTER_FREE, VIOLATION_PT_READ_UNPROTECTED}},
		// A stale TSB entry or TLB entry: most failing runs then livelock on a write that
		// the stale read-only translation refuses (43 of 50).
		{INJECT_SPARC_NO_TLB_BATCH, "shmem-stress", kKhugepaged, {{"sparc64", 1}}, 3,
		 {VIOLATION_TLB_MAPS_FREED_PAGE}},
		// A deferred fragment handed out again: the allocation itself is the report.
		{INJECT_PPC_FRAG_REUSE, "shmem-stress", kKhugepaged, {{"ppc64-radix", 1}, {"ppc64-hash", 1}}, 3,
		 {VIOLATION_PT_USE_AFTER_FREE}},
		// The fragment page of frag-rollover, emptied before exit: its last free (the
		// cursor's drop at exit, or the gather of the unmapped tables) does not wait for
		// the grace period of the retracted fragments.
		{INJECT_PPC_V66_FRAG_DESTROY, "frag-rollover", kKhugepaged, {{"ppc64-radix", 1}, {"ppc64-hash", 1}}, 3,
		 {VIOLATION_PT_FREE_BEFORE_GRACE_PERIOD}},
		{INJECT_PPC_NO_PAGE_ACTIVE, "frag-rollover", kKhugepaged, {{"ppc64-radix", 1}, {"ppc64-hash", 1}}, 3,
		 {VIOLATION_PT_FREE_BEFORE_GRACE_PERIOD}},
		// An HPTE entered without the handshake outlives the PTE a truncation cleared
		// meanwhile, and maps the page when the truncation frees it (other failing
		// seeds hang on a duplicate HPTE that the search keeps finding).
		{INJECT_PPC_HASH_NO_BUSY, "truncate-race", kKhugepaged, {{"ppc64-hash", 3}}, 3,
		 {VIOLATION_TLB_MAPS_FREED_PAGE}},
	};
	// Each case runs the configuration that `ptemu list injections` gives as the one that
	// reaches the injection (and campaign checks its options against).
	for (const Caught &c : cases) {
		const ptemu_injection_info *i = ptemu_injection_find(c.inj);
		ASSERT_NE(i, nullptr) << "injection " << c.inj;
		EXPECT_STREQ(i->workload, c.workload) << i->name;
		EXPECT_EQ(i->khugepaged, (c.with & kKhugepaged) != 0) << i->name;
		EXPECT_EQ(i->reclaim_empty_tables, (c.with & kReclaim) != 0) << i->name;
	}
	EXPECT_STREQ(ptemu_injection_find(INJECT_PPC_NO_SERIALIZE)->workload, "shmem-stress");
	EXPECT_TRUE(ptemu_injection_find(INJECT_PPC_NO_SERIALIZE)->khugepaged);
	const ptemu_arch *arch = ptemu_arch_find(GetParam());
	// Every injection the model offers has its case, or is one that the model shows
	// cannot fire (ptemu list injections says why), and then its run is clean.
	for (int inj = INJECT_NONE + 1; inj < INJECT_COUNT; inj++) {
		if (!ptemu_injection_applies((ptemu_injection)inj, arch))
			continue;
		if (inj == INJECT_PPC_NO_SERIALIZE) {
			CollapseRun r(GetParam(), "shmem-stress", 1, (ptemu_injection)inj, kKhugepaged, 3);
			EXPECT_EQ(r.error, PTEMU_RUN_OK) << r.res.message;
			EXPECT_EQ(check_violation_count(r.m), 0u) << injection_name(inj);
			continue;
		}
		bool found = false;
		for (const Caught &c : cases)
			found |= c.inj == inj && c.seeds.count(GetParam());
		EXPECT_TRUE(found) << "no case for " << injection_name(inj);
	}
	for (const Caught &c : cases) {
		auto it = c.seeds.find(GetParam());
		if (it == c.seeds.end())
			continue;
		uint64_t seed = it->second;
		EXPECT_TRUE(ptemu_injection_applies(c.inj, arch)) << injection_name(c.inj);
		CollapseRun a(GetParam(), c.workload, seed, c.inj, c.with, c.depth);
		CollapseRun b(GetParam(), c.workload, seed, c.inj, c.with, c.depth);
		const ptemu_violation *va = a.first(), *vb = b.first();
		ASSERT_NE(va, nullptr) << "injection " << c.inj << " not caught at seed " << seed;
		ASSERT_NE(vb, nullptr);
		// Its kind among those reported (skip-pte-unmap's open RCU section is first
		// seen by a later might_sleep: sleep-in-atomic comes before rcu-imbalance).
		bool kind = false;
		for (ptemu_violation_kind k : c.kinds)
			kind |= check_kind_count(a.m, k) > 0;
		EXPECT_TRUE(kind) << "injection " << c.inj << ", first: " << ptemu_violation_name(va->kind)
				  << ": " << va->message;
		EXPECT_EQ(va->kind, vb->kind) << "injection " << c.inj;
		EXPECT_EQ(va->event, vb->event) << "injection " << c.inj;
		// A run that ended as a livelock (a stale walk cache under no-tlb-flush) stops at
		// a wall-clock check: only its first violation is deterministic.
		if (a.error == PTEMU_RUN_OK && b.error == PTEMU_RUN_OK) {
			EXPECT_EQ(a.res.digest, b.res.digest) << "injection " << c.inj;
		}
	}
}

INSTANTIATE_TEST_SUITE_P(Guests, CollapseGuest,
			 testing::Values("arm64", "s390", "arm-lpae", "sparc64", "ppc64-radix", "ppc64-hash"),
			 ModelName);

// Classic arm has no THP, so no collapse: skip-pte-unmap is the one injection with a path
// there ('ptemu list injections' says why the others have none), caught on the fault path.
TEST(ClassicArmGuest, SkipPteUnmapIsCaughtWithItsKindTheSameWayTwice)
{
	CollapseRun a("arm", "shared-alias", 1, INJECT_SKIP_PTE_UNMAP, 0);
	CollapseRun b("arm", "shared-alias", 1, INJECT_SKIP_PTE_UNMAP, 0);
	const ptemu_violation *va = a.first(), *vb = b.first();
	ASSERT_NE(va, nullptr);
	ASSERT_NE(vb, nullptr);
	EXPECT_GT(check_kind_count(a.m, VIOLATION_RCU_IMBALANCE) +
			  check_kind_count(a.m, VIOLATION_MAP_UNMAP_IMBALANCE),
		  0u);
	EXPECT_EQ(va->kind, vb->kind);
	EXPECT_EQ(va->event, vb->event);
}

// shared-alias on classic arm, deterministic: clean, and make_coherent's adjust_pte runs on
// aliases with and without a table, besides the emulated young/dirty fix-ups. Asked for,
// khugepaged starts no thread there, and the scheduler does not wait for one.
TEST(ClassicArmGuest, SharedAliasIsCleanWithAdjustPteAndFixups)
{
	CollapseRun r("arm", "shared-alias", 1, INJECT_NONE, kKhugepaged);
	ASSERT_EQ(r.error, PTEMU_RUN_OK) << r.res.message;
	EXPECT_EQ(check_violation_count(r.m), 0u);
	EXPECT_GT(r.stat(PTEMU_STAT_adjust_pte_calls), 0u);
	EXPECT_GT(r.stat(PTEMU_STAT_adjust_pte_no_table), 0u);
	EXPECT_GT(r.stat(PTEMU_STAT_access_fixups), 0u);
	EXPECT_EQ(r.stat(PTEMU_STAT_collapses), 0u);
}

// no-pmd-recheck lets a zap lock a table that another reclaim detached meanwhile; its own
// reclaim then clears a pmd that is already none, and pmd_pgtable of that names no table
// (the kernel would free the page of pfn 0). pte_free_tlb reports it before any model's
// bookkeeping and frees nothing: a violation, not a crash (s390 had listed page 0's halves
// for reuse and later freed pfn 0). Seeds from a campaign under the random walk.
TEST(NoPmdRecheckGuest, AZapFreeingThePageOfANonePmdIsReportedNotACrash)
{
	for (auto [arch, seed] : {std::pair<const char *, uint64_t>{"arm64", 2}, {"s390", 3}}) {
		std::string path = workload_image(arch, "dontneed-race");
		ptemu_run_config cfg = guest_run_config(ptemu_arch_find(arch), "dontneed-race", path, 2, 2, 3);
		cfg.seed = seed;
		cfg.inject = INJECT_NO_PMD_RECHECK;
		cfg.features.reclaim_empty_tables = true;
		make_deterministic(cfg, seed, PTEMU_SCHED_RANDOM);
		ptemu_machine *m = nullptr;
		ptemu_run_result res{};
		ASSERT_EQ(ptemu_run(&cfg, &m, &res), PTEMU_RUN_OK) << arch << ": " << res.message;
		size_t n = 0;
		const ptemu_violation *v = check_violations(m, &n);
		bool said = false;
		for (size_t i = 0; i < n; i++)
			said |= v[i].kind == VIOLATION_PT_USE_AFTER_FREE &&
				std::string(v[i].message).find("pte_free_tlb of table 0, which is free") != std::string::npos;
		EXPECT_TRUE(said) << arch;
		ptemu_machine_destroy(m);
	}
}
