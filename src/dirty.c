/* SPDX-License-Identifier: MIT */
/*
 * Dirty tracking: per-memslot bitmaps and dirty rings in KVM's formats.
 *
 * Bitmap words are C11 atomics. Markers OR bits in with release ordering; the
 * single harvester reads with acquire ordering. Clearing a word takes one
 * atomic exchange (or fetch-and-not for a masked clear), except in two cases
 * that need no read-modify-write: a word read as 0 has nothing to take, and a
 * word read as all ones cannot gain a bit before the harvester's store of 0
 * (markers only OR, and harvesters are serialized), so a plain atomic store of
 * 0 is equivalent to the exchange there. That keeps a harvest of a clean or a
 * fully dirty bitmap at memory bandwidth instead of one locked operation per
 * word.
 *
 * Ring entries are KVM's struct kvm_dirty_gfn; flags is accessed through an
 * _Atomic view of the same layout (checked below). The producer owns the push
 * and reset positions, the consumer the fetch position; they share only
 * flags.
 */
#include <assert.h>
#include <errno.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <libvmmu/dirty.h>

#include "internal.h"

/* A 52-bit guest physical space holds 2^40 pages: no slot is larger. */
#define MAX_SLOT_PAGES (1ULL << (VMMU_MAX_PHYS_BITS - VMMU_PAGE_SHIFT))

static inline unsigned int popcount64(uint64_t w)
{
	/* Baseline x86-64 has no POPCNT instruction; without it the builtin is a libgcc call. */
	w = w - ((w >> 1) & 0x5555555555555555ULL);
	w = (w & 0x3333333333333333ULL) + ((w >> 2) & 0x3333333333333333ULL);
	w = (w + (w >> 4)) & 0x0f0f0f0f0f0f0f0fULL;
	return (unsigned int)((w * 0x0101010101010101ULL) >> 56);
}

static inline unsigned int ctz64(uint64_t w)
{
	return (unsigned int)__builtin_ctzll(w);
}

/* Bits of the last word that are pages of a slot of @npages pages. */
static inline uint64_t last_word_mask(uint64_t npages)
{
	return npages % 64 ? GENMASK_ULL(npages % 64 - 1, 0) : ~0ULL;
}

/* ------------------------------------------------------------------------- */
/* Bitmap                                                                    */

struct vmmu_dirty_bitmap {
	_Atomic uint64_t *words;
	uint64_t npages;
	uint64_t nwords;
	uint32_t slot;
};

int vmmu_dirty_bitmap_create(uint32_t slot, uint64_t npages, uint32_t flags, struct vmmu_dirty_bitmap **out)
{
	struct vmmu_dirty_bitmap *bm;
	uint64_t nwords = VMMU_DIRTY_WORDS(npages);
	size_t bytes;

	if (!out) {
		log_err("dirty: bitmap create without an out pointer");
		return -EINVAL;
	}
	if (npages == 0 || npages > MAX_SLOT_PAGES) {
		log_err("dirty: bitmap of %llu pages (1 to 2^40 allowed)", (unsigned long long)npages);
		return -EINVAL;
	}
	if (flags & ~VMMU_DIRTY_INITIALLY_SET) {
		log_err("dirty: unknown bitmap flags 0x%x", flags);
		return -EINVAL;
	}
	bm = malloc(sizeof(*bm));
	if (!bm)
		return -ENOMEM;
	/* Whole cache lines, so that aligned_alloc's size rule holds. */
	bytes = (size_t)((nwords * 8 + 63) & ~63ULL);
	bm->words = aligned_alloc(64, bytes);
	if (!bm->words) {
		free(bm);
		return -ENOMEM;
	}
	if (flags & VMMU_DIRTY_INITIALLY_SET) {
		memset(bm->words, 0xff, nwords * 8);
		atomic_init(&bm->words[nwords - 1], last_word_mask(npages));
	} else {
		memset(bm->words, 0, nwords * 8);
	}
	bm->npages = npages;
	bm->nwords = nwords;
	bm->slot = slot;
	*out = bm;
	return 0;
}

void vmmu_dirty_bitmap_destroy(struct vmmu_dirty_bitmap *bm)
{
	if (!bm)
		return;
	free(bm->words);
	free(bm);
}

