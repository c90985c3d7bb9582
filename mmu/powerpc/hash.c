/* ppc64-hash: the POWER hashed page table as Linux v6.6 drives it with 64 KiB pages
 * (kernel-spec 2.3; asm/book3s/64/hash-64k.h, mm/book3s64/hash_utils.c, hash_64k.c,
 * hash_hugepage.c, hash_tlb.c, hash_pgtable.c).
 *
 * The Linux tables, index sizes 8/10/10/8 (PGD to PTE), hold book3s64 Linux PTEs that the
 * MMU never reads. A PTE fragment is 4 KiB, 16 to a page: 256 PTEs, then 256 words of hash
 * slot (hidx) for them (pte_set_hidx at ptep + PTRS_PER_PTE). A PMD maps 16 MiB, the THP
 * size; the PMD table's second half holds each huge pmd's deposited table, whose bytes
 * are the slot array of the THP's 64 KiB pieces (get_hpte_slot_array).
 *
 * The hardware: one hashed page table (HPT) per machine in simulated memory, 128 groups
 * (PTEGs) of 8 HPTEs of 16 bytes. A TLB miss searches the primary group, hash =
 * vsid ^ page index in the 256 MiB segment, then the secondary (~hash). An HPT miss, or a
 * store to a read-only HPTE, runs hash_page with interrupts off (an RCU reader): the
 * lockless walk of the Linux tables, then the handshake on the PTE (one compare-and-swap
 * sets H_PAGE_BUSY with ACCESSED, and DIRTY for a store, if the PTE is present and allows
 * the access), the HPTE insert (primary group, secondary, else evict a pseudo-random entry and
 * try again), the slot recorded, BUSY cleared by the final store of the PTE.
 *
 * Invalidation is driven by the PTE changes themselves: every pte_update of a PTE with
 * H_PAGE_HASHPTE flushes its HPTE by the recorded slot and issues tlbie for the page
 * (hpte_need_flush; batched in lazy-MMU mode, as the per-CPU ppc64_tlb_batch), and core's
 * pte_update spins while BUSY. flush_tlb_range and friends are empty on hash. tlbie waits
 * for translations in flight in hardware, not for a hash_page: that is what BUSY and
 * serialize_against_pte_lookup are for. An evicted HPTE gets no tlbie (the PTE still maps
 * the page); a flush by slot always does, whether or not the HPTE was still there.
 *
 * Simplifications, none on a path the protocol depends on: a THP piece is hashed as its
 * own 64 KiB HPTE (the kernel's is a 16 MiB page entered at each 64 KiB piece's hash);
 * the HPTE's first doubleword keeps the whole 64 KiB virtual page number; the VSID is a
 * scramble of the pgd's page frame and the segment (the kernel's context id and ESID),
 * a bijection, so that no two address spaces share a VSID; PUD and PMD tables are whole
 * pages (the kernel takes them from caches and fragments) and the PMD table's page holds
 * its deposit half; updatepp (a permission upgrade in place) issues no tlbie, as the old
 * translation only allowed less.
 */
#include "book3s64.h"

#include <elf.h>
#include <stdio.h>
#include <string.h>

#include <capstone/capstone.h>
#include <unicorn/unicorn.h>

#include <ptemu/inject.h>
#include <ptemu/machine.h>
#include <ptemu/mm.h>
#include <ptemu/mmu_gather.h>
#include <ptemu/pgtable.h>
#include <ptemu/phys.h>
#include <ptemu/rcu.h>
#include <ptemu/sched.h>

#define HASH_PTE_LEVEL		3
#define HASH_PMD_LEVEL		2
#define H_PTRS_PER_PTE		256u
#define H_PTRS_PER_PMD		1024u
#define H_PTE_TABLE_SIZE	(H_PTRS_PER_PTE * 8u)	/* the PTEs; the hidx half follows */
#define H_PMD_TABLE_SIZE	(H_PTRS_PER_PMD * 8u)
#define H_PMD_SHIFT		24
#define H_PMD_SIZE		(1ull << H_PMD_SHIFT)
#define H_PAGE_SIZE		(1ull << BOOK3S64_PAGE_SHIFT)

/* The hash bits of the Linux PTE (hash-64k.h and hash.h, v6.6). */
#define H_PAGE_COMBO		0x0000000000001000ull	/* _RPAGE_RPN0: 4 KiB subpages */
#define H_PAGE_THP_HUGE		0x0000000000002000ull	/* _RPAGE_RPN1 (H_PAGE_4K_PFN) */
#define H_PAGE_HASHPTE		0x0080000000000000ull	/* _RPAGE_RPN43: an HPTE may exist */
#define H_PAGE_BUSY		0x1000000000000000ull	/* _RPAGE_RSV1: hash_page at work */
#define H_PAGE_HPTEFLAGS	(H_PAGE_BUSY | H_PAGE_HASHPTE | H_PAGE_COMBO)
#define H_PMD_BAD_BITS		(H_PTE_TABLE_SIZE * 2 - 1)	/* PTE_TABLE_SIZE - 1 */
#define H_PUD_BAD_BITS		(H_PMD_TABLE_SIZE * 2 - 1)

/* The HPT: 128 PTEGs of 8 HPTEs (16 KiB of one page), small beside the kernel's (at least
 * 256 KiB) as the simulated memory is, so that groups overflow and evictions happen. */
