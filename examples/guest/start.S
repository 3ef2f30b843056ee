/* SPDX-License-Identifier: MIT */
/*
 * Entry of the built-in guest. The host enters here in 64-bit mode at CPL3
 * with RSP at GUEST_STACK_TOP and RFLAGS.IOPL = 3; there is no kernel and no
 * IDT: a fault ends the guest with a triple fault, which vmmu-run reports.
 */
	.section .text.start, "ax"
	.code64
	.globl _start
_start:
	and $-16, %rsp
	call guest_main
	/* guest_main returns the exit status: hand it to the host. */
	out %al, $0xf4
1:	pause
	jmp 1b

	.section .note.GNU-stack,"",@progbits
