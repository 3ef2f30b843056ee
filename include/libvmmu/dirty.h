/* SPDX-License-Identifier: MIT */
/*
 * Dirty tracking in KVM's own formats: a per-memslot bitmap and a dirty ring.
 *
 * Bitmap. One bit per 4 KiB page of a memslot: bit i of little-endian 64-bit
 * word i / 64 is page i of the slot, the size is rounded up to whole words, and
 * the bits past the last page are always zero. That is the layout of
 * KVM_GET_DIRTY_LOG's buffer, so a buffer filled by KVM and one filled here
 * can be merged, iterated and cleared with the same calls. Any number of
 * threads may mark pages (atomic OR) while one thread at a time harvests
 * (get-and-clear, or get then clear); no mark is ever lost: a mark that
 * completes before a harvest starts is in that harvest, a mark that runs
 * concurrently is in that harvest or the next. Marks publish with release
 * ordering and harvests read with acquire ordering, so data written before a
 * mark is visible to the harvester once it sees the bit.
 *
 * Ring. KVM's per-vCPU dirty ring: an array of 16-byte struct vmmu_dirty_gfn
 * (KVM's struct kvm_dirty_gfn) whose flags move 00 free -> 01 dirty (producer
 * pushes) -> 1x harvested (consumer) -> 00 free (producer's reset). One
 * producer thread (push, reset) and one consumer thread (harvest) may run at
 * once; flags are the only shared word, accessed with acquire/release. The
 * entries can live in the caller's memory (so a VMM can harvest KVM's mmap'ed
 * ring with this code; KVM is then the producer) or in memory the library
 * allocates.
 *
 * Typical use, per slot with dirty logging on:
 *  - KVM_GET_DIRTY_LOG style: vmmu_dirty_bitmap_get_and_clear() with a re-arm
 *    callback that write-protects the returned pages, flush TLBs if it
 *    returned > 0, then copy the pages named in the buffer (the iterators);
 *  - manual protect (KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, optionally created
 *    VMMU_DIRTY_INITIALLY_SET): vmmu_dirty_bitmap_get(), then for each chunk
 *    vmmu_dirty_bitmap_clear() (re-arming), flush, and copy that chunk;
 *  - KVM's log plus the VMM's own writes: vmmu_dirty_bitmap_merge_buf() the
 *    buffer KVM filled into the bitmap the VMM marks, then harvest once;
 *  - ring: vmmu_dirty_ring_harvest() on the consumer side, then the
 *    producer's vmmu_dirty_ring_reset() (for KVM's ring, KVM_RESET_DIRTY_RINGS)
 *    before reading the pages.
 */
#ifndef LIBVMMU_DIRTY_H
#define LIBVMMU_DIRTY_H

#include <libvmmu/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/** 64-bit words a bitmap (or a caller buffer) of @npages pages needs. */
#define VMMU_DIRTY_WORDS(npages) (((uint64_t)(npages) + 63) / 64)

/**
 * typedef vmmu_dirty_rearm_fn - "re-protect these pages" report.
 * @slot: the slot id (the bitmap's id, or the ring entry's slot field).
 * @offset: first page of the word, relative to the slot; a multiple of 64.
 * @mask: bit i set = page @offset + i must have dirty tracking re-armed
 *        (write protection, or D-bit clearing); never 0.
 * @opaque: the pointer given with the callback.
 *
 * The (slot, offset, mask) form KVM passes to
 * kvm_arch_mmu_enable_log_dirty_pt_masked(), with the offset always 64-aligned
 * here. Called synchronously, on the calling thread, after the bits were
 * cleared; it must not call back into the same bitmap or ring. Ring entries
 * live in memory the consumer can write, so their slot and offset are not
 * checked by the library: the callee checks them against its slots (as
 * KVM's reset does) before touching anything.
 */
typedef void (*vmmu_dirty_rearm_fn)(uint32_t slot, uint64_t offset, uint64_t mask, void *opaque);

/* ------------------------------------------------------------------------- */
/* Bitmap                                                                    */

/** Create the bitmap with every page marked dirty (KVM's DIRTY_LOG_INITIALLY_SET). */
#define VMMU_DIRTY_INITIALLY_SET (1u << 0)