#define HPT_GROUPS		128u
#define HPTES_PER_GROUP		8u
#define HPTE_BYTES		16u
#define HPT_BYTES		(HPT_GROUPS * HPTES_PER_GROUP * HPTE_BYTES)
#define HPTE_V_VALID		0x1ull
#define HPTE_V_SECONDARY	0x2ull
#define HPTE_V_LOCK		0x8ull		/* HPTE_LOCK_BIT: software, ignored by the MMU */
#define HPTE_V_AVPN_SHIFT	12
#define HPTE_R_RPN_MASK		PPC_PTE_RPN_MASK
#define HPTE_R_R		0x100ull
#define HPTE_R_C		0x080ull
#define HPTE_R_N		0x004ull	/* no execute */
#define HPTE_R_PP		0x003ull

/* Segments of 256 MiB; VSIDs as vsid_scramble: a multiplier prime to 2^37 - 1. */
#define SID_SHIFT		28
#define ESID_BITS		19
#define VSID_MULTIPLIER		12538073ull
#define VSID_MODULUS		((1ull << 37) - 1)
#define VSID_MULTIPLIER_INV	61768091059ull	/* its inverse modulo VSID_MODULUS */
#define VPN_SHIFT		12

/* The hidx nibble: the secondary group bit and the slot in the group, kept plus one so
 * that 0 means none (HIDX_SHIFT_BY_ONE). */
#define HIDX_SECONDARY		0x8u
#define HIDX_GROUP_IX		0x7u

/* ---- entries ------------------------------------------------------------------------- */

static uint64_t hash_none_entry(unsigned level)
{
	(void)level;
	return 0;
}

/* A directory entry is _PAGE_PRESENT | the next table's address, nothing in the bits the
 * next table's alignment leaves free (hash__pmd_bad: a 4 KiB fragment; hash__pud_bad: a
 * doubled PMD table); a leaf is _PAGE_PTE. */
static enum ptemu_entry_kind hash_classify(unsigned level, uint64_t entry, uint64_t *table_pa)
{
	/* hash__p4d_bad is only a zero entry: the PGD level checks no alignment. */
	uint64_t bad = level == HASH_PMD_LEVEL ? H_PMD_BAD_BITS : level ? H_PUD_BAD_BITS : 0;

	if (!entry)
		return PTEMU_ENTRY_NONE;
	if (entry & PPC_PAGE_PTE) {
		if (level != HASH_PMD_LEVEL)
			return PTEMU_ENTRY_BAD;	/* no PUD leaves: no 16 GiB pages here */
		if ((entry & (PPC_PAGE_PRESENT | PPC_PAGE_INVALID)) && (entry & H_PAGE_THP_HUGE))
			return PTEMU_ENTRY_LEAF;
		return entry & (PPC_PAGE_PRESENT | PPC_PAGE_INVALID) ? PTEMU_ENTRY_BAD :
								      PTEMU_ENTRY_MIGRATION;
	}
	if (level == HASH_PTE_LEVEL || !(entry & PPC_PAGE_PRESENT) ||
	    (entry & ~PPC_PMD_MASKED_BITS & bad) || (entry & PPC_PMD_MASKED_BITS & ~PPC_PAGE_PRESENT))
		return PTEMU_ENTRY_BAD;
	if (table_pa)
		*table_pa = entry & ~PPC_PMD_MASKED_BITS;
	return PTEMU_ENTRY_TABLE;
}

static uint64_t hash_mk_table(unsigned level, uint64_t table_pa)
{
	(void)level;
	return PPC_PAGE_PRESENT | table_pa;
}

/* hash__pte_none: a cleared PTE may keep its hash bookkeeping. */
static bool hash_pte_none(uint64_t pte)
{
	return !(pte & ~H_PAGE_HPTEFLAGS);
}

/* vm_get_page_prot on hash: protection_map maps execute-only to read and execute (only
 * radix has execute-only pages). */
static uint64_t hash_mk_pte(struct ptemu_leaf leaf)
{
	if (leaf.flags & PTEMU_PROT_EXEC)
		leaf.flags |= PTEMU_PROT_READ;
	return book3s64_mk_pte(leaf);
}

/* hash__pmd_mkhuge: _PAGE_PTE | H_PAGE_THP_HUGE. */
static uint64_t hash_mk_pmd_leaf(struct ptemu_leaf leaf)
{
	return hash_mk_pte(leaf) | H_PAGE_THP_HUGE;
}

/* ---- the HPT ------------------------------------------------------------------------- */

static uint64_t context_vsid(const struct mm_struct *mm, uint64_t ea)
{
	uint64_t proto = (mm->pgd_pa >> BOOK3S64_PAGE_SHIFT) << ESID_BITS |
			 ((ea >> SID_SHIFT) & ((1ull << ESID_BITS) - 1));

	return (proto * VSID_MULTIPLIER) % VSID_MODULUS;
}

/* hpt_vpn: the virtual page number in 4 KiB units; a 64 KiB page's has its low 4 bits 0. */
static uint64_t hpt_vpn(const struct mm_struct *mm, uint64_t ea)
{
	return context_vsid(mm, ea) << (SID_SHIFT - VPN_SHIFT) |
	       ((ea & ((1ull << SID_SHIFT) - 1) & ~(H_PAGE_SIZE - 1)) >> VPN_SHIFT);
}

/* hpt_hash for a 256 MiB segment and 64 KiB pages: vsid ^ the page index. */
static uint64_t hpt_hash(uint64_t vpn)
{
	uint64_t mask = (1ull << (SID_SHIFT - VPN_SHIFT)) - 1;

	return (vpn >> (SID_SHIFT - VPN_SHIFT)) ^ ((vpn & mask) >> (BOOK3S64_PAGE_SHIFT - VPN_SHIFT));
}

static uint64_t hpte_v_of(uint64_t vpn, bool secondary)
{
	return (vpn >> (BOOK3S64_PAGE_SHIFT - VPN_SHIFT)) << HPTE_V_AVPN_SHIFT |
	       (secondary ? HPTE_V_SECONDARY : 0) | HPTE_V_VALID;
}

