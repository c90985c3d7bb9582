/* khugepaged for file and shmem (kernel-spec section 3): collapse_file, retract_page_tables
 * (the lockless one of v6.6, or the legacy one of v6.5 under --protocol legacy),
 * collapse_pte_mapped_thp, and the khugepaged thread that scans mm slots. */
#ifndef PTEMU_KHUGEPAGED_H
#define PTEMU_KHUGEPAGED_H

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct ptemu_file;
struct ptemu_machine;
struct mm_struct;
struct vm_area_struct;

/* enum scan_result, the subset this model can produce. */
enum scan_result {
	SCAN_FAIL,
	SCAN_SUCCEED,
	SCAN_PMD_NULL,
	SCAN_PMD_NONE,
	SCAN_PMD_MAPPED,
	SCAN_EXCEED_NONE_PTE,
	SCAN_PTE_NON_PRESENT,
	SCAN_PTE_MAPPED_HUGEPAGE,
	SCAN_PAGE_NULL,
	SCAN_PAGE_LOCK,
	SCAN_PAGE_COUNT,
	SCAN_PAGE_COMPOUND,
	SCAN_VMA_CHECK,
	SCAN_TRUNCATED,
	SCAN_ALLOC_HUGE_PAGE_FAIL,
	SCAN_PAGE_FILLED,
	SCAN_ANY_PROCESS,
	SCAN_VMA_NULL,
	SCAN_ADDRESS_RANGE,
	SCAN_PAGE_ANON,
};

const char *scan_result_name(enum scan_result r);

/* What asks for a collapse (struct collapse_control). */
struct collapse_control {
	bool is_khugepaged;	/* false: MADV_COLLAPSE */
	unsigned max_ptes_none;	/* khugepaged only: holes allowed in a range */
};

/* Collapses file indices [start, start + HPAGE_PMD_NR) of a shmem or read-only file into
 * one PMD-sized folio, then retracts the page tables that mapped them, in every process.
 * `start` must be aligned. mm/addr name the caller's own mapping (MADV_COLLAPSE; the
 * legacy protocol installs its PMD); NULL for none. cc NULL: as khugepaged. */
enum scan_result collapse_file(struct mm_struct *mm, uint64_t addr, struct ptemu_file *f,
			       uint64_t start, const struct collapse_control *cc);

/* hpage_collapse_scan_file: the lockless look at the range that decides whether
 * collapse_file is worth trying (SCAN_EXCEED_NONE_PTE, SCAN_PAGE_COUNT, ...), then it. */
enum scan_result hpage_collapse_scan_file(struct mm_struct *mm, uint64_t addr, struct ptemu_file *f,
					  uint64_t start, const struct collapse_control *cc);

/* hugepage_vma_check outside a fault, for the model's VMAs (sysfs THP "madvise", shmem
 * "advise"): a file or shmem VMA holding at least one PMD range at a file offset the
 * range's address agrees with, not VM_NOHUGEPAGE; a regular file only in a VM_EXEC mapping
 * (file_thp_enabled); enforce_sysfs (khugepaged) also wants VM_HUGEPAGE. */
bool hugepage_vma_check(const struct vm_area_struct *vma, unsigned vm_flags, bool enforce_sysfs);

/* madvise_collapse for [start, end) of vma (kernel-spec 3.5), called with mmap_lock held
 * for read, which it drops around each collapse (*prev = NULL then) and holds again on
 * return. 0 when every PMD range is now PMD-mapped, else the errno of the last failure. */
int madvise_collapse(struct vm_area_struct *vma, struct vm_area_struct **prev, uint64_t start,
		     uint64_t end);

/* MADV_HUGEPAGE and MADV_NOHUGEPAGE on *vm_flags, the new flags of vma; MADV_HUGEPAGE
 * registers the mm with khugepaged when the VMA qualifies. */
void hugepage_madvise(struct vm_area_struct *vma, unsigned *vm_flags, int advice);

/* kernel-spec 3.4: replace the PTE table mapping a PMD-sized page-cache folio at addr by
 * nothing (or, with install_pmd, by a PMD mapping). Caller holds mmap_read_lock (legacy:
 * mmap_write_lock). */
enum scan_result collapse_pte_mapped_thp(struct mm_struct *mm, uint64_t addr, bool install_pmd);

/* ---- the khugepaged thread ------------------------------------------------------------ */

struct khugepaged_tunables {
	uint64_t scan_sleep_steps;	/* deterministic mode: scheduler steps between passes */
	double scan_sleep_ms;		/* free-running: wall-clock sleep between passes */
	uint64_t pages_to_scan;		/* per pass (the kernel's default: 8 PMD ranges) */
	unsigned max_ptes_none;		/* holes allowed per range; default HPAGE_PMD_NR - 1 */
	/* Deterministic mode: the thread stops when this says so (a step-based criterion, so
	 * that the run's digest does not depend on wall-clock time). */
	bool (*should_stop)(void *ctx);
	void *ctx;
};

/* Starts the thread (registered with the scheduler when there is one). 0 or -1. A model
 * without PMD THP has no khugepaged: 0, and nothing started. */
int khugepaged_start(struct ptemu_machine *m, const struct khugepaged_tunables *t);
/* Free-running: asks it to stop. Either mode: joins it. */
void khugepaged_stop(struct ptemu_machine *m);
/* A VMA about to have vm_flags: its mm gets a slot if khugepaged may scan it
 * (khugepaged_enter_vma). */
void khugepaged_enter_vma(struct vm_area_struct *vma, unsigned vm_flags);
/* The mm is exiting: its slot goes (khugepaged_exit). */
void khugepaged_exit(struct mm_struct *mm);
/* The guest's wait for khugepaged's next full scan: 0, -ENOSYS when it is not running,
 * -ESRCH at once when mm has no slot (v6.6's khugepaged sleeps while it knows no mm, so
 * the wait would never end), or -EINTR when the run ends first. */
int khugepaged_wait_full_scan(struct mm_struct *mm);

#ifdef __cplusplus
}
#endif
#endif
