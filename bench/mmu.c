/* SPDX-License-Identifier: MIT */
/*
 * bench-mmu: the MMU in TDP mode and the soft machine, each figure beside a
 * baseline measured in the same run:
 *
 *   fault        vmmu_mmu_page_fault() installing a 4 KiB leaf (slow path, tables
 *                and rmaps included), per fault; baseline: walking a prebuilt
 *                4-level table and storing the leaf (the least any mapper does)
 *   first touch  vmmu_soft_access() write to an unmapped page: walk, EPT
 *                violation, fault, walk again, write
 *   fast path    vmmu_mmu_page_fault() on a page write-protected for dirty
 *                logging (lockless cmpxchg of W + dirty mark); baseline: one
 *                cmpxchg on a word and one atomic OR into a bitmap
 *   re-dirty     vmmu_soft_access() write to such a page (exit + fast path + walk)
 *   TLB hit      vmmu_soft_access() 8-byte read served by the software TLB;
 *                baseline: a volatile 8-byte load of the same memory
 *   harvest      per GiB at 0.1 %, 1 % and 100 % dirty: vmmu_mmu_dirty_log_get()
 *                (get-and-clear, re-protection of the harvested SPTEs, flush);
 *                baseline: exchange every bitmap word and clear W with one
 *                atomic AND on a flat array for each set bit (the least a
 *                harvest does)
 *   dirty cycle  per GiB of 4 KiB pages: harvest (get-and-clear + write
 *                protection + flush), then re-dirty every page through the
 *                soft machine; baseline: one store per page plus a scan of a
 *                same-sized bitmap
 *
 * With the KVM backend built and /dev/kvm usable, the same run also measures
 * KVM on this machine: a CPL3 guest re-dirtying every page of a logged slot
 * after KVM_GET_DIRTY_LOG (one write-protect fault per page) and the harvest
 * itself, per page and per GiB.
 *
 * Times are the best of the rounds. usage: bench-mmu [rounds] [MiB] [harvest [percent]]  (default 5,
 * 256; "harvest" runs the harvest figures only, e.g. under callgrind; a percent, one density of them)
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libvmmu/soft.h>

#include "mmu/mmu_internal.h"

#define MIN(a, b) ((a) < (b) ? (a) : (b))

#ifdef BENCH_KVM
#include "../tests/kvm/guest.h"

#define KVM_SLOT 1
#define KVM_SLOT_GPA 0x40000000ULL

/* One strided pass of the guest over the slot (one write per page); returns ns, 0 on failure. */
static double kvm_pass(struct guest *g)
{
	struct vmmu_exit e;
	double t = 0;
	struct timespec a, b;

	(*guest_u64(g, GUEST_DATA))++;
	clock_gettime(CLOCK_MONOTONIC, &a);
	if (vmmu_vcpu_run(g->vcpu, &e) || e.reason != VMMU_EXIT_IO)
		return 0;
	clock_gettime(CLOCK_MONOTONIC, &b);
	t = (b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec);
	return t;
}

/* KVM on this machine: per-page write-protect fault and harvest per GiB; false if unavailable. */
static bool kvm_figures(int rounds, uint64_t size, double *fault_ns, double *harvest_ns)
{
	struct vmmu_vm_options o = { .size = sizeof(o), .dirty_mode = VMMU_DIRTY_GET_CLEAR };
	uint64_t npages = size >> 12, *bm = calloc(npages / 64 + 1, 8);
	struct vmmu_guestmem mem;
	struct guest g;
	bool ok = false;

	*fault_ns = *harvest_ns = 1e30;
	if (guest_kvm_open_error() || guest_create(&g, &o, guest_stride_start, guest_stride_end, 3)) {
		free(bm);
		return false;
	}
	if (vmmu_guestmem_init(&mem, size, VMMU_GUESTMEM_DEFAULT) ||
	    vmmu_vm_memslot_add(g.vm, KVM_SLOT, KVM_SLOT_GPA, size, mem.hva, VMMU_MEMSLOT_LOG_DIRTY) ||
	    guest_set_args(&g, KVM_SLOT_GPA, 4096, GUEST_DATA, 0, npages) || !kvm_pass(&g) ||
	    vmmu_vm_dirty_get(g.vm, KVM_SLOT, bm))
		goto out;
	for (int r = 0; r < rounds; r++) {
		double t = kvm_pass(&g), h;
		struct timespec a, b;

		if (!t)
			goto out;
		*fault_ns = MIN(*fault_ns, t / npages);
		clock_gettime(CLOCK_MONOTONIC, &a);
		if (vmmu_vm_dirty_get(g.vm, KVM_SLOT, bm))
			goto out;
		clock_gettime(CLOCK_MONOTONIC, &b);
		h = (b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec);
		*harvest_ns = MIN(*harvest_ns, h);
	}
	ok = true;
out:
	guest_destroy(&g);
	vmmu_guestmem_finish(&mem);
	free(bm);
	return ok;
}
#endif

