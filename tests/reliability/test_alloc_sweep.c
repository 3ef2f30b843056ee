/* SPDX-License-Identifier: MIT */
/*
 * Allocation-failure sweep over every allocation site of the library, not only
 * the MMU's (tests/unit/test_mmu_fault_inject.c covers the MMU's own hook).
 *
 * The test is linked with -Wl,--wrap for malloc, calloc, realloc,
 * aligned_alloc and posix_memalign, so every allocation made by the library's
 * objects (the static library: memslots, walker, page-table builder, rmaps,
 * dirty logs, MMU, VM layer, soft backend) goes through the counters below;
 * libc's and cmocka's own allocations do not.
 *
 * For each operation: run it once to count its allocations (N); then, for
 * k = 1..N, rebuild the same starting state, fail exactly the k-th allocation
 * of the operation, and require: the operation returns -ENOMEM; the MMU audit
 * passes; the memslot mirror, the MMU's table pages and rmap entries are as
 * before; and the operation then succeeds when retried. Under ASan (the
 * --sanitize CI mode) a leak on any of those error paths fails the test.
 */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include <libvmmu/dirty.h>
#include <libvmmu/paging.h>
#include <libvmmu/ptbuild.h>
#include <libvmmu/rmap.h>

#include "soft/soft_helpers.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* ----------------------------------------------------------- the hook */

static int armed, calls, fail_at, injected;

static bool fail_now(void)
{
	if (!armed)
		return false;
	if (++calls == fail_at) {
		injected++;
		return true;
	}
	return false;
}

void *__real_malloc(size_t size);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t size);
void *__real_aligned_alloc(size_t align, size_t size);
int __real_posix_memalign(void **p, size_t align, size_t size);
void *__wrap_malloc(size_t size);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t size);
void *__wrap_aligned_alloc(size_t align, size_t size);
int __wrap_posix_memalign(void **p, size_t align, size_t size);

void *__wrap_malloc(size_t size)
{
	return fail_now() ? (errno = ENOMEM, NULL) : __real_malloc(size);
}

void *__wrap_calloc(size_t n, size_t size)
{
	return fail_now() ? (errno = ENOMEM, NULL) : __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t size)
{
	return fail_now() ? (errno = ENOMEM, NULL) : __real_realloc(p, size);
}

void *__wrap_aligned_alloc(size_t align, size_t size)
{
	return fail_now() ? (errno = ENOMEM, NULL) : __real_aligned_alloc(align, size);
}

int __wrap_posix_memalign(void **p, size_t align, size_t size)
{
	return fail_now() ? ENOMEM : __real_posix_memalign(p, align, size);
}

/* ----------------------------------------------------- the environment */

/*
 * A soft VM with slot 0 (8 MiB at 0, mapped with huge leaves by a read of
 * each 2 MiB), slot 1 (2 MiB at 1 GiB, dirty logging, one page written) and
 * vCPU 0; RING mode when @ring.
 */
struct ctx {
	struct soft_env e;
	struct vmmu_guestmem mem1, mem2;
	bool ring;
	uint64_t bm[4096 / 64];
	void *obj; /* what a standalone constructor made */
};

static void ctx_vm(struct ctx *c, bool ring)
{
	c->ring = ring;
	env_create(&c->e, ring ? VMMU_DIRTY_RING : VMMU_DIRTY_GET_CLEAR, 0, 0, 8 << 20, 0, 1, NULL);
	assert_int_equal(vmmu_guestmem_init(&c->mem1, 2 << 20, 0), 0);
	assert_int_equal(vmmu_guestmem_init(&c->mem2, 2 << 20, 0), 0);
	assert_int_equal(vmmu_vm_memslot_add(c->e.vm, 1, 1ULL << 30, 2 << 20, c->mem1.hva, VMMU_MEMSLOT_LOG_DIRTY),
			 0);
	for (uint64_t g = 0; g < (8 << 20); g += 2 << 20)
		env_read64(&c->e, 0, g);
	env_write64(&c->e, 0, (1ULL << 30) + 0x3000, 1);
}

static void ctx_finish(struct ctx *c)
{
	if (c->mem2.hva && !c->e.vm)
		vmmu_guestmem_finish(&c->mem2);
	if (c->e.vm) {
		assert_int_equal(vmmu_mmu_audit(c->e.mmu), 0);
		env_destroy(&c->e);
		vmmu_guestmem_finish(&c->mem1);
		vmmu_guestmem_finish(&c->mem2);
	}
}

