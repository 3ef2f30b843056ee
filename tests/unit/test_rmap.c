/* SPDX-License-Identifier: MIT */
/*
 * Reverse maps, edge by edge: 0->1->2 entries, full descriptors, removal from
 * every position, iteration with removal, lockless walks, the descriptor cache
 * with injected allocation failures, and per-memslot head tables. A raw-layout
 * checker (src/rmap_check.h) verifies the invariants after every step.
 */
#include <errno.h>
#include <string.h>

#include "helpers.h"
#include <libvmmu/rmap.h>

#include "rmap_check.h"

#ifndef ARRAY_SIZE
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#endif

#define POOL 4096
static uint64_t pool[POOL];

/* Fault injection: fail the fail_at-th descriptor allocation (0 = never). */
static unsigned int alloc_calls, fail_at;

static bool fail_nth(void)
{
	return ++alloc_calls == fail_at;
}

static int setup(void **state)
{
	(void)state;
	alloc_calls = 0;
	fail_at = 0;
	rmap_alloc_fail_hook = fail_nth;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	rmap_alloc_fail_hook = NULL;
	log_capture_stop();
	return 0;
}

static struct vmmu_rmap_cache *new_cache(unsigned int capacity, unsigned int fill)
{
	struct vmmu_rmap_cache *c;

	assert_int_equal(vmmu_rmap_cache_create(&c, capacity), 0);
	assert_int_equal(vmmu_rmap_cache_topup(c, fill), 0);
	assert_int_equal(vmmu_rmap_cache_count(c), fill);
	return c;
}

/* Invariants hold, and the O(1) count agrees with the raw layout and @expect. */
static struct rmap_shape check(const struct vmmu_rmap_head *h, unsigned int expect)
{
	struct rmap_shape s;
	const char *err = rmap_check(h, &s);

	if (err)
		fail_msg("rmap invariant broken: %s", err);
	assert_int_equal(s.entries, expect);
	assert_int_equal(vmmu_rmap_count(h), expect);
	return s;
}

/* The entries, as multiplicities per pool index, must equal @want[0..POOL). */
static void check_contents(struct vmmu_rmap_head *h, const unsigned char *want)
{
	static unsigned char seen[POOL];
	struct vmmu_rmap_iter it;
	uint64_t *p;

	memset(seen, 0, sizeof(seen));
	vmmu_rmap_for_each(&it, h, p) {
		assert_true(p >= pool && p < pool + POOL);
		seen[p - pool]++;
	}
	assert_memory_equal(seen, want, POOL);
}

static unsigned int descs_for(unsigned int n, bool chained)
{
	return chained ? (n + VMMU_RMAP_DESC_ENTRIES - 1) / VMMU_RMAP_DESC_ENTRIES : 0;
}

static void fill(struct vmmu_rmap_head *h, struct vmmu_rmap_cache *c, unsigned char *want, unsigned int n)
{
	for (unsigned int i = 0; i < n; i++) {
		assert_int_equal(vmmu_rmap_add(h, &pool[i], c), (int)i + 1);
		want[i]++;
	}
}

/* Remove every entry @want lists (each must be there) and check the head is empty again. */
static void drain(struct vmmu_rmap_head *h, struct vmmu_rmap_cache *c, unsigned char *want)
{
	for (unsigned int i = 0; i < POOL; i++)
		for (; want[i]; want[i]--)
			assert_true(vmmu_rmap_remove(h, &pool[i], c) >= 0);
	check(h, 0);
	assert_int_equal(h->word, 0);
}

static void test_empty(void **state)
{
	struct vmmu_rmap_head h = VMMU_RMAP_HEAD_INIT;
	struct vmmu_rmap_cache *c = new_cache(4, 0);
	struct vmmu_rmap_iter it;
	struct log_capture log;

	(void)state;
	check(&h, 0);
	assert_null(vmmu_rmap_iter_first(&it, &h));
	assert_null(vmmu_rmap_iter_next(&it));
	log_capture_start(&log);
	assert_int_equal(vmmu_rmap_iter_remove(&it, c), -EINVAL);
	assert_int_equal(log.lines, 1);
	assert_int_equal(vmmu_rmap_remove(&h, &pool[0], c), -ENOENT);
	assert_int_equal(log.lines, 2);
	assert_int_equal(h.word, 0);
	vmmu_rmap_cache_destroy(c);
}

