/*
 * shadow.h — shadow runs and the per-(model, algorithm) risk controllers (scheduler/riskctl.h)
 * inside certad.
 *
 * Programs are sampled by riskctl_pick(program id, riskctl.shadow_frac).  A sampled program
 * that ran to its natural end feeds the controller's counterfactual counts at once
 * (riskctl_observe_cf: its probe trajectory shows where every grid shift would have stopped).
 * One that stopped early (certain or unpromising) with chains open, where some grid shift would
 * have stopped elsewhere (riskctl_cf_movable on its own steps; otherwise it is only counted as
 * excluded), is finished for its client as always (result, finished event, history), and a
 * *shadow* continues its chains: a new
 * program "<id>.shadow" of the system account SHADOW_TENANT (not a tenant: no quota, no fair
 * share, no tenant accounting; its tokens show under tenant="_system" in the token metrics and
 * in the controller's `tokens`), holding a copy of the chains, the stopped answer and the
 * tokens at the stop.  Shadows run after every tenant's ready work (dispatch orders them last)
 * under the same policy with certainty and unpromising stops disabled, so they end at the
 * natural end (or the budget).  Then its chains hold the whole trajectory (the program's steps
 * and the continuation, each step's certaindex in its probe points; the answer per step is the
 * chain's, or for sc the plurality of the chains' answers then), which feeds the controller of
 * (model, algorithm) (riskctl_observe_cf; riskctl_observe at the current setting when no
 * trajectory is readable), whose state is written to the riskctl DB at once.  A shadow that fails or is cancelled is counted as
 * dropped.  Shadows are stored like programs (ProgramRecord.shadow_of), so a shadow in flight
 * survives a restart and carries on from its last committed step.
 *
 * The controllers' parameters come from the base policy ("default", `certactl policy set
 * riskctl.KEY=VALUE`); riskctl.frozen = 1 keeps every shift, riskctl.shadow_frac = 0 starts no
 * new shadow, and the shift is clamped into [riskctl.min_shift, riskctl.max_shift] when used.
 *
 * Model lengths.  The same table keeps, per model, its typical chain length for the
 * model-relative unpromising bounds (sched_policy.model_tokens): the median decode tokens of
 * the model's last CHAINLEN_CAP counted chains (scheduler/chainlen.h says which count: chains
 * of programs that ended naturally or at the unpromising or budget bound, shadows included;
 * not those a certainty stop cut).  A program counts when it has ended for good: for its
 * client (unless a shadow continues it: the shadow counts when it ends) or as a shadow.  The
 * lengths are stored in the riskctl DB under "tokens/<model>" every SHADOW_LEN_SAVE_EVERY
 * counted programs, when the learned value takes over, and at a clean exit (shadow_flush),
 * and loaded by shadow_new.  Decisions use the learned median once the policy's
 * model_tokens.min_samples chains are kept, and until then a prior: the policy's model_tokens,
 * else the model's config line policy.model_tokens = MODEL TOKENS (core_options), else none
 * (0: the bounds count absolute tokens) (shadow_decision_policy).  min_samples 0 pins the
 * prior.
 *
 * Model probability levels.  The same record keeps the model's probe-probability level, the
 * sched_policy.model_confidence its decisions use: the median over its last PROBLEVEL_CAP
 * counted chains of each chain's first known probe mean token probability
 * (scheduler/problevel.h: every chain with one, of a program that finished, whatever the
 * ending, each once; no stop moves the first probe).  It is used once the policy's model_confidence.min_samples chains are kept, until then the
 * policy's model_confidence (0: 0.5); it is written with the lengths, and at once when it
 * takes over.
 *
 * Part of the core (daemon/core_impl.h); loop thread only.
 */
#ifndef CERTA_DAEMON_SHADOW_H
#define CERTA_DAEMON_SHADOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "scheduler/sched.h"

struct core;
struct program;
struct shadow;

/* The system account shadows are charged to (not a valid tenant name, so never a tenant). */
#define SHADOW_TENANT "_system"

/* Loads the controllers from the store.  Returns 0, a store error or -ENOMEM. */
int shadow_new(struct core *c, struct shadow **out);
void shadow_free(struct shadow *s);

