// Guest runs on Unicorn: every workload on arm64 and s390, bad input, wild accesses,
// and an injected bug in the fault path.
#include "fixture.h"
#include "scratch.h"

#include <ptemu/run.h>

#include <sched.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <algorithm>
#include <map>
#include <sstream>
#include <utility>
#include <regex>
#include <vector>
#include <string>
#include <tuple>

#ifndef PTEMU_WORKLOAD_DIR
#error "PTEMU_WORKLOAD_DIR must name the built images"
#endif
#ifndef PTEMU_CLI
#error "PTEMU_CLI must name the ptemu program"
#endif

using ptemu_test::guest_run_config;
using ptemu_test::workload_image;

namespace {

struct GuestRunHolder {
	GuestRunHolder(const char *arch, const char *workload, unsigned procs, unsigned vcpus, double seconds,
	    ptemu_injection inject = INJECT_NONE, const char *path = nullptr)
	{
		path_ = path ? path : workload_image(arch, workload);
		cfg =
			guest_run_config(ptemu_arch_find(arch), workload, path_, procs, vcpus, seconds);
		cfg.seed = 7;
		cfg.inject = inject;
		cfg.phys_bytes = 128ull << 20;
		error = ptemu_run(&cfg, &m, &res);
	}
	~GuestRunHolder() { ptemu_machine_destroy(m); }
	uint64_t count(ptemu_violation_kind k) const { return m ? check_kind_count(m, k) : 0; }
	uint64_t stat(ptemu_stat s) const { return m ? ptemu_stat_get(&m->stats, s) : 0; }
	std::string describe() const
	{
		std::string out = res.message;
		if (!m)
			return out;
		size_t n;
		const ptemu_violation *v = check_violations(m, &n);
		for (size_t i = 0; i < n && i < 5; i++)
			out += std::string("\n") + ptemu_violation_name(v[i].kind) + ": " + v[i].message;
		return out;
	}

