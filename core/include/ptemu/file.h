/* Files: shmem objects and read-only regular files, each with a page cache (index ->
 * folio, one multi-index entry for a huge folio), a folio lock that sleeps, and i_mmap
 * (the VMAs mapping the file) under its rwsem. A folio is its head struct page:
 * page->mapping is the file, page->index its first index, page->order its size. */
#ifndef PTEMU_FILE_H
#define PTEMU_FILE_H

#include <stdbool.h>
#include <stdint.h>

#include <ptemu/sync.h>

#ifdef __cplusplus
extern "C" {
#endif

struct ptemu_machine;
struct page;
struct vm_area_struct;

struct ptemu_file {
	struct ptemu_machine *machine;
	uint64_t key;
	bool shmem;			/* else a read-only regular file */
	uint64_t size;			/* bytes; atomic (ftruncate) */
	uint64_t max_pages;		/* capacity of the page cache index */
	struct page **i_pages;		/* index -> head page; a huge folio fills its range */
	struct ptemu_spinlock i_pages_lock;	/* xa_lock */
	struct ptemu_rwsem i_mmap_rwsem;
	struct vm_area_struct **i_mmap;	/* VMAs mapping the file */
	size_t nr_i_mmap, cap_i_mmap;
	int refs;			/* open handles + VMAs; atomic */
};

/* A file of `size` bytes (a multiple of the page size) that can grow to `max_size`. */
struct ptemu_file *ptemu_file_create(struct ptemu_machine *m, uint64_t key, bool shmem,
				     uint64_t size, uint64_t max_size);
void ptemu_file_get(struct ptemu_file *f);
/* Drops a reference; the last one frees the page cache. */
void ptemu_file_put(struct ptemu_file *f);
uint64_t ptemu_file_size(const struct ptemu_file *f);

/* The locked folio caching `index`, read in (regular file) or allocated zeroed (shmem) when
 * absent, with a reference for the caller; NULL beyond EOF (*err = -EFAULT for SIGBUS) or
 * on OOM (*err = -ENOMEM). May sleep: never call under RCU or a spinlock. */
struct page *filemap_get_folio_locked(struct ptemu_file *f, uint64_t index, int *err);
/* The same without sleeping on a folio someone else holds locked (-EAGAIN): for callers
 * that already hold folio locks. */
struct page *filemap_get_folio_trylocked(struct ptemu_file *f, uint64_t index, int *err);
/* The folio at index without locking (a reference taken), or NULL. */
struct page *filemap_get_folio(struct ptemu_file *f, uint64_t index);

/* Folio lock: sleeps until the lock is free (kernel folio_lock). */
void folio_lock(struct page *folio);
bool folio_trylock(struct page *folio);
void folio_unlock(struct page *folio);
bool folio_test_locked(const struct page *folio);

void folio_get(struct page *folio);
/* Drops a reference; the last frees the folio (and checks no TLB still maps it). */
void folio_put(struct page *folio);
unsigned folio_order(const struct page *folio);
uint64_t folio_pfn(const struct page *folio);
/* The folio (head page) of any page. */
struct page *page_folio(struct page *page);

/* shmem: truncate to `size` bytes (unmapping the pages beyond it), or punch a hole. */
int shmem_truncate(struct ptemu_file *f, uint64_t size);
int shmem_punch_hole(struct ptemu_file *f, uint64_t offset, uint64_t len);

/* flush_dcache_mmap_lock: the i_pages lock where the model's flush_dcache_mmap_lock is,
 * else nothing. i_mmap changes happen under it too (vma_prepare, __remove_shared_vm_struct),
 * so a holder may read i_mmap (arm's make_coherent). */
void flush_dcache_mmap_lock(struct ptemu_file *f);
void flush_dcache_mmap_unlock(struct ptemu_file *f);

/* i_mmap maintenance, under i_mmap_rwsem for write; the __ forms for a caller that holds
 * it (a VMA split or merge changes bounds and i_mmap under one hold, as vma_prepare). */
void vma_link_file(struct vm_area_struct *vma);
void unlink_file_vma(struct vm_area_struct *vma);
void __vma_link_file(struct vm_area_struct *vma);
void __unlink_file_vma(struct vm_area_struct *vma);

#ifdef __cplusplus
}
#endif
#endif
