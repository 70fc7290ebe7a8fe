/*
 * test_shadow.c — online risk control with the real certad and replay worker: an early-stopped
 * program runs on as a shadow that never reaches the client and is charged to the system
 * account; the shadow's trajectory moves the controller; a shadow in flight survives a kill -9
 * of certad; the controller's state survives restarts; riskctl.frozen stops it moving; a
 * sampled program that ran to its end is counted without a shadow.  The model's learned chain
 * length (model_tokens) takes over after model_tokens.min_samples chains and survives a kill -9
 * and a clean restart.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <grpc/grpc.h>

#include "certa/v1/admin.pb-c.h"
#include "tests/support/certa_client.h"
#include "tests/support/harness.h"
#include "tests/support/itest.h"

/* Stop at the first valid answer (so chains are left to shadow), shadow every such stop, and
 * move after one shadow.  The grid is three shifts, -4, 0, +4 (thresholds 0.74, 0.05, 0.001):
 * the stop at the first valid answer is one -4 would not make, so the shadow is needed, and
 * its trajectory moves the controller one grid step either way (save or back). */
static const char shadow_policy[] =
    "cot.threshold = 0.05\n"
    "riskctl.shadow_frac = 1\n"
    "riskctl.target = 0.9\n"
    "riskctl.confidence = 0.5\n"
    "riskctl.min_samples = 1\n"
    "riskctl.window = 1\n"
    "riskctl.min_shift = -4\n"
    "riskctl.max_shift = 4\n"
    "riskctl.step = 4\n";

static int
setup(void **state)
{
	*state = itest_new(sizeof(struct itest), 240, ITEST_TRACES_PICK);
	return 0;
}

/* Starts certad with shadow_policy and the extra policy lines. */
static void
start_with(struct itest *it, const char *delay, const char *extra)
{
	char path[512], set[600];
	const char *sets[] = { set, NULL };

	snprintf(path, sizeof path, "%s/shadow.policy", it->dir);
	assert_int_equal(harness_write_file(path, "%s%s", shadow_policy, extra), 0);
	snprintf(set, sizeof set, "policy.file=%s", path);
	itest_start(it, delay, ITEST_ADMIN | ITEST_ANONYMOUS | ITEST_METRICS, sets);
}

static void
start(struct itest *it, const char *delay)
{
	start_with(it, delay, "");
}

static Certa__V1__StatsReply *
stats(struct itest *it)
{
	Certa__V1__StatsRequest req = CERTA__V1__STATS_REQUEST__INIT;
	ProtobufCMessage *r = NULL;

	assert_int_equal(itest_call(it->adm, "/certa.v1.Admin/GetStats", &req.base,
	    &certa__v1__stats_reply__descriptor, NULL, &r, NULL, 0), GRPC_STATUS_OK);
	return (Certa__V1__StatsReply *)r;
}

/* Polls GetStats (up to 60 s) until the cot controller has `shadows` outcomes and `running`
 * shadows in progress; fails the test otherwise.  Returns the reply (caller frees). */
static Certa__V1__StatsReply *
wait_riskctl(struct itest *it, uint64_t shadows, uint64_t running)
{
	struct timespec ts = { 0, 50 * 1000000L };
	int i;

	for (i = 0; i < 1200; i++) {
		Certa__V1__StatsReply *r = stats(it);
		if (r->n_riskctl == 1 && r->riskctl[0]->shadows == shadows &&
		    r->riskctl[0]->running == running)
			return r;
		protobuf_c_message_free_unpacked(&r->base, NULL);
		nanosleep(&ts, NULL);
	}
	fail_msg("riskctl never reached %llu shadows, %llu running", (unsigned long long)shadows,
	    (unsigned long long)running);
	return NULL;
}

static uint64_t
tenant_tokens(const Certa__V1__StatsReply *r, const char *tenant)
{
	size_t i;

	for (i = 0; i < r->n_tenants; i++)
		if (strcmp(r->tenants[i]->tenant, tenant) == 0)
			return r->tenants[i]->tokens_used;
	fail_msg("no tenant %s in stats", tenant);
	return 0;
}

/* The value of the first exposition line starting with `series`, or -1. */
static double
metric(const char *body, const char *series)
{
	const char *p = body;
	size_t n = strlen(series);

	while ((p = strstr(p, series)) != NULL) {
		if ((p == body || p[-1] == '\n') && p[n] == ' ')
			return strtod(p + n + 1, NULL);
		p += n;
	}
	return -1;
}

