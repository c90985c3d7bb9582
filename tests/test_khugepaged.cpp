// collapse_file's rollbacks and retract_page_tables' skips (kernel-spec 3.2, 3.3).
#include "fixture.h"

#include <errno.h>

#include <algorithm>
#include <future>
#include <thread>

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
	// Another mm mapping the file's first PMD, its page 0 read in through a PTE table.
	int64_t map_in(mm_struct *other)
	{
		int64_t b = do_mmap(other, 0, pmd, PTEMU_PROT_READ, PTEMU_MAP_SHARED, f, 0);
		uint64_t v;

		EXPECT_GT(b, 0);
		EXPECT_EQ(copy_from_user(other, &v, b, 8), 0);
		return b;
	}
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
	EXPECT_EQ(collapse_file(nullptr, 0, s.f, 0, nullptr), SCAN_PAGE_LOCK);
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
	EXPECT_EQ(collapse_file(nullptr, 0, s.f, 0, nullptr), SCAN_PAGE_COUNT);
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
	EXPECT_EQ(collapse_file(nullptr, 0, s.f, 2 * s.nr, nullptr), SCAN_TRUNCATED);  // beyond EOF
	EXPECT_EQ(collapse_file(nullptr, 0, s.f, s.nr, nullptr), SCAN_TRUNCATED);      // all holes
	EXPECT_EQ(collapse_file(nullptr, 0, s.f, 1, nullptr), SCAN_TRUNCATED);         // not aligned
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
	EXPECT_EQ(collapse_file(nullptr, 0, s.f, 0, nullptr), SCAN_SUCCEED) << s.describe();
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
	int64_t d = s.map_in(dying);
	ASSERT_GT(d, 0);
	__atomic_store_n(&dying->mm_users, 0, __ATOMIC_RELEASE);  // hpage_collapse_test_exit
	EXPECT_EQ(collapse_file(nullptr, 0, s.f, 0, nullptr), SCAN_SUCCEED) << s.describe();
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
	ASSERT_EQ(collapse_file(nullptr, 0, s.f, 0, nullptr), SCAN_SUCCEED) << s.describe();
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

	ASSERT_EQ(collapse_file(nullptr, 0, s.f, 0, nullptr), SCAN_SUCCEED) << s.describe();
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
	ASSERT_EQ(collapse_file(nullptr, 0, s.f, 0, nullptr), SCAN_SUCCEED) << s.describe();
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
	struct Flush {
		mm_struct *mm;
		uint64_t start, end;
	};
	std::vector<Flush> flushes;
	static void record(void *ctx, mm_struct *mm, uint64_t start, uint64_t end, bool)
	{
		static_cast<FlushLog *>(ctx)->flushes.push_back({mm, start, end});
	}
};
} // namespace

// zap_huge_pmd clears the whole pmd even for a one-page zap, so the whole PMD range must
// be flushed (tlb_flush_pmd_range): other pages' translations would outlive a later split.
TEST_P(Collapse, PartialZapOfAHugePmdFlushesTheWholePmdRange)
{
	Shmem s(GetParam());
	ASSERT_EQ(collapse_file(nullptr, 0, s.f, 0, nullptr), SCAN_SUCCEED) << s.describe();
	EXPECT_EQ(s.read64(s.addr), 0xabc000u);
	ASSERT_TRUE(pmd_trans_huge(pmdp_get_lockless(mm_find_pmd(s.mm, s.addr))));
	FlushLog log;
	s.m->tlb.flush_range = FlushLog::record;
	s.m->tlb.ctx = &log;
	ASSERT_EQ(do_madvise(s.mm, s.addr + 3 * s.page, s.page, PTEMU_MADV_DONTNEED), 0);
	s.m->tlb.flush_range = nullptr;
	if (flushes_only_hashed(s.m->arch)) {
		EXPECT_TRUE(log.flushes.empty()) << "nothing was hashed";
		return;
	}
	// One flush (sparc64: one demap per 4 MiB hardware half), covering the range whole.
	ASSERT_GE(log.flushes.size(), 1u);
	if (!s.m->arch->flush_tlb_range_is_noop) {
		EXPECT_EQ(log.flushes.size(), 1u);
	}
	std::sort(log.flushes.begin(), log.flushes.end(),
		  [](const FlushLog::Flush &x, const FlushLog::Flush &y) { return x.start < y.start; });
	uint64_t covered = log.flushes[0].start;
	for (const auto &f : log.flushes) {
		EXPECT_LE(f.start, covered);
		covered = std::max(covered, f.end);
	}
	EXPECT_LE(log.flushes[0].start, (uint64_t)s.addr);
	EXPECT_GE(covered, s.addr + s.pmd);
	EXPECT_EQ(s.violations(), 0u) << s.describe();
}

