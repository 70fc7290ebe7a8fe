/* test_pbarena.c — bump allocator for protobuf-c unpacking. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "lib/pbarena.h"
#include "certa/v1/worker.pb-c.h"

/* A Step reply of n results with texts of about len bytes, packed. */
static uint8_t *
reply_packed(size_t n, size_t len, size_t *size)
{
	Certa__V1__StepReply r = CERTA__V1__STEP_REPLY__INIT;
	Certa__V1__StepResult *res = calloc(n, sizeof *res), **ptrs = calloc(n, sizeof *ptrs);
	Certa__V1__ProbeResult *pr = calloc(n, sizeof *pr);
	char (*ids)[32] = calloc(n, sizeof *ids);
	char *text = malloc(len + 1);
	uint8_t *buf;
	size_t i;

	assert_non_null(res);
	assert_non_null(ptrs);
	assert_non_null(pr);
	assert_non_null(ids);
	assert_non_null(text);
	for (i = 0; i < len; i++)
		text[i] = (char)('a' + i % 26);
	text[len] = '\0';
	for (i = 0; i < n; i++) {
		certa__v1__step_result__init(&res[i]);
		certa__v1__probe_result__init(&pr[i]);
		snprintf(ids[i], sizeof ids[i], "p-%zu/0", i);
		res[i].request_id = ids[i];
		res[i].text = text + i % (len / 2 + 1);
		res[i].total_tokens = 64 * (i + 1);
		res[i].new_tokens = 64;
		pr[i].answer = (char *)"42";
		pr[i].confidence = 0.5;
		res[i].probe = &pr[i];
		ptrs[i] = &res[i];
	}
	r.n_results = n;
	r.results = ptrs;
	*size = protobuf_c_message_get_packed_size(&r.base);
	buf = malloc(*size);
	assert_non_null(buf);
	protobuf_c_message_pack(&r.base, buf);
	free(text);
	free(ids);
	free(pr);
	free(ptrs);
	free(res);
	return buf;
}

/* A message unpacked in the arena equals the default unpack (packed again byte for byte),
 * its pieces are aligned and inside the arena's accounting, and a reset drops it all. */
static void
test_unpack_equals_default(void **state)
{
	struct pbarena *a = pbarena_new(4096);
	ProtobufCMessage *m1, *m2;
	uint8_t *buf, *b1, *b2;
	size_t size, s1, s2, i, round;

	(void)state;
	assert_non_null(a);
	for (round = 0; round < 4; round++) {
		size_t n = 50 + round * 40;
		Certa__V1__StepReply *r;
		buf = reply_packed(n, 300, &size);
		m1 = protobuf_c_message_unpack(&certa__v1__step_reply__descriptor, NULL, size, buf);
		m2 = protobuf_c_message_unpack(&certa__v1__step_reply__descriptor,
		    pbarena_allocator(a), size, buf);
		assert_non_null(m1);
		assert_non_null(m2);
		assert_true(pbarena_used(a) >= size);   /* the texts alone take that much */
		r = (Certa__V1__StepReply *)m2;
		assert_int_equal(r->n_results, n);
		for (i = 0; i < n; i++) {
			assert_int_equal((uintptr_t)r->results[i] % _Alignof(max_align_t), 0);
			assert_int_equal(r->results[i]->total_tokens, 64 * (i + 1));
			assert_string_equal(r->results[i]->probe->answer, "42");
		}
		s1 = protobuf_c_message_get_packed_size(m1);
		s2 = protobuf_c_message_get_packed_size(m2);
		assert_int_equal(s1, s2);
		b1 = malloc(s1);
		b2 = malloc(s2);
		protobuf_c_message_pack(m1, b1);
		protobuf_c_message_pack(m2, b2);
		assert_memory_equal(b1, b2, s1);
		/* free_unpacked with the arena's allocator frees nothing (valgrind/ASan would see
		 * a bad free otherwise); the reset drops it. */
		protobuf_c_message_free_unpacked(m2, pbarena_allocator(a));
		protobuf_c_message_free_unpacked(m1, NULL);
		pbarena_reset(a);
		assert_int_equal(pbarena_used(a), 0);
		free(b1);
		free(b2);
		free(buf);
	}
	pbarena_free(a);
}

/* A round larger than the chunk takes several chunks; after its reset the arena holds at
 * most one chunk, and the same round again fits in it. */
static void
test_settles_on_one_chunk(void **state)
{
	struct pbarena *a = pbarena_new(1024);
	ProtobufCAllocator *al;
	size_t i;
	char *p;

	(void)state;
	assert_non_null(a);
	al = pbarena_allocator(a);
	for (i = 0; i < 100; i++) {
		p = al->alloc(al->allocator_data, 100 + i);
		assert_non_null(p);
		memset(p, (int)i, 100 + i);
	}
	assert_true(pbarena_chunks(a) > 1);
	pbarena_reset(a);
	assert_true(pbarena_chunks(a) <= 1);
	for (i = 0; i < 100; i++)
		assert_non_null(al->alloc(al->allocator_data, 100 + i));
	assert_int_equal(pbarena_chunks(a), 1);
	/* One allocation larger than any chunk. */
	p = al->alloc(al->allocator_data, 1u << 20);
	assert_non_null(p);
	memset(p, 1, 1u << 20);
	assert_int_equal((uintptr_t)p % _Alignof(max_align_t), 0);
	/* Memory handed out twice would show here: two live blocks never overlap. */
	{
		char *x = al->alloc(al->allocator_data, 24), *y = al->alloc(al->allocator_data, 24);
		assert_true(x + 24 <= y || y + 24 <= x);
	}
	pbarena_reset(a);
	assert_int_equal(pbarena_used(a), 0);
	pbarena_free(a);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_unpack_equals_default),
		cmocka_unit_test(test_settles_on_one_chunk),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
