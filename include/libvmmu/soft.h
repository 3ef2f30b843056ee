/* SPDX-License-Identifier: MIT */
/*
 * The software machine ("soft" backend): a deterministic x86 memory system in
 * software, over the libvmmu MMU.
 *
 * It executes no instructions. The caller issues memory accesses as a vCPU
 * would (vmmu_soft_access()): the access goes through the vCPU's software TLB
 * and, on a miss, through the hardware walk a CPU with EPT (or NPT) makes: the
 * guest's own page tables (CR0/CR3/CR4/EFER from vmmu_vcpu_set_sregs()), each
 * guest table access and the final guest-physical address translated through
 * the SPTE tables the MMU built, setting A/D bits. A walk that fails raises
 * what hardware raises: an EPT violation, an EPT misconfiguration or an NPF
 * (handled by the MMU, then the access is retried), or a guest #PF / #GP
 * (delivered to the caller). The TLB is invalidated only by what invalidates a
 * real one: the MMU's flush requests, a CR3/CR0/CR4/EFER load (PCID is not
 * modelled), vmmu_soft_invlpg(), and a fault on the address.
 *
 * Shadow paging (an MMU created with VMMU_MMU_F_SHADOW, legacy 4-/5-level
 * format): the hardware walks only the MMU's tables, keyed by GVA, as a CPU
 * under KVM's shadow paging does: CR0.WP and EFER.NX forced on, the guest's
 * CR4.SMEP/SMAP and EFLAGS.AC live. Any #PF exits to the MMU, which walks the
 * guest's tables and fixes the SPTE, injects the guest's #PF, or asks for a
 * write to a shadowed guest table to be emulated; with
 * VMMU_MMU_F_SHADOW_BYPASS the machine models VMX's PFEC_MASK/PFEC_MATCH = 1
 * filter: #PFs with P=0 go to the guest without an exit.
 *
 * Several threads may issue accesses at once, one per vCPU.
 */
#ifndef LIBVMMU_SOFT_H
#define LIBVMMU_SOFT_H

#include <libvmmu/vm.h>
#include <libvmmu/mmu.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Access kinds of vmmu_soft_access(). */
#define VMMU_SOFT_READ  0u
#define VMMU_SOFT_WRITE 1u
#define VMMU_SOFT_FETCH 2u

/** Non-error outcomes of vmmu_soft_access(). */
enum vmmu_soft_outcome {
	VMMU_SOFT_OK = 0,              /**< the access completed (data read or written) */
	VMMU_SOFT_PAGE_FAULT = 1,      /**< a guest #PF: res->error_code and res->cr2; nothing accessed */
	VMMU_SOFT_GP = 2,              /**< a non-canonical address: #GP(0) */
	VMMU_SOFT_MMIO = 3,            /**< no memory and no handler at res->gpa: emulate it (a read leaves data as is) */
	VMMU_SOFT_DIRTY_RING_FULL = 4, /**< the dirty ring is soft-full: harvest and reset, then retry */
};

/** Details of one access. */
struct vmmu_soft_result {
	uint64_t error_code; /**< PAGE_FAULT: the #PF error code */
	vmmu_gva_t cr2;      /**< PAGE_FAULT: the faulting linear address */
	vmmu_gpa_t gpa;      /**< MMIO: the guest-physical address */
	uint32_t exits;      /**< EPT violations / misconfigurations / NPFs the MMU handled on the way */
	uint8_t tlb_hit;     /**< served from the software TLB without a walk */
	uint8_t pad[3];
	uint64_t reserved[2];
};

/**
 * vmmu_soft_access() - one memory access by @vcpu.
 * @gva: linear address (GPA when CR0.PG = 0).
 * @size: 1 to 8 bytes; an access crossing a page is done as two.
 * @kind: VMMU_SOFT_READ, _WRITE or _FETCH.
 * @cpl: 0..3 (3 = user-mode access).
 * @data: @size bytes: read into, or written from.
 * @res: details; may be NULL.
 *
 * Return: a vmmu_soft_outcome; -EINVAL (bad argument, not a soft vCPU);
 * -EBADF (destroyed vCPU); -ENOMEM; -EFAULT (the machine found an MMU bug; logged).
 */
VMMU_API int vmmu_soft_access(struct vmmu_vcpu *vcpu, vmmu_gva_t gva, unsigned int size, unsigned int kind,
			      unsigned int cpl, void *data, struct vmmu_soft_result *res);

/** vmmu_soft_invlpg() - INVLPG: drop @vcpu's TLB entries for @gva. Return: 0; -EINVAL. */
VMMU_API int vmmu_soft_invlpg(struct vmmu_vcpu *vcpu, vmmu_gva_t gva);

/**
 * typedef vmmu_soft_mmio_fn - emulate an MMIO access (no memslot, or a write to a read-only slot).
 * Fill @data for a read. Return 0 when handled, else a negative errno returned by the access.
 */
typedef int (*vmmu_soft_mmio_fn)(struct vmmu_vcpu *vcpu, vmmu_gpa_t gpa, unsigned int size, bool is_write,
				 void *data, void *opaque);

/** vmmu_soft_set_mmio_handler() - route MMIO accesses of @vm to @fn (NULL: return VMMU_SOFT_MMIO). Return: 0; -EINVAL. */
VMMU_API int vmmu_soft_set_mmio_handler(struct vmmu_vm *vm, vmmu_soft_mmio_fn fn, void *opaque);

/**
 * vmmu_soft_vm_create() - create a soft VM with explicit MMU options (format,
 * MAXPHYADDR, largest leaf, A/D). vmmu_vm_create(..., "soft", ...) uses the
 * defaults (EPT 4-level, MAXPHYADDR 48, 1 GiB leaves). The dirty mode and
 * ring size of @mmu_opts are taken from @opts.
 * Return: as vmmu_vm_create().
 */
VMMU_API int vmmu_soft_vm_create(struct vmmu_vm **out, const struct vmmu_vm_options *opts,
				 const struct vmmu_mmu_options *mmu_opts);

/** vmmu_vm_is_soft() - true if @vm was made by the soft backend. */
VMMU_API bool vmmu_vm_is_soft(const struct vmmu_vm *vm);

/** vmmu_soft_mmu() - the MMU of a soft VM (for statistics, audit, zap, aging); owned by the VM. NULL if not soft. */
VMMU_API struct vmmu_mmu *vmmu_soft_mmu(struct vmmu_vm *vm);

/** Per-vCPU counters of the machine. */
struct vmmu_soft_stats {
	uint32_t size;          /**< set by the caller */
	uint32_t pad;
	uint64_t accesses, tlb_hits, walks;
	uint64_t ept_violations, ept_misconfigs; /**< (NPF formats count NPFs as violations / RSVD NPFs as misconfigs) */
	uint64_t page_faults;   /**< guest #PFs delivered */
	uint64_t tlb_flushes;   /**< whole-TLB invalidations seen */
	uint64_t mmio, notifier_hits;
	uint64_t pf_bypassed;   /**< shadow paging with bypass: P=0 #PFs delivered to the guest without an exit */
	uint64_t pt_writes;     /**< shadow paging: writes to shadowed guest tables emulated */
	uint64_t reserved[2];
};

/** vmmu_soft_vcpu_stats() - copy @vcpu's counters. Return: 0; -EINVAL. */
VMMU_API int vmmu_soft_vcpu_stats(struct vmmu_vcpu *vcpu, struct vmmu_soft_stats *stats);

#ifdef __cplusplus
}
#endif

#endif
