/* The per-vCPU logical TLB and walk cache (DESIGN.md section 3), and the shootdown that
 * keeps them coherent with the page tables.
 *
 * Unicorn's own TLB is only a cache of the logical TLB: an entry handed to it since its last
 * flush (a fill epoch) is invalidated or evicted only together with a flush of the vCPU's
 * whole Unicorn TLB. Only logical misses walk tables, so Unicorn's wall-clock TLB resizing
 * never changes what the model sees. */
#ifndef PTEMU_TLB_H
#define PTEMU_TLB_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct ptemu_machine;

/* One entry per leaf, of the leaf's size: a block or huge leaf is one entry, as in the
 * TLBs of every modelled MMU. */
struct ptemu_tlb_entry {
	uint64_t vpn;		/* va >> shift */
	uint64_t ppn;		/* the leaf's first physical page (base-page number) */
	unsigned perms;		/* PTEMU_PROT_* */
	int32_t next;		/* hash chain */
	int32_t rnext, rprev;	/* region chain: leaves smaller than a PMD, by the PMD range */
	uint32_t fill_epoch;	/* the fill epoch it was last handed to Unicorn in */
	uint8_t shift;		/* log2 of the leaf's size */
	bool valid;
};

struct ptemu_walk_cache_entry {
	uint64_t pmd_index;	/* va >> pmd shift */
	uint64_t table_pa;	/* the PTE table that pmd pointed at */
	bool valid;
};

#define PTEMU_TLB_MAX_RANGES 16
#define PTEMU_WALK_CACHE_HINTS 16
/* What a machine's logical TLBs may hold (--tlb-entries): a power of two in this range. */
#define PTEMU_TLB_MIN_ENTRIES 16u
#define PTEMU_TLB_MAX_ENTRIES 65536u

struct ptemu_flush_range {
	uint64_t start, end;
	bool tables;
	uint64_t gen;		/* the request's generation */
};

enum ptemu_vcpu_mode { VCPU_OUTSIDE_GUEST, VCPU_IN_GUEST };

/* One vCPU's translation state. The owner thread reads and fills it; initiators post
 * requests and read `mode`/`ack_gen`; the freed-page checks read it under `lock`. */
struct ptemu_tlb {
	struct ptemu_machine *machine;
	unsigned capacity, wc_capacity;
	unsigned page_shift, pmd_shift;
	struct ptemu_tlb_entry *entries;
	int32_t *buckets;
	unsigned nbuckets;
	uint64_t leaf_shifts;	/* bit s: entries of size 1 << s were inserted */
	/* Leaves smaller than a PMD also chained by a hash of the PMD range that holds them
	 * (capacity chains, each with its length): a range invalidation visits the entries of
	 * the ranges it covers instead of probing each page or scanning every entry. */
	int32_t *region_chains;
	uint32_t *region_count;
	unsigned hand;		/* where the search for an entry to replace resumes */
	/* Valid entries counted by a hash of (leaf size, leaf's physical frame), 2 x capacity
	 * slots: a freed page no slot counts is mapped by no entry, and ptemu_tlb_maps_pfn,
	 * called at every page freed, answers without a scan of every entry. */
	uint32_t *frame_count;
	/* Bumped at each flush of Unicorn's TLB that tlb.c asks for: an entry of an older
	 * epoch has not been handed to Unicorn since, so it can go without a flush. */
	uint32_t fill_epoch;
	struct ptemu_walk_cache_entry *wc;
	unsigned wc_fifo;
	/* Owner-only: the slot that last held a pmd index, by index modulo the hints; a guess
	 * that spares most lookups the scan of the whole walk cache. */
	unsigned wc_hint[PTEMU_WALK_CACHE_HINTS];
	pthread_mutex_t lock;	/* the model's hardware: not a kernel lock */

	/* Shootdown (KVM's vcpu->mode and requests). */
	int mode;		/* enum ptemu_vcpu_mode, atomic */
	int kick;		/* atomic: polled by the block hook */
	uint64_t req_gen;	/* generation of the newest request posted */
	uint64_t ack_gen;	/* generation applied */
	/* Requests up to this generation were posted before an initiator saw the vCPU
	 * outside guest mode: it applies them before it runs guest code again. */
	uint64_t outside_gen;
	unsigned nranges;
	bool flush_all;
	uint64_t flush_all_gen;	/* the first request that overflowed into flush_all */
	struct ptemu_flush_range ranges[PTEMU_TLB_MAX_RANGES];

	/* Set by the owner: flush the Unicorn TLB (called with nothing locked). */
	void (*flush_hw)(void *ctx);
	void *flush_ctx;
};

