/* handle_mm_fault and friends in the v6.6 order (kernel-spec section 4): no sleeping
 * lock or allocation inside an RCU section or under a ptl; every pte_offset_map* may fail,
 * and a failure means "the table changed: let the access retry". */
#include <errno.h>
#include <string.h>

#include <ptemu/check.h>
#include <ptemu/fault.h>
#include <ptemu/inject.h>
#include <ptemu/file.h>
#include <ptemu/machine.h>
#include <ptemu/mm.h>
#include <ptemu/pgtable.h>
#include <ptemu/phys.h>
#include <ptemu/sched.h>

struct vm_fault {
	struct vm_area_struct *vma;
	struct mm_struct *mm;
	struct ptemu_machine *m;
	uint64_t address;	/* page aligned */
	unsigned flags;
	pmd_t *pmd;
	pte_t *pte;
	struct ptemu_spinlock *ptl;
	pte_t orig_pte;
	/* __do_fault's table, allocated before the folio lock while the pmd was none; what
	 * finish_fault or do_set_pmd leaves unused, do_fault frees. */
	uint64_t prealloc_pte;
};

static bool write_fault(const struct vm_fault *vmf)
{
	return vmf->flags & FAULT_FLAG_WRITE;
}

/* The leaf protection a VMA grants; a write fault maps dirty, as Linux maps it. */
static unsigned vma_leaf_flags(const struct vm_fault *vmf, bool writable)
{
	unsigned f = PTEMU_PTE_YOUNG;

	if (vmf->vma->vm_flags & VM_READ)
		f |= PTEMU_PROT_READ;
	if (vmf->vma->vm_flags & VM_EXEC)
		f |= PTEMU_PROT_EXEC;
	if (writable && (vmf->vma->vm_flags & VM_WRITE)) {
		f |= PTEMU_PROT_WRITE;
		if (write_fault(vmf))
			f |= PTEMU_PTE_DIRTY;
	}
	return f;
}

static uint64_t linear_page_index(const struct vm_area_struct *vma, uint64_t addr)
{
	return vma->vm_pgoff + ((addr - vma->vm_start) >> vma->vm_mm->machine->arch->page_shift);
}

/* A fresh anonymous page (private memory, or a COW copy); may sleep. */
static struct page *alloc_anon_page(struct ptemu_machine *m)
{
	uint64_t pfn;

	might_sleep("page allocation");
	pfn = phys_alloc_pages(m->phys, 0);
	if (!pfn)
		return NULL;
	SetPageFlag(pfn_to_page(m->phys, pfn), PG_anon);
	return pfn_to_page(m->phys, pfn);
}

/* update_mmu_cache after a PTE was installed or changed, still under its ptl. */
static void update_mmu_cache(struct vm_fault *vmf)
{
	const struct ptemu_arch *a = vmf->m->arch;

	if (a->update_mmu_cache)
		a->update_mmu_cache(vmf->vma, vmf->address, ptemu_slot_pa(vmf->m, vmf->pte));
}

static void *page_addr(struct ptemu_machine *m, const struct page *p)
{
	return phys_to_virt(m->phys, page_to_pfn(p) << m->arch->page_shift);
}

/* Maps `page` at vmf->address if the PTE is still none (or still orig_pte); the caller's
 * reference becomes the mapping's. Returns NOPAGE when the table went away or someone
 * else won: the access retries. */
