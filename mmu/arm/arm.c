/* arm: the classic ARMv6/v7 short-descriptor MMU as Linux v6.6 drives it without LPAE
 * (kernel-spec 2.6; asm/pgtable-2level.h, asm/pgtable-2level-hwdef.h, mm/proc-v7-2level.S).
 *
 * The hardware walks a first-level table of 4096 x 4-byte descriptors (1 MiB each) and
 * second-level tables of 256 x 4-byte small-page descriptors, which have no young or dirty
 * bit. Linux sees 2048 pgd entries of 8 bytes, each the pair of first-level descriptors
 * for 2 MiB, and folds the pmd into them. One 4 KiB page holds a PTE table:
 *     +0     Linux pt 0 (256 x 4 B)     +1024  Linux pt 1
 *     +2048  hardware pt 0              +3072  hardware pt 1
 * The pair points at the two hardware halves (__pmd_populate), pte_offset_* index the
 * Linux half, and set_pte_ext writes a Linux PTE and then its hardware twin 2048 bytes on.
 *
 * Young and dirty are emulated (cpu_v7_set_pte_ext): the twin stays invalid until the PTE is
 * young (and valid, and not PROT_NONE), and read-only (APX) until it is dirty, so the first
 * access and the first write fault and the fault path fixes them up.
 *
 * No THP on the classic format (it needs LPAE), so no collapse and no retraction; classic
 * arm does not select MMU_GATHER_RCU_TABLE_FREE: gathered tables are freed right after the
 * flush, safe only because no walker runs outside the locks.
 *
 * update_mmu_cache is modelled as on a VIVT-cache CPU (make_coherent/adjust_pte of
 * mm/fault-armv.c). Real VIVT CPUs are ARMv5, uniprocessor, built without split page-table
 * locks: every table's lock is mm->page_table_lock, which this model keeps. With more than
 * one vCPU that combination is a what-if; the hardware format is the ARMv7 one Unicorn's
 * Cortex-A15 reads.
 */
#include "arm.h"

#include <elf.h>

#include <capstone/capstone.h>
#include <unicorn/unicorn.h>

#include <ptemu/file.h>
#include <ptemu/machine.h>
#include <ptemu/mm.h>
#include <ptemu/mmu_gather.h>
#include <ptemu/pgtable.h>
#include <ptemu/phys.h>

#define ARM_PAGE_SHIFT		12
#define ARM_PAGE_MASK		(~0xfffull)

/* Linux PTE bits (pgtable-2level.h). */
#define L_PTE_VALID		(1u << 0)	/* = L_PTE_PRESENT */
#define L_PTE_PRESENT		(1u << 0)
#define L_PTE_YOUNG		(1u << 1)
#define L_PTE_MT_BUFFERABLE	(0x01u << 2)
#define L_PTE_MT_WRITEALLOC	(0x07u << 2)
#define L_PTE_MT_MASK		(0x0fu << 2)
#define L_PTE_DIRTY		(1u << 6)
#define L_PTE_RDONLY		(1u << 7)
#define L_PTE_USER		(1u << 8)
#define L_PTE_XN		(1u << 9)
#define L_PTE_SHARED		(1u << 10)
#define L_PTE_NONE		(1u << 11)

/* Hardware small-page descriptor bits (pgtable-2level-hwdef.h). */
#define PTE_EXT_XN		(1u << 0)
#define PTE_TYPE_SMALL		(2u << 0)
#define PTE_TYPE_MASK		(3u << 0)
#define PTE_EXT_AP0		(1u << 4)
#define PTE_EXT_AP1		(2u << 4)
#define PTE_EXT_AP_MASK		(3u << 4)
#define PTE_EXT_TEX(x)		((unsigned)(x) << 6)
#define PTE_EXT_APX		(1u << 9)
#define PTE_EXT_NG		(1u << 11)

/* First-level descriptors. */
#define PMD_TYPE_MASK		(3u << 0)
#define PMD_TYPE_TABLE		(1u << 0)
#define PMD_TYPE_SECT		(2u << 0)
#define PMD_PXNTABLE		(1u << 2)
#define PMD_BIT4		(1u << 4)
#define PMD_DOMAIN(x)		((unsigned)(x) << 5)
#define DOMAIN_USER		1
#define PMD_TABLE_ADDR_MASK	(~0x3ffu)

