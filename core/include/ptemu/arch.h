/* The architecture interface: one const struct ptemu_arch per MMU model variant.
 *
 * Every difference between the models of DESIGN.md section 4 lives here, so that core/
 * never names an architecture and a new model is one folder under mmu/ plus one line in
 * the registry (mmu/registry.c).
 *
 * Levels are numbered from the root (0) to the PTE level (nr_levels - 1); the level above
 * the PTE level is the "pmd" level in Linux's sense, whatever the architecture calls it
 * (an s390 segment table, an arm64 level-2 table). Entry values are handled in host byte
 * order as uint64_t; core converts to and from the model's byte order when it touches
 * simulated memory.
 */
#ifndef PTEMU_ARCH_H
#define PTEMU_ARCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct mm_struct;
struct mmu_gather;
struct page;
struct ptemu_elf_image;
struct ptemu_machine;
struct vm_area_struct;

#define PTEMU_MAX_LEVELS 5

/* What an entry of a non-leaf level holds, as __pte_offset_map must tell them apart
 * (kernel-spec 1.1). */
enum ptemu_entry_kind {
	PTEMU_ENTRY_NONE,	/* empty slot; on s390 that is the invalid bit, not zero */
	PTEMU_ENTRY_TABLE,	/* points to a next-level table */
	PTEMU_ENTRY_LEAF,	/* a block/huge mapping (pmd_trans_huge) */
	PTEMU_ENTRY_MIGRATION,	/* a non-present swap-style entry */
	PTEMU_ENTRY_BAD,	/* garbage: pmd_bad */
};

/* Architecture-neutral protection and state of a leaf mapping. */
enum {
	PTEMU_PROT_READ = 1u << 0,
	PTEMU_PROT_WRITE = 1u << 1,
	PTEMU_PROT_EXEC = 1u << 2,
	PTEMU_PTE_YOUNG = 1u << 3,	/* accessed (arm64 AF, s390 software young) */
	PTEMU_PTE_DIRTY = 1u << 4,	/* software dirty */
	/* Memory type made uncached (classic arm's adjust_pte); kept by the fix-ups that
	 * decode and re-encode a PTE, as pte_mkyoung keeps it. */
	PTEMU_PTE_UNCACHED = 1u << 5,
};

/* Decoded leaf entry (PTE or huge pmd). */
struct ptemu_leaf {
	uint64_t pfn;		/* in base pages */
	unsigned flags;		/* PTEMU_PROT_* | PTEMU_PTE_* */
};

enum ptemu_access { PTEMU_ACCESS_READ, PTEMU_ACCESS_WRITE, PTEMU_ACCESS_FETCH };

/* Why a hardware walk refused a translation. */
enum ptemu_walk_fault {
	PTEMU_WALK_OK,
	PTEMU_WALK_TRANSLATION,	/* an invalid entry at walk.level */
	PTEMU_WALK_PERMISSION,	/* mapping present, access not allowed */
	PTEMU_WALK_ACCESS_FLAG,	/* arm64: AF clear (Linux keeps AF set; counted, not fatal) */
	PTEMU_WALK_BAD_ENTRY,	/* a reserved encoding: the walker would take an exception */
	/* Nothing to enter yet: the access is retried, the walk run again (hash_page found
	 * the PTE busy, or its new HPTE gone already). */
	PTEMU_WALK_RETRY,
};

struct ptemu_walk_result {
	enum ptemu_walk_fault fault;
	unsigned level;		/* level of the leaf, or of the entry that faulted */
	uint64_t paddr;		/* translated physical address (of the page base + offset) */
	unsigned perms;		/* PTEMU_PROT_* the TLB may cache for this translation */
	uint64_t leaf_size;	/* bytes mapped by the leaf (base page or block) */
	uint64_t table_pa[PTEMU_MAX_LEVELS];	/* table read at each level, for walk caches */
};

