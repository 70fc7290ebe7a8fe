/*
 * cqbridge.h — completion queue -> libevent bridge.
 *
 * gRPC core 1.51 has no pollable fd for a completion queue, so one dedicated thread blocks in
 * grpc_completion_queue_next() and hands each completion (tag, ok) to the libevent loop thread
 * through a mutex-protected list and an eventfd (written only when the list was empty).  The
 * loop thread drains the list and calls each tag's function.  Consequently every
 * grpc_call_start_batch, grpc_server_request_call and shutdown call in certa runs on the loop
 * thread and per-call state needs no locks (see docs/threads.md).
 *
 * Every tag passed to gRPC on this queue must be a struct cqbridge_tag (usually embedded in a
 * larger object, recovered with container_of-style arithmetic).
 */
#ifndef CERTA_LIB_CQBRIDGE_H
#define CERTA_LIB_CQBRIDGE_H

#include <grpc/grpc.h>

struct event_base;
struct cqbridge;

/* Completions dispatched per loop turn at most (counted in units: one per completion, plus
 * what cqbridge_charge adds); more wait for the next turn. */
#define CQBRIDGE_BATCH 128

/* Default time budget of one loop turn's ordinary completions (microseconds): a turn stops
 * taking them once this much time went by (at least one runs), whatever is left of
 * CQBRIDGE_BATCH; see cqbridge_set_budget. */
#define CQBRIDGE_BUDGET_US 5000

struct cqbridge_tag {
	/* Called on the loop thread; ok is grpc_event.success. */
	void (*fn)(struct cqbridge_tag *tag, int ok);
	/* Runs as soon as the loop sees it, ahead of queued ordinary completions (the server
	 * side of calls: requests and probes are not kept waiting behind a backlog of client
	 * replies).  All tags of one call must be of one class. */
	int urgent;
};

/* Creates the completion queue, its thread and the eventfd event on base.  grpc_init() must
 * have been called.  Returns 0, -ENOMEM, or -errno from eventfd/pthread_create. */
int cqbridge_new(struct event_base *base, struct cqbridge **out);

/* The queue to pass to grpc_server_register_completion_queue / grpc_channel_create_call. */
grpc_completion_queue *cqbridge_cq(struct cqbridge *br);

/* Starts queue shutdown: call after every server and channel on the queue is destroyed.  When
 * the queue reports GRPC_QUEUE_SHUTDOWN, done(arg) runs on the loop thread. */
void cqbridge_shutdown(struct cqbridge *br, void (*done)(void *arg), void *arg);

/* Joins the thread and destroys the queue.  Call after done() ran (or after the loop exited
 * following a shutdown). */
void cqbridge_free(struct cqbridge *br);

/* Loop thread, from a completion's callback: the completion did the work of `units` more
 * (e.g. one Step reply carrying many programs' steps), counted against this turn's
 * CQBRIDGE_BATCH so the turn stays bounded. */
void cqbridge_charge(struct cqbridge *br, size_t units);

/* Loop thread: sets the time budget of one turn's ordinary completions (microseconds; 0: no
 * time budget, only CQBRIDGE_BATCH).  Default CQBRIDGE_BUDGET_US. */
void cqbridge_set_budget(struct cqbridge *br, unsigned budget_us);

/* Loop thread: fn(arg, seconds, ran) after each turn of the bridge that ran completions:
 * the time that turn took (urgent and ordinary completions, their callbacks included) and
 * how many ran.  NULL fn: none. */
void cqbridge_on_turn(struct cqbridge *br, void (*fn)(void *arg, double seconds, size_t ran),
    void *arg);

/* Any thread: queues a completion as if the completion queue had delivered it (tests). */
void cqbridge_post(struct cqbridge *br, struct cqbridge_tag *tag, int ok);

/* Number of completions dispatched so far (for tests and metrics). */
unsigned long long cqbridge_dispatched(const struct cqbridge *br);

#endif
