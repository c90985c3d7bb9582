/* The sparc64 model (DESIGN.md section 4, kernel-spec 2.4), after v6.6's
 * arch/sparc/include/asm/pgtable_64.h, arch/sparc/mm/{tlb,tsb,init_64}.c and
 * arch/sparc/kernel/tsb.S.
 *
 * Tables: 8 KiB pages, four levels of 1024 x 8-byte big-endian entries (one table is one
 * page). An upper entry is the physical address of the next table, as the TSB-miss
 * handler walks them with physical loads. PTEs are sun4v TTEs; a THP is a pmd with
 * _PAGE_PMD_HUGE, mapped by the hardware as two 4 MiB TTEs.
 *
 * The hardware side is the kernel's software: a TLB miss probes the mm's TSBs (huge, then
 * base), and a TSB miss walks the Linux tables with interrupts off, which makes the walk an
 * RCU read-side section; a walk that finds a valid TTE writes it into the TSB under the
 * entry's tag lock and loads the TLB. Nothing else protects a retracted table here:
 * flush_tlb_range is empty, and set_pmd_at flushes only the valid PTEs it finds in the
 * table it replaced.
 *
 * Invalidation is tlb_batch_add at every change of a valid PTE (set_pte_at and friends)
 * and of a non-none pmd (set_pmd_at): the TSB entry is flushed and the page demapped on
 * every CPU of the mm, at once, or at arch_leave_lazy_mmu_mode when batched. */
#include "sparc64.h"

#include <elf.h>
#include <errno.h>
#include <inttypes.h>
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
#include <ptemu/stats.h>
#include <ptemu/sync.h>
#include <ptemu/uaccess.h>

#define SPARC64_PAGE_SHIFT 13
#define SPARC64_PAGE_SIZE (1ull << SPARC64_PAGE_SHIFT)
#define SPARC64_PMD_SHIFT 23
#define SPARC64_PMD_LEVEL 2
#define SPARC64_PTE_LEVEL 3
/* VA_EXCLUDE_START on CPUs with a 44-bit VA (the UltraSPARC IV that Unicorn models): user
 * space ends at the bottom of the VA hole. */
#define SPARC64_TASK_SIZE (1ull << 43)
#define TSB_ENTRY_BYTES 16
#define TLB_BATCH_NR 192

/* ---- entries ------------------------------------------------------------------------ */

static uint64_t sparc64_none_entry(unsigned level)
{
	(void)level;
	return 0;	/* pte_none, pmd_none, pud_none and pgd_none are all "zero" */
}

/* pmd_trans_huge is tested before pmd_bad, and pmd_bad (like pud_bad and pgd_bad) is any
 * bit below PAGE_SHIFT: an upper entry is a page-aligned physical address. */
static enum ptemu_entry_kind sparc64_classify(unsigned level, uint64_t e, uint64_t *table_pa)
{
	if (!e)
		return PTEMU_ENTRY_NONE;
	if (level == SPARC64_PMD_LEVEL && (e & SPARC64_PAGE_PMD_HUGE))
		return PTEMU_ENTRY_LEAF;
	if (e & (SPARC64_PAGE_SIZE - 1))
		return PTEMU_ENTRY_BAD;
	*table_pa = e;
	return PTEMU_ENTRY_TABLE;
}

static uint64_t sparc64_mk_table(unsigned level, uint64_t table_pa)
{
	(void)level;
	return table_pa;	/* pmd_set, pud_set, pgd_set: __pa of the table */
}

static bool sparc64_pte_none(uint64_t pte)
{
	return !pte;
}

static bool sparc64_pte_present(uint64_t pte)
{
	return pte & SPARC64_PAGE_PRESENT;
}

/* protection_map (prot_init_common with the sun4v values): every accessible protection
 * is readable (__ACCESS_BITS_4V carries _PAGE_READ_4V) and cached (CP | CV); PAGE_NONE is
 * present but never valid. pte_mkyoung sets ACCESSED and _PAGE_R, which is the valid bit:
 * an old PTE is invisible to the TSB-miss walk. _PAGE_W is set only when the software
 * write and dirty bits both are (__pte_mkhwwrite). */
static uint64_t sparc64_mk_pte(struct ptemu_leaf leaf)
{
	bool access = leaf.flags & (PTEMU_PROT_READ | PTEMU_PROT_WRITE | PTEMU_PROT_EXEC);
	uint64_t v = (leaf.pfn << SPARC64_PAGE_SHIFT) & SPARC64_PAGE_PADDR;

	v |= SPARC64_PAGE_PRESENT | SPARC64_PAGE_CP | SPARC64_PAGE_CV;
	if (access)
		v |= SPARC64_PAGE_READ;
	if (leaf.flags & PTEMU_PROT_WRITE)
		v |= SPARC64_PAGE_WRITE;
	if (leaf.flags & PTEMU_PROT_EXEC)
		v |= SPARC64_PAGE_EXEC;
	if (leaf.flags & PTEMU_PTE_DIRTY)
		v |= SPARC64_PAGE_MODIFIED;
	if (leaf.flags & PTEMU_PTE_YOUNG)
		v |= SPARC64_PAGE_ACCESSED | (access ? SPARC64_PAGE_VALID : 0);
	if ((leaf.flags & PTEMU_PROT_WRITE) && (leaf.flags & PTEMU_PTE_DIRTY))
		v |= SPARC64_PAGE_W;
	return v;
}

static struct ptemu_leaf sparc64_pte_leaf(uint64_t pte)
{
	struct ptemu_leaf l = { (pte & SPARC64_PAGE_PADDR) >> SPARC64_PAGE_SHIFT, 0 };

