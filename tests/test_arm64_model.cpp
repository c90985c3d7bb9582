// The arm64 MMU model on its own: descriptor encodings against the VMSAv8-64 and Linux
// bit layouts, classification at every level, and hardware walks of tables hand-built in
// a host buffer that the walker can reach only through its read_entry callback.
#include <gtest/gtest.h>

#include <capstone/capstone.h>
#include <unicorn/unicorn.h>

#include <cstdint>
#include <initializer_list>
#include <tuple>
#include <vector>

#include <ptemu/arch.h>
#include <ptemu/pgtable.h>

#include "../mmu/arm64/arm64.h"
#include "long_walk_memory.h"

namespace {

const ptemu_arch &A48 = ptemu_arch_arm64_48;
const ptemu_arch &A39 = ptemu_arch_arm64_39;

// Descriptor bits that tests flip by hand, spelled out independently of the model.
constexpr uint64_t TABLE = 1ull << 1, USER = 1ull << 6, RDONLY = 1ull << 7, PROT_NONE = 1ull << 58;
// Table descriptor bits (Arm ARM, stage 1 VMSAv8-64 table descriptor).
constexpr uint64_t PXN_TABLE = 1ull << 59, UXN_TABLE = 1ull << 60, AP_TABLE_0 = 1ull << 61,
		   AP_TABLE_1 = 1ull << 62, NS_TABLE = 1ull << 63,
		   IGNORED_TABLE_BITS = (0xffull << 51) | (0x3ffull << 2);

constexpr unsigned R = PTEMU_PROT_READ, W = PTEMU_PROT_WRITE, X = PTEMU_PROT_EXEC;
constexpr unsigned Y = PTEMU_PTE_YOUNG, D = PTEMU_PTE_DIRTY;

constexpr uint64_t SZ_4K = 1ull << 12, SZ_2M = 1ull << 21, SZ_1G = 1ull << 30;

uint64_t swp_entry(uint64_t type, uint64_t offset)
{
	return (type << 3) | (offset << 8);
}

uint64_t mk_pte(const ptemu_arch &a, uint64_t pfn, unsigned flags)
{
	return a.mk_pte(ptemu_leaf{ pfn, flags });
}

uint64_t mk_pmd_leaf(const ptemu_arch &a, uint64_t pfn, unsigned flags)
{
	return a.mk_pmd_leaf(ptemu_leaf{ pfn, flags });
}

// The fixture is simulated physical memory for walks: a plain buffer of little-endian
// descriptors, reachable by the walker only through read_entry, which logs every read.
class Arm64Model : public ::testing::Test, protected LongWalkMemory {
protected:
	Arm64Model() : LongWalkMemory(A48, 16 * SZ_4K) {}

	static constexpr uint64_t T0 = 0x1000, T1 = 0x2000, T2 = 0x3000, T3 = 0x4000;
	// L0 index 1, L1 index 2, L2 index 3, L3 index 4, offset 0x567.
	static constexpr uint64_t VA =
		(1ull << 39) | (2ull << 30) | (3ull << 21) | (4ull << 12) | 0x567;

	ptemu_walk_result out{};

	// The 48-bit chain for VA down to the PTE table.
	void build48()
	{
		set(T0, 1, A48.mk_table(0, T1));
		set(T1, 2, A48.mk_table(1, T2));
		set(T2, 3, A48.mk_table(2, T3));
	}

