/* ptemu: the command-line program. Each command is in its own file; this one finds it,
 * and prints the help of them all. */
#include <string.h>

#include "cli.h"

static const struct cli_command *const commands[] = {
	&cmd_run, &cmd_stress, &cmd_bench_overhead, &cmd_bench_latency, &cmd_bench_determinism,
	&cmd_replay, &cmd_minimize, &cmd_trace_dump, &cmd_trace_stats, &cmd_trace_export,
	&cmd_campaign, &cmd_campaign_merge, &cmd_list, NULL,
};

static void print_help(FILE *f)
{
	fprintf(f, "usage: ptemu <command> [options]\n\ncommands:\n");
	for (const struct cli_command *const *c = commands; *c; c++) {
		fprintf(f, "  ptemu %s %s\n", (*c)->name, (*c)->synopsis);
		cli_print_wrapped(f, fprintf(f, "      "), 6, (*c)->what);
	}
	fprintf(f, "  ptemu help | COMMAND --help\n      this text, or one command's\n"
		   "  ptemu version\n");
	for (const struct cli_command *const *c = commands; *c; c++) {
		if (!(*c)->opts[0].id)
			continue;
		fputc('\n', f);
		cli_help(f, *c, true);
	}
	fprintf(f, "\nexit status: 0 clean, 1 violations found, 2 bad usage or input file, 3 internal or guest\n"
		   "error (a wild guest access, a guest that does not stop)\n");
}

/* The length of the first word of a command's name. */
static size_t first_word(const char *name)
{
	return strcspn(name, " ");
}

static bool first_word_is(const char *name, const char *word)
{
	return strlen(word) == first_word(name) && !strncmp(name, word, first_word(name));
}

int main(int argc, char **argv)
{
	const struct cli_command *found = NULL;
	bool known_first = false;

	if (argc < 2) {
		print_help(stderr);
		return EXIT_USAGE;
	}
	if (!strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		print_help(stdout);
		return EXIT_CLEAN;
	}
	if (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version")) {
		printf("ptemu %s\n", PTEMU_VERSION);
		return EXIT_CLEAN;
	}
	/* A two-word command ("campaign merge") before a one-word one ("campaign"). */
	for (const struct cli_command *const *c = commands; *c; c++) {
		const char *name = (*c)->name;
		size_t n = first_word(name);

		if (!first_word_is(name, argv[1]))
			continue;
		known_first = true;
		if (!name[n] && !found)
			found = *c;
		else if (name[n] && argc > 2 && !strcmp(argv[2], name + n + 1))
			return (*c)->main(argc - 2, argv + 2);
	}
	if (found)
		return found->main(argc - 1, argv + 1);
	if (!known_first)
		return usage_error("unknown command '%s'", argv[1]);
	if (argc > 2 && (!strcmp(argv[2], "--help") || !strcmp(argv[2], "-h"))) {
		for (const struct cli_command *const *c = commands; *c; c++)
			if (first_word_is((*c)->name, argv[1]))
				cli_help(stdout, *c, false);
		return EXIT_CLEAN;
	}
	fprintf(stderr, "ptemu: %s what? one of:", argv[1]);
	for (const struct cli_command *const *c = commands; *c; c++)
		if (first_word_is((*c)->name, argv[1]) && (*c)->name[first_word((*c)->name)])
			fprintf(stderr, " %s", (*c)->name + first_word((*c)->name) + 1);
	fputc('\n', stderr);
	return EXIT_USAGE;
}
