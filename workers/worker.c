/* worker.c — Worker service handlers: protobuf <-> engine structs at the edge. */
#include "workers/worker.h"

#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <event2/event.h>

#include "certa/v1/worker.pb-c.h"
#include "lib/error.h"
#include "lib/health.h"
#include "lib/log.h"
#include "lib/rpc.h"
#include "lib/version.h"
#include "lib/rpc_server.h"
#include "lib/sampling.h"
#include "workers/engine.h"
#include "workers/wauth.h"

#define WORKER_MAX_BATCH 4096

struct worker {
	struct engine *engine;
	char instance[33];        /* random per process: tells the daemon state was lost */
	struct event_base *base;
	int step_delay_ms;
	uint64_t steps;
	uint64_t items;
	struct health *health;    /* turned NOT_SERVING when the engine faults (not owned) */
	bool unhealthy;
};

/*
 * A step from the request to its reply: a copy of the request (the server frees its own when
 * the handler returns), the engine's view of the items and the results.  It waits for the
 * simulated decode time (step_delay) and then for the engine (engine_step_async), and is
 * freed once the reply is sent.
 */
struct worker_step;

/* One program's items of a batch (StepRequest.program_errors), stepped all or nothing as one
 * engine step; without program_errors the whole batch is one group. */
struct worker_group {
	struct worker_step *d;
	size_t off, n;            /* items[off .. off + n) */
	int rc;
	char err[512];
};

struct worker_step {
	struct worker *w;
	struct rpc_call *call;
	Certa__V1__StepRequest *req;
	struct engine_item *items;
	struct engine_result *res;
	struct worker_group *groups;
	size_t ngroups;
	size_t pending;           /* groups the engine has not completed yet */
	char err[512];
};
int
worker_new(struct engine *engine, struct event_base *base, int step_delay_ms,
    struct worker **out)
{
	struct worker *w = calloc(1, sizeof *w);

	if (w == NULL)
		return -ENOMEM;
	w->engine = engine;
	w->base = base;
	{
		uint8_t r[16];
		size_t i;
		if (getrandom(r, sizeof r, 0) != sizeof r)
			memset(r, 0, sizeof r);
		for (i = 0; i < sizeof r; i++)
			snprintf(w->instance + 2 * i, 3, "%02x", r[i]);
	}
	w->step_delay_ms = step_delay_ms;
	*out = w;
	return 0;
}

void
worker_free(struct worker *w)
{
	free(w);
}

uint64_t
worker_steps(const struct worker *w)
{
	return w->steps;
}

/* Copies a wire item into the engine's view (strings borrowed from the request). */
static void
worker_item_from_pb(const Certa__V1__StepItem *pb, struct engine_item *it)
{
	memset(it, 0, sizeof *it);
	it->request_id = pb->request_id;
	it->prompt = pb->prompt;
	it->resume_text = pb->resume_text;
	it->resume_tokens = pb->resume_tokens;
	it->sample_index = pb->sample_index;
	it->max_new_tokens = pb->max_new_tokens;
	it->seed = pb->seed;
	it->model = pb->model;
	it->moe_top_p = pb->moe_top_p;
	if (pb->sampling != NULL) {
		it->temperature = pb->sampling->temperature;
		it->top_p = pb->sampling->top_p;
	}
	if (pb->probe != NULL) {
		it->probe_max_tokens = pb->probe->max_tokens;
		it->want_logprobs = pb->probe->want_logprobs;
	}
}

/* After a failed step: an engine that faulted (a device error) makes the worker NOT_SERVING,
 * so certad and probes stop sending it work rather than getting garbage or errors. */
static void
worker_check_fault(struct worker *w)
{
	struct engine_info info;

	if (w->unhealthy)
		return;
	engine_info(w->engine, &info);
	if (info.fault == NULL)
		return;
	w->unhealthy = true;
	log_err(LOG_WORKER, "engine fault: %s: reporting NOT_SERVING", info.fault);
	if (w->health) {
		(void)health_set(w->health, "", HEALTH_NOT_SERVING);
		(void)health_set(w->health, "certa.v1.Worker", HEALTH_NOT_SERVING);
	}
}

