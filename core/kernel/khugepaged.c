/* collapse_file, retract_page_tables (v6.6's lockless one and v6.5's under mmap_lock),
 * collapse_pte_mapped_thp and the khugepaged thread (kernel-spec 3.2 to 3.5). */
#include <errno.h>
#include <pthread.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

#include <ptemu/check.h>
#include <ptemu/fault.h>
#include <ptemu/file.h>
#include <ptemu/inject.h>
#include <ptemu/khugepaged.h>
#include <ptemu/machine.h>
#include <ptemu/mm.h>
#include <ptemu/mmu_gather.h>
#include <ptemu/pgtable.h>
#include <ptemu/phys.h>
#include <ptemu/sched.h>

#include "workloads/include/ptemu_abi.h"
#include "internal.h"

const char *scan_result_name(enum scan_result r)
{
	static const char *const names[] = {
		"SCAN_FAIL", "SCAN_SUCCEED", "SCAN_PMD_NULL", "SCAN_PMD_NONE", "SCAN_PMD_MAPPED",
		"SCAN_EXCEED_NONE_PTE", "SCAN_PTE_NON_PRESENT", "SCAN_PTE_MAPPED_HUGEPAGE",
		"SCAN_PAGE_NULL", "SCAN_PAGE_LOCK", "SCAN_PAGE_COUNT", "SCAN_PAGE_COMPOUND",
		"SCAN_VMA_CHECK", "SCAN_TRUNCATED", "SCAN_ALLOC_HUGE_PAGE_FAIL", "SCAN_PAGE_FILLED",
		"SCAN_ANY_PROCESS", "SCAN_VMA_NULL", "SCAN_ADDRESS_RANGE", "SCAN_PAGE_ANON",
	};
	return r <= SCAN_PAGE_ANON ? names[r] : "?";
}

static unsigned hpage_order(const struct ptemu_arch *a)
{
	return a->pmd_leaf_shift - a->page_shift;
}

/* A large folio found in the range: the huge folio of this very range, or another. */
static enum scan_result compound_result(const struct page *folio, unsigned order, uint64_t start)
{
	return folio->order == order && folio->index == start ? SCAN_PTE_MAPPED_HUGEPAGE
							      : SCAN_PAGE_COMPOUND;
}

static enum scan_result find_pmd_or_thp_or_none(struct mm_struct *mm, uint64_t addr, pmd_t **pmdp)
{
	*pmdp = mm_find_pmd(mm, addr);
	if (!*pmdp)
		return SCAN_PMD_NULL;
	switch (pmd_kind(pmdp_get_lockless(*pmdp), NULL)) {
	case PTEMU_ENTRY_NONE:
		return SCAN_PMD_NONE;
	case PTEMU_ENTRY_LEAF:
		return SCAN_PMD_MAPPED;
	case PTEMU_ENTRY_TABLE:
		return SCAN_SUCCEED;
	default:
		return SCAN_PMD_NULL;
	}
}

/* The table a pmd points at; for a pmd that points at none, the page of pfn 0, as the
 * kernel's pmd_pgtable gives. */
static uint64_t pmd_pgtable(pmd_t pmd)
{
	uint64_t table = 0;

	pmd_kind(pmd, &table);
	return table;
}

/* transhuge_vma_suitable: the PMD range at addr lies in the VMA, at a file offset whose
 * alignment matches its address's. */
static bool transhuge_vma_suitable(const struct vm_area_struct *vma, uint64_t addr)
{
	const struct ptemu_arch *a = vma->vm_mm->machine->arch;
	uint64_t hsize = 1ull << a->pmd_leaf_shift, haddr = addr & ~(hsize - 1);

	return !(((vma->vm_start >> a->page_shift) - vma->vm_pgoff) % (hsize >> a->page_shift)) &&
	       haddr >= vma->vm_start && haddr + hsize <= vma->vm_end;
}

bool hugepage_vma_check(const struct vm_area_struct *vma, unsigned vm_flags, bool enforce_sysfs)
{
	const struct ptemu_arch *a = vma->vm_mm->machine->arch;
	uint64_t hsize = 1ull << a->pmd_leaf_shift;

	if (!a->pmd_leaf_shift || (vm_flags & VM_NOHUGEPAGE) || !vma->vm_file ||
	    vma->vm_end - vma->vm_start < hsize || !transhuge_vma_suitable(vma, vma->vm_end - hsize))
		return false;
	if (enforce_sysfs && !(vm_flags & VM_HUGEPAGE))
		return false;
	/* file_thp_enabled: nobody has a regular file of the model open for write. */
	return vma->vm_file->shmem || (vm_flags & VM_EXEC);
}

/* The address at which a VMA maps file index `pgoff`, or 0 when it does not. */
static uint64_t vma_address(const struct vm_area_struct *vma, uint64_t pgoff)
{
	unsigned shift = vma->vm_mm->machine->arch->page_shift;

	if (pgoff < vma->vm_pgoff)
		return 0;
	uint64_t addr = vma->vm_start + ((pgoff - vma->vm_pgoff) << shift);

	return addr < vma->vm_end ? addr : 0;
}

static void free_retracted_table(struct mm_struct *mm, uint64_t table, bool deferred)
{
	free_detached_pte_table(mm, table, deferred);
	ptemu_stat_add(&mm->machine->stats, PTEMU_STAT_retracts, 1);
}

/* The per-VMA checks both retractions make first, in the kernel's order (kernel-spec 3.3,
 * and 3.5 for v6.5): SCAN_SUCCEED when the VMA maps a whole PMD range at addr through a
 * table, found in *pmd. */
static enum scan_result retract_check_vma(struct vm_area_struct *vma, uint64_t addr, pmd_t **pmd)
{
	uint64_t hsize = 1ull << vma->vm_mm->machine->arch->pmd_leaf_shift;

	/* Written-to private mappings hold anon pages and would split again. */
	if (__atomic_load_n(&vma->anon_vma, __ATOMIC_RELAXED))
		return SCAN_PAGE_ANON;
	if (!addr || (addr & (hsize - 1)) || vma->vm_end < addr + hsize)
		return SCAN_VMA_CHECK;
	return find_pmd_or_thp_or_none(vma->vm_mm, addr, pmd);
}

/* Between the look that found `table` in the pmd and the pmd lock of its removal: where
 * empty-table reclaim can clear the pmd first (the window of 6.13's and 6.14's re-checks). */
static void before_retract_lock(struct mm_struct *mm, pmd_t *pmd, uint64_t table)
{
	struct ptemu_machine *m = mm->machine;

	if (m->test_hooks.before_retract_lock)
		m->test_hooks.before_retract_lock(m->test_hooks.ctx, mm, pmd);
	/* Only a reclaim can empty the pmd meanwhile: then the race needs nothing but a
	 * preemption here. */
	if (m->features.reclaim_empty_tables)
		ptemu_sched_point_wide_window(table);
	else
		ptemu_sched_point_window(table);
}

