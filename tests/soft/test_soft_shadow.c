/* SPDX-License-Identifier: MIT */
/*
 * Shadow paging on the soft machine: faults on GVAs build shadow pages from
 * the guest's tables with the guest's exact #PF and A/D semantics; guest
 * tables are write-protected and writes to them are emulated and tracked
 * (remaps seen, flooding zaps, misaligned writes zap); CR3 loads and INVLPG
 * behave as the TLB architecture says; the bypass trick saves exits.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include "soft/soft_helpers.h"
#include "mmu/mmu_internal.h"

#define MEM (4ULL << 20)
#define PML4 0x100000ULL
#define PDPT 0x101000ULL
#define PD   0x102000ULL
#define PT   0x103000ULL
#define PML4B 0x108000ULL /* a second address space */
#define PD2  0x105000ULL /* maps the tables, from PDPT entry 1 */
#define PT2  0x106000ULL
#define PTE_P (1ULL << 0)
#define PTE_W (1ULL << 1)
#define PTE_U (1ULL << 2)
#define PTE_A (1ULL << 5)
#define PTE_D (1ULL << 6)
#define PTE_PS (1ULL << 7)
#define PTE_NX (1ULL << 63)
#define TBL (PTE_P | PTE_W | PTE_U)
/* gva 0x400000 + i * 4 KiB -> the PT's entry i; PT, PD, PDPT mapped at 0x40000000.. (supervisor RW, PD2/PT2) */
#define GVA 0x400000ULL
#define GVA_PT 0x40000000ULL
#define GVA_PD 0x40001000ULL

static void shadow_env(struct soft_env *e, uint32_t flags, unsigned int nr_vcpus)
{
	struct vmmu_mmu_options mo = { .size = sizeof(mo), .mode = VMMU_PAGING_4LEVEL };

	mo.flags = VMMU_MMU_F_SHADOW | flags;

	env_create(e, VMMU_DIRTY_GET_CLEAR, 0, 0, MEM, 0, nr_vcpus, &mo);
}

static uint64_t *gpa_ptr(struct soft_env *e, uint64_t gpa) { return (uint64_t *)((uint8_t *)e->mem.hva + gpa); }

static void load_cr3(struct soft_env *e, unsigned int cpu, uint64_t cr3, uint64_t cr4_extra, uint64_t cr0_clear)
{
	struct vmmu_sregs s;

	assert_int_equal(vmmu_vcpu_get_sregs(e->vcpu[cpu], &s), 0);
	s.cr0 = (VMMU_CR0_PG | VMMU_CR0_WP | 1) & ~cr0_clear;
	s.cr4 = VMMU_CR4_PAE | cr4_extra;
	s.efer = VMMU_EFER_LME | VMMU_EFER_LMA | VMMU_EFER_NXE;
	s.cr3 = cr3;
	assert_int_equal(vmmu_vcpu_set_sregs(e->vcpu[cpu], &s), 0);
}

/* gva 0x400000.. -> gpa 0x200000.. (PT entries 0..7 user RW, entry 1 not present); tables at GVA_PT.. */
static void build_tables(struct soft_env *e)
{
	*gpa_ptr(e, PML4) = PDPT | TBL;
	*gpa_ptr(e, PDPT) = PD | TBL;
	*gpa_ptr(e, PDPT + 8) = PD2 | TBL;
	*gpa_ptr(e, PD + 2 * 8) = PT | TBL;
	*gpa_ptr(e, PD2) = PT2 | TBL;
	for (int i = 0; i < 8; i++)
		if (i != 1)
			*gpa_ptr(e, PT + i * 8) = (0x200000 + i * 0x1000) | PTE_P | PTE_W | PTE_U;
	*gpa_ptr(e, PT2) = PT | PTE_P | PTE_W;
	*gpa_ptr(e, PT2 + 8) = PD | PTE_P | PTE_W;
	*gpa_ptr(e, PT2 + 16) = PDPT | PTE_P | PTE_W;
	for (unsigned int i = 0; i < e->nr_vcpus; i++)
		load_cr3(e, i, PML4, 0, 0);
}

static int acc(struct soft_env *e, unsigned int cpu, uint64_t gva, unsigned int kind, unsigned int cpl, uint64_t *v,
	       struct vmmu_soft_result *res)
{
	return vmmu_soft_access(e->vcpu[cpu], gva, 8, kind, cpl, v, res);
}

