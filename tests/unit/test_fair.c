/* test_fair.c — VTC fair sharing, lifting, priorities/EDF/SJF inside a tenant, starvation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "scheduler/fair.h"

/* Three always-backlogged tenants, one step slot per round: served shares follow weights. */
static void
test_weighted_shares(void **state)
{
	struct fair *f = fair_new();
	const char *names[] = { "a", "b", "c" };
	uint32_t weights[] = { 1, 2, 4 };
	struct fair_item items[3];
	size_t order[3], i, round;
	uint64_t served[3] = { 0, 0, 0 }, total = 0;

	(void)state;
	for (i = 0; i < 3; i++)
		assert_int_equal(fair_set_weight(f, names[i], weights[i]), 0);
	for (round = 0; round < 7000; round++) {
		memset(items, 0, sizeof items);
		for (i = 0; i < 3; i++) {
			items[i].tenant = names[i];
			items[i].cost = 64;
			items[i].seq = i;
		}
		assert_int_equal(fair_order(f, items, 3, (int64_t)round, 0, order), 0);
		fair_charge(f, names[order[0]], 64);
		served[order[0]] += 64;
		total += 64;
	}
	for (i = 0; i < 3; i++) {
		double share = (double)served[i] / (double)total, want = weights[i] / 7.0;
		assert_true(share > want - 0.01 && share < want + 0.01);
		assert_int_equal(fair_served(f, names[i]), served[i]);
	}
	fair_free(f);
}

/* A tenant that was idle is lifted: it does not get a burst to "catch up". */
static void
test_idle_tenant_is_lifted(void **state)
{
	struct fair *f = fair_new();
	struct fair_item items[2];
	size_t order[2], i, b_first = 0;

	(void)state;
	memset(items, 0, sizeof items);
	items[0].tenant = "a";
	items[0].cost = 64;
	for (i = 0; i < 1000; i++) {
		assert_int_equal(fair_order(f, items, 1, 0, 0, order), 0);
		fair_charge(f, "a", 64);
	}
	/* b arrives after a long idle period: the two alternate instead of b taking 1000 turns. */
	items[1].tenant = "b";
	items[1].cost = 64;
	items[1].seq = 1;
	for (i = 0; i < 100; i++) {
		assert_int_equal(fair_order(f, items, 2, 0, 0, order), 0);
		b_first += order[0] == 1;
		fair_charge(f, items[order[0]].tenant, 64);
	}
	assert_true(b_first >= 45 && b_first <= 55);
	fair_free(f);
}

/* Inside one tenant: priority, then earliest deadline, then least remaining work, then age. */
static void
test_order_inside_tenant(void **state)
{
	struct fair *f = fair_new();
	struct fair_item it[5];
	size_t order[5];

	(void)state;
	memset(it, 0, sizeof it);
	for (int i = 0; i < 5; i++) {
		it[i].tenant = "t";
		it[i].cost = 64;
		it[i].seq = (uint64_t)i;
		it[i].ready_since_ms = 100 - i;
		it[i].est_remaining = 1000;
	}
	it[0].priority = 1;
	it[1].priority = 3;                 /* high priority */
	it[2].priority = 1;
	it[2].deadline_ms = 5000;           /* earliest deadline among normal */
	it[3].priority = 1;
	it[3].deadline_ms = 9000;
	it[4].priority = 1;
	it[4].est_remaining = 10;           /* shortest, no deadline */
	assert_int_equal(fair_order(f, it, 5, 200, 0, order), 0);
	assert_int_equal(order[0], 1);
	assert_int_equal(order[1], 2);
	assert_int_equal(order[2], 3);
	assert_int_equal(order[3], 4);
	assert_int_equal(order[4], 0);
	fair_free(f);
}

/* The starvation bound overrides weights and priorities. */
static void
test_starvation_bound(void **state)
{
	struct fair *f = fair_new();
	struct fair_item it[2];
	size_t order[2];

	(void)state;
	assert_int_equal(fair_set_weight(f, "big", 100), 0);
	fair_charge(f, "small", 1000000);   /* small has used a lot */
	memset(it, 0, sizeof it);
	it[0].tenant = "big";
	it[0].ready_since_ms = 9000;
	it[0].priority = 3;
	it[1].tenant = "small";
	it[1].ready_since_ms = 1000;        /* waited 9 s */
	assert_int_equal(fair_order(f, it, 2, 10000, 60000, order), 0);
	assert_int_equal(order[0], 0);      /* bound not reached: VTC decides */
	assert_int_equal(fair_order(f, it, 2, 10000, 5000, order), 0);
	assert_int_equal(order[0], 1);      /* bound reached: the starved item first */
	fair_free(f);
}

static void
test_bad_weight(void **state)
{
	struct fair *f = fair_new();

	(void)state;
	assert_int_equal(fair_set_weight(f, "x", 0), -22);
	assert_int_equal(fair_order(f, NULL, 0, 0, 0, NULL), 0);
	fair_charge(f, "x", 10);
	assert_true(fair_counter(f, "x") == 10.0);
	fair_remove(f, "x");
	assert_true(fair_counter(f, "x") == 0.0);
	fair_free(f);
}

/* The recent share forgets old traffic: after a few half-lives only new tokens count. */
static void
test_recent_share(void **state)
{
	struct fair *f = fair_new();
	double s;

	(void)state;
	assert_true(fair_recent_share(f, "a", 0) == 0);
	fair_note_served(f, "a", 1000, 0);
	fair_note_served(f, "b", 1000, 0);
	s = fair_recent_share(f, "a", 0);
	assert_true(s > 0.499 && s < 0.501);
	/* Five half-lives later b serves as much as a did: b dominates the window. */
	fair_note_served(f, "b", 1000, 5 * FAIR_WINDOW_HALF_LIFE_MS);
	s = fair_recent_share(f, "a", 5 * FAIR_WINDOW_HALF_LIFE_MS);
	assert_true(s > 0.029 && s < 0.0295);  /* 31.25 / (31.25 + 1031.25) = 0.0294 */
	assert_int_equal(fair_served(f, "a"), 0);  /* reporting only: no fair-share charge */
	fair_free(f);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_weighted_shares),
		cmocka_unit_test(test_idle_tenant_is_lifted),
		cmocka_unit_test(test_order_inside_tenant),
		cmocka_unit_test(test_starvation_bound),
		cmocka_unit_test(test_bad_weight),
		cmocka_unit_test(test_recent_share),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
