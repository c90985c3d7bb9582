/* The arm64 MMU models: VMSAv8-64 stage 1 with a 4 KiB granule, as Linux v6.6 uses it. */
#ifndef PTEMU_MMU_ARM64_H
#define PTEMU_MMU_ARM64_H

#include <ptemu/arch.h>

#ifdef __cplusplus
extern "C" {
#endif

extern const struct ptemu_arch ptemu_arch_arm64_48;	/* "arm64": 48-bit VA, 4 levels */
extern const struct ptemu_arch ptemu_arch_arm64_39;	/* "arm64-39": 39-bit VA, 3 levels */

#ifdef __cplusplus
}
#endif
#endif
