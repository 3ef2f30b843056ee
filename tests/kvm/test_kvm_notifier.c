/* SPDX-License-Identifier: MIT */
/*
 * MMIO and PIO notifiers (KVM_IOEVENTFD) on a real guest: a guest write to a
 * registered address signals the eventfd and never reaches user space as an
 * exit; with a data match only the matching value does, other values exit as
 * ordinary MMIO / port I/O.
 */
#include <sys/eventfd.h>

#include "helpers.h"
#include "guest.h"

#define MMIO_ADDR 0xd0000000ULL
#define PIO_PORT  0x300
#define PORT_SYNC 0x12

static uint64_t drain(int fd)
{
	uint64_t v = 0;

	if (read(fd, &v, sizeof(v)) != sizeof(v))
		return 0; /* EAGAIN: not signalled */
	return v;
}

/* One round of the guest: exits seen until the sync point. */
struct round {
	int mmio_exits, pio_exits;
	uint32_t mmio_value, pio_value;
};

static void run_round(struct guest *g, struct round *rd)
{
	struct vmmu_exit e;

	memset(rd, 0, sizeof(*rd));
	for (;;) {
		assert_int_equal(vmmu_vcpu_run(g->vcpu, &e), 0);
		if (e.reason == VMMU_EXIT_IO && e.io.port == PORT_SYNC)
			return;
		if (e.reason == VMMU_EXIT_MMIO) {
			assert_int_equal(e.mmio.gpa, MMIO_ADDR);
			assert_int_equal(e.mmio.len, 4);
			memcpy(&rd->mmio_value, e.mmio.data, 4);
			rd->mmio_exits++;
		} else if (e.reason == VMMU_EXIT_IO && e.io.port == PIO_PORT) {
			assert_int_equal(e.io.size, 4);
			memcpy(&rd->pio_value, e.io.data, 4);
			rd->pio_exits++;
		} else {
			fail_msg("unexpected exit %u", e.reason);
		}
	}
}

static void setup(struct guest *g)
{
	assert_int_equal(guest_create(g, NULL, guest_notify_start, guest_notify_end, 3), 0);
	assert_int_equal(guest_set_args(g, MMIO_ADDR, 0, PIO_PORT, 0, 0), 0);
}

static void test_writes_signal_without_exits(void **state)
{
	int mfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC), pfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	struct vmmu_notifier mn = { .addr = MMIO_ADDR, .len = 4, .fd = mfd };
	struct vmmu_notifier pn = { .addr = PIO_PORT, .len = 4, .fd = pfd, .flags = VMMU_NOTIFIER_PIO };
	struct log_capture logc;
	struct guest g;
	struct round rd;

	(void)state;
	setup(&g);
	/* Without notifiers, both writes exit to user space. */
	run_round(&g, &rd);
	assert_int_equal(rd.mmio_exits, 1);
	assert_int_equal(rd.pio_exits, 1);
	assert_int_equal(vmmu_vm_notifier_add(g.vm, &mn), 0);
	assert_int_equal(vmmu_vm_notifier_add(g.vm, &pn), 0);
	log_capture_start(&logc);
	assert_int_equal(vmmu_vm_notifier_add(g.vm, &mn), -EEXIST);
	log_capture_stop();
	for (int i = 0; i < 20; i++) {
		run_round(&g, &rd);
		assert_int_equal(rd.mmio_exits, 0);
		assert_int_equal(rd.pio_exits, 0);
		assert_int_equal(drain(mfd), 1);
		assert_int_equal(drain(pfd), 1);
	}
	assert_int_equal(vmmu_vm_notifier_remove(g.vm, &mn), 0);
	assert_int_equal(vmmu_vm_notifier_remove(g.vm, &pn), 0);
	log_capture_start(&logc);
	assert_int_equal(vmmu_vm_notifier_remove(g.vm, &pn), -ENOENT);
	log_capture_stop();
	/* Removed: exits again, and nothing signalled. */
	run_round(&g, &rd);
	assert_int_equal(rd.mmio_exits, 1);
	assert_int_equal(rd.pio_exits, 1);
	assert_int_equal(drain(mfd), 0);
	assert_int_equal(drain(pfd), 0);
	guest_destroy(&g);
	close(mfd);
	close(pfd);
}

static void test_datamatch_signals_only_the_value(void **state)
{
	const uint32_t match = 5;
	int mfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC), pfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	struct vmmu_notifier mn = { .addr = MMIO_ADDR, .len = 4, .fd = mfd, .datamatch = match,
				    .flags = VMMU_NOTIFIER_DATAMATCH };
	struct vmmu_notifier pn = { .addr = PIO_PORT, .len = 4, .fd = pfd, .datamatch = match,
				    .flags = VMMU_NOTIFIER_DATAMATCH | VMMU_NOTIFIER_PIO };
	struct guest g;
	struct round rd;

	(void)state;
	setup(&g);
	assert_int_equal(vmmu_vm_notifier_add(g.vm, &mn), 0);
	assert_int_equal(vmmu_vm_notifier_add(g.vm, &pn), 0);
	for (uint32_t v = 0; v < 12; v++) { /* the guest writes v in round v */
		run_round(&g, &rd);
		if (v == match) {
			assert_int_equal(rd.mmio_exits + rd.pio_exits, 0);
			assert_int_equal(drain(mfd), 1);
			assert_int_equal(drain(pfd), 1);
		} else {
			assert_int_equal(rd.mmio_exits, 1);
			assert_int_equal(rd.pio_exits, 1);
			assert_int_equal(rd.mmio_value, v);
			assert_int_equal(rd.pio_value, v);
			assert_int_equal(drain(mfd), 0);
			assert_int_equal(drain(pfd), 0);
		}
	}
	guest_destroy(&g);
	close(mfd);
	close(pfd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_writes_signal_without_exits),
		cmocka_unit_test(test_datamatch_signals_only_the_value),
	};

	guest_skip_without_kvm();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