static void retract_page_tables_lockless(struct ptemu_file *f, uint64_t pgoff)
{
	struct ptemu_machine *m = f->machine;

	down_read(&f->i_mmap_rwsem);
	for (size_t i = 0; i < f->nr_i_mmap; i++) {
		struct vm_area_struct *vma = f->i_mmap[i];
		struct mm_struct *mm = vma->vm_mm;
		struct ptemu_spinlock *pml, *ptl;
		uint64_t addr = vma_address(vma, pgoff), table = 0;
		pmd_t *pmd, pmdval;
		bool retracted = false;

		if (retract_check_vma(vma, addr, &pmd) != SCAN_SUCCEED ||
		    !__atomic_load_n(&mm->mm_users, __ATOMIC_ACQUIRE)) {
			ptemu_stat_add(&m->stats, PTEMU_STAT_retract_skips, 1);
			continue;
		}
		before_retract_lock(mm, pmd, pmd_pgtable(pmdp_get_lockless(pmd)));
		pml = pmd_lock(mm, pmd);
		pmdval = pmdp_get_lockless(pmd);
		/* Still a table under pml (6.14's check_pmd_state): empty-table reclaim may have
		 * cleared the pmd since the lockless look. v6.6 goes on with whatever is there. */
		bool still_table = pmd_kind(pmdval, &table) == PTEMU_ENTRY_TABLE;

		if (!still_table)
			ptemu_stat_add(&m->stats, PTEMU_STAT_removal_saw_pmd_change, 1);
		if (still_table || ptemu_injected(m, INJECT_RETRACT_NO_RECHECK)) {
			ptl = pte_lockptr(mm, &pmdval);
			if (ptl != pml)
				spin_lock_nested(ptl);
			if (!__atomic_load_n(&vma->anon_vma, __ATOMIC_RELAXED)) {
				/* Both locks held, the table about to go: lockless walkers and
				 * mappers waiting for the ptl run meanwhile. */
				ptemu_sched_long_window_point();
				table = pmd_pgtable(pmdp_collapse_flush(mm, addr, pmd));
				retracted = true;
			}
			if (ptl != pml)
				spin_unlock(ptl);
		}
		spin_unlock(pml);
		if (retracted)
			free_retracted_table(mm, table, true);
		else
			ptemu_stat_add(&m->stats, PTEMU_STAT_retract_skips, 1);
	}
	up_read(&f->i_mmap_rwsem);
}

/* khugepaged_add_pte_mapped_thp: remembered for the mm's next khugepaged visit. */
static void khugepaged_add_pte_mapped_thp(struct mm_struct *mm, uint64_t addr)
{
	spin_lock(&mm->page_table_lock);
	bool known = false;

	for (unsigned i = 0; i < mm->nr_pte_mapped_thp; i++)
		known |= mm->pte_mapped_thp[i] == addr;
	if (!known && mm->nr_pte_mapped_thp < MAX_PTE_MAPPED_THP)
		mm->pte_mapped_thp[mm->nr_pte_mapped_thp++] = addr;
	spin_unlock(&mm->page_table_lock);
}

/* collapse_and_free_pmd (v6.5): no pmd lock, as mmap_lock and i_mmap_rwsem held for write
 * keep every other pmd writer out; the table is freed at once, after the flush and
 * tlb_remove_table_sync_one, whose IPI waits for the walks that run with interrupts off.
 * On sparc64 that IPI is all that keeps a TSB-miss walk out of the freed table: its
 * pmdp_collapse_flush invalidates nothing. */
static void collapse_and_free_pmd(struct mm_struct *mm, uint64_t addr, pmd_t *pmd)
{
	uint64_t table = pmd_pgtable(pmdp_collapse_flush(mm, addr, pmd));

	tlb_remove_table_sync_one(mm->machine);
	free_retracted_table(mm, table, false);
}

/* v6.5's retract_page_tables: each mm's table removed under its mmap_lock, taken with a
 * trylock (the folio lock held here orders before mmap_lock in the fault path), by
 * khugepaged for every mm, by MADV_COLLAPSE for its own only; the others are left to
 * khugepaged's next visit (khugepaged_add_pte_mapped_thp). MADV_COLLAPSE installs the
 * huge pmd in its own mm at once. Returns the result for the target's VMA. */
static enum scan_result retract_page_tables_legacy(struct ptemu_file *f, uint64_t pgoff,
						   struct mm_struct *target_mm, uint64_t target_addr,
						   struct page *hpage, bool is_khugepaged)
{
	struct ptemu_machine *m = f->machine;
	enum scan_result target_result = SCAN_FAIL;

	down_write(&f->i_mmap_rwsem);
	for (size_t i = 0; i < f->nr_i_mmap; i++) {
		struct vm_area_struct *vma = f->i_mmap[i];
		struct mm_struct *mm = vma->vm_mm;
		uint64_t addr = vma_address(vma, pgoff);
		bool is_target = mm == target_mm && addr == target_addr;
		enum scan_result result;
		pmd_t *pmd;

		result = retract_check_vma(vma, addr, &pmd);
		if (result != SCAN_SUCCEED)
			goto next;
		result = SCAN_PTE_MAPPED_HUGEPAGE;
		if (!(is_khugepaged || is_target) || !down_write_trylock(&mm->mmap_lock)) {
			if (!is_target) {
				khugepaged_add_pte_mapped_thp(mm, addr);
				ptemu_stat_add(&m->stats, PTEMU_STAT_retract_skips, 1);
				continue;
			}
			goto next;
		}
		/* vma_try_start_write: the model's faults take no per-VMA lock. anon_vma
		 * again: a fault under mmap_lock for read may have set it since. */
		if (vma->anon_vma)
			result = SCAN_PAGE_ANON;
		else if (!__atomic_load_n(&mm->mm_users, __ATOMIC_ACQUIRE))
			result = SCAN_ANY_PROCESS;
		else {
			collapse_and_free_pmd(mm, addr, pmd);
			if (!is_khugepaged && is_target)
				result = set_huge_pmd(vma, addr, pmd, hpage) ? SCAN_FAIL : SCAN_SUCCEED;
			else
				result = SCAN_SUCCEED;
		}
		up_write(&mm->mmap_lock);
next:
		if (result != SCAN_SUCCEED)
			ptemu_stat_add(&m->stats, PTEMU_STAT_retract_skips, 1);
		if (is_target)
			target_result = result;
	}
	up_write(&f->i_mmap_rwsem);
	return target_result;
}

/* kernel-spec 3.3 (v6.6) or the v6.5 retract of 3.5, by the machine's protocol. hpage: the
 * new folio, locked, for the legacy protocol's install in the caller's own mm. */
