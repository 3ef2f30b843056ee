/* SPDX-License-Identifier: MIT */
/*
 * Dirty-log stress in the spirit of KVM's dirty_log_test: vCPU threads write
 * the current iteration number into random pages through the soft machine
 * while the main thread harvests (get-and-clear, manual get + clear with and
 * without INITIALLY_SET, and the dirty ring). After every harvest, every page
 * whose content changed since the last time it was reported must be reported
 * now, unless the change carries the current iteration (it may have landed
 * after the harvest and is then checked in the next round). Finally, with the
 * writers stopped, one more harvest must account for every change.
 *
 * VMMU_STRESS_WRITES sets the writes per mode (default 2000000).
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>

#include "soft/soft_helpers.h"

#define SLOT_SIZE (16ULL << 20)
#define NPAGES (SLOT_SIZE >> 12)
#define WRITERS 2

struct stress {
	struct soft_env e;
	_Atomic uint64_t iter;
	_Atomic uint64_t active[WRITERS]; /* value a writer is writing now, 0 when idle */
	_Atomic uint64_t writes;
	_Atomic bool stop;
	uint64_t target;
	uint64_t seen[NPAGES][WRITERS];
	uint64_t lost, ring_full;
};

struct writer_arg {
	struct stress *s;
	unsigned int id;
};

static void *writer(void *opaque)
{
	struct writer_arg *a = opaque;
	struct stress *s = a->s;
	uint64_t seed = 0x9e3779b97f4a7c15ULL * (a->id + 1);

	while (!atomic_load(&s->stop)) {
		uint64_t page = test_rand64(&seed) % NPAGES, v;
		int r;

		v = atomic_load(&s->iter);
		atomic_store(&s->active[a->id], v);
		if (atomic_load(&s->iter) != v) { /* raced with a new round: take its number */
			atomic_store(&s->active[a->id], 0);
			continue;
		}
		r = vmmu_soft_access(s->e.vcpu[a->id], page * 4096 + a->id * 8, 8, VMMU_SOFT_WRITE, 0, &v, NULL);
		atomic_store(&s->active[a->id], 0);
		if (r == VMMU_SOFT_DIRTY_RING_FULL) {
			s->ring_full++;
			sched_yield();
			continue;
		}
		if (r != VMMU_SOFT_OK) {
			fprintf(stderr, "writer %u: access returned %d\n", a->id, r);
			abort();
		}
		atomic_fetch_add_explicit(&s->writes, 1, memory_order_relaxed);
	}
	return NULL;
}

static void harvest(struct stress *s, uint64_t *bm)
{
	struct vmmu_vm *vm = s->e.vm;

	assert_int_equal(vmmu_vm_dirty_get(vm, 0, bm), 0);
}

/* Check one harvest at round @r (writers now write r + 1, none still writes <= r). */
static void check(struct stress *s, const uint64_t *bm, uint64_t r)
{
	const uint64_t *mem = s->e.mem.hva;

	for (uint64_t p = 0; p < NPAGES; p++) {
		bool rep = bm[p / 64] & (1ULL << (p % 64));

		for (unsigned int t = 0; t < WRITERS; t++) {
			uint64_t v = __atomic_load_n(&mem[p * 512 + t], __ATOMIC_RELAXED);

			if (rep)
				s->seen[p][t] = v;
			else if (v != s->seen[p][t] && v <= r) {
				if (s->lost++ < 10)
					fprintf(stderr, "round %llu: page %llu word %u changed %llu -> %llu, not reported\n",
						(unsigned long long)r, (unsigned long long)p, t,
						(unsigned long long)s->seen[p][t], (unsigned long long)v);
			}
		}
	}
}

