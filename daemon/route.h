/*
 * route.h — expert routing inside certad: where a new program starts (pool / model,
 * algorithm, chains, budget, MoE top-p) and how it escalates while it runs, with the pure
 * router of scheduler/router.h and the nearest problems of scheduler/knn.h.
 *
 * Configuration (certad.conf, [route]): `pool = NAME MODEL [COST] [moe]` lines add a pool or
 * override the routing policy's pool of that name; `policy = FILE` a routing policy file
 * (policy/route.policy's syntax; empty: the built-in router_policy_default()); `tenant = NAME
 * [pools=P1,P2] [no-hints] [no-escalation]` lines the tenant's rules.  Routing is on when
 * a pool line or a policy file is configured; off (the default), certad runs every program
 * as submitted, exactly as without this module.
 *
 * In the core (core_impl.h c->route, NULL when off):
 *  - history: a KNN index of the problems of finished programs, filled from the LMDB
 *    history DB at start and on every finish, with each one's outcome as certad knows it
 *    (decode tokens, longest chain, finish reason, whether it escalated, agreement; never
 *    correctness);
 *  - submit: route_program() picks the start from the tenant's rules, the client's hints
 *    (model, algorithm, n, budget, moe_top_p) and the neighbours' outcomes;
 *    route_attach() gives it to the new program (state RUNNING, the "route" event);
 *  - every decision: route_decide() runs router_escalate() after sched_decide() and acts on
 *    the program: FORK (cot -> sc in a pool: chain 0 keeps its tokens and votes, chains are
 *    added on the same worker), SWITCH (all chains restart from the prompt on the next
 *    rung's pool: released on their worker and placed again, as failover does; their tokens
 *    stay spent), DROP (the dissenting chains stop), RAISE_TOP_P (a MoE pool's program
 *    struggling: its moe_top_p rises, chains and worker kept; the next step carries the
 *    chains' text once so the worker rebuilds the sequences with the new p).  Every
 *    decision is appended to the program's routing history (Program.routing) with its
 *    reason and written with the program, so it survives a restart; `certactl get
 *    --explain ID` prints it.
 *
 * Loop thread only.  Errors: 0 or a negative code (lib/error.h); messages in err.
 */
#ifndef CERTA_DAEMON_ROUTE_H
#define CERTA_DAEMON_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "scheduler/router.h"
#include "scheduler/sched.h"

struct core;
struct program;
struct store;
struct submit_spec;
struct route;

/* One tenant's routing rules (the `tenant = ...` lines). */
struct route_rule {
	char tenant[64];
	struct router_tenant t;
};

/* What the configuration says (pure data; main.c fills it from certad.conf). */
struct route_config {
	bool enabled;
	struct router_policy policy;
	struct route_rule *rules;   /* owned; route_config_free */
	size_t nrules;
};

/*
 * Builds cfg from the [route] options: policy_text (NULL: the built-in policy; name is its
 * file name for messages), the pool lines pools[0..npools) ("NAME MODEL [COST] [moe]", cost
 * 1 when absent) and the tenant lines tenants[0..ntenants) ("NAME [pools=P1,P2] [no-hints]
 * [no-escalation]").  enabled when a policy text or a pool line is given.  Returns 0, or
 * CERTA_ECONFIG with "route.pool: ..." / "route.tenant: ..." / "FILE:LINE: ..." in err;
 * -ENOMEM.  cfg is written only on success.
 */
int route_config_build(const char *policy_text, size_t len, const char *name,
    const char *const *pools, size_t npools, const char *const *tenants, size_t ntenants,
    struct route_config *cfg, char *err, size_t errlen);
void route_config_free(struct route_config *cfg);

/* The rules for tenant in cfg (zero value: everything allowed). */
struct router_tenant route_config_tenant(const struct route_config *cfg, const char *tenant);

/* A router for the core from cfg (copied; NULL when cfg is not enabled: *out = NULL). */
int route_new(const struct route_config *cfg, struct route **out);
void route_free(struct route *r);
/* Adds the finished programs of the history DB to the index.  Returns 0 or a store error. */
int route_load_history(struct route *r, struct store *st);
/* Documents in the index. */
size_t route_history_count(const struct route *r);
/* A program ended (finished, cancelled, failed): its problem and outcome join the index
 * (shadows do not).  -ENOMEM is logged, not returned. */
void route_finished(struct core *c, const struct program *p);

/* Where a new program starts. */
struct route_start {
	bool routed;                /* false: routing off, or the client named a model outside
	                             * every pool: the program runs as submitted */
	struct router_route r;
	char pool[ROUTER_NAME_MAX];
	char model[ROUTER_MODEL_MAX];
};

/*
 * Routes a new program of tenant (the spec's model, algorithm, n, budget and moe_top_p are the
 * hints; pol the tenant's scheduling policy).  On success *algo, *n and *budget hold where it
 * starts and *out the rest.  Returns 0, CERTA_EINVAL (the tenant may use no pool of the
 * ladder; message in err).
 */
int route_program(struct core *c, const char *tenant, const struct submit_spec *spec,
    const struct sched_policy *pol, enum sched_algo *algo, uint32_t *n, uint64_t *budget,
    struct route_start *out, char *err, size_t errlen);
/* Gives the start to the new program (model, MoE top-p, state, the "route" event).  0 or
 * -ENOMEM. */
int route_attach(struct program *p, const struct route_start *rs);

/*
 * After sched_decide() returned *d for view v of p: the router's escalation.  Returns 0 (go
 * on as *d says), or 1 when the program changed shape (forked, switched, dropped chains):
 * the caller decides again on the new chains (a stop in *d no longer stands).  Not routed
 * programs and shadows: 0.
 */
int route_decide(struct core *c, struct program *p, const struct sched_view *v,
    const struct sched_decision *d);

#endif
