/* arm64: VMSAv8-64 stage-1 translation with a 4 KiB granule, as Linux v6.6 programs it
 * for user space (TTBR0_EL1), in two variants: 48-bit VA with 4 levels (L0-L3) and 39-bit
 * VA with 3 levels (L1-L3). Every table is 512 x 8-byte little-endian descriptors in one
 * page, so PTE tables come from the generic whole-page allocator (kernel-spec 2.2, 2.7).
 *
 * Descriptors (Arm ARM D8.3; Linux asm/pgtable-hwdef.h and asm/pgtable-prot.h):
 *   bit 0       valid
 *   bit 1       table (L0-L2) or page (L3); clear in a block descriptor at L1/L2
 *   bits 4:2    AttrIndx, MT_NORMAL (0) for every user mapping
 *   bit 6       AP[1]: EL0 may access (PTE_USER)
 *   bit 7       AP[2]: read-only (PTE_RDONLY)
 *   bits 9:8    SH, inner shareable
 *   bit 10      AF, access flag (young)
 *   bit 11      nG, not global (user mappings are per-ASID)
 *   bits 47:12  output address
 *   bit 51      DBM, which Linux uses as PTE_WRITE
 *   bit 53      PXN, set on every user mapping; bit 54 UXN, set unless executable
 *   bit 55      PTE_DIRTY, software dirty; bit 58 PTE_PROT_NONE, only when not valid
 *
 * Table descriptors (L0-L2) carry hierarchical permissions that limit every later level
 * (TCR_EL1.HPD0 is clear: v6.6 never sets it), whether or not Linux writes them:
 *   bit 59      PXNTable, as pmd_populate() sets for user tables: EL1 may not execute
 *   bit 60      UXNTable: EL0 may not execute
 *   bit 61      APTable[0]: EL0 may not access (as if AP[1] were clear)
 *   bit 62      APTable[1]: no writes at any EL (as if AP[2] were set)
 *   bit 63      NSTable, RES0 for a Non-secure stage 1; bits 58:51 and 11:2 are ignored
 *
 * Linux's writable-clean state is AP[2]=1 with DBM=1; pte_mkdirty() sets PTE_DIRTY and
 * clears AP[2]. The model runs with TCR_EL1.HA = HD = 0 (no FEAT_HAFDBS, as on Cortex-A53
 * or A57): the walker never updates a descriptor, so a store to a clean-writable page takes
 * a permission fault and the kernel's fault path marks it dirty in software, and an entry
 * with AF clear takes an access flag fault. Descriptors that the hardware updated anyway
 * (DBM set, AP[2] clear, no PTE_DIRTY) still decode as dirty, as pte_dirty() does.
 */
#include "arm64.h"

#include <elf.h>

#include <capstone/capstone.h>
#include <unicorn/unicorn.h>

#include <ptemu/mm.h>
#include <ptemu/mmu_gather.h>
#include <ptemu/pgtable.h>

/* QEMU's EXCP_SWI: what UC_HOOK_INTR reports for svc. */
#define ARM64_EXCP_SWI		2

#define ARM64_PAGE_SHIFT	12
#define ARM64_HW_LEVELS		4	/* L0-L3; the 39-bit variant starts at L1 */

#define BIT_ULL(n)		(1ull << (n))
#define GENMASK_ULL(h, l)	((~0ull << (l)) & (~0ull >> (63 - (h))))

