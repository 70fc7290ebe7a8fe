/* test_fair.c — VTC fair sharing, lifting, priorities/EDF/SJF inside a tenant, starvation. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "scheduler/fair.h"

static void queue_order(struct fair *f, const struct fair_item *items, size_t n, int64_t now,
    int64_t bound, const uint32_t *weights, size_t *order);

/* Three always-backlogged tenants, one step slot per pass: served shares follow weights. */
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
		queue_order(f, items, 3, (int64_t)round, 0, NULL, order);
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
		queue_order(f, items, 1, 0, 0, NULL, order);
		fair_charge(f, "a", 64);
	}
	/* b arrives after a long idle period: the two alternate instead of b taking 1000 turns. */
	items[1].tenant = "b";
	items[1].cost = 64;
	items[1].seq = 1;
	for (i = 0; i < 100; i++) {
		queue_order(f, items, 2, 0, 0, NULL, order);
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
	queue_order(f, it, 5, 200, 0, NULL, order);
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
	queue_order(f, it, 2, 10000, 60000, NULL, order);
	assert_int_equal(order[0], 0);      /* bound not reached: VTC decides */
	queue_order(f, it, 2, 10000, 5000, NULL, order);
	assert_int_equal(order[0], 1);      /* bound reached: the starved item first */
	fair_free(f);
}

static void
test_bad_weight(void **state)
{
	struct fair *f = fair_new();

	(void)state;
	assert_int_equal(fair_set_weight(f, "x", 0), -22);
	/* An empty queue: a pass gives nothing. */
	assert_int_equal(fair_pass_start(f, 0, 0, NULL, NULL), 0);
	assert_null(fair_pass_next(f));
	fair_pass_end(f);
	fair_charge(f, "x", 10);
	assert_true(fair_counter(f, "x") == 10.0);
	fair_remove(f, "x");
	assert_true(fair_counter(f, "x") == 0.0);
	fair_free(f);
}

/* Many tenants, some removed (the last one in the table takes the hole): every name still
 * finds its own counter and weight, a removed name starts afresh. */
