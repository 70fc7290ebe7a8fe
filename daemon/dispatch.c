/* dispatch.c — dispatch passes, steps on workers, step results, decisions, finalization. */
#include "daemon/dispatch.h"
#include "daemon/core_impl.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <event2/event.h>

#include "daemon/commit.h"
#include "daemon/deadlines.h"
#include "daemon/events.h"
#include "daemon/persist.h"
#include "daemon/policies.h"
#include "daemon/program.h"
#include "daemon/route.h"
#include "daemon/shadow.h"
#include "daemon/telemetry.h"
#include "daemon/tenants.h"
#include "scheduler/certainty.h"
#include "scheduler/fair.h"
#include "lib/array.h"
#include "lib/error.h"
#include "lib/log.h"
#include "lib/rpc.h"
#include "lib/rpc_server.h"
#include "lib/strmap.h"

/* Steps one dispatch pass sends at most, and stale decisions it makes at most (after a
 * restart every decision is stale): bounded loop turns. */
#define DISPATCH_PASS_MAX 256
#define DISPATCH_DECIDE_MAX 256

/* How often the ready queue's safety net walks the live programs (dispatch_ready_check). */
#define DISPATCH_READY_CHECK_MS 1000

/* How far ahead a walk over every live program (dispatch_ready_check, dispatch_expire) prefetches
 * the flags it tests: at 10k live most programs are in flight and skipped, and the walk is a
 * chain of cache misses, one per program, unless they overlap. */
#define DISPATCH_PREFETCH 16

/* Prefetches the line of order[i]'s scheduling flags (inflight, state, not_before_ms). */
static inline void
dispatch_prefetch(struct program *const *order, size_t i, size_t n)
{
	if (i + DISPATCH_PREFETCH < n)
		__builtin_prefetch(&order[i + DISPATCH_PREFETCH]->inflight, 0, 1);
}

/* Monotonic microseconds (the decision and pass timers). */
static int64_t
dispatch_mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* --- stepping --- */

/* Releases a program's chains on the worker that holds them. */
void
dispatch_unplace(struct core *c, struct program *p, int release)
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
dispatch_policy(const struct core *c, const struct program *p)
{
	return policies_effective(c->policies, p->tenant, tenants_policy(c->tenants, p->tenant));
}

/* Each chain's own certainty features (progress, finished, Get report them per chain): the
 * decision's evaluations of the first `evaluated` chains, the others evaluated here. */
static void
dispatch_chain_features(const struct sched_policy *pol, struct program *p,
    const struct sched_view *v, struct certainty_chain *cc, size_t evaluated)
{
	uint32_t i;

	/* the view's chains: staged sc's pending ones have none of their own */
	for (i = 0; i < v->nchains; i++) {
		struct sched_features *f = &p->chains[i].features;
		if (i >= evaluated)
			certainty_chain_eval(pol, &v->chains[i], p->problem, &cc[i]);
		f->certaindex = cc[i].certaindex;
		f->stable_tokens = cc[i].stable_tokens;
		f->grounded = cc[i].grounded;
		f->hesitation = cc[i].hesitation_count > 0 || cc[i].probe_hesitant;
		f->valid_answer = cc[i].valid;
		f->position = cc[i].position;
		f->probe_confidence = cc[i].confidence;
		f->thinking_done = p->chains[i].thinking_done;
		p->chains[i].has_features = true;
	}
}

/* dispatch_decide's block: the evaluations follow the view's chains, aligned. */
_Static_assert(sizeof(struct sched_chain) % _Alignof(struct certainty_chain) == 0,
    "struct certainty_chain after an array of struct sched_chain is misaligned");

static void dispatch_end(struct core *c, struct program *p, enum program_state to,
    enum sched_reason reason, const char *answer, int status, const char *msg, int later);

/* A block kept from one use to the next instead of an allocation and free per use (loop
 * thread only): lent when free (grown when short), else (a use inside another: none nests
 * now) a block of its own. */
struct dispatch_block {
	void *buf;
	size_t cap;    /* bytes */
	bool lent;
};

/* dispatch_decide's view (a view's chains and their evaluations). */
static struct dispatch_block dispatch_view_kept;

/* A zeroed block of size bytes; NULL without memory. */
static void *
dispatch_block_lend(struct dispatch_block *b, size_t size)
{
	if (size == 0)
		size = 1;
	if (b->lent)
		return calloc(1, size);
	if (b->cap < size) {
		size_t cap = size + size / 4 + 64;
		void *nb = malloc(cap);
		if (nb == NULL)
			return NULL;
		free(b->buf);
		b->buf = nb;
		b->cap = cap;
	}
	b->lent = true;
	memset(b->buf, 0, size);
	return b->buf;
}

