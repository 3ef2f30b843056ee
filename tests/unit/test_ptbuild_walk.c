/* SPDX-License-Identifier: MIT */
/*
 * The builder's tables walked by vmmu_walk(): random map/unmap/protect
 * sequences in every mode (first stage, EPT and NPT second stages, and 2-D
 * setups with first-stage tables living behind a second stage); every mapped
 * page is walked with reads, writes and fetches from CPL 0 and 3 and the
 * outcome (GPA, page size, access rights, fault and its error code or exit
 * qualification) is compared with what the reference model says the
 * protection flags mean.
 */
#include "ptbuild_helpers.h"
#include <libvmmu/paging.h>

static const uint32_t accesses[] = {
	VMMU_WALK_READ, VMMU_WALK_WRITE, VMMU_WALK_FETCH,
	VMMU_WALK_USER, VMMU_WALK_USER | VMMU_WALK_WRITE, VMMU_WALK_USER | VMMU_WALK_FETCH,
};

/* The key whose PKRU AD bit is set when PKE is on. */
#define BLOCKED_KEY 15

struct outcome {
	int ret;
	vmmu_gpa_t gpa;
	uint64_t page_size;
	uint16_t access;
	uint64_t error_code;
	uint64_t qual;
	vmmu_gpa_t fault_gpa;
};

/* What a first-stage walk of @gva must give, with every table entry granting everything. */
static struct outcome expect_first(enum vmmu_paging_mode m, const struct model_state *st, vmmu_gva_t gva,
				   uint32_t acc, bool pke)
{
	bool nxe = m != VMMU_PAGING_32BIT; /* the tests turn EFER.NXE on wherever it exists */
	uint64_t bits = (acc & (VMMU_WALK_WRITE | VMMU_WALK_USER)) | (nxe ? acc & VMMU_WALK_FETCH : 0);
	struct outcome o = { 0 };
	bool w, u, nx, fault, pk;

	if (!st->mapped) {
		o.ret = VMMU_WALK_PAGE_FAULT;
		o.error_code = bits;
		return o;
	}
	w = st->prot & VMMU_PT_WRITE;
	u = st->prot & VMMU_PT_USER;
	nx = st->prot & VMMU_PT_NX;
	fault = ((acc & VMMU_WALK_USER) && !u) || ((acc & VMMU_WALK_WRITE) && !w) || ((acc & VMMU_WALK_FETCH) && nx);
	pk = pke && u && !(acc & VMMU_WALK_FETCH) &&
	     (st->prot & VMMU_PT_PKEY_MASK) == VMMU_PT_PKEY(BLOCKED_KEY);
	if (fault || pk) {
		o.ret = VMMU_WALK_PAGE_FAULT;
		o.error_code = VMMU_PFERR_PRESENT | (pk ? VMMU_PFERR_PK : 0) | bits;
		return o;
	}
	o.gpa = st->gpa + (gva & 4095);
	o.page_size = model_size(m, st->level);
	o.access = (uint16_t)((nx ? 0 : VMMU_ACC_EXEC) | (w ? VMMU_ACC_WRITE : 0) | (u ? VMMU_ACC_USER : 0));
	return o;
}

/*
 * Second stage (EPT or NPT) on @gpa for access @acc, leaf protection @prot
 * (or not mapped). @gva_final: the GPA is the final one of a GVA walk.
 * Returns true if it faults, with @o filled in.
 */
static bool second_faults(bool ept, bool mapped, uint32_t prot, vmmu_gpa_t gpa, uint32_t acc, bool gva_final,
			  struct outcome *o)
{
	bool write = acc & VMMU_WALK_WRITE, fetch = acc & VMMU_WALK_FETCH;

