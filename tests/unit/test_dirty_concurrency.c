/* SPDX-License-Identifier: MIT */
/*
 * Dirty tracking under concurrency: marker threads against a harvester (both
 * get-and-clear and get + clear), and a ring producer against its consumer.
 *
 * Bitmap check, strict: before each harvest k the harvester publishes k in
 * `epoch`. A marker reads the epoch before marking (E) and after (F), with a
 * full fence between its mark and the second read, as the harvester has one
 * between publishing k and harvesting. A mark then belongs to exactly one
 * harvest h with E <= h <= F + 1: not earlier (harvest E - 1 was over before
 * E was published), not later (had harvest F + 1 missed it, the marker would
 * have read F + 1). A marker marks a page again only after that window has
 * passed, so the marks and the reports of one page pair up one to one, in
 * order; a lost, duplicated or late report breaks the pairing. Marker threads
 * own interleaved pages, so they share every word, and mark with mark(),
 * mark_range() and merge_buf() at random.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "test_dirty_helpers.h"

#define NMARKERS 2
#define NPAGES 512 /* few words, so that marks and harvests meet on them often */
#define NWORDS (NPAGES / 64)
#define LOG_MAX (1u << 20)
#define RUN_NS 1500000000LL /* per mode */

/* cmocka's asserts may only run on the main thread; other threads abort with a message. */
#define CHECK(cond)                                                                       \
	do {                                                                              \
		if (!(cond)) {                                                            \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
			abort();                                                          \
		}                                                                         \
	} while (0)

struct mark_rec {
	uint32_t page, e, f;
};

struct report_rec {
	uint32_t page, h;
};

struct shared {
	struct vmmu_dirty_bitmap *bm;
	_Atomic uint32_t epoch;
	atomic_bool stop;
	bool use_get_clear;
};

struct marker {
	pthread_t thread;
	struct shared *sh;
	unsigned int id;
	struct mark_rec *log;
	uint32_t n;
};

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void *marker_main(void *arg)
{
	struct marker *m = arg;
	struct shared *sh = m->sh;
	/* per owned page: the last F, so a page is marked again only once its window closed */
	static _Thread_local int64_t last_f[NPAGES / NMARKERS];
	static _Thread_local uint64_t merge[NWORDS]; /* zero but for the page being merged */
	uint64_t seed = 0x9e3779b97f4a7c15ULL * (m->id + 1);

	for (unsigned int i = 0; i < NPAGES / NMARKERS; i++)
		last_f[i] = -2;
	while (!atomic_load_explicit(&sh->stop, memory_order_relaxed) && m->n < LOG_MAX) {
		uint32_t slot_idx = (uint32_t)(test_rand64(&seed) % (NPAGES / NMARKERS));
		uint32_t page = slot_idx * NMARKERS + m->id;
		uint32_t e = atomic_load(&sh->epoch), f;

		if ((int64_t)e <= last_f[slot_idx] + 1)
			continue; /* the previous mark of this page may still be unreported */
		/* the three ways to mark: one page, a range, a merged buffer */
		switch (test_rand64(&seed) % 3) {
		case 0:
			CHECK(vmmu_dirty_bitmap_mark(sh->bm, page) == 0);
			break;
		case 1:
			CHECK(vmmu_dirty_bitmap_mark_range(sh->bm, page, 1) == 0);
			break;
		default:
			merge[page / 64] = 1ULL << (page % 64);
			CHECK(vmmu_dirty_bitmap_merge_buf(sh->bm, merge) == 0);
			merge[page / 64] = 0;
			break;
		}
		atomic_thread_fence(memory_order_seq_cst);
		f = atomic_load(&sh->epoch);
		last_f[slot_idx] = f;
		m->log[m->n++] = (struct mark_rec){ page, e, f };
	}
	return NULL;
}

struct rearm_words {
	uint64_t w[NWORDS];
};

static void rearm_collect(uint32_t slot, uint64_t offset, uint64_t mask, void *opaque)
{
	struct rearm_words *r = opaque;

	assert_int_equal(slot, 11);
	assert_int_equal(offset % 64, 0);
	assert_true((r->w[offset / 64] & mask) == 0);
	r->w[offset / 64] |= mask;
}

