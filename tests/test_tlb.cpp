// The logical TLB, the walk cache and the shootdown protocol, without Unicorn.
#include "fixture.h"

#include <ptemu/tlb.h>

#include <atomic>
#include <random>
#include <thread>
#include <vector>

using namespace ptemu_test;

namespace {

struct Tlb : MachineHolder {
	Tlb() : MachineHolder("arm64")
	{
		EXPECT_EQ(ptemu_tlb_init(&t, m), 0);
		t.flush_hw = [](void *c) { static_cast<std::atomic<int> *>(c)->fetch_add(1); };
		t.flush_ctx = &hw_flushes;
	}
	~Tlb() { ptemu_tlb_destroy(&t); }
	bool has(uint64_t va)
	{
		uint64_t pa;
		unsigned perms;
		return ptemu_tlb_lookup(&t, va, &pa, &perms);
	}
	ptemu_tlb t;
	std::atomic<int> hw_flushes{0};
};

const uint64_t kPage = 4096;

} // namespace

TEST(LogicalTlb, FlushedRangeIsRefilledAndNothingOutsideIt)
{
	Tlb x;
	for (uint64_t i = 0; i < 100; i++)
		ptemu_tlb_insert(&x.t, i * kPage, (1000 + i) * kPage, kPage, PTEMU_PROT_READ);
	EXPECT_EQ(x.hw_flushes.load(), 0);
	ptemu_tlb_invalidate(&x.t, 10 * kPage, 20 * kPage, false);
	EXPECT_EQ(x.hw_flushes.load(), 1);  // Unicorn's copy goes whole
	for (uint64_t i = 0; i < 100; i++)
		EXPECT_EQ(x.has(i * kPage + 123), i < 10 || i >= 20) << i;
	uint64_t pa;
	unsigned perms;
	ASSERT_TRUE(ptemu_tlb_lookup(&x.t, 42 * kPage, &pa, &perms));
	EXPECT_EQ(pa, 1042 * kPage);
	// Refill after the flush.
	ptemu_tlb_insert(&x.t, 15 * kPage, 7 * kPage, kPage, PTEMU_PROT_READ | PTEMU_PROT_WRITE);
	ASSERT_TRUE(ptemu_tlb_lookup(&x.t, 15 * kPage, &pa, &perms));
	EXPECT_EQ(pa, 7 * kPage);
	EXPECT_EQ(perms, (unsigned)(PTEMU_PROT_READ | PTEMU_PROT_WRITE));
	// An empty range flushes nothing, not even Unicorn's copy.
	ptemu_tlb_invalidate(&x.t, 500 * kPage, 600 * kPage, false);
	EXPECT_EQ(x.hw_flushes.load(), 1);
}

