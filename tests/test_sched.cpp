// The deterministic scheduler: the same seed gives the same run, bit for bit (digest);
// other seeds give other schedules; injected bugs are caught at the same event again;
// a deadlock is reported instead of hanging.
#include "fixture.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <ptemu/ptstress.h>
#include <ptemu/run.h>
#include <ptemu/sched.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <tuple>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>
#include <algorithm>

#ifndef PTEMU_WORKLOAD_DIR
#error "PTEMU_WORKLOAD_DIR must name the built images"
#endif

using namespace ptemu_test;

namespace {

struct StressOutcome {
	uint64_t digest = 0, steps = 0, violations = 0;
	ptemu_violation first{};
};

StressOutcome det_stress(const char *arch, uint64_t seed, ptemu_sched_strategy strategy,
			 ptemu_injection inject = INJECT_NONE)
{
	MachineHolder h(arch, inject);
	ptemu_pt_stress_config cfg{};
	cfg.workers = 3;
	cfg.tables = 2;
	cfg.seed = seed;
	cfg.seconds = 60;
	cfg.max_ops = 600;
	make_deterministic(cfg, seed, strategy);
	ptemu_pt_stress_result r{};
	EXPECT_EQ(ptemu_pt_stress(h.m, &cfg, &r), 0);
	StressOutcome o;
	o.digest = r.digest;
	o.steps = r.steps;
	o.violations = h.violations();
	size_t n;
	const ptemu_violation *v = check_violations(h.m, &n);
	if (n)
		o.first = v[0];
	return o;
}

class DetStress : public testing::TestWithParam<const char *> {};

} // namespace

TEST_P(DetStress, SameSeedSameDigestOtherSeedOtherSchedule)
{
	for (ptemu_sched_strategy st : {PTEMU_SCHED_RANDOM, PTEMU_SCHED_PCT}) {
		StressOutcome a = det_stress(GetParam(), 11, st), b = det_stress(GetParam(), 11, st),
			      c = det_stress(GetParam(), 12, st);
		EXPECT_NE(a.digest, 0u);
		EXPECT_EQ(a.digest, b.digest) << "strategy " << st;
		EXPECT_EQ(a.steps, b.steps);
		EXPECT_NE(a.digest, c.digest) << "strategy " << st;
		EXPECT_EQ(a.violations, 0u);
	}
}

TEST_P(DetStress, InjectedBugIsCaughtAtTheSameEventAgain)
{
	struct {
		ptemu_injection inj;
		std::vector<ptemu_violation_kind> kinds;
	} cases[] = {
		{INJECT_FREE_IMMEDIATELY, {VIOLATION_PT_USE_AFTER_FREE, VIOLATION_PT_FREE_WHILE_MAPPED}},
		{INJECT_NO_RCU_READ_LOCK,
		 {VIOLATION_PT_READ_UNPROTECTED, VIOLATION_PT_USE_AFTER_FREE, VIOLATION_PT_FREE_WHILE_MAPPED}},
		{INJECT_NO_PMD_RECHECK, {VIOLATION_PTE_IN_DETACHED_TABLE}},
		{INJECT_SKIP_PTE_UNMAP, {VIOLATION_RCU_IMBALANCE, VIOLATION_MAP_UNMAP_IMBALANCE}},
	};
	for (auto &c : cases) {
		StressOutcome a = det_stress(GetParam(), 3, PTEMU_SCHED_PCT, c.inj);
		StressOutcome b = det_stress(GetParam(), 3, PTEMU_SCHED_PCT, c.inj);
		ASSERT_GT(a.violations, 0u) << "injection " << c.inj << " not caught";
		EXPECT_NE(std::find(c.kinds.begin(), c.kinds.end(), a.first.kind), c.kinds.end())
			<< ptemu_violation_name(a.first.kind) << ": " << a.first.message;
		EXPECT_EQ(a.first.kind, b.first.kind);
		EXPECT_EQ(a.first.event, b.first.event) << "injection " << c.inj;
		EXPECT_EQ(a.violations, b.violations);
		EXPECT_EQ(a.digest, b.digest);
	}
}

INSTANTIATE_TEST_SUITE_P(Models, DetStress, testing::ValuesIn(kModels), ModelName);