static void
dispatch_block_return(struct dispatch_block *b, void *block)
{
	if (block == b->buf && b->lent)
		b->lent = false;
	else
		free(block);
}

/* Runs the scheduler on a program and acts on its decision (an ending goes to the group
 * commit when later is set).  Returns 1 if it stopped. */
static int
dispatch_decide(struct core *c, struct program *p, struct sched_decision *d, int later)
{
	struct sched_chain *chains;
	struct certainty_chain *cc;
	const struct sched_policy *pol;
	struct sched_policy shp;
	struct sched_view v;
	size_t evaluated;

again:
	/* The view's chains and their evaluations in one block. */
	chains = dispatch_block_lend(&dispatch_view_kept, p->n * (sizeof *chains + sizeof *cc));
	pol = dispatch_policy(c, p);
	if (chains == NULL)
		return 0;
	cc = (struct certainty_chain *)(void *)(chains + p->n);
	program_view(p, chains, core_now_ms(), &v);
	v.state = &p->pstate;
	/* A shadow runs to its natural end; a program's unpromising bounds count in its model's
	 * learned chain length (daemon/shadow.h). */
	pol = shadow_decision_policy(c, p, pol, &shp);
	if (p->shadow_of == NULL) {
		/* The risk controller's shift of (model, algorithm). */
		v.threshold_shift = shadow_shift(c, p);
	}
	/* The tenant's policy as of now: a policy change applies from the next step. */
	evaluated = sched_decide_chains(pol, &v, d, cc);
	dispatch_chain_features(pol, p, &v, cc, evaluated);
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
	if (d->launch && !d->stop && p->launched > 0 && p->launched < p->n) {
		/* Staged sc: the started chains can no longer decide the vote; the pending ones
		 * join from the prompt with this decision's step (their slots are held on the
		 * worker since placement).  Stored with the step's commit. */
		log_info(LOG_SCHED, "program %s: staged sc launches chains %u-%u (the first %u "
		    "cannot decide the vote)", p->id, p->launched, p->n - 1, p->launched);
		p->launched = p->n;
	}
	if (route_decide(c, p, &v, d) > 0) {
		/* Expert routing forked, switched or dropped chains: decide on the new ones. */
		dispatch_block_return(&dispatch_view_kept, chains);
		goto again;
	}
	dispatch_block_return(&dispatch_view_kept, chains);
	if (!d->stop) {
		p->decided = true;
		p->decided_steps = p->steps;
		p->decided_gen = policies_generation(c->policies);
		p->next_step_tokens = d->step_tokens;
		p->decided_used = program_tokens(p);
		return 0;
	}
	p->low_confidence = d->low_confidence;
	dispatch_end(c, p, PROGRAM_FINISHED, d->reason, p->answer, 0, NULL, later);
	return 1;
}

/* One program's step from its send to its completion; it owns the items it sent (the pool
 * sends them with the other programs' of the pass, at the pass's end). */
struct dispatch_step {
	struct core *c;
	char *id;
	int64_t sent_us;
	uint32_t *chain_idx;  /* chains in this batch */
	size_t n;
	Certa__V1__StepItem *items;
	Certa__V1__StepItem **ptrs;
	char (*ids)[192];
	Certa__V1__SamplingParams sp;
	Certa__V1__ProbeSpec probe;
	size_t bare;          /* items sent without prompt (continuing the worker's state) */
};

static void
dispatch_step_free(struct dispatch_step *s)
{
	free(s);   /* one block with its arrays and id (dispatch_step_new) */
}

/* A step for p's chains in one allocation: the struct, then its items, their pointers, their
 * request ids, the chain indexes and the program id (each part's alignment holds: the struct
 * and the items are multiples of 8 bytes, the ids of 8 * 24). */
static struct dispatch_step *
dispatch_step_new(const struct program *p)
{
	size_t n = p->n, idlen = strlen(p->id) + 1;
	struct dispatch_step *s;
	char *at;

	/* Only the struct is zeroed: dispatch_send_step writes every item, pointer, id and index
	 * it uses (zeroing ~300 bytes per chain was a visible share of the loop's allocations). */
	s = malloc(sizeof *s + n * (sizeof *s->items + sizeof *s->ptrs + sizeof *s->ids +
	    sizeof *s->chain_idx) + idlen);
	if (s == NULL)
		return NULL;
	memset(s, 0, sizeof *s);
	at = (char *)(s + 1);
	s->items = (Certa__V1__StepItem *)(void *)at;
	at += n * sizeof *s->items;
	s->ptrs = (Certa__V1__StepItem **)(void *)at;
	at += n * sizeof *s->ptrs;
	s->ids = (char (*)[192])(void *)at;
	at += n * sizeof *s->ids;
	s->chain_idx = (uint32_t *)(void *)at;
	at += n * sizeof *s->chain_idx;
	s->id = at;
	memcpy(s->id, p->id, idlen);
	return s;
}

