/* SPDX-License-Identifier: MIT */
/*
 * SPTE transitions and rules: write protection (dirty log vs shadowing),
 * access tracking, A/D clearing, the TLB-flush and atomic-update predicates
 * (facts sheet 2.2, 2.4, 2.6, 2.7, 3.2), and huge-page split/collapse. Expected
 * bit positions are typed in from the facts sheet; the predicates are checked
 * case by case and against small reference models over every pair of a sample
 * of SPTEs in every state.
 */
#include <errno.h>
#include <string.h>

#include "helpers.h"
#include <libvmmu/spte.h>

#define B(n) (1ULL << (n))
#define RW (VMMU_SPTE_HOST_WRITABLE | VMMU_SPTE_CAN_WRITE)

enum { EPT, EPT_NOAD, NPT, NFMT };

static struct vmmu_spte_format fmts[NFMT];

/* Facts 2.1 positions per format: A, D, MMU-writable, host-writable. */
static const struct {
	uint64_t a, d, mmuw, hostw;
	bool ept, ad;
} bitsof[NFMT] = {
	[EPT] = { B(8), B(9), B(58), B(57), true, true },
	[EPT_NOAD] = { B(8), B(9), B(58), B(57), true, false },
	[NPT] = { B(5), B(6), B(10), B(9), false, true },
};

static int setup(void **state)
{
	struct vmmu_spte_format_opts o = { .size = sizeof(o), .maxphyaddr = 46 };

	(void)state;
	o.mode = VMMU_PAGING_EPT4;
	if (vmmu_spte_format_init(&fmts[EPT], &o))
		return -1;
	o.ad_disabled = true;
	if (vmmu_spte_format_init(&fmts[EPT_NOAD], &o))
		return -1;
	o.ad_disabled = false;
	o.mode = VMMU_PAGING_4LEVEL;
	return vmmu_spte_format_init(&fmts[NPT], &o);
}

static uint64_t leaf(int k, uint64_t pfn, int level, unsigned int acc, unsigned int flags)
{
	uint64_t s;

	assert_true(vmmu_spte_make_leaf(&fmts[k], pfn, level, acc, VMMU_SPTE_MT_WB, flags, &s) >= 0);
	return s;
}

static void test_write_protect(void **state)
{
	(void)state;
	for (int k = 0; k < NFMT; k++) {
		const struct vmmu_spte_format *f = &fmts[k];
		uint64_t s = leaf(k, 0x1000, 1, VMMU_ACC_ALL, RW), d, t;

		/* table 2.2 row 111 -> 110: W cleared, MMU-writable and host-writable kept */
		d = vmmu_spte_wrprot_for_dirty_log(f, s);
		assert_true(d == (s & ~B(1)));
		assert_true((d & bitsof[k].mmuw) && (d & bitsof[k].hostw));
		/* row 111 -> 100: W and MMU-writable cleared */
		t = vmmu_spte_wrprot_for_shadowing(f, s);
		assert_true(t == (s & ~(B(1) | bitsof[k].mmuw)));
		assert_true(t & bitsof[k].hostw);
		assert_true(vmmu_spte_wrprot_for_shadowing(f, d) == t);
		/* both idempotent, and they change nothing else (pfn, A/D, exec, user) */
		assert_true(vmmu_spte_wrprot_for_dirty_log(f, d) == d);
		assert_true(vmmu_spte_wrprot_for_shadowing(f, t) == t);
		assert_true(vmmu_spte_to_pfn(f, t) == 0x1000);
		assert_int_equal(vmmu_spte_to_access(f, t), VMMU_ACC_ALL & ~VMMU_ACC_WRITE);
		assert_false(vmmu_spte_is_rsvd(f, d, 1));
		assert_false(vmmu_spte_is_rsvd(f, t, 1));
		/* the fast path undoes dirty-log protection only */
		assert_true(vmmu_spte_restore_writable(f, d) == s);
		assert_true(vmmu_spte_restore_writable(f, t) == t);
		assert_true(vmmu_spte_restore_writable(f, s) == s);
		s = leaf(k, 0x1000, 1, VMMU_ACC_ALL, VMMU_SPTE_HOST_WRITABLE); /* write refused: 100 */
		assert_true(vmmu_spte_restore_writable(f, s) == s);
		s = leaf(k, 0x1000, 1, VMMU_ACC_ALL, RW | VMMU_SPTE_PREFETCH); /* tracked when A/D is off */
		if (!bitsof[k].ad) {
			assert_true(vmmu_spte_restore_writable(f, s) == s);
			s = vmmu_spte_restore_access_track(f, s);
		}
		assert_true(vmmu_spte_is_writable(f, vmmu_spte_restore_writable(f, s)));
		assert_false(vmmu_spte_is_rsvd(f, vmmu_spte_restore_writable(f, s), 1));
	}
}