/* pmd_populate's prot: _PAGE_USER_TABLE, plus PMD_PXNTABLE that build_mem_type_table adds
 * to user_pmd_table on an ARMv7 whose ID_MMFR0 reports PXN support (the Cortex-A15 does). */
#define USER_PMD_TABLE		(PMD_TYPE_TABLE | PMD_BIT4 | PMD_DOMAIN(DOMAIN_USER) | PMD_PXNTABLE)

#define PTE_HWTABLE_OFF		2048u	/* PTRS_PER_PTE * sizeof(pte_t) */
#define HW_PT_BYTES		1024u	/* one hardware table: 256 x 4 B, 1 MiB */

static const struct arm_linux_pte_bits arm_linux_bits = {
	.user = L_PTE_USER, .rdonly = L_PTE_RDONLY, .xn = L_PTE_XN,
	.young = L_PTE_YOUNG, .dirty = L_PTE_DIRTY, .none = L_PTE_NONE,
};

#define ARM_PGD_LEVEL		0
#define ARM_PTE_LEVEL		1

/* adjust_pte's shared_pte_mask: what do_adjust_pte turns the memory type into. */
#define SHARED_PTE_MASK		L_PTE_MT_BUFFERABLE

static uint64_t arm_none_entry(unsigned level)
{
	return 0;
}

/* The pgd entry's first word is the pmd Linux tests: pmd_none is zero, pmd_bad is bit 1 (a
 * section, never in user space). Without THP nothing else is tested, so any other non-zero
 * word is mapped as a table, even a type-00 word that the hardware treats as a fault. */
static enum ptemu_entry_kind arm_classify(unsigned level, uint64_t entry, uint64_t *table_pa)
{
	uint32_t lo = (uint32_t)entry;

	if (level == ARM_PTE_LEVEL) {
		if (!lo)
			return PTEMU_ENTRY_NONE;
		return (lo & L_PTE_PRESENT) ? PTEMU_ENTRY_LEAF : PTEMU_ENTRY_MIGRATION;
	}
	if (!lo)
		return PTEMU_ENTRY_NONE;
	if (lo & PMD_TYPE_SECT)
		return PTEMU_ENTRY_BAD;
	if (table_pa)
		*table_pa = lo & ARM_PAGE_MASK;	/* pmd_page_vaddr: the page, Linux half first */
	return PTEMU_ENTRY_TABLE;
}

/* __pmd_populate: the two first-level descriptors, at the page's two hardware halves. */
static uint64_t arm_mk_table(unsigned level, uint64_t table_pa)
{
	uint32_t lo = (uint32_t)(table_pa + PTE_HWTABLE_OFF) | USER_PMD_TABLE;

	return (uint64_t)(lo + HW_PT_BYTES) << 32 | lo;
}

static bool arm_pte_none(uint64_t pte)
{
	return !pte;
}

static bool arm_pte_present(uint64_t pte)
{
	return pte & L_PTE_PRESENT;
}

/* protection_map[] with build_mem_type_table's user_pgprot (write-alloc, shared on SMP).
 * A PTE made uncached by adjust_pte keeps that memory type through later fix-ups
 * (pte_mkyoung and friends touch one bit). */
static uint64_t arm_mk_pte(struct ptemu_leaf leaf)
{
	return (uint32_t)(leaf.pfn << ARM_PAGE_SHIFT) | L_PTE_PRESENT | L_PTE_SHARED |
	       (leaf.flags & PTEMU_PTE_UNCACHED ? SHARED_PTE_MASK : L_PTE_MT_WRITEALLOC) |
	       (uint32_t)arm_linux_pte_prot(&arm_linux_bits, leaf.flags);
}

static struct ptemu_leaf arm_pte_leaf(uint64_t pte)
{
	struct ptemu_leaf leaf = { .pfn = (uint32_t)pte >> ARM_PAGE_SHIFT,
				   .flags = arm_linux_pte_flags(&arm_linux_bits, pte) };

	if ((pte & L_PTE_MT_MASK) == SHARED_PTE_MASK)
		leaf.flags |= PTEMU_PTE_UNCACHED;
	return leaf;
}

/* cpu_v7_set_pte_ext's hardware word. set_ptes passes ext = PTE_EXT_NG for a user address
 * when pte_valid_user (valid, user, young): every PTE here is a user one, and a twin that
 * is not zeroed below is valid, user and young. */
