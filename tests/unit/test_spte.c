/* SPDX-License-Identifier: MIT */
/*
 * SPTE builders and the reserved-bit validator, checked against a reference
 * written from the facts sheet (section 2.1 layout table, 2.3 make_spte order,
 * 1.2 reserved bits). The constants below are typed in from those tables on
 * purpose, not taken from the library's macros.
 */
#include <errno.h>
#include <string.h>

#include "helpers.h"
#include <libvmmu/spte.h>

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))
#define B(n) (1ULL << (n))
#define RANGE(h, l) ((h) < (l) ? 0 : ((~0ULL >> (63 - (h))) & (~0ULL << (l))))

/* Facts sheet 2.1, EPT column. */
#define F_EPT_R B(0)
#define F_EPT_W B(1)
#define F_EPT_X B(2)
#define F_EPT_IPAT B(6)
#define F_EPT_A B(8)
#define F_EPT_D B(9)
#define F_EPT_HOSTW B(57)
#define F_EPT_MMUW B(58)
#define F_EPT_SVE B(63)
#define F_AD_DISABLED (1ULL << 52)
#define F_AD_WRPROT (2ULL << 52)
/* Facts sheet 2.1, non-EPT column. */
#define F_P B(0)
#define F_W B(1)
#define F_U B(2)
#define F_A B(5)
#define F_D B(6)
#define F_HOSTW B(9)
#define F_MMUW B(10)
#define F_NX B(63)
/* Both. */
#define F_PS B(7)
#define F_MMU_PRESENT B(11)

/* A test's own description of a format. */
struct tfmt {
	bool ept, ad, exec_only;
	unsigned int m, levels, max_leaf;
};

static const struct tfmt tfmts[] = {
	{ true, true, false, 46, 4, 3 },  { true, true, true, 46, 4, 3 },   { true, false, false, 46, 4, 3 },
	{ true, false, true, 39, 5, 2 },  { true, true, false, 52, 5, 3 },  { true, true, true, 36, 4, 1 },
	{ false, true, false, 46, 4, 3 }, { false, true, false, 52, 5, 3 }, { false, true, false, 36, 4, 2 },
	{ false, true, false, 51, 5, 3 },
};

static void init_fmt(const struct tfmt *t, struct vmmu_spte_format *f)
{
	struct vmmu_spte_format_opts o = { .size = sizeof(o) };

	o.mode = t->ept ? (t->levels == 5 ? VMMU_PAGING_EPT5 : VMMU_PAGING_EPT4)
			: (t->levels == 5 ? VMMU_PAGING_5LEVEL : VMMU_PAGING_4LEVEL);
	o.maxphyaddr = t->m;
	o.max_leaf_level = t->max_leaf;
	o.ad_disabled = !t->ad;
	o.exec_only = t->exec_only;
	assert_int_equal(vmmu_spte_format_init(f, &o), 0);
}

