/* telemetry.c — certad's metrics table, hooks and scrape-time collector. */
#include "daemon/telemetry.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/core.h"
#include "daemon/pool.h"
#include "daemon/shadow.h"
#include "daemon/tenants.h"
#include "lib/metrics.h"
#include "lib/rpc.h"
#include "store/store.h"

enum {
	T_SUBMITTED,
	T_FINISHED,
	T_PROGRAMS,
	T_TOKENS,
	T_PROBE_TOKENS,
	T_SAVED,
	T_STAGED,
	T_CERTAINDEX,
	T_STEPS_PER_PROGRAM,
	T_STEP_SECONDS,
	T_STEP_ERRORS,
	T_QUEUE,
	T_WORKER_UP,
	T_WORKER_LOAD,
	T_WORKER_INFLIGHT,
	T_MAP_USED,
	T_MAP_SIZE,
	T_CORRUPT,
	T_TRANSACTIONS,
	T_COMMIT_FAILURES,
	T_SET_FAILURES,
	T_PERSIST_WAITING,
	T_THROTTLED,
	T_RISK_SHADOWS,
	T_RISK_CHANGES,
	T_RISK_UCB,
	T_RISK_SHIFT,
	T_RISK_THRESHOLD,
	T_RISK_RUNNING,
	T_RISK_DROPPED,
	T_RISK_TOKENS,
	T_DECISION_SECONDS,
	T_PASS_SECONDS,
	T_COMMIT_STEPS,
	T_MODEL_TOKENS,
	T_MODEL_CHAINS,
	T_MODEL_CONFIDENCE,
	T_MODEL_CONFIDENCE_CHAINS,
	T_LOOP_PHASE,
	T_LOOP_LAG,
	T_COUNT
};

static const char *const l_tenant[] = { "tenant", NULL };
static const char *const l_tenant_reason[] = { "tenant", "reason", NULL };
static const char *const l_tenant_state[] = { "tenant", "state", NULL };
static const char *const l_worker[] = { "worker", NULL };
static const char *const l_phase[] = { "phase", NULL };
static const char *const l_model_algo[] = { "model", "algo", NULL };
static const char *const l_model_source[] = { "model", "source", NULL };
static const char *const l_model[] = { "model", NULL };
static const char *const l_outcome[] = { "outcome", NULL };
static const char *const l_worker_code[] = { "worker", "code", NULL };
static const double b_certaindex[] = { .1, .2, .3, .4, .5, .6, .7, .8, .9, .95, 1 };
static const double b_seconds[] = { .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1,
    2.5, 5, 10 };
static const double b_steps[] = { 1, 2, 5, 10, 20, 50, 100, 200, 500 };
/* 30, 40, 60 and 70 us resolve the decision's p99 against a 50 us goal (issue 17). */
static const double b_micro[] = { 1e-6, 2e-6, 5e-6, 1e-5, 2e-5, 3e-5, 4e-5, 5e-5, 6e-5, 7e-5, 1e-4,
    2e-4, 5e-4, 1e-3, 2e-3, 5e-3, .01, .02, .05, .1, .2, .5, 1 };
static const double b_loop[] = { 1e-4, 5e-4, 1e-3, 2e-3, 5e-3, .01, .015, .02, .03, .04, .05,
    .07, .1, .15, .2, .3, .5, 1, 2 };
static const double b_batch[] = { 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024 };

