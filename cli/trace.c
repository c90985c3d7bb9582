/* ptemu trace dump, stats and export: a recorded trace read back. */
#include <inttypes.h>
#include <string.h>

#include <capstone/capstone.h>

#include <ptemu/check.h>

#include "cli.h"

static int trace_main(int argc, char **argv);

static const struct cli_use dump_options[] = {
	{ OPT_LIMIT, "default: every event", false },
	{ OPT_DISASM, NULL, false },
	{ 0 },
};
static const struct cli_use stats_options[] = { { 0 } };
static const struct cli_use export_options[] = {
	{ OPT_FORMAT, NULL, false },
	{ OPT_OUT, "required", false },
	{ 0 },
};

static const struct cli_opts dump_defaults = { .limit = UINT64_MAX };
static const struct cli_opts export_defaults = { .format = "perfetto" };

const struct cli_command cmd_trace_dump = {
	"trace dump", "FILE [options]", "a trace's header, outcome and events",
	dump_options, &dump_defaults, false, NULL, trace_main,
};
const struct cli_command cmd_trace_stats = {
	"trace stats", "FILE", "a trace's header, outcome and events counted by kind",
	stats_options, &dump_defaults, false, NULL, trace_main,
};
const struct cli_command cmd_trace_export = {
	"trace export", "FILE -o OUT [options]", "a trace as a timeline to view",
	export_options, &export_defaults, false, NULL, trace_main,
};

/* The instruction of an insn event, disassembled for the trace's model. */
static void print_insn(FILE *f, const struct ptemu_arch *a, const struct ptemu_trace_event *e, uint64_t pc)
{
	uint8_t bytes[16];
	csh cs;
	cs_insn *insn;

	memcpy(bytes, &e->a, 8);
	memcpy(bytes + 8, &e->b, 8);
	if (!a || cs_open((cs_arch)a->isa.cs_arch, (cs_mode)a->isa.cs_mode, &cs) != CS_ERR_OK)
		return;
	if (cs_disasm(cs, bytes, sizeof(bytes), pc, 1, &insn) == 1) {
		fprintf(f, "  %#" PRIx64 ": %s %s", pc, insn->mnemonic, insn->op_str);
		cs_free(insn, 1);
	}
	cs_close(&cs);
}

/* Chrome trace-event JSON (ui.perfetto.dev): a track per scheduler thread with its running
 * spans, faults and syscalls as instants, violations as global instants. Time is the
 * scheduler step (1 step = 1 us on the time axis). */
static void export_perfetto(FILE *f, const struct ptemu_trace *t)
{
	char name[sizeof("ptemu  ") + sizeof(t->h.arch) + sizeof(t->h.workload)];
	int running = -1;
	uint64_t now = 0, last_start = 0;

	snprintf(name, sizeof(name), "ptemu %s %s", t->h.arch, t->h.workload);
	fprintf(f, "{\"displayTimeUnit\":\"ns\",\"traceEvents\":[");
	fprintf(f, "{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":1,\"args\":{\"name\":");
	json_string(f, name);
	fprintf(f, "}}");
	for (size_t k = 0; k < t->nevents; k++) {
		const struct ptemu_trace_event *e = &t->events[k];
		int who = (int)((e->kind >> 8) & 0xff) - 1;

		switch (e->kind & 0xff) {
		case PTEMU_EV_SWITCH:
			now = e->b;
			if (running >= 0 && now > last_start)
				fprintf(f, ",{\"name\":\"running\",\"ph\":\"X\",\"pid\":1,\"tid\":%d,\"ts\":%" PRIu64
					   ",\"dur\":%" PRIu64 "}", running, last_start, now - last_start);
			running = (int)(e->a & 0xffff);
			last_start = now;
			break;
		case PTEMU_EV_FAULT:
			fprintf(f, ",{\"name\":\"fault\",\"ph\":\"i\",\"s\":\"t\",\"pid\":1,\"tid\":%d,\"ts\":%" PRIu64
				   ",\"args\":{\"va\":\"%#" PRIx64 "\",\"pc\":\"%#" PRIx64 "\"}}", who, now, e->a >> 2, e->b);
			break;
		case PTEMU_EV_SYSCALL:
			fprintf(f, ",{\"name\":\"syscall %" PRIu64 "\",\"ph\":\"i\",\"s\":\"t\",\"pid\":1,\"tid\":%d,\"ts\":%" PRIu64 "}",
				e->a, who, now);
			break;
		case PTEMU_EV_SHOOTDOWN:
			fprintf(f, ",{\"name\":\"shootdown\",\"ph\":\"i\",\"s\":\"t\",\"pid\":1,\"tid\":%d,\"ts\":%" PRIu64
				   ",\"args\":{\"start\":\"%#" PRIx64 "\",\"end\":\"%#" PRIx64 "\"}}", who, now, e->a, e->b);
			break;
		case PTEMU_EV_GP_END:
			fprintf(f, ",{\"name\":\"grace period: %" PRIu64 " callbacks\",\"ph\":\"i\",\"s\":\"t\",\"pid\":1,\"tid\":0,\"ts\":%" PRIu64 "}",
				e->a, now);
			break;
		case 16:	/* violation */
			fprintf(f, ",{\"name\":\"%s\",\"ph\":\"i\",\"s\":\"g\",\"pid\":1,\"tid\":%d,\"ts\":%" PRIu64 "}",
				e->a < VIOLATION_KIND_COUNT ? ptemu_violation_name((enum ptemu_violation_kind)e->a) : "?",
				who, now);
			break;
		default:
			break;
		}
	}
	if (running >= 0 && t->steps > last_start)
		fprintf(f, ",{\"name\":\"running\",\"ph\":\"X\",\"pid\":1,\"tid\":%d,\"ts\":%" PRIu64 ",\"dur\":%" PRIu64 "}",
			running, last_start, t->steps - last_start);
	fprintf(f, "]}\n");
}