uint64_t vmmu_dirty_bitmap_npages(const struct vmmu_dirty_bitmap *bm)
{
	return bm ? bm->npages : 0;
}

int vmmu_dirty_bitmap_mark(struct vmmu_dirty_bitmap *bm, uint64_t page)
{
	if (unlikely(!bm || page >= bm->npages)) {
		log_err("dirty: mark of page %llu outside a bitmap of %llu pages", (unsigned long long)page,
			bm ? (unsigned long long)bm->npages : 0ULL);
		return -EINVAL;
	}
	atomic_fetch_or_explicit(&bm->words[page / 64], BIT_ULL(page % 64), memory_order_release);
	return 0;
}

int vmmu_dirty_bitmap_mark_range(struct vmmu_dirty_bitmap *bm, uint64_t first, uint64_t npages)
{
	uint64_t last, w, lw;

	if (!bm || first > bm->npages || npages > bm->npages - first) {
		log_err("dirty: mark of pages [%llu, +%llu) outside a bitmap of %llu pages",
			(unsigned long long)first, (unsigned long long)npages,
			bm ? (unsigned long long)bm->npages : 0ULL);
		return -EINVAL;
	}
	if (npages == 0)
		return 0;
	last = first + npages - 1;
	lw = last / 64;
	for (w = first / 64; w <= lw; w++) {
		uint64_t lo = w == first / 64 ? first % 64 : 0;
		uint64_t hi = w == lw ? last % 64 : 63;

		atomic_fetch_or_explicit(&bm->words[w], GENMASK_ULL(hi, lo), memory_order_release);
	}
	return 0;
}

int vmmu_dirty_bitmap_test(const struct vmmu_dirty_bitmap *bm, uint64_t page)
{
	if (!bm || page >= bm->npages) {
		log_err("dirty: test of page %llu outside a bitmap of %llu pages", (unsigned long long)page,
			bm ? (unsigned long long)bm->npages : 0ULL);
		return -EINVAL;
	}
	return !!(atomic_load_explicit(&bm->words[page / 64], memory_order_acquire) & BIT_ULL(page % 64));
}

static inline unsigned int count_bits(uint64_t w)
{
	return w == ~0ULL ? 64 : popcount64(w);
}

/*
 * Copying out a large bitmap: past this size the buffer cannot stay in the
 * caches anyway, so stores that bypass them (as memcpy uses at such sizes)
 * save reading every destination line first. get_and_clear streams only until
 * its first locked exchange (see out_end()): all-clean and all-dirty bitmaps
 * are copied at memcpy speed, mixed ones with ordinary stores.
 */
#define STREAM_MIN_WORDS (1u << 19) /* 4 MiB */

struct out_buf {
	uint64_t *w;
	bool stream;
};

/* @stream_ok: false when a caller callback runs in the loop (it may lock, which would wait for the streams). */
static inline struct out_buf out_begin(uint64_t *buf, uint64_t nwords, bool stream_ok)
{
	return (struct out_buf){ buf, stream_ok && nwords >= STREAM_MIN_WORDS && (uintptr_t)buf % 8 == 0 };
}

static inline void out_put(struct out_buf *o, uint64_t i, uint64_t w)
{
#if defined(__x86_64__)
	if (o->stream) {
		_mm_stream_si64((long long *)&o->w[i], (long long)w);
		return;
	}
#endif
	o->w[i] = w;
}

/*
 * Order the streamed stores before anything the caller does next. Also called
 * before the first locked operation of a harvest: a locked operation waits for
 * every streamed store in flight, so the two must not alternate.
 */
static inline void out_end(struct out_buf *o)
{
#if defined(__x86_64__)
	if (o->stream)
		_mm_sfence();
#endif
	o->stream = false;
}

/* Take a bitmap word: return its bits and leave it 0 (see the note at the top). */
static inline uint64_t take_word(_Atomic uint64_t *word, struct out_buf *out)
{
	uint64_t w = atomic_load_explicit(word, memory_order_acquire);

	if (w == 0)
		return 0;
	if (w == ~0ULL) {
		atomic_store_explicit(word, 0, memory_order_relaxed);
		return w;
	}
	if (unlikely(out->stream))
		out_end(out);
	return atomic_exchange_explicit(word, 0, memory_order_acquire);
}

