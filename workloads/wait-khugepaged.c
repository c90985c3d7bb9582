/* wait-khugepaged (for tests): every vCPU waits for two full khugepaged passes, once, and
 * returns. With a long --scan-sleep-ms the wait outlasts the watchdog, whose hang report
 * must then say which syscall each vCPU is in.
 */
#include "lib/guest.h"

int guest_main(long vcpu, long nvcpus, long proc, long nprocs);

int guest_main(long vcpu, long nvcpus, long proc, long nprocs)
{
	(void)vcpu, (void)nvcpus, (void)proc, (void)nprocs;
	sys_wait_khugepaged();
	return 0;
}
