/* SPDX-License-Identifier: MIT */
/*
 * Guest page walker: contexts, translations in every mode, each #PF error-code
 * bit, reserved bits per level, canonical addresses, A/D updates, bad input.
 * Outcomes are checked against fixed expectations and, where marked, against
 * the reference model in paging_ref.c.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>

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
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#define GUEST_BASE 0x100000ULL
#define GUEST_SIZE (4ULL << 20)

#define LONG_CR0 (VMMU_CR0_PG | VMMU_CR0_WP | 1)
#define LONG_CR4 (VMMU_CR4_PAE)
#define LONG_EFER (VMMU_EFER_LME | VMMU_EFER_LMA | VMMU_EFER_NXE)

struct fixture {
	struct ref_guest g;
	vmmu_gpa_t root;
	struct vmmu_paging_regs regs;
	struct vmmu_paging *ctx;
};

static void fixture_init(struct fixture *f, unsigned int levels)
{
	assert_int_equal(ref_guest_init(&f->g, GUEST_BASE, GUEST_SIZE), 0);
	f->root = ref_guest_alloc(&f->g);
	f->regs = (struct vmmu_paging_regs){ .cr0 = LONG_CR0, .cr3 = f->root, .cr4 = LONG_CR4, .efer = LONG_EFER,
					     .maxphyaddr = 46, .flags = VMMU_PAGING_F_GBPAGES };
	if (levels == 5)
		f->regs.cr4 |= VMMU_CR4_LA57;
	f->ctx = NULL;
}

static void fixture_ctx(struct fixture *f)
{
	vmmu_paging_destroy(f->ctx);
	f->ctx = NULL;
	assert_int_equal(vmmu_paging_create(&f->ctx, f->g.mem, &f->regs), 0);
}

static void fixture_fini(struct fixture *f)
{
	vmmu_paging_destroy(f->ctx);
	ref_guest_fini(&f->g);
}

/* Walk with both the walker and the reference model and require the same outcome, result and memory. */
static int walk_both(struct fixture *f, uint64_t gva, uint32_t access, struct vmmu_walk_result *res)
{
	struct ref_out ref;
	int ret;

	ref_walk(f->g.mem, &f->regs, NULL, NULL, gva, access, &ref);
	ret = vmmu_walk(f->ctx, gva, access, res);
	assert_int_equal(ret, ref.outcome);
	if (ret == VMMU_WALK_OK) {
		assert_int_equal(res->gpa, ref.gpa);
		assert_int_equal(res->page_size, ref.page_size);
		assert_int_equal(res->access, ref.access);
		assert_int_equal(res->level, ref.level);
	} else if (ret == VMMU_WALK_PAGE_FAULT) {
		assert_int_equal(res->error_code, ref.error_code);
		assert_int_equal(res->cr2, ref.cr2);
	}
	assert_int_equal(ref_check_memory(f->g.mem, &ref), -1);
	return ret;
}

static void test_create_rejects(void **state)
{
	struct vmmu_paging_regs r = { .cr0 = LONG_CR0, .cr4 = LONG_CR4, .efer = LONG_EFER, .maxphyaddr = 46 };
	struct vmmu_ept_config ept = { .eptp = 3 << 3, .maxphyaddr = 46 };
	struct vmmu_npt_config npt = { .levels = 4, .maxphyaddr = 46 };
	struct vmmu_memslots *mem;
	struct vmmu_paging *c = NULL;
	struct vmmu_walk_result res;
	struct log_capture log;

	(void)state;
	assert_int_equal(vmmu_memslots_create(&mem), 0);
	log_capture_start(&log);
	assert_int_equal(vmmu_paging_create(NULL, mem, &r), -EINVAL);
	assert_int_equal(vmmu_paging_create(&c, NULL, &r), -EINVAL);
	assert_int_equal(vmmu_paging_create(&c, mem, NULL), -EINVAL);
	r.maxphyaddr = 31;
	assert_int_equal(vmmu_paging_create(&c, mem, &r), -EINVAL);
	r.maxphyaddr = 53;
	assert_int_equal(vmmu_paging_create(&c, mem, &r), -EINVAL);
	r.maxphyaddr = 46;
	r.cr4 = 0; /* LMA without PAE */
	assert_int_equal(vmmu_paging_create(&c, mem, &r), -EINVAL);
	r.cr4 = LONG_CR4;
	r.efer = VMMU_EFER_LME; /* LME and PG without LMA */
	assert_int_equal(vmmu_paging_create(&c, mem, &r), -EINVAL);
	r.efer = LONG_EFER;
	r.flags = 1u << 7;
	assert_int_equal(vmmu_paging_create(&c, mem, &r), -EINVAL);
	r.flags = 0;
	/* PAE: no PDPT in guest memory */
	r.efer = 0;
	assert_int_equal(vmmu_paging_create(&c, mem, &r), -EFAULT);
	assert_null(c);
	assert_true(log.lines >= 8);

	ept.eptp = 2 << 3;
	assert_int_equal(vmmu_paging_create_ept(&c, mem, &ept), -EINVAL);
	ept.eptp = (3 << 3) | 1; /* memory type 1 */
	assert_int_equal(vmmu_paging_create_ept(&c, mem, &ept), -EINVAL);
	ept.eptp = (3 << 3) | (1ULL << 46); /* address past MAXPHYADDR */
	assert_int_equal(vmmu_paging_create_ept(&c, mem, &ept), -EINVAL);
	ept.eptp = (3 << 3) | (1 << 8);
	assert_int_equal(vmmu_paging_create_ept(&c, mem, &ept), -EINVAL);
	npt.levels = 3;
	assert_int_equal(vmmu_paging_create_npt(&c, mem, &npt), -EINVAL);
	npt.levels = 4;
	npt.maxphyaddr = 60;
	assert_int_equal(vmmu_paging_create_npt(&c, mem, &npt), -EINVAL);

	/* bad walk arguments */
	r = (struct vmmu_paging_regs){ .maxphyaddr = 36 };
	assert_int_equal(vmmu_paging_create(&c, mem, &r), 0);
	assert_int_equal(vmmu_paging_get_mode(c), VMMU_PAGING_OFF);
	assert_int_equal(vmmu_walk(c, 0, 1u << 3, &res), -EINVAL);
	assert_int_equal(vmmu_walk(c, 0, VMMU_WALK_WRITE | VMMU_WALK_FETCH, &res), -EINVAL);
	assert_int_equal(vmmu_walk(c, 0, 0, NULL), -EINVAL);
	assert_int_equal(vmmu_walk(NULL, 0, 0, &res), -EINVAL);
	assert_int_equal(vmmu_paging_set_nested(c, c), -EINVAL);
	assert_int_equal(vmmu_paging_update(NULL, &r), -EINVAL);
	assert_int_equal(vmmu_paging_reload_pdptrs(NULL), -EINVAL);
	assert_int_equal(vmmu_paging_reload_pdptrs(c), -EINVAL); /* not PAE */
	log_capture_stop();
	/* paging off: identity */
	assert_int_equal(vmmu_walk(c, 0x12345678, VMMU_WALK_WRITE, &res), VMMU_WALK_OK);
	assert_int_equal(res.gpa, 0x12345678);
	assert_int_equal(res.access, VMMU_ACC_ALL);
	vmmu_paging_destroy(c);
	vmmu_paging_destroy(NULL);
	vmmu_memslots_destroy(mem);
}

