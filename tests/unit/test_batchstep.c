/* test_batchstep.c — one Step call per worker per dispatch pass (daemon/pool.c pool_step_add,
 * daemon/dispatch.c): a real core (LMDB in a temporary directory) drives a fake worker, a
 * real gRPC server on its own loop thread (tests/support/loopsrv) that answers Info and Step
 * and counts the Step calls and the programs each carries.  The programs queued before the
 * worker is up go out together in one call; a failed call fails over (or fails) every
 * program in it; an error the worker puts on one program's items affects only that one. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <event2/event.h>
#include <grpc/grpc.h>

#include "certa/v1/worker.pb-c.h"
#include "daemon/core.h"
#include "daemon/core_impl.h"
#include "daemon/dispatch.h"
#include "daemon/commit.h"
#include "daemon/pool.h"
#include "daemon/queries.h"
#include "daemon/route.h"
#include "daemon/submit.h"
#include "lib/error.h"
#include "lib/rpc_server.h"
#include "tests/support/loopsrv.h"
#include "tests/support/tcore.h"

#define NPROG 8
#define STEP_TOKENS_END 128     /* a chain ends naturally at this many tokens */

/* The fake worker's knobs (set before the worker is added) and what it saw; shared between
 * the test thread and the server's loop thread. */
struct fake {
	pthread_mutex_t mu;
	grpc_status_code fail_first;  /* the first Step call fails with this status (OK: none) */
	const char *refuse;           /* items of this prompt get NOT_FOUND on their results */
	const char *unavail;          /* ... UNAVAILABLE, in the first call that has them */
	unsigned resumed;             /* items that came with their text (moved chains) */
	unsigned calls;
	unsigned items;
	unsigned max_programs;        /* most programs one call carried */
	unsigned failed_programs;     /* programs in the call that failed */
	unsigned refused_with;        /* programs in the call that carried the refused items */
	int program_errors;           /* every call asked for per-program errors */
	/* Items of the prompt MOE_PROBLEM, in order: their moe_top_p and whether their text came
	 * with them (test_moe_raise_resends_text). */
	float moe_p[64];
	int moe_text[64];
	unsigned moe_n;
	unsigned release_calls;       /* Release calls, and the request ids they carried */
	unsigned released;
	/* Held state (worker.proto): Info says prompt_once; items that came with their prompt
	 * and without; missing 1: the first item without prompt gets state_missing (its program
	 * is lost_id), 2: every item does (a broken worker); items of lost_id that came back
	 * with prompt and text afterwards. */
	int prompt_once;
	unsigned with_prompt, bare;
	int missing;
	unsigned lost;
	char lost_id[64];
	unsigned resent;
	/* After certad's restart (test_recovered_steps_carry_prompt): the programs seen since,
	 * and how many of their first items came with the prompt. */
	int restarted;
	char seen[NPROG][64];
	unsigned nseen, first_with_prompt;
};

#define MOE_PROBLEM "a struggling moe problem"


struct fx {
	struct tcore tc;          /* a core on a temporary state directory */
	struct loopsrv *ls;
	struct fake fake;
	char ids[NPROG][64];
	char err[512];
};

/* Programs in a batch: runs of consecutive items with the same "<program>/" prefix. */
static unsigned
count_programs(const Certa__V1__StepRequest *req)
{
	unsigned n = 0;
	size_t i;

	for (i = 0; i < req->n_items; i++) {
		const char *a = req->items[i]->request_id, *b;
		if (i > 0) {
			b = req->items[i - 1]->request_id;
			if (strrchr(a, '/') - a == strrchr(b, '/') - b &&
			    strncmp(a, b, (size_t)(strrchr(a, '/') - a)) == 0)
				continue;
		}
		n++;
	}
	return n;
}

