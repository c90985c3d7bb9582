// Lock wrappers: what the checker learns from each acquisition.
#include <sched.h>

#include <thread>

#include "fixture.h"

using namespace ptemu_test;

namespace {

struct Locks : MachineHolder {
	Locks() : MachineHolder("arm64")
	{
		ptemu_spin_init(&pml, LOCK_CLASS_PML);
		ptemu_spin_init(&ptl, LOCK_CLASS_PTL);
		ptemu_spin_init(&ptl2, LOCK_CLASS_PTL);
		ptemu_rwsem_init(&mmap_lock, LOCK_CLASS_MMAP);
		ptemu_mutex_init(&folio, LOCK_CLASS_FOLIO);
	}
	~Locks()
	{
		ptemu_rwsem_destroy(&mmap_lock);
		ptemu_mutex_destroy(&folio);
	}
	ptemu_spinlock pml, ptl, ptl2;
	ptemu_rwsem mmap_lock;
	ptemu_mutex folio;
};

} // namespace

TEST(Sync, SleepingLockUnderSpinlockIsSleepInAtomic)
{
	Locks l;
	spin_lock(&l.ptl);
	mutex_lock(&l.folio);
	mutex_unlock(&l.folio);
	spin_unlock(&l.ptl);
	EXPECT_EQ(l.count(VIOLATION_SLEEP_IN_ATOMIC), 1u) << l.describe();
}

TEST(Sync, SleepingLockInsideRcuIsSleepInAtomic)
{
	Locks l;
	rcu_read_lock();
	down_read(&l.mmap_lock);
	up_read(&l.mmap_lock);
	rcu_read_unlock();
	EXPECT_EQ(l.count(VIOLATION_SLEEP_IN_ATOMIC), 1u) << l.describe();
}

TEST(Sync, KernelOrderIsClean)
{
	Locks l;
	down_read(&l.mmap_lock);
	mutex_lock(&l.folio);
	spin_lock(&l.pml);
	spin_lock(&l.ptl);
	EXPECT_TRUE(ptemu_holds_lock(&l.ptl));
	spin_unlock(&l.ptl);
	spin_unlock(&l.pml);
	mutex_unlock(&l.folio);
	up_read(&l.mmap_lock);
	EXPECT_FALSE(ptemu_holds_lock(&l.ptl));
	EXPECT_EQ(l.violations(), 0u) << l.describe();
}

TEST(Sync, PmdLockAfterPtlIsLockOrder)
{
	Locks l;
	spin_lock(&l.ptl);
	spin_lock(&l.pml);
	spin_unlock(&l.pml);
	spin_unlock(&l.ptl);
	EXPECT_EQ(l.count(VIOLATION_LOCK_ORDER), 1u) << l.describe();
}

TEST(Sync, FolioLockUnderMmapLockOnlyInThatOrder)
{
	Locks l;
	mutex_lock(&l.folio);
	down_read(&l.mmap_lock);  // mmap_lock inside a folio lock: inverted
	up_read(&l.mmap_lock);
	mutex_unlock(&l.folio);
	EXPECT_EQ(l.count(VIOLATION_LOCK_ORDER), 1u) << l.describe();
}

TEST(Sync, TrylockIsExemptFromOrder)
{
	Locks l;
	spin_lock(&l.ptl);
	ASSERT_TRUE(spin_trylock(&l.pml));
	spin_unlock(&l.pml);
	spin_unlock(&l.ptl);
	EXPECT_EQ(l.violations(), 0u) << l.describe();
}

TEST(Sync, SecondPtlNeedsTheNestedAnnotation)
{
	Locks l;
	spin_lock(&l.ptl);
	spin_lock_nested(&l.ptl2);
	spin_unlock(&l.ptl2);
	spin_unlock(&l.ptl);
	EXPECT_EQ(l.violations(), 0u) << l.describe();
	spin_lock(&l.ptl);
	spin_lock(&l.ptl2);
	spin_unlock(&l.ptl2);
	spin_unlock(&l.ptl);
	EXPECT_EQ(l.count(VIOLATION_LOCK_ORDER), 1u) << l.describe();
}

