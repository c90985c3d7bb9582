/* The s390x MMU model (DESIGN.md section 4, kernel-spec 2.5).
 *
 * Translation: the ASCE designates a region-second table, so a walk reads region-second
 * (2048 x 8 B), region-third (2048 x 8 B), segment (2048 x 8 B) and page tables
 * (256 x 8 B = 2 KiB): an mm of Linux after its upgrade to four levels (53-bit VA).
 * Entry bits are Linux v6.6's (arch/s390/include/asm/pgtable.h) and the Principles of
 * Operation's. The CPU modelled has EDAT-1 (1 MiB segment leaves, DAT protection in
 * region and segment entries) and instruction-execution protection (Linux's
 * MACHINE_HAS_NX); it has no EDAT-2, so a region-third leaf is a bad entry to Linux, as
 * pud_bad() has it, and the walker ignores its format control. CONFIG_MEM_SOFT_DIRTY is off and no mm has PGSTEs (no KVM guests), so page
 * tables are 2 KiB halves of 4 KiB pages.
 *
 * s390 selects no ARCH_ENABLE_THP_MIGRATION in v6.6, so no pmd is ever a migration
 * entry; only the PTE level has swap-style entries.
 *
 * Page-table allocation is v6.6's page_table_alloc()/page_table_free() with the
 * pte_free_defer() of Hugh Dickins' series: bits in page->pt_frag (AA: half allocated,
 * PP: free of the half in flight), pages with one free half on mm->context.pgtable_list,
 * and a page whose half was deferred (PG_active) never listed again, freed by RCU once
 * both halves are free.
 */
#include "s390.h"

#include <elf.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <capstone/capstone.h>
#include <unicorn/unicorn.h>

#include <ptemu/inject.h>
#include <ptemu/list.h>
#include <ptemu/loader.h>
#include <ptemu/machine.h>
#include <ptemu/mm.h>
#include <ptemu/mmu_gather.h>
#include <ptemu/pgtable.h>
#include <ptemu/phys.h>
#include <ptemu/rcu.h>
#include <ptemu/sync.h>

enum { S390_R2, S390_R3, S390_SEGMENT, S390_PTE };

#define S390_PAGE_SHIFT		12
#define S390_VA_BITS		53
#define PAGE_MASK		(~0xfffull)
#define _PAGE_TABLE_SIZE	2048u
#define _CRST_TABLE_SIZE	16384u
#define _SEGMENT_SIZE		(1ull << 20)

/* Page-table entry: hardware bits */
#define _PAGE_NOEXEC		0x100ull	/* instruction-execution protection */
#define _PAGE_PROTECT		0x200ull	/* DAT protection: no stores */
#define _PAGE_INVALID		0x400ull
#define _PAGE_LARGE		0x800ull	/* bit 52: must be zero in a valid entry */
/* ... and Linux's software bits */
#define _PAGE_PRESENT		0x001ull
#define _PAGE_YOUNG		0x004ull
#define _PAGE_DIRTY		0x008ull
#define _PAGE_READ		0x010ull
#define _PAGE_WRITE		0x020ull

/* Region-table entry */
#define _REGION_ENTRY_ORIGIN	(~0xfffull)
#define _REGION_ENTRY_PROTECT	0x200ull
#define _REGION_ENTRY_OFFSET	0xc0ull		/* TF: first quarter of the next table */
#define _REGION_ENTRY_INVALID	0x20ull
#define _REGION_ENTRY_TYPE_MASK	0x0cull
#define _REGION_ENTRY_TYPE_R2	0x08ull
#define _REGION_ENTRY_TYPE_R3	0x04ull
#define _REGION_ENTRY_LENGTH	0x03ull		/* TL: last quarter of the next table */
#define _REGION_ENTRY_BITS	0xfffffffffffff22full
#define _REGION2_ENTRY		(_REGION_ENTRY_TYPE_R2 | _REGION_ENTRY_LENGTH)
#define _REGION2_ENTRY_EMPTY	(_REGION_ENTRY_TYPE_R2 | _REGION_ENTRY_INVALID)
#define _REGION3_ENTRY		(_REGION_ENTRY_TYPE_R3 | _REGION_ENTRY_LENGTH)
#define _REGION3_ENTRY_EMPTY	(_REGION_ENTRY_TYPE_R3 | _REGION_ENTRY_INVALID)