static void
test_many_tenants(void **state)
{
	enum { T = 1000 };
	struct fair *f = fair_new();
	char name[16];
	size_t i;

	(void)state;
	assert_non_null(f);
	for (i = 0; i < T; i++) {
		snprintf(name, sizeof name, "tenant-%zu", i);
		assert_int_equal(fair_set_weight(f, name, (uint32_t)(1 + i % 7)), 0);
		fair_charge(f, name, 1000 * (i + 1));
	}
	for (i = 0; i < T; i += 3) {
		snprintf(name, sizeof name, "tenant-%zu", i);
		fair_remove(f, name);
	}
	/* New tenants take the freed places; the old ones are charged again after the moves:
	 * each charge lands on its own tenant. */
	for (i = 0; i < T; i += 3) {
		snprintf(name, sizeof name, "new-%zu", i);
		fair_charge(f, name, 5);
	}
	for (i = 1; i < T; i += 3) {
		snprintf(name, sizeof name, "tenant-%zu", i);
		fair_charge(f, name, 7);
	}
	for (i = 0; i < T; i++) {
		uint64_t want = 1000 * (i + 1) + (i % 3 == 1 ? 7 : 0);
		snprintf(name, sizeof name, "tenant-%zu", i);
		if (i % 3 == 0) {
			assert_true(fair_counter(f, name) == 0);
			assert_int_equal(fair_served(f, name), 0);
		} else {
			assert_true(fair_counter(f, name) == (double)want / (double)(1 + i % 7));
			assert_int_equal(fair_served(f, name), want);
		}
	}
	for (i = 0; i < T; i += 3) {
		snprintf(name, sizeof name, "new-%zu", i);
		assert_int_equal(fair_served(f, name), 5);
	}
	/* A removed name comes back with weight 1. */
	fair_charge(f, "tenant-0", 10);
	assert_true(fair_counter(f, "tenant-0") == 10);
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

/* --- the queue's order against the documented rule, by brute force --- */

static const char *const rnd_tenants[] = { "t0", "t1", "t2", "t3", "t4", "t5", "t6", "t7" };

/* Random ready items: priorities, deadlines, remaining work and ages with many ties; seq a
 * permutation.  Tenant names are fresh copies (the order must compare names, not
 * pointers). */
static void
rnd_items(unsigned *seed, struct fair_item *it, char (*names)[8], size_t n, size_t ntenants,
    int64_t now)
{
	size_t i;

	for (i = 0; i < n; i++) {
		snprintf(names[i], 8, "%s", rnd_tenants[(size_t)rand_r(seed) % ntenants]);
		it[i].tenant = names[i];
		it[i].priority = rand_r(seed) % 3;
		it[i].deadline_ms = rand_r(seed) % 3 == 0 ? now + rand_r(seed) % 4 : 0;
		it[i].ready_since_ms = now - rand_r(seed) % 20000;
		it[i].est_remaining = (uint64_t)(rand_r(seed) % 4) * 100;
		it[i].cost = rand_r(seed) % 5 == 0 ? 0 : (uint64_t)(1 + rand_r(seed) % 1000);
		it[i].seq = i;
	}
	for (i = n; i > 1; i--) {
		size_t j = (size_t)rand_r(seed) % i;
		uint64_t t = it[i - 1].seq;
		it[i - 1].seq = it[j].seq;
		it[j].seq = t;
	}
}

/* Inside a tenant (the documented rule; seq is unique). */
static int
rule_item_before(const struct fair_item *x, const struct fair_item *y)
{
	if (x->priority != y->priority)
		return x->priority > y->priority;
	if ((x->deadline_ms != 0) != (y->deadline_ms != 0))
		return x->deadline_ms != 0;
	if (x->deadline_ms != y->deadline_ms)
		return x->deadline_ms < y->deadline_ms;
	if (x->est_remaining != y->est_remaining)
		return x->est_remaining < y->est_remaining;
	if (x->ready_since_ms != y->ready_since_ms)
		return x->ready_since_ms < y->ready_since_ms;
	return x->seq < y->seq;
}

/*
 * The documented order of n items of tenants "t0".."t7", picked one at a time by brute force
 * (O(n^2)): while an item has waited >= bound, the oldest such item (ties: seq); otherwise
 * each tenant's best item by the rule above, and of those the one whose tenant has the least
 * simulated counter (ties: seq).  vc holds the tenants' counters at the start of the pass
 * (lifted); every item taken adds max(cost, 1) / weight to its tenant's.
 */
static void
rule_order(const struct fair_item *it, size_t n, int64_t now, int64_t bound,
    const double *counters, const uint32_t *weights, size_t *order)
{
	double vc[8];
	int *taken = calloc(n > 0 ? n : 1, sizeof *taken);
	size_t i, k;
	int t;

	assert_non_null(taken);
	memcpy(vc, counters, sizeof vc);
	for (k = 0; k < n; k++) {
		size_t best = n, tbest[8];
		for (i = 0; i < n; i++)
			if (!taken[i] && bound > 0 && now - it[i].ready_since_ms >= bound &&
			    (best == n || it[i].ready_since_ms < it[best].ready_since_ms ||
			    (it[i].ready_since_ms == it[best].ready_since_ms &&
			    it[i].seq < it[best].seq)))
				best = i;
		if (best == n) {
			for (t = 0; t < 8; t++)
				tbest[t] = n;
			for (i = 0; i < n; i++) {
				t = it[i].tenant[1] - '0';
				if (!taken[i] && (tbest[t] == n ||
				    rule_item_before(&it[i], &it[tbest[t]])))
					tbest[t] = i;
			}
			for (t = 0; t < 8; t++) {
				int tb;
				if (tbest[t] == n)
					continue;
				if (best == n) {
					best = tbest[t];
					continue;
				}
				tb = it[best].tenant[1] - '0';
				if (vc[t] < vc[tb] || (vc[t] == vc[tb] && it[tbest[t]].seq < it[best].seq))
					best = tbest[t];
			}
		}
		order[k] = best;
		taken[best] = 1;
		t = it[best].tenant[1] - '0';
		vc[t] += (double)(it[best].cost > 0 ? it[best].cost : 1) / weights[t];
	}
	free(taken);
}

/* The counters of t0..t7 as they stand (after fair_pass_start: lifted). */
static void
counters_of(const struct fair *f, double *vc)
{
	int t;

	for (t = 0; t < 8; t++)
		vc[t] = fair_counter(f, rnd_tenants[t]);
}

/* The queue's order of n items (queued afresh, keys as given) in one pass that takes them all
 * and charges each its cost, as indices into items.  With weights (of tenants "t0".."t7"),
 * each pick is also checked against the rule, from the counters the pass starts with (lifted
 * by fair_pass_start; lifting itself: test_idle_tenant_is_lifted). */
static void
queue_order(struct fair *f, const struct fair_item *items, size_t n, int64_t now,
    int64_t bound, const uint32_t *weights, size_t *order)
{
	struct fair_entry *e = calloc(n > 0 ? n : 1, sizeof *e), *x;
	size_t *want = calloc(n > 0 ? n : 1, sizeof *want), i;
	double vc[8];

	assert_non_null(e);
	assert_non_null(want);
	for (i = 0; i < n; i++) {
		fair_entry_init(&e[i]);
		e[i].item = items[i];
		assert_int_equal(fair_enqueue(f, &e[i]), 0);
	}
	assert_int_equal(fair_pass_start(f, now, bound, NULL, NULL), 0);
	if (weights != NULL) {
		counters_of(f, vc);
		rule_order(items, n, now, bound, vc, weights, want);
	}
	for (i = 0; i < n; i++) {
		x = fair_pass_next(f);
		assert_non_null(x);
		assert_false(fair_entry_queued(x));
		order[i] = (size_t)(x - e);
		if (weights != NULL)
			assert_int_equal(order[i], want[i]);
		fair_pass_charge(f, x, x->item.cost);
	}
	assert_null(fair_pass_next(f));
	fair_pass_end(f);
	assert_int_equal(fair_queued(f), 0);
	free(want);
	free(e);
}

/* Weights 1 and 2 and round costs, one fair object across rounds, so counters tie all the
 * time (and idle tenants are lifted onto the least counter). */
static void
test_order_rule_with_ties(void **state)
{
	static const uint32_t weights[8] = { 1, 2, 1, 1, 1, 1, 1, 1 };
	struct fair *f = fair_new();
	struct fair_item it[120];
	char names[120][8];
	size_t order[120];
	unsigned seed = 777;
	int round;

	(void)state;
	assert_non_null(f);
	assert_int_equal(fair_set_weight(f, "t1", 2), 0);
	for (round = 0; round < 300; round++) {
		size_t nt = 1 + (size_t)rand_r(&seed) % 5, n = (size_t)rand_r(&seed) % 120, i;
		int64_t now = 100000, bound = round % 4 == 0 ? 15000 : 0;
		rnd_items(&seed, it, names, n, nt, now);
		for (i = 0; i < n; i++)
			it[i].cost = (uint64_t)(rand_r(&seed) % 3) * 64;
		queue_order(f, it, n, now, bound, weights, order);
		/* what the dispatcher then serves */
		for (i = 0; i < n && i < 4; i++)
			fair_charge(f, it[order[i]].tenant, it[order[i]].cost);
	}
	fair_free(f);
}

/* Distinct weights and large random charges (counters do not tie), up to 300 items of up to
 * eight tenants, starvation bound or not. */
static void
test_order_rule_weighted(void **state)
{
	static const uint32_t weights[8] = { 1, 2, 3, 5, 7, 11, 13, 17 };
	struct fair_item it[300];
	char names[300][8];
	size_t order[300];
	unsigned seed = 12345;
	int round;

	(void)state;
	for (round = 0; round < 400; round++) {
		struct fair *f = fair_new();
		size_t nt = 1 + (size_t)rand_r(&seed) % 8, n = (size_t)rand_r(&seed) % 300, t;
		int64_t now = 100000, bound = (int64_t[]){ 0, 5000, 15000 }[rand_r(&seed) % 3];
		assert_non_null(f);
		for (t = 0; t < 8; t++)
			assert_int_equal(fair_set_weight(f, rnd_tenants[t], weights[t]), 0);
		for (t = 0; t < nt; t++)
			fair_charge(f, rnd_tenants[t], 1 + (uint64_t)rand_r(&seed) * 7919u);
		rnd_items(&seed, it, names, n, nt, now);
		queue_order(f, it, n, now, bound, weights, order);
		fair_free(f);
	}
}

/* Pass after pass, while items come (queued), go (dequeued) and are served (the first few of
 * each pass are charged; the rest are queued again), every pass follows the rule from the
 * counters it starts with. */
static void
test_queue_matches_rule(void **state)
{
	enum { N = 240 };
	static const uint32_t weights[8] = { 1, 2, 1, 1, 1, 1, 1, 1 };
	struct fair *f = fair_new();
	static struct fair_entry e[N];
	struct fair_item cur[N];
	char names[N][8];
	size_t live[N], nlive = 0, order[N], k, i, round;
	unsigned seed = 4242;
	double vc[8];
	int in[N] = { 0 };

	(void)state;
	assert_non_null(f);
	assert_int_equal(fair_set_weight(f, "t1", 2), 0);
	for (i = 0; i < N; i++)
		fair_entry_init(&e[i]);
	for (round = 0; round < 60; round++) {
		int64_t now = 100000 + (int64_t)round * 50, bound = round % 3 == 0 ? 15000 : 0;
		struct fair_entry *x;
		/* Some come, some go. */
		for (i = 0; i < N; i++) {
			int r = rand_r(&seed) % 10;
			if (!in[i] && r < 3) {
				struct fair_item it;
				rnd_items(&seed, &it, &names[i], 1, 6, now);
				it.seq = i;
				e[i].item = it;
				assert_int_equal(fair_enqueue(f, &e[i]), 0);
				assert_int_equal(fair_enqueue(f, &e[i]), -EALREADY);
				in[i] = 1;
			} else if (in[i] && r == 9) {
				fair_dequeue(f, &e[i]);
				assert_false(fair_entry_queued(&e[i]));
				in[i] = 0;
			}
		}
		nlive = 0;
		for (i = 0; i < N; i++)
			if (in[i]) {
				cur[nlive] = e[i].item;
				live[nlive++] = i;
			}
		assert_int_equal(fair_queued(f), nlive);
		if (nlive == 0)
			continue;
		assert_int_equal(fair_pass_start(f, now, bound, NULL, NULL), 0);
		counters_of(f, vc);
		rule_order(cur, nlive, now, bound, vc, weights, order);
		for (k = 0; k < nlive; k++) {
			x = fair_pass_next(f);
			assert_non_null(x);
			assert_false(fair_entry_queued(x));
			assert_ptr_equal(x, &e[live[order[k]]]);
			fair_pass_charge(f, x, x->item.cost);
		}
		assert_null(fair_pass_next(f));
		fair_pass_end(f);
		/* The first few were served; the rest wait in the queue again. */
		for (k = 0; k < nlive; k++) {
			i = live[order[k]];
			if (k < 5) {
				fair_charge(f, e[i].item.tenant, e[i].item.cost);
				in[i] = 0;
			} else {
				assert_int_equal(fair_enqueue(f, &e[i]), 0);
			}
		}
	}
	fair_free(f);
}

static int
held_t2(void *arg, const char *tenant)
{
	(void)arg;
	return strcmp(tenant, "t2") == 0;
}

/* A held tenant sits a pass out (its entries stay queued); an entry queued during a pass
 * takes part in it; a removed tenant's entries stay queued (its share is forgotten), and a
 * tenant removed without entries moves another's slot: that one's entries follow. */
static void
test_queue_held_during_and_removed(void **state)
{
	struct fair *f = fair_new();
	struct fair_entry e[6], *x;
	const char *ten[6] = { "t1", "t2", "t1", "t2", "t3", "t3" };
	size_t i;

	(void)state;
	for (i = 0; i < 6; i++) {
		fair_entry_init(&e[i]);
		e[i].item.tenant = ten[i];
		e[i].item.seq = i;
		e[i].item.ready_since_ms = 1000 + (int64_t)i;
		e[i].item.cost = 10;
	}
	for (i = 0; i < 4; i++)
		assert_int_equal(fair_enqueue(f, &e[i]), 0);
	assert_int_equal(fair_pass_start(f, 2000, 0, held_t2, NULL), 0);
	x = fair_pass_next(f);
	assert_ptr_equal(x, &e[0]);
	fair_pass_charge(f, x, 10);
	/* t3 comes during the pass with a counter of 0: it goes before t1's second. */
	assert_int_equal(fair_enqueue(f, &e[4]), 0);
	assert_ptr_equal(fair_pass_next(f), &e[4]);
	assert_ptr_equal(fair_pass_next(f), &e[2]);
	assert_null(fair_pass_next(f));   /* t2 is held */
	fair_pass_end(f);
	assert_int_equal(fair_queued(f), 2);
	assert_true(fair_entry_queued(&e[1]) && fair_entry_queued(&e[3]));
	/* t2 is removed with entries: they stay, its counter is forgotten. */
	fair_charge(f, "t2", 500);
	fair_remove(f, "t2");
	assert_true(fair_entry_queued(&e[1]) && fair_entry_queued(&e[3]));
	assert_true(fair_counter(f, "t2") == 0);
	/* t1 (index 0, no entries) is removed: t3, last in the table, moves into its slot and
	 * its entry follows. */
	assert_int_equal(fair_enqueue(f, &e[5]), 0);
	fair_remove(f, "t1");
	assert_int_equal(fair_queued(f), 3);
	assert_int_equal(fair_pass_start(f, 2000, 0, held_t2, NULL), 0);
	assert_ptr_equal(fair_pass_next(f), &e[5]);
	assert_null(fair_pass_next(f));
	fair_pass_end(f);
	fair_dequeue(f, &e[5]);   /* not queued: nothing */
	fair_dequeue(f, &e[1]);
	fair_dequeue(f, &e[3]);
	assert_int_equal(fair_queued(f), 0);
	fair_free(f);
}

static int held_asked;

static int
held_t2_counted(void *arg, const char *tenant)
{
	(void)arg;
	held_asked++;
	return strcmp(tenant, "t2") == 0;
}

/* A pass asks whether a tenant is held only of tenants with entries (many idle tenants cost
 * no calls); a tenant whose first entry comes during the pass is asked then, and sits the
 * pass out when held. */
static void
test_queue_held_asked_of_tenants_with_work(void **state)
{
	struct fair *f = fair_new();
	struct fair_entry e[3];
	const char *ten[3] = { "t1", "t2", "t3" };
	char name[16];
	size_t i;

	(void)state;
	for (i = 0; i < 500; i++) {
		snprintf(name, sizeof name, "idle-%zu", i);
		fair_charge(f, name, 1);
	}
	for (i = 0; i < 3; i++) {
		fair_entry_init(&e[i]);
		e[i].item.tenant = ten[i];
		e[i].item.seq = i;
		e[i].item.ready_since_ms = 1000;
		e[i].item.cost = 10;
	}
	assert_int_equal(fair_enqueue(f, &e[0]), 0);
	held_asked = 0;
	assert_int_equal(fair_pass_start(f, 2000, 0, held_t2_counted, NULL), 0);
	assert_int_equal(held_asked, 1);           /* t1 only */
	assert_int_equal(fair_enqueue(f, &e[1]), 0);   /* t2: held */
	assert_int_equal(fair_enqueue(f, &e[2]), 0);   /* t3 */
	assert_int_equal(held_asked, 3);
	assert_ptr_equal(fair_pass_next(f), &e[0]);
	assert_ptr_equal(fair_pass_next(f), &e[2]);
	assert_null(fair_pass_next(f));
	fair_pass_end(f);
	assert_true(fair_entry_queued(&e[1]));
	fair_dequeue(f, &e[1]);
	fair_free(f);
}

/* Starved entries come first, oldest first across tenants, whatever their counters. */
static void
test_queue_starved_first(void **state)
{
	struct fair *f = fair_new();
	struct fair_entry e[4];
	const char *ten[4] = { "a", "b", "a", "b" };
	const int64_t since[4] = { 5000, 1000, 9000, 3000 };
	size_t i;

	(void)state;
	fair_charge(f, "b", 1000000);   /* b is far ahead in service */
	for (i = 0; i < 4; i++) {
		fair_entry_init(&e[i]);
		e[i].item.tenant = ten[i];
		e[i].item.seq = i;
		e[i].item.ready_since_ms = since[i];
		e[i].item.cost = 10;
		assert_int_equal(fair_enqueue(f, &e[i]), 0);
	}
	/* At 20000 with a bound of 12000: 1000, 3000 and 5000 are starved. */
	assert_int_equal(fair_pass_start(f, 20000, 12000, NULL, NULL), 0);
	assert_ptr_equal(fair_pass_next(f), &e[1]);
	assert_ptr_equal(fair_pass_next(f), &e[3]);
	assert_ptr_equal(fair_pass_next(f), &e[0]);
	assert_ptr_equal(fair_pass_next(f), &e[2]);
	assert_null(fair_pass_next(f));
	fair_pass_end(f);
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
		cmocka_unit_test(test_many_tenants),
		cmocka_unit_test(test_order_rule_with_ties),
		cmocka_unit_test(test_order_rule_weighted),
		cmocka_unit_test(test_queue_matches_rule),
		cmocka_unit_test(test_queue_held_during_and_removed),
		cmocka_unit_test(test_queue_held_asked_of_tenants_with_work),
		cmocka_unit_test(test_queue_starved_first),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