static const struct metrics_desc telemetry_table[T_COUNT] = {
	[T_SUBMITTED] = { "certa_programs_submitted_total", METRICS_COUNTER,
	    "programs accepted (durably stored)", l_tenant, NULL, 0 },
	[T_FINISHED] = { "certa_programs_finished_total", METRICS_COUNTER,
	    "programs that ended, by stop reason", l_tenant_reason, NULL, 0 },
	[T_PROGRAMS] = { "certa_programs", METRICS_GAUGE,
	    "programs in progress by state", l_tenant_state, NULL, 0 },
	[T_TOKENS] = { "certa_tokens_generated_total", METRICS_COUNTER,
	    "decode tokens generated", l_tenant, NULL, 0 },
	[T_PROBE_TOKENS] = { "certa_probe_tokens_total", METRICS_COUNTER,
	    "tokens spent on certainty probes", l_tenant, NULL, 0 },
	[T_SAVED] = { "certa_tokens_saved_total", METRICS_COUNTER,
	    "estimated tokens not spent because a program stopped early (certain or "
	    "unpromising): unfinished chains up to the policy's expected length",
	    l_tenant, NULL, 0 },
	[T_STAGED] = { "certa_sc_staged_programs_total", METRICS_COUNTER,
	    "staged sc programs that ended (sc.staged): outcome saved (the started chains "
	    "decided the vote, or the program stopped, before the others were needed) or "
	    "launched (the others ran too)", l_outcome, NULL, 0 },
	[T_CERTAINDEX] = { "certa_certaindex", METRICS_HISTOGRAM,
	    "certaindex of programs when they ended", NULL, b_certaindex, 11 },
	[T_STEPS_PER_PROGRAM] = { "certa_program_steps", METRICS_HISTOGRAM,
	    "steps a program ran before it ended", NULL, b_steps, 9 },
	[T_STEP_SECONDS] = { "certa_step_duration_seconds", METRICS_HISTOGRAM,
	    "Step round trip to a worker", NULL, b_seconds, 14 },
	[T_STEP_ERRORS] = { "certa_step_errors_total", METRICS_COUNTER,
	    "failed Step calls by worker and gRPC status", l_worker_code, NULL, 0 },
	[T_QUEUE] = { "certa_queue_depth", METRICS_GAUGE,
	    "programs waiting for their next step", NULL, NULL, 0 },
	[T_WORKER_UP] = { "certa_worker_up", METRICS_GAUGE,
	    "1 when the worker answers health checks", l_worker, NULL, 0 },
	[T_WORKER_LOAD] = { "certa_worker_chains", METRICS_GAUGE,
	    "chains placed on the worker", l_worker, NULL, 0 },
	[T_WORKER_INFLIGHT] = { "certa_worker_inflight_chains", METRICS_GAUGE,
	    "chains in a running step on the worker", l_worker, NULL, 0 },
	[T_MAP_USED] = { "certa_store_map_used_bytes", METRICS_GAUGE,
	    "LMDB map bytes in use", NULL, NULL, 0 },
	[T_MAP_SIZE] = { "certa_store_map_size_bytes", METRICS_GAUGE,
	    "LMDB map size", NULL, NULL, 0 },
	[T_CORRUPT] = { "certa_store_corrupt_records_total", METRICS_COUNTER,
	    "damaged records (bad checksum, does not decode, empty) met by reads since start",
	    NULL, NULL, 0 },
	[T_TRANSACTIONS] = { "certa_store_transactions_total", METRICS_COUNTER,
	    "LMDB write transactions committed since start (each one fdatasync; the writer "
	    "thread commits the write sets queued meanwhile in one)", NULL, NULL, 0 },
	[T_COMMIT_FAILURES] = { "certa_store_commit_failures_total", METRICS_COUNTER,
	    "program writes that failed (disk full, map at store.max_map_size, I/O error); the "
	    "programs wait and are retried", NULL, NULL, 0 },
	[T_SET_FAILURES] = { "certa_store_group_commit_failures_total", METRICS_COUNTER,
	    "group commits (one loop turn's writes) that failed; each of their programs is then "
	    "written alone, counted in certa_store_commit_failures_total if that fails too",
	    NULL, NULL, 0 },
	[T_PERSIST_WAITING] = { "certa_programs_waiting_persist", METRICS_GAUGE,
	    "programs held (no step, no event) until their failed write is retried; > 0 means "
	    "/readyz and grpc.health report NOT_SERVING", NULL, NULL, 0 },
	[T_THROTTLED] = { "certa_tenant_throttled_seconds_total", METRICS_COUNTER,
	    "time the tenant's steps were held back at dispatch by its tokens_per_minute quota",
	    l_tenant, NULL, 0 },
	[T_RISK_SHADOWS] = { "certa_riskctl_shadows_total", METRICS_COUNTER,
	    "shadow runs that reached their end (risk control, daemon/shadow.h)", l_model_algo,
	    NULL, 0 },
	[T_RISK_CHANGES] = { "certa_riskctl_changes_total", METRICS_COUNTER,
	    "shadows whose final answer differed from the stopped one", l_model_algo, NULL, 0 },
	[T_RISK_UCB] = { "certa_riskctl_ucb", METRICS_GAUGE,
	    "Clopper-Pearson upper bound of the answer-change rate at the current shift",
	    l_model_algo, NULL, 0 },
	[T_RISK_SHIFT] = { "certa_riskctl_threshold_shift", METRICS_GAUGE,
	    "logit shift of the stop-certain threshold (> 0: earlier stops)", l_model_algo, NULL,
	    0 },
	[T_RISK_THRESHOLD] = { "certa_riskctl_threshold", METRICS_GAUGE,
	    "the base policy's stop-certain threshold under the shift", l_model_algo, NULL, 0 },
	[T_RISK_RUNNING] = { "certa_riskctl_shadows_running", METRICS_GAUGE,
	    "shadows in progress", l_model_algo, NULL, 0 },
	[T_RISK_DROPPED] = { "certa_riskctl_dropped_total", METRICS_COUNTER,
	    "shadows that ended without an outcome (failed, cancelled, not started)",
	    l_model_algo, NULL, 0 },
	[T_RISK_TOKENS] = { "certa_riskctl_shadow_tokens_total", METRICS_COUNTER,
	    "tokens shadows used (decode + probe), charged to the system account", l_model_algo,
	    NULL, 0 },
	[T_DECISION_SECONDS] = { "certa_decision_seconds", METRICS_HISTOGRAM,
	    "loop time to apply one step result and decide the program's next step (no commit)",
	    NULL, b_micro, sizeof b_micro / sizeof b_micro[0] },
	[T_PASS_SECONDS] = { "certa_dispatch_pass_seconds", METRICS_HISTOGRAM,
	    "loop time of one dispatch pass (collect ready programs, fair order, send steps)",
	    NULL, b_micro, sizeof b_micro / sizeof b_micro[0] },
	[T_COMMIT_STEPS] = { "certa_store_commit_steps", METRICS_HISTOGRAM,
	    "program writes (steps, endings) in one group commit", NULL, b_batch, 11 },
	[T_MODEL_TOKENS] = { "certa_model_tokens", METRICS_GAUGE,
	    "model_tokens the model's decisions use (its median chain length; source learned, "
	    "prior or absolute: 0, the unpromising bounds count absolute tokens)", l_model_source,
	    NULL, 0 },
	[T_MODEL_CHAINS] = { "certa_model_tokens_chains", METRICS_GAUGE,
	    "chains kept for the model's learned median (daemon/shadow.h)", l_model, NULL, 0 },
	[T_MODEL_CONFIDENCE] = { "certa_model_confidence", METRICS_GAUGE,
	    "model_confidence the model's decisions use (its probe-probability level, where the "
	    "probability features read 0; source learned or prior, the policy's)",
	    l_model_source, NULL, 0 },
	[T_MODEL_CONFIDENCE_CHAINS] = { "certa_model_confidence_chains", METRICS_GAUGE,
	    "chains kept for the model's learned probability level (scheduler/problevel.h)",
	    l_model, NULL, 0 },
	[T_LOOP_PHASE] = { "certa_loop_phase_seconds", METRICS_HISTOGRAM,
	    "loop thread time of one piece of a loop turn: bridge (completions: step results, "
	    "requests), commit (the group commit, fdatasync included, and handing out its "
	    "events), store (the group commit's LMDB transaction alone), dispatch (a pass after "
	    "an event), tick (the periodic pass)",
	    l_phase, b_loop, 19 },
	[T_LOOP_LAG] = { "certa_loop_lag_seconds", METRICS_HISTOGRAM,
	    "how late the loop ran its heartbeat timer: what an event that just arrived waits "
	    "for the loop", NULL, b_loop, 19 },
};

