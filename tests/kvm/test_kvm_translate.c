/* SPDX-License-Identifier: MIT */
/*
 * GVA translation against KVM's own walker (KVM_TRANSLATE), over random
 * 4-level guest tables: random present / writable / user / NX bits, 2 MiB
 * leaves, 1 GiB leaves (reserved on this machine: no 1 GiB pages in CPUID),
 * reserved physical-address bits (MAXPHYADDR 46), shared sub-tables.
 *
 *  - KVM_TRANSLATE agrees with a deliberately simple reference walk written
 *    here (present + reserved bits, the only rules a supervisor read meets);
 *  - vmmu_vcpu_translate() (the libvmmu walker over the vCPU's registers)
 *    agrees with KVM_TRANSLATE on validity and GPA for thousands of GVAs.
 *    Skipped, with the reason, where the library has no walker.
 */
#include "helpers.h"
#include "guest.h"

#include <libvmmu/kvm.h>

#define POOL_GPA   0x100000ULL /* table pages live in [1 MiB, 2 MiB) of the system slot */
#define POOL_PAGES 256
#define MAXPHY     46
#define ROUNDS     8
#define GVAS       1000

static uint64_t seed = 0x5eed0f7ab1e5ULL;

static uint64_t rnd(uint64_t n)
{
	return test_rand64(&seed) % n;
}

static uint64_t rsvd_bit(void)
{
	return 1ULL << (MAXPHY + rnd(52 - MAXPHY)); /* bits 51:46 */
}

/* Random entry at @level (4 = PML4E) pointing at a pool page or, for a leaf, anywhere. */
static uint64_t random_entry(int level)
{
	uint64_t e = 0;

	if (rnd(10) < 8)
		e |= 1; /* P */
	e |= rnd(2) << 1 | rnd(2) << 2 | rnd(2) << 63; /* W, U, NX */
	if (rnd(25) == 0)
		e |= rsvd_bit();
	if ((level == 2 || level == 3) && rnd(4) == 0) {
		uint64_t size_shift = level == 2 ? 21 : 30;

		e |= 1ULL << 7; /* PS: 2 MiB leaf, or a 1 GiB leaf (reserved here) */
		e |= (rnd(1ULL << (MAXPHY - size_shift)) << size_shift);
		if (rnd(20) == 0)
			e |=
			    1ULL << (size_shift - 1); /* a reserved bit inside the large-page address field */
		return e;
	}
	if (level == 1)
		return e | rnd(1ULL << (MAXPHY - 12)) << 12;
	if (level == 4 && rnd(30) == 0)
		e |= 1ULL << 7; /* PS in a PML4E: reserved */
	return e | (POOL_GPA + (1 + rnd(POOL_PAGES - 1)) * 4096);
}

static void build_random_tables(struct guest *g)
{
	for (uint64_t p = 0; p < POOL_PAGES; p++) {
		/* Every pool page plays any level: each entry is drawn for a random level. */
		uint64_t *t = guest_u64(g, POOL_GPA + p * 4096);

		for (int i = 0; i < 512; i++)
			t[i] = random_entry(1 + (int)rnd(4));
	}
}

/*
 * Reference: a supervisor read in 4-level paging with NXE=1, CR4.PSE irrelevant,
 * no SMAP/PKE. Fails on a non-present entry or a reserved bit. Returns valid/GPA.
 */
static bool ref_walk(struct guest *g, uint64_t cr3, uint64_t gva, uint64_t *gpa)
{
	const uint64_t addr_mask = ((1ULL << MAXPHY) - 1) & ~0xfffULL,
		       rsvd_hi = ((1ULL << 52) - 1) & ~((1ULL << MAXPHY) - 1);
	uint64_t table = cr3 & addr_mask;

	for (int level = 4; level >= 1; level--) {
		uint64_t idx = (gva >> (12 + 9 * (level - 1))) & 511, e;

		if (table >= GUEST_SYS_SIZE)
			return false; /* never generated */
		e = *guest_u64(g, table + idx * 8);
		if (!(e & 1))
			return false;
		if (e & rsvd_hi)
			return false;
		if (level == 4 && (e & (1ULL << 7)))
			return false;
		if (level == 3 && (e & (1ULL << 7)))
			return false; /* 1 GiB pages do not exist on this machine */
		if (level == 2 && (e & (1ULL << 7))) {
			if (e & 0x1fe000ULL) /* bits 20:13 of a 2 MiB PDE are reserved */
				return false;
			*gpa = (e & addr_mask & ~0x1fffffULL) | (gva & 0x1fffff);
			return true;
		}
		if (level == 1) {
			*gpa = (e & addr_mask) | (gva & 0xfff);
			return true;
		}
		table = e & addr_mask;
	}
	return false;
}

