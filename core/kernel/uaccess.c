/* Host access to guest memory (the write and report syscalls' buffers): a software walk
 * with pte_offset_map semantics under mmap_read_lock, faulting like get_user_pages. */
#include <errno.h>
#include <string.h>

#include <ptemu/fault.h>
#include <ptemu/machine.h>
#include <ptemu/mm.h>
#include <ptemu/pgtable.h>
#include <ptemu/phys.h>
#include <ptemu/uaccess.h>

/* Copies within one page at addr, if it is mapped with the needed permission: under the
 * ptl (or pmd lock for a huge mapping) so that no zap can free the page meanwhile. A write
 * needs what arm's pin_page_for_write (lib/uaccess_with_memcpy.c) needs: present, young,
 * writable and dirty (pmd_hugewillfault for a huge pmd); else the caller faults the page in
 * and retries, as __copy_to_user_memcpy does. Any access needs young: without it the
 * models' hardware faults (an access-flag fault, an invalid classic-arm twin). */
static bool copy_mapped(struct mm_struct *mm, uint64_t addr, void *buf, size_t n, bool write)
{
	struct ptemu_machine *m = mm->machine;
	const struct ptemu_arch *a = m->arch;
	pmd_t *pmd = mm_find_pmd(mm, addr);
	struct ptemu_spinlock *ptl;
	struct ptemu_leaf leaf;
	uint64_t pa;
	bool ok = false;

	if (!pmd)
		return false;
	if (pmd_trans_huge(pmdp_get_lockless(pmd))) {
		ptl = pmd_lock(mm, pmd);
		pmd_t v = pmdp_get_lockless(pmd);

		if (pmd_trans_huge(v)) {
			leaf = a->pmd_leaf(v.val);
			pa = (leaf.pfn << a->page_shift) + (addr & (ptemu_pmd_size(a) - 1));
			ok = (leaf.flags & PTEMU_PTE_YOUNG) &&
			     (!write || ((leaf.flags & PTEMU_PROT_WRITE) && (leaf.flags & PTEMU_PTE_DIRTY)));
		}
		if (ok) {
			if (write)
				memcpy(phys_to_virt(m->phys, pa), buf, n);
			else
				memcpy(buf, phys_to_virt(m->phys, pa), n);
		}
		spin_unlock(ptl);
		return ok;
	}
	pte_t *pte = pte_offset_map_lock(mm, pmd, addr, &ptl);

	if (!pte)
		return false;
	pte_t v = ptep_get(pte);

	if (a->pte_present(v.val)) {
		leaf = a->pte_leaf(v.val);
		pa = (leaf.pfn << a->page_shift) + (addr & (ptemu_page_size(a) - 1));
		ok = (leaf.flags & PTEMU_PROT_READ) && (leaf.flags & PTEMU_PTE_YOUNG) &&
		     (!write || ((leaf.flags & PTEMU_PROT_WRITE) && (leaf.flags & PTEMU_PTE_DIRTY)));
		if (ok) {
			if (write)
				memcpy(phys_to_virt(m->phys, pa), buf, n);
			else
				memcpy(buf, phys_to_virt(m->phys, pa), n);
		}
	}
	pte_unmap_unlock(pte, ptl);
	return ok;
}

static int copy_user(struct mm_struct *mm, uint64_t uaddr, void *buf, size_t len, bool write)
{
	const struct ptemu_arch *a = mm->machine->arch;
	uint64_t psize = ptemu_page_size(a);
	uint8_t *p = buf;
	int err = 0;
	bool faulted = false;

	if (uaddr + len < uaddr)
		return -EFAULT;
	down_read(&mm->mmap_lock);
	while (len) {
		size_t n = psize - (uaddr & (psize - 1));
		struct vm_area_struct *vma = vma_lookup(mm, uaddr);

		if (n > len)
			n = len;
		if (!vma || !(vma->vm_flags & (write ? VM_WRITE : VM_READ))) {
			err = -EFAULT;
			break;
		}
		if (copy_mapped(mm, uaddr, p, n, write)) {
			uaddr += n;
			p += n;
			len -= n;
			continue;
		}
		ptemu_stat_add(&mm->machine->stats, PTEMU_STAT_uaccess_faults, 1);
		if (handle_mm_fault(vma, uaddr, write ? FAULT_FLAG_WRITE : 0) & VM_FAULT_ERROR) {
			err = -EFAULT;
			break;
		}
		faulted = true;
	}
	up_read(&mm->mmap_lock);
	/* The kernel's uaccess faults go through the architecture's fault handler, whose
	 * tail runs once mmap_lock is dropped; once for all of them suffices, as that tail
	 * only looks at the mm's state (sparc64's TSB sizes). */
	if (faulted && a->fault_epilogue)
		a->fault_epilogue(mm);
	return err;
}

int copy_from_user(struct mm_struct *mm, void *dst, uint64_t src, size_t len)
{
	return copy_user(mm, src, dst, len, false);
}

int copy_to_user(struct mm_struct *mm, uint64_t dst, const void *src, size_t len)
{
	return copy_user(mm, dst, (void *)src, len, true);
}
