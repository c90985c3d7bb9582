// Traces: record, replay under the recorded decisions, refuse what does not match, and
// reject broken files without crashing.
#include <gtest/gtest.h>

#include <ptemu/arch.h>
#include <ptemu/trace.h>

#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "json_check.h"
#include "scratch.h"

#ifndef PTEMU_CLI
#error "PTEMU_CLI must name the ptemu program"
#endif

namespace {

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

std::vector<uint8_t> slurp(const std::string &path)
{
	std::ifstream f(path, std::ios::binary);
	return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

// ctest runs tests in parallel: each test records to its own file.
std::string record(const char *arch, const char *extra)
{
	std::string test = testing::UnitTest::GetInstance()->current_test_info()->name();
	std::string path = ptemu_test::scratch_dir() + "ptemu-" + test + "-" + arch + ".trc", out;
	EXPECT_LE(run_cli(std::string("run --arch ") + arch + " --workload munmap-race --steps 20000 --quiet --record " +
			  path + " " + extra,
			  &out),
		  1)
		<< out;
	return path;
}

} // namespace

TEST(Trace, ReplayMatchesEveryRecordedEventOnEachModel)
{
	for (const char *arch : {"arm64", "s390"}) {
		std::string path = record(arch, ""), out;
		EXPECT_EQ(run_cli("replay " + path, &out), 0) << out;
		EXPECT_NE(out.find("replay matches"), std::string::npos) << out;
		ptemu_trace t;
		char err[256];
		ASSERT_EQ(ptemu_trace_read(path.c_str(), &t, err, sizeof(err)), 0) << err;
		EXPECT_GT(t.nevents, 1000u);
		EXPECT_GE(t.steps, 20000u);
		ptemu_trace_free(&t);
	}
}

TEST(Trace, RecordedViolationIsReproducedAtTheSameEvent)
{
	for (const char *arch : {"arm64", "s390"}) {
		std::string path = record(arch, "--inject skip-pte-unmap --sched pct"), out;
		ptemu_trace t;
		char err[256];
		ASSERT_EQ(ptemu_trace_read(path.c_str(), &t, err, sizeof(err)), 0) << err;
		ASSERT_GT(t.violations, 0u);
		EXPECT_EQ(run_cli("replay " + path, &out), 1) << out;
		EXPECT_NE(out.find("replay matches"), std::string::npos) << out;
		std::string at = "at event " + std::to_string(t.first_event);
		// Both the recorded and the replayed line name the same first event.
		size_t one = out.find(at), two = one == std::string::npos ? one : out.find(at, one + 1);
		EXPECT_NE(two, std::string::npos) << out;
		EXPECT_NE(out.find("rcu-imbalance"), std::string::npos) << out;
		EXPECT_NE(out.find("map-unmap-imbalance"), std::string::npos) << out;
		ptemu_trace_free(&t);
	}
}

TEST(Trace, ReplayFollowsTheRecordingNotTheSeed)
{
	std::string path = record("arm64", "--seed 9"), out;
	std::vector<uint8_t> bytes = slurp(path);
	ptemu_trace t;
	char err[256];
	ASSERT_EQ(ptemu_trace_parse(bytes.data(), bytes.size(), &t, err, sizeof(err)), 0) << err;
	// A decision changed by hand: the replay follows it, and diverges right there.
	size_t k = 0;
	while (k < t.nevents && !((t.events[k].kind & 0xff) == 1 && t.events[k].b > 100))
		k++;
	ASSERT_LT(k, t.nevents);
	t.events[k].a ^= 1;  // hand the baton to another thread
	std::string edited = path + ".edited";
	ASSERT_EQ(ptemu_trace_write(edited.c_str(), &t, err, sizeof(err)), 0) << err;
	EXPECT_EQ(run_cli("replay " + edited, &out), 3) << out;
	EXPECT_NE(out.find("DIVERGED at event"), std::string::npos) << out;
	ptemu_trace_free(&t);
}

TEST(Trace, ReplayRefusesAnotherImageUnlessForced)
{
	std::string path = record("arm64", ""), out;
	std::string other = std::string(PTEMU_WORKLOAD_DIR) + "/aarch64/shmem-stress.elf";
	EXPECT_EQ(run_cli("replay " + path + " --image " + other, &out), 2) << out;
	EXPECT_NE(out.find("differs"), std::string::npos) << out;
	EXPECT_NE(run_cli("replay " + path + " --image " + other + " --force", &out), 2) << out;
}

TEST(Trace, ReaderRejectsBrokenFilesWithoutCrashing)
{
	std::string path = record("s390", ""), out;
	std::vector<uint8_t> good = slurp(path);
	ptemu_trace t;
	char err[256];
	ASSERT_EQ(ptemu_trace_parse(good.data(), good.size(), &t, err, sizeof(err)), 0);
	ptemu_trace_free(&t);
	// Every truncation of the header region and a spread of lengths beyond.
	for (size_t len = 0; len < good.size(); len += len < 512 ? 1 : 4099) {
		std::vector<uint8_t> cut(good.begin(), good.begin() + (long)len);
		EXPECT_EQ(ptemu_trace_parse(cut.data(), cut.size(), &t, err, sizeof(err)), -1) << len;
	}
	// Byte flips anywhere: the checksum or a range check refuses each one.
	unsigned seed = 1;
	for (int i = 0; i < 2000; i++) {
		std::vector<uint8_t> bad = good;
		seed = seed * 1103515245u + 12345u;
		size_t at = seed % bad.size();
		bad[at] ^= (uint8_t)(1 + (seed >> 16) % 255);
		EXPECT_EQ(ptemu_trace_parse(bad.data(), bad.size(), &t, err, sizeof(err)), -1) << at;
	}
	// Hostile but consistent: a huge event count cannot be claimed without the bytes.
	std::vector<uint8_t> wrong_version = good;
	wrong_version[8] = 99;
	EXPECT_EQ(ptemu_trace_parse(wrong_version.data(), wrong_version.size(), &t, err, sizeof(err)), -1);
	EXPECT_NE(std::string(err).find("version"), std::string::npos) << err;
	std::string notrace = ptemu_test::scratch_dir() + "ptemu-not-a-trace";
	std::ofstream(notrace) << "hello";
	EXPECT_EQ(run_cli("trace dump " + notrace, &out), 2);
	EXPECT_NE(out.find("not a ptemu trace"), std::string::npos) << out;
	EXPECT_EQ(run_cli("replay /nonexistent.trc", &out), 2);
}

TEST(Trace, StatsAndDumpDescribeTheRun)
{
	std::string path = record("arm64", ""), out;
	EXPECT_EQ(run_cli("trace stats " + path, &out), 0) << out;
	EXPECT_NE(out.find("per million steps"), std::string::npos) << out;
	EXPECT_NE(out.find("switch"), std::string::npos) << out;
	EXPECT_EQ(run_cli("trace dump " + path + " --limit 3", &out), 0) << out;
	EXPECT_NE(out.find("       2 thread"), std::string::npos) << out;
}

TEST(Trace, MinimizeGivesAShorterTraceWithTheSameKind)
{
	for (const char *arch : {"arm64", "s390"}) {
		std::string path = record(arch, "--inject skip-pte-unmap --sched pct --steps 40000"), out;
		std::string min = path + ".min";
		ptemu_trace before, after;
		char err[256];
		ASSERT_EQ(ptemu_trace_read(path.c_str(), &before, err, sizeof(err)), 0) << err;
		ASSERT_EQ(run_cli("minimize " + path + " -o " + min, &out), 0) << out;
		ASSERT_EQ(ptemu_trace_read(min.c_str(), &after, err, sizeof(err)), 0) << err;
		EXPECT_LT(after.steps, before.steps);
		EXPECT_LT(after.nevents, before.nevents);
		EXPECT_EQ(after.first_kind, before.first_kind);
		EXPECT_EQ(run_cli("replay " + min, &out), 1) << out;  // it still fails, and replays
		EXPECT_NE(out.find("replay matches"), std::string::npos) << out;
		std::string clean = record(arch, "");
		EXPECT_EQ(run_cli("minimize " + clean + " -o " + min, &out), 2) << out;
		ptemu_trace_free(&before);
		ptemu_trace_free(&after);
	}
}

TEST(Trace, DumpDisassemblesFaultsAndExportIsChromeTraceJson)
{
	for (const char *arch : {"arm64", "s390"}) {
		std::string path = record(arch, ""), out, json = path + ".json";
		EXPECT_EQ(run_cli("trace dump " + path + " --disasm", &out), 0);
		size_t insn = out.find(" insn ");
		ASSERT_NE(insn, std::string::npos) << "no fault recorded";
		// The disassembly of a store on either ISA follows the bytes.
		std::string line = out.substr(insn, out.find('\n', insn) - insn);
		EXPECT_TRUE(line.find(": st") != std::string::npos || line.find(": str") != std::string::npos ||
			    line.find(": mv") != std::string::npos || line.find(": l") != std::string::npos)
			<< line;
		EXPECT_EQ(run_cli("trace export --format perfetto " + path + " -o " + json, &out), 0) << out;
		std::vector<uint8_t> j = slurp(json);
		std::string text(j.begin(), j.end());
		EXPECT_EQ(text.rfind("{\"displayTimeUnit\"", 0), 0u);
		EXPECT_NE(text.find("\"name\":\"running\""), std::string::npos);
		EXPECT_NE(text.find("\"name\":\"fault\""), std::string::npos);
		EXPECT_NE(text.find("\"name\":\"shootdown\""), std::string::npos);
		EXPECT_EQ(text.substr(text.size() - 3), "]}\n");
		EXPECT_EQ(run_cli("trace export --format svg " + path + " -o " + json, &out), 2);
	}
}

// The image path goes into the exported JSON as a string: quotes, backslashes and control
// characters escaped.
TEST(Trace, ExportEscapesTheImagePath)
{
	std::string dir = ptemu_test::scratch_dir() + "ptemu-esc-XXXXXX", out;

	ASSERT_TRUE(mkdtemp(dir.data()));
	std::string image = dir + "/a\"b\\c\td.elf", trace = dir + "/t.trc", json = dir + "/t.json";
	std::vector<uint8_t> elf = slurp(std::string(PTEMU_WORKLOAD_DIR) + "/" +
					 ptemu_arch_find("arm64")->isa.workload_dir + "/shmem-stress.elf");
	ASSERT_FALSE(elf.empty());
	std::ofstream(image, std::ios::binary).write((const char *)elf.data(), (std::streamsize)elf.size());
	ASSERT_LE(run_cli("run --arch arm64 --steps 5000 --quiet --image '" + image + "' --record " + trace, &out), 1)
		<< out;
	ASSERT_EQ(run_cli("trace export " + trace + " -o " + json, &out), 0) << out;
	std::vector<uint8_t> j = slurp(json);
	std::string text(j.begin(), j.end());

	EXPECT_TRUE(ptemu_test::JsonCheck::valid(text)) << text.substr(0, 300);
	EXPECT_NE(text.find("a\\\"b\\\\c\\u0009d.elf"), std::string::npos) << text.substr(0, 300);
	EXPECT_EQ(run_cli("trace export " + trace + " -o /dev/full", &out), 3) << out;
	EXPECT_NE(out.find("/dev/full"), std::string::npos) << out;
}

namespace {

// The good trace at path, with its header changed by `edit` and the checksum recomputed:
// what parse says of it.
template <typename Edit> std::string parse_edited(const std::string &path, Edit edit)
{
	ptemu_trace t;
	char err[256];
	EXPECT_EQ(ptemu_trace_read(path.c_str(), &t, err, sizeof(err)), 0) << err;
	edit(&t);
	std::string edited = path + ".edited";
	EXPECT_EQ(ptemu_trace_write(edited.c_str(), &t, err, sizeof(err)), 0) << err;
	ptemu_trace_free(&t);
	int rc = ptemu_trace_read(edited.c_str(), &t, err, sizeof(err));
	std::remove(edited.c_str());
	if (rc == 0) {
		ptemu_trace_free(&t);
		return "accepted";
	}
	return err;
}

long max_rss_kib()
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss;
}

} // namespace