static void test_access_tracking(void **state)
{
	(void)state;
	for (int k = 0; k < NFMT; k++) {
		const struct vmmu_spte_format *f = &fmts[k];
		uint64_t w = leaf(k, 0x2000, 1, VMMU_ACC_ALL, RW);
		uint64_t ro = leaf(k, 0x2000, 1, VMMU_ACC_EXEC | VMMU_ACC_USER, VMMU_SPTE_HOST_WRITABLE);
		uint64_t m = vmmu_spte_mark_access_track(f, w);

		if (bitsof[k].ad) {
			/* A/D on: marking clears A only; restoring sets it again */
			assert_true(m == (w & ~bitsof[k].a));
			assert_false(vmmu_spte_is_accessed(f, m));
			assert_false(vmmu_spte_is_access_track(f, m));
			assert_true(vmmu_spte_restore_access_track(f, m) == m);
			assert_true(vmmu_spte_clear_accessed(f, w) == m);
		} else {
			/* facts 2.4: R (bit 0) to 54, X (bit 2) to 56; R/W/X cleared; MMU-present kept */
			assert_true(m == ((w & ~7ULL) | B(54) | B(56)));
			assert_true(vmmu_spte_is_access_track(f, m));
			assert_true(vmmu_spte_is_present(f, m));
			assert_false(vmmu_spte_is_shadow_present(f, m));
			assert_false(vmmu_spte_is_accessed(f, m));
			assert_true(vmmu_spte_is_mmu_writable(f, m));
			/* W is not saved: the fast path restores R/X, a later write fault W */
			assert_true(vmmu_spte_restore_access_track(f, m) == (w & ~B(1)));
			assert_true(vmmu_spte_restore_access_track(f, vmmu_spte_mark_access_track(f, ro)) == ro);
			/* only R or only X saved */
			assert_true(vmmu_spte_mark_access_track(f, w & ~B(2)) == ((w & ~7ULL) | B(54)));
			/* clearing A is a no-op without A/D */
			assert_true(vmmu_spte_clear_accessed(f, w) == w);
		}
		assert_true(vmmu_spte_mark_access_track(f, m) == m);
		assert_false(vmmu_spte_is_rsvd(f, m, 1));
		/* nothing to track in non-present, MMIO or frozen values */
		assert_true(vmmu_spte_mark_access_track(f, VMMU_SPTE_NONPRESENT) == VMMU_SPTE_NONPRESENT);
		assert_true(vmmu_spte_mark_access_track(f, VMMU_SPTE_FROZEN) == VMMU_SPTE_FROZEN);
		assert_true(vmmu_spte_restore_access_track(f, VMMU_SPTE_NONPRESENT) == VMMU_SPTE_NONPRESENT);
	}
}

