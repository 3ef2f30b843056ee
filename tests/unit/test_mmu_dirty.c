/* SPDX-License-Identifier: MIT */
/*
 * Dirty logging in the MMU, through the soft machine: what enabling logging
 * does to huge mappings, which faults the lockless fast path fixes, and that
 * harvests re-protect exactly the harvested pages.
 */
#include <errno.h>
#include <string.h>

#include "soft/soft_helpers.h"
#include "mmu/mmu_internal.h"

#define SLOT_SIZE (4ULL << 20)
#define NPAGES (SLOT_SIZE >> 12)

/* vmmu_vm_dirty_get()/_peek() return 0; count the pages they reported. */
static int count_bits(int ret, const uint64_t *bm)
{
	int n = 0;

	assert_int_equal(ret, 0);
	for (uint64_t i = 0; i < NPAGES / 64; i++)
		n += __builtin_popcountll(bm[i]);
	return n;
}

/* Map the first 2 MiB huge, then turn logging on: reads keep hitting the huge leaf, now read-only. */
static void test_reads_after_enable_do_not_fault(void **state)
{
	struct soft_env e;
	uint64_t before, bm[NPAGES / 64];

	(void)state;
	env_create(&e, VMMU_DIRTY_GET_CLEAR, 0, 0, SLOT_SIZE, 0, 1, NULL);
	env_write64(&e, 0, 0x5000, 1);
	assert_int_equal(env_stats(&e).huge_mapped[1], 1);
	assert_int_equal(vmmu_vm_memslot_set_flags(e.vm, 0, VMMU_MEMSLOT_LOG_DIRTY), 0);
	assert_int_equal(vmmu_mmu_audit(e.mmu), 0);
	before = env_vstats(&e, 0).ept_violations;
	for (uint64_t p = 0; p < 512; p++)
		env_read64(&e, 0, p << 12);
	assert_int_equal(env_vstats(&e, 0).ept_violations, before);
	assert_int_equal(env_stats(&e).rmap_entries, 1); /* still the one huge leaf */
	/* nothing was written since logging started */
	assert_int_equal(count_bits(vmmu_vm_dirty_get(e.vm, 0, bm), bm), 0);
	env_destroy(&e);
}

/*
 * A write to the read-only huge leaf of a logging slot is not fixed by the
 * fast path (only its first 4 KiB would be logged): the slow path splits it,
 * and the next write to a sibling page is a fast-path fix.
 */
static void test_huge_write_splits_then_fast_path(void **state)
{
	struct soft_env e;
	uint64_t bm[NPAGES / 64];
	struct vmmu_mmu_stats st;

	(void)state;
	env_create(&e, VMMU_DIRTY_GET_CLEAR, 0, 0, SLOT_SIZE, 0, 1, NULL);
	env_read64(&e, 0, 0x5000);
	assert_int_equal(vmmu_vm_memslot_set_flags(e.vm, 0, VMMU_MEMSLOT_LOG_DIRTY), 0);
	env_write64(&e, 0, 0x7000, 2);
	st = env_stats(&e);
	assert_int_equal(st.splits, 1);
	assert_int_equal(st.fast_fixed, 0);
	assert_int_equal(vmmu_mmu_audit(e.mmu), 0); /* also: no writable huge leaf in a logging slot */
	env_write64(&e, 0, 0x9000, 3);
	st = env_stats(&e);
	assert_int_equal(st.fast_fixed, 1);
	assert_int_equal(st.splits, 1);
	assert_int_equal(count_bits(vmmu_vm_dirty_get(e.vm, 0, bm), bm), 2);
	assert_int_equal(bm[0], (1ULL << 7) | (1ULL << 9));
	assert_int_equal(vmmu_mmu_audit(e.mmu), 0);
	env_destroy(&e);
}