/* Reference for vmmu_spte_make_leaf(): facts sheet 2.3, written out per format. */
static int ref_leaf(const struct tfmt *t, uint64_t pfn, int level, unsigned int acc, unsigned int mt,
		    unsigned int flags, uint64_t *out)
{
	bool prefetch = flags & VMMU_SPTE_PREFETCH, hostw = flags & VMMU_SPTE_HOST_WRITABLE;
	bool canw = flags & VMMU_SPTE_CAN_WRITE, nxhuge = flags & VMMU_SPTE_NX_HUGE;
	bool x = (acc & VMMU_ACC_EXEC) && !(level > 1 && nxhuge);
	bool w = (acc & VMMU_ACC_WRITE) && hostw && canw;
	uint64_t s = F_MMU_PRESENT | (pfn << 12);

	if (acc > 7 || flags > 63 || level < 1 || level > (int)t->max_leaf)
		return -EINVAL;
	if (!(mt == 0 || mt == 1 || mt == 4 || mt == 5 || mt == 6))
		return -EINVAL;
	if ((flags & VMMU_SPTE_WRPROT_ONLY) && !(t->ept && t->ad))
		return -EINVAL;
	if (pfn % (1ULL << (9 * (level - 1))))
		return -EINVAL;
	if (t->ept && t->exec_only && !(acc & VMMU_ACC_USER) && ((acc & VMMU_ACC_WRITE) || !x))
		return -EINVAL;
	if (pfn >= (1ULL << (t->m - 12)))
		return -ERANGE;
	if (level > 1)
		s |= F_PS;
	if (t->ept) {
		s |= F_EPT_SVE | ((uint64_t)mt << 3);
		if (!t->exec_only || (acc & VMMU_ACC_USER))
			s |= F_EPT_R;
		if (x)
			s |= F_EPT_X;
		if (flags & VMMU_SPTE_IPAT)
			s |= F_EPT_IPAT;
		if (!t->ad)
			s |= F_AD_DISABLED;
		if (flags & VMMU_SPTE_WRPROT_ONLY)
			s |= F_AD_WRPROT;
		if (hostw)
			s |= F_EPT_HOSTW;
		if (w)
			s |= F_EPT_W | F_EPT_MMUW | (t->ad ? F_EPT_D : 0);
		if (t->ad && !prefetch)
			s |= F_EPT_A;
		if (!t->ad && prefetch)
			s = (s & ~7ULL) | ((s & F_EPT_R) << 54) | ((s & F_EPT_X) << 54);
	} else {
		s |= F_P;
		if (!x)
			s |= F_NX;
		if (acc & VMMU_ACC_USER)
			s |= F_U;
		if (hostw)
			s |= F_HOSTW;
		if (w)
			s |= F_W | F_MMUW | F_D;
		if (!prefetch)
			s |= F_A;
	}
	*out = s;
	return (acc & VMMU_ACC_WRITE) && hostw && !canw ? VMMU_SPTE_WRPROT : VMMU_SPTE_MADE;
}

/* Decoders agree with what the reference built. */
static void check_decode(const struct tfmt *t, const struct vmmu_spte_format *f, uint64_t s, uint64_t pfn,
			 int level, unsigned int acc, unsigned int flags)
{
	bool tracked = t->ept && !t->ad && (flags & VMMU_SPTE_PREFETCH);
	bool w = (acc & VMMU_ACC_WRITE) && (flags & VMMU_SPTE_HOST_WRITABLE) && (flags & VMMU_SPTE_CAN_WRITE);
	bool x = (acc & VMMU_ACC_EXEC) && !(level > 1 && (flags & VMMU_SPTE_NX_HUGE));
	unsigned int want = (x ? VMMU_ACC_EXEC : 0) | (w && !tracked ? VMMU_ACC_WRITE : 0) |
			    ((acc & VMMU_ACC_USER) || (t->ept && !t->exec_only) ? VMMU_ACC_USER : 0);

	assert_true(vmmu_spte_to_pfn(f, s) == pfn);
	assert_int_equal(vmmu_spte_to_access(f, s), want);
	assert_true(vmmu_spte_is_present(f, s));
	assert_int_equal(vmmu_spte_is_shadow_present(f, s), !tracked);
	assert_int_equal(vmmu_spte_is_access_track(f, s), tracked);
	assert_true(vmmu_spte_is_leaf(f, s, level));
	assert_int_equal(vmmu_spte_is_huge(f, s), level > 1);
	assert_int_equal(vmmu_spte_is_writable(f, s), w && !tracked);
	assert_int_equal(vmmu_spte_is_mmu_writable(f, s), w);
	assert_int_equal(vmmu_spte_is_host_writable(f, s), !!(flags & VMMU_SPTE_HOST_WRITABLE));
	assert_int_equal(vmmu_spte_is_accessed(f, s), !(flags & VMMU_SPTE_PREFETCH));
	assert_int_equal(vmmu_spte_is_dirty(f, s), w && !tracked);
	assert_int_equal(vmmu_spte_is_ad_enabled(f, s), t->ad);
	assert_false(vmmu_spte_is_mmio(f, s));
	assert_false(vmmu_spte_is_rsvd(f, s, level));
}

