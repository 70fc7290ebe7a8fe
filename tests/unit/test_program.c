/* test_program.c — daemon/program: the chain model, the state machine and the codec to LMDB
 * records (pack -> unpack -> program_from_records gives the same program back). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "daemon/program.h"
#include "lib/log.h"
#include "lib/pbarena.h"

/* A program as the core would hold it after two steps. */
static struct program *
sample(void)
{
	struct program *p = program_new("p-0000000000aa000001", "acme", "What is 6*7?",
	    SCHED_ALGO_SC, 3, 9000);
	struct program_step_stats s0 = { 0.9, 0.5, 1.25, 0 }, s1 = { 0.95, 0.75, 0.5, 2.5 };

	assert_non_null(p);
	assert_int_equal(program_set_str(&p->model, "qwen3-8b"), 0);
	assert_int_equal(program_set_str(&p->idempotency_key, "req-1"), 0);
	p->priority = 3;
	p->deadline_ms = 1700000123456;
	p->temperature = 0.6f;
	p->top_p = 0.95f;
	p->created_ms = 1700000000000;
	program_set_state(p, PROGRAM_RUNNING);
	p->moe_top_p = 0.7f;
	assert_int_equal(program_chain_append(&p->chains[0], "Six times", 64, "42", 5, &s0,
	    false, NULL, false), 0);
	assert_int_equal(program_chain_append(&p->chains[0], " seven", 128, "42", 5, &s1,
	    false, NULL, true), 0);
	assert_int_equal(program_chain_append(&p->chains[2], "It is", 64, "41", 4, NULL, true,
	    "41", true), 0);
	p->steps = 2;
	p->certaindex = 0.75;
	return p;
}

/* Packs and unpacks a message: what LMDB stores and gives back. */
static ProtobufCMessage *
roundtrip(const ProtobufCMessage *m, const ProtobufCMessageDescriptor *d)
{
	size_t len = protobuf_c_message_get_packed_size(m);
	uint8_t *buf = malloc(len ? len : 1);
	ProtobufCMessage *out;

	assert_non_null(buf);
	protobuf_c_message_pack(m, buf);
	out = protobuf_c_message_unpack(d, NULL, len, buf);
	free(buf);
	assert_non_null(out);
	return out;
}

/* Encodes p as the records persist.c writes, decodes them back. */
static struct program *
through_records(const struct program *p)
{
	Certa__V1__ProgramRecord rec = CERTA__V1__PROGRAM_RECORD__INIT, *rrec;
	Certa__V1__RequestRecord *reqs[8] = { NULL };
	struct program_pb pb;
	struct program *q;
	uint32_t i;

	assert_true(p->n <= 8);
	assert_int_equal(program_pb_fill(p, &pb), 0);
	rec.program = &pb.msg;
	rec.step_count = p->steps;
	rec.budget = p->budget;
	rrec = (Certa__V1__ProgramRecord *)roundtrip(&rec.base,
	    &certa__v1__program_record__descriptor);
	program_pb_free(&pb);
	for (i = 0; i < p->n; i++) {
		struct chain_pb cpb;
		assert_int_equal(program_chain_pb_fill(p, &p->chains[i], &cpb), 0);
		reqs[i] = (Certa__V1__RequestRecord *)roundtrip(&cpb.msg.base,
		    &certa__v1__request_record__descriptor);
		program_chain_pb_free(&cpb);
	}
	q = program_from_records(rrec, reqs, p->n);
	for (i = 0; i < p->n; i++)
		certa__v1__request_record__free_unpacked(reqs[i], NULL);
	certa__v1__program_record__free_unpacked(rrec, NULL);
	return q;
}