/* How a walker reads one entry. Core supplies the reader: it goes through the checker
 * (a walk touching a freed table is pt-use-after-free) and later through the vCPU's walk
 * cache. The walker must not read simulated memory any other way. */
struct ptemu_walk_ctx {
	uint64_t (*read_entry)(const struct ptemu_walk_ctx *ctx, unsigned level,
			       uint64_t table_pa, unsigned index);
	void *opaque;
	/* The address space walked, for a model's own translation caches in memory (sparc64's
	 * TSB); NULL when a bare table walk is wanted (tests). */
	struct mm_struct *mm;
};

/* Which invalidation a retract's pmdp_collapse_flush issues (DESIGN.md section 3). */
enum ptemu_retract_flush {
	PTEMU_RETRACT_FLUSH_RANGE,	/* flush_tlb_range incl. walk caches (arm64 TLBI, s390 IDTE) */
	PTEMU_RETRACT_FLUSH_HASH,	/* serialize_against_pte_lookup + HPTE flush (ppc64-hash) */
	PTEMU_RETRACT_FLUSH_NONE,	/* sparc64: flush_tlb_range is empty; RCU alone protects */
};

/* The guest ISA as Unicorn, Capstone and ELF know it. Values are those libraries' enum
 * values, kept as ints so that this header does not depend on them. */
struct ptemu_isa {
	int uc_arch, uc_mode;
	int cs_arch, cs_mode;
	unsigned elf_machine;	/* EM_* */
	unsigned elf_class;	/* 32 or 64 */
	const char *clang_target;
	const char *binutils_triple;
	const char *workload_dir;	/* subdirectory of the built guest images */

	/* The guest ABI (workloads/include/ptemu_abi.h): Unicorn register ids. */
	int reg_pc, reg_sp;
	int reg_sysno;
	int reg_arg[6];		/* the first four also carry the start-up arguments */
	int reg_ret;
	uint64_t stack_bias;	/* added to the stack pointer (sparc64: 2047) */
	uint64_t stack_reserve;	/* bytes kept free below the initial stack pointer */
	/* The syscall instruction as Unicorn 2.1.1 reports it (measured, workloads/README.md):
	 * the UC_HOOK_INTR number, the instruction's length, and whether the PC read after the
	 * stop already points past it. */
	int syscall_intno;
	unsigned syscall_insn_bytes;
	bool pc_after_syscall;
	/* Extra CPU set-up before the first run (s390x: 64-bit addressing); 0 or -1. */
	int (*cpu_init)(void *uc);
	/* Traps other than the syscall that the kernel handles for the program (sparc64's
	 * register-window spill and fill): wants_trap says which UC_HOOK_INTR numbers;
	 * handle_trap runs them outside guest mode, taking faults through the model's
	 * translation as copy_to_user does, and leaves the PC after the trapping instruction.
	 * 0, or -1 with a message (the process dies, as the kernel's SIGSEGV). mm NULL: the
	 * engine's own memory is the guest's (the bench's bare Unicorn). */
	bool (*wants_trap)(int intno);
	int (*handle_trap)(void *uc, struct mm_struct *mm, int intno, char *err, size_t errlen);
};

struct ptemu_arch {
	const char *name;		/* the CLI's --arch value */
	const char *description;
	/* What --reclaim-empty-tables (6.14's PT_RECLAIM) is on this model's kernel: upstream
	 * or a what-if, and why (ptemu list arches). */
	const char *pt_reclaim_status;

	/* Geometry. */
	unsigned page_shift;		/* base page: 12, 13 or 16 */
	unsigned va_bits;
	uint64_t task_size;		/* TASK_SIZE, the end of user space; 0 means 2^va_bits */
	unsigned nr_levels;		/* levels actually walked, root to PTE */
	unsigned level_shift[PTEMU_MAX_LEVELS];	/* VA shift of the index of each level */
	unsigned level_bits[PTEMU_MAX_LEVELS];	/* index bits of each level */
	unsigned table_bytes[PTEMU_MAX_LEVELS];	/* size of one table of each level */
	/* Bytes of a PTE: 4 on classic arm, 8 elsewhere. Entries of the other levels are
	 * 8 bytes on every model (classic arm's is the pair of first-level descriptors that
	 * one Linux pgd entry holds). */
	unsigned entry_bytes;
	bool big_endian;		/* byte order of entries in simulated memory */
	unsigned pmd_leaf_shift;	/* THP size (0: no PMD leaf, e.g. classic arm) */