	if (ept) {
		uint64_t kind = fetch ? VMMU_EPT_QUAL_FETCH : write ? VMMU_EPT_QUAL_WRITE : VMMU_EPT_QUAL_READ;
		uint32_t need = fetch ? VMMU_PT_EXEC : write ? VMMU_PT_WRITE : VMMU_PT_READ;

		if (mapped && (prot & need))
			return false;
		o->ret = VMMU_WALK_EPT_VIOLATION;
		o->qual = kind | (gva_final ? VMMU_EPT_QUAL_GVA_VALID | VMMU_EPT_QUAL_GVA_FINAL : 0);
		if (mapped)
			o->qual |= (prot & VMMU_PT_READ ? VMMU_EPT_QUAL_READABLE : 0) |
				   (prot & VMMU_PT_WRITE ? VMMU_EPT_QUAL_WRITABLE : 0) |
				   (prot & VMMU_PT_EXEC ? VMMU_EPT_QUAL_EXECUTABLE : 0);
	} else {
		uint64_t bits = VMMU_PFERR_USER | (write ? VMMU_PFERR_WRITE : 0) | (fetch ? VMMU_PFERR_FETCH : 0);
		bool fault = !(prot & VMMU_PT_USER) || (write && !(prot & VMMU_PT_WRITE)) || (fetch && (prot & VMMU_PT_NX));

		if (mapped && !fault)
			return false;
		o->ret = VMMU_WALK_NPF;
		o->error_code = (mapped ? VMMU_PFERR_PRESENT : 0) | bits | VMMU_PFERR_GUEST_FINAL;
	}
	o->fault_gpa = gpa;
	return true;
}

static uint16_t second_access(bool ept, uint32_t prot)
{
	if (ept)
		return (uint16_t)((prot & VMMU_PT_READ ? VMMU_ACC_USER : 0) | (prot & VMMU_PT_WRITE ? VMMU_ACC_WRITE : 0) |
				  (prot & VMMU_PT_EXEC ? VMMU_ACC_EXEC : 0));
	return (uint16_t)((prot & VMMU_PT_NX ? 0 : VMMU_ACC_EXEC) | (prot & VMMU_PT_WRITE ? VMMU_ACC_WRITE : 0) |
			  (prot & VMMU_PT_USER ? VMMU_ACC_USER : 0));
}

/* Compare a walk with the expectation; on success also the leaf entry and its level with the builder's lookup. */
static void check_walk(struct vmmu_paging *ctx, const struct vmmu_ptbuild *b, vmmu_gva_t gva, uint32_t acc,
		       const struct outcome *o, int level)
{
	struct vmmu_walk_result res;
	struct vmmu_ptbuild_entry e;
	int ret = vmmu_walk(ctx, gva, acc | VMMU_WALK_NO_AD, &res);

	if (ret != o->ret)
		printf("gva 0x%llx access 0x%x: outcome %d, expected %d\n", (unsigned long long)gva, acc, ret, o->ret);
	assert_int_equal(ret, o->ret);
	switch (ret) {
	case VMMU_WALK_OK:
		assert_int_equal(res.gpa, o->gpa);
		assert_int_equal(res.page_size, o->page_size);
		assert_int_equal(res.access, o->access);
		assert_int_equal(res.level, level);
		assert_int_equal(vmmu_ptbuild_lookup(b, gva, &e), 0);
		assert_int_equal(res.gpte[level - 1], e.entries[level - 1]);
		assert_int_equal(res.gpte_gpa[level - 1], e.entry_gpa[level - 1]);
		break;
	case VMMU_WALK_PAGE_FAULT:
		assert_int_equal(res.error_code, o->error_code);
		assert_int_equal(res.cr2, gva);
		break;
	case VMMU_WALK_EPT_VIOLATION:
		assert_int_equal(res.exit_qualification, o->qual);
		assert_int_equal(res.fault_gpa, o->fault_gpa);
		break;
	case VMMU_WALK_NPF:
		assert_int_equal(res.error_code, o->error_code);
		assert_int_equal(res.fault_gpa, o->fault_gpa);
		break;
	default:
		fail();
	}
}

/* The GVAs to walk: two offsets in each page of each map (at most @cap pages per map), then random ones. */
static size_t pick_samples(const struct model_op *ops, size_t nops, enum vmmu_paging_mode m, vmmu_gva_t window,
			   uint64_t wsize, uint64_t *rnd, vmmu_gva_t *out, size_t max, unsigned int cap)
{
	size_t n = 0;

	for (size_t i = 0; i < nops; i++) {
		uint64_t ps;

		if (ops[i].kind != M_MAP)
			continue;
		ps = model_size(m, ops[i].level);
		for (uint64_t j = 0; j < ops[i].size / ps && j < cap && n + 2 <= max; j++) {
			out[n++] = ops[i].gva + j * ps;
			out[n++] = ops[i].gva + j * ps + (test_rand64(rnd) % ps);
		}
	}
	while (n < max)
		out[n++] = window + test_rand64(rnd) % wsize;
	return n;
}