/* Every builder input (access, level, memory type, flag combination, a spread of frames) in every format. */
static void test_make_leaf_all_inputs(void **state)
{
	static const unsigned int mts[] = { 0, 1, 2, 3, 4, 5, 6, 7, 9 };
	struct log_capture log;
	unsigned long built = 0, refused = 0;

	(void)state;
	log_capture_start(&log);
	for (size_t i = 0; i < N_OF(tfmts); i++) {
		const struct tfmt *t = &tfmts[i];
		struct vmmu_spte_format f;

		init_fmt(t, &f);
		for (int level = 0; level <= 4; level++) {
			uint64_t align = level >= 1 ? 1ULL << (9 * (level - 1)) : 1;
			uint64_t top = (1ULL << (t->m - 12)) - 1;
			uint64_t pfns[] = { 0, align, 0x12345ULL * align, (top & ~(align - 1)),
					    (top & ~(align - 1)) + align, align + 1, ~0ULL };

			for (unsigned int acc = 0; acc <= 8; acc++)
				for (size_t m = 0; m < N_OF(mts); m++)
					for (unsigned int fl = 0; fl <= 64; fl++)
						for (size_t p = 0; p < N_OF(pfns); p++) {
							uint64_t want = 0x5a5a, got = 0x5a5a;
							int rw = ref_leaf(t, pfns[p], level, acc, mts[m], fl, &want);
							int rg = vmmu_spte_make_leaf(&f, pfns[p], level, acc, mts[m], fl,
										     &got);

							assert_int_equal(rg, rw);
							assert_true(got == want);
							if (rg < 0) {
								refused++;
								continue;
							}
							built++;
							check_decode(t, &f, got, pfns[p], level, acc, fl);
						}
		}
	}
	log_capture_stop();
	/* every refusal was logged; both outcomes were exercised */
	assert_int_equal((unsigned long)log.lines, refused);
	assert_true(built > 100000 && refused > 100000);
}

/* The public bit macros say what the facts sheet's tables say. */
static void test_public_constants(void **state)
{
	const struct {
		uint64_t macro, fact;
	} c[] = {
		{ VMMU_SPTE_EPT_R, F_EPT_R },
		{ VMMU_SPTE_EPT_W, F_EPT_W },
		{ VMMU_SPTE_EPT_X, F_EPT_X },
		{ VMMU_SPTE_EPT_MT_MASK, B(5) | B(4) | B(3) },
		{ VMMU_SPTE_EPT_IPAT, F_EPT_IPAT },
		{ VMMU_SPTE_EPT_A, F_EPT_A },
		{ VMMU_SPTE_EPT_D, F_EPT_D },
		{ VMMU_SPTE_EPT_SAVED_MASK, B(54) | B(56) },
		{ VMMU_SPTE_EPT_HOST_WRITABLE, F_EPT_HOSTW },
		{ VMMU_SPTE_EPT_MMU_WRITABLE, F_EPT_MMUW },
		{ VMMU_SPTE_EPT_SUPPRESS_VE, F_EPT_SVE },
		{ VMMU_SPTE_AD_MASK, B(53) | B(52) },
		{ VMMU_SPTE_AD_DISABLED, F_AD_DISABLED },
		{ VMMU_SPTE_AD_WRPROT_ONLY, F_AD_WRPROT },
		{ VMMU_SPTE_LEGACY_P, F_P },
		{ VMMU_SPTE_LEGACY_W, F_W },
		{ VMMU_SPTE_LEGACY_U, F_U },
		{ VMMU_SPTE_LEGACY_A, F_A },
		{ VMMU_SPTE_LEGACY_D, F_D },
		{ VMMU_SPTE_LEGACY_HOST_WRITABLE, F_HOSTW },
		{ VMMU_SPTE_LEGACY_MMU_WRITABLE, F_MMUW },
		{ VMMU_SPTE_LEGACY_NX, F_NX },
		{ VMMU_SPTE_PS, F_PS },
		{ VMMU_SPTE_MMU_PRESENT, F_MMU_PRESENT },
		{ VMMU_SPTE_PFN_MASK, RANGE(51, 12) },
		{ VMMU_SPTE_NONPRESENT, B(63) },
		{ VMMU_SPTE_FROZEN, B(63) | 0x5a0 },
		{ VMMU_SPTE_MMIO_GEN_LOW_MASK, RANGE(10, 3) },
		{ VMMU_SPTE_MMIO_GEN_HIGH_MASK, RANGE(62, 52) },
		{ VMMU_SPTE_EPT_MMIO_VALUE, 6 },
		{ VMMU_SPTE_EPT_MMIO_MASK, 7 | B(63) },
		{ VMMU_SPTE_LEGACY_MMIO_VALUE, B(51) | B(0) },
		{ VMMU_SPTE_LEGACY_MMIO_MASK, B(51) | B(0) },
		{ VMMU_SPTE_LEGACY_MMIO_ACCESS, B(1) | B(2) },
	};

	(void)state;
	for (size_t i = 0; i < N_OF(c); i++) {
		if (c[i].macro != c[i].fact)
			fail_msg("constant %zu: 0x%llx, facts sheet 0x%llx", i, (unsigned long long)c[i].macro,
				 (unsigned long long)c[i].fact);
	}
}

