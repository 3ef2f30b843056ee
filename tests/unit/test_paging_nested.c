/* SPDX-License-Identifier: MIT */
/*
 * Nested (2-D) walks and second-stage contexts: EPT permissions, execute-only,
 * memory-type and reserved-bit misconfigurations, faults on the final GPA vs
 * on guest paging-structure accesses with their exit qualifications, EPT A/D;
 * NPT #NPF error codes (EXITINFO1) as kvm-unit-tests svm_npt expects them.
 * Every walk is also checked against the reference model (paging_ref.c).
 */
#include <errno.h>
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
#define PWU (P | W | U)

#define EPT_R 1ULL
#define EPT_W 2ULL
#define EPT_X 4ULL
#define EPT_RWX 7ULL
#define EPT_WB (6ULL << 3)
#define EPT_A (1ULL << 8)
#define EPT_D (1ULL << 9)

/* L1 memory: [0x100000, 0x500000). L2 GPA [0, 1 MiB) lives at L1 GPA [0x300000, 0x400000). */
#define L1_BASE 0x100000ULL
#define L1_SIZE (4ULL << 20)
#define L2_AT   0x300000ULL
#define L2_SIZE (1ULL << 20)
#define GVA     0x7f0000401abcULL

struct nest {
	struct ref_guest g;
	vmmu_gpa_t tdp_root;
	vmmu_gpa_t l2_next;  /* bump allocator for L2 pages */
	vmmu_gpa_t l2_root;  /* guest CR3 (an L2 GPA) */
	struct vmmu_paging_regs regs;
	struct ref_tdp tdp;
	struct vmmu_paging *guest, *second;
	uint64_t leaf_bits;  /* second-stage leaf bits */
	vmmu_gpa_t leaf[L2_SIZE / 4096]; /* second-stage leaf entry of each L2 page */
};

static uint64_t *l2_ptr(struct nest *n, vmmu_gpa_t l2)
{
	return ref_guest_ptr(&n->g, L2_AT + l2);
}

static vmmu_gpa_t l2_alloc(struct nest *n)
{
	vmmu_gpa_t p = n->l2_next;

	n->l2_next += 4096;
	memset(l2_ptr(n, p), 0, 4096);
	return p;
}

/* Map @gva -> @l2gpa in the guest's 4-level tables (which live in L2 memory); returns each entry's L2 GPA. */
static void guest_map(struct nest *n, uint64_t gva, vmmu_gpa_t l2gpa, uint64_t bits, vmmu_gpa_t ent[4])
{
	vmmu_gpa_t table = n->l2_root;

	for (unsigned int level = 4; level >= 1; level--) {
		vmmu_gpa_t e = table + ((gva >> (12 + 9 * (level - 1))) & 511) * 8;
		uint64_t *p = l2_ptr(n, e);

		ent[level - 1] = e;
		if (level == 1) {
			*p = l2gpa | bits;
			return;
		}
		if (!*p)
			*p = l2_alloc(n) | PWU;
		table = *p & 0x000ffffffffff000ULL;
	}
}

/* Second-stage leaf entry (L1 GPA) for the 4 KiB L2 page at @l2gpa. */
static vmmu_gpa_t tdp_leaf(struct nest *n, vmmu_gpa_t l2gpa)
{
	return n->leaf[l2gpa / 4096];
}

