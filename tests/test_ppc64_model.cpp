// The ppc64-radix model against Linux v6.6 (kernel-spec 2.3): its geometry, the book3s64
// PTE and radix directory entries with the kernel's bit values (Ppc64RadixModel), the
// radix tree walk over hand-built tables in a machine (Ppc64RadixWalk), powerpc's
// DEBUG_VM assert_pte_locked (Ppc64RadixAssertPteLocked), access_error's refusal of a load
// from an exec-only mapping (Ppc64RadixFault), the PTE fragments of
// arch/powerpc/mm/pgtable-frag.c, never handed out twice, their page freed through RCU
// once a fragment of it was deferred (Ppc64Frag), and the three powerpc injections
// (Ppc64FragReuse, Ppc64FragNoPageActive, Ppc64FragV66Destroy).
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include <capstone/capstone.h>
#include <unicorn/unicorn.h>

#include <ptemu/arch.h>
#include <ptemu/check.h>
#include <ptemu/inject.h>
#include <ptemu/machine.h>
#include <ptemu/fault.h>
#include <ptemu/mm.h>
#include <ptemu/mmu_gather.h>
#include <ptemu/pgtable.h>
#include <ptemu/phys.h>
#include <ptemu/rcu.h>
#include <ptemu/stats.h>
#include <ptemu/sync.h>

#include "fixture.h"

#include "../mmu/powerpc/book3s64.h"
#include "../workloads/include/ptemu_abi.h"

namespace {

const ptemu_arch &A = ptemu_arch_ppc64_radix;

enum : unsigned { PGD, PUD, PMD, PTE };
enum : unsigned {
	R = PTEMU_PROT_READ,
	W = PTEMU_PROT_WRITE,
	X = PTEMU_PROT_EXEC,
	Y = PTEMU_PTE_YOUNG,
	D = PTEMU_PTE_DIRTY,
};

// asm/book3s/64/pgtable.h (v6.6), written out rather than taken from the model's header.
constexpr uint64_t K_EXEC = 0x1, K_WRITE = 0x2, K_READ = 0x4, K_PRIVILEGED = 0x8;
constexpr uint64_t K_DIRTY = 0x80, K_ACCESSED = 0x100, K_SOFT_DIRTY = 0x200;
constexpr uint64_t K_SPECIAL = 0x400;
constexpr uint64_t K_INVALID = 0x2000000000000000ull;	// _RPAGE_SW0
constexpr uint64_t K_PTE = 0x4000000000000000ull;
constexpr uint64_t K_PRESENT = 0x8000000000000000ull;
// asm/book3s/64/radix.h, radix-64k.h: RADIX_{PGD,PUD,PMD}_VAL_BITS and the bad bits.
constexpr uint64_t K_PGD_VAL_BITS = K_PRESENT | 9, K_PUD_VAL_BITS = K_PRESENT | 9;
constexpr uint64_t K_PMD_VAL_BITS = K_PRESENT | 5;
constexpr uint64_t K_PMD_BAD_BITS = 0x60000000000000e0ull;

constexpr uint64_t SZ_64K = 1ull << 16, SZ_2M = 1ull << 21, SZ_1G = 1ull << 30;

static_assert(PPC_PAGE_PRESENT == K_PRESENT && PPC_PAGE_PTE == K_PTE &&
		      PPC_PAGE_INVALID == K_INVALID && PPC_PAGE_ACCESSED == K_ACCESSED &&
		      PPC_PAGE_DIRTY == K_DIRTY && PPC_PAGE_PRIVILEGED == K_PRIVILEGED,
	      "the model's names for the kernel's bits");

uint64_t mk_pte(uint64_t pfn, unsigned flags)
{
	return A.mk_pte(ptemu_leaf{pfn, flags});
}

std::string describe(const ptemu_machine *m)
{
	size_t n = 0;
	const ptemu_violation *v = check_violations(m, &n);
	std::string s;
	for (size_t i = 0; i < n && i < 8; i++)
		s += std::string(ptemu_violation_name(v[i].kind)) + ": " + v[i].message + "\n";
	return s;
}

ptemu_machine *make_machine(ptemu_injection inject)
{
	ptemu_machine_config cfg{};
	cfg.arch = &A;
	cfg.phys_bytes = 256ull << 20;
	cfg.check_mode = PTEMU_CHECK_CONTINUE;
	cfg.inject = inject;
	char err[256] = "";
	ptemu_machine *m = ptemu_machine_create(&cfg, err, sizeof(err));
	EXPECT_NE(m, nullptr) << err;
	return m;
}

} // namespace

// ---- geometry and encodings -------------------------------------------------------------

TEST(Ppc64RadixModel, Geometry)
{
	EXPECT_EQ(ptemu_arch_find("ppc64-radix"), &A);
	EXPECT_STREQ(A.name, "ppc64-radix");
	EXPECT_EQ(A.page_shift, 16u);
	EXPECT_EQ(A.va_bits, 52u);
	ASSERT_EQ(A.nr_levels, 4u);
	// RADIX_{PGD,PUD,PMD,PTE}_INDEX_SIZE 13, 9, 9, 5 with 64 KiB pages.
	const unsigned shift[] = {39, 30, 21, 16}, bits[] = {13, 9, 9, 5};
	const unsigned bytes[] = {65536, 4096, 4096, 256};
	for (unsigned l = 0; l < 4; l++) {
		EXPECT_EQ(A.level_shift[l], shift[l]) << l;
		EXPECT_EQ(A.level_bits[l], bits[l]) << l;
		EXPECT_EQ(A.table_bytes[l], bytes[l]) << l;
		EXPECT_EQ(ptemu_entry_size(&A, l), 8u) << l;
	}
	EXPECT_TRUE(A.big_endian);
	EXPECT_EQ(A.pmd_leaf_shift, 21u);
	EXPECT_EQ(ptemu_pmd_size(&A), SZ_2M);
	EXPECT_EQ(ptemu_ptes_per_table(&A), 32u);
	// PTE_FRAG_SIZE_SHIFT 8 (RADIX_PTE_INDEX_SIZE + 3), PTE_FRAG_NR 256.
	EXPECT_EQ(A.pte_table_bytes, 256u);
	EXPECT_EQ(A.tables_per_page, 256u);
	EXPECT_EQ(A.pte_alloc_one, &pte_fragment_alloc);
	EXPECT_EQ(A.arch_exit_mmap, &pte_frag_destroy);
	EXPECT_TRUE(A.rcu_table_free);
	EXPECT_TRUE(A.flush_waits_for_walks);
	EXPECT_FALSE(A.walker_is_rcu_reader);
	EXPECT_EQ(A.retract_flush, PTEMU_RETRACT_FLUSH_RANGE);
	EXPECT_TRUE(A.pte_update_asserts_locked);
	EXPECT_FALSE(A.pmd_lock_is_page_table_lock);
	EXPECT_FALSE(A.pte_lock_is_page_table_lock);
	EXPECT_TRUE(ptemu_injection_applies(INJECT_PPC_V66_FRAG_DESTROY, &A));
	EXPECT_TRUE(ptemu_injection_applies(INJECT_PPC_FRAG_REUSE, &A));
	EXPECT_TRUE(ptemu_injection_applies(INJECT_PPC_NO_PAGE_ACTIVE, &A));
	EXPECT_FALSE(ptemu_injection_applies(INJECT_PPC_FRAG_REUSE, ptemu_arch_find("arm64")));
	EXPECT_EQ(A.isa.uc_arch, (int)UC_ARCH_PPC);
	EXPECT_EQ(A.isa.uc_mode, (int)(UC_MODE_PPC64 | UC_MODE_BIG_ENDIAN));
	EXPECT_EQ(A.isa.cs_arch, (int)CS_ARCH_PPC);
	EXPECT_EQ(A.isa.cs_mode, (int)(CS_MODE_64 | CS_MODE_BIG_ENDIAN));
	EXPECT_EQ(A.isa.elf_machine, 21u);	// EM_PPC64
	EXPECT_EQ(A.isa.elf_class, 64u);
	EXPECT_EQ(A.isa.syscall_intno, 8) << "POWERPC_EXCP_SYSCALL";
	EXPECT_EQ(A.isa.syscall_insn_bytes, 4u);
	EXPECT_TRUE(A.isa.pc_after_syscall);
}

