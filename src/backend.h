/* SPDX-License-Identifier: MIT */
/*
 * The backend contract behind include/libvmmu/vm.h. Never installed.
 *
 * A backend fills one file-static const struct vm_ops and embeds struct
 * vmmu_vm (and struct vmmu_vcpu) as the FIRST member of its own VM (vCPU)
 * struct, so the generic layer (src/vm.c) and the backend convert with a cast.
 * "Is this a KVM VM" is a comparison of vm->ops with the backend's table.
 *
 * src/vm.c validates every argument before calling an op (NULL pointers,
 * alignment, overlaps, ranges, the dirty mode, a destroyed vCPU), keeps the
 * memslot mirror and the per-slot logs of pages marked dirty, and logs. An op
 * receives valid arguments and returns 0 / a count / -errno; it logs what only
 * it can explain (which ioctl failed). An optional op left NULL makes its
 * public call return -EOPNOTSUPP with a log line.
 */
#ifndef VMMU_BACKEND_H
#define VMMU_BACKEND_H

#include <pthread.h>
#include <stdatomic.h>

#include <libvmmu/dirty.h>
#include <libvmmu/vm.h>

#include "internal.h"

struct vm_ops;

/*
 * Pages of one slot with dirty logging that the VMM marked or that were taken
 * from a dirty ring, not yet reported by vmmu_vm_dirty_get(). Marks are
 * lock-free (the bitmap's atomic OR); taking them is under vm->lock.
 */
struct dirty_slot {
	struct vmmu_dirty_bitmap *bm; /* the VMM's marks (lock-free) */
	atomic_bool any;     /* set after every mark: lets harvests skip the merge */
	uint64_t npages;
	vmmu_gfn_t base_gfn;
	uint64_t *scratch;   /* VMMU_DIRTY_WORDS(npages) words for merging marks */
	uint64_t *ring_bits; /* RING mode: pages taken from rings, plain words under vm->lock */
};

/* The common part of every VM; first member of each backend's VM struct. */
struct vmmu_vm {
	const struct vm_ops *ops;
	struct vmmu_vm_options opts;
	struct vmmu_vm_caps caps;     /* filled by the backend's create */
	uint32_t paging_flags;        /* VMMU_PAGING_F_GBPAGES / _AMD of the guest CPU, for translation */
	struct vmmu_memslots *slots;  /* mirror of the backend's slots */
	pthread_mutex_t lock;         /* vCPU list, dirty bookkeeping */
	struct vmmu_vcpu **vcpus;     /* every vCPU created, destroyed ones included */
	unsigned int nr_vcpus, cap_vcpus;
	struct dirty_slot **dirty;    /* indexed by slot id; NULL without logging */
	uint32_t nr_dirty;            /* length of @dirty */
};

/* The common part of every vCPU; first member of each backend's vCPU struct. */
struct vmmu_vcpu {
	struct vmmu_vm *vm;
	uint32_t id;
	bool destroyed;              /* backend resources released; the handle refuses use */
	struct vmmu_paging *paging;  /* vmmu_vcpu_translate()'s context, kept between calls */
};

struct vm_ops {
	const char *name;

	/*
	 * Mandatory. Allocate the backend VM (vm_init() its base), probe and fill
	 * base.caps, apply @opts (already validated for shape, not for support:
	 * refuse with -EOPNOTSUPP and a log line).
	 */
	int (*create)(struct vmmu_vm **out, const struct vmmu_vm_options *opts);
	/* Mandatory. Release everything (vCPUs were destroyed already); free the struct via vm_finish(). */
	void (*destroy)(struct vmmu_vm *vm);

	/* Mandatory: install or change slot @id (add, or new flags of an existing slot). */
	int (*memslot_set)(struct vmmu_vm *vm, uint32_t id, vmmu_gpa_t gpa, uint64_t size, void *hva,
			   uint32_t flags);
	/* Mandatory: delete slot @id. */
	int (*memslot_delete)(struct vmmu_vm *vm, uint32_t id, vmmu_gpa_t gpa);

