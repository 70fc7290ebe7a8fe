/*
 * health.c — grpc.health.v1.Health: Check and Watch over a small table of service statuses.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "grpc/health/v1/health.pb-c.h"
#include "lib/array.h"
#include "lib/error.h"
#include "lib/health.h"
#include "lib/log.h"

struct health_service {
	char *name;
	enum health_status status;
};

/* One open Watch stream; holds a reference on its call. */
struct health_watcher {
	struct health *h;
	struct rpc_call *call;
	char *service;
	int last_sent;                 /* last status sent, -1 before the first */
	struct health_watcher *prev, *next;
};

struct health {
	struct health_service *svc;
	size_t nsvc, capsvc;
	struct health_watcher *watchers;
	size_t nwatchers;
	int shut;
};

static void health_check(struct rpc_call *call, const ProtobufCMessage *req, void *ctx);
static void health_watch(struct rpc_call *call, const ProtobufCMessage *req, void *ctx);

static const struct rpc_method health_method_table[] = {
	{ "/grpc.health.v1.Health/Check", RPC_UNARY,
	  &grpc__health__v1__health_check_request__descriptor, health_check, 0 },
	{ "/grpc.health.v1.Health/Watch", RPC_SERVER_STREAM,
	  &grpc__health__v1__health_check_request__descriptor, health_watch, 0 },
};

static const char *const health_status_names[] = {
	"UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN",
};

const char *
health_status_name(enum health_status status)
{
	if ((unsigned)status < sizeof health_status_names / sizeof health_status_names[0])
		return health_status_names[status];
	return "UNKNOWN";
}

int
health_new(struct health **out)
{
	struct health *h = calloc(1, sizeof *h);

	if (h == NULL)
		return -ENOMEM;
	*out = h;
	return 0;
}

/* Unlinks w, forgets its cancel callback and drops our reference (may free the call). */
static void
health_watcher_drop(struct health_watcher *w)
{
	struct health *h = w->h;

	if (w->prev != NULL)
		w->prev->next = w->next;
	else
		h->watchers = w->next;
	if (w->next != NULL)
		w->next->prev = w->prev;
	h->nwatchers--;
	rpc_call_on_cancel(w->call, NULL, NULL);
	rpc_call_unref(w->call);
	free(w->service);
	free(w);
}

void
health_free(struct health *h)
{
	size_t i;

	if (h == NULL)
		return;
	while (h->watchers != NULL) {
		struct health_watcher *w = h->watchers;
		/* Clear the callback first: finishing may kill the call synchronously. */
		rpc_call_on_cancel(w->call, NULL, NULL);
		(void)rpc_call_finish(w->call, GRPC_STATUS_UNAVAILABLE, "server shutting down");
		health_watcher_drop(w);
	}
	for (i = 0; i < h->nsvc; i++)
		free(h->svc[i].name);
	free(h->svc);
	free(h);
}

const struct rpc_method *
health_methods(size_t *n)
{
	*n = sizeof health_method_table / sizeof health_method_table[0];
	return health_method_table;
}

static struct health_service *
health_find(const struct health *h, const char *service)
{
	size_t i;

	for (i = 0; i < h->nsvc; i++)
		if (strcmp(h->svc[i].name, service) == 0)
			return &h->svc[i];
	return NULL;
}

static void health_watch_cancelled(struct rpc_call *call, void *arg);

/* Sends status to one watcher unless it already has it; drops watchers that are dead or do
 * not read.  The cancel callback is parked during the send because a failed batch kills the
 * call synchronously, which would free w under us.  Returns 1 if w is still alive, 0 if it
 * was dropped (and freed). */
static int
health_watcher_push(struct health_watcher *w, enum health_status status)
{
	Grpc__Health__V1__HealthCheckResponse r = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
	int rc;

	if (w->last_sent == (int)status)
		return 1;
	rpc_call_on_cancel(w->call, NULL, NULL);
	if (rpc_call_is_dead(w->call)) {
		health_watcher_drop(w);
		return 0;
	}
	if (rpc_call_pending(w->call) >= HEALTH_MAX_PENDING) {
		log_warn(LOG_RPC, "health watch from %s does not read; ending it",
		    rpc_call_peer(w->call));
		(void)rpc_call_finish(w->call, GRPC_STATUS_RESOURCE_EXHAUSTED,
		    "health watch stream is not being read");
		health_watcher_drop(w);
		return 0;
	}
	r.status = (Grpc__Health__V1__HealthCheckResponse__ServingStatus)status;
	rc = rpc_call_send(w->call, &r.base);
	if (rc != 0 || rpc_call_is_dead(w->call)) {
		health_watcher_drop(w);
		return 0;
	}
	w->last_sent = (int)status;
	rpc_call_on_cancel(w->call, health_watch_cancelled, w);
	return 1;
}

