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
#include <stddef.h>
#include <stdint.h>

struct sched_policy;

/* Most grid points of the counterfactual counts (shifts min_shift, min_shift + step, ...,
 * up to max_shift). */
#define RISKCTL_GRID_MAX 32

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
	/* Sampling while the start is undecided (riskctl_sample_frac): the share of programs
	 * sampled until the controller's first move while the grid point above the current one
	 * is undecided and within reach, for at most `window` shadows; <= shadow_frac: off.
	 * Only with shadow_frac > 0. */
	double boost;
	/* Hysteresis on the cumulative counts: the current point is left by the window rule only
	 * when its UCB at this confidence (<= confidence; min(confidence, hold_confidence) is
	 * used) is over the target; = confidence: the current point is left as any other is bad. */
	double hold_confidence;
	/* The harm proxy (riskctl_end_trusted): 0: every answer change counts (the change
	 * rate); 1: a change counts only when the natural end's answer looks trustworthy. */
	bool harm;
	/* cot, with harm: the valid probe answers just before the natural end that must all equal
	 * it (0: only that the end is not cut). */
	uint32_t harm_stable;
	/* The gain proxy (riskctl_gain_called; cot only: riskctl_params_from_policy leaves it
	 * off for sc): off, or on: a changed stop the proxy calls a gain offsets one other
	 * change (the controlled count is the changes not called gains minus the called gains,
	 * at least 0). */
	bool gain;
	/* Decode tokens the stop's answer must have been held (its run of equal answers). */
	uint32_t gain_tokens;
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
	/* Counterfactual counts (riskctl_observe_cf): grid point k is the shift gmin + k * gstep
	 * (k < gn); gtot trajectories counted on this grid (excluded ones included), gobs[k] of
	 * the movable ones stopped certain there, gchg[k] of those with an answer that differs
	 * from the natural end's.  Cumulative over all settings; reset when the grid
	 * (riskctl.min_shift, riskctl.max_shift, riskctl.step) changes. */
	uint32_t gn, gtot;
	double gmin, gstep;
	uint32_t gobs[RISKCTL_GRID_MAX], gchg[RISKCTL_GRID_MAX];
	uint64_t samples;      /* trajectories counted (shadows and free natural ends) */
	uint64_t excluded;     /* trajectories no grid shift can move (not counted) */
	/* The harm mode the grid counts were made under (riskctl_harm_mode); the counts restart
	 * when it changes, as when the grid does. */
	uint32_t gharm;
	/* With the gain proxy: ggain[k] of the changed stops at point k called gains (not in
	 * gchg[k]); ggainm the gain mode the counts were made under (riskctl_gain_mode). */
	uint32_t ggain[RISKCTL_GRID_MAX];
	uint32_t ggainm;
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

/*
 * Counterfactual observations.  The controlled risk of grid shift k is its answer-change rate
 * *per program*: the share of programs that shift stops certain with an answer that differs
 * from the natural end's, among those whose stop some shift can move (gchg[k] / gtot).  Per
 * program, not per stop, because it bounds what matters: the accuracy lost against running to
 * the end is at most this rate plus the (shift-independent) changes of the excluded stops.
 * A rate among the stops themselves does not transfer (docs/certainty.md: 41% of R1's
 * movable stops change at 0.80 pt loss, 29% of a LOMO-calibrated policy's at 10 pt).
 *
 * One completed trajectory (a shadow: the program's own steps
 * followed by the shadow's continuation to the natural end; or a program that ran to its end)
 * shows where every shift would have stopped and whether that stop's answer differs from the
 * natural end's, so it updates the counts of every grid shift at once.
 *
 * A trajectory is the decision points after each step, in order; the last one is the natural
 * end.  Under threshold tau the program stops at the first point i that is the last, or has
 * c >= tau (a certain stop when i is not the last), or has `other` set (a stop no threshold
 * decides: the unpromising bound, a budget; not a certain stop).  Grid point k counts the
 * trajectory when its stop is certain (gobs[k]++, gchg[k] += !same there).
 *
 * Excluded from the change counts (counted in `excluded` and in gtot as a program with no
 * controllable change): trajectories whose stop is the same point, certain or not, under every
 * grid shift — no shift can move them.  These are
 * exactly: (a) programs that reach the end or an `other` stop before any point with c >= the
 * loosest grid threshold (run to the end, unpromising, budget at every shift), and (b) certain
 * stops at a point every grid threshold accepts (certaindex 1: a settled cot chain, an sc vote
 * the finished/settled chains decide; or c >= the strictest grid threshold) reached before any
 * point with c >= the loosest grid threshold.
 */