	if (pte & SPARC64_PAGE_READ)
		l.flags |= PTEMU_PROT_READ;
	if (pte & SPARC64_PAGE_WRITE)
		l.flags |= PTEMU_PROT_WRITE;
	if (pte & SPARC64_PAGE_EXEC)
		l.flags |= PTEMU_PROT_EXEC;
	if (pte & SPARC64_PAGE_MODIFIED)
		l.flags |= PTEMU_PTE_DIRTY;
	if (pte & SPARC64_PAGE_ACCESSED)
		l.flags |= PTEMU_PTE_YOUNG;
	return l;
}

/* pmd_mkhuge: pte_mkhuge's 4 MiB size bits plus _PAGE_PMD_HUGE. */
static uint64_t sparc64_mk_pmd_leaf(struct ptemu_leaf leaf)
{
	return sparc64_mk_pte(leaf) | SPARC64_PAGE_SZ4MB | SPARC64_PAGE_PMD_HUGE;
}

static struct ptemu_leaf sparc64_pmd_leaf(uint64_t pmd)
{
	return sparc64_pte_leaf(pmd);
}

/* ---- the TSBs ------------------------------------------------------------------------ */

static unsigned tsb_hash_shift(unsigned which)
{
	return which == SPARC64_TSB_HUGE ? SPARC64_REAL_HPAGE_SHIFT : SPARC64_PAGE_SHIFT;
}

/* tsb_reg_val's two halves. */
static uint64_t tsb_reg_base(uint64_t reg)
{
	return reg & ~(uint64_t)SPARC64_TSB_SIZE_INDEX_MASK;
}

static unsigned tsb_reg_nentries(uint64_t reg)
{
	return SPARC64_TSB_ENTRIES << (reg & SPARC64_TSB_SIZE_INDEX_MASK);
}

static uint64_t tsb_reg(const struct mm_struct *mm, unsigned which)
{
	return __atomic_load_n(&mm->context.tsb_block[which].reg, __ATOMIC_ACQUIRE);
}

uint64_t sparc64_tsb_base(const struct mm_struct *mm, unsigned which)
{
	return tsb_reg_base(tsb_reg(mm, which));
}

unsigned sparc64_tsb_nentries(const struct mm_struct *mm, unsigned which)
{
	uint64_t reg = tsb_reg(mm, which);

	return reg ? tsb_reg_nentries(reg) : 0;
}

static uint64_t tsb_reg_entry_pa(uint64_t reg, unsigned which, uint64_t va)
{
	return tsb_reg_base(reg) +
	       ((va >> tsb_hash_shift(which)) & (tsb_reg_nentries(reg) - 1)) * TSB_ENTRY_BYTES;
}

uint64_t sparc64_tsb_entry_pa(const struct mm_struct *mm, unsigned which, uint64_t va)
{
	uint64_t reg = tsb_reg(mm, which);

	return reg ? tsb_reg_entry_pa(reg, which, va) : 0;
}

/* TSB_LOCK_TAG then TSB_WRITE: the TTE first, then the tag, which also unlocks. */
static void tsb_insert(const struct ptemu_machine *m, uint64_t ent, uint64_t tag, uint64_t tte)
{
	for (;;) {
		uint64_t cur = ptemu_entry_load(m, ent);

		if (!(cur & SPARC64_TSB_TAG_LOCK) && ptemu_entry_cmpxchg(m, ent, cur, cur | SPARC64_TSB_TAG_LOCK))
			break;
	}
	ptemu_entry_store(m, ent + 8, tte);
	ptemu_entry_store(m, ent, tag);
}

/* tsb_flush: wait for a locked entry, then invalidate it if its tag matches. */
static void tsb_flush(const struct ptemu_machine *m, uint64_t ent, uint64_t tag)
{
	for (;;) {
		uint64_t cur = ptemu_entry_load(m, ent);

		if (cur & SPARC64_TSB_TAG_LOCK)
			continue;
		if (cur != tag || ptemu_entry_cmpxchg(m, ent, cur, SPARC64_TSB_TAG_INVALID))
			return;
	}
}

/* TSB_LOAD_QUAD: the tag and the TTE as one atomic 16-byte load. Every writer moves the
 * tag (to locked, or invalid) around its TTE store, so a tag read unchanged on both sides
 * of the TTE read is the pair as one load would have seen it; otherwise the entry is in
 * flux and the caller treats it as a miss. Without this, a probe could pair its tag with
 * the TTE of another address hashing to the same entry (4 MiB apart in the base TSB). */
static bool tsb_load_quad(const struct ptemu_machine *m, uint64_t ent, uint64_t *tag, uint64_t *tte)
{
	uint64_t t = ptemu_entry_load(m, ent);

	*tte = ptemu_entry_load(m, ent + 8);
	*tag = t;
	return ptemu_entry_load(m, ent) == t;
}

/* A TSB hit: the entry's tag is va >> 22, unlocked and valid. */
static bool tsb_probe(const struct ptemu_machine *m, uint64_t ent, uint64_t va, uint64_t *tte)
{
	uint64_t tag;

	return ent && tsb_load_quad(m, ent, &tag, tte) && tag == va >> 22;
}

/* A TSB of 8 KiB << index, every tag invalid (tsb_init): its tsb_reg_val, 0 without
 * memory. */
static uint64_t tsb_alloc(struct ptemu_machine *m, unsigned index)
{
	uint64_t pfn = phys_alloc_pages(m->phys, index);

	if (!pfn)
		return 0;
	uint64_t pa = pfn << SPARC64_PAGE_SHIFT;

	for (unsigned i = 0; i < SPARC64_TSB_ENTRIES << index; i++) {
		ptemu_entry_store(m, pa + i * TSB_ENTRY_BYTES, SPARC64_TSB_TAG_INVALID);
		ptemu_entry_store(m, pa + i * TSB_ENTRY_BYTES + 8, 0);
	}
	return pa | index;
}