static void test_fault_builds_shadow(void **state)
{
	struct vmmu_soft_result res;
	struct soft_env e;
	uint64_t v = 42, r = 0;

	(void)state;
	shadow_env(&e, 0, 1);
	build_tables(&e);
	/* a read of a clean page: mapped without W, A set, D not */
	assert_int_equal(acc(&e, 0, GVA + 0x10, VMMU_SOFT_READ, 3, &r, &res), VMMU_SOFT_OK);
	assert_int_equal(res.exits, 1);
	assert_int_equal(*gpa_ptr(&e, PT) & (PTE_A | PTE_D), PTE_A);
	assert_true(*gpa_ptr(&e, PML4) & *gpa_ptr(&e, PDPT) & *gpa_ptr(&e, PD + 16) & PTE_A);
	struct vmmu_mmu_stats st = env_stats(&e);
	assert_int_equal(st.pages, 4); /* root, PDPT, PD, PT shadows */
	assert_int_equal(st.faults[VMMU_FAULT_FIXED], 1);
	/* the first write faults (protect_clean_gpte), sets D, and lands */
	assert_int_equal(acc(&e, 0, GVA + 0x10, VMMU_SOFT_WRITE, 3, &v, &res), VMMU_SOFT_OK);
	assert_int_equal(res.exits, 1);
	assert_int_equal(*gpa_ptr(&e, PT) & (PTE_A | PTE_D), PTE_A | PTE_D);
	assert_int_equal(*gpa_ptr(&e, 0x200010), 42);
	/* then no more exits */
	assert_int_equal(acc(&e, 0, GVA + 0x18, VMMU_SOFT_WRITE, 3, &v, &res), VMMU_SOFT_OK);
	assert_int_equal(res.exits, 0);
	/* a guest fault is injected with the walker's error code, A/D untouched */
	assert_int_equal(acc(&e, 0, GVA + 0x1000, VMMU_SOFT_WRITE, 3, &v, &res), VMMU_SOFT_PAGE_FAULT);
	assert_int_equal(res.error_code, VMMU_PFERR_WRITE | VMMU_PFERR_USER);
	assert_int_equal(res.cr2, GVA + 0x1000);
	assert_int_equal(env_stats(&e).faults[VMMU_FAULT_INJECT_PF], 1);
	/* supervisor-only page read from user mode: protection fault */
	assert_int_equal(acc(&e, 0, GVA_PT, VMMU_SOFT_READ, 3, &r, &res), VMMU_SOFT_PAGE_FAULT);
	assert_int_equal(res.error_code, VMMU_PFERR_PRESENT | VMMU_PFERR_USER);
	/* reading the guest's own PT works (it is write-protected, not read-protected) */
	assert_int_equal(acc(&e, 0, GVA_PT, VMMU_SOFT_READ, 0, &r, &res), VMMU_SOFT_OK);
	assert_int_equal(r, *gpa_ptr(&e, PT));
	assert_int_equal(vmmu_mmu_audit(e.mmu), 0);
	env_destroy(&e);
}

/* A guest write to a shadowed table is emulated and the translation it changes is seen at once. */
static void test_pt_write_remaps(void **state)
{
	struct vmmu_soft_result res;
	struct soft_env e;
	uint64_t v, r = 0;

	(void)state;
	shadow_env(&e, 0, 1);
	build_tables(&e);
	*gpa_ptr(&e, 0x200000) = 0xaaaa;
	*gpa_ptr(&e, 0x300000) = 0xbbbb;
	assert_int_equal(acc(&e, 0, GVA, VMMU_SOFT_READ, 3, &r, NULL), VMMU_SOFT_OK);
	assert_int_equal(r, 0xaaaa);
	/* the guest remaps GVA to 0x300000 by writing its PT through GVA_PT */
	v = 0x300000 | PTE_P | PTE_W | PTE_U;
	assert_int_equal(acc(&e, 0, GVA_PT, VMMU_SOFT_WRITE, 0, &v, &res), VMMU_SOFT_OK);
	assert_int_equal(*gpa_ptr(&e, PT), v);
	assert_int_equal(env_vstats(&e, 0).pt_writes, 1);
	struct vmmu_mmu_stats st = env_stats(&e);
	assert_int_equal(st.pt_writes, 1);
	assert_int_equal(st.pt_zaps, 1);
	assert_int_equal(st.faults[VMMU_FAULT_EMULATE_WRITE], 1);
	assert_int_equal(vmmu_mmu_audit(e.mmu), 0);
	/* the old SPTE was zapped (and TLBs flushed): the next read sees the new page */
	assert_int_equal(acc(&e, 0, GVA, VMMU_SOFT_READ, 3, &r, &res), VMMU_SOFT_OK);
	assert_int_equal(r, 0xbbbb);
	assert_int_equal(res.exits, 1);
	/* the guest table page stays write-protected: a second write faults again */
	v |= PTE_A;
	assert_int_equal(acc(&e, 0, GVA_PT, VMMU_SOFT_WRITE, 0, &v, &res), VMMU_SOFT_OK);
	assert_int_equal(res.exits, 1);
	assert_int_equal(env_vstats(&e, 0).pt_writes, 2);
	/* the guest unmaps: the next access faults into the guest */
	v = 0;
	assert_int_equal(acc(&e, 0, GVA_PT, VMMU_SOFT_WRITE, 0, &v, &res), VMMU_SOFT_OK);
	assert_int_equal(acc(&e, 0, GVA, VMMU_SOFT_READ, 3, &r, &res), VMMU_SOFT_PAGE_FAULT);
	assert_int_equal(res.error_code, VMMU_PFERR_USER);
	assert_int_equal(vmmu_mmu_audit(e.mmu), 0);
	env_destroy(&e);
}

