/* SPDX-License-Identifier: MIT */
/*
 * Page-table builder: map and read back every mode and page size, exact entry
 * encodings, root values, splits and replacements, unmap, protect, rejected
 * input, allocator failure at every step, and random operation sequences
 * checked against a reference model.
 */
#include "ptbuild_helpers.h"

#define KiB4 VMMU_PT_SIZE_4K
#define MiB2 VMMU_PT_SIZE_2M
#define MiB4 VMMU_PT_SIZE_4M
#define GiB1 VMMU_PT_SIZE_1G

static const enum vmmu_paging_mode all_modes[] = {
	VMMU_PAGING_32BIT, VMMU_PAGING_PAE, VMMU_PAGING_4LEVEL, VMMU_PAGING_5LEVEL, VMMU_PAGING_EPT4, VMMU_PAGING_EPT5,
};

static bool is_ept(enum vmmu_paging_mode m)
{
	return m == VMMU_PAGING_EPT4 || m == VMMU_PAGING_EPT5;
}

/* A protection with several bits set, valid in mode @m. */
static uint32_t rich_prot(enum vmmu_paging_mode m)
{
	if (is_ept(m))
		return VMMU_PT_READ | VMMU_PT_EXEC | VMMU_PT_IPAT | VMMU_PT_MT_WB;
	if (m == VMMU_PAGING_32BIT)
		return VMMU_PT_WRITE | VMMU_PT_USER | VMMU_PT_GLOBAL | VMMU_PT_PAT | VMMU_PT_PCD;
	if (m == VMMU_PAGING_PAE)
		return VMMU_PT_WRITE | VMMU_PT_NX | VMMU_PT_PWT | VMMU_PT_PAT;
	return VMMU_PT_USER | VMMU_PT_NX | VMMU_PT_GLOBAL | VMMU_PT_PAT | VMMU_PT_PKEY(11);
}

/* An input address that uses every index level of the mode (upper half for 4-/5-level). */
static vmmu_gva_t high_gva(enum vmmu_paging_mode m)
{
	switch (m) {
	case VMMU_PAGING_32BIT: case VMMU_PAGING_PAE: return 0xc0000000ULL;
	case VMMU_PAGING_4LEVEL: return 0xffffff8040000000ULL;
	case VMMU_PAGING_5LEVEL: return 0xff7fff8040000000ULL;
	case VMMU_PAGING_EPT4: return 0x0000ff8040000000ULL;
	default: return 0x00ff7f8040000000ULL;
	}
}

static void test_map_lookup_every_mode_and_size(void **state)
{
	(void)state;
	for (size_t mi = 0; mi < ARRAY_SIZE(all_modes); mi++) {
		enum vmmu_paging_mode m = all_modes[mi];

		for (int level = 1; level <= model_top_leaf(m); level++) {
			struct pool *p = pool_create();
			struct vmmu_ptbuild *b = builder_create(p, m, 0);
			uint64_t size = model_size(m, level);
			unsigned int n = level == 1 ? 1030 : 3; /* 4 KiB: crosses two page tables */
			vmmu_gva_t gva = high_gva(m);
			vmmu_gpa_t gpa = (m == VMMU_PAGING_32BIT && level == 1) ? 0x12345000ULL : 0x3f80000000ULL;
			uint32_t prot = rich_prot(m);
			struct vmmu_ptbuild_entry e;

			if (m == VMMU_PAGING_32BIT && level == 2)
				gpa = 0xab00400000ULL; /* PSE-36: above 4 GiB */
			if (m == VMMU_PAGING_32BIT && level == 2)
				gva = 0x40000000;
			assert_int_equal(vmmu_ptbuild_map(b, gva, gpa, n * size, size, prot), 0);
			for (unsigned int i = 0; i < n; i++) {
				for (uint64_t off = 0; off < size; off += size / 4 + 0x123) {
					assert_int_equal(vmmu_ptbuild_lookup(b, gva + i * size + off, &e), 0);
					assert_int_equal(e.level, level);
					assert_int_equal(e.levels, mode_levels(m));
					assert_int_equal(e.page_size, size);
					assert_int_equal(e.gpa, gpa + i * size + off);
					assert_int_equal(e.prot, prot);
				}
			}
			/* just outside the range */
			assert_int_equal(vmmu_ptbuild_lookup(b, gva - 1, &e), -ENOENT);
			assert_int_equal(vmmu_ptbuild_lookup(b, gva + n * size, &e), -ENOENT);
			vmmu_ptbuild_destroy(b, true);
			assert_int_equal(p->in_use, 0);
			pool_destroy(p);
		}
	}
}

