/*
 * test_certainty.c — certaindex features on hand-made probe sequences, the sc vote features,
 * and the Dynasor-CoT / </think> baselines on synthetic traces.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "eval/evalsim.h"
#include "lib/traces.h"
#include "scheduler/certainty.h"
#include "scheduler/sched.h"

/* A policy whose chain certaindex depends on stability only: sigmoid(-3 + log2(1+s/64)). */
static void
stable_only_policy(struct sched_policy *p)
{
	sched_policy_default(p);
	memset(p->cot_w, 0, sizeof p->cot_w);
	memset(p->sc_w, 0, sizeof p->sc_w);
	p->cot_w[0] = -3;
	p->cot_w[1] = 1;
	p->probe_stride = 0;
	p->expected_tokens = 1000;
	p->hesitation_window = 600;
}

static void
test_hesitation_count(void **state)
{
	const char *t = "So x = 5. Wait, but let me verify. Hmm, the butter is fine. Alternatively";

	(void)state;
	/* wait, "but ", verify, hmm, alternatively; "butter" is not "but ". */
	assert_int_equal(certainty_hesitation_count(t, strlen(t), 1000), 5);
	/* Only the last 13 bytes: "Alternatively". */
	assert_int_equal(certainty_hesitation_count(t, strlen(t), 13), 1);
	assert_int_equal(certainty_hesitation_count("all good", 8, 100), 0);
	assert_int_equal(certainty_hesitation_count(NULL, 0, 100), 0);
	/* Markers must start a word: "await" is not "wait". */
	assert_int_equal(certainty_hesitation_count("await", 5, 100), 0);
}

static void
test_probe_hesitant(void **state)
{
	(void)state;
	assert_true(certainty_probe_hesitant("wait"));
	assert_true(certainty_probe_hesitant("5, but"));
	assert_true(certainty_probe_hesitant("\\text{no}"));
	assert_true(certainty_probe_hesitant("Hmm"));
	assert_false(certainty_probe_hesitant("north"));
	assert_false(certainty_probe_hesitant("\\frac{1}{2}"));
	assert_false(certainty_probe_hesitant(""));
	assert_false(certainty_probe_hesitant(NULL));
}

static void
test_grounded(void **state)
{
	const char *t = "We get 123 apples and \\frac{1}{2} of a pie, so x = 12.";

	(void)state;
	assert_true(certainty_grounded("12", t, strlen(t)));
	/* "12" inside "123" alone would not count: cut the text before the last "12". */
	assert_false(certainty_grounded("12", t, 10));
	assert_false(certainty_grounded("23", t, strlen(t)));
	assert_true(certainty_grounded("\\frac{1}{2}", t, strlen(t)));
	/* The canonical form is tried too: \dfrac12 -> \frac{1}{2}. */
	assert_true(certainty_grounded("\\dfrac12", t, strlen(t)));
	assert_false(certainty_grounded("", t, strlen(t)));
	assert_false(certainty_grounded("7", NULL, 0));
	/* 1.5 must not match inside 11.5 or 1.55. */
	assert_false(certainty_grounded("1.5", "11.5 and 1.55", 13));
}

static void
test_entropy(void **state)
{
	size_t all[1] = { 3 }, split3[3] = { 1, 1, 1 }, two[1] = { 2 };

	(void)state;
	assert_true(fabs(certainty_entropy(all, 1, 3)) < 1e-12);
	assert_true(fabs(certainty_entropy(split3, 3, 3) - 1.0) < 1e-12);
	/* 2 agree, 1 invalid (a singleton): H(2/3, 1/3) / log 3. */
	assert_true(fabs(certainty_entropy(two, 1, 3) -
	    (-(2.0 / 3) * log(2.0 / 3) - (1.0 / 3) * log(1.0 / 3)) / log(3.0)) < 1e-12);
	assert_true(certainty_entropy(all, 1, 1) == 0);
}

