/* SPDX-License-Identifier: MIT */
/* Shared by the dirty-tracking tests: a recorder of re-arm reports. */
#ifndef VMMU_TEST_DIRTY_HELPERS_H
#define VMMU_TEST_DIRTY_HELPERS_H

#include "helpers.h"
#include <libvmmu/dirty.h>

#define REARM_LOG_MAX 512

struct rearm_log {
	unsigned int n;
	uint32_t slot[REARM_LOG_MAX];
	uint64_t offset[REARM_LOG_MAX];
	uint64_t mask[REARM_LOG_MAX];
};

/* A vmmu_dirty_rearm_fn; checks the contract (aligned offset, non-zero mask) on every report. */
static inline void rearm_record(uint32_t slot, uint64_t offset, uint64_t mask, void *opaque)
{
	struct rearm_log *l = opaque;

	assert_true(l->n < REARM_LOG_MAX);
	assert_true(mask != 0);
	assert_int_equal(offset % 64, 0);
	l->slot[l->n] = slot;
	l->offset[l->n] = offset;
	l->mask[l->n] = mask;
	l->n++;
}

#endif
