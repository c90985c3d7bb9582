/* Helpers of the ptemu program that more than one command file uses. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int usage_error(const char *fmt, const char *arg)
{
	fprintf(stderr, "ptemu: ");
	fprintf(stderr, fmt, arg);
	fprintf(stderr, "\nTry 'ptemu help'.\n");
	return EXIT_USAGE;
}

void print_arch_names(FILE *f)
{
	for (const struct ptemu_arch *const *a = ptemu_arch_all(); *a; a++)
		fprintf(f, "%s%s", a == ptemu_arch_all() ? "" : ", ", (*a)->name);
}

bool parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || end == s || *end || s[0] == '-' || v < lo || v > hi)
		return false;
	*out = v;
	return true;
}

const char *injection_name(enum ptemu_injection inj)
{
	for (const struct ptemu_injection_info *i = ptemu_injections(); i->name; i++)
		if (i->id == inj)
			return i->name;
	return "none";
}

bool known_workload(const char *name)
{
	char names[] = PTEMU_WORKLOAD_NAMES;

	for (char *save, *w = strtok_r(names, ",", &save); w; w = strtok_r(NULL, ",", &save))
		if (!strcmp(w, name))
			return true;
	return false;
}

void workload_image_path(const struct ptemu_arch *a, const char *workload, char *buf, size_t n)
{
	const char *dir = getenv("PTEMU_WORKLOAD_DIR");

	snprintf(buf, n, "%s/%s/%s.elf", dir ? dir : PTEMU_WORKLOAD_DIR, a->isa.workload_dir, workload);
}