/* Level > 1 tables written three times without a walk through them are zapped; level-1 tables are not. */
static void test_write_flooding(void **state)
{
	struct soft_env e;
	uint64_t v, r;
	struct vmmu_mmu_stats st;

	(void)state;
	shadow_env(&e, 0, 1);
	build_tables(&e);
	assert_int_equal(acc(&e, 0, GVA, VMMU_SOFT_READ, 3, &r, NULL), VMMU_SOFT_OK);
	assert_int_equal(acc(&e, 0, GVA_PD + 8 * 8, VMMU_SOFT_READ, 0, &r, NULL), VMMU_SOFT_OK);
	/* two writes to unused PD entries: entries zapped (nothing there), the page stays */
	for (int i = 0; i < 2; i++) {
		v = 0;
		assert_int_equal(acc(&e, 0, GVA_PD + (8 + i) * 8, VMMU_SOFT_WRITE, 0, &v, NULL), VMMU_SOFT_OK);
	}
	st = env_stats(&e);
	assert_int_equal(st.pt_writes, 2);
	assert_int_equal(st.flood_zaps, 0);
	/* a walk through the PD (a fault on a new gva in it) resets the count */
	assert_int_equal(acc(&e, 0, GVA + 0x2000, VMMU_SOFT_READ, 3, &r, NULL), VMMU_SOFT_OK);
	for (int i = 0; i < 2; i++) {
		v = 0;
		assert_int_equal(acc(&e, 0, GVA_PD + (8 + i) * 8, VMMU_SOFT_WRITE, 0, &v, NULL), VMMU_SOFT_OK);
	}
	assert_int_equal(env_stats(&e).flood_zaps, 0);
	/* the third in a row zaps the PD's shadow page (and the PT shadows below lose their parent) */
	v = 0;
	assert_int_equal(acc(&e, 0, GVA_PD + 10 * 8, VMMU_SOFT_WRITE, 0, &v, NULL), VMMU_SOFT_OK);
	st = env_stats(&e);
	assert_int_equal(st.flood_zaps, 1);
	assert_int_equal(vmmu_mmu_audit(e.mmu), 0);
	/* a PT (level 1) written many times is never flood-zapped */
	for (int i = 0; i < 6; i++) {
		v = 0;
		assert_int_equal(acc(&e, 0, GVA_PT + (100 + i) * 8, VMMU_SOFT_WRITE, 0, &v, NULL), VMMU_SOFT_OK);
	}
	assert_int_equal(env_stats(&e).flood_zaps, 1);
	/* translations are rebuilt */
	assert_int_equal(acc(&e, 0, GVA, VMMU_SOFT_READ, 3, &r, NULL), VMMU_SOFT_OK);
	assert_int_equal(vmmu_mmu_audit(e.mmu), 0);
	env_destroy(&e);
}

/* A misaligned write (crossing two entries, or 2 bytes) zaps the page; one byte at an entry start does not. */
static void test_misaligned_write_zaps(void **state)
{
	struct soft_env e;
	uint64_t v = 0, r;
	uint16_t h = 0;
	uint8_t b = (uint8_t)(PTE_P | PTE_W | PTE_U);

	(void)state;
	shadow_env(&e, 0, 1);
	build_tables(&e);
	assert_int_equal(acc(&e, 0, GVA, VMMU_SOFT_READ, 3, &r, NULL), VMMU_SOFT_OK);
	assert_int_equal(acc(&e, 0, GVA_PT + 0x800, VMMU_SOFT_READ, 0, &r, NULL), VMMU_SOFT_OK);
	assert_int_equal(vmmu_soft_access(e.vcpu[0], GVA_PT + 8, 1, VMMU_SOFT_WRITE, 0, &b, NULL), VMMU_SOFT_OK);
	assert_int_equal(env_stats(&e).misaligned_zaps, 0);
	assert_int_equal(vmmu_soft_access(e.vcpu[0], GVA_PT + 0x804, 8, VMMU_SOFT_WRITE, 0, &v, NULL),
			 VMMU_SOFT_OK);
	assert_int_equal(env_stats(&e).misaligned_zaps, 1);
	assert_int_equal(acc(&e, 0, GVA, VMMU_SOFT_READ, 3, &r, NULL), VMMU_SOFT_OK); /* shadow the PT again */
	assert_int_equal(vmmu_soft_access(e.vcpu[0], GVA_PT + 0x810, 2, VMMU_SOFT_WRITE, 0, &h, NULL),
			 VMMU_SOFT_OK);
	assert_int_equal(env_stats(&e).misaligned_zaps, 2);
	/* the byte write made entry 1 present (low byte P|W|U, frame 0): it is mapped now */
	assert_int_equal(acc(&e, 0, GVA + 0x1000, VMMU_SOFT_READ, 3, &r, NULL), VMMU_SOFT_OK);
	assert_int_equal(vmmu_mmu_audit(e.mmu), 0);
	env_destroy(&e);
}

/*
 * CR3 loads: each (CR3, role) has its own root, kept and reused; the TLB is
 * emptied by the load. INVLPG: a stale translation (the guest changed the
 * entry without the MMU seeing it, as an unsynced table would) persists
 * until INVLPG, which drops the SPTE so the next access walks again.
 */
