/* test_array.c — the shared small things of lib/: growing arrays, FNV-1a, hex. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "lib/array.h"
#include "lib/hash.h"
#include "lib/hex.h"

static void
test_grow(void **state)
{
	uint32_t *a = NULL;
	size_t n = 0, cap = 0, i;

	(void)state;
	for (i = 0; i < 1000; i++) {
		assert_int_equal(ARRAY_GROW(a, cap, n + 1), 0);
		assert_true(cap >= n + 1);
		a[n++] = (uint32_t)i;
	}
	for (i = 0; i < n; i++)
		assert_int_equal(a[i], i);
	/* Doubling: 1000 pushes need few reallocations, capacity at most 2x the need. */
	assert_true(cap >= 1000 && cap <= 2048);
	/* Growing to what is there already is a no-op. */
	{
		uint32_t *before = a;
		size_t c = cap;
		assert_int_equal(ARRAY_GROW(a, cap, 10), 0);
		assert_ptr_equal(a, before);
		assert_int_equal(cap, c);
	}
	/* A jump straight to a large need. */
	assert_int_equal(ARRAY_GROW(a, cap, 100000), 0);
	assert_true(cap >= 100000);
	assert_int_equal(a[999], 999);
	free(a);
}

static void
test_grow_overflow(void **state)
{
	uint64_t *a = NULL;
	size_t cap = 0;

	(void)state;
	/* need * elem does not fit: refused, nothing changed. */
	assert_int_equal(ARRAY_GROW(a, cap, SIZE_MAX / 4), -EOVERFLOW);
	assert_null(a);
	assert_int_equal(cap, 0);
	assert_int_equal(ARRAY_GROW(a, cap, 4), 0);
	a[3] = 7;
#ifndef __SANITIZE_ADDRESS__
	/* Fits size_t but not memory: -ENOMEM, array untouched.  (ASan aborts on such a
	 * request instead of returning NULL.) */
	assert_int_equal(ARRAY_GROW(a, cap, (size_t)1 << 58), -ENOMEM);   /* 2 EiB */
	assert_int_equal(cap, 8);
	assert_int_equal(a[3], 7);
#endif
	free(a);
}

static void
test_fnv1a(void **state)
{
	(void)state;
	/* Published FNV-1a 64 test vectors. */
	assert_true(hash_fnv1a("", 0, HASH_FNV1A_BASIS) == 0xcbf29ce484222325ULL);
	assert_true(hash_fnv1a("a", 1, HASH_FNV1A_BASIS) == 0xaf63dc4c8601ec8cULL);
	assert_true(hash_fnv1a("foobar", 6, HASH_FNV1A_BASIS) == 0x85944171f73967e8ULL);
	/* Chaining hashes a concatenation. */
	assert_true(hash_fnv1a("bar", 3, hash_fnv1a("foo", 3, HASH_FNV1A_BASIS)) ==
	    hash_fnv1a("foobar", 6, HASH_FNV1A_BASIS));
}

static void
test_hex(void **state)
{
	const uint8_t b[] = { 0x00, 0x7f, 0x80, 0xab, 0xff };
	uint8_t back[5];
	char s[11];

	(void)state;
	hex_encode(b, sizeof b, s);
	assert_string_equal(s, "007f80abff");
	assert_int_equal(hex_decode("007F80ABff", 5, back), 0);
	assert_memory_equal(back, b, sizeof b);
	assert_int_equal(hex_decode("00zz", 2, back), -EINVAL);
	hex_encode(b, 0, s);
	assert_string_equal(s, "");
}

int
main(void)
{
	static const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_grow),
		cmocka_unit_test(test_grow_overflow),
		cmocka_unit_test(test_fnv1a),
		cmocka_unit_test(test_hex),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
