/* SPDX-License-Identifier: MIT */
/*
 * A structural checker for reverse maps, for tests, fuzz targets and
 * benchmarks only (never called by the library). It reads the raw layout
 * described in rmap_internal.h and shares no code with src/rmap.c.
 */
#ifndef VMMU_RMAP_CHECK_H
#define VMMU_RMAP_CHECK_H

#include <stdint.h>

#include "rmap_internal.h"

/* What a walk of the raw layout found. */
struct rmap_shape {
	unsigned int entries;  /* entries found */
	unsigned int descs;    /* descriptors in the chain */
	int single;            /* 1 if the head holds one pointer directly */
};

/*
 * Check every invariant of @head with no reader holding it: lock bit clear;
 * pointers non-NULL and 8-byte aligned; descriptors 64-byte aligned with 1..14
 * entries, only the head one partly full; each tail_count equal to the entries
 * after it. Return NULL if all hold, else what is wrong.
 */
static inline const char *rmap_check(const struct vmmu_rmap_head *head, struct rmap_shape *shape)
{
	uintptr_t word = head->word;
	const struct rmap_desc *d;
	const struct rmap_desc *chain[4096];
	unsigned int n = 0, after = 0;

	shape->entries = 0;
	shape->descs = 0;
	shape->single = 0;
	if (word & RMAP_LOCKED)
		return "lock bit left set";
	if (!word)
		return NULL;
	if (!(word & RMAP_MANY)) {
		if (word & 7)
			return "single pointer not 8-byte aligned";
		shape->entries = 1;
		shape->single = 1;
		return NULL;
	}
	for (d = rmap_word_desc(word); d; d = d->more) {
		if ((uintptr_t)d % RMAP_DESC_ALIGN)
			return "descriptor not 64-byte aligned";
		if (n == 4096)
			return "chain too long (loop?)";
		if (d->count < 1 || d->count > VMMU_RMAP_DESC_ENTRIES)
			return "descriptor count out of 1..14";
		if (n > 0 && d->count != VMMU_RMAP_DESC_ENTRIES)
			return "a tail descriptor is not full";
		for (unsigned int i = 0; i < d->count; i++)
			if (!d->sptes[i] || ((uintptr_t)d->sptes[i] & 7))
				return "NULL or misaligned entry";
		chain[n++] = d;
	}
	/* tail_count of each descriptor = sum of the counts after it */
	for (unsigned int k = n; k-- > 0;) {
		if (chain[k]->tail_count != after)
			return "tail_count does not match the entries after the descriptor";
		after += chain[k]->count;
	}
	shape->entries = after;
	shape->descs = n;
	return NULL;
}

#endif