static void test_cr3_and_invlpg(void **state)
{
	struct vmmu_soft_result res;
	struct soft_env e;
	uint64_t r = 0, created;

	(void)state;
	shadow_env(&e, 0, 1);
	build_tables(&e);
	*gpa_ptr(&e, 0x200000) = 0xaaaa;
	*gpa_ptr(&e, 0x300000) = 0xbbbb;
	/* address space B: same PDPT path but GVA -> 0x300000 through its own PD/PT copies */
	*gpa_ptr(&e, PML4B) = (PML4B + 0x1000) | TBL;
	*gpa_ptr(&e, PML4B + 0x1000) = (PML4B + 0x2000) | TBL;
	*gpa_ptr(&e, PML4B + 0x2000 + 2 * 8) = (PML4B + 0x3000) | TBL;
	*gpa_ptr(&e, PML4B + 0x3000) = 0x300000 | PTE_P | PTE_U;
	assert_int_equal(acc(&e, 0, GVA, VMMU_SOFT_READ, 3, &r, NULL), VMMU_SOFT_OK);
	assert_int_equal(r, 0xaaaa);
	load_cr3(&e, 0, PML4B, 0, 0);
	assert_int_equal(acc(&e, 0, GVA, VMMU_SOFT_READ, 3, &r, &res), VMMU_SOFT_OK);
	assert_int_equal(r, 0xbbbb);
	assert_false(res.tlb_hit);
	created = env_stats(&e).pages_created;
	/* back to A: the old root and its pages are reused, nothing is rebuilt */
	load_cr3(&e, 0, PML4, 0, 0);
	assert_int_equal(acc(&e, 0, GVA, VMMU_SOFT_READ, 3, &r, &res), VMMU_SOFT_OK);
	assert_int_equal(r, 0xaaaa);
	assert_int_equal(res.exits, 0);
	assert_int_equal(env_stats(&e).pages_created, created);
	/* CR0.WP is part of the role: another root */
	load_cr3(&e, 0, PML4, 0, VMMU_CR0_WP);
	assert_int_equal(acc(&e, 0, GVA, VMMU_SOFT_READ, 3, &r, &res), VMMU_SOFT_OK);
	assert_int_equal(res.exits, 1);
	assert_true(env_stats(&e).pages_created > created);
	load_cr3(&e, 0, PML4, 0, 0);
	/* an unseen change of the guest PTE: the stale translation stays until INVLPG */
	assert_int_equal(acc(&e, 0, GVA, VMMU_SOFT_READ, 3, &r, &res), VMMU_SOFT_OK);
	__atomic_store_n(gpa_ptr(&e, PT), 0x300000 | PTE_P | PTE_U | PTE_A, __ATOMIC_RELAXED);
	assert_int_equal(acc(&e, 0, GVA, VMMU_SOFT_READ, 3, &r, &res), VMMU_SOFT_OK);
	assert_true(res.tlb_hit);
	assert_int_equal(r, 0xaaaa);
	assert_int_equal(vmmu_soft_invlpg(e.vcpu[0], GVA), 0);
	assert_int_equal(acc(&e, 0, GVA, VMMU_SOFT_READ, 3, &r, &res), VMMU_SOFT_OK);
	assert_int_equal(r, 0xbbbb);
	assert_int_equal(res.exits, 1);
	assert_int_equal(vmmu_mmu_audit(e.mmu), 0);
	env_destroy(&e);
}

/* CR0.WP = 0: a supervisor write to a read-only user page succeeds (kernel-only writable leaf); user reads work. */
static void test_wp0_supervisor_write(void **state)
{
	struct soft_env e;
	uint64_t v = 7, r = 0;
	struct vmmu_soft_result res;

	(void)state;
	shadow_env(&e, 0, 1);
	build_tables(&e);
	*gpa_ptr(&e, PT + 2 * 8) = 0x202000 | PTE_P | PTE_U | PTE_D | PTE_A; /* user, read-only */
	load_cr3(&e, 0, PML4, 0, VMMU_CR0_WP);
	assert_int_equal(acc(&e, 0, GVA + 0x2000, VMMU_SOFT_WRITE, 0, &v, NULL), VMMU_SOFT_OK);
	assert_int_equal(*gpa_ptr(&e, 0x202000), 7);
	assert_int_equal(acc(&e, 0, GVA + 0x2000, VMMU_SOFT_READ, 3, &r, NULL), VMMU_SOFT_OK);
	assert_int_equal(r, 7);
	assert_int_equal(acc(&e, 0, GVA + 0x2000, VMMU_SOFT_WRITE, 3, &v, &res), VMMU_SOFT_PAGE_FAULT);
	assert_int_equal(res.error_code, VMMU_PFERR_PRESENT | VMMU_PFERR_WRITE | VMMU_PFERR_USER);
	/* with WP = 1 the same supervisor write faults */
	load_cr3(&e, 0, PML4, 0, 0);
	assert_int_equal(acc(&e, 0, GVA + 0x2000, VMMU_SOFT_WRITE, 0, &v, &res), VMMU_SOFT_PAGE_FAULT);
	assert_int_equal(res.error_code, VMMU_PFERR_PRESENT | VMMU_PFERR_WRITE);
	assert_int_equal(vmmu_mmu_audit(e.mmu), 0);
	env_destroy(&e);
}

/* Bypass: guest-not-present faults on a shadowed table reach the guest without an exit, same error code. */
static void test_bypass_saves_exits(void **state)
{
	struct vmmu_soft_result res;
	uint64_t r, exits[2], bypassed[2], ec[2];

	(void)state;
	for (int mode = 0; mode < 2; mode++) {
		struct soft_env e;

		shadow_env(&e, mode ? VMMU_MMU_F_SHADOW_BYPASS : 0, 1);
		build_tables(&e);
		assert_int_equal(acc(&e, 0, GVA, VMMU_SOFT_READ, 3, &r, NULL), VMMU_SOFT_OK);
		exits[mode] = 0;
		for (int i = 0; i < 10; i++) {
			/* entry 1 not present; entries 8.. not present either */
			uint64_t gva = GVA + (i ? 0x8000 + i * 0x1000 : 0x1000);

			assert_int_equal(acc(&e, 0, gva, VMMU_SOFT_WRITE, 3, &r, &res), VMMU_SOFT_PAGE_FAULT);
			exits[mode] += res.exits;
		}
		ec[mode] = res.error_code;
		bypassed[mode] = env_vstats(&e, 0).pf_bypassed;
		/* present pages not yet mapped still exit (trap SPTEs) and work */
		assert_int_equal(acc(&e, 0, GVA + 0x3000, VMMU_SOFT_READ, 3, &r, &res), VMMU_SOFT_OK);
		assert_int_equal(res.exits, 1);
		/* a PD entry that is not present: notrap at level 2 */
		assert_int_equal(acc(&e, 0, 0x40000000ULL - 0x1000, VMMU_SOFT_READ, 0, &r, &res),
				 VMMU_SOFT_PAGE_FAULT);
		assert_int_equal(res.error_code, 0);
		assert_int_equal(res.exits, mode ? 0 : 1);
		/* the guest maps entry 9 through a PT write: now it exits (trap) and works */
		uint64_t v = 0x209000 | PTE_P | PTE_W | PTE_U;
		assert_int_equal(acc(&e, 0, GVA_PT + 9 * 8, VMMU_SOFT_WRITE, 0, &v, NULL), VMMU_SOFT_OK);
		assert_int_equal(acc(&e, 0, GVA + 0x9000, VMMU_SOFT_READ, 3, &r, &res), VMMU_SOFT_OK);
		assert_int_equal(res.exits, 1);
		assert_int_equal(vmmu_mmu_audit(e.mmu), 0);
		env_destroy(&e);
	}
	assert_int_equal(ec[0], VMMU_PFERR_WRITE | VMMU_PFERR_USER);
	assert_int_equal(ec[1], ec[0]);
	assert_int_equal(exits[0], 10);
	assert_int_equal(exits[1], 0);
	assert_int_equal(bypassed[0], 0);
	assert_int_equal(bypassed[1], 10);
}