struct vmmu_dirty_bitmap;

/**
 * vmmu_dirty_bitmap_create() - create a dirty bitmap for a slot of @npages pages.
 * @slot: the slot id, passed back to vmmu_dirty_rearm_fn callbacks.
 * @npages: pages in the slot; 1 to 2^40 (a 52-bit guest physical space).
 * @flags: 0 or VMMU_DIRTY_INITIALLY_SET.
 * @out: receives the bitmap; the caller owns it (vmmu_dirty_bitmap_destroy()).
 *
 * Return: 0; -EINVAL (NULL @out, @npages out of range, unknown flags); -ENOMEM.
 */
VMMU_API int vmmu_dirty_bitmap_create(uint32_t slot, uint64_t npages, uint32_t flags,
				      struct vmmu_dirty_bitmap **out);

/** vmmu_dirty_bitmap_destroy() - free a bitmap. NULL is a no-op. No call may be running on it. */
VMMU_API void vmmu_dirty_bitmap_destroy(struct vmmu_dirty_bitmap *bm);

/** vmmu_dirty_bitmap_npages() - pages covered by @bm (0 for NULL). Buffers need VMMU_DIRTY_WORDS() of it. */
VMMU_API uint64_t vmmu_dirty_bitmap_npages(const struct vmmu_dirty_bitmap *bm);

/**
 * vmmu_dirty_bitmap_mark() - mark page @page (relative to the slot) dirty.
 *
 * Thread-safe against every other call except destroy. Marking a dirty page is allowed.
 *
 * Return: 0; -EINVAL (NULL @bm, @page past the slot).
 */
VMMU_API int vmmu_dirty_bitmap_mark(struct vmmu_dirty_bitmap *bm, uint64_t page);

/**
 * vmmu_dirty_bitmap_mark_range() - mark pages [@first, @first + @npages) dirty.
 *
 * Thread-safe as vmmu_dirty_bitmap_mark(); one atomic OR per word touched.
 * @npages == 0 is a no-op.
 *
 * Return: 0; -EINVAL (NULL @bm, range not inside the slot; nothing is marked).
 */
VMMU_API int vmmu_dirty_bitmap_mark_range(struct vmmu_dirty_bitmap *bm, uint64_t first, uint64_t npages);

/**
 * vmmu_dirty_bitmap_test() - is page @page marked?
 *
 * Return: 1 dirty, 0 clean; -EINVAL (NULL @bm, @page past the slot).
 */
VMMU_API int vmmu_dirty_bitmap_test(const struct vmmu_dirty_bitmap *bm, uint64_t page);

/**
 * vmmu_dirty_bitmap_get_and_clear() - KVM_GET_DIRTY_LOG without manual protect.
 * @bm: the bitmap.
 * @buf: caller buffer of VMMU_DIRTY_WORDS(npages) words; receives the pages
 *       that were dirty, in the bitmap layout. Every word is written.
 * @rearm: called once per non-zero word harvested, in ascending order; may be NULL.
 * @opaque: passed to @rearm.
 *
 * Each word is taken and zeroed atomically, so marks racing with the call are
 * either returned now or stay for the next harvest. One harvester at a time:
 * get_and_clear and clear must not run concurrently with each other on one
 * bitmap (marks, merges into it, get and test may).
 *
 * Return: the number of dirty pages returned; -EINVAL (NULL @bm or @buf).
 */
VMMU_API int64_t vmmu_dirty_bitmap_get_and_clear(struct vmmu_dirty_bitmap *bm, uint64_t *buf,
						 vmmu_dirty_rearm_fn rearm, void *opaque);

/**
 * vmmu_dirty_bitmap_get() - KVM_GET_DIRTY_LOG with manual protect: copy the
 * bitmap into @buf (VMMU_DIRTY_WORDS(npages) words) without clearing anything.
 *
 * Return: the number of dirty pages copied; -EINVAL (NULL @bm or @buf).
 */
VMMU_API int64_t vmmu_dirty_bitmap_get(const struct vmmu_dirty_bitmap *bm, uint64_t *buf);

