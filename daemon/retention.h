/*
 * retention.h — pruning: programs that finished more than retention.max_age ago are removed
 * with their chains, idempotency keys and history, at most 1000 per run, in one transaction.
 * For the core's files; loop thread only.
 */
#ifndef CERTA_DAEMON_RETENTION_H
#define CERTA_DAEMON_RETENTION_H

#include <event2/util.h>

/* The periodic timer's callback; arg is the struct core.  Failures are logged. */
void retention_on_timer(evutil_socket_t fd, short what, void *arg);

#endif