/*
 * The 2014 race (KVM "flush tlb out of mmu lock when write-protect the
 * sptes"), replayed step by step: vCPU 0 holds a writable TLB entry for page
 * X; a dirty-log harvest clears W on X's SPTE and has not flushed yet (its
 * flush comes after the MMU lock is dropped); vCPU 1 starts using X as a page
 * table, so the MMU write-protects X for shadowing and finds W already clear.
 * Keyed on MMU-writable, that protection flushes before unlocking and vCPU 0's
 * next write to X faults and is tracked. Keyed on W (the knob), nothing is
 * flushed: vCPU 0 rewrites a guest PTE in X through its stale entry, the MMU
 * never sees it, and vCPU 1 keeps the old translation even after reloading
 * CR3, which the architecture forbids.
 */
static uint64_t race_once(bool flush_on_w, bool *stale_hit)
{
	const uint64_t X = 0x205000, D = GVA + 0x5000, G = 0x800000, P1 = 0x220000, P2 = 0x230000;
	struct vmmu_soft_result res;
	struct soft_env e;
	struct mmu_slot *s;
	struct vmmu_rmap_iter it;
	uint64_t v, r, *sptep;

	shadow_env(&e, 0, 2);
	build_tables(&e);
	*gpa_ptr(&e, X) = P1 | PTE_P | PTE_W | PTE_U | PTE_A | PTE_D;
	*gpa_ptr(&e, P1) = 0x1111;
	*gpa_ptr(&e, P2) = 0x2222;
	assert_int_equal(vmmu_vm_memslot_set_flags(e.vm, 0, VMMU_MEMSLOT_LOG_DIRTY), 0);
	/* warm-up: vCPU 1 walks to the PD through its mapping; vCPU 0 writes X through D (TLB entry with W) */
	assert_int_equal(acc(&e, 1, GVA_PD, VMMU_SOFT_READ, 0, &r, NULL), VMMU_SOFT_OK);
	v = 0;
	assert_int_equal(acc(&e, 0, D + 300 * 8, VMMU_SOFT_WRITE, 3, &v, NULL), VMMU_SOFT_OK);
	assert_int_equal(acc(&e, 0, D + 301 * 8, VMMU_SOFT_WRITE, 3, &v, &res), VMMU_SOFT_OK);
	assert_true(res.tlb_hit);
	/* a harvest's first half: W cleared on X's SPTEs under the MMU lock, the flush still to come */
	pthread_rwlock_rdlock(&e.mmu->slots_lock);
	pthread_mutex_lock(&e.mmu->lock);
	s = mmu_slot_of(e.mmu, X >> 12);
	vmmu_rmap_for_each(&it, mmu_rmap_head(s, X >> 12, 1), sptep)
		spte_and(sptep, ~VMMU_SPTE_WRITABLE);
	pthread_mutex_unlock(&e.mmu->lock);
	pthread_rwlock_unlock(&e.mmu->slots_lock);
	/* vCPU 1: PD entry 4 -> X, then a read through it: X becomes a shadowed guest table */
	mmu_debug_wrprot_flush_on_w = flush_on_w;
	v = X | TBL;
	assert_int_equal(acc(&e, 1, GVA_PD + 4 * 8, VMMU_SOFT_WRITE, 0, &v, NULL), VMMU_SOFT_OK);
	assert_int_equal(acc(&e, 1, G, VMMU_SOFT_READ, 3, &r, NULL), VMMU_SOFT_OK);
	assert_int_equal(r, 0x1111);
	mmu_debug_wrprot_flush_on_w = false;
	/* vCPU 0 remaps G to P2 by writing X through D */
	v = P2 | PTE_P | PTE_W | PTE_U | PTE_A | PTE_D;
	assert_int_equal(acc(&e, 0, D, VMMU_SOFT_WRITE, 3, &v, &res), VMMU_SOFT_OK);
	*stale_hit = res.tlb_hit;
	/* the harvest's flush */
	mmu_flush_request(e.mmu);
	mmu_flush_commit(e.mmu);
	/* vCPU 1 reloads CR3 (TLB emptied) and reads G */
	load_cr3(&e, 1, PML4 | 8, 0, 0);
	assert_int_equal(acc(&e, 1, G, VMMU_SOFT_READ, 3, &r, NULL), VMMU_SOFT_OK);
	assert_int_equal(vmmu_mmu_audit(e.mmu), 0); /* the audit sees SPTEs, not TLBs: it cannot catch this */
	env_destroy(&e);
	return r;
}

static void test_race_2014_flush_before_unlock(void **state)
{
	bool stale_hit;

	(void)state;
	/* the rule on: the write faults, is emulated, and vCPU 1 sees the remap */
	assert_int_equal(race_once(false, &stale_hit), 0x2222);
	assert_false(stale_hit);
	/* the rule off: the write went through the stale TLB entry and the remap is lost */
	assert_int_equal(race_once(true, &stale_hit), 0x1111);
	assert_true(stale_hit);
}

