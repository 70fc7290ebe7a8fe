/*
 * test_riskctl.c — the Clopper-Pearson bounds on known binomial cases, the controller's
 * threshold movement on synthetic streams with a known change rate, freezing, the shadow pick,
 * the riskctl.* policy keys and the shift inside sched_decide().
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "lib/error.h"
#include "scheduler/policy.h"
#include "scheduler/riskctl.h"
#include "scheduler/sched.h"

/* I_x(a, b) against closed forms: I_x(1, b) = 1 - (1-x)^b, I_x(a, 1) = x^a, I_0.5(a, a) = 0.5. */
static void
test_betainc_closed_forms(void **state)
{
	(void)state;
	assert_true(fabs(riskctl_betainc(1, 7, 0.2) - (1 - pow(0.8, 7))) < 1e-12);
	assert_true(fabs(riskctl_betainc(5, 1, 0.3) - pow(0.3, 5)) < 1e-12);
	assert_true(fabs(riskctl_betainc(40, 40, 0.5) - 0.5) < 1e-12);
	/* I_x(2, 3) = 6x^2/2 - 8x^3/3 ... expanded: 6x^2 - 8x^3 + 3x^4. */
	assert_true(fabs(riskctl_betainc(2, 3, 0.4) - (6 * 0.16 - 8 * 0.064 + 3 * 0.0256)) < 1e-12);
	/* Large arguments stay finite and monotone. */
	assert_true(riskctl_betainc(500, 9500, 0.04) < riskctl_betainc(500, 9500, 0.06));
	assert_true(isnan(riskctl_betainc(0, 1, 0.5)));
	assert_true(isnan(riskctl_betainc(1, 1, 1.5)));
}

/* Known Clopper-Pearson values (R: binom.test(x, n)$conf.int, and 1 - alpha^(1/n) for x = 0).
 * One-sided bounds at conf; the two-sided 95% interval is conf = 0.975 on each side. */
static void
test_cp_known_values(void **state)
{
	(void)state;
	/* x = 0, n = 10, one-sided 95%: 1 - 0.05^(1/10) = 0.2589. */
	assert_true(fabs(riskctl_cp_upper(0, 10, 0.95) - (1 - pow(0.05, 0.1))) < 1e-9);
	assert_true(fabs(riskctl_cp_upper(0, 10, 0.95) - 0.2589) < 5e-5);
	/* x = 5, n = 20, two-sided 95% (one-sided 97.5% each): [0.0866, 0.4910]. */
	assert_true(fabs(riskctl_cp_upper(5, 20, 0.975) - 0.4910) < 5e-5);
	assert_true(fabs(riskctl_cp_lower(5, 20, 0.975) - 0.0866) < 5e-5);
	/* x = 1, n = 100, two-sided 95%: [0.000253, 0.0545]. */
	assert_true(fabs(riskctl_cp_upper(1, 100, 0.975) - 0.05446) < 5e-5);
	assert_true(fabs(riskctl_cp_lower(1, 100, 0.975) - 0.000253) < 5e-6);
	/* x = n: upper 1, lower alpha^(1/n). */
	assert_true(riskctl_cp_upper(10, 10, 0.95) == 1);
	assert_true(fabs(riskctl_cp_lower(10, 10, 0.95) - pow(0.05, 0.1)) < 1e-9);
	/* Nothing seen: the trivial interval. */
	assert_true(riskctl_cp_upper(0, 0, 0.9) == 1);
	assert_true(riskctl_cp_lower(0, 0, 0.9) == 0);
	/* More evidence, tighter bound. */
	assert_true(riskctl_cp_upper(2, 200, 0.9) < riskctl_cp_upper(1, 100, 0.9));
}

static void
test_threshold_shift(void **state)
{
	(void)state;
	assert_true(riskctl_threshold(0.993, 0) == 0.993);
	assert_true(riskctl_threshold(1.5, 2) == 1.5);      /* disabled stays disabled */
	assert_true(fabs(riskctl_threshold(0.5, log(3.0)) - 0.25) < 1e-12);
	assert_true(riskctl_threshold(0.993, 1) < 0.993);
	assert_true(riskctl_threshold(0.993, -1) > 0.993);
	assert_true(riskctl_threshold(0.993, -1) < 1);
}

static void
params(struct riskctl_params *pr)
{
	struct sched_policy p;

	sched_policy_default(&p);
	riskctl_params_from_policy(&p, SCHED_ALGO_COT, pr);
	assert_true(pr->target == p.riskctl_target);
	pr->target = 0.05;
	pr->confidence = 0.9;
	pr->step = 0.5;
	pr->min_shift = -2;
	pr->max_shift = 3;
	pr->min_samples = 20;
	pr->window = 100;
	pr->frozen = false;
}

