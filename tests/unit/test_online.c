/*
 * test_online.c — `certa-eval online` (eval/online.h) on the demo traces (data/traces-demo):
 * with learned model_tokens (the default, as certad) the first programs run with absolute
 * unpromising bounds until model_tokens.min_samples chains are counted, later ones with the
 * learned median, which never goes back to 0; a prior is used until then; min_samples 0
 * never learns; oracle mode runs every program with the median of all the model's traces.
 * online_worst_window, every window figure of the report (the loop's, the fixed thresholds',
 * the criteria's), on synthetic streams with known flips.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "eval/evalsim.h"
#include "eval/online.h"
#include "lib/traces.h"
#include "scheduler/chainlen.h"
#include "tests/support/harness.h"


#define MAXP 4096

static struct traces *
load(void)
{
	struct traces *tr = NULL;

	HARNESS_DEMO_TRACES(tr);
	return tr;
}

/* Runs the cot simulation, one stream order, its report to /dev/null; fills tr_out with the
 * model_tokens of the first model's programs. */
static void
simulate(const struct traces *tr, const struct sched_policy *p, bool oracle,
    struct online_mt_trace *mt)
{
	struct online_opts o;
	int saved, null;

	memset(&o, 0, sizeof o);
	o.start = p;
	o.algos = 1;
	o.passes = 1;
	o.runs = 1;
	o.lag = 10;
	o.window = 100;
	o.max_loss = 0.01;
	o.oracle_tokens = oracle;
	o.mt_trace = mt;
	mt->n = 0;
	fflush(stdout);
	saved = dup(STDOUT_FILENO);
	null = open("/dev/null", O_WRONLY);
	assert_true(saved >= 0 && null >= 0);
	dup2(null, STDOUT_FILENO);
	close(null);
	assert_int_equal(online_run(tr, &o), 0);
	fflush(stdout);
	dup2(saved, STDOUT_FILENO);
	close(saved);
}

/* The first program (0-based) run under a model_tokens other than `before`; n when none. */
static size_t
first_other(const struct online_mt_trace *mt, uint64_t before)
{
	size_t k;

	for (k = 0; k < mt->n && mt->mt[k] == before; k++)
		;
	return k;
}

static void
test_learned_after_min_samples(void **state)
{
	static uint64_t buf[MAXP];
	static int why[MAXP];
	struct online_mt_trace mt = { buf, MAXP, 0, 0, why };
	struct traces *tr = load();
	struct sched_policy p;
	size_t k, at, counted, certain;

	(void)state;
	sched_policy_default(&p);
	assert_int_equal(p.unpromising_relative, 1);
	assert_int_equal(p.model_tokens, 0);
	p.riskctl_shadow_frac = 0.2;            /* certa-eval online's default: shadows count */
	simulate(tr, &p, false, &mt);
	assert_true(mt.n > 2 * p.model_tokens_min_samples);
	assert_int_equal(mt.mt[0], 0);            /* absolute bounds at first */
	at = first_other(&mt, 0);
	/* cot: one chain per program, certainty stops not counted: at least min_samples
	 * finished programs before the learned value is used */
	assert_true(at >= p.model_tokens_min_samples);
	assert_true(at < mt.n);
	for (k = at; k < mt.n; k++)
		assert_true(mt.mt[k] > 0);         /* never back to absolute */
	assert_true(mt.oracle > 0);
	/* the learned median is the same kind of number as the traces' median */
	assert_true(mt.mt[mt.n - 1] > mt.oracle / 3 && mt.mt[mt.n - 1] < mt.oracle * 3);

	/* Without shadows, exactly min_samples counted programs (natural ends and unpromising
	 * cuts; certainty stops not: certad's rule) precede the first learned one. */
	p.riskctl_shadow_frac = 0;
	simulate(tr, &p, false, &mt);
	at = first_other(&mt, 0);
	assert_true(at < mt.n);
	for (k = counted = certain = 0; k < at; k++) {
		counted += why[k] == SCHED_REASON_NATURAL_END || why[k] == SCHED_REASON_UNPROMISING;
		certain += why[k] == SCHED_REASON_CERTAIN;
	}
	assert_int_equal(counted, p.model_tokens_min_samples);
	assert_int_equal(counted + certain, at);
	assert_true(certain > 0);               /* the rule is exercised */

	/* a prior is used until then */
	p.model_tokens = 3333;
	simulate(tr, &p, false, &mt);
	assert_int_equal(mt.mt[0], 3333);
	at = first_other(&mt, 3333);
	assert_true(at >= p.model_tokens_min_samples && at < mt.n);

	/* min_samples 0: never learned */
	p.model_tokens = 0;
	p.model_tokens_min_samples = 0;
	simulate(tr, &p, false, &mt);
	assert_int_equal(first_other(&mt, 0), mt.n);
	traces_free(tr);
}

