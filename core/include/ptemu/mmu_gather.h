/* The mmu_gather (v6.6 mm/mmu_gather.c, include/asm-generic/tlb.h): what a zap or
 * free_pgtables unmaps is collected, the TLBs are flushed once, and only then are the
 * pages and page tables freed. Where the model's kernel selects MMU_GATHER_RCU_TABLE_FREE
 * (arch->rcu_table_free) the tables also wait for a grace period (tlb_remove_table), for
 * the walkers that hold none of the locks the freeing path holds. */
#ifndef PTEMU_MMU_GATHER_H
#define PTEMU_MMU_GATHER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct mm_struct;
struct page;
struct ptemu_machine;

struct mmu_gather {
	struct mm_struct *mm;
	bool fullmm;		/* exit_mmap: the whole address space goes */
	bool freed_tables;	/* a table was freed: the flush may not be last-level only */
	uint64_t start, end;	/* the range to flush; start >= end when nothing */
	struct page **pages;	/* folios unmapped, put after the flush */
	size_t npages, pages_cap;
	uint64_t *tables;	/* tlb_remove_table's tokens: table address | model bits */
	size_t ntables, tables_cap;
};

void tlb_gather_mmu(struct mmu_gather *tlb, struct mm_struct *mm);
void tlb_gather_mmu_fullmm(struct mmu_gather *tlb, struct mm_struct *mm);
/* __tlb_adjust_range: [addr, addr + size) must be flushed. */
void tlb_flush_range_add(struct mmu_gather *tlb, uint64_t addr, uint64_t size);
/* The folio's mapping was cleared: put it after the flush (__tlb_remove_page). */
void tlb_remove_page(struct mmu_gather *tlb, struct page *folio);
/* A detached, empty PTE table that was attached at addr (pte_free_tlb): freed after the
 * flush, through the model's __pte_free_tlb. */
void pte_free_tlb(struct mmu_gather *tlb, uint64_t table_pa, uint64_t addr);
/* Queue a table for the model's __tlb_remove_table, after the flush and, with
 * rcu_table_free, a grace period. */
void tlb_remove_table(struct mmu_gather *tlb, uint64_t table);
/* Flush, then free what was gathered; the gather stays usable. */
void tlb_flush_mmu(struct mmu_gather *tlb);
void tlb_finish_mmu(struct mmu_gather *tlb);
/* With MMU_GATHER_RCU_TABLE_FREE: an IPI to every CPU that returns once each has taken
 * it, so no walk that runs with interrupts off is still inside a table just detached (a
 * sparc64 TSB-miss walk; GUP-fast is not modelled). Without it, nothing. */
void tlb_remove_table_sync_one(struct ptemu_machine *m);

/* The generic __pte_free_tlb and __tlb_remove_table (asm-generic/tlb.h: a table is a
 * whole page). */
void ptemu_generic_pte_free_tlb(struct mmu_gather *tlb, uint64_t table_pa);
void ptemu_generic_tlb_remove_table(struct ptemu_machine *m, uint64_t table);

#ifdef __cplusplus
}
#endif
#endif
