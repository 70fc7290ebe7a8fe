/* sched.c — the program-level decision: continue or stop, and with which answer. */
#include "scheduler/sched.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/error.h"
#include "scheduler/answer.h"
#include "scheduler/certainty.h"
#include "scheduler/chainlen.h"
#include "scheduler/difficulty.h"
#include "scheduler/problevel.h"
#include "scheduler/riskctl.h"

/* Calibrated on the dev traces (certa-eval calibrate); keep equal to policy/default.policy
 * (tests/unit/test_policy.c checks). */
#define SCHED_DEFAULT_PROBE_STRIDE 0.2
#define SCHED_DEFAULT_MAX_STEP 512
#define SCHED_DEFAULT_EXPECTED 4096
#define SCHED_DEFAULT_COT_THRESHOLD 0.985
#define SCHED_DEFAULT_SC_THRESHOLD 0.92
#define SCHED_DEFAULT_UNPROMISING 16384
#define SCHED_DEFAULT_SC_UNPROMISING 24576
/* sc.vote_threshold: off (measured, docs/certainty.md "Tried and rejected"). */
#define SCHED_DEFAULT_SC_VOTE_THRESHOLD 1.5
/* Difficulty classes: off, equal thresholds (scheduler/difficulty.h). */
#define SCHED_DEFAULT_DIFFICULTY_TOKENS 0
#define SCHED_DEFAULT_DIFFICULTY_CHANGES 2
#define SCHED_DEFAULT_COT_THRESHOLD_EASY SCHED_DEFAULT_COT_THRESHOLD
#define SCHED_DEFAULT_COT_THRESHOLD_HARD SCHED_DEFAULT_COT_THRESHOLD
static const double sched_default_cot_w[SCHED_COT_NFEAT] = {
	-1.32483, 0.279417, 1.29702, 0.684703, 0.321475,
	1.04443, 0.962297, 0.0757538, -0.157874, 0,
	-0.231173, 0.518331, 2.66386, -2.9627, 0, 0,
};
static const double sched_default_sc_w[SCHED_SC_NFEAT] = {
	-4.23324, 3.21435, -0.181214, 3.45547, -0.247236,
	2.33982, -1.03418,
};

double
sched_token_unit(const struct sched_policy *p)
{
	if (!p->unpromising_relative || p->model_tokens == 0)
		return 1.0;
	return (double)p->model_tokens / 4096.0;
}

uint64_t
sched_unpromising_tokens(const struct sched_policy *p, uint64_t tokens)
{
	double unit = sched_token_unit(p);

	return unit == 1.0 ? tokens : (uint64_t)((double)tokens / unit);
}

double
sched_cot_threshold_at(double threshold, double slope, uint64_t most)
{
	double pos, t;

	if (slope == 0 || threshold > 1)
		return threshold;
	pos = (double)most / 4096.0;
	if (pos > 4)
		pos = 4;
	t = threshold + slope * (pos - 1.0);
	return t < 0 ? 0 : t > 1 ? 1 : t;
}

