/* test_rpc.c — protobuf-c/gRPC glue: byte buffers, server and client calls over loopback. */
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
#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/slice.h>

#include "certa/v1/reasoning.pb-c.h"
#include "certa/v1/worker.pb-c.h"
#include "lib/cqbridge.h"
#include "lib/error.h"
#include "lib/log.h"
#include "lib/rpc.h"
#include "lib/rpc_client.h"
#include "lib/rpc_server.h"
#include "tests/support/loopsrv.h"

/* ---- byte buffer round trips ---- */

static void
fill_step(Certa__V1__StepRequest *req, Certa__V1__StepItem *items, Certa__V1__StepItem **ptrs,
    size_t n, char *bigtext)
{
	size_t i;

	certa__v1__step_request__init(req);
	for (i = 0; i < n; i++) {
		certa__v1__step_item__init(&items[i]);
		items[i].request_id = (char *)"p1/0";
		items[i].prompt = bigtext;
		items[i].sample_index = (uint32_t)i;
		items[i].max_new_tokens = 64;
		ptrs[i] = &items[i];
	}
	req->n_items = n;
	req->items = ptrs;
}

static void
test_pack_unpack_roundtrip(void **state)
{
	Certa__V1__StepRequest req, *out = NULL;
	Certa__V1__StepItem items[3], *ptrs[3];
	char text[] = "What is $1+1$? \xc3\xa9";
	grpc_byte_buffer *bb;

	(void)state;
	fill_step(&req, items, ptrs, 3, text);
	bb = rpc_pack(&req.base);
	assert_non_null(bb);
	assert_int_equal(rpc_unpack(bb, &certa__v1__step_request__descriptor,
	    (ProtobufCMessage **)&out), 0);
	assert_non_null(out);
	assert_int_equal(out->n_items, 3);
	assert_string_equal(out->items[2]->prompt, text);
	assert_int_equal(out->items[2]->sample_index, 2);
	assert_int_equal(out->items[1]->max_new_tokens, 64);
	protobuf_c_message_free_unpacked(&out->base, NULL);
	grpc_byte_buffer_destroy(bb);
}

/* A message split across many slices (as gRPC delivers large messages) must decode. */
static void
test_unpack_multi_slice(void **state)
{
	Certa__V1__StepRequest req, *out = NULL;
	Certa__V1__StepItem items[2], *ptrs[2];
	char *big;
	uint8_t *packed;
	size_t n, i, nslices = 0;
	grpc_slice slices[64];
	grpc_byte_buffer *bb;

	(void)state;
	big = malloc(200000);
	assert_non_null(big);
	for (i = 0; i < 199999; i++)
		big[i] = (char)('a' + i % 26);
	big[199999] = '\0';
	fill_step(&req, items, ptrs, 2, big);
	n = protobuf_c_message_get_packed_size(&req.base);
	packed = malloc(n);
	protobuf_c_message_pack(&req.base, packed);
	for (i = 0; i < n; i += 7919)  /* odd slice size cuts fields in the middle */
		slices[nslices++] = grpc_slice_from_copied_buffer((char *)packed + i,
		    n - i < 7919 ? n - i : 7919);
	assert_true(nslices > 10);
	bb = grpc_raw_byte_buffer_create(slices, nslices);
	for (i = 0; i < nslices; i++)
		grpc_slice_unref(slices[i]);
	assert_int_equal(rpc_unpack(bb, &certa__v1__step_request__descriptor,
	    (ProtobufCMessage **)&out), 0);
	assert_int_equal(out->n_items, 2);
	assert_string_equal(out->items[1]->prompt, big);
	protobuf_c_message_free_unpacked(&out->base, NULL);
	grpc_byte_buffer_destroy(bb);
	free(packed);
	free(big);
}

