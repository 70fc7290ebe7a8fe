/* test_policykv.c — policy keys, KEY=VALUE assignments and policy text (certactl policy). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "scheduler/policykv.h"
#include "scheduler/policy.h"
#include "scheduler/sched.h"

/* The key list is what policy_format writes, so each listed key parses on the server side. */
static void
test_keys_match_policy_format(void **state)
{
	struct sched_policy p;
	char buf[2048], line[256], *k, *save = NULL;
	size_t n;

	(void)state;
	n = policykv_keys(buf, sizeof buf);
	assert_true(n > 0 && n < sizeof buf);
	assert_int_equal(n, strlen(buf));
	assert_non_null(strstr(buf, "step_tokens, "));
	assert_non_null(strstr(buf, "cot.threshold"));
	assert_non_null(strstr(buf, "sc.w."));
	for (k = strtok_r(buf, ", ", &save); k != NULL; k = strtok_r(NULL, ", ", &save)) {
		assert_int_equal(policykv_is_key(k), 1);
		/* Each key alone is accepted by the real parser (with its default value). */
		sched_policy_default(&p);
		snprintf(line, sizeof line, "%s = 0\n", k);
		(void)policy_parse(line, strlen(line), NULL, &p, NULL, 0);
	}
	assert_int_equal(policykv_is_key("step_token"), 0);
	assert_int_equal(policykv_is_key("cot.w.nope"), 0);
	assert_int_equal(policykv_is_key(""), 0);
}

static void
test_keys_truncate(void **state)
{
	char small[10], big[2048];
	size_t need;

	(void)state;
	need = policykv_keys(big, sizeof big);
	assert_int_equal(policykv_keys(small, sizeof small), need);
	assert_int_equal(strlen(small), sizeof small - 1);
	assert_memory_equal(small, big, sizeof small - 1);
	assert_int_equal(policykv_keys(NULL, 0), need);
}

/* Assignments become `key = value` lines that the scheduler's parser accepts as they are. */
static void
test_text_from_assignments(void **state)
{
	char *as[] = { "step_tokens=128", "cot.threshold=0.95", "cot.w.stable=-1.5e-1",
	    "starvation_ms=2000" };
	struct sched_policy p;
	char *text = NULL, err[256];

	(void)state;
	assert_int_equal(policykv_text(as, 4, &text, err, sizeof err), 0);
	assert_string_equal(text, "step_tokens = 128\ncot.threshold = 0.95\n"
	    "cot.w.stable = -1.5e-1\nstarvation_ms = 2000\n");
	sched_policy_default(&p);
	assert_int_equal(policy_parse(text, strlen(text), NULL, &p, err, sizeof err), 0);
	assert_int_equal(p.step_tokens, 128);
	assert_true(p.cot_threshold == 0.95);
	free(text);
	/* No assignments: empty text. */
	assert_int_equal(policykv_text(NULL, 0, &text, NULL, 0), 0);
	assert_string_equal(text, "");
	free(text);
}

/* Unknown keys name themselves and list the valid ones. */
static void
test_unknown_key(void **state)
{
	char *as1[] = { "step_token=32" };
	char *as2[] = { "step_tokens=32", "version=3" };
	char *as3[] = { "cot.threshold =0.9" };
	char *text = (char *)0x1, err[2048];

	(void)state;
	assert_int_equal(policykv_text(as1, 1, &text, err, sizeof err), -ENOENT);
	assert_ptr_equal(text, (char *)0x1);
	assert_non_null(strstr(err, "'step_token'"));
	assert_non_null(strstr(err, "valid keys: step_tokens, "));
	assert_int_equal(policykv_text(as2, 2, &text, err, sizeof err), -ENOENT);
	assert_non_null(strstr(err, "'version'"));
	/* Spaces around '=' are not part of a key. */
	assert_int_equal(policykv_text(as3, 1, &text, err, sizeof err), -ENOENT);
	assert_int_equal(policykv_text(as1, 1, &text, NULL, 0), -ENOENT);
}

static void
test_bad_assignments(void **state)
{
	static const struct {
		const char *kv;
		int rc;
	} cases[] = {
		{ "step_tokens", -EINVAL },
		{ "=5", -EINVAL },
		{ "", -EINVAL },
		{ "step_tokens=", -EINVAL },
		{ "step_tokens= 1", -EINVAL },
		{ "step_tokens=abc", -EINVAL },
		{ "step_tokens=0x10", -EINVAL },
		{ "cot.threshold=nan", -EINVAL },
		{ "cot.threshold=inf", -EINVAL },
		{ "cot.threshold=1e999", -EINVAL },
		{ "cot.threshold=0.9x", -EINVAL },
		{ "cot.threshold=0.9\n", -EINVAL },
		{ "cot.threshold=0.9 # c", -EINVAL },
	};
	char *text = NULL, err[256], *one[1];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		one[0] = (char *)cases[i].kv;
		err[0] = '\0';
		assert_int_equal(policykv_text(one, 1, &text, err, sizeof err), cases[i].rc);
		assert_true(err[0] != '\0');
	}
	assert_null(text);
}

static void
test_key_twice(void **state)
{
	char *as[] = { "step_tokens=64", "cot.threshold=0.9", "step_tokens=32" };
	char *text = NULL, err[256];

	(void)state;
	assert_int_equal(policykv_text(as, 3, &text, err, sizeof err), -EEXIST);
	assert_non_null(strstr(err, "step_tokens is given twice"));
	assert_null(text);
}