static unsigned set_pte_if_unchanged(struct vm_fault *vmf, struct page *page, unsigned flags,
				     bool expect_none, enum mm_counter counter)
{
	const struct ptemu_arch *a = vmf->m->arch;
	struct ptemu_leaf leaf = { page_to_pfn(page), flags };

	vmf->pte = pte_offset_map_lock(vmf->mm, vmf->pmd, vmf->address, &vmf->ptl);
	if (!vmf->pte) {
		ptemu_stat_add(&vmf->m->stats, PTEMU_STAT_fault_retries, 1);
		return VM_FAULT_NOPAGE;
	}
	pte_t cur = ptep_get(vmf->pte);

	if (expect_none ? !a->pte_none(cur.val) : !pte_same(cur, vmf->orig_pte)) {
		pte_unmap_unlock(vmf->pte, vmf->ptl);
		return VM_FAULT_NOPAGE;
	}
	set_pte_at(vmf->mm, vmf->address, vmf->pte, __pte(a->mk_pte(leaf)));
	add_mm_counter(vmf->mm, counter, 1);
	__atomic_fetch_add(&page_folio(page)->mapcount, 1, __ATOMIC_RELAXED);
	update_mmu_cache(vmf);
	pte_unmap_unlock(vmf->pte, vmf->ptl);
	return 0;
}

static unsigned do_anonymous_page(struct vm_fault *vmf)
{
	struct page *page;
	unsigned ret;

	if (pmd_none(pmdp_get_lockless(vmf->pmd)) && __pte_alloc(vmf->mm, vmf->pmd))
		return VM_FAULT_OOM;
	page = alloc_anon_page(vmf->m);
	if (!page)
		return VM_FAULT_OOM;
	__atomic_store_n(&vmf->vma->anon_vma, true, __ATOMIC_RELAXED);	/* anon_vma_prepare: racing faults agree */
	ret = set_pte_if_unchanged(vmf, page, vma_leaf_flags(vmf, true), true, MM_ANONPAGES);
	if (ret)
		folio_put(page);
	return ret;
}

static bool folio_fits_pmd(const struct vm_fault *vmf, const struct page *folio)
{
	const struct ptemu_arch *a = vmf->m->arch;
	uint64_t pmd_pages = 1ull << (a->level_shift[ptemu_pmd_level(a)] - a->page_shift);
	uint64_t haddr = vmf->address & ~(ptemu_pmd_size(a) - 1);

	return a->pmd_leaf_shift && (1ull << folio->order) == pmd_pages &&
	       haddr >= vmf->vma->vm_start && haddr + ptemu_pmd_size(a) <= vmf->vma->vm_end &&
	       linear_page_index(vmf->vma, haddr) == folio->index;
}

/* update_mmu_cache_pmd after a huge pmd was installed or changed, under the pmd lock. */
static void update_mmu_cache_pmd(struct vm_fault *vmf, uint64_t addr)
{
	const struct ptemu_arch *a = vmf->m->arch;

	if (a->update_mmu_cache_pmd)
		a->update_mmu_cache_pmd(vmf->vma, addr, ptemu_slot_pa(vmf->m, vmf->pmd));
}

/* Maps a PMD-sized page-cache folio by one pmd if the pmd is still none. */
static unsigned do_set_pmd(struct vm_fault *vmf, struct page *folio, unsigned flags)
{
	const struct ptemu_arch *a = vmf->m->arch;
	uint64_t haddr = vmf->address & ~(ptemu_pmd_size(a) - 1);
	struct ptemu_leaf leaf = { folio_pfn(folio), flags };
	struct ptemu_spinlock *pml;
	unsigned ret = VM_FAULT_NOPAGE;

	/* arch_needs_pgtable_deposit: the table goes beside the huge pmd (hash keeps its
	 * HPTE slots there), allocated before the lock unless __do_fault did. The caller
	 * frees it if unused. */
	if (a->pgtable_deposit_offset && !vmf->prealloc_pte) {
		vmf->prealloc_pte = pte_alloc_one(vmf->mm);
		if (!vmf->prealloc_pte)
			return VM_FAULT_OOM;
	}
	pml = pmd_lock(vmf->mm, vmf->pmd);
	if (pmd_none(pmdp_get_lockless(vmf->pmd))) {
		if (a->pgtable_deposit_offset) {
			/* deposit_prealloc_pte, before the pmd is visible to hash_page */
			pgtable_trans_huge_deposit(vmf->mm, ptemu_slot_pa(vmf->m, vmf->pmd), vmf->prealloc_pte);
			mm_inc_pgtables(vmf->mm, a->pte_table_bytes);
			vmf->prealloc_pte = 0;
		}
		set_pmd_at(vmf->mm, haddr, vmf->pmd, __pmd(a->mk_pmd_leaf(leaf)));
		add_mm_counter(vmf->mm, PageFlag(folio, PG_swapbacked) ? MM_SHMEMPAGES : MM_FILEPAGES,
			       1ll << folio->order);
		__atomic_fetch_add(&folio->mapcount, 1, __ATOMIC_RELAXED);
		folio_get(folio);
		update_mmu_cache_pmd(vmf, haddr);
		ret = 0;
	}
	spin_unlock(pml);
	return ret;
}