// pfn_pte | _PAGE_PTE, protection_map's _PAGE_BASE (present, accessed) and the pte_mk*
// helpers: pte_mkwrite sets _PAGE_RW, pte_mkdirty _PAGE_DIRTY | _PAGE_SOFT_DIRTY.
TEST(Ppc64RadixModel, MkPteUsesTheKernelBits)
{
	const uint64_t pfn = 0x12345, base = (pfn << 16) | K_PTE | K_PRESENT;
	EXPECT_EQ(mk_pte(pfn, R | W | Y | D), (pfn << 16) | 0x4000000000000000ull | 0x8000000000000000ull |
						      0x4 | 0x2 | 0x100 | 0x80 | 0x200);
	struct {
		unsigned flags;
		uint64_t pte;
	} cases[] = {
		{R, base | K_READ},
		{R | Y, base | K_READ | K_ACCESSED},
		{W | Y, base | K_READ | K_WRITE | K_ACCESSED},	// write implies read
		{R | X | Y, base | K_READ | K_EXEC | K_ACCESSED},
		{X | Y, base | K_EXEC | K_ACCESSED},	// radix PAGE_EXECONLY
		{R | W | X | Y | D, base | K_READ | K_WRITE | K_EXEC | K_ACCESSED | K_DIRTY | K_SOFT_DIRTY},
		{R | D, base | K_READ | K_DIRTY | K_SOFT_DIRTY},
		{0, base | K_PRIVILEGED},		// PAGE_NONE
		{Y, base | K_PRIVILEGED | K_ACCESSED},	// PAGE_NONE as protection_map has it
	};
	for (const auto &c : cases)
		EXPECT_EQ(mk_pte(pfn, c.flags), c.pte) << std::hex << "flags " << c.flags;
	// The real page number is bits 52:16 (PTE_RPN_MASK, _PAGE_PA_MAX 53).
	const uint64_t top = (1ull << 37) - 1;
	EXPECT_EQ(mk_pte(top, R | Y) & 0x001fffffffff0000ull, top << 16);
	EXPECT_EQ(A.pte_leaf(mk_pte(top, R | Y)).pfn, top);
}

// PAGE_NONE is _PAGE_BASE | _PAGE_PRIVILEGED: present to Linux (pte_present, not pte_none),
// inaccessible to user space.
TEST(Ppc64RadixModel, PageNoneIsPrivilegedAndPresent)
{
	for (unsigned flags : {0u, (unsigned)Y, (unsigned)D, (unsigned)(Y | D)}) {
		uint64_t pte = mk_pte(0x777, flags);
		EXPECT_EQ(pte & K_PRIVILEGED, K_PRIVILEGED) << flags;
		EXPECT_EQ(pte & (K_READ | K_WRITE | K_EXEC), 0u) << flags;
		EXPECT_TRUE(A.pte_present(pte)) << flags;
		EXPECT_FALSE(A.pte_none(pte)) << flags;
		EXPECT_EQ(A.classify(PTE, pte, nullptr), PTEMU_ENTRY_LEAF) << flags;
	}
	for (unsigned flags : {(unsigned)R, (unsigned)W, (unsigned)X})
		EXPECT_EQ(mk_pte(0x777, flags) & K_PRIVILEGED, 0u) << flags;
	// The kernel's own PAGE_NONE value decodes as no access.
	ptemu_leaf l = A.pte_leaf((0x777ull << 16) | K_PTE | K_PRESENT | K_ACCESSED | K_PRIVILEGED);
	EXPECT_EQ(l.pfn, 0x777u);
	EXPECT_EQ(l.flags, (unsigned)Y);
}

TEST(Ppc64RadixModel, PteLeafRoundTripsEveryFlagCombination)
{
	const uint64_t pfn = 0xabcdef;
	for (unsigned flags = 0; flags < 32; flags++) {
		uint64_t pte = mk_pte(pfn, flags);
		ptemu_leaf l = A.pte_leaf(pte);
		unsigned want = flags & W ? flags | R : flags;	// write implies read

		EXPECT_EQ(l.pfn, pfn) << flags;
		EXPECT_EQ(l.flags, want) << flags;
		EXPECT_TRUE(A.pte_present(pte)) << flags;
		EXPECT_FALSE(A.pte_none(pte)) << flags;
		EXPECT_EQ(A.mk_pte(l), pte) << flags;
		// A huge pmd is the same PTE in a pmd slot (pmd_mkhuge keeps _PAGE_PTE).
		uint64_t pmd = A.mk_pmd_leaf(ptemu_leaf{pfn & ~31ull, flags});
		EXPECT_EQ(pmd, mk_pte(pfn & ~31ull, flags)) << flags;
		EXPECT_EQ(A.classify(PMD, pmd, nullptr), PTEMU_ENTRY_LEAF) << flags;
		EXPECT_EQ(A.pmd_leaf(pmd).flags, want) << flags;
	}
	// Software bits the model does not name are not mistaken for anything.
	ptemu_leaf l = A.pte_leaf(mk_pte(pfn, R | Y) | K_SPECIAL);
	EXPECT_EQ(l.pfn, pfn);
	EXPECT_EQ(l.flags, R | Y);
}

// radix__pte_none: (pte & ~RADIX_PTE_NONE_MASK) == 0, the mask being _PAGE_DIRTY |
// _PAGE_ACCESSED, which the MMU may set in a PTE being cleared.
TEST(Ppc64RadixModel, PteNoneIgnoresOnlyReferenceAndChange)
{
	EXPECT_TRUE(A.pte_none(0));
	EXPECT_TRUE(A.pte_none(0x100));
	EXPECT_TRUE(A.pte_none(0x80));
	EXPECT_TRUE(A.pte_none(0x180));
	for (unsigned bit = 0; bit < 64; bit++) {
		uint64_t v = 1ull << bit;
		EXPECT_EQ(A.pte_none(v), v == K_DIRTY || v == K_ACCESSED) << "bit " << bit;
		EXPECT_EQ(A.pte_none(v | K_DIRTY | K_ACCESSED), v == K_DIRTY || v == K_ACCESSED)
			<< "bit " << bit;
	}
	EXPECT_FALSE(A.pte_none(K_SOFT_DIRTY));
	EXPECT_FALSE(A.pte_none(K_PTE));
	EXPECT_EQ(A.none_entry(PTE), 0u);
}

// pte_present: pte_hw_valid (PRESENT | PTE), or _PAGE_INVALID | _PAGE_PTE, the state
// ptep_set_access_flags leaves a PTE in while it changes it.
TEST(Ppc64RadixModel, PtePresent)
{
	const uint64_t pa = 0x4321ull << 16;
	EXPECT_TRUE(A.pte_present(pa | K_PRESENT | K_PTE));
	EXPECT_TRUE(A.pte_present(pa | K_INVALID | K_PTE | K_READ | K_ACCESSED));
	EXPECT_FALSE(A.pte_present(pa | K_PTE));	// a swap entry: _PAGE_PTE and nothing else
	EXPECT_FALSE(A.pte_present((0x1234ull << 8) | K_PTE | 0x1e));
	EXPECT_FALSE(A.pte_present(pa | K_PRESENT));	// a directory pointer, not a PTE
	EXPECT_FALSE(A.pte_present(pa | K_INVALID));
	EXPECT_FALSE(A.pte_present(0));
	EXPECT_FALSE(A.pte_present(K_ACCESSED | K_DIRTY));
}

