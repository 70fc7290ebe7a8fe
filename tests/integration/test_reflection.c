/*
 * test_reflection.c — gRPC server reflection (grpc.reflection.v1 and v1alpha) on the real
 * certad (tenant TCP listener and admin unix socket) and the real certa-worker, with a small
 * client over the raw bidirectional stream (Debian has no grpcurl): several requests on one
 * stream, as grpcurl sends them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "certa/internal/descview.pb-c.h"
#include "grpc/reflection/v1/reflection.pb-c.h"
#include "lib/rpc.h"
#include "tests/support/harness.h"
#include "tests/support/itest.h"

#define RS_MS 10000

/* One reflection stream on a private queue. */
struct rs {
	grpc_channel *ch;
	grpc_completion_queue *cq;
	grpc_call *call;
	grpc_metadata_array md_init, md_trail;
	grpc_status_code status;
	grpc_slice details;
};

static gpr_timespec
rs_deadline(void)
{
	return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
	    gpr_time_from_millis(RS_MS, GPR_TIMESPAN));
}

/* Runs one batch and waits for it; returns its ok. */
static int
rs_batch(struct rs *s, const grpc_op *ops, size_t n, void *tag)
{
	grpc_event ev;

	assert_int_equal(grpc_call_start_batch(s->call, ops, n, tag, NULL), GRPC_CALL_OK);
	ev = grpc_completion_queue_pluck(s->cq, tag, rs_deadline(), NULL);
	assert_int_equal(ev.type, GRPC_OP_COMPLETE);
	return ev.success;
}

static void
rs_open(struct rs *s, const char *target, const char *version)
{
	grpc_channel_credentials *creds = grpc_insecure_credentials_create();
	char path[128];
	grpc_slice method;
	grpc_op ops[2];

	memset(s, 0, sizeof *s);
	s->ch = grpc_channel_create(target, creds, NULL);
	grpc_channel_credentials_release(creds);
	s->cq = grpc_completion_queue_create_for_pluck(NULL);
	snprintf(path, sizeof path, "/grpc.reflection.%s.ServerReflection/ServerReflectionInfo",
	    version);
	method = grpc_slice_from_copied_string(path);
	s->call = grpc_channel_create_call(s->ch, NULL, GRPC_PROPAGATE_DEFAULTS, s->cq, method,
	    NULL, rs_deadline(), NULL);
	grpc_slice_unref(method);
	assert_non_null(s->call);
	grpc_metadata_array_init(&s->md_init);
	grpc_metadata_array_init(&s->md_trail);
	memset(ops, 0, sizeof ops);
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[0].flags = GRPC_INITIAL_METADATA_WAIT_FOR_READY;
	ops[1].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[1].data.recv_initial_metadata.recv_initial_metadata = &s->md_init;
	assert_true(rs_batch(s, ops, 2, (void *)1));
}

/* Sends one request and reads its response (freed by the caller). */
static Grpc__Reflection__V1__ServerReflectionResponse *
rs_ask(struct rs *s, const Grpc__Reflection__V1__ServerReflectionRequest *req)
{
	grpc_byte_buffer *out = rpc_pack(&req->base), *in = NULL;
	ProtobufCMessage *m = NULL;
	grpc_op op;

	memset(&op, 0, sizeof op);
	op.op = GRPC_OP_SEND_MESSAGE;
	op.data.send_message.send_message = out;
	assert_true(rs_batch(s, &op, 1, (void *)2));
	grpc_byte_buffer_destroy(out);
	memset(&op, 0, sizeof op);
	op.op = GRPC_OP_RECV_MESSAGE;
	op.data.recv_message.recv_message = &in;
	assert_true(rs_batch(s, &op, 1, (void *)3));
	assert_non_null(in);
	assert_int_equal(rpc_unpack(in, &grpc__reflection__v1__server_reflection_response__descriptor,
	    &m), 0);
	grpc_byte_buffer_destroy(in);
	return (Grpc__Reflection__V1__ServerReflectionResponse *)m;
}

