/* SPDX-License-Identifier: MIT */
/*
 * The MMU's private layout and its internal API, for the sources in src/mmu/, the soft
 * backend, and the shadow-paging part built on top of the direct (TDP) core.
 * Never installed.
 *
 * Objects
 *   struct vmmu_mmu       per VM: memslots + per-slot state (struct mmu_slot:
 *                         rmaps, dirty bitmap, huge-page disallow counts,
 *                         write tracking), shadow pages (hash by gfn+role and
 *                         an active list, newest first), flush bookkeeping.
 *   struct vmmu_mmu_vcpu  per vCPU: root, memory caches, dirty ring, walk
 *                         sequence, statistics, and a slot for per-vCPU guest
 *                         paging state (shadow mode).
 *   struct mmu_page       one shadow page: a 4 KiB table of 512 SPTEs (spt)
 *                         and its header, which lives right after the table
 *                         (sp == spt + 512), so the header of any table an
 *                         SPTE points at is found in O(1) (spte_to_child()).
 *
 * Locks, in the order they nest:
 *   slots_lock  rwlock. Read: a fault in progress (both paths), dirty-log
 *               calls, aging, zap and audit. Write: memslot changes. Holding
 *               it for read keeps every struct mmu_slot and rmap table alive.
 *   dirty_lock  mutex serializing harvests (get/clear/ring reset), so the flush
 *               that follows one harvest's write protection is done before
 *               another harvest can find the same SPTE already read-only.
 *   lock        the MMU lock (mutex): every structural change of the tables,
 *               rmaps and shadow pages. Nothing allocates under it: callers
 *               top up per-vCPU caches (mmu_topup_caches()) before taking it;
 *               a step that finds a cache too small returns -EAGAIN with what
 *               it needs, the caller drops the lock, refills and starts over
 *               (the slow path does this a few times, then reports -ENOMEM).
 *   rmap head lock bit  taken by rmap writers (under lock) and lockless readers.
 *   flush_lock  one flush at a time (mmu_flush_commit() may run under lock).
 *   vcpus_lock  the vCPU list (flush waits, statistics, ring reset).
 *   ring_lock   per vCPU: its ring's producer side (push and reset).
 *   free_lock   the list of zapped pages waiting for their flush.
 * So: slots_lock > dirty_lock > lock > flush_lock > vcpus_lock > ring_lock,
 * with free_lock a leaf. A vCPU inside a walk section holds none of them.
 *
 * SPTE updates: leaf SPTEs that may change under the lock holder (the fast
 * path sets W, hardware sets A/D, aging clears A) are changed with atomic
 * read-modify-write operations (spte_and(), spte_cmpxchg()); every SPTE is
 * read with atomic loads (spte_get()).
 *
 * Lockless walks: the fault fast path and the soft machine's hardware walker
 * read tables without the lock between walk_begin() and walk_end() on their
 * vCPU. A TLB flush (mmu_flush_commit()) calls the backend, then waits until
 * every vCPU that was inside a walk has left it; tables zapped before the
 * flush are freed only after that. A walk section never blocks on a lock and
 * never calls anything that may flush (it would wait for itself).
 *
 * Faults: vmmu_mmu_page_fault() fills a struct mmu_fault (below) and runs the
 * MMIO check, the fast path (direct roots only: a shadow root's gfn -> pfn
 * link may change under a lockless writer) and the slow path. The shadow part
 * adds its own entry for guest-virtual faults: walk the guest tables (vCPU
 * guest state in vmmu_mmu_vcpu.guest), find or create indirect pages with
 * mmu_get_page() (sp->shadowed records each SPTE's gfn and access), link them
 * with mmu_link_page(), install leaves with mmu_set_leaf(), and
 * write-protect shadowed guest tables with mmu_wrprot_gfn_for_shadowing().
 *
 * TLB flush requests (mmu_flush_request()) are counted, coalesced and
 * performed by mmu_flush_commit(), normally right after the lock is dropped:
 *   - zap (present -> not present) and unlinking a table: request; the table
 *     goes to the free list tagged with the request and is freed after it;
 *   - dirty-log write protection (W cleared, MMU-writable kept): flush after
 *     the harvest, outside the lock, if anything was harvested;
 *   - write protection for page-table shadowing (MMU-writable cleared): if
 *     MMU-writable was set, commit the flush BEFORE dropping the lock
 *     (mmu_wrprot_gfn_for_shadowing() does it), because a writable TLB entry
 *     may survive dirty-log protection;
 *   - clearing A (aging): no flush.
 */