static void
test_codec_roundtrip(void **state)
{
	struct program *p = sample(), *q;
	uint32_t i;

	(void)state;
	q = through_records(p);
	assert_non_null(q);
	assert_string_equal(q->id, p->id);
	assert_string_equal(q->tenant, "acme");
	assert_string_equal(q->problem, "What is 6*7?");
	assert_string_equal(q->model, "qwen3-8b");
	assert_string_equal(q->idempotency_key, "req-1");
	assert_int_equal(q->algo, SCHED_ALGO_SC);
	assert_int_equal(q->n, 3);
	assert_int_equal(q->budget, 9000);
	assert_int_equal(q->priority, 3);
	assert_int_equal(q->deadline_ms, p->deadline_ms);
	assert_true(q->temperature == p->temperature && q->top_p == p->top_p);
	assert_int_equal(q->created_ms, p->created_ms);
	assert_int_equal(q->state, PROGRAM_RUNNING);
	assert_int_equal(q->steps, 2);
	assert_true(q->certaindex == p->certaindex);
	for (i = 0; i < p->n; i++) {
		const struct chain *a = &p->chains[i], *b = &q->chains[i];
		assert_int_equal(b->tokens, a->tokens);
		assert_int_equal(b->finished, a->finished);
		assert_int_equal(b->thinking_done, a->thinking_done);
		assert_int_equal(b->nprobes, a->nprobes);
		assert_int_equal(b->probe_tokens, a->probe_tokens);
		assert_string_equal(b->text != NULL ? b->text : "", a->text != NULL ? a->text : "");
	}
	assert_string_equal(q->chains[0].text, "Six times seven");
	assert_string_equal(q->chains[0].probes[1].answer, "42");
	/* Step statistics and MoE routing survive the records; NULL stats read unknown. */
	assert_true(q->moe_top_p == 0.7f);
	assert_true(q->chains[0].probes[0].confidence == 0.9);
	assert_true(q->chains[0].probes[0].min_prob == 0.5);
	assert_true(q->chains[0].probes[0].entropy == 1.25);
	assert_true(q->chains[0].probes[0].experts == 0);
	assert_true(q->chains[0].probes[1].experts == 2.5);
	assert_true(q->chains[2].probes[0].min_prob < 0 && q->chains[2].probes[0].entropy < 0 &&
	    q->chains[2].probes[0].experts < 0);
	assert_true(program_experts_per_token(q) == 2.5);
	assert_string_equal(q->chains[2].final_answer, "41");
	assert_int_equal(program_tokens(q), program_tokens(p));
	assert_int_equal(program_probe_tokens(q), program_probe_tokens(p));
	program_free(q);
	program_free(p);
}

/* The packed bytes of m (freed by the caller). */
static uint8_t *
packed(const ProtobufCMessage *m, size_t *len)
{
	uint8_t *buf;

	*len = protobuf_c_message_get_packed_size(m);
	buf = malloc(*len ? *len : 1);
	assert_non_null(buf);
	protobuf_c_message_pack(m, buf);
	return buf;
}

/* a and b pack to the same bytes. */
static void
assert_same_packing(const ProtobufCMessage *a, const ProtobufCMessage *b)
{
	size_t alen, blen;
	uint8_t *abuf = packed(a, &alen), *bbuf = packed(b, &blen);

	assert_int_equal(alen, blen);
	assert_memory_equal(abuf, bbuf, blen);
	free(abuf);
	free(bbuf);
}

/* Filled in an arena reused across programs (as persist_build does every step), a program's
 * records pack to the same bytes as filled on the heap: nothing of the program filled there
 * before shows through; a chain filled from its probe point `from` on carries those points
 * only, at their own indexes. */