/* Garbage bytes yield CERTA_EDECODE and leave the out-parameter alone. */
static void
test_unpack_garbage(void **state)
{
	static const char *const garbage[] = {
		"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",  /* overlong varint */
		"\x0a\x7f" "abc",                                  /* length past the end */
		"\x0a\x05\xff\xff\xff\xff\xff",                    /* nested message is junk */
		"\x0f",                                            /* wire type 7 */
	};
	size_t i;
	ProtobufCMessage *sentinel = (ProtobufCMessage *)&garbage, *out;

	(void)state;
	for (i = 0; i < sizeof garbage / sizeof garbage[0]; i++) {
		grpc_slice s = grpc_slice_from_copied_buffer(garbage[i], strlen(garbage[i]));
		grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
		out = sentinel;
		assert_int_equal(rpc_unpack(bb, &certa__v1__step_request__descriptor, &out),
		    CERTA_EDECODE);
		assert_ptr_equal(out, sentinel);
		grpc_byte_buffer_destroy(bb);
		grpc_slice_unref(s);
	}
	out = sentinel;
	assert_int_equal(rpc_unpack(NULL, &certa__v1__step_request__descriptor, &out),
	    CERTA_EDECODE);
	/* Random bytes: never a crash. */
	srand(42);
	for (i = 0; i < 5000; i++) {
		uint8_t buf[64];
		size_t j, len = (size_t)(rand() % 64);
		for (j = 0; j < len; j++)
			buf[j] = (uint8_t)rand();
		grpc_slice s = grpc_slice_from_copied_buffer((char *)buf, len);
		grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
		out = NULL;
		if (rpc_unpack(bb, &certa__v1__step_request__descriptor, &out) == 0)
			protobuf_c_message_free_unpacked(out, NULL);
		grpc_byte_buffer_destroy(bb);
		grpc_slice_unref(s);
	}
}

static void
test_status_mapping(void **state)
{
	(void)state;
	assert_int_equal(rpc_status_from_error(0), GRPC_STATUS_OK);
	assert_int_equal(rpc_status_from_error(CERTA_ENOTFOUND), GRPC_STATUS_NOT_FOUND);
	assert_int_equal(rpc_status_from_error(CERTA_EDECODE), GRPC_STATUS_INVALID_ARGUMENT);
	assert_int_equal(rpc_status_from_error(CERTA_ECAPACITY), GRPC_STATUS_RESOURCE_EXHAUSTED);
	assert_int_equal(rpc_status_from_error(CERTA_EAUTH), GRPC_STATUS_UNAUTHENTICATED);
	assert_int_equal(rpc_status_from_error(-ENOMEM), GRPC_STATUS_INTERNAL);
	assert_int_equal(rpc_error_from_status(GRPC_STATUS_NOT_FOUND), CERTA_ENOTFOUND);
	assert_int_equal(rpc_error_from_status(GRPC_STATUS_UNAVAILABLE), CERTA_EUNAVAIL);
	assert_string_equal(rpc_status_name(GRPC_STATUS_RESOURCE_EXHAUSTED),
	    "RESOURCE_EXHAUSTED");
	assert_string_equal(rpc_status_name((grpc_status_code)99), "UNKNOWN");
	assert_string_equal(certa_strerror(CERTA_ESCHEMA), "store schema version mismatch");
	assert_string_equal(certa_strerror(-ENOENT), strerror(ENOENT));
}

/* ---- a real server on a loop thread ---- */

struct fixture {
	struct loopsrv *ls;
	char target[64];
	int cancels;          /* stream cancel callbacks seen (loop thread) */
	int held_streams;
	struct rpc_call *held[4];
	/* async client test */
	struct rpc_channel *loop_ch;
	struct rpc_channel *dead_ch;
	int async_status;
	char async_reply[64];
	int async_done;
	pthread_mutex_t lock;
};

static void
h_info(struct rpc_call *call, const ProtobufCMessage *req, void *ctx)
{
	Certa__V1__InfoReply r = CERTA__V1__INFO_REPLY__INIT;

	(void)req;
	(void)ctx;
	r.engine = (char *)"test";
	r.capacity = 7;
	r.model = (char *)(rpc_call_metadata(call, "x-model") ? rpc_call_metadata(call,
	    "x-model") : "none");
	rpc_call_reply(call, &r.base);
}

static void
h_fail(struct rpc_call *call, const ProtobufCMessage *req, void *ctx)
{
	const Certa__V1__GetRequest *g = (const Certa__V1__GetRequest *)req;

	(void)ctx;
	rpc_call_fail(call, CERTA_ENOTFOUND, "no program %s", g->program_id);
}

