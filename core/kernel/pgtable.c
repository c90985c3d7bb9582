/* Generic N-level page tables in simulated memory and the v6.6 pte_offset_map family
 * (kernel-spec section 1). The model supplies encodings and PTE-table allocation; this
 * file owns walking, locking, mapping and the checker calls. */
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include <ptemu/check.h>
#include <ptemu/inject.h>
#include <ptemu/machine.h>
#include <ptemu/mm.h>
#include <ptemu/pgtable.h>
#include <ptemu/phys.h>
#include <ptemu/rcu.h>
#include <ptemu/sched.h>

#include "internal.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the host must be little-endian");

/* ---- raw entries ------------------------------------------------------------------- */

static uint64_t load_sized(const struct ptemu_machine *m, uint64_t pa, unsigned bytes)
{
	void *p = phys_to_virt(m->phys, pa);
	bool be = m->arch->big_endian;

	if (bytes == 4) {
		uint32_t v = __atomic_load_n((uint32_t *)p, __ATOMIC_ACQUIRE);

		return be ? __builtin_bswap32(v) : v;
	}
	uint64_t v = __atomic_load_n((uint64_t *)p, __ATOMIC_ACQUIRE);

	return be ? __builtin_bswap64(v) : v;
}

static void store_sized(const struct ptemu_machine *m, uint64_t pa, uint64_t val, unsigned bytes)
{
	void *p = phys_to_virt(m->phys, pa);
	bool be = m->arch->big_endian;

	if (bytes == 4)
		__atomic_store_n((uint32_t *)p, be ? __builtin_bswap32((uint32_t)val) : (uint32_t)val,
				 __ATOMIC_RELEASE);
	else
		__atomic_store_n((uint64_t *)p, be ? __builtin_bswap64(val) : val, __ATOMIC_RELEASE);
}

static uint64_t xchg_sized(const struct ptemu_machine *m, uint64_t pa, uint64_t val, unsigned bytes)
{
	void *p = phys_to_virt(m->phys, pa);
	bool be = m->arch->big_endian;

	if (bytes == 4) {
		uint32_t old = __atomic_exchange_n((uint32_t *)p,
						   be ? __builtin_bswap32((uint32_t)val) : (uint32_t)val,
						   __ATOMIC_ACQ_REL);

		return be ? __builtin_bswap32(old) : old;
	}
	uint64_t old = __atomic_exchange_n((uint64_t *)p, be ? __builtin_bswap64(val) : val,
					   __ATOMIC_ACQ_REL);

	return be ? __builtin_bswap64(old) : old;
}

uint64_t ptemu_entry_load(const struct ptemu_machine *m, uint64_t entry_pa)
{
	return load_sized(m, entry_pa, 8);
}

void ptemu_entry_store(const struct ptemu_machine *m, uint64_t entry_pa, uint64_t val)
{
	store_sized(m, entry_pa, val, 8);
}

bool ptemu_entry_cmpxchg(const struct ptemu_machine *m, uint64_t entry_pa, uint64_t old, uint64_t val)
{
	bool be = m->arch->big_endian;
	uint64_t expected = be ? __builtin_bswap64(old) : old;

	return __atomic_compare_exchange_n((uint64_t *)phys_to_virt(m->phys, entry_pa), &expected,
					   be ? __builtin_bswap64(val) : val, false, __ATOMIC_ACQ_REL,
					   __ATOMIC_ACQUIRE);
}

/* Every change of an entry: a plain exchange, or on a hash MMU pte_update's (and
 * pmd_hugepage_update's) loop, which waits while hash_page holds the entry busy and then
 * swaps it in one compare-and-swap, so that hash_page's final store cannot undo it. A
 * change that leaves the entry mapped (access flags, write protection) is pte_update
 * with clr and set bits: the hash bookkeeping stays, so that no hash_page can enter a
 * second HPTE, and overwrite the slot, before the flush of the first reads it. */
static uint64_t update_sized(struct ptemu_machine *m, uint64_t pa, uint64_t val, unsigned bytes)
{
	const struct ptemu_arch *a = m->arch;
	uint64_t busy = a->pte_busy_bit, keep = a->pte_hash_flags & ~busy;

	if (!busy || bytes != 8)
		return xchg_sized(m, pa, val, bytes);
	for (bool waited = false;; waited = true) {
		uint64_t old = load_sized(m, pa, 8), new = val;

		if ((val & ~a->pte_hash_flags) && a->pte_present(old))
			new = (val & ~a->pte_hash_flags) | (old & keep);
		if (!(old & busy) && ptemu_entry_cmpxchg(m, pa, old, new))
			return old;
		if (!waited && (old & busy))
			ptemu_stat_add(&m->stats, PTEMU_STAT_pte_update_busy_waits, 1);
		if (ptemu_sched_scheduled())
			ptemu_sched_spin_wait();	/* the hash_page holding it must run */
		else
			sched_yield();
	}
}

static uint64_t entry_xchg(struct ptemu_machine *m, uint64_t entry_pa, uint64_t val)
{
	return update_sized(m, entry_pa, val, 8);
}

uint64_t ptemu_pte_load(const struct ptemu_machine *m, uint64_t pte_pa)
{
	return load_sized(m, pte_pa, m->arch->entry_bytes);
}