static volatile uint64_t sink;

static double now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static void noflush(void *opaque) { (void)opaque; }

static void line(const char *what, double ns, const char *base, double base_ns)
{
	printf("%-34s %9.1f ns   %-40s %7.1f ns   ratio %6.1fx\n", what, ns, base, base_ns, ns / base_ns);
}

/* Baseline for a fault: walk a prebuilt 4-level table and store one leaf. */
static double baseline_fault(uint64_t npages)
{
	uint64_t *l4 = aligned_alloc(4096, 4096), *l3 = aligned_alloc(4096, 4096);
	uint64_t ntables = (npages + 511) / 512, *l2 = aligned_alloc(4096, 4096);
	uint64_t *l1 = aligned_alloc(4096, ntables * 4096);
	double t;

	memset(l4, 0, 4096);
	memset(l3, 0, 4096);
	memset(l2, 0, 4096);
	memset(l1, 0, ntables * 4096);
	l4[0] = (uintptr_t)l3 | 7;
	l3[0] = (uintptr_t)l2 | 7;
	for (uint64_t i = 0; i < ntables && i < 512; i++)
		l2[i] = (uintptr_t)(l1 + i * 512) | 7;
	t = now_ns();
	for (uint64_t g = 0; g < npages; g++) {
		uint64_t *t3 = (uint64_t *)(l4[(g >> 27) & 511] & ~4095ULL);
		uint64_t *t2 = (uint64_t *)(t3[(g >> 18) & 511] & ~4095ULL);
		uint64_t *t1 = (uint64_t *)(t2[(g >> 9) & 511] & ~4095ULL);

		atomic_store_explicit((_Atomic uint64_t *)&t1[g & 511], (g << 12) | 0x807, memory_order_release);
	}
	t = (now_ns() - t) / npages;
	free(l4);
	free(l3);
	free(l2);
	free(l1);
	return t;
}

static double baseline_fast(uint64_t npages)
{
	_Atomic uint64_t *w = calloc(npages, 8), *bm = calloc(npages / 64 + 1, 8);
	double t = now_ns();

	for (uint64_t g = 0; g < npages; g++) {
		uint64_t old = atomic_load(&w[g]);

		atomic_compare_exchange_strong(&w[g], &old, old | 2);
		atomic_fetch_or(&bm[g / 64], 1ULL << (g % 64));
	}
	t = (now_ns() - t) / npages;
	free((void *)w);
	free((void *)bm);
	return t;
}

static const double harvest_density[] = { 0.001, 0.01, 1.0 };
#define NR_DENSITY (sizeof(harvest_density) / sizeof(harvest_density[0]))

/* Is page @g among the dirty ones at @density (spread evenly)? */
static bool picked(uint64_t g, double density)
{
	uint64_t every = (uint64_t)(1.0 / density + 0.5);

	return g % every == every / 2;
}

/* The least a harvest does: take each bitmap word, clear W on each reported "SPTE". */
static double baseline_harvest(_Atomic uint64_t *bm, _Atomic uint64_t *spte, uint64_t npages, double density)
{
	uint64_t *out = calloc(npages / 64 + 1, 8);
	double t;

	for (uint64_t g = 0; g < npages; g++)
		if (picked(g, density)) {
			atomic_fetch_or(&spte[g], 2);
			atomic_fetch_or(&bm[g / 64], 1ULL << (g % 64));
		}
	t = now_ns();
	for (uint64_t i = 0; i < npages / 64; i++) {
		uint64_t w = atomic_load_explicit(&bm[i], memory_order_relaxed);

		if (!w)
			continue;
		out[i] = w = atomic_exchange(&bm[i], 0);
		for (; w; w &= w - 1)
			atomic_fetch_and(&spte[i * 64 + (uint64_t)__builtin_ctzll(w)], ~2ULL);
	}
	t = now_ns() - t;
	sink += out[npages / 128];
	free(out);
	return t;
}

