/* SPDX-License-Identifier: MIT */
/*
 * Dirty logging on a real guest, in the three modes (get-and-clear, manual
 * protect, per-vCPU ring), checked as KVM's own dirty_log_test checks it.
 *
 * A CPL3 guest writes the current iteration number into random pages of a
 * logged slot while the host harvests (vmmu_vm_dirty_get) concurrently. After
 * each harvest the host stops the vCPU at its next sync point and checks:
 *  - a reported page holds this iteration's or the previous one's number
 *    (nothing is reported that was not written lately);
 *  - a page not reported but holding this iteration's number was written
 *    after the harvest: it must be reported by the next harvest (nothing lost);
 *  - a page whose content changed since the last check was reported now or is
 *    owed to the next harvest as above.
 * Ring mode uses a small ring so that ring-full exits happen and are handled.
 */
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <time.h>

#include "helpers.h"
#include "guest.h"

#define TEST_SLOT       1
#define TEST_GPA        0x40000000ULL
#define TEST_PAGES      4096ULL  /* power of two: the guest masks with TEST_PAGES - 1 */
#define WRITES_PER_SYNC 128
#define SYNCS_PER_ITER  12       /* ~1500 distinct pages per iteration */
#define ITERATIONS      110
#define PORT_SYNC       0x12

#define MAX_VCPUS 2

struct run;

struct vcpu_arg {
	struct run *r;
	struct vmmu_vcpu *vcpu;
};

struct run {
	struct guest g;
	struct vmmu_guestmem test;
	struct vcpu_arg arg[MAX_VCPUS];
	int nvcpus;
	atomic_uint syncs;
	atomic_bool stop_req, quit;
	sem_t stopped, cont;
	atomic_uint ring_full;
	atomic_int failure; /* an unexpected exit or error in a vCPU thread */
};

static void *vcpu_thread(void *arg)
{
	struct run *r = ((struct vcpu_arg *)arg)->r;
	struct vmmu_vcpu *vcpu = ((struct vcpu_arg *)arg)->vcpu;
	struct vmmu_exit e;

	for (;;) {
		int ret = vmmu_vcpu_run(vcpu, &e);

		if (ret) {
			r->failure = ret;
			break;
		}
		if (e.reason == VMMU_EXIT_DIRTY_RING_FULL) {
			/* KVM: harvest this ring and reset before entering again. */
			atomic_fetch_add(&r->ring_full, 1);
			if (vmmu_vcpu_dirty_harvest(vcpu) < 0 || vmmu_vm_dirty_reset(r->g.vm) < 0) {
				r->failure = -EIO;
				break;
			}
			continue;
		}
		if (e.reason == VMMU_EXIT_INTR)
			continue;
		if (e.reason != VMMU_EXIT_IO || e.io.port != PORT_SYNC) {
			r->failure = 1000 + (int)e.reason;
			break;
		}
		atomic_fetch_add(&r->syncs, 1);
		if (atomic_load(&r->stop_req)) {
			sem_post(&r->stopped);
			sem_wait(&r->cont);
			if (atomic_load(&r->quit))
				break;
		}
	}
	if (r->failure)
		sem_post(&r->stopped); /* never leave the host waiting */
	return NULL;
}

static void wait_syncs(struct run *r, unsigned int n)
{
	unsigned int start = atomic_load(&r->syncs);
	struct timespec ts = { 0, 100 * 1000 };

	while (atomic_load(&r->syncs) - start < n && !r->failure)
		nanosleep(&ts, NULL);
}

/* vCPU @id of the guest, entering the dirty workload with its own seed. */
static struct vmmu_vcpu *add_vcpu(struct guest *g, uint32_t id)
{
	struct vmmu_vcpu *first = g->vcpu, *v = first;

	if (id)
		assert_int_equal(vmmu_vcpu_create(g->vm, id, &v), 0);
	g->vcpu = v;
	assert_int_equal(guest_set_cpu(g, GUEST_CODE, 3), 0);
	assert_int_equal(guest_set_args(g, TEST_GPA, TEST_PAGES - 1, GUEST_DATA,
					0x9e3779b97f4a7c15ULL + id * 7919, WRITES_PER_SYNC),
			 0);
	g->vcpu = first;
	return v;
}