TEST(Trace, EveryHeaderFieldIsBoundedByWhatTheCliAccepts)
{
	std::string path = record("arm64", "");
	EXPECT_EQ(parse_edited(path, [](ptemu_trace *) {}), "accepted");
	auto refused = [&](const char *what, std::string why) {
		EXPECT_NE(why, "accepted") << what;
		EXPECT_NE(why.find("corrupted trace"), std::string::npos) << what << ": " << why;
	};
	refused("phys 2^40", parse_edited(path, [](ptemu_trace *t) { t->h.phys_bytes = 1ull << 40; }));
	refused("phys 0", parse_edited(path, [](ptemu_trace *t) { t->h.phys_bytes = 0; }));
	refused("phys not MiB", parse_edited(path, [](ptemu_trace *t) { t->h.phys_bytes = (1ull << 20) + 1; }));
	refused("steps 2^40", parse_edited(path, [](ptemu_trace *t) { t->h.max_steps = 1ull << 40; }));
	refused("steps 2^62", parse_edited(path, [](ptemu_trace *t) { t->h.max_steps = 1ull << 62; }));
	refused("steps max", parse_edited(path, [](ptemu_trace *t) { t->h.max_steps = UINT64_MAX; }));
	refused("procs", parse_edited(path, [](ptemu_trace *t) { t->h.procs = 17; }));
	refused("vcpus", parse_edited(path, [](ptemu_trace *t) { t->h.vcpus = 0; }));
	refused("depth", parse_edited(path, [](ptemu_trace *t) { t->h.pct_depth = 17; }));
	refused("model", parse_edited(path, [](ptemu_trace *t) { snprintf(t->h.arch, sizeof(t->h.arch), "vax"); }));
	refused("event", parse_edited(path, [](ptemu_trace *t) { t->events[0].kind = 99; }));
	refused("clean with violations", parse_edited(path, [](ptemu_trace *t) { t->violations = 3; }));
	// The configuration word's TLB size (bits 20-24, log2): 16..65536 entries, or 0.
	refused("tlb 8", parse_edited(path, [](ptemu_trace *t) { t->h.inject |= 3u << 20; }));
	refused("tlb 2^17", parse_edited(path, [](ptemu_trace *t) { t->h.inject |= 17u << 20; }));
	refused("config bit 25", parse_edited(path, [](ptemu_trace *t) { t->h.inject |= 1u << 25; }));
	EXPECT_EQ(parse_edited(path, [](ptemu_trace *t) { t->h.inject |= 16u << 20; }), "accepted");
	// The largest the CLI accepts is still a trace.
	EXPECT_EQ(parse_edited(path, [](ptemu_trace *t) {
			  t->h.max_steps = PTEMU_TRACE_MAX_STEPS;
			  t->h.phys_bytes = PTEMU_TRACE_MAX_MEMORY_MIB << 20;
		  }),
		  "accepted");
	// And the CLI refuses such a file as bad input before it runs anything.
	ptemu_trace t;
	char err[256];
	ASSERT_EQ(ptemu_trace_read(path.c_str(), &t, err, sizeof(err)), 0) << err;
	t.h.phys_bytes = 1ull << 40;
	std::string huge = path + ".huge", out;
	ASSERT_EQ(ptemu_trace_write(huge.c_str(), &t, err, sizeof(err)), 0) << err;
	ptemu_trace_free(&t);
	EXPECT_EQ(run_cli("replay " + huge, &out), 2) << out;
	EXPECT_NE(out.find("simulated memory"), std::string::npos) << out;
	std::remove(huge.c_str());
}

