/* SPDX-License-Identifier: MIT */
/*
 * bench-shadow: the MMU in shadow-paging mode, each figure beside a baseline
 * measured in the same run:
 *
 *   shadow fault   vmmu_mmu_page_fault() on a GVA not yet mapped: guest walk
 *                  (A/D set), shadow pages and write tracking for the guest
 *                  tables on the way, the 4 KiB leaf and its rmap; baseline:
 *                  vmmu_walk() of the same GVA alone (what any shadow MMU must do)
 *   first touch    vmmu_soft_access() write at CPL 3 to an unmapped page of a
 *                  4-level guest, shadow machine; baseline: the same guest on
 *                  the TDP machine with 4 KiB EPT leaves (guest walk, EPT
 *                  violation, TDP fault, walk again)
 *   PTE write      a guest store to its own PTE: #PF exit, walk, emulation,
 *                  SPTE zap, TLB flush; baseline: a guest store to a data page
 *                  (TLB hit)
 *   guest #PF      an access to a not-present guest page whose table is
 *                  shadowed: exit, walk, injection; with bypass: delivered
 *                  without an exit
 *
 * Times are the best of the rounds. usage: bench-shadow [rounds] [MiB]  (default 5, 64)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libvmmu/ptbuild.h>
#include <libvmmu/soft.h>

#include "mmu/mmu_internal.h"

#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define TABLES 0x100000ULL   /* guest tables from here */
#define DATA   0x1000000ULL  /* data pages from here (16 MiB) */
#define GVA0   0x40000000ULL /* the data mapped at 1 GiB */
#define GVA_TBL 0x7f8000000000ULL /* the tables mapped here (supervisor) */

static double now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e9 + t.tv_nsec;
}

static void line(const char *what, double ns, const char *base, double base_ns)
{
	printf("%-14s %9.1f ns   %-34s %9.1f ns   ratio %.2f\n", what, ns, base, base_ns, ns / base_ns);
}

struct guest {
	struct vmmu_guestmem mem;
	vmmu_gpa_t next;
	uint64_t cr3, npages, mem_size;
};

static int alloc_page(void *opaque, vmmu_gpa_t *gpa)
{
	struct guest *g = opaque;

	if (g->next >= DATA)
		return -1;
	*gpa = g->next;
	g->next += 4096;
	return 0;
}

/* Guest memory with 4-level tables: GVA0 + i*4K -> DATA + i*4K (user RW, A/D clear); tables mapped at GVA_TBL. */
static void guest_build(struct guest *g, uint64_t npages)
{
	struct vmmu_ptbuild_config cfg = { .mode = VMMU_PAGING_4LEVEL, .maxphyaddr = 48, .alloc = alloc_page,
					   .opaque = g };
	struct vmmu_memslots *slots;
	struct vmmu_ptbuild *b;

	g->npages = npages;
	g->mem_size = DATA + npages * 4096;
	g->next = TABLES;
	if (vmmu_guestmem_init(&g->mem, g->mem_size, VMMU_GUESTMEM_PREFAULT) || vmmu_memslots_create(&slots) ||
	    vmmu_memslots_add(slots, 0, 0, g->mem_size, g->mem.hva, 0) || vmmu_ptbuild_create(&b, slots, &cfg) ||
	    vmmu_ptbuild_map(b, GVA0, DATA, npages * 4096, VMMU_PT_SIZE_4K, VMMU_PT_WRITE | VMMU_PT_USER) ||
	    vmmu_ptbuild_map(b, GVA_TBL, 0, DATA, VMMU_PT_SIZE_4K, VMMU_PT_WRITE)) {
		fprintf(stderr, "bench-shadow: cannot build the guest\n");
		exit(1);
	}
	g->cr3 = vmmu_ptbuild_root(b);
	vmmu_ptbuild_destroy(b, false);
	vmmu_memslots_destroy(slots);
}

static struct vmmu_paging_regs guest_regs(const struct guest *g)
{
	return (struct vmmu_paging_regs){
		.cr0 = VMMU_CR0_PG | VMMU_CR0_WP | 1, .cr3 = g->cr3, .cr4 = VMMU_CR4_PAE,
		.efer = VMMU_EFER_LME | VMMU_EFER_LMA | VMMU_EFER_NXE, .rflags = 2, .maxphyaddr = 48,
	};
}

static void noflush(void *opaque) { (void)opaque; }

/* Clear every A/D bit the previous round set in the guest's leaves (so each round walks the same). */
static void guest_clear_ad(struct guest *g)
{
	for (vmmu_gpa_t a = TABLES; a < g->next; a += 8)
		*(uint64_t *)((uint8_t *)g->mem.hva + a) &= ~0x60ULL;
}