static uint32_t random_first_prot(enum vmmu_paging_mode m, uint64_t r)
{
	return (r & 1 ? VMMU_PT_WRITE : 0) | (r & 2 ? VMMU_PT_USER : 0) |
	       (r & 4 && m != VMMU_PAGING_32BIT ? VMMU_PT_NX : 0) |
	       (mode_levels(m) >= 4 ? VMMU_PT_PKEY(r >> 8) : 0);
}

static uint32_t random_ept_prot(uint64_t r)
{
	static const uint32_t xwr[] = {
		VMMU_PT_READ, VMMU_PT_READ | VMMU_PT_WRITE, VMMU_PT_READ | VMMU_PT_EXEC,
		VMMU_PT_READ | VMMU_PT_WRITE | VMMU_PT_EXEC, VMMU_PT_EXEC, /* execute-only */
	};

	return xwr[r % ARRAY_SIZE(xwr)] | VMMU_PT_MT_WB;
}

enum { NOPS = 60, NSAMPLES = 3000 };

static struct vmmu_paging_regs first_regs(enum vmmu_paging_mode m, vmmu_gpa_t cr3, bool pke)
{
	struct vmmu_paging_regs r = { .cr0 = VMMU_CR0_PG | VMMU_CR0_WP, .cr3 = cr3, .maxphyaddr = 46 };

	switch (m) {
	case VMMU_PAGING_32BIT:
		r.cr4 = VMMU_CR4_PSE;
		break;
	case VMMU_PAGING_PAE:
		r.cr4 = VMMU_CR4_PAE;
		r.efer = VMMU_EFER_NXE;
		break;
	default:
		r.cr4 = VMMU_CR4_PAE | (m == VMMU_PAGING_5LEVEL ? VMMU_CR4_LA57 : 0) | (pke ? VMMU_CR4_PKE : 0);
		r.efer = VMMU_EFER_LME | VMMU_EFER_LMA | VMMU_EFER_NXE;
		r.flags = VMMU_PAGING_F_GBPAGES;
		r.pkru = 1u << (2 * BLOCKED_KEY);
		break;
	}
	return r;
}

/* Random ops on @b in [@window, +@wsize); maps go to [@gpa_base, +@gpa_span). */
static void run_random_ops(struct vmmu_ptbuild *b, enum vmmu_paging_mode m, bool ept, bool npt, struct model_op *ops,
			   vmmu_gva_t window, uint64_t wsize, vmmu_gpa_t gpa_base, uint64_t gpa_span, uint64_t *rnd)
{
	for (int i = 0; i < NOPS; i++) {
		struct model_op *o = &ops[i];
		uint64_t r = test_rand64(rnd);

		model_random_op(m, window, wsize, gpa_span, rnd, o);
		o->gpa += gpa_base;
		o->prot = ept ? random_ept_prot(r) : random_first_prot(m, r);
		if (npt && (r & 0x30)) /* NPT: mostly user pages, as every NPT access is a user access */
			o->prot |= VMMU_PT_USER;
		assert_int_equal(model_run(b, m, o), 0);
	}
}

