/* SPDX-License-Identifier: MIT */
/*
 * Reverse maps against a simple model, with random operation sequences:
 * tens of thousands of adds, removes (present and absent), iterations with and
 * without removal, lockless walks, cache top-ups with injected allocation
 * failures and trims, over four heads that share one cache. The operation
 * interpreter and the model are the fuzz target's (tests/fuzz/fuzz_rmap.c),
 * which aborts on the first disagreement; this program feeds it programs in
 * phases (grow, churn, shrink) so chains reach hundreds of entries and go
 * back to empty many times.
 */
#include <string.h>

#include "helpers.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fuzz_rmap_stats {
	unsigned long ops, enomem, enoent, iter_removed, topup_failed, descs_freed;
	unsigned int peak;
};
extern struct fuzz_rmap_stats fuzz_rmap_stats;

#define OPS_PER_RUN 8000
#define RUNS 48

enum phase { GROW, CHURN, SHRINK };

/* One 4-byte operation record, in the format fuzz_rmap.c documents. */
static void gen_op(uint8_t *rec, enum phase ph, uint64_t *seed)
{
	uint64_t r = test_rand64(seed);
	unsigned int pct = (unsigned int)(r % 100), op;

	/* weights: add / remove / iterate / iterate+remove / walk / top-up / trim */
	static const unsigned int grow[] = { 70, 10, 3, 1, 3, 12, 1 };
	static const unsigned int churn[] = { 40, 35, 5, 5, 5, 9, 1 };
	static const unsigned int shrink[] = { 8, 70, 3, 10, 3, 5, 1 };
	static const uint8_t first_op[] = { 0, 7, 10, 11, 12, 13, 15 };
	const unsigned int *w = ph == GROW ? grow : ph == CHURN ? churn : shrink;

	op = 0;
	while (op < 6 && pct >= w[op])
		pct -= w[op++];
	rec[0] = first_op[op];
	rec[1] = (uint8_t)(r >> 8);
	rec[2] = (uint8_t)(r >> 16);
	rec[3] = (uint8_t)(r >> 24);
	if (op == 1 && (r >> 32) % 8)
		rec[1] |= 4;                     /* mostly remove entries that are there */
	if (op == 3 && (r >> 32) % 4 == 0)
		rec[2] = 0;                      /* sometimes remove everything while iterating */
	if (op == 5 && (r >> 40) % 4 == 0)
		rec[1] = (uint8_t)((rec[1] & ~0x38) | (1 + (r >> 44) % 4) << 3);  /* inject a failure */
	else if (op == 5)
		rec[1] &= (uint8_t)~0x38;
	if (op == 5 && ph != SHRINK)
		rec[2] = 8;                      /* fill the cache */
}

static void test_random_programs(void **state)
{
	static uint8_t prog[OPS_PER_RUN * 4];
	uint64_t seed = 0x7a3b9c1d2e4f6081ULL;

	(void)state;
	for (unsigned int run = 0; run < RUNS; run++) {
		for (unsigned int i = 0; i < OPS_PER_RUN; i++) {
			enum phase ph = i < OPS_PER_RUN / 3 ? GROW : i < 2 * OPS_PER_RUN / 3 ? CHURN : SHRINK;

			/* every fourth run concentrates on one head to build one long chain */
			gen_op(&prog[i * 4], ph, &seed);
			if (run % 4 == 3)
				prog[i * 4 + 1] &= (uint8_t)~3;
		}
		assert_int_equal(LLVMFuzzerTestOneInput(prog, sizeof(prog)), 0);
	}
	/* the programs reached what they are meant to reach */
	printf("model: %lu ops, peak chain %u, %lu -ENOMEM adds, %lu -ENOENT removes, %lu iterator removals, "
	       "%lu failed top-ups, %lu descriptors freed\n", fuzz_rmap_stats.ops, fuzz_rmap_stats.peak,
	       fuzz_rmap_stats.enomem, fuzz_rmap_stats.enoent, fuzz_rmap_stats.iter_removed,
	       fuzz_rmap_stats.topup_failed, fuzz_rmap_stats.descs_freed);
	assert_true(fuzz_rmap_stats.ops >= RUNS * OPS_PER_RUN);
	assert_true(fuzz_rmap_stats.peak >= 300);
	assert_true(fuzz_rmap_stats.enomem > 0 && fuzz_rmap_stats.enoent > 0 && fuzz_rmap_stats.topup_failed > 0);
	assert_true(fuzz_rmap_stats.iter_removed > 1000 && fuzz_rmap_stats.descs_freed > 100);
}

/* The committed fuzz seeds' shape, deterministic: one head to 200 entries and back. */
static void test_long_chain_program(void **state)
{
	static uint8_t prog[2000 * 4];
	unsigned int n = 0;

	(void)state;
	for (unsigned int i = 0; i < 200; i++) {
		uint8_t topup[4] = { 13, 0, 8, 0 }, add[4] = { 0, 0, (uint8_t)i, (uint8_t)(i >> 8) };

		memcpy(&prog[n], topup, 4), n += 4;
		memcpy(&prog[n], add, 4), n += 4;
	}
	for (unsigned int i = 0; i < 100; i++) {
		uint8_t walk[4] = { 12, 0, 0, 0 }, rm[4] = { 7, 4, (uint8_t)(i * 3), 0 };

		memcpy(&prog[n], rm, 4), n += 4;
		memcpy(&prog[n], walk, 4), n += 4;
	}
	{
		uint8_t all[4] = { 11, 0, 0, 0 };

		memcpy(&prog[n], all, 4), n += 4;
	}
	assert_int_equal(LLVMFuzzerTestOneInput(prog, n), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_long_chain_program),
		cmocka_unit_test(test_random_programs),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