static void tsb_free(struct ptemu_machine *m, uint64_t reg)
{
	phys_free_pages(m->phys, tsb_reg_base(reg) >> SPARC64_PAGE_SHIFT,
			reg & SPARC64_TSB_SIZE_INDEX_MASK);
}

/* tsb_size_to_rss_limit with sysctl_tsb_ratio -2: three quarters of the entries. */
static uint64_t tsb_rss_limit(unsigned index)
{
	uint64_t n = (uint64_t)SPARC64_TSB_ENTRIES << index;

	return n - n / 4;
}

/* Entry i of the TSB reg, if valid and not in flux (an entry being rewritten is skipped:
 * its old TTE is going away): its tag, its TTE and the address they translate, which the
 * tag (va bits 63:22) and the index (the bits below) give back. */
static bool tsb_entry_at(const struct ptemu_machine *m, uint64_t reg, unsigned which, unsigned i,
			 uint64_t *tag, uint64_t *tte, uint64_t *va)
{
	uint64_t ent = tsb_reg_base(reg) + (uint64_t)i * TSB_ENTRY_BYTES;

	if (!tsb_load_quad(m, ent, tag, tte) || (*tag & (SPARC64_TSB_TAG_INVALID | SPARC64_TSB_TAG_LOCK)))
		return false;
	*va = *tag << 22 | ((uint64_t)i << tsb_hash_shift(which) & ((1ull << 22) - 1));
	return true;
}

/* copy_tsb: every valid, unlocked entry of the old TSB into the new one, rehashed by its
 * address. The new TSB is not published yet: plain stores. */
static void copy_tsb(const struct ptemu_machine *m, uint64_t old, uint64_t new, unsigned which)
{
	for (unsigned i = 0; i < tsb_reg_nentries(old); i++) {
		uint64_t tag, tte, va;

		if (!tsb_entry_at(m, old, which, i, &tag, &tte, &va))
			continue;
		uint64_t to = tsb_reg_entry_pa(new, which, va);

		ptemu_entry_store(m, to + 8, tte);
		ptemu_entry_store(m, to, tag);
	}
}

/* tsb_grow: the smallest TSB whose RSS limit exceeds rss, up to 1 MiB (or the largest
 * block of simulated memory), where the limit becomes unbounded. A TSB it replaces is
 * copied into the new one under context.lock, which flush_tsb_user and update_mmu_cache
 * also hold; TLB-miss walks go on using the old one meanwhile, as they only copy from the
 * tables. The old TSB is freed once every CPU has taken an IPI (smp_tsb_sync): a walk
 * runs with interrupts off, so none that loaded the old address is still running. */
static void tsb_grow(struct mm_struct *mm, unsigned which, uint64_t rss)
{
	struct ptemu_machine *m = mm->machine;
	unsigned max_index = phys_max_order(m->phys) < SPARC64_TSB_MAX_INDEX ?
				     phys_max_order(m->phys) : SPARC64_TSB_MAX_INDEX;
	unsigned index = 0;

	while (index < max_index && tsb_rss_limit(index) <= rss)
		index++;
	uint64_t limit = index == max_index ? UINT64_MAX : tsb_rss_limit(index);
	uint64_t new = tsb_alloc(m, index);

	if (!new) {
		/* Under memory pressure: a first TSB of 8 KiB that never grows, else no more
		 * growing. */
		if (tsb_reg(mm, which) || !index || !(new = tsb_alloc(m, 0))) {
			if (tsb_reg(mm, which))
				__atomic_store_n(&mm->context.tsb_block[which].rss_limit, UINT64_MAX,
						 __ATOMIC_RELAXED);
			return;
		}
		limit = UINT64_MAX;
	}
	spin_lock(&mm->context.lock);
	uint64_t old = tsb_reg(mm, which);

	/* Another thread grew it first. */
	if (old && rss < __atomic_load_n(&mm->context.tsb_block[which].rss_limit, __ATOMIC_RELAXED)) {
		spin_unlock(&mm->context.lock);
		tsb_free(m, new);
		return;
	}
	__atomic_store_n(&mm->context.tsb_block[which].rss_limit, limit, __ATOMIC_RELAXED);
	if (old)
		copy_tsb(m, old, new, which);
	__atomic_store_n(&mm->context.tsb_block[which].reg, new, __ATOMIC_RELEASE);
	spin_unlock(&mm->context.lock);
	if (old) {
		ptemu_stat_add(&m->stats, PTEMU_STAT_tsb_grows, 1);
		if (m->tlb.ipi_all)
			m->tlb.ipi_all(m->tlb.ctx);
		tsb_free(m, old);
	}
}

/* init_new_context: the base TSB for an RSS of 0, the huge one on first use. */
static int sparc64_init_new_context(struct mm_struct *mm)
{
	tsb_grow(mm, SPARC64_TSB_BASE, 0);
	return tsb_reg(mm, SPARC64_TSB_BASE) ? 0 : -ENOMEM;
}

/* destroy_context: every CPU of the mm has stopped using it. */
static void sparc64_destroy_context(struct mm_struct *mm)
{
	for (unsigned i = 0; i < 2; i++) {
		uint64_t reg = __atomic_exchange_n(&mm->context.tsb_block[i].reg, 0, __ATOMIC_ACQ_REL);

		if (reg)
			tsb_free(mm->machine, reg);
	}
}

/* do_sparc64_fault's tail, after mmap_lock is dropped: the base TSB grows with the RSS
 * of base pages; the huge one with the 4 MiB halves of the huge pmds mapped, and an mm
 * that maps its first huge pmd gets its huge TSB (hugetlb_setup), which a TSB-miss walk
 * that found a huge pmd without one faulted for. */
