// The kernel model without a guest: mmap/munmap/mprotect/madvise, the fault path through
// copy_to_user/copy_from_user, files and shmem, counters, and faults racing retraction.
#include "fixture.h"

#include <ptemu/fault.h>
#include <ptemu/file.h>
#include <ptemu/khugepaged.h>
#include <ptemu/uaccess.h>

#include "../workloads/include/ptemu_abi.h"

using namespace ptemu_test;

namespace {

class MmFault : public testing::TestWithParam<const char *> {};

struct Space : MachineHolder {
	explicit Space(const char *arch) : MachineHolder(arch) { mm = mm_alloc(m); }
	~Space()
	{
		if (mm)
			mm_destroy(mm);
	}
	uint64_t page() const { return ptemu_page_size(m->arch); }
	uint64_t pmd() const { return ptemu_pmd_size(m->arch); }
	int64_t map_anon(uint64_t len, unsigned prot = PTEMU_PROT_READ | PTEMU_PROT_WRITE)
	{
		return do_mmap(mm, 0, len, prot, PTEMU_MAP_PRIVATE | PTEMU_MAP_ANONYMOUS, nullptr, 0);
	}
	uint64_t read64(uint64_t a)
	{
		uint64_t v = 0;
		EXPECT_EQ(copy_from_user(mm, &v, a, 8), 0) << std::hex << a;
		return v;
	}
	void write64(uint64_t a, uint64_t v) { EXPECT_EQ(copy_to_user(mm, a, &v, 8), 0) << std::hex << a; }
	mm_struct *mm = nullptr;
};

} // namespace

TEST_P(MmFault, AnonymousMemoryFaultsInZeroedAndKeepsWrites)
{
	Space s(GetParam());
	int64_t a = s.map_anon(4 * s.page());
	ASSERT_GT(a, 0);
	EXPECT_EQ(s.read64(a), 0u);
	s.write64(a + s.page() + 8, 0x1122334455667788ull);
	EXPECT_EQ(s.read64(a + s.page() + 8), 0x1122334455667788ull);
	EXPECT_EQ(get_mm_counter(s.mm, MM_ANONPAGES), 2);
	EXPECT_GE(s.stat(PTEMU_STAT_faults), 0u);
	mm_audit_counters(s.mm);
	EXPECT_EQ(s.violations(), 0u) << s.describe();
}

TEST_P(MmFault, RegularFileReadsItsWordsAndCopiesOnWrite)
{
	Space s(GetParam());
	ptemu_file *f = ptemu_file_create(s.m, 9, false, 8 * s.page(), 8 * s.page());
	int64_t a = do_mmap(s.mm, 0, 8 * s.page(), PTEMU_PROT_READ | PTEMU_PROT_WRITE,
			    PTEMU_MAP_PRIVATE, f, 0);
	ASSERT_GT(a, 0);
	uint64_t w = s.read64(a + 3 * s.page() + 16);
	uint64_t want = ptemu_file_word(9, 3 * s.page() + 16);
	if (s.arch()->big_endian)
		want = __builtin_bswap64(want);
	EXPECT_EQ(w, want);
	EXPECT_EQ(get_mm_counter(s.mm, MM_FILEPAGES), 1);
	s.write64(a + 3 * s.page() + 16, 5);  // COW: the file keeps its word
	EXPECT_EQ(s.read64(a + 3 * s.page() + 16), 5u);
	EXPECT_EQ(get_mm_counter(s.mm, MM_FILEPAGES), 0);
	EXPECT_EQ(get_mm_counter(s.mm, MM_ANONPAGES), 1);
	int64_t b = do_mmap(s.mm, 0, 8 * s.page(), PTEMU_PROT_READ, PTEMU_MAP_SHARED, f, 0);
	ASSERT_GT(b, 0);
	EXPECT_EQ(s.read64(b + 3 * s.page() + 16), want);
	EXPECT_EQ(do_mmap(s.mm, 0, s.page(), PTEMU_PROT_WRITE, PTEMU_MAP_SHARED, f, 0), -13);
	mm_audit_counters(s.mm);
	ptemu_file_put(f);
	EXPECT_EQ(s.violations(), 0u) << s.describe();
}

