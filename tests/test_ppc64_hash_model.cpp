// The ppc64-hash model against Linux v6.6 (asm/book3s/64/hash-64k.h, hash.h,
// mm/book3s64/hash_utils.c, hash_64k.c, hash_hugepage.c, hash_tlb.c, hash_pgtable.c):
// its geometry and the hash bits of the Linux PTE (PpcHashModel), hash_page over the
// Linux tables and the HPT in simulated memory (PpcHashPage), the H_PAGE_BUSY handshake
// with pte_update (PpcHashBusy), the flush by hash slot, at once or batched in lazy-MMU
// mode (PpcHashFlush), PTEG overflow into the secondary group and eviction
// (PpcHashGroups), the THP's deposited table as the slot array (PpcHashThp),
// hash__pmdp_collapse_flush (PpcHashCollapseFlush) and the ppc-hash-no-busy injection
// (PpcHashNoBusy).
//
// The model's functions are static: everything here goes through the arch struct, the
// core page-table accessors and the HPT as it lies in simulated memory.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstring>
#include <functional>
#include <iterator>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <ptemu/arch.h>
#include <ptemu/check.h>
#include <ptemu/fault.h>
#include <ptemu/file.h>
#include <ptemu/inject.h>
#include <ptemu/khugepaged.h>
#include <ptemu/machine.h>
#include <ptemu/mm.h>
#include <ptemu/pgtable.h>
#include <ptemu/phys.h>
#include <ptemu/rcu.h>
#include <ptemu/stats.h>
#include <ptemu/sync.h>
#include <ptemu/uaccess.h>

#include "fixture.h"

#include "../mmu/powerpc/book3s64.h"
#include "../workloads/include/ptemu_abi.h"

using namespace ptemu_test;

namespace {

const ptemu_arch &A = ptemu_arch_ppc64_hash;

enum : unsigned { PGD, PUD, PMD, PTE };
constexpr unsigned R = PTEMU_PROT_READ, W = PTEMU_PROT_WRITE, X = PTEMU_PROT_EXEC;
constexpr unsigned Y = PTEMU_PTE_YOUNG;

// The kernel's values, written out rather than taken from the model (hash-64k.h, hash.h
// and book3s/64/pgtable.h of v6.6).
constexpr uint64_t K_EXEC = 0x1, K_WRITE = 0x2, K_READ = 0x4, K_PRIVILEGED = 0x8;
constexpr uint64_t K_DIRTY = 0x80, K_ACCESSED = 0x100;
constexpr uint64_t K_COMBO = 0x1000;				// H_PAGE_COMBO (_RPAGE_RPN0)
constexpr uint64_t K_THP_HUGE = 0x2000;				// H_PAGE_THP_HUGE (_RPAGE_RPN1)
constexpr uint64_t K_HASHPTE = 0x0080000000000000ull;		// H_PAGE_HASHPTE (_RPAGE_RPN43)
constexpr uint64_t K_BUSY = 0x1000000000000000ull;		// H_PAGE_BUSY (_RPAGE_RSV1)
constexpr uint64_t K_HPTEFLAGS = K_BUSY | K_HASHPTE | K_COMBO;	// H_PAGE_HPTEFLAGS
constexpr uint64_t K_INVALID = 0x2000000000000000ull;
constexpr uint64_t K_PTE = 0x4000000000000000ull;
constexpr uint64_t K_PRESENT = 0x8000000000000000ull;
constexpr uint64_t K_RPN_MASK = 0x001fffffffff0000ull;

// The HPTE (mmu-hash.h): HPTE_V_VALID, HPTE_V_SECONDARY; HPTE_R_R, _C, _N, the PP bits.
constexpr uint64_t HPTE_V_VALID = 0x1, HPTE_V_SECONDARY = 0x2;
constexpr uint64_t HPTE_R_R = 0x100, HPTE_R_C = 0x80, HPTE_R_N = 0x4, HPTE_R_PP = 0x3;

constexpr uint64_t SZ_4K = 1ull << 12, SZ_64K = 1ull << 16, SZ_16M = 1ull << 24;
constexpr uint64_t SZ_256M = 1ull << 28;

// The model's HPT: 128 PTEGs of 8 HPTEs of 16 bytes (hash.c's header).
constexpr unsigned kGroups = 128, kPerGroup = 8, kHptes = kGroups * kPerGroup;
// pte_set_hidx: the hidx word of a PTE is PTRS_PER_PTE entries further.
constexpr uint64_t kHidxOffset = 256 * 8;

uint64_t mk(uint64_t pfn, unsigned flags)
{
	return A.mk_pte(ptemu_leaf{pfn, flags});
}

struct Flush {
	mm_struct *mm;
	uint64_t start, end;
	bool operator==(const Flush &o) const { return mm == o.mm && start == o.start && end == o.end; }
};

std::ostream &operator<<(std::ostream &os, const Flush &f)
{
	return os << "{" << f.mm << " " << std::hex << f.start << ".." << f.end << std::dec << "}";
}

// Waits until pred holds, at most `ms`; whether it held.
template <class Pred>
bool wait_for(Pred pred, int ms = 3000)
{
	auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
	while (!pred()) {
		if (std::chrono::steady_clock::now() > until)
			return false;
		std::this_thread::yield();
	}
	return true;
}

// A ppc64-hash machine with one mm: its TLB invalidations recorded (mm, start, end), the
// HPT read from simulated memory, PTEs set and cleared under their ptl.
struct HashSpace : MmHolder {
	explicit HashSpace(ptemu_injection inject = INJECT_NONE) : MmHolder("ppc64-hash", inject)
	{
		m->tlb.ctx = this;
		m->tlb.flush_range = [](void *c, mm_struct *who, uint64_t s, uint64_t e, bool) {
			auto *self = static_cast<HashSpace *>(c);
			std::lock_guard<std::mutex> g(self->lock);
			self->flushes.push_back({who, s, e});
		};
		m->tlb.pages_freed = [](void *c, uint64_t pfn, uint64_t nr) {
			auto *self = static_cast<HashSpace *>(c);
			if (self->on_free)
				self->on_free(pfn, nr);
		};
	}
	~HashSpace()
	{
		m->tlb.flush_range = nullptr;
		m->tlb.pages_freed = nullptr;
		m->tlb.ctx = nullptr;
	}

	std::vector<Flush> take_flushes()
	{
		std::lock_guard<std::mutex> g(lock);
		std::vector<Flush> f;
		f.swap(flushes);
		return f;
	}

	// ---- the HPT ----
	uint64_t hpte_v(unsigned i) const { return ptemu_entry_load(m, m->arch_mem_pa + 16ull * i); }
	uint64_t hpte_r(unsigned i) const { return ptemu_entry_load(m, m->arch_mem_pa + 16ull * i + 8); }
	// The valid HPTEs whose real page is pa's 64 KiB page.
	std::vector<unsigned> hptes_mapping(uint64_t pa) const
	{
		std::vector<unsigned> v;
		for (unsigned i = 0; i < kHptes; i++)
			if ((hpte_v(i) & HPTE_V_VALID) && (hpte_r(i) & K_RPN_MASK) == (pa & ~(SZ_64K - 1)))
				v.push_back(i);
		return v;
	}
	unsigned valid_hptes() const
	{
		unsigned n = 0;
		for (unsigned i = 0; i < kHptes; i++)
			n += (hpte_v(i) & HPTE_V_VALID) != 0;
		return n;
	}