/* First stage on its own. */
static void first_stage(enum vmmu_paging_mode m, vmmu_gva_t window, bool pke, uint64_t seed)
{
	struct pool *p = pool_create();
	struct vmmu_ptbuild *b = builder_create(p, m, 0);
	const uint64_t wsize = 8 * model_size(m, model_top_leaf(m));
	static struct model_op ops[NOPS];
	static vmmu_gva_t samples[NSAMPLES];
	struct vmmu_paging_regs regs = first_regs(m, vmmu_ptbuild_root(b), pke);
	struct vmmu_paging *ctx;
	uint64_t rnd = seed;
	size_t n;

	run_random_ops(b, m, false, false, ops, window, wsize, 0,
		       m == VMMU_PAGING_32BIT ? 1ULL << 32 : 1ULL << 44, &rnd);
	if (m == VMMU_PAGING_PAE && (seed & 1)) {
		regs.flags |= VMMU_PAGING_F_PDPTRS;
		assert_int_equal(vmmu_ptbuild_pdptes(b, regs.pdptrs), 0);
	}
	assert_int_equal(vmmu_paging_create(&ctx, p->mem, &regs), 0);
	n = pick_samples(ops, NOPS, m, window, wsize, &rnd, samples, NSAMPLES, 600);
	for (size_t i = 0; i < n; i++) {
		struct model_state st = model_eval(m, ops, NOPS, samples[i]);

		for (size_t a = 0; a < ARRAY_SIZE(accesses); a++) {
			struct outcome o = expect_first(m, &st, samples[i], accesses[a], pke);

			check_walk(ctx, b, samples[i], accesses[a], &o, st.level);
		}
	}
	vmmu_paging_destroy(ctx);
	vmmu_ptbuild_destroy(b, true);
	assert_int_equal(p->in_use, 0);
	pool_destroy(p);
}

static void test_first_stage(void **state)
{
	(void)state;
	first_stage(VMMU_PAGING_32BIT, 0x80000000, false, 1);
	first_stage(VMMU_PAGING_PAE, 0x40000000, false, 2);
	first_stage(VMMU_PAGING_PAE, 0xc0000000, false, 3);
	first_stage(VMMU_PAGING_4LEVEL, 0x00007ff800000000ULL, true, 4);
	first_stage(VMMU_PAGING_4LEVEL, 0xfffffffe00000000ULL, false, 5); /* up to 2^64 - 1 */
	first_stage(VMMU_PAGING_5LEVEL, 0xff00000000000000ULL, true, 6);
	first_stage(VMMU_PAGING_5LEVEL, 0x0001000000000000ULL, false, 7);
}

static struct vmmu_paging *second_ctx(struct pool *p, struct vmmu_ptbuild *b, enum vmmu_paging_mode m, bool ept)
{
	struct vmmu_paging *ctx;

	if (ept) {
		struct vmmu_ept_config cfg = { .eptp = vmmu_ptbuild_root(b), .maxphyaddr = 46,
					       .flags = VMMU_EPT_F_EXECONLY | VMMU_EPT_F_1G };

		assert_int_equal(vmmu_paging_create_ept(&ctx, p->mem, &cfg), 0);
	} else {
		struct vmmu_npt_config cfg = { .ncr3 = vmmu_ptbuild_root(b), .levels = (uint8_t)mode_levels(m),
					       .maxphyaddr = 46, .nxe = 1, .gbpages = 1 };

		assert_int_equal(vmmu_paging_create_npt(&ctx, p->mem, &cfg), 0);
	}
	return ctx;
}

/* A second stage walked on its own: GPA in, GPA out. */
static void second_stage(enum vmmu_paging_mode m, bool ept, vmmu_gpa_t window, uint64_t seed)
{
	struct pool *p = pool_create();
	struct vmmu_ptbuild *b = builder_create(p, m, ept ? 0 : VMMU_PTBUILD_F_NPT);
	const uint64_t wsize = 8 * model_size(m, 3);
	static struct model_op ops[NOPS];
	static vmmu_gva_t samples[NSAMPLES];
	struct vmmu_paging *ctx;
	uint64_t rnd = seed;
	size_t n;

	run_random_ops(b, m, ept, !ept, ops, window, wsize, 0, 1ULL << 44, &rnd);
	ctx = second_ctx(p, b, m, ept);
	n = pick_samples(ops, NOPS, m, window, wsize, &rnd, samples, NSAMPLES, 600);
	for (size_t i = 0; i < n; i++) {
		struct model_state st = model_eval(m, ops, NOPS, samples[i]);

		for (size_t a = 0; a < 3; a++) {
			struct outcome o = { .ret = VMMU_WALK_OK };

			if (!second_faults(ept, st.mapped, st.prot, samples[i], accesses[a], false, &o)) {
				o.gpa = st.gpa + (samples[i] & 4095);
				o.page_size = model_size(m, st.level);
				o.access = second_access(ept, st.prot);
			}
			check_walk(ctx, b, samples[i], accesses[a], &o, st.level);
		}
	}
	vmmu_paging_destroy(ctx);
	vmmu_ptbuild_destroy(b, true);
	assert_int_equal(p->in_use, 0);
	pool_destroy(p);
}

