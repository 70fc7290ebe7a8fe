/*
 * core.h — certad's core: programs, durability, dispatch to workers, and the scheduling seam.
 *
 * Accepted == durable: submit_program (daemon/submit.h) commits the program to LMDB before the
 * `accepted` event is queued.  Every step's output (text and tokens per chain) is committed
 * before its progress event.  On start, unfinished programs are read back and resumed (the
 * worker re-prefills from prompt + text so far).  Finished programs are written with their
 * probe trajectory to the history DB.  Loop thread only.
 *
 * The core is split by concern; each file has its header: submit.h and queries.h (the calls the
 * Reasoning service makes), and, for the core's own files, persist.h, events.h, dispatch.h,
 * recovery.h and retention.h around the shared state in core_impl.h.
 */
#ifndef CERTA_DAEMON_CORE_H
#define CERTA_DAEMON_CORE_H

#include <stddef.h>
#include <stdint.h>

#include "daemon/pool.h"
#include "daemon/tenants.h"
#include "scheduler/sched.h"

struct cqbridge;
struct event_base;
struct rpc_call;
struct core;
struct fair;
struct policies;
struct store;
struct route_config;

struct core_options {
	const char *state_dir;      /* LMDB environment directory */
	size_t map_size;            /* initial LMDB map size */
	size_t max_map_size;
	struct sched_policy policy;
	struct pool_options pool;
	uint32_t max_prompt_bytes;
	uint32_t max_attempts;      /* failed steps in a row before a program fails */
	int retry_backoff_ms;
	int tick_ms;
	int64_t starvation_ms;      /* a ready program waiting this long goes first */
	struct tenant_quota quota_defaults;
	const char *anonymous_tenant; /* callers without a key act as this tenant ("" = refuse) */
	int64_t retention_ms;       /* finished programs older than this are removed (0: keep) */
	int retention_interval_ms;  /* how often pruning runs */
	const struct route_config *route; /* expert routing (daemon/route.h); NULL or not
	                             * enabled: off */
	/* Per-model priors of model_tokens ("MODEL TOKENS" lines, config policy.model_tokens;
	 * daemon/shadow.h), checked by shadow_prior_parse. */
	const char *const *model_tokens;
	size_t nmodel_tokens;
};

/* Opens the store and recovers unfinished programs.  Returns 0 or a store error
 * (CERTA_ESCHEMA, CERTA_ECORRUPT, -errno). */
int core_new(struct event_base *base, struct cqbridge *br, const struct core_options *opt,
    struct core **out);
void core_free(struct core *c);
struct pool *core_pool(struct core *c);
struct tenants *core_tenants(struct core *c);
struct policies *core_policies(struct core *c);
struct fair *core_fair(struct core *c);
struct store *core_store(struct core *c);
const struct sched_policy *core_policy(const struct core *c);

/* Stops dispatching, waits for in-flight steps to be persisted, ends client streams with
 * UNAVAILABLE (programs resume after restart), then calls done(arg). */
void core_drain(struct core *c, void (*done)(void *arg), void *arg);
int core_draining(const struct core *c);

/* Ends, with UNAUTHENTICATED and the message why, every client stream (Submit or Watch) of a
 * live program for which still_ok(call, arg) returns 0; called after credentials changed
 * (key revoked or rotated away, tenant deleted).  Loop thread. */
void core_end_watchers(struct core *c, int (*still_ok)(struct rpc_call *call, void *arg),
    void *arg, const char *why);

/* Replaces the policy (SIGHUP reload); validated by the caller. */
void core_set_policy(struct core *c, const struct sched_policy *p);
/* Calls fn(arg) once every worker answered or failed its first health check, or after
 * timeout_ms, whichever comes first (READY=1 waits for it). */
void core_on_workers_probed(struct core *c, void (*fn)(void *arg), void *arg, int timeout_ms);
/* Metrics hooks (NULL: none). */
struct telemetry;
void core_set_telemetry(struct core *c, struct telemetry *t);

/* Degraded: some programs wait because their write failed (disk full, map at
 * store.max_map_size, I/O error; retried with a backoff, see daemon/persist.h).  /readyz and
 * grpc.health report NOT_SERVING meanwhile.  core_on_degraded's fn(arg, degraded) is called on
 * every change (NULL: none). */
int core_degraded(const struct core *c);
void core_on_degraded(struct core *c, void (*fn)(void *arg, int degraded), void *arg);
/* Failed program writes since start, and programs waiting for a write now (metrics). */
void core_persist_stats(const struct core *c, uint64_t *commit_failures, size_t *waiting);
/* Group commits that failed since start (each program of one is then written alone). */
uint64_t core_set_failures(const struct core *c);

/* Steps completed since start. */
uint64_t core_steps(const struct core *c);

/* Counts for STATUS= and logs. */
void core_counts(const struct core *c, size_t *queued, size_t *running, uint64_t *finished);

#endif