/**
 * vmmu_dirty_bitmap_clear() - KVM_CLEAR_DIRTY_LOG: clear the pages of
 * [@first, @first + @npages) that are set in @mask.
 * @bm: the bitmap.
 * @first: first page; a multiple of 64.
 * @npages: a multiple of 64, or reaching exactly the end of the slot; 0 is a no-op.
 * @mask: VMMU_DIRTY_WORDS(@npages) words; bit i refers to page @first + i
 *        (typically what vmmu_dirty_bitmap_get() returned, shifted to @first).
 *        Bits past @npages are ignored.
 * @rearm: called once per word in which bits were actually cleared, with
 *         exactly those bits, in ascending order; may be NULL.
 * @opaque: passed to @rearm.
 *
 * Per word, clears (mask AND current bits) with one atomic operation, so a mark
 * racing with the clear is kept unless its bit was in @mask and already set.
 * One harvester at a time, as for vmmu_dirty_bitmap_get_and_clear().
 *
 * Return: the number of pages cleared (bits that were set and in @mask);
 * -EINVAL with a log line (NULL @bm, NULL @mask with @npages > 0, @first not a
 * multiple of 64, @npages neither a multiple of 64 nor reaching the slot end,
 * range past the slot end); nothing is cleared then.
 */
VMMU_API int64_t vmmu_dirty_bitmap_clear(struct vmmu_dirty_bitmap *bm, uint64_t first, uint64_t npages,
					 const uint64_t *mask, vmmu_dirty_rearm_fn rearm, void *opaque);

/**
 * vmmu_dirty_bitmap_merge() - OR every dirty page of @src into @dst (e.g. the
 * VMM's own device writes into the log harvested from KVM). @src is unchanged.
 *
 * Acts as marks of @dst, so it may run concurrently with anything but
 * destroy. Not atomic as a whole: marks of @src and harvests of @src racing
 * with the merge may or may not be included.
 *
 * Return: 0; -EINVAL (NULL argument, @dst == @src, different sizes).
 */
VMMU_API int vmmu_dirty_bitmap_merge(struct vmmu_dirty_bitmap *dst, const struct vmmu_dirty_bitmap *src);

/**
 * vmmu_dirty_bitmap_merge_buf() - OR a buffer in the bitmap layout (e.g. one
 * filled by KVM_GET_DIRTY_LOG) of VMMU_DIRTY_WORDS(npages) words into @dst.
 * Bits past the slot's last page are ignored. Safe against concurrent marks.
 *
 * Return: 0; -EINVAL (NULL argument).
 */
VMMU_API int vmmu_dirty_bitmap_merge_buf(struct vmmu_dirty_bitmap *dst, const uint64_t *buf);

/* ------------------------------------------------------------------------- */
/* Iterating a harvested buffer                                              */

/** A run of consecutive dirty frames. */
struct vmmu_dirty_range {
	vmmu_gfn_t first;  /**< first frame (base + page index) */
	uint64_t npages;   /**< number of frames, at least 1 */
};

/**
 * struct vmmu_dirty_iter - iterator over the set bits of a buffer in the
 * bitmap layout. Caller-owned; fields are private to the library. The buffer
 * must not change while iterated.
 */
struct vmmu_dirty_iter {
	const uint64_t *words;
	uint64_t nwords;
	uint64_t npages;
	vmmu_gfn_t base;
	uint64_t index;      /* word being consumed (nwords at the end) */
	uint64_t pending;    /* its bits not yet returned */
	uint64_t ahead;      /* bit k: word ahead_base + k is non-zero and not visited */
	uint64_t ahead_base;
};

/**
 * vmmu_dirty_iter_init() - start iterating @words (VMMU_DIRTY_WORDS(@npages)
 * words; bits past @npages are ignored). Frames are reported as @base + page
 * index: pass the slot's base gfn, or 0 for slot-relative pages.
 * The buffer is borrowed, not copied.
 */
VMMU_API void vmmu_dirty_iter_init(struct vmmu_dirty_iter *it, const uint64_t *words, uint64_t npages,
				   vmmu_gfn_t base);

/**
 * vmmu_dirty_iter_advance() - slow path of the inline iterators below: move
 * to the next word with a dirty frame.
 * Callers use vmmu_dirty_iter_next() and vmmu_dirty_iter_next_range().
 *
 * Return: true if such a word exists, false at the end.
 */
