/* Address spaces: VMAs, the memory system calls, zap and free_pgtables, exit_mmap, and
 * the audit of the RSS and page-table counters. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <ptemu/check.h>
#include <ptemu/file.h>
#include <ptemu/khugepaged.h>
#include <ptemu/machine.h>
#include <ptemu/mm.h>
#include <ptemu/mmu_gather.h>
#include <ptemu/pgtable.h>
#include <ptemu/phys.h>
#include <ptemu/sched.h>

#include "workloads/include/ptemu_abi.h"
#include "internal.h"

static int next_mm_id;

struct mm_struct *mm_alloc(struct ptemu_machine *m)
{
	struct mm_struct *mm = calloc(1, sizeof(*mm));
	const struct ptemu_arch *a = m->arch;

	if (!mm)
		return NULL;
	mm->machine = m;
	mm->pgd_pa = ptemu_upper_table_alloc(m, 0);
	if (!mm->pgd_pa) {
		free(mm);
		return NULL;
	}
	mm->id = __atomic_fetch_add(&next_mm_id, 1, __ATOMIC_RELAXED);
	ptemu_rwsem_init(&mm->mmap_lock, LOCK_CLASS_MMAP);
	ptemu_spin_init(&mm->page_table_lock, LOCK_CLASS_PML);
	ptemu_spin_init(&mm->context.lock, LOCK_CLASS_PGTABLE_LIST);
	INIT_LIST_HEAD(&mm->context.pgtable_list);
	mm->pgtables_bytes = a->table_bytes[0];
	mm->mm_users = 1;
	mm->mm_count = 1;	/* mm_users' */
	/* mmap hands out addresses top-down below the top of a 32-bit-safe window. */
	mm->mmap_base = 0x10000000ull;
	mm->mmap_top = a->va_bits > 32 ? 1ull << (a->va_bits - 1) : 0xa0000000ull;
	if (mm->mmap_top >= ptemu_task_size(a))
		mm->mmap_top = ptemu_task_size(a) / 2;	/* below sparc64's VA hole */
	if (a->init_new_context && a->init_new_context(mm)) {
		ptemu_upper_table_free(m, mm->pgd_pa, 0);
		free(mm);
		return NULL;
	}
	return mm;
}