/* A reproducible Bernoulli(rate) stream (LCG). */
static bool
coin(uint64_t *s, double rate)
{
	*s = *s * 6364136223846793005ull + 1442695040888963407ull;
	return (double)(*s >> 11) / 9007199254740992.0 < rate;
}

/* A change rate well under the target: the shift climbs to the top and stays there. */
static void
test_low_rate_moves_toward_savings(void **state)
{
	struct riskctl_params pr;
	struct riskctl_state s = { 0 };
	uint64_t seed = 7;
	int i, saves = 0;

	(void)state;
	params(&pr);
	for (i = 0; i < 3000; i++)
		if (riskctl_observe(&pr, &s, coin(&seed, 0.002), 100) == RISKCTL_SAVE)
			saves++;
	assert_true(s.shift == pr.max_shift);
	/* Net moves: up to the top (a rare change may cost a step back, then regained). */
	assert_int_equal((uint64_t)saves - s.backs, (uint64_t)(pr.max_shift / pr.step));
	assert_true(s.backs <= 2);
	assert_int_equal(s.shadows, 3000);
	assert_int_equal(s.tokens, 300000);
	/* 0 of 20 at 90% is 0.109 > 0.05: the first save needs ~45 clean shadows. */
	{
		struct riskctl_state t = { 0 };
		for (i = 0; i < 43; i++)
			assert_int_equal(riskctl_observe(&pr, &t, false, 1), RISKCTL_HOLD);
		for (; i < 60 && t.saves == 0; i++)
			riskctl_observe(&pr, &t, false, 1);
		assert_int_equal(t.saves, 1);
		assert_true(fabs(riskctl_cp_upper(0, (uint64_t)i, 0.9) - 0.05) < 0.003);
	}
}

/* A change rate well over the target: the shift backs off to the bottom. */
static void
test_high_rate_backs_off(void **state)
{
	struct riskctl_params pr;
	struct riskctl_state s = { 0 };
	uint64_t seed = 11;
	int i;

	(void)state;
	params(&pr);
	for (i = 0; i < 2000; i++)
		riskctl_observe(&pr, &s, coin(&seed, 0.25), 100);
	assert_true(s.shift == pr.min_shift);
	assert_int_equal(s.saves, 0);
	assert_true(s.backs >= 4);
}

/* Near the target (rate 4%, target 5%): never shown safe within a window at 90%, so it drifts
 * back rather than forward; a move toward savings is never made on a bad estimate. */
static void
test_rate_near_target_is_conservative(void **state)
{
	struct riskctl_params pr;
	struct riskctl_state s = { 0 };
	uint64_t seed = 3;
	int i;

	(void)state;
	params(&pr);
	for (i = 0; i < 5000; i++)
		riskctl_observe(&pr, &s, coin(&seed, 0.04), 1);
	assert_true(s.shift <= 0);
}

/* A rate that jumps (a new model behaves differently): up while low, then back. */
static void
test_rate_change_reverses(void **state)
{
	struct riskctl_params pr;
	struct riskctl_state s = { 0 };
	uint64_t seed = 5;
	double top;
	int i;

	(void)state;
	params(&pr);
	for (i = 0; i < 1500; i++)
		riskctl_observe(&pr, &s, coin(&seed, 0.0), 1);
	top = s.shift;
	assert_true(top == pr.max_shift);
	for (i = 0; i < 1000; i++)
		riskctl_observe(&pr, &s, coin(&seed, 0.3), 1);
	assert_true(s.shift < top);
	assert_true(s.shift == pr.min_shift);
}

static void
test_frozen_counts_but_never_moves(void **state)
{
	struct riskctl_params pr;
	struct riskctl_state s = { 0 };
	uint64_t seed = 9;
	int i;

	(void)state;
	params(&pr);
	pr.frozen = true;
	s.shift = 1;
	for (i = 0; i < 1000; i++)
		assert_int_equal(riskctl_observe(&pr, &s, coin(&seed, i < 500 ? 0 : 0.5), 1),
		    RISKCTL_HOLD);
	assert_true(s.shift == 1);
	assert_int_equal(s.shadows, 1000);
	assert_true(s.changes > 150);
	/* Unfrozen, the evidence of the window acts at the next observation. */
	pr.frozen = false;
	assert_int_equal(riskctl_observe(&pr, &s, true, 1), RISKCTL_BACK);
	assert_true(s.shift == 0.5);
}