static void
test_chain_features(void **state)
{
	struct sched_probe pr[] = {
		{ 64, "", -1, -1, -1 }, { 128, "x", -1, -1, -1 }, { 192, "5", -1, -1, -1 },
		{ 256, "5", -1, -1, -1 },
		{ 320, "5.0", 0.9, 0.6, 0.5 },
	};
	const char *text = "Let x be 5. Wait, check again: 5.";
	struct sched_chain c;
	struct certainty_chain out;
	struct sched_policy p;

	(void)state;
	stable_only_policy(&p);
	memset(&c, 0, sizeof c);
	c.tokens = 320;
	c.answer = "5.0";
	c.final_answer = "";
	c.probes = pr;
	c.nprobes = 5;
	c.text = text;
	c.text_len = strlen(text);
	certainty_chain_eval(&p, &c, "What is y?", &out);
	assert_true(out.valid);
	/* "5", "5", "5.0" agree (equivalence): stable since 192. */
	assert_int_equal(out.stable_tokens, 320 - 192);
	/* Non-empty string changes: x -> 5 -> 5.0. */
	assert_int_equal(out.changes, 2);
	assert_true(out.grounded);
	assert_int_equal(out.hesitation_count, 1);
	assert_false(out.boxed);
	assert_true(fabs(out.position - 0.32) < 1e-12);
	assert_true(fabs(out.confidence - 0.9) < 1e-12);
	assert_true(fabs(out.x[1] - log2(1.0 + 128.0 / 64)) < 1e-12);
	assert_true(fabs(out.x[2] - 128.0 / 320) < 1e-12);
	assert_true(fabs(out.x[9] - 0.4) < 1e-12);
	assert_true(fabs(out.certaindex - 1.0 / (1.0 + exp(3 - log2(3.0)))) < 1e-12);

	/* Thinking closed and the model boxed its answer. */
	c.thinking_done = true;
	c.text = "5 \\boxed{5}";
	c.text_len = strlen(c.text);
	certainty_chain_eval(&p, &c, "What is y?", &out);
	assert_true(out.boxed);
	assert_true(out.x[5] == 1);
	assert_true(out.x[8] == 1);
	/* ... and the box agrees with the probe answer: settled, certaindex 1 */
	assert_true(out.x[12] == 1);
	assert_true(out.settled);
	assert_true(out.certaindex == 1);
	/* settle_closed off: the logistic decides */
	p.settle_closed = 0;
	certainty_chain_eval(&p, &c, "What is y?", &out);
	assert_false(out.settled);
	assert_true(out.certaindex < 1);
	p.settle_closed = 1;
	/* a box that differs, or an open thinking section, does not settle */
	c.text = "5 \\boxed{6}";
	c.text_len = strlen(c.text);
	certainty_chain_eval(&p, &c, "What is y?", &out);
	assert_false(out.settled);
	c.text = "5 \\boxed{5}";
	c.text_len = strlen(c.text);
	c.thinking_done = false;
	certainty_chain_eval(&p, &c, "What is y?", &out);
	assert_false(out.settled);
	assert_true(out.certaindex < 1);
}

/* Probe min probability and chain entropy (llm engine): features 14 and 15, 0 when unknown,
 * and weight 0 in the shipped policy so they change no decision until calibrated. */