/* Half-closes, reads the status (must be OK: the stream ends when the client is done). */
static void
rs_close(struct rs *s)
{
	grpc_op ops[2];

	memset(ops, 0, sizeof ops);
	ops[0].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	ops[1].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[1].data.recv_status_on_client.trailing_metadata = &s->md_trail;
	ops[1].data.recv_status_on_client.status = &s->status;
	ops[1].data.recv_status_on_client.status_details = &s->details;
	assert_true(rs_batch(s, ops, 2, (void *)4));
	assert_int_equal(s->status, GRPC_STATUS_OK);
	grpc_slice_unref(s->details);
	grpc_metadata_array_destroy(&s->md_init);
	grpc_metadata_array_destroy(&s->md_trail);
	grpc_call_unref(s->call);
	grpc_channel_destroy(s->ch);
	grpc_completion_queue_shutdown(s->cq);
	while (grpc_completion_queue_pluck(s->cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME),
	    NULL).type != GRPC_QUEUE_SHUTDOWN)
		;
	grpc_completion_queue_destroy(s->cq);
}

/* list_services must name every service in want (NULL-terminated). */
static void
assert_lists(struct rs *s, const char *const *want)
{
	Grpc__Reflection__V1__ServerReflectionRequest req =
	    GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;
	Grpc__Reflection__V1__ServerReflectionResponse *r;
	size_t i, j;

	req.message_request_case =
	    GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES;
	req.list_services = (char *)"*";
	r = rs_ask(s, &req);
	assert_int_equal(r->message_response_case,
	    GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_LIST_SERVICES_RESPONSE);
	for (i = 0; want[i] != NULL; i++) {
		int found = 0;
		for (j = 0; j < r->list_services_response->n_service; j++)
			found |= strcmp(r->list_services_response->service[j]->name, want[i]) == 0;
		if (!found)
			fail_msg("list_services does not name %s", want[i]);
	}
	protobuf_c_message_free_unpacked(&r->base, NULL);
}

/* The files of a file_descriptor_response, decoded: the first must be first_name, every
 * name in deps must be among them, and when service is not NULL the first file declares
 * service with method. */
static void
assert_files(const Grpc__Reflection__V1__ServerReflectionResponse *r, const char *first_name,
    const char *const *deps, const char *service, const char *method)
{
	const Grpc__Reflection__V1__FileDescriptorResponse *f;
	Certa__Internal__DescFile *files[32];
	size_t i, j, n;
	int found;

	assert_int_equal(r->message_response_case,
	    GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE);
	f = r->file_descriptor_response;
	n = f->n_file_descriptor_proto;
	assert_true(n >= 1 && n <= 32);
	for (i = 0; i < n; i++) {
		files[i] = certa__internal__desc_file__unpack(NULL,
		    f->file_descriptor_proto[i].len, f->file_descriptor_proto[i].data);
		assert_non_null(files[i]);
		for (j = 0; j < i; j++)
			assert_string_not_equal(files[i]->name, files[j]->name);   /* each once */
	}
	assert_string_equal(files[0]->name, first_name);
	for (i = 0; deps != NULL && deps[i] != NULL; i++) {
		found = 0;
		for (j = 0; j < n; j++)
			found |= strcmp(files[j]->name, deps[i]) == 0;
		if (!found)
			fail_msg("%s came without %s", first_name, deps[i]);
	}
	if (service != NULL) {
		found = 0;
		for (i = 0; i < files[0]->n_service; i++) {
			if (strcmp(files[0]->service[i]->name, service) != 0)
				continue;
			for (j = 0; j < files[0]->service[i]->n_method; j++)
				found |= strcmp(files[0]->service[i]->method[j]->name, method) == 0;
		}
		if (!found)
			fail_msg("%s does not declare %s.%s", first_name, service, method);
	}
	for (i = 0; i < n; i++)
		certa__internal__desc_file__free_unpacked(files[i], NULL);
}

static Grpc__Reflection__V1__ServerReflectionResponse *
ask_symbol(struct rs *s, const char *sym)
{
	Grpc__Reflection__V1__ServerReflectionRequest req =
	    GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;

	req.message_request_case =
	    GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL;
	req.file_containing_symbol = (char *)sym;
	return rs_ask(s, &req);
}

static Grpc__Reflection__V1__ServerReflectionResponse *
ask_file(struct rs *s, const char *name)
{
	Grpc__Reflection__V1__ServerReflectionRequest req =
	    GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__INIT;

	req.message_request_case =
	    GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME;
	req.file_by_filename = (char *)name;
	return rs_ask(s, &req);
}

static void
assert_not_found(Grpc__Reflection__V1__ServerReflectionResponse *r)
{
	assert_int_equal(r->message_response_case,
	    GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE);
	assert_int_equal(r->error_response->error_code, GRPC_STATUS_NOT_FOUND);
	protobuf_c_message_free_unpacked(&r->base, NULL);
}

