/*
 * rpc_client.h — gRPC client calls on the core API.
 *
 * Two flavours:
 *  - asynchronous unary calls whose completion runs on the libevent loop thread through a
 *    cqbridge (the daemon -> worker path);
 *  - synchronous unary and server-streaming calls on a private queue (certactl, tests, benches).
 * Every call has a deadline.  Channels are created per target and reused.
 */
#ifndef CERTA_LIB_RPC_CLIENT_H
#define CERTA_LIB_RPC_CLIENT_H

#include <stddef.h>
#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>

#include "lib/rpc.h"

struct cqbridge;
struct rpc_channel;
struct rpc_stream;

/* Creates an insecure channel to target ("127.0.0.1:7701", "unix:/run/certa/admin.sock").
 * Connection happens lazily.  Returns 0 or -ENOMEM. */
int rpc_channel_new(const char *target, struct rpc_channel **out);
/* Same with channel credentials (TLS); takes no ownership of creds. */
int rpc_channel_new_creds(const char *target, grpc_channel_credentials *creds,
    struct rpc_channel **out);
/* Destroys the channel; in-flight async calls complete with CANCELLED first. */
void rpc_channel_free(struct rpc_channel *ch);
const char *rpc_channel_target(const struct rpc_channel *ch);

/* Completion of an async unary call, on the loop thread.  reply is owned by the callback
 * (protobuf_c_message_free_unpacked) and NULL unless status is OK.  details is valid during the
 * callback only. */
typedef void (*rpc_unary_cb)(void *arg, grpc_status_code status, const char *details,
    ProtobufCMessage *reply);

/* Starts an async unary call.  The request is packed before returning (the caller keeps
 * ownership of req).  cb runs exactly once if this returns 0.  Returns 0, -ENOMEM or
 * CERTA_ERPC.  Loop thread only. */
int rpc_client_unary(struct rpc_channel *ch, struct cqbridge *br, const char *method,
    const ProtobufCMessage *req, const ProtobufCMessageDescriptor *reply_desc, int timeout_ms,
    const struct rpc_metadata *md, size_t nmd, rpc_unary_cb cb, void *arg);
/* As rpc_client_unary, the reply unpacked with protobuf-c's allocator reply_alloc (NULL:
 * the default): the callback frees it with the same allocator (e.g. a lib/pbarena.h arena,
 * reset once the reply is handled). */
int rpc_client_unary_alloc(struct rpc_channel *ch, struct cqbridge *br, const char *method,
    const ProtobufCMessage *req, const ProtobufCMessageDescriptor *reply_desc,
    ProtobufCAllocator *reply_alloc, int timeout_ms, const struct rpc_metadata *md, size_t nmd,
    rpc_unary_cb cb, void *arg);

/* Synchronous unary call.  On return *status and *details (malloc'd, may be NULL; free it)
 * describe the outcome; *reply is set (caller frees) only when *status is OK.
 * Returns 0 when the call ran (whatever its status), or -ENOMEM/CERTA_ERPC/CERTA_EDECODE
 * (bad reply bytes).  Any thread; not concurrently on one channel from many threads. */
int rpc_sync_unary(struct rpc_channel *ch, const char *method, const ProtobufCMessage *req,
    const ProtobufCMessageDescriptor *reply_desc, int timeout_ms,
    const struct rpc_metadata *md, size_t nmd, ProtobufCMessage **reply,
    grpc_status_code *status, char **details);

/* Opens a server-streaming call (timeout_ms <= 0: no deadline). */
int rpc_sync_stream_open(struct rpc_channel *ch, const char *method,
    const ProtobufCMessage *req, const ProtobufCMessageDescriptor *reply_desc, int timeout_ms,
    const struct rpc_metadata *md, size_t nmd, struct rpc_stream **out);
/* Next message: returns 1 with *msg (caller frees), 0 at end of stream, or a negative
 * error (CERTA_EDECODE).  Blocks up to wait_ms (<0: forever); returns CERTA_ETIMEOUT when
 * nothing arrived in time (the stream stays usable). */
int rpc_sync_stream_next(struct rpc_stream *s, int wait_ms, ProtobufCMessage **msg);
/* Cancels the stream (client side). */
void rpc_sync_stream_cancel(struct rpc_stream *s);
/* Waits for the status, frees the stream.  *details malloc'd or NULL. */
grpc_status_code rpc_sync_stream_close(struct rpc_stream *s, char **details);

#endif
