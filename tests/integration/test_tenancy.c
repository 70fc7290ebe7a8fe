/*
 * test_tenancy.c — multi-tenancy end to end: API key lifecycle, isolation, quotas, policies
 * (validation, versioning, live application) and Admin credentials, against the real certad
 * and a real replay worker.
 */
#include <errno.h>
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

#include "certa/v1/admin.pb-c.h"
#include "certa/v1/reasoning.pb-c.h"
#include "lib/rpc_client.h"
#include "lib/traces.h"
#include "tests/support/certa_client.h"
#include "tests/support/harness.h"
#include "tests/support/itest.h"

/* A worker (steps of delay ms) and certad with the admin socket and token file. */
#define START_FLAGS (ITEST_ADMIN | ITEST_ADMIN_TOKEN_FILE | ITEST_SETTLE)

static int
setup(void **state)
{
	*state = itest_new(sizeof(struct itest), 120, ITEST_TRACES_PICK);
	return 0;
}

/* Creates a tenant over the admin socket; writes its key. */
static void
create_tenant(struct itest *e, const char *name, uint32_t weight, const Certa__V1__Quota *q,
    char *key, size_t keylen)
{
	Certa__V1__CreateTenantRequest req = CERTA__V1__CREATE_TENANT_REQUEST__INIT;
	Certa__V1__Tenant t = CERTA__V1__TENANT__INIT;
	Certa__V1__CreateTenantReply *r = NULL;
	char msg[512];

	t.name = (char *)name;
	t.weight = weight;
	t.quota = (Certa__V1__Quota *)q;
	req.tenant = &t;
	assert_int_equal(itest_call(e->adm, "/certa.v1.Admin/CreateTenant", &req.base,
	    &certa__v1__create_tenant_reply__descriptor, NULL, (ProtobufCMessage **)&r, msg,
	    sizeof msg), GRPC_STATUS_OK);
	assert_true(strncmp(r->api_key, "certa_", 6) == 0);
	assert_string_equal(r->tenant->name, name);
	assert_int_equal(r->tenant->n_keys, 1);
	/* The key starts with its public id; listings show only the id. */
	assert_int_equal(strncmp(r->api_key + 6, r->tenant->keys[0]->key_id,
	    strlen(r->tenant->keys[0]->key_id)), 0);
	snprintf(key, keylen, "%s", r->api_key);
	protobuf_c_message_free_unpacked(&r->base, NULL);
}

/* Submits a program and reads the stream to its end; returns the final status. */
static grpc_status_code
run_program(struct itest *e, const char *key, const char *problem, uint32_t n, uint64_t budget,
    char *id, size_t idlen, char *details, size_t dlen)
{
	Certa__V1__ProgramSpec spec = CERTA__V1__PROGRAM_SPEC__INIT;
	struct certa_client_events ev;
	grpc_status_code st;

	spec.problem = (char *)problem;
	spec.n = n;
	spec.algorithm = n > 1 ? CERTA__V1__ALGORITHM__ALGORITHM_SC :
	    CERTA__V1__ALGORITHM__ALGORITHM_COT;
	spec.token_budget = budget;
	itest_run(e->ch, &spec, key, &ev);
	if (id != NULL)
		snprintf(id, idlen, "%s", ev.id);
	if (details != NULL)
		snprintf(details, dlen, "%s", ev.details);
	st = ev.status;
	certa_client_events_free(&ev);
	return st;
}

