/* core.c — programs, durability, dispatch and the scheduling seam inside certad. */
#include "daemon/core.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <event2/event.h>

#include "daemon/policies.h"
#include "daemon/program.h"
#include "daemon/telemetry.h"
#include "daemon/tenants.h"
#include "scheduler/fair.h"
#include "lib/error.h"
#include "lib/log.h"
#include "lib/rpc_server.h"
#include "lib/strmap.h"
#include "store/store.h"

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

static void core_dispatch(struct core *c);
static void core_finalize(struct core *c, struct program *p, enum program_state to,
    enum sched_reason reason, const char *answer, int status, const char *msg);

static int64_t
core_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Time-ordered id: 12 hex digits of milliseconds + 6 random hex digits. */
static void
core_new_id(char *buf, size_t len)
{
	uint32_t r = 0;

	if (getrandom(&r, sizeof r, 0) != sizeof r)
		r = (uint32_t)rand();
	snprintf(buf, len, "p-%012llx%06x", (unsigned long long)core_now_ms(), r & 0xffffff);
}

/* Every program state change goes through here: the state machine plus tenant accounting. */
static void
core_set_state(struct core *c, struct program *p, enum program_state to)
{
	enum program_state from = p->state;

	if (from == to)
		return;
	program_set_state(p, to);
	tenants_program_state(c->tenants, p->tenant, (int)from, (int)to);
	if (to == PROGRAM_QUEUED)
		p->ready_since_ms = core_now_ms();
}

/* Asks for a dispatch pass on the next loop iteration (never re-entrant). */
static void
core_kick(struct core *c)
{
	event_active(c->kick, 0, 0);
}

static int
core_order_add(struct core *c, struct program *p)
{
	if (c->norder == c->order_cap) {
		size_t ncap = c->order_cap ? c->order_cap * 2 : 64;
		struct program **no = realloc(c->order, ncap * sizeof *no);
		if (no == NULL)
			return -ENOMEM;
		c->order = no;
		c->order_cap = ncap;
	}
	c->order[c->norder++] = p;
	return 0;
}

/* Drops a program from the live set and frees it. */
static void
core_forget(struct core *c, struct program *p)
{
	size_t i;

	strmap_del(c->live, p->id);
	for (i = 0; i < c->norder; i++) {
		if (c->order[i] == p) {
			memmove(&c->order[i], &c->order[i + 1], (c->norder - i - 1) * sizeof *c->order);
			c->norder--;
			break;
		}
	}
	program_free(p);
}

/* --- persistence --- */

struct core_persist {
	struct program *p;
	int all_chains;   /* write every chain, not only dirty ones */
	int history;      /* also write the history record */
	int first;        /* the accepting write: also record the idempotency key */
};