/* Segment-table entry */
#define _SEGMENT_ENTRY_ORIGIN	(~0x7ffull)	/* page table, 2 KiB aligned */
#define _SEGMENT_ENTRY_ORIGIN_LARGE (~0xfffffull)	/* 1 MiB frame */
#define _SEGMENT_ENTRY_PROTECT	0x200ull
#define _SEGMENT_ENTRY_NOEXEC	0x100ull
#define _SEGMENT_ENTRY_INVALID	0x20ull
#define _SEGMENT_ENTRY_COMM	0x10ull		/* common segment: illegal in a private space */
#define _SEGMENT_ENTRY_TYPE_MASK 0x0cull
#define _SEGMENT_ENTRY_LARGE	0x400ull	/* format control: 1 MiB leaf */
#define _SEGMENT_ENTRY_DIRTY	0x2000ull	/* software bits of a leaf */
#define _SEGMENT_ENTRY_YOUNG	0x1000ull
#define _SEGMENT_ENTRY_WRITE	0x0002ull
#define _SEGMENT_ENTRY_READ	0x0001ull
#define _SEGMENT_ENTRY_BITS	0xfffffffffffffe33ull
#define _SEGMENT_ENTRY		0ull
#define _SEGMENT_ENTRY_EMPTY	_SEGMENT_ENTRY_INVALID
/* Every bit a Linux segment leaf may carry. */
#define _SEGMENT_ENTRY_BITS_LARGE (_SEGMENT_ENTRY_ORIGIN_LARGE | _SEGMENT_ENTRY_LARGE |	\
				   _SEGMENT_ENTRY_PROTECT | _SEGMENT_ENTRY_NOEXEC |	\
				   _SEGMENT_ENTRY_INVALID | _SEGMENT_ENTRY_DIRTY |	\
				   _SEGMENT_ENTRY_YOUNG | _SEGMENT_ENTRY_WRITE |	\
				   _SEGMENT_ENTRY_READ)

/* ---- entry encodings -------------------------------------------------------------- */

static uint64_t s390_none_entry(unsigned level)
{
	switch (level) {
	case S390_R2:
		return _REGION2_ENTRY_EMPTY;
	case S390_R3:
		return _REGION3_ENTRY_EMPTY;
	case S390_SEGMENT:
		return _SEGMENT_ENTRY_EMPTY;
	default:
		return _PAGE_INVALID;
	}
}

static uint64_t s390_mk_table(unsigned level, uint64_t table_pa)
{
	switch (level) {
	case S390_R2:
		return (table_pa & _REGION_ENTRY_ORIGIN) | _REGION2_ENTRY;
	case S390_R3:
		return (table_pa & _REGION_ENTRY_ORIGIN) | _REGION3_ENTRY;
	default:
		return (table_pa & _SEGMENT_ENTRY_ORIGIN) | _SEGMENT_ENTRY;
	}
}

/* A region entry as Linux writes it: the empty pattern, or a table pointer of the level's
 * type. An invalid entry with an origin, or a zero origin, is garbage to the model:
 * Linux never writes one, and frame 0 never holds a table. */
static enum ptemu_entry_kind region_kind(uint64_t e, uint64_t type, uint64_t *table_pa)
{
	if (e == (type | _REGION_ENTRY_INVALID))
		return PTEMU_ENTRY_NONE;
	if ((e & _REGION_ENTRY_TYPE_MASK) != type || (e & ~_REGION_ENTRY_BITS) ||
	    (e & _REGION_ENTRY_INVALID) || !(e & _REGION_ENTRY_ORIGIN))
		return PTEMU_ENTRY_BAD;
	if (table_pa)
		*table_pa = e & _REGION_ENTRY_ORIGIN;
	return PTEMU_ENTRY_TABLE;
}

/* pmd_none/pmd_large/pmd_bad of v6.6, with a hardware-invalid table pointer, a common
 * segment and a zero origin counted as bad for the same reasons as region entries. */
static enum ptemu_entry_kind segment_kind(uint64_t e, uint64_t *table_pa)
{
	if (e == _SEGMENT_ENTRY_EMPTY)
		return PTEMU_ENTRY_NONE;
	if (e & _SEGMENT_ENTRY_TYPE_MASK)
		return PTEMU_ENTRY_BAD;
	if (e & _SEGMENT_ENTRY_LARGE)
		return (e & ~_SEGMENT_ENTRY_BITS_LARGE) ? PTEMU_ENTRY_BAD : PTEMU_ENTRY_LEAF;
	if ((e & ~_SEGMENT_ENTRY_BITS) || (e & (_SEGMENT_ENTRY_INVALID | _SEGMENT_ENTRY_COMM)) ||
	    !(e & _SEGMENT_ENTRY_ORIGIN))
		return PTEMU_ENTRY_BAD;
	if (table_pa)
		*table_pa = e & _SEGMENT_ENTRY_ORIGIN;
	return PTEMU_ENTRY_TABLE;
}

