/* SPDX-License-Identifier: MIT */
/*
 * bench-vm: the VM API on the KVM backend.
 *
 *  1. Overhead of each dirty-log call against the raw ioctl sequence, on the
 *     same VM in the same run (clean 1 GiB slot: the ioctls' cheapest case,
 *     so the library's share is largest).
 *  2. Harvest cost of bitmap (get-and-clear, manual get + clear) and ring
 *     (harvest + reset) per GiB and per dirty page across densities, after a
 *     CPL3 guest re-dirtied that fraction of a 128 MiB slot; library and raw
 *     ioctls side by side; the density where the ring becomes dearer than the
 *     bitmap.
 *  3. Time from VM create to the first guest instruction (a HLT), library vs
 *     the bare ioctl sequence.
 *  4. vmmu_vcpu_translate() (the libvmmu walker) vs KVM_TRANSLATE.
 *
 * Usage: bench-vm [-q] [boot|overhead|density|translate] (-q: fewer rounds; a name: that
 * part only). Exits 77 without /dev/kvm.
 */
#include <math.h>
#include <stdatomic.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>

#include <linux/kvm.h>

#include <libvmmu/kvm.h>
#include <libvmmu/vmmu.h>

#include "../tests/kvm/guest.h"

#define SLOT        1
#define SLOT_GPA    0x40000000ULL
#define PORT_SYNC   0x12
#define RING_MAX    65536
#define NDENS       6

static int quick;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static double median(uint64_t *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_u64);
	return n % 2 ? (double)v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

static uint64_t popcount_words(const uint64_t *w, uint64_t n)
{
	uint64_t c = 0;

	for (uint64_t i = 0; i < n; i++)
		c += (uint64_t)__builtin_popcountll(w[i]);
	return c;
}

static void die(const char *what, int err)
{
	fprintf(stderr, "bench-vm: %s: %s\n", what, strerror(err < 0 ? -err : err));
	exit(1);
}

/* A guest whose logged slot @slot_bytes large is written with a stride, one pass per run. */
struct bvm {
	struct guest g;
	struct vmmu_guestmem mem;
	uint64_t npages;
	/* raw ring access (second mapping of the vCPU's ring) */
	struct kvm_dirty_gfn *ring;
	uint32_t ring_next;
};

static void bvm_create(struct bvm *b, uint32_t mode, uint64_t slot_bytes)
{
	struct vmmu_vm_options o = { .size = sizeof(o), .dirty_mode = mode,
				     .ring_entries = mode == VMMU_DIRTY_RING ? RING_MAX : 0 };
	int ret;

	memset(b, 0, sizeof(*b));
	ret = guest_create(&b->g, &o, guest_stride_start, guest_stride_end, 3);
	if (ret)
		die("guest_create", ret);
	ret = vmmu_guestmem_init(&b->mem, slot_bytes, VMMU_GUESTMEM_DEFAULT);
	if (!ret)
		ret = vmmu_vm_memslot_add(b->g.vm, SLOT, SLOT_GPA, slot_bytes, b->mem.hva,
					  VMMU_MEMSLOT_LOG_DIRTY);
	if (ret)
		die("slot", ret);
	b->npages = slot_bytes / 4096;
	if (mode == VMMU_DIRTY_RING) {
		b->ring = mmap(NULL, RING_MAX * sizeof(struct kvm_dirty_gfn), PROT_READ | PROT_WRITE,
			       MAP_SHARED, vmmu_kvm_vcpu_fd(b->g.vcpu), KVM_DIRTY_LOG_PAGE_OFFSET * 4096);
		if (b->ring == MAP_FAILED)
			die("ring mmap", errno);
	}
}

static void bvm_destroy(struct bvm *b)
{
	if (b->ring)
		munmap(b->ring, RING_MAX * sizeof(struct kvm_dirty_gfn));
	guest_destroy(&b->g);
	vmmu_guestmem_finish(&b->mem);
}

/* ---- raw ioctl sequences, the baselines ---- */

static void raw_get(struct bvm *b, uint64_t *bmap)
{
	struct kvm_dirty_log d = { .slot = SLOT, .dirty_bitmap = bmap };

	if (ioctl(vmmu_kvm_vm_fd(b->g.vm), KVM_GET_DIRTY_LOG, &d))
		die("KVM_GET_DIRTY_LOG", errno);
}

