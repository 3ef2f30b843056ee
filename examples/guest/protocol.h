/* SPDX-License-Identifier: MIT */
/*
 * The contract between vmmu-run and its built-in guest: guest-physical layout,
 * I/O ports and the parameter block. Included by the guest (freestanding) and
 * by vmmu-run. The guest runs in 64-bit mode at CPL3 with IOPL 3 from its first
 * instruction (vmmu-run sets that state up), with GVA == GPA.
 */
#ifndef VMMU_RUN_GUEST_PROTOCOL_H
#define VMMU_RUN_GUEST_PROTOCOL_H

/* Guest-physical (and virtual) layout. */
#define GUEST_PARAMS_GPA   0x1000ULL   /* struct guest_params, filled by the host */
#define GUEST_GDT_GPA      0x2000ULL   /* supervisor-only: GDT, TSS, page tables */
#define GUEST_TSS_GPA      0x3000ULL
#define GUEST_TABLES_GPA   0x10000ULL  /* page tables: [GUEST_TABLES_GPA, GUEST_IMAGE_GPA) */
#define GUEST_IMAGE_GPA    0x100000ULL /* the flat image is loaded and entered here */
#define GUEST_STACK_TOP    0x200000ULL /* the stack grows down from here, below the work area */
#define GUEST_WORK_GPA     0x200000ULL /* the dirtied work area: the rest of memory */

/* I/O ports (the guest uses them at CPL3 with IOPL 3). */
#define GUEST_PORT_SERIAL  0x3f8 /* out: a byte of console output (COM1 THR) */
#define GUEST_PORT_LSR     0x3fd /* in: COM1 line status; always "transmitter empty" */
#define GUEST_PORT_EXIT    0xf4  /* out (8 bit): the guest is done; the value is its exit status */
#define GUEST_PORT_TICK    0x510 /* in (32 bit): host status, see GUEST_TICK_*; the host may pace here */
#define GUEST_PORT_PASS    0x511 /* out (8 bit): a workload pass ended (an ioeventfd: no exit) */

/* The value read from GUEST_PORT_TICK. */
#define GUEST_TICK_EPOCH_MASK 0xffffu     /* bumped each time the guest resumes on a new VM */
#define GUEST_TICK_STOP       0x80000000u /* the host asks the guest to finish (verify and exit) */

#define GUEST_PARAMS_MAGIC 0x31534d5250554d56ULL /* "VMUPRMS1" */

/* Exit statuses of the guest. */
#define GUEST_STATUS_OK       0
#define GUEST_STATUS_BADPARAM 2
#define GUEST_STATUS_CORRUPT  3 /* its memory checksum did not match */

/* Filled by the host at GUEST_PARAMS_GPA before the first instruction. */
struct guest_params {
	unsigned long long magic;           /* GUEST_PARAMS_MAGIC */
	unsigned long long work_gva;        /* start of the work area */
	unsigned long long work_pages;      /* a power of two */
	unsigned long long passes;          /* workload passes; 0 = until GUEST_TICK_STOP */
	unsigned long long writes_per_pass; /* page writes per pass */
	unsigned long long writes_per_tick; /* page writes between reads of GUEST_PORT_TICK */
	unsigned long long seed;            /* xorshift seed, non-zero */
	unsigned long long fill;            /* non-zero: write every work page once before the passes */
};

#endif