	// ---- the Linux tables ----
	// The pmd of va, with a PTE table installed.
	pmd_t *pmd_with_table(uint64_t va)
	{
		pmd_t *p = pmd_alloc_path(mm, va);
		EXPECT_NE(p, nullptr);
		if (p && pmd_none(pmdp_get_lockless(p))) {
			EXPECT_EQ(__pte_alloc(mm, p), 0);
		}
		return p;
	}
	uint64_t pte_pa(uint64_t va)
	{
		pmd_t *p = mm_find_pmd(mm, va);
		uint64_t t = 0;
		if (!p || pmd_kind(pmdp_get_lockless(p), &t) != PTEMU_ENTRY_TABLE)
			return 0;
		return t + 8ull * ptemu_level_index(&A, PTE, va);
	}
	uint64_t pte(uint64_t va)
	{
		uint64_t pa = pte_pa(va);
		EXPECT_NE(pa, 0u);
		return pa ? ptemu_pte_load(m, pa) : 0;
	}
	uint64_t hidx(uint64_t va) { return ptemu_entry_load(m, pte_pa(va) + kHidxOffset); }
	void raw_store(uint64_t va, uint64_t v) { ptemu_pte_store(m, pte_pa(va), v); }
	void set_pte(uint64_t va, uint64_t v)
	{
		pmd_t *p = pmd_with_table(va);
		ptemu_spinlock *ptl = nullptr;
		pte_t *ptep = p ? pte_offset_map_lock(mm, p, va, &ptl) : nullptr;
		ASSERT_NE(ptep, nullptr);
		set_pte_at(mm, va, ptep, __pte(v));
		pte_unmap_unlock(ptep, ptl);
	}
	uint64_t clear_pte(uint64_t va)
	{
		pmd_t *p = mm_find_pmd(mm, va);
		ptemu_spinlock *ptl = nullptr;
		pte_t *ptep = p ? pte_offset_map_lock(mm, p, va, &ptl) : nullptr;
		EXPECT_NE(ptep, nullptr);
		if (!ptep)
			return 0;
		uint64_t old = ptep_get_and_clear(mm, va, ptep).val;
		pte_unmap_unlock(ptep, ptl);
		return old;
	}

	// A TLB miss of a vCPU of this mm: the HPT search, then hash_page.
	ptemu_walk_fault hw(uint64_t va, ptemu_access acc, ptemu_walk_result *out)
	{
		*out = ptemu_walk_result{};
		ptemu_walk_fault f = mmu_walk(mm, va, acc, out);
		EXPECT_EQ(f, out->fault);
		return f;
	}

	std::mutex lock;
	std::vector<Flush> flushes;
	std::function<void(uint64_t, uint64_t)> on_free;
};

} // namespace

// ---- geometry and encodings -----------------------------------------------------------------

TEST(PpcHashModel, RegisteredWithTheHash64KGeometry)
{
	EXPECT_EQ(ptemu_arch_find("ppc64-hash"), &A);
	EXPECT_STREQ(A.name, "ppc64-hash");
	EXPECT_NE(std::find_if(std::begin(kModels), std::end(kModels),
			       [](const char *n) { return !strcmp(n, "ppc64-hash"); }),
		  std::end(kModels));
	EXPECT_EQ(A.page_shift, 16u);
	EXPECT_EQ(A.va_bits, 52u);
	EXPECT_EQ(ptemu_task_size(&A), 1ull << 47) << "DEFAULT_MAP_WINDOW_USER64";
	ASSERT_EQ(A.nr_levels, 4u);
	// H_{PGD,PUD,PMD,PTE}_INDEX_SIZE 8, 10, 10, 8 with 64 KiB pages.
	const unsigned bits[] = {8, 10, 10, 8}, shift[] = {44, 34, 24, 16};
	for (unsigned l = 0; l < 4; l++) {
		EXPECT_EQ(A.level_bits[l], bits[l]) << l;
		EXPECT_EQ(A.level_shift[l], shift[l]) << l;
		EXPECT_EQ(ptemu_entry_size(&A, l), 8u) << l;
	}
	EXPECT_EQ(A.table_bytes[PGD], 8u << 8) << "H_PGD_TABLE_SIZE";
	EXPECT_EQ(ptemu_pmd_size(&A), SZ_16M);
	EXPECT_EQ(A.pmd_leaf_shift, 24u);
	EXPECT_EQ(ptemu_ptes_per_table(&A), 256u);
	// H_PTE_FRAG_SIZE_SHIFT = H_PTE_INDEX_SIZE + 3 + 1: 2 KiB of PTEs and 2 KiB of hidx,
	// H_PTE_FRAG_NR = 16 to a 64 KiB page.
	EXPECT_EQ(A.pte_table_bytes, SZ_4K);
	EXPECT_EQ(A.tables_per_page, 16u);
	EXPECT_EQ(A.pte_table_bytes * A.tables_per_page, SZ_64K);
	EXPECT_EQ(A.pte_alloc_one, &pte_fragment_alloc);
	EXPECT_TRUE(A.big_endian);
	EXPECT_EQ(A.pte_hash_flags, K_HPTEFLAGS);
	EXPECT_EQ(A.pte_busy_bit, K_BUSY);
	EXPECT_EQ(A.pgtable_deposit_offset, 1024u * 8) << "pmdp + PTRS_PER_PMD";
	EXPECT_EQ(A.retract_flush, PTEMU_RETRACT_FLUSH_HASH);
	EXPECT_TRUE(A.flush_tlb_range_is_noop) << "tlbflush-hash.h: flush_tlb_range is empty";
	EXPECT_TRUE(A.walker_is_rcu_reader) << "hash_page runs with interrupts off";
	EXPECT_NE(A.hw_cache_maps_pfn, nullptr);
	EXPECT_NE(A.pmdp_collapse_flush, nullptr);
	EXPECT_NE(A.maybe_tlb_batch_add, nullptr);
	EXPECT_NE(A.set_pmd_at_batch, nullptr);
	EXPECT_TRUE(ptemu_injection_applies(INJECT_PPC_HASH_NO_BUSY, &A));
	EXPECT_TRUE(ptemu_injection_applies(INJECT_PPC_NO_SERIALIZE, &A));
	EXPECT_FALSE(ptemu_injection_applies(INJECT_PPC_HASH_NO_BUSY, &ptemu_arch_ppc64_radix));
}

// hash__pte_none: (pte & ~H_PAGE_HPTEFLAGS) == 0. A PTE cleared by pte_update keeps the
// bookkeeping bits a concurrent hash_page may still be dropping.
TEST(PpcHashModel, PteNoneIgnoresOnlyTheHpteFlags)
{
	EXPECT_TRUE(A.pte_none(0));
	EXPECT_TRUE(A.pte_none(K_BUSY));
	EXPECT_TRUE(A.pte_none(K_HASHPTE));
	EXPECT_TRUE(A.pte_none(K_COMBO));
	EXPECT_TRUE(A.pte_none(K_HPTEFLAGS));
	for (unsigned bit = 0; bit < 64; bit++) {
		const uint64_t v = 1ull << bit;
		const bool hash_bit = (v & K_HPTEFLAGS) != 0;
		EXPECT_EQ(A.pte_none(v), hash_bit) << "bit " << bit;
		EXPECT_EQ(A.pte_none(v | K_HPTEFLAGS), hash_bit) << "bit " << bit;
	}
	EXPECT_FALSE(A.pte_none(mk(0x321, R | Y)));
	EXPECT_FALSE(A.pte_none(mk(0x321, R | Y) | K_HPTEFLAGS));
	EXPECT_EQ(A.none_entry(PTE), 0u);
}

// pte_same (hash: pte_raw ^ with _PAGE_HPTEFLAGS masked): a PTE whose hash bookkeeping
// changed is the same mapping; anything else is not.
TEST(PpcHashModel, PteSameIgnoresTheHpteFlags)
{
	MachineHolder h("ppc64-hash");
	ASSERT_NE(h.m, nullptr);
	const uint64_t p = mk(0x321, R | W | Y);
	for (uint64_t f : {K_BUSY, K_HASHPTE, K_COMBO, K_HPTEFLAGS}) {
		EXPECT_TRUE(pte_same(__pte(p), __pte(p | f))) << std::hex << f;
		EXPECT_TRUE(pte_same(__pte(p | f), __pte(p))) << std::hex << f;
	}
	for (unsigned bit = 0; bit < 64; bit++) {
		const uint64_t v = 1ull << bit;
		if (v & K_HPTEFLAGS)
			continue;
		EXPECT_FALSE(pte_same(__pte(p), __pte(p ^ v))) << "bit " << bit;
		EXPECT_FALSE(pte_same(__pte(p | K_HASHPTE), __pte((p ^ v) | K_BUSY))) << "bit " << bit;
	}
	EXPECT_FALSE(pte_same(__pte(p), __pte(mk(0x322, R | W | Y))));
	EXPECT_EQ(h.violations(), 0u) << h.describe();
}

