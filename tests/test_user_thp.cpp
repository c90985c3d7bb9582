// What a user sees of THPs, as v6.6 does it: a huge pmd never outlives a VMA boundary
// inside it (vma_adjust_trans_huge), mprotect merges VMAs back (vma_merge), MADV_COLLAPSE
// and MADV_HUGEPAGE return v6.6's results (kernel-spec 3.5), khugepaged knows a guest's mm
// from its first MADV_HUGEPAGE on.
#include "fixture.h"

#include <errno.h>

#include <cstdio>
#include <string>

#include <ptemu/fault.h>
#include <ptemu/file.h>
#include <ptemu/khugepaged.h>
#include <ptemu/run.h>
#include <ptemu/uaccess.h>

#include "../workloads/include/ptemu_abi.h"

using namespace ptemu_test;

namespace {

class UserThp : public testing::TestWithParam<const char *> {};

constexpr unsigned kRW = PTEMU_PROT_READ | PTEMU_PROT_WRITE;

// A PMD-aligned shared shmem mapping of two PMDs, every page written, the first PMD
// collapsed and mapped by one huge pmd.
struct Collapsed : MachineHolder {
	explicit Collapsed(const char *arch) : MachineHolder(arch)
	{
		mm = mm_alloc(m);
		pmd = ptemu_pmd_size(m->arch);
		page = ptemu_page_size(m->arch);
		f = ptemu_file_create(m, 21, true, 2 * pmd, 2 * pmd);
		addr = (uint64_t)do_mmap(mm, 0, 2 * pmd, kRW, PTEMU_MAP_SHARED, f, 0);
		for (uint64_t off = 0; off < 2 * pmd; off += page)
			write64(addr + off, 0x5000 + off);
		EXPECT_EQ(do_madvise(mm, addr, pmd, PTEMU_MADV_COLLAPSE), 0) << describe();
		EXPECT_TRUE(huge());
	}
	~Collapsed()
	{
		mm_destroy(mm);
		ptemu_file_put(f);
	}
	void write64(uint64_t a, uint64_t v) { EXPECT_EQ(copy_to_user(mm, a, &v, 8), 0) << std::hex << a; }
	uint64_t read64(uint64_t a)
	{
		uint64_t v = 0;
		EXPECT_EQ(copy_from_user(mm, &v, a, 8), 0) << std::hex << a;
		return v;
	}
	bool huge() { return pmd_trans_huge(pmdp_get_lockless(mm_find_pmd(mm, addr))); }
	// The rights of the leaf mapping a: a huge pmd or a PTE; false when nothing maps it.
	bool leaf_flags(uint64_t a, unsigned *flags)
	{
		const ptemu_arch *arch = m->arch;
		pmd_t *p = mm_find_pmd(mm, a);
		pmd_t v = pmdp_get_lockless(p);
		if (pmd_trans_huge(v)) {
			*flags = arch->pmd_leaf(v.val).flags;
			return true;
		}
		if (pmd_kind(v, nullptr) != PTEMU_ENTRY_TABLE)
			return false;
		pte_t *pte = pte_offset_map(p, a);
		pte_t e = ptep_get(pte);
		pte_unmap(pte);
		if (!arch->pte_present(e.val))
			return false;
		*flags = arch->pte_leaf(e.val).flags;
		return true;
	}
	mm_struct *mm;
	ptemu_file *f;
	uint64_t pmd, page, addr;
};

} // namespace

// mprotect(PROT_READ) of the lower half of a PMD-mapped range splits the VMA, and with it
// the huge pmd (zapped: shmem refaults by PTEs). A write fault on the upper half then
// makes only its own PTE writable: no mapping of the lower half ever grants a store.
TEST_P(UserThp, MprotectOfHalfAHugePmdSplitsItSoTheReadOnlyHalfStaysReadOnly)
{
	Collapsed s(GetParam());
	uint64_t half = s.pmd / 2;
	ASSERT_EQ(do_mprotect(s.mm, s.addr, half, PTEMU_PROT_READ), 0);
	EXPECT_FALSE(s.huge());
	EXPECT_EQ(s.mm->nr_vmas, 2u);
	s.write64(s.addr + half + s.page, 7);
	EXPECT_EQ(s.read64(s.addr + s.page), 0x5000 + s.page);
	for (uint64_t a : {s.addr, s.addr + s.page, s.addr + half - s.page}) {
		unsigned flags = 0;
		if (s.leaf_flags(a, &flags)) {
			EXPECT_FALSE(flags & PTEMU_PROT_WRITE) << std::hex << a << " is writable";
		}
	}
	EXPECT_EQ(ptemu_user_fault(s.mm, s.addr, FAULT_FLAG_WRITE), VM_FAULT_SIGSEGV);
	mm_audit_counters(s.mm);
	EXPECT_EQ(s.violations(), 0u) << s.describe();
}

