/*
 * test_router.c — router_route() on hand-made neighbour outcomes (empty history, easy and hard
 * neighbours, similarity floor, hints, forbidden pools), the escalation state machine
 * (fork, switch, length trigger, last rung, drop, done, tenant without escalation, illegal
 * transitions, tenant quotas on chains and budget) and the routing policy text form.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lib/error.h"
#include "lib/fileio.h"
#include "scheduler/router.h"

/* Pools a (0), b (1), c (2); ladder: a cot > a sc3 > b sc3 > c cot. */
static void
policy(struct router_policy *p)
{
	static const char text[] =
	    "pool.a = model-a 1\n"
	    "pool.b = model-b 4   # four times the cost\n"
	    "pool.c = model-c 2\n"
	    "rung.0 = a cot 1\n"
	    "rung.1 = a sc 3\n"
	    "rung.2 = b sc 3 0.9 30000\n"
	    "rung.3 = c cot 1\n"
	    "knn.k = 4\nknn.min_sim = 0.2\nknn.min_weight = 0.5\n"
	    "hard.tokens = 10000\nhard.threshold = 0.5\nhard.rung = 2\n"
	    "escalate.unpromising = 1\nescalate.tokens = 8000\nescalate.certaindex = 0.3\n"
	    "drop.agreement = 0.6\ndrop.certaindex = 0.9\n";
	char err[256];

	router_policy_default(p);
	assert_int_equal(router_policy_parse(text, strlen(text), "t", p, err, sizeof err), 0);
	/* the default pools stay; a, b, c follow them */
	assert_int_equal(router_pool_find(p, "a"), 2);
}

static struct router_outcome
easy(double sim)
{
	struct router_outcome o = { sim, 3000, 3000, SCHED_REASON_CERTAIN, false, 1 };
	return o;
}

static struct router_outcome
hard(double sim)
{
	struct router_outcome o = { sim, 12288, 12288, SCHED_REASON_UNPROMISING, false, 1 };
	return o;
}

static void
test_route_empty_history(void **state)
{
	struct router_policy p;
	struct router_route r;

	(void)state;
	policy(&p);
	assert_int_equal(router_route(&p, NULL, NULL, NULL, 0, &r), 0);
	assert_int_equal(r.rung, 0);
	assert_int_equal(r.pool, 2);
	assert_int_equal(r.algo, SCHED_ALGO_COT);
	assert_int_equal(r.n, 1);
	assert_true(r.difficulty < 0);
	assert_non_null(strstr(r.reason, "no similar history"));
}

static void
test_route_neighbours(void **state)
{
	struct router_policy p;
	struct router_route r;
	struct router_outcome nb[6];

	(void)state;
	policy(&p);
	/* Two hard of three similar: share 2/3 >= 0.5 -> hard rung (b sc3, top-p 0.9). */
	nb[0] = hard(0.9);
	nb[1] = easy(0.8);
	nb[2] = hard(0.7);
	assert_int_equal(router_route(&p, NULL, NULL, nb, 3, &r), 0);
	assert_int_equal(r.rung, 2);
	assert_int_equal(r.pool, 3);
	assert_int_equal(r.algo, SCHED_ALGO_SC);
	assert_int_equal(r.n, 3);
	assert_true(r.moe_top_p > 0.89 && r.moe_top_p < 0.91);
	assert_int_equal(r.budget, 30000);
	assert_true(r.difficulty > 0.6 && r.difficulty < 0.7);
	assert_non_null(strstr(r.reason, "neighbours were hard"));
	/* Easy majority by similarity. */
	nb[0] = easy(0.9);
	nb[1] = easy(0.8);
	nb[2] = hard(0.7);
	assert_int_equal(router_route(&p, NULL, NULL, nb, 3, &r), 0);
	assert_int_equal(r.rung, 0);
	assert_non_null(strstr(r.reason, "neighbours were easy"));
	/* Long neighbours count as hard (hard.tokens), and only k = 4 records are used. */
	nb[0] = easy(0.9);
	nb[0].most = 10000;
	nb[1] = easy(0.8);
	nb[1].escalated = true;
	nb[2] = easy(0.7);
	nb[3] = easy(0.6);
	nb[4] = easy(0.5);
	nb[5] = easy(0.45);
	assert_int_equal(router_route(&p, NULL, NULL, nb, 6, &r), 0);
	assert_int_equal(r.neighbours, 4);
	assert_true(r.difficulty > 0.56 && r.difficulty < 0.57);  /* 1.7 / 3.0 */
	assert_int_equal(r.rung, 2);
	/* Below the similarity floor: ignored; too little weight: no evidence. */
	nb[0] = hard(0.19);
	nb[1] = hard(0.3);
	assert_int_equal(router_route(&p, NULL, NULL, nb, 2, &r), 0);
	assert_int_equal(r.neighbours, 1);
	assert_int_equal(r.rung, 0);
	assert_true(r.difficulty < 0);
	assert_non_null(strstr(r.reason, "too little"));
}