static void raw_clear(struct bvm *b, uint64_t *bmap)
{
	struct kvm_clear_dirty_log d = {.slot = SLOT, .num_pages = (uint32_t)b->npages, .dirty_bitmap = bmap};

	if (ioctl(vmmu_kvm_vm_fd(b->g.vm), KVM_CLEAR_DIRTY_LOG, &d))
		die("KVM_CLEAR_DIRTY_LOG", errno);
}

/* Harvest the ring into @bmap (as the library does into its slot log), then reset. */
static void raw_ring(struct bvm *b, uint64_t *bmap)
{
	for (;;) {
		struct kvm_dirty_gfn *e = &b->ring[b->ring_next & (RING_MAX - 1)];

		if (!(__atomic_load_n(&e->flags, __ATOMIC_ACQUIRE) & KVM_DIRTY_GFN_F_DIRTY))
			break;
		if ((e->slot & 0xffff) == SLOT && e->offset < b->npages)
			bmap[e->offset / 64] |= 1ULL << (e->offset % 64);
		__atomic_store_n(&e->flags, KVM_DIRTY_GFN_F_RESET, __ATOMIC_RELEASE);
		b->ring_next++;
	}
	if (ioctl(vmmu_kvm_vm_fd(b->g.vm), KVM_RESET_DIRTY_RINGS, 0) < 0)
		die("KVM_RESET_DIRTY_RINGS", errno);
}

/* The library's and the raw harvest of one mode; returns ns. */
static uint64_t harvest(struct bvm *b, uint32_t mode, bool raw, uint64_t *bmap)
{
	uint64_t t0 = now_ns();
	int ret = 0;

	if (!raw) {
		ret = vmmu_vm_dirty_get(b->g.vm, SLOT, bmap);
	} else if (mode == VMMU_DIRTY_RING) {
		memset(bmap, 0, b->npages / 8);
		raw_ring(b, bmap);
	} else {
		raw_get(b, bmap);
		if (mode == VMMU_DIRTY_MANUAL)
			raw_clear(b, bmap);
	}
	if (ret)
		die("vmmu_vm_dirty_get", ret);
	return now_ns() - t0;
}

/* Run the guest for one strided pass; ring-full exits are harvested (timed into *ring_ns). */
static void guest_pass(struct bvm *b, uint32_t mode, bool raw, uint64_t *bmap, uint64_t *ring_ns)
{
	struct vmmu_exit e;

	(*guest_u64(&b->g, GUEST_DATA))++;
	for (;;) {
		int ret = vmmu_vcpu_run(b->g.vcpu, &e);

		if (ret)
			die("run", ret);
		if (e.reason == VMMU_EXIT_IO && e.io.port == PORT_SYNC)
			return;
		if (e.reason != VMMU_EXIT_DIRTY_RING_FULL) {
			fprintf(stderr, "bench-vm: unexpected exit %u\n", e.reason);
			exit(1);
		}
		uint64_t t0 = now_ns();

		if (raw) {
			raw_ring(b, bmap);
		} else if (vmmu_vcpu_dirty_harvest(b->g.vcpu) < 0 || vmmu_vm_dirty_reset(b->g.vm) < 0) {
			die("ring-full harvest", -EIO);
		}
		*ring_ns += now_ns() - t0;
	}
}

/* ---- 1. per-call overhead on a clean slot ---- */

