/* SPDX-License-Identifier: MIT */
/*
 * Dirty bitmaps: KVM's layout, marking, get-and-clear, get + KVM_CLEAR_DIRTY_LOG
 * rules, initially-set, merging, and the bit and range iterators, checked
 * against a one-byte-per-page reference model.
 */
#include <errno.h>
#include <string.h>

#include "test_dirty_helpers.h"

/* The reference model: one byte per page. */
struct model {
	uint64_t npages;
	uint8_t *page;
};

static void model_init(struct model *m, uint64_t npages)
{
	m->npages = npages;
	m->page = calloc(npages, 1);
	assert_non_null(m->page);
}

/* The bitmap layout of the model, tail bits zero. */
static void model_words(const struct model *m, uint64_t *w)
{
	memset(w, 0, VMMU_DIRTY_WORDS(m->npages) * 8);
	for (uint64_t i = 0; i < m->npages; i++)
		if (m->page[i])
			w[i / 64] |= 1ULL << (i % 64);
}

static uint64_t model_count(const struct model *m)
{
	uint64_t n = 0;

	for (uint64_t i = 0; i < m->npages; i++)
		n += m->page[i];
	return n;
}

static struct vmmu_dirty_bitmap *new_bitmap(uint32_t slot, uint64_t npages, uint32_t flags)
{
	struct vmmu_dirty_bitmap *bm = NULL;

	assert_int_equal(vmmu_dirty_bitmap_create(slot, npages, flags, &bm), 0);
	assert_non_null(bm);
	assert_int_equal(vmmu_dirty_bitmap_npages(bm), npages);
	return bm;
}

static void test_words_macro(void **state)
{
	(void)state;
	assert_int_equal(VMMU_DIRTY_WORDS(1), 1);
	assert_int_equal(VMMU_DIRTY_WORDS(64), 1);
	assert_int_equal(VMMU_DIRTY_WORDS(65), 2);
	assert_int_equal(VMMU_DIRTY_WORDS(1ULL << 40), 1ULL << 34);
}

static void test_create_rejects(void **state)
{
	struct vmmu_dirty_bitmap *bm = (void *)0x1;
	struct log_capture log;

	(void)state;
	log_capture_start(&log);
	assert_int_equal(vmmu_dirty_bitmap_create(0, 0, 0, &bm), -EINVAL);
	assert_int_equal(vmmu_dirty_bitmap_create(0, (1ULL << 40) + 1, 0, &bm), -EINVAL);
	assert_int_equal(vmmu_dirty_bitmap_create(0, 64, 0x2, &bm), -EINVAL);
	assert_int_equal(vmmu_dirty_bitmap_create(0, 64, 0, NULL), -EINVAL);
	assert_int_equal(log.lines, 4);
	assert_ptr_equal(bm, (void *)0x1); /* untouched on error */
	log_capture_stop();
	vmmu_dirty_bitmap_destroy(NULL);
	assert_int_equal(vmmu_dirty_bitmap_npages(NULL), 0);
}

/* Layout: page i is bit i % 64 of little-endian word i / 64; edges of words and of the slot. */
static void test_mark_layout_edges(void **state)
{
	struct vmmu_dirty_bitmap *bm = new_bitmap(7, 130, 0);
	uint64_t buf[3];
	uint8_t bytes[24];

	(void)state;
	assert_int_equal(vmmu_dirty_bitmap_mark(bm, 0), 0);
	assert_int_equal(vmmu_dirty_bitmap_mark(bm, 63), 0);
	assert_int_equal(vmmu_dirty_bitmap_mark(bm, 64), 0);
	assert_int_equal(vmmu_dirty_bitmap_mark(bm, 129), 0); /* last page; the slot is not a multiple of 64 */
	assert_int_equal(vmmu_dirty_bitmap_mark(bm, 129), 0); /* marking twice is fine */
	assert_int_equal(vmmu_dirty_bitmap_test(bm, 0), 1);
	assert_int_equal(vmmu_dirty_bitmap_test(bm, 1), 0);
	assert_int_equal(vmmu_dirty_bitmap_test(bm, 63), 1);
	assert_int_equal(vmmu_dirty_bitmap_test(bm, 64), 1);
	assert_int_equal(vmmu_dirty_bitmap_test(bm, 128), 0);
	assert_int_equal(vmmu_dirty_bitmap_test(bm, 129), 1);
	assert_int_equal(vmmu_dirty_bitmap_get(bm, buf), 4);
	assert_int_equal(buf[0], 0x8000000000000001ULL);
	assert_int_equal(buf[1], 1);
	assert_int_equal(buf[2], 2);
	/* little-endian bytes, as KVM's buffer on x86 */
	memcpy(bytes, buf, sizeof(bytes));
	assert_int_equal(bytes[0], 0x01);
	assert_int_equal(bytes[7], 0x80);
	assert_int_equal(bytes[8], 0x01);
	assert_int_equal(bytes[16], 0x02);
	vmmu_dirty_bitmap_destroy(bm);
}

