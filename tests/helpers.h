/* SPDX-License-Identifier: MIT */
/* Shared helpers for libvmmu's test programs. */
#ifndef VMMU_TEST_HELPERS_H
#define VMMU_TEST_HELPERS_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <setjmp.h>
#include <cmocka.h>

#include <libvmmu/vmmu.h>

/* meson reads this exit code as SKIP. */
#define TEST_SKIP_EXIT 77

/* Exit the whole program as skipped, saying why on stdout (visible in the test log). */
static inline void __attribute__((noreturn)) test_skip_all(const char *why)
{
	printf("SKIP: %s\n", why);
	fflush(stdout);
	exit(TEST_SKIP_EXIT);
}

/* A log sink that counts lines, so tests can assert that bad input is logged. */
struct log_capture {
	int lines;
	char last[512];
};

static inline void test_log_sink(enum vmmu_log_level level, const char *msg, void *opaque)
{
	struct log_capture *c = opaque;

	(void)level;
	c->lines++;
	snprintf(c->last, sizeof(c->last), "%s", msg);
}

static inline void log_capture_start(struct log_capture *c)
{
	c->lines = 0;
	c->last[0] = 0;
	vmmu_set_log(test_log_sink, VMMU_LOG_WARN, c);
}

static inline void log_capture_stop(void)
{
	vmmu_set_log(NULL, VMMU_LOG_ERROR, NULL);
}

/* xorshift64*: deterministic, seedable randomness for tests. */
static inline uint64_t test_rand64(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545F4914F6CDD1DULL;
}

#endif