_Static_assert(sizeof(struct dispatch_step) % _Alignof(Certa__V1__StepItem) == 0 &&
    sizeof(Certa__V1__StepItem) % _Alignof(Certa__V1__StepItem *) == 0 &&
    sizeof(char[192]) % _Alignof(uint32_t) == 0, "dispatch_step_new's layout is misaligned");

/* A step failed: decide whether the program fails or retries elsewhere. */
static void
dispatch_step_failed(struct core *c, struct program *p, struct pool_worker *w,
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
		dispatch_unplace(c, p, 1);
		dispatch_finalize(c, p, PROGRAM_FAILED, SCHED_REASON_FAILED, p->answer, status, details);
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
		dispatch_unplace(c, p, 1);
		snprintf(msg, sizeof msg, "gave up after %u failed steps; last: %s: %s",
		    p->attempts, rpc_status_name(status), details);
		dispatch_finalize(c, p, PROGRAM_FAILED, SCHED_REASON_FAILED, p->answer,
		    GRPC_STATUS_UNAVAILABLE, msg);
		return;
	}
	if (pool_worker_state(w) != POOL_UP) {
		/* Worker lost: the chains move to another worker (resumed from their text). */
		dispatch_unplace(c, p, 0);
		if (p->state == PROGRAM_RUNNING)
			core_set_state(c, p, PROGRAM_QUEUED);
	}
	p->not_before_ms = core_now_ms() + (int64_t)c->opt.retry_backoff_ms * p->attempts;
	dispatch_ready(c, p);   /* asleep until then */
}

/*
 * The worker holds no state for chains sent without their prompt (worker.proto "Held state":
 * it restarted before certad's health check saw it, or lost them): nothing ran and nothing is
 * charged, so the program is stepped again at once with prompt and text (resend_text), not
 * counted as a failure.  Bounded: a step that carried every prompt cannot miss state, so a
 * worker that says so anyway breaks the contract and the step fails as on a worker failure
 * (max_attempts, backoff), the program placed again from its text.
 */
static void
dispatch_state_missing(struct core *c, struct program *p, struct pool_worker *w,
    const struct dispatch_step *s, const char *details)
{
	if (s->bare == 0) {
		dispatch_unplace(c, p, 1);
		if (p->state == PROGRAM_RUNNING)
			core_set_state(c, p, PROGRAM_QUEUED);
		dispatch_step_failed(c, p, w, GRPC_STATUS_INTERNAL, "worker reports state missing "
		    "for chains sent with their prompt and text");
		return;
	}
	log_info(LOG_DISPATCH, "program %s: worker %s holds no state for its chains (%s): "
	    "resending prompt and text", p->id, pool_worker_addr(w), details);
	p->resend_text = true;
	dispatch_ready(c, p);   /* stepped again at once, with them */
}

/* Applies one step's results to the program's chains; returns 0 or CERTA_EINVAL when the
 * reply does not match the batch. */
static int
dispatch_apply(struct program *p, const struct dispatch_step *s,
    Certa__V1__StepResult *const *results, size_t nres)
{
	size_t i;
	char want[256];

	if (nres != s->n)
		return CERTA_EINVAL;
	for (i = 0; i < s->n; i++) {
		const Certa__V1__StepResult *res = results[i];
		struct chain *ch = &p->chains[s->chain_idx[i]];
		program_fmt_key(want, sizeof want, p->id, s->chain_idx[i], 0);
		if (strcmp(res->request_id, want) != 0 || res->total_tokens < ch->tokens)
			return CERTA_EINVAL;
	}
	for (i = 0; i < s->n; i++) {
		const Certa__V1__StepResult *res = results[i];
		struct chain *ch = &p->chains[s->chain_idx[i]];
		struct program_step_stats st = {
			/* probe.confidence is the same mean and older workers send it too. */
			.mean_prob = res->probe ? res->probe->confidence : -1,
			.min_prob = res->probe_min_prob,
			.entropy = res->chain_mean_entropy, .experts = res->experts_per_token,
		};
		if (program_chain_append(ch, res->text, res->total_tokens,
		    res->probe ? res->probe->answer : "", res->probe ? res->probe->tokens : 0,
		    &st, res->finished, res->final_answer, res->thinking_done) != 0)
			return -ENOMEM;
	}
	return 0;
}

