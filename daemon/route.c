/* route.c — expert routing in certad: configuration, history index, submit and escalation. */
#include "daemon/route.h"
#include "daemon/core_impl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/dispatch.h"
#include "daemon/policies.h"
#include "daemon/pool.h"
#include "daemon/program.h"
#include "daemon/submit.h"
#include "daemon/tenants.h"
#include "scheduler/knn.h"
#include "lib/array.h"
#include "lib/error.h"
#include "lib/log.h"
#include "store/store.h"

/* Largest knn.k (router_policy_validate bounds it to 64). */
#define ROUTE_MAX_HITS 64

struct route {
	struct route_config cfg;   /* rules owned */
	struct knn *knn;
	struct router_outcome *out; /* indexed by the documents' tags */
	size_t nout, cap;
};

/* --- configuration --- */

/* Applies one `NAME MODEL [COST] [moe]` pool line on top of p. */
static int
route_config_pool(struct router_policy *p, const char *line, char *err, size_t errlen)
{
	char name[ROUTER_NAME_MAX + 1], model[ROUTER_MODEL_MAX], costw[64], flag[8], extra[2];
	char text[512];
	double cost = 1;
	char *end = NULL;
	bool moe = false;
	int k;

	k = sscanf(line, "%32s %127s %63s %7s %1s", name, model, costw, flag, extra);
	if (k >= 3 && strcmp(costw, "moe") == 0 && k == 3) {
		moe = true;        /* NAME MODEL moe */
	} else if (k >= 3) {
		cost = strtod(costw, &end);
		if (end == costw || *end != '\0')
			k = 0;
		if (k == 4 && strcmp(flag, "moe") == 0)
			moe = true;
		else if (k == 4)
			k = 0;
	}
	if (k < 2 || k > 4) {
		snprintf(err, errlen, "route.pool '%.80s': want NAME MODEL [COST] [moe]", line);
		return CERTA_ECONFIG;
	}
	if (strlen(name) >= ROUTER_NAME_MAX) {
		snprintf(err, errlen, "route.pool '%.80s': name longer than %d bytes", line,
		    ROUTER_NAME_MAX - 1);
		return CERTA_ECONFIG;
	}
	/* The policy text's own `pool.NAME = MODEL COST [moe]` line does the rest (override by
	 * name, bounds). */
	snprintf(text, sizeof text, "pool.%s = %s %.17g%s\n", name, model, cost,
	    moe ? " moe" : "");
	return router_policy_parse(text, strlen(text), "route.pool", p, err, errlen);
}

/* Parses one `NAME [pools=P1,P2] [no-hints] [no-escalation]` tenant line. */
static int
route_config_rule(const struct router_policy *p, const char *line, struct route_rule *r,
    char *err, size_t errlen)
{
	char buf[512], *save = NULL, *w;
	bool first = true;

	memset(r, 0, sizeof *r);
	snprintf(buf, sizeof buf, "%s", line);
	for (w = strtok_r(buf, " \t", &save); w != NULL; w = strtok_r(NULL, " \t", &save)) {
		if (first) {
			if (strlen(w) >= sizeof r->tenant) {
				snprintf(err, errlen, "route.tenant '%.80s': tenant name too long",
				    line);
				return CERTA_ECONFIG;
			}
			snprintf(r->tenant, sizeof r->tenant, "%s", w);
			first = false;
		} else if (strcmp(w, "no-hints") == 0) {
			r->t.no_hints = true;
		} else if (strcmp(w, "no-escalation") == 0) {
			r->t.no_escalation = true;
		} else if (strncmp(w, "pools=", 6) == 0) {
			char *s2 = NULL, *pn;
			for (pn = strtok_r(w + 6, ",", &s2); pn != NULL;
			    pn = strtok_r(NULL, ",", &s2)) {
				int i = router_pool_find(p, pn);
				if (i < 0) {
					snprintf(err, errlen, "route.tenant '%.80s': no pool '%.40s'",
					    line, pn);
					return CERTA_ECONFIG;
				}
				r->t.pool_mask |= 1u << i;
			}
			if (r->t.pool_mask == 0) {
				snprintf(err, errlen, "route.tenant '%.80s': pools= lists no pool",
				    line);
				return CERTA_ECONFIG;
			}
		} else {
			snprintf(err, errlen, "route.tenant '%.80s': unknown word '%.40s' (pools=, "
			    "no-hints, no-escalation)", line, w);
			return CERTA_ECONFIG;
		}
	}
	if (first) {
		snprintf(err, errlen, "route.tenant: empty line; want NAME [pools=P1,P2] "
		    "[no-hints] [no-escalation]");
		return CERTA_ECONFIG;
	}
	return 0;
}