struct snap {
	uint64_t pages, rmap;
	unsigned int slots;
	uint32_t slot_flags[4];
};

static struct snap snap_take(struct ctx *c)
{
	struct vmmu_mmu_stats st = { .size = sizeof(st) };
	struct snap s = { 0 };

	if (!c->e.vm)
		return s;
	assert_int_equal(vmmu_mmu_get_stats(c->e.mmu, &st), 0);
	s.pages = st.pages;
	s.rmap = st.rmap_entries;
	s.slots = vmmu_memslots_count(vmmu_vm_memslots(c->e.vm));
	for (uint32_t id = 0; id < 4; id++) {
		struct vmmu_memslot_info info;

		s.slot_flags[id] = vmmu_memslots_get(vmmu_vm_memslots(c->e.vm), id, &info) ? 0xffffffffu : info.flags;
	}
	return s;
}

/* ---------------------------------------------------------- operations */

static int do_access(struct ctx *c, uint64_t gpa, unsigned int kind)
{
	uint64_t v = gpa;
	int r;

	do {
		r = vmmu_soft_access(c->e.vcpu[0], gpa, 8, kind, 0, &v, NULL);
		if (r == VMMU_SOFT_DIRTY_RING_FULL) {
			assert_true(vmmu_vcpu_dirty_harvest(c->e.vcpu[0]) >= 0);
			assert_true(vmmu_vm_dirty_reset(c->e.vm) >= 0);
		}
	} while (r == VMMU_SOFT_DIRTY_RING_FULL);
	return r;
}

static int op_vm_create(struct ctx *c)
{
	struct vmmu_vm_options o = { .size = sizeof(o) };
	struct vmmu_vm *vm = NULL;
	int r = vmmu_soft_vm_create(&vm, &o, NULL);

	if (r == 0)
		vmmu_vm_destroy(vm);
	else
		assert_null(vm);
	return r;
}

static int op_slot_add(struct ctx *c)
{
	return vmmu_vm_memslot_add(c->e.vm, 2, 2ULL << 30, 2 << 20, c->mem2.hva, VMMU_MEMSLOT_LOG_DIRTY);
}

static int op_vcpu_create(struct ctx *c)
{
	struct vmmu_vcpu *v = NULL;
	int r = vmmu_vcpu_create(c->e.vm, 1, &v);

	if (r == 0)
		vmmu_vcpu_destroy(v);
	return r;
}

static int op_read_hole(struct ctx *c)
{
	int r = do_access(c, 0x7ff000000ULL, VMMU_SOFT_READ);

	return r == VMMU_SOFT_MMIO ? 0 : r < 0 ? r : -EPROTO;
}

static int op_write_logged(struct ctx *c)
{
	return do_access(c, (1ULL << 30) + 0x5000, VMMU_SOFT_WRITE);
}

static int op_log_on(struct ctx *c)
{
	return vmmu_vm_memslot_set_flags(c->e.vm, 0, VMMU_MEMSLOT_LOG_DIRTY);
}

static int op_split(struct ctx *c)
{
	return do_access(c, 0x201000, VMMU_SOFT_WRITE);
}

static int op_log_off(struct ctx *c)
{
	return vmmu_vm_memslot_set_flags(c->e.vm, 1, 0);
}

static int op_dirty_get(struct ctx *c)
{
	return vmmu_vm_dirty_get(c->e.vm, 1, c->bm);
}

static int op_slot_move(struct ctx *c)
{
	return vmmu_mmu_memslot_move(c->e.mmu, 1, 3ULL << 30);
}

static int op_slot_remove(struct ctx *c)
{
	return vmmu_vm_memslot_remove(c->e.vm, 1);
}

static int op_zap_range(struct ctx *c)
{
	int64_t r = vmmu_mmu_zap_gfn_range(c->e.mmu, 0, 1ULL << 20);

	return r < 0 ? (int)r : 0;
}

static int op_zap_all(struct ctx *c)
{
	return vmmu_mmu_zap_all(c->e.mmu);
}

static int op_ring_harvest(struct ctx *c)
{
	int r = vmmu_vcpu_dirty_harvest(c->e.vcpu[0]);

	if (r >= 0)
		r = vmmu_vm_dirty_reset(c->e.vm);
	return r < 0 ? r : vmmu_vm_dirty_get(c->e.vm, 1, c->bm);
}

