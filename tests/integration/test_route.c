/*
 * test_route.c — expert routing through the real certad and a replay worker serving the two
 * models of the traces: a program routed to R1-7B cot escalates to sc3 by forking (chain 0
 * keeps its tokens), the routing decisions and their reasons are in its record and survive a
 * kill -9 in the middle of the program; a switch to the other pool restarts the chains on its
 * model; a tenant's no-escalation rule, its chain quota and a client's model hint are
 * honoured.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <grpc/grpc.h>

#include "lib/rpc_client.h"
#include "lib/traces.h"
#include "tests/support/certa_client.h"
#include "tests/support/harness.h"
#include "tests/support/itest.h"

#define R1 "deepseek-ai-deepseek-r1-distill-qwen-7b"
#define QWEN "qwen-qwen3-8b"

/* Escalate as soon as the first chain has any token on the rung, whatever the certaindex:
 * every program that is not certain after its first step escalates once. */
#define ROUTE_POLICY_HEAD \
    "pool.r1-7b = " R1 " 1\n" \
    "pool.qwen3-8b = " QWEN " 4\n" \
    "escalate.unpromising = 1\n" \
    "escalate.tokens = 1\n" \
    "escalate.certaindex = 1\n"

static int
setup(void **state)
{
	*state = itest_new(sizeof(struct itest), 240, ITEST_TRACES_PICK);
	return 0;
}

/* Starts certad with the routing policy `policy`, when not NULL one route.tenant line, and
 * when not NULL one more setting `extra` (KEY=VALUE). */
static void
start(struct itest *it, const char *delay, const char *policy, const char *tenant,
    const char *extra)
{
	char path[512], set[600], tset[300];
	const char *sets[] = { set, tenant != NULL ? tset : extra, tenant != NULL ? extra : NULL,
	    NULL };

	snprintf(path, sizeof path, "%s/route.policy", it->dir);
	assert_int_equal(harness_write_file(path, "%s", policy), 0);
	snprintf(set, sizeof set, "route.policy=%s", path);
	if (tenant != NULL)
		snprintf(tset, sizeof tset, "route.tenant=%s", tenant);
	itest_start(it, delay, ITEST_ANONYMOUS | ITEST_SETTLE, sets);
}

/* `certactl get --explain ID` against certad (anonymous tenant); returns its stdout. */
static char *
explain(struct itest *it, const char *id)
{
	char opath[600], epath[600], server[64], *bin = harness_bin("certactl"), *out = NULL;
	char *argv[] = { bin, (char *)"--server", server, (char *)"get", (char *)"--explain",
	    (char *)id, NULL };
	struct harness_proc *p = NULL;
	int st = -1;

	assert_non_null(bin);
	snprintf(server, sizeof server, "127.0.0.1:%d", it->dport);
	snprintf(opath, sizeof opath, "%s/explain.out", it->dir);
	snprintf(epath, sizeof epath, "%s/explain.err", it->dir);
	assert_int_equal(harness_spawn_io(&p, opath, epath, argv), 0);
	assert_int_equal(harness_wait_exit(p, 20000, &st), 0);
	harness_proc_free(p);
	assert_int_equal(st, 0);
	assert_int_equal(harness_read_file(opath, &out), 0);
	free(bin);
	return out;
}

static Certa__V1__Program *
get(struct itest *it, const char *id)
{
	Certa__V1__GetRequest g = CERTA__V1__GET_REQUEST__INIT;
	ProtobufCMessage *got = NULL;

	g.program_id = (char *)id;
	assert_int_equal(itest_call(it->ch, "/certa.v1.Reasoning/Get", &g.base,
	    &certa__v1__program__descriptor, NULL, &got, NULL, 0), GRPC_STATUS_OK);
	return (Certa__V1__Program *)got;
}

/* Polls Get (up to 60 s) until the program has `events` routing decisions (and, when
 * terminal, has ended).  Returns it (caller frees). */