	/* Mandatory: allocate a vCPU (base filled by vm.c after return). */
	int (*vcpu_create)(struct vmmu_vm *vm, uint32_t id, struct vmmu_vcpu **out);
	/* Mandatory: release the vCPU's backend resources (not the struct: vm.c frees it with the VM). */
	void (*vcpu_release)(struct vmmu_vcpu *vcpu);
	/* Mandatory: free a released vCPU struct. */
	void (*vcpu_free)(struct vmmu_vcpu *vcpu);
	/* Mandatory: register access. */
	int (*get_regs)(struct vmmu_vcpu *vcpu, struct vmmu_regs *regs);
	int (*set_regs)(struct vmmu_vcpu *vcpu, const struct vmmu_regs *regs);
	int (*get_sregs)(struct vmmu_vcpu *vcpu, struct vmmu_sregs *sregs);
	int (*set_sregs)(struct vmmu_vcpu *vcpu, const struct vmmu_sregs *sregs);
	/* Mandatory: run until an exit; fill @exit fully. */
	int (*run)(struct vmmu_vcpu *vcpu, struct vmmu_exit *exit);
	/* Optional: make a (current or next) run return VMMU_EXIT_INTR; any thread. */
	int (*kick)(struct vmmu_vcpu *vcpu);

	/*
	 * Optional (GET_CLEAR / MANUAL): copy the backend's dirty bitmap of slot
	 * @id into @bitmap. GET_CLEAR: this also clears and re-arms. MANUAL: nothing else.
	 */
	int (*dirty_log_get)(struct vmmu_vm *vm, uint32_t id, uint64_t npages, uint64_t *bitmap);
	/* Optional (MANUAL): clear and re-arm the set bits of @bitmap; the range obeys the 64-page rule. */
	int (*dirty_log_clear)(struct vmmu_vm *vm, uint32_t id, uint64_t first_page, uint64_t npages,
			       const uint64_t *bitmap);
	/* Optional (RING): harvest @vcpu's ring through dirty_slot_set_ring(); return entries taken. */
	int (*dirty_ring_harvest)(struct vmmu_vcpu *vcpu);
	/* Optional (RING): re-arm every harvested entry; return entries reset. */
	int (*dirty_ring_reset)(struct vmmu_vm *vm);

	/* Optional: add / remove an MMIO or PIO notifier. */
	int (*notifier_add)(struct vmmu_vm *vm, const struct vmmu_notifier *n);
	int (*notifier_remove)(struct vmmu_vm *vm, const struct vmmu_notifier *n);
};

/* Initialize / finish the common part (called by backends' create / destroy). */
int vm_init(struct vmmu_vm *vm, const struct vm_ops *ops, const struct vmmu_vm_options *opts);
void vm_finish(struct vmmu_vm *vm);

/*
 * A ring harvest took page @offset of slot @id: record it for the next
 * vmmu_vm_dirty_get(). Caller holds vm->lock (ring harvests run under it), so
 * this is a plain OR. Unknown slots (logging turned off since) and offsets are ignored.
 */
static inline void dirty_slot_set_ring(struct vmmu_vm *vm, uint32_t id, uint64_t offset)
{
	struct dirty_slot *d = id < vm->nr_dirty ? vm->dirty[id] : NULL;

	if (d && d->ring_bits && offset < d->npages)
		d->ring_bits[offset / 64] |= 1ULL << (offset % 64);
}

/* Backend tables and their availability; a backend not built has no table. */
extern const struct vm_ops kvm_vm_ops;
extern const struct vm_ops hvf_vm_ops;
extern const struct vm_ops soft_vm_ops;
/* KVM: can /dev/kvm be opened (for "auto")? */
bool kvm_available(void);

#endif