static void nest_init(struct nest *n, bool ept, bool ad, uint32_t ept_flags)
{
	uint64_t table_bits = ept ? EPT_RWX : PWU;

	memset(n, 0, sizeof(*n));
	assert_int_equal(ref_guest_init(&n->g, L1_BASE, L1_SIZE), 0);
	n->tdp_root = ref_guest_alloc(&n->g);
	n->leaf_bits = ept ? EPT_RWX | EPT_WB : PWU;
	for (vmmu_gpa_t a = 0; a < L2_SIZE; a += 4096)
		n->leaf[a / 4096] = ref_map(&n->g, n->tdp_root, 4, a, L2_AT + a, 1, table_bits, n->leaf_bits);
	n->tdp.ept = ept;
	n->tdp.maxphyaddr = 46;
	if (ept) {
		struct vmmu_ept_config cfg = { .eptp = n->tdp_root | (3 << 3) | 6 | (ad ? 1 << 6 : 0),
					       .maxphyaddr = 46, .flags = ept_flags };

		n->tdp.eptp = cfg.eptp;
		n->tdp.ept_flags = ept_flags;
		assert_int_equal(vmmu_paging_create_ept(&n->second, n->g.mem, &cfg), 0);
		assert_int_equal(vmmu_paging_get_mode(n->second), VMMU_PAGING_EPT4);
	} else {
		struct vmmu_npt_config cfg = { .ncr3 = n->tdp_root, .levels = 4, .maxphyaddr = 46, .nxe = 1 };

		n->tdp.ncr3 = cfg.ncr3;
		n->tdp.levels = 4;
		n->tdp.nxe = true;
		assert_int_equal(vmmu_paging_create_npt(&n->second, n->g.mem, &cfg), 0);
	}
	n->l2_next = 0x1000;
	n->l2_root = l2_alloc(n);
	n->regs = (struct vmmu_paging_regs){ .cr0 = VMMU_CR0_PG | VMMU_CR0_WP | 1, .cr3 = n->l2_root,
					     .cr4 = VMMU_CR4_PAE, .maxphyaddr = 46,
					     .efer = VMMU_EFER_LME | VMMU_EFER_LMA | VMMU_EFER_NXE };
}

static void nest_ctx(struct nest *n)
{
	vmmu_paging_destroy(n->guest);
	assert_int_equal(vmmu_paging_create(&n->guest, n->g.mem, &n->regs), 0);
	assert_int_equal(vmmu_paging_set_nested(n->guest, n->second), 0);
}

static void nest_fini(struct nest *n)
{
	vmmu_paging_destroy(n->guest);
	vmmu_paging_destroy(n->second);
	ref_guest_fini(&n->g);
}

static unsigned long outcomes[6];

/* Walk nested with the library and the reference; they must agree on everything. */
static int walk2(struct nest *n, uint64_t gva, uint32_t access, struct vmmu_walk_result *res)
{
	struct ref_out ref;
	int ret;

	ref_walk(n->g.mem, &n->regs, NULL, &n->tdp, gva, access, &ref);
	ret = vmmu_walk(n->guest, gva, access, res);
	if (ret != ref.outcome || res->error_code != ref.error_code || res->exit_qualification != ref.exit_qualification ||
	    res->fault_gpa != ref.fault_gpa || res->cr2 != ref.cr2 ||
	    (ret == VMMU_WALK_OK && (res->gpa != ref.gpa || res->guest_gpa != ref.guest_gpa)) ||
	    ref_check_memory(n->g.mem, &ref) >= 0) {
		print_message("gva 0x%llx access 0x%x: walker %d ec 0x%llx qual 0x%llx gpa 0x%llx fault 0x%llx; "
			      "reference %d ec 0x%llx qual 0x%llx gpa 0x%llx fault 0x%llx; memory entry %d\n",
			      (unsigned long long)gva, access, ret, (unsigned long long)res->error_code,
			      (unsigned long long)res->exit_qualification, (unsigned long long)res->gpa,
			      (unsigned long long)res->fault_gpa, ref.outcome, (unsigned long long)ref.error_code,
			      (unsigned long long)ref.exit_qualification, (unsigned long long)ref.gpa,
			      (unsigned long long)ref.fault_gpa, ref_check_memory(n->g.mem, &ref));
		fail();
	}
	if (ret >= 0 && ret < 6)
		outcomes[ret]++;
	return ret;
}

static void test_ept_basic(void **state)
{
	struct nest n;
	struct vmmu_walk_result res;
	vmmu_gpa_t ent[4], data;

	(void)state;
	nest_init(&n, true, false, 0);
	data = l2_alloc(&n);
	guest_map(&n, GVA, data, PWU, ent);
	nest_ctx(&n);
	assert_int_equal(walk2(&n, GVA, VMMU_WALK_WRITE, &res), VMMU_WALK_OK);
	assert_int_equal(res.gpa, L2_AT + data + 0xabc);
	assert_int_equal(res.guest_gpa, data + 0xabc);
	assert_int_equal(res.gpte_gpa[3], n.l2_root + 254 * 8); /* entry addresses are guest (L2) GPAs */
	/* guest A/D set in L2 memory; EPT A/D off: EPT entries untouched */
	assert_int_equal(*l2_ptr(&n, ent[0]), data | PWU | A | D);
	assert_int_equal(ref_get(&n.g, tdp_leaf(&n, data)), (L2_AT + data) | EPT_RWX | EPT_WB);
	/* with no second stage the same context walks L1 memory directly */
	assert_int_equal(vmmu_paging_set_nested(n.guest, NULL), 0);
	assert_int_equal(vmmu_walk(n.guest, GVA, 0, &res), VMMU_WALK_PAGE_FAULT);
	nest_fini(&n);
}

