/* powerpc book3s64 with 64 KiB pages: what the hash and radix models share (kernel-spec
 * 2.3): the Linux PTE format of asm/book3s/64/pgtable.h, big-endian in memory, and PTE
 * tables handed out as fragments of a shared page (arch/powerpc/mm/pgtable-frag.c). */
#ifndef PTEMU_MMU_BOOK3S64_H
#define PTEMU_MMU_BOOK3S64_H

#include <stdbool.h>
#include <stdint.h>

#include <ptemu/arch.h>

#ifdef __cplusplus
extern "C" {
#endif

struct mm_struct;
struct mmu_gather;
struct ptemu_machine;

extern const struct ptemu_arch ptemu_arch_ppc64_radix;
extern const struct ptemu_arch ptemu_arch_ppc64_hash;

#define BOOK3S64_PAGE_SHIFT	16

/* The Linux PTE (asm/book3s/64/pgtable.h, v6.6). */
#define PPC_PAGE_EXEC		0x00001ull
#define PPC_PAGE_WRITE		0x00002ull
#define PPC_PAGE_READ		0x00004ull
#define PPC_PAGE_RW		(PPC_PAGE_READ | PPC_PAGE_WRITE)
#define PPC_PAGE_PRIVILEGED	0x00008ull	/* kernel only: PAGE_NONE for user mappings */
#define PPC_PAGE_DIRTY		0x00080ull	/* the hardware C bit */
#define PPC_PAGE_ACCESSED	0x00100ull	/* the hardware R bit */
#define PPC_PAGE_SOFT_DIRTY	0x00200ull	/* _RPAGE_SW3 */
#define PPC_PAGE_SPECIAL	0x00400ull	/* _RPAGE_SW2 */
#define PPC_PAGE_INVALID	0x2000000000000000ull	/* _RPAGE_SW0: present while invalidated */
#define PPC_PAGE_PTE		0x4000000000000000ull	/* a leaf, not a table pointer */
#define PPC_PAGE_PRESENT	0x8000000000000000ull	/* hardware valid */
#define PPC_PTE_RPN_MASK	0x001fffffffff0000ull	/* ((1 << 53) - 1) & PAGE_MASK */
/* What a directory entry keeps beside the next table's address (PMD_MASKED_BITS). */
#define PPC_PMD_MASKED_BITS	0xc0000000000000ffull

/* QEMU's POWERPC_EXCP_SYSCALL: what UC_HOOK_INTR reports for sc. */
#define PPC_EXCP_SYSCALL	8

/* The guest side both models share: Unicorn PPC64 big-endian, ELFv2 images, sc with r0
 * the number and r3.. the arguments (the including file has unicorn.h, capstone.h and
 * elf.h). */
#define BOOK3S64_ISA {								\
		.uc_arch = UC_ARCH_PPC,						\
		.uc_mode = UC_MODE_PPC64 | UC_MODE_BIG_ENDIAN,			\
		.cs_arch = CS_ARCH_PPC,						\
		.cs_mode = CS_MODE_64 | CS_MODE_BIG_ENDIAN,			\
		.elf_machine = EM_PPC64,					\
		.elf_class = 64,						\
		.clang_target = "powerpc64-linux-gnu",				\
		.binutils_triple = "powerpc64-linux-gnu",			\
		.workload_dir = "ppc64",					\
		.reg_pc = UC_PPC_REG_PC,					\
		.reg_sp = UC_PPC_REG_1,						\
		.reg_sysno = UC_PPC_REG_0,					\
		.reg_arg = { UC_PPC_REG_3, UC_PPC_REG_4, UC_PPC_REG_5,		\
			     UC_PPC_REG_6, UC_PPC_REG_7, UC_PPC_REG_8 },	\
		.reg_ret = UC_PPC_REG_3,					\
		.syscall_intno = PPC_EXCP_SYSCALL,				\
		.syscall_insn_bytes = 4,					\
		.pc_after_syscall = true,					\
	}

/* PTEs and huge pmds: the encoding both MMUs share. */
uint64_t book3s64_mk_pte(struct ptemu_leaf leaf);
struct ptemu_leaf book3s64_pte_leaf(uint64_t pte);
bool book3s64_pte_present(uint64_t pte);

/* PTE fragments (pgtable-frag.c) for a model whose page holds tables_per_page tables of
 * pte_table_bytes. page->pt_frag is pt_frag_refcount; mm->context.pte_frag the cursor. */
uint64_t pte_fragment_alloc(struct mm_struct *mm);
void pte_fragment_free(struct ptemu_machine *m, uint64_t table);
/* pte_free(): pte_fragment_free of a table that was never deferred. */
void book3s64_pte_free(struct mm_struct *mm, uint64_t table);
/* The kernel's pte_free_defer(): SetPageActive, then pte_fragment_free. */
void book3s64_pte_free_defer(struct mm_struct *mm, uint64_t table);
/* __tlb_remove_table for a PTE table: pte_fragment_free after the grace period. */
void book3s64_tlb_remove_table(struct ptemu_machine *m, uint64_t table);
/* destroy_pagetable_cache at arch_exit_mmap: the cursor page's fragments never handed out
 * are dropped (fixed upstream in 2026 to free an Active page through RCU; v6.6 frees it
 * at once, the injection ppc-v6.6-frag-destroy). */
void pte_frag_destroy(struct mm_struct *mm);

#ifdef __cplusplus
}
#endif
#endif
