/* ptemu guest runtime, s390x (z/Architecture, 64-bit addressing: the host sets PSW
 * bits EA|BA). Start: r2-r5 = vcpu, nvcpus, proc, nprocs; r15 16-byte aligned inside this
 * vCPU's stack. _start allocates the 160-byte register save area the ELF ABI gives every
 * callee, so nothing is stored above the r15 the host chose.
 * System call: svc 0, number r1, arguments r2-r7, result r2. */
	.text
	.balign 8
	.globl	_start
	.type	_start, @function
_start:
	lghi	%r0, -16
	ngr	%r15, %r0		/* 16-byte aligned even if handed less */
	aghi	%r15, -160
	lghi	%r0, 0
	stg	%r0, 0(%r15)		/* back chain: end of the frame chain */
	brasl	%r14, guest_main	/* r2 = its result */
	lghi	%r1, 0			/* PTEMU_SYS_exit(result) */
	svc	0
	lghi	%r1, 1			/* PTEMU_SYS_exit_group, should exit ever return */
	svc	0
1:	j	1b
	.size	_start, . - _start

/* long ptemu_syscall6(long nr, long a0, long a1, long a2, long a3, long a4, long a5):
 * nr, a0-a3 in r2-r6; a4, a5 at 160(r15), 168(r15). r6, r7 are callee-saved: kept in
 * the caller's register save area (their ABI slots, 48(r15) and 56(r15)). */
	.balign 8
	.globl	ptemu_syscall6
	.type	ptemu_syscall6, @function
ptemu_syscall6:
	stmg	%r6, %r7, 48(%r15)
	lgr	%r1, %r2
	lgr	%r2, %r3
	lgr	%r3, %r4
	lgr	%r4, %r5
	lgr	%r5, %r6
	lg	%r6, 160(%r15)
	lg	%r7, 168(%r15)
	svc	0
	lmg	%r6, %r7, 48(%r15)
	br	%r14
	.size	ptemu_syscall6, . - ptemu_syscall6

	.section .note.GNU-stack, "", @progbits