void
sched_policy_default(struct sched_policy *p)
{
	memset(p, 0, sizeof *p);
	p->step_tokens = 64;
	p->default_budget = 16384;
	p->default_sc_n = 3;
	p->max_sc_n = 16;
	p->max_budget = 1u << 20;
	p->probe_stride = SCHED_DEFAULT_PROBE_STRIDE;
	p->max_step_tokens = SCHED_DEFAULT_MAX_STEP;
	p->expected_tokens = SCHED_DEFAULT_EXPECTED;
	p->hesitation_window = 600;
	memcpy(p->cot_w, sched_default_cot_w, sizeof p->cot_w);
	memcpy(p->sc_w, sched_default_sc_w, sizeof p->sc_w);
	p->cot_threshold = SCHED_DEFAULT_COT_THRESHOLD;
	p->sc_threshold = SCHED_DEFAULT_SC_THRESHOLD;
	p->unpromising_tokens = SCHED_DEFAULT_UNPROMISING;
	p->sc_unpromising_tokens = SCHED_DEFAULT_SC_UNPROMISING;
	p->settle_closed = 1;
	p->sc_vote_threshold = SCHED_DEFAULT_SC_VOTE_THRESHOLD;
	p->unpromising_relative = 1;   /* model_tokens: certa-eval per model, certad learns it */
	p->extend_frac = 0.25;
	p->extend_min = 0.5;
	p->starvation_ms = 30000;
	p->riskctl_target = 0.07;
	p->riskctl_sc_target = 0.07;
	p->riskctl_shadow_frac = 0;
	p->riskctl_confidence = 0.9;
	p->riskctl_step = 0.5;
	p->riskctl_min_shift = -2;
	p->riskctl_max_shift = 2;
	p->riskctl_min_samples = 20;
	p->riskctl_window = 100;
	p->riskctl_frozen = 0;
	p->riskctl_shadow_boost = 0;
	p->riskctl_hold_confidence = 0.9;
	p->riskctl_harm = 0;
	p->riskctl_harm_stable = 2;
	p->riskctl_gain = 0;
	p->riskctl_gain_tokens = 4000;
	p->difficulty_tokens = SCHED_DEFAULT_DIFFICULTY_TOKENS;
	p->difficulty_changes = SCHED_DEFAULT_DIFFICULTY_CHANGES;
	p->cot_threshold_easy = SCHED_DEFAULT_COT_THRESHOLD_EASY;
	p->cot_threshold_hard = SCHED_DEFAULT_COT_THRESHOLD_HARD;
	p->model_tokens_min_samples = 20;
	p->model_confidence_min_samples = 20;
}