	/* Entry encodings, with the real bit layouts of the architecture. */
	uint64_t (*none_entry)(unsigned level);	/* what an empty slot holds; also poison */
	enum ptemu_entry_kind (*classify)(unsigned level, uint64_t entry, uint64_t *table_pa);
	uint64_t (*mk_table)(unsigned level, uint64_t table_pa);
	bool (*pte_none)(uint64_t pte);
	bool (*pte_present)(uint64_t pte);
	uint64_t (*mk_pte)(struct ptemu_leaf leaf);
	struct ptemu_leaf (*pte_leaf)(uint64_t pte);	/* decode a present PTE */
	uint64_t (*mk_pmd_leaf)(struct ptemu_leaf leaf);	/* pfn aligned to the THP size */
	struct ptemu_leaf (*pmd_leaf)(uint64_t pmd);	/* decode a LEAF pmd */

	/* Hardware twins (classic arm): a PTE table page holds the Linux PTEs and, hw_twin_offset
	 * bytes further, the hardware descriptors the walker reads; set_pte_ext writes the Linux
	 * PTE, then pte_hw_twin of it. NULL where the walker reads the Linux PTE itself. */
	uint64_t (*pte_hw_twin)(uint64_t pte);
	unsigned hw_twin_offset;

	/* Without split page-table locks (USE_SPLIT_PMD_PTLOCKS or USE_SPLIT_PTE_PTLOCKS off)
	 * the pmd lock, or also every PTE table's lock, is mm->page_table_lock. */
	bool pmd_lock_is_page_table_lock;
	bool pte_lock_is_page_table_lock;

	/* PTE table allocation and freeing (kernel-spec section 2). A PTE table is
	 * pte_table_bytes inside a page; tables_per_page > 1 where pages are shared
	 * (s390 halves, powerpc fragments). Tables returned are filled with none_entry. */
	unsigned pte_table_bytes;
	unsigned tables_per_page;
	uint64_t (*pte_alloc_one)(struct mm_struct *mm);	/* table pa, 0 on OOM */
	void (*pte_free)(struct mm_struct *mm, uint64_t table_pa);
	void (*pte_free_defer)(struct mm_struct *mm, uint64_t table_pa);
	/* MMU_GATHER_RCU_TABLE_FREE: tables an mmu_gather frees wait for a grace period
	 * after the flush (tlb_remove_table); without it they are freed after the flush. */
	bool rcu_table_free;
	/* __pte_free_tlb: hand a detached table to the gather (tlb_remove_table). */
	void (*pte_free_tlb)(struct mmu_gather *tlb, uint64_t table_pa);
	/* __tlb_remove_table: free a gathered table, the token pte_free_tlb queued. */
	void (*tlb_remove_table)(struct ptemu_machine *m, uint64_t table);
	/* Set up what the model keeps per machine (ppc64-hash's hashed page table, in simulated
	 * memory: machine->arch_mem_pa) once the memory exists: 0, or -1 with a message.
	 * machine_destroy undoes it. NULL: nothing. */
	int (*machine_init)(struct ptemu_machine *m, char *err, size_t errlen);
	void (*machine_destroy)(struct ptemu_machine *m);
	/* Set up what the model keeps per mm (sparc64's base TSB) at mm creation: 0, or
	 * -ENOMEM. NULL: nothing to set up. */
	int (*init_new_context)(struct mm_struct *mm);
	/* arch_exit_mmap: at the start of exit_mmap, before the zap, under mmap_lock for read
	 * (powerpc's destroy_pagetable_cache); NULL: nothing. */
	void (*arch_exit_mmap)(struct mm_struct *mm);
	/* Tear down what the model keeps per mm (fragment caches, TSBs) at mm free. */
	void (*mm_destroy_context)(struct mm_struct *mm);

