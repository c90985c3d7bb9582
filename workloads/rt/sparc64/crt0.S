/* ptemu guest runtime, sparc64 (SPARC V9, 64-bit ABI, stack bias 2047).
 * Start: %o0-%o3 = vcpu, nvcpus, proc, nprocs; %sp (%o6) = stack address - 2047, 16-byte
 * aligned once unbiased, with the 176-byte register save + argument area above it
 * reserved by the host. _start executes no `save`: it runs in the window the host
 * set up, and guest_main's `save` is the first one (README.md: "sparc64 call depth").
 * Unicorn 2.1.1 starts the CPU unprivileged with CANSAVE = CANRESTORE = 0, so that first
 * `save` already traps (INTR 0x80; `restore` 0xc0): the host has to emulate them, and
 * the guest cannot set the window registers itself (wrpr traps with 0x11).
 * System call: ta 0x6d, number %g1, arguments %o0-%o5, result %o0.
 * No memory access sits in a delay slot (the host restarts a faulting instruction with
 * NPC = PC + 4); C code is compiled with the delay-slot filler off for the same reason. */
	.text
	.balign 4
	.globl	_start
	.type	_start, #function
_start:
	call	guest_main		/* %o0 = its result */
	 nop
	mov	0, %g1			/* PTEMU_SYS_exit(result) */
	ta	0x6d
	mov	1, %g1			/* PTEMU_SYS_exit_group, should exit ever return */
	ta	0x6d
1:	ba	1b
	 nop
	.size	_start, . - _start

/* long ptemu_syscall6(long nr, long a0, long a1, long a2, long a3, long a4, long a5):
 * nr, a0-a4 in %o0-%o5; a5 is the 7th argument, at %sp + 2047 + 176. A leaf: no save. */
	.balign 4
	.globl	ptemu_syscall6
	.type	ptemu_syscall6, #function
ptemu_syscall6:
	mov	%o0, %g1
	mov	%o1, %o0
	mov	%o2, %o1
	mov	%o3, %o2
	mov	%o4, %o3
	mov	%o5, %o4
	ldx	[%sp + 2223], %o5
	ta	0x6d
	retl
	 nop
	.size	ptemu_syscall6, . - ptemu_syscall6

	.section .note.GNU-stack, "", @progbits