static void
dispatch_on_step(void *arg, struct pool_worker *w, grpc_status_code status, const char *details,
    Certa__V1__StepResult *const *results, size_t nres)
{
	struct dispatch_step *s = arg;
	struct core *c = s->c;
	struct program *p = strmap_get(c->live, s->id);
	struct sched_decision d;
	struct timespec now;
	int rc;

	int64_t t0;

	clock_gettime(CLOCK_MONOTONIC, &now);
	t0 = (int64_t)now.tv_sec * 1000000 + now.tv_nsec / 1000;
	telemetry_step(c->tel, pool_worker_addr(w), (t0 - s->sent_us) / 1e6, (int)status);
	if (p == NULL)
		goto out;
	p->inflight = false;
	if (program_is_terminal(p)) {
		/* Cancelled while the step ran: free the worker's state now (an ending still to
		 * be written keeps the program until the retry writes it). */
		dispatch_unplace(c, p, 1);
		if (!p->persist_pending)
			core_forget(c, p);
		goto out;
	}
	if (status == GRPC_STATUS_FAILED_PRECONDITION && nres > 0 && results[0]->state_missing) {
		dispatch_state_missing(c, p, w, s, details ? details : "");
		goto out;
	}
	if (status != GRPC_STATUS_OK) {
		dispatch_step_failed(c, p, w, status, details ? details : "");
		goto out;
	}
	rc = dispatch_apply(p, s, results, nres);
	if (rc != 0) {
		/* Chains appended before the failure changed the tokens without a step: the
		 * decision kept for the retry must see them (decided_used). */
		p->decided_used = program_tokens(p);
		dispatch_step_failed(c, p, w, GRPC_STATUS_INTERNAL, "worker reply does not match the batch");
		goto out;
	}
	p->attempts = 0;
	p->resend_text = false;
	p->steps++;
	c->steps_total++;
	p->ready_since_ms = core_now_ms();
	{
		/* Tokens served (decode + probe) count against quotas and fair share. */
		uint64_t served = 0;
		size_t i;
		for (i = 0; i < nres; i++)
			served += results[i]->new_tokens +
			    (results[i]->probe ? results[i]->probe->tokens : 0);
		/* A shadow's tokens go to the system account (its tenant), not to any tenant's
		 * quota or fair share. */
		if (p->shadow_of == NULL) {
			tenants_charge(c->tenants, p->tenant, served, p->ready_since_ms);
			fair_charge(c->fair, p->tenant, served);
			fair_note_served(c->fair, p->tenant, served, p->ready_since_ms);
		}
		{
			uint64_t probe = 0;
			for (i = 0; i < nres; i++)
				probe += results[i]->probe ? results[i]->probe->tokens : 0;
			telemetry_tokens(c->tel, p->tenant, served - probe, probe);
		}
	}
	rc = dispatch_decide(c, p, &d, 1);
	telemetry_decision(c->tel, (dispatch_mono_us() - t0) / 1e6);
	if (rc)
		goto out;
	/* Commit the step (with the others of this loop turn) before telling anyone about it;
	 * a failed commit holds the program (no step, no event) until the retry writes it. */
	commit_later(c, p, 0);
out:
	dispatch_step_free(s);
	if (c->draining && pool_inflight(c->pool) == 0 && c->drain_done != NULL) {
		void (*done)(void *) = c->drain_done;
		c->drain_done = NULL;
		commit_sync(c);
		done(c->drain_arg);
		return;
	}
	core_kick(c);
}

/* Builds one gang step (all unfinished chains of a program) for worker w and adds it to the
 * worker's Step call of this pass (sent with the other programs' at the pass's end). */
