/* test_strmap.c — string hash map. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "lib/strmap.h"

static void
test_put_get_del(void **state)
{
	struct strmap *m = strmap_new();
	void *old = (void *)1;
	int a = 1, b = 2;

	(void)state;
	assert_non_null(m);
	assert_null(strmap_get(m, "x"));
	assert_int_equal(strmap_put(m, "x", &a, &old), 0);
	assert_null(old);
	assert_ptr_equal(strmap_get(m, "x"), &a);
	assert_int_equal(strmap_put(m, "x", &b, &old), 0);
	assert_ptr_equal(old, &a);
	assert_int_equal(strmap_count(m), 1);
	assert_ptr_equal(strmap_del(m, "x"), &b);
	assert_null(strmap_get(m, "x"));
	assert_null(strmap_del(m, "x"));
	assert_int_equal(strmap_count(m), 0);
	strmap_free(m, NULL);
}

static int
sum_cb(const char *key, void *value, void *arg)
{
	(void)key;
	*(long *)arg += (long)(intptr_t)value;
	return 0;
}

/* Growth, tombstone reuse and iteration stay consistent over many keys. */
static void
test_many_keys(void **state)
{
	struct strmap *m = strmap_new();
	char key[32];
	long i, sum = 0, want = 0;

	(void)state;
	for (i = 1; i <= 20000; i++) {
		snprintf(key, sizeof key, "p-%ld/%ld", i, i % 3);
		assert_int_equal(strmap_put(m, key, (void *)(intptr_t)i, NULL), 0);
	}
	for (i = 1; i <= 20000; i += 2) {
		snprintf(key, sizeof key, "p-%ld/%ld", i, i % 3);
		assert_ptr_equal(strmap_del(m, key), (void *)(intptr_t)i);
	}
	for (i = 1; i <= 20000; i++) {
		snprintf(key, sizeof key, "p-%ld/%ld", i, i % 3);
		if (i % 2)
			assert_null(strmap_get(m, key));
		else {
			assert_ptr_equal(strmap_get(m, key), (void *)(intptr_t)i);
			want += i;
		}
	}
	assert_int_equal(strmap_count(m), 10000);
	strmap_foreach(m, sum_cb, &sum);
	assert_int_equal(sum, want);
	/* Re-insert deleted keys: tombstones are reused, count is right. */
	for (i = 1; i <= 20000; i += 2) {
		snprintf(key, sizeof key, "p-%ld/%ld", i, i % 3);
		assert_int_equal(strmap_put(m, key, (void *)(intptr_t)i, NULL), 0);
	}
	assert_int_equal(strmap_count(m), 20000);
	strmap_free(m, NULL);
}

static void
test_free_values(void **state)
{
	struct strmap *m = strmap_new();

	(void)state;
	assert_int_equal(strmap_put(m, "a", strdup("one"), NULL), 0);
	assert_int_equal(strmap_put(m, "b", strdup("two"), NULL), 0);
	strmap_free(m, free);  /* ASan checks nothing leaks */
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_put_get_del),
		cmocka_unit_test(test_many_keys),
		cmocka_unit_test(test_free_values),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