/* What finish_fault and do_set_pmd left of __do_fault's table. */
static void free_unused_prealloc_pte(struct vm_fault *vmf)
{
	if (vmf->prealloc_pte) {
		pte_free(vmf->mm, vmf->prealloc_pte);
		vmf->prealloc_pte = 0;
	}
}

/* finish_fault's table for a none pmd: __do_fault's (pmd_install), else a new one. */
static int install_fault_table(struct vm_fault *vmf)
{
	if (!vmf->prealloc_pte)
		return __pte_alloc(vmf->mm, vmf->pmd);
	pmd_install(vmf->mm, vmf->pmd, &vmf->prealloc_pte);
	return 0;
}

int set_huge_pmd(struct vm_area_struct *vma, uint64_t haddr, pmd_t *pmd, struct page *folio)
{
	struct vm_fault vmf = {
		.vma = vma, .mm = vma->vm_mm, .m = vma->vm_mm->machine, .address = haddr, .pmd = pmd,
	};
	struct ptemu_file *f = folio->mapping;

	if (!folio_fits_pmd(&vmf, folio))
		return -1;
	unsigned ret = do_set_pmd(&vmf, folio, vma_leaf_flags(&vmf, (vma->vm_flags & VM_SHARED) && f->shmem));

	free_unused_prealloc_pte(&vmf);
	return ret ? -1 : 0;
}

/* finish_fault with the folio locked: by PMD when it fits and the pmd is none, else one
 * PTE; pte_offset_map_lock returning NULL means the table vanished: retry. */
static unsigned finish_fault(struct vm_fault *vmf, struct page *folio, uint64_t index)
{
	struct ptemu_file *f = folio->mapping;
	bool writable = (vmf->vma->vm_flags & VM_SHARED) && f->shmem;
	unsigned flags = vma_leaf_flags(vmf, writable);
	struct page *page = pfn_to_page(vmf->m->phys, folio_pfn(folio) + (index - folio->index));

	if (pmd_none(pmdp_get_lockless(vmf->pmd))) {
		if (folio_fits_pmd(vmf, folio))
			return do_set_pmd(vmf, folio, flags);
		if (install_fault_table(vmf))
			return VM_FAULT_OOM;
	}
	folio_get(folio);
	unsigned ret = set_pte_if_unchanged(vmf, page, flags, true,
					    f->shmem ? MM_SHMEMPAGES : MM_FILEPAGES);
	if (ret)
		folio_put(folio);
	return ret;
}

