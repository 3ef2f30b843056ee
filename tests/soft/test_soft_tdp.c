/* SPDX-License-Identifier: MIT */
/*
 * The soft machine over the MMU in TDP mode: faults build EPT tables with huge
 * leaves where the slot allows, the guest's own page tables are walked with
 * A/D updates and exact #PFs, and the software TLB is invalidated only by
 * what invalidates a real one.
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "soft/soft_helpers.h"
#include "mmu/mmu_internal.h"

static void test_map_read_write(void **state)
{
	struct vmmu_soft_result res;
	struct soft_env e;
	uint64_t v = 0x1122334455667788ULL, r = 0;

	(void)state;
	env_create(&e, VMMU_DIRTY_GET_CLEAR, 0, 0, 4 << 20, 0, 1, NULL);
	assert_int_equal(vmmu_soft_access(e.vcpu[0], 0x1008, 8, VMMU_SOFT_WRITE, 0, &v, &res), VMMU_SOFT_OK);
	assert_int_equal(res.exits, 1);
	assert_memory_equal((uint8_t *)e.mem.hva + 0x1008, &v, 8);
	assert_int_equal(vmmu_soft_access(e.vcpu[0], 0x1008, 8, VMMU_SOFT_READ, 0, &r, &res), VMMU_SOFT_OK);
	assert_true(res.tlb_hit);
	assert_int_equal(r, v);
	/* the whole 2 MiB came with that fault: a read of another 4 KiB page does not fault */
	assert_int_equal(vmmu_soft_access(e.vcpu[0], 0x1ff000, 8, VMMU_SOFT_READ, 0, &r, &res), VMMU_SOFT_OK);
	assert_int_equal(res.exits, 0);
	struct vmmu_mmu_stats st = env_stats(&e);
	assert_int_equal(st.huge_mapped[1], 1);
	assert_int_equal(st.huge_mapped[0], 0);
	assert_int_equal(st.faults[VMMU_FAULT_FIXED], 1);
	assert_int_equal(st.rmap_entries, 1);
	assert_int_equal(vmmu_mmu_audit(e.mmu), 0);
	env_destroy(&e);
}

/* A slot whose GPA and host address disagree modulo 2 MiB gets 4 KiB leaves only. */
static void test_misaligned_slot_maps_small(void **state)
{
	struct vmmu_vm_options o = { .size = sizeof(o) };
	struct vmmu_guestmem mem;
	struct vmmu_vcpu *vcpu;
	struct vmmu_vm *vm;
	uint64_t v = 7;

	(void)state;
	assert_int_equal(vmmu_soft_vm_create(&vm, &o, NULL), 0);
	assert_int_equal(vmmu_guestmem_init(&mem, 4 << 20, 0), 0);
	assert_int_equal(vmmu_vm_memslot_add(vm, 0, 0x1000, 4 << 20, mem.hva, 0), 0);
	assert_int_equal(vmmu_vcpu_create(vm, 0, &vcpu), 0);
	assert_int_equal(vmmu_soft_access(vcpu, 0x200000, 8, VMMU_SOFT_WRITE, 0, &v, NULL), VMMU_SOFT_OK);
	assert_int_equal(*(uint64_t *)((uint8_t *)mem.hva + 0x1ff000), 7);
	struct vmmu_mmu_stats st = { .size = sizeof(st) };
	assert_int_equal(vmmu_mmu_get_stats(vmmu_soft_mmu(vm), &st), 0);
	assert_int_equal(st.huge_mapped[1], 0);
	assert_int_equal(st.huge_mapped[0], 1);
	assert_int_equal(vmmu_mmu_audit(vmmu_soft_mmu(vm)), 0);
	vmmu_vm_destroy(vm);
	vmmu_guestmem_finish(&mem);
}

#define PML4 0x100000
#define PDPT 0x101000
#define PD   0x102000
#define PT   0x103000
#define PTE_P (1ULL << 0)
#define PTE_W (1ULL << 1)
#define PTE_U (1ULL << 2)
#define PTE_A (1ULL << 5)
#define PTE_D (1ULL << 6)

static uint64_t *gpa_ptr(struct soft_env *e, uint64_t gpa) { return (uint64_t *)((uint8_t *)e->mem.hva + gpa); }