/* The PTE table of v6.6's pgtable.h: none is exactly 0x400, swap is (pte & 0x201) == 0x200,
 * present is the software present bit. */
static enum ptemu_entry_kind pte_kind(uint64_t pte)
{
	if (pte == _PAGE_INVALID)
		return PTEMU_ENTRY_NONE;
	if (pte & _PAGE_PRESENT)
		return (pte & _PAGE_LARGE) ? PTEMU_ENTRY_BAD : PTEMU_ENTRY_LEAF;
	if ((pte & (_PAGE_PROTECT | _PAGE_PRESENT)) == _PAGE_PROTECT)
		return PTEMU_ENTRY_MIGRATION;
	return PTEMU_ENTRY_BAD;
}

static enum ptemu_entry_kind s390_classify(unsigned level, uint64_t entry, uint64_t *table_pa)
{
	switch (level) {
	case S390_R2:
		return region_kind(entry, _REGION_ENTRY_TYPE_R2, table_pa);
	case S390_R3:
		return region_kind(entry, _REGION_ENTRY_TYPE_R3, table_pa);
	case S390_SEGMENT:
		return segment_kind(entry, table_pa);
	default:
		return pte_kind(entry);
	}
}

static bool s390_pte_none(uint64_t pte)
{
	return pte == _PAGE_INVALID;
}

static bool s390_pte_present(uint64_t pte)
{
	return pte & _PAGE_PRESENT;
}

/*
 * Linux on s390 emulates young and dirty with the hardware invalid and protect bits:
 * a pte that is not young is invalid, so the first access faults and marks it young;
 * a writable pte that is not dirty is protected, so the first store faults and marks it
 * dirty. The helpers below are v6.6's pte_mk* and pmd_mk*; mk_pte and mk_pmd_leaf start
 * from the protection_map[] value (hardware-invalid and protected) and apply them.
 */
static uint64_t pte_mkyoung(uint64_t pte)
{
	pte |= _PAGE_YOUNG;
	if (pte & _PAGE_READ)
		pte &= ~_PAGE_INVALID;
	return pte;
}

static uint64_t pte_mkold(uint64_t pte)
{
	return (pte & ~_PAGE_YOUNG) | _PAGE_INVALID;
}

static uint64_t pte_mkdirty(uint64_t pte)
{
	pte |= _PAGE_DIRTY;
	if (pte & _PAGE_WRITE)
		pte &= ~_PAGE_PROTECT;
	return pte;
}

static uint64_t pte_mkclean(uint64_t pte)
{
	return (pte & ~_PAGE_DIRTY) | _PAGE_PROTECT;
}

/* PAGE_NONE, PAGE_RO, PAGE_RX, PAGE_RW, PAGE_RWX: write and execute imply read, as in
 * s390's protection_map[]. */
static uint64_t page_prot(unsigned flags)
{
	uint64_t prot = _PAGE_PRESENT | _PAGE_INVALID | _PAGE_PROTECT;

	if (!(flags & (PTEMU_PROT_READ | PTEMU_PROT_WRITE | PTEMU_PROT_EXEC)))
		return prot;
	prot |= _PAGE_READ;
	if (flags & PTEMU_PROT_WRITE)
		prot |= _PAGE_WRITE;
	if (!(flags & PTEMU_PROT_EXEC))
		prot |= _PAGE_NOEXEC;
	return prot;
}

static uint64_t s390_mk_pte(struct ptemu_leaf leaf)
{
	uint64_t pte = (leaf.pfn << S390_PAGE_SHIFT) | page_prot(leaf.flags);

	pte = (leaf.flags & PTEMU_PTE_YOUNG) ? pte_mkyoung(pte) : pte_mkold(pte);
	return (leaf.flags & PTEMU_PTE_DIRTY) ? pte_mkdirty(pte) : pte_mkclean(pte);
}

static struct ptemu_leaf s390_pte_leaf(uint64_t pte)
{
	struct ptemu_leaf leaf = { .pfn = (pte & PAGE_MASK) >> S390_PAGE_SHIFT };

	if (pte & _PAGE_READ) {
		leaf.flags |= PTEMU_PROT_READ;
		if (!(pte & _PAGE_NOEXEC))
			leaf.flags |= PTEMU_PROT_EXEC;
	}
	if (pte & _PAGE_WRITE)
		leaf.flags |= PTEMU_PROT_WRITE;
	if (pte & _PAGE_YOUNG)
		leaf.flags |= PTEMU_PTE_YOUNG;
	if (pte & _PAGE_DIRTY)
		leaf.flags |= PTEMU_PTE_DIRTY;
	return leaf;
}