static int
dispatch_send_step(struct core *c, struct program *p, struct pool_worker *w, uint32_t tokens)
{
	struct dispatch_step *s;
	int moved = p->worker == NULL || strcmp(p->worker, pool_worker_addr(w)) != 0;
	/* Prompt and text travel when the chains are placed here (moved; a recovered program
	 * has no worker: certad cannot know what workers hold), when the worker must rebuild
	 * them (resend_text), and on a chain's first step; a worker without prompt_once gets
	 * the prompt on every step (worker.proto "Held state"). */
	bool full = moved || p->resend_text;
	bool once = pool_worker_prompt_once(w);
	uint32_t i;
	size_t n = 0;
	int rc = -ENOMEM;

	s = dispatch_step_new(p);
	if (s == NULL)
		return -ENOMEM;
	s->c = c;
	s->sent_us = dispatch_mono_us();
	certa__v1__sampling_params__init(&s->sp);
	certa__v1__probe_spec__init(&s->probe);
	s->sp.temperature = p->temperature;
	s->sp.top_p = p->top_p;
	for (i = 0; i < program_launched(p); i++) {
		struct chain *ch = &p->chains[i];
		Certa__V1__StepItem *it = &s->items[n];
		if (ch->finished)
			continue;
		certa__v1__step_item__init(it);
		program_fmt_key(s->ids[n], sizeof s->ids[n], p->id, i, 0);
		it->request_id = s->ids[n];
		if (!once || full || ch->tokens == 0) {
			it->prompt = p->problem;
		} else {
			it->prompt = (char *)"";
			s->bare++;
		}
		/* The text so far travels only when the chain lands on a new worker, or once after
		 * its MoE top-p rose (route.h: the worker rebuilds the sequence with the new p) or
		 * the worker said it holds no state for it. */
		it->resume_text = full && ch->text != NULL ? ch->text : (char *)"";
		it->resume_tokens = ch->tokens;
		it->sample_index = i;
		it->max_new_tokens = tokens;
		it->seed = p->seed + i;
		it->model = p->model;
		it->sampling = &s->sp;
		it->moe_top_p = p->moe_top_p;
		it->probe = &s->probe;
		s->ptrs[n] = it;
		s->chain_idx[n] = i;
		n++;
	}
	s->n = n;
	/* The program's strings stay as they are until the pass ends and the call is packed. */
	rc = pool_step_add(c->pool, w, s->ptrs, n, dispatch_on_step, s);
	if (rc != 0)
		goto out;
	s = NULL;
	if (moved) {
		dispatch_unplace(c, p, 1);
		p->worker = strdup(pool_worker_addr(w));
		pool_hold(w, (int)p->n);
	}
	p->inflight = true;
	if (p->state == PROGRAM_QUEUED)
		core_set_state(c, p, PROGRAM_RUNNING);
out:
	if (s != NULL)
		dispatch_step_free(s);
	return rc;
}

/* --- the ready queue --- */

/* The queue a program waits in: shadows after every tenant's work. */
static struct fair *
dispatch_queue(struct core *c, const struct program *p)
{
	return p->shadow_of != NULL ? c->shadow_fair : c->fair;
}

/* Nothing of it in flight, unwritten or ended: it can step (now, or after its backoff). */
static int
dispatch_can_step(const struct program *p)
{
	return !p->inflight && !p->persist_pending && !p->commit_queued && !program_is_terminal(p);
}

/* Its last decision holds (nothing it depends on changed): no need to decide again. */
static int
dispatch_decision_fresh(const struct core *c, const struct program *p, int64_t now)
{
	return p->decided && p->decided_steps == p->steps &&
	    p->decided_gen == policies_generation(c->policies) &&
	    (p->deadline_ms == 0 || now < p->deadline_ms);
}

/* A program's key in its queue: priority (its own, else its tenant's), deadline, remaining
 * work, readiness and submission order; what its next step costs.  A shadow has no deadline
 * and no priority of its tenant: shadows go oldest first. */
static void
dispatch_key(struct core *c, struct program *p, struct fair_item *it)
{
	uint64_t used = p->decided ? p->decided_used : program_tokens(p);

	memset(it, 0, sizeof *it);
	it->tenant = p->tenant_key;
	it->ready_since_ms = p->ready_since_ms;
	it->cost = (uint64_t)p->next_step_tokens * program_launched(p);
	it->seq = p->seq;
	if (p->shadow_of != NULL) {
		it->priority = p->priority;
		return;
	}
	it->priority = p->priority ? p->priority : tenants_priority(c->tenants, p->tenant);
	it->deadline_ms = p->deadline_ms;
	it->est_remaining = p->budget > used ? p->budget - used : 0;
}

/* Programs backing off after a failed step sleep outside the queue until not_before_ms. */
static void
dispatch_sleep(struct core *c, struct program *p)
{
	if (p->asleep)
		return;
	if (ARRAY_GROW(c->sleeping, c->sleeping_cap, c->nsleeping + 1) != 0)
		return;   /* dispatch_ready_check finds it */
	p->asleep = true;
	p->sleep_ix = c->nsleeping;
	c->sleeping[c->nsleeping++] = p;
	if (c->sleep_next_ms == 0 || p->not_before_ms < c->sleep_next_ms)
		c->sleep_next_ms = p->not_before_ms;
}

static void
dispatch_wake(struct core *c, struct program *p)
{
	size_t i = p->sleep_ix;

	if (!p->asleep)
		return;
	p->asleep = false;
	if (i < c->nsleeping && c->sleeping[i] == p) {
		c->sleeping[i] = c->sleeping[--c->nsleeping];
		c->sleeping[i]->sleep_ix = i;
	}
}

