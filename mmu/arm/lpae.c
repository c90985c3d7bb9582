/* arm-lpae: ARMv7 with the Large Physical Address Extension, as Linux v6.6 uses it for user
 * space under the 3G/1G split (CONFIG_ARM_LPAE, kernel-spec 2.6): three levels of 8-byte
 * little-endian long descriptors, a first level of 4 x 1 GiB entries (TTBCR.T0SZ = 0,
 * T1SZ = 2, so addresses from 0xC0000000 belong to TTBR1 and the kernel), then 512 x 2 MiB
 * and 512 x 4 KiB. THP exists on arm only here: a 2 MiB block at the pmd level.
 *
 * The hardware format is VMSAv8-64's with a 40-bit output address, so the walk is the one
 * mmu/arm64 implements (AF, AP[2:1], XN/PXN, APTable/XNTable/PXNTable), except that PL0
 * cannot execute what it cannot read (lpae_hw_walk). What differs is what Linux keeps in
 * the software bits (asm/pgtable-3level.h):
 *   bits 1:0    L_PTE_PRESENT (3); L_PTE_VALID is bit 0 alone
 *   bits 4:2    AttrIndx: L_PTE_MT_WRITEALLOC (7) for user memory
 *   bit 6       L_PTE_USER (AP[1]); bit 7 AP[2] (PTE_AP2), computed when the entry is set
 *   bits 9:8    L_PTE_SHARED; bit 10 L_PTE_YOUNG (AF); bit 11 nG (PTE_EXT_NG)
 *   bit 53      PXN (PTE_EXT_PXN), in every user protection
 *   bit 54      L_PTE_XN; 55 L_PTE_DIRTY; 56 L_PTE_SPECIAL; 57 L_PTE_NONE;
 *   bit 58      L_PTE_RDONLY (software: Linux tracks "not writable", not "writable")
 * What reaches the table is not the pgprot alone: set_ptes (mm/mmu.c) adds nG only to a
 * valid, user, young PTE, and cpu_v7_set_pte_ext (proc-v7-3level.S) clears L_PTE_VALID of a
 * PROT_NONE PTE or else sets AP[2] unless the PTE is dirty and writable, so the first store
 * to a clean page takes a permission fault that the fault path turns into pte_mkdirty.
 * set_pmd_at (pgtable-3level.h) does its own version for a huge pmd. A PTE whose AF is
 * clear takes an access flag fault.
 *
 * Tables are whole pages from the generic allocator and pte_free_defer; SMP LPAE selects
 * MMU_GATHER_RCU_TABLE_FREE. ARMv7's TLB maintenance by MVA (TLBIMVAIS) also invalidates
 * cached walks for that address: there is no last-level-only form (TLBIMVALIS came with
 * ARMv8's AArch32), so every flush here drops walk caches.
 */
#include "arm.h"

#include <elf.h>

#include <capstone/capstone.h>
#include <unicorn/unicorn.h>

#include <ptemu/mm.h>
#include <ptemu/mmu_gather.h>
#include <ptemu/pgtable.h>

#include "../arm64/arm64.h"

#define LPAE_PAGE_SHIFT		12

#define BIT_ULL(n)		(1ull << (n))
#define GENMASK_ULL(h, l)	((~0ull << (l)) & (~0ull >> (63 - (h))))

#define L_PTE_VALID		BIT_ULL(0)
#define PMD_TABLE_BIT		BIT_ULL(1)
#define L_PTE_PRESENT		(L_PTE_VALID | PMD_TABLE_BIT)
#define PMD_TYPE_TABLE		(L_PTE_VALID | PMD_TABLE_BIT)
#define L_PTE_MT_WRITEALLOC	(7ull << 2)
#define L_PTE_USER		BIT_ULL(6)
#define PTE_AP2			BIT_ULL(7)
#define L_PTE_SHARED		(3ull << 8)
#define L_PTE_YOUNG		BIT_ULL(10)
#define PTE_EXT_NG		BIT_ULL(11)
#define LPAE_OA_MASK		GENMASK_ULL(39, 12)
#define PTE_EXT_PXN		BIT_ULL(53)
#define L_PTE_XN		BIT_ULL(54)
#define L_PTE_DIRTY		BIT_ULL(55)
#define L_PTE_NONE		BIT_ULL(57)
#define L_PTE_RDONLY		BIT_ULL(58)

