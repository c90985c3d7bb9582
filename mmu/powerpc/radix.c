/* ppc64-radix: POWER9 radix translation with 64 KiB pages, as Linux v6.6 programs it for
 * user space (kernel-spec 2.3; asm/book3s/64/radix.h, radix-64k.h, radix_tlb.c).
 *
 * Index sizes 13/9/9/5 (PGD to PTE): the PGD is one 64 KiB page, PUD and PMD tables 4 KiB,
 * PTE tables 32 x 8 B = 256 B fragments, 256 to a page (pgtable-frag.c). A PMD maps 2 MiB,
 * the THP size. Entries are big-endian. A directory entry is _PAGE_PRESENT | the next
 * table's real address | NLS, the log2 of the next table's entry count
 * (RADIX_*_VAL_BITS); a leaf at any level has _PAGE_PTE.
 *
 * The hardware walk reads directory entries from the root the process table gives
 * (PRTB0's RTS and RPDS are fixed by the geometry) and caches them in its page-walk cache.
 * tlbie with RIC 0 drops TLB entries only, RIC 1 the walk cache, RIC 2 both; each waits
 * for walks in flight (tlbsync, ptesync). That is core's classification: flush_tlb_page
 * and the batched unmap flush are RIC 0 (leaf only), a gather that freed tables and a
 * retract's radix__flush_tlb_collapsed_pmd also drop the walk cache (the PWC by PID, then
 * the 32 pages of the PMD range: both at or under the 33-page ceiling), flush_tlb_mm is
 * RIC 2 by PID. tlbiel for an mm local to one CPU is core's shootdown of that CPU alone.
 *
 * Departure: the radix MMU sets R (accessed) and C (dirty) in the PTE itself, atomically.
 * The model's walker does not write entries, so an access that would set R, or a store
 * that would set C, takes the fault path instead, whose ptep_set_access_flags makes the
 * same change under the ptl; no protocol step depends on which of the two set it.
 *
 * PUD and PMD tables are whole pages here (the kernel takes PMD tables as 4 KiB fragments
 * of a page and PUD tables from a kmem cache): only PTE tables are retracted, and nothing
 * frees upper tables but free_pgtables.
 */
#include "book3s64.h"

#include <elf.h>

#include <capstone/capstone.h>
#include <unicorn/unicorn.h>

#include <ptemu/inject.h>
#include <ptemu/mm.h>
#include <ptemu/mmu_gather.h>
#include <ptemu/pgtable.h>

#define RADIX_PTE_LEVEL		3
#define RADIX_PMD_LEVEL		2
/* RADIX_PMD_BAD_BITS: no _PAGE_PTE, no _RPAGE_SW0, none of 0xe0 in a table pointer. */
#define RADIX_PMD_BAD_BITS	0x60000000000000e0ull
#define RADIX_NLS_MASK		0x1full
/* The next-level base: what PMD_MASKED_BITS leave. */
#define RADIX_NLB_MASK		(~PPC_PMD_MASKED_BITS)

static const unsigned radix_level_bits[] = { 13, 9, 9, 5 };

static uint64_t radix_none_entry(unsigned level)
{
	(void)level;
	return 0;
}

/* A non-zero slot at any level: a table pointer, a leaf (present, or invalidated for a
 * change), a swap entry (_PAGE_PTE without present: THP migration at the pmd level), or
 * garbage. */
static enum ptemu_entry_kind radix_classify(unsigned level, uint64_t entry, uint64_t *table_pa)
{
	if (!entry)
		return PTEMU_ENTRY_NONE;
	if (entry & PPC_PAGE_PTE) {
		if (level == 0)
			return PTEMU_ENTRY_BAD;	/* radix has no leaf in the PGD */
		if (entry & (PPC_PAGE_PRESENT | PPC_PAGE_INVALID))
			return PTEMU_ENTRY_LEAF;
		return PTEMU_ENTRY_MIGRATION;
	}
	if (level == RADIX_PTE_LEVEL || !(entry & PPC_PAGE_PRESENT) || (entry & RADIX_PMD_BAD_BITS))
		return PTEMU_ENTRY_BAD;
	if (table_pa)
		*table_pa = entry & RADIX_NLB_MASK;
	return PTEMU_ENTRY_TABLE;
}

