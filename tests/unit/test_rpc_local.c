/* test_rpc_local.c — local calls (lib/rpc_server.h): messages and the status reach the sink
 * once, a closed call or a refusing sink is dead, and metadata/identity read back. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "certa/v1/reasoning.pb-c.h"
#include "lib/error.h"
#include "lib/rpc_server.h"

struct sink_log {
	int sends, finishes, cancels;
	int refuse;                 /* send answers non-zero */
	uint64_t last_seq;
	grpc_status_code status;
	char message[256];
};

static int
log_send(void *arg, const ProtobufCMessage *msg)
{
	struct sink_log *l = arg;

	l->sends++;
	l->last_seq = ((const Certa__V1__ProgramEvent *)msg)->seq;
	return l->refuse ? -1 : 0;
}

static void
log_finish(void *arg, grpc_status_code status, const char *message)
{
	struct sink_log *l = arg;

	l->finishes++;
	l->status = status;
	snprintf(l->message, sizeof l->message, "%s", message);
}

static void
log_cancel(struct rpc_call *call, void *arg)
{
	struct sink_log *l = arg;

	(void)call;
	l->cancels++;
}

static const struct rpc_call_sink sink = { log_send, log_finish };

static void
test_send_finish(void **state)
{
	struct sink_log l;
	struct rpc_call *c;
	Certa__V1__ProgramEvent ev = CERTA__V1__PROGRAM_EVENT__INIT;

	(void)state;
	memset(&l, 0, sizeof l);
	assert_int_equal(rpc_call_local_new(&sink, &l, "http:127.0.0.1:5", &c), 0);
	assert_int_equal(rpc_call_set_identity(c, "acme"), 0);
	assert_int_equal(rpc_call_local_set_metadata(c, "authorization", "Bearer k"), 0);
	assert_string_equal(rpc_call_identity(c), "acme");
	assert_string_equal(rpc_call_metadata(c, "authorization"), "Bearer k");
	assert_null(rpc_call_metadata(c, "other"));
	assert_string_equal(rpc_call_peer(c), "http:127.0.0.1:5");
	assert_false(rpc_call_is_local(c));   /* "local" means the admin unix socket */
	assert_null(rpc_call_grpc(c));
	ev.seq = 7;
	assert_int_equal(rpc_call_send(c, &ev.base), 0);
	ev.seq = 8;
	assert_int_equal(rpc_call_send(c, &ev.base), 0);
	assert_int_equal(l.sends, 2);
	assert_int_equal(l.last_seq, 8);
	/* A reference held elsewhere (a program's watcher list) keeps it alive. */
	rpc_call_ref(c);
	assert_int_equal(rpc_call_finish(c, GRPC_STATUS_UNAVAILABLE, "draining %d", 1), 0);
	assert_int_equal(l.finishes, 1);
	assert_int_equal(l.status, GRPC_STATUS_UNAVAILABLE);
	assert_string_equal(l.message, "draining 1");
	assert_true(rpc_call_is_finished(c));
	/* Once finished: nothing more reaches the sink. */
	assert_int_equal(rpc_call_send(c, &ev.base), CERTA_ESTATE);
	assert_int_equal(rpc_call_finish(c, GRPC_STATUS_OK, NULL), CERTA_ESTATE);
	assert_int_equal(l.sends, 2);
	assert_int_equal(l.finishes, 1);
	rpc_call_unref(c);
	rpc_call_unref(c);
}

static void
test_close(void **state)
{
	struct sink_log l;
	struct rpc_call *c;
	Certa__V1__ProgramEvent ev = CERTA__V1__PROGRAM_EVENT__INIT;

	(void)state;
	memset(&l, 0, sizeof l);
	assert_int_equal(rpc_call_local_new(&sink, &l, NULL, &c), 0);
	rpc_call_on_cancel(c, log_cancel, &l);
	rpc_call_ref(c);
	rpc_call_local_close(c);
	assert_true(rpc_call_is_dead(c));
	assert_int_equal(l.cancels, 1);
	assert_int_equal(rpc_call_send(c, &ev.base), CERTA_ECANCELLED);
	assert_int_equal(rpc_call_finish(c, GRPC_STATUS_OK, NULL), CERTA_ECANCELLED);
	assert_int_equal(l.sends, 0);
	assert_int_equal(l.finishes, 0);
	rpc_call_local_close(c);
	assert_int_equal(l.cancels, 1);
	rpc_call_unref(c);
	rpc_call_unref(c);
}

/* A sink that cannot take a message: the sender sees a dead call (and drops it). */
static void
test_sink_refuses(void **state)
{
	struct sink_log l;
	struct rpc_call *c;
	Certa__V1__ProgramEvent ev = CERTA__V1__PROGRAM_EVENT__INIT;

	(void)state;
	memset(&l, 0, sizeof l);
	l.refuse = 1;
	assert_int_equal(rpc_call_local_new(&sink, &l, NULL, &c), 0);
	assert_int_equal(rpc_call_send(c, &ev.base), CERTA_ECANCELLED);
	assert_true(rpc_call_is_dead(c));
	assert_int_equal(rpc_call_send(c, &ev.base), CERTA_ECANCELLED);
	assert_int_equal(l.sends, 1);
	assert_int_equal(rpc_call_finish(c, GRPC_STATUS_OK, NULL), CERTA_ECANCELLED);
	assert_int_equal(l.finishes, 0);
	rpc_call_unref(c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_send_finish),
		cmocka_unit_test(test_close),
		cmocka_unit_test(test_sink_refuses),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
