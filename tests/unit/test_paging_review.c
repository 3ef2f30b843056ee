/* SPDX-License-Identifier: MIT */
/*
 * Second reading of the walker against the SDM (vol. 3A ch. 4, vol. 3C ch. 29)
 * and the AMD APM (15.25). One small test per rule; every expected value is a
 * constant worked out by hand from the manuals (the derivation is in the
 * comment next to it), never computed by the walker or by the reference
 * model. Each case runs through both vmmu_walk() and ref_walk(), so a
 * misreading shared by the two fails here.
 *
 * Layout (guest RAM at GPA 0, 4 MiB): first-stage tables at 0x1000 (root),
 * 0x2000, 0x3000, 0x4000; data page at 0x5000; GVA 0 + offset 0x123 uses
 * index 0 at every level. EPT/NPT tables at 0x100000 and up map 0..2 MiB.
 *
 * Deliberate differences from strict hardware, left as they are (KVM does the same):
 * - A/D bits are written only when the whole walk succeeds; a CPU may already
 *   set A in upper entries of a walk that then faults (kvm-unit-tests allows both).
 * - Guest A/D writes in a 2-D walk are not checked against second-stage write
 *   permission (SDM: such writes are data writes for EPT); with EPT A/D off,
 *   guest table accesses are plain reads.
 * - When a permission and a protection-key violation coincide, PK is reported
 *   with P (KVM's permission_fault).
 * Differences from KVM in favour of the SDM:
 * - 32-bit 4 MiB PDEs: bits 20:(M-19) are reserved per MAXPHYADDR (capped at
 *   40); KVM hard-codes 21:17 (PSE-36 with M = 36) or 21:13.
 * Not modelled: AMD's PAE under NPT reads the PDPTEs from memory on every walk
 * (no PDPTE registers; how reserved PDPTE bits then fault is not checked here); this walker
 * always uses Intel's PDPTE registers.
 */
#include <errno.h>
#include <string.h>

#include "helpers.h"
#include "paging_ref.h"
#include <libvmmu/paging.h>

#define P  (1ULL << 0)
#define W  (1ULL << 1)
#define U  (1ULL << 2)
#define A  (1ULL << 5)
#define D  (1ULL << 6)
#define PS (1ULL << 7)
#define NX (1ULL << 63)
#define PWU (P | W | U)

#define T1 0x1000ULL
#define T2 0x2000ULL
#define T3 0x3000ULL
#define T4 0x4000ULL
#define DATA 0x5000ULL
#define OFF 0x123ULL

#define CR0 (VMMU_CR0_PG | VMMU_CR0_WP | 1)
#define LONG_EFER (VMMU_EFER_LME | VMMU_EFER_LMA | VMMU_EFER_NXE)

/* walk access shorthands */
#define RD  VMMU_WALK_READ
#define WR  VMMU_WALK_WRITE
#define FE  VMMU_WALK_FETCH
#define USR VMMU_WALK_USER
#define IMP VMMU_WALK_IMPLICIT

static struct ref_guest g;

static int setup(void **state)
{
	(void)state;
	return ref_guest_init(&g, 0, 4ULL << 20) ? -1 : 0;
}

static int teardown(void **state)
{
	(void)state;
	ref_guest_fini(&g);
	return 0;
}

static void clear_tables(void)
{
	memset(ref_guest_ptr(&g, 0), 0, 4ULL << 20);
}

static void set32(vmmu_gpa_t gpa, uint32_t v)
{
	memcpy(ref_guest_ptr(&g, gpa), &v, 4);
}

static struct vmmu_paging_regs long_regs(unsigned int maxphy)
{
	return (struct vmmu_paging_regs){ .cr0 = CR0, .cr3 = T1, .cr4 = VMMU_CR4_PAE, .efer = LONG_EFER,
					  .maxphyaddr = (uint8_t)maxphy, .flags = VMMU_PAGING_F_GBPAGES };
}

/* 4-level chain to DATA with the given entry bits (each entry also gets its next-table address). */
static void chain4(uint64_t l4, uint64_t l3, uint64_t l2, uint64_t l1)
{
	clear_tables();
	ref_set(&g, T1, T2 | l4);
	ref_set(&g, T2, T3 | l3);
	ref_set(&g, T3, T4 | l2);
	ref_set(&g, T4, DATA | l1);
}

/*
 * Walk @gva with @regs through both implementations and require @outcome and,
 * for OK the GPA, for #PF the error code. Memory is snapshotted so that both
 * start from the same tables.
 */
static void expect(const struct vmmu_paging_regs *regs, uint64_t gva, uint32_t access, int outcome, uint64_t value)
{
	static uint8_t snap[4 << 20];
	struct vmmu_paging *ctx = NULL;
	struct vmmu_walk_result res;
	struct ref_out ref;
	uint64_t pdptrs[4];

	memcpy(snap, ref_guest_ptr(&g, 0), sizeof(snap));
	assert_int_equal(vmmu_paging_create(&ctx, g.mem, regs), 0);
	assert_int_equal(vmmu_walk(ctx, gva, access, &res), outcome);
	if (outcome == VMMU_WALK_OK)
		assert_int_equal(res.gpa, value);
	else if (outcome == VMMU_WALK_PAGE_FAULT)
		assert_int_equal(res.error_code, value);
	vmmu_paging_destroy(ctx);

	memcpy(ref_guest_ptr(&g, 0), snap, sizeof(snap));
	/* the model takes the PAE PDPTE registers as loaded by MOV CR3 */
	memcpy(pdptrs, regs->pdptrs, sizeof(pdptrs));
	if (!(regs->flags & VMMU_PAGING_F_PDPTRS))
		memcpy(pdptrs, ref_guest_ptr(&g, regs->cr3 & 0xffffffe0ULL), sizeof(pdptrs));
	ref_walk(g.mem, regs, pdptrs, NULL, gva, access, &ref);
	assert_int_equal(ref.outcome, outcome);
	if (outcome == VMMU_WALK_OK)
		assert_int_equal(ref.gpa, value);
	else if (outcome == VMMU_WALK_PAGE_FAULT)
		assert_int_equal(ref.error_code, value);
	memcpy(ref_guest_ptr(&g, 0), snap, sizeof(snap));
}

/* ---- 1.2 reserved bits, 4-level (MAXPHYADDR 36) ---- */