static void
test_clamp_after_policy_change(void **state)
{
	struct riskctl_params pr;
	struct riskctl_state s = { .shift = 3, .win_n = 7 };

	(void)state;
	params(&pr);
	assert_false(riskctl_clamp(&pr, &s));
	pr.max_shift = 1;
	assert_true(riskctl_clamp(&pr, &s));
	assert_true(s.shift == 1);
	assert_int_equal(s.win_n, 0);
}

/* The pick is deterministic and close to the fraction asked for. */
static void
test_pick(void **state)
{
	char id[32];
	int i, n = 0;

	(void)state;
	for (i = 0; i < 10000; i++) {
		snprintf(id, sizeof id, "p%d", i);
		if (riskctl_pick(id, 0.1))
			n++;
		assert_int_equal(riskctl_pick(id, 0.1), riskctl_pick(id, 0.1));
		assert_false(riskctl_pick(id, 0));
		assert_true(riskctl_pick(id, 1));
	}
	assert_true(n > 900 && n < 1100);
}

/* The riskctl.* keys are policy keys: parse, format, validate. */
static void
test_policy_keys(void **state)
{
	struct sched_policy p;
	char err[200], buf[8192];
	const char *t = "[riskctl]\ntarget = 0.02\nshadow_frac = 0.25\nfrozen = 1\nstep = 0.25\n";

	(void)state;
	sched_policy_default(&p);
	assert_int_equal(policy_parse(t, strlen(t), NULL, &p, err, sizeof err), 0);
	assert_true(p.riskctl_target == 0.02);
	assert_true(p.riskctl_shadow_frac == 0.25);
	assert_int_equal(p.riskctl_frozen, 1);
	assert_true(policy_key_find("riskctl.confidence") >= 0);
	policy_format(&p, buf, sizeof buf);
	assert_non_null(strstr(buf, "riskctl.frozen = 1\n"));
	t = "riskctl.frozen = 2\n";
	assert_int_equal(policy_parse(t, strlen(t), NULL, &p, err, sizeof err), CERTA_ECONFIG);
	assert_non_null(strstr(err, "riskctl.frozen"));
	t = "riskctl.window = 5\n";   /* below min_samples 20 */
	assert_int_equal(policy_parse(t, strlen(t), NULL, &p, err, sizeof err), CERTA_ECONFIG);
	assert_non_null(strstr(err, "riskctl.window"));
}

/* sched_decide() stops certain under a positive shift where the plain threshold continues. */
static void
test_decide_uses_shift(void **state)
{
	struct sched_policy p;
	struct sched_chain c = { 0 };
	struct sched_view v = { 0 };
	struct sched_decision d;
	struct sched_probe pr[3] = {
		{ .position = 64, .answer = "17", .confidence = -1, .entropy = -1 },
		{ .position = 128, .answer = "17", .confidence = -1, .entropy = -1 },
		{ .position = 192, .answer = "17", .confidence = -1, .entropy = -1 },
	};

	(void)state;
	sched_policy_default(&p);
	c.tokens = 192;
	c.answer = "17";
	c.final_answer = "";
	c.probes = pr;
	c.nprobes = 3;
	c.text = "so x = 17 then";
	c.text_len = strlen(c.text);
	v.algo = SCHED_ALGO_COT;
	v.budget = 16384;
	v.problem = "find x";
	v.nchains = 1;
	v.chains = &c;
	sched_decide(&p, &v, &d);
	assert_false(d.stop);
	assert_true(d.certaindex < p.cot_threshold);
	/* The shift that puts the threshold just under this certaindex stops it. */
	v.threshold_shift = log(p.cot_threshold / (1 - p.cot_threshold)) -
	    log(d.certaindex / (1 - d.certaindex)) + 1e-6;
	sched_decide(&p, &v, &d);
	assert_true(d.stop);
	assert_int_equal(d.reason, SCHED_REASON_CERTAIN);
	v.threshold_shift -= 2e-6;
	sched_decide(&p, &v, &d);
	assert_false(d.stop);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_betainc_closed_forms),
		cmocka_unit_test(test_cp_known_values),
		cmocka_unit_test(test_threshold_shift),
		cmocka_unit_test(test_low_rate_moves_toward_savings),
		cmocka_unit_test(test_high_rate_backs_off),
		cmocka_unit_test(test_rate_near_target_is_conservative),
		cmocka_unit_test(test_rate_change_reverses),
		cmocka_unit_test(test_frozen_counts_but_never_moves),
		cmocka_unit_test(test_clamp_after_policy_change),
		cmocka_unit_test(test_pick),
		cmocka_unit_test(test_policy_keys),
		cmocka_unit_test(test_decide_uses_shift),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
