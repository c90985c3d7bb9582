/* Core-private declarations shared between core/ files. Not for mmu/ or tests. */
#ifndef PTEMU_CORE_INTERNAL_H
#define PTEMU_CORE_INTERNAL_H

#include <stdint.h>

struct ptemu_machine;

void ptemu_rcu_register_thread(void);
void ptemu_rcu_unregister_thread(void);

/* Fatal misuse of the API by a caller (not a protocol violation): message and abort. */
_Noreturn void ptemu_bug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The calling thread's machine; a thread that never registered is a caller bug. */
struct ptemu_machine *ptemu_current_machine(void);

#endif