#ifndef VMMU_MMU_INTERNAL_H
#define VMMU_MMU_INTERNAL_H

#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>

#include <libvmmu/mmu.h>
#include <libvmmu/rmap.h>

#include "internal.h"
#include "memslot_internal.h"

#define MMU_HASH_SHIFT 12
#define MMU_HASH_SIZE (1u << MMU_HASH_SHIFT)
#define MMU_PAGE_CACHE_MIN 8     /* tables a fault may need: 4 levels + a split, with margin */
#define MMU_RMAP_CACHE_MIN 8     /* descriptors a fault may need (a split asks for more itself) */
#define MMU_RMAP_CACHE_CAP 1024
#define MMU_SPTES 512

/*
 * A shadow page's role (KVM's kvm_mmu_page_role): what the table shadows.
 * Two pages with the same gfn and role word are the same page.
 */
union mmu_role {
	uint32_t word;
	struct {
		uint32_t level : 4;           /* 1 = table of 4 KiB SPTEs .. 5 */
		uint32_t has_4_byte_gpte : 1; /* shadows a 32-bit guest table */
		uint32_t quadrant : 2;        /* part of a 32-bit guest table */
		uint32_t direct : 1;          /* maps a gfn range (TDP, paging off, huge guest page) */
		uint32_t access : 3;          /* VMMU_ACC_* inherited from the parents */
		uint32_t invalid : 1;         /* zapped; alive only while a vCPU uses it as a root */
		uint32_t efer_nx : 1;
		uint32_t cr0_wp : 1;
		uint32_t smep_andnot_wp : 1;
		uint32_t smap_andnot_wp : 1;
		uint32_t ad_disabled : 1;
		uint32_t guest_mode : 1;
		uint32_t passthrough : 1;
		uint32_t unused : 5;
		uint32_t smm : 8;
	};
};
static_assert(sizeof(union mmu_role) == 4, "a role is one word");

/* One shadow page. The header follows its table: mmu_page_of(spt) == (void *)(spt + 512). */
struct mmu_page {
	struct mmu_page *hash_next;    /* bucket chain */
	struct mmu_page *prev, *next;  /* active list (newest first) or free list (next only) */
	vmmu_gfn_t gfn;                /* direct: first gfn mapped; indirect: the guest table's gfn */
	union mmu_role role;
	uint32_t root_count;           /* vCPUs using it as their root (under lock) */
	uint8_t valid_gen;             /* mmu->valid_gen when created; differs = obsolete */
	bool unsync;                   /* shadow mode: guest table changed without write protection */
	bool on_list;                  /* in the active list */
	_Atomic bool zapped;           /* role.invalid, for lockless readers (a vCPU checking its root) */
	uint16_t unsync_children;
	struct vmmu_rmap_head parent_ptes; /* SPTEs pointing at this table (one for direct pages) */
	uint64_t *shadowed;            /* shadow mode: per SPTE gfn << 12 | access; NULL for direct pages */
	uint64_t free_tag;             /* free once mmu->flush_done >= free_tag */
	uint64_t unsync_child_bitmap[MMU_SPTES / 64];
	void *priv;                    /* free for the shadow-paging part */
};