static bool hpte_matches(uint64_t v, uint64_t vpn)
{
	return (v & HPTE_V_VALID) &&
	       v >> HPTE_V_AVPN_SHIFT == vpn >> (BOOK3S64_PAGE_SHIFT - VPN_SHIFT);
}

static uint64_t hpte_group_pa(const struct ptemu_machine *m, uint64_t hash, bool secondary)
{
	return m->arch_mem_pa + ((secondary ? ~hash : hash) & (HPT_GROUPS - 1)) * HPTES_PER_GROUP * HPTE_BYTES;
}

/* The slot an hidx names: the group the hash and its secondary bit give, the index in it. */
static uint64_t hpte_slot_pa(const struct ptemu_machine *m, uint64_t vpn, unsigned hidx)
{
	return hpte_group_pa(m, hpt_hash(vpn), hidx & HIDX_SECONDARY) +
	       (hidx & HIDX_GROUP_IX) * HPTE_BYTES;
}

static bool hpte_trylock(const struct ptemu_machine *m, uint64_t hpte, uint64_t *v)
{
	*v = ptemu_entry_load(m, hpte);
	return !(*v & HPTE_V_LOCK) && ptemu_entry_cmpxchg(m, hpte, *v, *v | HPTE_V_LOCK);
}

static uint64_t hpte_lock(const struct ptemu_machine *m, uint64_t hpte)
{
	uint64_t v;

	while (!hpte_trylock(m, hpte, &v))
		if (ptemu_sched_scheduled())
			ptemu_sched_spin_wait();
	return v;
}

/* The MMU's search: an entry of either group whose AVPN and secondary bit match. The
 * second doubleword is taken only if the first is unchanged around its read, as one
 * 16-byte load would see the pair. */
static bool hpt_search(const struct ptemu_machine *m, uint64_t vpn, uint64_t *r)
{
	uint64_t hash = hpt_hash(vpn);

	for (unsigned sec = 0; sec < 2; sec++) {
		uint64_t group = hpte_group_pa(m, hash, sec);

		for (unsigned i = 0; i < HPTES_PER_GROUP; i++) {
			uint64_t hpte = group + i * HPTE_BYTES, v = ptemu_entry_load(m, hpte);

			if (!hpte_matches(v, vpn) || !(v & HPTE_V_SECONDARY) != !sec)
				continue;
			*r = ptemu_entry_load(m, hpte + 8);
			if ((ptemu_entry_load(m, hpte) & ~HPTE_V_LOCK) == (v & ~HPTE_V_LOCK))
				return true;
		}
	}
	return false;
}

/* native_hpte_insert: the first invalid entry of the group, locked, its second doubleword
 * written, then the first (which unlocks). The slot in the group, or -1 when full. */
static int hpte_insert(const struct ptemu_machine *m, uint64_t group, uint64_t vpn, uint64_t r,
		       bool secondary)
{
	for (unsigned i = 0; i < HPTES_PER_GROUP; i++) {
		uint64_t hpte = group + i * HPTE_BYTES, v;

		if (ptemu_entry_load(m, hpte) & HPTE_V_VALID || !hpte_trylock(m, hpte, &v))
			continue;
		if (v & HPTE_V_VALID) {
			ptemu_entry_store(m, hpte, v);
			continue;
		}
		ptemu_entry_store(m, hpte + 8, r);
		ptemu_entry_store(m, hpte, hpte_v_of(vpn, secondary));
		return (int)i;
	}
	return -1;
}

/* native_hpte_remove: a valid entry from a pseudo-random start (the kernel's timebase,
 * here the vpn, so that a replay evicts the same), invalidated without tlbie. */
static void hpte_remove(struct ptemu_machine *m, uint64_t group, uint64_t vpn)
{
	unsigned start = (unsigned)(vpn >> 4 ^ vpn >> 9) & (HPTES_PER_GROUP - 1);

	for (unsigned k = 0; k < HPTES_PER_GROUP; k++) {
		uint64_t hpte = group + ((start + k) & (HPTES_PER_GROUP - 1)) * HPTE_BYTES, v;

		if (!(ptemu_entry_load(m, hpte) & HPTE_V_VALID))
			continue;
		v = hpte_lock(m, hpte);
		if (!(v & HPTE_V_VALID)) {
			ptemu_entry_store(m, hpte, v);
			continue;
		}
		ptemu_entry_store(m, hpte, 0);
		ptemu_stat_add(&m->stats, PTEMU_STAT_hpte_evictions, 1);
		return;
	}
}

/* native_hpte_updatepp: new protection in place if the slot still holds vpn; else -1. */
static int hpte_updatepp(const struct ptemu_machine *m, uint64_t hpte, uint64_t vpn, uint64_t r)
{
	uint64_t v = hpte_lock(m, hpte);

	if (!hpte_matches(v, vpn)) {
		ptemu_entry_store(m, hpte, v);
		return -1;
	}
	ptemu_entry_store(m, hpte + 8, r);
	ptemu_entry_store(m, hpte, v);
	return 0;
}

/* native_hpte_invalidate: the slot cleared if it still holds vpn (it may have been
 * evicted and refilled meanwhile); the caller issues the tlbie either way. */
static void hpte_invalidate(struct ptemu_machine *m, uint64_t hpte, uint64_t vpn)
{
	uint64_t v = hpte_lock(m, hpte);

	if (!hpte_matches(v, vpn)) {
		ptemu_entry_store(m, hpte, v);
		return;
	}
	ptemu_entry_store(m, hpte, 0);
	ptemu_stat_add(&m->stats, PTEMU_STAT_hpte_invalidations, 1);
}

