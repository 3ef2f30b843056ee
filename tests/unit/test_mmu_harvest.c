/* SPDX-License-Identifier: MIT */
/*
 * Re-protection after a dirty-log harvest, against a simple model: after a
 * write fault a 4 KiB SPTE is writable and its page dirty; a get or a clear
 * makes exactly the harvested pages read-only again (MMU-writable kept).
 * Slots start off 64- and 512-page alignment so bitmap words straddle table
 * boundaries. Each scenario runs twice: through the direct tables (the TDP
 * path) and through the rmaps (the path an MMU with indirect pages takes);
 * both must match the model. Huge leaves (INITIALLY_SET) become read-only
 * exactly where a cleared page falls.
 */
#include <string.h>

#include <libvmmu/vm.h>

#include "helpers.h"
#include "mmu/mmu_internal.h"

#define NSLOTS 2
#define MAX_WORDS 64 /* bitmap words of the largest slot */

static const struct {
	vmmu_gfn_t base;
	uint64_t npages;
} slot_geom[NSLOTS] = {
	{ 0x1003, 3000 },  /* not 64-aligned: words straddle 512-page tables */
	{ 0x10000, 1500 }, /* aligned, size not a multiple of 64 */
};

static void noflush(void *opaque) { (void)opaque; }

/* The SPTE mapping @gpa at its leaf level (walk from @v's root); *@level set. */
static uint64_t leaf_of(struct vmmu_mmu_vcpu *v, vmmu_gpa_t gpa, int *level)
{
	struct vmmu_mmu *mmu = v->mmu;
	uint64_t *table;

	assert_int_equal(vmmu_mmu_vcpu_root(v, &table), 0);
	for (int l = mmu->root_level;; l--) {
		uint64_t spte = spte_get(&table[spte_index(gpa, l)]);

		assert_true(spte & VMMU_SPTE_MMU_PRESENT);
		if (l == 1 || vmmu_spte_is_leaf(&mmu->fmt, spte, l)) {
			*level = l;
			return spte;
		}
		table = spte_to_child(spte);
	}
}

struct model {
	bool *writable[NSLOTS], *dirty[NSLOTS];
};

static void check_model(struct vmmu_mmu *mmu, struct vmmu_mmu_vcpu *v, const struct model *m)
{
	for (int s = 0; s < NSLOTS; s++) {
		uint64_t bm[MAX_WORDS];
		int64_t n = 0;

		for (uint64_t p = 0; p < slot_geom[s].npages; p++)
			n += m->dirty[s][p];
		assert_int_equal(vmmu_mmu_dirty_log_peek(mmu, (uint32_t)s, bm), n);
		for (uint64_t p = 0; p < slot_geom[s].npages; p++) {
			int level;
			uint64_t spte = leaf_of(v, (slot_geom[s].base + p) << 12, &level);

			assert_int_equal(level, 1);
			if (!!(spte & VMMU_SPTE_WRITABLE) != m->writable[s][p])
				fail_msg("slot %d page %llu: W %d, model %d", s, (unsigned long long)p,
					 !!(spte & VMMU_SPTE_WRITABLE), m->writable[s][p]);
			assert_true(vmmu_spte_is_mmu_writable(&mmu->fmt, spte));
			assert_int_equal(!!(bm[p / 64] & (1ULL << (p % 64))), m->dirty[s][p]);
		}
	}
	assert_int_equal(vmmu_mmu_audit(mmu), 0);
}

