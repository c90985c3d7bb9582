/* ptemu guest runtime, arm (ARMv7-A, ARM state, EABI soft-float).
 * Start: r0-r3 = vcpu, nvcpus, proc, nprocs; sp 16-byte aligned inside this vCPU's stack.
 * System call: svc #0, number r7, arguments r0-r5, result r0. */
	.syntax	unified
	.arm
	.text
	.balign 4
	.globl	_start
	.type	_start, %function
_start:
	mov	fp, #0
	mov	lr, #0
	bl	guest_main		/* r0 = its result */
	mov	r7, #0			/* PTEMU_SYS_exit(result) */
	svc	#0
	mov	r7, #1			/* PTEMU_SYS_exit_group, should exit ever return */
	svc	#0
1:	b	1b
	.size	_start, . - _start

/* long ptemu_syscall6(long nr, long a0, long a1, long a2, long a3, long a4, long a5):
 * nr, a0-a2 in r0-r3; a3-a5 on the stack at [sp], [sp+4], [sp+8]. */
	.balign 4
	.globl	ptemu_syscall6
	.type	ptemu_syscall6, %function
ptemu_syscall6:
	push	{r4, r5, r7, lr}
	mov	r7, r0
	mov	r0, r1
	mov	r1, r2
	mov	r2, r3
	ldr	r3, [sp, #16]
	ldr	r4, [sp, #20]
	ldr	r5, [sp, #24]
	svc	#0
	pop	{r4, r5, r7, pc}
	.size	ptemu_syscall6, . - ptemu_syscall6

/* EABI division helpers (ARMv7-A has no divide instruction in ARM state on every core):
 * thin register shuffles around the C cores in divmod.c. */
	.balign 4
	.globl	__aeabi_uidiv
	.type	__aeabi_uidiv, %function
	.globl	__aeabi_uidivmod
	.type	__aeabi_uidivmod, %function
__aeabi_uidiv:
__aeabi_uidivmod:			/* r0 / r1 -> quotient r0, remainder r1 */
	push	{r4, lr}
	sub	sp, sp, #8
	mov	r2, sp
	bl	ptemu_udivmod32
	ldr	r1, [sp]
	add	sp, sp, #8
	pop	{r4, pc}
	.size	__aeabi_uidivmod, . - __aeabi_uidivmod
	.size	__aeabi_uidiv, . - __aeabi_uidiv

	.balign 4
	.globl	__aeabi_idiv
	.type	__aeabi_idiv, %function
	.globl	__aeabi_idivmod
	.type	__aeabi_idivmod, %function
__aeabi_idiv:
__aeabi_idivmod:
	push	{r4, lr}
	sub	sp, sp, #8
	mov	r2, sp
	bl	ptemu_sdivmod32
	ldr	r1, [sp]
	add	sp, sp, #8
	pop	{r4, pc}
	.size	__aeabi_idivmod, . - __aeabi_idivmod
	.size	__aeabi_idiv, . - __aeabi_idiv

	.balign 4
	.globl	__aeabi_uldivmod
	.type	__aeabi_uldivmod, %function
__aeabi_uldivmod:			/* r1:r0 / r3:r2 -> quotient r1:r0, remainder r3:r2 */
	push	{r4, lr}
	sub	sp, sp, #16
	add	r4, sp, #8
	str	r4, [sp]		/* 5th argument: where the remainder goes */
	bl	ptemu_udivmod64
	ldr	r2, [sp, #8]
	ldr	r3, [sp, #12]
	add	sp, sp, #16
	pop	{r4, pc}
	.size	__aeabi_uldivmod, . - __aeabi_uldivmod

	.balign 4
	.globl	__aeabi_ldivmod
	.type	__aeabi_ldivmod, %function
__aeabi_ldivmod:
	push	{r4, lr}
	sub	sp, sp, #16
	add	r4, sp, #8
	str	r4, [sp]
	bl	ptemu_sdivmod64
	ldr	r2, [sp, #8]
	ldr	r3, [sp, #12]
	add	sp, sp, #16
	pop	{r4, pc}
	.size	__aeabi_ldivmod, . - __aeabi_ldivmod

	.section .note.GNU-stack, "", %progbits
