/*
 * router.c — expert routing and escalation (router.h).
 */
#include "scheduler/router.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/error.h"
#include "scheduler/answer.h"

/* The shipped ladder (policy/route.policy says the same). */
void
router_policy_default(struct router_policy *p)
{
	memset(p, 0, sizeof *p);
	p->npools = 2;
	snprintf(p->pools[0].name, sizeof p->pools[0].name, "r1-7b");
	snprintf(p->pools[0].model, sizeof p->pools[0].model,
	    "deepseek-ai-deepseek-r1-distill-qwen-7b");
	p->pools[0].cost = 1;
	snprintf(p->pools[1].name, sizeof p->pools[1].name, "qwen3-8b");
	snprintf(p->pools[1].model, sizeof p->pools[1].model, "qwen-qwen3-8b");
	p->pools[1].cost = 1;
	p->nrungs = 2;
	p->rungs[0] = (struct router_rung){ 1, SCHED_ALGO_COT, 1, 0, 0 };
	p->rungs[1] = (struct router_rung){ 0, SCHED_ALGO_SC, 3, 0, 0 };
	p->k = 8;
	p->min_sim = 0.05;
	p->min_weight = 0.5;
	p->hard_tokens = 0;
	p->hard_threshold = 1.5;
	p->hard_rung = 0;
	p->escalate_unpromising = true;
	p->escalate_tokens = 12288;   /* the trigger point the ladder had (docs/routing.md) */
	p->escalate_certaindex = 0.5;
	p->drop_agreement = 1.5;
	p->drop_certaindex = 0.99;
	p->moe_tokens = 0;
	p->moe_first = 0.8;
	p->moe_step = 0.1;
	p->moe_max_top_p = 1;
}

static int
router_msg(char *msg, size_t len, const char *fmt, ...)
{
	va_list ap;

	if (msg != NULL && len > 0) {
		va_start(ap, fmt);
		vsnprintf(msg, len, fmt, ap);
		va_end(ap);
	}
	return CERTA_EINVAL;
}

int
router_policy_validate(const struct router_policy *p, char *msg, size_t msglen)
{
	size_t i;

	if (p->npools == 0 || p->npools > ROUTER_MAX_POOLS)
		return router_msg(msg, msglen, "pools: %zu (1..%d)", p->npools, ROUTER_MAX_POOLS);
	for (i = 0; i < p->npools; i++)
		if (!(p->pools[i].cost > 0) || p->pools[i].cost > 1e6 || p->pools[i].name[0] == '\0')
			return router_msg(msg, msglen, "pool.%s: cost %g (> 0, <= 1e6)",
			    p->pools[i].name, p->pools[i].cost);
	if (p->nrungs == 0 || p->nrungs > ROUTER_MAX_RUNGS)
		return router_msg(msg, msglen, "rungs: %zu (1..%d)", p->nrungs, ROUTER_MAX_RUNGS);
	for (i = 0; i < p->nrungs; i++) {
		const struct router_rung *r = &p->rungs[i];
		if (r->pool >= p->npools)
			return router_msg(msg, msglen, "rung.%zu: no pool %u", i, r->pool);
		if (r->algo != SCHED_ALGO_COT && r->algo != SCHED_ALGO_SC)
			return router_msg(msg, msglen, "rung.%zu: algorithm (cot|sc)", i);
		if ((r->algo == SCHED_ALGO_COT && r->n != 1) ||
		    (r->algo == SCHED_ALGO_SC && (r->n < 2 || r->n > 16)))
			return router_msg(msg, msglen, "rung.%zu: n %u (cot 1, sc 2..16)", i, r->n);
		if (r->moe_top_p < 0 || r->moe_top_p > 1)
			return router_msg(msg, msglen, "rung.%zu: top_p %g ([0, 1])", i,
			    r->moe_top_p);
	}
	if (p->k > 64)
		return router_msg(msg, msglen, "knn.k: %u (0..64)", p->k);
	if (p->min_sim < 0 || p->min_sim > 1 || p->min_weight < 0 || p->min_weight > 64)
		return router_msg(msg, msglen, "knn.min_sim/min_weight: out of range");
	if (p->hard_rung >= p->nrungs)
		return router_msg(msg, msglen, "hard.rung: %u (0..%zu)", p->hard_rung,
		    p->nrungs - 1);
	if (p->hard_threshold < 0 || p->hard_threshold > 2)
		return router_msg(msg, msglen, "hard.threshold: %g ([0, 2])", p->hard_threshold);
	if (p->escalate_certaindex < 0 || p->escalate_certaindex > 1 ||
	    p->drop_agreement < 0 || p->drop_agreement > 2 || p->drop_certaindex < 0 ||
	    p->drop_certaindex > 1)
		return router_msg(msg, msglen, "escalate/drop: out of range");
	if (!(p->moe_first > 0 && p->moe_first <= 1) || !(p->moe_step > 0 && p->moe_step <= 1) ||
	    !(p->moe_max_top_p > 0 && p->moe_max_top_p <= 1))
		return router_msg(msg, msglen, "moe.first/step/max_top_p: out of (0, 1]");
	return 0;
}

