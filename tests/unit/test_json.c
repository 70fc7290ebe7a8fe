/* test_json.c — unit tests for lib/json: valid documents, strictness, limits, fuzzing. */
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

#include "lib/json.h"

/* Parses s (strlen) and fails the test on error. */
static struct json_doc *
parse_ok(const char *s)
{
	struct json_doc *doc = NULL;
	char err[128] = "";
	int rc = json_parse(s, strlen(s), &doc, err, sizeof(err));

	if (rc != 0)
		fail_msg("parse of '%s' failed: %d %s", s, rc, err);
	assert_non_null(doc);
	assert_non_null(json_root(doc));
	return doc;
}

static void
test_scalars(void **state)
{
	struct json_doc *doc;
	size_t len;

	doc = parse_ok("null");
	assert_int_equal(json_type(json_root(doc)), JSON_NULL);
	json_free(doc);

	doc = parse_ok(" true ");
	assert_int_equal(json_type(json_root(doc)), JSON_TRUE);
	assert_true(json_bool(json_root(doc)));
	json_free(doc);

	doc = parse_ok("\n\tfalse\r\n");
	assert_int_equal(json_type(json_root(doc)), JSON_FALSE);
	assert_false(json_bool(json_root(doc)));
	json_free(doc);

	doc = parse_ok("\"hello\"");
	assert_int_equal(json_type(json_root(doc)), JSON_STRING);
	assert_string_equal(json_string(json_root(doc), &len), "hello");
	assert_int_equal(len, 5);
	json_free(doc);

	doc = parse_ok("\"\"");
	assert_string_equal(json_string(json_root(doc), &len), "");
	assert_int_equal(len, 0);
	json_free(doc);

	doc = parse_ok("42");
	assert_int_equal(json_type(json_root(doc)), JSON_NUMBER);
	assert_true(json_is_int(json_root(doc)));
	assert_int_equal(json_int(json_root(doc)), 42);
	assert_true(json_number(json_root(doc)) == 42.0);
	json_free(doc);
}

static void
test_containers(void **state)
{
	const char *s = "{\"a\": [1, 2, {\"b\": null}], \"c\": {\"d\": \"e\"}, \"a\": 5, "
			"\"empty_a\": [], \"empty_o\": {}, \"k\\u0000z\": 1}";
	struct json_doc *doc = parse_ok(s);
	const struct json_value *root = json_root(doc), *a, *v;
	size_t keylen;

	assert_int_equal(json_type(root), JSON_OBJECT);
	assert_int_equal(json_object_len(root), 6);
	assert_string_equal(json_object_key_at(root, 0, &keylen), "a");
	assert_int_equal(keylen, 1);
	assert_string_equal(json_object_key_at(root, 2, NULL), "a");
	assert_null(json_object_key_at(root, 6, NULL));
	assert_null(json_object_value_at(root, 6));
	/* Duplicate keys: the first wins. */
	a = json_object_get(root, "a");
	assert_int_equal(json_type(a), JSON_ARRAY);
	assert_int_equal(json_array_len(a), 3);
	assert_int_equal(json_int(json_array_at(a, 0)), 1);
	assert_int_equal(json_int(json_array_at(a, 1)), 2);
	assert_null(json_array_at(a, 3));
	v = json_object_get(json_array_at(a, 2), "b");
	assert_int_equal(json_type(v), JSON_NULL);
	assert_string_equal(json_string(json_object_get(json_object_get(root, "c"), "d"), NULL), "e");
	assert_int_equal(json_type(json_object_get(root, "empty_a")), JSON_ARRAY);
	assert_int_equal(json_array_len(json_object_get(root, "empty_a")), 0);
	assert_int_equal(json_type(json_object_get(root, "empty_o")), JSON_OBJECT);
	assert_int_equal(json_object_len(json_object_get(root, "empty_o")), 0);
	/* A key with an embedded NUL is reachable only with its length. */
	assert_null(json_object_get(root, "k"));
	assert_int_equal(json_int(json_object_getn(root, "k\0z", 3)), 1);
	assert_string_equal(json_object_key_at(root, 5, &keylen), "k");
	assert_int_equal(keylen, 3);
	/* Missing keys and wrong types chain to NULL. */
	assert_null(json_object_get(root, "zz"));
	assert_null(json_object_get(json_object_get(root, "zz"), "b"));
	assert_null(json_object_get(a, "b"));
	assert_int_equal(json_type(NULL), JSON_NONE);
	assert_int_equal(json_array_len(root), 0);
	assert_null(json_array_at(root, 0));
	assert_int_equal(json_object_len(a), 0);
	assert_null(json_string(a, NULL));
	assert_true(json_number(a) == 0.0);
	assert_false(json_bool(NULL));
	assert_false(json_is_int(NULL));
	json_free(doc);
	json_free(NULL);
}