	/* The hardware side. */
	enum ptemu_walk_fault (*hw_walk)(const struct ptemu_walk_ctx *ctx, uint64_t root_pa,
					 uint64_t va, enum ptemu_access access,
					 struct ptemu_walk_result *out);
	bool flush_waits_for_walks;	/* arm64 TLBI+DSB, s390 IDTE wait for walks in flight */
	bool walker_is_rcu_reader;	/* sparc64 TSB miss, ppc hash_page: IRQs off */
	enum ptemu_retract_flush retract_flush;
	/* A last-level invalidation (flush_tlb_page, the batched unmap flush, a gather that
	 * freed no table) also drops walk-cache entries: false on arm64, whose TLBI VALE1IS
	 * keeps them; true on s390, whose flushes purge the whole ASCE (__tlb_flush_mm_lazy). */
	bool leaf_flush_drops_walk_cache;
	/* update_mmu_cache after a fault installed or fixed up the PTE at pte_pa, under its ptl
	 * (classic arm: make_coherent's adjust_pte of shared aliases); NULL: nothing to do. */
	void (*update_mmu_cache)(struct vm_area_struct *vma, uint64_t addr, uint64_t pte_pa);
	/* ptep_set_access_flags flushes the page when a fault changed the PTE: the generic one
	 * (flush_tlb_fix_spurious_fault, arm); arm64's own does not. */
	bool access_fixup_flushes_tlb;
	/* pte_update runs assert_pte_locked on every non-huge PTE it changes (powerpc with
	 * DEBUG_VM): ptep_get_and_clear and the access-flag fix-up. */
	bool pte_update_asserts_locked;
	/* flush_dcache_mmap_lock is the mapping's i_pages lock (arm), taken around every i_mmap
	 * change; false: a no-op, as on most architectures. */
	bool flush_dcache_mmap_lock;
	/* Invalidation driven by the entry changes themselves (sparc64's tlb_batch_add): after
	 * set_pte_at or ptep_get_and_clear stored over old_pte, and after set_pmd_at (also
	 * pmdp_huge_get_and_clear) stored over old_pmd, under the ptl or the pmd lock. Between
	 * arch_enter_lazy_mmu_mode and arch_leave_lazy_mmu_mode the model may batch them (per
	 * thread, as the kernel's per-CPU batch); leaving flushes the batch. NULL: nothing. */
	void (*maybe_tlb_batch_add)(struct mm_struct *mm, uint64_t addr, uint64_t pte_pa,
				    uint64_t old_pte, uint64_t new_pte);
	void (*set_pmd_at_batch)(struct mm_struct *mm, uint64_t addr, uint64_t pmd_pa,
				 uint64_t old_pmd, uint64_t new_pmd);
	void (*arch_enter_lazy_mmu_mode)(void);
	void (*arch_leave_lazy_mmu_mode)(void);
	/* A hash MMU's bookkeeping in Linux PTEs and huge pmds (ppc64-hash's _PAGE_HPTEFLAGS):
	 * pte_same ignores these bits. pte_busy_bit, one of them (H_PAGE_BUSY), is held by
	 * hash_page while it inserts a hardware entry: every update of a PTE or huge pmd
	 * (pte_update, pmd_hugepage_update) spins until it is clear, then changes the entry
	 * with one compare-and-swap. 0: no such bits. */
	uint64_t pte_hash_flags;
	uint64_t pte_busy_bit;
	/* arch_needs_pgtable_deposit (ppc64-hash): do_set_pmd deposits a fresh PTE table with
	 * every huge pmd it installs, even for a file THP, at this many bytes past the pmd
	 * (the doubled PMD table's second half, pgtable_trans_huge_deposit); zapping the huge
	 * pmd withdraws it, zeroed, and frees it at once with pte_free. 0: no deposit. */
	unsigned pgtable_deposit_offset;
	/* flush_tlb_range, flush_tlb_page and flush_tlb_mm are empty (sparc64): every
	 * invalidation was issued by the entry change itself. */
	bool flush_tlb_range_is_noop;
	/* update_mmu_cache_pmd after a fault installed or fixed up a huge pmd, under the pmd
	 * lock; NULL: nothing to do. */
	void (*update_mmu_cache_pmd)(struct vm_area_struct *vma, uint64_t addr, uint64_t pmd_pa);
	/* The architecture's fault handler after handle_mm_fault, mmap_lock released
	 * (sparc64's do_sparc64_fault sizes the TSBs: the huge TSB on first use); NULL. */
	void (*fault_epilogue)(struct mm_struct *mm);
	/* A translation cache of the model's own in memory, beside the per-vCPU TLBs
	 * (sparc64's TSB): does the mm's still map a page of [pfn, pfn + nr)? At which va. */
	bool (*hw_cache_maps_pfn)(struct mm_struct *mm, uint64_t pfn, uint64_t nr, uint64_t *va);
	/* The VMA flags of which one lets a read fault in: arm64 without EPAN and s390
	 * (VM_ACCESS_FLAGS) take any of read, write and exec; 0 means VM_READ alone. */
	unsigned read_fault_vm_flags;
	/* pmdp_collapse_flush, when the model's is not the generic clear then
	 * flush_tlb_range. Returns the old pmd; caller holds the pmd lock. */
	uint64_t (*pmdp_collapse_flush)(struct mm_struct *mm, uint64_t addr, uint64_t pmd_pa);
	unsigned tlb_entries;		/* logical TLB capacity */
	unsigned walk_cache_entries;	/* 0: no paging-structure cache (sparc64's software walk) */

