/* What the commands of the ptemu program share: the one option table and its parser
 * (options.c), output files and reports (common.c), trace-file helpers (traces.c), and
 * each command's description, defined in the command's own file. */
#ifndef PTEMU_CLI_H
#define PTEMU_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <ptemu/arch.h>
#include <ptemu/inject.h>
#include <ptemu/machine.h>
#include <ptemu/run.h>
#include <ptemu/sched.h>
#include <ptemu/trace.h>

enum { EXIT_CLEAN = 0, EXIT_VIOLATIONS = 1, EXIT_USAGE = 2, EXIT_INTERNAL = 3 };

/* Every option of every command: options.c defines each once (name, argument, help,
 * parser and range); a command lists the ones it takes. */
enum cli_opt {
	OPT_ARCH = 256, OPT_SECONDS, OPT_SEED, OPT_INJECT, OPT_FAIL_FAST, OPT_MEMORY, OPT_JSON,
	OPT_WORKERS, OPT_TABLES, OPT_WORKLOAD, OPT_IMAGE, OPT_PROCS, OPT_VCPUS, OPT_OPS,
	OPT_QUIET, OPT_WATCHDOG, OPT_EXIT_AFTER, OPT_DETERMINISTIC, OPT_SCHED, OPT_PCT_DEPTH,
	OPT_STEPS, OPT_RECORD, OPT_PROTOCOL, OPT_RECLAIM, OPT_KHUGEPAGED, OPT_SCAN_SLEEP,
	OPT_PAGES_TO_SCAN, OPT_MAX_PTES_NONE, OPT_FORCE, OPT_LIMIT, OPT_DISASM, OPT_FORMAT,
	OPT_OUT, OPT_SEEDS, OPT_SEED_BASE, OPT_JOBS, OPT_SHARD, OPT_PARTIAL, OPT_REPEAT, OPT_TLB_ENTRIES, OPT_HELP,
	OPT_END
};
#define OPT_FIRST OPT_ARCH
#define MAX_ARCHES 16

/* The values of the options, parsed; a command's defaults are one of these. */
struct cli_opts {
	bool given[OPT_END - OPT_FIRST];
	/* Lists, resolved once all options are read (so that defaults go through the same
	 * checks): --arch, --inject, --protocol. */
	const char *arch_list, *inject_list, *protocol_list;
	const struct ptemu_arch *arches[MAX_ARCHES];
	unsigned narches;
	int injects[INJECT_COUNT];	/* enum ptemu_injection */
	unsigned ninjects;
	int protocols[2];		/* enum ptemu_protocol */
	unsigned nprotocols;
	double seconds, watchdog, exit_after;
	uint64_t seed, memory, workers, tables, procs, vcpus, ops, pct_depth, steps;
	uint64_t scan_sleep_ms, pages_to_scan, max_ptes_none, limit, seeds, seed_base, jobs;
	uint64_t shard, nshards, repeat, tlb_entries;
	bool fail_fast, quiet, deterministic, reclaim, khugepaged, force, disasm, partial;
	enum ptemu_sched_strategy sched;
	const char *json, *workload, *image, *record, *out, *format;
	char **args;			/* the arguments that are not options */
	int nargs;
};

/* An option a command takes; note replaces "(default X)" in its help; list: a list of
 * injections or protocols is allowed (one configuration each), not just one. */
struct cli_use {
	enum cli_opt id;
	const char *note;
	bool list;
};

struct cli_command {
	const char *name;		/* one or two words: "run", "campaign merge" */
	const char *synopsis;		/* what follows the name */
	const char *what;
	const struct cli_use *opts;	/* ends with { 0 } */
	const struct cli_opts *defaults;
	bool need_guest;		/* its models must run guests */
	const char *more;		/* printed after the options, or NULL */
	int (*main)(int argc, char **argv);	/* argv[0]: the command's last word */
};

extern const struct cli_command cmd_run, cmd_stress, cmd_bench_overhead, cmd_bench_latency,
	cmd_bench_determinism, cmd_replay, cmd_minimize, cmd_trace_dump, cmd_trace_stats,
	cmd_trace_export, cmd_campaign, cmd_campaign_merge, cmd_list;

#define CLI_HELP (-1)	/* cli_parse printed the command's help */

/* Parses argv[1..] for cmd into *o (which starts as cmd's defaults) and checks that between
 * min_args and max_args arguments remain. 0; CLI_HELP; or EXIT_USAGE with the reason
 * printed. */
int cli_parse(const struct cli_command *cmd, int argc, char **argv, struct cli_opts *o, int min_args,
	      int max_args);
void cli_help(FILE *f, const struct cli_command *cmd, bool brief);
/* Text from column col, wrapped at 92 columns to lines indented by indent. */
void cli_print_wrapped(FILE *f, int col, int indent, const char *text);