struct riskctl_point {
	double c;              /* certaindex after the step; < 0 never stops certain here */
	bool other;            /* a stop no threshold decides ends the program here */
	bool same;             /* the decision's answer here equals the natural end's */
	bool valid;            /* cot: the chain's probe answer here is valid (not empty, not a
	                        * placeholder); read by the harm proxy only */
	bool cont;             /* the decision's answer here is not empty and equals the previous
	                        * point's (it continues a run); read by the gain proxy only */
	uint64_t tokens;       /* decode tokens of the program here (all chains); gain proxy */
};

/*
 * The harm proxy.  An answer change is accuracy lost only when the natural end's answer is
 * right; without ground truth, count a change only when that answer looks trustworthy:
 *
 *   - no chain was cut (budget, deadline, length: ended without an answer of its own), and
 *   - cot: the chain's last harm_stable valid probe answers before the end all equal the
 *     end's answer (it was stable when it finished; fewer valid probes: not trusted);
 *   - sc: the end's vote is a majority of the chains (2 * votes > chains).
 *
 * Changes on problems the model cannot solve (chains run to the budget, late probe answers
 * that keep changing, split votes) are mostly wrong -> wrong and stop counting.
 */
struct riskctl_end {
	bool cut;              /* some chain did not end by itself */
	uint32_t chains;       /* chains of the program (1: cot) */
	uint32_t votes;        /* chains whose final answer equals the end's answer */
};

/* 0 with harm off, 1 + harm_stable with it on: what the grid counts were made under. */
uint32_t riskctl_harm_mode(const struct riskctl_params *pr);

/* Whether the natural end of pts[0..n) (the last point) looks trustworthy by the rule above,
 * with the parameters' harm_stable; always true with harm off or end NULL (no information:
 * the change counts). */
bool riskctl_end_trusted(const struct riskctl_params *pr, const struct riskctl_point *pts,
    size_t n, const struct riskctl_end *end);

/*
 * The gain proxy.  A changed stop is an accuracy *gain* when the stop's answer is right and the
 * natural end's wrong; many are (docs/certainty.md: 22 of Qwen3 cot's 104 changes at shift +1).
 * Without ground truth, call the changed stop at point s of pts[0..n) a gain when
 *
 *   - the stop's answer was held long: the run of consecutive points with that answer
 *     (cont) that contains s spans >= gain_tokens decode tokens (from the point before the
 *     run to its last point), so the chain kept it before and after the stop, and
 *   - the end's answer appears only at the end: the last point does not continue a run
 *     (the point before the end had another answer, or none).
 *
 * A chain that settles on an answer for thousands of tokens and then ends on one it never
 * held is more often wrong at the end than a chain whose end answer was its stable one.
 * Fitted on Qwen3 cot, checked on R1 (docs/certainty.md, "A gain proxy for the controller").
 */
bool riskctl_gain_called(const struct riskctl_params *pr, const struct riskctl_point *pts,
    size_t n, size_t s);

/* 0 with the gain proxy off, gain_tokens with it on: what the grid counts were made under. */
uint32_t riskctl_gain_mode(const struct riskctl_params *pr);

/* The controlled count of grid point k: gchg[k], less ggain[k] (at least 0). */
uint32_t riskctl_grid_changes(const struct riskctl_state *s, uint32_t k);

/* Grid size of the parameters: floor((max_shift - min_shift) / step) + 1, at most
 * RISKCTL_GRID_MAX; 0 when the parameters give no grid. */
uint32_t riskctl_grid_size(const struct riskctl_params *pr);

/* The shift of grid point k. */
double riskctl_grid_shift(const struct riskctl_params *pr, uint32_t k);

/* The grid point nearest a shift (0 below the grid, the last above it). */
uint32_t riskctl_grid_index(const struct riskctl_params *pr, double shift);

/* Where grid point k stops on pts[0..n): stop[k] is the index (n when no point of the n stops
 * it: only for a prefix whose end is not the natural end, last_is_end false), certain[k]
 * whether it is a certain stop.  tau0: the unshifted stop-certain threshold. */
void riskctl_cf_stops(const struct riskctl_params *pr, double tau0,
    const struct riskctl_point *pts, size_t n, bool last_is_end, size_t *stop, bool *certain);

