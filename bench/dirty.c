/* SPDX-License-Identifier: MIT */
/*
 * Dirty bitmaps and rings, each figure beside a baseline measured in the same run:
 *  - get-and-clear (and get) of a 32 MiB bitmap (1 TiB of 4 KiB pages) vs memcpy of 32 MiB;
 *  - set-bit iteration and range coalescing at 0.1%, 10%, 100% density vs a
 *    per-bit loop and vs a plain scan of the words (read each word, count the
 *    non-zero ones: the floor for any scan);
 *  - ring push / harvest / reset per entry vs copying the same 16-byte entries
 *    into and out of a plain array.
 * Each figure is the fastest of several repetitions, and each repetition
 * times the baseline and the library back to back (this machine class is
 * shared and noisy; the minimum is the steadiest estimate of the cost itself).
 *
 * usage: bench-dirty [reps]   (default 7)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libvmmu/dirty.h>

#define NPAGES (1ULL << 28) /* 1 TiB of 4 KiB pages */
#define NWORDS (NPAGES / 64) /* 32 MiB of bitmap */
#define MAXREPS 31

static volatile uint64_t sink;

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double fastest(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return v[0];
}

static uint64_t rnd(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1DULL;
}

/* A pattern of NWORDS words with about @per_mille / 1000 of the bits set at random places. */
static void make_pattern(uint64_t *w, unsigned int per_mille)
{
	uint64_t s = 0x5eed + per_mille;

	if (per_mille >= 1000) {
		memset(w, 0xff, NWORDS * 8);
		return;
	}
	memset(w, 0, NWORDS * 8);
	if (per_mille >= 50) {
		/* one random byte per bit: a bit is set when its byte is below the threshold */
		unsigned int thr = (per_mille * 256 + 500) / 1000;

		for (uint64_t i = 0; i < NWORDS; i++) {
			uint64_t word = 0;

			for (unsigned int b = 0; b < 64; b += 8) {
				uint64_t r = rnd(&s);

				for (unsigned int k = 0; k < 8; k++)
					word |= (uint64_t)((r >> (8 * k) & 0xff) < thr) << (b + k);
			}
			w[i] = word;
		}
		return;
	}
	for (uint64_t n = NPAGES / 1000 * per_mille; n > 0; n--) {
		uint64_t p = rnd(&s) % NPAGES;

		w[p / 64] |= 1ULL << (p % 64);
	}
}

/* ---- baselines ---- */

static uint64_t plain_scan(const uint64_t *w)
{
	uint64_t nz = 0;

	for (uint64_t i = 0; i < NWORDS; i++)
		nz += w[i] != 0;
	return nz;
}

static uint64_t per_bit_loop(const uint64_t *w)
{
	uint64_t sum = 0;

	for (uint64_t p = 0; p < NPAGES; p++)
		if (w[p / 64] >> (p % 64) & 1)
			sum += p;
	return sum;
}

static uint64_t per_bit_ranges(const uint64_t *w)
{
	uint64_t sum = 0, start = 0;
	int in = 0;

	for (uint64_t p = 0; p < NPAGES; p++) {
		int set = w[p / 64] >> (p % 64) & 1;

		if (set && !in)
			start = p;
		else if (!set && in)
			sum += start ^ (p - start);
		in = set;
	}
	if (in)
		sum += start ^ (NPAGES - start);
	return sum;
}

/* ---- library ---- */

static uint64_t lib_bits(const uint64_t *w)
{
	struct vmmu_dirty_iter it;
	uint64_t sum = 0;
	vmmu_gfn_t gfn;

	vmmu_dirty_iter_init(&it, w, NPAGES, 0);
	while (vmmu_dirty_iter_next(&it, &gfn))
		sum += gfn;
	return sum;
}

static uint64_t lib_ranges(const uint64_t *w)
{
	struct vmmu_dirty_iter it;
	struct vmmu_dirty_range r;
	uint64_t sum = 0;

	vmmu_dirty_iter_init(&it, w, NPAGES, 0);
	while (vmmu_dirty_iter_next_range(&it, &r))
		sum += r.first ^ r.npages;
	return sum;
}