/* Exact entries, written out from the SDM's bit layouts. */
static void test_entry_encodings(void **state)
{
	struct log_capture log;
	struct vmmu_ptbuild_entry e;
	struct pool *p;
	struct vmmu_ptbuild *b;

	(void)state;
	/* 4-level 4 KiB: W U PWT PCD G PAT(bit 7) pkey 5 NX; tables P|W|U */
	p = pool_create();
	b = builder_create(p, VMMU_PAGING_4LEVEL, 0);
	assert_int_equal(vmmu_ptbuild_map(b, 0x7000, 0xabcd000, KiB4, KiB4,
					  VMMU_PT_WRITE | VMMU_PT_USER | VMMU_PT_PWT | VMMU_PT_PCD | VMMU_PT_GLOBAL |
						  VMMU_PT_PAT | VMMU_PT_PKEY(5) | VMMU_PT_NX), 0);
	assert_int_equal(vmmu_ptbuild_lookup(b, 0x7000, &e), 0);
	assert_int_equal(e.entries[0], 0xabcd000ULL | 0x1 | 0x2 | 0x4 | 0x8 | 0x10 | 0x80 | 0x100 | (5ULL << 59) |
					       (1ULL << 63));
	assert_int_equal(e.entry_gpa[3], vmmu_ptbuild_root(b));
	for (int l = 4; l >= 2; l--) {
		assert_int_equal(e.entries[l - 1] & 0xfff, 0x7);
		assert_int_equal(e.entries[l - 1] >> 52, 0);
	}
	assert_int_equal(e.entry_gpa[0], (e.entries[1] & ~0xfffULL) + 7 * 8);
	/* 2 MiB: PS, PAT at bit 12; 1 GiB likewise */
	assert_int_equal(vmmu_ptbuild_map(b, 0x40000000, 0x80200000, MiB2, MiB2, VMMU_PT_PAT), 0);
	assert_int_equal(vmmu_ptbuild_lookup(b, 0x40000000, &e), 0);
	assert_int_equal(e.entries[1], 0x80200000ULL | 0x1 | 0x80 | 0x1000);
	assert_int_equal(vmmu_ptbuild_map(b, 0x80000000, 0x1c0000000ULL, GiB1, GiB1, VMMU_PT_WRITE), 0);
	assert_int_equal(vmmu_ptbuild_lookup(b, 0x80000000, &e), 0);
	assert_int_equal(e.entries[2], 0x1c0000000ULL | 0x1 | 0x2 | 0x80);
	/* raw extra bits are ORed in */
	assert_int_equal(vmmu_ptbuild_map_raw(b, 0x9000, 0x5000, KiB4, KiB4, 0, (1ULL << 51) | 0x60 | (1ULL << 52)), 0);
	assert_int_equal(vmmu_ptbuild_lookup(b, 0x9000, &e), 0);
	assert_int_equal(e.entries[0], 0x5000ULL | 0x1 | 0x60 | (1ULL << 51) | (1ULL << 52));
	vmmu_ptbuild_destroy(b, true);
	assert_int_equal(p->in_use, 0);

	/* 32-bit: 4-byte entries; 4 MiB PDE with PSE-36 bits 20:13 and PAT at 12 */
	b = builder_create(p, VMMU_PAGING_32BIT, 0);
	assert_int_equal(vmmu_ptbuild_map(b, 0x00c00000, 0x3500c00000ULL, MiB4, MiB4, VMMU_PT_WRITE | VMMU_PT_PAT), 0);
	assert_int_equal(vmmu_ptbuild_lookup(b, 0x00c01234, &e), 0);
	assert_int_equal(e.entries[1], 0x00c00000ULL | (0x35ULL << 13) | 0x1000 | 0x80 | 0x2 | 0x1);
	assert_int_equal(e.entry_gpa[1], vmmu_ptbuild_root(b) + 3 * 4);
	assert_int_equal(e.gpa, 0x3500c01234ULL);
	/* a 4 KiB PTE cannot reach past 4 GiB: that 4 MiB page cannot be split, so nothing changes */
	log_capture_start(&log);
	assert_int_equal(vmmu_ptbuild_unmap(b, 0x00c00000, KiB4), -EINVAL);
	assert_int_equal(vmmu_ptbuild_map(b, 0x00c01000, 0x1000, KiB4, KiB4, 0), -EINVAL);
	assert_int_equal(log.lines, 2);
	log_capture_stop();
	assert_int_equal(vmmu_ptbuild_lookup(b, 0x00c01234, &e), 0);
	assert_int_equal(e.gpa, 0x3500c01234ULL);
	assert_int_equal(e.level, 2);
	assert_int_equal(vmmu_ptbuild_map(b, 0xfffff000, 0xfffff000, KiB4, KiB4, VMMU_PT_USER), 0);
	assert_int_equal(vmmu_ptbuild_lookup(b, 0xfffff000, &e), 0);
	assert_int_equal(e.entries[0], 0xfffff000ULL | 0x5);
	assert_int_equal(e.entries[1] & 0xfff, 0x7);
	assert_int_equal(e.entry_gpa[1], vmmu_ptbuild_root(b) + 1023 * 4);
	assert_int_equal(e.entry_gpa[0], (e.entries[1] & ~0xfffULL) + 1023 * 4);
	vmmu_ptbuild_destroy(b, true);

	/* PAE: PDPTE holds only P and the address */
	b = builder_create(p, VMMU_PAGING_PAE, 0);
	assert_int_equal(vmmu_ptbuild_map(b, 0xc0200000, 0x7fe00000, MiB2, MiB2, VMMU_PT_NX), 0);
	assert_int_equal(vmmu_ptbuild_lookup(b, 0xc0200000, &e), 0);
	assert_int_equal(e.entries[2] & 0xfff, 0x1);
	assert_int_equal(e.entries[2] >> 52, 0);
	assert_int_equal(e.entry_gpa[2], vmmu_ptbuild_root(b) + 3 * 8);
	assert_int_equal(e.entries[1], 0x7fe00000ULL | 0x81 | (1ULL << 63));
	vmmu_ptbuild_destroy(b, true);

	/* EPT: R W X in 2:0, memory type 5:3, IPAT 6, PS 7; tables RWX */
	b = builder_create(p, VMMU_PAGING_EPT4, 0);
	assert_int_equal(vmmu_ptbuild_map(b, 0x200000, 0x600000, MiB2, MiB2,
					  VMMU_PT_READ | VMMU_PT_EXEC | VMMU_PT_IPAT | VMMU_PT_MT_WB), 0);
	assert_int_equal(vmmu_ptbuild_lookup(b, 0x200000, &e), 0);
	assert_int_equal(e.entries[1], 0x600000ULL | 0x1 | 0x4 | (6 << 3) | 0x40 | 0x80);
	assert_int_equal(e.entries[2] & 0xfff, 0x7);
	assert_int_equal(vmmu_ptbuild_map(b, 0x1000, 0x2000, KiB4, KiB4, VMMU_PT_WRITE | VMMU_PT_MT(0)), 0);
	assert_int_equal(vmmu_ptbuild_lookup(b, 0x1000, &e), 0);
	assert_int_equal(e.entries[0], 0x2000ULL | 0x2); /* W only: a misconfiguration, written as asked */
	vmmu_ptbuild_destroy(b, true);
	assert_int_equal(p->in_use, 0);
	pool_destroy(p);
}

