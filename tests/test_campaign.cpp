// ptemu campaign: the same numbers at any parallelism, shards that merge into the whole,
// an injected bug's smallest failing seed and the commands that reproduce it, bad usage.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "json_check.h"
#include "scratch.h"

#ifndef PTEMU_CLI
#error "PTEMU_CLI must name the ptemu program"
#endif

namespace {

// Runs a shell command line; its exit status, stdout and stderr together in *out.
int run_sh(const std::string &cmd, std::string *out)
{
	FILE *p = popen((cmd + " 2>&1").c_str(), "r");
	char buf[4096];

	out->clear();
	while (p && fgets(buf, sizeof(buf), p))
		*out += buf;
	int st = p ? pclose(p) : -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int campaign(const std::string &args, std::string *out)
{
	return run_sh(std::string(PTEMU_CLI) + " campaign " + args, out);
}

std::string slurp(const std::string &path)
{
	std::ifstream f(path);
	std::stringstream s;

	s << f.rdbuf();
	return s.str();
}

// A directory of its own per campaign, inside the process's scratch directory.
std::string campaign_dir()
{
	std::string tmpl = ptemu_test::scratch_dir() + "campaign-XXXXXX";

	if (!mkdtemp(tmpl.data()))
		ADD_FAILURE() << "mkdtemp " << tmpl;
	return tmpl + "/";
}

// The number after "key": in the n-th configuration object of a campaign JSON.
std::string field(const std::string &json, const std::string &key, int config = 0)
{
	size_t at = json.find("{\"arch\":");

	for (int i = 0; i < config && at != std::string::npos; i++)
		at = json.find("{\"arch\":", at + 1);
	at = at == std::string::npos ? at : json.find("\"" + key + "\":", at);
	if (at == std::string::npos)
		return "(no " + key + ")";
	at += key.size() + 3;
	return json.substr(at, json.find_first_of(",}", at) - at);
}

// Enough of a well-formedness check for what campaign writes: brackets balance outside
// strings, and it is one object with the configurations and the shard.
void expect_campaign_json(const std::string &json)
{
	int depth = 0;
	bool in_string = false;

	for (char ch : json) {
		if (ch == '"') {
			in_string = !in_string;
		} else if (!in_string && (ch == '{' || ch == '[')) {
			depth++;
		} else if (!in_string && (ch == '}' || ch == ']')) {
			EXPECT_GE(--depth, 0) << json;
		}
	}
	EXPECT_EQ(depth, 0) << json;
	EXPECT_FALSE(in_string) << json;
	EXPECT_EQ(json.rfind("{\"configs\":[", 0), 0u) << json;
	EXPECT_NE(json.find("],\"shard\":\""), std::string::npos) << json;
}

// The rest of the line after `label` in the table.
std::string table_line(const std::string &out, const std::string &label)
{
	size_t at = out.find(label);

	if (at == std::string::npos)
		return "";
	at += label.size();
	return out.substr(at, out.find('\n', at) - at);
}

// The JSON without the host CPU time of each configuration's runs (cpu_us and the runs per
// core-hour from it): the one part that differs between two campaigns of the same runs.
std::string without_timing(const std::string &json)
{
	return std::regex_replace(json, std::regex(",\"cpu_us\":[0-9]+,\"runs_per_core_hour\":[0-9]+"), "");
}

uint64_t number(const std::string &json, const char *name, int nth = 0)
{
	return std::stoull(field(json, name, nth));
}

} // namespace

TEST(Campaign, SameNumbersAtAnyParallelism)
{
	std::string dir = campaign_dir(), out;
	const std::string args = "--arch arm64 --seeds 4 --steps 20000 --quiet --json ";

	ASSERT_EQ(campaign(args + dir + "j2.json -j 2", &out), 0) << out;
	EXPECT_NE(out.find("arm64     none"), std::string::npos) << out;
	std::string j2 = slurp(dir + "j2.json");

	expect_campaign_json(j2);
	EXPECT_EQ(field(j2, "runs"), "4") << j2;
	EXPECT_EQ(field(j2, "clean"), "4") << j2;
	EXPECT_EQ(field(j2, "errors"), "0") << j2;
	EXPECT_EQ(field(j2, "first_failing_seed"), "null") << j2;
	EXPECT_NE(j2.find("\"shard\":\"1/1\""), std::string::npos) << j2;
	EXPECT_NE(field(j2, "steps_run"), "0") << j2;
	// Exploration speed: the workers' CPU time, and the runs per core-hour it gives.
	EXPECT_GT(number(j2, "cpu_us"), 0u) << j2;
	EXPECT_NEAR(double(number(j2, "runs_per_core_hour")), 4 * 3600e6 / double(number(j2, "cpu_us")), 1)
		<< j2;
	EXPECT_NE(out.find("runs per core-hour"), std::string::npos) << out;
	EXPECT_NE(out.find("runs/core-h"), std::string::npos) << out;

	ASSERT_EQ(campaign(args + dir + "j1.json -j 1", &out), 0) << out;
	// Every count and the sum of the run digests: the runs were the same runs.
	EXPECT_EQ(without_timing(slurp(dir + "j1.json")), without_timing(j2));
}

TEST(Campaign, ShardsMergeIntoTheWholeAndMissingOnesAreRefused)
{
	std::string dir = campaign_dir(), out;
	const std::string args =
		"--arch s390 --seeds 5 --steps 100000 --inject none,s390-relist-active-page --quiet -j 2 --json ";

	int whole = campaign(args + dir + "all.json", &out);
	ASSERT_LE(whole, 1) << out;
	ASSERT_LE(campaign(args + dir + "s1.json --shard 1/2", &out), 1) << out;
	EXPECT_EQ(field(slurp(dir + "s1.json"), "runs"), "3");	// seeds 1, 3, 5
	EXPECT_EQ(field(slurp(dir + "s1.json"), "runs", 1), "3");
	ASSERT_LE(campaign(args + dir + "s2.json --shard 2/2", &out), 1) << out;
	EXPECT_EQ(field(slurp(dir + "s2.json"), "runs"), "2");	// seeds 2, 4

	ASSERT_EQ(campaign("merge " + dir + "s2.json " + dir + "s1.json --json " + dir + "merged.json", &out),
		  whole) << out;
	std::string all = slurp(dir + "all.json");

	expect_campaign_json(all);
	std::string merged = slurp(dir + "merged.json");
	EXPECT_EQ(without_timing(merged), without_timing(all));
	for (int row = 0; row < 2; row++)
		EXPECT_EQ(number(merged, "cpu_us", row), number(slurp(dir + "s1.json"), "cpu_us", row) +
								 number(slurp(dir + "s2.json"), "cpu_us", row));
	EXPECT_EQ(field(all, "runs", 1), "5") << all;

	EXPECT_EQ(campaign("merge " + dir + "s1.json", &out), 2) << out;
	EXPECT_NE(out.find("missing shard 2/2"), std::string::npos) << out;
	EXPECT_EQ(campaign("merge " + dir + "s1.json " + dir + "s1.json", &out), 2) << out;
	EXPECT_NE(out.find("both shard 1/2"), std::string::npos) << out;
	EXPECT_LE(campaign("merge --partial --json - " + dir + "s1.json", &out), 1) << out;
	EXPECT_NE(out.find("\"shard\":\"partial\""), std::string::npos) << out;
	EXPECT_EQ(campaign("merge " + dir + "merged.json " + dir + "s1.json", &out), 2) << out;

	std::ofstream(dir + "other.json") << "{\"runs\":[]}\n";
	EXPECT_EQ(campaign("merge " + dir + "other.json", &out), 2) << out;
	EXPECT_NE(out.find(dir + "other.json: not a JSON file of 'ptemu campaign --json'"),
		  std::string::npos) << out;
}

// s390 re-listing a page whose other half waits for its grace period fails within a few
// seeds; the smallest failing seed's commands record and replay that failure.
TEST(Campaign, InjectedBugGivesItsSmallestFailingSeedAndReproducingCommands)
{
	std::string dir = campaign_dir(), out;

	ASSERT_EQ(campaign("--arch s390 --inject s390-relist-active-page --khugepaged on --seeds 3 "
			   "--steps 200000 -j 2 --quiet --json " + dir + "inj.json", &out), 1) << out;
	std::string json = slurp(dir + "inj.json");
	std::string first = field(json, "first_failing_seed");

	expect_campaign_json(json);
	ASSERT_NE(first, "null") << json;
	EXPECT_NE(field(json, "pt-use-after-free"), "0") << json;
	// The list is in ascending order and starts with the first failing seed, whatever
	// order the workers finished in.
	size_t list = json.find("\"failing_seeds\":[");
	ASSERT_NE(list, std::string::npos);
	std::stringstream listed(json.substr(list + 17, json.find(']', list) - list - 17));
	std::vector<unsigned long long> seeds;
	for (std::string seed; std::getline(listed, seed, ',');)
		seeds.push_back(std::stoull(seed));
	ASSERT_FALSE(seeds.empty()) << json;
	EXPECT_EQ(std::to_string(seeds[0]), first) << json;
	EXPECT_EQ(std::adjacent_find(seeds.begin(), seeds.end(), std::greater_equal<>()), seeds.end()) << json;

	std::string record = table_line(out, "reproduce: ptemu ");
	std::string replay = table_line(out, "replay:    ptemu ");
	ASSERT_NE(record.find("--seed " + first + " "), std::string::npos) << out;
	EXPECT_NE(record.find("--record fail-s390-s390-relist-active-page-khugepaged-" + first + ".trc"),
		  std::string::npos)
		<< record;
	ASSERT_FALSE(replay.empty()) << out;

	EXPECT_EQ(run_sh("cd " + dir + " && " + PTEMU_CLI + " " + record + " --quiet", &out), 1) << out;
	EXPECT_NE(out.find("pt-use-after-free"), std::string::npos) << out;
	EXPECT_EQ(run_sh("cd " + dir + " && " + PTEMU_CLI + " " + replay, &out), 1) << out;
	EXPECT_NE(out.find("replay matches"), std::string::npos) << out;
	EXPECT_NE(out.find("pt-use-after-free"), std::string::npos) << out;
}

TEST(Campaign, BadArgumentsExitTwoWithAMessage)
{
	std::string out;
	const std::string ok = "--arch arm64 --seeds 2 ";

	EXPECT_EQ(campaign("--arch vax --seeds 2", &out), 2);
	EXPECT_NE(out.find("unknown architecture 'vax'"), std::string::npos) << out;
	EXPECT_EQ(campaign(ok + "--inject bogus", &out), 2);
	EXPECT_NE(out.find("unknown injection 'bogus'"), std::string::npos) << out;
	EXPECT_EQ(campaign(ok + "--inject s390-relist-active-page", &out), 2);
	EXPECT_NE(out.find("not offered by arm64"), std::string::npos) << out;
	EXPECT_EQ(campaign(ok + "--protocol lockless,sloppy", &out), 2);
	EXPECT_NE(out.find("'sloppy' is not lockless or legacy"), std::string::npos) << out;
	EXPECT_EQ(campaign("--arch arm64 --seeds 0", &out), 2);
	EXPECT_NE(out.find("--seeds"), std::string::npos) << out;
	EXPECT_EQ(campaign(ok + "-j 0", &out), 2);
	EXPECT_NE(out.find("-j: '0'"), std::string::npos) << out;
	for (const char *shard : {"0/2", "3/2", "2", "1/0", "a/b"}) {
		EXPECT_EQ(campaign(ok + "--shard " + shard, &out), 2) << shard;
		EXPECT_NE(out.find("--shard"), std::string::npos) << out;
	}
	EXPECT_EQ(campaign("--arch arm64", &out), 2);
	EXPECT_NE(out.find("needs --arch and --seeds"), std::string::npos) << out;
	EXPECT_EQ(campaign("merge", &out), 2);
	EXPECT_EQ(campaign("merge /nonexistent/shard.json", &out), 2);
	EXPECT_NE(out.find("/nonexistent/shard.json"), std::string::npos) << out;
	EXPECT_EQ(campaign("--help", &out), 0);
	EXPECT_NE(out.find("--shard I/N"), std::string::npos) << out;
}

// Shard files merged only when what they hold fits: sums within 64 bits, names of this
// build (they go into a command line), and files that are files.
TEST(Campaign, MergeRefusesOverflowUnknownNamesDirectoriesAndNulBytes)
{
	std::string dir = campaign_dir(), out;
	const std::string args = "--arch arm64 --seeds 2 --steps 20000 --quiet -j 2 --json ";

	ASSERT_EQ(campaign(args + dir + "s1.json --shard 1/2", &out), 0) << out;
	ASSERT_EQ(campaign(args + dir + "s2.json --shard 2/2", &out), 0) << out;
	std::string s1 = slurp(dir + "s1.json"), s2 = slurp(dir + "s2.json");
	auto replaced = [](std::string text, const std::string &from, const std::string &to) {
		size_t at = text.find(from);

		EXPECT_NE(at, std::string::npos) << from;
		return at == std::string::npos ? text : text.replace(at, from.size(), to);
	};
	const std::string kind = "\"pt-use-after-free\":";

	std::ofstream(dir + "big1.json") << replaced(s1, kind + "0", kind + "18446744073709551615");
	std::ofstream(dir + "big2.json") << replaced(s2, kind + "0", kind + "930");
	EXPECT_EQ(campaign("merge " + dir + "big1.json " + dir + "big2.json", &out), 2) << out;
	EXPECT_NE(out.find(dir + "big2.json"), std::string::npos) << out;
	EXPECT_NE(out.find("pt-use-after-free"), std::string::npos) << out;
	EXPECT_EQ(out.find("929"), std::string::npos) << out;

	std::ofstream(dir + "vax.json") << replaced(s1, "\"arch\":\"arm64\"", "\"arch\":\"arm64;reboot\"");
	EXPECT_EQ(campaign("merge " + dir + "vax.json " + dir + "s2.json", &out), 2) << out;
	EXPECT_NE(out.find(dir + "vax.json"), std::string::npos) << out;
	EXPECT_NE(out.find("arch"), std::string::npos) << out;
	EXPECT_EQ(out.find("reproduce:"), std::string::npos) << out;

	EXPECT_EQ(campaign("merge " + dir, &out), 2) << out;
	EXPECT_NE(out.find(dir), std::string::npos) << out;
	EXPECT_NE(out.find("directory"), std::string::npos) << out;
	std::ofstream(dir + "nul.json") << std::string("{\"configs\":[\0]}\n", 15);
	EXPECT_EQ(campaign("merge " + dir + "nul.json", &out), 2) << out;
	EXPECT_NE(out.find(dir + "nul.json"), std::string::npos) << out;
	EXPECT_NE(out.find("NUL"), std::string::npos) << out;
	EXPECT_EQ(out.find("Invalid argument"), std::string::npos) << out;
}

// A campaign stopped by SIGINT or SIGTERM forwards it to its workers, reaps them all and
// writes the runs that finished, marked partial, over the --json file, which it left as
// it was until then; then it ends by that signal.
TEST(Campaign, SignalStopsTheWorkersAndWritesThePartialResults)
{
	for (int sig : {SIGINT, SIGTERM}) {
		std::string dir = campaign_dir(), json = dir + "c.json", log = dir + "log";
		std::ofstream(json) << "before";
		pid_t pid = fork();

		ASSERT_GE(pid, 0);
		if (!pid) {
			int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);

			setpgid(0, 0);	/* the campaign and its workers: one group to look for */
			dup2(fd, 1);
			dup2(fd, 2);
			execl(PTEMU_CLI, "ptemu", "campaign", "--arch", "arm64", "--seeds", "40", "--steps",
			      "100000", "-j", "2", "--json", json.c_str(), (char *)nullptr);
			_exit(127);
		}
		setpgid(pid, pid);
		/* Until the progress line says a tenth of the runs finished (slow builds take
		 * longer), so that the partial results hold some. */
		for (int waited = 0; waited < 1200 && slurp(log).find("/40 runs") == std::string::npos;
		     waited++)
			usleep(100 * 1000);
		EXPECT_EQ(slurp(json), "before") << "the output was replaced before the end";
		kill(pid, sig);
		int st = 0;
		pid_t got = 0;

		for (int waited = 0; waited < 300 && !(got = waitpid(pid, &st, WNOHANG)); waited++)
			usleep(100 * 1000);
		if (!got) {
			kill(-pid, SIGKILL);
			waitpid(pid, &st, 0);
			ADD_FAILURE() << "signal " << sig << ": the campaign did not end within 30 s";
		}
		EXPECT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == sig) << "signal " << sig << ", status " << st
								     << ": " << slurp(log);
		usleep(200 * 1000);
		EXPECT_TRUE(kill(-pid, 0) == -1 && errno == ESRCH) << "signal " << sig << ": a worker survived";
		kill(-pid, SIGKILL);
		std::string text = slurp(json);