typedef uint64_t (*scan_fn)(const uint64_t *w);

/* Time one call of @fn on @w into slot @rep of @t. */
static uint64_t time_once(scan_fn fn, const uint64_t *w, double *t, int rep)
{
	double t0 = now_ms();
	uint64_t r = fn(w);

	t[rep] = now_ms() - t0;
	sink += r;
	return r;
}

static double time_memcpy(uint64_t *dst, const uint64_t *src)
{
	double t0 = now_ms();

	memcpy(dst, src, NWORDS * 8);
	t0 = now_ms() - t0;
	sink += dst[NWORDS / 2];
	return t0;
}

/*
 * Each repetition times the baseline and the library back to back, so that
 * both see the same load; each figure is the fastest of its repetitions.
 */
static void bench_harvest(uint64_t *pattern, uint64_t *buf, uint64_t *src, uint64_t *dst, int reps)
{
	static const unsigned int density[] = { 0, 1, 100, 1000 };
	struct vmmu_dirty_bitmap *bm;

	if (vmmu_dirty_bitmap_create(0, NPAGES, 0, &bm)) {
		fprintf(stderr, "bench-dirty: cannot allocate a 32 MiB bitmap\n");
		exit(1);
	}
	memset(src, 0x5a, NWORDS * 8);
	memset(dst, 0, NWORDS * 8);
	for (size_t d = 0; d < sizeof(density) / sizeof(density[0]); d++) {
		double t_cpy[MAXREPS], t_gac[MAXREPS], t_get[MAXREPS], cpy, gac, get;
		int64_t n = 0;

		make_pattern(pattern, density[d]);
		for (int i = 0; i < reps; i++) {
			double t0;

			t_cpy[i] = time_memcpy(dst, src);
			vmmu_dirty_bitmap_merge_buf(bm, pattern);
			t0 = now_ms();
			sink += (uint64_t)vmmu_dirty_bitmap_get(bm, buf);
			t_get[i] = now_ms() - t0;
			t0 = now_ms();
			n = vmmu_dirty_bitmap_get_and_clear(bm, buf, NULL, NULL);
			t_gac[i] = now_ms() - t0;
		}
		cpy = fastest(t_cpy, reps);
		gac = fastest(t_gac, reps);
		get = fastest(t_get, reps);
		printf("32 MiB, %5.1f%% set (%9lld pages): memcpy %6.2f ms (%4.1f GB/s) | get_and_clear %7.2f ms = "
		       "%.2fx memcpy bandwidth | get %6.2f ms = %.2fx\n",
		       density[d] / 10.0, (long long)n, cpy, NWORDS * 8 / cpy / 1e6, gac, cpy / gac, get, cpy / get);
	}
	vmmu_dirty_bitmap_destroy(bm);
}

static void bench_iterate(uint64_t *pattern, int reps)
{
	static const unsigned int density[] = { 1, 100, 1000 };
	int slow_reps = reps > 3 ? 3 : reps; /* the per-bit loops take ~1 s at 100% */

	for (size_t d = 0; d < sizeof(density) / sizeof(density[0]); d++) {
		double t_scan[MAXREPS], t_bits[MAXREPS], t_ranges[MAXREPS], t_pb[MAXREPS], t_pr[MAXREPS];
		double scan, bits, ranges, pb, pr;
		uint64_t r_bits = 0, r_ranges = 0, r_pb = 0, r_pr = 0;

		make_pattern(pattern, density[d]);
		for (int i = 0; i < reps; i++) {
			time_once(plain_scan, pattern, t_scan, i);
			r_bits = time_once(lib_bits, pattern, t_bits, i);
			r_ranges = time_once(lib_ranges, pattern, t_ranges, i);
			if (i < slow_reps) {
				r_pb = time_once(per_bit_loop, pattern, t_pb, i);
				r_pr = time_once(per_bit_ranges, pattern, t_pr, i);
			}
		}
		if (r_bits != r_pb || r_ranges != r_pr) {
			fprintf(stderr, "bench-dirty: iterator and per-bit loop disagree\n");
			exit(1);
		}
		scan = fastest(t_scan, reps);
		bits = fastest(t_bits, reps);
		ranges = fastest(t_ranges, reps);
		pb = fastest(t_pb, slow_reps);
		pr = fastest(t_pr, slow_reps);
		printf("%5.1f%% set, 1 TiB: plain scan %6.2f ms | bits %7.2f ms = %5.2fx scan time, %5.1fx faster "
		       "than per-bit | ranges %7.2f ms = %5.2fx scan time, %5.1fx faster than per-bit\n",
		       density[d] / 10.0, scan, bits, bits / scan, pb / bits, ranges, ranges / scan, pr / ranges);
	}
}

