/*
 * test_policy.c — the policy file form, the shipped default, the policy state machine, and
 * calibration (synthetic traces with a hand-computed threshold; the real traces when
 * CERTA_TRACES is set).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/error.h"
#include "eval/evalsim.h"
#include "lib/log.h"
#include "lib/fileio.h"
#include "lib/traces.h"
#include "tests/support/harness.h"
#include "scheduler/certainty.h"
#include "scheduler/policy.h"
#include "scheduler/sched.h"

/* Parses policy/NAME (from the repository root or tests' working directory) over *p. */
static int
load_repo_policy(const char *name, struct sched_policy *p, char *err, size_t errlen)
{
	char path[128], *text;
	size_t len;
	int rc;

	snprintf(path, sizeof path, "policy/%s", name);
	rc = fileio_read(path, POLICY_TEXT_MAX, &text, &len, err, errlen);
	if (rc == -ENOENT) {
		snprintf(path, sizeof path, "../policy/%s", name);
		rc = fileio_read(path, POLICY_TEXT_MAX, &text, &len, err, errlen);
	}
	if (rc != 0)
		return rc;
	rc = policy_parse(text, len, name, p, err, errlen);
	free(text);
	return rc;
}

static void
test_default_file_matches_builtin(void **state)
{
	struct sched_policy builtin, file;
	char err[256];
	int rc;

	(void)state;
	sched_policy_default(&builtin);
	/* Start from different values so every key must come from the file. */
	memset(&file, 0, sizeof file);
	file.step_tokens = 1;
	{
		char *text;
		size_t len;
		rc = fileio_read("policy/default.policy", POLICY_TEXT_MAX, &text, &len, err,
		    sizeof err);
		if (rc == -ENOENT)
			rc = fileio_read("../policy/default.policy", POLICY_TEXT_MAX, &text, &len,
			    err, sizeof err);
		if (rc == 0) {
			rc = policy_parse(text, len, "default.policy", &file, err, sizeof err);
			free(text);
		}
	}
	if (rc != 0)
		fail_msg("policy/default.policy: %s", err);
	assert_true(policy_equal(&builtin, &file));
	assert_int_equal(memcmp(builtin.cot_w, file.cot_w, sizeof file.cot_w), 0);
	assert_int_equal(memcmp(builtin.sc_w, file.sc_w, sizeof file.sc_w), 0);
	assert_true(builtin.cot_threshold == file.cot_threshold);
	assert_true(builtin.unpromising_tokens == file.unpromising_tokens);
	assert_int_equal(sched_policy_validate(&builtin, err, sizeof err), 0);
}

static void
test_parse_sections_comments(void **state)
{
	const char *text =
	    "\xef\xbb\xbf# header\n"
	    "step_tokens = 128   ; trailing comment\n"
	    "[cot]\n"
	    "threshold = 0.875\n"
	    "w.stable = -1.5e0\n"
	    "[sc]\n"
	    "threshold=0.5\r\n"
	    "w.agreement = 2\n"
	    "unpromising_tokens = 9000\n";  /* plain key inside a section */
	struct sched_policy p;
	char err[256] = "";

	(void)state;
	sched_policy_default(&p);
	if (policy_parse(text, strlen(text), "t.policy", &p, err, sizeof err) != 0)
		fail_msg("%s", err);
	assert_int_equal(p.step_tokens, 128);
	assert_true(p.cot_threshold == 0.875);
	assert_true(p.cot_w[1] == -1.5);
	assert_true(p.sc_threshold == 0.5);
	assert_true(p.sc_w[1] == 2);
	assert_int_equal(p.unpromising_tokens, 9000);
	/* a file without sc.vote_threshold keeps it off, as before the key existed */
	assert_true(p.sc_vote_threshold > 1);
	/* nor cot.threshold_slope: off, the flat threshold as before */
	assert_true(p.cot_threshold_slope == 0);
}

/* A double key of the policy file: its default, a value in its section, one at the top level
 * (section.key = value), one formatted back and parsed again (equal, and unequal once
 * changed).  off: the member's offset in struct sched_policy. */
static void
check_double_key(const char *section_text, double v1, const char *top_text, double v2,
    const char *formatted, double v3, size_t off, double dflt)
{
	struct sched_policy p, q;
	char err[256] = "", buf[8192];
	double *pv = (double *)(void *)((char *)&p + off), *qv;

	qv = (double *)(void *)((char *)&q + off);
	sched_policy_default(&p);
	assert_true(*pv == dflt);
	if (policy_parse(section_text, strlen(section_text), "t.policy", &p, err, sizeof err) != 0)
		fail_msg("%s", err);
	assert_true(*pv == v1);
	if (policy_parse(top_text, strlen(top_text), "t.policy", &p, err, sizeof err) != 0)
		fail_msg("%s", err);
	assert_true(*pv == v2);
	*pv = v3;
	assert_true(policy_format(&p, buf, sizeof buf) < sizeof buf);
	assert_non_null(strstr(buf, formatted));
	sched_policy_default(&q);
	if (policy_parse(buf, strlen(buf), "t.policy", &q, err, sizeof err) != 0)
		fail_msg("%s", err);
	assert_true(*qv == v3);
	assert_true(policy_equal(&p, &q));
	*qv = dflt;
	assert_false(policy_equal(&p, &q));
}

/* cot.threshold_slope: in a section, at the top level, formatted back (out of range: the
 * bad cases below). */
static void
test_parse_cot_slope(void **state)
{
	(void)state;
	check_double_key("[cot]\nthreshold_slope = -0.05\n", -0.05, "cot.threshold_slope = 0.02\n",
	    0.02, "\ncot.threshold_slope = 0.125\n", 0.125,
	    offsetof(struct sched_policy, cot_threshold_slope), 0);
}

/* sc.vote_threshold: in a section, at the top level, and formatted back. */
static void
test_parse_sc_vote(void **state)
{
	(void)state;
	check_double_key("[sc]\nvote_threshold = 0.95\n", 0.95, "sc.vote_threshold = 0\n", 0,
	    "\nsc.vote_threshold = 0.875\n", 0.875,
	    offsetof(struct sched_policy, sc_vote_threshold), 1.5);
}

struct bad_case {
	const char *text;
	const char *msg;   /* substring of the error */
};

static void
test_parse_errors(void **state)
{
	static const struct bad_case cases[] = {
		{ "foo = 1\n", "t:1: unknown key 'foo'" },
		{ "\n\ncot.threshold = abc\n", "t:3: value 'abc' for 'cot.threshold'" },
		{ "step_tokens = 1.5\n", "whole number" },
		{ "step_tokens = -3\n", "whole number" },
		{ "cot.w.nope = 1\n", "unknown key 'cot.w.nope'" },
		{ "step_tokens = 64\nstep_tokens = 64\n", "given twice" },
		{ "just words\n", "expected 'key = value'" },
		{ "[cot\n", "t:1: expected '[section]'" },
		{ "step_tokens = 0\n", "step_tokens: 0 is out of range" },
		{ "cot.threshold = 3\n", "cot.threshold" },
		{ "cot.threshold_slope = 1.5\n", "cot.threshold_slope" },
		{ "sc.vote_threshold = -0.5\n", "sc.vote_threshold" },
		{ "probe_stride = nan\n", "finite number" },
		{ "settle_closed = 2\n", "settle_closed: 2 is out of range" },
		{ "unpromising_relative = 2\n", "unpromising_relative: 2 is out of range" },
		{ "sc.vote_threshold = 2.5\n", "sc.vote_threshold: 2.5 is out of range" },
		{ "sc.vote_threshold = -0.1\n", "sc.vote_threshold" },
		{ "cot.threshold_slope = 1.5\n", "cot.threshold_slope: 1.5 is out of range" },
		{ "cot.threshold_slope = -2\n", "cot.threshold_slope" },
		{ "model_tokens.min_samples = 513\n", "model_tokens.min_samples: 513 is out of range" },
		{ "model_confidence.min_samples = 513\n",
		  "model_confidence.min_samples: 513 is out of range [0, 512]" },
	};
	struct sched_policy p, before;
	char err[256];
	size_t i;

	(void)state;
	sched_policy_default(&p);
	before = p;
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		err[0] = '\0';
		assert_int_equal(policy_parse(cases[i].text, strlen(cases[i].text), "t", &p, err,
		    sizeof err), CERTA_ECONFIG);
		if (strstr(err, cases[i].msg) == NULL)
			fail_msg("case %zu: '%s' lacks '%s'", i, err, cases[i].msg);
		/* A failed parse leaves the policy as it was. */
		assert_true(policy_equal(&p, &before));
	}
}

