/* test_health.c — grpc.health.v1.Health (lib/health) on a real server over loopback. */
#include <errno.h>
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
#include "grpc/health/v1/health.pb-c.h"
#include "lib/cqbridge.h"
#include "lib/error.h"
#include "lib/health.h"
#include "lib/log.h"
#include "lib/rpc_client.h"
#include "lib/rpc_server.h"
#include "tests/support/loopsrv.h"

#define WORKER_SVC "certa.v1.Worker"

struct fixture {
	struct loopsrv *ls;
	struct health *h;
	char target[64];
};

/* The server's own service: one trivial method, so health is added as a second table. */
static void
h_info(struct rpc_call *call, const ProtobufCMessage *req, void *ctx)
{
	Certa__V1__InfoReply r = CERTA__V1__INFO_REPLY__INIT;

	(void)req;
	(void)ctx;
	r.engine = (char *)"test";
	rpc_call_reply(call, &r.base);
}

static const struct rpc_method own_methods[] = {
	{ "/certa.v1.Worker/Info", RPC_UNARY, &certa__v1__info_request__descriptor, h_info, 0 },
};

/* The server has shut down (loop thread). */
static void
stopped(void *arg)
{
	struct fixture *f = arg;

	/* Every watch stream was cancelled by the server shutdown and dropped. */
	assert_true(f->h == NULL || health_watchers(f->h) == 0);
	health_free(f->h);
	f->h = NULL;
}

/* Commands run on the loop thread, where health_* must be called. */
static int
on_cmd(char c, void *arg)
{
	struct fixture *f = arg;
	int r = 0;

	switch (c) {
	case 'U':  /* up: overall and the worker service SERVING */
		r = health_set(f->h, "", HEALTH_SERVING);
		if (r == 0)
			r = health_set(f->h, WORKER_SVC, HEALTH_SERVING);
		break;
	case 'W':  /* the worker service goes NOT_SERVING */
		r = health_set(f->h, WORKER_SVC, HEALTH_NOT_SERVING);
		break;
	case 'L':  /* a service registered late */
		r = health_set(f->h, "late.Service", HEALTH_SERVING);
		break;
	case 'D':  /* drain */
		health_shutdown(f->h);
		r = health_set(f->h, "", HEALTH_SERVING);  /* must be refused */
		break;
	case 'n':  /* number of watch streams */
		r = (int)health_watchers(f->h);
		break;
	case 'F':  /* free the registry while streams are open */
		health_free(f->h);
		f->h = NULL;
		break;
	}
	return r;
}

/* Runs one command on the loop thread and returns its result. */
static int
cmd(struct fixture *f, char c)
{
	return loopsrv_cmd(f->ls, c);
}

/* Health is added as a second method table. */
static int
configure(struct rpc_server *srv, void *arg)
{
	struct fixture *f = arg;
	const struct rpc_method *hm;
	size_t nh;

	hm = health_methods(&nh);
	assert_int_equal(nh, 2);
	return rpc_server_add_methods(srv, hm, nh, f->h);
}

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof *f);
	struct loopsrv_options o = {
		.methods = own_methods,
		.nmethods = 1,
		.configure = configure,
		.command = on_cmd,
		.stopped = stopped,
	};

	assert_int_equal(health_new(&f->h), 0);
	o.ctx = o.arg = f;
	assert_int_equal(loopsrv_start(&o, &f->ls), 0);
	snprintf(f->target, sizeof f->target, "%s", loopsrv_target(f->ls));
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *f = *state;

	loopsrv_stop(f->ls);
	free(f);
	return 0;
}

/* Check: the gRPC status and, when OK, the serving status. */
static grpc_status_code
check(struct rpc_channel *ch, const char *service, int *serving)
{
	Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
	Grpc__Health__V1__HealthCheckResponse *rep = NULL;
	grpc_status_code st;
	char *details = NULL;

	req.service = (char *)service;
	assert_int_equal(rpc_sync_unary(ch, "/grpc.health.v1.Health/Check", &req.base,
	    &grpc__health__v1__health_check_response__descriptor, 5000, NULL, 0,
	    (ProtobufCMessage **)&rep, &st, &details), 0);
	*serving = -1;
	if (st == GRPC_STATUS_OK) {
		*serving = (int)rep->status;
		protobuf_c_message_free_unpacked(&rep->base, NULL);
	} else if (st == GRPC_STATUS_NOT_FOUND) {
		assert_non_null(details);
		assert_non_null(strstr(details, service));
	}
	free(details);
	return st;
}

