/*
 * reasoning.h — the client-facing certa.v1.Reasoning service (Submit, Get, Cancel, List,
 * Watch) on top of the daemon core.  Loop thread only.
 */
#ifndef CERTA_DAEMON_REASONING_H
#define CERTA_DAEMON_REASONING_H

#include <stddef.h>

struct rpc_method;

/* The method table; handlers expect a struct core * as server context. */
const struct rpc_method *reasoning_methods(size_t *n);

#endif