TEST(Sync, WaitingForAGracePeriodInsideRcuIsReportedNotHung)
{
	Locks l;
	rcu_read_lock();
	synchronize_rcu();
	rcu_barrier();
	rcu_read_unlock();
	EXPECT_EQ(l.count(VIOLATION_SLEEP_IN_ATOMIC), 2u) << l.describe();
}

TEST(Sync, UnbalancedRcuUnlockIsReported)
{
	Locks l;
	rcu_read_unlock();
	EXPECT_EQ(l.count(VIOLATION_RCU_IMBALANCE), 1u);
	EXPECT_EQ(ptemu_current()->rcu_depth, 0);
}

TEST(Sync, SpinlockExcludesOtherThreads)
{
	Locks l;
	static int counter;
	counter = 0;
	auto body = [](void *arg) -> void * {
		auto *lk = static_cast<Locks *>(arg);
		ptemu_thread_register(lk->m, "incr");
		for (int i = 0; i < 20000; i++) {
			spin_lock(&lk->ptl);
			int v = counter;
			counter = v + 1;
			spin_unlock(&lk->ptl);
		}
		ptemu_thread_unregister();
		return nullptr;
	};
	pthread_t t[3];
	for (auto &x : t)
		pthread_create(&x, nullptr, body, &l);
	for (auto &x : t)
		pthread_join(x, nullptr);
	EXPECT_EQ(counter, 60000);
}

// Free-running, the sleeping locks' waiters sleep on the lock word: writers exclude
// everyone, readers see no writer's half-done update, and every waiter is woken.
TEST(Sync, SleepingLocksExcludeAndWakeTheirSleepers)
{
	Locks l;
	static int a, b, mutexed, torn;
	a = b = mutexed = torn = 0;
	auto body = [](void *arg) -> void * {
		auto *lk = static_cast<Locks *>(arg);
		ptemu_thread_register(lk->m, "rw");
		for (int i = 0; i < 3000; i++) {
			if (i % 3 == 0) {
				down_write(&lk->mmap_lock);
				a++;
				sched_yield();	// a window for readers that must not open
				b++;
				up_write(&lk->mmap_lock);
			} else {
				down_read(&lk->mmap_lock);
				if (a != b)
					__atomic_add_fetch(&torn, 1, __ATOMIC_RELAXED);
				up_read(&lk->mmap_lock);
			}
			mutex_lock(&lk->folio);
			int v = mutexed;
			sched_yield();
			mutexed = v + 1;
			mutex_unlock(&lk->folio);
		}
		ptemu_thread_unregister();
		return nullptr;
	};
	pthread_t t[4];
	for (auto &x : t)
		pthread_create(&x, nullptr, body, &l);
	for (auto &x : t)
		pthread_join(x, nullptr);
	EXPECT_EQ(a, 4000);
	EXPECT_EQ(b, 4000);
	EXPECT_EQ(torn, 0);
	EXPECT_EQ(mutexed, 12000);
	EXPECT_EQ(l.violations(), 0u) << l.describe();
}

// ptemu_thread_local: one zeroed instance per registered thread and key, the same at every
// call; a thread that never registered gets the host instance it passes.
TEST(Sync, ThreadLocalStorageIsTheModelThreads)
{
	Locks l;
	static ptemu_thread_local_key key = { sizeof(uint64_t[8]), 0 };
	static thread_local uint64_t host[8];
	auto *mine = static_cast<uint64_t *>(ptemu_thread_local(&key, host));
	ASSERT_NE(mine, nullptr);
	EXPECT_NE(mine, host);
	for (int i = 0; i < 8; i++)
		EXPECT_EQ(mine[i], 0u);
	mine[3] = 42;
	EXPECT_EQ(ptemu_thread_local(&key, host), mine);
	void *other = nullptr, *unregistered = nullptr, *unregistered_host = nullptr;
	std::thread([&] {
		ptemu_thread_register(l.m, "other");
		auto *p = static_cast<uint64_t *>(ptemu_thread_local(&key, host));
		other = p;
		EXPECT_EQ(p[3], 0u);
		ptemu_thread_unregister();
	}).join();
	std::thread([&] {
		unregistered = ptemu_thread_local(&key, host);
		unregistered_host = host;
	}).join();
	EXPECT_NE(other, mine);
	EXPECT_EQ(unregistered, unregistered_host);
	EXPECT_EQ(mine[3], 42u);
}