static void
test_token_prob_features(void **state)
{
	struct sched_probe pr[] = {
		{ 64, "5", 0.5, 0.2, 1.5 }, { 128, "5", 0.9, 0.7, 0.25 },
	};
	struct sched_chain c;
	struct certainty_chain out, base;
	struct sched_policy p, q;

	(void)state;
	assert_string_equal(certainty_cot_feature_name(14), "min_prob");
	assert_string_equal(certainty_cot_feature_name(15), "chain_entropy");
	assert_null(certainty_cot_feature_name(16));
	sched_policy_default(&p);
	assert_true(p.cot_w[14] == 0 && p.cot_w[15] == 0);
	memset(&c, 0, sizeof c);
	c.tokens = 128;
	c.answer = "5";
	c.final_answer = "";
	c.probes = pr;
	c.nprobes = 2;
	c.text = "so y = 5";
	c.text_len = strlen(c.text);
	certainty_chain_eval(&p, &c, "What is y?", &out);
	/* The latest probe's values. */
	assert_true(fabs(out.min_prob - 0.7) < 1e-12);
	assert_true(fabs(out.entropy - 0.25) < 1e-12);
	assert_true(fabs(out.x[9] - 0.4) < 1e-12);
	assert_true(fabs(out.x[14] - 0.2) < 1e-12);
	assert_true(fabs(out.x[15] - 0.25) < 1e-12);

	/* Unknown (replay): features 0, and with the shipped weights the certaindex is the same
	 * as with the values known. */
	pr[1].confidence = -1;
	pr[1].min_prob = -1;
	pr[1].entropy = -1;
	certainty_chain_eval(&p, &c, "What is y?", &base);
	assert_true(base.min_prob < 0 && base.entropy < 0);
	assert_true(base.x[14] == 0 && base.x[15] == 0);
	assert_true(base.certaindex == out.certaindex);
	/* min_prob is read only with a known mean (zero-initialized probes stay unknown). */
	pr[1].min_prob = 0.3;
	certainty_chain_eval(&p, &c, "What is y?", &base);
	assert_true(base.min_prob < 0 && base.x[14] == 0);

	/* Entropy is capped at 4 nats; a weight moves the certaindex the expected way. */
	pr[1].confidence = 0.9;
	pr[1].min_prob = 0.7;
	pr[1].entropy = 9;
	certainty_chain_eval(&p, &c, "What is y?", &out);
	assert_true(out.x[15] == 4);
	/* The model's own probability level (model_confidence) is where 0 sits. */
	q = p;
	q.model_confidence = 0.8;
	certainty_chain_eval(&q, &c, "What is y?", &base);
	assert_true(fabs(base.x[9] - 0.1) < 1e-12);
	assert_true(fabs(base.x[14] - (0.7 - 0.8)) < 1e-12);
	q = p;
	q.cot_w[15] = -1;
	q.cot_w[14] = 0;
	certainty_chain_eval(&q, &c, "What is y?", &base);
	assert_true(base.certaindex < out.certaindex);
	q.cot_w[15] = 0;
	q.cot_w[14] = 2;
	certainty_chain_eval(&q, &c, "What is y?", &base);
	assert_true(base.certaindex > out.certaindex);
}

static void
test_chain_placeholder(void **state)
{
	struct sched_probe pr[] = {
		{ 64, "12", -1, -1, -1 }, { 128, "7", -1, -1, -1 }, { 192, "x", -1, -1, -1 },
	};
	struct sched_chain c;
	struct certainty_chain out;
	struct sched_policy p;

	(void)state;
	stable_only_policy(&p);
	memset(&c, 0, sizeof c);
	c.tokens = 192;
	c.answer = "x";
	c.probes = pr;
	c.nprobes = 3;
	/* "x" is a lone variable: invalid; the best answer is the last valid probe "7". */
	certainty_chain_eval(&p, &c, "Find x if 3x = 21.", &out);
	assert_false(out.valid);
	assert_true(out.ever_valid);
	assert_true(out.certaindex == 0);
	assert_string_equal(out.best, "7");
	/* A number of the problem is a placeholder: "3" here. */
	c.answer = "3";
	pr[2].answer = "3";
	certainty_chain_eval(&p, &c, "Find x if 3x = 21.", &out);
	assert_false(out.valid);
	assert_string_equal(out.best, "7");
	/* Finished chains are certain of their final answer. */
	c.finished = true;
	c.final_answer = "7";
	certainty_chain_eval(&p, &c, "Find x if 3x = 21.", &out);
	assert_true(out.certaindex == 1);
	assert_string_equal(out.answer, "7");
}