/* Streams one reply per requested item, each carrying its request id. */
static void
h_stream(struct rpc_call *call, const ProtobufCMessage *req, void *ctx)
{
	const Certa__V1__StepRequest *s = (const Certa__V1__StepRequest *)req;
	size_t i;

	(void)ctx;
	for (i = 0; i < s->n_items; i++) {
		Certa__V1__StepReply r = CERTA__V1__STEP_REPLY__INIT;
		Certa__V1__StepResult res = CERTA__V1__STEP_RESULT__INIT, *rp = &res;
		res.request_id = s->items[i]->request_id;
		res.new_tokens = (uint32_t)i;
		r.n_results = 1;
		r.results = &rp;
		assert_int_equal(rpc_call_send(call, &r.base), 0);
	}
	rpc_call_finish(call, GRPC_STATUS_OK, NULL);
}

static void
on_stream_cancel(struct rpc_call *call, void *arg)
{
	struct fixture *f = arg;
	int i;

	pthread_mutex_lock(&f->lock);
	f->cancels++;
	pthread_mutex_unlock(&f->lock);
	for (i = 0; i < f->held_streams; i++) {
		if (f->held[i] == call) {
			f->held[i] = NULL;
			rpc_call_unref(call);
		}
	}
}

/* Sends one message and keeps the stream open until the client goes away. */
static void
h_hold(struct rpc_call *call, const ProtobufCMessage *req, void *ctx)
{
	struct fixture *f = ctx;
	Certa__V1__StepReply r = CERTA__V1__STEP_REPLY__INIT;

	(void)req;
	rpc_call_send(call, &r.base);
	rpc_call_ref(call);
	rpc_call_on_cancel(call, on_stream_cancel, f);
	f->held[f->held_streams++] = call;
}

static grpc_status_code
authz(struct rpc_call *call, const struct rpc_method *m, void *ctx, char *msg, size_t len)
{
	const char *tok;

	(void)ctx;
	if (!(m->flags & 1))
		return GRPC_STATUS_OK;
	tok = rpc_call_metadata(call, "authorization");
	if (tok == NULL || strcmp(tok, "Bearer sesame") != 0) {
		snprintf(msg, len, "missing or bad token");
		return GRPC_STATUS_UNAUTHENTICATED;
	}
	return GRPC_STATUS_OK;
}

static const struct rpc_method test_methods[] = {
	{ "/t.T/Info", RPC_UNARY, &certa__v1__info_request__descriptor, h_info, 0 },
	{ "/t.T/Secret", RPC_UNARY, &certa__v1__info_request__descriptor, h_info, 1 },
	{ "/t.T/Fail", RPC_UNARY, &certa__v1__get_request__descriptor, h_fail, 0 },
	{ "/t.T/Stream", RPC_SERVER_STREAM, &certa__v1__step_request__descriptor, h_stream, 0 },
	{ "/t.T/Hold", RPC_SERVER_STREAM, &certa__v1__step_request__descriptor, h_hold, 0 },
};

/* The server has shut down (loop thread): close the loop's client channels. */
static void
stopped(void *arg)
{
	struct fixture *f = arg;

	if (f->loop_ch != NULL) {
		rpc_channel_free(f->loop_ch);
		f->loop_ch = NULL;
	}
	if (f->dead_ch != NULL) {
		rpc_channel_free(f->dead_ch);
		f->dead_ch = NULL;
	}
}

static void
on_async_reply(void *arg, grpc_status_code status, const char *details, ProtobufCMessage *reply)
{
	struct fixture *f = arg;

	(void)details;
	pthread_mutex_lock(&f->lock);
	f->async_status = status;
	if (reply != NULL) {
		snprintf(f->async_reply, sizeof f->async_reply, "%s",
		    ((Certa__V1__InfoReply *)reply)->engine);
		protobuf_c_message_free_unpacked(reply, NULL);
	}
	f->async_done = 1;
	pthread_mutex_unlock(&f->lock);
}

/* Commands from the test thread: 'a' start an async client call, 'u' one to a dead port. */
static int
on_cmd(char c, void *arg)
{
	struct fixture *f = arg;
	struct cqbridge *br = loopsrv_bridge(f->ls);
	Certa__V1__InfoRequest req = CERTA__V1__INFO_REQUEST__INIT;

	if (c == 'a') {
		if (f->loop_ch == NULL)
			assert_int_equal(rpc_channel_new(f->target, &f->loop_ch), 0);
		assert_int_equal(rpc_client_unary(f->loop_ch, br, "/t.T/Info", &req.base,
		    &certa__v1__info_reply__descriptor, 5000, NULL, 0, on_async_reply, f), 0);
	} else if (c == 'u') {
		/* Async call to a port with nobody listening. */
		assert_int_equal(rpc_channel_new("127.0.0.1:1", &f->dead_ch), 0);
		assert_int_equal(rpc_client_unary(f->dead_ch, br, "/t.T/Info", &req.base,
		    &certa__v1__info_reply__descriptor, 2000, NULL, 0, on_async_reply, f), 0);
	}
	return 0;
}