// hash__pmd_mkhuge: _PAGE_PTE | H_PAGE_THP_HUGE; hash__pmd_trans_huge wants both.
TEST(PpcHashModel, HugePmdCarriesPteAndThpHugeAndIsALeaf)
{
	const uint64_t pfn = 0x300;	// 16 MiB aligned: 256 pages of 64 KiB
	for (unsigned flags : {R | Y, R | W | Y, R | W | X | Y}) {
		const uint64_t pmd = A.mk_pmd_leaf(ptemu_leaf{pfn, flags});
		EXPECT_EQ(pmd & K_PTE, K_PTE) << flags;
		EXPECT_EQ(pmd & K_THP_HUGE, K_THP_HUGE) << flags;
		EXPECT_EQ(pmd & K_PRESENT, K_PRESENT) << flags;
		EXPECT_EQ(pmd & K_RPN_MASK, pfn << 16) << flags;
		EXPECT_EQ(pmd & ~K_THP_HUGE, mk(pfn, flags)) << "the PTE encoding plus THP_HUGE";
		uint64_t t = 0xdead;
		EXPECT_EQ(A.classify(PMD, pmd, &t), PTEMU_ENTRY_LEAF) << flags;
		EXPECT_EQ(A.pmd_leaf(pmd).pfn, pfn) << flags;
		// While pmd_hugepage_update invalidates it: _PAGE_INVALID for _PAGE_PRESENT.
		EXPECT_EQ(A.classify(PMD, (pmd & ~K_PRESENT) | K_INVALID, nullptr), PTEMU_ENTRY_LEAF);
		// _PAGE_PTE without THP_HUGE is no THP; no 16 GiB leaves at the PUD.
		EXPECT_NE(A.classify(PMD, pmd & ~K_THP_HUGE, nullptr), PTEMU_ENTRY_LEAF) << flags;
		EXPECT_EQ(A.classify(PUD, pmd, nullptr), PTEMU_ENTRY_BAD) << flags;
	}
}

// hash__pmd_bad: any of H_PMD_BAD_BITS (PTE_TABLE_SIZE - 1, the 4 KiB fragment) in a table
// pmd; hash__pud_bad likewise with PMD_TABLE_SIZE - 1 (16 KiB with THP's deposit half).
TEST(PpcHashModel, TableEntryWithLowBitsIsBad)
{
	const uint64_t frag = 0x12345000;	// a fragment at 4 KiB into its page: legal
	uint64_t t = 0;
	EXPECT_EQ(A.mk_table(PMD, frag), K_PRESENT | frag);
	EXPECT_EQ(A.classify(PMD, A.mk_table(PMD, frag), &t), PTEMU_ENTRY_TABLE);
	EXPECT_EQ(t, frag);
	for (unsigned bit = 0; bit < 12; bit++)
		EXPECT_EQ(A.classify(PMD, A.mk_table(PMD, frag & ~0xfffull) | 1ull << bit, nullptr),
			  PTEMU_ENTRY_BAD) << "pmd bit " << bit;
	// A PMD table (a whole page here) from a PUD: bits below 16 KiB are bad.
	const uint64_t pmd_table = 0x12340000;
	EXPECT_EQ(A.classify(PUD, A.mk_table(PUD, pmd_table), &t), PTEMU_ENTRY_TABLE);
	EXPECT_EQ(t, pmd_table);
	for (unsigned bit = 0; bit < 14; bit++)
		EXPECT_EQ(A.classify(PUD, A.mk_table(PUD, pmd_table) | 1ull << bit, nullptr),
			  PTEMU_ENTRY_BAD) << "pud bit " << bit;
	// Without _PAGE_PRESENT a pointer is no table.
	EXPECT_NE(A.classify(PMD, frag, nullptr), PTEMU_ENTRY_TABLE);
	for (unsigned l = 0; l < 3; l++)
		EXPECT_EQ(A.classify(l, 0, nullptr), PTEMU_ENTRY_NONE) << l;
}

// ---- hash_page --------------------------------------------------------------------------------

// An HPT miss on a present PTE: __hash_page_64K inserts an HPTE, records its slot in the
// hidx half of the fragment, and leaves the PTE with HASHPTE and ACCESSED, BUSY dropped.
TEST(PpcHashPage, MissInsertsAnHpteAndMarksThePte)
{
	HashSpace s;
	const uint64_t va = s.addr, pfn = 0x321;
	s.set_pte(va, mk(pfn, R | W));	// clean, and not yet accessed
	ASSERT_EQ(s.pte(va) & (K_ACCESSED | K_HPTEFLAGS), 0u);
	ASSERT_EQ(s.valid_hptes(), 0u);
	ASSERT_EQ(s.hidx(va), 0u);
	const uint64_t misses = s.stat(PTEMU_STAT_hpt_misses), hits = s.stat(PTEMU_STAT_hpt_hits);

	ptemu_walk_result out{};
	ASSERT_EQ(s.hw(va + 0x1238, PTEMU_ACCESS_READ, &out), PTEMU_WALK_OK);
	EXPECT_EQ(out.paddr, (pfn << 16) | 0x1238);
	EXPECT_EQ(out.leaf_size, SZ_64K);
	EXPECT_EQ(out.perms, R) << "a clean page's HPTE is read-only, so that a store comes back";
	EXPECT_EQ(s.stat(PTEMU_STAT_hpt_misses), misses + 1);
	EXPECT_EQ(s.stat(PTEMU_STAT_hpt_hits), hits);

	const std::vector<unsigned> found = s.hptes_mapping(pfn << 16);
	ASSERT_EQ(found.size(), 1u);
	EXPECT_EQ(s.valid_hptes(), 1u);
	const uint64_t r = s.hpte_r(found[0]);
	EXPECT_EQ(r & HPTE_R_PP, 3u) << "user, read-only (htab_convert_pte_flags)";
	EXPECT_EQ(r & HPTE_R_N, HPTE_R_N) << "no execute";
	EXPECT_EQ(r & HPTE_R_R, HPTE_R_R);
	EXPECT_EQ(r & HPTE_R_C, 0u) << "clean";

	const uint64_t pte = s.pte(va);
	EXPECT_EQ(pte & K_HASHPTE, K_HASHPTE);
	EXPECT_EQ(pte & K_ACCESSED, K_ACCESSED);
	EXPECT_EQ(pte & K_BUSY, 0u);
	EXPECT_EQ(pte & K_DIRTY, 0u) << "a load does not dirty";
	EXPECT_EQ(pte & ~(K_HASHPTE | K_ACCESSED), mk(pfn, R | W)) << std::hex << pte;

	// The hidx word names that HPTE: its slot in the group, and the secondary bit.
	const uint64_t hidx = s.hidx(va);
	ASSERT_NE(hidx, 0u);
	EXPECT_EQ((hidx - 1) & 7, found[0] % kPerGroup) << hidx;
	EXPECT_EQ(((hidx - 1) & 8) != 0, (s.hpte_v(found[0]) & HPTE_V_SECONDARY) != 0) << hidx;

	// The access again: an HPT hit, hash_page does not run, nothing changes.
	ASSERT_EQ(s.hw(va + 8, PTEMU_ACCESS_READ, &out), PTEMU_WALK_OK);
	EXPECT_EQ(out.paddr, (pfn << 16) | 8);
	EXPECT_EQ(s.stat(PTEMU_STAT_hpt_hits), hits + 1);
	EXPECT_EQ(s.stat(PTEMU_STAT_hpt_misses), misses + 1);
	EXPECT_EQ(s.pte(va), pte);
	EXPECT_EQ(s.hidx(va), hidx);
	EXPECT_EQ(s.valid_hptes(), 1u);

	s.clear_pte(va);
	EXPECT_EQ(s.violations(), 0u) << s.describe();
}

