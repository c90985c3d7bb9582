/* Logical TLB, walk cache and shootdown (DESIGN.md section 3). */
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include <ptemu/machine.h>
#include <ptemu/sched.h>
#include <ptemu/tlb.h>

int ptemu_tlb_init(struct ptemu_tlb *t, struct ptemu_machine *m)
{
	const struct ptemu_arch *a = m->arch;

	memset(t, 0, sizeof(*t));
	t->machine = m;
	t->capacity = m->tlb_entries ? m->tlb_entries : a->tlb_entries ? a->tlb_entries : 256;
	t->wc_capacity = a->walk_cache_entries;
	t->page_shift = a->page_shift;
	t->pmd_shift = a->level_shift[ptemu_pmd_level(a)];
	if (t->capacity & (t->capacity - 1))
		return -EINVAL;	/* bucket_of masks: the models' sizes and --tlb-entries are powers of two */
	t->nbuckets = 2 * t->capacity;
	t->fill_epoch = 1;	/* calloc'd entries (0) were never handed to Unicorn */
	t->entries = calloc(t->capacity, sizeof(*t->entries));
	t->buckets = malloc(t->nbuckets * sizeof(*t->buckets));
	t->wc = calloc(t->wc_capacity ? t->wc_capacity : 1, sizeof(*t->wc));
	t->frame_count = calloc(t->nbuckets, sizeof(*t->frame_count));
	t->region_chains = malloc(t->capacity * sizeof(*t->region_chains));
	t->region_count = calloc(t->capacity, sizeof(*t->region_count));
	if (!t->entries || !t->buckets || !t->wc || !t->frame_count || !t->region_chains || !t->region_count) {
		ptemu_tlb_destroy(t);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < t->nbuckets; i++)
		t->buckets[i] = -1;
	for (unsigned i = 0; i < t->capacity; i++)
		t->region_chains[i] = -1;
	pthread_mutex_init(&t->lock, NULL);
	return 0;
}

void ptemu_tlb_destroy(struct ptemu_tlb *t)
{
	free(t->entries);
	free(t->buckets);
	free(t->wc);
	free(t->frame_count);
	free(t->region_chains);
	free(t->region_count);
	t->entries = NULL;
	t->buckets = NULL;
	t->wc = NULL;
	t->frame_count = NULL;
	t->region_chains = NULL;
	t->region_count = NULL;
}

static unsigned bucket_of(const struct ptemu_tlb *t, uint64_t vpn, unsigned shift)
{
	return (unsigned)(((vpn ^ (uint64_t)shift << 58) * 0x9E3779B97F4A7C15ull) >> 32) & (t->nbuckets - 1);
}

/* The entry of the leaf of size 1 << shift that holds va, or -1. */
static int32_t find(const struct ptemu_tlb *t, uint64_t va, unsigned shift)
{
	uint64_t vpn = va >> shift;

	for (int32_t i = t->buckets[bucket_of(t, vpn, shift)]; i >= 0; i = t->entries[i].next)
		if (t->entries[i].vpn == vpn && t->entries[i].shift == shift)
			return i;
	return -1;
}

/* The entry that translates va, of whichever leaf size: the smallest first. */
static int32_t find_any(const struct ptemu_tlb *t, uint64_t va)
{
	for (uint64_t sizes = t->leaf_shifts; sizes; sizes &= sizes - 1) {
		int32_t i = find(t, va, (unsigned)__builtin_ctzll(sizes));

		if (i >= 0)
			return i;
	}
	return -1;
}

/* The frame_count slot of a leaf of size 1 << shift whose first page is frame ppn (the
 * leaf is aligned to its size, so ppn >> (shift - page_shift) numbers it among its size). */
static unsigned frame_slot(const struct ptemu_tlb *t, uint64_t ppn, unsigned shift)
{
	return bucket_of(t, ppn >> (shift - t->page_shift), shift);
}

