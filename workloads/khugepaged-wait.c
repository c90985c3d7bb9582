/* khugepaged-wait (tests): vCPU 0 of every process maps a PMD of shmem (key 80), asks for
 * MADV_HUGEPAGE and at once waits for khugepaged's next full scan, as a guest written like
 * the selftests' khugepaged.c does first thing. Other vCPUs return at once.
 *
 * Oracle: with --khugepaged on, madvise and wait_khugepaged both return 0; otherwise the
 * process dies (exit 2) with "khugepaged-wait: <call> failed: <errno>" on the log. */
#include "lib/guest.h"

#define SHM_KEY 80

int guest_main(long vcpu, long nvcpus, long proc, long nprocs);

int guest_main(long vcpu, long nvcpus, long proc, long nprocs)
{
	static const char ok[] = "khugepaged-wait: ok\n";
	unsigned long pmd = (unsigned long)sys_param(PTEMU_PARAM_pmd_size);
	long fd, r;
	void *p;

	(void)nvcpus, (void)proc, (void)nprocs;
	if (vcpu)
		return 0;
	fd = sys_shm_open(SHM_KEY, pmd);
	if (sys_failed(fd))
		die("khugepaged-wait: shm_open", fd);
	r = sys_mmap(0, pmd, PTEMU_PROT_READ | PTEMU_PROT_WRITE, PTEMU_MAP_SHARED, fd, 0);
	if (sys_failed(r))
		die("khugepaged-wait: mmap", r);
	p = (void *)r;
	r = sys_madvise(p, pmd, PTEMU_MADV_HUGEPAGE);
	if (r)
		die("khugepaged-wait: madvise(MADV_HUGEPAGE)", r);
	r = sys_wait_khugepaged();
	if (r)
		die("khugepaged-wait: wait_khugepaged", r);
	sys_write(ok, sizeof(ok) - 1);
	return 0;
}