static Certa__V1__Program *
wait_program(struct itest *it, const char *id, size_t events, int terminal)
{
	struct timespec ts = { 0, 50 * 1000000L };
	int i;

	for (i = 0; i < 1200; i++) {
		Certa__V1__Program *p = get(it, id);
		if (p->n_routing >= events && (!terminal || p->result != NULL))
			return p;
		protobuf_c_message_free_unpacked(&p->base, NULL);
		nanosleep(&ts, NULL);
	}
	fail_msg("program %s never reached %zu routing decisions", id, events);
	return NULL;
}

static void
check_route_event(const Certa__V1__RoutingEvent *e, const char *action, uint32_t rung,
    const char *pool, const char *model, Certa__V1__Algorithm algo, uint32_t n)
{
	assert_string_equal(e->action, action);
	assert_int_equal(e->rung, rung);
	assert_string_equal(e->pool, pool);
	assert_string_equal(e->model, model);
	assert_int_equal(e->algorithm, algo);
	assert_int_equal(e->n, n);
	assert_true(e->unix_ms > 0);
	assert_true(e->reason[0] != '\0');
}

/* cot -> sc by a fork: chain 0 keeps its tokens, two chains join; the decisions and their
 * reasons are stored and come back after a kill -9 in the middle of the program. */
static void
test_route_fork_survives_restart(void **state)
{
	struct itest *it = *state;
	static const char policy[] = ROUTE_POLICY_HEAD
	    "rung.0 = r1-7b cot 1 0 0\n"
	    "rung.1 = r1-7b sc 3 0 0\n";
	Certa__V1__ProgramSpec spec = CERTA__V1__PROGRAM_SPEC__INIT;
	struct certa_client_events ev;
	struct rpc_stream *s;
	Certa__V1__Program *p;
	uint64_t chain0, sum = 0;
	size_t i;

	HARNESS_NEED_TRACES(it);
	if (it->tr->nsamples < 3)
		skip();
	/* Slow steps: the program is still running when certad dies. */
	start(it, "200", policy, NULL, NULL);
	spec.problem = (char *)it->tr->problem;
	assert_int_equal(certa_client_submit(it->ch, &spec, NULL, ITEST_RPC_MS, &s), 0);
	memset(&ev, 0, sizeof ev);
	assert_int_equal(certa_client_events_read(s, 30000, 1, &ev), 1);
	{
		char *d = NULL;
		rpc_sync_stream_cancel(s);
		(void)rpc_sync_stream_close(s, &d);
		free(d);
	}
	p = wait_program(it, ev.id, 2, 0);
	assert_int_equal(p->n_routing, 2);
	check_route_event(p->routing[0], "route", 0, "r1-7b", R1,
	    CERTA__V1__ALGORITHM__ALGORITHM_COT, 1);
	assert_non_null(strstr(p->routing[0]->reason, "rung 0"));
	check_route_event(p->routing[1], "fork", 1, "r1-7b", R1,
	    CERTA__V1__ALGORITHM__ALGORITHM_SC, 3);
	assert_non_null(strstr(p->routing[1]->reason, "fork rung 0 -> 1"));
	/* The fork happened after the first step: chain 0 had tokens then. */
	assert_true(p->routing[1]->tokens > 0);
	assert_int_equal(p->spec->algorithm, CERTA__V1__ALGORITHM__ALGORITHM_SC);
	assert_int_equal(p->spec->n, 3);
	assert_int_equal(p->n_requests, 3);
	protobuf_c_message_free_unpacked(&p->base, NULL);
	itest_stop(it);   /* SIGKILL */

	start(it, "0", policy, NULL, NULL);
	p = wait_program(it, ev.id, 2, 1);
	assert_int_equal(p->state, CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_FINISHED);
	/* Recovered on rung 1: no second escalation, the same two decisions. */
	assert_int_equal(p->n_routing, 2);
	assert_string_equal(p->routing[1]->action, "fork");
	assert_int_equal(p->n_requests, 3);
	chain0 = p->requests[0]->tokens;
	for (i = 0; i < p->n_requests; i++)
		sum += p->requests[i]->tokens;
	/* Chain 0 went on from where it was (the fork kept it), the others from the prompt. */
	assert_true(chain0 >= p->routing[1]->tokens);
	assert_int_equal(p->result->tokens_used, sum);
	protobuf_c_message_free_unpacked(&p->base, NULL);
	certa_client_events_free(&ev);
}

