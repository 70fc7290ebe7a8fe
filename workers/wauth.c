/* wauth.c — the worker's authorizer: shared token and allowed client certificate names. */
#include "workers/wauth.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <grpc/grpc_security.h>

#include "lib/cred.h"
#include "lib/log.h"
#include "lib/rpc_server.h"

struct wauth {
	char *token;
	char **cns;
	size_t ncns;
	time_t last_log;        /* second of the last refusal logged */
	unsigned long quiet;    /* refusals not logged since */
};

int
wauth_new(const struct wauth_options *opt, struct wauth **out)
{
	struct wauth *a = calloc(1, sizeof *a);
	size_t i;

	if (a == NULL)
		return -ENOMEM;
	if (opt->token != NULL && opt->token[0] != '\0' &&
	    (a->token = strdup(opt->token)) == NULL)
		goto fail;
	if (opt->nallowed_cns > 0) {
		a->cns = calloc(opt->nallowed_cns, sizeof *a->cns);
		if (a->cns == NULL)
			goto fail;
		for (i = 0; i < opt->nallowed_cns; i++) {
			if ((a->cns[i] = strdup(opt->allowed_cns[i])) == NULL)
				goto fail;
			a->ncns++;
		}
	}
	*out = a;
	return 0;
fail:
	wauth_free(a);
	return -ENOMEM;
}

void
wauth_free(struct wauth *a)
{
	size_t i;

	if (a == NULL)
		return;
	cred_free_secret(a->token);
	for (i = 0; i < a->ncns; i++)
		free(a->cns[i]);
	free(a->cns);
	free(a);
}

int
wauth_enabled(const struct wauth *a)
{
	return a->token != NULL || a->ncns > 0;
}

/* The verified client certificate's CN if it is on the list, else NULL. */
static const char *
wauth_allowed_cn(const struct wauth *a, struct rpc_call *call)
{
	grpc_auth_context *ctx = grpc_call_auth_context(rpc_call_grpc(call));
	grpc_auth_property_iterator it;
	const grpc_auth_property *p;
	const char *found = NULL;
	size_t i;

	if (ctx == NULL)
		return NULL;
	it = grpc_auth_context_find_properties_by_name(ctx, GRPC_X509_CN_PROPERTY_NAME);
	while (found == NULL && (p = grpc_auth_property_iterator_next(&it)) != NULL) {
		for (i = 0; i < a->ncns; i++)
			if (strlen(a->cns[i]) == p->value_length &&
			    memcmp(a->cns[i], p->value, p->value_length) == 0)
				found = a->cns[i];
	}
	grpc_auth_context_release(ctx);
	return found;
}

/* One warn line per second at most; the rest are counted. */
static void
wauth_log_refusal(struct wauth *a, struct rpc_call *call, const char *why)
{
	time_t now = time(NULL);

	if (now == a->last_log) {
		a->quiet++;
		return;
	}
	log_warn(LOG_RPC, "refused %s from %s: %s (%lu more refusals not logged)",
	    rpc_call_method(call), rpc_call_peer(call), why, a->quiet);
	a->last_log = now;
	a->quiet = 0;
}

grpc_status_code
wauth_authorize(struct rpc_call *call, const struct rpc_method *m, void *ctx, char *msg,
    size_t msglen)
{
	struct wauth *a = ctx;
	const char *cn = NULL;

	if (!(m->flags & WAUTH_REQUIRED))
		return GRPC_STATUS_OK;
	if (a->token != NULL &&
	    !cred_bearer_matches(rpc_call_metadata(call, "authorization"), a->token)) {
		wauth_log_refusal(a, call, "missing or wrong worker token");
		snprintf(msg, msglen, "missing or wrong worker token (certad: workers.token_file)");
		return GRPC_STATUS_UNAUTHENTICATED;
	}
	if (a->ncns > 0 && (cn = wauth_allowed_cn(a, call)) == NULL) {
		wauth_log_refusal(a, call, "client certificate CN not on tls.allowed_cn");
		snprintf(msg, msglen, "client certificate not allowed (worker: tls.allowed_cn)");
		return GRPC_STATUS_PERMISSION_DENIED;
	}
	(void)rpc_call_set_identity(call, cn != NULL ? cn : a->token != NULL ? "token" : "");
	return GRPC_STATUS_OK;
}