static void test_root_values(void **state)
{
	struct pool *p = pool_create();
	struct vmmu_ptbuild *b;
	uint64_t pdptes[4], r;
	struct vmmu_ptbuild_entry e;

	(void)state;
	b = builder_create(p, VMMU_PAGING_EPT4, 0);
	r = vmmu_ptbuild_root(b);
	assert_int_equal(r & 0xfff, (3 << 3) | 6);
	assert_true((r & ~0xfffULL) >= POOL_GPA);
	vmmu_ptbuild_destroy(b, true);
	b = builder_create(p, VMMU_PAGING_EPT5, VMMU_PTBUILD_F_EPT_AD);
	assert_int_equal(vmmu_ptbuild_root(b) & 0xfff, (4 << 3) | 6 | 0x40);
	vmmu_ptbuild_destroy(b, true);
	b = builder_create(p, VMMU_PAGING_5LEVEL, 0);
	assert_int_equal(vmmu_ptbuild_root(b) & 0xfff, 0);
	vmmu_set_log(NULL, VMMU_LOG_ERROR, NULL);
	assert_int_equal(vmmu_ptbuild_pdptes(b, pdptes), -EINVAL);
	log_capture_stop();
	vmmu_ptbuild_destroy(b, true);
	assert_int_equal(vmmu_ptbuild_root(NULL), 0);

	/* PAE: the PDPTEs are what the PDPT holds */
	b = builder_create(p, VMMU_PAGING_PAE, 0);
	assert_int_equal(vmmu_ptbuild_root(b) & 31, 0);
	assert_true(vmmu_ptbuild_root(b) < (1ULL << 32));
	assert_int_equal(vmmu_ptbuild_pdptes(b, pdptes), 0);
	for (int i = 0; i < 4; i++)
		assert_int_equal(pdptes[i], 0);
	assert_int_equal(vmmu_ptbuild_map(b, 0x80000000, 0x1000, KiB4, KiB4, 0), 0);
	assert_int_equal(vmmu_ptbuild_pdptes(b, pdptes), 0);
	assert_int_equal(vmmu_ptbuild_lookup(b, 0x80000000, &e), 0);
	assert_int_equal(pdptes[2], e.entries[2]);
	assert_int_equal(pdptes[2] & 0xfff, 1);
	assert_int_equal(pdptes[0] | pdptes[1] | pdptes[3], 0);
	vmmu_ptbuild_destroy(b, true);
	assert_int_equal(p->in_use, 0);
	pool_destroy(p);
}

/* A root the caller gives: used as it is, never freed by the builder. */
static void test_given_root(void **state)
{
	struct pool *p = pool_create();
	struct vmmu_ptbuild_config cfg = { .mode = VMMU_PAGING_PAE, .maxphyaddr = 40, .flags = VMMU_PTBUILD_F_ROOT,
					   .root = POOL_GPA + 0x20 * 4096 + 0x40, .alloc = pool_alloc,
					   .free = pool_free, .opaque = p };
	struct vmmu_ptbuild *b;
	struct vmmu_ptbuild_entry e;

	(void)state;
	p->next = 0x40; /* the allocator hands out pages above the caller's */
	memset(p->hva + 0x20 * 4096, 0, 4096);
	assert_int_equal(vmmu_ptbuild_create(&b, p->mem, &cfg), 0);
	assert_int_equal(vmmu_ptbuild_root(b), cfg.root);
	assert_int_equal(p->allocs, 0);
	assert_int_equal(vmmu_ptbuild_map(b, 0x0, 0x0, 4 * MiB2, MiB2, VMMU_PT_WRITE), 0);
	assert_int_equal(vmmu_ptbuild_map(b, 0x40001000, 0x0, 2 * KiB4, KiB4, VMMU_PT_WRITE), 0);
	assert_int_equal(p->in_use, 3); /* two PDs and one PT */
	assert_int_equal(vmmu_ptbuild_lookup(b, 0x40001000, &e), 0);
	assert_int_equal(e.entry_gpa[2], cfg.root + 8);
	vmmu_ptbuild_destroy(b, true);
	assert_int_equal(p->in_use, 0);
	pool_destroy(p);
}

static void check_page(struct vmmu_ptbuild *b, vmmu_gva_t gva, int ret, int level, vmmu_gpa_t gpa, uint32_t prot)
{
	struct vmmu_ptbuild_entry e;

	assert_int_equal(vmmu_ptbuild_lookup(b, gva, &e), ret);
	if (ret)
		return;
	assert_int_equal(e.level, level);
	assert_int_equal(e.gpa, gpa);
	assert_int_equal(e.prot, prot);
}

static void test_overlap_split_replace(void **state)
{
	struct pool *p = pool_create();
	struct vmmu_ptbuild *b = builder_create(p, VMMU_PAGING_4LEVEL, 0);
	const uint32_t w = VMMU_PT_WRITE, u = VMMU_PT_USER;
	struct vmmu_ptbuild_entry e;
	unsigned int before;

	(void)state;
	/* 1 GiB page with A/D preset; a 4 KiB page inside splits it into 2 MiB and then 4 KiB pages */
	assert_int_equal(vmmu_ptbuild_map_raw(b, 0x40000000, 0x80000000, GiB1, GiB1, w | VMMU_PT_PAT, 0x60), 0);
	before = p->in_use;
	assert_int_equal(vmmu_ptbuild_map(b, 0x40403000, 0x7000, KiB4, KiB4, u), 0);
	assert_int_equal(p->in_use, before + 2);
	check_page(b, 0x40403000, 0, 1, 0x7000, u);
	check_page(b, 0x40402000, 0, 1, 0x80402000, w | VMMU_PT_PAT);
	check_page(b, 0x405ff000, 0, 1, 0x805ff000, w | VMMU_PT_PAT);
	check_page(b, 0x40400000 - 1, 0, 2, 0x80400000 - 1, w | VMMU_PT_PAT);
	check_page(b, 0x40600000, 0, 2, 0x80600000, w | VMMU_PT_PAT);
	check_page(b, 0x7fffffff, 0, 2, 0xbfffffff, w | VMMU_PT_PAT);
	/* the split pieces keep A/D and move PAT from bit 12 to bit 7 */
	assert_int_equal(vmmu_ptbuild_lookup(b, 0x40402000, &e), 0);
	assert_int_equal(e.entries[0], 0x80402000ULL | 0x1 | 0x2 | 0x60 | 0x80);
	assert_int_equal(vmmu_ptbuild_lookup(b, 0x40600000, &e), 0);
	assert_int_equal(e.entries[1], 0x80600000ULL | 0x1 | 0x2 | 0x60 | 0x80 | 0x1000);
	/* a 2 MiB page over the 4 KiB ones replaces the page table, which is freed */
	assert_int_equal(vmmu_ptbuild_map(b, 0x40400000, 0x1000000, MiB2, MiB2, u), 0);
	assert_int_equal(p->in_use, before + 1);
	check_page(b, 0x40403000, 0, 2, 0x1003000, u);
	/* a 1 GiB page over all of it frees the page directory too */
	assert_int_equal(vmmu_ptbuild_map(b, 0x40000000, 0xc0000000, GiB1, GiB1, 0), 0);
	assert_int_equal(p->in_use, before);
	check_page(b, 0x40403000, 0, 3, 0xc0403000, 0);
	/* remapping the same size in place just rewrites */
	assert_int_equal(vmmu_ptbuild_map(b, 0x40000000, 0x0, GiB1, GiB1, w), 0);
	assert_int_equal(p->in_use, before);
	check_page(b, 0x40000000, 0, 3, 0x0, w);
	vmmu_ptbuild_destroy(b, true);
	assert_int_equal(p->in_use, 0);
	pool_destroy(p);
}