// pgd_populate, pud_populate, pmd_populate: the next table's address | *_VAL_BITS, which are
// _PAGE_PRESENT | the next level's index size (the hardware's NLS).
TEST(Ppc64RadixModel, TableEntriesCarryTheNextLevelSize)
{
	EXPECT_EQ(A.mk_table(PGD, 0x12340000), 0x12340000 | K_PGD_VAL_BITS);
	EXPECT_EQ(A.mk_table(PUD, 0x12340000), 0x12340000 | K_PUD_VAL_BITS);
	EXPECT_EQ(A.mk_table(PMD, 0x12340000), 0x12340000 | K_PMD_VAL_BITS);
	EXPECT_EQ(A.mk_table(PGD, 0x12340000), 0x8000000012340009ull);
	EXPECT_EQ(A.mk_table(PUD, 0x5670000), 0x8000000005670009ull);
	EXPECT_EQ(A.mk_table(PMD, 0x5670300), 0x8000000005670305ull);	// a 256-byte fragment
	uint64_t t = 0;
	for (unsigned l : {PGD, PUD, PMD}) {
		t = 0;
		EXPECT_EQ(A.classify(l, A.mk_table(l, 0x5670300), &t), PTEMU_ENTRY_TABLE) << l;
		EXPECT_EQ(t, 0x5670300u) << l;
	}
}

TEST(Ppc64RadixModel, Classify)
{
	const uint64_t tbl = 0x5670300;
	for (unsigned l = 0; l < 4; l++)
		EXPECT_EQ(A.classify(l, 0, nullptr), PTEMU_ENTRY_NONE) << l;
	uint64_t t = 0;
	EXPECT_EQ(A.classify(PMD, tbl | K_PMD_VAL_BITS, &t), PTEMU_ENTRY_TABLE);
	EXPECT_EQ(t, tbl);
	// A huge pmd (pmd_trans_huge: _PAGE_PTE), also while invalidated for a change.
	const uint64_t leaf = (0x40ull << 16) | K_PTE | K_PRESENT | K_READ | K_ACCESSED;
	EXPECT_EQ(A.classify(PMD, leaf, nullptr), PTEMU_ENTRY_LEAF);
	EXPECT_EQ(A.classify(PMD, (leaf & ~K_PRESENT) | K_INVALID, nullptr), PTEMU_ENTRY_LEAF);
	EXPECT_EQ(A.classify(PUD, (0x4000ull << 16) | K_PTE | K_PRESENT | K_READ, nullptr),
		  PTEMU_ENTRY_LEAF);	// a 1 GiB leaf
	// _PAGE_PTE without present or invalid: a swap entry, THP migration at the pmd.
	EXPECT_EQ(A.classify(PMD, (0x40ull << 16) | K_PTE, nullptr), PTEMU_ENTRY_MIGRATION);
	// radix__pmd_bad: any of RADIX_PMD_BAD_BITS in a pointer.
	for (uint64_t bad : {uint64_t(0x20), uint64_t(0x40), uint64_t(0x80), uint64_t(0xe0), K_INVALID})
		for (unsigned l : {PGD, PUD, PMD})
			EXPECT_EQ(A.classify(l, A.mk_table(l, tbl) | bad, nullptr), PTEMU_ENTRY_BAD)
				<< std::hex << bad << " level " << l;
	EXPECT_EQ(K_PMD_BAD_BITS & ~K_PTE, 0x20000000000000e0ull);
	// No leaf in the PGD: radix__pgd_bad has _PAGE_PTE in its bad bits.
	EXPECT_EQ(A.classify(PGD, leaf, nullptr), PTEMU_ENTRY_BAD);
}

// ---- the radix walk over hand-built tables ---------------------------------------------------

namespace {

class Ppc64RadixWalk : public testing::Test {
      protected:
	static constexpr unsigned kIdx[4] = {0x1abc, 0x155, 0xaa, 0x13};
	static constexpr uint64_t kVa = (0x1abcull << 39) | (0x155ull << 30) | (0xaaull << 21) |
					(0x13ull << 16) | 0x1234;
	using Read = std::tuple<unsigned, uint64_t, unsigned>;

	void SetUp() override
	{
		m = make_machine(INJECT_NONE);
		ASSERT_NE(m, nullptr);
		ASSERT_NE(ptemu_thread_register(m, "test"), nullptr);
		mm = mm_alloc(m);
		ASSERT_NE(mm, nullptr);
		table[PGD] = ptemu_upper_table_alloc(m, PGD);
		table[PUD] = ptemu_upper_table_alloc(m, PUD);
		table[PMD] = ptemu_upper_table_alloc(m, PMD);
		table[PTE] = pte_alloc_one(mm);
		for (uint64_t t : table)
			ASSERT_NE(t, 0u);
		// Linux's directory entries, as the kernel's *_populate write them.
		set(PGD, table[PUD] | K_PGD_VAL_BITS);
		set(PUD, table[PMD] | K_PUD_VAL_BITS);
		set(PMD, table[PTE] | K_PMD_VAL_BITS);
		ptemu_checked_walk_ctx(m, &inner);
		ctx.read_entry = counting_read;
		ctx.opaque = this;
		ctx.mm = nullptr;
	}

	void TearDown() override
	{
		if (!m)
			return;
		if (table[PTE])
			pte_free(mm, table[PTE]);
		for (unsigned l : {PGD, PUD, PMD})
			if (table[l])
				ptemu_upper_table_free(m, table[l], l);
		if (mm)
			mm_destroy(mm);
		rcu_barrier();
		EXPECT_EQ(check_violation_count(m), 0u) << describe(m);
		ptemu_thread_unregister();
		ptemu_machine_destroy(m);
	}

	// Entry kIdx[level] of the walk's table at that level.
	void set(unsigned level, uint64_t v)
	{
		uint64_t pa = table[level] + 8ull * kIdx[level];
		if (level == PTE)
			ptemu_pte_store(m, pa, v);
		else
			ptemu_entry_store(m, pa, v);
	}
	ptemu_walk_fault walk(uint64_t va, ptemu_access acc)
	{
		reads.clear();
		out = ptemu_walk_result{};
		ptemu_walk_fault f = A.hw_walk(&ctx, table[PGD], va, acc, &out);
		EXPECT_EQ(f, out.fault);
		return f;
	}

	ptemu_machine *m = nullptr;
	mm_struct *mm = nullptr;
	uint64_t table[4] = {};
	ptemu_walk_result out{};
	std::vector<Read> reads;

      private:
	static uint64_t counting_read(const ptemu_walk_ctx *c, unsigned level, uint64_t table_pa,
				      unsigned index)
	{
		auto *self = static_cast<Ppc64RadixWalk *>(c->opaque);
		self->reads.emplace_back(level, table_pa, index);
		return self->inner.read_entry(&self->inner, level, table_pa, index);
	}

	ptemu_walk_ctx inner{};
	ptemu_walk_ctx ctx{};
};

} // namespace

TEST_F(Ppc64RadixWalk, SixtyFourKiBPage)
{
	set(PTE, (0x4321ull << 16) | K_PTE | K_PRESENT | K_READ | K_WRITE | K_ACCESSED | K_DIRTY);
	ASSERT_EQ(walk(kVa, PTEMU_ACCESS_WRITE), PTEMU_WALK_OK);
	EXPECT_EQ(out.level, PTE);
	EXPECT_EQ(out.paddr, (0x4321ull << 16) | 0x1234);
	EXPECT_EQ(out.leaf_size, SZ_64K);
	EXPECT_EQ(out.perms, R | W);
	for (unsigned l = 0; l < 4; l++)
		EXPECT_EQ(out.table_pa[l], table[l]) << l;
	const std::vector<Read> want = {{PGD, table[PGD], kIdx[PGD]},
					{PUD, table[PUD], kIdx[PUD]},
					{PMD, table[PMD], kIdx[PMD]},
					{PTE, table[PTE], kIdx[PTE]}};
	EXPECT_EQ(reads, want);
	// The last byte of the page, and the same page through mk_pte.
	ASSERT_EQ(walk((kVa & ~(SZ_64K - 1)) | 0xfff8, PTEMU_ACCESS_READ), PTEMU_WALK_OK);
	EXPECT_EQ(out.paddr, (0x4321ull << 16) | 0xfff8);
	set(PTE, mk_pte(0x4321, R | W | Y | D));
	ASSERT_EQ(walk(kVa, PTEMU_ACCESS_WRITE), PTEMU_WALK_OK);
	EXPECT_EQ(out.paddr, (0x4321ull << 16) | 0x1234);
}

