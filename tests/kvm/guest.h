/* SPDX-License-Identifier: MIT */
/*
 * A minimal long-mode machine for the KVM tests and bench/vm.c: one "system"
 * slot at GPA 0 holding page tables (identity map of the first GUEST_MAP_GIB
 * GiB with 2 MiB user pages), a GDT with kernel and user segments, a TSS, an
 * IDT, a data page and the code; a vCPU whose registers enter that code at CPL0
 * or CPL3 (IOPL 3, so CPL3 code can do port I/O).
 *
 * Uses only the public API; returns -errno instead of asserting so that the
 * benchmark can use it too.
 */
#ifndef VMMU_TEST_KVM_GUEST_H
#define VMMU_TEST_KVM_GUEST_H

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libvmmu/vm.h>

/* Guest physical layout of the system slot (slot 0). */
#define GUEST_SYS_SIZE  (2ULL << 20)
#define GUEST_PML4      0x1000ULL
#define GUEST_PDPT      0x2000ULL
#define GUEST_PD        0x3000ULL /* 1 GiB per PD page; GUEST_MAP_GIB pages from here */
#define GUEST_GDT       0x8000ULL
#define GUEST_IDT       0x9000ULL
#define GUEST_TSS       0xa000ULL
#define GUEST_DATA      0xb000ULL /* a page for host <-> guest variables */
#define GUEST_CODE      0x10000ULL
#define GUEST_STACK_TOP 0x200000ULL
#define GUEST_MAP_GIB   4         /* GVA == GPA for [0, 4 GiB) */

#define SEL_KCODE 0x08
#define SEL_KDATA 0x10
#define SEL_UDATA 0x1b
#define SEL_UCODE 0x23
#define SEL_TSS   0x28

/* Guest code blobs from guest.S. */
extern const char guest_hlt_start[], guest_hlt_end[];
extern const char guest_io_start[], guest_io_end[];
extern const char guest_dirty_start[], guest_dirty_end[];
extern const char guest_notify_start[], guest_notify_end[];
extern const char guest_stride_start[], guest_stride_end[];
extern const char guest_pf_start[], guest_pf_end[], guest_pf_handler[];

struct guest {
	struct vmmu_vm *vm;
	struct vmmu_vcpu *vcpu;
	struct vmmu_guestmem sys;
	uint8_t *mem; /* host view of the system slot */
};

/* Exit 77 with the reason when /dev/kvm cannot be opened (tests only). */
static inline int guest_kvm_open_error(void)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	close(fd);
	return 0;
}

/* Tests: exit 77 (SKIP) with the reason when /dev/kvm cannot be opened. */
static inline void guest_skip_without_kvm(void)
{
	int err = guest_kvm_open_error();

	if (err) {
		printf("SKIP: /dev/kvm cannot be opened: %s\n", strerror(-err));
		fflush(stdout);
		exit(77);
	}
}

/* Tests: exit 77 (SKIP) with the reason when the library has no guest walker (no VMMU_CAP_TRANSLATE). */
static inline void guest_skip_without_walker(void)
{
	struct vmmu_vm_caps caps = { .size = sizeof(caps) };
	struct vmmu_vm *vm;

	if (vmmu_vm_create(&vm, "kvm", NULL) || vmmu_vm_get_caps(vm, &caps))
		exit(1);
	vmmu_vm_destroy(vm);
	if (!(caps.flags & VMMU_CAP_TRANSLATE)) {
		printf("SKIP: this library was built without the guest page walker (src/paging.c)\n");
		fflush(stdout);
		exit(77);
	}
}

static inline uint64_t *guest_u64(struct guest *g, uint64_t gpa)
{
	return (uint64_t *)(g->mem + gpa);
}

static inline void guest_segment(struct vmmu_segment *s, uint16_t sel, uint8_t type, int cpl, bool code)
{
	*s = (struct vmmu_segment){
		.base = 0, .limit = 0xffffffff, .selector = sel, .type = type, .present = 1,
		.dpl = (uint8_t)cpl, .db = code ? 0 : 1, .s = 1, .l = code ? 1 : 0, .g = 1,
	};
}

/* Write the tables and descriptors into the system slot. */
static inline void guest_build_tables(struct guest *g)
{
	uint64_t *pml4 = guest_u64(g, GUEST_PML4), *pdpt = guest_u64(g, GUEST_PDPT);
	uint64_t *gdt = guest_u64(g, GUEST_GDT);
	const uint64_t flags = 0x7; /* P | W | U */

	pml4[0] = GUEST_PDPT | flags;
	for (uint64_t i = 0; i < GUEST_MAP_GIB; i++) {
		uint64_t *pd = guest_u64(g, GUEST_PD + i * 0x1000);

		pdpt[i] = (GUEST_PD + i * 0x1000) | flags;
		for (uint64_t j = 0; j < 512; j++)
			pd[j] = ((i << 30) + (j << 21)) | flags | (1ULL << 7); /* PS */
	}
	gdt[0] = 0;
	gdt[1] = 0x00af9b000000ffffULL; /* kernel code64 */
	gdt[2] = 0x00cf93000000ffffULL; /* kernel data */
	gdt[3] = 0x00cff3000000ffffULL; /* user data, DPL 3 */
	gdt[4] = 0x00affb000000ffffULL; /* user code64, DPL 3 */
	/* 64-bit available TSS at GUEST_TSS, limit 0x67 (16-byte descriptor). */
	gdt[5] = 0x67 | ((GUEST_TSS & 0xffffff) << 16) | (0x89ULL << 40) | ((GUEST_TSS >> 24 & 0xff) << 56);
	gdt[6] = GUEST_TSS >> 32;
	/* TSS.RSP0: where a CPL3 -> CPL0 interrupt switches its stack. */
	memcpy(g->mem + GUEST_TSS + 4, &(uint64_t){ GUEST_STACK_TOP - 0x8000 }, 8);
}