static void test_unmap(void **state)
{
	struct pool *p = pool_create();
	struct vmmu_ptbuild *b = builder_create(p, VMMU_PAGING_5LEVEL, 0);
	const uint32_t w = VMMU_PT_WRITE;
	unsigned int before;

	(void)state;
	assert_int_equal(vmmu_ptbuild_map(b, 0x200000, 0x400000, 2 * MiB2, MiB2, w), 0);
	assert_int_equal(vmmu_ptbuild_map(b, 0x1000000, 0x5000, 4 * KiB4, KiB4, w), 0);
	before = p->in_use;
	/* a hole-spanning unmap: the tail of the first 2 MiB page, the second, and a gap */
	assert_int_equal(vmmu_ptbuild_unmap(b, 0x3ff000, 0x1000 + MiB2 + 0x800000), 0);
	assert_int_equal(p->in_use, before + 1); /* one split */
	check_page(b, 0x3fe000, 0, 1, 0x5fe000, w);
	check_page(b, 0x200000, 0, 1, 0x400000, w);
	check_page(b, 0x3ff000, -ENOENT, 0, 0, 0);
	check_page(b, 0x400000, -ENOENT, 0, 0, 0);
	check_page(b, 0x1000000, 0, 1, 0x5000, w);
	/* the 4 KiB pages, one at a time, then unmapping nothing */
	assert_int_equal(vmmu_ptbuild_unmap(b, 0x1001000, KiB4), 0);
	check_page(b, 0x1000000, 0, 1, 0x5000, w);
	check_page(b, 0x1001000, -ENOENT, 0, 0, 0);
	check_page(b, 0x1002000, 0, 1, 0x7000, w);
	assert_int_equal(vmmu_ptbuild_unmap(b, 0xff00000000000000ULL, 1ULL << 56), 0);
	assert_int_equal(vmmu_ptbuild_unmap(b, 0, 1ULL << 56), 0);
	check_page(b, 0x1002000, -ENOENT, 0, 0, 0);
	check_page(b, 0x200000, -ENOENT, 0, 0, 0);
	/* emptied tables stay until destroy */
	assert_int_equal(p->in_use, before + 1);
	vmmu_ptbuild_destroy(b, true);
	assert_int_equal(p->in_use, 0);
	pool_destroy(p);
}

static void test_protect(void **state)
{
	struct pool *p = pool_create();
	struct vmmu_ptbuild *b = builder_create(p, VMMU_PAGING_EPT4, 0);
	const uint32_t rwx = VMMU_PT_EPT_RWX, ro = VMMU_PT_READ | VMMU_PT_MT_WB;
	struct vmmu_ptbuild_entry e;

	(void)state;
	/* A/D (bits 8/9) and a software bit preset */
	assert_int_equal(vmmu_ptbuild_map_raw(b, 0, 0x40000000, GiB1, GiB1, rwx, 0x300 | (1ULL << 60)), 0);
	/* protect 8 KiB in the middle: 1 GiB -> 2 MiB -> 4 KiB */
	assert_int_equal(vmmu_ptbuild_protect(b, 0x201000, 2 * KiB4, ro), 0);
	check_page(b, 0x200000, 0, 1, 0x40200000, rwx);
	check_page(b, 0x201000, 0, 1, 0x40201000, ro);
	check_page(b, 0x202000, 0, 1, 0x40202000, ro);
	check_page(b, 0x203000, 0, 1, 0x40203000, rwx);
	check_page(b, 0x400000, 0, 2, 0x40400000, rwx);
	assert_int_equal(vmmu_ptbuild_lookup(b, 0x201000, &e), 0);
	assert_int_equal(e.entries[0], 0x40201000ULL | 0x1 | (6 << 3) | 0x300); /* A/D stay, bit 60 goes */
	assert_int_equal(vmmu_ptbuild_lookup(b, 0x203000, &e), 0);
	assert_int_equal(e.entries[0], 0x40203000ULL | 0x7 | (6 << 3) | 0x300 | (1ULL << 60)); /* untouched */
	/* whole huge pages are reprotected in place, holes skipped */
	assert_int_equal(vmmu_ptbuild_protect(b, 0x400000, 1ULL << 40, VMMU_PT_EXEC), 0);
	check_page(b, 0x400000, 0, 2, 0x40400000, VMMU_PT_EXEC);
	check_page(b, 0x3fe00000, 0, 2, 0x7fe00000, VMMU_PT_EXEC);
	check_page(b, 0x40000000, -ENOENT, 0, 0, 0);
	vmmu_ptbuild_destroy(b, true);
	assert_int_equal(p->in_use, 0);
	pool_destroy(p);
}

static struct vmmu_ptbuild_config base_cfg(struct pool *p)
{
	return (struct vmmu_ptbuild_config){ .mode = VMMU_PAGING_4LEVEL, .maxphyaddr = 40, .alloc = pool_alloc,
					     .free = pool_free, .opaque = p };
}

static int bad_alloc_outside(void *opaque, vmmu_gpa_t *gpa)
{
	(void)opaque;
	*gpa = 0x10000000000ULL;
	return 0;
}

static int bad_alloc_unaligned(void *opaque, vmmu_gpa_t *gpa)
{
	(void)opaque;
	*gpa = POOL_GPA + 0x800;
	return 0;
}

static vmmu_gpa_t last_freed;

static void record_free(void *opaque, vmmu_gpa_t gpa)
{
	(void)opaque;
	last_freed = gpa;
}

