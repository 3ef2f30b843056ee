/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: sequences of dirty-bitmap and dirty-ring operations, each
 * checked against a deliberately simple model (a byte per page; a list of
 * ring entries with their state). Any difference aborts.
 *
 * Input: 5 header bytes (bitmap size, initially-set flag, ring size, reserved
 * entries), then operations of 5 bytes each: an opcode and 4 argument bytes.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_helpers.h"
#include <libvmmu/dirty.h>
#include <libvmmu/vmmu.h>

#define MAX_PAGES 700
#define MAX_WORDS ((MAX_PAGES + 63) / 64)
#define MAX_RING 64


struct bitmap_model {
	struct vmmu_dirty_bitmap *bm;
	uint64_t npages;
	uint8_t page[MAX_PAGES];
};

struct ring_model {
	struct vmmu_dirty_ring *ring;
	uint32_t size, soft_limit;
	/* entries [reset, harvest) harvested, [harvest, push) dirty; indices grow forever */
	uint64_t push, harvest, reset;
	uint32_t slot[MAX_RING];
	uint64_t offset[MAX_RING];
};

static void model_words(const struct bitmap_model *m, uint64_t *w)
{
	memset(w, 0, MAX_WORDS * 8);
	for (uint64_t i = 0; i < m->npages; i++)
		if (m->page[i])
			w[i / 64] |= 1ULL << (i % 64);
}

static int64_t model_count(const struct bitmap_model *m)
{
	int64_t n = 0;

	for (uint64_t i = 0; i < m->npages; i++)
		n += m->page[i];
	return n;
}

/* Re-arm reports, checked against what the model says was cleared. */
struct rearm_check {
	uint64_t words[MAX_WORDS]; /* bitmap: union of reports, slot-relative */
	uint32_t slot;
	unsigned int reports;
	/* ring: pages reported per slot (slots 0-3, offsets below 256) */
	uint8_t ring_page[4][256 + 64];
};

static void rearm_bitmap(uint32_t slot, uint64_t offset, uint64_t mask, void *opaque)
{
	struct rearm_check *c = opaque;

	CHECK(slot == c->slot);
	CHECK(offset % 64 == 0 && offset / 64 < MAX_WORDS && mask);
	CHECK(!(c->words[offset / 64] & mask)); /* each bit reported once */
	c->words[offset / 64] |= mask;
	c->reports++;
}

static void rearm_ring(uint32_t slot, uint64_t offset, uint64_t mask, void *opaque)
{
	struct rearm_check *c = opaque;

	CHECK(slot < 4 && offset % 64 == 0 && offset < 256 && mask);
	for (unsigned int b = 0; b < 64; b++)
		if (mask >> b & 1)
			c->ring_page[slot][offset + b] = 1;
	c->reports++;
}

static void check_iterators(const struct bitmap_model *m, const uint64_t *words, uint64_t base, uint8_t how)
{
	struct vmmu_dirty_iter it;
	struct vmmu_dirty_range r;
	uint8_t consumed[MAX_PAGES];
	uint64_t next = 0;
	vmmu_gfn_t gfn;

	memcpy(consumed, m->page, sizeof(consumed));
	vmmu_dirty_iter_init(&it, words, m->npages, base);
	for (unsigned int step = 0;; step++) {
		bool range = (how >> (step % 8)) & 1;

		while (next < m->npages && !consumed[next])
			next++;
		if (next == m->npages) {
			CHECK(!(range ? vmmu_dirty_iter_next_range(&it, &r) : vmmu_dirty_iter_next(&it, &gfn)));
			return;
		}
		if (range) {
			uint64_t end = next;

			while (end < m->npages && consumed[end])
				end++;
			CHECK(vmmu_dirty_iter_next_range(&it, &r));
			CHECK(r.first == base + next && r.npages == end - next);
			next = end;
		} else {
			CHECK(vmmu_dirty_iter_next(&it, &gfn));
			CHECK(gfn == base + next);
			consumed[next++] = 0;
		}
	}
}

/* KVM_CLEAR_DIRTY_LOG's rules, written out independently of the library. */
static bool clear_is_valid(uint64_t npages, uint64_t first, uint64_t n)
{
	if (first % 64 != 0)
		return false;
	if (first > npages)
		return false;
	if (first + n > npages)
		return false;
	if (n % 64 != 0 && first + n != npages)
		return false;
	return true;
}

