/*
 * test_difficulty.c — difficulty classes from the early trajectory (scheduler/difficulty.h):
 * the estimate on hand-made probe histories, the threshold of each class in sched_decide(),
 * the policy keys, and (with CERTA_TRACES) that the evaluator's class-aware sweep stops
 * where a replay through sched_decide() stops.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/evalsim.h"
#include "lib/log.h"
#include "lib/traces.h"
#include "scheduler/difficulty.h"
#include "scheduler/policy.h"
#include "scheduler/sched.h"

#define PROBLEM "Find the sum of 17 and 25."

/* A chain with probes at 64, 128, ... carrying answers[i]; tokens = the last position. */
static void
chain_of(struct sched_chain *c, struct sched_probe *pr, const char *const *answers, size_t n)
{
	size_t i;

	memset(c, 0, sizeof *c);
	for (i = 0; i < n; i++) {
		memset(&pr[i], 0, sizeof pr[i]);
		pr[i].position = 64 * (i + 1);
		pr[i].answer = answers[i];
		pr[i].confidence = pr[i].min_prob = pr[i].entropy = -1;
	}
	c->probes = pr;
	c->nprobes = n;
	c->tokens = 64 * n;
	c->answer = n > 0 ? answers[n - 1] : "";
	c->final_answer = "";
}

static void
rule(struct sched_policy *p, uint64_t tokens, uint32_t changes)
{
	sched_policy_default(p);
	p->difficulty_tokens = tokens;
	p->difficulty_changes = changes;
}

static void
test_early_stats(void **state)
{
	static const char *const a[] = { "", "17", "40", "42", "\\frac{84}{2}", "42", "7" };
	struct sched_probe pr[8];
	struct sched_chain c;
	struct difficulty_early e;

	(void)state;
	chain_of(&c, pr, a, 7);
	/* "" is no answer, "17" is copied from the problem (placeholder): the first valid
	 * answer is "40" at 192; 40 -> 42 is a change, 42 -> 84/2 (equivalent) and -> 42 not. */
	difficulty_early_eval(&c, PROBLEM, 320, &e);
	assert_int_equal(e.window, 320);
	assert_int_equal(e.seen, 320);
	assert_int_equal(e.first_valid, 192);
	assert_int_equal(e.changes, 1);
	/* the 7 at 448 is outside a 400-token window, inside a 448-token one */
	difficulty_early_eval(&c, PROBLEM, 400, &e);
	assert_int_equal(e.changes, 1);
	assert_int_equal(e.seen, 400);
	difficulty_early_eval(&c, PROBLEM, 448, &e);
	assert_int_equal(e.changes, 2);
	/* a window longer than the chain: seen is the chain's tokens */
	difficulty_early_eval(&c, PROBLEM, 4096, &e);
	assert_int_equal(e.seen, 448);
	/* a window before the first valid answer */
	difficulty_early_eval(&c, PROBLEM, 128, &e);
	assert_int_equal(e.first_valid, 0);
	assert_int_equal(e.changes, 0);
}

static void
test_classify(void **state)
{
	static const char *const stable[] = { "", "42", "42", "42", "42" };
	static const char *const wavering[] = { "40", "41", "42", "42", "42" };
	static const char *const late[] = { "42", "42", "42", "40", "41" };
	static const char *const blank[] = { "", "", "17", "", "" };
	struct sched_probe pr[8];
	struct sched_chain c;
	struct sched_policy p;

	(void)state;
	rule(&p, 0, 1);
	chain_of(&c, pr, wavering, 5);
	assert_int_equal(difficulty_of_chain(&p, &c, PROBLEM), DIFFICULTY_NONE);   /* off */

	rule(&p, 256, 2);
	chain_of(&c, pr, stable, 5);
	assert_int_equal(difficulty_of_chain(&p, &c, PROBLEM), DIFFICULTY_EASY);
	chain_of(&c, pr, wavering, 5);   /* two changes by 192 */
	assert_int_equal(difficulty_of_chain(&p, &c, PROBLEM), DIFFICULTY_HARD);
	rule(&p, 256, 3);                /* ... three needed */
	assert_int_equal(difficulty_of_chain(&p, &c, PROBLEM), DIFFICULTY_EASY);
	rule(&p, 256, 0);                /* changes never count */
	assert_int_equal(difficulty_of_chain(&p, &c, PROBLEM), DIFFICULTY_EASY);
	/* changes after the window do not count (the first one is at 256) */
	rule(&p, 192, 1);
	chain_of(&c, pr, late, 5);
	assert_int_equal(difficulty_of_chain(&p, &c, PROBLEM), DIFFICULTY_EASY);
	rule(&p, 320, 1);
	assert_int_equal(difficulty_of_chain(&p, &c, PROBLEM), DIFFICULTY_HARD);
	/* no valid answer (the 17 is a placeholder): easy while inside the window, hard once
	 * the whole window went by */
	rule(&p, 320, 2);
	chain_of(&c, pr, blank, 4);      /* 256 tokens < 320 */
	assert_int_equal(difficulty_of_chain(&p, &c, PROBLEM), DIFFICULTY_EASY);
	chain_of(&c, pr, blank, 5);      /* 320 tokens */
	assert_int_equal(difficulty_of_chain(&p, &c, PROBLEM), DIFFICULTY_HARD);
	/* stats for another window classify as NONE */
	{
		struct difficulty_early e;
		difficulty_early_eval(&c, PROBLEM, 512, &e);
		assert_int_equal(difficulty_classify(&p, &e), DIFFICULTY_NONE);
	}
	assert_string_equal(difficulty_class_name(DIFFICULTY_HARD), "hard");
}

