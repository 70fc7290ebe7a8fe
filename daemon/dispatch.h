/*
 * dispatch.h — dispatch passes, steps on workers, step results, decisions and finalization.
 *
 * Programs that can step wait in a ready queue kept across passes (scheduler/fair.h: per-tenant
 * heaps; VTC across tenants; priority, deadline and remaining work inside a tenant; starvation
 * bound); a pass takes them in that order and sends gang steps while workers have free slots,
 * so its cost follows the steps it sends, not the programs that wait.  Step results are applied, charged to the tenant,
 * decided on (sched_decide with the tenant's current policy), committed, then announced.  For
 * the core's files; loop thread only.
 */
#ifndef CERTA_DAEMON_DISPATCH_H
#define CERTA_DAEMON_DISPATCH_H

#include <stddef.h>
#include <stdint.h>

#include "daemon/program.h"
#include "scheduler/sched.h"

struct core;

/* One dispatch pass (nothing while draining). */
void dispatch_run(struct core *c);
/* The ids of the programs the next pass would offer to workers, best first (at most max; n
 * gets the count).  Runs the scheduler on programs whose decision is stale, like a pass (a
 * deadline or budget may end one).  Ids are owned by the programs (valid until the next loop
 * iteration).  Returns 0 or -ENOMEM.  For tests and diagnostics. */
int dispatch_order(struct core *c, const char **ids, size_t max, size_t *n);
/* Puts a program where it waits now: in its ready queue with its current key when it can step
 * (nothing in flight, unwritten or ended), asleep when it backs off, else nowhere.  Called
 * wherever that may have changed (a commit landed, a step failed, a state changed); a walk
 * once a second queues any it missed (and counts them). */
void dispatch_ready(struct core *c, struct program *p);
/* Runs the ready queue's safety net now (it runs once a second from the passes) and returns
 * how many programs it ever found that could step but were neither queued nor asleep: a
 * missed dispatch_ready.  For tests (they expect 0). */
uint64_t dispatch_ready_verify(struct core *c);
/* Takes a program out of its ready queue and out of the sleepers (before it is freed). */
void dispatch_unready(struct core *c, struct program *p);
/* Releases a program's chains on the worker holding them (release: tell the worker too). */
void dispatch_unplace(struct core *c, struct program *p, int release);
/* Ends a program: terminal state, result, history, events, worker release; frees it unless a
 * step is in flight. */
void dispatch_finalize(struct core *c, struct program *p, enum program_state to,
    enum sched_reason reason, const char *answer, int status, const char *msg);
/* After a program's write committed (persist.h): its progress event (final 0), or the rest of
 * its ending (final 1: counters, log, finished event, worker release; frees it unless a step
 * is in flight). */
void dispatch_persisted(struct core *c, struct program *p, int final);

#endif
