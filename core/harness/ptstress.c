#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ptemu/check.h>
#include <ptemu/clock.h>
#include <ptemu/inject.h>
#include <ptemu/machine.h>
#include <ptemu/mm.h>
#include <ptemu/pgtable.h>
#include <ptemu/phys.h>
#include <ptemu/ptstress.h>
#include <ptemu/rcu.h>
#include <ptemu/sched.h>

struct stress {
	struct ptemu_machine *m;
	const struct ptemu_pt_stress_config *cfg;
	struct mm_struct *mm;
	uint64_t base;		/* first address of the PMD ranges */
	uint64_t data_pfn;	/* the page every PTE maps */
	double deadline;
	int workers_left;
	struct ptemu_pt_stress_result res;
};

struct worker {
	struct stress *s;
	unsigned index;
	pthread_t tid;
};

static uint64_t next_rand(uint64_t *x)
{
	*x ^= *x >> 12;
	*x ^= *x << 25;
	*x ^= *x >> 27;
	return *x * 0x2545F4914F6CDD1Dull;
}

static bool should_end(const struct stress *s)
{
	/* Deterministic runs end by operation count only: time would break replay. */
	return ptemu_should_stop(s->m) || (!s->cfg->deterministic && ptemu_now() >= s->deadline);
}

static void stress_yield(void)
{
	if (ptemu_sched_scheduled())
		ptemu_sched_yield();
	else
		sched_yield();
}

static uint64_t random_addr(const struct stress *s, uint64_t *rng)
{
	const struct ptemu_arch *a = s->m->arch;
	uint64_t table = next_rand(rng) % s->cfg->tables;
	uint64_t page = next_rand(rng) % (ptemu_pmd_size(a) >> a->page_shift);

	return s->base + table * ptemu_pmd_size(a) + (page << a->page_shift);
}

/* pte_offset_map_lock, then flip the PTE between none and a mapping of the data page. */
static void locked_update(struct stress *s, uint64_t addr)
{
	struct mm_struct *mm = s->mm;
	const struct ptemu_arch *a = s->m->arch;
	struct ptemu_spinlock *ptl;
	pmd_t *pmd = pmd_alloc_path(mm, addr);
	pte_t *pte;

	if (!pmd)
		return;
	pte = pte_alloc_map_lock(mm, pmd, addr, &ptl);
	if (!pte) {
		__atomic_fetch_add(&s->res.map_failed, 1, __ATOMIC_RELAXED);
		return;
	}
	if (pte_none(ptep_get(pte))) {
		struct ptemu_leaf leaf = { s->data_pfn, PTEMU_PROT_READ | PTEMU_PROT_WRITE |
						       PTEMU_PTE_YOUNG };

		set_pte_at(mm, addr, pte, __pte(a->mk_pte(leaf)));
	} else {
		pte_clear(mm, addr, pte);
	}
	__atomic_fetch_add(&s->res.locked_updates, 1, __ATOMIC_RELAXED);
	if (ptemu_injected(s->m, INJECT_SKIP_PTE_UNMAP))
		spin_unlock(ptl);
	else
		pte_unmap_unlock(pte, ptl);
}

/* pte_offset_map without the lock, reading entries of the table as a lockless walker
 * (GUP-fast, the fault path's first look) does. */
