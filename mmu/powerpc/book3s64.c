/* The Linux PTE of powerpc book3s64 (asm/book3s/64/pgtable.h, v6.6), which the radix MMU
 * reads as it is and the hash MMU's hash_page translates into HPTEs.
 *
 *   bit 63 _PAGE_PRESENT (hardware valid)   bit 62 _PAGE_PTE (a leaf, not a table pointer)
 *   bit 61 _PAGE_INVALID (_RPAGE_SW0: present to Linux while invalidated)
 *   bits 52:16 the real page number (PTE_RPN_MASK with 64 KiB pages)
 *   0x100 _PAGE_ACCESSED (R)   0x80 _PAGE_DIRTY (C)   0x200 soft dirty
 *   0x8 _PAGE_PRIVILEGED   0x4 read   0x2 write   0x1 exec
 *
 * protection_map[] entries are _PAGE_BASE (present and accessed) plus READ, RW or EXEC;
 * PAGE_NONE is _PAGE_BASE | _PAGE_PRIVILEGED: present to Linux, refused to user space.
 * pfn_pte adds _PAGE_PTE; pte_mkdirty sets DIRTY and SOFT_DIRTY; pte_mkold clears
 * ACCESSED. A huge pmd is a PTE in a pmd slot (pmd_mkhuge sets _PAGE_PTE).
 */
#include "book3s64.h"

uint64_t book3s64_mk_pte(struct ptemu_leaf leaf)
{
	uint64_t pte = ((leaf.pfn << BOOK3S64_PAGE_SHIFT) & PPC_PTE_RPN_MASK) | PPC_PAGE_PTE |
		       PPC_PAGE_PRESENT;

	if (!(leaf.flags & (PTEMU_PROT_READ | PTEMU_PROT_WRITE | PTEMU_PROT_EXEC)))
		pte |= PPC_PAGE_PRIVILEGED;	/* PAGE_NONE */
	if (leaf.flags & PTEMU_PROT_READ)
		pte |= PPC_PAGE_READ;
	if (leaf.flags & PTEMU_PROT_WRITE)
		pte |= PPC_PAGE_RW;	/* pte_mkwrite: write implies read */
	if (leaf.flags & PTEMU_PROT_EXEC)
		pte |= PPC_PAGE_EXEC;
	if (leaf.flags & PTEMU_PTE_YOUNG)
		pte |= PPC_PAGE_ACCESSED;
	if (leaf.flags & PTEMU_PTE_DIRTY)
		pte |= PPC_PAGE_DIRTY | PPC_PAGE_SOFT_DIRTY;
	return pte;
}

struct ptemu_leaf book3s64_pte_leaf(uint64_t pte)
{
	struct ptemu_leaf leaf = {
		.pfn = (pte & PPC_PTE_RPN_MASK) >> BOOK3S64_PAGE_SHIFT,
	};

	if (!(pte & PPC_PAGE_PRIVILEGED)) {
		if (pte & PPC_PAGE_READ)
			leaf.flags |= PTEMU_PROT_READ;
		if (pte & PPC_PAGE_WRITE)
			leaf.flags |= PTEMU_PROT_WRITE;
		if (pte & PPC_PAGE_EXEC)
			leaf.flags |= PTEMU_PROT_EXEC;
	}
	if (pte & PPC_PAGE_ACCESSED)
		leaf.flags |= PTEMU_PTE_YOUNG;
	if (pte & PPC_PAGE_DIRTY)
		leaf.flags |= PTEMU_PTE_DIRTY;
	return leaf;
}

/* pte_present: valid to the hardware, or invalidated for a change (ptep_modify_prot_start)
 * and so still present to Linux. */
bool book3s64_pte_present(uint64_t pte)
{
	return (pte & (PPC_PAGE_PRESENT | PPC_PAGE_PTE)) == (PPC_PAGE_PRESENT | PPC_PAGE_PTE) ||
	       (pte & (PPC_PAGE_INVALID | PPC_PAGE_PTE)) == (PPC_PAGE_INVALID | PPC_PAGE_PTE);
}