/* The hardware twin follows the Linux PTE, as set_pte_ext writes them. */
static void store_hw_twin(const struct ptemu_machine *m, uint64_t pte_pa, uint64_t val)
{
	const struct ptemu_arch *a = m->arch;

	if (a->pte_hw_twin)
		store_sized(m, pte_pa + a->hw_twin_offset, a->pte_hw_twin(val), a->entry_bytes);
}

void ptemu_pte_store(const struct ptemu_machine *m, uint64_t pte_pa, uint64_t val)
{
	store_sized(m, pte_pa, val, m->arch->entry_bytes);
	store_hw_twin(m, pte_pa, val);
}

static uint64_t pte_xchg(struct ptemu_machine *m, uint64_t pte_pa, uint64_t val)
{
	uint64_t old = update_sized(m, pte_pa, val, m->arch->entry_bytes);

	store_hw_twin(m, pte_pa, val);
	return old;
}

uint64_t ptemu_table_entry_load(const struct ptemu_machine *m, uint64_t table_pa, unsigned level,
				unsigned index)
{
	unsigned size = ptemu_entry_size(m->arch, level);

	return load_sized(m, table_pa + (uint64_t)index * size, size);
}

pte_t *ptep_add(pte_t *ptep, unsigned n)
{
	return (pte_t *)((uint8_t *)ptep + (size_t)n * ptemu_current_machine()->arch->entry_bytes);
}

uint64_t ptemu_slot_pa(const struct ptemu_machine *m, const void *slot)
{
	return (uint64_t)((const uint8_t *)slot - phys_base(m->phys));
}

void *ptemu_slot_ptr(const struct ptemu_machine *m, uint64_t pa)
{
	return phys_to_virt(m->phys, pa);
}

static struct page *pa_to_page(const struct ptemu_machine *m, uint64_t pa)
{
	return pfn_to_page(m->phys, pa >> m->arch->page_shift);
}

/* Every entry of a new or freed table: the simulated memory is one host mapping, so one
 * translation and a loop of stores, atomic for a walker that an injected bug lets read
 * the table meanwhile (store_sized entry by entry took a tenth of a shmem-stress run's
 * host time on s390). */
static void fill_none(const struct ptemu_machine *m, uint64_t pa, uint64_t bytes, unsigned level)
{
	uint64_t none = m->arch->none_entry(level);
	bool be = m->arch->big_endian;
	void *p = phys_to_virt(m->phys, pa);

	if (ptemu_entry_size(m->arch, level) == 4) {
		uint32_t v = be ? __builtin_bswap32((uint32_t)none) : (uint32_t)none;

		for (uint64_t i = 0; i < bytes / 4; i++)
			__atomic_store_n((uint32_t *)p + i, v, __ATOMIC_RELEASE);
	} else {
		uint64_t v = be ? __builtin_bswap64(none) : none;

		for (uint64_t i = 0; i < bytes / 8; i++)
			__atomic_store_n((uint64_t *)p + i, v, __ATOMIC_RELEASE);
	}
}

/* ---- classification ------------------------------------------------------------------ */

enum ptemu_entry_kind pmd_kind(pmd_t pmd, uint64_t *table_pa)
{
	const struct ptemu_arch *a = ptemu_current_machine()->arch;
	uint64_t dummy;

	return a->classify(ptemu_pmd_level(a), pmd.val, table_pa ? table_pa : &dummy);
}

bool pmd_none(pmd_t pmd)
{
	return pmd_kind(pmd, NULL) == PTEMU_ENTRY_NONE;
}

bool pmd_trans_huge(pmd_t pmd)
{
	return pmd_kind(pmd, NULL) == PTEMU_ENTRY_LEAF;
}

bool pte_none(pte_t pte)
{
	return ptemu_current_machine()->arch->pte_none(pte.val);
}

bool pte_present(pte_t pte)
{
	return ptemu_current_machine()->arch->pte_present(pte.val);
}

bool pte_same(pte_t a, pte_t b)
{
	return !((a.val ^ b.val) & ~ptemu_current_machine()->arch->pte_hash_flags);
}

pte_t pmd_none_value(void)
{
	const struct ptemu_arch *a = ptemu_current_machine()->arch;

	return __pte(a->none_entry(ptemu_pmd_level(a)));
}

/* ---- checked PTE accessors --------------------------------------------------------- */

pte_t ptep_get(pte_t *ptep)
{
	struct ptemu_machine *m = ptemu_current_machine();
	uint64_t pa = ptemu_slot_pa(m, ptep);

	ptemu_sched_point();
	check_pte_read(m, pa);
	uint64_t v = ptemu_pte_load(m, pa);

	check_hw_twin(m, pa, v);
	return __pte(v);
}

void set_pte_at(struct mm_struct *mm, uint64_t addr, pte_t *ptep, pte_t pte)
{
	const struct ptemu_arch *a = mm->machine->arch;
	uint64_t pa = ptemu_slot_pa(mm->machine, ptep);

	ptemu_sched_point();
	check_pte_write(mm->machine, pa);
	if (!a->maybe_tlb_batch_add) {
		ptemu_pte_store(mm->machine, pa, pte.val);
		return;
	}
	a->maybe_tlb_batch_add(mm, addr, pa, pte_xchg(mm->machine, pa, pte.val), pte.val);
}

