/*
 * health.h — the standard gRPC health service (grpc.health.v1.Health) for certad and
 * certa-worker, so that grpc-health-probe and Kubernetes gRPC probes work unchanged.
 *
 * A struct health holds one status per service name; "" names the server as a whole.  Its
 * method table (health_methods) is added to an existing server with rpc_server_add_methods,
 * passing the struct health as the table's ctx:
 *
 *	health_new(&h);
 *	rpc_server_new(br, worker_methods, n, w, &srv);
 *	rpc_server_add_methods(srv, health_methods(&nh), nh, h);
 *	... listen, start ...
 *	health_set(h, "", HEALTH_SERVING);
 *	health_set(h, "certa.v1.Worker", HEALTH_SERVING);
 *	... on SIGTERM: health_shutdown(h) (everything NOT_SERVING), then rpc_server_shutdown;
 *	... after the server's done callback: health_free(h).
 *
 * Wire behaviour (as the reference implementations in grpc C++/Go):
 *  - Check(service): the status, or NOT_FOUND "unknown service NAME" for a name never set.
 *  - Watch(service): sends the current status at once (SERVICE_UNKNOWN for an unknown name;
 *    the stream stays open), then one message each time health_set changes that service's
 *    status.  The stream ends only when the client goes away, or with UNAVAILABLE from
 *    health_free.  Consecutive duplicates are not sent.  A watcher that does not read (more
 *    than HEALTH_MAX_PENDING messages queued) is ended with RESOURCE_EXHAUSTED.
 *
 * Threads: everything runs on the loop thread that owns the server's cqbridge.
 * Errors: 0 or a negative code as listed per function.
 */
#ifndef CERTA_LIB_HEALTH_H
#define CERTA_LIB_HEALTH_H

#include <stddef.h>

#include "lib/rpc_server.h"

/* Same values as grpc.health.v1.HealthCheckResponse.ServingStatus. */
enum health_status {
	HEALTH_UNKNOWN = 0,
	HEALTH_SERVING = 1,
	HEALTH_NOT_SERVING = 2,
	HEALTH_SERVICE_UNKNOWN = 3,  /* only on Watch streams; never stored */
};

/* Messages a Watch stream may have queued before it is dropped as a slow reader. */
#define HEALTH_MAX_PENDING 16

/* Longest service name accepted (bytes, without the NUL). */
#define HEALTH_MAX_NAME 200

struct health;

/* Creates an empty registry (no service known, not even "").  *out is written only on
 * success.  Returns 0 or -ENOMEM. */
int health_new(struct health **out);

/* Ends every Watch stream with UNAVAILABLE "server shutting down" (without waiting for it to
 * be sent: the calls hold their own references) and frees h.  Safe after the server is gone
 * (the streams are then already dead and were dropped).  NULL is a no-op. */
void health_free(struct health *h);

/* The method table for rpc_server_add_methods (ctx = the struct health).  Paths:
 * "/grpc.health.v1.Health/Check" and "/grpc.health.v1.Health/Watch"; flags 0 (an
 * authorizer should let them through unauthenticated, as probes carry no token).
 * Static storage; *n gets the number of entries. */
const struct rpc_method *health_methods(size_t *n);

/* Sets service's status (HEALTH_UNKNOWN, HEALTH_SERVING or HEALTH_NOT_SERVING) and pushes it
 * to the Watch streams of that service when it changed.  service "" is the overall status.
 * Returns 0, -EINVAL (bad status, NULL or too long name), -ENOMEM, or CERTA_ESTATE after
 * health_shutdown (the statuses are frozen at NOT_SERVING). */
int health_set(struct health *h, const char *service, enum health_status status);

/* Current status of service in *out (written only on success).
 * Returns 0 or CERTA_ENOTFOUND for a name never set. */
int health_get(const struct health *h, const char *service, enum health_status *out);

/* Draining: every known service becomes NOT_SERVING (watchers are told) and later health_set
 * calls are refused with CERTA_ESTATE, so a late "SERVING" cannot undo the drain.  Idempotent. */
void health_shutdown(struct health *h);

/* Number of open Watch streams (tests, metrics). */
size_t health_watchers(const struct health *h);

/* "UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"; never NULL. */
const char *health_status_name(enum health_status status);

#endif
