// collapse_file's rollbacks and retract_page_tables' skips (kernel-spec 3.2, 3.3).
#include "fixture.h"

#include <utility>
#include <vector>

#include <ptemu/file.h>
#include <ptemu/khugepaged.h>
#include <ptemu/uaccess.h>

#include "../workloads/include/ptemu_abi.h"

using namespace ptemu_test;

namespace {

class Collapse : public testing::TestWithParam<const char *> {};

struct Shmem : MachineHolder {
	explicit Shmem(const char *arch) : MachineHolder(arch)
	{
		mm = mm_alloc(m);
		pmd = ptemu_pmd_size(m->arch);
		page = ptemu_page_size(m->arch);
		nr = pmd / page;
		f = ptemu_file_create(m, 11, true, 2 * pmd, 2 * pmd);
		addr = do_mmap(mm, 0, 2 * pmd, PTEMU_PROT_READ | PTEMU_PROT_WRITE, PTEMU_MAP_SHARED, f, 0);
		for (uint64_t i = 0; i < nr; i += 2)
			write64(addr + i * page, 0xabc000 + i);
	}
	~Shmem()
	{
		mm_destroy(mm);
		ptemu_file_put(f);
	}
	void write64(uint64_t a, uint64_t v) { EXPECT_EQ(copy_to_user(mm, a, &v, 8), 0); }
	uint64_t read64(uint64_t a)
	{
		uint64_t v = 0;
		EXPECT_EQ(copy_from_user(mm, &v, a, 8), 0);
		return v;
	}
	void expect_data_unchanged()
	{
		for (uint64_t i = 0; i < nr; i++)
			ASSERT_EQ(read64(addr + i * page), i % 2 ? 0 : 0xabc000 + i) << i;
	}
	void expect_cache_small()
	{
		for (uint64_t i = 0; i < nr; i++) {
			if (f->i_pages[i]) {
				ASSERT_EQ(folio_order(f->i_pages[i]), 0u) << i;
			}
		}
	}
	mm_struct *mm;
	ptemu_file *f;
	uint64_t pmd, page, nr;
	int64_t addr;
};

} // namespace

TEST_P(Collapse, BusyPageLockRollsBackWithCacheAndDataUnchanged)
{
	Shmem s(GetParam());
	page *busy = filemap_get_folio(s.f, 4);
	ASSERT_NE(busy, nullptr);
	folio_lock(busy);
	EXPECT_EQ(collapse_file(s.f, 0), SCAN_PAGE_LOCK);
	folio_unlock(busy);
	folio_put(busy);
	s.expect_cache_small();
	s.expect_data_unchanged();
	EXPECT_EQ(s.stat(PTEMU_STAT_collapses), 0u);
	EXPECT_EQ(s.violations(), 0u) << s.describe();
}

TEST_P(Collapse, ExtraReferenceRollsBackAfterUnmapAndPtesRefault)
{
	Shmem s(GetParam());
	page *pinned = filemap_get_folio(s.f, 6);  // like a GUP pin
	ASSERT_NE(pinned, nullptr);
	EXPECT_EQ(collapse_file(s.f, 0), SCAN_PAGE_COUNT);
	folio_put(pinned);
	s.expect_cache_small();
	EXPECT_EQ(get_mm_counter(s.mm, MM_SHMEMPAGES), 0);  // try_to_unmap removed every PTE
	s.expect_data_unchanged();                            // and faults bring them back
	mm_audit_counters(s.mm);
	EXPECT_EQ(s.violations(), 0u) << s.describe();
}

TEST_P(Collapse, TruncatedOrEmptyRangeIsRefused)
{
	Shmem s(GetParam());
	EXPECT_EQ(collapse_file(s.f, 2 * s.nr), SCAN_TRUNCATED);  // beyond EOF
	EXPECT_EQ(collapse_file(s.f, s.nr), SCAN_TRUNCATED);      // all holes
	EXPECT_EQ(collapse_file(s.f, 1), SCAN_TRUNCATED);         // not aligned
	EXPECT_EQ(s.violations(), 0u) << s.describe();
}