static void test_mark_rejects(void **state)
{
	struct vmmu_dirty_bitmap *bm = new_bitmap(0, 100, 0);
	struct log_capture log;
	uint64_t buf[2];

	(void)state;
	log_capture_start(&log);
	assert_int_equal(vmmu_dirty_bitmap_mark(bm, 100), -EINVAL);
	assert_int_equal(vmmu_dirty_bitmap_mark(bm, ~0ULL), -EINVAL);
	assert_int_equal(vmmu_dirty_bitmap_mark(NULL, 0), -EINVAL);
	assert_int_equal(vmmu_dirty_bitmap_test(bm, 100), -EINVAL);
	assert_int_equal(vmmu_dirty_bitmap_mark_range(bm, 90, 11), -EINVAL);
	assert_int_equal(vmmu_dirty_bitmap_mark_range(bm, 101, 0), -EINVAL);
	assert_int_equal(vmmu_dirty_bitmap_mark_range(bm, 1, ~0ULL), -EINVAL); /* would wrap */
	assert_int_equal(log.lines, 7);
	log_capture_stop();
	/* nothing was marked by the rejected calls */
	assert_int_equal(vmmu_dirty_bitmap_get(bm, buf), 0);
	assert_int_equal(vmmu_dirty_bitmap_mark_range(bm, 100, 0), 0); /* empty range at the end */
	assert_int_equal(vmmu_dirty_bitmap_mark_range(bm, 90, 10), 0);
	assert_int_equal(vmmu_dirty_bitmap_get(bm, buf), 10);
	vmmu_dirty_bitmap_destroy(bm);
}

/* mark_range against the model, over random ranges and slot sizes. */
static void test_mark_range_model(void **state)
{
	uint64_t seed = 0x1234;

	(void)state;
	for (int round = 0; round < 200; round++) {
		uint64_t npages = 1 + test_rand64(&seed) % 400;
		struct vmmu_dirty_bitmap *bm = new_bitmap(0, npages, 0);
		uint64_t buf[8], want[8];
		struct model m;

		model_init(&m, npages);
		for (int k = 0; k < 3; k++) {
			uint64_t first = test_rand64(&seed) % (npages + 1);
			uint64_t n = test_rand64(&seed) % (npages - first + 1);

			assert_int_equal(vmmu_dirty_bitmap_mark_range(bm, first, n), 0);
			memset(m.page + first, 1, n);
		}
		model_words(&m, want);
		assert_int_equal(vmmu_dirty_bitmap_get(bm, buf), model_count(&m));
		assert_memory_equal(buf, want, VMMU_DIRTY_WORDS(npages) * 8);
		free(m.page);
		vmmu_dirty_bitmap_destroy(bm);
	}
}

