// The arm-lpae MMU model on its own: the PTE, huge pmd and table bits that Linux v6.6 writes
// for user space on ARMv7 LPAE (protection_map[] with user_pgprot, set_ptes,
// cpu_v7_set_pte_ext, set_pmd_at, pmd_populate), classification at each level, and hardware
// walks of tables hand-built in a host buffer that the walker reaches only through its
// read_entry callback.
#include <gtest/gtest.h>

#include <capstone/capstone.h>
#include <unicorn/unicorn.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <iterator>
#include <tuple>
#include <vector>

#include <ptemu/mmu_gather.h>

#include "fixture.h"

#include "../mmu/arm/arm.h"
#include "../mmu/arm64/arm64.h"
#include "long_walk_memory.h"

using namespace ptemu_test;

namespace {

const ptemu_arch &A = ptemu_arch_arm_lpae;

// Descriptor bits, spelled out independently of the model (pgtable-3level.h and
// pgtable-3level-hwdef.h of v6.6; the VMSAv7 long-descriptor format).
constexpr uint64_t VALID = 1ull << 0, TABLE = 1ull << 1, USER = 1ull << 6, AP2 = 1ull << 7,
		   AF = 1ull << 10, NG = 1ull << 11, PXN = 1ull << 53, XN = 1ull << 54,
		   DIRTY = 1ull << 55, NONE = 1ull << 57, RDONLY = 1ull << 58;
// Table descriptor bits: PXNTable, XNTable, APTable[0] (no PL0 access), APTable[1].
constexpr uint64_t PXN_TABLE = 1ull << 59, XN_TABLE = 1ull << 60, AP_TABLE_0 = 1ull << 61,
		   AP_TABLE_1 = 1ull << 62;

constexpr unsigned R = PTEMU_PROT_READ, W = PTEMU_PROT_WRITE, X = PTEMU_PROT_EXEC;
constexpr unsigned Y = PTEMU_PTE_YOUNG, D = PTEMU_PTE_DIRTY;

constexpr uint64_t SZ_4K = 1ull << 12, SZ_2M = 1ull << 21, SZ_1G = 1ull << 30;

// An arm swap entry (asm/pgtable.h): bits[1:0] = 00, type in bits 6:2, offset from bit 8.
uint64_t swp_entry(uint64_t type, uint64_t offset)
{
	return (type << 2) | (offset << 8);
}

uint64_t mk_pte(uint64_t pfn, unsigned flags)
{
	return A.mk_pte(ptemu_leaf{ pfn, flags });
}

uint64_t mk_pmd_leaf(uint64_t pfn, unsigned flags)
{
	return A.mk_pmd_leaf(ptemu_leaf{ pfn, flags });
}

// Simulated physical memory for walks: little-endian descriptors in a plain buffer,
// reachable by the walker only through read_entry, which logs every read.
class ArmLpaeModel : public ::testing::Test, protected LongWalkMemory {
protected:
	ArmLpaeModel() : LongWalkMemory(A, 8 * SZ_4K) {}

	static constexpr uint64_t T0 = 0x1000, T1 = 0x2000, T2 = 0x3000;
	// pgd index 2, pmd index 3, PTE index 4, offset 0x567: a user address.
	static constexpr uint64_t VA = (2ull << 30) | (3ull << 21) | (4ull << 12) | 0x567;

	ptemu_walk_result out{};

	// pgd -> pmd table -> PTE table for VA, as pud_populate and pmd_populate write them.
	void build()
	{
		set(T0, 2, A.mk_table(0, T1));
		set(T1, 3, A.mk_table(1, T2));
	}