static int
configure(struct rpc_server *srv, void *arg)
{
	rpc_server_set_authorizer(srv, authz, arg);
	return 0;
}

static int
setup(void **state)
{
	struct fixture *f = calloc(1, sizeof *f);
	struct loopsrv_options o = {
		.methods = test_methods,
		.nmethods = sizeof test_methods / sizeof test_methods[0],
		.configure = configure,
		.command = on_cmd,
		.stopped = stopped,
	};

	pthread_mutex_init(&f->lock, NULL);
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
	pthread_mutex_destroy(&f->lock);
	free(f);
	return 0;
}

static void
test_unary_over_loopback(void **state)
{
	struct fixture *f = *state;
	struct rpc_channel *ch;
	Certa__V1__InfoRequest req = CERTA__V1__INFO_REQUEST__INIT;
	Certa__V1__InfoReply *rep = NULL;
	struct rpc_metadata md[] = { { "x-model", "qwen" } };
	grpc_status_code st;
	char *details = NULL;

	assert_int_equal(rpc_channel_new(f->target, &ch), 0);
	assert_int_equal(rpc_sync_unary(ch, "/t.T/Info", &req.base,
	    &certa__v1__info_reply__descriptor, 5000, md, 1, (ProtobufCMessage **)&rep, &st,
	    &details), 0);
	assert_int_equal(st, GRPC_STATUS_OK);
	assert_non_null(rep);
	assert_string_equal(rep->engine, "test");
	assert_string_equal(rep->model, "qwen");
	assert_int_equal(rep->capacity, 7);
	protobuf_c_message_free_unpacked(&rep->base, NULL);
	free(details);
	rpc_channel_free(ch);
}

/* Errors: handler status, unknown method, malformed body, authorizer. */
static void
test_unary_errors(void **state)
{
	struct fixture *f = *state;
	struct rpc_channel *ch;
	Certa__V1__GetRequest g = CERTA__V1__GET_REQUEST__INIT;
	Certa__V1__InfoRequest req = CERTA__V1__INFO_REQUEST__INIT;
	ProtobufCMessage *rep = NULL;
	grpc_status_code st;
	char *details = NULL;
	struct rpc_metadata good[] = { { "authorization", "Bearer sesame" } };
	struct rpc_metadata bad[] = { { "authorization", "Bearer nope" } };

	assert_int_equal(rpc_channel_new(f->target, &ch), 0);

	g.program_id = (char *)"p-42";
	assert_int_equal(rpc_sync_unary(ch, "/t.T/Fail", &g.base,
	    &certa__v1__program__descriptor, 5000, NULL, 0, &rep, &st, &details), 0);
	assert_int_equal(st, GRPC_STATUS_NOT_FOUND);
	assert_null(rep);
	assert_string_equal(details, "no program p-42");
	free(details);

	assert_int_equal(rpc_sync_unary(ch, "/t.T/Nope", &req.base,
	    &certa__v1__info_reply__descriptor, 5000, NULL, 0, &rep, &st, &details), 0);
	assert_int_equal(st, GRPC_STATUS_UNIMPLEMENTED);
	assert_non_null(strstr(details, "/t.T/Nope"));
	free(details);

	/* GetRequest's field 1 is a string: as a StepRequest its bytes are a junk StepItem. */
	g.program_id = (char *)"\xff\xff\xff\xff\xff";
	assert_int_equal(rpc_sync_unary(ch, "/t.T/Stream", &g.base,
	    &certa__v1__step_reply__descriptor, 5000, NULL, 0, &rep, &st, &details), 0);
	assert_int_equal(st, GRPC_STATUS_INVALID_ARGUMENT);
	assert_non_null(strstr(details, "certa.v1.StepRequest"));
	free(details);

	assert_int_equal(rpc_sync_unary(ch, "/t.T/Secret", &req.base,
	    &certa__v1__info_reply__descriptor, 5000, NULL, 0, &rep, &st, &details), 0);
	assert_int_equal(st, GRPC_STATUS_UNAUTHENTICATED);
	assert_string_equal(details, "missing or bad token");
	free(details);
	assert_int_equal(rpc_sync_unary(ch, "/t.T/Secret", &req.base,
	    &certa__v1__info_reply__descriptor, 5000, bad, 1, &rep, &st, &details), 0);
	assert_int_equal(st, GRPC_STATUS_UNAUTHENTICATED);
	free(details);
	assert_int_equal(rpc_sync_unary(ch, "/t.T/Secret", &req.base,
	    &certa__v1__info_reply__descriptor, 5000, good, 1, &rep, &st, &details), 0);
	assert_int_equal(st, GRPC_STATUS_OK);
	protobuf_c_message_free_unpacked(rep, NULL);
	free(details);

	/* Upper-case metadata keys are refused before anything is sent. */
	{
		struct rpc_metadata upper[] = { { "Authorization", "x" } };
		assert_int_equal(rpc_sync_unary(ch, "/t.T/Info", &req.base,
		    &certa__v1__info_reply__descriptor, 5000, upper, 1, &rep, &st, &details),
		    CERTA_EINVAL);
	}
	rpc_channel_free(ch);
}

