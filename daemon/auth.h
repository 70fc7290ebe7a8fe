/*
 * auth.h — who is calling: the authorizer certad installs on its gRPC server.
 *
 * Runs on each call's initial metadata, before the body is read:
 *  - Reasoning methods (AUTH_TENANT): `authorization: Bearer <api key>` names the tenant; a
 *    missing or bad key is UNAUTHENTICATED, unless an anonymous tenant is configured (then a
 *    call without any key acts as that tenant; a bad key is still refused).
 *  - Admin methods (AUTH_ADMIN): the local unix socket, `authorization: Bearer <admin token>`,
 *    or an mTLS client certificate whose CN is listed.  A tenant key is PERMISSION_DENIED,
 *    nothing at all UNAUTHENTICATED.
 * The caller's identity (tenant name, or "admin:<how>") is stored on the call.
 * Loop thread only.
 */
#ifndef CERTA_DAEMON_AUTH_H
#define CERTA_DAEMON_AUTH_H

#include <stddef.h>
#include <grpc/status.h>

struct rpc_call;
struct rpc_method;
struct tenants;
struct auth;

enum auth_flags {
	AUTH_TENANT = 1,
	AUTH_ADMIN = 2,
};

struct auth_options {
	const char *admin_token;          /* NULL/"" = no token accepted */
	const char *const *admin_cns;     /* client certificate CNs with admin rights */
	size_t nadmin_cns;
	const char *anonymous_tenant;     /* NULL/"" = keys required */
};

int auth_new(struct tenants *ts, const struct auth_options *opt, struct auth **out);
void auth_free(struct auth *a);
/* Replaces the options (reload); strings are copied. */
int auth_configure(struct auth *a, const struct auth_options *opt);

/* The tenant an `authorization` value names ("Bearer <api key>"; NULL: none sent), by the same
 * rule as Reasoning calls (the anonymous tenant for none, when configured): *tenant (valid
 * until the tenant is deleted) and 0, or CERTA_EAUTH with the reason in msg.  For front doors
 * other than gRPC (daemon/openai.c). */
int auth_tenant(struct auth *a, const char *authorization, const char **tenant, char *msg,
    size_t msglen);

/* The rpc_authorize_fn; ctx is the struct auth. */
grpc_status_code auth_authorize(struct rpc_call *call, const struct rpc_method *m, void *ctx,
    char *msg, size_t msglen);

#endif
