/*
 * wauth.h — who may call a worker: the authorizer certa-worker installs on its rpc_server.
 *
 * Methods flagged WAUTH_REQUIRED (the certa.v1.Worker table) need, when configured:
 *  - the shared token: "authorization: Bearer TOKEN" in the initial metadata, compared in
 *    constant time before the body is read; otherwise UNAUTHENTICATED;
 *  - an allowed client certificate CN: on an mTLS listener the TLS handshake already required
 *    a certificate signed by tls.client_ca; with a CN list, the verified certificate's common
 *    name must be on it; otherwise PERMISSION_DENIED.
 * Other methods (grpc.health.v1.Health) stay open: they say SERVING or NOT_SERVING and nothing
 * else.  Refusals are logged at warn, at most one line per second (with the count of the
 * refusals not logged), so a scanner cannot flood the journal.
 *
 * Threads: loop thread only (the authorizer runs there).
 */
#ifndef CERTA_WORKERS_WAUTH_H
#define CERTA_WORKERS_WAUTH_H

#include <stddef.h>
#include <grpc/grpc.h>

struct rpc_call;
struct rpc_method;
struct wauth;

/* rpc_method.flags bit: the method needs the worker's credentials. */
#define WAUTH_REQUIRED 0x1u

struct wauth_options {
	const char *token;              /* shared secret; NULL or "": not required */
	const char *const *allowed_cns; /* client certificate CNs; none: any verified one */
	size_t nallowed_cns;
};

/* Copies opt into a new authorizer.  Returns 0 or -ENOMEM; *out only on success. */
int wauth_new(const struct wauth_options *opt, struct wauth **out);
/* Wipes the token and frees; NULL is a no-op. */
void wauth_free(struct wauth *a);
/* Whether any credential is required (a token or a CN list). */
int wauth_enabled(const struct wauth *a);

/* The rpc_authorize_fn (ctx: the struct wauth). */
grpc_status_code wauth_authorize(struct rpc_call *call, const struct rpc_method *m, void *ctx,
    char *msg, size_t msglen);

#endif
