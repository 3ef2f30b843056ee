/* SPDX-License-Identifier: MIT */
/*
 * The MMU: what KVM's x86 MMU does, over libvmmu's memslots, SPTEs, reverse
 * maps and dirty logs.
 *
 * A struct vmmu_mmu is per VM: its memslots (it owns the set; a backend adds and
 * removes slots through it), the shadow pages it builds (hashed by gfn and
 * role), one reverse map per memslot, the dirty logs, the MMU lock and the
 * statistics. A struct vmmu_mmu_vcpu is per vCPU: its current root, its memory
 * caches (topped up before the MMU lock is taken, so a fault never allocates
 * under it), its dirty ring and its statistics.
 *
 * This version builds direct (TDP) tables: a fault on a guest-physical address
 * maps it in EPT format (or the legacy / NPT format) with 2 MiB and 1 GiB
 * leaves where the memslot allows it (the guest frame and the host address
 * agree modulo the page size, the huge page lies inside the slot, dirty
 * logging is off, and nothing disallowed huge pages there). "Host physical
 * frames" in SPTEs are host virtual addresses >> 12: the backend that walks the
 * tables (the software machine) dereferences them directly.
 *
 * The MMU never flushes a TLB itself: it asks the backend through
 * vmmu_mmu_callbacks.flush_tlbs, outside the MMU lock, once per batch of
 * changes (requests are coalesced), and frees zapped tables only after that
 * flush returned and no lockless walk that began before it is still running.
 *
 * Threading: vmmu_mmu_page_fault() runs on vCPU threads, any number at once;
 * the dirty-log, zap, aging, statistics and audit calls may run from any
 * thread while vCPUs fault; memslot changes may too (they wait for faults in
 * progress). Each struct vmmu_mmu_vcpu is used by one thread at a time.
 */
#ifndef LIBVMMU_MMU_H
#define LIBVMMU_MMU_H

#include <libvmmu/types.h>
#include <libvmmu/memslot.h>
#include <libvmmu/spte.h>
#include <libvmmu/dirty.h>