/* Writes the program record, changed chains and (at the end) history, in one transaction. */
static int
core_persist_txn(struct store_txn *txn, void *arg)
{
	struct core_persist *cp = arg;
	struct program *p = cp->p;
	Certa__V1__ProgramRecord rec = CERTA__V1__PROGRAM_RECORD__INIT;
	struct program_pb pb;
	struct chain_pb *cpb = NULL;
	Certa__V1__RequestRecord **rr = NULL;
	char key[256];
	uint32_t i;
	int rc;

	rc = program_pb_fill(p, &pb);
	if (rc != 0)
		return rc;
	rec.program = &pb.msg;
	rec.step_count = p->steps;
	rec.budget = p->budget;
	rc = store_put(txn, STORE_DB_PROGRAMS, p->id, &rec.base);
	if (rc != 0)
		goto out;
	if (cp->first && p->idempotency_key[0] != '\0') {
		Certa__V1__IdempotencyRecord ir = CERTA__V1__IDEMPOTENCY_RECORD__INIT;
		snprintf(key, sizeof key, "%s/%s", p->tenant, p->idempotency_key);
		ir.program_id = p->id;
		ir.created_unix_ms = p->created_ms;
		rc = store_add(txn, STORE_DB_IDEMPOTENCY, key, &ir.base);
		if (rc != 0)
			goto out;
	}
	cpb = calloc(p->n, sizeof *cpb);
	rr = calloc(p->n, sizeof *rr);
	if (cpb == NULL || rr == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	for (i = 0; i < p->n; i++) {
		struct chain *ch = &p->chains[i];
		rc = program_chain_pb_fill(p, ch, &cpb[i]);
		if (rc != 0)
			goto out;
		rr[i] = &cpb[i].msg;
		if (!cp->all_chains && !ch->dirty)
			continue;
		program_chain_key(p, i, key, sizeof key);
		rc = store_put(txn, STORE_DB_REQUESTS, key, &cpb[i].msg.base);
		if (rc != 0)
			goto out;
	}
	if (cp->history) {
		Certa__V1__HistoryRecord h = CERTA__V1__HISTORY_RECORD__INIT;
		h.program = &pb.msg;
		h.n_requests = p->n;
		h.requests = rr;
		snprintf(key, sizeof key, "%016llx/%s", (unsigned long long)p->finished_ms, p->id);
		rc = store_put(txn, STORE_DB_HISTORY, key, &h.base);
	}
out:
	if (cpb != NULL)
		for (i = 0; i < p->n; i++)
			program_chain_pb_free(&cpb[i]);
	free(cpb);
	free(rr);
	program_pb_free(&pb);
	return rc;
}

static int
core_persist_ex(struct core *c, struct program *p, int all_chains, int history, int first)
{
	struct core_persist cp = { p, all_chains, history, first };
	uint32_t i;
	int rc;

	p->updated_ms = core_now_ms();
	rc = store_update(c->st, core_persist_txn, &cp);
	if (rc < 0) {
		log_err(LOG_STORE, "program %s: persist failed: %s", p->id, certa_strerror(rc));
		return rc;
	}
	for (i = 0; i < p->n; i++)
		p->chains[i].dirty = false;
	return 0;
}

static int
core_persist(struct core *c, struct program *p, int all_chains, int history)
{
	return core_persist_ex(c, p, all_chains, history, 0);
}

/* --- events to client streams --- */

/* Sends one event to every watcher; drops watchers whose stream is gone. */
static void
core_broadcast(struct program *p, Certa__V1__ProgramEvent *ev)
{
	size_t i = 0;

	ev->seq = ++p->evseq;
	while (i < p->nwatchers) {
		struct rpc_call *w = p->watchers[i];
		if (rpc_call_send(w, &ev->base) != 0) {
			program_unwatch(p, w);
			continue;
		}
		i++;
	}
}

static void
core_send_accepted(struct program *p, struct rpc_call *to, int duplicate)
{
	Certa__V1__ProgramEvent ev = CERTA__V1__PROGRAM_EVENT__INIT;
	Certa__V1__Accepted acc = CERTA__V1__ACCEPTED__INIT;

	acc.program_id = p->id;
	acc.accepted_unix_ms = p->created_ms;
	acc.duplicate = duplicate;
	ev.event_case = CERTA__V1__PROGRAM_EVENT__EVENT_ACCEPTED;
	ev.accepted = &acc;
	ev.seq = ++p->evseq;
	rpc_call_send(to, &ev.base);
}

static void
core_send_progress(struct program *p)
{
	Certa__V1__ProgramEvent ev = CERTA__V1__PROGRAM_EVENT__INIT;
	Certa__V1__Progress pr = CERTA__V1__PROGRESS__INIT;
	struct program_pb pb;

	if (p->nwatchers == 0 || program_pb_fill(p, &pb) != 0)
		return;
	pr.program_id = p->id;
	pr.tokens_used = pb.msg.tokens_used;
	pr.certaindex = p->certaindex;
	pr.n_requests = pb.msg.n_requests;
	pr.requests = pb.msg.requests;
	pr.answer = p->answer;
	ev.event_case = CERTA__V1__PROGRAM_EVENT__EVENT_PROGRESS;
	ev.progress = &pr;
	core_broadcast(p, &ev);
	program_pb_free(&pb);
}

/* Sends the finished event to one stream (to != NULL) or all, and ends the stream(s). */
static void
core_send_finished(struct program *p, struct rpc_call *to)
{
	Certa__V1__ProgramEvent ev = CERTA__V1__PROGRAM_EVENT__INIT;
	Certa__V1__Finished fin = CERTA__V1__FINISHED__INIT;
	struct program_pb pb;
	size_t i;

	if (program_pb_fill(p, &pb) != 0)
		return;
	fin.program_id = p->id;
	fin.result = &pb.result;
	fin.n_requests = pb.msg.n_requests;
	fin.requests = pb.msg.requests;
	ev.event_case = CERTA__V1__PROGRAM_EVENT__EVENT_FINISHED;
	ev.finished = &fin;
	ev.seq = ++p->evseq;
	for (i = 0; i < (to != NULL ? 1 : p->nwatchers); i++) {
		struct rpc_call *w = to != NULL ? to : p->watchers[i];
		rpc_call_send(w, &ev.base);
		if (p->state == PROGRAM_FAILED)
			rpc_call_finish(w, (grpc_status_code)p->error_status, "program %s failed: %s",
			    p->id, p->error_message ? p->error_message : "");
		else
			rpc_call_finish(w, GRPC_STATUS_OK, NULL);
	}
	program_pb_free(&pb);
}

/* --- stepping --- */

/* Releases a program's chains on the worker that holds them. */
static void
core_unplace(struct core *c, struct program *p, int release)
{
	struct pool_worker *w;
	char **ids;
	char key[256];
	uint32_t i;

	if (p->worker == NULL)
		return;
	w = pool_find(c->pool, p->worker);
	if (w != NULL) {
		pool_hold(w, -(int)p->n);
		if (release) {
			ids = calloc(p->n, sizeof *ids);
			if (ids != NULL) {
				for (i = 0; i < p->n; i++) {
					snprintf(key, sizeof key, "%s/%u", p->id, i);
					ids[i] = strdup(key);
				}
				pool_release(c->pool, p->worker, ids, p->n);
				for (i = 0; i < p->n; i++)
					free(ids[i]);
				free(ids);
			}
		}
	}
	free(p->worker);
	p->worker = NULL;
}

/* The policy that applies to a program's tenant now. */
static const struct sched_policy *
core_program_policy(const struct core *c, const struct program *p)
{
	return policies_effective(c->policies, p->tenant, tenants_policy(c->tenants, p->tenant));
}

/* Runs the scheduler on a program and acts on its decision.  Returns 1 if it stopped. */
static int
core_decide(struct core *c, struct program *p, struct sched_decision *d)
{
	struct sched_chain *chains = calloc(p->n, sizeof *chains);
	struct sched_view v;

	if (chains == NULL)
		return 0;
	program_view(p, chains, core_now_ms(), &v);
	v.state = &p->pstate;
	/* The tenant's policy as of now: a policy change applies from the next step. */
	sched_decide(core_program_policy(c, p), &v, d);
	program_set_str(&p->answer, d->answer);
	p->certaindex = d->certaindex;
	p->features = d->features;
	{
		/* The trajectory in history carries the certaindex after each probe. */
		uint32_t i;
		for (i = 0; i < p->n; i++)
			if (p->chains[i].nprobes > 0)
				p->chains[i].probes[p->chains[i].nprobes - 1].certaindex = d->certaindex;
	}
	free(chains);
	if (!d->stop) {
		p->decided = true;
		p->decided_steps = p->steps;
		p->decided_gen = policies_generation(c->policies);
		p->next_step_tokens = d->step_tokens;
		return 0;
	}
	p->low_confidence = d->low_confidence;
	core_finalize(c, p, PROGRAM_FINISHED, d->reason, p->answer, 0, NULL);
	return 1;
}

struct core_step {
	struct core *c;
	char *id;
	int64_t sent_us;
	uint32_t *chain_idx;  /* chains in this batch */
	size_t n;
};

static void
core_step_free(struct core_step *s)
{
	free(s->id);
	free(s->chain_idx);
	free(s);
}

/* A step failed: decide whether the program fails or retries elsewhere. */
static void
core_step_failed(struct core *c, struct program *p, struct pool_worker *w,
    grpc_status_code status, const char *details)
{
	switch (status) {
	case GRPC_STATUS_NOT_FOUND:
	case GRPC_STATUS_INVALID_ARGUMENT:
	case GRPC_STATUS_FAILED_PRECONDITION:
	case GRPC_STATUS_OUT_OF_RANGE:
	case GRPC_STATUS_UNIMPLEMENTED:
		/* The worker refused the program itself: no other worker will do better. */
		log_info(LOG_DISPATCH, "program %s refused by %s: %s: %s", p->id,
		    pool_worker_addr(w), rpc_status_name(status), details);
		core_unplace(c, p, 1);
		core_finalize(c, p, PROGRAM_FAILED, SCHED_REASON_FAILED, p->answer, status, details);
		return;
	default:
		break;
	}
	p->attempts++;
	log_warn(LOG_DISPATCH, "program %s step on %s failed (%u/%u): %s: %s", p->id,
	    pool_worker_addr(w), p->attempts, c->opt.max_attempts, rpc_status_name(status),
	    details);
	if (p->attempts >= c->opt.max_attempts) {
		char msg[600];
		core_unplace(c, p, 1);
		snprintf(msg, sizeof msg, "gave up after %u failed steps; last: %s: %s",
		    p->attempts, rpc_status_name(status), details);
		core_finalize(c, p, PROGRAM_FAILED, SCHED_REASON_FAILED, p->answer,
		    GRPC_STATUS_UNAVAILABLE, msg);
		return;
	}
	if (pool_worker_state(w) != POOL_UP) {
		/* Worker lost: the chains move to another worker (resumed from their text). */
		core_unplace(c, p, 0);
		if (p->state == PROGRAM_RUNNING)
			core_set_state(c, p, PROGRAM_QUEUED);
	}
	p->not_before_ms = core_now_ms() + (int64_t)c->opt.retry_backoff_ms * p->attempts;
}

/* Applies one step's results to the program's chains; returns 0 or CERTA_EINVAL when the
 * reply does not match the batch. */
static int
core_apply(struct program *p, const struct core_step *s, const Certa__V1__StepReply *r)
{
	size_t i;
	char want[256];

	if (r->n_results != s->n)
		return CERTA_EINVAL;
	for (i = 0; i < s->n; i++) {
		const Certa__V1__StepResult *res = r->results[i];
		struct chain *ch = &p->chains[s->chain_idx[i]];
		snprintf(want, sizeof want, "%s/%u", p->id, s->chain_idx[i]);
		if (strcmp(res->request_id, want) != 0 || res->total_tokens < ch->tokens)
			return CERTA_EINVAL;
	}
	for (i = 0; i < s->n; i++) {
		const Certa__V1__StepResult *res = r->results[i];
		struct chain *ch = &p->chains[s->chain_idx[i]];
		if (program_chain_append(ch, res->text, res->total_tokens,
		    res->probe ? res->probe->answer : "", res->probe ? res->probe->tokens : 0,
		    res->probe ? res->probe->confidence : -1, res->finished, res->final_answer,
		    res->thinking_done) != 0)
			return -ENOMEM;
	}
	return 0;
}

static void
core_on_step(void *arg, struct pool_worker *w, grpc_status_code status, const char *details,
    Certa__V1__StepReply *reply)
{
	struct core_step *s = arg;
	struct core *c = s->c;
	struct program *p = strmap_get(c->live, s->id);
	struct sched_decision d;
	struct timespec now;
	int rc;

	clock_gettime(CLOCK_MONOTONIC, &now);
	telemetry_step(c->tel, pool_worker_addr(w),
	    ((int64_t)now.tv_sec * 1000000 + now.tv_nsec / 1000 - s->sent_us) / 1e6, (int)status);
	if (p == NULL)
		goto out;
	p->inflight = false;
	if (program_is_terminal(p)) {
		/* Cancelled while the step ran: free the worker's state now. */
		core_unplace(c, p, 1);
		core_forget(c, p);
		goto out;
	}
	if (status != GRPC_STATUS_OK) {
		core_step_failed(c, p, w, status, details ? details : "");
		goto out;
	}
	rc = core_apply(p, s, reply);
	if (rc != 0) {
		core_step_failed(c, p, w, GRPC_STATUS_INTERNAL, "worker reply does not match the batch");
		goto out;
	}
	p->attempts = 0;
	p->steps++;
	c->steps_total++;
	p->ready_since_ms = core_now_ms();
	{
		/* Tokens served (decode + probe) count against quotas and fair share. */
		uint64_t served = 0;
		size_t i;
		for (i = 0; i < reply->n_results; i++)
			served += reply->results[i]->new_tokens +
			    (reply->results[i]->probe ? reply->results[i]->probe->tokens : 0);
		tenants_charge(c->tenants, p->tenant, served, p->ready_since_ms);
		fair_charge(c->fair, p->tenant, served);
		fair_note_served(c->fair, p->tenant, served, p->ready_since_ms);
		{
			uint64_t probe = 0;
			for (i = 0; i < reply->n_results; i++)
				probe += reply->results[i]->probe ?
				    reply->results[i]->probe->tokens : 0;
			telemetry_tokens(c->tel, p->tenant, served - probe, probe);
		}
	}
	if (core_decide(c, p, &d))
		goto out;
	/* Commit the step before telling anyone about it. */
	if (core_persist(c, p, 0, 0) == 0)
		core_send_progress(p);
out:
	if (reply != NULL)
		protobuf_c_message_free_unpacked(&reply->base, NULL);
	core_step_free(s);
	if (c->draining && pool_inflight(c->pool) == 0 && c->drain_done != NULL) {
		void (*done)(void *) = c->drain_done;
		c->drain_done = NULL;
		done(c->drain_arg);
		return;
	}
	core_kick(c);
}

/* Builds and sends one gang step (all unfinished chains of a program) to worker w. */
static int
core_send_step(struct core *c, struct program *p, struct pool_worker *w, uint32_t tokens)
{
	Certa__V1__StepRequest req = CERTA__V1__STEP_REQUEST__INIT;
	Certa__V1__StepItem *items;
	Certa__V1__StepItem **ptrs;
	Certa__V1__SamplingParams sp = CERTA__V1__SAMPLING_PARAMS__INIT;
	Certa__V1__ProbeSpec probe = CERTA__V1__PROBE_SPEC__INIT;
	struct core_step *s;
	char (*ids)[192];
	int moved = p->worker == NULL || strcmp(p->worker, pool_worker_addr(w)) != 0;
	uint32_t i;
	size_t n = 0;
	int rc = -ENOMEM;

	items = calloc(p->n, sizeof *items);
	ptrs = calloc(p->n, sizeof *ptrs);
	ids = calloc(p->n, sizeof *ids);
	s = calloc(1, sizeof *s);
	if (items == NULL || ptrs == NULL || ids == NULL || s == NULL)
		goto out;
	s->c = c;
	{
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		s->sent_us = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
	}
	s->id = strdup(p->id);
	s->chain_idx = calloc(p->n, sizeof *s->chain_idx);
	if (s->id == NULL || s->chain_idx == NULL)
		goto out;
	sp.temperature = p->temperature;
	sp.top_p = p->top_p;
	for (i = 0; i < p->n; i++) {
		struct chain *ch = &p->chains[i];
		if (ch->finished)
			continue;
		certa__v1__step_item__init(&items[n]);
		snprintf(ids[n], sizeof ids[n], "%s/%u", p->id, i);
		items[n].request_id = ids[n];
		items[n].prompt = p->problem;
		/* The text so far travels only when the chain lands on a new worker. */
		items[n].resume_text = moved && ch->text != NULL ? ch->text : (char *)"";
		items[n].resume_tokens = ch->tokens;
		items[n].sample_index = i;
		items[n].max_new_tokens = tokens;
		items[n].seed = i;
		items[n].model = p->model;
		items[n].sampling = &sp;
		items[n].probe = &probe;
		ptrs[n] = &items[n];
		s->chain_idx[n] = i;
		n++;
	}
	s->n = n;
	req.n_items = n;
	req.items = ptrs;
	rc = pool_step(c->pool, w, &req, core_on_step, s);
	if (rc != 0)
		goto out;
	s = NULL;
	if (moved) {
		core_unplace(c, p, 1);
		p->worker = strdup(pool_worker_addr(w));
		pool_hold(w, (int)p->n);
	}
	p->inflight = true;
	if (p->state == PROGRAM_QUEUED)
		core_set_state(c, p, PROGRAM_RUNNING);
out:
	if (s != NULL)
		core_step_free(s);
	free(items);
	free(ptrs);
	free(ids);
	return rc;
}

/* One dispatch pass: ready programs ordered by fair share (VTC across tenants; priority,
 * deadline, remaining work inside a tenant; starvation bound), started while workers have
 * free step slots. */
static void
core_dispatch(struct core *c)
{
	int64_t now = core_now_ms();
	struct fair_item *items = NULL;
	struct program **ready = NULL;
	size_t *order = NULL, i, n = 0;

	if (c->draining || c->norder == 0)
		return;
	items = calloc(c->norder, sizeof *items);
	ready = calloc(c->norder, sizeof *ready);
	order = calloc(c->norder, sizeof *order);
	if (items == NULL || ready == NULL || order == NULL)
		goto out;
	for (i = 0; i < c->norder; i++) {
		struct program *p = c->order[i];
		struct sched_decision d;
		uint64_t used;

		if (p->inflight || program_is_terminal(p) || p->not_before_ms > now)
			continue;
		if (p->decided && p->decided_steps == p->steps &&
		    p->decided_gen == policies_generation(c->policies) &&
		    (p->deadline_ms == 0 || now < p->deadline_ms)) {
			/* Nothing changed since the last decision: reuse it. */
			d.step_tokens = p->next_step_tokens;
		} else if (core_decide(c, p, &d)) {
			/* Deadlines and budgets can end a program without a step. */
			i--;  /* core_finalize removed it from order */
			continue;
		}
		used = program_tokens(p);
		items[n].tenant = p->tenant;
		items[n].priority = p->priority ? p->priority : tenants_priority(c->tenants, p->tenant);
		items[n].deadline_ms = p->deadline_ms;
		items[n].ready_since_ms = p->ready_since_ms;
		items[n].est_remaining = p->budget > used ? p->budget - used : 0;
		items[n].cost = (uint64_t)d.step_tokens * p->n;
		items[n].seq = p->seq;
		ready[n++] = p;
	}
	if (n == 0 || fair_order(c->fair, items, n, now, c->opt.starvation_ms, order) != 0)
		goto out;
	for (i = 0; i < n && pool_has_slots(c->pool); i++) {
		struct program *p = ready[order[i]];
		struct pool_worker *w = pool_pick(c->pool, p->worker, p->n, p->model);
		struct sched_decision d;

		if (w == NULL)
			continue;
		d.step_tokens = (uint32_t)(items[order[i]].cost / p->n);
		if (core_send_step(c, p, w, d.step_tokens) != 0)
			p->not_before_ms = now + c->opt.retry_backoff_ms;
	}
out:
	free(items);
	free(ready);
	free(order);
}

static void
core_on_kick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	core_dispatch(arg);
}