/* A leaf smaller than a PMD lies in one PMD range: it is on that range's region chain. */
static bool on_region_chain(const struct ptemu_tlb *t, unsigned shift)
{
	return shift < t->pmd_shift;
}

static unsigned region_chain_of(const struct ptemu_tlb *t, uint64_t region)
{
	return (unsigned)((region * 0x9E3779B97F4A7C15ull) >> 32) & (t->capacity - 1);
}

static void link_entry(struct ptemu_tlb *t, int32_t idx)
{
	struct ptemu_tlb_entry *e = &t->entries[idx];
	unsigned b = bucket_of(t, e->vpn, e->shift);

	e->next = t->buckets[b];
	t->buckets[b] = idx;
	if (!on_region_chain(t, e->shift))
		return;
	unsigned r = region_chain_of(t, (e->vpn << e->shift) >> t->pmd_shift);

	e->rprev = -1;
	e->rnext = t->region_chains[r];
	if (e->rnext >= 0)
		t->entries[e->rnext].rprev = idx;
	t->region_chains[r] = idx;
	t->region_count[r]++;
}

static void unlink_entry(struct ptemu_tlb *t, int32_t idx)
{
	struct ptemu_tlb_entry *e = &t->entries[idx];

	t->frame_count[frame_slot(t, e->ppn, e->shift)]--;
	int32_t *pp = &t->buckets[bucket_of(t, e->vpn, e->shift)];

	while (*pp != idx)
		pp = &t->entries[*pp].next;
	*pp = e->next;
	if (on_region_chain(t, e->shift)) {
		unsigned r = region_chain_of(t, (e->vpn << e->shift) >> t->pmd_shift);

		if (e->rprev >= 0)
			t->entries[e->rprev].rnext = e->rnext;
		else
			t->region_chains[r] = e->rnext;
		if (e->rnext >= 0)
			t->entries[e->rnext].rprev = e->rprev;
		t->region_count[r]--;
	}
	e->valid = false;
}

/* Unicorn may hold the entry: it is handed to Unicorn only by a fill (lookup or insert). */
static bool handed_to_unicorn(const struct ptemu_tlb *t, const struct ptemu_tlb_entry *e)
{
	return e->valid && e->fill_epoch == t->fill_epoch;
}

/* Under the lock: Unicorn's TLB is to be flushed now (by the caller, once unlocked), so
 * no entry is in it any more. */
static void start_fill_epoch(struct ptemu_tlb *t)
{
	t->fill_epoch++;
}

bool ptemu_tlb_lookup(struct ptemu_tlb *t, uint64_t va, uint64_t *pa, unsigned *perms)
{
	int32_t i = find_any(t, va);

	if (i < 0)
		return false;
	struct ptemu_tlb_entry *e = &t->entries[i];

	/* Only the owner writes it, and only its flushes bump the epoch: no lock. */
	e->fill_epoch = t->fill_epoch;

	*pa = (e->ppn << t->page_shift) + (va & ((1ull << e->shift) - 1) & ~((1ull << t->page_shift) - 1));
	*perms = e->perms;
	return true;
}