/* The riskctl.* keys (scheduler/riskctl.h) and the difficulty keys (scheduler/difficulty.h). */
static int
sched_policy_validate_riskctl(const struct sched_policy *p, char *msg, size_t msglen)
{
	const char *bad = NULL, *range = NULL;
	double v = 0;

	if (!(p->riskctl_target > 0 && p->riskctl_target < 1))
		bad = "riskctl.target", range = "(0, 1)", v = p->riskctl_target;
	else if (!(p->riskctl_sc_target > 0 && p->riskctl_sc_target < 1))
		bad = "riskctl.sc_target", range = "(0, 1)", v = p->riskctl_sc_target;
	else if (!(p->riskctl_shadow_frac >= 0 && p->riskctl_shadow_frac <= 1))
		bad = "riskctl.shadow_frac", range = "[0, 1]", v = p->riskctl_shadow_frac;
	else if (!(p->riskctl_confidence >= 0.5 && p->riskctl_confidence <= 0.9999))
		bad = "riskctl.confidence", range = "[0.5, 0.9999]", v = p->riskctl_confidence;
	else if (!(p->riskctl_step > 0 && p->riskctl_step <= 4))
		bad = "riskctl.step", range = "(0, 4]", v = p->riskctl_step;
	else if (!(p->riskctl_min_shift >= -8 && p->riskctl_min_shift <= 0))
		bad = "riskctl.min_shift", range = "[-8, 0]", v = p->riskctl_min_shift;
	else if (!(p->riskctl_max_shift >= 0 && p->riskctl_max_shift <= 8))
		bad = "riskctl.max_shift", range = "[0, 8]", v = p->riskctl_max_shift;
	else if (p->riskctl_min_samples < 1 || p->riskctl_min_samples > 100000)
		bad = "riskctl.min_samples", range = "[1, 100000]", v = p->riskctl_min_samples;
	else if (p->riskctl_window < p->riskctl_min_samples || p->riskctl_window > 1000000)
		bad = "riskctl.window", range = "[riskctl.min_samples, 1000000]",
		v = p->riskctl_window;
	else if (p->riskctl_frozen > 1)
		bad = "riskctl.frozen", range = "[0, 1]", v = p->riskctl_frozen;
	else if (!(p->riskctl_shadow_boost >= 0 && p->riskctl_shadow_boost <= 1))
		bad = "riskctl.shadow_boost", range = "[0, 1]", v = p->riskctl_shadow_boost;
	else if (!(p->riskctl_hold_confidence >= 0.5 && p->riskctl_hold_confidence <= 0.9999))
		bad = "riskctl.hold_confidence", range = "[0.5, 0.9999]",
		v = p->riskctl_hold_confidence;
	else if (p->riskctl_harm > 1)
		bad = "riskctl.harm", range = "[0, 1]", v = p->riskctl_harm;
	else if (p->riskctl_harm_stable > 64)
		bad = "riskctl.harm_stable", range = "[0, 64]", v = p->riskctl_harm_stable;
	else if (p->riskctl_gain > 1)
		bad = "riskctl.gain", range = "[0, 1]", v = p->riskctl_gain;
	else if (p->riskctl_gain_tokens < 1 || p->riskctl_gain_tokens > (1u << 20))
		bad = "riskctl.gain_tokens", range = "[1, 1048576]", v = p->riskctl_gain_tokens;
	else if (p->difficulty_tokens > (1u << 20))
		bad = "difficulty.tokens", range = "[0, 1048576]", v = (double)p->difficulty_tokens;
	else if (p->difficulty_changes > 64)
		bad = "difficulty.changes", range = "[0, 64]", v = p->difficulty_changes;
	else if (!(p->cot_threshold_easy >= 0 && p->cot_threshold_easy <= 2))
		bad = "cot.threshold_easy", range = "[0, 2] (above 1 disables)",
		v = p->cot_threshold_easy;
	else if (!(p->cot_threshold_hard >= 0 && p->cot_threshold_hard <= 2))
		bad = "cot.threshold_hard", range = "[0, 2] (above 1 disables)",
		v = p->cot_threshold_hard;
	else if (!(p->sc_vote_threshold >= 0 && p->sc_vote_threshold <= 2))
		bad = "sc.vote_threshold", range = "[0, 2] (above 1 disables)",
		v = p->sc_vote_threshold;
	else if (!(p->cot_threshold_slope >= -1 && p->cot_threshold_slope <= 1))
		bad = "cot.threshold_slope", range = "[-1, 1]", v = p->cot_threshold_slope;
	else if (!(p->model_confidence >= 0 && p->model_confidence < 1))
		bad = "model_confidence", range = "[0, 1) (0: 0.5)", v = p->model_confidence;
	if (bad == NULL)
		return 0;
	snprintf(msg, msglen, "%s: %g is out of range %s", bad, v, range);
	return CERTA_EINVAL;
}