static uint64_t pmd_mkyoung(uint64_t pmd)
{
	pmd |= _SEGMENT_ENTRY_YOUNG;
	if (pmd & _SEGMENT_ENTRY_READ)
		pmd &= ~_SEGMENT_ENTRY_INVALID;
	return pmd;
}

static uint64_t pmd_mkold(uint64_t pmd)
{
	return (pmd & ~_SEGMENT_ENTRY_YOUNG) | _SEGMENT_ENTRY_INVALID;
}

static uint64_t pmd_mkdirty(uint64_t pmd)
{
	pmd |= _SEGMENT_ENTRY_DIRTY;
	if (pmd & _SEGMENT_ENTRY_WRITE)
		pmd &= ~_SEGMENT_ENTRY_PROTECT;
	return pmd;
}

static uint64_t pmd_mkclean(uint64_t pmd)
{
	return (pmd & ~_SEGMENT_ENTRY_DIRTY) | _SEGMENT_ENTRY_PROTECT;
}

/* A fresh huge pmd is young and protected until it is made dirty. */
static uint64_t pmd_mkhuge(uint64_t pmd)
{
	return pmd | _SEGMENT_ENTRY_LARGE | _SEGMENT_ENTRY_YOUNG | _SEGMENT_ENTRY_PROTECT;
}

/* massage_pgprot_pmd(): SEGMENT_NONE, _RO, _RX, _RW, _RWX. */
static uint64_t segment_prot(unsigned flags)
{
	uint64_t prot = 0;

	if (!(flags & (PTEMU_PROT_READ | PTEMU_PROT_WRITE | PTEMU_PROT_EXEC)))
		return _SEGMENT_ENTRY_INVALID | _SEGMENT_ENTRY_PROTECT;
	prot |= _SEGMENT_ENTRY_READ;
	if (flags & PTEMU_PROT_WRITE)
		prot |= _SEGMENT_ENTRY_WRITE;
	else
		prot |= _SEGMENT_ENTRY_PROTECT;
	if (!(flags & PTEMU_PROT_EXEC))
		prot |= _SEGMENT_ENTRY_NOEXEC;
	return prot;
}

static uint64_t s390_mk_pmd_leaf(struct ptemu_leaf leaf)
{
	uint64_t pmd = ((leaf.pfn << S390_PAGE_SHIFT) & _SEGMENT_ENTRY_ORIGIN_LARGE) |
		       segment_prot(leaf.flags);

	pmd = pmd_mkhuge(pmd);
	pmd = (leaf.flags & PTEMU_PTE_YOUNG) ? pmd_mkyoung(pmd) : pmd_mkold(pmd);
	return (leaf.flags & PTEMU_PTE_DIRTY) ? pmd_mkdirty(pmd) : pmd_mkclean(pmd);
}

static struct ptemu_leaf s390_pmd_leaf(uint64_t pmd)
{
	struct ptemu_leaf leaf = {
		.pfn = (pmd & _SEGMENT_ENTRY_ORIGIN_LARGE) >> S390_PAGE_SHIFT,
	};

	if (pmd & _SEGMENT_ENTRY_READ) {
		leaf.flags |= PTEMU_PROT_READ;
		if (!(pmd & _SEGMENT_ENTRY_NOEXEC))
			leaf.flags |= PTEMU_PROT_EXEC;
	}
	if (pmd & _SEGMENT_ENTRY_WRITE)
		leaf.flags |= PTEMU_PROT_WRITE;
	if (pmd & _SEGMENT_ENTRY_YOUNG)
		leaf.flags |= PTEMU_PTE_YOUNG;
	if (pmd & _SEGMENT_ENTRY_DIRTY)
		leaf.flags |= PTEMU_PTE_DIRTY;
	return leaf;
}

/* ---- DAT ---------------------------------------------------------------------------- */

static unsigned dat_index(unsigned level, uint64_t va)
{
	return ptemu_level_index(&ptemu_arch_s390, level, va);
}

static enum ptemu_walk_fault dat_fault(struct ptemu_walk_result *out, unsigned level,
				       enum ptemu_walk_fault fault)
{
	out->level = level;
	out->fault = fault;
	return fault;
}

/* DAT protection accumulates down the walk (EDAT-1); instruction-execution protection is
 * the leaf's own (IEP is defined in a page-table entry and in a segment or region-third
 * entry with FC set only). DAT never forbids reading through a valid translation. */