static void
h_step(struct rpc_call *call, const ProtobufCMessage *msg, void *ctx)
{
	struct fake *fk = ctx;
	const Certa__V1__StepRequest *req = (const Certa__V1__StepRequest *)msg;
	Certa__V1__StepReply reply = CERTA__V1__STEP_REPLY__INIT;
	Certa__V1__StepResult res[64], *ptrs[64];
	Certa__V1__ProbeResult probe[64];
	unsigned progs = count_programs(req), first, refused = 0;
	size_t i;

	pthread_mutex_lock(&fk->mu);
	first = fk->calls++ == 0;
	fk->items += (unsigned)req->n_items;
	if (progs > fk->max_programs)
		fk->max_programs = progs;
	if (!req->program_errors)
		fk->program_errors = 0;
	for (i = 0; i < req->n_items; i++) {
		const char *id = req->items[i]->request_id;
		int has_prompt = req->items[i]->prompt[0] != '\0';

		if (has_prompt)
			fk->with_prompt++;
		else
			fk->bare++;
		if (fk->lost_id[0] != '\0' && strcmp(id, fk->lost_id) == 0 && has_prompt &&
		    req->items[i]->resume_text[0] != '\0')
			fk->resent++;
		if (fk->restarted) {
			unsigned k;
			for (k = 0; k < fk->nseen && strcmp(fk->seen[k], id) != 0; k++)
				;
			if (k == fk->nseen && k < NPROG) {
				snprintf(fk->seen[fk->nseen++], sizeof fk->seen[0], "%s", id);
				fk->first_with_prompt += has_prompt &&
				    req->items[i]->resume_text[0] != '\0';
			}
		}
		if (fk->refuse != NULL && strcmp(req->items[i]->prompt, fk->refuse) == 0)
			refused = 1;
		if (req->items[i]->resume_text[0] != '\0')
			fk->resumed++;
		if (strcmp(req->items[i]->prompt, MOE_PROBLEM) == 0 && fk->moe_n < 64) {
			fk->moe_p[fk->moe_n] = req->items[i]->moe_top_p;
			fk->moe_text[fk->moe_n++] = req->items[i]->resume_text[0] != '\0';
		}
	}
	if (refused && progs > fk->refused_with)
		fk->refused_with = progs;
	if (first && fk->fail_first != GRPC_STATUS_OK) {
		fk->failed_programs = progs;
		pthread_mutex_unlock(&fk->mu);
		rpc_call_finish(call, fk->fail_first, "fake worker: the whole call fails");
		return;
	}
	pthread_mutex_unlock(&fk->mu);
	if (req->n_items > 64) {
		rpc_call_finish(call, GRPC_STATUS_INTERNAL, "fake worker: batch too large");
		return;
	}
	for (i = 0; i < req->n_items; i++) {
		const Certa__V1__StepItem *it = req->items[i];
		uint64_t total = it->resume_tokens + it->max_new_tokens;

		certa__v1__step_result__init(&res[i]);
		certa__v1__probe_result__init(&probe[i]);
		ptrs[i] = &res[i];
		res[i].request_id = it->request_id;
		pthread_mutex_lock(&fk->mu);
		if (fk->missing == 2 || (fk->missing == 1 && fk->lost == 0 &&
		    it->prompt[0] == '\0')) {
			/* cot: one item per program, so the program is refused whole. */
			if (fk->lost++ == 0)
				snprintf(fk->lost_id, sizeof fk->lost_id, "%s", it->request_id);
			pthread_mutex_unlock(&fk->mu);
			res[i].error_code = GRPC_STATUS_FAILED_PRECONDITION;
			res[i].error_message = (char *)"state missing: fake worker lost it";
			res[i].state_missing = 1;
			continue;
		}
		pthread_mutex_unlock(&fk->mu);
		if (fk->refuse != NULL && strcmp(it->prompt, fk->refuse) == 0) {
			res[i].error_code = GRPC_STATUS_NOT_FOUND;
			res[i].error_message = (char *)"fake worker: unknown prompt";
			continue;
		}
		if (fk->unavail != NULL && strcmp(it->prompt, fk->unavail) == 0) {
			res[i].error_code = GRPC_STATUS_UNAVAILABLE;
			res[i].error_message = (char *)"fake worker: upstream unreachable";
			continue;
		}
		res[i].text = (char *)" step";
		res[i].new_tokens = it->max_new_tokens;
		res[i].total_tokens = total;
		res[i].finished = total >= STEP_TOKENS_END;
		res[i].final_answer = (char *)(res[i].finished ? "42" : "");
		probe[i].answer = (char *)"42";
		probe[i].tokens = 4;
		probe[i].confidence = -1;
		res[i].probe = &probe[i];
		res[i].probe_mean_prob = res[i].probe_min_prob = -1;
		res[i].chain_mean_entropy = res[i].experts_per_token = -1;
	}
	reply.n_results = req->n_items;
	reply.results = ptrs;
	rpc_call_reply(call, &reply.base);
	pthread_mutex_lock(&fk->mu);
	fk->unavail = NULL;   /* once */
	pthread_mutex_unlock(&fk->mu);
}