VMMU_API bool vmmu_dirty_iter_advance(struct vmmu_dirty_iter *it);

/**
 * vmmu_dirty_iter_extend() - slow path of vmmu_dirty_iter_next_range(): grow
 * @range, which ends at the last bit of the current word, over the words that
 * follow.
 */
VMMU_API void vmmu_dirty_iter_extend(struct vmmu_dirty_iter *it, struct vmmu_dirty_range *range);

/**
 * vmmu_dirty_iter_next() - the next dirty frame, in ascending order.
 * Inline, so that a dense buffer costs a few instructions per frame.
 *
 * Return: true and *@gfn set, or false at the end (and on every call after).
 */
static inline bool vmmu_dirty_iter_next(struct vmmu_dirty_iter *it, vmmu_gfn_t *gfn)
{
	uint64_t p = it->pending;

	if (!p) {
		if (!vmmu_dirty_iter_advance(it))
			return false;
		p = it->pending;
	}
	*gfn = it->base + it->index * 64 + (uint64_t)__builtin_ctzll(p);
	it->pending = p & (p - 1);
	return true;
}

/**
 * vmmu_dirty_iter_next_range() - the next maximal run of consecutive dirty
 * frames, in ascending order (runs cross word boundaries). Can be mixed with
 * vmmu_dirty_iter_next(): a run starts at the next frame not yet returned.
 *
 * Return: true and *@range set, or false at the end (and on every call after).
 */
static inline bool vmmu_dirty_iter_next_range(struct vmmu_dirty_iter *it, struct vmmu_dirty_range *range)
{
	uint64_t p = it->pending, rest;
	unsigned int bit, len;

	if (!p) {
		if (!vmmu_dirty_iter_advance(it))
			return false;
		p = it->pending;
	}
	bit = (unsigned int)__builtin_ctzll(p);
	rest = ~(p >> bit); /* its lowest set bit ends the run */
	len = rest ? (unsigned int)__builtin_ctzll(rest) : 64;
	range->first = it->base + it->index * 64 + bit;
	range->npages = len;
	if (bit + len < 64) {
		it->pending = p & ~(((1ULL << len) - 1) << bit);
		return true;
	}
	it->pending = 0;
	vmmu_dirty_iter_extend(it, range);
	return true;
}

/* ------------------------------------------------------------------------- */
/* Ring                                                                      */

/** Entry flag: the producer wrote the entry (KVM_DIRTY_GFN_F_DIRTY). */
#define VMMU_DIRTY_GFN_F_DIRTY (1u << 0)
/** Entry flag: the consumer harvested the entry (KVM_DIRTY_GFN_F_RESET). */
#define VMMU_DIRTY_GFN_F_RESET (1u << 1)
#define VMMU_DIRTY_GFN_F_MASK  (VMMU_DIRTY_GFN_F_DIRTY | VMMU_DIRTY_GFN_F_RESET)

/** One ring entry, byte for byte KVM's struct kvm_dirty_gfn. */
struct vmmu_dirty_gfn {
	uint32_t flags;   /**< VMMU_DIRTY_GFN_F_*; shared, accessed atomically */
	uint32_t slot;    /**< as_id << 16 | slot id */
	uint64_t offset;  /**< page index in the slot */
};

/** Largest ring, in entries (KVM allows 65536; the indices are 32-bit and wrap, as KVM's). */
#define VMMU_DIRTY_RING_MAX_ENTRIES (1u << 30)

/** Non-error outcome of vmmu_dirty_ring_push(): the ring is at or past its soft limit. */
enum vmmu_dirty_ring_state {
	VMMU_DIRTY_RING_OK = 0,
	VMMU_DIRTY_RING_SOFT_FULL = 1, /**< harvest and reset now (KVM exits with DIRTY_RING_FULL) */
};

struct vmmu_dirty_ring;