TEST_P(MmFault, ShmemIsSharedAcrossProcesses)
{
	Space s(GetParam());
	mm_struct *other = mm_alloc(s.m);
	ptemu_file *f = ptemu_file_create(s.m, 1, true, 4 * s.pmd(), 4 * s.pmd());
	unsigned rw = PTEMU_PROT_READ | PTEMU_PROT_WRITE;
	int64_t a = do_mmap(s.mm, 0, 4 * s.pmd(), rw, PTEMU_MAP_SHARED, f, 0);
	int64_t b = do_mmap(other, 0, 4 * s.pmd(), rw, PTEMU_MAP_SHARED, f, 0);
	ASSERT_GT(a, 0);
	ASSERT_GT(b, 0);
	EXPECT_EQ(a % s.pmd(), 0);  // THP-sized mappings are PMD aligned
	s.write64(a + s.pmd() + 40, 42);
	uint64_t v = 0;
	ASSERT_EQ(copy_from_user(other, &v, b + s.pmd() + 40, 8), 0);
	EXPECT_EQ(v, 42u);
	EXPECT_EQ(get_mm_counter(s.mm, MM_SHMEMPAGES), 1);
	EXPECT_EQ(f->nr_i_mmap, 2u);
	mm_audit_counters(s.mm);
	mm_audit_counters(other);
	mm_destroy(other);
	EXPECT_EQ(f->nr_i_mmap, 1u);
	ptemu_file_put(f);
	EXPECT_EQ(s.violations(), 0u) << s.describe();
}

TEST_P(MmFault, MunmapFreesPagesAndTablesAndFaultsAfterItFail)
{
	Space s(GetParam());
	int64_t a = s.map_anon(2 * s.pmd());
	ASSERT_GT(a, 0);
	uint64_t written = 0;
	for (uint64_t off = 0; off < 2 * s.pmd(); off += 16 * s.page(), written++)
		s.write64(a + off, off);
	uint64_t touched = phys_stats(s.m->phys).pages_allocated;
	int64_t pt = mm_pgtables_bytes(s.mm);
	EXPECT_EQ(do_munmap(s.mm, a, 2 * s.pmd()), 0);
	EXPECT_EQ(get_mm_counter(s.mm, MM_ANONPAGES), 0);
	EXPECT_EQ(pt - mm_pgtables_bytes(s.mm), 2 * (int64_t)s.arch()->pte_table_bytes);
	uint64_t v;
	EXPECT_EQ(copy_from_user(s.mm, &v, a, 8), -EFAULT);
	rcu_barrier();
	// Upper tables stay until exit; the data pages and both PTE tables are back (powerpc:
	// the tables' page is the fragment cursor until exit).
	uint64_t table_pages = fragments_never_reused(s.arch()) ? 0 :
			       (2 + s.arch()->tables_per_page - 1) / s.arch()->tables_per_page;
	EXPECT_EQ(phys_stats(s.m->phys).pages_allocated, touched - written - table_pages);
	mm_audit_counters(s.mm);
	EXPECT_EQ(s.violations(), 0u) << s.describe();
}

TEST_P(MmFault, PartialMunmapSplitsTheVmaAndKeepsSharedTables)
{
	Space s(GetParam());
	int64_t a = s.map_anon(8 * s.page());
	ASSERT_GT(a, 0);
	for (int i = 0; i < 8; i++)
		s.write64(a + i * s.page(), 100 + i);
	ASSERT_EQ(do_munmap(s.mm, a + 2 * s.page(), 3 * s.page()), 0);
	EXPECT_EQ(s.mm->nr_vmas, 2u);
	EXPECT_EQ(s.read64(a + 1 * s.page()), 101u);
	EXPECT_EQ(s.read64(a + 6 * s.page()), 106u);
	EXPECT_EQ(get_mm_counter(s.mm, MM_ANONPAGES), 5);
	mm_audit_counters(s.mm);
	EXPECT_EQ(s.violations(), 0u) << s.describe();
}