static void test_rejects_create(void **state)
{
	struct pool *p = pool_create();
	struct vmmu_ptbuild_config cfg;
	struct vmmu_ptbuild *b = NULL;
	struct log_capture log;
	int expect_lines = 0;

	(void)state;
	log_capture_start(&log);
#define REJECT(field_change, err)                                                                   \
	do {                                                                                         \
		cfg = base_cfg(p);                                                                   \
		field_change;                                                                        \
		assert_int_equal(vmmu_ptbuild_create(&b, p->mem, &cfg), err);                        \
		assert_int_equal(log.lines, ++expect_lines);                                         \
		assert_null(b);                                                                      \
	} while (0)
	REJECT(cfg.alloc = NULL, -EINVAL);
	REJECT(cfg.mode = VMMU_PAGING_OFF, -EINVAL);
	REJECT(cfg.mode = (enum vmmu_paging_mode)42, -EINVAL);
	REJECT(cfg.maxphyaddr = 31, -EINVAL);
	REJECT(cfg.maxphyaddr = 53, -EINVAL);
	REJECT(cfg.flags = 0x80, -EINVAL);
	REJECT(cfg.flags = VMMU_PTBUILD_F_EPT_AD, -EINVAL);
	REJECT((cfg.flags = VMMU_PTBUILD_F_NPT, cfg.mode = VMMU_PAGING_EPT4), -EINVAL);
	REJECT((cfg.flags = VMMU_PTBUILD_F_NPT, cfg.mode = VMMU_PAGING_PAE), -EINVAL);
	REJECT(cfg.reserved[3] = 1, -EINVAL);
	REJECT((cfg.flags = VMMU_PTBUILD_F_ROOT, cfg.root = POOL_GPA + 0x20), -EINVAL);
	REJECT((cfg.flags = VMMU_PTBUILD_F_ROOT, cfg.root = 1ULL << 40), -EINVAL);
	REJECT((cfg.flags = VMMU_PTBUILD_F_ROOT, cfg.mode = VMMU_PAGING_PAE, cfg.root = POOL_GPA + 0x10), -EINVAL);
	REJECT((cfg.flags = VMMU_PTBUILD_F_ROOT, cfg.mode = VMMU_PAGING_PAE, cfg.root = 1ULL << 32), -EINVAL);
	REJECT((cfg.flags = VMMU_PTBUILD_F_ROOT, cfg.root = 0x1000), -EFAULT);
	/* pages the allocator got wrong go back through the free callback */
	REJECT((cfg.alloc = bad_alloc_outside, cfg.free = record_free), -EFAULT);
	assert_int_equal(last_freed, 0x10000000000ULL);
	REJECT((cfg.alloc = bad_alloc_unaligned, cfg.free = record_free), -EFAULT);
	assert_int_equal(last_freed, POOL_GPA + 0x800);
	p->fail_after = 0;
	REJECT((void)0, -ENOMEM);
	p->fail_after = -1;
	cfg = base_cfg(p);
	assert_int_equal(vmmu_ptbuild_create(NULL, p->mem, &cfg), -EINVAL);
	assert_int_equal(vmmu_ptbuild_create(&b, NULL, &cfg), -EINVAL);
	assert_int_equal(vmmu_ptbuild_create(&b, p->mem, NULL), -EINVAL);
	assert_int_equal(log.lines, expect_lines + 3);
#undef REJECT
	log_capture_stop();
	assert_int_equal(p->in_use, 0);
	vmmu_ptbuild_destroy(NULL, true);
	pool_destroy(p);
}

