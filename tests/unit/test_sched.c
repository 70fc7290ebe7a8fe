/*
 * test_sched.c — sched_decide(): natural end, budget, deadline, stop-certain, sc gang stops,
 * unpromising, budget extension, probe spacing, the state machine through decisions,
 * sched_rank(), and the Dynasor-CoT baseline (dynasor_k).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "scheduler/certainty.h"
#include "scheduler/sched.h"

/* Chain certaindex = sigmoid(-3 + log2(1 + stable/64)): 0.5 at stable 448, 0.731 at 960. */
static void
test_policy(struct sched_policy *p)
{
	sched_policy_default(p);
	memset(p->cot_w, 0, sizeof p->cot_w);
	memset(p->sc_w, 0, sizeof p->sc_w);
	p->cot_w[0] = -3;
	p->cot_w[1] = 1;
	p->sc_w[3] = 1;           /* sc: sigmoid(mean chain certaindex of the majority) */
	p->probe_stride = 0;
	p->cot_threshold = 0.7;
	p->sc_threshold = 0.7;
	p->unpromising_tokens = 0;
	p->extend_frac = 0;
}

/* A chain answering `ans` at every probe from `from` to `tokens` (64 apart), "" before. */
struct fake_chain {
	struct sched_probe probes[64];
};

static void
fake(struct sched_chain *c, struct fake_chain *f, const char *ans, uint64_t from,
    uint64_t tokens)
{
	size_t n = 0;
	uint64_t pos;

	memset(c, 0, sizeof *c);
	for (pos = 64; pos <= tokens && n < 64; pos += 64, n++) {
		f->probes[n].position = pos;
		f->probes[n].answer = pos >= from ? ans : "";
		f->probes[n].confidence = -1;
		f->probes[n].min_prob = -1;
		f->probes[n].entropy = -1;
	}
	c->tokens = tokens;
	c->answer = n > 0 ? f->probes[n - 1].answer : "";
	c->final_answer = "";
	c->probes = f->probes;
	c->nprobes = n;
}

static void
view1(struct sched_view *v, struct sched_chain *c, size_t n, enum sched_algo algo)
{
	memset(v, 0, sizeof *v);
	v->algo = algo;
	v->budget = 100000;
	v->problem = "Compute the value.";
	v->nchains = n;
	v->chains = c;
}

/* A staged sc program of three chains in its first stage: c[0..2) started, one pending. */
static void
view_staged(struct sched_view *v, struct sched_chain *c)
{
	view1(v, c, 2, SCHED_ALGO_SC);
	v->pending = 1;
	v->staged = true;
}

static void
test_natural_end(void **state)
{
	struct sched_policy p;
	struct sched_chain c[3];
	struct fake_chain f[3];
	struct sched_view v;
	struct sched_decision d;

	(void)state;
	test_policy(&p);
	fake(&c[0], &f[0], "4", 64, 128);
	fake(&c[1], &f[1], "5", 64, 128);
	fake(&c[2], &f[2], "5", 64, 128);
	c[0].finished = c[1].finished = c[2].finished = true;
	c[0].final_answer = "4";
	c[1].final_answer = "5";
	c[2].final_answer = "\\frac{10}{2}";
	view1(&v, c, 3, SCHED_ALGO_SC);
	sched_decide(&p, &v, &d);
	assert_true(d.stop);
	assert_int_equal(d.reason, SCHED_REASON_NATURAL_END);
	assert_string_equal(d.answer, "5");
	assert_int_equal(d.answer_chain, 1);
	assert_true(d.agreement > 0.66 && d.agreement < 0.67);
	assert_int_equal(d.state, SCHED_PS_STOP_NATURAL);
	assert_false(d.low_confidence);
}

static void
test_budget_and_deadline(void **state)
{
	struct sched_policy p;
	struct sched_chain c;
	struct fake_chain f;
	struct sched_view v;
	struct sched_decision d;

	(void)state;
	test_policy(&p);
	fake(&c, &f, "", 64, 640);
	view1(&v, &c, 1, SCHED_ALGO_COT);
	v.budget = 640;
	sched_decide(&p, &v, &d);
	assert_true(d.stop);
	assert_int_equal(d.reason, SCHED_REASON_BUDGET);
	assert_true(d.low_confidence);
	assert_int_equal(d.state, SCHED_PS_STOP_BUDGET);
	/* Under budget: the last step is cut to what is left. */
	v.budget = 660;
	sched_decide(&p, &v, &d);
	assert_false(d.stop);
	assert_int_equal(d.step_tokens, 20);
	assert_int_equal(d.state, SCHED_PS_WARMUP);
	/* Deadline passed. */
	v.budget = 100000;
	v.deadline_ms = 1000;
	v.now_ms = 1000;
	sched_decide(&p, &v, &d);
	assert_true(d.stop);
	assert_int_equal(d.reason, SCHED_REASON_DEADLINE);
}

