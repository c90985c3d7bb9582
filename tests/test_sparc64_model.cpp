// The sparc64 model on its own: sun4v TTEs as v6.6's pgtable_64.h builds them, the TSBs
// (indexing, tags, the probe and its atomic pair read), the TSB-miss walk over hand-built
// tables and as an RCU reader, tlb_batch (batched in lazy-MMU mode, at once outside it,
// tlb_batch_pmd_scan over a detached table), the register-window spill and fill handled
// by the host (one that faults included), and the two sparc64 injections.
#include <gtest/gtest.h>

#include <capstone/capstone.h>
#include <unicorn/unicorn.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <iterator>
#include <vector>

#include <ptemu/mmu_gather.h>
#include <ptemu/run.h>
#include <ptemu/uaccess.h>

#include "fixture.h"

#include "../mmu/sparc/sparc64.h"
#include "../workloads/include/ptemu_abi.h"
#include "long_walk_memory.h"

using namespace ptemu_test;

namespace {

const ptemu_arch &A = ptemu_arch_sparc64;

constexpr uint64_t VALID = SPARC64_PAGE_VALID, MODIFIED = SPARC64_PAGE_MODIFIED,
		   ACCESSED = SPARC64_PAGE_ACCESSED, READ = SPARC64_PAGE_READ,
		   WRITE = SPARC64_PAGE_WRITE, PMD_HUGE = SPARC64_PAGE_PMD_HUGE,
		   CP = SPARC64_PAGE_CP, CV = SPARC64_PAGE_CV, EXEC = SPARC64_PAGE_EXEC,
		   HW_W = SPARC64_PAGE_W, PRESENT = SPARC64_PAGE_PRESENT, SZ4MB = SPARC64_PAGE_SZ4MB;

constexpr unsigned R = PTEMU_PROT_READ, W = PTEMU_PROT_WRITE, X = PTEMU_PROT_EXEC;
constexpr unsigned Y = PTEMU_PTE_YOUNG, D = PTEMU_PTE_DIRTY;

constexpr uint64_t SZ_8K = 1ull << 13, SZ_4M = 1ull << 22, SZ_8M = 1ull << 23;

uint64_t mk_pte(uint64_t pfn, unsigned flags)
{
	return A.mk_pte(ptemu_leaf{pfn, flags});
}

// ---- hand-built tables ------------------------------------------------------------------

class Sparc64Walk : public ::testing::Test, protected LongWalkMemory {
      protected:
	Sparc64Walk() : LongWalkMemory(A, 6 * SZ_8K) {}

	static constexpr uint64_t T0 = 0x2000, T1 = 0x4000, T2 = 0x6000, T3 = 0x8000;
	// pgd 0, pud 5, pmd 7, PTE 9, offset 0x1234.
	static constexpr uint64_t VA = (5ull << 33) | (7ull << 23) | (9ull << 13) | 0x1234;

	ptemu_walk_result out{};

	void build()
	{
		set(T0, 0, A.mk_table(0, T1));
		set(T1, 5, A.mk_table(1, T2));
		set(T2, 7, A.mk_table(2, T3));
	}
	ptemu_walk_fault walk(uint64_t va, ptemu_access access)
	{
		reads.clear();
		return A.hw_walk(&ctx, T0, va, access, &out);
	}
};

} // namespace

// ---- geometry and properties --------------------------------------------------------------

TEST(Sparc64Model, Geometry)
{
	EXPECT_EQ(ptemu_arch_find("sparc64"), &A);
	EXPECT_EQ(A.page_shift, 13u);
	EXPECT_EQ(ptemu_task_size(&A), 1ull << 43) << "below the VA hole of a 44-bit VA";
	ASSERT_EQ(A.nr_levels, 4u);
	const unsigned shift[] = {43, 33, 23, 13};
	for (unsigned l = 0; l < 4; l++) {
		EXPECT_EQ(A.level_shift[l], shift[l]) << l;
		EXPECT_EQ(A.level_bits[l], 10u) << l;
		EXPECT_EQ(A.table_bytes[l], SZ_8K) << "one table is one page, level " << l;
		EXPECT_EQ(ptemu_entry_size(&A, l), 8u);
	}
	EXPECT_TRUE(A.big_endian);
	EXPECT_EQ(ptemu_pmd_size(&A), SZ_8M);
	EXPECT_EQ(ptemu_ptes_per_table(&A), 1024u);
	EXPECT_EQ(A.pte_table_bytes, SZ_8K);
	EXPECT_EQ(A.tables_per_page, 1u);
	EXPECT_EQ(A.isa.uc_arch, (int)UC_ARCH_SPARC);
	EXPECT_EQ(A.isa.uc_mode, (int)(UC_MODE_SPARC64 | UC_MODE_BIG_ENDIAN));
	EXPECT_EQ(A.isa.cs_arch, (int)CS_ARCH_SPARC);
	EXPECT_EQ(A.isa.elf_machine, 43u);	// EM_SPARCV9
	EXPECT_EQ(A.isa.stack_bias, 2047u);
	EXPECT_EQ(A.isa.syscall_intno, 0x16d) << "ta 0x6d";
	EXPECT_NE(std::find_if(std::begin(kModels), std::end(kModels),
			       [](const char *m) { return !strcmp(m, "sparc64"); }),
		  std::end(kModels));
}

TEST(Sparc64Model, TableLifetimeAndFlushProperties)
{
	// pgtable_t is pte_t *: whole-page tables, pte_free_defer by call_rcu on the page.
	EXPECT_EQ(A.pte_free_defer, &ptemu_generic_pte_free_defer);
	EXPECT_TRUE(A.rcu_table_free);
	EXPECT_TRUE(A.pmd_lock_is_page_table_lock) << "no split pmd lock on sparc64";
	// flush_tlb_range is empty, so a retract invalidates nothing: only RCU protects the
	// TSB-miss walk, which runs with interrupts off.
	EXPECT_TRUE(A.flush_tlb_range_is_noop);
	EXPECT_EQ(A.retract_flush, PTEMU_RETRACT_FLUSH_NONE);
	EXPECT_TRUE(A.walker_is_rcu_reader);
	EXPECT_EQ(A.walk_cache_entries, 0u);
	EXPECT_EQ(A.read_fault_vm_flags, (unsigned)(VM_READ | VM_EXEC));
	EXPECT_FALSE(ptemu_injection_applies(INJECT_NO_TLB_FLUSH, &A));
	EXPECT_FALSE(ptemu_injection_applies(INJECT_LEAF_FLUSH_ONLY, &A));
	EXPECT_TRUE(ptemu_injection_applies(INJECT_FREE_IMMEDIATELY, &A));
	EXPECT_TRUE(ptemu_injection_applies(INJECT_SPARC_MISS_IRQS_ON, &A));
	EXPECT_TRUE(ptemu_injection_applies(INJECT_SPARC_NO_TLB_BATCH, &A));
	EXPECT_FALSE(ptemu_injection_applies(INJECT_SPARC_NO_TLB_BATCH, ptemu_arch_find("arm64")));
}

