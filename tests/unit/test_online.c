/*
 * test_online.c — `certa-eval online` (eval/online.h) on the demo traces (data/traces-demo):
 * with learned model_tokens (the default, as certad) the first programs run with absolute
 * unpromising bounds until model_tokens.min_samples chains are counted, later ones with the
 * learned median, which never goes back to 0; a prior is used until then; min_samples 0
 * never learns; oracle mode runs every program with the median of all the model's traces.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
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

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_learned_after_min_samples),
		cmocka_unit_test(test_oracle_from_the_first_program),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