static void
test_stop_certain_cot(void **state)
{
	struct sched_policy p;
	struct sched_chain c;
	struct fake_chain f;
	struct sched_view v;
	struct sched_decision d;

	(void)state;
	test_policy(&p);
	p.cot_threshold = 0.72;
	/* "42" since 64: at 960 stable is 896 -> sigmoid(-3 + log2 15) = 0.712 < 0.72. */
	fake(&c, &f, "42", 64, 960);
	view1(&v, &c, 1, SCHED_ALGO_COT);
	sched_decide(&p, &v, &d);
	assert_false(d.stop);
	assert_int_equal(d.step_tokens, 64);
	assert_int_equal(d.state, SCHED_PS_EXPLORING);
	assert_true(d.certaindex > 0.711 && d.certaindex < 0.713);
	assert_int_equal(d.features.stable_tokens, 896);
	assert_true(d.features.valid_answer);
	/* At 1024: 0.731 >= 0.72. */
	fake(&c, &f, "42", 64, 1024);
	sched_decide(&p, &v, &d);
	assert_true(d.stop);
	assert_int_equal(d.reason, SCHED_REASON_CERTAIN);
	assert_string_equal(d.answer, "42");
	assert_false(d.low_confidence);
	assert_true(d.features.certaindex == d.certaindex);
	/* A placeholder never stops certain, however stable ("3" is a number of the problem). */
	fake(&c, &f, "3", 64, 2048);
	v.problem = "Add 3 and 4.";
	sched_decide(&p, &v, &d);
	assert_false(d.stop);
	assert_true(d.certaindex == 0);
	assert_false(d.features.valid_answer);
}

static void
test_sc_gang(void **state)
{
	struct sched_policy p;
	struct sched_chain c[3];
	struct fake_chain f[3];
	struct sched_view v;
	struct sched_decision d;

	(void)state;
	test_policy(&p);
	p.sc_threshold = 0.99;
	fake(&c[0], &f[0], "8", 64, 512);
	fake(&c[1], &f[1], "8", 64, 512);
	fake(&c[2], &f[2], "6", 64, 512);
	view1(&v, c, 3, SCHED_ALGO_SC);
	sched_decide(&p, &v, &d);
	assert_false(d.stop);
	assert_string_equal(d.answer, "8");
	assert_true(d.features.entropy > 0 && d.features.entropy < 1);
	/* Two chains finish with "8": the vote is decided, all stop together. */
	c[0].finished = c[1].finished = true;
	c[0].final_answer = c[1].final_answer = "8";
	sched_decide(&p, &v, &d);
	assert_true(d.stop);
	assert_int_equal(d.reason, SCHED_REASON_CERTAIN);
	assert_string_equal(d.answer, "8");
	assert_true(d.certaindex == 1);

	/* One finished, the other agreeing chain settled (</think> and a box that agrees with
	 * its probe answer): decided too, but only while the threshold allows certainty stops. */
	c[1].finished = false;
	c[1].final_answer = "";
	c[1].thinking_done = true;
	c[1].text = "the answer is \\boxed{8}";
	c[1].text_len = strlen(c[1].text);
	v.state = NULL;
	sched_decide(&p, &v, &d);
	assert_true(d.stop);
	assert_int_equal(d.reason, SCHED_REASON_CERTAIN);
	assert_string_equal(d.answer, "8");
	p.sc_threshold = 1.5;
	sched_decide(&p, &v, &d);
	assert_false(d.stop);
	/* finished chains alone still decide with thresholds > 1 (as before) */
	c[1].finished = true;
	c[1].final_answer = "8";
	sched_decide(&p, &v, &d);
	assert_true(d.stop);
}

/* Staged sc: n = 3 starts with 2 chains (sched_sc_started); the pending one counts as an
 * unfinished chain without an answer.  Two started chains that finish (or settle) agreeing
 * decide the vote of all three; ones that end disagreeing, or without an answer, launch the
 * pending chain; the sc model never stops a staged program short of a decided vote. */