static void test_second_stage(void **state)
{
	(void)state;
	second_stage(VMMU_PAGING_EPT4, true, 0x0000100000000000ULL, 11);
	second_stage(VMMU_PAGING_EPT5, true, 0x0010000000000000ULL, 12);
	second_stage(VMMU_PAGING_4LEVEL, false, 0x0000004000000000ULL, 13); /* NPT, 4 levels */
	second_stage(VMMU_PAGING_4LEVEL, false, 0x0000fffe00000000ULL, 15); /* GPAs up to 2^48 - 1 */
	second_stage(VMMU_PAGING_5LEVEL, false, 0x01fffffe00000000ULL, 14); /* NPT, 5 levels, up to 2^57 - 1 */
}

/*
 * 2-D: first-stage tables at L2 GPAs [L2_TABLES, +16 MiB), which the second
 * stage maps to L1 GPA L1_ALIAS where the same host memory sits; second-stage
 * tables at L1 GPA POOL_GPA. Guest pages map into an L2 data window that the
 * second stage maps with random sizes and rights.
 */
#define L2_TABLES 0x40000000ULL
#define L1_ALIAS  0x20000000ULL

static void two_d(enum vmmu_paging_mode m1, enum vmmu_paging_mode m2, bool ept, uint64_t seed)
{
	struct pool *p1 = pool_create_at(L2_TABLES), *p2 = pool_create();
	struct vmmu_ptbuild *b1 = builder_create(p1, m1, 0), *b2 = builder_create(p2, m2, ept ? 0 : VMMU_PTBUILD_F_NPT);
	const bool small = m1 == VMMU_PAGING_32BIT || m1 == VMMU_PAGING_PAE;
	const vmmu_gva_t window = small ? 0x10000000 : 0x00007f0000000000ULL;
	const uint64_t wsize = 8 * model_size(m1, model_top_leaf(m1));
	const vmmu_gpa_t data = small ? 0x80000000ULL : 0x100000000ULL;
	const uint64_t data_span = small ? 1ULL << 30 : 1ULL << 32;
	static struct model_op ops1[NOPS], ops2[NOPS];
	static vmmu_gva_t samples[NSAMPLES];
	struct vmmu_paging_regs regs = first_regs(m1, vmmu_ptbuild_root(b1), false);
	struct vmmu_paging *guest, *second;
	uint32_t table_prot = ept ? VMMU_PT_EPT_RWX : VMMU_PT_WRITE | VMMU_PT_USER;
	uint64_t rnd = seed;
	size_t n;

	/* L1 sees the first-stage tables' memory at L1_ALIAS */
	assert_int_equal(vmmu_memslots_add(p2->mem, 1, L1_ALIAS, (uint64_t)POOL_PAGES * 4096, p1->hva, 0), 0);
	assert_int_equal(vmmu_ptbuild_map(b2, L2_TABLES, L1_ALIAS, (uint64_t)POOL_PAGES * 4096, VMMU_PT_SIZE_2M,
					  table_prot), 0);
	/* the data window: 1 GiB pages first, then random changes */
	assert_int_equal(vmmu_ptbuild_map(b2, data, 0x1000000000ULL, data_span, VMMU_PT_SIZE_1G,
					  ept ? VMMU_PT_EPT_RWX : VMMU_PT_WRITE | VMMU_PT_USER), 0);
	run_random_ops(b2, m2, ept, !ept, ops2, data, data_span, 0x2000000000ULL, 1ULL << 40, &rnd);
	run_random_ops(b1, m1, false, false, ops1, window, wsize, data, data_span, &rnd);
	if (m1 == VMMU_PAGING_PAE) {
		regs.flags |= VMMU_PAGING_F_PDPTRS;
		assert_int_equal(vmmu_ptbuild_pdptes(b1, regs.pdptrs), 0);
	}
	second = second_ctx(p2, b2, m2, ept);
	assert_int_equal(vmmu_paging_create(&guest, p2->mem, &regs), 0);
	assert_int_equal(vmmu_paging_set_nested(guest, second), 0);

	n = pick_samples(ops1, NOPS, m1, window, wsize, &rnd, samples, NSAMPLES / 2, 200);
	for (size_t i = 0; i < n; i++) {
		struct model_state st = model_eval(m1, ops1, NOPS, samples[i]);

		for (size_t a = 0; a < ARRAY_SIZE(accesses); a++) {
			struct outcome o = expect_first(m1, &st, samples[i], accesses[a], false);

			if (o.ret == VMMU_WALK_OK) {
				struct vmmu_ptbuild_entry e2;
				int r2 = vmmu_ptbuild_lookup(b2, o.gpa, &e2);

				assert_true(r2 == 0 || r2 == -ENOENT);
				if (!second_faults(ept, r2 == 0, e2.prot, o.gpa, accesses[a], true, &o))
					o.gpa = e2.gpa;
				else
					o.fault_gpa = o.gpa;
			}
			check_walk(guest, b1, samples[i], accesses[a], &o, st.level);
		}
	}
	vmmu_paging_destroy(guest);
	vmmu_paging_destroy(second);
	vmmu_ptbuild_destroy(b1, true);
	vmmu_ptbuild_destroy(b2, true);
	assert_int_equal(p1->in_use, 0);
	assert_int_equal(p2->in_use, 0);
	pool_destroy(p1);
	pool_destroy(p2);
}