/* A switch to the other pool: the chains restart on its model from the prompt, the first
 * chain's tokens stay spent. */
static void
test_route_switch_pool(void **state)
{
	struct itest *it = *state;
	static const char policy[] = ROUTE_POLICY_HEAD
	    "rung.0 = r1-7b cot 1 0 0\n"
	    "rung.1 = qwen3-8b sc 3 0 0\n";
	Certa__V1__ProgramSpec spec = CERTA__V1__PROGRAM_SPEC__INIT;
	const struct trace *const *samples;
	struct certa_client_events ev;
	Certa__V1__Program *p;
	uint64_t sum = 0;
	size_t n = 0, i;

	HARNESS_NEED_TRACES(it);
	if (traces_find(it->tr->set, QWEN, it->tr->problem, &samples, &n) != 0 || n < 3)
		skip();
	start(it, "0", policy, NULL, NULL);
	spec.problem = (char *)it->tr->problem;
	memset(&ev, 0, sizeof ev);
	assert_int_equal(itest_run(it->ch, &spec, NULL, &ev), 0);
	assert_int_equal(ev.status, GRPC_STATUS_OK);
	assert_non_null(ev.finished);
	p = get(it, ev.id);
	assert_int_equal(p->n_routing, 2);
	check_route_event(p->routing[0], "route", 0, "r1-7b", R1,
	    CERTA__V1__ALGORITHM__ALGORITHM_COT, 1);
	check_route_event(p->routing[1], "switch", 1, "qwen3-8b", QWEN,
	    CERTA__V1__ALGORITHM__ALGORITHM_SC, 3);
	assert_non_null(strstr(p->routing[1]->reason, "switch rung 0 -> 1"));
	assert_string_equal(p->spec->model, QWEN);
	assert_int_equal(p->n_requests, 3);
	for (i = 0; i < p->n_requests; i++)
		sum += p->requests[i]->tokens;
	/* The R1 chain's tokens before the switch still count. */
	assert_int_equal(p->result->tokens_used, sum + p->routing[1]->tokens);
	assert_true(p->routing[1]->tokens > 0);
	protobuf_c_message_free_unpacked(&p->base, NULL);
	{
		/* certactl get --explain prints each decision and its reason. */
		char *out = explain(it, ev.id);
		if (strstr(out, "routing:\n") == NULL || strstr(out, "route  rung 0 r1-7b") == NULL ||
		    strstr(out, "switch rung 1 qwen3-8b (" QWEN ") sc n=3") == NULL ||
		    strstr(out, "switch rung 0 -> 1") == NULL)
			fail_msg("certactl get --explain printed:\n%s", out);
		free(out);
	}
	certa_client_events_free(&ev);
}

/* The tenant's no-escalation rule holds the program on its rung; a client's model hint
 * picks the pool. */