static void test_4level_sizes(void **state)
{
	struct fixture f;
	struct vmmu_walk_result res;
	vmmu_gpa_t pte, pde, pdpte;

	(void)state;
	fixture_init(&f, 4);
	pte = ref_map(&f.g, f.root, 4, 0x7f0000401000ULL, 0x3456000, 1, PWU | A, PWU);
	pde = ref_map(&f.g, f.root, 4, 0x7f0000600000ULL, 0x40000000, 2, PWU | A, PWU);
	pdpte = ref_map(&f.g, f.root, 4, 0x7f0080000000ULL, 0x1c0000000ULL, 3, PWU | A, PWU);
	fixture_ctx(&f);
	assert_int_equal(vmmu_paging_get_mode(f.ctx), VMMU_PAGING_4LEVEL);

	assert_int_equal(walk_both(&f, 0x7f0000401abcULL, VMMU_WALK_READ, &res), VMMU_WALK_OK);
	assert_int_equal(res.gpa, 0x3456abc);
	assert_int_equal(res.page_size, 4096);
	assert_int_equal(res.level, 1);
	assert_int_equal(res.levels, 4);
	assert_int_equal(res.gpte_gpa[0], pte);
	assert_int_equal(res.gpte[0], 0x3456000 | PWU | A);
	assert_int_equal(res.gpte_gpa[3], f.root + 254 * 8);
	assert_int_equal(res.access, VMMU_ACC_ALL);

	assert_int_equal(walk_both(&f, 0x7f00006fedcbULL, VMMU_WALK_WRITE, &res), VMMU_WALK_OK);
	assert_int_equal(res.gpa, 0x400fedcb);
	assert_int_equal(res.page_size, 2ULL << 20);
	assert_int_equal(res.level, 2);
	assert_int_equal(res.levels, 3);
	assert_int_equal(res.gpte_gpa[1], pde);
	assert_int_equal(res.gpte[1], 0x40000000 | PWU | PS | A | D);

	assert_int_equal(walk_both(&f, 0x7f00bfedcba9ULL, VMMU_WALK_FETCH | VMMU_WALK_USER, &res), VMMU_WALK_OK);
	assert_int_equal(res.gpa, 0x1c0000000ULL + 0x3fedcba9ULL);
	assert_int_equal(res.page_size, 1ULL << 30);
	assert_int_equal(res.gpte_gpa[2], pdpte);

	/* without 1 GiB pages, PS in a PDPTE is reserved */
	f.regs.flags = 0;
	fixture_ctx(&f);
	assert_int_equal(walk_both(&f, 0x7f0080000000ULL, 0, &res), VMMU_WALK_PAGE_FAULT);
	assert_int_equal(res.error_code, VMMU_PFERR_PRESENT | VMMU_PFERR_RSVD);
	assert_int_equal(res.level, 3);
	fixture_fini(&f);
}

