/* SPDX-License-Identifier: MIT */
/*
 * Differential test: three executions of the same guest must agree on every
 * access outcome (ok with the same data, #PF with the same error code and
 * CR2, MMIO) and on every guest A/D bit:
 *   - the soft machine over the MMU in TDP (EPT) mode,
 *   - the soft machine over the MMU in shadow mode (half of the runs with the
 *     bypass trick),
 *   - the walker alone over plain memory (no TLB, no MMU): the reference.
 *
 * Each run builds a random 4-level or PAE guest table with the page-table builder in
 * a scratch memory and changes it op by op (4 KiB and 2 MiB maps with random
 * protections, preset A/D and sometimes a reserved bit, unmaps, protects).
 * Every entry an op changes is written into the three guests as the guest
 * kernel would: a supervisor store through an identity map of the table
 * region (in shadow mode these stores fault on write-protected tables and are
 * emulated: zaps, flooding), followed by INVLPG of every probed address.
 * Then random reads, writes and fetches at CPL 0 and 3 hit the probed pages.
 * CR0.WP, CR4.SMEP/SMAP, EFER.NXE and EFLAGS.AC are random per run; in
 * some runs both machines log dirty pages and are harvested, and their MMUs
 * are zapped, between ops (none of which may change what the guest sees).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <libvmmu/ptbuild.h>

#include "soft/soft_helpers.h"
#include "mmu/mmu_internal.h"

#define MEM      (8ULL << 20)
#define TB0      0x100000ULL            /* table region [TB0, TB1): builder allocations */
#define TB1      0x300000ULL
#define DATA0    0x400000ULL
#define MMIO_GPA 0x10000000ULL
#define TBASE    0x7f8000000000ULL      /* identity map of the table region (supervisor RW) */
#define TBASE_PAE 0xc0000000ULL
#define NPROBES  64
#define RUNS     40
#define OPS      150
#define ACCESSES 6

struct machine {
	struct soft_env env;  /* TDP or shadow */
	uint8_t *mem;
};

struct diff {
	uint64_t seed;
	bool pae;
	vmmu_gva_t tbase;
	struct vmmu_sregs sr;
	struct vmmu_paging_regs pr;
	struct machine t, s;
	struct vmmu_guestmem mw, mb;       /* the walker's memory, the builder's scratch memory */
	struct vmmu_memslots *slots_w, *slots_b;
	struct vmmu_paging *ctx_w;
	struct vmmu_ptbuild *b;
	uint8_t *snap;                      /* the builder's table region after the last op */
	vmmu_gpa_t next_table;
	uint64_t accesses, faults, ok, mmio, pt_stores;
};

static int alloc_table(void *opaque, vmmu_gpa_t *gpa)
{
	struct diff *d = opaque;

	if (d->next_table >= TB1)
		return -1;
	*gpa = d->next_table;
	d->next_table += 4096;
	return 0;
}

static uint64_t probe_gva(const struct diff *d, unsigned int p)
{
	static const uint64_t base[2][8] = {
		{ 0x0, 0x4a00000, 0x9400000, 0x20000000, 0x3fe00000, 0x40000000, 0x7fc0000000, 0x8000000000 },
		{ 0x0, 0x4a00000, 0x9400000, 0x20000000, 0x3fe00000, 0x40000000, 0x7fc00000, 0x80000000 },
	};

	return base[d->pae][p / 8] + (p % 8) * 0x3000;
}

static inline uint64_t *at(uint8_t *mem, vmmu_gpa_t gpa) { return (uint64_t *)(mem + gpa); }

static void machine_init(struct machine *m, const struct vmmu_mmu_options *mo, const struct vmmu_sregs *sr,
			 uint64_t rflags, const uint8_t *image)
{
	struct vmmu_regs regs;

	env_create(&m->env, VMMU_DIRTY_GET_CLEAR, 0, 0, MEM, 0, 1, mo);
	m->mem = m->env.mem.hva;
	memcpy(m->mem, image, MEM);
	assert_int_equal(vmmu_vcpu_get_regs(m->env.vcpu[0], &regs), 0);
	regs.rflags = rflags;
	assert_int_equal(vmmu_vcpu_set_regs(m->env.vcpu[0], &regs), 0);
	assert_int_equal(vmmu_vcpu_set_sregs(m->env.vcpu[0], sr), 0);
}