static void
test_route_tenant_rules_and_hints(void **state)
{
	struct itest *it = *state;
	static const char policy[] = ROUTE_POLICY_HEAD
	    "rung.0 = r1-7b cot 1 0 0\n"
	    "rung.1 = r1-7b sc 3 0 0\n";
	Certa__V1__ProgramSpec spec = CERTA__V1__PROGRAM_SPEC__INIT;
	const struct trace *const *samples;
	struct certa_client_events ev;
	Certa__V1__Program *p;
	size_t n = 0;

	HARNESS_NEED_TRACES(it);
	start(it, "0", policy, "default no-escalation", NULL);
	spec.problem = (char *)it->tr->problem;
	memset(&ev, 0, sizeof ev);
	assert_int_equal(itest_run(it->ch, &spec, NULL, &ev), 0);
	assert_non_null(ev.finished);
	p = get(it, ev.id);
	assert_int_equal(p->n_routing, 1);
	check_route_event(p->routing[0], "route", 0, "r1-7b", R1,
	    CERTA__V1__ALGORITHM__ALGORITHM_COT, 1);
	assert_int_equal(p->n_requests, 1);
	protobuf_c_message_free_unpacked(&p->base, NULL);
	certa_client_events_free(&ev);

	/* A retry with the program's idempotency key gets the routed program (its model was
	 * the router's, not the spec's). */
	{
		char first[64];
		spec.idempotency_key = (char *)"route-k1";
		memset(&ev, 0, sizeof ev);
		assert_int_equal(itest_run(it->ch, &spec, NULL, &ev), 0);
		assert_int_equal(ev.status, GRPC_STATUS_OK);
		snprintf(first, sizeof first, "%s", ev.id);
		certa_client_events_free(&ev);
		memset(&ev, 0, sizeof ev);
		assert_int_equal(itest_run(it->ch, &spec, NULL, &ev), 0);
		if (ev.status != GRPC_STATUS_OK)
			fail_msg("retry: status %d: %s", (int)ev.status, ev.details);
		assert_string_equal(ev.id, first);
		certa_client_events_free(&ev);
		spec.idempotency_key = (char *)"";
	}

	if (traces_find(it->tr->set, QWEN, it->tr->problem, &samples, &n) != 0 || n < 1)
		return;
	spec.model = (char *)QWEN;
	memset(&ev, 0, sizeof ev);
	assert_int_equal(itest_run(it->ch, &spec, NULL, &ev), 0);
	assert_non_null(ev.finished);
	p = get(it, ev.id);
	assert_int_equal(p->n_routing, 1);
	check_route_event(p->routing[0], "route", 0, "qwen3-8b", QWEN,
	    CERTA__V1__ALGORITHM__ALGORITHM_COT, 1);
	assert_non_null(strstr(p->routing[0]->reason, "pool from hint"));
	protobuf_c_message_free_unpacked(&p->base, NULL);
	certa_client_events_free(&ev);
}

/* Submits the picked problem and reads its stream to the end; returns the stored program. */
static Certa__V1__Program *
run_routed(struct itest *it)
{
	Certa__V1__ProgramSpec spec = CERTA__V1__PROGRAM_SPEC__INIT;
	struct certa_client_events ev;
	Certa__V1__Program *p;

	spec.problem = (char *)it->tr->problem;
	memset(&ev, 0, sizeof ev);
	assert_int_equal(itest_run(it->ch, &spec, NULL, &ev), 0);
	assert_int_equal(ev.status, GRPC_STATUS_OK);
	assert_non_null(ev.finished);
	p = get(it, ev.id);
	certa_client_events_free(&ev);
	return p;
}

/* The tenant's chain quota bounds the router: with quota.max_sc_n = 1 the sc rung is skipped
 * and the program escalates by switching to the next cot rung instead of forking. */
static void
test_route_tenant_quota(void **state)
{
	struct itest *it = *state;
	static const char policy[] = ROUTE_POLICY_HEAD
	    "rung.0 = r1-7b cot 1 0 0\n"
	    "rung.1 = r1-7b sc 3 0 0\n"
	    "rung.2 = qwen3-8b cot 1 0 0\n";
	const struct trace *const *samples;
	Certa__V1__Program *p;
	size_t n = 0;

	HARNESS_NEED_TRACES(it);
	if (traces_find(it->tr->set, QWEN, it->tr->problem, &samples, &n) != 0 || n < 1)
		skip();
	start(it, "0", policy, NULL, "quota.max_sc_n=1");
	p = run_routed(it);
	assert_int_equal(p->n_routing, 2);
	check_route_event(p->routing[0], "route", 0, "r1-7b", R1,
	    CERTA__V1__ALGORITHM__ALGORITHM_COT, 1);
	check_route_event(p->routing[1], "switch", 2, "qwen3-8b", QWEN,
	    CERTA__V1__ALGORITHM__ALGORITHM_COT, 1);
	assert_non_null(strstr(p->routing[1]->reason, "switch rung 0 -> 2"));
	assert_int_equal(p->n_requests, 1);
	protobuf_c_message_free_unpacked(&p->base, NULL);
}

