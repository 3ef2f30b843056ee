/* SPDX-License-Identifier: MIT */
/*
 * The MMU in every SPTE format it builds (EPT 4/5-level, with and without A/D,
 * NPT 4/5-level, 4 KiB-only) through the soft machine: mapping, huge leaves,
 * MMIO caching (EPT misconfiguration or reserved-bit NPF), dirty logging with
 * the fast path; and bad input to the MMU API.
 */
#include <errno.h>
#include <string.h>

#include "soft/soft_helpers.h"
#include "mmu/mmu_internal.h"

#define HOLE 0x20000000ULL

struct fmt_case {
	const char *name;
	struct vmmu_mmu_options mo;
	int huge_level; /* largest leaf expected for a 2 MiB-aligned slot of 4 MiB */
};

static void run_case(const struct fmt_case *c)
{
	struct soft_env e;
	uint64_t bm[1024 / 64], v = 0;
	struct vmmu_mmu_stats st;

	env_create(&e, VMMU_DIRTY_GET_CLEAR, 0, 0, 4 << 20, 0, 1, &c->mo);
	for (uint64_t p = 0; p < 1024; p += 17)
		env_write64(&e, 0, p << 12, p);
	for (uint64_t p = 0; p < 1024; p += 17)
		assert_int_equal(env_read64(&e, 0, p << 12), p);
	st = env_stats(&e);
	assert_int_equal(st.huge_mapped[c->huge_level - 1] > 0, 1);
	/* MMIO: installed on the first access, a cached hit on the second */
	assert_int_equal(vmmu_soft_access(e.vcpu[0], HOLE, 8, VMMU_SOFT_READ, 0, &v, NULL), VMMU_SOFT_MMIO);
	assert_int_equal(vmmu_soft_access(e.vcpu[0], HOLE, 8, VMMU_SOFT_READ, 0, &v, NULL), VMMU_SOFT_MMIO);
	assert_int_equal(env_stats(&e).mmio_hits, 1);
	/* logging: protect, re-dirty through the fast path, harvest exactly those */
	assert_int_equal(vmmu_vm_memslot_set_flags(e.vm, 0, VMMU_MEMSLOT_LOG_DIRTY), 0);
	for (uint64_t p = 0; p < 64; p++)
		env_write64(&e, 0, p << 12, p + 1);
	assert_int_equal(vmmu_vm_dirty_get(e.vm, 0, bm), 0);
	assert_int_equal(bm[0], ~0ULL);
	assert_int_equal(bm[1], 0);
	uint64_t fast = env_stats(&e).fast_fixed;
	for (uint64_t p = 0; p < 64; p++)
		env_write64(&e, 0, p << 12, p + 2);
	assert_int_equal(env_stats(&e).fast_fixed - fast, 64);
	assert_int_equal(vmmu_vm_dirty_get(e.vm, 0, bm), 0);
	assert_int_equal(bm[0], ~0ULL);
	assert_int_equal(vmmu_mmu_audit(e.mmu), 0);
	/* aging sees the pages just written */
	assert_true(vmmu_mmu_age_gfn_range(e.mmu, 0, 64, true) >= 1);
	env_destroy(&e);
}

static void test_formats(void **state)
{
	static const struct fmt_case cases[] = {
		{ "ept4", { .size = sizeof(struct vmmu_mmu_options), .mode = VMMU_PAGING_EPT4 }, 2 },
		{ "ept5", { .size = sizeof(struct vmmu_mmu_options), .mode = VMMU_PAGING_EPT5 }, 2 },
		{ "ept4 no A/D", { .size = sizeof(struct vmmu_mmu_options), .mode = VMMU_PAGING_EPT4, .ad_disabled = 1 }, 2 },
		{ "ept4 4K only", { .size = sizeof(struct vmmu_mmu_options), .mode = VMMU_PAGING_EPT4, .max_leaf_level = 1 }, 1 },
		{ "npt4", { .size = sizeof(struct vmmu_mmu_options), .mode = VMMU_PAGING_4LEVEL }, 2 },
		{ "npt5", { .size = sizeof(struct vmmu_mmu_options), .mode = VMMU_PAGING_5LEVEL, .maxphyaddr = 50 }, 2 },
	};

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		printf("format %s\n", cases[i].name);
		run_case(&cases[i]);
	}
}

static void noflush(void *opaque) { (void)opaque; }

