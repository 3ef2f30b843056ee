/* SPDX-License-Identifier: MIT */
/*
 * KVM backend basics on real guests: backend selection, capabilities, HLT at
 * CPL0, port I/O and MMIO exits with their data at CPL3, kicking a vCPU out of
 * KVM_RUN from another thread, registers round trip.
 */
#include <pthread.h>
#include <sys/mman.h>
#include <time.h>

#include <libvmmu/hvf.h>
#include <libvmmu/kvm.h>

#include "helpers.h"
#include "guest.h"

/* Names, "auto" without KVM and the stub are in test_vm_select.c; here, KVM is chosen. */
static void test_backend_selection(void **state)
{
	struct vmmu_vm *vm;

	(void)state;
	setenv("VMMU_BACKEND", "kvm", 1);
	assert_int_equal(vmmu_vm_create(&vm, NULL, NULL), 0);
	assert_string_equal(vmmu_vm_backend_name(vm), "kvm");
	assert_true(vmmu_vm_is_kvm(vm));
	assert_false(vmmu_vm_is_hvf(vm));
	assert_true(vmmu_kvm_vm_fd(vm) >= 0);
	vmmu_vm_destroy(vm);
	unsetenv("VMMU_BACKEND");
	assert_int_equal(vmmu_vm_create(&vm, "auto", NULL), 0); /* /dev/kvm opens here */
	assert_string_equal(vmmu_vm_backend_name(vm), "kvm");
	vmmu_vm_destroy(vm);
	vmmu_vm_destroy(NULL);
}

static void test_caps_match_machine(void **state)
{
	struct vmmu_vm_caps caps = { .size = sizeof(caps) };
	struct vmmu_vm *vm;

	(void)state;
	assert_int_equal(vmmu_vm_create(&vm, "kvm", NULL), 0);
	assert_int_equal(vmmu_vm_get_caps(vm, &caps), 0);
	/* machine.md: these capabilities exist on this machine class. */
	assert_true(caps.flags & VMMU_CAP_READONLY_MEM);
	assert_true(caps.flags & VMMU_CAP_DIRTY_MANUAL);
	assert_true(caps.flags & VMMU_CAP_DIRTY_RING);
	assert_true(caps.flags & VMMU_CAP_NOTIFIER);
	assert_int_equal(caps.max_ring_entries, 65536);
	assert_int_equal(caps.maxphyaddr, 46);
	assert_true(caps.max_vcpus >= 1);
	assert_true(caps.max_memslots >= 32);
	caps.size = 4;
	assert_int_equal(vmmu_vm_get_caps(vm, &caps), -EINVAL);
	vmmu_vm_destroy(vm);
}

static void test_hlt_at_cpl0(void **state)
{
	struct guest g;
	struct vmmu_exit e;
	struct vmmu_regs r;

	(void)state;
	assert_int_equal(guest_create(&g, NULL, guest_hlt_start, guest_hlt_end, 0), 0);
	assert_int_equal(vmmu_vcpu_run(g.vcpu, &e), 0);
	assert_int_equal(e.reason, VMMU_EXIT_HLT);
	assert_int_equal(vmmu_vcpu_get_regs(g.vcpu, &r), 0);
	assert_int_equal(r.rip, GUEST_CODE + 1);
	guest_destroy(&g);
}

static void test_io_and_mmio_exits_carry_data(void **state)
{
	const uint64_t mmio = 0xc0000000ULL, value = 0x1122334455667788ULL;
	struct guest g;
	struct vmmu_exit e;
	uint32_t in;

	(void)state;
	assert_int_equal(guest_create(&g, NULL, guest_io_start, guest_io_end, 3), 0);
	assert_int_equal(guest_set_args(&g, value, mmio, 0, 0, 0), 0);

	assert_int_equal(vmmu_vcpu_run(g.vcpu, &e), 0);
	assert_int_equal(e.reason, VMMU_EXIT_IO);
	assert_int_equal(e.io.port, 0x10);
	assert_int_equal(e.io.size, 1);
	assert_true(e.io.is_write);
	assert_int_equal(e.io.count, 1);
	assert_int_equal(e.io.data[0], 0x88);

	assert_int_equal(vmmu_vcpu_run(g.vcpu, &e), 0);
	assert_int_equal(e.reason, VMMU_EXIT_MMIO);
	assert_int_equal(e.mmio.gpa, mmio);
	assert_int_equal(e.mmio.len, 8);
	assert_true(e.mmio.is_write);
	assert_memory_equal(e.mmio.data, &value, 8);

	assert_int_equal(vmmu_vcpu_run(g.vcpu, &e), 0);
	assert_int_equal(e.reason, VMMU_EXIT_MMIO);
	assert_int_equal(e.mmio.gpa, mmio);
	assert_false(e.mmio.is_write);
	memcpy(e.mmio.data, &(uint64_t){ 0xcafef00d }, 8); /* the device's answer */

	assert_int_equal(vmmu_vcpu_run(g.vcpu, &e), 0);
	assert_int_equal(e.reason, VMMU_EXIT_IO);
	assert_int_equal(e.io.port, 0x11);
	assert_int_equal(e.io.size, 4);
	memcpy(&in, e.io.data, 4);
	assert_int_equal(in, 0xcafef00d);
	guest_destroy(&g);
}


