/* wild-access (for tests): one write syscall, then a store to 0x10, which no mapping
 * covers. The host must end the vCPU there (a fault it cannot resolve).
 *
 * Oracle: the line "wild-access: storing to 0x10" appears and nothing after it. Should
 * the store complete, the guest reports a data mismatch at 0x10 (expected 0 = "never
 * here", got 1), says so in the log, tries a store near the top of the address space, and
 * returns 1.
 */
#include "lib/guest.h"

int guest_main(long vcpu, long nvcpus, long proc, long nprocs);

int guest_main(long vcpu, long nvcpus, long proc, long nprocs)
{
	static const char msg[] = "wild-access: storing to 0x10\n";
	static const char bad[] = "wild-access: FAIL: the store to 0x10 completed\n";
	volatile unsigned long *p;
	uptr a = 0x10;

	(void)vcpu, (void)nvcpus, (void)proc, (void)nprocs;
	sys_write(msg, sizeof(msg) - 1);
	__asm__ volatile("" : "+r"(a));	/* an address the compiler cannot reason about */
	p = (volatile unsigned long *)a;
	*p = 1;

	sys_report(PTEMU_REPORT_data_mismatch, (const void *)a, 0, 1);
	sys_write(bad, sizeof(bad) - 1);
	a = (uptr)0 - 0x10000;	/* top of the address space, page aligned for any page size */
	__asm__ volatile("" : "+r"(a));
	*(volatile unsigned long *)a = 1;
	return 1;
}
