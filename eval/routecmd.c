/*
 * routecmd.c — `certa-eval route` (routecmd.h): fixed choices, oracle, the routing sweep and
 * its frontier, out-of-fold calibration of the routing policy.
 */
#include "eval/routecmd.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/evalsim.h"
#include "eval/routesim.h"
#include "lib/error.h"
#include "lib/fileio.h"
#include "lib/log.h"
#include "lib/traces.h"
#include "scheduler/policy.h"
#include "scheduler/router.h"

#define ROUTECMD_MAX_CANDS 1024

/* One candidate routing policy and its per-problem results. */
struct routecmd_cand {
	struct router_policy rp;
	char label[160];
	unsigned char *ok;
	double *cost;
	double *tokens;
	unsigned *esc;
	double acc, mcost, mtokens;  /* over all problems */
	bool frontier;
};

struct routecmd_opts {
	const char *dir, *policy, *route_policy, *out;
	unsigned folds;
	double min_acc;           /* fraction; < 0: the target's accuracy on the same problems */
	double z;                 /* standard errors of margin when picking (--z) */
	bool no_sweep;            /* only the given policy */
	bool target_policy;       /* target: the best fixed choice with the certainty policy
	                           * (else: the best full-run fixed choice, the floor) */
	const char *costs[ROUTER_MAX_POOLS];
	size_t ncosts;
};

static void
routecmd_usage(FILE *f)
{
	fprintf(f, "usage: certa-eval route --traces DIR [--policy FILE] [--route-policy FILE]\n"
	    "           [--cost POOL=W]... [--folds 5] [--target full|policy]\n"
	    "           [--min-accuracy PCT] [--z Z] [--out FILE] [--no-sweep]\n");
}

static int
routecmd_read(const char *path, size_t max, char **text, size_t *len)
{
	char err[256];
	int rc = fileio_read(path, max, text, len, err, sizeof err);

	if (rc != 0)
		fprintf(stderr, "certa-eval: %s\n", err);
	return rc;
}

/* Label of a ladder: "qwen3-8b cot > r1-7b sc3". */
static void
routecmd_label(const struct router_policy *rp, char *buf, size_t len)
{
	size_t i, n = 0;

	buf[0] = '\0';
	for (i = 0; i < rp->nrungs && n < len; i++) {
		const struct router_rung *r = &rp->rungs[i];
		n += (size_t)snprintf(buf + n, len - n, "%s%s%s %s", i > 0 ? " > " : "",
		    i > 0 && rp->hard_threshold <= 1 && rp->hard_rung == i ? "[hard]" : "",
		    rp->pools[r->pool].name, r->algo == SCHED_ALGO_SC ? "sc3" : "cot");
		if (r->budget > 0 && n < len)
			n += (size_t)snprintf(buf + n, len - n, "/%llu",
			    (unsigned long long)r->budget);
	}
	if (n < len && rp->hard_threshold <= 1)
		n += (size_t)snprintf(buf + n, len - n, "; hard>=%.2f", rp->hard_threshold);
	if (n < len && rp->escalate_tokens > 0)
		snprintf(buf + n, len - n, "; esc@%llu", (unsigned long long)rp->escalate_tokens);
}

/* Runs every problem under c->rp. */
static int
routecmd_run(struct routesim *s, struct routecmd_cand *c)
{
	size_t n = routesim_count(s), i, ok = 0;
	double cost = 0, tok = 0;
	int rc;

	c->ok = calloc(n, 1);
	c->cost = calloc(n, sizeof *c->cost);
	c->tokens = calloc(n, sizeof *c->tokens);
	c->esc = calloc(n, sizeof *c->esc);
	if (c->ok == NULL || c->cost == NULL || c->tokens == NULL || c->esc == NULL)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		struct routesim_outcome o;

		rc = routesim_run(s, &c->rp, i, &o);
		if (rc != 0)
			return rc;
		c->ok[i] = o.correct;
		c->cost[i] = o.cost;
		c->tokens[i] = (double)o.tokens;
		c->esc[i] = o.escalations;
		ok += o.correct;
		cost += o.cost;
		tok += (double)o.tokens;
	}
	c->acc = (double)ok / (double)n;
	c->mcost = cost / (double)n;
	c->mtokens = tok / (double)n;
	return 0;
}

static void
routecmd_cand_free(struct routecmd_cand *c)
{
	free(c->ok);
	free(c->cost);
	free(c->tokens);
	free(c->esc);
}