static void
h_info(struct rpc_call *call, const ProtobufCMessage *msg, void *ctx)
{
	Certa__V1__InfoReply reply = CERTA__V1__INFO_REPLY__INIT;
	struct fake *fk = ctx;

	(void)msg;
	pthread_mutex_lock(&fk->mu);
	reply.prompt_once = fk->prompt_once;
	pthread_mutex_unlock(&fk->mu);
	reply.engine = (char *)"fake";
	reply.model = (char *)"fake-model";
	reply.capacity = 1000;
	reply.version = (char *)"test";
	reply.instance = (char *)"fake-instance";
	reply.fault = (char *)"";
	rpc_call_reply(call, &reply.base);
}

static void
h_release(struct rpc_call *call, const ProtobufCMessage *msg, void *ctx)
{
	Certa__V1__ReleaseReply reply = CERTA__V1__RELEASE_REPLY__INIT;
	const Certa__V1__ReleaseRequest *req = (const Certa__V1__ReleaseRequest *)msg;
	struct fake *fk = ctx;

	pthread_mutex_lock(&fk->mu);
	fk->release_calls++;
	fk->released += (unsigned)req->n_request_ids;
	pthread_mutex_unlock(&fk->mu);
	rpc_call_reply(call, &reply.base);
}

static const struct rpc_method fake_methods[] = {
	{ "/certa.v1.Worker/Release", RPC_UNARY, &certa__v1__release_request__descriptor,
	  h_release, 0 },
	{ "/certa.v1.Worker/Step", RPC_UNARY, &certa__v1__step_request__descriptor, h_step, 0 },
	{ "/certa.v1.Worker/Info", RPC_UNARY, &certa__v1__info_request__descriptor, h_info, 0 },
};

static int
setup_with(void **state, const struct route_config *route, uint32_t step_tokens)
{
	struct fx *f = calloc(1, sizeof *f);
	struct loopsrv_options lo = { 0 };

	assert_non_null(f);
	pthread_mutex_init(&f->fake.mu, NULL);
	f->fake.program_errors = 1;
	lo.methods = fake_methods;
	lo.nmethods = sizeof fake_methods / sizeof fake_methods[0];
	lo.ctx = &f->fake;
	assert_int_equal(loopsrv_start(&lo, &f->ls), 0);
	assert_int_equal(tcore_init(&f->tc, "batchstep"), 0);
	f->tc.opt.pool.health_interval_ms = 100;
	f->tc.opt.pool.step_timeout_ms = 5000;
	f->tc.opt.retry_backoff_ms = 10;
	f->tc.opt.tick_ms = 50;
	f->tc.opt.anonymous_tenant = "anon";
	f->tc.opt.route = route;
	if (step_tokens != 0)
		f->tc.opt.policy.step_tokens = step_tokens;
	assert_int_equal(tcore_open(&f->tc), 0);
	*state = f;
	return 0;
}

static int
setup(void **state)
{
	return setup_with(state, NULL, 0);
}

/* Steps of 16 tokens: 8 per program. */
static int
setup_short(void **state)
{
	return setup_with(state, NULL, 16);
}

/* Routing on: one rung on the fake worker's model, a MoE pool whose programs raise their
 * top-p once (0 -> 0.8, the cap) after their first step, whatever the certaindex. */
static int
setup_moe(void **state)
{
	static const char policy[] =
	    "pool.fake = fake-model 1 moe\n"
	    "rung.0 = fake cot 1\n"
	    "escalate.unpromising = 0\nescalate.certaindex = 1\n"
	    "moe.tokens = 1\nmoe.first = 0.8\nmoe.max_top_p = 0.8\n";
	static struct route_config cfg;
	char err[256];

	route_config_free(&cfg);
	assert_int_equal(route_config_build(policy, strlen(policy), "moe.policy", NULL, 0, NULL,
	    0, &cfg, err, sizeof err), 0);
	return setup_with(state, &cfg, 16);
}

