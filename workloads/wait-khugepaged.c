/* wait-khugepaged (for tests): every vCPU waits for two full khugepaged passes, once, and
 * returns. With a long --scan-sleep-ms the wait outlasts the watchdog, whose hang report
 * must then say which syscall each vCPU is in. The khugepaged thread starts after the
 * vCPUs: until it exists the wait fails at once, and is tried again.
 */
#include "lib/guest.h"

int guest_main(long vcpu, long nvcpus, long proc, long nprocs);

int guest_main(long vcpu, long nvcpus, long proc, long nprocs)
{
	(void)vcpu, (void)nvcpus, (void)proc, (void)nprocs;
	while (sys_wait_khugepaged() == -PTEMU_ENOSYS && !sys_should_stop())
		sys_yield();
	return 0;
}
