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

/* Features of the certaindex models (scheduler/certainty.h documents each). */
#define SCHED_COT_NFEAT 16
#define SCHED_SC_NFEAT 7

/*
 * Policy values (thresholds are data, not constants).  sched_policy_default() returns the
 * values calibrated on the dev traces, the same numbers as policy/default.policy; policy.h
 * parses and formats the `key = value` file form.
 */
struct sched_policy {
	uint32_t step_tokens;     /* tokens per chain per step (the probe spacing floor) */
	uint64_t default_budget;  /* total decode tokens per program when the client gives none */
	uint32_t default_sc_n;    /* chains for sc when the client gives none */
	uint32_t max_sc_n;        /* upper bound on n */
	uint64_t max_budget;      /* upper bound on a program's budget */

	/* Probe spacing: a step is max(step_tokens, probe_stride * tokens so far) rounded down to
	 * a multiple of step_tokens and capped at max_step_tokens (probes cost tokens too). */
	double probe_stride;
	uint32_t max_step_tokens;
	/* Expected reasoning length of one chain; the position feature is tokens / this. */
	uint64_t expected_tokens;
	/* Bytes of recent reasoning text searched for hesitation markers. */
	uint32_t hesitation_window;

	/* Certaindex models: logistic weights over the feature vectors of certainty.h. */
	double cot_w[SCHED_COT_NFEAT];
	double sc_w[SCHED_SC_NFEAT];
	/* Stop-certain when the program's certaindex reaches this (cot / sc); > 1 disables. */
	double cot_threshold;
	double sc_threshold;
	/* Stop-unpromising once a chain has used this many tokens without reaching the
	 * threshold (0: never); the program ends with its best answer, low confidence.  cot
	 * programs use unpromising_tokens, sc programs sc_unpromising_tokens. */
	uint64_t unpromising_tokens;
	uint64_t sc_unpromising_tokens;
	/* A chain whose thinking is closed (</think>) and whose last complete \boxed{} agrees with
	 * its valid probe answer is settled: certaindex 1 (stops at any threshold <= 1), and in sc
	 * it votes as if finished (only while sc.threshold <= 1).  0: off. */
	uint32_t settle_closed;
	/* sc vote rule (key sc.vote_threshold): an unfinished, unsettled chain whose own chain
	 * certaindex (the cot model's score, certainty.h) reaches this votes as if finished,
	 * so the chains that are finished, settled or this certain can decide the vote
	 * (certaindex 1; a stop only while sc.threshold <= 1, as for settled chains).  It moves
	 * only the decision, not the sc features (`finished` counts finished and settled
	 * chains).  > 1: off (the default; the threshold shift of the risk controller does not
	 * apply to it). */
	double sc_vote_threshold;
	/* Position-dependent cot threshold (key cot.threshold_slope): a cot chain stops-certain
	 * at threshold + slope * (pos - 1), clamped to [0, 1], where pos is the longest chain's
	 * tokens in model_tokens units (sched_unpromising_tokens(p, tokens) / 4096: tokens /
	 * model_tokens with unpromising_relative on, else tokens / 4096), capped at 4.  Applies
	 * after the difficulty class and before the risk controller's shift, only while the
	 * threshold is <= 1; sc programs are not affected.  0: off (the default). */
	double cot_threshold_slope;
	/* Staged sc (key sc.staged): an sc program of n >= 3 chains starts with the smallest
	 * majority, n / 2 + 1 chains; the others (sched_view.pending) are launched only when
	 * the started chains can no longer decide the vote on their own (two of them finished
	 * or settled with different answers, or without one: sched_decision.launch).  When the
	 * started chains agree, the vote of all n is decided whatever the others would answer,
	 * so their tokens are saved at no change of the answer; the price is latency for the
	 * programs that need them (they start late).  The daemon stages programs without a
	 * deadline only.  0: off (all n at once); 1: staged, the vote decided by finished and
	 * settled chains (the full vote's answer); 2: staged, and an unfinished chain whose chain
	 * certaindex reaches cot_threshold votes as finished too (in staged programs only; with
	 * sc_vote_threshold, the lower of the two). */
	uint32_t sc_staged;
	/* Budget extension: when the budget is spent and certaindex >= extend_min, continue up
	 * to budget * (1 + extend_frac) (0: never extend). */
	double extend_frac;
	double extend_min;
	/* sched_rank: a program waiting this long (ms) goes ahead of shorter work. */
	int64_t starvation_ms;

