/* A run: guest processes of one workload image on Unicorn vCPUs, over one machine. */
#ifndef PTEMU_RUN_H
#define PTEMU_RUN_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <ptemu/bench.h>
#include <ptemu/check.h>
#include <ptemu/inject.h>
#include <ptemu/machine.h>
#include <ptemu/sched.h>

#ifdef __cplusplus
extern "C" {
#endif

struct ptemu_arch;
struct ptemu_machine;

struct ptemu_run_config {
	const struct ptemu_arch *arch;
	const char *image_path;		/* the workload's ELF for this ISA */
	const char *workload;		/* its name, for reports */
	unsigned procs;			/* 1..16 */
	unsigned vcpus;			/* per process, 1..16 */
	double seconds;			/* bound on the run (guests see should_stop) */
	uint64_t ops;			/* passed to the guest; 0: none */
	uint64_t seed;
	enum ptemu_injection inject;
	enum ptemu_protocol protocol;
	struct ptemu_features features;
	enum ptemu_check_mode check_mode;
	/* The khugepaged thread (kernel-spec 3.5) and its tunables; 0 fields: defaults. */
	bool khugepaged;
	double scan_sleep_ms;		/* deterministic: 100 scheduler steps per ms */
	uint64_t pages_to_scan;
	unsigned max_ptes_none;
	uint64_t phys_bytes;		/* 0: the default */
	unsigned tlb_entries;		/* logical TLB entries per vCPU, a power of two; 0: the model's */
	FILE *log;			/* guest write() output; NULL: discarded */
	double watchdog_seconds;	/* no progress for this long is a hang; 0: 10 s */
	bool time_faults;		/* measure each fault's handling (bench latency) */
	bool no_collapse;		/* guests are told not to ask for MADV_COLLAPSE */
	/* > 0: the last process exits (exit_group, as if killed) this many seconds into the
	 * run, so that exit_mmap races the others' faults on the shared objects. */
	double exit_after;
	/* Deterministic mode: the scheduler runs the vCPUs and RCU; the run ends after
	 * sched.max_steps scheduler steps (guests see should_stop), never by time, and
	 * guest-visible time is the step count. */
	bool deterministic;
	struct ptemu_sched_config sched;
};

/* Why a run ended badly, beyond checker violations. */
enum ptemu_run_error {
	PTEMU_RUN_OK,
	PTEMU_RUN_BAD_INPUT,		/* the image or configuration was refused (exit 2) */
	PTEMU_RUN_GUEST_ERROR,		/* a wild access, an unknown syscall, a stuck guest (exit 3) */
	PTEMU_RUN_INTERNAL,		/* Unicorn or the host failed (exit 3) */
};

struct ptemu_run_result {
	enum ptemu_run_error error;
	char message[512];		/* for error != OK: what, where (process, vCPU, PC, insn) */
	double elapsed;
	uint64_t instructions;		/* estimated from executed block sizes */
	uint64_t blocks;
	uint64_t tlb_fills;		/* logical-TLB misses */
	uint64_t syscalls;
	uint64_t shootdowns;
	uint64_t polls;			/* should_stop calls: the guest's ops / 16 */
	struct ptemu_bench_marks marks;	/* the guests' PTEMU_SYS_bench_mark, summed */
	uint64_t faults_timed, fault_p50_ns, fault_p99_ns, fault_max_ns;	/* when time_faults */
	int exit_codes[16];		/* per process */
	/* The watchdog found vCPU threads that cannot be stopped: the machine is still in
	 * use by them, so the caller must report and exit without freeing it. */
	bool hung;
	uint64_t digest;		/* deterministic runs: the run digest */
	uint64_t steps;
	uint64_t image_hash;		/* of the ELF run (ptemu_elf_image.hash) */
};

/* Runs to completion. The machine (and its checker) stays for the caller to inspect:
 * *machine_out must be freed with ptemu_machine_destroy. Returns the error class. */
enum ptemu_run_error ptemu_run(const struct ptemu_run_config *cfg, struct ptemu_machine **machine_out,
			       struct ptemu_run_result *res);

/* Unicorn's version check: 0 when >= 2.1, else -1 with a message. */
int ptemu_check_unicorn(char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