TEST_P(MmFault, MprotectRemovesWriteAndFaultsRespectIt)
{
	Space s(GetParam());
	int64_t a = s.map_anon(4 * s.page());
	s.write64(a, 1);
	ASSERT_EQ(do_mprotect(s.mm, a, 4 * s.page(), PTEMU_PROT_READ), 0);
	uint64_t v = 2;
	EXPECT_EQ(copy_to_user(s.mm, a, &v, 8), -EFAULT);
	EXPECT_EQ(ptemu_user_fault(s.mm, a, FAULT_FLAG_WRITE), VM_FAULT_SIGSEGV);
	EXPECT_EQ(s.read64(a), 1u);
	ASSERT_EQ(do_mprotect(s.mm, a, 4 * s.page(), PTEMU_PROT_READ | PTEMU_PROT_WRITE), 0);
	s.write64(a, 3);
	EXPECT_EQ(s.read64(a), 3u);
	EXPECT_EQ(do_mprotect(s.mm, a + 64 * s.page(), s.page(), PTEMU_PROT_READ), -ENOMEM);
	EXPECT_EQ(s.violations(), 0u) << s.describe();
}

// A read fault on a PROT_EXEC-only mapping is served: arm64's do_page_fault (a CPU without
// EPAN), s390's do_dat_exception (VM_ACCESS_FLAGS) and sparc64's do_sparc64_fault take
// exec for a read. powerpc's access_error refuses it on radix, which has execute-only
// memory (since 6.1). A write still needs VM_WRITE, PROT_NONE still faults.
TEST_P(MmFault, ReadFaultOnAnExecOnlyMappingIsServedWhereExecImpliesRead)
{
	Space s(GetParam());
	int64_t a = s.map_anon(4 * s.page());
	ASSERT_EQ(do_mprotect(s.mm, a, 2 * s.page(), PTEMU_PROT_EXEC), 0);
	ASSERT_EQ(do_mprotect(s.mm, a + 2 * s.page(), 2 * s.page(), PTEMU_PROT_NONE), 0);
	if (s.arch()->read_fault_vm_flags & VM_EXEC)
		EXPECT_EQ(ptemu_user_fault(s.mm, a, 0) & VM_FAULT_SIGSEGV, 0u);
	else
		EXPECT_EQ(ptemu_user_fault(s.mm, a, 0), VM_FAULT_SIGSEGV);
	EXPECT_EQ(ptemu_user_fault(s.mm, a, FAULT_FLAG_WRITE), VM_FAULT_SIGSEGV);
	EXPECT_EQ(ptemu_user_fault(s.mm, a + 2 * s.page(), 0), VM_FAULT_SIGSEGV);
	EXPECT_EQ(s.violations(), 0u) << s.describe();
}

TEST_P(MmFault, DontneedZeroesAnonymousAndKeepsShmem)
{
	Space s(GetParam());
	int64_t a = s.map_anon(4 * s.page());
	ptemu_file *f = ptemu_file_create(s.m, 3, true, 4 * s.page(), 4 * s.page());
	int64_t b = do_mmap(s.mm, 0, 4 * s.page(), PTEMU_PROT_READ | PTEMU_PROT_WRITE,
			    PTEMU_MAP_SHARED, f, 0);
	s.write64(a + s.page(), 7);
	s.write64(b + s.page(), 8);
	ASSERT_EQ(do_madvise(s.mm, a, 4 * s.page(), PTEMU_MADV_DONTNEED), 0);
	ASSERT_EQ(do_madvise(s.mm, b, 4 * s.page(), PTEMU_MADV_DONTNEED), 0);
	EXPECT_EQ(get_mm_counter(s.mm, MM_SHMEMPAGES), 0);
	EXPECT_EQ(s.read64(a + s.page()), 0u);
	EXPECT_EQ(s.read64(b + s.page()), 8u);
	EXPECT_EQ(do_madvise(s.mm, a, s.page(), 12345), -EINVAL);
	ptemu_file_put(f);
	EXPECT_EQ(s.violations(), 0u) << s.describe();
}

