/*
 * test_parity.c — online == offline: programs submitted through certad with the default
 * (calibrated) policy stop exactly where the offline evaluator (eval/evalsim, the engine of
 * certa-eval) says they stop: same reason, same answer, same decode and probe tokens.  With
 * expert routing on (the built-in routing policy), certad's routing decisions on replayed
 * programs equal the evaluator's (eval/routesim, `certa-eval route`): same start rung, same
 * escalations to the same rung, same reason, answer and tokens (decode + probe, all pools).
 * The shipped policy's unpromising bounds count in each model's median chain length: certa-eval
 * takes it from the traces (evalsim_model_policy), and certad is given the same numbers as its
 * per-model priors (policy.model_tokens) with model_tokens.min_samples = 0, so that it does not
 * replace them by what it learns from the few programs here (test_shadow and test_dispatch
 * test the learning).  With sc.vote_threshold on (certad reads it from its policy file),
 * the sc programs whose offline decision it changes stop online where certa-eval says; the
 * same for cot.threshold_slope and the cot programs (the slope counts the chain's position in
 * the same per-model units as the bounds).  With sc.staged on (modes 1 and 2), staged sc
 * programs that never launch their third chain and ones that do stop online where certa-eval
 * says, also across a SIGKILL.
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
#include "eval/routesim.h"
#include "lib/rpc_client.h"
#include "lib/traces.h"
#include "scheduler/answer.h"
#include "scheduler/sched.h"
#include "tests/support/certa_client.h"
#include "tests/support/harness.h"
#include "tests/support/itest.h"

#define NCOT 20
#define NSC 4
#define NSC_STAGED 2    /* staged sc programs of each kind (launched or not) */
#define NROUTE_ESC 3    /* routed programs that escalate (switch to the other pool) */
#define NROUTE_PLAIN 2  /* ... and that do not */

struct env {
	struct itest it;             /* first */
	struct traces *set;          /* all recorded programs */
};

#define MAXMODELS 4

/* The routing check's unpromising bound (in model_tokens / 4096 units, as shipped): tighter
 * than the shipped 16384, under which only 2 of the 456 problems escalate (an unpromising
 * stop is what switches to the next rung); with this one enough do to compare NROUTE_ESC
 * escalations.  Online and offline run the same policy either way. */
#define ROUTE_UNPROMISING "12288"

/* The sc vote rule's check: a vote threshold low enough to change decisions (off by
 * default), given to certad in its policy file. */
#define VOTE_THRESHOLD "0.9"

/* The cot threshold slope's check: a slope that changes decisions (off by default). */
#define THRESHOLD_SLOPE "-0.05"

/* Starts certad with the policy text (plus the pinned per-model priors) and extra sets, its
 * worker with `delay` ms per step (NULL: none). */
static void
start_pinned_delay(struct env *e, const char *policy, const char *extra, const char *delay)
{
	char path[512], pset[600], mt[MAXMODELS][320];
	const char *sets[MAXMODELS + 3];
	size_t m, k = 0;

	snprintf(path, sizeof path, "%s/parity.policy", e->it.dir);
	assert_int_equal(harness_write_file(path, "%smodel_tokens.min_samples = 0\n", policy), 0);
	snprintf(pset, sizeof pset, "policy.file=%s", path);
	sets[k++] = pset;
	assert_true(traces_model_count(e->set) <= MAXMODELS);
	for (m = 0; m < traces_model_count(e->set); m++) {
		const char *model = traces_model_name(e->set, m);
		uint64_t med = evalsim_model_expected(e->set, model);
		assert_true(med > 0);
		snprintf(mt[m], sizeof mt[m], "policy.model_tokens=%s %llu", model,
		    (unsigned long long)med);
		sets[k++] = mt[m];
	}
	if (extra != NULL)
		sets[k++] = extra;
	sets[k] = NULL;
	itest_start(&e->it, delay, ITEST_ANONYMOUS | ITEST_ADMIN | ITEST_SETTLE | ITEST_METRICS,
	    sets);
}