static void sparc64_fault_epilogue(struct mm_struct *mm)
{
	int64_t thp = __atomic_load_n(&mm->context.thp_pte_count, __ATOMIC_ACQUIRE);
	int64_t rss = get_mm_counter(mm, MM_FILEPAGES) + get_mm_counter(mm, MM_ANONPAGES) +
		      get_mm_counter(mm, MM_SHMEMPAGES) -
		      thp * (int64_t)(1u << (SPARC64_PMD_SHIFT - SPARC64_PAGE_SHIFT));

	if (rss > 0 && (uint64_t)rss > __atomic_load_n(&mm->context.tsb_block[SPARC64_TSB_BASE].rss_limit,
						       __ATOMIC_RELAXED))
		tsb_grow(mm, SPARC64_TSB_BASE, (uint64_t)rss);
	rss = thp * (int64_t)(1u << (SPARC64_PMD_SHIFT - SPARC64_REAL_HPAGE_SHIFT));
	if (rss > 0 && (uint64_t)rss > __atomic_load_n(&mm->context.tsb_block[SPARC64_TSB_HUGE].rss_limit,
						       __ATOMIC_RELAXED)) {
		/* hugetlb_setup's smp_tsb_sync is left out: a walk here reads the mm's TSBs
		 * afresh on every miss, where a CPU reloads its TSB registers. */
		tsb_grow(mm, SPARC64_TSB_HUGE, tsb_reg(mm, SPARC64_TSB_HUGE) ? (uint64_t)rss : 0);
	}
}

/* The entry of the TSB reg that maps a page of [pfn, pfn + nr), if any: its address. The
 * checker asks at every page freed, and a grown TSB has up to 65536 entries: each TTE is
 * read once, in place, and only one in the range is read again as a whole entry. */
static bool tsb_scan_for_pfn(const struct ptemu_machine *m, uint64_t reg, unsigned which,
			     uint64_t pfn, uint64_t nr, uint64_t *va)
{
	const uint64_t *words = ptemu_slot_ptr(m, tsb_reg_base(reg));
	uint64_t pages = 1ull << (tsb_hash_shift(which) - SPARC64_PAGE_SHIFT);

	for (unsigned i = 0; i < tsb_reg_nentries(reg); i++) {
		/* Big-endian in simulated memory, as ptemu_entry_load reads it. */
		uint64_t tte = __builtin_bswap64(__atomic_load_n(&words[2 * i + 1], __ATOMIC_RELAXED));
		uint64_t first = (tte & SPARC64_PAGE_PADDR) >> SPARC64_PAGE_SHIFT, tag;

		if (first < pfn + nr && pfn < first + pages &&
		    tsb_entry_at(m, reg, which, i, &tag, &tte, va)) {
			first = (tte & SPARC64_PAGE_PADDR) >> SPARC64_PAGE_SHIFT;
			if (first < pfn + nr && pfn < first + pages)
				return true;
		}
	}
	return false;
}

/* Whether a TSB entry of the mm still maps a page of [pfn, pfn + nr). A scan counts only
 * if the TSB is still the mm's after it: one freed meanwhile (its mm exiting, the caller
 * having checked it live before) maps nothing, and one a grow replaced was copied into
 * the new TSB, which is scanned in turn. The same tsb_reg_val never comes back: a grow
 * only goes up in size. */
static bool sparc64_tsb_maps_pfn(struct mm_struct *mm, uint64_t pfn, uint64_t nr, uint64_t *va)
{
	for (unsigned w = 0; w < 2; w++) {
		for (uint64_t reg = tsb_reg(mm, w); reg; reg = tsb_reg(mm, w)) {
			bool found = tsb_scan_for_pfn(mm->machine, reg, w, pfn, nr, va);

			if (tsb_reg(mm, w) == reg) {
				if (found)
					return true;
				break;
			}
		}
	}
	return false;
}

/* ---- the TSB-miss walk (tsb_miss_page_table_walk, USER_PGTABLE_WALK_TL1) -------------- */

/* The TTE the walk finds for va, or 0 (tsb_do_fault). A huge pmd becomes the TTE of the
 * 4 MiB half holding va. */
static uint64_t user_pgtable_walk(const struct ptemu_walk_ctx *ctx, uint64_t pgd_pa, uint64_t va,
				  enum ptemu_walk_fault *why, struct ptemu_walk_result *out)
{
	const struct ptemu_arch *a = &ptemu_arch_sparc64;
	uint64_t table = pgd_pa;

	for (unsigned level = 0; level < SPARC64_PTE_LEVEL; level++) {
		uint64_t e = ctx->read_entry(ctx, level, table, ptemu_level_index(a, level, va));

		out->table_pa[level] = table;
		out->level = level;
		switch (sparc64_classify(level, e, &table)) {
		case PTEMU_ENTRY_TABLE:
			break;
		case PTEMU_ENTRY_LEAF:
			if (!(e & SPARC64_PAGE_VALID))
				return 0;
			out->leaf_size = 1ull << SPARC64_REAL_HPAGE_SHIFT;
			return (e & ~(1ull << SPARC64_REAL_HPAGE_SHIFT)) |
			       (va & (1ull << SPARC64_REAL_HPAGE_SHIFT));
		case PTEMU_ENTRY_BAD:
			*why = PTEMU_WALK_BAD_ENTRY;
			return 0;
		default:
			return 0;
		}
	}
	out->table_pa[SPARC64_PTE_LEVEL] = table;
	out->level = SPARC64_PTE_LEVEL;
	out->leaf_size = SPARC64_PAGE_SIZE;
	uint64_t pte = ctx->read_entry(ctx, SPARC64_PTE_LEVEL, table,
				       ptemu_level_index(a, SPARC64_PTE_LEVEL, va));

