// The s390 model: entry encodings and DAT against Linux v6.6's bit values (S390Model), and
// v6.6's 2 KiB half bookkeeping with pte_free_defer (S390Halves, kernel-spec 2.5).
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <thread>
#include <vector>

#include <capstone/capstone.h>
#include <unicorn/unicorn.h>

#include <ptemu/arch.h>
#include <ptemu/check.h>
#include <ptemu/machine.h>
#include <ptemu/mm.h>
#include <ptemu/pgtable.h>
#include <ptemu/phys.h>
#include <ptemu/rcu.h>
#include <ptemu/stats.h>
#include <ptemu/sync.h>

#include "../mmu/s390/s390.h"
#include "fixture.h"

namespace {

const ptemu_arch &A = ptemu_arch_s390;

enum : unsigned { R2, R3, SEG, PTE };
enum : unsigned {
	R = PTEMU_PROT_READ,
	W = PTEMU_PROT_WRITE,
	X = PTEMU_PROT_EXEC,
	Y = PTEMU_PTE_YOUNG,
	D = PTEMU_PTE_DIRTY,
};

// ---- encodings -------------------------------------------------------------------------

TEST(S390Model, Geometry)
{
	EXPECT_STREQ(A.name, "s390");
	EXPECT_EQ(A.page_shift, 12u);
	EXPECT_EQ(A.va_bits, 53u);
	ASSERT_EQ(A.nr_levels, 4u);
	const unsigned shift[] = {42, 31, 20, 12}, bits[] = {11, 11, 11, 8};
	const unsigned bytes[] = {16384, 16384, 16384, 2048};
	for (unsigned l = 0; l < 4; l++) {
		EXPECT_EQ(A.level_shift[l], shift[l]) << l;
		EXPECT_EQ(A.level_bits[l], bits[l]) << l;
		EXPECT_EQ(A.table_bytes[l], bytes[l]) << l;
	}
	EXPECT_EQ(A.entry_bytes, 8u);
	EXPECT_TRUE(A.big_endian);
	EXPECT_EQ(A.pmd_leaf_shift, 20u);
	EXPECT_EQ(A.pte_table_bytes, 2048u);
	EXPECT_EQ(A.tables_per_page, 2u);
	EXPECT_TRUE(A.flush_waits_for_walks);
	EXPECT_FALSE(A.walker_is_rcu_reader);
	EXPECT_EQ(A.retract_flush, PTEMU_RETRACT_FLUSH_RANGE);
	EXPECT_EQ(A.tlb_entries, 1024u);
	EXPECT_EQ(A.walk_cache_entries, 64u);
	EXPECT_TRUE(ptemu_injection_applies(INJECT_S390_RELIST_ACTIVE, &A));
	EXPECT_EQ(A.isa.uc_arch, (int)UC_ARCH_S390X);
	EXPECT_EQ(A.isa.uc_mode, (int)UC_MODE_BIG_ENDIAN);
	EXPECT_EQ(A.isa.cs_arch, (int)CS_ARCH_SYSZ);
	EXPECT_EQ(A.isa.cs_mode, (int)CS_MODE_BIG_ENDIAN);
	EXPECT_EQ(A.isa.elf_machine, 22u);
	EXPECT_EQ(A.isa.elf_class, 64u);
	EXPECT_STREQ(A.isa.clang_target, "s390x-linux-gnu");
	EXPECT_STREQ(A.isa.binutils_triple, "s390x-linux-gnu");
}

// _REGION2_ENTRY_EMPTY, _REGION3_ENTRY_EMPTY, _SEGMENT_ENTRY_EMPTY, and pte_none's 0x400:
// zero is not empty anywhere.
TEST(S390Model, NoneEntriesAreTheInvalidPatterns)
{
	const uint64_t none[] = {0x28, 0x24, 0x20, 0x400};
	for (unsigned l = 0; l < 4; l++) {
		EXPECT_EQ(A.none_entry(l), none[l]) << l;
		EXPECT_EQ(A.classify(l, none[l], nullptr), PTEMU_ENTRY_NONE) << l;
		EXPECT_NE(A.classify(l, 0, nullptr), PTEMU_ENTRY_NONE) << l;
	}
	EXPECT_TRUE(A.pte_none(0x400));
	EXPECT_FALSE(A.pte_none(0));
	EXPECT_FALSE(A.pte_present(0x400));
	EXPECT_FALSE(A.pte_none(0x12345000 | 0x400));  // an old pte is not none
}

// _REGION2_ENTRY = type 0x08 | length 0x03, _REGION3_ENTRY = 0x04 | 0x03, a segment entry
// is the bare 2 KiB-aligned page-table origin.
TEST(S390Model, TableEntries)
{
	EXPECT_EQ(A.mk_table(R2, 0x123458000), 0x12345800bu);
	EXPECT_EQ(A.mk_table(R3, 0x7654c000), 0x7654c007u);
	EXPECT_EQ(A.mk_table(SEG, 0x10800), 0x10800u);
	EXPECT_EQ(A.mk_table(SEG, 0x10000), 0x10000u);

	uint64_t t = 0;
	EXPECT_EQ(A.classify(R2, 0x12345800b, &t), PTEMU_ENTRY_TABLE);
	EXPECT_EQ(t, 0x123458000u);
	EXPECT_EQ(A.classify(R3, 0x7654c007, &t), PTEMU_ENTRY_TABLE);
	EXPECT_EQ(t, 0x7654c000u);
	EXPECT_EQ(A.classify(SEG, 0x10800, &t), PTEMU_ENTRY_TABLE);
	EXPECT_EQ(t, 0x10800u);
	// The protect bit is a valid part of a table pointer (EDAT-1 protects the range).
	EXPECT_EQ(A.classify(SEG, 0x10800 | 0x200, &t), PTEMU_ENTRY_TABLE);
	EXPECT_EQ(A.classify(R3, 0x7654c007 | 0x200, &t), PTEMU_ENTRY_TABLE);
}

TEST(S390Model, ClassifyRejectsWhatLinuxNeverWrites)
{
	const uint64_t bad_r2[] = {
		0x8000 | 0x04 | 0x03,	// region-third type in a region-second table
		0x8000 | 0x0c | 0x03,	// region-first type
		0x8000 | 0x00 | 0x03,	// segment type
		0x8000 | 0x08 | 0x03 | 0x20,	// invalid, but with an origin
		0x8000 | 0x08 | 0x03 | 0x40,	// table offset (TF) is not Linux's
		0x08 | 0x03,		// origin 0
	};
	for (uint64_t e : bad_r2)
		EXPECT_EQ(A.classify(R2, e, nullptr), PTEMU_ENTRY_BAD) << std::hex << e;
	const uint64_t bad_r3[] = {
		0xc000 | 0x08 | 0x03,	// region-second type in a region-third table
		0xc000 | 0x04 | 0x03 | 0x400,	// a 2 GiB leaf: no EDAT-2, pud_bad
		0x28,			// region-second empty pattern
	};
	for (uint64_t e : bad_r3)
		EXPECT_EQ(A.classify(R3, e, nullptr), PTEMU_ENTRY_BAD) << std::hex << e;
	const uint64_t bad_seg[] = {
		0x10800 | 0x04,	// type bits in a segment entry
		0x10800 | 0x20,	// invalid, but with an origin
		0x10800 | 0x10,	// common segment in a private space
		0x10800 | 0x40,	// outside _SEGMENT_ENTRY_BITS
		0,		// origin 0: unpoisoned memory, never a table
		0x24,		// region-third empty pattern
		0x100000 | 0x400 | 0x10 | 0x1001,	// leaf with the common bit
		0x100000 | 0x400 | 0x800 | 0x1001,	// leaf with a bit Linux never sets
	};
	for (uint64_t e : bad_seg)
		EXPECT_EQ(A.classify(SEG, e, nullptr), PTEMU_ENTRY_BAD) << std::hex << e;
}

struct PteCase {
	unsigned flags;
	uint64_t bits;	// low 12 bits of Linux's pte for that state
};

// The state table of v6.6's pgtable.h (".IR.uswrdy.p"): not young is hardware-invalid (I),
// writable-but-clean and read-only are hardware-protected (R); NOEXEC (0x100) unless
// executable; write and exec imply read.
const PteCase kPteCases[] = {
	{0, 0x601},		{Y, 0x605},		{D, 0x609},		{Y | D, 0x60d},
	{R, 0x711},		{R | Y, 0x315},		{R | D, 0x719},		{R | Y | D, 0x31d},
	{R | X, 0x611},		{R | X | Y, 0x215},	{R | X | D, 0x619},	{R | X | Y | D, 0x21d},
	{R | W, 0x731},		{R | W | Y, 0x335},	{R | W | D, 0x539},	{R | W | Y | D, 0x13d},
	{R | W | X, 0x631},	{R | W | X | Y, 0x235},	{R | W | X | D, 0x439},
	{R | W | X | Y | D, 0x03d},
};

TEST(S390Model, PteEncodingPerFlagCombination)
{
	const uint64_t pfn = 0x12345;
	for (const PteCase &c : kPteCases) {
		uint64_t pte = A.mk_pte({pfn, c.flags});
		EXPECT_EQ(pte, (pfn << 12) | c.bits) << "flags " << c.flags;
		EXPECT_TRUE(A.pte_present(pte));
		EXPECT_FALSE(A.pte_none(pte));
		EXPECT_EQ(A.classify(PTE, pte, nullptr), PTEMU_ENTRY_LEAF);
		ptemu_leaf l = A.pte_leaf(pte);
		EXPECT_EQ(l.pfn, pfn);
		EXPECT_EQ(l.flags, c.flags) << "flags " << c.flags;
	}
	// Write or exec alone are read-write and read-exec, as protection_map[] has them.
	EXPECT_EQ(A.mk_pte({1, W | Y | D}), A.mk_pte({1, R | W | Y | D}));
	EXPECT_EQ(A.mk_pte({1, X | Y}), A.mk_pte({1, R | X | Y}));
}

TEST(S390Model, PteKinds)
{
	// A swap (migration) pte: .11..ttttt.0, (pte & 0x201) == 0x200.
	EXPECT_EQ(A.classify(PTE, 0x12345000 | 0x600 | 0x0c, nullptr), PTEMU_ENTRY_MIGRATION);
	EXPECT_FALSE(A.pte_present(0x12345000 | 0x600 | 0x0c));
	EXPECT_EQ(A.classify(PTE, 0x12345000 | 0x002, nullptr), PTEMU_ENTRY_BAD);
	EXPECT_EQ(A.classify(PTE, 0x12345000 | 0x800 | 0x031, nullptr), PTEMU_ENTRY_BAD);
}

struct PmdCase {
	unsigned flags;
	uint64_t bits;	// the low 20 bits, "dy..R...I...wr" plus LARGE and NOEXEC
};

// massage_pgprot_pmd, then pmd_mkhuge (large, young, protected) and the pmd_mk* helpers.
const PmdCase kPmdCases[] = {
	{Y, 0x1620},		// prot-none, young: still invalid
	{R | Y, 0x1701},	// read-only, young
	{R | X | D, 0x2621},	// read-exec, dirty, old
	{R | W, 0x0723},	// read-write, clean, old
	{R | W | Y, 0x1703},	// read-write, clean, young: protected until dirty
	{R | W | D, 0x2523},	// read-write, dirty, old: invalid until young
	{R | W | Y | D, 0x3503},
	{R | W | X | Y, 0x1603},
	{R | W | X | Y | D, 0x3403},
};

TEST(S390Model, SegmentLeafEncoding)
{
	const uint64_t pfn = 0x300 << 8;  // 1 MiB frame 0x300
	for (const PmdCase &c : kPmdCases) {
		uint64_t pmd = A.mk_pmd_leaf({pfn, c.flags});
		EXPECT_EQ(pmd, (pfn << 12) | c.bits) << "flags " << c.flags;
		EXPECT_EQ(A.classify(SEG, pmd, nullptr), PTEMU_ENTRY_LEAF) << "flags " << c.flags;
		ptemu_leaf l = A.pmd_leaf(pmd);
		EXPECT_EQ(l.pfn, pfn);
		EXPECT_EQ(l.flags, c.flags) << "flags " << c.flags;
	}
}

// ---- DAT -------------------------------------------------------------------------------

// Tables in a plain host buffer addressed from 0, entries big-endian as in s390 memory.
class Dat {
      public:
	static constexpr uint64_t kR2 = 0x4000, kR3 = 0x8000, kSeg = 0xc000;
	static constexpr uint64_t kPt = 0x10800;  // the upper half of its page
	static constexpr uint64_t kVa = (3ull << 42) | (5ull << 31) | (7ull << 20) | (9ull << 12) | 0x123;

