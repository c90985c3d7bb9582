/* early-exit (for tests): every vCPU of a process but the last returns at once; the last
 * maps, touches and unmaps a few pages until the run ends. The process must live until
 * its last vCPU is out, and its address space must be torn down exactly once, although
 * the others are gone before it may even have started.
 *
 * Oracle: the last vCPU reads back what it wrote (a mismatch is reported); the host sees
 * no use of a freed mm and frees every page.
 */
#include "lib/guest.h"

int guest_main(long vcpu, long nvcpus, long proc, long nprocs);

int guest_main(long vcpu, long nvcpus, long proc, long nprocs)
{
	unsigned long psize = (unsigned long)sys_param(PTEMU_PARAM_page_size);
	unsigned long len = 4 * psize;

	(void)proc, (void)nprocs;
	if (vcpu != nvcpus - 1)
		return 0;
	while (!sys_should_stop()) {
		long a = sys_mmap(NULL, len, PTEMU_PROT_READ | PTEMU_PROT_WRITE,
				  PTEMU_MAP_PRIVATE | PTEMU_MAP_ANONYMOUS, -1, 0);

		if (sys_failed(a))
			return 1;
		for (unsigned long off = 0; off < len; off += psize)
			stw((volatile unsigned long *)(a + off), off + 1);
		for (unsigned long off = 0; off < len; off += psize) {
			unsigned long got = ldw((volatile unsigned long *)(a + off));

			if (got != off + 1)
				sys_report(PTEMU_REPORT_data_mismatch, (void *)(a + off), off + 1, got);
		}
		sys_munmap((void *)a, len);
	}
	return 0;
}