/* After a harvest, writes to the harvested pages are fixed on the fast path and logged again. */
static void test_writes_after_harvest_take_fast_path(void **state)
{
	struct soft_env e;
	uint64_t bm[NPAGES / 64];
	struct vmmu_mmu_stats st;

	(void)state;
	env_create(&e, VMMU_DIRTY_GET_CLEAR, 0, 0, SLOT_SIZE, VMMU_MEMSLOT_LOG_DIRTY, 1, NULL);
	for (uint64_t p = 0; p < 100; p++)
		env_write64(&e, 0, p << 12, p);
	st = env_stats(&e);
	assert_int_equal(st.huge_mapped[1], 0);
	assert_int_equal(st.huge_mapped[0], 100);
	assert_int_equal(count_bits(vmmu_vm_dirty_get(e.vm, 0, bm), bm), 100);
	assert_int_equal(vmmu_mmu_audit(e.mmu), 0);
	/* reads do not fault: the harvest only took W away */
	uint64_t viol = env_vstats(&e, 0).ept_violations;
	for (uint64_t p = 0; p < 100; p++)
		assert_int_equal(env_read64(&e, 0, p << 12), p);
	assert_int_equal(env_vstats(&e, 0).ept_violations, viol);
	for (uint64_t p = 0; p < 100; p += 2)
		env_write64(&e, 0, p << 12, p + 1);
	st = env_stats(&e);
	assert_int_equal(st.fast_fixed, 50);
	assert_int_equal(count_bits(vmmu_vm_dirty_get(e.vm, 0, bm), bm), 50);
	for (uint64_t p = 0; p < 100; p++)
		assert_int_equal(!!(bm[p / 64] & (1ULL << (p % 64))), p % 2 == 0);
	assert_int_equal(vmmu_mmu_audit(e.mmu), 0);
	env_destroy(&e);
}

/* Manual protect: a clear re-protects exactly the pages cleared. */
static void test_manual_clear_protects_exactly(void **state)
{
	struct soft_env e;
	uint64_t bm[NPAGES / 64], mask[NPAGES / 64];

	(void)state;
	env_create(&e, VMMU_DIRTY_MANUAL, 0, 0, SLOT_SIZE, VMMU_MEMSLOT_LOG_DIRTY, 1, NULL);
	for (uint64_t p = 0; p < 128; p++)
		env_write64(&e, 0, p << 12, p);
	assert_int_equal(count_bits(vmmu_vm_dirty_peek(e.vm, 0, bm), bm), 128);
	memset(mask, 0, sizeof(mask));
	mask[0] = ~0ULL; /* clear pages 0..63 only */
	assert_int_equal(vmmu_vm_dirty_clear(e.vm, 0, 0, 64, mask), 0);
	assert_int_equal(vmmu_mmu_audit(e.mmu), 0);
	uint64_t fast = env_stats(&e).fast_fixed;
	for (uint64_t p = 0; p < 128; p++)
		env_write64(&e, 0, p << 12, p + 1);
	assert_int_equal(env_stats(&e).fast_fixed - fast, 64); /* only the cleared pages faulted */
	assert_int_equal(count_bits(vmmu_vm_dirty_peek(e.vm, 0, bm), bm), 128);
	env_destroy(&e);
}

/* INITIALLY_SET: nothing protected up front (huge leaves stay writable), the first clear protects. */
static void test_initially_set(void **state)
{
	struct soft_env e;
	uint64_t bm[NPAGES / 64], mask[NPAGES / 64];
	struct vmmu_mmu_stats st;

	(void)state;
	env_create(&e, VMMU_DIRTY_MANUAL, VMMU_VM_F_INITIALLY_SET, 0, SLOT_SIZE, 0, 1, NULL);
	env_write64(&e, 0, 0x3000, 1); /* 2 MiB writable leaf */
	assert_int_equal(vmmu_vm_memslot_set_flags(e.vm, 0, VMMU_MEMSLOT_LOG_DIRTY), 0);
	assert_int_equal(count_bits(vmmu_vm_dirty_peek(e.vm, 0, bm), bm), NPAGES);
	memset(mask, 0xff, sizeof(mask));
	assert_int_equal(vmmu_vm_dirty_clear(e.vm, 0, 0, NPAGES, mask), 0);
	assert_int_equal(vmmu_mmu_audit(e.mmu), 0);
	env_write64(&e, 0, 0x4000, 2);
	st = env_stats(&e);
	assert_int_equal(st.splits, 1);
	assert_int_equal(count_bits(vmmu_vm_dirty_peek(e.vm, 0, bm), bm), 1);
	assert_int_equal(bm[0], 1ULL << 4);
	env_destroy(&e);
}