	struct Read {
		unsigned level;
		uint64_t table;
		unsigned index;
		bool operator==(const Read &o) const
		{
			return level == o.level && table == o.table && index == o.index;
		}
	};

	Dat() : mem_(0x14000)
	{
		fill(kR2, 2048, 0x28);
		fill(kR3, 2048, 0x24);
		fill(kSeg, 2048, 0x20);
		fill(kPt, 256, 0x400);
		ctx_.read_entry = read;
		ctx_.opaque = this;
	}

	void set(uint64_t table, unsigned index, uint64_t v)
	{
		for (int i = 0; i < 8; i++)
			mem_[table + index * 8ull + i] = uint8_t(v >> (56 - 8 * i));
	}
	// Maps kVa's page through every level, with Linux's table entries.
	void map(uint64_t pte)
	{
		set(kR2, 3, kR3 | 0x0b);
		set(kR3, 5, kSeg | 0x07);
		set(kSeg, 7, kPt);
		set(kPt, 9, pte);
	}
	ptemu_walk_result walk(ptemu_access acc, uint64_t va = kVa)
	{
		ptemu_walk_result r{};
		reads.clear();
		ptemu_walk_fault f = A.hw_walk(&ctx_, kR2, va, acc, &r);
		EXPECT_EQ(f, r.fault);
		return r;
	}

