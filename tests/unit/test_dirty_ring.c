/* SPDX-License-Identifier: MIT */
/*
 * Dirty rings: KVM's entry layout and flag protocol, wrap-around, soft and hard
 * limits, caller-provided storage, and the reset's coalescing of re-protect
 * reports (forwards, backwards, slot changes, duplicates).
 */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "test_dirty_helpers.h"

_Static_assert(sizeof(struct vmmu_dirty_gfn) == 16, "kvm_dirty_gfn is 16 bytes");
_Static_assert(offsetof(struct vmmu_dirty_gfn, slot) == 4, "slot at 4");
_Static_assert(offsetof(struct vmmu_dirty_gfn, offset) == 8, "offset at 8");

static struct vmmu_dirty_ring *new_ring(uint32_t n, uint32_t reserved, void *storage)
{
	struct vmmu_dirty_ring *r = NULL;

	assert_int_equal(vmmu_dirty_ring_create(n, reserved, storage, &r), 0);
	assert_non_null(r);
	return r;
}

static void test_create_rejects(void **state)
{
	static struct vmmu_dirty_gfn mem[8];
	struct vmmu_dirty_ring *r = (void *)0x1;
	struct log_capture log;

	(void)state;
	log_capture_start(&log);
	assert_int_equal(vmmu_dirty_ring_create(0, 0, NULL, &r), -EINVAL);
	assert_int_equal(vmmu_dirty_ring_create(12, 0, NULL, &r), -EINVAL);
	assert_int_equal(vmmu_dirty_ring_create(1u << 31, 0, NULL, &r), -EINVAL);
	assert_int_equal(vmmu_dirty_ring_create(8, 8, NULL, &r), -EINVAL);
	assert_int_equal(vmmu_dirty_ring_create(8, 9, NULL, &r), -EINVAL);
	assert_int_equal(vmmu_dirty_ring_create(8, 0, (char *)mem + 4, &r), -EINVAL);
	assert_int_equal(vmmu_dirty_ring_create(8, 0, NULL, NULL), -EINVAL);
	assert_int_equal(log.lines, 7);
	assert_ptr_equal(r, (void *)0x1);
	log_capture_stop();
	vmmu_dirty_ring_destroy(NULL);
	assert_int_equal(vmmu_dirty_ring_used(NULL), 0);
	assert_false(vmmu_dirty_ring_soft_full(NULL));
	assert_null(vmmu_dirty_ring_entries(NULL));
}

/* The flags go 00 -> 01 (push) -> 10 (harvest) -> 00 (reset), in the caller's storage. */
static void test_flag_protocol(void **state)
{
	static struct vmmu_dirty_gfn mem[4];
	struct vmmu_dirty_ring *r = new_ring(4, 1, mem);
	struct vmmu_dirty_gfn out[4];

	(void)state;
	assert_ptr_equal(vmmu_dirty_ring_entries(r), mem);
	assert_int_equal(vmmu_dirty_ring_push(r, 0x10002, 0x123456789ULL), VMMU_DIRTY_RING_OK);
	assert_int_equal(mem[0].flags, VMMU_DIRTY_GFN_F_DIRTY);
	assert_int_equal(mem[0].slot, 0x10002);
	assert_int_equal(mem[0].offset, 0x123456789ULL);
	assert_int_equal(mem[1].flags, 0);
	assert_int_equal(vmmu_dirty_ring_used(r), 1);

	assert_int_equal(vmmu_dirty_ring_harvest(r, out, 4), 1);
	assert_int_equal(out[0].flags, VMMU_DIRTY_GFN_F_DIRTY);
	assert_int_equal(out[0].slot, 0x10002);
	assert_int_equal(out[0].offset, 0x123456789ULL);
	assert_int_equal(mem[0].flags, VMMU_DIRTY_GFN_F_RESET);
	assert_int_equal(vmmu_dirty_ring_used(r), 1); /* harvested entries are used until reset */
	assert_int_equal(vmmu_dirty_ring_harvest(r, out, 4), 0); /* nothing more is dirty */

	assert_int_equal(vmmu_dirty_ring_reset(r, NULL, NULL), 1);
	assert_int_equal(mem[0].flags, 0);
	assert_int_equal(vmmu_dirty_ring_used(r), 0);
	assert_int_equal(vmmu_dirty_ring_reset(r, NULL, NULL), 0);
	vmmu_dirty_ring_destroy(r);
	/* the caller's storage is not freed (static: a free would crash or be caught by ASan) */
	assert_int_equal(mem[0].flags, 0);
}

