/* rpc.c — message <-> byte buffer and status translation. */
#include "lib/rpc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/slice.h>

#include "lib/error.h"
#include "lib/pbcheck.h"

grpc_byte_buffer *
rpc_pack(const ProtobufCMessage *msg)
{
	size_t n = protobuf_c_message_get_packed_size(msg);
	uint8_t *buf;
	grpc_slice s;
	grpc_byte_buffer *bb;

	buf = malloc(n ? n : 1);
	if (buf == NULL)
		return NULL;
	protobuf_c_message_pack(msg, buf);
	s = grpc_slice_new(buf, n, free);
	bb = grpc_raw_byte_buffer_create(&s, 1);
	grpc_slice_unref(s);
	return bb;
}

/* Decodes bb; with err, also checks its strings on the same bytes before they are gone. */
static int
rpc_unpack_bytes(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *desc,
    ProtobufCAllocator *alloc, ProtobufCMessage **out, char *err, size_t errlen)
{
	grpc_byte_buffer_reader r;
	grpc_slice s;
	ProtobufCMessage *m;
	int rc = 0;

	if (bb == NULL)
		return CERTA_EDECODE;
	if (!grpc_byte_buffer_reader_init(&r, bb))
		return CERTA_EDECODE;
	s = grpc_byte_buffer_reader_readall(&r);
	grpc_byte_buffer_reader_destroy(&r);
	m = protobuf_c_message_unpack(desc, alloc, GRPC_SLICE_LENGTH(s), GRPC_SLICE_START_PTR(s));
	if (m != NULL && err != NULL)
		rc = pbcheck_strings(desc, GRPC_SLICE_START_PTR(s), GRPC_SLICE_LENGTH(s), err,
		    errlen);
	grpc_slice_unref(s);
	if (m == NULL)
		return CERTA_EDECODE;
	if (rc != 0) {
		protobuf_c_message_free_unpacked(m, alloc);
		return rc;
	}
	*out = m;
	return 0;
}

int
rpc_unpack(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *desc,
    ProtobufCMessage **out)
{
	return rpc_unpack_bytes(bb, desc, NULL, out, NULL, 0);
}

int
rpc_unpack_alloc(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *desc,
    ProtobufCAllocator *alloc, ProtobufCMessage **out)
{
	return rpc_unpack_bytes(bb, desc, alloc, out, NULL, 0);
}

int
rpc_unpack_checked(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *desc,
    ProtobufCMessage **out, char *err, size_t errlen)
{
	return rpc_unpack_bytes(bb, desc, NULL, out, err, errlen);
}

grpc_status_code
rpc_status_from_error(int err)
{
	switch (err) {
	case 0:
		return GRPC_STATUS_OK;
	case CERTA_ENOTFOUND:
	case -ENOENT:
		return GRPC_STATUS_NOT_FOUND;
	case CERTA_EEXIST:
	case -EEXIST:
		return GRPC_STATUS_ALREADY_EXISTS;
	case CERTA_EDECODE:
	case CERTA_EINVAL:
	case CERTA_ECONFIG:
	case -EINVAL:
	case -E2BIG:
		return GRPC_STATUS_INVALID_ARGUMENT;
	case CERTA_ECAPACITY:
	case -ENOSPC:
		return GRPC_STATUS_RESOURCE_EXHAUSTED;
	case CERTA_EUNAVAIL:
	case -ECONNREFUSED:
		return GRPC_STATUS_UNAVAILABLE;
	case CERTA_ETIMEOUT:
	case -ETIMEDOUT:
		return GRPC_STATUS_DEADLINE_EXCEEDED;
	case CERTA_ECANCELLED:
	case -ECANCELED:
		return GRPC_STATUS_CANCELLED;
	case CERTA_EAUTH:
		return GRPC_STATUS_UNAUTHENTICATED;
	case CERTA_EDENIED:
	case -EPERM:
	case -EACCES:
		return GRPC_STATUS_PERMISSION_DENIED;
	case CERTA_ESTATE:
	case CERTA_ENOSTATE:
		return GRPC_STATUS_FAILED_PRECONDITION;
	case CERTA_ECORRUPT:
	case CERTA_EDATALOSS:
		return GRPC_STATUS_DATA_LOSS;
	case -ENOSYS:
		return GRPC_STATUS_UNIMPLEMENTED;
	default:
		return GRPC_STATUS_INTERNAL;
	}
}

