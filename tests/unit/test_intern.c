/* test_intern.c — process-wide interned strings. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <cmocka.h>

#include "lib/intern.h"

/* Equal strings give one pointer (whatever buffer they come from), different ones differ,
 * and the copy does not alias the caller's buffer. */
static void
test_equal_strings_share_a_pointer(void **state)
{
	char a[16], b[16];
	const char *x, *y, *z;

	(void)state;
	intern_free();
	snprintf(a, sizeof a, "tenant-%d", 7);
	snprintf(b, sizeof b, "tenant-%d", 7);
	x = intern_str(a);
	y = intern_str(b);
	assert_non_null(x);
	assert_ptr_equal(x, y);
	assert_ptr_not_equal(x, a);
	assert_string_equal(x, "tenant-7");
	a[0] = 'X';   /* the caller's buffer changing does not change the interned copy */
	assert_string_equal(x, "tenant-7");
	z = intern_str("tenant-8");
	assert_non_null(z);
	assert_ptr_not_equal(x, z);
	assert_ptr_equal(intern_str(""), intern_str(""));
	assert_int_equal(intern_count(), 3);
	intern_free();
	assert_int_equal(intern_count(), 0);
}

#define THREADS 4
#define NAMES 200

static void *
intern_many(void *arg)
{
	const char **out = arg;
	char name[32];
	int i;

	for (i = 0; i < NAMES; i++) {
		snprintf(name, sizeof name, "t%d", i);
		out[i] = intern_str(name);
	}
	return NULL;
}

/* Threads interning the same names at once get the same pointers. */
static void
test_threads_agree(void **state)
{
	static const char *got[THREADS][NAMES];
	pthread_t th[THREADS];
	int i, k;

	(void)state;
	intern_free();
	for (k = 0; k < THREADS; k++)
		assert_int_equal(pthread_create(&th[k], NULL, intern_many, got[k]), 0);
	for (k = 0; k < THREADS; k++)
		pthread_join(th[k], NULL);
	for (i = 0; i < NAMES; i++) {
		char name[32];
		snprintf(name, sizeof name, "t%d", i);
		assert_non_null(got[0][i]);
		assert_string_equal(got[0][i], name);
		for (k = 1; k < THREADS; k++)
			assert_ptr_equal(got[k][i], got[0][i]);
	}
	assert_int_equal(intern_count(), NAMES);
	intern_free();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_equal_strings_share_a_pointer),
		cmocka_unit_test(test_threads_agree),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
