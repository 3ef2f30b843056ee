/* SPDX-License-Identifier: MIT */
/*
 * Zapped tables are freed only after the TLB flush that follows the zap:
 * every free is checked against the flush count, and a vCPU thread keeps
 * walking the tables while another thread zaps them (run under ASan, an early
 * free is a use-after-free report).
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>

#include "soft/soft_helpers.h"
#include "mmu/mmu_internal.h"

static _Atomic uint64_t frees, early_frees;

static void free_hook(struct mmu_page *sp, uint64_t flush_done, uint64_t free_tag)
{
	(void)sp;
	atomic_fetch_add(&frees, 1);
	/* a page is tagged with the flush request made when it was zapped (>= 1): freed once that flush is done */
	if (!free_tag || flush_done < free_tag)
		atomic_fetch_add(&early_frees, 1);
}

static void test_free_after_flush(void **state)
{
	struct soft_env e;

	(void)state;
	mmu_free_hook = free_hook;
	env_create(&e, VMMU_DIRTY_GET_CLEAR, 0, 0, 8 << 20, 0, 1, NULL);
	for (uint64_t p = 0; p < 2048; p += 7)
		env_read64(&e, 0, p << 12);
	assert_int_equal(vmmu_vm_memslot_set_flags(e.vm, 0, VMMU_MEMSLOT_LOG_DIRTY), 0);
	for (uint64_t p = 0; p < 2048; p += 5)
		env_write64(&e, 0, p << 12, p);
	assert_int_equal(vmmu_mmu_zap_all(e.mmu), 0);
	assert_true(atomic_load(&frees) > 4);
	assert_int_equal(atomic_load(&early_frees), 0);
	env_destroy(&e);
	mmu_free_hook = NULL;
}

struct racer {
	struct soft_env *e;
	_Atomic bool stop;
	_Atomic uint64_t accesses;
};

static void *reader(void *opaque)
{
	struct racer *r = opaque;
	uint64_t seed = 12345;

	while (!atomic_load(&r->stop)) {
		uint64_t v = test_rand64(&seed) % 2048, d = v;
		int k = (v & 1) ? VMMU_SOFT_WRITE : VMMU_SOFT_READ;

		if (vmmu_soft_access(r->e->vcpu[0], v << 12, 8, k, 0, &d, NULL) != VMMU_SOFT_OK)
			abort();
		r->accesses++;
	}
	return NULL;
}

static void test_zap_while_walking(void **state)
{
	struct soft_env e;
	struct racer r = { .e = &e };
	pthread_t th;

	(void)state;
	mmu_free_hook = free_hook;
	atomic_store(&frees, 0);
	env_create(&e, VMMU_DIRTY_GET_CLEAR, 0, 0, 8 << 20, VMMU_MEMSLOT_LOG_DIRTY, 1, NULL);
	assert_int_equal(pthread_create(&th, NULL, reader, &r), 0);
	while (atomic_load(&r.accesses) < 1000)
		sched_yield();
	for (int i = 0; i < 2000; i++) {
		if (i % 16 == 0)
			sched_yield();
		if (i % 3 == 0)
			assert_int_equal(vmmu_mmu_zap_all(e.mmu), 0);
		else
			assert_true(vmmu_mmu_zap_gfn_range(e.mmu, (uint64_t)i * 5, (uint64_t)i * 5 + 200) >= 0);
	}
	atomic_store(&r.stop, true);
	pthread_join(th, NULL);
	assert_int_equal(vmmu_mmu_audit(e.mmu), 0);
	assert_int_equal(atomic_load(&early_frees), 0);
	assert_true(atomic_load(&frees) > 0);
	printf("%llu accesses, %llu tables freed during zaps\n", (unsigned long long)atomic_load(&r.accesses),
	       (unsigned long long)atomic_load(&frees));
	env_destroy(&e);
	mmu_free_hook = NULL;
}