static void run_mode(uint32_t mode, uint32_t flags, int nvcpus)
{
	struct vmmu_vm_options o = { .size = sizeof(o), .dirty_mode = mode, .flags = flags,
				     .ring_entries = mode == VMMU_DIRTY_RING ? 1024 : 0 };
	uint64_t *bmap = calloc(TEST_PAGES / 64, 8), *owed = calloc(TEST_PAGES / 64, 8);
	uint64_t *prev = calloc(TEST_PAGES, 8);
	uint64_t *iteration;
	uint64_t reported = 0, owed_total = 0;
	struct run *r = calloc(1, sizeof(*r));
	pthread_t t[MAX_VCPUS];

	assert_non_null(r);
	assert_int_equal(guest_create(&r->g, &o, guest_dirty_start, guest_dirty_end, 3), 0);
	assert_int_equal(vmmu_guestmem_init(&r->test, TEST_PAGES * 4096, VMMU_GUESTMEM_DEFAULT), 0);
	assert_int_equal(vmmu_vm_memslot_add(r->g.vm, TEST_SLOT, TEST_GPA, TEST_PAGES * 4096, r->test.hva,
					     VMMU_MEMSLOT_LOG_DIRTY), 0);
	iteration = guest_u64(&r->g, GUEST_DATA);
	*iteration = 1;
	sem_init(&r->stopped, 0, 0);
	sem_init(&r->cont, 0, 0);
	r->nvcpus = nvcpus;
	for (int i = 0; i < nvcpus; i++)
		r->arg[i] = (struct vcpu_arg){ r, add_vcpu(&r->g, (uint32_t)i) };
	for (int i = 0; i < nvcpus; i++)
		assert_int_equal(pthread_create(&t[i], NULL, vcpu_thread, &r->arg[i]), 0);

	for (uint64_t it = 1; it <= ITERATIONS; it++) {
		const uint64_t *page;

		wait_syncs(r, SYNCS_PER_ITER);
		/* Harvest while the guest writes. */
		assert_int_equal(vmmu_vm_dirty_get(r->g.vm, TEST_SLOT, bmap), 0);
		atomic_store(&r->stop_req, true);
		for (int i = 0; i < nvcpus; i++)
			sem_wait(&r->stopped);
		atomic_store(&r->stop_req, false);
		assert_int_equal(r->failure, 0);

		for (uint64_t p = 0; p < TEST_PAGES; p++) {
			bool set = bmap[p / 64] >> (p % 64) & 1;
			bool was_owed = owed[p / 64] >> (p % 64) & 1;
			uint64_t v;

			page = (const uint64_t *)((const uint8_t *)r->test.hva + p * 4096);
			v = *page;
			if (set) {
				reported++;
				if (v != it && v != it - 1)
					fail_msg("iteration %llu: page %llu reported dirty but holds %llu",
						 (unsigned long long)it, (unsigned long long)p,
						 (unsigned long long)v);
				owed[p / 64] &= ~(1ULL << (p % 64));
				prev[p] = v;
				continue;
			}
			if (was_owed)
				fail_msg(
				    "iteration %llu: page %llu was written after the last harvest but is "
				    "still not reported (lost)",
				    (unsigned long long)it, (unsigned long long)p);
			if (v > it)
				fail_msg("page %llu holds %llu from the future", (unsigned long long)p,
					 (unsigned long long)v);
			if (v != prev[p]) {
				/* Changed but not reported: only legal if written after the harvest. */
				if (v != it)
					fail_msg(
					    "iteration %llu: page %llu changed to %llu unreported (lost)",
					    (unsigned long long)it, (unsigned long long)p,
					    (unsigned long long)v);
				owed[p / 64] |= 1ULL << (p % 64);
				owed_total++;
				prev[p] = v;
			}
		}
		*iteration = it + 1;
		for (int i = 0; i < nvcpus; i++)
			sem_post(&r->cont);
	}

	/* Stop for good; in ring mode, a final harvest must reset as many entries as it took. */
	atomic_store(&r->stop_req, true);
	for (int i = 0; i < nvcpus; i++)
		sem_wait(&r->stopped);
	assert_int_equal(r->failure, 0);
	if (mode == VMMU_DIRTY_RING) {
		int got = 0, reset;

		for (int i = 0; i < nvcpus; i++) {
			int n = vmmu_vcpu_dirty_harvest(r->arg[i].vcpu);

			assert_true(n >= 0);
			got += n;
		}
		reset = vmmu_vm_dirty_reset(r->g.vm);
		assert_int_equal(reset, got);
		assert_true(atomic_load(&r->ring_full) > 0);
		printf("ring: %u ring-full exits handled\n", atomic_load(&r->ring_full));
	}
	atomic_store(&r->quit, true);
	for (int i = 0; i < nvcpus; i++)
		sem_post(&r->cont);
	for (int i = 0; i < nvcpus; i++)
		pthread_join(t[i], NULL);
	printf("mode %u, %d vCPU(s): %d iterations, %llu pages reported, %llu owed to a later harvest\n",
	       mode, nvcpus, ITERATIONS, (unsigned long long)reported, (unsigned long long)owed_total);
	/* The workload really dirtied pages each round. */
	assert_true(reported > ITERATIONS * 500ULL);

	guest_destroy(&r->g);
	vmmu_guestmem_finish(&r->test);
	sem_destroy(&r->stopped);
	sem_destroy(&r->cont);
	free(r);
	free(bmap);
	free(owed);
	free(prev);
}

