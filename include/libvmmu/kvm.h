/* SPDX-License-Identifier: MIT */
/*
 * The KVM backend's own calls: file descriptors for callers that add what the
 * VM API does not cover, and KVM's own GVA translation (KVM_TRANSLATE), which
 * tests compare with vmmu_vcpu_translate().
 */
#ifndef LIBVMMU_KVM_H
#define LIBVMMU_KVM_H

#include <libvmmu/vm.h>

#ifdef __cplusplus
extern "C" {
#endif

/** vmmu_vm_is_kvm() - true if @vm was made by the KVM backend. */
VMMU_API bool vmmu_vm_is_kvm(const struct vmmu_vm *vm);

/**
 * vmmu_kvm_vm_fd() - the VM file descriptor; owned by the VM (do not close).
 * Return: the fd; -EINVAL if @vm is not a KVM VM.
 */
VMMU_API int vmmu_kvm_vm_fd(const struct vmmu_vm *vm);

/**
 * vmmu_kvm_vcpu_fd() - the vCPU file descriptor; owned by the vCPU.
 * Return: the fd; -EINVAL if @vcpu is not a KVM vCPU; -EBADF if destroyed.
 */
VMMU_API int vmmu_kvm_vcpu_fd(const struct vmmu_vcpu *vcpu);

/**
 * vmmu_kvm_translate() - KVM_TRANSLATE: KVM's own translation of @gva.
 * @gpa: receives the guest physical address (valid when *@valid).
 * @valid: receives whether KVM found a translation.
 *
 * Return: 0; -EINVAL (NULL, not KVM); -EBADF (destroyed); -errno of the ioctl.
 */
VMMU_API int vmmu_kvm_translate(struct vmmu_vcpu *vcpu, vmmu_gva_t gva, vmmu_gpa_t *gpa, bool *valid);

#ifdef __cplusplus
}
#endif

#endif