// ---- TTEs -------------------------------------------------------------------------------------

// protection_map with the sun4v bits: every accessible protection is readable and cached;
// _PAGE_R (the valid bit) only once young; the hardware W bit only when written and dirty.
TEST(Sparc64Model, MkPteBitPatterns)
{
	const uint64_t pa = 0x12346ull << 13, base = pa | PRESENT | CP | CV;
	struct {
		unsigned flags;
		uint64_t pte;
	} cases[] = {
		{0, base},					// PROT_NONE: present, never valid
		{Y, base | ACCESSED},
		{R, base | READ},
		{R | Y, base | READ | ACCESSED | VALID},
		{R | W | Y, base | READ | WRITE | ACCESSED | VALID},
		{R | W | Y | D, base | READ | WRITE | ACCESSED | VALID | MODIFIED | HW_W},
		{R | W | D, base | READ | WRITE | MODIFIED | HW_W},	// old: not valid
		{R | D, base | READ | MODIFIED},			// dirty, read-only: no W
		{X | Y, base | READ | EXEC | ACCESSED | VALID},
		{W | Y | D, base | READ | WRITE | ACCESSED | VALID | MODIFIED | HW_W},
	};
	for (const auto &c : cases)
		EXPECT_EQ(mk_pte(0x12346, c.flags), c.pte) << std::hex << "flags " << c.flags;
}

TEST(Sparc64Model, PteLeafDecodesWhatMkPteEncodes)
{
	for (unsigned flags = 0; flags < 32; flags++) {
		uint64_t pte = mk_pte(0xabcdef, flags);
		ptemu_leaf l = A.pte_leaf(pte);
		unsigned want = flags;

		if (flags & (W | X))
			want |= R;	// every accessible sun4v protection is readable
		EXPECT_EQ(l.pfn, 0xabcdefu) << flags;
		EXPECT_EQ(l.flags, want) << flags;
		EXPECT_TRUE(A.pte_present(pte)) << "PROT_NONE too is present";
		EXPECT_FALSE(A.pte_none(pte));
	}
	EXPECT_TRUE(A.pte_none(0));
	EXPECT_FALSE(A.pte_present(0));
}

TEST(Sparc64Model, HugePmdIsATteWithTheHugeBits)
{
	uint64_t pmd = A.mk_pmd_leaf(ptemu_leaf{0x4000, R | Y});	// 8 MiB-aligned pa 0x8000000
	uint64_t t = 0;

	EXPECT_EQ(pmd & SZ4MB, SZ4MB);
	EXPECT_EQ(pmd & PMD_HUGE, PMD_HUGE);
	EXPECT_EQ(pmd & SPARC64_PAGE_PADDR, 0x4000ull << 13);
	EXPECT_EQ(A.classify(2, pmd, &t), PTEMU_ENTRY_LEAF);
	EXPECT_EQ(A.pmd_leaf(pmd).pfn, 0x4000u);
	// Upper entries hold the next table's physical address; low bits make them bad.
	EXPECT_EQ(A.mk_table(2, 0x6000), 0x6000u);
	EXPECT_EQ(A.classify(2, 0x6000, &t), PTEMU_ENTRY_TABLE);
	EXPECT_EQ(t, 0x6000u);
	EXPECT_EQ(A.classify(1, 0x6008, &t), PTEMU_ENTRY_BAD);
	EXPECT_EQ(A.classify(0, 0, &t), PTEMU_ENTRY_NONE);
}

// ---- the TSB-miss walk over hand-built tables (no mm: no TSB) -------------------------------

TEST_F(Sparc64Walk, ValidPteTranslates)
{
	build();
	set(T3, 9, mk_pte(0x777, R | W | Y | D));
	ASSERT_EQ(walk(VA, PTEMU_ACCESS_WRITE), PTEMU_WALK_OK);
	EXPECT_EQ(out.paddr, (0x777ull << 13) | 0x1234);
	EXPECT_EQ(out.perms, R | W);
	EXPECT_EQ(out.leaf_size, SZ_8K);
	ASSERT_EQ(reads.size(), 4u);
	EXPECT_EQ(reads[0], Read(0, T0, 0));
	EXPECT_EQ(reads[1], Read(1, T1, 5));
	EXPECT_EQ(reads[2], Read(2, T2, 7));
	EXPECT_EQ(reads[3], Read(3, T3, 9));
}

TEST_F(Sparc64Walk, OldOrCleanPtesGiveWhatTheHardwareWouldSee)
{
	build();
	set(T3, 9, mk_pte(0x777, R | W));	// old: _PAGE_R clear, the walk finds nothing
	EXPECT_EQ(walk(VA, PTEMU_ACCESS_READ), PTEMU_WALK_TRANSLATION);
	set(T3, 9, mk_pte(0x777, R | W | Y));	// young, clean: readable, no hardware W
	ASSERT_EQ(walk(VA, PTEMU_ACCESS_READ), PTEMU_WALK_OK);
	EXPECT_EQ(out.perms, R);
	set(T3, 9, mk_pte(0x777, R | Y));	// no EXEC: an instruction fetch faults
	EXPECT_EQ(walk(VA, PTEMU_ACCESS_FETCH), PTEMU_WALK_PERMISSION);
	set(T3, 9, mk_pte(0x777, R | X | Y));
	ASSERT_EQ(walk(VA, PTEMU_ACCESS_FETCH), PTEMU_WALK_OK);
	EXPECT_EQ(out.perms, R | X);
	set(T3, 9, mk_pte(0x777, 0));		// PROT_NONE
	EXPECT_EQ(walk(VA, PTEMU_ACCESS_READ), PTEMU_WALK_TRANSLATION);
}