/* Submits the picked problem as cot and reads the client's stream to its end. */
static void
run_program(struct itest *it, struct certa_client_events *ev)
{
	Certa__V1__ProgramSpec spec = CERTA__V1__PROGRAM_SPEC__INIT;

	spec.problem = (char *)it->tr->problem;
	spec.algorithm = CERTA__V1__ALGORITHM__ALGORITHM_COT;
	assert_int_equal(itest_run(it->ch, &spec, NULL, ev), 0);
	assert_int_equal(ev->status, GRPC_STATUS_OK);
	assert_non_null(ev->finished);
	assert_int_equal(ev->finished->result->reason,
	    CERTA__V1__FINISH_REASON__FINISH_REASON_CERTAIN);
	assert_true(ev->finished->result->tokens_used < it->tr->tokens_used);
}

/* The shadow runs after the client's answer, out of its sight, on the system account, and its
 * outcome moves the controller. */
static void
test_shadow_unseen_and_charged_to_system(void **state)
{
	struct itest *it = *state;
	struct certa_client_events ev;
	Certa__V1__StatsReply *r;
	Certa__V1__GetRequest g = CERTA__V1__GET_REQUEST__INIT;
	ProtobufCMessage *got = NULL;
	static char body[1 << 16];
	char sid[128], series[256];
	uint64_t t1, t2;

	HARNESS_NEED_TRACES(it);
	start(it, "0");
	memset(&ev, 0, sizeof ev);
	run_program(it, &ev);
	r = stats(it);
	t1 = tenant_tokens(r, "default");
	protobuf_c_message_free_unpacked(&r->base, NULL);

	r = wait_riskctl(it, 1, 0);
	/* Not one shadow token on the tenant; the shadow's on the system account. */
	t2 = tenant_tokens(r, "default");
	assert_int_equal(t1, t2);
	assert_true(r->riskctl[0]->tokens > 0);
	assert_true(t2 + r->riskctl[0]->tokens >= it->tr->tokens_used);
	assert_true(t2 < it->tr->tokens_used);
	/* One outcome, one move of one grid step (target 0.9 at confidence 0.5, window 1). */
	assert_int_equal(r->riskctl[0]->saves + r->riskctl[0]->backs, 1);
	assert_true(fabs(fabs(r->riskctl[0]->shift) - 4) < 1e-9);
	assert_int_equal(r->riskctl[0]->dropped, 0);
	assert_string_equal(r->riskctl[0]->algo, "cot");
	/* Its trajectory was counted (a shadow: movable within the grid). */
	assert_int_equal(r->riskctl[0]->samples, 1);
	assert_int_equal(r->riskctl[0]->excluded, 0);
	protobuf_c_message_free_unpacked(&r->base, NULL);

	/* The client's program is finished with its answer; the shadow is not the tenant's. */
	g.program_id = ev.id;
	assert_int_equal(itest_call(it->ch, "/certa.v1.Reasoning/Get", &g.base,
	    &certa__v1__program__descriptor, NULL, &got, NULL, 0), GRPC_STATUS_OK);
	assert_int_equal(((Certa__V1__Program *)got)->state,
	    CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_FINISHED);
	assert_string_equal(((Certa__V1__Program *)got)->result->answer,
	    ev.finished->result->answer);
	protobuf_c_message_free_unpacked(got, NULL);
	snprintf(sid, sizeof sid, "%s.shadow", ev.id);
	g.program_id = sid;
	assert_int_equal(itest_call(it->ch, "/certa.v1.Reasoning/Get", &g.base,
	    &certa__v1__program__descriptor, NULL, NULL, NULL, 0), GRPC_STATUS_NOT_FOUND);

	/* /metrics: the controller and the system account's tokens. */
	assert_int_equal(harness_http_get(it->mport, "/metrics", body, sizeof body), 200);
	assert_true(metric(body, "certa_riskctl_shadows_total{model=\"\",algo=\"cot\"}") == 1);
	assert_true(metric(body, "certa_riskctl_threshold_shift{model=\"\",algo=\"cot\"}") != 0);
	snprintf(series, sizeof series, "certa_tokens_generated_total{tenant=\"%s\"}", "_system");
	assert_true(metric(body, series) > 0);
	assert_true(metric(body, "certa_programs_finished_total{tenant=\"default\",reason="
	    "\"certain\"}") == 1);
	certa_client_events_free(&ev);
}