/* certad's tenant listener, v1 and v1alpha: services, Submit by symbol, files by name. */
static void
test_certad_reflection(void **state)
{
	static const char *const services[] = { "certa.v1.Reasoning", "certa.v1.Admin",
	    "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection",
	    "grpc.reflection.v1alpha.ServerReflection", NULL };
	static const char *const reasoning_deps[] = { "certa/v1/common.proto", NULL };
	static const char *const versions[] = { "v1", "v1alpha" };
	struct itest *e = *state;
	Grpc__Reflection__V1__ServerReflectionResponse *r;
	char target[64];
	struct rs s;
	size_t v;

	itest_start(e, "0", ITEST_ANONYMOUS, NULL);
	snprintf(target, sizeof target, "127.0.0.1:%d", e->dport);
	for (v = 0; v < 2; v++) {
		rs_open(&s, target, versions[v]);
		assert_lists(&s, services);
		r = ask_symbol(&s, "certa.v1.Reasoning.Submit");
		assert_files(r, "certa/v1/reasoning.proto", reasoning_deps, "Reasoning", "Submit");
		protobuf_c_message_free_unpacked(&r->base, NULL);
		r = ask_symbol(&s, "certa.v1.Reasoning");
		assert_files(r, "certa/v1/reasoning.proto", reasoning_deps, NULL, NULL);
		protobuf_c_message_free_unpacked(&r->base, NULL);
		r = ask_symbol(&s, "certa.v1.ProgramSpec");       /* a message of common.proto */
		assert_files(r, "certa/v1/common.proto", NULL, NULL, NULL);
		protobuf_c_message_free_unpacked(&r->base, NULL);
		r = ask_file(&s, "certa/v1/admin.proto");
		assert_files(r, "certa/v1/admin.proto", reasoning_deps, "Admin", "ListWorkers");
		protobuf_c_message_free_unpacked(&r->base, NULL);
		r = ask_file(&s, "grpc/health/v1/health.proto");
		assert_files(r, "grpc/health/v1/health.proto", NULL, "Health", "Check");
		protobuf_c_message_free_unpacked(&r->base, NULL);
		assert_not_found(ask_symbol(&s, "certa.v1.Reasoning.NoSuchMethod"));
		assert_not_found(ask_file(&s, "certa/v1/nope.proto"));
		rs_close(&s);
	}
}

/* The admin unix socket serves it too (no admin credential needed for descriptors). */
static void
test_admin_socket_reflection(void **state)
{
	static const char *const services[] = { "certa.v1.Admin", "certa.v1.Reasoning",
	    "grpc.reflection.v1.ServerReflection", NULL };
	struct itest *e = *state;
	Grpc__Reflection__V1__ServerReflectionResponse *r;
	char target[600];
	struct rs s;

	itest_start(e, "0", ITEST_ADMIN, NULL);
	snprintf(target, sizeof target, "unix:%s/admin.sock", e->dir);
	rs_open(&s, target, "v1");
	assert_lists(&s, services);
	r = ask_symbol(&s, "certa.v1.Admin.ListWorkers");
	assert_files(r, "certa/v1/admin.proto", NULL, "Admin", "ListWorkers");
	protobuf_c_message_free_unpacked(&r->base, NULL);
	rs_close(&s);
}

/* certa-worker: its own service and health. */
static void
test_worker_reflection(void **state)
{
	static const char *const services[] = { "certa.v1.Worker", "grpc.health.v1.Health",
	    "grpc.reflection.v1.ServerReflection", NULL };
	struct itest *e = *state;
	Grpc__Reflection__V1__ServerReflectionResponse *r;
	char target[64];
	struct rs s;

	itest_start(e, "0", ITEST_ANONYMOUS, NULL);
	snprintf(target, sizeof target, "127.0.0.1:%d", e->wport);
	rs_open(&s, target, "v1alpha");
	assert_lists(&s, services);
	r = ask_symbol(&s, "certa.v1.Worker.Step");
	assert_files(r, "certa/v1/worker.proto", NULL, "Worker", "Step");
	protobuf_c_message_free_unpacked(&r->base, NULL);
	rs_close(&s);
}

static int
setup(void **state)
{
	*state = itest_new(sizeof(struct itest), 120, ITEST_TRACES_NEED);
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_certad_reflection, setup, itest_teardown),
		cmocka_unit_test_setup_teardown(test_admin_socket_reflection, setup,
		    itest_teardown),
		cmocka_unit_test_setup_teardown(test_worker_reflection, setup, itest_teardown),
	};
	int rc;

	grpc_init();
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	grpc_shutdown();
	return rc;
}
