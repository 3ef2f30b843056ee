/* SPDX-License-Identifier: MIT */
/* Memslots: add/remove/move/flags, lookups, bounds, rejected input, generation. */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "helpers.h"
#include <libvmmu/memslot.h>

static void *map_pages(size_t n)
{
	void *p = mmap(NULL, n * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	assert_true(p != MAP_FAILED);
	return p;
}

static void test_add_find(void **state)
{
	struct vmmu_memslots *s;
	struct vmmu_memslot_info info;
	uint8_t *a = map_pages(16), *b = map_pages(4);
	uint64_t g0;

	(void)state;
	assert_int_equal(vmmu_memslots_create(&s), 0);
	g0 = vmmu_memslots_generation(s);
	assert_int_equal(vmmu_memslots_add(s, 1, 0x100000, 16 * 4096, a, 0), 0);
	assert_true(vmmu_memslots_generation(s) > g0);
	assert_int_equal(vmmu_memslots_add(s, 2, 0x0, 4 * 4096, b, VMMU_MEMSLOT_READONLY), 0);
	assert_int_equal(vmmu_memslots_count(s), 2);

	assert_int_equal(vmmu_memslots_find(s, 0x100000 + 5 * 4096 + 7, &info), 0);
	assert_int_equal(info.id, 1);
	assert_int_equal(info.base_gfn, 0x100);
	assert_int_equal(info.npages, 16);
	assert_ptr_equal(info.hva, a);
	assert_int_equal(vmmu_memslots_find(s, 0x3fff, &info), 0);
	assert_int_equal(info.id, 2);
	assert_int_equal(info.flags, VMMU_MEMSLOT_READONLY);
	/* the holes around and between slots */
	assert_int_equal(vmmu_memslots_find(s, 0x4000, NULL), -ENOENT);
	assert_int_equal(vmmu_memslots_find(s, 0xfffff, NULL), -ENOENT);
	assert_int_equal(vmmu_memslots_find(s, 0x110000, NULL), -ENOENT);
	assert_int_equal(vmmu_memslots_find(s, ~0ULL, NULL), -ENOENT);

	/* iteration is in gpa order */
	assert_int_equal(vmmu_memslots_at(s, 0, &info), 0);
	assert_int_equal(info.id, 2);
	assert_int_equal(vmmu_memslots_at(s, 1, &info), 0);
	assert_int_equal(info.id, 1);
	assert_int_equal(vmmu_memslots_at(s, 2, &info), -ENOENT);

	vmmu_memslots_destroy(s);
	munmap(a, 16 * 4096);
	munmap(b, 4 * 4096);
}

static void test_rejects(void **state)
{
	struct vmmu_memslots *s;
	struct log_capture log;
	uint8_t *a = map_pages(8);
	uint64_t gen;

	(void)state;
	assert_int_equal(vmmu_memslots_create(&s), 0);
	assert_int_equal(vmmu_memslots_add(s, 1, 0x10000, 4 * 4096, a, 0), 0);
	gen = vmmu_memslots_generation(s);
	log_capture_start(&log);
	assert_int_equal(vmmu_memslots_add(s, 2, 0x20000, 0, a, 0), -EINVAL);            /* zero size */
	assert_int_equal(vmmu_memslots_add(s, 2, 0x20800, 4096, a, 0), -EINVAL);         /* unaligned gpa */
	assert_int_equal(vmmu_memslots_add(s, 2, 0x20000, 100, a, 0), -EINVAL);          /* unaligned size */
	assert_int_equal(vmmu_memslots_add(s, 2, 0x20000, 4096, a + 1, 0), -EINVAL);     /* unaligned hva */
	assert_int_equal(vmmu_memslots_add(s, 2, 0x20000, 4096, NULL, 0), -EINVAL);      /* NULL memory */
	assert_int_equal(vmmu_memslots_add(s, 2, 0x20000, 4096, a, 0x80), -EINVAL);      /* bad flags */
	assert_int_equal(vmmu_memslots_add(s, 2, (1ULL << 52) - 4096, 8192, a, 0), -EINVAL); /* past 2^52 */
	assert_int_equal(vmmu_memslots_add(s, 2, 1ULL << 52, 4096, a, 0), -EINVAL);
	assert_int_equal(vmmu_memslots_add(s, 2, 0xfffffffffffff000ULL, 0x2000, a, 0), -EINVAL); /* wraps */
	assert_int_equal(vmmu_memslots_add(s, 2, 0x13000, 2 * 4096, a, 0), -EEXIST);     /* overlaps end */
	assert_int_equal(vmmu_memslots_add(s, 2, 0xf000, 2 * 4096, a, 0), -EEXIST);      /* overlaps start */
	assert_int_equal(vmmu_memslots_add(s, 2, 0x8000, 0x20000, a, 0), -EEXIST);       /* covers */
	assert_int_equal(vmmu_memslots_add(s, 1, 0x40000, 4096, a, 0), -EEXIST);         /* id in use */
	assert_int_equal(log.lines, 13);
	assert_int_equal(vmmu_memslots_remove(s, 9), -ENOENT);
	assert_int_equal(vmmu_memslots_set_flags(s, 9, 0), -ENOENT);
	assert_int_equal(vmmu_memslots_set_flags(s, 1, 0x100), -EINVAL);
	assert_int_equal(vmmu_memslots_move(s, 9, 0), -ENOENT);
	assert_true(log.lines >= 17);
	log_capture_stop();
	/* nothing changed */
	assert_int_equal(vmmu_memslots_generation(s), gen);
	assert_int_equal(vmmu_memslots_count(s), 1);
	/* adjacent slots are fine */
	assert_int_equal(vmmu_memslots_add(s, 2, 0x14000, 4096, a, 0), 0);
	assert_int_equal(vmmu_memslots_add(s, 3, 0xf000, 4096, a, 0), 0);
	assert_int_equal(vmmu_memslots_add(NULL, 3, 0xf000, 4096, a, 0), -EINVAL);
	assert_int_equal(vmmu_memslots_create(NULL), -EINVAL);
	vmmu_memslots_destroy(s);
	vmmu_memslots_destroy(NULL);
	munmap(a, 8 * 4096);
}

static void test_move_flags_remove(void **state)
{
	struct vmmu_memslots *s;
	struct vmmu_memslot_info info;
	uint8_t *a = map_pages(4), *b = map_pages(4);
	uint64_t gen;

	(void)state;
	assert_int_equal(vmmu_memslots_create(&s), 0);
	assert_int_equal(vmmu_memslots_add(s, 1, 0x0, 4 * 4096, a, 0), 0);
	assert_int_equal(vmmu_memslots_add(s, 2, 0x10000, 4 * 4096, b, 0), 0);
	gen = vmmu_memslots_generation(s);
	log_capture_stop();
	assert_int_equal(vmmu_memslots_move(s, 1, 0x12000), -EEXIST);
	assert_int_equal(vmmu_memslots_move(s, 1, 0x20000), 0);
	assert_true(vmmu_memslots_generation(s) > gen);
	assert_int_equal(vmmu_memslots_find(s, 0x0, NULL), -ENOENT);
	assert_int_equal(vmmu_memslots_find(s, 0x21000, &info), 0);
	assert_int_equal(info.id, 1);
	assert_ptr_equal(vmmu_memslots_hva(s, 0x21000, 8, false), a + 4096);
	gen = vmmu_memslots_generation(s);
	assert_int_equal(vmmu_memslots_set_flags(s, 1, VMMU_MEMSLOT_LOG_DIRTY), 0);
	assert_true(vmmu_memslots_generation(s) > gen);
	assert_int_equal(vmmu_memslots_get(s, 1, &info), 0);
	assert_int_equal(info.flags, VMMU_MEMSLOT_LOG_DIRTY);
	gen = vmmu_memslots_generation(s);
	assert_int_equal(vmmu_memslots_remove(s, 2), 0);
	assert_true(vmmu_memslots_generation(s) > gen);
	assert_int_equal(vmmu_memslots_find(s, 0x10000, NULL), -ENOENT);
	assert_int_equal(vmmu_memslots_get(s, 2, &info), -ENOENT);
	vmmu_memslots_destroy(s);
	munmap(a, 4 * 4096);
	munmap(b, 4 * 4096);
}

static void test_access(void **state)
{
	struct vmmu_memslots *s;
	uint8_t *a = map_pages(2), *b = map_pages(2), *r = map_pages(1);
	uint8_t buf[64];

	(void)state;
	assert_int_equal(vmmu_memslots_create(&s), 0);
	/* two adjacent slots, then a read-only one after a hole */
	assert_int_equal(vmmu_memslots_add(s, 1, 0x0, 2 * 4096, a, 0), 0);
	assert_int_equal(vmmu_memslots_add(s, 2, 0x2000, 2 * 4096, b, 0), 0);
	assert_int_equal(vmmu_memslots_add(s, 3, 0x8000, 4096, r, VMMU_MEMSLOT_READONLY), 0);

	memset(buf, 0xab, sizeof(buf));
	assert_int_equal(vmmu_memslots_write(s, 0x2000 - 32, buf, 64), 0); /* spans slots */
	assert_int_equal(a[8192 - 1], 0xab);
	assert_int_equal(b[31], 0xab);
	assert_int_equal(b[32], 0);
	memset(buf, 0, sizeof(buf));
	assert_int_equal(vmmu_memslots_read(s, 0x2000 - 32, buf, 64), 0);
	assert_int_equal(buf[0], 0xab);
	assert_int_equal(buf[63], 0xab);

	/* hva: must stay inside one slot */
	assert_null(vmmu_memslots_hva(s, 0x2000 - 4, 8, false));
	assert_ptr_equal(vmmu_memslots_hva(s, 0x2000 - 8, 8, false), a + 8192 - 8);
	assert_null(vmmu_memslots_hva(s, 0x4000, 1, false));
	assert_null(vmmu_memslots_hva(s, 0x8000, 8, true));
	assert_ptr_equal(vmmu_memslots_hva(s, 0x8000, 8, false), r);
	assert_null(vmmu_memslots_hva(s, 0x8000, 0, false));
	assert_null(vmmu_memslots_hva(s, ~0ULL - 3, 4, false));

	/* holes and read-only: nothing written at all */
	memset(buf, 0x11, sizeof(buf));
	assert_int_equal(vmmu_memslots_write(s, 0x4000 - 32, buf, 64), -EFAULT);
	assert_int_equal(b[8192 - 32], 0);
	assert_int_equal(vmmu_memslots_read(s, 0x4000 - 32, buf, 64), -EFAULT);
	assert_int_equal(vmmu_memslots_write(s, 0x8000, buf, 8), -EACCES);
	assert_int_equal(r[0], 0);
	assert_int_equal(vmmu_memslots_read(s, ~0ULL - 7, buf, 8), -EFAULT);
	vmmu_memslots_destroy(s);
	munmap(a, 2 * 4096);
	munmap(b, 2 * 4096);
	munmap(r, 4096);
}

static void test_many_slots(void **state)
{
	struct vmmu_memslots *s;
	uint8_t *a = map_pages(1);
	struct vmmu_memslot_info info;
	uint64_t seed = 42;

	(void)state;
	assert_int_equal(vmmu_memslots_create(&s), 0);
	/* 1000 one-page slots at every other frame, added in a scrambled order */
	for (uint32_t i = 0; i < 1000; i++) {
		uint32_t k = (i * 7919u) % 1000u;

		assert_int_equal(vmmu_memslots_add(s, k, (uint64_t)k * 2 * 4096, 4096, a, 0), 0);
	}
	for (int n = 0; n < 20000; n++) {
		uint64_t gfn = test_rand64(&seed) % 2000;
		int ret = vmmu_memslots_find(s, gfn << 12, &info);

		if (gfn & 1) {
			assert_int_equal(ret, -ENOENT);
		} else {
			assert_int_equal(ret, 0);
			assert_int_equal(info.id, gfn / 2);
		}
	}
	vmmu_memslots_destroy(s);
	munmap(a, 4096);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_add_find),
		cmocka_unit_test(test_rejects),
		cmocka_unit_test(test_move_flags_remove),
		cmocka_unit_test(test_access),
		cmocka_unit_test(test_many_slots),
	};

	vmmu_set_log(NULL, VMMU_LOG_ERROR, NULL);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