/* Whether some grid shift stops pts[0..n) differently from another (false: excluded, above).
 * With last_is_end false (a stopped program's own steps, its stop the last point) it says
 * whether a shadow can tell anything: false when every grid shift stops at the same point of
 * the prefix, so the program needs no shadow. */
bool riskctl_cf_movable(const struct riskctl_params *pr, double tau0,
    const struct riskctl_point *pts, size_t n, bool last_is_end);

/*
 * Feeds one completed trajectory (shadow: a shadow's, tokens its cost, changed whether its end
 * differs from the answer given; else a free natural end) into every grid point's counts and
 * applies the pick rule:
 *
 *   - proven:  gtot >= min_samples and UCB(x_k, gtot) <= target (x_k = gchg[k]);
 *   - bad:     LCB(x_k, gtot) > target (clearly over), or gtot >= window and UCB >
 *              target (not shown safe within a window);
 *   - best:    the most aggressive proven point with no bad point at or below it;
 *   - best above the current point -> move there (RISKCTL_SAVE, may be several steps);
 *     the current point to be left -> move to best when below, else one step back
 *     (RISKCTL_BACK); otherwise hold (hysteresis between the bounds).  Frozen: count, never
 *     move.
 *   - to be left: LCB > target, or gtot >= window and the UCB at hold_confidence > target
 *     (the bad rule when hold_confidence = confidence; lower: a setting once shown safe is
 *     held while its rate's estimate stays under the target).
 *
 * With riskctl.harm, gchg[k] counts a changed stop only when riskctl_end_trusted(pts, n,
 * end) (gobs[k] counts it either way).  With riskctl.gain, a changed stop that
 * riskctl_gain_called calls a gain goes to ggain[k] instead of gchg[k], and the rule's x_k is
 * riskctl_grid_changes (gchg - ggain, at least 0).
 *
 * The current point is the grid point nearest the shift.  A move restarts the window
 * (win_n, win_changes, which riskctl_observe keeps).  Returns the move made.
 */
enum riskctl_move riskctl_observe_cf(const struct riskctl_params *pr, struct riskctl_state *s,
    double tau0, const struct riskctl_point *pts, size_t n, const struct riskctl_end *end,
    bool shadow, bool changed, uint64_t tokens);

/*
 * The share of programs to sample now (riskctl_pick's frac): 0 when shadow_frac is 0 (off);
 * `boost` while the first decision is open, shadow_frac otherwise.  Open: no move made yet
 * (saves + backs = 0), fewer than `window` shadows at the start (win_n), and either fewer than
 * min_samples programs counted (or counts not on the parameters' grid), or the grid point
 * above the current one neither proven (UCB <= target) nor clearly over (LCB > target) and
 * within reach: at its estimated rate x/gtot, `window` more counted programs would prove it
 * (UCB(x (gtot + window) / gtot, gtot + window) <= target).  A point near the target is not
 * within reach and is left to the base share.  Sampling on the state keeps the counts
 * unbiased: whether a program is sampled depends on the programs before it, never on its own
 * trajectory.  (Boosting after later moves too reached R1 cot's +1.5 sooner, a setting under
 * the target that loses 1.6 pt; docs/certainty.md.)
 */
double riskctl_sample_frac(const struct riskctl_params *pr, const struct riskctl_state *s);

/* Counts a sampled program that stopped early where every grid shift stops it alike
 * (riskctl_cf_movable false on its own steps; no shadow needed): excluded, one more program in
 * gtot; then the pick rule.  Returns the move made. */
enum riskctl_move riskctl_observe_excluded(const struct riskctl_params *pr,
    struct riskctl_state *s);

/* The pick rule alone on the current counts (what riskctl_observe_cf applies after
 * counting); frozen holds. */
enum riskctl_move riskctl_pick_shift(const struct riskctl_params *pr, struct riskctl_state *s);

/* Clamps s->shift into the parameters' bounds (after a policy change); true if it moved
 * (the window then restarts). */
bool riskctl_clamp(const struct riskctl_params *pr, struct riskctl_state *s);

/* Whether the program with this id runs on as a shadow when stopped early: a hash of the id
 * below frac (deterministic, so a replay makes the same choice). */
bool riskctl_pick(const char *id, double frac);

const char *riskctl_move_name(enum riskctl_move m);

#endif