static void lockless_read(struct stress *s, uint64_t addr, uint64_t *rng)
{
	const struct ptemu_arch *a = s->m->arch;
	pmd_t *pmd = mm_find_pmd(s->mm, addr);
	unsigned per_table = ptemu_ptes_per_table(a);
	pmd_t seen;
	pte_t *pte;

	if (!pmd)
		return;
	seen = pmdp_get_lockless(pmd);
	pte = pte_offset_map(pmd, addr);
	if (!pte) {
		if (pmd_kind(seen, NULL) == PTEMU_ENTRY_TABLE)
			ptemu_note_map_failed_after_table(s->m);
		__atomic_fetch_add(&s->res.map_failed, 1, __ATOMIC_RELAXED);
		return;
	}
	/* Linger in the table now and then, so that retracts land while it is mapped. */
	unsigned first = (unsigned)((addr >> a->page_shift) % per_table);
	pte_t *table = ptemu_slot_ptr(s->m, ptemu_slot_pa(s->m, pte) - (uint64_t)first * a->entry_bytes);
	for (unsigned i = 0; i < 8; i++) {
		(void)ptep_get(ptep_add(table, (unsigned)(next_rand(rng) % per_table)));
		if ((next_rand(rng) & 15) == 0)
			stress_yield();
	}
	__atomic_fetch_add(&s->res.lockless_reads, 1, __ATOMIC_RELAXED);
	pte_unmap(pte);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct stress *s = w->s;
	char name[32];
	uint64_t rng = s->cfg->seed * 0x9E3779B97F4A7C15ull + w->index + 1;

	snprintf(name, sizeof(name), "worker-%u", w->index);
	ptemu_thread_register(s->m, name);
	for (uint64_t op = 0; !should_end(s) && (!s->cfg->max_ops || op < s->cfg->max_ops); op++) {
		uint64_t addr = random_addr(s, &rng);

		if (next_rand(&rng) & 1)
			locked_update(s, addr);
		else
			lockless_read(s, addr, &rng);
		check_op_end("stress operation");
	}
	/* Counted out while still holding the baton: the retractor's loop reads this. */
	__atomic_fetch_sub(&s->workers_left, 1, __ATOMIC_RELEASE);
	ptemu_thread_unregister();
	return NULL;
}

/* Clears every entry of the table that pte (mapped, ptl held) points into. */
static void clear_table(struct mm_struct *mm, pte_t *pte, uint64_t addr)
{
	const struct ptemu_arch *a = mm->machine->arch;
	pte_t *first = ptemu_slot_ptr(mm->machine, ptemu_slot_pa(mm->machine, pte) -
						     (uint64_t)ptemu_level_index(a, ptemu_pte_level(a), addr) *
							     a->entry_bytes);

	for (unsigned i = 0; i < ptemu_ptes_per_table(a); i++)
		ptep_get_and_clear(mm, addr, ptep_add(first, i));
}

/* The harness maps without VMAs, so exit's zap would leave its entries behind: clear
 * them as that zap would, before free_pgtables hands the tables to the mmu_gather. */
static void zap_tables(struct stress *s)
{
	uint64_t pmd_size = ptemu_pmd_size(s->m->arch);

	for (unsigned i = 0; i < s->cfg->tables; i++) {
		uint64_t addr = s->base + i * pmd_size;
		pmd_t *pmd = mm_find_pmd(s->mm, addr);
		struct ptemu_spinlock *ptl;
		pte_t *pte = pmd ? pte_offset_map_lock(s->mm, pmd, addr, &ptl) : NULL;

		if (!pte)
			continue;
		clear_table(s->mm, pte, addr);
		pte_unmap_unlock(pte, ptl);
	}
}

/* What retract_page_tables does to one VMA's pmd, with the table emptied first as
 * collapse_file's unmapping would have done. */
static void retract_one(struct stress *s, uint64_t addr)
{
	struct mm_struct *mm = s->mm;
	const struct ptemu_arch *a = s->m->arch;
	struct ptemu_spinlock *pml, *ptl;
	uint64_t table;
	pmd_t *pmd = mm_find_pmd(mm, addr);
	pmd_t pmdval;
	pte_t *pte;

	if (!pmd)
		return;
	pml = pmd_lock(mm, pmd);
	pmdval = pmdp_get_lockless(pmd);
	if (pmd_kind(pmdval, &table) != PTEMU_ENTRY_TABLE) {
		spin_unlock(pml);
		return;
	}
	ptl = pte_lockptr(mm, &pmdval);
	if (ptl != pml)
		spin_lock_nested(ptl);
	pte = pte_offset_map(pmd, addr);
	if (pte) {
		clear_table(mm, pte, addr);
		pte_unmap(pte);
	}
	pmdp_collapse_flush(mm, addr, pmd);
	mm_inc_pgtables(mm, -(int64_t)a->pte_table_bytes);
	if (ptl != pml)
		spin_unlock(ptl);
	spin_unlock(pml);
	if (ptemu_injected(s->m, INJECT_FREE_IMMEDIATELY))
		pte_free(mm, table);
	else
		pte_free_defer(mm, table);
	__atomic_fetch_add(&s->res.retracts, 1, __ATOMIC_RELAXED);
}

