/* The s390x MMU model: DAT with a region-second root, 2 KiB page tables packed two per
 * 4 KiB page with v6.6's AA/PP half bookkeeping, 1 MiB segment THP (kernel-spec 2.5). */
#ifndef PTEMU_MMU_S390_H
#define PTEMU_MMU_S390_H

#include <ptemu/arch.h>

#ifdef __cplusplus
extern "C" {
#endif

extern const struct ptemu_arch ptemu_arch_s390;

#ifdef __cplusplus
}
#endif
#endif
