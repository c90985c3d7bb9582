/* khugepaged for file and shmem: collapse_file and the lockless retract_page_tables of
 * v6.6 (kernel-spec section 3). */
#ifndef PTEMU_KHUGEPAGED_H
#define PTEMU_KHUGEPAGED_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct ptemu_file;

/* enum scan_result, the subset this model can produce. */
enum scan_result {
	SCAN_FAIL,
	SCAN_SUCCEED,
	SCAN_PMD_NULL,
	SCAN_PMD_NONE,
	SCAN_PMD_MAPPED,
	SCAN_PTE_MAPPED_HUGEPAGE,
	SCAN_PAGE_LOCK,
	SCAN_PAGE_COUNT,
	SCAN_PAGE_COMPOUND,
	SCAN_TRUNCATED,
	SCAN_ALLOC_HUGE_PAGE_FAIL,
};

const char *scan_result_name(enum scan_result r);

/* Collapses file indices [start, start + HPAGE_PMD_NR) of a shmem or read-only file into
 * one PMD-sized folio, then retracts the page tables that mapped them, in every process
 * (no mmap_lock taken). `start` must be aligned. */
enum scan_result collapse_file(struct ptemu_file *f, uint64_t start);

/* For every VMA mapping `pgoff` (an aligned file index) by a whole PMD range: clear the pmd
 * under pmd lock and ptl, flush, and free the (empty) table by RCU. i_mmap read lock only. */
void retract_page_tables(struct ptemu_file *f, uint64_t pgoff);

#ifdef __cplusplus
}
#endif
#endif
