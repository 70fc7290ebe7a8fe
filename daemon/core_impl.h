/*
 * core_impl.h — the core's shared state, for the daemon modules that make up the core only
 * (core.c, persist.c, events.c, dispatch.c, recovery.c, retention.c, submit.c, queries.c).
 * Everything else uses daemon/core.h, where struct core is opaque.  Loop thread only.
 */
#ifndef CERTA_DAEMON_CORE_IMPL_H
#define CERTA_DAEMON_CORE_IMPL_H

#include <stddef.h>
#include <stdint.h>
#include <event2/util.h>

#include "daemon/core.h"
#include "daemon/program.h"

struct core {
	struct event_base *base;
	struct cqbridge *br;
	struct core_options opt;
	struct store *st;
	struct pool *pool;
	struct tenants *tenants;
	struct policies *policies;
	struct fair *fair;
	struct telemetry *tel;      /* may be NULL */
	void (*first_probe)(void *arg);
	void *first_probe_arg;
	struct event *probe_timeout;
	struct event *retention;    /* periodic pruning of old finished programs */
	uint64_t pruned_total;
	uint64_t next_seq;
	struct strmap *live;        /* id -> struct program (not yet terminal, or inflight) */
	struct program **order;     /* live programs in submission order (dispatch order) */
	size_t norder, order_cap;
	struct event *kick;         /* deferred dispatch */
	struct event *tick;         /* periodic dispatch (backoff, deadlines) */
	int draining;
	void (*drain_done)(void *arg);
	void *drain_arg;
	uint64_t finished_total;
	uint64_t steps_total;
};

/* core.c: shared helpers. */
int64_t core_now_ms(void);
void core_new_id(char *buf, size_t len);
void core_set_state(struct core *c, struct program *p, enum program_state to);
void core_kick(struct core *c);
int core_order_add(struct core *c, struct program *p);
void core_forget(struct core *c, struct program *p);

/* persist.c */
int core_persist_ex(struct core *c, struct program *p, int all_chains, int history, int first);
int core_persist(struct core *c, struct program *p, int all_chains, int history);

/* events.c */
void core_send_accepted(struct program *p, struct rpc_call *to, int duplicate);
void core_send_progress(struct program *p);
void core_send_finished(struct program *p, struct rpc_call *to);

/* dispatch.c */
void core_unplace(struct core *c, struct program *p, int release);
void core_dispatch(struct core *c);
void core_finalize(struct core *c, struct program *p, enum program_state to,
    enum sched_reason reason, const char *answer, int status, const char *msg);

/* recovery.c */
int core_recover(struct core *c);

/* retention.c */
void core_on_retention(evutil_socket_t fd, short what, void *arg);

#endif
