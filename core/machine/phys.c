/* Simulated physical memory and its buddy allocator. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <ptemu/machine.h>
#include <ptemu/phys.h>

#define PHYS_MAX_ORDER 16

struct ptemu_phys {
	struct ptemu_machine *machine;
	uint8_t *base;
	uint64_t bytes;
	uint64_t npages;
	unsigned page_shift;
	unsigned max_order;
	struct page *pages;
	pthread_mutex_t lock;	/* the allocator's own: not a modelled kernel lock */
	struct list_head free_list[PHYS_MAX_ORDER + 1];
	uint64_t pages_free;
	uint64_t allocs[PHYS_MAX_ORDER + 1];
	uint64_t frees[PHYS_MAX_ORDER + 1];
	uint64_t alloc_failures;
};

static unsigned order_of(uint64_t bytes, unsigned page_shift)
{
	unsigned o = 0;

	while ((1ull << (o + page_shift)) < bytes)
		o++;
	return o;
}

static void free_block_locked(struct ptemu_phys *phys, uint64_t pfn, unsigned order)
{
	while (order < phys->max_order) {
		uint64_t buddy = pfn ^ (1ull << order);
		struct page *bp;

		if (buddy + (1ull << order) > phys->npages)
			break;
		bp = &phys->pages[buddy];
		if (!PageFlag(bp, PG_buddy) || bp->order != order)
			break;
		list_del_init(&bp->lru);
		ClearPageFlag(bp, PG_buddy);
		pfn &= ~(1ull << order);
		order++;
	}
	phys->pages[pfn].order = (uint8_t)order;
	SetPageFlag(&phys->pages[pfn], PG_buddy);
	list_add(&phys->pages[pfn].lru, &phys->free_list[order]);
}

struct ptemu_phys *phys_create(struct ptemu_machine *m, uint64_t bytes, char *err, size_t errlen)
{
	const struct ptemu_arch *a = m->arch;
	uint64_t psize = ptemu_page_size(a);
	uint64_t pmd = a->pmd_leaf_shift ? (1ull << a->pmd_leaf_shift) : ptemu_pmd_size(a);
	unsigned max_order = order_of(pmd, a->page_shift);
	struct ptemu_phys *phys;

	for (unsigned l = 0; l < a->nr_levels; l++)
		if (order_of(a->table_bytes[l], a->page_shift) > max_order)
			max_order = order_of(a->table_bytes[l], a->page_shift);
	if (max_order > PHYS_MAX_ORDER) {
		snprintf(err, errlen, "model %s needs order %u blocks; the allocator stops at %u",
			 a->name, max_order, PHYS_MAX_ORDER);
		return NULL;
	}
	if (bytes % pmd || bytes < 8 * pmd) {
		snprintf(err, errlen,
			 "physical memory of %" PRIu64 " bytes: must be a multiple of the %s PMD "
			 "size (%" PRIu64 " KiB) and at least 8 of them (%" PRIu64 " KiB)",
			 bytes, a->name, pmd >> 10, (8 * pmd) >> 10);
		return NULL;
	}
	phys = calloc(1, sizeof(*phys));
	if (!phys) {
		snprintf(err, errlen, "out of host memory");
		return NULL;
	}
	phys->machine = m;
	phys->bytes = bytes;
	phys->page_shift = a->page_shift;
	phys->npages = bytes / psize;
	phys->max_order = max_order;
	phys->base = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
			  -1, 0);
	phys->pages = calloc(phys->npages, sizeof(struct page));
	if (phys->base == MAP_FAILED || !phys->pages) {
		snprintf(err, errlen, "cannot reserve %" PRIu64 " bytes of host memory: %s", bytes,
			 strerror(errno));
		if (phys->base != MAP_FAILED)
			munmap(phys->base, bytes);
		free(phys->pages);
		free(phys);
		return NULL;
	}
	pthread_mutex_init(&phys->lock, NULL);
	for (unsigned o = 0; o <= PHYS_MAX_ORDER; o++)
		INIT_LIST_HEAD(&phys->free_list[o]);
	for (uint64_t pfn = 0; pfn < phys->npages; pfn++) {
		struct page *p = &phys->pages[pfn];

		p->phys = phys;
		INIT_LIST_HEAD(&p->lru);
	}
	/* Frame 0 stays reserved: physical address 0 means "none" everywhere. */
	SetPageFlag(&phys->pages[0], PG_reserved);
	phys->pages[0].refcount = 1;
	for (uint64_t pfn = 1; pfn < phys->npages; pfn++)
		free_block_locked(phys, pfn, 0);
	phys->pages_free = phys->npages - 1;
	return phys;
}

void phys_destroy(struct ptemu_phys *phys)
{
	if (!phys)
		return;
	pthread_mutex_destroy(&phys->lock);
	munmap(phys->base, phys->bytes);
	free(phys->pages);
	free(phys);
}

