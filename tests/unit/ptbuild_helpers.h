/* SPDX-License-Identifier: MIT */
/*
 * Shared by the page-table builder tests: guest memory with a table-page pool
 * (an allocator that can be told to fail, and that checks every free), and an
 * independent reference model of what a sequence of map/unmap/protect calls
 * must leave mapped.
 */
#ifndef VMMU_TEST_PTBUILD_HELPERS_H
#define VMMU_TEST_PTBUILD_HELPERS_H

#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "helpers.h"
#include <libvmmu/memslot.h>
#include <libvmmu/ptbuild.h>

#ifndef ARRAY_SIZE
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#endif

#define POOL_GPA   0x100000ULL /* table pages live at [1 MiB, 1 MiB + POOL_PAGES * 4 KiB) */
#define POOL_PAGES 4096u

struct pool {
	struct vmmu_memslots *mem;
	vmmu_gpa_t base;        /* guest physical address of the pool's first page */
	uint8_t *hva;
	unsigned int next;      /* bump index */
	unsigned int stack[POOL_PAGES]; /* freed pages, reused first */
	unsigned int nstack;
	uint8_t used[POOL_PAGES];
	long fail_after;        /* < 0: never fail; else allocations left before failing */
	unsigned int allocs, frees, in_use;
};

static inline int pool_alloc(void *opaque, vmmu_gpa_t *gpa)
{
	struct pool *p = opaque;
	unsigned int i;

	if (p->fail_after == 0)
		return -1;
	if (p->fail_after > 0)
		p->fail_after--;
	if (p->nstack)
		i = p->stack[--p->nstack];
	else if (p->next < POOL_PAGES)
		i = p->next++;
	else
		return -1;
	assert_int_equal(p->used[i], 0);
	p->used[i] = 1;
	/* the builder must zero it: leave garbage behind */
	memset(p->hva + (size_t)i * 4096, 0xa5, 4096);
	p->allocs++;
	p->in_use++;
	*gpa = p->base + (vmmu_gpa_t)i * 4096;
	return 0;
}

static inline void pool_free(void *opaque, vmmu_gpa_t gpa)
{
	struct pool *p = opaque;
	unsigned int i = (unsigned int)((gpa - p->base) / 4096);

	assert_true(gpa >= p->base && i < POOL_PAGES && !(gpa & 4095));
	assert_int_equal(p->used[i], 1); /* no double free, no foreign page */
	p->used[i] = 0;
	p->stack[p->nstack++] = i;
	p->frees++;
	p->in_use--;
}