static void test_two_dimensional(void **state)
{
	(void)state;
	two_d(VMMU_PAGING_4LEVEL, VMMU_PAGING_EPT4, true, 21);
	two_d(VMMU_PAGING_5LEVEL, VMMU_PAGING_EPT5, true, 22);
	two_d(VMMU_PAGING_4LEVEL, VMMU_PAGING_4LEVEL, false, 23); /* over NPT */
	two_d(VMMU_PAGING_PAE, VMMU_PAGING_4LEVEL, false, 24);
	two_d(VMMU_PAGING_32BIT, VMMU_PAGING_EPT4, true, 25);
}

/* A walk with A/D updates sets A on the path and D on the leaf of a write, as the builder's lookup then shows. */
static void test_accessed_dirty(void **state)
{
	struct pool *p = pool_create();
	struct vmmu_ptbuild *b = builder_create(p, VMMU_PAGING_4LEVEL, 0);
	struct vmmu_paging_regs regs = first_regs(VMMU_PAGING_4LEVEL, vmmu_ptbuild_root(b), false);
	struct vmmu_ptbuild_entry e;
	struct vmmu_walk_result res;
	struct vmmu_paging *ctx;

	(void)state;
	assert_int_equal(vmmu_ptbuild_map(b, 0x400000, 0x800000, VMMU_PT_SIZE_2M, VMMU_PT_SIZE_2M, VMMU_PT_WRITE), 0);
	assert_int_equal(vmmu_ptbuild_map(b, 0x601000, 0x9000, VMMU_PT_SIZE_4K, VMMU_PT_SIZE_4K, VMMU_PT_WRITE), 0);
	assert_int_equal(vmmu_paging_create(&ctx, p->mem, &regs), 0);
	assert_int_equal(vmmu_walk(ctx, 0x400123, VMMU_WALK_READ, &res), VMMU_WALK_OK);
	assert_int_equal(vmmu_ptbuild_lookup(b, 0x400123, &e), 0);
	for (int l = 4; l >= 2; l--)
		assert_true(e.entries[l - 1] & 0x20);
	assert_false(e.entries[1] & 0x40);
	assert_int_equal(vmmu_walk(ctx, 0x601000, VMMU_WALK_WRITE, &res), VMMU_WALK_OK);
	assert_int_equal(vmmu_ptbuild_lookup(b, 0x601000, &e), 0);
	assert_int_equal(e.entries[0] & 0x60, 0x60);
	assert_int_equal(e.entries[1] & 0x60, 0x20); /* D only on the leaf */
	/* protect keeps A/D */
	assert_int_equal(vmmu_ptbuild_protect(b, 0x601000, VMMU_PT_SIZE_4K, 0), 0);
	assert_int_equal(vmmu_ptbuild_lookup(b, 0x601000, &e), 0);
	assert_int_equal(e.entries[0], 0x9000ULL | 0x1 | 0x60);
	assert_int_equal(vmmu_walk(ctx, 0x601000, VMMU_WALK_WRITE, &res), VMMU_WALK_PAGE_FAULT);
	assert_int_equal(res.error_code, VMMU_PFERR_PRESENT | VMMU_PFERR_WRITE);
	vmmu_paging_destroy(ctx);
	vmmu_ptbuild_destroy(b, true);
	assert_int_equal(p->in_use, 0);

	/* EPT with the A/D bit in the EPTP: the walk sets EPT A (8) and D (9); protect keeps them */
	b = builder_create(p, VMMU_PAGING_EPT4, VMMU_PTBUILD_F_EPT_AD);
	{
		struct vmmu_ept_config cfg = { .eptp = vmmu_ptbuild_root(b), .maxphyaddr = 46 };

		assert_int_equal(cfg.eptp & 0x40, 0x40);
		assert_int_equal(vmmu_ptbuild_map(b, 0x3000, 0x7000, VMMU_PT_SIZE_4K, VMMU_PT_SIZE_4K, VMMU_PT_EPT_RWX), 0);
		assert_int_equal(vmmu_paging_create_ept(&ctx, p->mem, &cfg), 0);
	}
	assert_int_equal(vmmu_walk(ctx, 0x3010, VMMU_WALK_WRITE, &res), VMMU_WALK_OK);
	assert_int_equal(res.gpa, 0x7010);
	assert_int_equal(vmmu_ptbuild_lookup(b, 0x3000, &e), 0);
	assert_int_equal(e.entries[0] & 0x300, 0x300);
	assert_int_equal(e.entries[1] & 0x300, 0x100);
	assert_int_equal(vmmu_ptbuild_protect(b, 0x3000, VMMU_PT_SIZE_4K, VMMU_PT_READ), 0);
	assert_int_equal(vmmu_ptbuild_lookup(b, 0x3000, &e), 0);
	assert_int_equal(e.entries[0], 0x7000ULL | 0x1 | 0x300);
	vmmu_paging_destroy(ctx);
	vmmu_ptbuild_destroy(b, true);
	assert_int_equal(p->in_use, 0);
	pool_destroy(p);
}

