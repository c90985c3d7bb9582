/* The arm64 MMU models: VMSAv8-64 stage 1 with a 4 KiB granule, as Linux v6.6 uses it. */
#ifndef PTEMU_MMU_ARM64_H
#define PTEMU_MMU_ARM64_H

#include <ptemu/arch.h>

#ifdef __cplusplus
extern "C" {
#endif

extern const struct ptemu_arch ptemu_arch_arm64_48;	/* "arm64": 48-bit VA, 4 levels */
extern const struct ptemu_arch ptemu_arch_arm64_39;	/* "arm64-39": 39-bit VA, 3 levels */

/* The stage-1 EL0 walk of the 4 KiB-granule long-descriptor format, which VMSAv7's LPAE
 * (mmu/arm) shares with VMSAv8-64: the model's last nr_levels levels of VMSA levels 0-3,
 * output addresses in oa_mask (bits 47:12 on arm64, 39:12 on LPAE). The caller has checked
 * that va belongs to TTBR0. */
enum ptemu_walk_fault ptemu_vmsa_long_walk(const struct ptemu_arch *arch, uint64_t oa_mask,
					   const struct ptemu_walk_ctx *ctx, uint64_t root_pa,
					   uint64_t va, enum ptemu_access access,
					   struct ptemu_walk_result *out);

#ifdef __cplusplus
}
#endif
#endif