static void test_get_and_clear(void **state)
{
	struct vmmu_dirty_bitmap *bm = new_bitmap(9, 300, 0);
	struct rearm_log log = { 0 };
	uint64_t buf[5];

	(void)state;
	/* word 0 mixed, word 1 all ones (the store-only path), word 2 clean, word 4 the tail */
	assert_int_equal(vmmu_dirty_bitmap_mark(bm, 3), 0);
	assert_int_equal(vmmu_dirty_bitmap_mark_range(bm, 64, 64), 0);
	assert_int_equal(vmmu_dirty_bitmap_mark(bm, 299), 0);
	memset(buf, 0xa5, sizeof(buf));
	assert_int_equal(vmmu_dirty_bitmap_get_and_clear(bm, buf, rearm_record, &log), 66);
	assert_int_equal(buf[0], 1ULL << 3);
	assert_int_equal(buf[1], ~0ULL);
	assert_int_equal(buf[2], 0);
	assert_int_equal(buf[3], 0);
	assert_int_equal(buf[4], 1ULL << 43);
	/* one report per non-zero word, in order, with the slot id */
	assert_int_equal(log.n, 3);
	assert_int_equal(log.slot[0], 9);
	assert_int_equal(log.offset[0], 0);
	assert_int_equal(log.mask[0], 1ULL << 3);
	assert_int_equal(log.offset[1], 64);
	assert_int_equal(log.mask[1], ~0ULL);
	assert_int_equal(log.offset[2], 256);
	assert_int_equal(log.mask[2], 1ULL << 43);
	/* everything is clean now; a second harvest returns nothing */
	assert_int_equal(vmmu_dirty_bitmap_test(bm, 64), 0);
	assert_int_equal(vmmu_dirty_bitmap_get_and_clear(bm, buf, NULL, NULL), 0);
	for (int i = 0; i < 5; i++)
		assert_int_equal(buf[i], 0);
	vmmu_dirty_bitmap_destroy(bm);
}

static void rearm_count(uint32_t slot, uint64_t offset, uint64_t mask, void *opaque)
{
	(void)slot;
	assert_true(mask != 0 && offset % 64 == 0);
	++*(unsigned int *)opaque;
}

/*
 * Bitmaps of 4 MiB and more are copied out with streaming stores until the
 * first word that needs a locked exchange: check every word on both sides of
 * that switch, and get's copy, against what was marked.
 */
static void test_large_copy_out(void **state)
{
	const uint64_t npages = (1ULL << 25) + 100; /* a 4 MiB bitmap and a partial last word */
	const uint64_t nw = VMMU_DIRTY_WORDS(npages);
	struct vmmu_dirty_bitmap *bm = new_bitmap(0, npages, 0);
	uint64_t *buf = malloc(nw * 8);
	unsigned int reports = 0;

	(void)state;
	assert_non_null(buf);
	for (int pass = 0; pass < 3; pass++) {
		int64_t n;

		/* all-dirty words (stored, streamed), one mixed word (the switch), then more of both */
		assert_int_equal(vmmu_dirty_bitmap_mark_range(bm, 0, 64 * 1000), 0);
		assert_int_equal(vmmu_dirty_bitmap_mark(bm, 64 * 300000 + 5), 0);
		assert_int_equal(vmmu_dirty_bitmap_mark_range(bm, 64 * 400000, 64 * 2), 0);
		assert_int_equal(vmmu_dirty_bitmap_mark(bm, npages - 1), 0);
		memset(buf, 0xa5, nw * 8);
		if (pass == 0)
			n = vmmu_dirty_bitmap_get(bm, buf); /* streams throughout */
		else if (pass == 1)
			n = vmmu_dirty_bitmap_get_and_clear(bm, buf, rearm_count, &reports); /* a callback: no streaming */
		else
			n = vmmu_dirty_bitmap_get_and_clear(bm, buf, NULL, NULL); /* streams up to word 300000 */
		assert_int_equal(n, 64 * 1002 + 2);
		for (uint64_t i = 0; i < nw; i++) {
			uint64_t want = i < 1000 || i == 400000 || i == 400001 ? ~0ULL : 0;

			if (i == 300000)
				want = 1ULL << 5;
			if (i == nw - 1)
				want = 1ULL << 35; /* page npages - 1 = bit 99 - 64 */
			if (buf[i] != want)
				fail_msg("pass %d word %llu: 0x%llx, want 0x%llx", pass, (unsigned long long)i,
					 (unsigned long long)buf[i], (unsigned long long)want);
		}
	}
	assert_int_equal(reports, 1000 + 1 + 2 + 1);
	assert_int_equal(vmmu_dirty_bitmap_get(bm, buf), 0);
	memset(buf, 0xa5, nw * 8);
	assert_int_equal(vmmu_dirty_bitmap_get_and_clear(bm, buf, NULL, NULL), 0);
	for (uint64_t i = 0; i < nw; i++)
		assert_int_equal(buf[i], 0);
	free(buf);
	vmmu_dirty_bitmap_destroy(bm);
}