/* A pool of table pages at guest physical @base, in a memslot set of its own. */
static inline struct pool *pool_create_at(vmmu_gpa_t base)
{
	struct pool *p = calloc(1, sizeof(*p));

	assert_non_null(p);
	p->hva = mmap(NULL, (size_t)POOL_PAGES * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(p->hva != MAP_FAILED);
	assert_int_equal(vmmu_memslots_create(&p->mem), 0);
	assert_int_equal(vmmu_memslots_add(p->mem, 0, base, (uint64_t)POOL_PAGES * 4096, p->hva, 0), 0);
	p->base = base;
	p->fail_after = -1;
	return p;
}

static inline struct pool *pool_create(void)
{
	return pool_create_at(POOL_GPA);
}

static inline void pool_destroy(struct pool *p)
{
	vmmu_memslots_destroy(p->mem);
	munmap(p->hva, (size_t)POOL_PAGES * 4096);
	free(p);
}

static inline struct vmmu_ptbuild *builder_create(struct pool *p, enum vmmu_paging_mode mode, uint32_t flags)
{
	struct vmmu_ptbuild_config cfg = { .mode = mode, .maxphyaddr = 46, .flags = flags, .alloc = pool_alloc,
					   .free = pool_free, .opaque = p };
	struct vmmu_ptbuild *b = NULL;

	assert_int_equal(vmmu_ptbuild_create(&b, p->mem, &cfg), 0);
	return b;
}

/* ---- the reference model ---- */

static inline int mode_levels(enum vmmu_paging_mode m)
{
	switch (m) {
	case VMMU_PAGING_32BIT: return 2;
	case VMMU_PAGING_PAE: return 3;
	case VMMU_PAGING_4LEVEL: case VMMU_PAGING_EPT4: return 4;
	default: return 5;
	}
}

/* Size of a page at @level (1 = 4 KiB). */
static inline uint64_t model_size(enum vmmu_paging_mode m, int level)
{
	return 1ULL << (12 + (m == VMMU_PAGING_32BIT ? 10 : 9) * (level - 1));
}

/* Largest level that can be a leaf. */
static inline int model_top_leaf(enum vmmu_paging_mode m)
{
	return mode_levels(m) >= 4 ? 3 : 2;
}

enum model_kind { M_MAP, M_UNMAP, M_PROTECT };

struct model_op {
	enum model_kind kind;
	vmmu_gva_t gva;
	uint64_t size;
	vmmu_gpa_t gpa;
	int level;     /* M_MAP */
	uint32_t prot;
};

struct model_state {
	bool mapped;
	int level;
	vmmu_gpa_t gpa; /* of the 4 KiB page holding the gva */
	uint32_t prot;
};

static inline bool range_touches(vmmu_gva_t a, uint64_t asize, vmmu_gva_t b, uint64_t bsize)
{
	return a <= b + (bsize - 1) && b <= a + (asize - 1);
}

static inline bool range_covers(vmmu_gva_t a, uint64_t asize, vmmu_gva_t b, uint64_t bsize)
{
	return a <= b && b + (bsize - 1) <= a + (asize - 1);
}

/*
 * What op @o does to the mapping of @gva: written from the documented rules
 * (replace what is covered; split a huge leaf one level at a time while an
 * operation touches only a part of it), independently of the builder's code.
 */
static inline void model_apply(enum vmmu_paging_mode m, struct model_state *st, const struct model_op *o,
			       vmmu_gva_t gva)
{
	vmmu_gva_t page = gva & ~4095ULL;

	if (o->kind == M_MAP) {
		if (range_covers(o->gva, o->size, page, 4096)) {
			*st = (struct model_state){ true, o->level, o->gpa + (page - o->gva), o->prot };
			return;
		}
		if (!st->mapped || st->level <= o->level)
			return;
		for (int l = st->level; l > o->level; l--) {
			uint64_t s = model_size(m, l);

			if (!range_touches(o->gva, o->size, gva & ~(s - 1), s))
				return;
			st->level = l - 1;
		}
		return;
	}
	if (!st->mapped)
		return;
	for (;;) {
		uint64_t s = model_size(m, st->level);
		vmmu_gva_t blk = gva & ~(s - 1);

		if (range_covers(o->gva, o->size, blk, s)) {
			if (o->kind == M_UNMAP)
				st->mapped = false;
			else
				st->prot = o->prot;
			return;
		}
		if (!range_touches(o->gva, o->size, blk, s))
			return;
		st->level--; /* split */
	}
}

static inline struct model_state model_eval(enum vmmu_paging_mode m, const struct model_op *ops, size_t n,
					    vmmu_gva_t gva)
{
	struct model_state st = { 0 };

	for (size_t i = 0; i < n; i++)
		model_apply(m, &st, &ops[i], gva);
	return st;
}

/*
 * A random operation in [@window, @window + @wsize) (prot left to the
 * caller): 60% maps of a random page size mapping below @gpa_limit, 40%
 * unmaps and protects of 4 KiB-granular ranges, short or long.
 */
static inline void model_random_op(enum vmmu_paging_mode m, vmmu_gva_t window, uint64_t wsize, uint64_t gpa_limit,
				   uint64_t *rnd, struct model_op *o)
{
	int kind = (int)(test_rand64(rnd) % 10);

	memset(o, 0, sizeof(*o));
	if (kind < 6) {
		int level = 1 + (int)(test_rand64(rnd) % (uint64_t)model_top_leaf(m));
		uint64_t ps = model_size(m, level);
		uint64_t maxn = level == 1 ? 700 : (level == 2 ? 12 : 3);
		uint64_t npages = 1 + test_rand64(rnd) % maxn;

		if (npages * ps > wsize)
			npages = wsize / ps;
		o->kind = M_MAP;
		o->level = level;
		o->size = npages * ps;
		o->gva = window + (test_rand64(rnd) % (wsize - o->size + ps)) / ps * ps;
		o->gpa = (test_rand64(rnd) % (gpa_limit - o->size + ps)) / ps * ps;
	} else {
		o->kind = kind < 8 ? M_UNMAP : M_PROTECT;
		o->size = (1 + test_rand64(rnd) % (kind & 1 ? 600 : (wsize / 4096 / 3))) * 4096;
		o->gva = window + (test_rand64(rnd) % ((wsize - o->size) / 4096 + 1)) * 4096;
	}
}

/* Run op @o on @b. */
static inline int model_run(struct vmmu_ptbuild *b, enum vmmu_paging_mode m, const struct model_op *o)
{
	switch (o->kind) {
	case M_MAP: return vmmu_ptbuild_map(b, o->gva, o->gpa, o->size, model_size(m, o->level), o->prot);
	case M_UNMAP: return vmmu_ptbuild_unmap(b, o->gva, o->size);
	default: return vmmu_ptbuild_protect(b, o->gva, o->size, o->prot);
	}
}

/*
 * True if the builder's lookup of @gva agrees with @st: the translation and
 * protection, and with @strict the page size as well.
 */
static inline bool lookup_matches(const struct vmmu_ptbuild *b, enum vmmu_paging_mode m, vmmu_gva_t gva,
				  const struct model_state *st, bool strict)
{
	struct vmmu_ptbuild_entry e;
	int ret = vmmu_ptbuild_lookup(b, gva, &e);

	if (!st->mapped)
		return ret == -ENOENT;
	if (strict && (e.level != st->level || e.page_size != model_size(m, st->level)))
		return false;
	return ret == 0 && e.gpa == st->gpa + (gva & 4095) && e.prot == st->prot;
}

#endif