TEST_F(Sparc64Walk, HugePmdIsTwoFourMegabyteHalves)
{
	build();
	const uint64_t pfn = 0x2000;	// pa 64 MiB, 8 MiB aligned
	set(T2, 7, A.mk_pmd_leaf(ptemu_leaf{pfn, R | W | Y | D}));
	const uint64_t lo = VA & ~(SZ_8M - 1);
	for (uint64_t off : std::initializer_list<uint64_t>{0x1234, SZ_4M - 8, SZ_4M, SZ_4M + 0x5678, SZ_8M - 8}) {
		ASSERT_EQ(walk(lo + off, PTEMU_ACCESS_WRITE), PTEMU_WALK_OK) << off;
		EXPECT_EQ(out.paddr, (pfn << 13) + off);
		EXPECT_EQ(out.leaf_size, SZ_4M);
		EXPECT_EQ(reads.size(), 3u) << "the walk stops at the pmd";
	}
}

TEST_F(Sparc64Walk, NoneBadAndOutOfRangeFault)
{
	EXPECT_EQ(walk(VA, PTEMU_ACCESS_READ), PTEMU_WALK_TRANSLATION);	// pgd none
	build();
	EXPECT_EQ(walk(VA, PTEMU_ACCESS_READ), PTEMU_WALK_TRANSLATION);	// PTE none
	set(T2, 7, T3 | 0x10);						// bad pmd
	EXPECT_EQ(walk(VA, PTEMU_ACCESS_READ), PTEMU_WALK_BAD_ENTRY);
	reads.clear();
	EXPECT_EQ(A.hw_walk(&ctx, T0, 1ull << 43, PTEMU_ACCESS_READ, &out), PTEMU_WALK_TRANSLATION);
	EXPECT_TRUE(reads.empty()) << "the VA hole and above are never walked";
}

// ---- the TSBs -------------------------------------------------------------------------------

namespace {

// A machine with one mm, and the invalidations it issues recorded.
struct Space : MmHolder {
	explicit Space(ptemu_injection inject = INJECT_NONE) : MmHolder("sparc64", inject)
	{
		m->tlb.ctx = &demaps;
		m->tlb.flush_range = [](void *c, mm_struct *, uint64_t s, uint64_t e, bool t) {
			EXPECT_FALSE(t) << "a sparc64 demap has no walk cache to drop";
			static_cast<std::vector<std::pair<uint64_t, uint64_t>> *>(c)->push_back({s, e});
		};
	}
	~Space() { m->tlb.flush_range = nullptr; }

	// Private anonymous memory, each page written once: valid, dirty PTEs.
	uint64_t map_touched(unsigned pages, uint64_t len = SZ_8M)
	{
		int64_t a = do_mmap(mm, 0, len, PTEMU_PROT_READ | PTEMU_PROT_WRITE,
				    PTEMU_MAP_PRIVATE | PTEMU_MAP_ANONYMOUS, nullptr, 0);
		EXPECT_GT(a, 0);
		for (unsigned i = 0; i < pages; i++) {
			uint64_t v = 0x5a5a0000 + i;
			EXPECT_EQ(copy_to_user(mm, (uint64_t)a + i * SZ_8K, &v, 8), 0);
		}
		return (uint64_t)a;
	}
	uint64_t word(uint64_t pa) const
	{
		uint64_t v;
		memcpy(&v, ptemu_slot_ptr(m, pa), 8);
		return __builtin_bswap64(v);
	}
	uint64_t tsb_tag(unsigned which, uint64_t va) const
	{
		return word(sparc64_tsb_entry_pa(mm, which, va));
	}
	uint64_t tsb_tte(unsigned which, uint64_t va) const
	{
		return word(sparc64_tsb_entry_pa(mm, which, va) + 8);
	}
	// The PTE of va, read under its lock.
	uint64_t pte_of(uint64_t va)
	{
		ptemu_spinlock *ptl;
		pmd_t *p = mm_find_pmd(mm, va);
		pte_t *pte = p ? pte_offset_map_lock(mm, p, va, &ptl) : nullptr;
		if (!pte)
			return 0;
		uint64_t v = ptep_get(pte).val;
		pte_unmap_unlock(pte, ptl);
		return v;
	}
	ptemu_walk_fault hw(uint64_t va, ptemu_access acc, ptemu_walk_result *out)
	{
		return mmu_walk(mm, va, acc, out);
	}

	std::vector<std::pair<uint64_t, uint64_t>> demaps;
};

} // namespace

// 512 entries of 16 bytes; the base TSB hashes by va >> 13, the huge one by va >> 22; the
// huge TSB exists only once the mm maps a huge pmd (hugetlb_setup at the fault's end).
TEST(Sparc64Tsb, IndexingForBothPageSizes)
{
	Space s;
	const uint64_t base = sparc64_tsb_base(s.mm, SPARC64_TSB_BASE);
	ASSERT_NE(base, 0u) << "init_new_context allocates the base TSB";
	EXPECT_EQ(sparc64_tsb_nentries(s.mm, SPARC64_TSB_BASE), 512u);
	for (uint64_t va : {0ull, 0x2000ull, 0x3fe000ull, 0x400000ull, 0x12345678000ull})
		EXPECT_EQ(sparc64_tsb_entry_pa(s.mm, SPARC64_TSB_BASE, va),
			  base + ((va >> 13) & 511) * 16) << std::hex << va;
	EXPECT_EQ(sparc64_tsb_entry_pa(s.mm, SPARC64_TSB_BASE, 0x2000),
		  sparc64_tsb_entry_pa(s.mm, SPARC64_TSB_BASE, 0x402000))
		<< "4 MiB apart: the same entry, told apart by the tag";
	// A fresh TSB is all invalid.
	for (unsigned i = 0; i < 512; i++)
		ASSERT_EQ(s.word(base + 16 * i), SPARC64_TSB_TAG_INVALID) << i;

	EXPECT_EQ(sparc64_tsb_entry_pa(s.mm, SPARC64_TSB_HUGE, 0), 0u);
	A.fault_epilogue(s.mm);
	EXPECT_EQ(sparc64_tsb_entry_pa(s.mm, SPARC64_TSB_HUGE, 0), 0u) << "no huge pmd yet";
	__atomic_store_n(&s.mm->context.thp_pte_count, 1, __ATOMIC_RELEASE);
	A.fault_epilogue(s.mm);
	const uint64_t huge = sparc64_tsb_base(s.mm, SPARC64_TSB_HUGE);
	ASSERT_NE(huge, 0u);
	for (uint64_t va : std::initializer_list<uint64_t>{0, SZ_4M, SZ_8M + SZ_4M, 0x12345678000})
		EXPECT_EQ(sparc64_tsb_entry_pa(s.mm, SPARC64_TSB_HUGE, va),
			  huge + ((va >> 22) & 511) * 16) << std::hex << va;
	__atomic_store_n(&s.mm->context.thp_pte_count, 0, __ATOMIC_RELEASE);
}