/* Ends a program: terminal state, result, history, events, worker release. */
static void
core_finalize(struct core *c, struct program *p, enum program_state to, enum sched_reason reason,
    const char *answer, int status, const char *msg)
{
	core_set_state(c, p, to);
	p->reason = reason;
	p->finished_ms = core_now_ms();
	if (reason == SCHED_REASON_CERTAIN || reason == SCHED_REASON_UNPROMISING) {
		/* Estimate: each unfinished chain would have run to the policy's expected length. */
		uint64_t exp = core_program_policy(c, p)->expected_tokens, saved = 0;
		uint32_t i;
		for (i = 0; i < p->n; i++)
			if (!p->chains[i].finished && p->chains[i].tokens < exp)
				saved += exp - p->chains[i].tokens;
		tenants_saved(c->tenants, p->tenant, saved);
		telemetry_saved(c->tel, p->tenant, saved);
	}
	program_set_str(&p->answer, answer);
	if (to == PROGRAM_FAILED) {
		p->error_status = status ? status : GRPC_STATUS_INTERNAL;
		program_set_str(&p->error_message, msg);
		p->low_confidence = true;
	}
	(void)core_persist(c, p, 1, 1);
	c->finished_total++;
	telemetry_finished(c->tel, p->tenant, sched_reason_name(reason), p->certaindex, p->steps);
	log_info(LOG_SCHED, "program %s %s reason=%s answer=\"%s\" tokens=%llu steps=%llu",
	    p->id, program_state_name(to), sched_reason_name(reason), p->answer,
	    (unsigned long long)program_tokens(p), (unsigned long long)p->steps);
	core_send_finished(p, NULL);
	if (!p->inflight) {
		core_unplace(c, p, 1);
		core_forget(c, p);
	}
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

void
core_set_telemetry(struct core *c, struct telemetry *t)
{
	c->tel = t;
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
		core_unplace(c, p, 0);
		if (p->state == PROGRAM_RUNNING)
			core_set_state(c, p, PROGRAM_QUEUED);
	}
	core_kick(c);
}