/* Fixed values typed in from the layout table. */
static void test_layout_examples(void **state)
{
	struct vmmu_spte_format ept, ept_noad, npt;
	const unsigned int rwh = VMMU_SPTE_HOST_WRITABLE | VMMU_SPTE_CAN_WRITE;
	uint64_t s;

	(void)state;
	init_fmt(&tfmts[0], &ept);
	init_fmt(&tfmts[2], &ept_noad);
	init_fmt(&tfmts[6], &npt);

	/* EPT 4K RWX WB, writable: SVE|MMU-W|host-W|pfn|MMU-present|D|A|WB|XWR */
	assert_int_equal(vmmu_spte_make_leaf(&ept, 0x12345, 1, VMMU_ACC_ALL, 6, rwh, &s), 0);
	assert_true(s == 0x8600000012345b37ULL);
	/* the same, 2M, IPAT, read-only host page: no W, no MMU-W, no D, no host-W */
	assert_int_equal(vmmu_spte_make_leaf(&ept, 0x200, 2, VMMU_ACC_ALL, 6, VMMU_SPTE_IPAT, &s), 0);
	assert_true(s == 0x80000000002009f5ULL);
	/* EPT without A/D: A/D type 1 in 53:52, no A or D */
	assert_int_equal(vmmu_spte_make_leaf(&ept_noad, 1, 1, VMMU_ACC_ALL, 0, rwh, &s), 0);
	assert_true(s == 0x8610000000001807ULL);
	/* ... prefetched: access-tracked, R and X parked in 54/56, W dropped, RWX clear */
	assert_int_equal(vmmu_spte_make_leaf(&ept_noad, 1, 1, VMMU_ACC_ALL, 0, rwh | VMMU_SPTE_PREFETCH, &s), 0);
	assert_true(s == 0x8750000000001800ULL);
	/* EPT write-protect-only A/D type 2 */
	assert_int_equal(vmmu_spte_make_leaf(&ept, 1, 1, VMMU_ACC_ALL, 6, rwh | VMMU_SPTE_WRPROT_ONLY, &s), 0);
	assert_true(s == 0x8620000000001b37ULL);
	/* NPT 4K user RW, not executable: NX|pfn|MMU-present|MMU-W|host-W|D|A|U|W|P */
	assert_int_equal(vmmu_spte_make_leaf(&npt, 0xabcde, 1, VMMU_ACC_WRITE | VMMU_ACC_USER, 6, rwh, &s), 0);
	assert_true(s == 0x80000000abcdee67ULL);
	/* NPT 1G supervisor exec read-only (write refused: a shadowed guest table) */
	assert_int_equal(vmmu_spte_make_leaf(&npt, 1ULL << 18, 3, VMMU_ACC_EXEC | VMMU_ACC_WRITE, 6,
					     VMMU_SPTE_HOST_WRITABLE, &s),
			 VMMU_SPTE_WRPROT);
	assert_true(s == 0x0000000040000aa1ULL);
	/* NX huge-page mitigation drops exec from huge leaves only */
	assert_int_equal(vmmu_spte_make_leaf(&npt, 0x200, 2, VMMU_ACC_EXEC, 6, VMMU_SPTE_NX_HUGE, &s), 0);
	assert_true(s & F_NX);
	assert_int_equal(vmmu_spte_make_leaf(&npt, 0x200, 1, VMMU_ACC_EXEC, 6, VMMU_SPTE_NX_HUGE, &s), 0);
	assert_false(s & F_NX);

	/* non-leaf: full access and A (or A/D type 1) */
	assert_int_equal(vmmu_spte_make_nonleaf(&ept, 0x777, &s), 0);
	assert_true(s == 0x8000000000777907ULL);
	assert_int_equal(vmmu_spte_make_nonleaf(&ept_noad, 0x777, &s), 0);
	assert_true(s == 0x8010000000777807ULL);
	assert_int_equal(vmmu_spte_make_nonleaf(&npt, 0x777, &s), 0);
	assert_true(s == 0x0000000000777827ULL);
	for (int level = 2; level <= 4; level++) {
		assert_false(vmmu_spte_is_rsvd(&ept, 0x8000000000777907ULL, level));
		assert_false(vmmu_spte_is_rsvd(&npt, 0x0000000000777827ULL, level));
		assert_false(vmmu_spte_is_leaf(&npt, s, level));
	}
}