/* htab_convert_pte_flags for a user page: PP 0b010 read/write, 0b011 read-only (a clean
 * writable page too, so that its first store comes back to set DIRTY), 0b000 no access
 * (PAGE_NONE is _PAGE_PRIVILEGED); N without execute; R always, C if dirty. */
static uint64_t hpte_r_of(uint64_t pte, uint64_t pa)
{
	uint64_t r = (pa & HPTE_R_RPN_MASK) | HPTE_R_R;

	if (!(pte & PPC_PAGE_EXEC))
		r |= HPTE_R_N;
	if (!(pte & PPC_PAGE_PRIVILEGED)) {
		if (pte & (PPC_PAGE_READ | PPC_PAGE_WRITE | PPC_PAGE_EXEC))
			r |= 0x2;
		if (!((pte & PPC_PAGE_WRITE) && (pte & PPC_PAGE_DIRTY)))
			r |= 0x1;
	}
	if (pte & PPC_PAGE_DIRTY)
		r |= HPTE_R_C;
	return r;
}

static unsigned hpte_perms(uint64_t r)
{
	unsigned pp = (unsigned)(r & HPTE_R_PP), p = 0;

	if (pp == 2 || pp == 3)
		p = PTEMU_PROT_READ | (r & HPTE_R_N ? 0 : PTEMU_PROT_EXEC);
	if (pp == 2)
		p |= PTEMU_PROT_WRITE;
	return p;
}

/* The HPTE for vpn: updated in place if hidx (0: none) still names it, else inserted
 * (primary, secondary, then an eviction and again). The new hidx. */
static unsigned hpte_install(struct ptemu_machine *m, uint64_t vpn, uint64_t r, unsigned hidx)
{
	uint64_t hash = hpt_hash(vpn);

	if (hidx && hpte_updatepp(m, hpte_slot_pa(m, vpn, hidx - 1), vpn, r) == 0)
		return hidx;
	for (;;) {
		int slot = hpte_insert(m, hpte_group_pa(m, hash, false), vpn, r, false);

		if (slot >= 0)
			return (unsigned)slot + 1;
		slot = hpte_insert(m, hpte_group_pa(m, hash, true), vpn, r, true);
		if (slot >= 0)
			return ((unsigned)slot | HIDX_SECONDARY) + 1;
		hpte_remove(m, hpte_group_pa(m, hash, vpn >> 4 & 1), vpn);
	}
}

/* ---- hash_page --------------------------------------------------------------------- */

enum hash_result { HASH_INSERTED, HASH_RETRY, HASH_FAULT };

/* check_pte_access: present, the access's permission bits, and not privileged. */
static bool check_pte_access(uint64_t pte, enum ptemu_access access)
{
	uint64_t need = PPC_PAGE_PRESENT | PPC_PAGE_READ;

	if (access == PTEMU_ACCESS_WRITE)
		need |= PPC_PAGE_WRITE;
	if (access == PTEMU_ACCESS_FETCH)
		need |= PPC_PAGE_EXEC;
	return (pte & need) == need && !(pte & PPC_PAGE_PRIVILEGED);
}

/* The handshake on a PTE or huge pmd at pa (read through the checker by the caller's
 * reader): BUSY, ACCESSED and, for a store, DIRTY in one compare-and-swap of the value
 * read. ppc-hash-no-busy leaves the entry alone. */
static enum hash_result mark_busy(struct ptemu_machine *m, const struct ptemu_walk_ctx *ctx,
				  unsigned level, uint64_t table, unsigned index,
				  enum ptemu_access access, uint64_t *old, uint64_t *new,
				  enum ptemu_walk_fault *why)
{
	uint64_t pa = table + (uint64_t)index * 8;

	for (;;) {
		*old = ctx->read_entry(ctx, level, table, index);
		if (*old & H_PAGE_BUSY) {
			ptemu_stat_add(&m->stats, PTEMU_STAT_hash_page_busy, 1);
			return HASH_RETRY;
		}
		if (!check_pte_access(*old, access)) {
			*why = *old & PPC_PAGE_PRESENT ? PTEMU_WALK_PERMISSION : PTEMU_WALK_TRANSLATION;
			return HASH_FAULT;
		}
		*new = *old | H_PAGE_BUSY | PPC_PAGE_ACCESSED;
		if (access == PTEMU_ACCESS_WRITE)
			*new |= PPC_PAGE_DIRTY;
		if (ptemu_injected(m, INJECT_PPC_HASH_NO_BUSY))
			return HASH_INSERTED;
		if (ptemu_entry_cmpxchg(m, pa, *old, *new))
			return HASH_INSERTED;
	}
}

/* The last store of hash_page, which also drops BUSY. Without the handshake it can only
 * be made if the entry did not change meanwhile: the HPTE stays behind either way. */
static void unmark_busy(struct ptemu_machine *m, uint64_t pa, uint64_t old, uint64_t new)
{
	if (ptemu_injected(m, INJECT_PPC_HASH_NO_BUSY))
		ptemu_entry_cmpxchg(m, pa, old, new & ~H_PAGE_BUSY);
	else
		ptemu_entry_store(m, pa, new & ~H_PAGE_BUSY);
}

/* __hash_page_64K for the PTE at index of table. */
static enum hash_result hash_page_64k(struct ptemu_machine *m, const struct ptemu_walk_ctx *ctx,
				      uint64_t table, unsigned index, uint64_t vpn,
				      enum ptemu_access access, enum ptemu_walk_fault *why)
{
	uint64_t pte_pa = table + (uint64_t)index * 8, hidx_pa = pte_pa + H_PTE_TABLE_SIZE;
	uint64_t old, new;
	enum hash_result res = mark_busy(m, ctx, HASH_PTE_LEVEL, table, index, access, &old, &new, why);
	unsigned hidx;