/* --- public API --- */

static void
core_on_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	core_dispatch(arg);
}

/* Loads the chains of one program from the requests DB. */
struct core_load {
	Certa__V1__RequestRecord **reqs;
	size_t n, cap;
};

static int
core_load_req(const char *key, size_t keylen, const ProtobufCMessage *msg, void *arg)
{
	struct core_load *l = arg;
	size_t len = protobuf_c_message_get_packed_size(msg);
	uint8_t *buf;

	(void)key;
	(void)keylen;
	if (l->n == l->cap) {
		size_t ncap = l->cap ? l->cap * 2 : 8;
		Certa__V1__RequestRecord **nr = realloc(l->reqs, ncap * sizeof *nr);
		if (nr == NULL)
			return -ENOMEM;
		l->reqs = nr;
		l->cap = ncap;
	}
	/* The message lives only during the callback: keep a copy. */
	buf = malloc(len ? len : 1);
	if (buf == NULL)
		return -ENOMEM;
	protobuf_c_message_pack(msg, buf);
	l->reqs[l->n] = certa__v1__request_record__unpack(NULL, len, buf);
	free(buf);
	if (l->reqs[l->n] == NULL)
		return CERTA_ECORRUPT;
	l->n++;
	return 0;
}

struct core_recover {
	struct core *c;
	Certa__V1__ProgramRecord **recs;
	size_t n, cap;
};