void
dispatch_unready(struct core *c, struct program *p)
{
	fair_dequeue(dispatch_queue(c, p), &p->ready);
	dispatch_wake(c, p);
}

void
dispatch_ready(struct core *c, struct program *p)
{
	(void)deadlines_add(c, p);   /* -ENOMEM: the check puts it in */
	dispatch_unready(c, p);
	if (!dispatch_can_step(p))
		return;
	if (p->not_before_ms > core_now_ms()) {
		dispatch_sleep(c, p);
		return;
	}
	dispatch_key(c, p, &p->ready.item);
	(void)fair_enqueue(dispatch_queue(c, p), &p->ready);   /* -ENOMEM: the check finds it */
}

/* Wakes the sleepers whose backoff is over (a walk over the sleepers only when one is due). */
static void
dispatch_wake_due(struct core *c, int64_t now)
{
	int64_t next = 0;
	size_t i = 0;

	if (c->sleep_next_ms == 0 || now < c->sleep_next_ms)
		return;
	while (i < c->nsleeping) {
		struct program *p = c->sleeping[i];
		if (p->not_before_ms <= now) {
			dispatch_ready(c, p);   /* takes it out of sleeping: i now holds another */
			continue;
		}
		if (next == 0 || p->not_before_ms < next)
			next = p->not_before_ms;
		i++;
	}
	c->sleep_next_ms = next;
}

/* The queue's safety net and its key refresh, at most once a second: every live program
 * that can step is queued (or asleep), with its key as of now (a tenant's priority or a
 * policy may have changed).  One found out of the queue is a missed dispatch_ready: it is
 * counted (c->ready_missed; the tests expect none) and queued. */
static void
dispatch_ready_check(struct core *c, int64_t now)
{
	uint64_t missed = 0;
	size_t i;

	if (c->ready_check_ms != 0 && now >= c->ready_check_ms &&
	    now - c->ready_check_ms < DISPATCH_READY_CHECK_MS)
		return;
	c->ready_check_ms = now;
	for (i = 0; i < c->norder; i++) {
		struct program *p = c->order[i];
		struct fair_item k;

		dispatch_prefetch(c->order, i, c->norder);
		(void)deadlines_add(c, p);
		if (!dispatch_can_step(p)) {
			dispatch_unready(c, p);
			continue;
		}
		if (p->asleep)
			continue;
		if (!fair_entry_queued(&p->ready)) {
			missed++;
			dispatch_ready(c, p);
			continue;
		}
		dispatch_key(c, p, &k);
		if (k.priority != p->ready.item.priority || k.deadline_ms != p->ready.item.deadline_ms ||
		    k.est_remaining != p->ready.item.est_remaining || k.cost != p->ready.item.cost ||
		    k.ready_since_ms != p->ready.item.ready_since_ms)
			dispatch_ready(c, p);
	}
	if (missed > 0) {
		c->ready_missed += missed;
		log_warn(LOG_DISPATCH, "%llu programs that could step were not in the ready queue "
		    "(queued now)", (unsigned long long)missed);
	}
}

uint64_t
dispatch_ready_verify(struct core *c)
{
	c->ready_check_ms = 0;
	dispatch_ready_check(c, core_now_ms());
	return c->ready_missed;
}

/* dispatch_held's argument. */
struct dispatch_held_arg {
	struct core *c;
	int64_t now;
};

/* A tenant at its tokens_per_minute limit is held back (not failed) this pass. */
static int
dispatch_held(void *arg, const char *tenant)
{
	const struct dispatch_held_arg *h = arg;

	return tenants_throttle(h->c->tenants, tenant, h->now) > 0;
}

/* The programs a pass took from the queue and gives back at its end (no worker for them,
 * a decision over the pass's bound, a failed send): kept from pass to pass. */
static struct program **dispatch_aside;
static size_t dispatch_naside, dispatch_aside_cap;

/* Puts p aside until the pass ends; without memory it is queued back at once (it may come
 * again in this pass: the caller ends the pass) and -ENOMEM returned. */
static int
dispatch_aside_add(struct core *c, struct program *p)
{
	if (ARRAY_GROW(dispatch_aside, dispatch_aside_cap, dispatch_naside + 1) != 0) {
		dispatch_ready(c, p);
		return -ENOMEM;
	}
	dispatch_aside[dispatch_naside++] = p;
	return 0;
}

/* Ends a pass: closes the queues' passes and gives back what went aside. */
static void
dispatch_pass_end(struct core *c)
{
	size_t i;

	fair_pass_end(c->fair);
	fair_pass_end(c->shadow_fair);
	for (i = 0; i < dispatch_naside; i++)
		dispatch_ready(c, dispatch_aside[i]);
	dispatch_naside = 0;
}