// What the IPI of a TSB grow (smp_tsb_sync) finds: the TSB published, and the old one not
// yet freed, its entries intact.
struct GrowIpi {
	const Space *space = nullptr;
	uint64_t old_base = 0, probe_pa = 0, probe_word = 0;
	uint64_t seen_base = 0, seen_word = 0;
	unsigned calls = 0;
};
GrowIpi *grow_ipi;

// tsb_grow at a fault's end: the base TSB grows once the RSS exceeds three quarters of its
// entries, to the smallest size whose limit is above the RSS. Every entry of the old TSB
// is in the new one, which is published before the IPI that must precede the old one's
// free.
TEST(Sparc64Tsb, GrowsWithTheRssKeepingItsEntries)
{
	Space s;
	GrowIpi ipi;
	ipi.space = &s;
	ipi.old_base = sparc64_tsb_base(s.mm, SPARC64_TSB_BASE);
	grow_ipi = &ipi;
	s.m->tlb.ipi_all = [](void *) {
		GrowIpi *g = grow_ipi;
		g->calls++;
		g->seen_base = sparc64_tsb_base(g->space->mm, SPARC64_TSB_BASE);
		g->seen_word = g->space->word(g->probe_pa);
	};

	uint64_t a = s.map_touched(384);
	EXPECT_EQ(sparc64_tsb_nentries(s.mm, SPARC64_TSB_BASE), 512u) << "an RSS of 384 fits";
	EXPECT_EQ(s.stat(PTEMU_STAT_tsb_grows), 0u);
	EXPECT_EQ(ipi.calls, 0u);
	ipi.probe_pa = sparc64_tsb_entry_pa(s.mm, SPARC64_TSB_BASE, a);
	ipi.probe_word = s.word(ipi.probe_pa);
	ASSERT_EQ(ipi.probe_word, a >> 22);

	uint64_t v = 1;
	ASSERT_EQ(copy_to_user(s.mm, a + 384 * SZ_8K, &v, 8), 0);	// the 385th page
	EXPECT_EQ(sparc64_tsb_nentries(s.mm, SPARC64_TSB_BASE), 1024u);
	EXPECT_EQ(s.stat(PTEMU_STAT_tsb_grows), 1u);
	EXPECT_EQ(s.mm->context.tsb_block[SPARC64_TSB_BASE].rss_limit, 768u);
	const uint64_t base = sparc64_tsb_base(s.mm, SPARC64_TSB_BASE);
	EXPECT_NE(base, ipi.old_base);
	EXPECT_EQ(ipi.calls, 1u) << "smp_tsb_sync";
	EXPECT_EQ(ipi.seen_base, base) << "the new TSB is published before the IPI";
	EXPECT_EQ(ipi.seen_word, ipi.probe_word) << "the old TSB is not freed before the IPI";
	for (unsigned i = 0; i < 385; i++) {
		uint64_t va = a + i * SZ_8K;
		ASSERT_EQ(s.tsb_tag(SPARC64_TSB_BASE, va), va >> 22) << i;
		ASSERT_EQ(s.tsb_tte(SPARC64_TSB_BASE, va), s.pte_of(va)) << i;
	}
	// The checker finds a page in the grown TSB, at its address.
	for (unsigned i : {0u, 200u, 384u}) {
		uint64_t va = a + i * SZ_8K, found = 0;
		ASSERT_TRUE(A.hw_cache_maps_pfn(s.mm, (s.pte_of(va) & SPARC64_PAGE_PADDR) >> 13, 1, &found)) << i;
		EXPECT_EQ(found, va) << i;
	}
	s.m->tlb.ipi_all = nullptr;
	grow_ipi = nullptr;
}

// tsb_grow's sizes: 8 KiB << index for the smallest index whose limit (3/4 of its entries)
// is above the RSS; at 1 MiB the limit is unbounded.
TEST(Sparc64Tsb, GrowSizesFollowTheRss)
{
	struct Step {
		int64_t rss;
		unsigned entries;
		uint64_t limit;
	};
	Space s;
	int64_t now = 0;
	for (Step st : {Step{100, 512, 384}, Step{768, 2048, 1536}, Step{5000, 8192, 6144},
			Step{24576, 65536, UINT64_MAX}, Step{1 << 20, 65536, UINT64_MAX}}) {
		add_mm_counter(s.mm, MM_ANONPAGES, st.rss - now);
		now = st.rss;
		A.fault_epilogue(s.mm);
		EXPECT_EQ(sparc64_tsb_nentries(s.mm, SPARC64_TSB_BASE), st.entries) << st.rss;
		EXPECT_EQ(s.mm->context.tsb_block[SPARC64_TSB_BASE].rss_limit, st.limit) << st.rss;
	}
	EXPECT_EQ(s.stat(PTEMU_STAT_tsb_grows), 3u);
	// Huge pmds count against the huge TSB, not the base one.
	add_mm_counter(s.mm, MM_ANONPAGES, -now);
	__atomic_store_n(&s.mm->context.thp_pte_count, 1, __ATOMIC_RELEASE);
	add_mm_counter(s.mm, MM_ANONPAGES, 1024);
	A.fault_epilogue(s.mm);
	EXPECT_EQ(sparc64_tsb_nentries(s.mm, SPARC64_TSB_HUGE), 512u) << "hugetlb_setup";
	EXPECT_EQ(s.stat(PTEMU_STAT_tsb_grows), 3u);
	add_mm_counter(s.mm, MM_ANONPAGES, -1024);
	__atomic_store_n(&s.mm->context.thp_pte_count, 0, __ATOMIC_RELEASE);
}