/* Index of the first VMA ending above addr. */
static size_t vma_index_after(const struct mm_struct *mm, uint64_t addr)
{
	size_t lo = 0, hi = mm->nr_vmas;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (mm->vmas[mid]->vm_end <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

struct vm_area_struct *find_vma(struct mm_struct *mm, uint64_t addr)
{
	size_t i = vma_index_after(mm, addr);

	return i < mm->nr_vmas ? mm->vmas[i] : NULL;
}

struct vm_area_struct *vma_lookup(struct mm_struct *mm, uint64_t addr)
{
	struct vm_area_struct *vma = find_vma(mm, addr);

	return vma && vma->vm_start <= addr ? vma : NULL;
}

static int vma_insert(struct mm_struct *mm, struct vm_area_struct *vma)
{
	if (mm->nr_vmas == mm->cap_vmas) {
		size_t cap = mm->cap_vmas ? 2 * mm->cap_vmas : 16;
		struct vm_area_struct **n = realloc(mm->vmas, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		mm->vmas = n;
		mm->cap_vmas = cap;
	}
	size_t i = vma_index_after(mm, vma->vm_start);

	memmove(&mm->vmas[i + 1], &mm->vmas[i], (mm->nr_vmas - i) * sizeof(mm->vmas[0]));
	mm->vmas[i] = vma;
	mm->nr_vmas++;
	return 0;
}

static void vma_remove_at(struct mm_struct *mm, size_t i)
{
	memmove(&mm->vmas[i], &mm->vmas[i + 1], (mm->nr_vmas - i - 1) * sizeof(mm->vmas[0]));
	mm->nr_vmas--;
}

static void split_huge_pmd_if_needed(struct vm_area_struct *vma, uint64_t address);

/* Splits vma at addr (strictly inside it): the upper part becomes a new VMA. Bounds and
 * i_mmap change under i_mmap_rwsem held for write (vma_prepare), and a huge pmd across the
 * new boundary goes first (vma_adjust_trans_huge). */
static int split_vma(struct mm_struct *mm, struct vm_area_struct *vma, uint64_t addr)
{
	struct vm_area_struct *upper = malloc(sizeof(*upper));
	struct ptemu_file *f = vma->vm_file;
	int err;

	if (!upper)
		return -ENOMEM;
	*upper = *vma;
	upper->vm_start = addr;
	upper->vm_pgoff += (addr - vma->vm_start) >> mm->machine->arch->page_shift;
	if (f) {
		ptemu_file_get(f);
		down_write(&f->i_mmap_rwsem);
	}
	split_huge_pmd_if_needed(vma, addr);
	vma->vm_end = addr;
	err = vma_insert(mm, upper);
	if (err)
		vma->vm_end = upper->vm_end;
	else if (f)
		__vma_link_file(upper);
	if (f)
		up_write(&f->i_mmap_rwsem);
	if (err) {
		if (f)
			ptemu_file_put(f);
		free(upper);
	}
	return err;
}

/* Makes [start, end) a union of whole VMAs. */
static int split_at_bounds(struct mm_struct *mm, uint64_t start, uint64_t end)
{
	struct vm_area_struct *v = vma_lookup(mm, start);
	int err = 0;

	if (v && v->vm_start < start)
		err = split_vma(mm, v, start);
	v = vma_lookup(mm, end - 1);
	if (!err && v && v->vm_end > end)
		err = split_vma(mm, v, end);
	return err;
}

static void vma_free(struct vm_area_struct *vma);

/* vma_merge's test: next goes on where prev ends, with the same flags and the same object
 * at the next offset. */
static bool vma_mergeable(const struct mm_struct *mm, const struct vm_area_struct *prev,
			  const struct vm_area_struct *next)
{
	unsigned shift = mm->machine->arch->page_shift;

	return prev->vm_end == next->vm_start && prev->vm_flags == next->vm_flags &&
	       prev->vm_file == next->vm_file &&
	       prev->vm_pgoff + ((prev->vm_end - prev->vm_start) >> shift) == next->vm_pgoff;
}

/* vma_merge removing next: vmas[i] takes in vmas[i + 1] (under i_mmap_rwsem for write, so
 * that retract and try_to_unmap never see the two overlap). */
static void vma_merge_next(struct mm_struct *mm, size_t i)
{
	struct vm_area_struct *prev = mm->vmas[i], *next = mm->vmas[i + 1];
	struct ptemu_file *f = prev->vm_file;

	if (f)
		down_write(&f->i_mmap_rwsem);
	prev->vm_end = next->vm_end;
	if (__atomic_load_n(&next->anon_vma, __ATOMIC_RELAXED))
		__atomic_store_n(&prev->anon_vma, true, __ATOMIC_RELAXED);
	if (f) {
		__unlink_file_vma(next);
		up_write(&f->i_mmap_rwsem);
	}
	vma_remove_at(mm, i + 1);
	vma_free(next);
}

/* The VMA work of mprotect_fixup and madvise_update_vma: [start, end) of vma gets
 * newflags, split off at its ends, then merged with its neighbours when they are alike
 * again. Returns the VMA now holding the range, or NULL with *err. Caller holds mmap_lock
 * for write. */
static struct vm_area_struct *vma_modify_flags(struct mm_struct *mm, struct vm_area_struct *vma,
					       uint64_t start, uint64_t end, unsigned newflags,
					       int *err)
{
	size_t i;

	if (vma->vm_flags == newflags)
		return vma;
	*err = split_at_bounds(mm, start, end);
	if (*err)
		return NULL;
	vma = vma_lookup(mm, start);
	vma->vm_flags = newflags;
	i = vma_index_after(mm, start);
	if (i + 1 < mm->nr_vmas && vma_mergeable(mm, vma, mm->vmas[i + 1]))
		vma_merge_next(mm, i);
	if (i > 0 && vma_mergeable(mm, mm->vmas[i - 1], vma)) {
		vma_merge_next(mm, i - 1);
		vma = mm->vmas[i - 1];
	}
	return vma;
}

/* From the folio's flags, not its mapping: a truncated folio keeps its kind. */
static enum mm_counter folio_counter(const struct page *folio)
{
	if (PageFlag(folio, PG_anon))
		return MM_ANONPAGES;
	return PageFlag(folio, PG_swapbacked) ? MM_SHMEMPAGES : MM_FILEPAGES;
}

/* ---- zap --------------------------------------------------------------------------- */

static struct page *pte_folio(const struct ptemu_machine *m, uint64_t pte, uint64_t *pfn)
{
	*pfn = m->arch->pte_leaf(pte).pfn;
	return page_folio(pfn_to_page(m->phys, *pfn));
}

/* 6.14's free_pte: the table a reclaim detached goes through the gather, freed once walk
 * caches forgot it and after a grace period. */
static void free_pte(struct mmu_gather *tlb, pmd_t pmdval, uint64_t addr)
{
	struct mm_struct *mm = tlb->mm;
	uint64_t table = 0;

	pmd_kind(pmdval, &table);
	mm_inc_pgtables(mm, -(int64_t)mm->machine->arch->pte_table_bytes);
	pte_free_tlb(tlb, table, addr);
	ptemu_stat_add(&mm->machine->stats, PTEMU_STAT_tables_reclaimed, 1);
}

/* 6.14's try_to_free_pte (mm/pt_reclaim.c), when the zap could not take the pmd lock while
 * it held the ptl: the table is detached only if every entry is still none, checked under
 * the pmd lock and the ptl, since a fault may have filled one after the zap. */
static void try_to_free_pte(struct mmu_gather *tlb, pmd_t *pmd, uint64_t addr)
{
	struct mm_struct *mm = tlb->mm;
	const struct ptemu_arch *a = mm->machine->arch;
	unsigned n = ptemu_ptes_per_table(a);
	struct ptemu_spinlock *pml = pmd_lock(mm, pmd), *ptl = NULL;
	pmd_t pmdval;
	/* pte_offset_map_rw_nolock: the pmd's value with the map, stable under pml. */
	pte_t *pte = __pte_offset_map(pmd, addr, &pmdval);
	bool empty = pte != NULL;

	if (pte)
		ptl = pte_lockptr(mm, &pmdval);

	if (pte && ptl != pml)
		spin_lock_nested(ptl);
	for (unsigned i = 0; empty && i < n; i++)
		empty = a->pte_none(ptep_get(ptep_add(pte, i)).val);
	if (pte)
		pte_unmap(pte);
	if (empty)
		pmd_clear(pmd);
	if (pte && ptl != pml)
		spin_unlock(ptl);
	spin_unlock(pml);
	if (empty)
		free_pte(tlb, pmdval, addr);
}

/* Returns false when the table went away under us: the caller redoes the pmd.
 * reclaim_pt (6.14's reclaim_pt_is_enabled): MADV_DONTNEED with reclaim_empty_tables over
 * the table's whole PMD range. The zap skips no entry, so the table is then empty: it is
 * detached at once if the pmd lock can be taken under the ptl (try_get_and_clear_pmd),
 * else after the ptl by try_to_free_pte. */
static bool zap_pte_range(struct mmu_gather *tlb, struct vm_area_struct *vma, pmd_t *pmd,
			  uint64_t addr, uint64_t end, bool reclaim_pt)
{
	struct mm_struct *mm = vma->vm_mm;
	struct ptemu_machine *m = mm->machine;
	const struct ptemu_arch *a = m->arch;
	struct ptemu_spinlock *ptl, *pml;
	uint64_t start = addr;
	pte_t *pte = pte_offset_map_lock(mm, pmd, addr, &ptl);
	pte_t *first = pte;
	pmd_t pmdval;
	bool direct_reclaim = false;

	if (!pte)
		return false;
	flush_tlb_batched_pending(mm);
	arch_enter_lazy_mmu_mode(mm);
	for (; addr < end; addr += ptemu_page_size(a), pte = ptep_add(pte, 1)) {
		pte_t v = ptep_get(pte);
		uint64_t pfn;

		if (a->pte_none(v.val))
			continue;
		v = ptep_get_and_clear(mm, addr, pte);
		if (!a->pte_present(v.val))
			continue;
		struct page *folio = pte_folio(m, v.val, &pfn);

		add_mm_counter(mm, folio_counter(folio), -1);
		__atomic_fetch_sub(&folio->mapcount, 1, __ATOMIC_RELAXED);
		tlb_flush_range_add(tlb, addr, ptemu_page_size(a));
		tlb_remove_page(tlb, folio);
	}
	arch_leave_lazy_mmu_mode(mm);
	if (reclaim_pt) {
		pml = pmd_lockptr(mm, pmd);
		/* A trylock of a lock we hold (no split pmd lock) fails, as the kernel's. */
		direct_reclaim = pml != ptl && spin_trylock(pml);
		if (direct_reclaim) {
			pmdval = pmdp_get_lockless(pmd);
			pmd_clear(pmd);
			spin_unlock(pml);
		}
	}
	pte_unmap_unlock(first, ptl);
	if (direct_reclaim)
		free_pte(tlb, pmdval, start);
	else if (reclaim_pt)
		try_to_free_pte(tlb, pmd, start);
	return true;
}

/* A huge pmd: a whole-range zap clears it; a partial one too (file THPs are not split:
 * the rest refaults by PTEs). HUGE -> NONE is legal without the table's ptl. */
static void zap_huge_pmd(struct mmu_gather *tlb, struct vm_area_struct *vma, pmd_t *pmd,
			 uint64_t addr)
{
	struct mm_struct *mm = vma->vm_mm;
	struct ptemu_machine *m = mm->machine;
	const struct ptemu_arch *a = m->arch;
	struct ptemu_spinlock *pml = pmd_lock(mm, pmd);
	pmd_t v = pmdp_get_lockless(pmd);

	if (pmd_trans_huge(v)) {
		struct page *folio = page_folio(pfn_to_page(m->phys, a->pmd_leaf(v.val).pfn));

		set_pmd_at(mm, addr, pmd, __pmd(a->none_entry(ptemu_pmd_level(a))));
		if (a->pgtable_deposit_offset) {
			/* zap_deposited_table: freed at once, never having been attached */
			pte_free(mm, pgtable_trans_huge_withdraw(mm, ptemu_slot_pa(m, pmd)));
			mm_inc_pgtables(mm, -(int64_t)a->pte_table_bytes);
		}
		add_mm_counter(mm, folio_counter(folio), -(int64_t)(1ull << folio->order));
		__atomic_fetch_sub(&folio->mapcount, 1, __ATOMIC_RELAXED);
		/* Cleared whole, so flushed whole (tlb_remove_pmd_tlb_entry). */
		tlb_flush_range_add(tlb, addr & ~(ptemu_pmd_size(a) - 1), ptemu_pmd_size(a));
		tlb_remove_page(tlb, folio);
	}
	spin_unlock(pml);
}

/* unmap_page_range into the caller's gather. reclaim_pt: MADV_DONTNEED with
 * reclaim_empty_tables (6.14's zap_details.reclaim_pt). */
static void zap_range(struct mmu_gather *tlb, struct vm_area_struct *vma, uint64_t start,
		      uint64_t end, bool reclaim_pt)
{
	struct mm_struct *mm = vma->vm_mm;
	const struct ptemu_arch *a = mm->machine->arch;
	uint64_t pmd_size = ptemu_pmd_size(a), table;

	for (uint64_t addr = start; addr < end;) {
		uint64_t next = (addr & ~(pmd_size - 1)) + pmd_size;
		pmd_t *pmd = mm_find_pmd(mm, addr);

		if (next > end)
			next = end;
		if (!pmd) {
			addr = next;
			continue;
		}
		switch (pmd_kind(pmdp_get_lockless(pmd), &table)) {
		case PTEMU_ENTRY_LEAF:
			zap_huge_pmd(tlb, vma, pmd, addr);
			break;
		case PTEMU_ENTRY_TABLE:
			ptemu_sched_point_window(table);	/* the pmd seen, the table not yet mapped */
			/* A failed map means the table was retracted: look at the pmd again. */
			if (!zap_pte_range(tlb, vma, pmd, addr, next, reclaim_pt && next - addr >= pmd_size)) {
				ptemu_note_map_failed_after_table(mm->machine);
				continue;
			}
			break;
		default:
			break;
		}
		addr = next;
	}
}

static void zap_vma_range(struct vm_area_struct *vma, uint64_t start, uint64_t end, bool reclaim_pt)
{
	struct mmu_gather tlb;

	tlb_gather_mmu(&tlb, vma->vm_mm);
	zap_range(&tlb, vma, start, end, reclaim_pt);
	tlb_finish_mmu(&tlb);
}

void zap_page_range_single(struct vm_area_struct *vma, uint64_t start, uint64_t end)
{
	zap_vma_range(vma, start, end, false);
}

/* split_huge_pmd_address at a new VMA boundary (vma_adjust_trans_huge): a huge pmd that
 * maps across it would keep one protection for both sides. The model's huge pmds all map
 * page-cache folios, and __split_huge_pmd_locked zaps those: the range refaults by PTEs.
 * mmap_lock held for write keeps faults out, so the pmd can only go from huge to none
 * (truncation) meanwhile, which the zap re-checks under the pmd lock. */
static void split_huge_pmd_if_needed(struct vm_area_struct *vma, uint64_t address)
{
	uint64_t pmd_size = ptemu_pmd_size(vma->vm_mm->machine->arch);
	uint64_t haddr = address & ~(pmd_size - 1);
	pmd_t *pmd;

	if (address == haddr || haddr < vma->vm_start || haddr + pmd_size > vma->vm_end)
		return;
	pmd = mm_find_pmd(vma->vm_mm, address);
	if (pmd && pmd_trans_huge(pmdp_get_lockless(pmd)))
		zap_page_range_single(vma, haddr, haddr + pmd_size);
}

/* free_pgtables for [start, end) after its VMAs are gone: a PTE table goes when no VMA is
 * left anywhere in its pmd range (the floor/ceiling rule). */
static void free_pte_tables(struct mmu_gather *tlb, uint64_t start, uint64_t end)
{
	struct mm_struct *mm = tlb->mm;
	struct ptemu_machine *m = mm->machine;
	const struct ptemu_arch *a = m->arch;
	uint64_t pmd_size = ptemu_pmd_size(a);

	for (uint64_t p = start & ~(pmd_size - 1); p < end; p += pmd_size) {
		size_t i = vma_index_after(mm, p);
		uint64_t table;

		if (i < mm->nr_vmas && mm->vmas[i]->vm_start < p + pmd_size)
			continue;
		pmd_t *pmd = mm_find_pmd(mm, p);

		if (!pmd)
			continue;
		struct ptemu_spinlock *pml = pmd_lock(mm, pmd);

		if (pmd_kind(pmdp_get_lockless(pmd), &table) != PTEMU_ENTRY_TABLE) {
			spin_unlock(pml);
			continue;
		}
		pmd_clear(pmd);
		mm_inc_pgtables(mm, -(int64_t)a->pte_table_bytes);
		spin_unlock(pml);
		/* Freed once walk caches forgot it (freed_tables: not a last-level flush). */
		pte_free_tlb(tlb, table, p);
	}
}

static void vma_free(struct vm_area_struct *vma)
{
	if (vma->vm_file)
		ptemu_file_put(vma->vm_file);
	free(vma);
}

/* Caller holds mmap_lock for write. */
static int munmap_locked(struct mm_struct *mm, uint64_t start, uint64_t end)
{
	int err = split_at_bounds(mm, start, end);
	struct mmu_gather tlb;

	if (err)
		return err;
	size_t i = vma_index_after(mm, start);

	/* unmap_region: one gather for the zap and free_pgtables. */
	tlb_gather_mmu(&tlb, mm);
	while (i < mm->nr_vmas && mm->vmas[i]->vm_start < end) {
		struct vm_area_struct *vma = mm->vmas[i];

		/* Unlinked first, so that retract (i_mmap only) can no longer reach it. */
		if (vma->vm_file)
			unlink_file_vma(vma);
		zap_range(&tlb, vma, vma->vm_start, vma->vm_end, false);
		vma_remove_at(mm, i);
		vma_free(vma);
	}
	free_pte_tables(&tlb, start, end);
	tlb_finish_mmu(&tlb);
	return 0;
}

static bool range_ok(const struct mm_struct *mm, uint64_t start, uint64_t len)
{
	const struct ptemu_arch *a = mm->machine->arch;

	return len && !(start & (ptemu_page_size(a) - 1)) && start + len > start &&
	       start + len <= ptemu_task_size(a);
}

static uint64_t page_align(const struct mm_struct *mm, uint64_t len)
{
	uint64_t p = ptemu_page_size(mm->machine->arch);

	return (len + p - 1) & ~(p - 1);
}

int do_munmap(struct mm_struct *mm, uint64_t start, uint64_t len)
{
	int err;

	len = page_align(mm, len);
	if (!range_ok(mm, start, len))
		return -EINVAL;
	down_write(&mm->mmap_lock);
	err = munmap_locked(mm, start, start + len);
	up_write(&mm->mmap_lock);
	return err;
}

/* Top-down search for a hole of len bytes; THP-sized requests are aligned so that file
 * offsets and addresses agree modulo the PMD size (thp_get_unmapped_area). */
static uint64_t get_unmapped_area(struct mm_struct *mm, uint64_t len, uint64_t pgoff)
{
	const struct ptemu_arch *a = mm->machine->arch;
	uint64_t align = len >= ptemu_pmd_size(a) ? ptemu_pmd_size(a) : ptemu_page_size(a);
	uint64_t skew = (pgoff << a->page_shift) & (align - 1);
	uint64_t top = mm->mmap_top;

	for (size_t i = mm->nr_vmas + 1; i-- > 0;) {
		uint64_t hole_lo = i ? mm->vmas[i - 1]->vm_end : mm->mmap_base;
		uint64_t hole_hi = i < mm->nr_vmas ? mm->vmas[i]->vm_start : top;

		if (hole_hi > top)
			hole_hi = top;
		if (hole_hi < len + hole_lo)
			continue;
		uint64_t addr = ((hole_hi - len) & ~(align - 1)) + skew;

		if (addr + len > hole_hi)
			addr -= align;
		if (addr >= hole_lo && addr + len <= hole_hi && addr >= mm->mmap_base)
			return addr;
	}
	return 0;
}

int64_t do_mmap(struct mm_struct *mm, uint64_t addr, uint64_t len, unsigned prot, unsigned flags,
		struct ptemu_file *file, uint64_t offset)
{
	const struct ptemu_arch *a = mm->machine->arch;
	bool shared = flags & PTEMU_MAP_SHARED;
	struct vm_area_struct *vma;
	int err;

	len = page_align(mm, len);
	if (!len || (shared == !!(flags & PTEMU_MAP_PRIVATE)) || (prot & ~7u))
		return -EINVAL;
	if (offset & (ptemu_page_size(a) - 1))
		return -EINVAL;
	if (!!(flags & PTEMU_MAP_ANONYMOUS) == !!file)
		return -EINVAL;
	if (file && !file->shmem && shared && (prot & PTEMU_PROT_WRITE))
		return -EACCES;	/* regular files are read-only */
	vma = calloc(1, sizeof(*vma));
	if (!vma)
		return -ENOMEM;
	vma->vm_flags = (prot & 7u) | (shared ? VM_SHARED : 0);
	vma->vm_file = file;
	vma->vm_pgoff = offset >> a->page_shift;
	vma->vm_mm = mm;
	/* Shared anonymous memory is shmem in Linux too: give it its own object. */
	if (!file && shared) {
		vma->vm_file = ptemu_file_create(mm->machine, 0, true, len, len);
		if (!vma->vm_file) {
			free(vma);
			return -ENOMEM;
		}
		vma->vm_pgoff = 0;
	} else if (file) {
		ptemu_file_get(file);
	}
	down_write(&mm->mmap_lock);
	if (flags & PTEMU_MAP_FIXED) {
		if (!range_ok(mm, addr, len)) {
			err = -EINVAL;
			goto fail;
		}
		err = munmap_locked(mm, addr, addr + len);
		if (err)
			goto fail;
	} else {
		addr = get_unmapped_area(mm, len, vma->vm_pgoff);
		if (!addr) {
			err = -ENOMEM;
			goto fail;
		}
	}
	vma->vm_start = addr;
	vma->vm_end = addr + len;
	err = vma_insert(mm, vma);
	if (err)
		goto fail;
	if (vma->vm_file)
		vma_link_file(vma);
	up_write(&mm->mmap_lock);
	return (int64_t)addr;
fail:
	up_write(&mm->mmap_lock);
	vma_free(vma);
	return err;
}

/* change_protection for one VMA: present entries take the VMA's read and exec rights
 * (pte_modify); write stays only where it was and is still allowed, so that a clean page
 * still takes its write fault. */
static unsigned modify_leaf_flags(unsigned flags, unsigned vm_flags)
{
	unsigned keep_write = (vm_flags & VM_WRITE) ? (flags & PTEMU_PROT_WRITE) : 0;

	flags &= ~(unsigned)(PTEMU_PROT_READ | PTEMU_PROT_WRITE | PTEMU_PROT_EXEC);
	return flags | keep_write | ((vm_flags & VM_READ) ? PTEMU_PROT_READ : 0) |
	       ((vm_flags & VM_EXEC) ? PTEMU_PROT_EXEC : 0);
}

/* [start, end) of vma: a huge pmd there lies wholly inside, since VMA boundaries split
 * the ones across them. */
static void change_protection(struct vm_area_struct *vma, uint64_t start, uint64_t end)
{
	struct mm_struct *mm = vma->vm_mm;
	struct ptemu_machine *m = mm->machine;
	const struct ptemu_arch *a = m->arch;
	uint64_t pmd_size = ptemu_pmd_size(a);

	for (uint64_t addr = start; addr < end;) {
		uint64_t next = (addr & ~(pmd_size - 1)) + pmd_size;
		pmd_t *pmd = mm_find_pmd(mm, addr);
		struct ptemu_spinlock *ptl;

		if (next > end)
			next = end;
		if (!pmd) {
			addr = next;
			continue;
		}
		pmd_t v = pmdp_get_lockless(pmd);

		if (pmd_trans_huge(v)) {
			struct ptemu_spinlock *pml = pmd_lock(mm, pmd);

			v = pmdp_get_lockless(pmd);
			if (pmd_trans_huge(v)) {
				struct ptemu_leaf l = a->pmd_leaf(v.val);

				l.flags = modify_leaf_flags(l.flags, vma->vm_flags);
				set_pmd_at(mm, addr, pmd, __pmd(a->mk_pmd_leaf(l)));
			}
			spin_unlock(pml);
			addr = next;
			continue;
		}
		if (pmd_kind(v, NULL) != PTEMU_ENTRY_TABLE) {
			addr = next;
			continue;
		}
		pte_t *pte = pte_offset_map_lock(mm, pmd, addr, &ptl);

		if (!pte) {
			ptemu_note_map_failed_after_table(m);
			continue;	/* -EAGAIN in the kernel: redo this pmd */
		}
		flush_tlb_batched_pending(mm);
		arch_enter_lazy_mmu_mode(mm);
		pte_t *first = pte;

		for (; addr < next; addr += ptemu_page_size(a), pte = ptep_add(pte, 1)) {
			pte_t e = ptep_get(pte);

			if (!a->pte_present(e.val))
				continue;
			struct ptemu_leaf l = a->pte_leaf(e.val);
			unsigned nf = modify_leaf_flags(l.flags, vma->vm_flags);

			if (nf == l.flags)
				continue;
			l.flags = nf;
			set_pte_at(mm, addr, pte, __pte(a->mk_pte(l)));
		}
		arch_leave_lazy_mmu_mode(mm);
		pte_unmap_unlock(first, ptl);
	}
	/* tlb_finish_mmu of a gather that freed no table: last-level only. */
	__flush_tlb_range(mm, start, end, true);
}

/* do_mprotect_pkey: VMA by VMA from start; a hole ends it with -ENOMEM, a refused VMA
 * with -EACCES, and what was changed before stays changed. */
int do_mprotect(struct mm_struct *mm, uint64_t start, uint64_t len, unsigned prot)
{
	uint64_t end, nstart;
	int err = 0;

	if (start & (ptemu_page_size(mm->machine->arch) - 1))
		return -EINVAL;
	if (!len)
		return 0;
	len = page_align(mm, len);
	if (!range_ok(mm, start, len) || (prot & ~7u))
		return -EINVAL;
	end = start + len;
	down_write(&mm->mmap_lock);
	for (nstart = start; nstart < end;) {
		struct vm_area_struct *v = vma_lookup(mm, nstart);
		uint64_t tmp;
		unsigned newflags;

		if (!v) {
			err = -ENOMEM;
			break;
		}
		/* No VM_MAYWRITE: regular files are read-only. */
		if ((prot & PTEMU_PROT_WRITE) && (v->vm_flags & VM_SHARED) && v->vm_file &&
		    !v->vm_file->shmem) {
			err = -EACCES;
			break;
		}
		tmp = v->vm_end < end ? v->vm_end : end;
		newflags = (v->vm_flags & ~7u) | prot;
		if (newflags != v->vm_flags) {
			v = vma_modify_flags(mm, v, nstart, tmp, newflags, &err);
			if (!v)
				break;
			change_protection(v, nstart, tmp);
		}
		nstart = v->vm_end;
	}
	up_write(&mm->mmap_lock);
	return err;
}

/* One VMA's part [start, end) of an madvise. *prev: the VMA holding the range after, or
 * NULL when mmap_lock was dropped. */
static int madvise_vma_behavior(struct vm_area_struct *vma, struct vm_area_struct **prev,
				uint64_t start, uint64_t end, int advice)
{
	struct mm_struct *mm = vma->vm_mm;
	unsigned newflags = vma->vm_flags;
	int err = 0;

	*prev = vma;
	switch (advice) {
	case PTEMU_MADV_DONTNEED:
		zap_vma_range(vma, start, end, mm->machine->features.reclaim_empty_tables);
		return 0;
	case PTEMU_MADV_COLLAPSE:
		return madvise_collapse(vma, prev, start, end);
	default:
		hugepage_madvise(vma, &newflags, advice);
		*prev = vma_modify_flags(mm, vma, start, end, newflags, &err);
		return err;
	}
}

/* madvise_walk_vmas: every VMA part of [start, end); unmapped parts are skipped and make
 * the result -ENOMEM, a VMA's error ends the walk. */
static int madvise_walk_vmas(struct mm_struct *mm, uint64_t start, uint64_t end, int advice)
{
	int unmapped_error = 0;

	for (;;) {
		size_t i = vma_index_after(mm, start);
		struct vm_area_struct *vma, *prev;
		uint64_t tmp;
		int err;

		if (i == mm->nr_vmas)
			return -ENOMEM;
		vma = mm->vmas[i];
		if (start < vma->vm_start) {
			unmapped_error = -ENOMEM;
			start = vma->vm_start;
			if (start >= end)
				break;
		}
		tmp = vma->vm_end < end ? vma->vm_end : end;
		err = madvise_vma_behavior(vma, &prev, start, tmp, advice);
		if (err)
			return err;
		start = tmp;
		if (prev && start < prev->vm_end)
			start = prev->vm_end;
		if (start >= end)
			break;
	}
	return unmapped_error;
}

int do_madvise(struct mm_struct *mm, uint64_t start, uint64_t len_in, int advice)
{
	uint64_t len = page_align(mm, len_in), end = start + len;
	bool write = advice == PTEMU_MADV_HUGEPAGE || advice == PTEMU_MADV_NOHUGEPAGE;
	int err;

	if (!write && advice != PTEMU_MADV_DONTNEED && advice != PTEMU_MADV_COLLAPSE)
		return -EINVAL;
	/* madvise_behavior_valid knows the THP advice only with CONFIG_TRANSPARENT_HUGEPAGE. */
	if (advice != PTEMU_MADV_DONTNEED && !mm->machine->arch->pmd_leaf_shift)
		return -EINVAL;
	if ((start & (ptemu_page_size(mm->machine->arch) - 1)) || (len_in && !len) || end < start)
		return -EINVAL;
	if (end == start)
		return 0;
	/* Read for all but the VMA flag changes: DONTNEED races faults and retract. */
	if (write)
		down_write(&mm->mmap_lock);
	else
		down_read(&mm->mmap_lock);
	err = madvise_walk_vmas(mm, start, end, advice);
	if (write)
		up_write(&mm->mmap_lock);
	else
		up_read(&mm->mmap_lock);
	return err;
}

/* ---- teardown ---------------------------------------------------------------------- */

/* free_pgtables at exit: nothing else can reach these tables any more (kernel-spec 1.8),
 * so they are cleared without ptl. PTE tables go through the exit's gather, as every
 * table the kernel frees; upper tables are freed at once (no walker is left to cache
 * them: every vCPU of the mm has stopped). */
static void free_level(struct mmu_gather *tlb, uint64_t table, unsigned level)
{
	struct mm_struct *mm = tlb->mm;
	struct ptemu_machine *m = mm->machine;
	const struct ptemu_arch *a = m->arch;
	unsigned n = a->table_bytes[level] / ptemu_entry_size(a, level);

	for (unsigned i = 0; i < n; i++) {
		uint64_t slot = table + (uint64_t)i * ptemu_entry_size(a, level);
		uint64_t next;

		if (a->classify(level, ptemu_entry_load(m, slot), &next) != PTEMU_ENTRY_TABLE)
			continue;
		if (level == ptemu_pmd_level(a)) {
			pmd_clear(ptemu_slot_ptr(m, slot));
			mm_inc_pgtables(mm, -(int64_t)a->pte_table_bytes);
			pte_free_tlb(tlb, next, 0);	/* fullmm: the range is not used */
			continue;
		}
		free_level(tlb, next, level + 1);
		ptemu_entry_store(m, slot, a->none_entry(level));
		mm_inc_pgtables(mm, -(int64_t)a->table_bytes[level + 1]);
		ptemu_upper_table_free(m, next, level + 1);
	}
}

/* exit_mmap (v6.6): unmap_vmas zaps every VMA under mmap_lock for read; then, under it
 * for write, free_pgtables unlinks each file VMA from its i_mmap before freeing the
 * tables. Until that unlink a retract, which holds only i_mmap_rwsem for read, still
 * reaches the VMAs: it can race the zap, and the unlink waits for it. audit: the
 * counters are checked once the mm is out of every i_mmap, before its tables go. */
static void teardown_mm(struct mm_struct *mm, bool audit)
{
	struct ptemu_machine *m = mm->machine;
	struct mmu_gather tlb;

	/* khugepaged's hpage_collapse_test_exit sees this before anything is torn down. */
	__atomic_store_n(&mm->mm_users, 0, __ATOMIC_RELEASE);
	khugepaged_exit(mm);
	down_read(&mm->mmap_lock);
	if (m->arch->arch_exit_mmap)
		m->arch->arch_exit_mmap(mm);
	tlb_gather_mmu_fullmm(&tlb, mm);
	for (size_t i = 0; i < mm->nr_vmas; i++)
		zap_range(&tlb, mm->vmas[i], mm->vmas[i]->vm_start, mm->vmas[i]->vm_end, false);
	up_read(&mm->mmap_lock);

	down_write(&mm->mmap_lock);
	for (size_t i = 0; i < mm->nr_vmas; i++)
		if (mm->vmas[i]->vm_file)
			unlink_file_vma(mm->vmas[i]);
	if (audit)
		mm_audit_counters(mm);
	/* Every vCPU of the mm has stopped: walk caches are flushed with the tables
	 * (flush_tlb_mm, the fullmm tlb_flush of a gather that freed tables). */
	free_level(&tlb, mm->pgd_pa, 0);
	tlb_finish_mmu(&tlb);
	for (size_t i = 0; i < mm->nr_vmas; i++)
		vma_free(mm->vmas[i]);
	mm->nr_vmas = 0;	/* a khugepaged still holding the struct finds nothing */
	if (m->arch->mm_destroy_context)
		m->arch->mm_destroy_context(mm);
	ptemu_upper_table_free(m, mm->pgd_pa, 0);
	mm->pgd_pa = 0;
	up_write(&mm->mmap_lock);
	mmdrop(mm);
}

void exit_mmap(struct mm_struct *mm)
{
	teardown_mm(mm, true);
}

void mm_destroy(struct mm_struct *mm)
{
	teardown_mm(mm, false);
}

void mmgrab(struct mm_struct *mm)
{
	__atomic_fetch_add(&mm->mm_count, 1, __ATOMIC_RELAXED);
}

void mmdrop(struct mm_struct *mm)
{
	if (__atomic_sub_fetch(&mm->mm_count, 1, __ATOMIC_ACQ_REL))
		return;
	ptemu_rwsem_destroy(&mm->mmap_lock);
	free(mm->vmas);
	free(mm);
}

/* ---- audit ------------------------------------------------------------------------- */

struct audit {
	int64_t rss[NR_MM_COUNTERS];
	int64_t table_bytes;
};

static void audit_level(struct mm_struct *mm, uint64_t table, unsigned level, struct audit *au)
{
	struct ptemu_machine *m = mm->machine;
	const struct ptemu_arch *a = m->arch;
	bool pte_level = level == ptemu_pte_level(a);
	unsigned n = pte_level ? ptemu_ptes_per_table(a) : a->table_bytes[level] / ptemu_entry_size(a, level);

	au->table_bytes += pte_level ? a->pte_table_bytes : a->table_bytes[level];
	for (unsigned i = 0; i < n; i++) {
		uint64_t e = ptemu_table_entry_load(m, table, level, i), next;

		if (pte_level) {
			if (a->pte_present(e)) {
				uint64_t pfn;

				au->rss[folio_counter(pte_folio(m, e, &pfn))]++;
			}
			continue;
		}
		switch (a->classify(level, e, &next)) {
		case PTEMU_ENTRY_TABLE:
			audit_level(mm, next, level + 1, au);
			break;
		case PTEMU_ENTRY_LEAF:
			if (level == ptemu_pmd_level(a)) {
				struct page *f = page_folio(pfn_to_page(m->phys, a->pmd_leaf(e).pfn));

				au->rss[folio_counter(f)] += 1ll << f->order;
				if (a->pgtable_deposit_offset)	/* mm_inc_nr_ptes at the deposit */
					au->table_bytes += a->pte_table_bytes;
			}
			break;
		default:
			break;
		}
	}
}

void mm_audit_counters(struct mm_struct *mm)
{
	static const char *const names[] = { "MM_FILEPAGES", "MM_ANONPAGES", "MM_SHMEMPAGES" };
	struct audit au = { { 0 }, 0 };

	audit_level(mm, mm->pgd_pa, 0, &au);
	for (int c = 0; c < NR_MM_COUNTERS; c++)
		if (au.rss[c] != get_mm_counter(mm, (enum mm_counter)c))
			ptemu_report(mm->machine, VIOLATION_COUNTER_MISMATCH, 0,
				     "mm %d: %s is %" PRId64 " but the tables map %" PRId64, mm->id,
				     names[c], get_mm_counter(mm, (enum mm_counter)c), au.rss[c]);
	if (au.table_bytes != mm_pgtables_bytes(mm))
		ptemu_report(mm->machine, VIOLATION_COUNTER_MISMATCH, 0,
			     "mm %d: pgtables_bytes is %" PRId64 " but %" PRId64 " bytes of tables are attached",
			     mm->id, mm_pgtables_bytes(mm), au.table_bytes);
}