static void
start_pinned(struct env *e, const char *policy, const char *extra)
{
	start_pinned_delay(e, policy, extra, NULL);
}

static int
setup(void **state)
{
	struct env *e;

	*state = NULL;
	e = itest_new(sizeof *e, 240, ITEST_TRACES_NEED);
	if (e == NULL)
		return 0;
	assert_int_equal(traces_load(harness_traces_dir(), &e->set), 0);
	/* The built-in calibrated default, as certa-eval uses, with the models' lengths. */
	start_pinned(e, "", NULL);
	*state = e;
	return 0;
}

/* The built-in default with sc.vote_threshold on. */
static int
setup_vote(void **state)
{
	struct env *e;

	*state = NULL;
	e = itest_new(sizeof *e, 240, ITEST_TRACES_NEED);
	if (e == NULL)
		return 0;
	assert_int_equal(traces_load(harness_traces_dir(), &e->set), 0);
	start_pinned(e, "sc.vote_threshold = " VOTE_THRESHOLD "\n", NULL);
	*state = e;
	return 0;
}

/* The built-in default with cot.threshold_slope on. */
static int
setup_slope(void **state)
{
	struct env *e;

	*state = NULL;
	e = itest_new(sizeof *e, 240, ITEST_TRACES_NEED);
	if (e == NULL)
		return 0;
	assert_int_equal(traces_load(harness_traces_dir(), &e->set), 0);
	start_pinned(e, "cot.threshold_slope = " THRESHOLD_SLOPE "\n", NULL);
	*state = e;
	return 0;
}

/* The built-in default with staged sc on (sc.staged = mode). */
static int
setup_staged_mode(void **state, const char *mode)
{
	struct env *e;
	char text[64];

	*state = NULL;
	e = itest_new(sizeof *e, 240, ITEST_TRACES_NEED);
	if (e == NULL)
		return 0;
	assert_int_equal(traces_load(harness_traces_dir(), &e->set), 0);
	snprintf(text, sizeof text, "sc.staged = %s\n", mode);
	start_pinned(e, text, NULL);
	*state = e;
	return 0;
}

static int
setup_staged(void **state)
{
	return setup_staged_mode(state, "1");
}

static int
setup_staged2(void **state)
{
	return setup_staged_mode(state, "2");
}

/* Routing on with the built-in routing policy; the scheduling policy is the built-in one with
 * a budget large enough never to bind, as the evaluator's (unlimited) reference. */