int
route_config_build(const char *policy_text, size_t len, const char *name,
    const char *const *pools, size_t npools, const char *const *tenants, size_t ntenants,
    struct route_config *cfg, char *err, size_t errlen)
{
	struct router_policy p;
	struct route_rule *rules = NULL;
	size_t i, j;
	int rc;

	router_policy_default(&p);
	if (policy_text != NULL) {
		rc = router_policy_parse(policy_text, len, name, &p, err, errlen);
		if (rc != 0)
			return rc;
	}
	for (i = 0; i < npools; i++) {
		rc = route_config_pool(&p, pools[i], err, errlen);
		if (rc != 0)
			return rc;
	}
	if (ntenants > 0) {
		rules = calloc(ntenants, sizeof *rules);
		if (rules == NULL)
			return -ENOMEM;
	}
	for (i = 0; i < ntenants; i++) {
		rc = route_config_rule(&p, tenants[i], &rules[i], err, errlen);
		for (j = 0; rc == 0 && j < i; j++)
			if (strcmp(rules[j].tenant, rules[i].tenant) == 0) {
				snprintf(err, errlen, "route.tenant: tenant '%s' listed twice",
				    rules[i].tenant);
				rc = CERTA_ECONFIG;
			}
		if (rc != 0) {
			free(rules);
			return rc;
		}
	}
	memset(cfg, 0, sizeof *cfg);
	cfg->enabled = policy_text != NULL || npools > 0;
	cfg->policy = p;
	cfg->rules = rules;
	cfg->nrules = ntenants;
	return 0;
}

void
route_config_free(struct route_config *cfg)
{
	if (cfg == NULL)
		return;
	free(cfg->rules);
	cfg->rules = NULL;
	cfg->nrules = 0;
}

struct router_tenant
route_config_tenant(const struct route_config *cfg, const char *tenant)
{
	struct router_tenant none = { 0 };
	size_t i;

	for (i = 0; cfg != NULL && tenant != NULL && i < cfg->nrules; i++)
		if (strcmp(cfg->rules[i].tenant, tenant) == 0)
			return cfg->rules[i].t;
	return none;
}

/* The router's view of a tenant: its rule from the config plus its per-program quotas, so a
 * routed start or an escalation never asks for more chains or budget than the tenant may
 * use. */
static struct router_tenant
route_tenant(struct core *c, const char *tenant)
{
	struct router_tenant t = route_config_tenant(&c->route->cfg, tenant);

	tenants_program_limits(c->tenants, tenant, &t.max_n, &t.max_budget);
	return t;
}

/* --- the router in the core --- */

int
route_new(const struct route_config *cfg, struct route **out)
{
	struct route *r;

	*out = NULL;
	if (cfg == NULL || !cfg->enabled)
		return 0;
	r = calloc(1, sizeof *r);
	if (r == NULL)
		return -ENOMEM;
	r->cfg = *cfg;
	r->cfg.rules = NULL;
	if (cfg->nrules > 0) {
		r->cfg.rules = calloc(cfg->nrules, sizeof *r->cfg.rules);
		if (r->cfg.rules == NULL)
			goto fail_r;
		memcpy(r->cfg.rules, cfg->rules, cfg->nrules * sizeof *r->cfg.rules);
	}
	r->knn = knn_new();
	if (r->knn == NULL)
		goto fail_rules;
	*out = r;
	return 0;

fail_rules:
	free(r->cfg.rules);
fail_r:
	free(r);
	return -ENOMEM;
}