static void test_one_two(void **state)
{
	struct vmmu_rmap_head h = VMMU_RMAP_HEAD_INIT;
	struct vmmu_rmap_cache *c = new_cache(4, 1);
	static unsigned char want[POOL];
	struct rmap_shape s;

	(void)state;
	memset(want, 0, sizeof(want));
	/* 0 -> 1: the word is the pointer, nothing taken from the cache */
	assert_int_equal(vmmu_rmap_add(&h, &pool[7], c), 1);
	s = check(&h, 1);
	assert_true(s.single);
	assert_int_equal(h.word, (uintptr_t)&pool[7]);
	assert_int_equal(vmmu_rmap_cache_count(c), 1);
	/* 1 -> 2: one descriptor from the cache holds both */
	assert_int_equal(vmmu_rmap_add(&h, &pool[9], c), 2);
	s = check(&h, 2);
	assert_false(s.single);
	assert_int_equal(s.descs, 1);
	assert_int_equal(vmmu_rmap_cache_count(c), 0);
	want[7] = want[9] = 1;
	check_contents(&h, want);
	/* 2 -> 1 keeps the descriptor (no conversion back), 1 -> 0 returns it */
	assert_int_equal(vmmu_rmap_remove(&h, &pool[7], c), 1);
	s = check(&h, 1);
	assert_int_equal(s.descs, 1);
	assert_int_equal(vmmu_rmap_cache_count(c), 0);
	assert_int_equal(vmmu_rmap_remove(&h, &pool[9], c), 0);
	check(&h, 0);
	assert_int_equal(h.word, 0);
	assert_int_equal(vmmu_rmap_cache_count(c), 1);
	/* single -> empty */
	assert_int_equal(vmmu_rmap_add(&h, &pool[3], c), 1);
	assert_int_equal(vmmu_rmap_remove(&h, &pool[3], c), 0);
	assert_int_equal(h.word, 0);
	/* the same pointer twice is two entries */
	assert_int_equal(vmmu_rmap_add(&h, &pool[3], c), 1);
	assert_int_equal(vmmu_rmap_add(&h, &pool[3], c), 2);
	assert_int_equal(vmmu_rmap_remove(&h, &pool[3], c), 1);
	assert_int_equal(vmmu_rmap_remove(&h, &pool[3], c), 0);
	assert_int_equal(vmmu_rmap_remove(&h, &pool[3], c), -ENOENT);
	vmmu_rmap_cache_destroy(c);
}

/* Growing chains: descriptor count is ceil(n / 14) from 2 entries on; 14 -> 15 adds a head descriptor. */
static void test_growth(void **state)
{
	struct vmmu_rmap_head h = VMMU_RMAP_HEAD_INIT;
	struct vmmu_rmap_cache *c = new_cache(64, 64);
	static unsigned char want[POOL];
	struct rmap_desc *d, *old_head = NULL;

	(void)state;
	memset(want, 0, sizeof(want));
	for (unsigned int n = 1; n <= 300; n++) {
		struct rmap_shape s;

		assert_int_equal(vmmu_rmap_add(&h, &pool[n], c), (int)n);
		want[n] = 1;
		s = check(&h, n);
		assert_int_equal(s.descs, descs_for(n, n > 1));
		if (n == 14)
			old_head = rmap_word_desc(h.word);
		if (n == 15) {
			d = rmap_word_desc(h.word);
			assert_ptr_not_equal(d, old_head);
			assert_ptr_equal(d->more, old_head);
			assert_int_equal(d->count, 1);
			assert_int_equal(d->tail_count, 14);
			assert_ptr_equal(d->sptes[0], &pool[15]);
		}
		if (vmmu_rmap_cache_count(c) == 0)
			assert_int_equal(vmmu_rmap_cache_topup(c, 8), 0);
	}
	check_contents(&h, want);
	vmmu_rmap_cache_destroy(c);
	/* leave the chain to a table-less cleanup: remove everything */
	c = new_cache(64, 0);
	for (unsigned int n = 1; n <= 300; n++)
		assert_int_equal(vmmu_rmap_remove(&h, &pool[n], c), (int)(300 - n));
	assert_int_equal(h.word, 0);
	assert_int_equal(vmmu_rmap_cache_count(c), descs_for(300, true));
	vmmu_rmap_cache_destroy(c);
}

