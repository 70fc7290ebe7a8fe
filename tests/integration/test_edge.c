/*
 * test_edge.c — abuse at the gRPC edge against the real certad and a real replay worker:
 * strings that are not UTF-8 or hold a NUL, out-of-range sampling values, a Watch stream
 * whose key is revoked, and SIGTERM while a program waits for a worker that does not exist.
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>
#include <grpc/grpc.h>

#include "certa/v1/admin.pb-c.h"
#include "certa/v1/reasoning.pb-c.h"
#include "certa/v1/worker.pb-c.h"
#include "lib/rpc_client.h"
#include "tests/support/certa_client.h"
#include "tests/support/harness.h"
#include "tests/support/itest.h"


static int
setup(void **state)
{
	*state = itest_new(sizeof(struct itest), 120, ITEST_TRACES_PICK);
	return 0;
}

/* Submits req and reads the stream to its end into ev (zeroed first). */
static void
submit_req(struct itest *e, const Certa__V1__SubmitRequest *req, const char *bearer,
    struct certa_client_events *ev)
{
	struct rpc_metadata md = { "authorization", NULL };
	char authz[256];
	struct rpc_stream *s;

	snprintf(authz, sizeof authz, "Bearer %s", bearer ? bearer : "");
	md.value = authz;
	assert_int_equal(rpc_sync_stream_open(e->ch, "/certa.v1.Reasoning/Submit", &req->base,
	    &certa__v1__program_event__descriptor, 60000, bearer ? &md : NULL, bearer ? 1 : 0,
	    &s), 0);
	memset(ev, 0, sizeof *ev);
	certa_client_events_read(s, 30000, 0, ev);
}

static void
submit_spec(struct itest *e, const Certa__V1__ProgramSpec *spec, struct certa_client_events *ev)
{
	Certa__V1__SubmitRequest req = CERTA__V1__SUBMIT_REQUEST__INIT;

	req.program = (Certa__V1__ProgramSpec *)spec;
	submit_req(e, &req, NULL, ev);
}

/* Submits a ProgramSpec whose problem is the raw bytes text[0..n) (NULs included): the spec is
 * sent as an unknown field 1 of an empty SubmitRequest, i.e. the exact wire bytes. */
static void
submit_raw_problem(struct itest *e, const char *text, size_t n, struct certa_client_events *ev)
{
	Certa__V1__SubmitRequest req = CERTA__V1__SUBMIT_REQUEST__INIT;
	ProtobufCMessageUnknownField uf;
	uint8_t buf[256];

	assert_true(n < 100);
	buf[0] = (uint8_t)(n + 2);      /* SubmitRequest.program: length */
	buf[1] = 0x0a;                  /* ProgramSpec.problem: field 1, LEN */
	buf[2] = (uint8_t)n;
	memcpy(buf + 3, text, n);
	uf.tag = 1;
	uf.wire_type = PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED;
	uf.len = n + 3;
	uf.data = buf;
	req.base.n_unknown_fields = 1;
	req.base.unknown_fields = &uf;
	submit_req(e, &req, NULL, ev);
}

static size_t
list_count(struct itest *e)
{
	Certa__V1__ListRequest lr = CERTA__V1__LIST_REQUEST__INIT;
	Certa__V1__ListReply *r = NULL;
	size_t n;

	assert_int_equal(itest_call(e->ch, "/certa.v1.Reasoning/List", &lr.base,
	    &certa__v1__list_reply__descriptor, NULL, (ProtobufCMessage **)&r, NULL, 0),
	    GRPC_STATUS_OK);
	n = r->n_programs;
	protobuf_c_message_free_unpacked(&r->base, NULL);
	return n;
}

/* Invalid UTF-8 and embedded NULs are refused before any handler, naming the field; nothing
 * is stored, so Get and List keep decoding for every client. */