static unsigned do_fault(struct vm_fault *vmf)
{
	struct vm_area_struct *vma = vmf->vma;
	uint64_t index = linear_page_index(vma, vmf->address);
	int err = 0;
	unsigned ret;

	/* __do_fault: the table before any page lock (kernel-spec 4.3). It is what brings a
	 * fault's allocation close to a retract's deferred free: a none pmd is what a retract
	 * leaves. */
	if (pmd_none(pmdp_get_lockless(vmf->pmd))) {
		vmf->prealloc_pte = pte_alloc_one(vmf->mm);
		if (!vmf->prealloc_pte)
			return VM_FAULT_OOM;
	}
	struct page *folio = filemap_get_folio_locked(vma->vm_file, index, &err);

	if (!folio) {
		free_unused_prealloc_pte(vmf);
		return err == -ENOMEM ? VM_FAULT_OOM : VM_FAULT_SIGBUS;
	}
	if (write_fault(vmf) && !(vma->vm_flags & VM_SHARED)) {
		/* do_cow_fault: a private copy, mapped as anonymous memory. */
		struct page *copy = alloc_anon_page(vmf->m);

		if (!copy) {
			ret = VM_FAULT_OOM;
		} else {
			memcpy(page_addr(vmf->m, copy),
			       page_addr(vmf->m, pfn_to_page(vmf->m->phys,
							     folio_pfn(folio) + (index - folio->index))),
			       ptemu_page_size(vmf->m->arch));
			__atomic_store_n(&vma->anon_vma, true, __ATOMIC_RELAXED);
			if (pmd_none(pmdp_get_lockless(vmf->pmd)) && install_fault_table(vmf))
				ret = VM_FAULT_OOM;
			else
				ret = set_pte_if_unchanged(vmf, copy, vma_leaf_flags(vmf, true), true,
							   MM_ANONPAGES);
			if (ret)
				folio_put(copy);
		}
	} else {
		ret = finish_fault(vmf, folio, index);
	}
	folio_unlock(folio);
	folio_put(folio);
	free_unused_prealloc_pte(vmf);
	return ret;
}

/* A write to a present, not-writable PTE: shared mappings become writable and dirty; a
 * private page-cache page is copied (COW); an anonymous page is ours alone (no fork). */
static unsigned do_wp_page(struct vm_fault *vmf)
{
	const struct ptemu_arch *a = vmf->m->arch;
	struct ptemu_leaf leaf = a->pte_leaf(vmf->orig_pte.val);
	struct page *folio = page_folio(pfn_to_page(vmf->m->phys, leaf.pfn));
	struct page *copy;
	unsigned ret;

	if ((vmf->vma->vm_flags & VM_SHARED) || PageFlag(folio, PG_anon)) {
		leaf.flags |= PTEMU_PROT_WRITE | PTEMU_PTE_DIRTY | PTEMU_PTE_YOUNG;
		/* wp_page_reuse: ptep_set_access_flags */
		set_pte_at(vmf->mm, vmf->address, vmf->pte, __pte(a->mk_pte(leaf)));
		if (a->access_fixup_flushes_tlb)
			flush_tlb_page(vmf->mm, vmf->address);
		update_mmu_cache(vmf);
		pte_unmap_unlock(vmf->pte, vmf->ptl);
		return 0;
	}
	/* Allocation may sleep: drop ptl and RCU first, re-check with pte_same after. */
	pte_unmap_unlock(vmf->pte, vmf->ptl);
	copy = alloc_anon_page(vmf->m);
	if (!copy)
		return VM_FAULT_OOM;
	memcpy(page_addr(vmf->m, copy), page_addr(vmf->m, pfn_to_page(vmf->m->phys, leaf.pfn)),
	       ptemu_page_size(a));
	__atomic_store_n(&vmf->vma->anon_vma, true, __ATOMIC_RELAXED);	/* anon_vma_prepare: racing faults agree */
	vmf->pte = pte_offset_map_lock(vmf->mm, vmf->pmd, vmf->address, &vmf->ptl);
	if (!vmf->pte) {
		folio_put(copy);
		return VM_FAULT_NOPAGE;
	}
	if (!pte_same(ptep_get(vmf->pte), vmf->orig_pte)) {
		pte_unmap_unlock(vmf->pte, vmf->ptl);
		folio_put(copy);
		return VM_FAULT_NOPAGE;
	}
	/* ptep_clear_flush, then the new page: no CPU may keep the old translation. */
	ptep_get_and_clear(vmf->mm, vmf->address, vmf->pte);
	flush_tlb_page(vmf->mm, vmf->address);
	add_mm_counter(vmf->mm, PageFlag(folio, PG_swapbacked) ? MM_SHMEMPAGES : MM_FILEPAGES, -1);
	__atomic_fetch_sub(&folio->mapcount, 1, __ATOMIC_RELAXED);
	struct ptemu_leaf nl = { page_to_pfn(copy), vma_leaf_flags(vmf, true) };

	set_pte_at(vmf->mm, vmf->address, vmf->pte, __pte(a->mk_pte(nl)));
	add_mm_counter(vmf->mm, MM_ANONPAGES, 1);
	__atomic_fetch_add(&copy->mapcount, 1, __ATOMIC_RELAXED);
	update_mmu_cache(vmf);
	pte_unmap_unlock(vmf->pte, vmf->ptl);
	folio_put(folio);	/* the old mapping's reference */
	ret = 0;
	return ret;
}