static void
test_route_hints_and_tenants(void **state)
{
	struct router_policy p;
	struct router_route r;
	struct router_tenant t;
	struct router_hints h;
	struct router_outcome nb[2];

	(void)state;
	policy(&p);
	memset(&h, 0, sizeof h);
	h.pool = "b";
	h.algo = SCHED_ALGO_SC;
	h.n = 5;
	h.budget = 777;
	assert_int_equal(router_route(&p, NULL, &h, NULL, 0, &r), 0);
	assert_int_equal(r.pool, 3);
	assert_int_equal(r.algo, SCHED_ALGO_SC);
	assert_int_equal(r.n, 5);
	assert_int_equal(r.budget, 777);
	/* A tenant limited to pools a and c: the hint's pool is forbidden and ignored. */
	memset(&t, 0, sizeof t);
	t.pool_mask = 1u << 2 | 1u << 4;
	assert_int_equal(router_route(&p, &t, &h, NULL, 0, &r), 0);
	assert_int_equal(r.pool, 2);
	assert_int_equal(r.algo, SCHED_ALGO_SC);  /* the rest of the hint stands */
	assert_non_null(strstr(r.reason, "forbidden"));
	/* Hard neighbours want rung 2 (pool b): skipped for the next allowed rung (c cot). */
	nb[0] = hard(0.9);
	nb[1] = hard(0.8);
	assert_int_equal(router_route(&p, &t, NULL, nb, 2, &r), 0);
	assert_int_equal(r.rung, 3);
	assert_int_equal(r.pool, 4);
	/* Hints forbidden altogether. */
	t.no_hints = true;
	assert_int_equal(router_route(&p, &t, &h, NULL, 0, &r), 0);
	assert_int_equal(r.algo, SCHED_ALGO_COT);
	assert_int_equal(r.budget, 0);
	assert_non_null(strstr(r.reason, "hints ignored"));
	/* Unknown hint pool. */
	t.no_hints = false;
	h.pool = "nope";
	assert_int_equal(router_route(&p, &t, &h, NULL, 0, &r), 0);
	assert_non_null(strstr(r.reason, "unknown"));
	/* No pool of the ladder allowed. */
	t.pool_mask = 1u << 0;
	assert_int_equal(router_route(&p, &t, NULL, NULL, 0, &r), -EACCES);
}

/* A view of n chains answering ans[i], `tokens` each. */
static void
view(struct sched_view *v, struct sched_chain *ch, size_t n, enum sched_algo algo,
    uint64_t tokens, const char *const *ans)
{
	size_t i;

	memset(v, 0, sizeof *v);
	memset(ch, 0, n * sizeof *ch);
	for (i = 0; i < n; i++) {
		ch[i].tokens = tokens;
		ch[i].answer = ans[i];
		ch[i].final_answer = "";
	}
	v->algo = algo;
	v->nchains = n;
	v->chains = ch;
}

static void
decision(struct sched_decision *d, bool stop, enum sched_reason r, double c, double agr,
    const char *ans)
{
	memset(d, 0, sizeof *d);
	d->stop = stop;
	d->reason = r;
	d->certaindex = c;
	d->agreement = agr;
	d->answer = ans;
}