static void test_readonly_slot_reads_in_place_writes_exit(void **state)
{
	const uint64_t rom = 0xc0000000ULL, value = 0xabcdef;
	struct vmmu_guestmem m;
	struct guest g;
	struct vmmu_exit e;
	uint32_t in;

	(void)state;
	assert_int_equal(guest_create(&g, NULL, guest_io_start, guest_io_end, 3), 0);
	assert_int_equal(vmmu_guestmem_init(&m, 4096, 0), 0);
	*(uint64_t *)m.hva = 0x5a5a5a5a;
	assert_int_equal(vmmu_vm_memslot_add(g.vm, 1, rom, 4096, m.hva, VMMU_MEMSLOT_READONLY), 0);
	assert_int_equal(guest_set_args(&g, value, rom, 0, 0, 0), 0);
	assert_int_equal(vmmu_vcpu_run(g.vcpu, &e), 0);
	assert_int_equal(e.reason, VMMU_EXIT_IO);
	/* The write to the read-only slot exits as MMIO and leaves memory alone. */
	assert_int_equal(vmmu_vcpu_run(g.vcpu, &e), 0);
	assert_int_equal(e.reason, VMMU_EXIT_MMIO);
	assert_int_equal(e.mmio.gpa, rom);
	assert_true(e.mmio.is_write);
	assert_int_equal(*(uint64_t *)m.hva, 0x5a5a5a5a);
	/* The read is served from memory without an exit. */
	assert_int_equal(vmmu_vcpu_run(g.vcpu, &e), 0);
	assert_int_equal(e.reason, VMMU_EXIT_IO);
	assert_int_equal(e.io.port, 0x11);
	memcpy(&in, e.io.data, 4);
	assert_int_equal(in, 0x5a5a5a5a);
	guest_destroy(&g);
	vmmu_guestmem_finish(&m);
}


static void test_triple_fault_is_shutdown(void **state)
{
	static const char ud2[] = "\x0f\x0b"; /* #UD with an empty IDT: #GP, #DF, then a triple fault */
	struct guest g;
	struct vmmu_exit e;

	(void)state;
	assert_int_equal(guest_create(&g, NULL, ud2, ud2 + 2, 3), 0);
	assert_int_equal(vmmu_vcpu_run(g.vcpu, &e), 0);
	assert_int_equal(e.reason, VMMU_EXIT_SHUTDOWN);
	guest_destroy(&g);
}

static void test_guest_memory_kinds(void **state)
{
	struct log_capture logc;
	struct vmmu_guestmem a, b, c;
	int fd = memfd_create("vmmu-test", MFD_CLOEXEC);
	long huge = 0;
	FILE *f;

	(void)state;
	/* Anonymous: 2 MiB aligned (for THP), prefaulted or not, writable. */
	assert_int_equal(vmmu_guestmem_init(&a, 6 << 20, VMMU_GUESTMEM_DEFAULT), 0);
	assert_int_equal((uintptr_t)a.hva % (2 << 20), 0);
	assert_int_equal(a.fd, -1);
	memset(a.hva, 1, a.size);
	assert_int_equal(vmmu_guestmem_init(&b, 8192, VMMU_GUESTMEM_NO_THP), 0);
	memset(b.hva, 1, b.size);
	vmmu_guestmem_finish(&b);
	assert_null(b.hva);
	vmmu_guestmem_finish(&b); /* twice is harmless */

	/* The caller's memfd: shared, so two mappings see each other. */
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 3 * 4096), 0);
	assert_int_equal(vmmu_guestmem_init_fd(&b, fd, 4096, 2 * 4096, VMMU_GUESTMEM_PREFAULT), 0);
	assert_int_equal(vmmu_guestmem_init_fd(&c, fd, 0, 3 * 4096, 0), 0);
	((char *)b.hva)[5] = 42;
	assert_int_equal(((char *)c.hva)[4096 + 5], 42);
	assert_int_equal(b.fd, fd);

	/* hugetlbfs: works where the host has 2 MiB pages reserved, else -ENOMEM with a log line. */
	f = fopen("/proc/sys/vm/nr_hugepages", "r");
	if (f) {
		if (fscanf(f, "%ld", &huge) != 1)
			huge = 0;
		fclose(f);
	}
	vmmu_guestmem_finish(&c);
	log_capture_start(&logc);
	if (huge >= 1) {
		assert_int_equal(vmmu_guestmem_init(&c, 2 << 20, VMMU_GUESTMEM_HUGETLB), 0);
		vmmu_guestmem_finish(&c);
	} else {
		assert_int_equal(vmmu_guestmem_init(&c, 2 << 20, VMMU_GUESTMEM_HUGETLB), -ENOMEM);
		assert_int_equal(logc.lines, 1);
	}
	/* Bad sizes and flags. */
	assert_int_equal(vmmu_guestmem_init(&c, 4096, VMMU_GUESTMEM_HUGETLB), -EINVAL);
	assert_int_equal(vmmu_guestmem_init(&c, 100, 0), -EINVAL);
	assert_int_equal(vmmu_guestmem_init(&c, 4096, 1u << 9), -EINVAL);
	assert_int_equal(vmmu_guestmem_init_fd(&c, -1, 0, 4096, 0), -EINVAL);
	log_capture_stop();

	vmmu_guestmem_finish(&a);
	vmmu_guestmem_finish(&b);
	vmmu_guestmem_finish(&c);
	close(fd);
}