int
rpc_error_from_status(grpc_status_code status)
{
	switch (status) {
	case GRPC_STATUS_OK:
		return 0;
	case GRPC_STATUS_NOT_FOUND:
		return CERTA_ENOTFOUND;
	case GRPC_STATUS_ALREADY_EXISTS:
		return CERTA_EEXIST;
	case GRPC_STATUS_INVALID_ARGUMENT:
	case GRPC_STATUS_OUT_OF_RANGE:
		return CERTA_EINVAL;
	case GRPC_STATUS_RESOURCE_EXHAUSTED:
		return CERTA_ECAPACITY;
	case GRPC_STATUS_UNAVAILABLE:
		return CERTA_EUNAVAIL;
	case GRPC_STATUS_DEADLINE_EXCEEDED:
		return CERTA_ETIMEOUT;
	case GRPC_STATUS_CANCELLED:
		return CERTA_ECANCELLED;
	case GRPC_STATUS_UNAUTHENTICATED:
		return CERTA_EAUTH;
	case GRPC_STATUS_PERMISSION_DENIED:
		return CERTA_EDENIED;
	case GRPC_STATUS_FAILED_PRECONDITION:
		return CERTA_ESTATE;
	case GRPC_STATUS_DATA_LOSS:
		return CERTA_ECORRUPT;
	default:
		return CERTA_ERPC;
	}
}

static const char *const rpc_status_names[] = {
	[GRPC_STATUS_OK] = "OK",
	[GRPC_STATUS_CANCELLED] = "CANCELLED",
	[GRPC_STATUS_UNKNOWN] = "UNKNOWN",
	[GRPC_STATUS_INVALID_ARGUMENT] = "INVALID_ARGUMENT",
	[GRPC_STATUS_DEADLINE_EXCEEDED] = "DEADLINE_EXCEEDED",
	[GRPC_STATUS_NOT_FOUND] = "NOT_FOUND",
	[GRPC_STATUS_ALREADY_EXISTS] = "ALREADY_EXISTS",
	[GRPC_STATUS_PERMISSION_DENIED] = "PERMISSION_DENIED",
	[GRPC_STATUS_RESOURCE_EXHAUSTED] = "RESOURCE_EXHAUSTED",
	[GRPC_STATUS_FAILED_PRECONDITION] = "FAILED_PRECONDITION",
	[GRPC_STATUS_ABORTED] = "ABORTED",
	[GRPC_STATUS_OUT_OF_RANGE] = "OUT_OF_RANGE",
	[GRPC_STATUS_UNIMPLEMENTED] = "UNIMPLEMENTED",
	[GRPC_STATUS_INTERNAL] = "INTERNAL",
	[GRPC_STATUS_UNAVAILABLE] = "UNAVAILABLE",
	[GRPC_STATUS_DATA_LOSS] = "DATA_LOSS",
	[GRPC_STATUS_UNAUTHENTICATED] = "UNAUTHENTICATED",
};

const char *
rpc_status_name(grpc_status_code status)
{
	if ((unsigned)status < sizeof rpc_status_names / sizeof rpc_status_names[0] &&
	    rpc_status_names[status] != NULL)
		return rpc_status_names[status];
	return "UNKNOWN";
}

const char *
rpc_method_path(const ProtobufCServiceDescriptor *svc, const char *method, char *buf,
    size_t len)
{
	int n = snprintf(buf, len, "/%s/%s", svc->name, method);

	if (n < 0 || (size_t)n >= len)
		return NULL;
	return buf;
}

int
rpc_metadata_key_valid(const char *key)
{
	const char *p;

	if (key == NULL || *key == '\0')
		return 0;
	for (p = key; *p; p++) {
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' ||
		    *p == '_' || *p == '.'))
			return 0;
	}
	return 1;
}