	if (res != HASH_INSERTED)
		return res;
	/* The window the handshake closes: a pte_update now spins until the final store. */
	if (ptemu_sched_scheduled())
		ptemu_sched_point_window(table);
	hidx = old & H_PAGE_HASHPTE ? (unsigned)ptemu_entry_load(m, hidx_pa) : 0;
	hidx = hpte_install(m, vpn, hpte_r_of(new, old & PPC_PTE_RPN_MASK), hidx);
	ptemu_entry_store(m, hidx_pa, hidx);
	unmark_busy(m, pte_pa, old, (new & ~H_PAGE_HPTEFLAGS) | H_PAGE_HASHPTE | H_PAGE_BUSY);
	return HASH_INSERTED;
}

/* __hash_page_thp: the handshake on the huge pmd, the slot of the 64 KiB piece kept in the
 * deposited table's slot array (bit 0 valid, bits 4:1 the hidx). BUSY keeps a zap, which
 * withdraws and frees that table, out meanwhile. */
static enum hash_result hash_page_thp(struct ptemu_machine *m, const struct ptemu_walk_ctx *ctx,
				      uint64_t pmd_table, unsigned index, uint64_t va, uint64_t vpn,
				      enum ptemu_access access, enum ptemu_walk_fault *why)
{
	uint64_t pmd_pa = pmd_table + (uint64_t)index * 8, old, new, slots;
	unsigned piece = (unsigned)((va & (H_PMD_SIZE - 1)) >> BOOK3S64_PAGE_SHIFT), hidx = 0;
	enum hash_result res = mark_busy(m, ctx, HASH_PMD_LEVEL, pmd_table, index, access, &old, &new,
					 why);
	uint8_t *slot;

	if (res != HASH_INSERTED)
		return res;
	slots = ptemu_pgtable_deposited(m, pmd_pa);
	if (!slots) {
		unmark_busy(m, pmd_pa, old, new);
		return HASH_FAULT;	/* a huge pmd without its table: the kernel's -1 */
	}
	slot = (uint8_t *)ptemu_slot_ptr(m, slots) + piece;
	if (*slot & 1)
		hidx = (*slot >> 1) + 1u;
	hidx = hpte_install(m, vpn, hpte_r_of(new, (old & PPC_PTE_RPN_MASK & ~(H_PMD_SIZE - 1)) +
						  ((uint64_t)piece << BOOK3S64_PAGE_SHIFT)),
			    hidx);
	*slot = (uint8_t)((hidx - 1) << 1 | 1);
	unmark_busy(m, pmd_pa, old, (new & ~H_PAGE_HPTEFLAGS) | H_PAGE_HASHPTE | H_PAGE_BUSY);
	return HASH_INSERTED;
}

/* hash_page_mm: __find_linux_pte under interrupts off, then the 64K or THP path. */
static enum hash_result hash_page(struct ptemu_machine *m, const struct ptemu_walk_ctx *ctx,
				  uint64_t root_pa, uint64_t va, uint64_t vpn,
				  enum ptemu_access access, enum ptemu_walk_fault *why)
{
	const struct ptemu_arch *a = &ptemu_arch_ppc64_hash;
	uint64_t table = root_pa;
	enum hash_result res = HASH_FAULT;

	ptemu_stat_add(&m->stats, PTEMU_STAT_hpt_misses, 1);
	rcu_read_lock();
	for (unsigned level = 0; level < HASH_PTE_LEVEL; level++) {
		unsigned index = ptemu_level_index(a, level, va);
		uint64_t e = ctx->read_entry(ctx, level, table, index);
		enum ptemu_entry_kind kind = hash_classify(level, e, &table);

		if (kind == PTEMU_ENTRY_LEAF) {	/* classify left table the pmd's */
			res = hash_page_thp(m, ctx, table, index, va, vpn, access, why);
			goto out;
		}
		if (kind != PTEMU_ENTRY_TABLE) {
			if (kind == PTEMU_ENTRY_BAD)
				*why = PTEMU_WALK_BAD_ENTRY;
			goto out;
		}
	}
	res = hash_page_64k(m, ctx, table, ptemu_level_index(a, HASH_PTE_LEVEL, va), vpn, access, why);
out:
	rcu_read_unlock();
	return res;
}

/* What hash_page would enter for va, read from the Linux tables alone: the translation
 * the tests check the tables by. */
static enum ptemu_walk_fault linux_pte_walk(const struct ptemu_walk_ctx *ctx, uint64_t root_pa,
					    uint64_t va, enum ptemu_access access,
					    struct ptemu_walk_result *out)
{
	const struct ptemu_arch *a = &ptemu_arch_ppc64_hash;
	uint64_t table = root_pa, e = 0, size = H_PAGE_SIZE;
	unsigned level;

	for (level = 0; level <= HASH_PTE_LEVEL; level++) {
		out->table_pa[level] = table;
		out->level = level;
		e = ctx->read_entry(ctx, level, table, ptemu_level_index(a, level, va));
		if (level == HASH_PTE_LEVEL)
			break;
		enum ptemu_entry_kind kind = hash_classify(level, e, &table);

		if (kind == PTEMU_ENTRY_LEAF) {
			size = H_PMD_SIZE;
			break;
		}
		if (kind != PTEMU_ENTRY_TABLE) {
			out->fault = kind == PTEMU_ENTRY_BAD ? PTEMU_WALK_BAD_ENTRY : PTEMU_WALK_TRANSLATION;
			return out->fault;
		}
	}
	if (!(e & PPC_PAGE_PRESENT)) {
		out->fault = PTEMU_WALK_TRANSLATION;
		return out->fault;
	}
	out->leaf_size = size;
	out->paddr = (e & PPC_PTE_RPN_MASK & ~(size - 1)) | (va & (size - 1));
	out->perms = hpte_perms(hpte_r_of(e, 0));
	out->fault = check_pte_access(e, access) ? PTEMU_WALK_OK : PTEMU_WALK_PERMISSION;
	return out->fault;
}

