/* SPDX-License-Identifier: MIT */
/*
 * Reverse maps with lockless readers: one writer thread, holding a mutex that
 * plays the MMU lock, adds, removes and iterates-with-removal on four heads,
 * while two reader threads walk the same heads without the mutex through
 * vmmu_rmap_walk_lockless() and age the SPTEs they find (atomic bit clear).
 *
 * Membership protocol: the writer marks an SPTE as belonging to head h before
 * adding it, and unmarks it only after removing it. Because the lock bit
 * orders readers against every list change, a reader must only ever see SPTEs
 * marked for the head it walks, each at most once per walk. Run it under
 * ThreadSanitizer too (meson setup build-tsan -Db_sanitize=thread). A second
 * test holds a reader inside a walk and checks that a writer waits for it.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "helpers.h"
#include <libvmmu/rmap.h>

#define HEADS 4
#define POOL 1024
#define WRITER_OPS 200000
#define MAX_PER_HEAD 220
#define SPTE_PRESENT 1ULL
#define SPTE_ACCESSED (1ULL << 5)

static _Atomic uint64_t sptes[POOL];
static atomic_int owner[POOL];          /* 0 = in no head, h + 1 = in head h */
static struct vmmu_rmap_head heads[HEADS];
static pthread_mutex_t mmu_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_bool stop;
static atomic_int failures;

struct reader_stats {
	unsigned long walks, entries, longest, aged;
	unsigned char seen[POOL];
	int head;
};

/* cmocka's asserts must stay on the main thread: threads count failures instead. */
#define WCHECK(cond)                                                                     \
	do {                                                                             \
		if (!(cond)) {                                                           \
			printf("writer: %s:%d: %s\n", __FILE__, __LINE__, #cond);       \
			atomic_fetch_add(&failures, 1);                                  \
		}                                                                        \
	} while (0)

static inline uint64_t *spte_ptr(unsigned int i)
{
	return (uint64_t *)&sptes[i];
}

static int reader_visit(uint64_t *sptep, void *opaque)
{
	struct reader_stats *st = opaque;
	_Atomic uint64_t *a = (_Atomic uint64_t *)sptep;
	long i = a - sptes;

	if (i < 0 || i >= POOL) {
		atomic_fetch_add(&failures, 1);
		return 1;
	}
	if (atomic_load_explicit(&owner[i], memory_order_acquire) != st->head + 1 || st->seen[i]++) {
		atomic_fetch_add(&failures, 1);
		return 1;
	}
	/* aging: clear A on a present SPTE, as a lockless ager would */
	if (atomic_fetch_and_explicit(a, ~SPTE_ACCESSED, memory_order_relaxed) & SPTE_ACCESSED)
		st->aged++;
	st->entries++;
	return 0;
}

static void *reader(void *arg)
{
	struct reader_stats *st = arg;
	unsigned int h = 0;

	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		unsigned long before = st->entries;

		st->head = (int)(h++ % HEADS);
		memset(st->seen, 0, sizeof(st->seen));
		if (vmmu_rmap_walk_lockless(&heads[st->head], reader_visit, st))
			break;
		st->walks++;
		if (st->entries - before > st->longest)
			st->longest = st->entries - before;
	}
	return NULL;
}

struct writer_state {
	struct vmmu_rmap_cache *cache;
	unsigned int n[HEADS];
	unsigned long adds, removes, iter_removes;
	uint64_t seed;
};

static void writer_add(struct writer_state *w, unsigned int h, unsigned int i)
{
	int ret;

	atomic_store_explicit(&sptes[i], SPTE_PRESENT | SPTE_ACCESSED | ((uint64_t)i << 12), memory_order_relaxed);
	atomic_store_explicit(&owner[i], (int)h + 1, memory_order_release);
	ret = vmmu_rmap_add(&heads[h], spte_ptr(i), w->cache);
	WCHECK(ret == (int)++w->n[h]);
	w->adds++;
}

static void writer_forget(unsigned int i)
{
	atomic_store_explicit(&owner[i], 0, memory_order_release);
	atomic_store_explicit(&sptes[i], 0, memory_order_relaxed);
}

static void writer_step(struct writer_state *w)
{
	uint64_t r = test_rand64(&w->seed);
	unsigned int h = r % HEADS, i = (unsigned int)(r >> 8) % POOL;
	bool grow = (r >> 32) % MAX_PER_HEAD >= w->n[h];

	/* top up outside the lock: one add needs at most one descriptor */
	WCHECK(vmmu_rmap_cache_topup(w->cache, 1) == 0);
	pthread_mutex_lock(&mmu_lock);
	if (grow && !atomic_load_explicit(&owner[i], memory_order_relaxed)) {
		writer_add(w, h, i);
	} else if (atomic_load_explicit(&owner[i], memory_order_relaxed) == (int)h + 1) {
		WCHECK(vmmu_rmap_remove(&heads[h], spte_ptr(i), w->cache) == (int)--w->n[h]);
		writer_forget(i);
		w->removes++;
	} else if ((r >> 48) % 64 == 0) {
		/* zap a random part of the head while iterating */
		struct vmmu_rmap_iter it;
		uint64_t *p;

		vmmu_rmap_for_each(&it, &heads[h], p) {
			unsigned int k = (unsigned int)((_Atomic uint64_t *)p - sptes);

			if ((k ^ (unsigned int)r) % 3 == 0) {
				WCHECK(vmmu_rmap_iter_remove(&it, w->cache) == (int)--w->n[h]);
				writer_forget(k);
				w->iter_removes++;
			}
		}
	}
	WCHECK(vmmu_rmap_count(&heads[h]) == w->n[h]);
	pthread_mutex_unlock(&mmu_lock);
}