static void
test_server_streaming(void **state)
{
	struct fixture *f = *state;
	struct rpc_channel *ch;
	struct rpc_stream *s;
	Certa__V1__StepRequest req;
	Certa__V1__StepItem items[20], *ptrs[20];
	char text[] = "x";
	Certa__V1__StepReply *m;
	char *details = NULL;
	int i, rc;

	fill_step(&req, items, ptrs, 20, text);
	for (i = 0; i < 20; i++) {
		static char ids[20][16];
		snprintf(ids[i], sizeof ids[i], "r%d", i);
		items[i].request_id = ids[i];
	}
	assert_int_equal(rpc_channel_new(f->target, &ch), 0);
	assert_int_equal(rpc_sync_stream_open(ch, "/t.T/Stream", &req.base,
	    &certa__v1__step_reply__descriptor, 10000, NULL, 0, &s), 0);
	for (i = 0; i < 20; i++) {
		char want[16];
		rc = rpc_sync_stream_next(s, 5000, (ProtobufCMessage **)&m);
		assert_int_equal(rc, 1);
		assert_int_equal(m->n_results, 1);
		snprintf(want, sizeof want, "r%d", i);
		assert_string_equal(m->results[0]->request_id, want);  /* in order */
		assert_int_equal(m->results[0]->new_tokens, i);
		protobuf_c_message_free_unpacked(&m->base, NULL);
	}
	assert_int_equal(rpc_sync_stream_next(s, 5000, (ProtobufCMessage **)&m), 0);
	assert_int_equal(rpc_sync_stream_close(s, &details), GRPC_STATUS_OK);
	free(details);
	rpc_channel_free(ch);
}

/* A client that cancels a long stream: the server learns about it and frees the call. */
static void
test_stream_client_cancel(void **state)
{
	struct fixture *f = *state;
	struct rpc_channel *ch;
	struct rpc_stream *s;
	Certa__V1__StepRequest req = CERTA__V1__STEP_REQUEST__INIT;
	Certa__V1__StepReply *m;
	int i, cancels = 0;

	assert_int_equal(rpc_channel_new(f->target, &ch), 0);
	assert_int_equal(rpc_sync_stream_open(ch, "/t.T/Hold", &req.base,
	    &certa__v1__step_reply__descriptor, 10000, NULL, 0, &s), 0);
	assert_int_equal(rpc_sync_stream_next(s, 5000, (ProtobufCMessage **)&m), 1);
	protobuf_c_message_free_unpacked(&m->base, NULL);
	/* Nothing more comes: a short wait times out and the stream stays usable. */
	assert_int_equal(rpc_sync_stream_next(s, 100, (ProtobufCMessage **)&m), CERTA_ETIMEOUT);
	rpc_sync_stream_cancel(s);
	assert_int_equal(rpc_sync_stream_close(s, NULL), GRPC_STATUS_CANCELLED);
	for (i = 0; i < 500 && cancels == 0; i++) {
		usleep(10000);
		pthread_mutex_lock(&f->lock);
		cancels = f->cancels;
		pthread_mutex_unlock(&f->lock);
	}
	assert_int_equal(cancels, 1);
	rpc_channel_free(ch);
}