/* gva 0x400000 -> gpa 0x200000 (4 KiB, user, writable); gva 0x401000 not present. */
static void build_guest_tables(struct soft_env *e)
{
	struct vmmu_sregs s;

	*gpa_ptr(e, PML4) = PDPT | PTE_P | PTE_W | PTE_U;
	*gpa_ptr(e, PDPT) = PD | PTE_P | PTE_W | PTE_U;
	*gpa_ptr(e, PD + 2 * 8) = PT | PTE_P | PTE_W | PTE_U;
	*gpa_ptr(e, PT) = 0x200000 | PTE_P | PTE_W | PTE_U;
	assert_int_equal(vmmu_vcpu_get_sregs(e->vcpu[0], &s), 0);
	s.cr0 = VMMU_CR0_PG | VMMU_CR0_WP | 1;
	s.cr4 = VMMU_CR4_PAE;
	s.efer = VMMU_EFER_LME | VMMU_EFER_LMA;
	s.cr3 = PML4;
	assert_int_equal(vmmu_vcpu_set_sregs(e->vcpu[0], &s), 0);
}

static void test_guest_paging(void **state)
{
	struct vmmu_soft_result res;
	struct soft_env e;
	uint64_t v = 42, r;

	(void)state;
	env_create(&e, VMMU_DIRTY_GET_CLEAR, 0, 0, 4 << 20, 0, 1, NULL);
	build_guest_tables(&e);
	assert_int_equal(vmmu_soft_access(e.vcpu[0], 0x400010, 8, VMMU_SOFT_WRITE, 3, &v, &res), VMMU_SOFT_OK);
	assert_int_equal(*gpa_ptr(&e, 0x200010), 42);
	assert_int_equal(*gpa_ptr(&e, PT) & (PTE_A | PTE_D), PTE_A | PTE_D);
	assert_true(*gpa_ptr(&e, PML4) & PTE_A);
	/* not present: #PF with W|U, P clear */
	assert_int_equal(vmmu_soft_access(e.vcpu[0], 0x401000, 8, VMMU_SOFT_WRITE, 3, &v, &res), VMMU_SOFT_PAGE_FAULT);
	assert_int_equal(res.error_code, VMMU_PFERR_WRITE | VMMU_PFERR_USER);
	assert_int_equal(res.cr2, 0x401000);
	/* the guest unmaps the page: the TLB keeps the old translation until INVLPG */
	*gpa_ptr(&e, PT) = 0;
	assert_int_equal(vmmu_soft_access(e.vcpu[0], 0x400010, 8, VMMU_SOFT_READ, 3, &r, &res), VMMU_SOFT_OK);
	assert_true(res.tlb_hit);
	assert_int_equal(r, 42);
	assert_int_equal(vmmu_soft_invlpg(e.vcpu[0], 0x400010), 0);
	assert_int_equal(vmmu_soft_access(e.vcpu[0], 0x400010, 8, VMMU_SOFT_READ, 3, &r, &res), VMMU_SOFT_PAGE_FAULT);
	assert_int_equal(res.error_code, VMMU_PFERR_USER);
	/* a CR3 load also empties the TLB (no PCID) */
	*gpa_ptr(&e, PT) = 0x200000 | PTE_P | PTE_U; /* read-only now */
	assert_int_equal(vmmu_soft_access(e.vcpu[0], 0x400010, 8, VMMU_SOFT_READ, 3, &r, &res), VMMU_SOFT_OK);
	assert_int_equal(vmmu_soft_access(e.vcpu[0], 0x400010, 8, VMMU_SOFT_WRITE, 3, &v, &res), VMMU_SOFT_PAGE_FAULT);
	assert_int_equal(res.error_code, VMMU_PFERR_PRESENT | VMMU_PFERR_WRITE | VMMU_PFERR_USER);
	assert_int_equal(vmmu_mmu_audit(e.mmu), 0);
	env_destroy(&e);
}

/*
 * With EPT A/D on, the CPU's accesses to guest page tables are writes for EPT:
 * a walk through tables in a logging slot dirties the table pages (and
 * only the data page the access wrote).
 */