static void test_get_clear_reports_every_write(void **state)
{
	(void)state;
	run_mode(VMMU_DIRTY_GET_CLEAR, 0, 1);
}

static void test_manual_protect_reports_every_write(void **state)
{
	(void)state;
	run_mode(VMMU_DIRTY_MANUAL, 0, 1);
}

static void test_manual_initially_set_reports_every_write(void **state)
{
	(void)state;
	run_mode(VMMU_DIRTY_MANUAL, VMMU_VM_F_INITIALLY_SET, 1);
}

static void test_ring_reports_every_write(void **state)
{
	(void)state;
	run_mode(VMMU_DIRTY_RING, 0, 1);
}

/* Two vCPUs on one slot: the ring harvest walks both rings; the bitmap sees both. */
static void test_ring_two_vcpus_reports_every_write(void **state)
{
	(void)state;
	run_mode(VMMU_DIRTY_RING, 0, 2);
}

static void test_manual_two_vcpus_reports_every_write(void **state)
{
	(void)state;
	run_mode(VMMU_DIRTY_MANUAL, 0, 2);
}


/* ---- step by step: one guest write per run, so the expected log is exact ---- */

struct stepper {
	struct guest g;
	struct vmmu_guestmem test;
	uint64_t value;
};

static void stepper_create(struct stepper *s, uint32_t mode)
{
	struct vmmu_vm_options o = { .size = sizeof(o), .dirty_mode = mode };

	memset(s, 0, sizeof(*s));
	assert_int_equal(guest_create(&s->g, &o, guest_dirty_start, guest_dirty_end, 3), 0);
	assert_int_equal(vmmu_guestmem_init(&s->test, TEST_PAGES * 4096, VMMU_GUESTMEM_DEFAULT), 0);
	assert_int_equal(vmmu_vm_memslot_add(s->g.vm, TEST_SLOT, TEST_GPA, TEST_PAGES * 4096, s->test.hva,
					     VMMU_MEMSLOT_LOG_DIRTY), 0);
	/* One write per sync. */
	assert_int_equal(guest_set_args(&s->g, TEST_GPA, TEST_PAGES - 1, GUEST_DATA, 12345, 1), 0);
}

static void stepper_destroy(struct stepper *s)
{
	guest_destroy(&s->g);
	vmmu_guestmem_finish(&s->test);
}

/* Let the guest write one page, with a fresh value; return that page. */
static uint64_t step(struct stepper *s)
{
	struct vmmu_exit e;

	*guest_u64(&s->g, GUEST_DATA) = ++s->value;
	assert_int_equal(vmmu_vcpu_run(s->g.vcpu, &e), 0);
	assert_int_equal(e.reason, VMMU_EXIT_IO);
	assert_int_equal(e.io.port, PORT_SYNC);
	for (uint64_t p = 0; p < TEST_PAGES; p++)
		if (*(const uint64_t *)((const uint8_t *)s->test.hva + p * 4096) == s->value)
			return p;
	fail_msg("the guest's write of %llu is nowhere", (unsigned long long)s->value);
	return 0;
}

/* The bitmap holds exactly the pages listed (-1 ends the list). */
static void assert_exactly(const uint64_t *bmap, const int64_t *pages)
{
	uint64_t want[TEST_PAGES / 64] = { 0 };

	for (; *pages >= 0; pages++)
		want[*pages / 64] |= 1ULL << (*pages % 64);
	for (uint64_t i = 0; i < TEST_PAGES / 64; i++)
		if (bmap[i] != want[i])
			fail_msg("dirty word %llu is 0x%llx, expected 0x%llx", (unsigned long long)i,
				 (unsigned long long)bmap[i], (unsigned long long)want[i]);
}