/* vmmu_mmu_dirty_log_get() per density on a logged TDP slot of 4 KiB leaves: best ns per harvest. */
static int harvest_figures(int rounds, uint64_t size, void *hva, double only, double *mmu_ns, double *base_ns)
{
	uint64_t npages = size >> 12, *bm = calloc(npages / 64 + 1, 8);
	_Atomic uint64_t *fbm = calloc(npages / 64 + 1, 8), *fspte = calloc(npages, 8);
	struct vmmu_mmu_options o = { .size = sizeof(o), .flags = VMMU_MMU_F_NO_HUGE };
	struct vmmu_mmu_callbacks cb = { .flush_tlbs = noflush };
	struct vmmu_mmu *mmu;
	struct vmmu_mmu_vcpu *v;

	if (vmmu_mmu_create(&mmu, &o, &cb) || vmmu_mmu_memslot_set(mmu, 0, 0, size, hva, 0) ||
	    vmmu_mmu_vcpu_create(mmu, 0, &v))
		return 1;
	for (uint64_t g = 0; g < npages; g++)
		if (vmmu_mmu_page_fault(v, g << 12, VMMU_PFERR_WRITE, NULL) != VMMU_FAULT_FIXED)
			return 1;
	/* logging on: every SPTE read-only, the bitmap clean */
	if (vmmu_mmu_memslot_set(mmu, 0, 0, size, hva, VMMU_MEMSLOT_LOG_DIRTY))
		return 1;
	for (size_t d = 0; d < NR_DENSITY; d++) {
		mmu_ns[d] = base_ns[d] = 1e30;
		for (int r = 0; r < rounds && (!only || only == harvest_density[d] * 100); r++) {
			double t;

			for (uint64_t g = 0; g < npages; g++)
				if (picked(g, harvest_density[d]) &&
				    vmmu_mmu_page_fault(v, g << 12, VMMU_PFERR_WRITE | VMMU_PFERR_PRESENT, NULL) != VMMU_FAULT_FIXED)
					return 1;
			t = now_ns();
			if (vmmu_mmu_dirty_log_get(mmu, 0, bm) <= 0)
				return 1;
			mmu_ns[d] = MIN(mmu_ns[d], now_ns() - t);
			base_ns[d] = MIN(base_ns[d], baseline_harvest(fbm, fspte, npages, harvest_density[d]));
		}
	}
	vmmu_mmu_vcpu_destroy(v);
	vmmu_mmu_destroy(mmu);
	free(bm);
	free((void *)fbm);
	free((void *)fspte);
	return 0;
}