// try_to_unmap_flush flushes what try_to_unmap cleared (the kernel's tlbflush_unmap_batch):
// a process whose exit takes its VMA out of i_mmap between the two still has its cleared
// translations flushed before the old page is freed.
TEST_P(Collapse, UnmapFlushReachesAnMmThatLeftIMmapAfterItsPtesWereCleared)
{
	Shmem s(GetParam());
	mm_struct *dying = mm_alloc(s.m);
	int64_t d = s.map_in(dying);
	ASSERT_GT(d, 0);
	struct Ctx {
		FlushLog log;
		vm_area_struct *vma;
		bool unlinked = false;
	} ctx;
	ctx.vma = vma_lookup(dying, d);
	s.m->tlb.flush_range = FlushLog::record;
	s.m->tlb.ctx = &ctx.log;
	s.m->test_hooks.ctx = &ctx;
	s.m->test_hooks.collapse_before_flush = [](void *c, ptemu_file *) {
		Ctx *x = static_cast<Ctx *>(c);

		unlink_file_vma(x->vma);  // exit_mmap's first step
		x->unlinked = true;
	};
	EXPECT_EQ(collapse_file(nullptr, 0, s.f, 0, nullptr), SCAN_SUCCEED) << s.describe();
	s.m->test_hooks.collapse_before_flush = nullptr;
	s.m->tlb.flush_range = nullptr;
	ASSERT_TRUE(ctx.unlinked);
	bool flushed = false;
	for (const FlushLog::Flush &fl : ctx.log.flushes)
		flushed |= fl.mm == dying && fl.start <= (uint64_t)d && fl.end > (uint64_t)d;
	if (flushes_only_hashed(s.m->arch))
		EXPECT_FALSE(flushed) << "nothing was hashed";
	else
		EXPECT_TRUE(flushed) << "the dying mm's cleared PTE at " << d << " was never flushed";
	mm_destroy(dying);
	EXPECT_EQ(s.violations(), 0u) << s.describe();
}

// v6.6's rmap walk (page_vma_mapped_walk's map_pte) locks the ptl of the table it mapped
// without re-checking the pmd: it relies on a detached table being empty. A table detached
// with a present PTE in it between that map and that lock is therefore written through,
// and the checker must see the write.
TEST_P(Collapse, RmapWalkWritesThroughATableDetachedWithAPresentPte)
{
	Shmem s(GetParam());
	mm_struct *other = mm_alloc(s.m);
	int64_t b = s.map_in(other);
	struct Ctx {
		mm_struct *mm;
		uint64_t table = 0;
	} ctx{other};
	s.m->test_hooks.ctx = &ctx;
	s.m->test_hooks.map_before_lock = [](void *c, mm_struct *mm, void *p) {
		Ctx *x = static_cast<Ctx *>(c);
		pmd_t *pmdp = static_cast<pmd_t *>(p);
		if (mm != x->mm || x->table)
			return;
		// Not a path of the kernel: a detach that leaves a PTE behind, as a broken
		// retract or reclaim would.
		ptemu_spinlock *pml = pmd_lock(mm, pmdp);
		pmd_t v = pmdp_get_lockless(pmdp);
		ptemu_spinlock *ptl = pte_lockptr(mm, &v);
		if (ptl != pml)
			spin_lock_nested(ptl);
		pmd_kind(pmdp_collapse_flush(mm, 0, pmdp), &x->table);
		if (ptl != pml)
			spin_unlock(ptl);
		spin_unlock(pml);
	};
	EXPECT_EQ(collapse_file(nullptr, 0, s.f, 0, nullptr), SCAN_SUCCEED) << s.describe();
	s.m->test_hooks.map_before_lock = nullptr;
	ASSERT_NE(ctx.table, 0u) << "try_to_unmap never mapped the table of the mm at " << b;
	EXPECT_GE(s.count(VIOLATION_PTE_IN_DETACHED_TABLE), 1u) << s.describe();
	free_detached_pte_table(other, ctx.table, true);
	mm_destroy(other);
}