static void
test_escalate_transitions(void **state)
{
	static const char *const one[] = { "3" }, *const three[] = { "3", "3", "5" };
	struct router_policy p;
	struct router_route r;
	struct router_state s;
	struct router_action a;
	struct sched_view v;
	struct sched_chain ch[3];
	struct sched_decision d;

	(void)state;
	policy(&p);
	assert_int_equal(router_route(&p, NULL, NULL, NULL, 0, &r), 0);
	router_start(&s, &r);
	assert_int_equal(s.state, ROUTER_ES_RUNNING);
	/* Continuing, short: nothing. */
	view(&v, ch, 1, SCHED_ALGO_COT, 4000, one);
	decision(&d, false, SCHED_REASON_NONE, 0.1, 1, "3");
	router_escalate(&p, NULL, &s, &v, &d, &a);
	assert_int_equal(a.act, ROUTER_ACT_NONE);
	/* Unpromising stop on a cot rung with an sc rung of the same pool next: FORK. */
	view(&v, ch, 1, SCHED_ALGO_COT, 6000, one);
	decision(&d, true, SCHED_REASON_UNPROMISING, 0.2, 1, "3");
	router_escalate(&p, NULL, &s, &v, &d, &a);
	assert_int_equal(a.act, ROUTER_ACT_FORK);
	assert_int_equal(a.rung, 1);
	assert_int_equal(a.algo, SCHED_ALGO_SC);
	assert_int_equal(a.n, 3);
	assert_int_equal(s.rung, 1);
	assert_int_equal(s.escalations, 1);
	assert_non_null(strstr(a.reason, "unpromising"));
	assert_int_equal(s.base, 6000);
	/* escalate.tokens counts on the rung: the forked chain 0 brought 6000 of them. */
	view(&v, ch, 3, SCHED_ALGO_SC, 8000, three);
	decision(&d, false, SCHED_REASON_NONE, 0.25, 0.67, "3");
	router_escalate(&p, NULL, &s, &v, &d, &a);
	assert_int_equal(a.act, ROUTER_ACT_NONE);
	/* 8000 past the rung's start with a low certaindex: SWITCH to pool b, from 0. */
	view(&v, ch, 3, SCHED_ALGO_SC, 14000, three);
	router_escalate(&p, NULL, &s, &v, &d, &a);
	assert_int_equal(a.act, ROUTER_ACT_SWITCH);
	assert_int_equal(a.budget, 30000);
	assert_int_equal(s.base, 0);
	assert_int_equal(a.rung, 2);
	assert_int_equal(a.pool, 3);
	assert_non_null(strstr(a.reason, "past 8000 tokens on the rung"));
	/* A certain stop is a stop. */
	decision(&d, true, SCHED_REASON_CERTAIN, 0.95, 1, "3");
	router_escalate(&p, NULL, &s, &v, &d, &a);
	assert_int_equal(a.act, ROUTER_ACT_STOP);
	assert_int_equal(s.state, ROUTER_ES_DONE);
	/* Done stays done. */
	decision(&d, true, SCHED_REASON_UNPROMISING, 0.1, 1, "3");
	router_escalate(&p, NULL, &s, &v, &d, &a);
	assert_int_equal(a.act, ROUTER_ACT_STOP);
	assert_int_equal(s.rung, 2);
}