static void
test_format_roundtrip(void **state)
{
	struct sched_policy p, q;
	char buf[4096], err[256];
	size_t n;

	(void)state;
	sched_policy_default(&p);
	p.cot_threshold = 0.123456789;
	p.cot_w[3] = -2.5;
	p.starvation_ms = 12345;
	policy_round(&p);
	assert_true(p.cot_threshold == 0.123457);
	n = policy_format(&p, buf, sizeof buf);
	assert_true(n < sizeof buf);
	assert_int_equal(strlen(buf), n);
	assert_non_null(strstr(buf, "cot.w.grounded = -2.5\n"));
	memset(&q, 0, sizeof q);
	q.step_tokens = 1;
	assert_int_equal(policy_parse(buf, n, NULL, &q, err, sizeof err), 0);
	assert_true(policy_equal(&p, &q));
	/* Truncation reports the full length. */
	assert_int_equal(policy_format(&p, buf, 10), n);
	assert_int_equal(strlen(buf), 9);
}

static void
test_state_machine(void **state)
{
	static const enum sched_pstate stops[] = {
		SCHED_PS_STOP_CERTAIN, SCHED_PS_STOP_UNPROMISING, SCHED_PS_STOP_BUDGET,
		SCHED_PS_STOP_DEADLINE, SCHED_PS_STOP_NATURAL,
	};
	struct sched_state s = { SCHED_PS_NEW };
	size_t i, j;

	(void)state;
	/* The forward path. */
	sched_set_state(&s, SCHED_PS_WARMUP);
	sched_set_state(&s, SCHED_PS_EXPLORING);
	sched_set_state(&s, SCHED_PS_EXPLORING);
	sched_set_state(&s, SCHED_PS_EXTENDED);
	sched_set_state(&s, SCHED_PS_STOP_BUDGET);
	assert_int_equal(s.state, SCHED_PS_STOP_BUDGET);
	assert_true(sched_state_terminal(s.state));
	assert_false(sched_state_terminal(SCHED_PS_EXTENDED));
	/* Never backwards, never out of a terminal state. */
	assert_false(sched_state_legal(SCHED_PS_EXPLORING, SCHED_PS_WARMUP));
	assert_false(sched_state_legal(SCHED_PS_EXTENDED, SCHED_PS_EXPLORING));
	assert_false(sched_state_legal(SCHED_PS_WARMUP, SCHED_PS_NEW));
	for (i = 0; i < sizeof stops / sizeof stops[0]; i++) {
		assert_true(sched_state_legal(SCHED_PS_NEW, stops[i]));
		assert_true(sched_state_legal(SCHED_PS_EXPLORING, stops[i]));
		for (j = 0; j < SCHED_PS_COUNT; j++)
			assert_int_equal(sched_state_legal(stops[i], (enum sched_pstate)j),
			    stops[i] == (enum sched_pstate)j);
	}
	assert_false(sched_state_legal(SCHED_PS_COUNT, SCHED_PS_NEW));
	assert_string_equal(sched_state_name(SCHED_PS_STOP_CERTAIN), "stop_certain");
	assert_string_equal(sched_state_name(SCHED_PS_COUNT), "unknown");
}

static void
state_backwards(void *arg)
{
	struct sched_state s = { SCHED_PS_STOP_CERTAIN };

	(void)arg;
	sched_set_state(&s, SCHED_PS_EXPLORING);
}

static void
test_state_machine_aborts(void **state)
{
	(void)state;
	assert_int_equal(harness_aborts(state_backwards, NULL), 1);
}

static void
test_fit_logistic(void **state)
{
	/* f = 0: 1 of 4 positive; f = 1: 3 of 4: w0 = logit(1/4), w0 + w1 = logit(3/4). */
	static const double x[16] = { 1, 0, 1, 0, 1, 0, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1 };
	static const unsigned char y[8] = { 1, 0, 0, 0, 1, 1, 1, 0 };
	double w[2];

	(void)state;
	assert_int_equal(evalsim_fit_logistic(x, y, 8, 2, 1e-9, w), 0);
	assert_true(fabs(w[0] - log(1.0 / 3)) < 1e-5);
	assert_true(fabs(w[1] - 2 * log(3.0)) < 1e-5);
	/* Regularization shrinks the slope. */
	assert_int_equal(evalsim_fit_logistic(x, y, 8, 2, 10, w), 0);
	assert_true(w[1] > 0 && w[1] < 2 * log(3.0) - 0.5);
}

/* Writes one synthetic trace line: probes every 64 tokens from `answers` (count n). */
/* The default policy with a chain model of stability alone, sigmoid(-3 + log2(1 +
 * stable/64)), probing every step (probe_stride 0). */
static void
stable_policy(struct sched_policy *p)
{
	sched_policy_default(p);
	memset(p->cot_w, 0, sizeof p->cot_w);
	p->cot_w[0] = -3;
	p->cot_w[1] = 1;
	p->probe_stride = 0;
}

static void
write_trace(FILE *f, const char *problem, const char *target, const char *final,
    const char *first, size_t nfirst, const char *then, size_t n)
{
	size_t i;

	fprintf(f, "{\"model\":\"m\",\"dataset\":\"d\",\"seed\":42,\"problem_id\":\"%s\","
	    "\"problem\":\"%s\",\"target\":\"%s\",\"tokens_used\":%zu,\"finished\":true,"
	    "\"final_answer\":\"%s\",\"final_correct\":true,\"text\":\"thinking\",\"probes\":[",
	    problem, problem, target, 64 * n, final);
	for (i = 0; i < n; i++)
		fprintf(f, "%s[%zu,\"%s\",1]", i ? "," : "", 64 * (i + 1),
		    i < nfirst ? first : then);
	fprintf(f, "]}\n");
}

/* A: "7" from the start (right).  B: "3" for 16 probes (a false consensus), then "9". */
static char *
synthetic_dir(void)
{
	static char dir[64];
	char path[128];
	FILE *f;

	snprintf(dir, sizeof dir, "/tmp/certa-test-policy-XXXXXX");
	if (mkdtemp(dir) == NULL)
		return NULL;
	snprintf(path, sizeof path, "%s/m__d__seed_42.jsonl", dir);
	f = fopen(path, "w");
	if (f == NULL)
		return NULL;
	write_trace(f, "Problem A", "7", "7", "7", 64, "7", 64);
	write_trace(f, "Problem B", "9", "9", "3", 16, "9", 64);
	fclose(f);
	return dir;
}

static void
test_calibrate_synthetic(void **state)
{
	struct sched_policy p;
	struct evalsim_set s;
	struct evalsim_calib cal;
	struct traces *tr;
	double tau, loss, saved;
	uint64_t u = 0;
	char *dir;
	size_t i, k;

	(void)state;
	log_set_level(LOG_LVL_ERR);
	dir = synthetic_dir();
	assert_non_null(dir);
	assert_int_equal(traces_load(dir, &tr), 0);
	assert_int_equal(traces_program_count(tr), 2);

	/* Certaindex = sigmoid(-3 + log2(1 + stable/64)).  B's false "3" reaches stable 960 at
	 * 1024: sigmoid(1) = 0.731; any threshold at or under it stops B wrong (loss 50%).  The
	 * cheapest safe candidate is therefore the next one above, 0.74. */
	stable_policy(&p);
	assert_int_equal(evalsim_record(tr, &p, SCHED_ALGO_COT, 1, EVALSIM_ALL, &s), 0);
	assert_int_equal(s.nprog, 2);
	saved = evalsim_pick_threshold(&s, 0.01, false, &tau, &u, &loss);
	assert_true(tau == 0.74);
	assert_true(loss == 0);
	assert_int_equal(u, 0);
	/* A stops at 1088 (stable 1024), B at 2112 (its "9" stable 1024): 17 + 33 probes. */
	assert_true(fabs(saved - (1.0 - (1088.0 + 17 + 2112 + 33) / (2 * 4096.0))) < 1e-12);
	evalsim_score_model(&s, NULL, 0.7, 0, &loss, &saved);
	assert_true(loss == 0.5);

	/* The trajectory sweep predicts exactly what sched_decide does with that threshold. */
	p.cot_threshold = tau;
	for (i = 0; i < 2; i++) {
		struct evalsim_outcome o;
		const struct evalsim_traj *t = &s.traj[i];
		assert_int_equal(evalsim_run(&p, traces_program_at(tr, i), SCHED_ALGO_COT, 1, &o,
		    NULL), 0);
		k = evalsim_stop_index(t->pts, t->npts, tau, 0);
		assert_int_equal(o.decode_tokens + o.probe_tokens, t->pts[k].cost);
		assert_true(o.correct);
		assert_int_equal(o.reason, SCHED_REASON_CERTAIN);
	}
	evalsim_set_free(&s);

	/* The whole calibration (fitted weights) stays within the loss and saves tokens. */
	memset(&cal, 0, sizeof cal);
	cal.max_loss = 0.01;
	cal.split = EVALSIM_ALL;
	cal.folds = 1;   /* two programs: in-sample (cross-validation needs more data) */
	cal.cot_label = EVALSIM_LABEL_SAFE;
	cal.sc_label = EVALSIM_LABEL_SAME;
	sched_policy_default(&p);
	assert_int_equal(evalsim_calibrate(tr, &cal, &p), 0);
	assert_true(cal.cot_loss <= 0.01);
	assert_true(cal.cot_saved > 0);
	assert_int_equal(sched_policy_validate(&p, (char[128]){ 0 }, 128), 0);
	for (i = 0; i < 2; i++) {
		struct evalsim_outcome o;
		assert_int_equal(evalsim_run(&p, traces_program_at(tr, i), SCHED_ALGO_COT, 1, &o,
		    NULL), 0);
		assert_true(o.correct);
	}
	traces_free(tr);
	assert_int_equal(harness_rmrf(dir), 0);
}

