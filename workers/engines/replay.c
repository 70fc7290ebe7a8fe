/*
 * replay.c — the replay engine: serves recorded reasoning traces of real models.
 *
 * A request (prompt, sample index i) maps to the i-th recorded sample (seeds ascending) of that
 * problem.  Each step advances the request's token position by max_new_tokens (clamped to the
 * recorded length) and returns the slice of recorded text, the recorded probe answer in effect
 * at the new position (with its token statistics when the trace carries them: a history
 * exported from llm workers), and `finished` with the recorded final answer at the recorded
 * end.
 *
 * Steps are idempotent: the position a step starts from is the daemon's resume_tokens (what it
 * has durably recorded), so a step retried after a daemon crash or moved to another worker
 * yields the same text.  Per-request state (the trace binding) lives until Release.  An item
 * without prompt continues that binding; a request not held then is refused CERTA_ENOSTATE
 * (worker.proto "Held state"), never bound to some other trace.
 *
 * With a GPU timing model (engine_options.gpu_profile, workers/gpuprof.h) the engine runs on
 * an engine thread (wants_thread) and serves its steps as a continuous-batching engine would:
 * a step's results are computed at once, then every sequence held (of all steps in flight)
 * advances one token per modelled iteration, each iteration taking the profile's time (times
 * time_scale in wall time), and a step completes when its sequences have decoded their tokens
 * and their probe.  Release and Info then run on the loop thread: `mu` guards the requests.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/error.h"
#include "lib/log.h"
#include "lib/strmap.h"
#include "lib/traces.h"
#include "workers/engine.h"
#include "workers/gpuprof.h"

struct replay_req {
	const struct trace *trace;
	uint64_t pos;
	uint64_t prompt_tokens;    /* the timing model's prompt length (replay_prompt_tokens) */
};

struct replay {
	struct traces *tr;
	struct strmap *reqs;
	uint32_t capacity;
	char *model;               /* default model */
	const char **models;
	size_t nmodels;
	bool timed;                /* a GPU timing model is set: prof */
	struct gpuprof prof;
	pthread_mutex_t mu;        /* reqs, when timed (engine thread vs loop thread) */
};

/* A step in flight under the timing model: its work and one sequence per item. */
struct replay_job {
	struct engine_work *w;
	struct gpuprof_seq *seqs;
	struct replay_job *next;
};

/* Loads the traces directory; refuses to start without traces. */
static int
replay_open(const struct engine_options *opt, void **state)
{
	struct replay *r;
	size_t i;
	int rc;

	if (opt->traces_dir == NULL || opt->traces_dir[0] == '\0') {
		log_err(LOG_ENGINE, "replay engine needs a traces directory (--traces DIR)");
		return CERTA_ECONFIG;
	}
	r = calloc(1, sizeof *r);
	if (r == NULL)
		return -ENOMEM;
	rc = traces_load(opt->traces_dir, &r->tr);
	if (rc != 0) {
		log_err(LOG_ENGINE, "cannot load traces from %s: %s", opt->traces_dir,
		    certa_strerror(rc));
		goto fail_r;
	}
	r->reqs = strmap_new();
	if (r->reqs == NULL) {
		rc = -ENOMEM;
		goto fail_tr;
	}
	r->nmodels = traces_model_count(r->tr);
	r->models = calloc(r->nmodels ? r->nmodels : 1, sizeof *r->models);
	if (r->models == NULL) {
		rc = -ENOMEM;
		goto fail_map;
	}
	for (i = 0; i < r->nmodels; i++)
		r->models[i] = traces_model_name(r->tr, i);
	if (opt->model != NULL && opt->model[0] != '\0') {
		for (i = 0; i < r->nmodels; i++)
			if (strcmp(r->models[i], opt->model) == 0)
				break;
		if (i == r->nmodels) {
			log_err(LOG_ENGINE, "model '%s' has no traces in %s", opt->model,
			    opt->traces_dir);
			rc = CERTA_ENOTFOUND;
			goto fail_models;
		}
	}
	r->model = strdup(opt->model != NULL && opt->model[0] ? opt->model :
	    (r->nmodels ? r->models[0] : ""));
	if (r->model == NULL) {
		rc = -ENOMEM;
		goto fail_models;
	}
	r->capacity = opt->capacity ? opt->capacity : 256;
	if (opt->gpu_profile != NULL && opt->gpu_profile[0] != '\0') {
		char msg[300];

		rc = gpuprof_load(opt->gpu_profile, &r->prof, msg, sizeof msg);
		if (rc != 0) {
			log_err(LOG_ENGINE, "GPU profile: %s", msg);
			rc = CERTA_ECONFIG;
			goto fail_model;
		}
		if (opt->time_scale > 0)
			r->prof.time_scale = opt->time_scale;
		r->timed = true;
		log_info(LOG_ENGINE, "replay engine: GPU timing model %s (t0 %.1f us, a %.3f us/token, "
		    "b %.4f us/context token, prefill %.3f us/token), time scale %g",
		    r->prof.name, r->prof.t0_us, r->prof.a_us, r->prof.b_us, r->prof.prefill_us,
		    r->prof.time_scale);
	}
	pthread_mutex_init(&r->mu, NULL);
	log_info(LOG_ENGINE, "replay engine: traces=%zu programs=%zu models=%zu model=%s "
	    "capacity=%u", traces_count(r->tr), traces_program_count(r->tr), r->nmodels,
	    r->model, r->capacity);
	*state = r;
	return 0;

fail_model:
	free(r->model);
fail_models:
	free(r->models);
fail_map:
	strmap_free(r->reqs, NULL);
fail_tr:
	traces_free(r->tr);
fail_r:
	free(r);
	return rc;
}