/* A shadow in flight survives kill -9 of certad; the controller's state survives restarts;
 * frozen, it counts and never moves. */
static void
test_shadow_survives_restart_and_freeze(void **state)
{
	struct itest *it = *state;
	struct certa_client_events ev;
	Certa__V1__StatsReply *r;
	Certa__V1__SetPolicyRequest sp = CERTA__V1__SET_POLICY_REQUEST__INIT;
	Certa__V1__Policy pol = CERTA__V1__POLICY__INIT;
	static char body[1 << 16];
	double shift;

	HARNESS_NEED_TRACES(it);
	/* Slow steps: the shadow is still running when certad dies. */
	start(it, "300");
	memset(&ev, 0, sizeof ev);
	run_program(it, &ev);
	certa_client_events_free(&ev);
	r = wait_riskctl(it, 0, 1);
	protobuf_c_message_free_unpacked(&r->base, NULL);
	itest_stop(it);   /* SIGKILL */

	start(it, "0");
	r = wait_riskctl(it, 1, 0);
	shift = r->riskctl[0]->shift;
	assert_true(fabs(fabs(shift) - 4) < 1e-9);
	assert_int_equal(r->riskctl[0]->dropped, 0);
	protobuf_c_message_free_unpacked(&r->base, NULL);
	/* It came back as a shadow (not a program of its own, which would have finished
	 * "certain" on the system account and spawned a shadow of its own). */
	assert_int_equal(harness_http_get(it->mport, "/metrics", body, sizeof body), 200);
	assert_true(metric(body, "certa_programs_finished_total{tenant=\"_system\",reason="
	    "\"certain\"}") < 0);
	assert_true(metric(body, "certa_tokens_generated_total{tenant=\"_system\"}") > 0);

	itest_stop(it);
	start(it, "0");
	r = wait_riskctl(it, 1, 0);
	assert_true(r->riskctl[0]->shift == shift);
	assert_false(r->riskctl[0]->frozen);
	/* The counterfactual counts came back from the riskctl DB. */
	assert_int_equal(r->riskctl[0]->samples, 1);
	protobuf_c_message_free_unpacked(&r->base, NULL);

	/* Freeze (the global default policy, as `certactl policy set riskctl.frozen=1`). */
	pol.text = (char *)"riskctl.frozen = 1\n";
	sp.tenant = (char *)"";
	sp.policy = &pol;
	assert_int_equal(itest_call(it->adm, "/certa.v1.Admin/SetPolicy", &sp.base,
	    &certa__v1__policy__descriptor, NULL, NULL, NULL, 0), GRPC_STATUS_OK);
	memset(&ev, 0, sizeof ev);
	run_program(it, &ev);
	certa_client_events_free(&ev);
	r = wait_riskctl(it, 2, 0);
	assert_true(r->riskctl[0]->frozen);
	assert_true(r->riskctl[0]->shift == shift);
	assert_int_equal(r->riskctl[0]->saves + r->riskctl[0]->backs, 1);
	assert_int_equal(r->riskctl[0]->samples, 2);
	protobuf_c_message_free_unpacked(&r->base, NULL);
}

/* A sampled program that runs to its natural end is a free sample: its trajectory is counted
 * at once, and no shadow runs. */