/* shadow fault: direct calls into the MMU; baseline: the walker alone. */
static void bench_fault(struct guest *g, int rounds)
{
	struct vmmu_mmu_options mo = { .size = sizeof(mo), .mode = VMMU_PAGING_4LEVEL, .flags = VMMU_MMU_F_SHADOW };
	struct vmmu_paging_regs pr = guest_regs(g);
	double best = 1e30, base = 1e30;
	struct vmmu_mmu_vcpu *v;
	struct vmmu_paging *ctx;
	struct vmmu_mmu *mmu;

	if (vmmu_mmu_create(&mmu, &mo, &(struct vmmu_mmu_callbacks){ .flush_tlbs = noflush }) ||
	    vmmu_mmu_memslot_set(mmu, 0, 0, g->mem_size, g->mem.hva, 0) || vmmu_mmu_vcpu_create(mmu, 0, &v) ||
	    vmmu_mmu_vcpu_set_guest(v, &pr) || vmmu_paging_create(&ctx, vmmu_mmu_memslots(mmu), &pr)) {
		fprintf(stderr, "bench-shadow: MMU set-up failed\n");
		exit(1);
	}
	for (int r = 0; r < rounds; r++) {
		struct vmmu_walk_result w;
		double t;

		guest_clear_ad(g);
		t = now_ns();
		for (uint64_t i = 0; i < g->npages; i++)
			if (vmmu_walk(ctx, GVA0 + i * 4096, VMMU_WALK_WRITE | VMMU_WALK_USER, &w) != VMMU_WALK_OK)
				exit(1);
		base = MIN(base, (now_ns() - t) / g->npages);
		guest_clear_ad(g);
		vmmu_mmu_zap_all(mmu);
		t = now_ns();
		for (uint64_t i = 0; i < g->npages; i++)
			if (vmmu_mmu_page_fault(v, GVA0 + i * 4096, VMMU_PFERR_WRITE | VMMU_PFERR_USER, NULL) !=
			    VMMU_FAULT_FIXED)
				exit(1);
		best = MIN(best, (now_ns() - t) / g->npages);
	}
	line("shadow fault", best, "baseline: vmmu_walk() alone", base);
	vmmu_paging_destroy(ctx);
	vmmu_mmu_vcpu_destroy(v);
	vmmu_mmu_destroy(mmu);
}

struct machine {
	struct vmmu_vm *vm;
	struct vmmu_vcpu *vcpu;
};

static void machine_create(struct machine *m, struct guest *g, uint32_t mode, uint32_t flags)
{
	struct vmmu_mmu_options mo = { .size = sizeof(mo), .mode = mode, .flags = flags };
	struct vmmu_vm_options o = { .size = sizeof(o) };
	struct vmmu_paging_regs pr = guest_regs(g);
	struct vmmu_sregs s;

	if (vmmu_soft_vm_create(&m->vm, &o, &mo) || vmmu_vm_memslot_add(m->vm, 0, 0, g->mem_size, g->mem.hva, 0) ||
	    vmmu_vcpu_create(m->vm, 0, &m->vcpu) || vmmu_vcpu_get_sregs(m->vcpu, &s)) {
		fprintf(stderr, "bench-shadow: soft VM set-up failed\n");
		exit(1);
	}
	s.cr0 = pr.cr0;
	s.cr3 = pr.cr3;
	s.cr4 = pr.cr4;
	s.efer = pr.efer;
	if (vmmu_vcpu_set_sregs(m->vcpu, &s))
		exit(1);
}

/* One pass of CPL-3 writes over every page; ns per page. */
static double touch_all(struct machine *m, struct guest *g)
{
	double t = now_ns();

	for (uint64_t i = 0; i < g->npages; i++) {
		uint64_t v = i;

		if (vmmu_soft_access(m->vcpu, GVA0 + i * 4096, 8, VMMU_SOFT_WRITE, 3, &v, NULL) != VMMU_SOFT_OK)
			exit(1);
	}
	return (now_ns() - t) / g->npages;
}

static void bench_first_touch(struct guest *g, int rounds)
{
	struct machine sh, tdp;
	double best = 1e30, base = 1e30;

	machine_create(&sh, g, VMMU_PAGING_4LEVEL, VMMU_MMU_F_SHADOW);
	machine_create(&tdp, g, VMMU_PAGING_EPT4, VMMU_MMU_F_NO_HUGE);
	for (int r = 0; r < rounds; r++) {
		guest_clear_ad(g);
		vmmu_mmu_zap_all(vmmu_soft_mmu(tdp.vm));
		base = MIN(base, touch_all(&tdp, g));
		guest_clear_ad(g);
		vmmu_mmu_zap_all(vmmu_soft_mmu(sh.vm));
		best = MIN(best, touch_all(&sh, g));
	}
	line("first touch", best, "baseline: TDP machine, 4 KiB EPT", base);
	vmmu_vm_destroy(tdp.vm);
	vmmu_vm_destroy(sh.vm);
}