static void test_make_rejects(void **state)
{
	struct vmmu_spte_format f, npt52;
	struct vmmu_spte_format_opts o = { .size = sizeof(o), .mode = VMMU_PAGING_EPT4, .maxphyaddr = 46 };
	struct log_capture log;
	uint64_t s = 7;

	(void)state;
	assert_int_equal(vmmu_spte_format_init(&f, &o), 0);
	init_fmt(&tfmts[7], &npt52);
	log_capture_start(&log);
	assert_int_equal(vmmu_spte_make_leaf(NULL, 0, 1, 0, 6, 0, &s), -EINVAL);
	assert_int_equal(vmmu_spte_make_leaf(&f, 0, 1, 0, 6, 0, NULL), -EINVAL);
	assert_int_equal(vmmu_spte_make_nonleaf(&f, 1ULL << 34, &s), -ERANGE);
	assert_int_equal(vmmu_spte_make_nonleaf(&npt52, 1ULL << 40, &s), -ERANGE);
	assert_int_equal(vmmu_spte_make_nonleaf(&f, 0, NULL), -EINVAL);
	assert_int_equal(log.lines, 5);
	assert_true(s == 7);
	assert_int_equal(vmmu_spte_make_nonleaf(&npt52, (1ULL << 40) - 1, &s), 0);
	assert_false(vmmu_spte_is_rsvd(&npt52, s, 4));
	assert_true(vmmu_spte_to_pfn(&npt52, s) == (1ULL << 40) - 1);

	/* format options that do not exist */
	o.size = sizeof(o) - 1;
	assert_int_equal(vmmu_spte_format_init(&f, &o), -EINVAL);
	o.size = sizeof(o);
	o.mode = VMMU_PAGING_PAE;
	assert_int_equal(vmmu_spte_format_init(&f, &o), -EINVAL);
	o.mode = VMMU_PAGING_4LEVEL;
	o.ad_disabled = true;
	assert_int_equal(vmmu_spte_format_init(&f, &o), -EINVAL);
	o.ad_disabled = false;
	o.exec_only = true;
	assert_int_equal(vmmu_spte_format_init(&f, &o), -EINVAL);
	o.exec_only = false;
	o.max_leaf_level = 1;
	assert_int_equal(vmmu_spte_format_init(&f, &o), -EINVAL);
	o.max_leaf_level = 4;
	assert_int_equal(vmmu_spte_format_init(&f, &o), -EINVAL);
	o.max_leaf_level = 0;
	o.maxphyaddr = 53;
	assert_int_equal(vmmu_spte_format_init(&f, &o), -EINVAL);
	o.maxphyaddr = 31;
	assert_int_equal(vmmu_spte_format_init(&f, &o), -EINVAL);
	assert_int_equal(vmmu_spte_format_init(NULL, &o), -EINVAL);
	assert_int_equal(vmmu_spte_format_init(&f, NULL), -EINVAL);
	assert_int_equal(log.lines, 15);
	log_capture_stop();
}