static int
setup_route(void **state)
{
	struct env *e;

	*state = NULL;
	e = itest_new(sizeof *e, 400, ITEST_TRACES_NEED);
	if (e == NULL)
		return 0;
	assert_int_equal(traces_load(harness_traces_dir(), &e->set), 0);
	start_pinned(e, "default_budget = 1048576\nunpromising_tokens = " ROUTE_UNPROMISING "\n",
	    "route.pool=qwen3-8b qwen-qwen3-8b 1");
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

/* Online == offline for `want` programs of the first model under certad's policy (the
 * default, with sc.vote_threshold = vote when vote <= 1 and cot.threshold_slope = slope);
 * with either on, only programs whose offline decision the rule changes. */
static void
check_parity(struct env *e, int sc, size_t want, double vote, double slope)
{
	struct sched_policy def, pol, poff;
	size_t i, done = 0, early = 0;
	const char *model = traces_model_name(e->set, 0);
	enum sched_algo algo = sc ? SCHED_ALGO_SC : SCHED_ALGO_COT;

	sched_policy_default(&def);
	assert_int_equal(def.unpromising_relative, 1);
	assert_true(def.sc_vote_threshold > 1);
	assert_true(def.cot_threshold_slope == 0);
	evalsim_model_policy(e->set, &def, model, &poff);
	pol = poff;
	if (vote <= 1)
		pol.sc_vote_threshold = vote;
	pol.cot_threshold_slope = slope;
	assert_true(pol.model_tokens > 0);
	for (i = 0; i < traces_program_count(e->set) && done < want; i++) {
		const struct traces_program *pg = traces_program_at(e->set, i);
		struct evalsim_outcome off, base;
		Certa__V1__ProgramEvent *fin;
		const Certa__V1__ProgramResult *r;

		if (strcmp(pg->model, model) != 0 || strcmp(pg->dataset, "math500") != 0 ||
		    pg->nsamples < 3)
			continue;
		assert_int_equal(evalsim_run(&pol, pg, algo, sc ? 3 : 1, &off, NULL), 0);
		if (vote <= 1 || slope != 0) {
			assert_int_equal(evalsim_run(&poff, pg, algo, sc ? 3 : 1, &base, NULL), 0);
			if (base.decode_tokens == off.decode_tokens)
				continue;
		}
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

/* Staged sc online == offline: `want` programs whose started chains decide the vote alone
 * and `want` that launch the third chain stop where certa-eval says (reason, answer, decode
 * and probe tokens); the Finished event shows the chain never launched as pending with no
 * tokens, and no chain pending after a launch. */
static void
check_staged(struct env *e, size_t want, uint32_t mode)
{
	struct sched_policy def, pol;
	size_t i, saved = 0, launched = 0;
	const char *model = traces_model_name(e->set, 0);

	sched_policy_default(&def);
	evalsim_model_policy(e->set, &def, model, &pol);
	pol.sc_staged = mode;
	for (i = 0; i < traces_program_count(e->set) && (saved < want || launched < want); i++) {
		const struct traces_program *pg = traces_program_at(e->set, i);
		struct evalsim_outcome off;
		Certa__V1__ProgramEvent *fin;
		const Certa__V1__ProgramResult *r;
		const Certa__V1__Finished *f;
		size_t k, pending = 0;

		if (strcmp(pg->model, model) != 0 || strcmp(pg->dataset, "math500") != 0 ||
		    pg->nsamples < 3)
			continue;
		assert_int_equal(evalsim_run(&pol, pg, SCHED_ALGO_SC, 3, &off, NULL), 0);
		if (off.launched ? launched >= want : saved >= want)
			continue;
		fin = run(e, pg, 1);
		f = fin->finished;
		r = f->result;
		if ((int)r->reason != (int)off.reason || r->tokens_used != off.decode_tokens ||
		    r->probe_tokens != off.probe_tokens || !answer_equivalent(r->answer, off.answer))
			fail_msg("program %s (staged sc, %s): online reason=%d tokens=%llu probe=%llu "
			    "answer=%s; offline reason=%d tokens=%llu probe=%llu answer=%s",
			    pg->problem_id, off.launched ? "launched" : "not launched",
			    (int)r->reason, (unsigned long long)r->tokens_used,
			    (unsigned long long)r->probe_tokens, r->answer, (int)off.reason,
			    (unsigned long long)off.decode_tokens,
			    (unsigned long long)off.probe_tokens, off.answer);
		assert_int_equal(f->n_requests, 3);
		for (k = 0; k < f->n_requests; k++)
			if (f->requests[k]->pending) {
				pending++;
				assert_int_equal(f->requests[k]->index, 2);
				assert_int_equal(f->requests[k]->tokens, 0);
				/* no certainty of its own, not the program's */
				assert_non_null(f->requests[k]->certainty);
				assert_true(f->requests[k]->certainty->certaindex == 0);
			}
		assert_int_equal(pending, off.launched ? 0 : 1);
		protobuf_c_message_free_unpacked(&fin->base, NULL);
		if (off.launched)
			launched++;
		else
			saved++;
	}
	assert_int_equal(saved, want);
	assert_int_equal(launched, want);
	assert_true(harness_metric(e->it.mport,
	    "certa_sc_staged_programs_total{outcome=\"saved\"}") == (double)want);
	assert_true(harness_metric(e->it.mport,
	    "certa_sc_staged_programs_total{outcome=\"launched\"}") == (double)want);
	print_message("staged sc (mode %u): %zu programs decided by two chains, %zu launched the "
	    "third, all decisions identical\n", mode, saved, launched);
}

/* Get of program id (the call must end OK; free the reply). */
static Certa__V1__Program *
get_program(struct env *e, const char *id)
{
	Certa__V1__GetRequest g = CERTA__V1__GET_REQUEST__INIT;
	ProtobufCMessage *got = NULL;

	g.program_id = (char *)id;
	assert_int_equal(itest_call(e->it.ch, "/certa.v1.Reasoning/Get", &g.base,
	    &certa__v1__program__descriptor, NULL, &got, NULL, 0), GRPC_STATUS_OK);
	return (Certa__V1__Program *)got;
}

/*
 * Staged sc across a SIGKILL: two programs in their first stage (two chains stepping, the
 * third pending) when certad dies, one that will need its third chain and one that will not.
 * After the restart each resumes staged and ends exactly as certa-eval says: had the staged
 * state been lost, the restarted program would step all three chains from there.
 */
static void
test_sc_staged_restart(void **state)
{
	struct env *e = *state;
	struct sched_policy def, pol;
	const struct traces_program *pick[2] = { NULL, NULL };
	struct evalsim_outcome off[2];
	struct rpc_stream *s[2];
	char ids[2][64];
	const char *model;
	size_t i, k;

	HARNESS_NEED_TRACES(e);
	model = traces_model_name(e->set, 0);
	sched_policy_default(&def);
	evalsim_model_policy(e->set, &def, model, &pol);
	pol.sc_staged = 1;
	/* k = 0: launches; 1: does not; both run a while before their first chains end */
	for (i = 0; i < traces_program_count(e->set) && (pick[0] == NULL || pick[1] == NULL);
	    i++) {
		const struct traces_program *pg = traces_program_at(e->set, i);
		struct evalsim_outcome o;
		if (strcmp(pg->model, model) != 0 || strcmp(pg->dataset, "math500") != 0 ||
		    pg->nsamples < 3 || pg->samples[0]->tokens_used < 3000 ||
		    pg->samples[1]->tokens_used < 3000)
			continue;
		assert_int_equal(evalsim_run(&pol, pg, SCHED_ALGO_SC, 3, &o, NULL), 0);
		k = o.launched ? 0 : 1;
		if (pick[k] == NULL) {
			pick[k] = pg;
			off[k] = o;
		}
	}
	assert_non_null(pick[0]);
	assert_non_null(pick[1]);
	/* Slow steps, so that the kill finds both in their first stage. */
	itest_stop(&e->it);
	start_pinned_delay(e, "sc.staged = 1\n", NULL, "40");
	for (k = 0; k < 2; k++) {
		Certa__V1__ProgramSpec spec = CERTA__V1__PROGRAM_SPEC__INIT;
		struct certa_client_events ev;
		spec.problem = (char *)pick[k]->problem;
		spec.model = (char *)pick[k]->model;
		spec.algorithm = CERTA__V1__ALGORITHM__ALGORITHM_SC;
		spec.n = 3;
		assert_int_equal(certa_client_submit(e->it.ch, &spec, NULL, 60000, &s[k]), 0);
		memset(&ev, 0, sizeof ev);
		assert_int_equal(certa_client_events_read(s[k], 10000, 1, &ev), 1);
		assert_int_equal(ev.accepted, 1);
		snprintf(ids[k], sizeof ids[k], "%s", ev.id);
		certa_client_events_free(&ev);
	}
	/* Until both have stepped a few times, their third chain still pending. */
	for (i = 0; i < 200; i++) {
		size_t ready = 0;
		for (k = 0; k < 2; k++) {
			Certa__V1__Program *p = get_program(e, ids[k]);
			assert_int_equal(p->n_requests, 3);
			assert_true(p->requests[2]->pending);
			assert_int_equal(p->requests[2]->tokens, 0);
			ready += p->requests[0]->tokens >= 1024;
			protobuf_c_message_free_unpacked(&p->base, NULL);
		}
		if (ready == 2)
			break;
		usleep(20000);
	}
	assert_true(i < 200);
	for (k = 0; k < 2; k++)   /* cancelled, collected and freed before the kill */
		(void)rpc_sync_stream_close(s[k], NULL);
	itest_stop(&e->it);   /* SIGKILL, certad and its worker */
	start_pinned(e, "sc.staged = 1\n", NULL);
	for (k = 0; k < 2; k++) {
		Certa__V1__WatchRequest wr = CERTA__V1__WATCH_REQUEST__INIT;
		struct certa_client_events ev;
		struct rpc_stream *w;
		const Certa__V1__ProgramResult *r;
		size_t pending = 0, j;

		wr.program_id = ids[k];
		assert_int_equal(rpc_sync_stream_open(e->it.ch, "/certa.v1.Reasoning/Watch",
		    &wr.base, &certa__v1__program_event__descriptor, 120000, NULL, 0, &w), 0);
		memset(&ev, 0, sizeof ev);
		(void)certa_client_events_read(w, 60000, 0, &ev);
		assert_int_equal(ev.status, GRPC_STATUS_OK);
		assert_non_null(ev.finished);
		r = ev.finished->result;
		if ((int)r->reason != (int)off[k].reason || r->tokens_used != off[k].decode_tokens ||
		    r->probe_tokens != off[k].probe_tokens ||
		    !answer_equivalent(r->answer, off[k].answer))
			fail_msg("program %s (staged sc, %s, restarted): online reason=%d tokens=%llu "
			    "probe=%llu answer=%s; offline reason=%d tokens=%llu probe=%llu answer=%s",
			    pick[k]->problem_id, k == 0 ? "launches" : "does not launch",
			    (int)r->reason, (unsigned long long)r->tokens_used,
			    (unsigned long long)r->probe_tokens, r->answer, (int)off[k].reason,
			    (unsigned long long)off[k].decode_tokens,
			    (unsigned long long)off[k].probe_tokens, off[k].answer);
		for (j = 0; j < ev.finished->n_requests; j++)
			pending += ev.finished->requests[j]->pending;
		assert_int_equal(pending, k == 0 ? 0 : 1);
		certa_client_events_free(&ev);
	}
	print_message("staged sc: a program that launches and one that does not, both killed in "
	    "their first stage, end as certa-eval says after the restart\n");
}

/* One routed program through certad against routesim's run of the same problem. */
static void
check_route_one(struct env *e, struct routesim *rs, size_t i, const struct routesim_outcome *off)
{
	Certa__V1__ProgramSpec spec = CERTA__V1__PROGRAM_SPEC__INIT;
	Certa__V1__GetRequest g = CERTA__V1__GET_REQUEST__INIT;
	struct certa_client_events ev;
	ProtobufCMessage *got = NULL;
	const Certa__V1__Program *p;
	const Certa__V1__ProgramResult *r;
	size_t k, escalations = 0;

	spec.problem = (char *)routesim_problem(rs, i);
	memset(&ev, 0, sizeof ev);
	itest_run(e->it.ch, &spec, NULL, &ev);
	assert_int_equal(ev.status, GRPC_STATUS_OK);
	assert_non_null(ev.finished);
	g.program_id = ev.id;
	assert_int_equal(itest_call(e->it.ch, "/certa.v1.Reasoning/Get", &g.base,
	    &certa__v1__program__descriptor, NULL, &got, NULL, 0), GRPC_STATUS_OK);
	p = (const Certa__V1__Program *)got;
	r = p->result;
	assert_non_null(r);
	assert_true(p->n_routing >= 1);
	for (k = 1; k < p->n_routing; k++)
		escalations += strcmp(p->routing[k]->action, "fork") == 0 ||
		    strcmp(p->routing[k]->action, "switch") == 0;
	if (p->routing[0]->rung != off->start_rung ||
	    p->routing[p->n_routing - 1]->rung != off->end_rung ||
	    escalations != off->escalations || (int)r->reason != (int)off->reason ||
	    r->tokens_used + r->probe_tokens != off->tokens ||
	    !answer_equivalent(r->answer, off->answer))
		fail_msg("problem %zu: online rung %u -> %u escalations=%zu reason=%d tokens=%llu "
		    "answer=%s; offline rung %u -> %u escalations=%u reason=%d tokens=%llu "
		    "answer=%s", i, p->routing[0]->rung, p->routing[p->n_routing - 1]->rung,
		    escalations, (int)r->reason,
		    (unsigned long long)(r->tokens_used + r->probe_tokens), r->answer,
		    off->start_rung, off->end_rung, off->escalations, (int)off->reason,
		    (unsigned long long)off->tokens, off->answer);
	protobuf_c_message_free_unpacked(got, NULL);
	certa_client_events_free(&ev);
}

/* Online == offline for routing: problems the evaluator escalates and problems it does not. */
static void
test_route_parity(void **state)
{
	struct env *e = *state;
	struct sched_policy pol;
	struct router_policy rp;
	struct routesim *rs;
	size_t i, esc = 0, plain = 0;

	HARNESS_NEED_TRACES(e);
	sched_policy_default(&pol);
	pol.unpromising_tokens = (uint64_t)atoi(ROUTE_UNPROMISING);
	router_policy_default(&rp);
	assert_int_equal(routesim_new(e->set, &pol, &rp, &rs), 0);
	for (i = 0; i < routesim_count(rs) && (esc < NROUTE_ESC || plain < NROUTE_PLAIN); i++) {
		struct routesim_outcome off;

		assert_int_equal(routesim_run(rs, &rp, i, &off), 0);
		if (off.escalations > 0 ? esc >= NROUTE_ESC : plain >= NROUTE_PLAIN)
			continue;
		check_route_one(e, rs, i, &off);
		if (off.escalations > 0)
			esc++;
		else
			plain++;
	}
	assert_int_equal(esc, NROUTE_ESC);
	assert_int_equal(plain, NROUTE_PLAIN);
	print_message("route: %zu programs escalated, %zu not, all routing decisions identical\n",
	    esc, plain);
	routesim_free(rs);
}

static void
test_cot_parity(void **state)
{
	HARNESS_NEED_TRACES(*state);
	check_parity(*state, 0, NCOT, 2, 0);
}

static void
test_sc_parity(void **state)
{
	HARNESS_NEED_TRACES(*state);
	check_parity(*state, 1, NSC, 2, 0);
}

static void
test_sc_vote_parity(void **state)
{
	HARNESS_NEED_TRACES(*state);
	check_parity(*state, 1, NSC, atof(VOTE_THRESHOLD), 0);
}

static void
test_sc_staged_parity(void **state)
{
	HARNESS_NEED_TRACES(*state);
	check_staged(*state, NSC_STAGED, 1);
}

static void
test_sc_staged2_parity(void **state)
{
	HARNESS_NEED_TRACES(*state);
	check_staged(*state, NSC_STAGED, 2);
}

static void
test_cot_slope_parity(void **state)
{
	HARNESS_NEED_TRACES(*state);
	check_parity(*state, 0, NCOT, 2, atof(THRESHOLD_SLOPE));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_cot_parity, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sc_parity, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sc_vote_parity, setup_vote, teardown),
		cmocka_unit_test_setup_teardown(test_sc_staged_parity, setup_staged, teardown),
		cmocka_unit_test_setup_teardown(test_sc_staged2_parity, setup_staged2, teardown),
		cmocka_unit_test_setup_teardown(test_sc_staged_restart, setup_staged, teardown),
		cmocka_unit_test_setup_teardown(test_cot_slope_parity, setup_slope, teardown),
		cmocka_unit_test_setup_teardown(test_route_parity, setup_route, teardown),
	};
	int rc;

	grpc_init();
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	grpc_shutdown();
	return rc;
}