static enum scan_result retract_page_tables(struct ptemu_file *f, uint64_t pgoff, struct mm_struct *target_mm,
					    uint64_t target_addr, struct page *hpage,
					    const struct collapse_control *cc)
{
	if (f->machine->protocol == PTEMU_PROTOCOL_LEGACY)
		return retract_page_tables_legacy(f, pgoff, target_mm, target_addr, hpage,
						  !cc || cc->is_khugepaged);
	retract_page_tables_lockless(f, pgoff);
	return SCAN_SUCCEED;
}

/* What try_to_unmap cleared, for the one flush before the copy: like the kernel's
 * tlbflush_unmap_batch, it names the address spaces at the time of the clear, not
 * those mapping the file at the time of the flush. A process may exit in between, its
 * VMAs leaving i_mmap while its vCPUs' TLBs still hold the cleared translations. */
struct unmap_batch {
	struct unmap_range {
		struct mm_struct *mm;	/* holds an mmgrab until the flush */
		uint64_t start, end;
	} *r;
	size_t n, cap;
};

/* One range per mm and PMD block (a collapse unmaps within one block of each VMA). */
static void unmap_batch_add(struct unmap_batch *b, struct mm_struct *mm, uint64_t addr,
			    uint64_t psize)
{
	uint64_t block = ~(ptemu_pmd_size(mm->machine->arch) - 1);

	for (size_t i = 0; i < b->n; i++) {
		struct unmap_range *r = &b->r[i];

		if (r->mm == mm && (r->start & block) == (addr & block)) {
			r->start = addr < r->start ? addr : r->start;
			r->end = addr + psize > r->end ? addr + psize : r->end;
			return;
		}
	}
	b->r = ptemu_array_reserve(b->r, &b->cap, b->n, sizeof(*b->r), 8, "an unmap batch");
	mmgrab(mm);
	b->r[b->n++] = (struct unmap_range){ mm, addr, addr + psize };
}

/* v6.6 page_vma_mapped_walk's map_pte (no PVMW_SYNC): the PTE at addr, mapped and locked
 * if it is present, else NULL. There is no pmd_same re-check under the ptl: the walk
 * relies on a detached table being empty, so a present PTE proves the table attached. */
static pte_t *map_pte(struct mm_struct *mm, pmd_t *pmd, uint64_t addr, struct ptemu_spinlock **ptlp)
{
	struct ptemu_machine *m = mm->machine;
	pmd_t pmdval;
	uint64_t table = 0;
	/* pte_offset_map_nolock, keeping the pmd value that names the table for the
	 * scheduler's window point. */
	pte_t *pte = __pte_offset_map(pmd, addr, &pmdval);

	if (!pte)
		return NULL;
	*ptlp = pte_lockptr(mm, &pmdval);
	if (!pte_present(ptep_get(pte))) {
		pte_unmap(pte);
		return NULL;
	}
	if (m->test_hooks.map_before_lock)
		m->test_hooks.map_before_lock(m->test_hooks.ctx, mm, pmd);
	pmd_kind(pmdval, &table);
	ptemu_sched_point_window(table);	/* mapped, not yet locked: a retract may come */
	spin_lock(*ptlp);
	return pte;
}

/* try_to_unmap of one page-cache page: clear every PTE mapping it, in every mm. The TLB
 * flush is try_to_unmap_flush's, once, before the contents are copied. */
static void try_to_unmap(struct ptemu_file *f, struct page *page, uint64_t index,
			 struct unmap_batch *batch)
{
	const struct ptemu_arch *a = f->machine->arch;
	uint64_t pfn = page_to_pfn(page);

	down_read(&f->i_mmap_rwsem);
	for (size_t i = 0; i < f->nr_i_mmap; i++) {
		struct vm_area_struct *vma = f->i_mmap[i];
		struct mm_struct *mm = vma->vm_mm;
		uint64_t addr = vma_address(vma, index);
		struct ptemu_spinlock *ptl;
		pmd_t *pmd;
		pte_t *pte;

		if (!addr || find_pmd_or_thp_or_none(mm, addr, &pmd) != SCAN_SUCCEED)
			continue;
		pte = map_pte(mm, pmd, addr, &ptl);
		if (!pte)
			continue;
		pte_t v = ptep_get(pte);	/* check_pte, under the ptl */

		if (a->pte_present(v.val) && a->pte_leaf(v.val).pfn == pfn) {
			ptep_get_and_clear(mm, addr, pte);
			set_tlb_ubc_flush_pending(mm);
			unmap_batch_add(batch, mm, addr, ptemu_page_size(a));
			add_mm_counter(mm, f->shmem ? MM_SHMEMPAGES : MM_FILEPAGES, -1);
			__atomic_fetch_sub(&page->mapcount, 1, __ATOMIC_RELAXED);
			__atomic_fetch_sub(&page->refcount, 1, __ATOMIC_RELAXED);	/* the mapping's */
		}
		pte_unmap_unlock(pte, ptl);
	}
	up_read(&f->i_mmap_rwsem);
}

/* try_to_unmap_flush: every translation the batch cleared is gone from every TLB. On
 * arm64 that is arch_tlbbatch_flush: TLBI VALE1IS per page, last-level only. */
static void try_to_unmap_flush(struct unmap_batch *b)
{
	for (size_t i = 0; i < b->n; i++) {
		__flush_tlb_range(b->r[i].mm, b->r[i].start, b->r[i].end, true);
		mmdrop(b->r[i].mm);
	}
	free(b->r);
	*b = (struct unmap_batch){ 0 };
}

/* Under a deterministic scheduler: the collapse's copy to its retract is a long window on
 * the PTE tables that map the range now, the ones the retract will detach. */
static void long_window_begin(struct ptemu_file *f, uint64_t start)
{
	uint64_t tables[PTEMU_SCHED_LONG_WINDOW_TABLES];
	unsigned n = 0;

	if (!ptemu_sched_scheduled())
		return;
	down_read(&f->i_mmap_rwsem);
	for (size_t i = 0; i < f->nr_i_mmap && n < sizeof(tables) / sizeof(tables[0]); i++) {
		struct vm_area_struct *vma = f->i_mmap[i];
		uint64_t addr = vma_address(vma, start);
		pmd_t *pmd;

		if (addr && find_pmd_or_thp_or_none(vma->vm_mm, addr, &pmd) == SCAN_SUCCEED &&
		    pmd_kind(pmdp_get_lockless(pmd), &tables[n]) == PTEMU_ENTRY_TABLE)
			n++;
	}
	up_read(&f->i_mmap_rwsem);
	ptemu_sched_long_window_begin(tables, n);
}

/* Rollback: the page cache still holds the old pages; unmapped PTEs refault. */
static enum scan_result collapse_rollback(struct page **pages, uint64_t nr, struct page *hpage,
					  enum scan_result result)
{
	for (uint64_t i = 0; i < nr; i++) {
		if (pages[i]) {
			folio_unlock(pages[i]);
			folio_put(pages[i]);
		}
	}
	hpage->mapping = NULL;
	folio_unlock(hpage);
	folio_put(hpage);
	free(pages);
	return result;
}