static int
teardown(void **state)
{
	struct fx *f = *state;

	if (f->tc.c != NULL)
		assert_int_equal(dispatch_ready_verify(f->tc.c), 0);
	assert_int_equal(tcore_fini(&f->tc), 0);
	loopsrv_stop(f->ls);
	pthread_mutex_destroy(&f->fake.mu);
	free(f);
	return 0;
}

/* Submits NPROG cot programs (problem "problem <i>", or `odd` for the one at index odd_at)
 * while no worker is up: they all queue.  ids[i] is program i's id. */
static void
submit_all(struct fx *f, int odd_at, const char *odd)
{
	const char *ids[NPROG];
	char problem[32];
	size_t n, k;
	int i;

	for (i = 0; i < NPROG; i++) {
		struct submit_spec spec = { .model = "", .policy = "", .idempotency_key = "" };

		snprintf(problem, sizeof problem, "problem %d", i);
		spec.problem = i == odd_at ? odd : problem;
		assert_int_equal(submit_program(f->tc.c, "anon", &spec, NULL, f->err, sizeof f->err),
		    0);
	}
	commit_sync(f->tc.c);   /* accepted once their writes commit (the loop would run it) */
	assert_int_equal(dispatch_order(f->tc.c, ids, NPROG, &n), 0);
	assert_int_equal(n, NPROG);
	for (k = 0; k < n; k++) {
		Certa__V1__Program *pm = NULL;
		assert_int_equal(queries_get(f->tc.c, "anon", ids[k], &pm), 0);
		if (strcmp(pm->spec->problem, odd ? odd : "") == 0)
			i = odd_at;
		else
			assert_int_equal(sscanf(pm->spec->problem, "problem %d", &i), 1);
		snprintf(f->ids[i], sizeof f->ids[i], "%s", ids[k]);
		certa__v1__program__free_unpacked(pm, NULL);
	}
}

/* Adds the fake worker and runs the loop until every program ended (10 s at most). */
static void
run_to_end(struct fx *f)
{
	size_t queued, running;
	uint64_t finished = 0;
	int i;

	assert_int_equal(pool_add(core_pool(f->tc.c), loopsrv_target(f->ls)), 0);
	for (i = 0; i < 200 && finished < NPROG; i++) {
		struct timeval tv = { 0, 50000 };
		event_base_loopexit(f->tc.base, &tv);
		event_base_dispatch(f->tc.base);
		core_counts(f->tc.c, &queued, &running, &finished);
	}
	assert_int_equal(finished, NPROG);
}

/* The pool finds its workers by address while they are added, removed (the last one takes
 * the hole) and added again; programs then run on the worker added last. */
static void
test_pool_find_by_address(void **state)
{
	struct fx *f = *state;
	struct pool *pl = core_pool(f->tc.c);
	char addr[32];
	int i;

	for (i = 0; i < 6; i++) {
		snprintf(addr, sizeof addr, "127.0.0.1:%d", 1 + i);
		assert_int_equal(pool_add(pl, addr), 0);
	}
	assert_int_equal(pool_add(pl, "127.0.0.1:3"), CERTA_EEXIST);
	assert_int_equal(pool_remove(pl, "127.0.0.1:2"), 0);
	assert_int_equal(pool_remove(pl, "127.0.0.1:2"), CERTA_ENOTFOUND);
	assert_null(pool_find(pl, "127.0.0.1:2"));
	for (i = 0; i < 6; i++) {
		snprintf(addr, sizeof addr, "127.0.0.1:%d", 1 + i);
		if (i == 1)
			continue;
		assert_non_null(pool_find(pl, addr));
		assert_string_equal(pool_worker_addr(pool_find(pl, addr)), addr);
	}
	assert_int_equal(pool_count(pl), 5);
	assert_int_equal(pool_add(pl, "127.0.0.1:2"), 0);
	assert_string_equal(pool_worker_addr(pool_find(pl, "127.0.0.1:2")), "127.0.0.1:2");
	for (i = 0; i < 6; i++) {
		snprintf(addr, sizeof addr, "127.0.0.1:%d", 1 + i);
		assert_int_equal(pool_remove(pl, addr), 0);
	}
	assert_int_equal(pool_count(pl), 0);
	submit_all(f, -1, NULL);
	run_to_end(f);
}

