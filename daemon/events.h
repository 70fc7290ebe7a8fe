/*
 * events.h — a program's events to client streams (its watchers): accepted, progress,
 * finished.  Each event carries its per-program number (seq: accepted 1, progress after step
 * k k + 1, finished steps + 2; the same on every stream, derived from the stored step count);
 * a watcher whose stream is gone is dropped.  For the core's files; loop thread only.
 */
#ifndef CERTA_DAEMON_EVENTS_H
#define CERTA_DAEMON_EVENTS_H

#include <stdint.h>

struct program;
struct rpc_call;

/* seq of the accepted event (original or duplicate). */
#define EVENTS_SEQ_ACCEPTED 1
/* seq of the progress event after a program's steps-th committed step. */
uint64_t events_seq_progress(uint64_t steps);
/* seq of the finished event of a program that ran steps committed steps. */
uint64_t events_seq_finished(uint64_t steps);

/* Sends `accepted` to one stream (duplicate: a repeated idempotency key). */
void events_accepted(struct program *p, struct rpc_call *to, int duplicate);
/* Sends `accepted` (duplicate, seq 1) for a program that is no longer live, from its
 * stored idempotency record. */
void events_accepted_stored(struct rpc_call *to, const char *id, int64_t created_unix_ms);
/* Sends `progress` (chains, certaindex, answer so far) to every watcher. */
void events_progress(struct program *p);
/* Sends `finished` to one stream (to != NULL) or to all watchers and ends the stream(s) with
 * OK, also when the program FAILED (the failure is in the result). */
void events_finished(struct program *p, struct rpc_call *to);

#endif