static void test_error_code_bits(void **state)
{
	struct fixture f;
	struct vmmu_walk_result res;
	vmmu_gpa_t pte;

	(void)state;
	fixture_init(&f, 4);
	pte = ref_map(&f.g, f.root, 4, 0x400000, 0x200000, 1, PWU | A, P | A);
	fixture_ctx(&f);

	/* not present: P=0; W and U from the access */
	assert_int_equal(walk_both(&f, 0x800000, VMMU_WALK_WRITE | VMMU_WALK_USER, &res), VMMU_WALK_PAGE_FAULT);
	assert_int_equal(res.error_code, VMMU_PFERR_WRITE | VMMU_PFERR_USER);
	assert_int_equal(res.cr2, 0x800000);
	/* user access to a supervisor page: P|U */
	assert_int_equal(walk_both(&f, 0x400010, VMMU_WALK_USER, &res), VMMU_WALK_PAGE_FAULT);
	assert_int_equal(res.error_code, VMMU_PFERR_PRESENT | VMMU_PFERR_USER);
	assert_int_equal(res.level, 1);
	/* supervisor write to a read-only page with CR0.WP: P|W */
	assert_int_equal(walk_both(&f, 0x400010, VMMU_WALK_WRITE, &res), VMMU_WALK_PAGE_FAULT);
	assert_int_equal(res.error_code, VMMU_PFERR_PRESENT | VMMU_PFERR_WRITE);
	/* ... allowed without CR0.WP */
	f.regs.cr0 &= ~VMMU_CR0_WP;
	assert_int_equal(vmmu_paging_update(f.ctx, &f.regs), 0);
	assert_int_equal(walk_both(&f, 0x400010, VMMU_WALK_WRITE, &res), VMMU_WALK_OK);
	/* reserved bit: P|RSVD, with I/D for a fetch under NXE */
	ref_set(&f.g, pte, ref_get(&f.g, pte) | (1ULL << 50));
	assert_int_equal(walk_both(&f, 0x400010, VMMU_WALK_FETCH, &res), VMMU_WALK_PAGE_FAULT);
	assert_int_equal(res.error_code, VMMU_PFERR_PRESENT | VMMU_PFERR_RSVD | VMMU_PFERR_FETCH);
	/* NX: fetch fault P|I/D */
	ref_set(&f.g, pte, 0x200000 | P | A | NX);
	assert_int_equal(walk_both(&f, 0x400010, VMMU_WALK_FETCH, &res), VMMU_WALK_PAGE_FAULT);
	assert_int_equal(res.error_code, VMMU_PFERR_PRESENT | VMMU_PFERR_FETCH);
	/* without NXE and SMEP there is no I/D bit, and bit 63 is reserved */
	f.regs.efer &= ~VMMU_EFER_NXE;
	assert_int_equal(vmmu_paging_update(f.ctx, &f.regs), 0);
	assert_int_equal(walk_both(&f, 0x400010, VMMU_WALK_FETCH, &res), VMMU_WALK_PAGE_FAULT);
	assert_int_equal(res.error_code, VMMU_PFERR_PRESENT | VMMU_PFERR_RSVD);
	assert_int_equal(walk_both(&f, 0x800000, VMMU_WALK_FETCH, &res), VMMU_WALK_PAGE_FAULT);
	assert_int_equal(res.error_code, 0);
	/* ... but SMEP brings I/D back */
	f.regs.cr4 |= VMMU_CR4_SMEP;
	assert_int_equal(vmmu_paging_update(f.ctx, &f.regs), 0);
	assert_int_equal(walk_both(&f, 0x800000, VMMU_WALK_FETCH, &res), VMMU_WALK_PAGE_FAULT);
	assert_int_equal(res.error_code, VMMU_PFERR_FETCH);
	/* SMEP: supervisor fetch from a user page */
	ref_set(&f.g, pte, 0x200000 | PWU | A);
	assert_int_equal(walk_both(&f, 0x400010, VMMU_WALK_FETCH, &res), VMMU_WALK_PAGE_FAULT);
	assert_int_equal(res.error_code, VMMU_PFERR_PRESENT | VMMU_PFERR_FETCH);
	/* SMAP: supervisor read of a user page; AC overrides explicit accesses only */
	f.regs.cr4 = LONG_CR4 | VMMU_CR4_SMAP;
	assert_int_equal(vmmu_paging_update(f.ctx, &f.regs), 0);
	assert_int_equal(walk_both(&f, 0x400010, 0, &res), VMMU_WALK_PAGE_FAULT);
	assert_int_equal(res.error_code, VMMU_PFERR_PRESENT);
	f.regs.rflags = VMMU_RFLAGS_AC;
	assert_int_equal(vmmu_paging_update(f.ctx, &f.regs), 0);
	assert_int_equal(walk_both(&f, 0x400010, 0, &res), VMMU_WALK_OK);
	assert_int_equal(walk_both(&f, 0x400010, VMMU_WALK_IMPLICIT | VMMU_WALK_USER, &res), VMMU_WALK_PAGE_FAULT);
	assert_int_equal(res.error_code, VMMU_PFERR_PRESENT); /* implicit: a supervisor access, U clear */
	/* PK: key 3 with AD blocks a user read; WD blocks a supervisor write only with CR0.WP */
	f.regs.cr4 |= VMMU_CR4_PKE;
	f.regs.pkru = 1u << 6;
	assert_int_equal(vmmu_paging_update(f.ctx, &f.regs), 0);
	ref_set(&f.g, pte, 0x200000 | PWU | A | (3ULL << 59));
	assert_int_equal(walk_both(&f, 0x400010, VMMU_WALK_USER, &res), VMMU_WALK_PAGE_FAULT);
	assert_int_equal(res.error_code, VMMU_PFERR_PRESENT | VMMU_PFERR_USER | VMMU_PFERR_PK);
	assert_int_equal(walk_both(&f, 0x400010, VMMU_WALK_USER | VMMU_WALK_FETCH, &res), VMMU_WALK_OK);
	f.regs.pkru = 2u << 6;
	assert_int_equal(vmmu_paging_update(f.ctx, &f.regs), 0);
	assert_int_equal(walk_both(&f, 0x400010, VMMU_WALK_USER, &res), VMMU_WALK_OK);
	assert_int_equal(walk_both(&f, 0x400010, VMMU_WALK_WRITE, &res), VMMU_WALK_OK); /* WP=0 */
	f.regs.cr0 |= VMMU_CR0_WP;
	assert_int_equal(vmmu_paging_update(f.ctx, &f.regs), 0);
	assert_int_equal(walk_both(&f, 0x400010, VMMU_WALK_WRITE, &res), VMMU_WALK_PAGE_FAULT);
	assert_int_equal(res.error_code, VMMU_PFERR_PRESENT | VMMU_PFERR_WRITE | VMMU_PFERR_PK);
	/* a supervisor page ignores keys */
	ref_set(&f.g, pte, 0x200000 | P | W | A | (3ULL << 59));
	assert_int_equal(walk_both(&f, 0x400010, VMMU_WALK_WRITE, &res), VMMU_WALK_OK);
	fixture_fini(&f);
}

static void test_canonical(void **state)
{
	struct fixture f;
	struct vmmu_walk_result res;

	(void)state;
	fixture_init(&f, 4);
	ref_map(&f.g, f.root, 4, 0xffff800000000000ULL, 0x200000, 1, PWU | A, PWU);
	fixture_ctx(&f);
	assert_int_equal(walk_both(&f, 0x0000800000000000ULL, 0, &res), VMMU_WALK_GP);
	assert_int_equal(res.error_code, 0);
	assert_int_equal(walk_both(&f, 0xfff0800000000000ULL, 0, &res), VMMU_WALK_GP);
	assert_int_equal(walk_both(&f, 0xffff800000000000ULL, 0, &res), VMMU_WALK_OK);
	assert_int_equal(walk_both(&f, 0x00007fffffffffffULL, 0, &res), VMMU_WALK_PAGE_FAULT);
	/* 5-level: 57-bit canonical */
	f.regs.cr4 |= VMMU_CR4_LA57;
	fixture_ctx(&f);
	assert_int_equal(vmmu_paging_get_mode(f.ctx), VMMU_PAGING_5LEVEL);
	assert_int_equal(walk_both(&f, 0x0000800000000000ULL, 0, &res), VMMU_WALK_PAGE_FAULT);
	assert_int_equal(walk_both(&f, 0x0100000000000000ULL, 0, &res), VMMU_WALK_GP);
	assert_int_equal(walk_both(&f, 0xff00000000000000ULL, 0, &res), VMMU_WALK_PAGE_FAULT);
	fixture_fini(&f);
}