	std::vector<Read> reads;

      private:
	void fill(uint64_t table, unsigned n, uint64_t v)
	{
		for (unsigned i = 0; i < n; i++)
			set(table, i, v);
	}
	static uint64_t read(const ptemu_walk_ctx *ctx, unsigned level, uint64_t table, unsigned index)
	{
		Dat *d = static_cast<Dat *>(ctx->opaque);
		uint64_t v = 0;
		d->reads.push_back({level, table, index});
		for (int i = 0; i < 8; i++)
			v = (v << 8) | d->mem_[table + index * 8ull + i];
		return v;
	}

	std::vector<uint8_t> mem_;
	ptemu_walk_ctx ctx_;
};

TEST(S390Model, Walk4KPage)
{
	Dat d;
	d.map(A.mk_pte({0x4321, R | W | Y | D}));
	ptemu_walk_result r = d.walk(PTEMU_ACCESS_WRITE);
	EXPECT_EQ(r.fault, PTEMU_WALK_OK);
	EXPECT_EQ(r.level, PTE);
	EXPECT_EQ(r.paddr, 0x4321123u);
	EXPECT_EQ(r.leaf_size, 4096u);
	EXPECT_EQ(r.perms, R | W);  // NOEXEC: no fetch
	EXPECT_EQ(r.table_pa[R2], Dat::kR2);
	EXPECT_EQ(r.table_pa[R3], Dat::kR3);
	EXPECT_EQ(r.table_pa[SEG], Dat::kSeg);
	EXPECT_EQ(r.table_pa[PTE], Dat::kPt);
	const std::vector<Dat::Read> want = {
		{R2, Dat::kR2, 3}, {R3, Dat::kR3, 5}, {SEG, Dat::kSeg, 7}, {PTE, Dat::kPt, 9}};
	EXPECT_EQ(d.reads, want);
	EXPECT_EQ(d.walk(PTEMU_ACCESS_READ).fault, PTEMU_WALK_OK);
	EXPECT_EQ(d.walk(PTEMU_ACCESS_FETCH).fault, PTEMU_WALK_PERMISSION);
}

TEST(S390Model, WalkSegmentLeaf)
{
	Dat d;
	d.map(0x400);
	d.set(Dat::kSeg, 7, A.mk_pmd_leaf({0x500 << 8, R | W | X | Y | D}));
	ptemu_walk_result r = d.walk(PTEMU_ACCESS_FETCH);
	EXPECT_EQ(r.fault, PTEMU_WALK_OK);
	EXPECT_EQ(r.level, SEG);
	EXPECT_EQ(r.paddr, 0x50000000u | (Dat::kVa & 0xfffff));
	EXPECT_EQ(r.leaf_size, 1u << 20);
	EXPECT_EQ(r.perms, R | W | X);
	EXPECT_EQ(d.reads.size(), 3u);  // the page table is not read
	EXPECT_EQ(d.walk(PTEMU_ACCESS_WRITE).fault, PTEMU_WALK_OK);
	// An old huge pmd is invalid: the first access faults, as for ptes.
	d.set(Dat::kSeg, 7, A.mk_pmd_leaf({0x500 << 8, R | W | D}));
	r = d.walk(PTEMU_ACCESS_READ);
	EXPECT_EQ(r.fault, PTEMU_WALK_TRANSLATION);
	EXPECT_EQ(r.level, SEG);
}

TEST(S390Model, WalkInvalidAtEachLevel)
{
	const uint64_t table[] = {Dat::kR2, Dat::kR3, Dat::kSeg, Dat::kPt};
	const unsigned index[] = {3, 5, 7, 9};
	for (unsigned l = 0; l < 4; l++) {
		Dat d;
		d.map(A.mk_pte({0x4321, R | Y}));
		d.set(table[l], index[l], A.none_entry(l));
		ptemu_walk_result r = d.walk(PTEMU_ACCESS_READ);
		EXPECT_EQ(r.fault, PTEMU_WALK_TRANSLATION) << l;
		EXPECT_EQ(r.level, l);
		EXPECT_EQ(d.reads.size(), l + 1);
		EXPECT_EQ(r.table_pa[l], table[l]);
	}
}

// A present pte that is not young is hardware-invalid: the first access faults.
TEST(S390Model, WalkOldPteFaults)
{
	Dat d;
	d.map(A.mk_pte({0x4321, R | W | D}));
	ptemu_walk_result r = d.walk(PTEMU_ACCESS_READ);
	EXPECT_EQ(r.fault, PTEMU_WALK_TRANSLATION);
	EXPECT_EQ(r.level, PTE);
}

TEST(S390Model, WalkTypeMismatchIsBadEntry)
{
	struct Case {
		unsigned level;
		uint64_t table;
		unsigned index;
		uint64_t entry;
	} cases[] = {
		{R2, Dat::kR2, 3, Dat::kR3 | 0x04 | 0x03},	// region-third type
		{R2, Dat::kR2, 3, Dat::kR3 | 0x0c | 0x03},	// region-first type
		{R3, Dat::kR3, 5, Dat::kSeg | 0x08 | 0x03},	// region-second type
		{R3, Dat::kR3, 5, Dat::kSeg | 0x00 | 0x03},	// segment type
		{SEG, Dat::kSeg, 7, Dat::kPt | 0x04},		// region-third type
		{SEG, Dat::kSeg, 7, Dat::kPt | 0x10},		// common segment, private space
		{PTE, Dat::kPt, 9, 0x4321000 | 0x800 | 0x035},	// bit 52 set in a valid pte
	};
	for (const Case &c : cases) {
		Dat d;
		d.map(A.mk_pte({0x4321, R | Y}));
		d.set(c.table, c.index, c.entry);
		ptemu_walk_result r = d.walk(PTEMU_ACCESS_READ);
		EXPECT_EQ(r.fault, PTEMU_WALK_BAD_ENTRY) << std::hex << c.entry;
		EXPECT_EQ(r.level, c.level) << std::hex << c.entry;
	}
}

TEST(S390Model, WalkProtectOnStore)
{
	Dat d;
	d.map(A.mk_pte({0x4321, R | Y | D}));
	ptemu_walk_result r = d.walk(PTEMU_ACCESS_READ);
	EXPECT_EQ(r.fault, PTEMU_WALK_OK);
	EXPECT_EQ(r.perms, (unsigned)R);
	r = d.walk(PTEMU_ACCESS_WRITE);
	EXPECT_EQ(r.fault, PTEMU_WALK_PERMISSION);
	EXPECT_EQ(r.level, PTE);

	// Writable but clean: protected, so the first store faults and Linux marks it dirty.
	d.map(A.mk_pte({0x4321, R | W | Y}));
	EXPECT_EQ(d.walk(PTEMU_ACCESS_READ).fault, PTEMU_WALK_OK);
	EXPECT_EQ(d.walk(PTEMU_ACCESS_WRITE).fault, PTEMU_WALK_PERMISSION);

	// DAT protection in a segment or region entry covers everything below it (EDAT-1).
	d.map(A.mk_pte({0x4321, R | W | Y | D}));
	EXPECT_EQ(d.walk(PTEMU_ACCESS_WRITE).fault, PTEMU_WALK_OK);
	d.set(Dat::kSeg, 7, Dat::kPt | 0x200);
	EXPECT_EQ(d.walk(PTEMU_ACCESS_WRITE).fault, PTEMU_WALK_PERMISSION);
	d.map(A.mk_pte({0x4321, R | W | Y | D}));
	d.set(Dat::kR3, 5, Dat::kSeg | 0x07 | 0x200);
	EXPECT_EQ(d.walk(PTEMU_ACCESS_WRITE).fault, PTEMU_WALK_PERMISSION);
	EXPECT_EQ(d.walk(PTEMU_ACCESS_READ).fault, PTEMU_WALK_OK);
}

TEST(S390Model, WalkNoexecOnFetch)
{
	Dat d;
	d.map(A.mk_pte({0x4321, R | Y}));
	ptemu_walk_result r = d.walk(PTEMU_ACCESS_FETCH);
	EXPECT_EQ(r.fault, PTEMU_WALK_PERMISSION);
	EXPECT_EQ(r.perms & X, 0u);
	EXPECT_EQ(d.walk(PTEMU_ACCESS_READ).fault, PTEMU_WALK_OK);

	d.map(A.mk_pte({0x4321, R | X | Y}));
	r = d.walk(PTEMU_ACCESS_FETCH);
	EXPECT_EQ(r.fault, PTEMU_WALK_OK);
	EXPECT_EQ(r.perms, R | X);
	// A large segment leaf has its own IEP bit.
	d.set(Dat::kSeg, 7, A.mk_pmd_leaf({0x500 << 8, R | Y | D}));
	r = d.walk(PTEMU_ACCESS_FETCH);
	EXPECT_EQ(r.fault, PTEMU_WALK_PERMISSION);
	EXPECT_EQ(r.level, SEG);
}

// IEP exists only in a page-table entry and a large leaf: bit 0x100 of a region entry or
// of a segment entry pointing at a page table means nothing to the machine, although
// Linux names it _REGION_ENTRY_NOEXEC / _SEGMENT_ENTRY_NOEXEC. Nor does a region-third
// entry's format control without EDAT-2, nor 0x400 of a region-second entry.
TEST(S390Model, WalkIgnoresBitsTheMachineDoesNotDefine)
{
	Dat d;
	d.map(A.mk_pte({0x4321, R | W | X | Y | D}));
	d.set(Dat::kR2, 3, Dat::kR3 | 0x0b | 0x100 | 0x400);
	d.set(Dat::kR3, 5, Dat::kSeg | 0x07 | 0x100 | 0x400);
	d.set(Dat::kSeg, 7, Dat::kPt | 0x100);
	for (ptemu_access acc : {PTEMU_ACCESS_READ, PTEMU_ACCESS_WRITE, PTEMU_ACCESS_FETCH}) {
		ptemu_walk_result r = d.walk(acc);
		EXPECT_EQ(r.fault, PTEMU_WALK_OK) << acc;
		EXPECT_EQ(r.level, PTE) << acc;
		EXPECT_EQ(r.paddr, 0x4321123u) << acc;
		EXPECT_EQ(r.perms, R | W | X) << acc;
	}
	// The pte's own IEP still binds.
	d.set(Dat::kPt, 9, A.mk_pte({0x4321, R | W | Y | D}));
	EXPECT_EQ(d.walk(PTEMU_ACCESS_FETCH).fault, PTEMU_WALK_PERMISSION);
}

TEST(S390Model, WalkAddressOutsideRegionSecondSpace)
{
	Dat d;
	d.map(A.mk_pte({0x4321, R | Y}));
	ptemu_walk_result r = d.walk(PTEMU_ACCESS_READ, Dat::kVa | (1ull << 53));
	EXPECT_EQ(r.fault, PTEMU_WALK_TRANSLATION);
	EXPECT_EQ(r.level, R2);
	EXPECT_TRUE(d.reads.empty());
}

// A region entry's table length bounds the part of the next table that exists.
TEST(S390Model, WalkTableLengthBoundsNextTable)
{
	Dat d;
	d.map(A.mk_pte({0x4321, R | Y}));
	d.set(Dat::kR2, 3, Dat::kR3 | 0x08);  // TL 0: region-third entries 0-511 only
	EXPECT_EQ(d.walk(PTEMU_ACCESS_READ).fault, PTEMU_WALK_OK);
	uint64_t va = (3ull << 42) | (600ull << 31);
	ptemu_walk_result r = d.walk(PTEMU_ACCESS_READ, va);
	EXPECT_EQ(r.fault, PTEMU_WALK_TRANSLATION);
	EXPECT_EQ(r.level, R2);
	EXPECT_EQ(d.reads.size(), 1u);
}

// ---- 2 KiB halves ------------------------------------------------------------------------

constexpr uint64_t kAddr = 1ull << 30;

class S390Halves : public testing::Test {
      protected:
	virtual ptemu_injection injection() const { return INJECT_NONE; }