/* As write_trace, with the token statistics of an llm worker's history on every probe: mean
 * probability pfirst / pthen (and as least probability), chain entropy 1; a negative
 * probability: noise, uniform in [0.05, 0.95] from a generator seeded by the problem. */
static void
write_trace_probs(FILE *f, const char *problem, const char *final, const char *first,
    size_t nfirst, double pfirst, const char *then, double pthen, size_t n)
{
	uint64_t g = 1469598103934665603ULL;
	size_t i;

	for (i = 0; problem[i] != '\0'; i++)
		g = (g ^ (unsigned char)problem[i]) * 1099511628211ULL;
	fprintf(f, "{\"model\":\"m\",\"dataset\":\"d\",\"seed\":42,\"problem_id\":\"%s\","
	    "\"problem\":\"%s\",\"target\":\"%s\",\"tokens_used\":%zu,\"finished\":true,"
	    "\"final_answer\":\"%s\",\"final_correct\":true,\"text\":\"thinking\",\"probes\":[",
	    problem, problem, final, 64 * n, final);
	for (i = 0; i < n; i++) {
		double pr = i < nfirst ? pfirst : pthen;
		g = g * 6364136223846793005ULL + 1442695040888963407ULL;
		if (pr < 0)
			pr = 0.05 + 0.9 * (double)(g >> 11) / 9007199254740992.0;
		fprintf(f, "%s[%zu,\"%s\",1,%g,%g,1]", i ? "," : "", 64 * (i + 1),
		    i < nfirst ? first : then, pr, pr);
	}
	fprintf(f, "]}\n");
}

/* Token statistics in the traces (history exported from llm workers) reach the features in
 * replay, and calibration fits their weights: on traces whose false consensus is told apart
 * by a low probe probability, the threshold sweep saves more with the confidence weight than
 * without, the calibrated policy has a confidence weight > 0, and the same traces without the
 * statistics calibrate to weight 0 (the policy as before). */
static void
test_token_stats_replay(void **state)
{
	struct sched_policy p;
	struct evalsim_set s;
	struct evalsim_calib cal;
	struct traces *tr;
	double tau, loss, saved_with, saved_without;
	uint64_t u = 0;
	char dir[64], path[128];
	size_t i, k;
	FILE *f;

	(void)state;
	log_set_level(LOG_LVL_ERR);
	snprintf(dir, sizeof dir, "/tmp/certa-test-policy-XXXXXX");
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof path, "%s/m__d__seed_42.jsonl", dir);
	f = fopen(path, "w");
	assert_non_null(f);
	/* A: "7" from the start, sure.  B: a false "3" for 16 probes, unsure, then "9", sure. */
	write_trace_probs(f, "Problem A", "7", "7", 64, 0.95, "7", 0.95, 64);
	write_trace_probs(f, "Problem B", "9", "3", 16, 0.3, "9", 0.95, 64);
	fclose(f);
	assert_int_equal(traces_load(dir, &tr), 0);

	stable_policy(&p);
	/* Without the confidence weight: test_calibrate_synthetic's pick (B's "3" bounds it). */
	assert_int_equal(evalsim_record(tr, &p, SCHED_ALGO_COT, 1, EVALSIM_ALL, &s), 0);
	saved_without = evalsim_pick_threshold(&s, 0.01, false, &tau, &u, &loss);
	assert_true(tau == 0.74);
	/* the rows carry the statistics: x = probability - the model's level (the median of
	 * the runs' first probe probabilities: 0.95 and 0.3), entropy 1 */
	assert_true(traces_model_prob(tr, "m") == 0.625);
	assert_true(traces_model_prob(tr, "other") == -1);
	{
		size_t low = 0, level = 0;
		for (k = 0; k < s.rows.nrows; k++) {
			const double *x = s.rows.x + k * s.rows.nfeat;
			low += fabs(x[9] - (0.3 - 0.625)) < 1e-12;
			level += fabs(x[9] - (0.95 - 0.625)) < 1e-12;
			assert_true(x[14] == x[9]);
			assert_true(x[15] == 1);
		}
		assert_true(low > 0 && level > 0 && low + level == s.rows.nrows);
	}
	evalsim_set_free(&s);
	p.cot_w[9] = 8;
	assert_int_equal(evalsim_record(tr, &p, SCHED_ALGO_COT, 1, EVALSIM_ALL, &s), 0);
	saved_with = evalsim_pick_threshold(&s, 0.01, false, &tau, &u, &loss);
	assert_true(loss == 0);
	assert_true(saved_with > saved_without + 0.05);
	/* the sweep still predicts sched_decide exactly (at the model's probability level) */
	p.cot_threshold = tau;
	for (i = 0; i < 2; i++) {
		struct evalsim_outcome o;
		const struct evalsim_traj *t = &s.traj[i];
		struct sched_policy pm;
		evalsim_model_policy(tr, &p, "m", &pm);
		assert_true(pm.model_confidence == 0.625);
		assert_int_equal(evalsim_run(&pm, traces_program_at(tr, i), SCHED_ALGO_COT, 1, &o,
		    NULL), 0);
		k = evalsim_stop_index(t->pts, t->npts, tau, 0);
		assert_int_equal(o.decode_tokens + o.probe_tokens, t->pts[k].cost);
		assert_true(o.correct);
	}
	evalsim_set_free(&s);

	traces_free(tr);
	assert_int_equal(harness_rmrf(dir), 0);

	/* The whole calibration on 24 programs of each kind, three ways: statistics that tell
	 * B's false "3" (fitted: weight > 0), the same probability on every probe (a fit gives
	 * it weight, the likelihood gains nothing: not kept), none (weight 0, not seen). */
	memset(&cal, 0, sizeof cal);
	cal.max_loss = 0.01;
	cal.split = EVALSIM_ALL;
	cal.folds = 1;
	cal.cot_label = EVALSIM_LABEL_SAFE;
	cal.sc_label = EVALSIM_LABEL_SAME;
	for (k = 0; k < 3; k++) {
		assert_non_null(mkdtemp(strcpy(dir, "/tmp/certa-test-policy-XXXXXX")));
		snprintf(path, sizeof path, "%s/m__d__seed_42.jsonl", dir);
		f = fopen(path, "w");
		assert_non_null(f);
		for (i = 0; i < 24; i++) {
			char pa[32], pb[32];
			snprintf(pa, sizeof pa, "Problem A%zu", i);
			snprintf(pb, sizeof pb, "Problem B%zu", i);
			if (k == 0) {
				write_trace_probs(f, pa, "7", "7", 64, 0.95, "7", 0.95, 64);
				write_trace_probs(f, pb, "9", "3", 16, 0.3, "9", 0.95, 64);
			} else if (k == 1) {
				write_trace_probs(f, pa, "7", "7", 64, -1, "7", -1, 64);
				write_trace_probs(f, pb, "9", "3", 16, -1, "9", -1, 64);
			} else {
				write_trace(f, pa, "7", "7", "7", 64, "7", 64);
				write_trace(f, pb, "9", "9", "3", 16, "9", 64);
			}
		}
		fclose(f);
		assert_int_equal(traces_load(dir, &tr), 0);
		sched_policy_default(&p);
		assert_int_equal(evalsim_calibrate(tr, &cal, &p), 0);
		assert_true(cal.cot_loss <= 0.01);
		assert_int_equal(cal.cot_stats_seen, k < 2);
		assert_int_equal(cal.cot_stats, k == 0);
		if (k == 0)
			assert_true(p.cot_w[9] > 0);
		else
			assert_true(p.cot_w[9] == 0 && p.cot_w[14] == 0 && p.cot_w[15] == 0);
		/* the level the rows were measured at becomes the policy's model_confidence
		 * (certad's prior): A's first probes 0.95, B's 0.3; noise somewhere in
		 * between; none without statistics, and a start policy's own value stays */
		if (k == 0)
			assert_float_equal(p.model_confidence, 0.625, 0);
		else if (k == 1)
			assert_true(p.model_confidence > 0.05 && p.model_confidence < 0.95);
		else {
			assert_true(p.model_confidence == 0);
			sched_policy_default(&p);
			p.model_confidence = 0.7;
			assert_int_equal(evalsim_calibrate(tr, &cal, &p), 0);
			assert_true(p.model_confidence == 0.7);
		}
		traces_free(tr);
		assert_int_equal(harness_rmrf(dir), 0);
	}
}