struct telemetry {
	struct core *core;
	struct metrics *m;
	int per_tenant;
};

/* The tenant label of a tenant's series. */
static const char *
telemetry_tenant(const struct telemetry *t, const char *tenant)
{
	if (t->per_tenant || tenant == NULL || strcmp(tenant, SHADOW_TENANT) == 0)
		return tenant;
	return TELEMETRY_ALL_TENANTS;
}

void
telemetry_set_per_tenant(struct telemetry *t, int per_tenant)
{
	if (t != NULL)
		t->per_tenant = per_tenant;
}

/* Gauges recomputed at scrape time. */
static void
telemetry_collect(struct metrics *m, void *arg)
{
	struct telemetry *t = arg;
	struct tenants *ts = core_tenants(t->core);
	struct pool *pl = core_pool(t->core);
	struct store_stat_info si;
	size_t i, queued, running, waiting;
	uint64_t fin, failures;
	struct timespec now;
	int64_t now_ms;

	clock_gettime(CLOCK_REALTIME, &now);
	now_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
	/* Refreshed in place (lib/metrics.h): at thousands of tenants, re-creating every
	 * tenant's series at each scrape was most of its cost. */
	metrics_refresh_begin(m, T_PROGRAMS);
	metrics_refresh_begin(m, T_THROTTLED);
	for (i = 0; i < tenants_count(ts); i++) {
		const char *name = tenants_name_at(ts, i), *tl = telemetry_tenant(t, name);
		const struct tenant_stats *s = tenants_stats(ts, name);
		/* Added (from 0 at each refresh): all tenants sum into one series when not per
		 * tenant. */
		metrics_gauge_add(m, T_PROGRAMS, METRICS_LABELS(tl, "queued"), (double)s->queued);
		metrics_gauge_add(m, T_PROGRAMS, METRICS_LABELS(tl, "running"), (double)s->running);
		metrics_counter_add(m, T_THROTTLED, METRICS_LABELS(tl),
		    (double)tenants_throttled_ms(ts, name, now_ms) / 1000.0);
	}
	metrics_refresh_end(m, T_PROGRAMS);
	metrics_refresh_end(m, T_THROTTLED);
	core_persist_stats(t->core, &failures, &waiting);
	metrics_reset(m, T_COMMIT_FAILURES);
	metrics_counter_add(m, T_COMMIT_FAILURES, NULL, (double)failures);
	metrics_reset(m, T_SET_FAILURES);
	metrics_counter_add(m, T_SET_FAILURES, NULL, (double)core_set_failures(t->core));
	metrics_gauge_set(m, T_PERSIST_WAITING, NULL, (double)waiting);
	core_counts(t->core, &queued, &running, &fin);
	metrics_gauge_set(m, T_QUEUE, NULL, (double)queued);
	metrics_refresh_begin(m, T_WORKER_UP);
	metrics_refresh_begin(m, T_WORKER_LOAD);
	metrics_refresh_begin(m, T_WORKER_INFLIGHT);
	for (i = 0; i < pool_count(pl); i++) {
		struct pool_worker *w = pool_at(pl, i);
		const char *a = pool_worker_addr(w);
		metrics_gauge_set(m, T_WORKER_UP, METRICS_LABELS(a),
		    pool_worker_state(w) == POOL_UP ? 1 : 0);
		metrics_gauge_set(m, T_WORKER_LOAD, METRICS_LABELS(a), pool_worker_held(w));
		metrics_gauge_set(m, T_WORKER_INFLIGHT, METRICS_LABELS(a), pool_worker_inflight(w));
	}
	metrics_refresh_end(m, T_WORKER_UP);
	metrics_refresh_end(m, T_WORKER_LOAD);
	metrics_refresh_end(m, T_WORKER_INFLIGHT);
	{
		static const size_t fam[] = { T_RISK_SHADOWS, T_RISK_CHANGES, T_RISK_UCB,
		    T_RISK_SHIFT, T_RISK_THRESHOLD, T_RISK_RUNNING, T_RISK_DROPPED, T_RISK_TOKENS };
		size_t f;
		for (f = 0; f < sizeof fam / sizeof fam[0]; f++)
			metrics_refresh_begin(m, fam[f]);
		for (i = 0; i < shadow_count(t->core); i++) {
			struct shadow_info x;
			const char *a;
			shadow_get(t->core, i, &x);
			a = x.algo == SCHED_ALGO_SC ? "sc" : "cot";
			metrics_counter_add(m, T_RISK_SHADOWS, METRICS_LABELS(x.model, a),
			    (double)x.shadows);
			metrics_counter_add(m, T_RISK_CHANGES, METRICS_LABELS(x.model, a),
			    (double)x.changes);
			metrics_gauge_set(m, T_RISK_UCB, METRICS_LABELS(x.model, a), x.ucb);
			metrics_gauge_set(m, T_RISK_SHIFT, METRICS_LABELS(x.model, a), x.shift);
			metrics_gauge_set(m, T_RISK_THRESHOLD, METRICS_LABELS(x.model, a),
			    x.threshold);
			metrics_gauge_set(m, T_RISK_RUNNING, METRICS_LABELS(x.model, a),
			    (double)x.running);
			metrics_counter_add(m, T_RISK_DROPPED, METRICS_LABELS(x.model, a),
			    (double)x.dropped);
			metrics_counter_add(m, T_RISK_TOKENS, METRICS_LABELS(x.model, a),
			    (double)x.tokens);
		}
		for (f = 0; f < sizeof fam / sizeof fam[0]; f++)
			metrics_refresh_end(m, fam[f]);
	}
	{
		/* Model lengths (daemon/shadow.h). */
		metrics_refresh_begin(m, T_MODEL_TOKENS);
		metrics_refresh_begin(m, T_MODEL_CHAINS);
		metrics_refresh_begin(m, T_MODEL_CONFIDENCE);
		metrics_refresh_begin(m, T_MODEL_CONFIDENCE_CHAINS);
		for (i = 0; i < shadow_model_count(t->core); i++) {
			struct shadow_model_info x;
			shadow_model_get(t->core, i, &x);
			metrics_gauge_set(m, T_MODEL_TOKENS, METRICS_LABELS(x.model, x.source),
			    (double)x.tokens);
			metrics_gauge_set(m, T_MODEL_CHAINS, METRICS_LABELS(x.model),
			    (double)x.samples);
			metrics_gauge_set(m, T_MODEL_CONFIDENCE,
			    METRICS_LABELS(x.model, x.confidence_source), x.confidence);
			metrics_gauge_set(m, T_MODEL_CONFIDENCE_CHAINS, METRICS_LABELS(x.model),
			    (double)x.confidence_samples);
		}
		metrics_refresh_end(m, T_MODEL_TOKENS);
		metrics_refresh_end(m, T_MODEL_CHAINS);
		metrics_refresh_end(m, T_MODEL_CONFIDENCE);
		metrics_refresh_end(m, T_MODEL_CONFIDENCE_CHAINS);
	}
	if (store_stat(core_store(t->core), &si) == 0) {
		metrics_gauge_set(m, T_MAP_USED, NULL, (double)si.used_bytes);
		metrics_gauge_set(m, T_MAP_SIZE, NULL, (double)si.map_size);
		metrics_reset(m, T_CORRUPT);
		metrics_counter_add(m, T_CORRUPT, NULL, (double)si.corrupt_records);
		metrics_reset(m, T_TRANSACTIONS);
		metrics_counter_add(m, T_TRANSACTIONS, NULL, (double)si.commits);
	}
}