static void test_clear_dirty(void **state)
{
	uint64_t s, wp;

	(void)state;
	s = leaf(EPT, 0x3000, 1, VMMU_ACC_ALL, RW);
	assert_true(vmmu_spte_clear_dirty(&fmts[EPT], s) == (s & ~B(9)));
	assert_false(vmmu_spte_is_dirty(&fmts[EPT], s & ~B(9)));
	s = leaf(NPT, 0x3000, 1, VMMU_ACC_ALL, RW);
	assert_true(vmmu_spte_clear_dirty(&fmts[NPT], s) == (s & ~B(6)));
	/* write-protect-only A/D type and A/D off: dirty tracking by clearing W */
	wp = leaf(EPT, 0x3000, 1, VMMU_ACC_ALL, RW | VMMU_SPTE_WRPROT_ONLY);
	assert_true(vmmu_spte_clear_dirty(&fmts[EPT], wp) == (wp & ~B(1)));
	s = leaf(EPT_NOAD, 0x3000, 1, VMMU_ACC_ALL, RW);
	assert_true(vmmu_spte_is_dirty(&fmts[EPT_NOAD], s));
	assert_true(vmmu_spte_clear_dirty(&fmts[EPT_NOAD], s) == (s & ~B(1)));
	assert_false(vmmu_spte_is_dirty(&fmts[EPT_NOAD], s & ~B(1)));
}

/* Facts 2.6, written on the raw bits of the facts sheet. */
static bool ref_flush(int k, uint64_t old, uint64_t new, int level)
{
	bool old_leaf = level == 1 || (old & B(7)), new_leaf = level == 1 || (new & B(7));
	bool moved = (old ^ new) & 0x000ffffffffff000ULL;

	if (!(old & B(11)))
		return false; /* never cached */
	if (!(new & B(11)))
		return true; /* zap */
	if (!old_leaf)
		return new_leaf || moved;
	if (!new_leaf)
		return false; /* split in place */
	return ((old & bitsof[k].mmuw) && !(new & bitsof[k].mmuw)) || moved;
}

/* Facts 2.7, for leaves (as the TDP MMU asks it). */
static bool ref_atomic(int k, uint64_t s, int level)
{
	bool w = s & B(1), mmuw = s & bitsof[k].mmuw, d = s & bitsof[k].d;
	bool ad_off = bitsof[k].ept && ((s >> 52) & 3) == 1;

	if (!(s & B(11)) || (level > 1 && !(s & B(7))))
		return false;
	return (!w && mmuw) || ad_off || (w && !d);
}

/* SPTEs in every state the library makes, for format k, at level 1 or 2. */
static size_t sample(int k, uint64_t *out)
{
	static const unsigned int flagset[] = { 0, RW, VMMU_SPTE_HOST_WRITABLE, RW | VMMU_SPTE_PREFETCH,
						VMMU_SPTE_PREFETCH, RW | VMMU_SPTE_WRPROT_ONLY };
	const struct vmmu_spte_format *f = &fmts[k];
	size_t n = 0;
	uint64_t s;

	for (size_t i = 0; i < sizeof(flagset) / sizeof(flagset[0]); i++)
		for (unsigned int acc = 0; acc <= VMMU_ACC_ALL; acc++)
			for (uint64_t pfn = 0; pfn <= 0x200; pfn += 0x200)
				for (int level = 1; level <= 2; level++) {
					if (vmmu_spte_make_leaf(f, pfn, level, acc, 6, flagset[i], &s) < 0)
						continue;
					out[n++] = s;
					out[n++] = vmmu_spte_wrprot_for_dirty_log(f, s);
					out[n++] = vmmu_spte_wrprot_for_shadowing(f, s);
					out[n++] = vmmu_spte_mark_access_track(f, s);
					out[n++] = vmmu_spte_clear_dirty(f, s);
				}
	assert_int_equal(vmmu_spte_make_nonleaf(f, 0x400, &out[n++]), 0);
	assert_int_equal(vmmu_spte_make_nonleaf(f, 0x401, &out[n++]), 0);
	assert_int_equal(vmmu_spte_make_mmio(f, 0x400, VMMU_ACC_ALL, 5, &out[n++]), 0);
	out[n++] = VMMU_SPTE_NONPRESENT;
	out[n++] = VMMU_SPTE_FROZEN;
	return n;
}

