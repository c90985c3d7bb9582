/* The registry of models: adding an architecture is one folder and one line here. */
#include <string.h>

#include <ptemu/arch.h>

#include "arm/arm.h"
#include "arm64/arm64.h"
#include "powerpc/book3s64.h"
#include "s390/s390.h"
#include "sparc/sparc64.h"

static const struct ptemu_arch *const models[] = {
	&ptemu_arch_arm64_48,
	&ptemu_arch_arm64_39,
	&ptemu_arch_s390,
	&ptemu_arch_arm,
	&ptemu_arch_arm_lpae,
	&ptemu_arch_sparc64,
	&ptemu_arch_ppc64_radix,
	&ptemu_arch_ppc64_hash,
	NULL,
};

const struct ptemu_arch *const *ptemu_arch_all(void)
{
	return models;
}

const struct ptemu_arch *ptemu_arch_find(const char *name)
{
	for (const struct ptemu_arch *const *a = models; *a; a++)
		if (!strcmp((*a)->name, name))
			return *a;
	return NULL;
}