int
sched_policy_validate(const struct sched_policy *p, char *msg, size_t msglen)
{
	if (p->model_tokens_min_samples > CHAINLEN_CAP) {
		snprintf(msg, msglen, "model_tokens.min_samples: %u is out of range [0, %u]",
		    p->model_tokens_min_samples, (unsigned)CHAINLEN_CAP);
		return CERTA_EINVAL;
	}
	if (p->model_confidence_min_samples > PROBLEVEL_CAP) {
		snprintf(msg, msglen, "model_confidence.min_samples: %u is out of range [0, %u]",
		    p->model_confidence_min_samples, (unsigned)PROBLEVEL_CAP);
		return CERTA_EINVAL;
	}
	if (p->unpromising_relative > 1) {
		snprintf(msg, msglen, "unpromising_relative: %u is out of range [0, 1]",
		    p->unpromising_relative);
		return CERTA_EINVAL;
	}
	if (p->sc_staged > 2) {
		snprintf(msg, msglen, "sc.staged: %u is out of range [0, 2]", p->sc_staged);
		return CERTA_EINVAL;
	}
	if (p->settle_closed > 1) {
		snprintf(msg, msglen, "settle_closed: %u is out of range [0, 1]", p->settle_closed);
		return CERTA_EINVAL;
	}
	if (p->step_tokens < 1 || p->step_tokens > 4096) {
		snprintf(msg, msglen, "step_tokens: %u is out of range [1, 4096]", p->step_tokens);
		return CERTA_EINVAL;
	}
	if (p->max_sc_n < 1 || p->max_sc_n > 64) {
		snprintf(msg, msglen, "max_sc_n: %u is out of range [1, 64]", p->max_sc_n);
		return CERTA_EINVAL;
	}
	if (p->default_sc_n < 1 || p->default_sc_n > p->max_sc_n) {
		snprintf(msg, msglen, "default_sc_n: %u is out of range [1, max_sc_n=%u]",
		    p->default_sc_n, p->max_sc_n);
		return CERTA_EINVAL;
	}
	if (p->max_budget < p->step_tokens) {
		snprintf(msg, msglen, "max_budget: %llu is below step_tokens %u",
		    (unsigned long long)p->max_budget, p->step_tokens);
		return CERTA_EINVAL;
	}
	if (p->default_budget < p->step_tokens || p->default_budget > p->max_budget) {
		snprintf(msg, msglen, "default_budget: %llu is out of range [step_tokens=%u, "
		    "max_budget=%llu]", (unsigned long long)p->default_budget, p->step_tokens,
		    (unsigned long long)p->max_budget);
		return CERTA_EINVAL;
	}
	if (!(p->probe_stride >= 0 && p->probe_stride <= 1)) {
		snprintf(msg, msglen, "probe_stride: %g is out of range [0, 1]", p->probe_stride);
		return CERTA_EINVAL;
	}
	if (p->max_step_tokens < p->step_tokens || p->max_step_tokens > 65536) {
		snprintf(msg, msglen, "max_step_tokens: %u is out of range [step_tokens=%u, 65536]",
		    p->max_step_tokens, p->step_tokens);
		return CERTA_EINVAL;
	}
	if (p->expected_tokens < 1) {
		snprintf(msg, msglen, "expected_tokens: must be at least 1");
		return CERTA_EINVAL;
	}
	if (!(p->cot_threshold >= 0 && p->cot_threshold <= 2) ||
	    !(p->sc_threshold >= 0 && p->sc_threshold <= 2)) {
		snprintf(msg, msglen, "%s: %g is out of range [0, 2] (above 1 disables)",
		    !(p->cot_threshold >= 0 && p->cot_threshold <= 2) ? "cot.threshold" :
		    "sc.threshold", !(p->cot_threshold >= 0 && p->cot_threshold <= 2) ?
		    p->cot_threshold : p->sc_threshold);
		return CERTA_EINVAL;
	}
	if (!(p->extend_frac >= 0 && p->extend_frac <= 4) ||
	    !(p->extend_min >= 0 && p->extend_min <= 2)) {
		snprintf(msg, msglen, "extend_frac/extend_min: out of range ([0, 4], [0, 2])");
		return CERTA_EINVAL;
	}
	if (p->starvation_ms < 0) {
		snprintf(msg, msglen, "starvation_ms: %lld is negative", (long long)p->starvation_ms);
		return CERTA_EINVAL;
	}
	return sched_policy_validate_riskctl(p, msg, msglen);
}

size_t
sched_sc_started(const struct sched_policy *p, size_t n)
{
	return p->sc_staged && n >= 3 ? n / 2 + 1 : n;
}

uint64_t
sched_tokens_used(const struct sched_view *v)
{
	uint64_t t = 0;
	size_t i;

	for (i = 0; i < v->nchains; i++)
		t += v->chains[i].tokens;
	return t;
}

const char *
sched_chain_answer(const struct sched_chain *c)
{
	if (c->finished && c->final_answer != NULL && c->final_answer[0] != '\0')
		return c->final_answer;
	return c->answer != NULL ? c->answer : "";
}

