/* A machine: one architecture model, its simulated physical memory, the checker and the
 * counters. Every ptemu thread belongs to one machine (ptemu_thread_register). */
#ifndef PTEMU_MACHINE_H
#define PTEMU_MACHINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <ptemu/arch.h>
#include <ptemu/check.h>
#include <ptemu/inject.h>
#include <ptemu/stats.h>

#ifdef __cplusplus
extern "C" {
#endif

struct ptemu_phys;
struct ptemu_khugepaged;
struct mm_struct;
struct ptemu_file;

#define PTEMU_DEFAULT_PHYS_BYTES (256ull << 20)

/* Which retraction protocol khugepaged follows (kernel-spec 3.3, 3.5). */
enum ptemu_protocol {
	PTEMU_PROTOCOL_LOCKLESS,	/* v6.6: i_mmap read lock only, pte_free_defer */
	PTEMU_PROTOCOL_LEGACY,		/* before v6.6: mmap_write_trylock + i_mmap write lock */
};

const char *ptemu_protocol_name(enum ptemu_protocol p);
/* -1 for an unknown name. */
int ptemu_protocol_from_name(const char *name);

/* Optional behaviours beyond v6.6. */
struct ptemu_features {
	/* Linux 6.14: MADV_DONTNEED frees a PTE table its zap left empty (a zap that covered
	 * the table's whole PMD range and skipped nothing). Lockless protocol only. */
	bool reclaim_empty_tables;
};

/* Why reclaim and the legacy protocol do not go together. */
#define PTEMU_RECLAIM_NEEDS_LOCKLESS                                                          \
	"--reclaim-empty-tables needs the lockless protocol: the kernels that reclaim empty "  \
	"tables (6.14 on) have no legacy retract, whose removal trusts the pmd it looked at "  \
	"before mmap_lock"
/* --reclaim-empty-tables detaches tables that software walkers may be inside: only a
 * model that frees tables through RCU (MMU_GATHER_RCU_TABLE_FREE) can offer it. */
#define PTEMU_RECLAIM_NEEDS_RCU "PT reclaim needs RCU table freeing"



struct ptemu_machine_config {
	const struct ptemu_arch *arch;
	uint64_t phys_bytes;		/* 0: PTEMU_DEFAULT_PHYS_BYTES */
	unsigned tlb_entries;		/* each vCPU's logical TLB; 0: the model's size */
	enum ptemu_check_mode check_mode;
	enum ptemu_injection inject;
	enum ptemu_protocol protocol;
	struct ptemu_features features;
	FILE *log;			/* the run log, for notes; NULL: discarded */
};

/* What the model says once per machine on its log (ptemu_note_once). */
enum ptemu_note {
	PTEMU_NOTE_ANON_COLLAPSE = 1u << 0,	/* MADV_COLLAPSE of anonymous memory */
};

/* TLB invalidation, provided by the vCPU layer; without vCPUs nothing is cached and the
 * hook is unset. freed_tables: walk caches must drop the range too. */
struct ptemu_tlb_ops {
	void (*flush_range)(void *ctx, struct mm_struct *mm, uint64_t start, uint64_t end,
			    bool freed_tables);
	/* A data page range is being freed: no TLB may still map it (tlb-maps-freed-page). */
	void (*pages_freed)(void *ctx, uint64_t pfn, uint64_t nr);
	/* A PTE table is being freed: no walk cache may still point at it. */
	void (*table_freed)(void *ctx, uint64_t table_pa);
	/* An IPI to every CPU, returning once each has taken it: every section it was running
	 * with interrupts off (a sparc64 TSB-miss walk) has ended (tlb_remove_table_sync_one). */
	void (*ipi_all)(void *ctx);
	void *ctx;
};

/* Points where a test may force an interleaving. */
struct ptemu_test_hooks {
	/* Between a map and taking its ptl: in __pte_offset_map_lock and in the rmap walk's
	 * map_pte (try_to_unmap). */
	void (*map_before_lock)(void *ctx, struct mm_struct *mm, void *pmdp);
	/* In collapse_file, between try_to_unmap and try_to_unmap_flush. */
	void (*collapse_before_flush)(void *ctx, struct ptemu_file *f);
	/* In retract_page_tables and collapse_pte_mapped_thp: the pmd was seen pointing at a
	 * table, and the pmd lock is about to be taken to remove it. */
	void (*before_retract_lock)(void *ctx, struct mm_struct *mm, void *pmdp);
	void *ctx;
};

struct ptemu_machine {
	const struct ptemu_arch *arch;
	struct ptemu_phys *phys;
	struct ptemu_checker *checker;
	struct ptemu_stats stats;
	struct ptemu_tlb_ops tlb;
	struct ptemu_test_hooks test_hooks;
	enum ptemu_injection inject;
	enum ptemu_protocol protocol;
	struct ptemu_features features;
	unsigned tlb_entries;		/* 0: the model's (arch->tlb_entries) */
	struct ptemu_sched *sched;	/* deterministic mode, NULL when free-running */
	struct ptemu_khugepaged *khugepaged;	/* NULL unless the khugepaged thread runs */
	FILE *log;
	unsigned noted;			/* atomic: the PTEMU_NOTE_* already written */
	/* What arch->machine_init set up in simulated memory (ppc64-hash's HPT): where, 0 if
	 * nothing, and its pages, in use until machine_destroy (check_leaks counts them). */
	uint64_t arch_mem_pa;
	uint64_t arch_mem_pages;
};

/* NULL with a message in err on a bad configuration. */
struct ptemu_machine *ptemu_machine_create(const struct ptemu_machine_config *cfg, char *err,
					   size_t errlen);
void ptemu_machine_destroy(struct ptemu_machine *m);

/* Writes "ptemu: <message>" to the machine's log the first time `note` is raised. */
void ptemu_note_once(struct ptemu_machine *m, enum ptemu_note note, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#ifdef __cplusplus
}
#endif
#endif