	return pte & SPARC64_PAGE_VALID ? pte : 0;
}

/* A TLB miss: the TSBs, else the page-table walk with interrupts off, which fills the
 * TSB; then the TLB load, which for an instruction fetch needs the execute bit. Without
 * ctx->mm (tests), the bare walk. */
static enum ptemu_walk_fault sparc64_hw_walk(const struct ptemu_walk_ctx *ctx, uint64_t root_pa,
					     uint64_t va, enum ptemu_access access,
					     struct ptemu_walk_result *out)
{
	struct mm_struct *mm = ctx->mm;
	struct ptemu_machine *m = mm ? mm->machine : NULL;
	enum ptemu_walk_fault why = PTEMU_WALK_TRANSLATION;
	uint64_t huge_ent = 0, base_ent = 0, tte = 0;
	bool hit = false;

	memset(out, 0, sizeof(*out));
	if (va >= SPARC64_TASK_SIZE)
		return PTEMU_WALK_TRANSLATION;
	if (mm) {
		huge_ent = sparc64_tsb_entry_pa(mm, SPARC64_TSB_HUGE, va);
		base_ent = sparc64_tsb_entry_pa(mm, SPARC64_TSB_BASE, va);
		if (tsb_probe(m, base_ent, va, &tte)) {
			out->leaf_size = SPARC64_PAGE_SIZE;
			hit = true;
		} else if (tsb_probe(m, huge_ent, va, &tte)) {
			out->leaf_size = 1ull << SPARC64_REAL_HPAGE_SHIFT;
			hit = true;
		}
		ptemu_stat_add(&m->stats, hit ? PTEMU_STAT_tsb_hits : PTEMU_STAT_tsb_misses, 1);
	}
	if (!hit) {
		/* Interrupts off from the trap to the retry: an RCU read-side section. */
		bool irqs_off = !m || !ptemu_injected(m, INJECT_SPARC_MISS_IRQS_ON);

		if (irqs_off)
			rcu_read_lock();
		tte = user_pgtable_walk(ctx, root_pa, va, &why, out);
		if (tte && mm) {
			bool huge = tte & SPARC64_PAGE_PMD_HUGE;
			uint64_t ent = huge ? huge_ent : base_ent;

			if (ent)
				tsb_insert(m, ent, va >> 22, tte);
			else
				tte = 0;	/* no huge TSB yet: hugetlb_setup, then the miss again */
		}
		if (irqs_off)
			rcu_read_unlock();
		if (!tte)
			return why;
	}
	if (access == PTEMU_ACCESS_FETCH && !(tte & SPARC64_PAGE_EXEC))
		return PTEMU_WALK_PERMISSION;	/* tsb_itlb_load: tsb_do_fault */
	out->paddr = (tte & SPARC64_PAGE_PADDR & ~(out->leaf_size - 1)) + (va & (out->leaf_size - 1));
	out->perms = PTEMU_PROT_READ | (tte & SPARC64_PAGE_W ? PTEMU_PROT_WRITE : 0) |
		     (tte & SPARC64_PAGE_EXEC ? PTEMU_PROT_EXEC : 0);
	return PTEMU_WALK_OK;
}

/* ---- update_mmu_cache: the new translation into the TSB -------------------------------- */

static void sparc64_update_mmu_cache(struct vm_area_struct *vma, uint64_t addr, uint64_t pte_pa)
{
	struct mm_struct *mm = vma->vm_mm;
	struct ptemu_machine *m = mm->machine;
	uint64_t pte = ptemu_pte_load(m, pte_pa);

	if (!(pte & SPARC64_PAGE_VALID))	/* pte_accessible */
		return;
	spin_lock(&mm->context.lock);
	uint64_t ent = sparc64_tsb_entry_pa(mm, SPARC64_TSB_BASE, addr);

	if (ent)
		tsb_insert(m, ent, addr >> 22, pte);
	spin_unlock(&mm->context.lock);
}

static void sparc64_update_mmu_cache_pmd(struct vm_area_struct *vma, uint64_t addr, uint64_t pmd_pa)
{
	struct mm_struct *mm = vma->vm_mm;
	struct ptemu_machine *m = mm->machine;
	uint64_t pmd = ptemu_entry_load(m, pmd_pa);

	if (!(pmd & SPARC64_PAGE_PMD_HUGE) || !(pmd & SPARC64_PAGE_ACCESSED) ||
	    !(pmd & SPARC64_PAGE_VALID))
		return;
	/* 8 MiB pages fabricated from 4 MiB hardware pages. */
	pmd |= addr & (1ull << SPARC64_REAL_HPAGE_SHIFT);
	spin_lock(&mm->context.lock);
	uint64_t ent = sparc64_tsb_entry_pa(mm, SPARC64_TSB_HUGE, addr);

	if (ent)
		tsb_insert(m, ent, addr >> 22, pmd);
	spin_unlock(&mm->context.lock);
}

/* ---- tlb_batch ------------------------------------------------------------------------ */

/* The per-CPU batch; a thread of the model is a CPU that does not migrate while it holds
 * the ptl, as the kernel's lazy-MMU sections run with preemption off. */
struct tlb_batch {
	struct mm_struct *mm;
	unsigned tlb_nr, hugepage_shift;
	bool active;
	uint64_t vaddrs[TLB_BATCH_NR];
};

static __thread struct tlb_batch host_tlb_batch;
static struct ptemu_thread_local_key tlb_batch_key = { sizeof(struct tlb_batch), 0 };

static struct tlb_batch *this_cpu_tlb_batch(void)
{
	return ptemu_thread_local(&tlb_batch_key, &host_tlb_batch);
}