static uint64_t arm_pte_hw_twin(uint64_t pte)
{
	uint32_t l = (uint32_t)pte;
	uint32_t hw = (l & ~0x3f0u & ~PTE_TYPE_MASK) | PTE_EXT_AP0 | PTE_TYPE_SMALL;

	if ((l & (L_PTE_VALID | L_PTE_USER | L_PTE_YOUNG)) == (L_PTE_VALID | L_PTE_USER | L_PTE_YOUNG))
		hw |= PTE_EXT_NG;
	if (l & (1u << 4))	/* the memory type's TEX[0] */
		hw |= PTE_EXT_TEX(1);
	if ((l ^ L_PTE_DIRTY) & (L_PTE_RDONLY | L_PTE_DIRTY))
		hw |= PTE_EXT_APX;	/* read-only, or clean: the first write faults */
	if (l & L_PTE_USER)
		hw |= PTE_EXT_AP1;
	if (l & L_PTE_XN)
		hw |= PTE_EXT_XN;
	if (!(l & L_PTE_YOUNG) || !(l & L_PTE_VALID) || (l & L_PTE_NONE))
		hw = 0;		/* old or PROT_NONE: the first access faults */
	return hw;
}

static enum ptemu_walk_fault arm_walk_fault(struct ptemu_walk_result *out,
					    enum ptemu_walk_fault f, unsigned level)
{
	out->fault = f;
	out->level = level;
	return f;
}

/* PL0 permissions of AP[2:0] with SCTLR.AFE = 0 (Linux emulates the access flag): 11 is
 * read/write, or read-only with APX; 10 is read-only; 0x and the reserved 100 give PL0
 * nothing. Execution needs read permission at PL0 and XN clear. Domains are not checked:
 * DOMAIN_USER is a client domain while user code runs. */
static unsigned arm_pl0_perms(uint32_t desc)
{
	unsigned ap = (desc & PTE_EXT_AP_MASK) >> 4, perms = 0;

	if (ap == 3)
		perms = PTEMU_PROT_READ | (desc & PTE_EXT_APX ? 0 : PTEMU_PROT_WRITE);
	else if (ap == 2)
		perms = PTEMU_PROT_READ;
	if ((perms & PTEMU_PROT_READ) && !(desc & PTE_EXT_XN))
		perms |= PTEMU_PROT_EXEC;
	return perms;
}

/* The short-descriptor walk: the first-level descriptor for va's MiB is one word of the
 * pgd entry pair; its table is a hardware half of a PTE page. Linux writes no sections or
 * large pages for user space: meeting one is a bad entry. */
static enum ptemu_walk_fault arm_hw_walk(const struct ptemu_walk_ctx *ctx, uint64_t root_pa,
					 uint64_t va, enum ptemu_access access,
					 struct ptemu_walk_result *out)
{
	static const unsigned need[] = {
		[PTEMU_ACCESS_READ] = PTEMU_PROT_READ,
		[PTEMU_ACCESS_WRITE] = PTEMU_PROT_WRITE,
		[PTEMU_ACCESS_FETCH] = PTEMU_PROT_EXEC,
	};
	uint64_t pair, hw_table;
	uint32_t l1, l2;