// With the lower half PROT_NONE, a read fault on the upper half maps it readable: the
// huge pmd that had lost its read right for the whole PMD is gone.
TEST_P(UserThp, ProtNoneLowerHalfLetsAReadOfTheUpperHalfMakeProgress)
{
	Collapsed s(GetParam());
	uint64_t half = s.pmd / 2, up = s.addr + half + 3 * s.page;
	ASSERT_EQ(do_mprotect(s.mm, s.addr, half, PTEMU_PROT_NONE), 0);
	unsigned flags = 0;
	for (int tries = 0; tries < 4 && !(s.leaf_flags(up, &flags) && (flags & PTEMU_PROT_READ)); tries++)
		EXPECT_EQ(ptemu_user_fault(s.mm, up, 0), 0u);
	ASSERT_TRUE(s.leaf_flags(up, &flags));
	EXPECT_TRUE(flags & PTEMU_PROT_READ);
	EXPECT_EQ(s.read64(up), 0x5000 + half + 3 * s.page);
	EXPECT_EQ(ptemu_user_fault(s.mm, s.addr, 0), VM_FAULT_SIGSEGV);
	mm_audit_counters(s.mm);
	EXPECT_EQ(s.violations(), 0u) << s.describe();
}

// mprotect_fixup merges VMAs whose flags are equal again (vma_merge), so the restored
// range is one VMA and MADV_COLLAPSE maps it by PMD once more; MADV_NOHUGEPAGE and
// MADV_HUGEPAGE split and merge alike.
TEST_P(UserThp, RestoredProtectionMergesTheVmasAndTheRangeCollapsesAgain)
{
	Collapsed s(GetParam());
	uint64_t half = s.pmd / 2;
	ASSERT_EQ(do_mprotect(s.mm, s.addr + s.page, half, PTEMU_PROT_READ), 0);
	EXPECT_EQ(s.mm->nr_vmas, 3u);
	EXPECT_FALSE(s.huge());
	ASSERT_EQ(do_mprotect(s.mm, s.addr + s.page, half, kRW), 0);
	EXPECT_EQ(s.mm->nr_vmas, 1u);
	EXPECT_EQ(s.f->nr_i_mmap, 1u);
	ASSERT_EQ(do_madvise(s.mm, s.addr, s.pmd, PTEMU_MADV_NOHUGEPAGE), 0);
	ASSERT_EQ(do_madvise(s.mm, s.addr, s.pmd, PTEMU_MADV_HUGEPAGE), 0);
	EXPECT_EQ(s.mm->nr_vmas, 2u);  // [PMD 0 | PMD 1]: VM_HUGEPAGE differs
	ASSERT_EQ(do_madvise(s.mm, s.addr + s.pmd, s.pmd, PTEMU_MADV_HUGEPAGE), 0);
	EXPECT_EQ(s.mm->nr_vmas, 1u);
	EXPECT_EQ(do_madvise(s.mm, s.addr, s.pmd, PTEMU_MADV_COLLAPSE), 0) << s.describe();
	EXPECT_TRUE(s.huge());
	for (uint64_t off = 0; off < 2 * s.pmd; off += 5 * s.page)
		ASSERT_EQ(s.read64(s.addr + off), 0x5000 + off) << off;
	mm_audit_counters(s.mm);
	EXPECT_EQ(s.violations(), 0u) << s.describe();
}