static void test_get_keeps_bits(void **state)
{
	struct vmmu_dirty_bitmap *bm = new_bitmap(0, 64, 0);
	uint64_t buf[1];

	(void)state;
	assert_int_equal(vmmu_dirty_bitmap_mark(bm, 5), 0);
	assert_int_equal(vmmu_dirty_bitmap_get(bm, buf), 1);
	assert_int_equal(vmmu_dirty_bitmap_get(bm, buf), 1);
	assert_int_equal(buf[0], 1ULL << 5);
	assert_int_equal(vmmu_dirty_bitmap_test(bm, 5), 1);
	vmmu_dirty_bitmap_destroy(bm);
}

static void test_null_args(void **state)
{
	struct vmmu_dirty_bitmap *bm = new_bitmap(0, 64, 0);
	struct log_capture log;
	uint64_t buf[1];

	(void)state;
	log_capture_start(&log);
	assert_int_equal(vmmu_dirty_bitmap_get_and_clear(NULL, buf, NULL, NULL), -EINVAL);
	assert_int_equal(vmmu_dirty_bitmap_get_and_clear(bm, NULL, NULL, NULL), -EINVAL);
	assert_int_equal(vmmu_dirty_bitmap_get(NULL, buf), -EINVAL);
	assert_int_equal(vmmu_dirty_bitmap_get(bm, NULL), -EINVAL);
	assert_int_equal(vmmu_dirty_bitmap_clear(NULL, 0, 64, buf, NULL, NULL), -EINVAL);
	assert_int_equal(vmmu_dirty_bitmap_merge_buf(NULL, buf), -EINVAL);
	assert_int_equal(vmmu_dirty_bitmap_merge_buf(bm, NULL), -EINVAL);
	assert_int_equal(log.lines, 7);
	log_capture_stop();
	vmmu_dirty_bitmap_destroy(bm);
}

/* Every KVM_CLEAR_DIRTY_LOG argument rule; each violation is -EINVAL, logged, and clears nothing. */
static void test_clear_rules(void **state)
{
	struct vmmu_dirty_bitmap *bm = new_bitmap(0, 200, VMMU_DIRTY_INITIALLY_SET); /* 200 = 3 * 64 + 8 */
	struct vmmu_dirty_bitmap *even = new_bitmap(0, 256, VMMU_DIRTY_INITIALLY_SET);
	uint64_t ones[4] = { ~0ULL, ~0ULL, ~0ULL, ~0ULL };
	struct log_capture log;
	uint64_t buf[4];

	(void)state;
	log_capture_start(&log);
	/* first page not a multiple of 64 */
	assert_int_equal(vmmu_dirty_bitmap_clear(bm, 1, 64, ones, NULL, NULL), -EINVAL);
	assert_int_equal(vmmu_dirty_bitmap_clear(bm, 32, 64, ones, NULL, NULL), -EINVAL);
	assert_int_equal(vmmu_dirty_bitmap_clear(bm, 63, 0, ones, NULL, NULL), -EINVAL);
	assert_int_equal(vmmu_dirty_bitmap_clear(bm, 200, 0, ones, NULL, NULL), -EINVAL); /* even empty at the end */
	/* length not a multiple of 64 and not reaching the slot end */
	assert_int_equal(vmmu_dirty_bitmap_clear(bm, 0, 65, ones, NULL, NULL), -EINVAL);
	assert_int_equal(vmmu_dirty_bitmap_clear(bm, 64, 1, ones, NULL, NULL), -EINVAL);
	assert_int_equal(vmmu_dirty_bitmap_clear(bm, 128, 71, ones, NULL, NULL), -EINVAL); /* one short of the end */
	/* range outside the slot */
	assert_int_equal(vmmu_dirty_bitmap_clear(bm, 192, 64, ones, NULL, NULL), -EINVAL); /* a multiple, past the end */
	assert_int_equal(vmmu_dirty_bitmap_clear(bm, 0, 201, ones, NULL, NULL), -EINVAL);
	assert_int_equal(vmmu_dirty_bitmap_clear(bm, 256, 0, ones, NULL, NULL), -EINVAL);  /* starts past the end */
	assert_int_equal(vmmu_dirty_bitmap_clear(bm, 1ULL << 63, 64, ones, NULL, NULL), -EINVAL);
	assert_int_equal(vmmu_dirty_bitmap_clear(bm, 64, ~0ULL - 63, ones, NULL, NULL), -EINVAL); /* wraps */
	/* a slot whose size is a multiple of 64: a partial length never reaches its end */
	assert_int_equal(vmmu_dirty_bitmap_clear(even, 192, 63, ones, NULL, NULL), -EINVAL);
	/* no mask */
	assert_int_equal(vmmu_dirty_bitmap_clear(bm, 0, 64, NULL, NULL, NULL), -EINVAL);
	assert_int_equal(log.lines, 14);
	log_capture_stop();
	/* nothing was cleared by any of them */
	assert_int_equal(vmmu_dirty_bitmap_get(bm, buf), 200);
	assert_int_equal(vmmu_dirty_bitmap_get(even, buf), 256);

	/* the legal shapes */
	assert_int_equal(vmmu_dirty_bitmap_clear(bm, 0, 0, NULL, NULL, NULL), 0);     /* empty */
	assert_int_equal(vmmu_dirty_bitmap_clear(even, 256, 0, NULL, NULL, NULL), 0); /* empty, at the end */
	assert_int_equal(vmmu_dirty_bitmap_clear(bm, 192, 8, ones, NULL, NULL), 8);   /* the partial last word */
	assert_int_equal(vmmu_dirty_bitmap_clear(bm, 64, 136, ones, NULL, NULL), 128); /* reaching the end */
	assert_int_equal(vmmu_dirty_bitmap_clear(bm, 0, 64, ones, NULL, NULL), 64);
	assert_int_equal(vmmu_dirty_bitmap_get(bm, buf), 0);
	assert_int_equal(vmmu_dirty_bitmap_clear(even, 0, 256, ones, NULL, NULL), 256);
	vmmu_dirty_bitmap_destroy(bm);
	vmmu_dirty_bitmap_destroy(even);
}