/* A guest store to its own PTE (shadowed: exit + emulation + zap) beside a store to a data page (TLB hit). */
static void bench_pte_write(struct guest *g, int rounds)
{
	struct machine sh;
	double best = 1e30, base = 1e30;
	uint64_t n = MIN(g->npages, 4096);

	machine_create(&sh, g, VMMU_PAGING_4LEVEL, VMMU_MMU_F_SHADOW);
	guest_clear_ad(g);
	touch_all(&sh, g);
	for (int r = 0; r < rounds; r++) {
		struct vmmu_walk_result w;
		struct vmmu_paging *ctx;
		struct vmmu_paging_regs pr = guest_regs(g);
		double t;

		/* the PTE of page i lives at the gpa the walk reports; store the same value back */
		if (vmmu_paging_create(&ctx, vmmu_vm_memslots(sh.vm), &pr))
			exit(1);
		t = now_ns();
		for (uint64_t i = 0; i < n; i++) {
			uint64_t v = i;

			if (vmmu_soft_access(sh.vcpu, GVA0 + (i & 511) * 8, 8, VMMU_SOFT_WRITE, 3, &v, NULL))
				exit(1);
		}
		base = MIN(base, (now_ns() - t) / n);
		t = 0;
		for (uint64_t i = 0; i < n; i++) {
			uint64_t pte;
			double a;

			if (vmmu_walk(ctx, GVA0 + i * 4096, VMMU_WALK_NO_AD, &w) != VMMU_WALK_OK)
				exit(1);
			pte = w.gpte[0];
			a = now_ns();
			if (vmmu_soft_access(sh.vcpu, GVA_TBL + w.gpte_gpa[0], 8, VMMU_SOFT_WRITE, 0, &pte, NULL) !=
			    VMMU_SOFT_OK)
				exit(1);
			t += now_ns() - a;
		}
		best = MIN(best, t / n);
		vmmu_paging_destroy(ctx);
		touch_all(&sh, g);
	}
	line("PTE write", best, "baseline: data store (TLB hit)", base);
	vmmu_vm_destroy(sh.vm);
}

/* Accesses to not-present guest pages under shadowed tables: with bypass (no exit) beside without. */
static void bench_guest_pf(struct guest *g, int rounds)
{
	struct machine m[2];
	double t[2] = { 1e30, 1e30 };
	uint64_t n = MIN(g->npages, 4096);

	for (int k = 0; k < 2; k++) {
		machine_create(&m[k], g, VMMU_PAGING_4LEVEL,
			       VMMU_MMU_F_SHADOW | (k ? VMMU_MMU_F_SHADOW_BYPASS : 0));
		touch_all(&m[k], g);
	}
	for (int r = 0; r < rounds; r++)
		for (int k = 0; k < 2; k++) {
			double a = now_ns();

			/* below GVA0: a not-present entry of the (shadowed) PDPT */
			for (uint64_t i = 0; i < n; i++) {
				uint64_t v;

				vmmu_gva_t gva = GVA0 - 4096 - (i % 512) * 4096;

				if (vmmu_soft_access(m[k].vcpu, gva, 8, VMMU_SOFT_READ, 3, &v, NULL) !=
				    VMMU_SOFT_PAGE_FAULT)
					exit(1);
			}
			t[k] = MIN(t[k], (now_ns() - a) / n);
		}
	line("guest #PF", t[1], "baseline: without bypass (exit)", t[0]);
	{
		struct vmmu_soft_stats st = { .size = sizeof(st) };

		vmmu_soft_vcpu_stats(m[1].vcpu, &st);
		printf("               bypass: %llu of %llu guest #PFs delivered without an exit\n",
		       (unsigned long long)st.pf_bypassed, (unsigned long long)st.page_faults);
	}
	vmmu_vm_destroy(m[0].vm);
	vmmu_vm_destroy(m[1].vm);
}

int main(int argc, char **argv)
{
	int rounds = argc > 1 ? atoi(argv[1]) : 5;
	uint64_t mib = argc > 2 ? strtoull(argv[2], NULL, 0) : 64;
	struct guest g;

	if (rounds < 1 || !mib) {
		fprintf(stderr, "usage: bench-shadow [rounds] [MiB]\n");
		return 2;
	}
	guest_build(&g, mib << 8);
	printf("bench-shadow: %llu MiB of 4 KiB guest pages, best of %d rounds\n", (unsigned long long)mib, rounds);
	bench_fault(&g, rounds);
	bench_first_touch(&g, rounds);
	bench_pte_write(&g, rounds);
	bench_guest_pf(&g, rounds);
	vmmu_guestmem_finish(&g.mem);
	return 0;
}