	void SetUp() override
	{
		ptemu_machine_config cfg{};
		cfg.arch = &ptemu_arch_s390;
		cfg.phys_bytes = 64ull << 20;
		cfg.check_mode = PTEMU_CHECK_CONTINUE;
		cfg.inject = injection();
		char err[256] = "";
		m = ptemu_machine_create(&cfg, err, sizeof(err));
		ASSERT_NE(m, nullptr) << err;
		ASSERT_NE(ptemu_thread_register(m, "test"), nullptr);
		baseline = pages();
		mm = mm_alloc(m);
		ASSERT_NE(mm, nullptr);
		// The upper tables over kAddr, so that page counts in the tests see PTE tables only.
		ASSERT_NE(pmd_alloc_path(mm, kAddr), nullptr);
	}

	void TearDown() override
	{
		if (mm)
			mm_destroy(mm);
		rcu_barrier();
		if (m && injection() == INJECT_NONE) {
			EXPECT_EQ(pages(), baseline) << "pages leaked";
			EXPECT_EQ(check_violation_count(m), 0u) << describe();
		}
		ptemu_thread_unregister();
		ptemu_machine_destroy(m);
	}

	uint64_t pages() const { return phys_stats(m->phys).pages_allocated; }
	page *page_of(uint64_t table) const { return pfn_to_page(m->phys, table >> 12); }
	uint32_t bits(uint64_t table) const
	{
		return __atomic_load_n(&page_of(table)->pt_frag, __ATOMIC_ACQUIRE);
	}
	ptemu_table_state state(uint64_t table) const { return check_table_state(m, table); }
	std::string describe() const
	{
		size_t n = 0;
		const ptemu_violation *v = check_violations(m, &n);
		std::string s;
		for (size_t i = 0; i < n && i < 8; i++)
			s += std::string(ptemu_violation_name(v[i].kind)) + ": " + v[i].message + "\n";
		return s;
	}