static void
test_oracle_from_the_first_program(void **state)
{
	static uint64_t buf[MAXP];
	struct online_mt_trace mt = { buf, MAXP, 0, 0, NULL };
	struct traces *tr = load();
	struct sched_policy p;
	uint64_t e;

	(void)state;
	sched_policy_default(&p);
	simulate(tr, &p, true, &mt);
	e = evalsim_model_expected(tr, traces_program_at(tr, 0)->model);
	assert_true(e > 0);
	assert_int_equal(mt.oracle, e);
	assert_true(mt.n > 0);
	assert_int_equal(first_other(&mt, e), mt.n);
	traces_free(tr);
}

/* Synthetic streams: +1 a loss (full run right, stop wrong), -1 a gain, 0 neither. */
static void
test_worst_window(void **state)
{
	/* windows of 4: 2, 1, -1, -3, -2, -1, 1 (of 3: max 2/3; of 5: max 1/5) */
	static const int mixed[10] = { 0, 1, 1, 0, -1, -1, -1, 1, 0, 1 };
	/* gains first: windows of 4: -3, -2, -1, 1, 1 (signs swapped: max 3/4) */
	static const int gains[8] = { -1, -1, -1, 0, 0, 1, 0, 0 };
	static const int allgain[6] = { -1, -1, -1, -1, -1, -1 };
	static const int shortst[4] = { 1, 0, -1, 1 };
	static int d[1000];
	size_t k;

	(void)state;
	assert_true(fabs(online_worst_window(mixed, 10, 4) - 0.5) < 1e-12);
	assert_true(fabs(online_worst_window(mixed, 10, 3) - 2.0 / 3) < 1e-12);
	assert_true(fabs(online_worst_window(mixed, 10, 5) - 0.2) < 1e-12);
	assert_true(fabs(online_worst_window(gains, 8, 4) - 0.25) < 1e-12);
	/* every window gains: negative, not clamped at 0 */
	assert_true(fabs(online_worst_window(allgain, 6, 2) + 1.0) < 1e-12);
	/* shorter than a window: the whole stream, sum / n */
	assert_true(fabs(online_worst_window(shortst, 4, 10) - 0.25) < 1e-12);
	assert_true(fabs(online_worst_window(shortst, 4, 4) - 0.25) < 1e-12);
	assert_true(isnan(online_worst_window(shortst, 0, 4)));
	assert_true(isnan(online_worst_window(shortst, 4, 0)));
	assert_true(isnan(online_worst_window(NULL, 4, 4)));

	/* The report's lengths, 100 and 500, on 1000 programs: 5 losses in programs 0-4, then
	 * one every 50th from 500 on (10), one gain at 250.  Worst 100-window: 5 flips (5 pt);
	 * worst 500-window: programs 500-999, 10 flips (2 pt); the first 500 net 4 (0.8 pt). */
	memset(d, 0, sizeof d);
	for (k = 0; k < 5; k++)
		d[k] = 1;
	d[250] = -1;
	for (k = 500; k < 1000; k += 50)
		d[k] = 1;
	assert_true(fabs(online_worst_window(d, 1000, 100) - 0.05) < 1e-12);
	assert_true(fabs(online_worst_window(d, 1000, 500) - 0.02) < 1e-12);
	assert_true(fabs(online_worst_window(d, 500, 500) - 0.008) < 1e-12);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_learned_after_min_samples),
		cmocka_unit_test(test_oracle_from_the_first_program),
		cmocka_unit_test(test_worst_window),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
