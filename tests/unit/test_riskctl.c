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
	assert_true(p.riskctl_shadow_boost == 0);
	assert_true(p.riskctl_hold_confidence == p.riskctl_confidence);
	t = "riskctl.shadow_boost = 0.6\nriskctl.hold_confidence = 0.5\n";
	assert_int_equal(policy_parse(t, strlen(t), NULL, &p, err, sizeof err), 0);
	assert_true(p.riskctl_shadow_boost == 0.6);
	assert_true(p.riskctl_hold_confidence == 0.5);
	t = "riskctl.shadow_boost = 1.5\n";
	assert_int_equal(policy_parse(t, strlen(t), NULL, &p, err, sizeof err), CERTA_ECONFIG);
	assert_non_null(strstr(err, "riskctl.shadow_boost"));
	t = "riskctl.hold_confidence = 0.4\n";
	assert_int_equal(policy_parse(t, strlen(t), NULL, &p, err, sizeof err), CERTA_ECONFIG);
	assert_non_null(strstr(err, "riskctl.hold_confidence"));
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

/* Grid -2..2 step 1 around tau0 = 0.5: thresholds 0.881, 0.731, 0.5, 0.269, 0.119. */
static void
grid_params(struct riskctl_params *pr)
{
	params(pr);
	pr->min_shift = -2;
	pr->max_shift = 2;
	pr->step = 1;
}

/* grid_params and a state on that grid (counts set by the caller). */
static void
grid_state(struct riskctl_params *pr, struct riskctl_state *s)
{
	grid_params(pr);
	s->gn = 5, s->gmin = -2, s->gstep = 1;
}

/* A hand-made trajectory: which shift stops where, certain or not, changed or not. */
static void
test_cf_grid_update(void **state)
{
	const struct riskctl_point tr[] = {
		{ .c = 0.2, .same = false },                 /* +2 stops here: changed */
		{ .c = 0.6, .same = false },                 /* +1 and 0: changed */
		{ .c = 0.75, .same = true },                 /* -1: same */
		{ .c = 0.85, .other = true, .same = true },  /* -2: unpromising, not certain */
		{ .c = 1, .same = true },                    /* natural end */
	};
	const size_t want_stop[5] = { 3, 2, 1, 1, 0 };
	const bool want_certain[5] = { false, true, true, true, true };
	const uint32_t want_obs[5] = { 0, 1, 1, 1, 1 }, want_chg[5] = { 0, 0, 1, 1, 1 };
	struct riskctl_params pr;
	struct riskctl_state s = { 0 };
	size_t stop[RISKCTL_GRID_MAX];
	bool certain[RISKCTL_GRID_MAX];
	uint32_t k;

	(void)state;
	grid_params(&pr);
	assert_int_equal(riskctl_grid_size(&pr), 5);
	assert_true(riskctl_grid_shift(&pr, 4) == 2);
	riskctl_cf_stops(&pr, 0.5, tr, 5, true, stop, certain);
	for (k = 0; k < 5; k++) {
		assert_int_equal(stop[k], want_stop[k]);
		assert_int_equal(certain[k], want_certain[k]);
	}
	assert_true(riskctl_cf_movable(&pr, 0.5, tr, 5, true));
	pr.frozen = true;   /* counting only */
	assert_int_equal(riskctl_observe_cf(&pr, &s, 0.5, tr, 5, NULL, true, true, 40), RISKCTL_HOLD);
	for (k = 0; k < 5; k++) {
		assert_int_equal(s.gobs[k], want_obs[k]);
		assert_int_equal(s.gchg[k], want_chg[k]);
	}
	assert_int_equal(s.samples, 1);
	assert_int_equal(s.excluded, 0);
	assert_int_equal(s.gtot, 1);
	assert_int_equal(s.shadows, 1);
	assert_int_equal(s.changes, 1);
	assert_int_equal(s.tokens, 40);
	/* A free natural end (not a shadow) counts in the grid, not as a shadow. */
	riskctl_observe_cf(&pr, &s, 0.5, tr, 5, NULL, false, false, 0);
	assert_int_equal(s.gobs[4], 2);
	assert_int_equal(s.shadows, 1);

	/* Excluded: a settled point (certaindex 1) first, every shift stops there... */
	{
		const struct riskctl_point settled[] = {
			{ .c = 0.1, .same = false }, { .c = 1, .same = true }, { .c = 1, .same = true },
		};
		const struct riskctl_point none[] = {
			{ .c = 0.05, .same = false }, { .c = 0.1, .other = true, .same = false },
			{ .c = 1, .same = true },
		};
		riskctl_cf_stops(&pr, 0.5, settled, 3, true, stop, certain);
		for (k = 0; k < 5; k++)
			assert_true(stop[k] == 1 && certain[k]);
		assert_false(riskctl_cf_movable(&pr, 0.5, settled, 3, true));
		riskctl_observe_cf(&pr, &s, 0.5, settled, 3, NULL, true, false, 1);
		/* ... and an unpromising stop before any point the loosest threshold accepts. */
		assert_false(riskctl_cf_movable(&pr, 0.5, none, 3, true));
		riskctl_observe_cf(&pr, &s, 0.5, none, 3, NULL, false, false, 0);
		assert_int_equal(s.excluded, 2);
		assert_int_equal(s.samples, 2);
		/* Excluded from the change counts, not from the programs (the rate's n). */
		assert_int_equal(s.gtot, 4);
		/* An early stop every shift makes alike (no shadow): the same, without a
		 * trajectory. */
		assert_int_equal(riskctl_observe_excluded(&pr, &s), RISKCTL_HOLD);
		assert_int_equal(s.gtot, 5);
		assert_int_equal(s.excluded, 3);
		assert_int_equal(s.gobs[4], 2);
		assert_int_equal(s.gobs[4], 2);
		assert_int_equal(s.gobs[0], 0);
	}
	/* A stopped program's own steps: its stop at a certaindex-1 point that every shift
	 * reaches first needs no shadow; one at 0.6 does (-1, -2 would run on). */
	{
		const struct riskctl_point own1[] = { { .c = 0.1 }, { .c = 1 } };
		assert_false(riskctl_cf_movable(&pr, 0.5, own1, 2, false));
		riskctl_cf_stops(&pr, 0.5, tr, 2, false, stop, certain);
		assert_int_equal(stop[0], 2);   /* not within the prefix */
		assert_int_equal(stop[1], 2);
		assert_int_equal(stop[2], 1);
		assert_true(riskctl_cf_movable(&pr, 0.5, tr, 2, false));
	}
	/* Another grid: counts restart. */
	pr.step = 0.5;
	riskctl_observe_cf(&pr, &s, 0.5, tr, 5, NULL, false, false, 0);
	assert_int_equal(s.gn, 9);
	assert_int_equal(s.gobs[8], 1);
	assert_int_equal(s.gtot, 1);
}