// A store through the read-only HPTE of a clean writable page runs hash_page again, which
// sets DIRTY in the PTE (the handshake's compare-and-swap) and upgrades the HPTE in place.
TEST(PpcHashPage, StoreToACleanWritablePageSetsDirty)
{
	HashSpace s;
	const uint64_t va = s.addr, pfn = 0x322;
	s.set_pte(va, mk(pfn, R | W | Y));
	ptemu_walk_result out{};
	ASSERT_EQ(s.hw(va, PTEMU_ACCESS_READ, &out), PTEMU_WALK_OK);
	ASSERT_EQ(out.perms, R);
	const std::vector<unsigned> before = s.hptes_mapping(pfn << 16);
	ASSERT_EQ(before.size(), 1u);
	const uint64_t hidx = s.hidx(va), misses = s.stat(PTEMU_STAT_hpt_misses);
	ASSERT_EQ(s.pte(va) & K_DIRTY, 0u);

	ASSERT_EQ(s.hw(va + 0x40, PTEMU_ACCESS_WRITE, &out), PTEMU_WALK_OK);
	EXPECT_EQ(out.paddr, (pfn << 16) | 0x40);
	EXPECT_EQ(out.perms, R | W);
	EXPECT_EQ(s.stat(PTEMU_STAT_hpt_misses), misses + 1) << "the store came back to hash_page";
	const uint64_t pte = s.pte(va);
	EXPECT_EQ(pte & K_DIRTY, K_DIRTY);
	EXPECT_EQ(pte & K_HASHPTE, K_HASHPTE);
	EXPECT_EQ(pte & K_BUSY, 0u);
	EXPECT_EQ(s.hptes_mapping(pfn << 16), before) << "updated in place (updatepp)";
	EXPECT_EQ(s.hidx(va), hidx);
	const uint64_t r = s.hpte_r(before[0]);
	EXPECT_EQ(r & HPTE_R_PP, 2u) << "read/write";
	EXPECT_EQ(r & HPTE_R_C, HPTE_R_C);
	// A second store hits.
	const uint64_t hits = s.stat(PTEMU_STAT_hpt_hits);
	ASSERT_EQ(s.hw(va, PTEMU_ACCESS_WRITE, &out), PTEMU_WALK_OK);
	EXPECT_EQ(s.stat(PTEMU_STAT_hpt_hits), hits + 1);

	s.clear_pte(va);
	EXPECT_EQ(s.violations(), 0u) << s.describe();
}

// Nothing to hash: a none PTE (also one left with nothing but hash bookkeeping), and no
// table at all, are translation faults; nothing is entered in the HPT.
TEST(PpcHashPage, NonePteIsATranslationFault)
{
	HashSpace s;
	s.install_table();
	ptemu_walk_result out{};
	const uint64_t misses = s.stat(PTEMU_STAT_hpt_misses);
	EXPECT_EQ(s.hw(s.addr, PTEMU_ACCESS_READ, &out), PTEMU_WALK_TRANSLATION);
	EXPECT_EQ(s.hw(s.addr, PTEMU_ACCESS_WRITE, &out), PTEMU_WALK_TRANSLATION);
	EXPECT_EQ(s.stat(PTEMU_STAT_hpt_misses), misses + 2);
	s.raw_store(s.addr, K_HASHPTE);	// pte_none, as a cleared PTE may be
	EXPECT_EQ(s.hw(s.addr, PTEMU_ACCESS_READ, &out), PTEMU_WALK_TRANSLATION);
	EXPECT_EQ(s.pte(s.addr), K_HASHPTE) << "left alone";
	s.raw_store(s.addr, 0);
	EXPECT_EQ(s.hw(s.addr + SZ_16M * 3, PTEMU_ACCESS_READ, &out), PTEMU_WALK_TRANSLATION)
		<< "no pmd table";
	EXPECT_EQ(s.valid_hptes(), 0u);
	EXPECT_EQ(s.violations(), 0u) << s.describe();
}

// PAGE_NONE is _PAGE_PRIVILEGED: check_pte_access refuses a user access, so hash_page
// neither touches the PTE nor enters an HPTE; a store to a read-only PTE likewise.
TEST(PpcHashPage, PrivilegedOrReadOnlyPteIsRefused)
{
	HashSpace s;
	const uint64_t va = s.addr, pfn = 0x323;
	const uint64_t none = mk(pfn, 0);
	ASSERT_EQ(none & K_PRIVILEGED, K_PRIVILEGED);
	ASSERT_EQ(none & K_ACCESSED, 0u);
	s.set_pte(va, none);
	ptemu_walk_result out{};
	for (ptemu_access acc : {PTEMU_ACCESS_READ, PTEMU_ACCESS_WRITE, PTEMU_ACCESS_FETCH}) {
		EXPECT_EQ(s.hw(va, acc, &out), PTEMU_WALK_PERMISSION) << acc;
		EXPECT_EQ(s.pte(va), none) << acc;
	}
	EXPECT_EQ(s.valid_hptes(), 0u);
	EXPECT_EQ(s.hidx(va), 0u);

	const uint64_t ro = mk(pfn, R | Y);
	s.set_pte(va, ro);
	EXPECT_EQ(s.hw(va, PTEMU_ACCESS_WRITE, &out), PTEMU_WALK_PERMISSION);
	EXPECT_EQ(s.pte(va), ro) << "no DIRTY, no BUSY left behind";
	EXPECT_EQ(s.hw(va, PTEMU_ACCESS_FETCH, &out), PTEMU_WALK_PERMISSION) << "no EXEC";
	EXPECT_EQ(s.valid_hptes(), 0u);
	ASSERT_EQ(s.hw(va, PTEMU_ACCESS_READ, &out), PTEMU_WALK_OK);
	EXPECT_EQ(out.perms, R);
	EXPECT_EQ(s.hw(va, PTEMU_ACCESS_WRITE, &out), PTEMU_WALK_PERMISSION) << "nor does the HPTE";
	EXPECT_EQ(s.pte(va) & K_DIRTY, 0u);

	s.clear_pte(va);
	EXPECT_EQ(s.violations(), 0u) << s.describe();
}

// ---- the BUSY handshake ------------------------------------------------------------------

// hash_page finding H_PAGE_BUSY (another hash_page in the middle of its insert) returns to
// retry the access, leaving the PTE and the HPT alone.
TEST(PpcHashBusy, BusyPteMakesTheWalkRetry)
{
	HashSpace s;
	const uint64_t va = s.addr, pfn = 0x324;
	s.set_pte(va, mk(pfn, R | W));
	const uint64_t busy = mk(pfn, R | W) | K_BUSY;
	s.raw_store(va, busy);
	ptemu_walk_result out{};
	for (ptemu_access acc : {PTEMU_ACCESS_READ, PTEMU_ACCESS_WRITE}) {
		EXPECT_EQ(s.hw(va, acc, &out), PTEMU_WALK_RETRY) << acc;
		EXPECT_EQ(out.fault, PTEMU_WALK_RETRY);
		EXPECT_EQ(s.pte(va), busy) << acc;
	}
	EXPECT_EQ(s.valid_hptes(), 0u);
	EXPECT_EQ(s.hidx(va), 0u);
	// BUSY gone: the retried access is served.
	s.raw_store(va, mk(pfn, R | W));
	ASSERT_EQ(s.hw(va, PTEMU_ACCESS_READ, &out), PTEMU_WALK_OK);
	EXPECT_EQ(s.hptes_mapping(pfn << 16).size(), 1u);
	s.clear_pte(va);
	EXPECT_EQ(s.violations(), 0u) << s.describe();
}