int
router_pool_find(const struct router_policy *p, const char *name)
{
	size_t i;

	for (i = 0; name != NULL && i < p->npools; i++)
		if (strcmp(p->pools[i].name, name) == 0)
			return (int)i;
	return -1;
}

int
router_pool_of_model(const struct router_policy *p, const char *model)
{
	size_t i;

	for (i = 0; model != NULL && i < p->npools; i++)
		if (strcmp(p->pools[i].model, model) == 0)
			return (int)i;
	return -1;
}

/* Trims s in place; returns it. */
static char *
router_trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
		*--e = '\0';
	return s;
}

/* Parses a number; returns 0 or -1. */
static int
router_num(const char *s, double *out)
{
	char *end;
	double v;

	if (*s == '\0')
		return -1;
	v = strtod(s, &end);
	if (*end != '\0' || !isfinite(v))
		return -1;
	*out = v;
	return 0;
}

/* Applies one key/value; returns NULL or a message. */
static const char *
router_apply(struct router_policy *p, const char *key, char *val, uint32_t *rungs_seen)
{
	double x;

	if (strncmp(key, "pool.", 5) == 0) {
		char model[ROUTER_MODEL_MAX], flag[8] = "", extra[2];
		const char *name = key + 5;
		int i, k;

		if (*name == '\0' || strlen(name) >= ROUTER_NAME_MAX)
			return "bad pool name";
		k = sscanf(val, "%127s %lf %7s %1s", model, &x, flag, extra);
		if (k < 2 || k > 3 || (k == 3 && strcmp(flag, "moe") != 0))
			return "pool wants: MODEL COST [moe]";
		i = router_pool_find(p, name);
		if (i < 0) {
			if (p->npools == ROUTER_MAX_POOLS)
				return "too many pools";
			i = (int)p->npools++;
		}
		snprintf(p->pools[i].name, sizeof p->pools[i].name, "%s", name);
		snprintf(p->pools[i].model, sizeof p->pools[i].model, "%s", model);
		p->pools[i].cost = x;
		p->pools[i].moe = k == 3;
		return NULL;
	}
	if (strncmp(key, "rung.", 5) == 0) {
		char pool[ROUTER_NAME_MAX], algo[8];
		unsigned idx, n;
		unsigned long long budget = 0;
		double top_p = 0;
		char *end;
		int pi, k;

		idx = (unsigned)strtoul(key + 5, &end, 10);
		if (*end != '\0' || end == key + 5 || idx >= ROUTER_MAX_RUNGS)
			return "bad rung index";
		k = sscanf(val, "%31s %7s %u %lf %llu", pool, algo, &n, &top_p, &budget);
		if (k < 3)
			return "rung wants: POOL cot|sc N [TOP_P [BUDGET]]";
		pi = router_pool_find(p, pool);
		if (pi < 0)
			return "rung names an unknown pool (define pool.NAME first)";
		if (*rungs_seen == 0)
			p->nrungs = 0;
		*rungs_seen |= 1u << idx;
		p->rungs[idx].pool = (uint32_t)pi;
		p->rungs[idx].algo = strcmp(algo, "sc") == 0 ? SCHED_ALGO_SC :
		    strcmp(algo, "cot") == 0 ? SCHED_ALGO_COT : 0;
		p->rungs[idx].n = n;
		p->rungs[idx].moe_top_p = top_p;
		p->rungs[idx].budget = budget;
		if (idx + 1 > p->nrungs)
			p->nrungs = idx + 1;
		return NULL;
	}
	if (router_num(val, &x) != 0)
		return "value is not a number";
#define U(name, field) if (strcmp(key, name) == 0) { \
		if (x < 0 || x != floor(x) || x > 1e15) return "not a whole number"; \
		p->field = x; return NULL; }
