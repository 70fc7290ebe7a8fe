/* test_problevel.c — a model's learned probe-probability level (scheduler/problevel.h): which
 * probabilities are known, the median over chains in millionths (clamped below 1), the
 * minimum-sample prior, the stored form; and lib/median.h's median of an array. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "lib/median.h"
#include "scheduler/problevel.h"

/* median_doubles: odd and even counts, any order, none. */
static void
test_median_doubles(void **state)
{
	double a[] = { 0.9, 0.1, 0.5 }, b[] = { 4, 1, 3, 2 }, c[] = { 7 };

	(void)state;
	assert_true(median_doubles(a, 3) == 0.5);
	assert_true(a[0] == 0.1 && a[2] == 0.9);   /* sorted in place */
	assert_true(median_doubles(b, 4) == 2.5);
	assert_true(median_doubles(c, 1) == 7);
	assert_true(median_doubles(c, 0) == -1);
}

/* Known: (0, 1]; unknown ones (< 0, 0 from a worker that never sets it, above 1, NaN) do not
 * count.  The level is the median over the counted chains, kept in millionths and below 1. */
static void
test_known_median(void **state)
{
	struct problevel pl;

	(void)state;
	assert_true(problevel_known(0.5) && problevel_known(1) && problevel_known(1e-9));
	assert_false(problevel_known(-1) || problevel_known(0) || problevel_known(1.5) ||
	    problevel_known(NAN));
	memset(&pl, 0, sizeof pl);
	assert_true(problevel_median(&pl) == 0);
	assert_true(problevel_add(&pl, 0.4));
	assert_true(fabs(problevel_median(&pl) - 0.4) < 1e-9);
	assert_true(problevel_add(&pl, 0.7));
	assert_true(fabs(problevel_median(&pl) - 0.55) < 1e-9);   /* (0.4 + 0.7) / 2 */
	assert_true(problevel_add(&pl, 0.95));
	assert_true(fabs(problevel_median(&pl) - 0.7) < 1e-9);
	assert_false(problevel_add(&pl, -1));
	assert_false(problevel_add(&pl, 0));
	assert_false(problevel_add(&pl, NAN));
	assert_int_equal(pl.ring.n, 3);
	assert_int_equal(pl.ring.seen, 3);
	/* a level of 1 would be out of the policy key's range [0, 1): kept below it */
	memset(&pl, 0, sizeof pl);
	assert_true(problevel_add(&pl, 1));
	assert_true(problevel_add(&pl, 0.9999999));
	assert_true(problevel_median(&pl) < 1);
	assert_true(fabs(problevel_median(&pl) - 0.999999) < 1e-12);
	assert_true(problevel_add(&pl, 1e-9));   /* and above 0 (0 means 0.5) */
	assert_true(problevel_add(&pl, 1e-9));
	assert_true(problevel_add(&pl, 1e-9));
	assert_true(problevel_median(&pl) > 0);
}

/* Until min_samples chains are kept the prior (the policy's model_confidence) is used;
 * min_samples 0 never learns. */
static void
test_min_samples_prior(void **state)
{
	struct problevel pl;
	int i;

	(void)state;
	memset(&pl, 0, sizeof pl);
	for (i = 0; i < 4; i++)
		problevel_add(&pl, 0.83);
	assert_false(problevel_learned(&pl, 5));
	assert_true(problevel_value(&pl, 5, 0.6) == 0.6);
	assert_true(problevel_value(&pl, 5, 0) == 0);
	problevel_add(&pl, 0.83);
	assert_true(problevel_learned(&pl, 5));
	assert_true(fabs(problevel_value(&pl, 5, 0.6) - 0.83) < 1e-9);
	assert_false(problevel_learned(&pl, 0));
	assert_true(problevel_value(&pl, 0, 0.6) == 0.6);
}

/* The stored form (millionths, the oldest first) restores the same level; invalid entries
 * (0, a million and above) are skipped and the last PROBLEVEL_CAP valid ones kept; the ring
 * follows a model whose level moved. */
static void
test_restore(void **state)
{
	static uint32_t ent[2 * PROBLEVEL_CAP + 10];
	struct problevel a, b;
	uint32_t i;

	(void)state;
	memset(&a, 0, sizeof a);
	for (i = 0; i < PROBLEVEL_CAP + 10; i++)
		problevel_add(&a, 0.5 + (double)(i % 11) / 40);
	assert_int_equal(a.ring.n, PROBLEVEL_CAP);
	problevel_entries(&a, ent);
	assert_int_equal(ent[0], (uint32_t)lround((0.5 + (double)(10 % 11) / 40) * 1e6));
	problevel_restore(&b, ent, a.ring.n, a.ring.seen);
	assert_true(problevel_median(&b) == problevel_median(&a));
	assert_int_equal(b.ring.seen, PROBLEVEL_CAP + 10);
	/* valid: 12 at 0.7 and every 4th of the rest at 0.9 (12, 16, ..., 520: 128) */
	for (i = 0; i < PROBLEVEL_CAP + 10; i++)
		ent[i] = i < 12 ? 700000 : i % 2 ? 0 : i % 4 ? 1000000 : 900000;
	problevel_restore(&b, ent, PROBLEVEL_CAP + 10, 0);
	assert_int_equal(b.ring.n, 12 + 128);
	assert_int_equal(b.ring.seen, 12 + 128);
	assert_true(fabs(problevel_median(&b) - 0.9) < 1e-9);
	/* more valid entries than the ring holds, invalid ones among the last: the last
	 * PROBLEVEL_CAP valid ones, the oldest valid ones (0.1) dropped */
	for (i = 0; i < 2 * PROBLEVEL_CAP + 10; i++)
		ent[i] = i < PROBLEVEL_CAP ? 100000 : i % 3 == 0 ? 2000000 : 600000;
	problevel_restore(&b, ent, 2 * PROBLEVEL_CAP + 10, 7);
	assert_int_equal(b.ring.n, PROBLEVEL_CAP);
	assert_int_equal(b.ring.seen, PROBLEVEL_CAP);
	assert_true(fabs(problevel_median(&b) - 0.6) < 1e-9);
	problevel_entries(&b, ent);
	for (i = 0; i < PROBLEVEL_CAP; i++)
		if (ent[i] != 600000 && ent[i] != 100000)
			fail_msg("entry %u: %u", i, ent[i]);
	for (i = 0; i < PROBLEVEL_CAP; i++)
		problevel_add(&b, 0.95);
	assert_true(fabs(problevel_median(&b) - 0.95) < 1e-9);   /* nothing old is left */
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_median_doubles),
		cmocka_unit_test(test_known_median),
		cmocka_unit_test(test_min_samples_prior),
		cmocka_unit_test(test_restore),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
