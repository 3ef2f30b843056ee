/* SPDX-License-Identifier: MIT */
/*
 * Exhaustive permission test in the spirit of kvm-unit-tests x86/access.c:
 * every combination of PDE and PTE bits (P, W, U, NX, A, D, PS, protection
 * key, one reserved bit at a time) x access (read/write/fetch) x mode (user,
 * supervisor, implicit supervisor) x CR0.WP x CR4.SMEP x CR4.SMAP x EFLAGS.AC x
 * EFER.NXE x CR4.PKE (with three PKRU values), walked by the library and by the
 * reference model (paging_ref.c); outcome, error code, translation, effective
 * access and the A/D bits left in every entry must agree.
 *
 * 4-level paging runs the whole product (9.6 million walks); 5-level runs it
 * with CR0.WP=1, EFLAGS.AC=0 and a clear D in non-leaf PDEs only (the top
 * level adds no permission rule, so those dimensions are covered by the
 * 4-level run): 1.2 million walks. The counts printed at the end (and
 * asserted) show that every rule fired in both directions.
 */
#include <string.h>

#include "helpers.h"
#include "paging_ref.h"
#include <libvmmu/paging.h>

#define P  (1ULL << 0)
#define W  (1ULL << 1)
#define U  (1ULL << 2)
#define A  (1ULL << 5)
#define D  (1ULL << 6)
#define PS (1ULL << 7)
#define NX (1ULL << 63)
#define KEY1 (1ULL << 59)
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#define GVA 0x0000123440201000ULL

struct config {
	uint64_t pde, pte; /* pte unused when pde has PS */
};

static struct config configs[8 * 1024 + 256];
static unsigned int nconfigs;

static void add_config(uint64_t pde, uint64_t pte)
{
	configs[nconfigs++] = (struct config){ pde, pte };
}

static void build_configs(void)
{
	static const uint64_t flag[] = { P, W, U, NX, A, D };
	static const uint64_t rsvd_table[] = { 1ULL << 46, 1ULL << 51, 1ULL << 52 /* ignored */ };
	static const uint64_t rsvd_2m[] = { 1ULL << 13, 1ULL << 20, 1ULL << 46, 1ULL << 51, 1ULL << 12 /* PAT */ };

	nconfigs = 0;
	/* 4 KiB: PDE {P,W,U,NX,A,D (ignored in a non-leaf)} x PTE {P,W,U,NX,A,D} x key 0/1 */
	for (unsigned int a = 0; a < 64; a++) {
		for (unsigned int b = 0; b < 64; b++) {
			uint64_t pde = 0, pte = 0;

			for (unsigned int i = 0; i < 6; i++)
				pde |= (a >> i & 1) ? flag[i] : 0;
			for (unsigned int i = 0; i < 6; i++)
				pte |= (b >> i & 1) ? flag[i] : 0;
			add_config(pde, pte);
			add_config(pde, pte | KEY1);
		}
	}
	/* 2 MiB: PDE {P,W,U,NX,A,D} + PS x key */
	for (unsigned int a = 0; a < 64; a++) {
		uint64_t pde = PS;

		for (unsigned int i = 0; i < 6; i++)
			pde |= (a >> i & 1) ? flag[i] : 0;
		add_config(pde, 0);
		add_config(pde | KEY1, 0);
	}
	/* one reserved bit at a time, in a user and in a supervisor mapping */
	for (unsigned int u = 0; u < 2; u++) {
		uint64_t ok = P | W | A | (u ? U : 0);

		for (unsigned int i = 0; i < ARRAY_SIZE(rsvd_table); i++) {
			add_config(ok | rsvd_table[i], ok | D);
			add_config(ok, ok | D | rsvd_table[i]);
		}
		for (unsigned int i = 0; i < ARRAY_SIZE(rsvd_2m); i++)
			add_config(ok | D | PS | rsvd_2m[i], 0);
	}
}

struct counts {
	unsigned long walks, ok, pf, rsvd, pk, smap, smep, nx, set_d;
};