static enum ptemu_walk_fault dat_leaf(struct ptemu_walk_result *out, unsigned level,
				      uint64_t paddr, uint64_t size, bool protect, bool noexec,
				      enum ptemu_access access)
{
	out->paddr = paddr;
	out->leaf_size = size;
	out->perms = PTEMU_PROT_READ | (protect ? 0 : PTEMU_PROT_WRITE) |
		     (noexec ? 0 : PTEMU_PROT_EXEC);
	if ((access == PTEMU_ACCESS_WRITE && protect) ||
	    (access == PTEMU_ACCESS_FETCH && noexec))
		return dat_fault(out, level, PTEMU_WALK_PERMISSION);
	return dat_fault(out, level, PTEMU_WALK_OK);
}

/*
 * The checks and their order are those of the Principles of Operation: an invalid entry
 * is a translation exception, a table type that does not match the level a
 * translation-specification exception (BAD_ENTRY here), and a region entry's offset and
 * length (TF, TL) bound the part of the next table that exists. The ASCE is a user one:
 * private space, region-second type, full table length. A zero origin is a bad entry, as
 * in classify: frame 0 never holds a table.
 *
 * Bits the machine does not define for an entry are ignored, whatever Linux calls them:
 * 0x100 of a region entry or of a segment entry that points at a page table (Linux's
 * _REGION_ENTRY_NOEXEC and _SEGMENT_ENTRY_NOEXEC mean something in a large leaf only), and
 * a region-third entry's format control, which needs EDAT-2.
 */
static enum ptemu_walk_fault s390_hw_walk(const struct ptemu_walk_ctx *ctx, uint64_t root_pa,
					  uint64_t va, enum ptemu_access access,
					  struct ptemu_walk_result *out)
{
	static const uint64_t region_type[] = { _REGION_ENTRY_TYPE_R2, _REGION_ENTRY_TYPE_R3 };
	bool protect = false;
	uint64_t table = root_pa, e;
	unsigned level;

	memset(out, 0, sizeof(*out));
	/* Bits above a region-second space: ASCE-type exception. */
	if (va >> S390_VA_BITS)
		return dat_fault(out, S390_R2, PTEMU_WALK_TRANSLATION);

	for (level = S390_R2; level <= S390_R3; level++) {
		unsigned next_quarter = dat_index(level + 1, va) >> 9;

		out->table_pa[level] = table;
		e = ctx->read_entry(ctx, level, table, dat_index(level, va));
		if (e & _REGION_ENTRY_INVALID)
			return dat_fault(out, level, PTEMU_WALK_TRANSLATION);
		if ((e & _REGION_ENTRY_TYPE_MASK) != region_type[level] ||
		    !(e & _REGION_ENTRY_ORIGIN))
			return dat_fault(out, level, PTEMU_WALK_BAD_ENTRY);
		if (next_quarter < ((e & _REGION_ENTRY_OFFSET) >> 6) ||
		    next_quarter > (e & _REGION_ENTRY_LENGTH))
			return dat_fault(out, level, PTEMU_WALK_TRANSLATION);
		protect |= e & _REGION_ENTRY_PROTECT;
		table = e & _REGION_ENTRY_ORIGIN;
	}

	out->table_pa[S390_SEGMENT] = table;
	e = ctx->read_entry(ctx, S390_SEGMENT, table, dat_index(S390_SEGMENT, va));
	if (e & _SEGMENT_ENTRY_INVALID)
		return dat_fault(out, S390_SEGMENT, PTEMU_WALK_TRANSLATION);
	if ((e & (_SEGMENT_ENTRY_TYPE_MASK | _SEGMENT_ENTRY_COMM)) ||
	    !(e & _SEGMENT_ENTRY_ORIGIN))
		return dat_fault(out, S390_SEGMENT, PTEMU_WALK_BAD_ENTRY);
	protect |= e & _SEGMENT_ENTRY_PROTECT;
	if (e & _SEGMENT_ENTRY_LARGE)
		return dat_leaf(out, S390_SEGMENT,
				(e & _SEGMENT_ENTRY_ORIGIN_LARGE) | (va & (_SEGMENT_SIZE - 1)),
				_SEGMENT_SIZE, protect, e & _SEGMENT_ENTRY_NOEXEC, access);
	table = e & _SEGMENT_ENTRY_ORIGIN;

	out->table_pa[S390_PTE] = table;
	e = ctx->read_entry(ctx, S390_PTE, table, dat_index(S390_PTE, va));
	if (e & _PAGE_INVALID)
		return dat_fault(out, S390_PTE, PTEMU_WALK_TRANSLATION);
	if (e & _PAGE_LARGE)
		return dat_fault(out, S390_PTE, PTEMU_WALK_BAD_ENTRY);
	protect |= e & _PAGE_PROTECT;
	return dat_leaf(out, S390_PTE, (e & PAGE_MASK) | (va & ~PAGE_MASK),
			1ull << S390_PAGE_SHIFT, protect, e & _PAGE_NOEXEC, access);
}