static void test_rsvd_4level(void **state)
{
	struct vmmu_paging_regs r = long_regs(36);

	(void)state;
	/* PTE bit 36 = PA bit 36 >= M: reserved -> P|RSVD = 0x9 */
	chain4(PWU, PWU, PWU, PWU | (1ULL << 36));
	expect(&r, OFF, RD, VMMU_WALK_PAGE_FAULT, 0x9);
	/* bit 35 is an address bit: 0x8_0000_5123 */
	chain4(PWU, PWU, PWU, PWU | (1ULL << 35));
	expect(&r, OFF, RD, VMMU_WALK_OK, 0x800005123ULL);
	/* bit 51 reserved in a table entry too; a user write adds W|U: 0x9|0x2|0x4 = 0xf */
	chain4(PWU, PWU | (1ULL << 51), PWU, PWU);
	expect(&r, OFF, WR | USR, VMMU_WALK_PAGE_FAULT, 0xf);
	/* bits 58:52 are ignored (software-available) */
	chain4(PWU | (1ULL << 52), PWU | (1ULL << 58), PWU, PWU | (1ULL << 55));
	expect(&r, OFF, RD, VMMU_WALK_OK, DATA | OFF);
	/* PML4E bit 7 is reserved (Intel and AMD) */
	chain4(PWU | PS, PWU, PWU, PWU);
	expect(&r, OFF, RD, VMMU_WALK_PAGE_FAULT, 0x9);
	/* PML4E bit 8: ignored on Intel, reserved on AMD */
	chain4(PWU | (1ULL << 8), PWU, PWU, PWU);
	expect(&r, OFF, RD, VMMU_WALK_OK, DATA | OFF);
	r.flags |= VMMU_PAGING_F_AMD;
	expect(&r, OFF, RD, VMMU_WALK_PAGE_FAULT, 0x9);
	r.flags &= ~VMMU_PAGING_F_AMD;
	/* bit 8 (G) of a PTE is never reserved, on AMD either */
	chain4(PWU, PWU, PWU, PWU | (1ULL << 8));
	r.flags |= VMMU_PAGING_F_AMD;
	expect(&r, OFF, RD, VMMU_WALK_OK, DATA | OFF);
	r.flags &= ~VMMU_PAGING_F_AMD;
	/* XD with NXE=0 is reserved: 0x9 */
	chain4(PWU, PWU, PWU, PWU | NX);
	r.efer &= ~VMMU_EFER_NXE;
	expect(&r, OFF, RD, VMMU_WALK_PAGE_FAULT, 0x9);
	r.efer |= VMMU_EFER_NXE;
	expect(&r, OFF, RD, VMMU_WALK_OK, DATA | OFF);
}

static void test_rsvd_large_pages(void **state)
{
	struct vmmu_paging_regs r = long_regs(36);

	(void)state;
	/* 2 MiB PDE 0x200000: bit 12 is PAT (fine), bit 13 reserved */
	clear_tables();
	ref_set(&g, T1, T2 | PWU);
	ref_set(&g, T2, T3 | PWU);
	ref_set(&g, T3, 0x200000 | PWU | PS | (1ULL << 12));
	expect(&r, 0x12345, RD, VMMU_WALK_OK, 0x212345);
	ref_set(&g, T3, 0x200000 | PWU | PS | (1ULL << 13));
	expect(&r, 0x12345, RD, VMMU_WALK_PAGE_FAULT, 0x9);
	ref_set(&g, T3, 0x200000 | PWU | PS | (1ULL << 20));
	expect(&r, 0x12345, RD, VMMU_WALK_PAGE_FAULT, 0x9);
	/* 1 GiB PDPTE 0x40000000: bit 12 PAT fine, 29:13 reserved */
	ref_set(&g, T2, 0x40000000 | PWU | PS | (1ULL << 12));
	expect(&r, 0x1234567, RD, VMMU_WALK_OK, 0x41234567);
	ref_set(&g, T2, 0x40000000 | PWU | PS | (1ULL << 29));
	expect(&r, 0x1234567, RD, VMMU_WALK_PAGE_FAULT, 0x9);
	/* without 1 GiB pages, PS in a PDPTE is reserved */
	ref_set(&g, T2, 0x40000000 | PWU | PS);
	r.flags = 0;
	expect(&r, 0x1234567, RD, VMMU_WALK_PAGE_FAULT, 0x9);
}

/* ---- 32-bit paging ---- */

static struct vmmu_paging_regs regs32(unsigned int maxphy, bool pse)
{
	return (struct vmmu_paging_regs){ .cr0 = CR0, .cr3 = T1, .cr4 = pse ? VMMU_CR4_PSE : 0,
					  .maxphyaddr = (uint8_t)maxphy };
}

static void test_32bit_pse36(void **state)
{
	/* GVA 0x00401234: PDE index 1 (at T1 + 4), 4 MiB offset 0x1234 */
	const uint64_t gva = 0x00401234;
	struct vmmu_paging_regs r = regs32(36, true);

	(void)state;
	clear_tables();
	/* 4 MiB page at PA 0x5_00C0_0000: bits 31:22 = 0x00C00000, PA 34:32 = 5 in PDE bits 15:13 */
	set32(T1 + 4, 0x00C00000u | (5u << 13) | (uint32_t)(P | W | PS));
	expect(&r, gva, RD, VMMU_WALK_OK, 0x500C01234ULL);
	/* PDE bit 17 = PA bit 36 >= M (36): reserved, 0x9 */
	set32(T1 + 4, 0x00C00000u | (1u << 17) | (uint32_t)(P | W | PS));
	expect(&r, gva, RD, VMMU_WALK_PAGE_FAULT, 0x9);
	/* with M = 40 that bit is PA bit 36: 0x10_00C0_1234; bit 20 = PA bit 39 too */
	r.maxphyaddr = 40;
	expect(&r, gva, RD, VMMU_WALK_OK, 0x1000C01234ULL);
	set32(T1 + 4, 0x00C00000u | (1u << 20) | (uint32_t)(P | W | PS));
	expect(&r, gva, RD, VMMU_WALK_OK, 0x8000C01234ULL);
	/* bit 21 is always reserved */
	set32(T1 + 4, 0x00C00000u | (1u << 21) | (uint32_t)(P | W | PS));
	expect(&r, gva, RD, VMMU_WALK_PAGE_FAULT, 0x9);
	/* M = 32: bit 13 (PA bit 32) reserved */
	r.maxphyaddr = 32;
	set32(T1 + 4, 0x00C00000u | (1u << 13) | (uint32_t)(P | W | PS));
	expect(&r, gva, RD, VMMU_WALK_PAGE_FAULT, 0x9);
	/* 4 KiB PTEs and table PDEs have no reserved bits: PTE bit 7 (PAT) and 8 (G) are fine */
	set32(T1 + 4, (uint32_t)(T2 | P | W));
	set32(T2 + 4, (uint32_t)(DATA | P | W | PS | (1u << 8)));
	expect(&r, gva, RD, VMMU_WALK_OK, DATA | 0x234);
}