static void run_4k(bool via_rmaps)
{
	struct vmmu_mmu_options o = { .size = sizeof(o), .flags = VMMU_MMU_F_NO_HUGE };
	struct vmmu_mmu_callbacks cb = { .flush_tlbs = noflush };
	struct vmmu_guestmem mem[NSLOTS];
	struct vmmu_mmu_vcpu *v;
	struct vmmu_mmu *mmu;
	struct model m;
	uint64_t seed = 0x5eed0001;

	assert_int_equal(vmmu_mmu_create(&mmu, &o, &cb), 0);
	assert_int_equal(vmmu_mmu_vcpu_create(mmu, 0, &v), 0);
	for (int s = 0; s < NSLOTS; s++) {
		assert_int_equal(vmmu_guestmem_init(&mem[s], slot_geom[s].npages << 12, VMMU_GUESTMEM_DEFAULT), 0);
		assert_int_equal(vmmu_mmu_memslot_set(mmu, (uint32_t)s, slot_geom[s].base << 12, slot_geom[s].npages << 12,
						      mem[s].hva, 0), 0);
		for (uint64_t p = 0; p < slot_geom[s].npages; p++)
			assert_int_equal(vmmu_mmu_page_fault(v, (slot_geom[s].base + p) << 12, VMMU_PFERR_WRITE, NULL),
					 VMMU_FAULT_FIXED);
		assert_int_equal(vmmu_mmu_memslot_set(mmu, (uint32_t)s, slot_geom[s].base << 12,
						      slot_geom[s].npages << 12, mem[s].hva, VMMU_MEMSLOT_LOG_DIRTY), 0);
		m.writable[s] = calloc(slot_geom[s].npages, sizeof(bool));
		m.dirty[s] = calloc(slot_geom[s].npages, sizeof(bool));
	}
	/* as if a shadow page existed: every harvest then goes through the rmaps */
	mmu->has_indirect = via_rmaps;
	check_model(mmu, v, &m);
	for (int round = 0; round < 40; round++) {
		int s = (int)(test_rand64(&seed) % NSLOTS);
		uint64_t np = slot_geom[s].npages, words = (np + 63) / 64, bm[MAX_WORDS], mask[MAX_WORDS];
		/* sparse, dense or in between */
		uint64_t every = 1 + test_rand64(&seed) % (round % 3 == 0 ? 2 : 200);

		for (uint64_t p = test_rand64(&seed) % every; p < np; p += every) {
			/* a page still writable since its last write: nothing to fix */
			assert_int_equal(vmmu_mmu_page_fault(v, (slot_geom[s].base + p) << 12,
							     VMMU_PFERR_WRITE | VMMU_PFERR_PRESENT, NULL),
					 m.writable[s][p] ? VMMU_FAULT_SPURIOUS : VMMU_FAULT_FIXED);
			m.writable[s][p] = m.dirty[s][p] = true;
		}
		check_model(mmu, v, &m);
		if (round % 4 == 3) {
			int64_t n = 0;

			for (uint64_t p = 0; p < np; p++)
				n += m.dirty[s][p];
			assert_int_equal(vmmu_mmu_dirty_log_get(mmu, (uint32_t)s, bm), n);
			for (uint64_t p = 0; p < np; p++)
				m.writable[s][p] = m.dirty[s][p] = false;
		} else {
			/* clear random bits of a random 64-aligned range */
			uint64_t first = 64 * (test_rand64(&seed) % words), len = np - first;
			int64_t n = 0;

			/* KVM's rule: a multiple of 64 pages, or up to the slot's end */
			if (test_rand64(&seed) & 1)
				len = 64 * (1 + test_rand64(&seed) % ((len + 63) / 64));
			if (len > np - first)
				len = np - first;
			memset(mask, 0, sizeof(mask));
			for (uint64_t i = 0; i < len; i++)
				if (test_rand64(&seed) & 1) {
					mask[i / 64] |= 1ULL << (i % 64);
					n += m.dirty[s][first + i];
					m.writable[s][first + i] = m.dirty[s][first + i] = false;
				}
			assert_int_equal(vmmu_mmu_dirty_log_clear(mmu, (uint32_t)s, first, len, mask), n);
		}
		check_model(mmu, v, &m);
	}
	vmmu_mmu_vcpu_destroy(v);
	vmmu_mmu_destroy(mmu);
	for (int s = 0; s < NSLOTS; s++) {
		vmmu_guestmem_finish(&mem[s]);
		free(m.writable[s]);
		free(m.dirty[s]);
	}
}

static void test_4k_via_tables(void **state)
{
	(void)state;
	run_4k(false);
}

static void test_4k_via_rmaps(void **state)
{
	(void)state;
	run_4k(true);
}

/*
 * INITIALLY_SET keeps huge leaves writable; a clear makes read-only exactly the
 * 2 MiB leaves holding a cleared page. The slot starts 10 pages before a 2 MiB
 * boundary, so its first word spans two regions; five full regions follow.
 */