static void overhead(void)
{
	const uint64_t bytes = 1ULL << 30;
	const int n = quick ? 300 : 2000;
	static const char *const names[] = { "get-and-clear (GET_DIRTY_LOG)", "manual: peek (GET_DIRTY_LOG)",
					     "manual: clear (CLEAR_DIRTY_LOG)", "manual: get = GET + CLEAR",
					     "ring: harvest + reset (empty)" };
	uint64_t *lib = malloc(n * sizeof(uint64_t)), *raw = malloc(n * sizeof(uint64_t));
	uint64_t *bmap = calloc(bytes / 4096 / 64, 8);

	printf("\n1. Library overhead per dirty-log call, clean 1 GiB slot (median of %d, interleaved)\n", n);
	printf("%-34s %10s %10s %8s\n", "call", "raw us", "libvmmu us", "ratio");
	for (int op = 0; op < 5; op++) {
		uint32_t mode = op == 0	  ? VMMU_DIRTY_GET_CLEAR
				: op == 4 ? VMMU_DIRTY_RING
					  : VMMU_DIRTY_MANUAL;
		struct bvm b;

		bvm_create(&b, mode, bytes);
		for (int i = 0; i < n; i++) {
			uint64_t t0 = now_ns();
			int ret = 0;

			switch (op) {
			case 0: raw_get(&b, bmap); break;
			case 1: raw_get(&b, bmap); break;
			case 2: raw_clear(&b, bmap); break;
			case 3: raw_get(&b, bmap); raw_clear(&b, bmap); break;
			case 4: raw_ring(&b, bmap); break;
			}
			raw[i] = now_ns() - t0;
			t0 = now_ns();
			switch (op) {
			case 0: ret = vmmu_vm_dirty_get(b.g.vm, SLOT, bmap); break;
			case 1: ret = vmmu_vm_dirty_peek(b.g.vm, SLOT, bmap); break;
			case 2: ret = vmmu_vm_dirty_clear(b.g.vm, SLOT, 0, b.npages, bmap); break;
			case 3: ret = vmmu_vm_dirty_get(b.g.vm, SLOT, bmap); break;
			case 4:
				ret = vmmu_vcpu_dirty_harvest(b.g.vcpu);
				ret = ret < 0 ? ret : vmmu_vm_dirty_reset(b.g.vm);
				ret = ret < 0 ? ret : 0;
				break;
			}
			lib[i] = now_ns() - t0;
			if (ret)
				die(names[op], ret);
		}
		double r = median(raw, n) / 1000, l = median(lib, n) / 1000;

		printf("%-34s %10.2f %10.2f %8.3f\n", names[op], r, l, l / r);
		bvm_destroy(&b);
	}
	free(lib);
	free(raw);
	free(bmap);
}

/* ---- 2. harvest cost across densities ---- */

static void densities(void)
{
	/* 128 MiB: even 100% fits one ring (65536 entries), so harvests are not split by ring-full exits. */
	const uint64_t bytes = 128ULL << 20, pages = bytes / 4096;
	static const double dens[NDENS] = { 0.0001, 0.001, 0.01, 0.1, 0.5, 1.0 };
	static const char *const mname[] = { "get-and-clear", "manual", "ring" };
	double per_gib[3][NDENS];
	uint64_t *bmap = calloc(pages / 64, 8);

	printf("\n2. Harvest after a guest re-dirtied a fraction of a 128 MiB slot (median of %d rounds;\n"
	       "   library and raw harvests alternate; ring: on two VMs); us per GiB, ns per dirty page\n",
	       quick ? 3 : 9);
	printf("%-14s %8s %8s %12s %12s %7s %12s\n", "mode", "density", "pages", "raw us/GiB", "lib us/GiB",
	       "ratio", "lib ns/page");
	for (uint32_t mode = 0; mode < 3; mode++) {
		for (size_t di = 0; di < NDENS; di++) {
			uint64_t count = (uint64_t)llround((double)pages * dens[di]);
			int rounds = quick ? 3 : 9;
			uint64_t lib[9], raw[9];
			/*
			 * [0] harvested by the library, [1] by raw ioctls. Bitmap modes use
			 * one VM for both (no VM-to-VM noise); the ring needs two, since a
			 * ring has one consumer position (the library's is private).
			 */
			struct bvm vms[2], *b[2];
			int nvm = mode == VMMU_DIRTY_RING ? 2 : 1;

			if (!count)
				count = 1;
			for (int k = 0; k < nvm; k++) {
				uint64_t junk = 0;

				bvm_create(&vms[k], mode, bytes);
				if (guest_set_args(&vms[k].g, SLOT_GPA, (pages / count) * 4096, GUEST_DATA, 0,
						   count))
					die("args", -EINVAL);
				/* First pass maps the pages; harvest it away. */
				guest_pass(&vms[k], mode, k, bmap, &junk);
				harvest(&vms[k], mode, k, bmap);
			}
			b[0] = &vms[0];
			b[1] = &vms[nvm - 1];
			for (int r = 0; r < rounds; r++) {
				/* Alternate which VM goes first: cancels order effects (caches, the other
				 * VM's faults). */
				for (int j = 0; j < 2; j++) {
					int k = (j + r) % 2;
					uint64_t ring_ns = 0, t;

					if (mode == VMMU_DIRTY_RING)
						memset(bmap, 0, pages / 8);
					guest_pass(b[k], mode, k, bmap, &ring_ns);
					t = harvest(b[k], mode, k, bmap) + ring_ns;
					(k ? raw : lib)[r] = t;
					if (popcount_words(bmap, pages / 64) != count)
						die("a harvest did not report exactly the pages written",
						    -EIO);
				}
			}
			double l = median(lib, rounds), rw = median(raw, rounds);
			double gib = (double)bytes / (1ULL << 30);

			per_gib[mode][di] = l / 1000 / gib;
			printf("%-14s %7.2f%% %8llu %12.1f %12.1f %7.3f %12.1f\n", mname[mode],
			       dens[di] * 100, (unsigned long long)count, rw / 1000 / gib, l / 1000 / gib,
			       l / rw, l / (double)count);
			for (int k = 0; k < nvm; k++)
				bvm_destroy(&vms[k]);
		}
	}
	/* Crossover: first density where the ring costs more than the cheaper bitmap mode. */
	for (size_t di = 0; di < NDENS; di++) {
		double bm = fmin(per_gib[0][di], per_gib[1][di]);

		if (per_gib[2][di] > bm) {
			if (di == 0) {
				printf("crossover: the ring costs more than the bitmap already at %.2f%%\n",
				       dens[0] * 100);
			} else {
				/* Interpolate on log(density) between the two measured points. */
				double bp = fmin(per_gib[0][di - 1], per_gib[1][di - 1]);
				double d0 = log(dens[di - 1]), d1 = log(dens[di]);
				double f0 = per_gib[2][di - 1] - bp, f1 = per_gib[2][di] - bm;
				double x = d0 + (d1 - d0) * (0 - f0) / (f1 - f0);

				printf("crossover: ring dearer than bitmap above ~%.3f%% dirty (between "
				       "%.2f%% and %.2f%%)\n",
				       exp(x) * 100, dens[di - 1] * 100, dens[di] * 100);
			}
			free(bmap);
			return;
		}
	}
	printf("crossover: the ring stays cheaper than the bitmap up to 100%%\n");
	free(bmap);
}