static void
test_natural_end_is_a_free_sample(void **state)
{
	struct itest *it = *state;
	struct certa_client_events ev;
	Certa__V1__ProgramSpec spec = CERTA__V1__PROGRAM_SPEC__INIT;
	Certa__V1__SetPolicyRequest sp = CERTA__V1__SET_POLICY_REQUEST__INIT;
	Certa__V1__Policy pol = CERTA__V1__POLICY__INIT;
	Certa__V1__GetRequest g = CERTA__V1__GET_REQUEST__INIT;
	Certa__V1__StatsReply *r;
	static char body[1 << 16];
	char sid[128];

	HARNESS_NEED_TRACES(it);
	start(it, "0");
	/* The tenant's own policy never stops certain; the controller's grid is the base's. */
	pol.text = (char *)"cot.threshold = 2\nunpromising_tokens = 0\n";
	sp.tenant = (char *)"default";
	sp.policy = &pol;
	assert_int_equal(itest_call(it->adm, "/certa.v1.Admin/SetPolicy", &sp.base,
	    &certa__v1__policy__descriptor, NULL, NULL, NULL, 0), GRPC_STATUS_OK);
	memset(&ev, 0, sizeof ev);
	spec.problem = (char *)it->tr->problem;
	spec.algorithm = CERTA__V1__ALGORITHM__ALGORITHM_COT;
	assert_int_equal(itest_run(it->ch, &spec, NULL, &ev), 0);
	assert_int_equal(ev.status, GRPC_STATUS_OK);
	assert_non_null(ev.finished);
	assert_int_equal(ev.finished->result->reason,
	    CERTA__V1__FINISH_REASON__FINISH_REASON_NATURAL_END);
	r = wait_riskctl(it, 0, 0);
	assert_int_equal(r->riskctl[0]->samples + r->riskctl[0]->excluded, 1);
	assert_int_equal(r->riskctl[0]->tokens, 0);
	protobuf_c_message_free_unpacked(&r->base, NULL);
	snprintf(sid, sizeof sid, "%s.shadow", ev.id);
	g.program_id = sid;
	assert_int_equal(itest_call(it->ch, "/certa.v1.Reasoning/Get", &g.base,
	    &certa__v1__program__descriptor, NULL, NULL, NULL, 0), GRPC_STATUS_NOT_FOUND);
	assert_int_equal(harness_http_get(it->mport, "/metrics", body, sizeof body), 200);
	assert_true(metric(body, "certa_tokens_generated_total{tenant=\"_system\"}") < 0);
	certa_client_events_free(&ev);
}

/* The model's entry in stats (model "": the worker serves the default), or NULL. */
static const Certa__V1__ModelTokens *
model_tokens(const Certa__V1__StatsReply *r)
{
	size_t i;

	for (i = 0; i < r->n_model_tokens; i++)
		if (strcmp(r->model_tokens[i]->model, "") == 0)
			return r->model_tokens[i];
	return NULL;
}

/* Runs the picked problem as cot under the learning policy: never certain, so it ends
 * naturally, at the unpromising bound or at the budget, all of which count. */
static void
run_counted(struct itest *it)
{
	Certa__V1__ProgramSpec spec = CERTA__V1__PROGRAM_SPEC__INIT;
	struct certa_client_events ev;

	spec.problem = (char *)it->tr->problem;
	spec.algorithm = CERTA__V1__ALGORITHM__ALGORITHM_COT;
	assert_int_equal(itest_run(it->ch, &spec, NULL, &ev), 0);
	assert_int_equal(ev.status, GRPC_STATUS_OK);
	assert_non_null(ev.finished);
	assert_int_not_equal(ev.finished->result->reason,
	    CERTA__V1__FINISH_REASON__FINISH_REASON_CERTAIN);
	certa_client_events_free(&ev);
}

static void
start_learning(struct itest *it)
{
	char path[512], set[600];
	const char *sets[] = { set, NULL };

	snprintf(path, sizeof path, "%s/learn.policy", it->dir);
	assert_int_equal(harness_write_file(path, "cot.threshold = 2\n"
	    "model_tokens.min_samples = 3\n"), 0);
	snprintf(set, sizeof set, "policy.file=%s", path);
	itest_start(it, "0", ITEST_ADMIN | ITEST_ANONYMOUS | ITEST_METRICS, sets);
}

/* The model's chain length: absolute bounds (no prior) for the first two programs, learned
 * from the third (the median of the replayed chain's lengths), shown in stats and /metrics;
 * the learned lengths survive a kill -9 (written when the median took over) and a clean stop
 * (written at exit), counting on from where they were. */
