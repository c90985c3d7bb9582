/* Address spaces. This layer holds what the page-table core needs of an mm; VMAs and the
 * system calls come with the guest-execution layer. */
#ifndef PTEMU_MM_H
#define PTEMU_MM_H

#include <stdint.h>

#include <ptemu/list.h>
#include <ptemu/sync.h>

#ifdef __cplusplus
extern "C" {
#endif

struct ptemu_machine;

/* What the models keep per mm for pages shared between tables (s390's pgtable_list under
 * context.lock; powerpc's fragment cursor). */
struct mm_context {
	struct ptemu_spinlock lock;
	struct list_head pgtable_list;
	uint64_t pte_frag;	/* next never-used fragment, 0 when none */
};

struct mm_struct {
	struct ptemu_machine *machine;
	int id;
	uint64_t pgd_pa;
	struct ptemu_rwsem mmap_lock;
	struct ptemu_spinlock page_table_lock;
	int64_t pgtables_bytes;		/* atomic: attached tables at every level */
	int mm_users;			/* atomic: 0 once exiting */
	struct mm_context context;
};

/* NULL on OOM. */
struct mm_struct *mm_alloc(struct ptemu_machine *m);
/* Frees every table below the root and the root (free_pgtables at exit), then the mm.
 * Leaf pages are not touched: this layer maps none of its own. */
void mm_destroy(struct mm_struct *mm);

static inline void mm_inc_pgtables(struct mm_struct *mm, int64_t bytes)
{
	__atomic_fetch_add(&mm->pgtables_bytes, bytes, __ATOMIC_RELAXED);
}
static inline int64_t mm_pgtables_bytes(const struct mm_struct *mm)
{
	return __atomic_load_n(&mm->pgtables_bytes, __ATOMIC_RELAXED);
}

#ifdef __cplusplus
}
#endif
#endif