// pte_update spins while BUSY is set: a ptep_get_and_clear under the ptl waits for the
// hash_page holding the PTE, and returns the PTE as hash_page's final store left it (here
// with the DIRTY the store set), so no dirty bit is lost; then flushes the HPTE.
TEST(PpcHashBusy, PtepGetAndClearSpinsUntilBusyIsCleared)
{
	HashSpace s;
	const uint64_t va = s.addr, pfn = 0x325;
	s.set_pte(va, mk(pfn, R | W | Y));
	ptemu_walk_result out{};
	ASSERT_EQ(s.hw(va, PTEMU_ACCESS_READ, &out), PTEMU_WALK_OK);
	const uint64_t hashed = s.pte(va);
	ASSERT_EQ(hashed & K_HASHPTE, K_HASHPTE);
	ASSERT_EQ(s.hptes_mapping(pfn << 16).size(), 1u);
	// A hash_page for a store in the middle of its insert: mark_busy's value.
	const uint64_t busy = hashed | K_BUSY | K_ACCESSED | K_DIRTY;
	s.raw_store(va, busy);
	s.take_flushes();

	std::atomic<int> phase{0};
	std::atomic<uint64_t> got{0};
	std::thread clearer([&] {
		ptemu_thread_register(s.m, "clearer");
		ptemu_spinlock *ptl = nullptr;
		pte_t *ptep = pte_offset_map_lock(s.mm, s.pmd, va, &ptl);
		phase = 1;
		if (ptep) {
			got = ptep_get_and_clear(s.mm, va, ptep).val;
			pte_unmap_unlock(ptep, ptl);
		}
		phase = 2;
		ptemu_thread_unregister();
	});
	ASSERT_TRUE(wait_for([&] { return phase.load() >= 1; }));
	std::this_thread::sleep_for(std::chrono::milliseconds(150));
	EXPECT_EQ(phase.load(), 1) << "ptep_get_and_clear went through a BUSY PTE";
	EXPECT_EQ(s.pte(va), busy) << "the BUSY PTE was changed under hash_page";
	EXPECT_TRUE(s.take_flushes().empty());

	// hash_page's final store: the new PTE with HASHPTE, BUSY dropped.
	const uint64_t final_pte = (busy & ~K_BUSY) | K_HASHPTE;
	s.raw_store(va, final_pte);
	const uint64_t inv = s.stat(PTEMU_STAT_hpte_invalidations);
	EXPECT_TRUE(wait_for([&] { return phase.load() == 2; })) << "still spinning with BUSY clear";
	clearer.join();
	EXPECT_EQ(got.load(), final_pte) << std::hex << "got " << got.load();
	EXPECT_EQ(got.load() & K_DIRTY, K_DIRTY) << "the store's dirty bit reached the clear";
	EXPECT_EQ(s.pte(va), 0u);
	EXPECT_TRUE(s.hptes_mapping(pfn << 16).empty());
	EXPECT_EQ(s.stat(PTEMU_STAT_hpte_invalidations), inv + 1);
	const std::vector<Flush> want = {{s.mm, va & ~(SZ_64K - 1), (va & ~(SZ_64K - 1)) + SZ_64K}};
	EXPECT_EQ(s.take_flushes(), want);
	EXPECT_EQ(s.violations(), 0u) << s.describe();
}

// ---- flush by slot -----------------------------------------------------------------------------

// pte_update of a PTE with HASHPTE: hpte_need_flush, outside lazy-MMU mode flush_hash_page
// at once: the HPTE out by the slot the hidx word names, then tlbie of the page. A PTE
// never hashed needs nothing.
TEST(PpcHashFlush, ClearInvalidatesTheHpteBySlotAndFlushesThePage)
{
	HashSpace s;
	const uint64_t va = s.addr, page = va & ~(SZ_64K - 1), pfn = 0x326;
	s.set_pte(va, mk(pfn, R | W | Y));
	s.set_pte(va + SZ_64K, mk(pfn + 1, R | W | Y));	// never hashed
	ptemu_walk_result out{};
	ASSERT_EQ(s.hw(va, PTEMU_ACCESS_READ, &out), PTEMU_WALK_OK);
	ASSERT_EQ(s.hptes_mapping(pfn << 16).size(), 1u);
	s.take_flushes();
	const uint64_t inv = s.stat(PTEMU_STAT_hpte_invalidations);

	const uint64_t old = s.clear_pte(va);
	EXPECT_EQ(old & K_HASHPTE, K_HASHPTE);
	EXPECT_TRUE(s.hptes_mapping(pfn << 16).empty()) << "the HPTE outlived its PTE";
	EXPECT_EQ(s.valid_hptes(), 0u);
	EXPECT_EQ(s.stat(PTEMU_STAT_hpte_invalidations), inv + 1);
	const std::vector<Flush> want = {{s.mm, page, page + SZ_64K}};
	EXPECT_EQ(s.take_flushes(), want);
	ASSERT_EQ(s.hw(va, PTEMU_ACCESS_READ, &out), PTEMU_WALK_TRANSLATION);

	s.clear_pte(va + SZ_64K);
	EXPECT_TRUE(s.take_flushes().empty()) << "nothing hashed, nothing to flush";
	EXPECT_EQ(s.stat(PTEMU_STAT_hpte_invalidations), inv + 1);

	// set_pte_at over a hashed PTE is a pte_update too (a write-protect): with clr and
	// set bits, so HASHPTE and the slot word stay; the HPTE is flushed all the same, and
	// the next hash_page finds the slot stale and enters a fresh one.
	s.set_pte(va, mk(pfn, R | W | Y));
	ASSERT_EQ(s.hw(va, PTEMU_ACCESS_READ, &out), PTEMU_WALK_OK);
	const uint64_t slot_word = s.hidx(va);
	s.take_flushes();
	s.set_pte(va, mk(pfn, R | Y));
	EXPECT_TRUE(s.hptes_mapping(pfn << 16).empty());
	EXPECT_EQ(s.take_flushes(), want);
	EXPECT_EQ(s.stat(PTEMU_STAT_hpte_invalidations), inv + 2);
	EXPECT_EQ(s.pte(va) & (K_HASHPTE | K_BUSY), K_HASHPTE) << "pte_update keeps the hash bits";
	EXPECT_EQ(s.hidx(va), slot_word);
	EXPECT_EQ(s.pte(va) & ~K_HASHPTE, mk(pfn, R | Y));
	ASSERT_EQ(s.hw(va, PTEMU_ACCESS_READ, &out), PTEMU_WALK_OK);
	EXPECT_EQ(s.hptes_mapping(pfn << 16).size(), 1u);
	s.clear_pte(va);
	EXPECT_EQ(s.violations(), 0u) << s.describe();
}

// In lazy-MMU mode (zap, mprotect) hpte_need_flush batches (ppc64_tlb_batch): the HPTEs
// stay and no tlbie is issued until arch_leave_lazy_mmu_mode, which flushes them all, one
// invalidation per run of adjacent pages.
TEST(PpcHashFlush, LazyModeFlushesAtLeave)
{
	HashSpace s;
	const uint64_t va = s.addr & ~(SZ_64K - 1), pfn = 0x330;
	const unsigned idx[] = {0, 1, 3};
	ptemu_walk_result out{};
	for (unsigned i : idx) {
		s.set_pte(va + i * SZ_64K, mk(pfn + i, R | W | Y));
		ASSERT_EQ(s.hw(va + i * SZ_64K, PTEMU_ACCESS_READ, &out), PTEMU_WALK_OK) << i;
	}
	ASSERT_EQ(s.valid_hptes(), 3u);
	s.take_flushes();
	const uint64_t inv = s.stat(PTEMU_STAT_hpte_invalidations);

	ptemu_spinlock *ptl = nullptr;
	pte_t *ptep = pte_offset_map_lock(s.mm, s.pmd, va, &ptl);
	ASSERT_NE(ptep, nullptr);
	arch_enter_lazy_mmu_mode(s.mm);
	for (unsigned i : idx)
		EXPECT_EQ(ptep_get_and_clear(s.mm, va + i * SZ_64K, ptep_add(ptep, i)).val & K_HASHPTE, K_HASHPTE);
	EXPECT_TRUE(s.take_flushes().empty()) << "batched";
	EXPECT_EQ(s.valid_hptes(), 3u) << "flush_hash_range waits for the leave";
	EXPECT_EQ(s.stat(PTEMU_STAT_hpte_invalidations), inv);
	arch_leave_lazy_mmu_mode(s.mm);
	pte_unmap_unlock(ptep, ptl);

	EXPECT_EQ(s.valid_hptes(), 0u);
	EXPECT_EQ(s.stat(PTEMU_STAT_hpte_invalidations), inv + 3);
	const std::vector<Flush> want = {{s.mm, va, va + 2 * SZ_64K}, {s.mm, va + 3 * SZ_64K, va + 4 * SZ_64K}};
	EXPECT_EQ(s.take_flushes(), want);
	// Leaving with nothing batched flushes nothing.
	arch_enter_lazy_mmu_mode(s.mm);
	arch_leave_lazy_mmu_mode(s.mm);
	EXPECT_TRUE(s.take_flushes().empty());
	EXPECT_EQ(s.violations(), 0u) << s.describe();
}