/* The candidate ladders: every sequence of 1..3 distinct rungs (pool x {cot, sc3}) starting
 * with a cot rung, an sc rung never followed by a cot rung, no two cot rungs after the first;
 * each with the hard-start and length-escalation variants, and ladders with an sc rung also
 * with every sc rung's budget capped at 3 x 8192 (hard start off or at 0.40).  Returns the
 * number written. */
static size_t
routecmd_candidates(const struct router_policy *base, struct routecmd_cand *out, size_t max)
{
	static const double hard_th[] = { 1.5, 0.25, 0.4, 0.55, 0.7 };
	static const uint64_t esc_tok[] = { 0, 4096, 8192, 12288 };
	static const uint64_t sc_budget[] = { 0, 3 * 8192 };
	struct router_rung r[2 * ROUTER_MAX_POOLS];
	size_t nr = 0, n = 0, a, b, c, h, e, len, bi;

	for (a = 0; a < base->npools; a++) {
		r[nr++] = (struct router_rung){ (uint32_t)a, SCHED_ALGO_COT, 1, 0, 0 };
		r[nr++] = (struct router_rung){ (uint32_t)a, SCHED_ALGO_SC, 3, 0, 0 };
	}
	for (a = 0; a < nr; a++)
		for (b = 0; b <= nr; b++)
			for (c = 0; c <= nr; c++) {
				size_t idx[3] = { a, b, c };
				len = b == nr ? 1 : c == nr ? 2 : 3;
				if (b == nr && c != nr)
					continue;
				if ((len >= 2 && (b == a)) || (len == 3 && (c == a || c == b)))
					continue;
				if (len >= 2 && r[a].algo == SCHED_ALGO_SC)
					continue;
				if (len == 3 && r[b].algo == SCHED_ALGO_SC &&
				    r[c].algo == SCHED_ALGO_COT)
					continue;
				if (len >= 2 && r[b].algo == SCHED_ALGO_COT && len == 3 &&
				    r[c].algo == SCHED_ALGO_COT)
					continue;
				for (bi = 0; bi < 2; bi++)
				for (h = 0; h < sizeof hard_th / sizeof hard_th[0]; h++)
					for (e = 0; e < sizeof esc_tok / sizeof esc_tok[0]; e++) {
						struct router_policy *rp;
						size_t i;
						bool has_sc = false;
						if (len == 1 && (h > 0 || e > 0 || bi > 0))
							continue;
						for (i = 0; i < len; i++)
							has_sc = has_sc ||
							    r[idx[i]].algo == SCHED_ALGO_SC;
						if (bi > 0 && (!has_sc || (h != 0 && h != 2)))
							continue;
						if (n == max)
							return n;
						rp = &out[n].rp;
						*rp = *base;
						rp->nrungs = len;
						for (i = 0; i < len; i++) {
							rp->rungs[i] = r[idx[i]];
							if (rp->rungs[i].algo == SCHED_ALGO_SC)
								rp->rungs[i].budget =
								    sc_budget[bi];
						}
						rp->hard_threshold = hard_th[h];
						rp->hard_rung = h > 0 ? 1 : 0;
						rp->escalate_tokens = esc_tok[e];
						rp->escalate_unpromising = true;
						if (len == 1)
							rp->k = 0;
						routecmd_label(rp, out[n].label,
						    sizeof out[n].label);
						n++;
					}
			}
	return n;
}

/* Index of the cheapest candidate whose accuracy over the problems with fold != skip (all
 * when skip >= folds) reaches min_acc (an operator's explicit accuracy: a plain comparison),
 * or (min_acc < 0) the accuracy ref_ok has there (the target fixed choice) with a margin of
 * z standard errors of the paired per-problem difference (candidate and reference on the
 * same problems; the stop policy's calibration uses z = 1 too), so that a candidate is not
 * picked for beating the reference by two problems on these folds.  z = 0: the plain
 * comparison.  -1 if none. */