namespace {
// An mm holding a PTE-mapped copy of the huge folio: its retraction was skipped because it
// looked exiting, then it faulted the range back in through the old, empty table.
int64_t pte_mapped_thp(Shmem &s, mm_struct *other)
{
	int64_t b = s.map_in(other);
	uint64_t v;
	__atomic_store_n(&other->mm_users, 0, __ATOMIC_RELEASE);
	EXPECT_EQ(collapse_file(nullptr, 0, s.f, 0, nullptr), SCAN_SUCCEED) << s.describe();
	__atomic_store_n(&other->mm_users, 1, __ATOMIC_RELEASE);
	for (uint64_t i = 0; i < s.nr; i += 5)
		EXPECT_EQ(copy_from_user(other, &v, b + i * s.page, 8), 0);
	EXPECT_EQ(pmd_kind(pmdp_get_lockless(mm_find_pmd(other, b)), nullptr), PTEMU_ENTRY_TABLE);
	return b;
}
} // namespace

// kernel-spec 3.4: the PTEs of the THP are cleared, the table retracted and freed by RCU,
// the counters and references follow; with install_pmd the range is then PMD-mapped.
TEST_P(Collapse, CollapsePteMappedThpRetractsTheTableAndInstallsThePmd)
{
	for (bool install : {false, true}) {
		Shmem s(GetParam());
		mm_struct *other = mm_alloc(s.m);
		int64_t b = pte_mapped_thp(s, other);
		uint64_t mapped = (s.nr + 4) / 5;
		EXPECT_EQ(get_mm_counter(other, MM_SHMEMPAGES), (int64_t)mapped);
		page *head = s.f->i_pages[0];
		int32_t refs = head->refcount;
		uint64_t retracts = s.stat(PTEMU_STAT_retracts);

		down_read(&other->mmap_lock);
		EXPECT_EQ(collapse_pte_mapped_thp(other, b + 3 * s.page, install), SCAN_SUCCEED);
		up_read(&other->mmap_lock);
		EXPECT_EQ(s.stat(PTEMU_STAT_retracts), retracts + 1);
		pmd_t p = pmdp_get_lockless(mm_find_pmd(other, b));
		EXPECT_EQ(install ? pmd_trans_huge(p) : pmd_none(p), true);
		EXPECT_EQ(get_mm_counter(other, MM_SHMEMPAGES), install ? (int64_t)s.nr : 0);
		EXPECT_EQ(head->refcount, refs - (int32_t)mapped + (install ? 1 : 0));
		mm_audit_counters(other);
		uint64_t v;
		ASSERT_EQ(copy_from_user(other, &v, b + 8 * s.page, 8), 0);
		EXPECT_EQ(v, 0xabc008u);
		EXPECT_TRUE(pmd_trans_huge(pmdp_get_lockless(mm_find_pmd(other, b))));
		// Already PMD-mapped now.
		down_read(&other->mmap_lock);
		EXPECT_EQ(collapse_pte_mapped_thp(other, b, true), SCAN_PMD_MAPPED);
		up_read(&other->mmap_lock);
		mm_destroy(other);
		EXPECT_EQ(s.violations(), 0u) << s.describe();
	}
}