// A fault inserts the translation (update_mmu_cache); the next miss hits the TSB without
// reading a table; a zap flushes the entry (tag invalid) and demaps the page.
TEST(Sparc64Tsb, FaultInsertsProbeHitsZapFlushes)
{
	Space s;
	uint64_t a = s.map_touched(1);
	uint64_t pte = s.pte_of(a);
	ASSERT_TRUE(pte & VALID);
	EXPECT_EQ(s.tsb_tag(SPARC64_TSB_BASE, a), a >> 22);
	EXPECT_EQ(s.tsb_tte(SPARC64_TSB_BASE, a), pte);

	ptemu_walk_result out{};
	uint64_t hits = s.stat(PTEMU_STAT_tsb_hits), misses = s.stat(PTEMU_STAT_tsb_misses);
	ASSERT_EQ(s.hw(a + 8, PTEMU_ACCESS_WRITE, &out), PTEMU_WALK_OK);
	EXPECT_EQ(out.paddr, (pte & SPARC64_PAGE_PADDR) + 8);
	EXPECT_EQ(s.stat(PTEMU_STAT_tsb_hits), hits + 1);
	EXPECT_EQ(s.stat(PTEMU_STAT_tsb_misses), misses);

	s.demaps.clear();
	ASSERT_EQ(do_madvise(s.mm, a, SZ_8K, PTEMU_MADV_DONTNEED), 0);
	EXPECT_EQ(s.tsb_tag(SPARC64_TSB_BASE, a), SPARC64_TSB_TAG_INVALID);
	ASSERT_EQ(s.demaps.size(), 1u);
	EXPECT_EQ(s.demaps[0], std::make_pair(a, a + SZ_8K));
	EXPECT_EQ(s.hw(a, PTEMU_ACCESS_READ, &out), PTEMU_WALK_TRANSLATION);
	EXPECT_EQ(s.stat(PTEMU_STAT_tsb_misses), misses + 1);
	EXPECT_EQ(s.violations(), 0u) << s.describe();
}

// A miss that finds a valid PTE fills the entry; an entry whose tag is locked, or whose
// tag is another address's, is a miss (the tag and the TTE are read as one pair).
TEST(Sparc64Tsb, MissWalkFillsTheEntryAndLockedEntriesMiss)
{
	Space s;
	uint64_t a = s.map_touched(1);
	uint64_t ent = sparc64_tsb_entry_pa(s.mm, SPARC64_TSB_BASE, a);
	uint64_t tag = s.word(ent);
	auto store = [&](uint64_t pa, uint64_t v) {
		v = __builtin_bswap64(v);
		memcpy(ptemu_slot_ptr(s.m, pa), &v, 8);
	};
	ptemu_walk_result out{};

	store(ent, SPARC64_TSB_TAG_INVALID);
	ASSERT_EQ(s.hw(a, PTEMU_ACCESS_READ, &out), PTEMU_WALK_OK);
	EXPECT_EQ(s.word(ent), tag) << "the miss walk wrote the entry back";

	uint64_t misses = s.stat(PTEMU_STAT_tsb_misses);
	store(ent, (a + SZ_4M) >> 22);	// the entry holds the address 4 MiB up
	store(ent + 8, mk_pte(0x1, R | Y));
	ASSERT_EQ(s.hw(a, PTEMU_ACCESS_READ, &out), PTEMU_WALK_OK);
	EXPECT_EQ(out.paddr, s.pte_of(a) & SPARC64_PAGE_PADDR);
	EXPECT_EQ(s.stat(PTEMU_STAT_tsb_misses), misses + 1);

	// An insert in progress (tag locked) is a miss, never its TTE. With the page gone the
	// walk then finds nothing and inserts nothing (an insert would wait for the lock).
	ASSERT_EQ(do_madvise(s.mm, a, SZ_8K, PTEMU_MADV_DONTNEED), 0);
	store(ent, tag | SPARC64_TSB_TAG_LOCK);
	store(ent + 8, mk_pte(0x1, R | Y));
	EXPECT_EQ(s.hw(a, PTEMU_ACCESS_READ, &out), PTEMU_WALK_TRANSLATION);
	EXPECT_EQ(s.stat(PTEMU_STAT_tsb_misses), misses + 2);
	store(ent, SPARC64_TSB_TAG_INVALID);
}

// The miss walk runs with interrupts off from the trap to the retry, which makes it an
// RCU read-side section; under sparc-miss-irqs-on it is none.
TEST(Sparc64Tsb, MissWalkIsAnRcuReader)
{
	for (ptemu_injection inj : {INJECT_NONE, INJECT_SPARC_MISS_IRQS_ON}) {
		Space s(inj);
		uint64_t a = s.map_touched(1);
		struct Probe {
			ptemu_walk_ctx inner;
			std::vector<int> depth;
		} probe;
		ptemu_checked_walk_ctx(s.m, &probe.inner);
		ptemu_walk_ctx ctx{[](const ptemu_walk_ctx *c, unsigned level, uint64_t t, unsigned i) {
					   auto *p = static_cast<Probe *>(c->opaque);
					   p->depth.push_back(ptemu_current()->rcu_depth);
					   return p->inner.read_entry(&p->inner, level, t, i);
				   },
				   &probe, s.mm};
		uint64_t ent = sparc64_tsb_entry_pa(s.mm, SPARC64_TSB_BASE, a);
		uint64_t inv = __builtin_bswap64(SPARC64_TSB_TAG_INVALID);
		memcpy(ptemu_slot_ptr(s.m, ent), &inv, 8);
		ptemu_walk_result out{};
		ASSERT_EQ(A.hw_walk(&ctx, s.mm->pgd_pa, a, PTEMU_ACCESS_READ, &out), PTEMU_WALK_OK);
		ASSERT_EQ(probe.depth.size(), 4u);
		for (int d : probe.depth)
			EXPECT_EQ(d, inj == INJECT_NONE ? 1 : 0) << "injection " << inj;
		EXPECT_EQ(s.rcu_depth(), 0);
	}
}