void
worker_set_health(struct worker *w, struct health *h)
{
	w->health = h;
}

static void
worker_step_free(struct worker_step *d)
{
	rpc_call_unref(d->call);
	certa__v1__step_request__free_unpacked(d->req, NULL);
	free(d->items);
	free(d->res);
	free(d->groups);
	free(d);
}

/* Every group of the batch is done (on the loop thread): the reply.  Without program_errors
 * the batch is all or nothing (one group: its error fails the call); with it a refused
 * program's results carry its error and the others their step. */
static void
worker_step_reply(struct worker_step *d)
{
	struct worker *w = d->w;
	Certa__V1__StepReply reply = CERTA__V1__STEP_REPLY__INIT;
	Certa__V1__StepResult *pres = NULL, **pptr = NULL;
	Certa__V1__ProbeResult *probes = NULL;
	size_t i, g, n = d->req->n_items;
	int refused = 0;

	for (g = 0; g < d->ngroups; g++) {
		if (d->groups[g].rc == 0)
			continue;
		refused = 1;
		log_info(LOG_WORKER, "step refused: %s", d->groups[g].err);
	}
	if (refused)
		worker_check_fault(w);
	if (!d->req->program_errors && d->groups[0].rc != 0) {
		rpc_call_fail(d->call, d->groups[0].rc, "%s", d->groups[0].err[0] ?
		    d->groups[0].err : certa_strerror(d->groups[0].rc));
		goto out;
	}
	pres = calloc(n, sizeof *pres);
	pptr = calloc(n, sizeof *pptr);
	probes = calloc(n, sizeof *probes);
	if (pres == NULL || pptr == NULL || probes == NULL) {
		rpc_call_fail(d->call, -ENOMEM, "out of memory");
		goto out_res;
	}
	for (g = 0; g < d->ngroups; g++) {
		const struct worker_group *gr = &d->groups[g];
		for (i = gr->off; i < gr->off + gr->n; i++) {
			struct engine_result *r = &d->res[i];
			certa__v1__step_result__init(&pres[i]);
			pres[i].request_id = (char *)d->items[i].request_id;
			pptr[i] = &pres[i];
			if (gr->rc != 0) {
				pres[i].error_code = (int32_t)rpc_status_from_error(gr->rc);
				pres[i].error_message = (char *)(gr->err[0] ? gr->err :
				    certa_strerror(gr->rc));
				/* certad resends the program with prompt and text. */
				pres[i].state_missing = gr->rc == CERTA_ENOSTATE;
				continue;
			}
			certa__v1__probe_result__init(&probes[i]);
			pres[i].text = r->text;
			pres[i].new_tokens = r->new_tokens;
			pres[i].total_tokens = r->total_tokens;
			pres[i].finished = r->finished;
			pres[i].final_answer = r->final_answer ? r->final_answer : (char *)"";
			pres[i].thinking_done = r->thinking_done;
			probes[i].answer = r->probe_answer;
			probes[i].tokens = r->probe_tokens;
			probes[i].confidence = r->probe_confidence;
			pres[i].probe_mean_prob = r->probe_confidence;
			pres[i].probe_min_prob = r->probe_min_prob;
			pres[i].chain_mean_entropy = r->chain_entropy;
			pres[i].experts_per_token = r->experts_per_token;
			pres[i].probe = &probes[i];
		}
	}
	reply.n_results = n;
	reply.results = pptr;
	rpc_call_reply(d->call, &reply.base);
	w->steps++;
	w->items += n;
out_res:
	for (g = 0; g < d->ngroups; g++)
		if (d->groups[g].rc == 0)
			for (i = d->groups[g].off; i < d->groups[g].off + d->groups[g].n; i++)
				engine_result_clear(&d->res[i]);
out:
	free(pres);
	free(pptr);
	free(probes);
	worker_step_free(d);
}

/* The engine finished one group (on the loop thread); the reply goes once all are done. */
static void
worker_group_done(void *arg, int rc, const char *err)
{
	struct worker_group *gr = arg;
	struct worker_step *d = gr->d;

	gr->rc = rc;
	if (rc != 0 && err != gr->err)
		snprintf(gr->err, sizeof gr->err, "%s", err ? err : "");
	if (--d->pending == 0)
		worker_step_reply(d);
}

