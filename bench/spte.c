/* SPDX-License-Identifier: MIT */
/*
 * SPTE construction and validation rate, beside a baseline run in the same
 * process: a loop of the same count that ORs precomputed constants selected by
 * the same input bits (what a hard-coded, unchecked builder would do), and a
 * single AND against a constant for the validator. Prints each figure as
 * million operations per second and as a ratio to its baseline; the median of
 * several rounds is reported.
 *
 * usage: bench-spte [iterations per round, default 20000000]
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <libvmmu/spte.h>

#define ROUNDS 7

/* Keep a value in a register without letting the compiler fold or vectorise the loop. */
#define OPAQUE(v) __asm__ volatile("" : "+r"(v))

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t sink;

static double run_make(const struct vmmu_spte_format *f, uint64_t n)
{
	const unsigned int flags = VMMU_SPTE_HOST_WRITABLE | VMMU_SPTE_CAN_WRITE;
	uint64_t acc = 0, s = 0;
	double t = now();

	for (uint64_t i = 0; i < n; i++) {
		vmmu_spte_make_leaf(f, i & 0xffffff, 1, (unsigned int)(i >> 3) & 7, VMMU_SPTE_MT_WB,
				    flags | ((unsigned int)i & VMMU_SPTE_PREFETCH), &s);
		OPAQUE(s);
		acc ^= s;
	}
	t = now() - t;
	sink ^= acc;
	return t;
}

/* The baseline: the same inputs, turned into bits by table lookups and ORs, no checks. */
static double run_or(uint64_t n)
{
	static const uint64_t acc_bits[8] = { 0x8000000000000001ULL, 0x1, 0x8000000000000603ULL, 0x603,
					      0x8000000000000005ULL, 0x5, 0x8000000000000607ULL, 0x607 };
	uint64_t acc = 0, s;
	double t = now();

	for (uint64_t i = 0; i < n; i++) {
		s = 0x800 | 0x20 | 0x200 | acc_bits[(i >> 3) & 7] | ((i & 0xffffff) << 12) | ((i & 1) ? 0 : 0x20);
		OPAQUE(s);
		acc ^= s;
	}
	t = now() - t;
	sink ^= acc;
	return t;
}

static double run_validate(const struct vmmu_spte_format *f, const uint64_t *v, uint64_t n)
{
	uint64_t bad = 0;
	double t = now();

	for (uint64_t i = 0; i < n; i++) {
		uint64_t s = v[i & 1023];

		OPAQUE(s);
		bad += vmmu_spte_is_rsvd(f, s, (int)(i & 3) + 1);
	}
	t = now() - t;
	sink ^= bad;
	return t;
}

static double run_and(const uint64_t *v, uint64_t n)
{
	uint64_t bad = 0;
	double t = now();

	for (uint64_t i = 0; i < n; i++) {
		uint64_t s = v[i & 1023];

		OPAQUE(s);
		bad += (s & 0x000fc00000000000ULL) != 0;
	}
	t = now() - t;
	sink ^= bad;
	return t;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *t)
{
	qsort(t, ROUNDS, sizeof(*t), cmp_double);
	return t[ROUNDS / 2];
}

static void report(const char *what, double t, double base, uint64_t n)
{
	printf("%-34s %8.1f M/s  %6.2f ns/op  %5.2fx baseline\n", what, n / t / 1e6, t / n * 1e9, t / base);
}

int main(int argc, char **argv)
{
	uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 0) : 20000000;
	struct vmmu_spte_format_opts o = { .size = sizeof(o), .mode = VMMU_PAGING_EPT4, .maxphyaddr = 46 };
	struct vmmu_spte_format ept, npt;
	double t_or[ROUNDS], t_ept[ROUNDS], t_npt[ROUNDS], t_and[ROUNDS], t_val[ROUNDS];
	static uint64_t v[1024];
	uint64_t seed = 0x9e3779b97f4a7c15ULL;

	if (!n || vmmu_spte_format_init(&ept, &o))
		return 1;
	o.mode = VMMU_PAGING_4LEVEL;
	if (vmmu_spte_format_init(&npt, &o))
		return 1;
	/* validator input: mostly valid SPTEs, some with a random reserved-looking bit */
	for (int i = 0; i < 1024; i++) {
		seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
		vmmu_spte_make_leaf(&ept, (seed >> 20) & 0xffffff, 1, VMMU_ACC_ALL, VMMU_SPTE_MT_WB,
				    VMMU_SPTE_HOST_WRITABLE, &v[i]);
		if (i % 8 == 0)
			v[i] |= 1ULL << (seed >> 58);
	}
	for (int r = 0; r < ROUNDS; r++) {
		t_or[r] = run_or(n);
		t_ept[r] = run_make(&ept, n);
		t_npt[r] = run_make(&npt, n);
		t_and[r] = run_and(v, n);
		t_val[r] = run_validate(&ept, v, n);
	}
	printf("bench-spte: %llu operations per round, median of %d rounds\n", (unsigned long long)n, ROUNDS);
	report("baseline: OR of constants", median(t_or), median(t_or), n);
	report("vmmu_spte_make_leaf (EPT 4K)", median(t_ept), median(t_or), n);
	report("vmmu_spte_make_leaf (NPT 4K)", median(t_npt), median(t_or), n);
	report("baseline: AND with a constant", median(t_and), median(t_and), n);
	report("vmmu_spte_is_rsvd (EPT, levels 1-4)", median(t_val), median(t_and), n);
	return sink == 42; /* keeps the results alive */
}