/**
 * vmmu_dirty_ring_create() - create a ring of @nentries entries.
 * @nentries: a power of two, 1 to VMMU_DIRTY_RING_MAX_ENTRIES.
 * @reserved: entries kept free below the hard limit; less than @nentries.
 *            The soft limit is @nentries - @reserved (KVM: 64 + the PML size).
 * @storage: @nentries * 16 bytes, 8-byte aligned, all flags 0 (e.g. KVM's
 *           mmap'ed ring of a fresh vCPU); owned by the caller and must outlive
 *           the ring. NULL: the library allocates and frees zeroed storage.
 * @out: receives the ring; the caller owns it (vmmu_dirty_ring_destroy()).
 *
 * The consumer's position starts at entry 0. To harvest KVM's ring, pass its
 * mmap and use only vmmu_dirty_ring_harvest(): KVM is the producer, and
 * KVM_RESET_DIRTY_RINGS is its reset (push, reset, used and soft_full track
 * this library's own pushes only).
 *
 * Return: 0; -EINVAL (NULL @out, bad @nentries or @reserved, misaligned @storage); -ENOMEM.
 */
VMMU_API int vmmu_dirty_ring_create(uint32_t nentries, uint32_t reserved, void *storage,
				    struct vmmu_dirty_ring **out);

/** vmmu_dirty_ring_destroy() - free a ring (not caller-provided storage). NULL is a no-op. */
VMMU_API void vmmu_dirty_ring_destroy(struct vmmu_dirty_ring *ring);

/** vmmu_dirty_ring_entries() - the entry array (the storage), for sharing or inspection. */
VMMU_API struct vmmu_dirty_gfn *vmmu_dirty_ring_entries(struct vmmu_dirty_ring *ring);

/**
 * vmmu_dirty_ring_push() - producer: append (@slot, @offset) as a dirty entry.
 *
 * Duplicates are accepted (KVM re-reports a page after a ring-full exit).
 *
 * Return: VMMU_DIRTY_RING_OK, or VMMU_DIRTY_RING_SOFT_FULL if the ring is now
 * at or past its soft limit (the entry was pushed); -ENOSPC with a log line if
 * the ring is full up to the hard limit (nothing pushed: the producer ignored
 * SOFT_FULL); -EINVAL (NULL @ring).
 */
VMMU_API int vmmu_dirty_ring_push(struct vmmu_dirty_ring *ring, uint32_t slot, uint64_t offset);

/**
 * vmmu_dirty_ring_used() - producer: entries pushed and not yet reset
 * (harvested ones count until reset, as in KVM). 0 for NULL.
 */
VMMU_API uint32_t vmmu_dirty_ring_used(const struct vmmu_dirty_ring *ring);

/** vmmu_dirty_ring_soft_full() - producer: used >= soft limit. false for NULL. */
VMMU_API bool vmmu_dirty_ring_soft_full(const struct vmmu_dirty_ring *ring);

/**
 * vmmu_dirty_ring_harvest() - consumer: take up to @max dirty entries in ring
 * order, starting at the consumer's position, copy them to @out (flags as
 * read) and mark each harvested (flags = RESET, release), as a VMM does with
 * KVM's ring. Stops at the first entry that is not dirty.
 *
 * Return: the number of entries taken (0 if none); -EINVAL (NULL @ring, or
 * NULL @out with @max > 0).
 */
VMMU_API int vmmu_dirty_ring_harvest(struct vmmu_dirty_ring *ring, struct vmmu_dirty_gfn *out, uint32_t max);

/**
 * vmmu_dirty_ring_reset() - producer: KVM_RESET_DIRTY_RINGS for this ring.
 * @ring: the ring.
 * @rearm: receives the pages to re-protect: entries of one slot within a
 *         64-page window of each other (the window may also extend backwards)
 *         are merged as KVM's reset merges them, then reported as
 *         (slot, 64-aligned offset, mask) words; a merged run can give two
 *         words. May be NULL.
 * @opaque: passed to @rearm.
 *
 * Walks from the reset position over harvested entries, zeroes their flags and
 * frees them for the producer. Stops at the first entry not harvested.
 *
 * Return: the number of entries reset; -EINVAL (NULL @ring).
 */
VMMU_API int vmmu_dirty_ring_reset(struct vmmu_dirty_ring *ring, vmmu_dirty_rearm_fn rearm, void *opaque);

#ifdef __cplusplus
}
#endif

#endif