// ---- PTEG overflow -------------------------------------------------------------------------

// Pages of one segment (one VSID) whose index in it differs by a multiple of 128 hash to
// one primary group: the first eight fill it, the next eight the secondary group, then
// each insert evicts (native_hpte_remove, no tlbie). Every access still translates right,
// an evicted page being hashed again, and clearing every PTE leaves no HPTE behind.
TEST(PpcHashGroups, OverflowUsesTheSecondaryGroupThenEvicts)
{
	HashSpace s;
	const uint64_t seg = 2 * SZ_256M;
	const unsigned n = 24;
	std::vector<uint64_t> va(n), pfn(n);
	std::vector<unsigned> group(n);
	std::vector<bool> secondary(n);
	ptemu_walk_result out{};
	for (unsigned k = 0; k < n; k++) {
		va[k] = seg + (5 + 128ull * k) * SZ_64K;
		pfn[k] = 0x400 + k;
		ASSERT_EQ(va[k] >> 28, seg >> 28) << "one segment";
		s.set_pte(va[k], mk(pfn[k], R | W | Y));
		const uint64_t ev = s.stat(PTEMU_STAT_hpte_evictions);
		ASSERT_EQ(s.hw(va[k] + 0x10, PTEMU_ACCESS_READ, &out), PTEMU_WALK_OK) << k;
		EXPECT_EQ(out.paddr, (pfn[k] << 16) | 0x10) << k;
		std::vector<unsigned> at = s.hptes_mapping(pfn[k] << 16);
		ASSERT_EQ(at.size(), 1u) << k;
		group[k] = at[0] / kPerGroup;
		secondary[k] = (s.hpte_v(at[0]) & HPTE_V_SECONDARY) != 0;
		// The hidx word names where it went.
		const uint64_t hidx = s.hidx(va[k]);
		ASSERT_NE(hidx, 0u) << k;
		EXPECT_EQ((hidx - 1) & 7, at[0] % kPerGroup) << k;
		EXPECT_EQ(((hidx - 1) & 8) != 0, secondary[k]) << k;
		if (k < 2 * kPerGroup) {
			EXPECT_EQ(s.stat(PTEMU_STAT_hpte_evictions), ev) << "room left, page " << k;
		} else {
			EXPECT_EQ(s.stat(PTEMU_STAT_hpte_evictions), ev + 1) << "both groups full, page " << k;
		}
	}
	// Read from the HPT: one primary group for all, then its secondary (~hash).
	for (unsigned k = 0; k < kPerGroup; k++) {
		EXPECT_EQ(group[k], group[0]) << k;
		EXPECT_FALSE(secondary[k]) << k;
	}
	for (unsigned k = kPerGroup; k < 2 * kPerGroup; k++) {
		EXPECT_EQ(group[k], (~group[0]) & (kGroups - 1)) << k;
		EXPECT_TRUE(secondary[k]) << k;
	}
	for (unsigned k = 2 * kPerGroup; k < n; k++)
		EXPECT_TRUE(group[k] == group[0] || group[k] == ((~group[0]) & (kGroups - 1))) << k;
	EXPECT_GT(s.stat(PTEMU_STAT_hpte_evictions), 0u);
	EXPECT_EQ(s.valid_hptes(), 2 * kPerGroup) << "two full groups, nothing elsewhere";

	// Every page still translates to its own frame, twice round.
	s.take_flushes();
	for (unsigned round = 0; round < 2; round++)
		for (unsigned k = 0; k < n; k++) {
			ASSERT_EQ(s.hw(va[k] + 0x20, PTEMU_ACCESS_READ, &out), PTEMU_WALK_OK) << k;
			EXPECT_EQ(out.paddr, (pfn[k] << 16) | 0x20) << k;
			EXPECT_EQ(s.hptes_mapping(pfn[k] << 16).size(), 1u) << "one HPTE per page, page " << k;
		}
	EXPECT_TRUE(s.take_flushes().empty()) << "an eviction issues no tlbie";
	for (unsigned k = 0; k < n; k++)
		EXPECT_LE(s.hptes_mapping(pfn[k] << 16).size(), 1u) << "a duplicate HPTE, page " << k;

	// Each clear flushes its page's slot if the HPTE is still there: none remains.
	for (unsigned k = 0; k < n; k++)
		s.clear_pte(va[k]);
	EXPECT_EQ(s.valid_hptes(), 0u);
	EXPECT_EQ(s.take_flushes().size(), n) << "a flush by slot always issues the tlbie";
	EXPECT_EQ(s.violations(), 0u) << s.describe();
}

// ---- THP: the deposited table is the slot array ---------------------------------------------

namespace {

// A shmem file mapped shared over two PMDs, its first PMD collapsed by collapse_file (as
// tests/test_khugepaged.cpp's Shmem), then faulted in by a huge pmd.
struct HashShmem : MachineHolder {
	HashShmem() : MachineHolder("ppc64-hash")
	{
		mm = mm_alloc(m);
		f = ptemu_file_create(m, 11, true, 2 * SZ_16M, 2 * SZ_16M);
		addr = (uint64_t)do_mmap(mm, 0, 2 * SZ_16M, PTEMU_PROT_READ | PTEMU_PROT_WRITE,
					 PTEMU_MAP_SHARED, f, 0);
		for (uint64_t i = 0; i < SZ_16M / SZ_64K; i += 2) {
			uint64_t v = 0xabc000 + i;
			EXPECT_EQ(copy_to_user(mm, addr + i * SZ_64K, &v, 8), 0);
		}
		m->tlb.ctx = this;
		m->tlb.flush_range = [](void *c, mm_struct *who, uint64_t s, uint64_t e, bool) {
			static_cast<HashShmem *>(c)->flushes.push_back({who, s, e});
		};
	}
	~HashShmem()
	{
		m->tlb.flush_range = nullptr;
		if (mm)
			mm_destroy(mm);
		ptemu_file_put(f);
	}
	uint64_t read64(uint64_t a)
	{
		uint64_t v = 0;
		EXPECT_EQ(copy_from_user(mm, &v, a, 8), 0);
		return v;
	}
	ptemu_walk_fault hw(uint64_t va, ptemu_access acc, ptemu_walk_result *out)
	{
		ptemu_walk_ctx ctx;
		ptemu_checked_walk_ctx(m, &ctx);
		ctx.mm = mm;
		return A.hw_walk(&ctx, mm->pgd_pa, va, acc, out);
	}
	std::vector<unsigned> hptes_mapping(uint64_t pa) const
	{
		std::vector<unsigned> v;
		for (unsigned i = 0; i < kHptes; i++) {
			uint64_t hv = ptemu_entry_load(m, m->arch_mem_pa + 16ull * i);
			uint64_t hr = ptemu_entry_load(m, m->arch_mem_pa + 16ull * i + 8);
			if ((hv & HPTE_V_VALID) && (hr & K_RPN_MASK) == (pa & ~(SZ_64K - 1)))
				v.push_back(i);
		}
		return v;
	}

