/* The 32-bit arm MMU models: the classic short-descriptor format ("arm") and LPAE's long
 * descriptors ("arm-lpae"), as Linux v6.6 programs them for user space on ARMv7. */
#ifndef PTEMU_MMU_ARM_H
#define PTEMU_MMU_ARM_H

#include <ptemu/arch.h>

#ifdef __cplusplus
extern "C" {
#endif

extern const struct ptemu_arch ptemu_arch_arm;		/* "arm": 2 levels, PTE twins, no THP */
extern const struct ptemu_arch ptemu_arch_arm_lpae;	/* "arm-lpae": 3 levels, 2 MiB THP */

/* The Linux PTE bits both formats have (L_PTE_*), each at its format's position. */
struct arm_linux_pte_bits {
	uint64_t user, rdonly, xn, young, dirty, none;
};

/* What protection_map[] and pte_mkyoung/pte_mkdirty put in a PTE, the same on both formats:
 * L_PTE_NONE for PROT_NONE (no L_PTE_USER), else L_PTE_USER (PROT_EXEC or PROT_WRITE alone
 * too: there is no execute-only), L_PTE_RDONLY and L_PTE_XN for what is not allowed. */
static inline uint64_t arm_linux_pte_prot(const struct arm_linux_pte_bits *b, unsigned flags)
{
	unsigned prot = flags & (PTEMU_PROT_READ | PTEMU_PROT_WRITE | PTEMU_PROT_EXEC);
	uint64_t pte = prot ? b->user : b->none;

	if (!(prot & PTEMU_PROT_WRITE))
		pte |= b->rdonly;
	if (!(prot & PTEMU_PROT_EXEC))
		pte |= b->xn;
	if (flags & PTEMU_PTE_YOUNG)
		pte |= b->young;
	if (flags & PTEMU_PTE_DIRTY)
		pte |= b->dirty;
	return pte;
}

/* The leaf flags of a present PTE's L_PTE_* bits. */
static inline unsigned arm_linux_pte_flags(const struct arm_linux_pte_bits *b, uint64_t pte)
{
	unsigned flags = 0;

	if (pte & b->user) {
		flags |= PTEMU_PROT_READ;
		if (!(pte & b->xn))
			flags |= PTEMU_PROT_EXEC;
		if (!(pte & b->rdonly))
			flags |= PTEMU_PROT_WRITE;
	}
	if (pte & b->young)
		flags |= PTEMU_PTE_YOUNG;
	if (pte & b->dirty)
		flags |= PTEMU_PTE_DIRTY;
	return flags;
}

/* TASK_SIZE of the 3G/1G split (PAGE_OFFSET 0xC0000000 less 16 MiB for modules). */
#define ARM_TASK_SIZE		0xbf000000ull

/* QEMU's EXCP_SWI: what UC_HOOK_INTR reports for svc. */
#define ARM_EXCP_SWI		2

/* The guest ISA both models run: ARMv7-A in ARM state on Unicorn's Cortex-A15, the EABI
 * syscall convention of workloads/README.md. */
#define PTEMU_ARM32_ISA							\
	{								\
		.uc_arch = UC_ARCH_ARM,					\
		.uc_mode = UC_MODE_ARM,					\
		.cs_arch = CS_ARCH_ARM,					\
		.cs_mode = CS_MODE_ARM,					\
		.elf_machine = EM_ARM,					\
		.elf_class = 32,					\
		.clang_target = "armv7a-linux-gnueabi",			\
		.binutils_triple = "arm-linux-gnueabi",			\
		.workload_dir = "arm",					\
		.reg_pc = UC_ARM_REG_PC,				\
		.reg_sp = UC_ARM_REG_SP,				\
		.reg_sysno = UC_ARM_REG_R7,				\
		.reg_arg = { UC_ARM_REG_R0, UC_ARM_REG_R1, UC_ARM_REG_R2, \
			     UC_ARM_REG_R3, UC_ARM_REG_R4, UC_ARM_REG_R5 }, \
		.reg_ret = UC_ARM_REG_R0,				\
		.syscall_intno = ARM_EXCP_SWI,				\
		.syscall_insn_bytes = 4,				\
		.pc_after_syscall = true,				\
	}

#ifdef __cplusplus
}
#endif
#endif