bool
sched_vote(const struct sched_view *v, size_t *winner, double *agreement)
{
	size_t i, j, best = 0, best_votes = 0, voters = 0;

	for (i = 0; i < v->nchains; i++) {
		const char *a = sched_chain_answer(&v->chains[i]);
		size_t votes = 0;
		bool seen = false;

		if (a[0] == '\0')
			continue;
		voters++;
		/* Count each distinct answer once, at its first chain. */
		for (j = 0; j < i && !seen; j++)
			seen = answer_equivalent(sched_chain_answer(&v->chains[j]), a);
		if (seen)
			continue;
		for (j = i; j < v->nchains; j++) {
			const char *b = sched_chain_answer(&v->chains[j]);
			if (b[0] != '\0' && answer_equivalent(a, b))
				votes++;
		}
		if (votes > best_votes) {
			best_votes = votes;
			best = i;
		}
	}
	if (voters == 0)
		return false;
	*winner = best;
	*agreement = (double)best_votes / (double)voters;
	return true;
}

/* Tokens per chain for the next step: the probe spacing grows with the tokens already spent
 * (probes cost tokens), in multiples of step_tokens, capped by max_step_tokens. */
static uint32_t
sched_step_size(const struct sched_policy *p, const struct sched_view *v)
{
	uint64_t most = 0, step = p->step_tokens;
	size_t i;

	for (i = 0; i < v->nchains; i++)
		if (!v->chains[i].finished && v->chains[i].tokens > most)
			most = v->chains[i].tokens;
	if (p->probe_stride > 0 && p->step_tokens > 0) {
		uint64_t s = (uint64_t)(p->probe_stride * (double)most);
		s -= s % p->step_tokens;
		if (s > step)
			step = s;
	}
	if (step > p->max_step_tokens)
		step = p->max_step_tokens >= p->step_tokens ? p->max_step_tokens : p->step_tokens;
	return (uint32_t)step;
}

/* Moves the optional caller-kept state machine and records the state in the decision. */
static void
sched_enter(const struct sched_view *v, struct sched_decision *out, enum sched_pstate to)
{
	if (v->state != NULL)
		sched_set_state(v->state, to);
	out->state = to;
}

static void
sched_stop(const struct sched_view *v, struct sched_decision *out, enum sched_reason r,
    enum sched_pstate st, bool low)
{
	out->stop = true;
	out->reason = r;
	out->low_confidence = low;
	out->step_tokens = 0;
	sched_enter(v, out, st);
}

static enum sched_reason
sched_state_reason(enum sched_pstate s)
{
	switch (s) {
	case SCHED_PS_STOP_CERTAIN: return SCHED_REASON_CERTAIN;
	case SCHED_PS_STOP_UNPROMISING: return SCHED_REASON_UNPROMISING;
	case SCHED_PS_STOP_BUDGET: return SCHED_REASON_BUDGET;
	case SCHED_PS_STOP_DEADLINE: return SCHED_REASON_DEADLINE;
	case SCHED_PS_STOP_NATURAL: return SCHED_REASON_NATURAL_END;
	default: return SCHED_REASON_NONE;
	}
}

/* The Dynasor-CoT baseline (sched_policy.dynasor_k): whether every unfinished chain's last
 * k probe answers agree, valid and without hesitation. */
static bool
sched_dynasor(const struct sched_policy *p, const struct sched_view *v)
{
	size_t i, j, open = 0;

	for (i = 0; i < v->nchains; i++) {
		const struct sched_chain *c = &v->chains[i];
		const char *last;

		if (c->finished)
			continue;
		open++;
		if (c->nprobes < p->dynasor_k)
			return false;
		last = c->probes[c->nprobes - 1].answer;
		for (j = c->nprobes - p->dynasor_k; j < c->nprobes; j++) {
			const char *a = c->probes[j].answer;

			if (a == NULL || a[0] == '\0' || certainty_probe_hesitant(a) ||
			    (strcmp(a, last) != 0 && !answer_equivalent(a, last)))
				return false;
		}
	}
	return open > 0;
}

void
sched_decide(const struct sched_policy *p, const struct sched_view *v,
    struct sched_decision *out)
{
	(void)sched_decide_chains(p, v, out, NULL);
}