static uint64_t random_gva(void)
{
	uint64_t pml4i;

	do
		pml4i = rnd(512);
	while (pml4i == 256); /* PML4 slot 256 belongs to the host here (machine.md) */
	uint64_t gva = pml4i << 39 | rnd(1ULL << 39);

	if (gva & (1ULL << 47))
		gva |= 0xffff000000000000ULL; /* canonical */
	return gva;
}

static void set_root(struct guest *g, uint64_t root)
{
	struct vmmu_sregs s;

	assert_int_equal(vmmu_vcpu_get_sregs(g->vcpu, &s), 0);
	s.cr3 = root;
	assert_int_equal(vmmu_vcpu_set_sregs(g->vcpu, &s), 0);
}

/* The other side of a comparison: valid and GPA for @gva under @root. */
typedef bool (*translate_fn)(struct guest *g, uint64_t root, uint64_t gva, uint64_t *gpa);

static bool by_reference(struct guest *g, uint64_t root, uint64_t gva, uint64_t *gpa)
{
	return ref_walk(g, root, gva, gpa);
}

static bool by_walker(struct guest *g, uint64_t root, uint64_t gva, uint64_t *gpa)
{
	struct vmmu_walk_result res;
	/* NO_AD: leave the tables as KVM will see them. */
	int out = vmmu_vcpu_translate(g->vcpu, gva, VMMU_WALK_READ | VMMU_WALK_NO_AD, &res);

	(void)root;
	assert_true(out == VMMU_WALK_OK || out == VMMU_WALK_PAGE_FAULT);
	*gpa = res.gpa;
	return out == VMMU_WALK_OK;
}

/* KVM_TRANSLATE and @other agree on ROUNDS x GVAS random GVAs over fresh random tables. */
static void compare_with_kvm(translate_fn other, const char *name)
{
	unsigned int valid = 0, total = 0;
	struct guest g;

	assert_int_equal(guest_create(&g, NULL, guest_hlt_start, guest_hlt_end, 0), 0);
	for (int round = 0; round < ROUNDS; round++) {
		uint64_t root = POOL_GPA + rnd(POOL_PAGES) * 4096;

		build_random_tables(&g);
		set_root(&g, root);
		for (int i = 0; i < GVAS; i++) {
			uint64_t gva = random_gva(), gpa = 0, kvm_gpa;
			bool kvm_valid, ok = other(&g, root, gva, &gpa);

			assert_int_equal(vmmu_kvm_translate(g.vcpu, gva, &kvm_gpa, &kvm_valid), 0);
			if (kvm_valid != ok || (ok && kvm_gpa != gpa))
				fail_msg("gva 0x%llx: KVM says %d/0x%llx, %s %d/0x%llx",
					 (unsigned long long)gva, kvm_valid, (unsigned long long)kvm_gpa,
					 name, ok, (unsigned long long)gpa);
			valid += ok;
			total++;
		}
	}
	printf("KVM_TRANSLATE and the %s agree on %u random GVAs (%u valid)\n", name, total, valid);
	assert_true(valid > total / 20 && valid < total - total / 20); /* both outcomes well exercised */
	guest_destroy(&g);
}

static void test_kvm_translate_matches_reference(void **state)
{
	(void)state;
	compare_with_kvm(by_reference, "reference walk");
}

static void test_walker_matches_kvm_translate(void **state)
{
	(void)state;
	compare_with_kvm(by_walker, "libvmmu walker");
}

/* "walker" as the argument: the walker comparison (exit 77 without the walker); else the reference one. */
int main(int argc, char **argv)
{
	const struct CMUnitTest ref[] = {
		cmocka_unit_test(test_kvm_translate_matches_reference),
	};
	const struct CMUnitTest walker[] = {
		cmocka_unit_test(test_walker_matches_kvm_translate),
	};

	guest_skip_without_kvm();
	if (argc > 1 && !strcmp(argv[1], "walker")) {
		guest_skip_without_walker();
		return cmocka_run_group_tests(walker, NULL, NULL);
	}
	return cmocka_run_group_tests(ref, NULL, NULL);
}