static void
test_invalid_strings_refused(void **state)
{
	static const char nul_problem[] = "What is 2+2?\0 IGNORE-REST";
	struct itest *e = *state;
	Certa__V1__ProgramSpec spec = CERTA__V1__PROGRAM_SPEC__INIT;
	Certa__V1__AddWorkerRequest aw = CERTA__V1__ADD_WORKER_REQUEST__INIT;
	Certa__V1__GetRequest g = CERTA__V1__GET_REQUEST__INIT;
	Certa__V1__CreateTenantRequest ct = CERTA__V1__CREATE_TENANT_REQUEST__INIT;
	Certa__V1__Tenant t = CERTA__V1__TENANT__INIT;
	struct certa_client_events ev;
	char msg[512];

	HARNESS_NEED_TRACES(e);
	itest_start(e, "0", ITEST_ADMIN | ITEST_ANONYMOUS, NULL);

	spec.problem = (char *)"\xff\xfe\xfd";
	submit_spec(e, &spec, &ev);
	assert_int_equal(ev.status, GRPC_STATUS_INVALID_ARGUMENT);
	assert_string_equal(ev.details, "program.problem: invalid UTF-8 at byte 0");
	assert_int_equal(ev.accepted, 0);
	certa_client_events_free(&ev);

	spec.problem = (char *)"What is 2+2?";
	spec.model = (char *)"qwen\xc0\xaf";       /* overlong '/' */
	submit_spec(e, &spec, &ev);
	assert_int_equal(ev.status, GRPC_STATUS_INVALID_ARGUMENT);
	assert_string_equal(ev.details, "program.model: invalid UTF-8 at byte 4");
	certa_client_events_free(&ev);

	submit_raw_problem(e, nul_problem, sizeof nul_problem - 1, &ev);
	assert_int_equal(ev.status, GRPC_STATUS_INVALID_ARGUMENT);
	assert_string_equal(ev.details, "program.problem: NUL byte at byte 12");
	assert_int_equal(ev.accepted, 0);
	certa_client_events_free(&ev);

	g.program_id = (char *)"p-\xfe";
	assert_int_equal(itest_call(e->ch, "/certa.v1.Reasoning/Get", &g.base,
	    &certa__v1__program__descriptor, NULL, NULL, msg, sizeof msg),
	    GRPC_STATUS_INVALID_ARGUMENT);
	assert_string_equal(msg, "program_id: invalid UTF-8 at byte 2");

	aw.address = (char *)"\xff\xfe\xfd:7000";
	assert_int_equal(itest_call(e->adm, "/certa.v1.Admin/AddWorker", &aw.base,
	    &certa__v1__worker_status__descriptor, NULL, NULL, msg, sizeof msg),
	    GRPC_STATUS_INVALID_ARGUMENT);
	assert_string_equal(msg, "address: invalid UTF-8 at byte 0");

	t.name = (char *)"caf\xc3";
	ct.tenant = &t;
	assert_int_equal(itest_call(e->adm, "/certa.v1.Admin/CreateTenant", &ct.base,
	    &certa__v1__create_tenant_reply__descriptor, NULL, NULL, msg, sizeof msg),
	    GRPC_STATUS_INVALID_ARGUMENT);
	assert_string_equal(msg, "tenant.name: invalid UTF-8 at byte 3");

	/* Nothing was accepted; valid UTF-8 still is. */
	assert_int_equal(list_count(e), 0);
	spec.problem = (char *)e->tr->problem;
	spec.model = (char *)"";
	submit_spec(e, &spec, &ev);
	assert_int_equal(ev.status, GRPC_STATUS_OK);
	certa_client_events_free(&ev);
	assert_int_equal(list_count(e), 1);
}

/* Sampling values outside their ranges are refused, naming the field and the range; at the
 * daemon (Submit) and at the worker (Step). */