static void
set_counts(struct riskctl_state *s, uint32_t n, const uint32_t *chg)
{
	s->gtot = n;
	memcpy(s->gchg, chg, 5 * sizeof *chg);
}

/* The pick rule on known counts (target 0.05, confidence 0.9): changes per counted program. */
static void
test_cf_pick_rule(void **state)
{
	struct riskctl_params pr;
	struct riskctl_state s = { 0 };

	(void)state;
	grid_state(&pr, &s);
	/* UCB(0, 100) = 0.023, UCB(1, 100) = 0.038 proven; 12 of 100: LCB 0.077, bad.  From 0
	 * to +1 in one move. */
	set_counts(&s, 100, (const uint32_t[5]){ 0, 0, 0, 1, 12 });
	assert_true(riskctl_cp_upper(1, 100, 0.9) < 0.05);
	assert_true(riskctl_cp_lower(12, 100, 0.9) > 0.05);
	assert_int_equal(riskctl_pick_shift(&pr, &s), RISKCTL_SAVE);
	assert_true(s.shift == 1);
	assert_int_equal(riskctl_pick_shift(&pr, &s), RISKCTL_HOLD);
	/* The current point turns bad: back to the best proven one below. */
	set_counts(&s, 100, (const uint32_t[5]){ 0, 0, 0, 12, 12 });
	assert_int_equal(riskctl_pick_shift(&pr, &s), RISKCTL_BACK);
	assert_true(s.shift == 0);
	assert_int_equal(s.saves, 1);
	assert_int_equal(s.backs, 1);
	/* Between the bounds: 3 of 50 is neither proven (UCB 0.13) nor bad (LCB 0.022, n <
	 * window), nor are 4 of 50 above it: hold, whatever is below. */
	set_counts(&s, 50, (const uint32_t[5]){ 0, 0, 3, 4, 4 });
	assert_true(riskctl_cp_lower(4, 50, 0.9) < 0.05);
	assert_int_equal(riskctl_pick_shift(&pr, &s), RISKCTL_HOLD);
	/* A full window unproven: back, to the best proven point below. */
	set_counts(&s, 100, (const uint32_t[5]){ 0, 0, 6, 6, 6 });
	assert_true(riskctl_cp_lower(6, 100, 0.9) < 0.05);
	assert_int_equal(riskctl_pick_shift(&pr, &s), RISKCTL_BACK);
	assert_true(s.shift == -1);
	/* A bad point blocks every point above it, however clean. */
	s.shift = -2;
	set_counts(&s, 100, (const uint32_t[5]){ 0, 12, 0, 0, 0 });
	assert_int_equal(riskctl_pick_shift(&pr, &s), RISKCTL_HOLD);
	assert_true(s.shift == -2);
	/* min_samples: 0 of 19 is not enough even when its UCB (0.114) is under the target. */
	pr.target = 0.15;
	set_counts(&s, 19, (const uint32_t[5]){ 0 });
	assert_true(riskctl_cp_upper(0, 19, 0.9) < 0.15);
	assert_int_equal(riskctl_pick_shift(&pr, &s), RISKCTL_HOLD);
	s.gtot = 20;
	assert_int_equal(riskctl_pick_shift(&pr, &s), RISKCTL_SAVE);
	assert_true(s.shift == 2);
	/* Frozen: holds on any evidence. */
	pr.frozen = true;
	set_counts(&s, 100, (const uint32_t[5]){ 90, 90, 90, 90, 90 });
	assert_int_equal(riskctl_pick_shift(&pr, &s), RISKCTL_HOLD);
	assert_true(s.shift == 2);
	pr.frozen = false;
	assert_int_equal(riskctl_pick_shift(&pr, &s), RISKCTL_BACK);
	assert_true(s.shift == 1);
}