static unsigned handle_pte_fault(struct vm_fault *vmf)
{
	const struct ptemu_arch *a = vmf->m->arch;
	pmd_t pmdval = pmdp_get_lockless(vmf->pmd);

	if (pmd_none(pmdval)) {
		vmf->pte = NULL;
	} else {
		uint64_t table = 0;
		bool was_table = pmd_kind(pmdval, &table) == PTEMU_ENTRY_TABLE;

		ptemu_sched_point_window(table);	/* the pmd seen, the table not yet mapped */
		vmf->pte = pte_offset_map_nolock(vmf->mm, vmf->pmd, vmf->address, &vmf->ptl);
		if (!vmf->pte) {
			/* Retracted (or turned huge) between our read and the map: retry. */
			if (was_table)
				ptemu_note_map_failed_after_table(vmf->m);
			ptemu_stat_add(&vmf->m->stats, PTEMU_STAT_fault_retries, 1);
			return 0;
		}
		ptemu_sched_point_window(table);	/* mapped without the lock */
		vmf->orig_pte = ptep_get(vmf->pte);
		if (a->pte_none(vmf->orig_pte.val)) {
			if (!ptemu_injected(vmf->m, INJECT_SKIP_PTE_UNMAP))
				pte_unmap(vmf->pte);
			vmf->pte = NULL;
		}
	}
	if (!vmf->pte)
		return vmf->vma->vm_file ? do_fault(vmf) : do_anonymous_page(vmf);
	if (!a->pte_present(vmf->orig_pte.val)) {
		pte_unmap(vmf->pte);
		return VM_FAULT_SIGBUS;	/* swap and migration entries are not modelled */
	}
	spin_lock(vmf->ptl);
	/* The pte_same re-check protects this table too: a detached table is all none. */
	if (!pte_same(ptep_get(vmf->pte), vmf->orig_pte)) {
		pte_unmap_unlock(vmf->pte, vmf->ptl);
		return 0;
	}
	struct ptemu_leaf leaf = a->pte_leaf(vmf->orig_pte.val);

	if (write_fault(vmf)) {
		if (!(leaf.flags & PTEMU_PROT_WRITE))
			return do_wp_page(vmf);
		leaf.flags |= PTEMU_PTE_DIRTY;
	}
	/* ptep_set_access_flags: young (and dirty). A change is the emulated access/dirty
	 * fix-up (the models without hardware young and dirty bits take one per first access
	 * and first write) and goes to update_mmu_cache; no change was a spurious fault. */
	leaf.flags |= PTEMU_PTE_YOUNG;
	pte_t entry = __pte(a->mk_pte(leaf));

	if (!pte_same(entry, vmf->orig_pte)) {
		set_pte_at(vmf->mm, vmf->address, vmf->pte, entry);
		if (a->pte_update_asserts_locked)
			assert_pte_locked(vmf->mm, vmf->address);
		ptemu_stat_add(&vmf->m->stats, PTEMU_STAT_access_fixups, 1);
		if (a->access_fixup_flushes_tlb)
			flush_tlb_page(vmf->mm, vmf->address);
		update_mmu_cache(vmf);
	}
	pte_unmap_unlock(vmf->pte, vmf->ptl);
	return 0;
}