// madvise's results for MADV_COLLAPSE and MADV_HUGEPAGE as v6.6's do_madvise,
// madvise_walk_vmas and madvise_collapse give them.
TEST_P(UserThp, MadviseResultsAreV66s)
{
	Collapsed s(GetParam());
	// Zero length: nothing to do.
	EXPECT_EQ(do_madvise(s.mm, s.addr, 0, PTEMU_MADV_COLLAPSE), 0);
	EXPECT_EQ(do_madvise(s.mm, s.addr, 0, PTEMU_MADV_HUGEPAGE), 0);
	// Rounded-up start equal to the rounded-down end: 0, nothing done; past it: -EINVAL.
	EXPECT_EQ(do_madvise(s.mm, s.addr + s.pmd + s.page, s.pmd - s.page, PTEMU_MADV_COLLAPSE), 0);
	EXPECT_EQ(do_madvise(s.mm, s.addr + s.pmd + s.page, 2 * s.page, PTEMU_MADV_COLLAPSE), -EINVAL);
	EXPECT_EQ(s.stat(PTEMU_STAT_collapse_attempts), 1u);
	// Unmapped: -ENOMEM; partly unmapped: -ENOMEM, and the mapped part still collapses.
	ASSERT_EQ(do_munmap(s.mm, s.addr + s.pmd, s.pmd), 0);
	EXPECT_EQ(do_madvise(s.mm, s.addr + s.pmd, s.pmd, PTEMU_MADV_COLLAPSE), -ENOMEM);
	EXPECT_EQ(do_madvise(s.mm, s.addr + s.pmd, s.pmd, PTEMU_MADV_HUGEPAGE), -ENOMEM);
	ASSERT_EQ(do_munmap(s.mm, s.addr, s.pmd), 0);
	int64_t b = do_mmap(s.mm, s.addr, s.pmd, kRW, PTEMU_MAP_SHARED | PTEMU_MAP_FIXED, s.f, 0);
	ASSERT_EQ(b, (int64_t)s.addr);
	EXPECT_FALSE(s.huge());
	EXPECT_EQ(s.read64(s.addr + 8 * s.page), 0x5000 + 8 * s.page);
	EXPECT_EQ(do_madvise(s.mm, s.addr, 2 * s.pmd, PTEMU_MADV_COLLAPSE), -ENOMEM);
	EXPECT_TRUE(s.huge());
	// A VMA smaller than one PMD is not eligible, even where the rounding leaves nothing.
	ASSERT_EQ(do_munmap(s.mm, s.addr, s.page), 0);
	EXPECT_EQ(do_madvise(s.mm, s.addr + s.page, s.pmd - s.page, PTEMU_MADV_COLLAPSE), -EINVAL);
	mm_audit_counters(s.mm);
	EXPECT_EQ(s.violations(), 0u) << s.describe();
}

// CONFIG_READ_ONLY_THP_FOR_FS in v6.6 (file_thp_enabled): a regular file collapses only in
// a VM_EXEC mapping; anonymous MADV_COLLAPSE is not modelled and says so, once.
TEST_P(UserThp, RegularFileCollapsesOnlyWhenExecutableAndAnonymousSaysItIsNotModelled)
{
	MachineHolder h(GetParam());
	char *text = nullptr;
	size_t textlen = 0;
	FILE *log = open_memstream(&text, &textlen);
	h.m->log = log;
	mm_struct *mm = mm_alloc(h.m);
	uint64_t pmd = ptemu_pmd_size(h.m->arch);
	ptemu_file *f = ptemu_file_create(h.m, 6, false, 2 * pmd, 2 * pmd);
	int64_t ro = do_mmap(mm, 0, pmd, PTEMU_PROT_READ, PTEMU_MAP_PRIVATE, f, 0);
	int64_t rx = do_mmap(mm, 0, pmd, PTEMU_PROT_READ | PTEMU_PROT_EXEC, PTEMU_MAP_PRIVATE, f, pmd);
	ASSERT_GT(ro, 0);
	ASSERT_GT(rx, 0);
	uint64_t v;
	// Tables down to the pmd: v6.6's set_huge_pmd does not allocate them.
	ASSERT_EQ(copy_from_user(mm, &v, ro, 8), 0);
	ASSERT_EQ(copy_from_user(mm, &v, rx, 8), 0);
	EXPECT_EQ(do_madvise(mm, ro, pmd, PTEMU_MADV_COLLAPSE), -EINVAL);
	EXPECT_EQ(h.stat(PTEMU_STAT_collapses), 0u);
	EXPECT_EQ(do_madvise(mm, rx, pmd, PTEMU_MADV_COLLAPSE), 0) << h.describe();
	EXPECT_TRUE(pmd_trans_huge(pmdp_get_lockless(mm_find_pmd(mm, rx))));
	int64_t anon = do_mmap(mm, 0, 2 * pmd, kRW, PTEMU_MAP_PRIVATE | PTEMU_MAP_ANONYMOUS, nullptr, 0);
	ASSERT_GT(anon, 0);
	EXPECT_EQ(do_madvise(mm, anon, 2 * pmd, PTEMU_MADV_COLLAPSE), -EINVAL);
	EXPECT_EQ(do_madvise(mm, anon, 2 * pmd, PTEMU_MADV_COLLAPSE), -EINVAL);
	fflush(log);
	std::string said(text, textlen);
	size_t at = said.find("MADV_COLLAPSE of anonymous memory is not modelled");
	EXPECT_NE(at, std::string::npos) << said;
	EXPECT_EQ(said.find("MADV_COLLAPSE", at + 1), std::string::npos) << "said twice: " << said;
	mm_destroy(mm);
	ptemu_file_put(f);
	h.m->log = nullptr;
	fclose(log);
	free(text);
	EXPECT_EQ(h.violations(), 0u) << h.describe();
}