/* Ring mode: the reset re-protects exactly the harvested pages; a soft-full ring stops writes. */
static void test_ring(void **state)
{
	struct vmmu_vm_options o = { .size = sizeof(o), .dirty_mode = VMMU_DIRTY_RING, .ring_entries = 256 };
	struct vmmu_guestmem mem;
	struct vmmu_vcpu *vcpu;
	struct vmmu_vm *vm;
	uint64_t bm[NPAGES / 64], v = 1;
	int r = 0, p;

	(void)state;
	assert_int_equal(vmmu_soft_vm_create(&vm, &o, NULL), 0);
	assert_int_equal(vmmu_guestmem_init(&mem, SLOT_SIZE, 0), 0);
	assert_int_equal(vmmu_vm_memslot_add(vm, 0, 0, SLOT_SIZE, mem.hva, VMMU_MEMSLOT_LOG_DIRTY), 0);
	assert_int_equal(vmmu_vcpu_create(vm, 0, &vcpu), 0);
	for (p = 0; p < 1000; p++) {
		r = vmmu_soft_access(vcpu, (uint64_t)p << 12, 8, VMMU_SOFT_WRITE, 0, &v, NULL);
		if (r != VMMU_SOFT_OK)
			break;
	}
	assert_int_equal(r, VMMU_SOFT_DIRTY_RING_FULL);
	assert_int_equal(p, 256 - 64); /* soft limit: entries - 64 reserved */
	assert_int_equal(count_bits(vmmu_vm_dirty_get(vm, 0, bm), bm), 256 - 64);
	assert_int_equal(bm[0], ~0ULL);
	assert_int_equal(bm[2], ~0ULL);
	assert_int_equal(bm[3], 0);
	assert_int_equal(vmmu_soft_access(vcpu, (uint64_t)p << 12, 8, VMMU_SOFT_WRITE, 0, &v, NULL), VMMU_SOFT_OK);
	assert_int_equal(vmmu_mmu_audit(vmmu_soft_mmu(vm)), 0);
	vmmu_vm_destroy(vm);
	vmmu_guestmem_finish(&mem);
}

/* Turning logging off lets huge leaves come back. */
static void test_disable_recovers_huge(void **state)
{
	struct soft_env e;

	(void)state;
	env_create(&e, VMMU_DIRTY_GET_CLEAR, 0, 0, SLOT_SIZE, VMMU_MEMSLOT_LOG_DIRTY, 1, NULL);
	env_write64(&e, 0, 0x1000, 1);
	assert_int_equal(env_stats(&e).huge_mapped[0], 1);
	assert_int_equal(vmmu_vm_memslot_set_flags(e.vm, 0, 0), 0);
	env_write64(&e, 0, 0x1000, 1);
	assert_int_equal(env_stats(&e).huge_mapped[1], 1);
	assert_int_equal(env_stats(&e).rmap_entries, 1);
	assert_int_equal(vmmu_mmu_audit(e.mmu), 0);
	env_destroy(&e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reads_after_enable_do_not_fault),
		cmocka_unit_test(test_huge_write_splits_then_fast_path),
		cmocka_unit_test(test_writes_after_harvest_take_fast_path),
		cmocka_unit_test(test_manual_clear_protects_exactly),
		cmocka_unit_test(test_initially_set),
		cmocka_unit_test(test_ring),
		cmocka_unit_test(test_disable_recovers_huge),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