void ptemu_tlb_insert(struct ptemu_tlb *t, uint64_t va, uint64_t pa, uint64_t leaf_size, unsigned perms)
{
	unsigned shift = leaf_size > (1ull << t->page_shift) ? (unsigned)__builtin_ctzll(leaf_size) : t->page_shift;
	uint64_t vpn = va >> shift;
	bool evicted = false;
	int32_t i;

	pa &= ~((1ull << shift) - 1);
	pthread_mutex_lock(&t->lock);
	t->leaf_shifts |= 1ull << shift;
	i = find(t, va, shift);
	if (i < 0) {
		/* The hand passes each entry at most once per epoch: a search costs O(1)
		 * amortised over the misses that fill the entries it passes. */
		unsigned k = 0, mask = t->capacity - 1;	/* a power of two (ptemu_tlb_init) */

		while (k < t->capacity && handed_to_unicorn(t, &t->entries[(t->hand + k) & mask]))
			k++;
		if (k == t->capacity) {
			start_fill_epoch(t);
			evicted = true;
			k = 0;
		}
		i = (int32_t)((t->hand + k) & mask);
		t->hand = (unsigned)(i + 1) & mask;
		if (t->entries[i].valid)
			unlink_entry(t, i);
		t->entries[i].vpn = vpn;
		t->entries[i].shift = (uint8_t)shift;
		link_entry(t, i);
	} else {
		if (handed_to_unicorn(t, &t->entries[i]) &&
		    (t->entries[i].ppn != pa >> t->page_shift || (t->entries[i].perms & ~perms))) {
			/* Unicorn may cache the old translation or permissions: drop it. */
			start_fill_epoch(t);
			evicted = true;
		}
		t->frame_count[frame_slot(t, t->entries[i].ppn, shift)]--;
	}
	t->frame_count[frame_slot(t, pa >> t->page_shift, shift)]++;
	t->entries[i].ppn = pa >> t->page_shift;
	t->entries[i].perms = perms;
	t->entries[i].valid = true;
	t->entries[i].fill_epoch = t->fill_epoch;
	pthread_mutex_unlock(&t->lock);
	if (evicted && t->flush_hw)
		t->flush_hw(t->flush_ctx);
}

bool ptemu_walk_cache_lookup(struct ptemu_tlb *t, uint64_t va, uint64_t *table_pa)
{
	uint64_t idx = va >> t->pmd_shift;
	unsigned *hint = &t->wc_hint[idx % PTEMU_WALK_CACHE_HINTS];

	if (*hint < t->wc_capacity && t->wc[*hint].valid && t->wc[*hint].pmd_index == idx) {
		*table_pa = t->wc[*hint].table_pa;
		return true;
	}
	for (unsigned i = 0; i < t->wc_capacity; i++) {
		if (t->wc[i].valid && t->wc[i].pmd_index == idx) {
			*hint = i;
			*table_pa = t->wc[i].table_pa;
			return true;
		}
	}
	return false;
}

void ptemu_walk_cache_insert(struct ptemu_tlb *t, uint64_t va, uint64_t table_pa)
{
	uint64_t idx = va >> t->pmd_shift;
	unsigned slot = t->wc_fifo;

	if (!t->wc_capacity)
		return;
	pthread_mutex_lock(&t->lock);
	t->wc_fifo = (t->wc_fifo + 1) % t->wc_capacity;
	t->wc[slot] = (struct ptemu_walk_cache_entry){ idx, table_pa, true };
	t->wc_hint[idx % PTEMU_WALK_CACHE_HINTS] = slot;
	pthread_mutex_unlock(&t->lock);
}

/* The first and last va an entry translates. */
static uint64_t entry_start(const struct ptemu_tlb_entry *e)
{
	return e->vpn << e->shift;
}

static uint64_t entry_last(const struct ptemu_tlb_entry *e)
{
	return entry_start(e) + ((1ull << e->shift) - 1);
}

/* Drops the entry; true if Unicorn may hold it. */
static bool drop_entry(struct ptemu_tlb *t, int32_t idx)
{
	bool handed = handed_to_unicorn(t, &t->entries[idx]);

	unlink_entry(t, idx);
	return handed;
}

/* The leaves of size 1 << shift that [start, end) overlaps. */
static uint64_t leaves_in(uint64_t start, uint64_t end, unsigned shift)
{
	return ((end - 1) >> shift) - (start >> shift) + 1;
}