/* Certaindex = sigmoid(bias) for any valid answer: 0.731 with bias 1. */
static void
decide_policy(struct sched_policy *p)
{
	sched_policy_default(p);
	memset(p->cot_w, 0, sizeof p->cot_w);
	p->cot_w[0] = 1;
	p->probe_stride = 0;
	p->unpromising_tokens = 0;
	p->cot_threshold = 0.9;          /* never reached: 0.731 */
	p->cot_threshold_easy = 0.7;     /* reached */
	p->cot_threshold_hard = 0.8;     /* not reached */
	p->difficulty_tokens = 256;
	p->difficulty_changes = 2;
}

static void
decide(const struct sched_policy *p, struct sched_chain *c, double shift,
    struct sched_decision *d)
{
	struct sched_view v;

	memset(&v, 0, sizeof v);
	v.algo = SCHED_ALGO_COT;
	v.budget = 1u << 20;
	v.problem = PROBLEM;
	v.nchains = 1;
	v.chains = c;
	v.threshold_shift = shift;
	sched_decide(p, &v, d);
}

static void
test_decide_thresholds(void **state)
{
	static const char *const stable[] = { "42", "42", "42", "42", "42" };
	static const char *const wavering[] = { "40", "41", "42", "42", "42" };
	struct sched_probe pr[8];
	struct sched_chain c;
	struct sched_policy p;
	struct sched_decision d;

	(void)state;
	decide_policy(&p);
	chain_of(&c, pr, stable, 5);
	decide(&p, &c, 0, &d);
	assert_true(fabs(d.certaindex - 1 / (1 + exp(-1.0))) < 1e-12);
	assert_int_equal(d.difficulty, DIFFICULTY_EASY);
	assert_true(d.threshold == 0.7);
	assert_true(d.stop);
	assert_int_equal(d.reason, SCHED_REASON_CERTAIN);

	chain_of(&c, pr, wavering, 5);
	decide(&p, &c, 0, &d);
	assert_int_equal(d.difficulty, DIFFICULTY_HARD);
	assert_true(d.threshold == 0.8);
	assert_false(d.stop);
	/* the risk controller's shift moves the class threshold: logit(0.8) - 1 < logit(0.731) */
	decide(&p, &c, 1, &d);
	assert_true(d.threshold < 0.731 && d.threshold > 0.5);
	assert_true(d.stop);

	/* off: cot.threshold for every chain */
	p.difficulty_tokens = 0;
	chain_of(&c, pr, stable, 5);
	decide(&p, &c, 0, &d);
	assert_int_equal(d.difficulty, DIFFICULTY_NONE);
	assert_true(d.threshold == 0.9);
	assert_false(d.stop);
	/* sc programs keep sc.threshold */
	{
		struct sched_chain cs[2];
		struct sched_view v;
		decide_policy(&p);
		chain_of(&cs[0], pr, stable, 5);
		cs[1] = cs[0];
		memset(&v, 0, sizeof v);
		v.algo = SCHED_ALGO_SC;
		v.budget = 1u << 20;
		v.problem = PROBLEM;
		v.nchains = 2;
		v.chains = cs;
		sched_decide(&p, &v, &d);
		assert_int_equal(d.difficulty, DIFFICULTY_NONE);
		assert_true(d.threshold == p.sc_threshold);
	}
}