static void test_bad_input(void **state)
{
	struct vmmu_mmu_callbacks cb = { .flush_tlbs = noflush };
	struct vmmu_mmu_options o = { .size = sizeof(o) };
	struct vmmu_guestmem mem;
	struct vmmu_mmu_vcpu *v;
	struct vmmu_mmu *mmu;
	struct log_capture c;
	uint64_t bm[8];

	(void)state;
	assert_int_equal(vmmu_guestmem_init(&mem, 2 << 20, 0), 0);
	log_capture_start(&c);
	assert_int_equal(vmmu_mmu_create(NULL, NULL, &cb), -EINVAL);
	assert_int_equal(vmmu_mmu_create(&mmu, NULL, &(struct vmmu_mmu_callbacks){ 0 }), -EINVAL);
	o.mode = VMMU_PAGING_PAE;
	assert_int_equal(vmmu_mmu_create(&mmu, &o, &cb), -EINVAL);
	o.mode = 0;
	o.maxphyaddr = 40;
	assert_int_equal(vmmu_mmu_create(&mmu, &o, &cb), -EINVAL);
	o.maxphyaddr = 0;
	o.flags = VMMU_MMU_F_INITIALLY_SET;
	o.dirty = VMMU_MMU_DIRTY_RING;
	assert_int_equal(vmmu_mmu_create(&mmu, &o, &cb), -EINVAL);
	o.flags = 0;
	o.ring_entries = 1000;                 /* not a power of two */
	assert_int_equal(vmmu_mmu_create(&mmu, &o, &cb), -EINVAL);
	o.ring_entries = 128;                  /* below the 256-entry minimum */
	assert_int_equal(vmmu_mmu_create(&mmu, &o, &cb), -EINVAL);
	o.ring_entries = 256;
	o.reserved[0] = 1;                     /* reserved fields must be zero */
	assert_int_equal(vmmu_mmu_create(&mmu, &o, &cb), -EINVAL);
	o.reserved[0] = 0;
	o.dirty = 0;
	o.ring_entries = 0;
	assert_int_equal(c.lines, 8);
	assert_int_equal(vmmu_mmu_create(&mmu, NULL, &cb), 0);
	assert_int_equal(vmmu_mmu_memslot_set(mmu, 0, 0x1000, 2 << 20, mem.hva, 0), 0);
	assert_int_equal(vmmu_mmu_memslot_set(mmu, 0, 0x2000, 2 << 20, mem.hva, 0), -EINVAL);
	assert_int_equal(vmmu_mmu_memslot_set(mmu, 0, 0x1000, 2 << 20, mem.hva, VMMU_MEMSLOT_READONLY), -EINVAL);
	assert_int_equal(vmmu_mmu_memslot_set(mmu, 1, 0x1001, 4096, mem.hva, 0), -EINVAL);
	assert_int_equal(vmmu_mmu_memslot_delete(mmu, 7), -ENOENT);
	assert_int_equal(vmmu_mmu_memslot_move(mmu, 7, 0), -ENOENT);
	assert_int_equal(vmmu_mmu_vcpu_create(mmu, 0, &v), 0);
	assert_int_equal(vmmu_mmu_page_fault(NULL, 0, 0, NULL), -EINVAL);
	assert_int_equal(vmmu_mmu_page_fault(v, 1ULL << 48, 0, NULL), -EINVAL);
	assert_int_equal(vmmu_mmu_dirty_log_get(mmu, 0, bm), -EPERM);
	assert_int_equal(vmmu_mmu_dirty_log_get(mmu, 3, bm), -ENOENT);
	assert_int_equal(vmmu_mmu_dirty_ring_reset(mmu), -EOPNOTSUPP);
	assert_int_equal(vmmu_mmu_vcpu_dirty_harvest(v, NULL, 0), -EOPNOTSUPP);
	assert_int_equal(vmmu_mmu_zap_gfn_range(mmu, 5, 4), -EINVAL);
	assert_int_equal(c.lines, 8 + 12);
	log_capture_stop();
	/* nothing above changed anything */
	assert_int_equal(vmmu_mmu_page_fault(v, 0x1000, VMMU_PFERR_WRITE, NULL), VMMU_FAULT_FIXED);
	assert_int_equal(vmmu_mmu_audit(mmu), 0);
	vmmu_mmu_vcpu_destroy(v);
	vmmu_mmu_destroy(mmu);
	vmmu_mmu_destroy(NULL);
	vmmu_mmu_vcpu_destroy(NULL);
	vmmu_guestmem_finish(&mem);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_formats),
		cmocka_unit_test(test_bad_input),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