/* Between a map and its lock: give the retractor the core now and then, so that the
 * window pte_offset_map_lock's re-check guards is hit even on a loaded machine. */
static void widen_map_lock_window(void *ctx, struct mm_struct *mm, void *pmdp)
{
	unsigned *n = ctx;

	if ((__atomic_add_fetch(n, 1, __ATOMIC_RELAXED) & 7) == 0)
		sched_yield();
}

int ptemu_pt_stress(struct ptemu_machine *m, const struct ptemu_pt_stress_config *cfg,
		    struct ptemu_pt_stress_result *res)
{
	struct ptemu_test_hooks saved = m->test_hooks;
	unsigned window_calls = 0;

	struct stress s = { .m = m, .cfg = cfg };
	struct worker *w;
	uint64_t rng = cfg->seed ^ 0xA5A5A5A5DEADBEEFull;
	double start = ptemu_now();
	unsigned started = 0;

	if (!cfg->workers || cfg->workers > 32 || !cfg->tables || cfg->tables > 4096 ||
	    (cfg->deterministic && !cfg->max_ops)) {
		errno = EINVAL;
		return -1;
	}
	s.deadline = start + cfg->seconds;
	s.base = ptemu_pmd_size(m->arch) * 64;
	s.mm = mm_alloc(m);
	s.data_pfn = phys_alloc_pages(m->phys, 0);
	w = calloc(cfg->workers, sizeof(*w));
	if (!s.mm || !s.data_pfn || !w) {
		if (s.mm)
			mm_destroy(s.mm);
		if (s.data_pfn)
			phys_free_pages(m->phys, s.data_pfn, 0);
		free(w);
		errno = ENOMEM;
		return -1;
	}
	/* Deterministic: the scheduler explores the windows; no timing help. */
	if (!m->test_hooks.map_before_lock && !cfg->deterministic)
		m->test_hooks = (struct ptemu_test_hooks){ .map_before_lock = widen_map_lock_window,
							   .ctx = &window_calls };
	if (cfg->deterministic) {
		if (ptemu_sched_create(m, &cfg->sched)) {
			errno = EAGAIN;
			return -1;
		}
		ptemu_sched_attach_current();
	}
	s.workers_left = (int)cfg->workers;
	for (; started < cfg->workers; started++) {
		w[started] = (struct worker){ .s = &s, .index = started };
		if (pthread_create(&w[started].tid, NULL, worker_main, &w[started]))
			break;
		/* The RCU thread, this one, and the workers so far. */
		ptemu_sched_wait_threads(m, 2 + started + 1);
	}
	ptemu_sched_start(m);
	__atomic_fetch_sub(&s.workers_left, (int)(cfg->workers - started), __ATOMIC_RELEASE);
	/* The calling thread retracts until the workers are done. */
	while (__atomic_load_n(&s.workers_left, __ATOMIC_ACQUIRE) > 0) {
		retract_one(&s, random_addr(&s, &rng));
		check_op_end("retract");
		stress_yield();
	}
	/* The scheduled part ends here: what teardown does is not part of the schedule. */
	s.res.steps = ptemu_sched_steps(m);
	s.res.digest = ptemu_sched_digest(m);
	ptemu_sched_detach_current();
	for (unsigned i = 0; i < started; i++)
		pthread_join(w[i].tid, NULL);
	free(w);
	m->test_hooks = saved;

	/* Teardown: every table returns to the allocator once the callbacks have run. */
	zap_tables(&s);
	mm_destroy(s.mm);
	phys_free_pages(m->phys, s.data_pfn, 0);
	if (cfg->deterministic) {
		/* The scheduler's RCU thread drains the callbacks left. */
		ptemu_sched_destroy(m, NULL, NULL);
	}
	rcu_barrier();
	check_leaks(m, 0);
	s.res.elapsed = ptemu_now() - start;
	*res = s.res;
	if (started < cfg->workers) {
		errno = EAGAIN;
		return -1;
	}
	return 0;
}