/*
 * Threads: two vCPUs remap, unmap, read and write through guest tables they
 * both use (their PT writes are emulated, each followed by INVLPG as a guest
 * does) while a third thread harvests the dirty log, ages and zaps. Every
 * value read must be a page marker; afterwards the audit holds and every
 * translation matches the guest tables.
 */
#define MT_PAGES 16
#define MT_ITERS 20000

struct mt {
	struct soft_env *e;
	unsigned int cpu;
	_Atomic bool done;
	_Atomic unsigned int bad;
};

static void *mt_vcpu(void *arg)
{
	struct mt *m = arg;
	uint64_t rs = 0x1234 + m->cpu, r, v;

	for (int it = 0; it < MT_ITERS; it++) {
		uint64_t x = test_rand64(&rs), i = 2 + x % 6, gva = GVA + i * 0x1000;
		int ret;

		switch ((x >> 8) % 8) {
		case 0: /* remap entry i, or unmap it */
			v = (0x210000 + ((x >> 20) % MT_PAGES) * 0x1000) | PTE_P | PTE_W | PTE_U;
			if ((x >> 16) % 5 == 0)
				v = 0;
			ret = acc(m->e, m->cpu, GVA_PT + i * 8, VMMU_SOFT_WRITE, 0, &v, NULL);
			vmmu_soft_invlpg(m->e->vcpu[m->cpu], gva);
			break;
		case 1:
		case 2:
			v = x;
			ret = acc(m->e, m->cpu, gva + 8 + ((x >> 24) % 500) * 8, VMMU_SOFT_WRITE, 3, &v, NULL);
			break;
		default:
			ret = acc(m->e, m->cpu, gva, VMMU_SOFT_READ, 3, &r, NULL);
			if (ret == VMMU_SOFT_OK &&
			    (r < 0x210000 || r >= 0x210000 + MT_PAGES * 0x1000 || (r & 0xfff)))
				m->bad++;
			break;
		}
		if (ret != VMMU_SOFT_OK && ret != VMMU_SOFT_PAGE_FAULT)
			m->bad++;
	}
	m->done = true;
	return NULL;
}

static void test_threads(void **state)
{
	struct soft_env e;
	struct mt m[2];
	pthread_t th[2];
	uint64_t buf[MEM / 4096 / 64], r;
	unsigned int rounds = 0;

	(void)state;
	shadow_env(&e, VMMU_MMU_F_SHADOW_BYPASS, 2);
	build_tables(&e);
	for (int p = 0; p < MT_PAGES; p++)
		*gpa_ptr(&e, 0x210000 + p * 0x1000) = 0x210000 + p * 0x1000;
	for (int i = 2; i < 8; i++)
		*gpa_ptr(&e, PT + i * 8) = (0x210000 + i * 0x1000) | PTE_P | PTE_W | PTE_U;
	assert_int_equal(vmmu_vm_memslot_set_flags(e.vm, 0, VMMU_MEMSLOT_LOG_DIRTY), 0);
	for (unsigned int c = 0; c < 2; c++) {
		m[c] = (struct mt){ .e = &e, .cpu = c };
		assert_int_equal(pthread_create(&th[c], NULL, mt_vcpu, &m[c]), 0);
	}
	for (; !m[0].done || !m[1].done; rounds++) {
		assert_true(vmmu_mmu_dirty_log_get(e.mmu, 0, buf) >= 0);
		assert_true(vmmu_mmu_age_gfn_range(e.mmu, 0, MEM / 4096, true) >= 0);
		if (rounds % 8 == 7)
			assert_int_equal(vmmu_mmu_zap_all(e.mmu), 0);
	}
	for (unsigned int c = 0; c < 2; c++) {
		pthread_join(th[c], NULL);
		assert_int_equal(m[c].bad, 0);
	}
	assert_int_equal(vmmu_mmu_audit(e.mmu), 0);
	/* every translation matches the guest tables */
	for (int i = 2; i < 8; i++) {
		uint64_t pte = *gpa_ptr(&e, PT + i * 8);

		for (unsigned int c = 0; c < 2; c++) {
			int ret;

			assert_int_equal(vmmu_soft_invlpg(e.vcpu[c], GVA + i * 0x1000), 0);
			ret = acc(&e, c, GVA + i * 0x1000, VMMU_SOFT_READ, 3, &r, NULL);
			if (pte & PTE_P) {
				assert_int_equal(ret, VMMU_SOFT_OK);
				assert_int_equal(r, pte & 0xfffff000);
			} else {
				assert_int_equal(ret, VMMU_SOFT_PAGE_FAULT);
			}
		}
	}
	assert_true(env_stats(&e).pt_writes > 0);
	env_destroy(&e);
}

/*
 * PAE: the PDPTE registers are loaded by the CR3 load. A PDPTE changed in
 * memory changes nothing (INVLPG included) until CR3 is loaded again; then
 * the new PD is used, through another shadow root (roots are keyed by CR3
 * and the PDPTE values). Same behaviour in TDP mode.
 */
