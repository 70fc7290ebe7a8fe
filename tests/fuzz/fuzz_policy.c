/*
 * fuzz_policy.c — libFuzzer target for the policy text parsers: scheduler/policy.h
 * (policy_parse, the server side of SetPolicy and policy files) and lib/policykv.h (the
 * certactl side: policykv_each, policykv_value, policykv_diff, policykv_text).
 *
 * Checks: a failed parse leaves the policy unchanged and says why; a parsed policy validates,
 * formats, and its formatted text parses back to an equal policy after rounding; the first and
 * second halves of the input (split at the first NUL) diff without crashing, and the text's own
 * lines turned into KEY=VALUE assignments go through policykv_text.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler/policykv.h"
#include "scheduler/policy.h"
#include "scheduler/sched.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_POLICY_MAX_KV 64

struct fuzz_policy_kv {
	char *assign[FUZZ_POLICY_MAX_KV];
	size_t n;
};

static int
fuzz_policy_collect(const char *key, const char *value, void *arg)
{
	struct fuzz_policy_kv *kv = arg;
	size_t len = strlen(key) + strlen(value) + 2;

	if (kv->n == FUZZ_POLICY_MAX_KV)
		return 1;
	kv->assign[kv->n] = malloc(len);
	if (kv->assign[kv->n] == NULL)
		abort();
	snprintf(kv->assign[kv->n], len, "%s=%s", key, value);
	kv->n++;
	return 0;
}

static void
fuzz_policy_change(const char *key, const char *old, const char *new, void *arg)
{
	(void)arg;
	(void)strlen(key);
	if (old != NULL)
		(void)strlen(old);
	if (new != NULL)
		(void)strlen(new);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sched_policy p, q, before;
	struct fuzz_policy_kv kv = { .n = 0 };
	char err[512], val[64], *text, *second, *kvtext = NULL;
	char fmt[4096];
	size_t n;
	int rc;

	if (size > 65536)
		return -1;
	text = malloc(size + 2);
	if (text == NULL)
		abort();
	memcpy(text, data, size);
	text[size] = text[size + 1] = '\0';
	second = text + strlen(text) + 1;   /* after the first NUL, or "" */

	sched_policy_default(&p);
	before = p;
	err[0] = '\0';
	rc = policy_parse((const char *)data, size, "fuzz.policy", &p, err, sizeof err);
	if (rc != 0) {
		if (memcmp(&p, &before, sizeof p) != 0 || err[0] == '\0')
			abort();
	} else {
		if (sched_policy_validate(&p, err, sizeof err) != 0)
			abort();
		policy_round(&p);
		n = policy_format(&p, fmt, sizeof fmt);
		if (n >= sizeof fmt)
			abort();
		sched_policy_default(&q);
		if (policy_parse(fmt, n, "formatted", &q, err, sizeof err) == 0 &&
		    !policy_equal(&p, &q))
			abort();   /* parse(format(p)) == p for rounded values */
	}

	(void)policykv_each(text, fuzz_policy_collect, &kv);
	(void)policykv_value(text, "cot.threshold", val, sizeof val);
	(void)policykv_diff(text, second, fuzz_policy_change, NULL);
	(void)policykv_diff(second, text, fuzz_policy_change, NULL);
	if (policykv_text(kv.assign, kv.n, &kvtext, err, sizeof err) == 0) {
		(void)policykv_diff(text, kvtext, fuzz_policy_change, NULL);
		free(kvtext);
	}
	for (size_t i = 0; i < kv.n; i++) {
		(void)policykv_is_key(kv.assign[i]);
		free(kv.assign[i]);
	}
	free(text);
	return 0;
}
