/* SPDX-License-Identifier: MIT */
/*
 * The Hypervisor.framework backend, as a stub: it compiles on every system and
 * refuses to create a VM. Each op below names the Hypervisor.framework call a
 * real port makes (docs/porting.md has the whole mapping), so that the port is
 * a matter of filling the bodies in on macOS.
 */

#include <errno.h>

#include <libvmmu/hvf.h>

#include "backend.h"

/* A real port: hv_vm_create(HV_VM_DEFAULT); caps from hv_capability() / sysctl. */
static int hvf_vm_create(struct vmmu_vm **out, const struct vmmu_vm_options *opts)
{
	(void)out;
	(void)opts;
	log_err("hvf: the Hypervisor.framework backend is a stub: it cannot create VMs "
		"(see docs/porting.md)");
	return -EOPNOTSUPP;
}

/* The ops below are unreachable until create succeeds; each returns -EOPNOTSUPP. */

/* hv_vm_destroy() after every vCPU thread called hv_vcpu_destroy(). */
static void hvf_vm_destroy(struct vmmu_vm *vm)
{
	vm_finish(vm);
}

/*
 * hv_vm_map(hva, gpa, size, HV_MEMORY_READ | HV_MEMORY_WRITE | HV_MEMORY_EXEC);
 * read-only slots drop HV_MEMORY_WRITE; a flags change is hv_vm_protect(). Dirty
 * logging on a slot: hv_vm_protect(gpa, size, READ | EXEC) and log the write
 * faults (see dirty_log_get).
 */
static int hvf_memslot_set(struct vmmu_vm *vm, uint32_t id, vmmu_gpa_t gpa, uint64_t size, void *hva,
			   uint32_t flags)
{
	return -EOPNOTSUPP;
}

/* hv_vm_unmap(gpa, size). */
static int hvf_memslot_delete(struct vmmu_vm *vm, uint32_t id, vmmu_gpa_t gpa)
{
	return -EOPNOTSUPP;
}

/* hv_vcpu_create(&vcpuid, HV_VCPU_DEFAULT) on the thread that will run it (HVF vCPUs are thread-bound). */
static int hvf_vcpu_create(struct vmmu_vm *vm, uint32_t id, struct vmmu_vcpu **out)
{
	return -EOPNOTSUPP;
}

/* hv_vcpu_destroy(vcpuid), on the vCPU's own thread. */
static void hvf_vcpu_release(struct vmmu_vcpu *vcpu)
{
}

static void hvf_vcpu_free(struct vmmu_vcpu *vcpu)
{
}

/* hv_vcpu_read_register(vcpuid, HV_X86_RAX ...), one call per register. */
static int hvf_get_regs(struct vmmu_vcpu *vcpu, struct vmmu_regs *regs)
{
	return -EOPNOTSUPP;
}

/* hv_vcpu_write_register(vcpuid, HV_X86_RAX ...). */
static int hvf_set_regs(struct vmmu_vcpu *vcpu, const struct vmmu_regs *regs)
{
	return -EOPNOTSUPP;
}

/* hv_vmx_vcpu_read_vmcs(vcpuid, VMCS_GUEST_CS_SELECTOR / _BASE / _LIMIT / _AR ...); HV_X86_CR0... */
static int hvf_get_sregs(struct vmmu_vcpu *vcpu, struct vmmu_sregs *sregs)
{
	return -EOPNOTSUPP;
}

/* hv_vmx_vcpu_write_vmcs() for segments and control registers; EFER via VMCS_GUEST_IA32_EFER. */
static int hvf_set_sregs(struct vmmu_vcpu *vcpu, const struct vmmu_sregs *sregs)
{
	return -EOPNOTSUPP;
}

/*
 * hv_vcpu_run_until(vcpuid, HV_DEADLINE_FOREVER), then decode VMCS_RO_EXIT_REASON:
 * I/O instruction -> VMMU_EXIT_IO (decode the exit qualification), EPT violation
 * on an unmapped GPA -> VMMU_EXIT_MMIO (the port decodes the instruction, as
 * HVF has no in-kernel emulator), on a write-protected logged page -> log it,
 * hv_vm_protect() it writable, re-enter; HLT -> VMMU_EXIT_HLT; triple fault ->
 * VMMU_EXIT_SHUTDOWN; HV_EXIT_REASON_CANCELED (the run was cut short) -> VMMU_EXIT_INTR.
 */
static int hvf_run(struct vmmu_vcpu *vcpu, struct vmmu_exit *exit)
{
	return -EOPNOTSUPP;
}

/* hv_vcpu_interrupt(&vcpuid, 1): any thread. */
static int hvf_kick(struct vmmu_vcpu *vcpu)
{
	return -EOPNOTSUPP;
}

/*
 * No kernel dirty log: the port keeps its own bitmap, filled from the write
 * faults taken on hv_vm_protect()ed pages. GET_CLEAR copies it, clears it and
 * write-protects the reported pages again with hv_vm_protect(gpa, 4096, READ | EXEC)
 * (coalesced into runs).
 */
static int hvf_dirty_log_get(struct vmmu_vm *vm, uint32_t id, uint64_t npages, uint64_t *bitmap)
{
	return -EOPNOTSUPP;
}

/* MANUAL: hv_vm_protect(READ | EXEC) on the runs of set bits only. */
static int hvf_dirty_log_clear(struct vmmu_vm *vm, uint32_t id, uint64_t first_page, uint64_t npages,
			       const uint64_t *bitmap)
{
	return -EOPNOTSUPP;
}

/*
 * No notifiers in the framework: the port matches MMIO exits against its list
 * and signals the eventfd-like object itself (an exit per write, unlike KVM).
 */
static int hvf_notifier_add(struct vmmu_vm *vm, const struct vmmu_notifier *n)
{
	return -EOPNOTSUPP;
}

static int hvf_notifier_remove(struct vmmu_vm *vm, const struct vmmu_notifier *n)
{
	return -EOPNOTSUPP;
}

/* No ring ops: the port fills its bitmap itself, so create refuses VMMU_DIRTY_RING (docs/porting.md 5). */
const struct vm_ops hvf_vm_ops = {
	.name = "hvf",
	.create = hvf_vm_create,
	.destroy = hvf_vm_destroy,
	.memslot_set = hvf_memslot_set,
	.memslot_delete = hvf_memslot_delete,
	.vcpu_create = hvf_vcpu_create,
	.vcpu_release = hvf_vcpu_release,
	.vcpu_free = hvf_vcpu_free,
	.get_regs = hvf_get_regs,
	.set_regs = hvf_set_regs,
	.get_sregs = hvf_get_sregs,
	.set_sregs = hvf_set_sregs,
	.run = hvf_run,
	.kick = hvf_kick,
	.dirty_log_get = hvf_dirty_log_get,
	.dirty_log_clear = hvf_dirty_log_clear,
	.notifier_add = hvf_notifier_add,
	.notifier_remove = hvf_notifier_remove,
};

bool vmmu_vm_is_hvf(const struct vmmu_vm *vm)
{
	return vm && vm->ops == &hvf_vm_ops;
}