pte_t ptep_get_and_clear(struct mm_struct *mm, uint64_t addr, pte_t *ptep)
{
	struct ptemu_machine *m = mm->machine;
	uint64_t pa = ptemu_slot_pa(m, ptep);

	ptemu_sched_point();
	check_pte_write(m, pa);
	/* An exchange, so that a concurrent hardware access-flag update is not lost. */
	pte_t old = __pte(pte_xchg(m, pa, m->arch->none_entry(ptemu_pte_level(m->arch))));

	if (m->arch->maybe_tlb_batch_add)
		m->arch->maybe_tlb_batch_add(mm, addr, pa, old.val,
						m->arch->none_entry(ptemu_pte_level(m->arch)));
	if (m->arch->pte_update_asserts_locked)
		assert_pte_locked(mm, addr);
	return old;
}

void pte_clear(struct mm_struct *mm, uint64_t addr, pte_t *ptep)
{
	ptep_get_and_clear(mm, addr, ptep);
}

void ptep_set_access_flags_hw(pte_t *ptep, pte_t pte)
{
	struct ptemu_machine *m = ptemu_current_machine();
	uint64_t pa = ptemu_slot_pa(m, ptep);

	/* Hardware updates take no lock (exempt from ptl-not-held) but still need a live table. */
	check_walk_read(m, pa & ~(uint64_t)(m->arch->pte_table_bytes - 1), ptemu_pte_level(m->arch),
			true);
	ptemu_pte_store(m, pa, pte.val);
}

/* ---- pmd accessors ------------------------------------------------------------------ */

static uint64_t pmd_table_base(const struct ptemu_machine *m, uint64_t pmd_pa)
{
	return pmd_pa & ~(uint64_t)(m->arch->table_bytes[ptemu_pmd_level(m->arch)] - 1);
}

pmd_t pmdp_get_lockless(pmd_t *pmdp)
{
	struct ptemu_machine *m = ptemu_current_machine();
	uint64_t pa = ptemu_slot_pa(m, pmdp);

	check_walk_read(m, pmd_table_base(m, pa), ptemu_pmd_level(m->arch), false);
	return __pmd(ptemu_entry_load(m, pa));
}

static void require_pml(struct mm_struct *mm, pmd_t *pmdp, const char *what)
{
	if (!ptemu_holds_lock(pmd_lockptr(mm, pmdp)))
		ptemu_report(mm->machine, VIOLATION_PTL_NOT_HELD, ptemu_slot_pa(mm->machine, pmdp),
			     "%s without the pmd lock", what);
}

/* The checker's view of a pmd transition: a table leaving its pmd becomes detached. */
static void pmd_changed(struct ptemu_machine *m, uint64_t old, uint64_t new)
{
	unsigned level = ptemu_pmd_level(m->arch);
	uint64_t old_table, new_table;

	if (m->arch->classify(level, old, &old_table) != PTEMU_ENTRY_TABLE)
		return;
	if (m->arch->classify(level, new, &new_table) == PTEMU_ENTRY_TABLE && new_table == old_table)
		return;
	check_table_detach(m, old_table);
}

void pmd_populate(struct mm_struct *mm, pmd_t *pmdp, uint64_t table_pa)
{
	struct ptemu_machine *m = mm->machine;
	uint64_t pa = ptemu_slot_pa(m, pmdp);

	require_pml(mm, pmdp, "pmd_populate");
	check_table_attach(m, table_pa);
	ptemu_entry_store(m, pa, m->arch->mk_table(ptemu_pmd_level(m->arch), table_pa));
}

void pmd_clear(pmd_t *pmdp)
{
	struct ptemu_machine *m = ptemu_current_machine();
	uint64_t none = m->arch->none_entry(ptemu_pmd_level(m->arch));

	pmd_changed(m, entry_xchg(m, ptemu_slot_pa(m, pmdp), none), none);
}

/* set_pmd_at without the lock check: pmdp_huge_get_and_clear's store. */
static uint64_t set_pmd_at_unchecked(struct mm_struct *mm, uint64_t addr, pmd_t *pmdp, pmd_t pmd)
{
	struct ptemu_machine *m = mm->machine;
	uint64_t pa = ptemu_slot_pa(m, pmdp);
	uint64_t old = entry_xchg(m, pa, pmd.val);

	pmd_changed(m, old, pmd.val);
	if (m->arch->set_pmd_at_batch)
		m->arch->set_pmd_at_batch(mm, addr, pa, old, pmd.val);
	return old;
}

void set_pmd_at(struct mm_struct *mm, uint64_t addr, pmd_t *pmdp, pmd_t pmd)
{
	require_pml(mm, pmdp, "set_pmd_at");
	set_pmd_at_unchecked(mm, addr, pmdp, pmd);
}

void pmd_clear_bad(pmd_t *pmdp)
{
	struct ptemu_machine *m = ptemu_current_machine();

	ptemu_stat_add(&m->stats, PTEMU_STAT_pte_map_bad, 1);
	pmd_clear(pmdp);
}

/* ---- locks -------------------------------------------------------------------------- */

struct ptemu_spinlock *ptemu_table_ptl(const struct ptemu_machine *m, uint64_t table_pa)
{
	struct page *page = pa_to_page(m, table_pa);