/* A stream with a known counterfactual change rate: one point with c ~ U(0, 1), changed when
 * c < 0.3, then the natural end.  Per program, threshold tau changes the answer with
 * probability max(0, 0.3 - tau): 0 down to shift 0, 3.1% at +1, 18.1% at +2.  Target 10%: it
 * must reach +1 and never rest at +2. */
static void
test_cf_known_rate_stream(void **state)
{
	struct riskctl_params pr;
	struct riskctl_state s = { 0 };
	uint64_t seed = 13;
	int i, at2 = 0, first = -1;

	(void)state;
	grid_params(&pr);
	pr.target = 0.10;
	for (i = 0; i < 1000; i++) {
		struct riskctl_point tr[2];
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		tr[0].c = (double)(seed >> 11) / 9007199254740992.0;
		tr[0].other = false;
		tr[0].same = !(tr[0].c < 0.3);
		tr[1].c = 1, tr[1].other = false, tr[1].same = true;
		riskctl_observe_cf(&pr, &s, 0.5, tr, 2, NULL, true, !tr[0].same, 1);
		if (s.shift == 1 && first < 0)
			first = i;
		if (i >= 200 && s.shift == 2)
			at2++;
	}
	assert_true(s.shift == 1);
	assert_true(first >= 0 && first < 200);
	assert_int_equal(at2, 0);
	/* Every movable trajectory informs +2, whatever the setting: c in [0.119, 0.881), ~76%
	 * (c >= 0.881 stops at every shift, c < 0.119 at none: excluded). */
	assert_true(s.gobs[4] > 700 && s.gobs[4] < 820);
	assert_true(s.excluded > 180 && s.excluded < 300);
}

/* The known-rate stream of test_cf_known_rate_stream, sampled as certad samples it: program i
 * is picked by riskctl_pick on its id at riskctl_sample_frac of the state before it (boost 0:
 * the plain shadow_frac).  Returns the first program run at +1 (-1: never); *picked: programs
 * sampled, *late: ... of those after program 600. */
static int
cf_sampled_stream(const struct riskctl_params *pr, struct riskctl_state *s, int *picked,
    int *late)
{
	uint64_t seed = 13;
	int i, first = -1;
	char id[32];

	*picked = 0;
	*late = 0;
	for (i = 0; i < 1000; i++) {
		struct riskctl_point tr[2];
		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		tr[0].c = (double)(seed >> 11) / 9007199254740992.0;
		tr[0].other = false;
		tr[0].same = !(tr[0].c < 0.3);
		tr[1].c = 1, tr[1].other = false, tr[1].same = true;
		if (s->shift == 1 && first < 0)
			first = i;
		snprintf(id, sizeof id, "p%d", i);
		if (!riskctl_pick(id, riskctl_sample_frac(pr, s)))
			continue;
		(*picked)++;
		if (i >= 600)
			(*late)++;
		riskctl_observe_cf(pr, s, 0.5, tr, 2, NULL, true, !tr[0].same, 1);
	}
	return first;
}

/* riskctl.shadow_boost: until the first move, while the point above the current one is
 * undecided and within reach, every program is sampled; after it (to +1, or +2 at once),
 * sampling falls back to shadow_frac.  The boosted controller reaches +1 (3.1%) several times sooner
 * than the plain one at the same base share (22 vs 190 programs), and samples about the base
 * share once decided (109 programs in all vs 91). */
static void
test_cf_boost_stream(void **state)
{
	struct riskctl_params pr;
	struct riskctl_state s = { 0 };
	int plain, boosted, picked, late;

	(void)state;
	grid_params(&pr);
	pr.target = 0.10;
	pr.shadow_frac = 0.1;
	pr.boost = 0;
	plain = cf_sampled_stream(&pr, &s, &picked, &late);
	assert_true(plain < 0 || plain > 150);
	assert_true(picked < 120);
	memset(&s, 0, sizeof s);
	pr.boost = 1;
	boosted = cf_sampled_stream(&pr, &s, &picked, &late);
	assert_true(boosted >= 0 && boosted < 60);
	assert_true(s.shift == 1);
	/* Decided: +2 clearly over, +1 proven; the base share from then on. */
	assert_true(riskctl_cp_lower(s.gchg[4], s.gtot, pr.confidence) > pr.target);
	assert_true(riskctl_sample_frac(&pr, &s) == 0.1);
	assert_true(s.saves >= 1);
	assert_true(late > 15 && late < 70);
	assert_true(picked < 150);
}