// An entry is replaced without a flush of Unicorn's TLB when Unicorn cannot hold it: it
// was not handed to Unicorn (by a lookup or an insert) since Unicorn's last flush. Only when
// every entry was is Unicorn's TLB flushed, and that flush starts the next round.
TEST(LogicalTlb, ReplacementTakesEntriesUnicornCannotHoldAndFlushesOnlyWhenItHoldsAll)
{
	Tlb x;
	const unsigned cap = x.t.capacity;
	uint64_t pa;
	unsigned perms;
	for (uint64_t i = 0; i < cap; i++)
		ptemu_tlb_insert(&x.t, i * kPage, i * kPage, kPage, PTEMU_PROT_READ);
	EXPECT_EQ(x.hw_flushes.load(), 0);
	// Every entry was handed to Unicorn: the next miss flushes it and replaces one entry.
	ptemu_tlb_insert(&x.t, cap * kPage, 0, kPage, PTEMU_PROT_READ);
	EXPECT_EQ(x.hw_flushes.load(), 1);
	EXPECT_FALSE(x.has(0));
	EXPECT_TRUE(x.has(1 * kPage));  // the others stay; this lookup hands entry 1 on again
	EXPECT_TRUE(x.has(3 * kPage));
	// The next misses replace the entries not handed on since, in turn, without a flush.
	ptemu_tlb_insert(&x.t, (cap + 1) * kPage, 0, kPage, PTEMU_PROT_READ);
	ptemu_tlb_insert(&x.t, (cap + 2) * kPage, 0, kPage, PTEMU_PROT_READ);
	EXPECT_EQ(x.hw_flushes.load(), 1);
	EXPECT_TRUE(ptemu_tlb_lookup(&x.t, 1 * kPage, &pa, &perms));
	EXPECT_FALSE(x.has(2 * kPage));
	EXPECT_TRUE(ptemu_tlb_lookup(&x.t, 3 * kPage, &pa, &perms));
	EXPECT_FALSE(x.has(4 * kPage));
	// Entry 5, next in turn, was handed on again: the hand passes it and takes entry 6.
	EXPECT_TRUE(ptemu_tlb_lookup(&x.t, 5 * kPage, &pa, &perms));
	ptemu_tlb_insert(&x.t, (cap + 3) * kPage, 0, kPage, PTEMU_PROT_READ);
	EXPECT_TRUE(ptemu_tlb_lookup(&x.t, 5 * kPage, &pa, &perms));
	EXPECT_FALSE(x.has(6 * kPage));
	// Fewer permissions for a page not handed on: Unicorn cannot hold the old ones.
	ptemu_tlb_insert(&x.t, 7 * kPage, 7 * kPage, kPage, 0);
	EXPECT_EQ(x.hw_flushes.load(), 1);
	// For a page handed on, Unicorn may: it is flushed.
	ptemu_tlb_insert(&x.t, 3 * kPage, 3 * kPage, kPage, 0);
	EXPECT_EQ(x.hw_flushes.load(), 2);
	// Invalidations flush Unicorn's TLB only for entries it may hold.
	ptemu_tlb_invalidate(&x.t, 8 * kPage, 9 * kPage, false);
	EXPECT_EQ(x.hw_flushes.load(), 2);
	EXPECT_FALSE(x.has(8 * kPage));
	EXPECT_TRUE(x.has(9 * kPage));
	ptemu_tlb_invalidate(&x.t, 9 * kPage, 10 * kPage, true);
	EXPECT_EQ(x.hw_flushes.load(), 3);
	// Once each entry was handed on again, a miss flushes again.
	for (unsigned i = 0; i < cap; i++) {
		uint64_t va = (cap + 10 + i) * kPage;
		ptemu_tlb_insert(&x.t, va, 0, kPage, PTEMU_PROT_READ);
	}
	EXPECT_EQ(x.hw_flushes.load(), 3);
	ptemu_tlb_insert(&x.t, 3 * cap * kPage, 0, kPage, PTEMU_PROT_READ);
	EXPECT_EQ(x.hw_flushes.load(), 4);
}

// A block or huge leaf is one entry, as in the modelled MMUs' TLBs: every base page of it
// translates from that entry, an invalidation of any page inside drops the whole leaf, and
// the checker sees every page of it as mapped.
TEST(LogicalTlb, AHugeLeafIsOneEntryForEveryPageOfIt)
{
	Tlb x;
	const uint64_t huge = 2ull << 20, va = 5 * huge, pa = 40 * huge;
	ptemu_tlb_insert(&x.t, va + 17 * kPage + 5, pa + 17 * kPage + 5, huge, PTEMU_PROT_READ);
	unsigned used = 0;
	for (unsigned e = 0; e < x.t.capacity; e++)
		used += x.t.entries[e].valid;
	EXPECT_EQ(used, 1u);
	uint64_t got;
	unsigned perms;
	for (uint64_t page : {0ull, 1ull, 17ull, 511ull}) {
		ASSERT_TRUE(ptemu_tlb_lookup(&x.t, va + page * kPage + 9, &got, &perms)) << page;
		EXPECT_EQ(got, pa + page * kPage) << page;
	}
	EXPECT_FALSE(x.has(va + huge));
	EXPECT_FALSE(x.has(va - kPage));
	uint64_t at;
	ASSERT_TRUE(ptemu_tlb_maps_pfn(&x.t, (pa >> 12) + 300, 1, &at));
	EXPECT_EQ(at, va + 300 * kPage);
	EXPECT_FALSE(ptemu_tlb_maps_pfn(&x.t, (pa + huge) >> 12, 1, &at));
	// A base page's entry inside the leaf's range wins over the leaf (the smallest first).
	ptemu_tlb_insert(&x.t, va + 3 * kPage, 7 * kPage, kPage, PTEMU_PROT_READ);
	ASSERT_TRUE(ptemu_tlb_lookup(&x.t, va + 3 * kPage, &got, &perms));
	EXPECT_EQ(got, 7 * kPage);
	// One page of the leaf invalidated: the leaf goes, and so does Unicorn's copy.
	ptemu_tlb_invalidate(&x.t, va + 100 * kPage, va + 101 * kPage, false);
	EXPECT_EQ(x.hw_flushes.load(), 1);
	EXPECT_FALSE(x.has(va));
	EXPECT_FALSE(x.has(va + 511 * kPage));
	EXPECT_TRUE(x.has(va + 3 * kPage));
	// A range larger than the TLB is scanned, leaf by leaf of either size.
	ptemu_tlb_insert(&x.t, va, pa, huge, PTEMU_PROT_READ);
	ptemu_tlb_invalidate(&x.t, 0, 1ull << 40, false);
	EXPECT_FALSE(x.has(va));
	EXPECT_FALSE(x.has(va + 3 * kPage));
}

