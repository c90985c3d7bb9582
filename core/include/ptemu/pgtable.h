/* Page tables in simulated physical memory, and the pte_offset_map family of v6.6
 * (kernel-spec section 1).
 *
 * pte_t and pmd_t are entry values in host byte order, with the model's bit layout.
 * pte_t * and pmd_t * point at entry slots in simulated memory, which hold the model's
 * byte order: never dereference them; every access goes through the accessors below,
 * which convert and call the checker. */
#ifndef PTEMU_PGTABLE_H
#define PTEMU_PGTABLE_H

#include <stdbool.h>
#include <stdint.h>

#include <ptemu/arch.h>
#include <ptemu/sync.h>

#ifdef __cplusplus
extern "C" {
#endif

struct mm_struct;
struct ptemu_machine;
struct page;

typedef struct { uint64_t val; } pte_t;
typedef struct { uint64_t val; } pmd_t;

static inline pte_t __pte(uint64_t v) { pte_t p = { v }; return p; }
static inline pmd_t __pmd(uint64_t v) { pmd_t p = { v }; return p; }
static inline bool pmd_same(pmd_t a, pmd_t b) { return a.val == b.val; }

/* Classification through the model (the calling thread's machine). */
enum ptemu_entry_kind pmd_kind(pmd_t pmd, uint64_t *table_pa);
bool pmd_none(pmd_t pmd);
bool pmd_trans_huge(pmd_t pmd);
bool pte_none(pte_t pte);
bool pte_present(pte_t pte);
pte_t pmd_none_value(void);
/* The same mapping: equal but for the model's hash bookkeeping (pte_hash_flags). */
bool pte_same(pte_t a, pte_t b);

/* Raw entry access in the model's byte order, unchecked: for walkers' readers, table
 * initialisation and the checker. ptemu_entry_* access an 8-byte entry of a level above
 * the PTEs. */
uint64_t ptemu_entry_load(const struct ptemu_machine *m, uint64_t entry_pa);
void ptemu_entry_store(const struct ptemu_machine *m, uint64_t entry_pa, uint64_t val);
/* One compare-and-swap of an 8-byte entry (hash_page's handshake on a PTE or huge pmd). */
bool ptemu_entry_cmpxchg(const struct ptemu_machine *m, uint64_t entry_pa, uint64_t old, uint64_t val);
/* ptep + n, counted in the model's PTEs: a pte_t is 8 host bytes, a PTE 4 on classic arm. */
pte_t *ptep_add(pte_t *ptep, unsigned n);
/* A PTE (entry_bytes wide); the store writes its hardware twin too, as set_pte_ext. */
uint64_t ptemu_pte_load(const struct ptemu_machine *m, uint64_t pte_pa);
void ptemu_pte_store(const struct ptemu_machine *m, uint64_t pte_pa, uint64_t val);
/* Entry `index` of a table of `level`, at that level's entry size. */
uint64_t ptemu_table_entry_load(const struct ptemu_machine *m, uint64_t table_pa, unsigned level,
				unsigned index);
/* The lock of the PTE table at table_pa: its page's split ptl, or mm->page_table_lock. */
struct ptemu_spinlock *ptemu_table_ptl(const struct ptemu_machine *m, uint64_t table_pa);
/* Physical address of a slot pointer, and back. */
uint64_t ptemu_slot_pa(const struct ptemu_machine *m, const void *slot);
void *ptemu_slot_ptr(const struct ptemu_machine *m, uint64_t pa);

/* ---- checked accessors ---------------------------------------------------------- */
pte_t ptep_get(pte_t *ptep);
void set_pte_at(struct mm_struct *mm, uint64_t addr, pte_t *ptep, pte_t pte);
pte_t ptep_get_and_clear(struct mm_struct *mm, uint64_t addr, pte_t *ptep);
void pte_clear(struct mm_struct *mm, uint64_t addr, pte_t *ptep);
/* Hardware-style access/dirty update under no lock: exempt from ptl-not-held. */
void ptep_set_access_flags_hw(pte_t *ptep, pte_t pte);

pmd_t pmdp_get_lockless(pmd_t *pmdp);
/* NONE -> TABLE, under pmd lock after a none re-check (pmd_install does both). */
void pmd_populate(struct mm_struct *mm, pmd_t *pmdp, uint64_t table_pa);
/* Any -> NONE; a TABLE becomes DETACHED for the checker. */
void pmd_clear(pmd_t *pmdp);
void set_pmd_at(struct mm_struct *mm, uint64_t addr, pmd_t *pmdp, pmd_t pmd);
/* Reports and clears a bad pmd (lockless BAD -> NONE is legal). */
void pmd_clear_bad(pmd_t *pmdp);

/* ---- locks ---------------------------------------------------------------------- */
/* The ptl of the table the pmd value points at: the split lock of the table's page, shared
 * by every table in that page (s390 halves, powerpc fragments). */
struct ptemu_spinlock *pte_lockptr(struct mm_struct *mm, pmd_t *pmdval);
struct ptemu_spinlock *pmd_lockptr(struct mm_struct *mm, pmd_t *pmdp);
struct ptemu_spinlock *pmd_lock(struct mm_struct *mm, pmd_t *pmdp);

/* ---- the pte_offset_map family (kernel-spec 1.2-1.5) ------------------------------ */
pte_t *__pte_offset_map(pmd_t *pmdp, uint64_t addr, pmd_t *pmdvalp);
pte_t *pte_offset_map(pmd_t *pmdp, uint64_t addr);
pte_t *pte_offset_map_lock(struct mm_struct *mm, pmd_t *pmdp, uint64_t addr,
			   struct ptemu_spinlock **ptlp);
pte_t *pte_offset_map_nolock(struct mm_struct *mm, pmd_t *pmdp, uint64_t addr,
			     struct ptemu_spinlock **ptlp);
void pte_unmap(pte_t *pte);
/* powerpc's DEBUG_VM check in pte_update (arch->pte_update_asserts_locked). */
void assert_pte_locked(struct mm_struct *mm, uint64_t addr);
void pte_unmap_unlock(pte_t *pte, struct ptemu_spinlock *ptl);
/* Caller-side count of the strict pte_map_failures: it had read a pmd pointing at a
 * table, and its map of that pmd then failed. */
void ptemu_note_map_failed_after_table(struct ptemu_machine *m);

/* ---- allocation and upper levels ------------------------------------------------- */
/* The pmd slot covering addr, or NULL when an upper level is missing. */
pmd_t *mm_find_pmd(struct mm_struct *mm, uint64_t addr);
/* The pmd slot covering addr, allocating upper-level tables; NULL on OOM. */
pmd_t *pmd_alloc_path(struct mm_struct *mm, uint64_t addr);
/* Installs *table_pa if the pmd is still none and clears *table_pa; else leaves it. */
void pmd_install(struct mm_struct *mm, pmd_t *pmdp, uint64_t *table_pa);
/* Allocates and installs a PTE table; 0 or -ENOMEM (a populated pmd is success). */
int __pte_alloc(struct mm_struct *mm, pmd_t *pmdp);
pte_t *pte_alloc_map_lock(struct mm_struct *mm, pmd_t *pmdp, uint64_t addr,
			  struct ptemu_spinlock **ptlp);

uint64_t pte_alloc_one(struct mm_struct *mm);
void pte_free(struct mm_struct *mm, uint64_t table_pa);
void pte_free_defer(struct mm_struct *mm, uint64_t table_pa);
/* A PTE table a retract or reclaim detached (pmdp_collapse_flush done) leaves the mm's
 * count and is freed: by RCU when deferred (v6.6), else at once (the v6.5 retract, whose
 * locks kept every software walker out). */
void free_detached_pte_table(struct mm_struct *mm, uint64_t table_pa, bool deferred);

/* Clear a pmd that points at a table and invalidate TLBs and walk caches for its range
 * (the model's retract_flush, or its own pmdp_collapse_flush). Caller holds pmd lock and,
 * when distinct, the ptl. */
pmd_t pmdp_collapse_flush(struct mm_struct *mm, uint64_t addr, pmd_t *pmdp);
/* For a model's pmdp_collapse_flush: the clear and the invalidation as one step (no
 * thread runs between them), or the clear alone with the purge left to the mm's next
 * flush (a lazy invalidation). Both return the old pmd. */
uint64_t ptemu_pmdp_clear_flush_one_step(struct mm_struct *mm, uint64_t addr, uint64_t pmd_pa);
uint64_t ptemu_pmdp_clear_flush_lazy(struct mm_struct *mm, uint64_t pmd_pa);
/* pmd_clear for a model's own pmdp_collapse_flush, which then invalidates as it must. */
uint64_t ptemu_pmdp_clear(struct mm_struct *mm, uint64_t pmd_pa);
/* pgtable_trans_huge_deposit and _withdraw where arch->pgtable_deposit_offset is set,
 * under the pmd lock: the table kept beside the huge pmd at pmd_pa (withdraw returns it
 * zeroed, as hash__pgtable_trans_huge_withdraw, and leaves the slot 0); and the table
 * deposited there now, 0 if none (hash_page's get_hpte_slot_array, the audit). */
void pgtable_trans_huge_deposit(struct mm_struct *mm, uint64_t pmd_pa, uint64_t table);
uint64_t pgtable_trans_huge_withdraw(struct mm_struct *mm, uint64_t pmd_pa);
uint64_t ptemu_pgtable_deposited(const struct ptemu_machine *m, uint64_t pmd_pa);

/* TLB invalidation by the arm64 primitives the kernel uses (DESIGN.md section 3):
 * last_level is TLBI VALE1IS, which leaves walk-cache entries alone (unless the model's
 * leaf_flush_drops_walk_cache); otherwise TLBI VAE1IS, which drops them for the range. */
void __flush_tlb_range(struct mm_struct *mm, uint64_t start, uint64_t end, bool last_level);
/* Never last-level: it is also used when collapsing huge pages and moving tables. */
void flush_tlb_range(struct mm_struct *mm, uint64_t start, uint64_t end);
/* One page, last-level (ptep_clear_flush). */
void flush_tlb_page(struct mm_struct *mm, uint64_t addr);
/* The whole ASID: TLB entries and walk caches. */
void flush_tlb_mm(struct mm_struct *mm);
/* The model's own invalidation of [start, end) on every CPU of mm, TLB entries only (sparc64's
 * demap cross-call), whatever flush_tlb_range_is_noop says. */
void ptemu_tlb_demap(struct mm_struct *mm, uint64_t start, uint64_t end);
/* The same for a model's batch of pages of `size` bytes: one invalidation per run of
 * adjacent pages, in batch order (the one cross-call covers exactly those pages). */
void ptemu_tlb_demap_runs(struct mm_struct *mm, const uint64_t *vaddrs, unsigned n, uint64_t size);
/* Around a run of PTE changes under one ptl (zap, mprotect): the model may batch the
 * invalidations they issue and flushes them on leaving (sparc64's tlb_batch). */
void arch_enter_lazy_mmu_mode(struct mm_struct *mm);
void arch_leave_lazy_mmu_mode(struct mm_struct *mm);
/* try_to_unmap cleared a PTE of mm and left its flush to a batch (set_tlb_ubc_flush_pending);
 * a zap or mprotect of mm that takes a ptl must first flush what such a batch may still owe
 * (flush_tlb_batched_pending), or a PTE it finds none may still be cached. */
void set_tlb_ubc_flush_pending(struct mm_struct *mm);
void flush_tlb_batched_pending(struct mm_struct *mm);

/* ---- building blocks for the models' allocators ---------------------------------- */
/* A fresh page for PTE tables: PG_table, ptl initialised, every slot none. 0 on OOM. */
uint64_t ptemu_table_page_alloc(struct mm_struct *mm);
/* Poisons the page with the invalid-entry pattern and returns it to the allocator. */
void ptemu_table_page_free(struct ptemu_machine *m, struct page *page);
/* Per-table constructor/destructor for the checker and counters (one table, not a page). */
void ptemu_pte_table_ctor(struct ptemu_machine *m, uint64_t table_pa);
void ptemu_pte_table_dtor(struct ptemu_machine *m, uint64_t table_pa);
/* The whole-page tables of the generic kernel (asm-generic/pgalloc.h). */
uint64_t ptemu_generic_pte_alloc_one(struct mm_struct *mm);
void ptemu_generic_pte_free(struct mm_struct *mm, uint64_t table_pa);
void ptemu_generic_pte_free_defer(struct mm_struct *mm, uint64_t table_pa);

/* Upper-level (non-PTE) tables: whole pages of the level's table size. */
uint64_t ptemu_upper_table_alloc(struct ptemu_machine *m, unsigned level);
void ptemu_upper_table_free(struct ptemu_machine *m, uint64_t table_pa, unsigned level);

/* The walk-context reader used by hardware walks: checked reads of simulated memory. */
void ptemu_checked_walk_ctx(struct ptemu_machine *m, struct ptemu_walk_ctx *ctx);

#ifdef __cplusplus
}
#endif
#endif