size_t
sched_decide_chains(const struct sched_policy *p, const struct sched_view *v,
    struct sched_decision *out, struct certainty_chain *chains_out)
{
	uint64_t used = sched_tokens_used(v), left, budget = v->budget, most = 0, unpromising;
	struct certainty_program cp;
	size_t i, active = 0, evaluated;
	double agreement = 0, threshold;
	size_t winner = 0;
	bool have;

	memset(out, 0, sizeof *out);
	/* The unpromising bound reads the longest unfinished chain (the chains advance together,
	 * so that is the longest chain, except after a staged launch: the late chains count from
	 * their own start). */
	for (i = 0; i < v->nchains; i++)
		if (!v->chains[i].finished) {
			active++;
			if (v->chains[i].tokens > most)
				most = v->chains[i].tokens;
		}
	certainty_program_eval(p, v, &cp, chains_out);
	evaluated = v->nchains < CERTAINTY_PROGRAM_MAX_CHAINS ? v->nchains :
	    CERTAINTY_PROGRAM_MAX_CHAINS;
	out->features = cp.features;
	out->certaindex = cp.certaindex;
	out->answer_chain = cp.answer_chain;
	out->answer = cp.answer;
	out->agreement = cp.agreement;

	/* Once stopped, stay stopped (a repeated call answers the same). */
	if (v->state != NULL && sched_state_terminal(v->state->state)) {
		out->stop = true;
		out->reason = sched_state_reason(v->state->state);
		out->state = v->state->state;
		out->low_confidence = out->reason != SCHED_REASON_CERTAIN &&
		    out->reason != SCHED_REASON_NATURAL_END;
		return evaluated;
	}
	if (active == 0 && (v->pending == 0 || v->algo != SCHED_ALGO_SC)) {
		/* Natural end: the plain majority vote over final answers. */
		have = sched_vote(v, &winner, &agreement);
		out->answer_chain = winner;
		out->answer = have ? sched_chain_answer(&v->chains[winner]) : "";
		out->agreement = have ? agreement : 0;
		out->certaindex = v->algo == SCHED_ALGO_SC ? out->agreement : 1.0;
		out->features.certaindex = out->certaindex;
		out->features.agreement = out->agreement;
		sched_stop(v, out, SCHED_REASON_NATURAL_END, SCHED_PS_STOP_NATURAL, false);
		return evaluated;
	}
	if (v->deadline_ms > 0 && v->now_ms >= v->deadline_ms) {
		sched_stop(v, out, SCHED_REASON_DEADLINE, SCHED_PS_STOP_DEADLINE, true);
		return evaluated;
	}
	if (v->algo == SCHED_ALGO_SC && v->nchains + v->pending > 1) {
		threshold = p->sc_threshold;
		unpromising = p->sc_unpromising_tokens;
	} else {
		threshold = p->cot_threshold;
		unpromising = p->unpromising_tokens;
		if (p->difficulty_tokens > 0 && v->nchains > 0) {
			enum difficulty_class cls = difficulty_of_chain(p, &v->chains[0], v->problem);
			out->difficulty = (uint32_t)cls;
			threshold = difficulty_threshold(p, cls);
		}
		threshold = sched_cot_threshold_at(threshold, p->cot_threshold_slope,
		    sched_unpromising_tokens(p, most));
	}
	if (v->threshold_shift != 0)
		threshold = riskctl_threshold(threshold, v->threshold_shift);
	out->threshold = threshold;
	if (p->dynasor_k > 0 && sched_dynasor(p, v)) {
		sched_stop(v, out, SCHED_REASON_CERTAIN, SCHED_PS_STOP_CERTAIN, false);
		return evaluated;
	}
	/* A staged sc program stops certain only on a decided vote (sched_view.staged). */
	if (cp.any_valid && cp.answer[0] != '\0' && (cp.decided_final ||
	    (cp.certaindex >= threshold && (!(v->staged || v->pending > 0) || cp.decided)))) {
		sched_stop(v, out, SCHED_REASON_CERTAIN, SCHED_PS_STOP_CERTAIN, false);
		return evaluated;
	}
	/* in model-relative units with unpromising_relative (sched_unpromising_tokens) */
	if (unpromising > 0 && sched_unpromising_tokens(p, most) >= unpromising) {
		sched_stop(v, out, SCHED_REASON_UNPROMISING, SCHED_PS_STOP_UNPROMISING, true);
		return evaluated;
	}
	if (used >= budget) {
		uint64_t ext = (uint64_t)((double)budget * (1.0 + p->extend_frac));
		if (p->extend_frac > 0 && cp.certaindex >= p->extend_min && used < ext) {
			budget = ext;
			out->extended = true;
		} else {
			sched_stop(v, out, SCHED_REASON_BUDGET, SCHED_PS_STOP_BUDGET, true);
			return evaluated;
		}
	}
	sched_enter(v, out, out->extended ? SCHED_PS_EXTENDED :
	    cp.any_valid ? SCHED_PS_EXPLORING : SCHED_PS_WARMUP);
	/* Staged sc: the started chains cannot decide the vote alone any more (after the
	 * certain and unpromising rules: a hopeless program is not given more chains). */
	if (v->algo == SCHED_ALGO_SC && v->pending > 0 && (cp.stalled || active == 0)) {
		out->launch = true;
		active += v->pending;
	}
	/* Spread what is left of the budget over the unfinished chains, one step at a time. */
	left = (budget - used) / active;
	out->step_tokens = sched_step_size(p, v);
	if (left < out->step_tokens)
		out->step_tokens = left > 0 ? (uint32_t)left : 1;
	return evaluated;
}