/* A fault on a huge pmd: mark it young/dirty, or drop it to refault by PTEs when a
 * private mapping is written (file THPs are not split; COW happens per page). */
static unsigned do_huge_pmd_fault(struct vm_fault *vmf)
{
	const struct ptemu_arch *a = vmf->m->arch;
	struct ptemu_spinlock *pml = pmd_lock(vmf->mm, vmf->pmd);
	pmd_t v = pmdp_get_lockless(vmf->pmd);

	if (pmd_trans_huge(v)) {
		struct ptemu_leaf leaf = a->pmd_leaf(v.val);

		leaf.flags |= PTEMU_PTE_YOUNG;
		if (write_fault(vmf)) {
			if (!(vmf->vma->vm_flags & VM_SHARED)) {
				spin_unlock(pml);
				zap_page_range_single(vmf->vma, vmf->address & ~(ptemu_pmd_size(a) - 1),
						      (vmf->address & ~(ptemu_pmd_size(a) - 1)) +
							      ptemu_pmd_size(a));
				return 0;
			}
			leaf.flags |= PTEMU_PROT_WRITE | PTEMU_PTE_DIRTY;
		}
		/* pmdp_set_access_flags: only a change is stored (and flushed). */
		pmd_t entry = __pmd(a->mk_pmd_leaf(leaf));

		if (entry.val != v.val) {
			set_pmd_at(vmf->mm, vmf->address, vmf->pmd, entry);
			update_mmu_cache_pmd(vmf, vmf->address);
		}
	}
	spin_unlock(pml);
	return 0;
}

unsigned handle_mm_fault(struct vm_area_struct *vma, uint64_t addr, unsigned flags)
{
	struct mm_struct *mm = vma->vm_mm;
	struct vm_fault vmf = {
		.vma = vma,
		.mm = mm,
		.m = mm->machine,
		.address = addr & ~(ptemu_page_size(mm->machine->arch) - 1),
		.flags = flags,
	};

	vmf.pmd = pmd_alloc_path(mm, addr);
	if (!vmf.pmd)
		return VM_FAULT_OOM;
	if (pmd_trans_huge(pmdp_get_lockless(vmf.pmd)))
		return do_huge_pmd_fault(&vmf);
	return handle_pte_fault(&vmf);
}

unsigned ptemu_user_fault(struct mm_struct *mm, uint64_t addr, unsigned flags)
{
	struct vm_area_struct *vma;
	unsigned ret;

	unsigned read_flags = mm->machine->arch->read_fault_vm_flags ? mm->machine->arch->read_fault_vm_flags
								     : VM_READ;

	down_read(&mm->mmap_lock);
	vma = vma_lookup(mm, addr);
	if (!vma || ((flags & FAULT_FLAG_WRITE) && !(vma->vm_flags & VM_WRITE)) ||
	    ((flags & FAULT_FLAG_INSTRUCTION) && !(vma->vm_flags & VM_EXEC)) ||
	    (!(flags & (FAULT_FLAG_WRITE | FAULT_FLAG_INSTRUCTION)) && !(vma->vm_flags & read_flags)))
		ret = VM_FAULT_SIGSEGV;
	else
		ret = handle_mm_fault(vma, addr, flags);
	up_read(&mm->mmap_lock);
	if (mm->machine->arch->fault_epilogue && !(ret & VM_FAULT_ERROR))
		mm->machine->arch->fault_epilogue(mm);
	ptemu_stat_add(&mm->machine->stats, PTEMU_STAT_faults, 1);
	return ret;
}