int64_t vmmu_dirty_bitmap_get_and_clear(struct vmmu_dirty_bitmap *bm, uint64_t *buf, vmmu_dirty_rearm_fn rearm,
					void *opaque)
{
	struct out_buf out;
	int64_t count = 0;

	if (!bm || !buf) {
		log_err("dirty: get_and_clear with a NULL %s", bm ? "buffer" : "bitmap");
		return -EINVAL;
	}
	out = out_begin(buf, bm->nwords, !rearm);
	for (uint64_t i = 0; i < bm->nwords; i++) {
		uint64_t w = take_word(&bm->words[i], &out);

		out_put(&out, i, w);
		if (!w)
			continue;
		count += count_bits(w);
		if (rearm)
			rearm(bm->slot, i * 64, w, opaque);
	}
	out_end(&out);
	return count;
}

int64_t vmmu_dirty_bitmap_get(const struct vmmu_dirty_bitmap *bm, uint64_t *buf)
{
	struct out_buf out;
	int64_t count = 0;

	if (!bm || !buf) {
		log_err("dirty: get with a NULL %s", bm ? "buffer" : "bitmap");
		return -EINVAL;
	}
	out = out_begin(buf, bm->nwords, true);
	for (uint64_t i = 0; i < bm->nwords; i++) {
		uint64_t w = atomic_load_explicit(&bm->words[i], memory_order_acquire);

		out_put(&out, i, w);
		if (w)
			count += count_bits(w);
	}
	out_end(&out);
	return count;
}

/* KVM_CLEAR_DIRTY_LOG's argument rules. */
static int check_clear_range(const struct vmmu_dirty_bitmap *bm, uint64_t first, uint64_t npages,
			     const uint64_t *mask)
{
	if (first % 64) {
		log_err("dirty: clear from page %llu, not a multiple of 64", (unsigned long long)first);
		return -EINVAL;
	}
	if (first > bm->npages || npages > bm->npages - first) {
		log_err("dirty: clear of pages [%llu, +%llu) outside a slot of %llu pages", (unsigned long long)first,
			(unsigned long long)npages, (unsigned long long)bm->npages);
		return -EINVAL;
	}
	if (npages % 64 && first + npages != bm->npages) {
		log_err("dirty: clear of %llu pages: neither a multiple of 64 nor reaching the slot end (%llu)",
			(unsigned long long)npages, (unsigned long long)bm->npages);
		return -EINVAL;
	}
	if (npages && !mask) {
		log_err("dirty: clear of %llu pages without a mask", (unsigned long long)npages);
		return -EINVAL;
	}
	return 0;
}

int64_t vmmu_dirty_bitmap_clear(struct vmmu_dirty_bitmap *bm, uint64_t first, uint64_t npages,
				const uint64_t *mask, vmmu_dirty_rearm_fn rearm, void *opaque)
{
	uint64_t n = VMMU_DIRTY_WORDS(npages);
	int64_t count = 0;
	int ret;

	if (!bm) {
		log_err("dirty: clear on a NULL bitmap");
		return -EINVAL;
	}
	ret = check_clear_range(bm, first, npages, mask);
	if (ret)
		return ret;
	for (uint64_t j = 0; j < n; j++) {
		_Atomic uint64_t *word = &bm->words[first / 64 + j];
		uint64_t m = mask[j], cleared;

		if (j == n - 1)
			m &= last_word_mask(npages);
		if (!m)
			continue;
		cleared = m & atomic_fetch_and_explicit(word, ~m, memory_order_acquire);
		if (!cleared)
			continue;
		count += count_bits(cleared);
		if (rearm)
			rearm(bm->slot, first + j * 64, cleared, opaque);
	}
	return count;
}

int vmmu_dirty_bitmap_merge(struct vmmu_dirty_bitmap *dst, const struct vmmu_dirty_bitmap *src)
{
	if (!dst || !src || dst == src || dst->npages != src->npages) {
		log_err("dirty: merge needs two distinct bitmaps of one size");
		return -EINVAL;
	}
	for (uint64_t i = 0; i < dst->nwords; i++) {
		uint64_t w = atomic_load_explicit(&src->words[i], memory_order_acquire);

		if (w)
			atomic_fetch_or_explicit(&dst->words[i], w, memory_order_release);
	}
	return 0;
}