static void
replay_close(void *state)
{
	struct replay *r = state;

	pthread_mutex_destroy(&r->mu);
	strmap_free(r->reqs, free);
	traces_free(r->tr);
	free(r->models);
	free(r->model);
	free(r);
}

/* Resolves an item to its trace, or explains why not. */
static int
replay_resolve(struct replay *r, const struct engine_item *it, const struct trace **out,
    char *err, size_t errlen)
{
	const struct trace *const *samples;
	size_t n;
	const char *model = it->model != NULL && it->model[0] ? it->model : r->model;
	int rc;

	rc = traces_find(r->tr, model, it->prompt, &samples, &n);
	if (rc != 0) {
		snprintf(err, errlen, "request %s: no recorded trace of model %s for this problem "
		    "in traces directory %s", it->request_id, model, traces_dir(r->tr));
		return CERTA_ENOTFOUND;
	}
	if (it->sample_index >= n) {
		snprintf(err, errlen, "request %s: sample %u requested but only %zu samples are "
		    "recorded for this problem (indexes 0..%zu)", it->request_id,
		    it->sample_index, n, n - 1);
		return CERTA_EINVAL;
	}
	*out = samples[it->sample_index];
	return 0;
}

/* Prompt tokens for the timing model: traces keep no prompt token counts; ~4 bytes a token. */
static uint64_t
replay_prompt_tokens(const char *prompt)
{
	return strlen(prompt) / 4 + 1;
}

/* Builds one step result from a trace and a starting position. */
static int
replay_advance(const struct trace *t, uint64_t pos0, uint32_t n, struct engine_result *res)
{
	uint64_t pos1 = pos0 + n;
	size_t a, b;
	const struct trace_probe *p;

	if (pos1 > t->tokens_used)
		pos1 = t->tokens_used;
	if (pos0 > pos1)
		pos0 = pos1;
	a = traces_text_offset(t, pos0);
	b = traces_text_offset(t, pos1);
	memset(res, 0, sizeof *res);
	res->text = strndup(t->text + a, b - a);
	res->new_tokens = (uint32_t)(pos1 - pos0);
	res->total_tokens = pos1;
	res->finished = pos1 >= t->tokens_used;
	p = traces_probe_at(t, pos1);
	res->probe_answer = strdup(p != NULL ? p->answer : "");
	res->probe_tokens = p != NULL ? p->out_tokens : 0;
	/* The token statistics the trace carries (a history exported from llm workers; -1 in
	 * the recorded dev traces: unknown); traces record no routing. */
	res->probe_confidence = p != NULL ? p->mean_prob : -1.0;
	res->probe_min_prob = p != NULL && p->mean_prob >= 0 ? p->min_prob : -1.0;
	res->chain_entropy = p != NULL ? p->chain_entropy : -1.0;
	res->experts_per_token = -1.0;
	res->thinking_done = t->think_end > 0 && pos1 >= t->think_end;
	if (res->finished)
		res->final_answer = strdup(t->final_answer);
	if (res->text == NULL || res->probe_answer == NULL ||
	    (res->finished && res->final_answer == NULL)) {
		engine_result_clear(res);
		return -ENOMEM;
	}
	return 0;
}

