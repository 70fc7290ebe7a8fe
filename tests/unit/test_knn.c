/*
 * test_knn.c — hashed character n-gram TF-IDF cosine neighbours: known nearest neighbours on a
 * hand-made history, tie-breaking by insertion order, exclusion (leave-one-problem-out), empty
 * history and texts without n-grams.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "scheduler/knn.h"

static const char *const history[] = {
	"Find the remainder when 2^100 is divided by 7.",                       /* 0 */
	"What is the area of a circle with radius 5?",                          /* 1 */
	"Find the remainder when 3^200 is divided by 11.",                      /* 2 */
	"How many positive divisors does 360 have?",                            /* 3 */
	"A circle has radius 3. What is its circumference?",                    /* 4 */
};

static struct knn *
load(void)
{
	struct knn *k = knn_new();
	size_t i;

	assert_non_null(k);
	for (i = 0; i < sizeof history / sizeof history[0]; i++)
		assert_int_equal(knn_add(k, history[i], 100 + i), 0);
	assert_int_equal(knn_count(k), 5);
	return k;
}

static void
test_knn_nearest(void **state)
{
	struct knn *k = load();
	struct knn_hit h[3];
	size_t n;

	(void)state;
	assert_int_equal(knn_query(k, "Find the remainder when 5^100 is divided by 13.", 3, 0, 0,
	    h, &n), 0);
	assert_int_equal(n, 3);
	/* The two remainder problems first, the closer (same exponent) one ahead. */
	assert_true(h[0].tag == 100 || h[0].tag == 102);
	assert_true(h[1].tag == 100 || h[1].tag == 102);
	assert_true(h[0].tag != h[1].tag);
	assert_true(h[0].sim >= h[1].sim && h[1].sim >= h[2].sim);
	assert_true(h[1].sim > 2 * h[2].sim);
	assert_int_equal(knn_query(k, "What is the circumference of a circle of radius 5?", 2, 0,
	    0, h, &n), 0);
	assert_int_equal(n, 2);
	assert_true((h[0].tag == 101 || h[0].tag == 104) && (h[1].tag == 101 || h[1].tag == 104));
	/* Identical text (case and whitespace differences only): similarity 1. */
	assert_int_equal(knn_query(k, "  how many POSITIVE divisors\n does 360 have?", 1, 0, 0,
	    h, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(h[0].tag, 103);
	assert_true(h[0].sim > 0.999999);
	knn_free(k);
}

static void
test_knn_exclude(void **state)
{
	struct knn *k = load();
	struct knn_hit h[5];
	size_t n, i;

	(void)state;
	/* A problem is never its own neighbour when its tag is excluded. */
	assert_int_equal(knn_query(k, history[3], 5, 1, 103, h, &n), 0);
	for (i = 0; i < n; i++)
		assert_int_not_equal(h[i].tag, 103);
	assert_int_equal(knn_query(k, history[3], 5, 0, 103, h, &n), 0);
	assert_int_equal(h[0].tag, 103);
	knn_free(k);
}

static void
test_knn_ties(void **state)
{
	struct knn *k = knn_new();
	struct knn_hit h[3];
	size_t n;

	(void)state;
	/* Three identical documents: equal similarity, insertion order decides. */
	assert_int_equal(knn_add(k, "solve x + 1 = 2", 7), 0);
	assert_int_equal(knn_add(k, "solve x + 1 = 2", 5), 0);
	assert_int_equal(knn_add(k, "solve x + 1 = 2", 9), 0);
	assert_int_equal(knn_query(k, "solve x + 1 = 2", 2, 0, 0, h, &n), 0);
	assert_int_equal(n, 2);
	assert_int_equal(h[0].tag, 7);
	assert_int_equal(h[0].index, 0);
	assert_int_equal(h[1].tag, 5);
	assert_int_equal(h[1].index, 1);
	knn_free(k);
}

static void
test_knn_empty(void **state)
{
	struct knn *k = knn_new();
	struct knn_hit h[2];
	size_t n = 99;

	(void)state;
	assert_int_equal(knn_query(k, "anything at all", 2, 0, 0, h, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(knn_add(k, "ab", 1), 0);        /* no 3-gram: an empty vector */
	assert_int_equal(knn_add(k, "completely different", 2), 0);
	assert_int_equal(knn_query(k, "ab", 2, 0, 0, h, &n), 0);
	assert_int_equal(n, 0);
	assert_int_equal(knn_query(k, "zzzz qqqq", 2, 0, 0, h, &n), 0);
	assert_int_equal(n, 0);                          /* nothing shared: no hit */
	assert_int_equal(knn_query(NULL, "x", 2, 0, 0, h, &n), -EINVAL);
	assert_int_equal(knn_add(k, NULL, 1), -EINVAL);
	knn_free(k);
	knn_free(NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_knn_nearest),
		cmocka_unit_test(test_knn_exclude),
		cmocka_unit_test(test_knn_ties),
		cmocka_unit_test(test_knn_empty),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
