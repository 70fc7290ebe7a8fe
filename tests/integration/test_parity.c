/*
 * test_parity.c — online == offline: programs submitted through certad with the default
 * (calibrated) policy stop exactly where the offline evaluator (eval/evalsim, the engine of
 * certa-eval) says they stop: same reason, same answer, same decode and probe tokens.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <grpc/grpc.h>

#include "certa/v1/reasoning.pb-c.h"
#include "eval/evalsim.h"
#include "lib/rpc_client.h"
#include "lib/traces.h"
#include "scheduler/answer.h"
#include "scheduler/sched.h"
#include "tests/support/certa_client.h"
#include "tests/support/harness.h"
#include "tests/support/itest.h"

#define NCOT 20
#define NSC 4

struct env {
	struct itest it;             /* first */
	struct traces *set;          /* all recorded programs */
};

static int
setup(void **state)
{
	struct env *e;

	*state = NULL;
	e = itest_new(sizeof *e, 240, ITEST_TRACES_NEED);
	if (e == NULL)
		return 0;
	assert_int_equal(traces_load(harness_traces_dir(), &e->set), 0);
	/* No policy file: the built-in calibrated default, as certa-eval uses. */
	itest_start(&e->it, NULL, ITEST_ANONYMOUS | ITEST_ADMIN | ITEST_SETTLE, NULL);
	*state = e;
	return 0;
}

static int
teardown(void **state)
{
	struct env *e = *state;

	if (e == NULL)
		return 0;
	traces_free(e->set);
	itest_free(&e->it);
	return 0;
}

/* Runs one program through certad; returns its Finished event (caller frees ev). */
static Certa__V1__ProgramEvent *
run(struct env *e, const struct traces_program *pg, int sc)
{
	Certa__V1__ProgramSpec spec = CERTA__V1__PROGRAM_SPEC__INIT;
	struct certa_client_events ev;
	Certa__V1__ProgramEvent *fin;

	spec.problem = (char *)pg->problem;
	spec.model = (char *)pg->model;
	spec.algorithm = sc ? CERTA__V1__ALGORITHM__ALGORITHM_SC :
	    CERTA__V1__ALGORITHM__ALGORITHM_COT;
	spec.n = sc ? 3 : 1;
	itest_run(e->it.ch, &spec, NULL, &ev);
	fin = ev.last;  /* the last Finished event, now ours */
	ev.last = NULL;
	assert_int_equal(ev.status, GRPC_STATUS_OK);
	assert_non_null(fin);
	return fin;
}

static void
check_parity(struct env *e, int sc, size_t want)
{
	struct sched_policy pol;
	size_t i, done = 0, early = 0;
	const char *model = traces_model_name(e->set, 0);

	sched_policy_default(&pol);
	for (i = 0; i < traces_program_count(e->set) && done < want; i++) {
		const struct traces_program *pg = traces_program_at(e->set, i);
		struct evalsim_outcome off;
		Certa__V1__ProgramEvent *fin;
		const Certa__V1__ProgramResult *r;

		if (strcmp(pg->model, model) != 0 || strcmp(pg->dataset, "math500") != 0 ||
		    pg->nsamples < 3)
			continue;
		assert_int_equal(evalsim_run(&pol, pg, sc ? SCHED_ALGO_SC : SCHED_ALGO_COT,
		    sc ? 3 : 1, &off, NULL), 0);
		fin = run(e, pg, sc);
		r = fin->finished->result;
		if ((int)r->reason != (int)off.reason || r->tokens_used != off.decode_tokens ||
		    r->probe_tokens != off.probe_tokens || !answer_equivalent(r->answer, off.answer))
			fail_msg("program %s (%s): online reason=%d tokens=%llu probe=%llu answer=%s; "
			    "offline reason=%d tokens=%llu probe=%llu answer=%s", pg->problem_id,
			    sc ? "sc" : "cot", (int)r->reason, (unsigned long long)r->tokens_used,
			    (unsigned long long)r->probe_tokens, r->answer, (int)off.reason,
			    (unsigned long long)off.decode_tokens,
			    (unsigned long long)off.probe_tokens, off.answer);
		early += off.reason != SCHED_REASON_NATURAL_END;
		protobuf_c_message_free_unpacked(&fin->base, NULL);
		done++;
	}
	assert_int_equal(done, want);
	/* The comparison covers early stops, not only runs to the end. */
	assert_true(early > 0);
	print_message("%s: %zu programs, %zu stopped early, all decisions identical\n",
	    sc ? "sc" : "cot", done, early);
}

static void
test_cot_parity(void **state)
{
	HARNESS_NEED_TRACES(*state);
	check_parity(*state, 0, NCOT);
}

static void
test_sc_parity(void **state)
{
	HARNESS_NEED_TRACES(*state);
	check_parity(*state, 1, NSC);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_cot_parity, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sc_parity, setup, teardown),
	};
	int rc;

	grpc_init();
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	grpc_shutdown();
	return rc;
}