static void print_header(const char *file, const struct ptemu_trace *t)
{
	struct ptemu_run_config rc = { 0 };

	printf("trace %s: format %u, ptemu %s, unicorn %u.%u, capstone %u.%u, build %016" PRIx64 "\n",
	       file, t->h.format_version, t->h.ptemu_version, t->h.unicorn_version >> 8,
	       t->h.unicorn_version & 0xff, t->h.capstone_version >> 8, t->h.capstone_version & 0xff,
	       t->h.build_id);
	ptemu_trace_apply_config(&t->h, &rc);
	char tlb[32] = "the model's";

	if (rc.tlb_entries)
		snprintf(tlb, sizeof(tlb), "%u entries", rc.tlb_entries);
	printf("run: %s %s image %016" PRIx64 ", %u process(es) x %u vCPU(s), seed %" PRIu64
	       ", inject %s, protocol %s%s%s%s, sched %s depth %u, %" PRIu64 " steps max, %" PRIu64
	       " MiB, TLB %s\n",
	       t->h.arch, t->h.workload, t->h.image_hash, t->h.procs, t->h.vcpus, t->h.seed,
	       injection_name(rc.inject), ptemu_protocol_name(rc.protocol),
	       rc.features.reclaim_empty_tables ? ", reclaim-empty-tables" : "",
	       rc.khugepaged ? ", khugepaged" : "",
	       rc.check_mode == PTEMU_CHECK_FAIL_FAST ? ", fail-fast" : "",
	       t->h.strategy ? "pct" : "random",
	       t->h.pct_depth, t->h.max_steps, t->h.phys_bytes >> 20, tlb);
	printf("outcome: %" PRIu64 " steps, digest %016" PRIx64 ", %" PRIu64 " violation(s)", t->steps,
	       t->digest, t->violations);
	if (t->first_kind < VIOLATION_KIND_COUNT)
		printf(", first %s at event %" PRIu64, ptemu_violation_name(t->first_kind), t->first_event);
	printf("\n");
}

static void print_stats(const struct ptemu_trace *t)
{
	uint64_t by[256] = { 0 };

	for (size_t k = 0; k < t->nevents; k++)
		by[t->events[k].kind & 0xff]++;
	printf("%zu events, %.2f per step, %.1f MiB per million steps\n", t->nevents,
	       t->steps ? (double)t->nevents / (double)t->steps : 0.0,
	       t->steps ? (double)t->nevents * 24.0 / (double)t->steps : 0.0);
	for (int k = 0; k < 256; k++)
		if (by[k])
			printf("  %-13s %" PRIu64 "\n", ptemu_trace_event_name((uint64_t)k), by[k]);
}

static void print_events(const struct ptemu_trace *t, uint64_t limit, bool disasm)
{
	const struct ptemu_arch *arch = ptemu_arch_find(t->h.arch);
	uint64_t last_pc = 0;

	for (size_t k = 0; k < t->nevents && k < limit; k++) {
		printf("%8zu thread %-3d ", k, (int)((t->events[k].kind >> 8) & 0xff) - 1);
		print_event(stdout, &t->events[k]);
		if ((t->events[k].kind & 0xff) == PTEMU_EV_FAULT)
			last_pc = t->events[k].b;
		if (disasm && (t->events[k].kind & 0xff) == PTEMU_EV_INSN)
			print_insn(stdout, arch, &t->events[k], last_pc);
		printf("\n");
	}
}

static int trace_main(int argc, char **argv)
{
	const struct cli_command *cmd = !strcmp(argv[0], "dump") ? &cmd_trace_dump :
					!strcmp(argv[0], "stats") ? &cmd_trace_stats : &cmd_trace_export;
	struct cli_opts o = *cmd->defaults;
	struct out_file out = { 0 };
	struct ptemu_trace t;
	char err[512];
	int rc = cli_parse(cmd, argc, argv, &o, 1, 1);

	if (rc)
		return rc == CLI_HELP ? EXIT_CLEAN : rc;
	if (cmd == &cmd_trace_export && !o.out)
		return usage_error("%s", "trace export needs -o OUT");
	if (ptemu_trace_read(o.args[0], &t, err, sizeof(err))) {
		fprintf(stderr, "ptemu: %s\n", err);
		return EXIT_USAGE;
	}
	if (cmd == &cmd_trace_export) {
		if (!(rc = out_open(&out, o.out, true))) {
			export_perfetto(out.f, &t);
			rc = out_commit(&out);
		}
	} else {
		print_header(o.args[0], &t);
		if (cmd == &cmd_trace_stats)
			print_stats(&t);
		else
			print_events(&t, o.limit, o.disasm);
	}
	ptemu_trace_free(&t);
	return rc;
}