#define PTE_VALID		BIT_ULL(0)
#define PTE_TABLE_BIT		BIT_ULL(1)
#define PTE_TYPE_MASK		(PTE_VALID | PTE_TABLE_BIT)
#define PTE_TYPE_PAGE		(PTE_VALID | PTE_TABLE_BIT)
#define PMD_TYPE_TABLE		(PTE_VALID | PTE_TABLE_BIT)
#define MT_NORMAL		0ull
#define PTE_ATTRINDX(t)		((t) << 2)
#define PTE_USER		BIT_ULL(6)	/* AP[1] */
#define PTE_RDONLY		BIT_ULL(7)	/* AP[2] */
#define PTE_SHARED		(3ull << 8)	/* SH[1:0]: inner shareable */
#define PTE_AF			BIT_ULL(10)
#define PTE_NG			BIT_ULL(11)
#define PTE_ADDR_MASK		GENMASK_ULL(47, 12)
#define PTE_DBM			BIT_ULL(51)
#define PTE_WRITE		PTE_DBM
#define PTE_PXN			BIT_ULL(53)
#define PTE_UXN			BIT_ULL(54)
#define PTE_DIRTY		BIT_ULL(55)
#define PTE_PROT_NONE		BIT_ULL(58)
#define PMD_TABLE_PXN		BIT_ULL(59)
#define PMD_TABLE_UXN		BIT_ULL(60)
#define PMD_TABLE_AP_NO_EL0	BIT_ULL(61)	/* APTable[0] */
#define PMD_TABLE_AP_RDONLY	BIT_ULL(62)	/* APTable[1] */

/* What every user protection of protection_map[] shares. */
#define PTE_USER_DEFAULT	(PTE_ATTRINDX(MT_NORMAL) | PTE_SHARED | PTE_NG | PTE_PXN)

/* A swap entry (arm64 pgtable.h): bits[1:0] zero, bit 2 anon-exclusive, type in bits 7:3,
 * offset in bits 57:8, PTE_PROT_NONE and every bit above it zero. At the pmd level only
 * THP migration stores swap entries; the migration types below are those of a kernel
 * with CONFIG_MIGRATION and CONFIG_MEMORY_FAILURE and without CONFIG_DEVICE_PRIVATE:
 * MAX_SWAPFILES = 32 - 3 migration - 1 hwpoison - 1 pte marker = 27, and the migration
 * types follow the hwpoison type. */
#define __SWP_TYPE_SHIFT	3
#define __SWP_TYPE_MASK		0x1full
#define SWP_MUST_BE_ZERO	GENMASK_ULL(63, 58)	/* PTE_PROT_NONE and above */
#define SWP_MIGRATION_READ	28
#define SWP_MIGRATION_WRITE	30	/* READ_EXCLUSIVE (29) lies between */

/* The VMSA level of a model level: the 39-bit variant has no L0. */
static unsigned arm64_hw_level(const struct ptemu_arch *arch, unsigned level)
{
	return level + ARM64_HW_LEVELS - arch->nr_levels;
}

static bool arm64_is_swp_entry(uint64_t entry)
{
	return entry && !(entry & (PTE_TYPE_MASK | SWP_MUST_BE_ZERO));
}

static bool arm64_is_migration_entry(uint64_t entry)
{
	uint64_t type = (entry >> __SWP_TYPE_SHIFT) & __SWP_TYPE_MASK;

	return arm64_is_swp_entry(entry) &&
	       type >= SWP_MIGRATION_READ && type <= SWP_MIGRATION_WRITE;
}

/* Zero is invalid at every level; poison must be invalid too, and all-ones is not. */
static uint64_t arm64_none_entry(unsigned level)
{
	return 0;
}

/* Entries that are not valid to the hardware but mean something to Linux. */
static enum ptemu_entry_kind arm64_classify_invalid(unsigned hw_level, uint64_t entry)
{
	switch (hw_level) {
	case 3:
		if (entry & PTE_PROT_NONE)
			return PTEMU_ENTRY_LEAF;
		return arm64_is_swp_entry(entry) ? PTEMU_ENTRY_MIGRATION : PTEMU_ENTRY_BAD;
	case 2:
		/* pmd_present() && !PMD_TABLE_BIT is pmd_trans_huge(); with the table bit
		 * it is neither huge nor a table, so pmd_bad(). */
		if (entry & PTE_PROT_NONE)
			return (entry & PTE_TABLE_BIT) ? PTEMU_ENTRY_BAD : PTEMU_ENTRY_LEAF;
		return arm64_is_migration_entry(entry) ? PTEMU_ENTRY_MIGRATION : PTEMU_ENTRY_BAD;
	default:
		return PTEMU_ENTRY_BAD;
	}
}

