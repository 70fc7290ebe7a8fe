/* test_ini.c — the one `key = value` / `[section]` lexer (config, policies, policy text). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "lib/error.h"
#include "lib/ini.h"

/* Everything the callbacks saw, one "line:section|key=value" per item. */
struct seen {
	char buf[1024];
	int items, sections, stop_at;
};

static int
on_item(const struct ini_item *it, void *arg)
{
	struct seen *s = arg;
	size_t at = strlen(s->buf);

	snprintf(s->buf + at, sizeof s->buf - at, "%u:%.*s|%.*s=%s%s;", it->line,
	    (int)it->section_len, it->section != NULL ? it->section : "", (int)it->key_len,
	    it->key, it->value, it->quoted ? "(q)" : "");
	assert_int_equal(strlen(it->value), it->value_len);
	s->items++;
	return s->stop_at != 0 && s->items == s->stop_at ? 42 : 0;
}

static int
on_section(const struct ini_item *it, void *arg)
{
	struct seen *s = arg;

	assert_null(it->key);
	s->sections++;
	return it->section_len == 3 && memcmp(it->section, "bad", 3) == 0 ? CERTA_ECONFIG : 0;
}

static int
lex(const char *text, unsigned flags, struct seen *s, struct ini_error *e)
{
	memset(s, 0, sizeof *s);
	memset(e, 0, sizeof *e);
	return ini_parse(text, strlen(text), flags, on_item, on_section, s, e);
}

static void
test_grammar(void **state)
{
	struct seen s;
	struct ini_error e;
	const char *text = "\xef\xbb\xbf# comment\n; also\n  a = 1  \nb=two words # note\r\n"
	    "c = x#y ;z\n[ sect ]  # c\nd.e = \n[other]\nf-g_h = 7\n";

	(void)state;
	assert_int_equal(lex(text, 0, &s, &e), 0);
	assert_string_equal(s.buf, "3:|a=1;4:|b=two words;5:|c=x#y;7:sect|d.e=;9:other|f-g_h=7;");
	assert_int_equal(s.sections, 2);
}

static void
test_quotes(void **state)
{
	struct seen s;
	struct ini_error e;

	(void)state;
	assert_int_equal(lex("k = \"a # b \\\"q\\\" \\\\\" ; c\n", INI_QUOTES, &s, &e), 0);
	assert_string_equal(s.buf, "1:|k=a # b \"q\" \\(q);");
	/* Without INI_QUOTES a quote is a character like any other. */
	assert_int_equal(lex("k = \"a\"\n", 0, &s, &e), 0);
	assert_string_equal(s.buf, "1:|k=\"a\";");
	assert_int_equal(lex("k = \"open\n", INI_QUOTES, &s, &e), CERTA_ECONFIG);
	assert_string_equal(e.msg, "unterminated quoted value");
	assert_int_equal(lex("k = \"a\\n\"\n", INI_QUOTES, &s, &e), CERTA_ECONFIG);
	assert_non_null(strstr(e.msg, "unknown escape '\\n'"));
	assert_int_equal(lex("k = \"a\" b\n", INI_QUOTES, &s, &e), CERTA_ECONFIG);
	assert_string_equal(e.msg, "unexpected text after quoted value");
}

static void
test_errors(void **state)
{
	static const struct {
		const char *text;
		unsigned line;
		const char *msg;
	} cases[] = {
		{ "a = 1\njust words\n", 2, "expected 'key = value'" },
		{ "= 1\n", 1, "expected 'key = value'" },
		{ "k y = 1\n", 1, "expected 'key = value'" },
		{ "[open\n", 1, "expected '[section]'" },
		{ "[]\n", 1, "expected '[section]'" },
		{ "[a] junk\n", 1, "expected '[section]'" },
		{ "a = 1\n\nb = x\0y\n", 3, "NUL byte in line" },
	};
	struct seen s;
	struct ini_error e;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		size_t len = strlen(cases[i].text);
		if (i == 6)
			len = 14;   /* past the NUL */
		memset(&s, 0, sizeof s);
		memset(&e, 0, sizeof e);
		assert_int_equal(ini_parse(cases[i].text, len, 0, on_item, on_section, &s, &e),
		    CERTA_ECONFIG);
		assert_int_equal(e.line, cases[i].line);
		assert_string_equal(e.msg, cases[i].msg);
	}
}

/* A callback's non-zero return stops the walk and comes back unchanged. */
static void
test_callback_stops(void **state)
{
	struct seen s;
	struct ini_error e;

	(void)state;
	memset(&s, 0, sizeof s);
	s.stop_at = 2;
	memset(&e, 0, sizeof e);
	assert_int_equal(ini_parse("a=1\nb=2\nc=3\n", 12, 0, on_item, NULL, &s, &e), 42);
	assert_int_equal(s.items, 2);
	assert_int_equal(e.msg[0], '\0');
	assert_int_equal(lex("a=1\n[bad]\nb=2\n", 0, &s, &e), CERTA_ECONFIG);
	assert_int_equal(s.items, 1);
	assert_int_equal(lex("", 0, &s, &e), 0);
	assert_int_equal(s.items, 0);
	/* No newline at the end, and a text without any line end at all. */
	assert_int_equal(lex("x = 5", 0, &s, &e), 0);
	assert_string_equal(s.buf, "1:|x=5;");
}

int
main(void)
{
	static const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_grammar),
		cmocka_unit_test(test_quotes),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_callback_stops),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