/* True if Unicorn's TLB is to be flushed: it may hold an entry dropped. */
static bool invalidate_locked(struct ptemu_tlb *t, uint64_t start, uint64_t end, bool tables)
{
	bool flush = false;
	/* Costs counted in probes (a hash and a chain, in no order): a sequential scan of
	 * every entry costs about capacity / 8 of them, a step of a region chain about one.
	 * A leaf of any size that overlaps the range goes (a TLBI by address hits a block
	 * entry too). */
	const uint64_t scan_cost = t->capacity / 8;
	uint64_t first_region = start >> t->pmd_shift, nregions = leaves_in(start, end, t->pmd_shift);
	uint64_t large_probes = 0, small_probes = 0, chain_steps = UINT64_MAX;

	for (uint64_t sizes = t->leaf_shifts; sizes; sizes &= sizes - 1) {
		unsigned shift = (unsigned)__builtin_ctzll(sizes);

		if (on_region_chain(t, shift))
			small_probes += leaves_in(start, end, shift);
		else
			large_probes += leaves_in(start, end, shift);
	}
	if (nregions < scan_cost) {
		chain_steps = nregions;
		for (uint64_t r = 0; r < nregions; r++)
			chain_steps += t->region_count[region_chain_of(t, first_region + r)];
	}
	bool by_region = chain_steps < small_probes;

	if (large_probes + (by_region ? chain_steps : small_probes) >= scan_cost) {
		for (unsigned i = 0; i < t->capacity; i++) {
			if (t->entries[i].valid && entry_start(&t->entries[i]) <= end - 1 &&
			    entry_last(&t->entries[i]) >= start)
				flush |= drop_entry(t, (int32_t)i);
		}
	} else {
		for (uint64_t sizes = t->leaf_shifts; sizes; sizes &= sizes - 1) {
			unsigned shift = (unsigned)__builtin_ctzll(sizes);

			if (by_region && on_region_chain(t, shift))
				continue;
			for (uint64_t vpn = start >> shift; vpn <= (end - 1) >> shift; vpn++) {
				int32_t i = find(t, vpn << shift, shift);

				if (i >= 0)
					flush |= drop_entry(t, i);
			}
		}
		for (uint64_t r = 0; by_region && r < nregions; r++) {
			int32_t next;

			for (int32_t i = t->region_chains[region_chain_of(t, first_region + r)]; i >= 0; i = next) {
				const struct ptemu_tlb_entry *e = &t->entries[i];

				next = e->rnext;
				if (entry_start(e) >> t->pmd_shift == first_region + r && entry_start(e) <= end - 1 &&
				    entry_last(e) >= start)
					flush |= drop_entry(t, i);
			}
		}
	}
	if (tables) {
		uint64_t pfirst = start >> t->pmd_shift, plast = (end - 1) >> t->pmd_shift;

		/* Unicorn caches no walk: these need no flush of it. */
		for (unsigned i = 0; i < t->wc_capacity; i++)
			if (t->wc[i].valid && t->wc[i].pmd_index >= pfirst && t->wc[i].pmd_index <= plast)
				t->wc[i].valid = false;
	}
	if (flush)
		start_fill_epoch(t);
	return flush;
}

void ptemu_tlb_invalidate(struct ptemu_tlb *t, uint64_t start, uint64_t end, bool tables)
{
	bool flush;

	pthread_mutex_lock(&t->lock);
	flush = invalidate_locked(t, start, end, tables);
	pthread_mutex_unlock(&t->lock);
	if (flush && t->flush_hw)
		t->flush_hw(t->flush_ctx);
}

void ptemu_tlb_apply_requests(struct ptemu_tlb *t)
{
	bool flush = false;
	uint64_t gen;

	ptemu_sched_point();	/* the acknowledgement side of a shootdown */
	__atomic_store_n(&t->kick, 0, __ATOMIC_SEQ_CST);
	pthread_mutex_lock(&t->lock);
	gen = __atomic_load_n(&t->req_gen, __ATOMIC_SEQ_CST);
	if (t->flush_all) {
		for (unsigned i = 0; i < t->capacity; i++)
			if (t->entries[i].valid)
				flush |= drop_entry(t, (int32_t)i);
		for (unsigned i = 0; i < t->wc_capacity; i++)
			t->wc[i].valid = false;
		if (flush)
			start_fill_epoch(t);
	} else {
		for (unsigned r = 0; r < t->nranges; r++)
			flush |= invalidate_locked(t, t->ranges[r].start, t->ranges[r].end,
						   t->ranges[r].tables);
	}
	t->nranges = 0;
	t->flush_all = false;
	pthread_mutex_unlock(&t->lock);
	if (flush && t->flush_hw)
		t->flush_hw(t->flush_ctx);
	__atomic_store_n(&t->ack_gen, gen, __ATOMIC_SEQ_CST);
}