static void run_mode(enum vmmu_dirty_mode mode, uint32_t vm_flags, const struct vmmu_mmu_options *mo)
{
	static struct stress s; /* big: seen[] */
	static uint64_t bm[NPAGES / 64];
	pthread_t th[WRITERS];
	struct writer_arg args[WRITERS];
	uint64_t r = 1;
	const char *env = getenv("VMMU_STRESS_WRITES");

	memset(&s, 0, sizeof(s));
	s.target = env ? strtoull(env, NULL, 0) : 2000000;
	env_create(&s.e, mode, vm_flags, 0, SLOT_SIZE, 0, WRITERS, mo);
	/* huge leaves first, so enabling logging has to protect them */
	for (uint64_t g = 0; g < SLOT_SIZE; g += 2 << 20)
		env_read64(&s.e, 0, g);
	assert_int_equal(vmmu_vm_memslot_set_flags(s.e.vm, 0, VMMU_MEMSLOT_LOG_DIRTY), 0);
	assert_int_equal(vmmu_mmu_audit(s.e.mmu), 0);
	atomic_store(&s.iter, 1);
	for (unsigned int t = 0; t < WRITERS; t++) {
		args[t] = (struct writer_arg){ &s, t };
		assert_int_equal(pthread_create(&th[t], NULL, writer, &args[t]), 0);
	}
	while (atomic_load(&s.writes) < s.target) {
		struct timespec ts = { 0, 300000 };

		nanosleep(&ts, NULL);
		atomic_store(&s.iter, r + 1);
		for (unsigned int t = 0; t < WRITERS; t++)
			while (atomic_load(&s.active[t]) && atomic_load(&s.active[t]) <= r)
				sched_yield();
		harvest(&s, bm);
		check(&s, bm, r);
		r++;
	}
	atomic_store(&s.stop, true);
	for (unsigned int t = 0; t < WRITERS; t++)
		pthread_join(th[t], NULL);
	/* writers stopped: one harvest must account for every change */
	harvest(&s, bm);
	check(&s, bm, UINT64_MAX);
	assert_int_equal(vmmu_mmu_audit(s.e.mmu), 0);
	printf("mode %d flags %u: %llu writes, %llu rounds, %llu ring-full retries, %llu lost\n", mode, vm_flags,
	       (unsigned long long)atomic_load(&s.writes), (unsigned long long)r, (unsigned long long)s.ring_full,
	       (unsigned long long)s.lost);
	assert_int_equal(s.lost, 0);
	{
		struct vmmu_mmu_stats st = env_stats(&s.e);

		printf("  faults fixed %llu (fast %llu), splits %llu, flushes %llu/%llu\n",
		       (unsigned long long)st.faults[VMMU_FAULT_FIXED], (unsigned long long)st.fast_fixed,
		       (unsigned long long)st.splits, (unsigned long long)st.flush_performed,
		       (unsigned long long)st.flush_requested);
		assert_true(st.fast_fixed > 0);
	}
	env_destroy(&s.e);
}

static void test_get_clear(void **state) { (void)state; run_mode(VMMU_DIRTY_GET_CLEAR, 0, NULL); }
static void test_manual(void **state) { (void)state; run_mode(VMMU_DIRTY_MANUAL, 0, NULL); }
static void test_manual_initially_set(void **state) { (void)state; run_mode(VMMU_DIRTY_MANUAL, VMMU_VM_F_INITIALLY_SET, NULL); }
static void test_ring(void **state) { (void)state; run_mode(VMMU_DIRTY_RING, 0, NULL); }

/* The same with EPT without A/D bits (access tracking) and with NPT-format tables. */
static void test_get_clear_ad_disabled(void **state)
{
	struct vmmu_mmu_options mo = { .size = sizeof(mo), .ad_disabled = 1 };

	(void)state;
	run_mode(VMMU_DIRTY_GET_CLEAR, 0, &mo);
}

static void test_ring_npt(void **state)
{
	struct vmmu_mmu_options mo = { .size = sizeof(mo), .mode = VMMU_PAGING_4LEVEL };

	(void)state;
	run_mode(VMMU_DIRTY_RING, 0, &mo);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_get_clear),
		cmocka_unit_test(test_manual),
		cmocka_unit_test(test_manual_initially_set),
		cmocka_unit_test(test_ring),
		cmocka_unit_test(test_get_clear_ad_disabled),
		cmocka_unit_test(test_ring_npt),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
