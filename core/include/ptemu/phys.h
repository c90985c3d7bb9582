/* Simulated physical memory: one host buffer, a struct page per base-page frame, and a
 * buddy allocator for orders 0..max_order (the model's PMD order, or the order of its
 * largest table if that is larger). Frame 0 is reserved, so physical address 0 can mean
 * "none" and a table at pfn 0 can never be handed out. */
#ifndef PTEMU_PHYS_H
#define PTEMU_PHYS_H

#include <stddef.h>
#include <stdint.h>

#include <ptemu/list.h>
#include <ptemu/rcu.h>
#include <ptemu/sync.h>

#ifdef __cplusplus
extern "C" {
#endif

struct ptemu_phys;
struct mm_struct;

/* struct page flags (bit numbers). */
enum {
	PG_locked,
	PG_uptodate,
	PG_dirty,
	PG_active,	/* pte_free_defer: the page must be freed through RCU (s390, powerpc) */
	PG_table,	/* holds page tables */
	PG_head,	/* first page of an allocated higher-order block */
	PG_buddy,	/* first page of a free block on a buddy list */
	PG_reserved,	/* never allocated (frame 0) */
	PG_anon,	/* anonymous memory (the kernel's PAGE_MAPPING_ANON) */
	PG_swapbacked,	/* shmem: counted in MM_SHMEMPAGES */
};

struct page {
	uint32_t flags;		/* PG_* bits, atomic */
	int32_t refcount;
	int32_t mapcount;
	uint8_t order;		/* of the block this page heads (PG_head or PG_buddy) */
	/* Page-table bookkeeping of pages shared between tables: s390's AA bits (0-1)
	 * and PP bits (4-5), powerpc's fragment refcount. */
	uint32_t pt_frag;
	struct ptemu_spinlock ptl;	/* split PTE lock, shared by every table in the page */
	struct list_head lru;		/* buddy free list, or mm->context.pgtable_list */
	struct ptemu_rcu_head rcu;	/* pte_free_defer */
	struct mm_struct *pt_mm;
	void *mapping;
	uint64_t index;
	struct ptemu_phys *phys;
};

static inline bool PageFlag(const struct page *p, unsigned bit)
{
	return (__atomic_load_n(&p->flags, __ATOMIC_ACQUIRE) >> bit) & 1u;
}
static inline void SetPageFlag(struct page *p, unsigned bit)
{
	__atomic_fetch_or(&p->flags, 1u << bit, __ATOMIC_ACQ_REL);
}
static inline void ClearPageFlag(struct page *p, unsigned bit)
{
	__atomic_fetch_and(&p->flags, ~(1u << bit), __ATOMIC_ACQ_REL);
}
static inline bool TestClearPageFlag(struct page *p, unsigned bit)
{
	return (__atomic_fetch_and(&p->flags, ~(1u << bit), __ATOMIC_ACQ_REL) >> bit) & 1u;
}

struct ptemu_phys_stats {
	uint64_t pages_total;		/* frames, including the reserved frame 0 */
	uint64_t pages_free;
	uint64_t pages_allocated;
	uint64_t table_pages;		/* pages currently holding page tables */
	uint64_t allocs[17];		/* allocations by order (a split block counts as its pages) */
	uint64_t frees[17];
	uint64_t alloc_failures;
};

struct ptemu_machine;

/* bytes must be a multiple of the model's PMD size and hold at least 8 PMDs. On error
 * returns NULL with a message in err. */
struct ptemu_phys *phys_create(struct ptemu_machine *m, uint64_t bytes, char *err, size_t errlen);
void phys_destroy(struct ptemu_phys *phys);

/* Returns the first pfn of a 2^order block, or 0 when memory is exhausted (never aborts).
 * The block is zeroed and its head page has refcount 1. */
uint64_t phys_alloc_pages(struct ptemu_phys *phys, unsigned order);
void phys_free_pages(struct ptemu_phys *phys, uint64_t pfn, unsigned order);
/* split_page: an allocated 2^order block becomes 2^order order-0 blocks, each freed on its
 * own later. Every page keeps its refcount, flags and fields; only head-ness changes. */
void phys_split_pages(struct ptemu_phys *phys, uint64_t pfn, unsigned order);

struct page *pfn_to_page(const struct ptemu_phys *phys, uint64_t pfn);
uint64_t page_to_pfn(const struct page *page);
/* Host address of a physical address; pa must be inside the buffer. */
void *phys_to_virt(const struct ptemu_phys *phys, uint64_t pa);
uint64_t phys_size(const struct ptemu_phys *phys);
unsigned phys_max_order(const struct ptemu_phys *phys);
uint8_t *phys_base(const struct ptemu_phys *phys);
struct ptemu_machine *phys_machine(const struct ptemu_phys *phys);
struct ptemu_phys_stats phys_stats(struct ptemu_phys *phys);

#ifdef __cplusplus
}
#endif
#endif
