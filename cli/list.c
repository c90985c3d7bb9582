/* ptemu list: the names the options take. */
#include <string.h>

#include <ptemu/check.h>

#include "cli.h"

static int list_main(int argc, char **argv);

static const struct cli_use list_options[] = { { 0 } };
static const struct cli_opts list_defaults = { 0 };

const struct cli_command cmd_list = {
	"list", "arches|workloads|injections|violations", "the names the options take",
	list_options, &list_defaults, false, NULL, list_main,
};

static int list_main(int argc, char **argv)
{
	struct cli_opts o = list_defaults;
	int rc = cli_parse(&cmd_list, argc, argv, &o, 1, 1);
	const char *what = rc ? NULL : o.args[0];

	if (rc)
		return rc == CLI_HELP ? EXIT_CLEAN : rc;
	if (!strcmp(what, "arches")) {
		for (const struct ptemu_arch *const *a = ptemu_arch_all(); *a; a++)
			printf("%-10s %s\n%-10s logical TLB: %u entries (--tlb-entries)\n%-10s --reclaim-empty-tables: %s\n",
			       (*a)->name, (*a)->description, "", (*a)->tlb_entries, "", (*a)->pt_reclaim_status);
	} else if (!strcmp(what, "injections")) {
		for (const struct ptemu_injection_info *i = ptemu_injections(); i->name; i++) {
			printf("%-24s %s [models:", i->name, i->what);
			for (const struct ptemu_arch *const *a = ptemu_arch_all(); *a; a++)
				if (ptemu_injection_applies(i->id, *a))
					printf(" %s", (*a)->name);
			printf("]\n%-24s   reached by: ", "");
			print_injection_reach(stdout, i);
			printf("\n");
			for (const struct ptemu_arch *const *a = ptemu_arch_all(); *a; a++)
				if (!ptemu_injection_applies(i->id, *a))
					printf("%-24s   not on %s: %s\n", "", (*a)->name,
					       ptemu_injection_why_not(i->id, *a));
		}
	} else if (!strcmp(what, "violations")) {
		for (int k = 0; k < VIOLATION_KIND_COUNT; k++)
			printf("%s\n", ptemu_violation_name((enum ptemu_violation_kind)k));
	} else if (!strcmp(what, "workloads")) {
		char names[] = PTEMU_WORKLOAD_NAMES;

		for (char *save, *w = strtok_r(names, ",", &save); w; w = strtok_r(NULL, ",", &save))
			printf("%s\n", w);
	} else {
		fprintf(stderr, "ptemu: list what? one of: arches, workloads, injections, violations\n");
		return EXIT_USAGE;
	}
	return EXIT_CLEAN;
}
