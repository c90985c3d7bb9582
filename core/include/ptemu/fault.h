/* The fault path: handle_mm_fault in the v6.6 order (kernel-spec section 4). */
#ifndef PTEMU_FAULT_H
#define PTEMU_FAULT_H

#include <stdint.h>

#include <ptemu/pgtable.h>

#ifdef __cplusplus
extern "C" {
#endif

struct mm_struct;
struct vm_area_struct;
struct page;

#define FAULT_FLAG_WRITE 0x01u
#define FAULT_FLAG_INSTRUCTION 0x02u

/* vm_fault_t bits. */
#define VM_FAULT_OOM 0x0001u
#define VM_FAULT_SIGBUS 0x0002u
#define VM_FAULT_SIGSEGV 0x0004u
#define VM_FAULT_NOPAGE 0x0100u	/* nothing installed: the access retries */
#define VM_FAULT_RETRY 0x0400u
#define VM_FAULT_ERROR (VM_FAULT_OOM | VM_FAULT_SIGBUS | VM_FAULT_SIGSEGV)

/* Caller holds mmap_read_lock and found vma covering addr. 0 or NOPAGE: retry the access. */
unsigned handle_mm_fault(struct vm_area_struct *vma, uint64_t addr, unsigned flags);

/* set_huge_pmd: maps the locked PMD-sized page-cache folio at haddr by one pmd, as a
 * read fault's do_set_pmd would, if the pmd is still none. 0 on success. Caller holds
 * mmap_read_lock and the folio lock. */
int set_huge_pmd(struct vm_area_struct *vma, uint64_t haddr, pmd_t *pmd, struct page *folio);

/* A whole user access fault as the vCPU and copy_from_user see it: takes mmap_read_lock,
 * finds the VMA, checks its permissions (VM_FAULT_SIGSEGV if none or not allowed), and
 * runs handle_mm_fault. */
unsigned ptemu_user_fault(struct mm_struct *mm, uint64_t addr, unsigned flags);

#ifdef __cplusplus
}
#endif
#endif
