/*
 * test_routesim.c — routing replayed on the demo traces (data/traces-demo): a one-rung ladder
 * is exactly the fixed choice evalsim_run() replays (cot and sc), a length escalation forks
 * every long cot program into sc keeping chain 0's tokens, a switch costs the tokens spent
 * before it, and pool costs weight the cost.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "eval/evalsim.h"
#include "eval/routesim.h"
#include "lib/traces.h"
#include "scheduler/router.h"
#include "tests/support/harness.h"


static struct traces *
load(void)
{
	struct traces *tr = NULL;

	HARNESS_DEMO_TRACES(tr);
	return tr;
}

/* A one-rung ladder on pool `pool`, no history. */
static void
one_rung(struct router_policy *rp, uint32_t pool, enum sched_algo algo)
{
	router_policy_default(rp);
	rp->nrungs = 1;
	rp->rungs[0] = (struct router_rung){ pool, algo, algo == SCHED_ALGO_SC ? 3 : 1, 0, 0 };
	rp->k = 0;
	rp->hard_rung = 0;
}

static void
test_fixed_choice_equals_evalsim(void **state)
{
	struct traces *tr = load();
	struct sched_policy sp, mp;
	struct router_policy rp;
	struct routesim *s;
	size_t i, a, p;

	(void)state;
	sched_policy_default(&sp);
	assert_int_equal(sp.unpromising_relative, 1);
	router_policy_default(&rp);
	assert_int_equal(routesim_new(tr, &sp, &rp, &s), 0);
	assert_true(routesim_count(s) >= 20);
	for (p = 0; p < rp.npools; p++)
		for (a = 0; a < 2; a++) {
			enum sched_algo algo = a == 0 ? SCHED_ALGO_COT : SCHED_ALGO_SC;
			struct router_policy one;

			one_rung(&one, (uint32_t)p, algo);
			/* The pool's model's chain length, as certa-eval runs that model. */
			evalsim_model_policy(tr, &sp, rp.pools[p].model, &mp);
			assert_true(mp.model_tokens > 0);
			for (i = 0; i < routesim_count(s); i++) {
				struct routesim_outcome o;
				struct evalsim_outcome e;
				const struct trace *const *smp;
				struct traces_program prog;
				size_t ns;

				assert_int_equal(traces_find_exact(tr, rp.pools[p].model,
				    routesim_problem(s, i), &smp, &ns), 0);
				memset(&prog, 0, sizeof prog);
				prog.model = rp.pools[p].model;
				prog.problem = routesim_problem(s, i);
				prog.target = smp[0]->target;
				prog.samples = smp;
				prog.nsamples = ns;
				assert_int_equal(evalsim_run(&mp, &prog, algo, a == 0 ? 1 : 3, &e, NULL),
				    0);
				assert_int_equal(routesim_run(s, &one, i, &o), 0);
				assert_int_equal(o.tokens, e.decode_tokens + e.probe_tokens);
				assert_int_equal(o.correct, e.correct);
				assert_string_equal(o.answer, e.answer);
				assert_int_equal(o.escalations, 0);
				assert_int_equal(o.reason, e.reason);
			}
		}
	routesim_free(s);
	traces_free(tr);
}

static void
test_escalation(void **state)
{
	struct traces *tr = load();
	struct sched_policy sp;
	struct router_policy rp, fork, sw;
	struct routesim *s;
	size_t i, forked = 0;

	(void)state;
	sched_policy_default(&sp);
	router_policy_default(&rp);
	assert_int_equal(routesim_new(tr, &sp, &rp, &s), 0);
	/* pool 1 cot, forking into pool 1 sc3 once a chain passes 2048 tokens uncertain. */
	one_rung(&fork, 1, SCHED_ALGO_COT);
	fork.nrungs = 2;
	fork.rungs[1] = (struct router_rung){ 1, SCHED_ALGO_SC, 3, 0, 0 };
	fork.escalate_tokens = 2048;
	fork.escalate_certaindex = 1;
	sw = fork;
	sw.rungs[1].pool = 0;       /* the same ladder, but on the other pool: a switch */
	sw.pools[0].cost = 4;
	for (i = 0; i < routesim_count(s); i++) {
		struct routesim_outcome cot, f, w;
		struct router_policy one;
		struct router_outcome h;
		bool ok;

		one_rung(&one, 1, SCHED_ALGO_COT);
		assert_int_equal(routesim_run(s, &one, i, &cot), 0);
		assert_int_equal(routesim_run(s, &fork, i, &f), 0);
		assert_int_equal(routesim_run(s, &sw, i, &w), 0);
		routesim_history(s, i, 1, &h, &ok);
		assert_int_equal(ok, cot.correct);          /* history = the pool's cot run */
		if (f.escalations == 0) {
			/* stopped before 2048 tokens: the same run as plain cot */
			assert_int_equal(f.tokens, cot.tokens);
			assert_int_equal(w.escalations, 0);
			continue;
		}
		forked++;
		assert_int_equal(f.end_rung, 1);
		assert_int_equal(w.end_rung, 1);
		/* The switch pays its ~2048 cot tokens on pool 1 (cost 1) and everything after on
		 * pool 0 (cost 4). */
		assert_true(w.cost >= 4.0 * (double)w.tokens - 3.0 * 3000.0);
		assert_true(w.cost <= 4.0 * (double)w.tokens);
		/* Forked sc keeps chain 0: it costs more than the cot part alone. */
		assert_true(f.tokens > 2048);
	}
	assert_true(forked > 0);
	routesim_free(s);
	traces_free(tr);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fixed_choice_equals_evalsim),
		cmocka_unit_test(test_escalation),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