TEST_F(Ppc64RadixWalk, TwoMiBPmdLeaf)
{
	const uint64_t pfn = 0x40;	// pa 4 MiB, 2 MiB aligned
	set(PMD, (pfn << 16) | K_PTE | K_PRESENT | K_READ | K_WRITE | K_EXEC | K_ACCESSED | K_DIRTY);
	ASSERT_EQ(walk(kVa, PTEMU_ACCESS_FETCH), PTEMU_WALK_OK);
	EXPECT_EQ(out.level, PMD);
	EXPECT_EQ(out.leaf_size, SZ_2M);
	EXPECT_EQ(out.paddr, (pfn << 16) | (kVa & (SZ_2M - 1)));
	EXPECT_EQ(out.perms, R | W | X);
	EXPECT_EQ(reads.size(), 3u) << "the PTE table is not read";
	set(PMD, A.mk_pmd_leaf(ptemu_leaf{pfn, R | Y}));
	ASSERT_EQ(walk(kVa | (SZ_2M - 8), PTEMU_ACCESS_READ), PTEMU_WALK_OK);
	EXPECT_EQ(out.paddr, (pfn << 16) | ((kVa | (SZ_2M - 8)) & (SZ_2M - 1)));
	EXPECT_EQ(walk(kVa, PTEMU_ACCESS_WRITE), PTEMU_WALK_PERMISSION);
	EXPECT_EQ(out.level, PMD);
}

TEST_F(Ppc64RadixWalk, OneGiBPudLeaf)
{
	const uint64_t pfn = 0x4000;	// pa 1 GiB, 1 GiB aligned
	set(PUD, (pfn << 16) | K_PTE | K_PRESENT | K_READ | K_ACCESSED);
	ASSERT_EQ(walk(kVa, PTEMU_ACCESS_READ), PTEMU_WALK_OK);
	EXPECT_EQ(out.level, PUD);
	EXPECT_EQ(out.leaf_size, SZ_1G);
	EXPECT_EQ(out.paddr, (pfn << 16) | (kVa & (SZ_1G - 1)));
	EXPECT_EQ(reads.size(), 2u);
}

TEST_F(Ppc64RadixWalk, MissingEntryIsTranslationAtEachLevel)
{
	const uint64_t pte = mk_pte(0x4321, R | Y);
	const uint64_t linked[4] = {table[PUD] | K_PGD_VAL_BITS, table[PMD] | K_PUD_VAL_BITS,
				    table[PTE] | K_PMD_VAL_BITS, pte};
	set(PTE, pte);
	ASSERT_EQ(walk(kVa, PTEMU_ACCESS_READ), PTEMU_WALK_OK);
	for (unsigned l = 0; l < 4; l++) {
		// An empty slot, and an entry without _PAGE_PRESENT (a PTE: invalidated by
		// ptep_set_access_flags, or a swap entry).
		const uint64_t absent[] = {0, linked[l] & ~K_PRESENT,
					   (linked[l] & ~K_PRESENT) | (l == PTE ? K_INVALID : 0)};
		for (uint64_t v : absent) {
			set(l, v);
			EXPECT_EQ(walk(kVa, PTEMU_ACCESS_READ), PTEMU_WALK_TRANSLATION)
				<< "level " << l << std::hex << " entry " << v;
			EXPECT_EQ(out.level, l);
			EXPECT_EQ(reads.size(), l + 1);
			EXPECT_EQ(out.table_pa[l], table[l]);
		}
		set(l, linked[l]);
	}
	ASSERT_EQ(walk(kVa, PTEMU_ACCESS_READ), PTEMU_WALK_OK);
}

// A directory entry's NLS must size the next table as the geometry does (9, 9, 5), or the
// walk would index past the table; a pointer where the PTE must be, and a leaf in the
// PGD, are as wrong.
TEST_F(Ppc64RadixWalk, WrongNextLevelSizeIsBadEntry)
{
	set(PTE, mk_pte(0x4321, R | Y));
	struct {
		unsigned level;
		uint64_t entry;
	} cases[] = {
		{PGD, table[PUD] | K_PRESENT | 13},
		{PGD, table[PUD] | K_PRESENT | 5},
		{PGD, table[PUD] | K_PRESENT},
		{PUD, table[PMD] | K_PRESENT | 5},
		{PUD, table[PMD] | K_PRESENT | 13},
		{PMD, table[PTE] | K_PRESENT | 9},
		{PMD, table[PTE] | K_PRESENT | 0},
		{PTE, table[PTE] | K_PMD_VAL_BITS},			// a pointer in a PTE
		{PGD, (0x4000ull << 16) | K_PTE | K_PRESENT | K_READ | K_ACCESSED},	// leaf
	};
	const uint64_t linked[4] = {table[PUD] | K_PGD_VAL_BITS, table[PMD] | K_PUD_VAL_BITS,
				    table[PTE] | K_PMD_VAL_BITS, mk_pte(0x4321, R | Y)};
	for (const auto &c : cases) {
		set(c.level, c.entry);
		EXPECT_EQ(walk(kVa, PTEMU_ACCESS_READ), PTEMU_WALK_BAD_ENTRY) << std::hex << c.entry;
		EXPECT_EQ(out.level, c.level) << std::hex << c.entry;
		set(c.level, linked[c.level]);
	}
	EXPECT_EQ(walk(kVa, PTEMU_ACCESS_READ), PTEMU_WALK_OK);
}

// _PAGE_PRIVILEGED (EAA privilege): a problem-state access is refused whatever else the
// leaf allows. PAGE_NONE is such a leaf.
TEST_F(Ppc64RadixWalk, PrivilegedLeafIsPermission)
{
	const uint64_t page_none = (0x4321ull << 16) | K_PTE | K_PRESENT | K_ACCESSED | K_PRIVILEGED;
	set(PTE, page_none);
	for (ptemu_access acc : {PTEMU_ACCESS_READ, PTEMU_ACCESS_WRITE, PTEMU_ACCESS_FETCH}) {
		EXPECT_EQ(walk(kVa, acc), PTEMU_WALK_PERMISSION) << acc;
		EXPECT_EQ(out.level, PTE);
		EXPECT_EQ(out.perms, 0u);
	}
	set(PTE, mk_pte(0x4321, Y));
	EXPECT_EQ(walk(kVa, PTEMU_ACCESS_READ), PTEMU_WALK_PERMISSION);
	// A kernel page (PAGE_KERNEL_X): privileged, with every access bit.
	set(PTE, page_none | K_READ | K_WRITE | K_EXEC | K_DIRTY);
	EXPECT_EQ(walk(kVa, PTEMU_ACCESS_READ), PTEMU_WALK_PERMISSION);
	EXPECT_EQ(out.perms, 0u);
	// Huge too.
	set(PMD, (0x40ull << 16) | K_PTE | K_PRESENT | K_ACCESSED | K_PRIVILEGED);
	EXPECT_EQ(walk(kVa, PTEMU_ACCESS_READ), PTEMU_WALK_PERMISSION);
	EXPECT_EQ(out.level, PMD);
}

// The MMU would set R itself; the model leaves it to the fault path (the departure in
// radix.c's header), as ACCESS_FLAG.
TEST_F(Ppc64RadixWalk, LeafWithoutAccessedIsAccessFlag)
{
	set(PTE, mk_pte(0x4321, R | W | D));
	for (ptemu_access acc : {PTEMU_ACCESS_READ, PTEMU_ACCESS_WRITE}) {
		EXPECT_EQ(walk(kVa, acc), PTEMU_WALK_ACCESS_FLAG) << acc;
		EXPECT_EQ(out.level, PTE);
	}
	set(PTE, mk_pte(0x4321, R | W | Y | D));
	EXPECT_EQ(walk(kVa, PTEMU_ACCESS_READ), PTEMU_WALK_OK);
}