static int op_bitmap_create(struct ctx *c)
{
	struct vmmu_dirty_bitmap *bm = NULL;
	int r = vmmu_dirty_bitmap_create(0, 100000, 0, &bm);

	vmmu_dirty_bitmap_destroy(bm);
	(void)c;
	return r;
}

static int op_ring_create(struct ctx *c)
{
	struct vmmu_dirty_ring *ring = NULL;
	int r = vmmu_dirty_ring_create(512, 16, NULL, &ring);

	vmmu_dirty_ring_destroy(ring);
	(void)c;
	return r;
}

static int op_rmap(struct ctx *c)
{
	struct vmmu_rmap_table *t = NULL;
	struct vmmu_rmap_cache *cache = NULL;
	int r = vmmu_rmap_table_create(&t, 0, 4096, 3);

	(void)c;
	if (!r)
		r = vmmu_rmap_cache_create(&cache, 64);
	if (!r)
		r = vmmu_rmap_cache_topup(cache, 64);
	vmmu_rmap_cache_destroy(cache);
	vmmu_rmap_table_destroy(t);
	return r;
}

static uint8_t pt_mem[64 << 10] __attribute__((aligned(4096)));
static uint64_t pt_next;

static int pt_alloc(void *opaque, vmmu_gpa_t *gpa)
{
	(void)opaque;
	if (pt_next >= sizeof(pt_mem))
		return -ENOMEM;
	*gpa = pt_next;
	pt_next += 4096;
	return 0;
}

static int op_walker_builder(struct ctx *c)
{
	struct vmmu_memslots *slots = NULL;
	struct vmmu_ptbuild *b = NULL;
	struct vmmu_paging *p = NULL, *q = NULL, *g = NULL;
	struct vmmu_npt_config npt = { .levels = 4, .maxphyaddr = 46, .nxe = 1 };
	/* 4-level long mode (PG, PE; PAE; LME + LMA), CR3 = the builder's root at 0 */
	struct vmmu_paging_regs regs = { .cr0 = 0x80000001, .cr4 = 0x20, .efer = 0x500, .maxphyaddr = 46 };
	struct vmmu_ptbuild_config cfg = { .mode = VMMU_PAGING_4LEVEL, .maxphyaddr = 46, .alloc = pt_alloc };
	struct vmmu_ept_config ept = { .eptp = 3 << 3, .maxphyaddr = 46 };
	int r = vmmu_memslots_create(&slots);

	(void)c;
	pt_next = 0;
	if (!r)
		r = vmmu_memslots_add(slots, 0, 0, sizeof(pt_mem), pt_mem, 0);
	if (!r)
		r = vmmu_ptbuild_create(&b, slots, &cfg);
	if (!r)
		r = vmmu_paging_create_ept(&p, slots, &ept);
	if (!r)
		r = vmmu_paging_create_npt(&q, slots, &npt);
	if (!r)
		r = vmmu_paging_create(&g, slots, &regs);
	vmmu_paging_destroy(g);
	vmmu_paging_destroy(q);
	vmmu_paging_destroy(p);
	vmmu_ptbuild_destroy(b, false);
	vmmu_memslots_destroy(slots);
	return r;
}

/* The KVM backend: a VM, a memslot and a vCPU (only where /dev/kvm opens). */
static int op_kvm(struct ctx *c)
{
	struct vmmu_vm_options o = { .size = sizeof(o) };
	struct vmmu_vcpu *v = NULL;
	struct vmmu_vm *vm = NULL;
	int r = vmmu_vm_create(&vm, "kvm", &o);

	if (!r)
		r = vmmu_vm_memslot_add(vm, 0, 0, 2 << 20, c->mem2.hva, VMMU_MEMSLOT_LOG_DIRTY);
	if (!r)
		r = vmmu_vcpu_create(vm, 0, &v);
	vmmu_vm_destroy(vm);
	return r;
}

struct op {
	const char *name;
	int (*fn)(struct ctx *c);
	int env;        /* 0: none, 1: bitmap VM, 2: ring VM, 3: bitmap VM, slot 0 logged too, 4: KVM */
	bool may_grow;  /* pages may stay allocated after a failure (a vCPU root loaded first) */
};