/* Every rejected call logs a line and changes nothing (the tables' bytes are compared). */
static void test_rejects_calls(void **state)
{
	struct pool *p = pool_create();
	struct vmmu_ptbuild *b4 = builder_create(p, VMMU_PAGING_4LEVEL, 0);
	struct vmmu_ptbuild *b32 = builder_create(p, VMMU_PAGING_32BIT, 0);
	struct vmmu_ptbuild *bpae = builder_create(p, VMMU_PAGING_PAE, 0);
	struct vmmu_ptbuild *bept = builder_create(p, VMMU_PAGING_EPT4, 0);
	struct vmmu_ptbuild *bnpt = builder_create(p, VMMU_PAGING_4LEVEL, VMMU_PTBUILD_F_NPT);
	struct vmmu_ptbuild_entry e;
	struct log_capture log;
	uint8_t *snapshot = malloc((size_t)POOL_PAGES * 4096);
	uint64_t pd[4];
	unsigned int allocs;
	int n = 0;

	(void)state;
	assert_non_null(snapshot);
	assert_int_equal(vmmu_ptbuild_map(b4, 0x200000, 0x200000, MiB2, MiB2, 0), 0);
	memcpy(snapshot, p->hva, (size_t)POOL_PAGES * 4096);
	allocs = p->allocs;
	log_capture_start(&log);
#define REJECT(call)                                          \
	do {                                                   \
		assert_int_equal((call), -EINVAL);             \
		assert_int_equal(log.lines, ++n);              \
	} while (0)
	/* alignment and size */
	REJECT(vmmu_ptbuild_map(b4, 0x1800, 0x2000, KiB4, KiB4, 0));
	REJECT(vmmu_ptbuild_map(b4, 0x1000, 0x2800, KiB4, KiB4, 0));
	REJECT(vmmu_ptbuild_map(b4, 0x1000, 0x2000, 0x800, KiB4, 0));
	REJECT(vmmu_ptbuild_map(b4, 0x1000, 0x2000, 0, KiB4, 0));
	REJECT(vmmu_ptbuild_map(b4, 0x201000, 0x200000, MiB2, MiB2, 0));
	REJECT(vmmu_ptbuild_map(b4, 0x200000, 0x201000, MiB2, MiB2, 0));
	REJECT(vmmu_ptbuild_unmap(b4, 0x200800, KiB4));
	REJECT(vmmu_ptbuild_protect(b4, 0x200000, 0x10, 0));
	/* page size for the mode */
	REJECT(vmmu_ptbuild_map(b4, 0, 0, MiB4, MiB4, 0));
	REJECT(vmmu_ptbuild_map(b4, 0, 0, 0x8000, 0x8000, 0));
	REJECT(vmmu_ptbuild_map(b32, 0, 0, MiB2, MiB2, 0));
	REJECT(vmmu_ptbuild_map(b32, 0, 0, GiB1, GiB1, 0));
	REJECT(vmmu_ptbuild_map(bpae, 0, 0, GiB1, GiB1, 0));
	REJECT(vmmu_ptbuild_map(bpae, 0, 0, MiB4, MiB4, 0));
	/* input address range */
	REJECT(vmmu_ptbuild_map(b4, 0x0000800000000000ULL, 0, KiB4, KiB4, 0)); /* non-canonical */
	REJECT(vmmu_ptbuild_map(b4, 0x00007ffffffff000ULL, 0, 2 * KiB4, KiB4, 0)); /* runs into the hole */
	REJECT(vmmu_ptbuild_map(b4, 0xfffffffffffff000ULL, 0, 2 * KiB4, KiB4, 0)); /* wraps */
	REJECT(vmmu_ptbuild_unmap(b4, 0xffff7ffffffff000ULL, KiB4));
	REJECT(vmmu_ptbuild_map(b32, 0xfffff000, 0, 2 * KiB4, KiB4, 0));
	REJECT(vmmu_ptbuild_map(bpae, 0x100000000ULL, 0, KiB4, KiB4, 0));
	REJECT(vmmu_ptbuild_map(bept, 1ULL << 48, 0, KiB4, KiB4, VMMU_PT_READ));
	REJECT(vmmu_ptbuild_map(bnpt, (1ULL << 48) - KiB4, 0, 2 * KiB4, KiB4, VMMU_PT_USER)); /* NPT: GPA < 2^48 */
	REJECT(vmmu_ptbuild_map(bnpt, 0xffffffffc0000000ULL, 0, KiB4, KiB4, VMMU_PT_USER));
	REJECT(vmmu_ptbuild_lookup(b4, 0x0000800000000000ULL, &e));
	/* output address range: MAXPHYADDR 46; 32-bit PTEs reach 4 GiB, 4 MiB pages 40 bits */
	REJECT(vmmu_ptbuild_map(b4, 0, 1ULL << 46, KiB4, KiB4, 0));
	REJECT(vmmu_ptbuild_map(b4, 0, (1ULL << 46) - KiB4, 2 * KiB4, KiB4, 0));
	REJECT(vmmu_ptbuild_map(b32, 0, 1ULL << 32, KiB4, KiB4, 0));
	REJECT(vmmu_ptbuild_map(b32, 0, 1ULL << 40, MiB4, MiB4, 0));
	/* protection flags the format lacks */
	REJECT(vmmu_ptbuild_map(b4, 0, 0, KiB4, KiB4, VMMU_PT_READ));
	REJECT(vmmu_ptbuild_map(b4, 0, 0, KiB4, KiB4, VMMU_PT_MT_WB));
	REJECT(vmmu_ptbuild_map(b32, 0, 0, KiB4, KiB4, VMMU_PT_NX));
	REJECT(vmmu_ptbuild_map(bpae, 0, 0, KiB4, KiB4, VMMU_PT_PKEY(1)));
	REJECT(vmmu_ptbuild_map(bept, 0, 0, KiB4, KiB4, VMMU_PT_USER | VMMU_PT_READ));
	REJECT(vmmu_ptbuild_map(bept, 0, 0, KiB4, KiB4, VMMU_PT_MT_WB)); /* not present */
	REJECT(vmmu_ptbuild_protect(bept, 0, KiB4, 0));
	REJECT(vmmu_ptbuild_map(b4, 0, 0, KiB4, KiB4, 1u << 30));
	REJECT(vmmu_ptbuild_map_raw(b32, 0, 0, KiB4, KiB4, 0, 1ULL << 32));
	REJECT(vmmu_ptbuild_pdptes(b4, pd));
	/* NULL arguments */
	REJECT(vmmu_ptbuild_map(NULL, 0, 0, KiB4, KiB4, 0));
	REJECT(vmmu_ptbuild_unmap(NULL, 0, KiB4));
	REJECT(vmmu_ptbuild_protect(NULL, 0, KiB4, 0));
	REJECT(vmmu_ptbuild_lookup(NULL, 0, &e));
	REJECT(vmmu_ptbuild_lookup(b4, 0, NULL));
	REJECT(vmmu_ptbuild_pdptes(NULL, pd));
#undef REJECT
	log_capture_stop();
	assert_int_equal(p->allocs, allocs);
	assert_memory_equal(snapshot, p->hva, (size_t)POOL_PAGES * 4096);
	/* an NPT takes any GPA below 2^48, canonical or not */
	assert_int_equal(vmmu_ptbuild_map(bnpt, 0x0000800000000000ULL, 0x1000, KiB4, KiB4, VMMU_PT_USER), 0);
	assert_int_equal(vmmu_ptbuild_lookup(bnpt, 0x0000800000000123ULL, &e), 0);
	assert_int_equal(e.gpa, 0x1123);
	/* not mapped is not an error */
	assert_int_equal(vmmu_ptbuild_lookup(b4, 0x400000, &e), -ENOENT);
	assert_int_equal(e.level, 2);
	vmmu_ptbuild_destroy(b4, true);
	vmmu_ptbuild_destroy(b32, true);
	vmmu_ptbuild_destroy(bpae, true);
	vmmu_ptbuild_destroy(bept, true);
	vmmu_ptbuild_destroy(bnpt, true);
	assert_int_equal(p->in_use, 0);
	free(snapshot);
	pool_destroy(p);
}

/* A table pointer that leads out of guest memory: -EFAULT, logged, and the pages before it were done. */
static void test_table_outside_memory(void **state)
{
	struct pool *p = pool_create();
	struct vmmu_ptbuild *b = builder_create(p, VMMU_PAGING_4LEVEL, 0);
	struct vmmu_ptbuild_entry e;
	struct log_capture log;
	uint64_t bad = 0x7000000000ULL | 7;

	(void)state;
	assert_int_equal(vmmu_ptbuild_map(b, 0x40000000, 0, KiB4, KiB4, 0), 0);
	/* point the PDPTE for [1 GiB, 2 GiB) somewhere without memory */
	assert_int_equal(vmmu_ptbuild_lookup(b, 0x40000000, &e), 0);
	assert_int_equal(vmmu_memslots_write(p->mem, e.entry_gpa[2], &bad, 8), 0);
	log_capture_start(&log);
	assert_int_equal(vmmu_ptbuild_map(b, 0x3ffff000, 0x1000, 2 * KiB4, KiB4, 0), -EFAULT);
	assert_int_equal(log.lines, 1);
	assert_int_equal(vmmu_ptbuild_lookup(b, 0x40000000, &e), -EFAULT);
	assert_int_equal(log.lines, 2);
	assert_int_equal(vmmu_ptbuild_unmap(b, 0x40000000, KiB4), -EFAULT);
	log_capture_stop();
	check_page(b, 0x3ffff000, 0, 1, 0x1000, 0);
	/* repair, so that destroy does not chase the bad pointer */
	bad = 0;
	assert_int_equal(vmmu_memslots_write(p->mem, e.entry_gpa[2], &bad, 8), 0);
	vmmu_ptbuild_destroy(b, true);
	assert_int_equal(p->in_use, 2); /* the PD and PT orphaned by the overwritten entry */
	pool_destroy(p);
}