/* A TLB miss: the HPT search, else hash_page and the access again. Without ctx->mm
 * (tests), the bare walk of the Linux tables. */
static enum ptemu_walk_fault hash_hw_walk(const struct ptemu_walk_ctx *ctx, uint64_t root_pa,
					  uint64_t va, enum ptemu_access access,
					  struct ptemu_walk_result *out)
{
	struct mm_struct *mm = ctx->mm;
	struct ptemu_machine *m = mm ? mm->machine : NULL;
	enum ptemu_walk_fault why = PTEMU_WALK_TRANSLATION;
	unsigned need = access == PTEMU_ACCESS_WRITE ? PTEMU_PROT_WRITE :
			access == PTEMU_ACCESS_FETCH ? PTEMU_PROT_EXEC : PTEMU_PROT_READ;
	uint64_t vpn, r;

	*out = (struct ptemu_walk_result){ .fault = PTEMU_WALK_TRANSLATION };
	if (va >= ptemu_arch_ppc64_hash.task_size)
		return PTEMU_WALK_TRANSLATION;
	if (!mm)
		return linux_pte_walk(ctx, root_pa, va, access, out);
	vpn = hpt_vpn(mm, va);
	if (!hpt_search(m, vpn, &r) || !(hpte_perms(r) & need)) {
		switch (hash_page(m, ctx, root_pa, va, vpn, access, &why)) {
		case HASH_FAULT:
			out->fault = why;
			return why;
		case HASH_RETRY:
			out->fault = PTEMU_WALK_RETRY;
			return PTEMU_WALK_RETRY;
		case HASH_INSERTED:
			break;
		}
		/* The access again: the HPTE may already be gone (evicted, or flushed by a
		 * pte_update that came right after the handshake). */
		if (!hpt_search(m, vpn, &r) || !(hpte_perms(r) & need)) {
			out->fault = PTEMU_WALK_RETRY;
			return PTEMU_WALK_RETRY;
		}
	} else {
		ptemu_stat_add(&m->stats, PTEMU_STAT_hpt_hits, 1);
	}
	out->fault = PTEMU_WALK_OK;
	out->level = HASH_PTE_LEVEL;
	out->leaf_size = H_PAGE_SIZE;
	out->paddr = (r & HPTE_R_RPN_MASK) | (va & (H_PAGE_SIZE - 1));
	out->perms = hpte_perms(r);
	return PTEMU_WALK_OK;
}

/* ---- hpte_need_flush and the per-CPU batch -------------------------------------------- */

#define PPC64_TLB_BATCH_NR	192

/* The per-CPU ppc64_tlb_batch; a thread of the model is a CPU that does not migrate in a
 * lazy-MMU section, which runs under the ptl. */
struct ppc64_tlb_batch {
	struct mm_struct *mm;
	bool active;
	unsigned index;
	uint64_t vaddr[PPC64_TLB_BATCH_NR];
	uint64_t vpn[PPC64_TLB_BATCH_NR];
	unsigned hidx[PPC64_TLB_BATCH_NR];
};

static __thread struct ppc64_tlb_batch host_tlb_batch;
static struct ptemu_thread_local_key tlb_batch_key = { sizeof(struct ppc64_tlb_batch), 0 };

static struct ppc64_tlb_batch *this_cpu_tlb_batch(void)
{
	return ptemu_thread_local(&tlb_batch_key, &host_tlb_batch);
}

/* flush_hash_range: each HPTE out by its slot, then tlbie for each page. */
static void hash_flush_batch(struct ppc64_tlb_batch *b)
{
	struct ptemu_machine *m;

	if (!b->index)
		return;
	m = b->mm->machine;
	for (unsigned i = 0; i < b->index; i++)
		if (b->hidx[i])
			hpte_invalidate(m, hpte_slot_pa(m, b->vpn[i], b->hidx[i] - 1), b->vpn[i]);
	ptemu_tlb_demap_runs(b->mm, b->vaddr, b->index, H_PAGE_SIZE);
	b->index = 0;
}

static void hash_enter_lazy_mmu_mode(void)
{
	this_cpu_tlb_batch()->active = true;
}

static void hash_leave_lazy_mmu_mode(void)
{
	struct ppc64_tlb_batch *b = this_cpu_tlb_batch();

	hash_flush_batch(b);
	b->active = false;
}

/* hpte_need_flush for the PTE at pte_pa, which had H_PAGE_HASHPTE: its slot from
 * the hidx half, read now, as the batch keeps the real PTE. */
static void hpte_need_flush(struct mm_struct *mm, uint64_t addr, uint64_t pte_pa)
{
	struct ppc64_tlb_batch *b = this_cpu_tlb_batch(), one = { .mm = mm };
	struct ptemu_machine *m = mm->machine;

	addr &= ~(H_PAGE_SIZE - 1);
	if (!b->active)
		b = &one;	/* flush_hash_page at once */
	else if (b->index && b->mm != mm)
		hash_flush_batch(b);
	b->mm = mm;
	b->vaddr[b->index] = addr;
	b->vpn[b->index] = hpt_vpn(mm, addr);
	b->hidx[b->index] = (unsigned)ptemu_entry_load(m, pte_pa + H_PTE_TABLE_SIZE);
	if (++b->index == PPC64_TLB_BATCH_NR || b == &one)
		hash_flush_batch(b);
}

