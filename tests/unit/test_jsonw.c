/* test_jsonw.c — unit tests for lib/jsonw: escaping, UTF-8 handling, numbers, structure, misuse. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib/jsonw.h"

static int
setup(void **state)
{
	struct jsonw *w;

	if (jsonw_new(&w) != 0)
		return -1;
	*state = w;
	return 0;
}

static int
teardown(void **state)
{
	jsonw_free(*state);
	return 0;
}

/* The document must be complete, error-free and equal to want. */
static void
expect_doc(struct jsonw *w, const char *want)
{
	size_t len = 0;
	const char *got = jsonw_data(w, &len);

	assert_int_equal(jsonw_error(w), 0);
	assert_non_null(got);
	assert_string_equal(got, want);
	assert_int_equal(len, strlen(want));
}

/* Writes s[0..n) as a lone string value and compares the JSON text. */
static void
check_string(struct jsonw *w, const char *s, size_t n, const char *want)
{
	jsonw_reset(w);
	jsonw_stringn(w, s, n);
	expect_doc(w, want);
}

#define EXPECT_STR(w, lit, want) check_string((w), (lit), sizeof(lit) - 1, (want))

static void
test_escapes(void **state)
{
	struct jsonw *w = *state;

	EXPECT_STR(w, "", "\"\"");
	EXPECT_STR(w, "plain text 123", "\"plain text 123\"");
	EXPECT_STR(w, "say \"hi\"", "\"say \\\"hi\\\"\"");
	EXPECT_STR(w, "\\frac{1}{2}", "\"\\\\frac{1}{2}\"");
	EXPECT_STR(w, "a\nb\tc\rd\be\ff", "\"a\\nb\\tc\\rd\\be\\ff\"");
	EXPECT_STR(w, "nul\0byte", "\"nul\\u0000byte\"");
	EXPECT_STR(w, "\x01\x1f\x1b[31m", "\"\\u0001\\u001f\\u001b[31m\"");
	/* '/' and DEL need no escape. */
	EXPECT_STR(w, "a/b\x7f", "\"a/b\x7f\"");
}

/* Every control character gets an escape that is exactly 2 or 6 characters long. */
static void
test_all_control_chars(void **state)
{
	struct jsonw *w = *state;
	char in[1], want[16];
	unsigned c;

	for (c = 0; c < 0x20; c++) {
		in[0] = (char)c;
		switch (c) {
		case '\b': snprintf(want, sizeof want, "\"\\b\""); break;
		case '\f': snprintf(want, sizeof want, "\"\\f\""); break;
		case '\n': snprintf(want, sizeof want, "\"\\n\""); break;
		case '\r': snprintf(want, sizeof want, "\"\\r\""); break;
		case '\t': snprintf(want, sizeof want, "\"\\t\""); break;
		default:   snprintf(want, sizeof want, "\"\\u%04x\"", c); break;
		}
		check_string(w, in, 1, want);
	}
}

static void
test_utf8_passthrough(void **state)
{
	struct jsonw *w = *state;

	EXPECT_STR(w, "caf\xc3\xa9", "\"caf\xc3\xa9\"");                      /* U+00E9 */
	EXPECT_STR(w, "\xe6\xbc\xa2\xe5\xad\x97", "\"\xe6\xbc\xa2\xe5\xad\x97\"");  /* CJK */
	EXPECT_STR(w, "\xf0\x9f\x98\x80", "\"\xf0\x9f\x98\x80\"");            /* U+1F600 */
	EXPECT_STR(w, "\xf4\x8f\xbf\xbf", "\"\xf4\x8f\xbf\xbf\"");            /* U+10FFFF */
	EXPECT_STR(w, "\xe2\x80\xa8", "\"\xe2\x80\xa8\"");                    /* U+2028 */
	EXPECT_STR(w, "\xc2\x80", "\"\xc2\x80\"");                            /* U+0080 */
}