/* Harvest and reset stop at the first entry in the wrong state; harvest honours max; reset only walks harvested entries. */
static void test_partial(void **state)
{
	struct vmmu_dirty_ring *r = new_ring(8, 0, NULL);
	struct vmmu_dirty_gfn out[8];

	(void)state;
	for (int i = 0; i < 5; i++)
		assert_true(vmmu_dirty_ring_push(r, 1, (uint64_t)i * 1000) >= 0);
	assert_int_equal(vmmu_dirty_ring_reset(r, NULL, NULL), 0); /* nothing harvested yet */
	assert_int_equal(vmmu_dirty_ring_harvest(r, out, 2), 2);
	assert_int_equal(out[0].offset, 0);
	assert_int_equal(out[1].offset, 1000);
	assert_int_equal(vmmu_dirty_ring_harvest(r, NULL, 0), 0);
	assert_int_equal(vmmu_dirty_ring_reset(r, NULL, NULL), 2);
	assert_int_equal(vmmu_dirty_ring_used(r), 3);
	assert_int_equal(vmmu_dirty_ring_harvest(r, out, 8), 3);
	assert_int_equal(out[0].offset, 2000);
	assert_int_equal(out[2].offset, 4000);
	assert_int_equal(vmmu_dirty_ring_reset(r, NULL, NULL), 3);
	assert_int_equal(vmmu_dirty_ring_used(r), 0);
	vmmu_dirty_ring_destroy(r);
}

/* Many times round a small ring with random batch sizes: every entry comes back once, in order. */
static void test_wrap_around(void **state)
{
	struct vmmu_dirty_ring *r = new_ring(8, 2, NULL);
	struct vmmu_dirty_gfn out[8];
	uint64_t seed = 5, pushed = 0, seen = 0, reset = 0;

	(void)state;
	for (int round = 0; round < 20000; round++) {
		uint32_t room = 8 - vmmu_dirty_ring_used(r);
		uint32_t k = (uint32_t)(test_rand64(&seed) % (room + 1));
		uint32_t h = (uint32_t)(test_rand64(&seed) % 9);
		int n;

		for (uint32_t i = 0; i < k; i++) {
			int ret = vmmu_dirty_ring_push(r, (uint32_t)(pushed % 3), pushed);

			assert_true(ret == VMMU_DIRTY_RING_OK || ret == VMMU_DIRTY_RING_SOFT_FULL);
			assert_int_equal(ret == VMMU_DIRTY_RING_SOFT_FULL, vmmu_dirty_ring_used(r) >= 6);
			pushed++;
		}
		n = vmmu_dirty_ring_harvest(r, out, h);
		assert_true(n >= 0 && (uint32_t)n <= h);
		for (int i = 0; i < n; i++) {
			assert_int_equal(out[i].offset, seen);
			assert_int_equal(out[i].slot, seen % 3);
			seen++;
		}
		if (test_rand64(&seed) & 1)
			reset += (uint64_t)vmmu_dirty_ring_reset(r, NULL, NULL);
		assert_int_equal(vmmu_dirty_ring_used(r), pushed - reset);
		assert_true(reset <= seen && seen <= pushed);
	}
	assert_true(pushed > 20000); /* went round the 8 entries thousands of times */
	vmmu_dirty_ring_destroy(r);
}

/* Soft limit = size - reserved; at the hard limit a push is refused and changes nothing. */
static void test_soft_and_hard_full(void **state)
{
	struct vmmu_dirty_ring *r = new_ring(16, 4, NULL);
	struct vmmu_dirty_gfn out[16], *mem = vmmu_dirty_ring_entries(r);
	struct log_capture log;

	(void)state;
	for (int i = 0; i < 11; i++) {
		assert_int_equal(vmmu_dirty_ring_push(r, 0, (uint64_t)i), VMMU_DIRTY_RING_OK);
		assert_false(vmmu_dirty_ring_soft_full(r));
	}
	assert_int_equal(vmmu_dirty_ring_push(r, 0, 11), VMMU_DIRTY_RING_SOFT_FULL); /* used == 12 == soft limit */
	assert_true(vmmu_dirty_ring_soft_full(r));
	for (int i = 12; i < 16; i++)
		assert_int_equal(vmmu_dirty_ring_push(r, 0, (uint64_t)i), VMMU_DIRTY_RING_SOFT_FULL);
	assert_int_equal(vmmu_dirty_ring_used(r), 16);

	log_capture_start(&log);
	assert_int_equal(vmmu_dirty_ring_push(r, 0, 99), -ENOSPC);
	assert_int_equal(log.lines, 1);
	/* harvested but not reset: still full */
	assert_int_equal(vmmu_dirty_ring_harvest(r, out, 16), 16);
	assert_int_equal(vmmu_dirty_ring_push(r, 0, 99), -ENOSPC);
	assert_int_equal(log.lines, 2);
	assert_int_equal(vmmu_dirty_ring_push(NULL, 0, 99), -EINVAL);
	log_capture_stop();
	/* the refused pushes wrote nothing */
	assert_int_equal(vmmu_dirty_ring_used(r), 16);
	assert_int_equal(mem[0].offset, 0);
	assert_int_equal(mem[0].flags, VMMU_DIRTY_GFN_F_RESET);

	assert_int_equal(vmmu_dirty_ring_reset(r, NULL, NULL), 16);
	assert_false(vmmu_dirty_ring_soft_full(r));
	assert_int_equal(vmmu_dirty_ring_push(r, 0, 16), VMMU_DIRTY_RING_OK);
	assert_int_equal(mem[0].offset, 16);
	vmmu_dirty_ring_destroy(r);
}