static void test_pae_pdpte_registers(void **state)
{
	const uint64_t PDPT_PAE = 0x109020, PD_A = 0x10a000, PT_A = 0x10b000, PD_B = 0x10c000, PT_B = 0x10d000;
	struct vmmu_mmu_options tdp = { .size = sizeof(tdp) };
	uint64_t r = 0, created = 0;

	(void)state;
	for (int mode = 0; mode < 2; mode++) {
		struct soft_env e;
		struct vmmu_sregs s;

		if (mode)
			env_create(&e, VMMU_DIRTY_GET_CLEAR, 0, 0, MEM, 0, 1, &tdp);
		else
			shadow_env(&e, VMMU_MMU_F_SHADOW_BYPASS, 1);
		*gpa_ptr(&e, PDPT_PAE) = PD_A | PTE_P;
		*gpa_ptr(&e, PD_A + 2 * 8) = PT_A | TBL;
		*gpa_ptr(&e, PT_A) = 0x200000 | PTE_P | PTE_W | PTE_U;
		*gpa_ptr(&e, PD_B + 2 * 8) = PT_B | TBL;
		*gpa_ptr(&e, PT_B) = 0x300000 | PTE_P | PTE_W | PTE_U;
		*gpa_ptr(&e, 0x200000) = 0xaaaa;
		*gpa_ptr(&e, 0x300000) = 0xbbbb;
		assert_int_equal(vmmu_vcpu_get_sregs(e.vcpu[0], &s), 0);
		s.cr0 = VMMU_CR0_PG | VMMU_CR0_WP | 1;
		s.cr4 = VMMU_CR4_PAE;
		s.efer = VMMU_EFER_NXE;
		s.cr3 = PDPT_PAE;
		assert_int_equal(vmmu_vcpu_set_sregs(e.vcpu[0], &s), 0);
		/* 32-bit linear addresses: bit 32 and above are dropped */
		assert_int_equal(acc(&e, 0, (1ULL << 32) + GVA, VMMU_SOFT_READ, 3, &r, NULL), VMMU_SOFT_OK);
		assert_int_equal(r, 0xaaaa);
		*gpa_ptr(&e, PDPT_PAE) = PD_B | PTE_P;
		assert_int_equal(vmmu_soft_invlpg(e.vcpu[0], GVA), 0);
		assert_int_equal(acc(&e, 0, GVA, VMMU_SOFT_READ, 3, &r, NULL), VMMU_SOFT_OK);
		assert_int_equal(r, 0xaaaa);
		if (!mode)
			created = env_stats(&e).pages_created;
		assert_int_equal(vmmu_vcpu_set_sregs(e.vcpu[0], &s), 0);
		assert_int_equal(vmmu_soft_invlpg(e.vcpu[0], GVA), 0);
		assert_int_equal(acc(&e, 0, GVA, VMMU_SOFT_READ, 3, &r, NULL), VMMU_SOFT_OK);
		assert_int_equal(r, 0xbbbb);
		if (!mode) /* other registers, another root: root, PDPTE page, PD_B and PT_B shadows */
			assert_int_equal(env_stats(&e).pages_created, created + 4);
		/* a not-present PDPTE: #PF from the walker, exact code */
		assert_int_equal(acc(&e, 0, 0x40000000, VMMU_SOFT_WRITE, 3, &r, NULL), VMMU_SOFT_PAGE_FAULT);
		assert_int_equal(vmmu_mmu_audit(e.mmu), 0);
		env_destroy(&e);
	}
}

/* Ring mode: a shadow fault that would log into a soft-full ring says so; after a harvest and reset it goes on. */
static void test_dirty_ring_full(void **state)
{
	struct vmmu_mmu_options mo = { .size = sizeof(mo), .mode = VMMU_PAGING_4LEVEL, .flags = VMMU_MMU_F_SHADOW };
	struct vmmu_vm_options o = { .size = sizeof(o), .dirty_mode = VMMU_DIRTY_RING, .ring_entries = 256 };
	struct vmmu_guestmem mem;
	struct vmmu_vcpu *vcpu;
	struct vmmu_vm *vm;
	int full = -1, n;

	(void)state;
	assert_int_equal(vmmu_soft_vm_create(&vm, &o, &mo), 0);
	assert_int_equal(vmmu_guestmem_init(&mem, MEM, 0), 0);
	assert_int_equal(vmmu_vm_memslot_add(vm, 0, 0, MEM, mem.hva, VMMU_MEMSLOT_LOG_DIRTY), 0);
	assert_int_equal(vmmu_vcpu_create(vm, 0, &vcpu), 0);
	for (int i = 0; i < 300 && full < 0; i++) {
		uint64_t v = i;
		int r = vmmu_soft_access(vcpu, 0x200000 + i * 4096, 8, VMMU_SOFT_WRITE, 0, &v, NULL);

		if (r == VMMU_SOFT_DIRTY_RING_FULL)
			full = i;
		else
			assert_int_equal(r, VMMU_SOFT_OK);
	}
	assert_int_equal(full, 256 - 64); /* KVM's soft limit: 64 below the size */
	n = vmmu_vcpu_dirty_harvest(vcpu);
	assert_int_equal(n, full);
	assert_int_equal(vmmu_vm_dirty_reset(vm), full);
	{
		uint64_t v = 1;

		assert_int_equal(vmmu_soft_access(vcpu, 0x200000 + full * 4096, 8, VMMU_SOFT_WRITE, 0, &v, NULL),
				 VMMU_SOFT_OK);
	}
	assert_int_equal(vmmu_mmu_audit(vmmu_soft_mmu(vm)), 0);
	vmmu_vm_destroy(vm);
	vmmu_guestmem_finish(&mem);
}