/* The next program of a pass: tenant work in fair order, then shadows (*shadow set from
 * then on); NULL at the end. */
static struct program *
dispatch_next(struct core *c, int64_t now, int *shadow)
{
	struct fair_entry *e;

	if (!*shadow) {
		if ((e = fair_pass_next(c->fair)) != NULL)
			return (struct program *)((char *)e - offsetof(struct program, ready));
		fair_pass_end(c->fair);
		*shadow = 1;
		if (fair_pass_start(c->shadow_fair, now, 0, NULL, NULL) != 0)
			return NULL;
	}
	if ((e = fair_pass_next(c->shadow_fair)) != NULL)
		return (struct program *)((char *)e - offsetof(struct program, ready));
	return NULL;
}

/* Takes the next program of a pass that may step now, its decision fresh (deciding, at most
 * *decide_left times, those that are stale: a decision may end one), charged to the pass's
 * simulated counters; NULL at the end.  Programs it cannot take now go aside (*more set when
 * one waits for the decision bound); -ENOMEM in *err when the aside list cannot grow. */
static struct program *
dispatch_take(struct core *c, int64_t now, int *shadow, size_t *decide_left, int *more,
    int *err)
{
	struct program *p;
	struct sched_decision d;

	while ((p = dispatch_next(c, now, shadow)) != NULL) {
		if (!dispatch_can_step(p))
			continue;   /* queued again when it can */
		if (p->not_before_ms <= now && !dispatch_decision_fresh(c, p, now)) {
			if (*decide_left == 0) {
				*more = 1;    /* decided in a later pass */
			} else {
				(*decide_left)--;
				if (dispatch_decide(c, p, &d, 0))
					continue;   /* a deadline or budget ended it */
			}
		}
		if (p->not_before_ms > now || !dispatch_decision_fresh(c, p, now)) {
			if ((*err = dispatch_aside_add(c, p)) != 0)
				return NULL;
			continue;
		}
		fair_pass_charge(dispatch_queue(c, p), &p->ready,
		    (uint64_t)p->next_step_tokens * program_launched(p));
		return p;
	}
	return NULL;
}

/* Ends the programs whose deadline passed wherever they wait (a program's turn may be far
 * off when many are ready): they come first in the deadline heap (daemon/deadlines.h), so a
 * pass with none due looks at one program.  One that cannot be decided now (a step in flight,
 * a write not yet committed) leaves the heap until dispatch_ready puts it back, due, when it
 * can. */
static void
dispatch_expire(struct core *c, int64_t now)
{
	struct program *p;
	struct sched_decision d;

	while ((p = deadlines_first(c)) != NULL && now >= p->deadline_ms) {
		deadlines_del(c, p);
		if (!dispatch_can_step(p))
			continue;
		/* Past its deadline the decision ends it (SCHED_REASON_DEADLINE). */
		(void)dispatch_decide(c, p, &d, 0);
	}
}

/* One dispatch pass: ready programs in fair order, started while workers have free step
 * slots. */
void
dispatch_run(struct core *c)
{
	int64_t now = core_now_ms(), t0;
	struct dispatch_held_arg h = { c, now };
	size_t sent = 0, decide_left = DISPATCH_DECIDE_MAX;
	int more = 0, shadow = 0, err = 0;

	if (c->draining || c->norder == 0)
		return;
	t0 = dispatch_mono_us();
	dispatch_ready_check(c, now);
	dispatch_wake_due(c, now);
	/* Deadlines end programs wherever they wait (not only when their turn comes). */
	dispatch_expire(c, now);
	if (!pool_has_slots(c->pool) ||
	    fair_pass_start(c->fair, now, c->opt.starvation_ms, dispatch_held, &h) != 0)
		goto out;
	/* Tenant work in fair order, then shadows, only as many as workers take, at most
	 * DISPATCH_PASS_MAX steps per pass: the rest goes in the next turn, after replies, RPCs
	 * and probes. */
	while (pool_has_slots(c->pool)) {
		struct program *p = dispatch_take(c, now, &shadow, &decide_left, &more, &err);
		struct pool_worker *w;

		if (p == NULL)
			break;
		w = pool_pick(c->pool, p->worker, p->n, p->model);
		if (w == NULL || dispatch_send_step(c, p, w, p->next_step_tokens) != 0) {
			if (w != NULL)
				p->not_before_ms = now + c->opt.retry_backoff_ms;
			if (dispatch_aside_add(c, p) != 0)
				break;
			continue;
		}
		if (++sent >= DISPATCH_PASS_MAX) {
			more = 1;
			break;
		}
	}
	if (err != 0)
		more = 1;
out:
	dispatch_pass_end(c);
	/* One Step call per worker carries every program placed on it in this pass. */
	pool_step_flush(c->pool);
	if (more) {
		/* The rest on the next loop turn, after a poll (a zero-delay timer; an active
		 * event would run in this same turn). */
		static const struct timeval zero = { 0, 0 };
		event_add(c->kick, &zero);
	}
	telemetry_pass(c->tel, (dispatch_mono_us() - t0) / 1e6);
}