void ptemu_tlb_enter_guest(struct ptemu_tlb *t)
{
	/* Store the mode, then read the requests, both sequentially consistent (the full
	 * fence of the protocol): an initiator that missed our mode change has posted
	 * before our read and is applied here. */
	__atomic_store_n(&t->mode, VCPU_IN_GUEST, __ATOMIC_SEQ_CST);
	if (__atomic_load_n(&t->ack_gen, __ATOMIC_SEQ_CST) != __atomic_load_n(&t->req_gen, __ATOMIC_SEQ_CST))
		ptemu_tlb_apply_requests(t);
}

void ptemu_tlb_leave_guest(struct ptemu_tlb *t)
{
	__atomic_store_n(&t->mode, VCPU_OUTSIDE_GUEST, __ATOMIC_SEQ_CST);
}

static uint64_t post_request(struct ptemu_tlb *t, uint64_t start, uint64_t end, bool tables)
{
	uint64_t gen;

	pthread_mutex_lock(&t->lock);
	gen = __atomic_add_fetch(&t->req_gen, 1, __ATOMIC_SEQ_CST);
	if (t->nranges < PTEMU_TLB_MAX_RANGES) {
		t->ranges[t->nranges++] = (struct ptemu_flush_range){ start, end, tables, gen };
	} else if (!t->flush_all) {
		t->flush_all = true;
		t->flush_all_gen = gen;
	}
	pthread_mutex_unlock(&t->lock);
	return gen;
}

/* The initiator read the target's mode as outside guest mode after posting `gen`: the
 * target reads its requests after it next stores IN_GUEST, so it applies every request up
 * to `gen` before it runs guest code. */