/* The length of a request id's program part (up to its last '/'; all of it without one). */
static size_t
worker_program_len(const char *id)
{
	const char *slash = strrchr(id, '/');

	return slash != NULL ? (size_t)(slash - id) : strlen(id);
}

/* Splits the batch into groups: one per run of consecutive items of the same program with
 * program_errors, else one.  Returns 0 or -ENOMEM. */
static int
worker_group_items(struct worker_step *d)
{
	const Certa__V1__StepRequest *req = d->req;
	size_t i, n = req->n_items;

	d->groups = calloc(req->program_errors ? n : 1, sizeof *d->groups);
	if (d->groups == NULL)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		struct worker_group *last = d->ngroups ? &d->groups[d->ngroups - 1] : NULL;
		if (last != NULL && (!req->program_errors || (worker_program_len(
		    req->items[i]->request_id) == worker_program_len(req->items[last->off]->request_id) &&
		    strncmp(req->items[i]->request_id, req->items[last->off]->request_id,
		    worker_program_len(req->items[i]->request_id)) == 0))) {
			last->n++;
			continue;
		}
		d->groups[d->ngroups].d = d;
		d->groups[d->ngroups].off = i;
		d->groups[d->ngroups].n = 1;
		d->ngroups++;
	}
	return 0;
}

/* Checks the batch and hands it to the engine (which answers through worker_step_done). */
static void
worker_start_step(struct worker_step *d)
{
	const Certa__V1__StepRequest *req = d->req;
	size_t i, n = req->n_items;

	if (rpc_call_is_dead(d->call)) {
		worker_step_free(d);
		return;
	}
	if (n == 0 || n > WORKER_MAX_BATCH) {
		rpc_call_fail(d->call, CERTA_EINVAL, "a step batch holds 1..%d items, got %zu",
		    WORKER_MAX_BATCH, n);
		worker_step_free(d);
		return;
	}
	for (i = 0; i < n; i++) {
		char field[64];
		snprintf(field, sizeof field, "items[%zu].sampling", i);
		if (sampling_check(req->items[i]->sampling, field, d->err, sizeof d->err) != 0) {
			rpc_call_fail(d->call, CERTA_EINVAL, "%s", d->err);
			worker_step_free(d);
			return;
		}
		if (!(req->items[i]->moe_top_p >= 0 && req->items[i]->moe_top_p <= 1)) {
			rpc_call_fail(d->call, CERTA_EINVAL, "items[%zu].moe_top_p %g: must be 0 "
			    "(trained top-k) or in (0, 1]", i, (double)req->items[i]->moe_top_p);
			worker_step_free(d);
			return;
		}
	}
	d->items = calloc(n, sizeof *d->items);
	d->res = calloc(n, sizeof *d->res);
	if (d->items == NULL || d->res == NULL) {
		rpc_call_fail(d->call, -ENOMEM, "out of memory");
		worker_step_free(d);
		return;
	}
	for (i = 0; i < n; i++)
		worker_item_from_pb(req->items[i], &d->items[i]);
	if (worker_group_items(d) != 0) {
		rpc_call_fail(d->call, -ENOMEM, "out of memory");
		worker_step_free(d);
		return;
	}
	/* Each group is an engine step of its own (step_many engines run them together); a
	 * synchronous engine completes them inline, so pending holds one more until all are
	 * queued. */
	d->pending = d->ngroups + 1;
	for (i = 0; i < d->ngroups; i++) {
		struct worker_group *gr = &d->groups[i];
		engine_step_async(d->w->engine, d->items + gr->off, gr->n, d->res + gr->off,
		    gr->err, sizeof gr->err, worker_group_done, gr);
	}
	if (--d->pending == 0)
		worker_step_reply(d);
}

/* The simulated decode time has passed: run the step now. */
static void
worker_on_delay(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	worker_start_step(arg);
}