/* Legal policy-state transitions, [from][to] (from == to is always legal). */
static const bool sched_transitions[SCHED_PS_COUNT][SCHED_PS_COUNT] = {
	[SCHED_PS_NEW] = {
		[SCHED_PS_WARMUP] = true, [SCHED_PS_EXPLORING] = true, [SCHED_PS_EXTENDED] = true,
		[SCHED_PS_STOP_CERTAIN] = true, [SCHED_PS_STOP_UNPROMISING] = true,
		[SCHED_PS_STOP_BUDGET] = true, [SCHED_PS_STOP_DEADLINE] = true,
		[SCHED_PS_STOP_NATURAL] = true,
	},
	[SCHED_PS_WARMUP] = {
		[SCHED_PS_EXPLORING] = true, [SCHED_PS_EXTENDED] = true,
		[SCHED_PS_STOP_CERTAIN] = true, [SCHED_PS_STOP_UNPROMISING] = true,
		[SCHED_PS_STOP_BUDGET] = true, [SCHED_PS_STOP_DEADLINE] = true,
		[SCHED_PS_STOP_NATURAL] = true,
	},
	[SCHED_PS_EXPLORING] = {
		[SCHED_PS_EXTENDED] = true,
		[SCHED_PS_STOP_CERTAIN] = true, [SCHED_PS_STOP_UNPROMISING] = true,
		[SCHED_PS_STOP_BUDGET] = true, [SCHED_PS_STOP_DEADLINE] = true,
		[SCHED_PS_STOP_NATURAL] = true,
	},
	[SCHED_PS_EXTENDED] = {
		[SCHED_PS_STOP_CERTAIN] = true, [SCHED_PS_STOP_UNPROMISING] = true,
		[SCHED_PS_STOP_BUDGET] = true, [SCHED_PS_STOP_DEADLINE] = true,
		[SCHED_PS_STOP_NATURAL] = true,
	},
};

static const char *const sched_state_names[SCHED_PS_COUNT] = {
	[SCHED_PS_NEW] = "new",
	[SCHED_PS_WARMUP] = "warmup",
	[SCHED_PS_EXPLORING] = "exploring",
	[SCHED_PS_EXTENDED] = "extended",
	[SCHED_PS_STOP_CERTAIN] = "stop_certain",
	[SCHED_PS_STOP_UNPROMISING] = "stop_unpromising",
	[SCHED_PS_STOP_BUDGET] = "stop_budget",
	[SCHED_PS_STOP_DEADLINE] = "stop_deadline",
	[SCHED_PS_STOP_NATURAL] = "stop_natural",
};

