/* The sparc64 MMU model: 8 KiB pages, four levels of one-page tables holding physical
 * addresses, sun4v TTEs as Linux keeps them, 8 MiB THP made of two 4 MiB TTEs; the
 * hardware side is software: per-mm TSBs probed on a TLB miss and the kernel's TSB-miss
 * page-table walk, an RCU reader because it runs with interrupts off (kernel-spec 2.4). */
#ifndef PTEMU_MMU_SPARC64_H
#define PTEMU_MMU_SPARC64_H

#include <ptemu/arch.h>

#ifdef __cplusplus
extern "C" {
#endif

extern const struct ptemu_arch ptemu_arch_sparc64;

/* sun4v TTE bits (arch/sparc/include/asm/pgtable_64.h), for tests. */
#define SPARC64_PAGE_VALID	(1ull << 63)	/* also _PAGE_R: pte_mkold clears it */
#define SPARC64_PAGE_MODIFIED	(1ull << 61)	/* software dirty */
#define SPARC64_PAGE_ACCESSED	(1ull << 60)	/* software young */
#define SPARC64_PAGE_READ	(1ull << 59)	/* software read */
#define SPARC64_PAGE_WRITE	(1ull << 58)	/* software write */
#define SPARC64_PAGE_PMD_HUGE	(1ull << 56)
#define SPARC64_PAGE_PADDR	0x00ffffffffffe000ull
#define SPARC64_PAGE_CP		0x400ull
#define SPARC64_PAGE_CV		0x200ull
#define SPARC64_PAGE_P		0x100ull	/* privileged */
#define SPARC64_PAGE_EXEC	0x080ull
#define SPARC64_PAGE_W		0x040ull	/* hardware writable */
#define SPARC64_PAGE_PRESENT	0x010ull
#define SPARC64_PAGE_SZ4MB	0x003ull	/* _PAGE_SZHUGE_4V */

#define SPARC64_REAL_HPAGE_SHIFT 22		/* the hardware page of half a THP */
/* TSB tags (asm/tsb.h): va >> 22; bit 47 locks an entry, bit 46 marks it invalid. */
#define SPARC64_TSB_TAG_LOCK	(1ull << 47)
#define SPARC64_TSB_TAG_INVALID	(1ull << 46)
#define SPARC64_TSB_ENTRIES	512u		/* the 8 KiB TSB that tsb_grow starts with */
#define SPARC64_TSB_MAX_INDEX	7		/* and its largest, 1 MiB */
#define SPARC64_TSB_SIZE_INDEX_MASK 7u		/* tsb_reg_val's low bits: 8 KiB << index */
enum { SPARC64_TSB_BASE, SPARC64_TSB_HUGE };

/* The TSB entry a page of va would use in the mm's TSB `which`, or 0 when it has none. */
uint64_t sparc64_tsb_entry_pa(const struct mm_struct *mm, unsigned which, uint64_t va);
/* The TSB's physical address and its entries, 0 when it has none. */
uint64_t sparc64_tsb_base(const struct mm_struct *mm, unsigned which);
unsigned sparc64_tsb_nentries(const struct mm_struct *mm, unsigned which);

#ifdef __cplusplus
}
#endif
#endif