TEST_P(MmFault, TruncateAndHolePunchUnmapAndZero)
{
	Space s(GetParam());
	ptemu_file *f = ptemu_file_create(s.m, 4, true, 8 * s.page(), 8 * s.page());
	int64_t b = do_mmap(s.mm, 0, 8 * s.page(), PTEMU_PROT_READ | PTEMU_PROT_WRITE,
			    PTEMU_MAP_SHARED, f, 0);
	for (int i = 0; i < 8; i++)
		s.write64(b + i * s.page(), 50 + i);
	ASSERT_EQ(shmem_punch_hole(f, 2 * s.page(), 2 * s.page()), 0);
	EXPECT_EQ(s.read64(b + 2 * s.page()), 0u);
	EXPECT_EQ(s.read64(b + 4 * s.page()), 54u);
	ASSERT_EQ(shmem_truncate(f, 5 * s.page()), 0);
	uint64_t v;
	EXPECT_EQ(ptemu_user_fault(s.mm, b + 6 * s.page(), 0), VM_FAULT_SIGBUS);
	EXPECT_EQ(copy_from_user(s.mm, &v, b + 6 * s.page(), 8), -EFAULT);
	ASSERT_EQ(shmem_truncate(f, 8 * s.page()), 0);
	EXPECT_EQ(s.read64(b + 6 * s.page()), 0u);  // grown back: a hole
	EXPECT_EQ(shmem_punch_hole(f, 1, s.page()), -EINVAL);
	mm_audit_counters(s.mm);
	ptemu_file_put(f);
	EXPECT_EQ(s.violations(), 0u) << s.describe();
}

TEST_P(MmFault, FaultFindingItsTableRetractedRetriesWithoutLosingTheMapping)
{
	Space s(GetParam());
	int64_t a = s.map_anon(s.pmd());
	s.write64(a, 1);  // installs the table
	pmd_t *pmd = mm_find_pmd(s.mm, a);
	struct Ctx {
		Space *s;
		pmd_t *pmd;
		int64_t a;
		int fired = 0;
	} ctx{&s, pmd, a};
	// Before finish_fault's lock: empty and retract the table, as collapse would.
	s.m->test_hooks.ctx = &ctx;
	s.m->test_hooks.map_before_lock = [](void *c, mm_struct *mm, void *) {
		auto *x = static_cast<Ctx *>(c);
		if (x->fired++)
			return;
		pmd_t v = pmdp_get_lockless(x->pmd);
		uint64_t table;
		pmd_kind(v, &table);
		ptemu_spinlock *pml = pmd_lock(mm, x->pmd);
		ptemu_spinlock *ptl = pte_lockptr(mm, &v);
		spin_lock(ptl);
		pte_t *pte = pte_offset_map(x->pmd, x->a);
		pte_t *first = pte - ptemu_level_index(mm->machine->arch, ptemu_pte_level(mm->machine->arch), x->a);
		for (unsigned i = 0; i < mm->machine->arch->pte_table_bytes / 8; i++) {
			pte_t e = ptep_get_and_clear(mm, x->a, first + i);
			if (mm->machine->arch->pte_present(e.val)) {
				add_mm_counter(mm, MM_ANONPAGES, -1);
				folio_put(page_folio(pfn_to_page(mm->machine->phys, mm->machine->arch->pte_leaf(e.val).pfn)));
			}
		}
		pte_unmap(pte);
		pmdp_collapse_flush(mm, x->a, x->pmd);
		mm_inc_pgtables(mm, -(int64_t)mm->machine->arch->pte_table_bytes);
		spin_unlock(ptl);
		spin_unlock(pml);
		pte_free_defer(mm, table);
	};
	unsigned ret = ptemu_user_fault(s.mm, a + s.page(), FAULT_FLAG_WRITE);
	s.m->test_hooks.map_before_lock = nullptr;
	EXPECT_EQ(ret, VM_FAULT_NOPAGE);  // nothing installed: the access retries
	EXPECT_EQ(ctx.fired, 1);  // the retry pass found the pmd none: no second lock attempt
	EXPECT_GE(s.stat(PTEMU_STAT_fault_retries), 1u);
	EXPECT_EQ(get_mm_counter(s.mm, MM_ANONPAGES), 0);
	// The retry installs a new table and exactly one mapping.
	s.write64(a + s.page(), 9);
	EXPECT_EQ(s.read64(a + s.page()), 9u);
	EXPECT_EQ(get_mm_counter(s.mm, MM_ANONPAGES), 1);
	mm_audit_counters(s.mm);
	EXPECT_EQ(s.violations(), 0u) << s.describe();
}