/* Every XWR combination of the final page's EPT leaf, for reads, writes and fetches. */
static void test_ept_final_permissions(void **state)
{
	(void)state;
	for (unsigned int execonly = 0; execonly < 2; execonly++) {
		struct nest n;
		vmmu_gpa_t ent[4], data, leaf;

		nest_init(&n, true, false, execonly ? VMMU_EPT_F_EXECONLY : 0);
		data = l2_alloc(&n);
		guest_map(&n, GVA, data, PWU | A | D, ent);
		nest_ctx(&n);
		leaf = tdp_leaf(&n, data);
		for (unsigned int xwr = 0; xwr < 8; xwr++) {
			static const uint32_t acc[] = { VMMU_WALK_READ, VMMU_WALK_WRITE, VMMU_WALK_FETCH };
			static const uint64_t need[] = { EPT_R, EPT_W, EPT_X };
			static const uint64_t kind[] = { VMMU_EPT_QUAL_READ, VMMU_EPT_QUAL_WRITE, VMMU_EPT_QUAL_FETCH };

			ref_set(&n.g, leaf, (L2_AT + data) | xwr | EPT_WB);
			for (unsigned int k = 0; k < 3; k++) {
				struct vmmu_walk_result res;
				int ret = walk2(&n, GVA, acc[k], &res);
				bool misconfig = xwr == 2 || xwr == 6 || (xwr == 4 && !execonly);

				if (misconfig) {
					assert_int_equal(ret, VMMU_WALK_EPT_MISCONFIG);
					assert_int_equal(res.fault_gpa, data + 0xabc);
				} else if (!(xwr & need[k])) {
					assert_int_equal(ret, VMMU_WALK_EPT_VIOLATION);
					assert_int_equal(res.exit_qualification,
							 kind[k] | (uint64_t)xwr << 3 | VMMU_EPT_QUAL_GVA_VALID |
								 VMMU_EPT_QUAL_GVA_FINAL);
					assert_int_equal(res.fault_gpa, data + 0xabc);
					assert_int_equal(res.cr2, GVA);
				} else {
					assert_int_equal(ret, VMMU_WALK_OK);
				}
			}
		}
		nest_fini(&n);
	}
}

/* Memory types and reserved bits: misconfigurations, at the leaf and above it. */
static void test_ept_misconfig(void **state)
{
	struct nest n;
	struct vmmu_walk_result res;
	vmmu_gpa_t ent[4], data, leaf;

	(void)state;
	nest_init(&n, true, false, 0);
	data = l2_alloc(&n);
	guest_map(&n, GVA, data, PWU | A | D, ent);
	nest_ctx(&n);
	leaf = tdp_leaf(&n, data);
	for (unsigned int mt = 0; mt < 8; mt++) {
		ref_set(&n.g, leaf, (L2_AT + data) | EPT_RWX | (uint64_t)mt << 3);
		assert_int_equal(walk2(&n, GVA, 0, &res),
				 mt == 2 || mt == 3 || mt == 7 ? VMMU_WALK_EPT_MISCONFIG : VMMU_WALK_OK);
	}
	ref_set(&n.g, leaf, (L2_AT + data) | EPT_RWX | EPT_WB | (1ULL << 46)); /* past MAXPHYADDR */
	assert_int_equal(walk2(&n, GVA, 0, &res), VMMU_WALK_EPT_MISCONFIG);
	ref_set(&n.g, leaf, (L2_AT + data) | EPT_RWX | EPT_WB | (1ULL << 7) | (1ULL << 52)); /* ignored bits */
	assert_int_equal(walk2(&n, GVA, 0, &res), VMMU_WALK_OK);
	ref_set(&n.g, leaf, (L2_AT + data) | EPT_RWX | EPT_WB);
	/* non-leaf: bits 6:3 reserved; PS in the PML4E; 1 GiB without support */
	assert_int_equal(vmmu_walk(n.second, data, VMMU_WALK_NO_AD, &res), VMMU_WALK_OK);
	for (unsigned int l = 2; l <= 4; l++) {
		vmmu_gpa_t e = res.gpte_gpa[l - 1];
		uint64_t v = ref_get(&n.g, e);
		struct vmmu_walk_result r2;

		ref_set(&n.g, e, v | (1ULL << 3));
		assert_int_equal(walk2(&n, GVA, 0, &r2), VMMU_WALK_EPT_MISCONFIG);
		/* PS: reserved in the PML4E, no 1 GiB support, a 2 MiB leaf with bits 20:12 set */
		ref_set(&n.g, e, v | PS);
		assert_int_equal(walk2(&n, GVA, 0, &r2), VMMU_WALK_EPT_MISCONFIG);
		ref_set(&n.g, e, v);
	}
	/* a paging-structure access that hits a misconfiguration reports the entry's GPA */
	{
		vmmu_gpa_t pml4_leaf = tdp_leaf(&n, n.l2_root);

		ref_set(&n.g, pml4_leaf, ref_get(&n.g, pml4_leaf) | (3ULL << 3) | EPT_WB);
		assert_int_equal(walk2(&n, GVA, 0, &res), VMMU_WALK_EPT_MISCONFIG);
		assert_int_equal(res.fault_gpa, n.l2_root + 254 * 8);
	}
	nest_fini(&n);
}