/* One harvest in the chosen mode; appends its pages to @rep. */
static void harvest(struct shared *sh, uint32_t h, struct report_rec *rep, uint32_t *nrep)
{
	uint64_t buf[NWORDS];
	struct rearm_words re = { { 0 } };
	struct vmmu_dirty_iter it;
	vmmu_gfn_t gfn;
	int64_t n, seen = 0;

	atomic_store(&sh->epoch, h);
	atomic_thread_fence(memory_order_seq_cst);
	if (sh->use_get_clear) {
		n = vmmu_dirty_bitmap_get(sh->bm, buf);
		assert_int_equal(vmmu_dirty_bitmap_clear(sh->bm, 0, NPAGES, buf, rearm_collect, &re), n);
	} else {
		n = vmmu_dirty_bitmap_get_and_clear(sh->bm, buf, rearm_collect, &re);
	}
	/* the re-arm reports are exactly the harvested bits */
	assert_memory_equal(re.w, buf, sizeof(buf));
	vmmu_dirty_iter_init(&it, buf, NPAGES, 0);
	while (vmmu_dirty_iter_next(&it, &gfn)) {
		assert_true(*nrep < LOG_MAX * NMARKERS);
		rep[(*nrep)++] = (struct report_rec){ (uint32_t)gfn, h };
		seen++;
	}
	assert_int_equal(seen, n);
}

static void run_bitmap(bool use_get_clear)
{
	struct shared sh = { .use_get_clear = use_get_clear };
	struct marker mk[NMARKERS];
	struct report_rec *rep = malloc(sizeof(*rep) * LOG_MAX * NMARKERS);
	uint32_t nrep = 0, h = 0, *next_rep, in_flight = 0;
	uint64_t marks = 0;
	int64_t end;

	assert_non_null(rep);
	assert_int_equal(vmmu_dirty_bitmap_create(11, NPAGES, 0, &sh.bm), 0);
	for (unsigned int i = 0; i < NMARKERS; i++) {
		mk[i] = (struct marker){ .sh = &sh, .id = i, .log = malloc(sizeof(struct mark_rec) * LOG_MAX) };
		assert_non_null(mk[i].log);
		assert_int_equal(pthread_create(&mk[i].thread, NULL, marker_main, &mk[i]), 0);
	}
	end = now_ns() + RUN_NS;
	while (now_ns() < end && nrep < LOG_MAX)
		harvest(&sh, ++h, rep, &nrep);
	atomic_store(&sh.stop, true);
	for (unsigned int i = 0; i < NMARKERS; i++)
		assert_int_equal(pthread_join(mk[i].thread, NULL), 0);
	harvest(&sh, ++h, rep, &nrep); /* catches the marks made during the last one */

	/*
	 * Pair the i-th report of each page with its i-th mark. Reports are in
	 * harvest order; each marker's log is in time order and owns its pages.
	 */
	next_rep = calloc(NPAGES, sizeof(*next_rep));
	uint32_t *first = calloc(NPAGES + 1, sizeof(*first));
	struct report_rec *by_page = malloc(sizeof(*by_page) * (nrep + 1));

	assert_non_null(next_rep);
	assert_non_null(first);
	assert_non_null(by_page);
	for (uint32_t i = 0; i < nrep; i++)
		first[rep[i].page + 1]++;
	for (uint32_t p = 0; p < NPAGES; p++)
		first[p + 1] += first[p];
	for (uint32_t i = 0; i < nrep; i++)
		by_page[first[rep[i].page] + next_rep[rep[i].page]++] = rep[i];
	memset(next_rep, 0, NPAGES * sizeof(*next_rep));
	for (unsigned int t = 0; t < NMARKERS; t++) {
		for (uint32_t i = 0; i < mk[t].n; i++) {
			const struct mark_rec *m = &mk[t].log[i];
			uint32_t k = next_rep[m->page]++;
			const struct report_rec *r;

			if (first[m->page] + k >= first[m->page + 1])
				fail_msg("page %u: mark %u (epochs %u..%u) never reported", m->page, k, m->e, m->f);
			r = &by_page[first[m->page] + k];
			if (r->h < m->e || r->h > m->f + 1)
				fail_msg("page %u: mark in epochs %u..%u reported by harvest %u", m->page, m->e, m->f, r->h);
			in_flight += r->h == m->e;
			marks++;
		}
	}
	for (uint32_t p = 0; p < NPAGES; p++)
		if (first[p] + next_rep[p] != first[p + 1])
			fail_msg("page %u reported %u times for %u marks", p, first[p + 1] - first[p], next_rep[p]);
	printf("%s: %llu marks by %d threads, %u harvests, every mark reported once in its window "
	       "(%u taken by the harvest already started when marked)\n",
	       use_get_clear ? "get+clear" : "get_and_clear", (unsigned long long)marks, NMARKERS, h, in_flight);
	assert_true(marks > 1000);
	assert_true(h > 10);
	free(first);
	free(by_page);
	free(next_rep);
	free(rep);
	for (unsigned int i = 0; i < NMARKERS; i++)
		free(mk[i].log);
	vmmu_dirty_bitmap_destroy(sh.bm);
}