/* ---- 2 KiB page tables, two per page (v6.6 arch/s390/mm/pgalloc.c) ------------------ */

/*
 * page->pt_frag holds the kernel's _refcount top byte: AA (bits 0-1) says a half is
 * allocated, PP (bits 4-5) that its free is in flight. Both change under
 * mm->context.lock except PP's clearing, hence atomics. A page is on
 * mm->context.pgtable_list only while exactly one half is allocated, and never once a half
 * has been deferred (PG_active): its rcu head must stay free for pte_free_now().
 */
static unsigned atomic_xor_bits(uint32_t *bits, uint32_t mask)
{
	return __atomic_xor_fetch(bits, mask, __ATOMIC_ACQ_REL);
}

static struct page *table_page(struct ptemu_machine *m, uint64_t table_pa)
{
	return pfn_to_page(m->phys, table_pa >> S390_PAGE_SHIFT);
}

static unsigned table_half(uint64_t table_pa)
{
	return (table_pa / _PAGE_TABLE_SIZE) & 1;
}

static uint64_t page_table_alloc(struct mm_struct *mm)
{
	struct ptemu_machine *m = mm->machine;
	uint64_t table = 0;
	struct page *page;
	unsigned mask, bit;

	spin_lock(&mm->context.lock);
	if (!list_empty(&mm->context.pgtable_list)) {
		page = list_first_entry(&mm->context.pgtable_list, struct page, lru);
		mask = __atomic_load_n(&page->pt_frag, __ATOMIC_ACQUIRE);
		/* A half whose free is still in flight is not free yet. */
		if (!ptemu_injected(m, INJECT_S390_IGNORE_PENDING))
			mask |= mask >> 4;
		mask &= 3;
		if (mask != 3) {
			bit = mask & 1;	/* lower half taken: hand out the upper */
			table = (page_to_pfn(page) << S390_PAGE_SHIFT) + bit * _PAGE_TABLE_SIZE;
			atomic_xor_bits(&page->pt_frag, 1u << bit);
			list_del_init(&page->lru);
		}
	}
	spin_unlock(&mm->context.lock);

	if (!table) {
		table = ptemu_table_page_alloc(mm);
		if (!table)
			return 0;
		page = table_page(m, table);
		/* Lower half allocated; the upper one waits on the list. */
		__atomic_store_n(&page->pt_frag, 1u, __ATOMIC_RELEASE);
		spin_lock(&mm->context.lock);
		list_add(&page->lru, &mm->context.pgtable_list);
		spin_unlock(&mm->context.lock);
	}
	ptemu_pte_table_ctor(m, table);
	return table;
}

static void pte_free_now(struct ptemu_rcu_head *head)
{
	struct page *page = list_entry(head, struct page, rcu);

	/* No mm here: it may be gone. The core destructs the deferred half(s). */
	ptemu_table_page_free(phys_machine(page->phys), page);
}

/* The step both frees share: clear AA and set PP for this half, so that nobody takes it
 * before it is free, and list the page while the other half is in use and no half is
 * deferred. At the head for an immediate free; at the tail for an RCU free, whose half
 * is reusable only once __tlb_remove_table clears PP. */
static void release_half(struct mm_struct *mm, uint64_t table, bool rcu)
{
	struct ptemu_machine *m = mm->machine;
	struct page *page = table_page(m, table);
	unsigned mask;

	spin_lock(&mm->context.lock);
	mask = atomic_xor_bits(&page->pt_frag, 0x11u << table_half(table));
	if ((mask & 3) && (!PageFlag(page, PG_active) || ptemu_injected(m, INJECT_S390_RELIST_ACTIVE))) {
		if (rcu)
			list_add_tail(&page->lru, &mm->context.pgtable_list);
		else
			list_add(&page->lru, &mm->context.pgtable_list);
	} else {
		list_del_init(&page->lru);
	}
	spin_unlock(&mm->context.lock);
}

/* page_table_free() minus the per-table destructor, which the caller owns: a deferred
 * half stays RCU_PENDING until pte_free_now(). */
static void __page_table_free(struct mm_struct *mm, uint64_t table)
{
	struct ptemu_machine *m = mm->machine;
	struct page *page = table_page(m, table);
	unsigned mask;

	release_half(mm, table, false);
	mask = atomic_xor_bits(&page->pt_frag, 0x10u << table_half(table));
	if (mask)
		return;
	/* Both halves free. A deferred half makes the page wait for a grace period. */
	if (TestClearPageFlag(page, PG_active))
		call_rcu(&page->rcu, pte_free_now);
	else
		ptemu_table_page_free(m, page);
}