static void seen_outside_guest(struct ptemu_tlb *t, uint64_t gen)
{
	uint64_t old = __atomic_load_n(&t->outside_gen, __ATOMIC_SEQ_CST);

	while (old < gen && !__atomic_compare_exchange_n(&t->outside_gen, &old, gen, false,
							  __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
		;
}

void ptemu_tlb_shootdown(struct ptemu_tlb **targets, unsigned n, struct ptemu_tlb *self,
			 uint64_t start, uint64_t end, bool tables)
{
	uint64_t gens[64];
	bool wait[64];

	/* The initiator's scheduling point is its caller's (__flush_tlb_range), before
	 * whatever must be one step with the purge. */
	for (unsigned i = 0; i < n; i++) {
		struct ptemu_tlb *t = targets[i];

		wait[i] = false;
		if (t == self) {
			ptemu_tlb_invalidate(t, start, end, tables);
			continue;
		}
		/* Request stored, then the mode read, both sequentially consistent: pairs
		 * with enter_guest, so that one of the two sides sees the other. */
		gens[i] = post_request(t, start, end, tables);
		if (__atomic_load_n(&t->mode, __ATOMIC_SEQ_CST) == VCPU_IN_GUEST) {
			__atomic_store_n(&t->kick, 1, __ATOMIC_SEQ_CST);
			wait[i] = i < 64;
		} else {
			seen_outside_guest(t, gens[i]);
		}
	}
	for (unsigned i = 0; i < n && i < 64; i++) {
		struct ptemu_tlb *t = targets[i];

		while (wait[i] && __atomic_load_n(&t->ack_gen, __ATOMIC_SEQ_CST) < gens[i] &&
		       __atomic_load_n(&t->mode, __ATOMIC_SEQ_CST) == VCPU_IN_GUEST) {
			/* Never wait with our own requests unserviced: two initiators would
			 * wait for each other. */
			if (self && __atomic_load_n(&self->ack_gen, __ATOMIC_SEQ_CST) !=
					    __atomic_load_n(&self->req_gen, __ATOMIC_SEQ_CST))
				ptemu_tlb_apply_requests(self);
			if (ptemu_sched_scheduled())
				ptemu_sched_spin_wait();	/* the target must run to acknowledge */
			else
				sched_yield();
		}
		/* Not acknowledged, so the wait ended on the target leaving guest mode. */
		if (wait[i] && __atomic_load_n(&t->ack_gen, __ATOMIC_SEQ_CST) < gens[i])
			seen_outside_guest(t, gens[i]);
	}
}

/* Is va covered by a posted request that counts as flushed (see ptemu_tlb_maps_pfn)? */
static bool pending_covers(const struct ptemu_tlb *t, uint64_t va, bool table)
{
	bool outside = __atomic_load_n(&t->mode, __ATOMIC_SEQ_CST) == VCPU_OUTSIDE_GUEST;
	uint64_t seen = __atomic_load_n(&t->outside_gen, __ATOMIC_SEQ_CST);

	if (t->flush_all && (outside || t->flush_all_gen <= seen))
		return true;
	for (unsigned r = 0; r < t->nranges; r++)
		if (va >= t->ranges[r].start && va < t->ranges[r].end &&
		    (!table || t->ranges[r].tables) && (outside || t->ranges[r].gen <= seen))
			return true;
	return false;
}

/* Under the lock: false when no entry can map a page of [pfn, pfn + nr); true when one
 * may, or once the probes of each leaf frame would cost more than the scan. */
static bool may_map_frames(const struct ptemu_tlb *t, uint64_t pfn, uint64_t nr)
{
	unsigned budget = t->capacity / 8;

	for (uint64_t sizes = t->leaf_shifts; sizes; sizes &= sizes - 1) {
		unsigned shift = (unsigned)__builtin_ctzll(sizes), order = shift - t->page_shift;

		for (uint64_t f = pfn >> order; f <= (pfn + nr - 1) >> order; f++)
			if (!budget-- || t->frame_count[frame_slot(t, f << order, shift)])
				return true;
	}
	return false;
}

bool ptemu_tlb_maps_pfn(struct ptemu_tlb *t, uint64_t pfn, uint64_t nr, uint64_t *va)
{
	bool found = false;

	pthread_mutex_lock(&t->lock);
	unsigned scan = may_map_frames(t, pfn, nr) ? t->capacity : 0;

	for (unsigned i = 0; i < scan && !found; i++) {
		const struct ptemu_tlb_entry *e = &t->entries[i];

		if (!e->valid || e->ppn >= pfn + nr || e->ppn + (1ull << (e->shift - t->page_shift)) <= pfn)
			continue;
		/* The first page of the entry in the range. */
		uint64_t at = entry_start(e) + ((e->ppn < pfn ? pfn - e->ppn : 0) << t->page_shift);

		if (!pending_covers(t, at, false)) {
			*va = at;
			found = true;
		}
	}
	pthread_mutex_unlock(&t->lock);
	return found;
}

bool ptemu_tlb_caches_table(struct ptemu_tlb *t, uint64_t table_pa, uint64_t *va)
{
	bool found = false;

	pthread_mutex_lock(&t->lock);
	for (unsigned i = 0; i < t->wc_capacity && !found; i++) {
		if (t->wc[i].valid && t->wc[i].table_pa == table_pa &&
		    !pending_covers(t, t->wc[i].pmd_index << t->pmd_shift, true)) {
			*va = t->wc[i].pmd_index << t->pmd_shift;
			found = true;
		}
	}
	pthread_mutex_unlock(&t->lock);
	return found;
}