void
route_free(struct route *r)
{
	if (r == NULL)
		return;
	knn_free(r->knn);
	free(r->out);
	free(r->cfg.rules);
	free(r);
}

size_t
route_history_count(const struct route *r)
{
	return r != NULL ? r->nout : 0;
}

/* Adds one finished program's problem and outcome. */
static int
route_add(struct route *r, const char *problem, const struct router_outcome *o)
{
	int rc;

	if (ARRAY_GROW(r->out, r->cap, r->nout + 1) != 0)
		return -ENOMEM;
	rc = knn_add(r->knn, problem, r->nout);
	if (rc != 0)
		return rc;
	r->out[r->nout++] = *o;
	return 0;
}

/* The outcome certad knows of a finished program: its chains' tokens, how it ended, whether
 * it escalated, the agreement of its chains.  Never correctness. */
static void
route_outcome(const Certa__V1__Program *pm, bool escalated, struct router_outcome *o)
{
	size_t i;

	memset(o, 0, sizeof *o);
	for (i = 0; i < pm->n_requests; i++) {
		const Certa__V1__RequestProgress *q = pm->requests[i];
		if (q->tokens > o->most)
			o->most = q->tokens;
		if (i == 0 && q->certainty != NULL)
			o->agreement = q->certainty->agreement;
	}
	o->tokens = pm->result != NULL ? pm->result->tokens_used : pm->tokens_used;
	o->reason = pm->result != NULL ? (enum sched_reason)pm->result->reason : SCHED_REASON_NONE;
	o->escalated = escalated;
}

/* A routing history says the program escalated when it holds a fork or a switch. */
static bool
route_escalated(const Certa__V1__Program *pm)
{
	size_t i;

	for (i = 0; i < pm->n_routing; i++)
		if (strcmp(pm->routing[i]->action, "fork") == 0 ||
		    strcmp(pm->routing[i]->action, "switch") == 0)
			return true;
	return false;
}

static int
route_history_one(const char *key, size_t keylen, const ProtobufCMessage *msg, void *arg)
{
	const Certa__V1__HistoryRecord *h = (const Certa__V1__HistoryRecord *)msg;
	struct router_outcome o;

	(void)key;
	(void)keylen;
	if (h->program == NULL || h->program->spec == NULL ||
	    h->program->state != CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_FINISHED)
		return 0;
	route_outcome(h->program, route_escalated(h->program), &o);
	return route_add(arg, h->program->spec->problem, &o);
}

static int
route_history_txn(struct store_txn *txn, void *arg)
{
	return store_scan(txn, STORE_DB_HISTORY, "", NULL, route_history_one, arg);
}

int
route_load_history(struct route *r, struct store *st)
{
	int rc;

	if (r == NULL)
		return 0;
	rc = store_view(st, route_history_txn, r);
	if (rc == 0)
		log_info(LOG_SCHED, "routing: %zu finished programs in the history index", r->nout);
	return rc;
}

void
route_finished(struct core *c, const struct program *p)
{
	struct program_pb pb;
	struct router_outcome o;
	int rc;

	if (c->route == NULL || p->shadow_of != NULL || p->state != PROGRAM_FINISHED)
		return;
	rc = program_pb_fill(p, &pb);
	if (rc == 0) {
		route_outcome(&pb.msg, p->rstate.escalations > 0, &o);
		rc = route_add(c->route, p->problem, &o);
		program_pb_free(&pb);
	}
	if (rc != 0)
		log_warn(LOG_SCHED, "routing: program %s not added to the history index: %s", p->id,
		    certa_strerror(rc));
}

/* --- submit --- */

/* The budget of a rung: its own (already within the tenant's quota), else the scheduling
 * policy's default for n chains, capped by the policy and the tenant's quota. */
static uint64_t
route_budget(const struct sched_policy *pol, const struct router_tenant *t,
    uint64_t rung_budget, uint32_t n)
{
	uint64_t b = rung_budget ? rung_budget : pol->default_budget * n;

	if (b > pol->max_budget)
		b = pol->max_budget;
	if (rung_budget == 0 && t->max_budget != 0 && b > t->max_budget)
		b = t->max_budget;
	return b;
}