static void
test_sampling_refused(void **state)
{
	static const struct {
		float temperature, top_p;
		uint32_t top_k;
		const char *want;       /* substring of the details; NULL: accepted */
	} cases[] = {
		{ NAN, 0, 0, "program.sampling.temperature" },
		{ -1e38f, 0, 0, "program.sampling.temperature" },
		{ 1e38f, 0, 0, "program.sampling.temperature" },
		{ -0.5f, 0, 0, "program.sampling.temperature" },
		{ 0, INFINITY, 0, "program.sampling.top_p" },
		{ 0, NAN, 0, "program.sampling.top_p" },
		{ 0, 1.5f, 0, "program.sampling.top_p" },
		{ 0, -0.1f, 0, "program.sampling.top_p" },
		{ 0, 0, UINT32_MAX, "program.sampling.top_k" },
		{ 0.7f, 0.95f, 40, NULL },
	};
	struct itest *e = *state;
	Certa__V1__ProgramSpec spec = CERTA__V1__PROGRAM_SPEC__INIT;
	Certa__V1__SamplingParams sp = CERTA__V1__SAMPLING_PARAMS__INIT;
	struct certa_client_events ev;
	size_t i;

	HARNESS_NEED_TRACES(e);
	itest_start(e, "0", ITEST_ADMIN | ITEST_ANONYMOUS, NULL);
	spec.problem = (char *)e->tr->problem;
	spec.sampling = &sp;
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		sp.temperature = cases[i].temperature;
		sp.top_p = cases[i].top_p;
		sp.top_k = cases[i].top_k;
		submit_spec(e, &spec, &ev);
		if (cases[i].want == NULL) {
			assert_int_equal(ev.status, GRPC_STATUS_OK);
		} else {
			if (ev.status != GRPC_STATUS_INVALID_ARGUMENT ||
			    strstr(ev.details, cases[i].want) == NULL ||
			    strstr(ev.details, "range") == NULL)
				fail_msg("case %zu: status %d details '%s'", i, (int)ev.status,
				    ev.details);
			assert_int_equal(ev.accepted, 0);
		}
		certa_client_events_free(&ev);
	}

	/* The worker checks its own edge. */
	{
		Certa__V1__StepRequest req = CERTA__V1__STEP_REQUEST__INIT;
		Certa__V1__StepItem it = CERTA__V1__STEP_ITEM__INIT, *pit = &it;
		struct rpc_channel *wch;
		char msg[512];

		it.request_id = (char *)"x/0";
		it.prompt = (char *)e->tr->problem;
		it.max_new_tokens = 16;
		it.sampling = &sp;
		sp.temperature = NAN;
		sp.top_p = 0;
		sp.top_k = 0;
		req.items = &pit;
		req.n_items = 1;
		assert_int_equal(certa_client_channel(e->wport, &wch), 0);
		assert_int_equal(itest_call(wch, "/certa.v1.Worker/Step", &req.base,
		    &certa__v1__step_reply__descriptor, NULL, NULL, msg, sizeof msg),
		    GRPC_STATUS_INVALID_ARGUMENT);
		assert_non_null(strstr(msg, "items[0].sampling.temperature"));
		it.prompt = (char *)"\xff";
		sp.temperature = 0;
		assert_int_equal(itest_call(wch, "/certa.v1.Worker/Step", &req.base,
		    &certa__v1__step_reply__descriptor, NULL, NULL, msg, sizeof msg),
		    GRPC_STATUS_INVALID_ARGUMENT);
		assert_string_equal(msg, "items.prompt: invalid UTF-8 at byte 0");
		rpc_channel_free(wch);
	}
}

/* Creates a tenant over the admin socket; writes its key and key id. */
static void
create_tenant(struct itest *e, const char *name, char *key, size_t keylen, char *id, size_t idlen)
{
	Certa__V1__CreateTenantRequest req = CERTA__V1__CREATE_TENANT_REQUEST__INIT;
	Certa__V1__Tenant t = CERTA__V1__TENANT__INIT;
	Certa__V1__CreateTenantReply *r = NULL;

	t.name = (char *)name;
	t.weight = 1;
	req.tenant = &t;
	assert_int_equal(itest_call(e->adm, "/certa.v1.Admin/CreateTenant", &req.base,
	    &certa__v1__create_tenant_reply__descriptor, NULL, (ProtobufCMessage **)&r, NULL, 0),
	    GRPC_STATUS_OK);
	snprintf(key, keylen, "%s", r->api_key);
	snprintf(id, idlen, "%s", r->tenant->keys[0]->key_id);
	protobuf_c_message_free_unpacked(&r->base, NULL);
}