/* ---- 3. VM create to first guest instruction ---- */

static uint64_t boot_lib(void)
{
	uint64_t t0 = now_ns();
	struct guest g = { 0 };
	struct vmmu_exit e;
	int ret;

	ret = vmmu_vm_create(&g.vm, "kvm", NULL);
	if (!ret)
		ret = vmmu_guestmem_init(&g.sys, GUEST_SYS_SIZE, 0);
	if (ret)
		die("boot_lib", ret);
	g.mem = g.sys.hva;
	guest_build_tables(&g);
	memcpy(g.mem + GUEST_CODE, guest_hlt_start, (size_t)(guest_hlt_end - guest_hlt_start));
	ret = vmmu_vm_memslot_add(g.vm, 0, 0, GUEST_SYS_SIZE, g.mem, 0);
	if (!ret)
		ret = vmmu_vcpu_create(g.vm, 0, &g.vcpu);
	if (!ret)
		ret = guest_set_cpu(&g, GUEST_CODE, 0);
	if (!ret)
		ret = vmmu_vcpu_run(g.vcpu, &e);
	if (ret || e.reason != VMMU_EXIT_HLT)
		die("boot_lib run", ret ? ret : -EIO);
	uint64_t t = now_ns() - t0;

	guest_destroy(&g);
	return t;
}

static void seg(struct kvm_segment *s, uint16_t sel, uint8_t type, bool code)
{
	*s = (struct kvm_segment){ .limit = 0xffffffff, .selector = sel, .type = type, .present = 1,
				   .db = !code, .s = 1, .l = code, .g = 1 };
}