static void
test_escalate_last_rung_and_tenant(void **state)
{
	static const char *const one[] = { "3" };
	struct router_policy p;
	struct router_route r;
	struct router_state s;
	struct router_action a;
	struct router_tenant t;
	struct sched_view v;
	struct sched_chain ch[1];
	struct sched_decision d;

	(void)state;
	policy(&p);
	memset(&r, 0, sizeof r);
	r.rung = 3;
	router_start(&s, &r);
	view(&v, ch, 1, SCHED_ALGO_COT, 20000, one);
	decision(&d, false, SCHED_REASON_NONE, 0.1, 1, "3");
	router_escalate(&p, NULL, &s, &v, &d, &a);
	assert_int_equal(a.act, ROUTER_ACT_NONE);       /* no rung above the last */
	decision(&d, true, SCHED_REASON_UNPROMISING, 0.1, 1, "3");
	router_escalate(&p, NULL, &s, &v, &d, &a);
	assert_int_equal(a.act, ROUTER_ACT_STOP);
	/* A tenant without escalation: an unpromising stop on rung 0 stays a stop. */
	memset(&t, 0, sizeof t);
	t.no_escalation = true;
	r.rung = 0;
	router_start(&s, &r);
	router_escalate(&p, &t, &s, &v, &d, &a);
	assert_int_equal(a.act, ROUTER_ACT_STOP);
	/* Tenants limited to pools a+b, then b+c: the next allowed rung decides fork or switch. */
	t.no_escalation = false;
	t.pool_mask = 1u << 2 | 1u << 3;
	router_start(&s, &r);
	router_escalate(&p, &t, &s, &v, &d, &a);
	assert_int_equal(a.act, ROUTER_ACT_FORK);      /* rung 1 is pool a too: allowed */
	t.pool_mask = 1u << 3 | 1u << 4;
	router_start(&s, &r);
	router_escalate(&p, &t, &s, &v, &d, &a);
	assert_int_equal(a.act, ROUTER_ACT_SWITCH);
	assert_int_equal(a.rung, 2);
}

/* A tenant's per-program quotas bound the router: rungs with more chains than max_n are
 * skipped (at the start and on escalation), routed budgets are capped to max_budget. */
static void
test_tenant_quota_bounds_routing(void **state)
{
	static const char *const one[] = { "3" };
	struct router_policy p;
	struct router_route r;
	struct router_state s;
	struct router_action a;
	struct router_tenant t;
	struct router_outcome nb[2];
	struct sched_view v;
	struct sched_chain ch[1];
	struct sched_decision d;

	(void)state;
	policy(&p);
	/* Hard neighbours start on rung 2 (b sc3); with one chain allowed: rung 3 (c cot). */
	nb[0] = hard(0.9);
	nb[1] = hard(0.8);
	memset(&t, 0, sizeof t);
	assert_int_equal(router_route(&p, &t, NULL, nb, 2, &r), 0);
	assert_int_equal(r.rung, 2);
	assert_int_equal(r.budget, 30000);
	t.max_budget = 20000;
	assert_int_equal(router_route(&p, &t, NULL, nb, 2, &r), 0);
	assert_int_equal(r.budget, 20000);          /* capped to the quota */
	t.max_n = 1;
	assert_int_equal(router_route(&p, &t, NULL, nb, 2, &r), 0);
	assert_int_equal(r.rung, 3);
	assert_int_equal(r.n, 1);
	assert_int_equal(r.budget, 0);              /* rung 3's own: the caller's default */
	/* Escalation from rung 0: the sc rungs 1 and 2 are skipped, rung 3 is a switch. */
	memset(&r, 0, sizeof r);
	router_start(&s, &r);
	view(&v, ch, 1, SCHED_ALGO_COT, 6000, one);
	decision(&d, true, SCHED_REASON_UNPROMISING, 0.2, 1, "3");
	router_escalate(&p, &t, &s, &v, &d, &a);
	assert_int_equal(a.act, ROUTER_ACT_SWITCH);
	assert_int_equal(a.rung, 3);
	assert_int_equal(a.n, 1);
	/* With three chains allowed and a budget quota: fork to rung 1, then switch to rung 2
	 * with its 30000 capped to 20000. */
	t.max_n = 3;
	router_start(&s, &r);
	router_escalate(&p, &t, &s, &v, &d, &a);
	assert_int_equal(a.act, ROUTER_ACT_FORK);
	assert_int_equal(a.rung, 1);
	router_escalate(&p, &t, &s, &v, &d, &a);
	assert_int_equal(a.act, ROUTER_ACT_SWITCH);
	assert_int_equal(a.rung, 2);
	assert_int_equal(a.budget, 20000);
	/* No rung fits two chains at most except the cot ones: from rung 3 nothing is left. */
	t.max_n = 2;
	r.rung = 3;
	router_start(&s, &r);
	router_escalate(&p, &t, &s, &v, &d, &a);
	assert_int_equal(a.act, ROUTER_ACT_STOP);
}