TEST_P(Collapse, RetractSkipsCowedPrivateAndUnalignedMappings)
{
	Shmem s(GetParam());
	unsigned rw = PTEMU_PROT_READ | PTEMU_PROT_WRITE;
	// A private mapping written to (anon_vma set), and one at an offset that is not
	// PMD-aligned in the file: both keep their PTE tables.
	int64_t priv = do_mmap(s.mm, 0, s.pmd, rw, PTEMU_MAP_PRIVATE, s.f, 0);
	int64_t skew = do_mmap(s.mm, 0, s.pmd, PTEMU_PROT_READ, PTEMU_MAP_SHARED, s.f, s.page);
	ASSERT_GT(priv, 0);
	ASSERT_GT(skew, 0);
	s.write64(priv + 3 * s.page, 77);  // COW: an anonymous page
	EXPECT_EQ(s.read64(priv + 2 * s.page), 0xabc002u);
	uint64_t v;
	ASSERT_EQ(copy_from_user(s.mm, &v, skew, 8), 0);
	EXPECT_EQ(collapse_file(s.f, 0), SCAN_SUCCEED) << s.describe();
	EXPECT_EQ(s.stat(PTEMU_STAT_retracts), 1u);       // the shared, aligned one
	EXPECT_EQ(s.stat(PTEMU_STAT_retract_skips), 2u);  // private+COW, and the skewed one
	EXPECT_FALSE(pmd_none(pmdp_get_lockless(mm_find_pmd(s.mm, priv))));
	EXPECT_EQ(s.read64(priv + 3 * s.page), 77u);    // the COWed page is untouched
	EXPECT_EQ(s.read64(priv + 2 * s.page), 0xabc002u);
	mm_audit_counters(s.mm);
	EXPECT_EQ(s.violations(), 0u) << s.describe();
}

TEST_P(Collapse, RetractSkipsAnExitingMm)
{
	Shmem s(GetParam());
	mm_struct *dying = mm_alloc(s.m);
	int64_t d = do_mmap(dying, 0, s.pmd, PTEMU_PROT_READ, PTEMU_MAP_SHARED, s.f, 0);
	ASSERT_GT(d, 0);
	uint64_t v;
	ASSERT_EQ(copy_from_user(dying, &v, d, 8), 0);  // it has a PTE table there
	__atomic_store_n(&dying->mm_users, 0, __ATOMIC_RELEASE);  // hpage_collapse_test_exit
	EXPECT_EQ(collapse_file(s.f, 0), SCAN_SUCCEED) << s.describe();
	EXPECT_EQ(s.stat(PTEMU_STAT_retracts), 1u);
	EXPECT_EQ(s.stat(PTEMU_STAT_retract_skips), 1u);
	EXPECT_FALSE(pmd_none(pmdp_get_lockless(mm_find_pmd(dying, d))));  // left for its exit
	mm_destroy(dying);
	EXPECT_EQ(s.violations(), 0u) << s.describe();
}