/* The keep rule for token statistics, on the figures of two calibrations of one dev-trace
 * model (bench/confidence-sensitivity): noise statistics that save more by chance while the
 * likelihood falls are dropped; informative ones are kept; the design effect and the saving
 * both matter. */
static void
test_stats_gain(void **state)
{
	(void)state;
	/* d = 0 (noise): 6507 rows, 456 programs, ll -3161.62 vs -3160.10, saved 20.3 vs 19.1% */
	assert_false(evalsim_stats_gain(6507, 456, -3161.62, -3160.10, 0.2028, 0.1906));
	/* d = 2: ll -6084.27 vs -7292.62 on 14401 rows of 912 programs, saved 21.0 vs 16.3% */
	assert_true(evalsim_stats_gain(14401, 912, -6084.27, -7292.62, 0.2096, 0.1628));
	/* ... but not when the pick saves no more */
	assert_false(evalsim_stats_gain(14401, 912, -6084.27, -7292.62, 0.1628, 0.1628));
	/* 2 * 100 = 200 over 16.27 alone, not over 16.27 x 15.8 rows per program */
	assert_true(evalsim_stats_gain(912, 912, -1000, -1100, 0.2, 0.1));
	assert_false(evalsim_stats_gain(14401, 912, -1000, -1100, 0.2, 0.1));
	assert_false(evalsim_stats_gain(0, 0, -1, -1, 0.2, 0.1));
}

/* Cross-validation pieces: folds by problem hash, reweighting a recorded set equals
 * recording it again with the weights, and the z bound makes the pick stricter. */
static void
test_calibrate_folds(void **state)
{
	struct sched_policy p, q;
	struct evalsim_set a, b;
	struct evalsim_calib cal;
	struct traces *tr;
	double tau, loss, saved;
	uint64_t u = 0;
	unsigned f, seen = 0;
	size_t i, k;
	char *dir;
	char name[32];

	(void)state;
	for (i = 0; i < 200; i++) {
		snprintf(name, sizeof name, "problem %zu", i);
		f = evalsim_fold_of(name, 5);
		assert_true(f < 5);
		assert_int_equal(f, evalsim_fold_of(name, 5));
		seen |= 1u << f;
	}
	assert_int_equal(seen, 0x1f);
	assert_int_equal(evalsim_fold_of("x", 1), 0);

	log_set_level(LOG_LVL_ERR);
	dir = synthetic_dir();
	assert_non_null(dir);
	assert_int_equal(traces_load(dir, &tr), 0);
	sched_policy_default(&p);
	p.probe_stride = 0;
	q = p;
	memset(q.cot_w, 0, sizeof q.cot_w);
	q.cot_w[0] = -3;
	q.cot_w[1] = 1;
	assert_int_equal(evalsim_record_folds(tr, &p, SCHED_ALGO_COT, 1, EVALSIM_ALL,
	    EVALSIM_LABEL_SAFE, 2, &a), 0);
	assert_int_equal(evalsim_record(tr, &q, SCHED_ALGO_COT, 1, EVALSIM_ALL, &b), 0);
	assert_int_equal(a.folds, 2);
	assert_int_equal(a.nprog, b.nprog);
	assert_non_null(a.row_fold);
	evalsim_set_reweight(&a, SCHED_ALGO_COT, q.cot_w, a.folds);
	for (i = 0; i < a.nprog; i++) {
		assert_int_equal(a.traj[i].npts, b.traj[i].npts);
		for (k = 0; k < a.traj[i].npts; k++)
			assert_true(a.traj[i].pts[k].c == b.traj[i].pts[k].c);
	}
	/* Any threshold at or under 0.731 stops B wrong (loss 0.5); with z = 1 a candidate with
	 * one flip in two programs is bounded by (1 + 1) / 2; with a huge z and max_loss
	 * 0.4, only zero-flip candidates pass. */
	b.z = 0;
	evalsim_pick_threshold(&b, 0.6, false, &tau, &u, &loss);
	assert_true(tau <= 0.731);
	b.z = 1;
	evalsim_pick_threshold(&b, 0.6, false, &tau, &u, &loss);
	assert_true(tau == 0.74);
	assert_true(loss == 0);
	evalsim_set_free(&a);
	evalsim_set_free(&b);

	/* The whole calibration with folds (the default) and the bound. */
	memset(&cal, 0, sizeof cal);
	cal.max_loss = 0.01;
	cal.split = EVALSIM_ALL;
	cal.z = 1;
	sched_policy_default(&p);
	assert_int_equal(evalsim_calibrate(tr, &cal, &p), 0);
	assert_int_equal(cal.folds, 5);
	assert_true(cal.cot_bound <= 0.01);
	assert_int_equal(sched_policy_validate(&p, (char[128]){ 0 }, 128), 0);
	(void)saved;
	traces_free(tr);
	assert_int_equal(harness_rmrf(dir), 0);
}

/* The shipped default on the held-out split of the real traces: <= 1 point per model. */
/* Two models x three seeds x 30 problems, one trace file per (model, seed). */
#define FILTER_NPROB 30
static const int64_t filter_seeds[3] = { 42, 43, 44 };

static char *
filter_dir(void)
{
	static char dir[64];
	char path[128];
	size_t m, sd, i;

	snprintf(dir, sizeof dir, "/tmp/certa-test-filter-XXXXXX");
	if (mkdtemp(dir) == NULL)
		return NULL;
	for (m = 0; m < 2; m++)
		for (sd = 0; sd < 3; sd++) {
			FILE *f;
			snprintf(path, sizeof path, "%s/m%zu__d__seed_%lld.jsonl", dir, m,
			    (long long)filter_seeds[sd]);
			f = fopen(path, "w");
			if (f == NULL)
				return NULL;
			/* every third problem: a wrong "99" for the first 8 of 32 probes */
			for (i = 0; i < FILTER_NPROB; i++) {
				size_t k;
				fprintf(f, "{\"model\":\"m%zu\",\"dataset\":\"d\",\"seed\":%lld,"
				    "\"problem_id\":\"p%zu\",\"problem\":\"Problem %zu\","
				    "\"target\":\"%zu\",\"tokens_used\":2048,\"finished\":true,"
				    "\"final_answer\":\"%zu\",\"final_correct\":true,"
				    "\"text\":\"thinking\",\"probes\":[", m,
				    (long long)filter_seeds[sd], i, i, i, i);
				for (k = 0; k < 32; k++)
					fprintf(f, "%s[%zu,\"%zu\",1]", k ? "," : "", 64 * (k + 1),
					    k < 8 && i % 3 == 0 ? (size_t)99 : i);
				fprintf(f, "]}\n");
			}
			fclose(f);
		}
	return dir;
}

/* Two models of different chain lengths (a: 1024, 2048, 3072 -> median 2048; b: 4096, 8192,
 * 8192, 12288 -> median 8192), one problem per chain, a wrong answer "7" throughout. */
static char *
relative_dir(void)
{
	static const uint64_t len[2][4] = { { 1024, 2048, 3072, 0 }, { 4096, 8192, 8192, 12288 } };
	static char dir[64];
	char path[128];
	size_t m, i, k;

	snprintf(dir, sizeof dir, "/tmp/certa-test-rel-XXXXXX");
	if (mkdtemp(dir) == NULL)
		return NULL;
	for (m = 0; m < 2; m++) {
		FILE *f;
		snprintf(path, sizeof path, "%s/%c__d__seed_42.jsonl", dir, (int)('a' + m));
		if ((f = fopen(path, "w")) == NULL)
			return NULL;
		for (i = 0; i < 4 && len[m][i] > 0; i++) {
			fprintf(f, "{\"model\":\"%c\",\"dataset\":\"d\",\"seed\":42,"
			    "\"problem_id\":\"p%zu\",\"problem\":\"Problem %zu\",\"target\":\"1\","
			    "\"tokens_used\":%llu,\"finished\":true,\"final_answer\":\"7\","
			    "\"final_correct\":false,\"text\":\"thinking\",\"probes\":[",
			    (int)('a' + m), i, i, (unsigned long long)len[m][i]);
			for (k = 64; k <= len[m][i]; k += 64)
				fprintf(f, "%s[%zu,\"7\",1]", k > 64 ? "," : "", k);
			fprintf(f, "]}\n");
		}
		fclose(f);
	}
	return dir;
}

