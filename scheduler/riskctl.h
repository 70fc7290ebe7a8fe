/*
 * riskctl.h — online risk control: a per-(model, algorithm) controller that moves the stop
 * threshold from what shadow runs show.
 *
 * A shadow is a program that was stopped early (certain or unpromising) and, after its answer
 * went to the client, ran on to its natural end at the lowest priority.  Each shadow is one
 * Bernoulli observation: did running to the end change the answer?  The controller keeps, at
 * its current setting, the number of shadows n and answer changes x, and an exact one-sided
 * Clopper-Pearson upper bound (UCB) on the change rate at the policy's confidence:
 *
 *   - x/n may be shown safe:   n >= min_samples and UCB <= target  -> one step toward savings
 *   - clearly over the target: lower bound (same confidence) > target -> one step back
 *   - window spent unproven:   n >= window and UCB > target         -> one step back
 *   - otherwise hold.
 *
 * The two bounds give hysteresis (between them the setting holds); every move starts a new
 * window (the observations belong to the setting they were made at).  Moves are one `step`,
 * kept within [min_shift, max_shift]; a frozen controller counts but never moves.
 *
 * The setting is a shift in logit space: the stop-certain threshold tau becomes
 * sigmoid(logit(tau) - shift) (riskctl_threshold), so shift > 0 stops earlier (more savings)
 * and shift < 0 later; thresholds outside (0, 1) (certainty stops disabled, or any) are kept.
 * sched_decide() applies it from sched_view.threshold_shift, so the daemon and certa-eval share
 * the rule.  Everything here is pure (no I/O, no globals); any thread.
 */
#ifndef CERTA_SCHEDULER_RISKCTL_H
#define CERTA_SCHEDULER_RISKCTL_H

#include <stdbool.h>
#include <stdint.h>

struct sched_policy;

/* Controller parameters (the policy's riskctl.* keys, scheduler/policy.h). */
struct riskctl_params {
	double target;         /* answer-change rate allowed among certain stops, (0, 1) */
	double shadow_frac;    /* share of early-stopped programs run on as shadows; 0: off */
	double confidence;     /* of the one-sided bounds, (0.5, 1) */
	double step;           /* logit shift per move, > 0 */
	double min_shift;      /* <= 0 */
	double max_shift;      /* >= 0 */
	uint32_t min_samples;  /* shadows at one setting before it may move toward savings */
	uint32_t window;       /* shadows at one setting before an unproven one steps back */
	bool frozen;           /* count, never move */
};

/* What one observation did. */
enum riskctl_move {
	RISKCTL_HOLD = 0,
	RISKCTL_SAVE,          /* one step toward savings */
	RISKCTL_BACK,          /* one step back */
};

/* A controller's state (plain data; zero = the start: shift 0, nothing seen). */
struct riskctl_state {
	double shift;          /* current logit shift */
	uint64_t shadows;      /* shadows observed, all settings */
	uint64_t changes;      /* ... whose answer changed */
	uint32_t win_n;        /* shadows at the current setting */
	uint32_t win_changes;  /* ... whose answer changed */
	uint64_t saves, backs; /* moves made */
	uint64_t tokens;       /* shadow tokens (decode + probe), for reports */
};

/* The parameters of a policy's riskctl.* keys for programs of algorithm algo (enum
 * sched_algo: riskctl.target for cot, riskctl.sc_target for sc). */
void riskctl_params_from_policy(const struct sched_policy *p, int algo,
    struct riskctl_params *out);

/* The stop-certain threshold under a shift: sigmoid(logit(tau) - shift) for tau in (0, 1),
 * tau itself otherwise (> 1 keeps certainty stops disabled). */
double riskctl_threshold(double tau, double shift);

/*
 * Regularized incomplete beta function I_x(a, b) for a, b > 0, x in [0, 1] (continued
 * fraction, modified Lentz, relative accuracy ~1e-13).  NaN for arguments out of range.
 */
double riskctl_betainc(double a, double b, double x);

/* The p-quantile of Beta(a, b): the x with I_x(a, b) = p (bisection to 1e-14). */
double riskctl_beta_quantile(double a, double b, double p);

/* Exact one-sided Clopper-Pearson bounds on a binomial rate from x successes in n trials at
 * confidence conf: upper = Beta(x+1, n-x) quantile conf (1 when x = n), lower = Beta(x,
 * n-x+1) quantile 1-conf (0 when x = 0).  n = 0: upper 1, lower 0.  A two-sided interval at
 * level L is the one-sided bounds at conf = (1 + L) / 2. */
double riskctl_cp_upper(uint64_t x, uint64_t n, double conf);
double riskctl_cp_lower(uint64_t x, uint64_t n, double conf);

/* The UCB of the current window (riskctl_cp_upper of win_changes, win_n). */
double riskctl_ucb(const struct riskctl_params *pr, const struct riskctl_state *s);

/* Feeds one shadow's outcome (changed: its final answer differs from the stopped one; tokens:
 * what it cost) and applies the rule above.  Returns the move made. */
enum riskctl_move riskctl_observe(const struct riskctl_params *pr, struct riskctl_state *s,
    bool changed, uint64_t tokens);

/* Clamps s->shift into the parameters' bounds (after a policy change); true if it moved
 * (the window then restarts). */
bool riskctl_clamp(const struct riskctl_params *pr, struct riskctl_state *s);

/* Whether the program with this id runs on as a shadow when stopped early: a hash of the id
 * below frac (deterministic, so a replay makes the same choice). */
bool riskctl_pick(const char *id, double frac);

const char *riskctl_move_name(enum riskctl_move m);

#endif