/* riskctl_sample_frac on known counts (grid -2..2, target 0.05, min_samples 20, window 100). */
static void
test_cf_sample_frac_rule(void **state)
{
	struct riskctl_params pr;
	struct riskctl_state s = { 0 };

	(void)state;
	grid_params(&pr);
	pr.shadow_frac = 0.2;
	pr.boost = 0.8;
	/* Nothing counted yet (no grid): boost. */
	assert_true(riskctl_sample_frac(&pr, &s) == 0.8);
	s.gn = 5, s.gmin = -2, s.gstep = 1;
	/* Off stays off; frozen and boost <= shadow_frac: the base share. */
	pr.shadow_frac = 0;
	assert_true(riskctl_sample_frac(&pr, &s) == 0);
	pr.shadow_frac = 0.2;
	pr.frozen = true;
	assert_true(riskctl_sample_frac(&pr, &s) == 0.2);
	pr.frozen = false;
	pr.boost = 0.1;
	assert_true(riskctl_sample_frac(&pr, &s) == 0.2);
	pr.boost = 0.8;
	/* Fewer than min_samples counted: boost. */
	set_counts(&s, 10, (const uint32_t[5]){ 0 });
	assert_true(riskctl_sample_frac(&pr, &s) == 0.8);
	/* At 0 (point 2): +1 at 2 of 100 is unproven (UCB 0.052) but within reach (4 of 200:
	 * UCB 0.039): boost. */
	set_counts(&s, 100, (const uint32_t[5]){ 0, 0, 0, 2, 9 });
	assert_true(riskctl_cp_upper(2, 100, 0.9) > 0.05);
	assert_true(riskctl_cp_upper(4, 200, 0.9) <= 0.05);
	assert_true(riskctl_sample_frac(&pr, &s) == 0.8);
	/* ... but not once the start has spent a window of shadows, nor after a move. */
	s.win_n = 100;
	assert_true(riskctl_sample_frac(&pr, &s) == 0.2);
	s.win_n = 0;
	s.backs = 1;
	assert_true(riskctl_sample_frac(&pr, &s) == 0.2);
	s.backs = 0;
	/* +1 at 6 of 100: not clearly over (LCB 0.033) but out of reach (12 of 200: UCB 0.083). */
	set_counts(&s, 100, (const uint32_t[5]){ 0, 0, 0, 6, 9 });
	assert_true(riskctl_cp_lower(6, 100, 0.9) < 0.05);
	assert_true(riskctl_cp_upper(12, 200, 0.9) > 0.05);
	assert_true(riskctl_sample_frac(&pr, &s) == 0.2);
	/* Clearly over: decided. */
	set_counts(&s, 100, (const uint32_t[5]){ 0, 0, 0, 12, 12 });
	assert_true(riskctl_sample_frac(&pr, &s) == 0.2);
	/* At the top: nothing above to decide. */
	s.shift = 2;
	set_counts(&s, 100, (const uint32_t[5]){ 0 });
	assert_true(riskctl_sample_frac(&pr, &s) == 0.2);
	/* Counts on another grid restart: boost (before any move). */
	s.shift = 0;
	s.gstep = 0.5;
	assert_true(riskctl_sample_frac(&pr, &s) == 0.8);
}

/* riskctl.hold_confidence: the current point (+1), 9 of 200 changed (4.5%, target 0.05), is
 * no longer proven at 0.9 (UCB 0.064) but its estimate is under the target (UCB at 0.5:
 * 0.048): held at hold_confidence 0.5, left at 0.9 (the plain rule).  Clearly over (LCB >
 * target) is left whatever hold_confidence says. */
static void
test_cf_hold_confidence(void **state)
{
	struct riskctl_params pr;
	struct riskctl_state s = { 0 };

	(void)state;
	grid_state(&pr, &s);
	s.shift = 1;
	set_counts(&s, 200, (const uint32_t[5]){ 0, 0, 0, 9, 30 });
	assert_true(riskctl_cp_upper(9, 200, 0.9) > 0.05);
	assert_true(riskctl_cp_upper(9, 200, 0.5) <= 0.05);
	pr.hold_confidence = 0.5;
	assert_int_equal(riskctl_pick_shift(&pr, &s), RISKCTL_HOLD);
	assert_true(s.shift == 1);
	pr.hold_confidence = 0.9;
	assert_int_equal(riskctl_pick_shift(&pr, &s), RISKCTL_BACK);
	assert_true(s.shift == 0);
	/* Above the confidence: the confidence is used. */
	s.shift = 1;
	pr.hold_confidence = 0.99;
	assert_int_equal(riskctl_pick_shift(&pr, &s), RISKCTL_BACK);
	/* Clearly over: 16 of 200 (LCB 0.058). */
	s.shift = 1;
	pr.hold_confidence = 0.5;
	set_counts(&s, 200, (const uint32_t[5]){ 0, 0, 0, 16, 30 });
	assert_true(riskctl_cp_lower(16, 200, 0.9) > 0.05);
	assert_int_equal(riskctl_pick_shift(&pr, &s), RISKCTL_BACK);
	assert_true(s.shift == 0);
}