static void test_options(void **state)
{
	struct vmmu_mmu_options mo = { .size = sizeof(mo), .mode = VMMU_PAGING_EPT4, .flags = VMMU_MMU_F_SHADOW };
	struct vmmu_vm_options o = { .size = sizeof(o) };
	struct log_capture c;
	struct vmmu_vm *vm;
	struct soft_env e;
	struct vmmu_sregs s;

	(void)state;
	log_capture_start(&c);
	assert_int_equal(vmmu_soft_vm_create(&vm, &o, &mo), -EINVAL);
	mo.mode = VMMU_PAGING_4LEVEL;
	mo.maxphyaddr = 52;
	mo.flags |= VMMU_MMU_F_SHADOW_BYPASS;
	assert_int_equal(vmmu_soft_vm_create(&vm, &o, &mo), -EINVAL);
	mo.flags = VMMU_MMU_F_SHADOW_BYPASS;
	assert_int_equal(vmmu_soft_vm_create(&vm, &o, &mo), -EINVAL);
	log_capture_stop();
	assert_int_equal(c.lines, 3);
	/* 32-bit paging is not shadowed */
	shadow_env(&e, 0, 1);
	assert_int_equal(vmmu_vcpu_get_sregs(e.vcpu[0], &s), 0);
	s.cr0 = VMMU_CR0_PG | 1;
	s.cr4 = 0;
	s.cr3 = PML4;
	log_capture_start(&c);
	assert_int_equal(vmmu_vcpu_set_sregs(e.vcpu[0], &s), -EOPNOTSUPP);
	log_capture_stop();
	assert_int_equal(c.lines, 1);
	/* paging off works through the identity map */
	env_write64(&e, 0, 0x5000, 99);
	assert_int_equal(*gpa_ptr(&e, 0x5000), 99);
	env_destroy(&e);
}

static void noflush(void *opaque) { (void)opaque; }

/* The MMU's shadow calls on bad input: -errno and a log line, nothing changed. */
static void test_bad_input(void **state)
{
	struct vmmu_mmu_options mo = { .size = sizeof(mo), .mode = VMMU_PAGING_4LEVEL, .flags = VMMU_MMU_F_SHADOW };
	struct vmmu_mmu_callbacks cb = { .flush_tlbs = noflush };
	struct vmmu_paging_regs pr = { .cr0 = VMMU_CR0_PG | 1, .cr3 = 0x1000, .cr4 = VMMU_CR4_PAE,
				       .efer = VMMU_EFER_LME | VMMU_EFER_LMA, .maxphyaddr = 48 };
	struct vmmu_guestmem mem;
	struct vmmu_mmu_vcpu *v, *vt;
	struct vmmu_mmu *mmu, *tdp;
	struct log_capture c;
	uint64_t x = 0;

	(void)state;
	assert_int_equal(vmmu_guestmem_init(&mem, MEM, 0), 0);
	assert_int_equal(vmmu_mmu_create(&mmu, &mo, &cb), 0);
	assert_int_equal(vmmu_mmu_memslot_set(mmu, 0, 0, MEM, mem.hva, 0), 0);
	assert_int_equal(vmmu_mmu_vcpu_create(mmu, 0, &v), 0);
	assert_int_equal(vmmu_mmu_create(&tdp, NULL, &cb), 0);
	assert_int_equal(vmmu_mmu_vcpu_create(tdp, 0, &vt), 0);
	log_capture_start(&c);
	assert_int_equal(vmmu_mmu_vcpu_set_guest(NULL, &pr), -EINVAL);
	assert_int_equal(vmmu_mmu_vcpu_set_guest(v, NULL), -EINVAL);
	assert_int_equal(vmmu_mmu_vcpu_set_guest(vt, &pr), -EOPNOTSUPP);
	assert_int_equal(vmmu_mmu_invlpg(NULL, 0), -EINVAL);
	assert_int_equal(vmmu_mmu_write_gpa(v, 0x1000, &x, 0), -EINVAL);
	assert_int_equal(vmmu_mmu_write_gpa(v, 0x1ffc, &x, 8), -EINVAL);
	assert_int_equal(vmmu_mmu_write_gpa(v, MEM, &x, 8), -EFAULT);
	log_capture_stop();
	assert_int_equal(c.lines, 7);
	/* valid calls work on the bare MMU: the guest's CR3 page is shadowed and tracked */
	assert_int_equal(vmmu_mmu_vcpu_set_guest(v, &pr), 0);
	*(uint64_t *)((uint8_t *)mem.hva + 0x1000) = 0x2000 | PTE_P | PTE_W;
	assert_int_equal(vmmu_mmu_page_fault(v, 0x1000, VMMU_PFERR_WRITE, NULL), VMMU_FAULT_INJECT_PF);
	x = 0;
	assert_int_equal(vmmu_mmu_write_gpa(v, 0x1000, &x, 8), 0);
	assert_int_equal(*(uint64_t *)((uint8_t *)mem.hva + 0x1000), 0);
	assert_int_equal(vmmu_mmu_invlpg(v, 0x1000), 0);
	assert_int_equal(vmmu_mmu_audit(mmu), 0);
	vmmu_mmu_vcpu_destroy(vt);
	vmmu_mmu_destroy(tdp);
	vmmu_mmu_vcpu_destroy(v);
	vmmu_mmu_destroy(mmu);
	vmmu_guestmem_finish(&mem);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fault_builds_shadow),
		cmocka_unit_test(test_pt_write_remaps),
		cmocka_unit_test(test_write_flooding),
		cmocka_unit_test(test_misaligned_write_zaps),
		cmocka_unit_test(test_cr3_and_invlpg),
		cmocka_unit_test(test_wp0_supervisor_write),
		cmocka_unit_test(test_bypass_saves_exits),
		cmocka_unit_test(test_race_2014_flush_before_unlock),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_pae_pdpte_registers),
		cmocka_unit_test(test_dirty_ring_full),
		cmocka_unit_test(test_options),
		cmocka_unit_test(test_bad_input),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