	ptemu_walk_fault walk(uint64_t va, ptemu_access access, const ptemu_arch &a = A)
	{
		reads.clear();
		ptemu_walk_fault f = a.hw_walk(&ctx, T0, va, access, &out);
		EXPECT_EQ(f, out.fault);
		return f;
	}
};

// ---- geometry and the kernel-side properties ----------------------------------------------

TEST_F(ArmLpaeModel, Geometry)
{
	EXPECT_EQ(ptemu_arch_find("arm-lpae"), &A);
	EXPECT_STREQ(A.name, "arm-lpae");
	EXPECT_EQ(A.page_shift, 12u);
	EXPECT_EQ(A.va_bits, 32u);
	// TASK_SIZE of the 3G/1G split: PAGE_OFFSET less 16 MiB of modules.
	EXPECT_EQ(ptemu_task_size(&A), 0xbf000000u);
	ASSERT_EQ(A.nr_levels, 3u);
	const unsigned shift[] = { 30, 21, 12 }, bits[] = { 2, 9, 9 };
	for (unsigned l = 0; l < 3; l++) {
		EXPECT_EQ(A.level_shift[l], shift[l]) << l;
		EXPECT_EQ(A.level_bits[l], bits[l]) << l;
		EXPECT_EQ(A.table_bytes[l], 4096u) << l;
		EXPECT_EQ(ptemu_entry_size(&A, l), 8u) << l;
	}
	EXPECT_EQ(A.level_shift[0] + A.level_bits[0], 32u);
	EXPECT_EQ(A.entry_bytes, 8u);
	EXPECT_FALSE(A.big_endian);
	EXPECT_EQ(A.pmd_leaf_shift, 21u);
	EXPECT_EQ(ptemu_pmd_size(&A), SZ_2M);
	EXPECT_EQ(ptemu_ptes_per_table(&A), 512u);
	EXPECT_EQ(A.pte_table_bytes, 4096u);
	EXPECT_EQ(A.tables_per_page, 1u);
	EXPECT_EQ(A.pte_hw_twin, nullptr);	// the walker reads the Linux PTE itself
	EXPECT_EQ(A.isa.uc_arch, (int)UC_ARCH_ARM);
	EXPECT_EQ(A.isa.uc_mode, (int)UC_MODE_ARM);
	EXPECT_EQ(A.isa.cs_arch, (int)CS_ARCH_ARM);
	EXPECT_EQ(A.isa.cs_mode, (int)CS_MODE_ARM);
	EXPECT_EQ(A.isa.elf_machine, 40u);	// EM_ARM
	EXPECT_EQ(A.isa.elf_class, 32u);
	EXPECT_STREQ(A.isa.workload_dir, "arm");
}

TEST_F(ArmLpaeModel, TableLifetimeAndFlushProperties)
{
	// Whole-page tables, the generic allocator and pte_free_defer; SMP LPAE selects
	// MMU_GATHER_RCU_TABLE_FREE.
	EXPECT_EQ(A.pte_alloc_one, &ptemu_generic_pte_alloc_one);
	EXPECT_EQ(A.pte_free, &ptemu_generic_pte_free);
	EXPECT_EQ(A.pte_free_defer, &ptemu_generic_pte_free_defer);
	EXPECT_EQ(A.pte_free_tlb, &ptemu_generic_pte_free_tlb);
	EXPECT_EQ(A.tlb_remove_table, &ptemu_generic_tlb_remove_table);
	EXPECT_EQ(A.mm_destroy_context, nullptr);
	EXPECT_TRUE(A.rcu_table_free);
	// No split pmd locks on arm: pmd_lock() is mm->page_table_lock; PTE tables keep theirs.
	EXPECT_TRUE(A.pmd_lock_is_page_table_lock);
	EXPECT_FALSE(A.pte_lock_is_page_table_lock);
	// TLBIMVAIS has no last-level-only form on ARMv7: every flush drops walk caches.
	EXPECT_TRUE(A.leaf_flush_drops_walk_cache);
	EXPECT_TRUE(A.flush_waits_for_walks);
	EXPECT_FALSE(A.walker_is_rcu_reader);
	EXPECT_EQ(A.retract_flush, PTEMU_RETRACT_FLUSH_RANGE);
	EXPECT_EQ(A.pmdp_collapse_flush, nullptr);
	EXPECT_EQ(A.update_mmu_cache, nullptr);
	// The core's parametrised suites (pte_offset_map and the others over kModels) run it.
	EXPECT_NE(std::find_if(std::begin(kModels), std::end(kModels),
			       [](const char *m) { return !strcmp(m, "arm-lpae"); }),
		  std::end(kModels));
}

// ---- encodings -------------------------------------------------------------------------

// Every protection at pa 0x12345000. Common to all: L_PTE_PRESENT's bits (VALID cleared for
// PROT_NONE), L_PTE_MT_WRITEALLOC (0x1c), L_PTE_SHARED (0x300) and PXN (bit 53).
TEST_F(ArmLpaeModel, MkPteBitPatterns)
{
	struct {
		unsigned flags;
		uint64_t pte;
	} cases[] = {
		// __PAGE_NONE: XN, RDONLY, NONE; VALID cleared; no nG (not a user PTE) and AP[2]
		// left clear (cpu_v7_set_pte_ext skips the AP[2] step for L_PTE_NONE)
		{ 0, 0x066000001234531eull },
		{ Y, 0x066000001234571eull },
		{ Y | D, 0x06e000001234571eull },
		// __PAGE_READONLY: USER, RDONLY, XN; AP[2]; nG only once young
		{ R, 0x04600000123453dfull },
		{ R | Y, 0x0460000012345fdfull },
		{ R | Y | D, 0x04e0000012345fdfull },	// dirty but read-only: AP[2] stays
		// writable and clean: AP[2] so the first store faults
		{ R | W | Y, 0x0060000012345fdfull },
		{ W | Y, 0x0060000012345fdfull },	// PL0 has no write-only: USER too
		// writable and dirty: AP[2] clear
		{ R | W | Y | D, 0x00e0000012345f5full },
		{ R | W | D, 0x00e000001234535full },	// old: no nG, AF clear
		// __PAGE_READONLY_EXEC: XN clear, PXN kept
		{ R | X | Y, 0x0420000012345fdfull },
		{ X | Y, 0x0420000012345fdfull },	// PROT_EXEC alone is readable too
		{ R | W | X | Y, 0x0020000012345fdfull },
		{ R | W | X | Y | D, 0x00a0000012345f5full },
	};

	for (const auto &c : cases)
		EXPECT_EQ(mk_pte(0x12345, c.flags), c.pte) << std::hex << "flags " << c.flags;
}

// set_ptes gives nG only to pte_valid_user(): valid, L_PTE_USER and young.
TEST_F(ArmLpaeModel, MkPteNotGlobalOnlyForValidYoungUserPtes)
{
	for (unsigned flags = 0; flags < 32; flags++) {
		uint64_t pte = mk_pte(0x12345, flags);
		bool user = flags & (R | W | X);

		EXPECT_EQ(!!(pte & NG), user && (flags & Y)) << flags;
		EXPECT_EQ(!!(pte & AF), !!(flags & Y)) << flags;
		EXPECT_EQ(!!(pte & USER), user) << flags;
		EXPECT_EQ(!!(pte & VALID), user) << flags;	// PROT_NONE: VALID cleared
		EXPECT_TRUE(pte & TABLE) << flags;		// so pte_present() holds
	}
}

// cpu_v7_set_pte_ext: AP[2] = !L_PTE_DIRTY || L_PTE_RDONLY, except that a PROT_NONE PTE
// keeps it clear. L_PTE_RDONLY itself is software bit 58, not AP[2].
TEST_F(ArmLpaeModel, MkPteApTwoIsCleanOrReadOnlyButNotProtNone)
{
	for (unsigned flags = 0; flags < 32; flags++) {
		uint64_t pte = mk_pte(0x12345, flags);
		bool user = flags & (R | W | X), write = flags & W, dirty = flags & D;

		EXPECT_EQ(!!(pte & RDONLY), !write) << flags;
		EXPECT_EQ(!!(pte & DIRTY), dirty) << flags;
		EXPECT_EQ(!!(pte & NONE), !user) << flags;
		EXPECT_EQ(!!(pte & AP2), user && (!write || !dirty)) << flags;
		EXPECT_EQ(!!(pte & XN), !(flags & X)) << flags;
	}
}

// build_mem_type_table adds PTE_EXT_PXN to user_pgprot on LPAE: every user entry has it,
// whatever the protection; no bit above RDONLY is ever set.
TEST_F(ArmLpaeModel, PxnOnEveryPteAndHugePmd)
{
	for (unsigned flags = 0; flags < 32; flags++) {
		EXPECT_TRUE(mk_pte(0x12345, flags) & PXN) << flags;
		EXPECT_TRUE(mk_pmd_leaf(0x12200, flags) & PXN) << flags;
		EXPECT_EQ(mk_pte(0x12345, flags) >> 59, 0u) << flags;
		EXPECT_EQ(mk_pmd_leaf(0x12200, flags) >> 59, 0u) << flags;
	}
}

// The output address is bits 39:12 (40-bit physical addresses).
TEST_F(ArmLpaeModel, OutputAddressIsFortyBits)
{
	EXPECT_EQ(mk_pte(0xfffffff, R | Y) & ((1ull << 40) - 1), 0xffffffffdfull);
	EXPECT_EQ(mk_pte(0x1fffffff, R | Y), mk_pte(0xfffffff, R | Y));
	EXPECT_EQ(A.pte_leaf(mk_pte(0xfffffff, R | Y)).pfn, 0xfffffffu);
	EXPECT_EQ(A.mk_table(1, 0xfffffff000ull), 0xfffffff003ull);
	EXPECT_EQ(A.mk_table(1, 0x10000005000ull), 0x5003ull);
}

// set_pmd_at: VALID cleared for PROT_NONE, AP[2] unless pmd_write && pmd_dirty (PROT_NONE
// included), PMD_SECT_nG always; pmd_mkhuge has cleared the table bit.
TEST_F(ArmLpaeModel, MkPmdLeafBitPatterns)
{
	EXPECT_EQ(mk_pmd_leaf(0x40000, R | W | Y | D), 0x00e0000040000f5dull);
	EXPECT_EQ(mk_pmd_leaf(0x40000, R | W | Y), 0x0060000040000fddull);
	EXPECT_EQ(mk_pmd_leaf(0x40200, R | X | Y), 0x0420000040200fddull);
	// old: nG all the same (unlike a PTE)
	EXPECT_EQ(mk_pmd_leaf(0x40000, R), 0x0460000040000bddull);
	EXPECT_EQ(mk_pmd_leaf(0x40000, R | W | D), 0x00e0000040000b5dull);
	// PROT_NONE: bits[1:0] = 00, AP[2] and nG set (unlike a PTE)
	EXPECT_EQ(mk_pmd_leaf(0x40000, Y), 0x0660000040000f9cull);
	EXPECT_EQ(mk_pmd_leaf(0x40000, 0), 0x0660000040000b9cull);
	for (unsigned flags = 0; flags < 32; flags++)
		EXPECT_TRUE(mk_pmd_leaf(0x40000, flags) & NG) << flags;
}

// pud_populate writes PMD_TYPE_TABLE and pmd_populate _PAGE_USER_TABLE, the same on LPAE:
// no PXNTable, XNTable or APTable.
TEST_F(ArmLpaeModel, MkTableIsTheTableTypeAlone)
{
	for (unsigned level = 0; level < 2; level++) {
		uint64_t t = A.mk_table(level, 0x5000);

		EXPECT_EQ(t, 0x5003ull) << level;
		EXPECT_EQ(t & (PXN_TABLE | XN_TABLE | AP_TABLE_0 | AP_TABLE_1), 0u) << level;
	}
}

// Every flag combination decodes back; write and execute imply read (USER is AP[1]).
TEST_F(ArmLpaeModel, LeafRoundTrip)
{
	for (unsigned flags = 0; flags < 32; flags++) {
		unsigned want = (flags & (W | X)) ? flags | R : flags;
		uint64_t pte = mk_pte(0xabcde, flags), pmd = mk_pmd_leaf(0xabc00, flags);

		EXPECT_EQ(A.pte_leaf(pte).pfn, 0xabcdeu) << flags;
		EXPECT_EQ(A.pte_leaf(pte).flags, want) << flags;
		EXPECT_EQ(A.pmd_leaf(pmd).pfn, 0xabc00u) << flags;
		EXPECT_EQ(A.pmd_leaf(pmd).flags, want) << flags;
		EXPECT_TRUE(A.pte_present(pte)) << flags;
		EXPECT_FALSE(A.pte_none(pte)) << flags;
	}
}

TEST_F(ArmLpaeModel, NoneIsZeroAndSwapIsNeitherNoneNorPresent)
{
	for (unsigned level = 0; level < 3; level++) {
		EXPECT_EQ(A.none_entry(level), 0u) << level;
		EXPECT_EQ(A.classify(level, 0, nullptr), PTEMU_ENTRY_NONE) << level;
	}
	EXPECT_TRUE(A.pte_none(0));
	EXPECT_FALSE(A.pte_present(0));
	EXPECT_FALSE(A.pte_none(swp_entry(3, 0x55)));
	EXPECT_FALSE(A.pte_present(swp_entry(3, 0x55)));
	// PROT_NONE: not valid to the hardware, present to Linux (L_PTE_PRESENT's bit 1).
	EXPECT_TRUE(A.pte_present(mk_pte(0x1234, Y)));
	EXPECT_FALSE(A.pte_none(mk_pte(0x1234, Y)));
}

// ---- classification ----------------------------------------------------------------------

TEST_F(ArmLpaeModel, ClassifyPteLevel)
{
	EXPECT_EQ(A.classify(2, mk_pte(0x1234, R | Y), nullptr), PTEMU_ENTRY_LEAF);
	EXPECT_EQ(A.classify(2, mk_pte(0x1234, R), nullptr), PTEMU_ENTRY_LEAF);
	EXPECT_EQ(A.classify(2, mk_pte(0x1234, Y), nullptr), PTEMU_ENTRY_LEAF);	// PROT_NONE
	EXPECT_EQ(A.classify(2, mk_pte(0x1234, 0), nullptr), PTEMU_ENTRY_LEAF);
	// bits[1:0] = 00, not zero: a swap entry, of any type
	EXPECT_EQ(A.classify(2, swp_entry(0, 0x99), nullptr), PTEMU_ENTRY_MIGRATION);
	EXPECT_EQ(A.classify(2, swp_entry(29, 0x99), nullptr), PTEMU_ENTRY_MIGRATION);
	// bits[1:0] = 01 is reserved at level 3; 10 without L_PTE_NONE is nothing Linux writes
	EXPECT_EQ(A.classify(2, mk_pte(0x1234, R | Y) & ~TABLE, nullptr), PTEMU_ENTRY_BAD);
	EXPECT_EQ(A.classify(2, mk_pte(0x1234, Y) & ~NONE, nullptr), PTEMU_ENTRY_BAD);
}

// With THP, pmd_trans_huge is "not zero and not a table", tested before pmd_bad: at the pmd
// level everything is none, a table or huge. arm has no THP migration: no swap pmds.
TEST_F(ArmLpaeModel, ClassifyPmdLevel)
{
	uint64_t table_pa = 0;

	EXPECT_EQ(A.classify(1, A.mk_table(1, 0x7000), &table_pa), PTEMU_ENTRY_TABLE);
	EXPECT_EQ(table_pa, 0x7000u);
	EXPECT_EQ(A.classify(1, mk_pmd_leaf(0x200, R | Y), nullptr), PTEMU_ENTRY_LEAF);
	EXPECT_EQ(A.classify(1, mk_pmd_leaf(0x200, R | W | D), nullptr), PTEMU_ENTRY_LEAF);
	EXPECT_EQ(A.classify(1, mk_pmd_leaf(0x200, Y), nullptr), PTEMU_ENTRY_LEAF);	// PROT_NONE
	EXPECT_EQ(A.classify(1, swp_entry(1, 0x40000), nullptr), PTEMU_ENTRY_LEAF);
	EXPECT_EQ(A.classify(1, TABLE, nullptr), PTEMU_ENTRY_LEAF);	// pmd_bad: still huge
	for (uint64_t v = 1; v < 4096; v++) {
		enum ptemu_entry_kind k = A.classify(1, v, nullptr);
		EXPECT_EQ(k, (v & 3) == 3 ? PTEMU_ENTRY_TABLE : PTEMU_ENTRY_LEAF) << v;
	}
}

// The folded pud (the 4-entry pgd): pud_populate writes tables only, and pud_bad is
// "no table bit", so a level-1 block, which Linux never writes for user space, is bad.
TEST_F(ArmLpaeModel, ClassifyPgdLevel)
{
	uint64_t table_pa = 0;

	EXPECT_EQ(A.classify(0, A.mk_table(0, 0x3000), &table_pa), PTEMU_ENTRY_TABLE);
	EXPECT_EQ(table_pa, 0x3000u);
	EXPECT_EQ(A.classify(0, mk_pmd_leaf(0x40000, R | Y), nullptr), PTEMU_ENTRY_BAD);
	EXPECT_EQ(A.classify(0, swp_entry(1, 1), nullptr), PTEMU_ENTRY_BAD);
	EXPECT_EQ(A.classify(0, NONE, nullptr), PTEMU_ENTRY_BAD);
}

// ---- hardware walks ----------------------------------------------------------------------

TEST_F(ArmLpaeModel, WalkPageAt4K)
{
	build();
	set(T2, 4, mk_pte(0x80123, R | W | X | Y | D));

	ASSERT_EQ(walk(VA, PTEMU_ACCESS_READ), PTEMU_WALK_OK);
	EXPECT_EQ(out.level, 2u);
	EXPECT_EQ(out.paddr, 0x80123567u);
	EXPECT_EQ(out.leaf_size, SZ_4K);
	EXPECT_EQ(out.perms, R | W | X);
	EXPECT_EQ(out.table_pa[0], T0);
	EXPECT_EQ(out.table_pa[1], T1);
	EXPECT_EQ(out.table_pa[2], T2);
	EXPECT_EQ(reads, (std::vector<Read>{ { 0, T0, 2 }, { 1, T1, 3 }, { 2, T2, 4 } }));
	EXPECT_EQ(walk(VA, PTEMU_ACCESS_WRITE), PTEMU_WALK_OK);
	EXPECT_EQ(walk(VA, PTEMU_ACCESS_FETCH), PTEMU_WALK_OK);
	// A 40-bit output address.
	set(T2, 4, mk_pte(0xfedcba98, R | Y));
	ASSERT_EQ(walk(VA, PTEMU_ACCESS_READ), PTEMU_WALK_OK);
	EXPECT_EQ(out.paddr, 0xedcba98567ull);
}

TEST_F(ArmLpaeModel, WalkBlockAt2M)
{
	build();
	set(T1, 3, mk_pmd_leaf(0x80000, R | Y));

	ASSERT_EQ(walk(VA, PTEMU_ACCESS_READ), PTEMU_WALK_OK);
	EXPECT_EQ(out.level, 1u);
	EXPECT_EQ(out.paddr, 0x80004567u);
	EXPECT_EQ(out.leaf_size, SZ_2M);
	EXPECT_EQ(out.perms, R);
	EXPECT_EQ(out.table_pa[1], T1);
	EXPECT_EQ(reads.size(), 2u);
	EXPECT_EQ(walk(VA, PTEMU_ACCESS_WRITE), PTEMU_WALK_PERMISSION);
	EXPECT_EQ(walk(VA, PTEMU_ACCESS_FETCH), PTEMU_WALK_PERMISSION);	// XN
}

// Linux never writes a level-1 (1 GiB) block for user space (ClassifyPgdLevel), but the
// LPAE walker accepts one as the architecture does.
TEST_F(ArmLpaeModel, WalkLevelOneBlockIsTranslatedThoughLinuxNeverWritesOne)
{
	set(T0, 2, mk_pmd_leaf(0x80000, R | W | Y | D));

	ASSERT_EQ(walk(VA, PTEMU_ACCESS_WRITE), PTEMU_WALK_OK);
	EXPECT_EQ(out.level, 0u);
	EXPECT_EQ(out.leaf_size, SZ_1G);
	EXPECT_EQ(out.paddr, 0x80604567u);
	EXPECT_EQ(out.perms, R | W);
	EXPECT_EQ(reads.size(), 1u);
}

// Invalid at any level is a translation fault there: zero, a swap entry, a PROT_NONE entry
// (VALID cleared), whatever else the bits say.
TEST_F(ArmLpaeModel, WalkTranslationFaultAtEachLevel)
{
	const uint64_t tables[] = { T0, T1, T2 };
	const unsigned index[] = { 2, 3, 4 };

	for (unsigned level = 0; level < 3; level++) {
		for (uint64_t invalid : std::initializer_list<uint64_t>{
			     0, swp_entry(5, 0x80123), mk_pte(0x80123, Y), mk_pmd_leaf(0x80000, Y) }) {
			SCOPED_TRACE(testing::Message() << "level " << level << " entry " << std::hex
							<< invalid);
			build();
			set(T2, 4, mk_pte(0x80123, R | Y));
			set(tables[level], index[level], invalid);

			EXPECT_EQ(walk(VA, PTEMU_ACCESS_READ), PTEMU_WALK_TRANSLATION);
			EXPECT_EQ(out.level, level);
			EXPECT_EQ(reads.size(), level + 1);
		}
	}
}

// Linux keeps young user PTEs; one with AF clear (pte_mkold) takes an access flag fault,
// ahead of any permission fault.
TEST_F(ArmLpaeModel, WalkAccessFlagClear)
{
	build();
	set(T2, 4, mk_pte(0x80123, R | W | X | D));
	for (ptemu_access acc : { PTEMU_ACCESS_READ, PTEMU_ACCESS_WRITE, PTEMU_ACCESS_FETCH }) {
		EXPECT_EQ(walk(VA, acc), PTEMU_WALK_ACCESS_FLAG) << acc;
		EXPECT_EQ(out.level, 2u);
	}
	set(T2, 4, mk_pte(0x80123, R));
	EXPECT_EQ(walk(VA, PTEMU_ACCESS_WRITE), PTEMU_WALK_ACCESS_FLAG);
	set(T1, 3, mk_pmd_leaf(0x80000, R));
	EXPECT_EQ(walk(VA, PTEMU_ACCESS_WRITE), PTEMU_WALK_ACCESS_FLAG);
	EXPECT_EQ(out.level, 1u);
}

// No hardware dirty management on ARMv7: a writable but clean entry has AP[2] set, so the
// store faults and the fault path dirties it; read-only entries fault whatever the dirt.
TEST_F(ArmLpaeModel, WalkStoreToCleanFaultsUntilDirty)
{
	build();
	set(T2, 4, mk_pte(0x80123, R | W | Y));
	EXPECT_EQ(walk(VA, PTEMU_ACCESS_READ), PTEMU_WALK_OK);
	EXPECT_EQ(out.perms, R);
	EXPECT_EQ(walk(VA, PTEMU_ACCESS_WRITE), PTEMU_WALK_PERMISSION);
	EXPECT_EQ(out.level, 2u);

	set(T2, 4, mk_pte(0x80123, R | W | Y | D));
	EXPECT_EQ(walk(VA, PTEMU_ACCESS_WRITE), PTEMU_WALK_OK);
	EXPECT_EQ(out.perms, R | W);

	set(T2, 4, mk_pte(0x80123, R | Y | D));
	EXPECT_EQ(walk(VA, PTEMU_ACCESS_WRITE), PTEMU_WALK_PERMISSION);

	set(T1, 3, mk_pmd_leaf(0x80000, R | W | Y));
	EXPECT_EQ(walk(VA, PTEMU_ACCESS_WRITE), PTEMU_WALK_PERMISSION);
	EXPECT_EQ(out.level, 1u);
	set(T1, 3, mk_pmd_leaf(0x80000, R | W | Y | D));
	EXPECT_EQ(walk(VA, PTEMU_ACCESS_WRITE), PTEMU_WALK_OK);
}

// XN refuses a PL0 fetch; PXN, on every user entry, binds PL1 only.
TEST_F(ArmLpaeModel, WalkFetchNeedsXnClearAndIgnoresPxn)
{
	build();
	set(T2, 4, mk_pte(0x80123, R | W | Y | D));
	EXPECT_EQ(walk(VA, PTEMU_ACCESS_FETCH), PTEMU_WALK_PERMISSION);
	EXPECT_EQ(out.perms, R | W);

	set(T2, 4, mk_pte(0x80123, X | Y));
	ASSERT_TRUE(mk_pte(0x80123, X | Y) & PXN);
	EXPECT_EQ(walk(VA, PTEMU_ACCESS_FETCH), PTEMU_WALK_OK);
	EXPECT_EQ(out.perms, R | X);
	EXPECT_EQ(walk(VA, PTEMU_ACCESS_READ), PTEMU_WALK_OK);
}

// ARMv7: an instruction fetch needs read permission at the current PL, so PL0 cannot
// execute a page without AP[1] even with XN clear; arm64's EL0 can (execute-only).
TEST_F(ArmLpaeModel, WalkUserFetchOfAPageUserCannotReadFaults)
{
	const uint64_t kernel_only = mk_pte(0x80123, R | X | Y) & ~USER;

	build();
	set(T2, 4, kernel_only);
	EXPECT_EQ(walk(VA, PTEMU_ACCESS_FETCH), PTEMU_WALK_PERMISSION);
	EXPECT_EQ(out.level, 2u);
	EXPECT_EQ(out.perms, 0u);
	EXPECT_EQ(walk(VA, PTEMU_ACCESS_READ), PTEMU_WALK_PERMISSION);
	// The access flag fault still comes first.
	set(T2, 4, kernel_only & ~AF);
	EXPECT_EQ(walk(VA, PTEMU_ACCESS_FETCH), PTEMU_WALK_ACCESS_FLAG);
	// A block without AP[1].
	set(T1, 3, mk_pmd_leaf(0x80000, R | X | Y) & ~USER);
	EXPECT_EQ(walk(VA, PTEMU_ACCESS_FETCH), PTEMU_WALK_PERMISSION);
	EXPECT_EQ(out.level, 1u);
	// APTable[0] above a PL0-executable page takes the PL0 read, and so the fetch.
	build();
	set(T2, 4, mk_pte(0x80123, R | X | Y));
	EXPECT_EQ(walk(VA, PTEMU_ACCESS_FETCH), PTEMU_WALK_OK);
	set(T0, 2, A.mk_table(0, T1) | AP_TABLE_0);
	EXPECT_EQ(walk(VA, PTEMU_ACCESS_FETCH), PTEMU_WALK_PERMISSION);
	EXPECT_EQ(out.perms, 0u);

	// The shared long-descriptor walk keeps arm64's EL0 execute-only.
	build();
	set(T2, 4, kernel_only);
	reads.clear();
	EXPECT_EQ(ptemu_vmsa_long_walk(&A, (1ull << 40) - 1 - 0xfff, &ctx, T0, VA,
				       PTEMU_ACCESS_FETCH, &out),
		  PTEMU_WALK_OK);
	EXPECT_EQ(out.perms, X);
}

// Table descriptors still limit what is below them (Linux writes none of these bits).
TEST_F(ArmLpaeModel, WalkHonoursTableDescriptorLimits)
{
	build();
	set(T2, 4, mk_pte(0x80123, R | W | X | Y | D));
	set(T1, 3, A.mk_table(1, T2) | PXN_TABLE);
	EXPECT_EQ(walk(VA, PTEMU_ACCESS_FETCH), PTEMU_WALK_OK);
	set(T1, 3, A.mk_table(1, T2) | XN_TABLE);
	EXPECT_EQ(walk(VA, PTEMU_ACCESS_FETCH), PTEMU_WALK_PERMISSION);
	EXPECT_EQ(walk(VA, PTEMU_ACCESS_WRITE), PTEMU_WALK_OK);
	set(T1, 3, A.mk_table(1, T2) | AP_TABLE_1);
	EXPECT_EQ(walk(VA, PTEMU_ACCESS_WRITE), PTEMU_WALK_PERMISSION);
	EXPECT_EQ(out.perms, R | X);
}

// 0xC0000000 and up is TTBR1's (TTBCR.T1SZ = 2): never a user translation, no table read.
TEST_F(ArmLpaeModel, WalkRefusesTheKernelQuarter)
{
	build();
	set(T0, 3, A.mk_table(0, T1));
	set(T2, 4, mk_pte(0x80123, R | Y));
	for (uint64_t va : std::initializer_list<uint64_t>{ 0xc0000000ull, 0xc0604567ull,
							     0xffff0000ull, 0xffffffffull }) {
		EXPECT_EQ(walk(va, PTEMU_ACCESS_READ), PTEMU_WALK_PERMISSION) << std::hex << va;
		EXPECT_TRUE(reads.empty()) << std::hex << va;
	}
	// Below it, past TASK_SIZE (modules), TTBR0 is still walked.
	EXPECT_EQ(walk(0xbfffffffull, PTEMU_ACCESS_READ), PTEMU_WALK_TRANSLATION);
	EXPECT_FALSE(reads.empty());
}

TEST_F(ArmLpaeModel, WalkReservedPteEncoding)
{
	build();
	set(T2, 4, mk_pte(0x80123, R | Y) & ~TABLE);	// bits[1:0] = 01 at level 3
	EXPECT_EQ(walk(VA, PTEMU_ACCESS_READ), PTEMU_WALK_BAD_ENTRY);
	EXPECT_EQ(out.level, 2u);
}

// ---- through the core ----------------------------------------------------------------------

// pte_offset_map on arm-lpae fails on a none pmd and on a huge one; a value pmd_bad rejects
// (no table bit) is pmd_trans_huge first, so it fails as a leaf and stays in place.
TEST(ArmLpaeCore, PteOffsetMapFailsOnNoneHugeAndNonTablePmds)
{
	MmHolder h("arm-lpae");
	ASSERT_NE(h.m, nullptr);
	EXPECT_EQ(pte_offset_map(h.pmd, h.addr), nullptr);
	EXPECT_EQ(h.stat(PTEMU_STAT_pte_map_none), 1u);

	for (uint64_t v : std::initializer_list<uint64_t>{ mk_pmd_leaf(0x600, R | Y),
							     mk_pmd_leaf(0x600, Y), VALID, TABLE }) {
		ptemu_entry_store(h.m, ptemu_slot_pa(h.m, h.pmd), v);
		EXPECT_EQ(pte_offset_map(h.pmd, h.addr), nullptr) << std::hex << v;
		EXPECT_EQ(h.rcu_depth(), 0);
		EXPECT_EQ(pmdp_get_lockless(h.pmd).val, v) << std::hex << v;
	}
	EXPECT_EQ(h.stat(PTEMU_STAT_pte_map_leaf), 4u);
	EXPECT_EQ(h.stat(PTEMU_STAT_pte_map_bad), 0u);
	ptemu_entry_store(h.m, ptemu_slot_pa(h.m, h.pmd), 0);
	EXPECT_EQ(h.violations(), 0u) << h.describe();
}

} // namespace