TEST_P(MmFault, BadArgumentsAreErrors)
{
	Space s(GetParam());
	EXPECT_EQ(do_mmap(s.mm, 0, 0, PTEMU_PROT_READ, PTEMU_MAP_PRIVATE | PTEMU_MAP_ANONYMOUS, nullptr, 0), -EINVAL);
	EXPECT_EQ(do_mmap(s.mm, 0, s.page(), PTEMU_PROT_READ, PTEMU_MAP_ANONYMOUS, nullptr, 0), -EINVAL);
	EXPECT_EQ(do_mmap(s.mm, 0, s.page(), 8, PTEMU_MAP_PRIVATE | PTEMU_MAP_ANONYMOUS, nullptr, 0), -EINVAL);
	EXPECT_EQ(do_munmap(s.mm, 1, s.page()), -EINVAL);
	EXPECT_EQ(do_munmap(s.mm, ~0ull & ~(s.page() - 1), 2 * s.page()), -EINVAL);
	EXPECT_EQ(ptemu_user_fault(s.mm, 0x1000, 0), VM_FAULT_SIGSEGV);
	EXPECT_EQ(s.violations(), 0u) << s.describe();
}

INSTANTIATE_TEST_SUITE_P(Models, MmFault, testing::ValuesIn(kModels), ModelName);

// A PMD-sized folio in the page cache is mapped by one pmd when the pmd is none
// (do_set_pmd), and by PTEs where a table is already there.
TEST_P(MmFault, HugePageCacheFolioIsMappedByPmdWhenThePmdIsNone)
{
	Space s(GetParam());
	const ptemu_arch *a = s.arch();
	unsigned order = a->pmd_leaf_shift - a->page_shift;
	uint64_t nr = 1ull << order;
	ptemu_file *f = ptemu_file_create(s.m, 5, true, 2 * s.pmd(), 2 * s.pmd());
	// Put a huge folio at index 0 by hand, as collapse_file will: one multi-index entry.
	uint64_t pfn = phys_alloc_pages(s.m->phys, order);
	ASSERT_NE(pfn, 0u);
	page *folio = pfn_to_page(s.m->phys, pfn);
	folio->mapping = f;
	folio->index = 0;
	folio->refcount = (int32_t)nr;  // the cache's references
	SetPageFlag(folio, PG_swapbacked);
	SetPageFlag(folio, PG_uptodate);
	for (uint64_t i = 0; i < nr; i++)
		f->i_pages[i] = folio;
	uint64_t w = 0x5555aaaa;
	memcpy(phys_to_virt(s.m->phys, (pfn + 3) << a->page_shift), &w, 8);

	unsigned rw = PTEMU_PROT_READ | PTEMU_PROT_WRITE;
	int64_t b = do_mmap(s.mm, 0, 2 * s.pmd(), rw, PTEMU_MAP_SHARED, f, 0);
	ASSERT_GT(b, 0);
	ASSERT_EQ(b % s.pmd(), 0);
	EXPECT_EQ(s.read64(b + 3 * s.page()), 0x5555aaaau);
	pmd_t *pmd = mm_find_pmd(s.mm, b);
	ASSERT_NE(pmd, nullptr);
	EXPECT_TRUE(pmd_trans_huge(pmdp_get_lockless(pmd)));
	EXPECT_EQ(get_mm_counter(s.mm, MM_SHMEMPAGES), (int64_t)nr);
	EXPECT_EQ(folio->refcount, (int32_t)nr + 1);  // + one per PMD mapping
	// A write through the PMD mapping lands in the folio.
	s.write64(b + 5 * s.page(), 77);
	uint64_t got;
	memcpy(&got, phys_to_virt(s.m->phys, (pfn + 5) << a->page_shift), 8);
	EXPECT_EQ(got, 77u);
	mm_audit_counters(s.mm);
	// Unmapping drops the PMD mapping's reference, and the cache keeps the folio.
	ASSERT_EQ(do_munmap(s.mm, b, 2 * s.pmd()), 0);
	EXPECT_EQ(folio->refcount, (int32_t)nr);
	EXPECT_EQ(get_mm_counter(s.mm, MM_SHMEMPAGES), 0);
	ptemu_file_put(f);
	EXPECT_EQ(s.violations(), 0u) << s.describe();
}