	mm_struct *mm = nullptr;
	ptemu_file *f = nullptr;
	uint64_t addr = 0;
	std::vector<Flush> flushes;
};

} // namespace

// do_set_pmd deposits a table with the huge pmd (arch_needs_pgtable_deposit); hash_page on
// the THP keeps each 64 KiB piece's slot in that table's bytes (get_hpte_slot_array) and
// sets HASHPTE in the pmd; a zap of one page clears the pmd whole: every piece's HPTE is
// invalidated, the 16 MiB flushed, the table withdrawn and freed; the counters stay right.
TEST(PpcHashThp, DepositedTableHoldsTheSlotsAndGoesWithTheZap)
{
	HashShmem s;
	ASSERT_NE(s.m, nullptr);
	ASSERT_EQ(s.addr % SZ_16M, 0u);
	ASSERT_EQ(collapse_file(nullptr, 0, s.f, 0, nullptr), SCAN_SUCCEED) << s.describe();
	const int64_t tables_before_fault = mm_pgtables_bytes(s.mm);
	EXPECT_EQ(s.read64(s.addr + 2 * SZ_64K), 0xabc002u);
	pmd_t *pmdp = mm_find_pmd(s.mm, s.addr);
	ASSERT_NE(pmdp, nullptr);
	const pmd_t pmd = pmdp_get_lockless(pmdp);
	ASSERT_TRUE(pmd_trans_huge(pmd)) << std::hex << pmd.val;
	const uint64_t pmd_pa = ptemu_slot_pa(s.m, pmdp), folio_pa = A.pmd_leaf(pmd.val).pfn << 16;
	EXPECT_EQ(pmd.val & K_HPTEFLAGS, 0u) << "nothing hashed yet";

	const uint64_t dep = ptemu_pgtable_deposited(s.m, pmd_pa);
	ASSERT_NE(dep, 0u) << "no table deposited with the huge pmd";
	EXPECT_EQ(check_table_state(s.m, dep), TABLE_ALLOCATED)
		<< ptemu_table_state_name(check_table_state(s.m, dep));
	EXPECT_EQ(mm_pgtables_bytes(s.mm), tables_before_fault + (int64_t)A.pte_table_bytes)
		<< "mm_inc_nr_ptes at the deposit";
	const uint8_t *slots = static_cast<const uint8_t *>(ptemu_slot_ptr(s.m, dep));
	for (unsigned i = 0; i < 256; i++)
		ASSERT_EQ(slots[i], 0u) << i;

	// Two pieces hashed: each a valid slot byte, bits 4:1 the hidx of its HPTE.
	const unsigned pieces[] = {3, 200};
	ptemu_walk_result out{};
	for (unsigned p : pieces) {
		const uint64_t va = s.addr + p * SZ_64K + 0x18;
		ASSERT_EQ(s.hw(va, PTEMU_ACCESS_READ, &out), PTEMU_WALK_OK) << p;
		EXPECT_EQ(out.paddr, folio_pa + p * SZ_64K + 0x18) << p;
		ASSERT_EQ(slots[p] & 1, 1) << "piece " << p << " slot byte " << (unsigned)slots[p];
		const std::vector<unsigned> at = s.hptes_mapping(folio_pa + p * SZ_64K);
		ASSERT_EQ(at.size(), 1u) << p;
		const unsigned hidx = slots[p] >> 1;
		EXPECT_EQ(hidx & 7, at[0] % kPerGroup) << p;
		const uint64_t v = ptemu_entry_load(s.m, s.m->arch_mem_pa + 16ull * at[0]);
		EXPECT_EQ((hidx & 8) != 0, (v & HPTE_V_SECONDARY) != 0) << p;
	}
	for (unsigned i = 0; i < 256; i++)
		if (i != pieces[0] && i != pieces[1]) {
			EXPECT_EQ(slots[i], 0u) << i;
		}
	const uint64_t hashed = pmdp_get_lockless(pmdp).val;
	EXPECT_EQ(hashed & K_HASHPTE, K_HASHPTE);
	EXPECT_EQ(hashed & K_BUSY, 0u);
	EXPECT_EQ(hashed & K_ACCESSED, K_ACCESSED);
	EXPECT_EQ(pmd_kind(__pmd(hashed), nullptr), PTEMU_ENTRY_LEAF);
	mm_audit_counters(s.mm);

	// A one-page DONTNEED: zap_huge_pmd.
	s.flushes.clear();
	const uint64_t inv = s.stat(PTEMU_STAT_hpte_invalidations);
	const int64_t tables = mm_pgtables_bytes(s.mm);
	ASSERT_EQ(do_madvise(s.mm, s.addr + 5 * SZ_64K, SZ_64K, PTEMU_MADV_DONTNEED), 0);
	EXPECT_TRUE(pmd_none(pmdp_get_lockless(pmdp)));
	EXPECT_EQ(ptemu_pgtable_deposited(s.m, pmd_pa), 0u) << "the deposit slot is left 0";
	EXPECT_EQ(check_table_state(s.m, dep), TABLE_FREE)
		<< ptemu_table_state_name(check_table_state(s.m, dep));
	for (unsigned p : pieces)
		EXPECT_TRUE(s.hptes_mapping(folio_pa + p * SZ_64K).empty()) << p;
	EXPECT_EQ(s.stat(PTEMU_STAT_hpte_invalidations), inv + 2);
	const std::vector<Flush> want = {{s.mm, s.addr, s.addr + SZ_16M}};
	EXPECT_EQ(s.flushes, want);
	EXPECT_EQ(mm_pgtables_bytes(s.mm), tables - (int64_t)A.pte_table_bytes);
	mm_audit_counters(s.mm);
	EXPECT_EQ(s.count(VIOLATION_COUNTER_MISMATCH), 0u) << s.describe();

	// Faulted in again: a new deposit; exit audits the counters too.
	EXPECT_EQ(s.read64(s.addr + 2 * SZ_64K), 0xabc002u);
	EXPECT_TRUE(pmd_trans_huge(pmdp_get_lockless(pmdp)));
	EXPECT_NE(ptemu_pgtable_deposited(s.m, pmd_pa), 0u);
	ASSERT_EQ(s.hw(s.addr, PTEMU_ACCESS_READ, &out), PTEMU_WALK_OK);
	exit_mmap(s.mm);
	s.mm = nullptr;
	EXPECT_EQ(s.count(VIOLATION_COUNTER_MISMATCH), 0u) << s.describe();
	EXPECT_EQ(s.violations(), 0u) << s.describe();
}

// ---- hash__pmdp_collapse_flush ------------------------------------------------------------

namespace {

class PpcHashCollapseFlush : public testing::TestWithParam<ptemu_injection> {};

} // namespace