// C (_PAGE_DIRTY) clear: a store would set it; the model's walker refuses it so that the
// fault path's ptep_set_access_flags does.
TEST_F(Ppc64RadixWalk, StoreToAWritableCleanPageIsRefused)
{
	set(PTE, mk_pte(0x4321, R | W | Y));
	ASSERT_EQ(walk(kVa, PTEMU_ACCESS_READ), PTEMU_WALK_OK);
	EXPECT_EQ(out.perms, (unsigned)R) << "a clean page's translation must not allow stores";
	EXPECT_EQ(walk(kVa, PTEMU_ACCESS_WRITE), PTEMU_WALK_PERMISSION);
	EXPECT_EQ(out.perms & W, 0u);
	EXPECT_EQ(out.level, PTE);
	// Read-only and dirty: still no store.
	set(PTE, mk_pte(0x4321, R | Y | D));
	EXPECT_EQ(walk(kVa, PTEMU_ACCESS_WRITE), PTEMU_WALK_PERMISSION);
	set(PTE, mk_pte(0x4321, R | W | Y | D));
	EXPECT_EQ(walk(kVa, PTEMU_ACCESS_WRITE), PTEMU_WALK_OK);
	EXPECT_EQ(out.perms, R | W);
}

TEST_F(Ppc64RadixWalk, FetchNeedsExec)
{
	set(PTE, mk_pte(0x4321, R | W | Y | D));
	EXPECT_EQ(walk(kVa, PTEMU_ACCESS_FETCH), PTEMU_WALK_PERMISSION);
	EXPECT_EQ(out.perms & X, 0u);
	set(PTE, mk_pte(0x4321, R | X | Y));
	ASSERT_EQ(walk(kVa, PTEMU_ACCESS_FETCH), PTEMU_WALK_OK);
	EXPECT_EQ(out.perms, R | X);
	// Execute-only (radix PAGE_EXECONLY): fetches only.
	set(PTE, mk_pte(0x4321, X | Y));
	ASSERT_EQ(walk(kVa, PTEMU_ACCESS_FETCH), PTEMU_WALK_OK);
	EXPECT_EQ(out.perms, (unsigned)X);
	EXPECT_EQ(walk(kVa, PTEMU_ACCESS_READ), PTEMU_WALK_PERMISSION);
}

// Quadrant 0 with a 52-bit RTS: nothing at or above 2^52 is walked.
TEST_F(Ppc64RadixWalk, AddressAtOrAbove2To52IsTranslation)
{
	set(PTE, mk_pte(0x4321, R | Y));
	for (uint64_t va : {1ull << 52, kVa | (1ull << 52), kVa | (1ull << 63), ~0ull}) {
		EXPECT_EQ(walk(va, PTEMU_ACCESS_READ), PTEMU_WALK_TRANSLATION) << std::hex << va;
		EXPECT_EQ(out.level, 0u);
		EXPECT_TRUE(reads.empty()) << std::hex << va;
	}
	// Just below: walked (index 0x1fff of the PGD, empty).
	EXPECT_EQ(walk((1ull << 52) - 1, PTEMU_ACCESS_READ), PTEMU_WALK_TRANSLATION);
	ASSERT_EQ(reads.size(), 1u);
	EXPECT_EQ(std::get<2>(reads[0]), 0x1fffu);
}

// ---- assert_pte_locked -----------------------------------------------------------------------

namespace {

uint64_t assert_reports(const ptemu_machine *m)
{
	size_t n = 0;
	const ptemu_violation *v = check_violations(m, &n);
	uint64_t c = 0;
	for (size_t i = 0; i < n; i++)
		if (v[i].kind == VIOLATION_PTL_NOT_HELD && !strncmp(v[i].message, "assert_pte_locked", 17))
			c++;
	return c;
}

} // namespace

TEST(Ppc64RadixAssertPteLocked, PmdNoneReturnsWithoutAReport)
{
	ptemu_test::MmHolder h("ppc64-radix");
	ASSERT_NE(h.pmd, nullptr);
	assert_pte_locked(h.mm, h.addr);
	EXPECT_EQ(h.violations(), 0u) << h.describe();
}

TEST(Ppc64RadixAssertPteLocked, UnlockedPtlIsReported)
{
	ptemu_test::MmHolder h("ppc64-radix");
	h.install_table();
	assert_pte_locked(h.mm, h.addr);
	EXPECT_EQ(h.count(VIOLATION_PTL_NOT_HELD), 1u) << h.describe();
	EXPECT_EQ(h.violations(), 1u) << h.describe();
	EXPECT_EQ(h.rcu_depth(), 0) << "pte_offset_map_nolock's map was undone";
}

TEST(Ppc64RadixAssertPteLocked, HeldPtlIsClean)
{
	ptemu_test::MmHolder h("ppc64-radix");
	h.install_table();
	ptemu_spinlock *ptl = nullptr;
	pte_t *pte = pte_offset_map_lock(h.mm, h.pmd, h.addr, &ptl);
	ASSERT_NE(pte, nullptr);
	assert_pte_locked(h.mm, h.addr);
	// The ptl is the fragment page's: the same for another address of the table.
	assert_pte_locked(h.mm, h.addr + 3 * SZ_64K);
	pte_unmap_unlock(pte, ptl);
	EXPECT_EQ(h.violations(), 0u) << h.describe();
}

// pte_update asserts on every PTE it changes (ptep_get_and_clear): clean under the ptl.
TEST(Ppc64RadixAssertPteLocked, PtepGetAndClearAssertsTheLock)
{
	ptemu_test::MmHolder h("ppc64-radix");
	h.install_table();
	ptemu_spinlock *ptl = nullptr;
	pte_t *pte = pte_offset_map_lock(h.mm, h.pmd, h.addr, &ptl);
	ASSERT_NE(pte, nullptr);
	(void)ptep_get_and_clear(h.mm, h.addr, pte);
	pte_unmap_unlock(pte, ptl);
	EXPECT_EQ(h.violations(), 0u) << h.describe();
	pte = pte_offset_map(h.pmd, h.addr);
	ASSERT_NE(pte, nullptr);
	(void)ptep_get_and_clear(h.mm, h.addr, pte);
	pte_unmap(pte);
	EXPECT_EQ(assert_reports(h.m), 1u) << h.describe();
}

// No table above the address at all: the kernel's BUG_ON(pud_none), reported.
TEST(Ppc64RadixAssertPteLocked, MissingUpperLevelIsReported)
{
	ptemu_test::MmHolder h("ppc64-radix");
	assert_pte_locked(h.mm, 1ull << 45);
	EXPECT_EQ(assert_reports(h.m), 1u) << h.describe();
}

// ---- the fault path's access check ------------------------------------------------------------

