/* test_problevel.c — a model's learned probe-probability level (scheduler/problevel.h): a
 * chain's median over its known probes, the median over chains, the minimum-sample prior, the
 * stored form in millionths; and lib/median.h's median of an array. */
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

/* A chain counts as the median of its known probes (unknown: < 0, 0, above 1, NaN skipped);
 * a chain with none does not count; the level is the median over chains. */
static void
test_chain_median(void **state)
{
	double c1[] = { -1, 0.2, 0.9, 0.4, -1 };        /* known 0.2 0.4 0.9: 0.4 */
	double c2[] = { 0.8, 0.6 };                     /* 0.7 */
	double c3[] = { 0.95, NAN, 1.5, 0 };            /* 0.95 alone */
	double c4[] = { -1, -1 };                       /* none */
	struct problevel pl;

	(void)state;
	memset(&pl, 0, sizeof pl);
	assert_true(problevel_median(&pl) == 0);
	assert_true(problevel_add_chain(&pl, c1, 5));
	assert_true(fabs(problevel_median(&pl) - 0.4) < 1e-9);
	assert_true(problevel_add_chain(&pl, c2, 2));
	assert_true(fabs(problevel_median(&pl) - 0.55) < 1e-6);   /* (0.4 + 0.7) / 2 */
	assert_true(problevel_add_chain(&pl, c3, 4));
	assert_true(fabs(problevel_median(&pl) - 0.7) < 1e-9);
	assert_false(problevel_add_chain(&pl, c4, 2));
	assert_false(problevel_add_chain(&pl, NULL, 0));
	assert_int_equal(pl.ring.n, 3);
	assert_int_equal(pl.ring.seen, 3);
}

/* One long chain weighs as much as a short one: its median, not its probes one by one. */
static void
test_chain_weight(void **state)
{
	static double lng[400];
	double s1[] = { 0.9 }, s2[] = { 0.92 };
	struct problevel pl;
	size_t i;

	(void)state;
	memset(&pl, 0, sizeof pl);
	for (i = 0; i < 400; i++)
		lng[i] = 0.3;
	problevel_add_chain(&pl, lng, 400);
	problevel_add_chain(&pl, s1, 1);
	problevel_add_chain(&pl, s2, 1);
	assert_true(fabs(problevel_median(&pl) - 0.9) < 1e-9);
}

/* Until min_samples chains are kept the prior (the policy's model_confidence) is used;
 * min_samples 0 never learns. */
static void
test_min_samples_prior(void **state)
{
	double v[] = { 0.83 };
	struct problevel pl;
	int i;

	(void)state;
	memset(&pl, 0, sizeof pl);
	for (i = 0; i < 4; i++) {
		v[0] = 0.83;
		problevel_add_chain(&pl, v, 1);
	}
	assert_false(problevel_learned(&pl, 5));
	assert_true(problevel_value(&pl, 5, 0.6) == 0.6);
	assert_true(problevel_value(&pl, 5, 0) == 0);
	problevel_add_chain(&pl, v, 1);
	assert_true(problevel_learned(&pl, 5));
	assert_true(fabs(problevel_value(&pl, 5, 0.6) - 0.83) < 1e-9);
	assert_false(problevel_learned(&pl, 0));
	assert_true(problevel_value(&pl, 0, 0.6) == 0.6);
}

/* The stored form (millionths, the oldest first) restores the same level; invalid entries
 * (0, above a million) are skipped and the last PROBLEVEL_CAP valid ones kept; the ring
 * follows a model whose level moved. */
static void
test_restore(void **state)
{
	static uint32_t ent[PROBLEVEL_CAP + 10];
	struct problevel a, b;
	double v[1];
	uint32_t i;

	(void)state;
	memset(&a, 0, sizeof a);
	for (i = 0; i < PROBLEVEL_CAP + 10; i++) {
		v[0] = 0.5 + (double)(i % 11) / 40;
		problevel_add_chain(&a, v, 1);
	}
	assert_int_equal(a.ring.n, PROBLEVEL_CAP);
	problevel_entries(&a, ent);
	assert_int_equal(ent[0], (uint32_t)lround((0.5 + (double)(10 % 11) / 40) * 1e6));
	problevel_restore(&b, ent, a.ring.n, a.ring.seen);
	assert_true(problevel_median(&b) == problevel_median(&a));
	assert_int_equal(b.ring.seen, PROBLEVEL_CAP + 10);
	for (i = 0; i < PROBLEVEL_CAP + 10; i++)
		ent[i] = i < 12 ? 700000 : i % 2 ? 0 : i % 4 ? 2000000 : 900000;
	problevel_restore(&b, ent, PROBLEVEL_CAP + 10, 0);
	/* valid: 12 at 0.7 and every 4th of the rest at 0.9: (PROBLEVEL_CAP - 2) / 4 = 127 */
	assert_int_equal(b.ring.n, 12 + (PROBLEVEL_CAP + 10 - 12 + 3) / 4);
	assert_true(fabs(problevel_median(&b) - 0.9) < 1e-9);
	for (i = 0; i < PROBLEVEL_CAP; i++)
		ent[i] = 600000;
	ent[0] = 100000;
	problevel_restore(&b, ent, PROBLEVEL_CAP, 0);
	assert_int_equal(b.ring.n, PROBLEVEL_CAP);
	for (i = 0; i < PROBLEVEL_CAP; i++) {
		v[0] = 0.95;
		problevel_add_chain(&b, v, 1);
	}
	assert_true(fabs(problevel_median(&b) - 0.95) < 1e-9);   /* nothing old is left */
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_median_doubles),
		cmocka_unit_test(test_chain_median),
		cmocka_unit_test(test_chain_weight),
		cmocka_unit_test(test_min_samples_prior),
		cmocka_unit_test(test_restore),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
