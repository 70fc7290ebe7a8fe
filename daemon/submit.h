/*
 * submit.h — Submit: a client's program spec becomes a durable, queued program.
 *
 * Order (docs/daemon.md): draining -> tenant -> validation against the tenant's policy ->
 * idempotency key (a repeat gets the program the key created) -> quotas -> one LMDB write with
 * the program, its empty chains and the key -> `accepted` event.  Nothing is written before the
 * checks pass; nothing is acknowledged before the commit.  Loop thread only.
 */
#ifndef CERTA_DAEMON_SUBMIT_H
#define CERTA_DAEMON_SUBMIT_H

#include <stddef.h>

#include "certa/v1/reasoning.pb-c.h"

struct core;
struct rpc_call;

/* Validates, persists and queues a program; `watcher` (a Submit stream, may be NULL) gets the
 * accepted event and all later events.  Errors (message in err): CERTA_EINVAL (bad spec),
 * CERTA_EAUTH (unknown tenant), CERTA_ECAPACITY (quota), CERTA_EUNAVAIL (draining),
 * CERTA_ESTORE, -ENOMEM. */
int submit_program(struct core *c, const char *tenant, const Certa__V1__ProgramSpec *spec,
    struct rpc_call *watcher, char *err, size_t errlen);

#endif