// ptemu_tlb_maps_pfn, asked at every page freed, skips its scan when the frame filter
// counts no entry for the page. Through inserts of base pages and huge leaves, re-inserts
// of a page at another frame, replacements of a full TLB and invalidations, it answers as
// a scan of every entry does, for single frames and whole huge frames; and the filter
// counts each valid entry once (a lost decrement would only slow it, a lost increment
// would hide a freed page the TLB maps).
TEST(LogicalTlb, FreedFrameCheckAnswersAsAScanOfEveryEntry)
{
	Tlb x;
	const uint64_t huge = 2ull << 20, frames = 8192;
	std::mt19937_64 rng(7);
	auto scan = [&](uint64_t pfn, uint64_t nr) {
		for (unsigned i = 0; i < x.t.capacity; i++) {
			const ptemu_tlb_entry &e = x.t.entries[i];
			if (e.valid && e.ppn < pfn + nr && e.ppn + (1ull << (e.shift - 12)) > pfn)
				return true;
		}
		return false;
	};
	for (int round = 0; round < 40; round++) {
		for (int op = 0; op < 200; op++) {
			uint64_t r = rng() % 100;
			if (r < 80)
				ptemu_tlb_insert(&x.t, (rng() % 4096) * kPage, (rng() % frames) * kPage, kPage,
						 PTEMU_PROT_READ);
			else if (r < 90)
				ptemu_tlb_insert(&x.t, (1ull << 30) + (rng() % 64) * huge,
						 (rng() % (frames / 512)) * huge, huge, PTEMU_PROT_READ);
			else {
				uint64_t start = (rng() % 4096) * kPage;
				ptemu_tlb_invalidate(&x.t, start, start + (rng() % 64 + 1) * kPage, false);
			}
		}
		uint64_t valid = 0, counted = 0;
		for (unsigned i = 0; i < x.t.capacity; i++)
			valid += x.t.entries[i].valid;
		for (unsigned i = 0; i < x.t.nbuckets; i++)
			counted += x.t.frame_count[i];
		ASSERT_EQ(counted, valid) << "round " << round;
		uint64_t va;
		for (uint64_t f = 0; f < frames; f++)
			ASSERT_EQ(ptemu_tlb_maps_pfn(&x.t, f, 1, &va), scan(f, 1)) << "frame " << f << ", round " << round;
		for (uint64_t f = 0; f < frames; f += 512)
			ASSERT_EQ(ptemu_tlb_maps_pfn(&x.t, f, 512, &va), scan(f, 512)) << "frames " << f << "+512, round " << round;
	}
	// A range with more frames than the probes cost is scanned: its one mapped frame is the
	// last of 512 (a probe per frame would stop before it), or there is none.
	ptemu_tlb_invalidate(&x.t, 0, 1ull << 40, false);
	ptemu_tlb_insert(&x.t, 0, (frames + 511) * kPage, kPage, PTEMU_PROT_READ);
	uint64_t va;
	EXPECT_TRUE(ptemu_tlb_maps_pfn(&x.t, frames, 512, &va));
	EXPECT_FALSE(ptemu_tlb_maps_pfn(&x.t, frames + 512, 512, &va));
}

