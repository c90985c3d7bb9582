/* The mmu_gather: flush once, then free (v6.6 mm/mmu_gather.c). */
#include <inttypes.h>
#include <stdlib.h>

#include <ptemu/check.h>
#include <ptemu/file.h>
#include <ptemu/machine.h>
#include <ptemu/mm.h>
#include <ptemu/mmu_gather.h>
#include <ptemu/pgtable.h>
#include <ptemu/phys.h>
#include <ptemu/rcu.h>
#include <ptemu/sched.h>

#include "internal.h"

static void reset_range(struct mmu_gather *tlb)
{
	tlb->start = UINT64_MAX;
	tlb->end = 0;
	tlb->freed_tables = false;
}

void tlb_gather_mmu(struct mmu_gather *tlb, struct mm_struct *mm)
{
	*tlb = (struct mmu_gather){ .mm = mm };
	reset_range(tlb);
}

void tlb_gather_mmu_fullmm(struct mmu_gather *tlb, struct mm_struct *mm)
{
	tlb_gather_mmu(tlb, mm);
	tlb->fullmm = true;
}

void tlb_flush_range_add(struct mmu_gather *tlb, uint64_t addr, uint64_t size)
{
	if (addr < tlb->start)
		tlb->start = addr;
	if (addr + size > tlb->end)
		tlb->end = addr + size;
}

void tlb_remove_page(struct mmu_gather *tlb, struct page *folio)
{
	tlb->pages = ptemu_array_reserve(tlb->pages, &tlb->pages_cap, tlb->npages,
					 sizeof(*tlb->pages), 64, "an mmu_gather");
	tlb->pages[tlb->npages++] = folio;
}

void tlb_remove_table(struct mmu_gather *tlb, uint64_t table)
{
	tlb->tables = ptemu_array_reserve(tlb->tables, &tlb->tables_cap, tlb->ntables,
					  sizeof(*tlb->tables), 16, "an mmu_gather");
	tlb->tables[tlb->ntables++] = table;
}

void pte_free_tlb(struct mmu_gather *tlb, uint64_t table_pa, uint64_t addr)
{
	struct ptemu_machine *m = tlb->mm->machine;

	/* Before the model's own bookkeeping (s390 would list page 0's halves for reuse): a
	 * free table here is pmd_pgtable of a pmd that no longer points at one, which a
	 * broken protocol gathers (a zap without its pmd recheck, reclaiming a table another
	 * reclaim detached). Reported, and left out, as pte_free_defer does. */
	if (check_table_state(m, table_pa) == TABLE_FREE) {
		ptemu_report(m, VIOLATION_PT_USE_AFTER_FREE, table_pa,
			     "pte_free_tlb of table %#" PRIx64 ", which is free", table_pa);
		return;
	}
	tlb_flush_range_add(tlb, addr, ptemu_page_size(m->arch));
	tlb->freed_tables = true;
	ptemu_stat_add(&m->stats, PTEMU_STAT_tables_gathered, 1);
	m->arch->pte_free_tlb(tlb, table_pa);
}

/* The batch of tlb_remove_table_rcu: one callback for every table of one flush. */
struct table_batch {
	struct ptemu_rcu_head rcu;
	struct ptemu_machine *m;
	size_t n;
	uint64_t tables[];
};

static void remove_tables(struct ptemu_machine *m, const uint64_t *tables, size_t n)
{
	for (size_t i = 0; i < n; i++)
		m->arch->tlb_remove_table(m, tables[i]);
}

static void tlb_remove_table_rcu(struct ptemu_rcu_head *head)
{
	struct table_batch *b = (struct table_batch *)head;

	remove_tables(b->m, b->tables, b->n);
	free(b);
}

static void tlb_table_flush(struct mmu_gather *tlb)
{
	struct ptemu_machine *m = tlb->mm->machine;
	struct table_batch *b;

	if (!tlb->ntables)
		return;
	if (!m->arch->rcu_table_free) {
		remove_tables(m, tlb->tables, tlb->ntables);
		tlb->ntables = 0;
		return;
	}
	b = malloc(sizeof(*b) + tlb->ntables * sizeof(b->tables[0]));
	if (!b)
		ptemu_bug("out of host memory for an mmu_gather table batch");
	b->m = m;
	b->n = 0;
	/* Invalidated now (tlb_table_invalidate): from here only RCU readers may still be
	 * inside them, the checker's RCU_PENDING. A table that is free already (a broken
	 * protocol gathered pmd_pgtable of a none pmd) is reported and left out: freeing it
	 * again would break the simulated machine, not just the modelled kernel. */
	for (size_t i = 0; i < tlb->ntables; i++) {
		/* s390's tokens carry the half below the table's alignment. */
		uint64_t table = tlb->tables[i] & ~(uint64_t)(m->arch->pte_table_bytes - 1);

		if (check_table_defer(m, table) != TABLE_FREE)
			b->tables[b->n++] = tlb->tables[i];
	}
	tlb->ntables = 0;
	call_rcu(&b->rcu, tlb_remove_table_rcu);
}

/* tlb_flush_mmu_tlbonly, with the arm64 tlb_flush: last-level only unless a table went;
 * at exit only a freed table needs a flush (the ASID is not reused before a full one). */
static void tlb_flush(struct mmu_gather *tlb)
{
	if (tlb->fullmm) {
		if (tlb->freed_tables)
			flush_tlb_mm(tlb->mm);
	} else if (tlb->start < tlb->end) {
		__flush_tlb_range(tlb->mm, tlb->start, tlb->end, !tlb->freed_tables);
	}
	reset_range(tlb);
}

void tlb_flush_mmu(struct mmu_gather *tlb)
{
	tlb_flush(tlb);
	tlb_table_flush(tlb);
	for (size_t i = 0; i < tlb->npages; i++)
		folio_put(tlb->pages[i]);
	tlb->npages = 0;
}

void tlb_finish_mmu(struct mmu_gather *tlb)
{
	tlb_flush_mmu(tlb);
	free(tlb->pages);
	free(tlb->tables);
	tlb->pages = NULL;
	tlb->tables = NULL;
}

void ptemu_generic_pte_free_tlb(struct mmu_gather *tlb, uint64_t table_pa)
{
	tlb_remove_table(tlb, table_pa);
}

void ptemu_generic_tlb_remove_table(struct ptemu_machine *m, uint64_t table)
{
	ptemu_table_page_free(m, pfn_to_page(m->phys, table >> m->arch->page_shift));
}

void tlb_remove_table_sync_one(struct ptemu_machine *m)
{
	if (!m->arch->rcu_table_free || !m->tlb.ipi_all)
		return;
	ptemu_sched_point();	/* the initiator's side of the IPI */
	m->tlb.ipi_all(m->tlb.ctx);
}