TEST_P(Collapse, CollapsePteMappedThpRefusesWhatItCannotTake)
{
	Shmem s(GetParam());
	down_read(&s.mm->mmap_lock);
	EXPECT_EQ(collapse_pte_mapped_thp(s.mm, 0x1000, false), SCAN_VMA_CHECK);  // no VMA
	EXPECT_EQ(collapse_pte_mapped_thp(s.mm, s.addr, false), SCAN_PAGE_COMPOUND);  // small pages
	EXPECT_EQ(collapse_pte_mapped_thp(s.mm, s.addr + s.pmd, false), SCAN_PAGE_NULL);  // nothing cached
	up_read(&s.mm->mmap_lock);
	// A private mapping with a COWed page in the range: not the folio's page.
	int64_t priv = do_mmap(s.mm, 0, s.pmd, PTEMU_PROT_READ | PTEMU_PROT_WRITE, PTEMU_MAP_PRIVATE, s.f, 0);
	ASSERT_GT(priv, 0);
	s.write64(priv + 2 * s.page, 5);
	ASSERT_EQ(collapse_file(nullptr, 0, s.f, 0, nullptr), SCAN_SUCCEED) << s.describe();
	down_read(&s.mm->mmap_lock);
	EXPECT_EQ(collapse_pte_mapped_thp(s.mm, priv, false), SCAN_FAIL);
	up_read(&s.mm->mmap_lock);
	EXPECT_EQ(s.read64(priv + 2 * s.page), 5u);
	mm_audit_counters(s.mm);
	EXPECT_EQ(s.violations(), 0u) << s.describe();
}

// madvise_collapse's errno mapping (kernel-spec 3.5).
TEST_P(Collapse, MadviseCollapseErrnos)
{
	Shmem s(GetParam());
	int64_t anon = do_mmap(s.mm, 0, 2 * s.pmd, PTEMU_PROT_READ | PTEMU_PROT_WRITE,
			       PTEMU_MAP_PRIVATE | PTEMU_MAP_ANONYMOUS, nullptr, 0);
	ASSERT_GT(anon, 0);
	uint64_t aligned = ((uint64_t)anon + s.pmd - 1) & ~(s.pmd - 1);
	EXPECT_EQ(do_madvise(s.mm, aligned, s.pmd, PTEMU_MADV_COLLAPSE), -EINVAL);  // anonymous
	page *pinned = filemap_get_folio(s.f, 4);
	EXPECT_EQ(do_madvise(s.mm, s.addr, s.pmd, PTEMU_MADV_COLLAPSE), -EAGAIN);  // SCAN_PAGE_COUNT
	folio_put(pinned);
	EXPECT_EQ(do_madvise(s.mm, s.addr, 2 * s.pmd, PTEMU_MADV_COLLAPSE), -EINVAL);  // 2nd: all holes
	EXPECT_TRUE(pmd_trans_huge(pmdp_get_lockless(mm_find_pmd(s.mm, s.addr))));  // the 1st went
	EXPECT_EQ(do_madvise(s.mm, s.addr, s.pmd, PTEMU_MADV_COLLAPSE), 0);  // SCAN_PMD_MAPPED
	s.expect_data_unchanged();
	EXPECT_EQ(s.violations(), 0u) << s.describe();
}

namespace {

// The legacy protocol, with a second mm mapping the file's first PMD through a table.
struct LegacyPair : Shmem {
	explicit LegacyPair(const char *arch) : Shmem(arch)
	{
		m->protocol = PTEMU_PROTOCOL_LEGACY;
		other = mm_alloc(m);
		b = map_in(other);
	}
	mm_struct *other;
	int64_t b;
};

} // namespace

