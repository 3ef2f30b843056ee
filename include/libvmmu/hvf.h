/* SPDX-License-Identifier: MIT */
/*
 * The Hypervisor.framework backend. Today a stub: it compiles everywhere and
 * vmmu_vm_create(..., "hvf", ...) returns -EOPNOTSUPP. docs/porting.md says
 * how a real port maps each operation onto Hypervisor.framework.
 */
#ifndef LIBVMMU_HVF_H
#define LIBVMMU_HVF_H

#include <libvmmu/vm.h>

#ifdef __cplusplus
extern "C" {
#endif

/** vmmu_vm_is_hvf() - true if @vm was made by the Hypervisor.framework backend. */
VMMU_API bool vmmu_vm_is_hvf(const struct vmmu_vm *vm);

#ifdef __cplusplus
}
#endif

#endif
