/* Address spaces: mm_struct, VMAs and the memory system calls (mmap, munmap, mprotect,
 * madvise), page-table teardown (zap, free_pgtables) and exit_mmap. */
#ifndef PTEMU_MM_H
#define PTEMU_MM_H

#include <stdint.h>

#include <ptemu/list.h>
#include <ptemu/sync.h>

#ifdef __cplusplus
extern "C" {
#endif

struct ptemu_machine;
struct ptemu_file;

/* vm_flags (Linux's values where Linux has them). */
#define VM_READ 0x1u
#define VM_WRITE 0x2u
#define VM_EXEC 0x4u
#define VM_SHARED 0x8u
#define VM_HUGEPAGE 0x20000000u
#define VM_NOHUGEPAGE 0x40000000u

struct vm_area_struct {
	uint64_t vm_start, vm_end;	/* [start, end) */
	uint64_t vm_pgoff;		/* file offset of vm_start, in base pages */
	unsigned vm_flags;
	struct ptemu_file *vm_file;	/* NULL: anonymous */
	bool anon_vma;			/* has anonymous pages (private COW or anon) */
	struct mm_struct *vm_mm;
};

enum mm_counter { MM_FILEPAGES, MM_ANONPAGES, MM_SHMEMPAGES, NR_MM_COUNTERS };

/* What the models keep per mm for pages shared between tables (s390's pgtable_list under
 * context.lock; powerpc's fragment cursor). */
struct mm_context {
	struct ptemu_spinlock lock;
	struct list_head pgtable_list;
	uint64_t pte_frag;	/* next never-used fragment, 0 when none */
	/* A freed fragment kept to be handed out again: only under ppc-frag-reuse, the bug
	 * that the never-reuse rule prevents. */
	uint64_t pte_frag_freed;
	/* A lazy invalidation left its purge to the mm's next flush, which then covers the
	 * whole mm (s390's context.flush_mm and __tlb_flush_mm_lazy). Atomic. */
	bool flush_mm;
	/* sparc64's context.tsb_block: the base-page and huge-page TSBs, and thp_pte_count,
	 * the huge pmds mapped (atomic). reg is tsb_reg_val: the TSB's physical address with
	 * its size index (8 KiB << index) in the low 3 bits, one word so that a TLB-miss walk
	 * reads both at once; 0 until allocated; atomic. rss_limit: the RSS beyond which a
	 * fault grows the TSB (atomic; changed under lock). */
	struct {
		uint64_t reg;
		uint64_t rss_limit;
	} tsb_block[2];
	int64_t thp_pte_count;
};

#define MAX_PTE_MAPPED_THP 8

struct mm_struct {
	struct ptemu_machine *machine;
	int id;
	uint64_t pgd_pa;
	struct ptemu_rwsem mmap_lock;
	struct ptemu_spinlock page_table_lock;
	int64_t pgtables_bytes;		/* atomic: attached tables at every level */
	int mm_users;			/* atomic: 0 once exiting */
	int mm_count;			/* atomic: references to the struct itself (mmgrab) */
	struct mm_context context;
	int64_t rss[NR_MM_COUNTERS];	/* atomic */
	/* VMAs sorted by address; changed under mmap_lock held for write. */
	struct vm_area_struct **vmas;
	size_t nr_vmas, cap_vmas;
	uint64_t mmap_base;		/* lowest address mmap hands out */
	uint64_t mmap_top;		/* mmap searches down from here */
	/* Legacy protocol: addresses whose retraction found mmap_lock taken, for khugepaged's
	 * next visit (khugepaged_add_pte_mapped_thp), under page_table_lock. */
	uint64_t pte_mapped_thp[MAX_PTE_MAPPED_THP];
	unsigned nr_pte_mapped_thp;
	/* Atomic: PTEs cleared by try_to_unmap whose batched flush may still be pending (low
	 * 16 bits), and the count a flush_tlb_batched_pending has caught up with (high 16). */
	uint32_t tlb_flush_batched;
};

/* The struct stays until the last mmdrop (khugepaged holds one while it scans an mm). */
void mmgrab(struct mm_struct *mm);
void mmdrop(struct mm_struct *mm);

/* NULL on OOM. */
struct mm_struct *mm_alloc(struct ptemu_machine *m);
/* Unmaps every VMA, frees every page table and the mm, in exit_mmap's order. */
void mm_destroy(struct mm_struct *mm);
/* A process's exit (v6.6): zaps every VMA, leaves every i_mmap, audits the counters
 * (counter-mismatch), frees the tables and the mm. */
void exit_mmap(struct mm_struct *mm);

static inline void add_mm_counter(struct mm_struct *mm, enum mm_counter c, int64_t n)
{
	__atomic_fetch_add(&mm->rss[c], n, __ATOMIC_RELAXED);
}
static inline int64_t get_mm_counter(const struct mm_struct *mm, enum mm_counter c)
{
	return __atomic_load_n(&mm->rss[c], __ATOMIC_RELAXED);
}

/* The VMA containing addr, or NULL. Caller holds mmap_lock. */
struct vm_area_struct *vma_lookup(struct mm_struct *mm, uint64_t addr);
/* The first VMA ending above addr (it may start above it), or NULL. */
struct vm_area_struct *find_vma(struct mm_struct *mm, uint64_t addr);

/* Memory system calls: 0 / an address, or a negative errno. They take mmap_lock. */
int64_t do_mmap(struct mm_struct *mm, uint64_t addr, uint64_t len, unsigned prot, unsigned flags,
		struct ptemu_file *file, uint64_t offset);
int do_munmap(struct mm_struct *mm, uint64_t start, uint64_t len);
int do_mprotect(struct mm_struct *mm, uint64_t start, uint64_t len, unsigned prot);
int do_madvise(struct mm_struct *mm, uint64_t start, uint64_t len, int advice);

/* Unmaps every page mapped in [start, end) of the VMA (zap_page_range_single); tables stay. */
void zap_page_range_single(struct vm_area_struct *vma, uint64_t start, uint64_t end);

/* Audit: MM_* counters and pgtables_bytes against a walk of the tables; reports
 * counter-mismatch. Caller holds mmap_lock for write or the mm is quiescent. */
void mm_audit_counters(struct mm_struct *mm);

static inline void mm_inc_pgtables(struct mm_struct *mm, int64_t bytes)
{
	__atomic_fetch_add(&mm->pgtables_bytes, bytes, __ATOMIC_RELAXED);
}
static inline int64_t mm_pgtables_bytes(const struct mm_struct *mm)
{
	return __atomic_load_n(&mm->pgtables_bytes, __ATOMIC_RELAXED);
}

#ifdef __cplusplus
}
#endif
#endif