// --protocol legacy (v6.5): khugepaged retracts under mmap_write_trylock and the i_mmap
// write lock, tables freed at once; an mm whose mmap_lock is taken keeps its table and is
// queued.
TEST_P(Collapse, LegacyRetractTakesMmapLockFreesAtOnceAndQueuesBusyMms)
{
	LegacyPair s(GetParam());
	mm_struct *busy = s.other;
	int64_t b = s.b;
	ASSERT_GT(b, 0);
	uint64_t v;
	{
		// A fault in progress there: another thread holds its mmap_lock.
		std::promise<void> held, done;
		std::thread faulter([&] {
			ptemu_thread_register(s.m, "faulter");
			down_read(&busy->mmap_lock);
			held.set_value();
			done.get_future().wait();
			up_read(&busy->mmap_lock);
			ptemu_thread_unregister();
		});
		held.get_future().wait();
		const collapse_control cc = {true, 0};
		EXPECT_EQ(collapse_file(s.mm, s.addr, s.f, 0, &cc), SCAN_SUCCEED) << s.describe();
		done.set_value();
		faulter.join();
	}
	EXPECT_TRUE(pmd_none(pmdp_get_lockless(mm_find_pmd(s.mm, s.addr))));  // khugepaged: no install
	EXPECT_EQ(s.stat(PTEMU_STAT_retracts), 1u);
	EXPECT_EQ(s.stat(PTEMU_STAT_tables_freed_deferred), 0u);  // pte_free, not deferred
	EXPECT_EQ(pmd_kind(pmdp_get_lockless(mm_find_pmd(busy, b)), nullptr), PTEMU_ENTRY_TABLE);
	ASSERT_EQ(busy->nr_pte_mapped_thp, 1u);
	EXPECT_EQ(busy->pte_mapped_thp[0], (uint64_t)b);
	// What khugepaged_collapse_pte_mapped_thps does with it, under mmap_write_lock.
	ASSERT_EQ(copy_from_user(busy, &v, b + 2 * s.page, 8), 0);
	down_write(&busy->mmap_lock);
	EXPECT_EQ(collapse_pte_mapped_thp(busy, b, false), SCAN_SUCCEED);
	up_write(&busy->mmap_lock);
	EXPECT_TRUE(pmd_none(pmdp_get_lockless(mm_find_pmd(busy, b))));
	EXPECT_EQ(s.stat(PTEMU_STAT_tables_freed_deferred), 0u);
	mm_audit_counters(busy);
	mm_destroy(busy);
	s.expect_data_unchanged();
	EXPECT_EQ(s.violations(), 0u) << s.describe();
}

// v6.5 (retract_page_tables with cc): MADV_COLLAPSE takes the mmap_lock of its own mm
// only; every other mm's table is left for khugepaged (khugepaged_add_pte_mapped_thp).
// collapse_pte_mapped_thp also takes a private mapping that has an anon_vma, as long as
// its entries map the huge folio (6.2's "allow anon_vma").
TEST_P(Collapse, LegacyMadvCollapseLeavesOtherMmsToKhugepaged)
{
	LegacyPair s(GetParam());
	mm_struct *other = s.other;
	int64_t b = s.b;
	ASSERT_GT(b, 0);
	EXPECT_EQ(do_madvise(s.mm, s.addr, s.pmd, PTEMU_MADV_COLLAPSE), 0) << s.describe();
	EXPECT_TRUE(pmd_trans_huge(pmdp_get_lockless(mm_find_pmd(s.mm, s.addr))));
	EXPECT_EQ(s.stat(PTEMU_STAT_retracts), 1u);
	EXPECT_EQ(pmd_kind(pmdp_get_lockless(mm_find_pmd(other, b)), nullptr), PTEMU_ENTRY_TABLE);
	ASSERT_EQ(other->nr_pte_mapped_thp, 1u);
	EXPECT_EQ(other->pte_mapped_thp[0], (uint64_t)b);

	// A private mapping of the same range, written to: it has an anon_vma.
	int64_t p = do_mmap(other, 0, s.pmd, PTEMU_PROT_READ | PTEMU_PROT_WRITE, PTEMU_MAP_PRIVATE, s.f, 0);
	ASSERT_GT(p, 0);
	uint64_t v = 7;
	ASSERT_EQ(copy_to_user(other, (uint64_t)p + s.page, &v, 8), 0);	// a COW: anon_vma
	ASSERT_EQ(copy_from_user(other, &v, (uint64_t)p + 2 * s.page, 8), 0);	// the folio
	down_write(&other->mmap_lock);
	EXPECT_EQ(collapse_pte_mapped_thp(other, p, false), SCAN_FAIL);	// the COWed page
	up_write(&other->mmap_lock);
	ASSERT_EQ(do_madvise(other, p + s.page, s.page, PTEMU_MADV_DONTNEED), 0);
	down_write(&other->mmap_lock);
	EXPECT_EQ(collapse_pte_mapped_thp(other, p, false), SCAN_SUCCEED);
	EXPECT_EQ(collapse_pte_mapped_thp(other, b, false), SCAN_SUCCEED);
	up_write(&other->mmap_lock);
	EXPECT_TRUE(pmd_none(pmdp_get_lockless(mm_find_pmd(other, p))));
	EXPECT_TRUE(pmd_none(pmdp_get_lockless(mm_find_pmd(other, b))));
	mm_audit_counters(other);
	mm_destroy(other);
	s.expect_data_unchanged();
	EXPECT_EQ(s.violations(), 0u) << s.describe();
}