/* flush_tsb_user: each batched address out of the TSB it hashes into. */
static void flush_tsb_user(struct tlb_batch *tb)
{
	struct mm_struct *mm = tb->mm;
	unsigned which = tb->hugepage_shift < SPARC64_REAL_HPAGE_SHIFT ? SPARC64_TSB_BASE : SPARC64_TSB_HUGE;

	spin_lock(&mm->context.lock);
	for (unsigned i = 0; i < tb->tlb_nr; i++) {
		uint64_t ent = sparc64_tsb_entry_pa(mm, which, tb->vaddrs[i]);

		if (ent)
			tsb_flush(mm->machine, ent, tb->vaddrs[i] >> 22);
	}
	spin_unlock(&mm->context.lock);
}

/* flush_tlb_pending: the TSB, then the demap on every CPU of the mm (one cross-call; here
 * one shootdown per run of adjacent pages, which is exactly the same set of pages). */
static void flush_tlb_pending(void)
{
	struct tlb_batch *tb = this_cpu_tlb_batch();

	if (!tb->tlb_nr)
		return;
	flush_tsb_user(tb);
	ptemu_tlb_demap_runs(tb->mm, tb->vaddrs, tb->tlb_nr, 1ull << tb->hugepage_shift);
	tb->tlb_nr = 0;
}

static void sparc64_enter_lazy_mmu_mode(void)
{
	this_cpu_tlb_batch()->active = true;
}

static void sparc64_leave_lazy_mmu_mode(void)
{
	flush_tlb_pending();
	this_cpu_tlb_batch()->active = false;
}

static void tlb_batch_add_one(struct mm_struct *mm, uint64_t vaddr, unsigned hugepage_shift)
{
	struct tlb_batch *tb = this_cpu_tlb_batch();

	vaddr &= ~(SPARC64_PAGE_SIZE - 1);
	if (tb->tlb_nr && mm != tb->mm)
		flush_tlb_pending();
	if (!tb->active) {
		/* flush_tsb_user_page and global_flush_tlb_page, at once. */
		struct tlb_batch one = { .mm = mm, .tlb_nr = 1, .hugepage_shift = hugepage_shift,
					 .vaddrs = { vaddr } };

		flush_tsb_user(&one);
		ptemu_tlb_demap(mm, vaddr, vaddr + (1ull << hugepage_shift));
		return;
	}
	if (!tb->tlb_nr) {
		tb->mm = mm;
		tb->hugepage_shift = hugepage_shift;
	}
	if (tb->hugepage_shift != hugepage_shift) {
		flush_tlb_pending();
		tb->mm = mm;
		tb->hugepage_shift = hugepage_shift;
	}
	tb->vaddrs[tb->tlb_nr++] = vaddr;
	if (tb->tlb_nr >= TLB_BATCH_NR)
		flush_tlb_pending();
}

/* set_pte_at's maybe_tlb_batch_add: a change of a valid (pte_accessible) PTE. */
static void sparc64_maybe_tlb_batch_add(struct mm_struct *mm, uint64_t addr, uint64_t pte_pa,
					uint64_t old, uint64_t new)
{
	(void)pte_pa;
	if (!(old & SPARC64_PAGE_VALID))
		return;
	if (!new && ptemu_injected(mm->machine, INJECT_SPARC_NO_TLB_BATCH))
		return;
	tlb_batch_add_one(mm, addr, SPARC64_PAGE_SHIFT);
}

/* tlb_batch_pmd_scan: the table the pmd pointed at, mapped from the old value (a
 * pte_offset_map of the copy, so under RCU: by a retract it is already detached), each
 * valid PTE batched. The reads go through the checker. */
static void tlb_batch_pmd_scan(struct mm_struct *mm, uint64_t vaddr, uint64_t table)
{
	struct ptemu_machine *m = mm->machine;
	struct ptemu_walk_ctx ctx;

	ptemu_checked_walk_ctx(m, &ctx);
	ptemu_stat_add(&m->stats, PTEMU_STAT_tsb_pmd_scans, 1);
	rcu_read_lock();
	for (unsigned i = 0; i < 1u << (SPARC64_PMD_SHIFT - SPARC64_PAGE_SHIFT); i++, vaddr += SPARC64_PAGE_SIZE)
		if (ctx.read_entry(&ctx, SPARC64_PTE_LEVEL, table, i) & SPARC64_PAGE_VALID)
			tlb_batch_add_one(mm, vaddr, SPARC64_PAGE_SHIFT);
	rcu_read_unlock();
}

/* sparc64's set_pmd_at after its store: thp_pte_count, then the old mapping's flush. */
static void sparc64_set_pmd_at_batch(struct mm_struct *mm, uint64_t addr, uint64_t pmd_pa,
				     uint64_t old, uint64_t new)
{
	uint64_t table;

	(void)pmd_pa;
	if ((old ^ new) & SPARC64_PAGE_PMD_HUGE)
		__atomic_add_fetch(&mm->context.thp_pte_count, new & SPARC64_PAGE_PMD_HUGE ? 1 : -1,
				   __ATOMIC_ACQ_REL);
	if (!old)
		return;
	addr &= ~((1ull << SPARC64_PMD_SHIFT) - 1);
	if (old & SPARC64_PAGE_PMD_HUGE) {
		tlb_batch_add_one(mm, addr, SPARC64_REAL_HPAGE_SHIFT);
		tlb_batch_add_one(mm, addr + (1ull << SPARC64_REAL_HPAGE_SHIFT), SPARC64_REAL_HPAGE_SHIFT);
	} else if (sparc64_classify(SPARC64_PMD_LEVEL, old, &table) == PTEMU_ENTRY_TABLE) {
		tlb_batch_pmd_scan(mm, addr, table);
	}
}

/* ---- guest: register windows --------------------------------------------------------- */