static void test_32bit_ps_ignored_without_pse(void **state)
{
	const uint64_t gva = 0x00401234;
	struct vmmu_paging_regs r = regs32(36, false);

	(void)state;
	clear_tables();
	/* CR4.PSE = 0: PDE bit 7 is ignored, the PDE points to a page table at T2 */
	set32(T1 + 4, (uint32_t)(T2 | P | W | PS));
	set32(T2 + 4, (uint32_t)(DATA | P | W));
	expect(&r, gva, RD, VMMU_WALK_OK, DATA | 0x234);
	/* with PSE the same PDE maps a 4 MiB page: bits 31:22 = 0, and T2's bit 13 is PA bit 32 */
	r.cr4 = VMMU_CR4_PSE;
	expect(&r, gva, RD, VMMU_WALK_OK, 0x100001234ULL);
	/* 32-bit paging: addresses are 32 bits; a high GVA is truncated */
	r.cr4 = 0;
	expect(&r, 0xABCD00000401234ULL, RD, VMMU_WALK_OK, DATA | 0x234);
}

/* ---- PAE ---- */

static struct vmmu_paging_regs regs_pae(unsigned int maxphy)
{
	return (struct vmmu_paging_regs){ .cr0 = CR0, .cr3 = T1, .cr4 = VMMU_CR4_PAE, .efer = VMMU_EFER_NXE,
					  .maxphyaddr = (uint8_t)maxphy };
}

static void test_pae_pdpte_load(void **state)
{
	struct vmmu_paging_regs r = regs_pae(36);
	struct vmmu_paging *ctx = NULL;
	struct vmmu_walk_result res;
	struct log_capture log;
	static const uint64_t bad[] = { 1ULL << 1, 1ULL << 2, 1ULL << 5, 1ULL << 6, 1ULL << 8, 1ULL << 36,
					1ULL << 62, 1ULL << 63 };

	(void)state;
	clear_tables();
	/* PDPTE bits 2:1, 8:5, 63 and 62:M are reserved: MOV CR3 would #GP */
	log_capture_start(&log);
	for (unsigned int i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ref_set(&g, T1, T2 | P | bad[i]);
		assert_int_equal(vmmu_paging_create(&ctx, g.mem, &r), -EINVAL);
	}
	log_capture_stop();
	/* bits 3, 4 (PWT, PCD) and 11:9 are allowed */
	ref_set(&g, T1, T2 | P | (1ULL << 3) | (1ULL << 4) | (7ULL << 9));
	assert_int_equal(vmmu_paging_create(&ctx, g.mem, &r), 0);
	vmmu_paging_destroy(ctx);
	/* a not-present PDPTE may hold anything */
	ref_set(&g, T1 + 8, ~1ULL);
	ref_set(&g, T1, T2 | P);
	ref_set(&g, T2, T3 | PWU);
	ref_set(&g, T3, DATA | PWU);
	assert_int_equal(vmmu_paging_create(&ctx, g.mem, &r), 0);
	/* GVA 0x40000000 uses PDPTE 1 (not present): #PF, P = 0, W from the access: 0x2 */
	assert_int_equal(vmmu_walk(ctx, 0x40000000, WR, &res), VMMU_WALK_PAGE_FAULT);
	assert_int_equal(res.error_code, 0x2);
	assert_int_equal(res.level, 3);
	/* the PDPTEs are registers: clearing PDPTE 0 in memory changes nothing until a reload */
	ref_set(&g, T1, 0);
	assert_int_equal(vmmu_walk(ctx, OFF, RD, &res), VMMU_WALK_OK);
	assert_int_equal(res.gpa, DATA | OFF);
	vmmu_paging_destroy(ctx);
}

static void test_pae_rsvd(void **state)
{
	struct vmmu_paging_regs r = regs_pae(36);

	(void)state;
	clear_tables();
	ref_set(&g, T1, T2 | P);
	ref_set(&g, T2, T3 | PWU);
	/* PAE PTE: 62:M reserved (bit 40 here), 58:52 too since M..62 covers them */
	ref_set(&g, T3, DATA | PWU | (1ULL << 40));
	expect(&r, OFF, RD, VMMU_WALK_PAGE_FAULT, 0x9);
	ref_set(&g, T3, DATA | PWU | (1ULL << 52));
	expect(&r, OFF, RD, VMMU_WALK_PAGE_FAULT, 0x9);
	/* XD allowed with NXE; reserved without */
	ref_set(&g, T3, DATA | PWU | NX);
	expect(&r, OFF, RD, VMMU_WALK_OK, DATA | OFF);
	r.efer = 0;
	expect(&r, OFF, RD, VMMU_WALK_PAGE_FAULT, 0x9);
	/* 2 MiB PDE: 20:13 reserved, 12 is PAT */
	r.efer = VMMU_EFER_NXE;
	ref_set(&g, T2, 0x200000 | PWU | PS | (1ULL << 12));
	expect(&r, 0x1234, RD, VMMU_WALK_OK, 0x201234);
	ref_set(&g, T2, 0x200000 | PWU | PS | (1ULL << 14));
	expect(&r, 0x1234, RD, VMMU_WALK_PAGE_FAULT, 0x9);
}

/* ---- canonical addresses ---- */

static void test_canonical(void **state)
{
	struct vmmu_paging_regs r = long_regs(46);

	(void)state;
	clear_tables();
	/* 4-level: bits 63:47 must equal bit 47 */
	expect(&r, 0x0000800000000000ULL, RD, VMMU_WALK_GP, 0);
	expect(&r, 0xFFFF7FFFFFFFFFFFULL, RD, VMMU_WALK_GP, 0);
	expect(&r, 0xFFFF800000000000ULL, RD, VMMU_WALK_PAGE_FAULT, 0x0);
	expect(&r, 0x00007FFFFFFFF000ULL, WR, VMMU_WALK_PAGE_FAULT, 0x2);
	/* LA57: bits 63:56 must equal bit 56 */
	r.cr4 |= VMMU_CR4_LA57;
	expect(&r, 0x0000800000000000ULL, RD, VMMU_WALK_PAGE_FAULT, 0x0);
	expect(&r, 0x0100000000000000ULL, RD, VMMU_WALK_GP, 0);
	expect(&r, 0xFF00000000000000ULL, RD, VMMU_WALK_PAGE_FAULT, 0x0);
	expect(&r, 0xFE00000000000000ULL, RD, VMMU_WALK_GP, 0);
}