/* Faults on guest paging-structure accesses: qualification bit 8 clear; A/D makes them writes. */
static void test_ept_paging_structure(void **state)
{
	for (unsigned int ad = 0; ad < 2; ad++) {
		struct nest n;
		struct vmmu_walk_result res;
		vmmu_gpa_t ent[4], data, pd_leaf;

		nest_init(&n, true, ad, 0);
		data = l2_alloc(&n);
		guest_map(&n, GVA, data, PWU | A | D, ent);
		nest_ctx(&n);
		/* the guest page directory's page is read-only in EPT */
		pd_leaf = tdp_leaf(&n, ent[1] & ~0xfffULL);
		ref_set(&n.g, pd_leaf, ref_get(&n.g, pd_leaf) & ~EPT_W);
		if (!ad) {
			assert_int_equal(walk2(&n, GVA, VMMU_WALK_USER, &res), VMMU_WALK_OK);
		} else {
			assert_int_equal(walk2(&n, GVA, VMMU_WALK_USER, &res), VMMU_WALK_EPT_VIOLATION);
			assert_int_equal(res.exit_qualification,
					 VMMU_EPT_QUAL_READ | VMMU_EPT_QUAL_WRITE | VMMU_EPT_QUAL_READABLE |
						 VMMU_EPT_QUAL_EXECUTABLE | VMMU_EPT_QUAL_GVA_VALID);
			assert_int_equal(res.fault_gpa, ent[1]);
			assert_int_equal(res.levels, 2); /* PML4E and PDPTE read */
		}
		/* not present: RWX bits 0 */
		ref_set(&n.g, pd_leaf, 0);
		assert_int_equal(walk2(&n, GVA, VMMU_WALK_FETCH, &res), VMMU_WALK_EPT_VIOLATION);
		assert_int_equal(res.exit_qualification, (ad ? VMMU_EPT_QUAL_READ | VMMU_EPT_QUAL_WRITE :
						       VMMU_EPT_QUAL_READ) | VMMU_EPT_QUAL_GVA_VALID);
		assert_int_equal(res.level, 1);
		assert_int_equal(res.cr2, GVA);
		nest_fini(&n);
	}
}

