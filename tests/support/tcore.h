/*
 * tcore.h — test and bench support: a real certad core (daemon/core.h) on a fresh temporary
 * state directory, with its event base and completion-queue bridge, as the unit tests and
 * benches that drive a core in process set it up.
 *
 * tcore_init() makes the directory ("$TMPDIR/certa-NAME-XXXXXX", tmpstore.h), the base and the
 * bridge and fills opt with test defaults: the built-in policy, 1 s pool health interval and
 * timeouts, prompts up to 4096 bytes, 3 attempts 100 ms apart, a 1 s tick, no starvation
 * bound in practice (an hour).  The caller changes opt as it needs, then tcore_open() makes
 * the core (again after a core_free() of c and c = NULL: a restart on the same directory).
 * tcore_fini() frees the core, runs the base until the bridge has shut down (5 s at most),
 * frees the bridge and the base and removes the directory; on a zeroed or partly initialized
 * struct too; it returns -ETIMEDOUT when the bridge did not shut down in time, else 0.  The
 * others return 0 or an error (-ENOMEM, a store or core error).  One thread.
 */
#ifndef CERTA_TESTS_SUPPORT_TCORE_H
#define CERTA_TESTS_SUPPORT_TCORE_H

#include "daemon/core.h"

struct event_base;
struct cqbridge;
struct tmpstore;

struct tcore {
	struct tmpstore *tmp;
	struct event_base *base;
	struct cqbridge *br;
	struct core_options opt;
	struct core *c;
};

int tcore_init(struct tcore *t, const char *name);
int tcore_open(struct tcore *t);
int tcore_fini(struct tcore *t);

#endif