/* An add that needs a descriptor from an empty cache fails with -ENOMEM and changes nothing. */
static void test_enomem_unchanged(void **state)
{
	struct vmmu_rmap_head h = VMMU_RMAP_HEAD_INIT;
	struct vmmu_rmap_cache *c = new_cache(4, 0);
	static unsigned char want[POOL];
	struct rmap_desc copy;
	uintptr_t word;

	(void)state;
	memset(want, 0, sizeof(want));
	assert_int_equal(vmmu_rmap_add(&h, &pool[0], c), 1);
	want[0] = 1;
	word = h.word;
	assert_int_equal(vmmu_rmap_add(&h, &pool[1], c), -ENOMEM);
	assert_int_equal(h.word, word);
	check(&h, 1);
	assert_int_equal(vmmu_rmap_cache_topup(c, 1), 0);
	/* 2..14 fill the descriptor without the cache */
	for (unsigned int i = 1; i < 14; i++) {
		assert_int_equal(vmmu_rmap_add(&h, &pool[i], c), (int)i + 1);
		want[i] = 1;
	}
	word = h.word;
	memcpy(&copy, rmap_word_desc(word), sizeof(copy));
	assert_int_equal(vmmu_rmap_add(&h, &pool[14], c), -ENOMEM);
	assert_int_equal(h.word, word);
	assert_memory_equal(&copy, rmap_word_desc(word), sizeof(copy));
	check(&h, 14);
	check_contents(&h, want);
	assert_int_equal(vmmu_rmap_cache_topup(c, 1), 0);
	assert_int_equal(vmmu_rmap_add(&h, &pool[14], c), 15);
	want[14] = 1;
	drain(&h, c, want);
	vmmu_rmap_cache_destroy(c);
}

/* Removal from the head, the middle and the oldest descriptor of a 40-entry chain (12 + 14 + 14). */
static void test_remove_positions(void **state)
{
	static const unsigned int victims[] = { 0, 5, 13, 20, 27, 39, 38, 30, 1 };
	struct vmmu_rmap_head h = VMMU_RMAP_HEAD_INIT;
	struct vmmu_rmap_cache *c = new_cache(8, 3);
	static unsigned char want[POOL];
	unsigned int n = 40;

	(void)state;
	memset(want, 0, sizeof(want));
	fill(&h, c, want, n);
	check(&h, n);
	for (unsigned int i = 0; i < ARRAY_SIZE(victims); i++) {
		struct rmap_shape s;

		assert_int_equal(vmmu_rmap_remove(&h, &pool[victims[i]], c), (int)--n);
		want[victims[i]] = 0;
		s = check(&h, n);
		assert_int_equal(s.descs, descs_for(n, true));
		check_contents(&h, want);
	}
	/* 31 left = 3 + 14 + 14: no descriptor emptied */
	assert_int_equal(vmmu_rmap_cache_count(c), 0);
	drain(&h, c, want);
	vmmu_rmap_cache_destroy(c);
}

/* 15 entries = 1 + 14: removing a tail entry moves the head's only entry and frees the head descriptor. */
static void test_remove_empties_head_desc(void **state)
{
	struct vmmu_rmap_head h = VMMU_RMAP_HEAD_INIT;
	struct vmmu_rmap_cache *c = new_cache(8, 2);
	static unsigned char want[POOL];
	struct rmap_desc *head_desc, *tail;
	struct rmap_shape s;

	(void)state;
	memset(want, 0, sizeof(want));
	fill(&h, c, want, 15);
	head_desc = rmap_word_desc(h.word);
	tail = head_desc->more;
	assert_int_equal(head_desc->count, 1);
	assert_int_equal(vmmu_rmap_cache_count(c), 0);
	assert_int_equal(vmmu_rmap_remove(&h, &pool[3], c), 14);
	want[3] = 0;
	s = check(&h, 14);
	assert_int_equal(s.descs, 1);
	assert_ptr_equal(rmap_word_desc(h.word), tail);
	assert_int_equal(vmmu_rmap_cache_count(c), 1);
	check_contents(&h, want);
	/* again, removing the head descriptor's own last entry */
	assert_int_equal(vmmu_rmap_add(&h, &pool[3], c), 15);
	want[3] = 1;
	assert_int_equal(vmmu_rmap_remove(&h, &pool[3], c), 14);
	want[3] = 0;
	s = check(&h, 14);
	assert_int_equal(s.descs, 1);
	check_contents(&h, want);
	drain(&h, c, want);
	assert_int_equal(vmmu_rmap_cache_count(c), 2);
	vmmu_rmap_cache_destroy(c);
}