static void
test_sc_staged(void **state)
{
	struct sched_policy p;
	struct sched_chain c[3];
	struct fake_chain f[3];
	struct sched_view v;
	struct sched_decision d;
	struct certainty_program cp;

	(void)state;
	test_policy(&p);
	assert_int_equal(sched_sc_started(&p, 3), 3);   /* shipped policy: see below */
	p.sc_staged = 1;
	assert_int_equal(sched_sc_started(&p, 2), 2);
	assert_int_equal(sched_sc_started(&p, 3), 2);
	assert_int_equal(sched_sc_started(&p, 4), 3);
	assert_int_equal(sched_sc_started(&p, 5), 3);
	p.sc_threshold = 0.5;     /* the sc model alone would stop at once */
	fake(&c[0], &f[0], "8", 64, 2048);
	fake(&c[1], &f[1], "8", 64, 2048);
	fake(&c[2], &f[2], "", 64, 0);
	view_staged(&v, c);
	sched_decide(&p, &v, &d);
	assert_false(d.stop);
	assert_false(d.launch);
	assert_string_equal(d.answer, "8");
	/* the vote counts the pending chain: 2 of 3 agree */
	assert_true(fabs(d.agreement - 2.0 / 3.0) < 1e-12);
	/* unstaged, the same two chains would have stopped on the sc model */
	v.staged = false;
	v.pending = 0;
	sched_decide(&p, &v, &d);
	assert_true(d.stop);
	v.staged = true;
	v.pending = 1;
	/* one finished with "8", the other still open: it may still agree, no launch */
	c[0].finished = true;
	c[0].final_answer = "8";
	sched_decide(&p, &v, &d);
	assert_false(d.stop);
	assert_false(d.launch);
	/* the other settles agreeing: decided whatever the pending chain would say */
	c[1].thinking_done = true;
	c[1].text = "so \\boxed{8}";
	c[1].text_len = strlen(c[1].text);
	sched_decide(&p, &v, &d);
	assert_true(d.stop);
	assert_int_equal(d.reason, SCHED_REASON_CERTAIN);
	assert_string_equal(d.answer, "8");
	assert_true(d.certaindex == 1);
	/* ... it settles on another answer instead: launch, and step all three */
	fake(&c[1], &f[1], "6", 64, 2048);
	c[1].thinking_done = true;
	c[1].text = "so \\boxed{6}";
	c[1].text_len = strlen(c[1].text);
	certainty_program_eval(&p, &v, &cp, NULL);
	assert_true(cp.stalled);
	sched_decide(&p, &v, &d);
	assert_false(d.stop);
	assert_true(d.launch);
	assert_true(d.step_tokens > 0);
	/* launched: the third chain decides; its early agreement alone does not stop */
	v.nchains = 3;
	v.pending = 0;
	fake(&c[2], &f[2], "8", 64, 256);
	sched_decide(&p, &v, &d);
	assert_false(d.stop);
	assert_false(d.launch);
	c[2].finished = true;
	c[2].final_answer = "8";
	sched_decide(&p, &v, &d);
	assert_true(d.stop);
	assert_string_equal(d.answer, "8");
	/* both started chains finish without an answer: never a natural end with chains
	 * pending; they launch */
	fake(&c[0], &f[0], "", 64, 1024);
	fake(&c[1], &f[1], "", 64, 1024);
	c[0].finished = c[1].finished = true;
	view_staged(&v, c);
	sched_decide(&p, &v, &d);
	assert_false(d.stop);
	assert_true(d.launch);
	assert_true(d.step_tokens > 0);
	/* sc.staged = 2: started chains certain at cot.threshold vote as finished (staged
	 * programs only).  Chain certaindex sigmoid(-3 + log2(1 + 960/64)) = 0.731 >= 0.7. */
	p.cot_threshold = 0.7;
	p.sc_threshold = 0.99;    /* the sc model cannot stop here */
	fake(&c[0], &f[0], "8", 64, 1024);
	fake(&c[1], &f[1], "8", 64, 1024);
	sched_decide(&p, &v, &d);
	assert_false(d.stop);     /* mode 1: certain is not settled */
	p.sc_staged = 2;
	sched_decide(&p, &v, &d);
	assert_true(d.stop);
	assert_int_equal(d.reason, SCHED_REASON_CERTAIN);
	assert_string_equal(d.answer, "8");
	assert_true(d.certaindex == 1);
	p.cot_threshold = 0.75;   /* above the chains' certaindex: no vote */
	sched_decide(&p, &v, &d);
	assert_false(d.stop);
	p.cot_threshold = 0.7;
	/* an unstaged program of three is not affected */
	fake(&c[2], &f[2], "6", 64, 1024);
	v.nchains = 3;
	v.pending = 0;
	v.staged = false;
	sched_decide(&p, &v, &d);
	assert_false(d.stop);
	view_staged(&v, c);
	p.sc_staged = 1;
	/* the unpromising bound still cuts a hopeless staged program before any launch */
	fake(&c[0], &f[0], "8", 64, 4096);
	fake(&c[1], &f[1], "6", 64, 4096);
	p.sc_unpromising_tokens = 4096;
	p.unpromising_relative = 0;
	sched_decide(&p, &v, &d);
	assert_true(d.stop);
	assert_int_equal(d.reason, SCHED_REASON_UNPROMISING);
	assert_false(d.launch);
}

/* sc.vote_threshold: off by default (the decision is unchanged); on, unfinished chains whose
 * own chain certaindex reaches it vote as finished, so two certain agreeing chains decide the
 * vote (certaindex 1), still only while sc.threshold <= 1. */
