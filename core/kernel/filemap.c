/* Files, the page cache and folios. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <ptemu/check.h>
#include <ptemu/file.h>
#include <ptemu/machine.h>
#include <ptemu/mm.h>
#include <ptemu/phys.h>
#include <ptemu/sched.h>

#include "workloads/include/ptemu_abi.h"
#include "internal.h"

/* Waiters for folio locks sleep on a hashed queue, as the kernel's folio_wait_table. */
#define WAIT_BUCKETS 64
static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
} wait_table[WAIT_BUCKETS] = {
#define W PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER
#define W4 { W }, { W }, { W }, { W }
#define W16 W4, W4, W4, W4
	W16, W16, W16, W16
#undef W16
#undef W4
#undef W
};

static unsigned wait_bucket(const struct page *folio)
{
	return (unsigned)(((uintptr_t)folio >> 6) % WAIT_BUCKETS);
}

/* The one held-lock entry that stands for all of a thread's folio locks. */
static const int folio_lock_class_token;

static void folio_lock_acquired(void)
{
	struct ptemu_thread *t = ptemu_current();

	if (t && t->folios_held++ == 0)
		ptemu_lock_acquired(&folio_lock_class_token, LOCK_CLASS_FOLIO, true, true);
}

static void folio_lock_released(void)
{
	struct ptemu_thread *t = ptemu_current();

	if (t && --t->folios_held == 0)
		ptemu_lock_released(&folio_lock_class_token);
}

static bool test_and_set_locked(struct page *folio)
{
	return __atomic_fetch_or(&folio->flags, 1u << PG_locked, __ATOMIC_ACQUIRE) & (1u << PG_locked);
}

void folio_lock(struct page *folio)
{
	unsigned b = wait_bucket(folio);

	ptemu_sched_point();
	/* Another folio lock may be held already (same class): only a trylock may nest. */
	ptemu_lock_acquire_check(&folio_lock_class_token, LOCK_CLASS_FOLIO, true, false);
	if (ptemu_sched_scheduled()) {
		while (test_and_set_locked(folio))
			ptemu_sched_block(folio, "a folio lock");
	} else if (test_and_set_locked(folio)) {
		pthread_mutex_lock(&wait_table[b].lock);
		while (test_and_set_locked(folio))
			pthread_cond_wait(&wait_table[b].cond, &wait_table[b].lock);
		pthread_mutex_unlock(&wait_table[b].lock);
	}
	folio_lock_acquired();
}

bool folio_trylock(struct page *folio)
{
	if (test_and_set_locked(folio))
		return false;
	folio_lock_acquired();
	return true;
}

void folio_unlock(struct page *folio)
{
	unsigned b = wait_bucket(folio);

	folio_lock_released();
	pthread_mutex_lock(&wait_table[b].lock);
	ClearPageFlag(folio, PG_locked);
	pthread_cond_broadcast(&wait_table[b].cond);
	pthread_mutex_unlock(&wait_table[b].lock);
	ptemu_sched_wake(folio);
}

bool folio_test_locked(const struct page *folio)
{
	return PageFlag(folio, PG_locked);
}

void folio_get(struct page *folio)
{
	__atomic_fetch_add(&folio->refcount, 1, __ATOMIC_RELAXED);
}

unsigned folio_order(const struct page *folio)
{
	return folio->order;
}

uint64_t folio_pfn(const struct page *folio)
{
	return page_to_pfn(folio);
}

struct page *page_folio(struct page *page)
{
	uint64_t pfn = page_to_pfn(page);

	/* Heads are aligned to their order: search down for a PG_head covering pfn. */
	for (unsigned o = 0; o <= phys_max_order(page->phys); o++) {
		struct page *h = pfn_to_page(page->phys, pfn & ~((1ull << o) - 1));

		if (PageFlag(h, PG_head) && h->order >= o)
			return h;
	}
	return page;
}