/* ---- 1.5 I/D bit ---- */

static void test_fetch_bit(void **state)
{
	struct vmmu_paging_regs r = regs_pae(36);

	(void)state;
	clear_tables();
	ref_set(&g, T1, T2 | P); /* PDE at T2 not present */
	/* PAE with NXE: I/D set: 0x10 */
	expect(&r, OFF, FE, VMMU_WALK_PAGE_FAULT, 0x10);
	/* PAE without NXE or SMEP: no I/D */
	r.efer = 0;
	expect(&r, OFF, FE, VMMU_WALK_PAGE_FAULT, 0x0);
	/* SMEP alone turns it on */
	r.cr4 |= VMMU_CR4_SMEP;
	expect(&r, OFF, FE | USR, VMMU_WALK_PAGE_FAULT, 0x14);
	/* 32-bit paging: EFER.NXE does not count (no XD bit), SMEP does */
	r = regs32(36, false);
	r.efer = VMMU_EFER_NXE;
	expect(&r, OFF, FE, VMMU_WALK_PAGE_FAULT, 0x0);
	r.cr4 |= VMMU_CR4_SMEP;
	expect(&r, OFF, FE, VMMU_WALK_PAGE_FAULT, 0x10);
	/* 4-level with NXE: XD on the PTE blocks a fetch: P|U|F = 0x15 */
	r = long_regs(46);
	chain4(PWU, PWU, PWU, PWU | NX);
	expect(&r, OFF, FE | USR, VMMU_WALK_PAGE_FAULT, 0x15);
	/* XD on a non-leaf entry blocks it too (AND over the path) */
	chain4(PWU, PWU | NX, PWU, PWU);
	expect(&r, OFF, FE, VMMU_WALK_PAGE_FAULT, 0x11);
	expect(&r, OFF, RD, VMMU_WALK_OK, DATA | OFF);
}

/* ---- 1.6 permissions ---- */

static void test_user_supervisor(void **state)
{
	struct vmmu_paging_regs r = long_regs(46);

	(void)state;
	/* U clear at one level makes it a supervisor address: user read faults P|U = 0x5 */
	chain4(PWU, P | W, PWU, PWU);
	expect(&r, OFF, USR, VMMU_WALK_PAGE_FAULT, 0x5);
	expect(&r, OFF, RD, VMMU_WALK_OK, DATA | OFF);
	/* user write needs W everywhere, whatever CR0.WP: P|W|U = 0x7 */
	chain4(PWU, PWU, P | U, PWU);
	r.cr0 &= ~VMMU_CR0_WP;
	expect(&r, OFF, WR | USR, VMMU_WALK_PAGE_FAULT, 0x7);
	/* supervisor write to a read-only address: allowed with WP = 0, P|W = 0x3 with WP = 1 */
	expect(&r, OFF, WR, VMMU_WALK_OK, DATA | OFF);
	r.cr0 |= VMMU_CR0_WP;
	expect(&r, OFF, WR, VMMU_WALK_PAGE_FAULT, 0x3);
}

static void test_smep_smap_wp(void **state)
{
	struct vmmu_paging_regs r = long_regs(46);

	(void)state;
	chain4(PWU, PWU, PWU, P | U); /* a read-only user page */
	r.cr4 |= VMMU_CR4_SMEP;
	/* SMEP: supervisor fetch from a user page faults P|F = 0x11, with WP = 0 too */
	expect(&r, OFF, FE, VMMU_WALK_PAGE_FAULT, 0x11);
	r.cr0 &= ~VMMU_CR0_WP;
	expect(&r, OFF, FE, VMMU_WALK_PAGE_FAULT, 0x11);
	/* SMEP does not restrict data accesses: supervisor write with WP = 0 passes */
	expect(&r, OFF, WR, VMMU_WALK_OK, DATA | OFF);
	/* SMAP, AC = 0: supervisor read/write of a user page faults (P = 0x1, P|W = 0x3) */
	r.cr4 = VMMU_CR4_PAE | VMMU_CR4_SMAP;
	expect(&r, OFF, RD, VMMU_WALK_PAGE_FAULT, 0x1);
	expect(&r, OFF, WR, VMMU_WALK_PAGE_FAULT, 0x3);
	/* SMAP does not restrict fetches */
	expect(&r, OFF, FE, VMMU_WALK_OK, DATA | OFF);
	/* AC = 1 lifts SMAP for explicit accesses; then WP decides the write */
	r.rflags = VMMU_RFLAGS_AC;
	expect(&r, OFF, RD, VMMU_WALK_OK, DATA | OFF);
	expect(&r, OFF, WR, VMMU_WALK_OK, DATA | OFF);
	r.cr0 |= VMMU_CR0_WP;
	expect(&r, OFF, WR, VMMU_WALK_PAGE_FAULT, 0x3);
	/* implicit supervisor accesses: SMAP applies whatever AC, and at CPL 3 U stays clear */
	expect(&r, OFF, RD | IMP, VMMU_WALK_PAGE_FAULT, 0x1);
	expect(&r, OFF, RD | IMP | USR, VMMU_WALK_PAGE_FAULT, 0x1);
	/* user accesses ignore SMAP */
	expect(&r, OFF, RD | USR, VMMU_WALK_OK, DATA | OFF);
	/* a supervisor page is never an SMAP case */
	chain4(PWU, PWU, P | W, P | W);
	expect(&r, OFF, RD | IMP, VMMU_WALK_OK, DATA | OFF);
}

/* ---- protection keys ---- */

#define KEY(k) ((uint64_t)(k) << 59)