namespace {

using GuestShape = std::tuple<const char *, const char *>;

class DetGuest : public testing::TestWithParam<GuestShape> {};

// Runs cfg, which must end clean; the machine goes with the run unless threads are stuck
// in it.
ptemu_run_result run_clean(const ptemu_run_config &cfg)
{
	ptemu_machine *m = nullptr;
	ptemu_run_result res{};
	EXPECT_EQ(ptemu_run(&cfg, &m, &res), PTEMU_RUN_OK) << res.message;
	EXPECT_EQ(m ? check_violation_count(m) : 1, 0u);
	if (!res.hung)	/* stuck vCPU threads still use it */
		ptemu_machine_destroy(m);
	return res;
}

ptemu_run_result det_run(const char *arch, const char *workload, uint64_t seed)
{
	const ptemu_arch *a = ptemu_arch_find(arch);
	std::string path = workload_image(arch, workload);
	ptemu_run_config cfg = guest_run_config(a, workload, path, 2, 2, 60);
	cfg.seed = seed;
	cfg.phys_bytes = 128ull << 20;
	cfg.deterministic = true;
	cfg.sched.seed = seed;
	cfg.sched.max_steps = 30000;
	return run_clean(cfg);
}

std::string GuestName(const testing::TestParamInfo<GuestShape> &info)
{
	std::string s = std::string(std::get<0>(info.param)) + "_" + std::get<1>(info.param);
	for (char &c : s)
		if (c == '-')
			c = '_';
	return s;
}

} // namespace

TEST_P(DetGuest, SameSeedGivesABitIdenticalRun)
{
	auto [arch, workload] = GetParam();
	ptemu_run_result a = det_run(arch, workload, 5), b = det_run(arch, workload, 5),
			 c = det_run(arch, workload, 6);
	EXPECT_NE(a.digest, 0u);
	EXPECT_EQ(a.digest, b.digest);
	EXPECT_EQ(a.steps, b.steps);
	EXPECT_EQ(a.tlb_fills, b.tlb_fills);
	EXPECT_EQ(a.syscalls, b.syscalls);
	EXPECT_GE(a.steps, 30000u);
	EXPECT_NE(a.digest, c.digest);
}

INSTANTIATE_TEST_SUITE_P(
	Guests, DetGuest,
	testing::Combine(testing::Values("arm64", "s390", "arm-lpae", "arm", "sparc64", "ppc64-radix", "ppc64-hash"),
			 testing::Values("shmem-stress", "munmap-race", "mprotect-race",
					 "dontneed-race", "truncate-race", "shared-alias")),
	GuestName);

// A pass is a switch of stacks on the host thread that holds the baton, so scheduled
// threads run on host threads not their own; what is theirs goes with them (`current`,
// ptemu_thread_local, their stack), and each ends on its own host thread.
TEST(DetScheduler, AThreadKeepsWhatIsItsOwnOnWhicheverHostThreadRunsIt)
{
	MachineHolder h("arm64");
	ptemu_sched_config sc{};
	sc.seed = 7;
	sc.max_steps = 100000;
	ASSERT_EQ(ptemu_sched_create(h.m, &sc), 0);
	static ptemu_thread_local_key key = { sizeof(uint64_t), 0 };
	static thread_local uint64_t host_slot;
	std::atomic<int> wrong{ 0 }, away{ 0 }, ended_away{ 0 };
	auto body = [&](uint64_t tag) {
		// The kernel's thread id: pthread_self is declared const, and a compiler may
		// keep it across the yields.
		long home = syscall(SYS_gettid);
		ptemu_thread *me = ptemu_thread_register(h.m, "yielder");
		uint64_t on_stack = tag;
		*static_cast<uint64_t *>(ptemu_thread_local(&key, &host_slot)) = tag;
		for (int i = 0; i < 2000; i++) {
			ptemu_sched_yield();
			if (ptemu_current() != me || on_stack != tag ||
			    *static_cast<uint64_t *>(ptemu_thread_local(&key, &host_slot)) != tag)
				wrong++;
			if (syscall(SYS_gettid) != home)
				away++;
		}
		ptemu_thread_unregister();
		if (syscall(SYS_gettid) != home)
			ended_away++;
	};
	std::vector<std::thread> ts;
	for (uint64_t i = 0; i < 4; i++) {
		ts.emplace_back(body, 100 + i);
		ptemu_sched_wait_threads(h.m, 2 + (unsigned)i);
	}
	ptemu_sched_start(h.m);
	for (auto &t : ts)
		t.join();
	ptemu_sched_destroy(h.m, nullptr, nullptr);
	EXPECT_EQ(wrong.load(), 0);
	EXPECT_GT(away.load(), 1000) << "passes should run threads on the passer's host thread";
	EXPECT_EQ(ended_away.load(), 0);
	EXPECT_EQ(h.violations(), 0u) << h.describe();
}