	/* Optional: refuses an image the engine cannot run (0, or -1 with a message naming the
	 * instruction, its address and why), after the loader's own checks. It looks at the
	 * image's code (struct ptemu_elf_image's code ranges). */
	int (*check_image)(const struct ptemu_elf_image *img, char *err, size_t errlen);

	/* Model-specific injections this model implements: bit (1u << enum ptemu_injection). */
	unsigned model_injections;

	struct ptemu_isa isa;
};

/* Registry of the implemented models. */
const struct ptemu_arch *ptemu_arch_find(const char *name);
/* NULL-terminated list, in a stable order. */
const struct ptemu_arch *const *ptemu_arch_all(void);

/* Geometry helpers shared by core and models. */
static inline unsigned ptemu_pte_level(const struct ptemu_arch *a) { return a->nr_levels - 1; }
static inline unsigned ptemu_pmd_level(const struct ptemu_arch *a) { return a->nr_levels - 2; }
static inline uint64_t ptemu_task_size(const struct ptemu_arch *a)
{
	return a->task_size ? a->task_size : 1ull << a->va_bits;
}
static inline uint64_t ptemu_page_size(const struct ptemu_arch *a) { return 1ull << a->page_shift; }
static inline unsigned ptemu_level_index(const struct ptemu_arch *a, unsigned level, uint64_t va)
{
	return (unsigned)((va >> a->level_shift[level]) & ((1ull << a->level_bits[level]) - 1));
}
/* Bytes of an entry at a level (see entry_bytes). */
static inline unsigned ptemu_entry_size(const struct ptemu_arch *a, unsigned level)
{
	return level == ptemu_pte_level(a) ? a->entry_bytes : 8;
}
/* Linux PTEs in one PTE table (the hardware twins not counted). */
static inline unsigned ptemu_ptes_per_table(const struct ptemu_arch *a)
{
	return 1u << a->level_bits[ptemu_pte_level(a)];
}
static inline uint64_t ptemu_pmd_size(const struct ptemu_arch *a)
{
	return 1ull << a->level_shift[ptemu_pmd_level(a)];
}

#ifdef __cplusplus
}
#endif
#endif