/* EPT A/D: A on every EPT entry used, D on leaves of guest table pages and of written pages. */
static void test_ept_ad(void **state)
{
	struct nest n;
	struct vmmu_walk_result res;
	vmmu_gpa_t ent[4], data;

	(void)state;
	nest_init(&n, true, true, 0);
	data = l2_alloc(&n);
	guest_map(&n, GVA, data, PWU, ent);
	nest_ctx(&n);
	/* a faulting walk sets nothing */
	assert_int_equal(walk2(&n, GVA + 0x1000000, 0, &res), VMMU_WALK_PAGE_FAULT);
	for (unsigned int l = 0; l < 4; l++)
		assert_int_equal(ref_get(&n.g, tdp_leaf(&n, ent[l] & ~0xfffULL)) & (EPT_A | EPT_D), 0);
	/* NO_AD sets nothing */
	assert_int_equal(vmmu_walk(n.guest, GVA, VMMU_WALK_NO_AD, &res), VMMU_WALK_OK);
	assert_int_equal(ref_get(&n.g, tdp_leaf(&n, data)) & EPT_A, 0);
	assert_int_equal(walk2(&n, GVA, VMMU_WALK_READ, &res), VMMU_WALK_OK);
	for (unsigned int l = 0; l < 4; l++)
		assert_int_equal(ref_get(&n.g, tdp_leaf(&n, ent[l] & ~0xfffULL)) & (EPT_A | EPT_D), EPT_A | EPT_D);
	assert_int_equal(ref_get(&n.g, tdp_leaf(&n, data)) & (EPT_A | EPT_D), EPT_A);
	assert_int_equal(walk2(&n, GVA, VMMU_WALK_WRITE, &res), VMMU_WALK_OK);
	assert_int_equal(ref_get(&n.g, tdp_leaf(&n, data)) & (EPT_A | EPT_D), EPT_A | EPT_D);
	/* the second stage on its own: A/D in its entries, R reported as ACC_USER */
	ref_set(&n.g, tdp_leaf(&n, 0x5000), (L2_AT + 0x5000) | EPT_R | EPT_X | EPT_WB);
	assert_int_equal(vmmu_walk(n.second, 0x5123, 0, &res), VMMU_WALK_OK);
	assert_int_equal(res.gpa, L2_AT + 0x5123);
	assert_int_equal(res.access, VMMU_ACC_USER | VMMU_ACC_EXEC);
	assert_int_equal(res.levels, 4);
	assert_int_equal(res.gpte[0] & EPT_A, EPT_A);
	assert_int_equal(vmmu_walk(n.second, 0x5123, VMMU_WALK_WRITE, &res), VMMU_WALK_EPT_VIOLATION);
	assert_int_equal(res.exit_qualification, VMMU_EPT_QUAL_WRITE | VMMU_EPT_QUAL_READABLE | VMMU_EPT_QUAL_EXECUTABLE);
	assert_int_equal(res.cr2, 0);
	/* a GPA beyond the 48 bits a 4-level EPT translates */
	assert_int_equal(vmmu_walk(n.second, 1ULL << 48, 0, &res), VMMU_WALK_EPT_VIOLATION);
	nest_fini(&n);
}

/* 5-level EPT and NPT walked on their own: 57-bit GPAs, 1 GiB leaves where supported. */
static void test_tdp_5level(void **state)
{
	struct ref_guest g;
	struct vmmu_paging *ept = NULL, *npt = NULL;
	struct vmmu_walk_result res;
	struct ref_out ref;
	vmmu_gpa_t root;
	uint64_t gpa = 0x00f0123456789abcULL;

	(void)state;
	assert_int_equal(ref_guest_init(&g, L1_BASE, L1_SIZE), 0);
	root = ref_guest_alloc(&g);
	ref_map(&g, root, 5, gpa, 0x40000000, 3, EPT_RWX, EPT_RWX | EPT_WB);
	{
		struct vmmu_ept_config cfg = { .eptp = root | (4 << 3) | 6, .maxphyaddr = 52, .flags = VMMU_EPT_F_1G };
		struct ref_tdp t = { .ept = true, .eptp = cfg.eptp, .ept_flags = cfg.flags, .maxphyaddr = 52 };

		assert_int_equal(vmmu_paging_create_ept(&ept, g.mem, &cfg), 0);
		assert_int_equal(vmmu_paging_get_mode(ept), VMMU_PAGING_EPT5);
		ref_walk_tdp(g.mem, &t, gpa, VMMU_WALK_FETCH, &ref);
		assert_int_equal(vmmu_walk(ept, gpa, VMMU_WALK_FETCH, &res), VMMU_WALK_OK);
		assert_int_equal(ref.outcome, VMMU_WALK_OK);
		assert_int_equal(res.gpa, 0x40000000 + (gpa & ((1ULL << 30) - 1)));
		assert_int_equal(res.gpa, ref.gpa);
		assert_int_equal(res.page_size, 1ULL << 30);
		assert_int_equal(res.levels, 3);
		/* without 1 GiB support the same leaf is a misconfiguration */
		vmmu_paging_destroy(ept);
		cfg.flags = 0;
		assert_int_equal(vmmu_paging_create_ept(&ept, g.mem, &cfg), 0);
		assert_int_equal(vmmu_walk(ept, gpa, 0, &res), VMMU_WALK_EPT_MISCONFIG);
		assert_int_equal(vmmu_walk(ept, 1ULL << 57, 0, &res), VMMU_WALK_EPT_VIOLATION);
	}
	{
		struct vmmu_npt_config cfg = { .ncr3 = root, .levels = 5, .maxphyaddr = 52, .nxe = 1, .gbpages = 1 };

		assert_int_equal(vmmu_paging_create_npt(&npt, g.mem, &cfg), 0);
		assert_int_equal(vmmu_paging_get_mode(npt), VMMU_PAGING_5LEVEL);
		/* EPT bits read as P|W|U with no NX: a user read is fine, bits 5:3 (WB) set A and PWT/PCD */
		assert_int_equal(vmmu_walk(npt, gpa, VMMU_WALK_WRITE, &res), VMMU_WALK_OK);
		assert_int_equal(res.access, VMMU_ACC_ALL);
	}
	vmmu_paging_destroy(ept);
	vmmu_paging_destroy(npt);
	ref_guest_fini(&g);
}