/* The harm proxy's end test on hand-made trajectories (riskctl_end_trusted): cot trusts an end
 * that is not cut and that the last harm_stable valid probe answers before it equal (invalid
 * probes skipped); sc a majority vote of uncut chains; harm off or no end information always
 * trusts (every change counts, the change rate). */
static void
test_harm_end_trusted(void **state)
{
	/* Valid answers: changed, same, (invalid), same, then the end. */
	const struct riskctl_point stable[] = {
		{ .c = 0.2, .same = false, .valid = true }, { .c = 0.5, .same = true, .valid = true },
		{ .c = 0.6, .same = false, .valid = false }, { .c = 0.7, .same = true, .valid = true },
		{ .c = 1, .same = true },
	};
	/* The last valid probe answer before the end differs from it: late answers changing. */
	const struct riskctl_point unstable[] = {
		{ .c = 0.2, .same = true, .valid = true }, { .c = 0.5, .same = true, .valid = true },
		{ .c = 0.7, .same = false, .valid = true }, { .c = 1, .same = true },
	};
	const struct riskctl_end cot = { .cut = false, .chains = 1, .votes = 1 };
	const struct riskctl_end cut = { .cut = true, .chains = 1, .votes = 1 };
	const struct riskctl_end sc2 = { .cut = false, .chains = 3, .votes = 2 };
	const struct riskctl_end sc1 = { .cut = false, .chains = 3, .votes = 1 };
	const struct riskctl_end sc4 = { .cut = false, .chains = 4, .votes = 2 };
	struct riskctl_params pr;

	(void)state;
	grid_params(&pr);
	/* Off: everything counts. */
	assert_int_equal(riskctl_harm_mode(&pr), 0);
	assert_true(riskctl_end_trusted(&pr, unstable, 4, &cut));
	pr.harm = true;
	pr.harm_stable = 2;
	assert_int_equal(riskctl_harm_mode(&pr), 3);
	assert_true(riskctl_end_trusted(&pr, stable, 5, &cot));
	assert_false(riskctl_end_trusted(&pr, stable, 5, &cut));
	assert_false(riskctl_end_trusted(&pr, unstable, 4, &cot));
	assert_true(riskctl_end_trusted(&pr, unstable, 4, NULL));   /* no information */
	/* Three valid answers must equal the end: the first valid one of stable does not. */
	pr.harm_stable = 3;
	assert_false(riskctl_end_trusted(&pr, stable, 5, &cot));
	/* Fewer valid probe answers than asked for: not trusted. */
	assert_false(riskctl_end_trusted(&pr, stable + 3, 2, &cot));
	/* 0: only that the end is not cut. */
	pr.harm_stable = 0;
	assert_true(riskctl_end_trusted(&pr, unstable, 4, &cot));
	assert_false(riskctl_end_trusted(&pr, unstable, 4, &cut));
	/* sc: a majority of the chains, whatever the probes. */
	pr.harm_stable = 2;
	assert_true(riskctl_end_trusted(&pr, unstable, 4, &sc2));
	assert_false(riskctl_end_trusted(&pr, stable, 5, &sc1));
	assert_false(riskctl_end_trusted(&pr, stable, 5, &sc4));
}

/* With riskctl.harm a change from an untrusted end is stopped (gobs) but not changed (gchg);
 * from a trusted end it is both; off, the end is ignored.  The counts restart when the harm
 * mode changes (the key, or harm_stable while on), as for a new grid. */
