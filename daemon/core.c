/* core.c — the core's shared state: creation, the live set, worker changes, drain. */
#include "daemon/core_impl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <event2/event.h>

#include "daemon/deadlines.h"
#include "daemon/dispatch.h"
#include "daemon/commit.h"
#include "daemon/persist.h"
#include "daemon/recovery.h"
#include "daemon/retention.h"
#include "daemon/route.h"
#include "daemon/shadow.h"
#include "daemon/policies.h"
#include "daemon/program.h"
#include "daemon/tenants.h"
#include "daemon/telemetry.h"
#include "scheduler/fair.h"
#include "lib/array.h"
#include "lib/cqbridge.h"
#include "lib/error.h"
#include "lib/log.h"
#include "lib/rpc_server.h"
#include "lib/strmap.h"
#include "store/store.h"

int64_t
core_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

double
core_mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Time-ordered id: 12 hex digits of milliseconds + 6 random hex digits. */
void
core_new_id(char *buf, size_t len)
{
	uint32_t r = 0;

	if (getrandom(&r, sizeof r, 0) != sizeof r)
		r = (uint32_t)rand();
	snprintf(buf, len, "p-%012llx%06x", (unsigned long long)core_now_ms(), r & 0xffffff);
}

/* Every program state change goes through here: the state machine plus tenant accounting. */
void
core_set_state(struct core *c, struct program *p, enum program_state to)
{
	enum program_state from = p->state;

	if (from == to)
		return;
	program_set_state(p, to);
	tenants_program_state(c->tenants, p->tenant, (int)from, (int)to);
	if (to == PROGRAM_QUEUED)
		p->ready_since_ms = core_now_ms();
	if (to == PROGRAM_QUEUED || fair_entry_queued(&p->ready) || p->asleep)
		dispatch_ready(c, p);
}

/* Asks for a dispatch pass on the next loop iteration (never re-entrant). */
void
core_kick(struct core *c)
{
	event_active(c->kick, 0, 0);
}

/* core_trim drops the spare commit sets once the live programs fell to half their peak and by
 * at least this many: a small load's swings keep them. */
#define CORE_TRIM_MIN_ENDED 1000

int
core_order_add(struct core *c, struct program *p)
{
	if (ARRAY_GROW(c->order, c->order_cap, c->norder + 1) != 0)
		return -ENOMEM;
	p->order_ix = c->norder;
	c->order[c->norder++] = p;
	if (c->norder > c->trim_peak)
		c->trim_peak = c->norder;
	dispatch_ready(c, p);   /* and in the deadline heap */
	return 0;
}

/* Drops a program from the live set and frees it. */
void
core_forget(struct core *c, struct program *p)
{
	size_t i = p->order_ix;

	strmap_del(c->live, p->id);
	commit_unqueue(c, p);
	commit_accept_end(c, p);
	dispatch_unready(c, p);
	deadlines_del(c, p);
	/* The last one fills the hole: no walk, no move of the rest. */
	if (i < c->norder && c->order[i] == p) {
		c->order[i] = c->order[--c->norder];
		c->order[i]->order_ix = i;
	}
	program_free(p);
}

static void
core_on_kick(evutil_socket_t fd, short what, void *arg)
{
	struct core *c = arg;
	double t0 = core_mono_s();

	(void)fd;
	(void)what;
	dispatch_run(c);
	telemetry_loop_phase(c->tel, "dispatch", core_mono_s() - t0);
}

/* --- worker changes --- */

/* Ready once every configured worker answered (or failed) its first health check. */
static void
core_check_first_probe(struct core *c)
{
	void (*fn)(void *);
	size_t i;

	if (c->first_probe == NULL)
		return;
	for (i = 0; i < pool_count(c->pool); i++)
		if (pool_worker_state(pool_at(c->pool, i)) == POOL_UNKNOWN)
			return;
	fn = c->first_probe;
	c->first_probe = NULL;
	if (c->probe_timeout != NULL)
		event_del(c->probe_timeout);
	fn(c->first_probe_arg);
}