/* Write one guest table entry in all three guests, through the identity map, as a supervisor store. */
static void store_entry(struct diff *d, vmmu_gpa_t gpa, uint64_t val)
{
	vmmu_gva_t gva = d->tbase + (gpa - TB0);
	struct vmmu_walk_result w;
	uint64_t v = val;

	assert_int_equal(vmmu_walk(d->ctx_w, gva, VMMU_WALK_WRITE, &w), VMMU_WALK_OK);
	assert_int_equal(w.gpa, gpa);
	*at(d->mw.hva, gpa) = val;
	assert_int_equal(vmmu_soft_access(d->t.env.vcpu[0], gva, 8, VMMU_SOFT_WRITE, 0, &v, NULL), VMMU_SOFT_OK);
	v = val;
	assert_int_equal(vmmu_soft_access(d->s.env.vcpu[0], gva, 8, VMMU_SOFT_WRITE, 0, &v, NULL), VMMU_SOFT_OK);
	d->pt_stores++;
}

/* Push what the last builder op changed into the guests, then INVLPG every probe. */
static void sync_tables(struct diff *d)
{
	uint8_t *now = (uint8_t *)d->mb.hva;
	vmmu_gpa_t pdpt = vmmu_ptbuild_root(d->b);
	bool reload = false;

	for (vmmu_gpa_t pg = TB0; pg < TB1; pg += 4096) {
		if (!memcmp(now + pg, d->snap + (pg - TB0), 4096))
			continue;
		for (unsigned int i = 0; i < 512; i++) {
			uint64_t nv = *at(now, pg + i * 8), *old = (uint64_t *)(d->snap + (pg - TB0)) + i;

			if (nv != *old) {
				store_entry(d, pg + i * 8, nv);
				*old = nv;
				reload |= d->pae && pg + i * 8 >= pdpt && pg + i * 8 < pdpt + 32;
			}
		}
	}
	if (reload) {
		/* PAE: a PDPTE changed: MOV CR3 loads the PDPTE registers again */
		vmmu_paging_destroy(d->ctx_w);
		assert_int_equal(vmmu_paging_create(&d->ctx_w, d->slots_w, &d->pr), 0);
		assert_int_equal(vmmu_vcpu_set_sregs(d->t.env.vcpu[0], &d->sr), 0);
		assert_int_equal(vmmu_vcpu_set_sregs(d->s.env.vcpu[0], &d->sr), 0);
	}
	for (unsigned int p = 0; p < NPROBES; p++) {
		assert_int_equal(vmmu_soft_invlpg(d->t.env.vcpu[0], probe_gva(d, p)), 0);
		assert_int_equal(vmmu_soft_invlpg(d->s.env.vcpu[0], probe_gva(d, p)), 0);
	}
}

static uint32_t random_prot(uint64_t *rs)
{
	uint64_t r = test_rand64(rs);

	return ((r & 3) ? VMMU_PT_WRITE : 0) | ((r & 12) ? VMMU_PT_USER : 0) | ((r & 48) == 48 ? VMMU_PT_NX : 0);
}

static uint64_t random_extra(uint64_t *rs)
{
	uint64_t r = test_rand64(rs), x = 0;

	if (r & 1)
		x |= 1ULL << 5; /* A */
	if ((r & 6) == 6)
		x |= 1ULL << 6; /* D */
	if ((r >> 8) % 7 == 0)
		x |= 1ULL << 9; /* an ignored bit */
	if ((r >> 3) % 29 == 0)
		x |= 1ULL << 50; /* reserved (MAXPHYADDR 48) */
	return x;
}