static long
routecmd_pick(const struct routecmd_cand *c, size_t nc, const unsigned *fold, size_t n,
    unsigned skip, const unsigned char *ref_ok, double min_acc, double z)
{
	long best = -1;
	double best_cost = 0;
	size_t k, i;

	for (k = 0; k < nc; k++) {
		double ok = 0, ref = 0, cost = 0, m = 0, d2 = 0, lb;
		for (i = 0; i < n; i++) {
			if (fold[i] == skip)
				continue;
			ok += c[k].ok[i];
			ref += ref_ok[i];
			d2 += ((double)c[k].ok[i] - ref_ok[i]) * ((double)c[k].ok[i] - ref_ok[i]);
			cost += c[k].cost[i];
			m++;
		}
		if (m == 0)
			continue;
		if (min_acc >= 0) {
			if (ok / m < min_acc - 1e-12)
				continue;
		} else {
			/* paired with the reference on the same problems: mean difference less z
			 * standard errors of it must not be below 0 */
			double md = (ok - ref) / m, var = m > 1 ? (d2 / m - md * md) * m / (m - 1) : 0;
			lb = md - z * sqrt(var > 0 ? var / m : 0);
			if (lb < -1e-12)
				continue;
		}
		if (best < 0 || cost / m < best_cost) {
			best = (long)k;
			best_cost = cost / m;
		}
	}
	return best;
}

static int
routecmd_cmp_cost(const void *a, const void *b)
{
	const struct routecmd_cand *x = *(const struct routecmd_cand *const *)a;
	const struct routecmd_cand *y = *(const struct routecmd_cand *const *)b;

	if (x->mcost != y->mcost)
		return x->mcost < y->mcost ? -1 : 1;
	return x->acc > y->acc ? -1 : x->acc < y->acc;
}

static int
routecmd_parse(int argc, char **argv, struct routecmd_opts *o)
{
	int i;

	memset(o, 0, sizeof *o);
	o->dir = getenv("CERTA_TRACES");
	o->folds = 5;
	o->z = 1.0;
	o->min_acc = -1;
	for (i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			routecmd_usage(stdout);
			return 1;
		}
		if (strcmp(a, "--no-sweep") == 0) {
			o->no_sweep = true;
			continue;
		}
		if (v == NULL)
			goto fail_usage;
		i++;
		if (strcmp(a, "--traces") == 0)
			o->dir = v;
		else if (strcmp(a, "--policy") == 0)
			o->policy = v;
		else if (strcmp(a, "--route-policy") == 0)
			o->route_policy = v;
		else if (strcmp(a, "--out") == 0)
			o->out = v;
		else if (strcmp(a, "--folds") == 0)
			o->folds = (unsigned)strtoul(v, NULL, 10);
		else if (strcmp(a, "--z") == 0)
			o->z = strtod(v, NULL);
		else if (strcmp(a, "--min-accuracy") == 0)
			o->min_acc = strtod(v, NULL) / 100.0;
		else if (strcmp(a, "--target") == 0 && (strcmp(v, "full") == 0 ||
		    strcmp(v, "policy") == 0))
			o->target_policy = strcmp(v, "policy") == 0;
		else if (strcmp(a, "--cost") == 0 && o->ncosts < ROUTER_MAX_POOLS)
			o->costs[o->ncosts++] = v;
		else
			goto fail_usage;
	}
	if (o->dir == NULL || o->dir[0] == '\0') {
		fprintf(stderr, "certa-eval: no traces directory (--traces DIR or CERTA_TRACES)\n");
		return 2;
	}
	if (!(o->z >= 0 && o->z <= 5)) {
		fprintf(stderr, "certa-eval: --z must be in [0, 5]\n");
		return -1;
	}
	if (o->folds < 2 || o->folds > 20) {
		fprintf(stderr, "certa-eval: --folds must be in [2, 20]\n");
		return 2;
	}
	return 0;
fail_usage:
	routecmd_usage(stderr);
	return 2;
}

/* Loads the policies and applies --cost; returns 0 or an exit status. */
static int
routecmd_policies(const struct routecmd_opts *o, struct sched_policy *sp,
    struct router_policy *rp)
{
	char err[512], *text;
	size_t len, i;