static void
test_program_sc(void **state)
{
	struct sched_probe p0[] = { { 64, "5", -1, -1, -1 }, { 128, "5", -1, -1, -1 } };
	struct sched_probe p1[] = { { 64, "5", -1, -1, -1 }, { 128, "\\frac{10}{2}", -1, -1, -1 } };
	struct sched_probe p2[] = { { 64, "7", -1, -1, -1 }, { 128, "7", -1, -1, -1 } };
	struct sched_chain ch[3];
	struct sched_view v;
	struct certainty_program out;
	struct certainty_chain cc[3];
	struct sched_policy p;

	(void)state;
	stable_only_policy(&p);
	memset(ch, 0, sizeof ch);
	ch[0] = (struct sched_chain){ 128, false, "5", "", false, p0, 2, NULL, 0, NULL };
	ch[1] = (struct sched_chain){ 128, false, "\\frac{10}{2}", "", false, p1, 2, NULL, 0, NULL };
	ch[2] = (struct sched_chain){ 128, false, "7", "", false, p2, 2, NULL, 0, NULL };
	memset(&v, 0, sizeof v);
	v.algo = SCHED_ALGO_SC;
	v.problem = "Compute.";
	v.nchains = 3;
	v.chains = ch;
	certainty_program_eval(&p, &v, &out, cc);
	assert_string_equal(out.answer, "5");
	assert_int_equal(out.answer_chain, 0);
	assert_true(fabs(out.agreement - 2.0 / 3) < 1e-12);
	assert_true(fabs(out.x[1] - 2.0 / 3) < 1e-12);
	assert_true(out.entropy > 0.5 && out.entropy < 0.6);
	/* mean_c over chains 0 and 1: stable 64 and 64 -> sigmoid(-2). */
	assert_true(fabs(out.x[3] - 1.0 / (1.0 + exp(2.0))) < 1e-12);
	assert_true(fabs(out.x[6] - cc[2].certaindex) < 1e-12);
	assert_false(out.decided);
	/* sc weights are zero: sigmoid(0). */
	assert_true(fabs(out.certaindex - 0.5) < 1e-12);

	/* Two finished chains agree: the third cannot change the vote. */
	ch[0].finished = true;
	ch[0].final_answer = "5";
	ch[1].finished = true;
	ch[1].final_answer = "5";
	certainty_program_eval(&p, &v, &out, NULL);
	assert_true(out.decided);
	assert_true(out.certaindex == 1);
	assert_true(out.decided_final);
	/* One finished: not decided. */
	ch[1].finished = false;
	certainty_program_eval(&p, &v, &out, NULL);
	assert_false(out.decided);
	/* ... unless the other agreeing chain is settled (thinking closed, box agrees): then
	 * decided, though not by finished chains alone */
	ch[1].thinking_done = true;
	ch[1].text = "so \\boxed{5}";
	ch[1].text_len = strlen(ch[1].text);
	certainty_program_eval(&p, &v, &out, cc);
	assert_true(cc[1].settled);
	assert_true(out.decided);
	assert_false(out.decided_final);
	assert_true(out.certaindex == 1);
	p.settle_closed = 0;
	certainty_program_eval(&p, &v, &out, NULL);
	assert_false(out.decided);
}

/* A synthetic trace with one probe every 64 tokens. */
static void
make_trace(struct trace *t, struct trace_probe *pr, const char *const *answers, size_t n,
    const char *final)
{
	size_t i;

	memset(t, 0, sizeof *t);
	for (i = 0; i < n; i++) {
		pr[i].position = 64 * (i + 1);
		pr[i].answer = answers[i];
		pr[i].out_tokens = 2;
	}
	t->probes = pr;
	t->nprobes = n;
	t->tokens_used = 64 * n + 10;
	t->final_answer = final;
	t->text = "";
	t->model = t->dataset = t->problem = t->target = "";
}

static void
test_dynasor(void **state)
{
	static const char *const a[] = { "", "3", "3", "wait", "4", "4", "4", "4" };
	struct trace_probe pr[8];
	struct trace t;
	struct evalsim_outcome o;

	(void)state;
	make_trace(&t, pr, a, 8, "4");
	/* k = 2: "3","3" at 128, 192 -> stop at 192 with "3". */
	evalsim_dynasor_chain(&t, 2, 64, &o);
	assert_int_equal(o.reason, SCHED_REASON_CERTAIN);
	assert_string_equal(o.answer, "3");
	assert_int_equal(o.decode_tokens, 192);
	assert_int_equal(o.probe_tokens, 3 * 2);
	/* k = 3: "wait" breaks the run; "4" at 320, 384, 448. */
	evalsim_dynasor_chain(&t, 3, 64, &o);
	assert_string_equal(o.answer, "4");
	assert_int_equal(o.decode_tokens, 448);
	assert_int_equal(o.probe_tokens, 7 * 2);
	/* k = 5 never agrees: run to the end (probe at the end paid too). */
	evalsim_dynasor_chain(&t, 5, 64, &o);
	assert_int_equal(o.reason, SCHED_REASON_NATURAL_END);
	assert_string_equal(o.answer, "4");
	assert_int_equal(o.decode_tokens, t.tokens_used);
	assert_int_equal(o.probe_tokens, 9 * 2);
}