namespace {
bool never(void *) { return false; }
} // namespace

// MADV_HUGEPAGE registers the mm while the thread runs, only for a range khugepaged may
// collapse; a wait from an mm it does not know ends at once with -ESRCH.
TEST_P(UserThp, WaitFromAnMmKhugepagedDoesNotKnowEndsAtOnce)
{
	Collapsed s(GetParam());
	khugepaged_tunables t{};
	t.scan_sleep_ms = 1;
	t.should_stop = never;
	mm_struct *other = mm_alloc(s.m);
	EXPECT_EQ(khugepaged_wait_full_scan(other), -ENOSYS);
	ASSERT_EQ(khugepaged_start(s.m, &t), 0);
	int64_t small = do_mmap(other, 0, s.pmd / 2, kRW, PTEMU_MAP_SHARED, s.f, 0);
	ASSERT_GT(small, 0);
	ASSERT_EQ(do_madvise(other, small, s.pmd / 2, PTEMU_MADV_HUGEPAGE), 0);
	ASSERT_EQ(do_madvise(s.mm, s.addr, 2 * s.pmd, PTEMU_MADV_HUGEPAGE), 0);
	EXPECT_EQ(khugepaged_wait_full_scan(other), -ESRCH);  // too small to collapse
	EXPECT_EQ(khugepaged_wait_full_scan(s.mm), 0);
	khugepaged_stop(s.m);
	mm_destroy(other);
	EXPECT_EQ(s.violations(), 0u) << s.describe();
}

INSTANTIATE_TEST_SUITE_P(Models, UserThp, testing::ValuesIn(kModels), ModelName);

// A guest whose first calls are MADV_HUGEPAGE and wait_khugepaged: khugepaged exists
// before any vCPU runs, so the madvise registers the mm and the wait ends, in every run.
TEST(UserThpGuest, FirstMadviseHugepageThenWaitSucceedsEveryRun)
{
	for (const char *arch : {"arm64", "s390"}) {
		for (int run = 0; run < 6; run++) {
			std::string path = workload_image(arch, "khugepaged-wait");
			ptemu_run_config cfg =
				guest_run_config(ptemu_arch_find(arch), "khugepaged-wait", path, 3, 1, 3);
			cfg.seed = (uint64_t)run + 1;
			cfg.khugepaged = true;
			cfg.scan_sleep_ms = 1;
			ptemu_machine *m = nullptr;
			ptemu_run_result res{};
			ASSERT_EQ(ptemu_run(&cfg, &m, &res), PTEMU_RUN_OK) << arch << " run " << run << ": " << res.message;
			for (unsigned p = 0; p < cfg.procs; p++)
				EXPECT_EQ(res.exit_codes[p], 0) << arch << " run " << run << " process " << p;
			EXPECT_EQ(check_violation_count(m), 0u) << arch;
			ptemu_machine_destroy(m);
		}
	}
}