static const struct op ops[] = {
	{ "vm create", op_vm_create, 0, false },
	{ "memslot add", op_slot_add, 1, false },
	{ "vcpu create", op_vcpu_create, 1, false },
	{ "MMIO fault", op_read_hole, 1, false },
	{ "write fault, logged slot", op_write_logged, 1, false },
	{ "write fault, ring", op_write_logged, 2, false },
	{ "dirty logging on", op_log_on, 1, false },
	{ "write fault, huge leaf split", op_split, 3, false },
	{ "dirty logging off", op_log_off, 1, false },
	{ "dirty get", op_dirty_get, 1, false },
	{ "ring harvest/reset/get", op_ring_harvest, 2, false },
	{ "memslot move", op_slot_move, 1, false },
	{ "memslot remove", op_slot_remove, 1, false },
	{ "zap range", op_zap_range, 1, false },
	{ "zap all", op_zap_all, 1, false },
	{ "dirty bitmap create", op_bitmap_create, 0, false },
	{ "dirty ring create", op_ring_create, 0, false },
	{ "rmap table/cache top-up", op_rmap, 0, false },
	{ "memslots, builder, walker x3", op_walker_builder, 0, false },
	{ "kvm: vm, memslot, vcpu", op_kvm, 4, false },
};

static void ctx_setup(struct ctx *c, const struct op *op)
{
	memset(c, 0, sizeof(*c));
	if (op->env == 4) {
		assert_int_equal(vmmu_guestmem_init(&c->mem2, 2 << 20, 0), 0);
		return;
	}
	if (op->env)
		ctx_vm(c, op->env == 2);
	if (op->env == 3)
		assert_int_equal(vmmu_vm_memslot_set_flags(c->e.vm, 0, VMMU_MEMSLOT_LOG_DIRTY), 0);
}

static void test_every_allocation_of_every_operation_fails(void **state)
{
	unsigned long total = 0;

	(void)state;
	vmmu_set_log(NULL, VMMU_LOG_ERROR, NULL); /* every -ENOMEM is logged */
	for (size_t i = 0; i < ARRAY_SIZE(ops); i++) {
		const struct op *op = &ops[i];
		static struct ctx c;
		int n, r;

		if (op->env == 4 && access("/dev/kvm", R_OK | W_OK)) {
			printf("%-32s skipped: /dev/kvm cannot be opened\n", op->name);
			continue;
		}
		/* once unarmed first: allocations made once per process (a probe cached) do not count */
		ctx_setup(&c, op);
		assert_int_equal(op->fn(&c), 0);
		ctx_finish(&c);
		ctx_setup(&c, op);
		calls = 0;
		fail_at = 0;
		armed = 1;
		r = op->fn(&c);
		armed = 0;
		n = calls;
		if (r != 0)
			fail_msg("%s: fails without injection: %d", op->name, r);
		ctx_finish(&c);
		for (int k = 1; k <= n; k++) {
			struct snap s0, s1;

			ctx_setup(&c, op);
			s0 = snap_take(&c);
			calls = 0;
			injected = 0;
			fail_at = k;
			armed = 1;
			r = op->fn(&c);
			armed = 0;
			if (injected != 1)
				fail_msg("%s: allocation %d of %d not reached (the operation allocates differently "
					 "from run to run)", op->name, k, n);
			if (r != -ENOMEM)
				fail_msg("%s: allocation %d of %d failed, the operation returned %d", op->name, k, n, r);
			s1 = snap_take(&c);
			if (c.e.vm) {
				assert_int_equal(vmmu_mmu_audit(c.e.mmu), 0);
				if (!op->may_grow)
					assert_int_equal(s0.pages, s1.pages);
				assert_int_equal(s0.rmap, s1.rmap);
				assert_int_equal(s0.slots, s1.slots);
				assert_memory_equal(s0.slot_flags, s1.slot_flags, sizeof(s0.slot_flags));
			}
			assert_int_equal(op->fn(&c), 0); /* and works on retry */
			ctx_finish(&c);
		}
		printf("%-32s %3d allocations%s\n", op->name, n, n ? ", each failed in turn" : " (cannot fail)");
		total += (unsigned long)n;
	}
	printf("%lu injected failures in all\n", total);
	assert_true(total > 50); /* the hook is wired: the library's allocations went through it */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_allocation_of_every_operation_fails),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