		EXPECT_TRUE(ptemu_test::JsonCheck::valid(text)) << text;
		EXPECT_NE(text.find("\"partial\":true"), std::string::npos) << text;
		EXPECT_NE(field(text, "runs"), "0") << text;
		EXPECT_NE(slurp(log).find("partial"), std::string::npos) << slurp(log);
		std::string out;

		EXPECT_EQ(campaign("merge " + json, &out), 2);
		EXPECT_NE(out.find("interrupted"), std::string::npos) << out;
	}
}

// An injection run outside the configuration whose races reach it (ptemu list injections)
// may find nothing: campaign and run say which options reach it, and run anyway.
TEST(Campaign, AnInjectionOutsideItsReachingConfigurationGetsANote)
{
	std::string out;
	const std::string note = "note: retract-no-recheck is reached by --workload retract-reclaim "
				 "--khugepaged on --reclaim-empty-tables";

	EXPECT_LE(campaign("--arch s390 --seeds 1 --steps 1000 --inject retract-no-recheck --khugepaged on "
			   "-j 1 --quiet",
			   &out),
		  1)
		<< out;
	EXPECT_NE(out.find(note), std::string::npos) << out;
	EXPECT_NE(out.find("s390      retract-no-recheck"), std::string::npos) << "it did not run: " << out;
	EXPECT_LE(campaign("--arch s390 --seeds 1 --steps 1000 --inject retract-no-recheck --workload "
			   "retract-reclaim --khugepaged on --reclaim-empty-tables -j 1 --quiet",
			   &out),
		  1)
		<< out;
	EXPECT_EQ(out.find("note:"), std::string::npos) << out;
	EXPECT_LE(run_sh(std::string(PTEMU_CLI) + " run --arch s390 --steps 1000 --inject retract-no-recheck --quiet", &out),
		  1)
		<< out;
	EXPECT_NE(out.find(note), std::string::npos) << out;
	EXPECT_NE(out.find("s390      clean"), std::string::npos) << "it did not run: " << out;
	ASSERT_EQ(run_sh(std::string(PTEMU_CLI) + " list injections", &out), 0);
	EXPECT_NE(out.find("reached by: --workload retract-reclaim --khugepaged on --reclaim-empty-tables"),
		  std::string::npos)
		<< out;
}
