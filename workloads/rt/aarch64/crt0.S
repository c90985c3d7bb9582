/* ptemu guest runtime, aarch64 (see workloads/README.md and include/ptemu_abi.h).
 * Start: x0-x3 = vcpu, nvcpus, proc, nprocs; sp 16-byte aligned inside this vCPU's stack.
 * System call: svc #0, number x8, arguments x0-x5, result x0. */
	.text
	.balign 4
	.globl	_start
	.type	_start, %function
_start:
	mov	x29, #0			/* end of the frame chain */
	mov	x30, #0
	bl	guest_main		/* x0 = its result */
	mov	x8, #0			/* PTEMU_SYS_exit(result) */
	svc	#0
	mov	x8, #1			/* PTEMU_SYS_exit_group, should exit ever return */
	svc	#0
1:	b	1b
	.size	_start, . - _start

/* long ptemu_syscall6(long nr, long a0, long a1, long a2, long a3, long a4, long a5) */
	.balign 4
	.globl	ptemu_syscall6
	.type	ptemu_syscall6, %function
ptemu_syscall6:
	mov	x8, x0
	mov	x0, x1
	mov	x1, x2
	mov	x2, x3
	mov	x3, x4
	mov	x4, x5
	mov	x5, x6
	svc	#0
	ret
	.size	ptemu_syscall6, . - ptemu_syscall6

	.section .note.GNU-stack, "", %progbits
