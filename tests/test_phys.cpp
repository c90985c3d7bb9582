// Simulated physical memory and its buddy allocator.
#include "fixture.h"

#include <set>

using namespace ptemu_test;

namespace {

ptemu_machine *try_create(const char *arch, uint64_t bytes, std::string *err)
{
	ptemu_machine_config cfg{};
	cfg.arch = ptemu_arch_find(arch);
	cfg.phys_bytes = bytes;
	char buf[256] = "";
	ptemu_machine *m = ptemu_machine_create(&cfg, buf, sizeof(buf));
	*err = buf;
	return m;
}

} // namespace

TEST(Phys, RejectsSizeNotMultipleOfPmd)
{
	std::string err;
	EXPECT_EQ(try_create("arm64", (64ull << 20) + 4096, &err), nullptr);
	EXPECT_NE(err.find("multiple"), std::string::npos) << err;
}

TEST(Phys, RejectsTooSmall)
{
	std::string err;
	EXPECT_EQ(try_create("arm64", 4ull << 20, &err), nullptr);
	EXPECT_NE(err.find("at least"), std::string::npos) << err;
	// s390's PMD is 1 MiB, so 8 MiB is its minimum and is accepted.
	ptemu_machine *m = try_create("s390", 8ull << 20, &err);
	EXPECT_NE(m, nullptr) << err;
	ptemu_machine_destroy(m);
}

TEST(Phys, MaxOrderIsThePmdOrder)
{
	MachineHolder a("arm64"), s("s390");
	EXPECT_EQ(phys_max_order(a.m->phys), 9u);  // 2 MiB of 4 KiB pages
	EXPECT_EQ(phys_max_order(s.m->phys), 8u);  // 1 MiB segment of 4 KiB pages
}

TEST(Phys, FrameZeroIsNeverHandedOut)
{
	MachineHolder h("arm64", INJECT_NONE, PTEMU_CHECK_CONTINUE, 16ull << 20);
	std::set<uint64_t> seen;
	uint64_t pfn;
	while ((pfn = phys_alloc_pages(h.m->phys, 0)) != 0)
		ASSERT_TRUE(seen.insert(pfn).second) << "pfn handed out twice";
	EXPECT_EQ(seen.size(), (16ull << 20) / 4096 - 1);
	EXPECT_EQ(seen.count(0), 0u);
	EXPECT_TRUE(PageFlag(pfn_to_page(h.m->phys, 0), PG_reserved));
	for (uint64_t p : seen)
		phys_free_pages(h.m->phys, p, 0);
	EXPECT_EQ(phys_stats(h.m->phys).pages_allocated, h.m->arch_mem_pages);
}

TEST(Phys, EveryOrderIsAlignedAndZeroed)
{
	MachineHolder h("arm64");
	for (unsigned order = 0; order <= phys_max_order(h.m->phys); order++) {
		uint64_t pfn = phys_alloc_pages(h.m->phys, order);
		ASSERT_NE(pfn, 0u) << "order " << order;
		EXPECT_EQ(pfn & ((1ull << order) - 1), 0u) << "order " << order << " misaligned";
		auto *p = static_cast<unsigned char *>(phys_to_virt(h.m->phys, pfn << 12));
		for (uint64_t i = 0; i < (4096ull << order); i += 511)
			ASSERT_EQ(p[i], 0) << "order " << order << " not zeroed";
		memset(p, 0xab, 4096ull << order);
		EXPECT_EQ(pfn_to_page(h.m->phys, pfn)->refcount, 1);
		phys_free_pages(h.m->phys, pfn, order);
	}
	EXPECT_EQ(phys_max_order(h.m->phys) + 1 > 9 ? 0 : phys_alloc_pages(h.m->phys, 10), 0u);
}

TEST(Phys, SplitThenMergeRestoresLargeBlocks)
{
	MachineHolder h("arm64", INJECT_NONE, PTEMU_CHECK_CONTINUE, 16ull << 20);
	auto count_max_blocks = [&] {
		std::vector<uint64_t> got;
		uint64_t pfn;
		while ((pfn = phys_alloc_pages(h.m->phys, 9)) != 0)
			got.push_back(pfn);
		for (uint64_t p : got)
			phys_free_pages(h.m->phys, p, 9);
		return got.size();
	};
	size_t before = count_max_blocks();
	EXPECT_EQ(before, 7u);  // 8 x 2 MiB, less the block holding reserved frame 0
	std::vector<uint64_t> small;
	for (int i = 0; i < 1000; i++)
		small.push_back(phys_alloc_pages(h.m->phys, 0));
	EXPECT_LT(count_max_blocks(), before);  // split
	for (uint64_t p : small)
		phys_free_pages(h.m->phys, p, 0);
	EXPECT_EQ(count_max_blocks(), before);  // merged back
}