	std::string path_;
	ptemu_run_config cfg{};
	ptemu_machine *m = nullptr;
	ptemu_run_result res{};
	ptemu_run_error error;
};

using Shape = std::tuple<const char *, const char *, unsigned, unsigned>;

class Workload : public testing::TestWithParam<Shape> {};

std::string ShapeName(const testing::TestParamInfo<Shape> &info)
{
	std::string s = std::string(std::get<0>(info.param)) + "_" + std::get<1>(info.param) + "_" +
			std::to_string(std::get<2>(info.param)) + "x" +
			std::to_string(std::get<3>(info.param));
	for (char &c : s)
		if (c == '-')
			c = '_';
	return s;
}

int run_cli(const std::string &args, std::string *out)
{
	std::string cmd = std::string(PTEMU_CLI) + " " + args + " 2>&1";
	FILE *p = popen(cmd.c_str(), "r");
	char buf[4096];
	out->clear();
	while (p && fgets(buf, sizeof(buf), p))
		*out += buf;
	int st = p ? pclose(p) : -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

} // namespace

TEST_P(Workload, RunsCleanWithFaultsAndFillsAndVerifiedData)
{
	auto [arch, workload, procs, vcpus] = GetParam();
	GuestRunHolder r(arch, workload, procs, vcpus, 0.6);
	ASSERT_EQ(r.error, PTEMU_RUN_OK) << r.describe();
	EXPECT_EQ(check_violation_count(r.m), 0u) << r.describe();
	EXPECT_GT(r.stat(PTEMU_STAT_faults), 0u);
	EXPECT_GT(r.res.tlb_fills, 0u);
	EXPECT_GT(r.res.syscalls, 0u);
	for (unsigned p = 0; p < procs; p++)
		EXPECT_EQ(r.res.exit_codes[p], 0) << "process " << p;
	EXPECT_EQ(phys_stats(r.m->phys).pages_allocated, r.m->arch_mem_pages);
}

INSTANTIATE_TEST_SUITE_P(
	Guests, Workload,
	testing::Combine(testing::Values("arm64", "s390", "arm-lpae", "arm", "sparc64", "ppc64-radix", "ppc64-hash"),
			 testing::Values("shmem-stress", "munmap-race", "mprotect-race",
					 "dontneed-race", "truncate-race", "file-thp", "shared-alias"),
			 testing::Values(1u, 2u), testing::Values(1u, 2u)),
	ShapeName);

// A process killed mid-run: its exit_mmap tears down mappings of the shared objects while
// the other processes keep faulting on them.
TEST(GuestRun, ProcessExitRacesTheOthersFaults)
{
	for (const char *arch : {"arm64", "s390"}) {
		for (const char *w : {"shmem-stress", "truncate-race"}) {
			std::string path = workload_image(arch, w);
			ptemu_run_config cfg =
				guest_run_config(ptemu_arch_find(arch), w, path, 3, 2, 0.8);
			cfg.exit_after = 0.3;
			cfg.phys_bytes = 128ull << 20;
			ptemu_machine *m = nullptr;
			ptemu_run_result res{};
			ASSERT_EQ(ptemu_run(&cfg, &m, &res), PTEMU_RUN_OK) << arch << " " << w << ": " << res.message;
			EXPECT_EQ(res.exit_codes[2], 137);
			EXPECT_EQ(res.exit_codes[0], 0);
			size_t nv;
			const ptemu_violation *v = check_violations(m, &nv);
			EXPECT_EQ(check_violation_count(m), 0u)
				<< arch << " " << w << ": " << (nv ? ptemu_violation_name(v[0].kind) : "")
				<< " " << (nv ? v[0].message : "");
			EXPECT_EQ(phys_stats(m->phys).pages_allocated, m->arch_mem_pages);
			ptemu_machine_destroy(m);
		}
	}
}

// Every vCPU of a process but the last returns at once, on one host CPU, so that they
// are gone before the later ones have even started: the process lives until its last
// vCPU is out, and its mm is torn down once, after that (no use of a freed mm, no double
// exit_mmap, no hang in the joins).
TEST(GuestRun, VcpusThatExitAtOnceLeaveTheProcessToTheLast)
{
	cpu_set_t saved, one;
	ASSERT_EQ(sched_getaffinity(0, sizeof(saved), &saved), 0);
	CPU_ZERO(&one);
	for (int c = 0; c < CPU_SETSIZE; c++)
		if (CPU_ISSET(c, &saved)) {
			CPU_SET(c, &one);
			break;
		}
	ASSERT_EQ(sched_setaffinity(0, sizeof(one), &one), 0);	// the vCPUs inherit it
	for (const char *arch : {"arm64", "s390"}) {
		for (unsigned procs : {1u, 2u}) {
			for (int i = 0; i < 8; i++) {
				GuestRunHolder r(arch, "early-exit", procs, 4, 0.05);
				ASSERT_EQ(r.error, PTEMU_RUN_OK) << arch << " run " << i << ": " << r.describe();
				EXPECT_FALSE(r.res.hung);
				EXPECT_EQ(check_violation_count(r.m), 0u) << arch << " run " << i << ": " << r.describe();
				EXPECT_GT(r.res.tlb_fills, 0u);
				EXPECT_EQ(phys_stats(r.m->phys).pages_allocated, r.m->arch_mem_pages);
			}
		}
	}
	ASSERT_EQ(sched_setaffinity(0, sizeof(saved), &saved), 0);
}

TEST(GuestRun, WildAccessEndsTheRunWithWhereAndWhat)
{
	for (const char *arch : {"arm64", "s390"}) {
		GuestRunHolder r(arch, "wild-access", 1, 1, 2.0);
		EXPECT_EQ(r.error, PTEMU_RUN_GUEST_ERROR) << arch;
		std::string msg = r.res.message;
		EXPECT_NE(msg.find("process 0 vCPU 0"), std::string::npos) << msg;
		EXPECT_NE(msg.find("segmentation fault writing the page at 0x0 "), std::string::npos) << msg;
		EXPECT_NE(msg.find("pc 0x4"), std::string::npos) << msg;
		// The faulting instruction, disassembled: a store on either ISA.
		EXPECT_TRUE(msg.find(": str") != std::string::npos || msg.find(": mv") != std::string::npos ||
			    msg.find(": st") != std::string::npos)
			<< msg;
		EXPECT_EQ(check_violation_count(r.m), 0u) << r.describe();
	}
}

// A vCPU whose fault the handler resolves while its walk keeps refusing the access (a
// stale walk cache, left by the no-tlb-flush injection) ends the run as a livelock at
// once, saying where: not at the deterministic step bound, nor as a guest that did not stop.
TEST(GuestRun, SameFaultWithoutProgressIsALivelockSaidAtOnce)
{
	// Not every seed's stale walk cache ends in one vCPU's endless fault (most runs end
	// with several vCPUs looping, none 50000 times before the step bound): the first such
	// seed in 1..60 (ptemu run ... --memory 128 --steps 200000 --inject no-tlb-flush).
	for (auto [arch, first] : {std::pair<const char *, uint64_t>{"arm64", 49}, {"s390", 2}}) {
		std::string path = workload_image(arch, "shmem-stress"), caught;
		for (uint64_t seed = first; seed < first + 8 && caught.empty(); seed++) {
			ptemu_run_config cfg =
				guest_run_config(ptemu_arch_find(arch), "shmem-stress", path, 2, 2, 3600);
			cfg.seed = seed;
			cfg.inject = INJECT_NO_TLB_FLUSH;
			cfg.khugepaged = true;
			cfg.phys_bytes = 128ull << 20;
			ptemu_test::make_deterministic(cfg, seed);
			ptemu_machine *m = nullptr;
			ptemu_run_result res{};
			ptemu_run_error e = ptemu_run(&cfg, &m, &res);
			ASSERT_FALSE(res.hung) << res.message;
			std::string msg = res.message;
			if (msg.find("faults in a row") != std::string::npos) {
				EXPECT_EQ(e, PTEMU_RUN_GUEST_ERROR) << arch;
				caught = msg;
			}
			ptemu_machine_destroy(m);
		}
		for (const char *part : {"process ", " vCPU ", "livelock: 50000 faults in a row at pc 0x4",
					 " the page at 0x"})
			EXPECT_NE(caught.find(part), std::string::npos) << arch << ": " << part << " in " << caught;
	}
}

// The watchdog's hang report says what each vCPU is doing, a syscall by its name: here
// vCPU 0 waits in wait_khugepaged for passes that a long scan sleep holds back.
TEST(GuestRun, HangReportNamesTheSyscall)
{
	std::string path = workload_image("arm64", "khugepaged-wait");
	ptemu_run_config cfg =
		guest_run_config(ptemu_arch_find("arm64"), "khugepaged-wait", path, 1, 1, 60);
	cfg.khugepaged = true;
	cfg.scan_sleep_ms = 1e6;
	cfg.watchdog_seconds = 0.5;
	cfg.phys_bytes = 128ull << 20;
	ptemu_machine *m = nullptr;
	ptemu_run_result res{};
	EXPECT_EQ(ptemu_run(&cfg, &m, &res), PTEMU_RUN_GUEST_ERROR) << res.message;
	ASSERT_FALSE(res.hung) << res.message;
	size_t n;
	const ptemu_violation *v = check_violations(m, &n);
	ASSERT_GT(n, 0u) << res.message;
	std::string msg = v[0].message;
	EXPECT_NE(msg.find("0.0 in syscall wait_khugepaged"), std::string::npos) << msg;
	ptemu_machine_destroy(m);
}

TEST(GuestRun, MalformedImageIsBadInput)
{
	std::string path = ptemu_test::scratch_dir() + "ptemu-not-elf";
	std::ofstream(path) << "this is not an ELF file";
	GuestRunHolder r("arm64", "shmem-stress", 1, 1, 1.0, INJECT_NONE, path.c_str());
	EXPECT_EQ(r.error, PTEMU_RUN_BAD_INPUT);
	EXPECT_NE(std::string(r.res.message).find("not an ELF"), std::string::npos) << r.res.message;
	std::remove(path.c_str());
}

TEST(GuestRun, ImageOfAnotherIsaIsBadInput)
{
	std::string s390 = workload_image("s390", "shmem-stress");
	GuestRunHolder r("arm64", "shmem-stress", 1, 1, 1.0, INJECT_NONE, s390.c_str());
	EXPECT_EQ(r.error, PTEMU_RUN_BAD_INPUT);
	EXPECT_NE(std::string(r.res.message).find("machine"), std::string::npos) << r.res.message;
}

TEST(GuestRun, SkippedPteUnmapInTheFaultPathIsCaught)
{
	for (const char *arch : {"arm64", "s390"}) {
		GuestRunHolder r(arch, "munmap-race", 1, 1, 0.5, INJECT_SKIP_PTE_UNMAP);
		EXPECT_GT(r.count(VIOLATION_RCU_IMBALANCE) + r.count(VIOLATION_MAP_UNMAP_IMBALANCE), 0u)
			<< arch << ": " << r.describe();
	}
}

TEST(Cli, BadNamesAndValuesExitTwoWithTheValidChoices)
{
	std::string out;
	EXPECT_EQ(run_cli("run --arch vax", &out), 2);
	EXPECT_NE(out.find("arm64"), std::string::npos) << out;
	EXPECT_EQ(run_cli("run --workload nope", &out), 2);
	EXPECT_NE(out.find("shmem-stress"), std::string::npos) << out;
	EXPECT_EQ(run_cli("run --procs 0", &out), 2);
	EXPECT_NE(out.find("1..16"), std::string::npos) << out;
	EXPECT_EQ(run_cli("run --seconds banana", &out), 2);
	EXPECT_EQ(run_cli("run --inject s390-relist-active-page --arch arm64", &out), 2);
	EXPECT_EQ(run_cli("frobnicate", &out), 2);
	EXPECT_EQ(run_cli("run --image /nonexistent/x.elf --arch arm64", &out), 2);
	EXPECT_NE(out.find("/nonexistent/x.elf"), std::string::npos) << out;
}

TEST(Cli, RunJsonReportsTheSummary)
{
	std::string out;
	EXPECT_EQ(run_cli("run --arch s390 --procs 2 --vcpus 1 --seconds 0.5 --quiet --json -", &out), 0)
		<< out;
	for (const char *key : {"\"arch\":\"s390\"", "\"workload\":\"shmem-stress\"",
				"\"result\":\"clean\"", "\"tlb_fills\":", "\"faults\":", "\"hw_refills\":",
				"\"hw_flushes\":",
				"\"pte_map_failures\":", "\"violations\":[]"})
		EXPECT_NE(out.find(key), std::string::npos) << key << " in " << out;
}

// The most vCPUs the CLI accepts in one process all open their objects: a process's file
// table holds them (a full table once made guests die with status 2, in a run that
// called itself clean).
TEST(Cli, SixteenVcpusOfOneProcessAllOpenTheirFiles)
{
	for (const char *arch : {"arm64", "s390"}) {
		std::string out;
		EXPECT_EQ(run_cli(std::string("run --arch ") + arch +
					  " --workload shmem-stress --procs 1 --vcpus 16 --seconds 0.3",
				  &out),
			  0)
			<< out;
		EXPECT_EQ(out.find("fatal"), std::string::npos) << out;
	}
}

TEST(Cli, WildAccessExitsThree)
{
	std::string out;
	EXPECT_EQ(run_cli("run --arch arm64 --workload wild-access --procs 1 --quiet", &out), 3) << out;
	EXPECT_NE(out.find("segmentation fault"), std::string::npos) << out;
}

// A list of models is checked whole: no empty names, and 'all' stands for every model
// wherever it is in the list.
TEST(Cli, ArchListsHaveNoEmptyNamesAndAllExpandsInside)
{
	std::string out;
	for (const char *list : {",", "''", "arm64,", ",s390", "arm64,,s390"}) {
		EXPECT_EQ(run_cli(std::string("run --arch ") + list, &out), 2) << list;
		EXPECT_NE(out.find("--arch"), std::string::npos) << list << ": " << out;
	}
	EXPECT_EQ(run_cli("stress --arch s390,all --seconds 0.1", &out), 0) << out;
	for (const char *arch : {"arm64 ", "arm64-39 ", "s390 "})
		EXPECT_NE(out.find(std::string("\n") + arch), std::string::npos) << arch << "in " << out;
	EXPECT_EQ(out.find("unknown"), std::string::npos) << out;
}

// Every number is decimal digits only: no base prefix, sign, space or exponent. The bad
// --arch ends each command line before anything runs.
// No kernel has both 6.14's reclaim and v6.5's retract: refused, whichever command.
TEST(Cli, ReclaimWithTheLegacyProtocolIsRefused)
{
	std::string out;
	EXPECT_EQ(run_cli("run --arch arm64 --protocol legacy --reclaim-empty-tables", &out), 2);
	EXPECT_NE(out.find("needs the lockless protocol"), std::string::npos) << out;
	EXPECT_EQ(run_cli("campaign --arch arm64 --seeds 1 --protocol lockless,legacy "
			  "--reclaim-empty-tables", &out), 2);
	EXPECT_NE(out.find("needs the lockless protocol"), std::string::npos) << out;
}

TEST(Cli, NumbersAreDecimalDigitsOnly)
{
	std::string out;
	// 010 is ten seeds: from 2^64-10 the last would be beyond 2^64-1 (eight would fit).
	EXPECT_EQ(run_cli("campaign --arch arm64 --seeds 010 --seed-base 18446744073709551607", &out), 2);
	EXPECT_NE(out.find("beyond 2^64-1"), std::string::npos) << out;
	EXPECT_EQ(run_cli("run --procs 08 --vcpus 09 --seed 010 --seconds 01.50 --arch vax", &out), 2);
	EXPECT_NE(out.find("unknown architecture 'vax'"), std::string::npos) << out;
	const char *bad[][2] = {
		{"--seed", "' -1'"}, {"--seed", "-1"}, {"--seed", "+1"}, {"--seed", "0x10"},
		{"--seed", "18446744073709551616"}, {"--seed", "'1 '"}, {"--procs", "+2"},
		{"--memory", "1e3"}, {"--steps", "' 5000'"}, {"--seconds", "' 1'"}, {"--seconds", "+1"},
		{"--seconds", "1e1"}, {"--seconds", "0x1p1"}, {"--seconds", "inf"}, {"--seconds", "."},
		{"--seconds", "1."}, {"--seconds", "-0.5"}, {"--watchdog", "' 2'"}, {"--exit-after", "+1"},
	};
	for (auto &b : bad) {
		std::string args = std::string("run ") + b[0] + " " + b[1] + " --arch vax";
		EXPECT_EQ(run_cli(args, &out), 2) << args;
		EXPECT_NE(out.find(b[0]), std::string::npos) << args << ": " << out;
	}
	EXPECT_EQ(run_cli("campaign --arch arm64 --seeds ' 2'", &out), 2);
	EXPECT_NE(out.find("--seeds"), std::string::npos) << out;
	EXPECT_EQ(run_cli("campaign --arch arm64 --seeds 2 -j 0x2", &out), 2);
	EXPECT_NE(out.find("-j"), std::string::npos) << out;
	EXPECT_EQ(run_cli("trace dump /nonexistent.trc --limit -1", &out), 2);
	EXPECT_NE(out.find("--limit"), std::string::npos) << out;
}

// Arguments and combinations that would be ignored are refused before anything runs.
TEST(Cli, IgnoredArgumentsAreRefusedBeforeRunning)
{
	std::string out;
	EXPECT_EQ(run_cli("bench overhead foo --arch arm64 --seconds 0.1", &out), 2);
	EXPECT_NE(out.find("'foo'"), std::string::npos) << out;
	EXPECT_EQ(run_cli("run --arch arm64 --procs 1 --exit-after 0.2 --seconds 0.3", &out), 2);
	EXPECT_NE(out.find("--exit-after"), std::string::npos) << out;
	EXPECT_EQ(out.find("shmem-stress,"), std::string::npos) << "it ran: " << out;
	EXPECT_EQ(run_cli("run --inject none,free-immediately --arch arm64", &out), 2);
	EXPECT_NE(out.find("--inject"), std::string::npos) << out;
}

// --record goes to a file that can be written, checked before the run; an existing file
// is replaced only by a whole trace.
TEST(Cli, RecordToADirectoryOrUnwritablePathIsRefusedBeforeTheRun)
{
	std::string dir = ptemu_test::scratch_dir(), out;
	for (std::string path : {dir, std::string("/nonexistent/dir/x.trc")}) {
		EXPECT_EQ(run_cli("run --arch arm64 --steps 5000 --quiet --record " + path, &out), 2) << path;
		EXPECT_NE(out.find(path), std::string::npos) << out;
		EXPECT_EQ(out.find("shmem-stress,"), std::string::npos) << "it ran: " << out;
	}
	std::string keep = dir + "ptemu-record-keep.trc";
	std::ofstream(keep) << "keep";
	EXPECT_EQ(run_cli("run --arch arm64 --steps 5000 --quiet --image /nonexistent/x.elf --record " + keep, &out),
		  2) << out;
	std::ifstream f(keep);
	std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
	EXPECT_EQ(text, "keep");
	std::remove(keep.c_str());
}

// A JSON report that cannot be written is an error naming the file, not a silent loss.
TEST(Cli, JsonThatCannotBeWrittenExitsThreeNamingTheFile)
{
	std::string out;
	EXPECT_EQ(run_cli("run --arch s390 --seconds 0.2 --quiet --json /dev/full", &out), 3) << out;
	EXPECT_NE(out.find("/dev/full"), std::string::npos) << out;
	EXPECT_EQ(run_cli("stress --arch s390 --seconds 0.1 --json /dev/full", &out), 3) << out;
	EXPECT_NE(out.find("/dev/full"), std::string::npos) << out;
	EXPECT_EQ(run_cli("stress --arch s390 --seconds 0.1 --json - >/dev/full", &out), 3) << out;
}

// bench overhead at the model's logical TLB size and 4 and 16 times it, or at the one
// --tlb-entries names, each --repeat times; a size that is no power of two is refused before anything runs. A
// recorded run keeps its size: the trace says it and replays with it.
TEST(Cli, TlbEntriesSizeTheLogicalTlbOfBenchesRunsAndTraces)
{
	std::string out;
	ASSERT_EQ(run_cli("bench overhead --arch s390 --seconds 0.2 --repeat 2 --json -", &out), 0) << out;
	for (const char *size : {"\"tlb_entries\":1024,", "\"tlb_entries\":4096,", "\"tlb_entries\":16384,"})
		EXPECT_NE(out.find(size), std::string::npos) << size << ": " << out;
	// Medians of the repeats, each with its lowest and highest.
	std::smatch mt;
	ASSERT_TRUE(std::regex_search(out, mt, std::regex("\"repeat\":2,\"seconds\":0.2,\"throughput_ratio\":([0-9.]+),"
							   "\"throughput_ratio_spread\":\\[([0-9.]+),([0-9.]+)\\]")))
		<< out;
	EXPECT_LE(std::stod(mt[2]), std::stod(mt[1])) << out;
	EXPECT_LE(std::stod(mt[1]), std::stod(mt[3])) << out;
	EXPECT_NE(out.find("\"throughput_ratio_grown_bare\":"), std::string::npos) << out;
	// What the throughput went on: walks, Unicorn's refills and its whole-TLB flushes.
	ASSERT_TRUE(std::regex_search(out, mt, std::regex("\"fills_ptemu\":([0-9.]+),.*\"refills_ptemu\":([0-9.]+),"
							   ".*\"hw_flushes_ptemu\":([0-9.]+),")))
		<< out;
	EXPECT_GT(std::stod(mt[1]), 0) << out;
	EXPECT_GT(std::stod(mt[2]), 0) << out;
	EXPECT_GT(std::stod(mt[3]), 0) << out;
	EXPECT_NE(out.find("Unicorn refills="), std::string::npos) << out;
	// tlb-miss's sweep of 2 x 16384 s390 pages fits in half of the default 256 MiB: every
	// size gets a miss cost (its value is checked at 64 entries below, whose sweep of 512
	// pages completes in 0.2 s even under the sanitizers).
	EXPECT_NE(out.find("\"tlb_entries\":16384,"), std::string::npos) << out;
	EXPECT_EQ(out.find("\"miss_ns\":null"), std::string::npos) << out;
	// With less memory the large sizes get a throughput and no miss cost.
	ASSERT_EQ(run_cli("bench overhead --arch s390 --seconds 0.2 --repeat 1 --memory 32 --json -", &out), 0)
		<< out;
	EXPECT_NE(out.find("\"tlb_entries\":16384,\"repeat\":1,\"seconds\":0.2,\"throughput_ratio\":"), std::string::npos)
		<< out;
	EXPECT_NE(out.find("\"miss_ns\":null"), std::string::npos) << out;
	EXPECT_NE(out.find("tlb=16384 medians of 1: ratio="), std::string::npos) << out;
	EXPECT_NE(out.find("miss cost not measured"), std::string::npos) << out;
	ASSERT_EQ(run_cli("bench overhead --arch s390 --seconds 0.2 --repeat 1 --tlb-entries 64 --json -", &out), 0)
		<< out;
	EXPECT_NE(out.find("\"tlb_entries\":64,"), std::string::npos) << out;
	EXPECT_EQ(out.find("\"tlb_entries\":1024,"), std::string::npos) << out;
	ASSERT_TRUE(std::regex_search(out, mt, std::regex("\"miss_ns\":([0-9.]+),[^}]*\"identity_fill_ns\":([0-9.]+),")))
		<< out;
	EXPECT_GT(std::stod(mt[1]), 0) << out;
	EXPECT_GT(std::stod(mt[2]), 0) << out;
	// Each model's own size, which --tlb-entries replaces, is listed.
	ASSERT_EQ(run_cli("list arches", &out), 0) << out;
	EXPECT_NE(out.find("s390x DAT"), std::string::npos) << out;
	EXPECT_NE(out.find("logical TLB: 1024 entries", out.find("s390x DAT")), std::string::npos) << out;
	EXPECT_EQ(run_cli("run --arch arm64 --tlb-entries 100 --seconds 0.2", &out), 2) << out;
	EXPECT_NE(out.find("power of two"), std::string::npos) << out;
	EXPECT_EQ(out.find("shmem-stress,"), std::string::npos) << "it ran: " << out;

	std::string trace = ptemu_test::scratch_dir() + "ptemu-tlb-entries.trc";
	ASSERT_EQ(run_cli("run --arch arm64 --steps 20000 --tlb-entries 32 --quiet --record " + trace, &out), 0)
		<< out;
	ASSERT_EQ(run_cli("trace dump --limit 1 " + trace, &out), 0) << out;
	EXPECT_NE(out.find("TLB 32 entries"), std::string::npos) << out;
	ASSERT_EQ(run_cli("replay " + trace, &out), 0) << out;
	EXPECT_NE(out.find("matches"), std::string::npos) << out;
}

// bench determinism: both runs clean, each rate the instructions over the CPU time it
// reports, the cost their ratio, and with two repetitions that ratio one of the two.
TEST(Cli, BenchDeterminismReportsBothRatesAndTheirRatio)
{
	std::string out;
	ASSERT_EQ(run_cli("bench determinism --arch s390 --seconds 0.3 --steps 3000 --procs 1 --vcpus 1 "
			  "--khugepaged off --repeat 2 --json -",
			  &out),
		  0) << out;
	std::vector<double> rate, instr, cpu;
	std::smatch mt;
	std::string rest = out;
	std::regex run("\\{\"instructions\":([0-9]+),\"cpu_seconds\":([0-9.]+),\"elapsed\":[0-9.]+,"
		       "(\"steps\":[0-9]+,)?\"instructions_per_cpu_second\":([0-9]+)\\}");
	while (std::regex_search(rest, mt, run)) {
		instr.push_back(std::stod(mt[1]));
		cpu.push_back(std::stod(mt[2]));
		rate.push_back(std::stod(mt[4]));
		rest = mt.suffix();
	}
	ASSERT_EQ(rate.size(), 2u) << out;
	for (int i = 0; i < 2; i++) {
		EXPECT_GT(instr[i], 0) << out;
		EXPECT_NEAR(rate[i], instr[i] / cpu[i], rate[i] * 0.01 + 1) << out;
	}
	ASSERT_TRUE(std::regex_search(out, mt, std::regex("\"cost_ratio\":([0-9.]+),\"cost_ratio_lowest\":([0-9.]+),"
							  "\"cost_ratio_highest\":([0-9.]+),\"repeat\":2,")))
		<< out;
	EXPECT_NEAR(std::stod(mt[1]), rate[0] / rate[1], 0.01 * rate[0] / rate[1] + 0.001) << out;
	// The reported pair is one of the two repetitions: the lowest or the highest ratio.
	EXPECT_LE(std::stod(mt[2]), std::stod(mt[3])) << out;
	EXPECT_TRUE(std::abs(std::stod(mt[1]) - std::stod(mt[2])) < 0.002 ||
		    std::abs(std::stod(mt[1]) - std::stod(mt[3])) < 0.002)
		<< out;
	EXPECT_NE(out.find("(target <= 5)"), std::string::npos) << out;
	// The baton alone, at 2 and 8 threads: CPU and elapsed time per pass.
	std::smatch bm;
	ASSERT_TRUE(std::regex_search(out, bm, std::regex("\"baton_pass\":\\[\\{\"threads\":2,\"cpu_ns\":([0-9.]+),"
							  "\"elapsed_ns\":([0-9.]+)\\},\\{\"threads\":8,"
							  "\"cpu_ns\":([0-9.]+),\"elapsed_ns\":([0-9.]+)\\}\\]\\}")))
		<< out;
	for (int i = 1; i <= 4; i++)
		EXPECT_GT(std::stod(bm[i]), 0) << out;
	EXPECT_NE(out.find("baton pass "), std::string::npos) << out;
}

// bench latency --repeat: each protocol's runs, their median, lowest and highest, and the
// verdict on the difference, all from the same runs.
TEST(Cli, BenchLatencyRepeatsEachProtocolAndJudgesTheDifferenceByTheSpread)
{
	std::string out;
	ASSERT_EQ(run_cli("bench latency --arch s390 --seconds 0.3 --procs 1 --vcpus 1 --repeat 3 --json -", &out), 0)
		<< out;
	std::smatch mt;
	std::regex metric("\"(p50_ns|p99_ns|max_ns|retraction_success)\":\\{\"median\":([0-9.]+),\"min\":([0-9.]+),"
			  "\"max\":([0-9.]+),\"runs\":\\[([0-9.,]+)\\]\\}");
	std::map<std::string, std::vector<std::pair<double, double>>> ranges;
	std::string rest = out;
	int seen = 0;
	while (std::regex_search(rest, mt, metric)) {
		std::vector<double> runs;
		std::stringstream ss(mt[5].str());
		for (std::string x; std::getline(ss, x, ',');)
			runs.push_back(std::stod(x));
		ASSERT_EQ(runs.size(), 3u) << out;
		std::sort(runs.begin(), runs.end());
		EXPECT_NEAR(std::stod(mt[2]), runs[1], 1e-3) << mt[1];
		EXPECT_NEAR(std::stod(mt[3]), runs[0], 1e-3) << mt[1];
		EXPECT_NEAR(std::stod(mt[4]), runs[2], 1e-3) << mt[1];
		ranges[mt[1]].push_back({runs[0], runs[2]});
		seen++;
		rest = mt.suffix();
	}
	ASSERT_EQ(seen, 8) << out;	// four metrics, two protocols
	for (const auto &[name, r] : ranges) {
		bool differs = r[0].second < r[1].first || r[1].second < r[0].first;
		EXPECT_NE(out.find("\"" + name + "_differs\":" + (differs ? "true" : "false")), std::string::npos)
			<< name << ": " << out;
	}
}

// A guest that runs the machine out of memory is told which option gives it more.
TEST(Cli, MemoryExhaustionNamesTheMemoryOption)
{
	std::string out;
	EXPECT_EQ(run_cli("run --arch s390 --memory 16 --workload dontneed-race --procs 16 --steps 100000 --quiet",
			  &out),
		  3) << out;
	EXPECT_NE(out.find("out of simulated memory; give more --memory"), std::string::npos) << out;
}

// Every command's --help is its part of 'ptemu help', from the one option table.
TEST(Cli, EveryCommandHasItsHelpAndPtemuHelpListsThemAll)
{
	std::string all, out;
	ASSERT_EQ(run_cli("help", &all), 0);
	for (const char *cmd : {"run", "stress", "bench overhead", "bench latency", "bench determinism", "replay",
				"minimize", "trace dump", "trace stats", "trace export", "campaign", "campaign merge",
				"list"}) {
		EXPECT_EQ(run_cli(std::string(cmd) + " --help", &out), 0) << cmd;
		EXPECT_EQ(out.rfind(std::string("usage: ptemu ") + cmd + " ", 0), 0u) << cmd << ": " << out;
		// A note cut off by a buffer loses its closing parenthesis.
		EXPECT_EQ(std::count(out.begin(), out.end(), '('), std::count(out.begin(), out.end(), ')'))
			<< cmd << ": " << out;
		EXPECT_NE(all.find(std::string("  ptemu ") + cmd + " "), std::string::npos) << cmd;
		size_t options = out.find(std::string(cmd) + " options:\n");
		if (options != std::string::npos) {
			EXPECT_NE(all.find(out.substr(options)), std::string::npos) << cmd;
		}
	}
	EXPECT_EQ(run_cli("bench --help", &out), 0);
	EXPECT_NE(out.find("usage: ptemu bench latency"), std::string::npos) << out;
	EXPECT_EQ(run_cli("bench", &out), 2);
	EXPECT_NE(out.find("overhead latency"), std::string::npos) << out;
}