static inline uint64_t *mmu_page_spt(struct mmu_page *sp) { return (uint64_t *)sp - MMU_SPTES; }
static inline struct mmu_page *mmu_page_of(uint64_t *spt) { return (struct mmu_page *)(spt + MMU_SPTES); }
/* The page holding SPTE *@sptep. */
static inline struct mmu_page *sptep_to_page(uint64_t *sptep)
{
	return mmu_page_of((uint64_t *)((uintptr_t)sptep & ~(uintptr_t)4095));
}
static inline unsigned int sptep_index(uint64_t *sptep) { return ((uintptr_t)sptep & 4095) / 8; }

/* First gfn mapped by entry @i of a direct page. */
static inline vmmu_gfn_t mmu_page_entry_gfn(const struct mmu_page *sp, unsigned int i)
{
	return sp->gfn + ((vmmu_gfn_t)i << (9 * (sp->role.level - 1)));
}

/* Frames one SPTE at @level maps. */
static inline uint64_t level_pages(int level) { return 1ULL << (9 * (level - 1)); }

/* Per-slot state. Alive while slots_lock is held (for read). */
struct mmu_slot {
	uint32_t id;
	uint32_t flags;                  /* VMMU_MEMSLOT_* */
	vmmu_gfn_t base_gfn;
	uint64_t npages;
	uint8_t *hva;
	struct vmmu_rmap_table *rmap;    /* levels 1..3 */
	struct vmmu_dirty_bitmap *dirty; /* bitmap mode while LOG_DIRTY */
	uint32_t *disallow_lpage[2];     /* per 2 MiB / 1 GiB region of the slot: non-zero = no huge leaf (level 2, 3) */
	uint16_t *write_track;           /* per gfn: shadowed guest tables (shadow mode); NULL = none */
};

/* Statistics kept per vCPU (written by its thread only, read racily): stat_inc() needs no locked instruction. */
struct mmu_vcpu_stats {
	_Atomic uint64_t faults[VMMU_FAULT_NR_OUTCOMES];
	_Atomic uint64_t fast_fixed, mmio_hits, mmio_stale;
};

/* Pre-allocated tables, filled outside the lock. Each holds VMMU_SPTE_NONPRESENT everywhere. */
struct mmu_page_cache {
	unsigned int nr;
	struct mmu_page *page[MMU_PAGE_CACHE_MIN * 2];
};

static inline void stat_inc(_Atomic uint64_t *c)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1, memory_order_relaxed);
}

struct vmmu_mmu_vcpu {
	struct vmmu_mmu *mmu;
	uint32_t id;
	_Atomic uint32_t walk_seq;        /* odd while inside a lockless walk */
	bool asym_fence;                  /* copy of mmu->asym_fence, on the vCPU's own line */
	struct mmu_page *root;            /* under lock; may be invalid until reloaded */
	struct mmu_page_cache pages;
	struct vmmu_rmap_cache *rmap_cache;
	struct vmmu_dirty_ring *ring;     /* ring mode */
	pthread_mutex_t ring_lock;        /* push and reset of @ring */
	struct mmu_vcpu_stats stats;
	void *guest;                      /* shadow mode: the vCPU's guest paging state */
};

struct vmmu_mmu {
	struct vmmu_mmu_options opts;
	struct vmmu_mmu_callbacks cb;
	struct vmmu_spte_format fmt;
	int root_level;
	bool asym_fence;                  /* membarrier(PRIVATE_EXPEDITED) is registered */

	struct vmmu_memslots *slots;
	struct mmu_slot **slot;           /* indexed by slot id */
	uint32_t nr_slot;
	pthread_rwlock_t slots_lock;
	pthread_mutex_t dirty_lock;
	pthread_mutex_t lock;

	struct mmu_page *hash[MMU_HASH_SIZE];  /* bucket mmu_hash_of(gfn) */
	struct mmu_page active;           /* list sentinel */
	uint8_t valid_gen;                /* flipped by zap-all: older pages are obsolete */
	bool has_indirect;                /* an indirect page was ever created (dirty_log.c: harvest via rmaps) */
	uint64_t mmio_gen_seen;           /* low 19 bits of the generation at the last change */
	struct vmmu_rmap_cache *cache;    /* for rmap removals outside a vCPU (zap, memslot change) */