static void
test_deadline_exceeded(void **state)
{
	struct fixture *f = *state;
	struct rpc_channel *ch;
	struct rpc_stream *s;
	Certa__V1__StepRequest req = CERTA__V1__STEP_REQUEST__INIT;
	Certa__V1__StepReply *m;
	int rc;

	assert_int_equal(rpc_channel_new(f->target, &ch), 0);
	assert_int_equal(rpc_sync_stream_open(ch, "/t.T/Hold", &req.base,
	    &certa__v1__step_reply__descriptor, 300, NULL, 0, &s), 0);
	assert_int_equal(rpc_sync_stream_next(s, 5000, (ProtobufCMessage **)&m), 1);
	protobuf_c_message_free_unpacked(&m->base, NULL);
	rc = rpc_sync_stream_next(s, 5000, (ProtobufCMessage **)&m);
	assert_int_equal(rc, 0);
	assert_int_equal(rpc_sync_stream_close(s, NULL), GRPC_STATUS_DEADLINE_EXCEEDED);
	rpc_channel_free(ch);
}

/* Async client calls complete on the loop thread through the bridge. */
static void
test_async_client(void **state)
{
	struct fixture *f = *state;
	int i, done = 0;

	assert_int_equal(loopsrv_cmd(f->ls, 'a'), 0);
	for (i = 0; i < 500 && !done; i++) {
		usleep(10000);
		pthread_mutex_lock(&f->lock);
		done = f->async_done;
		pthread_mutex_unlock(&f->lock);
	}
	assert_true(done);
	assert_int_equal(f->async_status, GRPC_STATUS_OK);
	assert_string_equal(f->async_reply, "test");

	f->async_done = 0;
	assert_int_equal(loopsrv_cmd(f->ls, 'u'), 0);
	for (done = 0, i = 0; i < 500 && !done; i++) {
		usleep(10000);
		pthread_mutex_lock(&f->lock);
		done = f->async_done;
		pthread_mutex_unlock(&f->lock);
	}
	assert_true(done);
	assert_int_equal(f->async_status, GRPC_STATUS_UNAVAILABLE);
}

/* Many concurrent streams and unary calls from several threads. */
static void *
hammer(void *arg)
{
	struct fixture *f = arg;
	struct rpc_channel *ch;
	Certa__V1__InfoRequest req = CERTA__V1__INFO_REQUEST__INIT;
	ProtobufCMessage *rep;
	grpc_status_code st;
	int i, ok = 0;

	if (rpc_channel_new(f->target, &ch) != 0)
		return NULL;
	for (i = 0; i < 200; i++) {
		rep = NULL;
		if (rpc_sync_unary(ch, "/t.T/Info", &req.base, &certa__v1__info_reply__descriptor,
		    5000, NULL, 0, &rep, &st, NULL) == 0 && st == GRPC_STATUS_OK) {
			ok++;
			protobuf_c_message_free_unpacked(rep, NULL);
		}
	}
	rpc_channel_free(ch);
	return (void *)(intptr_t)ok;
}

static void
test_concurrent_calls(void **state)
{
	struct fixture *f = *state;
	pthread_t t[4];
	void *r;
	int i;

	for (i = 0; i < 4; i++)
		assert_int_equal(pthread_create(&t[i], NULL, hammer, f), 0);
	for (i = 0; i < 4; i++) {
		pthread_join(t[i], &r);
		assert_int_equal((int)(intptr_t)r, 200);
	}
}

static void
set_flag(void *arg)
{
	*(int *)arg = 1;
}

/* Runs the loop until *flag is set or 5 s pass. */
static void
pump_until(struct event_base *base, int *flag)
{
	int i;

	for (i = 0; i < 500 && !*flag; i++) {
		struct timeval tv = { 0, 10000 };
		event_base_loopexit(base, &tv);
		event_base_dispatch(base);
	}
	assert_true(*flag);
}

/* Binding a port that is already taken fails loudly (SO_REUSEPORT is off). */
static void
test_listen_conflict(void **state)
{
	struct fixture *f = *state;
	struct event_base *base = event_base_new();
	struct cqbridge *br;
	struct rpc_server *srv;
	int port = 0, srv_done = 0, br_done = 0;

	assert_int_equal(cqbridge_new(base, &br), 0);
	assert_int_equal(rpc_server_new(br, test_methods, 1, NULL, &srv), 0);
	assert_int_equal(rpc_server_listen(srv, f->target, &port), CERTA_EUNAVAIL);
	rpc_server_shutdown(srv, set_flag, &srv_done);
	pump_until(base, &srv_done);
	cqbridge_shutdown(br, set_flag, &br_done);
	pump_until(base, &br_done);
	cqbridge_free(br);
	event_base_free(base);
}