static int
core_collect_unfinished(const Certa__V1__ProgramRecord *rec, void *arg)
{
	struct core_recover *r = arg;
	size_t len = protobuf_c_message_get_packed_size(&rec->base);
	uint8_t *buf;

	if (r->n == r->cap) {
		size_t ncap = r->cap ? r->cap * 2 : 16;
		Certa__V1__ProgramRecord **nr = realloc(r->recs, ncap * sizeof *nr);
		if (nr == NULL)
			return -ENOMEM;
		r->recs = nr;
		r->cap = ncap;
	}
	buf = malloc(len ? len : 1);
	if (buf == NULL)
		return -ENOMEM;
	protobuf_c_message_pack(&rec->base, buf);
	r->recs[r->n] = certa__v1__program_record__unpack(NULL, len, buf);
	free(buf);
	if (r->recs[r->n] == NULL)
		return CERTA_ECORRUPT;
	r->n++;
	return 0;
}

struct core_scan_reqs {
	const char *prefix;
	struct core_load *load;
};

static int
core_scan_reqs_txn(struct store_txn *txn, void *arg)
{
	struct core_scan_reqs *s = arg;

	return store_scan(txn, STORE_DB_REQUESTS, s->prefix, NULL, core_load_req, s->load);
}

/* Crash recovery: every QUEUED/RUNNING program comes back and continues. */
static int
core_recover(struct core *c)
{
	struct core_recover r = { c, NULL, 0, 0 };
	size_t i, j, resumed = 0;
	int rc;

	rc = store_scan_unfinished(c->st, core_collect_unfinished, &r);
	if (rc < 0)
		goto out;
	rc = 0;
	for (i = 0; i < r.n; i++) {
		struct core_load load = { NULL, 0, 0 };
		struct core_scan_reqs sr;
		char prefix[256];
		struct program *p;

		snprintf(prefix, sizeof prefix, "%s/", r.recs[i]->program->id);
		sr.prefix = prefix;
		sr.load = &load;
		rc = store_view(c->st, core_scan_reqs_txn, &sr);
		if (rc < 0) {
			log_err(LOG_STORE, "recovery of %s: %s", r.recs[i]->program->id,
			    certa_strerror(rc));
		} else {
			p = program_from_records(r.recs[i], load.reqs, load.n);
			if (p == NULL) {
				log_err(LOG_STORE, "recovery of %s: inconsistent record, skipped",
				    r.recs[i]->program->id);
			} else if (strmap_put(c->live, p->id, p, NULL) != 0 ||
			    core_order_add(c, p) != 0) {
				program_free(p);
				rc = -ENOMEM;
			} else {
				p->seq = c->next_seq++;
				p->ready_since_ms = core_now_ms();
				(void)tenants_ensure(c->tenants, p->tenant);
				tenants_program_state(c->tenants, p->tenant, 0, (int)p->state);
				resumed++;
			}
		}
		for (j = 0; j < load.n; j++)
			certa__v1__request_record__free_unpacked(load.reqs[j], NULL);
		free(load.reqs);
		if (rc == -ENOMEM)
			goto out;
		rc = 0;
	}
	if (resumed > 0)
		log_notice(LOG_STORE, "recovered %zu unfinished programs", resumed);
out:
	for (i = 0; i < r.n; i++)
		certa__v1__program_record__free_unpacked(r.recs[i], NULL);
	free(r.recs);
	return rc;
}

/* --- retention --- */

struct core_prune {
	int64_t cutoff_ms;
	size_t limit;
	char **keys[3];           /* program ids; request keys; idempotency keys */
	size_t n[3], cap[3];
	char **hist;              /* history keys older than the cutoff */
	size_t nhist, caphist;
	char cutoff_hist[32];
};

static int
core_prune_add(char ***v, size_t *n, size_t *cap, const char *key)
{
	if (*n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 64;
		char **nv = realloc(*v, ncap * sizeof *nv);
		if (nv == NULL)
			return -ENOMEM;
		*v = nv;
		*cap = ncap;
	}
	(*v)[*n] = strdup(key);
	if ((*v)[*n] == NULL)
		return -ENOMEM;
	(*n)++;
	return 0;
}

static void
core_prune_reset(struct core_prune *pr)
{
	size_t i, j;

	for (j = 0; j < 3; j++) {
		for (i = 0; i < pr->n[j]; i++)
			free(pr->keys[j][i]);
		pr->n[j] = 0;
	}
	for (i = 0; i < pr->nhist; i++)
		free(pr->hist[i]);
	pr->nhist = 0;
}

/* Programs that ended before the cutoff (terminal state, with a finish time). */
static int
core_prune_programs(const char *key, size_t keylen, const ProtobufCMessage *msg, void *arg)
{
	struct core_prune *pr = arg;
	const Certa__V1__ProgramRecord *rec = (const Certa__V1__ProgramRecord *)msg;
	const Certa__V1__Program *pm = rec->program;
	char ik[512];
	int rc;

	(void)keylen;
	if (pm == NULL || pm->result == NULL ||
	    pm->state < CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_FINISHED ||
	    pm->result->finished_unix_ms >= pr->cutoff_ms)
		return 0;
	rc = core_prune_add(&pr->keys[0], &pr->n[0], &pr->cap[0], key);
	if (rc == 0 && pm->spec != NULL && pm->spec->idempotency_key[0] != '\0') {
		snprintf(ik, sizeof ik, "%s/%s", pm->tenant, pm->spec->idempotency_key);
		rc = core_prune_add(&pr->keys[2], &pr->n[2], &pr->cap[2], ik);
	}
	if (rc != 0)
		return rc;
	return pr->n[0] >= pr->limit ? 1 : 0;
}

static int
core_prune_requests(const char *key, size_t keylen, const ProtobufCMessage *msg, void *arg)
{
	struct core_prune *pr = arg;

	(void)keylen;
	(void)msg;
	return core_prune_add(&pr->keys[1], &pr->n[1], &pr->cap[1], key);
}

static int
core_prune_history(const char *key, size_t keylen, const ProtobufCMessage *msg, void *arg)
{
	struct core_prune *pr = arg;

	(void)keylen;
	(void)msg;
	if (strncmp(key, pr->cutoff_hist, 16) >= 0)
		return 1;  /* keys are time-ordered: the rest is newer */
	if (pr->nhist >= pr->limit)
		return 1;
	return core_prune_add(&pr->hist, &pr->nhist, &pr->caphist, key);
}