// access_error (arch/powerpc/mm/fault.c, v6.6): "a non exec access on a VM_EXEC only
// mapping is invalid", so a load from a PROT_EXEC-only mapping is SIGSEGV on radix, which
// maps it PAGE_EXECONLY (vm_get_page_prot), a PTE no load can use. A fetch, and a load
// from anything readable or writable, are served; PROT_NONE is SIGSEGV. (Served, the load
// would fault forever: the walk refuses it whatever the fault does.)
TEST(Ppc64RadixFault, LoadFromAnExecOnlyMappingIsSigsegv)
{
	ptemu_test::MmHolder h("ppc64-radix");
	const unsigned anon = PTEMU_MAP_PRIVATE | PTEMU_MAP_ANONYMOUS;
	int64_t x = do_mmap(h.mm, 0, 2 * SZ_64K, PTEMU_PROT_EXEC, anon, nullptr, 0);
	int64_t rx = do_mmap(h.mm, 0, SZ_64K, PTEMU_PROT_READ | PTEMU_PROT_EXEC, anon, nullptr, 0);
	int64_t wo = do_mmap(h.mm, 0, SZ_64K, PTEMU_PROT_WRITE, anon, nullptr, 0);
	int64_t none = do_mmap(h.mm, 0, SZ_64K, PTEMU_PROT_NONE, anon, nullptr, 0);
	ASSERT_GT(x, 0);
	ASSERT_GT(rx, 0);
	ASSERT_GT(wo, 0);
	ASSERT_GT(none, 0);

	EXPECT_EQ(ptemu_user_fault(h.mm, x, FAULT_FLAG_INSTRUCTION), 0u);
	ptemu_walk_ctx ctx;
	ptemu_checked_walk_ctx(h.m, &ctx);
	ctx.mm = h.mm;
	ptemu_walk_result out{};
	EXPECT_EQ(A.hw_walk(&ctx, h.mm->pgd_pa, x, PTEMU_ACCESS_FETCH, &out), PTEMU_WALK_OK);
	EXPECT_EQ(out.perms, (unsigned)X) << "PAGE_EXECONLY";
	EXPECT_EQ(A.hw_walk(&ctx, h.mm->pgd_pa, x, PTEMU_ACCESS_READ, &out), PTEMU_WALK_PERMISSION);

	EXPECT_EQ(ptemu_user_fault(h.mm, x, 0), VM_FAULT_SIGSEGV)
		<< "a load from an exec-only mapping, its page present";
	EXPECT_EQ(ptemu_user_fault(h.mm, x + SZ_64K, 0), VM_FAULT_SIGSEGV)
		<< "a load from an exec-only mapping, its page not yet faulted";
	// Served or not, the load is refused again: serving it can only loop.
	EXPECT_EQ(A.hw_walk(&ctx, h.mm->pgd_pa, x, PTEMU_ACCESS_READ, &out), PTEMU_WALK_PERMISSION);

	EXPECT_EQ(ptemu_user_fault(h.mm, rx, 0), 0u);
	EXPECT_EQ(ptemu_user_fault(h.mm, wo, 0), 0u);	// PAGE_COPY: write implies read
	EXPECT_EQ(A.hw_walk(&ctx, h.mm->pgd_pa, wo, PTEMU_ACCESS_READ, &out), PTEMU_WALK_OK);
	EXPECT_EQ(ptemu_user_fault(h.mm, none, 0), VM_FAULT_SIGSEGV);
}

// ---- PTE fragments ----------------------------------------------------------------------------

namespace {

constexpr uint64_t kAddr = 1ull << 30;

// A thread inside an RCU read-side section until released: no grace period can end.
class RcuReader {
      public:
	explicit RcuReader(ptemu_machine *m)
	{
		t_ = std::thread([this, m] {
			ptemu_thread_register(m, "reader");
			rcu_read_lock();
			phase_ = 1;
			while (phase_.load() != 2)
				std::this_thread::yield();
			rcu_read_unlock();
			ptemu_thread_unregister();
		});
		while (phase_.load() != 1)
			std::this_thread::yield();
	}
	~RcuReader() { release(); }
	void release()
	{
		if (!t_.joinable())
			return;
		phase_ = 2;
		t_.join();
	}

      private:
	std::atomic<int> phase_{0};
	std::thread t_;
};

class Ppc64Frag : public testing::Test {
      protected:
	virtual ptemu_injection injection() const { return INJECT_NONE; }

	void SetUp() override
	{
		m = make_machine(injection());
		ASSERT_NE(m, nullptr);
		ASSERT_NE(ptemu_thread_register(m, "test"), nullptr);
		baseline = pages();
		mm = mm_alloc(m);
		ASSERT_NE(mm, nullptr);
		// The upper tables over kAddr, so that page counts in the tests see PTE pages only.
		ASSERT_NE(pmd_alloc_path(mm, kAddr), nullptr);
	}

	void TearDown() override
	{
		if (!m)
			return;
		if (mm)
			mm_destroy(mm);
		rcu_barrier();
		EXPECT_EQ(pages(), baseline) << "pages leaked";
		if (injection() == INJECT_NONE) {
			EXPECT_EQ(check_violation_count(m), 0u) << describe(m);
		}
		ptemu_thread_unregister();
		ptemu_machine_destroy(m);
	}

	uint64_t pages() const { return phys_stats(m->phys).pages_allocated; }
	page *page_of(uint64_t table) const { return pfn_to_page(m->phys, table >> 16); }
	uint32_t frag_count(uint64_t table) const
	{
		return __atomic_load_n(&page_of(table)->pt_frag, __ATOMIC_ACQUIRE);
	}
	bool active(uint64_t table) const { return PageFlag(page_of(table), PG_active); }
	ptemu_table_state state(uint64_t table) const { return check_table_state(m, table); }
	uint64_t stat(ptemu_stat s) const { return ptemu_stat_get(&m->stats, s); }
	uint64_t count(ptemu_violation_kind k) const { return check_kind_count(m, k); }

	// Every fragment of the cursor's page, from a fresh page: the cursor moves on.
	std::vector<uint64_t> whole_page()
	{
		std::vector<uint64_t> t;
		for (unsigned i = 0; i < 256; i++) {
			t.push_back(pte_alloc_one(mm));
			EXPECT_NE(t.back(), 0u);
		}
		EXPECT_EQ(t[0] % SZ_64K, 0u);
		EXPECT_EQ(mm->context.pte_frag, 0u);
		return t;
	}

	void attach_and_detach(uint64_t table, uint64_t addr) { ptemu_test::attach_and_detach(mm, table, addr); }

	ptemu_machine *m = nullptr;
	mm_struct *mm = nullptr;
	uint64_t baseline = 0;
};

} // namespace

TEST_F(Ppc64Frag, ConsecutiveAllocationsAreConsecutiveFragmentsOfOnePage)
{
	uint64_t before = pages();
	uint64_t a = pte_alloc_one(mm);
	ASSERT_NE(a, 0u);
	EXPECT_EQ(a % SZ_64K, 0u) << "a fresh page hands out its first fragment";
	EXPECT_EQ(pages(), before + 1);
	EXPECT_EQ(frag_count(a), 256u) << "PTE_FRAG_NR: the cursor page holds every fragment";
	EXPECT_EQ(mm->context.pte_frag, a + 256);
	EXPECT_TRUE(PageFlag(page_of(a), PG_table));
	EXPECT_EQ(state(a), TABLE_ALLOCATED);
	for (unsigned i = 0; i < 32; i++)
		EXPECT_EQ(ptemu_pte_load(m, a + 8ull * i), 0u) << i;

	std::vector<uint64_t> t{a};
	for (unsigned i = 1; i < 256; i++) {
		t.push_back(pte_alloc_one(mm));
		EXPECT_EQ(t[i], a + 256ull * i) << i;
		EXPECT_EQ(state(t[i]), TABLE_ALLOCATED) << i;
	}
	EXPECT_EQ(pages(), before + 1);
	EXPECT_EQ(frag_count(a), 256u);
	EXPECT_EQ(mm->context.pte_frag, 0u) << "every fragment handed out: no cursor";

	uint64_t next = pte_alloc_one(mm);
	EXPECT_NE(page_of(next), page_of(a));
	EXPECT_EQ(next % SZ_64K, 0u);
	EXPECT_EQ(pages(), before + 2);
	EXPECT_EQ(frag_count(next), 256u);
	EXPECT_EQ(mm->context.pte_frag, next + 256);

	// With the cursor gone from it, the first page goes with its last fragment, at once.
	for (unsigned i = 0; i < 255; i++)
		pte_free(mm, t[i]);
	EXPECT_EQ(pages(), before + 2);
	EXPECT_EQ(frag_count(a), 1u);
	pte_free(mm, t[255]);
	EXPECT_EQ(pages(), before + 1);
	EXPECT_EQ(stat(PTEMU_STAT_tables_freed_now), 256u);
	pte_free(mm, next);
}