/* A synthetic sc trace of seed index sd (of filter_seeds) for problem i: its length (a
 * multiple of 64), its final answer (right when it is 100 + i, the target) and the answer of
 * probe k (at 64 * (k + 1) tokens). */
typedef void (*sc_trace_fn)(size_t sd, size_t i, size_t *len, size_t *final,
    size_t (*probe)[64]);

/* Writes nprob problems ("TAG problem a", ...) x 3 seeds of fn's traces into a new directory
 * under /tmp; returns it (static storage) or NULL. */
static char *
sc_trace_dir(const char *tag, size_t nprob, sc_trace_fn fn)
{
	static char dir[64];
	char path[128];
	size_t sd, i;

	snprintf(dir, sizeof dir, "/tmp/certa-test-%s-XXXXXX", tag);
	if (mkdtemp(dir) == NULL)
		return NULL;
	for (sd = 0; sd < 3; sd++) {
		FILE *f;
		snprintf(path, sizeof path, "%s/m__d__seed_%lld.jsonl", dir,
		    (long long)filter_seeds[sd]);
		if ((f = fopen(path, "w")) == NULL)
			return NULL;
		for (i = 0; i < nprob; i++) {
			size_t k, len, final, probe[64];
			fn(sd, i, &len, &final, &probe);
			fprintf(f, "{\"model\":\"m\",\"dataset\":\"d\",\"seed\":%lld,"
			    "\"problem_id\":\"p%zu\",\"problem\":\"%s problem %c\","
			    "\"target\":\"%zu\",\"tokens_used\":%zu,\"finished\":true,"
			    "\"final_answer\":\"%zu\",\"final_correct\":%s,"
			    "\"text\":\"thinking\",\"probes\":[", (long long)filter_seeds[sd], i,
			    tag, (int)('a' + i), 100 + i, len, final,
			    final == 100 + i ? "true" : "false");
			for (k = 0; k < len / 64 && k < 64; k++)
				fprintf(f, "%s[%zu,\"%zu\",1]", k ? "," : "", 64 * (k + 1), probe[k]);
			fprintf(f, "]}\n");
		}
		fclose(f);
	}
	return dir;
}

/* sc vote traces: 10 problems x 3 seeds, 32 probes each, every final answer right (100 + i).
 * Problems 0 and 5: seeds 42 and 43 hold a wrong "99" for their first 16 probes (a false
 * consensus of two chains, chain certaindex sigmoid(-3 + log2(16)) = 0.731 at its most). */
static void
vote_trace(size_t sd, size_t i, size_t *len, size_t *final, size_t (*probe)[64])
{
	size_t k;

	*len = 2048;
	*final = 100 + i;
	for (k = 0; k < 32; k++)
		(*probe)[k] = k < 16 && i % 5 == 0 && sd < 2 ? 99 : 100 + i;
}

static char *
vote_dir(void)
{
	return sc_trace_dir("Vote", 10, vote_trace);
}

/* Staged sc traces: 6 problems x 3 seeds, probes every 64 tokens answering the chain's final
 * answer.  Even problems: all three chains answer 100 + i (2048 tokens each).  Odd problems:
 * seed 42 answers 7 (wrong), 43 and 44 answer 100 + i; seed 44 ends at 1024 tokens. */
static void
staged_trace(size_t sd, size_t i, size_t *len, size_t *final, size_t (*probe)[64])
{
	size_t k;

	*len = sd == 2 ? 1024 : 2048;
	*final = i % 2 && sd == 0 ? 7 : 100 + i;
	for (k = 0; k < *len / 64; k++)
		(*probe)[k] = *final;
}

static char *
staged_dir(void)
{
	return sc_trace_dir("Staged", 6, staged_trace);
}

/* sc.staged in the replay: with two chains agreeing the third never runs (its tokens saved,
 * the answer the vote of all three gives); with two disagreeing it is launched once both have
 * ended and decides.  The sc model, which stops the unstaged programs at once, never stops a
 * staged one; the recorded trajectory stops where the replay does. */
static void
test_sc_staged_replay(void **state)
{
	struct sched_policy p, q;
	struct evalsim_set s;
	struct traces *tr;
	size_t i, k;
	char *dir;

	(void)state;
	log_set_level(LOG_LVL_ERR);
	dir = staged_dir();
	assert_non_null(dir);
	assert_int_equal(traces_load(dir, &tr), 0);
	assert_int_equal(traces_program_count(tr), 6);
	sched_policy_default(&p);
	memset(p.sc_w, 0, sizeof p.sc_w);
	p.sc_w[0] = 5;            /* the sc model alone: 0.993 from the first probe */
	p.sc_threshold = 0.9;
	p.probe_stride = 0;
	p.unpromising_relative = 0;
	p.sc_unpromising_tokens = 0;
	q = p;
	q.sc_staged = 1;
	assert_int_equal(evalsim_record(tr, &q, SCHED_ALGO_SC, 3, EVALSIM_ALL, &s), 0);
	assert_int_equal(s.nprog, 6);
	for (i = 0; i < 6; i++) {
		const struct traces_program *prog = traces_program_at(tr, i);
		const struct evalsim_traj *t = &s.traj[i];
		struct evalsim_outcome o, u;
		struct evalsim_full full;
		bool odd = prog->problem[strlen(prog->problem) - 1] % 2 == 0;   /* 'b', 'd', 'f' */

		evalsim_reference(prog, 3, &full);
		assert_int_equal(evalsim_run(&p, prog, SCHED_ALGO_SC, 3, &u, NULL), 0);
		assert_int_equal(u.reason, SCHED_REASON_CERTAIN);
		assert_true(u.decode_tokens < 3 * 1024);   /* unstaged: the model stopped it */
		assert_int_equal(evalsim_run(&q, prog, SCHED_ALGO_SC, 3, &o, NULL), 0);
		assert_string_equal(o.answer, full.answer);
		assert_true(o.correct);
		assert_int_equal(o.reason, odd ? SCHED_REASON_NATURAL_END : SCHED_REASON_CERTAIN);
		/* agreeing: two chains to their ends; disagreeing: the third too */
		assert_int_equal(o.decode_tokens, odd ? 2 * 2048 + 1024 : 2 * 2048);
		assert_int_equal(o.launched, odd);
		/* latency: the third chain starts after the first two ended */
		assert_int_equal(o.path_tokens, odd ? 2048 + 1024 : 2048);
		assert_false(u.launched);
		assert_int_equal(t->started, 2);
		k = evalsim_stop_index(t->pts, t->npts, q.sc_threshold, 0);
		assert_int_equal(o.decode_tokens + o.probe_tokens, t->pts[k].cost);
		/* points before the stop are not eligible to stop certain */
		assert_true(t->pts[0].c < 0);
		/* the third chain's tokens after its launch (odd), none before or without one */
		assert_int_equal(t->pts[t->npts - 1].late, odd ? 1024 : 0);
	}
	evalsim_set_free(&s);
	/* sc.staged = 2: chains certain at cot.threshold vote; the recording (which turns
	 * cot.threshold off) stops where the replay does, and earlier than mode 1 */
	q.sc_staged = 2;
	q.cot_threshold = 0.5;
	assert_int_equal(evalsim_record(tr, &q, SCHED_ALGO_SC, 3, EVALSIM_ALL, &s), 0);
	for (i = 0; i < 6; i++) {
		const struct traces_program *prog = traces_program_at(tr, i);
		const struct evalsim_traj *t = &s.traj[i];
		struct evalsim_outcome o2, o1;
		struct sched_policy q1 = q;

		q1.sc_staged = 1;
		assert_int_equal(evalsim_run(&q, prog, SCHED_ALGO_SC, 3, &o2, NULL), 0);
		assert_int_equal(evalsim_run(&q1, prog, SCHED_ALGO_SC, 3, &o1, NULL), 0);
		k = evalsim_stop_index(t->pts, t->npts, q.sc_threshold, 0);
		assert_int_equal(o2.decode_tokens + o2.probe_tokens, t->pts[k].cost);
		assert_true(o2.decode_tokens < o1.decode_tokens);
	}
	evalsim_set_free(&s);
	traces_free(tr);
	assert_int_equal(harness_rmrf(dir), 0);
}

/* sc.vote_threshold in the sweep: a set recorded with the rule off and then given a vote
 * threshold (evalsim_set_vote) equals the set recorded with it, and stops where a replay
 * through sched_decide() with it stops; evalsim_pick_vote finds the lowest vote threshold
 * the false consensus does not pass. */