static void
test_escalate_drop(void **state)
{
	static const char *const three[] = { "3", "5", "3" };
	struct router_policy p;
	struct router_route r;
	struct router_state s;
	struct router_action a;
	struct sched_view v;
	struct sched_chain ch[3];
	struct sched_decision d;

	(void)state;
	policy(&p);
	memset(&r, 0, sizeof r);
	r.rung = 1;
	router_start(&s, &r);
	view(&v, ch, 3, SCHED_ALGO_SC, 2000, three);
	decision(&d, false, SCHED_REASON_NONE, 0.8, 0.67, "3");
	router_escalate(&p, NULL, &s, &v, &d, &a);
	assert_int_equal(a.act, ROUTER_ACT_NONE);       /* certaindex below drop.certaindex */
	decision(&d, false, SCHED_REASON_NONE, 0.95, 0.67, "3");
	router_escalate(&p, NULL, &s, &v, &d, &a);
	assert_int_equal(a.act, ROUTER_ACT_DROP);
	assert_int_equal(a.keep, 0x5);                  /* chains 0 and 2 agree */
	assert_int_equal(s.state, ROUTER_ES_DROPPED);
	/* Dropped: no further drop and no escalation. */
	decision(&d, true, SCHED_REASON_UNPROMISING, 0.1, 1, "3");
	router_escalate(&p, NULL, &s, &v, &d, &a);
	assert_int_equal(a.act, ROUTER_ACT_STOP);
	assert_int_equal(s.state, ROUTER_ES_DONE);
}

/* A struggling program on a MoE pool raises its top-p (0 -> moe.first, then + moe.step, up to
 * moe.max_top_p), keeping rung and chains, before it escalates; a dense pool never raises. */