	pthread_mutex_t vcpus_lock;
	struct vmmu_mmu_vcpu **vcpus;
	unsigned int nr_vcpus, cap_vcpus;

	_Atomic uint64_t flush_req, flush_done;
	pthread_mutex_t flush_lock;
	pthread_mutex_t free_lock;
	_Atomic(struct mmu_page *) free_list; /* zapped pages waiting for a flush (changed under free_lock) */

	_Atomic uint64_t stat_flush_requested, stat_flush_performed;
	_Atomic uint64_t stat_pages, stat_created, stat_freed, stat_splits;
	_Atomic uint64_t stat_mapped[3], stat_rmap_max;
	struct mmu_vcpu_stats gone;       /* stats of destroyed vCPUs */

	/* shadow paging (shadow.c) */
	bool shadow;                      /* VMMU_MMU_F_SHADOW */
	uint64_t nonpresent;              /* a cleared SPTE: VMMU_SPTE_NONPRESENT, or the bypass "trap" value */
	_Atomic uint64_t stat_pt_writes, stat_pt_zaps, stat_flood_zaps, stat_misaligned_zaps;
};

/* The fault context: const inputs, derived fields, outputs. */
struct mmu_fault {
	/* inputs */
	const vmmu_gpa_t addr;
	const uint64_t error_code;
	const bool write, exec, read, rsvd, present;
	const vmmu_gfn_t gfn;
	/* derived */
	struct mmu_slot *slot;      /* NULL: MMIO */
	uint64_t pfn;               /* host frame of @gfn (hva >> 12) */
	bool map_writable;          /* the slot allows writes */
	int max_level;              /* largest leaf the slot and format allow here */
	int goal_level;             /* level of the leaf to install */
	unsigned int access;        /* VMMU_ACC_* to grant (TDP: all) */
	/* outputs */
	int outcome;                /* enum vmmu_fault_outcome */
	int level;                  /* leaf level installed */
	bool fast, mmio_cached;
};

/* ---- SPTE access ---- */
static inline uint64_t spte_get(uint64_t *p) { return atomic_load_explicit((_Atomic uint64_t *)p, memory_order_acquire); }
static inline void spte_set(uint64_t *p, uint64_t v) { atomic_store_explicit((_Atomic uint64_t *)p, v, memory_order_release); }
static inline uint64_t spte_xchg(uint64_t *p, uint64_t v) { return atomic_exchange((_Atomic uint64_t *)p, v); }
static inline uint64_t spte_and(uint64_t *p, uint64_t m) { return atomic_fetch_and((_Atomic uint64_t *)p, m); }
static inline uint64_t spte_or(uint64_t *p, uint64_t m) { return atomic_fetch_or((_Atomic uint64_t *)p, m); }
static inline bool spte_cmpxchg(uint64_t *p, uint64_t *old, uint64_t v)
{
	return atomic_compare_exchange_strong((_Atomic uint64_t *)p, old, v);
}
/* The table a non-leaf SPTE points at. */
static inline uint64_t *spte_to_child(uint64_t spte) { return (uint64_t *)(uintptr_t)(spte & VMMU_SPTE_PFN_MASK); }
/* Index of @gpa's entry in a table at @level. */
static inline unsigned int spte_index(uint64_t gpa, int level) { return (gpa >> (12 + 9 * (level - 1))) & 511; }

/* ---- lockless walk sections (per vCPU) ---- */
/*
 * The store of the odd sequence must be ordered before the walk's loads
 * (Dekker with the flusher's "invalidate, then read the sequences"). With
 * membarrier(PRIVATE_EXPEDITED) registered the flusher forces that barrier on
 * every running thread, so the walker needs only a compiler barrier
 * (asymmetric fences, as liburcu does); otherwise it pays a full fence.
 */