TEST(Phys, ExhaustionIsAnErrorNotAnAbort)
{
	MachineHolder h("s390", INJECT_NONE, PTEMU_CHECK_CONTINUE, 8ull << 20);
	std::vector<uint64_t> got;
	uint64_t pfn;
	while ((pfn = phys_alloc_pages(h.m->phys, 8)) != 0)
		got.push_back(pfn);
	EXPECT_EQ(phys_alloc_pages(h.m->phys, 8), 0u);
	EXPECT_GE(phys_stats(h.m->phys).alloc_failures, 2u);
	EXPECT_EQ(phys_alloc_pages(h.m->phys, 20), 0u);  // beyond the largest order
	for (uint64_t p : got)
		phys_free_pages(h.m->phys, p, 8);
}

TEST(Phys, AccountingFollowsAllocAndFree)
{
	MachineHolder h("arm64");
	ptemu_phys_stats s0 = phys_stats(h.m->phys);
	uint64_t a = phys_alloc_pages(h.m->phys, 0), b = phys_alloc_pages(h.m->phys, 3);
	ptemu_phys_stats s1 = phys_stats(h.m->phys);
	EXPECT_EQ(s1.pages_allocated - s0.pages_allocated, 9u);
	EXPECT_EQ(s1.allocs[0] - s0.allocs[0], 1u);
	EXPECT_EQ(s1.allocs[3] - s0.allocs[3], 1u);
	EXPECT_EQ(s1.pages_free + s1.pages_allocated + 1, s1.pages_total);
	phys_free_pages(h.m->phys, a, 0);
	phys_free_pages(h.m->phys, b, 3);
	ptemu_phys_stats s2 = phys_stats(h.m->phys);
	EXPECT_EQ(s2.pages_allocated, s0.pages_allocated);
	EXPECT_EQ(s2.frees[3] - s0.frees[3], 1u);
}

class PhysPerModel : public testing::TestWithParam<const char *> {};

TEST_P(PhysPerModel, FreedTableIsPoisonedWithTheInvalidPattern)
{
	MmHolder h(GetParam());
	const ptemu_arch *a = h.arch();
	uint64_t table = h.install_table();
	ptemu_spinlock *ptl;
	pte_t *pte = pte_offset_map_lock(h.mm, h.pmd, h.addr, &ptl);
	ASSERT_NE(pte, nullptr);
	// Left non-empty on purpose: the poison, not a clear, must make it read invalid.
	set_pte_at(h.mm, h.addr, pte, h.leaf_pte(1234));
	pte_unmap_unlock(pte, ptl);
	h.detach_table();
	pte_free(h.mm, table);
	h.arch_exit_mmap();
	rcu_barrier();
	// The table was alone in its page, so the page went back, poisoned.
	EXPECT_FALSE(PageFlag(pfn_to_page(h.m->phys, table >> a->page_shift), PG_table));
	uint64_t none = a->none_entry(ptemu_pte_level(a));
	for (uint64_t off = 0; off < a->pte_table_bytes; off += 8)
		ASSERT_EQ(ptemu_entry_load(h.m, table + off), none) << "offset " << off;
	EXPECT_EQ(check_table_state(h.m, table), TABLE_FREE);
	EXPECT_EQ(h.violations(), 0u) << h.describe();
}

TEST_P(PhysPerModel, LeakIsReportedAfterTeardown)
{
	MachineHolder h(GetParam());
	uint64_t pfn = phys_alloc_pages(h.m->phys, 0);
	rcu_barrier();
	check_leaks(h.m, 0);
	EXPECT_EQ(h.count(VIOLATION_LEAK), 1u);
	phys_free_pages(h.m->phys, pfn, 0);
	check_leaks(h.m, 0);
	EXPECT_EQ(h.count(VIOLATION_LEAK), 1u);
}

INSTANTIATE_TEST_SUITE_P(Models, PhysPerModel, testing::ValuesIn(kModels), ModelName);
