/* SPDX-License-Identifier: MIT */
/* The soft backend's API when it is not built (-Dsoft=disabled): every call refuses, so the ABI stays the same. */

#include <errno.h>

#include <libvmmu/soft.h>

#include "internal.h"

static int soft_not_built(const char *what)
{
	log_err("soft: %s: the soft backend is not built into this library", what);
	return -ENODEV;
}

int vmmu_soft_access(struct vmmu_vcpu *vcpu, vmmu_gva_t gva, unsigned int size, unsigned int kind, unsigned int cpl,
		     void *data, struct vmmu_soft_result *res)
{
	(void)vcpu, (void)gva, (void)size, (void)kind, (void)cpl, (void)data, (void)res;
	return soft_not_built("access");
}

int vmmu_soft_invlpg(struct vmmu_vcpu *vcpu, vmmu_gva_t gva)
{
	(void)vcpu, (void)gva;
	return soft_not_built("invlpg");
}

int vmmu_soft_set_mmio_handler(struct vmmu_vm *vm, vmmu_soft_mmio_fn fn, void *opaque)
{
	(void)vm, (void)fn, (void)opaque;
	return soft_not_built("set_mmio_handler");
}

int vmmu_soft_vm_create(struct vmmu_vm **out, const struct vmmu_vm_options *opts,
			const struct vmmu_mmu_options *mmu_opts)
{
	(void)opts, (void)mmu_opts;
	if (out)
		*out = NULL;
	return soft_not_built("vm_create");
}

bool vmmu_vm_is_soft(const struct vmmu_vm *vm)
{
	(void)vm;
	return false;
}

struct vmmu_mmu *vmmu_soft_mmu(struct vmmu_vm *vm)
{
	(void)vm;
	return NULL;
}

int vmmu_soft_vcpu_stats(struct vmmu_vcpu *vcpu, struct vmmu_soft_stats *stats)
{
	(void)vcpu, (void)stats;
	return soft_not_built("vcpu_stats");
}