/* Only bits both set and in the mask are cleared and reported; the mask is relative to the first page. */
static void test_clear_mask(void **state)
{
	struct vmmu_dirty_bitmap *bm = new_bitmap(3, 200, 0);
	struct rearm_log log = { 0 };
	uint64_t mask[3], buf[4];

	(void)state;
	assert_int_equal(vmmu_dirty_bitmap_mark(bm, 0), 0);   /* outside the cleared range */
	assert_int_equal(vmmu_dirty_bitmap_mark(bm, 64), 0);  /* range bit 0, in the mask */
	assert_int_equal(vmmu_dirty_bitmap_mark(bm, 70), 0);  /* set, not in the mask: stays */
	assert_int_equal(vmmu_dirty_bitmap_mark(bm, 199), 0); /* range bit 135, in the mask */
	mask[0] = (1ULL << 0) | (1ULL << 1);                 /* page 65 is in the mask but clean */
	mask[1] = 0;
	mask[2] = (1ULL << 7) | (1ULL << 9);                 /* 199, and 201 which is past the slot */
	assert_int_equal(vmmu_dirty_bitmap_clear(bm, 64, 136, mask, rearm_record, &log), 2);
	assert_int_equal(log.n, 2);
	assert_int_equal(log.slot[0], 3);
	assert_int_equal(log.offset[0], 64);
	assert_int_equal(log.mask[0], 1);
	assert_int_equal(log.offset[1], 192);
	assert_int_equal(log.mask[1], 1ULL << 7);
	assert_int_equal(vmmu_dirty_bitmap_get(bm, buf), 2);
	assert_int_equal(buf[0], 1);
	assert_int_equal(buf[1], 1ULL << 6);
	assert_int_equal(buf[3], 0);
	/* clearing again clears nothing and reports nothing */
	log.n = 0;
	assert_int_equal(vmmu_dirty_bitmap_clear(bm, 64, 136, mask, rearm_record, &log), 0);
	assert_int_equal(log.n, 0);
	vmmu_dirty_bitmap_destroy(bm);
}

