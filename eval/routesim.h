/*
 * routesim.h — expert routing in virtual time: problems of a traces directory routed by
 * router_route() and escalated by router_escalate() (scheduler/router.h), each step decided by
 * sched_decide() as in eval/evalsim.h.  Used by `certa-eval route` and the unit tests.
 *
 * A problem is a problem text that every pool's model has recorded with at least
 * ROUTESIM_SAMPLES samples.  Pool p's chain i replays sample i of that model's program (cot:
 * sample 0; sc n: samples 0..n-1).  FORK keeps chain 0 where it is and adds samples 1..n-1 from
 * token 0; SWITCH abandons the chains (their tokens stay spent) and starts the new pool's
 * samples from token 0; DROP stops the dissenting chains (spent).  Every step's probe costs its
 * recorded out_tokens.  A rung's budget is the view's budget (decode tokens of the chains in
 * the view; none: unlimited, as evalsim's reference).  Cost = sum over pools of (decode + probe tokens) * pool cost.
 * Pool p's steps are decided under the scheduling policy with its model's model_tokens
 * (evalsim_model_policy: with relative unpromising bounds, the model's median chain length in
 * the traces, as certa-eval measures every policy and certad learns it).
 *
 * History (what the router's neighbours report): for every problem and pool, the outcome of
 * that pool's cot run under the scheduling policy (tokens, longest chain, finish reason) —
 * never its correctness.  Neighbours come from knn_query over the problem texts with the
 * problem itself excluded (leave-one-problem-out).  The IDF statistics use every text (no
 * outcome).
 *
 * Not thread-safe per object.  Errors: 0 or -EINVAL / -ENOMEM / CERTA_ENOTFOUND.
 */
#ifndef CERTA_EVAL_ROUTESIM_H
#define CERTA_EVAL_ROUTESIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/traces.h"
#include "scheduler/router.h"
#include "scheduler/sched.h"

#define ROUTESIM_SAMPLES 3

struct routesim;

/* One routed program's result. */
struct routesim_outcome {
	bool correct;
	const char *answer;
	uint64_t tokens;          /* decode + probe tokens, all pools */
	double cost;              /* tokens weighted by pool cost */
	uint32_t start_rung, end_rung;
	uint32_t escalations;
	bool dropped;
	enum sched_reason reason;
};

/*
 * Indexes the problems of tr for the pools of rp (each pool's model must be in tr) and runs
 * the history (cot per pool under sp).  On success stores the new object in *out (free with
 * routesim_free; it points into tr and copies sp) and returns 0.  CERTA_ENOTFOUND: no problem
 * has every pool's model.
 */
int routesim_new(const struct traces *tr, const struct sched_policy *sp,
    const struct router_policy *rp, struct routesim **out);
void routesim_free(struct routesim *s);

size_t routesim_count(const struct routesim *s);
const char *routesim_problem(const struct routesim *s, size_t i);

/* Routes problem i under rp (its pools as at routesim_new; k neighbours from history, LOPO)
 * and runs it.  Returns 0 or -ENOMEM. */
int routesim_run(struct routesim *s, const struct router_policy *rp, size_t i,
    struct routesim_outcome *out);

/* The history outcome of problem i on pool p (cot under the scheduling policy) and whether
 * it was correct (for the oracle and fixed-choice tables only). */
void routesim_history(const struct routesim *s, size_t i, size_t pool,
    struct router_outcome *o, bool *correct);

#endif