	void attach_and_detach(uint64_t table, uint64_t addr) { ptemu_test::attach_and_detach(mm, table, addr); }

	ptemu_machine *m = nullptr;
	mm_struct *mm = nullptr;
	uint64_t baseline = 0;
};

TEST_F(S390Halves, TwoAllocationsAreTheHalvesOfOnePage)
{
	uint64_t before = pages();
	uint64_t a = pte_alloc_one(mm), b = pte_alloc_one(mm);
	ASSERT_NE(a, 0u);
	EXPECT_EQ(a % 4096, 0u);  // a fresh page hands out its lower half first
	EXPECT_EQ(b, a + 2048);
	EXPECT_EQ(page_of(a), page_of(b));
	EXPECT_EQ(pages(), before + 1);
	EXPECT_EQ(bits(a), 0x03u);  // AA: both halves allocated
	EXPECT_TRUE(PageFlag(page_of(a), PG_table));
	EXPECT_EQ(state(a), TABLE_ALLOCATED);
	EXPECT_EQ(state(b), TABLE_ALLOCATED);
	for (unsigned i = 0; i < 512; i++)
		EXPECT_EQ(ptemu_entry_load(m, a + i * 8ull), 0x400u) << i;
	// Both halves share the page's split lock.
	pmd_t pa = __pmd(A.mk_table(SEG, a)), pb = __pmd(A.mk_table(SEG, b));
	EXPECT_EQ(pte_lockptr(mm, &pa), pte_lockptr(mm, &pb));
	pte_free(mm, a);
	pte_free(mm, b);
}

TEST_F(S390Halves, FreedHalfIsReusedAtOnce)
{
	uint64_t a = pte_alloc_one(mm), b = pte_alloc_one(mm);
	uint32_t gen = check_table_generation(m, a);
	pte_free(mm, a);
	EXPECT_EQ(bits(b), 0x02u);  // AA upper; PP already cleared: the free was immediate
	EXPECT_EQ(state(a), TABLE_FREE);
	uint64_t before = pages();
	uint64_t c = pte_alloc_one(mm);
	EXPECT_EQ(c, a);
	EXPECT_EQ(pages(), before);
	EXPECT_EQ(state(c), TABLE_ALLOCATED);
	EXPECT_NE(check_table_generation(m, c), gen);  // a stale pointer would see the reuse
	pte_free(mm, b);
	EXPECT_EQ(pte_alloc_one(mm), b);
	pte_free(mm, b);
	pte_free(mm, c);
}

// page_table_free() lists the page under context.lock and clears the half's PP bit after
// dropping it; an allocation in that window must not take the half. The window is
// recreated by setting PP by hand.
TEST_F(S390Halves, HalfWithFreeInFlightIsNotHandedOut)
{
	uint64_t a = pte_alloc_one(mm), b = pte_alloc_one(mm);
	pte_free(mm, a);
	ASSERT_EQ(bits(b), 0x02u);
	__atomic_fetch_or(&page_of(a)->pt_frag, 0x10u, __ATOMIC_ACQ_REL);
	uint64_t c = pte_alloc_one(mm);
	EXPECT_NE(page_of(c), page_of(a));
	EXPECT_EQ(bits(b), 0x12u);  // untouched
	// The fresh page went to the head of the list; once its upper half is taken, the
	// page behind it offers the half whose free has completed.
	__atomic_fetch_and(&page_of(a)->pt_frag, ~0x10u, __ATOMIC_ACQ_REL);
	uint64_t d = pte_alloc_one(mm);
	EXPECT_EQ(d, c + 2048);
	EXPECT_EQ(pte_alloc_one(mm), a);
	pte_free(mm, a);
	pte_free(mm, b);
	pte_free(mm, c);
	pte_free(mm, d);
}

TEST_F(S390Halves, PageFreedAtOnceWhenBothHalvesFreedImmediately)
{
	uint64_t before = pages();
	uint64_t a = pte_alloc_one(mm), b = pte_alloc_one(mm);
	pte_free(mm, b);
	EXPECT_EQ(pages(), before + 1);
	pte_free(mm, a);
	EXPECT_EQ(pages(), before);  // no grace period needed: nothing was deferred
	EXPECT_EQ(state(a), TABLE_FREE);
	EXPECT_EQ(state(b), TABLE_FREE);
	EXPECT_EQ(ptemu_stat_get(&m->stats, PTEMU_STAT_tables_freed_now), 2u);
}

TEST_F(S390Halves, DeferredHalfIsNeverHandedOutAgain)
{
	uint64_t a = pte_alloc_one(mm), b = pte_alloc_one(mm);
	attach_and_detach(a, kAddr);
	pte_free_defer(mm, a);
	EXPECT_EQ(state(a), TABLE_RCU_PENDING);
	EXPECT_TRUE(PageFlag(page_of(a), PG_active));
	EXPECT_EQ(bits(a), 0x02u);
	std::vector<uint64_t> tables;
	for (int round = 0; round < 2; round++) {
		for (int i = 0; i < 64; i++) {
			uint64_t t = pte_alloc_one(mm);
			ASSERT_NE(t, 0u);
			EXPECT_NE(page_of(t), page_of(a)) << "half of a page with a deferred half reused";
			tables.push_back(t);
		}
		// A grace period changes nothing while the other half lives.
		rcu_barrier();
		EXPECT_EQ(state(a), TABLE_RCU_PENDING);
		EXPECT_TRUE(PageFlag(page_of(a), PG_table));
	}
	for (uint64_t t : tables)
		pte_free(mm, t);
	pte_free(mm, b);
	rcu_barrier();
	EXPECT_EQ(state(a), TABLE_FREE);
}

TEST_F(S390Halves, DeferredPageFreedOnlyAfterBothHalvesAndGracePeriod)
{
	uint64_t before = pages();
	uint64_t a = pte_alloc_one(mm), b = pte_alloc_one(mm);
	attach_and_detach(b, kAddr);
	pte_free_defer(mm, b);
	rcu_barrier();
	EXPECT_EQ(pages(), before + 1);  // the lower half still lives
	EXPECT_EQ(state(b), TABLE_RCU_PENDING);

	// Hold a read-side section across the last free, so that the grace period cannot
	// end before the checks.
	rcu_read_lock();
	pte_free(mm, a);
	EXPECT_EQ(state(a), TABLE_FREE);
	EXPECT_EQ(state(b), TABLE_RCU_PENDING);
	EXPECT_EQ(pages(), before + 1);
	EXPECT_FALSE(PageFlag(page_of(a), PG_active));  // test-and-cleared when queued
	EXPECT_TRUE(list_empty(&mm->context.pgtable_list));
	rcu_read_unlock();

	rcu_barrier();
	EXPECT_EQ(pages(), before);
	EXPECT_EQ(state(b), TABLE_FREE);
	EXPECT_EQ(ptemu_stat_get(&m->stats, PTEMU_STAT_tables_rcu_freed), 1u);
}

TEST_F(S390Halves, BothHalvesDeferred)
{
	uint64_t before = pages();
	uint64_t a = pte_alloc_one(mm), b = pte_alloc_one(mm);
	attach_and_detach(a, kAddr);
	attach_and_detach(b, kAddr + (1ull << 20));
	pte_free_defer(mm, a);
	rcu_read_lock();
	pte_free_defer(mm, b);
	EXPECT_EQ(pages(), before + 1);
	EXPECT_EQ(bits(a), 0u);
	rcu_read_unlock();
	rcu_barrier();
	EXPECT_EQ(pages(), before);
	EXPECT_EQ(state(a), TABLE_FREE);
	EXPECT_EQ(state(b), TABLE_FREE);
	EXPECT_EQ(ptemu_stat_get(&m->stats, PTEMU_STAT_tables_rcu_freed), 2u);
}

// The other half was freed first and listed its page; deferring the last half must take the
// page off the list, or the next allocation would hand out a half of a page in RCU.
TEST_F(S390Halves, DeferringTheLastHalfTakesThePageOffTheList)
{
	uint64_t a = pte_alloc_one(mm), b = pte_alloc_one(mm);
	pte_free(mm, b);
	EXPECT_FALSE(list_empty(&mm->context.pgtable_list));
	attach_and_detach(a, kAddr);
	// Inside a read-side section the page cannot have been freed and reallocated, so
	// getting a half of it back could only mean it was still listed.
	rcu_read_lock();
	pte_free_defer(mm, a);
	EXPECT_TRUE(list_empty(&mm->context.pgtable_list));
	uint64_t c = pte_alloc_one(mm);
	EXPECT_NE(page_of(c), page_of(a));
	rcu_read_unlock();
	pte_free(mm, c);
}

// Threads allocate, free and defer halves of shared pages concurrently. A half whose free
// is in flight (PP) or deferred must never be handed out: the checker would see a table
// allocated while not free.
TEST_F(S390Halves, ConcurrentAllocFreeDefer)
{
	constexpr int kThreads = 4, kSlots = 32, kOps = 4000;
	std::vector<pmd_t *> slots(kThreads * kSlots);
	for (int i = 0; i < kThreads * kSlots; i++)
		ASSERT_NE(slots[i] = pmd_alloc_path(mm, kAddr + (uint64_t(i) << 20)), nullptr);
	uint64_t before = pages();

	auto worker = [&](int id) {
		ptemu_thread_register(m, "worker");
		std::mt19937 rng(id);
		std::vector<uint64_t> held;
		for (int op = 0; op < kOps; op++) {
			unsigned r = rng() % 8;
			if (r < 3 && held.size() < 8) {
				uint64_t t = pte_alloc_one(mm);
				if (t)
					held.push_back(t);
			} else if (r < 6 && !held.empty()) {
				size_t i = rng() % held.size();
				pte_free(mm, held[i]);
				held[i] = held.back();
				held.pop_back();
			} else {
				int slot = id * kSlots + int(rng() % kSlots);
				uint64_t addr = kAddr + (uint64_t(slot) << 20);
				pmd_t *pmdp = slots[slot];
				uint64_t t = pte_alloc_one(mm), table = t;
				if (!t)
					continue;
				pmd_install(mm, pmdp, &t);
				pmd_t val = pmdp_get_lockless(pmdp);
				ptemu_spinlock *pml = pmd_lock(mm, pmdp);
				ptemu_spinlock *ptl = pte_lockptr(mm, &val);
				spin_lock(ptl);
				pmdp_collapse_flush(mm, addr, pmdp);
				mm_inc_pgtables(mm, -(int64_t)A.pte_table_bytes);
				spin_unlock(ptl);
				spin_unlock(pml);
				pte_free_defer(mm, table);
			}
		}
		for (uint64_t t : held)
			pte_free(mm, t);
		ptemu_thread_unregister();
	};
	std::vector<std::thread> threads;
	for (int i = 0; i < kThreads; i++)
		threads.emplace_back(worker, i);
	for (std::thread &t : threads)
		t.join();
	rcu_barrier();
	EXPECT_EQ(pages(), before);
	EXPECT_TRUE(list_empty(&mm->context.pgtable_list));
	EXPECT_GT(ptemu_stat_get(&m->stats, PTEMU_STAT_tables_rcu_freed), 0u);
	EXPECT_EQ(check_violation_count(m), 0u) << describe();
}

class S390HalvesRelistActivePage : public S390Halves {
      protected:
	ptemu_injection injection() const override { return INJECT_S390_RELIST_ACTIVE; }
};

// With the injection, freeing a half re-lists its page even when it is Active, so the
// deferred half is handed out before its grace period: the checker must catch it.
TEST_F(S390HalvesRelistActivePage, DeferredHalfHandedOutAgainIsCaught)
{
	uint64_t a = pte_alloc_one(mm), b = pte_alloc_one(mm);
	attach_and_detach(a, kAddr);
	pte_free_defer(mm, a);
	EXPECT_EQ(check_kind_count(m, VIOLATION_PT_USE_AFTER_FREE), 0u);
	uint64_t c = pte_alloc_one(mm);
	EXPECT_EQ(c, a);
	EXPECT_GT(check_kind_count(m, VIOLATION_PT_USE_AFTER_FREE), 0u) << describe();
	pte_free(mm, c);
	pte_free(mm, b);
}

} // namespace