/* A ring of 1 entry and reserved 0: soft full when the one entry is used. */
static void test_tiny_ring(void **state)
{
	struct vmmu_dirty_ring *r = new_ring(1, 0, NULL);
	struct vmmu_dirty_gfn out[1];
	struct log_capture log;

	(void)state;
	for (int i = 0; i < 5; i++) {
		assert_int_equal(vmmu_dirty_ring_push(r, 2, (uint64_t)i), VMMU_DIRTY_RING_SOFT_FULL);
		log_capture_start(&log);
		assert_int_equal(vmmu_dirty_ring_push(r, 2, 0), -ENOSPC);
		log_capture_stop();
		assert_int_equal(vmmu_dirty_ring_harvest(r, out, 1), 1);
		assert_int_equal(out[0].offset, (uint64_t)i);
		assert_int_equal(vmmu_dirty_ring_reset(r, NULL, NULL), 1);
	}
	vmmu_dirty_ring_destroy(r);
}

/* KVM as the producer: entries written into the caller's memory are harvested by the library. */
static void test_foreign_producer(void **state)
{
	static struct vmmu_dirty_gfn mem[8];
	struct vmmu_dirty_ring *r = new_ring(8, 0, mem);
	struct vmmu_dirty_gfn out[8];

	(void)state;
	for (int i = 0; i < 3; i++)
		mem[i] = (struct vmmu_dirty_gfn){ .flags = VMMU_DIRTY_GFN_F_DIRTY, .slot = 5, .offset = 40 + (uint64_t)i };
	mem[3].flags = VMMU_DIRTY_GFN_F_RESET | VMMU_DIRTY_GFN_F_DIRTY; /* 1x is harvested, never dirty */
	assert_int_equal(vmmu_dirty_ring_harvest(r, out, 8), 3);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(out[i].offset, 40 + (uint64_t)i);
		assert_int_equal(mem[i].flags, VMMU_DIRTY_GFN_F_RESET);
	}
	vmmu_dirty_ring_destroy(r);
}

/* Push entries, harvest all, reset, and return the re-arm reports. */
static int push_reset(struct rearm_log *log, const uint32_t *slot, const uint64_t *off, int n)
{
	struct vmmu_dirty_ring *r = new_ring(64, 0, NULL);
	struct vmmu_dirty_gfn out[64];
	int count;

	for (int i = 0; i < n; i++)
		assert_true(vmmu_dirty_ring_push(r, slot[i], off[i]) >= 0);
	assert_int_equal(vmmu_dirty_ring_harvest(r, out, 64), n);
	memset(log, 0, sizeof(*log));
	count = vmmu_dirty_ring_reset(r, rearm_record, log);
	vmmu_dirty_ring_destroy(r);
	return count;
}

struct coalesce_case {
	const char *what;
	int n;
	uint32_t slot[4];
	uint64_t offset[4];
	unsigned int nreports;
	struct { uint32_t slot; uint64_t offset, mask; } report[4];
};