static uint64_t radix_mk_table(unsigned level, uint64_t table_pa)
{
	return PPC_PAGE_PRESENT | (table_pa & RADIX_NLB_MASK) | radix_level_bits[level + 1];
}

/* radix__pte_none: a cleared PTE may keep the R and C bits the hardware set meanwhile. */
static bool radix_pte_none(uint64_t pte)
{
	return !(pte & ~(PPC_PAGE_DIRTY | PPC_PAGE_ACCESSED));
}

static enum ptemu_walk_fault radix_walk_fault(struct ptemu_walk_result *out,
					      enum ptemu_walk_fault fault, unsigned level)
{
	out->fault = fault;
	out->level = level;
	return fault;
}

/* A leaf as the MMU checks a problem-state access: EAA's privilege bit refuses it; read,
 * write and execute each need their own bit; R clear and, for a store, C clear are
 * updates the hardware would make (see the departure above). */
static enum ptemu_walk_fault radix_walk_leaf(uint64_t entry, unsigned level, unsigned shift,
					     uint64_t va, enum ptemu_access access,
					     struct ptemu_walk_result *out)
{
	uint64_t size = 1ull << shift;
	unsigned need = access == PTEMU_ACCESS_WRITE ? PTEMU_PROT_WRITE :
			access == PTEMU_ACCESS_FETCH ? PTEMU_PROT_EXEC : PTEMU_PROT_READ;

	out->leaf_size = size;
	out->paddr = (entry & PPC_PTE_RPN_MASK & ~(size - 1)) | (va & (size - 1));
	out->perms = 0;
	if (!(entry & PPC_PAGE_PRIVILEGED)) {
		if (entry & PPC_PAGE_READ)
			out->perms |= PTEMU_PROT_READ;
		if ((entry & PPC_PAGE_WRITE) && (entry & PPC_PAGE_DIRTY))
			out->perms |= PTEMU_PROT_WRITE;
		if (entry & PPC_PAGE_EXEC)
			out->perms |= PTEMU_PROT_EXEC;
	}
	if (entry & PPC_PAGE_PRIVILEGED)
		return radix_walk_fault(out, PTEMU_WALK_PERMISSION, level);
	if (!(entry & PPC_PAGE_ACCESSED))
		return radix_walk_fault(out, PTEMU_WALK_ACCESS_FLAG, level);
	if (!(out->perms & need))
		return radix_walk_fault(out, PTEMU_WALK_PERMISSION, level);
	return radix_walk_fault(out, PTEMU_WALK_OK, level);
}

static enum ptemu_walk_fault radix_hw_walk(const struct ptemu_walk_ctx *ctx, uint64_t root_pa,
					   uint64_t va, enum ptemu_access access,
					   struct ptemu_walk_result *out)
{
	const struct ptemu_arch *a = &ptemu_arch_ppc64_radix;
	uint64_t table_pa = root_pa;