static void test_guest_table_walk_dirties_tables(void **state)
{
	struct soft_env e;
	uint64_t v = 1, bm[16];

	(void)state;
	env_create(&e, VMMU_DIRTY_GET_CLEAR, 0, 0, 4 << 20, VMMU_MEMSLOT_LOG_DIRTY, 1, NULL);
	build_guest_tables(&e);
	assert_int_equal(vmmu_soft_access(e.vcpu[0], 0x400000, 8, VMMU_SOFT_READ, 3, &v, NULL), VMMU_SOFT_OK);
	assert_int_equal(vmmu_vm_dirty_get(e.vm, 0, bm), 0);
	assert_int_equal(vmmu_soft_invlpg(e.vcpu[0], 0x400000), 0);
	assert_int_equal(vmmu_soft_access(e.vcpu[0], 0x400000, 8, VMMU_SOFT_READ, 3, &v, NULL), VMMU_SOFT_OK);
	assert_int_equal(vmmu_vm_dirty_get(e.vm, 0, bm), 0);
	/* PML4, PDPT, PD, PT at gfns 0x100..0x103; the data page 0x200 was only read */
	assert_int_equal(bm[0x100 / 64], 0xfULL << (0x100 % 64));
	assert_int_equal(bm[0x200 / 64], 0);
	assert_int_equal(vmmu_mmu_audit(e.mmu), 0);
	env_destroy(&e);
}

/* A zap is followed by a flush: the next access walks again and faults. */
static void test_zap_flushes_tlb(void **state)
{
	struct vmmu_soft_result res;
	struct soft_env e;
	uint64_t r;

	(void)state;
	env_create(&e, VMMU_DIRTY_GET_CLEAR, 0, 0, 4 << 20, 0, 1, NULL);
	env_read64(&e, 0, 0x3000);
	assert_int_equal(vmmu_soft_access(e.vcpu[0], 0x3000, 8, VMMU_SOFT_READ, 0, &r, &res), VMMU_SOFT_OK);
	assert_true(res.tlb_hit);
	assert_int_equal(vmmu_mmu_zap_gfn_range(e.mmu, 0, 0x400), 1);
	assert_int_equal(vmmu_soft_access(e.vcpu[0], 0x3000, 8, VMMU_SOFT_READ, 0, &r, &res), VMMU_SOFT_OK);
	assert_false(res.tlb_hit);
	assert_int_equal(res.exits, 1);
	assert_int_equal(vmmu_mmu_zap_all(e.mmu), 0);
	assert_int_equal(vmmu_soft_access(e.vcpu[0], 0x3000, 8, VMMU_SOFT_READ, 0, &r, &res), VMMU_SOFT_OK);
	assert_int_equal(res.exits, 1); /* the root was reloaded, then one violation */
	struct vmmu_mmu_stats st = env_stats(&e);
	assert_true(st.flush_performed >= 2);
	assert_int_equal(vmmu_mmu_audit(e.mmu), 0);
	env_destroy(&e);
}

static void test_readonly_slot(void **state)
{
	struct vmmu_guestmem rom;
	struct vmmu_soft_result res;
	struct soft_env e;
	uint64_t v = 5, r;

	(void)state;
	env_create(&e, VMMU_DIRTY_GET_CLEAR, 0, 0, 2 << 20, 0, 1, NULL);
	assert_int_equal(vmmu_guestmem_init(&rom, 2 << 20, 0), 0);
	*(uint64_t *)rom.hva = 99;
	assert_int_equal(vmmu_vm_memslot_add(e.vm, 1, 0x800000, 2 << 20, rom.hva, VMMU_MEMSLOT_READONLY), 0);
	assert_int_equal(vmmu_soft_access(e.vcpu[0], 0x800000, 8, VMMU_SOFT_READ, 0, &r, NULL), VMMU_SOFT_OK);
	assert_int_equal(r, 99);
	assert_int_equal(vmmu_soft_access(e.vcpu[0], 0x800000, 8, VMMU_SOFT_WRITE, 0, &v, &res), VMMU_SOFT_MMIO);
	assert_int_equal(res.gpa, 0x800000);
	assert_int_equal(*(uint64_t *)rom.hva, 99);
	assert_int_equal(vmmu_mmu_audit(e.mmu), 0);
	env_destroy(&e);
	vmmu_guestmem_finish(&rom);
}

