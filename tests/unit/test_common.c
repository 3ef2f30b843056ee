/* SPDX-License-Identifier: MIT */
/* Version, error strings, log routing. */
#include <errno.h>
#include <string.h>

#include "helpers.h"
#include <libvmmu/memslot.h>

static void test_version(void **state)
{
	(void)state;
	assert_int_equal(vmmu_version(), VMMU_VERSION_NUMBER);
	assert_string_equal(vmmu_version_string(), VMMU_VERSION_STRING);
	assert_int_equal(vmmu_version() >> 16, VMMU_VERSION_MAJOR);
}

static void test_strerror(void **state)
{
	(void)state;
	assert_string_equal(vmmu_strerror(-EINVAL), "invalid argument");
	assert_string_equal(vmmu_strerror(EINVAL), "invalid argument");
	assert_string_equal(vmmu_strerror(-EEXIST), "already exists or overlaps");
	assert_string_equal(vmmu_strerror(-123456), "unknown error");
	assert_string_equal(vmmu_strerror(0), "success");
}

static void test_log_levels(void **state)
{
	struct log_capture log;
	struct vmmu_memslots *s;

	(void)state;
	assert_int_equal(vmmu_memslots_create(&s), 0);
	log_capture_start(&log);
	assert_int_equal(vmmu_memslots_remove(s, 5), -ENOENT);
	assert_int_equal(log.lines, 1);
	assert_non_null(strstr(log.last, "no such slot"));
	/* errors are dropped below VMMU_LOG_ERROR... never; a NULL sink drops all */
	vmmu_set_log(NULL, VMMU_LOG_DEBUG, NULL);
	assert_int_equal(vmmu_memslots_remove(s, 5), -ENOENT);
	assert_int_equal(log.lines, 1);
	vmmu_memslots_destroy(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_version),
		cmocka_unit_test(test_strerror),
		cmocka_unit_test(test_log_levels),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