#define HUGE_LEAD 10
#define HUGE_REGIONS 5
#define HUGE_BASE ((1ULL << 18) - HUGE_LEAD) /* gfn */
#define HUGE_NPAGES (HUGE_LEAD + HUGE_REGIONS * 512)

static void run_huge(bool via_rmaps)
{
	struct vmmu_mmu_options o = { .size = sizeof(o), .flags = VMMU_MMU_F_INITIALLY_SET };
	struct vmmu_mmu_callbacks cb = { .flush_tlbs = noflush };
	static const bool read_only[HUGE_REGIONS] = { true, true, false, true, true };
	uint64_t mask[(HUGE_NPAGES + 63) / 64] = { 0 };
	struct vmmu_guestmem mem;
	struct vmmu_mmu_vcpu *v;
	struct vmmu_mmu *mmu;
	struct vmmu_mmu_stats st = { .size = sizeof(st) };
	uint8_t *hva;
	int level;

	assert_int_equal(vmmu_mmu_create(&mmu, &o, &cb), 0);
	assert_int_equal(vmmu_mmu_vcpu_create(mmu, 0, &v), 0);
	assert_int_equal(vmmu_guestmem_init(&mem, (HUGE_REGIONS + 1) << 21, VMMU_GUESTMEM_DEFAULT), 0);
	/* host address of the first full region 2 MiB aligned, as the guest's */
	hva = (uint8_t *)mem.hva + ((512 - HUGE_LEAD) << 12);
	assert_int_equal(vmmu_mmu_memslot_set(mmu, 0, HUGE_BASE << 12, HUGE_NPAGES << 12, hva, 0), 0);
	for (uint64_t r = 0; r < HUGE_REGIONS; r++)
		assert_int_equal(vmmu_mmu_page_fault(v, (1ULL << 30) + (r << 21), VMMU_PFERR_WRITE, NULL), VMMU_FAULT_FIXED);
	assert_int_equal(vmmu_mmu_get_stats(mmu, &st), 0);
	if (st.huge_mapped[1] != HUGE_REGIONS)
		fail_msg("expected %d 2 MiB leaves (is the guest memory 2 MiB aligned?), got %llu", HUGE_REGIONS,
			 (unsigned long long)st.huge_mapped[1]);
	assert_int_equal(vmmu_mmu_memslot_set(mmu, 0, HUGE_BASE << 12, HUGE_NPAGES << 12, hva, VMMU_MEMSLOT_LOG_DIRTY), 0);
	mmu->has_indirect = via_rmaps;
	/* one call (slot-relative pages; region k holds pages 10 + 512k .. 521 + 512k) */
	mask[0] = 1 | 1ULL << 63;                     /* a lead page (4 KiB, unmapped) and a page of region 0 */
	mask[600 / 64] |= 1ULL << (600 % 64);         /* two words of region 1 */
	mask[700 / 64] |= 1ULL << (700 % 64);
	mask[2057 / 64] |= 1ULL << (2057 % 64);       /* one word: the last page of region 3, the first of 4 */
	mask[2058 / 64] |= 1ULL << (2058 % 64);
	assert_int_equal(vmmu_mmu_dirty_log_clear(mmu, 0, 0, HUGE_NPAGES, mask), 6);
	for (uint64_t r = 0; r < HUGE_REGIONS; r++) {
		uint64_t spte = leaf_of(v, (1ULL << 30) + (r << 21) + 0x5000, &level);

		assert_int_equal(level, 2);
		if (!!(spte & VMMU_SPTE_WRITABLE) == read_only[r])
			fail_msg("2 MiB region %llu: W %d", (unsigned long long)r, !!(spte & VMMU_SPTE_WRITABLE));
		assert_true(vmmu_spte_is_mmu_writable(&mmu->fmt, spte));
	}
	assert_int_equal(vmmu_mmu_audit(mmu), 0);
	vmmu_mmu_vcpu_destroy(v);
	vmmu_mmu_destroy(mmu);
	vmmu_guestmem_finish(&mem);
}

static void test_huge_via_tables(void **state)
{
	(void)state;
	run_huge(false);
}

static void test_huge_via_rmaps(void **state)
{
	(void)state;
	run_huge(true);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_4k_via_tables),
		cmocka_unit_test(test_4k_via_rmaps),
		cmocka_unit_test(test_huge_via_tables),
		cmocka_unit_test(test_huge_via_rmaps),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