	*out = (struct ptemu_walk_result){ .fault = PTEMU_WALK_OK };
	/* Quadrant 0 (user) covers the 52-bit space the RTS gives; anything above faults. */
	if (va >> a->va_bits)
		return radix_walk_fault(out, PTEMU_WALK_TRANSLATION, 0);
	for (unsigned level = 0;; level++) {
		uint64_t entry;

		out->table_pa[level] = table_pa;
		entry = ctx->read_entry(ctx, level, table_pa, ptemu_level_index(a, level, va));
		if (!(entry & PPC_PAGE_PRESENT))
			return radix_walk_fault(out, PTEMU_WALK_TRANSLATION, level);
		if (entry & PPC_PAGE_PTE) {
			if (level == 0)
				return radix_walk_fault(out, PTEMU_WALK_BAD_ENTRY, level);
			return radix_walk_leaf(entry, level, a->level_shift[level], va, access, out);
		}
		/* A directory entry where a leaf must be, or one whose NLS does not size the
		 * next table as the geometry does: the walk would index garbage. */
		if (level == RADIX_PTE_LEVEL ||
		    (entry & RADIX_NLS_MASK) != radix_level_bits[level + 1])
			return radix_walk_fault(out, PTEMU_WALK_BAD_ENTRY, level);
		table_pa = entry & RADIX_NLB_MASK;
	}
}

const struct ptemu_arch ptemu_arch_ppc64_radix = {
	.name = "ppc64-radix",
	.description = "powerpc book3s64 radix, 64 KiB pages, 4 levels (13/9/9/5), 256-byte PTE "
		       "fragments, 2 MiB PMD THP",
	.pt_reclaim_status = "what-if: 6.14 reclaims on x86-64 only; powerpc selects "
			     "MMU_GATHER_RCU_TABLE_FREE, the later widening's condition",

	.page_shift = BOOK3S64_PAGE_SHIFT,
	.va_bits = 52,
	/* DEFAULT_MAP_WINDOW_USER64: mmap without a hint above it stays below 128 TiB. */
	.task_size = 1ull << 47,
	.nr_levels = 4,
	.level_shift = { 39, 30, 21, 16 },
	.level_bits = { 13, 9, 9, 5 },
	.table_bytes = { 65536, 4096, 4096, 256 },
	.entry_bytes = 8,
	.big_endian = true,
	.pmd_leaf_shift = 21,

	.none_entry = radix_none_entry,
	.classify = radix_classify,
	.mk_table = radix_mk_table,
	.pte_none = radix_pte_none,
	.pte_present = book3s64_pte_present,
	.mk_pte = book3s64_mk_pte,
	.pte_leaf = book3s64_pte_leaf,
	.mk_pmd_leaf = book3s64_mk_pte,	/* radix__pmd_mkhuge: _PAGE_PTE, which pfn_pte sets */
	.pmd_leaf = book3s64_pte_leaf,

	.pte_table_bytes = 256,
	.tables_per_page = 256,
	.pte_alloc_one = pte_fragment_alloc,
	.pte_free = book3s64_pte_free,
	.pte_free_defer = book3s64_pte_free_defer,
	.rcu_table_free = true,		/* powerpc selects MMU_GATHER_RCU_TABLE_FREE */
	.pte_free_tlb = ptemu_generic_pte_free_tlb,	/* pgtable_free_tlb(PTE_INDEX) */
	.tlb_remove_table = book3s64_tlb_remove_table,
	.arch_exit_mmap = pte_frag_destroy,
	.pte_update_asserts_locked = true,

	/* access_error: a read needs vma_is_accessible, and radix refuses it on a VM_EXEC-only
	 * VMA (execute-only memory, PAGE_EXECONLY): VM_READ or VM_WRITE. */
	.read_fault_vm_flags = VM_READ | VM_WRITE,

	.hw_walk = radix_hw_walk,
	.flush_waits_for_walks = true,	/* tlbie; eieio; tlbsync; ptesync */
	.walker_is_rcu_reader = false,
	.retract_flush = PTEMU_RETRACT_FLUSH_RANGE,
	.leaf_flush_drops_walk_cache = false,	/* RIC 0 */
	.tlb_entries = 1024,
	.walk_cache_entries = 64,
	.model_injections = 1u << INJECT_PPC_V66_FRAG_DESTROY | 1u << INJECT_PPC_FRAG_REUSE |
			    1u << INJECT_PPC_NO_PAGE_ACTIVE,

	.isa = BOOK3S64_ISA,
};