	ptemu_walk_fault walk(const ptemu_arch &a, uint64_t va, ptemu_access access)
	{
		reads.clear();
		ptemu_walk_fault f = a.hw_walk(&ctx, T0, va, access, &out);
		EXPECT_EQ(f, out.fault);
		return f;
	}
};

// The bits Linux's protection_map[] gives each protection on arm64, for pa 0x12345000.
TEST_F(Arm64Model, MkPteBitPatterns)
{
	struct {
		unsigned flags;
		uint64_t pte;
	} cases[] = {
		// PAGE_NONE: bits[1:0] = 10, PROT_NONE, RDONLY, SH, nG, PXN, UXN
		{ 0, 0x0460000012345b82ull },
		{ Y, 0x0460000012345f82ull },
		{ Y | D, 0x04e0000012345f82ull },
		// PAGE_READONLY: page, USER, RDONLY, SH, (AF), nG, PXN, UXN
		{ R, 0x0060000012345bc3ull },
		{ R | Y, 0x0060000012345fc3ull },
		{ R | Y | D, 0x00e0000012345fc3ull },	// dirty, not writable: PTE_DIRTY only
		// PAGE_SHARED clean: RDONLY with DBM (PTE_WRITE), so the first store faults
		{ R | W | Y, 0x0068000012345fc3ull },
		{ W | Y, 0x0068000012345fc3ull },	// EL0 has no write-only: AP[1] too
		// dirty writable: PTE_DIRTY, RDONLY clear
		{ R | W | Y | D, 0x00e8000012345f43ull },
		{ R | W | D, 0x00e8000012345b43ull },
		// PAGE_READONLY_EXEC: UXN clear, PXN kept
		{ R | X | Y, 0x0020000012345fc3ull },
		// PROT_EXEC alone: PAGE_READONLY_EXEC too, on a CPU without EPAN
		{ X | Y, 0x0020000012345fc3ull },
		{ R | W | X | Y | D, 0x00a8000012345f43ull },
		{ R | W | X | Y, 0x0028000012345fc3ull },
	};

	for (const auto &c : cases) {
		EXPECT_EQ(mk_pte(A48, 0x12345, c.flags), c.pte) << "flags " << c.flags;
		EXPECT_EQ(mk_pte(A39, 0x12345, c.flags), c.pte) << "flags " << c.flags;
	}
	// The output address is bits 47:12.
	EXPECT_EQ(mk_pte(A48, 0xfffffffffull, R | Y), 0x0060ffffffffffc3ull);
}

TEST_F(Arm64Model, MkTableBitPattern)
{
	// Table descriptor with PXNTable (bit 59), as pmd_populate() sets for user tables.
	for (unsigned level = 0; level < 3; level++)
		EXPECT_EQ(A48.mk_table(level, 0x5000), 0x0800000000005003ull) << level;
	for (unsigned level = 0; level < 2; level++)
		EXPECT_EQ(A39.mk_table(level, 0xfffffffff000ull), 0x0800fffffffff003ull) << level;
}

TEST_F(Arm64Model, MkPmdLeafIsBlockDescriptor)
{
	// bits[1:0] = 01, otherwise the page descriptor's bits.
	EXPECT_EQ(mk_pmd_leaf(A48, 0x40000, R | W | Y | D), 0x00e8000040000f41ull);
	EXPECT_EQ(mk_pmd_leaf(A48, 0x40000, R | W | Y), 0x0068000040000fc1ull);
	EXPECT_EQ(mk_pmd_leaf(A48, 0x40200, R | X | Y), 0x0020000040200fc1ull);
	// A PROT_NONE huge pmd: not valid, no table bit, PTE_PROT_NONE.
	EXPECT_EQ(mk_pmd_leaf(A48, 0x40000, Y), 0x0460000040000f80ull);
	EXPECT_EQ(A48.classify(2, mk_pmd_leaf(A48, 0x40000, Y), nullptr), PTEMU_ENTRY_LEAF);
}

// Every flag combination decodes back; write implies read, as AP cannot express it, and
// so does execute without EPAN.
TEST_F(Arm64Model, LeafRoundTrip)
{
	for (const ptemu_arch *a : { &A48, &A39 }) {
		for (unsigned flags = 0; flags < 32; flags++) {
			unsigned want = (flags & (W | X)) ? flags | R : flags;
			ptemu_leaf pte = a->pte_leaf(mk_pte(*a, 0xabcde, flags));
			ptemu_leaf pmd = a->pmd_leaf(mk_pmd_leaf(*a, 0xabc00, flags));

			EXPECT_EQ(pte.pfn, 0xabcdeu) << flags;
			EXPECT_EQ(pte.flags, want) << flags;
			EXPECT_EQ(pmd.pfn, 0xabc00u) << flags;
			EXPECT_EQ(pmd.flags, want) << flags;
			EXPECT_TRUE(a->pte_present(mk_pte(*a, 0xabcde, flags))) << flags;
			EXPECT_FALSE(a->pte_none(mk_pte(*a, 0xabcde, flags))) << flags;
		}
	}
}

// A clean-writable PTE that FEAT_HAFDBS made writable (AP[2] cleared, no PTE_DIRTY) is
// dirty to Linux, as pte_hw_dirty() says.
TEST_F(Arm64Model, HardwareDirtyDecodesDirty)
{
	uint64_t clean = mk_pte(A48, 0x1234, R | W | Y);

	EXPECT_EQ(A48.pte_leaf(clean).flags, R | W | Y);
	EXPECT_EQ(A48.pte_leaf(clean & ~RDONLY).flags, R | W | Y | D);
	// Not writable (no DBM): a clear AP[2] alone is not dirt.
	EXPECT_EQ(A48.pte_leaf(mk_pte(A48, 0x1234, R | Y) & ~RDONLY).flags, R | Y);
}

TEST_F(Arm64Model, NoneIsZeroAtEveryLevel)
{
	for (const ptemu_arch *a : { &A48, &A39 }) {
		for (unsigned level = 0; level < a->nr_levels; level++) {
			EXPECT_EQ(a->none_entry(level), 0u) << a->name << " " << level;
			EXPECT_EQ(a->classify(level, 0, nullptr), PTEMU_ENTRY_NONE);
		}
		EXPECT_TRUE(a->pte_none(0));
		EXPECT_FALSE(a->pte_present(0));
		// A swap entry is neither none nor present.
		EXPECT_FALSE(a->pte_none(swp_entry(1, 0x55)));
		EXPECT_FALSE(a->pte_present(swp_entry(1, 0x55)));
		// All-ones is a valid entry on arm64: it must never be what "none" means.
		EXPECT_FALSE(a->pte_none(~0ull));
		EXPECT_TRUE(a->pte_present(~0ull));
	}
}

TEST_F(Arm64Model, ClassifyPmdLevel)
{
	for (const ptemu_arch *a : { &A48, &A39 }) {
		unsigned pmd = ptemu_pmd_level(a);
		uint64_t table_pa = 0;

		SCOPED_TRACE(a->name);
		EXPECT_EQ(a->classify(pmd, a->mk_table(pmd, 0x7000), &table_pa), PTEMU_ENTRY_TABLE);
		EXPECT_EQ(table_pa, 0x7000u);
		EXPECT_EQ(a->classify(pmd, a->mk_table(pmd, 0x7000), nullptr), PTEMU_ENTRY_TABLE);
		EXPECT_EQ(a->classify(pmd, mk_pmd_leaf(*a, 0x200, R | Y), nullptr),
			  PTEMU_ENTRY_LEAF);
		EXPECT_EQ(a->classify(pmd, 0x40000001ull, nullptr), PTEMU_ENTRY_LEAF);
		// THP migration entries: SWP_MIGRATION_READ, _READ_EXCLUSIVE, _WRITE, with and
		// without the anon-exclusive bit.
		for (uint64_t type = 28; type <= 30; type++) {
			EXPECT_EQ(a->classify(pmd, swp_entry(type, 0x40000), nullptr),
				  PTEMU_ENTRY_MIGRATION) << type;
			EXPECT_EQ(a->classify(pmd, swp_entry(type, 0x40000) | 4, nullptr),
				  PTEMU_ENTRY_MIGRATION) << type;
		}
		// Swap entries of other types, hwpoison (27) and pte markers (31), never
		// appear in a pmd.
		for (uint64_t type : { 0, 1, 26, 27, 31 })
			EXPECT_EQ(a->classify(pmd, swp_entry(type, 0x40000), nullptr),
				  PTEMU_ENTRY_BAD) << type;
		// Not swap-shaped: bits[1:0] = 10, or bits above the offset.
		EXPECT_EQ(a->classify(pmd, swp_entry(30, 0x40000) | TABLE, nullptr),
			  PTEMU_ENTRY_BAD);
		EXPECT_EQ(a->classify(pmd, swp_entry(30, 0x40000) | (1ull << 59), nullptr),
			  PTEMU_ENTRY_BAD);
		// PROT_NONE with the table bit: present, neither huge nor a table.
		EXPECT_EQ(a->classify(pmd, mk_pmd_leaf(*a, 0x200, Y) | TABLE, nullptr),
			  PTEMU_ENTRY_BAD);
	}
}

TEST_F(Arm64Model, ClassifyPteLevel)
{
	for (const ptemu_arch *a : { &A48, &A39 }) {
		unsigned pte = ptemu_pte_level(a);

		SCOPED_TRACE(a->name);
		EXPECT_EQ(a->classify(pte, mk_pte(*a, 0x1234, R | Y), nullptr), PTEMU_ENTRY_LEAF);
		EXPECT_EQ(a->classify(pte, mk_pte(*a, 0x1234, Y), nullptr), PTEMU_ENTRY_LEAF);
		// bits[1:0] = 01 is reserved at L3.
		EXPECT_EQ(a->classify(pte, mk_pte(*a, 0x1234, R | Y) & ~TABLE, nullptr),
			  PTEMU_ENTRY_BAD);
		// Any swap type may sit in a PTE.
		EXPECT_EQ(a->classify(pte, swp_entry(0, 0x99), nullptr), PTEMU_ENTRY_MIGRATION);
		EXPECT_EQ(a->classify(pte, swp_entry(29, 0x99), nullptr), PTEMU_ENTRY_MIGRATION);
		EXPECT_EQ(a->classify(pte, TABLE, nullptr), PTEMU_ENTRY_BAD);
	}
}

TEST_F(Arm64Model, ClassifyUpperLevels)
{
	uint64_t table_pa = 0;
	uint64_t block = mk_pmd_leaf(A48, 0x40000, R | Y);

	// 48-bit L0: tables only; a block is reserved with a 4 KiB granule.
	EXPECT_EQ(A48.classify(0, A48.mk_table(0, 0x3000), &table_pa), PTEMU_ENTRY_TABLE);
	EXPECT_EQ(table_pa, 0x3000u);
	EXPECT_EQ(A48.classify(0, block, nullptr), PTEMU_ENTRY_BAD);
	EXPECT_EQ(A48.classify(0, swp_entry(30, 1), nullptr), PTEMU_ENTRY_BAD);
	EXPECT_EQ(A48.classify(0, PROT_NONE, nullptr), PTEMU_ENTRY_BAD);
	// 48-bit L1 and 39-bit root (also L1): 1 GiB blocks exist.
	EXPECT_EQ(A48.classify(1, block, nullptr), PTEMU_ENTRY_LEAF);
	EXPECT_EQ(A48.classify(1, swp_entry(30, 1), nullptr), PTEMU_ENTRY_BAD);
	EXPECT_EQ(A39.classify(0, block, nullptr), PTEMU_ENTRY_LEAF);
	EXPECT_EQ(A39.classify(0, A39.mk_table(0, 0x6000), &table_pa), PTEMU_ENTRY_TABLE);
	EXPECT_EQ(table_pa, 0x6000u);
	EXPECT_EQ(A39.classify(0, swp_entry(30, 1), nullptr), PTEMU_ENTRY_BAD);
}

TEST_F(Arm64Model, Geometry)
{
	EXPECT_STREQ(A48.name, "arm64");
	EXPECT_STREQ(A39.name, "arm64-39");
	EXPECT_EQ(A48.va_bits, 48u);
	EXPECT_EQ(A48.nr_levels, 4u);
	EXPECT_EQ(A39.va_bits, 39u);
	EXPECT_EQ(A39.nr_levels, 3u);
	for (unsigned l = 0; l < 4; l++)
		EXPECT_EQ(A48.level_shift[l], 39 - 9 * l);
	for (unsigned l = 0; l < 3; l++)
		EXPECT_EQ(A39.level_shift[l], 30 - 9 * l);
	for (const ptemu_arch *a : { &A48, &A39 }) {
		SCOPED_TRACE(a->name);
		// The top level reaches exactly va_bits.
		EXPECT_EQ(a->level_shift[0] + a->level_bits[0], a->va_bits);
		for (unsigned l = 0; l < a->nr_levels; l++) {
			EXPECT_EQ(a->level_bits[l], 9u);
			EXPECT_EQ(a->table_bytes[l], 4096u);
		}
		EXPECT_EQ(a->page_shift, 12u);
		EXPECT_EQ(a->entry_bytes, 8u);
		EXPECT_FALSE(a->big_endian);
		EXPECT_EQ(a->pmd_leaf_shift, 21u);
		EXPECT_EQ(ptemu_pmd_size(a), SZ_2M);
		EXPECT_EQ(a->pte_table_bytes, 4096u);
		EXPECT_EQ(a->tables_per_page, 1u);
		EXPECT_EQ(a->pte_alloc_one, &ptemu_generic_pte_alloc_one);
		EXPECT_EQ(a->pte_free, &ptemu_generic_pte_free);
		EXPECT_EQ(a->pte_free_defer, &ptemu_generic_pte_free_defer);
		EXPECT_EQ(a->mm_destroy_context, nullptr);
		EXPECT_TRUE(a->flush_waits_for_walks);
		EXPECT_FALSE(a->walker_is_rcu_reader);
		EXPECT_EQ(a->retract_flush, PTEMU_RETRACT_FLUSH_RANGE);
		EXPECT_EQ(a->tlb_entries, 1024u);
		EXPECT_EQ(a->walk_cache_entries, 64u);
		EXPECT_EQ(a->isa.uc_arch, UC_ARCH_ARM64);
		EXPECT_EQ(a->isa.uc_mode, UC_MODE_ARM);
		EXPECT_EQ(a->isa.cs_arch, CS_ARCH_ARM64);
		EXPECT_EQ(a->isa.cs_mode, CS_MODE_ARM);
		EXPECT_EQ(a->isa.elf_machine, 183u);
		EXPECT_EQ(a->isa.elf_class, 64u);
		EXPECT_STREQ(a->isa.clang_target, "aarch64-linux-gnu");
		EXPECT_STREQ(a->isa.binutils_triple, "aarch64-linux-gnu");
	}
}

TEST_F(Arm64Model, WalkPageAt4K)
{
	build48();
	set(T3, 4, mk_pte(A48, 0x80123, R | W | X | Y | D));

	ASSERT_EQ(walk(A48, VA, PTEMU_ACCESS_READ), PTEMU_WALK_OK);
	EXPECT_EQ(out.level, 3u);
	EXPECT_EQ(out.paddr, 0x80123567u);
	EXPECT_EQ(out.leaf_size, SZ_4K);
	EXPECT_EQ(out.perms, R | W | X);
	EXPECT_EQ(out.table_pa[0], T0);
	EXPECT_EQ(out.table_pa[1], T1);
	EXPECT_EQ(out.table_pa[2], T2);
	EXPECT_EQ(out.table_pa[3], T3);
	EXPECT_EQ(reads,
		  (std::vector<Read>{ { 0, T0, 1 }, { 1, T1, 2 }, { 2, T2, 3 }, { 3, T3, 4 } }));
	EXPECT_EQ(walk(A48, VA, PTEMU_ACCESS_WRITE), PTEMU_WALK_OK);
	EXPECT_EQ(walk(A48, VA, PTEMU_ACCESS_FETCH), PTEMU_WALK_OK);
}

TEST_F(Arm64Model, WalkBlockAt2M)
{
	build48();
	set(T2, 3, mk_pmd_leaf(A48, 0x80000, R | Y));

	ASSERT_EQ(walk(A48, VA, PTEMU_ACCESS_READ), PTEMU_WALK_OK);
	EXPECT_EQ(out.level, 2u);
	EXPECT_EQ(out.paddr, 0x80004567u);
	EXPECT_EQ(out.leaf_size, SZ_2M);
	EXPECT_EQ(out.perms, R);
	EXPECT_EQ(out.table_pa[2], T2);
	EXPECT_EQ(reads.size(), 3u);
}

TEST_F(Arm64Model, WalkBlockAt1G)
{
	set(T0, 1, A48.mk_table(0, T1));
	set(T1, 2, mk_pmd_leaf(A48, 0x40000, R | W | Y | D));

	ASSERT_EQ(walk(A48, VA, PTEMU_ACCESS_WRITE), PTEMU_WALK_OK);
	EXPECT_EQ(out.level, 1u);
	EXPECT_EQ(out.paddr, 0x40604567u);
	EXPECT_EQ(out.leaf_size, SZ_1G);
	EXPECT_EQ(out.perms, R | W);
	EXPECT_EQ(reads.size(), 2u);
}

// An invalid entry at any level is a translation fault at that level, whatever else its
// bits say (a swap entry, PAGE_NONE): the hardware looks at bit 0 only.
TEST_F(Arm64Model, WalkTranslationFaultAtEachLevel)
{
	const uint64_t tables[] = { T0, T1, T2, T3 };
	const unsigned index[] = { 1, 2, 3, 4 };

	for (unsigned level = 0; level < 4; level++) {
		for (uint64_t invalid : std::initializer_list<uint64_t>{
			     0, swp_entry(30, 0x80123), mk_pte(A48, 0x80123, Y) }) {
			SCOPED_TRACE(testing::Message()
				     << "level " << level << " entry " << invalid);
			build48();
			set(T3, 4, mk_pte(A48, 0x80123, R | Y));
			set(tables[level], index[level], invalid);

			EXPECT_EQ(walk(A48, VA, PTEMU_ACCESS_READ), PTEMU_WALK_TRANSLATION);
			EXPECT_EQ(out.level, level);
			EXPECT_EQ(out.table_pa[level], tables[level]);
			EXPECT_EQ(reads.size(), level + 1);
		}
	}
}

TEST_F(Arm64Model, WalkAccessFlagClear)
{
	build48();
	set(T3, 4, mk_pte(A48, 0x80123, R | W | X | D));

	for (ptemu_access acc : { PTEMU_ACCESS_READ, PTEMU_ACCESS_WRITE, PTEMU_ACCESS_FETCH }) {
		EXPECT_EQ(walk(A48, VA, acc), PTEMU_WALK_ACCESS_FLAG) << acc;
		EXPECT_EQ(out.level, 3u);
	}
	// A block with AF clear, even for an access its permissions refuse: the access
	// flag fault comes first.
	set(T2, 3, mk_pmd_leaf(A48, 0x80000, R));
	EXPECT_EQ(walk(A48, VA, PTEMU_ACCESS_WRITE), PTEMU_WALK_ACCESS_FLAG);
	EXPECT_EQ(out.level, 2u);
}

TEST_F(Arm64Model, WalkStoreToReadOnly)
{
	build48();
	set(T3, 4, mk_pte(A48, 0x80123, R | Y | D));

	EXPECT_EQ(walk(A48, VA, PTEMU_ACCESS_READ), PTEMU_WALK_OK);
	EXPECT_EQ(out.perms, R);
	EXPECT_EQ(walk(A48, VA, PTEMU_ACCESS_WRITE), PTEMU_WALK_PERMISSION);
	EXPECT_EQ(out.level, 3u);
}

// Clean-writable (AP[2] = 1, DBM = 1): with TCR.HD clear the store faults and the kernel
// dirties the PTE; once dirty (AP[2] = 0) the store goes through.
TEST_F(Arm64Model, WalkStoreToCleanWritableFaultsUntilDirty)
{
	build48();
	set(T3, 4, mk_pte(A48, 0x80123, R | W | Y));

	EXPECT_EQ(walk(A48, VA, PTEMU_ACCESS_READ), PTEMU_WALK_OK);
	EXPECT_EQ(out.perms, R);
	EXPECT_EQ(walk(A48, VA, PTEMU_ACCESS_WRITE), PTEMU_WALK_PERMISSION);
	EXPECT_EQ(out.level, 3u);

	set(T3, 4, mk_pte(A48, 0x80123, R | W | Y | D));
	EXPECT_EQ(walk(A48, VA, PTEMU_ACCESS_WRITE), PTEMU_WALK_OK);
	EXPECT_EQ(out.perms, R | W);

	// The same for a huge pmd.
	set(T2, 3, mk_pmd_leaf(A48, 0x80000, R | W | Y));
	EXPECT_EQ(walk(A48, VA, PTEMU_ACCESS_WRITE), PTEMU_WALK_PERMISSION);
	EXPECT_EQ(out.level, 2u);
}

TEST_F(Arm64Model, WalkFetchNeedsUxnClear)
{
	build48();
	set(T3, 4, mk_pte(A48, 0x80123, R | W | Y | D));
	EXPECT_EQ(walk(A48, VA, PTEMU_ACCESS_FETCH), PTEMU_WALK_PERMISSION);
	EXPECT_EQ(out.level, 3u);

	set(T3, 4, mk_pte(A48, 0x80123, R | X | Y));
	EXPECT_EQ(walk(A48, VA, PTEMU_ACCESS_FETCH), PTEMU_WALK_OK);
	EXPECT_EQ(out.perms, R | X);

	// PROT_EXEC alone is readable: v6.6 on a CPU without EPAN maps it PAGE_READONLY_EXEC.
	set(T3, 4, mk_pte(A48, 0x80123, X | Y));
	EXPECT_EQ(walk(A48, VA, PTEMU_ACCESS_READ), PTEMU_WALK_OK);
	EXPECT_EQ(walk(A48, VA, PTEMU_ACCESS_FETCH), PTEMU_WALK_OK);
	EXPECT_EQ(out.perms, R | X);

	// A descriptor without AP[1] and UXN clear (PAGE_EXECONLY, which v6.6 writes only
	// with EPAN): EL0 may fetch but not load.
	set(T3, 4, mk_pte(A48, 0x80123, X | Y) & ~USER);
	EXPECT_EQ(walk(A48, VA, PTEMU_ACCESS_FETCH), PTEMU_WALK_OK);
	EXPECT_EQ(out.perms, X);
	EXPECT_EQ(walk(A48, VA, PTEMU_ACCESS_READ), PTEMU_WALK_PERMISSION);
}

// Hierarchical permissions (TCR_EL1.HPD0 clear): a table descriptor at any level limits
// every leaf below it, for page and block leaves alike, also in bits Linux never writes.
TEST_F(Arm64Model, WalkHonoursTableDescriptorLimits)
{
	const uint64_t table_at[] = { T0, T1, T2 };
	const unsigned index[] = { 1, 2, 3 };

	for (unsigned level = 0; level < 3; level++) {
		SCOPED_TRACE(testing::Message() << "table descriptor at level " << level);
		auto limit = [&](uint64_t bits) {
			build48();
			set(T3, 4, mk_pte(A48, 0x80123, R | W | X | Y | D));
			set(table_at[level], index[level],
			    A48.mk_table(level, level == 2 ? T3 : table_at[level + 1]) | bits);
		};
		// PXNTable, as pmd_populate() writes it, binds EL1 only.
		limit(PXN_TABLE);
		EXPECT_EQ(walk(A48, VA, PTEMU_ACCESS_FETCH), PTEMU_WALK_OK);
		EXPECT_EQ(out.perms, R | W | X);
		// UXNTable: no EL0 fetch, loads and stores as before.
		limit(UXN_TABLE);
		EXPECT_EQ(walk(A48, VA, PTEMU_ACCESS_FETCH), PTEMU_WALK_PERMISSION);
		EXPECT_EQ(out.level, 3u);
		EXPECT_EQ(walk(A48, VA, PTEMU_ACCESS_WRITE), PTEMU_WALK_OK);
		EXPECT_EQ(out.perms, R | W);
		// APTable[0]: no EL0 data access; fetch still follows UXN.
		limit(AP_TABLE_0);
		EXPECT_EQ(walk(A48, VA, PTEMU_ACCESS_READ), PTEMU_WALK_PERMISSION);
		EXPECT_EQ(walk(A48, VA, PTEMU_ACCESS_WRITE), PTEMU_WALK_PERMISSION);
		EXPECT_EQ(walk(A48, VA, PTEMU_ACCESS_FETCH), PTEMU_WALK_OK);
		EXPECT_EQ(out.perms, X);
		// APTable[1]: read-only, even over a dirty writable PTE.
		limit(AP_TABLE_1);
		EXPECT_EQ(walk(A48, VA, PTEMU_ACCESS_WRITE), PTEMU_WALK_PERMISSION);
		EXPECT_EQ(walk(A48, VA, PTEMU_ACCESS_READ), PTEMU_WALK_OK);
		EXPECT_EQ(out.perms, R | X);
		// NSTable (RES0 for a Non-secure stage 1) and the ignored bits change nothing.
		limit(NS_TABLE | IGNORED_TABLE_BITS);
		EXPECT_EQ(walk(A48, VA, PTEMU_ACCESS_WRITE), PTEMU_WALK_OK);
		EXPECT_EQ(out.perms, R | W | X);
	}
	// The limits of two levels add up; a block leaf is limited as a page is.
	build48();
	set(T0, 1, A48.mk_table(0, T1) | UXN_TABLE);
	set(T1, 2, A48.mk_table(1, T2) | AP_TABLE_1);
	set(T2, 3, mk_pmd_leaf(A48, 0x80000, R | W | X | Y | D));
	EXPECT_EQ(walk(A48, VA, PTEMU_ACCESS_READ), PTEMU_WALK_OK);
	EXPECT_EQ(out.level, 2u);
	EXPECT_EQ(out.perms, R);
	EXPECT_EQ(walk(A48, VA, PTEMU_ACCESS_WRITE), PTEMU_WALK_PERMISSION);
	EXPECT_EQ(walk(A48, VA, PTEMU_ACCESS_FETCH), PTEMU_WALK_PERMISSION);
}

// Outside TTBR0's range the walk faults at level 0 without reading a table.
TEST_F(Arm64Model, WalkVaAboveVaBits)
{
	build48();
	set(T0, 0, A48.mk_table(0, T1));
	set(T3, 4, mk_pte(A48, 0x80123, R | Y));

	for (uint64_t va : std::initializer_list<uint64_t>{ 1ull << 48, VA | (1ull << 48),
			     0xffff000000001000ull, VA | (0x5aull << 56) }) {
		EXPECT_EQ(walk(A48, va, PTEMU_ACCESS_READ), PTEMU_WALK_TRANSLATION)
			<< std::hex << va;
		EXPECT_EQ(out.level, 0u);
		EXPECT_TRUE(reads.empty());
	}
	EXPECT_EQ(walk(A48, (1ull << 48) - 1, PTEMU_ACCESS_READ), PTEMU_WALK_TRANSLATION);
	EXPECT_FALSE(reads.empty());	// in range: the root was read, slot 511 is empty
}

TEST_F(Arm64Model, WalkReservedEncodings)
{
	build48();
	// bits[1:0] = 01 at L3
	set(T3, 4, mk_pte(A48, 0x80123, R | Y) & ~TABLE);
	EXPECT_EQ(walk(A48, VA, PTEMU_ACCESS_READ), PTEMU_WALK_BAD_ENTRY);
	EXPECT_EQ(out.level, 3u);
	// a block at L0
	set(T0, 1, mk_pmd_leaf(A48, 0x0, R | Y));
	EXPECT_EQ(walk(A48, VA, PTEMU_ACCESS_READ), PTEMU_WALK_BAD_ENTRY);
	EXPECT_EQ(out.level, 0u);
	EXPECT_EQ(reads.size(), 1u);
}

// The 39-bit variant starts at L1: three reads, a 1 GiB block at its root.
TEST_F(Arm64Model, WalkThreeLevels39)
{
	const uint64_t va = (2ull << 30) | (3ull << 21) | (4ull << 12) | 0x567;

	set(T0, 2, A39.mk_table(0, T1));
	set(T1, 3, A39.mk_table(1, T2));
	set(T2, 4, mk_pte(A39, 0x80123, R | W | Y | D));

	ASSERT_EQ(walk(A39, va, PTEMU_ACCESS_WRITE), PTEMU_WALK_OK);
	EXPECT_EQ(out.level, 2u);
	EXPECT_EQ(out.paddr, 0x80123567u);
	EXPECT_EQ(out.leaf_size, SZ_4K);
	EXPECT_EQ(out.perms, R | W);
	EXPECT_EQ(out.table_pa[0], T0);
	EXPECT_EQ(out.table_pa[1], T1);
	EXPECT_EQ(out.table_pa[2], T2);
	EXPECT_EQ(reads, (std::vector<Read>{ { 0, T0, 2 }, { 1, T1, 3 }, { 2, T2, 4 } }));

	set(T2, 4, mk_pte(A39, 0x80123, R | Y) & ~TABLE);
	EXPECT_EQ(walk(A39, va, PTEMU_ACCESS_READ), PTEMU_WALK_BAD_ENTRY);
	EXPECT_EQ(out.level, 2u);

	set(T1, 3, mk_pmd_leaf(A39, 0x80000, R | Y));
	ASSERT_EQ(walk(A39, va, PTEMU_ACCESS_READ), PTEMU_WALK_OK);
	EXPECT_EQ(out.level, 1u);
	EXPECT_EQ(out.paddr, 0x80004567u);
	EXPECT_EQ(out.leaf_size, SZ_2M);

	set(T0, 2, mk_pmd_leaf(A39, 0x40000, R | Y));
	ASSERT_EQ(walk(A39, va, PTEMU_ACCESS_READ), PTEMU_WALK_OK);
	EXPECT_EQ(out.level, 0u);
	EXPECT_EQ(out.paddr, 0x40604567u);
	EXPECT_EQ(out.leaf_size, SZ_1G);

	set(T0, 2, 0);
	EXPECT_EQ(walk(A39, va, PTEMU_ACCESS_READ), PTEMU_WALK_TRANSLATION);
	EXPECT_EQ(out.level, 0u);

	EXPECT_EQ(walk(A39, va | (1ull << 39), PTEMU_ACCESS_READ), PTEMU_WALK_TRANSLATION);
	EXPECT_EQ(out.level, 0u);
	EXPECT_TRUE(reads.empty());
}

} // namespace