static void
test_escapes(void **state)
{
	struct {
		const char *in;
		const char *out;
		size_t outlen;
	} cases[] = {
		{ "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "\"\\/\b\f\n\r\t", 8 },
		{ "\"\\u0041\\u00e9\"", "A\xc3\xa9", 3 },
		{ "\"\\u20AC\"", "\xe2\x82\xac", 3 },
		{ "\"\\uD83D\\uDE00\"", "\xf0\x9f\x98\x80", 4 },     /* U+1F600 */
		{ "\"\\udbff\\udfff\"", "\xf4\x8f\xbf\xbf", 4 },     /* U+10FFFF */
		{ "\"\\ud800\\udc00\"", "\xf0\x90\x80\x80", 4 },     /* U+10000 */
		{ "\"\\u07ff\\u0800\\uffff\"", "\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf", 8 },
		{ "\"a\\u0000b\"", "a\0b", 3 },
		{ "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"", "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9 },
		{ "\"\x7f\"", "\x7f", 1 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct json_doc *doc = parse_ok(cases[i].in);
		size_t len;
		const char *s = json_string(json_root(doc), &len);

		assert_non_null(s);
		assert_int_equal(len, cases[i].outlen);
		assert_memory_equal(s, cases[i].out, len);
		assert_int_equal(s[len], '\0');
		json_free(doc);
	}
}

static void
test_numbers(void **state)
{
	struct {
		const char *in;
		double d;
		bool is_int;
		int64_t i;
	} cases[] = {
		{ "0", 0, true, 0 },
		{ "-0", -0.0, true, 0 },
		{ "7", 7, true, 7 },
		{ "-123", -123, true, -123 },
		{ "36.0", 36, false, 0 },
		{ "0.5", 0.5, false, 0 },
		{ "-1.5e3", -1500, false, 0 },
		{ "1E2", 100, false, 0 },
		{ "1e+2", 100, false, 0 },
		{ "25e-2", 0.25, false, 0 },
		{ "0.000001", 1e-6, false, 0 },
		{ "1e-400", 0, false, 0 }, /* underflow to zero is fine */
		{ "9223372036854775807", 9223372036854775807.0, true, INT64_MAX },
		{ "-9223372036854775808", -9223372036854775808.0, true, INT64_MIN },
		{ "9223372036854775808", 9223372036854775808.0, false, 0 },
		{ "-9223372036854775809", -9223372036854775809.0, false, 0 },
		{ "12345678901234567890123", 12345678901234567890123.0, false, 0 },
		{ "9007199254740993", 9007199254740992.0, true, 9007199254740993LL },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct json_doc *doc = parse_ok(cases[i].in);
		const struct json_value *v = json_root(doc);

		assert_int_equal(json_type(v), JSON_NUMBER);
		if (json_number(v) != cases[i].d)
			fail_msg("%s: got %.17g want %.17g", cases[i].in, json_number(v), cases[i].d);
		assert_int_equal(json_is_int(v), cases[i].is_int);
		assert_int_equal(json_int(v), cases[i].i);
		json_free(doc);
	}
	/* -0 keeps its sign as a double. */
	{
		struct json_doc *doc = parse_ok("-0");

		assert_true(signbit(json_number(json_root(doc))));
		json_free(doc);
	}
}

/* A long number goes through the heap copy for strtod. */
static void
test_long_number(void **state)
{
	size_t n = 5000;
	char *s = malloc(n + 3);
	struct json_doc *doc = NULL;

	assert_non_null(s);
	s[0] = '0';
	s[1] = '.';
	memset(s + 2, '5', n);
	s[n + 2] = '\0';
	assert_int_equal(json_parse(s, n + 2, &doc, NULL, 0), 0);
	assert_true(fabs(json_number(json_root(doc)) - 0.5555555555555556) < 1e-15);
	json_free(doc);
	free(s);
}

static char *
nested(unsigned depth, char open, char close)
{
	char *s = malloc(2 * (size_t)depth + 1);

	assert_non_null(s);
	memset(s, open, depth);
	memset(s + depth, close, depth);
	s[2 * depth] = '\0';
	return s;
}

static void
test_depth(void **state)
{
	struct json_doc *doc = NULL;
	struct json_limits lim = { .max_depth = 3 };
	char err[128];
	size_t off = SIZE_MAX;
	char *s;

	s = nested(JSON_DEFAULT_MAX_DEPTH, '[', ']');
	doc = parse_ok(s);
	json_free(doc);
	free(s);

	s = nested(JSON_DEFAULT_MAX_DEPTH + 1, '[', ']');
	doc = NULL;
	assert_int_equal(json_parse_ex(s, strlen(s), NULL, &doc, &off, err, sizeof(err)), -EBADMSG);
	assert_null(doc);
	assert_int_equal(off, JSON_DEFAULT_MAX_DEPTH);
	assert_non_null(strstr(err, "nesting too deep"));
	free(s);

	/* Far deeper than any stack would take: must fail, not crash. */
	s = nested(1000000, '[', ']');
	assert_int_equal(json_parse(s, strlen(s), &doc, err, sizeof(err)), -EBADMSG);
	free(s);

	/* Objects count as well; custom limit. */
	s = "{\"a\":{\"b\":[1]}}";
	assert_int_equal(json_parse_ex(s, strlen(s), &lim, &doc, NULL, NULL, 0), 0);
	json_free(doc);
	s = "{\"a\":{\"b\":[[1]]}}";
	assert_int_equal(json_parse_ex(s, strlen(s), &lim, &doc, &off, NULL, 0), -EBADMSG);
	assert_int_equal(off, 11);
}

static void
test_limits_and_args(void **state)
{
	struct json_doc *doc = NULL;
	struct json_limits lim = { .max_size = 4 };
	char err[64];
	size_t off = 0;

	assert_int_equal(json_parse_ex("[1,2]", 5, &lim, &doc, &off, err, sizeof(err)), -E2BIG);
	assert_null(doc);
	assert_int_equal(off, 4);
	assert_int_equal(json_parse_ex("[12]", 4, &lim, &doc, NULL, NULL, 0), 0);
	json_free(doc);
	doc = NULL;
	assert_int_equal(json_parse(NULL, 3, &doc, err, sizeof(err)), -EINVAL);
	assert_int_equal(json_parse("1", 1, NULL, err, sizeof(err)), -EINVAL);
	assert_int_equal(json_parse(NULL, 0, &doc, err, sizeof(err)), -EBADMSG);
	assert_null(doc);
	/* Length is honoured: no NUL needed, bytes after len ignored. */
	assert_int_equal(json_parse("[1]garbage", 3, &doc, err, sizeof(err)), 0);
	assert_int_equal(json_array_len(json_root(doc)), 1);
	assert_true(json_doc_memory(doc) > 0);
	json_free(doc);
	/* Error text is truncated to errlen and NUL-terminated. */
	assert_int_equal(json_parse("[", 1, &doc, err, 5), -EBADMSG);
	assert_int_equal(strlen(err), 4);
	assert_string_equal(err, "offs");
	assert_string_equal(json_type_name(JSON_OBJECT), "object");
	assert_string_equal(json_type_name((enum json_type)99), "unknown");
}

/* Invalid inputs and the byte offset each must be reported at. */
static const struct {
	const char *in;
	size_t len; /* 0 = strlen(in) */
	size_t off;
} invalid[] = {
	{ "", 0, 0 },
	{ "   ", 0, 3 },
	{ "[1,]", 0, 3 },
	{ "{\"a\":1,}", 0, 7 },
	{ "[1,,2]", 0, 3 },
	{ "[1 2]", 0, 3 },
	{ "{\"a\" 1}", 0, 5 },
	{ "{\"a\":}", 0, 5 },
	{ "{a:1}", 0, 1 },
	{ "{1:1}", 0, 1 },
	{ "[", 0, 1 },
	{ "{", 0, 1 },
	{ "]", 0, 0 },
	{ "\"abc", 0, 4 },
	{ "\"\\", 0, 2 },
	{ "\"a\\x\"", 0, 2 },
	{ "\"\\'\"", 0, 1 },
	{ "\"\\u12G4\"", 0, 1 },
	{ "\"\\u00\"", 0, 1 },
	{ "\"\\ud800\"", 0, 1 },
	{ "\"\\udc00\"", 0, 1 },
	{ "\"x\\ud800\\u0041\"", 0, 2 },
	{ "\"\\ud800\\ud800\"", 0, 1 },
	{ "\"\\uDFFF\\uD800\"", 0, 1 },
	{ "\"a\x01" "b\"", 0, 2 },
	{ "\"a\nb\"", 0, 2 },
	{ "\"a\0b\"", 5, 2 },
	{ "\"\xff\"", 0, 1 },
	{ "\"\x80\"", 0, 1 },
	{ "\"\xc0\xaf\"", 0, 1 },        /* overlong '/' */
	{ "\"\xe0\x80\xaf\"", 0, 1 },    /* overlong */
	{ "\"\xed\xa0\x80\"", 0, 1 },    /* UTF-8 encoded surrogate */
	{ "\"\xf4\x90\x80\x80\"", 0, 1 }, /* above U+10FFFF */
	{ "\"\xc3\"", 0, 1 },            /* truncated sequence */
	{ "\"ab\xe2\x82\"", 0, 3 },
	{ "01", 0, 1 },
	{ "-01", 0, 2 },
	{ "00.5", 0, 1 },
	{ "1.", 0, 2 },
	{ "1.e5", 0, 2 },
	{ "1e", 0, 2 },
	{ "1e+", 0, 3 },
	{ "-", 0, 1 },
	{ "-a", 0, 1 },
	{ "+1", 0, 0 },
	{ ".5", 0, 0 },
	{ "1e999", 0, 0 },
	{ "-1e999", 0, 0 },
	{ "NaN", 0, 0 },
	{ "Infinity", 0, 0 },
	{ "-Infinity", 0, 1 },
	{ "0x10", 0, 1 },
	{ "tru", 0, 3 },
	{ "trux", 0, 0 },
	{ "True", 0, 0 },
	{ "nul", 0, 3 },
	{ "nulll", 0, 4 },
	{ "falsey", 0, 5 },
	{ "[1] x", 0, 4 },
	{ "1 2", 0, 2 },
	{ "{}{}", 0, 2 },
	{ "'a'", 0, 0 },
	{ "/*c*/1", 0, 0 },
	{ "[1]//c", 0, 3 },
	{ "\xef\xbb\xbf{}", 0, 0 },   /* BOM */
	{ "[\x0b" "1]", 0, 1 },      /* vertical tab is not JSON whitespace */
	{ "[1\xa0]", 0, 2 },
	{ "{\"a\":1 \"b\":2}", 0, 7 },
	{ "\x00", 1, 0 },
};

static void
test_invalid(void **state)
{
	for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
		const char *in = invalid[i].in;
		size_t len = invalid[i].len ? invalid[i].len : strlen(in);
		struct json_doc *doc = NULL;
		size_t off = SIZE_MAX;
		char err[128] = "", want[32];
		int rc = json_parse_ex(in, len, NULL, &doc, &off, err, sizeof(err));

		if (rc != -EBADMSG)
			fail_msg("case %zu: rc %d for invalid input", i, rc);
		assert_null(doc);
		if (off != invalid[i].off)
			fail_msg("case %zu: offset %zu, want %zu (%s)", i, off, invalid[i].off, err);
		snprintf(want, sizeof(want), "offset %zu: ", off);
		assert_memory_equal(err, want, strlen(want));
		assert_true(strlen(err) > strlen(want));
	}
}

