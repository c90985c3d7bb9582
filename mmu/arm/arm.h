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
