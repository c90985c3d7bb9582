/* mm_struct lifetime and the teardown of its page tables. */
#include <stdlib.h>

#include <ptemu/machine.h>
#include <ptemu/mm.h>
#include <ptemu/pgtable.h>

static int next_mm_id;

struct mm_struct *mm_alloc(struct ptemu_machine *m)
{
	struct mm_struct *mm = calloc(1, sizeof(*mm));

	if (!mm)
		return NULL;
	mm->machine = m;
	mm->pgd_pa = ptemu_upper_table_alloc(m, 0);
	if (!mm->pgd_pa) {
		free(mm);
		return NULL;
	}
	mm->id = __atomic_fetch_add(&next_mm_id, 1, __ATOMIC_RELAXED);
	ptemu_rwsem_init(&mm->mmap_lock, LOCK_CLASS_MMAP);
	ptemu_spin_init(&mm->page_table_lock, LOCK_CLASS_PML);
	ptemu_spin_init(&mm->context.lock, LOCK_CLASS_PGTABLE_LIST);
	INIT_LIST_HEAD(&mm->context.pgtable_list);
	mm->pgtables_bytes = m->arch->table_bytes[0];
	mm->mm_users = 1;
	return mm;
}

/* free_pgtables at exit: nothing else can reach these tables any more (kernel-spec 1.8),
 * so they are cleared and freed without ptl and without waiting for RCU. */
static void free_level(struct mm_struct *mm, uint64_t table, unsigned level)
{
	struct ptemu_machine *m = mm->machine;
	const struct ptemu_arch *a = m->arch;
	unsigned n = a->table_bytes[level] / a->entry_bytes;

	for (unsigned i = 0; i < n; i++) {
		uint64_t slot = table + (uint64_t)i * a->entry_bytes;
		uint64_t next;

		if (a->classify(level, ptemu_entry_load(m, slot), &next) != PTEMU_ENTRY_TABLE)
			continue;
		if (level == ptemu_pmd_level(a)) {
			pmd_clear(ptemu_slot_ptr(m, slot));
			mm_inc_pgtables(mm, -(int64_t)a->pte_table_bytes);
			pte_free(mm, next);
			continue;
		}
		free_level(mm, next, level + 1);
		ptemu_entry_store(m, slot, a->none_entry(level));
		mm_inc_pgtables(mm, -(int64_t)a->table_bytes[level + 1]);
		ptemu_upper_table_free(m, next, level + 1);
	}
}

void mm_destroy(struct mm_struct *mm)
{
	struct ptemu_machine *m = mm->machine;

	__atomic_store_n(&mm->mm_users, 0, __ATOMIC_RELEASE);
	free_level(mm, mm->pgd_pa, 0);
	if (m->arch->mm_destroy_context)
		m->arch->mm_destroy_context(mm);
	ptemu_upper_table_free(m, mm->pgd_pa, 0);
	ptemu_rwsem_destroy(&mm->mmap_lock);
	free(mm);
}