/* The same guest with bare ioctls: what a minimal VMM does. */
static uint64_t boot_raw(uint64_t *slot_ns)
{
	uint64_t t0 = now_ns();
	struct guest g = { 0 };
	struct kvm_sregs s;
	struct kvm_regs r = { .rip = GUEST_CODE, .rsp = GUEST_STACK_TOP, .rflags = 2 };
	int kfd = open("/dev/kvm", O_RDWR | O_CLOEXEC), vfd, cfd;
	struct kvm_run *run;
	long sz;

	vfd = ioctl(kfd, KVM_CREATE_VM, 0);
	g.mem = mmap(NULL, GUEST_SYS_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	madvise(g.mem, GUEST_SYS_SIZE, MADV_HUGEPAGE);
	guest_build_tables(&g);
	memcpy(g.mem + GUEST_CODE, guest_hlt_start, (size_t)(guest_hlt_end - guest_hlt_start));
	struct kvm_userspace_memory_region m = { .slot = 0, .memory_size = GUEST_SYS_SIZE,
						 .userspace_addr = (uintptr_t)g.mem };

	uint64_t ts = now_ns();

	if (vfd < 0 || ioctl(vfd, KVM_SET_USER_MEMORY_REGION, &m))
		die("boot_raw vm", errno);
	*slot_ns = now_ns() - ts;
	cfd = ioctl(vfd, KVM_CREATE_VCPU, 0);
	sz = ioctl(kfd, KVM_GET_VCPU_MMAP_SIZE, 0);
	run = mmap(NULL, (size_t)sz, PROT_READ | PROT_WRITE, MAP_SHARED, cfd, 0);
	if (cfd < 0 || run == MAP_FAILED || ioctl(cfd, KVM_GET_SREGS, &s))
		die("boot_raw vcpu", errno);
	seg(&s.cs, SEL_KCODE, 11, true);
	seg(&s.ss, SEL_KDATA, 3, false);
	s.ds = s.es = s.fs = s.gs = s.ss;
	s.tr = (struct kvm_segment){
	    .base = GUEST_TSS, .limit = 0x67, .selector = SEL_TSS, .type = 11, .present = 1};
	s.gdt.base = GUEST_GDT;
	s.gdt.limit = 7 * 8 - 1;
	s.cr0 = 0x80050033;
	s.cr3 = GUEST_PML4;
	s.cr4 = 0x20;
	s.efer = 0xd00;
	if (ioctl(cfd, KVM_SET_SREGS, &s) || ioctl(cfd, KVM_SET_REGS, &r) || ioctl(cfd, KVM_RUN, 0) ||
	    run->exit_reason != KVM_EXIT_HLT)
		die("boot_raw run", errno ? errno : EIO);
	uint64_t t = now_ns() - t0;

	munmap(run, (size_t)sz);
	close(cfd);
	close(vfd);
	close(kfd);
	munmap(g.mem, GUEST_SYS_SIZE);
	return t;
}

static void boot(void)
{
	enum { N = 21 };
	uint64_t lib[N], raw[N], slot[N];

	for (int i = 0; i < N; i++) {
		raw[i] = boot_raw(&slot[i]);
		lib[i] = boot_lib();
	}
	double r = median(raw, N) / 1000, l = median(lib, N) / 1000;

	printf("\n3. VM create -> first guest instruction (HLT at CPL0), median of %d, interleaved\n", N);
	printf("raw ioctls %.1f us, libvmmu %.1f us, ratio %.2f\n", r, l, l / r);
	printf("   of which KVM_SET_USER_MEMORY_REGION alone (raw): %.1f us\n", median(slot, N) / 1000);
	printf("   (the library also probes capabilities and sets KVM's CPUID (read once per process) on the "
	       "vCPU)\n");
}

/* ---- 4. GVA translation: the libvmmu walker over the vCPU's registers vs KVM_TRANSLATE ---- */

static void translate(void)
{
	enum { N = 2001 };
	static uint64_t walker[N], kvm[N];
	struct vmmu_walk_result res;
	struct guest g;
	vmmu_gpa_t gpa;
	bool valid;
	int ret;

	ret = guest_create(&g, NULL, guest_hlt_start, guest_hlt_end, 0);
	if (ret)
		die("translate guest", ret);
	for (int i = 0; i < N; i++) {
		uint64_t gva = GUEST_CODE + (uint64_t)i * 4096, t0 = now_ns();

		ret = vmmu_vcpu_translate(g.vcpu, gva, VMMU_WALK_NO_AD, &res);
		walker[i] = now_ns() - t0;
		t0 = now_ns();
		ret |= vmmu_kvm_translate(g.vcpu, gva, &gpa, &valid);
		kvm[i] = now_ns() - t0;
		if (ret || !valid || gpa != res.gpa)
			die("translate disagrees", -EIO);
	}
	printf("\n4. GVA translation, 4-level guest, median of %d, interleaved\n", N);
	printf("vmmu_vcpu_translate (walker, one KVM_GET_SREGS) %.2f us, KVM_TRANSLATE %.2f us, ratio %.2f\n",
	       median(walker, N) / 1000, median(kvm, N) / 1000, median(walker, N) / median(kvm, N));
	guest_destroy(&g);
}

int main(int argc, char **argv)
{
	const char *only = NULL;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-q"))
			quick = 1;
		else
			only = argv[i];
	}
	if (guest_kvm_open_error()) {
		printf("bench-vm: /dev/kvm cannot be opened; nothing to measure\n");
		return 77;
	}
	vmmu_set_log(NULL, VMMU_LOG_ERROR, NULL);
	if (!only || !strcmp(only, "boot"))
		boot();
	if (!only || !strcmp(only, "overhead"))
		overhead();
	if (!only || !strcmp(only, "density"))
		densities();
	if (!only || !strcmp(only, "translate"))
		translate();
	return 0;
}