// ---- tlb_batch ----------------------------------------------------------------------------

// Outside lazy-MMU mode a change of a valid PTE is flushed at once: the TSB entry, then a
// demap of the page. A PTE that was not valid (old) needs nothing.
TEST(Sparc64TlbBatch, OutsideLazyModeEachChangeIsFlushedAtOnce)
{
	Space s;
	uint64_t a = s.map_touched(2);
	ptemu_spinlock *ptl;
	pte_t *pte = pte_offset_map_lock(s.mm, s.pmd = mm_find_pmd(s.mm, a), a, &ptl);
	ASSERT_NE(pte, nullptr);
	s.demaps.clear();
	uint64_t old = ptep_get(pte).val;
	set_pte_at(s.mm, a, pte, __pte(old & ~HW_W));	// write-protect
	ASSERT_EQ(s.demaps.size(), 1u);
	EXPECT_EQ(s.demaps[0], std::make_pair(a, a + SZ_8K));
	EXPECT_EQ(s.tsb_tag(SPARC64_TSB_BASE, a), SPARC64_TSB_TAG_INVALID);

	set_pte_at(s.mm, a, pte, __pte(old & ~VALID));	// made old: the hardware's view goes
	EXPECT_EQ(s.demaps.size(), 2u);
	set_pte_at(s.mm, a, pte, __pte(old));		// over an invalid PTE: nothing to flush
	EXPECT_EQ(s.demaps.size(), 2u);
	ptep_get_and_clear(s.mm, a + SZ_8K, ptep_add(pte, 1));
	ASSERT_EQ(s.demaps.size(), 3u);
	EXPECT_EQ(s.demaps[2], std::make_pair(a + SZ_8K, a + 2 * SZ_8K));
	pte_unmap_unlock(pte, ptl);
	EXPECT_EQ(s.stat(PTEMU_STAT_tlb_range_flushes), 3u);
}

// In lazy-MMU mode (zap, mprotect) the pages are batched and flushed at
// arch_leave_lazy_mmu_mode: one demap per run of adjacent pages.
TEST(Sparc64TlbBatch, LazyModeBatchesUntilLeave)
{
	Space s;
	uint64_t a = s.map_touched(6);
	ptemu_spinlock *ptl;
	pte_t *pte = pte_offset_map_lock(s.mm, mm_find_pmd(s.mm, a), a, &ptl);
	ASSERT_NE(pte, nullptr);
	s.demaps.clear();
	arch_enter_lazy_mmu_mode(s.mm);
	for (unsigned i : {0u, 1u, 2u, 4u, 5u})
		ptep_get_and_clear(s.mm, a + i * SZ_8K, ptep_add(pte, i));
	EXPECT_TRUE(s.demaps.empty()) << "batched";
	EXPECT_EQ(s.tsb_tag(SPARC64_TSB_BASE, a + 3 * SZ_8K), (a + 3 * SZ_8K) >> 22);
	EXPECT_EQ(s.tsb_tag(SPARC64_TSB_BASE, a), a >> 22) << "the TSB too waits for the flush";
	arch_leave_lazy_mmu_mode(s.mm);
	pte_unmap_unlock(pte, ptl);
	ASSERT_EQ(s.demaps.size(), 2u);
	EXPECT_EQ(s.demaps[0], std::make_pair(a, a + 3 * SZ_8K));
	EXPECT_EQ(s.demaps[1], std::make_pair(a + 4 * SZ_8K, a + 6 * SZ_8K));
	for (unsigned i : {0u, 1u, 2u, 4u, 5u})
		EXPECT_EQ(s.tsb_tag(SPARC64_TSB_BASE, a + i * SZ_8K), SPARC64_TSB_TAG_INVALID) << i;
	EXPECT_EQ(s.tsb_tag(SPARC64_TSB_BASE, a + 3 * SZ_8K), (a + 3 * SZ_8K) >> 22);

	// munmap's zap runs in lazy mode: the rest of the pages in one demap, and its gather
	// flush (flush_tlb_range) is empty.
	s.demaps.clear();
	ASSERT_EQ(do_munmap(s.mm, a, SZ_8M), 0);
	ASSERT_EQ(s.demaps.size(), 1u);
	EXPECT_EQ(s.demaps[0], std::make_pair(a + 3 * SZ_8K, a + 4 * SZ_8K));
	EXPECT_EQ(s.violations(), 0u) << s.describe();
}

// set_pmd_at over a pmd that pointed to a table: tlb_batch_pmd_scan reads the table (the
// detached one, after a retract) under RCU and flushes each valid PTE it still holds.
TEST(Sparc64TlbBatch, PmdScanFlushesTheValidPtesOfTheTableLeft)
{
	Space s;
	uint64_t a = s.map_touched(3);
	pmd_t *pmd = mm_find_pmd(s.mm, a);
	ASSERT_NE(pmd, nullptr);
	s.pmd = pmd;
	s.addr = a;
	s.demaps.clear();
	uint64_t scans = s.stat(PTEMU_STAT_tsb_pmd_scans);
	uint64_t table = s.detach_table();
	EXPECT_EQ(s.stat(PTEMU_STAT_tsb_pmd_scans), scans + 1);
	// Not in lazy-MMU mode: each valid PTE found is flushed at once, page by page.
	ASSERT_EQ(s.demaps.size(), 3u);
	for (unsigned i = 0; i < 3; i++)
		EXPECT_EQ(s.demaps[i], std::make_pair(a + i * SZ_8K, a + (i + 1) * SZ_8K));
	EXPECT_EQ(s.tsb_tag(SPARC64_TSB_BASE, a + SZ_8K), SPARC64_TSB_TAG_INVALID);
	EXPECT_EQ(s.violations(), 0u) << "the scan's reads are of a detached, live table";
	pte_free_defer(s.mm, table);
	rcu_barrier();
	EXPECT_EQ(check_table_state(s.m, table), TABLE_FREE);
}