// A range invalidation, whichever way it goes (a probe per leaf, the chains of the PMD
// ranges it covers, or a scan of every entry), drops exactly the leaves that overlap the
// range, keeps every other, flushes Unicorn's TLB exactly when a dropped leaf was handed to
// it, and leaves each region chain holding exactly the small leaves of its PMD ranges.
TEST(LogicalTlb, RangeInvalidationDropsExactlyTheOverlappingLeaves)
{
	Tlb x;
	const uint64_t pmd = 2ull << 20, huge = pmd, window = 8 * pmd;
	std::mt19937_64 rng(11);
	struct Leaf {
		bool valid;
		uint64_t vpn;
		uint8_t shift;
	};
	auto first = [](const Leaf &l) { return l.vpn << l.shift; };
	auto last = [&](const Leaf &l) { return first(l) + ((1ull << l.shift) - 1); };
	unsigned by_way[3] = {0, 0, 0};	// ranges of 1 page, within a few PMDs, of everything
	for (int op = 0; op < 20000; op++) {
		uint64_t r = rng() % 100;
		if (r < 85) {
			// Dense in a window of 8 PMD ranges, so that chains hold hundreds of leaves.
			uint64_t va = (rng() % (window / kPage)) * kPage;
			if (rng() % 3 == 0)
				x.has(va);	// hands the leaf to Unicorn again, if it is there
			else
				ptemu_tlb_insert(&x.t, va, (rng() % 8192) * kPage, kPage, PTEMU_PROT_READ);
			continue;
		}
		if (r < 88) {
			ptemu_tlb_insert(&x.t, window + (rng() % 8) * huge, (rng() % 16) * huge, huge, PTEMU_PROT_READ);
			continue;
		}
		uint64_t start, len;
		switch (rng() % 3) {
		case 0:
			start = (rng() % (window / kPage)) * kPage, len = kPage;
			by_way[0]++;
			break;
		case 1:
			start = (rng() % (window / kPage)) * kPage, len = (rng() % (3 * pmd / kPage) + 1) * kPage;
			by_way[1]++;
			break;
		default:
			start = 0, len = 1ull << 40;
			by_way[2]++;
		}
		std::vector<Leaf> before(x.t.capacity);
		bool handed_dropped = false;
		for (unsigned i = 0; i < x.t.capacity; i++) {
			const ptemu_tlb_entry &e = x.t.entries[i];
			before[i] = {e.valid, e.vpn, e.shift};
			if (e.valid && first(before[i]) < start + len && last(before[i]) >= start &&
			    e.fill_epoch == x.t.fill_epoch)
				handed_dropped = true;
		}
		int flushes = x.hw_flushes.load();
		ptemu_tlb_invalidate(&x.t, start, start + len, false);
		ASSERT_EQ(x.hw_flushes.load() - flushes, handed_dropped ? 1 : 0) << "op " << op;
		for (unsigned i = 0; i < x.t.capacity; i++) {
			const Leaf &b = before[i];
			bool overlaps = b.valid && first(b) < start + len && last(b) >= start;
			ASSERT_EQ(x.t.entries[i].valid, b.valid && !overlaps)
				<< "op " << op << ", slot " << i << ", leaf " << std::hex << first(b) << " of 2^"
				<< std::dec << unsigned(b.shift) << ", range " << std::hex << start << "+" << len;
		}
		uint64_t small = 0, chained = 0;
		for (unsigned i = 0; i < x.t.capacity; i++)
			small += x.t.entries[i].valid && x.t.entries[i].shift < x.t.pmd_shift;
		for (unsigned c = 0; c < x.t.capacity; c++) {
			uint64_t n = 0;
			for (int32_t i = x.t.region_chains[c]; i >= 0; i = x.t.entries[i].rnext, n++)
				ASSERT_TRUE(x.t.entries[i].valid && x.t.entries[i].shift < x.t.pmd_shift) << "op " << op;
			ASSERT_EQ(n, x.t.region_count[c]) << "op " << op << ", chain " << c;
			chained += n;
		}
		ASSERT_EQ(chained, small) << "op " << op;
	}
	for (unsigned w : by_way)
		EXPECT_GT(w, 100u);
}

// --tlb-entries: a power of two in range, else the machine is refused with the reason.
TEST(LogicalTlb, ItsSizeIsTheMachinesAndOnlyAPowerOfTwoInRangeIsAccepted)
{
	char err[256] = "";
	ptemu_machine_config mc{};
	mc.arch = ptemu_arch_find("arm64");
	mc.phys_bytes = 64ull << 20;
	for (unsigned bad : {8u, 100u, 1u << 17}) {
		mc.tlb_entries = bad;
		EXPECT_EQ(ptemu_machine_create(&mc, err, sizeof(err)), nullptr) << bad;
		EXPECT_NE(std::string(err).find("power of two"), std::string::npos) << err;
	}
	mc.tlb_entries = 64;
	ptemu_machine *m = ptemu_machine_create(&mc, err, sizeof(err));
	ASSERT_NE(m, nullptr) << err;
	ptemu_tlb t;
	ASSERT_EQ(ptemu_tlb_init(&t, m), 0);
	EXPECT_EQ(t.capacity, 64u);
	ptemu_tlb_destroy(&t);
	ptemu_machine_destroy(m);
}