int main(int argc, char **argv)
{
	int rounds = argc > 1 ? atoi(argv[1]) : 5;
	uint64_t mib = argc > 2 ? strtoull(argv[2], NULL, 0) : 256, size = mib << 20, npages = size >> 12;
	double fault = 1e30, fault_base = 1e30, touch = 1e30, fast = 1e30, fast_base = 1e30, redirty = 1e30;
	double hit = 1e30, hit_base = 1e30, harvest = 1e30, cycle_base = 1e30;
	double hv[NR_DENSITY], hv_base[NR_DENSITY];
	bool harvest_only = argc > 3 && !strcmp(argv[3], "harvest");
	double only = harvest_only && argc > 4 ? atof(argv[4]) : 0;
	struct vmmu_guestmem mem;

	if (rounds < 1 || !npages || mib > 4096) {
		fprintf(stderr, "usage: bench-mmu [rounds] [MiB <= 4096]\n");
		return 2;
	}
	if (vmmu_guestmem_init(&mem, size, VMMU_GUESTMEM_PREFAULT)) {
		fprintf(stderr, "bench-mmu: cannot map %llu MiB\n", (unsigned long long)mib);
		return 1;
	}
	printf("bench-mmu: %d rounds, %llu MiB slot (%llu pages of 4 KiB)\n", rounds, (unsigned long long)mib,
	       (unsigned long long)npages);

	/* ---- harvest at several densities ---- */
	if (harvest_figures(rounds, size, mem.hva, only, hv, hv_base))
		return 1;
	for (size_t d = 0; d < NR_DENSITY; d++) {
		char what[64];

		if (hv[d] == 1e30)
			continue;
		snprintf(what, sizeof(what), "harvest per GiB (%g%% dirty)", harvest_density[d] * 100);
		printf("%-34s %9.3f ms   %-40s %7.3f ms   ratio %6.1fx\n", what, hv[d] * 1024.0 / mib / 1e6,
		       "bitmap xchg + atomic AND per dirty page", hv_base[d] * 1024.0 / mib / 1e6, hv[d] / hv_base[d]);
	}
	if (harvest_only) {
		vmmu_guestmem_finish(&mem);
		return 0;
	}

	/* ---- the MMU alone: slow-path faults, then the fast path ---- */
	for (int r = 0; r < rounds; r++) {
		struct vmmu_mmu_options o = { .size = sizeof(o), .flags = VMMU_MMU_F_NO_HUGE };
		struct vmmu_mmu_callbacks cb = { .flush_tlbs = noflush };
		struct vmmu_mmu *mmu;
		struct vmmu_mmu_vcpu *v;
		uint64_t bm[1];
		double t;

		if (vmmu_mmu_create(&mmu, &o, &cb) || vmmu_mmu_memslot_set(mmu, 0, 0, size, mem.hva, 0) ||
		    vmmu_mmu_vcpu_create(mmu, 0, &v))
			return 1;
		t = now_ns();
		for (uint64_t g = 0; g < npages; g++)
			if (vmmu_mmu_page_fault(v, g << 12, VMMU_PFERR_WRITE, NULL) != VMMU_FAULT_FIXED)
				return 1;
		fault = MIN(fault, (now_ns() - t) / npages);
		fault_base = MIN(fault_base, baseline_fault(npages));
		/* logging on: every SPTE write-protected; each write is then a fast-path fix */
		if (vmmu_mmu_memslot_set(mmu, 0, 0, size, mem.hva, VMMU_MEMSLOT_LOG_DIRTY))
			return 1;
		t = now_ns();
		for (uint64_t g = 0; g < npages; g++)
			if (vmmu_mmu_page_fault(v, g << 12, VMMU_PFERR_WRITE | VMMU_PFERR_PRESENT, NULL) != VMMU_FAULT_FIXED)
				return 1;
		fast = MIN(fast, (now_ns() - t) / npages);
		fast_base = MIN(fast_base, baseline_fast(npages));
		(void)bm;
		vmmu_mmu_vcpu_destroy(v);
		vmmu_mmu_destroy(mmu);
	}
	line("fault (slow path, 4 KiB)", fault, "walk prebuilt tables + store", fault_base);
	line("fast path (dirty-log write fault)", fast, "cmpxchg + atomic OR", fast_base);

	/* ---- the soft machine ---- */
	for (int r = 0; r < rounds; r++) {
		struct vmmu_mmu_options mo = { .size = sizeof(mo), .flags = VMMU_MMU_F_NO_HUGE };
		struct vmmu_vm_options o = { .size = sizeof(o) };
		uint64_t *bm = calloc(npages / 64 + 1, 8), hot = npages < 64 ? npages : 64, d = 1;
		struct vmmu_vcpu *vcpu;
		struct vmmu_vm *vm;
		double t;

		if (vmmu_soft_vm_create(&vm, &o, &mo) || vmmu_vm_memslot_add(vm, 0, 0, size, mem.hva, 0) ||
		    vmmu_vcpu_create(vm, 0, &vcpu))
			return 1;
		t = now_ns();
		for (uint64_t g = 0; g < npages; g++)
			vmmu_soft_access(vcpu, g << 12, 8, VMMU_SOFT_WRITE, 0, &d, NULL);
		touch = MIN(touch, (now_ns() - t) / npages);
		/* TLB hits over a hot set of 64 pages */
		t = now_ns();
		for (int k = 0; k < 1000; k++)
			for (uint64_t g = 0; g < hot; g++)
				vmmu_soft_access(vcpu, g << 12, 8, VMMU_SOFT_READ, 0, &d, NULL);
		hit = MIN(hit, (now_ns() - t) / (1000 * hot));
		t = now_ns();
		for (int k = 0; k < 1000; k++)
			for (uint64_t g = 0; g < hot; g++)
				sink += *(volatile uint64_t *)((uint8_t *)mem.hva + (g << 12));
		hit_base = MIN(hit_base, (now_ns() - t) / (1000 * hot));
		/* dirty cycle: harvest (protect) + re-dirty everything */
		if (vmmu_vm_memslot_set_flags(vm, 0, VMMU_MEMSLOT_LOG_DIRTY) || vmmu_vm_dirty_get(vm, 0, bm))
			return 1;
		for (uint64_t g = 0; g < npages; g++)
			vmmu_soft_access(vcpu, g << 12, 8, VMMU_SOFT_WRITE, 0, &d, NULL);
		t = now_ns();
		if (vmmu_vm_dirty_get(vm, 0, bm))
			return 1;
		harvest = MIN(harvest, now_ns() - t);
		t = now_ns();
		for (uint64_t g = 0; g < npages; g++)
			vmmu_soft_access(vcpu, g << 12, 8, VMMU_SOFT_WRITE, 0, &d, NULL);
		redirty = MIN(redirty, (now_ns() - t) / npages);
		t = now_ns();
		for (uint64_t g = 0; g < npages; g++)
			*(volatile uint64_t *)((uint8_t *)mem.hva + (g << 12)) = g;
		for (uint64_t i = 0; i < npages / 64; i++)
			sink += (uint64_t)__builtin_popcountll(((volatile uint64_t *)bm)[i]);
		cycle_base = MIN(cycle_base, now_ns() - t);
		vmmu_vm_destroy(vm);
		free(bm);
	}
	line("soft first touch (exit + fault)", touch, "walk prebuilt tables + store", fault_base);
	line("soft re-dirty write (exit + fast)", redirty, "cmpxchg + atomic OR", fast_base);
	line("soft TLB hit (8-byte read)", hit, "volatile 8-byte load", hit_base);
	{
		double per_gib = 1024.0 / mib;
		double cycle = harvest + redirty * npages;

		printf("%-34s %9.2f ms   %-40s %7.2f ms   ratio %6.1fx\n", "dirty cycle per GiB (100% dirty)",
		       cycle * per_gib / 1e6, "store per page + bitmap scan", cycle_base * per_gib / 1e6,
		       cycle / cycle_base);
		printf("%-34s %9.2f ms   (harvest + write protection + flush)\n", "  of which harvest per GiB",
		       harvest * per_gib / 1e6);
#ifdef BENCH_KVM
		double kf, kh;

		if (kvm_figures(rounds < 3 ? rounds : 3, size, &kf, &kh)) {
			printf("KVM on this machine, same run (CPL3 guest, %llu MiB logged slot):\n", (unsigned long long)mib);
			printf("%-34s %9.1f ns   %-40s %7.1f ns   ratio %6.1fx\n", "  KVM re-dirty write (wrprot fault)", kf,
			       "libvmmu fast path (MMU call)", fast, kf / fast);
			printf("%-34s %9.1f ns   %-40s %7.1f ns   ratio %6.1fx\n", "  KVM re-dirty write (wrprot fault)", kf,
			       "soft re-dirty write (exit + fast)", redirty, kf / redirty);
			printf("%-34s %9.2f ms   %-40s %7.2f ms   ratio %6.1fx\n", "  KVM_GET_DIRTY_LOG per GiB (100%)",
			       kh * per_gib / 1e6, "libvmmu harvest per GiB (soft cycle)", harvest * per_gib / 1e6, kh / harvest);
			printf("%-34s %9.2f ms   %-40s %7.2f ms   ratio %6.1fx\n", "  KVM_GET_DIRTY_LOG per GiB (100%)",
			       kh * per_gib / 1e6, "vmmu_mmu_dirty_log_get per GiB (100%)", hv[NR_DENSITY - 1] * per_gib / 1e6,
			       kh / hv[NR_DENSITY - 1]);
		} else {
			printf("KVM figures skipped: /dev/kvm cannot be used\n");
		}
#endif
	}
	vmmu_guestmem_finish(&mem);
	return 0;
}