static void
core_on_probe_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct core *c = arg;
	void (*fn)(void *) = c->first_probe;

	(void)fd;
	(void)what;
	if (fn == NULL)
		return;
	c->first_probe = NULL;
	fn(c->first_probe_arg);
}

void
core_on_workers_probed(struct core *c, void (*fn)(void *arg), void *arg, int timeout_ms)
{
	struct timeval tv;

	c->first_probe = fn;
	c->first_probe_arg = arg;
	if (pool_count(c->pool) == 0) {
		core_check_first_probe(c);
		return;
	}
	if (c->probe_timeout == NULL)
		c->probe_timeout = event_new(c->base, -1, 0, core_on_probe_timeout, c);
	tv.tv_sec = timeout_ms / 1000;
	tv.tv_usec = (timeout_ms % 1000) * 1000;
	if (c->probe_timeout != NULL)
		event_add(c->probe_timeout, &tv);
}

/* The CQ bridge's turns (completions: step results, requests) as a loop phase. */
static void
core_on_bridge_turn(void *arg, double seconds, size_t ran)
{
	struct core *c = arg;

	(void)ran;
	telemetry_loop_phase(c->tel, "bridge", seconds);
}

void
core_set_telemetry(struct core *c, struct telemetry *t)
{
	c->tel = t;
	if (c->br != NULL)
		cqbridge_on_turn(c->br, t != NULL ? core_on_bridge_turn : NULL, c);
}

static void
core_on_worker_change(void *arg, struct pool_worker *w, enum pool_wstate from,
    enum pool_wstate to)
{
	struct core *c = arg;
	size_t i;

	(void)from;
	core_check_first_probe(c);
	if (to == POOL_UP) {
		core_kick(c);
		return;
	}
	if (to != POOL_DOWN)
		return;
	/* Programs parked on the lost worker move on; in-flight ones are handled when their step
	 * fails. */
	for (i = 0; i < c->norder; i++) {
		struct program *p = c->order[i];
		if (p->inflight || p->worker == NULL || strcmp(p->worker, pool_worker_addr(w)) != 0)
			continue;
		dispatch_unplace(c, p, 0);
		if (p->state == PROGRAM_RUNNING)
			core_set_state(c, p, PROGRAM_QUEUED);
	}
	core_kick(c);
}

/*
 * What a peak load left behind (docs/daemon.md "Memory after a peak").  The spare commit sets
 * hold write-set buffers sized by the peak's turns; they go once the live programs fell to
 * half.  The free heap glibc keeps in its arenas after a burst (~220 MB after 10,000
 * programs) is not handed back: malloc_trim took 260-410 ms on the loop thread here, holding
 * the arena the loop allocates from, and more with a larger heap; the next burst reuses it.
 */
int
core_trim(struct core *c)
{
	double t0 = core_mono_s();

	if (c->trim_peak <= c->norder || c->trim_peak - c->norder < c->trim_min ||
	    c->norder > c->trim_peak / 2)
		return 0;
	commit_spares_drop(c);
	c->trim_peak = c->norder;
	log_debug(LOG_MAIN, "spare commit sets given back: %zu live programs, %.1f ms",
	    c->norder, (core_mono_s() - t0) * 1e3);
	return CORE_TRIM_SETS;
}

/* --- public API --- */

static void
core_on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct core *c = arg;
	double t0 = core_mono_s();

	(void)fd;
	(void)what;
	dispatch_run(c);
	core_trim(c);
	telemetry_loop_phase(c->tel, "tick", core_mono_s() - t0);
}

int
core_new(struct event_base *base, struct cqbridge *br, const struct core_options *opt,
    struct core **out)
{
	struct core *c;
	struct store_options so;
	struct timeval tv;
	int rc;