/* Every proper prefix of these documents is invalid and fails exactly at its end. */
static const char *const truncate_docs[] = {
	"{\"a\":[1,-2.5e+3,true,false,null,\"x\\u00e9\\ud83d\\ude00y\"],\"b\":{\"c\":{}},\"d\":[]}",
	"[ {\"k\" : \"v\\n\"} , 0 , -0.125E-2 , \"\xc3\xa9\xf0\x9f\x98\x80\" ]",
	"{\"probes\": [[64, \"36\", 5], [128, \"\\\\frac{1}{2}\", 9]], \"finished\": true}",
};

static void
test_truncated(void **state)
{
	for (size_t d = 0; d < sizeof(truncate_docs) / sizeof(truncate_docs[0]); d++) {
		const char *s = truncate_docs[d];
		size_t n = strlen(s);
		struct json_doc *doc = NULL;

		json_free(parse_ok(s));
		for (size_t len = 0; len < n; len++) {
			size_t off = SIZE_MAX;
			char err[128] = "";
			/* A heap copy of exactly len bytes so ASan catches any overread. */
			char *copy = malloc(len ? len : 1);
			int rc;

			assert_non_null(copy);
			memcpy(copy, s, len);
			rc = json_parse_ex(copy, len, NULL, &doc, &off, err, sizeof(err));
			free(copy);
			if (rc != -EBADMSG)
				fail_msg("doc %zu prefix %zu: rc %d", d, len, rc);
			if (off != len)
				fail_msg("doc %zu prefix %zu: offset %zu (%s)", d, len, off, err);
		}
	}
}