/* get + clear of what get returned is equivalent to get_and_clear. */
static void test_get_then_clear_model(void **state)
{
	uint64_t seed = 77;

	(void)state;
	for (int round = 0; round < 100; round++) {
		uint64_t npages = 1 + test_rand64(&seed) % 700;
		uint64_t nw = VMMU_DIRTY_WORDS(npages);
		struct vmmu_dirty_bitmap *bm = new_bitmap(0, npages, 0);
		uint64_t got[11], want[11];
		struct model m;
		int64_t n;

		model_init(&m, npages);
		for (uint64_t k = test_rand64(&seed) % 50; k > 0; k--) {
			uint64_t p = test_rand64(&seed) % npages;

			assert_int_equal(vmmu_dirty_bitmap_mark(bm, p), 0);
			m.page[p] = 1;
		}
		model_words(&m, want);
		n = vmmu_dirty_bitmap_get(bm, got);
		assert_int_equal(n, model_count(&m));
		assert_memory_equal(got, want, nw * 8);
		/* clear in 64-page chunks, the last one reaching the end */
		for (uint64_t first = 0; first < npages; first += 64) {
			uint64_t len = npages - first < 64 ? npages - first : 64;

			n -= vmmu_dirty_bitmap_clear(bm, first, len, &got[first / 64], NULL, NULL);
		}
		assert_int_equal(n, 0);
		assert_int_equal(vmmu_dirty_bitmap_get(bm, got), 0);
		free(m.page);
		vmmu_dirty_bitmap_destroy(bm);
	}
}

static void test_initially_set(void **state)
{
	struct vmmu_dirty_bitmap *bm = new_bitmap(0, 100, VMMU_DIRTY_INITIALLY_SET);
	struct vmmu_dirty_bitmap *one = new_bitmap(0, 1, VMMU_DIRTY_INITIALLY_SET);
	uint64_t buf[2];

	(void)state;
	assert_int_equal(vmmu_dirty_bitmap_test(bm, 0), 1);
	assert_int_equal(vmmu_dirty_bitmap_test(bm, 99), 1);
	/* the bits past the last page stay zero */
	assert_int_equal(vmmu_dirty_bitmap_get(bm, buf), 100);
	assert_int_equal(buf[0], ~0ULL);
	assert_int_equal(buf[1], (1ULL << 36) - 1);
	assert_int_equal(vmmu_dirty_bitmap_get_and_clear(bm, buf, NULL, NULL), 100);
	assert_int_equal(vmmu_dirty_bitmap_get(bm, buf), 0);
	assert_int_equal(vmmu_dirty_bitmap_get(one, buf), 1);
	assert_int_equal(buf[0], 1);
	vmmu_dirty_bitmap_destroy(bm);
	vmmu_dirty_bitmap_destroy(one);
}

static void test_merge(void **state)
{
	struct vmmu_dirty_bitmap *kvm = new_bitmap(0, 130, 0), *vmm = new_bitmap(0, 130, 0);
	struct vmmu_dirty_bitmap *other = new_bitmap(0, 129, 0);
	struct log_capture log;
	uint64_t buf[3], ext[3] = { 1ULL << 10, 0, ~0ULL }; /* the tail word has bits past page 129 */

	(void)state;
	assert_int_equal(vmmu_dirty_bitmap_mark(kvm, 1), 0);
	assert_int_equal(vmmu_dirty_bitmap_mark(kvm, 64), 0);
	assert_int_equal(vmmu_dirty_bitmap_mark(vmm, 1), 0);
	assert_int_equal(vmmu_dirty_bitmap_mark(vmm, 129), 0);
	assert_int_equal(vmmu_dirty_bitmap_merge(kvm, vmm), 0);
	assert_int_equal(vmmu_dirty_bitmap_get(kvm, buf), 3);
	assert_int_equal(buf[0], 2);
	assert_int_equal(buf[1], 1);
	assert_int_equal(buf[2], 2);
	assert_int_equal(vmmu_dirty_bitmap_get(vmm, buf), 2); /* the source is unchanged */
	assert_int_equal(vmmu_dirty_bitmap_merge_buf(vmm, ext), 0);
	assert_int_equal(vmmu_dirty_bitmap_get(vmm, buf), 4);
	assert_int_equal(buf[0], (1ULL << 10) | 2);
	assert_int_equal(buf[2], 3); /* pages 128 and 129 only */

	log_capture_start(&log);
	assert_int_equal(vmmu_dirty_bitmap_merge(kvm, other), -EINVAL);
	assert_int_equal(vmmu_dirty_bitmap_merge(kvm, kvm), -EINVAL);
	assert_int_equal(vmmu_dirty_bitmap_merge(NULL, kvm), -EINVAL);
	assert_int_equal(vmmu_dirty_bitmap_merge(kvm, NULL), -EINVAL);
	assert_int_equal(log.lines, 4);
	log_capture_stop();
	vmmu_dirty_bitmap_destroy(kvm);
	vmmu_dirty_bitmap_destroy(vmm);
	vmmu_dirty_bitmap_destroy(other);
}