static void test_flush_and_atomic_reference(void **state)
{
	static uint64_t s[1024];
	unsigned long flushes = 0, pairs = 0;

	(void)state;
	for (int k = 0; k < NFMT; k++) {
		const struct vmmu_spte_format *f = &fmts[k];
		size_t n = sample(k, s);

		assert_true(n > 100 && n < 1024);
		for (size_t i = 0; i < n; i++) {
			for (int level = 1; level <= 2; level++) {
				bool atomic = ref_atomic(k, s[i], level);

				assert_int_equal(vmmu_spte_needs_atomic_update(f, s[i], level), atomic);
				/* volatile = needs atomic update, or the CPU may still set A */
				assert_int_equal(vmmu_spte_is_volatile(f, s[i], level),
						 atomic || ((s[i] & B(11)) && ((s[i] >> 52) & 3) != 1 &&
							    !(s[i] & bitsof[k].a)));
			}
			for (size_t j = 0; j < n; j++)
				for (int level = 1; level <= 2; level++) {
					bool want = ref_flush(k, s[i], s[j], level);

					assert_int_equal(vmmu_spte_needs_tlb_flush(f, s[i], s[j], level), want);
					flushes += want;
					pairs++;
				}
		}
	}
	assert_true(flushes > pairs / 10 && flushes < pairs);
}

/* The cases that matter, one by one (facts 2.6 and the 2014 race of 3.2). */
static void test_flush_cases(void **state)
{
	(void)state;
	for (int k = 0; k < NFMT; k++) {
		const struct vmmu_spte_format *f = &fmts[k];
		uint64_t s = leaf(k, 0x1000, 1, VMMU_ACC_ALL, RW);
		uint64_t dl = vmmu_spte_wrprot_for_dirty_log(f, s);
		uint64_t sh = vmmu_spte_wrprot_for_shadowing(f, s);
		uint64_t huge = leaf(k, 0x200, 2, VMMU_ACC_ALL, RW), tbl, tbl2, mmio;

		assert_int_equal(vmmu_spte_make_nonleaf(f, 0x999, &tbl), 0);
		assert_int_equal(vmmu_spte_make_nonleaf(f, 0x998, &tbl2), 0);
		assert_int_equal(vmmu_spte_make_mmio(f, 0x5, 0, 0, &mmio), 0);
		assert_false(vmmu_spte_needs_tlb_flush(f, s, dl, 1));   /* dirty-log wrprot: flushed later */
		assert_true(vmmu_spte_needs_tlb_flush(f, s, sh, 1));    /* shadowing wrprot: now */
		/* already read-only for dirty logging, but a writable TLB entry may survive: flush */
		assert_true(vmmu_spte_needs_tlb_flush(f, dl, sh, 1));
		assert_false(vmmu_spte_needs_tlb_flush(f, sh, sh, 1));
		assert_false(vmmu_spte_needs_tlb_flush(f, dl, s, 1));   /* fast path restores W */
		assert_false(vmmu_spte_needs_tlb_flush(f, s, vmmu_spte_mark_access_track(f, s), 1));
		assert_false(vmmu_spte_needs_tlb_flush(f, s, vmmu_spte_clear_dirty(f, s), 1));
		assert_false(vmmu_spte_needs_tlb_flush(f, s, vmmu_spte_clear_accessed(f, s), 1));
		assert_true(vmmu_spte_needs_tlb_flush(f, s, VMMU_SPTE_NONPRESENT, 1));
		assert_true(vmmu_spte_needs_tlb_flush(f, s, VMMU_SPTE_FROZEN, 1));
		assert_true(vmmu_spte_needs_tlb_flush(f, s, mmio, 1));
		assert_true(vmmu_spte_needs_tlb_flush(f, sh, VMMU_SPTE_NONPRESENT, 1));
		assert_false(vmmu_spte_needs_tlb_flush(f, VMMU_SPTE_NONPRESENT, s, 1));
		assert_false(vmmu_spte_needs_tlb_flush(f, mmio, s, 1));
		assert_false(vmmu_spte_needs_tlb_flush(f, VMMU_SPTE_FROZEN, s, 1));
		assert_true(vmmu_spte_needs_tlb_flush(f, s, leaf(k, 0x1001, 1, VMMU_ACC_ALL, RW), 1));
		assert_false(vmmu_spte_needs_tlb_flush(f, huge, tbl, 2));  /* split in place */
		assert_true(vmmu_spte_needs_tlb_flush(f, tbl, huge, 2));   /* table dropped */
		assert_true(vmmu_spte_needs_tlb_flush(f, tbl, tbl2, 2));
		assert_false(vmmu_spte_needs_tlb_flush(f, tbl, tbl, 3));
	}
}

