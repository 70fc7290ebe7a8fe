/*
 * telemetry.h — certad's Prometheus metrics: the family table, the hooks the core calls as
 * things happen, and a collector that refreshes gauges (programs by state and tenant, queue
 * depth, workers, LMDB map usage) at scrape time.  Loop thread only.
 */
#ifndef CERTA_DAEMON_TELEMETRY_H
#define CERTA_DAEMON_TELEMETRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct core;
struct metrics;
struct telemetry;

int telemetry_new(struct core *c, struct telemetry **out);
void telemetry_free(struct telemetry *t);
/* Whether the tenant-labelled families carry one series per tenant (the default) or one for
 * all tenants together, tenant="_all" (the system account, "_system", stays apart): config
 * metrics.per_tenant, for fleets with thousands of tenants.  Set before the first hook. */
#define TELEMETRY_ALL_TENANTS "_all"
void telemetry_set_per_tenant(struct telemetry *t, int per_tenant);
struct metrics *telemetry_metrics(struct telemetry *t);

/* Hooks (t may be NULL: no-ops). */
void telemetry_submitted(struct telemetry *t, const char *tenant);
void telemetry_finished(struct telemetry *t, const char *tenant, const char *reason,
    double certaindex, uint64_t steps);
/* A staged sc program ended: launched, its pending chains ran too, else they were saved. */
void telemetry_staged(struct telemetry *t, bool launched);
void telemetry_tokens(struct telemetry *t, const char *tenant, uint64_t decode,
    uint64_t probe);
void telemetry_saved(struct telemetry *t, const char *tenant, uint64_t tokens);
void telemetry_step(struct telemetry *t, const char *worker, double seconds, int status);
/* Loop time of one step result's handling up to its decision (no commit), of one dispatch
 * pass, and the program writes of one group commit. */
void telemetry_decision(struct telemetry *t, double seconds);
void telemetry_pass(struct telemetry *t, double seconds);
void telemetry_commit(struct telemetry *t, size_t programs);
/* Loop thread time of one piece of a turn (certa_loop_phase_seconds{phase}): "bridge",
 * "commit", "store", "dispatch", "tick". */
void telemetry_loop_phase(struct telemetry *t, const char *phase, double seconds);
/* How late the loop's heartbeat timer ran (certa_loop_lag_seconds). */
void telemetry_loop_lag(struct telemetry *t, double seconds);

#endif