/* Register r of the current window (0-7 %g, 8-15 %o, 16-23 %l, 24-31 %i). */
static int window_reg(unsigned r)
{
	static const int base[4] = { UC_SPARC_REG_G0, UC_SPARC_REG_O0, UC_SPARC_REG_L0, UC_SPARC_REG_I0 };

	return base[r / 8] + (int)(r % 8);
}

static uint64_t reg_get(uc_engine *uc, unsigned r)
{
	uint64_t v = 0;

	if (r)
		uc_reg_read(uc, window_reg(r), &v);
	return v;
}

static void reg_set(uc_engine *uc, unsigned r, uint64_t v)
{
	if (r)	/* %g0 */
		uc_reg_write(uc, window_reg(r), &v);
}

#define SPARC64_STACK_BIAS 2047
#define INSN_SAVE 0x3c
#define INSN_RESTORE 0x3d
#define TT_SPILL 0x80	/* spill_n_normal/other: 0x80-0xbc, by WSTATE */
#define TT_FILL 0xc0	/* fill_n_normal/other: 0xc0-0xfc */

static bool sparc64_wants_trap(int intno)
{
	return intno >= TT_SPILL && intno < TT_FILL + 0x40 && !(intno & 3);
}

/* Unicorn starts the CPU in user mode with CANSAVE = CANRESTORE = 0 and exposes neither
 * CWP nor the window counters, so every `save` traps to spill and every `restore` to fill
 * (workloads/README.md). The host does what the kernel's handlers and the instruction
 * together would: a spill writes the caller's %l and %i to its save area at %sp + 2047
 * and moves %o to %i; a fill moves %i to %o and reloads %l and %i from the new %sp's save
 * area; then the instruction's own add into rd, and the PC past it (NPC follows). The
 * window is stored through the model's translation by copy_to_user, which resolves a
 * fault as the kernel's window fix-up does, and the registers change only once it is
 * stored, so a spill that faults loses nothing. */
/* The window's memory: through the model's translation, or without an mm (the bench's
 * bare Unicorn, identity-mapped) through the engine's own. Both return 0 on success. */
static int window_read(uc_engine *uc, struct mm_struct *mm, void *dst, uint64_t va, size_t n)
{
	return mm ? copy_from_user(mm, dst, va, n) : uc_mem_read(uc, va, dst, n) != UC_ERR_OK;
}

static int window_write(uc_engine *uc, struct mm_struct *mm, uint64_t va, const void *src, size_t n)
{
	return mm ? copy_to_user(mm, va, src, n) : uc_mem_write(uc, va, src, n) != UC_ERR_OK;
}

static void window_stat(struct mm_struct *mm, enum ptemu_stat stat)
{
	if (mm)
		ptemu_stat_add(&mm->machine->stats, stat, 1);
}

static int sparc64_handle_trap(void *engine, struct mm_struct *mm, int intno, char *err, size_t errlen)
{
	uc_engine *uc = engine;
	bool spill = intno < TT_FILL;
	uint64_t pc = 0, regs[16];
	uint8_t buf[sizeof(regs)];
	uint32_t insn;

	uc_reg_read(uc, UC_SPARC_REG_PC, &pc);
	if (window_read(uc, mm, &insn, pc, sizeof(insn))) {
		snprintf(err, errlen, "window %s trap at pc %#" PRIx64 ": the instruction is not readable",
			 spill ? "spill" : "fill", pc);
		return -1;
	}
	insn = __builtin_bswap32(insn);
	unsigned op3 = insn >> 19 & 0x3f, rd = insn >> 25 & 0x1f, rs1 = insn >> 14 & 0x1f;

	if (insn >> 30 != 2 || op3 != (spill ? INSN_SAVE : INSN_RESTORE)) {
		snprintf(err, errlen, "window %s trap at pc %#" PRIx64 " on instruction %#x, which is "
			 "not a %s", spill ? "spill" : "fill", pc, insn, spill ? "save" : "restore");
		return -1;
	}
	int64_t operand = insn & (1u << 13) ? (int64_t)((int32_t)(insn << 19) >> 19)
					     : (int64_t)reg_get(uc, insn & 0x1f);
	uint64_t result = reg_get(uc, rs1) + (uint64_t)operand;

	if (spill) {
		uint64_t sp = reg_get(uc, 14);

		for (unsigned i = 0; i < 16; i++) {
			uint64_t be = __builtin_bswap64(reg_get(uc, 16 + i));

			memcpy(buf + 8 * i, &be, 8);
		}
		if (window_write(uc, mm, sp + SPARC64_STACK_BIAS, buf, sizeof(buf))) {
			snprintf(err, errlen, "window spill at pc %#" PRIx64 " to %#" PRIx64 ": no writable "
				 "stack there (the kernel's SIGSEGV)", pc, sp + SPARC64_STACK_BIAS);
			return -1;
		}
		for (unsigned i = 0; i < 8; i++)
			reg_set(uc, 24 + i, reg_get(uc, 8 + i));
		window_stat(mm, PTEMU_STAT_window_spills);
	} else {
		uint64_t sp = reg_get(uc, 30);	/* the callee's %fp is the caller's %sp */

		if (window_read(uc, mm, buf, sp + SPARC64_STACK_BIAS, sizeof(buf))) {
			snprintf(err, errlen, "window fill at pc %#" PRIx64 " from %#" PRIx64 ": no readable "
				 "stack there (the kernel's SIGSEGV)", pc, sp + SPARC64_STACK_BIAS);
			return -1;
		}
		for (unsigned i = 0; i < 8; i++)
			reg_set(uc, 8 + i, reg_get(uc, 24 + i));
		for (unsigned i = 0; i < 16; i++) {
			memcpy(&regs[i], buf + 8 * i, 8);
			reg_set(uc, 16 + i, __builtin_bswap64(regs[i]));
		}
		window_stat(mm, PTEMU_STAT_window_fills);
	}
	reg_set(uc, rd, result);
	pc += 4;
	uc_reg_write(uc, UC_SPARC_REG_PC, &pc);
	return 0;
}