int vmmu_dirty_bitmap_merge_buf(struct vmmu_dirty_bitmap *dst, const uint64_t *buf)
{
	if (!dst || !buf) {
		log_err("dirty: merge_buf with a NULL %s", dst ? "buffer" : "bitmap");
		return -EINVAL;
	}
	for (uint64_t i = 0; i < dst->nwords; i++) {
		uint64_t w = buf[i];

		if (i == dst->nwords - 1)
			w &= last_word_mask(dst->npages);
		if (w)
			atomic_fetch_or_explicit(&dst->words[i], w, memory_order_release);
	}
	return 0;
}

/* ------------------------------------------------------------------------- */
/* Iterator                                                                  */

static_assert(sizeof(struct vmmu_dirty_iter) == 8 * 8, "iterator layout is ABI");

/*
 * The iterator finds non-zero words through a summary: bit k of it->ahead says
 * word it->ahead_base + k is non-zero and not visited yet. A summary of 64
 * words is built without branches, so at low density the scan costs about
 * what reading the words costs, and each non-zero word is then found with one
 * ctz instead of a mispredicted loop exit.
 */
void vmmu_dirty_iter_init(struct vmmu_dirty_iter *it, const uint64_t *words, uint64_t npages, vmmu_gfn_t base)
{
	memset(it, 0, sizeof(*it));
	it->words = words;
	it->nwords = VMMU_DIRTY_WORDS(npages);
	it->npages = npages;
	it->base = base;
	it->ahead_base = 0 - 64ULL; /* so that the first summary starts at word 0 */
}

/* Put the iterator at its end: every later call returns false. */
static bool iter_end(struct vmmu_dirty_iter *it)
{
	it->index = it->nwords;
	it->pending = 0;
	it->ahead = 0;
	it->ahead_base = it->nwords;
	return false;
}

/* Summarize the next 64 words (fewer at the end); false if none are left. */
static inline bool iter_summarize(struct vmmu_dirty_iter *it)
{
	const uint64_t *w = it->words;
	uint64_t start = it->ahead_base + 64, n = it->nwords, m = 0;

	if (start >= n)
		return false;
	if (likely(n - start >= 64)) {
		for (unsigned int k = 0; k < 64; k++)
			m |= (uint64_t)(w[start + k] != 0) << k;
	} else {
		for (unsigned int k = 0; k < n - start; k++)
			m |= (uint64_t)(w[start + k] != 0) << k;
	}
	it->ahead = m;
	it->ahead_base = start;
	return true;
}

bool vmmu_dirty_iter_advance(struct vmmu_dirty_iter *it)
{
	uint64_t i, x;

	if (it->index >= it->nwords)
		return false;
	while (!it->ahead)
		if (!iter_summarize(it))
			return iter_end(it);
	i = it->ahead_base + ctz64(it->ahead);
	it->ahead &= it->ahead - 1;
	x = it->words[i];
	if (i == it->nwords - 1) {
		x &= last_word_mask(it->npages);
		if (!x)
			return iter_end(it);
	}
	it->index = i;
	it->pending = x;
	return true;
}

void vmmu_dirty_iter_extend(struct vmmu_dirty_iter *it, struct vmmu_dirty_range *range)
{
	/* Long runs: eight full words per test, short of the (masked) last word. */
	while (it->index + 9 < it->nwords) {
		const uint64_t *w = &it->words[it->index + 1];

		if ((w[0] & w[1] & w[2] & w[3] & w[4] & w[5] & w[6] & w[7]) != ~0ULL)
			break;
		range->npages += 512;
		it->index += 8;
	}
	while (++it->index < it->nwords) {
		uint64_t w = it->words[it->index];
		unsigned int ones;

		if (it->index == it->nwords - 1)
			w &= last_word_mask(it->npages);
		if (w == ~0ULL) {
			range->npages += 64;
			continue;
		}
		ones = ctz64(~w);
		range->npages += ones;
		it->pending = w & (~0ULL << ones);
		/* The summary may name words the run went through: restart it after this word. */
		it->ahead = 0;
		it->ahead_base = it->index + 1 - 64;
		return;
	}
	iter_end(it);
}

