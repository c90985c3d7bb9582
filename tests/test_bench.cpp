// The measurements of `ptemu bench overhead`: the guest's phase marks and the tlb-miss
// sweep, on ptemu and on bare Unicorn.
#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include <ptemu/arch.h>
#include <ptemu/bench.h>
#include <ptemu/machine.h>
#include <ptemu/run.h>
#include <ptemu/tlb.h>

#include "fixture.h"
#include "../workloads/include/ptemu_abi.h"

using namespace ptemu_test;

namespace {

TEST(BenchMarks, EachIntervalGoesToThePhaseThatEndsIt)
{
	ptemu_bench_marks b{};
	// The first mark only starts the clock.
	EXPECT_EQ(ptemu_bench_mark(&b, PTEMU_BENCH_setup, 0, 1000), 0);
	EXPECT_EQ(ptemu_bench_mark(&b, PTEMU_BENCH_hits, 100, 1500), 0);
	EXPECT_EQ(ptemu_bench_mark(&b, PTEMU_BENCH_setup, 0, 1600), 0);
	EXPECT_EQ(ptemu_bench_mark(&b, PTEMU_BENCH_misses, 100, 3600), 0);
	EXPECT_EQ(b.ns[PTEMU_BENCH_hits], 500u);
	EXPECT_EQ(b.ns[PTEMU_BENCH_misses], 2000u);
	EXPECT_EQ(b.ns[PTEMU_BENCH_setup], 100u);
	EXPECT_DOUBLE_EQ(ptemu_bench_miss_ns(&b), 15.0);	// 20 ns per missing load, 5 per hit
	// An unknown phase is refused and changes nothing.
	EXPECT_EQ(ptemu_bench_mark(&b, PTEMU_BENCH_PHASES, 5, 9000), -1);
	EXPECT_EQ(b.last_ns, 3600u);
	ptemu_bench_marks none{};
	EXPECT_EQ(ptemu_bench_miss_ns(&none), 0.0);
}

struct SweepRun {
	explicit SweepRun(const char *arch, bool deterministic = false)
	{
		path = workload_image(arch, "tlb-miss");
		/* 16 pairs of sweeps, however slow the build (the sanitizers' are). */
		cfg = guest_run_config(ptemu_arch_find(arch), "tlb-miss", path, 1, 1, 120);
		cfg.ops = 16;
		cfg.tlb_entries = 64;
		cfg.phys_bytes = 128ull << 20;	/* ppc64-hash's least: 8 of its 16 MiB PMDs */
		cfg.no_collapse = true;
		if (deterministic)
			make_deterministic(cfg, 1, PTEMU_SCHED_PCT, 3, 100000);
		error = ptemu_run(&cfg, &m, &res);
	}
	~SweepRun() { ptemu_machine_destroy(m); }
	std::string path;
	ptemu_run_config cfg{};
	ptemu_machine *m = nullptr;
	ptemu_run_result res{};
	ptemu_run_error error;
};

// Each load of the miss phase is a logical miss (the sweep is twice the logical TLB, and
// at least 512 pages), each of the hit phase is not: the logical misses are at least the
// missing loads, and far fewer than all loads.
class TlbMissSweep : public testing::TestWithParam<const char *> {};

TEST_P(TlbMissSweep, EveryLoadOfTheMissPhaseIsALogicalMiss)
{
	SweepRun r(GetParam());
	ASSERT_EQ(r.error, PTEMU_RUN_OK) << r.res.message;
	EXPECT_EQ(r.res.exit_codes[0], 0) << "the sweep's sums";
	uint64_t hits = r.res.marks.accesses[PTEMU_BENCH_hits], misses = r.res.marks.accesses[PTEMU_BENCH_misses];
	ASSERT_GT(misses, 0u);
	EXPECT_EQ(hits, misses);	// the same loads in both phases
	EXPECT_GE(r.res.tlb_fills, misses);
	EXPECT_LT(r.res.tlb_fills, misses + hits / 8);
	EXPECT_GT(ptemu_bench_miss_ns(&r.res.marks), 0.0);
	EXPECT_EQ(ptemu_stat_get(&r.m->stats, PTEMU_STAT_hw_walks), r.res.tlb_fills);
	// Unicorn has no per-page flush: once every entry of the 64-entry logical TLB may be
	// in Unicorn's, the next eviction empties Unicorn's TLB, so the sweep costs at least
	// one flush per 64 misses, and the hit phase then refills from the logical TLB.
	EXPECT_GE(ptemu_stat_get(&r.m->stats, PTEMU_STAT_hw_flushes), misses / 64 - 1);
	EXPECT_GT(ptemu_stat_get(&r.m->stats, PTEMU_STAT_hw_refills), 0u);
}

INSTANTIATE_TEST_SUITE_P(Models, TlbMissSweep, testing::Values("arm64", "s390", "arm", "sparc64", "ppc64-hash"));

// Host time never reaches a deterministic run: its marks stay empty.
TEST(TlbMissSweepDeterministic, MarksNothing)
{
	SweepRun r("arm64", true);
	ASSERT_EQ(r.error, PTEMU_RUN_OK) << r.res.message;
	EXPECT_GT(r.res.tlb_fills, 2000u) << "the sweep ran";
	EXPECT_EQ(r.res.marks.accesses[PTEMU_BENCH_misses], 0u);
	EXPECT_EQ(r.res.marks.last_ns, 0u);
}

// The s390 sweep on bare Unicorn for 0.3 s, told its TLB has 64 entries (the sweep is then
// 512 pages). Its missing loads, or 0 with a test failure.
uint64_t bare_sweep(bool grow_tlb, ptemu_bench_bare_result *bare)
{
	std::string path = workload_image("s390", "tlb-miss");
	if (ptemu_bench_bare(ptemu_arch_find("s390"), path.c_str(), 0.3, 1, 64, grow_tlb, bare)) {
		ADD_FAILURE() << bare->error;
		return 0;
	}
	EXPECT_EQ(bare->marks.accesses[PTEMU_BENCH_hits], bare->marks.accesses[PTEMU_BENCH_misses]);
	return bare->marks.accesses[PTEMU_BENCH_misses];
}

// Bare Unicorn takes a fill for each missing load too (its TLB keeps 256 entries).
TEST(TlbMissSweepBare, EveryLoadOfTheMissPhaseIsAFill)
{
	ptemu_bench_bare_result bare;
	uint64_t misses = bare_sweep(false, &bare);
	ASSERT_GT(misses, 0u);
	EXPECT_GE(bare.fills, misses);
	EXPECT_GT(ptemu_bench_miss_ns(&bare.marks), 0.0);
}

// The growth flushes: after the first 1024 fills, then after twice as many each time, up
// to 2^20 between two.
TEST(HwTlbGrowth, FlushesAtDoublingIntervalsUpToTheLast)
{
	ptemu_hw_tlb_growth g{};
	std::vector<uint64_t> at;
	for (uint64_t call = 1; call <= 8u << 20; call++)
		if (ptemu_hw_tlb_grow_due(&g))
			at.push_back(call);
	ASSERT_GE(at.size(), 12u);
	EXPECT_EQ(at[0], PTEMU_HW_TLB_GROW_FIRST);
	for (size_t i = 1; i < at.size(); i++)
		EXPECT_EQ(at[i] - at[i - 1], std::min<uint64_t>(uint64_t{PTEMU_HW_TLB_GROW_FIRST} << i,
								 PTEMU_HW_TLB_GROW_LAST))
			<< i;
}

// What the growth flushes are for: Unicorn grows its TLB at a flush that finds it full,
// and a sweep of 512 pages then stops missing it. Without them the engine keeps 256
// entries and every load of the sweep takes a fill (above).
TEST(TlbMissSweepBare, GrowingTheEngineTlbEndsTheSweepsFills)
{
	ptemu_bench_bare_result bare;
	uint64_t misses = bare_sweep(true, &bare);
	ASSERT_GT(misses, 0u);
	EXPECT_LT(bare.fills, misses / 10);
}

} // namespace
