/* SPDX-License-Identifier: MIT */
/*
 * Backend selection in every build: by name, by VMMU_BACKEND, and "auto"
 * (kvm where /dev/kvm opens, else soft);
 * backends not built answer -ENODEV with a log line; the calls of kvm.h and
 * hvf.h exist (and refuse) when their backend is not built. Needs no /dev/kvm.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <libvmmu/hvf.h>
#include <libvmmu/kvm.h>
#include <libvmmu/vm.h>

#include "helpers.h"

static bool kvm_opens(void)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);

	if (fd < 0)
		return false;
	close(fd);
	return true;
}

static void test_names_and_environment(void **state)
{
	struct log_capture logc;
	struct vmmu_vm *vm = NULL;

	(void)state;
	log_capture_start(&logc);
	assert_int_equal(vmmu_vm_create(&vm, "nonesuch", NULL), -EINVAL);
	assert_int_equal(logc.lines, 1);
	setenv("VMMU_BACKEND", "nonesuch", 1);
	assert_int_equal(vmmu_vm_create(&vm, NULL, NULL), -EINVAL);
	/* An explicit name wins over the environment. */
	assert_int_equal(vmmu_vm_create(&vm, "nonesuch", NULL), -EINVAL);
	setenv("VMMU_BACKEND", "soft", 1);
#if TEST_HAVE_SOFT
	assert_int_equal(vmmu_vm_create(&vm, NULL, NULL), 0);
	assert_string_equal(vmmu_vm_backend_name(vm), "soft");
	vmmu_vm_destroy(vm);
	vm = NULL;
#else
	assert_int_equal(vmmu_vm_create(&vm, NULL, NULL), -ENODEV);
	assert_non_null(strstr(logc.last, "not built"));
#endif
	unsetenv("VMMU_BACKEND");
#if TEST_HAVE_HVF
	assert_int_equal(vmmu_vm_create(&vm, "hvf", NULL), -EOPNOTSUPP);
	assert_non_null(strstr(logc.last, "stub"));
#else
	assert_int_equal(vmmu_vm_create(&vm, "hvf", NULL), -ENODEV);
#endif
	assert_null(vm);
	log_capture_stop();
}

static void test_auto(void **state)
{
	struct log_capture logc;
	struct vmmu_vm *vm = NULL;
	int ret;

	(void)state;
	log_capture_start(&logc);
	ret = vmmu_vm_create(&vm, "auto", NULL);
	log_capture_stop();
	if (TEST_HAVE_KVM && kvm_opens()) {
		assert_int_equal(ret, 0);
		assert_string_equal(vmmu_vm_backend_name(vm), "kvm");
		assert_true(vmmu_vm_is_kvm(vm));
		vmmu_vm_destroy(vm);
	} else if (TEST_HAVE_SOFT) {
		assert_int_equal(ret, 0);
		assert_string_equal(vmmu_vm_backend_name(vm), "soft");
		vmmu_vm_destroy(vm);
	} else {
		/* Neither KVM nor the soft backend: auto has nowhere to go, and says so. */
		assert_int_equal(ret, -ENODEV);
		assert_non_null(strstr(logc.last, "soft backend is not built"));
	}
}

static void test_backend_calls_exist_in_every_build(void **state)
{
	struct log_capture logc;
	vmmu_gpa_t gpa;
	bool valid;

	(void)state;
	log_capture_start(&logc);
	assert_false(vmmu_vm_is_kvm(NULL));
	assert_false(vmmu_vm_is_hvf(NULL));
	assert_int_equal(vmmu_kvm_vm_fd(NULL), -EINVAL);
	assert_int_equal(vmmu_kvm_vcpu_fd(NULL), -EINVAL);
	assert_int_equal(vmmu_kvm_translate(NULL, 0, &gpa, &valid), -EINVAL);
	assert_true(logc.lines >= 3);
	log_capture_stop();
	assert_string_equal(vmmu_vm_backend_name(NULL), "none");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names_and_environment),
		cmocka_unit_test(test_auto),
		cmocka_unit_test(test_backend_calls_exist_in_every_build),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
