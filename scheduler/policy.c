/* policy.c — parsing and formatting the `key = value` form of a scheduling policy. */
#include "scheduler/policy.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/error.h"
#include "lib/ini.h"
#include "scheduler/certainty.h"

enum policy_type { POLICY_U32, POLICY_U64, POLICY_I64, POLICY_DOUBLE };

/* One key of the file form: where it lives in struct sched_policy. */
struct policy_key {
	const char *name;
	enum policy_type type;
	size_t offset;
	const char *help;
};

#define PK(n, t, f, h) { n, t, offsetof(struct sched_policy, f), h }
static const struct policy_key policy_keys[] = {
	PK("step_tokens", POLICY_U32, step_tokens, "tokens per chain per step (probe spacing floor)"),
	PK("max_step_tokens", POLICY_U32, max_step_tokens, "largest step"),
	PK("probe_stride", POLICY_DOUBLE, probe_stride, "step = stride * tokens so far"),
	PK("default_budget", POLICY_U64, default_budget, "program token budget by default"),
	PK("max_budget", POLICY_U64, max_budget, "largest program budget"),
	PK("default_sc_n", POLICY_U32, default_sc_n, "sc chains by default"),
	PK("max_sc_n", POLICY_U32, max_sc_n, "most sc chains"),
	PK("expected_tokens", POLICY_U64, expected_tokens, "expected chain length"),
	PK("hesitation_window", POLICY_U32, hesitation_window, "bytes of text for hesitation"),
	PK("unpromising_tokens", POLICY_U64, unpromising_tokens, "stop-unpromising after (0 off)"),
	PK("sc.unpromising_tokens", POLICY_U64, sc_unpromising_tokens, "same for sc programs"),
	PK("settle_closed", POLICY_U32, settle_closed, "thinking closed + box agrees: certain (0/1)"),
	PK("extend_frac", POLICY_DOUBLE, extend_frac, "budget extension share"),
	PK("extend_min", POLICY_DOUBLE, extend_min, "certaindex needed to extend"),
	PK("starvation_ms", POLICY_I64, starvation_ms, "ranking starvation bound"),
	PK("cot.threshold", POLICY_DOUBLE, cot_threshold, "cot stop-certain threshold"),
	PK("sc.threshold", POLICY_DOUBLE, sc_threshold, "sc stop-certain threshold"),
	PK("riskctl.target", POLICY_DOUBLE, riskctl_target, "answer changes per program allowed"),
	PK("riskctl.sc_target", POLICY_DOUBLE, riskctl_sc_target, "same for sc programs"),
	PK("riskctl.shadow_frac", POLICY_DOUBLE, riskctl_shadow_frac, "programs sampled (0 off)"),
	PK("riskctl.confidence", POLICY_DOUBLE, riskctl_confidence, "of the rate bounds"),
	PK("riskctl.step", POLICY_DOUBLE, riskctl_step, "logit shift per move"),
	PK("riskctl.min_shift", POLICY_DOUBLE, riskctl_min_shift, "lowest shift (<= 0)"),
	PK("riskctl.max_shift", POLICY_DOUBLE, riskctl_max_shift, "highest shift (>= 0)"),
	PK("riskctl.min_samples", POLICY_U32, riskctl_min_samples, "counted programs before a saving move"),
	PK("riskctl.window", POLICY_U32, riskctl_window, "counted programs before an unproven backs off"),
	PK("riskctl.frozen", POLICY_U32, riskctl_frozen, "1: count, never move"),
	PK("riskctl.shadow_boost", POLICY_DOUBLE, riskctl_shadow_boost, "share sampled while undecided (<= shadow_frac: off)"),
	PK("riskctl.hold_confidence", POLICY_DOUBLE, riskctl_hold_confidence, "of the bound that leaves a held setting"),
	PK("riskctl.harm", POLICY_U32, riskctl_harm, "1: count only changes from a trusted end"),
	PK("riskctl.harm_stable", POLICY_U32, riskctl_harm_stable, "cot: probe answers equal to the end to trust it"),
	PK("riskctl.gain", POLICY_U32, riskctl_gain, "1: a change called a gain offsets one change"),
	PK("riskctl.gain_tokens", POLICY_U32, riskctl_gain_tokens, "decode tokens a gain's stop answer was held"),
	PK("dynasor_k", POLICY_U32, dynasor_k, "Dynasor-CoT baseline: k agreeing probes stop (0 off)"),
	PK("difficulty.tokens", POLICY_U64, difficulty_tokens, "early window for the class (0 off)"),
	PK("difficulty.changes", POLICY_U32, difficulty_changes, "answer changes in it: hard"),
	PK("cot.threshold_easy", POLICY_DOUBLE, cot_threshold_easy, "cot threshold, easy class"),
	PK("cot.threshold_hard", POLICY_DOUBLE, cot_threshold_hard, "cot threshold, hard class"),
	PK("unpromising_relative", POLICY_U32, unpromising_relative, "unpromising bounds in model_tokens/4096 units (0/1)"),
	PK("model_tokens", POLICY_U64, model_tokens, "the model's median chain length (0 unknown)"),
	PK("model_tokens.min_samples", POLICY_U32, model_tokens_min_samples, "chains before certad uses the learned median (0 never)"),
	PK("sc.vote_threshold", POLICY_DOUBLE, sc_vote_threshold, "sc: an unfinished chain this certain votes as finished (> 1 off)"),
	PK("sc.staged", POLICY_U32, sc_staged, "sc: start n/2+1 chains, the rest only when they disagree (0 off, 1, 2: with cot-certain voters)"),
	PK("cot.threshold_slope", POLICY_DOUBLE, cot_threshold_slope, "cot threshold change per model_tokens of chain position (0 off)"),
	PK("model_confidence", POLICY_DOUBLE, model_confidence, "the model's probe-probability level, where features confidence and min_prob read 0 (0: 0.5; certad's prior until it learns the level)"),
	PK("model_confidence.min_samples", POLICY_U32, model_confidence_min_samples, "chains before certad uses the learned probability level (0 never)"),
};
#define POLICY_NKEYS (sizeof policy_keys / sizeof policy_keys[0])
#define POLICY_NALL (POLICY_NKEYS + SCHED_COT_NFEAT + SCHED_SC_NFEAT)