static void test_pkeys(void **state)
{
	struct vmmu_paging_regs r = long_regs(46);

	(void)state;
	r.cr4 |= VMMU_CR4_PKE;
	r.pkru = 1u << 2; /* key 1: AD */
	chain4(PWU, PWU, PWU, PWU | KEY(1));
	/* data read of a user page with AD: P|PK (+U) = 0x21 / 0x25 */
	expect(&r, OFF, RD, VMMU_WALK_PAGE_FAULT, 0x21);
	expect(&r, OFF, USR, VMMU_WALK_PAGE_FAULT, 0x25);
	/* fetches ignore keys */
	expect(&r, OFF, FE | USR, VMMU_WALK_OK, DATA | OFF);
	/* keys in non-leaf entries are ignored: key 1 on the PDE only, key 0 on the PTE */
	chain4(PWU, PWU, PWU | KEY(1), PWU);
	expect(&r, OFF, USR, VMMU_WALK_OK, DATA | OFF);
	/* a 2 MiB leaf carries the key in the PDE */
	chain4(PWU, PWU, PWU | PS | KEY(1), 0);
	ref_set(&g, T3, 0x200000 | PWU | PS | KEY(1));
	expect(&r, OFF, USR, VMMU_WALK_PAGE_FAULT, 0x25);
	/* supervisor pages ignore keys (PKS is not PKE) */
	chain4(PWU, PWU, P | W, P | W | KEY(1));
	expect(&r, OFF, RD, VMMU_WALK_OK, DATA | OFF);
	/* a reserved bit wins: RSVD without PK, 0x9 | U = 0xd */
	chain4(PWU, PWU, PWU, PWU | KEY(1) | (1ULL << 50));
	expect(&r, OFF, USR, VMMU_WALK_PAGE_FAULT, 0xd);
	/* WD (key 2, bit 5): user write faults P|W|U|PK = 0x27; user read passes */
	r.pkru = 1u << 5;
	chain4(PWU, PWU, PWU, PWU | KEY(2));
	expect(&r, OFF, WR | USR, VMMU_WALK_PAGE_FAULT, 0x27);
	expect(&r, OFF, USR, VMMU_WALK_OK, DATA | OFF);
	/* supervisor write: WD only with CR0.WP (P|W|PK = 0x23) */
	expect(&r, OFF, WR, VMMU_WALK_PAGE_FAULT, 0x23);
	r.cr0 &= ~VMMU_CR0_WP;
	expect(&r, OFF, WR, VMMU_WALK_OK, DATA | OFF);
	/* PKE means nothing outside IA-32e paging: PAE, every key blocked, key 0 not checked */
	r = regs_pae(52);
	r.cr4 |= VMMU_CR4_PKE;
	r.pkru = ~0u;
	clear_tables();
	ref_set(&g, T1, T2 | P);
	ref_set(&g, T2, T3 | PWU);
	ref_set(&g, T3, DATA | PWU);
	expect(&r, OFF, WR | USR, VMMU_WALK_OK, DATA | OFF);
}

/* ---- A/D ---- */

static void test_accessed_dirty(void **state)
{
	struct vmmu_paging_regs r = long_regs(46);
	struct vmmu_paging *ctx = NULL;
	struct vmmu_walk_result res;

	(void)state;
	assert_int_equal(vmmu_paging_create(&ctx, g.mem, &r), 0);
	/* a faulting write (read-only PTE, WP = 1) sets nothing */
	chain4(PWU, PWU, PWU, P | U);
	assert_int_equal(vmmu_walk(ctx, OFF, WR, &res), VMMU_WALK_PAGE_FAULT);
	assert_int_equal(ref_get(&g, T1), T2 | PWU);
	assert_int_equal(ref_get(&g, T2), T3 | PWU);
	assert_int_equal(ref_get(&g, T3), T4 | PWU);
	assert_int_equal(ref_get(&g, T4), DATA | P | U);
	/* a read sets A everywhere, D nowhere */
	assert_int_equal(vmmu_walk(ctx, OFF, RD, &res), VMMU_WALK_OK);
	assert_int_equal(ref_get(&g, T1), T2 | PWU | A);
	assert_int_equal(ref_get(&g, T2), T3 | PWU | A);
	assert_int_equal(ref_get(&g, T3), T4 | PWU | A);
	assert_int_equal(ref_get(&g, T4), DATA | P | U | A);
	/* a write sets D on the leaf only */
	chain4(PWU, PWU, PWU, PWU);
	assert_int_equal(vmmu_walk(ctx, OFF, WR, &res), VMMU_WALK_OK);
	assert_int_equal(ref_get(&g, T1), T2 | PWU | A);
	assert_int_equal(ref_get(&g, T2), T3 | PWU | A);
	assert_int_equal(ref_get(&g, T3), T4 | PWU | A);
	assert_int_equal(ref_get(&g, T4), DATA | PWU | A | D);
	/* 2 MiB leaf: D on the PDE */
	ref_set(&g, T3, 0x200000 | PWU | PS);
	assert_int_equal(vmmu_walk(ctx, OFF, WR, &res), VMMU_WALK_OK);
	assert_int_equal(ref_get(&g, T3), 0x200000 | PWU | PS | A | D);
	/* NO_AD writes nothing */
	chain4(PWU, PWU, PWU, PWU);
	assert_int_equal(vmmu_walk(ctx, OFF, WR | VMMU_WALK_NO_AD, &res), VMMU_WALK_OK);
	assert_int_equal(ref_get(&g, T4), DATA | PWU);
	/* 32-bit paging, 4-byte entries: A at bit 5, D at bit 6 of the 4 MiB PDE */
	vmmu_paging_destroy(ctx);
	r = regs32(36, true);
	clear_tables();
	set32(T1, (uint32_t)(0x00400000 | P | W | PS));
	assert_int_equal(vmmu_paging_create(&ctx, g.mem, &r), 0);
	assert_int_equal(vmmu_walk(ctx, OFF, WR, &res), VMMU_WALK_OK);
	assert_int_equal(ref_get(&g, T1), 0x00400000 | P | W | PS | A | D);
	vmmu_paging_destroy(ctx);
}

/* ---- EPT ---- */

#define EPT_ROOT 0x100000ULL
#define EPT_L3   0x101000ULL
#define EPT_L2   0x102000ULL
#define EPT_L1   0x103000ULL
#define WB (6ULL << 3)

/* EPT (or NPT) identity map of 0..2 MiB with 4 KiB pages: @upper bits in tables, @leaf in the PTEs */
static void ept_identity(uint64_t upper, uint64_t leaf)
{
	ref_set(&g, EPT_ROOT, EPT_L3 | upper);
	ref_set(&g, EPT_L3, EPT_L2 | upper);
	ref_set(&g, EPT_L2, EPT_L1 | upper);
	for (uint64_t i = 0; i < 512; i++)
		ref_set(&g, EPT_L1 + i * 8, (i << 12) | leaf);
}