TEST(Trace, AHugeJunkFileIsRefusedFromItsHeader)
{
	std::string good = record("s390", "");
	std::vector<uint8_t> head = slurp(good);
	head.resize(200);
	for (const char *what : {"junk", "version 1", "good header"}) {
		std::string path = ptemu_test::scratch_dir() + "ptemu-huge-" + std::to_string(getpid()) + ".trc";
		std::vector<uint8_t> start = std::string(what) == "junk" ? std::vector<uint8_t>(64, 'x') : head;
		if (std::string(what) == "version 1")
			start[8] = 1;
		{
			std::ofstream f(path, std::ios::binary);
			f.write(reinterpret_cast<const char *>(start.data()), (std::streamsize)start.size());
		}
		// 2 GiB + 1, sparse: a whole read would cost 2 GiB of memory.
		ASSERT_EQ(truncate(path.c_str(), (2ll << 30) + 1), 0);
		long before = max_rss_kib();
		ptemu_trace t;
		char err[256];
		EXPECT_EQ(ptemu_trace_read(path.c_str(), &t, err, sizeof(err)), -1) << what;
		EXPECT_LT(max_rss_kib() - before, 64 * 1024) << what << ": " << err;
		if (std::string(what) == "version 1") {
			EXPECT_NE(std::string(err).find("record the run again"), std::string::npos) << err;
		}
		std::remove(path.c_str());
	}
}