static void
test_harm_counts_and_restart(void **state)
{
	/* +2, +1 and 0 stop at point 1 (certaindex 0.6), changed; -1, -2 run to the end. */
	const struct riskctl_point tr[] = {
		{ .c = 0.1, .same = true, .valid = true }, { .c = 0.6, .same = false, .valid = true },
		{ .c = 0.65, .same = true, .valid = true }, { .c = 0.7, .same = true, .valid = true },
		{ .c = 1, .same = true },
	};
	const struct riskctl_end trusted = { .cut = false, .chains = 1, .votes = 1 };
	const struct riskctl_end cutoff = { .cut = true, .chains = 1, .votes = 1 };
	struct riskctl_params pr;
	struct riskctl_state s = { 0 };

	(void)state;
	grid_params(&pr);
	pr.frozen = true;
	/* Off: the cut end's change counts, as before the key. */
	riskctl_observe_cf(&pr, &s, 0.5, tr, 5, &cutoff, true, true, 1);
	assert_int_equal(s.gobs[4], 1);
	assert_int_equal(s.gchg[4], 1);
	assert_int_equal(s.gharm, 0);
	/* On: the counts restart (gtot 1 after this trajectory), the cut end's change does not
	 * count, the trusted one's does. */
	pr.harm = true;
	pr.harm_stable = 2;
	riskctl_observe_cf(&pr, &s, 0.5, tr, 5, &cutoff, true, true, 1);
	assert_int_equal(s.gharm, 3);
	assert_int_equal(s.gtot, 1);
	assert_int_equal(s.gobs[4], 1);
	assert_int_equal(s.gchg[4], 0);
	assert_int_equal(s.gobs[2], 1);
	assert_int_equal(s.gchg[2], 0);
	assert_int_equal(s.gobs[1], 0);
	riskctl_observe_cf(&pr, &s, 0.5, tr, 5, &trusted, true, true, 1);
	assert_int_equal(s.gtot, 2);
	assert_int_equal(s.gobs[4], 2);
	assert_int_equal(s.gchg[4], 1);
	assert_int_equal(s.gchg[2], 1);
	/* The raw outcome counts are not the grid's: kept. */
	assert_int_equal(s.shadows, 3);
	assert_int_equal(s.changes, 3);
	/* Another harm_stable: counts restart again; so does the key going off. */
	pr.harm_stable = 3;
	riskctl_observe_cf(&pr, &s, 0.5, tr, 5, &trusted, false, false, 0);
	assert_int_equal(s.gharm, 4);
	assert_int_equal(s.gtot, 1);
	/* ... and with three, the changed answer at point 1 is among the last three valid ones:
	 * the same end is no longer trusted. */
	assert_int_equal(s.gobs[4], 1);
	assert_int_equal(s.gchg[4], 0);
	pr.harm = false;
	assert_int_equal(riskctl_observe_excluded(&pr, &s), RISKCTL_HOLD);
	assert_int_equal(s.gharm, 0);
	assert_int_equal(s.gtot, 1);
	assert_int_equal(s.gobs[4], 0);
	/* The sampling rule sees counts of another mode as no counts (boost while undecided). */
	pr.frozen = false;
	pr.shadow_frac = 0.1;
	pr.boost = 0.9;
	pr.harm = true;
	assert_true(riskctl_sample_frac(&pr, &s) == 0.9);
}

/* The policy keys riskctl.harm and riskctl.harm_stable. */
static void
test_harm_policy_keys(void **state)
{
	struct sched_policy p;
	struct riskctl_params pr;
	char err[256];
	const char *t = "riskctl.harm = 1\nriskctl.harm_stable = 3\n";

	(void)state;
	sched_policy_default(&p);
	assert_int_equal(p.riskctl_harm, 0);
	assert_int_equal(p.riskctl_harm_stable, 2);
	assert_int_equal(policy_parse(t, strlen(t), NULL, &p, err, sizeof err), 0);
	riskctl_params_from_policy(&p, SCHED_ALGO_SC, &pr);
	assert_true(pr.harm);
	assert_int_equal(pr.harm_stable, 3);
	t = "riskctl.harm = 2\n";
	assert_int_equal(policy_parse(t, strlen(t), NULL, &p, err, sizeof err), CERTA_ECONFIG);
	assert_non_null(strstr(err, "riskctl.harm"));
	t = "riskctl.harm_stable = 65\n";
	assert_int_equal(policy_parse(t, strlen(t), NULL, &p, err, sizeof err), CERTA_ECONFIG);
	assert_non_null(strstr(err, "riskctl.harm_stable"));
}

/* A trajectory whose certain stop (point 2, certaindex 0.6: shifts 0, +1, +2 stop there; -1
 * and -2 run to the end) gave answer A, which the chain held from point 1 to point 5 (5,000
 * decode tokens, from the point before the run to its last point), then left for B and ended
 * on C, an answer it held only at the end: what the gain proxy calls a likely gain. */
static const struct riskctl_point gain_traj[] = {
	{ .c = 0.1, .valid = true, .tokens = 1000 },
	{ .c = 0.2, .valid = true, .tokens = 2000 },
	{ .c = 0.6, .valid = true, .cont = true, .tokens = 3000 },
	{ .c = 0.3, .valid = true, .cont = true, .tokens = 4000 },
	{ .c = 0.3, .valid = true, .cont = true, .tokens = 5000 },
	{ .c = 0.4, .valid = true, .cont = true, .tokens = 6000 },
	{ .c = 0.5, .valid = true, .tokens = 7000 },
	{ .c = 1, .same = true, .tokens = 8000 },
};