	return m->arch->pte_lock_is_page_table_lock ? &page->pt_mm->page_table_lock : &page->ptl;
}

struct ptemu_spinlock *pte_lockptr(struct mm_struct *mm, pmd_t *pmdval)
{
	uint64_t table_pa = 0;

	mm->machine->arch->classify(ptemu_pmd_level(mm->machine->arch), pmdval->val, &table_pa);
	return ptemu_table_ptl(mm->machine, table_pa);
}

struct ptemu_spinlock *pmd_lockptr(struct mm_struct *mm, pmd_t *pmdp)
{
	if (mm->machine->arch->pmd_lock_is_page_table_lock)
		return &mm->page_table_lock;
	/* Split pmd locks: the lock of the pmd table's first page. */
	return &pa_to_page(mm->machine, pmd_table_base(mm->machine, ptemu_slot_pa(mm->machine, pmdp)))->ptl;
}

struct ptemu_spinlock *pmd_lock(struct mm_struct *mm, pmd_t *pmdp)
{
	struct ptemu_spinlock *pml = pmd_lockptr(mm, pmdp);

	spin_lock(pml);
	return pml;
}

/* ---- the pte_offset_map family ------------------------------------------------------ */

pte_t *__pte_offset_map(pmd_t *pmdp, uint64_t addr, pmd_t *pmdvalp)
{
	struct ptemu_machine *m = ptemu_current_machine();
	const struct ptemu_arch *a = m->arch;
	bool rcu = !ptemu_injected(m, INJECT_NO_RCU_READ_LOCK);
	uint64_t table_pa, pte_pa;
	pmd_t pmdval;

	if (rcu)
		rcu_read_lock();
	pmdval = pmdp_get_lockless(pmdp);
	if (pmdvalp)
		*pmdvalp = pmdval;
	switch (a->classify(ptemu_pmd_level(a), pmdval.val, &table_pa)) {
	case PTEMU_ENTRY_NONE:
	case PTEMU_ENTRY_MIGRATION:
		ptemu_stat_add(&m->stats, PTEMU_STAT_pte_map_none, 1);
		break;
	case PTEMU_ENTRY_LEAF:
		ptemu_stat_add(&m->stats, PTEMU_STAT_pte_map_leaf, 1);
		break;
	case PTEMU_ENTRY_BAD:
		pmd_clear_bad(pmdp);
		break;
	case PTEMU_ENTRY_TABLE:
		/* Built from the local copy, never by re-reading the slot. */
		pte_pa = table_pa + (uint64_t)ptemu_level_index(a, ptemu_pte_level(a), addr) * a->entry_bytes;
		check_map(m, pte_pa);
		ptemu_stat_add(&m->stats, PTEMU_STAT_pte_maps, 1);
		return ptemu_slot_ptr(m, pte_pa);
	}
	if (rcu)
		rcu_read_unlock();
	return NULL;
}

pte_t *pte_offset_map(pmd_t *pmdp, uint64_t addr)
{
	return __pte_offset_map(pmdp, addr, NULL);
}

void pte_unmap(pte_t *pte)
{
	struct ptemu_machine *m = ptemu_current_machine();

	check_unmap(m, ptemu_slot_pa(m, pte));
	if (!ptemu_injected(m, INJECT_NO_RCU_READ_LOCK))
		rcu_read_unlock();
}

void pte_unmap_unlock(pte_t *pte, struct ptemu_spinlock *ptl)
{
	spin_unlock(ptl);
	pte_unmap(pte);
}

void ptemu_note_map_failed_after_table(struct ptemu_machine *m)
{
	ptemu_stat_add(&m->stats, PTEMU_STAT_pte_map_failures, 1);
}

pte_t *pte_offset_map_lock(struct mm_struct *mm, pmd_t *pmdp, uint64_t addr,
			   struct ptemu_spinlock **ptlp)
{
	struct ptemu_machine *m = mm->machine;
	bool retried = false;
	struct ptemu_spinlock *ptl;
	uint64_t table;
	pmd_t pmdval;
	pte_t *pte;

	for (;;) {
		pte = __pte_offset_map(pmdp, addr, &pmdval);
		if (!pte) {
			/* We had mapped a table and lost it before the lock: it was detached. */
			if (retried)
				ptemu_note_map_failed_after_table(m);
			return NULL;
		}
		/* From the copy: the lock of the table actually mapped. */
		ptl = pte_lockptr(mm, &pmdval);
		if (m->test_hooks.map_before_lock)
			m->test_hooks.map_before_lock(m->test_hooks.ctx, mm, pmdp);
		pmd_kind(pmdval, &table);
		ptemu_sched_point_window(table);	/* mapped, not yet locked: a retract may come */
		spin_lock(ptl);
		if (ptemu_injected(m, INJECT_NO_PMD_RECHECK) ||
		    pmd_same(pmdval, pmdp_get_lockless(pmdp))) {
			*ptlp = ptl;
			return pte;
		}
		pte_unmap_unlock(pte, ptl);
		ptemu_stat_add(&m->stats, PTEMU_STAT_pmd_recheck_retries, 1);
		retried = true;
	}
}

