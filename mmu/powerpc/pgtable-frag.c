/* PTE tables as fragments of a shared page, as arch/powerpc/mm/pgtable-frag.c (v6.6) hands
 * them out (kernel-spec 2.3):
 *
 * - mm->context.pte_frag is the next fragment never handed out, under page_table_lock;
 *   a fresh page's pt_frag_refcount (page->pt_frag) is the fragment count when it becomes
 *   the cursor page, 1 when another thread installed a cursor meanwhile.
 * - A freed fragment is never handed out again: only the count drops. At 0 a page marked
 *   Active (a fragment of it went to pte_free_defer) is freed through call_rcu, any other
 *   at once. One rcu head per page suffices, and the last free of an Active page is at
 *   least a grace period after every deferral on it.
 *
 * The checker's state is per fragment: a fragment freed by pte_free or after the gather's
 * grace period is destructed at once; a deferred one stays RCU_PENDING until its page goes.
 */
#include "book3s64.h"

#include <inttypes.h>

#include <ptemu/check.h>
#include <ptemu/inject.h>
#include <ptemu/list.h>
#include <ptemu/machine.h>
#include <ptemu/mm.h>
#include <ptemu/pgtable.h>
#include <ptemu/phys.h>
#include <ptemu/rcu.h>
#include <ptemu/sync.h>

static struct page *table_page(struct ptemu_machine *m, uint64_t table)
{
	return pfn_to_page(m->phys, table >> m->arch->page_shift);
}

static uint64_t get_pte_from_cache(struct mm_struct *mm)
{
	const struct ptemu_arch *a = mm->machine->arch;
	uint64_t ret, next;

	spin_lock(&mm->page_table_lock);
	ret = mm->context.pte_frag_freed;
	if (ret) {
		mm->context.pte_frag_freed = 0;
	} else {
		ret = mm->context.pte_frag;
		if (ret) {
			next = ret + a->pte_table_bytes;
			mm->context.pte_frag = next & (ptemu_page_size(a) - 1) ? next : 0;
		}
	}
	spin_unlock(&mm->page_table_lock);
	return ret;
}

static uint64_t alloc_for_ptecache(struct mm_struct *mm)
{
	struct ptemu_machine *m = mm->machine;
	uint64_t table = ptemu_table_page_alloc(mm);
	struct page *page;

	if (!table)
		return 0;
	page = table_page(m, table);
	__atomic_store_n(&page->pt_frag, 1u, __ATOMIC_RELEASE);
	spin_lock(&mm->page_table_lock);
	if (!mm->context.pte_frag) {
		__atomic_store_n(&page->pt_frag, m->arch->tables_per_page, __ATOMIC_RELEASE);
		mm->context.pte_frag = table + m->arch->pte_table_bytes;
	}
	spin_unlock(&mm->page_table_lock);
	return table;
}

uint64_t pte_fragment_alloc(struct mm_struct *mm)
{
	uint64_t table = get_pte_from_cache(mm);

	if (!table)
		table = alloc_for_ptecache(mm);
	if (table)
		ptemu_pte_table_ctor(mm->machine, table);
	return table;
}

/* pte_free_now: the page's dtor and free. No mm here: it may be gone. Fragments still
 * live are the deferred ones; the core destructs them with the page. */
static void pte_free_now(struct ptemu_rcu_head *head)
{
	struct page *page = list_entry(head, struct page, rcu);

	ptemu_table_page_free(phys_machine(page->phys), page);
}

void pte_fragment_free(struct ptemu_machine *m, uint64_t table)
{
	struct page *page = table_page(m, table);
	int32_t count = (int32_t)__atomic_load_n(&page->pt_frag, __ATOMIC_ACQUIRE);

	if (count <= 0) {
		/* The kernel's BUG_ON: a fragment freed more often than handed out. */
		ptemu_report(m, VIOLATION_PT_USE_AFTER_FREE, table,
			     "pte_fragment_free of %#" PRIx64 " with pt_frag_refcount %d", table, count);
		return;
	}
	if (__atomic_sub_fetch(&page->pt_frag, 1u, __ATOMIC_ACQ_REL))
		return;
	if (TestClearPageFlag(page, PG_active))
		call_rcu(&page->rcu, pte_free_now);
	else
		pte_free_now(&page->rcu);
}

void book3s64_pte_free(struct mm_struct *mm, uint64_t table)
{
	ptemu_pte_table_dtor(mm->machine, table);
	pte_fragment_free(mm->machine, table);
}

void book3s64_pte_free_defer(struct mm_struct *mm, uint64_t table)
{
	struct ptemu_machine *m = mm->machine;

	if (ptemu_injected(m, INJECT_PPC_FRAG_REUSE)) {
		/* The bug: the fragment goes back to the cache, its count kept for the next
		 * holder, with a lockless walker perhaps still inside it. */
		spin_lock(&mm->page_table_lock);
		if (!mm->context.pte_frag_freed) {
			mm->context.pte_frag_freed = table;
			table = 0;
		}
		spin_unlock(&mm->page_table_lock);
		if (!table)
			return;
	}
	if (!ptemu_injected(m, INJECT_PPC_NO_PAGE_ACTIVE))
		SetPageFlag(table_page(m, table), PG_active);
	pte_fragment_free(m, table);
}

void book3s64_tlb_remove_table(struct ptemu_machine *m, uint64_t table)
{
	ptemu_pte_table_dtor(m, table);
	pte_fragment_free(m, table);
}

void pte_frag_destroy(struct mm_struct *mm)
{
	struct ptemu_machine *m = mm->machine;
	const struct ptemu_arch *a = m->arch;
	uint64_t frag = mm->context.pte_frag, kept = mm->context.pte_frag_freed;
	struct page *page;
	unsigned handed_out;

	mm->context.pte_frag = 0;
	mm->context.pte_frag_freed = 0;
	if (kept)	/* ppc-frag-reuse's cached fragment holds a count, as if handed out */
		pte_fragment_free(m, kept);
	if (!frag)
		return;
	page = table_page(m, frag);
	handed_out = (unsigned)((frag & (ptemu_page_size(a) - 1)) / a->pte_table_bytes);
	if (__atomic_sub_fetch(&page->pt_frag, a->tables_per_page - handed_out, __ATOMIC_ACQ_REL))
		return;
	if (ptemu_injected(m, INJECT_PPC_V66_FRAG_DESTROY)) {
		/* v6.6 frees the page without looking at PG_active; the page allocator's bad
		 * page check would clear the flag it finds. */
		ClearPageFlag(page, PG_active);
		pte_free_now(&page->rcu);
		return;
	}
	if (TestClearPageFlag(page, PG_active))
		call_rcu(&page->rcu, pte_free_now);
	else
		pte_free_now(&page->rcu);
}