// Two threads take two locks in opposite order, yielding in between: the scheduler sees
// that neither can run and reports a deadlock naming what each waits for.
TEST(DetScheduler, ConstructedDeadlockIsReportedNotHung)
{
	// Kept alive on purpose: the deadlocked threads park on it forever.
	auto *h = new MachineHolder("arm64");
	static ptemu_spinlock l1, l2;
	ptemu_spin_init(&l1, LOCK_CLASS_PTL);
	ptemu_spin_init(&l2, LOCK_CLASS_PTL);
	ptemu_sched_config sc{};
	sc.seed = 1;
	sc.max_steps = 1000;
	ASSERT_EQ(ptemu_sched_create(h->m, &sc), 0);
	auto body = [h](ptemu_spinlock *first, ptemu_spinlock *second, const char *name) {
		ptemu_thread_register(h->m, name);
		spin_lock(first);
		ptemu_sched_yield();
		spin_lock_nested(second);
		ADD_FAILURE() << name << " got both locks";
	};
	std::thread a(body, &l1, &l2, "a"), b;
	ptemu_sched_wait_threads(h->m, 2);
	b = std::thread(body, &l2, &l1, "b");
	ptemu_sched_wait_threads(h->m, 3);
	ptemu_sched_start(h->m);
	for (int i = 0; i < 1000 && !ptemu_sched_deadlocked(h->m); i++)
		std::this_thread::sleep_for(std::chrono::milliseconds(10));
	ASSERT_TRUE(ptemu_sched_deadlocked(h->m));
	EXPECT_EQ(h->count(VIOLATION_HANG), 1u);
	std::string msg = h->describe();
	EXPECT_NE(msg.find("deadlock"), std::string::npos) << msg;
	EXPECT_NE(msg.find("a waits for ptl"), std::string::npos) << msg;
	EXPECT_NE(msg.find("b waits for ptl"), std::string::npos) << msg;
	a.detach();
	b.detach();
}

// PCT at depth 1 on arm64, seed 7: no change points, so every switch is a window
// preemption. An owner and a walker thread write their marks into `log` in the order they
// run.
struct MarkedPct {
	MachineHolder h{"arm64"};
	std::mutex mu;
	std::string log;

	void put(char c)
	{
		std::lock_guard<std::mutex> g(mu);
		log += c;
	}
	bool seen(char c)
	{
		std::lock_guard<std::mutex> g(mu);
		return log.find(c) != std::string::npos;
	}
	int count(const char *marks) const
	{
		int n = 0;
		for (size_t at = log.find(marks); at != std::string::npos; at = log.find(marks, at + 1))
			n++;
		return n;
	}
	// The owner registers first, so it is thread 1 after the RCU thread.
	void run(const std::function<void()> &owner, const std::function<void()> &walker)
	{
		ptemu_sched_config sc{};
		sc.seed = 7;
		sc.strategy = PTEMU_SCHED_PCT;
		sc.pct_depth = 1;
		sc.max_steps = 1000000;
		ASSERT_EQ(ptemu_sched_create(h.m, &sc), 0);
		std::thread o([&] {
			ptemu_thread_register(h.m, "owner");
			owner();
			ptemu_thread_unregister();
		});
		ptemu_sched_wait_threads(h.m, 2);
		std::thread w([&] {
			ptemu_thread_register(h.m, "walker");
			walker();
			ptemu_thread_unregister();
		});
		ptemu_sched_wait_threads(h.m, 3);
		ptemu_sched_start(h.m);
		o.join();
		w.join();
		ptemu_sched_destroy(h.m, nullptr, nullptr);
	}
};