pte_t *pte_offset_map_nolock(struct mm_struct *mm, pmd_t *pmdp, uint64_t addr,
			     struct ptemu_spinlock **ptlp)
{
	pmd_t pmdval;
	pte_t *pte = __pte_offset_map(pmdp, addr, &pmdval);

	if (pte)
		*ptlp = pte_lockptr(mm, &pmdval);
	return pte;
}

/* powerpc's DEBUG_VM assert_pte_locked (v6.6), after pte_update changed the PTE at addr:
 * the ptl found again through pte_offset_map_nolock must be held. A none pmd returns
 * early (khugepaged clears the pmd before the PTEs); a map that fails is the kernel's
 * BUG_ON. Both failures are reported as ptl-not-held. */
void assert_pte_locked(struct mm_struct *mm, uint64_t addr)
{
	struct ptemu_machine *m = mm->machine;
	pmd_t *pmdp = mm_find_pmd(mm, addr);
	struct ptemu_spinlock *ptl;
	pte_t *pte;

	if (!pmdp) {
		ptemu_report(m, VIOLATION_PTL_NOT_HELD, addr,
			     "assert_pte_locked at %#" PRIx64 ": no pmd table above it (BUG_ON)", addr);
		return;
	}
	if (pmd_none(pmdp_get_lockless(pmdp)))
		return;
	pte = pte_offset_map_nolock(mm, pmdp, addr, &ptl);
	if (!pte) {
		ptemu_report(m, VIOLATION_PTL_NOT_HELD, addr,
			     "assert_pte_locked at %#" PRIx64 ": pte_offset_map_nolock failed (BUG_ON)",
			     addr);
		return;
	}
	if (!spin_is_locked(ptl))
		ptemu_report(m, VIOLATION_PTL_NOT_HELD, addr,
			     "assert_pte_locked at %#" PRIx64 ": the PTE's ptl is not held", addr);
	pte_unmap(pte);
}

/* ---- upper levels -------------------------------------------------------------------- */

static unsigned table_order(const struct ptemu_arch *a, unsigned level)
{
	unsigned o = 0;

	while ((1u << (o + a->page_shift)) < a->table_bytes[level])
		o++;
	return o;
}

/* An upper-level (non-PTE) table: whole pages, PG_table, ptl for split pmd locks. */
uint64_t ptemu_upper_table_alloc(struct ptemu_machine *m, unsigned level)
{
	uint64_t pfn = phys_alloc_pages(m->phys, table_order(m->arch, level));
	struct page *page;

	if (!pfn)
		return 0;
	page = pfn_to_page(m->phys, pfn);
	ptemu_spin_init(&page->ptl, LOCK_CLASS_PML);
	SetPageFlag(page, PG_table);
	fill_none(m, pfn << m->arch->page_shift, m->arch->table_bytes[level], level);
	return pfn << m->arch->page_shift;
}

void ptemu_upper_table_free(struct ptemu_machine *m, uint64_t table_pa, unsigned level)
{
	fill_none(m, table_pa, m->arch->table_bytes[level], level);
	ClearPageFlag(pa_to_page(m, table_pa), PG_table);
	phys_free_pages(m->phys, table_pa >> m->arch->page_shift, table_order(m->arch, level));
}

static pmd_t *walk_to_pmd(struct mm_struct *mm, uint64_t addr, bool alloc)
{
	struct ptemu_machine *m = mm->machine;
	const struct ptemu_arch *a = m->arch;
	uint64_t table = mm->pgd_pa;

	for (unsigned level = 0; level < ptemu_pmd_level(a); level++) {
		uint64_t slot = table + (uint64_t)ptemu_level_index(a, level, addr) * ptemu_entry_size(a, level);
		uint64_t next;

		check_walk_read(m, table, level, false);
		if (a->classify(level, ptemu_entry_load(m, slot), &next) != PTEMU_ENTRY_TABLE) {
			if (!alloc)
				return NULL;
			uint64_t fresh = ptemu_upper_table_alloc(m, level + 1);

			if (!fresh)
				return NULL;
			/* Like __pud_alloc: populate under page_table_lock unless someone won. */
			spin_lock(&mm->page_table_lock);
			if (a->classify(level, ptemu_entry_load(m, slot), &next) != PTEMU_ENTRY_TABLE) {
				ptemu_entry_store(m, slot, a->mk_table(level, fresh));
				mm_inc_pgtables(mm, a->table_bytes[level + 1]);
				next = fresh;
				fresh = 0;
			}
			spin_unlock(&mm->page_table_lock);
			if (fresh)
				ptemu_upper_table_free(m, fresh, level + 1);
		}
		table = next;
	}
	return ptemu_slot_ptr(m, table + (uint64_t)ptemu_level_index(a, ptemu_pmd_level(a), addr) *
					    ptemu_entry_size(a, ptemu_pmd_level(a)));
}

pmd_t *mm_find_pmd(struct mm_struct *mm, uint64_t addr)
{
	return walk_to_pmd(mm, addr, false);
}

pmd_t *pmd_alloc_path(struct mm_struct *mm, uint64_t addr)
{
	return walk_to_pmd(mm, addr, true);
}

/* ---- PTE tables ---------------------------------------------------------------------- */