enum scan_result collapse_file(struct mm_struct *mm, uint64_t addr, struct ptemu_file *f,
			       uint64_t start, const struct collapse_control *cc)
{
	struct ptemu_machine *m = f->machine;
	const struct ptemu_arch *a = m->arch;
	uint64_t psize = ptemu_page_size(a), nr, hpfn;
	unsigned order;
	struct page *hpage, **pages;
	enum scan_result result = SCAN_SUCCEED;
	uint64_t nr_none = 0, locked = 0;

	if (!a->pmd_leaf_shift)
		return SCAN_FAIL;
	order = hpage_order(a);
	nr = 1ull << order;
	if (start % nr || (start + nr) * psize > ptemu_file_size(f))
		return SCAN_TRUNCATED;
	pages = calloc(nr, sizeof(*pages));
	if (!pages)
		return SCAN_ALLOC_HUGE_PAGE_FAIL;
	might_sleep("huge page allocation");
	hpfn = phys_alloc_pages(m->phys, order);
	if (!hpfn) {
		free(pages);
		return SCAN_ALLOC_HUGE_PAGE_FAIL;
	}
	/* Locked from allocation until after retraction: faults on the range wait for it. */
	hpage = pfn_to_page(m->phys, hpfn);
	folio_trylock(hpage);
	hpage->mapping = f;
	hpage->index = start;
	if (f->shmem)
		SetPageFlag(hpage, PG_swapbacked);

	for (uint64_t i = 0; i < nr && result == SCAN_SUCCEED; i++) {
		struct page *folio = filemap_get_folio(f, start + i);

		if (!folio && f->shmem) {
			nr_none++;	/* a hole: zero-filled */
			continue;
		}
		if (!folio) {
			/* A file page not cached: read it in, as the synchronous readahead. */
			int err = 0;

			folio = filemap_get_folio_trylocked(f, start + i, &err);
			if (!folio) {
				result = err == -EAGAIN ? SCAN_PAGE_LOCK : SCAN_FAIL;
				continue;
			}
			if (folio->order) {
				result = compound_result(folio, order, start);
				folio_unlock(folio);
				folio_put(folio);
				continue;
			}
			pages[i] = folio;
			locked++;
			continue;
		}
		if (folio->order) {
			result = compound_result(folio, order, start);
			folio_put(folio);
		} else if (!folio_trylock(folio)) {
			result = SCAN_PAGE_LOCK;
			folio_put(folio);
		} else if (folio->mapping != f) {
			result = SCAN_TRUNCATED;
			folio_unlock(folio);
			folio_put(folio);
		} else {
			pages[i] = folio;
			locked++;
		}
	}
	if (result == SCAN_SUCCEED && nr_none == nr)
		result = SCAN_TRUNCATED;	/* nothing to collapse */
	if (result == SCAN_SUCCEED) {
		struct unmap_batch batch = { 0 };

		for (uint64_t i = 0; i < nr; i++)
			if (pages[i] && __atomic_load_n(&pages[i]->mapcount, __ATOMIC_RELAXED))
				try_to_unmap(f, pages[i], start + i, &batch);
		if (m->test_hooks.collapse_before_flush)
			m->test_hooks.collapse_before_flush(m->test_hooks.ctx, f);
		/* Completed before the copy: no CPU may write an old page after it. */
		try_to_unmap_flush(&batch);
		for (uint64_t i = 0; i < nr; i++)
			if (pages[i] && __atomic_load_n(&pages[i]->refcount, __ATOMIC_ACQUIRE) != 2)
				result = SCAN_PAGE_COUNT;	/* the cache's and ours, nothing else */
	}
	if (result != SCAN_SUCCEED)
		return collapse_rollback(pages, nr, hpage, result);
	/* The copy is the long part of a collapse: other CPUs run meanwhile, and may walk
	 * into the tables emptied above just before the retract detaches them. */
	long_window_begin(f, start);
	uint8_t *dst = phys_to_virt(m->phys, hpfn << a->page_shift);

	for (uint64_t i = 0; i < nr; i++) {
		if (pages[i])
			memcpy(dst + i * psize, phys_to_virt(m->phys, page_to_pfn(pages[i]) << a->page_shift), psize);
		else
			memset(dst + i * psize, 0, psize);
	}
	/* Commit: one multi-index entry; a hole someone filled meanwhile aborts it. */
	spin_lock(&f->i_pages_lock);
	for (uint64_t i = 0; i < nr; i++)
		if (f->i_pages[start + i] != pages[i])
			result = SCAN_PAGE_FILLED;
	if (result == SCAN_SUCCEED)
		for (uint64_t i = 0; i < nr; i++)
			f->i_pages[start + i] = hpage;
	spin_unlock(&f->i_pages_lock);
	if (result != SCAN_SUCCEED) {
		ptemu_sched_long_window_end();
		return collapse_rollback(pages, nr, hpage, result);
	}
	__atomic_fetch_add(&hpage->refcount, (int32_t)nr, __ATOMIC_RELEASE);	/* the cache's */
	SetPageFlag(hpage, PG_uptodate);
	if (f->shmem)
		SetPageFlag(hpage, PG_dirty);

	result = retract_page_tables(f, start, mm, addr, hpage, cc);
	ptemu_sched_long_window_end();
	ptemu_stat_add(&m->stats, PTEMU_STAT_collapses, 1);
	/* MADV_COLLAPSE then maps it in its own mm (collapse_pte_mapped_thp, install_pmd). */
	if (cc && !cc->is_khugepaged && result == SCAN_SUCCEED && m->protocol != PTEMU_PROTOCOL_LEGACY)
		result = SCAN_PTE_MAPPED_HUGEPAGE;

	folio_unlock(hpage);
	folio_put(hpage);	/* ours */
	for (uint64_t i = 0; i < nr; i++) {
		if (!pages[i])
			continue;
		pages[i]->mapping = NULL;
		folio_unlock(pages[i]);
		folio_put(pages[i]);	/* the cache's */
		folio_put(pages[i]);	/* ours: freed */
	}
	free(pages);
	return result;
}