/* NPT: EXITINFO1 for U=0, W=0, NX and not-present, on the final page and on table pages. */
static void test_npt(void **state)
{
	struct nest n;
	struct vmmu_walk_result res;
	vmmu_gpa_t ent[4], data, leaf, pml4_leaf;

	(void)state;
	nest_init(&n, false, true, 0);
	data = l2_alloc(&n);
	guest_map(&n, GVA, data, PWU | A | D, ent);
	nest_ctx(&n);
	leaf = tdp_leaf(&n, data);
	pml4_leaf = tdp_leaf(&n, n.l2_root);
	assert_int_equal(walk2(&n, GVA, VMMU_WALK_WRITE, &res), VMMU_WALK_OK);
	/* NPT A/D: table pages were written (D), the data page written too */
	assert_int_equal(ref_get(&n.g, pml4_leaf) & (A | D), A | D);
	assert_int_equal(ref_get(&n.g, leaf) & (A | D), A | D);

	ref_set(&n.g, leaf, (L2_AT + data) | P | W | A | D); /* U=0 */
	assert_int_equal(walk2(&n, GVA, 0, &res), VMMU_WALK_NPF);
	assert_int_equal(res.error_code, 0x100000005ULL);
	assert_int_equal(res.fault_gpa, data + 0xabc);
	ref_set(&n.g, leaf, (L2_AT + data) | P | U | A); /* W=0 */
	assert_int_equal(walk2(&n, GVA, VMMU_WALK_WRITE, &res), VMMU_WALK_NPF);
	assert_int_equal(res.error_code, 0x100000007ULL);
	ref_set(&n.g, leaf, (L2_AT + data) | PWU | NX);
	assert_int_equal(walk2(&n, GVA, VMMU_WALK_FETCH, &res), VMMU_WALK_NPF);
	assert_int_equal(res.error_code, 0x100000015ULL);
	ref_set(&n.g, leaf, 0);
	assert_int_equal(walk2(&n, GVA, 0, &res), VMMU_WALK_NPF);
	assert_int_equal(res.error_code, 0x100000004ULL);
	ref_set(&n.g, leaf, (L2_AT + data) | PWU | (1ULL << 50));
	assert_int_equal(walk2(&n, GVA, 0, &res), VMMU_WALK_NPF);
	assert_int_equal(res.error_code, 0x10000000dULL);
	ref_set(&n.g, leaf, (L2_AT + data) | PWU);

	/* the guest's PML4 page: U=0, W=0, not present; table accesses are user writes */
	ref_set(&n.g, pml4_leaf, (L2_AT + n.l2_root) | P | W);
	assert_int_equal(walk2(&n, GVA, 0, &res), VMMU_WALK_NPF);
	assert_int_equal(res.error_code, 0x200000007ULL);
	assert_int_equal(res.fault_gpa, n.l2_root + 254 * 8);
	ref_set(&n.g, pml4_leaf, (L2_AT + n.l2_root) | P | U);
	assert_int_equal(walk2(&n, GVA, VMMU_WALK_FETCH, &res), VMMU_WALK_NPF);
	assert_int_equal(res.error_code, 0x200000007ULL);
	ref_set(&n.g, pml4_leaf, (L2_AT + n.l2_root) | PWU | NX); /* NX does not matter for table reads */
	assert_int_equal(walk2(&n, GVA, 0, &res), VMMU_WALK_OK);
	ref_set(&n.g, pml4_leaf, 0);
	assert_int_equal(walk2(&n, GVA, 0, &res), VMMU_WALK_NPF);
	assert_int_equal(res.error_code, 0x200000006ULL);
	nest_fini(&n);
}