static void test_manual_clears_only_what_was_harvested(void **state)
{
	uint64_t bmap[TEST_PAGES / 64], first[TEST_PAGES / 64];
	struct stepper s;
	uint64_t a, b;

	(void)state;
	stepper_create(&s, VMMU_DIRTY_MANUAL);
	a = step(&s);
	assert_int_equal(vmmu_vm_dirty_peek(s.g.vm, TEST_SLOT, first), 0);
	assert_exactly(first, (int64_t[]){ (int64_t)a, -1 });
	do
		b = step(&s);
	while (b == a);
	/* Clearing what the first peek saw leaves the later write reported. */
	assert_int_equal(vmmu_vm_dirty_clear(s.g.vm, TEST_SLOT, 0, TEST_PAGES, first), 0);
	assert_int_equal(vmmu_vm_dirty_peek(s.g.vm, TEST_SLOT, bmap), 0);
	assert_exactly(bmap, (int64_t[]){ (int64_t)b, -1 });
	/* A VMM mark shows in peek and survives until cleared. */
	assert_int_equal(vmmu_vm_dirty_mark(s.g.vm, TEST_GPA + 7 * 4096, 1), 1);
	assert_int_equal(vmmu_vm_dirty_peek(s.g.vm, TEST_SLOT, bmap), 0);
	assert_exactly(bmap, (int64_t[]){ (int64_t)b, 7, -1 });
	assert_int_equal(vmmu_vm_dirty_get(s.g.vm, TEST_SLOT, bmap), 0);
	assert_exactly(bmap, (int64_t[]){ (int64_t)b, 7, -1 });
	assert_int_equal(vmmu_vm_dirty_peek(s.g.vm, TEST_SLOT, bmap), 0);
	assert_exactly(bmap, (int64_t[]){ -1 });
	/* Re-armed: writing a page again reports it again. */
	a = step(&s);
	assert_int_equal(vmmu_vm_dirty_get(s.g.vm, TEST_SLOT, bmap), 0);
	assert_exactly(bmap, (int64_t[]){ (int64_t)a, -1 });
	stepper_destroy(&s);
}

static void test_every_mode_merges_vmm_marks(void **state)
{
	uint64_t bmap[TEST_PAGES / 64];

	(void)state;
	for (uint32_t mode = VMMU_DIRTY_GET_CLEAR; mode <= VMMU_DIRTY_RING; mode++) {
		struct stepper s;
		uint64_t a, b;

		stepper_create(&s, mode);
		a = step(&s);
		b = step(&s);
		assert_int_equal(vmmu_vm_dirty_mark(s.g.vm, TEST_GPA + 4090 * 4096ULL, 2 * 4096), 2);
		assert_int_equal(vmmu_vm_dirty_get(s.g.vm, TEST_SLOT, bmap), 0);
		assert_exactly(bmap, (int64_t[]){ (int64_t)a, (int64_t)b, 4090, 4091, -1 });
		/* Nothing new since: nothing reported. */
		assert_int_equal(vmmu_vm_dirty_get(s.g.vm, TEST_SLOT, bmap), 0);
		assert_exactly(bmap, (int64_t[]){ -1 });
		a = step(&s);
		assert_int_equal(vmmu_vm_dirty_get(s.g.vm, TEST_SLOT, bmap), 0);
		assert_exactly(bmap, (int64_t[]){ (int64_t)a, -1 });
		stepper_destroy(&s);
	}
}

static void test_logging_off_then_on(void **state)
{
	uint64_t bmap[TEST_PAGES / 64];
	struct stepper s;
	uint64_t a;

	(void)state;
	stepper_create(&s, VMMU_DIRTY_GET_CLEAR);
	assert_int_equal(vmmu_vm_memslot_set_flags(s.g.vm, TEST_SLOT, 0), 0);
	step(&s);
	assert_int_equal(vmmu_vm_dirty_get(s.g.vm, TEST_SLOT, bmap), -EPERM);
	assert_int_equal(vmmu_vm_memslot_set_flags(s.g.vm, TEST_SLOT, VMMU_MEMSLOT_LOG_DIRTY), 0);
	a = step(&s);
	assert_int_equal(vmmu_vm_dirty_get(s.g.vm, TEST_SLOT, bmap), 0);
	assert_exactly(bmap, (int64_t[]){ (int64_t)a, -1 });
	stepper_destroy(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_manual_clears_only_what_was_harvested),
		cmocka_unit_test(test_every_mode_merges_vmm_marks),
		cmocka_unit_test(test_logging_off_then_on),
		cmocka_unit_test(test_get_clear_reports_every_write),
		cmocka_unit_test(test_manual_protect_reports_every_write),
		cmocka_unit_test(test_manual_initially_set_reports_every_write),
		cmocka_unit_test(test_ring_reports_every_write),
		cmocka_unit_test(test_ring_two_vcpus_reports_every_write),
		cmocka_unit_test(test_manual_two_vcpus_reports_every_write),
	};

	guest_skip_without_kvm();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