static inline void walk_begin(struct vmmu_mmu_vcpu *v)
{
	atomic_store_explicit(&v->walk_seq, atomic_load_explicit(&v->walk_seq, memory_order_relaxed) + 1,
			      memory_order_relaxed);
	if (likely(v->asym_fence))
		atomic_signal_fence(memory_order_seq_cst);
	else
		atomic_thread_fence(memory_order_seq_cst);
}
static inline void walk_end(struct vmmu_mmu_vcpu *v)
{
	atomic_store_explicit(&v->walk_seq, atomic_load_explicit(&v->walk_seq, memory_order_relaxed) + 1,
			      memory_order_release);
}

/* ---- mmu.c ---- */
/* The hash bucket of pages whose gfn is @gfn. */
static inline unsigned int mmu_hash_of(vmmu_gfn_t gfn)
{
	return (unsigned int)((gfn * 0x9e3779b97f4a7c15ULL) >> (64 - MMU_HASH_SHIFT));
}
struct mmu_slot *mmu_slot_of(struct vmmu_mmu *mmu, vmmu_gfn_t gfn);       /* under slots_lock */
struct vmmu_rmap_head *mmu_rmap_head(struct mmu_slot *s, vmmu_gfn_t gfn, int level);
/*
 * Call @fn on every rmap head, at every level, that covers part of
 * [@start, @end) in some slot (a huge head covering the range edge included).
 * Caller holds slots_lock (and the MMU lock if @fn changes rmaps).
 */
void mmu_for_each_rmap_head(struct vmmu_mmu *mmu, vmmu_gfn_t start, vmmu_gfn_t end,
			    void (*fn)(struct vmmu_mmu *mmu, struct vmmu_rmap_head *head, void *opaque),
			    void *opaque);
int mmu_topup_caches(struct vmmu_mmu_vcpu *v, unsigned int rmap_min);      /* without the lock */
struct mmu_page *mmu_page_alloc_cached(struct vmmu_mmu_vcpu *v);           /* under lock; NULL if empty */
/* Find or create the page of (@gfn, @role) (from @v's cache); under lock. NULL: cache empty. */
struct mmu_page *mmu_get_page(struct vmmu_mmu_vcpu *v, vmmu_gfn_t gfn, union mmu_role role, bool *created);
/* Link @child at *@sptep (which must be non-present); records the parent. Under lock. */
int mmu_link_page(struct vmmu_mmu *mmu, uint64_t *sptep, struct mmu_page *child, struct vmmu_rmap_cache *c);
/* Install leaf @spte at *@sptep for @gfn (rmap add if it was not present); under lock. */
int mmu_set_leaf(struct vmmu_mmu *mmu, uint64_t *sptep, int level, vmmu_gfn_t gfn, uint64_t spte,
		 struct vmmu_rmap_cache *c);
/* Drop the SPTE at *@sptep (leaf: rmap remove; table: unlink). Returns the old value. Under lock. */
uint64_t mmu_zap_spte(struct vmmu_mmu *mmu, uint64_t *sptep);
/* Zap page @sp: clear its SPTEs, unlink it, move it to the free list (or keep a used root, invalid). */
void mmu_zap_page(struct vmmu_mmu *mmu, struct mmu_page *sp);
void mmu_zap_all_locked(struct vmmu_mmu *mmu);
/* Flush requests: count one; commit = flush (if any request is not yet covered) and free zapped pages. */
void mmu_flush_request(struct vmmu_mmu *mmu);
void mmu_flush_commit(struct vmmu_mmu *mmu);
/* Load a valid root for @v; under lock. 0 or -ENOMEM (cache empty). */
int mmu_load_root(struct vmmu_mmu_vcpu *v);
/* Record @gfn of @slot dirty (bitmap or @v's ring; @v may be NULL in bitmap mode). */
void mmu_mark_dirty(struct vmmu_mmu *mmu, struct vmmu_mmu_vcpu *v, struct mmu_slot *slot, vmmu_gfn_t gfn);
/* Write-protect every SPTE mapping @gfn for page-table shadowing (clears MMU-writable; flushes before
 * returning if any had it set). Under lock. Returns whether any SPTE changed. */