/* One random builder op. Returns false when the table region is used up. */
static bool random_op(struct diff *d, uint64_t *rs)
{
	unsigned int p = (unsigned int)(test_rand64(rs) % NPROBES);
	vmmu_gva_t gva = probe_gva(d, p), gva2m = gva & ~0x1fffffULL;
	uint64_t r = test_rand64(rs) % 16;
	vmmu_gpa_t gpa;
	int ret;

	if (r < 7) {
		uint64_t k = test_rand64(rs) % 16;

		gpa = k == 0 ? MMIO_GPA + (test_rand64(rs) % 16) * 4096 :
		      k == 1 ? TB0 + (test_rand64(rs) % 512) * 4096 : /* a table page, read/written as data */
		      DATA0 + (test_rand64(rs) % 1024) * 4096;
		ret = vmmu_ptbuild_map_raw(d->b, gva, gpa, 4096, VMMU_PT_SIZE_4K, random_prot(rs),
					   random_extra(rs));
	} else if (r < 9) {
		gpa = DATA0 + (test_rand64(rs) % 2) * 0x200000;
		ret = vmmu_ptbuild_map_raw(d->b, gva2m, gpa, 0x200000, VMMU_PT_SIZE_2M, random_prot(rs),
					   random_extra(rs));
	} else if (r < 11) {
		ret = vmmu_ptbuild_unmap(d->b, gva, 4096);
	} else if (r < 12) {
		ret = vmmu_ptbuild_unmap(d->b, gva2m, 0x200000);
	} else {
		ret = vmmu_ptbuild_protect(d->b, gva, 4096, random_prot(rs));
	}
	if (ret == -ENOMEM)
		return false;
	assert_int_equal(ret, 0);
	sync_tables(d);
	return true;
}

static void fail_at(struct diff *d, const char *what, vmmu_gva_t gva, unsigned int kind, unsigned int cpl, int ow,
		    int ot, int os, uint64_t ew, uint64_t et, uint64_t es)
{
	print_error("seed %llu access %llu: %s: gva 0x%llx kind %u cpl %u: outcome walker %d tdp %d shadow %d, "
		    "value walker 0x%llx tdp 0x%llx shadow 0x%llx\n",
		    (unsigned long long)d->seed, (unsigned long long)d->accesses, what, (unsigned long long)gva,
		    kind, cpl, ow, ot, os, (unsigned long long)ew, (unsigned long long)et, (unsigned long long)es);
	fail();
}

static void random_access(struct diff *d, uint64_t *rs)
{
	unsigned int p = (unsigned int)(test_rand64(rs) % NPROBES), kind = (unsigned int)(test_rand64(rs) % 3);
	unsigned int cpl = (test_rand64(rs) & 1) ? 3 : 0;
	vmmu_gva_t gva = probe_gva(d, p) + (test_rand64(rs) % 512) * 8;
	uint32_t acc = (kind == VMMU_SOFT_WRITE ? VMMU_WALK_WRITE : 0) |
		       (kind == VMMU_SOFT_FETCH ? VMMU_WALK_FETCH : 0) | (cpl == 3 ? VMMU_WALK_USER : 0);
	uint64_t val = test_rand64(rs), vw = val, vt = val, vs = val;
	struct vmmu_soft_result rt, rsh;
	struct vmmu_walk_result w;
	int ow, ot, os, r;

	/* stores into the table region would corrupt the tables under the builder: make them loads */
	if (kind == VMMU_SOFT_WRITE && vmmu_walk(d->ctx_w, gva, acc | VMMU_WALK_NO_AD, &w) == VMMU_WALK_OK &&
	    w.gpa >= TB0 && w.gpa < TB1) {
		kind = VMMU_SOFT_READ;
		acc &= ~VMMU_WALK_WRITE;
	}
	d->accesses++;
	r = vmmu_walk(d->ctx_w, gva, acc, &w);
	assert_true(r == VMMU_WALK_OK || r == VMMU_WALK_PAGE_FAULT);
	if (r == VMMU_WALK_PAGE_FAULT) {
		ow = VMMU_SOFT_PAGE_FAULT;
		d->faults++;
	} else if (w.gpa >= MEM) {
		ow = VMMU_SOFT_MMIO;
		d->mmio++;
	} else {
		ow = VMMU_SOFT_OK;
		d->ok++;
		if (kind == VMMU_SOFT_WRITE)
			*at(d->mw.hva, w.gpa) = val;
		else
			vw = *at(d->mw.hva, w.gpa);
	}
	ot = vmmu_soft_access(d->t.env.vcpu[0], gva, 8, kind, cpl, &vt, &rt);
	os = vmmu_soft_access(d->s.env.vcpu[0], gva, 8, kind, cpl, &vs, &rsh);
	if (ot != ow || os != ow)
		fail_at(d, "outcome", gva, kind, cpl, ow, ot, os, w.error_code, rt.error_code, rsh.error_code);
	if (ow == VMMU_SOFT_PAGE_FAULT &&
	    (rt.error_code != w.error_code || rsh.error_code != w.error_code || rt.cr2 != gva || rsh.cr2 != gva))
		fail_at(d, "#PF error code", gva, kind, cpl, ow, ot, os, w.error_code, rt.error_code,
			rsh.error_code);
	if (ow == VMMU_SOFT_OK && (vt != vw || vs != vw))
		fail_at(d, "data", gva, kind, cpl, ow, ot, os, vw, vt, vs);
	/* guest A/D: every entry the walk read, in all three memories */
	for (unsigned int i = 0; i < w.levels; i++) {
		vmmu_gpa_t g = w.gpte_gpa[(d->pae ? 2 : 3) - i];
		uint64_t ew = *at(d->mw.hva, g), et = *at(d->t.mem, g), es = *at(d->s.mem, g);

		if (et != ew || es != ew)
			fail_at(d, "guest entry (A/D)", gva, kind, cpl, ow, ot, os, ew, et, es);
	}
}