/* IDT vector @vec: a 64-bit interrupt gate (DPL 0) to @handler in the kernel code segment. */
static inline void guest_set_idt_gate(struct guest *g, int vec, uint64_t handler)
{
	uint64_t *gate = guest_u64(g, GUEST_IDT + (uint64_t)vec * 16);

	gate[0] = (handler & 0xffff) | ((uint64_t)SEL_KCODE << 16) | (0x8eULL << 40) |
		  ((handler >> 16 & 0xffff) << 48);
	gate[1] = handler >> 32;
}

/* Registers to enter @entry at @cpl in long mode with paging. */
static inline int guest_set_cpu(struct guest *g, uint64_t entry, int cpl)
{
	struct vmmu_sregs s;
	struct vmmu_regs r = { 0 };
	int ret = vmmu_vcpu_get_sregs(g->vcpu, &s);

	if (ret)
		return ret;
	if (cpl) {
		guest_segment(&s.cs, SEL_UCODE, 11, 3, true);
		guest_segment(&s.ss, SEL_UDATA, 3, 3, false);
	} else {
		guest_segment(&s.cs, SEL_KCODE, 11, 0, true);
		guest_segment(&s.ss, SEL_KDATA, 3, 0, false);
	}
	s.ds = s.es = s.fs = s.gs = s.ss;
	s.tr = (struct vmmu_segment){ .base = GUEST_TSS, .limit = 0x67, .selector = SEL_TSS, .type = 11,
				      .present = 1 };
	s.ldt = (struct vmmu_segment){ .unusable = 1, .type = 2, .present = 0 };
	s.gdt = (struct vmmu_dtable){ .base = GUEST_GDT, .limit = 7 * 8 - 1 };
	s.idt = (struct vmmu_dtable){ .base = GUEST_IDT, .limit = 0xfff };
	s.cr0 = 0x80050033; /* PG | AM | WP | NE | ET | MP | PE */
	s.cr3 = GUEST_PML4;
	s.cr4 = 0x20;       /* PAE */
	s.efer = 0xd00;     /* NXE | LMA | LME */
	ret = vmmu_vcpu_set_sregs(g->vcpu, &s);
	if (ret)
		return ret;
	r.rip = entry;
	r.rsp = GUEST_STACK_TOP;
	r.rflags = 0x2 | (cpl ? 0x3000 : 0); /* IOPL 3 for CPL3 port I/O */
	return vmmu_vcpu_set_regs(g->vcpu, &r);
}

/* The guests' arguments: rdi, rsi, rdx, rbx, r8 (see guest.S). */
static inline int guest_set_args(struct guest *g, uint64_t rdi, uint64_t rsi, uint64_t rdx, uint64_t rbx,
				 uint64_t r8)
{
	struct vmmu_regs r;
	int ret = vmmu_vcpu_get_regs(g->vcpu, &r);

	if (ret)
		return ret;
	r.rdi = rdi;
	r.rsi = rsi;
	r.rdx = rdx;
	r.rbx = rbx;
	r.r8 = r8;
	return vmmu_vcpu_set_regs(g->vcpu, &r);
}

/* A VM with the system slot, the code copied to GUEST_CODE and one vCPU at @cpl. */
static inline int guest_create(struct guest *g, const struct vmmu_vm_options *opts, const char *code_start,
			       const char *code_end, int cpl)
{
	int ret;

	memset(g, 0, sizeof(*g));
	ret = vmmu_vm_create(&g->vm, "kvm", opts);
	if (ret)
		return ret;
	ret = vmmu_guestmem_init(&g->sys, GUEST_SYS_SIZE, VMMU_GUESTMEM_DEFAULT);
	if (ret)
		goto fail;
	g->mem = g->sys.hva;
	guest_build_tables(g);
	memcpy(g->mem + GUEST_CODE, code_start, (size_t)(code_end - code_start));
	ret = vmmu_vm_memslot_add(g->vm, 0, 0, GUEST_SYS_SIZE, g->mem, 0);
	if (!ret)
		ret = vmmu_vcpu_create(g->vm, 0, &g->vcpu);
	if (!ret)
		ret = guest_set_cpu(g, GUEST_CODE, cpl);
	if (!ret)
		return 0;
fail:
	vmmu_vm_destroy(g->vm);
	vmmu_guestmem_finish(&g->sys);
	memset(g, 0, sizeof(*g));
	return ret;
}

static inline void guest_destroy(struct guest *g)
{
	vmmu_vm_destroy(g->vm);
	vmmu_guestmem_finish(&g->sys);
	memset(g, 0, sizeof(*g));
}

#endif