#define D(name, field) if (strcmp(key, name) == 0) { p->field = x; return NULL; }
	U("knn.k", k)
	D("knn.min_sim", min_sim)
	D("knn.min_weight", min_weight)
	U("hard.tokens", hard_tokens)
	D("hard.threshold", hard_threshold)
	U("hard.rung", hard_rung)
	U("escalate.unpromising", escalate_unpromising)
	U("escalate.tokens", escalate_tokens)
	D("escalate.certaindex", escalate_certaindex)
	D("drop.agreement", drop_agreement)
	D("drop.certaindex", drop_certaindex)
	U("moe.tokens", moe_tokens)
	D("moe.first", moe_first)
	D("moe.step", moe_step)
	D("moe.max_top_p", moe_max_top_p)
#undef U
#undef D
	return "unknown key";
}

int
router_policy_parse(const char *text, size_t len, const char *name, struct router_policy *p,
    char *err, size_t errlen)
{
	struct router_policy np = *p;
	uint32_t rungs_seen = 0;
	size_t pos = 0, line = 0;
	char buf[512], msg[160];

	if (name == NULL)
		name = "route.policy";
	while (pos < len) {
		size_t e = pos, l;
		char *s, *eq, *hash;
		const char *why;

		while (e < len && text[e] != '\n')
			e++;
		line++;
		l = e - pos;
		if (l >= sizeof buf) {
			snprintf(err, errlen, "%s:%zu: line too long", name, line);
			return CERTA_ECONFIG;
		}
		memcpy(buf, text + pos, l);
		buf[l] = '\0';
		pos = e + 1;
		if ((hash = strchr(buf, '#')) != NULL)
			*hash = '\0';
		s = router_trim(buf);
		if (*s == '\0')
			continue;
		eq = strchr(s, '=');
		if (eq == NULL) {
			snprintf(err, errlen, "%s:%zu: expected key = value", name, line);
			return CERTA_ECONFIG;
		}
		*eq = '\0';
		why = router_apply(&np, router_trim(s), router_trim(eq + 1), &rungs_seen);
		if (why != NULL) {
			snprintf(err, errlen, "%s:%zu: %s: %s", name, line, router_trim(s), why);
			return CERTA_ECONFIG;
		}
	}
	if (rungs_seen != 0 && rungs_seen != (uint32_t)((1u << np.nrungs) - 1)) {
		snprintf(err, errlen, "%s: rungs must be numbered 0..N-1 without gaps", name);
		return CERTA_ECONFIG;
	}
	if (router_policy_validate(&np, msg, sizeof msg) != 0) {
		snprintf(err, errlen, "%s: %s", name, msg);
		return CERTA_ECONFIG;
	}
	*p = np;
	return 0;
}

size_t
router_policy_format(const struct router_policy *p, char *buf, size_t buflen)
{
	size_t n = 0, i;
	char dummy[1];

#define OUT(...) do { \
		int w = snprintf(n < buflen ? buf + n : dummy, n < buflen ? buflen - n : 1, \
		    __VA_ARGS__); \
		n += w > 0 ? (size_t)w : 0; \
	} while (0)
	if (buf == NULL || buflen == 0)
		buflen = 0;
	for (i = 0; i < p->npools; i++)
		OUT("pool.%s = %s %.6g%s\n", p->pools[i].name, p->pools[i].model, p->pools[i].cost,
		    p->pools[i].moe ? " moe" : "");
	for (i = 0; i < p->nrungs; i++)
		OUT("rung.%zu = %s %s %u %.6g %llu\n", i, p->pools[p->rungs[i].pool].name,
		    p->rungs[i].algo == SCHED_ALGO_SC ? "sc" : "cot", p->rungs[i].n,
		    p->rungs[i].moe_top_p, (unsigned long long)p->rungs[i].budget);
	OUT("knn.k = %u\nknn.min_sim = %.6g\nknn.min_weight = %.6g\n", p->k, p->min_sim,
	    p->min_weight);
	OUT("hard.tokens = %llu\nhard.threshold = %.6g\nhard.rung = %u\n",
	    (unsigned long long)p->hard_tokens, p->hard_threshold, p->hard_rung);
	OUT("escalate.unpromising = %d\nescalate.tokens = %llu\nescalate.certaindex = %.6g\n",
	    p->escalate_unpromising ? 1 : 0, (unsigned long long)p->escalate_tokens,
	    p->escalate_certaindex);
	OUT("drop.agreement = %.6g\ndrop.certaindex = %.6g\n", p->drop_agreement,
	    p->drop_certaindex);
	OUT("moe.tokens = %llu\nmoe.first = %.6g\nmoe.step = %.6g\nmoe.max_top_p = %.6g\n",
	    (unsigned long long)p->moe_tokens, p->moe_first, p->moe_step, p->moe_max_top_p);