TEST(Trace, ALongImagePathIsStoredWholeAndReplayed)
{
	// A path of more than 200 bytes, through a chain of directories.
	std::string dir = ptemu_test::scratch_dir() + "ptemu-long-image-path-" + std::to_string(getpid());
	std::string sub = dir;
	for (int i = 0; i < 4; i++) {
		sub += "/a-directory-name-of-some-fifty-bytes-to-make-it-long";
		ASSERT_EQ(system(("mkdir -p " + sub).c_str()), 0);
	}
	std::string image = sub + "/munmap-race.elf", src = std::string(PTEMU_WORKLOAD_DIR) + "/aarch64/munmap-race.elf";
	ASSERT_EQ(system(("cp " + src + " " + image).c_str()), 0);
	ASSERT_GT(image.size(), 200u);
	std::string trace = dir + "/t.trc", out;
	EXPECT_EQ(run_cli("run --arch arm64 --image " + image + " --steps 20000 --quiet --record " + trace, &out), 0)
		<< out;
	ptemu_trace t;
	char err[256];
	ASSERT_EQ(ptemu_trace_read(trace.c_str(), &t, err, sizeof(err)), 0) << err;
	EXPECT_EQ(std::string(t.h.workload), image);
	ptemu_trace_free(&t);
	EXPECT_EQ(run_cli("replay " + trace, &out), 0) << out;
	EXPECT_NE(out.find("replay matches"), std::string::npos) << out;
	ASSERT_EQ(system(("rm -rf " + dir).c_str()), 0);
}
