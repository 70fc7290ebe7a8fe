/*
 * worker.h — the certa.v1.Worker gRPC service on top of an engine.
 *
 * worker_methods() returns the method table to hand to rpc_server_new() with the struct worker
 * as context.  Loop thread only.
 */
#ifndef CERTA_WORKERS_WORKER_H
#define CERTA_WORKERS_WORKER_H

#include <stddef.h>
#include <stdint.h>

struct engine;
struct event_base;
struct health;
struct rpc_method;
struct worker;

/* Wraps an engine (not owned).  step_delay_ms > 0 holds every Step that long before running
 * it (simulated decode time: demos and failure tests).  Returns 0 or -ENOMEM. */
int worker_new(struct engine *engine, struct event_base *base, int step_delay_ms,
    struct worker **out);
void worker_free(struct worker *w);
/* The Step/Release/Info table; valid for the program's lifetime. */
const struct rpc_method *worker_methods(size_t *n);
/* The health service to turn NOT_SERVING ("" and "certa.v1.Worker") when a failed Step leaves
 * the engine faulted (engine_info's fault: a device error); NULL: none. */
void worker_set_health(struct worker *w, struct health *h);
/* Steps served and items stepped so far. */
uint64_t worker_steps(const struct worker *w);

#endif