TEST(LogicalTlb, WalkCacheEntryIsUsedUntilTablesAreInvalidated)
{
	Tlb x;
	const uint64_t pmd = 2ull << 20;
	uint64_t table;
	ptemu_walk_cache_insert(&x.t, 3 * pmd + 5 * kPage, 0xabc000);
	ASSERT_TRUE(ptemu_walk_cache_lookup(&x.t, 3 * pmd + 99 * kPage, &table));
	EXPECT_EQ(table, 0xabc000u);
	EXPECT_FALSE(ptemu_walk_cache_lookup(&x.t, 4 * pmd, &table));
	ptemu_tlb_invalidate(&x.t, 3 * pmd, 4 * pmd, false);  // leaf-only: the cache stays
	EXPECT_TRUE(ptemu_walk_cache_lookup(&x.t, 3 * pmd, &table));
	uint64_t va;
	EXPECT_TRUE(ptemu_tlb_caches_table(&x.t, 0xabc000, &va));
	ptemu_tlb_invalidate(&x.t, 3 * pmd + kPage, 3 * pmd + 2 * kPage, true);
	EXPECT_FALSE(ptemu_walk_cache_lookup(&x.t, 3 * pmd, &table));
	EXPECT_FALSE(ptemu_tlb_caches_table(&x.t, 0xabc000, &va));
}

TEST(LogicalTlb, PostedRequestCountsAsFlushedForTheChecker)
{
	Tlb x;
	ptemu_tlb_insert(&x.t, 8 * kPage, 77 * kPage, kPage, PTEMU_PROT_READ);
	uint64_t va;
	EXPECT_TRUE(ptemu_tlb_maps_pfn(&x.t, 77, 1, &va));
	EXPECT_EQ(va, 8 * kPage);
	// The vCPU is outside guest mode: the initiator posts and does not wait.
	ptemu_tlb *target = &x.t;
	ptemu_tlb_shootdown(&target, 1, nullptr, 8 * kPage, 9 * kPage, false);
	EXPECT_FALSE(ptemu_tlb_maps_pfn(&x.t, 77, 1, &va));
	EXPECT_TRUE(x.has(8 * kPage));  // not applied yet...
	ptemu_tlb_enter_guest(&x.t);    // ...until it re-enters
	EXPECT_FALSE(x.has(8 * kPage));
	EXPECT_EQ(x.t.ack_gen, x.t.req_gen);
	ptemu_tlb_leave_guest(&x.t);
}

// DESIGN.md section 3: a vCPU in guest mode goes on using its entries until it acknowledges
// the request, so for it only the acknowledgement counts as flushed.
TEST(LogicalTlb, PostedRequestCountsAsFlushedForAVcpuInGuestModeOnlyOnceAcknowledged)
{
	Tlb x;
	const uint64_t pmd = 2ull << 20;
	ptemu_tlb_insert(&x.t, 8 * kPage, 77 * kPage, kPage, PTEMU_PROT_READ);
	ptemu_walk_cache_insert(&x.t, 8 * kPage, 0xabc000);
	ptemu_tlb_enter_guest(&x.t);
	ptemu_tlb *target = &x.t;
	std::thread initiator([&] { ptemu_tlb_shootdown(&target, 1, nullptr, 0, pmd, true); });
	while (__atomic_load_n(&x.t.req_gen, __ATOMIC_SEQ_CST) == 0)
		std::this_thread::yield();
	uint64_t va;
	EXPECT_TRUE(ptemu_tlb_maps_pfn(&x.t, 77, 1, &va));  // posted, not acknowledged
	EXPECT_TRUE(ptemu_tlb_caches_table(&x.t, 0xabc000, &va));
	ptemu_tlb_apply_requests(&x.t);  // the kick, polled
	initiator.join();
	EXPECT_FALSE(ptemu_tlb_maps_pfn(&x.t, 77, 1, &va));
	EXPECT_FALSE(ptemu_tlb_caches_table(&x.t, 0xabc000, &va));
	ptemu_tlb_leave_guest(&x.t);
}