/* 32-bit paging: the builder's 4 MiB pages are pages only with CR4.PSE; without it PS is ignored. */
static void test_pse_off(void **state)
{
	struct pool *p = pool_create();
	struct vmmu_ptbuild *b = builder_create(p, VMMU_PAGING_32BIT, 0);
	struct vmmu_paging_regs regs = first_regs(VMMU_PAGING_32BIT, vmmu_ptbuild_root(b), false);
	struct vmmu_walk_result res;
	struct vmmu_paging *ctx;

	(void)state;
	/* the frame is inside the (zeroed, unused) pool, so read as a page table it holds no PTE */
	assert_int_equal(vmmu_ptbuild_map(b, 0x400000, 0x800000, VMMU_PT_SIZE_4M, VMMU_PT_SIZE_4M, VMMU_PT_WRITE), 0);
	assert_int_equal(vmmu_paging_create(&ctx, p->mem, &regs), 0);
	assert_int_equal(vmmu_walk(ctx, 0x400123, VMMU_WALK_NO_AD, &res), VMMU_WALK_OK);
	assert_int_equal(res.gpa, 0x800123);
	assert_int_equal(res.page_size, VMMU_PT_SIZE_4M);
	regs.cr4 &= ~VMMU_CR4_PSE;
	assert_int_equal(vmmu_paging_update(ctx, &regs), 0);
	assert_int_equal(vmmu_walk(ctx, 0x400123, VMMU_WALK_NO_AD, &res), VMMU_WALK_PAGE_FAULT);
	assert_int_equal(res.error_code, 0);
	assert_int_equal(res.level, 1);
	assert_int_equal(res.gpte_gpa[0], 0x800000);
	vmmu_paging_destroy(ctx);
	vmmu_ptbuild_destroy(b, true);
	pool_destroy(p);
}

/* Outcome of a walk without A/D side effects, reduced to what a translation is. */
static struct outcome walk_outcome(struct vmmu_paging *ctx, vmmu_gva_t gva, uint32_t acc)
{
	struct vmmu_walk_result res;
	struct outcome o = { 0 };