static void
test_sc_vote_threshold(void **state)
{
	struct sched_policy p;
	struct sched_chain c[3];
	struct fake_chain f[3];
	struct certainty_program cp;
	struct sched_view v;
	struct sched_decision d;

	(void)state;
	test_policy(&p);
	assert_true(p.sc_vote_threshold > 1);   /* shipped off */
	p.sc_threshold = 0.99;
	/* "8" stable 1984 tokens: chain certaindex sigmoid(-3 + log2(32)) = 0.881 each */
	fake(&c[0], &f[0], "8", 64, 2048);
	fake(&c[1], &f[1], "8", 64, 2048);
	fake(&c[2], &f[2], "6", 1536, 2048);
	view1(&v, c, 3, SCHED_ALGO_SC);
	sched_decide(&p, &v, &d);
	assert_false(d.stop);
	assert_true(d.certaindex < 0.99);
	certainty_program_eval(&p, &v, &cp, NULL);
	assert_false(cp.decided);
	assert_true(fabs(cp.vote_level - 1 / (1 + exp(-2.0))) < 1e-9);
	/* above the chains' certaindex: still nothing decided */
	p.sc_vote_threshold = 0.9;
	sched_decide(&p, &v, &d);
	assert_false(d.stop);
	/* at or below it: the two certain "8" chains decide the vote */
	p.sc_vote_threshold = 0.88;
	sched_decide(&p, &v, &d);
	assert_true(d.stop);
	assert_int_equal(d.reason, SCHED_REASON_CERTAIN);
	assert_string_equal(d.answer, "8");
	assert_true(d.certaindex == 1);
	/* the sc features do not see the rule (finished share of the majority stays 0) */
	certainty_program_eval(&p, &v, &cp, NULL);
	assert_true(cp.decided);
	assert_true(cp.x[5] == 0);
	/* thresholds > 1 turn certainty stops off, the vote rule with them */
	p.sc_threshold = 1.5;
	sched_decide(&p, &v, &d);
	assert_false(d.stop);
	p.sc_threshold = 0.99;
	/* one certain chain of three cannot decide a vote with two others open; the level is
	 * where the second "8" joins (stable 512: sigmoid(-3 + log2(9)) = 0.542) */
	fake(&c[1], &f[1], "8", 1536, 2048);
	sched_decide(&p, &v, &d);
	assert_false(d.stop);
	certainty_program_eval(&p, &v, &cp, NULL);
	assert_true(fabs(cp.vote_level - 1 / (1 + exp(3 - log2(9.0)))) < 1e-9);
	/* ... but it can with a finished chain that agrees: level = its certaindex */
	c[1].finished = true;
	c[1].final_answer = "8";
	sched_decide(&p, &v, &d);
	assert_true(d.stop);
	p.sc_vote_threshold = 1.5;
	sched_decide(&p, &v, &d);
	assert_false(d.stop);
	/* a certain dissenter keeps the vote open: 8 (finished + certain) vs 6 (certain) */
	p.sc_vote_threshold = 0.5;
	fake(&c[2], &f[2], "6", 64, 2048);
	sched_decide(&p, &v, &d);
	assert_true(d.stop);   /* 2 voters for "8" > 1 for "6" + 0 open */
	fake(&c[0], &f[0], "5", 64, 2048);
	sched_decide(&p, &v, &d);
	assert_false(d.stop);  /* 8, 6, 5: no majority to decide */
}

/* cot: a settled chain stops at any threshold <= 1 and never with thresholds > 1. */
static void
test_settled_cot(void **state)
{
	struct sched_policy p;
	struct sched_chain c;
	struct fake_chain f;
	struct sched_view v;
	struct sched_decision d;

	(void)state;
	test_policy(&p);
	p.cot_threshold = 0.999;
	fake(&c, &f, "8", 448, 512);
	c.thinking_done = true;
	c.text = "so 8. </think> \\boxed{8}";
	c.text_len = strlen(c.text);
	view1(&v, &c, 1, SCHED_ALGO_COT);
	sched_decide(&p, &v, &d);
	assert_true(d.stop);
	assert_int_equal(d.reason, SCHED_REASON_CERTAIN);
	assert_string_equal(d.answer, "8");
	p.cot_threshold = 1.5;
	sched_decide(&p, &v, &d);
	assert_false(d.stop);
	p.cot_threshold = 0.999;
	p.settle_closed = 0;
	sched_decide(&p, &v, &d);
	assert_false(d.stop);
}

