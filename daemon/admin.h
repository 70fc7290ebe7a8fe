/*
 * admin.h — the operator-facing certa.v1.Admin service: tenants and API keys, policies,
 * workers and statistics.  Every method needs an admin credential (daemon/auth.c).
 * Loop thread only.
 */
#ifndef CERTA_DAEMON_ADMIN_H
#define CERTA_DAEMON_ADMIN_H

#include <stddef.h>

struct rpc_method;

/* The method table; handlers expect a struct core * as context. */
const struct rpc_method *admin_methods(size_t *n);

#endif
