/* test_chainlen.c — a model's learned chain length (scheduler/chainlen.h): the median of a
 * known stream, the ring keeping the last chains, the minimum-sample prior, which endings
 * count, and the stored form. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "scheduler/chainlen.h"
#include "scheduler/sched.h"

/* The median of a known stream: odd and even counts (the rounded mean of the two middle
 * ones, as certa-eval's evalsim_model_expected), in any arrival order. */
static void
test_median_known_stream(void **state)
{
	static const uint64_t stream[] = { 9000, 1000, 5000, 3000, 7000 };
	struct chainlen c;
	size_t i;

	(void)state;
	memset(&c, 0, sizeof c);
	assert_int_equal(chainlen_median(&c), 0);
	for (i = 0; i < sizeof stream / sizeof stream[0]; i++)
		chainlen_add(&c, stream[i]);
	assert_int_equal(c.ring.n, 5);
	assert_int_equal(chainlen_median(&c), 5000);
	chainlen_add(&c, 6001);        /* 1000 3000 5000 6001 7000 9000 */
	assert_int_equal(chainlen_median(&c), 5501);
	chainlen_add(&c, 0);           /* ignored: no chain */
	assert_int_equal(c.ring.n, 6);
	assert_int_equal(c.ring.seen, 6);
	chainlen_add(&c, (uint64_t)1 << 40);   /* clamped, still the longest */
	assert_int_equal(chainlen_median(&c), 6001);
}

/* Bounded memory: the ring keeps the last CHAINLEN_CAP chains, so a model whose lengths moved
 * (traffic mix) is followed: the median is the new one once the old chains are overwritten. */
static void
test_ring_keeps_last(void **state)
{
	struct chainlen c;
	uint32_t i;

	(void)state;
	memset(&c, 0, sizeof c);
	for (i = 0; i < CHAINLEN_CAP; i++)
		chainlen_add(&c, 2000 + i % 7);
	assert_int_equal(chainlen_median(&c), 2003);
	for (i = 0; i < CHAINLEN_CAP / 2 + 1; i++)
		chainlen_add(&c, 8000);
	assert_int_equal(c.ring.n, CHAINLEN_CAP);
	assert_int_equal(c.ring.seen, CHAINLEN_CAP + CHAINLEN_CAP / 2 + 1);
	assert_int_equal(chainlen_median(&c), 8000);   /* the majority is new */
	for (i = 0; i < CHAINLEN_CAP; i++)
		chainlen_add(&c, 4000);
	assert_int_equal(chainlen_median(&c), 4000);   /* nothing old is left */
}

/* Until min_samples chains are kept the prior (the policy's model_tokens; 0: absolute
 * bounds) is used, then the median; min_samples 0 never learns. */
static void
test_min_samples_prior(void **state)
{
	struct chainlen c;
	uint32_t i;

	(void)state;
	memset(&c, 0, sizeof c);
	for (i = 0; i < 19; i++)
		chainlen_add(&c, 6000);
	assert_false(chainlen_learned(&c, 20));
	assert_int_equal(chainlen_tokens(&c, 20, 2763), 2763);
	assert_int_equal(chainlen_tokens(&c, 20, 0), 0);
	chainlen_add(&c, 6000);
	assert_true(chainlen_learned(&c, 20));
	assert_int_equal(chainlen_tokens(&c, 20, 2763), 6000);
	assert_int_equal(chainlen_tokens(&c, 20, 0), 6000);
	assert_false(chainlen_learned(&c, 0));
	assert_int_equal(chainlen_tokens(&c, 0, 2763), 2763);
}

/* Natural ends and the length bounds count; certainty stops (an arbitrary cut below the
 * median) and endings a client or a fault made do not. */
