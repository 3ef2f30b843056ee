/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target for reverse maps. The input is a program of 4-byte operations on
 * four heads that share one small descriptor cache: add, remove (present or
 * absent pointers), iterate, iterate removing a chosen subset, lockless walk,
 * cache top-up (with an injected allocation failure) and trim. Each operation
 * is checked against a deliberately simple model -- per head an unordered
 * array of pool indices, plus the number of descriptors the cache must hold --
 * and the raw layout is checked for the invariants after every step.
 *
 * Operation record: [op, flags, value lo, value hi]
 *   op % 16: 0-6 add, 7-9 remove, 10 iterate, 11 iterate+remove, 12 lockless
 *            walk, 13-14 top-up, 15 trim
 *   flags:   bits 1:0 head; bit 2 remove an entry that is present;
 *            bits 5:3 for top-up: fail the n-th allocation (0 = none)
 *   value:   pool index, subset rule, walk stop point or top-up minimum
 * The same function serves the model-based unit test (tests/unit/test_rmap_model.c).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_helpers.h"
#include <libvmmu/rmap.h>
#include <libvmmu/vmmu.h>

#include "rmap_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* What the inputs so far exercised, for the unit test to prove it is not vacuous. */
struct fuzz_rmap_stats {
	unsigned long ops, enomem, enoent, iter_removed, topup_failed, descs_freed;
	unsigned int peak;     /* most entries one head held */
};
extern struct fuzz_rmap_stats fuzz_rmap_stats;
struct fuzz_rmap_stats fuzz_rmap_stats;

#define HEADS 4
#define POOL 512
#define MODEL_MAX 16384
#define CACHE_CAP 8


struct model {
	unsigned int n;
	bool chained;          /* the head is in descriptor form */
	uint16_t idx[MODEL_MAX];
};

static uint64_t pool[POOL];
static struct model models[HEADS];
static struct vmmu_rmap_head heads[HEADS];
static struct vmmu_rmap_cache *cache;
static unsigned int cache_n;   /* descriptors the cache must hold */
static unsigned int alloc_calls, fail_at, log_lines;
static unsigned int want[POOL], seen[POOL];

static bool fail_nth(void)
{
	return ++alloc_calls == fail_at;
}

static void count_log(enum vmmu_log_level level, const char *msg, void *opaque)
{
	(void)level;
	(void)msg;
	(void)opaque;
	log_lines++;
}

/* Descriptors a head in this state holds: none in pointer form, else ceil(n / 14). */
static unsigned int model_descs(const struct model *m)
{
	return m->chained ? (m->n + VMMU_RMAP_DESC_ENTRIES - 1) / VMMU_RMAP_DESC_ENTRIES : 0;
}

/* Whether adding one entry needs a descriptor: 1 -> 2, or a full head descriptor. */
static bool model_add_needs_desc(const struct model *m)
{
	return m->chained ? m->n % VMMU_RMAP_DESC_ENTRIES == 0 : m->n == 1;
}

static void model_add(struct model *m, unsigned int idx)
{
	if (model_add_needs_desc(m)) {
		cache_n--;
		m->chained = true;
	}
	m->idx[m->n++] = (uint16_t)idx;
	if (m->n > fuzz_rmap_stats.peak)
		fuzz_rmap_stats.peak = m->n;
}

/* Remove one occurrence of @idx, keeping the cache count model right. */
static void model_remove(struct model *m, unsigned int idx)
{
	unsigned int i = 0;

	while (i < m->n && m->idx[i] != idx)
		i++;
	CHECK(i < m->n);
	m->idx[i] = m->idx[--m->n];
	/* the head descriptor held one entry exactly when (n - 1) % 14 == 0 before */
	if (m->chained && m->n % VMMU_RMAP_DESC_ENTRIES == 0) {
		cache_n++;
		fuzz_rmap_stats.descs_freed++;
	}
	if (!m->n)
		m->chained = false;
}

static unsigned int model_has(const struct model *m, unsigned int idx)
{
	unsigned int c = 0;

	for (unsigned int i = 0; i < m->n; i++)
		c += m->idx[i] == idx;
	return c;
}

static void model_multiset(const struct model *m)
{
	memset(want, 0, sizeof(want));
	for (unsigned int i = 0; i < m->n; i++)
		want[m->idx[i]]++;
}

static unsigned int pool_index(const uint64_t *p)
{
	CHECK(p >= pool && p < pool + POOL);
	return (unsigned int)(p - pool);
}

static void check_head(unsigned int h)
{
	const struct model *m = &models[h];
	struct rmap_shape s;
	const char *err = rmap_check(&heads[h], &s);

	if (err) {
		fprintf(stderr, "fuzz_rmap: head %u: %s\n", h, err);
		abort();
	}
	CHECK(s.entries == m->n);
	CHECK(vmmu_rmap_count(&heads[h]) == m->n);
	CHECK(s.descs == model_descs(m));
	CHECK(s.single == (m->n == 1 && !m->chained));
	CHECK(vmmu_rmap_cache_count(cache) == cache_n);
}

static void op_add(unsigned int h, unsigned int idx)
{
	struct model *m = &models[h];
	int ret;

	if (m->n == MODEL_MAX)
		return;
	ret = vmmu_rmap_add(&heads[h], &pool[idx], cache);
	if (model_add_needs_desc(m) && !cache_n) {
		CHECK(ret == -ENOMEM);
		fuzz_rmap_stats.enomem++;
		return;
	}
	CHECK(ret == (int)m->n + 1);
	model_add(m, idx);
}

