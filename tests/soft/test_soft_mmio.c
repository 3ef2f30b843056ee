/* SPDX-License-Identifier: MIT */
/*
 * MMIO SPTEs: the first access to a GPA without a memslot installs one; the
 * next access is an EPT misconfiguration resolved without a memslot lookup;
 * any memslot change makes them stale, and a wrap of the generation bits they
 * keep zaps everything. Notifier writes complete without emulation.
 */
#include <errno.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "soft/soft_helpers.h"
#include "mmu/mmu_internal.h"

#define HOLE 0x10000000ULL

static void test_mmio_spte_cached(void **state)
{
	struct vmmu_soft_result res;
	struct soft_env e;
	uint64_t v = 0;

	(void)state;
	env_create(&e, VMMU_DIRTY_GET_CLEAR, 0, 0, 2 << 20, 0, 1, NULL);
	assert_int_equal(vmmu_soft_access(e.vcpu[0], HOLE + 8, 4, VMMU_SOFT_READ, 0, &v, &res), VMMU_SOFT_MMIO);
	assert_int_equal(res.gpa, HOLE + 8);
	assert_int_equal(env_vstats(&e, 0).ept_violations, 1);
	assert_int_equal(env_stats(&e).mmio_hits, 0);
	assert_int_equal(vmmu_soft_access(e.vcpu[0], HOLE + 8, 4, VMMU_SOFT_WRITE, 0, &v, &res), VMMU_SOFT_MMIO);
	assert_int_equal(env_vstats(&e, 0).ept_misconfigs, 1);
	assert_int_equal(env_stats(&e).mmio_hits, 1);
	assert_int_equal(env_vstats(&e, 0).ept_violations, 1);
	assert_int_equal(vmmu_mmu_audit(e.mmu), 0);
	env_destroy(&e);
}

/* After a memslot change, an old MMIO SPTE is not trusted: memory added there is read. */
static void test_stale_mmio_not_trusted(void **state)
{
	struct vmmu_guestmem m2;
	struct soft_env e;
	uint64_t v = 0;

	(void)state;
	env_create(&e, VMMU_DIRTY_GET_CLEAR, 0, 0, 2 << 20, 0, 1, NULL);
	assert_int_equal(vmmu_soft_access(e.vcpu[0], HOLE, 8, VMMU_SOFT_READ, 0, &v, NULL), VMMU_SOFT_MMIO);
	/* a change elsewhere: the SPTE is stale, the access still MMIO, the SPTE re-made */
	assert_int_equal(vmmu_vm_memslot_set_flags(e.vm, 0, VMMU_MEMSLOT_LOG_DIRTY), 0);
	assert_int_equal(vmmu_soft_access(e.vcpu[0], HOLE, 8, VMMU_SOFT_READ, 0, &v, NULL), VMMU_SOFT_MMIO);
	assert_int_equal(env_stats(&e).mmio_stale, 1);
	assert_int_equal(env_stats(&e).mmio_hits, 0);
	assert_int_equal(vmmu_soft_access(e.vcpu[0], HOLE, 8, VMMU_SOFT_READ, 0, &v, NULL), VMMU_SOFT_MMIO);
	assert_int_equal(env_stats(&e).mmio_hits, 1);
	/* memory appears at the hole */
	assert_int_equal(vmmu_guestmem_init(&m2, 2 << 20, 0), 0);
	*(uint64_t *)m2.hva = 0xabcdef;
	assert_int_equal(vmmu_vm_memslot_add(e.vm, 1, HOLE, 2 << 20, m2.hva, 0), 0);
	assert_int_equal(vmmu_soft_access(e.vcpu[0], HOLE, 8, VMMU_SOFT_READ, 0, &v, NULL), VMMU_SOFT_OK);
	assert_int_equal(v, 0xabcdef);
	assert_int_equal(env_stats(&e).mmio_stale, 2);
	assert_int_equal(vmmu_mmu_audit(e.mmu), 0);
	env_destroy(&e);
	vmmu_guestmem_finish(&m2);
}

