/*
 * events.h — a program's events to client streams (its watchers): accepted, progress,
 * finished.  Each event carries the program's next sequence number; a watcher whose stream is
 * gone is dropped.  For the core's files; loop thread only.
 */
#ifndef CERTA_DAEMON_EVENTS_H
#define CERTA_DAEMON_EVENTS_H

struct program;
struct rpc_call;

/* Sends `accepted` to one stream (duplicate: a repeated idempotency key). */
void events_accepted(struct program *p, struct rpc_call *to, int duplicate);
/* Sends `progress` (chains, certaindex, answer so far) to every watcher. */
void events_progress(struct program *p);
/* Sends `finished` to one stream (to != NULL) or to all watchers and ends the stream(s): OK,
 * or the program's error status when it FAILED. */
void events_finished(struct program *p, struct rpc_call *to);

#endif
