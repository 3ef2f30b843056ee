/* SPDX-License-Identifier: MIT */
/*
 * bench-rmap: reverse-map add+remove throughput and memory per SPTE at chain
 * lengths 1, 2, 14, 100 and 1000, each beside a baseline measured in the same
 * run: a plain pre-sized array of SPTE pointers (append; remove = linear search
 * and move the last element into the hole, the same algorithm without the
 * descriptor chain, the lock bit or the cache).
 *
 * Workloads, per chain length n:
 *   build+teardown  add n SPTEs to an empty map, remove them in a shuffled order
 *   churn           at n entries, remove a random entry and add it back
 *   iterate         visit all n entries (writer iterator vs an array loop)
 * Times are the best of several rounds (ns per operation); memory is measured
 * from the descriptors actually in the chain.
 *
 * usage: bench-rmap [rounds]   (default 7)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libvmmu/rmap.h>

#include "rmap_check.h"

#define MAX_N 1000
#define TARGET_OPS 400000

static uint64_t pool[MAX_N];
static unsigned int order[MAX_N];
static volatile uintptr_t sink;

struct array_map {
	uint64_t *e[MAX_N];
	unsigned int n;
};

static __attribute__((noinline)) void array_add(struct array_map *a, uint64_t *p)
{
	a->e[a->n++] = p;
}

static __attribute__((noinline)) int array_remove(struct array_map *a, uint64_t *p)
{
	for (unsigned int i = 0; i < a->n; i++) {
		if (a->e[i] == p) {
			a->e[i] = a->e[--a->n];
			return (int)a->n;
		}
	}
	return -1;
}

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static uint64_t rng = 0x853c49e6748fea9bULL;

static unsigned int rnd(unsigned int n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (unsigned int)(rng % n);
}

static void shuffle(unsigned int n)
{
	for (unsigned int i = 0; i < n; i++)
		order[i] = i;
	for (unsigned int i = n; i > 1; i--) {
		unsigned int j = rnd(i), t = order[i - 1];

		order[i - 1] = order[j];
		order[j] = t;
	}
}

static void die(const char *what)
{
	fprintf(stderr, "bench-rmap: %s\n", what);
	exit(1);
}

/* ns per op of build+teardown: 2n ops per round. */
static double rmap_build_teardown(struct vmmu_rmap_cache *c, unsigned int n, unsigned int reps)
{
	struct vmmu_rmap_head h = VMMU_RMAP_HEAD_INIT;
	double t0 = now_ns();

	for (unsigned int r = 0; r < reps; r++) {
		if (vmmu_rmap_cache_topup(c, n / VMMU_RMAP_DESC_ENTRIES + 1))
			die("top-up failed");
		for (unsigned int i = 0; i < n; i++)
			if (vmmu_rmap_add(&h, &pool[i], c) < 0)
				die("add failed");
		for (unsigned int i = 0; i < n; i++)
			if (vmmu_rmap_remove(&h, &pool[order[i]], c) < 0)
				die("remove failed");
	}
	return (now_ns() - t0) / (2.0 * n * reps);
}

static double array_build_teardown(struct array_map *a, unsigned int n, unsigned int reps)
{
	double t0 = now_ns();

	for (unsigned int r = 0; r < reps; r++) {
		for (unsigned int i = 0; i < n; i++)
			array_add(a, &pool[i]);
		for (unsigned int i = 0; i < n; i++)
			if (array_remove(a, &pool[order[i]]) < 0)
				die("array remove failed");
	}
	return (now_ns() - t0) / (2.0 * n * reps);
}

/* ns per op of churn at n entries: remove one (random) and add it back, 2 ops per step. */
static double rmap_churn(struct vmmu_rmap_head *h, struct vmmu_rmap_cache *c, unsigned int n, unsigned int reps)
{
	double t0 = now_ns();

	for (unsigned int r = 0; r < reps; r++) {
		uint64_t *p = &pool[order[r % n]];

		if (vmmu_rmap_cache_topup(c, 1) || vmmu_rmap_remove(h, p, c) < 0 || vmmu_rmap_add(h, p, c) < 0)
			die("churn failed");
	}
	return (now_ns() - t0) / (2.0 * reps);
}

static double array_churn(struct array_map *a, unsigned int n, unsigned int reps)
{
	double t0 = now_ns();

	for (unsigned int r = 0; r < reps; r++) {
		uint64_t *p = &pool[order[r % n]];

		if (array_remove(a, p) < 0)
			die("array churn failed");
		array_add(a, p);
	}
	return (now_ns() - t0) / (2.0 * reps);
}

/* ns per visited entry. */
static double rmap_iterate(struct vmmu_rmap_head *h, unsigned int n, unsigned int reps)
{
	struct vmmu_rmap_iter it;
	uintptr_t acc = 0;
	uint64_t *p;
	double t0 = now_ns();

	for (unsigned int r = 0; r < reps; r++)
		vmmu_rmap_for_each(&it, h, p)
			acc += (uintptr_t)p;
	sink = acc;
	return (now_ns() - t0) / ((double)n * reps);
}