/* The same bits under their pmd names (pgtable-3level.h, pgtable-3level-hwdef.h). */
#define L_PMD_SECT_VALID	L_PTE_VALID
#define PMD_SECT_AP2		PTE_AP2
#define PMD_SECT_nG		PTE_EXT_NG
#define L_PMD_SECT_DIRTY	L_PTE_DIRTY
#define L_PMD_SECT_NONE		L_PTE_NONE
#define L_PMD_SECT_RDONLY	L_PTE_RDONLY

static const struct arm_linux_pte_bits lpae_linux_bits = {
	.user = L_PTE_USER, .rdonly = L_PTE_RDONLY, .xn = L_PTE_XN,
	.young = L_PTE_YOUNG, .dirty = L_PTE_DIRTY, .none = L_PTE_NONE,
};

/* Level of the pmd: level 0 is the folded pud (the 4-entry pgd). */
#define LPAE_PMD_LEVEL		1
#define LPAE_PTE_LEVEL		2

static uint64_t lpae_none_entry(unsigned level)
{
	return 0;
}

/* pud_bad/pmd_bad are !(val & 2), but at the pmd level pmd_trans_huge (any value that is not
 * a table) is tested first in every path, so with THP a pmd is none, a table or huge. */
static enum ptemu_entry_kind lpae_classify(unsigned level, uint64_t entry, uint64_t *table_pa)
{
	if (!entry)
		return PTEMU_ENTRY_NONE;
	if (level == LPAE_PTE_LEVEL) {
		if ((entry & L_PTE_PRESENT) == L_PTE_PRESENT ||
		    (entry & (L_PTE_PRESENT | L_PTE_NONE)) == (PMD_TABLE_BIT | L_PTE_NONE))
			return PTEMU_ENTRY_LEAF;
		/* bits[1:0] = 00: a swap entry; 01 is reserved at level 3 */
		return (entry & L_PTE_PRESENT) ? PTEMU_ENTRY_BAD : PTEMU_ENTRY_MIGRATION;
	}
	if ((entry & PMD_TYPE_TABLE) == PMD_TYPE_TABLE) {
		if (table_pa)
			*table_pa = entry & LPAE_OA_MASK;
		return PTEMU_ENTRY_TABLE;
	}
	return level == LPAE_PMD_LEVEL ? PTEMU_ENTRY_LEAF : PTEMU_ENTRY_BAD;
}

/* The type alone at both levels. pud_populate writes PMD_TYPE_TABLE; pmd_populate writes
 * _PAGE_USER_TABLE, which is PMD_TYPE_TABLE | PMD_BIT4 | PMD_DOMAIN(), and both of those are 0
 * in pgtable-3level-hwdef.h. user_pmd_table, the one that can gain PMD_PXNTABLE, is used
 * only for the classic format (asm/pgalloc.h, build_mem_type_table in mm/mmu.c). */
static uint64_t lpae_mk_table(unsigned level, uint64_t table_pa)
{
	return (table_pa & LPAE_OA_MASK) | PMD_TYPE_TABLE;
}

static bool lpae_pte_none(uint64_t pte)
{
	return !pte;
}

/* pte_present: either of L_PTE_PRESENT's bits, so PROT_NONE (valid cleared) is present. */
static bool lpae_pte_present(uint64_t pte)
{
	return pte & L_PTE_PRESENT;
}