int
telemetry_new(struct core *c, struct telemetry **out)
{
	struct telemetry *t = calloc(1, sizeof *t);
	int rc;

	if (t == NULL)
		return -ENOMEM;
	t->core = c;
	t->per_tenant = 1;
	rc = metrics_new(telemetry_table, T_COUNT, &t->m);
	if (rc != 0) {
		free(t);
		return rc;
	}
	metrics_set_collector(t->m, telemetry_collect, t);
	*out = t;
	return 0;
}

void
telemetry_free(struct telemetry *t)
{
	if (t == NULL)
		return;
	metrics_free(t->m);
	free(t);
}

struct metrics *
telemetry_metrics(struct telemetry *t)
{
	return t->m;
}

void
telemetry_submitted(struct telemetry *t, const char *tenant)
{
	if (t != NULL)
		metrics_inc(t->m, T_SUBMITTED, METRICS_LABELS(telemetry_tenant(t, tenant)));
}

void
telemetry_finished(struct telemetry *t, const char *tenant, const char *reason,
    double certaindex, uint64_t steps)
{
	if (t == NULL)
		return;
	metrics_inc(t->m, T_FINISHED, METRICS_LABELS(telemetry_tenant(t, tenant), reason));
	metrics_observe(t->m, T_CERTAINDEX, NULL, certaindex);
	metrics_observe(t->m, T_STEPS_PER_PROGRAM, NULL, (double)steps);
}