/* unpromising_relative: the bound counts tokens in model_tokens / 4096 units. */
static void
test_unpromising_relative(void **state)
{
	struct sched_policy p;
	struct sched_chain c;
	struct fake_chain f;
	struct sched_view v;
	struct sched_decision d;

	(void)state;
	test_policy(&p);
	p.cot_threshold = 0.99;
	p.unpromising_tokens = 2048;
	view1(&v, &c, 1, SCHED_ALGO_COT);
	/* a model twice as long (8192): 2048 tokens are 1024 units, the bound is 4096 tokens */
	p.unpromising_relative = 1;
	p.model_tokens = 8192;
	assert_true(sched_token_unit(&p) == 2.0);
	assert_int_equal(sched_unpromising_tokens(&p, 4095), 2047);
	assert_int_equal(sched_unpromising_tokens(&p, 4096), 2048);
	fake(&c, &f, "17", 1984, 2048);
	sched_decide(&p, &v, &d);
	assert_false(d.stop);
	fake(&c, &f, "17", 1984, 4032);
	sched_decide(&p, &v, &d);
	assert_false(d.stop);
	fake(&c, &f, "17", 1984, 4096);
	sched_decide(&p, &v, &d);
	assert_true(d.stop);
	assert_int_equal(d.reason, SCHED_REASON_UNPROMISING);
	/* a shorter model (2048): the bound is 1024 tokens */
	p.model_tokens = 2048;
	fake(&c, &f, "17", 1984, 1024);
	sched_decide(&p, &v, &d);
	assert_true(d.stop);
	assert_int_equal(d.reason, SCHED_REASON_UNPROMISING);
	fake(&c, &f, "17", 1984, 960);
	sched_decide(&p, &v, &d);
	assert_false(d.stop);
	/* model unknown (0), or the switch off: absolute tokens, as before */
	p.model_tokens = 0;
	assert_true(sched_token_unit(&p) == 1.0);
	fake(&c, &f, "17", 1984, 2048);
	sched_decide(&p, &v, &d);
	assert_true(d.stop);
	p.model_tokens = 8192;
	p.unpromising_relative = 0;
	assert_int_equal(sched_unpromising_tokens(&p, 4095), 4095);
	sched_decide(&p, &v, &d);
	assert_true(d.stop);
	fake(&c, &f, "17", 1984, 1984);
	sched_decide(&p, &v, &d);
	assert_false(d.stop);
}

/* cot.threshold_slope: off by default (the threshold is the same at every position); on, the
 * cot threshold moves by slope per model_tokens of chain position around the model's median
 * length, clamped to [0, 1], position capped at 4; disabled thresholds and sc stay as they are. */
static void
test_cot_threshold_slope(void **state)
{
	struct sched_policy p;
	struct sched_chain c[3];
	struct fake_chain f[3];
	struct sched_view v;
	struct sched_decision d;
	char msg[128];

	(void)state;
	test_policy(&p);
	assert_true(p.cot_threshold_slope == 0);   /* shipped off */
	p.unpromising_relative = 1;
	p.model_tokens = 1024;                      /* position = tokens / 1024 */
	view1(&v, c, 1, SCHED_ALGO_COT);
	/* late (1536 tokens, position 1.5): "17" stable 1472 tokens, sigmoid(-3 + log2(24)) */
	fake(&c[0], &f[0], "17", 64, 1536);
	p.cot_threshold = 0.84;
	sched_decide(&p, &v, &d);
	assert_true(d.certaindex > 0.82 && d.certaindex < 0.84);
	assert_false(d.stop);
	assert_true(d.threshold == 0.84);
	/* a negative slope lowers the threshold past the median: the late chain stops */
	p.cot_threshold_slope = -0.04;
	sched_decide(&p, &v, &d);
	assert_true(fabs(d.threshold - 0.82) < 1e-12);
	assert_true(d.stop);
	assert_int_equal(d.reason, SCHED_REASON_CERTAIN);
	/* ... and raises it before the median: an early stop needs more evidence (512 tokens,
	 * position 0.5, certaindex sigmoid(0) = 0.5) */
	fake(&c[0], &f[0], "17", 64, 512);
	p.cot_threshold = 0.49;
	p.cot_threshold_slope = 0;
	sched_decide(&p, &v, &d);
	assert_true(fabs(d.certaindex - 0.5) < 1e-9);
	assert_true(d.stop);
	p.cot_threshold_slope = -0.04;
	sched_decide(&p, &v, &d);
	assert_true(fabs(d.threshold - 0.51) < 1e-12);
	assert_false(d.stop);
	/* a positive slope does the opposite */
	p.cot_threshold = 0.52;
	p.cot_threshold_slope = 0.1;
	sched_decide(&p, &v, &d);
	assert_true(fabs(d.threshold - 0.47) < 1e-12);
	assert_true(d.stop);
	/* the position is model-relative: the same chain of a model twice as long is at 0.25 */
	p.model_tokens = 2048;
	sched_decide(&p, &v, &d);
	assert_true(fabs(d.threshold - 0.445) < 1e-12);
	/* clamped to [0, 1], the position capped at 4 */
	assert_true(sched_cot_threshold_at(0.9, 0.1, 4096 * 10) == 1.0);
	assert_true(fabs(sched_cot_threshold_at(0.9, -0.1, 4096 * 10) - 0.6) < 1e-12);
	assert_true(sched_cot_threshold_at(0.1, -0.1, 4096 * 4) == 0.0);
	assert_true(sched_cot_threshold_at(0.9, 0.1, 4096) == 0.9);
	/* a disabled threshold stays disabled; slope 0 is the threshold itself */
	assert_true(sched_cot_threshold_at(1.5, -0.5, 4096 * 4) == 1.5);
	assert_true(sched_cot_threshold_at(0.93, 0, 12345) == 0.93);
	p.cot_threshold = 1.5;
	p.cot_threshold_slope = -0.5;
	sched_decide(&p, &v, &d);
	assert_true(d.threshold == 1.5);
	assert_false(d.stop);
	/* sc programs keep sc.threshold */
	p.sc_threshold = 0.95;
	fake(&c[0], &f[0], "8", 64, 512);
	fake(&c[1], &f[1], "8", 64, 512);
	fake(&c[2], &f[2], "6", 64, 512);
	view1(&v, c, 3, SCHED_ALGO_SC);
	sched_decide(&p, &v, &d);
	assert_true(d.threshold == 0.95);
	/* out of range: [-1, 1] */
	p.cot_threshold_slope = 1.5;
	assert_int_not_equal(sched_policy_validate(&p, msg, sizeof msg), 0);
	assert_non_null(strstr(msg, "cot.threshold_slope"));
	p.cot_threshold_slope = -1;
	assert_int_equal(sched_policy_validate(&p, msg, sizeof msg), 0);
}