enum scan_result hpage_collapse_scan_file(struct mm_struct *mm, uint64_t addr, struct ptemu_file *f,
					  uint64_t start, const struct collapse_control *cc)
{
	const struct ptemu_arch *a = f->machine->arch;
	unsigned order = hpage_order(a);
	uint64_t nr = 1ull << order, present = 0;
	enum scan_result result = SCAN_SUCCEED;

	if (!a->pmd_leaf_shift || start % nr || start + nr > f->max_pages)
		return SCAN_TRUNCATED;
	spin_lock(&f->i_pages_lock);
	for (uint64_t i = 0; i < nr && result == SCAN_SUCCEED; i++) {
		struct page *folio = f->i_pages[start + i];

		if (!folio)
			continue;
		if (folio->order)
			result = compound_result(folio, order, start);
		else if (__atomic_load_n(&folio->refcount, __ATOMIC_RELAXED) !=
			 1 + __atomic_load_n(&folio->mapcount, __ATOMIC_RELAXED))
			result = SCAN_PAGE_COUNT;	/* someone else holds it right now */
		present++;
	}
	spin_unlock(&f->i_pages_lock);
	if (result == SCAN_SUCCEED && cc && cc->is_khugepaged && present < nr - cc->max_ptes_none)
		result = SCAN_EXCEED_NONE_PTE;
	if (result == SCAN_SUCCEED) {
		ptemu_stat_add(&f->machine->stats, PTEMU_STAT_collapse_attempts, 1);
		result = collapse_file(mm, addr, f, start, cc);
	}
	return result;
}

/* collapse_pte_mapped_thp's test of one entry: none, or subpage i of the folio. */
static enum scan_result thp_pte_check(const struct ptemu_arch *a, pte_t v, uint64_t pfn)
{
	if (a->pte_none(v.val))
		return SCAN_SUCCEED;
	if (!a->pte_present(v.val))
		return SCAN_PTE_NON_PRESENT;
	return a->pte_leaf(v.val).pfn == pfn ? SCAN_SUCCEED : SCAN_FAIL;	/* a COWed copy, say */
}

/* collapse_pte_mapped_thp's steps 1 to 4 as v6.5 has them, under mmap_lock and i_mmap_rwsem
 * held for write: the entries are checked and their rmap dropped under the ptl but not
 * cleared; the table goes with them, freed at once. */
static enum scan_result cpmt_remove_table_legacy(struct mm_struct *mm, struct ptemu_file *f, pmd_t *pmd,
						 uint64_t haddr, struct page *folio)
{
	const struct ptemu_arch *a = mm->machine->arch;
	uint64_t nr = 1ull << hpage_order(a), count = 0;
	enum scan_result result = SCAN_SUCCEED;
	struct ptemu_spinlock *ptl;
	pte_t *start_pte;

	down_write(&f->i_mmap_rwsem);
	start_pte = pte_offset_map_lock(mm, pmd, haddr, &ptl);
	if (!start_pte) {
		up_write(&f->i_mmap_rwsem);
		return SCAN_FAIL;
	}
	for (uint64_t i = 0; i < nr && result == SCAN_SUCCEED; i++) {
		pte_t v = ptep_get(ptep_add(start_pte, i));

		result = thp_pte_check(a, v, folio_pfn(folio) + i);
		count += result == SCAN_SUCCEED && !a->pte_none(v.val);
	}
	if (result == SCAN_SUCCEED)
		__atomic_fetch_sub(&folio->mapcount, (int32_t)count, __ATOMIC_RELAXED);
	pte_unmap_unlock(start_pte, ptl);
	if (result == SCAN_SUCCEED) {
		__atomic_fetch_sub(&folio->refcount, (int32_t)count, __ATOMIC_RELEASE);
		add_mm_counter(mm, f->shmem ? MM_SHMEMPAGES : MM_FILEPAGES, -(int64_t)count);
		/* v6.5 (since 6.2's "allow anon_vma") takes a written-to private mapping's
		 * anon_vma lock for write around this, against anon rmap walks: the model has
		 * none to keep out. */
		collapse_and_free_pmd(mm, haddr, pmd);
	}
	up_write(&f->i_mmap_rwsem);
	return result;
}

/* Steps 1 to 4 as v6.6 has them (kernel-spec 3.4), under mmap_lock for read: the entries
 * cleared under the ptl, then the empty table removed under the pmd lock and the ptl,
 * freed by RCU. */
static enum scan_result cpmt_remove_table(struct mm_struct *mm, struct ptemu_file *f, pmd_t *pmd, uint64_t haddr,
					  struct page *folio)
{
	struct ptemu_machine *m = mm->machine;
	const struct ptemu_arch *a = m->arch;
	uint64_t psize = ptemu_page_size(a), nr = 1ull << hpage_order(a), nr_ptes = 0, table = 0;
	enum scan_result result = SCAN_SUCCEED;
	struct ptemu_spinlock *ptl, *pml;
	pte_t *start_pte;
	pmd_t pmdval;

	/* Step 1: every entry is none or maps its own page of the folio. */
	start_pte = pte_offset_map_lock(mm, pmd, haddr, &ptl);
	if (!start_pte) {
		/* Only a reclaim of the (then empty) table can get here first. */
		ptemu_note_map_failed_after_table(m);
		return SCAN_FAIL;
	}
	for (uint64_t i = 0; i < nr && result == SCAN_SUCCEED; i++)
		result = thp_pte_check(a, ptep_get(ptep_add(start_pte, i)), folio_pfn(folio) + i);
	pte_unmap_unlock(start_pte, ptl);
	if (result != SCAN_SUCCEED)
		return result;

	/* Step 2: clear them; their flush is pmdp_collapse_flush's. */
	start_pte = __pte_offset_map(pmd, haddr, &pmdval);
	if (!start_pte) {
		ptemu_note_map_failed_after_table(m);
		return SCAN_FAIL;
	}
	pmd_kind(pmdval, &table);
	ptl = pte_lockptr(mm, &pmdval);
	spin_lock(ptl);
	for (uint64_t i = 0; i < nr && result == SCAN_SUCCEED; i++) {
		pte_t v = ptep_get(ptep_add(start_pte, i));

		/* Rechecked: an entry may have been swapped or migrated since step 1. */
		result = thp_pte_check(a, v, folio_pfn(folio) + i);
		if (result == SCAN_SUCCEED && !a->pte_none(v.val)) {
			ptep_get_and_clear(mm, haddr + i * psize, ptep_add(start_pte, i));
			__atomic_fetch_sub(&folio->mapcount, 1, __ATOMIC_RELAXED);
			nr_ptes++;
		}
	}
	spin_unlock(ptl);
	pte_unmap(start_pte);
	/* From here to the removal the table is empty: faults in the range map it, see none
	 * entries and wait for the folio we hold, as in collapse_file's copy to retract. */
	ptemu_sched_long_window_begin(&table, 1);
	/* Step 3: the mappings' references and counters. */
	__atomic_fetch_sub(&folio->refcount, (int32_t)nr_ptes, __ATOMIC_RELEASE);
	add_mm_counter(mm, f->shmem ? MM_SHMEMPAGES : MM_FILEPAGES, -(int64_t)nr_ptes);
	if (result != SCAN_SUCCEED)
		goto abort;

	/* Step 4: remove the (empty) table, if it is still the one we emptied (6.13's
	 * re-check: with empty-table reclaim the pmd may have changed). v6.6 removes
	 * whatever the pmd holds now, under the ptl of the table step 2 mapped. */
	before_retract_lock(mm, pmd, table);
	pml = pmd_lock(mm, pmd);
	uint64_t now_table = 0;