/* Create, use, rotate, revoke: old keys stop working at once. */
static void
test_key_lifecycle(void **state)
{
	struct itest *e = *state;
	Certa__V1__RotateKeyRequest rk = CERTA__V1__ROTATE_KEY_REQUEST__INIT;
	Certa__V1__RotateKeyReply *rr = NULL;
	Certa__V1__RevokeKeyRequest rv = CERTA__V1__REVOKE_KEY_REQUEST__INIT;
	char key[128], key2[128], details[512], id[64];

	HARNESS_NEED_TRACES(e);
	itest_start(e, "0", START_FLAGS, NULL);
	create_tenant(e, "acme", 1, NULL, key, sizeof key);
	assert_int_equal(run_program(e, key, e->tr->problem, 1, 0, id, sizeof id, details,
	    sizeof details), GRPC_STATUS_OK);
	assert_true(id[0] != '\0');
	/* No key, a made-up key: refused before the body is read. */
	assert_int_equal(run_program(e, NULL, e->tr->problem, 1, 0, NULL, 0, details,
	    sizeof details), GRPC_STATUS_UNAUTHENTICATED);
	assert_non_null(strstr(details, "authorization"));
	assert_int_equal(run_program(e, "certa_00000000_nope", e->tr->problem, 1, 0, NULL, 0,
	    details, sizeof details), GRPC_STATUS_UNAUTHENTICATED);

	rk.tenant = (char *)"acme";
	rk.revoke_others = 1;
	assert_int_equal(itest_call(e->adm, "/certa.v1.Admin/RotateKey", &rk.base,
	    &certa__v1__rotate_key_reply__descriptor, NULL, (ProtobufCMessage **)&rr, NULL, 0),
	    GRPC_STATUS_OK);
	snprintf(key2, sizeof key2, "%s", rr->api_key);
	assert_string_not_equal(key, key2);
	assert_int_equal(run_program(e, key, e->tr->problem, 1, 0, NULL, 0, details,
	    sizeof details), GRPC_STATUS_UNAUTHENTICATED);
	assert_int_equal(run_program(e, key2, e->tr->problem, 1, 0, NULL, 0, details,
	    sizeof details), GRPC_STATUS_OK);

	rv.tenant = (char *)"acme";
	rv.key_id = rr->info->key_id;
	assert_int_equal(itest_call(e->adm, "/certa.v1.Admin/RevokeKey", &rv.base,
	    &certa__v1__revoke_key_reply__descriptor, NULL, NULL, NULL, 0), GRPC_STATUS_OK);
	assert_int_equal(run_program(e, key2, e->tr->problem, 1, 0, NULL, 0, details,
	    sizeof details), GRPC_STATUS_UNAUTHENTICATED);
	protobuf_c_message_free_unpacked(&rr->base, NULL);

	/* Keys survive a restart (only hashes are stored). */
	{
		Certa__V1__RotateKeyReply *r3 = NULL;
		char key3[128];
		assert_int_equal(itest_call(e->adm, "/certa.v1.Admin/RotateKey", &rk.base,
		    &certa__v1__rotate_key_reply__descriptor, NULL, (ProtobufCMessage **)&r3,
		    NULL, 0), GRPC_STATUS_OK);
		snprintf(key3, sizeof key3, "%s", r3->api_key);
		protobuf_c_message_free_unpacked(&r3->base, NULL);
		itest_stop(e);
		itest_start(e, "0", START_FLAGS, NULL);
		assert_int_equal(run_program(e, key3, e->tr->problem, 1, 0, NULL, 0, details,
		    sizeof details), GRPC_STATUS_OK);
		assert_int_equal(run_program(e, key2, e->tr->problem, 1, 0, NULL, 0, details,
		    sizeof details), GRPC_STATUS_UNAUTHENTICATED);
	}
}

/* Tenant B can neither see nor cancel tenant A's program. */
static void
test_isolation(void **state)
{
	struct itest *e = *state;
	char ka[128], kb[128], id[64], msg[512];
	Certa__V1__GetRequest g = CERTA__V1__GET_REQUEST__INIT;
	Certa__V1__CancelRequest c = CERTA__V1__CANCEL_REQUEST__INIT;
	Certa__V1__ListRequest l = CERTA__V1__LIST_REQUEST__INIT;
	Certa__V1__ListReply *lr = NULL;

	HARNESS_NEED_TRACES(e);
	itest_start(e, "0", START_FLAGS, NULL);
	create_tenant(e, "alpha", 1, NULL, ka, sizeof ka);
	create_tenant(e, "beta", 1, NULL, kb, sizeof kb);
	assert_int_equal(run_program(e, ka, e->tr->problem, 1, 0, id, sizeof id, NULL, 0),
	    GRPC_STATUS_OK);
	g.program_id = id;
	c.program_id = id;
	assert_int_equal(itest_call(e->ch, "/certa.v1.Reasoning/Get", &g.base,
	    &certa__v1__program__descriptor, ka, NULL, NULL, 0), GRPC_STATUS_OK);
	assert_int_equal(itest_call(e->ch, "/certa.v1.Reasoning/Get", &g.base,
	    &certa__v1__program__descriptor, kb, NULL, msg, sizeof msg), GRPC_STATUS_NOT_FOUND);
	assert_int_equal(itest_call(e->ch, "/certa.v1.Reasoning/Cancel", &c.base,
	    &certa__v1__cancel_reply__descriptor, kb, NULL, NULL, 0), GRPC_STATUS_NOT_FOUND);
	assert_int_equal(itest_call(e->ch, "/certa.v1.Reasoning/List", &l.base,
	    &certa__v1__list_reply__descriptor, kb, (ProtobufCMessage **)&lr, NULL, 0),
	    GRPC_STATUS_OK);
	assert_int_equal(lr->n_programs, 0);
	protobuf_c_message_free_unpacked(&lr->base, NULL);
	assert_int_equal(itest_call(e->ch, "/certa.v1.Reasoning/List", &l.base,
	    &certa__v1__list_reply__descriptor, ka, (ProtobufCMessage **)&lr, NULL, 0),
	    GRPC_STATUS_OK);
	assert_int_equal(lr->n_programs, 1);
	assert_string_equal(lr->programs[0]->id, id);
	assert_string_equal(lr->programs[0]->tenant, "alpha");
	protobuf_c_message_free_unpacked(&lr->base, NULL);
}