/* One pruning transaction: collect, then delete (no deletes while scanning a DB). */
static int
core_prune_txn(struct store_txn *txn, void *arg)
{
	struct core_prune *pr = arg;
	size_t i, nprog;
	char prefix[256];
	int rc;

	core_prune_reset(pr);
	rc = store_scan(txn, STORE_DB_PROGRAMS, "", NULL, core_prune_programs, pr);
	if (rc < 0)
		return rc;
	nprog = pr->n[0];
	for (i = 0; i < nprog; i++) {
		snprintf(prefix, sizeof prefix, "%s/", pr->keys[0][i]);
		rc = store_scan(txn, STORE_DB_REQUESTS, prefix, NULL, core_prune_requests, pr);
		if (rc < 0)
			return rc;
	}
	rc = store_scan(txn, STORE_DB_HISTORY, "", NULL, core_prune_history, pr);
	if (rc < 0)
		return rc;
	for (i = 0; i < nprog; i++)
		if ((rc = store_del(txn, STORE_DB_PROGRAMS, pr->keys[0][i])) != 0)
			return rc;
	for (i = 0; i < pr->n[1]; i++)
		if ((rc = store_del(txn, STORE_DB_REQUESTS, pr->keys[1][i])) != 0)
			return rc;
	for (i = 0; i < pr->n[2]; i++) {
		rc = store_del(txn, STORE_DB_IDEMPOTENCY, pr->keys[2][i]);
		if (rc != 0 && rc != CERTA_ENOTFOUND)
			return rc;
	}
	for (i = 0; i < pr->nhist; i++)
		if ((rc = store_del(txn, STORE_DB_HISTORY, pr->hist[i])) != 0)
			return rc;
	return 0;
}

/* Deletes programs (with their chains, idempotency keys and history) that ended more than
 * retention_ms ago, at most 1000 per run. */
