/* SPDX-License-Identifier: MIT */
/*
 * Bad input to the VM API on the KVM backend: each case returns a clear
 * -errno, logs one line, and leaves the VM usable and unchanged.
 */
#include <sys/mman.h>

#include "helpers.h"
#include "guest.h"

#define EXPECT_ERR(call, err)							\
	do {									\
		int before_ = logc.lines;					\
		assert_int_equal((call), (err));				\
		assert_true(logc.lines > before_);				\
	} while (0)

static struct log_capture logc;

static void test_memslot_overlap_and_alignment(void **state)
{
	struct vmmu_vm *vm;
	struct vmmu_guestmem m;

	(void)state;
	assert_int_equal(vmmu_vm_create(&vm, "kvm", NULL), 0);
	assert_int_equal(vmmu_guestmem_init(&m, 4 << 20, 0), 0);
	assert_int_equal(vmmu_vm_memslot_add(vm, 0, 0x100000, 2 << 20, m.hva, 0), 0);
	log_capture_start(&logc);
	/* Overlaps slot 0 at either end, or repeats its id. */
	EXPECT_ERR(vmmu_vm_memslot_add(vm, 1, 0, 2 << 20, m.hva, 0), -EEXIST);
	EXPECT_ERR(vmmu_vm_memslot_add(vm, 1, 0x200000, 2 << 20, m.hva, 0), -EEXIST);
	EXPECT_ERR(vmmu_vm_memslot_add(vm, 0, 0x10000000, 4096, m.hva, 0), -EEXIST);
	/* Misaligned GPA, size, host address; zero size; unknown flags. */
	EXPECT_ERR(vmmu_vm_memslot_add(vm, 1, 0x10000800, 4096, m.hva, 0), -EINVAL);
	EXPECT_ERR(vmmu_vm_memslot_add(vm, 1, 0x10000000, 4000, m.hva, 0), -EINVAL);
	EXPECT_ERR(vmmu_vm_memslot_add(vm, 1, 0x10000000, 4096, (char *)m.hva + 8, 0), -EINVAL);
	EXPECT_ERR(vmmu_vm_memslot_add(vm, 1, 0x10000000, 0, m.hva, 0), -EINVAL);
	EXPECT_ERR(vmmu_vm_memslot_add(vm, 1, 0x10000000, 4096, m.hva, 0x80), -EINVAL);
	/* An id past KVM's slot count. */
	EXPECT_ERR(vmmu_vm_memslot_add(vm, 1u << 20, 0x10000000, 4096, m.hva, 0), -EINVAL);
	/* Removing or re-flagging a slot that does not exist; toggling READONLY. */
	EXPECT_ERR(vmmu_vm_memslot_remove(vm, 7), -ENOENT);
	EXPECT_ERR(vmmu_vm_memslot_set_flags(vm, 7, 0), -ENOENT);
	EXPECT_ERR(vmmu_vm_memslot_set_flags(vm, 0, VMMU_MEMSLOT_READONLY), -EINVAL);
	log_capture_stop();
	/* Unchanged: one slot; a valid add still works. */
	assert_int_equal(vmmu_memslots_count(vmmu_vm_memslots(vm)), 1);
	assert_int_equal(vmmu_vm_memslot_add(vm, 1, 0x10000000, 2 << 20, (char *)m.hva + (2 << 20), 0), 0);
	assert_int_equal(vmmu_vm_memslot_remove(vm, 1), 0);
	assert_int_equal(vmmu_memslots_count(vmmu_vm_memslots(vm)), 1);
	vmmu_vm_destroy(vm);
	vmmu_guestmem_finish(&m);
}