static void
policy_err(char *err, size_t errlen, const char *name, size_t line, const char *fmt, ...)
{
	va_list ap;
	size_t n = 0;

	if (err == NULL || errlen == 0)
		return;
	err[0] = '\0';
	if (line > 0) {
		int k = name != NULL ? snprintf(err, errlen, "%s:%zu: ", name, line) :
		    snprintf(err, errlen, "line %zu: ", line);
		n = k > 0 ? (size_t)k : 0;
		if (n >= errlen)
			return;
	}
	va_start(ap, fmt);
	vsnprintf(err + n, errlen - n, fmt, ap);
	va_end(ap);
}

/* Index of key in the combined table (plain keys, cot.w.*, sc.w.*), or -1. */
static int
policy_lookup(const char *key)
{
	size_t i;

	for (i = 0; i < POLICY_NKEYS; i++)
		if (strcmp(key, policy_keys[i].name) == 0)
			return (int)i;
	if (strncmp(key, "cot.w.", 6) == 0)
		for (i = 0; i < SCHED_COT_NFEAT; i++)
			if (strcmp(key + 6, certainty_cot_feature_name(i)) == 0)
				return (int)(POLICY_NKEYS + i);
	if (strncmp(key, "sc.w.", 5) == 0)
		for (i = 0; i < SCHED_SC_NFEAT; i++)
			if (strcmp(key + 5, certainty_sc_feature_name(i)) == 0)
				return (int)(POLICY_NKEYS + SCHED_COT_NFEAT + i);
	return -1;
}

/* Stores the value text v for key index k into p; false if it does not parse. */
static bool
policy_store(struct sched_policy *p, int k, const char *v)
{
	char *end;
	double d;

	errno = 0;
	d = strtod(v, &end);
	if (end == v || *end != '\0' || errno == ERANGE || !isfinite(d))
		return false;
	if ((size_t)k >= POLICY_NKEYS) {
		size_t i = (size_t)k - POLICY_NKEYS;
		if (i < SCHED_COT_NFEAT)
			p->cot_w[i] = d;
		else
			p->sc_w[i - SCHED_COT_NFEAT] = d;
		return true;
	}
	{
		const struct policy_key *pk = &policy_keys[k];
		char *base = (char *)p + pk->offset;
		switch (pk->type) {
		case POLICY_DOUBLE:
			memcpy(base, &d, sizeof d);
			return true;
		case POLICY_U32: {
			uint32_t u;
			if (d < 0 || d > 4294967295.0 || d != floor(d))
				return false;
			u = (uint32_t)d;
			memcpy(base, &u, sizeof u);
			return true;
		}
		case POLICY_U64: {
			uint64_t u;
			if (d < 0 || d > 9.0e15 || d != floor(d))
				return false;
			u = (uint64_t)d;
			memcpy(base, &u, sizeof u);
			return true;
		}
		case POLICY_I64: {
			int64_t u;
			if (d < -9.0e15 || d > 9.0e15 || d != floor(d))
				return false;
			u = (int64_t)d;
			memcpy(base, &u, sizeof u);
			return true;
		}
		}
	}
	return false;
}

