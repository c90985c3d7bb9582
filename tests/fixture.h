// Shared test scaffolding: a machine for a named model, with the test thread registered.
#pragma once

#include <algorithm>
#include <gtest/gtest.h>

#include <string>

#include <ptemu/arch.h>
#include <ptemu/check.h>
#include <ptemu/machine.h>
#include <ptemu/mm.h>
#include <ptemu/pgtable.h>
#include <ptemu/phys.h>
#include <ptemu/rcu.h>
#include <ptemu/run.h>
#include <ptemu/stats.h>
#include <ptemu/sync.h>

#include "../mmu/powerpc/book3s64.h"

namespace ptemu_test {

// powerpc's PTE fragments (mmu/powerpc/pgtable-frag.c) are never handed out again, and
// their page, the mm's fragment cursor until exit_mmap's pte_frag_destroy, goes only with
// its last fragment: a deferred fragment stays RCU_PENDING until then.
inline bool fragments_never_reused(const ptemu_arch *a)
{
	return a->pte_alloc_one == pte_fragment_alloc;
}

// The models the core tests run against.
// Installs the table in the pmd covering addr, then detaches it as retract does (pmd
// lock, ptl, pmdp_collapse_flush): the state pte_free_defer expects.
inline void attach_and_detach(mm_struct *mm, uint64_t table, uint64_t addr)
{
	pmd_t *pmdp = pmd_alloc_path(mm, addr);
	ASSERT_NE(pmdp, nullptr);
	uint64_t t = table;
	pmd_install(mm, pmdp, &t);
	ASSERT_EQ(t, 0u);
	ASSERT_EQ(check_table_state(mm->machine, table), TABLE_ATTACHED);
	pmd_t val = pmdp_get_lockless(pmdp);
	ptemu_spinlock *pml = pmd_lock(mm, pmdp);
	ptemu_spinlock *ptl = pte_lockptr(mm, &val);
	spin_lock(ptl);
	pmdp_collapse_flush(mm, addr, pmdp);
	mm_inc_pgtables(mm, -(int64_t)mm->machine->arch->pte_table_bytes);
	spin_unlock(ptl);
	spin_unlock(pml);
	ASSERT_EQ(check_table_state(mm->machine, table), TABLE_DETACHED);
}

// A TLB miss of a vCPU of mm at va: the model's hardware walk with its caches in memory
// (sparc64's TSB, ppc64-hash's HPT), every table read through the checker.
inline ptemu_walk_fault mmu_walk(mm_struct *mm, uint64_t va, ptemu_access acc, ptemu_walk_result *out)
{
	ptemu_walk_ctx ctx;
	ptemu_checked_walk_ctx(mm->machine, &ctx);
	ctx.mm = mm;
	return mm->machine->arch->hw_walk(&ctx, mm->pgd_pa, va, acc, out);
}

// ppc64-hash flushes only what hash_page entered in the HPT (PTEs with H_PAGE_HASHPTE,
// huge pmds with their slot arrays): a test that runs no vCPU hashes nothing, and the
// model then issues no invalidation at all.
inline bool flushes_only_hashed(const ptemu_arch *a)
{
	return a->pte_hash_flags != 0;
}

inline const char *const kModels[] = {"arm64", "arm64-39", "s390", "arm-lpae", "sparc64", "ppc64-radix",
					"ppc64-hash"};

#ifdef PTEMU_WORKLOAD_DIR
// The built guest image of a workload for a model.
inline std::string workload_image(const char *arch, const char *workload)
{
	return std::string(PTEMU_WORKLOAD_DIR) + "/" + ptemu_arch_find(arch)->isa.workload_dir + "/" +
	       workload + ".elf";
}
#endif

// A guest run of a built workload image: P processes of V vCPUs for at most `seconds`.
// The config points into `path`, which must outlive the run.
inline ptemu_run_config guest_run_config(const ptemu_arch *arch, const char *workload,
					 const std::string &path, unsigned procs, unsigned vcpus,
					 double seconds)
{
	ptemu_run_config cfg{};
	cfg.arch = arch;
	cfg.image_path = path.c_str();
	cfg.workload = workload;
	cfg.procs = procs;
	cfg.vcpus = vcpus;
	cfg.seconds = seconds;
	return cfg;
}

// Deterministic mode as the guest and stress tests run it: the seed decides the schedule
// too; PCT of depth 3 over 200,000 steps unless told otherwise. Works on any config with
// `deterministic` and `sched` (ptemu_run_config, ptemu_pt_stress_config).
template <class Config>
void make_deterministic(Config &cfg, uint64_t seed, ptemu_sched_strategy strategy = PTEMU_SCHED_PCT,
			unsigned depth = 3, uint64_t max_steps = 200000)
{
	cfg.deterministic = true;
	cfg.sched.seed = seed;
	cfg.sched.strategy = strategy;
	cfg.sched.pct_depth = depth;
	cfg.sched.max_steps = max_steps;
}

class MachineHolder {
      public:
	explicit MachineHolder(const char *arch, enum ptemu_injection inject = INJECT_NONE,
			       enum ptemu_check_mode mode = PTEMU_CHECK_CONTINUE,
			       uint64_t bytes = 0)
	{
		ptemu_machine_config cfg{};
		cfg.arch = ptemu_arch_find(arch);
		// 64 MiB, or the 8 PMDs the machine needs at least (ppc64-hash's are 16 MiB).
		cfg.phys_bytes = bytes ? bytes : cfg.arch ? std::max<uint64_t>(64ull << 20, 8 * ptemu_pmd_size(cfg.arch)) : 0;
		cfg.check_mode = mode;
		cfg.inject = inject;
		char err[256] = "";
		m = ptemu_machine_create(&cfg, err, sizeof(err));
		if (!m)
			ADD_FAILURE() << "machine for " << arch << ": " << err;
		else
			ptemu_thread_register(m, "test");
	}
	~MachineHolder()
	{
		if (!m)
			return;
		ptemu_thread_unregister();
		rcu_barrier();
		ptemu_machine_destroy(m);
	}
	MachineHolder(const MachineHolder &) = delete;
	MachineHolder &operator=(const MachineHolder &) = delete;