static void test_atomic_cases(void **state)
{
	uint64_t s;

	(void)state;
	for (int k = 0; k < NFMT; k++) {
		const struct vmmu_spte_format *f = &fmts[k];
		bool ad = bitsof[k].ad;

		s = leaf(k, 1, 1, VMMU_ACC_ALL, RW); /* W, D pre-set */
		assert_int_equal(vmmu_spte_needs_atomic_update(f, s, 1), !ad);
		assert_int_equal(vmmu_spte_needs_atomic_update(f, s & ~bitsof[k].d, 1), true); /* CPU may set D */
		assert_true(vmmu_spte_needs_atomic_update(f, vmmu_spte_wrprot_for_dirty_log(f, s), 1)); /* fast path */
		assert_int_equal(vmmu_spte_needs_atomic_update(f, vmmu_spte_wrprot_for_shadowing(f, s), 1), !ad);
		s = leaf(k, 1, 1, VMMU_ACC_ALL, 0); /* host read-only */
		assert_int_equal(vmmu_spte_needs_atomic_update(f, s, 1), !ad);
		/* A clear is ignored by the atomic rule, not by "volatile" */
		assert_int_equal(vmmu_spte_needs_atomic_update(f, s & ~bitsof[k].a, 1), !ad);
		assert_true(vmmu_spte_is_volatile(f, s & ~bitsof[k].a, 1));
		assert_int_equal(vmmu_spte_is_volatile(f, s, 1), !ad);
		assert_false(vmmu_spte_needs_atomic_update(f, VMMU_SPTE_NONPRESENT, 1));
		assert_false(vmmu_spte_is_volatile(f, VMMU_SPTE_FROZEN, 1));
	}
	s = leaf(EPT, 1, 1, VMMU_ACC_ALL, RW | VMMU_SPTE_WRPROT_ONLY);
	assert_false(vmmu_spte_needs_atomic_update(&fmts[EPT], s, 1));
	assert_true(vmmu_spte_needs_atomic_update(&fmts[EPT], s & ~B(9), 1));
	/* non-leaf entries: the fast path and D never touch them */
	for (int k = 0; k < NFMT; k++) {
		assert_int_equal(vmmu_spte_make_nonleaf(&fmts[k], 0x10, &s), 0);
		for (int level = 2; level <= 4; level++) {
			assert_false(vmmu_spte_needs_atomic_update(&fmts[k], s, level));
			/* ... but the CPU may set A in one whose A is clear */
			assert_int_equal(vmmu_spte_is_volatile(&fmts[k], s & ~bitsof[k].a, level), bitsof[k].ad);
			assert_false(vmmu_spte_is_volatile(&fmts[k], s, level));
		}
	}
}