	/* Online risk control from shadow runs (scheduler/riskctl.h; keys riskctl.*).  The
	 * daemon reads them from the base policy (one controller per model and algorithm). */
	double riskctl_target;        /* cot answer changes per program allowed (riskctl.h) */
	double riskctl_sc_target;     /* ... sc */
	double riskctl_shadow_frac;   /* share of programs sampled for the controller (0: off) */
	double riskctl_confidence;    /* of the Clopper-Pearson bounds */
	double riskctl_step;          /* logit shift per move */
	double riskctl_min_shift;     /* bounds of the shift (<= 0, >= 0) */
	double riskctl_max_shift;
	uint32_t riskctl_min_samples; /* shadows at a setting before a move toward savings */
	uint32_t riskctl_window;      /* shadows at a setting before an unproven one backs off */
	uint32_t riskctl_frozen;      /* 1: count shadows, never move */
	double riskctl_shadow_boost;  /* share sampled while the setting is undecided (riskctl.h) */
	double riskctl_hold_confidence; /* of the bound that leaves a held setting (riskctl.h) */
	uint32_t riskctl_harm;        /* 1: count only changes from a trusted end (riskctl.h) */
	uint32_t riskctl_harm_stable; /* cot: valid probe answers that must equal the end */
	uint32_t riskctl_gain;        /* 1: a change the gain proxy calls a gain offsets one */
	uint32_t riskctl_gain_tokens; /* decode tokens the stop's answer must have been held */
	/* The Dynasor-CoT rule as a baseline (0: off): a chain is consistent when its last
	 * dynasor_k probe answers are equivalent, non-empty and free of hesitation words
	 * (certainty_probe_hesitant); a program stops certain when every unfinished chain is.
	 * (Dynasor stops each sc chain on its own; here an sc program's chains stop together.)
	 * Set thresholds > 1, unpromising 0, settle_closed 0 and probe_stride 0 for the pure
	 * rule at step_tokens spacing. */
	uint32_t dynasor_k;

	/* Difficulty classes (scheduler/difficulty.h; keys difficulty.*, cot.threshold_*): a cot
	 * chain's class comes from its probes in the first difficulty_tokens tokens (0: off,
	 * cot_threshold applies); hard chains stop-certain at cot_threshold_hard, the others at
	 * cot_threshold_easy. */
	uint64_t difficulty_tokens;   /* the early window (0: off) */
	uint32_t difficulty_changes;  /* valid answer changes in the window that make it hard
	                               * (0: changes never do) */
	double cot_threshold_easy;
	double cot_threshold_hard;

	/* Model-relative unpromising bounds (keys unpromising_relative, model_tokens): with
	 * unpromising_relative 1 and model_tokens > 0 (the serving model's typical chain length,
	 * its median decode tokens per chain: known without any correctness label),
	 * unpromising_tokens and sc.unpromising_tokens count tokens in units of
	 * model_tokens / 4096, so a model that reasons twice as long gets twice the bound.
	 * unpromising_relative 0 or model_tokens 0: absolute tokens (as before).  certa-eval
	 * sets model_tokens per model from the traces (evalsim_model_policy); certad learns it
	 * per model (scheduler/chainlen.h, daemon/shadow.h): the median of the model's last
	 * counted chains once model_tokens_min_samples are kept (0: never learn), until then
	 * model_tokens as the prior. */
	uint32_t unpromising_relative;
	uint64_t model_tokens;
	uint32_t model_tokens_min_samples;
	/* Model-relative token probabilities (key model_confidence): the serving model's median
	 * probe mean token probability, the level features 9 and 14 (confidence, min_prob) are
	 * measured from (x = probability - model_confidence) instead of 0.5, so that weights
	 * fitted on one model carry to a model whose probabilities sit higher or lower.  0:
	 * 0.5 (the default).  certa-eval sets it per model from the traces that carry token
	 * statistics (evalsim_model_policy, traces_model_prob); certad learns it per model
	 * (scheduler/problevel.h, daemon/shadow.h): the median of the model's last counted
	 * chains' probe probabilities once model_confidence_min_samples are kept (0: never
	 * learn), until then model_confidence as the prior. */
	double model_confidence;
	uint32_t model_confidence_min_samples;
};

