/* SPDX-License-Identifier: MIT */
/*
 * MMIO SPTEs: every generation bit and every gfn bit lands where the facts
 * sheet (2.5) puts it and decodes back; access masking; generation match; the
 * largest gfn is checked, not truncated; no MMIO SPTEs for legacy formats with
 * MAXPHYADDR 52; MMIO SPTEs fault (reserved / misconfigured) and are never
 * mistaken for other SPTEs.
 */
#include <errno.h>

#include "helpers.h"
#include <libvmmu/spte.h>

#define B(n) (1ULL << (n))

struct mfmt {
	enum vmmu_paging_mode mode;
	unsigned int m;
};

static const struct mfmt mfmts[] = {
	{ VMMU_PAGING_EPT4, 46 },   { VMMU_PAGING_EPT5, 52 },   { VMMU_PAGING_EPT4, 36 },
	{ VMMU_PAGING_4LEVEL, 46 }, { VMMU_PAGING_5LEVEL, 51 }, { VMMU_PAGING_4LEVEL, 36 },
};

static bool is_ept(const struct mfmt *t)
{
	return t->mode == VMMU_PAGING_EPT4 || t->mode == VMMU_PAGING_EPT5;
}

static void init(const struct mfmt *t, struct vmmu_spte_format *f)
{
	struct vmmu_spte_format_opts o = { .size = sizeof(o), .mode = t->mode, .maxphyaddr = t->m };

	assert_int_equal(vmmu_spte_format_init(f, &o), 0);
}

/* Facts 2.5: generation bits 7:0 -> SPTE 10:3, 18:8 -> SPTE 62:52. */
static int gen_bit_pos(int i)
{
	return i < 8 ? 3 + i : 52 + (i - 8);
}

/* The marker bits of an MMIO SPTE, per facts 2.5. */
static void check_marker(const struct mfmt *t, const struct vmmu_spte_format *f, uint64_t s)
{
	if (is_ept(t)) {
		assert_int_equal(s & 7, 6);     /* XWR = 110 */
		assert_false(s & B(63));        /* suppress-#VE clear */
	} else {
		assert_true(s & B(0));
		assert_true(s & B(51));
	}
	assert_false(s & B(11)); /* never MMU-present */
	assert_true(vmmu_spte_is_mmio(f, s));
	assert_false(vmmu_spte_is_present(f, s));
	assert_false(vmmu_spte_is_shadow_present(f, s));
	assert_false(vmmu_spte_needs_atomic_update(f, s, 1));
	for (int level = 1; level <= 5; level++)
		assert_true(vmmu_spte_is_rsvd(f, s, level)); /* the access must fault */
}

static void test_mmio_gen_bits(void **state)
{
	(void)state;
	for (size_t k = 0; k < sizeof(mfmts) / sizeof(mfmts[0]); k++) {
		struct vmmu_spte_format f;
		uint64_t s, s0;

		init(&mfmts[k], &f);
		assert_int_equal(vmmu_spte_make_mmio(&f, 0x123, 0, 0, &s0), 0);
		for (int i = 0; i < 19; i++) {
			uint64_t gen = B(i);

			assert_int_equal(vmmu_spte_make_mmio(&f, 0x123, 0, gen, &s), 0);
			assert_true((s ^ s0) == B(gen_bit_pos(i)));
			check_marker(&mfmts[k], &f, s);
			assert_true(vmmu_spte_to_mmio_gen(&f, s) == gen);
			assert_true(vmmu_spte_to_mmio_gfn(&f, s) == 0x123);
			assert_true(vmmu_spte_is_mmio_gen(&f, s, gen));
			/* only the low 19 bits are stored and compared */
			assert_true(vmmu_spte_is_mmio_gen(&f, s, gen | B(19) | B(40) | B(63)));
			for (int j = 0; j < 19; j++)
				if (j != i)
					assert_false(vmmu_spte_is_mmio_gen(&f, s, gen | B(j)));
			assert_false(vmmu_spte_is_mmio_gen(&f, s, 0));
		}
		/* all generation bits at once, and bits above 18 dropped */
		assert_int_equal(vmmu_spte_make_mmio(&f, 0, 0, ~0ULL, &s), 0);
		assert_true(vmmu_spte_to_mmio_gen(&f, s) == 0x7ffff);
		assert_true((s ^ s0) == ((0xffULL << 3) | (0x7ffULL << 52) | (0x123ULL << 12)));
	}
}

