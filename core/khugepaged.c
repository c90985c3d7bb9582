/* collapse_file and the lockless retract_page_tables of v6.6 (kernel-spec 3.2, 3.3). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <ptemu/check.h>
#include <ptemu/file.h>
#include <ptemu/inject.h>
#include <ptemu/khugepaged.h>
#include <ptemu/machine.h>
#include <ptemu/mm.h>
#include <ptemu/pgtable.h>
#include <ptemu/phys.h>

#include "internal.h"

const char *scan_result_name(enum scan_result r)
{
	static const char *const names[] = {
		"SCAN_FAIL", "SCAN_SUCCEED", "SCAN_PMD_NULL", "SCAN_PMD_NONE", "SCAN_PMD_MAPPED",
		"SCAN_PTE_MAPPED_HUGEPAGE", "SCAN_PAGE_LOCK", "SCAN_PAGE_COUNT", "SCAN_PAGE_COMPOUND",
		"SCAN_TRUNCATED", "SCAN_ALLOC_HUGE_PAGE_FAIL",
	};
	return r <= SCAN_ALLOC_HUGE_PAGE_FAIL ? names[r] : "?";
}

static unsigned hpage_order(const struct ptemu_arch *a)
{
	return a->pmd_leaf_shift - a->page_shift;
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

/* The address at which a VMA maps file index `pgoff`, or 0 when it does not. */
static uint64_t vma_address(const struct vm_area_struct *vma, uint64_t pgoff)
{
	unsigned shift = vma->vm_mm->machine->arch->page_shift;

	if (pgoff < vma->vm_pgoff)
		return 0;
	uint64_t addr = vma->vm_start + ((pgoff - vma->vm_pgoff) << shift);

	return addr < vma->vm_end ? addr : 0;
}

void retract_page_tables(struct ptemu_file *f, uint64_t pgoff)
{
	struct ptemu_machine *m = f->machine;
	const struct ptemu_arch *a = m->arch;
	uint64_t hsize = 1ull << a->pmd_leaf_shift;

	down_read(&f->i_mmap_rwsem);
	for (size_t i = 0; i < f->nr_i_mmap; i++) {
		struct vm_area_struct *vma = f->i_mmap[i];
		struct mm_struct *mm = vma->vm_mm;
		struct ptemu_spinlock *pml, *ptl;
		uint64_t addr = vma_address(vma, pgoff), table;
		pmd_t *pmd, pmdval;
		bool retracted = false;

		/* Written-to private mappings hold anon pages and would split again. */
		if (!addr || __atomic_load_n(&vma->anon_vma, __ATOMIC_RELAXED) || (addr & (hsize - 1)) ||
		    vma->vm_end < addr + hsize ||
		    find_pmd_or_thp_or_none(mm, addr, &pmd) != SCAN_SUCCEED ||
		    !__atomic_load_n(&mm->mm_users, __ATOMIC_ACQUIRE)) {
			ptemu_stat_add(&m->stats, PTEMU_STAT_retract_skips, 1);
			continue;
		}
		pml = pmd_lock(mm, pmd);
		pmdval = pmdp_get_lockless(pmd);
		/* Still a table under pml (what 6.14's check_pmd_state re-checks). */
		if (pmd_kind(pmdval, &table) == PTEMU_ENTRY_TABLE) {
			ptl = pte_lockptr(mm, &pmdval);
			if (ptl != pml)
				spin_lock_nested(ptl);
			if (!__atomic_load_n(&vma->anon_vma, __ATOMIC_RELAXED)) {
				pmdp_collapse_flush(mm, addr, pmd);
				retracted = true;
			}
			if (ptl != pml)
				spin_unlock(ptl);
		}
		spin_unlock(pml);
		if (retracted) {
			mm_inc_pgtables(mm, -(int64_t)a->pte_table_bytes);
			if (ptemu_injected(m, INJECT_FREE_IMMEDIATELY))
				pte_free(mm, table);	/* the bug pte_free_defer exists to prevent */
			else
				pte_free_defer(mm, table);
			ptemu_stat_add(&m->stats, PTEMU_STAT_retracts, 1);
		} else {
			ptemu_stat_add(&m->stats, PTEMU_STAT_retract_skips, 1);
		}
	}
	up_read(&f->i_mmap_rwsem);
}