/* Each quota returns RESOURCE_EXHAUSTED naming the limit; other work continues. */
static void
test_quotas(void **state)
{
	struct itest *e = *state;
	Certa__V1__Quota q = CERTA__V1__QUOTA__INIT;
	char key[128], msg[512], big[3000];
	Certa__V1__ProgramSpec spec = CERTA__V1__PROGRAM_SPEC__INIT;
	struct certa_client_events rev;
	struct rpc_stream *running;
	Certa__V1__ProgramEvent *ev;

	HARNESS_NEED_TRACES(e);
	itest_start(e, "20", START_FLAGS, NULL);
	q.max_concurrent_programs = 1;
	q.max_sc_n = 2;
	q.max_budget_per_program = 20000;
	q.max_prompt_bytes = 2048;
	create_tenant(e, "small", 1, &q, key, sizeof key);

	assert_int_equal(run_program(e, key, e->tr->problem, 3, 0, NULL, 0, msg, sizeof msg),
	    GRPC_STATUS_RESOURCE_EXHAUSTED);
	assert_non_null(strstr(msg, "max_sc_n"));
	assert_int_equal(run_program(e, key, e->tr->problem, 1, 50000, NULL, 0, msg, sizeof msg),
	    GRPC_STATUS_RESOURCE_EXHAUSTED);
	assert_non_null(strstr(msg, "max_budget_per_program"));
	memset(big, 'y', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	assert_int_equal(run_program(e, key, big, 1, 0, NULL, 0, msg, sizeof msg),
	    GRPC_STATUS_RESOURCE_EXHAUSTED);
	assert_non_null(strstr(msg, "max_prompt_bytes"));

	/* One program runs; a second is over max_concurrent_programs; the first still finishes. */
	spec.problem = (char *)e->tr->problem;
	assert_int_equal(certa_client_submit(e->ch, &spec, key, 60000, &running), 0);
	assert_int_equal(rpc_sync_stream_next(running, 10000, (ProtobufCMessage **)&ev), 1);
	assert_int_equal(ev->event_case, CERTA__V1__PROGRAM_EVENT__EVENT_ACCEPTED);
	protobuf_c_message_free_unpacked(&ev->base, NULL);
	assert_int_equal(run_program(e, key, e->tr->problem, 1, 0, NULL, 0, msg, sizeof msg),
	    GRPC_STATUS_RESOURCE_EXHAUSTED);
	assert_non_null(strstr(msg, "max_concurrent_programs"));
	assert_non_null(strstr(msg, "retry"));
	memset(&rev, 0, sizeof rev);
	certa_client_events_read(running, 30000, 0, &rev);
	assert_int_equal(rev.status, GRPC_STATUS_OK);
	assert_true(rev.finished != NULL);  /* a Finished event came */
	certa_client_events_free(&rev);
	/* Capacity is back. */
	assert_int_equal(run_program(e, key, e->tr->problem, 1, 0, NULL, 0, msg, sizeof msg),
	    GRPC_STATUS_OK);
}

/* tokens_per_minute: a tenant that spent its minute is refused with a retry time. */
static void
test_tokens_per_minute(void **state)
{
	struct itest *e = *state;
	Certa__V1__Quota q = CERTA__V1__QUOTA__INIT;
	Certa__V1__ProgramSpec spec = CERTA__V1__PROGRAM_SPEC__INIT;
	struct certa_client_events ev;
	struct rpc_stream *s;
	char key[128], other[128], msg[512];

	HARNESS_NEED_TRACES(e);
	itest_start(e, "0", START_FLAGS, NULL);
	q.tokens_per_minute = 100;
	create_tenant(e, "meter", 1, &q, key, sizeof key);
	create_tenant(e, "other", 1, NULL, other, sizeof other);
	/* Admitted with nothing served yet; two steps of 64 tokens use up the minute. */
	spec.problem = (char *)e->tr->problem;
	spec.n = 1;
	spec.algorithm = CERTA__V1__ALGORITHM__ALGORITHM_COT;
	assert_int_equal(certa_client_submit(e->ch, &spec, key, 60000, &s), 0);
	memset(&ev, 0, sizeof ev);
	assert_int_equal(certa_client_events_read(s, 10000, 2, &ev), 1);
	assert_int_equal(run_program(e, key, e->tr->problem, 1, 0, NULL, 0, msg, sizeof msg),
	    GRPC_STATUS_RESOURCE_EXHAUSTED);
	assert_non_null(strstr(msg, "tokens_per_minute"));
	assert_non_null(strstr(msg, "retry in"));
	/* The running program is held back at dispatch (no step, no failure)... */
	certa_client_events_read(s, 1500, 3, &ev);
	assert_int_equal(ev.progress, 2);
	assert_null(ev.finished);
	certa_client_events_free(&ev);
	/* ... and another tenant is not affected. */
	assert_int_equal(run_program(e, other, e->tr->problem, 1, 0, NULL, 0, msg, sizeof msg),
	    GRPC_STATUS_OK);
}

/* Served tokens (decode + probe) of a tenant, from /metrics. */
static double
served(int mport, const char *tenant)
{
	char series[200];
	double d, p;

	snprintf(series, sizeof series, "certa_tokens_generated_total{tenant=\"%s\"}", tenant);
	d = harness_metric(mport, series);
	snprintf(series, sizeof series, "certa_probe_tokens_total{tenant=\"%s\"}", tenant);
	p = harness_metric(mport, series);
	return (d > 0 ? d : 0) + (p > 0 ? p : 0);
}

/* metrics.per_tenant = false: the tenant-labelled families carry one series for all
 * tenants (tenant="_all", the sum of theirs) and none per tenant. */
static void
test_metrics_all_tenants(void **state)
{
	struct itest *e = *state;
	char k1[128], k2[128], msg[512], mpf[700], mset[720];
	const char *sets[] = { mset, "metrics.per_tenant=false", NULL };
	int mport;

	HARNESS_NEED_TRACES(e);
	snprintf(mpf, sizeof mpf, "%s/m.port", e->dir);
	snprintf(mset, sizeof mset, "metrics.port_file=%s", mpf);
	itest_start(e, "0", START_FLAGS, sets);
	assert_int_equal(harness_wait_port_file(mpf, 20000, &mport), 0);
	create_tenant(e, "alpha", 1, NULL, k1, sizeof k1);
	create_tenant(e, "beta", 1, NULL, k2, sizeof k2);
	assert_int_equal(run_program(e, k1, e->tr->problem, 1, 0, NULL, 0, msg, sizeof msg),
	    GRPC_STATUS_OK);
	assert_int_equal(run_program(e, k2, e->tr->problem, 1, 0, NULL, 0, msg, sizeof msg),
	    GRPC_STATUS_OK);
	assert_true(harness_metric(mport,
	    "certa_programs_submitted_total{tenant=\"_all\"}") == 2);
	assert_true(served(mport, "_all") > 0);
	assert_true(harness_metric(mport, "certa_programs{tenant=\"_all\",state=\"queued\"}")
	    == 0);
	assert_true(harness_metric(mport, "certa_programs_submitted_total{tenant=\"alpha\"}") <
	    0);
	assert_true(harness_metric(mport, "certa_programs_submitted_total{tenant=\"beta\"}") <
	    0);
	assert_true(served(mport, "alpha") == 0 && served(mport, "beta") == 0);
}

#define FLOOD_PROGRAMS 8
#define FLOOD_TPM 3000
#ifndef FLOOD_WINDOW_S
#define FLOOD_WINDOW_S 10          /* -DFLOOD_WINDOW_S=60 to measure a whole minute */
#endif

/* tokens_per_minute holds at dispatch, not only at admission: a tenant flooding with
 * programs admitted while its minute was fresh is served at most its limit in a window
 * shorter than a minute, plus one step per chain in flight; it is throttled (counted in
 * certa_tenant_throttled_seconds_total), not failed; another tenant runs normally. */
static void
test_tokens_per_minute_enforced_at_dispatch(void **state)
{
	struct itest *e = *state;
	Certa__V1__Quota q = CERTA__V1__QUOTA__INIT;
	Certa__V1__ProgramSpec spec = CERTA__V1__PROGRAM_SPEC__INIT;
	struct rpc_stream *s[FLOOD_PROGRAMS];
	char key[128], other[128], msg[512], mpf[700], mset[720], *log = NULL;
	const char *sets[] = { mset, NULL };
	double t0, t1, got, throttled, tolerance;
	int i, mport;

	HARNESS_NEED_TRACES(e);
	snprintf(mpf, sizeof mpf, "%s/m.port", e->dir);
	snprintf(mset, sizeof mset, "metrics.port_file=%s", mpf);
	itest_start(e, "0", START_FLAGS, sets);
	assert_int_equal(harness_wait_port_file(mpf, 20000, &mport), 0);
	q.tokens_per_minute = FLOOD_TPM;
	create_tenant(e, "flood", 1, &q, key, sizeof key);
	create_tenant(e, "other", 1, NULL, other, sizeof other);
	spec.problem = (char *)e->tr->problem;
	spec.n = 1;
	spec.algorithm = CERTA__V1__ALGORITHM__ALGORITHM_COT;
	t0 = harness_clock_us();
	for (i = 0; i < FLOOD_PROGRAMS; i++)
		assert_int_equal(certa_client_submit(e->ch, &spec, key, 60000, &s[i]), 0);
	/* Another tenant meanwhile: unaffected. */
	assert_int_equal(run_program(e, other, e->tr->problem, 1, 0, NULL, 0, msg, sizeof msg),
	    GRPC_STATUS_OK);
	t1 = t0 + FLOOD_WINDOW_S * 1e6;
	while (harness_clock_us() < t1)
		usleep(100000);
	got = served(mport, "flood");
	/* One step per chain in flight: the default policy's first steps are 64 tokens, plus a
	 * probe's few tokens. */
	tolerance = FLOOD_PROGRAMS * (64 + 64);
	print_message("flood tenant: %.0f tokens served in %d s under tokens_per_minute=%d\n",
	    got, FLOOD_WINDOW_S, FLOOD_TPM);
	assert_true(got > 0);
	if (got > FLOOD_TPM + tolerance)
		fail_msg("flood tenant served %.0f tokens in %d s, limit %d/min (+%.0f)", got,
		    FLOOD_WINDOW_S, FLOOD_TPM, tolerance);
	throttled = harness_metric(mport, "certa_tenant_throttled_seconds_total{tenant=\"flood\"}");
	assert_true(throttled > 0);
	assert_true(harness_metric(mport,
	    "certa_tenant_throttled_seconds_total{tenant=\"other\"}") == 0);
	assert_int_equal(harness_read_file(harness_log_path(e->d), &log), 0);
	assert_non_null(strstr(log, "tenant flood throttled"));
	free(log);
	/* Throttled, not failed. */
	assert_true(harness_metric(mport,
	    "certa_programs_finished_total{tenant=\"flood\",reason=\"failed\"}") < 1);
	for (i = 0; i < FLOOD_PROGRAMS; i++) {
		char *d = NULL;
		rpc_sync_stream_cancel(s[i]);
		(void)rpc_sync_stream_close(s[i], &d);
		free(d);
	}
}

static uint32_t
policy_version(struct itest *e, const char *tenant, char *text, size_t len)
{
	Certa__V1__PolicyRef r = CERTA__V1__POLICY_REF__INIT;
	Certa__V1__Policy *p = NULL;
	uint32_t v;

	r.tenant = (char *)tenant;
	assert_int_equal(itest_call(e->adm, "/certa.v1.Admin/GetPolicy", &r.base,
	    &certa__v1__policy__descriptor, NULL, (ProtobufCMessage **)&p, NULL, 0),
	    GRPC_STATUS_OK);
	v = p->version;
	if (text != NULL)
		snprintf(text, len, "%s", p->text);
	protobuf_c_message_free_unpacked(&p->base, NULL);
	return v;
}

static grpc_status_code
set_policy(struct itest *e, const char *tenant, const char *text, const char *bearer,
    struct rpc_channel *ch, char *msg, size_t len)
{
	Certa__V1__SetPolicyRequest r = CERTA__V1__SET_POLICY_REQUEST__INIT;
	Certa__V1__Policy p = CERTA__V1__POLICY__INIT;

	r.tenant = (char *)tenant;
	p.text = (char *)text;
	r.policy = &p;
	return itest_call(ch != NULL ? ch : e->adm, "/certa.v1.Admin/SetPolicy", &r.base,
	    &certa__v1__policy__descriptor, bearer, NULL, msg, len);
}

/* A bad value is refused naming the field, and nothing changes; good ones are versioned. */
static void
test_policy_validation_and_history(void **state)
{
	struct itest *e = *state;
	char key[128], msg[512], before[8192], after[8192];
	Certa__V1__PolicyRef r = CERTA__V1__POLICY_REF__INIT;
	Certa__V1__PolicyHistoryReply *h = NULL;
	Certa__V1__RollbackPolicyRequest rb = CERTA__V1__ROLLBACK_POLICY_REQUEST__INIT;
	uint32_t v0;

	HARNESS_NEED_TRACES(e);
	itest_start(e, "0", START_FLAGS, NULL);
	create_tenant(e, "tuned", 1, NULL, key, sizeof key);
	v0 = policy_version(e, "tuned", before, sizeof before);
	assert_int_equal(set_policy(e, "tuned", "step_tokens = 0\n", NULL, NULL, msg, sizeof msg),
	    GRPC_STATUS_INVALID_ARGUMENT);
	assert_non_null(strstr(msg, "step_tokens"));
	assert_int_equal(set_policy(e, "tuned", "cot.threshold = banana\n", NULL, NULL, msg,
	    sizeof msg), GRPC_STATUS_INVALID_ARGUMENT);
	assert_non_null(strstr(msg, "cot.threshold"));
	assert_int_equal(set_policy(e, "tuned", "no_such_key = 1\n", NULL, NULL, msg, sizeof msg),
	    GRPC_STATUS_INVALID_ARGUMENT);
	assert_non_null(strstr(msg, "no_such_key"));
	assert_int_equal(policy_version(e, "tuned", after, sizeof after), v0);
	assert_string_equal(before, after);
	assert_int_equal(set_policy(e, "nobody", "step_tokens = 64\n", NULL, NULL, msg, sizeof msg),
	    GRPC_STATUS_NOT_FOUND);

	assert_int_equal(set_policy(e, "tuned", "step_tokens = 128\n", NULL, NULL, msg, sizeof msg),
	    GRPC_STATUS_OK);
	assert_int_equal(set_policy(e, "tuned", "step_tokens = 192\n", NULL, NULL, msg, sizeof msg),
	    GRPC_STATUS_OK);
	assert_int_equal(policy_version(e, "tuned", after, sizeof after), 2);
	assert_non_null(strstr(after, "step_tokens = 192"));
	r.tenant = (char *)"tuned";
	assert_int_equal(itest_call(e->adm, "/certa.v1.Admin/PolicyHistory", &r.base,
	    &certa__v1__policy_history_reply__descriptor, NULL, (ProtobufCMessage **)&h, NULL, 0),
	    GRPC_STATUS_OK);
	assert_int_equal(h->n_entries, 2);
	assert_string_equal(h->entries[1]->who, "admin:local");
	assert_non_null(strstr(h->entries[1]->old_policy->text, "step_tokens = 128"));
	assert_non_null(strstr(h->entries[1]->new_policy->text, "step_tokens = 192"));
	protobuf_c_message_free_unpacked(&h->base, NULL);
	rb.tenant = (char *)"tuned";
	rb.version = 1;
	assert_int_equal(itest_call(e->adm, "/certa.v1.Admin/RollbackPolicy", &rb.base,
	    &certa__v1__policy__descriptor, NULL, NULL, NULL, 0), GRPC_STATUS_OK);
	assert_int_equal(policy_version(e, "tuned", after, sizeof after), 3);
	assert_non_null(strstr(after, "step_tokens = 128"));
	rb.version = 99;
	assert_int_equal(itest_call(e->adm, "/certa.v1.Admin/RollbackPolicy", &rb.base,
	    &certa__v1__policy__descriptor, NULL, NULL, NULL, 0), GRPC_STATUS_NOT_FOUND);
}

/* A policy change applies from the next step of a running program. */
static void
test_policy_applies_next_step(void **state)
{
	struct itest *e = *state;
	char key[128], msg[512];
	Certa__V1__ProgramSpec spec = CERTA__V1__PROGRAM_SPEC__INIT;
	struct rpc_stream *s;
	Certa__V1__ProgramEvent *ev;
	uint64_t last = 0, sizes[400];
	int n = 0, changed_at = -1, i;

	HARNESS_NEED_TRACES(e);
	itest_start(e, "150", START_FLAGS, NULL);  /* long steps: SetPolicy lands well inside one */
	create_tenant(e, "live", 1, NULL, key, sizeof key);
	assert_int_equal(set_policy(e, "live", "step_tokens = 64\nprobe_stride = 0\n"
	    "max_step_tokens = 4096\ncot.threshold = 2\nunpromising_tokens = 0\n", NULL, NULL,
	    msg, sizeof msg), GRPC_STATUS_OK);
	spec.problem = (char *)e->tr->problem;
	assert_int_equal(certa_client_submit(e->ch, &spec, key, 60000, &s), 0);
	while (rpc_sync_stream_next(s, 30000, (ProtobufCMessage **)&ev) == 1) {
		if (ev->event_case == CERTA__V1__PROGRAM_EVENT__EVENT_PROGRESS && n < 400) {
			sizes[n++] = ev->progress->tokens_used - last;
			last = ev->progress->tokens_used;
			if (n == 3) {
				assert_int_equal(set_policy(e, "live", "step_tokens = 256\n", NULL,
				    NULL, msg, sizeof msg), GRPC_STATUS_OK);
				changed_at = n;
			}
		}
		protobuf_c_message_free_unpacked(&ev->base, NULL);
	}
	assert_int_equal(rpc_sync_stream_close(s, NULL), GRPC_STATUS_OK);
	assert_true(changed_at > 0 && n > changed_at + 2);
	for (i = 0; i < changed_at; i++)
		assert_int_equal(sizes[i], 64);
	/* At most the step already in flight still has the old size. */
	for (i = changed_at + 1; i < n - 1; i++)
		assert_int_equal(sizes[i], 256);
}

/* Admin needs an admin credential: none -> UNAUTHENTICATED, tenant key -> PERMISSION_DENIED. */
static void
test_admin_credentials(void **state)
{
	struct itest *e = *state;
	Certa__V1__ListTenantsRequest lt = CERTA__V1__LIST_TENANTS_REQUEST__INIT;
	Certa__V1__AddWorkerRequest aw = CERTA__V1__ADD_WORKER_REQUEST__INIT;
	Certa__V1__WorkerRef wr = CERTA__V1__WORKER_REF__INIT;
	Certa__V1__ListTenantsReply *r = NULL;
	char key[128], msg[512];

	HARNESS_NEED_TRACES(e);
	itest_start(e, "0", START_FLAGS, NULL);
	create_tenant(e, "user", 1, NULL, key, sizeof key);
	assert_int_equal(itest_call(e->ch, "/certa.v1.Admin/ListTenants", &lt.base,
	    &certa__v1__list_tenants_reply__descriptor, NULL, NULL, msg, sizeof msg),
	    GRPC_STATUS_UNAUTHENTICATED);
	assert_non_null(strstr(msg, "admin credential"));
	assert_int_equal(itest_call(e->ch, "/certa.v1.Admin/ListTenants", &lt.base,
	    &certa__v1__list_tenants_reply__descriptor, key, NULL, msg, sizeof msg),
	    GRPC_STATUS_PERMISSION_DENIED);
	assert_int_equal(itest_call(e->ch, "/certa.v1.Admin/ListTenants", &lt.base,
	    &certa__v1__list_tenants_reply__descriptor, "wrong-token-wrong-token", NULL, msg,
	    sizeof msg), GRPC_STATUS_UNAUTHENTICATED);
	assert_int_equal(itest_call(e->ch, "/certa.v1.Admin/ListTenants", &lt.base,
	    &certa__v1__list_tenants_reply__descriptor, ITEST_ADMIN_TOKEN, (ProtobufCMessage **)&r,
	    msg, sizeof msg), GRPC_STATUS_OK);
	assert_int_equal(r->n_tenants, 1);
	assert_string_equal(r->tenants[0]->name, "user");
	protobuf_c_message_free_unpacked(&r->base, NULL);
	/* Bad worker input: clear statuses. */
	aw.address = (char *)"not an address";
	assert_int_equal(itest_call(e->adm, "/certa.v1.Admin/AddWorker", &aw.base,
	    &certa__v1__worker_status__descriptor, NULL, NULL, msg, sizeof msg),
	    GRPC_STATUS_INVALID_ARGUMENT);
	wr.address = (char *)"127.0.0.1:1";
	assert_int_equal(itest_call(e->adm, "/certa.v1.Admin/RemoveWorker", &wr.base,
	    &certa__v1__remove_worker_reply__descriptor, NULL, NULL, msg, sizeof msg),
	    GRPC_STATUS_NOT_FOUND);
	assert_non_null(strstr(msg, "unknown worker"));
	/* Bad tenant input. */
	{
		Certa__V1__CreateTenantRequest ct = CERTA__V1__CREATE_TENANT_REQUEST__INIT;
		Certa__V1__Tenant t = CERTA__V1__TENANT__INIT;
		t.name = (char *)"Bad Name!";
		ct.tenant = &t;
		assert_int_equal(itest_call(e->adm, "/certa.v1.Admin/CreateTenant", &ct.base,
		    &certa__v1__create_tenant_reply__descriptor, NULL, NULL, msg, sizeof msg),
		    GRPC_STATUS_INVALID_ARGUMENT);
		t.name = (char *)"user";
		assert_int_equal(itest_call(e->adm, "/certa.v1.Admin/CreateTenant", &ct.base,
		    &certa__v1__create_tenant_reply__descriptor, NULL, NULL, msg, sizeof msg),
		    GRPC_STATUS_ALREADY_EXISTS);
		t.name = (char *)"heavy";
		t.weight = 100000;
		assert_int_equal(itest_call(e->adm, "/certa.v1.Admin/CreateTenant", &ct.base,
		    &certa__v1__create_tenant_reply__descriptor, NULL, NULL, msg, sizeof msg),
		    GRPC_STATUS_INVALID_ARGUMENT);
		assert_non_null(strstr(msg, "weight"));
	}
}

/* Runs a program with an idempotency key; returns whether Accepted said "duplicate". */
static int
run_with_idem(struct itest *e, const char *key, const char *idem, char *id, size_t idlen)
{
	Certa__V1__ProgramSpec spec = CERTA__V1__PROGRAM_SPEC__INIT;
	Certa__V1__ProgramEvent *ev;
	struct rpc_stream *s;
	int dup = -1;

	spec.problem = (char *)e->tr->problem;
	spec.idempotency_key = (char *)idem;
	assert_int_equal(certa_client_submit(e->ch, &spec, key, 60000, &s), 0);
	while (rpc_sync_stream_next(s, 30000, (ProtobufCMessage **)&ev) == 1) {
		if (ev->event_case == CERTA__V1__PROGRAM_EVENT__EVENT_ACCEPTED) {
			dup = ev->accepted->duplicate;
			snprintf(id, idlen, "%s", ev->accepted->program_id);
		}
		protobuf_c_message_free_unpacked(&ev->base, NULL);
	}
	assert_int_equal(rpc_sync_stream_close(s, NULL), GRPC_STATUS_OK);
	assert_true(dup >= 0);
	return dup;
}

/*
 * A removed tenant's name reused for a new tenant: the new tenant sees nothing of the old one
 * (programs by Get and List, idempotency keys, policies), also after a restart.
 */
static void
test_reused_tenant_name(void **state)
{
	struct itest *e = *state;
	Certa__V1__TenantRef tr = CERTA__V1__TENANT_REF__INIT;
	Certa__V1__GetRequest g = CERTA__V1__GET_REQUEST__INIT;
	Certa__V1__ListRequest l = CERTA__V1__LIST_REQUEST__INIT;
	Certa__V1__ListReply *lr = NULL;
	Certa__V1__PolicyRef pr = CERTA__V1__POLICY_REF__INIT;
	Certa__V1__PolicyHistoryReply *h = NULL;
	char k_old[128], k_new[128], id_old[64], id_new[64], msg[512], text[8192];
	int round;

	HARNESS_NEED_TRACES(e);
	itest_start(e, "0", START_FLAGS, NULL);
	create_tenant(e, "bravo", 1, NULL, k_old, sizeof k_old);
	assert_int_equal(set_policy(e, "bravo", "step_tokens = 128\n", NULL, NULL, msg,
	    sizeof msg), GRPC_STATUS_OK);
	assert_int_equal(run_with_idem(e, k_old, "idem-1", id_old, sizeof id_old), 0);

	tr.name = (char *)"bravo";
	assert_int_equal(itest_call(e->adm, "/certa.v1.Admin/DeleteTenant", &tr.base,
	    &certa__v1__delete_tenant_reply__descriptor, NULL, NULL, msg, sizeof msg),
	    GRPC_STATUS_OK);
	create_tenant(e, "bravo", 1, NULL, k_new, sizeof k_new);

	for (round = 0; round < 2; round++) {
		g.program_id = id_old;
		assert_int_equal(itest_call(e->ch, "/certa.v1.Reasoning/Get", &g.base,
		    &certa__v1__program__descriptor, k_new, NULL, msg, sizeof msg),
		    GRPC_STATUS_NOT_FOUND);
		assert_int_equal(itest_call(e->ch, "/certa.v1.Reasoning/List", &l.base,
		    &certa__v1__list_reply__descriptor, k_new, (ProtobufCMessage **)&lr, NULL, 0),
		    GRPC_STATUS_OK);
		assert_int_equal(lr->n_programs, round);   /* round 1: its own program only */
		if (round == 1)
			assert_string_equal(lr->programs[0]->id, id_new);
		protobuf_c_message_free_unpacked(&lr->base, NULL);
		/* The old tenant's policy and its history are gone with it. */
		assert_int_equal(policy_version(e, "bravo", text, sizeof text), 0);
		assert_null(strstr(text, "step_tokens = 128"));
		pr.tenant = (char *)"bravo";
		assert_int_equal(itest_call(e->adm, "/certa.v1.Admin/PolicyHistory", &pr.base,
		    &certa__v1__policy_history_reply__descriptor, NULL, (ProtobufCMessage **)&h,
		    NULL, 0), GRPC_STATUS_OK);
		assert_int_equal(h->n_entries, 0);
		protobuf_c_message_free_unpacked(&h->base, NULL);
		if (round == 1)
			break;
		/* The old idempotency key is not the new tenant's: a new program. */
		assert_int_equal(run_with_idem(e, k_new, "idem-1", id_new, sizeof id_new), 0);
		assert_string_not_equal(id_new, id_old);
		/* And the same after a restart (nothing lives only in memory). */
		itest_stop(e);
		itest_start(e, "0", START_FLAGS, NULL);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_key_lifecycle, setup, itest_teardown),
		cmocka_unit_test_setup_teardown(test_isolation, setup, itest_teardown),
		cmocka_unit_test_setup_teardown(test_quotas, setup, itest_teardown),
		cmocka_unit_test_setup_teardown(test_tokens_per_minute, setup, itest_teardown),
		cmocka_unit_test_setup_teardown(test_tokens_per_minute_enforced_at_dispatch, setup,
		    itest_teardown),
		cmocka_unit_test_setup_teardown(test_policy_validation_and_history, setup,
		    itest_teardown),
		cmocka_unit_test_setup_teardown(test_policy_applies_next_step, setup,
		    itest_teardown),
		cmocka_unit_test_setup_teardown(test_admin_credentials, setup, itest_teardown),
		cmocka_unit_test_setup_teardown(test_metrics_all_tenants, setup, itest_teardown),
		cmocka_unit_test_setup_teardown(test_reused_tenant_name, setup, itest_teardown),
	};
	int rc;

	grpc_init();
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	grpc_shutdown();
	return rc;
}
