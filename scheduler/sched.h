/*
 * sched.h — the scheduling seam between the daemon (imperative shell) and the policy core.
 *
 * The daemon describes a program as a plain view (no protobuf, no I/O) after each step and asks
 * sched_decide() what to do next: continue with a number of tokens per chain, or stop with a
 * reason and the chain whose answer is the program's answer.  The offline evaluator calls the
 * same function on recorded traces, so online and offline decisions are the same by
 * construction.  Pure, deterministic, thread-compatible (no global state).
 */
#ifndef CERTA_SCHEDULER_SCHED_H
#define CERTA_SCHEDULER_SCHED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Numerically equal to certa.v1.Algorithm. */
enum sched_algo {
	SCHED_ALGO_COT = 1,
	SCHED_ALGO_SC = 2,
};

/* Numerically equal to certa.v1.FinishReason. */
enum sched_reason {
	SCHED_REASON_NONE = 0,
	SCHED_REASON_CERTAIN = 1,
	SCHED_REASON_BUDGET = 2,
	SCHED_REASON_UNPROMISING = 3,
	SCHED_REASON_NATURAL_END = 4,
	SCHED_REASON_CANCELLED = 5,
	SCHED_REASON_FAILED = 6,
	SCHED_REASON_DEADLINE = 7,
};

/* Policy values (thresholds are data, not constants). */
struct sched_policy {
	uint32_t step_tokens;     /* tokens per chain per step */
	uint64_t default_budget;  /* total decode tokens per program when the client gives none */
	uint32_t default_sc_n;    /* chains for sc when the client gives none */
	uint32_t max_sc_n;        /* upper bound on n */
	uint64_t max_budget;      /* upper bound on a program's budget */
};

/* One chain (request) as the scheduler sees it. */
struct sched_chain {
	uint64_t tokens;          /* decode tokens so far */
	bool finished;            /* natural end reached */
	const char *answer;       /* latest probe answer ("" if none) */
	const char *final_answer; /* when finished */
	bool thinking_done;
};

struct sched_view {
	enum sched_algo algo;
	uint64_t budget;          /* total decode tokens allowed across chains */
	int64_t now_ms;
	int64_t deadline_ms;      /* 0: none */
	const char *problem;
	size_t nchains;
	const struct sched_chain *chains;
};

struct sched_decision {
	bool stop;
	enum sched_reason reason;
	uint32_t step_tokens;     /* when continuing: tokens per unfinished chain */
	size_t answer_chain;      /* chain whose answer is the program's (current) answer */
	const char *answer;       /* points into the view's strings; "" if none yet */
	double agreement;         /* share of chains agreeing with the answer (1 for cot) */
	double certaindex;        /* in [0,1] */
	bool low_confidence;
};

/* The built-in defaults (step 64 tokens, budget 16384, sc n 3). */
void sched_policy_default(struct sched_policy *p);

/* Checks policy values; on error writes "field: reason (allowed range)" into msg and returns
 * CERTA_EINVAL. */
int sched_policy_validate(const struct sched_policy *p, char *msg, size_t msglen);

/* Total decode tokens of a view. */
uint64_t sched_tokens_used(const struct sched_view *v);

/* The answer of a chain: its final answer once finished, else its latest probe answer. */
const char *sched_chain_answer(const struct sched_chain *c);

/* Majority vote over the chains' answers using answer equivalence (empty answers abstain).
 * Ties go to the answer seen first in chain order.  Writes the winning chain index and the
 * share of voting chains that agree; returns false when no chain has an answer. */
bool sched_vote(const struct sched_view *v, size_t *winner, double *agreement);

/* Decides the next action for a program after a step (or before its first step). */
void sched_decide(const struct sched_policy *p, const struct sched_view *v,
    struct sched_decision *out);

const char *sched_reason_name(enum sched_reason r);

#endif