static void test_marks_vs_get_and_clear(void **state)
{
	(void)state;
	run_bitmap(false);
}

static void test_marks_vs_get_then_clear(void **state)
{
	(void)state;
	run_bitmap(true);
}

/* ---- ring: one producer (push + reset), one consumer (harvest) ---- */

#define RING_N 200000u
#define RING_SIZE 256u
#define RING_RESERVED 16u

static uint32_t slot_of(uint64_t offset)
{
	return (uint32_t)(offset / 50 % 3); /* slot changes every 50 entries */
}

struct ring_shared {
	struct vmmu_dirty_ring *ring;
	uint8_t *covered;
	uint64_t reset_total;
	unsigned int resets;
};

static void rearm_cover(uint32_t slot, uint64_t offset, uint64_t mask, void *opaque)
{
	struct ring_shared *rs = opaque;

	CHECK(offset % 64 == 0);
	for (unsigned int b = 0; b < 64; b++) {
		if (!(mask >> b & 1))
			continue;
		CHECK(offset + b < RING_N);
		CHECK(slot == slot_of(offset + b));
		CHECK(rs->covered[offset + b] == 0); /* each entry re-armed exactly once */
		rs->covered[offset + b] = 1;
	}
}

static void producer_reset(struct ring_shared *rs)
{
	int n = vmmu_dirty_ring_reset(rs->ring, rearm_cover, rs);

	CHECK(n >= 0);
	rs->reset_total += (uint64_t)n;
	rs->resets++;
}

static void *producer_main(void *arg)
{
	struct ring_shared *rs = arg;

	for (uint64_t i = 0; i < RING_N; i++) {
		int ret;

		/* as KVM: never go past the soft limit; wait for the consumer instead */
		while (vmmu_dirty_ring_soft_full(rs->ring)) {
			producer_reset(rs);
			if (vmmu_dirty_ring_soft_full(rs->ring))
				sched_yield();
		}
		ret = vmmu_dirty_ring_push(rs->ring, slot_of(i), i);
		CHECK(ret == VMMU_DIRTY_RING_OK || ret == VMMU_DIRTY_RING_SOFT_FULL);
	}
	while (rs->reset_total < RING_N) {
		producer_reset(rs);
		sched_yield();
	}
	return NULL;
}

static void test_ring_spsc(void **state)
{
	struct ring_shared rs = { .covered = calloc(RING_N, 1) };
	struct vmmu_dirty_gfn out[64];
	uint64_t expect = 0, seed = 3, batches = 0;
	pthread_t prod;

	(void)state;
	assert_non_null(rs.covered);
	assert_int_equal(vmmu_dirty_ring_create(RING_SIZE, RING_RESERVED, NULL, &rs.ring), 0);
	assert_int_equal(pthread_create(&prod, NULL, producer_main, &rs), 0);
	while (expect < RING_N) {
		int n = vmmu_dirty_ring_harvest(rs.ring, out, 1 + (uint32_t)(test_rand64(&seed) % 64));

		assert_true(n >= 0);
		if (!n) {
			sched_yield();
			continue;
		}
		batches++;
		for (int i = 0; i < n; i++, expect++) {
			if (out[i].offset != expect || out[i].slot != slot_of(expect) ||
			    out[i].flags != VMMU_DIRTY_GFN_F_DIRTY)
				fail_msg("entry %llu: got slot %u offset %llu flags %u", (unsigned long long)expect,
					 out[i].slot, (unsigned long long)out[i].offset, out[i].flags);
		}
	}
	assert_int_equal(pthread_join(prod, NULL), 0);
	assert_int_equal(vmmu_dirty_ring_harvest(rs.ring, out, 64), 0); /* nothing extra */
	assert_int_equal(rs.reset_total, RING_N);
	assert_int_equal(vmmu_dirty_ring_used(rs.ring), 0);
	for (uint64_t i = 0; i < RING_N; i++)
		if (!rs.covered[i])
			fail_msg("entry %llu was reset but never reported for re-protection", (unsigned long long)i);
	printf("ring: %u entries through %u slots, %llu harvests, %u resets, all in order, each once\n", RING_N,
	       RING_SIZE, (unsigned long long)batches, rs.resets);
	free(rs.covered);
	vmmu_dirty_ring_destroy(rs.ring);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_marks_vs_get_and_clear),
		cmocka_unit_test(test_marks_vs_get_then_clear),
		cmocka_unit_test(test_ring_spsc),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
