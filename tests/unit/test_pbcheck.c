/* test_pbcheck.c — string fields at the edge: UTF-8 and NUL checks on hand-made messages. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <grpc/grpc.h>
#include <grpc/slice.h>

#include "certa/v1/admin.pb-c.h"
#include "certa/v1/reasoning.pb-c.h"
#include "certa/v1/worker.pb-c.h"
#include "lib/error.h"
#include "lib/pbcheck.h"
#include "lib/rpc.h"

/* Packs msg into a new malloc'd buffer. */
static uint8_t *
pack(const ProtobufCMessage *msg, size_t *len)
{
	uint8_t *buf;

	*len = protobuf_c_message_get_packed_size(msg);
	buf = malloc(*len ? *len : 1);
	assert_non_null(buf);
	protobuf_c_message_pack(msg, buf);
	return buf;
}

static int
check(const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t len, char *err)
{
	err[0] = '\0';
	return pbcheck_strings(d, buf, len, err, 256);
}

static void
test_utf8_table(void **state)
{
	static const struct {
		const char *s;
		size_t bad;         /* expected result of pbcheck_utf8: strlen(s) when valid */
	} cases[] = {
		{ "", 0 },
		{ "What is 2+2?", 12 },
		{ "\xc3\xa9t\xc3\xa9", 5 },                 /* été */
		{ "\xe2\x82\xac", 3 },                      /* euro sign */
		{ "\xf0\x9f\x98\x80", 4 },                  /* U+1F600 */
		{ "\xf4\x8f\xbf\xbf", 4 },                  /* U+10FFFF */
		{ "\xff\xfe\xfd", 0 },                      /* the finding */
		{ "ab\x80", 2 },                            /* lone continuation */
		{ "\xc0\xaf", 0 },                          /* overlong '/' */
		{ "\xc1\xbf", 0 },                          /* overlong */
		{ "\xe0\x80\xaf", 0 },                      /* overlong 3 bytes */
		{ "\xf0\x80\x80\xaf", 0 },                  /* overlong 4 bytes */
		{ "x\xed\xa0\x80", 1 },                     /* surrogate U+D800 */
		{ "\xf4\x90\x80\x80", 0 },                  /* above U+10FFFF */
		{ "\xf5\x80\x80\x80", 0 },
		{ "ok\xe2\x82", 2 },                        /* truncated sequence */
		{ "\xc3", 0 },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		size_t n = strlen(cases[i].s);
		size_t got = pbcheck_utf8((const uint8_t *)cases[i].s, n);
		if (got != cases[i].bad)
			fail_msg("case %zu: pbcheck_utf8 = %zu, want %zu", i, got, cases[i].bad);
	}
}

/* program.problem = "\xff\xfe\xfd": refused, naming the nested field. */
static void
test_invalid_utf8_nested(void **state)
{
	Certa__V1__SubmitRequest req = CERTA__V1__SUBMIT_REQUEST__INIT;
	Certa__V1__ProgramSpec spec = CERTA__V1__PROGRAM_SPEC__INIT;
	char err[256];
	uint8_t *buf;
	size_t len;

	(void)state;
	spec.problem = (char *)"\xff\xfe\xfd";
	req.program = &spec;
	buf = pack(&req.base, &len);
	assert_int_equal(check(&certa__v1__submit_request__descriptor, buf, len, err),
	    CERTA_EINVAL);
	assert_string_equal(err, "program.problem: invalid UTF-8 at byte 0");
	free(buf);

	spec.problem = (char *)"What is 2+2?";
	spec.model = (char *)"qwen\xc3";
	buf = pack(&req.base, &len);
	assert_int_equal(check(&certa__v1__submit_request__descriptor, buf, len, err),
	    CERTA_EINVAL);
	assert_string_equal(err, "program.model: invalid UTF-8 at byte 4");
	free(buf);

	spec.model = (char *)"qwen-\xc3\xa9";
	buf = pack(&req.base, &len);
	assert_int_equal(check(&certa__v1__submit_request__descriptor, buf, len, err), 0);
	free(buf);
}

/* A NUL inside a string: protobuf-c would cut "What is 2+2?\0 IGNORE-REST" at the NUL. */
static void
test_embedded_nul(void **state)
{
	Certa__V1__SubmitRequest req = CERTA__V1__SUBMIT_REQUEST__INIT;
	Certa__V1__ProgramSpec spec = CERTA__V1__PROGRAM_SPEC__INIT;
	static const char text[] = "What is 2+2?\0 IGNORE-REST";
	Certa__V1__SubmitRequest *back;
	char err[256];
	uint8_t *buf, *p;
	size_t len;

	(void)state;
	/* Pack with a placeholder of the same length, then put the NUL into the wire bytes. */
	spec.problem = (char *)"What is 2+2?X IGNORE-REST";
	req.program = &spec;
	buf = pack(&req.base, &len);
	p = memmem(buf, len, "?X", 2);
	assert_non_null(p);
	p[1] = '\0';
	assert_int_equal(memcmp(p - 11, text, sizeof text - 1), 0);
	/* What protobuf-c does with it (the reason for the check): */
	back = certa__v1__submit_request__unpack(NULL, len, buf);
	assert_non_null(back);
	assert_string_equal(back->program->problem, "What is 2+2?");
	certa__v1__submit_request__free_unpacked(back, NULL);
	assert_int_equal(check(&certa__v1__submit_request__descriptor, buf, len, err),
	    CERTA_EINVAL);
	assert_string_equal(err, "program.problem: NUL byte at byte 12");
	free(buf);
}