static void
test_counted_endings(void **state)
{
	(void)state;
	assert_true(chainlen_counts(SCHED_REASON_NATURAL_END));
	assert_true(chainlen_counts(SCHED_REASON_UNPROMISING));
	assert_true(chainlen_counts(SCHED_REASON_BUDGET));
	assert_false(chainlen_counts(SCHED_REASON_CERTAIN));
	assert_false(chainlen_counts(SCHED_REASON_CANCELLED));
	assert_false(chainlen_counts(SCHED_REASON_FAILED));
	assert_false(chainlen_counts(SCHED_REASON_DEADLINE));
	assert_false(chainlen_counts(SCHED_REASON_NONE));
}

/* The stored form (entries, the oldest first, and the count) restores the same ring: the same
 * median, and the same one after more chains (the oldest is overwritten first). */
static void
test_entries_restore(void **state)
{
	static uint32_t ent[CHAINLEN_CAP + 3], more[CHAINLEN_CAP + 3];
	struct chainlen a, b;
	uint32_t i;

	(void)state;
	memset(&a, 0, sizeof a);
	for (i = 0; i < CHAINLEN_CAP + 3; i++)
		chainlen_add(&a, 1000 + (i * 37) % 5000);
	chainlen_entries(&a, ent);
	assert_int_equal(ent[0], 1000 + (3 * 37) % 5000);   /* the oldest kept */
	chainlen_restore(&b, ent, a.ring.n, a.ring.seen);
	assert_int_equal(b.ring.n, a.ring.n);
	assert_int_equal(b.ring.seen, a.ring.seen);
	assert_int_equal(chainlen_median(&b), chainlen_median(&a));
	for (i = 0; i < 100; i++) {
		chainlen_add(&a, 9000);
		chainlen_add(&b, 9000);
	}
	assert_int_equal(chainlen_median(&b), chainlen_median(&a));
	chainlen_entries(&b, more);
	chainlen_entries(&a, ent);
	assert_memory_equal(ent, more, a.ring.n * sizeof *ent);
	/* more entries than the ring holds: the last ones are kept */
	for (i = 0; i < CHAINLEN_CAP + 3; i++)
		more[i] = i < 3 ? 1 : 5000;
	chainlen_restore(&b, more, CHAINLEN_CAP + 3, 0);
	assert_int_equal(b.ring.n, CHAINLEN_CAP);
	assert_int_equal(b.ring.seen, CHAINLEN_CAP);
	assert_int_equal(chainlen_median(&b), 5000);
}

static int
cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* The kept median (a sorted copy updated on each add) equals the median of a sort of the ring
 * after every add, on random streams with many repeats, across wrap-arounds of the ring and
 * after a restore; the sorted copy holds exactly the ring's values. */
static void
test_median_equals_sort(void **state)
{
	static uint32_t v[CHAINLEN_CAP], ent[CHAINLEN_CAP];
	struct chainlen c, r;
	uint64_t want;
	uint32_t i, k, n, range;
	unsigned seed = 17;

	(void)state;
	for (range = 3; range <= 30000; range *= 13) {
		memset(&c, 0, sizeof c);
		for (i = 0; i < 3 * CHAINLEN_CAP + 7; i++) {
			chainlen_add(&c, 1 + (uint64_t)(rand_r(&seed) % range));
			n = c.ring.n;
			memcpy(v, c.ring.val, n * sizeof *v);
			qsort(v, n, sizeof *v, cmp_u32);
			want = n % 2 ? v[n / 2] : ((uint64_t)v[n / 2 - 1] + v[n / 2] + 1) / 2;
			assert_int_equal(chainlen_median(&c), want);
			for (k = 0; k < n; k++)
				assert_int_equal(c.ring.sorted[k], v[k]);
		}
		chainlen_entries(&c, ent);
		chainlen_restore(&r, ent, c.ring.n, c.ring.seen);
		assert_memory_equal(r.ring.sorted, c.ring.sorted, c.ring.n * sizeof *c.ring.sorted);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_median_known_stream),
		cmocka_unit_test(test_ring_keeps_last),
		cmocka_unit_test(test_min_samples_prior),
		cmocka_unit_test(test_counted_endings),
		cmocka_unit_test(test_entries_restore),
		cmocka_unit_test(test_median_equals_sort),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