// v6.5's collapse_pte_mapped_thp frees the table with its entries still in it (6.6 clears
// them first: "freeing a page table still containing valid entries"). On s390 a freed
// 2 KiB half goes back on pgtable_list while its page-mate is in use, and page_table_alloc
// hands it out again without clearing it: the next table installed holds stale entries.
TEST_P(Collapse, LegacyCollapsePteMappedThpFreesATableWithItsEntries)
{
	LegacyPair s(GetParam());
	mm_struct *other = s.other;
	ASSERT_GT(s.b, 0);
	EXPECT_EQ(do_madvise(s.mm, s.addr, s.pmd, PTEMU_MADV_COLLAPSE), 0) << s.describe();
	uint64_t v = 0;
	ASSERT_EQ(copy_from_user(other, &v, s.b + 2 * s.page, 8), 0);	// PTE-maps the huge folio
	// A second table in the same page (s390's other half), then the first one goes.
	int64_t anon = do_mmap(other, 0, 4 * s.pmd, PTEMU_PROT_READ | PTEMU_PROT_WRITE,
			       PTEMU_MAP_PRIVATE | PTEMU_MAP_ANONYMOUS, nullptr, 0);
	ASSERT_GT(anon, 0);
	ASSERT_EQ(copy_to_user(other, anon, &v, 8), 0);
	down_write(&other->mmap_lock);
	EXPECT_EQ(collapse_pte_mapped_thp(other, s.b, false), SCAN_SUCCEED);
	up_write(&other->mmap_lock);
	ASSERT_EQ(copy_to_user(other, anon + 2 * s.pmd, &v, 8), 0);	// a new table
	if (s.m->arch->tables_per_page > 1 && !fragments_never_reused(s.m->arch))
		EXPECT_GE(s.count(VIOLATION_INSTALLED_TABLE_NOT_EMPTY), 1u) << s.describe();
	else	// a whole page, freed to the allocator, or a fragment never handed out again
		EXPECT_EQ(s.violations(), 0u) << s.describe();
	mm_destroy(other);
}

namespace {
bool never(void *) { return false; }
} // namespace

// The khugepaged thread finds the mm that asked for MADV_HUGEPAGE and collapses its range;
// an exiting mm leaves its slot while the thread runs.
TEST_P(Collapse, KhugepagedThreadCollapsesAnAdvisedRangeAndSurvivesExit)
{
	Shmem s(GetParam());
	khugepaged_tunables t{};
	t.scan_sleep_ms = 1;
	t.should_stop = never;
	ASSERT_EQ(khugepaged_start(s.m, &t), 0);
	mm_struct *other = mm_alloc(s.m);
	int64_t b = do_mmap(other, 0, s.pmd, PTEMU_PROT_READ, PTEMU_MAP_SHARED, s.f, 0);
	ASSERT_EQ(do_madvise(other, b, s.pmd, PTEMU_MADV_HUGEPAGE), 0);
	ASSERT_EQ(do_madvise(s.mm, s.addr, 2 * s.pmd, PTEMU_MADV_HUGEPAGE), 0);
	EXPECT_EQ(khugepaged_wait_full_scan(s.mm), 0);
	EXPECT_GE(s.stat(PTEMU_STAT_collapses), 1u);
	EXPECT_GE(s.stat(PTEMU_STAT_khugepaged_full_scans), 2u);
	exit_mmap(other);  // its slot goes; the thread goes on
	EXPECT_EQ(khugepaged_wait_full_scan(s.mm), 0);
	khugepaged_stop(s.m);
	ASSERT_NE(s.f->i_pages[0], nullptr);
	EXPECT_EQ(folio_order(s.f->i_pages[0]), s.arch()->pmd_leaf_shift - s.arch()->page_shift);
	s.expect_data_unchanged();
	EXPECT_EQ(s.violations(), 0u) << s.describe();
}

INSTANTIATE_TEST_SUITE_P(Models, Collapse, testing::ValuesIn(kModels), ModelName);