	if (pmd_kind(pmdp_get_lockless(pmd), &now_table) != PTEMU_ENTRY_TABLE || now_table != table) {
		ptemu_stat_add(&m->stats, PTEMU_STAT_removal_saw_pmd_change, 1);
		if (!ptemu_injected(m, INJECT_CPMT_NO_RECHECK)) {
			spin_unlock(pml);
			result = SCAN_FAIL;
			goto abort;
		}
	}
	if (ptl != pml)
		spin_lock_nested(ptl);
	table = pmd_pgtable(pmdp_collapse_flush(mm, haddr, pmd));
	if (ptl != pml)
		spin_unlock(ptl);
	spin_unlock(pml);
	ptemu_sched_long_window_end();
	free_retracted_table(mm, table, true);
	return SCAN_SUCCEED;

abort:
	ptemu_sched_long_window_end();
	if (nr_ptes)
		flush_tlb_mm(mm);
	return result;
}

/* kernel-spec 3.4 (v6.6, mmap_lock held for read) or v6.5's (held for write). */
enum scan_result collapse_pte_mapped_thp(struct mm_struct *mm, uint64_t addr, bool install_pmd)
{
	struct ptemu_machine *m = mm->machine;
	const struct ptemu_arch *a = m->arch;
	bool legacy = m->protocol == PTEMU_PROTOCOL_LEGACY;
	uint64_t hsize = 1ull << a->pmd_leaf_shift, haddr = addr & ~(hsize - 1);
	struct vm_area_struct *vma = vma_lookup(mm, haddr);
	enum scan_result result;
	pmd_t *pmd;

	/* First, in case the tables are being torn down. */
	if (!a->pmd_leaf_shift || !vma || !vma->vm_file || haddr < vma->vm_start ||
	    haddr + hsize > vma->vm_end)
		return SCAN_VMA_CHECK;
	result = find_pmd_or_thp_or_none(mm, haddr, &pmd);
	if (result == SCAN_PMD_MAPPED)
		return result;
	uint64_t index = vma->vm_pgoff + ((haddr - vma->vm_start) >> a->page_shift);

	if (!hugepage_vma_check(vma, vma->vm_flags, false))
		return SCAN_VMA_CHECK;
	struct ptemu_file *f = vma->vm_file;
	struct page *folio = filemap_get_folio(f, index);

	if (!folio)
		return SCAN_PAGE_NULL;
	folio_lock(folio);
	if (folio->order != hpage_order(a) || folio->index != index || folio->mapping != f) {
		result = SCAN_PAGE_COMPOUND;
		goto drop_folio;
	}
	/* Stable now: the folio lock keeps collapse_file and truncation off the range. */
	result = find_pmd_or_thp_or_none(mm, haddr, &pmd);
	if (result == SCAN_SUCCEED)
		result = legacy ? cpmt_remove_table_legacy(mm, f, pmd, haddr, folio)
				: cpmt_remove_table(mm, f, pmd, haddr, folio);
	else if (result == SCAN_PMD_NONE)
		result = SCAN_SUCCEED;	/* maybe_install_pmd */
	/* Step 5. */
	if (result == SCAN_SUCCEED && install_pmd)
		result = set_huge_pmd(vma, haddr, pmd, folio) ? SCAN_FAIL : SCAN_SUCCEED;
drop_folio:
	folio_unlock(folio);
	folio_put(folio);
	return result;
}

/* ---- the khugepaged thread ------------------------------------------------------------ */

struct ptemu_khugepaged {
	struct ptemu_machine *m;
	struct khugepaged_tunables t;
	pthread_t thread;
	/* khugepaged_mm_lock: the slots. Never held across a scheduling point. */
	pthread_mutex_t lock;
	struct mm_struct **slots;	/* each holds an mmgrab */
	size_t nslots, cap;
	size_t cursor;			/* the slot being scanned */
	uint64_t address;		/* where its scan goes on */
	int stop;			/* atomic: free-running stop request */
};

static bool khugepaged_should_stop(struct ptemu_khugepaged *k)
{
	if (__atomic_load_n(&k->stop, __ATOMIC_ACQUIRE))
		return true;
	return k->t.should_stop && k->t.should_stop(k->t.ctx);
}

/* khugepaged_collapse_pte_mapped_thps (v6.5): what retract could not take, now. */
static void khugepaged_collapse_pte_mapped_thps(struct mm_struct *mm)
{
	uint64_t addrs[MAX_PTE_MAPPED_THP];
	unsigned n;

	if (!__atomic_load_n(&mm->nr_pte_mapped_thp, __ATOMIC_RELAXED) ||
	    !down_write_trylock(&mm->mmap_lock))
		return;
	spin_lock(&mm->page_table_lock);
	n = mm->nr_pte_mapped_thp;
	memcpy(addrs, mm->pte_mapped_thp, n * sizeof(addrs[0]));
	mm->nr_pte_mapped_thp = 0;
	spin_unlock(&mm->page_table_lock);
	for (unsigned i = 0; i < n && __atomic_load_n(&mm->mm_users, __ATOMIC_ACQUIRE); i++)
		collapse_pte_mapped_thp(mm, addrs[i], false);
	up_write(&mm->mmap_lock);
}

/* khugepaged_scan_mm_slot: the next eligible PMD ranges of one mm, from *addr, within the
 * budget. True when the mm is done for this pass. */
static bool khugepaged_scan_mm_slot(struct ptemu_khugepaged *k, struct mm_struct *mm, uint64_t *addr,
				    uint64_t *budget)
{
	const struct ptemu_arch *a = k->m->arch;
	uint64_t hsize = 1ull << a->pmd_leaf_shift, nr = hsize >> a->page_shift;
	const struct collapse_control cc = { .is_khugepaged = true, .max_ptes_none = k->t.max_ptes_none };
	bool legacy = k->m->protocol == PTEMU_PROTOCOL_LEGACY;

	if (legacy)
		khugepaged_collapse_pte_mapped_thps(mm);
	while (!khugepaged_should_stop(k)) {
		struct ptemu_file *f = NULL;
		uint64_t h = 0, pgoff = 0;

		if (!down_read_trylock(&mm->mmap_lock)) {
			*budget -= *budget > 0;	/* busy: counts as progress, as in the kernel */
			return true;
		}
		if (!__atomic_load_n(&mm->mm_users, __ATOMIC_ACQUIRE)) {
			up_read(&mm->mmap_lock);
			return true;
		}
		for (size_t i = 0; i < mm->nr_vmas && !f; i++) {
			struct vm_area_struct *vma = mm->vmas[i];
			uint64_t from = *addr > vma->vm_start ? *addr : vma->vm_start;

			h = (from + hsize - 1) & ~(hsize - 1);
			if (vma->vm_end <= *addr || !hugepage_vma_check(vma, vma->vm_flags, true) ||
			    h + hsize > vma->vm_end)
				continue;
			pgoff = vma->vm_pgoff + ((h - vma->vm_start) >> a->page_shift);
			f = vma->vm_file;
			ptemu_file_get(f);
		}
		up_read(&mm->mmap_lock);
		if (!f)
			return true;
		/* With a file reference and no mmap_lock, as khugepaged does. */
		enum scan_result r = hpage_collapse_scan_file(mm, h, f, pgoff, &cc);

		if (r == SCAN_PTE_MAPPED_HUGEPAGE) {
			if (legacy) {
				khugepaged_add_pte_mapped_thp(mm, h);
			} else {
				down_read(&mm->mmap_lock);
				if (__atomic_load_n(&mm->mm_users, __ATOMIC_ACQUIRE))
					collapse_pte_mapped_thp(mm, h, false);
				up_read(&mm->mmap_lock);
			}
		}
		ptemu_file_put(f);
		*addr = h + hsize;
		*budget = *budget > nr ? *budget - nr : 0;
		if (!*budget)
			return false;
	}
	return false;
}