/* Each reserved bit at each level of 4-/5-level paging, against fixed expectations. */
static void test_reserved_64(void **state)
{
	static const struct {
		unsigned int level; /* where the bit goes */
		uint64_t bit;
		bool leaf;          /* put PS (leaf) at that level */
		uint32_t flags;
		bool nxe;
		bool rsvd;
	} cases[] = {
		{ 4, 1ULL << 46, false, 0, true, true },          /* MAXPHYADDR */
		{ 4, 1ULL << 51, false, 0, true, true },
		{ 4, 1ULL << 45, false, 0, true, false },         /* below MAXPHYADDR (table moves out of memory) */
		{ 4, PS, false, 0, true, true },                  /* PS in a PML4E */
		{ 4, 1ULL << 8, false, 0, true, false },          /* ignored on Intel */
		{ 4, 1ULL << 8, false, VMMU_PAGING_F_AMD, true, true },
		{ 3, 1ULL << 8, false, VMMU_PAGING_F_AMD, true, false },
		{ 4, NX, false, 0, false, true },                 /* bit 63 without NXE */
		{ 4, NX, false, 0, true, false },
		{ 4, 1ULL << 52, false, 0, true, false },         /* ignored */
		{ 3, 1ULL << 13, true, VMMU_PAGING_F_GBPAGES, true, true },
		{ 3, 1ULL << 29, true, VMMU_PAGING_F_GBPAGES, true, true },
		{ 3, 1ULL << 12, true, VMMU_PAGING_F_GBPAGES, true, false }, /* PAT */
		{ 3, 0, true, 0, true, true },                    /* PS without 1 GiB pages */
		{ 2, 1ULL << 13, true, 0, true, true },
		{ 2, 1ULL << 20, true, 0, true, true },
		{ 2, 1ULL << 12, true, 0, true, false },
		{ 2, 1ULL << 50, true, 0, true, true },
		{ 1, PS, false, 0, true, false },                 /* PAT in a PTE */
		{ 1, 1ULL << 46, false, 0, true, true },
		{ 1, NX, false, 0, false, true },
	};

	(void)state;
	for (unsigned int levels = 4; levels <= 5; levels++) {
		for (unsigned int i = 0; i < ARRAY_SIZE(cases); i++) {
			struct fixture f;
			struct vmmu_walk_result res;
			uint64_t va = 0x40201000ULL, e;
			unsigned int lvl = cases[i].level == 4 ? levels : cases[i].level;
			vmmu_gpa_t leaf;
			int ret;

			fixture_init(&f, levels);
			f.regs.flags = cases[i].flags;
			if (!cases[i].nxe)
				f.regs.efer &= ~VMMU_EFER_NXE;
			leaf = ref_map(&f.g, f.root, levels, va, 0x300000, cases[i].leaf ? cases[i].level : 1,
				       PWU | A, PWU | A | D);
			/* find the entry at lvl */
			fixture_ctx(&f);
			assert_int_equal(vmmu_walk(f.ctx, va, VMMU_WALK_NO_AD, &res), cases[i].level == 3 &&
					 cases[i].leaf && !(cases[i].flags & VMMU_PAGING_F_GBPAGES) ?
					 VMMU_WALK_PAGE_FAULT : VMMU_WALK_OK);
			e = res.gpte_gpa[lvl - 1];
			if (cases[i].leaf)
				assert_int_equal(e, leaf);
			ref_set(&f.g, e, ref_get(&f.g, e) | cases[i].bit);
			ret = walk_both(&f, va, VMMU_WALK_WRITE, &res);
			if (cases[i].rsvd) {
				assert_int_equal(ret, VMMU_WALK_PAGE_FAULT);
				assert_int_equal(res.error_code, VMMU_PFERR_PRESENT | VMMU_PFERR_RSVD | VMMU_PFERR_WRITE);
				assert_int_equal(res.level, lvl);
			} else {
				assert_int_not_equal(res.error_code & VMMU_PFERR_RSVD, VMMU_PFERR_RSVD);
			}
			fixture_fini(&f);
		}
	}
}