/* pte_update's tail: an old PTE with H_PAGE_HASHPTE has its HPTE flushed. */
static void hash_pte_update_flush(struct mm_struct *mm, uint64_t addr, uint64_t pte_pa,
				  uint64_t old, uint64_t new)
{
	(void)new;
	if (old & H_PAGE_HASHPTE)
		hpte_need_flush(mm, addr, pte_pa);
}

/* hpte_do_hugepage_flush from pmd_hugepage_update: every valid slot of the deposited slot
 * array invalidated, then tlbie for the whole 16 MiB (flush_hash_hugepage). A clear
 * (hash__pmdp_huge_get_and_clear) also zeroes the array; a change that keeps the pmd
 * mapped keeps it, and a hash_page of it finds those slots gone and enters new ones. */
static void hash_pmd_update_flush(struct mm_struct *mm, uint64_t addr, uint64_t pmd_pa,
				  uint64_t old, uint64_t new)
{
	struct ptemu_machine *m = mm->machine;
	uint64_t slots, haddr = addr & ~(H_PMD_SIZE - 1);
	uint8_t *slot;

	if (hash_classify(HASH_PMD_LEVEL, old, NULL) != PTEMU_ENTRY_LEAF || !(old & H_PAGE_HASHPTE))
		return;
	slots = ptemu_pgtable_deposited(m, pmd_pa);
	if (slots) {
		slot = ptemu_slot_ptr(m, slots);
		for (unsigned i = 0; i < H_PMD_SIZE / H_PAGE_SIZE; i++) {
			uint64_t vpn = hpt_vpn(mm, haddr + i * H_PAGE_SIZE);

			if (slot[i] & 1)
				hpte_invalidate(m, hpte_slot_pa(m, vpn, slot[i] >> 1), vpn);
		}
		if (!(new & ~H_PAGE_HPTEFLAGS))
			memset(slot, 0, H_PMD_SIZE / H_PAGE_SIZE);
	}
	ptemu_tlb_demap(mm, haddr, haddr + H_PMD_SIZE);
}

/* hash__pmdp_collapse_flush: the pmd cleared; every hash_page in flight on the mm's CPUs
 * waited for (serialize_against_pte_lookup: an IPI that interrupts-off sections hold
 * off); then flush_hash_table_pmd_range over the old table, mapped from the old value as
 * pte_offset_map would (so under RCU: it is detached already), each hashed PTE flushed.
 * With file collapse every PTE was cleared, and its HPTE flushed, under the handshake
 * before this: ppc-no-serialize leaves out a step with nothing left to guard, and
 * no-tlb-flush is not offered here (ptemu list injections). */
static uint64_t hash_pmdp_collapse_flush(struct mm_struct *mm, uint64_t addr, uint64_t pmd_pa)
{
	struct ptemu_machine *m = mm->machine;
	uint64_t old = ptemu_pmdp_clear(mm, pmd_pa), table, haddr = addr & ~(H_PMD_SIZE - 1);
	struct ptemu_walk_ctx ctx;

	if (!ptemu_injected(m, INJECT_PPC_NO_SERIALIZE) && m->tlb.ipi_all)
		m->tlb.ipi_all(m->tlb.ctx);
	if (hash_classify(HASH_PMD_LEVEL, old, &table) != PTEMU_ENTRY_TABLE)
		return old;
	ptemu_checked_walk_ctx(m, &ctx);
	hash_enter_lazy_mmu_mode();
	rcu_read_lock();
	for (unsigned i = 0; i < H_PTRS_PER_PTE; i++) {
		uint64_t pte = ctx.read_entry(&ctx, HASH_PTE_LEVEL, table, i);

		if (pte & H_PAGE_HASHPTE)
			hpte_need_flush(mm, haddr + i * H_PAGE_SIZE, table + i * 8ull);
	}
	rcu_read_unlock();
	hash_leave_lazy_mmu_mode();
	return old;
}

/* ---- the HPT's lifetime, and the checker's look into it ----------------------------------- */

static int hash_machine_init(struct ptemu_machine *m, char *err, size_t errlen)
{
	uint64_t pfn = phys_alloc_pages(m->phys, 0);

	if (!pfn) {
		snprintf(err, errlen, "no simulated memory for the hashed page table");
		return -1;
	}
	m->arch_mem_pa = pfn << BOOK3S64_PAGE_SHIFT;
	m->arch_mem_pages = 1;
	for (uint64_t off = 0; off < HPT_BYTES; off += 8)
		ptemu_entry_store(m, m->arch_mem_pa + off, 0);
	return 0;
}

static void hash_machine_destroy(struct ptemu_machine *m)
{
	if (m->arch_mem_pa)
		phys_free_pages(m->phys, m->arch_mem_pa >> BOOK3S64_PAGE_SHIFT, 0);
	m->arch_mem_pa = 0;
	m->arch_mem_pages = 0;
}

/* Does an HPTE of the mm's VSIDs still map a page of [pfn, pfn + nr)? The group and the
 * AVPN give the page's address back. The checker asks at every page freed, for every mm:
 * each HPTE's second doubleword (its real page) is read once, in place, and only an HPTE
 * in the range is read again whole. */