static void bitmap_op(struct bitmap_model *m, struct bitmap_model *m2, uint8_t op, const uint8_t *a)
{
	uint64_t arg16 = (uint64_t)a[0] | (uint64_t)a[1] << 8, arg16b = (uint64_t)a[2] | (uint64_t)a[3] << 8;
	uint64_t seed = mix(arg16 << 16 | arg16b);
	uint64_t buf[MAX_WORDS + 1], want[MAX_WORDS];
	struct rearm_check c = { .slot = 1 };
	int64_t n;

	switch (op) {
	case 0: { /* mark, sometimes out of range */
		uint64_t p = arg16 % (m->npages + 8);
		int ret = vmmu_dirty_bitmap_mark(m->bm, p);

		CHECK(ret == (p < m->npages ? 0 : -EINVAL));
		if (!ret)
			m->page[p] = 1;
		break;
	}
	case 1: { /* mark_range */
		uint64_t first = arg16 % (m->npages + 4), len = arg16b % (m->npages + 4);
		bool ok = first <= m->npages && len <= m->npages - first;

		CHECK(vmmu_dirty_bitmap_mark_range(m->bm, first, len) == (ok ? 0 : -EINVAL));
		if (ok)
			memset(m->page + first, 1, len);
		break;
	}
	case 2: { /* test */
		uint64_t p = arg16 % (m->npages + 2);

		CHECK(vmmu_dirty_bitmap_test(m->bm, p) == (p < m->npages ? m->page[p] : -EINVAL));
		break;
	}
	case 3: /* get_and_clear */
		model_words(m, want);
		n = vmmu_dirty_bitmap_get_and_clear(m->bm, buf, a[0] & 1 ? rearm_bitmap : NULL, &c);
		CHECK(n == model_count(m));
		CHECK(!memcmp(buf, want, VMMU_DIRTY_WORDS(m->npages) * 8));
		if (a[0] & 1)
			CHECK(!memcmp(c.words, want, VMMU_DIRTY_WORDS(m->npages) * 8));
		memset(m->page, 0, sizeof(m->page));
		break;
	case 4: /* get, then iterate the buffer (with garbage past the slot) */
		model_words(m, want);
		n = vmmu_dirty_bitmap_get(m->bm, buf);
		CHECK(n == model_count(m));
		CHECK(!memcmp(buf, want, VMMU_DIRTY_WORDS(m->npages) * 8));
		if (m->npages % 64 && (a[2] & 1))
			buf[m->npages / 64] |= ~0ULL << (m->npages % 64);
		check_iterators(m, buf, arg16 * 7, a[3]);
		break;
	case 5: { /* clear with a random mask; often aligned so the rules pass */
		uint64_t first = a[0] & 1 ? (arg16 >> 1) % (m->npages + 70) : (arg16 >> 1) % 16 * 64;
		uint64_t len = a[2] & 1 ? (arg16b >> 1) % (m->npages + 70) : (arg16b >> 1) % 12 * 64;
		uint64_t mask[MAX_WORDS + 2];
		bool valid;
		int64_t cleared = 0;

		if (a[2] & 2 && first <= m->npages)
			len = m->npages - first; /* reach the end */
		valid = clear_is_valid(m->npages, first, len);
		for (unsigned int i = 0; i < MAX_WORDS + 2; i++) {
			seed = mix(seed + i);
			mask[i] = a[3] & 1 ? ~0ULL : seed & mix(seed);
		}
		memset(want, 0, sizeof(want));
		if (valid) {
			for (uint64_t i = 0; i < len; i++) {
				uint64_t p = first + i;

				if ((mask[i / 64] >> (i % 64) & 1) && m->page[p]) {
					m->page[p] = 0;
					want[p / 64] |= 1ULL << (p % 64);
					cleared++;
				}
			}
		}
		n = vmmu_dirty_bitmap_clear(m->bm, first, len, mask, rearm_bitmap, &c);
		CHECK(n == (valid ? cleared : -EINVAL));
		CHECK(!memcmp(c.words, want, sizeof(want)));
		break;
	}
	case 6: /* merge a buffer (bits past the slot ignored) */
		for (unsigned int i = 0; i < MAX_WORDS; i++) {
			seed = mix(seed + i);
			buf[i] = seed & mix(seed) & mix(seed + 1);
		}
		CHECK(vmmu_dirty_bitmap_merge_buf(m->bm, buf) == 0);
		for (uint64_t i = 0; i < m->npages; i++)
			if (buf[i / 64] >> (i % 64) & 1)
				m->page[i] = 1;
		break;
	case 7: /* mark in the second bitmap */
		if (vmmu_dirty_bitmap_mark_range(m2->bm, arg16 % m2->npages, 1 + arg16b % 3) == 0)
			for (uint64_t i = 0; i < 1 + arg16b % 3; i++)
				m2->page[arg16 % m2->npages + i] = 1;
		break;
	case 8: /* merge the second bitmap */
		CHECK(vmmu_dirty_bitmap_merge(m->bm, m2->bm) == (m->npages == m2->npages ? 0 : -EINVAL));
		if (m->npages == m2->npages)
			for (uint64_t i = 0; i < m->npages; i++)
				m->page[i] |= m2->page[i];
		break;
	}
}

