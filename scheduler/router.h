/*
 * router.h — expert routing: which pool (model), algorithm, chains, budget and MoE top-p a new
 * program starts with, and when a running program escalates (cot -> sc by forking chains, or
 * on to a stronger pool) or drops chains.  Pure code shared by certad and certa-eval, like
 * sched_decide(): no I/O, no global state, deterministic.
 *
 * Model.  The policy holds pools (a model and a relative cost per token) and a *ladder* of
 * rungs (pool, algorithm, n, top-p), cheapest first.  A program starts on rung 0, or on
 * hard_rung when its nearest neighbours in history (scheduler/knn.h, found by the caller) were
 * hard: the similarity-weighted share of neighbour records that were hard (stopped
 * unpromising or on budget, escalated, or used >= hard_tokens) is at least hard_threshold.
 * Neighbour correctness is never an input: certad cannot know it.  A client hint (pool,
 * algorithm, n, budget, top-p) replaces the routed value unless the tenant forbids hints or
 * the pool; rungs on pools the tenant may not use are skipped.
 *
 * Escalation (router_escalate, after every sched_decide): an explicit state machine
 *
 *   NEW ──► RUNNING ──► DROPPED ──┐
 *    │         │ ▲ escalate        ├──► DONE (terminal)
 *    └─────────┴─┴─────────────────┘
 *
 * RUNNING on rung r: a stop for UNPROMISING or BUDGET (low confidence) becomes an escalation
 * to the next allowed rung (escalate_unpromising), and so does the longest chain passing
 * escalate_tokens on this rung (counted from where it stood when the rung began) while the
 * certaindex is below escalate_certaindex.  Escalating within a pool from cot to sc
 * is a FORK: chain 0 keeps its tokens and counts toward the vote, n - 1 chains are added;
 * anything else is a SWITCH: the program continues on the next rung's pool from the prompt
 * (re-prefill, as failover does), the earlier tokens are spent.  An sc program whose chains
 * agree early (agreement >= drop_agreement and certaindex >= drop_certaindex) DROPs the
 * dissenting chains once (state DROPPED, no more escalation).  A program on a MoE pool
 * (pool flag moe) whose longest chain passed moe_tokens since the rung began or its top-p
 * last rose, with the certaindex below escalate_certaindex, RAISEs its MoE top-p (0, the
 * trained top-k, goes to moe_first, then + moe_step, at most moe_max_top_p), keeping its
 * chains; before escalating.  Every action carries a reason string for the program's history.
 *
 * Threads: any; objects are plain data.  Errors: 0 or a negative code (lib/error.h).
 */
#ifndef CERTA_SCHEDULER_ROUTER_H
#define CERTA_SCHEDULER_ROUTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "scheduler/sched.h"

#define ROUTER_MAX_POOLS 8
#define ROUTER_MAX_RUNGS 8
#define ROUTER_NAME_MAX 32
#define ROUTER_MODEL_MAX 128
#define ROUTER_REASON_MAX 200
/* Largest routing policy text accepted from a file, in bytes. */
#define ROUTER_TEXT_MAX (64u << 10)

struct router_pool {
	char name[ROUTER_NAME_MAX];
	char model[ROUTER_MODEL_MAX];
	double cost;              /* relative cost per token (> 0) */
	bool moe;                 /* the model is a mixture of experts: its top-p may rise */
};

struct router_rung {
	uint32_t pool;            /* index into pools */
	enum sched_algo algo;
	uint32_t n;               /* chains (1 for cot) */
	double moe_top_p;         /* MoE routing threshold for the engine; 0: engine default */
	uint64_t budget;          /* the program's budget on this rung (decode tokens of all its
	                           * chains, a forked chain's included); 0: the scheduling
	                           * policy's default */
};

struct router_policy {
	size_t npools;
	struct router_pool pools[ROUTER_MAX_POOLS];
	size_t nrungs;
	struct router_rung rungs[ROUTER_MAX_RUNGS];
	/* KNN */
	uint32_t k;               /* neighbours consulted (0: routing ignores history) */
	double min_sim;           /* neighbours less similar are ignored */
	double min_weight;        /* total similarity below this: no evidence, rung 0 */
	/* difficulty */
	uint64_t hard_tokens;     /* a neighbour record using this many tokens is hard (0: never) */
	double hard_threshold;    /* start on hard_rung at this weighted hard share (> 1: never) */
	uint32_t hard_rung;
	/* escalation */
	bool escalate_unpromising;
	uint64_t escalate_tokens; /* 0: off */
	double escalate_certaindex;
	/* de-escalation (sc) */
	double drop_agreement;    /* > 1: never */
	double drop_certaindex;
	/* MoE top-p rising on struggle (pools with moe only) */
	uint64_t moe_tokens;      /* tokens at one top-p before it rises; 0: never */
	double moe_first;         /* the top-p a trained top-k (0) program rises to, (0, 1] */
	double moe_step;          /* each later rise, (0, 1] */
	double moe_max_top_p;     /* no rise past this, (0, 1] */
};

/* What a tenant allows (zero value: everything). */
struct router_tenant {
	uint32_t pool_mask;       /* bit i: pool i allowed; 0: all pools */
	bool no_hints;            /* client hints are ignored */
	bool no_escalation;
	uint32_t max_n;           /* the tenant's chain quota: rungs with more chains are
	                           * skipped; 0: no limit */
	uint64_t max_budget;      /* the tenant's budget quota: routed budgets are capped to it;
	                           * 0: no limit */
};

/* Client hints (zero value: none). */
struct router_hints {
	const char *pool;         /* pool name; NULL or "": none */
	enum sched_algo algo;     /* 0: none */
	uint32_t n;               /* 0: none */
	uint64_t budget;          /* 0: none */
	double moe_top_p;         /* 0: none */
};