// truncate_inode_partial_folio: a punch inside a collapsed folio splits it (when only the
// cache holds it), so the range refaults by PTEs and can be collapsed, and retracted, again.
TEST_P(Collapse, PunchInsideACollapsedFolioSplitsItAndTheRangeCollapsesAgain)
{
	Shmem s(GetParam());
	ASSERT_EQ(collapse_file(s.f, 0), SCAN_SUCCEED) << s.describe();
	EXPECT_EQ(s.stat(PTEMU_STAT_retracts), 1u);
	EXPECT_EQ(s.read64(s.addr + 8 * s.page), 0xabc008u);
	ASSERT_TRUE(pmd_trans_huge(pmdp_get_lockless(mm_find_pmd(s.mm, s.addr))));

	ASSERT_EQ(shmem_punch_hole(s.f, 4 * s.page, s.page), 0);
	EXPECT_EQ(s.f->i_pages[4], nullptr);
	for (uint64_t i = 0; i < s.nr; i++) {
		if (i != 4) {
			ASSERT_NE(s.f->i_pages[i], nullptr) << i;
			ASSERT_EQ(folio_order(s.f->i_pages[i]), 0u) << i;
			ASSERT_EQ(s.f->i_pages[i]->index, i);
		}
	}
	EXPECT_TRUE(pmd_none(pmdp_get_lockless(mm_find_pmd(s.mm, s.addr))));
	for (uint64_t i = 0; i < s.nr; i++)
		ASSERT_EQ(s.read64(s.addr + i * s.page), i % 2 || i == 4 ? 0 : 0xabc000 + i) << i;
	EXPECT_EQ(pmd_kind(pmdp_get_lockless(mm_find_pmd(s.mm, s.addr)), NULL), PTEMU_ENTRY_TABLE);
	mm_audit_counters(s.mm);

	ASSERT_EQ(collapse_file(s.f, 0), SCAN_SUCCEED) << s.describe();
	EXPECT_EQ(s.stat(PTEMU_STAT_retracts), 2u);
	EXPECT_EQ(s.read64(s.addr + 6 * s.page), 0xabc006u);
	EXPECT_EQ(s.read64(s.addr + 4 * s.page), 0u);
	EXPECT_EQ(s.violations(), 0u) << s.describe();
}

// can_split_folio: another reference (a faulter waiting for the lock, a pin) keeps the
// folio whole; the punched part is zeroed in place.
TEST_P(Collapse, PunchInsideAPinnedCollapsedFolioZeroesItInPlace)
{
	Shmem s(GetParam());
	ASSERT_EQ(collapse_file(s.f, 0), SCAN_SUCCEED) << s.describe();
	page *pinned = filemap_get_folio(s.f, 0);
	ASSERT_NE(pinned, nullptr);
	ASSERT_EQ(shmem_punch_hole(s.f, 4 * s.page, s.page), 0);
	EXPECT_EQ(s.f->i_pages[4], pinned);
	EXPECT_EQ(folio_order(pinned), s.arch()->pmd_leaf_shift - s.arch()->page_shift);
	folio_put(pinned);
	for (uint64_t i = 0; i < s.nr; i++)
		ASSERT_EQ(s.read64(s.addr + i * s.page), i % 2 || i == 4 ? 0 : 0xabc000 + i) << i;
	EXPECT_EQ(s.violations(), 0u) << s.describe();
}

namespace {
struct FlushLog {
	std::vector<std::pair<uint64_t, uint64_t>> ranges;
	static void record(void *ctx, mm_struct *, uint64_t start, uint64_t end, bool)
	{
		static_cast<FlushLog *>(ctx)->ranges.emplace_back(start, end);
	}
};
} // namespace

// zap_huge_pmd clears the whole pmd even for a one-page zap, so the whole PMD range must
// be flushed (tlb_flush_pmd_range): other pages' translations would outlive a later split.
TEST_P(Collapse, PartialZapOfAHugePmdFlushesTheWholePmdRange)
{
	Shmem s(GetParam());
	ASSERT_EQ(collapse_file(s.f, 0), SCAN_SUCCEED) << s.describe();
	EXPECT_EQ(s.read64(s.addr), 0xabc000u);
	ASSERT_TRUE(pmd_trans_huge(pmdp_get_lockless(mm_find_pmd(s.mm, s.addr))));
	FlushLog log;
	s.m->tlb.flush_range = FlushLog::record;
	s.m->tlb.ctx = &log;
	ASSERT_EQ(do_madvise(s.mm, s.addr + 3 * s.page, s.page, PTEMU_MADV_DONTNEED), 0);
	s.m->tlb.flush_range = nullptr;
	ASSERT_EQ(log.ranges.size(), 1u);
	EXPECT_LE(log.ranges[0].first, (uint64_t)s.addr);
	EXPECT_GE(log.ranges[0].second, s.addr + s.pmd);
	EXPECT_EQ(s.violations(), 0u) << s.describe();
}

INSTANTIATE_TEST_SUITE_P(Models, Collapse, testing::ValuesIn(kModels), ModelName);