/* policy_parse()'s state across ini_parse() callbacks. */
struct policy_walk {
	struct sched_policy q;
	bool seen[POLICY_NALL];
	const char *name;
	char *err;
	size_t errlen;
};

/* ini_parse() callback: one `key = value`. */
static int
policy_item(const struct ini_item *it, void *arg)
{
	struct policy_walk *w = arg;
	char key[POLICY_KEY_MAX + 1];
	int k = -1, n;

	if (it->key_len >= 64) {
		policy_err(w->err, w->errlen, w->name, it->line, "key too long");
		return CERTA_ECONFIG;
	}
	/* In a [section], a key is "section.key" unless it is a full key by itself. */
	snprintf(key, sizeof key, "%.*s", (int)it->key_len, it->key);
	if (it->section != NULL && policy_lookup(key) < 0) {
		n = snprintf(key, sizeof key, "%.*s.%.*s", (int)it->section_len, it->section,
		    (int)it->key_len, it->key);
		if (n < 0 || (size_t)n >= sizeof key) {
			policy_err(w->err, w->errlen, w->name, it->line, "unknown key '%.60s'", key);
			return CERTA_ECONFIG;
		}
	}
	k = policy_lookup(key);
	if (k < 0) {
		policy_err(w->err, w->errlen, w->name, it->line, "unknown key '%.60s'", key);
		return CERTA_ECONFIG;
	}
	if (w->seen[k]) {
		policy_err(w->err, w->errlen, w->name, it->line, "key '%s' given twice", key);
		return CERTA_ECONFIG;
	}
	w->seen[k] = true;
	if (!policy_store(&w->q, k, it->value)) {
		policy_err(w->err, w->errlen, w->name, it->line,
		    "value '%.40s' for '%s' is not a %s", it->value, key,
		    (size_t)k < POLICY_NKEYS && policy_keys[k].type != POLICY_DOUBLE ?
		    "whole number in range" : "finite number");
		return CERTA_ECONFIG;
	}
	return 0;
}

int
policy_parse(const char *text, size_t len, const char *name, struct sched_policy *p,
    char *err, size_t errlen)
{
	struct policy_walk w;
	struct ini_error ie = { 0 };
	char msg[256];
	int rc;

	memset(&w, 0, sizeof w);
	w.q = *p;
	w.name = name;
	w.err = err;
	w.errlen = errlen;
	rc = ini_parse(text, len, 0, policy_item, NULL, &w, &ie);
	if (rc == CERTA_ECONFIG && ie.msg[0] != '\0')
		policy_err(err, errlen, name, ie.line, "%s", ie.msg);
	if (rc == -ENOMEM)
		policy_err(err, errlen, name, 0, "out of memory");
	if (rc != 0)
		return rc == -ENOMEM ? rc : CERTA_ECONFIG;
	if (sched_policy_validate(&w.q, msg, sizeof msg) != 0) {
		policy_err(err, errlen, name, 0, "%s%s%s", name != NULL ? name : "",
		    name != NULL ? ": " : "", msg);
		return CERTA_ECONFIG;
	}
	*p = w.q;
	return 0;
}

size_t
policy_key_count(void)
{
	return POLICY_NALL;
}

const char *
policy_key_name(size_t i, char *buf, size_t len)
{
	if (i < POLICY_NKEYS)
		return policy_keys[i].name;
	if (i < POLICY_NKEYS + SCHED_COT_NFEAT)
		snprintf(buf, len, "cot.w.%s", certainty_cot_feature_name(i - POLICY_NKEYS));
	else if (i < POLICY_NALL)
		snprintf(buf, len, "sc.w.%s",
		    certainty_sc_feature_name(i - POLICY_NKEYS - SCHED_COT_NFEAT));
	else
		return NULL;
	return buf;
}

int
policy_key_find(const char *key)
{
	return policy_lookup(key);
}