/* One probe of a chain: its answer after `position` decode tokens. */
struct sched_probe {
	uint64_t position;
	const char *answer;       /* "" if the probe produced nothing */
	double confidence;        /* mean probe token probability in [0,1]; < 0 unknown */
	double min_prob;          /* least probe token probability in [0,1]; < 0 unknown (read
	                           * only when confidence is known) */
	double entropy;           /* mean entropy (nats) of the chain's own tokens in the step
	                           * that ended at this probe; < 0 unknown */
};

struct certainty_scan;

/* One chain (request) as the scheduler sees it. */
struct sched_chain {
	uint64_t tokens;          /* decode tokens so far */
	bool finished;            /* natural end reached */
	const char *answer;       /* latest probe answer ("" if none) */
	const char *final_answer; /* when finished */
	bool thinking_done;
	/* Probe history, position ascending (may be NULL/0: then only `answer` is known). */
	const struct sched_probe *probes;
	size_t nprobes;
	/* Reasoning text so far (may be NULL/0: grounding and hesitation then read false). */
	const char *text;
	size_t text_len;
	/* Incremental scan of text (scheduler/certainty.h; may be NULL: every evaluation rescans
	 * the whole text).  The text must only grow between evaluations with the same scan. */
	struct certainty_scan *scan;
};

/*
 * Per-program policy state machine (explicit; sched_set_state() aborts on an illegal
 * transition):
 *
 *   NEW ──► WARMUP ──► EXPLORING ──► EXTENDED ──┐
 *    │        │            │                    ├──► STOP_* (terminal)
 *    └────────┴────────────┴────────────────────┘
 *
 * WARMUP: no chain has a valid (non-placeholder) answer yet; EXPLORING: answers exist, the
 * certaindex is below the threshold; EXTENDED: running on a budget extension.  The state is a
 * function of the (growing) history, so it only moves forward; the daemon may keep it across
 * steps (struct sched_state) or pass none (then each decision starts from NEW).
 */
enum sched_pstate {
	SCHED_PS_NEW = 0,
	SCHED_PS_WARMUP,
	SCHED_PS_EXPLORING,
	SCHED_PS_EXTENDED,
	SCHED_PS_STOP_CERTAIN,
	SCHED_PS_STOP_UNPROMISING,
	SCHED_PS_STOP_BUDGET,
	SCHED_PS_STOP_DEADLINE,
	SCHED_PS_STOP_NATURAL,
	SCHED_PS_COUNT
};

/* What the daemon may store per program between decisions (plain data, zero = NEW). */
struct sched_state {
	enum sched_pstate state;
};

/* The features behind a certaindex (mirrors certa.v1.CertaintyFeatures). */
struct sched_features {
	double certaindex;        /* in [0,1] */
	uint64_t stable_tokens;   /* tokens the answer has stayed unchanged (answer chain) */
	bool grounded;            /* the answer appears in the reasoning text so far */
	bool hesitation;          /* hesitation markers in recent text or in the probe answer */
	bool valid_answer;        /* not a placeholder */
	double agreement;         /* share of chains agreeing with the answer (1 for cot) */
	double entropy;           /* normalized answer entropy across chains, 0 = all agree */
	double position;          /* tokens so far / expected_tokens */
	double probe_confidence;  /* < 0 when unknown */
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
	/* Optional: the program's policy state from the previous decision (NULL: none).  When
	 * given, sched_decide() advances it (legal transitions only); once terminal, it keeps
	 * answering stop with the same reason. */
	struct sched_state *state;
	/* The risk controller's logit shift of the stop-certain threshold (riskctl_threshold;
	 * 0: the policy's threshold as is). */
	double threshold_shift;
	/* Staged sc (sched_policy.sc_staged): the program started with fewer chains than it
	 * may have.  It stops certain only on a decided vote (finished or settled chains: the
	 * sc model is fitted on chains that step together), before and after its launch. */
	bool staged;
	/* sc: chains not launched yet (staged); they count as unfinished chains without an
	 * answer, so the vote is over nchains + pending. */
	size_t pending;
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
	enum sched_pstate state;  /* the policy state after this decision */
	bool extended;            /* continuing on a budget extension */
	struct sched_features features; /* what produced the certaindex */
	uint32_t difficulty;      /* cot: enum difficulty_class of the chain (0: off / sc) */
	double threshold;         /* the stop-certain threshold applied (after any shift) */
	/* When continuing with pending chains: launch them (from the prompt, zero tokens) before
	 * the step; step_tokens applies to them too.  Set once the started chains can no longer
	 * decide the vote on their own (certainty_program.stalled). */
	bool launch;
};