static bool hash_hpt_maps_pfn(struct mm_struct *mm, uint64_t pfn, uint64_t nr, uint64_t *va)
{
	struct ptemu_machine *m = mm->machine;
	const uint64_t *words = ptemu_slot_ptr(m, m->arch_mem_pa);

	for (unsigned i = 0; i < HPT_GROUPS * HPTES_PER_GROUP; i++) {
		uint64_t hpte = m->arch_mem_pa + (uint64_t)i * HPTE_BYTES, r, v, first, vpn, proto;

		/* In simulated memory's byte order, as ptemu_entry_load reads it. */
		r = __atomic_load_n(&words[i * (HPTE_BYTES / 8) + 1], __ATOMIC_RELAXED);
		first = ((m->arch->big_endian ? __builtin_bswap64(r) : r) & HPTE_R_RPN_MASK) >> BOOK3S64_PAGE_SHIFT;
		if (first >= pfn + nr || first < pfn)
			continue;
		v = ptemu_entry_load(m, hpte);
		if (!(v & HPTE_V_VALID))
			continue;
		first = (ptemu_entry_load(m, hpte + 8) & HPTE_R_RPN_MASK) >> BOOK3S64_PAGE_SHIFT;
		if (first >= pfn + nr || first < pfn)
			continue;
		vpn = (v >> HPTE_V_AVPN_SHIFT) << (BOOK3S64_PAGE_SHIFT - VPN_SHIFT);
		/* The scramble undone: the context (the pgd's frame) and the segment. */
		proto = (uint64_t)((unsigned __int128)(vpn >> (SID_SHIFT - VPN_SHIFT)) *
				   VSID_MULTIPLIER_INV % VSID_MODULUS);
		if (proto >> ESID_BITS != mm->pgd_pa >> BOOK3S64_PAGE_SHIFT)
			continue;
		*va = (proto & ((1ull << ESID_BITS) - 1)) << SID_SHIFT |
		      (vpn & ((1ull << (SID_SHIFT - VPN_SHIFT)) - 1)) << VPN_SHIFT;
		return true;
	}
	return false;
}

const struct ptemu_arch ptemu_arch_ppc64_hash = {
	.name = "ppc64-hash",
	.description = "powerpc book3s64 hash (HPT), 64 KiB pages, 4 levels (8/10/10/8), 4 KiB "
		       "PTE fragments with hash slots, 16 MiB PMD THP with deposited tables",
	.pt_reclaim_status = "what-if: 6.14 reclaims on x86-64 only; powerpc selects "
			     "MMU_GATHER_RCU_TABLE_FREE, the later widening's condition",

	.page_shift = BOOK3S64_PAGE_SHIFT,
	.va_bits = 52,
	.task_size = 1ull << 47,	/* DEFAULT_MAP_WINDOW_USER64 */
	.nr_levels = 4,
	.level_shift = { 44, 34, 24, 16 },
	.level_bits = { 8, 10, 10, 8 },
	/* PGD and PUD as H_*_TABLE_SIZE; the PMD table's entries (its deposit half follows in
	 * the same page); a PTE fragment with its hidx half. */
	.table_bytes = { 2048, 8192, H_PMD_TABLE_SIZE, 2 * H_PTE_TABLE_SIZE },
	.entry_bytes = 8,
	.big_endian = true,
	.pmd_leaf_shift = H_PMD_SHIFT,

	.none_entry = hash_none_entry,
	.classify = hash_classify,
	.mk_table = hash_mk_table,
	.pte_none = hash_pte_none,
	.pte_present = book3s64_pte_present,
	.mk_pte = hash_mk_pte,
	.pte_leaf = book3s64_pte_leaf,
	.mk_pmd_leaf = hash_mk_pmd_leaf,
	.pmd_leaf = book3s64_pte_leaf,

	.pte_table_bytes = 2 * H_PTE_TABLE_SIZE,
	.tables_per_page = 16,		/* H_PTE_FRAG_NR */
	.pte_alloc_one = pte_fragment_alloc,
	.pte_free = book3s64_pte_free,
	.pte_free_defer = book3s64_pte_free_defer,
	.rcu_table_free = true,
	.pte_free_tlb = ptemu_generic_pte_free_tlb,
	.tlb_remove_table = book3s64_tlb_remove_table,
	.machine_init = hash_machine_init,
	.machine_destroy = hash_machine_destroy,
	.arch_exit_mmap = pte_frag_destroy,
	.pte_update_asserts_locked = true,
	.pte_hash_flags = H_PAGE_HPTEFLAGS,
	.pte_busy_bit = H_PAGE_BUSY,
	.pgtable_deposit_offset = H_PMD_TABLE_SIZE,	/* pmdp + PTRS_PER_PMD */

	/* access_error: any of read, write and exec lets a read in (execute-only is radix's) */
	.read_fault_vm_flags = VM_READ | VM_WRITE | VM_EXEC,

	.hw_walk = hash_hw_walk,
	.flush_waits_for_walks = true,	/* tlbie waits for the MMU's translations, not hash_page */
	.walker_is_rcu_reader = true,	/* hash_page runs with interrupts off */
	.retract_flush = PTEMU_RETRACT_FLUSH_HASH,
	.leaf_flush_drops_walk_cache = false,
	.maybe_tlb_batch_add = hash_pte_update_flush,
	.set_pmd_at_batch = hash_pmd_update_flush,
	.arch_enter_lazy_mmu_mode = hash_enter_lazy_mmu_mode,
	.arch_leave_lazy_mmu_mode = hash_leave_lazy_mmu_mode,
	.flush_tlb_range_is_noop = true,	/* tlbflush-hash.h: all done by pte_update */
	.hw_cache_maps_pfn = hash_hpt_maps_pfn,
	.pmdp_collapse_flush = hash_pmdp_collapse_flush,
	.tlb_entries = 1024,
	.walk_cache_entries = 0,	/* the HPT is searched, not walked */
	.model_injections = 1u << INJECT_PPC_V66_FRAG_DESTROY | 1u << INJECT_PPC_FRAG_REUSE |
			    1u << INJECT_PPC_NO_PAGE_ACTIVE | 1u << INJECT_PPC_HASH_NO_BUSY |
			    1u << INJECT_PPC_NO_SERIALIZE,

	.isa = BOOK3S64_ISA,
};