/* Removing a pointer that is not there: -ENOENT, one log line, nothing changed. */
static void test_remove_absent(void **state)
{
	struct vmmu_rmap_head h = VMMU_RMAP_HEAD_INIT;
	struct vmmu_rmap_cache *c = new_cache(8, 3);
	static unsigned char want[POOL];
	static const unsigned int sizes[] = { 1, 2, 14, 29 };
	struct log_capture log;

	(void)state;
	for (unsigned int k = 0; k < ARRAY_SIZE(sizes); k++) {
		struct rmap_desc before[3], *d;
		uintptr_t word;
		unsigned int nd = 0;

		memset(want, 0, sizeof(want));
		fill(&h, c, want, sizes[k]);
		word = h.word;
		if (word & RMAP_MANY)
			for (d = rmap_word_desc(word); d; d = d->more)
				before[nd++] = *d;
		log_capture_start(&log);
		assert_int_equal(vmmu_rmap_remove(&h, &pool[100], c), -ENOENT);
		assert_int_equal(log.lines, 1);
		assert_non_null(strstr(log.last, "not in rmap"));
		log_capture_stop();
		assert_int_equal(h.word, word);
		nd = 0;
		if (word & RMAP_MANY)
			for (d = rmap_word_desc(word); d; d = d->more)
				assert_memory_equal(&before[nd++], d, sizeof(*d));
		check(&h, sizes[k]);
		check_contents(&h, want);
		drain(&h, c, want);
		assert_int_equal(vmmu_rmap_cache_topup(c, 3), 0);
	}
	vmmu_rmap_cache_destroy(c);
}

static void test_bad_args(void **state)
{
	struct vmmu_rmap_head h = VMMU_RMAP_HEAD_INIT;
	struct vmmu_rmap_cache *c = new_cache(2, 0);
	struct vmmu_rmap_iter it;
	struct log_capture log;

	(void)state;
	log_capture_start(&log);
	assert_int_equal(vmmu_rmap_add(NULL, &pool[0], c), -EINVAL);
	assert_int_equal(vmmu_rmap_add(&h, NULL, c), -EINVAL);
	assert_int_equal(vmmu_rmap_add(&h, &pool[0], NULL), -EINVAL);
	assert_int_equal(vmmu_rmap_add(&h, (uint64_t *)((char *)&pool[0] + 4), c), -EINVAL);
	assert_int_equal(vmmu_rmap_remove(NULL, &pool[0], c), -EINVAL);
	assert_int_equal(vmmu_rmap_remove(&h, NULL, c), -EINVAL);
	assert_int_equal(vmmu_rmap_remove(&h, &pool[0], NULL), -EINVAL);
	assert_int_equal(vmmu_rmap_walk_lockless(NULL, NULL, NULL), -EINVAL);
	assert_int_equal(vmmu_rmap_iter_remove(NULL, c), -EINVAL);
	assert_int_equal(log.lines, 9);
	assert_int_equal(h.word, 0);
	assert_int_equal(vmmu_rmap_count(NULL), 0);
	assert_null(vmmu_rmap_iter_first(&it, NULL));
	vmmu_rmap_cache_destroy(NULL);
	vmmu_rmap_cache_destroy(c);
}

static bool pick(unsigned int idx, unsigned int rule)
{
	switch (rule) {
	case 0: return true;                      /* everything */
	case 1: return idx % 2;                   /* every other */
	case 2: return idx % 14 == 3;             /* one per descriptor */
	case 3: return idx < 5;                   /* the oldest, in the last descriptor */
	default: return idx >= 25;                /* the newest, in the head descriptor */
	}
}