static void
core_on_retention(evutil_socket_t fd, short what, void *arg)
{
	struct core *c = arg;
	struct core_prune pr;
	size_t j;
	int rc;

	(void)fd;
	(void)what;
	memset(&pr, 0, sizeof pr);
	pr.cutoff_ms = core_now_ms() - c->opt.retention_ms;
	pr.limit = 1000;
	snprintf(pr.cutoff_hist, sizeof pr.cutoff_hist, "%016llx",
	    (unsigned long long)(pr.cutoff_ms > 0 ? pr.cutoff_ms : 0));
	rc = store_update(c->st, core_prune_txn, &pr);
	if (rc < 0)
		log_err(LOG_STORE, "retention: pruning failed: %s", certa_strerror(rc));
	else if (pr.n[0] > 0 || pr.nhist > 0)
		log_info(LOG_STORE, "retention: removed programs=%zu history=%zu older_than_ms=%lld",
		    pr.n[0], pr.nhist, (long long)c->opt.retention_ms);
	if (rc >= 0)
		c->pruned_total += pr.n[0];
	core_prune_reset(&pr);
	for (j = 0; j < 3; j++)
		free(pr.keys[j]);
	free(pr.hist);
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
	c->fair = fair_new();
	c->live = strmap_new();
	if (c->live == NULL || c->fair == NULL) {
		rc = -ENOMEM;
		goto fail_tenants;
	}
	rc = pool_new(base, br, &opt->pool, core_on_worker_change, c, &c->pool);
	if (rc != 0)
		goto fail_live;
	c->kick = event_new(base, -1, 0, core_on_kick, c);
	c->tick = event_new(base, -1, EV_PERSIST, core_on_tick, c);
	if (c->kick == NULL || c->tick == NULL) {
		rc = -ENOMEM;
		goto fail_events;
	}
	tv.tv_sec = opt->tick_ms / 1000;
	tv.tv_usec = (opt->tick_ms % 1000) * 1000;
	event_add(c->tick, &tv);
	rc = core_recover(c);
	if (rc != 0)
		goto fail_events;
	if (opt->retention_ms > 0) {
		int iv = opt->retention_interval_ms > 0 ? opt->retention_interval_ms : 3600000;
		c->retention = event_new(base, -1, EV_PERSIST, core_on_retention, c);
		if (c->retention != NULL) {
			tv.tv_sec = iv / 1000;
			tv.tv_usec = (iv % 1000) * 1000;
			event_add(c->retention, &tv);
		}
	}
	*out = c;
	return 0;

fail_events:
	if (c->kick != NULL)
		event_free(c->kick);
	if (c->tick != NULL)
		event_free(c->tick);
	pool_free(c->pool);
fail_live:
	while (c->norder > 0)
		core_forget(c, c->order[0]);
fail_tenants:
	strmap_free(c->live, NULL);
	free(c->order);
	fair_free(c->fair);
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
	if (c->probe_timeout != NULL)
		event_free(c->probe_timeout);
	if (c->retention != NULL)
		event_free(c->retention);
	while (c->norder > 0)
		core_forget(c, c->order[0]);
	strmap_free(c->live, NULL);
	free(c->order);
	pool_free(c->pool);
	fair_free(c->fair);
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

/* Checks a client's spec against the policy; fills the effective algorithm, n and budget. */
static int
core_validate(struct core *c, const struct sched_policy *pol, const Certa__V1__ProgramSpec *spec,
    enum sched_algo *algo, uint32_t *n, uint64_t *budget, char *err, size_t errlen)
{
	size_t plen;

	if (spec == NULL) {
		snprintf(err, errlen, "missing program");
		return CERTA_EINVAL;
	}
	plen = spec->problem != NULL ? strlen(spec->problem) : 0;
	if (plen == 0) {
		snprintf(err, errlen, "program.problem is empty");
		return CERTA_EINVAL;
	}
	if (plen > c->opt.max_prompt_bytes) {
		snprintf(err, errlen, "program.problem is %zu bytes; the limit is %u bytes", plen,
		    c->opt.max_prompt_bytes);
		return CERTA_EINVAL;
	}
	switch (spec->algorithm) {
	case CERTA__V1__ALGORITHM__ALGORITHM_UNSPECIFIED:
		*algo = spec->n > 1 ? SCHED_ALGO_SC : SCHED_ALGO_COT;
		break;
	case CERTA__V1__ALGORITHM__ALGORITHM_COT:
		*algo = SCHED_ALGO_COT;
		break;
	case CERTA__V1__ALGORITHM__ALGORITHM_SC:
		*algo = SCHED_ALGO_SC;
		break;
	default:
		snprintf(err, errlen, "program.algorithm %d is not one of COT (1), SC (2)",
		    (int)spec->algorithm);
		return CERTA_EINVAL;
	}
	if (*algo == SCHED_ALGO_COT) {
		if (spec->n > 1) {
			snprintf(err, errlen, "program.n is %u but cot runs one chain (use sc)",
			    spec->n);
			return CERTA_EINVAL;
		}
		*n = 1;
	} else {
		*n = spec->n ? spec->n : pol->default_sc_n;
		if (*n < 1 || *n > pol->max_sc_n) {
			snprintf(err, errlen, "program.n is %u; allowed range is [1, %u]", *n,
			    pol->max_sc_n);
			return CERTA_EINVAL;
		}
	}
	*budget = spec->token_budget ? spec->token_budget : pol->default_budget * *n;
	if (*budget > pol->max_budget) {
		snprintf(err, errlen, "program.token_budget %llu exceeds the limit %llu",
		    (unsigned long long)*budget, (unsigned long long)pol->max_budget);
		return CERTA_EINVAL;
	}
	if (spec->priority < 0 || spec->priority > CERTA__V1__PRIORITY__PRIORITY_HIGH) {
		snprintf(err, errlen, "program.priority %d is not a known priority",
		    (int)spec->priority);
		return CERTA_EINVAL;
	}
	if (spec->policy[0] != '\0') {
		snprintf(err, errlen, "program.policy: per-program policies are not supported; the "
		    "tenant's policy applies (certactl policy get --tenant)");
		return CERTA_EINVAL;
	}
	if (spec->model[0] != '\0') {
		char avail[256];
		if (!pool_model_known(c->pool, spec->model, avail, sizeof avail)) {
			snprintf(err, errlen, "program.model: no worker serves model '%s' (workers "
			    "up serve: %s)", spec->model, avail[0] ? avail : "none");
			return CERTA_EINVAL;
		}
	}
	if (spec->deadline_unix_ms != 0 && spec->deadline_unix_ms <= core_now_ms()) {
		snprintf(err, errlen, "program.deadline_unix_ms %lld is in the past",
		    (long long)spec->deadline_unix_ms);
		return CERTA_EINVAL;
	}
	return 0;
}

struct core_idem_ctx {
	const char *key;
	Certa__V1__IdempotencyRecord *rec;
};

static int
core_idem_txn(struct store_txn *txn, void *arg)
{
	struct core_idem_ctx *g = arg;

	return store_get(txn, STORE_DB_IDEMPOTENCY, g->key, NULL, (ProtobufCMessage **)&g->rec);
}

/* A Submit that repeats an idempotency key gets the program the key created: accepted with
 * duplicate set, then its events (or its final event).  CERTA_ENOTFOUND: a new key. */
static int
core_idempotent(struct core *c, const char *tenant, const char *ikey, struct rpc_call *watcher,
    char *err, size_t errlen)
{
	struct core_idem_ctx g;
	char key[512];
	struct program *p;
	int rc;

	if (strlen(ikey) > 128) {
		snprintf(err, errlen, "program.idempotency_key is longer than 128 bytes");
		return CERTA_EINVAL;
	}
	snprintf(key, sizeof key, "%s/%s", tenant, ikey);
	g.key = key;
	g.rec = NULL;
	rc = store_view(c->st, core_idem_txn, &g);
	if (rc != 0)
		return rc;
	log_info(LOG_SCHED, "program %s: repeated idempotency key from tenant %s",
	    g.rec->program_id, tenant);
	p = strmap_get(c->live, g.rec->program_id);
	if (p != NULL && !program_is_terminal(p)) {
		if (watcher != NULL) {
			core_send_accepted(p, watcher, 1);
			program_watch(p, watcher);
		}
	} else if (watcher != NULL) {
		Certa__V1__ProgramEvent ev = CERTA__V1__PROGRAM_EVENT__INIT;
		Certa__V1__Accepted acc = CERTA__V1__ACCEPTED__INIT;
		acc.program_id = g.rec->program_id;
		acc.accepted_unix_ms = g.rec->created_unix_ms;
		acc.duplicate = 1;
		ev.event_case = CERTA__V1__PROGRAM_EVENT__EVENT_ACCEPTED;
		ev.accepted = &acc;
		ev.seq = 0;
		rpc_call_send(watcher, &ev.base);
		rc = core_watch(c, tenant, g.rec->program_id, watcher);
	}
	certa__v1__idempotency_record__free_unpacked(g.rec, NULL);
	return rc;
}

int
core_submit(struct core *c, const char *tenant, const Certa__V1__ProgramSpec *spec,
    struct rpc_call *watcher, char *err, size_t errlen)
{
	struct program *p;
	enum sched_algo algo;
	uint32_t n;
	uint64_t budget;
	char id[64];
	int rc;

	if (c->draining) {
		snprintf(err, errlen, "certad is shutting down; retry on another instance or later");
		return CERTA_EUNAVAIL;
	}
	if (!tenants_exists(c->tenants, tenant)) {
		snprintf(err, errlen, "unknown tenant %s", tenant);
		return CERTA_EAUTH;
	}
	rc = core_validate(c, policies_effective(c->policies, tenant,
	    tenants_policy(c->tenants, tenant)), spec, &algo, &n, &budget, err, errlen);
	if (rc != 0)
		return rc;
	if (spec->idempotency_key[0] != '\0') {
		rc = core_idempotent(c, tenant, spec->idempotency_key, watcher, err, errlen);
		if (rc != CERTA_ENOTFOUND)
			return rc;  /* 0: a retry of an accepted program, answered */
	}
	rc = tenants_admit(c->tenants, tenant, n, budget, strlen(spec->problem), core_now_ms(), err,
	    errlen);
	if (rc != 0)
		return rc;
	core_new_id(id, sizeof id);
	p = program_new(id, tenant, spec->problem, algo, n, budget);
	if (p == NULL)
		return -ENOMEM;
	if (program_set_str(&p->model, spec->model) != 0 ||
	    program_set_str(&p->idempotency_key, spec->idempotency_key) != 0) {
		program_free(p);
		return -ENOMEM;
	}
	p->priority = spec->priority;
	p->deadline_ms = spec->deadline_unix_ms;
	if (spec->sampling != NULL) {
		p->temperature = spec->sampling->temperature;
		p->top_p = spec->sampling->top_p;
	}
	p->created_ms = core_now_ms();
	p->ready_since_ms = p->created_ms;
	p->seq = c->next_seq++;
	/* Accepted == durable (with its idempotency key, in the same transaction). */
	rc = core_persist_ex(c, p, 1, 0, 1);
	if (rc != 0) {
		snprintf(err, errlen, "cannot store the program: %s", certa_strerror(rc));
		program_free(p);
		return CERTA_ESTORE;
	}
	if (strmap_put(c->live, p->id, p, NULL) != 0 || core_order_add(c, p) != 0) {
		/* Stored but not scheduled: it will run after the next restart. */
		strmap_del(c->live, p->id);
		program_free(p);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	tenants_program_state(c->tenants, tenant, 0, PROGRAM_QUEUED);
	telemetry_submitted(c->tel, tenant);
	fair_set_weight(c->fair, tenant, tenants_weight(c->tenants, tenant));
	log_info(LOG_SCHED, "program %s accepted tenant=%s algo=%s n=%u budget=%llu", p->id,
	    tenant, algo == SCHED_ALGO_SC ? "sc" : "cot", n, (unsigned long long)budget);
	if (watcher != NULL) {
		core_send_accepted(p, watcher, 0);
		program_watch(p, watcher);
	}
	core_kick(c);
	return 0;
}

/* Reads a stored program record; CERTA_ENOTFOUND when absent or another tenant's. */
struct core_get_ctx {
	const char *id;
	Certa__V1__ProgramRecord *rec;
};

static int
core_get_txn(struct store_txn *txn, void *arg)
{
	struct core_get_ctx *g = arg;

	return store_get(txn, STORE_DB_PROGRAMS, g->id, NULL, (ProtobufCMessage **)&g->rec);
}

int
core_get(struct core *c, const char *tenant, const char *id, Certa__V1__Program **out)
{
	struct core_get_ctx g = { id, NULL };
	Certa__V1__Program *pm;
	int rc;

	if (id == NULL || id[0] == '\0')
		return CERTA_EINVAL;
	rc = store_view(c->st, core_get_txn, &g);
	if (rc != 0)
		return rc;
	if (g.rec->program == NULL || strcmp(g.rec->program->tenant, tenant) != 0) {
		certa__v1__program_record__free_unpacked(g.rec, NULL);
		return CERTA_ENOTFOUND;
	}
	/* Detach the Program from its record. */
	pm = g.rec->program;
	g.rec->program = NULL;
	certa__v1__program_record__free_unpacked(g.rec, NULL);
	*out = pm;
	return 0;
}

int
core_watch(struct core *c, const char *tenant, const char *id, struct rpc_call *watcher)
{
	struct program *p = strmap_get(c->live, id);
	Certa__V1__Program *pm;
	int rc;

	if (p != NULL && !program_is_terminal(p)) {
		if (strcmp(p->tenant, tenant) != 0)
			return CERTA_ENOTFOUND;
		return program_watch(p, watcher);
	}
	/* Ended (or not live): send its final state from the store. */
	rc = core_get(c, tenant, id, &pm);
	if (rc != 0)
		return rc;
	{
		Certa__V1__ProgramEvent ev = CERTA__V1__PROGRAM_EVENT__INIT;
		Certa__V1__Finished fin = CERTA__V1__FINISHED__INIT;
		fin.program_id = pm->id;
		fin.result = pm->result;
		fin.n_requests = pm->n_requests;
		fin.requests = pm->requests;
		ev.event_case = CERTA__V1__PROGRAM_EVENT__EVENT_FINISHED;
		ev.finished = &fin;
		ev.seq = 1;
		rpc_call_send(watcher, &ev.base);
		rpc_call_finish(watcher, GRPC_STATUS_OK, NULL);
	}
	certa__v1__program__free_unpacked(pm, NULL);
	return 0;
}

int
core_cancel(struct core *c, const char *tenant, const char *id, int *state)
{
	struct program *p = strmap_get(c->live, id);
	Certa__V1__Program *pm;
	int rc;

	if (p != NULL && strcmp(p->tenant, tenant) == 0 && !program_is_terminal(p)) {
		core_finalize(c, p, PROGRAM_CANCELLED, SCHED_REASON_CANCELLED, p->answer, 0, NULL);
		*state = PROGRAM_CANCELLED;
		return 0;
	}
	rc = core_get(c, tenant, id, &pm);
	if (rc != 0)
		return rc;
	*state = pm->state;
	certa__v1__program__free_unpacked(pm, NULL);
	return 0;
}

struct core_list_ctx {
	const char *tenant;
	int state;
	const char *before;       /* page token: ids strictly older */
	char **ids;
	size_t n, cap;
};

static int
core_list_scan(const char *key, size_t keylen, const ProtobufCMessage *msg, void *arg)
{
	struct core_list_ctx *l = arg;
	const Certa__V1__ProgramRecord *rec = (const Certa__V1__ProgramRecord *)msg;

	(void)keylen;
	if (rec->program == NULL || strcmp(rec->program->tenant, l->tenant) != 0)
		return 0;
	if (l->state != 0 && (int)rec->program->state != l->state)
		return 0;
	if (l->before != NULL && l->before[0] != '\0' && strcmp(key, l->before) >= 0)
		return 0;
	if (l->n == l->cap) {
		size_t ncap = l->cap ? l->cap * 2 : 64;
		char **ni = realloc(l->ids, ncap * sizeof *ni);
		if (ni == NULL)
			return -ENOMEM;
		l->ids = ni;
		l->cap = ncap;
	}
	l->ids[l->n] = strdup(key);
	if (l->ids[l->n] == NULL)
		return -ENOMEM;
	l->n++;
	return 0;
}

static int
core_list_txn(struct store_txn *txn, void *arg)
{
	return store_scan(txn, STORE_DB_PROGRAMS, "", NULL, core_list_scan, arg);
}

int
core_list(struct core *c, const char *tenant, int state, uint32_t page_size,
    const char *page_token, Certa__V1__ListReply *reply)
{
	struct core_list_ctx l;
	size_t i, take;
	int rc;

	memset(&l, 0, sizeof l);
	l.tenant = tenant;
	l.state = state;
	l.before = page_token;
	certa__v1__list_reply__init(reply);
	if (page_size == 0)
		page_size = 50;
	if (page_size > 1000)
		page_size = 1000;
	rc = store_view(c->st, core_list_txn, &l);
	if (rc < 0)
		goto out;
	rc = 0;
	/* Keys are time-ordered ids: newest first is the scan order reversed. */
	take = l.n < page_size ? l.n : page_size;
	reply->programs = calloc(take ? take : 1, sizeof *reply->programs);
	if (reply->programs == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	for (i = 0; i < take; i++) {
		Certa__V1__Program *pm;
		if (core_get(c, tenant, l.ids[l.n - 1 - i], &pm) != 0)
			continue;
		reply->programs[reply->n_programs++] = pm;
	}
	if (l.n > take)
		reply->next_page_token = strdup(l.ids[l.n - take]);
out:
	for (i = 0; i < l.n; i++)
		free(l.ids[i]);
	free(l.ids);
	return rc;
}

void
core_list_free(Certa__V1__ListReply *reply)
{
	size_t i;

	for (i = 0; i < reply->n_programs; i++)
		certa__v1__program__free_unpacked(reply->programs[i], NULL);
	free(reply->programs);
	if (reply->next_page_token != NULL && reply->next_page_token != protobuf_c_empty_string)
		free(reply->next_page_token);
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