static uint64_t
rng_next(uint64_t *s)
{
	/* xorshift64*: fixed seed, reproducible. */
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545F4914F6CDD1DULL;
}

/* Parses a heap copy of buf[0..len): never crashes, offset within input, doc iff rc == 0. */
static void
fuzz_one(const unsigned char *buf, size_t len, size_t *nok)
{
	char *copy = malloc(len ? len : 1);
	struct json_doc *doc = NULL;
	size_t off = SIZE_MAX;
	char err[128];
	int rc;

	assert_non_null(copy);
	memcpy(copy, buf, len);
	rc = json_parse_ex(copy, len, NULL, &doc, &off, err, sizeof(err));
	if (rc == 0) {
		assert_non_null(doc);
		(*nok)++;
		json_free(doc);
	} else {
		assert_int_equal(rc, -EBADMSG);
		assert_null(doc);
		assert_true(off <= len);
	}
	free(copy);
}

static void
test_fuzz(void **state)
{
	static const char alphabet[] = "{}[]\",:\\ u0123456789abcdefE+-.tnrl\xc3\xa9\xed\xf0\x9f";
	uint64_t seed = 0x9e3779b97f4a7c15ULL;
	unsigned char buf[256];
	size_t nok = 0;

	/* Uniform random bytes. */
	for (int it = 0; it < 20000; it++) {
		size_t len = rng_next(&seed) % 64;

		for (size_t i = 0; i < len; i++)
			buf[i] = (unsigned char)rng_next(&seed);
		fuzz_one(buf, len, &nok);
	}
	/* Bytes drawn from JSON's own alphabet reach deeper into the grammar. */
	for (int it = 0; it < 20000; it++) {
		size_t len = rng_next(&seed) % 48;

		for (size_t i = 0; i < len; i++)
			buf[i] = (unsigned char)alphabet[rng_next(&seed) % (sizeof(alphabet) - 1)];
		fuzz_one(buf, len, &nok);
	}
	/* Single and double byte mutations of valid documents. */
	for (int it = 0; it < 20000; it++) {
		const char *s = truncate_docs[rng_next(&seed) % 3];
		size_t len = strlen(s);

		memcpy(buf, s, len);
		for (int k = 0; k < 1 + (int)(rng_next(&seed) % 2); k++)
			buf[rng_next(&seed) % len] = (unsigned char)rng_next(&seed);
		fuzz_one(buf, len, &nok);
	}
	/* Some mutations must still be valid JSON, or the harness tests nothing. */
	assert_true(nok > 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_scalars),
		cmocka_unit_test(test_containers),
		cmocka_unit_test(test_escapes),
		cmocka_unit_test(test_numbers),
		cmocka_unit_test(test_long_number),
		cmocka_unit_test(test_depth),
		cmocka_unit_test(test_limits_and_args),
		cmocka_unit_test(test_invalid),
		cmocka_unit_test(test_truncated),
		cmocka_unit_test(test_fuzz),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