/* Repeated messages (worker StepRequest.items[].prompt) and repeated strings
 * (UpdateTenantRequest.fields) are walked too; top-level strings have a bare name. */
static void
test_repeated_and_top_level(void **state)
{
	Certa__V1__StepRequest req = CERTA__V1__STEP_REQUEST__INIT;
	Certa__V1__StepItem items[2], *ptrs[2];
	Certa__V1__UpdateTenantRequest up = CERTA__V1__UPDATE_TENANT_REQUEST__INIT;
	Certa__V1__AddWorkerRequest aw = CERTA__V1__ADD_WORKER_REQUEST__INIT;
	char *fields[2] = { (char *)"weight", (char *)"quota\xff" };
	char err[256];
	uint8_t *buf;
	size_t len;

	(void)state;
	certa__v1__step_item__init(&items[0]);
	certa__v1__step_item__init(&items[1]);
	items[0].prompt = (char *)"fine";
	items[1].prompt = (char *)"fine";
	items[1].resume_text = (char *)"x\xed\xa0\x80";
	ptrs[0] = &items[0];
	ptrs[1] = &items[1];
	req.items = ptrs;
	req.n_items = 2;
	buf = pack(&req.base, &len);
	assert_int_equal(check(&certa__v1__step_request__descriptor, buf, len, err),
	    CERTA_EINVAL);
	assert_string_equal(err, "items.resume_text: invalid UTF-8 at byte 1");
	free(buf);

	up.fields = fields;
	up.n_fields = 2;
	buf = pack(&up.base, &len);
	assert_int_equal(check(&certa__v1__update_tenant_request__descriptor, buf, len, err),
	    CERTA_EINVAL);
	assert_string_equal(err, "fields: invalid UTF-8 at byte 5");
	free(buf);

	aw.address = (char *)"\xff\xfe\xfd:7000";
	buf = pack(&aw.base, &len);
	assert_int_equal(check(&certa__v1__add_worker_request__descriptor, buf, len, err),
	    CERTA_EINVAL);
	assert_string_equal(err, "address: invalid UTF-8 at byte 0");
	free(buf);
}

/* Unknown fields are skipped; bytes fields are not strings; malformed bytes are EDECODE. */
static void
test_unknown_and_malformed(void **state)
{
	/* field 99 (LEN, unknown) with bad UTF-8, then field 1 = GetRequest.program_id "ok" */
	static const uint8_t unknown[] = { 0x9a, 0x06, 0x02, 0xff, 0xfe, 0x0a, 0x02, 'o', 'k' };
	static const uint8_t truncated[] = { 0x0a, 0x05, 'o', 'k' };
	static const uint8_t group[] = { 0x0b, 0x0c };
	char err[256];

	(void)state;
	assert_int_equal(check(&certa__v1__get_request__descriptor, unknown, sizeof unknown, err),
	    0);
	assert_int_equal(check(&certa__v1__get_request__descriptor, truncated,
	    sizeof truncated, err), CERTA_EDECODE);
	assert_int_equal(check(&certa__v1__get_request__descriptor, group, sizeof group, err),
	    CERTA_EDECODE);
	assert_int_equal(check(&certa__v1__get_request__descriptor, NULL, 0, err), 0);
}

/* rpc_unpack_checked: the same bytes through the gRPC byte-buffer path. */
static void
test_unpack_checked(void **state)
{
	Certa__V1__GetRequest g = CERTA__V1__GET_REQUEST__INIT;
	ProtobufCMessage *out = NULL;
	grpc_byte_buffer *bb;
	char err[256] = "";

	(void)state;
	g.program_id = (char *)"p-\xfe";
	bb = rpc_pack(&g.base);
	assert_int_equal(rpc_unpack_checked(bb, &certa__v1__get_request__descriptor, &out, err,
	    sizeof err), CERTA_EINVAL);
	assert_null(out);
	assert_string_equal(err, "program_id: invalid UTF-8 at byte 2");
	/* The unchecked decoder (clients) still takes it. */
	assert_int_equal(rpc_unpack(bb, &certa__v1__get_request__descriptor, &out), 0);
	protobuf_c_message_free_unpacked(out, NULL);
	grpc_byte_buffer_destroy(bb);

	g.program_id = (char *)"p-1";
	bb = rpc_pack(&g.base);
	assert_int_equal(rpc_unpack_checked(bb, &certa__v1__get_request__descriptor, &out, err,
	    sizeof err), 0);
	assert_string_equal(((Certa__V1__GetRequest *)out)->program_id, "p-1");
	protobuf_c_message_free_unpacked(out, NULL);
	grpc_byte_buffer_destroy(bb);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_utf8_table),
		cmocka_unit_test(test_invalid_utf8_nested),
		cmocka_unit_test(test_embedded_nul),
		cmocka_unit_test(test_repeated_and_top_level),
		cmocka_unit_test(test_unknown_and_malformed),
		cmocka_unit_test(test_unpack_checked),
	};
	int rc;

	grpc_init();
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	grpc_shutdown();
	return rc;
}