static __attribute__((noinline)) uintptr_t array_sum(const struct array_map *a)
{
	uintptr_t acc = 0;

	for (unsigned int i = 0; i < a->n; i++)
		acc += (uintptr_t)a->e[i];
	return acc;
}

static double array_iterate(const struct array_map *a, unsigned int n, unsigned int reps)
{
	uintptr_t acc = 0;
	double t0 = now_ns();

	for (unsigned int r = 0; r < reps; r++) {
		/* the array may have changed, as far as the compiler knows: sum it every time */
		__asm__ __volatile__("" : : "r"(a) : "memory");
		acc += array_sum(a);
	}
	sink = acc;
	return (now_ns() - t0) / ((double)n * reps);
}

static double min2(double a, double b)
{
	return a < b ? a : b;
}

int main(int argc, char **argv)
{
	static const unsigned int lengths[] = { 1, 2, 14, 100, 1000 };
	static struct array_map arr;
	unsigned int rounds = argc > 1 ? (unsigned int)atoi(argv[1]) : 7;
	struct vmmu_rmap_cache *c;

	if (!rounds)
		rounds = 1;
	if (vmmu_rmap_cache_create(&c, 128) || vmmu_rmap_cache_topup(c, 128))
		die("cannot create the descriptor cache");
	printf("bench-rmap: best of %u rounds; ns per operation; ratio = rmap / plain pre-sized array\n", rounds);
	printf("%6s | %-27s | %-27s | %-27s | %s\n", "chain", "build+teardown ns (ratio)", "churn ns (ratio)",
	       "iterate ns/entry (ratio)", "bytes/SPTE rmap, array (KVM)");
	for (unsigned int k = 0; k < sizeof(lengths) / sizeof(lengths[0]); k++) {
		unsigned int n = lengths[k];
		unsigned int reps_bt = TARGET_OPS / (2 * n) + 1, reps_churn = TARGET_OPS / 2;
		unsigned int reps_it = TARGET_OPS / n + 1;
		double rb = 1e30, ab = 1e30, rc = 1e30, ac = 1e30, ri = 1e30, ai = 1e30;
		struct vmmu_rmap_head h = VMMU_RMAP_HEAD_INIT;
		struct rmap_shape shape;
		double bytes, kvm;

		if (n >= 100) /* churn searches O(n): keep rounds short */
			reps_churn = TARGET_OPS / (n / 10);
		shuffle(n);
		arr.n = 0;
		for (unsigned int r = 0; r < rounds; r++) {
			rb = min2(rb, rmap_build_teardown(c, n, reps_bt));
			ab = min2(ab, array_build_teardown(&arr, n, reps_bt));
		}
		/* steady state at n entries, added in order */
		arr.n = 0;
		for (unsigned int i = 0; i < n; i++) {
			array_add(&arr, &pool[i]);
			if (vmmu_rmap_cache_topup(c, 1) || vmmu_rmap_add(&h, &pool[i], c) < 0)
				die("fill failed");
		}
		if (rmap_check(&h, &shape) || shape.entries != n)
			die("chain broken");
		bytes = (sizeof(struct vmmu_rmap_head) + (double)shape.descs * VMMU_RMAP_DESC_SIZE) / n;
		kvm = (8.0 + (n > 1 ? (n + 13) / 14 * 128.0 : 0)) / n;
		for (unsigned int r = 0; r < rounds; r++) {
			ri = min2(ri, rmap_iterate(&h, n, reps_it));
			ai = min2(ai, array_iterate(&arr, n, reps_it));
			rc = min2(rc, rmap_churn(&h, c, n, reps_churn));
			ac = min2(ac, array_churn(&arr, n, reps_churn));
		}
		if (rmap_check(&h, &shape) || shape.entries != n)
			die("chain broken by churn");
		printf("%6u | %7.2f / %7.2f (%5.2fx) | %7.2f / %7.2f (%5.2fx) | %7.3f / %7.3f (%5.2fx) | "
		       "%6.2f, %4.2f (%6.2f)  %u descs\n",
		       n, rb, ab, rb / ab, rc, ac, rc / ac, ri, ai, ri / ai, bytes, 8.0, kvm, shape.descs);
		while (vmmu_rmap_count(&h))
			if (vmmu_rmap_remove(&h, &pool[vmmu_rmap_count(&h) - 1], c) < 0)
				die("teardown failed");
	}
	printf("memory: rmap bytes per SPTE = (8-byte head + 128 B per descriptor in the chain) / n; "
	       "array = 8 B per slot, pre-sized; KVM = same formula as its pte_list_desc chains\n");
	vmmu_rmap_cache_destroy(c);
	return 0;
}
