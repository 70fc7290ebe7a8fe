/* test_utf8.c — the one strict UTF-8 decoder: whole, incomplete and impossible characters. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "lib/utf8.h"

static void
test_char(void **state)
{
	static const struct {
		const char *s;
		size_t n;
		int len;        /* 1..4 whole, 0 incomplete, -1 never */
		uint32_t cp;
	} cases[] = {
		{ "A", 1, 1, 0x41 },
		{ "\xc3\xa9", 2, 2, 0xe9 },
		{ "\xe2\x82\xac", 3, 3, 0x20ac },
		{ "\xf0\x9f\x98\x80", 4, 4, 0x1f600 },
		{ "\xf4\x8f\xbf\xbf", 4, 4, 0x10ffff },
		{ "\xe2\x82", 2, 0, 0 },             /* a valid start, cut */
		{ "\xf0\x9f", 2, 0, 0 },
		{ "\xf0", 1, 0, 0 },
		{ "\x80", 1, -1, 0 },                /* stray continuation byte */
		{ "\xc0\xaf", 2, -1, 0 },            /* overlong lead */
		{ "\xe0\x80\xaf", 3, -1, 0 },        /* overlong */
		{ "\xe0\x80", 2, -1, 0 },            /* overlong, already impossible when cut */
		{ "\xed\xa0\x80", 3, -1, 0 },        /* surrogate */
		{ "\xf4\x90\x80\x80", 4, -1, 0 },    /* above U+10FFFF */
		{ "\xf5\x80\x80\x80", 4, -1, 0 },
		{ "\xe2\x28\xa1", 3, -1, 0 },        /* bad continuation */
	};
	uint32_t cp;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		cp = 0xdead;
		if (utf8_char((const uint8_t *)cases[i].s, cases[i].n, &cp) != cases[i].len)
			fail_msg("case %zu: wrong length", i);
		assert_int_equal(cp, cases[i].len > 0 ? cases[i].cp : 0xdead);
	}
}

static void
test_valid_prefix(void **state)
{
	const char *ok = "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80z";

	(void)state;
	assert_int_equal(utf8_valid_prefix((const uint8_t *)ok, strlen(ok)), strlen(ok));
	assert_int_equal(utf8_valid_prefix((const uint8_t *)"ab\xff", 3), 2);
	/* An incomplete character at the end is not valid text. */
	assert_int_equal(utf8_valid_prefix((const uint8_t *)"ab\xe2\x82", 4), 2);
	assert_int_equal(utf8_valid_prefix((const uint8_t *)"", 0), 0);
}

int
main(void)
{
	static const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_char),
		cmocka_unit_test(test_valid_prefix),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