/* Reserved bits of the facts sheet's table 1.2 for a present entry (bit 7 handled apart). */
static uint64_t ref_rsvd(const struct tfmt *t, int level, bool leaf)
{
	uint64_t high = RANGE(51, t->m);

	if (level >= 4)
		return high | (t->ept ? RANGE(7, 3) : B(7) | B(8));
	if (level == 1)
		return high;
	if (!leaf)
		return high | (t->ept ? RANGE(6, 3) : 0);
	if (level == 2)
		return high | (t->ept ? RANGE(20, 12) : RANGE(20, 13));
	return high | (t->ept ? RANGE(29, 12) : RANGE(29, 13));
}

/* One valid present entry of each kind: a non-leaf, or a leaf at @level. */
static uint64_t base_entry(const struct tfmt *t, const struct vmmu_spte_format *f, int level, bool leaf)
{
	uint64_t s;

	if (leaf)
		assert_int_equal(vmmu_spte_make_leaf(f, 0, level, VMMU_ACC_ALL, 6, 0, &s), 0);
	else
		assert_int_equal(vmmu_spte_make_nonleaf(f, 0, &s), 0);
	return s;
}

/* The validator rejects each reserved bit, alone, and accepts each non-reserved one. */
static void test_rsvd_each_bit(void **state)
{
	(void)state;
	for (size_t i = 0; i < N_OF(tfmts); i++) {
		const struct tfmt *t = &tfmts[i];
		struct vmmu_spte_format f;

		init_fmt(t, &f);
		for (int level = 1; level <= (int)t->levels; level++) {
			for (int leaf = 0; leaf < 2; leaf++) {
				uint64_t base, rsvd;

				if ((leaf && level > (int)t->max_leaf) || (!leaf && level == 1))
					continue;
				base = base_entry(t, &f, level, leaf);
				rsvd = ref_rsvd(t, level, leaf);
				assert_false(vmmu_spte_is_rsvd(&f, base, level));
				for (int b = 3; b < 64; b++) {
					uint64_t s = base | B(b);

					/* bit 7 and EPT leaf memory type / IPAT are checked below */
					if (b == 7 || (base & B(b)) || (t->ept && leaf && b <= 6))
						continue;
					assert_int_equal(vmmu_spte_is_rsvd(&f, s, level), !!(rsvd & B(b)));
				}
			}
		}
		/* PS: reserved in PML4E/PML5E, and in PDEs/PDPTEs when that leaf size is not supported */
		for (int level = 2; level <= (int)t->levels; level++) {
			uint64_t s = base_entry(t, &f, 1, true) | B(7);
			bool want = level >= 4 || level > (int)t->max_leaf;

			assert_int_equal(vmmu_spte_is_rsvd(&f, s, level), want);
		}
		assert_false(vmmu_spte_is_rsvd(&f, base_entry(t, &f, 1, true) | B(7), 1));
		/* entries hardware sees as not present are never reserved */
		assert_false(vmmu_spte_is_rsvd(&f, ~0ULL & ~(t->ept ? 7ULL : 1ULL), 1));
		assert_false(vmmu_spte_is_rsvd(&f, VMMU_SPTE_NONPRESENT, 4));
	}
}

/* EPT bits 5:0 of a leaf: bad memory types 2, 3, 7; XWR 010, 110, and 100 without execute-only. */
static void test_rsvd_ept_mt_xwr(void **state)
{
	(void)state;
	for (size_t i = 0; i < N_OF(tfmts); i++) {
		const struct tfmt *t = &tfmts[i];
		struct vmmu_spte_format f;

		if (!t->ept)
			continue;
		init_fmt(t, &f);
		for (uint64_t v = 0; v < 64; v++) {
			unsigned int mt = v >> 3, xwr = v & 7;
			bool bad = xwr && (mt == 2 || mt == 3 || mt == 7 || xwr == 2 || xwr == 6 ||
					   (xwr == 4 && !t->exec_only));

			assert_int_equal(vmmu_spte_is_rsvd(&f, 0x5000 | F_MMU_PRESENT | v, 1), bad);
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_public_constants),
		cmocka_unit_test(test_layout_examples),
		cmocka_unit_test(test_make_leaf_all_inputs),
		cmocka_unit_test(test_make_rejects),
		cmocka_unit_test(test_rsvd_each_bit),
		cmocka_unit_test(test_rsvd_ept_mt_xwr),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