static void
test_policy_keys(void **state)
{
	struct sched_policy p, q;
	char buf[4096], err[256];

	(void)state;
	sched_policy_default(&p);
	/* shipped: off, equal thresholds */
	assert_int_equal(p.difficulty_tokens, 0);
	assert_true(p.cot_threshold_easy == p.cot_threshold);
	assert_true(p.cot_threshold_hard == p.cot_threshold);
	{
		const char *t = "difficulty.tokens = 1024\ndifficulty.changes = 1\n"
		    "cot.threshold_easy = 0.999\ncot.threshold_hard = 0.96\n";
		assert_int_equal(policy_parse(t, strlen(t), "t", &p, err, sizeof err), 0);
	}
	assert_int_equal(p.difficulty_tokens, 1024);
	assert_int_equal(p.difficulty_changes, 1);
	assert_true(p.cot_threshold_easy == 0.999);
	assert_true(p.cot_threshold_hard == 0.96);
	assert_true(policy_format(&p, buf, sizeof buf) < sizeof buf);
	sched_policy_default(&q);
	assert_int_equal(policy_parse(buf, strlen(buf), "t", &q, err, sizeof err), 0);
	assert_true(policy_equal(&p, &q));
	p.cot_threshold_hard = 2.5;
	assert_int_not_equal(sched_policy_validate(&p, err, sizeof err), 0);
	assert_non_null(strstr(err, "cot.threshold_hard"));
	p.cot_threshold_hard = 0.96;
	p.difficulty_changes = 65;
	assert_int_not_equal(sched_policy_validate(&p, err, sizeof err), 0);
	assert_non_null(strstr(err, "difficulty.changes"));
}

/* The class-aware sweep (evalsim_stop_index_cls) stops each recorded program where a replay
 * through sched_decide() with the same rule and class thresholds stops. */
static void
test_sweep_matches_replay(void **state)
{
	const char *dir = getenv("CERTA_TRACES");
	struct sched_policy p;
	struct evalsim_set s;
	struct traces *tr;
	const size_t rules[] = { 1, 3, 8 };
	size_t ri, i, checked = 0, hard = 0, easy = 0;

	(void)state;
	if (dir == NULL || dir[0] == '\0') {
		print_message("CERTA_TRACES not set: skipping the replay check\n");
		skip();
	}
	log_set_level(LOG_LVL_ERR);
	if (traces_load(dir, &tr) != 0) {
		print_message("%s: no traces: skipping the replay check\n", dir);
		skip();
	}
	sched_policy_default(&p);
	assert_int_equal(evalsim_record(tr, &p, SCHED_ALGO_COT, 1, EVALSIM_TEST, &s), 0);
	for (ri = 0; ri < sizeof rules / sizeof rules[0]; ri++) {
		const double tau[3] = { 2, 0.999, 0.95 };
		struct sched_policy q = p;
		size_t r = rules[ri], si = 0;

		q.difficulty_tokens = evalsim_diff_rules[r].tokens;
		q.difficulty_changes = evalsim_diff_rules[r].changes;
		q.cot_threshold = 2;
		q.cot_threshold_easy = tau[DIFFICULTY_EASY];
		q.cot_threshold_hard = tau[DIFFICULTY_HARD];
		for (i = 0; i < traces_program_count(tr); i++) {
			const struct traces_program *prog = traces_program_at(tr, i);
			const struct evalsim_traj *t;
			struct evalsim_outcome o;
			struct sched_policy qm;
			size_t k;
			if (!evalsim_in_split(prog->problem, EVALSIM_TEST) || prog->nsamples < 1)
				continue;
			t = &s.traj[si++];
			/* model_tokens per model, as evalsim_record replays it */
			evalsim_model_policy(tr, &q, prog->model, &qm);
			assert_int_equal(evalsim_run(&qm, prog, SCHED_ALGO_COT, 1, &o, NULL), 0);
			k = evalsim_stop_index_cls(t->pts, t->npts, r, tau, q.unpromising_tokens);
			assert_int_equal(o.decode_tokens + o.probe_tokens, t->pts[k].cost);
			assert_int_equal(o.correct, t->pts[k].correct);
			hard += t->pts[k].cls[r] == DIFFICULTY_HARD;
			easy += t->pts[k].cls[r] == DIFFICULTY_EASY;
			checked++;
		}
		assert_int_equal(si, s.nprog);
	}
	/* both classes occur, or the check would prove little */
	assert_true(hard > 10 && easy > 10);
	print_message("%zu replays match the class-aware sweep (%zu easy, %zu hard stops)\n",
	    checked, easy, hard);
	evalsim_set_free(&s);
	traces_free(tr);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_early_stats),
		cmocka_unit_test(test_classify),
		cmocka_unit_test(test_decide_thresholds),
		cmocka_unit_test(test_policy_keys),
		cmocka_unit_test(test_sweep_matches_replay),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