bool mmu_wrprot_gfn_for_shadowing(struct vmmu_mmu *mmu, struct mmu_slot *slot, vmmu_gfn_t gfn);
/*
 * Is writing @gfn forbidden because it holds a shadowed guest table? The
 * direct (TDP) core never sets write_track; the shadow-paging part does
 * (per-gfn counts, allocated by it) and must handle a write fault on such a
 * gfn itself (unsync or emulate): the core then installs the leaf read-only
 * (vmmu_spte_make_leaf() reports VMMU_SPTE_WRPROT) and would see the write fault again.
 */
static inline bool mmu_gfn_write_tracked(const struct mmu_slot *s, vmmu_gfn_t gfn)
{
	return s->write_track && s->write_track[gfn - s->base_gfn];
}

/* Drop one reference to a root; an invalid root with none left goes to the free list. Under lock. */
void mmu_put_root(struct vmmu_mmu *mmu, struct mmu_page *root);
/* First page of the hash bucket of @gfn (follow hash_next; compare gfn and role). Under lock. */
struct mmu_page *mmu_hash_first(struct vmmu_mmu *mmu, vmmu_gfn_t gfn);

/* ---- shadow.c (shadow paging; see shadow.c) ---- */
bool shadow_options_valid(const struct vmmu_mmu_options *o);
void shadow_init(struct vmmu_mmu *mmu);
int shadow_page_fault(struct vmmu_mmu_vcpu *v, vmmu_gva_t gva, uint64_t ec, struct vmmu_fault_result *res);
int shadow_load_root(struct vmmu_mmu_vcpu *v);                   /* under lock */
int shadow_topup(struct vmmu_mmu_vcpu *v);                       /* without the lock */
void shadow_vcpu_free(struct vmmu_mmu_vcpu *v);
void shadow_unaccount_page(struct vmmu_mmu *mmu, struct mmu_page *sp); /* zapping an indirect page; under lock */
void shadow_fill_stats(struct vmmu_mmu *mmu, struct vmmu_mmu_stats *st);
unsigned int shadow_audit(struct vmmu_mmu *mmu);                 /* under lock; problems found (logged) */
/* The bypass "trap" value: not MMU-present, reserved bits set (a P=1|RSVD fault). */
static inline bool shadow_spte_is_trap(const struct vmmu_mmu *mmu, uint64_t spte)
{
	return mmu->nonpresent != VMMU_SPTE_NONPRESENT && spte == mmu->nonpresent;
}
/*
 * Test-only knob: key the flush of mmu_wrprot_gfn_for_shadowing() on W instead
 * of MMU-writable (the behaviour before KVM's 2014 fix), to replay the race it
 * closed. Never set outside that test.
 */
extern bool mmu_debug_wrprot_flush_on_w;

/* ---- dirty_log.c ---- */
/* Write-protect for dirty logging the pages @mask of slot-relative word @offset (rearm callback). */
void mmu_rearm_dirty(uint32_t slot, uint64_t offset, uint64_t mask, void *opaque);
/* Write-protect every SPTE of @slot for dirty logging; under lock. Returns whether any changed. */
bool mmu_slot_wrprot_all(struct vmmu_mmu *mmu, struct mmu_slot *slot);

/* ---- fault injection (tests) ---- */
/* When set, called before each allocation the MMU makes; true makes it fail as if malloc had. */
extern bool (*mmu_alloc_fail_hook)(void);
/* When set, called with each page freed and the flush count done at that time. */
extern void (*mmu_free_hook)(struct mmu_page *sp, uint64_t flush_done, uint64_t free_tag);

void *mmu_alloc(size_t size);
void *mmu_alloc_table(void);

#endif