// pte_free_defer: the table is freed only after a grace period; a TSB-miss walk inside it
// (an RCU reader) keeps it.
TEST(Sparc64TlbBatch, DeferredTableOutlivesAMissWalkInIt)
{
	MmHolder h("sparc64");
	uint64_t t = h.install_table();
	h.detach_table();
	rcu_read_lock();	// a miss walk in progress
	pte_free_defer(h.mm, t);
	EXPECT_EQ(check_table_state(h.m, t), TABLE_RCU_PENDING);
	ptemu_walk_ctx ctx;
	ptemu_checked_walk_ctx(h.m, &ctx);
	ctx.read_entry(&ctx, ptemu_pte_level(h.arch()), t, 0);
	rcu_read_unlock();
	EXPECT_EQ(h.violations(), 0u) << h.describe();
	rcu_barrier();
	EXPECT_EQ(check_table_state(h.m, t), TABLE_FREE);
	EXPECT_EQ(h.stat(PTEMU_STAT_tables_freed_deferred), 1u);
}

// sparc-no-tlb-batch: a PTE cleared without tlb_batch_add leaves its TSB entry (and TLB
// entries) behind, which still map the page once the zap has freed it: what the checker
// looks for at every page free of a run (tlb-maps-freed-page).
TEST(Sparc64Injection, NoTlbBatchLeavesTheTsbEntry)
{
	for (ptemu_injection inj : {INJECT_NONE, INJECT_SPARC_NO_TLB_BATCH}) {
		Space s(inj);
		uint64_t a = s.map_touched(1);
		uint64_t pfn = (s.pte_of(a) & SPARC64_PAGE_PADDR) >> 13, va = 0;
		s.demaps.clear();
		ASSERT_EQ(do_madvise(s.mm, a, SZ_8K, PTEMU_MADV_DONTNEED), 0);
		EXPECT_EQ(pfn_to_page(s.m->phys, pfn)->refcount, 0) << "the zap freed the page";
		if (inj == INJECT_NONE) {
			EXPECT_EQ(s.demaps.size(), 1u);
			EXPECT_EQ(s.tsb_tag(SPARC64_TSB_BASE, a), SPARC64_TSB_TAG_INVALID);
			EXPECT_FALSE(A.hw_cache_maps_pfn(s.mm, pfn, 1, &va));
		} else {
			EXPECT_TRUE(s.demaps.empty());
			EXPECT_EQ(s.tsb_tag(SPARC64_TSB_BASE, a), a >> 22);
			ASSERT_TRUE(A.hw_cache_maps_pfn(s.mm, pfn, 1, &va));
			EXPECT_EQ(va, a);
		}
	}
}

// ---- register windows ----------------------------------------------------------------------

namespace {

constexpr uint32_t insn_save_sp_176()	// save %sp, -176, %sp
{
	return 2u << 30 | 14u << 25 | 0x3cu << 19 | 14u << 14 | 1u << 13 | (uint32_t)(-176 & 0x1fff);
}
constexpr uint32_t insn_restore()	// restore %g0, %g0, %g0
{
	return 2u << 30 | 0x3du << 19;
}

// A bare Unicorn SPARC64 CPU whose window traps go to the model's handler, over an mm
// with a code page and a stack that was never touched.
struct Windows : MmHolder {
	Windows() : MmHolder("sparc64")
	{
		EXPECT_EQ(uc_open(UC_ARCH_SPARC, (uc_mode)(UC_MODE_SPARC64 | UC_MODE_BIG_ENDIAN), &uc),
			  UC_ERR_OK);
		code = (uint64_t)do_mmap(mm, 0, SZ_8K, PTEMU_PROT_READ | PTEMU_PROT_WRITE,
					 PTEMU_MAP_PRIVATE | PTEMU_MAP_ANONYMOUS, nullptr, 0);
		stack = (uint64_t)do_mmap(mm, 0, 4 * SZ_8K, PTEMU_PROT_READ | PTEMU_PROT_WRITE,
					  PTEMU_MAP_PRIVATE | PTEMU_MAP_ANONYMOUS, nullptr, 0);
		uint32_t insns[2] = {__builtin_bswap32(insn_save_sp_176()), __builtin_bswap32(insn_restore())};
		EXPECT_EQ(copy_to_user(mm, code, insns, sizeof(insns)), 0);
	}
	~Windows() { uc_close(uc); }

	uint64_t reg(int r)
	{
		uint64_t v = 0;
		uc_reg_read(uc, r, &v);
		return v;
	}
	void set(int r, uint64_t v) { uc_reg_write(uc, r, &v); }
	int trap(int intno, uint64_t pc)
	{
		set(UC_SPARC_REG_PC, pc);
		err[0] = 0;
		return A.isa.handle_trap(uc, mm, intno, err, sizeof(err));
	}

	uc_engine *uc = nullptr;
	uint64_t code = 0, stack = 0;
	char err[256];
};

} // namespace