static void
test_unpromising_and_extension(void **state)
{
	struct sched_policy p;
	struct sched_chain c;
	struct fake_chain f;
	struct sched_view v;
	struct sched_decision d;
	struct sched_state st = { SCHED_PS_NEW };

	(void)state;
	test_policy(&p);
	p.cot_threshold = 0.99;
	p.unpromising_tokens = 2048;
	fake(&c, &f, "17", 1984, 2048);
	view1(&v, &c, 1, SCHED_ALGO_COT);
	sched_decide(&p, &v, &d);
	assert_true(d.stop);
	assert_int_equal(d.reason, SCHED_REASON_UNPROMISING);
	assert_true(d.low_confidence);
	assert_string_equal(d.answer, "17");

	/* Budget spent while fairly certain: extend by 25%, then stop at the extended budget. */
	p.unpromising_tokens = 0;
	p.extend_frac = 0.25;
	p.extend_min = 0.6;
	fake(&c, &f, "17", 64, 1024);   /* certaindex 0.731 */
	v.budget = 1000;
	v.state = &st;
	sched_decide(&p, &v, &d);
	assert_false(d.stop);
	assert_true(d.extended);
	assert_int_equal(d.state, SCHED_PS_EXTENDED);
	assert_int_equal(st.state, SCHED_PS_EXTENDED);
	assert_int_equal(d.step_tokens, 64);
	v.budget = 800;               /* 1.25 * 800 = 1000 <= 1024 used */
	sched_decide(&p, &v, &d);
	assert_true(d.stop);
	assert_int_equal(d.reason, SCHED_REASON_BUDGET);
	assert_int_equal(st.state, SCHED_PS_STOP_BUDGET);
	/* Terminal: asking again answers the same stop. */
	v.budget = 100000;
	sched_decide(&p, &v, &d);
	assert_true(d.stop);
	assert_int_equal(d.reason, SCHED_REASON_BUDGET);
}

static void
test_probe_stride(void **state)
{
	struct sched_policy p;
	struct sched_chain c;
	struct fake_chain f;
	struct sched_view v;
	struct sched_decision d;

	(void)state;
	test_policy(&p);
	p.probe_stride = 0.1;
	p.max_step_tokens = 256;
	fake(&c, &f, "", 64, 640);      /* 64 tokens: 0.1 * 640 = 64 */
	view1(&v, &c, 1, SCHED_ALGO_COT);
	sched_decide(&p, &v, &d);
	assert_int_equal(d.step_tokens, 64);
	c.tokens = 1500;                /* 150 -> 128 (multiple of 64) */
	sched_decide(&p, &v, &d);
	assert_int_equal(d.step_tokens, 128);
	c.tokens = 9000;                /* 900 -> capped at 256 */
	sched_decide(&p, &v, &d);
	assert_int_equal(d.step_tokens, 256);
}

