/*
 * certa_client.h — the client side of integration tests and benches: channels to loopback
 * ports, unary calls with an optional bearer token, Submit streams and reading a program's
 * event stream to its end, grpc.health.v1 checks.
 *
 * Thin wrappers over lib/rpc_client (see there for the blocking and threading rules: any
 * thread, one call at a time per channel, grpc_init() first).  Nothing here asserts; functions
 * return 0 or a negative code from lib/error.h and write out-parameters only on success,
 * unless said otherwise.
 */
#ifndef CERTA_TESTS_SUPPORT_CERTA_CLIENT_H
#define CERTA_TESTS_SUPPORT_CERTA_CLIENT_H

#include <stdint.h>

#include "certa/v1/reasoning.pb-c.h"
#include "lib/rpc_client.h"

/* Opens a channel to "127.0.0.1:PORT" and stores it in *out (caller frees with
 * rpc_channel_free).  Returns 0 or the error of rpc_channel_new(). */
int certa_client_channel(int port, struct rpc_channel **out);

/*
 * rpc_sync_unary() with the header "authorization: Bearer BEARER" when bearer is not NULL (no
 * header when it is NULL).  *reply, *status and *details as rpc_sync_unary() sets them
 * (*reply only when the status is OK; caller frees it and *details).  Returns 0 when the call
 * ran, whatever its status, or the error of rpc_sync_unary().
 */
int certa_client_unary(struct rpc_channel *ch, const char *method, const ProtobufCMessage *req,
    const ProtobufCMessageDescriptor *reply_desc, int timeout_ms, const char *bearer,
    ProtobufCMessage **reply, grpc_status_code *status, char **details);

/* Opens Reasoning/Submit for spec (with the bearer header as above, when bearer is not NULL)
 * and stores the stream in *out (read it with rpc_sync_stream_next or
 * certa_client_events_read).  Returns 0 or the error of rpc_sync_stream_open(). */
int certa_client_submit(struct rpc_channel *ch, const Certa__V1__ProgramSpec *spec,
    const char *bearer, int timeout_ms, struct rpc_stream **out);

/* What one program event stream said.  Zero it before the first read; a read that continues a
 * stream adds to it. */
struct certa_client_events {
	char id[64];                    /* program_id of the Accepted event ("" before one) */
	int accepted;                   /* Accepted events seen */
	int progress;                   /* Progress events seen */
	int monotone;                   /* tokens_used never went down during the last read */
	uint64_t last_tokens;           /* tokens_used of the last Progress event */
	Certa__V1__ProgramEvent *last;  /* the last Finished event (owned), or NULL */
	Certa__V1__Finished *finished;  /* last->finished, or NULL */
	grpc_status_code status;        /* the final status, once the stream ended */
	char details[512];              /* its details ("" when none) */
};

/*
 * Reads events from s, waiting up to wait_ms for each, and records them in ev.  With
 * stop_after > 0 it returns 1 as soon as ev->progress reaches stop_after, leaving s open for
 * another read.  Otherwise, at the end of the stream (or when no event came within wait_ms,
 * or one did not parse) it closes s (rpc_sync_stream_close: s is freed), stores the final
 * status and details in ev and returns 0.
 */
int certa_client_events_read(struct rpc_stream *s, int wait_ms, int stop_after,
    struct certa_client_events *ev);

/* Frees ev->last and zeroes ev. */
void certa_client_events_free(struct certa_client_events *ev);

/* grpc.health.v1.Health/Check of service ("" for the server as a whole) on 127.0.0.1:PORT
 * with a 5 s deadline: the serving status (GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__...), or
 * -1 when the call failed or did not end OK. */
int certa_client_health(int port, const char *service);

#endif