/* The history index: a finished program that escalated makes the next program of the same
 * problem start on the hard rung; after a restart the index is rebuilt from LMDB. */
static void
test_route_history_hard_start(void **state)
{
	struct itest *it = *state;
	static const char policy[] = ROUTE_POLICY_HEAD
	    "rung.0 = r1-7b cot 1 0 0\n"
	    "rung.1 = r1-7b sc 3 0 0\n"
	    "knn.min_weight = 0.1\n"
	    "hard.threshold = 0.5\n"
	    "hard.rung = 1\n";
	Certa__V1__Program *p;

	HARNESS_NEED_TRACES(it);
	if (it->tr->nsamples < 3)
		skip();
	start(it, "0", policy, NULL, NULL);
	p = run_routed(it);
	assert_int_equal(p->n_routing, 2);   /* no history: rung 0, then the fork */
	assert_non_null(strstr(p->routing[0]->reason, "no similar history"));
	assert_string_equal(p->routing[1]->action, "fork");
	protobuf_c_message_free_unpacked(&p->base, NULL);

	p = run_routed(it);
	assert_int_equal(p->n_routing, 1);
	check_route_event(p->routing[0], "route", 1, "r1-7b", R1,
	    CERTA__V1__ALGORITHM__ALGORITHM_SC, 3);
	assert_non_null(strstr(p->routing[0]->reason, "neighbours were hard (1 neighbours"));
	protobuf_c_message_free_unpacked(&p->base, NULL);

	itest_stop(it);
	start(it, "0", policy, NULL, NULL);
	p = run_routed(it);
	assert_int_equal(p->routing[0]->rung, 1);
	assert_non_null(strstr(p->routing[0]->reason, "neighbours were hard (2 neighbours"));
	protobuf_c_message_free_unpacked(&p->base, NULL);
}

/* Routing off (no [route] options): no routing decisions, the program as submitted. */
static void
test_route_off_by_default(void **state)
{
	struct itest *it = *state;
	Certa__V1__ProgramSpec spec = CERTA__V1__PROGRAM_SPEC__INIT;
	struct certa_client_events ev;
	Certa__V1__Program *p;

	HARNESS_NEED_TRACES(it);
	itest_start(it, "0", ITEST_ANONYMOUS, NULL);
	spec.problem = (char *)it->tr->problem;
	memset(&ev, 0, sizeof ev);
	assert_int_equal(itest_run(it->ch, &spec, NULL, &ev), 0);
	assert_non_null(ev.finished);
	p = get(it, ev.id);
	assert_int_equal(p->n_routing, 0);
	assert_string_equal(p->spec->model, "");
	protobuf_c_message_free_unpacked(&p->base, NULL);
	certa_client_events_free(&ev);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_route_fork_survives_restart, setup,
		    itest_teardown),
		cmocka_unit_test_setup_teardown(test_route_switch_pool, setup, itest_teardown),
		cmocka_unit_test_setup_teardown(test_route_tenant_rules_and_hints, setup,
		    itest_teardown),
		cmocka_unit_test_setup_teardown(test_route_tenant_quota, setup, itest_teardown),
		cmocka_unit_test_setup_teardown(test_route_history_hard_start, setup,
		    itest_teardown),
		cmocka_unit_test_setup_teardown(test_route_off_by_default, setup, itest_teardown),
	};

	int rc;

	grpc_init();
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	grpc_shutdown();
	return rc;
}