/* ---- iterators ---- */

static unsigned int collect_bits(const uint64_t *w, uint64_t npages, uint64_t base, uint64_t *out, unsigned int max)
{
	struct vmmu_dirty_iter it;
	unsigned int n = 0;
	vmmu_gfn_t gfn;

	vmmu_dirty_iter_init(&it, w, npages, base);
	while (vmmu_dirty_iter_next(&it, &gfn)) {
		assert_true(n < max);
		out[n++] = gfn;
	}
	/* stays at the end */
	assert_false(vmmu_dirty_iter_next(&it, &gfn));
	return n;
}

static void test_iter_edges(void **state)
{
	/* 130 pages: bits 0, 63, 64, 129 (the last page), and tail bits past the slot that must be ignored */
	uint64_t w[3] = { 0x8000000000000001ULL, 1, 2 | 0xf0 };
	uint64_t got[8];
	struct vmmu_dirty_iter it;
	struct vmmu_dirty_range r;

	(void)state;
	assert_int_equal(collect_bits(w, 130, 0, got, 8), 4);
	assert_int_equal(got[0], 0);
	assert_int_equal(got[1], 63);
	assert_int_equal(got[2], 64);
	assert_int_equal(got[3], 129);
	/* with a base gfn */
	assert_int_equal(collect_bits(w, 130, 0x1000, got, 8), 4);
	assert_int_equal(got[3], 0x1000 + 129);

	/* ranges: {0}, {63, 64} crossing a word, {129} */
	vmmu_dirty_iter_init(&it, w, 130, 0x1000);
	assert_true(vmmu_dirty_iter_next_range(&it, &r));
	assert_int_equal(r.first, 0x1000);
	assert_int_equal(r.npages, 1);
	assert_true(vmmu_dirty_iter_next_range(&it, &r));
	assert_int_equal(r.first, 0x1000 + 63);
	assert_int_equal(r.npages, 2);
	assert_true(vmmu_dirty_iter_next_range(&it, &r));
	assert_int_equal(r.first, 0x1000 + 129);
	assert_int_equal(r.npages, 1);
	assert_false(vmmu_dirty_iter_next_range(&it, &r));
	assert_false(vmmu_dirty_iter_next_range(&it, &r));

	/* an empty buffer, and a slot of one page */
	uint64_t zero[2] = { 0, 0 }, one = ~0ULL;

	assert_int_equal(collect_bits(zero, 128, 0, got, 8), 0);
	vmmu_dirty_iter_init(&it, zero, 128, 0);
	assert_false(vmmu_dirty_iter_next_range(&it, &r));
	assert_int_equal(collect_bits(&one, 1, 5, got, 8), 1);
	assert_int_equal(got[0], 5);
}