/* Host-side MMU activity the guest must not notice: harvest the dirty logs, zap everything. */
static void host_activity(struct diff *d, unsigned int op)
{
	uint64_t buf[MEM / 4096 / 64];

	if (d->seed % 4 >= 2 && op % 3 == 0) {
		assert_true(vmmu_mmu_dirty_log_get(d->t.env.mmu, 0, buf) >= 0);
		assert_true(vmmu_mmu_dirty_log_get(d->s.env.mmu, 0, buf) >= 0);
	}
	if (op % 37 == 36) {
		assert_int_equal(vmmu_mmu_zap_all(d->t.env.mmu), 0);
		assert_int_equal(vmmu_mmu_zap_all(d->s.env.mmu), 0);
	}
}

static void full_compare(struct diff *d)
{
	if (memcmp(d->t.mem, d->mw.hva, MEM) || memcmp(d->s.mem, d->mw.hva, MEM)) {
		for (uint64_t a = 0; a < MEM; a += 8)
			if (*at(d->t.mem, a) != *at(d->mw.hva, a) || *at(d->s.mem, a) != *at(d->mw.hva, a))
				fail_at(d, "memory", a, 0, 0, 0, 0, 0, *at(d->mw.hva, a), *at(d->t.mem, a),
					*at(d->s.mem, a));
	}
	assert_int_equal(vmmu_mmu_audit(d->t.env.mmu), 0);
	assert_int_equal(vmmu_mmu_audit(d->s.env.mmu), 0);
}