static struct rpc_stream *
watch(struct rpc_channel *ch, const char *service)
{
	Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
	struct rpc_stream *s = NULL;

	req.service = (char *)service;
	assert_int_equal(rpc_sync_stream_open(ch, "/grpc.health.v1.Health/Watch", &req.base,
	    &grpc__health__v1__health_check_response__descriptor, 20000, NULL, 0, &s), 0);
	return s;
}

/* Next status on a watch stream (fails the test if none arrives in 5 s). */
static int
next_status(struct rpc_stream *s)
{
	Grpc__Health__V1__HealthCheckResponse *m = NULL;
	int st;

	assert_int_equal(rpc_sync_stream_next(s, 5000, (ProtobufCMessage **)&m), 1);
	st = (int)m->status;
	protobuf_c_message_free_unpacked(&m->base, NULL);
	return st;
}

/* Polls the loop for the number of watch streams until it equals want (5 s). */
static void
wait_watchers(struct fixture *f, int want)
{
	int i, n = -1;

	for (i = 0; i < 500; i++) {
		n = cmd(f, 'n');
		if (n == want)
			break;
		usleep(10000);
	}
	assert_int_equal(n, want);
}

static void
test_check_serving(void **state)
{
	struct fixture *f = *state;
	struct rpc_channel *ch;
	int serving;

	assert_int_equal(rpc_channel_new(f->target, &ch), 0);
	/* Before anything is set even "" is unknown. */
	assert_int_equal(check(ch, "", &serving), GRPC_STATUS_NOT_FOUND);
	assert_int_equal(cmd(f, 'U'), 0);
	assert_int_equal(check(ch, "", &serving), GRPC_STATUS_OK);
	assert_int_equal(serving, HEALTH_SERVING);
	assert_int_equal(check(ch, WORKER_SVC, &serving), GRPC_STATUS_OK);
	assert_int_equal(serving, HEALTH_SERVING);
	/* The server's own service still answers next to the health table. */
	{
		Certa__V1__InfoRequest req = CERTA__V1__INFO_REQUEST__INIT;
		ProtobufCMessage *rep = NULL;
		grpc_status_code st;
		assert_int_equal(rpc_sync_unary(ch, "/certa.v1.Worker/Info", &req.base,
		    &certa__v1__info_reply__descriptor, 5000, NULL, 0, &rep, &st, NULL), 0);
		assert_int_equal(st, GRPC_STATUS_OK);
		protobuf_c_message_free_unpacked(rep, NULL);
	}
	rpc_channel_free(ch);
}

/* The standard behaviour for a name never registered is NOT_FOUND on Check. */
static void
test_check_unknown_service(void **state)
{
	struct fixture *f = *state;
	struct rpc_channel *ch;
	int serving;

	assert_int_equal(cmd(f, 'U'), 0);
	assert_int_equal(rpc_channel_new(f->target, &ch), 0);
	assert_int_equal(check(ch, "no.such.Service", &serving), GRPC_STATUS_NOT_FOUND);
	rpc_channel_free(ch);
}

/* Watch sends the current status, then each change; unknown names get SERVICE_UNKNOWN and
 * learn about a later registration. */
static void
test_watch_updates(void **state)
{
	struct fixture *f = *state;
	struct rpc_channel *ch;
	struct rpc_stream *s, *late;
	Grpc__Health__V1__HealthCheckResponse *m;
	int serving;

	assert_int_equal(cmd(f, 'U'), 0);
	assert_int_equal(rpc_channel_new(f->target, &ch), 0);
	s = watch(ch, WORKER_SVC);
	assert_int_equal(next_status(s), HEALTH_SERVING);
	late = watch(ch, "late.Service");
	assert_int_equal(next_status(late), HEALTH_SERVICE_UNKNOWN);
	wait_watchers(f, 2);

	/* Setting the same status again sends nothing. */
	assert_int_equal(cmd(f, 'U'), 0);
	assert_int_equal(rpc_sync_stream_next(s, 200, (ProtobufCMessage **)&m), CERTA_ETIMEOUT);

	assert_int_equal(cmd(f, 'W'), 0);
	assert_int_equal(next_status(s), HEALTH_NOT_SERVING);
	assert_int_equal(check(ch, WORKER_SVC, &serving), GRPC_STATUS_OK);
	assert_int_equal(serving, HEALTH_NOT_SERVING);
	/* The other watcher heard nothing about a service it does not watch... */
	assert_int_equal(rpc_sync_stream_next(late, 200, (ProtobufCMessage **)&m),
	    CERTA_ETIMEOUT);
	/* ...until its own service appears. */
	assert_int_equal(cmd(f, 'L'), 0);
	assert_int_equal(next_status(late), HEALTH_SERVING);

	/* A client that leaves is dropped from the registry. */
	rpc_sync_stream_cancel(late);
	assert_int_equal(rpc_sync_stream_close(late, NULL), GRPC_STATUS_CANCELLED);
	wait_watchers(f, 1);
	/* The remaining stream is cancelled by the server shutdown in teardown. */
	rpc_sync_stream_cancel(s);
	(void)rpc_sync_stream_close(s, NULL);
	rpc_channel_free(ch);
}