static void page_table_free(struct mm_struct *mm, uint64_t table)
{
	/* Before the half can be handed out again, the checker must see it free. */
	ptemu_pte_table_dtor(mm->machine, table);
	__page_table_free(mm, table);
}

/* The kernel's pte_free_defer(); core owns that name for its dispatching wrapper. */
static void s390_pte_free_defer(struct mm_struct *mm, uint64_t table)
{
	SetPageFlag(table_page(mm->machine, table), PG_active);
	__page_table_free(mm, table);
}

/* __pte_free_tlb: the half keeps PP, which alloc respects, until __tlb_remove_table
 * after the grace period; the half rides in the token's low bits. */
static void page_table_free_rcu(struct mmu_gather *tlb, uint64_t table)
{
	release_half(tlb->mm, table, true);
	tlb_remove_table(tlb, table | (1u << table_half(table)));
}

/* After the grace period: the half is free (for the checker first, before PP lets alloc
 * hand it out), and the page goes when the other half is free too. No mm here. */
static void s390_tlb_remove_table(struct ptemu_machine *m, uint64_t token)
{
	unsigned half = token & 3;
	uint64_t table = token ^ half;
	struct page *page = table_page(m, table);

	ptemu_pte_table_dtor(m, table);
	if (atomic_xor_bits(&page->pt_frag, half << 4))
		return;
	if (TestClearPageFlag(page, PG_active))
		call_rcu(&page->rcu, pte_free_now);
	else
		ptemu_table_page_free(m, page);
}

/*
 * pmdp_collapse_flush is pmdp_xchg_direct: IDTE invalidates the segment entry and purges
 * it from every CPU's TLB and walk cache as one instruction, which completes only after
 * the walks in flight. pmdp_flush_lazy's other path (the invalid bit set, the purge left
 * to the mm's next flush) is s390's only while the mm is attached to this CPU alone:
 * no-tlb-flush takes it although other CPUs have the mm attached.
 */
static uint64_t s390_pmdp_collapse_flush(struct mm_struct *mm, uint64_t addr, uint64_t pmd_pa)
{
	if (ptemu_injected(mm->machine, INJECT_NO_TLB_FLUSH))
		return ptemu_pmdp_clear_flush_lazy(mm, pmd_pa);
	return ptemu_pmdp_clear_flush_one_step(mm, addr, pmd_pa);
}

/* QEMU's EXCP_SVC: what UC_HOOK_INTR reports for svc. */
#define S390X_EXCP_SVC 2

/* Unicorn starts the CPU in 24-bit addressing: switch to 64-bit (EA and BA). */
static int s390x_cpu_init(void *uc)
{
	uint64_t pswm = 0x180000000ull;

	return uc_reg_write(uc, UC_S390X_REG_PSWM, &pswm) == UC_ERR_OK ? 0 : -1;
}

/* The storage-to-storage instructions whose Unicorn 2.1.1 helpers go through
 * probe_access, which crashes the host when a TLB fill is needed, even one that succeeds
 * (workloads/README.md): opcode, and the second byte where the opcode has two. */
static const struct {
	uint8_t op, op2;
	const char *name;
} s390x_ss_insns[] = {
	{ 0x0e, 0, "mvcl" },	{ 0xa8, 0, "mvcle" },	{ 0xa9, 0, "clcle" },
	{ 0xb2, 0x55, "mvst" },	{ 0xb2, 0x5d, "clst" },	{ 0xd1, 0, "mvn" },
	{ 0xd2, 0, "mvc" },	{ 0xd3, 0, "mvz" },	{ 0xd4, 0, "nc" },
	{ 0xd5, 0, "clc" },	{ 0xd6, 0, "oc" },	{ 0xd7, 0, "xc" },
	{ 0xdc, 0, "tr" },	{ 0xe8, 0, "mvcin" },
};

/* Refuses code with any of them: a linear sweep, as objdump -d does, where the first two
 * bits of an opcode give the instruction's length (2, 4, 4 or 6 bytes). */