static void
test_think_baseline(void **state)
{
	static const char *const a[] = { "1", "2", "3", "4" };
	struct trace_probe pr[4];
	struct trace t;
	struct evalsim_outcome o;

	(void)state;
	make_trace(&t, pr, a, 4, "9");
	t.think_end = 100;  /* next step boundary: 128 -> probe "2" */
	evalsim_think_chain(&t, 64, &o);
	assert_string_equal(o.answer, "2");
	assert_int_equal(o.decode_tokens, 128);
	assert_int_equal(o.probe_tokens, 2);
	t.think_end = 0;    /* no </think>: the full run */
	evalsim_think_chain(&t, 64, &o);
	assert_string_equal(o.answer, "9");
	assert_int_equal(o.decode_tokens, t.tokens_used);
}

/* The last complete \boxed{} and the box features of a chain. */
static void
test_last_boxed(void **state)
{
	char out[64];
	struct sched_policy p;
	struct sched_chain c;
	struct certainty_chain cc;
	const char *t1 = "so \\boxed{\\frac{1}{2}} then \\boxed{7} and \\boxed{\\frac{3";
	const char *t2 = "x = \\boxed{\\dfrac{20000}{\\pi}}";

	(void)state;
	assert_int_equal(certainty_last_boxed(t1, strlen(t1), out, sizeof out), 1);
	assert_string_equal(out, "7");
	/* cut inside the second box: the first one is the last complete */
	assert_int_equal(certainty_last_boxed(t1, 26, out, sizeof out), 11);
	assert_string_equal(out, "\\frac{1}{2}");
	assert_int_equal(certainty_last_boxed("no box", 6, out, sizeof out), -1);
	assert_string_equal(out, "");
	assert_int_equal(certainty_last_boxed("\\boxed{", 7, out, sizeof out), -1);
	assert_int_equal(certainty_last_boxed(NULL, 0, out, sizeof out), -1);
	/* truncated copy, full length returned */
	assert_int_equal(certainty_last_boxed(t2, strlen(t2), out, 5), 18);
	assert_string_equal(out, "\\dfr");

	sched_policy_default(&p);
	memset(&c, 0, sizeof c);
	c.tokens = 640;
	c.text = t2;
	c.text_len = strlen(t2);
	c.answer = "\\frac{20000}{\\pi}";
	certainty_chain_eval(&p, &c, "problem", &cc);
	assert_int_equal(cc.box, 1);
	assert_true(cc.x[12] == 1 && cc.x[13] == 0);
	c.answer = "20000";   /* a truncated probe answer after </think> */
	certainty_chain_eval(&p, &c, "problem", &cc);
	assert_int_equal(cc.box, -1);
	assert_true(cc.x[12] == 0 && cc.x[13] == 1);
	c.text_len = 10;      /* the box not written yet */
	certainty_chain_eval(&p, &c, "problem", &cc);
	assert_int_equal(cc.box, 0);
	assert_true(cc.x[12] == 0 && cc.x[13] == 0);
	assert_string_equal(certainty_cot_feature_name(12), "box_agree");
	assert_string_equal(certainty_cot_feature_name(13), "box_conflict");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hesitation_count),
		cmocka_unit_test(test_last_boxed),
		cmocka_unit_test(test_probe_hesitant),
		cmocka_unit_test(test_grounded),
		cmocka_unit_test(test_entropy),
		cmocka_unit_test(test_chain_features),
		cmocka_unit_test(test_token_prob_features),
		cmocka_unit_test(test_chain_placeholder),
		cmocka_unit_test(test_program_sc),
		cmocka_unit_test(test_dynasor),
		cmocka_unit_test(test_think_baseline),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