#ifdef __cplusplus
extern "C" {
#endif

struct vmmu_mmu;
struct vmmu_mmu_vcpu;

/** struct vmmu_mmu_options.dirty: where dirty pages are recorded. */
enum vmmu_mmu_dirty {
	VMMU_MMU_DIRTY_BITMAP = 0, /**< a bitmap per logging slot (KVM_GET_DIRTY_LOG / CLEAR) */
	VMMU_MMU_DIRTY_RING = 1,   /**< a ring per vCPU (KVM_CAP_DIRTY_LOG_RING) */
};

/* struct vmmu_mmu_options.flags */
#define VMMU_MMU_F_INITIALLY_SET (1u << 0) /**< bitmap: logging starts all-dirty, nothing protected */
#define VMMU_MMU_F_NO_MMIO_CACHE (1u << 1) /**< never install MMIO SPTEs (every MMIO access takes the slow path) */
#define VMMU_MMU_F_NO_HUGE       (1u << 2) /**< map 4 KiB pages only */
#define VMMU_MMU_F_ALL           0x7u

/** Options of vmmu_mmu_create(); zero-initialise, set size, then what you need. */
struct vmmu_mmu_options {
	uint32_t size;             /**< sizeof(struct vmmu_mmu_options) */
	uint32_t mode;             /**< enum vmmu_paging_mode: EPT4 (default when 0), EPT5, 4LEVEL, 5LEVEL (NPT) */
	uint8_t maxphyaddr;        /**< host MAXPHYADDR for the SPTE format, 48..52; 0 = 48 */
	uint8_t max_leaf_level;    /**< 1..3; 0 = 3 (1 GiB leaves) */
	uint8_t ad_disabled;       /**< EPT only: no A/D bits (access tracking) */
	uint8_t pad;
	uint32_t dirty;            /**< enum vmmu_mmu_dirty */
	uint32_t flags;            /**< VMMU_MMU_F_* */
	uint32_t ring_entries;     /**< RING: entries per vCPU, a power of two >= 256; 0 = 4096 */
	uint64_t reserved[4];      /**< must be zero */
};

/** How the MMU reaches the backend. */
struct vmmu_mmu_callbacks {
	/**
	 * Invalidate every vCPU's cached translations (all of them; the MMU does
	 * not track which). Mandatory. Called without the MMU lock, except for a
	 * write protection that must flush before the lock is dropped; it must
	 * therefore never wait for the MMU lock. When it returns, no translation
	 * cached before the call may be used by a later access. The MMU then waits
	 * for every lockless walk that began before the flush (walks are
	 * bracketed with the per-vCPU walk sequence, see the soft backend).
	 */
	void (*flush_tlbs)(void *opaque);
	void *opaque;
};

/**
 * vmmu_mmu_create() - create the MMU of one VM.
 * @out: receives the MMU; the caller owns it (vmmu_mmu_destroy()).
 * @opts: options, or NULL for EPT4, MAXPHYADDR 48, 1 GiB leaves, bitmap logging.
 * @cb: the backend's callbacks; copied.
 *
 * Return: 0; -EINVAL (and a log line) for NULL @out or @cb, a missing
 * flush_tlbs, or bad options; -ENOMEM.
 */
VMMU_API int vmmu_mmu_create(struct vmmu_mmu **out, const struct vmmu_mmu_options *opts,
			     const struct vmmu_mmu_callbacks *cb);

/** vmmu_mmu_destroy() - free the MMU, its tables, logs and rmaps (every vCPU must be destroyed first). NULL is a no-op. */
VMMU_API void vmmu_mmu_destroy(struct vmmu_mmu *mmu);

/** vmmu_mmu_memslots() - the MMU's memslot set (read-only for callers; change it through the MMU). */
VMMU_API const struct vmmu_memslots *vmmu_mmu_memslots(const struct vmmu_mmu *mmu);

/** vmmu_mmu_spte_format() - the SPTE format of the tables the MMU builds. */
VMMU_API const struct vmmu_spte_format *vmmu_mmu_spte_format(const struct vmmu_mmu *mmu);

/**
 * vmmu_mmu_memslot_set() - add slot @id, or change the flags of an existing
 * slot @id (then @gpa, @size and @hva must be those it has).
 * @flags: VMMU_MEMSLOT_*. Turning VMMU_MEMSLOT_LOG_DIRTY on write-protects
 *         every SPTE of the slot (huge ones become read-only, not dropped) and
 *         stops new huge mappings, unless INITIALLY_SET (then the log starts
 *         all-dirty and protection happens on each clear); turning it off
 *         zaps the slot's small mappings so huge ones come back. READONLY
 *         cannot change on an existing slot.
 *
 * Bumps the memslot generation (so every MMIO SPTE goes stale). Waits for
 * faults in progress. Return: 0; -EINVAL; -EEXIST; -ENOSPC; -ENOMEM (nothing changed).
 */
VMMU_API int vmmu_mmu_memslot_set(struct vmmu_mmu *mmu, uint32_t id, vmmu_gpa_t gpa, uint64_t size, void *hva,
				  uint32_t flags);

/**
 * vmmu_mmu_memslot_delete() - remove slot @id: every root becomes obsolete
 * (vCPUs load new ones), every shadow page is zapped, the TLBs are flushed,
 * and only then is the slot dropped, so the caller may unmap its memory on
 * return. Return: 0; -EINVAL; -ENOENT.
 */
VMMU_API int vmmu_mmu_memslot_delete(struct vmmu_mmu *mmu, uint32_t id);

/**
 * vmmu_mmu_memslot_move() - move slot @id to @new_gpa (as delete then add).
 * Return: 0; -EINVAL; -ENOENT; -EEXIST.
 */
VMMU_API int vmmu_mmu_memslot_move(struct vmmu_mmu *mmu, uint32_t id, vmmu_gpa_t new_gpa);

/**
 * vmmu_mmu_vcpu_create() - create the MMU state of one vCPU.
 * @out: receives it; the caller owns it (vmmu_mmu_vcpu_destroy() before the MMU).
 * Return: 0; -EINVAL; -ENOMEM.
 */
VMMU_API int vmmu_mmu_vcpu_create(struct vmmu_mmu *mmu, uint32_t id, struct vmmu_mmu_vcpu **out);

/** vmmu_mmu_vcpu_destroy() - drop the vCPU's root and caches. NULL is a no-op. */
VMMU_API void vmmu_mmu_vcpu_destroy(struct vmmu_mmu_vcpu *vcpu);

/** Non-error outcomes of vmmu_mmu_page_fault(). */
enum vmmu_fault_outcome {
	VMMU_FAULT_FIXED = 0,        /**< a mapping was installed or made writable: retry the access */
	VMMU_FAULT_RETRY = 1,        /**< nothing changed but the access should be retried (lost a race, new root) */
	VMMU_FAULT_SPURIOUS = 2,     /**< the SPTE already allowed the access (a stale TLB entry): retry */
	VMMU_FAULT_EMULATE_MMIO = 3, /**< no writable memory there: emulate the access at res->gpa */
	VMMU_FAULT_INJECT_PF = 4,    /**< shadow paging: deliver a #PF (res->error_code) to the guest */
	VMMU_FAULT_RING_FULL = 5,    /**< the vCPU's dirty ring is soft-full: harvest and reset, then retry */
	VMMU_FAULT_NR_OUTCOMES
};

/** What a fault did (vmmu_mmu_page_fault()). */
struct vmmu_fault_result {
	vmmu_gpa_t gpa;      /**< the guest-physical address of the fault */
	uint64_t error_code; /**< INJECT_PF: the #PF error code */
	uint8_t level;       /**< FIXED: level of the leaf installed (1 = 4 KiB) */
	uint8_t fast;        /**< FIXED/SPURIOUS: resolved on the lockless fast path */
	uint8_t mmio_cached; /**< EMULATE_MMIO: found a valid MMIO SPTE (no memslot lookup) */
	uint8_t pad[5];
	uint64_t reserved[2];
};

/**
 * vmmu_mmu_page_fault() - handle a fault of the tables this MMU built.
 * @vcpu: the faulting vCPU.
 * @gpa: the guest-physical address.
 * @error_code: VMMU_PFERR_* as KVM makes them from an EPT violation (read ->
 *              USER, write -> WRITE, fetch -> FETCH, any of R/W/X present ->
 *              PRESENT) or an NPF; VMMU_PFERR_RSVD for an EPT misconfiguration
 *              or a reserved-bit #NPF (an MMIO SPTE).
 * @res: receives details; may be NULL.
 *
 * Tops up the vCPU's caches first (outside the MMU lock). On -ENOMEM nothing
 * changed anywhere.
 *
 * A reserved-bit fault that finds no MMIO SPTE (the entry was zapped or
 * replaced meanwhile) is VMMU_FAULT_RETRY.
 *
 * Return: a vmmu_fault_outcome; -EINVAL (NULL @vcpu, @gpa past MAXPHYADDR); -ENOMEM.
 */
VMMU_API int vmmu_mmu_page_fault(struct vmmu_mmu_vcpu *vcpu, vmmu_gpa_t gpa, uint64_t error_code,
				 struct vmmu_fault_result *res);

/**
 * vmmu_mmu_vcpu_root() - the root table the vCPU must walk now (loading a new
 * root if the old one is obsolete), as a host address of 512 SPTEs.
 * Return: 0 and *@root; -EINVAL; -ENOMEM.
 */
VMMU_API int vmmu_mmu_vcpu_root(struct vmmu_mmu_vcpu *vcpu, uint64_t **root);

/* ------------------------------------------------------------------ dirty logs */

/**
 * vmmu_mmu_dirty_log_get() - KVM_GET_DIRTY_LOG without manual protect: copy
 * slot @id's bitmap into @buf (VMMU_DIRTY_WORDS(npages) words), clear it, and
 * write-protect exactly the pages returned; TLBs are flushed before return if
 * any page was returned. Return: dirty pages returned; -EINVAL; -ENOENT;
 * -EPERM (logging off); -EOPNOTSUPP (ring mode).
 */
VMMU_API int64_t vmmu_mmu_dirty_log_get(struct vmmu_mmu *mmu, uint32_t id, uint64_t *buf);

/** vmmu_mmu_dirty_log_peek() - manual protect: copy the bitmap without clearing. Return as above. */
VMMU_API int64_t vmmu_mmu_dirty_log_peek(struct vmmu_mmu *mmu, uint32_t id, uint64_t *buf);

/**
 * vmmu_mmu_dirty_log_clear() - KVM_CLEAR_DIRTY_LOG: clear the pages of
 * [@first, @first + @npages) set in @mask (bit 0 = @first) and write-protect
 * exactly those that were dirty (huge mappings covering them become read-only);
 * flush before return if any. KVM's 64-page alignment rule applies.
 * Return: pages cleared; -EINVAL; -ENOENT; -EPERM; -EOPNOTSUPP (ring mode).
 */
VMMU_API int64_t vmmu_mmu_dirty_log_clear(struct vmmu_mmu *mmu, uint32_t id, uint64_t first, uint64_t npages,
					  const uint64_t *mask);

/**
 * vmmu_mmu_vcpu_dirty_harvest() - ring mode, consumer side: take up to @max
 * dirty entries of @vcpu's ring into @out and mark them harvested.
 * Return: entries taken; -EINVAL; -EOPNOTSUPP (bitmap mode).
 */
VMMU_API int vmmu_mmu_vcpu_dirty_harvest(struct vmmu_mmu_vcpu *vcpu, struct vmmu_dirty_gfn *out, uint32_t max);

/**
 * vmmu_mmu_dirty_ring_reset() - KVM_RESET_DIRTY_RINGS: re-protect every
 * harvested entry of every vCPU's ring and free them; flush if any.
 * Return: entries reset; -EINVAL; -EOPNOTSUPP (bitmap mode).
 */
VMMU_API int vmmu_mmu_dirty_ring_reset(struct vmmu_mmu *mmu);

/* ------------------------------------------------------------ zap and aging */

/**
 * vmmu_mmu_zap_gfn_range() - drop every leaf mapping of [@start, @end) and
 * flush. Return: SPTEs zapped; -EINVAL.
 */
VMMU_API int64_t vmmu_mmu_zap_gfn_range(struct vmmu_mmu *mmu, vmmu_gfn_t start, vmmu_gfn_t end);

/** vmmu_mmu_zap_all() - drop every shadow page (roots in use become obsolete); flush; free. Return: 0; -EINVAL. */
VMMU_API int vmmu_mmu_zap_all(struct vmmu_mmu *mmu);

/**
 * vmmu_mmu_age_gfn_range() - count the frames of [@start, @end) mapped by an
 * accessed SPTE (kvm_age_gfn / kvm_test_age_gfn); with @clear, also make them
 * old (clear A, or access-track when A/D is off). Runs without the MMU lock,
 * through the rmap lock bit. No TLB flush (aging accepts false negatives).
 * Return: young mappings (SPTEs: a huge one counts once); -EINVAL.
 */
VMMU_API int64_t vmmu_mmu_age_gfn_range(struct vmmu_mmu *mmu, vmmu_gfn_t start, vmmu_gfn_t end, bool clear);

/* ------------------------------------------------------- statistics, audit */

/** Counters; a snapshot, each counter exact but not all taken at one instant. */
struct vmmu_mmu_stats {
	uint32_t size;                                  /**< set by the caller */
	uint32_t pad;
	uint64_t faults[VMMU_FAULT_NR_OUTCOMES];        /**< faults by outcome */
	uint64_t fast_fixed;                            /**< write faults fixed on the lockless fast path */
	uint64_t mmio_hits;                             /**< MMIO faults that found a valid MMIO SPTE */
	uint64_t mmio_stale;                            /**< MMIO SPTEs found with an old generation */
	uint64_t flush_requested;                       /**< flush requests (before coalescing) */
	uint64_t flush_performed;                       /**< flush_tlbs callbacks */
	uint64_t pages;                                 /**< shadow pages alive (zapped ones not yet freed included) */
	uint64_t pages_created, pages_freed;
	uint64_t huge_mapped[3];                        /**< leaves installed at level 1, 2, 3 */
	uint64_t splits;                                /**< huge SPTEs split into a table */
	uint64_t rmap_entries;                          /**< SPTEs in reverse maps */
	uint64_t rmap_max_len;                          /**< longest reverse map seen */
	uint64_t reserved[8];
};

/** vmmu_mmu_get_stats() - fill @stats (set stats->size first). Return: 0; -EINVAL. */
VMMU_API int vmmu_mmu_get_stats(struct vmmu_mmu *mmu, struct vmmu_mmu_stats *stats);

/**
 * vmmu_mmu_audit() - check every invariant, under the MMU lock: each present
 * leaf SPTE is in the rmap of its gfn and level and maps that gfn's host page;
 * each rmap entry points at such an SPTE; W => MMU-writable => host-writable;
 * no writable SPTE in a read-only slot or to a write-tracked (shadowed) guest
 * table; no huge leaf in a logging slot is writable; every writable SPTE of a
 * logging slot has its page dirty in the log (bitmap mode; needs no harvest
 * running); tables hold no reserved-bit SPTE other than MMIO ones.
 * Return: 0; -EUCLEAN (with a log line per problem, at most 16); -EINVAL.
 */
VMMU_API int vmmu_mmu_audit(struct vmmu_mmu *mmu);

#ifdef __cplusplus
}
#endif

#endif
