/* What the commands of the ptemu program share (cli/common.c), and the campaign command
 * (cli/campaign.c). */
#ifndef PTEMU_CLI_H
#define PTEMU_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <ptemu/arch.h>
#include <ptemu/inject.h>

enum { EXIT_CLEAN = 0, EXIT_VIOLATIONS = 1, EXIT_USAGE = 2, EXIT_INTERNAL = 3 };

/* Prints "ptemu: " fmt (with arg) and a hint; returns EXIT_USAGE. */
int usage_error(const char *fmt, const char *arg);
void print_arch_names(FILE *f);
bool parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out);
const char *injection_name(enum ptemu_injection inj);
bool known_workload(const char *name);
/* Where this build put a workload's image for a model (PTEMU_WORKLOAD_DIR overrides). */
void workload_image_path(const struct ptemu_arch *a, const char *workload, char *buf, size_t n);

/* The campaign part of the usage text: 'ptemu help' shows it among the others. */
#define CAMPAIGN_USAGE                                                                          \
	"campaign options (deterministic runs, one per seed and configuration):\n"              \
	"  --arch A[,B...]|all     models (required)\n"                                         \
	"  --seeds N               runs per configuration, seeds B..B+N-1 (required)\n"         \
	"  --seed-base B           the first seed, B (default 1)\n"                             \
	"  --inject NAME[,NAME...] injections, 'none' among them (default none)\n"              \
	"  --protocol P[,P]        lockless, legacy (default lockless); a configuration is\n"   \
	"                          one arch x injection x protocol\n"                           \
	"  --reclaim-empty-tables  as for run, in every configuration\n"                        \
	"  --khugepaged on|off     as for run (default tunables), in every configuration\n"    \
	"  --workload W, --procs P, --vcpus V, --steps S, --sched pct|random, --pct-depth D\n"  \
	"                          as for run (defaults: shmem-stress, 2, 2, 200000, pct, 3)\n" \
	"  -j J                    worker processes, one run each (default: online CPUs)\n"     \
	"  --shard I/N             only the seeds whose index k (from 0) has k % N == I-1;\n"   \
	"                          the N shards together run the campaign once\n"               \
	"  --json FILE|-           also write the results as JSON ('-': stdout; the table\n"    \
	"                          then goes to stderr)\n"                                      \
	"  --quiet                 no progress line on stderr\n"                                \
	"  A row per configuration: runs, clean, errors, violation counts by kind and\n"        \
	"  coverage counters summed over runs, the smallest failing seed and the commands\n"    \
	"  that record and replay it.\n"                                                        \
	"  campaign merge FILE... [--partial] [--json OUT|-]\n"                                 \
	"                          combine the --json files of the shards of a campaign;\n"     \
	"                          missing shards are refused unless --partial\n"               \
	"  exit status: 3 when a run failed with an error (a crash, a guest error, a hang),\n"  \
	"  else 1 when a run had violations, else 0; 2 for bad usage or input files\n"

int cmd_campaign(int argc, char **argv);

#endif