/* A neighbour's finished program, as history records it. */
struct router_outcome {
	double sim;               /* cosine similarity of the problem texts */
	uint64_t tokens;          /* decode tokens the program used, all chains */
	uint64_t most;            /* tokens of its longest chain */
	enum sched_reason reason; /* how it finished */
	bool escalated;           /* it escalated at least once */
	double agreement;         /* share of chains agreeing with its answer */
};

/* Where a program starts. */
struct router_route {
	uint32_t rung;
	uint32_t pool;
	enum sched_algo algo;
	uint32_t n;
	uint64_t budget;          /* 0: the scheduling policy's default */
	double moe_top_p;
	double difficulty;        /* weighted hard share of the neighbours; -1: no evidence */
	double weight;            /* total similarity of the neighbours used */
	size_t neighbours;        /* neighbours used */
	char reason[ROUTER_REASON_MAX];
};

enum router_estate {
	ROUTER_ES_NEW = 0,
	ROUTER_ES_RUNNING,
	ROUTER_ES_DROPPED,
	ROUTER_ES_DONE,
	ROUTER_ES_COUNT
};

/* Per-program escalation state (plain data; zero = NEW).  Start it with router_start(). */
struct router_state {
	enum router_estate state;
	uint32_t rung;
	uint32_t escalations;
	uint64_t base;            /* tokens of the longest chain when the rung began (a forked
	                           * chain 0 keeps its tokens) or the top-p last rose:
	                           * escalate_tokens and moe_tokens count from here */
	double top_p;             /* the program's MoE top-p now (the caller restores it with the
	                           * state: certad from the program's moe_top_p) */
};

enum router_act {
	ROUTER_ACT_NONE = 0,      /* go on as sched_decide said */
	ROUTER_ACT_STOP,          /* the program stops (sched_decide's stop stands) */
	ROUTER_ACT_FORK,          /* add chains: now sc with n chains, chain 0 kept */
	ROUTER_ACT_SWITCH,        /* restart on another pool / algorithm from the prompt */
	ROUTER_ACT_DROP,          /* stop the chains whose bit is clear in keep */
	ROUTER_ACT_RAISE_TOP_P,   /* same chains, same rung: MoE top-p now moe_top_p */
};

struct router_action {
	enum router_act act;
	uint32_t rung;            /* FORK, SWITCH: the new rung */
	uint32_t pool;
	enum sched_algo algo;
	uint32_t n;
	double moe_top_p;         /* FORK, SWITCH: the rung's; RAISE_TOP_P: the raised one */
	uint64_t budget;          /* FORK, SWITCH: the rung's budget (0: policy default) */
	uint64_t keep;            /* DROP: bit i set = chain i continues */
	char reason[ROUTER_REASON_MAX];
};

/* The built-in routing policy: identical to policy/route.policy. */
void router_policy_default(struct router_policy *p);
/* Checks p; on error writes "what: why" to msg and returns CERTA_EINVAL. */
int router_policy_validate(const struct router_policy *p, char *msg, size_t msglen);
/*
 * Applies `key = value` text on top of *p (keys: pool.NAME = MODEL COST [moe], rung.I = POOL
 * cot|sc N [TOP_P [BUDGET]] (rungs 0.. in order, replacing the ladder when rung.0 appears), knn.k,
 * knn.min_sim, knn.min_weight, hard.tokens, hard.threshold, hard.rung,
 * escalate.unpromising, escalate.tokens, escalate.certaindex, drop.agreement,
 * drop.certaindex, moe.tokens, moe.first, moe.step, moe.max_top_p; `#` comments).
 * Validates the result; on success writes *p and returns 0;
 * else writes "name:line: message" into err and returns CERTA_ECONFIG.
 */
int router_policy_parse(const char *text, size_t len, const char *name, struct router_policy *p,
    char *err, size_t errlen);
/* Writes p in the text form (snprintf-like); returns the length the full text needs. */
size_t router_policy_format(const struct router_policy *p, char *buf, size_t buflen);
/* Index of the pool named name, or -1. */
int router_pool_find(const struct router_policy *p, const char *name);
/* Index of the pool serving model, or -1. */
int router_pool_of_model(const struct router_policy *p, const char *model);

/* Whether a neighbour record counts as hard under p. */
bool router_outcome_hard(const struct router_policy *p, const struct router_outcome *o);

/*
 * Chooses where a program starts from the tenant's rules t (NULL: none), the hints h (NULL:
 * none) and the neighbours nb[0..nnb) (most similar first; NULL/0: empty history).  Returns 0,
 * or -EACCES when the tenant allows no pool of the ladder (out untouched).
 */
int router_route(const struct router_policy *p, const struct router_tenant *t,
    const struct router_hints *h, const struct router_outcome *nb, size_t nnb,
    struct router_route *out);

/* Starts the escalation state of a program routed to r (state RUNNING on r->rung). */
void router_start(struct router_state *s, const struct router_route *r);

/*
 * After sched_decide() returned d for view v: what the program does next (out) and the new
 * state.  The view's chains are the program's current chains on rung s->rung.  Pure.
 */
void router_escalate(const struct router_policy *p, const struct router_tenant *t,
    struct router_state *s, const struct sched_view *v, const struct sched_decision *d,
    struct router_action *out);

/* Moves s to `to`; aborts when the transition is illegal (same state: no-op). */
void router_set_state(struct router_state *s, enum router_estate to);
bool router_state_legal(enum router_estate from, enum router_estate to);
const char *router_state_name(enum router_estate s);
const char *router_act_name(enum router_act a);

#endif