/* Opens Submit (spec) and Watch streams with key and reads the first progress of each. */
static void
open_streams(struct itest *e, const char *key, struct rpc_stream **sub, struct rpc_stream **wat,
    struct certa_client_events *sev, struct certa_client_events *wev)
{
	Certa__V1__ProgramSpec spec = CERTA__V1__PROGRAM_SPEC__INIT;
	Certa__V1__WatchRequest wr = CERTA__V1__WATCH_REQUEST__INIT;
	struct rpc_metadata md = { "authorization", NULL };
	char authz[256];

	spec.problem = (char *)e->tr->problem;
	assert_int_equal(certa_client_submit(e->ch, &spec, key, 60000, sub), 0);
	memset(sev, 0, sizeof *sev);
	assert_int_equal(certa_client_events_read(*sub, 30000, 1, sev), 1);
	snprintf(authz, sizeof authz, "Bearer %s", key);
	md.value = authz;
	wr.program_id = sev->id;
	assert_int_equal(rpc_sync_stream_open(e->ch, "/certa.v1.Reasoning/Watch", &wr.base,
	    &certa__v1__program_event__descriptor, 60000, &md, 1, wat), 0);
	memset(wev, 0, sizeof *wev);
	assert_int_equal(certa_client_events_read(*wat, 30000, 1, wev), 1);
}

/* Streams opened with a key end UNAUTHENTICATED when the key is revoked or rotated away; they
 * used to keep delivering events.  (A tenant can only be deleted once it has no program in
 * progress, so no stream of it is open then.) */
static void
test_watch_ends_on_revoke(void **state)
{
	struct itest *e = *state;
	Certa__V1__RevokeKeyRequest rv = CERTA__V1__REVOKE_KEY_REQUEST__INIT;
	Certa__V1__RotateKeyRequest rk = CERTA__V1__ROTATE_KEY_REQUEST__INIT;
	Certa__V1__RotateKeyReply *rr = NULL;
	struct certa_client_events sev, wev;
	struct rpc_stream *sub, *wat;
	char key[128], kid[64];
	int round;

	HARNESS_NEED_TRACES(e);
	itest_start(e, "300", ITEST_ADMIN, NULL);
	create_tenant(e, "acme", key, sizeof key, kid, sizeof kid);
	for (round = 0; round < 2; round++) {
		open_streams(e, key, &sub, &wat, &sev, &wev);
		switch (round) {
		case 0:         /* revoke the key */
			rv.tenant = (char *)"acme";
			rv.key_id = kid;
			assert_int_equal(itest_call(e->adm, "/certa.v1.Admin/RevokeKey", &rv.base,
			    &certa__v1__revoke_key_reply__descriptor, NULL, NULL, NULL, 0),
			    GRPC_STATUS_OK);
			break;
		case 1:         /* rotate it away */
			rk.tenant = (char *)"acme";
			rk.revoke_others = 1;
			assert_int_equal(itest_call(e->adm, "/certa.v1.Admin/RotateKey", &rk.base,
			    &certa__v1__rotate_key_reply__descriptor, NULL,
			    (ProtobufCMessage **)&rr, NULL, 0), GRPC_STATUS_OK);
			snprintf(key, sizeof key, "%s", rr->api_key);
			protobuf_c_message_free_unpacked(&rr->base, NULL);
			break;
		default:
			break;
		}
		certa_client_events_read(sub, 5000, 0, &sev);
		certa_client_events_read(wat, 5000, 0, &wev);
		if (sev.status != GRPC_STATUS_UNAUTHENTICATED ||
		    wev.status != GRPC_STATUS_UNAUTHENTICATED)
			fail_msg("round %d: submit stream %d '%s', watch stream %d '%s'", round,
			    (int)sev.status, sev.details, (int)wev.status, wev.details);
		assert_null(sev.finished);
		certa_client_events_free(&sev);
		certa_client_events_free(&wev);
		if (round == 0) {
			/* A new key for the next round; the old one is gone. */
			rk.tenant = (char *)"acme";
			rk.revoke_others = 0;
			assert_int_equal(itest_call(e->adm, "/certa.v1.Admin/RotateKey", &rk.base,
			    &certa__v1__rotate_key_reply__descriptor, NULL,
			    (ProtobufCMessage **)&rr, NULL, 0), GRPC_STATUS_OK);
			snprintf(key, sizeof key, "%s", rr->api_key);
			protobuf_c_message_free_unpacked(&rr->base, NULL);
		}
	}
}