	sched_policy_default(sp);
	router_policy_default(rp);
	if (o->policy != NULL) {
		if (routecmd_read(o->policy, POLICY_TEXT_MAX, &text, &len) != 0)
			return 1;
		if (policy_parse(text, len, o->policy, sp, err, sizeof err) != 0) {
			fprintf(stderr, "certa-eval: %s\n", err);
			free(text);
			return 1;
		}
		free(text);
	}
	if (o->route_policy != NULL) {
		if (routecmd_read(o->route_policy, ROUTER_TEXT_MAX, &text, &len) != 0)
			return 1;
		if (router_policy_parse(text, len, o->route_policy, rp, err, sizeof err) != 0) {
			fprintf(stderr, "certa-eval: %s\n", err);
			free(text);
			return 1;
		}
		free(text);
	}
	for (i = 0; i < o->ncosts; i++) {
		char name[ROUTER_NAME_MAX];
		const char *eq = strchr(o->costs[i], '=');
		double w = eq != NULL ? strtod(eq + 1, NULL) : 0;
		int p;

		if (eq == NULL || (size_t)(eq - o->costs[i]) >= sizeof name || !(w > 0)) {
			fprintf(stderr, "certa-eval: --cost wants POOL=WEIGHT (> 0)\n");
			return 2;
		}
		memcpy(name, o->costs[i], (size_t)(eq - o->costs[i]));
		name[eq - o->costs[i]] = '\0';
		p = router_pool_find(rp, name);
		if (p < 0) {
			fprintf(stderr, "certa-eval: --cost: no pool '%s'\n", name);
			return 2;
		}
		rp->pools[p].cost = w;
	}
	return 0;
}

/* The fixed choices without the certainty policy (full runs) and the oracle over them: the
 * issue's table, to check the data. */
static void
routecmd_full_table(const struct traces *tr, const struct routesim *s,
    const struct router_policy *rp, unsigned char *best_ok)
{
	size_t n = routesim_count(s), i, p, a;
	double ok[ROUTER_MAX_POOLS][2] = { { 0 } }, tok[ROUTER_MAX_POOLS][2] = { { 0 } };
	double ook = 0, otok = 0, best = -1;
	size_t bp = 0, ba = 0;

	for (i = 0; i < n; i++) {
		double cheapest_ok = -1, cheapest = -1;
		for (p = 0; p < rp->npools; p++) {
			const struct trace *const *smp;
			size_t ns;
			struct traces_program prog;
			if (traces_find_exact(tr, rp->pools[p].model, routesim_problem(s, i), &smp,
			    &ns) != 0)
				continue;
			memset(&prog, 0, sizeof prog);
			prog.problem = routesim_problem(s, i);
			prog.target = smp[0]->target;
			prog.samples = smp;
			prog.nsamples = ns;
			for (a = 0; a < 2; a++) {
				struct evalsim_full f;
				double c;
				evalsim_reference(&prog, a == 0 ? 1 : 3, &f);
				c = (double)f.tokens * rp->pools[p].cost;
				ok[p][a] += f.correct;
				tok[p][a] += c;
				if (f.correct && (cheapest_ok < 0 || c < cheapest_ok))
					cheapest_ok = c;
				if (cheapest < 0 || c < cheapest)
					cheapest = c;
			}
		}
		ook += cheapest_ok >= 0;
		otok += cheapest_ok >= 0 ? cheapest_ok : cheapest;
	}
	printf("fixed choices, full runs (no certainty policy), %zu problems:\n", n);
	printf("  %-36s %9s %10s\n", "choice", "accuracy", "cost/prog");
	for (p = 0; p < rp->npools; p++)
		for (a = 0; a < 2; a++) {
			char name[64];
			snprintf(name, sizeof name, "%s %s", rp->pools[p].name,
			    a == 0 ? "cot" : "sc3");
			printf("  %-36s %8.1f%% %10.0f\n", name, 100.0 * ok[p][a] / (double)n,
			    tok[p][a] / (double)n);
			if (ok[p][a] > best) {
				best = ok[p][a];
				bp = p;
				ba = a;
			}
		}
	printf("  %-36s %8.1f%% %10.0f\n", "oracle (cheapest correct)", 100.0 * ook / (double)n,
	    otok / (double)n);
	/* best_ok: per problem, whether the best full-run fixed choice was right */
	for (i = 0; i < n; i++) {
		const struct trace *const *smp;
		size_t ns;
		struct traces_program prog;
		struct evalsim_full f;
		best_ok[i] = 0;
		if (traces_find_exact(tr, rp->pools[bp].model, routesim_problem(s, i), &smp,
		    &ns) != 0)
			continue;
		memset(&prog, 0, sizeof prog);
		prog.target = smp[0]->target;
		prog.samples = smp;
		prog.nsamples = ns;
		evalsim_reference(&prog, ba == 0 ? 1 : 3, &f);
		best_ok[i] = f.correct;
	}
	printf("  best fixed choice: %s %s\n\n", rp->pools[bp].name, ba == 0 ? "cot" : "sc3");
}

