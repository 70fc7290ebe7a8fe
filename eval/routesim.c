/*
 * routesim.c — routing and escalation replayed on recorded traces (routesim.h).
 */
#include "eval/routesim.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "eval/evalsim.h"
#include "lib/array.h"
#include "lib/error.h"
#include "lib/strmap.h"
#include "scheduler/answer.h"
#include "scheduler/knn.h"

#define ROUTESIM_MAX_CHAINS 16
#define ROUTESIM_MAX_HITS 64

struct routesim_problem {
	const char *text;
	const struct traces_program *prog[ROUTER_MAX_POOLS];
	struct router_outcome hist[ROUTER_MAX_POOLS];
	bool hist_correct[ROUTER_MAX_POOLS];
	struct knn_hit hits[ROUTESIM_MAX_HITS];  /* nearest other problems, computed once */
	size_t nhits;
};

struct routesim {
	struct sched_policy sp[ROUTER_MAX_POOLS];   /* per pool: its model's model_tokens */
	size_t npools;
	struct routesim_problem *pr;
	size_t n;
	struct knn *knn;
};

void
routesim_free(struct routesim *s)
{
	if (s == NULL)
		return;
	knn_free(s->knn);
	free(s->pr);
	free(s);
}

size_t
routesim_count(const struct routesim *s)
{
	return s->n;
}

const char *
routesim_problem(const struct routesim *s, size_t i)
{
	return s->pr[i].text;
}

void
routesim_history(const struct routesim *s, size_t i, size_t pool, struct router_outcome *o,
    bool *correct)
{
	*o = s->pr[i].hist[pool];
	*correct = s->pr[i].hist_correct[pool];
}

int
routesim_new(const struct traces *tr, const struct sched_policy *sp,
    const struct router_policy *rp, struct routesim **out)
{
	struct routesim *s;
	struct strmap *idx;
	size_t i, cap = 0, all = 0, p;
	int rc = -ENOMEM;

	s = calloc(1, sizeof *s);
	idx = strmap_new();
	if (s == NULL || idx == NULL)
		goto fail_map;
	s->npools = rp->npools;
	if (s->npools > ROUTER_MAX_POOLS) {
		rc = -EINVAL;
		goto fail_map;
	}
	for (p = 0; p < s->npools; p++)
		evalsim_model_policy(tr, sp, rp->pools[p].model, &s->sp[p]);
	for (i = 0; i < traces_program_count(tr); i++) {
		const struct traces_program *prog = traces_program_at(tr, i);
		int pool = router_pool_of_model(rp, prog->model);
		uintptr_t k;

		if (pool < 0 || prog->nsamples < ROUTESIM_SAMPLES)
			continue;
		k = (uintptr_t)strmap_get(idx, prog->problem);
		if (k == 0) {
			if (ARRAY_GROW(s->pr, cap, s->n + 1) != 0)
				goto fail_map;
			memset(&s->pr[s->n], 0, sizeof s->pr[s->n]);
			s->pr[s->n].text = prog->problem;
			k = ++s->n;
			if (strmap_put(idx, prog->problem, (void *)k, NULL) != 0)
				goto fail_map;
		}
		if (s->pr[k - 1].prog[pool] == NULL)
			s->pr[k - 1].prog[pool] = prog;
	}
	/* Keep the problems every pool has, in first-seen order. */
	for (i = 0; i < s->n; i++) {
		bool ok = true;
		for (p = 0; p < s->npools; p++)
			ok = ok && s->pr[i].prog[p] != NULL;
		if (ok)
			s->pr[all++] = s->pr[i];
	}
	s->n = all;
	if (s->n == 0) {
		rc = CERTA_ENOTFOUND;
		goto fail_map;
	}
	s->knn = knn_new();
	if (s->knn == NULL)
		goto fail_map;
	for (i = 0; i < s->n; i++) {
		rc = knn_add(s->knn, s->pr[i].text, i);
		if (rc != 0)
			goto fail_map;
		for (p = 0; p < s->npools; p++) {
			struct evalsim_outcome o;
			struct router_outcome *h = &s->pr[i].hist[p];

			rc = evalsim_run(&s->sp[p], s->pr[i].prog[p], SCHED_ALGO_COT, 1, &o, NULL);
			if (rc != 0)
				goto fail_map;
			memset(h, 0, sizeof *h);
			h->tokens = o.decode_tokens;
			h->most = o.stop_tokens;
			h->reason = o.reason;
			h->agreement = 1;
			s->pr[i].hist_correct[p] = o.correct;
		}
	}
	for (i = 0; i < s->n; i++) {
		rc = knn_query(s->knn, s->pr[i].text, ROUTESIM_MAX_HITS, 1, i, s->pr[i].hits,
		    &s->pr[i].nhits);
		if (rc != 0)
			goto fail_map;
	}
	strmap_free(idx, NULL);
	*out = s;
	return 0;
fail_map:
	strmap_free(idx, NULL);
	routesim_free(s);
	return rc;
}

/* Starts chain c on sample `sample` of prog from token 0. */
static int
routesim_chain_start(struct evalsim_chain *st, struct sched_chain *ch,
    const struct traces_program *prog, size_t sample)
{
	memset(ch, 0, sizeof *ch);
	st->t = prog->samples[sample];
	st->nprobes = 0;
	ch->answer = "";
	ch->final_answer = "";
	ch->text = st->t->text;
	ch->probes = st->probes;
	return 0;
}