/* The bridge's time budget: a turn stops taking ordinary completions once it is spent; an
 * urgent one runs at the next turn, ahead of what is queued. */
struct slow_tag {
	struct cqbridge_tag tag;
	int *ran;
	int sleep_us;
};

static void
on_slow_tag(struct cqbridge_tag *tag, int ok)
{
	struct slow_tag *t = (struct slow_tag *)tag;

	(void)ok;
	(*t->ran)++;
	if (t->sleep_us > 0)
		usleep((useconds_t)t->sleep_us);
}

/* The urgent tag: records how many ordinary ones had run when it ran. */
static int *urgent_seen;
static int urgent_at = -1;

static void
on_urgent_tag(struct cqbridge_tag *tag, int ok)
{
	(void)tag;
	(void)ok;
	urgent_at = *urgent_seen;
}

static void
on_bridge_turn(void *arg, double seconds, size_t ran)
{
	size_t *turns = arg;

	(void)seconds;
	assert_true(ran > 0);
	(*turns)++;
}

static void
test_bridge_budget(void **state)
{
	struct event_base *base = event_base_new();
	struct cqbridge *br;
	struct slow_tag t[40], urgent;
	int ran = 0, br_done = 0, before, i;
	size_t turns = 0;

	(void)state;
	assert_int_equal(cqbridge_new(base, &br), 0);
	cqbridge_on_turn(br, on_bridge_turn, &turns);
	cqbridge_set_budget(br, 10000);
	for (i = 0; i < 40; i++) {
		t[i].tag.fn = on_slow_tag;
		t[i].tag.urgent = 0;
		t[i].ran = &ran;
		t[i].sleep_us = 2000;
		cqbridge_post(br, &t[i].tag, 1);
	}
	/* One turn: 10 ms of 2 ms completions, not the 40 (CQBRIDGE_BATCH would allow them). */
	event_base_loop(base, EVLOOP_ONCE);
	assert_true(ran >= 1);
	assert_true(ran <= 7);
	assert_int_equal(turns, 1);
	urgent.tag.fn = on_urgent_tag;
	urgent.tag.urgent = 1;
	urgent_seen = &ran;
	cqbridge_post(br, &urgent.tag, 1);
	before = ran;
	/* The next turn (the zero-delay timer and the eventfd may both run one). */
	event_base_loop(base, EVLOOP_ONCE);
	assert_int_equal(urgent_at, before);
	assert_true(ran < 40);
	assert_true(ran - before <= 14);
	for (i = 0; i < 100 && ran < 40; i++)
		event_base_loop(base, EVLOOP_ONCE);
	assert_int_equal(ran, 40);
	assert_true(turns >= 40 / 7);
	/* No time budget: one turn runs them all. */
	cqbridge_set_budget(br, 0);
	ran = 0;
	for (i = 0; i < 40; i++) {
		t[i].sleep_us = 200;
		cqbridge_post(br, &t[i].tag, 1);
	}
	event_base_loop(base, EVLOOP_ONCE);
	assert_int_equal(ran, 40);
	cqbridge_shutdown(br, set_flag, &br_done);
	pump_until(base, &br_done);
	cqbridge_free(br);
	event_base_free(base);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pack_unpack_roundtrip),
		cmocka_unit_test(test_unpack_multi_slice),
		cmocka_unit_test(test_unpack_garbage),
		cmocka_unit_test(test_status_mapping),
		cmocka_unit_test_setup_teardown(test_unary_over_loopback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unary_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_server_streaming, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stream_client_cancel, setup, teardown),
		cmocka_unit_test_setup_teardown(test_deadline_exceeded, setup, teardown),
		cmocka_unit_test_setup_teardown(test_async_client, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_calls, setup, teardown),
		cmocka_unit_test_setup_teardown(test_listen_conflict, setup, teardown),
		cmocka_unit_test(test_bridge_budget),
	};
	int rc;

	log_init("test_rpc", LOG_FORMAT_PLAIN, LOG_LVL_WARN);
	grpc_init();
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	grpc_shutdown();
	return rc;
}