int
route_program(struct core *c, const char *tenant, const struct submit_spec *spec,
    const struct sched_policy *pol, enum sched_algo *algo, uint32_t *n, uint64_t *budget,
    struct route_start *out, char *err, size_t errlen)
{
	struct route *r = c->route;
	const struct router_policy *rp;
	struct router_tenant t;
	struct router_hints h;
	struct knn_hit hits[ROUTE_MAX_HITS];
	struct router_outcome nb[ROUTE_MAX_HITS];
	size_t nhits = 0, i;
	int rc;

	memset(out, 0, sizeof *out);
	if (r == NULL)
		return 0;
	rp = &r->cfg.policy;
	memset(&h, 0, sizeof h);
	if (spec->model[0] != '\0') {
		int pi = router_pool_of_model(rp, spec->model);
		if (pi < 0)
			return 0;   /* a model outside every pool: runs as submitted */
		h.pool = rp->pools[pi].name;
	}
	if (spec->algorithm == SUBMIT_ALGO_COT)
		h.algo = SCHED_ALGO_COT;
	else if (spec->algorithm == SUBMIT_ALGO_SC || spec->n > 1)
		h.algo = SCHED_ALGO_SC;
	h.n = spec->n;
	h.budget = spec->token_budget;
	h.moe_top_p = spec->moe_top_p;
	t = route_tenant(c, tenant);
	if (rp->k > 0 && knn_count(r->knn) > 0) {
		rc = knn_query(r->knn, spec->problem, rp->k, 0, 0, hits, &nhits);
		if (rc != 0)
			nhits = 0;   /* out of memory: routed as with an empty history */
	}
	for (i = 0; i < nhits; i++) {
		nb[i] = r->out[hits[i].tag];
		nb[i].sim = hits[i].sim;
	}
	rc = router_route(rp, &t, &h, nb, nhits, &out->r);
	if (rc != 0) {
		snprintf(err, errlen, "tenant %s may use no pool of the routing ladder", tenant);
		return CERTA_EINVAL;
	}
	out->routed = true;
	snprintf(out->pool, sizeof out->pool, "%s", rp->pools[out->r.pool].name);
	snprintf(out->model, sizeof out->model, "%s", rp->pools[out->r.pool].model);
	*algo = out->r.algo;
	*n = out->r.n;
	*budget = route_budget(pol, &t, out->r.budget, out->r.n);
	return 0;
}

/* Fills an event from where the program is now. */
static void
route_event(const struct route *r, const struct program *p, const char *action,
    const char *reason, struct program_route_event *ev)
{
	int pi = r != NULL ? router_pool_of_model(&r->cfg.policy, p->model) : -1;

	memset(ev, 0, sizeof *ev);
	ev->unix_ms = core_now_ms();
	snprintf(ev->action, sizeof ev->action, "%s", action);
	ev->rung = p->rstate.rung;
	if (pi >= 0)
		snprintf(ev->pool, sizeof ev->pool, "%s", r->cfg.policy.pools[pi].name);
	snprintf(ev->model, sizeof ev->model, "%s", p->model);
	ev->algo = p->algo;
	ev->n = p->n;
	ev->tokens = program_tokens(p);
	snprintf(ev->reason, sizeof ev->reason, "%s", reason);
}

int
route_attach(struct program *p, const struct route_start *rs)
{
	struct program_route_event ev;

	if (!rs->routed)
		return 0;
	if (program_set_str(&p->model, rs->model) != 0)
		return -ENOMEM;
	p->routed = true;
	p->moe_top_p = (float)rs->r.moe_top_p;
	router_start(&p->rstate, &rs->r);
	memset(&ev, 0, sizeof ev);
	ev.unix_ms = p->created_ms;
	snprintf(ev.action, sizeof ev.action, "route");
	ev.rung = rs->r.rung;
	snprintf(ev.pool, sizeof ev.pool, "%s", rs->pool);
	snprintf(ev.model, sizeof ev.model, "%s", rs->model);
	ev.algo = rs->r.algo;
	ev.n = rs->r.n;
	snprintf(ev.reason, sizeof ev.reason, "%s", rs->r.reason);
	return program_route_note(p, &ev);
}