	*out = (struct ptemu_walk_result){ .fault = PTEMU_WALK_OK };
	if (va >> 32)
		return arm_walk_fault(out, PTEMU_WALK_TRANSLATION, ARM_PGD_LEVEL);
	out->table_pa[ARM_PGD_LEVEL] = root_pa;
	pair = ctx->read_entry(ctx, ARM_PGD_LEVEL, root_pa, (unsigned)(va >> 21));
	l1 = (va >> 20) & 1 ? (uint32_t)(pair >> 32) : (uint32_t)pair;
	if ((l1 & PMD_TYPE_MASK) == 0)
		return arm_walk_fault(out, PTEMU_WALK_TRANSLATION, ARM_PGD_LEVEL);
	if ((l1 & PMD_TYPE_MASK) != PMD_TYPE_TABLE)
		return arm_walk_fault(out, PTEMU_WALK_BAD_ENTRY, ARM_PGD_LEVEL);
	hw_table = l1 & PMD_TABLE_ADDR_MASK;
	out->table_pa[ARM_PTE_LEVEL] = hw_table;
	l2 = (uint32_t)ctx->read_entry(ctx, ARM_PTE_LEVEL, hw_table, (unsigned)(va >> 12) & 0xff);
	if (!(l2 & PTE_TYPE_SMALL))
		return arm_walk_fault(out, (l2 & PTE_TYPE_MASK) ? PTEMU_WALK_BAD_ENTRY :
								  PTEMU_WALK_TRANSLATION,
				      ARM_PTE_LEVEL);
	out->level = ARM_PTE_LEVEL;
	out->leaf_size = 1ull << ARM_PAGE_SHIFT;
	out->paddr = (l2 & ARM_PAGE_MASK) | (va & ~ARM_PAGE_MASK);
	out->perms = arm_pl0_perms(l2);
	if (!(out->perms & need[access]))
		return arm_walk_fault(out, PTEMU_WALK_PERMISSION, ARM_PTE_LEVEL);
	return PTEMU_WALK_OK;
}

/* ---- update_mmu_cache on a VIVT cache (mm/fault-armv.c, v6.6) ----------------------- */

/* do_adjust_pte: a present alias with a cacheable memory type is made uncached, and the
 * CPU's translation of it flushed (the cache flushes themselves are not modelled). */
static int do_adjust_pte(struct vm_area_struct *vma, uint64_t address, pte_t *ptep)
{
	pte_t entry = ptep_get(ptep);

	if (!arm_pte_present(entry.val))
		return 0;
	if ((entry.val & L_PTE_MT_MASK) != SHARED_PTE_MASK) {
		entry.val = (entry.val & ~(uint64_t)L_PTE_MT_MASK) | SHARED_PTE_MASK;
		set_pte_at(vma->vm_mm, address, ptep, entry);
		flush_tlb_page(vma->vm_mm, address);
	}
	return 1;
}

/* adjust_pte (v6.6): the walk to the alias's pmd, then pte_offset_map_nolock, which fails
 * when the alias has no table. do_pte_lock takes the alias's split ptl nested; without
 * split PTE locks it takes nothing, the fault already holding the one page_table_lock. */
static int adjust_pte(struct vm_area_struct *vma, uint64_t address)
{
	struct mm_struct *mm = vma->vm_mm;
	const struct ptemu_arch *a = mm->machine->arch;
	struct ptemu_spinlock *ptl;
	pmd_t *pmd = mm_find_pmd(mm, address);
	pte_t *pte;
	int ret;

	ptemu_stat_add(&mm->machine->stats, PTEMU_STAT_adjust_pte_calls, 1);
	/* pmd_none_or_clear_bad, then the map: both fail on a none or bad pmd */
	if (!pmd || !(pte = pte_offset_map_nolock(mm, pmd, address, &ptl))) {
		ptemu_stat_add(&mm->machine->stats, PTEMU_STAT_adjust_pte_no_table, 1);
		return 0;
	}
	if (!a->pte_lock_is_page_table_lock)
		spin_lock(ptl);
	ret = do_adjust_pte(vma, address, pte);
	if (!a->pte_lock_is_page_table_lock)
		spin_unlock(ptl);
	pte_unmap(pte);
	return ret;
}

/* make_coherent: under flush_dcache_mmap_lock, every other shared mapping of the page in
 * this mm gets adjust_pte; if any alias is mapped, the faulting PTE goes uncached too.
 * Other mms' VMAs are skipped before their bounds are read (those change under their own
 * mmap_lock); this mm's do not change while the fault holds mmap_lock for read. */
static void make_coherent(struct ptemu_file *mapping, struct vm_area_struct *vma, uint64_t addr,
			  pte_t *ptep)
{
	struct mm_struct *mm = vma->vm_mm;
	uint64_t pgoff = vma->vm_pgoff + ((addr - vma->vm_start) >> ARM_PAGE_SHIFT);
	int aliases = 0;

	flush_dcache_mmap_lock(mapping);
	for (size_t i = 0; i < mapping->nr_i_mmap; i++) {
		struct vm_area_struct *mpnt = mapping->i_mmap[i];

		/* VM_MAYSHARE: the model's VM_SHARED is exactly MAP_SHARED. */
		if (mpnt->vm_mm != mm || mpnt == vma || !(mpnt->vm_flags & VM_SHARED))
			continue;
		if (pgoff < mpnt->vm_pgoff ||
		    pgoff - mpnt->vm_pgoff >= (mpnt->vm_end - mpnt->vm_start) >> ARM_PAGE_SHIFT)
			continue;
		aliases += adjust_pte(mpnt, mpnt->vm_start + ((pgoff - mpnt->vm_pgoff) << ARM_PAGE_SHIFT));
	}
	flush_dcache_mmap_unlock(mapping);
	if (aliases)
		do_adjust_pte(vma, addr, ptep);
}