/* A kept decision's token count (what a dispatch pass orders by, instead of walking the
 * chains) is the program's: checked after every loop turn while programs step and end. */
static void
test_kept_decision_tokens(void **state)
{
	struct fx *f = *state;
	size_t queued, running, k, checked = 0;
	uint64_t finished = 0;
	int i;

	submit_all(f, -1, NULL);
	assert_int_equal(pool_add(core_pool(f->tc.c), loopsrv_target(f->ls)), 0);
	for (i = 0; i < 100000 && finished < NPROG; i++) {
		/* One loop iteration at a time: every turn's state is looked at. */
		event_base_loop(f->tc.base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
		if (i % 16 == 15)
			usleep(100);
		for (k = 0; k < f->tc.c->norder; k++) {
			const struct program *p = f->tc.c->order[k];
			if (!p->decided || p->decided_steps != p->steps)
				continue;
			if (p->decided_used != program_tokens(p))
				fail_msg("program %s: kept %llu tokens, has %llu", p->id,
				    (unsigned long long)p->decided_used,
				    (unsigned long long)program_tokens(p));
			checked += p->steps > 0;
		}
		core_counts(f->tc.c, &queued, &running, &finished);
	}
	assert_int_equal(finished, NPROG);
	assert_true(checked > 0);   /* some were looked at between steps */
}

/* The state, reason and error message of program i. */
static void
expect_program(struct fx *f, int i, Certa__V1__ProgramState st, const char *msg_part)
{
	Certa__V1__Program *pm = NULL;

	assert_int_equal(queries_get(f->tc.c, "anon", f->ids[i], &pm), 0);
	if (pm->state != st)
		fail_msg("program %d (%s): state %d, want %d (%s)", i, f->ids[i], pm->state, st,
		    pm->result ? pm->result->error_message : "");
	if (msg_part != NULL) {
		assert_non_null(pm->result);
		if (strstr(pm->result->error_message, msg_part) == NULL)
			fail_msg("program %d: error '%s' lacks '%s'", i, pm->result->error_message,
			    msg_part);
	}
	certa__v1__program__free_unpacked(pm, NULL);
}

/* Programs ready in the same pass share one Step call: fewer calls than steps, one call
 * carried all of them, and every call asked for per-program errors. */
static void
test_programs_share_one_call(void **state)
{
	struct fx *f = *state;
	int i;

	submit_all(f, -1, NULL);
	run_to_end(f);
	for (i = 0; i < NPROG; i++)
		expect_program(f, i, CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_FINISHED, NULL);
	pthread_mutex_lock(&f->fake.mu);
	assert_int_equal(f->fake.max_programs, NPROG);
	assert_true(f->fake.program_errors);
	assert_true(f->fake.calls < f->tc.c->steps_total);
	assert_int_equal(f->fake.items, f->tc.c->steps_total);   /* cot: one item per step */
	pthread_mutex_unlock(&f->fake.mu);
	assert_int_equal(pool_step_calls(core_pool(f->tc.c)), f->fake.calls);
	assert_int_equal(pool_inflight(core_pool(f->tc.c)), 0);
}

/* Programs that end in the same loop turn release their sequences in one Release call: every
 * chain is released, in fewer calls than programs (they all end at the same step here). */
static void
test_releases_share_one_call(void **state)
{
	struct fx *f = *state;
	unsigned released = 0, calls = 0;
	int i;

	submit_all(f, -1, NULL);
	run_to_end(f);
	for (i = 0; i < 100 && released < NPROG; i++) {
		struct timeval tv = { 0, 20000 };
		event_base_loopexit(f->tc.base, &tv);
		event_base_dispatch(f->tc.base);
		pthread_mutex_lock(&f->fake.mu);
		released = f->fake.released;
		calls = f->fake.release_calls;
		pthread_mutex_unlock(&f->fake.mu);
	}
	assert_int_equal(released, NPROG);   /* cot: one chain each */
	assert_true(calls < NPROG);
}

/* A call that fails with UNAVAILABLE (the worker lost) fails over every program in it: the
 * worker goes DOWN, each program is queued again and, once the worker is back, finishes. */
static void
test_lost_call_fails_over_every_program(void **state)
{
	struct fx *f = *state;
	int i;

	f->fake.fail_first = GRPC_STATUS_UNAVAILABLE;
	submit_all(f, -1, NULL);
	run_to_end(f);
	assert_int_equal(f->fake.failed_programs, NPROG);
	for (i = 0; i < NPROG; i++)
		expect_program(f, i, CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_FINISHED, NULL);
	assert_int_equal(pool_worker_held(pool_at(core_pool(f->tc.c), 0)), 0);
}

/* A call the worker refuses as a whole (INVALID_ARGUMENT) fails every program in it, each
 * with the worker's message. */
static void
test_refused_call_fails_every_program(void **state)
{
	struct fx *f = *state;
	int i;

	f->fake.fail_first = GRPC_STATUS_INVALID_ARGUMENT;
	submit_all(f, -1, NULL);
	run_to_end(f);
	assert_int_equal(f->fake.failed_programs, NPROG);
	for (i = 0; i < NPROG; i++)
		expect_program(f, i, CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_FAILED,
		    "the whole call fails");
}

/* An error on one program's items fails that program only; the others of the same call
 * step on and finish. */
static void
test_item_error_affects_only_its_program(void **state)
{
	struct fx *f = *state;
	int i;

	f->fake.refuse = "refuse me";
	submit_all(f, 3, "refuse me");
	run_to_end(f);
	assert_int_equal(f->fake.refused_with, NPROG);
	for (i = 0; i < NPROG; i++)
		expect_program(f, i, i == 3 ? CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_FAILED :
		    CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_FINISHED,
		    i == 3 ? "unknown prompt" : NULL);
}

/* UNAVAILABLE on one program's items says the worker cannot serve (an upstream engine's
 * lost upstream): the worker goes DOWN as when a call fails so; that program retries and
 * finishes; the others of the call keep their step. */
static void
test_item_unavailable_marks_worker_down(void **state)
{
	struct fx *f = *state;
	int i;

	f->fake.unavail = "unreachable";
	submit_all(f, 5, "unreachable");
	run_to_end(f);
	for (i = 0; i < NPROG; i++)
		expect_program(f, i, CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_FINISHED, NULL);
	pthread_mutex_lock(&f->fake.mu);
	/* The worker went DOWN: programs of the call already handled (not in flight any more)
	 * moved with their text, as parked programs do (without the DOWN, nothing would). */
	assert_true(f->fake.resumed >= 1 && f->fake.resumed <= NPROG - 1);
	pthread_mutex_unlock(&f->fake.mu);
}

/* A MoE program's top-p rises while it struggles: the step after the raise carries the new p
 * and, once, the chain's text (the worker rebuilds the sequence computed with the old p); the
 * routing history records the raise with its reason. */
static void
test_moe_raise_resends_text(void **state)
{
	struct fx *f = *state;
	struct submit_spec spec = { .model = "", .policy = "", .idempotency_key = "" };
	const char *ids[1];
	Certa__V1__Program *pm = NULL;
	size_t n, queued, running;
	uint64_t finished = 0;
	unsigned i;

	spec.problem = MOE_PROBLEM;
	assert_int_equal(submit_program(f->tc.c, "anon", &spec, NULL, f->err, sizeof f->err), 0);
	commit_sync(f->tc.c);
	assert_int_equal(dispatch_order(f->tc.c, ids, 1, &n), 0);
	assert_int_equal(n, 1);
	snprintf(f->ids[0], sizeof f->ids[0], "%s", ids[0]);
	assert_int_equal(pool_add(core_pool(f->tc.c), loopsrv_target(f->ls)), 0);
	for (i = 0; i < 200 && finished < 1; i++) {
		struct timeval tv = { 0, 50000 };
		event_base_loopexit(f->tc.base, &tv);
		event_base_dispatch(f->tc.base);
		core_counts(f->tc.c, &queued, &running, &finished);
	}
	assert_int_equal(finished, 1);
	pthread_mutex_lock(&f->fake.mu);
	if (f->fake.moe_n < 3)
		fail_msg("only %u steps of the program", f->fake.moe_n);
	/* Step 1: trained top-k, nothing to resume; step 2: p = 0.8 with the text; then p = 0.8
	 * without it. */
	assert_true(f->fake.moe_p[0] == 0 && !f->fake.moe_text[0]);
	assert_true(f->fake.moe_p[1] > 0.79f && f->fake.moe_p[1] < 0.81f);
	assert_true(f->fake.moe_text[1]);
	for (i = 2; i < f->fake.moe_n; i++) {
		assert_true(f->fake.moe_p[i] > 0.79f && f->fake.moe_p[i] < 0.81f);
		assert_false(f->fake.moe_text[i]);
	}
	pthread_mutex_unlock(&f->fake.mu);
	assert_int_equal(queries_get(f->tc.c, "anon", f->ids[0], &pm), 0);
	assert_int_equal(pm->state, CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_FINISHED);
	assert_true(pm->spec->moe_top_p > 0.79f && pm->spec->moe_top_p < 0.81f);
	assert_int_equal(pm->n_routing, 2);
	assert_string_equal(pm->routing[0]->action, "route");
	assert_string_equal(pm->routing[1]->action, "raise");
	assert_int_equal(pm->routing[1]->rung, 0);
	assert_string_equal(pm->routing[1]->pool, "fake");
	assert_non_null(strstr(pm->routing[1]->reason, "raise top-p 0 -> 0.8 on rung 0 (fake, moe)"));
	certa__v1__program__free_unpacked(pm, NULL);
}

/* A worker with prompt_once gets each chain's prompt on its first step only (placement);
 * the others continue its state, without prompt or text. */
static void
test_prompt_on_placement_only(void **state)
{
	struct fx *f = *state;
	int i;

	f->fake.prompt_once = 1;
	submit_all(f, -1, NULL);
	run_to_end(f);
	for (i = 0; i < NPROG; i++)
		expect_program(f, i, CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_FINISHED, NULL);
	pthread_mutex_lock(&f->fake.mu);
	assert_int_equal(f->fake.with_prompt, NPROG);
	assert_int_equal(f->fake.bare, f->tc.c->steps_total - NPROG);
	assert_true(f->fake.bare >= NPROG);
	assert_int_equal(f->fake.resumed, 0);
	pthread_mutex_unlock(&f->fake.mu);
}

/* A worker without it (older ones) gets the prompt on every step, as before. */
static void
test_prompt_every_step_without_prompt_once(void **state)
{
	struct fx *f = *state;

	submit_all(f, -1, NULL);
	run_to_end(f);
	pthread_mutex_lock(&f->fake.mu);
	assert_int_equal(f->fake.bare, 0);
	assert_int_equal(f->fake.with_prompt, f->tc.c->steps_total);
	pthread_mutex_unlock(&f->fake.mu);
}

/* state_missing on a step without prompt (the worker restarted unseen): the program is
 * stepped again with its prompt and text, not failed nor counted as an attempt, and ends
 * like the others (same tokens). */
static void
test_state_missing_resends_prompt_and_text(void **state)
{
	struct fx *f = *state;
	Certa__V1__Program *pm = NULL, *ref = NULL;
	int i, lost = -1;

	f->fake.prompt_once = 1;
	f->fake.missing = 1;
	f->tc.c->opt.max_attempts = 1;   /* a counted failure would end the program */
	submit_all(f, -1, NULL);
	run_to_end(f);
	for (i = 0; i < NPROG; i++)
		expect_program(f, i, CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_FINISHED, NULL);
	pthread_mutex_lock(&f->fake.mu);
	assert_int_equal(f->fake.lost, 1);
	assert_int_equal(f->fake.resent, 1);       /* its next step: prompt and text */
	assert_int_equal(f->fake.resumed, 1);      /* nobody else's text travelled */
	for (i = 0; i < NPROG; i++)
		if (strncmp(f->fake.lost_id, f->ids[i], strlen(f->ids[i])) == 0)
			lost = i;
	pthread_mutex_unlock(&f->fake.mu);
	assert_true(lost >= 0);
	assert_int_equal(queries_get(f->tc.c, "anon", f->ids[lost], &pm), 0);
	assert_int_equal(queries_get(f->tc.c, "anon", f->ids[(lost + 1) % NPROG], &ref), 0);
	assert_int_equal(pm->result->tokens_used, ref->result->tokens_used);
	certa__v1__program__free_unpacked(pm, NULL);
	certa__v1__program__free_unpacked(ref, NULL);
}

/* A broken worker that answers state_missing even to steps that carried the prompt: each
 * such answer is a failed step, so the programs fail after max_attempts (3) instead of being
 * resent forever. */
static void
test_state_missing_bounded(void **state)
{
	struct fx *f = *state;
	int i;

	f->fake.prompt_once = 1;
	f->fake.missing = 2;
	submit_all(f, -1, NULL);
	run_to_end(f);
	for (i = 0; i < NPROG; i++)
		expect_program(f, i, CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_FAILED,
		    "worker reports state missing for chains sent with their prompt");
	pthread_mutex_lock(&f->fake.mu);
	assert_int_equal(f->fake.lost, 3 * NPROG);
	assert_int_equal(f->fake.bare, 0);
	pthread_mutex_unlock(&f->fake.mu);
}

/* After certad restarts (recovery), it cannot know what the workers hold: the first step of
 * every recovered program carries its prompt and text, though the worker is the same. */
static void
test_recovered_steps_carry_prompt(void **state)
{
	struct fx *f = *state;
	size_t queued, running;
	uint64_t finished = 0;
	int i;

	f->fake.prompt_once = 1;
	submit_all(f, -1, NULL);
	assert_int_equal(pool_add(core_pool(f->tc.c), loopsrv_target(f->ls)), 0);
	/* A few steps each, then no new ones (drain) until none is in flight. */
	for (i = 0; i < 2000 && f->tc.c->steps_total < 2 * NPROG; i++) {
		struct timeval tv = { 0, 2000 };
		event_base_loopexit(f->tc.base, &tv);
		event_base_dispatch(f->tc.base);
	}
	assert_int_equal(pool_drain(core_pool(f->tc.c), loopsrv_target(f->ls), 1), 0);
	for (i = 0; i < 200 && pool_inflight(core_pool(f->tc.c)) > 0; i++) {
		struct timeval tv = { 0, 10000 };
		event_base_loopexit(f->tc.base, &tv);
		event_base_dispatch(f->tc.base);
	}
	assert_int_equal(pool_inflight(core_pool(f->tc.c)), 0);
	core_counts(f->tc.c, &queued, &running, &finished);
	assert_int_equal(finished, 0);
	assert_true(f->fake.bare > 0);   /* steps went without prompt before */
	commit_sync(f->tc.c);
	core_free(f->tc.c);
	f->tc.c = NULL;
	pthread_mutex_lock(&f->fake.mu);
	f->fake.restarted = 1;
	pthread_mutex_unlock(&f->fake.mu);
	assert_int_equal(tcore_open(&f->tc), 0);
	run_to_end(f);
	pthread_mutex_lock(&f->fake.mu);
	assert_int_equal(f->fake.nseen, NPROG);
	assert_int_equal(f->fake.first_with_prompt, NPROG);
	pthread_mutex_unlock(&f->fake.mu);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_programs_share_one_call, setup, teardown),
		cmocka_unit_test_setup_teardown(test_kept_decision_tokens, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pool_find_by_address, setup, teardown),
		cmocka_unit_test_setup_teardown(test_releases_share_one_call, setup, teardown),
		cmocka_unit_test_setup_teardown(test_moe_raise_resends_text, setup_moe, teardown),
		cmocka_unit_test_setup_teardown(test_prompt_on_placement_only, setup_short,
		    teardown),
		cmocka_unit_test_setup_teardown(test_prompt_every_step_without_prompt_once,
		    setup_short, teardown),
		cmocka_unit_test_setup_teardown(test_state_missing_resends_prompt_and_text,
		    setup_short, teardown),
		cmocka_unit_test_setup_teardown(test_state_missing_bounded, setup_short, teardown),
		cmocka_unit_test_setup_teardown(test_recovered_steps_carry_prompt, setup_short,
		    teardown),
		cmocka_unit_test_setup_teardown(test_lost_call_fails_over_every_program, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_refused_call_fails_every_program, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_item_error_affects_only_its_program, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_item_unavailable_marks_worker_down, setup,
		    teardown),
	};
	int rc;

	grpc_init();
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	grpc_shutdown();
	return rc;
}