	o.ret = vmmu_walk(ctx, gva, acc | VMMU_WALK_NO_AD, &res);
	if (o.ret == VMMU_WALK_OK) {
		o.gpa = res.gpa;
		o.access = res.access;
	} else {
		o.error_code = res.error_code;
	}
	return o;
}

static bool same_translation(const struct outcome *a, const struct outcome *b)
{
	return a->ret == b->ret && a->gpa == b->gpa && a->access == b->access && a->error_code == b->error_code;
}

/*
 * The allocator fails at each step of a map, an unmap and a protect that split
 * huge pages; the walker then sees every sample below some point translate as
 * after the operation and every one from there on as before it.
 */
static void test_enomem_walks(void **state)
{
	const enum vmmu_paging_mode m = VMMU_PAGING_4LEVEL;
	const struct model_op setup[] = {
		{ M_MAP, 0x40000000, VMMU_PT_SIZE_1G, 0x80000000, 3, VMMU_PT_USER },
		{ M_MAP, 0x80000000, 4 * VMMU_PT_SIZE_2M, 0x0, 2, VMMU_PT_WRITE | VMMU_PT_NX },
	};
	const struct model_op ops[] = {
		{ M_MAP, 0x7fdff000, 0x403000, 0x5000000, 1, VMMU_PT_WRITE | VMMU_PT_USER },
		{ M_UNMAP, 0x7fdff000, 0x403000, 0, 0, 0 },
		{ M_PROTECT, 0x7fdff000, 0x403000, 0, 0, VMMU_PT_NX },
	};
	static vmmu_gva_t samples[600];
	size_t n = 0;

	(void)state;
	for (vmmu_gva_t g = 0x7fc00000; g < 0x80c00000 && n < ARRAY_SIZE(samples); g += 0x7000)
		samples[n++] = g;
	for (size_t oi = 0; oi < ARRAY_SIZE(ops); oi++) {
		struct model_op all[3] = { setup[0], setup[1], ops[oi] };
		bool done = false;
		long k;

		for (k = 0; !done; k++) {
			struct pool *p = pool_create();
			struct vmmu_ptbuild *b = builder_create(p, m, 0);
			struct vmmu_paging_regs regs = first_regs(m, vmmu_ptbuild_root(b), false);
			struct vmmu_paging *ctx;
			size_t prefix = 0;
			int ret;

			assert_int_equal(model_run(b, m, &setup[0]), 0);
			assert_int_equal(model_run(b, m, &setup[1]), 0);
			p->fail_after = k;
			vmmu_set_log(NULL, VMMU_LOG_ERROR, NULL);
			ret = model_run(b, m, &ops[oi]);
			log_capture_stop();
			done = ret == 0;
			assert_true(done || ret == -ENOMEM);
			assert_int_equal(vmmu_paging_create(&ctx, p->mem, &regs), 0);
			for (size_t i = 0; i < n; i++) {
				struct model_state before = model_eval(m, all, 2, samples[i]);
				struct model_state after = model_eval(m, all, 3, samples[i]);
				bool as_after = true, as_before = true;

				for (size_t a = 0; a < ARRAY_SIZE(accesses); a++) {
					struct outcome got = walk_outcome(ctx, samples[i], accesses[a]);
					struct outcome want_after = expect_first(m, &after, samples[i], accesses[a], false);
					struct outcome want_before = expect_first(m, &before, samples[i], accesses[a], false);

					as_after = as_after && same_translation(&got, &want_after);
					as_before = as_before && same_translation(&got, &want_before);
				}
				if (prefix == i && as_after)
					prefix++;
				else
					assert_true(as_before);
			}
			if (done)
				assert_int_equal(prefix, n);
			vmmu_paging_destroy(ctx);
			vmmu_ptbuild_destroy(b, true);
			assert_int_equal(p->in_use, 0);
			pool_destroy(p);
			assert_true(k < 16);
		}
		assert_true(k >= 3); /* each operation needed at least two table pages */
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_first_stage),
		cmocka_unit_test(test_second_stage),
		cmocka_unit_test(test_two_dimensional),
		cmocka_unit_test(test_accessed_dirty),
		cmocka_unit_test(test_enomem_walks),
		cmocka_unit_test(test_pse_off),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
