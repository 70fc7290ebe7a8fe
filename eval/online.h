/*
 * online.h — `certa-eval online`: the daemon's shadow-driven risk control (scheduler/riskctl.h)
 * simulated over a stream of recorded programs in virtual time.
 *
 * For each held-out model M (leave-one-model-out): the starting policy is the shipped default
 * (or, with start_lomo, one calibrated without M), the stream is M's programs in a seeded
 * random order (cot: every recorded seed's chain is a program; sc n=3: one program per
 * problem), repeated with a new order for `passes`.  Each program stops where sched_decide()
 * would under the controller's current shift (evalsim_stop_index on the recorded trajectory,
 * riskctl_threshold); an early stop picked by riskctl_pick(stream key, shadow_frac) runs on as
 * a shadow whose tokens (from the stop to the trajectory's end) count as cost, and whose
 * outcome (answer changed vs the full run) reaches the controller `lag` programs later (the
 * shadow runs at the lowest priority while traffic continues).  Reported per window of 100
 * programs: saving (shadow cost included), accuracy loss vs running to the end, shift; the
 * largest loss over any 100 consecutive programs; the saving of M's own best threshold
 * (in-sample sweep over the calibration grid, loss <= 1 pt, no shadow cost) and the first
 * program after which the trailing 100 programs save >= 80% of it.  `runs` stream orders are
 * simulated and summarized.
 *
 * The description above is the windowed controller (windowed: certain stops shadowed, one
 * outcome at the current setting, riskctl_observe).  The default is the counterfactual one, as
 * in certad: a program picked by riskctl_pick that ran to its end feeds riskctl_observe_cf at
 * once, free; one picked that stopped early (certain or unpromising) runs on as a shadow only
 * when some grid shift would have stopped it elsewhere (riskctl_cf_movable on its own steps),
 * and its whole trajectory feeds riskctl_observe_cf `lag` programs later.  The static table
 * per shift shows both rates (per movable stop, per program).  The share picked is
 * riskctl_sample_frac of the controller's state (riskctl.shadow_boost until the first move),
 * as in certad; a shadow's chains count in the learned model_tokens when it lands (only when
 * the base share alone picked it), not also at the program's stop.
 *
 * Single-threaded; prints to stdout.
 */
#ifndef CERTA_EVAL_ONLINE_H
#define CERTA_EVAL_ONLINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/traces.h"
#include "scheduler/sched.h"

/* The model_tokens each program of a stream ran under (online_opts.mt_trace). */
struct online_mt_trace {
	uint64_t *mt;
	size_t max, n;
	uint64_t oracle;
	int *reason;              /* NULL, or each program's enum sched_reason */
};

struct online_opts {
	const struct sched_policy *start;  /* starting policy incl. riskctl.* (the default) */
	bool start_lomo;          /* calibrate the start without the held-out model */
	unsigned algos;           /* bit 0 cot, bit 1 sc */
	unsigned passes;          /* stream = passes x the model's programs (>= 1) */
	unsigned runs;            /* stream orders simulated (>= 1) */
	unsigned first_run;       /* the first stream order: runs first_run .. first_run + runs - 1
	                           * (held-out orders for a choice made on 0 .. 4) */
	unsigned lag;             /* programs between a shadow's start and its outcome */
	unsigned window;          /* programs per reported window (100) */
	/* The window criteria (docs/certainty.md, "Window criteria for the online target"):
	 * the loop's worst `window` loss against the fixed best threshold's on the same stream
	 * (criterion a: at most 1 pt worse), and its worst loss over `long_window` programs
	 * (criterion b: <= 1 pt); each run also says whether a setting >= 80% of the best was
	 * first used (and kept from) by program `reach_by`.  0: that part not reported. */
	unsigned long_window;     /* 500 */
	unsigned reach_by;        /* 300 */
	double max_loss;          /* for the model's own best threshold (0.01) */
	bool verbose;             /* the per-window table of every run, not just the first */
	bool windowed;            /* the previous controller: certain stops shadowed, one outcome
	                           * at the current setting (riskctl_observe); default: the
	                           * counterfactual counts (riskctl_observe_cf) */
	/* model_tokens (sched.h, unpromising_relative): false (learned, as certad): each program
	 * is decided with the model's median chain length learned so far (scheduler/chainlen.h,
	 * the start policy's model_tokens, normally 0 = absolute bounds, until
	 * model_tokens.min_samples chains are counted) from the stream's finished programs and
	 * landed shadows, which chains count as in certad (chainlen_counts: natural ends at full
	 * length, unpromising cuts at their length, certainty stops not; a shadow at its end);
	 * true (oracle): the median of all the model's traces from the first program
	 * (evalsim_model_policy).  The static figures (a shift's saving, the model's own best
	 * threshold) are the oracle's either way. */
	bool oracle_tokens;
	/* When set and its n is 0: receives the model_tokens of each program of the first
	 * (model, algorithm) simulated, run 0 (up to max), and that model's oracle value (tests). */
	struct online_mt_trace *mt_trace;
};

/* The largest loss over any w consecutive programs of a stream of n: diff[k] is program k's
 * full run right minus its stopped run right (+1 a loss, -1 a gain, 0 neither), a window's
 * loss its sum / w; the largest over the n - w + 1 windows, negative when every window gains.
 * A stream shorter than w is one window of its n programs (sum / n).  NAN when n or w is 0 or
 * diff is NULL.  Every window figure of the simulation (the loop's, the fixed thresholds')
 * is this function. */
double online_worst_window(const int *diff, size_t n, size_t w);

/* Runs the simulation for every model of tr and prints it.  Returns 0, or a negative errno
 * (-EINVAL: fewer than two models or no program; -ENOMEM). */
int online_run(const struct traces *tr, const struct online_opts *o);

#endif