static void run_one(uint64_t seed, bool pae, uint64_t totals[5])
{
	struct vmmu_mmu_options mo_t = { .size = sizeof(mo_t) };
	struct vmmu_mmu_options mo_s = { .size = sizeof(mo_s), .mode = VMMU_PAGING_4LEVEL,
					 .flags = VMMU_MMU_F_SHADOW };
	struct vmmu_ptbuild_config cfg = { .mode = pae ? VMMU_PAGING_PAE : VMMU_PAGING_4LEVEL, .maxphyaddr = 48,
					   .alloc = alloc_table };
	uint64_t rs = seed * 0x9e3779b97f4a7c15ULL + 1, cfgbits = test_rand64(&rs), rflags = 2;
	struct diff *d = calloc(1, sizeof(*d));
	uint8_t *image;

	assert_non_null(d);
	d->seed = seed;
	d->pae = pae;
	d->tbase = pae ? TBASE_PAE : TBASE;
	d->pr.maxphyaddr = 48;
	d->next_table = TB0;
	cfg.opaque = d;
	if (seed & 1)
		mo_s.flags |= VMMU_MMU_F_SHADOW_BYPASS;
	assert_int_equal(vmmu_guestmem_init(&d->mb, MEM, 0), 0);
	assert_int_equal(vmmu_guestmem_init(&d->mw, MEM, 0), 0);
	assert_int_equal(vmmu_memslots_create(&d->slots_b), 0);
	assert_int_equal(vmmu_memslots_add(d->slots_b, 0, 0, MEM, d->mb.hva, 0), 0);
	assert_int_equal(vmmu_memslots_create(&d->slots_w), 0);
	assert_int_equal(vmmu_memslots_add(d->slots_w, 0, 0, MEM, d->mw.hva, 0), 0);
	assert_int_equal(vmmu_ptbuild_create(&d->b, d->slots_b, &cfg), 0);
	assert_int_equal(vmmu_ptbuild_map(d->b, d->tbase, TB0, TB1 - TB0, VMMU_PT_SIZE_4K, VMMU_PT_WRITE), 0);
	/* the initial image: tables as built, random data */
	image = d->mb.hva;
	for (uint64_t a = DATA0; a < MEM; a += 8)
		*at(image, a) = test_rand64(&rs);
	d->snap = malloc(TB1 - TB0);
	assert_non_null(d->snap);
	memcpy(d->snap, image + TB0, TB1 - TB0);
	memcpy(d->mw.hva, image, MEM);
	d->sr.cr0 = VMMU_CR0_PG | 1 | ((cfgbits & 1) ? VMMU_CR0_WP : 0);
	d->sr.cr4 = VMMU_CR4_PAE | ((cfgbits & 2) ? VMMU_CR4_SMEP : 0) | ((cfgbits & 4) ? VMMU_CR4_SMAP : 0);
	d->sr.efer = (pae ? 0 : VMMU_EFER_LME | VMMU_EFER_LMA) | ((cfgbits & 8) ? VMMU_EFER_NXE : 0);
	d->sr.cr3 = vmmu_ptbuild_root(d->b);
	if (cfgbits & 16)
		rflags |= VMMU_RFLAGS_AC;
	d->pr.cr0 = d->sr.cr0;
	d->pr.cr3 = d->sr.cr3;
	d->pr.cr4 = d->sr.cr4;
	d->pr.efer = d->sr.efer;
	d->pr.rflags = rflags;
	assert_int_equal(vmmu_paging_create(&d->ctx_w, d->slots_w, &d->pr), 0);
	machine_init(&d->t, &mo_t, &d->sr, rflags, image);
	machine_init(&d->s, &mo_s, &d->sr, rflags, image);
	if (seed % 4 >= 2) {
		assert_int_equal(vmmu_vm_memslot_set_flags(d->t.env.vm, 0, VMMU_MEMSLOT_LOG_DIRTY), 0);
		assert_int_equal(vmmu_vm_memslot_set_flags(d->s.env.vm, 0, VMMU_MEMSLOT_LOG_DIRTY), 0);
	}
	for (unsigned int op = 0; op < OPS; op++) {
		if (!random_op(d, &rs))
			break;
		for (unsigned int i = 0; i < ACCESSES; i++)
			random_access(d, &rs);
		host_activity(d, op);
		if (op % 16 == 15)
			full_compare(d);
	}
	full_compare(d);
	totals[0] += d->accesses;
	totals[1] += d->faults;
	totals[2] += d->ok;
	totals[3] += d->pt_stores;
	totals[4] += d->mmio;
	{
		struct vmmu_mmu_stats st = env_stats(&d->s.env);

		/* the shadow machine really took the shadow paths */
		assert_true(st.pt_writes > 0);
		assert_true(st.faults[VMMU_FAULT_INJECT_PF] + env_vstats(&d->s.env, 0).pf_bypassed > 0);
	}
	vmmu_ptbuild_destroy(d->b, false);
	vmmu_paging_destroy(d->ctx_w);
	env_destroy(&d->t.env);
	env_destroy(&d->s.env);
	vmmu_memslots_destroy(d->slots_b);
	vmmu_memslots_destroy(d->slots_w);
	vmmu_guestmem_finish(&d->mb);
	vmmu_guestmem_finish(&d->mw);
	free(d->snap);
	free(d);
}

static void test_tdp_shadow_walker_agree(void **state)
{
	uint64_t totals[5] = { 0 };

	(void)state;
	for (uint64_t seed = 1; seed <= RUNS; seed++)
		run_one(seed, false, totals);
	for (uint64_t seed = RUNS + 1; seed <= RUNS + RUNS / 2; seed++)
		run_one(seed, true, totals);
	printf("diff: %llu accesses (%llu #PF, %llu ok, %llu MMIO), %llu guest table stores, %d runs"
	       " (a third PAE)\n",
	       (unsigned long long)totals[0], (unsigned long long)totals[1], (unsigned long long)totals[2],
	       (unsigned long long)totals[4], (unsigned long long)totals[3], RUNS + RUNS / 2);
	/* both kinds of outcome were exercised in volume */
	assert_true(totals[1] > totals[0] / 10);
	assert_true(totals[2] > totals[0] / 10);
	assert_true(totals[4] > 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tdp_shadow_walker_agree),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