/* --- escalation --- */

int
route_decide(struct core *c, struct program *p, const struct sched_view *v,
    const struct sched_decision *d)
{
	struct route *r = c->route;
	const struct router_policy *rp;
	const struct sched_policy *pol;
	struct router_tenant t;
	struct router_action act;
	struct program_route_event ev;
	struct pool_worker *w;
	uint32_t old_n = p->n;
	int rc;

	if (r == NULL || !p->routed || p->shadow_of != NULL ||
	    p->rstate.state == ROUTER_ES_DONE || p->rstate.state == ROUTER_ES_NEW)
		return 0;
	rp = &r->cfg.policy;
	t = route_tenant(c, p->tenant);
	router_escalate(rp, &t, &p->rstate, v, d, &act);
	if (act.act == ROUTER_ACT_NONE || act.act == ROUTER_ACT_STOP)
		return 0;
	if (act.act == ROUTER_ACT_RAISE_TOP_P) {
		/* Same chains and worker; the next step carries the new p and the chains' text
		 * (the worker's sequences were computed with the old p: it rebuilds them). */
		p->moe_top_p = (float)act.moe_top_p;
		p->resend_text = true;
		route_event(r, p, router_act_name(act.act), act.reason, &ev);
		if (program_route_note(p, &ev) != 0)
			log_warn(LOG_SCHED, "program %s: routing event not recorded: out of memory",
			    p->id);
		log_info(LOG_SCHED, "program %s routing %s: %s", p->id, router_act_name(act.act),
		    act.reason);
		return 0;
	}
	pol = policies_effective(c->policies, p->tenant, tenants_policy(c->tenants, p->tenant));
	switch (act.act) {
	case ROUTER_ACT_FORK:
		/* Chain 0 keeps its tokens and votes; the new chains join it on its worker. */
		rc = program_resize_chains(p, act.n, true);
		if (rc != 0)
			goto failed;
		w = p->worker != NULL ? pool_find(c->pool, p->worker) : NULL;
		if (w != NULL)
			pool_hold(w, (int)(p->n - old_n));
		break;
	case ROUTER_ACT_SWITCH:
		/* From the prompt on the next pool: released and placed again, as failover. */
		dispatch_unplace(c, p, 1);
		rc = program_resize_chains(p, act.n, false);
		if (rc == 0)
			rc = program_set_str(&p->model, rp->pools[act.pool].model);
		if (rc != 0)
			goto failed;
		break;
	case ROUTER_ACT_DROP:
		/* The kept chains move to the front: placed again from their text. */
		dispatch_unplace(c, p, 1);
		rc = program_keep_chains(p, act.keep);
		if (rc != 0)
			goto failed;
		break;
	default:
		return 0;
	}
	if (act.act != ROUTER_ACT_DROP) {
		p->algo = act.algo;
		p->budget = route_budget(pol, &t, act.budget, p->n);
		/* A fork keeps chain 0 on its worker: computed with another p, its text travels. */
		if (act.act == ROUTER_ACT_FORK && p->moe_top_p != (float)act.moe_top_p)
			p->resend_text = true;
		p->moe_top_p = (float)act.moe_top_p;
	}
	p->pstate.state = SCHED_PS_NEW;
	p->decided = false;
	route_event(r, p, router_act_name(act.act), act.reason, &ev);
	if (program_route_note(p, &ev) != 0)
		log_warn(LOG_SCHED, "program %s: routing event not recorded: out of memory", p->id);
	log_info(LOG_SCHED, "program %s routing %s: %s", p->id, router_act_name(act.act),
	    act.reason);
	return 1;

failed:
	/* Out of memory: the program goes on (or stops) as sched_decide said. */
	log_warn(LOG_SCHED, "program %s: routing %s not applied: %s", p->id,
	    router_act_name(act.act), certa_strerror(rc));
	return 0;
}