static void
test_sc_vote_replay(void **state)
{
	static const double tvs[] = { 1.5, 0.85, 0.8, 0.74, 0.731, 0.6 };
	struct sched_policy p, q;
	struct evalsim_set s, r;
	struct traces *tr;
	double tv, tau, loss, saved, saved_off = 0;
	uint64_t u = 0;
	size_t i, k, j;
	char *dir;

	(void)state;
	log_set_level(LOG_LVL_ERR);
	dir = vote_dir();
	assert_non_null(dir);
	assert_int_equal(traces_load(dir, &tr), 0);
	assert_int_equal(traces_program_count(tr), 10);
	sched_policy_default(&p);
	memset(p.cot_w, 0, sizeof p.cot_w);
	p.cot_w[0] = -3;
	p.cot_w[1] = 1;
	memset(p.sc_w, 0, sizeof p.sc_w);
	p.sc_w[0] = -5;           /* the sc model alone never reaches 0.5 */
	p.probe_stride = 0;
	p.unpromising_relative = 0;
	p.sc_unpromising_tokens = 0;
	p.sc_threshold = 0.5;
	assert_int_equal(evalsim_record(tr, &p, SCHED_ALGO_SC, 3, EVALSIM_ALL, &s), 0);
	assert_int_equal(s.nprog, 10);
	for (j = 0; j < sizeof tvs / sizeof tvs[0]; j++) {
		double lsum = 0;
		q = p;
		q.sc_vote_threshold = tvs[j];
		evalsim_set_vote(&s, tvs[j]);
		assert_int_equal(evalsim_record(tr, &q, SCHED_ALGO_SC, 3, EVALSIM_ALL, &r), 0);
		for (i = 0; i < s.nprog; i++) {
			const struct evalsim_traj *t = &s.traj[i];
			struct evalsim_outcome o;
			assert_int_equal(t->npts, r.traj[i].npts);
			for (k = 0; k < t->npts; k++) {
				assert_true(t->pts[k].c == r.traj[i].pts[k].c);
				assert_int_equal(t->pts[k].decided, r.traj[i].pts[k].decided);
			}
			k = evalsim_stop_index(t->pts, t->npts, q.sc_threshold, 0);
			assert_int_equal(evalsim_run(&q, traces_program_at(tr, i), SCHED_ALGO_SC, 3,
			    &o, NULL), 0);
			assert_int_equal(o.decode_tokens + o.probe_tokens, t->pts[k].cost);
			assert_int_equal(o.correct, t->pts[k].correct);
			assert_int_equal(o.reason == SCHED_REASON_CERTAIN, !t->pts[k].end);
			lsum += !o.correct;
		}
		evalsim_set_free(&r);
		evalsim_score_model(&s, NULL, q.sc_threshold, 0, &loss, &saved);
		if (j == 0) {
			saved_off = saved;
			assert_true(saved < 1e-9);   /* off: every program runs to its end */
		}
		/* 0.74 and up: no wrong stop; 0.731 and below: problems 0 and 5 stop on "99" */
		assert_true(tvs[j] > 0.735 ? lsum == 0 : lsum == 2);
		if (j > 0 && tvs[j] > 0.735)
			assert_true(saved > saved_off + 0.05);
	}
	s.z = 0;
	saved = evalsim_pick_vote(&s, 0.01, &tv, &tau, &u, &loss);
	assert_true(tv == 0.74);
	assert_true(tau <= 1);
	assert_true(loss <= 0.01);
	assert_true(saved > 0.05);
	/* the set is left under the chosen threshold */
	evalsim_score_model(&s, NULL, tau, u, &loss, &saved);
	assert_true(loss == 0);
	evalsim_set_free(&s);
	traces_free(tr);
	assert_int_equal(harness_rmrf(dir), 0);
}

/* The model's typical length is the median of its chains' lengths (no label read); with
 * unpromising_relative the recorded trajectories count tokens as sched_decide() does, so
 * evalsim_stop_index with a bound stops where a replay with that bound stops. */
static void
test_unpromising_relative_replay(void **state)
{
	static const uint64_t bounds[] = { 1024, 2048, 3000, 4096 };
	struct sched_policy p, pm, q;
	struct evalsim_set s;
	struct traces *tr;
	char *dir;
	size_t i, b;

	(void)state;
	log_set_level(LOG_LVL_ERR);
	dir = relative_dir();
	assert_non_null(dir);
	assert_int_equal(traces_load(dir, &tr), 0);
	assert_int_equal(evalsim_model_expected(tr, "a"), 2048);
	assert_int_equal(evalsim_model_expected(tr, "b"), 8192);
	assert_int_equal(evalsim_model_expected(tr, "none"), 0);
	sched_policy_default(&p);
	/* shipped on; the model's length comes per model (certa-eval: the traces; certad:
	 * learned, daemon/shadow.h), never from the policy file */
	assert_int_equal(p.unpromising_relative, 1);
	assert_int_equal(p.model_tokens, 0);
	p.probe_stride = 0;
	p.unpromising_relative = 0;
	evalsim_model_policy(tr, &p, "b", &pm);   /* off: unchanged */
	assert_int_equal(pm.model_tokens, 0);
	p.unpromising_relative = 1;
	evalsim_model_policy(tr, &p, "b", &pm);
	assert_int_equal(pm.model_tokens, 8192);
	evalsim_model_policy(tr, &p, "a", &pm);
	assert_int_equal(pm.model_tokens, 2048);
	assert_int_equal(evalsim_record(tr, &p, SCHED_ALGO_COT, 1, EVALSIM_ALL, &s), 0);
	assert_int_equal(s.nprog, 7);
	for (i = 0; i < s.nprog; i++) {
		const struct traces_program *prog = traces_program_at(tr, i);
		const struct evalsim_traj *t = &s.traj[i];
		for (b = 0; b < sizeof bounds / sizeof bounds[0]; b++) {
			struct evalsim_outcome o;
			size_t k = evalsim_stop_index(t->pts, t->npts, 2, bounds[b]);
			evalsim_model_policy(tr, &p, prog->model, &q);
			q.cot_threshold = 2;
			q.unpromising_tokens = bounds[b];
			assert_int_equal(evalsim_run(&q, prog, SCHED_ALGO_COT, 1, &o, NULL), 0);
			assert_int_equal(o.decode_tokens + o.probe_tokens, t->pts[k].cost);
			assert_int_equal(o.reason == SCHED_REASON_UNPROMISING, !t->pts[k].end);
			/* relative: model b (unit 2) stops at twice the bound, a (unit 0.5) at half
			 * (the first 64-token step at or past it) */
			if (!t->pts[k].end) {
				uint64_t at = strcmp(prog->model, "a") == 0 ? bounds[b] / 2 :
				    bounds[b] * 2;
				assert_int_equal(o.stop_tokens, (at + 63) / 64 * 64);
			}
		}
	}
	evalsim_set_free(&s);
	traces_free(tr);
	assert_int_equal(harness_rmrf(dir), 0);
}

/* cot.threshold_slope in the sweep: on trajectories recorded without it (two models of
 * different lengths), evalsim_stop_index_slope stops where a replay through sched_decide()
 * with the slope stops, in the model's own units; the slope moves some stops; the scores see
 * the set's slope; evalsim_pick_slope keeps 0 on ties and saves at least what it saves. */
static void
test_cot_slope_replay(void **state)
{
	static const double taus[] = { 0.6, 0.7, 0.8, 0.9 };
	static const double slopes[] = { -0.1, -0.05, 0, 0.05, 0.1 };
	struct sched_policy p, q;
	struct evalsim_set s;
	struct traces *tr;
	char *dir;
	double tau, loss, saved, saved0, sl, l0, l1, s0, s1;
	uint64_t u = 0;
	size_t i, a, b, moved = 0;

	(void)state;
	log_set_level(LOG_LVL_ERR);
	dir = relative_dir();
	assert_non_null(dir);
	assert_int_equal(traces_load(dir, &tr), 0);
	stable_policy(&p);
	p.unpromising_tokens = 0;
	assert_int_equal(evalsim_record(tr, &p, SCHED_ALGO_COT, 1, EVALSIM_ALL, &s), 0);
	assert_int_equal(s.nprog, 7);
	for (i = 0; i < s.nprog; i++) {
		const struct traces_program *prog = traces_program_at(tr, i);
		const struct evalsim_traj *t = &s.traj[i];
		for (a = 0; a < sizeof taus / sizeof taus[0]; a++)
			for (b = 0; b < sizeof slopes / sizeof slopes[0]; b++) {
				struct evalsim_outcome o;
				size_t k = evalsim_stop_index_slope(t->pts, t->npts, taus[a],
				    slopes[b], 0);
				evalsim_model_policy(tr, &p, prog->model, &q);
				q.cot_threshold = taus[a];
				q.cot_threshold_slope = slopes[b];
				assert_int_equal(evalsim_run(&q, prog, SCHED_ALGO_COT, 1, &o, NULL), 0);
				assert_int_equal(o.decode_tokens + o.probe_tokens, t->pts[k].cost);
				assert_int_equal(o.reason == SCHED_REASON_CERTAIN, !t->pts[k].end);
				if (slopes[b] == 0)
					assert_int_equal(k, evalsim_stop_index(t->pts, t->npts, taus[a],
					    0));
				else if (k != evalsim_stop_index(t->pts, t->npts, taus[a], 0))
					moved++;
			}
	}
	assert_true(moved > 0);
	/* the scores apply the set's slope */
	evalsim_score_model(&s, NULL, 0.9, 0, &l0, &s0);
	s.slope = 0.1;
	evalsim_score_model(&s, NULL, 0.9, 0, &l1, &s1);
	assert_true(s1 != s0);
	s.slope = 0;
	s.z = 0;
	saved0 = evalsim_pick_threshold(&s, 0.01, true, &tau, &u, &loss);
	saved = evalsim_pick_slope(&s, 0.01, &sl, &tau, &u, &loss);
	assert_true(saved >= saved0);
	assert_true(s.slope == sl);
	assert_true(sl == 0 ? saved == saved0 : saved > saved0);
	evalsim_set_free(&s);
	traces_free(tr);
	assert_int_equal(harness_rmrf(dir), 0);
}