static void *writer(void *arg)
{
	struct writer_state *w = arg;

	for (unsigned int op = 0; op < WRITER_OPS && !atomic_load(&failures); op++)
		writer_step(w);
	atomic_store(&stop, true);
	return NULL;
}

static void test_lockless_readers(void **state)
{
	struct writer_state w = { .seed = 0x9e3779b97f4a7c15ULL };
	static struct reader_stats rs[2];
	pthread_t wt, rt[2];

	(void)state;
	assert_int_equal(vmmu_rmap_cache_create(&w.cache, 16), 0);
	assert_int_equal(pthread_create(&rt[0], NULL, reader, &rs[0]), 0);
	assert_int_equal(pthread_create(&rt[1], NULL, reader, &rs[1]), 0);
	assert_int_equal(pthread_create(&wt, NULL, writer, &w), 0);
	pthread_join(wt, NULL);
	pthread_join(rt[0], NULL);
	pthread_join(rt[1], NULL);
	printf("writer: %lu adds, %lu removes, %lu iterator removals; readers: %lu + %lu walks, "
	       "%lu + %lu entries seen, longest walk %lu / %lu, %lu SPTEs aged\n",
	       w.adds, w.removes, w.iter_removes, rs[0].walks, rs[1].walks, rs[0].entries, rs[1].entries,
	       rs[0].longest, rs[1].longest, rs[0].aged + rs[1].aged);
	assert_int_equal(atomic_load(&failures), 0);
	/* not vacuous: the readers walked long chains while the writer changed them */
	assert_true(w.adds > 10000 && w.removes > 10000 && w.iter_removes > 100);
	assert_true(rs[0].walks > 100 && rs[1].walks > 100);
	assert_true(rs[0].longest >= 28 && rs[1].longest >= 28);

	for (unsigned int h = 0; h < HEADS; h++) {
		struct vmmu_rmap_iter it;
		uint64_t *p;

		vmmu_rmap_for_each(&it, &heads[h], p)
			assert_true(vmmu_rmap_iter_remove(&it, w.cache) >= 0);
		assert_int_equal(heads[h].word, 0);
	}
	vmmu_rmap_cache_destroy(w.cache);
}

/* A reader inside a walk holds the head: a writer's remove waits until the walk is over. */
struct slow_walk {
	struct vmmu_rmap_head *head;
	atomic_int inside, leaving;
};

static int slow_visit(uint64_t *sptep, void *opaque)
{
	struct slow_walk *sw = opaque;
	struct timespec ts = { 0, 20 * 1000 * 1000 };

	(void)sptep;
	if (atomic_load(&sw->inside))
		return 0;
	atomic_store(&sw->inside, 1);
	nanosleep(&ts, NULL);
	atomic_store(&sw->leaving, 1);
	return 0;
}

static void *slow_reader(void *arg)
{
	struct slow_walk *sw = arg;

	vmmu_rmap_walk_lockless(sw->head, slow_visit, sw);
	return NULL;
}

static void test_writer_waits_for_reader(void **state)
{
	static const unsigned int sizes[] = { 1, 3, 20 };
	struct vmmu_rmap_cache *c;

	(void)state;
	assert_int_equal(vmmu_rmap_cache_create(&c, 4), 0);
	for (unsigned int k = 0; k < 3; k++) {
		struct vmmu_rmap_head h = VMMU_RMAP_HEAD_INIT;
		struct slow_walk sw = { .head = &h };
		pthread_t t;

		assert_int_equal(vmmu_rmap_cache_topup(c, 2), 0);
		for (unsigned int i = 0; i < sizes[k]; i++)
			assert_int_equal(vmmu_rmap_add(&h, spte_ptr(i), c), (int)i + 1);
		assert_int_equal(pthread_create(&t, NULL, slow_reader, &sw), 0);
		while (!atomic_load(&sw.inside))
			sched_yield();
		assert_int_equal(vmmu_rmap_remove(&h, spte_ptr(0), c), (int)sizes[k] - 1);
		assert_int_equal(atomic_load(&sw.leaving), 1);
		pthread_join(t, NULL);
		for (unsigned int i = 1; i < sizes[k]; i++)
			assert_true(vmmu_rmap_remove(&h, spte_ptr(i), c) >= 0);
		assert_int_equal(h.word, 0);
	}
	vmmu_rmap_cache_destroy(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_writer_waits_for_reader),
		cmocka_unit_test(test_lockless_readers),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