static enum ptemu_entry_kind arm64_classify(unsigned hw_level, uint64_t entry,
					    uint64_t *table_pa)
{
	if (!entry)
		return PTEMU_ENTRY_NONE;
	if (!(entry & PTE_VALID))
		return arm64_classify_invalid(hw_level, entry);
	if (hw_level == 3)
		/* bits[1:0] = 01 is reserved at L3 */
		return (entry & PTE_TABLE_BIT) ? PTEMU_ENTRY_LEAF : PTEMU_ENTRY_BAD;
	if (entry & PTE_TABLE_BIT) {
		if (table_pa)
			*table_pa = entry & PTE_ADDR_MASK;
		return PTEMU_ENTRY_TABLE;
	}
	/* A 4 KiB granule has blocks at L1 (1 GiB) and L2 (2 MiB); an L0 block is reserved. */
	return hw_level == 0 ? PTEMU_ENTRY_BAD : PTEMU_ENTRY_LEAF;
}

static enum ptemu_entry_kind arm64_48_classify(unsigned level, uint64_t entry,
					       uint64_t *table_pa)
{
	return arm64_classify(arm64_hw_level(&ptemu_arch_arm64_48, level), entry, table_pa);
}

static enum ptemu_entry_kind arm64_39_classify(unsigned level, uint64_t entry,
					       uint64_t *table_pa)
{
	return arm64_classify(arm64_hw_level(&ptemu_arch_arm64_39, level), entry, table_pa);
}

static uint64_t arm64_mk_table(unsigned level, uint64_t table_pa)
{
	return (table_pa & PTE_ADDR_MASK) | PMD_TYPE_TABLE | PMD_TABLE_PXN;
}

static bool arm64_pte_none(uint64_t pte)
{
	return !pte;
}

/* A PROT_NONE entry is present to Linux though the hardware ignores it. */
static bool arm64_pte_present(uint64_t pte)
{
	return pte & (PTE_VALID | PTE_PROT_NONE);
}

/* protection_map[] of arm64, with pte_mkold/pte_mkwrite/pte_mkdirty applied. */
static uint64_t arm64_mk_pte(struct ptemu_leaf leaf)
{
	unsigned prot = leaf.flags & (PTEMU_PROT_READ | PTEMU_PROT_WRITE | PTEMU_PROT_EXEC);
	uint64_t pte = ((leaf.pfn << ARM64_PAGE_SHIFT) & PTE_ADDR_MASK) | PTE_USER_DEFAULT;

	if (!prot) {
		/* PAGE_NONE: invalid to the hardware, present to Linux */
		pte |= (PTE_TYPE_PAGE & ~PTE_VALID) | PTE_PROT_NONE;
	} else {
		/* AP[1] whatever the protection: EL0 cannot have write without read, and
		 * without EPAN (the modelled CPU has none) v6.6 maps PROT_EXEC as
		 * PAGE_READONLY_EXEC, not PAGE_EXECONLY (adjust_protection_map()). */
		pte |= PTE_TYPE_PAGE | PTE_USER;
		if (prot & PTEMU_PROT_WRITE)
			pte |= PTE_WRITE;
	}
	if (!(prot & PTEMU_PROT_EXEC))
		pte |= PTE_UXN;
	if (leaf.flags & PTEMU_PTE_YOUNG)
		pte |= PTE_AF;
	if (leaf.flags & PTEMU_PTE_DIRTY)
		pte |= PTE_DIRTY;
	/* Clean or not writable: read-only to the hardware, so the first store faults. */
	if (!(pte & PTE_WRITE) || !(pte & PTE_DIRTY))
		pte |= PTE_RDONLY;
	return pte;
}