/* PAE: PDPTE registers, their reserved bits, 2 MiB pages, NX. */
static void test_pae(void **state)
{
	struct fixture f;
	struct vmmu_walk_result res;
	struct log_capture log;
	struct vmmu_paging *c = NULL;
	vmmu_gpa_t pdpt, pd, pt;
	uint64_t pdptrs[4];

	(void)state;
	fixture_init(&f, 4);
	pdpt = ref_guest_alloc(&f.g) + 0x40; /* 32-byte aligned inside a page */
	pd = ref_guest_alloc(&f.g);
	pt = ref_guest_alloc(&f.g);
	ref_set(&f.g, pdpt + 8, pd | P);
	ref_set(&f.g, pd + 2 * 8, pt | PWU);
	ref_set(&f.g, pt + 3 * 8, 0x555000 | PWU);
	ref_set(&f.g, pd + 3 * 8, 0x800000 | PWU | PS | NX);
	f.regs.cr3 = pdpt;
	f.regs.efer = VMMU_EFER_NXE;
	fixture_ctx(&f);
	assert_int_equal(vmmu_paging_get_mode(f.ctx), VMMU_PAGING_PAE);
	for (unsigned int i = 0; i < 4; i++)
		pdptrs[i] = ref_get(&f.g, pdpt + i * 8);

	ref_walk(f.g.mem, &f.regs, pdptrs, NULL, 0x40403123, VMMU_WALK_WRITE, &(struct ref_out){ 0 });
	assert_int_equal(vmmu_walk(f.ctx, 0x40403123, VMMU_WALK_WRITE, &res), VMMU_WALK_OK);
	assert_int_equal(res.gpa, 0x555123);
	assert_int_equal(res.levels, 3);
	assert_int_equal(res.gpte[2], pd | P); /* the PDPTE register: no A bit */
	assert_int_equal(ref_get(&f.g, pdpt + 8), pd | P);
	assert_int_equal(ref_get(&f.g, pd + 2 * 8), pt | PWU | A);
	assert_int_equal(ref_get(&f.g, pt + 3 * 8), 0x555000 | PWU | A | D);
	assert_int_equal(vmmu_walk(f.ctx, 0x40600000, VMMU_WALK_FETCH, &res), VMMU_WALK_PAGE_FAULT);
	assert_int_equal(res.error_code, VMMU_PFERR_PRESENT | VMMU_PFERR_FETCH);
	assert_int_equal(vmmu_walk(f.ctx, 0x40600000, 0, &res), VMMU_WALK_OK);
	assert_int_equal(res.page_size, 2ULL << 20);
	/* 2 MiB PDE: bits 20:13 reserved, bit 12 (PAT) not */
	ref_set(&f.g, pd + 3 * 8, 0x800000 | PWU | PS | NX | (1ULL << 13));
	assert_int_equal(vmmu_walk(f.ctx, 0x40600000, 0, &res), VMMU_WALK_PAGE_FAULT);
	assert_int_equal(res.error_code, VMMU_PFERR_PRESENT | VMMU_PFERR_RSVD);
	ref_set(&f.g, pd + 3 * 8, 0x800000 | PWU | PS | NX | (1ULL << 12));
	assert_int_equal(vmmu_walk(f.ctx, 0x40600000, VMMU_WALK_NO_AD, &res), VMMU_WALK_OK);
	assert_int_equal(res.gpa, 0x800000);
	/* not-present PDPTE: fault at level 3 */
	assert_int_equal(vmmu_walk(f.ctx, 0x80000000, 0, &res), VMMU_WALK_PAGE_FAULT);
	assert_int_equal(res.error_code, 0);
	assert_int_equal(res.level, 3);
	/* a 4 GiB address wraps to 32 bits */
	assert_int_equal(vmmu_walk(f.ctx, 0x140403123ULL, VMMU_WALK_NO_AD, &res), VMMU_WALK_OK);
	assert_int_equal(res.gpa, 0x555123);
	/* PDPTE registers are loaded at build time, not re-read by walks */
	ref_set(&f.g, pdpt + 8, 0);
	assert_int_equal(vmmu_walk(f.ctx, 0x40403123, 0, &res), VMMU_WALK_OK);
	/* ... not even by an update with the same registers (nothing changed that it can see) */
	assert_int_equal(vmmu_paging_update(f.ctx, &f.regs), 0);
	assert_int_equal(vmmu_walk(f.ctx, 0x40403123, 0, &res), VMMU_WALK_OK);
	/* a MOV CR3 of the same value reloads them */
	assert_int_equal(vmmu_paging_reload_pdptrs(f.ctx), 0);
	assert_int_equal(vmmu_walk(f.ctx, 0x40403123, 0, &res), VMMU_WALK_PAGE_FAULT);
	assert_int_equal(res.level, 3);
	ref_set(&f.g, pdpt + 8, pd | P);
	assert_int_equal(vmmu_paging_reload_pdptrs(f.ctx), 0);
	assert_int_equal(vmmu_walk(f.ctx, 0x40403123, 0, &res), VMMU_WALK_OK);
	/* a reload that finds reserved bits fails and keeps the loaded registers */
	ref_set(&f.g, pdpt + 8, pd | P | (1ULL << 2));
	log_capture_start(&log);
	assert_int_equal(vmmu_paging_reload_pdptrs(f.ctx), -EINVAL);
	assert_int_equal(log.lines, 1);
	log_capture_stop();
	assert_int_equal(vmmu_walk(f.ctx, 0x40403123, 0, &res), VMMU_WALK_OK);
	ref_set(&f.g, pdpt + 8, 0);
	/* ... and so does a write of another CR3 */
	f.regs.cr3 = pdpt - 0x20;
	assert_int_equal(vmmu_paging_update(f.ctx, &f.regs), 0);
	assert_int_equal(vmmu_walk(f.ctx, 0x40403123, 0, &res), VMMU_WALK_PAGE_FAULT);
	/* reserved bits in a present PDPTE make the load fail (#GP on a CPU) */
	ref_set(&f.g, pdpt - 0x20, pd | P | (1ULL << 1));
	log_capture_start(&log);
	assert_int_equal(vmmu_paging_create(&c, f.g.mem, &f.regs), -EINVAL);
	f.regs.cr3 = pdpt;
	ref_set(&f.g, pdpt + 8, pd | P | (1ULL << 5));
	assert_int_equal(vmmu_paging_update(f.ctx, &f.regs), -EINVAL);
	assert_true(log.lines >= 2);
	log_capture_stop();
	/* the context kept its previous state */
	assert_int_equal(vmmu_walk(f.ctx, 0x40403123, 0, &res), VMMU_WALK_PAGE_FAULT);
	/* given PDPTE registers */
	f.regs.flags = VMMU_PAGING_F_PDPTRS;
	f.regs.pdptrs[1] = pd | P;
	assert_int_equal(vmmu_paging_update(f.ctx, &f.regs), 0);
	assert_int_equal(vmmu_walk(f.ctx, 0x40403123, 0, &res), VMMU_WALK_OK);
	/* PAE: bits 62:M of a PDE are reserved, bit 63 without NXE */
	ref_set(&f.g, pd + 2 * 8, pt | PWU | (1ULL << 55));
	assert_int_equal(vmmu_walk(f.ctx, 0x40403123, 0, &res), VMMU_WALK_PAGE_FAULT);
	assert_int_equal(res.error_code, VMMU_PFERR_PRESENT | VMMU_PFERR_RSVD);
	ref_set(&f.g, pd + 2 * 8, pt | PWU | NX);
	f.regs.efer = 0;
	assert_int_equal(vmmu_paging_update(f.ctx, &f.regs), 0);
	assert_int_equal(vmmu_walk(f.ctx, 0x40403123, 0, &res), VMMU_WALK_PAGE_FAULT);
	assert_int_equal(res.error_code, VMMU_PFERR_PRESENT | VMMU_PFERR_RSVD);
	fixture_fini(&f);
}

