#include <linux/futex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <ptemu/machine.h>
#include <ptemu/phys.h>
#include <ptemu/sync.h>
#include <ptemu/tlb.h>

#include "internal.h"

_Noreturn void ptemu_bug(const char *fmt, ...)
{
	va_list ap;

	fputs("ptemu: internal error: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	abort();
}

void *ptemu_array_reserve(void *arr, size_t *cap, size_t n, size_t elem, size_t first,
			  const char *what)
{
	if (n < *cap)
		return arr;
	size_t want = *cap ? 2 * *cap : first;
	void *grown = realloc(arr, want * elem);

	if (!grown)
		ptemu_bug("out of host memory for %s", what);
	*cap = want;
	return grown;
}

void ptemu_futex_wait(int *word, int val)
{
	syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

void ptemu_futex_wake(int *word, int n)
{
	syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

void ptemu_note_once(struct ptemu_machine *m, enum ptemu_note note, const char *fmt, ...)
{
	va_list ap;

	if (!m->log || __atomic_fetch_or(&m->noted, (unsigned)note, __ATOMIC_RELAXED) & note)
		return;
	flockfile(m->log);
	fputs("ptemu: ", m->log);
	va_start(ap, fmt);
	vfprintf(m->log, fmt, ap);
	va_end(ap);
	funlockfile(m->log);
}

struct ptemu_machine *ptemu_current_machine(void)
{
	struct ptemu_thread *t = ptemu_current();

	if (!t)
		ptemu_bug("a thread used the model without ptemu_thread_register");
	return t->machine;
}

const char *ptemu_protocol_name(enum ptemu_protocol p)
{
	return p == PTEMU_PROTOCOL_LEGACY ? "legacy" : "lockless";
}

int ptemu_protocol_from_name(const char *name)
{
	if (!strcmp(name, "lockless"))
		return PTEMU_PROTOCOL_LOCKLESS;
	if (!strcmp(name, "legacy"))
		return PTEMU_PROTOCOL_LEGACY;
	return -1;
}

struct ptemu_machine *ptemu_machine_create(const struct ptemu_machine_config *cfg, char *err,
					   size_t errlen)
{
	struct ptemu_machine *m;

	if (!cfg->arch) {
		snprintf(err, errlen, "no architecture model given");
		return NULL;
	}
	if (cfg->inject >= INJECT_COUNT || !ptemu_injection_applies(cfg->inject, cfg->arch)) {
		snprintf(err, errlen, "injection not offered by model %s", cfg->arch->name);
		return NULL;
	}
	if (cfg->protocol == PTEMU_PROTOCOL_LEGACY && cfg->features.reclaim_empty_tables) {
		snprintf(err, errlen, "%s", PTEMU_RECLAIM_NEEDS_LOCKLESS);
		return NULL;
	}
	if (!cfg->arch->rcu_table_free && cfg->features.reclaim_empty_tables) {
		snprintf(err, errlen, "--reclaim-empty-tables on model %s: %s", cfg->arch->name,
			 PTEMU_RECLAIM_NEEDS_RCU);
		return NULL;
	}
	if (cfg->tlb_entries && (cfg->tlb_entries < PTEMU_TLB_MIN_ENTRIES || cfg->tlb_entries > PTEMU_TLB_MAX_ENTRIES ||
				 (cfg->tlb_entries & (cfg->tlb_entries - 1)))) {
		snprintf(err, errlen, "%u TLB entries: a power of two from %u to %u", cfg->tlb_entries,
			 PTEMU_TLB_MIN_ENTRIES, PTEMU_TLB_MAX_ENTRIES);
		return NULL;
	}
	m = calloc(1, sizeof(*m));
	if (!m) {
		snprintf(err, errlen, "out of host memory");
		return NULL;
	}
	m->arch = cfg->arch;
	m->log = cfg->log;
	m->inject = cfg->inject;
	m->protocol = cfg->protocol;
	m->features = cfg->features;
	m->tlb_entries = cfg->tlb_entries;
	m->phys = phys_create(m, cfg->phys_bytes ? cfg->phys_bytes : PTEMU_DEFAULT_PHYS_BYTES, err,
			      errlen);
	if (!m->phys) {
		free(m);
		return NULL;
	}
	m->checker = check_create(m, cfg->check_mode);
	if (!m->checker) {
		snprintf(err, errlen, "out of host memory for the checker");
		phys_destroy(m->phys);
		free(m);
		return NULL;
	}
	if (m->arch->machine_init && m->arch->machine_init(m, err, errlen)) {
		check_destroy(m->checker);
		phys_destroy(m->phys);
		free(m);
		return NULL;
	}
	return m;
}

void ptemu_machine_destroy(struct ptemu_machine *m)
{
	if (!m)
		return;
	if (m->arch->machine_destroy)
		m->arch->machine_destroy(m);
	check_destroy(m->checker);
	phys_destroy(m->phys);
	free(m);
}
