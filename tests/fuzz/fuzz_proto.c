/*
 * fuzz_proto.c — libFuzzer target for every protobuf decoder at certa's edges.
 *
 * The first input byte picks a message type (modulo the number of types; FUZZ_PROTO_TYPES=1 in
 * the environment lists them); the rest is its wire encoding.  The types are the
 * request and reply messages of every method of the certa.v1 Reasoning, Admin and Worker
 * services and grpc.health.v1.Health (taken from the generated service descriptors, so a new
 * method is fuzzed without touching this file), and the LMDB records certad reads back at
 * start (certa.v1 records).  Each input goes through rpc_unpack, the function the gRPC server
 * and client use for every message they receive (lib/rpc.h), and then:
 *   - every string of the decoded message is read to its end;
 *   - packing it again and decoding that gives the same bytes (a stable round trip);
 *   - a ProgramRecord, with the RequestRecords that follow it in the input, is turned into a
 *     program the way certad's recovery does (program_from_records) and encoded back to the
 *     wire form (program_pb_fill).
 * The handlers' own checks need a running core (daemon/core.c core_validate is static); what
 * the edge accepts is checked here only up to decoding.
 */
#include <grpc/byte_buffer.h>
#include <grpc/slice.h>
#include <protobuf-c/protobuf-c.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "certa/v1/admin.pb-c.h"
#include "certa/v1/reasoning.pb-c.h"
#include "certa/v1/records.pb-c.h"
#include "certa/v1/worker.pb-c.h"
#include "daemon/program.h"
#include "grpc/health/v1/health.pb-c.h"
#include "lib/log.h"
#include "lib/rpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const ProtobufCServiceDescriptor *const fuzz_proto_services[] = {
	&certa__v1__reasoning__descriptor,
	&certa__v1__admin__descriptor,
	&certa__v1__worker__descriptor,
	&grpc__health__v1__health__descriptor,
};

static const ProtobufCMessageDescriptor *const fuzz_proto_records[] = {
	&certa__v1__meta_record__descriptor,
	&certa__v1__program_record__descriptor,
	&certa__v1__request_record__descriptor,
	&certa__v1__tenant_record__descriptor,
	&certa__v1__policy_record__descriptor,
	&certa__v1__history_record__descriptor,
	&certa__v1__idempotency_record__descriptor,
	&certa__v1__policy_audit__descriptor,
};

#define FUZZ_PROTO_MAX_TYPES 128
static const ProtobufCMessageDescriptor *fuzz_proto_types[FUZZ_PROTO_MAX_TYPES];
static size_t fuzz_proto_ntypes;

static void
fuzz_proto_add(const ProtobufCMessageDescriptor *d)
{
	for (size_t i = 0; i < fuzz_proto_ntypes; i++)
		if (fuzz_proto_types[i] == d)
			return;
	if (fuzz_proto_ntypes == FUZZ_PROTO_MAX_TYPES)
		abort();
	fuzz_proto_types[fuzz_proto_ntypes++] = d;
}

/* Reads every string of m (and of its sub-messages) to its end; returns the number of unknown
 * fields kept in m and its sub-messages. */
static size_t
fuzz_proto_walk(const ProtobufCMessage *m)
{
	const ProtobufCMessageDescriptor *d = m->descriptor;
	size_t unknown = m->n_unknown_fields;

	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		const char *base = (const char *)m + f->offset;

		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			size_t n = *(const size_t *)((const char *)m + f->quantifier_offset);
			void *const *v = *(void *const *const *)base;

			for (size_t j = 0; j < n; j++) {
				if (f->type == PROTOBUF_C_TYPE_STRING)
					(void)strlen(v[j]);
				else if (f->type == PROTOBUF_C_TYPE_MESSAGE)
					unknown += fuzz_proto_walk(v[j]);
			}
			continue;
		}
		if (f->type == PROTOBUF_C_TYPE_STRING) {
			const char *s = *(const char *const *)base;
			if (s != NULL)
				(void)strlen(s);
		} else if (f->type == PROTOBUF_C_TYPE_MESSAGE) {
			const ProtobufCMessage *sub = *(const ProtobufCMessage *const *)base;
			if (sub != NULL)
				unknown += fuzz_proto_walk(sub);
		}
	}
	return unknown;
}

/* Decodes data[0..len) as desc through rpc_unpack; NULL when it is not a valid message. */
static ProtobufCMessage *
fuzz_proto_unpack(const ProtobufCMessageDescriptor *desc, const uint8_t *data, size_t len)
{
	grpc_slice s = grpc_slice_from_copied_buffer((const char *)data, len);
	grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
	ProtobufCMessage *m = NULL;

	grpc_slice_unref(s);
	if (rpc_unpack(bb, desc, &m) != 0)
		m = NULL;
	grpc_byte_buffer_destroy(bb);
	return m;
}