/* 32-bit paging: 4-byte entries, PSE and PSE-36, PS ignored without CR4.PSE. */
static void test_32bit(void **state)
{
	struct fixture f;
	struct vmmu_walk_result res;
	vmmu_gpa_t pd, pt;
	uint32_t *pdv, *ptv;

	(void)state;
	fixture_init(&f, 4);
	pd = ref_guest_alloc(&f.g);
	pt = ref_guest_alloc(&f.g);
	pdv = ref_guest_ptr(&f.g, pd);
	ptv = ref_guest_ptr(&f.g, pt);
	pdv[1] = (uint32_t)(pt | PWU);
	ptv[2] = 0x00abc000 | PWU;
	pdv[2] = 0x01c00000 | PWU | PS | (0x12u << 13); /* PA bits 39:32 = 0x12 */
	f.regs = (struct vmmu_paging_regs){ .cr0 = VMMU_CR0_PG | VMMU_CR0_WP | 1, .cr3 = pd,
					    .cr4 = VMMU_CR4_PSE, .efer = VMMU_EFER_NXE, .maxphyaddr = 40 };
	fixture_ctx(&f);
	assert_int_equal(vmmu_paging_get_mode(f.ctx), VMMU_PAGING_32BIT);
	assert_int_equal(walk_both(&f, 0x00402345, VMMU_WALK_WRITE, &res), VMMU_WALK_OK);
	assert_int_equal(res.gpa, 0xabc345);
	assert_int_equal(pdv[1], (uint32_t)(pt | PWU | A));
	assert_int_equal(ptv[2], 0x00abc000 | PWU | A | D);
	assert_int_equal(pdv[0], 0); /* 4-byte CAS: the neighbour is untouched */
	assert_int_equal(walk_both(&f, 0x00abcdef, VMMU_WALK_WRITE, &res), VMMU_WALK_OK);
	assert_int_equal(res.gpa, 0x1201c00000ULL + 0x2bcdef);
	assert_int_equal(res.page_size, 4ULL << 20);
	assert_int_equal(res.level, 2);
	/* MAXPHYADDR 36: PA bits 39:36 (PDE bits 20:17) are reserved */
	f.regs.maxphyaddr = 36;
	fixture_ctx(&f);
	assert_int_equal(walk_both(&f, 0x00abcdef, 0, &res), VMMU_WALK_PAGE_FAULT);
	assert_int_equal(res.error_code, VMMU_PFERR_PRESENT | VMMU_PFERR_RSVD);
	pdv[2] = 0x01c00000 | PWU | PS | (0x2u << 13);
	assert_int_equal(walk_both(&f, 0x00abcdef, 0, &res), VMMU_WALK_OK);
	assert_int_equal(res.gpa, 0x201c00000ULL + 0x2bcdef);
	pdv[2] |= 1u << 21; /* always reserved */
	assert_int_equal(walk_both(&f, 0x00abcdef, 0, &res), VMMU_WALK_PAGE_FAULT);
	/* no NX in 32-bit paging: a fetch is a read and reports no I/D */
	assert_int_equal(walk_both(&f, 0x00c00000, VMMU_WALK_FETCH, &res), VMMU_WALK_PAGE_FAULT);
	assert_int_equal(res.error_code, 0);
	/* CR4.PSE=0: PS is ignored, the PDE points to a page table */
	pdv[1] |= PS;
	f.regs.cr4 = 0;
	fixture_ctx(&f);
	assert_int_equal(walk_both(&f, 0x00402345, 0, &res), VMMU_WALK_OK);
	assert_int_equal(res.gpa, 0xabc345);
	assert_int_equal(res.level, 1);
	fixture_fini(&f);
}