/* Invalid bytes become U+FFFD one at a time; what follows them is kept. */
static void
test_utf8_invalid(void **state)
{
	struct jsonw *w = *state;

	EXPECT_STR(w, "\xff", "\"\xef\xbf\xbd\"");
	EXPECT_STR(w, "a\x80z", "\"a\xef\xbf\xbdz\"");                          /* stray cont. */
	EXPECT_STR(w, "\xc3", "\"\xef\xbf\xbd\"");                              /* truncated */
	EXPECT_STR(w, "\xe6\xbc", "\"\xef\xbf\xbd\xef\xbf\xbd\"");              /* truncated */
	EXPECT_STR(w, "\xc0\x80", "\"\xef\xbf\xbd\xef\xbf\xbd\"");              /* overlong NUL */
	EXPECT_STR(w, "\xe0\x80\xaf", "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\""); /* overlong */
	EXPECT_STR(w, "\xed\xa0\x80", "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\""); /* surrogate */
	EXPECT_STR(w, "\xf4\x90\x80\x80",
	    "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"");               /* > U+10FFFF */
	/* A quote after a truncated lead byte is still escaped, not swallowed. */
	EXPECT_STR(w, "\xe6\"", "\"\xef\xbf\xbd\\\"\"");
}

static void
test_numbers(void **state)
{
	struct jsonw *w = *state;

	jsonw_array_begin(w);
	jsonw_int(w, 0);
	jsonw_int(w, -42);
	jsonw_int(w, INT64_MIN);
	jsonw_int(w, INT64_MAX);
	jsonw_uint(w, UINT64_MAX);
	jsonw_double(w, 0.42);
	jsonw_double(w, 0.1 + 0.2);
	jsonw_double(w, 1.0);
	jsonw_double(w, -2.5e-300);
	jsonw_double(w, 1e300);
	jsonw_double(w, NAN);
	jsonw_double(w, INFINITY);
	jsonw_double(w, -INFINITY);
	jsonw_bool(w, true);
	jsonw_bool(w, false);
	jsonw_null(w);
	jsonw_array_end(w);
	expect_doc(w, "[0,-42,-9223372036854775808,9223372036854775807,18446744073709551615,"
	    "0.42,0.30000000000000004,1,-2.5e-300,1e+300,null,null,null,true,false,null]");
}

static void
test_structure(void **state)
{
	struct jsonw *w = *state;

	jsonw_object_begin(w);
	jsonw_kstring(w, "event", "progress");
	jsonw_kuint(w, "tokens_used", 1280);
	jsonw_kdouble(w, "certaindex", 0.5);
	jsonw_kstring(w, "answer", NULL);
	jsonw_key(w, "requests");
	jsonw_array_begin(w);
	jsonw_object_begin(w);
	jsonw_kint(w, "index", 0);
	jsonw_kbool(w, "finished", true);
	jsonw_knull(w, "reason");
	jsonw_object_end(w);
	jsonw_object_begin(w);
	jsonw_object_end(w);
	jsonw_array_end(w);
	jsonw_key(w, "empty");
	jsonw_array_begin(w);
	jsonw_array_end(w);
	jsonw_key(w, "k\"ey");
	jsonw_array_begin(w);
	jsonw_array_begin(w);
	jsonw_string(w, "x");
	jsonw_array_end(w);
	jsonw_string(w, "y");
	jsonw_array_end(w);
	jsonw_object_end(w);
	expect_doc(w, "{\"event\":\"progress\",\"tokens_used\":1280,\"certaindex\":0.5,"
	    "\"answer\":null,\"requests\":[{\"index\":0,\"finished\":true,\"reason\":null},{}],"
	    "\"empty\":[],\"k\\\"ey\":[[\"x\"],\"y\"]}");
}

/* reset makes the writer reusable for the next JSON line, also after an error. */
static void
test_reset(void **state)
{
	struct jsonw *w = *state;
	char big[5000];

	memset(big, 'a', sizeof big);
	jsonw_stringn(w, big, sizeof big);   /* grows the buffer */
	assert_non_null(jsonw_data(w, NULL));
	jsonw_reset(w);
	assert_null(jsonw_data(w, NULL));     /* empty: not a document */
	jsonw_object_end(w);
	assert_int_equal(jsonw_error(w), -EINVAL);
	jsonw_reset(w);
	jsonw_object_begin(w);
	jsonw_object_end(w);
	expect_doc(w, "{}");
}

/* Each misuse sets -EINVAL and makes jsonw_data() return NULL. */
static void
test_misuse(void **state)
{
	struct jsonw *w = *state;
	int i;

	/* value in an object without a key */
	jsonw_reset(w);
	jsonw_object_begin(w);
	jsonw_int(w, 1);
	assert_int_equal(jsonw_error(w), -EINVAL);
	assert_null(jsonw_data(w, NULL));

	/* key in an array, key at top level, NULL key */
	jsonw_reset(w);
	jsonw_array_begin(w);
	jsonw_key(w, "k");
	assert_int_equal(jsonw_error(w), -EINVAL);
	jsonw_reset(w);
	jsonw_key(w, "k");
	assert_int_equal(jsonw_error(w), -EINVAL);
	jsonw_reset(w);
	jsonw_object_begin(w);
	jsonw_key(w, NULL);
	assert_int_equal(jsonw_error(w), -EINVAL);

	/* two keys in a row; end with a dangling key */
	jsonw_reset(w);
	jsonw_object_begin(w);
	jsonw_key(w, "a");
	jsonw_key(w, "b");
	assert_int_equal(jsonw_error(w), -EINVAL);
	jsonw_reset(w);
	jsonw_object_begin(w);
	jsonw_key(w, "a");
	jsonw_object_end(w);
	assert_int_equal(jsonw_error(w), -EINVAL);

	/* mismatched end */
	jsonw_reset(w);
	jsonw_array_begin(w);
	jsonw_object_end(w);
	assert_int_equal(jsonw_error(w), -EINVAL);

	/* a second top-level value */
	jsonw_reset(w);
	jsonw_int(w, 1);
	jsonw_int(w, 2);
	assert_int_equal(jsonw_error(w), -EINVAL);

	/* incomplete document: no error, but no data either */
	jsonw_reset(w);
	jsonw_array_begin(w);
	assert_int_equal(jsonw_error(w), 0);
	assert_null(jsonw_data(w, NULL));

	/* too deep */
	jsonw_reset(w);
	for (i = 0; i < JSONW_MAX_DEPTH; i++)
		jsonw_array_begin(w);
	assert_int_equal(jsonw_error(w), 0);
	jsonw_array_begin(w);
	assert_int_equal(jsonw_error(w), -EINVAL);

	/* errors are sticky: nothing more is written */
	jsonw_array_end(w);
	assert_int_equal(jsonw_error(w), -EINVAL);
	assert_null(jsonw_data(w, NULL));
}

/* Random bytes always give a quoted string with no raw control character, '"' only escaped,
 * and valid UTF-8 (checked with the same rules, independently written). */
static void
test_random_bytes(void **state)
{
	struct jsonw *w = *state;
	unsigned char in[64];
	const unsigned char *p;
	size_t len, i, k, n;
	unsigned seed = 12345;
	int iter;

	for (iter = 0; iter < 20000; iter++) {
		n = (size_t)(iter % 64);
		for (i = 0; i < n; i++) {
			seed = seed * 1103515245u + 12345u;
			in[i] = (unsigned char)(seed >> 16);
		}
		jsonw_reset(w);
		jsonw_stringn(w, (const char *)in, n);
		p = (const unsigned char *)jsonw_data(w, &len);
		assert_non_null(p);
		assert_true(len >= 2 && p[0] == '"' && p[len - 1] == '"');
		for (i = 1; i < len - 1; i++) {
			assert_true(p[i] >= 0x20);
			if (p[i] == '\\') {
				i++;
				assert_true(i < len - 1);
				assert_non_null(strchr("\"\\bfnrtu", p[i]));
				continue;
			}
			assert_true(p[i] != '"');
			if (p[i] < 0x80)
				continue;
			k = p[i] >= 0xf0 ? 4 : p[i] >= 0xe0 ? 3 : 2;
			assert_true(p[i] >= 0xc2 && p[i] <= 0xf4);
			assert_true(i + k <= len - 1);
			for (; k > 1; k--)
				assert_true((p[++i] & 0xc0) == 0x80);
		}
	}
}

/* jsonw_utf8(): lengths and code points of valid sequences, 0 for what jsonw replaces. */
static void
test_utf8_decode(void **state)
{
	static const struct {
		const char *s;
		size_t n, len;
		unsigned cp;
	} cases[] = {
		{ "\xc3\xa9", 2, 2, 0xe9 },
		{ "\xc2\x80", 2, 2, 0x80 },
		{ "\xe2\x82\xac", 3, 3, 0x20ac },
		{ "\xef\xbf\xbf", 3, 3, 0xffff },
		{ "\xf0\x9f\x98\x80", 4, 4, 0x1f600 },
		{ "\xf4\x8f\xbf\xbf", 4, 4, 0x10ffff },
		{ "\x80", 1, 0, 0 },                 /* stray continuation byte */
		{ "\xc0\xaf", 2, 0, 0 },             /* overlong */
		{ "\xe0\x80\xaf", 3, 0, 0 },        /* overlong */
		{ "\xed\xa0\x80", 3, 0, 0 },        /* surrogate */
		{ "\xf4\x90\x80\x80", 4, 0, 0 },    /* above U+10FFFF */
		{ "\xe2\x82", 2, 0, 0 },             /* truncated */
		{ "\xe2\x28\xa1", 3, 0, 0 },        /* bad continuation */
		{ "A", 1, 0, 0 },                     /* ASCII is not this function's business */
	};
	unsigned cp;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		cp = 0xdead;
		assert_int_equal(jsonw_utf8((const unsigned char *)cases[i].s, cases[i].n, &cp),
		    cases[i].len);
		assert_int_equal(cp, cases[i].len > 0 ? cases[i].cp : 0xdead);
	}
	assert_int_equal(jsonw_utf8((const unsigned char *)"\xc3\xa9", 2, NULL), 2);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_escapes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_all_control_chars, setup, teardown),
		cmocka_unit_test_setup_teardown(test_utf8_passthrough, setup, teardown),
		cmocka_unit_test_setup_teardown(test_utf8_invalid, setup, teardown),
		cmocka_unit_test(test_utf8_decode),
		cmocka_unit_test_setup_teardown(test_numbers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_structure, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reset, setup, teardown),
		cmocka_unit_test_setup_teardown(test_misuse, setup, teardown),
		cmocka_unit_test_setup_teardown(test_random_bytes, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
