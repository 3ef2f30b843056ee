/* SPDX-License-Identifier: MIT */
/*
 * The VM API: one interface to a virtual machine whatever runs it.
 *
 * A VM is made by a backend chosen by name: "kvm" (/dev/kvm), "hvf" (a
 * Hypervisor.framework stub that refuses to create VMs), "soft" (the software
 * machine, not built yet) or "auto" (kvm where /dev/kvm opens, else soft).
 * A NULL name reads the VMMU_BACKEND environment variable, and means "auto"
 * when it is unset.
 *
 * The VM owns: its memslot mirror (a struct vmmu_memslots, readable by the
 * walker), its vCPUs, its notifiers and its dirty-log state. The caller owns
 * the host memory behind memslots (vmmu_guestmem_* helps allocate it).
 *
 * Dirty logging has one interface whatever the mechanism the VM was created
 * with (struct vmmu_vm_options.dirty_mode): vmmu_vm_dirty_get() returns the
 * pages of a slot written since the last call and re-arms tracking for them.
 * The finer calls (peek/clear for manual protect, ring harvest/reset) are there
 * for callers who want to split those steps.
 *
 * A minimal run loop (errors unchecked for brevity; tests/kvm/guest.h builds
 * the page tables and registers of a real long-mode guest):
 *
 *	struct vmmu_vm_options o = { .size = sizeof(o), .dirty_mode = VMMU_DIRTY_RING };
 *	struct vmmu_guestmem ram;
 *	struct vmmu_vm *vm;
 *	struct vmmu_vcpu *cpu;
 *	struct vmmu_exit e;
 *
 *	vmmu_vm_create(&vm, NULL, &o);                    // $VMMU_BACKEND, else auto
 *	vmmu_guestmem_init(&ram, 64 << 20, VMMU_GUESTMEM_DEFAULT);
 *	vmmu_vm_memslot_add(vm, 0, 0, ram.size, ram.hva, VMMU_MEMSLOT_LOG_DIRTY);
 *	vmmu_vcpu_create(vm, 0, &cpu);
 *	... vmmu_vcpu_set_sregs() / vmmu_vcpu_set_regs() ...
 *	for (;;) {
 *		vmmu_vcpu_run(cpu, &e);
 *		if (e.reason == VMMU_EXIT_DIRTY_RING_FULL) {
 *			vmmu_vcpu_dirty_harvest(cpu);
 *			vmmu_vm_dirty_reset(vm);
 *		} else if (e.reason == VMMU_EXIT_IO) {
 *			... e.io.port, e.io.data ...
 *		} else if (e.reason == VMMU_EXIT_HLT) {
 *			break;
 *		}
 *	}
 *	vmmu_vm_dirty_get(vm, 0, bitmap);                 // from any thread, any time
 *	vmmu_vm_destroy(vm);
 *	vmmu_guestmem_finish(&ram);
 *
 * Threading: each vCPU is used by one thread at a time (vmmu_vcpu_kick() may be
 * called from any thread). Memslot changes must not race with each other nor
 * with dirty-log calls on the slot changed. Dirty-log calls may run while
 * vCPUs run, from any thread; vmmu_vm_dirty_mark() from any number of threads;
 * the calls that harvest one slot (get, peek, clear) one at a time.
 *
 * Ordering a VMM relies on: when vmmu_vm_dirty_get() returns, tracking is
 * re-armed for every page it reported (RING: the rings were reset), so a
 * guest write after the return is reported by the next call, and a write that
 * races with the call by this call or the next. Copying the reported pages
 * after the call therefore never misses a change (KVM's dirty_log_test rule).
 */
#ifndef LIBVMMU_VM_H
#define LIBVMMU_VM_H

#include <libvmmu/types.h>
#include <libvmmu/memslot.h>
#include <libvmmu/paging.h>

