/* SPDX-License-Identifier: MIT */
/*
 * Guest page walk: vmmu_walk() with every check (a user read with SMEP, SMAP
 * and NXE on; VMMU_WALK_NO_AD, so the figure is the lookup alone) beside a naive walk over the same tables in the
 * same run: read the entry, test P, mask the address, next level. The naive
 * walk is measured two ways: through memslot_lookup() per level (the same
 * lookup the walker uses) and through a direct hva base (hva = ram + gpa - base).
 *
 * Tables: 1 GiB of 4 KiB mappings (512 page tables, ~2 MiB), 4- and 5-level.
 * Hot set: the 512 pages of one page table, in a shuffled order. Cold set:
 * random GVAs over the whole GiB. Each figure is the best of 15 rounds, each
 * round running every variant once (interleaved): on a shared 2-core machine
 * the least disturbed round is the stable figure; the median is printed too.
 *
 * Usage: bench-walk [walks per round, default 300000] [levels: 4 or 5, default both]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include <libvmmu/paging.h>

#include "memslot_internal.h"

#define TABLE_BASE 0x100000ULL
#define MAP_GVA    0x00007f0000000000ULL
#define MAP_GPA    0x100000000ULL
#define NPAGES     (1u << 18) /* 1 GiB */
#define RUNS       15

struct setup {
	uint8_t *ram;
	uint64_t ram_size;
	struct vmmu_memslots *mem;
	struct vmmu_paging *ctx;
	vmmu_gpa_t root;
	unsigned int levels;
};

static uint64_t *entry(struct setup *s, vmmu_gpa_t gpa)
{
	return (uint64_t *)(s->ram + (gpa - TABLE_BASE));
}