void folio_put(struct page *folio)
{
	struct ptemu_machine *m = phys_machine(folio->phys);
	uint64_t nr = 1ull << folio->order;

	if (__atomic_sub_fetch(&folio->refcount, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	if (m->tlb.pages_freed)
		m->tlb.pages_freed(m->tlb.ctx, folio_pfn(folio), nr);
	folio->mapping = NULL;
	phys_free_pages(folio->phys, folio_pfn(folio), folio->order);
}

/* ---- files ---------------------------------------------------------------------------- */

struct ptemu_file *ptemu_file_create(struct ptemu_machine *m, uint64_t key, bool shmem,
				     uint64_t size, uint64_t max_size)
{
	struct ptemu_file *f = calloc(1, sizeof(*f));
	uint64_t psize = ptemu_page_size(m->arch);

	if (!f)
		return NULL;
	f->machine = m;
	f->key = key;
	f->shmem = shmem;
	f->size = size;
	f->max_pages = (max_size + psize - 1) / psize;
	f->i_pages = calloc(f->max_pages ? f->max_pages : 1, sizeof(*f->i_pages));
	if (!f->i_pages) {
		free(f);
		return NULL;
	}
	ptemu_spin_init(&f->i_pages_lock, LOCK_CLASS_XA);
	ptemu_rwsem_init(&f->i_mmap_rwsem, LOCK_CLASS_I_MMAP);
	f->refs = 1;
	return f;
}

void ptemu_file_get(struct ptemu_file *f)
{
	__atomic_fetch_add(&f->refs, 1, __ATOMIC_RELAXED);
}

void ptemu_file_put(struct ptemu_file *f)
{
	if (__atomic_sub_fetch(&f->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	/* Nothing maps it any more: drop the page cache's references. */
	for (uint64_t i = 0; i < f->max_pages;) {
		struct page *folio = f->i_pages[i];

		if (!folio) {
			i++;
			continue;
		}
		uint64_t nr = 1ull << folio->order;
		for (uint64_t j = 0; j < nr; j++)
			f->i_pages[folio->index + j] = NULL;
		i = folio->index + nr;
		for (uint64_t j = 0; j < nr; j++)
			folio_put(folio);
	}
	ptemu_rwsem_destroy(&f->i_mmap_rwsem);
	free(f->i_mmap);
	free(f->i_pages);
	free(f);
}

uint64_t ptemu_file_size(const struct ptemu_file *f)
{
	return __atomic_load_n(&f->size, __ATOMIC_ACQUIRE);
}

struct page *filemap_get_folio(struct ptemu_file *f, uint64_t index)
{
	struct page *folio = NULL;

	if (index >= f->max_pages)
		return NULL;
	spin_lock(&f->i_pages_lock);
	folio = f->i_pages[index];
	if (folio)
		folio_get(folio);
	spin_unlock(&f->i_pages_lock);
	return folio;
}

/* Fill a new page-cache page: zeroes for shmem, the file's words for a regular file. */
static void fill_new_folio(struct ptemu_file *f, struct page *folio)
{
	const struct ptemu_arch *a = f->machine->arch;
	uint64_t psize = ptemu_page_size(a);
	uint8_t *p = phys_to_virt(folio->phys, folio_pfn(folio) << a->page_shift);

	if (f->shmem)
		return;	/* phys_alloc_pages zeroed it */
	for (uint64_t off = 0; off < psize; off += 8) {
		uint64_t w = ptemu_file_word(f->key, folio->index * psize + off);

		if (a->big_endian)
			w = __builtin_bswap64(w);
		memcpy(p + off, &w, 8);
	}
}

static struct page *get_folio_locked(struct ptemu_file *f, uint64_t index, int *err, bool wait)
{
	struct ptemu_machine *m = f->machine;

	for (;;) {
		if (index * ptemu_page_size(m->arch) >= ptemu_file_size(f)) {
			*err = -EFAULT;
			return NULL;
		}
		struct page *folio = filemap_get_folio(f, index);

		if (folio) {
			if (!wait && !folio_trylock(folio)) {
				folio_put(folio);
				*err = -EAGAIN;
				return NULL;
			}
			if (wait)
				folio_lock(folio);
			/* Truncated or replaced (collapse) while we slept on the lock. */
			if (folio->mapping == f && folio->index <= index &&
			    index < folio->index + (1ull << folio->order))
				return folio;
			folio_unlock(folio);
			folio_put(folio);
			continue;
		}
		might_sleep("page-cache allocation");
		uint64_t pfn = phys_alloc_pages(m->phys, 0);

		if (!pfn) {
			*err = -ENOMEM;
			return NULL;
		}
		folio = pfn_to_page(m->phys, pfn);
		folio->mapping = f;
		folio->index = index;
		if (f->shmem)
			SetPageFlag(folio, PG_swapbacked);
		fill_new_folio(f, folio);
		SetPageFlag(folio, PG_uptodate);
		/* Locked before anyone can find it, as __filemap_add_folio does. */
		test_and_set_locked(folio);
		folio_lock_acquired();
		folio_get(folio);	/* the caller's reference; the first is the cache's */
		spin_lock(&f->i_pages_lock);
		if (!f->i_pages[index]) {
			f->i_pages[index] = folio;
			spin_unlock(&f->i_pages_lock);
			return folio;
		}
		spin_unlock(&f->i_pages_lock);
		folio->mapping = NULL;
		folio_unlock(folio);
		folio_put(folio);
		folio_put(folio);
	}
}

struct page *filemap_get_folio_locked(struct ptemu_file *f, uint64_t index, int *err)
{
	return get_folio_locked(f, index, err, true);
}

struct page *filemap_get_folio_trylocked(struct ptemu_file *f, uint64_t index, int *err)
{
	return get_folio_locked(f, index, err, false);
}

/* ---- i_mmap ---------------------------------------------------------------------------- */

void flush_dcache_mmap_lock(struct ptemu_file *f)
{
	if (f->machine->arch->flush_dcache_mmap_lock)
		spin_lock(&f->i_pages_lock);
}

void flush_dcache_mmap_unlock(struct ptemu_file *f)
{
	if (f->machine->arch->flush_dcache_mmap_lock)
		spin_unlock(&f->i_pages_lock);
}

void __vma_link_file(struct vm_area_struct *vma)
{
	struct ptemu_file *f = vma->vm_file;

	flush_dcache_mmap_lock(f);
	f->i_mmap = ptemu_array_reserve(f->i_mmap, &f->cap_i_mmap, f->nr_i_mmap, sizeof(*f->i_mmap),
					8, "i_mmap");
	f->i_mmap[f->nr_i_mmap++] = vma;
	flush_dcache_mmap_unlock(f);
}

void vma_link_file(struct vm_area_struct *vma)
{
	down_write(&vma->vm_file->i_mmap_rwsem);
	__vma_link_file(vma);
	up_write(&vma->vm_file->i_mmap_rwsem);
}

void __unlink_file_vma(struct vm_area_struct *vma)
{
	struct ptemu_file *f = vma->vm_file;

	flush_dcache_mmap_lock(f);
	for (size_t i = 0; i < f->nr_i_mmap; i++) {
		if (f->i_mmap[i] == vma) {
			f->i_mmap[i] = f->i_mmap[--f->nr_i_mmap];
			break;
		}
	}
	flush_dcache_mmap_unlock(f);
}

void unlink_file_vma(struct vm_area_struct *vma)
{
	down_write(&vma->vm_file->i_mmap_rwsem);
	__unlink_file_vma(vma);
	up_write(&vma->vm_file->i_mmap_rwsem);
}