static void run(unsigned int levels, bool reduced)
{
	static const uint32_t accesses[] = {
		VMMU_WALK_READ, VMMU_WALK_WRITE, VMMU_WALK_FETCH,
		VMMU_WALK_USER, VMMU_WALK_USER | VMMU_WALK_WRITE, VMMU_WALK_USER | VMMU_WALK_FETCH,
		VMMU_WALK_USER | VMMU_WALK_IMPLICIT, VMMU_WALK_USER | VMMU_WALK_IMPLICIT | VMMU_WALK_WRITE,
		VMMU_WALK_USER | VMMU_WALK_IMPLICIT | VMMU_WALK_FETCH,
	};
	static const uint32_t pkrus[] = { 0x4, 0x8, 0xc }; /* key 1: AD, WD, both */
	struct ref_guest g;
	struct vmmu_paging_regs regs;
	struct vmmu_paging *ctx = NULL;
	struct counts n = { 0 };
	vmmu_gpa_t root, pde_gpa, pte_gpa, data;

	assert_int_equal(ref_guest_init(&g, 0x200000, 1 << 20), 0);
	root = ref_guest_alloc(&g);
	data = 0x40000000;
	pte_gpa = ref_map(&g, root, levels, GVA, data, 1, P | W | U | A, P);
	pde_gpa = pte_gpa;
	{
		struct vmmu_paging_regs r0 = { .cr0 = VMMU_CR0_PG | 1, .cr3 = root, .cr4 = VMMU_CR4_PAE,
					       .efer = VMMU_EFER_LME | VMMU_EFER_LMA, .maxphyaddr = 46 };
		struct vmmu_walk_result res;

		if (levels == 5)
			r0.cr4 |= VMMU_CR4_LA57;
		assert_int_equal(vmmu_paging_create(&ctx, g.mem, &r0), 0);
		assert_int_equal(vmmu_walk(ctx, GVA, VMMU_WALK_NO_AD, &res), VMMU_WALK_OK);
		pde_gpa = res.gpte_gpa[1];
		assert_int_equal(res.gpte_gpa[0], pte_gpa);
		regs = r0;
	}
	const uint64_t pt_addr = ref_get(&g, pde_gpa) & 0x000ffffffffff000ULL;

	for (unsigned int r = 0; r < 64; r++) {
		bool wp = r & 1, smep = r & 2, smap = r & 4, ac = r & 8, nxe = r & 16, pke = r & 32;
		unsigned int npk = pke ? 3 : 1;

		if (reduced && (!wp || ac))
			continue;
		for (unsigned int k = 0; k < npk; k++) {
			regs.cr0 = VMMU_CR0_PG | 1 | (wp ? VMMU_CR0_WP : 0);
			regs.cr4 = VMMU_CR4_PAE | (levels == 5 ? VMMU_CR4_LA57 : 0) | (smep ? VMMU_CR4_SMEP : 0) |
				   (smap ? VMMU_CR4_SMAP : 0) | (pke ? VMMU_CR4_PKE : 0);
			regs.efer = VMMU_EFER_LME | VMMU_EFER_LMA | (nxe ? VMMU_EFER_NXE : 0);
			regs.rflags = ac ? VMMU_RFLAGS_AC : 0;
			regs.pkru = pke ? pkrus[k] : 0xc;
			assert_int_equal(vmmu_paging_update(ctx, &regs), 0);

			for (unsigned int c = 0; c < nconfigs; c++) {
				/* reduced run: D of a non-leaf PDE is ignored, as the 4-level run shows */
				if (reduced && !(configs[c].pde & PS) && (configs[c].pde & D))
					continue;
				for (unsigned int a = 0; a < ARRAY_SIZE(accesses); a++) {
					struct vmmu_walk_result res;
					struct ref_out ref;
					uint64_t pde = configs[c].pde, pte = configs[c].pte;
					int ret;

					ref_set(&g, pde_gpa, (pde & PS ? data : pt_addr) | pde);
					ref_set(&g, pte_gpa, data | pte);
					ref_walk(g.mem, &regs, NULL, NULL, GVA, accesses[a], &ref);
					ret = vmmu_walk(ctx, GVA, accesses[a], &res);
					if (ret != ref.outcome || res.error_code != ref.error_code ||
					    (ret == VMMU_WALK_OK &&
					     (res.gpa != ref.gpa || res.access != ref.access || res.level != ref.level ||
					      res.page_size != ref.page_size)) ||
					    ref_check_memory(g.mem, &ref) >= 0) {
						print_message("mismatch: levels %u cr0 0x%llx cr4 0x%llx efer 0x%llx ac %d "
							      "pkru 0x%x pde 0x%llx pte 0x%llx access 0x%x: walker %d ec 0x%llx,"
							      " reference %d ec 0x%llx; memory entry %d\n",
							      levels, (unsigned long long)regs.cr0,
							      (unsigned long long)regs.cr4, (unsigned long long)regs.efer,
							      ac, regs.pkru, (unsigned long long)pde, (unsigned long long)pte,
							      accesses[a], ret, (unsigned long long)res.error_code, ref.outcome,
							      (unsigned long long)ref.error_code, ref_check_memory(g.mem, &ref));
						fail();
					}
					n.walks++;
					n.ok += ret == VMMU_WALK_OK;
					n.pf += ret == VMMU_WALK_PAGE_FAULT;
					n.rsvd += !!(res.error_code & VMMU_PFERR_RSVD);
					n.pk += !!(res.error_code & VMMU_PFERR_PK);
					n.nx += res.error_code == (VMMU_PFERR_PRESENT | VMMU_PFERR_FETCH);
					n.smap += smap && ret == VMMU_WALK_PAGE_FAULT && !(accesses[a] & VMMU_WALK_FETCH) &&
						  (pde & pte & U) && (pde & pte & W) && res.error_code == VMMU_PFERR_PRESENT;
					n.smep += smep && ret == VMMU_WALK_PAGE_FAULT && (pde & U) && !(pde & PS) &&
						  (pte & U) && !(pte & NX) && !(pde & NX) &&
						  res.error_code == (VMMU_PFERR_PRESENT | VMMU_PFERR_FETCH);
					n.set_d += ret == VMMU_WALK_OK && !(pte & D) && !(pde & PS) &&
						   (ref_get(&g, pte_gpa) & D);
				}
			}
		}
	}
	print_message("%u-level: %lu walks: %lu ok, %lu #PF (%lu RSVD, %lu PK, %lu NX, %lu SMAP, %lu SMEP), "
		      "%lu set D\n", levels, n.walks, n.ok, n.pf, n.rsvd, n.pk, n.nx, n.smap, n.smep, n.set_d);
	/* every rule was exercised, in both directions */
	assert_true(n.ok > 1000 && n.pf > 1000 && n.rsvd > 100 && n.pk > 100 && n.nx > 100 && n.smap > 100 &&
		    n.smep > 100 && n.set_d > 100);
	vmmu_paging_destroy(ctx);
	ref_guest_fini(&g);
}

static void test_access_4level(void **state)
{
	(void)state;
	run(4, false);
}

static void test_access_5level(void **state)
{
	(void)state;
	run(5, true);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_access_4level),
		cmocka_unit_test(test_access_5level),
	};
	build_configs();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
