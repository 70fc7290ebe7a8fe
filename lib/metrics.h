/*
 * metrics.h — a small Prometheus registry and its HTTP endpoint.
 *
 * A program declares its metrics in a static table of struct metrics_desc (name, type, help,
 * label names, histogram buckets) and refers to each by its index in that table — normally an
 * enum kept next to the table:
 *
 *	enum { M_PROGRAMS, M_STEP_SECONDS, M_QUEUE_DEPTH };
 *	static const char *const l_tenant_state[] = { "tenant", "state", NULL };
 *	static const double b_latency[] = { .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10 };
 *	static const struct metrics_desc table[] = {
 *		[M_PROGRAMS] = { "certa_programs_total", METRICS_COUNTER,
 *		    "programs that reached a state", l_tenant_state, NULL, 0 },
 *		[M_STEP_SECONDS] = { "certa_step_duration_seconds", METRICS_HISTOGRAM,
 *		    "duration of one Step RPC", NULL, b_latency, 11 },
 *		[M_QUEUE_DEPTH] = { "certa_queue_depth", METRICS_GAUGE, "queued programs",
 *		    NULL, NULL, 0 },
 *	};
 *	metrics_new(table, 3, &m);
 *	metrics_inc(m, M_PROGRAMS, METRICS_LABELS("tenant-a", "running"));
 *	metrics_observe(m, M_STEP_SECONDS, NULL, 0.042);
 *
 * A series is one combination of label values; it is created on first use (a family without
 * labels has its single series from the start, at 0).  Label values are any text; they are
 * escaped when rendered.  Values are in base units (seconds, bytes) as Prometheus expects.
 *
 * Rendering follows the text exposition format 0.0.4: per family "# HELP" (help escaped),
 * "# TYPE", then its series in creation order (a series refreshed in place counts as created
 * when its refresh first updated it); histograms as cumulative name_bucket{le="..."}
 * lines ending with le="+Inf", then name_sum and name_count.
 *
 * The table is checked by metrics_new, and a malformed one aborts the program (a programming
 * error, as in lib/config): names must match [a-zA-Z_:][a-zA-Z0-9_:]* and be unique, counters
 * must end in "_total", label names [a-zA-Z_][a-zA-Z0-9_]* not starting with "__" (and no
 * "le" on histograms), buckets finite and strictly increasing (at least one).  Using an index
 * out of range or the wrong function for a family's type also aborts.
 *
 * Threads: a registry is not locked; create, update, render and free it on one thread (the
 * loop thread).  The HTTP endpoint runs on that thread's event_base.
 * Errors: 0 or a negative code as listed per function.
 */
#ifndef CERTA_LIB_METRICS_H
#define CERTA_LIB_METRICS_H

#include <stddef.h>
#include <stdio.h>

struct event_base;

enum metrics_type {
	METRICS_COUNTER = 0,  /* only goes up; name ends in _total */
	METRICS_GAUGE,        /* set, or moved up and down */
	METRICS_HISTOGRAM,    /* observations counted in fixed buckets, plus sum and count */
};

/* One metric family.  The table and everything it points to must outlive the registry. */
struct metrics_desc {
	const char *name;
	enum metrics_type type;
	const char *help;
	const char *const *labels;  /* NULL-terminated label names; NULL = no labels */
	const double *buckets;      /* HISTOGRAM: upper bounds, increasing, without +Inf */
	size_t nbuckets;
};

/* Label values for one series, in the order of the family's label names. */
#define METRICS_LABELS(...) ((const char *const[]){ __VA_ARGS__ })

struct metrics;
struct metrics_http;

/* Called by metrics_render before it writes anything, so gauges that are cheap to compute on
 * demand (queue depth, LMDB map usage, workers up) can be refreshed at scrape time. */
typedef void (*metrics_collect_fn)(struct metrics *m, void *arg);

/* Readiness for /readyz: non-zero when ready. */
typedef int (*metrics_ready_fn)(void *arg);

/* Creates a registry for the n families of table (aborts if the table is malformed).
 * *out is written only on success.  Returns 0 or -ENOMEM. */
int metrics_new(const struct metrics_desc *table, size_t n, struct metrics **out);

/* Frees the registry and every series.  Stop its HTTP endpoint first.  NULL is a no-op. */
void metrics_free(struct metrics *m);

/* Sets (or clears, fn NULL) the collect callback. */
void metrics_set_collector(struct metrics *m, metrics_collect_fn fn, void *arg);

/*
 * Updates.  id is the family's index in the table; values holds as many label values as the
 * family has label names (NULL for a family without labels); none may be NULL.
 * Returns 0, -EINVAL (a NULL label value; a negative or NaN counter increment; a NaN
 * observation), or -ENOMEM (a new series could not be allocated; nothing changed).
 */
int metrics_counter_add(struct metrics *m, size_t id, const char *const *values, double v);
int metrics_gauge_set(struct metrics *m, size_t id, const char *const *values, double v);
int metrics_gauge_add(struct metrics *m, size_t id, const char *const *values, double v);
int metrics_observe(struct metrics *m, size_t id, const char *const *values, double v);

#define metrics_inc(m, id, values) metrics_counter_add((m), (id), (values), 1.0)