static void expect_ept(uint64_t eptp, uint32_t flags, uint64_t gpa, uint32_t access, int outcome, uint64_t value)
{
	struct vmmu_ept_config cfg = { .eptp = eptp, .maxphyaddr = 46, .flags = flags };
	struct ref_tdp t = { .ept = true, .eptp = eptp, .ept_flags = flags, .maxphyaddr = 46 };
	struct vmmu_paging *ctx = NULL;
	struct vmmu_walk_result res;
	struct ref_out ref;

	assert_int_equal(vmmu_paging_create_ept(&ctx, g.mem, &cfg), 0);
	assert_int_equal(vmmu_walk(ctx, gpa, access | VMMU_WALK_NO_AD, &res), outcome);
	if (outcome == VMMU_WALK_OK)
		assert_int_equal(res.gpa, value);
	else if (outcome == VMMU_WALK_EPT_VIOLATION)
		assert_int_equal(res.exit_qualification, value);
	vmmu_paging_destroy(ctx);
	ref_walk_tdp(g.mem, &t, gpa, access | VMMU_WALK_NO_AD, &ref);
	assert_int_equal(ref.outcome, outcome);
	if (outcome == VMMU_WALK_OK)
		assert_int_equal(ref.gpa, value);
	else if (outcome == VMMU_WALK_EPT_VIOLATION)
		assert_int_equal(ref.exit_qualification, value);
}

#define EPTP4 (EPT_ROOT | (3ULL << 3) | 6)

static void test_ept_entries(void **state)
{
	(void)state;
	clear_tables();
	ept_identity(7, 7 | WB);
	expect_ept(EPTP4, 0, DATA | OFF, WR, VMMU_WALK_OK, DATA | OFF);
	/* execute-only leaf (XWR 100): misconfiguration unless supported */
	ref_set(&g, EPT_L1 + 5 * 8, DATA | 4 | WB);
	expect_ept(EPTP4, 0, DATA | OFF, FE, VMMU_WALK_EPT_MISCONFIG, 0);
	expect_ept(EPTP4, VMMU_EPT_F_EXECONLY, DATA | OFF, FE, VMMU_WALK_OK, DATA | OFF);
	/* a read of it: violation, qual = read (bit 0) | executable (bit 5) = 0x21 */
	expect_ept(EPTP4, VMMU_EPT_F_EXECONLY, DATA | OFF, RD, VMMU_WALK_EPT_VIOLATION, 0x21);
	/* write-only (010) and write-execute (110) are misconfigurations at any level */
	ref_set(&g, EPT_L1 + 5 * 8, DATA | 2 | WB);
	expect_ept(EPTP4, 0, DATA | OFF, RD, VMMU_WALK_EPT_MISCONFIG, 0);
	ref_set(&g, EPT_L1 + 5 * 8, DATA | 7 | WB);
	ref_set(&g, EPT_L2, EPT_L1 | 6);
	expect_ept(EPTP4, 0, DATA | OFF, RD, VMMU_WALK_EPT_MISCONFIG, 0);
	ref_set(&g, EPT_L2, EPT_L1 | 7);
	/* memory types 2, 3, 7 in a leaf: misconfiguration; 0 (UC), 1 (WC), 4 (WT), 5 (WP), 6 (WB) fine */
	for (uint64_t mt = 0; mt < 8; mt++) {
		ref_set(&g, EPT_L1 + 5 * 8, DATA | 7 | (mt << 3));
		expect_ept(EPTP4, 0, DATA | OFF, RD,
			   (mt == 2 || mt == 3 || mt == 7) ? VMMU_WALK_EPT_MISCONFIG : VMMU_WALK_OK, DATA | OFF);
	}
	/* IPAT (bit 6) in a leaf is fine; bit 6 in a non-leaf PDE is reserved */
	ref_set(&g, EPT_L1 + 5 * 8, DATA | 7 | WB | (1ULL << 6));
	expect_ept(EPTP4, 0, DATA | OFF, RD, VMMU_WALK_OK, DATA | OFF);
	ref_set(&g, EPT_L1 + 5 * 8, DATA | 7 | WB);
	ref_set(&g, EPT_L2, EPT_L1 | 7 | (1ULL << 6));
	expect_ept(EPTP4, 0, DATA | OFF, RD, VMMU_WALK_EPT_MISCONFIG, 0);
	/* a memory type in a non-leaf entry is reserved (bits 6:3 / 7:3) */
	ref_set(&g, EPT_L2, EPT_L1 | 7 | WB);
	expect_ept(EPTP4, 0, DATA | OFF, RD, VMMU_WALK_EPT_MISCONFIG, 0);
	ref_set(&g, EPT_L2, EPT_L1 | 7);
	/* bit 7 in the PML4E is reserved */
	ref_set(&g, EPT_ROOT, EPT_L3 | 7 | PS);
	expect_ept(EPTP4, VMMU_EPT_F_1G, DATA | OFF, RD, VMMU_WALK_EPT_MISCONFIG, 0);
	ref_set(&g, EPT_ROOT, EPT_L3 | 7);
	/* bit 7 in a PTE is ignored */
	ref_set(&g, EPT_L1 + 5 * 8, DATA | 7 | WB | PS);
	expect_ept(EPTP4, 0, DATA | OFF, RD, VMMU_WALK_OK, DATA | OFF);
	/* 1 GiB page: only with support; 29:12 reserved */
	ref_set(&g, EPT_L3, 0x40000000 | 7 | WB | PS);
	expect_ept(EPTP4, 0, 0x1234, RD, VMMU_WALK_EPT_MISCONFIG, 0);
	expect_ept(EPTP4, VMMU_EPT_F_1G, 0x1234, RD, VMMU_WALK_OK, 0x40001234);
	ref_set(&g, EPT_L3, 0x40000000 | 7 | WB | PS | (1ULL << 12));
	expect_ept(EPTP4, VMMU_EPT_F_1G, 0x1234, RD, VMMU_WALK_EPT_MISCONFIG, 0);
	/* 2 MiB page: 20:12 reserved */
	ref_set(&g, EPT_L3, EPT_L2 | 7);
	ref_set(&g, EPT_L2, 0x200000 | 7 | WB | PS);
	expect_ept(EPTP4, 0, 0x1234, RD, VMMU_WALK_OK, 0x201234);
	ref_set(&g, EPT_L2, 0x200000 | 7 | WB | PS | (1ULL << 12));
	expect_ept(EPTP4, 0, 0x1234, RD, VMMU_WALK_EPT_MISCONFIG, 0);
	/* ignored everywhere: 11:10 (no mode-based execute), 62:52, 63 (suppress #VE); 51:M reserved */
	ref_set(&g, EPT_L2, EPT_L1 | 7 | (3ULL << 10) | (0x7ffULL << 52));
	ref_set(&g, EPT_L1 + 5 * 8, DATA | 7 | WB | (3ULL << 10) | (0x7ffULL << 52) | (1ULL << 63));
	expect_ept(EPTP4, 0, DATA | OFF, WR, VMMU_WALK_OK, DATA | OFF);
	ref_set(&g, EPT_L1 + 5 * 8, DATA | 7 | WB | (1ULL << 46));
	expect_ept(EPTP4, 0, DATA | OFF, RD, VMMU_WALK_EPT_MISCONFIG, 0);
}