static struct ptemu_leaf arm64_pte_leaf(uint64_t pte)
{
	struct ptemu_leaf leaf = {
		.pfn = (pte & PTE_ADDR_MASK) >> ARM64_PAGE_SHIFT,
	};
	bool hw_dirty = (pte & PTE_DBM) && !(pte & PTE_RDONLY);

	if (pte & PTE_USER)
		leaf.flags |= PTEMU_PROT_READ;
	if (pte & PTE_WRITE)
		leaf.flags |= PTEMU_PROT_WRITE;
	if (!(pte & PTE_UXN))
		leaf.flags |= PTEMU_PROT_EXEC;
	if (pte & PTE_AF)
		leaf.flags |= PTEMU_PTE_YOUNG;
	if ((pte & PTE_DIRTY) || hw_dirty)
		leaf.flags |= PTEMU_PTE_DIRTY;
	return leaf;
}

/* pmd_mkhuge(): a block descriptor is a page descriptor without the table bit. */
static uint64_t arm64_mk_pmd_leaf(struct ptemu_leaf leaf)
{
	return arm64_mk_pte(leaf) & ~PTE_TABLE_BIT;
}

static struct ptemu_leaf arm64_pmd_leaf(uint64_t pmd)
{
	return arm64_pte_leaf(pmd);
}

static enum ptemu_walk_fault arm64_walk_fault(struct ptemu_walk_result *out,
					      enum ptemu_walk_fault fault, unsigned level)
{
	out->fault = fault;
	out->level = level;
	return fault;
}

/* A page or block descriptor, under the limits `table` (the OR of the table descriptors
 * above it) sets: the access flag fault takes priority over permission. */
static enum ptemu_walk_fault arm64_walk_leaf(uint64_t entry, uint64_t table, unsigned level,
					     unsigned shift, uint64_t va,
					     enum ptemu_access access,
					     struct ptemu_walk_result *out)
{
	uint64_t size = 1ull << shift;
	bool user = (entry & PTE_USER) && !(table & PMD_TABLE_AP_NO_EL0);
	bool rdonly = (entry & PTE_RDONLY) || (table & PMD_TABLE_AP_RDONLY);
	unsigned need;

	out->leaf_size = size;
	out->paddr = (entry & PTE_ADDR_MASK & ~(size - 1)) | (va & (size - 1));
	out->perms = 0;
	/* AP[2:1]: EL0 data access needs AP[1]; EL0 execute depends on UXN alone. PXN and
	 * PXNTable bind EL1 only. */
	if (user)
		out->perms |= PTEMU_PROT_READ;
	if (user && !rdonly)
		out->perms |= PTEMU_PROT_WRITE;
	if (!(entry & PTE_UXN) && !(table & PMD_TABLE_UXN))
		out->perms |= PTEMU_PROT_EXEC;

	if (!(entry & PTE_AF))
		return arm64_walk_fault(out, PTEMU_WALK_ACCESS_FLAG, level);
	switch (access) {
	case PTEMU_ACCESS_WRITE:
		/* With HD = 0 DBM does not grant the store: Linux's fault path dirties it. */
		need = PTEMU_PROT_WRITE;
		break;
	case PTEMU_ACCESS_FETCH:
		need = PTEMU_PROT_EXEC;
		break;
	default:
		need = PTEMU_PROT_READ;
		break;
	}
	if (!(out->perms & need))
		return arm64_walk_fault(out, PTEMU_WALK_PERMISSION, level);
	return arm64_walk_fault(out, PTEMU_WALK_OK, level);
}

/* A stage-1 EL0 walk with the 4 KiB-granule long-descriptor format that VMSAv8-64 and
 * VMSAv7's LPAE share: levels 0 to nr_levels - 1 of the model are the VMSA levels that end
 * at level 3, and output addresses are the bits of oa_mask. */