// A spill at `save` stores the window's %l and %i at %sp + 2047 (faulting the stack page in
// on the way, as the kernel's window fix-up does), shifts %o into %i and adds; the fill at
// `restore` brings them back.
TEST(Sparc64Windows, SpillIntoAnUntouchedStackFaultsItInAndFillRestores)
{
	Windows w;
	ASSERT_TRUE(A.isa.wants_trap(0x80));
	ASSERT_TRUE(A.isa.wants_trap(0xc0));
	EXPECT_FALSE(A.isa.wants_trap(0x16d)) << "syscalls are not window traps";
	const uint64_t sp = w.stack + 2 * SZ_8K + 512 - 2047;	// biased, in the third page
	uint64_t l[8], i[8], o[8];
	for (int k = 0; k < 8; k++) {
		l[k] = 0x1000 + k, i[k] = 0x2000 + k, o[k] = 0x3000 + k;
		w.set(UC_SPARC_REG_L0 + k, l[k]);
		w.set(UC_SPARC_REG_I0 + k, i[k]);
		w.set(UC_SPARC_REG_O0 + k, o[k]);
	}
	o[6] = sp;
	w.set(UC_SPARC_REG_O6, sp);
	uint64_t faults = w.stat(PTEMU_STAT_uaccess_faults);

	ASSERT_EQ(w.trap(0x80, w.code), 0) << w.err;
	EXPECT_EQ(w.stat(PTEMU_STAT_window_spills), 1u);
	EXPECT_EQ(w.stat(PTEMU_STAT_uaccess_faults), faults + 1) << "the store faulted the page in";
	uint64_t saved[16];
	ASSERT_EQ(copy_from_user(w.mm, saved, sp + 2047, sizeof(saved)), 0);
	for (int k = 0; k < 8; k++) {
		EXPECT_EQ(__builtin_bswap64(saved[k]), l[k]) << "%l" << k;
		EXPECT_EQ(__builtin_bswap64(saved[8 + k]), i[k]) << "%i" << k;
		EXPECT_EQ(w.reg(UC_SPARC_REG_I0 + k), o[k]) << "%o" << k << " became %i" << k;
	}
	EXPECT_EQ(w.reg(UC_SPARC_REG_O6), sp - 176) << "save's own add";
	EXPECT_EQ(w.reg(UC_SPARC_REG_PC), w.code + 4);

	// The callee's window is clobbered; restore brings the caller's back.
	for (int k = 0; k < 8; k++) {
		w.set(UC_SPARC_REG_L0 + k, 0xdead);
		if (k != 6)
			w.set(UC_SPARC_REG_I0 + k, 0x4000 + k);	// %i6 stays the frame pointer
	}
	ASSERT_EQ(w.trap(0xc0, w.code + 4), 0) << w.err;
	EXPECT_EQ(w.stat(PTEMU_STAT_window_fills), 1u);
	for (int k = 0; k < 8; k++) {
		EXPECT_EQ(w.reg(UC_SPARC_REG_L0 + k), l[k]) << "%l" << k;
		EXPECT_EQ(w.reg(UC_SPARC_REG_I0 + k), i[k]) << "%i" << k;
		if (k != 6) {
			EXPECT_EQ(w.reg(UC_SPARC_REG_O0 + k), 0x4000u + k) << "%i" << k << " became %o" << k;
		}
	}
	EXPECT_EQ(w.reg(UC_SPARC_REG_O6), sp) << "the caller's %sp is back";
	EXPECT_EQ(w.reg(UC_SPARC_REG_PC), w.code + 8);
	EXPECT_EQ(w.violations(), 0u) << w.describe();
}

// A spill with no writable stack is the kernel's SIGSEGV: an error, and no register lost.
TEST(Sparc64Windows, SpillWithoutAWritableStackFailsAndKeepsTheWindow)
{
	Windows w;
	ASSERT_EQ(do_mprotect(w.mm, w.stack, 4 * SZ_8K, PTEMU_PROT_READ), 0);
	const uint64_t sp = w.stack + SZ_8K - 2047;
	w.set(UC_SPARC_REG_O6, sp);
	w.set(UC_SPARC_REG_O0, 0x77);
	w.set(UC_SPARC_REG_I0, 0x88);
	EXPECT_EQ(w.trap(0x80, w.code), -1);
	EXPECT_NE(strstr(w.err, "SIGSEGV"), nullptr) << w.err;
	EXPECT_EQ(w.reg(UC_SPARC_REG_O6), sp);
	EXPECT_EQ(w.reg(UC_SPARC_REG_I0), 0x88u);
	EXPECT_EQ(w.stat(PTEMU_STAT_window_spills), 0u);
	// A trap at an instruction that is not save/restore is refused with its reason.
	EXPECT_EQ(w.trap(0x80, w.code + 4), -1);
	EXPECT_NE(strstr(w.err, "not a save"), nullptr) << w.err;
}

// Real guest code: 300-frame call chains into stack pages dropped before each, so every
// op spills into pages that fault, and the results match a loop's.
TEST(Sparc64Windows, DeepCallChainsIntoDroppedStackPages)
{
	std::string path = workload_image("sparc64", "deep-calls");
	ptemu_run_config cfg = guest_run_config(&A, "deep-calls", path, 1, 2, 0.5);
	ptemu_machine *m = nullptr;
	ptemu_run_result res{};
	ASSERT_EQ(ptemu_run(&cfg, &m, &res), PTEMU_RUN_OK) << res.message;
	EXPECT_EQ(check_violation_count(m), 0u) << "a lost or wrong window is a data mismatch";
	EXPECT_EQ(res.exit_codes[0], 0);
	uint64_t spills = ptemu_stat_get(&m->stats, PTEMU_STAT_window_spills);
	EXPECT_GE(spills, 2 * 300u) << "at least one op on each vCPU";
	EXPECT_EQ(ptemu_stat_get(&m->stats, PTEMU_STAT_window_fills), spills);
	EXPECT_GE(ptemu_stat_get(&m->stats, PTEMU_STAT_uaccess_faults), 2 * 6u)
		<< "spills faulting dropped pages";
	ptemu_machine_destroy(m);
}

// ---- the legacy protocol ---------------------------------------------------------------------

// v6.5 freed a retracted table at once, after pmdp_collapse_flush (nothing, on sparc64) and
// tlb_remove_table_sync_one, whose IPI waits for every interrupts-off section: the only
// thing that kept a TSB-miss walk out of the freed table. Seed 6 (the first of 30 that
// does) has a walk inside the table when it is detached; without the IPI it reads it freed.
TEST(Sparc64Legacy, RetractWaitsForMissWalksWithTheIpiBeforeFreeing)
{
	std::string path = workload_image("sparc64", "shmem-stress");
	ptemu_run_config cfg = guest_run_config(&A, "shmem-stress", path, 2, 2, 3);
	cfg.seed = 6;
	cfg.khugepaged = true;
	cfg.protocol = PTEMU_PROTOCOL_LEGACY;
	make_deterministic(cfg, 6);
	ptemu_machine *m = nullptr;
	ptemu_run_result res{};
	ASSERT_EQ(ptemu_run(&cfg, &m, &res), PTEMU_RUN_OK) << res.message;
	EXPECT_EQ(check_violation_count(m), 0u);
	EXPECT_GE(ptemu_stat_get(&m->stats, PTEMU_STAT_walk_raced_detach), 1u);
	EXPECT_GT(ptemu_stat_get(&m->stats, PTEMU_STAT_retracts), 0u);
	ptemu_machine_destroy(m);
}