static void test_memslot_larger_than_host_mapping(void **state)
{
	struct vmmu_vm *vm;
	char *p;

	(void)state;
	assert_int_equal(vmmu_vm_create(&vm, "kvm", NULL), 0);
	p = mmap(NULL, 4 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(p != MAP_FAILED);
	munmap(p + 2 * 4096, 2 * 4096); /* only the first two pages stay mapped */
	log_capture_start(&logc);
	EXPECT_ERR(vmmu_vm_memslot_add(vm, 0, 0, 4 * 4096, p, 0), -EFAULT);
	log_capture_stop();
	assert_int_equal(vmmu_memslots_count(vmmu_vm_memslots(vm)), 0);
	assert_int_equal(vmmu_vm_memslot_add(vm, 0, 0, 2 * 4096, p, 0), 0);
	vmmu_vm_destroy(vm);
	munmap(p, 2 * 4096);
}

static void test_clear_range_breaking_64_page_rule(void **state)
{
	struct vmmu_vm_options o = { .size = sizeof(o), .dirty_mode = VMMU_DIRTY_MANUAL };
	uint64_t bits[2] = { ~0ULL, ~0ULL };
	struct vmmu_vm *vm;
	struct vmmu_guestmem m;

	(void)state;
	assert_int_equal(vmmu_vm_create(&vm, "kvm", &o), 0);
	assert_int_equal(vmmu_guestmem_init(&m, 100 * 4096, 0), 0);
	assert_int_equal(vmmu_vm_memslot_add(vm, 3, 0, 100 * 4096, m.hva, VMMU_MEMSLOT_LOG_DIRTY), 0);
	log_capture_start(&logc);
	EXPECT_ERR(vmmu_vm_dirty_clear(vm, 3, 1, 64, bits), -EINVAL);   /* start not a multiple of 64 */
	EXPECT_ERR(vmmu_vm_dirty_clear(vm, 3, 0, 63, bits), -EINVAL);   /* short, and not at the slot end */
	EXPECT_ERR(vmmu_vm_dirty_clear(vm, 3, 64, 64, bits), -EINVAL);  /* runs past the slot's 100 pages */
	EXPECT_ERR(vmmu_vm_dirty_clear(vm, 3, 128, 1, bits), -EINVAL);  /* starts past the slot */
	EXPECT_ERR(vmmu_vm_dirty_clear(vm, 3, 0, 0, bits), -EINVAL);    /* empty */
	EXPECT_ERR(vmmu_vm_dirty_clear(vm, 4, 0, 64, bits), -ENOENT);   /* no such slot */
	EXPECT_ERR(vmmu_vcpu_dirty_harvest(NULL), -EINVAL);
	EXPECT_ERR(vmmu_vm_dirty_reset(vm), -EOPNOTSUPP);               /* not a ring VM */
	log_capture_stop();
	/* Legal: 64-aligned start, and a tail that ends the slot. */
	assert_int_equal(vmmu_vm_dirty_clear(vm, 3, 0, 64, bits), 0);
	assert_int_equal(vmmu_vm_dirty_clear(vm, 3, 64, 36, bits), 0);
	assert_int_equal(vmmu_vm_dirty_clear(vm, 3, 0, 100, bits), 0);
	vmmu_vm_destroy(vm);
	vmmu_guestmem_finish(&m);
}

static void test_dirty_calls_in_the_wrong_mode_or_slot(void **state)
{
	uint64_t bits[1];
	struct vmmu_vm *vm;
	struct vmmu_guestmem m;

	(void)state;
	assert_int_equal(vmmu_vm_create(&vm, "kvm", NULL), 0);
	assert_int_equal(vmmu_guestmem_init(&m, 64 * 4096, 0), 0);
	assert_int_equal(vmmu_vm_memslot_add(vm, 0, 0, 32 * 4096, m.hva, 0), 0);
	assert_int_equal(vmmu_vm_memslot_add(vm, 1, 32 * 4096, 32 * 4096, (char *)m.hva + 32 * 4096,
					     VMMU_MEMSLOT_LOG_DIRTY), 0);
	log_capture_start(&logc);
	EXPECT_ERR(vmmu_vm_dirty_get(vm, 0, bits), -EPERM);            /* logging off on slot 0 */
	EXPECT_ERR(vmmu_vm_dirty_get(vm, 9, bits), -ENOENT);
	EXPECT_ERR(vmmu_vm_dirty_get(vm, 1, NULL), -EINVAL);
	EXPECT_ERR(vmmu_vm_dirty_peek(vm, 1, bits), -EOPNOTSUPP);      /* GET_CLEAR VM */
	EXPECT_ERR(vmmu_vm_dirty_clear(vm, 1, 0, 32, bits), -EOPNOTSUPP);
	EXPECT_ERR(vmmu_vm_dirty_mark(vm, 0x1000, 4096), -EPERM);      /* slot 0 does not log */
	EXPECT_ERR(vmmu_vm_dirty_mark(vm, 1ULL << 40, 1), -EFAULT);    /* no slot at all */
	EXPECT_ERR(vmmu_vm_dirty_mark(vm, 31 * 4096, 2 * 4096),
		   -EPERM); /* straddles 0 and 1: nothing marked */
	EXPECT_ERR(vmmu_vm_dirty_mark(vm, 32 * 4096, 0), -EINVAL);
	log_capture_stop();
	assert_int_equal(vmmu_vm_dirty_get(vm, 1, bits), 0);
	assert_int_equal(bits[0] & 0xffffffff, 0); /* the failed straddling mark left no trace */
	assert_int_equal(vmmu_vm_dirty_mark(vm, 33 * 4096 + 100, 4096), 2);
	assert_int_equal(vmmu_vm_dirty_get(vm, 1, bits), 0);
	assert_int_equal(bits[0] & 0xffffffff, 0x6);
	vmmu_vm_destroy(vm);
	vmmu_guestmem_finish(&m);
}

static void test_bad_vm_options(void **state)
{
	struct vmmu_vm_options o = { .size = sizeof(o) };
	struct vmmu_vm *vm;

	(void)state;
	log_capture_start(&logc);
	o.dirty_mode = 7;
	EXPECT_ERR(vmmu_vm_create(&vm, "kvm", &o), -EINVAL);
	o.dirty_mode = VMMU_DIRTY_GET_CLEAR;
	o.flags = VMMU_VM_F_INITIALLY_SET;                        /* needs MANUAL */
	EXPECT_ERR(vmmu_vm_create(&vm, "kvm", &o), -EINVAL);
	o.flags = 0;
	o.dirty_mode = VMMU_DIRTY_RING;
	o.ring_entries = 1000;                                    /* not a power of two */
	EXPECT_ERR(vmmu_vm_create(&vm, "kvm", &o), -EINVAL);
	o.ring_entries = 1u << 20;                                /* larger than KVM's 65536 */
	EXPECT_ERR(vmmu_vm_create(&vm, "kvm", &o), -EOPNOTSUPP);
	o.ring_entries = 128;                                     /* below the minimum */
	EXPECT_ERR(vmmu_vm_create(&vm, "kvm", &o), -EINVAL);
	o.ring_entries = 0;
	o.reserved[0] = 1;                                        /* reserved fields must be zero */
	EXPECT_ERR(vmmu_vm_create(&vm, "kvm", &o), -EINVAL);
	o.reserved[0] = 0;
	o.size = 8;
	EXPECT_ERR(vmmu_vm_create(&vm, "kvm", &o), -EINVAL);
	EXPECT_ERR(vmmu_vm_create(NULL, "kvm", NULL), -EINVAL);
	log_capture_stop();
}

static void test_destroyed_vcpu_refuses_use(void **state)
{
	struct guest g;
	struct vmmu_exit e;
	struct vmmu_regs r;
	struct vmmu_vcpu *again;

	(void)state;
	assert_int_equal(guest_create(&g, NULL, guest_hlt_start, guest_hlt_end, 0), 0);
	vmmu_vcpu_destroy(g.vcpu);
	vmmu_vcpu_destroy(g.vcpu); /* twice is harmless */
	log_capture_start(&logc);
	EXPECT_ERR(vmmu_vcpu_run(g.vcpu, &e), -EBADF);
	EXPECT_ERR(vmmu_vcpu_get_regs(g.vcpu, &r), -EBADF);
	EXPECT_ERR(vmmu_vcpu_kick(g.vcpu), -EBADF);
	EXPECT_ERR(vmmu_vcpu_translate(g.vcpu, 0, 0, &(struct vmmu_walk_result){ 0 }), -EBADF);
	/* KVM keeps vCPU ids for the VM's life. */
	EXPECT_ERR(vmmu_vcpu_create(g.vm, 0, &again), -EEXIST);
	EXPECT_ERR(vmmu_vcpu_run(NULL, &e), -EINVAL);
	log_capture_stop();
	/* Another id still works. */
	assert_int_equal(vmmu_vcpu_create(g.vm, 1, &again), 0);
	guest_destroy(&g);
}

static void test_bad_notifiers(void **state)
{
	struct vmmu_notifier n = { .addr = 0xd0000000, .len = 3, .fd = 0 };
	struct vmmu_vm *vm;

	(void)state;
	assert_int_equal(vmmu_vm_create(&vm, "kvm", NULL), 0);
	log_capture_start(&logc);
	EXPECT_ERR(vmmu_vm_notifier_add(vm, &n), -EINVAL);        /* length 3 */
	n.len = 4;
	n.fd = -1;
	EXPECT_ERR(vmmu_vm_notifier_add(vm, &n), -EINVAL);        /* no fd */
	n.fd = 0;
	n.flags = VMMU_NOTIFIER_PIO;                              /* port past 0xffff */
	EXPECT_ERR(vmmu_vm_notifier_add(vm, &n), -EINVAL);
	n.flags = 0x80;
	EXPECT_ERR(vmmu_vm_notifier_add(vm, &n), -EINVAL);
	log_capture_stop();
	vmmu_vm_destroy(vm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_memslot_overlap_and_alignment),
		cmocka_unit_test(test_memslot_larger_than_host_mapping),
		cmocka_unit_test(test_clear_range_breaking_64_page_rule),
		cmocka_unit_test(test_dirty_calls_in_the_wrong_mode_or_slot),
		cmocka_unit_test(test_bad_vm_options),
		cmocka_unit_test(test_destroyed_vcpu_refuses_use),
		cmocka_unit_test(test_bad_notifiers),
	};

	guest_skip_without_kvm();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