/* Aging: count and clear accessed mappings without the MMU lock. */
static void age_case(const struct vmmu_mmu_options *mo)
{
	struct soft_env e;

	env_create(&e, VMMU_DIRTY_GET_CLEAR, 0, 0, 4 << 20, VMMU_MEMSLOT_LOG_DIRTY, 1, mo);
	for (uint64_t p = 0; p < 10; p++)
		env_read64(&e, 0, p << 12);
	assert_int_equal(vmmu_mmu_age_gfn_range(e.mmu, 0, 1024, false), 10);
	assert_int_equal(vmmu_mmu_age_gfn_range(e.mmu, 0, 5, true), 5);
	assert_int_equal(vmmu_mmu_age_gfn_range(e.mmu, 0, 1024, false), 5);
	/* a TLB miss walks again and marks the page young */
	assert_int_equal(vmmu_soft_invlpg(e.vcpu[0], 0x2000), 0);
	env_read64(&e, 0, 0x2000);
	assert_int_equal(vmmu_mmu_age_gfn_range(e.mmu, 0, 5, false), 1);
	assert_int_equal(vmmu_mmu_audit(e.mmu), 0);
	env_destroy(&e);
}

static void test_aging(void **state)
{
	struct vmmu_mmu_options mo = { .size = sizeof(mo), .ad_disabled = 1 };

	(void)state;
	age_case(NULL);
	age_case(&mo); /* access tracking: the page faults back in on the fast path */
}

/*
 * Write protection for page-table shadowing clears MMU-writable, and since a
 * writable translation may have survived dirty-log protection, it flushes
 * before the MMU lock is dropped.
 */
static void test_wrprot_for_shadowing_flushes_under_lock(void **state)
{
	struct soft_env e;
	struct vmmu_soft_result res;
	uint64_t flushes, fast;
	uint64_t v = 1;

	(void)state;
	env_create(&e, VMMU_DIRTY_GET_CLEAR, 0, 0, 4 << 20, VMMU_MEMSLOT_LOG_DIRTY, 1, NULL);
	env_write64(&e, 0, 0x5000, 1);
	uint64_t bm[16];
	assert_int_equal(vmmu_vm_dirty_get(e.vm, 0, bm), 0); /* W cleared, MMU-writable kept */
	env_write64(&e, 0, 0x5000, 2);                       /* fast path: writable again, in the TLB */
	flushes = atomic_load(&e.mmu->stat_flush_performed);
	fast = env_stats(&e).fast_fixed;
	pthread_mutex_lock(&e.mmu->lock);
	assert_true(mmu_wrprot_gfn_for_shadowing(e.mmu, mmu_slot_of(e.mmu, 5), 5));
	assert_int_equal(atomic_load(&e.mmu->stat_flush_performed), flushes + 1); /* still under the lock */
	pthread_mutex_unlock(&e.mmu->lock);
	/* the next write cannot use the old TLB entry and cannot take the fast path */
	assert_int_equal(vmmu_soft_access(e.vcpu[0], 0x5000, 8, VMMU_SOFT_WRITE, 0, &v, &res), VMMU_SOFT_OK);
	assert_false(res.tlb_hit);
	assert_int_equal(env_stats(&e).fast_fixed, fast);
	assert_int_equal(vmmu_mmu_audit(e.mmu), 0);
	/* a gfn nothing maps: nothing to protect, no flush */
	flushes = atomic_load(&e.mmu->stat_flush_performed);
	pthread_mutex_lock(&e.mmu->lock);
	assert_false(mmu_wrprot_gfn_for_shadowing(e.mmu, mmu_slot_of(e.mmu, 600), 600));
	pthread_mutex_unlock(&e.mmu->lock);
	assert_int_equal(atomic_load(&e.mmu->stat_flush_performed), flushes);
	env_destroy(&e);
}