uint64_t phys_alloc_pages(struct ptemu_phys *phys, unsigned order)
{
	unsigned o = order;
	uint64_t pfn;
	struct page *head;

	if (order > phys->max_order)
		return 0;
	pthread_mutex_lock(&phys->lock);
	while (o <= phys->max_order && list_empty(&phys->free_list[o]))
		o++;
	if (o > phys->max_order) {
		phys->alloc_failures++;
		pthread_mutex_unlock(&phys->lock);
		return 0;
	}
	head = list_first_entry(&phys->free_list[o], struct page, lru);
	list_del_init(&head->lru);
	ClearPageFlag(head, PG_buddy);
	pfn = page_to_pfn(head);
	/* Split: hand the upper halves back until the block has the asked order. */
	while (o > order) {
		o--;
		struct page *upper = &phys->pages[pfn + (1ull << o)];

		upper->order = (uint8_t)o;
		SetPageFlag(upper, PG_buddy);
		list_add(&upper->lru, &phys->free_list[o]);
	}
	phys->pages_free -= 1ull << order;
	phys->allocs[order]++;
	pthread_mutex_unlock(&phys->lock);

	for (uint64_t i = 0; i < (1ull << order); i++) {
		struct page *p = &phys->pages[pfn + i];

		__atomic_store_n(&p->flags, 0, __ATOMIC_RELAXED);
		p->refcount = 0;
		p->mapcount = 0;
		p->pt_frag = 0;
		p->pt_mm = NULL;
		p->mapping = NULL;
		p->index = 0;
	}
	head->order = (uint8_t)order;
	head->refcount = 1;
	SetPageFlag(head, PG_head);
	/* Word by word, atomically: under an injected bug a walker may still be reading the
	 * block's old contents (the use after free the checker reports), and the host must
	 * not turn that simulated race into a real one. */
	uint64_t *w = (uint64_t *)(void *)(phys->base + (pfn << phys->page_shift));
	/* In a local: the stores could alias phys->page_shift, reloaded at every word. */
	const size_t words = ((size_t)1 << (order + phys->page_shift)) / sizeof(*w);

	for (size_t i = 0; i < words; i++)
		__atomic_store_n(&w[i], 0, __ATOMIC_RELAXED);
	return pfn;
}

void phys_free_pages(struct ptemu_phys *phys, uint64_t pfn, unsigned order)
{
	struct page *head;

	if (pfn == 0 || pfn >= phys->npages) {
		fprintf(stderr, "ptemu: phys_free_pages of pfn %" PRIu64 " outside memory\n", pfn);
		abort();
	}
	head = &phys->pages[pfn];
	if (!PageFlag(head, PG_head) || head->order != order) {
		fprintf(stderr, "ptemu: phys_free_pages(pfn %" PRIu64 ", order %u) of a block not "
			"allocated with that order (double free?)\n", pfn, order);
		abort();
	}
	ClearPageFlag(head, PG_head);
	head->refcount = 0;
	pthread_mutex_lock(&phys->lock);
	phys->pages_free += 1ull << order;
	phys->frees[order]++;
	free_block_locked(phys, pfn, order);
	pthread_mutex_unlock(&phys->lock);
}

void phys_split_pages(struct ptemu_phys *phys, uint64_t pfn, unsigned order)
{
	struct page *head = &phys->pages[pfn];

	if (!PageFlag(head, PG_head) || head->order != order) {
		fprintf(stderr, "ptemu: phys_split_pages(pfn %" PRIu64 ", order %u) of a block not "
			"allocated with that order\n", pfn, order);
		abort();
	}
	for (uint64_t i = 0; i < (1ull << order); i++) {
		phys->pages[pfn + i].order = 0;
		SetPageFlag(&phys->pages[pfn + i], PG_head);
	}
	pthread_mutex_lock(&phys->lock);
	phys->allocs[order]--;
	phys->allocs[0] += 1ull << order;
	pthread_mutex_unlock(&phys->lock);
}

struct page *pfn_to_page(const struct ptemu_phys *phys, uint64_t pfn)
{
	return &phys->pages[pfn];
}

uint64_t page_to_pfn(const struct page *page)
{
	return (uint64_t)(page - page->phys->pages);
}

void *phys_to_virt(const struct ptemu_phys *phys, uint64_t pa)
{
	return phys->base + pa;
}

uint64_t phys_size(const struct ptemu_phys *phys)
{
	return phys->bytes;
}

unsigned phys_max_order(const struct ptemu_phys *phys)
{
	return phys->max_order;
}

uint8_t *phys_base(const struct ptemu_phys *phys)
{
	return phys->base;
}

struct ptemu_machine *phys_machine(const struct ptemu_phys *phys)
{
	return phys->machine;
}

struct ptemu_phys_stats phys_stats(struct ptemu_phys *phys)
{
	struct ptemu_phys_stats s = { 0 };

	pthread_mutex_lock(&phys->lock);
	s.pages_total = phys->npages;
	s.pages_free = phys->pages_free;
	s.pages_allocated = phys->npages - 1 - phys->pages_free;
	for (unsigned o = 0; o <= PHYS_MAX_ORDER; o++) {
		s.allocs[o] = phys->allocs[o];
		s.frees[o] = phys->frees[o];
	}
	s.alloc_failures = phys->alloc_failures;
	pthread_mutex_unlock(&phys->lock);
	for (uint64_t pfn = 1; pfn < phys->npages; pfn++)
		if (PageFlag(&phys->pages[pfn], PG_table))
			s.table_pages++;
	return s;
}