/* SIGTERM with no worker configured and programs queued (one stream open, one closed):
 * certad used to log "drained; stopping the server" and then wait in epoll forever. */
static void
test_sigterm_queued_no_worker(void **state)
{
	struct itest *e = *state;
	Certa__V1__ProgramSpec spec = CERTA__V1__PROGRAM_SPEC__INIT;
	struct certa_client_events ev;
	struct rpc_stream *open_s, *closed_s;
	ProtobufCMessage *m = NULL;
	int status = 0;

	HARNESS_NEED_TRACES(e);
	itest_start(e, NULL, ITEST_NO_WORKER | ITEST_ADMIN | ITEST_ANONYMOUS, NULL);
	spec.problem = (char *)e->tr->problem;
	assert_int_equal(certa_client_submit(e->ch, &spec, NULL, 60000, &closed_s), 0);
	assert_int_equal(rpc_sync_stream_next(closed_s, 10000, &m), 1);   /* Accepted */
	protobuf_c_message_free_unpacked(m, NULL);
	rpc_sync_stream_cancel(closed_s);
	(void)rpc_sync_stream_close(closed_s, NULL);
	assert_int_equal(certa_client_submit(e->ch, &spec, NULL, 60000, &open_s), 0);
	assert_int_equal(rpc_sync_stream_next(open_s, 10000, &m), 1);
	protobuf_c_message_free_unpacked(m, NULL);
	assert_int_equal(list_count(e), 2);

	assert_int_equal(harness_signal(e->d, SIGTERM), 0);
	memset(&ev, 0, sizeof ev);
	certa_client_events_read(open_s, 10000, 0, &ev);
	assert_int_equal(ev.status, GRPC_STATUS_UNAVAILABLE);
	certa_client_events_free(&ev);
	if (harness_wait_exit(e->d, 10000, &status) != 0) {
		harness_dump_log(e->d);
		fail_msg("certad did not exit within 10 s of SIGTERM");
	}
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

/* --check-config and startup agree: both refuse what can be checked without the network. */
static void
test_check_config_agrees(void **state)
{
	static const char *const bad[] = {
		"--worker ::::", "--worker host:99999", "--set map_size=2G --set max_map_size=1G",
		"--listen ::::",
	};
	struct itest *e = *state;
	char *bin;
	size_t i;

	HARNESS_NEED_TRACES(e);
	bin = harness_bin("certad");
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		int chk = harness_sh("%s --state-dir %s/state %s --check-config >%s/chk.log 2>&1",
		    bin, e->dir, bad[i], e->dir);
		int run = harness_sh("timeout 20 %s --state-dir %s/state --set admin.socket= %s "
		    ">%s/run.log 2>&1", bin, e->dir, bad[i], e->dir);
		if (chk != 2 || run != 2)
			fail_msg("'%s': --check-config exit %d, startup exit %d", bad[i], chk, run);
	}
	assert_int_equal(harness_sh("%s --state-dir %s/state --worker 127.0.0.1:7001 "
	    "--check-config >/dev/null 2>&1", bin, e->dir), 0);
	free(bin);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_invalid_strings_refused, setup,
		    itest_teardown),
		cmocka_unit_test_setup_teardown(test_sampling_refused, setup, itest_teardown),
		cmocka_unit_test_setup_teardown(test_watch_ends_on_revoke, setup, itest_teardown),
		cmocka_unit_test_setup_teardown(test_sigterm_queued_no_worker, setup,
		    itest_teardown),
		cmocka_unit_test_setup_teardown(test_check_config_agrees, setup, itest_teardown),
	};
	int rc;

	grpc_init();
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	grpc_shutdown();
	return rc;
}