/* Iterating with removal of the current entry visits every entry exactly once, for every shape and choice. */
static void test_iter_remove(void **state)
{
	static const unsigned int sizes[] = { 1, 2, 13, 14, 15, 27, 28, 29, 100 };
	struct vmmu_rmap_cache *c = new_cache(16, 16);
	static unsigned char want[POOL], seen[POOL];

	(void)state;
	for (unsigned int k = 0; k < ARRAY_SIZE(sizes); k++) {
		for (unsigned int rule = 0; rule < 5; rule++) {
			struct vmmu_rmap_head h = VMMU_RMAP_HEAD_INIT;
			unsigned int n = sizes[k], removed = 0;
			struct vmmu_rmap_iter it;
			uint64_t *p;

			memset(want, 0, sizeof(want));
			memset(seen, 0, sizeof(seen));
			assert_int_equal(vmmu_rmap_cache_topup(c, 16), 0);
			fill(&h, c, want, n);
			vmmu_rmap_for_each(&it, &h, p) {
				unsigned int idx = (unsigned int)(p - pool);

				assert_int_equal(seen[idx], 0);
				seen[idx] = 1;
				if (pick(idx, rule)) {
					removed++;
					assert_int_equal(vmmu_rmap_iter_remove(&it, c), (int)(n - removed));
					want[idx] = 0;
					check(&h, n - removed);
					assert_int_equal(vmmu_rmap_iter_remove(&it, c), -EINVAL);
				}
			}
			for (unsigned int i = 0; i < n; i++)
				assert_int_equal(seen[i], 1);
			check_contents(&h, want);
			drain(&h, c, want);
		}
	}
	vmmu_rmap_cache_destroy(c);
}

struct walk_state {
	unsigned char seen[POOL];
	unsigned int calls, stop_after;
};

static int walk_fn(uint64_t *sptep, void *opaque)
{
	struct walk_state *w = opaque;

	w->seen[sptep - pool]++;
	if (++w->calls == w->stop_after)
		return 42;
	return 0;
}

static void test_walk_lockless(void **state)
{
	static const unsigned int sizes[] = { 0, 1, 2, 14, 15, 50 };
	struct vmmu_rmap_cache *c = new_cache(8, 8);
	static unsigned char want[POOL];
	static struct walk_state w;

	(void)state;
	for (unsigned int k = 0; k < ARRAY_SIZE(sizes); k++) {
		struct vmmu_rmap_head h = VMMU_RMAP_HEAD_INIT;

		memset(want, 0, sizeof(want));
		fill(&h, c, want, sizes[k]);
		memset(&w, 0, sizeof(w));
		assert_int_equal(vmmu_rmap_walk_lockless(&h, walk_fn, &w), 0);
		assert_int_equal(w.calls, sizes[k]);
		assert_memory_equal(w.seen, want, POOL);
		check(&h, sizes[k]);
		if (sizes[k] > 1) {
			memset(&w, 0, sizeof(w));
			w.stop_after = 2;
			assert_int_equal(vmmu_rmap_walk_lockless(&h, walk_fn, &w), 42);
			assert_int_equal(w.calls, 2);
			check(&h, sizes[k]);
		}
		drain(&h, c, want);
		assert_int_equal(vmmu_rmap_cache_topup(c, 8), 0);
	}
	vmmu_rmap_cache_destroy(c);
}