enum ptemu_walk_fault ptemu_vmsa_long_walk(const struct ptemu_arch *arch, uint64_t oa_mask,
					   const struct ptemu_walk_ctx *ctx, uint64_t root_pa,
					   uint64_t va, enum ptemu_access access,
					   struct ptemu_walk_result *out)
{
	uint64_t table_pa = root_pa, table_limits = 0;
	unsigned level;

	*out = (struct ptemu_walk_result){ .fault = PTEMU_WALK_OK };
	for (level = 0;; level++) {
		unsigned hw_level = arm64_hw_level(arch, level);
		uint64_t entry;

		out->table_pa[level] = table_pa;
		entry = ctx->read_entry(ctx, level, table_pa, ptemu_level_index(arch, level, va));
		if (!(entry & PTE_VALID))
			return arm64_walk_fault(out, PTEMU_WALK_TRANSLATION, level);
		if (hw_level < 3 && (entry & PTE_TABLE_BIT)) {
			table_pa = entry & oa_mask;
			table_limits |= entry & (PMD_TABLE_UXN | PMD_TABLE_AP_NO_EL0 |
						 PMD_TABLE_AP_RDONLY);
			continue;
		}
		/* an L0 block, or bits[1:0] = 01 at L3: reserved encodings */
		if (hw_level == 0 || (hw_level == 3 && !(entry & PTE_TABLE_BIT)))
			return arm64_walk_fault(out, PTEMU_WALK_BAD_ENTRY, level);
		return arm64_walk_leaf(entry & (oa_mask | ~PTE_ADDR_MASK), table_limits, level,
				       arch->level_shift[level], va, access, out);
	}
}

/* TBI, when enabled, is applied by the vCPU before a fill, so every bit above va_bits must
 * be clear: anything else is outside TTBR0's range (a TTBR1 address or a hole) and faults
 * at the first level, as T0SZ makes it. */
static enum ptemu_walk_fault arm64_hw_walk(const struct ptemu_arch *arch,
					   const struct ptemu_walk_ctx *ctx, uint64_t root_pa,
					   uint64_t va, enum ptemu_access access,
					   struct ptemu_walk_result *out)
{
	if (va >> arch->va_bits) {
		*out = (struct ptemu_walk_result){ .fault = PTEMU_WALK_TRANSLATION };
		return PTEMU_WALK_TRANSLATION;
	}
	return ptemu_vmsa_long_walk(arch, PTE_ADDR_MASK, ctx, root_pa, va, access, out);
}

static enum ptemu_walk_fault arm64_48_hw_walk(const struct ptemu_walk_ctx *ctx,
					      uint64_t root_pa, uint64_t va,
					      enum ptemu_access access,
					      struct ptemu_walk_result *out)
{
	return arm64_hw_walk(&ptemu_arch_arm64_48, ctx, root_pa, va, access, out);
}

static enum ptemu_walk_fault arm64_39_hw_walk(const struct ptemu_walk_ctx *ctx,
					      uint64_t root_pa, uint64_t va,
					      enum ptemu_access access,
					      struct ptemu_walk_result *out)
{
	return arm64_hw_walk(&ptemu_arch_arm64_39, ctx, root_pa, va, access, out);
}

/* What both variants share. Whole-page PTE tables keep nothing per mm, so there is no
 * mm_destroy_context. TLBI followed by DSB completes only once walks in flight that
 * could use the old entry are done, and hardware walkers hold no RCU read lock. */
