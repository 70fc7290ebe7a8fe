/*
 * rpc.h — protobuf-c <-> gRPC byte buffer glue and status translation.
 *
 * protobuf-c generates messages only; services are written on the gRPC core API (lib/rpc_server,
 * lib/rpc_client).  This module is the one boundary between certa error codes and gRPC status
 * codes.  All functions are thread-safe (no shared state).
 */
#ifndef CERTA_LIB_RPC_H
#define CERTA_LIB_RPC_H

#include <stddef.h>
#include <grpc/grpc.h>
#include <grpc/status.h>
#include <protobuf-c/protobuf-c.h>

/* Largest message certa accepts or sends (also set as the channel/server receive limit). */
#define RPC_MAX_MESSAGE (16 * 1024 * 1024)

/* One metadata entry; keys must be lower-case ASCII. */
struct rpc_metadata {
	const char *key;
	const char *value;
};

/* Packs msg into a new byte buffer (one slice).  Returns NULL on allocation failure.  The
 * caller destroys it with grpc_byte_buffer_destroy after the batch that sent it completed. */
grpc_byte_buffer *rpc_pack(const ProtobufCMessage *msg);

/* Unpacks a received byte buffer (any number of slices, compressed or not) into a message of
 * type desc.  *out is owned by the caller (protobuf_c_message_free_unpacked(*out, NULL)) and
 * written only on success.  Returns 0, CERTA_EDECODE for bytes that are not a valid message
 * (or a NULL buffer), -ENOMEM. */
int rpc_unpack(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *desc,
    ProtobufCMessage **out);
/* As rpc_unpack, with protobuf-c's allocator alloc (NULL: the default); the caller frees
 * *out with the same allocator (e.g. a lib/pbarena.h arena, reset once the message is
 * handled). */
int rpc_unpack_alloc(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *desc,
    ProtobufCAllocator *alloc, ProtobufCMessage **out);

/* As rpc_unpack, for requests at the edge: also refuses string fields that are not valid
 * UTF-8 or hold a NUL byte (lib/pbcheck), which protobuf-c would accept or cut short.
 * Returns 0, CERTA_EDECODE (not a valid message), CERTA_EINVAL (a bad string: err names the
 * field, e.g. "program.problem: invalid UTF-8 at byte 0"), -ENOMEM. */
int rpc_unpack_checked(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *desc,
    ProtobufCMessage **out, char *err, size_t errlen);

/* The single certa error -> gRPC status translation. */
grpc_status_code rpc_status_from_error(int err);
/* And back, for clients that want a certa code from a status. */
int rpc_error_from_status(grpc_status_code status);
/* "OK", "CANCELLED", ..., "UNAUTHENTICATED"; never NULL. */
const char *rpc_status_name(grpc_status_code status);

/* Writes "/certa.v1.Worker/Step" for a protobuf-c service descriptor and a method name into
 * buf and returns buf, or NULL when it does not fit. */
const char *rpc_method_path(const ProtobufCServiceDescriptor *svc, const char *method,
    char *buf, size_t len);

/* Validates that a metadata key is legal for gRPC (lower-case, [0-9a-z_.-]). */
int rpc_metadata_key_valid(const char *key);

#endif