	c = calloc(1, sizeof *c);
	if (c == NULL)
		return -ENOMEM;
	c->commit_efd = -1;
	c->base = base;
	c->br = br;
	c->opt = *opt;
	memset(&so, 0, sizeof so);
	so.map_size = opt->map_size;
	so.max_map_size = opt->max_map_size;
	rc = store_open(opt->state_dir, &so, &c->st);
	if (rc != 0)
		goto fail_c;
	rc = tenants_open(c->st, &opt->quota_defaults, &c->tenants);
	if (rc != 0)
		goto fail_store;
	if (opt->anonymous_tenant != NULL && opt->anonymous_tenant[0] != '\0' &&
	    (rc = tenants_ensure(c->tenants, opt->anonymous_tenant)) != 0)
		goto fail_tenants;
	rc = policies_open(c->st, &opt->policy, &c->policies);
	if (rc != 0)
		goto fail_tenants;
	rc = shadow_new(c, &c->shadow);
	if (rc != 0)
		goto fail_tenants;
	rc = route_new(opt->route, &c->route);
	if (rc == 0)
		rc = route_load_history(c->route, c->st);
	if (rc != 0)
		goto fail_tenants;
	c->fair = fair_new();
	c->shadow_fair = fair_new();
	c->live = strmap_new();
	c->accept_keys = strmap_new();
	if (c->live == NULL || c->accept_keys == NULL || c->fair == NULL ||
	    c->shadow_fair == NULL) {
		rc = -ENOMEM;
		goto fail_tenants;
	}
	rc = pool_new(base, br, &opt->pool, core_on_worker_change, c, &c->pool);
	if (rc != 0)
		goto fail_live;
	c->trim_min = CORE_TRIM_MIN_ENDED;
	c->kick = event_new(base, -1, 0, core_on_kick, c);
	c->tick = event_new(base, -1, EV_PERSIST, core_on_tick, c);
	if (c->kick == NULL || c->tick == NULL || persist_init(c) != 0 || commit_init(c) != 0) {
		rc = -ENOMEM;
		goto fail_events;
	}
	tv.tv_sec = opt->tick_ms / 1000;
	tv.tv_usec = (opt->tick_ms % 1000) * 1000;
	event_add(c->tick, &tv);
	rc = recovery_run(c);
	if (rc != 0)
		goto fail_events;
	if (opt->retention_ms > 0) {
		int iv = opt->retention_interval_ms > 0 ? opt->retention_interval_ms : 3600000;
		c->retention = event_new(base, -1, EV_PERSIST, retention_on_timer, c);
		if (c->retention != NULL) {
			tv.tv_sec = iv / 1000;
			tv.tv_usec = (iv % 1000) * 1000;
			event_add(c->retention, &tv);
		}
	}
	*out = c;
	return 0;

fail_events:
	commit_fini(c);
	persist_fini(c);
	if (c->kick != NULL)
		event_free(c->kick);
	if (c->tick != NULL)
		event_free(c->tick);
	pool_free(c->pool);
fail_live:
	while (c->norder > 0)
		core_forget(c, c->order[c->norder - 1]);
fail_tenants:
	strmap_free(c->live, NULL);
	strmap_free(c->accept_keys, NULL);
	free(c->order);
	free(c->sleeping);
	deadlines_fini(c);
	fair_free(c->fair);
	fair_free(c->shadow_fair);
	shadow_free(c->shadow);
	route_free(c->route);
	policies_free(c->policies);
	tenants_free(c->tenants);
fail_store:
	store_close(c->st);
fail_c:
	free(c);
	return rc;
}

void
core_free(struct core *c)
{
	if (c == NULL)
		return;
	event_free(c->kick);
	event_free(c->tick);
	shadow_flush(c);   /* queued for the store: commit_fini writes it */
	commit_fini(c);
	persist_fini(c);
	if (c->probe_timeout != NULL)
		event_free(c->probe_timeout);
	if (c->retention != NULL)
		event_free(c->retention);
	while (c->norder > 0)
		core_forget(c, c->order[c->norder - 1]);
	strmap_free(c->live, NULL);
	strmap_free(c->accept_keys, NULL);
	free(c->order);
	free(c->sleeping);
	deadlines_fini(c);
	pool_free(c->pool);
	fair_free(c->fair);
	fair_free(c->shadow_fair);
	shadow_free(c->shadow);
	route_free(c->route);
	policies_free(c->policies);
	tenants_free(c->tenants);
	store_close(c->st);
	free(c);
}