/* Validates the whole batch, then applies it (r->mu held when timed). */
static int
replay_step_locked(void *state, const struct engine_item *items, size_t n, struct engine_result *out,
    char *err, size_t errlen)
{
	struct replay *r = state;
	const struct trace **tr;
	size_t i, fresh = 0;
	int rc = 0;

	rc = engine_check_items(items, n, err, errlen);
	if (rc != 0)
		return rc;
	tr = calloc(n, sizeof *tr);
	if (tr == NULL)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		const struct engine_item *it = &items[i];
		const struct replay_req *q = strmap_get(r->reqs, it->request_id);

		if (!engine_item_has_prompt(it)) {
			/* Continue the binding held; without one there is nothing to continue. */
			if (q == NULL) {
				rc = engine_no_state(it, "holds no state for it (never stepped here, "
				    "released, or the worker restarted)", err, errlen);
				goto out;
			}
			tr[i] = q->trace;
			continue;
		}
		rc = replay_resolve(r, it, &tr[i], err, errlen);
		if (rc != 0)
			goto out;
		if (q == NULL)
			fresh++;
	}
	if (strmap_count(r->reqs) + fresh > r->capacity) {
		snprintf(err, errlen, "worker at capacity: %zu requests active, %zu new, "
		    "capacity %u", strmap_count(r->reqs), fresh, r->capacity);
		rc = CERTA_ECAPACITY;
		goto out;
	}
	for (i = 0; i < n; i++) {
		rc = replay_advance(tr[i], items[i].resume_tokens, items[i].max_new_tokens, &out[i]);
		if (rc != 0) {
			while (i-- > 0)
				engine_result_clear(&out[i]);
			goto out;
		}
	}
	/* Only now record state: nothing above changed the engine. */
	for (i = 0; i < n; i++) {
		struct replay_req *q = strmap_get(r->reqs, items[i].request_id);
		if (q == NULL && items[i].resume_tokens > 0)
			log_info(LOG_ENGINE, "request %s resumed at %llu tokens (%zu bytes of text "
			    "to re-prefill)", items[i].request_id,
			    (unsigned long long)items[i].resume_tokens,
			    items[i].resume_text != NULL ? strlen(items[i].resume_text) : (size_t)0);
		if (q == NULL) {
			q = calloc(1, sizeof *q);
			if (q == NULL || strmap_put(r->reqs, items[i].request_id, q, NULL) != 0) {
				free(q);
				log_warn(LOG_ENGINE, "out of memory tracking %s",
				    items[i].request_id);
				continue;
			}
		}
		q->trace = tr[i];
		q->pos = out[i].total_tokens;
		if (engine_item_has_prompt(&items[i]))
			q->prompt_tokens = replay_prompt_tokens(items[i].prompt);
	}
out:
	free(tr);
	return rc;
}

static int
replay_step(void *state, const struct engine_item *items, size_t n, struct engine_result *out,
    char *err, size_t errlen)
{
	struct replay *r = state;
	int rc;

	pthread_mutex_lock(&r->mu);
	rc = replay_step_locked(state, items, n, out, err, errlen);
	pthread_mutex_unlock(&r->mu);
	return rc;
}

/*
 * Timing model: applies w's step now (its results), and returns the job of its sequences in
 * *out; NULL with w completed when the step failed.  A request the engine does not hold yet
 * prefills its prompt and resumed reasoning; a held one has them cached.
 */