void pmd_install(struct mm_struct *mm, pmd_t *pmdp, uint64_t *table_pa)
{
	struct ptemu_spinlock *pml = pmd_lock(mm, pmdp);

	if (pmd_none(pmdp_get_lockless(pmdp))) {
		mm_inc_pgtables(mm, mm->machine->arch->pte_table_bytes);
		pmd_populate(mm, pmdp, *table_pa);
		ptemu_stat_add(&mm->machine->stats, PTEMU_STAT_pmd_installs, 1);
		*table_pa = 0;
	} else {
		ptemu_stat_add(&mm->machine->stats, PTEMU_STAT_pmd_install_races, 1);
	}
	spin_unlock(pml);
}

int __pte_alloc(struct mm_struct *mm, pmd_t *pmdp)
{
	uint64_t table = pte_alloc_one(mm);

	if (!table)
		return -ENOMEM;
	pmd_install(mm, pmdp, &table);
	if (table)
		pte_free(mm, table);
	return 0;
}

pte_t *pte_alloc_map_lock(struct mm_struct *mm, pmd_t *pmdp, uint64_t addr,
			  struct ptemu_spinlock **ptlp)
{
	if (pmd_none(pmdp_get_lockless(pmdp)) && __pte_alloc(mm, pmdp))
		return NULL;
	return pte_offset_map_lock(mm, pmdp, addr, ptlp);
}

uint64_t pte_alloc_one(struct mm_struct *mm)
{
	return mm->machine->arch->pte_alloc_one(mm);
}

void pte_free(struct mm_struct *mm, uint64_t table_pa)
{
	mm->machine->arch->pte_free(mm, table_pa);
}

void pte_free_defer(struct mm_struct *mm, uint64_t table_pa)
{
	struct ptemu_machine *m = mm->machine;

	/* A free page handed to the allocator again would break the simulated machine,
	 * not just the modelled kernel: the report is what the run keeps of it. */
	if (check_table_defer(m, table_pa) == TABLE_FREE)
		return;
	ptemu_stat_add(&m->stats, PTEMU_STAT_tables_freed_deferred, 1);
	m->arch->pte_free_defer(mm, table_pa);
}

void free_detached_pte_table(struct mm_struct *mm, uint64_t table_pa, bool deferred)
{
	mm_inc_pgtables(mm, -(int64_t)mm->machine->arch->pte_table_bytes);
	if (deferred && !ptemu_injected(mm->machine, INJECT_FREE_IMMEDIATELY))
		pte_free_defer(mm, table_pa);
	else
		pte_free(mm, table_pa);	/* under free-immediately: the bug pte_free_defer prevents */
}

/* Without the scheduling point, which the callers take first. A purge a lazy
 * invalidation left behind is done now, for the whole mm. */
static void flush_range_now(struct mm_struct *mm, uint64_t start, uint64_t end, bool last_level)
{
	struct ptemu_machine *m = mm->machine;

	if (m->arch->flush_tlb_range_is_noop)
		return;
	if (__atomic_exchange_n(&mm->context.flush_mm, false, __ATOMIC_SEQ_CST)) {
		start = 0;
		end = 1ull << m->arch->va_bits;
		last_level = false;
	}
	ptemu_stat_add(&m->stats, PTEMU_STAT_tlb_range_flushes, 1);
	if (last_level)
		ptemu_stat_add(&m->stats, PTEMU_STAT_tlb_last_level_flushes, 1);
	if (m->tlb.flush_range)
		m->tlb.flush_range(m->tlb.ctx, mm, start, end,
				   !last_level || m->arch->leaf_flush_drops_walk_cache);
}

void __flush_tlb_range(struct mm_struct *mm, uint64_t start, uint64_t end, bool last_level)
{
	if (mm->machine->tlb.flush_range && !mm->machine->arch->flush_tlb_range_is_noop)
		ptemu_sched_point();	/* the initiator's side of a shootdown */
	flush_range_now(mm, start, end, last_level);
}

void ptemu_tlb_demap(struct mm_struct *mm, uint64_t start, uint64_t end)
{
	struct ptemu_machine *m = mm->machine;

	if (!m->tlb.flush_range)
		return;
	ptemu_sched_point();
	ptemu_stat_add(&m->stats, PTEMU_STAT_tlb_range_flushes, 1);
	ptemu_stat_add(&m->stats, PTEMU_STAT_tlb_last_level_flushes, 1);
	m->tlb.flush_range(m->tlb.ctx, mm, start, end, false);
}

void ptemu_tlb_demap_runs(struct mm_struct *mm, const uint64_t *vaddrs, unsigned n, uint64_t size)
{
	for (unsigned i = 0; i < n;) {
		uint64_t start = vaddrs[i], end = start + size;

		for (i++; i < n && vaddrs[i] == end; i++)
			end += size;
		ptemu_tlb_demap(mm, start, end);
	}
}

void arch_enter_lazy_mmu_mode(struct mm_struct *mm)
{
	if (mm->machine->arch->arch_enter_lazy_mmu_mode)
		mm->machine->arch->arch_enter_lazy_mmu_mode();
}

void arch_leave_lazy_mmu_mode(struct mm_struct *mm)
{
	if (mm->machine->arch->arch_leave_lazy_mmu_mode)
		mm->machine->arch->arch_leave_lazy_mmu_mode();
}

void flush_tlb_range(struct mm_struct *mm, uint64_t start, uint64_t end)
{
	__flush_tlb_range(mm, start, end, false);
}