/* PAE guest on EPT: PDPTE registers are loaded through the second stage. */
static void test_nested_pae_and_off(void **state)
{
	struct nest n;
	struct vmmu_walk_result res;
	struct log_capture log;
	vmmu_gpa_t pdpt, pd, data;

	(void)state;
	nest_init(&n, true, true, 0);
	pdpt = l2_alloc(&n);
	pd = l2_alloc(&n);
	data = l2_alloc(&n);
	l2_ptr(&n, pdpt)[0] = pd | P;
	l2_ptr(&n, pd)[1] = 0x0 | PWU | PS; /* GVA 2 MiB..4 MiB -> L2 GPA 0..2 MiB */
	n.regs = (struct vmmu_paging_regs){ .cr0 = VMMU_CR0_PG | 1, .cr3 = pdpt, .cr4 = VMMU_CR4_PAE,
					    .maxphyaddr = 46 };
	/* the PDPT's L2 GPA is not L1 memory: create fails until the context is nested... */
	log_capture_start(&log);
	assert_int_equal(vmmu_paging_create(&n.guest, n.g.mem, &n.regs), -EFAULT);
	n.regs.flags = VMMU_PAGING_F_PDPTRS;
	n.regs.pdptrs[0] = 0;
	assert_int_equal(vmmu_paging_create(&n.guest, n.g.mem, &n.regs), 0);
	n.regs.flags = 0;
	assert_int_equal(vmmu_paging_update(n.guest, &n.regs), -EFAULT);
	assert_int_equal(log.lines, 2);
	log_capture_stop();
	/* ... once nested, loads go through the second stage */
	assert_int_equal(vmmu_paging_set_nested(n.guest, n.second), 0);
	assert_int_equal(vmmu_walk(n.guest, 0x200000 + 0x5123, 0, &res), VMMU_WALK_PAGE_FAULT);
	assert_int_equal(res.level, 3);
	assert_int_equal(vmmu_paging_update(n.guest, &n.regs), 0);
	assert_int_equal(vmmu_walk(n.guest, 0x200000 + 0x5123, 0, &res), VMMU_WALK_OK);
	assert_int_equal(res.guest_gpa, 0x5123);
	assert_int_equal(res.gpa, L2_AT + 0x5123);
	assert_int_equal(res.page_size, 2ULL << 20);
	(void)data;

	/* paging off, nested: only the final translation, qualification with GVA valid and final */
	n.regs = (struct vmmu_paging_regs){ .maxphyaddr = 46 };
	assert_int_equal(vmmu_paging_update(n.guest, &n.regs), 0);
	assert_int_equal(walk2(&n, 0x6789, VMMU_WALK_WRITE, &res), VMMU_WALK_OK);
	assert_int_equal(res.gpa, L2_AT + 0x6789);
	ref_set(&n.g, tdp_leaf(&n, 0x6000), (L2_AT + 0x6000) | EPT_R | EPT_WB);
	assert_int_equal(walk2(&n, 0x6789, VMMU_WALK_WRITE, &res), VMMU_WALK_EPT_VIOLATION);
	assert_int_equal(res.exit_qualification, VMMU_EPT_QUAL_WRITE | VMMU_EPT_QUAL_READABLE |
							 VMMU_EPT_QUAL_GVA_VALID | VMMU_EPT_QUAL_GVA_FINAL);
	nest_fini(&n);
}