	const ptemu_arch *arch() const { return m->arch; }
	uint64_t violations() const { return check_violation_count(m); }
	uint64_t count(ptemu_violation_kind k) const { return check_kind_count(m, k); }
	uint64_t stat(ptemu_stat s) const { return ptemu_stat_get(&m->stats, s); }
	std::string describe() const
	{
		size_t n;
		const ptemu_violation *v = check_violations(m, &n);
		std::string out;
		for (size_t i = 0; i < n && i < 8; i++)
			out += std::string(ptemu_violation_name(v[i].kind)) + ": " + v[i].message + "\n";
		return out;
	}

	ptemu_machine *m = nullptr;
};

// A machine with one mm, and a pmd slot for a fixed address.
class MmHolder : public MachineHolder {
      public:
	explicit MmHolder(const char *arch, enum ptemu_injection inject = INJECT_NONE,
			  enum ptemu_check_mode mode = PTEMU_CHECK_CONTINUE)
	    : MachineHolder(arch, inject, mode)
	{
		if (!m)
			return;
		mm = mm_alloc(m);
		addr = ptemu_pmd_size(m->arch) * 5 + 7 * ptemu_page_size(m->arch);
		pmd = pmd_alloc_path(mm, addr);
	}
	~MmHolder()
	{
		if (mm)
			mm_destroy(mm);
	}

	// What exit_mmap does first (powerpc: the fragment cursor goes), so that a page whose
	// fragments are all freed can go too.
	void arch_exit_mmap()
	{
		if (m->arch->arch_exit_mmap)
			m->arch->arch_exit_mmap(mm);
	}
	uint64_t pte_level() const { return ptemu_pte_level(m->arch); }
	uint64_t pmd_level() const { return ptemu_pmd_level(m->arch); }
	uint64_t table_of_pmd() const
	{
		uint64_t t = 0;
		pmd_kind(pmdp_get_lockless(pmd), &t);
		return t;
	}
	// Installs a fresh table in the pmd and returns its address.
	uint64_t install_table()
	{
		EXPECT_EQ(__pte_alloc(mm, pmd), 0);
		return table_of_pmd();
	}
	// Detaches the table as retract does: pmd lock, ptl, pmdp_collapse_flush.
	uint64_t detach_table()
	{
		pmd_t val = pmdp_get_lockless(pmd);
		uint64_t table = table_of_pmd();
		ptemu_spinlock *pml = pmd_lock(mm, pmd);
		ptemu_spinlock *ptl = pte_lockptr(mm, &val);
		spin_lock(ptl);
		pmdp_collapse_flush(mm, addr, pmd);
		mm_inc_pgtables(mm, -(int64_t)m->arch->pte_table_bytes);
		spin_unlock(ptl);
		spin_unlock(pml);
		return table;
	}
	pte_t leaf_pte(uint64_t pfn) const
	{
		ptemu_leaf l{pfn, PTEMU_PROT_READ | PTEMU_PROT_WRITE | PTEMU_PTE_YOUNG};
		return __pte(m->arch->mk_pte(l));
	}
	int rcu_depth() const { return ptemu_current()->rcu_depth; }

	mm_struct *mm = nullptr;
	uint64_t addr = 0;
	pmd_t *pmd = nullptr;
};

inline std::string ModelName(const testing::TestParamInfo<const char *> &info)
{
	std::string s = info.param;
	for (char &c : s)
		if (c == '-')
			c = '_';
	return s;
}

} // namespace ptemu_test