static uint8_t *
fuzz_proto_pack(const ProtobufCMessage *m, size_t *len)
{
	uint8_t *buf;

	*len = protobuf_c_message_get_packed_size(m);
	buf = malloc(*len ? *len : 1);
	if (buf == NULL || protobuf_c_message_pack(m, buf) != *len)
		abort();
	return buf;
}

/* ProgramRecord followed by RequestRecords: the rest of the input is length-prefixed records
 * (one byte of length each). */
static void
fuzz_proto_recover(const Certa__V1__ProgramRecord *rec, const uint8_t *rest, size_t len)
{
	Certa__V1__RequestRecord *reqs[8];
	size_t nreqs = 0;
	struct program_pb pb;
	struct program *p;

	while (len > 0 && nreqs < 8) {
		size_t n = rest[0] < len - 1 ? rest[0] : len - 1;

		reqs[nreqs++] = certa__v1__request_record__unpack(NULL, n, rest + 1);
		rest += n + 1;
		len -= n + 1;
	}
	p = program_from_records(rec, reqs, nreqs);
	if (p != NULL) {
		if (program_pb_fill(p, &pb) == 0)
			program_pb_free(&pb);
		(void)program_tokens(p);
		program_free(p);
	}
	for (size_t i = 0; i < nreqs; i++)
		if (reqs[i] != NULL)
			certa__v1__request_record__free_unpacked(reqs[i], NULL);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const ProtobufCMessageDescriptor *desc;
	ProtobufCMessage *m, *m2;
	uint8_t *p1, *p2;
	size_t n1, n2, split, unknown;

	if (fuzz_proto_ntypes == 0) {
		/* Below LOG_LVL_ERR: the decoders log nothing while fuzzed. */
		log_init("fuzz", LOG_FORMAT_PLAIN, (enum log_level)(LOG_LVL_ERR - 1));
		for (size_t s = 0; s < sizeof fuzz_proto_services / sizeof fuzz_proto_services[0];
		    s++)
			for (unsigned i = 0; i < fuzz_proto_services[s]->n_methods; i++) {
				fuzz_proto_add(fuzz_proto_services[s]->methods[i].input);
				fuzz_proto_add(fuzz_proto_services[s]->methods[i].output);
			}
		for (size_t i = 0; i < sizeof fuzz_proto_records / sizeof fuzz_proto_records[0]; i++)
			fuzz_proto_add(fuzz_proto_records[i]);
		/* tests/fuzz/make_corpus.py asks which selector byte means which type. */
		if (getenv("FUZZ_PROTO_TYPES") != NULL)
			for (size_t i = 0; i < fuzz_proto_ntypes; i++)
				fprintf(stderr, "type %zu %s\n", i, fuzz_proto_types[i]->name);
	}
	if (size < 1 || size > 1 << 20)
		return -1;
	desc = fuzz_proto_types[data[0] % fuzz_proto_ntypes];
	data++;
	size--;

	/* A ProgramRecord input may carry RequestRecords after a 2-byte length of its own. */
	split = size;
	if (desc == &certa__v1__program_record__descriptor && size >= 2) {
		split = ((size_t)data[0] << 8 | data[1]);
		data += 2;
		size -= 2;
		if (split > size)
			split = size;
	}
	m = fuzz_proto_unpack(desc, data, split);
	if (m == NULL)
		return 0;
	unknown = fuzz_proto_walk(m);
	/* Round trip.  Only for messages without unknown fields: protobuf-c keeps an unknown field
	 * numbered 0 on decode but refuses the bytes it packs it back into. */
	p1 = fuzz_proto_pack(m, &n1);
	m2 = fuzz_proto_unpack(desc, p1, n1);
	if (m2 == NULL && unknown == 0)
		abort();   /* what we packed must decode */
	if (m2 != NULL) {
		p2 = fuzz_proto_pack(m2, &n2);
		if (n1 != n2 || memcmp(p1, p2, n1) != 0)
			abort();   /* and pack to the same bytes */
		free(p2);
		protobuf_c_message_free_unpacked(m2, NULL);
	}
	if (desc == &certa__v1__program_record__descriptor)
		fuzz_proto_recover((const Certa__V1__ProgramRecord *)m, data + split, size - split);
	free(p1);
	protobuf_c_message_free_unpacked(m, NULL);
	return 0;
}