static void test_unmapped_host_memory_is_reported(void **state)
{
	const uint64_t gpa = 0xc0000000ULL;
	struct log_capture logc;
	struct guest g;
	struct vmmu_exit e;
	void *p;
	int ret;

	(void)state;
	assert_int_equal(guest_create(&g, NULL, guest_io_start, guest_io_end, 3), 0);
	p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(p != MAP_FAILED);
	assert_int_equal(vmmu_vm_memslot_add(g.vm, 1, gpa, 4096, p, 0), 0);
	munmap(p, 4096); /* the VMM's bug: the slot's memory is gone */
	assert_int_equal(guest_set_args(&g, 1, gpa + 8, 0, 0, 0), 0);
	assert_int_equal(vmmu_vcpu_run(g.vcpu, &e), 0);
	assert_int_equal(e.reason, VMMU_EXIT_IO);
	/*
	 * The write to the slot: KVM cannot fault the host page in. Kernels that
	 * describe the fault (KVM_EXIT_MEMORY_FAULT) give a FAULT exit with the
	 * GPA; others (this machine's, for this path) a plain EFAULT, logged.
	 */
	log_capture_start(&logc);
	ret = vmmu_vcpu_run(g.vcpu, &e);
	log_capture_stop();
	if (ret == 0) {
		assert_int_equal(e.reason, VMMU_EXIT_FAULT);
		assert_int_equal(e.fault.gpa & ~0xfffULL, gpa);
		printf("described: FAULT exit at gpa 0x%llx\n", (unsigned long long)e.fault.gpa);
	} else {
		assert_int_equal(ret, -EFAULT);
		assert_int_equal(logc.lines, 1);
		assert_non_null(strstr(logc.last, "KVM_RUN"));
		printf("not described: KVM_RUN failed with EFAULT\n");
	}
	guest_destroy(&g);
}

static void *kicker(void *arg)
{
	struct timespec ts = { 0, 20 * 1000 * 1000 };

	nanosleep(&ts, NULL);
	return (void *)(intptr_t)vmmu_vcpu_kick(arg);
}

static void test_kick_from_another_thread(void **state)
{
	static const char spin[] = "\xeb\xfe"; /* jmp . at CPL3: never exits by itself */
	struct guest g;
	struct vmmu_exit e;
	pthread_t t;
	void *ret;

	(void)state;
	assert_int_equal(guest_create(&g, NULL, spin, spin + 2, 3), 0);
	/* A kick before the run makes the run return at once. */
	assert_int_equal(vmmu_vcpu_kick(g.vcpu), 0);
	assert_int_equal(vmmu_vcpu_run(g.vcpu, &e), 0);
	assert_int_equal(e.reason, VMMU_EXIT_INTR);
	/* A kick during the run ends it. */
	assert_int_equal(pthread_create(&t, NULL, kicker, g.vcpu), 0);
	assert_int_equal(vmmu_vcpu_run(g.vcpu, &e), 0);
	assert_int_equal(e.reason, VMMU_EXIT_INTR);
	pthread_join(t, &ret);
	assert_int_equal((intptr_t)ret, 0);
	guest_destroy(&g);
}

static void test_sregs_round_trip(void **state)
{
	struct guest g;
	struct vmmu_sregs s;

	(void)state;
	assert_int_equal(guest_create(&g, NULL, guest_hlt_start, guest_hlt_end, 3), 0);
	assert_int_equal(vmmu_vcpu_get_sregs(g.vcpu, &s), 0);
	assert_int_equal(s.cr3, GUEST_PML4);
	assert_int_equal(s.efer & 0xd00, 0xd00);
	assert_int_equal(s.cs.selector, SEL_UCODE);
	assert_int_equal(s.cs.dpl, 3);
	assert_int_equal(s.cs.l, 1);
	assert_int_equal(s.tr.base, GUEST_TSS);
	assert_int_equal(s.gdt.base, GUEST_GDT);
	assert_int_equal(vmmu_vcpu_id(g.vcpu), 0);
	guest_destroy(&g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_backend_selection),
		cmocka_unit_test(test_caps_match_machine),
		cmocka_unit_test(test_hlt_at_cpl0),
		cmocka_unit_test(test_io_and_mmio_exits_carry_data),
		cmocka_unit_test(test_readonly_slot_reads_in_place_writes_exit),
		cmocka_unit_test(test_triple_fault_is_shutdown),
		cmocka_unit_test(test_unmapped_host_memory_is_reported),
		cmocka_unit_test(test_guest_memory_kinds),
		cmocka_unit_test(test_kick_from_another_thread),
		cmocka_unit_test(test_sregs_round_trip),
	};

	guest_skip_without_kvm();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