// The pmd cleared, serialize_against_pte_lookup (an IPI: left out under ppc-no-serialize),
// then flush_hash_table_pmd_range over the detached table: each PTE with HASHPTE has its
// HPTE flushed by slot (here a PTE left hashed in the table on purpose). no-tlb-flush is
// not offered: file collapse leaves the step nothing to do.
TEST_P(PpcHashCollapseFlush, FlushesTheHashedPtesOfTheDetachedTable)
{
	const ptemu_injection inj = GetParam();
	EXPECT_FALSE(ptemu_injection_applies(INJECT_NO_TLB_FLUSH, &A));
	HashSpace s(inj);
	const uint64_t table = s.install_table(), va = s.addr, pfn = 0x340;
	s.set_pte(va, mk(pfn, R | W | Y));
	s.set_pte(va + SZ_64K, mk(pfn + 1, R | W | Y));	// not hashed
	ptemu_walk_result out{};
	ASSERT_EQ(s.hw(va, PTEMU_ACCESS_READ, &out), PTEMU_WALK_OK);
	ASSERT_EQ(s.hptes_mapping(pfn << 16).size(), 1u);
	s.take_flushes();
	const uint64_t inv = s.stat(PTEMU_STAT_hpte_invalidations);
	static std::atomic<unsigned> ipis;
	ipis = 0;
	s.m->tlb.ipi_all = [](void *) { ipis++; };

	s.detach_table();
	s.m->tlb.ipi_all = nullptr;
	EXPECT_EQ(ipis.load(), inj == INJECT_PPC_NO_SERIALIZE ? 0u : 1u)
		<< "serialize_against_pte_lookup: one IPI to the mm's CPUs";
	EXPECT_TRUE(pmd_none(pmdp_get_lockless(s.pmd)));
	EXPECT_EQ(check_table_state(s.m, table), TABLE_DETACHED);
	const std::vector<Flush> flushes = s.take_flushes();
	EXPECT_TRUE(s.hptes_mapping(pfn << 16).empty()) << "the hashed PTE's HPTE survived";
	EXPECT_EQ(s.stat(PTEMU_STAT_hpte_invalidations), inv + 1);
	const uint64_t page = va & ~(SZ_64K - 1);
	const std::vector<Flush> want = {{s.mm, page, page + SZ_64K}};
	EXPECT_EQ(flushes, want);
	// Neither the HPT nor the walk reaches the table any more.
	EXPECT_NE(s.hw(va, PTEMU_ACCESS_READ, &out), PTEMU_WALK_OK);

	// Emptied by hand (the PTEs were left on purpose), then freed as retract does.
	ptemu_pte_store(s.m, table + 8ull * ptemu_level_index(&A, PTE, va), 0);
	ptemu_pte_store(s.m, table + 8ull * ptemu_level_index(&A, PTE, va + SZ_64K), 0);
	pte_free_defer(s.mm, table);
	rcu_barrier();
	// A deferred fragment goes with its page (fixture.h's fragments_never_reused).
	const ptemu_table_state st = check_table_state(s.m, table);
	EXPECT_TRUE(st == TABLE_RCU_PENDING || st == TABLE_FREE) << ptemu_table_state_name(st);
	EXPECT_EQ(s.violations(), 0u) << s.describe();
}

INSTANTIATE_TEST_SUITE_P(PpcHash, PpcHashCollapseFlush,
			 testing::Values(INJECT_NONE, INJECT_PPC_NO_SERIALIZE),
			 [](const testing::TestParamInfo<ptemu_injection> &i) {
				 return std::string(i.param == INJECT_NONE ? "none" : "ppc_no_serialize");
			 });

// ---- ppc-hash-no-busy -------------------------------------------------------------------------

namespace {

class PpcHashNoBusy : public testing::TestWithParam<ptemu_injection> {};

// A walk reader that runs `between` right after hash_page's first read of the PTE: the
// read mark_busy makes before its compare-and-swap.
struct Interleave {
	ptemu_walk_ctx inner{};
	std::function<void()> between;
	bool armed = true;
	unsigned pte_reads = 0;

	static uint64_t read(const ptemu_walk_ctx *c, unsigned level, uint64_t t, unsigned i)
	{
		auto *self = static_cast<Interleave *>(c->opaque);
		uint64_t e = self->inner.read_entry(&self->inner, level, t, i);
		if (level == PTE) {
			self->pte_reads++;
			if (self->armed) {
				self->armed = false;
				self->between();
			}
		}
		return e;
	}
};

} // namespace

// A zap (MADV_DONTNEED in another thread) clears the PTE after hash_page read it and
// frees the page. With the handshake, hash_page's compare-and-swap fails on the cleared
// PTE: it reads again, finds nothing, enters nothing. Under ppc-hash-no-busy there is no
// compare-and-swap: the HPTE of the freed page is inserted, the final store refuses to
// bring the PTE back, and the HPTE stays: at the page's free the HPT still maps it, which
// the run's pages_freed check (vcpu.c's, repeated here for the mm) reports.
TEST_P(PpcHashNoBusy, ClearBetweenTheReadAndTheFinalStore)
{
	const ptemu_injection inj = GetParam();
	HashSpace s(inj);
	const int64_t a = do_mmap(s.mm, 0, SZ_64K, PTEMU_PROT_READ | PTEMU_PROT_WRITE,
				  PTEMU_MAP_PRIVATE | PTEMU_MAP_ANONYMOUS, nullptr, 0);
	ASSERT_GT(a, 0);
	const uint64_t va = (uint64_t)a, data = 0x5a5a;
	ASSERT_EQ(copy_to_user(s.mm, va, &data, 8), 0);
	const uint64_t pte0 = s.pte(va), pfn = (pte0 & K_RPN_MASK) >> 16;
	ASSERT_TRUE(A.pte_present(pte0));
	ASSERT_EQ(pte0 & K_HASHPTE, 0u);

	std::atomic<bool> at_free{false}, walk_done{false};
	std::atomic<uint64_t> freed{0};
	s.on_free = [&](uint64_t p, uint64_t nr) {
		freed = p;
		at_free = true;
		EXPECT_TRUE(wait_for([&] { return walk_done.load(); })) << "the walk never finished";
		uint64_t where = 0;
		if (s.m->arch->hw_cache_maps_pfn(s.mm, p, nr, &where))
			ptemu_report(s.m, VIOLATION_TLB_MAPS_FREED_PAGE, p << 16,
				     "page %#" PRIx64 " freed while the HPT maps it at %#" PRIx64, p << 16, where);
	};

	std::thread zapper;
	Interleave il;
	ptemu_checked_walk_ctx(s.m, &il.inner);
	il.between = [&] {
		zapper = std::thread([&] {
			ptemu_thread_register(s.m, "zapper");
			EXPECT_EQ(do_madvise(s.mm, va, SZ_64K, PTEMU_MADV_DONTNEED), 0);
			ptemu_thread_unregister();
		});
		EXPECT_TRUE(wait_for([&] { return at_free.load(); })) << "the zap did not free the page";
		EXPECT_EQ(s.pte(va), 0u) << "the zap cleared the PTE";
	};
	ptemu_walk_ctx ctx{Interleave::read, &il, s.mm};
	ptemu_walk_result out{};
	const ptemu_walk_fault f = A.hw_walk(&ctx, s.mm->pgd_pa, va + 0x100, PTEMU_ACCESS_READ, &out);
	walk_done = true;
	if (zapper.joinable())
		zapper.join();
	s.on_free = nullptr;
	ASSERT_FALSE(il.armed) << "hash_page never read the PTE";
	EXPECT_EQ(freed.load(), pfn);
	EXPECT_EQ(s.pte(va), 0u) << "hash_page's final store brought the cleared PTE back";

	uint64_t where = 0;
	if (inj == INJECT_NONE) {
		EXPECT_EQ(f, PTEMU_WALK_TRANSLATION);
		EXPECT_EQ(il.pte_reads, 2u) << "the failed compare-and-swap reads the PTE again";
		EXPECT_TRUE(s.hptes_mapping(pfn << 16).empty());
		EXPECT_FALSE(A.hw_cache_maps_pfn(s.mm, pfn, 1, &where));
		EXPECT_EQ(s.violations(), 0u) << s.describe();
	} else {
		EXPECT_EQ(f, PTEMU_WALK_OK) << "the injected bug: the freed page is mapped";
		EXPECT_EQ(out.paddr, (pfn << 16) | 0x100);
		EXPECT_EQ(il.pte_reads, 1u);
		EXPECT_EQ(s.hptes_mapping(pfn << 16).size(), 1u);
		ASSERT_TRUE(A.hw_cache_maps_pfn(s.mm, pfn, 1, &where));
		EXPECT_EQ(where, va & ~(SZ_64K - 1));
		EXPECT_EQ(s.count(VIOLATION_TLB_MAPS_FREED_PAGE), 1u) << s.describe();
		EXPECT_EQ(s.violations(), 1u) << s.describe();
	}
}

INSTANTIATE_TEST_SUITE_P(PpcHash, PpcHashNoBusy,
			 testing::Values(INJECT_NONE, INJECT_PPC_HASH_NO_BUSY),
			 [](const testing::TestParamInfo<ptemu_injection> &i) {
				 return std::string(i.param == INJECT_NONE ? "none" : "ppc_hash_no_busy");
			 });