static void
test_state_through_decisions(void **state)
{
	struct sched_policy p;
	struct sched_chain c;
	struct fake_chain f;
	struct sched_view v;
	struct sched_decision d;
	struct sched_state st = { SCHED_PS_NEW };

	(void)state;
	test_policy(&p);
	view1(&v, &c, 1, SCHED_ALGO_COT);
	v.state = &st;
	fake(&c, &f, "", 64, 0);
	sched_decide(&p, &v, &d);
	assert_int_equal(st.state, SCHED_PS_WARMUP);
	fake(&c, &f, "9", 128, 192);
	sched_decide(&p, &v, &d);
	assert_int_equal(st.state, SCHED_PS_EXPLORING);
	/* The answer goes back to a placeholder: still EXPLORING (a valid answer was seen). */
	fake(&c, &f, "9", 128, 256);
	f.probes[3].answer = "x";
	c.answer = "x";
	sched_decide(&p, &v, &d);
	assert_int_equal(st.state, SCHED_PS_EXPLORING);
	assert_string_equal(d.answer, "9");
	fake(&c, &f, "9", 128, 1280);
	sched_decide(&p, &v, &d);
	assert_int_equal(st.state, SCHED_PS_STOP_CERTAIN);
	assert_true(d.stop);
}

static void
test_rank(void **state)
{
	struct sched_policy p;
	struct sched_chain c[4];
	struct fake_chain f[4];
	struct sched_view v[4];
	struct sched_rank_item it[4];
	size_t order[4], i;

	(void)state;
	test_policy(&p);
	p.expected_tokens = 4000;
	p.starvation_ms = 10000;
	for (i = 0; i < 4; i++) {
		fake(&c[i], &f[i], "", 64, 0);
		view1(&v[i], &c[i], 1, SCHED_ALGO_COT);
		it[i].view = &v[i];
		it[i].certaindex = 0;
		it[i].waiting_since_ms = 5000;
		it[i].priority = 0;
	}
	c[0].tokens = 1000;   /* 3000 left */
	c[1].tokens = 3000;   /* 1000 left: shortest */
	c[2].tokens = 2000;   /* 2000 left, but certaindex 0.9: 200 */
	it[2].certaindex = 0.9;
	c[3].tokens = 0;      /* 4000 left */
	sched_rank(&p, it, 4, 10000, order);
	assert_int_equal(order[0], 2);
	assert_int_equal(order[1], 1);
	assert_int_equal(order[2], 0);
	assert_int_equal(order[3], 3);
	/* Program 3 has waited 10 s (the starvation bound): it goes first. */
	it[3].waiting_since_ms = 0;
	sched_rank(&p, it, 4, 10000, order);
	assert_int_equal(order[0], 3);
	assert_int_equal(order[1], 2);
	/* Priority beats everything. */
	it[0].priority = 1;
	sched_rank(&p, it, 4, 10000, order);
	assert_int_equal(order[0], 0);
	assert_int_equal(order[1], 3);
	assert_true(sched_remaining_work(&p, &v[1], 0) == 1000);
}

static void
test_policy_validate(void **state)
{
	struct sched_policy p;
	char msg[256];

	(void)state;
	sched_policy_default(&p);
	assert_int_equal(sched_policy_validate(&p, msg, sizeof msg), 0);
	p.probe_stride = 2;
	assert_int_not_equal(sched_policy_validate(&p, msg, sizeof msg), 0);
	assert_non_null(strstr(msg, "probe_stride"));
	sched_policy_default(&p);
	p.max_step_tokens = 1;
	assert_int_not_equal(sched_policy_validate(&p, msg, sizeof msg), 0);
	assert_non_null(strstr(msg, "max_step_tokens"));
	sched_policy_default(&p);
	p.sc_threshold = -1;
	assert_int_not_equal(sched_policy_validate(&p, msg, sizeof msg), 0);
	assert_non_null(strstr(msg, "sc.threshold"));
	sched_policy_default(&p);
	p.sc_staged = 3;
	assert_int_not_equal(sched_policy_validate(&p, msg, sizeof msg), 0);
	assert_non_null(strstr(msg, "sc.staged"));
}

/* dynasor_k: the Dynasor-CoT rule stops when the last k probes agree (every unfinished chain
 * of an sc program), not before, and never on a hesitant probe answer. */