TEST_F(Ppc64Frag, FragmentsShareTheirPagesPtl)
{
	uint64_t a = pte_alloc_one(mm), b = pte_alloc_one(mm);
	ASSERT_EQ(page_of(a), page_of(b));
	pmd_t pa = __pmd(A.mk_table(PMD, a)), pb = __pmd(A.mk_table(PMD, b));
	EXPECT_EQ(pte_lockptr(mm, &pa), pte_lockptr(mm, &pb));
	EXPECT_EQ(pte_lockptr(mm, &pa), &page_of(a)->ptl);
	// Installed in two pmds, as the kernel finds them.
	pmd_t *p1 = pmd_alloc_path(mm, kAddr), *p2 = pmd_alloc_path(mm, kAddr + SZ_2M);
	uint64_t ta = a, tb = b;
	pmd_install(mm, p1, &ta);
	pmd_install(mm, p2, &tb);
	pmd_t v1 = pmdp_get_lockless(p1), v2 = pmdp_get_lockless(p2);
	EXPECT_EQ(v1.val, a | K_PMD_VAL_BITS);
	EXPECT_EQ(v2.val, b | K_PMD_VAL_BITS);
	EXPECT_EQ(pte_lockptr(mm, &v1), pte_lockptr(mm, &v2));
	// A fragment of another page has another lock.
	std::vector<uint64_t> rest;
	for (unsigned i = 2; i < 257; i++)
		rest.push_back(pte_alloc_one(mm));
	ASSERT_NE(page_of(rest.back()), page_of(a));
	pmd_t pc = __pmd(A.mk_table(PMD, rest.back()));
	EXPECT_NE(pte_lockptr(mm, &pc), pte_lockptr(mm, &pa));
	for (uint64_t t : rest)
		pte_free(mm, t);
	// Detach both as free_pgtables would, then free.
	for (auto [p, t] : {std::pair{p1, a}, std::pair{p2, b}}) {
		ptemu_spinlock *pml = pmd_lock(mm, p);
		pmd_clear(p);
		mm_inc_pgtables(mm, -(int64_t)A.pte_table_bytes);
		spin_unlock(pml);
		pte_free(mm, t);
	}
}

TEST_F(Ppc64Frag, FreedFragmentIsNeverHandedOutAgain)
{
	uint64_t a = pte_alloc_one(mm), b = pte_alloc_one(mm);
	pte_free(mm, a);
	EXPECT_EQ(state(a), TABLE_FREE);
	EXPECT_EQ(frag_count(a), 255u);
	rcu_barrier();	// not even after a grace period
	uint64_t c = pte_alloc_one(mm);
	EXPECT_EQ(c, b + 256) << "the next never-used fragment";
	EXPECT_NE(c, a);
	EXPECT_EQ(state(a), TABLE_FREE);
	pte_free(mm, b);
	uint64_t d = pte_alloc_one(mm);
	EXPECT_EQ(d, c + 256);
	EXPECT_EQ(frag_count(a), 254u);
	pte_free(mm, c);
	pte_free(mm, d);
}

// pt_frag_refcount: PTE_FRAG_NR at first, one per fragment handed out and not yet freed
// plus one per fragment the cursor still holds; the page goes at 0.
TEST_F(Ppc64Frag, PageGoesOnlyWithEveryFragmentAndTheCursor)
{
	uint64_t before = pages();
	uint64_t a = pte_alloc_one(mm), b = pte_alloc_one(mm), c = pte_alloc_one(mm);
	EXPECT_EQ(frag_count(a), 256u);
	pte_free(mm, a);
	pte_free(mm, c);
	pte_free(mm, b);
	EXPECT_EQ(frag_count(a), 253u);
	EXPECT_EQ(pages(), before + 1) << "the cursor still holds the page";
	EXPECT_TRUE(PageFlag(page_of(a), PG_table));
	pte_frag_destroy(mm);
	EXPECT_EQ(mm->context.pte_frag, 0u);
	EXPECT_EQ(pages(), before);
	EXPECT_EQ(stat(PTEMU_STAT_tables_freed_now), 3u);
	// A new cursor page.
	uint64_t d = pte_alloc_one(mm);
	EXPECT_EQ(d % SZ_64K, 0u);
	EXPECT_EQ(frag_count(d), 256u);
	EXPECT_EQ(pages(), before + 1);
	pte_free(mm, d);
}

TEST_F(Ppc64Frag, CursorDestroyedBeforeTheFragments)
{
	uint64_t before = pages();
	uint64_t a = pte_alloc_one(mm), b = pte_alloc_one(mm);
	pte_frag_destroy(mm);
	EXPECT_EQ(frag_count(a), 2u) << "256 - the 254 never handed out";
	EXPECT_EQ(pages(), before + 1);
	pte_free(mm, b);
	EXPECT_EQ(frag_count(a), 1u);
	EXPECT_EQ(pages(), before + 1);
	pte_free(mm, a);
	EXPECT_EQ(pages(), before);
	pte_frag_destroy(mm);	// no cursor: nothing
	EXPECT_EQ(pages(), before);
}

// exit_mmap's arch_exit_mmap (destroy_pagetable_cache) is where the cursor goes.
TEST_F(Ppc64Frag, MmDestroyDropsTheCursor)
{
	uint64_t a = pte_alloc_one(mm), b = pte_alloc_one(mm), c = pte_alloc_one(mm);
	pte_free(mm, a);
	pte_free(mm, b);
	pte_free(mm, c);
	EXPECT_EQ(pages(), baseline + 4) << "pgd, pud, pmd and the fragment page";
	mm_destroy(mm);
	mm = nullptr;
	EXPECT_EQ(pages(), baseline) << "nothing deferred: freed at once";
	EXPECT_EQ(state(a), TABLE_FREE);
}

// pte_free_defer: SetPageActive, then pte_fragment_free. The page goes through call_rcu
// when its last fragment goes, which is after every deferral on it.
TEST_F(Ppc64Frag, DeferredFragmentKeepsThePageUntilAGracePeriodAfterTheLastFree)
{
	uint64_t before = pages();
	std::vector<uint64_t> t = whole_page();
	attach_and_detach(t[7], kAddr);
	pte_free_defer(mm, t[7]);
	EXPECT_EQ(state(t[7]), TABLE_RCU_PENDING);
	EXPECT_TRUE(active(t[7]));
	EXPECT_EQ(frag_count(t[7]), 255u);
	rcu_barrier();
	EXPECT_EQ(pages(), before + 1) << "the other fragments still live";
	EXPECT_EQ(state(t[7]), TABLE_RCU_PENDING);
	EXPECT_TRUE(active(t[7]));

	for (unsigned i = 0; i < 255; i++)
		if (i != 7)
			pte_free(mm, t[i]);
	EXPECT_EQ(frag_count(t[7]), 1u);
	EXPECT_EQ(pages(), before + 1);
	// Hold a read-side section across the last free, so that the grace period cannot
	// end before the checks.
	rcu_read_lock();
	pte_free(mm, t[255]);
	EXPECT_EQ(state(t[255]), TABLE_FREE);
	EXPECT_EQ(state(t[7]), TABLE_RCU_PENDING);
	EXPECT_EQ(frag_count(t[7]), 0u);
	EXPECT_EQ(pages(), before + 1) << "freed at once, not through call_rcu";
	EXPECT_FALSE(active(t[7])) << "folio_test_clear_active when queued";
	rcu_read_unlock();

	rcu_barrier();
	EXPECT_EQ(pages(), before);
	EXPECT_EQ(state(t[7]), TABLE_FREE);
	EXPECT_FALSE(PageFlag(page_of(t[7]), PG_table));
	EXPECT_EQ(stat(PTEMU_STAT_tables_rcu_freed), 1u);
	EXPECT_EQ(stat(PTEMU_STAT_tables_freed_deferred), 1u);
}

// Whichever fragment goes last: the deferred one itself, after every other was freed.
TEST_F(Ppc64Frag, DeferredFragmentGoingLastWaitsForAGracePeriod)
{
	uint64_t before = pages();
	std::vector<uint64_t> t = whole_page();
	for (unsigned i = 1; i < 256; i++)
		pte_free(mm, t[i]);
	EXPECT_EQ(frag_count(t[0]), 1u);
	attach_and_detach(t[0], kAddr);
	rcu_read_lock();
	pte_free_defer(mm, t[0]);
	EXPECT_EQ(state(t[0]), TABLE_RCU_PENDING);
	EXPECT_EQ(frag_count(t[0]), 0u);
	EXPECT_EQ(pages(), before + 1);
	EXPECT_FALSE(active(t[0])) << "set, then test-and-cleared when queued";
	EXPECT_EQ(count(VIOLATION_PT_FREE_BEFORE_GRACE_PERIOD), 0u);
	rcu_read_unlock();
	rcu_barrier();
	EXPECT_EQ(pages(), before);
	EXPECT_EQ(state(t[0]), TABLE_FREE);
	EXPECT_EQ(stat(PTEMU_STAT_tables_rcu_freed), 1u);
}