/* pfn_pte(pfn, vma->vm_page_prot) after pte_mkyoung/pte_mkdirty: protection_map[] is
 * _L_PTE_DEFAULT (L_PTE_PRESENT | L_PTE_YOUNG) and the protection's L_PTE_USER, L_PTE_RDONLY,
 * L_PTE_XN, L_PTE_NONE, plus user_pgprot, which build_mem_type_table (mm/mmu.c) makes
 * L_PTE_MT_WRITEALLOC and L_PTE_SHARED (both forced on SMP) and, on LPAE, PTE_EXT_PXN. */
static uint64_t lpae_pteval(struct ptemu_leaf leaf)
{
	return ((leaf.pfn << LPAE_PAGE_SHIFT) & LPAE_OA_MASK) | L_PTE_PRESENT |
	       L_PTE_MT_WRITEALLOC | L_PTE_SHARED | PTE_EXT_PXN |
	       arm_linux_pte_prot(&lpae_linux_bits, leaf.flags);
}

/* set_ptes for a user address, then cpu_v7_set_pte_ext. nG comes only with
 * pte_valid_user(): valid, L_PTE_USER and young, so neither a PROT_NONE nor an old PTE has
 * it (the __sync_icache_dcache that goes with it is cache maintenance, no bit).
 * cpu_v7_set_pte_ext leaves AP[2] alone in a PROT_NONE PTE (it only clears VALID); for the
 * others AP[2] is !L_PTE_DIRTY || L_PTE_RDONLY. */
static uint64_t lpae_mk_pte(struct ptemu_leaf leaf)
{
	uint64_t pte = lpae_pteval(leaf);

	if ((pte & L_PTE_VALID) && (pte & L_PTE_USER) && (pte & L_PTE_YOUNG))
		pte |= PTE_EXT_NG;
	if (!(pte & L_PTE_VALID))
		return pte;
	if (pte & L_PTE_NONE)
		pte &= ~L_PTE_VALID;
	else if ((pte & L_PTE_RDONLY) || !(pte & L_PTE_DIRTY))
		pte |= PTE_AP2;
	else
		pte &= ~PTE_AP2;
	return pte;
}

static struct ptemu_leaf lpae_pte_leaf(uint64_t pte)
{
	return (struct ptemu_leaf){ .pfn = (pte & LPAE_OA_MASK) >> LPAE_PAGE_SHIFT,
				    .flags = arm_linux_pte_flags(&lpae_linux_bits, pte) };
}

/* mk_huge_pmd: pmd_mkhuge clears the table bit of pfn_pmd(pfn, vm_page_prot). set_pmd_at
 * differs from the PTE path: nG always (PMD_SECT_nG, young or not), and AP[2] unless
 * pmd_write && pmd_dirty even for PROT_NONE, whose VALID it clears. */
static uint64_t lpae_mk_pmd_leaf(struct ptemu_leaf leaf)
{
	uint64_t pmd = lpae_pteval(leaf) & ~PMD_TABLE_BIT;

	if (pmd & L_PMD_SECT_NONE)
		pmd &= ~L_PMD_SECT_VALID;
	if (!(pmd & L_PMD_SECT_RDONLY) && (pmd & L_PMD_SECT_DIRTY))
		pmd &= ~PMD_SECT_AP2;
	else
		pmd |= PMD_SECT_AP2;
	return pmd | PMD_SECT_nG;
}

/* PL0 sees TTBR0 below 0xC0000000 only; above it TTBR1's kernel tables, never user.
 *
 * The shared walk gives VMSAv8-64's EL0 rule, where execute depends on UXN alone (an EL0
 * execute-only page). VMSAv7 has no such page: an instruction fetch also needs read
 * permission at the current PL (ARMv7 ARM, "Execute-never restrictions on instruction
 * fetching"; QEMU's get_S1prot makes PL0 XN when the PL0 read is refused). So a page that
 * PL0 cannot read, by AP[1] or by APTable[0] above it, is not executable by PL0 either. */