/* Appends with snprintf semantics, tracking the full length. */
static void
policy_put(char *buf, size_t buflen, size_t *n, const char *fmt, ...)
{
	va_list ap;
	int k;

	va_start(ap, fmt);
	k = vsnprintf(*n < buflen ? buf + *n : NULL, *n < buflen ? buflen - *n : 0, fmt, ap);
	va_end(ap);
	if (k > 0)
		*n += (size_t)k;
}

size_t
policy_format(const struct sched_policy *p, char *buf, size_t buflen)
{
	size_t n = 0, i;

	if (buflen > 0)
		buf[0] = '\0';
	for (i = 0; i < POLICY_NKEYS; i++) {
		const struct policy_key *pk = &policy_keys[i];
		const char *base = (const char *)p + pk->offset;
		switch (pk->type) {
		case POLICY_DOUBLE: {
			double d;
			memcpy(&d, base, sizeof d);
			policy_put(buf, buflen, &n, "%s = %.6g\n", pk->name, d);
			break;
		}
		case POLICY_U32: {
			uint32_t u;
			memcpy(&u, base, sizeof u);
			policy_put(buf, buflen, &n, "%s = %u\n", pk->name, u);
			break;
		}
		case POLICY_U64: {
			uint64_t u;
			memcpy(&u, base, sizeof u);
			policy_put(buf, buflen, &n, "%s = %llu\n", pk->name, (unsigned long long)u);
			break;
		}
		case POLICY_I64: {
			int64_t u;
			memcpy(&u, base, sizeof u);
			policy_put(buf, buflen, &n, "%s = %lld\n", pk->name, (long long)u);
			break;
		}
		}
	}
	for (i = 0; i < SCHED_COT_NFEAT; i++)
		policy_put(buf, buflen, &n, "cot.w.%s = %.6g\n", certainty_cot_feature_name(i),
		    p->cot_w[i]);
	for (i = 0; i < SCHED_SC_NFEAT; i++)
		policy_put(buf, buflen, &n, "sc.w.%s = %.6g\n", certainty_sc_feature_name(i),
		    p->sc_w[i]);
	return n;
}

static double
policy_round6(double d)
{
	char s[64];

	snprintf(s, sizeof s, "%.6g", d);
	return strtod(s, NULL);
}

void
policy_round(struct sched_policy *p)
{
	size_t i;

	p->probe_stride = policy_round6(p->probe_stride);
	p->extend_frac = policy_round6(p->extend_frac);
	p->extend_min = policy_round6(p->extend_min);
	p->cot_threshold = policy_round6(p->cot_threshold);
	p->sc_threshold = policy_round6(p->sc_threshold);
	p->sc_vote_threshold = policy_round6(p->sc_vote_threshold);
	p->cot_threshold_slope = policy_round6(p->cot_threshold_slope);
	p->riskctl_target = policy_round6(p->riskctl_target);
	p->riskctl_sc_target = policy_round6(p->riskctl_sc_target);
	p->riskctl_shadow_frac = policy_round6(p->riskctl_shadow_frac);
	p->riskctl_confidence = policy_round6(p->riskctl_confidence);
	p->riskctl_step = policy_round6(p->riskctl_step);
	p->riskctl_min_shift = policy_round6(p->riskctl_min_shift);
	p->riskctl_max_shift = policy_round6(p->riskctl_max_shift);
	p->riskctl_shadow_boost = policy_round6(p->riskctl_shadow_boost);
	p->riskctl_hold_confidence = policy_round6(p->riskctl_hold_confidence);
	p->cot_threshold_easy = policy_round6(p->cot_threshold_easy);
	p->cot_threshold_hard = policy_round6(p->cot_threshold_hard);
	for (i = 0; i < SCHED_COT_NFEAT; i++)
		p->cot_w[i] = policy_round6(p->cot_w[i]);
	for (i = 0; i < SCHED_SC_NFEAT; i++)
		p->sc_w[i] = policy_round6(p->sc_w[i]);
}

int
policy_equal(const struct sched_policy *a, const struct sched_policy *b)
{
	char x[4096], y[4096];

	if (policy_format(a, x, sizeof x) >= sizeof x || policy_format(b, y, sizeof y) >= sizeof y)
		return 0;
	return strcmp(x, y) == 0 && memcmp(a->cot_w, b->cot_w, sizeof a->cot_w) == 0 &&
	    memcmp(a->sc_w, b->sc_w, sizeof a->sc_w) == 0 &&
	    a->cot_threshold == b->cot_threshold && a->sc_threshold == b->sc_threshold &&
	    a->probe_stride == b->probe_stride;
}