static int
replay_admit(struct replay *r, struct engine_work *w, struct replay_job **out)
{
	struct replay_job *j;
	size_t i;

	j = calloc(1, sizeof *j);
	if (j == NULL || (j->seqs = calloc(w->n ? w->n : 1, sizeof *j->seqs)) == NULL) {
		free(j);
		return -ENOMEM;
	}
	j->w = w;
	pthread_mutex_lock(&r->mu);
	for (i = 0; i < w->n; i++) {
		const struct engine_item *it = &w->items[i];
		const struct replay_req *q = it->request_id != NULL ?
		    strmap_get(r->reqs, it->request_id) : NULL;
		uint64_t ctx = (engine_item_has_prompt(it) ? replay_prompt_tokens(it->prompt) :
		    q != NULL ? q->prompt_tokens : 0) + it->resume_tokens;

		if (q != NULL)
			j->seqs[i].context = ctx;
		else
			j->seqs[i].prefill = ctx;
	}
	w->rc = replay_step_locked(r, w->items, w->n, w->out, w->err, w->errlen);
	pthread_mutex_unlock(&r->mu);
	if (w->rc != 0) {
		free(j->seqs);
		free(j);
		*out = NULL;
		return 0;
	}
	for (i = 0; i < w->n; i++) {
		uint64_t probe = w->out[i].probe_tokens;

		if (w->items[i].probe_max_tokens > 0 && probe > w->items[i].probe_max_tokens)
			probe = w->items[i].probe_max_tokens;
		j->seqs[i].decode = w->out[i].new_tokens;
		j->seqs[i].probe_prefill = probe > 0 ? r->prof.probe_suffix_tokens : 0;
		j->seqs[i].probe_decode = probe;
	}
	*out = j;
	return 0;
}

/* Adds us microseconds to a monotonic time. */
static void
replay_ts_add(struct timespec *t, double us)
{
	long long ns = (long long)(us * 1000.0);

	t->tv_sec += ns / 1000000000LL;
	t->tv_nsec += ns % 1000000000LL;
	if (t->tv_nsec >= 1000000000L) {
		t->tv_sec++;
		t->tv_nsec -= 1000000000L;
	}
}

/*
 * The iteration loop of the timing model (engine thread): takes queued steps between
 * iterations, runs one modelled iteration over every held sequence, sleeps until its end (on
 * an absolute clock, so sleeping late does not add up), completes the steps that are done.
 */
static void
replay_step_many(void *state, struct engine_feed *feed)
{
	struct replay *r = state;
	struct replay_job *jobs = NULL, *j, **pp;
	struct engine_work *w;
	struct timespec due;

	clock_gettime(CLOCK_MONOTONIC, &due);
	for (;;) {
		uint64_t dec = 0, pre = 0, ctx = 0;
		double us;

		while ((w = engine_feed_take(feed)) != NULL) {
			if (replay_admit(r, w, &j) != 0) {
				snprintf(w->err, w->errlen, "out of memory modelling the step");
				w->rc = -ENOMEM;
				j = NULL;
			}
			if (j == NULL) {
				engine_feed_done(feed, w);
				continue;
			}
			j->next = jobs;
			jobs = j;
		}
		if (jobs == NULL)
			return;
		for (j = jobs; j != NULL; j = j->next)
			for (size_t i = 0; i < j->w->n; i++)
				gpuprof_seq_advance(&j->seqs[i], &dec, &pre, &ctx);
		us = gpuprof_iter_us(&r->prof, dec, pre, ctx);
		replay_ts_add(&due, us * r->prof.time_scale);
		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &due, NULL) == EINTR)
			;
		for (pp = &jobs; (j = *pp) != NULL;) {
			size_t i;

			for (i = 0; i < j->w->n && !gpuprof_seq_busy(&j->seqs[i]); i++)
				;
			if (i < j->w->n) {
				pp = &j->next;
				continue;
			}
			*pp = j->next;
			engine_feed_done(feed, j->w);
			free(j->seqs);
			free(j);
		}
	}
}

static bool
replay_wants_thread(void *state)
{
	return ((struct replay *)state)->timed;
}

static int
replay_release(void *state, const char *request_id)
{
	struct replay *r = state;
	struct replay_req *q;

	pthread_mutex_lock(&r->mu);
	q = strmap_del(r->reqs, request_id);
	pthread_mutex_unlock(&r->mu);
	if (q == NULL)
		return CERTA_ENOTFOUND;
	free(q);
	return 0;
}

static void
replay_info(void *state, struct engine_info *out)
{
	struct replay *r = state;

	pthread_mutex_lock(&r->mu);
	out->engine = "replay";
	out->model = r->model;
	out->capacity = r->capacity;
	out->active = (uint32_t)strmap_count(r->reqs);
	out->models = r->models;
	out->nmodels = r->nmodels;
	out->problems = (uint32_t)traces_program_count(r->tr);
	pthread_mutex_unlock(&r->mu);
}

const struct engine_ops replay_engine_ops = {
	.name = "replay",
	.open = replay_open,
	.close = replay_close,
	.step = replay_step,
	.release = replay_release,
	.info = replay_info,
	.step_many = replay_step_many,
	.wants_thread = replay_wants_thread,
};
