/* itest.c — shared integration-test scaffolding (see itest.h). */
#include "tests/support/itest.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "tests/support/harness.h"

#define ITEST_MAX_SETS 16
#define ITEST_SETTLE_US 300000
#define ITEST_SUBMIT_MS 60000
#define ITEST_EVENT_MS 30000

/* The flags of itest_start() that add a fixed --set. */
static const struct {
	unsigned flag;
	const char *set;
} itest_fixed_sets[] = {
	{ ITEST_ANONYMOUS, "auth.anonymous_tenant=default" },
	{ ITEST_NO_ADMIN_SOCKET, "admin.socket=" },
};

void *
itest_new(size_t size, unsigned timeout_s, enum itest_traces traces)
{
	struct itest *it;

	assert_true(size >= sizeof *it);
	if (traces != ITEST_TRACES_NONE && harness_traces_dir() == NULL)
		return NULL;
	it = calloc(1, size);
	assert_non_null(it);
	assert_int_equal(harness_fixture_setup(timeout_s, &it->dir,
	    traces == ITEST_TRACES_PICK ? &it->tr : NULL), 0);
	return it;
}

void
itest_stop(struct itest *it)
{
	if (it->ch != NULL)
		rpc_channel_free(it->ch);
	if (it->adm != NULL)
		rpc_channel_free(it->adm);
	harness_proc_free(it->d);
	harness_proc_free(it->w);
	it->ch = it->adm = NULL;
	it->d = it->w = NULL;
}

void
itest_free(struct itest *it)
{
	if (it == NULL)
		return;
	itest_stop(it);
	harness_fixture_teardown(it->dir, it->tr);
	free(it);
}

int
itest_teardown(void **state)
{
	itest_free(*state);
	return 0;
}

void
itest_start(struct itest *it, const char *delay, unsigned flags,
    const char *const extra_sets[])
{
	const char *wextra[] = { "--step-delay", delay, NULL };
	const char *sets[ITEST_MAX_SETS];
	char sock[600], tok[600], tokset[620], mpf[600], mset[620], target[620];
	size_t a = 0, i;

	if (!(flags & ITEST_NO_WORKER))
		assert_int_equal(harness_start_worker(it->dir, harness_traces_dir(),
		    delay != NULL ? wextra : NULL, &it->w, &it->wport), 0);
	sets[a++] = "workers.health_interval=100ms";
	sets[a++] = "metrics.port=0";
	if (flags & ITEST_ADMIN) {
		snprintf(sock, sizeof sock, "admin.socket=%s/admin.sock", it->dir);
		sets[a++] = sock;
	}
	if (flags & ITEST_ADMIN_TOKEN_FILE) {
		snprintf(tok, sizeof tok, "%s/admin.token", it->dir);
		assert_int_equal(harness_write_file(tok, "%s", ITEST_ADMIN_TOKEN "\n"), 0);
		snprintf(tokset, sizeof tokset, "admin.token_file=%s", tok);
		sets[a++] = tokset;
	}
	for (i = 0; i < sizeof itest_fixed_sets / sizeof itest_fixed_sets[0]; i++)
		if (flags & itest_fixed_sets[i].flag)
			sets[a++] = itest_fixed_sets[i].set;
	if (flags & ITEST_METRICS) {
		snprintf(mpf, sizeof mpf, "%s/m.port", it->dir);
		snprintf(mset, sizeof mset, "metrics.port_file=%s", mpf);
		sets[a++] = mset;
	}
	for (i = 0; extra_sets != NULL && extra_sets[i] != NULL; i++) {
		assert_true(a < ITEST_MAX_SETS - 1);
		sets[a++] = extra_sets[i];
	}
	sets[a] = NULL;
	if (harness_start_certad(it->dir, &it->wport, it->w != NULL ? 1 : 0, sets, NULL, &it->d,
	    &it->dport) != 0)
		fail_msg("certad did not start");
	if (flags & ITEST_METRICS)
		assert_int_equal(harness_wait_port_file(mpf, 20000, &it->mport), 0);
	assert_int_equal(certa_client_channel(it->dport, &it->ch), 0);
	if (flags & ITEST_ADMIN) {
		snprintf(target, sizeof target, "unix:%s/admin.sock", it->dir);
		assert_int_equal(rpc_channel_new(target, &it->adm), 0);
	}
	if (flags & ITEST_SETTLE)
		usleep(ITEST_SETTLE_US);
}

grpc_status_code
itest_call(struct rpc_channel *ch, const char *method, const ProtobufCMessage *req,
    const ProtobufCMessageDescriptor *rd, const char *bearer, ProtobufCMessage **reply,
    char *buf, size_t len)
{
	grpc_status_code st = GRPC_STATUS_UNKNOWN;
	char *details = NULL;
	ProtobufCMessage *r = NULL;

	assert_int_equal(certa_client_unary(ch, method, req, rd, ITEST_RPC_MS, bearer, &r, &st,
	    &details), 0);
	if (buf != NULL)
		snprintf(buf, len, "%s", details ? details : "");
	free(details);
	if (reply != NULL)
		*reply = r;
	else if (r != NULL)
		protobuf_c_message_free_unpacked(r, NULL);
	return st;
}

grpc_status_code
itest_call_ms(struct rpc_channel *ch, const char *method, const ProtobufCMessage *req,
    const ProtobufCMessageDescriptor *rd, int deadline_ms, ProtobufCMessage **reply,
    char **details)
{
	grpc_status_code st = GRPC_STATUS_UNKNOWN;
	ProtobufCMessage *r = NULL;
	char *d = NULL;

	assert_int_equal(certa_client_unary(ch, method, req, rd, deadline_ms, NULL, &r, &st, &d),
	    0);
	if (details != NULL)
		*details = d;
	else
		free(d);
	if (reply != NULL)
		*reply = r;
	else if (r != NULL)
		protobuf_c_message_free_unpacked(r, NULL);
	return st;
}

Certa__V1__InfoReply *
itest_worker_info(struct rpc_channel *ch, int deadline_ms)
{
	Certa__V1__InfoRequest req = CERTA__V1__INFO_REQUEST__INIT;
	ProtobufCMessage *r = NULL;

	assert_int_equal(itest_call_ms(ch, "/certa.v1.Worker/Info", &req.base,
	    &certa__v1__info_reply__descriptor, deadline_ms, &r, NULL), GRPC_STATUS_OK);
	return (Certa__V1__InfoReply *)r;
}

uint32_t
itest_worker_active(struct rpc_channel *ch, int deadline_ms)
{
	Certa__V1__InfoReply *i = itest_worker_info(ch, deadline_ms);
	uint32_t a = i->active;

	protobuf_c_message_free_unpacked(&i->base, NULL);
	return a;
}

int
itest_run(struct rpc_channel *ch, const Certa__V1__ProgramSpec *spec, const char *bearer,
    struct certa_client_events *ev)
{
	struct rpc_stream *s;

	assert_int_equal(certa_client_submit(ch, spec, bearer, ITEST_SUBMIT_MS, &s), 0);
	memset(ev, 0, sizeof *ev);
	return certa_client_events_read(s, ITEST_EVENT_MS, 0, ev);
}