static void
test_escalate_raise_top_p(void **state)
{
	static const char *const one[] = { "3" };
	static const char text[] =
	    "pool.a = model-a 1 moe\n"
	    "moe.tokens = 1000\nmoe.first = 0.7\nmoe.step = 0.2\nmoe.max_top_p = 0.95\n";
	struct router_policy p, q;
	struct router_route r;
	struct router_state s;
	struct router_action a;
	struct router_tenant t;
	struct sched_view v;
	struct sched_chain ch[1];
	struct sched_decision d;
	char buf[2048], err[256];
	size_t n;

	(void)state;
	policy(&p);
	/* Dense pool a: the token escalation at 8000, never a raise. */
	assert_false(p.pools[2].moe);
	memset(&r, 0, sizeof r);
	router_start(&s, &r);
	view(&v, ch, 1, SCHED_ALGO_COT, 1500, one);
	decision(&d, false, SCHED_REASON_NONE, 0.1, 1, "3");
	router_escalate(&p, NULL, &s, &v, &d, &a);
	assert_int_equal(a.act, ROUTER_ACT_NONE);
	p.moe_tokens = 1000;
	router_escalate(&p, NULL, &s, &v, &d, &a);
	assert_int_equal(a.act, ROUTER_ACT_NONE);
	/* Pool a marked moe. */
	assert_int_equal(router_policy_parse(text, strlen(text), "t", &p, err, sizeof err), 0);
	assert_true(p.pools[2].moe);
	n = router_policy_format(&p, buf, sizeof buf);
	assert_non_null(strstr(buf, "pool.a = model-a 1 moe\n"));
	router_policy_default(&q);
	assert_int_equal(router_policy_parse(buf, n, NULL, &q, err, sizeof err), 0);
	assert_memory_equal(&p, &q, sizeof p);
	router_start(&s, &r);
	/* Below moe.tokens, or certain enough: nothing. */
	view(&v, ch, 1, SCHED_ALGO_COT, 900, one);
	router_escalate(&p, NULL, &s, &v, &d, &a);
	assert_int_equal(a.act, ROUTER_ACT_NONE);
	view(&v, ch, 1, SCHED_ALGO_COT, 1500, one);
	decision(&d, false, SCHED_REASON_NONE, 0.5, 1, "3");
	router_escalate(&p, NULL, &s, &v, &d, &a);
	assert_int_equal(a.act, ROUTER_ACT_NONE);
	/* A tenant without escalation does not raise either. */
	memset(&t, 0, sizeof t);
	t.no_escalation = true;
	decision(&d, false, SCHED_REASON_NONE, 0.1, 1, "3");
	router_escalate(&p, &t, &s, &v, &d, &a);
	assert_int_equal(a.act, ROUTER_ACT_NONE);
	/* Struggling: trained top-k (0) -> 0.7, same rung, chains kept, base moves. */
	router_escalate(&p, NULL, &s, &v, &d, &a);
	assert_int_equal(a.act, ROUTER_ACT_RAISE_TOP_P);
	assert_true(a.moe_top_p > 0.69 && a.moe_top_p < 0.71);
	assert_int_equal(a.rung, 0);
	assert_int_equal(a.n, 1);
	assert_int_equal(s.rung, 0);
	assert_int_equal(s.escalations, 0);
	assert_int_equal(s.base, 1500);
	assert_int_equal(s.state, ROUTER_ES_RUNNING);
	assert_non_null(strstr(a.reason, "raise top-p 0 -> 0.7 on rung 0 (a, moe)"));
	assert_string_equal(router_act_name(a.act), "raise");
	/* moe.tokens counts from the raise. */
	view(&v, ch, 1, SCHED_ALGO_COT, 2400, one);
	router_escalate(&p, NULL, &s, &v, &d, &a);
	assert_int_equal(a.act, ROUTER_ACT_NONE);
	view(&v, ch, 1, SCHED_ALGO_COT, 2500, one);
	router_escalate(&p, NULL, &s, &v, &d, &a);
	assert_int_equal(a.act, ROUTER_ACT_RAISE_TOP_P);
	assert_true(a.moe_top_p > 0.899 && a.moe_top_p < 0.901);
	/* Capped at moe.max_top_p: 0.9 -> 0.95, then no more. */
	view(&v, ch, 1, SCHED_ALGO_COT, 3500, one);
	router_escalate(&p, NULL, &s, &v, &d, &a);
	assert_int_equal(a.act, ROUTER_ACT_RAISE_TOP_P);
	assert_true(a.moe_top_p > 0.949 && a.moe_top_p < 0.951);
	view(&v, ch, 1, SCHED_ALGO_COT, 9000, one);
	router_escalate(&p, NULL, &s, &v, &d, &a);
	assert_int_equal(a.act, ROUTER_ACT_NONE);        /* 5500 past the last raise < 8000 */
	/* At the cap the token escalation goes on: 8000 past the last raise, FORK to a sc3. */
	view(&v, ch, 1, SCHED_ALGO_COT, 11500, one);
	router_escalate(&p, NULL, &s, &v, &d, &a);
	assert_int_equal(a.act, ROUTER_ACT_FORK);
	assert_true(s.top_p == 0);                        /* rung 1's top-p */
	/* A stop is never turned into a raise. */
	router_start(&s, &r);
	decision(&d, true, SCHED_REASON_CERTAIN, 0.1, 1, "3");
	router_escalate(&p, NULL, &s, &v, &d, &a);
	assert_int_equal(a.act, ROUTER_ACT_STOP);
	/* A hinted top-p is where it rises from. */
	r.moe_top_p = 0.5;
	router_start(&s, &r);
	decision(&d, false, SCHED_REASON_NONE, 0.1, 1, "3");
	router_escalate(&p, NULL, &s, &v, &d, &a);
	assert_int_equal(a.act, ROUTER_ACT_RAISE_TOP_P);
	assert_true(a.moe_top_p > 0.69 && a.moe_top_p < 0.71);
	/* Bad values are refused. */
	assert_int_equal(router_policy_parse("moe.step = 0\n", 13, "f", &q, err, sizeof err),
	    CERTA_ECONFIG);
	assert_int_equal(router_policy_parse("pool.a = m 1 dense\n", 19, "f", &q, err,
	    sizeof err), CERTA_ECONFIG);
}