int
routesim_run(struct routesim *s, const struct router_policy *rp, size_t pi,
    struct routesim_outcome *out)
{
	struct routesim_problem *pr = &s->pr[pi];
	struct evalsim_chain st[ROUTESIM_MAX_CHAINS];
	struct sched_chain ch[ROUTESIM_MAX_CHAINS];
	struct router_outcome nb[ROUTESIM_MAX_HITS * ROUTER_MAX_POOLS];
	struct sched_state ss = { SCHED_PS_NEW };
	struct router_state rs;
	struct router_route route;
	struct sched_decision d;
	struct router_action act;
	struct sched_view v;
	size_t nhits = 0, nnb = 0, i, p, nch;
	const struct knn_hit *hits = pr->hits;
	uint64_t spent[ROUTER_MAX_POOLS] = { 0 }, probes[ROUTER_MAX_POOLS] = { 0 };
	uint32_t pool;
	int rc = 0;

	memset(st, 0, sizeof st);
	if (rp->k > 0)
		nhits = rp->k < pr->nhits ? rp->k : pr->nhits;
	for (i = 0; i < nhits; i++)
		for (p = 0; p < s->npools; p++) {
			nb[nnb] = s->pr[hits[i].tag].hist[p];
			nb[nnb++].sim = hits[i].sim;
		}
	rc = router_route(rp, NULL, NULL, nb, nnb, &route);
	if (rc != 0)
		return rc;
	router_start(&rs, &route);
	memset(out, 0, sizeof *out);
	out->start_rung = route.rung;
	pool = route.pool;
	nch = route.n;
	for (i = 0; i < ROUTESIM_MAX_CHAINS; i++) {
		st[i].cap = 64;
		st[i].probes = calloc(st[i].cap, sizeof *st[i].probes);
		if (st[i].probes == NULL) {
			rc = -ENOMEM;
			goto fail_chains;
		}
	}
	if (nch > pr->prog[pool]->nsamples)
		nch = pr->prog[pool]->nsamples;
	for (i = 0; i < nch; i++)
		routesim_chain_start(&st[i], &ch[i], pr->prog[pool], i);
	memset(&v, 0, sizeof v);
	v.algo = route.algo;
	v.budget = route.budget ? route.budget : UINT64_MAX / 4;
	v.problem = pr->text;
	v.chains = ch;
	v.nchains = nch;
	v.state = &ss;
	for (;;) {
		sched_decide(&s->sp[pool], &v, &d);
		router_escalate(rp, NULL, &rs, &v, &d, &act);
		if (act.act == ROUTER_ACT_STOP)
			break;
		if (act.act == ROUTER_ACT_FORK) {
			for (i = 1; i < act.n && i < ROUTESIM_MAX_CHAINS &&
			    i < pr->prog[pool]->nsamples; i++)
				routesim_chain_start(&st[i], &ch[i], pr->prog[pool], i);
			nch = i;
			v.nchains = nch;
			v.algo = act.algo;
			v.budget = act.budget ? act.budget : UINT64_MAX / 4;
			ss.state = SCHED_PS_NEW;
			continue;
		}
		if (act.act == ROUTER_ACT_SWITCH) {
			spent[pool] += sched_tokens_used(&v);
			pool = act.pool;
			nch = act.n < ROUTESIM_MAX_CHAINS ? act.n : ROUTESIM_MAX_CHAINS;
			if (nch > pr->prog[pool]->nsamples)
				nch = pr->prog[pool]->nsamples;
			for (i = 0; i < nch; i++)
				routesim_chain_start(&st[i], &ch[i], pr->prog[pool], i);
			v.nchains = nch;
			v.algo = act.algo;
			v.budget = act.budget ? act.budget : UINT64_MAX / 4;
			ss.state = SCHED_PS_NEW;
			continue;
		}
		if (act.act == ROUTER_ACT_DROP) {
			size_t k = 0;
			for (i = 0; i < nch; i++) {
				if ((act.keep >> i & 1u) == 0) {
					spent[pool] += ch[i].tokens;
					continue;
				}
				if (k != i) {
					struct evalsim_chain tmp = st[k];
					st[k] = st[i];
					st[i] = tmp;
					ch[k] = ch[i];
				}
				k++;
			}
			for (i = 0; i < k; i++)
				ch[i].probes = st[i].probes;
			nch = k;
			v.nchains = nch;
			out->dropped = true;
			continue;
		}
		for (i = 0; i < nch; i++) {
			if (ch[i].finished)
				continue;
			rc = evalsim_chain_advance(&st[i], &ch[i], d.step_tokens, &probes[pool]);
			if (rc != 0)
				goto fail_chains;
		}
	}
	spent[pool] += sched_tokens_used(&v);
	for (p = 0; p < s->npools; p++) {
		out->tokens += spent[p] + probes[p];
		out->cost += (double)(spent[p] + probes[p]) * rp->pools[p].cost;
	}
	out->answer = d.answer;
	out->correct = d.answer[0] != '\0' && answer_equivalent(d.answer, pr->prog[pool]->target);
	out->end_rung = rs.rung;
	out->escalations = rs.escalations;
	out->reason = d.reason;
fail_chains:
	for (i = 0; i < ROUTESIM_MAX_CHAINS; i++)
		free(st[i].probes);
	return rc;
}
