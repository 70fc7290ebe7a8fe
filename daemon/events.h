/*
 * events.h — a program's events to client streams (its watchers): accepted, progress,
 * finished.  Each event carries the program's next sequence number; a watcher whose stream is
 * gone is dropped.  For the core's files; loop thread only.
 */
#ifndef CERTA_DAEMON_EVENTS_H
#define CERTA_DAEMON_EVENTS_H

#include <stdint.h>

struct program;
struct rpc_call;

/* Sends `accepted` to one stream (duplicate: a repeated idempotency key). */
void events_accepted(struct program *p, struct rpc_call *to, int duplicate);
/* Sends `accepted` (duplicate, sequence 0) for a program that is no longer live, from its
 * stored idempotency record. */
void events_accepted_stored(struct rpc_call *to, const char *id, int64_t created_unix_ms);
/* Sends `progress` (chains, certaindex, answer so far) to every watcher. */
void events_progress(struct program *p);
/* Sends `finished` to one stream (to != NULL) or to all watchers and ends the stream(s): OK,
 * or the program's error status when it FAILED. */
void events_finished(struct program *p, struct rpc_call *to);

#endif