int
dispatch_order(struct core *c, const char **ids, size_t max, size_t *n)
{
	int64_t now = core_now_ms();
	struct dispatch_held_arg h = { c, now };
	struct program *p;
	size_t i, decide_left = SIZE_MAX;
	int rc = 0, more = 0, shadow = 0;

	*n = 0;
	/* Every stale decision first (a pass would make them as it goes; here every queued
	 * program's key is then as of its decision). */
	for (i = 0; i < c->norder; i++) {
		struct sched_decision d;
		p = c->order[i];
		if (fair_entry_queued(&p->ready) && !dispatch_decision_fresh(c, p, now)) {
			if (dispatch_decide(c, p, &d, 0)) {
				if (i >= c->norder || c->order[i] != p)
					i--;  /* dispatch_finalize removed it from order */
				continue;
			}
			dispatch_ready(c, p);
		}
	}
	dispatch_wake_due(c, now);
	rc = fair_pass_start(c->fair, now, c->opt.starvation_ms, dispatch_held, &h);
	/* The order a pass would take, without workers: everything taken goes aside, and the
	 * pass's end gives it back. */
	while (rc == 0 && (p = dispatch_take(c, now, &shadow, &decide_left, &more, &rc)) != NULL) {
		if (*n < max)
			ids[(*n)++] = p->id;
		rc = dispatch_aside_add(c, p);
	}
	dispatch_pass_end(c);
	return rc;
}

/* Ends a program: terminal state, result, history, events, worker release; the write now,
 * or with the loop turn's group commit (later). */
static void
dispatch_end(struct core *c, struct program *p, enum program_state to,
    enum sched_reason reason, const char *answer, int status, const char *msg, int later)
{
	core_set_state(c, p, to);
	p->reason = reason;
	p->finished_ms = core_now_ms();
	if (p->shadow_of == NULL &&
	    (reason == SCHED_REASON_CERTAIN || reason == SCHED_REASON_UNPROMISING)) {
		/* Estimate: each unfinished chain would have run to the policy's expected length. */
		uint64_t exp = dispatch_policy(c, p)->expected_tokens, saved = 0;
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
	/* Cancelled before certainty: its answer (if any) is a guess, as at a deadline. */
	if (to == PROGRAM_CANCELLED)
		p->low_confidence = true;
	/* A failed commit holds the ending (no finished event, the program stays live) until
	 * the retry writes it. */
	if (later)
		commit_later(c, p, 1);
	else if (persist_or_wait(c, p, 1) == 0)
		dispatch_persisted(c, p, 1);
}

void
dispatch_finalize(struct core *c, struct program *p, enum program_state to,
    enum sched_reason reason, const char *answer, int status, const char *msg)
{
	dispatch_end(c, p, to, reason, answer, status, msg, 0);
}

void
dispatch_persisted(struct core *c, struct program *p, int final)
{
	enum program_state to = p->state;
	enum sched_reason reason = p->reason;

	if (!final) {
		events_progress(p);
		dispatch_ready(c, p);   /* its next step */
		return;
	}
	if (p->shadow_of != NULL) {
		/* Nobody watches a shadow: its outcome goes to the risk controller only. */
		shadow_done(c, p);
		if (!p->inflight) {
			dispatch_unplace(c, p, 1);
			core_forget(c, p);
		}
		return;
	}
	c->finished_total++;
	route_finished(c, p);
	telemetry_finished(c->tel, p->tenant, sched_reason_name(reason), p->certaindex, p->steps);
	if (p->launched > 0)
		telemetry_staged(c->tel, p->launched >= p->n);
	log_info(LOG_SCHED, "program %s %s reason=%s answer=\"%s\" tokens=%llu steps=%llu",
	    p->id, program_state_name(to), sched_reason_name(reason), p->answer,
	    (unsigned long long)program_tokens(p), (unsigned long long)p->steps);
	events_finished(p, NULL);
	/* The client has its answer: maybe run on as a shadow (daemon/shadow.h). */
	shadow_spawn(c, p);
	if (!p->inflight) {
		dispatch_unplace(c, p, 1);
		core_forget(c, p);
	}
}