void
telemetry_staged(struct telemetry *t, bool launched)
{
	if (t != NULL)
		metrics_inc(t->m, T_STAGED, METRICS_LABELS(launched ? "launched" : "saved"));
}

void
telemetry_tokens(struct telemetry *t, const char *tenant, uint64_t decode, uint64_t probe)
{
	if (t == NULL)
		return;
	tenant = telemetry_tenant(t, tenant);
	metrics_counter_add(t->m, T_TOKENS, METRICS_LABELS(tenant), (double)decode);
	metrics_counter_add(t->m, T_PROBE_TOKENS, METRICS_LABELS(tenant), (double)probe);
}

void
telemetry_saved(struct telemetry *t, const char *tenant, uint64_t tokens)
{
	if (t != NULL && tokens > 0)
		metrics_counter_add(t->m, T_SAVED, METRICS_LABELS(telemetry_tenant(t, tenant)),
		    (double)tokens);
}

void
telemetry_step(struct telemetry *t, const char *worker, double seconds, int status)
{
	if (t == NULL)
		return;
	if (status == 0)
		metrics_observe(t->m, T_STEP_SECONDS, NULL, seconds);
	else
		metrics_inc(t->m, T_STEP_ERRORS,
		    METRICS_LABELS(worker, rpc_status_name((grpc_status_code)status)));
}

void
telemetry_decision(struct telemetry *t, double seconds)
{
	if (t != NULL)
		metrics_observe(t->m, T_DECISION_SECONDS, NULL, seconds);
}

void
telemetry_pass(struct telemetry *t, double seconds)
{
	if (t != NULL)
		metrics_observe(t->m, T_PASS_SECONDS, NULL, seconds);
}

void
telemetry_loop_phase(struct telemetry *t, const char *phase, double seconds)
{
	if (t != NULL)
		metrics_observe(t->m, T_LOOP_PHASE, METRICS_LABELS(phase), seconds);
}

void
telemetry_loop_lag(struct telemetry *t, double seconds)
{
	if (t != NULL)
		metrics_observe(t->m, T_LOOP_LAG, NULL, seconds);
}

void
telemetry_commit(struct telemetry *t, size_t programs)
{
	if (t != NULL)
		metrics_observe(t->m, T_COMMIT_STEPS, NULL, (double)programs);
}