static void test_iter_full_runs(void **state)
{
	uint64_t w[4] = { ~0ULL, ~0ULL, ~0ULL, ~0ULL };
	struct vmmu_dirty_iter it;
	struct vmmu_dirty_range r;

	(void)state;
	/* all 250 pages dirty, tail bits set in the buffer: one range of exactly 250 */
	vmmu_dirty_iter_init(&it, w, 250, 0);
	assert_true(vmmu_dirty_iter_next_range(&it, &r));
	assert_int_equal(r.first, 0);
	assert_int_equal(r.npages, 250);
	assert_false(vmmu_dirty_iter_next_range(&it, &r));
	/* 256: a run ending exactly at the last bit of the last word */
	vmmu_dirty_iter_init(&it, w, 256, 0);
	assert_true(vmmu_dirty_iter_next_range(&it, &r));
	assert_int_equal(r.npages, 256);
	assert_false(vmmu_dirty_iter_next_range(&it, &r));
	/* a run from bit 1 through three words, ending at bit 0 of the fourth */
	w[0] = ~1ULL;
	w[3] = 1 | (1ULL << 2) | (1ULL << 63);
	vmmu_dirty_iter_init(&it, w, 256, 0);
	assert_true(vmmu_dirty_iter_next_range(&it, &r));
	assert_int_equal(r.first, 1);
	assert_int_equal(r.npages, 63 + 128 + 1);
	assert_true(vmmu_dirty_iter_next_range(&it, &r));
	assert_int_equal(r.first, 194);
	assert_int_equal(r.npages, 1);
	assert_true(vmmu_dirty_iter_next_range(&it, &r));
	assert_int_equal(r.first, 255);
	assert_int_equal(r.npages, 1);
	assert_false(vmmu_dirty_iter_next_range(&it, &r));
}

/* Both iterators, and a mix of them, against a per-bit scan of the model over random patterns. */
static void test_iter_model(void **state)
{
	uint64_t seed = 99;

	(void)state;
	for (int round = 0; round < 1000; round++) {
		uint64_t npages = 1 + test_rand64(&seed) % (round % 2 ? 5000 : 600);
		uint64_t base = test_rand64(&seed) % 4096;
		uint64_t w[VMMU_DIRTY_WORDS(5000)];
		struct vmmu_dirty_iter it;
		struct vmmu_dirty_range r;
		unsigned int density = test_rand64(&seed) % 4;
		uint64_t next = 0; /* the model's next page to account for */
		vmmu_gfn_t gfn;
		struct model m;

		model_init(&m, npages);
		/* runs of random lengths: sparse, medium, dense, long runs (many full words), all set */
		for (uint64_t p = 0; p < npages;) {
			uint64_t len = 1 + test_rand64(&seed) % (density == 3 ? 1500 : 70);
			bool set = density == 3 ? test_rand64(&seed) % 5 != 0 : test_rand64(&seed) % 4 < density;

			if (round % 25 == 0)
				set = true;

			for (uint64_t q = p; q < p + len && q < npages; q++)
				m.page[q] = set;
			p += len;
		}
		model_words(&m, w);
		/* garbage past the slot must not show */
		if (npages % 64)
			w[npages / 64] |= ~0ULL << (npages % 64);

		vmmu_dirty_iter_init(&it, w, npages, base);
		for (;;) {
			bool use_range = test_rand64(&seed) & 1;

			while (next < npages && !m.page[next])
				next++;
			if (next == npages) {
				assert_false(use_range ? vmmu_dirty_iter_next_range(&it, &r) : vmmu_dirty_iter_next(&it, &gfn));
				break;
			}
			if (use_range) {
				uint64_t end = next;

				while (end < npages && m.page[end])
					end++;
				assert_true(vmmu_dirty_iter_next_range(&it, &r));
				assert_int_equal(r.first, base + next);
				assert_int_equal(r.npages, end - next);
				next = end;
			} else {
				assert_true(vmmu_dirty_iter_next(&it, &gfn));
				assert_int_equal(gfn, base + next);
				/* a following range starts after this page, even mid-run */
				m.page[next] = 0;
				next++;
			}
		}
		free(m.page);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_words_macro),
		cmocka_unit_test(test_create_rejects),
		cmocka_unit_test(test_mark_layout_edges),
		cmocka_unit_test(test_mark_rejects),
		cmocka_unit_test(test_mark_range_model),
		cmocka_unit_test(test_get_and_clear),
		cmocka_unit_test(test_large_copy_out),
		cmocka_unit_test(test_get_keeps_bits),
		cmocka_unit_test(test_null_args),
		cmocka_unit_test(test_clear_rules),
		cmocka_unit_test(test_clear_mask),
		cmocka_unit_test(test_get_then_clear_model),
		cmocka_unit_test(test_initially_set),
		cmocka_unit_test(test_merge),
		cmocka_unit_test(test_iter_edges),
		cmocka_unit_test(test_iter_full_runs),
		cmocka_unit_test(test_iter_model),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