/* ------------------------------------------------------------------------- */
/* Ring                                                                      */

/* The library's view of a ring entry: KVM's layout with an atomic flags word. */
struct ring_entry {
	_Atomic uint32_t flags;
	uint32_t slot;
	uint64_t offset;
};

static_assert(sizeof(struct vmmu_dirty_gfn) == 16, "struct kvm_dirty_gfn is 16 bytes");
static_assert(offsetof(struct vmmu_dirty_gfn, flags) == 0 && offsetof(struct vmmu_dirty_gfn, slot) == 4 &&
		      offsetof(struct vmmu_dirty_gfn, offset) == 8,
	      "struct kvm_dirty_gfn layout");
static_assert(sizeof(struct ring_entry) == sizeof(struct vmmu_dirty_gfn) &&
		      offsetof(struct ring_entry, slot) == offsetof(struct vmmu_dirty_gfn, slot) &&
		      offsetof(struct ring_entry, offset) == offsetof(struct vmmu_dirty_gfn, offset) &&
		      sizeof(_Atomic uint32_t) == sizeof(uint32_t),
	      "the atomic view matches struct vmmu_dirty_gfn");

struct vmmu_dirty_ring {
	struct ring_entry *entry;
	uint32_t size;       /* entries, a power of two */
	uint32_t soft_limit; /* size - reserved */
	bool owned;          /* the library allocated entry[] */
	/* Producer side (KVM's dirty_index and reset_index); 32-bit, wrapping. */
	uint32_t push;
	uint32_t reset;
	/* Consumer side, on its own cache line. */
	alignas(64) uint32_t fetch;
};

int vmmu_dirty_ring_create(uint32_t nentries, uint32_t reserved, void *storage, struct vmmu_dirty_ring **out)
{
	struct vmmu_dirty_ring *ring;

	if (!out) {
		log_err("dirty: ring create without an out pointer");
		return -EINVAL;
	}
	if (nentries == 0 || (nentries & (nentries - 1)) || nentries > VMMU_DIRTY_RING_MAX_ENTRIES) {
		log_err("dirty: ring of %u entries: not a power of two up to 2^30", nentries);
		return -EINVAL;
	}
	if (reserved >= nentries) {
		log_err("dirty: ring of %u entries cannot reserve %u", nentries, reserved);
		return -EINVAL;
	}
	if ((uintptr_t)storage % alignof(struct vmmu_dirty_gfn)) {
		log_err("dirty: ring storage %p not 8-byte aligned", storage);
		return -EINVAL;
	}
	ring = aligned_alloc(alignof(struct vmmu_dirty_ring), sizeof(*ring));
	if (!ring)
		return -ENOMEM;
	memset(ring, 0, sizeof(*ring));
	if (storage) {
		ring->entry = storage;
	} else {
		ring->entry = calloc(nentries, sizeof(struct ring_entry));
		if (!ring->entry) {
			free(ring);
			return -ENOMEM;
		}
		ring->owned = true;
	}
	ring->size = nentries;
	ring->soft_limit = nentries - reserved;
	*out = ring;
	return 0;
}

void vmmu_dirty_ring_destroy(struct vmmu_dirty_ring *ring)
{
	if (!ring)
		return;
	if (ring->owned)
		free(ring->entry);
	free(ring);
}

struct vmmu_dirty_gfn *vmmu_dirty_ring_entries(struct vmmu_dirty_ring *ring)
{
	return ring ? (struct vmmu_dirty_gfn *)ring->entry : NULL;
}

static inline struct ring_entry *ring_at(const struct vmmu_dirty_ring *ring, uint32_t index)
{
	return &ring->entry[index & (ring->size - 1)];
}

uint32_t vmmu_dirty_ring_used(const struct vmmu_dirty_ring *ring)
{
	return ring ? ring->push - ring->reset : 0;
}

bool vmmu_dirty_ring_soft_full(const struct vmmu_dirty_ring *ring)
{
	return ring && ring->push - ring->reset >= ring->soft_limit;
}