#undef OUT
	return n;
}

bool
router_outcome_hard(const struct router_policy *p, const struct router_outcome *o)
{
	return o->reason == SCHED_REASON_UNPROMISING || o->reason == SCHED_REASON_BUDGET ||
	    o->escalated || (p->hard_tokens > 0 && o->most >= p->hard_tokens);
}

static bool
router_pool_allowed(const struct router_tenant *t, uint32_t pool)
{
	return t == NULL || t->pool_mask == 0 || (t->pool_mask >> pool & 1u) != 0;
}

/* The first allowed rung at or after `from`, or -1: its pool is allowed and its chains fit
 * the tenant's chain quota. */
static int
router_next_rung(const struct router_policy *p, const struct router_tenant *t, uint32_t from)
{
	uint32_t i;

	for (i = from; i < p->nrungs; i++)
		if (router_pool_allowed(t, p->rungs[i].pool) &&
		    (t == NULL || t->max_n == 0 || p->rungs[i].n <= t->max_n))
			return (int)i;
	return -1;
}

/* A rung's budget within the tenant's budget quota (0 stays 0: the caller's default, which
 * the caller caps). */
static uint64_t
router_capped_budget(const struct router_tenant *t, uint64_t budget)
{
	return t != NULL && t->max_budget != 0 && budget > t->max_budget ? t->max_budget : budget;
}

int
router_route(const struct router_policy *p, const struct router_tenant *t,
    const struct router_hints *h, const struct router_outcome *nb, size_t nnb,
    struct router_route *out)
{
	struct router_route r;
	double hard = 0;
	size_t i, used = 0;
	uint32_t want = 0;
	int rung, hp;
	bool hints = h != NULL && !(t != NULL && t->no_hints);
	const char *why;

	memset(&r, 0, sizeof r);
	for (i = 0; i < nnb && used < p->k; i++) {
		if (nb[i].sim < p->min_sim)
			continue;
		r.weight += nb[i].sim;
		hard += nb[i].sim * (router_outcome_hard(p, &nb[i]) ? 1 : 0);
		used++;
	}
	r.neighbours = used;
	if (used == 0 || r.weight < p->min_weight) {
		r.difficulty = -1;
		why = used == 0 ? "no similar history" : "too little similar history";
	} else {
		r.difficulty = hard / r.weight;
		if (r.difficulty >= p->hard_threshold) {
			want = p->hard_rung;
			why = "neighbours were hard";
		} else {
			why = "neighbours were easy";
		}
	}
	rung = router_next_rung(p, t, want);
	if (rung < 0)
		rung = router_next_rung(p, t, 0);
	if (rung < 0)
		return -EACCES;
	r.rung = (uint32_t)rung;
	r.pool = p->rungs[rung].pool;
	r.algo = p->rungs[rung].algo;
	r.n = p->rungs[rung].n;
	r.moe_top_p = p->rungs[rung].moe_top_p;
	r.budget = router_capped_budget(t, p->rungs[rung].budget);
	snprintf(r.reason, sizeof r.reason, "rung %d (%s %s n=%u): %s (%zu neighbours, "
	    "weight %.2f, hard share %.2f)", rung, p->pools[r.pool].name,
	    r.algo == SCHED_ALGO_SC ? "sc" : "cot", r.n, why, used, r.weight, r.difficulty);
	if (h != NULL && !hints && (h->pool != NULL || h->algo != 0 || h->n != 0 ||
	    h->budget != 0 || h->moe_top_p != 0))
		strncat(r.reason, "; hints ignored: tenant forbids them",
		    sizeof r.reason - strlen(r.reason) - 1);
	if (hints) {
		if (h->pool != NULL && h->pool[0] != '\0') {
			hp = router_pool_find(p, h->pool);
			if (hp >= 0 && router_pool_allowed(t, (uint32_t)hp)) {
				r.pool = (uint32_t)hp;
				strncat(r.reason, "; pool from hint",
				    sizeof r.reason - strlen(r.reason) - 1);
			} else {
				strncat(r.reason, hp < 0 ? "; hint pool unknown, ignored" :
				    "; hint pool forbidden for tenant, ignored",
				    sizeof r.reason - strlen(r.reason) - 1);
			}
		}
		if (h->algo == SCHED_ALGO_COT || h->algo == SCHED_ALGO_SC) {
			r.algo = h->algo;
			r.n = h->algo == SCHED_ALGO_COT ? 1 : (h->n >= 2 ? h->n : 3);
		} else if (h->n >= 2 && r.algo == SCHED_ALGO_SC) {
			r.n = h->n;
		}
		if (h->budget != 0)
			r.budget = h->budget;
		if (h->moe_top_p > 0 && h->moe_top_p <= 1)
			r.moe_top_p = h->moe_top_p;
	}
	*out = r;
	return 0;
}