// A request its initiator saw posted to a vCPU outside guest mode counts as flushed even
// once the vCPU has stored IN_GUEST: it reads its requests before it runs guest code.
TEST(LogicalTlb, RequestSeenOutsideGuestModeCountsAsFlushedWhileTheVcpuEnters)
{
	Tlb x;
	ptemu_tlb_insert(&x.t, 8 * kPage, 77 * kPage, kPage, PTEMU_PROT_READ);
	ptemu_tlb *target = &x.t;
	ptemu_tlb_shootdown(&target, 1, nullptr, 8 * kPage, 9 * kPage, false);
	__atomic_store_n(&x.t.mode, VCPU_IN_GUEST, __ATOMIC_SEQ_CST);  // entering, not yet read
	uint64_t va;
	EXPECT_FALSE(ptemu_tlb_maps_pfn(&x.t, 77, 1, &va));
	ptemu_tlb_apply_requests(&x.t);
	EXPECT_FALSE(x.has(8 * kPage));
	ptemu_tlb_leave_guest(&x.t);
}

// Many initiators; two vCPUs that stay in guest mode (polling kicks as the block hook does)
// and one stuck outside it (in a syscall or fault, never polling). Every flush has reached
// the in-guest vCPUs when its initiator returns (no lost flush), and nobody waits for the
// one outside (no deadlock).
TEST(Shootdown, NoLostFlushUnderConcurrentInitiatorsAndNoDeadlock)
{
	MachineHolder h("arm64");
	const int kIn = 2, kInitiators = 3, kRounds = 300;
	std::vector<ptemu_tlb> tlbs(kIn + 1);
	for (auto &t : tlbs)
		ASSERT_EQ(ptemu_tlb_init(&t, h.m), 0);
	for (int i = 0; i < kIn; i++)
		for (uint64_t p = 0; p < (uint64_t)kInitiators * kRounds; p++)
			ptemu_tlb_insert(&tlbs[i], p * kPage, p * kPage, kPage, PTEMU_PROT_READ);
	std::atomic<bool> done{false};
	std::vector<std::thread> vcpus;
	for (int i = 0; i < kIn; i++) {
		vcpus.emplace_back([&, i] {
			ptemu_tlb *t = &tlbs[i];
			ptemu_tlb_enter_guest(t);
			while (!done)
				if (__atomic_load_n(&t->kick, __ATOMIC_ACQUIRE))
					ptemu_tlb_apply_requests(t);
			ptemu_tlb_leave_guest(t);
		});
	}
	// Initiators start once those vCPUs are in guest mode: before that they count as
	// outside, are not waited for, and would apply the flushes only on entry.
	for (int i = 0; i < kIn; i++)
		while (__atomic_load_n(&tlbs[i].mode, __ATOMIC_SEQ_CST) != VCPU_IN_GUEST)
			std::this_thread::yield();
	auto still_maps = [&](int i, uint64_t va) {
		bool found = false;
		pthread_mutex_lock(&tlbs[i].lock);
		for (unsigned e = 0; e < tlbs[i].capacity; e++)
			found |= tlbs[i].entries[e].valid && tlbs[i].entries[e].vpn == va / kPage;
		pthread_mutex_unlock(&tlbs[i].lock);
		return found;
	};
	std::atomic<int> lost{0};
	std::vector<std::thread> inits;
	for (int k = 0; k < kInitiators; k++) {
		inits.emplace_back([&, k] {
			std::vector<ptemu_tlb *> targets;
			for (auto &t : tlbs)
				targets.push_back(&t);
			for (int r = 0; r < kRounds; r++) {
				uint64_t va = (uint64_t)(k * kRounds + r) * kPage;
				ptemu_tlb_shootdown(targets.data(), (unsigned)targets.size(), nullptr, va,
						    va + kPage, false);
				for (int i = 0; i < kIn; i++)
					lost += still_maps(i, va);
			}
		});
	}
	for (auto &t : inits)
		t.join();
	done = true;
	for (auto &t : vcpus)
		t.join();
	EXPECT_EQ(lost.load(), 0);
	// The vCPU that was outside applies everything when it enters.
	ptemu_tlb &outside = tlbs[kIn];
	EXPECT_LT(outside.ack_gen, outside.req_gen);
	ptemu_tlb_enter_guest(&outside);
	EXPECT_EQ(outside.ack_gen, outside.req_gen);
	for (auto &t : tlbs)
		ptemu_tlb_destroy(&t);
}