/* Parses a policy.model_tokens line "MODEL TOKENS" (TOKENS in [1, 2^32-1], the model's prior
 * model_tokens) into model (size bytes; may be NULL) and *tokens (may be NULL).  Returns 0 or
 * CERTA_ECONFIG with a message in err. */
int shadow_prior_parse(const char *line, char *model, size_t size, uint64_t *tokens, char *err,
    size_t errlen);

/* Writes the model lengths counted since their last write (at a clean exit). */
void shadow_flush(struct core *c);

/* The model_tokens a decision of a program on model under pol uses: the learned median once
 * pol's model_tokens.min_samples chains are kept, else pol->model_tokens. */
uint64_t shadow_model_tokens(struct core *c, const char *model, const struct sched_policy *pol);

/* The model_confidence a decision of a program on model under pol uses: the learned level
 * once pol's model_confidence.min_samples chains are kept, else pol->model_confidence. */
double shadow_model_confidence(struct core *c, const char *model, const struct sched_policy *pol);

/* pol with model's model_tokens (shadow_model_tokens, when its unpromising bounds are
 * relative) and model_confidence (shadow_model_confidence): pol itself when nothing changes,
 * else a copy in *buf. */
const struct sched_policy *shadow_model_policy(struct core *c, const char *model,
    const struct sched_policy *pol, struct sched_policy *buf);

/* The policy p's next decision runs under, from its tenant's pol: a shadow's
 * (shadow_policy), else shadow_model_policy of p's model.  pol or *buf. */
const struct sched_policy *shadow_decision_policy(struct core *c, const struct program *p,
    const struct sched_policy *pol, struct sched_policy *buf);

/* The threshold shift for a (non-shadow) program's next decision. */
double shadow_shift(struct core *c, const struct program *p);

/* The policy a shadow runs under: base with certainty and unpromising stops disabled. */
void shadow_policy(const struct sched_policy *base, struct sched_policy *out);

/* p (not a shadow) has just finished for its client (its ending is committed): when the pick
 * says so, counts it (natural end), or starts its shadow (early stop some grid shift moves).
 * Errors are logged and counted as dropped; the client is never affected. */
void shadow_spawn(struct core *c, struct program *p);

/* A shadow's ending is committed: compares, feeds the controller, writes its state. */
void shadow_done(struct core *c, struct program *p);

/* One controller, for stats and metrics (strings owned by the table; valid until the next
 * shadow_* call). */
struct shadow_info {
	const char *model;
	enum sched_algo algo;
	double shift;             /* clamped as applied */
	double threshold;         /* the base policy's threshold under it */
	double ucb, target;
	uint64_t shadows, changes, saves, backs, tokens, dropped;
	uint32_t win_n, win_changes;
	uint64_t running;         /* shadows in progress */
	uint64_t samples;         /* trajectories in the counterfactual counts */
	uint64_t excluded;        /* ... left out: no grid shift moves them */
	uint32_t point_stopped;   /* at the current shift's grid point: stopped certain */
	uint32_t point_changed;   /* ... and changed */
	bool frozen;
};
size_t shadow_count(struct core *c);
void shadow_get(struct core *c, size_t i, struct shadow_info *out);

/* One model's lengths under the base policy, for stats and metrics (the string owned by the
 * table; valid until the next shadow_* call). */
struct shadow_model_info {
	const char *model;
	uint64_t tokens;          /* model_tokens in use (0: absolute bounds) */
	const char *source;       /* "learned", "prior" or "absolute" */
	uint64_t median;          /* of the kept chains (0: none) */
	uint32_t samples;         /* chains kept */
	uint32_t min_samples;
	uint64_t seen;            /* chains counted, all time */
	/* Its probe-probability level (scheduler/problevel.h). */
	double confidence;        /* model_confidence in use (a policy's 0 shown as 0.5) */
	const char *confidence_source;   /* "learned" or "prior" (the policy's) */
	double confidence_median; /* of the kept chains (0: none) */
	uint32_t confidence_samples;
	uint32_t confidence_min_samples;
	uint64_t confidence_seen;
};
size_t shadow_model_count(struct core *c);
void shadow_model_get(struct core *c, size_t i, struct shadow_model_info *out);

#endif