/* The client of a Watch stream went away (or the server cancelled it). */
static void
health_watch_cancelled(struct rpc_call *call, void *arg)
{
	struct health_watcher *w = arg;

	(void)call;
	log_debug(LOG_RPC, "health watch of '%s' ended", w->service);
	health_watcher_drop(w);
}

/* Pushes the status of service to its watchers.  push only ever frees the watcher it is
 * given, so the saved next pointer stays valid. */
static void
health_notify(struct health *h, const char *service, enum health_status status)
{
	struct health_watcher *w, *next;

	for (w = h->watchers; w != NULL; w = next) {
		next = w->next;
		if (strcmp(w->service, service) == 0)
			(void)health_watcher_push(w, status);
	}
}

int
health_set(struct health *h, const char *service, enum health_status status)
{
	struct health_service *s;

	if (service == NULL || strlen(service) > HEALTH_MAX_NAME ||
	    (status != HEALTH_UNKNOWN && status != HEALTH_SERVING && status != HEALTH_NOT_SERVING))
		return -EINVAL;
	if (h->shut)
		return CERTA_ESTATE;
	s = health_find(h, service);
	if (s == NULL) {
		if (ARRAY_GROW(h->svc, h->capsvc, h->nsvc + 1) != 0)
			return -ENOMEM;
		s = &h->svc[h->nsvc];
		s->name = strdup(service);
		if (s->name == NULL)
			return -ENOMEM;
		s->status = HEALTH_UNKNOWN;
		h->nsvc++;
	} else if (s->status == status) {
		return 0;
	}
	log_info(LOG_RPC, "health service='%s' %s -> %s", service, health_status_name(s->status),
	    health_status_name(status));
	s->status = status;
	health_notify(h, service, status);
	return 0;
}

int
health_get(const struct health *h, const char *service, enum health_status *out)
{
	const struct health_service *s = health_find(h, service);

	if (s == NULL)
		return CERTA_ENOTFOUND;
	*out = s->status;
	return 0;
}

void
health_shutdown(struct health *h)
{
	size_t i;

	if (h->shut)
		return;
	for (i = 0; i < h->nsvc; i++) {
		if (h->svc[i].status == HEALTH_NOT_SERVING)
			continue;
		log_info(LOG_RPC, "health service='%s' %s -> NOT_SERVING (shutdown)",
		    h->svc[i].name, health_status_name(h->svc[i].status));
		h->svc[i].status = HEALTH_NOT_SERVING;
		health_notify(h, h->svc[i].name, HEALTH_NOT_SERVING);
	}
	h->shut = 1;
}

size_t
health_watchers(const struct health *h)
{
	return h->nwatchers;
}

/* Check: the status, or NOT_FOUND for a service never registered. */
static void
health_check(struct rpc_call *call, const ProtobufCMessage *req, void *ctx)
{
	const Grpc__Health__V1__HealthCheckRequest *q =
	    (const Grpc__Health__V1__HealthCheckRequest *)req;
	Grpc__Health__V1__HealthCheckResponse r = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
	struct health *h = ctx;
	const char *service = q->service != NULL ? q->service : "";
	const struct health_service *s = health_find(h, service);

	if (s == NULL) {
		rpc_call_finish(call, GRPC_STATUS_NOT_FOUND, "unknown service %.*s",
		    HEALTH_MAX_NAME, service);
		return;
	}
	r.status = (Grpc__Health__V1__HealthCheckResponse__ServingStatus)s->status;
	rpc_call_reply(call, &r.base);
}

/* Watch: current status now, then every change, until the client leaves. */
static void
health_watch(struct rpc_call *call, const ProtobufCMessage *req, void *ctx)
{
	const Grpc__Health__V1__HealthCheckRequest *q =
	    (const Grpc__Health__V1__HealthCheckRequest *)req;
	struct health *h = ctx;
	const char *service = q->service != NULL ? q->service : "";
	const struct health_service *s;
	struct health_watcher *w;

	if (strlen(service) > HEALTH_MAX_NAME) {
		rpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT,
		    "service name longer than %d bytes", HEALTH_MAX_NAME);
		return;
	}
	w = calloc(1, sizeof *w);
	if (w == NULL || (w->service = strdup(service)) == NULL) {
		free(w);
		rpc_call_finish(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	w->h = h;
	w->call = call;
	w->last_sent = -1;
	rpc_call_ref(call);
	w->next = h->watchers;
	if (h->watchers != NULL)
		h->watchers->prev = w;
	h->watchers = w;
	h->nwatchers++;
	s = health_find(h, service);
	(void)health_watcher_push(w, s != NULL ? s->status : HEALTH_SERVICE_UNKNOWN);
}