void flush_tlb_page(struct mm_struct *mm, uint64_t addr)
{
	__flush_tlb_range(mm, addr, addr + ptemu_page_size(mm->machine->arch), true);
}

void flush_tlb_mm(struct mm_struct *mm)
{
	flush_tlb_range(mm, 0, 1ull << mm->machine->arch->va_bits);
}

#define TLB_FLUSH_BATCH_FLUSHED_SHIFT	16
#define TLB_FLUSH_BATCH_PENDING_MASK	((1u << TLB_FLUSH_BATCH_FLUSHED_SHIFT) - 1)
#define TLB_FLUSH_BATCH_PENDING_LARGE	(TLB_FLUSH_BATCH_PENDING_MASK / 2)

void set_tlb_ubc_flush_pending(struct mm_struct *mm)
{
	uint32_t batch = __atomic_load_n(&mm->tlb_flush_batched, __ATOMIC_ACQUIRE);

	for (;;) {
		/* pending must not wrap round to flushed: restart at pending 1, flushed 0 */
		uint32_t next = (batch & TLB_FLUSH_BATCH_PENDING_MASK) > TLB_FLUSH_BATCH_PENDING_LARGE ?
					1 : batch + 1;

		if (__atomic_compare_exchange_n(&mm->tlb_flush_batched, &batch, next, false,
						__ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
			return;
	}
}

void flush_tlb_batched_pending(struct mm_struct *mm)
{
	uint32_t batch = __atomic_load_n(&mm->tlb_flush_batched, __ATOMIC_ACQUIRE);
	uint32_t pending = batch & TLB_FLUSH_BATCH_PENDING_MASK;

	if (pending != batch >> TLB_FLUSH_BATCH_FLUSHED_SHIFT) {
		flush_tlb_mm(mm);
		__atomic_compare_exchange_n(&mm->tlb_flush_batched, &batch,
					    pending | pending << TLB_FLUSH_BATCH_FLUSHED_SHIFT, false,
					    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
	}
}

static uint64_t pmd_xchg_none(struct mm_struct *mm, uint64_t pmd_pa)
{
	struct ptemu_machine *m = mm->machine;
	uint64_t none = m->arch->none_entry(ptemu_pmd_level(m->arch));
	uint64_t old = entry_xchg(m, pmd_pa, none);

	pmd_changed(m, old, none);
	return old;
}

uint64_t ptemu_pmdp_clear_flush_one_step(struct mm_struct *mm, uint64_t addr, uint64_t pmd_pa)
{
	uint64_t start = addr & ~(ptemu_pmd_size(mm->machine->arch) - 1), old;

	if (mm->machine->tlb.flush_range)
		ptemu_sched_point();
	old = pmd_xchg_none(mm, pmd_pa);
	flush_range_now(mm, start, start + ptemu_pmd_size(mm->machine->arch), false);
	return old;
}

uint64_t ptemu_pmdp_clear(struct mm_struct *mm, uint64_t pmd_pa)
{
	return pmd_xchg_none(mm, pmd_pa);
}

uint64_t ptemu_pgtable_deposited(const struct ptemu_machine *m, uint64_t pmd_pa)
{
	return ptemu_entry_load(m, pmd_pa + m->arch->pgtable_deposit_offset);
}

void pgtable_trans_huge_deposit(struct mm_struct *mm, uint64_t pmd_pa, uint64_t table)
{
	struct ptemu_machine *m = mm->machine;

	require_pml(mm, ptemu_slot_ptr(m, pmd_pa), "pgtable_trans_huge_deposit");
	ptemu_entry_store(m, pmd_pa + m->arch->pgtable_deposit_offset, table);
}

uint64_t pgtable_trans_huge_withdraw(struct mm_struct *mm, uint64_t pmd_pa)
{
	struct ptemu_machine *m = mm->machine;
	uint64_t table = ptemu_pgtable_deposited(m, pmd_pa);

	require_pml(mm, ptemu_slot_ptr(m, pmd_pa), "pgtable_trans_huge_withdraw");
	ptemu_entry_store(m, pmd_pa + m->arch->pgtable_deposit_offset, 0);
	if (table)
		memset(ptemu_slot_ptr(m, table), 0, m->arch->pte_table_bytes);
	return table;
}

uint64_t ptemu_pmdp_clear_flush_lazy(struct mm_struct *mm, uint64_t pmd_pa)
{
	uint64_t old = pmd_xchg_none(mm, pmd_pa);

	__atomic_store_n(&mm->context.flush_mm, true, __ATOMIC_SEQ_CST);
	return old;
}

pmd_t pmdp_collapse_flush(struct mm_struct *mm, uint64_t addr, pmd_t *pmdp)
{
	struct ptemu_machine *m = mm->machine;
	uint64_t start = addr & ~(ptemu_pmd_size(m->arch) - 1);
	pmd_t old;

	/* Or, as v6.5's collapse_and_free_pmd, mmap_lock and i_mmap_rwsem both held for
	 * write: every other writer of this pmd holds one of them. */
	if (!ptemu_holds_lock_exclusive(&mm->mmap_lock) || !ptemu_holds_class_exclusive(LOCK_CLASS_I_MMAP))
		require_pml(mm, pmdp, "pmdp_collapse_flush");
	if (m->arch->pmdp_collapse_flush)
		return __pmd(m->arch->pmdp_collapse_flush(mm, addr, ptemu_slot_pa(m, pmdp)));
	/* pmdp_huge_get_and_clear: set_pmd_at to none, which is where sparc64 invalidates. */
	old = __pmd(set_pmd_at_unchecked(mm, addr, pmdp, __pmd(m->arch->none_entry(ptemu_pmd_level(m->arch)))));
	if (m->arch->retract_flush == PTEMU_RETRACT_FLUSH_NONE || ptemu_injected(m, INJECT_NO_TLB_FLUSH))
		return old;
	/* leaf-flush-only: the TLBI VALE1IS that leaves the detached table in walk caches. */
	__flush_tlb_range(mm, start, start + ptemu_pmd_size(m->arch),
			  ptemu_injected(m, INJECT_LEAF_FLUSH_ONLY));
	return old;
}

/* ---- building blocks for the models ---------------------------------------------------- */

uint64_t ptemu_table_page_alloc(struct mm_struct *mm)
{
	struct ptemu_machine *m = mm->machine;
	uint64_t pfn = phys_alloc_pages(m->phys, 0);
	struct page *page;

	if (!pfn)
		return 0;
	page = pfn_to_page(m->phys, pfn);
	ptemu_spin_init(&page->ptl, LOCK_CLASS_PTL);
	INIT_LIST_HEAD(&page->lru);
	page->pt_mm = mm;
	SetPageFlag(page, PG_table);
	fill_none(m, pfn << m->arch->page_shift, ptemu_page_size(m->arch), ptemu_pte_level(m->arch));
	return pfn << m->arch->page_shift;
}

void ptemu_table_page_free(struct ptemu_machine *m, struct page *page)
{
	const struct ptemu_arch *a = m->arch;
	uint64_t pa = page_to_pfn(page) << a->page_shift;

	/* Tables still live here are the deferred ones whose grace period just ended. */
	for (unsigned i = 0; i < a->tables_per_page; i++) {
		uint64_t t = pa + (uint64_t)i * a->pte_table_bytes;

		if (check_table_state(m, t) != TABLE_FREE)
			ptemu_pte_table_dtor(m, t);
	}
	ClearPageFlag(page, PG_table);
	fill_none(m, pa, ptemu_page_size(a), ptemu_pte_level(a));
	phys_free_pages(m->phys, page_to_pfn(page), 0);
}

void ptemu_pte_table_ctor(struct ptemu_machine *m, uint64_t table_pa)
{
	check_table_alloc(m, table_pa);
	ptemu_stat_add(&m->stats, PTEMU_STAT_tables_allocated, 1);
}

void ptemu_pte_table_dtor(struct ptemu_machine *m, uint64_t table_pa)
{
	/* Only a table that was in a pmd can be in a walk cache (a stale entry for its memory
	 * was reported when that memory's previous table was freed). The scan takes every
	 * vCPU's TLB lock, and a fault's unused preallocated table, freed on every fault that
	 * maps by PMD, waited there for vCPUs the host had preempted. */
	if (m->tlb.table_freed && check_table_state(m, table_pa) != TABLE_ALLOCATED)
		m->tlb.table_freed(m->tlb.ctx, table_pa);
	switch (check_table_free(m, table_pa)) {
	case TABLE_RCU_PENDING:
		ptemu_stat_add(&m->stats, PTEMU_STAT_tables_rcu_freed, 1);
		break;
	case TABLE_ALLOCATED:
		ptemu_stat_add(&m->stats, PTEMU_STAT_tables_freed_now, 1);
		break;
	default:
		ptemu_stat_add(&m->stats, PTEMU_STAT_tables_freed_attached_now, 1);
		break;
	}
}

uint64_t ptemu_generic_pte_alloc_one(struct mm_struct *mm)
{
	uint64_t pa = ptemu_table_page_alloc(mm);

	if (pa)
		ptemu_pte_table_ctor(mm->machine, pa);
	return pa;
}

void ptemu_generic_pte_free(struct mm_struct *mm, uint64_t table_pa)
{
	ptemu_table_page_free(mm->machine, pa_to_page(mm->machine, table_pa));
}

static void generic_pte_free_now(struct ptemu_rcu_head *head)
{
	struct page *page = (struct page *)((char *)head - offsetof(struct page, rcu));

	ptemu_table_page_free(phys_machine(page->phys), page);
}

void ptemu_generic_pte_free_defer(struct mm_struct *mm, uint64_t table_pa)
{
	call_rcu(&pa_to_page(mm->machine, table_pa)->rcu, generic_pte_free_now);
}

/* ---- walkers --------------------------------------------------------------------------- */

static uint64_t checked_read_entry(const struct ptemu_walk_ctx *ctx, unsigned level,
				   uint64_t table_pa, unsigned index)
{
	struct ptemu_machine *m = ctx->opaque;

	check_walk_read(m, table_pa, level, level == ptemu_pte_level(m->arch));
	return ptemu_table_entry_load(m, table_pa, level, index);
}

void ptemu_checked_walk_ctx(struct ptemu_machine *m, struct ptemu_walk_ctx *ctx)
{
	ctx->read_entry = checked_read_entry;
	ctx->opaque = m;
}
