/* SPDX-License-Identifier: MIT */
/*
 * Fault injection: a scenario (create, memslots, vCPUs, faults at every level,
 * huge splits, dirty logging on, harvests, a move and a delete) is run once
 * per allocation the MMU makes, with exactly that allocation failing. The
 * operation that hit it must return -ENOMEM, leave the tables and reverse maps
 * as they were (same pages and rmap entries, audit clean), and succeed when
 * retried.
 */
#include <errno.h>

#include "soft/soft_helpers.h"
#include "mmu/mmu_internal.h"

static int alloc_count, fail_at;
static int injected;

static bool fail_hook(void)
{
	if (++alloc_count == fail_at) {
		injected++;
		return true;
	}
	return false;
}

struct snap {
	uint64_t pages, rmap;
};

static struct snap take(struct vmmu_mmu *mmu)
{
	struct vmmu_mmu_stats st = { .size = sizeof(st) };

	if (!mmu)
		return (struct snap){ 0 };
	assert_int_equal(vmmu_mmu_get_stats(mmu, &st), 0);
	return (struct snap){ st.pages, st.rmap_entries };
}

/* Run @expr; if it failed for the injected allocation, check nothing changed and run it again. */
#define STEP_(mmu, expr, same)                                                          \
	do {                                                                            \
		int before_ = injected;                                                 \
		struct snap s0_ = take(mmu);                                            \
		int r_ = (expr);                                                        \
		if (injected != before_ && r_ < 0) {                                    \
			assert_int_equal(r_, -ENOMEM);                                  \
			struct snap s1_ = take(mmu);                                    \
			if (same)                                                       \
				assert_int_equal(s0_.pages, s1_.pages);                 \
			assert_int_equal(s0_.rmap, s1_.rmap);                           \
			if (mmu)                                                        \
				assert_int_equal(vmmu_mmu_audit(mmu), 0);               \
			r_ = (expr);                                                    \
		}                                                                       \
		assert_true(r_ >= 0);                                                   \
	} while (0)
#define STEP(mmu, expr) STEP_(mmu, expr, true)

static uint64_t access_w(struct vmmu_vcpu *v, uint64_t gpa, unsigned int kind)
{
	uint64_t d = gpa;

	return (uint64_t)vmmu_soft_access(v, gpa, 8, kind, 0, &d, NULL);
}

/* An access to a hole: VMMU_SOFT_MMIO is the success here. */
static int mmio_access(struct vmmu_vcpu *v, uint64_t gpa)
{
	int r = (int)access_w(v, gpa, VMMU_SOFT_READ);

	return r == VMMU_SOFT_MMIO ? 0 : r < 0 ? r : -EPROTO;
}

static void scenario(void)
{
	struct vmmu_vm_options o = { .size = sizeof(o) };
	struct vmmu_guestmem mem, mem2;
	struct vmmu_vcpu *vcpu = NULL;
	struct vmmu_vm *vm = NULL;
	struct vmmu_mmu *mmu = NULL;
	uint64_t bm[4096 / 64];

	assert_int_equal(vmmu_guestmem_init(&mem, 8 << 20, 0), 0);
	assert_int_equal(vmmu_guestmem_init(&mem2, 2 << 20, 0), 0);
	STEP(mmu, vmmu_soft_vm_create(&vm, &o, NULL));
	mmu = vmmu_soft_mmu(vm);
	STEP(mmu, vmmu_vm_memslot_add(vm, 0, 0, 8 << 20, mem.hva, 0));
	STEP(mmu, vmmu_vm_memslot_add(vm, 1, 0x40000000, 2 << 20, mem2.hva, VMMU_MEMSLOT_LOG_DIRTY));
	STEP(mmu, vmmu_vcpu_create(vm, 0, &vcpu));
	/* the first access also loads the vCPU's root (vCPU entry), which stays on a later failure */
	STEP_(mmu, (int)access_w(vcpu, 0x1000, VMMU_SOFT_READ), false);
	STEP(mmu, (int)access_w(vcpu, 0x40003000, VMMU_SOFT_WRITE));
	STEP(mmu, mmio_access(vcpu, 0x7ff000000ULL));
	STEP(mmu, vmmu_vm_memslot_set_flags(vm, 0, VMMU_MEMSLOT_LOG_DIRTY));
	STEP(mmu, (int)access_w(vcpu, 0x2000, VMMU_SOFT_WRITE)); /* split */
	STEP(mmu, (int)access_w(vcpu, 0x3000, VMMU_SOFT_WRITE)); /* fast path */
	STEP(mmu, vmmu_vm_dirty_get(vm, 0, bm));
	STEP(mmu, (int)access_w(vcpu, 0x3000, VMMU_SOFT_WRITE));
	STEP(mmu, vmmu_vm_memslot_set_flags(vm, 0, 0));
	STEP(mmu, (int)access_w(vcpu, 0x600000, VMMU_SOFT_WRITE));
	STEP(mmu, vmmu_mmu_memslot_move(mmu, 1, 0x80000000));
	STEP(mmu, (int)access_w(vcpu, 0x80000000, VMMU_SOFT_WRITE));
	STEP(mmu, vmmu_vm_memslot_remove(vm, 1));
	STEP(mmu, (int)access_w(vcpu, 0x5000, VMMU_SOFT_WRITE));
	assert_int_equal(vmmu_mmu_audit(mmu), 0);
	vmmu_vm_destroy(vm);
	vmmu_guestmem_finish(&mem);
	vmmu_guestmem_finish(&mem2);
}

static void test_every_allocation_fails_once(void **state)
{
	int total;

	(void)state;
	mmu_alloc_fail_hook = fail_hook;
	alloc_count = 0;
	fail_at = 0;
	scenario();
	total = alloc_count;
	assert_true(total > 10);
	for (fail_at = 1; fail_at <= total; fail_at++) {
		alloc_count = 0;
		injected = 0;
		scenario();
		assert_int_equal(injected, 1);
	}
	mmu_alloc_fail_hook = NULL;
	printf("%d allocation sites failed in turn\n", total);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_allocation_fails_once),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