/* khugepaged_do_scan: one wake-up's worth of pages_to_scan, slot after slot. */
static void khugepaged_do_scan(struct ptemu_khugepaged *k)
{
	uint64_t budget = k->t.pages_to_scan;

	while (budget && !khugepaged_should_stop(k)) {
		pthread_mutex_lock(&k->lock);
		if (!k->nslots) {
			pthread_mutex_unlock(&k->lock);
			return;
		}
		if (k->cursor >= k->nslots) {
			/* A pass ends here, and so does this wake-up: the list's locks may all
			 * be taken, and only a sleep lets their holders run. */
			k->cursor = 0;
			k->address = 0;
			ptemu_stat_add(&k->m->stats, PTEMU_STAT_khugepaged_full_scans, 1);
			pthread_mutex_unlock(&k->lock);
			return;
		}
		struct mm_struct *mm = k->slots[k->cursor];
		uint64_t addr = k->address;

		mmgrab(mm);
		pthread_mutex_unlock(&k->lock);
		bool done = khugepaged_scan_mm_slot(k, mm, &addr, &budget);

		pthread_mutex_lock(&k->lock);
		/* Unless its exit removed it meanwhile (that moved the cursor already). */
		if (k->cursor < k->nslots && k->slots[k->cursor] == mm) {
			k->address = done ? 0 : addr;
			k->cursor += done;
		}
		pthread_mutex_unlock(&k->lock);
		mmdrop(mm);
	}
}

/* Deterministic sleeps are counted in scheduler steps, the run's only clock there. */
static void khugepaged_sleep(struct ptemu_khugepaged *k)
{
	if (ptemu_sched_scheduled()) {
		ptemu_sched_sleep(k->t.scan_sleep_steps);
		return;
	}
	for (double left = k->t.scan_sleep_ms; left > 0 && !khugepaged_should_stop(k); left -= 1) {
		struct timespec ts = { 0, (long)((left < 1 ? left : 1) * 1e6) };

		nanosleep(&ts, NULL);
	}
}

static void *khugepaged_main(void *arg)
{
	struct ptemu_khugepaged *k = arg;

	ptemu_thread_register(k->m, "khugepaged");
	while (!khugepaged_should_stop(k)) {
		khugepaged_do_scan(k);
		khugepaged_sleep(k);
	}
	ptemu_thread_unregister();
	return NULL;
}

int khugepaged_start(struct ptemu_machine *m, const struct khugepaged_tunables *t)
{
	const struct ptemu_arch *a = m->arch;
	struct ptemu_khugepaged *k = calloc(1, sizeof(*k));
	uint64_t nr = a->pmd_leaf_shift ? 1ull << hpage_order(a) : 1;

	/* start_stop_khugepaged: no thread unless PMD THPs are enabled, which a model without
	 * PMD leaves (classic arm) never has. */
	if (!a->pmd_leaf_shift) {
		free(k);
		return 0;
	}
	if (!k)
		return -1;
	k->m = m;
	k->t = *t;
	if (!k->t.pages_to_scan)
		k->t.pages_to_scan = 8 * nr;
	if (!k->t.max_ptes_none || k->t.max_ptes_none >= nr)
		k->t.max_ptes_none = (unsigned)nr - 1;
	pthread_mutex_init(&k->lock, NULL);
	m->khugepaged = k;
	if (pthread_create(&k->thread, NULL, khugepaged_main, k)) {
		m->khugepaged = NULL;
		pthread_mutex_destroy(&k->lock);
		free(k);
		return -1;
	}
	return 0;
}

void khugepaged_stop(struct ptemu_machine *m)
{
	struct ptemu_khugepaged *k = m->khugepaged;

	if (!k)
		return;
	__atomic_store_n(&k->stop, 1, __ATOMIC_RELEASE);
	pthread_join(k->thread, NULL);
	m->khugepaged = NULL;
	for (size_t i = 0; i < k->nslots; i++)
		mmdrop(k->slots[i]);
	pthread_mutex_destroy(&k->lock);
	free(k->slots);
	free(k);
}

/* Whether mm has a slot. Caller holds k->lock. */
static bool khugepaged_knows(const struct ptemu_khugepaged *k, const struct mm_struct *mm)
{
	for (size_t i = 0; i < k->nslots; i++)
		if (k->slots[i] == mm)
			return true;
	return false;
}

void khugepaged_enter_vma(struct vm_area_struct *vma, unsigned vm_flags)
{
	struct mm_struct *mm = vma->vm_mm;
	struct ptemu_khugepaged *k = mm->machine->khugepaged;

	if (!k || !hugepage_vma_check(vma, vm_flags, true))
		return;
	pthread_mutex_lock(&k->lock);
	if (!khugepaged_knows(k, mm)) {
		k->slots = ptemu_array_reserve(k->slots, &k->cap, k->nslots, sizeof(*k->slots), 8,
					       "khugepaged's mm slots");
		mmgrab(mm);
		k->slots[k->nslots++] = mm;
	}
	pthread_mutex_unlock(&k->lock);
}

void hugepage_madvise(struct vm_area_struct *vma, unsigned *vm_flags, int advice)
{
	if (advice == PTEMU_MADV_HUGEPAGE) {
		*vm_flags = (*vm_flags & ~VM_NOHUGEPAGE) | VM_HUGEPAGE;
		/* Registered now, not at a fault that may never come. */
		khugepaged_enter_vma(vma, *vm_flags);
	} else {
		/* A registered mm stays so; the flag keeps khugepaged off this VMA. */
		*vm_flags = (*vm_flags & ~VM_HUGEPAGE) | VM_NOHUGEPAGE;
	}
}