/* A 32-bit guest (4-byte entries) on EPT with A/D: guest A/D bits land in L1 memory, 4 bytes wide. */
static void test_nested_32bit(void **state)
{
	struct nest n;
	struct vmmu_walk_result res;
	vmmu_gpa_t pd, pt, data;
	uint32_t *pdv, *ptv;

	(void)state;
	nest_init(&n, true, true, 0);
	pd = l2_alloc(&n);
	pt = l2_alloc(&n);
	data = l2_alloc(&n);
	pdv = (uint32_t *)l2_ptr(&n, pd);
	ptv = (uint32_t *)l2_ptr(&n, pt);
	pdv[1] = (uint32_t)(pt | PWU);
	ptv[3] = (uint32_t)(data | PWU);
	n.regs = (struct vmmu_paging_regs){ .cr0 = VMMU_CR0_PG | 1, .cr3 = pd, .cr4 = VMMU_CR4_PSE, .maxphyaddr = 40 };
	nest_ctx(&n);
	assert_int_equal(walk2(&n, 0x403123, VMMU_WALK_WRITE, &res), VMMU_WALK_OK);
	assert_int_equal(res.gpa, L2_AT + data + 0x123);
	assert_int_equal(res.guest_gpa, data + 0x123);
	assert_int_equal(pdv[1], (uint32_t)(pt | PWU | A));
	assert_int_equal(ptv[3], (uint32_t)(data | PWU | A | D));
	assert_int_equal(pdv[0] | ptv[2] | ptv[4], 0);
	assert_int_equal(ref_get(&n.g, tdp_leaf(&n, pt)) & (EPT_A | EPT_D), EPT_A | EPT_D);
	assert_int_equal(ref_get(&n.g, tdp_leaf(&n, data)) & (EPT_A | EPT_D), EPT_A | EPT_D);
	/* the page table's page not present in EPT: a paging-structure violation at the PTE's GPA */
	ref_set(&n.g, tdp_leaf(&n, pt), 0);
	assert_int_equal(walk2(&n, 0x403123, 0, &res), VMMU_WALK_EPT_VIOLATION);
	assert_int_equal(res.fault_gpa, pt + 3 * 4);
	assert_int_equal(res.exit_qualification,
			 VMMU_EPT_QUAL_READ | VMMU_EPT_QUAL_WRITE | VMMU_EPT_QUAL_GVA_VALID);
	nest_fini(&n);
}

/* Random guest and second-stage entries: the walker and the reference model agree. */
static void test_nested_random(void **state)
{
	uint64_t seed = 0xfeed;

	(void)state;
	memset(outcomes, 0, sizeof(outcomes));
	for (unsigned int round = 0; round < 40; round++) {
		bool ept = round & 1, ad = round & 2;
		struct nest n;
		vmmu_gpa_t ent[4];

		nest_init(&n, ept, ad, (round & 4) ? VMMU_EPT_F_EXECONLY : 0);
		for (unsigned int i = 0; i < 16; i++) {
			vmmu_gpa_t data = l2_alloc(&n);

			guest_map(&n, GVA + i * 0x1000 + (i & 3) * (1ULL << 30), data, PWU, ent);
		}
		nest_ctx(&n);
		for (unsigned int k = 0; k < 400; k++) {
			struct vmmu_walk_result res;
			uint64_t r = test_rand64(&seed);
			unsigned int i = r % 16;
			uint64_t gva = GVA + i * 0x1000 + (i & 3) * (1ULL << 30);
			vmmu_gpa_t e;

			/* flip a random low or reserved bit in a random guest or second-stage entry */
			assert_int_equal(vmmu_walk(n.guest, gva, VMMU_WALK_NO_AD, &res) >= 0, 1);
			if (r & (1ULL << 20)) {
				vmmu_gpa_t ge = res.gpte_gpa[(r >> 8) % 4];

				if (ge && ge < L2_SIZE)
					l2_ptr(&n, ge & ~7ULL)[0] ^= 1ULL << ((r >> 24) % 12 == 11 ? 63 : (r >> 24) % 12);
			} else {
				e = tdp_leaf(&n, (r >> 32) % 32 * 4096);
				ref_set(&n.g, e, ref_get(&n.g, e) ^ (1ULL << ((r >> 40) % 10)));
			}
			walk2(&n, gva, (uint32_t)(r >> 50) & (VMMU_WALK_WRITE | VMMU_WALK_USER), &res);
			walk2(&n, gva, VMMU_WALK_FETCH, &res);
		}
		nest_fini(&n);
	}
	print_message("outcomes: %lu ok, %lu #PF, %lu EPT violation, %lu EPT misconfig, %lu #NPF\n", outcomes[0],
		      outcomes[1], outcomes[3], outcomes[4], outcomes[5]);
	for (unsigned int i = 0; i < 6; i++)
		assert_true(i == VMMU_WALK_GP || outcomes[i] > 100);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ept_basic),
		cmocka_unit_test(test_ept_final_permissions),
		cmocka_unit_test(test_ept_misconfig),
		cmocka_unit_test(test_ept_paging_structure),
		cmocka_unit_test(test_ept_ad),
		cmocka_unit_test(test_tdp_5level),
		cmocka_unit_test(test_npt),
		cmocka_unit_test(test_nested_pae_and_off),
		cmocka_unit_test(test_nested_32bit),
		cmocka_unit_test(test_nested_random),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
