/*
 * rpc_server.h — gRPC servers on the core API, driven from the libevent loop (lib/cqbridge).
 *
 * A server is a table of methods (path, kind, input type, handler).  For each call the server
 * posts RECV_CLOSE_ON_SERVER at once (to learn about client cancel/deadline/death), runs the
 * optional authorizer on the initial metadata *before* reading the body, reads and decodes the
 * one request message, and calls the handler.  Calls to unknown methods get UNIMPLEMENTED,
 * malformed bodies INVALID_ARGUMENT, and so do bodies with a string field that is not valid
 * UTF-8 or holds a NUL byte (lib/pbcheck; the status names the field); handlers never see any
 * of them.
 *
 * Replies: a unary handler calls rpc_call_reply() or rpc_call_finish(); a server-streaming
 * handler calls rpc_call_send() any number of times and rpc_call_finish() once.  Sends are
 * queued; one SEND_MESSAGE is in flight at a time and the status follows the last message.
 * Handlers may answer later (asynchronously): take a reference with rpc_call_ref() and drop it
 * with rpc_call_unref() when done.  The call object stays valid while references or gRPC
 * batches are outstanding.
 *
 * Threads: everything here runs on the loop thread that owns the cqbridge.
 */
#ifndef CERTA_LIB_RPC_SERVER_H
#define CERTA_LIB_RPC_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>

#include "lib/rpc.h"

struct cqbridge;
struct rpc_server;
struct rpc_call;

enum rpc_kind {
	RPC_UNARY = 1,
	RPC_SERVER_STREAM = 2,
	/* Bidirectional: the handler runs once per client message (replying with
	 * rpc_call_send); when the client half-closes, the call ends OK unless the handler
	 * finished it already.  One message is read at a time. */
	RPC_BIDI = 3,
};

/* req is owned by the server and freed after the handler returns: copy what you keep. */
typedef void (*rpc_handler_fn)(struct rpc_call *call, const ProtobufCMessage *req, void *ctx);

struct rpc_method {
	const char *path;                        /* "/certa.v1.Worker/Step" */
	enum rpc_kind kind;
	const ProtobufCMessageDescriptor *input;
	rpc_handler_fn handler;
	unsigned flags;                          /* passed to the authorizer (e.g. admin-only) */
};

/* Runs before the body is read.  Returns GRPC_STATUS_OK to proceed, or a status (with a
 * message written into msg) that ends the call. */
typedef grpc_status_code (*rpc_authorize_fn)(struct rpc_call *call,
    const struct rpc_method *method, void *ctx, char *msg, size_t msglen);

/* Creates a server whose calls complete on br's queue.  methods must outlive the server.
 * Returns 0 or -ENOMEM. */
int rpc_server_new(struct cqbridge *br, const struct rpc_method *methods, size_t nmethods,
    void *ctx, struct rpc_server **out);

/* Adds another service's method table (e.g. grpc.health.v1.Health) whose handlers get ctx.
 * Before rpc_server_start.  Returns 0 or -ENOSPC (at most 8 tables). */
int rpc_server_add_methods(struct rpc_server *srv, const struct rpc_method *methods,
    size_t nmethods, void *ctx);

/* Installs the authorizer; ctx is passed to it. */
void rpc_server_set_authorizer(struct rpc_server *srv, rpc_authorize_fn fn, void *ctx);

/* Adds an insecure listening address ("127.0.0.1:0", "unix:/path").  *port gets the bound
 * port (0 for unix sockets) when port is not NULL.  Returns 0 or CERTA_EUNAVAIL when the
 * address cannot be bound (in use, bad address).  Before rpc_server_start only. */
int rpc_server_listen(struct rpc_server *srv, const char *addr, int *port);

/* Adds a listening address with server credentials (TLS); takes no ownership of creds. */
int rpc_server_listen_creds(struct rpc_server *srv, const char *addr,
    grpc_server_credentials *creds, int *port);

/* Starts serving.  Returns 0 or -ENOMEM. */
int rpc_server_start(struct rpc_server *srv);

/* Stops accepting, cancels every active call, and destroys the server once gRPC confirms;
 * then done(arg) runs on the loop thread.  The srv pointer is invalid after done. */
void rpc_server_shutdown(struct rpc_server *srv, void (*done)(void *arg), void *arg);

/* Number of calls currently alive (for drain decisions and tests). */
size_t rpc_server_active_calls(const struct rpc_server *srv);

/* Calls fn with the path of every method in the server's tables, in table order (server
 * reflection lists the services from them). */
void rpc_server_each_method(const struct rpc_server *srv,
    void (*fn)(void *arg, const char *path), void *arg);

/* The server a call arrived on. */
struct rpc_server *rpc_call_server(const struct rpc_call *call);

/* --- per call --- */

void rpc_call_ref(struct rpc_call *call);
void rpc_call_unref(struct rpc_call *call);