void khugepaged_exit(struct mm_struct *mm)
{
	struct ptemu_khugepaged *k = mm->machine->khugepaged;
	bool found = false;

	if (!k)
		return;
	pthread_mutex_lock(&k->lock);
	for (size_t i = 0; i < k->nslots && !found; i++) {
		if (k->slots[i] != mm)
			continue;
		found = true;
		memmove(&k->slots[i], &k->slots[i + 1], (k->nslots - i - 1) * sizeof(k->slots[0]));
		k->nslots--;
		if (i < k->cursor)
			k->cursor--;
		else if (i == k->cursor)
			k->address = 0;
	}
	pthread_mutex_unlock(&k->lock);
	if (found)
		mmdrop(mm);	/* the slot's; a scan in progress holds its own */
}

/* How often a deterministic waiter for khugepaged's passes looks again (1 ms of its clock). */
#define KHUGEPAGED_WAIT_POLL_STEPS 100

int khugepaged_wait_full_scan(struct mm_struct *mm)
{
	struct ptemu_machine *m = mm->machine;
	struct ptemu_khugepaged *k = m->khugepaged;
	bool known;

	if (!k)
		return -ENOSYS;
	pthread_mutex_lock(&k->lock);
	known = khugepaged_knows(k, mm);
	pthread_mutex_unlock(&k->lock);
	if (!known)
		return -ESRCH;
	/* Two passes completed from now: the second began after this call. */
	uint64_t target = ptemu_stat_get(&m->stats, PTEMU_STAT_khugepaged_full_scans) + 2;

	while (ptemu_stat_get(&m->stats, PTEMU_STAT_khugepaged_full_scans) < target) {
		if (khugepaged_should_stop(k) || ptemu_should_stop(m))
			return -EINTR;
		if (ptemu_sched_scheduled()) {
			ptemu_sched_sleep(KHUGEPAGED_WAIT_POLL_STEPS);
		} else {
			struct timespec ts = { 0, 1000 * 1000 };

			nanosleep(&ts, NULL);
		}
	}
	return 0;
}

/* ---- MADV_COLLAPSE ------------------------------------------------------------------- */

/* After mmap_lock was dropped: the mm and a VMA that may still collapse at address. */
static enum scan_result hugepage_vma_revalidate(struct mm_struct *mm, uint64_t address,
						struct vm_area_struct **vmap)
{
	struct vm_area_struct *vma;

	if (!__atomic_load_n(&mm->mm_users, __ATOMIC_ACQUIRE))
		return SCAN_ANY_PROCESS;
	/* find_vma: a VMA above a hole fails as SCAN_ADDRESS_RANGE. */
	*vmap = vma = find_vma(mm, address);
	if (!vma)
		return SCAN_VMA_NULL;
	if (!transhuge_vma_suitable(vma, address))
		return SCAN_ADDRESS_RANGE;
	return hugepage_vma_check(vma, vma->vm_flags, false) ? SCAN_SUCCEED : SCAN_VMA_CHECK;
}

static int madvise_collapse_errno(enum scan_result r)
{
	switch (r) {
	case SCAN_ALLOC_HUGE_PAGE_FAIL:
		return -ENOMEM;
	case SCAN_EXCEED_NONE_PTE:
		return -EBUSY;
	case SCAN_PAGE_COUNT:
	case SCAN_PAGE_LOCK:
	case SCAN_PAGE_FILLED:
		return -EAGAIN;
	default:
		return -EINVAL;
	}
}

int madvise_collapse(struct vm_area_struct *vma, struct vm_area_struct **prev, uint64_t start,
		     uint64_t end)
{
	struct mm_struct *mm = vma->vm_mm;
	struct ptemu_machine *m = mm->machine;
	const struct ptemu_arch *a = m->arch;
	bool legacy = m->protocol == PTEMU_PROTOCOL_LEGACY, locked = true;
	const struct collapse_control cc = { .is_khugepaged = false };
	enum scan_result last_fail = SCAN_FAIL;
	uint64_t hsize = 1ull << a->pmd_leaf_shift, hstart, hend, thps = 0;

	*prev = vma;
	if (!vma->vm_file) {
		/* v6.6 collapses anonymous memory too (collapse_huge_page); the model does not. */
		ptemu_note_once(m, PTEMU_NOTE_ANON_COLLAPSE, "MADV_COLLAPSE of anonymous memory "
				"is not modelled: it returns -EINVAL\n");
		return -EINVAL;
	}
	if (!hugepage_vma_check(vma, vma->vm_flags, false))
		return -EINVAL;
	hstart = (start + hsize - 1) & ~(hsize - 1);
	hend = end & ~(hsize - 1);
	for (uint64_t addr = hstart; addr < hend; addr += hsize) {
		enum scan_result r;

		if (!locked) {
			down_read(&mm->mmap_lock);
			locked = true;
			r = hugepage_vma_revalidate(mm, addr, &vma);
			if (r != SCAN_SUCCEED) {
				last_fail = r;
				goto out_nolock;
			}
			if (hend > (vma->vm_end & ~(hsize - 1)))
				hend = vma->vm_end & ~(hsize - 1);
		}
		struct ptemu_file *f = vma->vm_file;
		uint64_t pgoff = vma->vm_pgoff + ((addr - vma->vm_start) >> a->page_shift);

		ptemu_file_get(f);
		up_read(&mm->mmap_lock);
		locked = false;
		*prev = NULL;	/* the walk must look its VMA up again */
		r = hpage_collapse_scan_file(mm, addr, f, pgoff, &cc);
		ptemu_file_put(f);
handle_result:
		switch (r) {
		case SCAN_SUCCEED:
		case SCAN_PMD_MAPPED:
			thps++;
			break;
		case SCAN_PTE_MAPPED_HUGEPAGE:
			/* The legacy protocol took mmap_lock for write here. */
			if (legacy)
				down_write(&mm->mmap_lock);
			else
				down_read(&mm->mmap_lock);
			r = collapse_pte_mapped_thp(mm, addr, true);
			if (legacy)
				up_write(&mm->mmap_lock);
			else
				up_read(&mm->mmap_lock);
			goto handle_result;
		/* The failures after which the next range is still worth a try. */
		case SCAN_PMD_NULL:
		case SCAN_PTE_NON_PRESENT:
		case SCAN_PAGE_NULL:
		case SCAN_PAGE_COUNT:
		case SCAN_PAGE_LOCK:
		case SCAN_PAGE_COMPOUND:
			last_fail = r;
			break;
		default:
			last_fail = r;
			goto out_maybelock;
		}
	}
out_maybelock:
	if (!locked)
		down_read(&mm->mmap_lock);
out_nolock:
	/* Unsigned, as the kernel's: a start rounded up past the end fails. */
	return thps == (hend - hstart) >> a->pmd_leaf_shift ? 0 : madvise_collapse_errno(last_fail);
}