/* Step: now, or after step_delay (replay pacing for demos and failure tests). */
static void
worker_on_step(struct rpc_call *call, const ProtobufCMessage *msg, void *ctx)
{
	struct worker *w = ctx;
	struct worker_step *d;
	struct timeval tv;
	uint8_t *buf;
	size_t len;

	/* The request is freed when this handler returns: keep a copy. */
	d = calloc(1, sizeof *d);
	len = protobuf_c_message_get_packed_size(msg);
	buf = malloc(len ? len : 1);
	if (d == NULL || buf == NULL) {
		free(d);
		free(buf);
		rpc_call_fail(call, -ENOMEM, "out of memory");
		return;
	}
	protobuf_c_message_pack(msg, buf);
	d->req = certa__v1__step_request__unpack(NULL, len, buf);
	free(buf);
	if (d->req == NULL) {
		free(d);
		rpc_call_fail(call, -ENOMEM, "out of memory");
		return;
	}
	d->w = w;
	d->call = call;
	rpc_call_ref(call);
	if (w->step_delay_ms <= 0) {
		worker_start_step(d);
		return;
	}
	tv.tv_sec = w->step_delay_ms / 1000;
	tv.tv_usec = (w->step_delay_ms % 1000) * 1000;
	if (event_base_once(w->base, -1, EV_TIMEOUT, worker_on_delay, d, &tv) != 0) {
		rpc_call_fail(call, -ENOMEM, "cannot schedule the step");
		worker_step_free(d);
	}
}

static void
worker_on_release(struct rpc_call *call, const ProtobufCMessage *msg, void *ctx)
{
	struct worker *w = ctx;
	const Certa__V1__ReleaseRequest *req = (const Certa__V1__ReleaseRequest *)msg;
	Certa__V1__ReleaseReply reply = CERTA__V1__RELEASE_REPLY__INIT;
	size_t i;

	for (i = 0; i < req->n_request_ids; i++)
		if (engine_release(w->engine, req->request_ids[i]) == 0)
			reply.released++;
	log_debug(LOG_WORKER, "released %u of %zu", reply.released, req->n_request_ids);
	rpc_call_reply(call, &reply.base);
}

static void
worker_on_info(struct rpc_call *call, const ProtobufCMessage *msg, void *ctx)
{
	struct worker *w = ctx;
	Certa__V1__InfoReply reply = CERTA__V1__INFO_REPLY__INIT;
	struct engine_info info;
	char why[512];
	int rc;

	(void)msg;
	/* An engine that cannot serve (the openai engine's upstreams all failing) says so: certad
	 * keeps the worker down and places chains elsewhere. */
	why[0] = '\0';
	rc = engine_health(w->engine, why, sizeof why);
	if (rc != 0) {
		rpc_call_fail(call, rc, "%s", why[0] ? why : certa_strerror(rc));
		return;
	}
	engine_info(w->engine, &info);
	reply.engine = (char *)info.engine;
	reply.model = (char *)info.model;
	reply.capacity = info.capacity;
	reply.active = info.active;
	reply.version = (char *)CERTA_VERSION;
	reply.n_models = info.nmodels;
	reply.models = (char **)info.models;
	reply.problems = info.problems;
	reply.fault = (char *)(info.fault ? info.fault : "");
	reply.instance = w->instance;
	/* Every engine keeps the prompt with its state (engine_no_state when it holds none). */
	reply.prompt_once = true;
	rpc_call_reply(call, &reply.base);
}

static const struct rpc_method worker_method_table[] = {
	{ "/certa.v1.Worker/Step", RPC_UNARY, &certa__v1__step_request__descriptor,
	  worker_on_step, WAUTH_REQUIRED },
	{ "/certa.v1.Worker/Release", RPC_UNARY, &certa__v1__release_request__descriptor,
	  worker_on_release, WAUTH_REQUIRED },
	{ "/certa.v1.Worker/Info", RPC_UNARY, &certa__v1__info_request__descriptor,
	  worker_on_info, WAUTH_REQUIRED },
};

const struct rpc_method *
worker_methods(size_t *n)
{
	*n = sizeof worker_method_table / sizeof worker_method_table[0];
	return worker_method_table;
}
