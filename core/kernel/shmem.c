/* shmem: truncation and hole punching (truncate racing faults and, later, collapse). */
#include <errno.h>
#include <string.h>

#include <ptemu/file.h>
#include <ptemu/machine.h>
#include <ptemu/mm.h>
#include <ptemu/phys.h>

/* unmap_mapping_range: zap every mapping of pages [first, last] of the file. */
static void unmap_mapping_range(struct ptemu_file *f, uint64_t first, uint64_t last)
{
	const struct ptemu_arch *a = f->machine->arch;

	down_read(&f->i_mmap_rwsem);
	for (size_t i = 0; i < f->nr_i_mmap; i++) {
		struct vm_area_struct *vma = f->i_mmap[i];
		uint64_t vfirst = vma->vm_pgoff;
		uint64_t vlast = vfirst + ((vma->vm_end - vma->vm_start) >> a->page_shift) - 1;
		uint64_t lo = first > vfirst ? first : vfirst;
		uint64_t hi = last < vlast ? last : vlast;

		if (lo > hi)
			continue;
		zap_page_range_single(vma, vma->vm_start + ((lo - vfirst) << a->page_shift),
				      vma->vm_start + ((hi - vfirst + 1) << a->page_shift));
	}
	up_read(&f->i_mmap_rwsem);
}

/* split_folio of a locked huge page-cache folio (the caller's reference held): unmap it
 * everywhere (for file pages the kernel's split of a PMD mapping is a zap), then, when
 * only the cache and the caller hold it, make each page an order-0 folio of its own in the
 * cache. A faulter holding a reference while it waits for the lock makes it fail, as
 * can_split_folio does. */
static bool split_folio(struct ptemu_file *f, struct page *folio)
{
	uint64_t nr = 1ull << folio->order, start = folio->index;
	uint64_t pfn = folio_pfn(folio);
	uint32_t keep = __atomic_load_n(&folio->flags, __ATOMIC_RELAXED) &
			(1u << PG_uptodate | 1u << PG_dirty | 1u << PG_swapbacked);

	unmap_mapping_range(f, start, start + nr - 1);
	/* Under the cache lock, as folio_ref_freeze: a lookup takes its reference there. */
	spin_lock(&f->i_pages_lock);
	if (__atomic_load_n(&folio->refcount, __ATOMIC_ACQUIRE) != (int32_t)nr + 1 ||
	    __atomic_load_n(&folio->mapcount, __ATOMIC_ACQUIRE)) {
		spin_unlock(&f->i_pages_lock);
		return false;
	}
	phys_split_pages(folio->phys, pfn, folio->order);
	for (uint64_t i = 0; i < nr; i++) {
		struct page *p = pfn_to_page(folio->phys, pfn + i);

		if (i) {
			p->refcount = 1;	/* the cache's */
			__atomic_fetch_or(&p->flags, keep, __ATOMIC_RELEASE);
		}
		p->mapping = f;
		p->index = start + i;
		f->i_pages[start + i] = p;
	}
	folio->refcount = 2;	/* the cache's and the caller's */
	spin_unlock(&f->i_pages_lock);
	return true;
}

/* Drops pages [first, last] from the cache. A huge folio only partly inside is split
 * (truncate_inode_partial_folio), and its pages inside dropped; when it cannot be split,
 * it keeps its place and has the part zeroed. */
static void truncate_inode_pages_range(struct ptemu_file *f, uint64_t first, uint64_t last)
{
	const struct ptemu_arch *a = f->machine->arch;

	for (uint64_t index = first; index <= last && index < f->max_pages;) {
		struct page *folio = filemap_get_folio(f, index);

		if (!folio) {
			index++;
			continue;
		}
		folio_lock(folio);
		uint64_t nr = 1ull << folio->order;
		uint64_t start = folio->index, end = folio->index + nr - 1;

		if (folio->mapping != f) {
			/* Removed or replaced (a collapse committed) while we waited for the
			 * lock: look at the index again, as shmem_undo_range rescans. */
			folio_unlock(folio);
			folio_put(folio);
			continue;
		} else if (start >= first && end <= last) {
			/* truncate_cleanup_folio: unmapped under its lock before it leaves the
			 * cache, or a mapping made since the caller's unmap would outlive it (and
			 * a collapse could commit over the hole and retract a non-empty table). */
			if (__atomic_load_n(&folio->mapcount, __ATOMIC_ACQUIRE))
				unmap_mapping_range(f, start, end);
			spin_lock(&f->i_pages_lock);
			for (uint64_t i = start; i <= end; i++)
				f->i_pages[i] = NULL;
			spin_unlock(&f->i_pages_lock);
			folio->mapping = NULL;
			for (uint64_t i = 0; i < nr; i++)
				folio_put(folio);	/* the cache's references */
		} else if (split_folio(f, folio)) {
			/* Now order 0: the loop drops the pages inside one by one. */
			folio_unlock(folio);
			folio_put(folio);
			index = start > first ? start : first;
			continue;
		} else {
			uint64_t lo = first > start ? first : start;
			uint64_t hi = last < end ? last : end;
			uint8_t *base = phys_to_virt(folio->phys, folio_pfn(folio) << a->page_shift);

			memset(base + ((lo - start) << a->page_shift), 0, (hi - lo + 1) << a->page_shift);
		}
		index = end + 1;
		folio_unlock(folio);
		folio_put(folio);
	}
}

int shmem_truncate(struct ptemu_file *f, uint64_t size)
{
	const struct ptemu_arch *a = f->machine->arch;
	uint64_t psize = ptemu_page_size(a);
	uint64_t old = ptemu_file_size(f);

	if (!f->shmem)
		return -EINVAL;
	if (size % psize || size > f->max_pages * psize)
		return -EINVAL;
	__atomic_store_n(&f->size, size, __ATOMIC_RELEASE);
	if (size < old) {
		/* As shmem_setattr: unmap, drop the cache, then unmap again for racing faults. */
		unmap_mapping_range(f, size / psize, old / psize - 1);
		truncate_inode_pages_range(f, size / psize, old / psize - 1);
		unmap_mapping_range(f, size / psize, old / psize - 1);
	}
	return 0;
}

int shmem_punch_hole(struct ptemu_file *f, uint64_t offset, uint64_t len)
{
	uint64_t psize = ptemu_page_size(f->machine->arch);

	if (!f->shmem)
		return -EINVAL;
	if (offset % psize || len % psize || !len || offset + len < offset)
		return -EINVAL;
	uint64_t first = offset / psize, last = (offset + len) / psize - 1;

	if (last >= f->max_pages)
		last = f->max_pages - 1;
	if (first > last)
		return 0;
	unmap_mapping_range(f, first, last);
	truncate_inode_pages_range(f, first, last);
	unmap_mapping_range(f, first, last);
	return 0;
}