static void
test_state_table(void **state)
{
	(void)state;
	assert_true(router_state_legal(ROUTER_ES_NEW, ROUTER_ES_RUNNING));
	assert_true(router_state_legal(ROUTER_ES_RUNNING, ROUTER_ES_DROPPED));
	assert_true(router_state_legal(ROUTER_ES_DROPPED, ROUTER_ES_DONE));
	assert_false(router_state_legal(ROUTER_ES_DROPPED, ROUTER_ES_RUNNING));
	assert_false(router_state_legal(ROUTER_ES_DONE, ROUTER_ES_RUNNING));
	assert_false(router_state_legal(ROUTER_ES_RUNNING, ROUTER_ES_NEW));
	assert_false(router_state_legal(ROUTER_ES_COUNT, ROUTER_ES_DONE));
	assert_string_equal(router_state_name(ROUTER_ES_DROPPED), "dropped");
	assert_string_equal(router_act_name(ROUTER_ACT_FORK), "fork");
}

static void
test_policy_text(void **state)
{
	struct router_policy p, q;
	char buf[2048], err[256];
	size_t n;

	(void)state;
	policy(&p);
	n = router_policy_format(&p, buf, sizeof buf);
	assert_true(n < sizeof buf);
	assert_int_equal(router_policy_format(&p, NULL, 0), n);
	router_policy_default(&q);
	assert_int_equal(router_policy_parse(buf, n, NULL, &q, err, sizeof err), 0);
	assert_memory_equal(&p, &q, sizeof p);
	/* Errors name the line; *p is unchanged. */
	assert_int_equal(router_policy_parse("knn.k = 3\nbogus = 1\n", 20, "f", &q, err,
	    sizeof err), CERTA_ECONFIG);
	assert_string_equal(err, "f:2: bogus: unknown key");
	assert_memory_equal(&p, &q, sizeof p);
	assert_int_equal(router_policy_parse("rung.0 = zz cot 1\n", 18, "f", &q, err,
	    sizeof err), CERTA_ECONFIG);
	assert_int_equal(router_policy_parse("rung.1 = a cot 1\n", 17, "f", &q, err,
	    sizeof err), CERTA_ECONFIG);
	assert_non_null(strstr(err, "gaps"));
	assert_int_equal(router_policy_parse("rung.0 = a cot 3\n", 17, "f", &q, err,
	    sizeof err), CERTA_ECONFIG);
	assert_int_equal(router_policy_parse("hard.rung = 9\n", 14, "f", &q, err, sizeof err),
	    CERTA_ECONFIG);
	router_policy_default(&q);
	assert_int_equal(router_policy_validate(&q, err, sizeof err), 0);
}

/* policy/route.policy (what certa-eval route wrote) is the built-in default. */
static void
test_shipped_file_matches_builtin(void **state)
{
	struct router_policy builtin, file;
	char err[256], *text = NULL;
	size_t len;
	int rc;

	(void)state;
	router_policy_default(&builtin);
	/* Start from nothing so every pool, rung and key must come from the file. */
	memset(&file, 0, sizeof file);
	rc = fileio_read("policy/route.policy", ROUTER_TEXT_MAX, &text, &len, err, sizeof err);
	if (rc == -ENOENT)
		rc = fileio_read("../policy/route.policy", ROUTER_TEXT_MAX, &text, &len, err,
		    sizeof err);
	if (rc == 0) {
		rc = router_policy_parse(text, len, "route.policy", &file, err, sizeof err);
		free(text);
	}
	if (rc != 0)
		fail_msg("policy/route.policy: %s", err);
	assert_memory_equal(&builtin, &file, sizeof file);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_route_empty_history),
		cmocka_unit_test(test_route_neighbours),
		cmocka_unit_test(test_route_hints_and_tenants),
		cmocka_unit_test(test_escalate_transitions),
		cmocka_unit_test(test_escalate_last_rung_and_tenant),
		cmocka_unit_test(test_tenant_quota_bounds_routing),
		cmocka_unit_test(test_escalate_drop),
		cmocka_unit_test(test_escalate_raise_top_p),
		cmocka_unit_test(test_state_table),
		cmocka_unit_test(test_policy_text),
		cmocka_unit_test(test_shipped_file_matches_builtin),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