#define ARM64_COMMON							\
	.page_shift = ARM64_PAGE_SHIFT,					\
	.entry_bytes = 8,						\
	.big_endian = false,						\
	.pmd_leaf_shift = 21,						\
	.none_entry = arm64_none_entry,					\
	.mk_table = arm64_mk_table,					\
	.pte_none = arm64_pte_none,					\
	.pte_present = arm64_pte_present,				\
	.mk_pte = arm64_mk_pte,						\
	.pte_leaf = arm64_pte_leaf,					\
	.mk_pmd_leaf = arm64_mk_pmd_leaf,				\
	.pmd_leaf = arm64_pmd_leaf,					\
	.pte_table_bytes = 4096,					\
	.tables_per_page = 1,						\
	.pte_alloc_one = ptemu_generic_pte_alloc_one,			\
	.pte_free = ptemu_generic_pte_free,				\
	.pte_free_defer = ptemu_generic_pte_free_defer,			\
	.rcu_table_free = true,		/* arm64 selects MMU_GATHER_RCU_TABLE_FREE */ \
	/* do_page_fault: a read also passes on VM_WRITE, and on VM_EXEC without EPAN. */	\
	.read_fault_vm_flags = VM_READ | VM_WRITE | VM_EXEC,				\
	.pt_reclaim_status = "what-if: 6.14 reclaims on x86-64 only; arm64 qualifies for the "	\
			     "later widening to MMU_GATHER_RCU_TABLE_FREE with the generic "	\
			     "tlb_remove_table",						\
	.pte_free_tlb = ptemu_generic_pte_free_tlb,			\
	.tlb_remove_table = ptemu_generic_tlb_remove_table,		\
	.flush_waits_for_walks = true,					\
	.walker_is_rcu_reader = false,					\
	.retract_flush = PTEMU_RETRACT_FLUSH_RANGE,			\
	.leaf_flush_drops_walk_cache = false,	/* TLBI VALE1IS */	\
	.tlb_entries = 1024,						\
	.walk_cache_entries = 64,					\
	.isa = {							\
		.uc_arch = UC_ARCH_ARM64,				\
		.uc_mode = UC_MODE_ARM,					\
		.cs_arch = CS_ARCH_ARM64,				\
		.cs_mode = CS_MODE_ARM,					\
		.elf_machine = EM_AARCH64,				\
		.elf_class = 64,					\
		.clang_target = "aarch64-linux-gnu",			\
		.binutils_triple = "aarch64-linux-gnu",			\
		.workload_dir = "aarch64",				\
		.reg_pc = UC_ARM64_REG_PC,				\
		.reg_sp = UC_ARM64_REG_SP,				\
		.reg_sysno = UC_ARM64_REG_X8,				\
		.reg_arg = { UC_ARM64_REG_X0, UC_ARM64_REG_X1,		\
			     UC_ARM64_REG_X2, UC_ARM64_REG_X3,		\
			     UC_ARM64_REG_X4, UC_ARM64_REG_X5 },	\
		.reg_ret = UC_ARM64_REG_X0,				\
		.syscall_intno = ARM64_EXCP_SWI,			\
		.syscall_insn_bytes = 4,				\
		.pc_after_syscall = true,				\
	}

const struct ptemu_arch ptemu_arch_arm64_48 = {
	.name = "arm64",
	.description = "arm64, 4 KiB granule, 48-bit VA, 4 levels, 2 MiB PMD THP",
	.va_bits = 48,
	.nr_levels = 4,
	.level_shift = { 39, 30, 21, 12 },
	.level_bits = { 9, 9, 9, 9 },
	.table_bytes = { 4096, 4096, 4096, 4096 },
	.classify = arm64_48_classify,
	.hw_walk = arm64_48_hw_walk,
	ARM64_COMMON,
};

const struct ptemu_arch ptemu_arch_arm64_39 = {
	.name = "arm64-39",
	.description = "arm64, 4 KiB granule, 39-bit VA, 3 levels, 2 MiB PMD THP",
	.va_bits = 39,
	.nr_levels = 3,
	.level_shift = { 30, 21, 12 },
	.level_bits = { 9, 9, 9 },
	.table_bytes = { 4096, 4096, 4096 },
	.classify = arm64_39_classify,
	.hw_walk = arm64_39_hw_walk,
	ARM64_COMMON,
};