/* Unary: sends msg and status OK.  Returns 0, CERTA_ECANCELLED if the call is already dead,
 * CERTA_ESTATE if already finished, -ENOMEM. */
int rpc_call_reply(struct rpc_call *call, const ProtobufCMessage *msg);

/* Streaming: queues one message.  Same errors as rpc_call_reply. */
int rpc_call_send(struct rpc_call *call, const ProtobufCMessage *msg);

/* Ends the call with status and a printf-style message, after queued messages are sent.
 * Ignored (returns CERTA_ESTATE/CERTA_ECANCELLED) when finished or dead. */
int rpc_call_finish(struct rpc_call *call, grpc_status_code status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Ends the call with the status for a certa error code and a message. */
int rpc_call_fail(struct rpc_call *call, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*
 * Structured error details (google.rpc.Status in the `grpc-status-details-bin` trailer, as
 * clients' standard helpers read it).  Added before the call ends; sent only when it ends
 * with a status other than OK, as Status{code, message: the status message, details}.  An
 * INVALID_ARGUMENT whose message starts with a field path ("program.n is 9; ...",
 * "page_token: ...") and has no BadRequest yet gets one naming that field.
 * Return 0, CERTA_ESTATE when the call already ended, -ENOMEM.
 */
/* BadRequest with one field violation. */
int rpc_call_detail_bad_request(struct rpc_call *call, const char *field, const char *desc);
/* QuotaFailure with one violation (subject e.g. "tenant:acme"), and RetryInfo when
 * retry_ms > 0. */
int rpc_call_detail_quota(struct rpc_call *call, const char *subject, const char *desc,
    int64_t retry_ms);

/* True once the client went away (cancel, deadline, disconnect) or the server cancelled it. */
int rpc_call_is_dead(const struct rpc_call *call);
/* True once a status has been queued. */
int rpc_call_is_finished(const struct rpc_call *call);

/* fn(call, arg) runs once on the loop thread if the call dies before it finished. */
void rpc_call_on_cancel(struct rpc_call *call, void (*fn)(struct rpc_call *call, void *arg),
    void *arg);

/* Value of a request metadata key (copied when the call arrived), or NULL. */
const char *rpc_call_metadata(const struct rpc_call *call, const char *key);
const char *rpc_call_method(const struct rpc_call *call);
/* Peer address "ipv4:127.0.0.1:5555"; owned by the call. */
const char *rpc_call_peer(const struct rpc_call *call);
/* The underlying grpc_call (for auth context), owned by the call. */
grpc_call *rpc_call_grpc(const struct rpc_call *call);
/* Messages still queued or in flight (backpressure for slow stream readers). */
size_t rpc_call_pending(const struct rpc_call *call);

/* The caller's identity as established by the authorizer (tenant name, "admin"); copied.
 * Returns 0 or -ENOMEM.  rpc_call_identity returns "" when unset. */
int rpc_call_set_identity(struct rpc_call *call, const char *who);
const char *rpc_call_identity(const struct rpc_call *call);
/* True when the call arrived on a unix-domain socket listener. */
int rpc_call_is_local(const struct rpc_call *call);

/* Opaque user pointer. */
void rpc_call_set_data(struct rpc_call *call, void *data);
void *rpc_call_get_data(const struct rpc_call *call);

/*
 * --- local calls ---
 *
 * A call that no gRPC client made: another front door of the same process (certad's HTTP API,
 * daemon/openai.c) hands one to code written for server streams (a program's watchers), and
 * receives what that code sends through the sink, synchronously, on the loop thread.  send()
 * gets each message (borrowed for the call; return non-zero when the reader is gone, and the
 * sender drops the call as it would a dead stream); finish() gets the status and its message
 * once.  Neither may re-enter the code that is sending (e.g. unwatch the call themselves).
 * rpc_call_metadata, rpc_call_identity and rpc_call_peer work as for gRPC calls (metadata set
 * with rpc_call_local_set_metadata); rpc_call_grpc is NULL and rpc_call_is_local false.
 */
struct rpc_call_sink {
	int (*send)(void *arg, const ProtobufCMessage *msg);
	void (*finish)(void *arg, grpc_status_code status, const char *message);
};

/* A local call holding one reference (the caller's); peer names it in logs ("http:..."); sink
 * and arg must outlive the call's last send/finish (see rpc_call_local_close).  Returns 0 or
 * -ENOMEM; *out is written only on success. */
int rpc_call_local_new(const struct rpc_call_sink *sink, void *arg, const char *peer,
    struct rpc_call **out);
/* Records one metadata value (copied) that rpc_call_metadata will return: 0 or -ENOMEM. */
int rpc_call_local_set_metadata(struct rpc_call *call, const char *key, const char *value);
/* The reader went away: the call is dead from now on (sends fail, the sink is never called
 * again, the cancel callback runs). */
void rpc_call_local_close(struct rpc_call *call);

#endif