static int s390x_check_image(const struct ptemu_elf_image *img, char *err, size_t errlen)
{
	for (unsigned c = 0; c < img->ncode; c++) {
		const struct ptemu_elf_segment *r = &img->code[c];
		uint64_t len;

		for (uint64_t at = 0; at + 2 <= r->filesz; at += len) {
			const uint8_t *insn = r->data + at;

			len = (uint64_t[]){ 2, 4, 4, 6 }[insn[0] >> 6];
			for (size_t k = 0; k < sizeof(s390x_ss_insns) / sizeof(s390x_ss_insns[0]); k++)
				if (insn[0] == s390x_ss_insns[k].op &&
				    (!s390x_ss_insns[k].op2 || insn[1] == s390x_ss_insns[k].op2)) {
					snprintf(err, errlen, "%s at 0x%" PRIx64 ": s390x storage-to-storage "
						 "instructions crash Unicorn 2.1.1 (probe_access) when they need a "
						 "TLB fill; build the image without them (-march=z10, no struct "
						 "copies)", s390x_ss_insns[k].name, r->vaddr + at);
					return -1;
				}
		}
	}
	return 0;
}

const struct ptemu_arch ptemu_arch_s390 = {
	.name = "s390",
	.read_fault_vm_flags = VM_READ | VM_WRITE | VM_EXEC,	/* do_dat_exception: VM_ACCESS_FLAGS */
	.pt_reclaim_status = "what-if: s390 has its own tlb_remove_table, so no upstream kernel "
			     "reclaims empty tables there",
	.description = "s390x DAT, region-second root (53-bit VA), 2 KiB page tables two per "
		       "page (v6.6 AA/PP halves), 1 MiB segment THP",

	.page_shift = S390_PAGE_SHIFT,
	.va_bits = S390_VA_BITS,
	.nr_levels = 4,
	.level_shift = { 42, 31, 20, 12 },
	.level_bits = { 11, 11, 11, 8 },
	.table_bytes = { _CRST_TABLE_SIZE, _CRST_TABLE_SIZE, _CRST_TABLE_SIZE, _PAGE_TABLE_SIZE },
	.entry_bytes = 8,
	.big_endian = true,
	.pmd_leaf_shift = 20,

	.none_entry = s390_none_entry,
	.classify = s390_classify,
	.mk_table = s390_mk_table,
	.pte_none = s390_pte_none,
	.pte_present = s390_pte_present,
	.mk_pte = s390_mk_pte,
	.pte_leaf = s390_pte_leaf,
	.mk_pmd_leaf = s390_mk_pmd_leaf,
	.pmd_leaf = s390_pmd_leaf,

	.pte_table_bytes = _PAGE_TABLE_SIZE,
	.tables_per_page = 2,
	.pte_alloc_one = page_table_alloc,
	.pte_free = page_table_free,
	.pte_free_defer = s390_pte_free_defer,
	.rcu_table_free = true,		/* s390 selects MMU_GATHER_RCU_TABLE_FREE */
	.pte_free_tlb = page_table_free_rcu,
	.tlb_remove_table = s390_tlb_remove_table,
	/* Nothing to tear down: a listed page always has a half allocated, and free_pgtables
	 * has freed every half by then. */
	.mm_destroy_context = NULL,

	.hw_walk = s390_hw_walk,
	.flush_waits_for_walks = true,	/* IDTE completes only after walks in flight */
	.walker_is_rcu_reader = false,
	.retract_flush = PTEMU_RETRACT_FLUSH_RANGE,
	/* Every flush is __tlb_flush_mm_lazy, a purge of the whole ASCE. */
	.leaf_flush_drops_walk_cache = true,
	.pmdp_collapse_flush = s390_pmdp_collapse_flush,
	.tlb_entries = 1024,
	.walk_cache_entries = 64,
	.model_injections = 1u << INJECT_S390_IGNORE_PENDING | 1u << INJECT_S390_RELIST_ACTIVE,
	.check_image = s390x_check_image,

	.isa = {
		.uc_arch = UC_ARCH_S390X,
		.uc_mode = UC_MODE_BIG_ENDIAN,
		.cs_arch = CS_ARCH_SYSZ,
		.cs_mode = CS_MODE_BIG_ENDIAN,
		.elf_machine = EM_S390,
		.elf_class = 64,
		.clang_target = "s390x-linux-gnu",
		.binutils_triple = "s390x-linux-gnu",
		.workload_dir = "s390x",
		.reg_pc = UC_S390X_REG_PC,
		.reg_sp = UC_S390X_REG_R15,
		.reg_sysno = UC_S390X_REG_R1,
		.reg_arg = { UC_S390X_REG_R2, UC_S390X_REG_R3, UC_S390X_REG_R4,
			     UC_S390X_REG_R5, UC_S390X_REG_R6, UC_S390X_REG_R7 },
		.reg_ret = UC_S390X_REG_R2,
		.stack_reserve = 160,	/* the ELF ABI's register save area */
		.syscall_intno = S390X_EXCP_SVC,
		.syscall_insn_bytes = 2,
		.pc_after_syscall = false,
		.cpu_init = s390x_cpu_init,
	},
};