// MADV_COLLAPSE of a shmem range mapped by PTEs in two processes: collapse_file puts one
// huge folio in the page cache, retract_page_tables detaches the (empty) tables in both
// mms without mmap_lock and frees them by RCU; the data survives and later faults map it
// by PMD.
TEST_P(MmFault, CollapseRetractsTablesInEveryProcessAndKeepsTheData)
{
	Space s(GetParam());
	mm_struct *other = mm_alloc(s.m);
	ptemu_file *f = ptemu_file_create(s.m, 7, true, 2 * s.pmd(), 2 * s.pmd());
	unsigned rw = PTEMU_PROT_READ | PTEMU_PROT_WRITE;
	int64_t a = do_mmap(s.mm, 0, 2 * s.pmd(), rw, PTEMU_MAP_SHARED, f, 0);
	int64_t b = do_mmap(other, 0, 2 * s.pmd(), rw, PTEMU_MAP_SHARED, f, 0);
	ASSERT_GT(a, 0);
	ASSERT_GT(b, 0);
	uint64_t nr = s.pmd() / s.page();
	for (uint64_t i = 0; i < nr; i += 3)  // a third of the pages: the rest are holes
		s.write64(a + i * s.page() + 8, 0xc0ffee00 + i);
	uint64_t v;
	ASSERT_EQ(copy_from_user(other, &v, b + 3 * s.page() + 8, 8), 0);  // the other maps one
	EXPECT_EQ(v, 0xc0ffee03u);
	uint64_t t1, t2;
	pmd_kind(pmdp_get_lockless(mm_find_pmd(s.mm, a)), &t1);
	pmd_kind(pmdp_get_lockless(mm_find_pmd(other, b)), &t2);

	ASSERT_EQ(do_madvise(s.mm, a, s.pmd(), PTEMU_MADV_COLLAPSE), 0) << s.describe();
	EXPECT_EQ(s.stat(PTEMU_STAT_collapses), 1u);
	EXPECT_EQ(s.stat(PTEMU_STAT_retracts), 2u);  // both processes, no mmap_lock taken
	// MADV_COLLAPSE maps the new folio by PMD in its own mm (collapse_pte_mapped_thp with
	// install_pmd); the other mm refaults it.
	EXPECT_TRUE(pmd_trans_huge(pmdp_get_lockless(mm_find_pmd(s.mm, a))));
	EXPECT_TRUE(pmd_none(pmdp_get_lockless(mm_find_pmd(other, b))));
	EXPECT_EQ(get_mm_counter(s.mm, MM_SHMEMPAGES), (int64_t)nr);
	EXPECT_EQ(get_mm_counter(other, MM_SHMEMPAGES), 0);
	// Handed to RCU: pending, or already freed if the grace period was quick.
	ptemu_table_state st = check_table_state(s.m, t1);
	EXPECT_TRUE(st == TABLE_RCU_PENDING || st == TABLE_FREE) << ptemu_table_state_name(st);
	page *head = f->i_pages[0];
	ASSERT_NE(head, nullptr);
	EXPECT_EQ(folio_order(head), s.arch()->pmd_leaf_shift - s.arch()->page_shift);
	for (uint64_t i = 0; i < nr; i++)
		ASSERT_EQ(f->i_pages[i], head);
	// Data: written pages kept, holes zero; the next fault maps the huge folio by PMD.
	for (uint64_t i = 0; i < nr; i += 1) {
		uint64_t want = i % 3 == 0 ? 0xc0ffee00 + i : 0;
		ASSERT_EQ(s.read64(a + i * s.page() + 8), want) << i;
	}
	EXPECT_TRUE(pmd_trans_huge(pmdp_get_lockless(mm_find_pmd(s.mm, a))));
	ASSERT_EQ(copy_from_user(other, &v, b + 6 * s.page() + 8, 8), 0);
	EXPECT_EQ(v, 0xc0ffee06u);
	EXPECT_TRUE(pmd_trans_huge(pmdp_get_lockless(mm_find_pmd(other, b))));
	EXPECT_EQ(get_mm_counter(s.mm, MM_SHMEMPAGES), (int64_t)nr);
	mm_audit_counters(s.mm);
	mm_audit_counters(other);
	rcu_barrier();
	EXPECT_EQ(check_table_state(s.m, t2),
		  fragments_never_reused(s.arch()) ? TABLE_RCU_PENDING : TABLE_FREE);
	// A second collapse of the same range finds the huge folio.
	EXPECT_EQ(collapse_file(nullptr, 0, f, 0, nullptr), SCAN_PTE_MAPPED_HUGEPAGE);
	mm_destroy(other);
	ptemu_file_put(f);
	EXPECT_EQ(s.violations(), 0u) << s.describe();
}