static void
test_fill_in_arena_matches_heap(void **state)
{
	struct program *big = sample(), *p = sample();
	struct program_step_stats st = { 0.5, 0.25, 2.0, 1 };
	struct pbarena *a = pbarena_new(256);   /* small: the fills span chunks */
	struct program_pb hb, ab;
	struct chain_pb hc, ac;
	size_t round;
	uint32_t i;
	int k;

	(void)state;
	assert_non_null(a);
	/* big: long answers on every chain, routing events; p differs in ids and answers. */
	for (k = 0; k < 20; k++)
		for (i = 0; i < big->n; i++)
			assert_int_equal(program_chain_append(&big->chains[i], "more text of big ",
			    1000 + k, "a much longer answer from the big program", 3, &st, false,
			    NULL, false), 0);
	assert_int_equal(program_set_str(&p->id, "p-0000000000bb000002"), 0);
	assert_int_equal(program_chain_append(&p->chains[1], "x", 7, "7", 1, NULL, false, NULL,
	    false), 0);
	for (round = 0; round < 3; round++) {
		/* Fill big in the arena, then p in the same arena after a reset. */
		assert_int_equal(program_pb_fill_in(big, &ab, a), 0);
		for (i = 0; i < big->n; i++)
			assert_int_equal(program_chain_pb_fill_in(big, &big->chains[i], &ac, a, 0), 0);
		pbarena_reset(a);
		assert_int_equal(program_pb_fill_in(p, &ab, a), 0);
		assert_int_equal(program_pb_fill(p, &hb), 0);
		assert_same_packing(&ab.msg.base, &hb.msg.base);
		program_pb_free(&ab);
		program_pb_free(&hb);
		for (i = 0; i < p->n; i++) {
			assert_int_equal(program_chain_pb_fill_in(p, &p->chains[i], &ac, a, 0), 0);
			assert_int_equal(program_chain_pb_fill(p, &p->chains[i], &hc), 0);
			assert_same_packing(&ac.msg.base, &hc.msg.base);
			program_chain_pb_free(&ac);
			program_chain_pb_free(&hc);
		}
		pbarena_reset(a);
	}
	/* From probe point 15 of big's chain 0 (20 + 2 of sample's): 7 points, at 15..21. */
	assert_int_equal(program_chain_pb_fill_in(big, &big->chains[0], &ac, a, 15), 0);
	assert_int_equal(ac.msg.n_probes, big->chains[0].nprobes - 15);
	assert_null(ac.probe_ptrs[14]);
	for (i = 15; i < big->chains[0].nprobes; i++) {
		assert_ptr_equal(ac.msg.probes[i - 15], ac.probe_ptrs[i]);
		assert_int_equal(ac.probe_ptrs[i]->position, big->chains[0].probes[i].position);
	}
	/* From past the end: no probe points. */
	assert_int_equal(program_chain_pb_fill_in(big, &big->chains[0], &ac, a, 1000), 0);
	assert_int_equal(ac.msg.n_probes, 0);
	pbarena_free(a);
	program_free(big);
	program_free(p);
}

/* program_set_str keeps the string it holds when the value is the same (no new copy), and
 * replaces it otherwise; NULL reads as "". */
static void
test_set_str_same_value_kept(void **state)
{
	char *field = NULL, *held;

	(void)state;
	assert_int_equal(program_set_str(&field, "42"), 0);
	held = field;
	assert_int_equal(program_set_str(&field, "42"), 0);
	assert_ptr_equal(field, held);
	assert_int_equal(program_set_str(&field, "43"), 0);
	assert_string_equal(field, "43");
	assert_int_equal(program_set_str(&field, NULL), 0);
	assert_string_equal(field, "");
	held = field;
	assert_int_equal(program_set_str(&field, ""), 0);
	assert_ptr_equal(field, held);
	free(field);
}

static void
test_codec_finished_result(void **state)
{
	struct program *p = sample(), *q;

	(void)state;
	program_set_state(p, PROGRAM_FAILED);
	p->reason = SCHED_REASON_FAILED;
	p->low_confidence = true;
	p->finished_ms = 1700000999000;
	assert_int_equal(program_set_str(&p->answer, "42"), 0);
	assert_int_equal(program_set_str(&p->error_message, "worker refused"), 0);
	q = through_records(p);
	assert_non_null(q);
	assert_int_equal(q->state, PROGRAM_FAILED);
	assert_true(program_is_terminal(q));
	assert_int_equal(q->reason, SCHED_REASON_FAILED);
	assert_true(q->low_confidence);
	assert_int_equal(q->finished_ms, p->finished_ms);
	assert_string_equal(q->answer, "42");
	assert_string_equal(q->error_message, "worker refused");
	program_free(q);
	program_free(p);
}