/* The one --inject applies to every --arch: 0, or EXIT_USAGE with the reason printed. */
int check_injection(const struct cli_opts *o);

/* Prints "ptemu: " fmt (with arg) and a hint; returns EXIT_USAGE. */
int usage_error(const char *fmt, const char *arg);
void print_arch_names(FILE *f);
/* Decimal digits only, no sign, no spaces, within lo..hi. */
bool parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out);
bool parse_shard(const char *s, uint64_t *shard, uint64_t *nshards);
const char *injection_name(enum ptemu_injection inj);
/* The options of the configuration whose races reach the injection ("--workload W
 * --khugepaged on ..."), as `ptemu list injections` and campaign's note print them. */
void print_injection_reach(FILE *f, const struct ptemu_injection_info *i);
/* A note on stderr when o's workload and features are not those that reach inj: the run
 * may find nothing. */
void note_injection_reach(const struct cli_opts *o, enum ptemu_injection inj);
bool known_workload(const char *name);
/* Where this build put a workload's image for a model (PTEMU_WORKLOAD_DIR overrides). */
void workload_image_path(const struct ptemu_arch *a, const char *workload, char *buf, size_t n);
/* Median, lowest and highest of n values of a bench's --repeat (n <= BENCH_MAX_REPEAT). */
struct spread {
	double median, lo, hi;
};
#define BENCH_MAX_REPEAT 1000
struct spread spread_of(const double *v, unsigned n);

/* A benchmark's run: 0 with the machine to read (the caller destroys it), or the exit
 * status with the reason on stderr, the machine gone: a run that failed or had violations
 * measures nothing. `what` names the run in the message. */
int bench_run(const char *what, const struct ptemu_run_config *cfg, struct ptemu_machine **m,
	      struct ptemu_run_result *r);

/* A file a command writes. A regular file (or a new one) is written to a temporary file
 * beside it that out_commit renames over it, so that what was there survives until there
 * is something to replace it with; anything else (a device, a pipe) is written directly;
 * "-" is stdout. */
struct out_file {
	const char *path;
	FILE *f;
	char *tmp;		/* NULL: writing path itself */
};

/* Checks and opens the destination before the work starts; keep_open false closes the
 * stream for a writer that takes a path (out_write_path). 0, or EXIT_USAGE with the
 * reason printed. */
int out_open(struct out_file *o, const char *path, bool keep_open);
const char *out_write_path(const struct out_file *o);
/* Checks every write and the close, then renames. 0, or EXIT_INTERNAL with the path
 * named. */
int out_commit(struct out_file *o);
void out_discard(struct out_file *o);
/* Where the human summary goes: stderr when the JSON goes to stdout. */
FILE *summary_stream(const struct out_file *json);

/* A command's JSON report, when path is given: opened, {"key":[ written, and the human
 * summary sent to stderr when the JSON goes to stdout. 0, or EXIT_USAGE (printed). */
int json_list_begin(struct out_file *json, const char *path, const char *key, FILE **summary);
/* Ends the {"...":[ list a command opened in its JSON and writes the file: status, or
 * EXIT_INTERNAL when the file could not be written. */
int json_list_end(struct out_file *json, int status);
void json_string(FILE *f, const char *s);
/* A run's JSON object: the head, up to the opening of "stats"; then the machine's
 * counters, the end of "stats" and the violations. */
void json_run_head(FILE *f, const struct ptemu_machine *m, const char *workload, uint64_t seed,
		   enum ptemu_injection inj);
void json_run_tail(FILE *f, const struct ptemu_machine *m);
/* The first violation of each kind, for the human summary. */
void print_violation_kinds(FILE *out, const struct ptemu_machine *m);

/* Trace files (traces.c): what run, replay, minimize and trace share. */
void finish_trace(struct ptemu_trace *trace, const struct ptemu_arch *a, const struct ptemu_run_config *cfg,
		  const struct ptemu_run_result *r, const struct ptemu_machine *m);
int load_trace_for_run(const char *file, bool force, const char *image, struct ptemu_trace *t,
		       const struct ptemu_arch **ap, char *path, size_t pathlen);
struct ptemu_sched_decision *trace_decisions(const struct ptemu_trace *t, size_t *n);
struct ptemu_run_config trace_run_config(const struct ptemu_trace *t, const struct ptemu_arch *a,
					 const char *path, const struct ptemu_sched_decision *d, size_t nd,
					 uint64_t steps);
void print_event(FILE *f, const struct ptemu_trace_event *e);
/* Writes a trace through an out_file opened (keep_open false) before the run. */
int write_trace(struct out_file *o, const struct ptemu_trace *t);

#endif
