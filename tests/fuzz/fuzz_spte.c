/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target for SPTEs. From the input it takes a format, builder inputs, an
 * MMIO frame and generation, and a raw 64-bit value, then checks:
 *  - a leaf that builds passes the validator, decodes back to its inputs, and
 *    stays valid and consistent (W => MMU-writable => host-writable) through
 *    every transition; a huge one splits and collapses back to itself;
 *  - a refused leaf is refused for a reason the inputs show;
 *  - MMIO SPTEs round-trip, fault, and are refused exactly past the largest gfn;
 *  - on the raw value, the validator agrees with a reference written from the
 *    reserved-bit table, and the predicates are consistent with each other.
 * A violated check aborts.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libvmmu/spte.h>
#include <libvmmu/vmmu.h>

#define CHECK(c)                                                                        \
	do {                                                                            \
		if (!(c)) {                                                             \
			fprintf(stderr, "fuzz_spte: %s:%d: %s\n", __FILE__, __LINE__, #c); \
			abort();                                                        \
		}                                                                       \
	} while (0)

struct in {
	const uint8_t *p;
	size_t n;
};

static uint64_t take(struct in *in, unsigned int bytes)
{
	uint64_t v = 0;

	for (unsigned int i = 0; i < bytes; i++) {
		v = v << 8 | (in->n ? *in->p : 0);
		if (in->n) {
			in->p++;
			in->n--;
		}
	}
	return v;
}

static uint64_t mask(unsigned int h, unsigned int l)
{
	uint64_t m = 0;

	for (unsigned int b = l; b <= h && b < 64; b++)
		m |= 1ULL << b;
	return m;
}

/* Facts sheet 1.2 and appendix A, for a present entry, bit by bit. */
static bool ref_rsvd(const struct vmmu_spte_format *f, uint64_t s, int level)
{
	bool ept = f->kind == VMMU_SPTE_KIND_EPT, ps = s & (1ULL << 7);
	uint64_t r = mask(51, f->maxphyaddr);

	if (!(ept ? s & 7 : s & 1))
		return false;
	if (ept) {
		unsigned int mt = (s >> 3) & 7, xwr = s & 7;

		if (mt == 2 || mt == 3 || mt == 7 || xwr == 2 || xwr == 6 || (xwr == 4 && !f->exec_only))
			return true;
	}
	if (level >= 4)
		r |= ept ? mask(7, 3) : (1ULL << 7) | (1ULL << 8);
	else if (level > 1 && ps && level > f->max_leaf_level)
		r |= 1ULL << 7;
	else if (level > 1 && ps)
		r |= mask(level == 2 ? 20 : 29, ept ? 12 : 13);
	else if (level > 1 && ept)
		r |= mask(6, 3);
	return s & r;
}

static void check_invariants(const struct vmmu_spte_format *f, uint64_t s, int level)
{
	CHECK(vmmu_spte_is_present(f, s));
	CHECK(!vmmu_spte_is_mmio(f, s));
	CHECK(!vmmu_spte_is_rsvd(f, s, level));
	CHECK(!vmmu_spte_is_writable(f, s) || vmmu_spte_is_mmu_writable(f, s));
	CHECK(!vmmu_spte_is_mmu_writable(f, s) || vmmu_spte_is_host_writable(f, s));
	CHECK(!vmmu_spte_is_access_track(f, s) || !vmmu_spte_is_shadow_present(f, s));
	CHECK(!vmmu_spte_needs_atomic_update(f, s, level) || vmmu_spte_is_volatile(f, s, level));
	CHECK(!vmmu_spte_needs_tlb_flush(f, s, s, level));
}

static void check_leaf(const struct vmmu_spte_format *f, uint64_t s, uint64_t pfn, int level, unsigned int acc,
		       unsigned int flags)
{
	const uint64_t next[] = {
		vmmu_spte_wrprot_for_dirty_log(f, s), vmmu_spte_wrprot_for_shadowing(f, s),
		vmmu_spte_mark_access_track(f, s),    vmmu_spte_clear_accessed(f, s),
		vmmu_spte_clear_dirty(f, s),          vmmu_spte_restore_access_track(f, s),
		vmmu_spte_restore_writable(f, s),
	};
	bool x = (acc & VMMU_ACC_EXEC) && !(level > 1 && (flags & VMMU_SPTE_NX_HUGE));
	unsigned int got = vmmu_spte_to_access(f, s);
	uint64_t child[512], back;

	check_invariants(f, s, level);
	CHECK(vmmu_spte_to_pfn(f, s) == pfn);
	CHECK(vmmu_spte_is_leaf(f, s, level) && vmmu_spte_is_huge(f, s) == (level > 1));
	CHECK(!!(got & VMMU_ACC_EXEC) == x);
	CHECK(!(got & VMMU_ACC_WRITE) || (acc & VMMU_ACC_WRITE));
	/* EPT without execute-only makes every leaf readable */
	CHECK(!!(got & VMMU_ACC_USER) == ((acc & VMMU_ACC_USER) || (f->present & f->user)));
	CHECK(vmmu_spte_is_host_writable(f, s) == !!(flags & VMMU_SPTE_HOST_WRITABLE));
	CHECK(vmmu_spte_is_mmu_writable(f, s) == ((acc & VMMU_ACC_WRITE) && (flags & VMMU_SPTE_HOST_WRITABLE) &&
						  (flags & VMMU_SPTE_CAN_WRITE)));
	CHECK(vmmu_spte_is_accessed(f, s) == !(flags & VMMU_SPTE_PREFETCH));
	for (size_t i = 0; i < sizeof(next) / sizeof(next[0]); i++) {
		check_invariants(f, next[i], level);
		CHECK(vmmu_spte_to_pfn(f, next[i]) == pfn);
	}
	/* only shadowing write protection forces a flush */
	CHECK(!vmmu_spte_needs_tlb_flush(f, s, next[0], level));
	CHECK(vmmu_spte_needs_tlb_flush(f, s, next[1], level) == vmmu_spte_is_mmu_writable(f, s));
	CHECK(!vmmu_spte_needs_tlb_flush(f, s, next[2], level));
	CHECK(vmmu_spte_needs_tlb_flush(f, s, VMMU_SPTE_NONPRESENT, level));
	CHECK(vmmu_spte_restore_access_track(f, next[2]) == (vmmu_spte_is_ad_enabled(f, s) ? next[2] : next[0]) ||
	      vmmu_spte_is_access_track(f, s));
	if (level > 1) {
		CHECK(vmmu_spte_split(f, s, level, 0, child) == 0);
		for (unsigned int i = 0; i < 512; i += 73)
			check_invariants(f, child[i], level - 1);
		CHECK(vmmu_spte_collapse(f, child, level, 0, &back) == 0 && back == s);
	}
}

static void check_mmio(const struct vmmu_spte_format *f, uint64_t gfn, unsigned int acc, uint64_t gen)
{
	uint64_t s = 0x1234;
	int r = vmmu_spte_make_mmio(f, gfn, acc, gen, &s);

	if (acc > VMMU_ACC_ALL) {
		CHECK(r == -EINVAL && s == 0x1234);
		return;
	}
	if (f->kind == VMMU_SPTE_KIND_LEGACY && f->maxphyaddr == 52) {
		CHECK(r == -EOPNOTSUPP && s == 0x1234);
		return;
	}
	if (gfn >= (1ULL << (f->maxphyaddr - 12))) {
		CHECK(r == -ERANGE && s == 0x1234);
		return;
	}
	CHECK(r == 0);
	CHECK(vmmu_spte_is_mmio(f, s) && vmmu_spte_is_mmio_gen(f, s, gen));
	CHECK(!vmmu_spte_is_mmio_gen(f, s, gen + 1));
	CHECK(vmmu_spte_to_mmio_gfn(f, s) == gfn);
	CHECK(vmmu_spte_to_mmio_gen(f, s) == (gen & 0x7ffff));
	CHECK(vmmu_spte_to_mmio_access(f, s) == (f->kind == VMMU_SPTE_KIND_EPT ? 0 : acc & 6));
	CHECK(!vmmu_spte_is_present(f, s) && !vmmu_spte_needs_atomic_update(f, s, 1));
	for (int level = 1; level <= f->levels; level++)
		CHECK(vmmu_spte_is_rsvd(f, s, level));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const enum vmmu_paging_mode modes[] = { VMMU_PAGING_EPT4, VMMU_PAGING_EPT5, VMMU_PAGING_4LEVEL,
						       VMMU_PAGING_5LEVEL };
	struct in in = { data, size };
	struct vmmu_spte_format_opts o = { .size = sizeof(o) };
	struct vmmu_spte_format f;
	uint64_t b = take(&in, 1), pfn, raw, gfn, s = 0;
	unsigned int acc, mt, flags, shift;
	int level, r;

	vmmu_set_log(NULL, VMMU_LOG_ERROR, NULL);
	o.mode = modes[b & 3];
	o.ad_disabled = b & 4;
	o.exec_only = b & 8;
	o.max_leaf_level = (b >> 4) & 3;
	o.maxphyaddr = 32 + take(&in, 1) % 21;
	if (vmmu_spte_format_init(&f, &o))
		return 0;

	b = take(&in, 1);
	level = (int)(b & 7);
	acc = (b >> 3) & 15;
	b = take(&in, 2);
	mt = b & 15;
	flags = (b >> 4) & 0x7f;
	pfn = take(&in, 8);
	if (pfn & 1) /* often in range, aligned, and near the top */
		pfn = (pfn >> 1) & f.max_pfn & ~((1ULL << (9 * (level >= 1 && level <= 3 ? level - 1 : 0))) - 1);
	r = vmmu_spte_make_leaf(&f, pfn, level, acc, mt, flags, &s);
	if (r >= 0)
		check_leaf(&f, s, pfn, level, acc, flags);
	else
		CHECK((r == -ERANGE && pfn > f.max_pfn) ||
		      (r == -EINVAL && (acc > 7 || flags > 63 || level < 1 || level > f.max_leaf_level ||
					(mt != 0 && mt != 1 && mt != 4 && mt != 5 && mt != 6) ||
					(pfn & ((1ULL << (9 * (level - 1))) - 1)) || (flags & VMMU_SPTE_WRPROT_ONLY) ||
					f.exec_only)));

	gfn = take(&in, 8);
	shift = take(&in, 1) & 31;
	acc = take(&in, 1) & 15;
	check_mmio(&f, gfn >> shift, acc, take(&in, 4));

	raw = take(&in, 8);
	for (level = 1; level <= f.levels; level++) {
		CHECK(vmmu_spte_is_rsvd(&f, raw, level) == ref_rsvd(&f, raw, level));
		CHECK(!vmmu_spte_needs_tlb_flush(&f, raw, raw, level));
	}
	CHECK(!vmmu_spte_needs_atomic_update(&f, raw, 2) || vmmu_spte_is_volatile(&f, raw, 2));
	CHECK(!vmmu_spte_is_shadow_present(&f, raw) || vmmu_spte_is_present(&f, raw));
	return 0;
}