void
router_start(struct router_state *s, const struct router_route *r)
{
	memset(s, 0, sizeof *s);
	router_set_state(s, ROUTER_ES_RUNNING);
	s->rung = r->rung;
	s->top_p = r->moe_top_p;
}

/* Legal transitions: rows from, columns to. */
static const bool router_legal[ROUTER_ES_COUNT][ROUTER_ES_COUNT] = {
	/*               NEW    RUNNING DROPPED DONE */
	[ROUTER_ES_NEW]     = { true,  true,  false, true },
	[ROUTER_ES_RUNNING] = { false, true,  true,  true },
	[ROUTER_ES_DROPPED] = { false, false, true,  true },
	[ROUTER_ES_DONE]    = { false, false, false, true },
};

bool
router_state_legal(enum router_estate from, enum router_estate to)
{
	if ((unsigned)from >= ROUTER_ES_COUNT || (unsigned)to >= ROUTER_ES_COUNT)
		return false;
	return router_legal[from][to];
}

void
router_set_state(struct router_state *s, enum router_estate to)
{
	if (!router_state_legal(s->state, to)) {
		fprintf(stderr, "[router] BUG: illegal escalation state transition %s -> %s\n",
		    router_state_name(s->state), router_state_name(to));
		abort();
	}
	s->state = to;
}

const char *
router_state_name(enum router_estate s)
{
	static const char *const names[ROUTER_ES_COUNT] = {
		"new", "running", "dropped", "done",
	};

	return (unsigned)s < ROUTER_ES_COUNT ? names[s] : "?";
}

const char *
router_act_name(enum router_act a)
{
	static const char *const names[] = { "none", "stop", "fork", "switch", "drop",
		"raise" };

	return (unsigned)a < sizeof names / sizeof names[0] ? names[a] : "?";
}

/* Fills out for an escalation from s->rung to rung `to`. */
static void
router_escalate_to(const struct router_policy *p, const struct router_tenant *t,
    struct router_state *s, uint32_t to,
    uint64_t most, const char *why, struct router_action *out)
{
	const struct router_rung *from = &p->rungs[s->rung], *r = &p->rungs[to];

	out->act = from->pool == r->pool && from->algo == SCHED_ALGO_COT &&
	    r->algo == SCHED_ALGO_SC ? ROUTER_ACT_FORK : ROUTER_ACT_SWITCH;
	out->rung = to;
	out->pool = r->pool;
	out->algo = r->algo;
	out->n = r->n;
	out->moe_top_p = r->moe_top_p;
	out->budget = router_capped_budget(t, r->budget);
	snprintf(out->reason, sizeof out->reason, "%s rung %u -> %u (%s %s n=%u): %s",
	    out->act == ROUTER_ACT_FORK ? "fork" : "switch", s->rung, to, p->pools[r->pool].name,
	    r->algo == SCHED_ALGO_SC ? "sc" : "cot", r->n, why);
	s->rung = to;
	s->escalations++;
	s->base = out->act == ROUTER_ACT_FORK ? most : 0;
	s->top_p = r->moe_top_p;
	router_set_state(s, ROUTER_ES_RUNNING);
}

/* The top-p a struggling program on a MoE pool rises to from `from`, or -1 (not MoE, at the
 * cap already). */
static double
router_raised_top_p(const struct router_policy *p, uint32_t pool, double from)
{
	double to;

	if (!p->pools[pool].moe || p->moe_tokens == 0)
		return -1;
	to = from > 0 ? from + p->moe_step : p->moe_first;
	if (to > p->moe_max_top_p)
		to = p->moe_max_top_p;
	return to > from + 1e-9 ? to : -1;
}