/* 1 GiB leaves where the slot allows; logging then splits 1 GiB -> 2 MiB -> 4 KiB on writes only. */
static void test_gib_leaf_and_split(void **state)
{
	struct vmmu_vm_options o = { .size = sizeof(o) };
	uint64_t size = 1ULL << 30, v = 3, bm[(1ULL << 18) / 64];
	struct vmmu_mmu_stats st = { .size = sizeof(st) };
	struct vmmu_vcpu *vcpu;
	struct vmmu_vm *vm;
	uint8_t *raw, *hva;

	(void)state;
	raw = mmap(NULL, 2 * size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	assert_true(raw != MAP_FAILED);
	hva = (uint8_t *)(((uintptr_t)raw + size - 1) & ~(uintptr_t)(size - 1));
	assert_int_equal(vmmu_soft_vm_create(&vm, &o, NULL), 0);
	assert_int_equal(vmmu_vm_memslot_add(vm, 0, size, size, hva, 0), 0);
	assert_int_equal(vmmu_vcpu_create(vm, 0, &vcpu), 0);
	assert_int_equal(vmmu_soft_access(vcpu, size + 0x1234000, 8, VMMU_SOFT_READ, 0, &v, NULL), VMMU_SOFT_OK);
	assert_int_equal(vmmu_mmu_get_stats(vmmu_soft_mmu(vm), &st), 0);
	assert_int_equal(st.huge_mapped[2], 1);
	assert_int_equal(vmmu_vm_memslot_set_flags(vm, 0, VMMU_MEMSLOT_LOG_DIRTY), 0);
	v = 3;
	assert_int_equal(vmmu_soft_access(vcpu, size + 0x1234000, 8, VMMU_SOFT_WRITE, 0, &v, NULL), VMMU_SOFT_OK);
	assert_int_equal(*(uint64_t *)(hva + 0x1234000), 3);
	assert_int_equal(vmmu_mmu_get_stats(vmmu_soft_mmu(vm), &st), 0);
	assert_int_equal(st.splits, 2);
	/* 511 read-only 2 MiB leaves + 511 read-only 4 KiB leaves + the written one */
	assert_int_equal(st.rmap_entries, 511 + 512);
	assert_int_equal(vmmu_mmu_audit(vmmu_soft_mmu(vm)), 0);
	assert_int_equal(vmmu_vm_dirty_get(vm, 0, bm), 0);
	assert_int_equal(bm[0x1234 / 64], 1ULL << (0x1234 % 64));
	vmmu_vm_destroy(vm);
	munmap(raw, 2 * size);
}

static void test_vm_api(void **state)
{
	struct vmmu_exit ex;
	struct soft_env e;
	struct log_capture c;

	(void)state;
	env_create(&e, VMMU_DIRTY_GET_CLEAR, 0, 0, 2 << 20, 0, 1, NULL);
	assert_string_equal(vmmu_vm_backend_name(e.vm), "soft");
	assert_true(vmmu_vm_is_soft(e.vm));
	log_capture_start(&c);
	assert_int_equal(vmmu_vcpu_run(e.vcpu[0], &ex), -EOPNOTSUPP);
	assert_int_equal(vmmu_soft_access(e.vcpu[0], 0, 9, VMMU_SOFT_READ, 0, &ex, NULL), -EINVAL);
	log_capture_stop();
	assert_int_equal(c.lines, 2);
	env_destroy(&e);
	{
		struct vmmu_vm *vm;

		assert_int_equal(vmmu_vm_create(&vm, "soft", NULL), 0);
		assert_true(vmmu_vm_is_soft(vm));
		vmmu_vm_destroy(vm);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_map_read_write),
		cmocka_unit_test(test_misaligned_slot_maps_small),
		cmocka_unit_test(test_guest_paging),
		cmocka_unit_test(test_guest_table_walk_dirties_tables),
		cmocka_unit_test(test_zap_flushes_tlb),
		cmocka_unit_test(test_readonly_slot),
		cmocka_unit_test(test_gib_leaf_and_split),
		cmocka_unit_test(test_vm_api),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
