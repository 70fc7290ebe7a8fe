/* auth.c — tenant API keys, admin token, local socket and mTLS client certificates. */
#include "daemon/auth.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grpc/grpc_security.h>
#include <openssl/crypto.h>

#include "daemon/tenants.h"
#include "lib/error.h"
#include "lib/log.h"
#include "lib/rpc_server.h"

struct auth {
	struct tenants *ts;
	char *admin_token;
	char **cns;
	size_t ncns;
	char *anonymous;
};

static void
auth_clear(struct auth *a)
{
	size_t i;

	if (a->admin_token != NULL)
		explicit_bzero(a->admin_token, strlen(a->admin_token));
	free(a->admin_token);
	for (i = 0; i < a->ncns; i++)
		free(a->cns[i]);
	free(a->cns);
	free(a->anonymous);
	a->admin_token = NULL;
	a->cns = NULL;
	a->ncns = 0;
	a->anonymous = NULL;
}

int
auth_configure(struct auth *a, const struct auth_options *opt)
{
	size_t i;

	auth_clear(a);
	if (opt->admin_token != NULL && opt->admin_token[0] != '\0')
		a->admin_token = strdup(opt->admin_token);
	if (opt->anonymous_tenant != NULL && opt->anonymous_tenant[0] != '\0')
		a->anonymous = strdup(opt->anonymous_tenant);
	if (opt->nadmin_cns > 0) {
		a->cns = calloc(opt->nadmin_cns, sizeof *a->cns);
		if (a->cns == NULL)
			return -ENOMEM;
		for (i = 0; i < opt->nadmin_cns; i++) {
			a->cns[i] = strdup(opt->admin_cns[i]);
			if (a->cns[i] == NULL)
				return -ENOMEM;
			a->ncns++;
		}
	}
	return 0;
}

int
auth_new(struct tenants *ts, const struct auth_options *opt, struct auth **out)
{
	struct auth *a = calloc(1, sizeof *a);
	int rc;

	if (a == NULL)
		return -ENOMEM;
	a->ts = ts;
	rc = auth_configure(a, opt);
	if (rc != 0) {
		auth_free(a);
		return rc;
	}
	*out = a;
	return 0;
}

void
auth_free(struct auth *a)
{
	if (a == NULL)
		return;
	auth_clear(a);
	free(a);
}

/* Constant-time comparison of a bearer value against the admin token. */
static int
auth_is_admin_token(const struct auth *a, const char *authz)
{
	const char *tok;
	size_t n;

	if (a->admin_token == NULL || authz == NULL || strncasecmp(authz, "Bearer ", 7) != 0)
		return 0;
	tok = authz + 7;
	n = strlen(a->admin_token);
	return strlen(tok) == n && CRYPTO_memcmp(tok, a->admin_token, n) == 0;
}

/* The CN of a verified TLS client certificate, if it is on the admin list. */
static const char *
auth_admin_cn(const struct auth *a, struct rpc_call *call)
{
	grpc_auth_context *ctx;
	grpc_auth_property_iterator it;
	const grpc_auth_property *p;
	const char *found = NULL;
	size_t i;

	if (a->ncns == 0)
		return NULL;
	ctx = grpc_call_auth_context(rpc_call_grpc(call));
	if (ctx == NULL)
		return NULL;
	it = grpc_auth_context_find_properties_by_name(ctx, GRPC_X509_CN_PROPERTY_NAME);
	while (found == NULL && (p = grpc_auth_property_iterator_next(&it)) != NULL) {
		for (i = 0; i < a->ncns; i++) {
			if (strlen(a->cns[i]) == p->value_length &&
			    memcmp(a->cns[i], p->value, p->value_length) == 0)
				found = a->cns[i];
		}
	}
	grpc_auth_context_release(ctx);
	return found;
}

int
auth_tenant(struct auth *a, const char *authz, const char **tenant, char *msg, size_t msglen)
{
	if (authz == NULL) {
		if (a->anonymous != NULL) {
			*tenant = a->anonymous;
			return 0;
		}
		snprintf(msg, msglen, "missing credentials: send 'authorization: Bearer <api key>'");
		return CERTA_EAUTH;
	}
	if (tenants_authenticate(a->ts, authz, tenant) != 0) {
		snprintf(msg, msglen, "invalid or revoked API key");
		return CERTA_EAUTH;
	}
	return 0;
}

grpc_status_code
auth_authorize(struct rpc_call *call, const struct rpc_method *m, void *ctx, char *msg,
    size_t msglen)
{
	struct auth *a = ctx;
	const char *authz = rpc_call_metadata(call, "authorization");
	const char *tenant = NULL, *cn;
	char who[160];

	if (m->flags & AUTH_ADMIN) {
		if (rpc_call_is_local(call)) {
			rpc_call_set_identity(call, "admin:local");
			return GRPC_STATUS_OK;
		}
		if (auth_is_admin_token(a, authz)) {
			rpc_call_set_identity(call, "admin:token");
			return GRPC_STATUS_OK;
		}
		if ((cn = auth_admin_cn(a, call)) != NULL) {
			snprintf(who, sizeof who, "admin:cn=%s", cn);
			rpc_call_set_identity(call, who);
			return GRPC_STATUS_OK;
		}
		if (authz != NULL && tenants_authenticate(a->ts, authz, &tenant) == 0) {
			log_info(LOG_ADMIN, "tenant %s refused on %s", tenant, rpc_call_method(call));
			snprintf(msg, msglen, "tenant keys cannot use the Admin service");
			return GRPC_STATUS_PERMISSION_DENIED;
		}
		log_info(LOG_ADMIN, "admin call %s from %s without admin credential",
		    rpc_call_method(call), rpc_call_peer(call));
		snprintf(msg, msglen, "the Admin service needs an admin credential (admin token, "
		    "client certificate, or the local admin socket)");
		return GRPC_STATUS_UNAUTHENTICATED;
	}
	if (m->flags & AUTH_TENANT) {
		if (auth_tenant(a, authz, &tenant, msg, msglen) != 0)
			return GRPC_STATUS_UNAUTHENTICATED;
		rpc_call_set_identity(call, tenant);
		return GRPC_STATUS_OK;
	}
	return GRPC_STATUS_OK;
}