/* The built-in defaults (step 64 tokens, budget 16384, sc n 3) and the certainty model
 * calibrated on the dev traces (identical to policy/default.policy). */
void sched_policy_default(struct sched_policy *p);
/* The unit of the unpromising bounds: model_tokens / 4096 with unpromising_relative on and
 * model_tokens > 0, else 1. */
double sched_token_unit(const struct sched_policy *p);
/* Tokens as the unpromising bounds count them: floor(tokens / sched_token_unit(p)) (tokens
 * itself when the unit is 1).  sched_decide() stops unpromising when this of the longest
 * chain reaches the bound; certa-eval records the same number (evalsim_point.most). */
uint64_t sched_unpromising_tokens(const struct sched_policy *p, uint64_t tokens);
/* The cot threshold at a chain position (cot.threshold_slope, struct sched_policy):
 * threshold + slope * (min(most / 4096, 4) - 1) clamped to [0, 1], with `most` in the units
 * of sched_unpromising_tokens() (certa-eval records the same number, evalsim_point.most).
 * threshold itself when the slope is 0 or the threshold is > 1 (disabled). */
double sched_cot_threshold_at(double threshold, double slope, uint64_t most);

/* Checks policy values; on error writes "field: reason (allowed range)" into msg and returns
 * CERTA_EINVAL. */
int sched_policy_validate(const struct sched_policy *p, char *msg, size_t msglen);

/* Chains an sc program of n chains starts with: n / 2 + 1 when sc_staged is on and n >= 3,
 * else n. */
size_t sched_sc_started(const struct sched_policy *p, size_t n);

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

struct certainty_chain;
/* sched_decide, also handing back each chain's certainty evaluation (scheduler/certainty.h)
 * that the decision computed, so a caller need not evaluate the chains again: chains_out has
 * room for v->nchains; returns how many of them, from the first, were filled (all but the
 * chains past the 64th of an sc program, which the decision does not evaluate).  The
 * evaluations point into v's chains (answers): valid while they are. */
size_t sched_decide_chains(const struct sched_policy *p, const struct sched_view *v,
    struct sched_decision *out, struct certainty_chain *chains_out);

const char *sched_reason_name(enum sched_reason r);

/* Moves s to `to`; aborts (always-on assertion) when the transition is illegal.  A move to the
 * current state is a no-op. */
void sched_set_state(struct sched_state *s, enum sched_pstate to);
/* Whether from -> to is legal (from == to is legal). */
bool sched_state_legal(enum sched_pstate from, enum sched_pstate to);
bool sched_state_terminal(enum sched_pstate s);
const char *sched_state_name(enum sched_pstate s);

/* A program waiting to run, for sched_rank(). */
struct sched_rank_item {
	const struct sched_view *view;   /* its current view (tokens, chains) */
	double certaindex;               /* from its last decision (0 before the first) */
	int64_t waiting_since_ms;        /* when it became ready */
	int priority;                    /* higher first */
};

/*
 * Orders ready programs (pure; no allocation): by priority, then programs waiting for at least
 * starvation_ms (oldest first), then by estimated remaining work ascending (SJF): expected
 * tokens left (n * expected_tokens - used, at least one step per chain) scaled by
 * (1 - certaindex), ties by waiting time then index.  Writes a permutation of 0..n-1 to order.
 */
void sched_rank(const struct sched_policy *p, const struct sched_rank_item *items, size_t n,
    int64_t now_ms, size_t *order);
/* The estimated remaining work (tokens) used by sched_rank. */
double sched_remaining_work(const struct sched_policy *p, const struct sched_view *v,
    double certaindex);

#endif