static void test_ept_precedence_and_qual(void **state)
{
	(void)state;
	clear_tables();
	ept_identity(7, 7 | WB);
	/* misconfiguration beats a missing permission on the same leaf (read-only, MT 7, written) */
	ref_set(&g, EPT_L1 + 5 * 8, DATA | 1 | (7ULL << 3));
	expect_ept(EPTP4, 0, DATA | OFF, WR, VMMU_WALK_EPT_MISCONFIG, 0);
	/* a not-present entry with reserved bits is a violation, qual = write (0x2) only */
	ref_set(&g, EPT_L1 + 5 * 8, DATA | (7ULL << 3) | (1ULL << 50));
	expect_ept(EPTP4, 0, DATA | OFF, WR, VMMU_WALK_EPT_VIOLATION, 0x2);
	/* an upper entry without W: qual bits 3-5 = AND over the path.
	 * PDPTE R-X (5), PTE RW- (3): write -> 0x2 | readable 0x8 (X missing in the PTE, W in the PDPTE) */
	ref_set(&g, EPT_L3, EPT_L2 | 5);
	ref_set(&g, EPT_L1 + 5 * 8, DATA | 3 | WB);
	expect_ept(EPTP4, 0, DATA | OFF, WR, VMMU_WALK_EPT_VIOLATION, 0xA);
	/* fetch: 0x4 | readable 0x8 = 0xC */
	expect_ept(EPTP4, 0, DATA | OFF, FE, VMMU_WALK_EPT_VIOLATION, 0xC);
	/* a misconfigured upper entry wins over the not-present leaf below it */
	ref_set(&g, EPT_L3, EPT_L2 | 7 | (1ULL << 4));
	ref_set(&g, EPT_L1 + 5 * 8, 0);
	expect_ept(EPTP4, 0, DATA | OFF, RD, VMMU_WALK_EPT_MISCONFIG, 0);
}

/* First stage (4-level at T1) nested on EPT: qualification bits 7/8, table accesses with EPT A/D. */
static void test_ept_nested_qual(void **state)
{
	struct vmmu_paging_regs r = long_regs(46);
	struct vmmu_paging *gctx = NULL, *ept = NULL;
	struct vmmu_walk_result res;
	struct vmmu_ept_config cfg = { .eptp = EPTP4, .maxphyaddr = 46 };

	(void)state;
	clear_tables();
	ept_identity(7, 7 | WB);
	ref_set(&g, T1, T2 | PWU);
	ref_set(&g, T2, T3 | PWU);
	ref_set(&g, T3, T4 | PWU);
	ref_set(&g, T4, DATA | PWU);
	assert_int_equal(vmmu_paging_create_ept(&ept, g.mem, &cfg), 0);
	assert_int_equal(vmmu_paging_create(&gctx, g.mem, &r), 0);
	assert_int_equal(vmmu_paging_set_nested(gctx, ept), 0);
	assert_int_equal(vmmu_walk(gctx, OFF, WR, &res), VMMU_WALK_OK);
	assert_int_equal(res.gpa, DATA | OFF);
	/* final GPA read-only (R-X): write -> 0x2 | R 0x8 | X 0x20 | GVA valid 0x80 | final 0x100 = 0x1AA */
	ref_set(&g, EPT_L1 + 5 * 8, DATA | 5 | WB);
	assert_int_equal(vmmu_walk(gctx, OFF, WR | VMMU_WALK_NO_AD, &res), VMMU_WALK_EPT_VIOLATION);
	assert_int_equal(res.exit_qualification, 0x1AA);
	assert_int_equal(res.fault_gpa, DATA | OFF);
	/* the page of the PDE table (T3) not present in EPT: a read of the entry,
	 * qual = read 0x1 | GVA valid 0x80, bit 8 clear; fault_gpa = the entry's address */
	ref_set(&g, EPT_L1 + 5 * 8, DATA | 7 | WB);
	ref_set(&g, EPT_L1 + 3 * 8, 0);
	assert_int_equal(vmmu_walk(gctx, OFF, RD | VMMU_WALK_NO_AD, &res), VMMU_WALK_EPT_VIOLATION);
	assert_int_equal(res.exit_qualification, 0x81);
	assert_int_equal(res.fault_gpa, T3);
	/* without EPT A/D a read-only table page is fine for the walk */
	ref_set(&g, EPT_L1 + 3 * 8, T3 | 1 | WB);
	assert_int_equal(vmmu_walk(gctx, OFF, RD | VMMU_WALK_NO_AD, &res), VMMU_WALK_OK);
	vmmu_paging_destroy(ept);
	ept = NULL;
	/* with EPT A/D (EPTP bit 6) the table access is a write: read|write 0x3 | R 0x8 | GVA 0x80 = 0x8B */
	cfg.eptp |= 1ULL << 6;
	assert_int_equal(vmmu_paging_create_ept(&ept, g.mem, &cfg), 0);
	assert_int_equal(vmmu_paging_set_nested(gctx, ept), 0);
	assert_int_equal(vmmu_walk(gctx, OFF, RD | VMMU_WALK_NO_AD, &res), VMMU_WALK_EPT_VIOLATION);
	assert_int_equal(res.exit_qualification, 0x8B);
	assert_int_equal(res.fault_gpa, T3);
	/* ... and, writable again, a successful read sets EPT D (bit 9) on the table page, A (bit 8) */
	ref_set(&g, EPT_L1 + 3 * 8, T3 | 7 | WB);
	assert_int_equal(vmmu_walk(gctx, OFF, RD, &res), VMMU_WALK_OK);
	assert_int_equal(ref_get(&g, EPT_L1 + 3 * 8), T3 | 7 | WB | (1ULL << 8) | (1ULL << 9));
	/* the data page, only read: A without D */
	assert_int_equal(ref_get(&g, EPT_L1 + 5 * 8), DATA | 7 | WB | (1ULL << 8));
	vmmu_paging_destroy(gctx);
	vmmu_paging_destroy(ept);
}

/* ---- NPT ---- */