void
router_escalate(const struct router_policy *p, const struct router_tenant *t,
    struct router_state *s, const struct sched_view *v, const struct sched_decision *d,
    struct router_action *out)
{
	uint64_t most = 0;
	size_t i;
	int next = -1;
	char why[ROUTER_REASON_MAX];

	memset(out, 0, sizeof *out);
	if (s->state == ROUTER_ES_DONE) {
		out->act = ROUTER_ACT_STOP;
		snprintf(out->reason, sizeof out->reason, "already done");
		return;
	}
	if (s->state == ROUTER_ES_NEW)
		router_set_state(s, ROUTER_ES_RUNNING);
	for (i = 0; i < v->nchains; i++)
		if (v->chains[i].tokens > most)
			most = v->chains[i].tokens;
	if (s->state == ROUTER_ES_RUNNING && !(t != NULL && t->no_escalation) &&
	    s->rung + 1 < p->nrungs)
		next = router_next_rung(p, t, s->rung + 1);
	if (d->stop) {
		if (next >= 0 && p->escalate_unpromising &&
		    (d->reason == SCHED_REASON_UNPROMISING || d->reason == SCHED_REASON_BUDGET)) {
			snprintf(why, sizeof why, "%s at %llu tokens, certaindex %.3f",
			    sched_reason_name(d->reason), (unsigned long long)most, d->certaindex);
			router_escalate_to(p, t, s, (uint32_t)next, most, why, out);
			return;
		}
		router_set_state(s, ROUTER_ES_DONE);
		out->act = ROUTER_ACT_STOP;
		snprintf(out->reason, sizeof out->reason, "stop %s on rung %u",
		    sched_reason_name(d->reason), s->rung);
		return;
	}
	if (s->state == ROUTER_ES_RUNNING && !(t != NULL && t->no_escalation) &&
	    most >= s->base && most - s->base >= p->moe_tokens &&
	    d->certaindex < p->escalate_certaindex) {
		double to = router_raised_top_p(p, p->rungs[s->rung].pool, s->top_p);
		if (to > 0) {
			out->act = ROUTER_ACT_RAISE_TOP_P;
			out->rung = s->rung;
			out->pool = p->rungs[s->rung].pool;
			out->algo = v->algo;
			out->n = (uint32_t)v->nchains;
			out->moe_top_p = to;
			snprintf(out->reason, sizeof out->reason, "raise top-p %.3g -> %.3g on rung %u "
			    "(%s, moe): certaindex %.3f < %.3f past %llu tokens at this top-p",
			    s->top_p, to, s->rung, p->pools[out->pool].name, d->certaindex,
			    p->escalate_certaindex, (unsigned long long)p->moe_tokens);
			s->top_p = to;
			s->base = most;
			return;
		}
	}
	if (next >= 0 && p->escalate_tokens > 0 && most >= s->base &&
	    most - s->base >= p->escalate_tokens && d->certaindex < p->escalate_certaindex) {
		snprintf(why, sizeof why, "certaindex %.3f < %.3f past %llu tokens on the rung",
		    d->certaindex, p->escalate_certaindex, (unsigned long long)p->escalate_tokens);
		router_escalate_to(p, t, s, (uint32_t)next, most, why, out);
		return;
	}
	if (s->state == ROUTER_ES_RUNNING && v->algo == SCHED_ALGO_SC && v->nchains > 1 &&
	    v->nchains <= 64 && p->drop_agreement <= 1 && d->agreement >= p->drop_agreement &&
	    d->certaindex >= p->drop_certaindex && d->answer != NULL && d->answer[0] != '\0') {
		uint64_t keep = 0;
		size_t kept = 0;

		for (i = 0; i < v->nchains; i++) {
			const char *a = sched_chain_answer(&v->chains[i]);
			if (a[0] != '\0' && answer_equivalent(a, d->answer)) {
				keep |= (uint64_t)1 << i;
				kept++;
			}
		}
		if (kept > 0 && kept < v->nchains) {
			router_set_state(s, ROUTER_ES_DROPPED);
			out->act = ROUTER_ACT_DROP;
			out->keep = keep;
			out->rung = s->rung;
			snprintf(out->reason, sizeof out->reason, "drop %zu of %zu chains: agreement "
			    "%.2f, certaindex %.3f", v->nchains - kept, v->nchains, d->agreement,
			    d->certaindex);
			return;
		}
	}
	out->act = ROUTER_ACT_NONE;
	out->rung = s->rung;
}