/* update_mmu_cache_range for one PTE: page-cache folios (folio_flush_mapping is NULL for
 * anonymous memory) on a VIVT cache go through make_coherent. */
static void arm_update_mmu_cache(struct vm_area_struct *vma, uint64_t addr, uint64_t pte_pa)
{
	struct ptemu_machine *m = vma->vm_mm->machine;
	pte_t *ptep = ptemu_slot_ptr(m, pte_pa);
	pte_t pte = ptep_get(ptep);
	struct page *folio;

	if (!arm_pte_present(pte.val))
		return;
	folio = page_folio(pfn_to_page(m->phys, arm_pte_leaf(pte.val).pfn));
	if (PageFlag(folio, PG_anon) || !folio->mapping)
		return;
	make_coherent(folio->mapping, vma, addr, ptep);
}

const struct ptemu_arch ptemu_arch_arm = {
	.name = "arm",
	.description = "arm (ARMv7 short descriptors), 2 levels, Linux/hardware PTE twins, no THP; "
		       "VIVT make_coherent with one page_table_lock per mm (ARMv5 UP kernel: a "
		       "what-if with more than one vCPU)",
	.pt_reclaim_status = "refused: PT reclaim needs RCU table freeing, and classic arm does "
			     "not select MMU_GATHER_RCU_TABLE_FREE",
	.page_shift = ARM_PAGE_SHIFT,
	.va_bits = 32,
	.task_size = ARM_TASK_SIZE,
	.nr_levels = 2,
	.level_shift = { 21, 12 },
	.level_bits = { 11, 9 },
	/* The pgd is 16 KiB (TTBR0's first-level table); a PTE table is its whole page,
	 * Linux and hardware halves. */
	.table_bytes = { 16384, 4096 },
	.entry_bytes = 4,
	.big_endian = false,
	.pmd_leaf_shift = 0,
	.none_entry = arm_none_entry,
	.classify = arm_classify,
	.mk_table = arm_mk_table,
	.pte_none = arm_pte_none,
	.pte_present = arm_pte_present,
	.mk_pte = arm_mk_pte,
	.pte_leaf = arm_pte_leaf,
	.pte_hw_twin = arm_pte_hw_twin,
	.hw_twin_offset = PTE_HWTABLE_OFF,
	.pmd_lock_is_page_table_lock = true,
	.pte_lock_is_page_table_lock = true,
	.pte_table_bytes = 4096,
	.tables_per_page = 1,
	.pte_alloc_one = ptemu_generic_pte_alloc_one,
	.pte_free = ptemu_generic_pte_free,
	.pte_free_defer = ptemu_generic_pte_free_defer,
	.rcu_table_free = false,
	.pte_free_tlb = ptemu_generic_pte_free_tlb,
	.tlb_remove_table = ptemu_generic_tlb_remove_table,
	.hw_walk = arm_hw_walk,
	.flush_waits_for_walks = true,	/* TLBIMVAIS + DSB */
	.walker_is_rcu_reader = false,
	.retract_flush = PTEMU_RETRACT_FLUSH_RANGE,
	.leaf_flush_drops_walk_cache = true,	/* ARMv7 TLBIMVA has no last-level-only form */
	.access_fixup_flushes_tlb = true,	/* the generic ptep_set_access_flags */
	.update_mmu_cache = arm_update_mmu_cache,
	.flush_dcache_mmap_lock = true,
	/* do_page_fault: VM_ACCESS_FLAGS for a read, as on arm-lpae. */
	.read_fault_vm_flags = VM_READ | VM_WRITE | VM_EXEC,
	.tlb_entries = 512,
	.walk_cache_entries = 32,
	.isa = PTEMU_ARM32_ISA,
};