#ifdef __cplusplus
extern "C" {
#endif

struct vmmu_vm;
struct vmmu_vcpu;

/* ------------------------------------------------------------------ VMs */

/** How dirty pages are tracked (struct vmmu_vm_options.dirty_mode). */
enum vmmu_dirty_mode {
	VMMU_DIRTY_GET_CLEAR = 0, /**< bitmap; reading it clears it and re-arms (KVM_GET_DIRTY_LOG) */
	VMMU_DIRTY_MANUAL = 1,    /**< bitmap; reading does not re-arm; clear ranges yourself (PROTECT2) */
	VMMU_DIRTY_RING = 2,      /**< per-vCPU rings of dirtied frames, harvested then reset */
};

/* struct vmmu_vm_options.flags */
#define VMMU_VM_F_INITIALLY_SET (1u << 0) /**< MANUAL: a slot starts with every page dirty and unprotected */

/** Options of vmmu_vm_create(); zero-initialize, then set size = sizeof(struct vmmu_vm_options). */
struct vmmu_vm_options {
	uint32_t size;         /**< sizeof(struct vmmu_vm_options) */
	uint32_t dirty_mode;   /**< enum vmmu_dirty_mode */
	uint32_t flags;        /**< VMMU_VM_F_* */
	uint32_t ring_entries; /**< RING: entries per vCPU, a power of two >= 256; 0 = 4096 */
	uint64_t reserved[4];  /**< must be zero */
};

/* struct vmmu_vm_caps.flags: what the backend offers on this machine. */
#define VMMU_CAP_READONLY_MEM  (1u << 0) /**< read-only memslots */
#define VMMU_CAP_DIRTY_LOG     (1u << 1) /**< VMMU_DIRTY_GET_CLEAR */
#define VMMU_CAP_DIRTY_MANUAL  (1u << 2) /**< VMMU_DIRTY_MANUAL (and INITIALLY_SET) */
#define VMMU_CAP_DIRTY_RING    (1u << 3) /**< VMMU_DIRTY_RING */
#define VMMU_CAP_DIRTY_RING_ACQ_REL (1u << 4) /**< the ring has acquire/release ordering */
#define VMMU_CAP_NOTIFIER      (1u << 5) /**< MMIO/PIO notifiers (ioeventfd) */
#define VMMU_CAP_TRANSLATE     (1u << 6) /**< vmmu_vcpu_translate() (needs the libvmmu walker) */
#define VMMU_CAP_KICK          (1u << 7) /**< vmmu_vcpu_kick() */

/** Capabilities, probed once when the VM is created. */
struct vmmu_vm_caps {
	uint32_t size;             /**< set by the caller: sizeof(struct vmmu_vm_caps) */
	uint32_t flags;            /**< VMMU_CAP_* */
	uint32_t max_vcpus;        /**< largest number of vCPUs */
	uint32_t max_memslots;     /**< largest number of memslots */
	uint32_t max_ring_entries; /**< largest ring (entries per vCPU), 0 without rings */
	uint8_t maxphyaddr;        /**< guest MAXPHYADDR the backend reports */
	uint8_t pad[3];
	uint64_t reserved[4];
};

/**
 * vmmu_vm_create() - create a VM.
 * @out: receives the VM; the caller owns it (vmmu_vm_destroy()).
 * @backend: "kvm", "hvf", "soft", "auto", or NULL for $VMMU_BACKEND (else "auto").
 * @opts: options, or NULL for the defaults (GET_CLEAR dirty logging).
 *
 * Return: 0; -EINVAL (NULL @out, bad options, unknown backend name);
 * -ENODEV (the backend is not built in, or "auto" found neither /dev/kvm nor
 * soft); -EOPNOTSUPP (the backend cannot do what @opts asks, or is a stub);
 * -ENOMEM; another -errno from the system (-EACCES opening /dev/kvm, ...).
 * Each failure is logged.
 */
VMMU_API int vmmu_vm_create(struct vmmu_vm **out, const char *backend, const struct vmmu_vm_options *opts);

/**
 * vmmu_vm_destroy() - destroy a VM, its vCPUs and notifiers (not the caller's
 * memory). NULL is a no-op. No other call may be running on the VM or its vCPUs.
 */
VMMU_API void vmmu_vm_destroy(struct vmmu_vm *vm);

/** vmmu_vm_backend_name() - "kvm", "hvf", ...; a static string. */
VMMU_API const char *vmmu_vm_backend_name(const struct vmmu_vm *vm);

/**
 * vmmu_vm_get_caps() - copy the capabilities probed at creation into @caps.
 * Set @caps->size first. Return: 0; -EINVAL (NULL or too small @caps).
 */
VMMU_API int vmmu_vm_get_caps(const struct vmmu_vm *vm, struct vmmu_vm_caps *caps);

/* ------------------------------------------------------------- memslots */

/**
 * vmmu_vm_memslot_add() - map [@gpa, @gpa + @size) of guest memory to @hva.
 * @id: slot id (0 .. max_memslots - 1), unused in the VM.
 * @gpa, @size: 4 KiB aligned, @size non-zero.
 * @hva: host memory, 4 KiB aligned, at least @size bytes mapped; the caller
 *       owns it and keeps it mapped until the slot is removed.
 * @flags: VMMU_MEMSLOT_READONLY and/or VMMU_MEMSLOT_LOG_DIRTY.
 *
 * The slot is added to the backend and to the VM's memslot mirror (on an
 * error the mirror holds the same slots as before; its generation may advance).
 * Return: 0; -EINVAL (unaligned, zero size, NULL @hva, unknown flags, @id out
 * of range); -EEXIST (id in use or range overlaps); -EFAULT (@hva is not
 * mapped for @size bytes); -EOPNOTSUPP (READONLY without the capability);
 * -ENOMEM. On error nothing changed.
 */
VMMU_API int vmmu_vm_memslot_add(struct vmmu_vm *vm, uint32_t id, vmmu_gpa_t gpa, uint64_t size, void *hva,
				 uint32_t flags);

/** vmmu_vm_memslot_remove() - remove slot @id. Return: 0; -EINVAL; -ENOENT. */
VMMU_API int vmmu_vm_memslot_remove(struct vmmu_vm *vm, uint32_t id);

/**
 * vmmu_vm_memslot_set_flags() - change the flags of slot @id (turn dirty
 * logging on or off). READONLY cannot change on a live slot (KVM's rule).
 * Return: 0; -EINVAL (unknown flags, READONLY toggled); -ENOENT; -ENOMEM.
 */
VMMU_API int vmmu_vm_memslot_set_flags(struct vmmu_vm *vm, uint32_t id, uint32_t flags);

/** vmmu_vm_memslots() - the VM's memslot mirror, for the walker; owned by the VM. */
VMMU_API const struct vmmu_memslots *vmmu_vm_memslots(const struct vmmu_vm *vm);

/* --------------------------------------------------------- guest memory */

/* struct vmmu_guestmem flags */
#define VMMU_GUESTMEM_PREFAULT (1u << 0) /**< populate the pages now (MADV_POPULATE_WRITE) */
#define VMMU_GUESTMEM_HUGETLB  (1u << 1) /**< 2 MiB hugetlbfs pages (MAP_HUGETLB); size a multiple of 2 MiB */
#define VMMU_GUESTMEM_NO_THP   (1u << 2) /**< anonymous memory without MADV_HUGEPAGE */

/** Host memory for guest RAM; caller-owned struct (vmmu_guestmem_init / _finish). */
struct vmmu_guestmem {
	void *hva;      /**< start, 2 MiB aligned for anonymous and hugetlb memory */
	uint64_t size;  /**< bytes */
	uint32_t flags; /**< VMMU_GUESTMEM_* as given */
	int fd;         /**< the caller's fd for vmmu_guestmem_init_fd(), else -1; never closed here */
	uint64_t reserved[2];
};

/**
 * vmmu_guestmem_init() - map @size bytes of anonymous memory for guest RAM:
 * 2 MiB aligned, with MADV_HUGEPAGE (unless NO_THP) and, with PREFAULT,
 * populated now. PREFAULT is VMMU_GUESTMEM_DEFAULT's choice.
 * Return: 0; -EINVAL (NULL @mem, zero or unaligned size, unknown flags);
 * -ENOMEM (also: no free huge pages for HUGETLB).
 */
VMMU_API int vmmu_guestmem_init(struct vmmu_guestmem *mem, uint64_t size, uint32_t flags);

/** Default flags for vmmu_guestmem_init(): transparent huge pages, prefaulted. */
#define VMMU_GUESTMEM_DEFAULT VMMU_GUESTMEM_PREFAULT

/**
 * vmmu_guestmem_init_fd() - map @size bytes of the caller's file (a memfd, a
 * hugetlbfs file) at @offset, shared. The fd stays the caller's.
 * Return: 0; -EINVAL; -errno from mmap (-ENODEV, -EACCES, -ENOMEM).
 */
VMMU_API int vmmu_guestmem_init_fd(struct vmmu_guestmem *mem, int fd, uint64_t offset, uint64_t size,
				   uint32_t flags);

/** vmmu_guestmem_finish() - unmap the memory; the struct may be reused. Safe on a zeroed struct. */
VMMU_API void vmmu_guestmem_finish(struct vmmu_guestmem *mem);

/* ---------------------------------------------------------------- vCPUs */

/** General-purpose registers. */
struct vmmu_regs {
	uint64_t rax, rbx, rcx, rdx, rsi, rdi, rsp, rbp;
	uint64_t r8, r9, r10, r11, r12, r13, r14, r15;
	uint64_t rip, rflags;
	uint64_t reserved[2];
};

/** A segment register with its hidden part. */
struct vmmu_segment {
	uint64_t base;
	uint32_t limit;    /**< byte granular (already scaled by G) */
	uint16_t selector;
	uint8_t type;      /**< 4-bit descriptor type */
	uint8_t present, dpl, db, s, l, g, avl;
	uint8_t unusable;
	uint8_t pad;
};

/** A descriptor-table register (GDTR, IDTR). */
struct vmmu_dtable {
	uint64_t base;
	uint16_t limit;
	uint16_t pad[3];
};

/** Special registers. */
struct vmmu_sregs {
	struct vmmu_segment cs, ds, es, fs, gs, ss, tr, ldt;
	struct vmmu_dtable gdt, idt;
	uint64_t cr0, cr2, cr3, cr4, cr8;
	uint64_t efer;
	uint64_t apic_base;
	uint64_t reserved[4];
};

/**
 * vmmu_vcpu_create() - create vCPU @id of @vm.
 * @out: receives the vCPU; the VM owns it (vmmu_vcpu_destroy() releases its
 *       resources; the handle stays valid, and refuses use, until the VM is destroyed).
 *
 * KVM backend: the guest CPUID is set to what KVM supports.
 * Return: 0; -EINVAL (NULL argument, @id out of range); -EEXIST (@id was
 * created before in this VM, even if destroyed: KVM keeps vCPUs for the VM's
 * life); -ENOMEM; another -errno from the backend.
 */
VMMU_API int vmmu_vcpu_create(struct vmmu_vm *vm, uint32_t id, struct vmmu_vcpu **out);

/**
 * vmmu_vcpu_destroy() - close the vCPU's backend resources. Later calls on the
 * handle return -EBADF. NULL is a no-op. Must not race with any other call on
 * the vCPU (run, kick). RING mode: the vCPU's ring is harvested first, so
 * its entries still reach vmmu_vm_dirty_get().
 */
VMMU_API void vmmu_vcpu_destroy(struct vmmu_vcpu *vcpu);

/**
 * vmmu_vcpu_get_regs() / _set_regs() / _get_sregs() / _set_sregs() - register access.
 * Return: 0; -EINVAL; -EBADF (destroyed); backend -errno.
 */
VMMU_API int vmmu_vcpu_get_regs(struct vmmu_vcpu *vcpu, struct vmmu_regs *regs);
VMMU_API int vmmu_vcpu_set_regs(struct vmmu_vcpu *vcpu, const struct vmmu_regs *regs);
VMMU_API int vmmu_vcpu_get_sregs(struct vmmu_vcpu *vcpu, struct vmmu_sregs *sregs);
VMMU_API int vmmu_vcpu_set_sregs(struct vmmu_vcpu *vcpu, const struct vmmu_sregs *sregs);

/** Why vmmu_vcpu_run() returned. */
enum vmmu_exit_reason {
	VMMU_EXIT_UNKNOWN = 0,         /**< backend-specific: raw.reason and raw.data[0] */
	VMMU_EXIT_IO = 1,              /**< port I/O: io */
	VMMU_EXIT_MMIO = 2,            /**< an access to guest-physical memory no writable slot backs: mmio */
	VMMU_EXIT_HLT = 3,             /**< the guest executed HLT */
	VMMU_EXIT_SHUTDOWN = 4,        /**< triple fault */
	VMMU_EXIT_INTERNAL_ERROR = 5,  /**< the backend could not go on (emulation failure...): raw */
	VMMU_EXIT_DIRTY_RING_FULL = 6, /**< harvest this vCPU's ring (and reset) before running again */
	VMMU_EXIT_FAULT = 7,           /**< a memory fault the backend cannot resolve: fault */
	VMMU_EXIT_INTR = 8,            /**< interrupted: vmmu_vcpu_kick() or a signal */
	VMMU_EXIT_FAIL_ENTRY = 9,      /**< the hardware refused to enter the guest: raw.data[0] */
};

/** One exit. The data pointers stay valid until the next vmmu_vcpu_run() on the vCPU. */
struct vmmu_exit {
	uint32_t reason; /**< enum vmmu_exit_reason */
	uint32_t pad;
	union {
		struct {
			uint16_t port;
			uint8_t size;     /**< 1, 2 or 4 bytes per element */
			uint8_t is_write; /**< OUT */
			uint32_t count;   /**< elements (string I/O) */
			uint8_t *data;    /**< count * size bytes: OUT data; IN: fill before the next run */
		} io;
		struct {
			vmmu_gpa_t gpa;
			uint32_t len;     /**< 1..8 */
			uint8_t is_write;
			uint8_t pad[3];
			uint8_t *data;    /**< len bytes: the value written; read: fill before the next run */
		} mmio;
		struct {
			vmmu_gpa_t gpa;
			uint64_t size;
			uint64_t flags;   /**< backend flags (KVM: KVM_MEMORY_EXIT_FLAG_*) */
		} fault;
		struct {
			uint32_t reason;  /**< backend exit reason (KVM_EXIT_*) */
			uint32_t ndata;
			uint64_t data[8]; /**< KVM: suberror then internal.data[], or the hardware reason */
		} raw;
		uint64_t pad2[12];
	};
};

/**
 * vmmu_vcpu_run() - run the vCPU until an exit the library does not handle.
 * @exit: receives the exit.
 *
 * An interrupted run (a signal, vmmu_vcpu_kick()) is VMMU_EXIT_INTR, not an
 * error; a memory fault the backend describes (KVM_EXIT_MEMORY_FAULT, which
 * KVM returns with EFAULT) is VMMU_EXIT_FAULT. Return: 0; -EINVAL; -EBADF
 * (destroyed vCPU); backend -errno (-EFAULT for a fault KVM does not
 * describe, such as host memory unmapped under a slot; -EAGAIN if KVM keeps
 * refusing to run).
 */
VMMU_API int vmmu_vcpu_run(struct vmmu_vcpu *vcpu, struct vmmu_exit *exit);

/**
 * vmmu_vcpu_kick() - make vmmu_vcpu_run() on @vcpu return VMMU_EXIT_INTR soon,
 * from any thread. A kick that arrives before the run starts makes the next
 * run return at once. The thread running the vCPU must stay alive while it
 * may be kicked.
 *
 * KVM backend: sets kvm_run.immediate_exit, then sends SIGRTMIN to the thread
 * inside KVM_RUN. The library installs an empty SIGRTMIN handler (without
 * SA_RESTART) at the first vCPU creation unless the application already
 * handles (or ignores) SIGRTMIN, in which case its disposition is kept: it must
 * then be a handler without SA_RESTART. vCPU threads must not block SIGRTMIN.
 * Return: 0; -EINVAL; -EBADF; -EOPNOTSUPP.
 */
VMMU_API int vmmu_vcpu_kick(struct vmmu_vcpu *vcpu);

/** vmmu_vcpu_id() - the id given at creation. */
VMMU_API uint32_t vmmu_vcpu_id(const struct vmmu_vcpu *vcpu);

/**
 * vmmu_vcpu_translate() - translate @gva as the vCPU would now, with the
 * libvmmu walker over the vCPU's registers and the VM's memslots.
 * @access: VMMU_WALK_* (add VMMU_WALK_NO_AD to leave guest tables untouched).
 * @res: the walk result.
 *
 * Return: a vmmu_walk_outcome (>= 0); -EINVAL; -EBADF; -EOPNOTSUPP (built
 * without the walker); -errno reading registers.
 */
VMMU_API int vmmu_vcpu_translate(struct vmmu_vcpu *vcpu, vmmu_gva_t gva, uint32_t access,
				 struct vmmu_walk_result *res);

/* ----------------------------------------------------------- dirty logs */

/**
 * vmmu_vm_dirty_get() - the pages of slot @id dirtied since the last call,
 * with tracking re-armed for them; whatever the dirty mode.
 * @bitmap: receives one bit per page of the slot (bit 0 = first page,
 *          little-endian words), rounded up to 64 bits; every bit written.
 *
 * GET_CLEAR: one get-and-clear. MANUAL: get, then clear exactly the pages
 * reported. RING: harvest every vCPU ring, reset the rings, then report (so
 * contents read after the call are at least as new as the report). Pages
 * marked with vmmu_vm_dirty_mark() are merged in. Calls on one slot must not
 * run concurrently with each other (one harvester per slot, as in KVM).
 * Return: 0 (no count: it would cost a scan the caller makes anyway, e.g. with
 * vmmu_dirty_iter_next()); -EINVAL (NULL); -ENOENT (no such slot); -EPERM
 * (dirty logging is off on the slot); backend -errno.
 */
VMMU_API int vmmu_vm_dirty_get(struct vmmu_vm *vm, uint32_t id, uint64_t *bitmap);

/**
 * vmmu_vm_dirty_peek() - MANUAL only: copy the slot's dirty bitmap without
 * clearing or re-arming anything. Pages marked by the VMM are included.
 * Return: 0; -EINVAL; -ENOENT; -EPERM; -EOPNOTSUPP (other modes).
 */
VMMU_API int vmmu_vm_dirty_peek(struct vmmu_vm *vm, uint32_t id, uint64_t *bitmap);

/**
 * vmmu_vm_dirty_clear() - MANUAL only: clear and re-arm the pages set in
 * @bitmap within [@first_page, @first_page + @npages) of slot @id.
 * @bitmap: bit 0 is @first_page.
 *
 * KVM's rule: @first_page is a multiple of 64, and @npages is a multiple of
 * 64 unless the range ends at the end of the slot.
 * Return: 0; -EINVAL (the range breaks that rule or leaves the slot, NULL);
 * -ENOENT; -EPERM; -EOPNOTSUPP (other modes).
 */
VMMU_API int vmmu_vm_dirty_clear(struct vmmu_vm *vm, uint32_t id, uint64_t first_page, uint64_t npages,
				 const uint64_t *bitmap);

/**
 * vmmu_vcpu_dirty_harvest() - RING only: move the dirty entries of @vcpu's
 * ring into the VM's per-slot logs (read later by vmmu_vm_dirty_get()) and mark
 * them harvested. Call vmmu_vm_dirty_reset() before running the vCPU again
 * after VMMU_EXIT_DIRTY_RING_FULL, and before reading page contents.
 * Return: entries harvested; -EINVAL; -EBADF; -EOPNOTSUPP (other modes).
 */
VMMU_API int vmmu_vcpu_dirty_harvest(struct vmmu_vcpu *vcpu);

/**
 * vmmu_vm_dirty_reset() - RING only: re-arm tracking for every harvested
 * entry of every ring (KVM_RESET_DIRTY_RINGS).
 * A reset interrupted by a pending signal is retried inside the library.
 * Return: entries reset; -EINVAL; -EOPNOTSUPP (other modes); backend -errno.
 */
VMMU_API int vmmu_vm_dirty_reset(struct vmmu_vm *vm);

/**
 * vmmu_vm_dirty_mark() - merge the VMM's own writes into the log: mark the
 * pages of [@gpa, @gpa + @len) dirty; vmmu_vm_dirty_get() and _peek() report them.
 * Return: pages marked; -EINVAL (@len 0, wrap); -EFAULT (some byte in no
 * slot; nothing is marked); -EPERM (a slot without dirty logging).
 */
VMMU_API int vmmu_vm_dirty_mark(struct vmmu_vm *vm, vmmu_gpa_t gpa, uint64_t len);

/* ------------------------------------------------------------ notifiers */

/* struct vmmu_notifier flags */
#define VMMU_NOTIFIER_PIO       (1u << 0) /**< @addr is an I/O port, not a GPA */
#define VMMU_NOTIFIER_DATAMATCH (1u << 1) /**< signal only when the written value equals @datamatch */

/** A guest write that signals an eventfd without leaving the backend (KVM_IOEVENTFD). */
struct vmmu_notifier {
	uint64_t addr;      /**< GPA, or port with VMMU_NOTIFIER_PIO */
	uint64_t datamatch; /**< with VMMU_NOTIFIER_DATAMATCH */
	uint32_t len;       /**< 1, 2, 4 or 8 (0: any length, MMIO only, where supported) */
	uint32_t flags;     /**< VMMU_NOTIFIER_* */
	int fd;             /**< an eventfd, the caller's */
	uint32_t pad;
	uint64_t reserved[2];
};

/**
 * vmmu_vm_notifier_add() - register @n. Return: 0; -EINVAL (bad length,
 * flags or fd); -EEXIST (same address, length and match); -EOPNOTSUPP; backend -errno.
 */
VMMU_API int vmmu_vm_notifier_add(struct vmmu_vm *vm, const struct vmmu_notifier *n);

/** vmmu_vm_notifier_remove() - unregister a notifier equal to @n. Return: 0; -EINVAL; -ENOENT. */
VMMU_API int vmmu_vm_notifier_remove(struct vmmu_vm *vm, const struct vmmu_notifier *n);

#ifdef __cplusplus
}
#endif

#endif