static void test_cache(void **state)
{
	struct vmmu_rmap_head h = VMMU_RMAP_HEAD_INIT;
	struct vmmu_rmap_cache *c;
	static unsigned char want[POOL];
	struct log_capture log;

	(void)state;
	log_capture_start(&log);
	assert_int_equal(vmmu_rmap_cache_create(NULL, 4), -EINVAL);
	assert_int_equal(vmmu_rmap_cache_create(&c, 0), -EINVAL);
	assert_int_equal(vmmu_rmap_cache_create(&c, 65537), -EINVAL);
	assert_int_equal(log.lines, 3);
	assert_int_equal(vmmu_rmap_cache_create(&c, 4), 0);
	assert_int_equal(vmmu_rmap_cache_topup(c, 5), -EINVAL);
	assert_int_equal(vmmu_rmap_cache_topup(NULL, 1), -EINVAL);
	assert_int_equal(log.lines, 5);
	assert_int_equal(vmmu_rmap_cache_count(c), 0);

	/* the n-th allocation fails: -ENOMEM, the cache keeps what it had */
	for (unsigned int nth = 1; nth <= 3; nth++) {
		alloc_calls = 0;
		fail_at = nth;
		assert_int_equal(vmmu_rmap_cache_topup(c, 3), -ENOMEM);
		assert_int_equal(alloc_calls, nth);
		assert_int_equal(vmmu_rmap_cache_count(c), 0);
	}
	alloc_calls = 0;
	fail_at = 3;
	assert_int_equal(vmmu_rmap_cache_topup(c, 2), 0);
	assert_int_equal(vmmu_rmap_cache_count(c), 2);
	assert_int_equal(alloc_calls, 2);
	/* topping up what is there allocates nothing */
	assert_int_equal(vmmu_rmap_cache_topup(c, 2), 0);
	assert_int_equal(alloc_calls, 2);
	fail_at = alloc_calls + 2;
	assert_int_equal(vmmu_rmap_cache_topup(c, 4), -ENOMEM);
	assert_int_equal(vmmu_rmap_cache_count(c), 2);
	fail_at = 0;

	/* a map built from one cache and torn down into it goes above capacity until trimmed */
	memset(want, 0, sizeof(want));
	assert_int_equal(vmmu_rmap_cache_topup(c, 4), 0);
	fill(&h, c, want, 4 * 14);
	assert_int_equal(vmmu_rmap_cache_count(c), 0);
	assert_int_equal(vmmu_rmap_add(&h, &pool[100], c), -ENOMEM);
	check(&h, 56);
	assert_int_equal(vmmu_rmap_cache_topup(c, 1), 0);
	assert_int_equal(vmmu_rmap_add(&h, &pool[100], c), 57);
	assert_int_equal(vmmu_rmap_cache_topup(c, 4), 0);
	for (unsigned int i = 57; i < 120; i++) {
		assert_int_equal(vmmu_rmap_add(&h, &pool[i + 200], c), (int)i + 1);
		if (!vmmu_rmap_cache_count(c))
			assert_int_equal(vmmu_rmap_cache_topup(c, 4), 0);
	}
	{
		struct vmmu_rmap_iter it;
		uint64_t *p;

		vmmu_rmap_for_each(&it, &h, p)
			assert_true(vmmu_rmap_iter_remove(&it, c) >= 0);
	}
	assert_int_equal(h.word, 0);
	assert_true(vmmu_rmap_cache_count(c) > 4);
	vmmu_rmap_cache_trim(c);
	assert_int_equal(vmmu_rmap_cache_count(c), 4);
	vmmu_rmap_cache_trim(NULL);
	assert_int_equal(vmmu_rmap_cache_count(NULL), 0);
	vmmu_rmap_cache_destroy(c);
}