/* Reading values back from a text as the server writes it (and from hand-written files). */
static void
test_value_and_each(void **state)
{
	const char *text = "# policy\nstep_tokens = 64\n\n[cot]\nthreshold = 0.93 # tuned\n"
	    "w.stable=1.25\nsc.threshold = 0.8\nnot a line\n";
	char val[32];

	(void)state;
	assert_int_equal(policykv_value(text, "step_tokens", val, sizeof val), 0);
	assert_string_equal(val, "64");
	assert_int_equal(policykv_value(text, "cot.threshold", val, sizeof val), 0);
	assert_string_equal(val, "0.93");
	assert_int_equal(policykv_value(text, "cot.w.stable", val, sizeof val), 0);
	assert_string_equal(val, "1.25");
	assert_int_equal(policykv_value(text, "sc.threshold", val, sizeof val), 0);
	assert_string_equal(val, "0.8");
	assert_int_equal(policykv_value(text, "max_sc_n", val, sizeof val), -ENOENT);
	assert_int_equal(policykv_value("", "step_tokens", val, sizeof val), -ENOENT);
}

struct changes {
	char buf[512];
	int n;
};

static void
record_change(const char *key, const char *old, const char *new, void *arg)
{
	struct changes *c = arg;
	size_t at = strlen(c->buf);

	snprintf(c->buf + at, sizeof c->buf - at, "%s:%s->%s;", key, old ? old : "(none)",
	    new ? new : "(none)");
	c->n++;
}

/* The diff `policy set` and `policy history` print. */
static void
test_diff(void **state)
{
	const char *a = "step_tokens = 64\ncot.threshold = 0.9\nsc.threshold = 0.8\n";
	const char *b = "step_tokens = 128\ncot.threshold = 0.90\nmax_sc_n = 16\n";
	struct changes c = { "", 0 };

	(void)state;
	assert_int_equal(policykv_diff(a, b, record_change, &c), 3);
	assert_int_equal(c.n, 3);
	assert_string_equal(c.buf, "step_tokens:64->128;max_sc_n:(none)->16;"
	    "sc.threshold:0.8->(none);");
	memset(&c, 0, sizeof c);
	assert_int_equal(policykv_diff(a, a, record_change, &c), 0);
	assert_int_equal(c.n, 0);
}

static void
count_change(const char *key, const char *old, const char *new, void *arg)
{
	(void)key;
	(void)old;
	(void)new;
	(*(int *)arg)++;
}

/* Long texts with a section: the diff used to look every key up by walking the other text
 * again, and to format the default policy for every line in a section, so 2000 lines took
 * tens of seconds (fuzz_policy); it is now linear.  Also: duplicates and a key whose value
 * repeats with another spelling. */
static void
test_diff_long_texts(void **state)
{
	enum { LINES = 2000 };
	char *a = malloc(LINES * 32 + 64), *b = malloc(LINES * 32 + 64);
	size_t la = 0, lb = 0;
	struct timespec t0, t1;
	double secs;
	int n = 0;

	(void)state;
	assert_non_null(a);
	assert_non_null(b);
	la += (size_t)sprintf(a + la, "[cot]\nthreshold = 0.9\n");
	lb += (size_t)sprintf(b + lb, "[cot]\nthreshold = 0.90\n");
	for (int i = 0; i < LINES; i++) {
		la += (size_t)sprintf(a + la, "k%d = %d\n", i, i);
		/* every tenth value changes; the last ten keys exist only in a */
		if (i < LINES - 10)
			lb += (size_t)sprintf(b + lb, "k%d = %d\n", i, i % 10 == 0 ? i + 1 : i);
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(policykv_diff(a, b, count_change, &n), (LINES - 10) / 10 + 10);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	assert_int_equal(n, (LINES - 10) / 10 + 10);
	secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	if (secs > 5.0)
		fail_msg("diff of two %d-line texts took %.1f s", LINES, secs);
	free(a);
	free(b);
}

/* Round trip through the server's own formatter: a default policy diffed with itself after
 * set lines are applied shows exactly those keys. */
static void
test_diff_formatted_policies(void **state)
{
	char *as[] = { "cot.threshold=0.9731", "default_sc_n=4" };
	struct sched_policy p;
	char *text = NULL, a[4096], b[4096], err[256];
	struct changes c = { "", 0 };

	(void)state;
	sched_policy_default(&p);
	policy_format(&p, a, sizeof a);
	assert_int_equal(policykv_text(as, 2, &text, err, sizeof err), 0);
	assert_int_equal(policy_parse(text, strlen(text), NULL, &p, err, sizeof err), 0);
	policy_format(&p, b, sizeof b);
	free(text);
	assert_int_equal(policykv_diff(a, b, record_change, &c), 2);
	assert_non_null(strstr(c.buf, "cot.threshold:"));
	assert_non_null(strstr(c.buf, "->0.9731;"));
	assert_non_null(strstr(c.buf, "default_sc_n:"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_keys_match_policy_format),
		cmocka_unit_test(test_keys_truncate),
		cmocka_unit_test(test_text_from_assignments),
		cmocka_unit_test(test_unknown_key),
		cmocka_unit_test(test_bad_assignments),
		cmocka_unit_test(test_key_twice),
		cmocka_unit_test(test_value_and_each),
		cmocka_unit_test(test_diff),
		cmocka_unit_test(test_diff_long_texts),
		cmocka_unit_test(test_diff_formatted_policies),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