static void test_mmio_gfn_bits_and_limit(void **state)
{
	struct log_capture log;

	(void)state;
	for (size_t k = 0; k < sizeof(mfmts) / sizeof(mfmts[0]); k++) {
		const struct mfmt *t = &mfmts[k];
		struct vmmu_spte_format f;
		uint64_t s, s0, max = B(t->m - 12) - 1;

		init(t, &f);
		assert_true(f.max_mmio_gfn == max);
		assert_int_equal(vmmu_spte_make_mmio(&f, 0, 0, 0x5a5a5, &s0), 0);
		assert_true(vmmu_spte_to_mmio_gfn(&f, s0) == 0);
		for (unsigned int b = 0; b < t->m - 12; b++) {
			assert_int_equal(vmmu_spte_make_mmio(&f, B(b), 0, 0x5a5a5, &s), 0);
			assert_true((s ^ s0) == B(12 + b));
			assert_true(vmmu_spte_to_mmio_gfn(&f, s) == B(b));
			assert_true(vmmu_spte_to_mmio_gen(&f, s) == 0x5a5a5);
			check_marker(t, &f, s);
		}
		assert_int_equal(vmmu_spte_make_mmio(&f, max, VMMU_ACC_ALL, 0x7ffff, &s), 0);
		assert_true(vmmu_spte_to_mmio_gfn(&f, s) == max);
		assert_true(vmmu_spte_to_mmio_gen(&f, s) == 0x7ffff);
		check_marker(t, &f, s);

		/* one past the largest gfn, and far past: refused, output untouched */
		log_capture_start(&log);
		s = 42;
		assert_int_equal(vmmu_spte_make_mmio(&f, max + 1, 0, 0, &s), -ERANGE);
		assert_int_equal(vmmu_spte_make_mmio(&f, B(40), 0, 0, &s), -ERANGE);
		assert_int_equal(vmmu_spte_make_mmio(&f, ~0ULL, 0, 0, &s), -ERANGE);
		assert_int_equal(vmmu_spte_make_mmio(&f, 0, 8, 0, &s), -EINVAL);
		assert_int_equal(vmmu_spte_make_mmio(&f, 0, 0, 0, NULL), -EINVAL);
		assert_int_equal(vmmu_spte_make_mmio(NULL, 0, 0, 0, &s), -EINVAL);
		assert_true(s == 42);
		assert_int_equal(log.lines, 6);
		log_capture_stop();
	}
}

static void test_mmio_access(void **state)
{
	(void)state;
	for (size_t k = 0; k < sizeof(mfmts) / sizeof(mfmts[0]); k++) {
		struct vmmu_spte_format f;

		init(&mfmts[k], &f);
		for (unsigned int acc = 0; acc <= VMMU_ACC_ALL; acc++) {
			unsigned int kept = is_ept(&mfmts[k]) ? 0 : acc & (VMMU_ACC_WRITE | VMMU_ACC_USER);
			uint64_t s;

			assert_int_equal(vmmu_spte_make_mmio(&f, 0x77, acc, 3, &s), 0);
			assert_int_equal(vmmu_spte_to_mmio_access(&f, s), kept);
			/* legacy keeps W and U at their PTE positions */
			assert_true((s & 6) == (is_ept(&mfmts[k]) ? 6 : (uint64_t)kept));
			assert_true(vmmu_spte_to_mmio_gfn(&f, s) == 0x77);
			assert_true(vmmu_spte_to_mmio_gen(&f, s) == 3);
		}
	}
}

/* Legacy formats with MAXPHYADDR 52 have no reserved PA bit, so no MMIO SPTEs. */
static void test_mmio_unavailable(void **state)
{
	struct vmmu_spte_format f;
	struct vmmu_spte_format_opts o = { .size = sizeof(o), .mode = VMMU_PAGING_4LEVEL, .maxphyaddr = 52 };
	struct log_capture log;
	uint64_t s = 9, leaf;

	(void)state;
	assert_int_equal(vmmu_spte_format_init(&f, &o), 0);
	log_capture_start(&log);
	assert_int_equal(vmmu_spte_make_mmio(&f, 0, 0, 0, &s), -EOPNOTSUPP);
	assert_int_equal(log.lines, 1);
	log_capture_stop();
	assert_true(s == 9);
	/* nothing is MMIO, not even what would be one at MAXPHYADDR 51 */
	assert_false(vmmu_spte_is_mmio(&f, B(51) | B(0)));
	assert_false(vmmu_spte_is_mmio(&f, 0));
	assert_false(vmmu_spte_is_mmio(&f, ~0ULL));
	assert_false(vmmu_spte_is_mmio_gen(&f, B(51) | B(0), 0));
	/* and a leaf whose frame has bit 39 set (PA bit 51) is a valid leaf */
	assert_int_equal(vmmu_spte_make_leaf(&f, B(39), 1, VMMU_ACC_ALL, 6, 0, &leaf), 0);
	assert_false(vmmu_spte_is_mmio(&f, leaf));
	assert_false(vmmu_spte_is_rsvd(&f, leaf, 1));
}

/* Values that are not MMIO SPTEs are never taken for one. */
static void test_not_mmio(void **state)
{
	(void)state;
	for (size_t k = 0; k < sizeof(mfmts) / sizeof(mfmts[0]); k++) {
		struct vmmu_spte_format f;
		uint64_t s;

		init(&mfmts[k], &f);
		assert_false(vmmu_spte_is_mmio(&f, VMMU_SPTE_NONPRESENT));
		assert_false(vmmu_spte_is_mmio(&f, VMMU_SPTE_FROZEN));
		assert_int_equal(vmmu_spte_make_nonleaf(&f, f.max_pfn, &s), 0);
		assert_false(vmmu_spte_is_mmio(&f, s));
		for (unsigned int acc = 0; acc <= VMMU_ACC_ALL; acc++) {
			if (vmmu_spte_make_leaf(&f, f.max_pfn, 1, acc, 6, VMMU_SPTE_HOST_WRITABLE | VMMU_SPTE_CAN_WRITE,
						&s) == 0)
				assert_false(vmmu_spte_is_mmio(&f, s));
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mmio_gen_bits),
		cmocka_unit_test(test_mmio_gfn_bits_and_limit),
		cmocka_unit_test(test_mmio_access),
		cmocka_unit_test(test_mmio_unavailable),
		cmocka_unit_test(test_not_mmio),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