/* When the 19 generation bits wrap, every shadow page is zapped (an old SPTE could match again). */
static void test_generation_wrap_zaps_all(void **state)
{
	struct soft_env e;
	struct vmmu_memslots *slots;
	uint64_t v = 0, freed;

	(void)state;
	env_create(&e, VMMU_DIRTY_GET_CLEAR, 0, 0, 2 << 20, 0, 1, NULL);
	slots = (struct vmmu_memslots *)vmmu_mmu_memslots(e.mmu);
	slots->generation = VMMU_SPTE_MMIO_GEN_MASK - 1;
	assert_int_equal(vmmu_vm_memslot_set_flags(e.vm, 0, VMMU_MEMSLOT_LOG_DIRTY), 0); /* gen 0x7ffff */
	assert_int_equal(vmmu_soft_access(e.vcpu[0], HOLE, 8, VMMU_SOFT_READ, 0, &v, NULL), VMMU_SOFT_MMIO);
	freed = env_stats(&e).pages_freed;
	assert_int_equal(vmmu_vm_memslot_set_flags(e.vm, 0, 0), 0); /* wraps to 0 */
	assert_true(env_stats(&e).pages_freed > freed);
	assert_int_equal(env_stats(&e).pages, 1); /* only the root a vCPU still holds, invalid */
	assert_int_equal(vmmu_soft_access(e.vcpu[0], HOLE, 8, VMMU_SOFT_READ, 0, &v, NULL), VMMU_SOFT_MMIO);
	assert_int_equal(env_vstats(&e, 0).ept_misconfigs, 0);
	env_destroy(&e);
}

static void test_notifier_completes_write(void **state)
{
	struct vmmu_notifier n = { .addr = HOLE + 0x40, .len = 4, .fd = eventfd(0, EFD_NONBLOCK) };
	struct soft_env e;
	uint64_t cnt = 0;
	uint32_t v = 1;

	(void)state;
	assert_true(n.fd >= 0);
	env_create(&e, VMMU_DIRTY_GET_CLEAR, 0, 0, 2 << 20, 0, 1, NULL);
	assert_int_equal(vmmu_vm_notifier_add(e.vm, &n), 0);
	for (int i = 0; i < 3; i++)
		assert_int_equal(vmmu_soft_access(e.vcpu[0], HOLE + 0x40, 4, VMMU_SOFT_WRITE, 0, &v, NULL), VMMU_SOFT_OK);
	assert_int_equal(read(n.fd, &cnt, 8), 8);
	assert_int_equal(cnt, 3);
	assert_int_equal(env_stats(&e).mmio_hits, 2); /* the 2nd and 3rd found the MMIO SPTE */
	/* another length is not the notifier's: emulation */
	assert_int_equal(vmmu_soft_access(e.vcpu[0], HOLE + 0x40, 2, VMMU_SOFT_WRITE, 0, &v, NULL), VMMU_SOFT_MMIO);
	assert_int_equal(vmmu_vm_notifier_remove(e.vm, &n), 0);
	assert_int_equal(vmmu_soft_access(e.vcpu[0], HOLE + 0x40, 4, VMMU_SOFT_WRITE, 0, &v, NULL), VMMU_SOFT_MMIO);
	env_destroy(&e);
	close(n.fd);
}

static int mmio_handler(struct vmmu_vcpu *vcpu, vmmu_gpa_t gpa, unsigned int size, bool is_write, void *data,
			void *opaque)
{
	(void)vcpu;
	*(int *)opaque += 1;
	if (!is_write)
		memcpy(data, &gpa, size);
	return 0;
}

static void test_mmio_handler(void **state)
{
	struct soft_env e;
	uint64_t v = 0;
	int calls = 0;

	(void)state;
	env_create(&e, VMMU_DIRTY_GET_CLEAR, 0, 0, 2 << 20, 0, 1, NULL);
	assert_int_equal(vmmu_soft_set_mmio_handler(e.vm, mmio_handler, &calls), 0);
	assert_int_equal(vmmu_soft_access(e.vcpu[0], HOLE + 16, 8, VMMU_SOFT_READ, 0, &v, NULL), VMMU_SOFT_OK);
	assert_int_equal(v, HOLE + 16);
	assert_int_equal(calls, 1);
	env_destroy(&e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mmio_spte_cached),
		cmocka_unit_test(test_stale_mmio_not_trusted),
		cmocka_unit_test(test_generation_wrap_zaps_all),
		cmocka_unit_test(test_notifier_completes_write),
		cmocka_unit_test(test_mmio_handler),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
