// Multi-threaded stress of the core, per model: the correct protocol stays clean while the
// races really happen; each broken step is caught with its kind. Seeded and time-bounded;
// a failure prints the seed and the command that replays the run.
#include "fixture.h"

#include <ptemu/ptstress.h>

#include <cstdlib>
#include <set>

using namespace ptemu_test;

namespace {

uint64_t base_seed()
{
	const char *s = std::getenv("PTEMU_TEST_SEED");
	return s ? std::strtoull(s, nullptr, 0) : 20261122;
}

std::string replay_hint(const char *arch, uint64_t seed, const char *inject)
{
	return std::string("seed ") + std::to_string(seed) + "; replay: ptemu stress --arch " + arch +
	       " --seed " + std::to_string(seed) + " --inject " + inject;
}

struct Variant {
	ptemu_injection inject;
	const char *name;
	std::set<ptemu_violation_kind> expected;
};

const Variant kBroken[] = {
	{INJECT_FREE_IMMEDIATELY, "free-immediately",
	 {VIOLATION_PT_USE_AFTER_FREE, VIOLATION_PT_FREE_WHILE_MAPPED}},
	{INJECT_NO_RCU_READ_LOCK, "no-rcu-read-lock",
	 {VIOLATION_PT_READ_UNPROTECTED, VIOLATION_PT_USE_AFTER_FREE, VIOLATION_PT_FREE_WHILE_MAPPED}},
	{INJECT_NO_PMD_RECHECK, "no-pmd-recheck", {VIOLATION_PTE_IN_DETACHED_TABLE}},
	{INJECT_SKIP_PTE_UNMAP, "skip-pte-unmap",
	 {VIOLATION_RCU_IMBALANCE, VIOLATION_MAP_UNMAP_IMBALANCE}},
};

class Stress : public testing::TestWithParam<const char *> {};

} // namespace

TEST_P(Stress, CorrectProtocolIsCleanAndTheRacesHappen)
{
	MachineHolder h(GetParam());
	ptemu_pt_stress_config cfg{};
	cfg.workers = 3;
	cfg.tables = 4;
	cfg.seconds = 1.5;
	ptemu_pt_stress_result r{};
	// Free-running: on a loaded machine one round may miss a window; a few seeded rounds
	// (bounded) must hit all of them, and every round must be clean.
	for (int round = 0; round < 4; round++) {
		cfg.seed = base_seed() + round;
		SCOPED_TRACE(replay_hint(GetParam(), cfg.seed, "none"));
		ASSERT_EQ(ptemu_pt_stress(h.m, &cfg, &r), 0);
		ASSERT_EQ(h.violations(), 0u) << h.describe();
		if (h.stat(PTEMU_STAT_pte_map_failures) && h.stat(PTEMU_STAT_pmd_recheck_retries) &&
		    h.stat(PTEMU_STAT_detach_with_reader))
			break;
	}
	EXPECT_GT(r.locked_updates, 0u);
	EXPECT_GT(r.lockless_reads, 0u);
	EXPECT_GT(r.retracts, 0u);
	// The windows of the protocol were really hit, not just the straight paths.
	EXPECT_GT(h.stat(PTEMU_STAT_pte_map_failures), 0u);
	EXPECT_GT(h.stat(PTEMU_STAT_pmd_recheck_retries), 0u);
	EXPECT_GT(h.stat(PTEMU_STAT_detach_with_reader), 0u);
	// Every table retracted, and every one exit_mmap handed to the mmu_gather, waited for RCU.
	EXPECT_EQ(h.stat(PTEMU_STAT_tables_freed_deferred) + h.stat(PTEMU_STAT_tables_gathered),
		  h.stat(PTEMU_STAT_tables_rcu_freed));
	EXPECT_EQ(phys_stats(h.m->phys).pages_allocated, h.m->arch_mem_pages);
}

TEST_P(Stress, EachBrokenStepIsCaughtWithItsKind)
{
	const uint64_t seed = base_seed();
	for (const Variant &v : kBroken) {
		SCOPED_TRACE(replay_hint(GetParam(), seed, v.name));
		MachineHolder h(GetParam(), v.inject, PTEMU_CHECK_FAIL_FAST);
		ptemu_pt_stress_config cfg{};
		cfg.workers = 3;
		cfg.tables = 2;
		cfg.seed = seed;
		cfg.seconds = 5.0;  // fail-fast ends it at the first violation
		ptemu_pt_stress_result r{};
		ASSERT_EQ(ptemu_pt_stress(h.m, &cfg, &r), 0);
		ASSERT_GT(h.violations(), 0u) << v.name << " was not caught";
		size_t n;
		const ptemu_violation *rec = check_violations(h.m, &n);
		ASSERT_GT(n, 0u);
		EXPECT_TRUE(v.expected.count(rec[0].kind))
			<< v.name << " first caught as " << ptemu_violation_name(rec[0].kind) << ": "
			<< rec[0].message;
	}
}

INSTANTIATE_TEST_SUITE_P(Models, Stress, testing::ValuesIn(kModels), ModelName);