/* Split a huge leaf, check each child, collapse back to the same value. */
static void split_collapse(int k, uint64_t huge, int level, unsigned int flags)
{
	const struct vmmu_spte_format *f = &fmts[k];
	uint64_t child[512], back = 0, pages = 1ULL << (9 * (level - 2));
	uint64_t same = ~(0x000ffffffffff000ULL | B(7));

	assert_int_equal(vmmu_spte_split(f, huge, level, flags, child), 0);
	for (unsigned int i = 0; i < 512; i++) {
		assert_true(vmmu_spte_to_pfn(f, child[i]) == vmmu_spte_to_pfn(f, huge) + i * pages);
		assert_int_equal(vmmu_spte_is_huge(f, child[i]), level == 3);
		assert_true(vmmu_spte_is_leaf(f, child[i], level - 1));
		assert_false(vmmu_spte_is_rsvd(f, child[i], level - 1));
		if (!(flags && level == 2))
			assert_true((child[i] & same) == (huge & same));
		else
			assert_true(vmmu_spte_to_access(f, child[i]) & VMMU_ACC_EXEC);
		assert_int_equal(vmmu_spte_is_writable(f, child[i]), vmmu_spte_is_writable(f, huge));
		assert_int_equal(vmmu_spte_is_dirty(f, child[i]), vmmu_spte_is_dirty(f, huge));
	}
	assert_int_equal(vmmu_spte_collapse(f, child, level, flags, &back), 0);
	assert_true(back == huge);
}

static void test_split_collapse_round_trip(void **state)
{
	(void)state;
	for (int k = 0; k < NFMT; k++)
		for (int level = 2; level <= 3; level++) {
			uint64_t pfn = 3ULL << (9 * (level - 1));
			const unsigned int flagset[] = { RW, 0, VMMU_SPTE_HOST_WRITABLE, VMMU_SPTE_PREFETCH,
							 RW | VMMU_SPTE_PREFETCH };

			for (size_t i = 0; i < sizeof(flagset) / sizeof(flagset[0]); i++)
				for (unsigned int acc = 1; acc <= VMMU_ACC_ALL; acc++) {
					uint64_t h = leaf(k, pfn, level, acc, flagset[i]);

					split_collapse(k, h, level, 0);
					split_collapse(k, vmmu_spte_wrprot_for_dirty_log(&fmts[k], h), level, 0);
					split_collapse(k, vmmu_spte_mark_access_track(&fmts[k], h), level, 0);
				}
			/* NX huge pages: the huge leaf lost exec, 4K children get it back, collapse drops it */
			split_collapse(k, leaf(k, pfn, level, VMMU_ACC_ALL, RW | VMMU_SPTE_NX_HUGE), level,
				       VMMU_SPTE_NX_HUGE);
			split_collapse(k,
				       vmmu_spte_mark_access_track(
					       &fmts[k], leaf(k, pfn, level, VMMU_ACC_ALL, VMMU_SPTE_NX_HUGE)),
				       level, VMMU_SPTE_NX_HUGE);
		}
}

/* A and D of the children are merged, not lost; access tracking likewise. */
static void test_collapse_merges_ad(void **state)
{
	uint64_t child[512], out;

	(void)state;
	for (int k = 0; k < NFMT; k++) {
		const struct vmmu_spte_format *f = &fmts[k];
		uint64_t h = leaf(k, 0x400, 2, VMMU_ACC_ALL, VMMU_SPTE_HOST_WRITABLE);

		assert_int_equal(vmmu_spte_split(f, h, 2, 0, child), 0);
		for (unsigned int i = 0; i < 512; i++)
			child[i] = vmmu_spte_mark_access_track(f, child[i]);
		assert_int_equal(vmmu_spte_collapse(f, child, 2, 0, &out), 0);
		assert_true(out == vmmu_spte_mark_access_track(f, h)); /* nobody young */
		child[77] = vmmu_spte_restore_access_track(f, child[77]) | (bitsof[k].ad ? bitsof[k].a : 0);
		assert_int_equal(vmmu_spte_collapse(f, child, 2, 0, &out), 0);
		assert_true(out == h); /* one young child makes the huge page young */
		if (bitsof[k].ad) {
			child[300] |= bitsof[k].d;
			assert_int_equal(vmmu_spte_collapse(f, child, 2, 0, &out), 0);
			assert_true(out == (h | bitsof[k].d));
		}
	}
}