/* A chain record whose index is beyond the program's n is an inconsistent record. */
static void
test_codec_rejects_foreign_chain(void **state)
{
	struct program *p = sample();
	Certa__V1__ProgramRecord rec = CERTA__V1__PROGRAM_RECORD__INIT;
	Certa__V1__RequestRecord rr = CERTA__V1__REQUEST_RECORD__INIT, *reqs[1] = { &rr };
	struct program_pb pb;

	(void)state;
	assert_int_equal(program_pb_fill(p, &pb), 0);
	rec.program = &pb.msg;
	rr.index = 3;
	assert_null(program_from_records(&rec, reqs, 1));
	pb.spec.n = 0;
	assert_null(program_from_records(&rec, NULL, 0));
	program_pb_free(&pb);
	program_free(p);
}

static void
test_chain_keys_sort_by_index(void **state)
{
	struct program *p = program_new("p-1", "t", "x", SCHED_ALGO_SC, 12, 100);
	char k2[64], k10[64];

	(void)state;
	assert_non_null(p);
	program_chain_key(p, 2, k2, sizeof k2);
	program_chain_key(p, 10, k10, sizeof k10);
	assert_string_equal(k2, "p-1/0002");
	assert_true(strcmp(k2, k10) < 0);
	program_free(p);
}

static void
test_states_and_names(void **state)
{
	struct program *p = program_new("p-2", "t", "x", SCHED_ALGO_COT, 1, 100);

	(void)state;
	assert_non_null(p);
	assert_int_equal(p->state, PROGRAM_QUEUED);
	assert_false(program_is_terminal(p));
	program_set_state(p, PROGRAM_RUNNING);
	program_set_state(p, PROGRAM_QUEUED);   /* worker lost */
	program_set_state(p, PROGRAM_CANCELLED);
	assert_true(program_is_terminal(p));
	assert_string_equal(program_state_name(PROGRAM_CANCELLED), "cancelled");
	program_free(p);
}

/* program_fmt_key writes what snprintf("%s/%0*u") writes, truncated alike, and returns its
 * length, for ids of every length around the buffer's size, values with every digit count and
 * widths 0-8. */
static void
test_fmt_key_equals_snprintf(void **state)
{
	static const uint32_t vals[] = { 0, 1, 9, 10, 99, 100, 999, 1000, 9999, 10000, 123456,
	    4294967295u };
	char id[64], want[40], got[40];
	size_t idlen, len, k;
	unsigned width;

	(void)state;
	for (idlen = 0; idlen < 40; idlen++) {
		memset(id, 'a' + (int)(idlen % 26), idlen);
		id[idlen] = '\0';
		for (k = 0; k < sizeof vals / sizeof vals[0]; k++)
			for (width = 0; width <= 8; width++)
				for (len = 1; len <= sizeof want; len += 3) {
					int r = snprintf(want, len, "%s/%0*u", id, (int)width,
					    (unsigned)vals[k]);
					memset(got, 'x', sizeof got);
					assert_int_equal(program_fmt_key(got, len, id, vals[k], width),
					    (size_t)r);
					assert_string_equal(got, want);
				}
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_codec_roundtrip),
		cmocka_unit_test(test_fill_in_arena_matches_heap),
		cmocka_unit_test(test_set_str_same_value_kept),
		cmocka_unit_test(test_fmt_key_equals_snprintf),
		cmocka_unit_test(test_codec_finished_result),
		cmocka_unit_test(test_codec_rejects_foreign_chain),
		cmocka_unit_test(test_chain_keys_sort_by_index),
		cmocka_unit_test(test_states_and_names),
	};

	log_init("test_program", LOG_FORMAT_PLAIN, LOG_LVL_WARN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