static void ring_op(struct ring_model *r, uint8_t op, const uint8_t *a)
{
	struct vmmu_dirty_gfn out[MAX_RING];
	struct rearm_check c = { 0 };
	int ret;

	switch (op) {
	case 0: { /* push */
		uint32_t slot = a[0] % 4;
		uint64_t offset = a[1];
		uint64_t used = r->push - r->reset;

		ret = vmmu_dirty_ring_push(r->ring, slot, offset);
		if (used == r->size) {
			CHECK(ret == -ENOSPC);
			break;
		}
		CHECK(ret == (used + 1 >= r->soft_limit ? VMMU_DIRTY_RING_SOFT_FULL : VMMU_DIRTY_RING_OK));
		r->slot[r->push % r->size] = slot;
		r->offset[r->push % r->size] = offset;
		r->push++;
		break;
	}
	case 1: { /* harvest */
		uint32_t max = a[0] % (MAX_RING + 4);
		uint64_t avail = r->push - r->harvest, take = avail < max ? avail : max;

		ret = vmmu_dirty_ring_harvest(r->ring, out, max);
		CHECK(ret == (int)take);
		for (int i = 0; i < ret; i++, r->harvest++) {
			CHECK(out[i].flags == VMMU_DIRTY_GFN_F_DIRTY);
			CHECK(out[i].slot == r->slot[r->harvest % r->size]);
			CHECK(out[i].offset == r->offset[r->harvest % r->size]);
		}
		break;
	}
	case 2: { /* reset: the reports cover exactly the harvested entries' pages */
		uint8_t want[4][256 + 64] = { { 0 } };
		uint64_t n = r->harvest - r->reset;

		for (uint64_t i = r->reset; i < r->harvest; i++)
			want[r->slot[i % r->size]][r->offset[i % r->size]] = 1;
		ret = vmmu_dirty_ring_reset(r->ring, rearm_ring, &c);
		CHECK(ret == (int)n);
		CHECK(c.reports <= 2 * n);
		CHECK(!memcmp(want, c.ring_page, sizeof(want)));
		r->reset = r->harvest;
		break;
	}
	}
	CHECK(vmmu_dirty_ring_used(r->ring) == r->push - r->reset);
	CHECK(vmmu_dirty_ring_soft_full(r->ring) == (r->push - r->reset >= r->soft_limit));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct bitmap_model m, m2;
	struct ring_model r;

	if (size < 5)
		return 0;
	vmmu_set_log(NULL, VMMU_LOG_ERROR, NULL); /* rejected input is expected here */
	memset(&m, 0, sizeof(m));
	memset(&m2, 0, sizeof(m2));
	memset(&r, 0, sizeof(r));
	m.npages = 1 + ((uint64_t)data[0] | (uint64_t)(data[1] & 3) << 8) % MAX_PAGES;
	m2.npages = data[1] & 4 ? m.npages : 1 + m.npages / 2;
	if (vmmu_dirty_bitmap_create(1, m.npages, data[2] & 1 ? VMMU_DIRTY_INITIALLY_SET : 0, &m.bm) ||
	    vmmu_dirty_bitmap_create(2, m2.npages, 0, &m2.bm))
		abort();
	if (data[2] & 1)
		memset(m.page, 1, m.npages);
	r.size = 1u << (data[3] % 7);
	r.soft_limit = r.size - data[4] % r.size;
	if (vmmu_dirty_ring_create(r.size, r.size - r.soft_limit, NULL, &r.ring))
		abort();
	for (size_t i = 5; i + 5 <= size; i += 5) {
		uint8_t op = data[i];

		if (op < 160)
			bitmap_op(&m, &m2, op % 9, &data[i + 1]);
		else
			ring_op(&r, op % 3, &data[i + 1]);
	}
	vmmu_dirty_bitmap_destroy(m.bm);
	vmmu_dirty_bitmap_destroy(m2.bm);
	vmmu_dirty_ring_destroy(r.ring);
	return 0;
}