/* A/D: set only when the walk succeeds, D only on the leaf for a write, none with NO_AD or in ROM. */
static void test_accessed_dirty(void **state)
{
	struct fixture f;
	struct vmmu_walk_result res;
	vmmu_gpa_t pte, e[4];
	uint8_t *rom;

	(void)state;
	fixture_init(&f, 4);
	pte = ref_map(&f.g, f.root, 4, 0x1000, 0x5000, 1, PWU, P | U);
	fixture_ctx(&f);
	assert_int_equal(vmmu_walk(f.ctx, 0x1000, VMMU_WALK_NO_AD, &res), VMMU_WALK_OK);
	for (unsigned int l = 0; l < 4; l++)
		e[l] = res.gpte_gpa[l];
	/* a faulting write sets nothing */
	assert_int_equal(walk_both(&f, 0x1000, VMMU_WALK_WRITE | VMMU_WALK_USER, &res), VMMU_WALK_PAGE_FAULT);
	for (unsigned int l = 0; l < 4; l++)
		assert_int_equal(ref_get(&f.g, e[l]) & (A | D), 0);
	/* NO_AD sets nothing */
	assert_int_equal(vmmu_walk(f.ctx, 0x1000, VMMU_WALK_USER | VMMU_WALK_NO_AD, &res), VMMU_WALK_OK);
	for (unsigned int l = 0; l < 4; l++)
		assert_int_equal(ref_get(&f.g, e[l]) & (A | D), 0);
	/* a read sets A everywhere, D nowhere */
	assert_int_equal(walk_both(&f, 0x1000, VMMU_WALK_USER, &res), VMMU_WALK_OK);
	for (unsigned int l = 0; l < 4; l++) {
		assert_int_equal(ref_get(&f.g, e[l]) & (A | D), A);
		assert_int_equal(res.gpte[l], ref_get(&f.g, e[l]));
	}
	/* a write sets D on the leaf only */
	ref_set(&f.g, pte, 0x5000 | PWU | A);
	assert_int_equal(walk_both(&f, 0x1000, VMMU_WALK_WRITE, &res), VMMU_WALK_OK);
	assert_int_equal(ref_get(&f.g, pte), 0x5000 | PWU | A | D);
	for (unsigned int l = 1; l < 4; l++)
		assert_int_equal(ref_get(&f.g, e[l]) & D, 0);

	/* tables in a read-only memslot are never written */
	rom = mmap(NULL, 4 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(rom != MAP_FAILED);
	{
		uint64_t *t = (uint64_t *)rom;

		t[0] = 0x10001000 | PWU;    /* PML4E -> PDPT */
		t[512] = 0x10002000 | PWU;  /* PDPTE -> PD */
		t[1024] = 0x10003000 | PWU; /* PDE -> PT */
		t[1536 + 7] = 0x6000 | PWU;
	}
	assert_int_equal(vmmu_memslots_add(f.g.mem, 1, 0x10000000, 4 * 4096, rom, VMMU_MEMSLOT_READONLY), 0);
	f.regs.cr3 = 0x10000000;
	fixture_ctx(&f);
	assert_int_equal(walk_both(&f, 0x7000, VMMU_WALK_WRITE, &res), VMMU_WALK_OK);
	assert_int_equal(res.gpa, 0x6000);
	assert_int_equal(((uint64_t *)rom)[1536 + 7], 0x6000 | PWU);
	assert_int_equal(((uint64_t *)rom)[0], 0x10001000 | PWU);
	munmap(rom, 4 * 4096);
	fixture_fini(&f);
}

/* Malformed tables: self-references, entries outside guest memory, random garbage. */
static void test_bad_tables(void **state)
{
	struct fixture f;
	struct vmmu_walk_result res;
	uint64_t seed = 0x1234;

	(void)state;
	fixture_init(&f, 4);
	/* PML4E 0 points at the PML4 itself, four times over: a walk reads the table as every level */
	ref_set(&f.g, f.root, f.root | PWU);
	fixture_ctx(&f);
	assert_int_equal(walk_both(&f, 0x0, VMMU_WALK_WRITE, &res), VMMU_WALK_OK);
	assert_int_equal(res.gpa, f.root);
	assert_int_equal(res.levels, 4);
	/* an entry that points outside guest memory: not present at the next level */
	ref_set(&f.g, f.root + 8, 0x7ff00000000ULL | PWU);
	assert_int_equal(walk_both(&f, 1ULL << 39, 0, &res), VMMU_WALK_PAGE_FAULT);
	assert_int_equal(res.error_code, 0);
	assert_int_equal(res.level, 3);
	/* garbage everywhere: the reference model and the walker must agree */
	for (unsigned int round = 0; round < 200; round++) {
		uint64_t *ram = (uint64_t *)f.g.ram;

		for (unsigned int i = 0; i < 8 * 512; i++) {
			uint64_t v = test_rand64(&seed);

			/* keep about half the entries pointing into the first 8 pages of memory */
			if (v & 1)
				v = (v & ~0x000ffffffffff000ULL) | (GUEST_BASE + (v >> 40) % 8 * 4096);
			if ((v & 0x30) == 0x30)
				v &= ~(NX | (0xfULL << 48)); /* fewer reserved-bit faults */
			ram[i] = v;
		}
		f.regs.efer = (seed & 2) ? LONG_EFER : LONG_EFER & ~VMMU_EFER_NXE;
		f.regs.cr4 = LONG_CR4 | ((seed & 4) ? VMMU_CR4_LA57 : 0) | ((seed & 8) ? VMMU_CR4_SMEP : 0);
		f.regs.flags = (seed & 16) ? VMMU_PAGING_F_GBPAGES : VMMU_PAGING_F_AMD;
		fixture_ctx(&f);
		for (unsigned int k = 0; k < 64; k++) {
			uint64_t gva = test_rand64(&seed);
			uint32_t access = (uint32_t)(test_rand64(&seed) & (VMMU_WALK_WRITE | VMMU_WALK_USER));

			if (k & 1)
				gva = (uint64_t)((int64_t)(gva << 16) >> 16);
			walk_both(&f, gva, access, &res);
		}
	}
	fixture_fini(&f);
}

/* vmmu_paging_update: changes take effect; errors leave the context as it was. */
static void test_update(void **state)
{
	struct fixture f;
	struct vmmu_walk_result res;
	struct vmmu_paging_regs bad;
	struct log_capture log;
	vmmu_gpa_t root2;

	(void)state;
	fixture_init(&f, 4);
	ref_map(&f.g, f.root, 4, 0x1000, 0x5000, 1, PWU, PWU);
	root2 = ref_guest_alloc(&f.g);
	ref_map(&f.g, root2, 4, 0x1000, 0x9000, 1, PWU, PWU);
	fixture_ctx(&f);
	assert_int_equal(vmmu_walk(f.ctx, 0x1000, 0, &res), VMMU_WALK_OK);
	assert_int_equal(res.gpa, 0x5000);
	f.regs.cr3 = root2;
	assert_int_equal(vmmu_paging_update(f.ctx, &f.regs), 0);
	assert_int_equal(vmmu_walk(f.ctx, 0x1000, 0, &res), VMMU_WALK_OK);
	assert_int_equal(res.gpa, 0x9000);
	bad = f.regs;
	bad.maxphyaddr = 70;
	log_capture_start(&log);
	assert_int_equal(vmmu_paging_update(f.ctx, &bad), -EINVAL);
	assert_int_equal(log.lines, 1);
	log_capture_stop();
	assert_int_equal(vmmu_walk(f.ctx, 0x1000, 0, &res), VMMU_WALK_OK);
	assert_int_equal(res.gpa, 0x9000);
	/* each input of the reserved-bit masks, changed through update alone */
	ref_map(&f.g, root2, 4, 0x40000000, 0x80000000, 3, PWU, PWU | A); /* a 1 GiB page */
	f.regs.flags = 0;
	assert_int_equal(vmmu_paging_update(f.ctx, &f.regs), 0);
	assert_int_equal(walk_both(&f, 0x40000000, 0, &res), VMMU_WALK_PAGE_FAULT);
	assert_int_equal(res.error_code, VMMU_PFERR_PRESENT | VMMU_PFERR_RSVD);
	f.regs.flags = VMMU_PAGING_F_GBPAGES;
	assert_int_equal(vmmu_paging_update(f.ctx, &f.regs), 0);
	assert_int_equal(walk_both(&f, 0x40000000, 0, &res), VMMU_WALK_OK);
	f.regs.maxphyaddr = 31 + 1; /* 32: the 1 GiB page at 2 GiB is still below 4 GiB */
	assert_int_equal(vmmu_paging_update(f.ctx, &f.regs), 0);
	assert_int_equal(walk_both(&f, 0x40000000, 0, &res), VMMU_WALK_OK);
	ref_set(&f.g, res.gpte_gpa[2], 0x100000000ULL | PWU | A | PS); /* PA bit 32 >= MAXPHYADDR */
	assert_int_equal(walk_both(&f, 0x40000000, 0, &res), VMMU_WALK_PAGE_FAULT);
	assert_int_equal(res.error_code, VMMU_PFERR_PRESENT | VMMU_PFERR_RSVD);
	f.regs.maxphyaddr = 46;
	assert_int_equal(vmmu_paging_update(f.ctx, &f.regs), 0);
	assert_int_equal(walk_both(&f, 0x40000000, 0, &res), VMMU_WALK_OK);
	/* switching mode: paging off */
	f.regs.cr0 = 0;
	f.regs.efer = 0;
	assert_int_equal(vmmu_paging_update(f.ctx, &f.regs), 0);
	assert_int_equal(vmmu_paging_get_mode(f.ctx), VMMU_PAGING_OFF);
	assert_int_equal(vmmu_walk(f.ctx, 0x1000, 0, &res), VMMU_WALK_OK);
	assert_int_equal(res.gpa, 0x1000);
	fixture_fini(&f);
}

/* Memslot changes after the context was built: walks follow the current slots. */
static void test_memslot_changes(void **state)
{
	struct fixture f;
	struct vmmu_walk_result res;
	uint8_t *copy;

	(void)state;
	fixture_init(&f, 4);
	ref_map(&f.g, f.root, 4, 0x1000, 0x5000, 1, PWU | A, PWU | A);
	fixture_ctx(&f);
	assert_int_equal(vmmu_walk(f.ctx, 0x1000, 0, &res), VMMU_WALK_OK);
	/* the tables move away: the root is no longer guest memory */
	assert_int_equal(vmmu_memslots_move(f.g.mem, 0, 0x40000000), 0);
	assert_int_equal(vmmu_walk(f.ctx, 0x1000, 0, &res), VMMU_WALK_PAGE_FAULT);
	assert_int_equal(res.error_code, 0);
	assert_int_equal(res.level, 4);
	/* the same GPAs backed by other host memory holding other tables */
	copy = mmap(NULL, GUEST_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(copy != MAP_FAILED);
	memcpy(copy, f.g.ram, GUEST_SIZE);
	assert_int_equal(vmmu_memslots_add(f.g.mem, 7, GUEST_BASE, GUEST_SIZE, copy, 0), 0);
	assert_int_equal(vmmu_walk(f.ctx, 0x1000, VMMU_WALK_NO_AD, &res), VMMU_WALK_OK);
	assert_int_equal(res.gpa, 0x5000);
	((uint64_t *)copy)[(res.gpte_gpa[0] - GUEST_BASE) / 8] = 0x6000 | PWU | A;
	assert_int_equal(vmmu_walk(f.ctx, 0x1000, VMMU_WALK_NO_AD, &res), VMMU_WALK_OK);
	assert_int_equal(res.gpa, 0x6000);
	assert_int_equal(vmmu_memslots_remove(f.g.mem, 7), 0);
	munmap(copy, GUEST_SIZE);
	assert_int_equal(vmmu_memslots_move(f.g.mem, 0, GUEST_BASE), 0);
	assert_int_equal(vmmu_walk(f.ctx, 0x1000, 0, &res), VMMU_WALK_OK);
	assert_int_equal(res.gpa, 0x5000);
	fixture_fini(&f);
}

/*
 * Two walkers setting A/D while a third thread flips an ignored bit (bit 9) in
 * the same entries and clears A/D: with compare-and-swap no flip may be lost.
 */
struct race {
	struct fixture *f;
	vmmu_gpa_t entries[4];
	_Atomic bool stop;
	int errors;
};

static void *race_walker(void *arg)
{
	struct race *r = arg;
	struct vmmu_walk_result res;

	while (!r->stop) {
		int ret = vmmu_walk(r->f->ctx, 0x1000, VMMU_WALK_WRITE, &res);

		if (ret != VMMU_WALK_OK && ret != -ELOOP)
			__atomic_add_fetch(&r->errors, 1, __ATOMIC_RELAXED);
	}
	return NULL;
}

static void test_ad_race(void **state)
{
	struct fixture f;
	struct race r = { .f = &f };
	struct vmmu_walk_result res;
	pthread_t t[2];
	unsigned int flips[4] = { 0 };
	uint64_t seed = 99;

	(void)state;
	fixture_init(&f, 4);
	ref_map(&f.g, f.root, 4, 0x1000, 0x5000, 1, PWU, PWU);
	fixture_ctx(&f);
	assert_int_equal(vmmu_walk(f.ctx, 0x1000, VMMU_WALK_NO_AD, &res), VMMU_WALK_OK);
	for (unsigned int l = 0; l < 4; l++)
		r.entries[l] = res.gpte_gpa[l];
	for (unsigned int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&t[i], NULL, race_walker, &r), 0);
	for (unsigned int i = 0; i < 200000; i++) {
		unsigned int l = (unsigned int)(test_rand64(&seed) & 3);
		uint64_t *p = ref_guest_ptr(&f.g, r.entries[l]);

		__atomic_fetch_xor(p, 1ULL << 9, __ATOMIC_SEQ_CST);
		flips[l]++;
		if (i % 7 == 0)
			__atomic_fetch_and(p, ~(A | D), __ATOMIC_SEQ_CST);
	}
	r.stop = true;
	for (unsigned int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	assert_int_equal(r.errors, 0);
	assert_int_equal(vmmu_walk(f.ctx, 0x1000, VMMU_WALK_WRITE, &res), VMMU_WALK_OK);
	for (unsigned int l = 0; l < 4; l++) {
		uint64_t v = ref_get(&f.g, r.entries[l]);

		assert_int_equal((v >> 9) & 1, flips[l] & 1);
		assert_int_equal(v & A, A);
		assert_int_equal(v & D, l == 0 ? D : 0);
	}
	fixture_fini(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_create_rejects),
		cmocka_unit_test(test_4level_sizes),
		cmocka_unit_test(test_error_code_bits),
		cmocka_unit_test(test_canonical),
		cmocka_unit_test(test_reserved_64),
		cmocka_unit_test(test_pae),
		cmocka_unit_test(test_32bit),
		cmocka_unit_test(test_accessed_dirty),
		cmocka_unit_test(test_bad_tables),
		cmocka_unit_test(test_update),
		cmocka_unit_test(test_memslot_changes),
		cmocka_unit_test(test_ad_race),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