const char *
sched_state_name(enum sched_pstate s)
{
	return (unsigned)s < SCHED_PS_COUNT ? sched_state_names[s] : "unknown";
}

bool
sched_state_terminal(enum sched_pstate s)
{
	return s >= SCHED_PS_STOP_CERTAIN && s < SCHED_PS_COUNT;
}

bool
sched_state_legal(enum sched_pstate from, enum sched_pstate to)
{
	if ((unsigned)from >= SCHED_PS_COUNT || (unsigned)to >= SCHED_PS_COUNT)
		return false;
	return from == to || sched_transitions[from][to];
}

/* An illegal move means the caller fed the machine a history that went backwards: a bug. */
void
sched_set_state(struct sched_state *s, enum sched_pstate to)
{
	if (!sched_state_legal(s->state, to)) {
		fprintf(stderr, "[sched] BUG: illegal policy state transition %s -> %s\n",
		    sched_state_name(s->state), sched_state_name(to));
		abort();
	}
	s->state = to;
}

double
sched_remaining_work(const struct sched_policy *p, const struct sched_view *v,
    double certaindex)
{
	double left = 0, c = certaindex < 0 ? 0 : (certaindex > 1 ? 1 : certaindex);
	size_t i;

	for (i = 0; i < v->nchains; i++) {
		const struct sched_chain *ch = &v->chains[i];
		double l;
		if (ch->finished)
			continue;
		l = (double)p->expected_tokens - (double)ch->tokens;
		if (l < (double)p->step_tokens)
			l = (double)p->step_tokens;
		left += l;
	}
	return left * (1.0 - c);
}

void
sched_rank(const struct sched_policy *p, const struct sched_rank_item *items, size_t n,
    int64_t now_ms, size_t *order)
{
	size_t i, j;

	for (i = 0; i < n; i++)
		order[i] = i;
	/* Insertion sort: stable, no allocation, n is the ready queue (small). */
	for (i = 1; i < n; i++) {
		size_t cur = order[i];
		const struct sched_rank_item *a = &items[cur];
		bool a_starved = now_ms - a->waiting_since_ms >= p->starvation_ms;
		double a_work = sched_remaining_work(p, a->view, a->certaindex);

		for (j = i; j > 0; j--) {
			const struct sched_rank_item *b = &items[order[j - 1]];
			bool b_starved = now_ms - b->waiting_since_ms >= p->starvation_ms;
			bool before;

			if (a->priority != b->priority)
				before = a->priority > b->priority;
			else if (a_starved != b_starved)
				before = a_starved;
			else if (a_starved)
				before = a->waiting_since_ms < b->waiting_since_ms;
			else {
				double b_work = sched_remaining_work(p, b->view, b->certaindex);
				before = a_work < b_work ||
				    (a_work == b_work && a->waiting_since_ms < b->waiting_since_ms);
			}
			if (!before)
				break;
			order[j] = order[j - 1];
		}
		order[j] = cur;
	}
}

static const char *const sched_reason_names[] = {
	[SCHED_REASON_NONE] = "none",
	[SCHED_REASON_CERTAIN] = "certain",
	[SCHED_REASON_BUDGET] = "budget",
	[SCHED_REASON_UNPROMISING] = "unpromising",
	[SCHED_REASON_NATURAL_END] = "natural_end",
	[SCHED_REASON_CANCELLED] = "cancelled",
	[SCHED_REASON_FAILED] = "failed",
	[SCHED_REASON_DEADLINE] = "deadline",
};

const char *
sched_reason_name(enum sched_reason r)
{
	if ((unsigned)r < sizeof sched_reason_names / sizeof sched_reason_names[0])
		return sched_reason_names[r];
	return "unknown";
}