/* Current value of a counter or gauge series, or a histogram's count, in *out (written only
 * on success).  Returns 0, CERTA_ENOTFOUND when the series does not exist, -EINVAL for a
 * NULL label value, -ENOMEM. */
int metrics_get(const struct metrics *m, size_t id, const char *const *values, double *out);

/* Removes one series (e.g. a deleted tenant's gauges).  Returns 0, CERTA_ENOTFOUND, -EINVAL
 * (a NULL label value) or -ENOMEM.
 * The series of a family without labels cannot be removed (it is reset to 0). */
int metrics_remove(struct metrics *m, size_t id, const char *const *values);

/* Removes every series of a labelled family (a gauge recomputed from scratch in the collect
 * callback: reset, then set the current combinations); resets an unlabelled one to 0. */
void metrics_reset(struct metrics *m, size_t id);

/*
 * Refreshes a family in place: what metrics_reset followed by the collect callback's updates
 * gives — the same series, values and order, so the same rendered text — without freeing and
 * re-creating the series that stay (a gauge per tenant at thousands of tenants).
 * metrics_refresh_begin makes every series of the family stale.  Until metrics_refresh_end,
 * the first update of a stale series (metrics_gauge_set/add, metrics_counter_add,
 * metrics_observe) starts it again from 0 and moves it last in the family's order, as a
 * series created then would be; a series not seen before is created as usual.  Stale series
 * are absent to metrics_get and metrics_remove (CERTA_ENOTFOUND) and to metrics_render.
 * metrics_refresh_end removes the series still stale (a departed tenant, a worker gone).
 * On a family without labels, begin resets its series to 0 and end does nothing.
 * Calls pair up per labelled family: a second begin without an end, or an end without a begin,
 * aborts (a programming error).  Updates that fail with -ENOMEM leave a series stale.
 */
void metrics_refresh_begin(struct metrics *m, size_t id);
void metrics_refresh_end(struct metrics *m, size_t id);

/* Runs the collect callback, then renders the whole registry in the text format 0.0.4 into
 * one malloc'd buffer (sized from the previous render's length, so a scrape allocates once):
 * *text (NUL-terminated, the caller frees it) and *len (without the NUL) are written only on
 * success.  This is what GET /metrics sends.  Returns 0 or -ENOMEM. */
int metrics_render_text(struct metrics *m, char **text, size_t *len);

/* metrics_render_text, written to f.  Returns 0, -ENOMEM, or -EIO when writing to f failed. */
int metrics_render(struct metrics *m, FILE *f);

/* Content-Type of the rendered text. */
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* The loop thread's heartbeat (it publishes readiness too), and how old it may get before
 * /healthz and /readyz say the loop is stalled (metrics_http_set_stall). */
#define METRICS_BEAT_MS 50
#define METRICS_STALL_MS 2000

/*
 * Starts an HTTP server (libevent evhttp) bound to addr ("127.0.0.1", "0.0.0.0", "::") and
 * port (0 = any free port; *bound_port, when not NULL, gets the port).  It is served by its
 * own thread with its own event_base, so probes never wait for a turn of the loop thread
 * (base): the loop publishes readiness (ready(ready_arg), evaluated on the loop thread) and a
 * heartbeat every METRICS_BEAT_MS from a timer on base, and at metrics_http_ready_changed.
 *	GET /metrics  200, the registry rendered on the loop thread (METRICS_CONTENT_TYPE)
 *	GET /healthz  200 "ok" while the loop's heartbeat is recent (within the stall time,
 *	              METRICS_STALL_MS by default), else 503 "loop stalled"
 *	GET /readyz   200 "ready" when the loop's heartbeat is recent and ready(ready_arg) was
 *	              non-zero (or ready is NULL) when last published, else 503 ("loop stalled",
 *	              "not ready")
 * HEAD is accepted like GET; other methods get 405, other paths 404.  Query strings are
 * ignored.  m must outlive the endpoint.  *out is written only on success.
 * Returns 0, -ENOMEM, -errno from pthread_create, or CERTA_EUNAVAIL when the address cannot
 * be bound (in use, bad address).
 */
int metrics_http_start(struct event_base *base, const char *addr, int port,
    struct metrics *m, metrics_ready_fn ready, void *ready_arg, int *bound_port,
    struct metrics_http **out);

/* Loop thread: readiness may have changed; publish ready(ready_arg) now (otherwise at the next
 * heartbeat).  NULL is a no-op. */
void metrics_http_ready_changed(struct metrics_http *h);

/* Any thread: how old the loop's heartbeat may get (ms) before /healthz and /readyz answer
 * 503 "loop stalled". */
void metrics_http_set_stall(struct metrics_http *h, int stall_ms);

/* Loop thread: fn(arg, lag) at each heartbeat, with how late the timer ran (seconds). */
void metrics_http_on_beat(struct metrics_http *h, void (*fn)(void *arg, double lag_s),
    void *arg);

/* Stops the HTTP thread, closes the listener and every open connection (requests in
 * progress get no answer).  NULL is a no-op.  Loop thread only. */
void metrics_http_stop(struct metrics_http *h);

#endif