static void
test_model_tokens_learned_survive_restart(void **state)
{
	struct itest *it = *state;
	const Certa__V1__ModelTokens *mt;
	Certa__V1__StatsReply *r;
	static char body[1 << 16];
	char series[128];
	uint64_t learned;
	int st, k;

	HARNESS_NEED_TRACES(it);
	start_learning(it);
	for (k = 0; k < 2; k++)
		run_counted(it);
	r = stats(it);
	assert_non_null(mt = model_tokens(r));
	assert_int_equal(mt->samples, 2);
	assert_int_equal(mt->min_samples, 3);
	assert_string_equal(mt->source, "absolute");
	assert_int_equal(mt->tokens, 0);
	assert_true(mt->median > 0);
	protobuf_c_message_free_unpacked(&r->base, NULL);
	run_counted(it);
	r = stats(it);
	assert_non_null(mt = model_tokens(r));
	assert_int_equal(mt->samples, 3);
	assert_string_equal(mt->source, "learned");
	assert_true(mt->tokens > 0);
	assert_int_equal(mt->tokens, mt->median);
	learned = mt->tokens;
	protobuf_c_message_free_unpacked(&r->base, NULL);
	assert_int_equal(harness_http_get(it->mport, "/metrics", body, sizeof body), 200);
	assert_true(metric(body, "certa_model_tokens{model=\"\",source=\"learned\"}") ==
	    (double)learned);
	assert_true(metric(body, "certa_model_tokens_chains{model=\"\"}") == 3);

	/* kill -9: written when the learned value took over. */
	itest_stop(it);
	start_learning(it);
	r = stats(it);
	assert_non_null(mt = model_tokens(r));
	assert_int_equal(mt->samples, 3);
	assert_string_equal(mt->source, "learned");
	assert_int_equal(mt->tokens, learned);
	protobuf_c_message_free_unpacked(&r->base, NULL);

	/* One more, then a clean stop: written at exit. */
	run_counted(it);
	assert_int_equal(harness_signal(it->d, SIGTERM), 0);
	assert_int_equal(harness_wait_exit(it->d, 20000, &st), 0);
	itest_stop(it);
	start_learning(it);
	r = stats(it);
	assert_non_null(mt = model_tokens(r));
	assert_int_equal(mt->samples, 4);
	assert_int_equal(mt->seen, 4);
	assert_string_equal(mt->source, "learned");
	protobuf_c_message_free_unpacked(&r->base, NULL);
	snprintf(series, sizeof series, "certa_model_tokens_chains{model=\"\"}");
	assert_int_equal(harness_http_get(it->mport, "/metrics", body, sizeof body), 200);
	assert_true(metric(body, series) == 4);
}

/* With the gain proxy on (riskctl.gain), a shadow's trajectory is counted under the gain mode
 * and the counts come back from the riskctl DB after a kill -9 and a clean restart: the grid
 * point's counts and the shift are the same (a record that lost the gain mode or the gain
 * counts would restart the grid: no counts at the point). */
static void
test_gain_counts_survive_restart(void **state)
{
	static const char gain[] = "riskctl.gain = 1\nriskctl.gain_tokens = 1\n";
	struct itest *it = *state;
	struct certa_client_events ev;
	Certa__V1__StatsReply *r;
	uint32_t stopped, changed;
	double shift;

	HARNESS_NEED_TRACES(it);
	start_with(it, "0", gain);
	memset(&ev, 0, sizeof ev);
	run_program(it, &ev);
	certa_client_events_free(&ev);
	r = wait_riskctl(it, 1, 0);
	assert_int_equal(r->riskctl[0]->samples, 1);
	shift = r->riskctl[0]->shift;
	stopped = r->riskctl[0]->point_stopped;
	changed = r->riskctl[0]->point_changed;
	/* The stop at the first valid answer is a certain stop at every shift but -4. */
	assert_true(fabs(fabs(shift) - 4) < 1e-9);
	if (shift > 0)
		assert_int_equal(stopped, 1);
	protobuf_c_message_free_unpacked(&r->base, NULL);
	itest_stop(it);   /* SIGKILL */
	start_with(it, "0", gain);
	r = wait_riskctl(it, 1, 0);
	assert_true(r->riskctl[0]->shift == shift);
	assert_int_equal(r->riskctl[0]->samples, 1);
	assert_int_equal(r->riskctl[0]->point_stopped, stopped);
	assert_int_equal(r->riskctl[0]->point_changed, changed);
	protobuf_c_message_free_unpacked(&r->base, NULL);
	/* The key off: the same record's counts are another mode's (no counts at the point). */
	itest_stop(it);
	start_with(it, "0", "");
	r = wait_riskctl(it, 1, 0);
	assert_int_equal(r->riskctl[0]->point_stopped, 0);
	protobuf_c_message_free_unpacked(&r->base, NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_shadow_unseen_and_charged_to_system, setup,
		    itest_teardown),
		cmocka_unit_test_setup_teardown(test_shadow_survives_restart_and_freeze, setup,
		    itest_teardown),
		cmocka_unit_test_setup_teardown(test_natural_end_is_a_free_sample, setup,
		    itest_teardown),
		cmocka_unit_test_setup_teardown(test_model_tokens_learned_survive_restart, setup,
		    itest_teardown),
		cmocka_unit_test_setup_teardown(test_gain_counts_survive_restart, setup,
		    itest_teardown),
	};
	int rc;

	grpc_init();
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	grpc_shutdown();
	return rc;
}