static void op_remove(unsigned int h, unsigned int flags, unsigned int value)
{
	struct model *m = &models[h];
	unsigned int idx = value % POOL, lines = log_lines;
	int ret;

	if ((flags & 4) && m->n)
		idx = m->idx[value % m->n];
	ret = vmmu_rmap_remove(&heads[h], &pool[idx], cache);
	if (!model_has(m, idx)) {
		CHECK(ret == -ENOENT);
		CHECK(log_lines == lines + 1);
		fuzz_rmap_stats.enoent++;
		return;
	}
	CHECK(ret == (int)m->n - 1);
	model_remove(m, idx);
}

/* Iterate, removing the entries @rule picks; every entry must be visited exactly once. */
static void op_iterate(unsigned int h, unsigned int rule, bool remove)
{
	struct model *m = &models[h];
	struct vmmu_rmap_iter it;
	unsigned int visited = 0;
	uint64_t *p;

	model_multiset(m);
	memset(seen, 0, sizeof(seen));
	vmmu_rmap_for_each(&it, &heads[h], p) {
		unsigned int idx = pool_index(p);

		seen[idx]++;
		visited++;
		CHECK(visited <= MODEL_MAX);
		if (remove && (rule == 0 || (idx * 7 + rule) % 5 < rule % 4)) {
			CHECK(vmmu_rmap_iter_remove(&it, cache) == (int)m->n - 1);
			model_remove(m, idx);
			fuzz_rmap_stats.iter_removed++;
		}
	}
	CHECK(!memcmp(seen, want, sizeof(seen)));
}

struct walk_state {
	unsigned int calls, stop_after;
};

static int walk_fn(uint64_t *sptep, void *opaque)
{
	struct walk_state *w = opaque;

	seen[pool_index(sptep)]++;
	return ++w->calls == w->stop_after ? 7 : 0;
}

static void op_walk(unsigned int h, unsigned int stop)
{
	const struct model *m = &models[h];
	struct walk_state w = { 0, stop };
	int ret;

	memset(seen, 0, sizeof(seen));
	ret = vmmu_rmap_walk_lockless(&heads[h], walk_fn, &w);
	if (stop && stop <= m->n) {
		CHECK(ret == 7 && w.calls == stop);
		return;
	}
	CHECK(ret == 0 && w.calls == m->n);
	model_multiset(m);
	CHECK(!memcmp(seen, want, sizeof(seen)));
}

static void op_topup(unsigned int flags, unsigned int value)
{
	unsigned int min = value % (CACHE_CAP + 1), fail = (flags >> 3) & 7, kept;
	int ret;

	alloc_calls = 0;
	fail_at = fail;
	ret = vmmu_rmap_cache_topup(cache, min);
	fail_at = 0;
	kept = cache_n < CACHE_CAP ? cache_n : CACHE_CAP;
	if (fail && min > kept && fail <= min - kept) {
		CHECK(ret == -ENOMEM);
		fuzz_rmap_stats.topup_failed++;
		cache_n = kept;
		return;
	}
	CHECK(ret == 0);
	cache_n = kept > min ? kept : min;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	CHECK(vmmu_rmap_cache_create(&cache, CACHE_CAP) == 0);
	memset(heads, 0, sizeof(heads));
	memset(models, 0, sizeof(models));
	cache_n = 0;
	log_lines = 0;
	rmap_alloc_fail_hook = fail_nth;
	vmmu_set_log(count_log, VMMU_LOG_WARN, NULL);

	for (size_t off = 0; off + 4 <= size; off += 4) {
		unsigned int op = data[off] % 16, flags = data[off + 1], h = flags & 3;
		unsigned int value = data[off + 2] | (unsigned int)data[off + 3] << 8;

		if (op <= 6)
			op_add(h, value % POOL);
		else if (op <= 9)
			op_remove(h, flags, value);
		else if (op <= 11)
			op_iterate(h, value % 8, op == 11);
		else if (op == 12)
			op_walk(h, value % 64);
		else if (op <= 14)
			op_topup(flags, value);
		else {
			vmmu_rmap_cache_trim(cache);
			if (cache_n > CACHE_CAP)
				cache_n = CACHE_CAP;
		}
		/* every head, not just the one operated on: top-ups and trims must leave all maps alone */
		for (unsigned int k = 0; k < HEADS; k++)
			check_head(k);
		fuzz_rmap_stats.ops++;
	}

	/* Tear down through the remove path; the descriptors all end in the cache. */
	for (unsigned int h = 0; h < HEADS; h++) {
		while (models[h].n) {
			unsigned int idx = models[h].idx[models[h].n - 1];

			CHECK(vmmu_rmap_remove(&heads[h], &pool[idx], cache) == (int)models[h].n - 1);
			model_remove(&models[h], idx);
		}
		check_head(h);
		CHECK(heads[h].word == 0);
	}
	vmmu_rmap_cache_destroy(cache);
	cache = NULL;
	rmap_alloc_fail_hook = NULL;
	vmmu_set_log(NULL, VMMU_LOG_ERROR, NULL);
	return 0;
}