/* Unicorn sizes its TLB (from 256 entries up) only when it is flushed, by how full it
 * was: an engine that seldom flushes keeps 256 entries and, with a larger working set,
 * takes a fill hook on most accesses. Flushing after PTEMU_HW_TLB_GROW_FIRST fills, then
 * after twice as many each time up to PTEMU_HW_TLB_GROW_LAST, lets it grow to the working
 * set at a bounded cost. Every vCPU does it, and bench overhead's second bare baseline.
 * Unicorn's TLB is only a cache of the logical TLB, so no run changes. */
#define PTEMU_HW_TLB_GROW_FIRST 1024u
#define PTEMU_HW_TLB_GROW_LAST (1u << 20)
struct ptemu_hw_tlb_growth {
	uint32_t fills, next;	/* since the last growth flush; the next one's (0: FIRST) */
};

/* Counts one fill hook call: true when the engine's TLB is to be flushed now. */
static inline bool ptemu_hw_tlb_grow_due(struct ptemu_hw_tlb_growth *g)
{
	if (++g->fills < (g->next ? g->next : PTEMU_HW_TLB_GROW_FIRST))
		return false;
	g->fills = 0;
	g->next = g->next ? g->next : PTEMU_HW_TLB_GROW_FIRST;
	if (g->next < PTEMU_HW_TLB_GROW_LAST)
		g->next *= 2;
	return true;
}

int ptemu_tlb_init(struct ptemu_tlb *t, struct ptemu_machine *m);
void ptemu_tlb_destroy(struct ptemu_tlb *t);

/* Owner side. */
/* The translation of va's base page (pa: that page's physical address), from an entry of
 * any leaf size; the smallest leaf wins where entries overlap. For a fill of Unicorn's TLB:
 * the entry found counts as handed to Unicorn. */
bool ptemu_tlb_lookup(struct ptemu_tlb *t, uint64_t va, uint64_t *pa, unsigned *perms);
/* Inserts the leaf of leaf_size bytes (a power of two; the base page size or less: one
 * base page) that maps va to pa, replacing any entry for that leaf, and counts it as
 * handed to Unicorn. When full, the next entry (round robin from the last one replaced)
 * not handed to Unicorn in this fill epoch is replaced, without a flush: a not-recently-
 * used policy whose reference bits the flushes clear. Only when every entry was handed to
 * Unicorn is its TLB flushed, which starts a new epoch. */
void ptemu_tlb_insert(struct ptemu_tlb *t, uint64_t va, uint64_t pa, uint64_t leaf_size, unsigned perms);
bool ptemu_walk_cache_lookup(struct ptemu_tlb *t, uint64_t va, uint64_t *table_pa);
/* Caches "va's pmd points at table_pa" (FIFO). Only after a lookup of va missed: the
 * pmd is not cached already, and only the owner inserts. */
void ptemu_walk_cache_insert(struct ptemu_tlb *t, uint64_t va, uint64_t table_pa);
/* Range-exact invalidation: leaf entries in [start, end), plus walk-cache entries for
 * pmds overlapping it when tables is set. Flushes Unicorn's TLB if anything went. */
void ptemu_tlb_invalidate(struct ptemu_tlb *t, uint64_t start, uint64_t end, bool tables);
/* Applies every posted request and acknowledges it; clears the kick. */
void ptemu_tlb_apply_requests(struct ptemu_tlb *t);
/* Mode changes, with the fences of the protocol; entering applies pending requests. */
void ptemu_tlb_enter_guest(struct ptemu_tlb *t);
void ptemu_tlb_leave_guest(struct ptemu_tlb *t);

/* Initiator side: posts the flush to every target, kicks those in guest mode and waits
 * until each has acknowledged or left guest mode. `self` (may be NULL) is the
 * initiator's own vCPU, flushed directly and serviced while waiting. */
void ptemu_tlb_shootdown(struct ptemu_tlb **targets, unsigned n, struct ptemu_tlb *self,
			 uint64_t start, uint64_t end, bool tables);

/* Checker side: does this TLB still map a page in [pfn, pfn + nr), or its walk cache still
 * point at table_pa? An entry covered by a posted request counts as flushed only when the
 * vCPU is outside guest mode, or was seen outside after the request was posted (it then
 * applies the request before it runs guest code); for a vCPU in guest mode only the
 * acknowledgement counts (DESIGN.md section 3). */
bool ptemu_tlb_maps_pfn(struct ptemu_tlb *t, uint64_t pfn, uint64_t nr, uint64_t *va);
bool ptemu_tlb_caches_table(struct ptemu_tlb *t, uint64_t table_pa, uint64_t *va);

#ifdef __cplusplus
}
#endif
#endif