/*
 * Allocator failure at each step: run @op on a fresh builder prepared by
 * @setup with the allocator failing after k pages, for every k until it
 * succeeds. Each time the documented partial progress must hold: over @samples
 * (ascending GVAs), a prefix translates as after the op and the rest as
 * before it; the prefix grows with k; finishing the op then gives the full
 * result.
 */
static void check_enomem_steps(enum vmmu_paging_mode m, const struct model_op *setup, size_t nsetup,
			       const struct model_op *op, const vmmu_gva_t *samples, size_t nsamples)
{
	struct model_op all[16];
	size_t prev_prefix = 0;
	bool done = false;

	assert_true(nsetup < ARRAY_SIZE(all));
	if (nsetup)
		memcpy(all, setup, nsetup * sizeof(*setup));
	all[nsetup] = *op;
	for (long k = 0; !done; k++) {
		struct pool *p = pool_create();
		struct vmmu_ptbuild *b = builder_create(p, m, 0);
		size_t prefix = 0;
		int ret;

		for (size_t i = 0; i < nsetup; i++)
			assert_int_equal(model_run(b, m, &setup[i]), 0);
		p->fail_after = k;
		vmmu_set_log(NULL, VMMU_LOG_ERROR, NULL);
		ret = model_run(b, m, op);
		log_capture_stop();
		done = ret == 0;
		if (!done)
			assert_int_equal(ret, -ENOMEM);
		for (size_t s = 0; s < nsamples; s++) {
			struct model_state after = model_eval(m, all, nsetup + 1, samples[s]);
			struct model_state before = model_eval(m, all, nsetup, samples[s]);

			if (prefix == s && lookup_matches(b, m, samples[s], &after, false)) {
				prefix++;
				continue;
			}
			assert_true(lookup_matches(b, m, samples[s], &before, false));
		}
		if (done)
			assert_int_equal(prefix, nsamples);
		assert_true(prefix >= prev_prefix);
		prev_prefix = prefix;
		/* finishing the operation completes it */
		p->fail_after = -1;
		assert_int_equal(model_run(b, m, op), 0);
		for (size_t s = 0; s < nsamples; s++) {
			struct model_state after = model_eval(m, all, nsetup + 1, samples[s]);

			assert_true(lookup_matches(b, m, samples[s], &after, false));
		}
		vmmu_ptbuild_destroy(b, true);
		assert_int_equal(p->in_use, 0);
		pool_destroy(p);
		assert_true(k < 64);
	}
}

static void test_enomem_each_step(void **state)
{
	vmmu_gva_t samples[640];
	size_t n = 0;

	(void)state;
	for (vmmu_gva_t g = 0x3fc00000; g < 0x40c00000; g += 0x7000)
		samples[n++] = g;
	assert_true(n <= ARRAY_SIZE(samples));
	/* map 4 KiB pages across a 1 GiB boundary into an empty tree (PDPT/PD/PT allocations) */
	{
		const struct model_op op = { M_MAP, 0x3fe00000, 0x600000, 0x10000000, 1, VMMU_PT_WRITE };

		check_enomem_steps(VMMU_PAGING_4LEVEL, NULL, 0, &op, samples, n);
		check_enomem_steps(VMMU_PAGING_5LEVEL, NULL, 0, &op, samples, n);
		check_enomem_steps(VMMU_PAGING_EPT4, NULL, 0,
				   &(struct model_op){ M_MAP, 0x3fe00000, 0x600000, 0x10000000, 1, VMMU_PT_READ },
				   samples, n);
	}
	/* 4 KiB pages over 1 GiB and 2 MiB pages: splits */
	{
		const struct model_op setup[] = {
			{ M_MAP, 0x0, GiB1, 0x80000000, 3, VMMU_PT_USER },
			{ M_MAP, 0x40000000, 4 * MiB2, 0x0, 2, VMMU_PT_WRITE },
		};
		const struct model_op op = { M_MAP, 0x3fdff000, 0x403000, 0x5000000, 1, VMMU_PT_NX };

		check_enomem_steps(VMMU_PAGING_4LEVEL, setup, 2, &op, samples, n);
		/* unmap and protect a middle part */
		check_enomem_steps(VMMU_PAGING_4LEVEL, setup, 2,
				   &(struct model_op){ M_UNMAP, 0x3fdff000, 0x403000, 0, 0, 0 }, samples, n);
		check_enomem_steps(VMMU_PAGING_4LEVEL, setup, 2,
				   &(struct model_op){ M_PROTECT, 0x3fdff000, 0x403000, 0, 0, VMMU_PT_GLOBAL }, samples,
				   n);
	}
	/* 32-bit: 4 MiB pages split into 4 KiB, PAE: 2 MiB */
	{
		const struct model_op setup32[] = { { M_MAP, 0x3f800000, 3 * MiB4, 0x0, 2, VMMU_PT_WRITE } };
		const struct model_op setuppae[] = { { M_MAP, 0x3f800000, 6 * MiB2, 0x0, 2, VMMU_PT_WRITE } };
		const struct model_op op = { M_UNMAP, 0x3fdff000, 0x403000, 0, 0, 0 };

		check_enomem_steps(VMMU_PAGING_32BIT, setup32, 1, &op, samples, n);
		check_enomem_steps(VMMU_PAGING_PAE, setuppae, 1, &op, samples, n);
	}
}