/* The filters of leave-one-out evaluation select what they say: a model or all others, the
 * chains of the listed seeds (cot), a problem group or all others; record and calibrate see
 * exactly those programs. */
static void
test_filter_selects(void **state)
{
	struct traces_program v[EVALSIM_FILTER_MAX_SEEDS];
	struct evalsim_filter f;
	struct evalsim_set s;
	struct evalsim_calib cal;
	struct sched_policy p;
	struct traces *tr;
	size_t i, n, j, per_group[3] = { 0, 0, 0 }, m1 = 0;
	char *dir;

	(void)state;
	log_set_level(LOG_LVL_ERR);
	dir = filter_dir();
	assert_non_null(dir);
	assert_int_equal(traces_load(dir, &tr), 0);
	assert_int_equal(traces_program_count(tr), 2 * FILTER_NPROB);
	for (i = 0; i < traces_program_count(tr); i++) {
		const struct traces_program *prog = traces_program_at(tr, i);
		bool is_m1 = strcmp(prog->model, "m1") == 0;
		unsigned g = evalsim_group_of(prog->problem, 3);

		assert_int_equal(prog->nsamples, 3);
		m1 += is_m1;
		/* no filter: the program itself */
		assert_int_equal(evalsim_filter_views(NULL, prog, EVALSIM_ALL, 1, v, 8), 1);
		assert_ptr_equal(v[0].samples, prog->samples);
		assert_int_equal(evalsim_filter_views(NULL, prog, EVALSIM_ALL, 4, v, 8), 0);
		/* model, and every model but it */
		memset(&f, 0, sizeof f);
		f.model = "m1";
		assert_int_equal(evalsim_filter_views(&f, prog, EVALSIM_ALL, 1, v, 8), is_m1);
		f.not_model = true;
		assert_int_equal(evalsim_filter_views(&f, prog, EVALSIM_ALL, 1, v, 8), !is_m1);
		/* seeds: one cot program per listed seed, on that seed's chain */
		memset(&f, 0, sizeof f);
		f.seeds[0] = 43;
		f.nseeds = 1;
		assert_int_equal(evalsim_filter_views(&f, prog, EVALSIM_ALL, 1, v, 8), 1);
		assert_int_equal(v[0].samples[0]->seed, 43);
		assert_int_equal(v[0].nsamples, 2);
		f.seeds[0] = 44;
		f.seeds[1] = 42;
		f.nseeds = 2;
		n = evalsim_filter_views(&f, prog, EVALSIM_ALL, 1, v, 8);
		assert_int_equal(n, 2);
		assert_int_equal(v[0].samples[0]->seed, 42);
		assert_int_equal(v[1].samples[0]->seed, 44);
		assert_int_equal(evalsim_filter_views(&f, prog, EVALSIM_ALL, 1, v, 1), 1);
		/* sc: a seed filter does not apply */
		assert_int_equal(evalsim_filter_views(&f, prog, EVALSIM_ALL, 3, v, 8), 1);
		assert_ptr_equal(v[0].samples, prog->samples);
		/* problem groups: in exactly one */
		memset(&f, 0, sizeof f);
		f.groups = 3;
		for (j = 0; j < 3; j++) {
			f.group = (unsigned)j;
			f.not_group = false;
			n = evalsim_filter_views(&f, prog, EVALSIM_ALL, 3, v, 8);
			assert_int_equal(n, j == g);
			f.not_group = true;
			assert_int_equal(evalsim_filter_views(&f, prog, EVALSIM_ALL, 3, v, 8),
			    j != g);
		}
		per_group[g]++;
		/* the split still applies */
		assert_int_equal(evalsim_filter_views(NULL, prog, EVALSIM_TEST, 1, v, 8),
		    evalsim_in_split(prog->problem, EVALSIM_TEST));
	}
	assert_int_equal(m1, FILTER_NPROB);
	for (j = 0; j < 3; j++)
		assert_true(per_group[j] > 0);

	/* record: the chains of two seeds = two cot programs per problem */
	sched_policy_default(&p);
	memset(&f, 0, sizeof f);
	f.seeds[0] = 42;
	f.seeds[1] = 44;
	f.nseeds = 2;
	f.model = "m0";
	assert_int_equal(evalsim_record_filtered(tr, &p, SCHED_ALGO_COT, 1, EVALSIM_ALL,
	    EVALSIM_LABEL_SAFE, 2, &f, &s), 0);
	assert_int_equal(s.nprog, 2 * FILTER_NPROB);
	assert_int_equal(s.nmodels, 1);
	assert_string_equal(s.models[0], "m0");
	evalsim_set_free(&s);
	f.model = "nobody";
	assert_int_equal(evalsim_record_filtered(tr, &p, SCHED_ALGO_COT, 1, EVALSIM_ALL,
	    EVALSIM_LABEL_SAFE, 2, &f, &s), -EINVAL);

	/* calibrate sees the filtered programs only */
	memset(&f, 0, sizeof f);
	f.model = "m1";
	f.groups = 3;
	f.group = 0;
	f.not_group = true;
	memset(&cal, 0, sizeof cal);
	cal.max_loss = 0.01;
	cal.split = EVALSIM_ALL;
	cal.filter = &f;
	cal.folds = 2;
	cal.z = 1;
	assert_int_equal(evalsim_calibrate(tr, &cal, &p), 0);
	assert_int_equal(cal.cot_programs, FILTER_NPROB - per_group[0] / 2);
	assert_int_equal(cal.sc_programs, FILTER_NPROB - per_group[0] / 2);
	traces_free(tr);
	assert_int_equal(harness_rmrf(dir), 0);
}

/* The sorted values v[0..n) equal the expected values e[0..n) (any order). */
static void
assert_same_values(const double *v, double *e, size_t n)
{
	size_t i, j;

	for (i = 1; i < n; i++)
		assert_true(v[i - 1] <= v[i]);
	for (i = 1; i < n; i++)   /* insertion sort: a handful of values */
		for (j = i; j > 0 && e[j - 1] > e[j]; j--) {
			double t = e[j];
			e[j] = e[j - 1];
			e[j - 1] = t;
		}
	for (i = 0; i < n; i++)
		assert_true(fabs(v[i] - e[i]) < 1e-12);
}

/* A model's own score distribution (the score-quantile check of `lomo --score-quantiles`):
 * cot, the chain score at the points of valid, unsettled, unfinished chains of that model
 * only, or each program's highest; sc, the sc model's score where the vote is not decided;
 * no label is read (flipping every label changes nothing); the share below a level and the
 * level of a share. */