static void
test_dynasor(void **state)
{
	struct sched_policy p;
	struct sched_chain c[2];
	struct fake_chain f[2];
	struct sched_view v;
	struct sched_decision d;

	(void)state;
	test_policy(&p);
	p.cot_threshold = p.sc_threshold = 2;   /* the certaindex never stops */
	p.settle_closed = 0;
	p.dynasor_k = 3;
	/* answer from 640: probes 640, 704 agree (2 < 3): continue */
	fake(&c[0], &f[0], "42", 640, 704);
	view1(&v, c, 1, SCHED_ALGO_COT);
	sched_decide(&p, &v, &d);
	assert_false(d.stop);
	/* 640, 704, 768: three agree: stop certain with that answer */
	fake(&c[0], &f[0], "42", 640, 768);
	sched_decide(&p, &v, &d);
	assert_true(d.stop);
	assert_int_equal(d.reason, SCHED_REASON_CERTAIN);
	assert_string_equal(d.answer, "42");
	/* off: the same chain continues */
	p.dynasor_k = 0;
	sched_decide(&p, &v, &d);
	assert_false(d.stop);
	p.dynasor_k = 3;
	/* a hesitant answer does not count */
	fake(&c[0], &f[0], "wait", 64, 768);
	sched_decide(&p, &v, &d);
	assert_false(d.stop);
	/* sc: one chain consistent, the other not yet: continue; both: stop */
	fake(&c[0], &f[0], "42", 64, 768);
	fake(&c[1], &f[1], "7", 704, 768);
	view1(&v, c, 2, SCHED_ALGO_SC);
	sched_decide(&p, &v, &d);
	assert_false(d.stop);
	fake(&c[1], &f[1], "7", 640, 768);
	sched_decide(&p, &v, &d);
	assert_true(d.stop);
	assert_int_equal(d.reason, SCHED_REASON_CERTAIN);
}


/* sched_decide_chains decides as sched_decide and hands back the chains' evaluations the
 * decision made: the same as evaluating each chain again (with incremental scans too), for the
 * first 64 chains of an sc program (the count it returns). */
static void
test_decide_chains(void **state)
{
	static struct sched_chain c[70], again[70];
	static struct fake_chain f[70];
	static struct certainty_chain cc[70];
	static const char *const texts[] = {
		"Hmm, wait. Let me check: 8 + 0 = 8, so \\boxed{8}",
		"I think it is 6, but maybe not",
		"</think> The answer is \\boxed{8}.",
	};
	struct sched_policy p;
	struct sched_view v;
	struct sched_decision d, d2;
	struct certainty_chain e;
	size_t i, n, k;

	(void)state;
	test_policy(&p);
	for (k = 0; k < 2; k++) {
		for (i = 0; i < 70; i++) {
			fake(&c[i], &f[i], i % 3 == 1 ? "6" : "8", 64 * (i % 4 + 1), 512);
			c[i].text = texts[i % 3];
			c[i].text_len = strlen(c[i].text);
			c[i].thinking_done = i % 3 == 2;
			/* k = 1: with incremental scans, as certad runs them */
			c[i].scan = k == 1 ? certainty_scan_new() : NULL;
			again[i] = c[i];
		}
		view1(&v, c, 70, SCHED_ALGO_SC);
		n = sched_decide_chains(&p, &v, &d, cc);
		assert_int_equal(n, 64);
		/* the decision is sched_decide's (the scans are at the end of the text now) */
		view1(&v, again, 70, SCHED_ALGO_SC);
		sched_decide(&p, &v, &d2);
		assert_int_equal(d.stop, d2.stop);
		assert_true(d.certaindex == d2.certaindex);
		assert_string_equal(d.answer, d2.answer);
		for (i = 0; i < n; i++) {
			certainty_chain_eval(&p, &again[i], v.problem, &e);
			assert_true(cc[i].certaindex == e.certaindex);
			assert_int_equal(cc[i].valid, e.valid);
			assert_int_equal(cc[i].stable_tokens, e.stable_tokens);
			assert_int_equal(cc[i].grounded, e.grounded);
			assert_int_equal(cc[i].hesitation_count, e.hesitation_count);
			assert_int_equal(cc[i].probe_hesitant, e.probe_hesitant);
			assert_true(cc[i].position == e.position);
			assert_true(cc[i].confidence == e.confidence);
			assert_string_equal(cc[i].answer, e.answer);
		}
		/* cot, one chain: one evaluation */
		view1(&v, c, 1, SCHED_ALGO_COT);
		assert_int_equal(sched_decide_chains(&p, &v, &d, cc), 1);
		certainty_chain_eval(&p, &c[0], v.problem, &e);
		assert_true(cc[0].certaindex == e.certaindex);
		for (i = 0; i < 70; i++)
			certainty_scan_free(c[i].scan);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_natural_end),
		cmocka_unit_test(test_budget_and_deadline),
		cmocka_unit_test(test_stop_certain_cot),
		cmocka_unit_test(test_sc_gang),
		cmocka_unit_test(test_decide_chains),
		cmocka_unit_test(test_settled_cot),
		cmocka_unit_test(test_unpromising_and_extension),
		cmocka_unit_test(test_unpromising_relative),
		cmocka_unit_test(test_probe_stride),
		cmocka_unit_test(test_state_through_decisions),
		cmocka_unit_test(test_rank),
		cmocka_unit_test(test_policy_validate),
		cmocka_unit_test(test_dynasor),
		cmocka_unit_test(test_sc_vote_threshold),
		cmocka_unit_test(test_sc_staged),
		cmocka_unit_test(test_cot_threshold_slope),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