/* Draining: everything NOT_SERVING, watchers told, later health_set refused. */
static void
test_not_serving_on_shutdown(void **state)
{
	struct fixture *f = *state;
	struct rpc_channel *ch;
	struct rpc_stream *s;
	int serving;

	assert_int_equal(cmd(f, 'U'), 0);
	assert_int_equal(rpc_channel_new(f->target, &ch), 0);
	s = watch(ch, "");
	assert_int_equal(next_status(s), HEALTH_SERVING);
	assert_int_equal(cmd(f, 'D'), CERTA_ESTATE);
	assert_int_equal(next_status(s), HEALTH_NOT_SERVING);
	assert_int_equal(check(ch, "", &serving), GRPC_STATUS_OK);
	assert_int_equal(serving, HEALTH_NOT_SERVING);
	assert_int_equal(check(ch, WORKER_SVC, &serving), GRPC_STATUS_OK);
	assert_int_equal(serving, HEALTH_NOT_SERVING);
	/* The server may not have seen this cancel before teardown's shutdown: either path ends
	 * the stream and drops the watcher (checked in server_done). */
	rpc_sync_stream_cancel(s);
	(void)rpc_sync_stream_close(s, NULL);
	rpc_channel_free(ch);
}

/* health_free with open streams ends them with UNAVAILABLE. */
static void
test_free_with_open_watch(void **state)
{
	struct fixture *f = *state;
	struct rpc_channel *ch;
	struct rpc_stream *s;
	Grpc__Health__V1__HealthCheckResponse *m = NULL;
	char *details = NULL;

	assert_int_equal(cmd(f, 'U'), 0);
	assert_int_equal(rpc_channel_new(f->target, &ch), 0);
	s = watch(ch, "");
	assert_int_equal(next_status(s), HEALTH_SERVING);
	assert_int_equal(cmd(f, 'F'), 0);
	assert_int_equal(rpc_sync_stream_next(s, 5000, (ProtobufCMessage **)&m), 0);
	assert_int_equal(rpc_sync_stream_close(s, &details), GRPC_STATUS_UNAVAILABLE);
	assert_non_null(details);
	assert_non_null(strstr(details, "shutting down"));
	free(details);
	rpc_channel_free(ch);
}

/* Argument checks that need no server. */
static void
test_set_arguments(void **state)
{
	struct health *h;
	enum health_status st = HEALTH_SERVING;
	char big[HEALTH_MAX_NAME + 2];

	(void)state;
	assert_int_equal(health_new(&h), 0);
	assert_int_equal(health_get(h, "", &st), CERTA_ENOTFOUND);
	assert_int_equal(st, HEALTH_SERVING);  /* untouched on failure */
	assert_int_equal(health_set(h, "", HEALTH_SERVICE_UNKNOWN), -EINVAL);
	assert_int_equal(health_set(h, "", (enum health_status)7), -EINVAL);
	assert_int_equal(health_set(h, NULL, HEALTH_SERVING), -EINVAL);
	memset(big, 'a', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	assert_int_equal(health_set(h, big, HEALTH_SERVING), -EINVAL);
	assert_int_equal(health_set(h, "x", HEALTH_NOT_SERVING), 0);
	assert_int_equal(health_get(h, "x", &st), 0);
	assert_int_equal(st, HEALTH_NOT_SERVING);
	assert_string_equal(health_status_name(HEALTH_SERVICE_UNKNOWN), "SERVICE_UNKNOWN");
	assert_string_equal(health_status_name((enum health_status)42), "UNKNOWN");
	health_shutdown(h);
	health_shutdown(h);
	assert_int_equal(health_set(h, "x", HEALTH_SERVING), CERTA_ESTATE);
	health_free(h);
	health_free(NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_set_arguments),
		cmocka_unit_test_setup_teardown(test_check_serving, setup, teardown),
		cmocka_unit_test_setup_teardown(test_check_unknown_service, setup, teardown),
		cmocka_unit_test_setup_teardown(test_watch_updates, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_serving_on_shutdown, setup, teardown),
		cmocka_unit_test_setup_teardown(test_free_with_open_watch, setup, teardown),
	};
	int rc;

	log_init("test_health", LOG_FORMAT_PLAIN, LOG_LVL_WARN);
	grpc_init();
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	grpc_shutdown();
	return rc;
}