/* Random operations in a window, against the model. */
static void random_ops(enum vmmu_paging_mode m, vmmu_gva_t window, uint64_t seed)
{
	struct pool *p = pool_create();
	struct vmmu_ptbuild *b = builder_create(p, m, 0);
	const int top = model_top_leaf(m);
	const uint64_t wsize = 8 * model_size(m, top);
	enum { NOPS = 150, NRAND = 600 };
	static struct model_op ops[NOPS];
	uint64_t rnd = seed;

	for (int i = 0; i < NOPS; i++) {
		struct model_op *o = &ops[i];
		uint64_t r = test_rand64(&rnd);

		/* 32-bit: 4 MiB pages past 4 GiB cannot be split (tested elsewhere) */
		model_random_op(m, window, wsize, m == VMMU_PAGING_32BIT ? 1ULL << 32 : 1ULL << 40, &rnd, o);
		if (is_ept(m))
			o->prot = VMMU_PT_READ | (r & 0x100 ? VMMU_PT_WRITE : 0) | (r & 0x200 ? VMMU_PT_EXEC : 0) |
				  VMMU_PT_MT((r >> 12) & 1 ? 6 : 0);
		else
			o->prot = (r & 0x100 ? VMMU_PT_WRITE : 0) | (r & 0x200 ? VMMU_PT_USER : 0) |
				  (r & 0x400 && m != VMMU_PAGING_32BIT ? VMMU_PT_NX : 0) |
				  (mode_levels(m) >= 4 ? VMMU_PT_PKEY(r >> 20) : 0);
		assert_int_equal(model_run(b, m, o), 0);
		/* the edges of this operation, right away */
		for (int d = -1; d <= 1; d++) {
			vmmu_gva_t edges[2] = { o->gva + (uint64_t)d * 4096, o->gva + o->size + (uint64_t)d * 4096 };

			for (int j = 0; j < 2; j++) {
				struct model_state st;

				if (edges[j] - window >= wsize)
					continue;
				st = model_eval(m, ops, (size_t)i + 1, edges[j]);
				assert_true(lookup_matches(b, m, edges[j], &st, true));
			}
		}
	}
	for (int i = 0; i < NRAND; i++) {
		vmmu_gva_t g = window + test_rand64(&rnd) % wsize;
		struct model_state st = model_eval(m, ops, NOPS, g);

		assert_true(lookup_matches(b, m, g, &st, true));
	}
	vmmu_ptbuild_destroy(b, true);
	assert_int_equal(p->in_use, 0);
	pool_destroy(p);
}

static void test_random_vs_model(void **state)
{
	(void)state;
	random_ops(VMMU_PAGING_32BIT, 0x40000000, 1);
	random_ops(VMMU_PAGING_PAE, 0x40000000, 2);
	random_ops(VMMU_PAGING_4LEVEL, 0xffffff8000000000ULL, 3);
	random_ops(VMMU_PAGING_4LEVEL, 0x7fe00000000ULL, 4);
	random_ops(VMMU_PAGING_5LEVEL, 0xff00000000000000ULL, 5);
	random_ops(VMMU_PAGING_EPT4, 0x3000000000ULL, 6);
	random_ops(VMMU_PAGING_EPT5, 0x1000000000000ULL, 7);
}

/*
 * Tables the builder did not write: a given root whose pages hold random
 * bytes (entries pointing anywhere, loops, PS bits where they are reserved).
 * Every call must return a documented code and touch nothing outside guest
 * memory (ASan and the bounds-checked memslot set would catch it).
 */
static void test_garbage_tables(void **state)
{
	(void)state;
	for (size_t mi = 0; mi < ARRAY_SIZE(all_modes); mi++) {
		enum vmmu_paging_mode m = all_modes[mi];
		struct pool *p = pool_create();
		struct vmmu_ptbuild_config cfg = { .mode = m, .maxphyaddr = 46, .flags = VMMU_PTBUILD_F_ROOT,
						   .root = POOL_GPA, .alloc = pool_alloc, .opaque = p };
		struct vmmu_ptbuild *b;
		uint64_t rnd = 0x9e3779b97f4a7c15ULL + mi;
		const uint64_t window = m == VMMU_PAGING_32BIT || m == VMMU_PAGING_PAE ? 1ULL << 32 : 1ULL << 40;

		/* the first 64 pages: random entries, a fifth of them pointing back into those pages */
		for (size_t i = 0; i < 64 * 4096 / 8; i++) {
			uint64_t v = test_rand64(&rnd);

			if (!(v % 5))
				v = (v & 0xfff) | (POOL_GPA + (v >> 20) % 64 * 4096);
			memcpy(p->hva + i * 8, &v, 8);
		}
		p->next = 64;
		assert_int_equal(vmmu_ptbuild_create(&b, p->mem, &cfg), 0);
		vmmu_set_log(NULL, VMMU_LOG_ERROR, NULL);
		for (int i = 0; i < 400; i++) {
			struct model_op o;
			struct vmmu_ptbuild_entry e;
			int ret;

			model_random_op(m, 0, window, 1ULL << 32, &rnd, &o);
			o.prot = is_ept(m) ? VMMU_PT_READ : VMMU_PT_WRITE;
			ret = model_run(b, m, &o);
			assert_true(ret == 0 || ret == -EFAULT || ret == -ENOMEM || (ret == -EINVAL &&
				    m == VMMU_PAGING_32BIT));
			ret = vmmu_ptbuild_lookup(b, test_rand64(&rnd) % window, &e);
			assert_true(ret == 0 || ret == -ENOENT || ret == -EFAULT);
			if (ret == 0)
				assert_true(e.page_size == model_size(m, e.level));
		}
		log_capture_stop();
		vmmu_ptbuild_destroy(b, false);
		pool_destroy(p);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_map_lookup_every_mode_and_size),
		cmocka_unit_test(test_entry_encodings),
		cmocka_unit_test(test_root_values),
		cmocka_unit_test(test_given_root),
		cmocka_unit_test(test_overlap_split_replace),
		cmocka_unit_test(test_unmap),
		cmocka_unit_test(test_protect),
		cmocka_unit_test(test_rejects_create),
		cmocka_unit_test(test_rejects_calls),
		cmocka_unit_test(test_table_outside_memory),
		cmocka_unit_test(test_enomem_each_step),
		cmocka_unit_test(test_random_vs_model),
		cmocka_unit_test(test_garbage_tables),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