int vmmu_dirty_ring_push(struct vmmu_dirty_ring *ring, uint32_t slot, uint64_t offset)
{
	struct ring_entry *e;
	uint32_t used;

	if (!ring) {
		log_err("dirty: push to a NULL ring");
		return -EINVAL;
	}
	used = ring->push - ring->reset;
	if (unlikely(used >= ring->size)) {
		log_err("dirty: ring of %u entries is full: the producer ignored SOFT_FULL", ring->size);
		return -ENOSPC;
	}
	e = ring_at(ring, ring->push);
	e->slot = slot;
	e->offset = offset;
	atomic_store_explicit(&e->flags, VMMU_DIRTY_GFN_F_DIRTY, memory_order_release);
	ring->push++;
	return used + 1 >= ring->soft_limit ? VMMU_DIRTY_RING_SOFT_FULL : VMMU_DIRTY_RING_OK;
}

int vmmu_dirty_ring_harvest(struct vmmu_dirty_ring *ring, struct vmmu_dirty_gfn *out, uint32_t max)
{
	uint32_t n = 0;

	if (!ring || (!out && max)) {
		log_err("dirty: harvest with a NULL %s", ring ? "output" : "ring");
		return -EINVAL;
	}
	if (max > INT32_MAX)
		max = INT32_MAX;
	while (n < max) {
		struct ring_entry *e = ring_at(ring, ring->fetch);
		uint32_t flags = atomic_load_explicit(&e->flags, memory_order_acquire);

		if ((flags & VMMU_DIRTY_GFN_F_MASK) != VMMU_DIRTY_GFN_F_DIRTY)
			break;
		out[n].flags = flags;
		out[n].slot = e->slot;
		out[n].offset = e->offset;
		/* Hands the entry back: the producer may reuse it after its reset. */
		atomic_store_explicit(&e->flags, VMMU_DIRTY_GFN_F_RESET, memory_order_release);
		ring->fetch++;
		n++;
	}
	return (int)n;
}

/* Report a merged run (unaligned @offset, @mask) as 64-aligned words. */
static void emit_run(vmmu_dirty_rearm_fn rearm, void *opaque, uint32_t slot, uint64_t offset, uint64_t mask)
{
	unsigned int shift = offset % 64;
	uint64_t base = offset - shift;
	uint64_t lo = mask << shift;
	uint64_t hi = shift ? mask >> (64 - shift) : 0;

	if (lo)
		rearm(slot, base, lo, opaque);
	if (hi)
		rearm(slot, base + 64, hi, opaque);
}

int vmmu_dirty_ring_reset(struct vmmu_dirty_ring *ring, vmmu_dirty_rearm_fn rearm, void *opaque)
{
	uint32_t cur_slot = 0;
	uint64_t cur_offset = 0, mask = 0;
	int count = 0;

	if (!ring) {
		log_err("dirty: reset of a NULL ring");
		return -EINVAL;
	}
	/* Entries past the push position are free; never walk onto them. */
	while (ring->reset != ring->push) {
		struct ring_entry *e = ring_at(ring, ring->reset);
		uint32_t slot;
		uint64_t offset;

		if (!(atomic_load_explicit(&e->flags, memory_order_acquire) & VMMU_DIRTY_GFN_F_RESET))
			break;
		slot = e->slot;
		offset = e->offset;
		atomic_store_explicit(&e->flags, 0, memory_order_relaxed);
		ring->reset++;
		count++;

		if (mask && slot == cur_slot) {
			/* Forwards within 64 pages of the run's first page. */
			if (offset >= cur_offset && offset - cur_offset < 64) {
				mask |= BIT_ULL(offset - cur_offset);
				continue;
			}
			/* Backwards, if the run still fits in 64 pages from the new first page. */
			if (offset < cur_offset && cur_offset - offset < 64) {
				unsigned int d = (unsigned int)(cur_offset - offset);

				if ((mask << d) >> d == mask) {
					mask = (mask << d) | 1;
					cur_offset = offset;
					continue;
				}
			}
		}
		if (mask && rearm)
			emit_run(rearm, opaque, cur_slot, cur_offset, mask);
		cur_slot = slot;
		cur_offset = offset;
		mask = 1;
	}
	if (mask && rearm)
		emit_run(rearm, opaque, cur_slot, cur_offset, mask);
	return count;
}
