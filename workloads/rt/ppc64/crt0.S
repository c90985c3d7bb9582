/* ptemu guest runtime, ppc64 (big-endian, ELFv2 ABI).
 * Start: r3-r6 = vcpu, nvcpus, proc, nprocs; r1 16-byte aligned inside this vCPU's stack.
 * _start loads the TOC pointer r2 itself (the host need not) and pushes the 32-byte
 * minimal frame (back chain 0) in which guest_main saves LR.
 * System call: sc, number r0, arguments r3-r8, result r3 (CR0.SO ignored). */
	.abiversion 2
	.text
	.balign 4
	.globl	_start
	.type	_start, @function
_start:
	lis	2, .TOC.@ha
	addi	2, 2, .TOC.@l
	clrrdi	1, 1, 4
	li	0, 0
	stdu	0, -32(1)		/* back chain 0: end of the frame chain */
	mtlr	0
	bl	guest_main		/* r3 = its result */
	nop
	li	0, 0			/* PTEMU_SYS_exit(result) */
	sc
	li	0, 1			/* PTEMU_SYS_exit_group, should exit ever return */
	sc
1:	b	1b
	.size	_start, . - _start

/* long ptemu_syscall6(long nr, long a0, long a1, long a2, long a3, long a4, long a5):
 * nr, a0-a5 in r3-r9. Uses no TOC: a single entry point. */
	.balign 4
	.globl	ptemu_syscall6
	.type	ptemu_syscall6, @function
ptemu_syscall6:
	mr	0, 3
	mr	3, 4
	mr	4, 5
	mr	5, 6
	mr	6, 7
	mr	7, 8
	mr	8, 9
	sc
	blr
	.size	ptemu_syscall6, . - ptemu_syscall6

	.section .note.GNU-stack, "", @progbits