static void test_table(void **state)
{
	struct vmmu_rmap_table *t;
	struct vmmu_rmap_cache *c = new_cache(8, 8);
	struct log_capture log;
	const uint64_t max_end = 1ULL << 40;

	(void)state;
	log_capture_start(&log);
	assert_int_equal(vmmu_rmap_table_create(NULL, 0, 1, 1), -EINVAL);
	assert_int_equal(vmmu_rmap_table_create(&t, 0, 0, 1), -EINVAL);
	assert_int_equal(vmmu_rmap_table_create(&t, 0, 1, 0), -EINVAL);
	assert_int_equal(vmmu_rmap_table_create(&t, 0, 1, 4), -EINVAL);
	assert_int_equal(vmmu_rmap_table_create(&t, max_end - 1, 2, 1), -EINVAL);
	assert_int_equal(vmmu_rmap_table_create(&t, ~0ULL, 1, 1), -EINVAL);
	assert_int_equal(log.lines, 6);
	assert_int_equal(vmmu_rmap_table_create(&t, max_end - 1, 1, 3), 0);
	assert_int_equal(vmmu_rmap_table_nr_heads(t, 3), 1);
	vmmu_rmap_table_destroy(t);

	/* a slot from gfn 0x1ff for 0x402 pages touches 4 2-MiB regions and one 1-GiB region */
	assert_int_equal(vmmu_rmap_table_create(&t, 0x1ff, 0x402, 3), 0);
	assert_int_equal(vmmu_rmap_table_nr_heads(t, 1), 0x402);
	assert_int_equal(vmmu_rmap_table_nr_heads(t, 2), 4);
	assert_int_equal(vmmu_rmap_table_nr_heads(t, 3), 1);
	assert_int_equal(vmmu_rmap_table_nr_heads(t, 4), 0);
	assert_int_equal(vmmu_rmap_table_nr_heads(t, 0), 0);
	assert_int_equal(vmmu_rmap_table_nr_heads(NULL, 1), 0);

	{
		struct vmmu_rmap_head *l1 = vmmu_rmap_table_head(t, 0x1ff, 1);
		struct vmmu_rmap_head *l2 = vmmu_rmap_table_head(t, 0x1ff, 2);

		assert_non_null(l1);
		assert_ptr_equal(vmmu_rmap_table_head(t, 0x200, 1), l1 + 1);
		assert_ptr_equal(vmmu_rmap_table_head(t, 0x600, 1), l1 + 0x401);
		/* level 2: index (gfn >> 9) - (0x1ff >> 9) */
		assert_ptr_equal(vmmu_rmap_table_head(t, 0x200, 2), l2 + 1);
		assert_ptr_equal(vmmu_rmap_table_head(t, 0x3ff, 2), l2 + 1);
		assert_ptr_equal(vmmu_rmap_table_head(t, 0x400, 2), l2 + 2);
		assert_ptr_equal(vmmu_rmap_table_head(t, 0x600, 2), l2 + 3);
		assert_ptr_equal(vmmu_rmap_table_head(t, 0x600, 3), vmmu_rmap_table_head(t, 0x1ff, 3));
		for (vmmu_gfn_t g = 0x1ff; g < 0x1ff + 0x402; g += 37)
			for (int level = 1; level <= 3; level++) {
				unsigned int s = 9 * (level - 1);
				struct vmmu_rmap_head *base = vmmu_rmap_table_head(t, 0x1ff, level);

				assert_ptr_equal(vmmu_rmap_table_head(t, g, level), base + ((g >> s) - (0x1ffULL >> s)));
			}
	}
	log.lines = 0;
	assert_null(vmmu_rmap_table_head(t, 0x1fe, 1));
	assert_null(vmmu_rmap_table_head(t, 0x601, 2));
	assert_null(vmmu_rmap_table_head(t, 0x200, 0));
	assert_null(vmmu_rmap_table_head(t, 0x200, 4));
	assert_null(vmmu_rmap_table_head(NULL, 0x200, 1));
	assert_int_equal(log.lines, 5);

	/* heads in use when the table goes: their descriptors are freed with it (ASan checks) */
	for (unsigned int i = 0; i < 30; i++)
		assert_true(vmmu_rmap_add(vmmu_rmap_table_head(t, 0x300, 2), &pool[i], c) > 0);
	assert_int_equal(vmmu_rmap_add(vmmu_rmap_table_head(t, 0x300, 1), &pool[0], c), 1);
	assert_int_equal(vmmu_rmap_count(vmmu_rmap_table_head(t, 0x2ff, 2)), 30);
	assert_int_equal(vmmu_rmap_count(vmmu_rmap_table_head(t, 0x1ff, 2)), 0);
	vmmu_rmap_table_destroy(t);
	vmmu_rmap_table_destroy(NULL);

	/* max_level 1 has no level-2 heads */
	assert_int_equal(vmmu_rmap_table_create(&t, 0, 512, 1), 0);
	assert_null(vmmu_rmap_table_head(t, 0, 2));
	vmmu_rmap_table_destroy(t);
	vmmu_rmap_cache_destroy(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_empty, setup, teardown),
		cmocka_unit_test_setup_teardown(test_one_two, setup, teardown),
		cmocka_unit_test_setup_teardown(test_growth, setup, teardown),
		cmocka_unit_test_setup_teardown(test_enomem_unchanged, setup, teardown),
		cmocka_unit_test_setup_teardown(test_remove_positions, setup, teardown),
		cmocka_unit_test_setup_teardown(test_remove_empties_head_desc, setup, teardown),
		cmocka_unit_test_setup_teardown(test_remove_absent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_args, setup, teardown),
		cmocka_unit_test_setup_teardown(test_iter_remove, setup, teardown),
		cmocka_unit_test_setup_teardown(test_walk_lockless, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cache, setup, teardown),
		cmocka_unit_test_setup_teardown(test_table, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