TEST_F(Ppc64Frag, TwoDeferredFragmentsOfOnePage)
{
	uint64_t before = pages();
	std::vector<uint64_t> t = whole_page();
	attach_and_detach(t[3], kAddr);
	attach_and_detach(t[200], kAddr + SZ_2M);
	pte_free_defer(mm, t[3]);
	for (unsigned i = 0; i < 256; i++)
		if (i != 3 && i != 200)
			pte_free(mm, t[i]);
	rcu_read_lock();
	pte_free_defer(mm, t[200]);
	EXPECT_EQ(pages(), before + 1);
	EXPECT_EQ(state(t[3]), TABLE_RCU_PENDING);
	EXPECT_EQ(state(t[200]), TABLE_RCU_PENDING);
	rcu_read_unlock();
	rcu_barrier();
	EXPECT_EQ(pages(), before);
	EXPECT_EQ(state(t[3]), TABLE_FREE);
	EXPECT_EQ(state(t[200]), TABLE_FREE);
	EXPECT_EQ(stat(PTEMU_STAT_tables_rcu_freed), 2u);
}

// The cursor page with a deferred fragment: destroying the cursor frees the page through
// RCU (the upstream fix; ppc-v6.6-frag-destroy is v6.6, which frees it at once).
TEST_F(Ppc64Frag, MmDestroyFreesAnActiveCursorPageThroughRcu)
{
	uint64_t a = pte_alloc_one(mm), b = pte_alloc_one(mm);
	attach_and_detach(a, kAddr);
	pte_free_defer(mm, a);
	pte_free(mm, b);
	EXPECT_EQ(frag_count(a), 254u);
	EXPECT_TRUE(active(a));
	{
		RcuReader reader(m);
		mm_destroy(mm);
		mm = nullptr;
		EXPECT_EQ(pages(), baseline + 1) << "the fragment page waits for the reader";
		EXPECT_EQ(state(a), TABLE_RCU_PENDING);
		EXPECT_FALSE(active(a));
	}
	rcu_barrier();
	EXPECT_EQ(pages(), baseline);
	EXPECT_EQ(state(a), TABLE_FREE);
	EXPECT_EQ(stat(PTEMU_STAT_tables_rcu_freed), 1u);
}

// The mmu_gather path: a gathered fragment waits for the gather's grace period, then
// __tlb_remove_table's pte_fragment_free drops its reference; being the last of an Active
// page, it queues the page for yet another grace period (call_rcu from the callback).
TEST_F(Ppc64Frag, GatheredFragmentIsFreedAfterTheGracePeriod)
{
	uint64_t before = pages();
	std::vector<uint64_t> t = whole_page();
	for (unsigned i = 2; i < 256; i++)
		pte_free(mm, t[i]);
	attach_and_detach(t[1], kAddr + SZ_2M);
	pte_free_defer(mm, t[1]);
	attach_and_detach(t[0], kAddr);
	mmu_gather tlb;
	rcu_read_lock();
	tlb_gather_mmu(&tlb, mm);
	pte_free_tlb(&tlb, t[0], kAddr);
	tlb_finish_mmu(&tlb);
	EXPECT_EQ(state(t[0]), TABLE_RCU_PENDING);
	EXPECT_EQ(frag_count(t[0]), 1u) << "the gathered fragment keeps its reference until then";
	EXPECT_TRUE(active(t[0]));
	rcu_read_unlock();
	rcu_barrier();
	EXPECT_EQ(state(t[0]), TABLE_FREE);
	EXPECT_EQ(state(t[1]), TABLE_FREE);
	EXPECT_EQ(pages(), before);
	EXPECT_EQ(stat(PTEMU_STAT_tables_rcu_freed), 2u);
	// A gathered fragment is not handed out again either.
	uint64_t a = pte_alloc_one(mm), b = pte_alloc_one(mm);
	attach_and_detach(a, kAddr);
	tlb_gather_mmu(&tlb, mm);
	pte_free_tlb(&tlb, a, kAddr);
	tlb_finish_mmu(&tlb);
	rcu_barrier();
	EXPECT_EQ(state(a), TABLE_FREE);
	EXPECT_EQ(frag_count(a), 255u);
	EXPECT_EQ(pte_alloc_one(mm), b + 256);
	pte_free(mm, b);
	pte_free(mm, b + 256);
}

// ---- injections -----------------------------------------------------------------------------

namespace {

class Ppc64FragReuse : public Ppc64Frag {
      protected:
	ptemu_injection injection() const override { return INJECT_PPC_FRAG_REUSE; }
};

class Ppc64FragNoPageActive : public Ppc64Frag {
      protected:
	ptemu_injection injection() const override { return INJECT_PPC_NO_PAGE_ACTIVE; }
};

class Ppc64FragV66Destroy : public Ppc64Frag {
      protected:
	ptemu_injection injection() const override { return INJECT_PPC_V66_FRAG_DESTROY; }
};

} // namespace

TEST_F(Ppc64FragReuse, DeferredFragmentHandedOutAgainIsCaught)
{
	uint64_t a = pte_alloc_one(mm), b = pte_alloc_one(mm);
	attach_and_detach(a, kAddr);
	pte_free_defer(mm, a);
	EXPECT_EQ(state(a), TABLE_RCU_PENDING);
	EXPECT_EQ(count(VIOLATION_PT_USE_AFTER_FREE), 0u);
	uint64_t c = pte_alloc_one(mm);
	EXPECT_EQ(c, a) << "the injected bug: the deferred fragment comes back";
	EXPECT_GE(count(VIOLATION_PT_USE_AFTER_FREE), 1u) << describe(m);
	pte_free(mm, c);
	pte_free(mm, b);
}

TEST_F(Ppc64FragNoPageActive, DeferringTheLastFragmentFreesThePageAtOnce)
{
	std::vector<uint64_t> t = whole_page();
	for (unsigned i = 1; i < 256; i++)
		pte_free(mm, t[i]);
	attach_and_detach(t[0], kAddr);
	uint64_t before = pages();
	pte_free_defer(mm, t[0]);
	EXPECT_EQ(pages(), before - 1) << "no PG_active: pte_free_now without call_rcu";
	EXPECT_EQ(state(t[0]), TABLE_FREE);
	EXPECT_EQ(count(VIOLATION_PT_FREE_BEFORE_GRACE_PERIOD), 1u) << describe(m);
}

TEST_F(Ppc64FragV66Destroy, MmDestroyFreesAnActiveCursorPageAtOnce)
{
	uint64_t a = pte_alloc_one(mm), b = pte_alloc_one(mm);
	attach_and_detach(a, kAddr);
	pte_free_defer(mm, a);
	pte_free(mm, b);
	EXPECT_EQ(frag_count(a), 254u);
	EXPECT_TRUE(active(a));
	{
		RcuReader reader(m);
		mm_destroy(mm);
		mm = nullptr;
		EXPECT_EQ(pages(), baseline) << "v6.6: freed under the reader's feet";
		EXPECT_EQ(state(a), TABLE_FREE);
		EXPECT_EQ(count(VIOLATION_PT_FREE_BEFORE_GRACE_PERIOD), 1u) << describe(m);
	}
}

// The injection changes only pte_frag_destroy: the Active rule of pte_fragment_free holds.
TEST_F(Ppc64FragV66Destroy, LastFreeOfAnActivePageStillWaits)
{
	uint64_t before = pages();
	std::vector<uint64_t> t = whole_page();
	attach_and_detach(t[0], kAddr);
	pte_free_defer(mm, t[0]);
	for (unsigned i = 1; i < 255; i++)
		pte_free(mm, t[i]);
	rcu_read_lock();
	pte_free(mm, t[255]);
	EXPECT_EQ(pages(), before + 1);
	rcu_read_unlock();
	rcu_barrier();
	EXPECT_EQ(pages(), before);
	EXPECT_EQ(check_violation_count(m), 0u) << describe(m);
}