/* try_to_unmap of one page-cache page: clear every PTE mapping it, in every mm. The TLB
 * flush is the caller's, once, before the contents are copied. */
static void try_to_unmap(struct ptemu_file *f, struct page *page, uint64_t index)
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
		pte = pte_offset_map_lock(mm, pmd, addr, &ptl);
		if (!pte)
			continue;	/* page_vma_mapped_walk: not mapped at this pmd */
		pte_t v = ptep_get(pte);

		if (a->pte_present(v.val) && a->pte_leaf(v.val).pfn == pfn) {
			ptep_get_and_clear(mm, addr, pte);
			add_mm_counter(mm, f->shmem ? MM_SHMEMPAGES : MM_FILEPAGES, -1);
			__atomic_fetch_sub(&page->mapcount, 1, __ATOMIC_RELAXED);
			__atomic_fetch_sub(&page->refcount, 1, __ATOMIC_RELAXED);	/* the mapping's */
		}
		pte_unmap_unlock(pte, ptl);
	}
	up_read(&f->i_mmap_rwsem);
}

/* try_to_unmap_flush: every mm mapping the range drops its translations. */
static void try_to_unmap_flush(struct ptemu_file *f, uint64_t start, uint64_t nr)
{
	unsigned shift = f->machine->arch->page_shift;

	down_read(&f->i_mmap_rwsem);
	for (size_t i = 0; i < f->nr_i_mmap; i++) {
		struct vm_area_struct *vma = f->i_mmap[i];
		uint64_t lo = start > vma->vm_pgoff ? start : vma->vm_pgoff;
		uint64_t vend = vma->vm_pgoff + ((vma->vm_end - vma->vm_start) >> shift);
		uint64_t hi = start + nr < vend ? start + nr : vend;

		if (lo < hi)
			flush_tlb_range(vma->vm_mm, vma->vm_start + ((lo - vma->vm_pgoff) << shift),
					vma->vm_start + ((hi - vma->vm_pgoff) << shift), false);
	}
	up_read(&f->i_mmap_rwsem);
}

enum scan_result collapse_file(struct ptemu_file *f, uint64_t start)
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

		if (!folio) {
			/* A shmem hole is zero-filled; a regular file must be read in first. */
			if (f->shmem)
				nr_none++;
			else
				result = SCAN_FAIL;
			continue;
		}
		if (folio->order) {
			result = folio->order == order && folio->index == start ? SCAN_PTE_MAPPED_HUGEPAGE
										: SCAN_PAGE_COMPOUND;
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
		for (uint64_t i = 0; i < nr; i++)
			if (pages[i] && __atomic_load_n(&pages[i]->mapcount, __ATOMIC_RELAXED))
				try_to_unmap(f, pages[i], start + i);
		/* Completed before the copy: no CPU may write an old page after it. */
		try_to_unmap_flush(f, start, nr);
		for (uint64_t i = 0; i < nr; i++)
			if (pages[i] && __atomic_load_n(&pages[i]->refcount, __ATOMIC_ACQUIRE) != 2)
				result = SCAN_PAGE_COUNT;	/* the cache's and ours, nothing else */
	}
	if (result != SCAN_SUCCEED) {
		/* Rollback: the page cache still holds the old pages; unmapped PTEs refault. */
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
			result = SCAN_FAIL;
	if (result == SCAN_SUCCEED)
		for (uint64_t i = 0; i < nr; i++)
			f->i_pages[start + i] = hpage;
	spin_unlock(&f->i_pages_lock);
	if (result != SCAN_SUCCEED) {
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
	__atomic_fetch_add(&hpage->refcount, (int32_t)nr, __ATOMIC_RELEASE);	/* the cache's */
	SetPageFlag(hpage, PG_uptodate);
	if (f->shmem)
		SetPageFlag(hpage, PG_dirty);

	retract_page_tables(f, start);
	ptemu_stat_add(&m->stats, PTEMU_STAT_collapses, 1);

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
	return SCAN_SUCCEED;
}