static void build(struct setup *s, unsigned int levels)
{
	const uint64_t tb = 0x27; /* P, W, U, A */
	vmmu_gpa_t next = TABLE_BASE, top, pd;
	struct vmmu_paging_regs regs = { .cr0 = VMMU_CR0_PG | VMMU_CR0_WP | 1, .cr4 = VMMU_CR4_PAE | VMMU_CR4_SMEP |
					 VMMU_CR4_SMAP, .efer = VMMU_EFER_LME | VMMU_EFER_LMA | VMMU_EFER_NXE,
					 .maxphyaddr = 46 };

	s->levels = levels;
	s->ram_size = (NPAGES / 512 + 8) * 4096ULL;
	s->ram = mmap(NULL, s->ram_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (s->ram == MAP_FAILED || vmmu_memslots_create(&s->mem) ||
	    vmmu_memslots_add(s->mem, 0, TABLE_BASE, s->ram_size, s->ram, 0))
		abort();
	s->root = next;
	next += 4096;
	top = s->root;
	/* upper levels down to the PD: one entry each on the path of MAP_GVA */
	for (unsigned int l = levels; l > 2; l--) {
		unsigned int idx = (unsigned int)((MAP_GVA >> (12 + 9 * (l - 1))) & 511);

		*entry(s, top + idx * 8) = next | tb;
		top = next;
		next += 4096;
	}
	pd = top;
	for (unsigned int t = 0; t < NPAGES / 512; t++) {
		vmmu_gpa_t pt = next;

		next += 4096;
		*entry(s, pd + (((MAP_GVA >> 21) + t) & 511) * 8) = pt | tb;
		for (unsigned int i = 0; i < 512; i++)
			*entry(s, pt + i * 8) = (MAP_GPA + ((uint64_t)t * 512 + i) * 4096) | tb | 0x40;
	}
	regs.cr3 = s->root;
	if (levels == 5)
		regs.cr4 |= VMMU_CR4_LA57;
	if (vmmu_paging_create(&s->ctx, s->mem, &regs))
		abort();
}

static void teardown(struct setup *s)
{
	vmmu_paging_destroy(s->ctx);
	vmmu_memslots_destroy(s->mem);
	munmap(s->ram, s->ram_size);
}

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

/* Naive walk: entry, P, address, next level; memslot_lookup() per level. */
static uint64_t naive_lookup(struct setup *s, uint64_t gva)
{
	vmmu_gpa_t table = s->root;

	for (unsigned int l = s->levels;; l--) {
		vmmu_gpa_t gpa = table + ((gva >> (12 + 9 * (l - 1))) & 511) * 8;
		const struct memslot *m = memslot_lookup(s->mem, gpa >> 12);
		uint64_t pte;

		if (!m)
			return 0;
		pte = *(volatile uint64_t *)(m->hva + (gpa - (m->base_gfn << 12)));
		if (!(pte & 1))
			return 0;
		table = pte & 0x000ffffffffff000ULL;
		if (l == 1)
			return table | (gva & 0xfff);
	}
}

/* Naive walk through a direct hva base (no memslot lookup, no bounds check). */
static uint64_t naive_base(struct setup *s, uint64_t gva)
{
	vmmu_gpa_t table = s->root;

	for (unsigned int l = s->levels;; l--) {
		vmmu_gpa_t gpa = table + ((gva >> (12 + 9 * (l - 1))) & 511) * 8;
		uint64_t pte = *(volatile uint64_t *)(s->ram + (gpa - TABLE_BASE));

		if (!(pte & 1))
			return 0;
		table = pte & 0x000ffffffffff000ULL;
		if (l == 1)
			return table | (gva & 0xfff);
	}
}

enum kind { FULL, NAIVE_LOOKUP, NAIVE_BASE, FULL_AD };

static double run_once(struct setup *s, const uint64_t *gvas, size_t n, enum kind k)
{
	struct vmmu_walk_result res;
	uint64_t sum = 0;
	double t0 = now_ns();

	for (size_t i = 0; i < n; i++) {
		switch (k) {
		case FULL:
			if (vmmu_walk(s->ctx, gvas[i], VMMU_WALK_USER | VMMU_WALK_NO_AD, &res) == VMMU_WALK_OK)
				sum += res.gpa;
			break;
		case FULL_AD:
			if (vmmu_walk(s->ctx, gvas[i], VMMU_WALK_USER, &res) == VMMU_WALK_OK)
				sum += res.gpa;
			break;
		case NAIVE_LOOKUP:
			sum += naive_lookup(s, gvas[i]);
			break;
		case NAIVE_BASE:
			sum += naive_base(s, gvas[i]);
			break;
		}
	}
	t0 = (now_ns() - t0) / (double)n;
	if (sum == 42)
		printf(" ");
	return t0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Every variant must translate every address alike, or the figures compare different work. */
static void verify(struct setup *s, const uint64_t *gvas, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct vmmu_walk_result res;
		uint64_t want = naive_base(s, gvas[i]);

		if (vmmu_walk(s->ctx, gvas[i], VMMU_WALK_USER | VMMU_WALK_NO_AD, &res) != VMMU_WALK_OK ||
		    res.gpa != want || naive_lookup(s, gvas[i]) != want || !want) {
			fprintf(stderr, "bench-walk: walks of 0x%llx disagree\n", (unsigned long long)gvas[i]);
			exit(1);
		}
	}
}

/* Best and median per kind over RUNS rounds; each round runs every kind once. */
static void measure(struct setup *s, const uint64_t *gvas, size_t n, double best[4], double med[4])
{
	double t[4][RUNS];

	for (unsigned int r = 0; r < RUNS; r++)
		for (unsigned int k = 0; k < 4; k++)
			t[k][r] = run_once(s, gvas, n, (enum kind)k);
	for (unsigned int k = 0; k < 4; k++) {
		qsort(t[k], RUNS, sizeof(t[k][0]), cmp_double);
		best[k] = t[k][0];
		med[k] = t[k][RUNS / 2];
	}
}

static uint64_t rnd(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

int main(int argc, char **argv)
{
	size_t n = argc > 1 ? strtoull(argv[1], NULL, 0) : 300000;
	unsigned int only = argc > 2 ? (unsigned int)atoi(argv[2]) : 0;
	uint64_t *hot = malloc(n * sizeof(*hot)), *cold = malloc(n * sizeof(*cold));
	uint64_t seed = 88172645463325252ULL;

	if (!hot || !cold || !n)
		return 1;
	for (size_t i = 0; i < n; i++) {
		hot[i] = MAP_GVA + 100 * (2ULL << 20) + (rnd(&seed) % 512) * 4096 + (i & 0xff8);
		cold[i] = MAP_GVA + (rnd(&seed) % NPAGES) * 4096 + (i & 0xff8);
	}
	printf("guest page walk: ns per walk, best of %d rounds of %zu walks (full = vmmu_walk with NO_AD;\n"
	       "naive/lookup = naive walk with memslot_lookup() per level; naive/base = naive walk on a direct hva base)\n",
	       RUNS, n);
	for (unsigned int levels = 4; levels <= 5; levels++) {
		struct setup s;

		if (only && levels != only)
			continue;
		build(&s, levels);
		for (unsigned int set = 0; set < 2; set++) {
			const uint64_t *g = set ? cold : hot;
			double b[4], m[4];

			verify(&s, g, n);
			measure(&s, g, n, b, m);
			printf("%u-level %-4s: full %5.1f | naive/lookup %5.1f (x%.2f) | naive/base %5.1f (x%.2f) | "
			       "full, A/D on %5.1f || median: full %5.1f naive/lookup %5.1f (x%.2f) naive/base %5.1f\n",
			       levels, set ? "cold" : "hot", b[FULL], b[NAIVE_LOOKUP], b[FULL] / b[NAIVE_LOOKUP],
			       b[NAIVE_BASE], b[FULL] / b[NAIVE_BASE], b[FULL_AD], m[FULL], m[NAIVE_LOOKUP],
			       m[FULL] / m[NAIVE_LOOKUP], m[NAIVE_BASE]);
		}
		teardown(&s);
	}
	free(hot);
	free(cold);
	return 0;
}