static void bench_ring(int reps)
{
	enum { SIZE = 4096, RESERVED = 64, ROUNDS = 256 };
	const uint32_t batch = SIZE - RESERVED;
	static struct vmmu_dirty_gfn out[SIZE], plain[SIZE];
	struct vmmu_dirty_ring *ring;
	double tp[MAXREPS], th[MAXREPS], tr[MAXREPS], tb[MAXREPS];
	uint64_t entries = (uint64_t)batch * ROUNDS;

	if (vmmu_dirty_ring_create(SIZE, RESERVED, NULL, &ring))
		exit(1);
	for (int i = 0; i < reps; i++) {
		double push = 0, harvest = 0, reset = 0, t0, base;

		for (int round = 0; round < ROUNDS; round++) {
			t0 = now_ms();
			for (uint32_t k = 0; k < batch; k++)
				vmmu_dirty_ring_push(ring, 1, (uint64_t)round * batch + k);
			push += now_ms() - t0;
			t0 = now_ms();
			if (vmmu_dirty_ring_harvest(ring, out, SIZE) != (int)batch)
				exit(1);
			harvest += now_ms() - t0;
			t0 = now_ms();
			if (vmmu_dirty_ring_reset(ring, NULL, NULL) != (int)batch)
				exit(1);
			reset += now_ms() - t0;
		}
		/* baseline: write the same entries into a plain array and copy them out */
		t0 = now_ms();
		for (int round = 0; round < ROUNDS; round++) {
			for (uint32_t k = 0; k < batch; k++)
				plain[k] = (struct vmmu_dirty_gfn){ 1, 1, (uint64_t)round * batch + k };
			__asm__ volatile("" ::: "memory");
			memcpy(out, plain, batch * sizeof(plain[0]));
			__asm__ volatile("" ::: "memory");
		}
		base = now_ms() - t0;
		sink += out[7].offset;
		tp[i] = push * 1e6 / entries;
		th[i] = harvest * 1e6 / entries;
		tr[i] = reset * 1e6 / entries;
		tb[i] = base * 1e6 / entries;
	}
	double p = fastest(tp, reps), h = fastest(th, reps), r = fastest(tr, reps), b = fastest(tb, reps);

	printf("ring of %d, per entry: push %.2f ns, harvest %.2f ns, reset %.2f ns, total %.2f ns; "
	       "baseline plain store + copy %.2f ns (%.1fx)\n",
	       SIZE, p, h, r, p + h + r, b, (p + h + r) / b);
	vmmu_dirty_ring_destroy(ring);
}

int main(int argc, char **argv)
{
	int reps = argc > 1 ? atoi(argv[1]) : 7;
	uint64_t *pattern, *buf, *src, *dst;

	if (reps < 1 || reps > MAXREPS)
		reps = 7;
	pattern = aligned_alloc(64, NWORDS * 8);
	buf = aligned_alloc(64, NWORDS * 8);
	src = aligned_alloc(64, NWORDS * 8);
	dst = aligned_alloc(64, NWORDS * 8);
	if (!pattern || !buf || !src || !dst) {
		fprintf(stderr, "bench-dirty: out of memory\n");
		return 1;
	}
	memset(buf, 0, NWORDS * 8);
	printf("bench-dirty: fastest of %d runs\n", reps);
	bench_harvest(pattern, buf, src, dst, reps);
	bench_iterate(pattern, reps);
	bench_ring(reps);
	free(pattern);
	free(buf);
	free(src);
	free(dst);
	return 0;
}