static const struct coalesce_case coalesce_cases[] = {
	{ "forwards in one window", 3, { 1, 1, 1 }, { 5, 6, 7 }, 1, { { 1, 0, 0xe0 } } },
	{ "duplicates are accepted and merge", 4, { 1, 1, 1, 1 }, { 7, 7, 9, 7 }, 1,
	  { { 1, 0, (1ULL << 7) | (1ULL << 9) } } },
	{ "backwards extension", 3, { 1, 1, 1 }, { 10, 5, 12 }, 1,
	  { { 1, 0, (1ULL << 5) | (1ULL << 10) | (1ULL << 12) } } },
	{ "a window from mid-word spans two aligned words: one run, two reports", 3, { 2, 2, 2 }, { 60, 65, 123 }, 2,
	  { { 2, 0, 1ULL << 60 }, { 2, 64, (1ULL << 1) | (1ULL << 59) } } },
	{ "backwards across words: 70 then 10 (60 back) still fits", 2, { 2, 2 }, { 70, 10 }, 2,
	  { { 2, 0, 1ULL << 10 }, { 2, 64, 1ULL << 6 } } },
	{ "backwards refused past 64 pages: 10, 73 (63 ahead), then 5", 4, { 3, 3, 3, 3 }, { 10, 73, 5, 6 }, 3,
	  { { 3, 0, 1ULL << 10 }, { 3, 64, 1ULL << 9 }, { 3, 0, (1ULL << 5) | (1ULL << 6) } } },
	{ "forwards refused at 64 pages ahead", 2, { 3, 3 }, { 0, 64 }, 2, { { 3, 0, 1 }, { 3, 64, 1 } } },
	{ "a slot change ends a run, even at the same offset; another address space is another slot", 4,
	  { 1, 2, 1, 0x10001 }, { 3, 3, 4, 4 }, 4,
	  { { 1, 0, 1ULL << 3 }, { 2, 0, 1ULL << 3 }, { 1, 0, 1ULL << 4 }, { 0x10001, 0, 1ULL << 4 } } },
	{ "far jumps", 3, { 1, 1, 1 }, { 0, 1000000, 1 }, 3,
	  { { 1, 0, 1 }, { 1, 1000000 & ~63ULL, 1ULL << (1000000 % 64) }, { 1, 0, 2 } } },
};

static void test_reset_coalescing(void **state)
{
	(void)state;
	for (size_t c = 0; c < sizeof(coalesce_cases) / sizeof(coalesce_cases[0]); c++) {
		const struct coalesce_case *t = &coalesce_cases[c];
		struct rearm_log log;

		printf("case: %s\n", t->what);
		assert_int_equal(push_reset(&log, t->slot, t->offset, t->n), t->n);
		assert_int_equal(log.n, t->nreports);
		for (unsigned int i = 0; i < t->nreports; i++) {
			assert_int_equal(log.slot[i], t->report[i].slot);
			assert_int_equal(log.offset[i], t->report[i].offset);
			assert_int_equal(log.mask[i], t->report[i].mask);
		}
	}
}

/* Random entries: the reports cover exactly the pushed (slot, page) set, aligned, at most two per entry. */
static void test_reset_covers_model(void **state)
{
	uint64_t seed = 31;

	(void)state;
	for (int round = 0; round < 500; round++) {
		uint32_t s[64];
		uint64_t o[64];
		int n = 1 + (int)(test_rand64(&seed) % 64);
		uint8_t want[2][256] = { { 0 } }, got[2][256] = { { 0 } };
		struct rearm_log log;

		for (int i = 0; i < n; i++) {
			s[i] = (uint32_t)(test_rand64(&seed) % 2);
			o[i] = test_rand64(&seed) % (round % 2 ? 256 : 80);
			want[s[i]][o[i]] = 1;
		}
		assert_int_equal(push_reset(&log, s, o, n), n);
		assert_true(log.n <= 2 * (unsigned int)n);
		for (unsigned int k = 0; k < log.n; k++)
			for (int b = 0; b < 64; b++)
				if (log.mask[k] >> b & 1) {
					assert_true(log.offset[k] + (uint64_t)b < 256);
					got[log.slot[k]][log.offset[k] + (uint64_t)b] = 1;
				}
		assert_memory_equal(want, got, sizeof(want));
	}
}

static void test_null_args(void **state)
{
	struct log_capture log;
	struct vmmu_dirty_ring *r = new_ring(4, 0, NULL);

	(void)state;
	log_capture_start(&log);
	assert_int_equal(vmmu_dirty_ring_harvest(NULL, NULL, 0), -EINVAL);
	assert_int_equal(vmmu_dirty_ring_harvest(r, NULL, 1), -EINVAL);
	assert_int_equal(vmmu_dirty_ring_reset(NULL, NULL, NULL), -EINVAL);
	assert_int_equal(log.lines, 3);
	log_capture_stop();
	vmmu_dirty_ring_destroy(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_create_rejects),
		cmocka_unit_test(test_flag_protocol),
		cmocka_unit_test(test_partial),
		cmocka_unit_test(test_wrap_around),
		cmocka_unit_test(test_soft_and_hard_full),
		cmocka_unit_test(test_tiny_ring),
		cmocka_unit_test(test_foreign_producer),
		cmocka_unit_test(test_reset_coalescing),
		cmocka_unit_test(test_reset_covers_model),
		cmocka_unit_test(test_null_args),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