static void
test_score_dist(void **state)
{
	static const double h[] = { 0.1, 0.2, 0.2, 0.5 };
	struct sched_policy p;
	struct evalsim_set s;
	struct traces *tr;
	double *v, *v2, e[512], em[8], lvl;
	size_t n, n2, ne, nm, i, k, m;
	char *dir;

	(void)state;
	assert_true(evalsim_dist_cdf(h, 4, 0.2) == 0.25);
	assert_true(evalsim_dist_cdf(h, 4, 0.21) == 0.75);
	assert_true(evalsim_dist_cdf(h, 4, 0) == 0);
	assert_true(evalsim_dist_cdf(h, 4, 1) == 1);
	assert_true(evalsim_dist_cdf(h, 0, 1) == 0);
	assert_true(evalsim_dist_level(h, 4, 0) == 0.1);
	assert_true(evalsim_dist_level(h, 4, 0.25) == 0.2);
	assert_true(evalsim_dist_level(h, 4, 0.7) == 0.5);   /* rank 2.8 rounds to 3 */
	lvl = evalsim_dist_level(h, 4, 1);
	assert_true(lvl > 0.5 && evalsim_dist_cdf(h, 4, lvl) == 1);

	log_set_level(LOG_LVL_ERR);
	dir = relative_dir();
	assert_non_null(dir);
	assert_int_equal(traces_load(dir, &tr), 0);
	sched_policy_default(&p);
	p.probe_stride = 0;
	assert_int_equal(evalsim_record(tr, &p, SCHED_ALGO_COT, 1, EVALSIM_ALL, &s), 0);
	for (m = 0; m < 2; m++) {
		const char *model = m == 0 ? "a" : "b";
		ne = nm = 0;
		for (i = 0; i < s.nprog; i++) {
			const struct evalsim_traj *t = &s.traj[i];
			double most = -1;
			if (strcmp(s.model[i], model) != 0)
				continue;
			for (k = 0; k < t->npts; k++) {
				const struct evalsim_point *pt = &t->pts[k];
				double x;
				if (pt->end || pt->c < 0 || !pt->valid || pt->settled)
					continue;
				x = certainty_logistic(p.cot_w, pt->x, CERTAINTY_COT_NFEAT);
				assert_true(ne < sizeof e / sizeof e[0]);
				e[ne++] = x;
				most = x > most ? x : most;
			}
			if (most >= 0)
				em[nm++] = most;
		}
		/* 1024/64 .. 12288/64 steps per chain: every unfinished step is a point */
		assert_true(ne > (m == 0 ? 90u : 490u));
		assert_int_equal(nm, m == 0 ? 3 : 4);
		assert_int_equal(evalsim_score_dist(&s, &p, SCHED_ALGO_COT, model, false, &v, &n),
		    0);
		assert_int_equal(n, ne);
		assert_same_values(v, e, n);
		free(v);
		assert_int_equal(evalsim_score_dist(&s, &p, SCHED_ALGO_COT, model, true, &v, &n),
		    0);
		assert_int_equal(n, nm);
		assert_same_values(v, em, n);
		free(v);
	}
	assert_int_equal(evalsim_score_dist(&s, &p, SCHED_ALGO_COT, "none", false, &v, &n),
	    -EINVAL);
	/* unlabelled: the same values with every label flipped; a settled point drops out */
	assert_int_equal(evalsim_score_dist(&s, &p, SCHED_ALGO_COT, NULL, false, &v, &n), 0);
	for (i = 0; i < s.nprog; i++) {
		s.full_correct[i] = !s.full_correct[i];
		for (k = 0; k < s.traj[i].npts; k++) {
			s.traj[i].pts[k].correct = !s.traj[i].pts[k].correct;
			s.traj[i].pts[k].same = !s.traj[i].pts[k].same;
		}
	}
	assert_int_equal(evalsim_score_dist(&s, &p, SCHED_ALGO_COT, NULL, false, &v2, &n2), 0);
	assert_int_equal(n2, n);
	assert_memory_equal(v, v2, n * sizeof *v);
	free(v2);
	s.traj[0].pts[1].settled = true;
	assert_int_equal(evalsim_score_dist(&s, &p, SCHED_ALGO_COT, NULL, false, &v2, &n2), 0);
	assert_int_equal(n2, n - 1);
	free(v2);
	free(v);
	evalsim_set_free(&s);
	traces_free(tr);
	assert_int_equal(harness_rmrf(dir), 0);

	/* sc: the sc model's score (cm) where the vote is not decided */
	dir = vote_dir();
	assert_non_null(dir);
	assert_int_equal(traces_load(dir, &tr), 0);
	assert_int_equal(evalsim_record(tr, &p, SCHED_ALGO_SC, 3, EVALSIM_ALL, &s), 0);
	ne = 0;
	for (i = 0; i < s.nprog; i++)
		for (k = 0; k < s.traj[i].npts; k++) {
			const struct evalsim_point *pt = &s.traj[i].pts[k];
			if (pt->end || pt->c < 0 || pt->decided)
				continue;
			assert_true(ne < sizeof e / sizeof e[0]);
			e[ne++] = pt->cm;
		}
	assert_true(ne > 0);
	assert_int_equal(evalsim_score_dist(&s, &p, SCHED_ALGO_SC, NULL, false, &v, &n), 0);
	assert_int_equal(n, ne);
	assert_same_values(v, e, n);
	free(v);
	evalsim_set_free(&s);
	traces_free(tr);
	assert_int_equal(harness_rmrf(dir), 0);
}

static void
test_default_policy_real_traces(void **state)
{
	const char *dir = getenv("CERTA_TRACES");
	struct sched_policy p, pm;
	struct traces *tr;
	size_t m, i, a;

	(void)state;
	if (dir == NULL || dir[0] == '\0') {
		print_message("CERTA_TRACES not set: skipping the real-traces check\n");
		skip();
	}
	log_set_level(LOG_LVL_ERR);
	if (traces_load(dir, &tr) != 0) {
		print_message("%s: no traces: skipping the real-traces check\n", dir);
		skip();
	}
	/* passes 0-1: the shipped default (model-relative unpromising bounds, model_tokens from
	 * each model's chain lengths, as certa-eval); passes 2-3: the same before certad has
	 * learned the model's length (model_tokens unknown: the bounds count absolute tokens),
	 * which must stay within the loss floor too */
	for (a = 0; a < 4; a++) {
		enum sched_algo algo = a % 2 == 0 ? SCHED_ALGO_COT : SCHED_ALGO_SC;
		size_t n = a % 2 == 0 ? 1 : 3;
		char err[256];
		sched_policy_default(&p);
		if (load_repo_policy("default.policy", &p, err, sizeof err) != 0)
			fail_msg("policy/default.policy: %s", err);
		assert_int_equal(p.unpromising_relative, 1);
		if (a >= 2)
			p.unpromising_relative = 0;
		for (m = 0; m < traces_model_count(tr); m++) {
			const char *model = traces_model_name(tr, m);
			size_t progs = 0, full_ok = 0, ok = 0;
			double full_tok = 0, tok = 0;
			for (i = 0; i < traces_program_count(tr); i++) {
				const struct traces_program *prog = traces_program_at(tr, i);
				struct evalsim_full full;
				struct evalsim_outcome o;
				if (strcmp(prog->model, model) != 0 || prog->nsamples < n ||
				    !evalsim_in_split(prog->problem, EVALSIM_TEST))
					continue;
				evalsim_reference(prog, n, &full);
				/* the model's median chain length as model_tokens, as certa-eval */
				evalsim_model_policy(tr, &p, prog->model, &pm);
				assert_int_equal(evalsim_run(&pm, prog, algo, n, &o, NULL), 0);
				progs++;
				full_ok += full.correct;
				ok += o.correct;
				full_tok += (double)full.tokens;
				tok += (double)(o.decode_tokens + o.probe_tokens);
			}
			if (progs == 0)
				continue;
			print_message("%s%s %s test split: %zu programs, accuracy %.2f -> %.2f "
			    "(loss %.2f pt), tokens saved %.1f%%\n", a >= 2 ? "absolute " : "",
			    a % 2 == 0 ? "cot" : "sc", model,
			    progs, 100.0 * (double)full_ok / (double)progs,
			    100.0 * (double)ok / (double)progs,
			    100.0 * ((double)full_ok - (double)ok) / (double)progs,
			    100.0 * (1 - tok / full_tok));
			assert_true(((double)full_ok - (double)ok) / (double)progs <= 0.01 + 1e-12);
			assert_true(tok < full_tok);
		}
	}
	traces_free(tr);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_default_file_matches_builtin),
		cmocka_unit_test(test_parse_sections_comments),
		cmocka_unit_test(test_parse_errors),
		cmocka_unit_test(test_parse_sc_vote),
		cmocka_unit_test(test_parse_cot_slope),
		cmocka_unit_test(test_format_roundtrip),
		cmocka_unit_test(test_state_machine),
		cmocka_unit_test(test_state_machine_aborts),
		cmocka_unit_test(test_fit_logistic),
		cmocka_unit_test(test_calibrate_synthetic),
		cmocka_unit_test(test_token_stats_replay),
		cmocka_unit_test(test_stats_gain),
		cmocka_unit_test(test_calibrate_folds),
		cmocka_unit_test(test_filter_selects),
		cmocka_unit_test(test_unpromising_relative_replay),
		cmocka_unit_test(test_sc_vote_replay),
		cmocka_unit_test(test_sc_staged_replay),
		cmocka_unit_test(test_cot_slope_replay),
		cmocka_unit_test(test_score_dist),
		cmocka_unit_test(test_default_policy_real_traces),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