/* The reverse: the stop's answer held at points 1-2 only (2,000 tokens), the end's answer from
 * point 3 to the end (the chain moved to it early and kept it): a likely loss. */
static const struct riskctl_point loss_traj[] = {
	{ .c = 0.1, .valid = true, .tokens = 1000 },
	{ .c = 0.2, .valid = true, .tokens = 2000 },
	{ .c = 0.6, .valid = true, .cont = true, .tokens = 3000 },
	{ .c = 0.3, .same = true, .valid = true, .tokens = 4000 },
	{ .c = 0.3, .same = true, .valid = true, .cont = true, .tokens = 5000 },
	{ .c = 0.4, .same = true, .valid = true, .cont = true, .tokens = 6000 },
	{ .c = 0.5, .same = true, .valid = true, .cont = true, .tokens = 7000 },
	{ .c = 1, .same = true, .cont = true, .tokens = 8000 },
};

/* riskctl_gain_called on hand-made trajectories: a long-held stop answer left for an end
 * answer that appears only at the end is a gain; the reverse (short stop run, end answer held)
 * is not, nor is either half alone; off: never. */
static void
test_gain_called(void **state)
{
	struct riskctl_point pts[8];
	struct riskctl_params pr;

	(void)state;
	grid_params(&pr);
	pr.gain_tokens = 4000;
	assert_int_equal(riskctl_gain_mode(&pr), 0);
	assert_false(riskctl_gain_called(&pr, gain_traj, 8, 2));
	pr.gain = true;
	assert_int_equal(riskctl_gain_mode(&pr), 4000);
	/* The run 1..5 spans 6000 - 1000 tokens, whichever of its points is the stop. */
	assert_true(riskctl_gain_called(&pr, gain_traj, 8, 2));
	assert_true(riskctl_gain_called(&pr, gain_traj, 8, 1));
	assert_true(riskctl_gain_called(&pr, gain_traj, 8, 5));
	pr.gain_tokens = 5000;
	assert_true(riskctl_gain_called(&pr, gain_traj, 8, 2));
	pr.gain_tokens = 5001;
	assert_false(riskctl_gain_called(&pr, gain_traj, 8, 2));
	/* Inverted roles: not a gain. */
	pr.gain_tokens = 2000;
	assert_false(riskctl_gain_called(&pr, loss_traj, 8, 2));
	/* The stop's run long enough but the end's answer held before the end: not a gain. */
	memcpy(pts, gain_traj, sizeof pts);
	pts[7].cont = true;
	assert_false(riskctl_gain_called(&pr, pts, 8, 2));
	/* The end's answer only at the end but the stop's run short: not a gain. */
	memcpy(pts, gain_traj, sizeof pts);
	pts[3].cont = false;
	pr.gain_tokens = 2001;
	assert_false(riskctl_gain_called(&pr, pts, 8, 2));
	pr.gain_tokens = 2000;
	assert_true(riskctl_gain_called(&pr, pts, 8, 2));
	/* The end itself is never a changed stop. */
	assert_false(riskctl_gain_called(&pr, gain_traj, 8, 7));
}

/* With riskctl.gain a changed stop called a gain goes to ggain, another to gchg, and the rule
 * bounds gchg - ggain (at least 0): a point whose changes are offset by as many gains is proven
 * where the change rate alone is over the target.  The counts restart when the gain mode
 * changes (the key, or gain_tokens while on). */