static void test_split_collapse_rejects(void **state)
{
	struct log_capture log;
	uint64_t child[512], good[512], out = 17;

	(void)state;
	log_capture_start(&log);
	for (int k = 0; k < NFMT; k++) {
		const struct vmmu_spte_format *f = &fmts[k];
		uint64_t h = leaf(k, 0x400, 2, VMMU_ACC_ALL, RW);
		int lines = log.lines;

		assert_int_equal(vmmu_spte_split(f, h, 2, 0, good), 0);
		memcpy(child, good, sizeof(child));
		child[3] = good[4]; /* frames out of order */
		assert_int_equal(vmmu_spte_collapse(f, child, 2, 0, &out), -EINVAL);
		memcpy(child, good, sizeof(child));
		child[511] = vmmu_spte_wrprot_for_dirty_log(f, good[511]); /* one write-protected */
		assert_int_equal(vmmu_spte_collapse(f, child, 2, 0, &out), -EINVAL);
		memcpy(child, good, sizeof(child));
		child[0] = VMMU_SPTE_NONPRESENT;
		assert_int_equal(vmmu_spte_collapse(f, child, 2, 0, &out), -EINVAL);
		for (unsigned int i = 0; i < 512; i++)
			child[i] = good[i] + 0x1000; /* contiguous but not 2M aligned */
		assert_int_equal(vmmu_spte_collapse(f, child, 2, 0, &out), -EINVAL);
		assert_int_equal(vmmu_spte_collapse(f, good, 3, 0, &out), -EINVAL); /* 4K children for 1G */
		assert_int_equal(vmmu_spte_collapse(f, good, 1, 0, &out), -EINVAL);
		assert_int_equal(vmmu_spte_collapse(f, good, 4, 0, &out), -EINVAL);
		assert_int_equal(vmmu_spte_collapse(f, good, 2, 0x80, &out), -EINVAL);
		assert_int_equal(vmmu_spte_collapse(f, NULL, 2, 0, &out), -EINVAL);
		assert_int_equal(vmmu_spte_collapse(f, good, 2, 0, NULL), -EINVAL);
		assert_true(out == 17);

		assert_int_equal(vmmu_spte_split(f, good[0], 2, 0, child), -EINVAL); /* not huge */
		assert_int_equal(vmmu_spte_split(f, VMMU_SPTE_NONPRESENT | B(7), 2, 0, child), -EINVAL);
		assert_int_equal(vmmu_spte_split(f, h + 0x1000, 2, 0, child), -EINVAL); /* misaligned */
		assert_int_equal(vmmu_spte_split(f, h, 1, 0, child), -EINVAL);
		assert_int_equal(vmmu_spte_split(f, h, 4, 0, child), -EINVAL);
		assert_int_equal(vmmu_spte_split(f, h, 2, 1, child), -EINVAL);
		assert_int_equal(vmmu_spte_split(f, h, 2, 0, NULL), -EINVAL);
		assert_int_equal(vmmu_spte_split(NULL, h, 2, 0, child), -EINVAL);
		assert_int_equal(log.lines - lines, 18);
	}
	log_capture_stop();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_write_protect),
		cmocka_unit_test(test_access_tracking),
		cmocka_unit_test(test_clear_dirty),
		cmocka_unit_test(test_flush_cases),
		cmocka_unit_test(test_flush_and_atomic_reference),
		cmocka_unit_test(test_atomic_cases),
		cmocka_unit_test(test_split_collapse_round_trip),
		cmocka_unit_test(test_collapse_merges_ad),
		cmocka_unit_test(test_split_collapse_rejects),
	};
	return cmocka_run_group_tests(tests, setup, NULL);
}