// PCT explores a long window (a collapse from its copy to its retract): a window point on
// a table that another thread's open long window names always preempts, one on any other
// table about 1 time in 64. A preemption shows as the owner's entry between the walker's
// marks around its window point.
TEST(DetScheduler, WindowPointsOnTheTablesOfALongWindowPreemptFarMoreOften)
{
	MarkedPct pct;
	const uint64_t named = 0x5000, other = 0x9000;
	const int per_table = 256;
	std::atomic<bool> done{false};
	pct.run(
		[&] {
			ptemu_sched_long_window_begin(&named, 1);
			// Spinning: passed over while the walker can run, so it runs only when
			// the walker is preempted.
			while (!done.load()) {
				pct.put('L');
				ptemu_sched_spin_wait();
			}
			ptemu_sched_long_window_end();
		},
		[&] {
			for (int i = 0; i < 2 * per_table; i++) {
				pct.put(i < per_table ? '<' : '(');
				ptemu_sched_point_window(i < per_table ? named : other);
				pct.put('>');
			}
			done = true;
		});
	EXPECT_EQ(pct.count("<L"), per_table) << pct.log;
	EXPECT_LT(pct.count("(L"), per_table / 16) << pct.log;
}

// A removal sunk at its wide window waits for another thread's whole operation there (a
// zap that reclaims the table): that thread's window points on the table must not send the
// baton straight back, as they would while the remover's long window counts. The walker
// starts once the owner has sunk at its wide window; the owner resumes only when a walker
// point preempts at the ordinary 1 in 64, so after several of them, not after the first.
TEST(DetScheduler, AWideWindowSinkLetsTheOthersPointsOnItsTableRun)
{
	MarkedPct pct;
	const uint64_t table = 0x5000;
	pct.run(
		[&] {
			ptemu_sched_long_window_begin(&table, 1);
			pct.put('a');
			ptemu_sched_point_wide_window(table);
			pct.put('W');
			ptemu_sched_long_window_end();
		},
		[&] {
			// Asleep, not spinning: a spinner is passed over for the sunk owner.
			while (!pct.seen('a'))
				ptemu_sched_sleep(0);
			for (int i = 0; i < 256; i++) {
				pct.put('<');
				ptemu_sched_point_window(table);
				pct.put('>');
			}
		});
	const size_t w = pct.log.find('W');
	ASSERT_NE(w, std::string::npos) << pct.log;
	EXPECT_GT(std::count(pct.log.begin(), pct.log.begin() + (std::ptrdiff_t)w, '<'), 4) << pct.log;
}

// PCT's random hand-off (1 point in 512) goes to a thread that is not preempted: one sunk
// in its window would otherwise come back early and close the window before the racing
// side's operation is done. The owner sinks at the start of its long window; the walker's
// 4096 plain points make about 8 hand-offs, each of which would wake the owner 1 time in 2
// if the sunk were eligible.
TEST(DetScheduler, RandomHandOffsPassOverAThreadSunkInItsWindow)
{
	MarkedPct pct;
	const uint64_t table = 0x5000;
	pct.run(
		[&] {
			pct.put('b');
			ptemu_sched_long_window_begin(&table, 1);
			pct.put('W');
			ptemu_sched_long_window_end();
		},
		[&] {
			while (!pct.seen('b'))
				ptemu_sched_sleep(0);
			for (int i = 0; i < 4096; i++)
				ptemu_sched_point();
			pct.put('x');
		});
	EXPECT_LT(pct.log.find('x'), pct.log.find('W')) << pct.log;
}

namespace {

struct Recorder {
	std::vector<ptemu_sched_decision> switches;
	// A random-walk scheduler on m whose decisions this records.
	bool attach_random_walk(ptemu_machine *m, uint64_t seed)
	{
		ptemu_sched_config sc{};
		sc.seed = seed;
		sc.max_steps = 1000000;
		sc.on_event = on_event;
		sc.event_ctx = this;
		return ptemu_sched_create(m, &sc) == 0;
	}
	static void on_event(void *ctx, uint64_t kind, uint64_t a, uint64_t b)
	{
		if ((kind & 0xff) == PTEMU_EV_SWITCH)
			static_cast<Recorder *>(ctx)->switches.push_back({b, uint32_t(a & 0xffff)});
	}
};

ptemu_run_result det_run_16x16(const std::string &path, Recorder *rec, const Recorder *replay)
{
	ptemu_run_config cfg =
		guest_run_config(ptemu_arch_find("arm64"), "shmem-stress", path, 16, 16, 3600);
	cfg.seed = 3;
	cfg.khugepaged = true;
	cfg.phys_bytes = 512ull << 20;
	cfg.deterministic = true;
	cfg.sched.seed = 3;
	cfg.sched.strategy = PTEMU_SCHED_PCT;
	cfg.sched.max_steps = 2000;
	if (rec) {
		cfg.sched.on_event = Recorder::on_event;
		cfg.sched.event_ctx = rec;
	}
	if (replay) {
		cfg.sched.forced = replay->switches.data();
		cfg.sched.nforced = replay->switches.size();
	}
	return run_clean(cfg);
}

} // namespace