static enum ptemu_walk_fault lpae_hw_walk(const struct ptemu_walk_ctx *ctx, uint64_t root_pa,
					  uint64_t va, enum ptemu_access access,
					  struct ptemu_walk_result *out)
{
	enum ptemu_walk_fault f;

	if (va >= 0xc0000000ull) {
		*out = (struct ptemu_walk_result){ .fault = PTEMU_WALK_PERMISSION };
		return PTEMU_WALK_PERMISSION;
	}
	f = ptemu_vmsa_long_walk(&ptemu_arch_arm_lpae, LPAE_OA_MASK, ctx, root_pa, va, access,
				 out);
	if (!(out->perms & PTEMU_PROT_READ))
		out->perms &= ~PTEMU_PROT_EXEC;
	/* An access flag fault keeps its priority over the permission check. */
	if (f == PTEMU_WALK_OK && access == PTEMU_ACCESS_FETCH &&
	    !(out->perms & PTEMU_PROT_EXEC))
		f = out->fault = PTEMU_WALK_PERMISSION;
	return f;
}

const struct ptemu_arch ptemu_arch_arm_lpae = {
	.name = "arm-lpae",
	.description = "arm (ARMv7 LPAE), 3 levels of long descriptors, 2 MiB PMD THP",
	.pt_reclaim_status = "what-if: 6.14 reclaims on x86-64 only; LPAE selects "
			     "MMU_GATHER_RCU_TABLE_FREE with the generic tlb_remove_table",
	.page_shift = LPAE_PAGE_SHIFT,
	.va_bits = 32,
	.task_size = ARM_TASK_SIZE,
	.nr_levels = 3,
	.level_shift = { 30, 21, 12 },
	.level_bits = { 2, 9, 9 },
	/* The pgd is 4 x 8 bytes; the model gives it a page of its own. */
	.table_bytes = { 4096, 4096, 4096 },
	.entry_bytes = 8,
	.big_endian = false,
	.pmd_leaf_shift = 21,
	.none_entry = lpae_none_entry,
	.classify = lpae_classify,
	.mk_table = lpae_mk_table,
	.pte_none = lpae_pte_none,
	.pte_present = lpae_pte_present,
	.mk_pte = lpae_mk_pte,
	.pte_leaf = lpae_pte_leaf,
	.mk_pmd_leaf = lpae_mk_pmd_leaf,
	.pmd_leaf = lpae_pte_leaf,
	.pte_table_bytes = 4096,
	.tables_per_page = 1,
	/* arm selects no ARCH_ENABLE_SPLIT_PMD_PTLOCK: pmd_lock() is mm->page_table_lock
	 * (pin_page_for_write takes it for a huge pmd). PTE tables keep split locks. */
	.pmd_lock_is_page_table_lock = true,
	.pte_alloc_one = ptemu_generic_pte_alloc_one,
	.pte_free = ptemu_generic_pte_free,
	.pte_free_defer = ptemu_generic_pte_free_defer,
	.rcu_table_free = true,
	.pte_free_tlb = ptemu_generic_pte_free_tlb,
	.tlb_remove_table = ptemu_generic_tlb_remove_table,
	.hw_walk = lpae_hw_walk,
	.flush_waits_for_walks = true,	/* TLBIMVAIS + DSB */
	.walker_is_rcu_reader = false,
	.retract_flush = PTEMU_RETRACT_FLUSH_RANGE,
	.leaf_flush_drops_walk_cache = true,
	.access_fixup_flushes_tlb = true,	/* the generic ptep_set_access_flags */
	/* do_page_fault: VM_ACCESS_FLAGS for a read, as on arm64 without EPAN. */
	.read_fault_vm_flags = VM_READ | VM_WRITE | VM_EXEC,
	.tlb_entries = 512,
	.walk_cache_entries = 32,
	.isa = PTEMU_ARM32_ISA,
};