/* Memslot delete and move: roots go obsolete, the moved memory is found at its new address only. */
static void test_memslot_move_delete(void **state)
{
	struct vmmu_guestmem m2;
	struct soft_env e;
	uint64_t v = 0;

	(void)state;
	env_create(&e, VMMU_DIRTY_GET_CLEAR, 0, 0, 2 << 20, 0, 1, NULL);
	assert_int_equal(vmmu_guestmem_init(&m2, 2 << 20, 0), 0);
	*(uint64_t *)m2.hva = 77;
	assert_int_equal(vmmu_vm_memslot_add(e.vm, 1, 0x10000000, 2 << 20, m2.hva, 0), 0);
	assert_int_equal(env_read64(&e, 0, 0x10000000), 77);
	assert_int_equal(vmmu_mmu_memslot_move(e.mmu, 1, 0x20000000), 0);
	assert_int_equal(vmmu_soft_access(e.vcpu[0], 0x10000000, 8, VMMU_SOFT_READ, 0, &v, NULL), VMMU_SOFT_MMIO);
	assert_int_equal(env_read64(&e, 0, 0x20000000), 77);
	assert_int_equal(vmmu_mmu_audit(e.mmu), 0);
	assert_int_equal(vmmu_mmu_memslot_delete(e.mmu, 1), 0);
	assert_int_equal(vmmu_soft_access(e.vcpu[0], 0x20000000, 8, VMMU_SOFT_READ, 0, &v, NULL), VMMU_SOFT_MMIO);
	assert_int_equal(env_read64(&e, 0, 0x1000), 0);
	assert_int_equal(vmmu_mmu_audit(e.mmu), 0);
	env_destroy(&e);
	vmmu_guestmem_finish(&m2);
}

struct churn {
	struct soft_env *e;
	_Atomic bool stop;
	_Atomic uint64_t ok, mmio;
};

static void *churn_reader(void *opaque)
{
	struct churn *c = opaque;
	uint64_t seed = 99;

	while (!atomic_load(&c->stop)) {
		uint64_t r = test_rand64(&seed), d = r;
		uint64_t gpa = (r & 1) ? 0x10000000 + ((r >> 1) % 512) * 4096 : ((r >> 1) % 512) * 4096;
		int ret = vmmu_soft_access(c->e->vcpu[0], gpa, 8, (r & 2) ? VMMU_SOFT_WRITE : VMMU_SOFT_READ, 0, &d, NULL);

		if (ret == VMMU_SOFT_OK)
			atomic_fetch_add(&c->ok, 1);
		else if (ret == VMMU_SOFT_MMIO && gpa >= 0x10000000)
			atomic_fetch_add(&c->mmio, 1);
		else
			abort();
	}
	return NULL;
}

/* A vCPU keeps accessing while another thread adds, flags, moves and deletes a slot (ASan: no use after free). */
static void test_memslot_churn_while_running(void **state)
{
	struct churn c;
	struct soft_env e;
	struct vmmu_guestmem m2;
	pthread_t th;

	(void)state;
	memset(&c, 0, sizeof(c));
	c.e = &e;
	env_create(&e, VMMU_DIRTY_GET_CLEAR, 0, 0, 2 << 20, 0, 1, NULL);
	assert_int_equal(vmmu_guestmem_init(&m2, 2 << 20, 0), 0);
	assert_int_equal(pthread_create(&th, NULL, churn_reader, &c), 0);
	/*
	 * At least 300 rounds, and on until the reader has made progress during
	 * the churn (on a loaded host it may not get a CPU in 300 rounds); bounded
	 * so a reader that never runs still fails below.
	 */
	for (int i = 0; i < 300 || (atomic_load(&c.ok) + atomic_load(&c.mmio) < 64 && i < 300000); i++) {
		assert_int_equal(vmmu_vm_memslot_add(e.vm, 1, 0x10000000, 2 << 20, m2.hva, 0), 0);
		sched_yield();
		assert_int_equal(vmmu_vm_memslot_set_flags(e.vm, 1, VMMU_MEMSLOT_LOG_DIRTY), 0);
		sched_yield();
		assert_int_equal(vmmu_vm_memslot_remove(e.vm, 1), 0);
		sched_yield();
	}
	atomic_store(&c.stop, true);
	pthread_join(th, NULL);
	assert_true(atomic_load(&c.ok) > 0);
	assert_true(atomic_load(&c.ok) + atomic_load(&c.mmio) >= 64);
	assert_int_equal(vmmu_mmu_audit(e.mmu), 0);
	env_destroy(&e);
	vmmu_guestmem_finish(&m2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_free_after_flush),
		cmocka_unit_test(test_zap_while_walking),
		cmocka_unit_test(test_aging),
		cmocka_unit_test(test_wrprot_for_shadowing_flushes_under_lock),
		cmocka_unit_test(test_memslot_move_delete),
		cmocka_unit_test(test_memslot_churn_while_running),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