const struct ptemu_arch ptemu_arch_sparc64 = {
	.name = "sparc64",
	.description = "sparc64 sun4v TTEs, 8 KiB pages, 4 levels of one-page tables, 8 MiB THP "
		       "as two 4 MiB TTEs; per-mm TSBs and the software TSB-miss walk (an RCU reader)",
	.pt_reclaim_status = "what-if: PT_RECLAIM (6.14) is enabled for x86 only; sparc64 has "
			     "MMU_GATHER_RCU_TABLE_FREE, which it needs",

	.page_shift = SPARC64_PAGE_SHIFT,
	.va_bits = 53,
	.task_size = SPARC64_TASK_SIZE,
	.nr_levels = 4,
	.level_shift = { 43, 33, 23, 13 },
	.level_bits = { 10, 10, 10, 10 },
	.table_bytes = { 8192, 8192, 8192, 8192 },
	.entry_bytes = 8,
	.big_endian = true,
	.pmd_leaf_shift = SPARC64_PMD_SHIFT,

	.none_entry = sparc64_none_entry,
	.classify = sparc64_classify,
	.mk_table = sparc64_mk_table,
	.pte_none = sparc64_pte_none,
	.pte_present = sparc64_pte_present,
	.mk_pte = sparc64_mk_pte,
	.pte_leaf = sparc64_pte_leaf,
	.mk_pmd_leaf = sparc64_mk_pmd_leaf,
	.pmd_leaf = sparc64_pmd_leaf,

	/* sparc64 selects no ARCH_ENABLE_SPLIT_PMD_PTLOCK: the pmd lock is page_table_lock
	 * (pgtable_trans_huge_deposit asserts it); PTE tables have split locks. */
	.pmd_lock_is_page_table_lock = true,

	.pte_table_bytes = 8192,
	.tables_per_page = 1,
	.pte_alloc_one = ptemu_generic_pte_alloc_one,
	.pte_free = ptemu_generic_pte_free,
	/* pgtable_t is pte_t *: the page found from it goes to call_rcu, and the callback
	 * frees it as __pte_free does. The same steps as the generic version. */
	.pte_free_defer = ptemu_generic_pte_free_defer,
	.rcu_table_free = true,		/* MMU_GATHER_RCU_TABLE_FREE on SMP */
	.pte_free_tlb = ptemu_generic_pte_free_tlb,
	.tlb_remove_table = ptemu_generic_tlb_remove_table,
	.init_new_context = sparc64_init_new_context,
	.mm_destroy_context = sparc64_destroy_context,

	/* do_sparc64_fault: "allow reads even for write-only mappings", by VM_READ | VM_EXEC. */
	.read_fault_vm_flags = VM_READ | VM_EXEC,

	.hw_walk = sparc64_hw_walk,
	/* A demap is a cross-call, which a CPU takes only with interrupts on again: after its
	 * miss walk has finished. */
	.flush_waits_for_walks = true,
	.walker_is_rcu_reader = true,
	.retract_flush = PTEMU_RETRACT_FLUSH_NONE,
	.leaf_flush_drops_walk_cache = true,	/* there is no walk cache */
	.maybe_tlb_batch_add = sparc64_maybe_tlb_batch_add,
	.set_pmd_at_batch = sparc64_set_pmd_at_batch,
	.arch_enter_lazy_mmu_mode = sparc64_enter_lazy_mmu_mode,
	.arch_leave_lazy_mmu_mode = sparc64_leave_lazy_mmu_mode,
	.flush_tlb_range_is_noop = true,
	.update_mmu_cache = sparc64_update_mmu_cache,
	.update_mmu_cache_pmd = sparc64_update_mmu_cache_pmd,
	.fault_epilogue = sparc64_fault_epilogue,
	.hw_cache_maps_pfn = sparc64_tsb_maps_pfn,
	.tlb_entries = 1024,
	.walk_cache_entries = 0,
	.model_injections = 1u << INJECT_SPARC_MISS_IRQS_ON | 1u << INJECT_SPARC_NO_TLB_BATCH,

	.isa = {
		.uc_arch = UC_ARCH_SPARC,
		.uc_mode = UC_MODE_SPARC64 | UC_MODE_BIG_ENDIAN,
		.cs_arch = CS_ARCH_SPARC,
		.cs_mode = CS_MODE_BIG_ENDIAN | CS_MODE_V9,
		.elf_machine = EM_SPARCV9,
		.elf_class = 64,
		.clang_target = "sparcv9-linux-gnu",
		.binutils_triple = "sparc64-linux-gnu",
		.workload_dir = "sparc64",
		.reg_pc = UC_SPARC_REG_PC,
		.reg_sp = UC_SPARC_REG_SP,
		.reg_sysno = UC_SPARC_REG_G1,
		.reg_arg = { UC_SPARC_REG_O0, UC_SPARC_REG_O1, UC_SPARC_REG_O2,
			     UC_SPARC_REG_O3, UC_SPARC_REG_O4, UC_SPARC_REG_O5 },
		.reg_ret = UC_SPARC_REG_O0,
		.stack_bias = SPARC64_STACK_BIAS,
		.stack_reserve = 176,	/* the register save area and the ABI's argument slots */
		.syscall_intno = 0x100 + 0x6d,	/* ta 0x6d: trap type 0x100 + the software trap */
		.syscall_insn_bytes = 4,
		.pc_after_syscall = false,
		.wants_trap = sparc64_wants_trap,
		.handle_trap = sparc64_handle_trap,
	},
};