static void
test_gain_counts_and_restart(void **state)
{
	struct riskctl_params pr;
	struct riskctl_state s = { 0 };
	int i;

	(void)state;
	grid_params(&pr);
	pr.frozen = true;
	pr.gain_tokens = 4000;
	/* Off: both changes count. */
	riskctl_observe_cf(&pr, &s, 0.5, gain_traj, 8, NULL, true, true, 1);
	riskctl_observe_cf(&pr, &s, 0.5, loss_traj, 8, NULL, true, true, 1);
	assert_int_equal(s.gchg[4], 2);
	assert_int_equal(s.ggain[4], 0);
	assert_int_equal(riskctl_grid_changes(&s, 4), 2);
	/* On: restart; the gain offsets the loss. */
	pr.gain = true;
	riskctl_observe_cf(&pr, &s, 0.5, gain_traj, 8, NULL, true, true, 1);
	assert_int_equal(s.ggainm, 4000);
	assert_int_equal(s.gtot, 1);
	assert_int_equal(s.gobs[4], 1);
	assert_int_equal(s.gchg[4], 0);
	assert_int_equal(s.ggain[4], 1);
	assert_int_equal(s.ggain[2], 1);
	assert_int_equal(s.ggain[1], 0);    /* -1 runs to the end: no change */
	assert_int_equal(riskctl_grid_changes(&s, 4), 0);
	riskctl_observe_cf(&pr, &s, 0.5, loss_traj, 8, NULL, true, true, 1);
	assert_int_equal(s.gchg[4], 1);
	assert_int_equal(riskctl_grid_changes(&s, 4), 0);
	riskctl_observe_cf(&pr, &s, 0.5, loss_traj, 8, NULL, true, true, 1);
	assert_int_equal(riskctl_grid_changes(&s, 4), 1);
	/* The pick rule bounds the net count: 30 programs, 6 changes and 6 gains at +2 is
	 * proven at target 0.1 (UCB(0, 30) = 0.074); the change count alone is not. */
	pr.frozen = false;
	pr.target = 0.1;
	pr.min_samples = 20;
	pr.window = 100;
	s.shift = 0;
	s.gtot = 30;
	for (i = 0; i < 5; i++)
		s.gobs[i] = s.gchg[i] = s.ggain[i] = 0;
	s.gobs[3] = s.gobs[4] = 12;
	s.gchg[3] = s.gchg[4] = 6;
	s.ggain[3] = s.ggain[4] = 6;
	assert_true(riskctl_cp_upper(6, 30, 0.9) > 0.1);
	assert_int_equal(riskctl_pick_shift(&pr, &s), RISKCTL_SAVE);
	assert_true(s.shift == 2);
	/* Without the gains the same changes are clearly over (LCB(6, 30) > 0.1): back. */
	s.ggain[3] = s.ggain[4] = 0;
	assert_true(riskctl_cp_lower(6, 30, 0.9) > 0.1);
	assert_int_equal(riskctl_pick_shift(&pr, &s), RISKCTL_BACK);
	/* Another gain_tokens: counts restart. */
	pr.frozen = true;
	pr.gain_tokens = 6000;
	riskctl_observe_cf(&pr, &s, 0.5, gain_traj, 8, NULL, true, true, 1);
	assert_int_equal(s.ggainm, 6000);
	assert_int_equal(s.gtot, 1);
	assert_int_equal(s.ggain[4], 0);    /* 5000 tokens < 6000: a change */
	assert_int_equal(s.gchg[4], 1);
	/* The key off: restart, mode 0. */
	pr.gain = false;
	assert_int_equal(riskctl_observe_excluded(&pr, &s), RISKCTL_HOLD);
	assert_int_equal(s.ggainm, 0);
	assert_int_equal(s.gtot, 1);
	assert_int_equal(s.gchg[4], 0);
}

/* The policy keys riskctl.gain and riskctl.gain_tokens. */
static void
test_gain_policy_keys(void **state)
{
	struct sched_policy p;
	struct riskctl_params pr;
	char err[256];
	const char *t = "riskctl.gain = 1\nriskctl.gain_tokens = 2500\n";

	(void)state;
	sched_policy_default(&p);
	assert_int_equal(p.riskctl_gain, 0);
	assert_int_equal(p.riskctl_gain_tokens, 4000);
	riskctl_params_from_policy(&p, SCHED_ALGO_COT, &pr);
	assert_false(pr.gain);
	assert_int_equal(policy_parse(t, strlen(t), NULL, &p, err, sizeof err), 0);
	riskctl_params_from_policy(&p, SCHED_ALGO_COT, &pr);
	assert_true(pr.gain);
	assert_int_equal(pr.gain_tokens, 2500);
	/* cot only: sc keeps the change rate. */
	riskctl_params_from_policy(&p, SCHED_ALGO_SC, &pr);
	assert_false(pr.gain);
	t = "riskctl.gain = 2\n";
	assert_int_equal(policy_parse(t, strlen(t), NULL, &p, err, sizeof err), CERTA_ECONFIG);
	assert_non_null(strstr(err, "riskctl.gain"));
	t = "riskctl.gain_tokens = 0\n";
	assert_int_equal(policy_parse(t, strlen(t), NULL, &p, err, sizeof err), CERTA_ECONFIG);
	assert_non_null(strstr(err, "riskctl.gain_tokens"));
	t = "riskctl.gain_tokens = 1048577\n";
	assert_int_equal(policy_parse(t, strlen(t), NULL, &p, err, sizeof err), CERTA_ECONFIG);
	assert_non_null(strstr(err, "riskctl.gain_tokens"));
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
		cmocka_unit_test(test_cf_grid_update),
		cmocka_unit_test(test_cf_pick_rule),
		cmocka_unit_test(test_cf_known_rate_stream),
		cmocka_unit_test(test_cf_boost_stream),
		cmocka_unit_test(test_cf_sample_frac_rule),
		cmocka_unit_test(test_cf_hold_confidence),
		cmocka_unit_test(test_harm_end_trusted),
		cmocka_unit_test(test_harm_counts_and_restart),
		cmocka_unit_test(test_harm_policy_keys),
		cmocka_unit_test(test_gain_called),
		cmocka_unit_test(test_gain_counts_and_restart),
		cmocka_unit_test(test_gain_policy_keys),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