static void test_npt(void **state)
{
	struct vmmu_paging_regs r = long_regs(46);
	struct vmmu_npt_config cfg = { .ncr3 = EPT_ROOT, .levels = 4, .maxphyaddr = 46, .nxe = 1, .gbpages = 1 };
	struct vmmu_paging *gctx = NULL, *npt = NULL;
	struct vmmu_walk_result res;

	(void)state;
	clear_tables();
	/* NPT identity map in host format */
	ept_identity(PWU, PWU);
	ref_set(&g, T1, T2 | PWU);
	ref_set(&g, T2, T3 | PWU);
	ref_set(&g, T3, T4 | PWU);
	ref_set(&g, T4, DATA | PWU);
	assert_int_equal(vmmu_paging_create_npt(&npt, g.mem, &cfg), 0);
	assert_int_equal(vmmu_paging_create(&gctx, g.mem, &r), 0);
	assert_int_equal(vmmu_paging_set_nested(gctx, npt), 0);
	assert_int_equal(vmmu_walk(gctx, OFF, RD | VMMU_WALK_NO_AD, &res), VMMU_WALK_OK);
	/* every NPT access is a user access: a guest supervisor read of a data page without NPT U
	 * faults: P|U (0x5) | final (bit 32) */
	ref_set(&g, EPT_L1 + 5 * 8, DATA | P | W);
	assert_int_equal(vmmu_walk(gctx, OFF, RD | VMMU_WALK_NO_AD, &res), VMMU_WALK_NPF);
	assert_int_equal(res.error_code, 0x100000005ULL);
	assert_int_equal(res.fault_gpa, DATA | OFF);
	/* guest table accesses are user writes: the PDE table page read-only in the NPT gives
	 * P|W|U (0x7) | guest page (bit 33), for a guest read */
	ref_set(&g, EPT_L1 + 5 * 8, DATA | PWU);
	ref_set(&g, EPT_L1 + 3 * 8, T3 | P | U);
	assert_int_equal(vmmu_walk(gctx, OFF, RD | VMMU_WALK_NO_AD, &res), VMMU_WALK_NPF);
	assert_int_equal(res.error_code, 0x200000007ULL);
	assert_int_equal(res.fault_gpa, T3);
	/* NPT PML4E bit 8 is reserved (AMD), met while translating a guest table page (a user write):
	 * P|W|U|RSVD (0xf) | bit 33, as kvm-unit-tests svm npt_rsvd_pfwalk expects */
	ref_set(&g, EPT_L1 + 3 * 8, T3 | PWU);
	ref_set(&g, EPT_ROOT, EPT_L3 | PWU | (1ULL << 8));
	assert_int_equal(vmmu_walk(gctx, OFF, RD | VMMU_WALK_NO_AD, &res), VMMU_WALK_NPF);
	assert_int_equal(res.error_code, 0x20000000FULL);
	assert_int_equal(res.fault_gpa, T1);
	ref_set(&g, EPT_ROOT, EPT_L3 | PWU);
	/* not present: P clear, 0x6 | bit 33 */
	ref_set(&g, EPT_L1 + 3 * 8, 0);
	assert_int_equal(vmmu_walk(gctx, OFF, RD | VMMU_WALK_NO_AD, &res), VMMU_WALK_NPF);
	assert_int_equal(res.error_code, 0x200000006ULL);
	/* reserved bit in the NPT leaf of the final page: P|RSVD|U (0xd) | bit 32, write adds 0x2 */
	ref_set(&g, EPT_L1 + 3 * 8, T3 | PWU);
	ref_set(&g, EPT_L1 + 5 * 8, DATA | PWU | (1ULL << 50));
	assert_int_equal(vmmu_walk(gctx, OFF, WR | VMMU_WALK_NO_AD, &res), VMMU_WALK_NPF);
	assert_int_equal(res.error_code, 0x10000000FULL);
	/* NPT NX on the data page: guest fetch faults P|U|I/D (0x15) | bit 32 (host NXE on) */
	ref_set(&g, EPT_L1 + 5 * 8, DATA | PWU | NX);
	assert_int_equal(vmmu_walk(gctx, OFF, FE | VMMU_WALK_NO_AD, &res), VMMU_WALK_NPF);
	assert_int_equal(res.error_code, 0x100000015ULL);
	/* a guest table access to a page that is NX in the NPT is fine: table reads are not fetches */
	ref_set(&g, EPT_L1 + 5 * 8, DATA | PWU);
	ref_set(&g, EPT_L1 + 3 * 8, T3 | PWU | NX);
	assert_int_equal(vmmu_walk(gctx, OFF, FE | VMMU_WALK_NO_AD, &res), VMMU_WALK_OK);
	vmmu_paging_destroy(gctx);
	vmmu_paging_destroy(npt);
	/* host NXE off: NPT bit 63 is reserved, and no I/D: P|RSVD|U (0xd) | bit 32 */
	cfg.nxe = 0;
	assert_int_equal(vmmu_paging_create_npt(&npt, g.mem, &cfg), 0);
	assert_int_equal(vmmu_paging_create(&gctx, g.mem, &r), 0);
	assert_int_equal(vmmu_paging_set_nested(gctx, npt), 0);
	ref_set(&g, EPT_L1 + 3 * 8, T3 | PWU);
	ref_set(&g, EPT_L1 + 5 * 8, DATA | PWU | NX);
	assert_int_equal(vmmu_walk(gctx, OFF, FE | VMMU_WALK_NO_AD, &res), VMMU_WALK_NPF);
	assert_int_equal(res.error_code, 0x10000000DULL);
	vmmu_paging_destroy(gctx);
	vmmu_paging_destroy(npt);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rsvd_4level),
		cmocka_unit_test(test_rsvd_large_pages),
		cmocka_unit_test(test_32bit_pse36),
		cmocka_unit_test(test_32bit_ps_ignored_without_pse),
		cmocka_unit_test(test_pae_pdpte_load),
		cmocka_unit_test(test_pae_rsvd),
		cmocka_unit_test(test_canonical),
		cmocka_unit_test(test_fetch_bit),
		cmocka_unit_test(test_user_supervisor),
		cmocka_unit_test(test_smep_smap_wp),
		cmocka_unit_test(test_pkeys),
		cmocka_unit_test(test_accessed_dirty),
		cmocka_unit_test(test_ept_entries),
		cmocka_unit_test(test_ept_precedence_and_qual),
		cmocka_unit_test(test_ept_nested_qual),
		cmocka_unit_test(test_npt),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