// The largest run the CLI accepts: 16 processes x 16 vCPUs, khugepaged and the RCU thread
// are 258 scheduled threads; it runs, and its recorded decisions replay to the same run.
TEST(DetGuestRun, SixteenBySixteenWithKhugepagedRunsAndReplays)
{
	std::string path = workload_image("arm64", "shmem-stress");
	Recorder rec;
	ptemu_run_result a = det_run_16x16(path, &rec, nullptr);
	ASSERT_FALSE(rec.switches.empty());
	uint32_t highest = 0;
	for (const auto &d : rec.switches)
		highest = std::max(highest, d.to);
	EXPECT_GT(highest, 64u);	// threads past the old limit did run
	ptemu_run_result b = det_run_16x16(path, nullptr, &rec);
	EXPECT_NE(a.digest, 0u);
	EXPECT_EQ(a.digest, b.digest);
	EXPECT_EQ(a.steps, b.steps);
}

namespace {

int g_callbacks_run;

void count_callback(ptemu_rcu_head *) { g_callbacks_run++; }

// In a child process, bounded by `seconds`: true when `body` returned in time.
template <class F> bool finishes_within(double seconds, F body)
{
	pid_t pid = fork();
	if (pid == 0) {
		body();
		_exit(testing::Test::HasFailure() ? 1 : 0);
	}
	int status = 0;
	for (double waited = 0; waited < seconds; waited += 0.01) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			return WIFEXITED(status) && WEXITSTATUS(status) == 0;
		std::this_thread::sleep_for(std::chrono::milliseconds(10));
	}
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	return false;
}

} // namespace

// The scheduler's teardown races its RCU thread: the last thread leaves right after a
// call_rcu, so that the RCU thread has the baton, runs the callback and goes back to wait
// for a grace period while ptemu_sched_destroy stops it. Whatever the order (the delay
// before the teardown sweeps the window), the teardown finishes.
TEST(DetScheduler, TeardownFinishesWhileTheRcuThreadGoesBackToWait)
{
	const int rounds = 1000;
	bool finished = finishes_within(60, [&] {
		// Never destroyed: the child ends with _exit, and liburcu's rcu_barrier in the
		// destructor would wait for a call_rcu thread that fork did not copy.
		MachineHolder &h = *new MachineHolder("arm64");
		for (int i = 0; i < rounds; i++) {
			ptemu_sched_config sc{};
			sc.seed = uint64_t(i);
			sc.max_steps = 1000;
			ASSERT_EQ(ptemu_sched_create(h.m, &sc), 0);
			std::atomic<bool> left{false};
			ptemu_rcu_head head{};
			std::thread w([&] {
				ptemu_thread_register(h.m, "caller");
				call_rcu(&head, count_callback);
				ptemu_thread_unregister();
				left = true;
			});
			ptemu_sched_wait_threads(h.m, 2);
			ptemu_sched_start(h.m);
			while (!left)
				;
			for (volatile int spin = 0; spin < (i * 7919) % 40000; spin++)
				;
			ptemu_sched_destroy(h.m, nullptr, nullptr);
			w.join();
		}
		EXPECT_EQ(g_callbacks_run, rounds);
	});
	EXPECT_TRUE(finished) << "ptemu_sched_destroy hung (or the callbacks did not all run)";
}

