/* SPDX-License-Identifier: MIT */
/* Shared set-up for tests of the MMU over the soft machine. */
#ifndef VMMU_TEST_SOFT_HELPERS_H
#define VMMU_TEST_SOFT_HELPERS_H

#include <string.h>

#include <libvmmu/soft.h>
#include <libvmmu/vm.h>

#include "helpers.h"

#define ENV_MAX_VCPUS 8

struct soft_env {
	struct vmmu_vm *vm;
	struct vmmu_mmu *mmu;
	struct vmmu_vcpu *vcpu[ENV_MAX_VCPUS];
	struct vmmu_guestmem mem;
	unsigned int nr_vcpus;
};

/* A soft VM with one slot (id 0) of @size bytes at GPA @gpa and @nr_vcpus vCPUs, paging off. */
static inline void env_create(struct soft_env *e, enum vmmu_dirty_mode mode, uint32_t vm_flags, uint64_t gpa,
			      uint64_t size, uint32_t slot_flags, unsigned int nr_vcpus,
			      const struct vmmu_mmu_options *mo)
{
	struct vmmu_vm_options o = { .size = sizeof(o), .dirty_mode = mode, .flags = vm_flags };

	memset(e, 0, sizeof(*e));
	assert_int_equal(vmmu_soft_vm_create(&e->vm, &o, mo), 0);
	e->mmu = vmmu_soft_mmu(e->vm);
	assert_non_null(e->mmu);
	assert_int_equal(vmmu_guestmem_init(&e->mem, size, VMMU_GUESTMEM_PREFAULT), 0);
	assert_int_equal(vmmu_vm_memslot_add(e->vm, 0, gpa, size, e->mem.hva, slot_flags), 0);
	for (unsigned int i = 0; i < nr_vcpus; i++)
		assert_int_equal(vmmu_vcpu_create(e->vm, i, &e->vcpu[i]), 0);
	e->nr_vcpus = nr_vcpus;
}

static inline void env_destroy(struct soft_env *e)
{
	vmmu_vm_destroy(e->vm);
	vmmu_guestmem_finish(&e->mem);
}

static inline struct vmmu_mmu_stats env_stats(struct soft_env *e)
{
	struct vmmu_mmu_stats st = { .size = sizeof(st) };

	assert_int_equal(vmmu_mmu_get_stats(e->mmu, &st), 0);
	return st;
}

static inline struct vmmu_soft_stats env_vstats(struct soft_env *e, unsigned int i)
{
	struct vmmu_soft_stats st = { .size = sizeof(st) };

	assert_int_equal(vmmu_soft_vcpu_stats(e->vcpu[i], &st), 0);
	return st;
}

static inline void env_write64(struct soft_env *e, unsigned int cpu, uint64_t gva, uint64_t v)
{
	assert_int_equal(vmmu_soft_access(e->vcpu[cpu], gva, 8, VMMU_SOFT_WRITE, 0, &v, NULL), VMMU_SOFT_OK);
}

static inline uint64_t env_read64(struct soft_env *e, unsigned int cpu, uint64_t gva)
{
	uint64_t v = 0;

	assert_int_equal(vmmu_soft_access(e->vcpu[cpu], gva, 8, VMMU_SOFT_READ, 0, &v, NULL), VMMU_SOFT_OK);
	return v;
}

#endif