struct policies *
core_policies(struct core *c)
{
	return c->policies;
}

struct tenants *
core_tenants(struct core *c)
{
	return c->tenants;
}

struct fair *
core_fair(struct core *c)
{
	return c->fair;
}

struct store *
core_store(struct core *c)
{
	return c->st;
}

const struct sched_policy *
core_policy(const struct core *c)
{
	return &c->opt.policy;
}

struct pool *
core_pool(struct core *c)
{
	return c->pool;
}

void
core_drain(struct core *c, void (*done)(void *), void *arg)
{
	size_t i, j;

	c->draining = 1;
	/* Client streams end now; their programs are durable and resume after restart.  Drop
	 * the references too: the server waits for every call to be released before it stops,
	 * and a program that never steps again (no worker) would hold them forever. */
	for (i = 0; i < c->norder; i++) {
		struct program *p = c->order[i];
		while ((j = p->nwatchers) > 0) {
			rpc_call_finish(p->watchers[j - 1], GRPC_STATUS_UNAVAILABLE,
			    "certad is shutting down; program %s continues after restart "
			    "(certactl watch %s)", p->id, p->id);
			program_unwatch(p, p->watchers[j - 1]);
		}
	}
	if (pool_inflight(c->pool) == 0) {
		commit_sync(c);
		done(arg);
		return;
	}
	log_info(LOG_MAIN, "draining: waiting for %zu in-flight steps", pool_inflight(c->pool));
	c->drain_done = done;
	c->drain_arg = arg;
}

void
core_end_watchers(struct core *c, int (*still_ok)(struct rpc_call *call, void *arg), void *arg,
    const char *why)
{
	size_t i, j;

	for (i = 0; i < c->norder; i++) {
		struct program *p = c->order[i];
		j = 0;
		while (j < p->nwatchers) {
			struct rpc_call *w = p->watchers[j];
			if (still_ok(w, arg)) {
				j++;
				continue;
			}
			log_info(LOG_ADMIN, "program %s: ending the stream of %s: %s", p->id,
			    rpc_call_peer(w), why);
			rpc_call_finish(w, GRPC_STATUS_UNAUTHENTICATED, "%s", why);
			program_unwatch(p, w);
		}
	}
}

int
core_draining(const struct core *c)
{
	return c->draining;
}

void
core_set_policy(struct core *c, const struct sched_policy *p)
{
	c->opt.policy = *p;
	policies_set_base(c->policies, p);
}

int
core_degraded(const struct core *c)
{
	return c->persist_waiting > 0;
}

void
core_on_degraded(struct core *c, void (*fn)(void *arg, int degraded), void *arg)
{
	c->degraded_fn = fn;
	c->degraded_arg = arg;
}

void
core_persist_stats(const struct core *c, uint64_t *commit_failures, size_t *waiting)
{
	*commit_failures = c->commit_failures;
	*waiting = c->persist_waiting;
}

uint64_t
core_set_failures(const struct core *c)
{
	return c->set_failures;
}

uint64_t
core_steps(const struct core *c)
{
	return c->steps_total;
}

void
core_counts(const struct core *c, size_t *queued, size_t *running, uint64_t *finished)
{
	size_t i;

	*queued = 0;
	*running = 0;
	for (i = 0; i < c->norder; i++) {
		if (c->order[i]->state == PROGRAM_QUEUED)
			(*queued)++;
		else if (c->order[i]->state == PROGRAM_RUNNING)
			(*running)++;
	}
	*finished = c->finished_total;
}