// ptemu_sched_sleep: the sleeper is not picked before its wake-up step while another thread
// runs, and when nobody else can run the clock skips to that step (an idle machine's time).
TEST(DetScheduler, ASleeperIsNotPickedBeforeItsWakeStepAndAnIdleClockSkipsToIt)
{
	MachineHolder h("arm64");
	Recorder rec;
	ASSERT_TRUE(rec.attach_random_walk(h.m, 5));
	const uint64_t nap = 1000;
	uint64_t woke_busy = 0, slept_busy = 0, woke_idle = 0, slept_idle = 0, busy_done = 0;
	int sleeper_id = -1;
	std::atomic<bool> busy_left{false};
	std::thread sleeper([&] {
		ptemu_thread_register(h.m, "sleeper");
		sleeper_id = ptemu_current()->sched_id;
		slept_busy = ptemu_sched_steps(h.m);
		ptemu_sched_sleep(nap);		// the busy thread runs meanwhile
		woke_busy = ptemu_sched_steps(h.m);
		while (!busy_left)
			ptemu_sched_yield();
		slept_idle = ptemu_sched_steps(h.m);
		ptemu_sched_sleep(nap);		// nobody else: the clock skips
		woke_idle = ptemu_sched_steps(h.m);
		ptemu_thread_unregister();
	});
	ptemu_sched_wait_threads(h.m, 2);
	std::thread busy([&] {
		ptemu_thread_register(h.m, "busy");
		for (int i = 0; i < 3000; i++)
			ptemu_sched_point();
		busy_done = ptemu_sched_steps(h.m);
		busy_left = true;
		ptemu_thread_unregister();
	});
	ptemu_sched_wait_threads(h.m, 3);
	ptemu_sched_start(h.m);
	sleeper.join();
	busy.join();
	ptemu_sched_destroy(h.m, nullptr, nullptr);
	EXPECT_GE(woke_busy, slept_busy + nap);
	EXPECT_LT(woke_busy, busy_done);	// woken while the busy thread still ran
	// Asleep, it is not picked at all (a loop of yields would be, at every other point):
	// the baton comes to it once, at its wake-up.
	long to_sleeper = std::count_if(rec.switches.begin(), rec.switches.end(), [&](const ptemu_sched_decision &d) {
		return d.step > slept_busy && d.step <= woke_busy && d.to == uint32_t(sleeper_id);
	});
	EXPECT_EQ(to_sleeper, 1) << "switches to the sleeper while it slept";
	EXPECT_EQ(woke_idle, slept_idle + 1 + nap);	// exactly: the one step of the sleep's own point
}

namespace {

std::atomic<int> g_grace_callbacks{0};

void grace_callback(ptemu_rcu_head *)
{
	g_grace_callbacks++;
}

} // namespace

// A reader leaving its section wakes the RCU thread only when the oldest callback's grace
// period is over: without callbacks the RCU thread (scheduler thread 0) is never switched
// to; with one queued inside a section, it runs once that section has ended.
TEST(DetScheduler, ReadersLeavingSectionsWakeTheRcuThreadOnlyForACallbackThatIsDue)
{
	MachineHolder h("arm64");
	Recorder rec;
	ASSERT_TRUE(rec.attach_random_walk(h.m, 9));
	ptemu_rcu_head head{};
	size_t first = 0, before_call = 0, at_unlock = 0;
	std::thread reader([&] {
		ptemu_thread_register(h.m, "reader");
		// The RCU thread may not have run yet: a yield hands it the baton, and it goes
		// to wait for a callback.
		ptemu_sched_yield();
		ptemu_sched_yield();
		first = rec.switches.size();
		for (int i = 0; i < 2000; i++) {
			rcu_read_lock();
			ptemu_sched_point();
			rcu_read_unlock();
			ptemu_sched_point();
		}
		before_call = rec.switches.size();
		rcu_read_lock();
		call_rcu(&head, grace_callback);
		for (int i = 0; i < 200; i++)
			ptemu_sched_point();
		at_unlock = rec.switches.size();
		rcu_read_unlock();
		while (!g_grace_callbacks)
			ptemu_sched_yield();
		ptemu_thread_unregister();
	});
	ptemu_sched_wait_threads(h.m, 2);
	ptemu_sched_start(h.m);
	reader.join();
	ptemu_sched_destroy(h.m, nullptr, nullptr);
	auto to_rcu = [&](size_t from, size_t to) {
		return std::count_if(rec.switches.begin() + long(from), rec.switches.begin() + long(to),
				     [](const ptemu_sched_decision &d) { return d.to == 0; });
	};
	EXPECT_EQ(to_rcu(first, before_call), 0) << "woken for nothing";
	EXPECT_EQ(to_rcu(before_call, at_unlock), 0) << "woken inside the grace period";
	EXPECT_GT(to_rcu(at_unlock, rec.switches.size()), 0);
	EXPECT_EQ(g_grace_callbacks.load(), 1);
}
