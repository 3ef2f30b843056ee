/* SPDX-License-Identifier: MIT */
/* Shared by the fuzz targets: the model-check macro and a 64-bit mixer. */
#ifndef VMMU_FUZZ_HELPERS_H
#define VMMU_FUZZ_HELPERS_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* A disagreement with the target's model: abort, so libFuzzer (or the replay) reports the input. */
#define CHECK(cond)                                                                               \
	do {                                                                                      \
		if (!(cond)) {                                                                    \
			fprintf(stderr, "%s:%d: model mismatch: %s\n", __FILE__, __LINE__, #cond); \
			abort();                                                                  \
		}                                                                                 \
	} while (0)

/* A 64-bit finalizer (murmur3 fmix64): spreads a few input bytes over a whole word. */
static inline uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	return x ^ (x >> 33);
}

#endif