static int
routecmd_write(const char *path, const struct router_policy *rp, const char *comment)
{
	size_t need = router_policy_format(rp, NULL, 0), cl = strlen(comment);
	char *buf = malloc(need + cl + 1);
	int rc;

	if (buf == NULL)
		return -ENOMEM;
	memcpy(buf, comment, cl);
	router_policy_format(rp, buf + cl, need + 1);
	rc = fileio_write(path, buf, cl + need);
	free(buf);
	return rc;
}

int
routecmd_main(int argc, char **argv)
{
	struct routecmd_opts o;
	struct sched_policy sp;
	struct router_policy rp;
	struct traces *tr = NULL;
	struct routesim *s = NULL;
	struct routecmd_cand *c = NULL, **sorted = NULL, base;
	unsigned char *ref_ok = NULL, *full_ok = NULL;
	unsigned *fold = NULL;
	size_t n, nc, i, k, f;
	double oof_ok = 0, oof_cost = 0, oof_tok = 0, pol_ok = 0, pol_cost = 0, best_acc = -1;
	double oracle_ok = 0, oracle_cost = 0;
	long pick;
	int rc, status = 1;

	rc = routecmd_parse(argc, argv, &o);
	if (rc != 0)
		return rc == 1 ? 0 : rc;
	rc = routecmd_policies(&o, &sp, &rp);
	if (rc != 0)
		return rc;
	log_set_level(LOG_LVL_WARN);
	rc = traces_load(o.dir, &tr);
	if (rc != 0) {
		fprintf(stderr, "certa-eval: %s: cannot load traces (%d)\n", o.dir, rc);
		return 1;
	}
	rc = routesim_new(tr, &sp, &rp, &s);
	if (rc != 0) {
		fprintf(stderr, "certa-eval: no problem recorded by every pool's model (%d)\n", rc);
		goto fail_traces;
	}
	n = routesim_count(s);
	c = calloc(ROUTECMD_MAX_CANDS, sizeof *c);
	sorted = calloc(ROUTECMD_MAX_CANDS, sizeof *sorted);
	ref_ok = calloc(n, 1);
	full_ok = calloc(n, 1);
	fold = calloc(n, sizeof *fold);
	if (c == NULL || sorted == NULL || ref_ok == NULL || full_ok == NULL || fold == NULL)
		goto fail_sim;
	for (i = 0; i < n; i++)
		fold[i] = evalsim_fold_of(routesim_problem(s, i), o.folds);
	routecmd_full_table(tr, s, &rp, full_ok);

	/* The shipped (or given) routing policy itself. */
	memset(&base, 0, sizeof base);
	base.rp = rp;
	routecmd_label(&rp, base.label, sizeof base.label);
	rc = routecmd_run(s, &base);
	if (rc != 0)
		goto fail_run;

	if (o.no_sweep) {
		printf("policy %s: %s: %.1f%% at %.0f cost/prog, %.0f tokens/prog\n",
		    o.route_policy != NULL ? o.route_policy : "(built-in default)", base.label,
		    100 * base.acc, base.mcost, base.mtokens);
		status = 0;
		goto fail_run;
	}
	nc = routecmd_candidates(&rp, c, ROUTECMD_MAX_CANDS);
	for (k = 0; k < nc; k++) {
		rc = routecmd_run(s, &c[k]);
		if (rc != 0)
			goto fail_run;
		sorted[k] = &c[k];
	}
	/* Oracle with the certainty policy on: cheapest correct fixed choice (one-rung ladders). */
	for (i = 0; i < n; i++) {
		double bc = -1, any = -1;
		for (k = 0; k < nc; k++) {
			if (c[k].rp.nrungs != 1)
				continue;
			if (c[k].ok[i] && (bc < 0 || c[k].cost[i] < bc))
				bc = c[k].cost[i];
			if (any < 0 || c[k].cost[i] < any)
				any = c[k].cost[i];
		}
		oracle_ok += bc >= 0;
		oracle_cost += bc >= 0 ? bc : any;
	}
	printf("with the certainty policy (%s), %zu problems; cost = tokens x pool cost "
	    "(decode + probes):\n", o.policy != NULL ? o.policy : "built-in default", n);
	printf("  %-64s %9s %10s %9s\n", "fixed choice", "accuracy", "cost/prog", "tokens");
	for (k = 0; k < nc; k++) {
		if (c[k].rp.nrungs != 1)
			continue;
		printf("  %-64s %8.1f%% %10.0f %9.0f\n", c[k].label, 100 * c[k].acc, c[k].mcost,
		    c[k].mtokens);
		if (c[k].acc > best_acc) {
			best_acc = c[k].acc;
			if (o.target_policy)
				memcpy(ref_ok, c[k].ok, n);
		}
	}
	if (!o.target_policy)
		memcpy(ref_ok, full_ok, n);
	printf("  %-64s %8.1f%% %10.0f\n", "oracle (cheapest correct fixed choice)",
	    100 * oracle_ok / (double)n, oracle_cost / (double)n);

	/* Frontier: candidates sorted by cost, kept when more accurate than every cheaper one. */
	qsort(sorted, nc, sizeof *sorted, routecmd_cmp_cost);
	printf("\nrouting frontier (KNN leave-one-problem-out; %zu candidates):\n", nc);
	printf("  %-64s %9s %10s %9s\n", "ladder", "accuracy", "cost/prog", "tokens");
	for (k = 0, best_acc = -1; k < nc; k++) {
		if (sorted[k]->acc <= best_acc)
			continue;
		best_acc = sorted[k]->acc;
		printf("  %-64s %8.1f%% %10.0f %9.0f\n", sorted[k]->label, 100 * sorted[k]->acc,
		    sorted[k]->mcost, sorted[k]->mtokens);
	}
	printf("\npolicy %s: %-48s %8.1f%% %10.0f %9.0f\n",
	    o.route_policy != NULL ? o.route_policy : "(built-in default)", base.label,
	    100 * base.acc, base.mcost, base.mtokens);

	/* Out-of-fold: each fold routed by the candidate picked on the other folds. */
	for (f = 0; f < o.folds; f++) {
		pick = routecmd_pick(c, nc, fold, n, (unsigned)f, ref_ok, o.min_acc, o.z);
		if (pick < 0)
			pick = 0;
		printf("  fold %zu: %s\n", f, c[pick].label);
		for (i = 0; i < n; i++)
			if (fold[i] == f) {
				oof_ok += c[pick].ok[i];
				oof_cost += c[pick].cost[i];
				oof_tok += c[pick].tokens[i];
			}
	}
	printf("out-of-fold (%u folds; each fold routed by the cheapest candidate reaching %s on "
	    "the others, margin z = %g): %.1f%% at %.0f cost/prog, %.0f tokens/prog\n", o.folds,
	    o.min_acc >= 0 ? "--min-accuracy" : o.target_policy ?
	    "the best fixed choice's accuracy with the certainty policy" :
	    "the best full-run fixed choice's accuracy", o.z,
	    100 * oof_ok / (double)n, oof_cost / (double)n, oof_tok / (double)n);
	pick = routecmd_pick(c, nc, fold, n, o.folds, ref_ok, o.min_acc, o.z);
	if (pick >= 0) {
		for (i = 0; i < n; i++) {
			pol_ok += c[pick].ok[i];
			pol_cost += c[pick].cost[i];
		}
		printf("picked on all problems: %s (%.1f%% at %.0f cost/prog, in-sample)\n",
		    c[pick].label, 100 * pol_ok / (double)n, pol_cost / (double)n);
	}
	if (o.out != NULL && pick >= 0) {
		char comment[1024];
		snprintf(comment, sizeof comment,
		    "# certa routing policy, written by `certa-eval route --folds %u%s`\n"
		    "# %zu problems; picked: %s\n"
		    "# in-sample %.1f%% at %.0f cost/prog; out-of-fold %.1f%% at %.0f cost/prog\n"
		    "# format: scheduler/router.h; method: docs/routing.md\n", o.folds,
		    o.target_policy ? " --target policy" : "", n,
		    c[pick].label, 100 * pol_ok / (double)n, pol_cost / (double)n,
		    100 * oof_ok / (double)n, oof_cost / (double)n);
		rc = routecmd_write(o.out, &c[pick].rp, comment);
		if (rc != 0) {
			fprintf(stderr, "certa-eval: %s: %s\n", o.out, strerror(-rc));
			goto fail_run;
		}
	}
	status = 0;
fail_run:
	if (rc != 0 && status != 0)
		fprintf(stderr, "certa-eval: route failed (%d)\n", rc);
	for (k = 0; k < ROUTECMD_MAX_CANDS && c != NULL; k++)
		routecmd_cand_free(&c[k]);
	routecmd_cand_free(&base);
fail_sim:
	free(c);
	free(sorted);
	free(ref_ok);
	free(full_ok);
	free(fold);
	routesim_free(s);
fail_traces:
	traces_free(tr);
	return status;
}
