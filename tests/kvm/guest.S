/* SPDX-License-Identifier: MIT */
/*
 * Tiny guests for the KVM tests and bench/vm.c. Each is position independent:
 * the host copies the bytes between NAME_start and NAME_end into guest memory
 * and sets the registers named in the comment. Long mode, 64-bit code.
 */
	.text
	.code64

/* CPL0: halt (an emulated instruction on this machine, fine for one). */
	.globl guest_hlt_start, guest_hlt_end
guest_hlt_start:
	hlt
	jmp guest_hlt_start
guest_hlt_end:

/*
 * CPL3, IOPL 3: rdi = value, rsi = MMIO address.
 *   out %al -> port 0x10; 8-byte MMIO write of rdi to [rsi]; MMIO read of [rsi]
 *   into rax; out %eax -> port 0x11 (so the host sees what its read returned).
 */
	.globl guest_io_start, guest_io_end
guest_io_start:
	mov %rdi, %rax
	out %al, $0x10
	mov %rdi, (%rsi)
	mov (%rsi), %rax
	out %eax, $0x11
	jmp guest_io_start
guest_io_end:

/*
 * CPL3: the dirty-log workload. rdi = GVA of the test memory, rsi = number of
 * pages - 1 (a power of two minus one), rdx = GVA of the 8-byte iteration
 * number, rbx = random seed (non-zero), r8 = writes between syncs.
 * Forever: r8 times, write the current iteration number to the first 8 bytes
 * of a random page; then out %al -> port 0x12 (sync).
 */
	.globl guest_dirty_start, guest_dirty_end
guest_dirty_start:
1:	mov %r8, %rcx
2:	mov %rbx, %rax		/* xorshift64 */
	shl $13, %rax
	xor %rax, %rbx
	mov %rbx, %rax
	shr $7, %rax
	xor %rax, %rbx
	mov %rbx, %rax
	shl $17, %rax
	xor %rax, %rbx
	mov %rbx, %rax
	and %rsi, %rax
	shl $12, %rax
	add %rdi, %rax
	mov (%rdx), %r10
	mov %r10, (%rax)
	dec %rcx
	jnz 2b
	out %al, $0x12
	jmp 1b
guest_dirty_end:

/*
 * CPL3: notifier writes. rdi = MMIO address, dx = port, esi = first value.
 * Forever: 4-byte MMIO write of esi to [rdi]; out %eax(=esi) -> port dx;
 * out %al -> port 0x12 (sync); esi += 1.
 */
	.globl guest_notify_start, guest_notify_end
guest_notify_start:
	mov %esi, (%rdi)
	mov %esi, %eax
	out %eax, %dx
	out %al, $0x12
	inc %esi
	jmp guest_notify_start
guest_notify_end:

/*
 * CPL3: strided writes, for bench/vm.c. rdi = GVA of the first page, rsi =
 * stride in bytes, r8 = number of writes (> 0), rdx = GVA of the 8-byte value.
 * Forever: write the value at rdi, rdi + rsi, ... (r8 writes); out %al -> port 0x12.
 */
	.globl guest_stride_start, guest_stride_end
guest_stride_start:
1:	mov %rdi, %rax
	mov %r8, %rcx
2:	mov (%rdx), %r10
	mov %r10, (%rax)
	add %rsi, %rax
	dec %rcx
	jnz 2b
	out %al, $0x12
	jmp 1b
guest_stride_end:

/*
 * CPL3 accesses under test tables, with a CPL0 #PF handler that records what
 * the CPU reported. rdi = GVA of the access list, rsi = number of entries (> 0).
 * Entry (32 bytes): gva, kind (0 read, 1 write, 2 fetch), error code (the
 * guest writes -1 first; the handler the #PF error code), CR2 (handler).
 * Writes store 0xc3... (RET opcodes) so that fetched pages stay executable
 * RETs. At the end: out %al -> port 0x12, then spin.
 * guest_pf_handler is the IDT vector-14 entry (interrupt gate, CPL0); it
 * resumes at the address in r15 (the next access).
 */
	.globl guest_pf_start, guest_pf_end, guest_pf_handler
guest_pf_start:
	mov %rsp, %r13
	movabs $0xc3c3c3c3c3c3c3c3, %rax
1:	mov (%rdi), %rbx
	mov 8(%rdi), %rcx
	lea 16(%rdi), %r14
	movq $-1, (%r14)
	lea 2f(%rip), %r15
	cmp $1, %rcx
	je 3f
	cmp $2, %rcx
	je 4f
	mov (%rbx), %rdx
	jmp 2f
3:	mov %rax, (%rbx)
	jmp 2f
4:	call *%rbx
2:	mov %r13, %rsp		/* a faulting call left its return address behind */
	add $32, %rdi
	dec %rsi
	jnz 1b
	out %al, $0x12
5:	jmp 5b
guest_pf_handler:
	pop %rdx		/* error code */
	mov %rdx, (%r14)
	mov %cr2, %rdx
	mov %rdx, 8(%r14)
	mov %r15, (%rsp)	/* return to the next access */
	iretq
guest_pf_end:

	.section .note.GNU-stack,"",@progbits
