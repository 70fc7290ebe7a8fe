/*
 * evalsim.h — replaying recorded traces through the scheduler in virtual time, the baselines,
 * and the calibration of a policy.  Used by certa-eval (eval/main.c) and the unit tests.
 *
 * Simulation semantics (the daemon's, step for step): before the first step and after every
 * step the program's view is handed to sched_decide().  Continuing, each unfinished chain
 * advances by decision.step_tokens to pos (capped at the trace's tokens_used) and gets what the
 * replay worker returns: the recorded probe answer in effect at pos (traces_answer_at), the text
 * up to traces_text_offset(pos), thinking_done once pos >= think_end, finished with the final
 * answer once pos >= tokens_used.  Every step's probe costs its recorded out_tokens.  When the
 * program stops, its answer is decision.answer.  The view's budget is unlimited (the full run is
 * the reference), no deadline.
 *
 * Reference ("full"): cot — the first sample's final answer at tokens_used; sc — the majority
 * vote (sched_vote) over the first n samples' final answers, cost the sum of their tokens_used.
 * Correctness everywhere is answer_equivalent(answer, target).
 *
 * Split: a problem belongs to the test split when FNV-1a-64 of its whitespace-normalized text is
 * odd, so every model, dataset and sample of one problem falls on the same side.
 *
 * Not thread-safe per object; distinct objects on distinct threads are fine.  Errors: 0 or a
 * negative code (-ENOMEM, -EINVAL).
 */
#ifndef CERTA_EVAL_EVALSIM_H
#define CERTA_EVAL_EVALSIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/traces.h"
#include "scheduler/sched.h"

enum evalsim_split { EVALSIM_ALL = 0, EVALSIM_TRAIN, EVALSIM_TEST };

/* Whether a problem text is in the split. */
bool evalsim_in_split(const char *problem, enum evalsim_split split);
/* The cross-validation fold (0..folds-1) of a problem text: from the same FNV-1a-64 hash as
 * the split, bits above the split bit, so folds cut across both splits evenly.  0 when
 * folds < 2. */
unsigned evalsim_fold_of(const char *problem, unsigned folds);

/*
 * Which programs a recorded set, a calibration or an evaluation uses (leave-one-out
 * evaluation: certa-eval lomo).  A zeroed filter (or NULL) selects what the split alone
 * selects: every program with at least n samples, run on its first n samples.
 */
#define EVALSIM_FILTER_MAX_SEEDS 8
struct evalsim_filter {
	const char *model;        /* only this model; NULL: every model */
	bool not_model;           /* instead every model but `model` */
	/* cot (n = 1) only: one program per recorded sample whose seed is in seeds[0..nseeds),
	 * run on that seed's chain (the view's samples start at it); nseeds 0: the first
	 * sample only.  Ignored for n > 1. */
	int64_t seeds[EVALSIM_FILTER_MAX_SEEDS];
	size_t nseeds;
	/* groups >= 2: only problems whose evalsim_group_of(problem, groups) is `group` (with
	 * not_group: is not `group`) */
	unsigned groups;
	unsigned group;
	bool not_group;
};

/* A problem's group (0..groups-1) for leave-one-group-out: the problem hash, mixed unlike
 * evalsim_fold_of's, so a group's calibration folds stay balanced.  0 when groups < 2. */
unsigned evalsim_group_of(const char *problem, unsigned groups);

/*
 * The programs filter f (NULL: none) and split select from prog with n chains each: writes
 * up to max views (copies of *prog, samples starting at the selected seed for a seed
 * filter) and returns how many (0: prog is not selected or has fewer than n samples from
 * the selected seed on).
 */
size_t evalsim_filter_views(const struct evalsim_filter *f, const struct traces_program *prog,
    enum evalsim_split split, size_t n, struct traces_program *views, size_t max);

/*
 * The typical chain length of `model` in a trace set: the median tokens_used over all its
 * recorded chains (every dataset and seed; no answer or label is read), 0 when it has none.
 * What unpromising_relative (sched.h) takes as model_tokens; a daemon can know the same
 * number from the lengths of the model's finished chains.
 */
uint64_t evalsim_model_expected(const struct traces *tr, const char *model);
/* *out = *p, with model_tokens = evalsim_model_expected(tr, model) when
 * p->unpromising_relative (and the model has chains), and model_confidence = the model's
 * probe-probability level (traces_model_prob) when its traces carry token statistics. */
void evalsim_model_policy(const struct traces *tr, const struct sched_policy *p,
    const char *model, struct sched_policy *out);

/* The probe-probability level of the traces: the median of their models' levels
 * (traces_model_prob, those in (0, 1); at most the first 64 models); -1 when none carries
 * token statistics.  calibrate writes it as the policy's model_confidence when the start
 * policy gives none. */
double evalsim_traces_level(const struct traces *tr);

/* Outcome of one program under one rule. */
struct evalsim_outcome {
	const char *answer;
	bool correct;
	uint64_t decode_tokens;
	uint64_t probe_tokens;
	enum sched_reason reason;
	bool low_confidence;
	uint64_t stop_tokens;     /* most tokens of a chain at the stop */
	/* Latency proxy: decode tokens along the critical path, per step the most any chain
	 * advanced (chains decode in parallel); the full run's is its longest chain. */
	uint64_t path_tokens;
	bool launched;            /* staged sc: the pending chains were launched */
};

/* The reference run. */
struct evalsim_full {
	const char *answer;
	bool correct;
	uint64_t tokens;
	uint64_t path;            /* the longest chain (latency proxy, evalsim_outcome) */
};

/*
 * Difficulty rules the calibration tries (scheduler/difficulty.h): the early window
 * (difficulty.tokens) and the answer changes in it that make a chain hard
 * (difficulty.changes).  Every recorded cot point carries its chain's class under each.
 */
#define EVALSIM_NDIFF 9
struct evalsim_diff_rule {
	uint64_t tokens;
	uint32_t changes;
};
extern const struct evalsim_diff_rule evalsim_diff_rules[EVALSIM_NDIFF];

/* One decision point of a trajectory (recorded with thresholds disabled). */
struct evalsim_point {
	uint64_t cost;            /* decode + probe tokens so far */
	uint64_t most;            /* what the unpromising bound reads: the longest unfinished
	                           * chain's tokens (open_raw) in sched_unpromising_tokens units */
	uint64_t most_raw;        /* most tokens of a chain (chain i has min(its tokens, most_raw): the
	                           * chains advance in lockstep) */
	double c;                 /* program certaindex; < 0 when not eligible to stop-certain */
	bool decided;             /* sc: finished chains decide the vote (stops at any threshold
	                           * <= 1), with settled ones and those at least
	                           * sc.vote_threshold certain (evalsim_set_vote) */
	double vote;              /* sc: certainty_program.vote_level (-1 for cot) */
	double cm;                /* sc: the sc model's certaindex (c when not decided) */
	bool end;                 /* natural end (always stops) */
	bool correct;             /* the decision's answer is right */
	bool same;                /* ... equals the reference answer */
	bool valid;               /* cot: the chain's answer is valid */
	bool settled;             /* cot: the chain is settled (certaindex 1, certainty.h) */
	bool cont;                /* the decision's answer is not empty and equals the previous
	                           * point's (riskctl_point.cont) */
	uint64_t decode;          /* decode tokens so far, all chains (riskctl_point.tokens) */
	uint64_t late;            /* staged sc: tokens of the chains launched late (0 before) */
	uint64_t open_raw;        /* the tokens behind `most`: the longest unfinished chain's
	                           * (most_raw while the chains advance together) */
	double x[SCHED_COT_NFEAT];/* cot: chain features; sc: program features */
	/* cot: the chain's enum difficulty_class under evalsim_diff_rules[r] */
	unsigned char cls[EVALSIM_NDIFF];
};

/* What the model rows are labelled with. */
enum evalsim_label {
	/* stopping here loses nothing: the reference is wrong, or this answer is right */
	EVALSIM_LABEL_SAFE = 0,
	/* this answer equals the chain's final answer (cot) / the reference vote (sc) */
	EVALSIM_LABEL_SAME = 1,
};

/* Per-program trajectory plus model training rows. */
/* Chains per program at most. */
#define EVALSIM_MAX_N 64

struct evalsim_traj {
	enum evalsim_label label;  /* set before evalsim_run (zero: SAFE) */
	struct evalsim_point *pts;
	size_t npts, cap;
	/* training rows: features + label (cot: per chain and valid answer; sc: per program) */
	double *x;
	unsigned char *y;
	size_t nrows, rows_cap, nfeat;
	/* the chains' full lengths (tokens_used), for lengths at a stop (most_raw) */
	uint64_t chain_tokens[EVALSIM_MAX_N];
	size_t nchains;
	/* chains started first (staged sc: nchains / 2 + 1; the others from their launch on,
	 * evalsim_point.late); 0 or nchains: all at once */
	size_t started;
	/* The natural end as the controller's harm proxy sees it (riskctl_end): some chain did
	 * not finish by itself (trace finished false) or has no final answer; the chains whose
	 * final answer equals the full run's answer. */
	bool end_cut;
	uint32_t end_votes;
};

void evalsim_traj_free(struct evalsim_traj *t);

/* Reference answer and cost of a program with n chains (n = 1 for cot). */
void evalsim_reference(const struct traces_program *prog, size_t n, struct evalsim_full *out);

/* One replayed chain: its trace and the probe points recorded so far (the sched_chain's
 * probes point into them).  Shared by evalsim_run and eval/routesim.c. */
struct evalsim_chain {
	const struct trace *t;
	struct sched_probe *probes;
	size_t nprobes, cap;
};

/* Advances an unfinished chain by one step of step_tokens (0: 1) on its trace, as a worker
 * would: position, the probe answer there (its tokens added to *probe_tokens), text length,
 * thinking end, finished with the final answer at the trace's end.  0 or -ENOMEM. */
int evalsim_chain_advance(struct evalsim_chain *st, struct sched_chain *ch, uint32_t step_tokens,
    uint64_t *probe_tokens);

/*
 * Runs the program (first n samples; n = 1 for cot) under policy p with sched_decide().  When
 * traj is not NULL, appends every decision point and the model rows of this program (cot rows
 * per chain, sc rows per program).  Returns 0, -EINVAL (fewer than n samples) or -ENOMEM.
 */
int evalsim_run(const struct sched_policy *p, const struct traces_program *prog,
    enum sched_algo algo, size_t n, struct evalsim_outcome *out, struct evalsim_traj *traj);

/* Dynasor-CoT on one trace: probes every `step` tokens; stops when the last k probe answers
 * are non-empty, equivalent and free of uncertainty words; the answer is that answer.  Runs to
 * the end otherwise.  Cost: decode tokens plus every probe's out_tokens. */
void evalsim_dynasor_chain(const struct trace *t, unsigned k, uint64_t step,
    struct evalsim_outcome *out);
/* The free </think> rule on one trace: stop at the first step boundary at or after the end of
 * thinking; answer = the probe answer there (one probe paid); run to the end when the text has
 * no </think> or the probe answer is empty. */
void evalsim_think_chain(const struct trace *t, uint64_t step, struct evalsim_outcome *out);
/* Either chain rule applied to n chains, majority vote (sched_vote) of their answers; kind 0:
 * dynasor with k, kind 1: </think>. */
void evalsim_chain_rule(const struct traces_program *prog, size_t n, int kind, unsigned k,
    uint64_t step, struct evalsim_outcome *out);

/*
 * Where a threshold tau and an unpromising bound u (0 off) stop a recorded trajectory
 * (pts[0..n)): the first point with end, decided (tau <= 1), c >= tau, or most >= u.  Exactly
 * what sched_decide() decides with those values (the step sizes do not depend on them).
 */
size_t evalsim_stop_index(const struct evalsim_point *pts, size_t n, double tau, uint64_t u);

/*
 * As evalsim_stop_index with a threshold per difficulty class: a point of class c (under
 * evalsim_diff_rules[rule]) stops-certain when its certaindex reaches tau[c]
 * (tau[DIFFICULTY_NONE] unused when rule < EVALSIM_NDIFF).  rule >= EVALSIM_NDIFF: no
 * classes, tau[0] for every point.  Exactly what sched_decide() decides with
 * difficulty.tokens / difficulty.changes of the rule and cot.threshold_easy / _hard.
 */
size_t evalsim_stop_index_cls(const struct evalsim_point *pts, size_t n, size_t rule,
    const double tau[3], uint64_t u);

/*
 * As evalsim_stop_index with cot.threshold_slope `slope`: a point stops-certain when its
 * certaindex reaches sched_cot_threshold_at(tau, slope, most).  Exactly what sched_decide()
 * decides with those values on a cot trajectory.
 */
size_t evalsim_stop_index_slope(const struct evalsim_point *pts, size_t n, double tau,
    double slope, uint64_t u);

/* L2-regularized logistic regression by Newton's method: rows x (nrows x nfeat, column 0 the
 * bias), labels y; lambda applies to every weight but the bias.  Writes w.  Returns 0 or
 * -ENOMEM. */
int evalsim_fit_logistic(const double *x, const unsigned char *y, size_t nrows, size_t nfeat,
    double lambda, double *w);

/* A recorded set: one trajectory per program of a split, with its reference. */
struct evalsim_set {
	size_t nprog;
	struct evalsim_traj *traj;     /* per program (points only) */
	const char **model;            /* per program */
	bool *full_correct;
	uint64_t *full_tokens;
	struct evalsim_traj rows;      /* all model rows */
	const char *models[16];        /* distinct models, first 16 */
	size_t nmodels;
	/* evalsim_pick_threshold: count only the harm (right at the end, wrong when stopped),
	 * not the lucky fixes that offset it; less noisy, more conservative */
	bool harm_only;
	/* evalsim_pick_threshold: score a model's loss by the upper bound
	 * (H - F + z * sqrt(H + F)) / N instead of (H - F) / N, where H programs were right at
	 * the end and wrong when stopped, F the reverse, N programs: the net flips plus z
	 * standard deviations of their sum (a difference of rare +-1 events has variance
	 * ~ H + F).  0: the plain loss. */
	double z;
	/* Cross-validation (evalsim_record_folds): folds used, the fold of each program and of
	 * each model row (NULL when folds < 2). */
	unsigned folds;
	unsigned *fold;
	unsigned *row_fold;
	/* cot sets: the cot.threshold_slope the scores and picks apply (evalsim_stop_index_slope;
	 * 0: none; the difficulty-class sweeps assume 0).  sc sets: 0. */
	double slope;
};

/* Runs every program of the split (with at least n samples) with thresholds and the
 * unpromising bound disabled, recording trajectories and model rows.  Returns 0, -EINVAL (no
 * program) or -ENOMEM (then s is empty). */
int evalsim_record(const struct traces *tr, const struct sched_policy *p, enum sched_algo algo,
    size_t n, enum evalsim_split split, struct evalsim_set *s);
/* As evalsim_record, rows labelled `label` (evalsim_record: EVALSIM_LABEL_SAFE). */
int evalsim_record_labeled(const struct traces *tr, const struct sched_policy *p,
    enum sched_algo algo, size_t n, enum evalsim_split split, enum evalsim_label label,
    struct evalsim_set *s);
/* As evalsim_record_labeled, also tagging every program and model row with its fold
 * (evalsim_fold_of(problem, folds)) for cross-validation. */
int evalsim_record_folds(const struct traces *tr, const struct sched_policy *p,
    enum sched_algo algo, size_t n, enum evalsim_split split, enum evalsim_label label,
    unsigned folds, struct evalsim_set *s);
/* As evalsim_record_folds, over the programs filter f selects (NULL: all of the split). */
int evalsim_record_filtered(const struct traces *tr, const struct sched_policy *p,
    enum sched_algo algo, size_t n, enum evalsim_split split, enum evalsim_label label,
    unsigned folds, const struct evalsim_filter *f, struct evalsim_set *s);
void evalsim_set_free(struct evalsim_set *s);
/* Fits logistic weights (nfeat) on the model rows of s outside fold `skip` (skip >= folds:
 * all rows).  Returns 0, -EINVAL (no row) or -ENOMEM. */
int evalsim_fit_set(const struct evalsim_set *s, unsigned skip, size_t nfeat, double lambda,
    double *w);
/*
 * Recomputes the recorded certaindex (pts[].c) of the programs of fold `fold` (fold >=
 * s->folds: all) as sched_decide() would with weights w: cot (algo COT) from the chain
 * features, sc from the program features (valid only if the set was recorded with the same
 * chain weights, which the sc features depend on).  The steps and features do not depend on
 * the weights, so this equals recording again with them.
 */
void evalsim_set_reweight(struct evalsim_set *s, enum sched_algo algo, const double *w,
    unsigned fold);

/*
 * Applies sc.vote_threshold tv to a recorded sc set, as sched_decide() would have with it:
 * each point is decided when its vote level (struct evalsim_point) is above 1 or, with
 * tv <= 1, at least tv, and its certaindex is then 1, else the model's (cm).  The steps,
 * features, answers and model rows do not depend on tv, so this equals recording again with
 * it.  sc sets only.
 */
void evalsim_set_vote(struct evalsim_set *s, double tv);

/* Accuracy loss (fraction, reference minus rule) and token saving of (tau, u) over the
 * programs of `model` (NULL: all) of a recorded set. */
void evalsim_score_model(const struct evalsim_set *s, const char *model, double tau, uint64_t u,
    double *loss, double *saved);
/* The same with class thresholds tau[] under difficulty rule `rule` (evalsim_stop_index_cls;
 * rule >= EVALSIM_NDIFF: tau[0] for every point). */
void evalsim_score_model_cls(const struct evalsim_set *s, const char *model, size_t rule,
    const double tau[3], uint64_t u, double *loss, double *saved);

/*
 * A model's own distribution of its certainty score, an unlabelled statistic (no answer and
 * no correctness is read): over the programs of `model` (NULL: all) in a set recorded with
 * policy p.  cot (algo COT): the chain model's score sigmoid(cot_w . x) at every decision
 * point of a valid, unsettled, unfinished chain; sc: the sc model's score (the point's cm) at
 * every point whose vote is not decided.  per_program: each program's highest such score
 * instead (one value per program that has one).  Writes the values sorted ascending into
 * *out (malloc'd, caller frees) and their count into *n, both only on success.  Returns 0,
 * -EINVAL (no such point) or -ENOMEM.  The statistic of the score-quantile experiment
 * (`certa-eval lomo --score-quantiles`; docs/certainty.md, "A threshold relative to the
 * model's own scores").
 */
int evalsim_score_dist(const struct evalsim_set *s, const struct sched_policy *p,
    enum sched_algo algo, const char *model, bool per_program, double **out, size_t *n);
/* The share of the sorted values v[0..n) below t (0 when n is 0). */
double evalsim_dist_cdf(const double *v, size_t n, double t);
/* The level with share q of the sorted values v[0..n) (n > 0) below it: v[round(q n)], or
 * just above the largest value when that index is past the end.  evalsim_dist_cdf of it is q
 * up to ties and rounding to 1/n. */
double evalsim_dist_level(const double *v, size_t n, double q);

/* Candidate thresholds of the calibration sweep, high to low (1.5: never stop-certain). */
extern const double evalsim_taus[];
extern const size_t evalsim_ntaus;

/*
 * The cheapest threshold (and, with sweep_u, unpromising bound among 0, 24576, 16384, 12288,
 * 10240, 8192, 6144; else *u_out is kept) whose worst per-model accuracy loss stays <= max_loss
 * at that threshold and at every higher candidate (a loss that dips back under the bound below
 * a failing threshold is luck, not calibration).  Writes the threshold, bound and worst loss;
 * returns the token saving (fraction).
 */
double evalsim_pick_threshold(const struct evalsim_set *s, double max_loss, bool sweep_u,
    double *tau_out, uint64_t *u_out, double *loss_out);

/*
 * The same for an sc set with sc.vote_threshold swept too (evalsim_taus; 1.5 = off): the
 * cheapest (vote threshold, threshold, bound) whose worst per-model loss stays <= max_loss at
 * that pair and at every pair with both thresholds at least as high (the bound of each pair
 * sees the vote rule).  Off wins ties, so a set where the rule buys nothing picks what
 * evalsim_pick_threshold picks.  Leaves the set under the chosen vote threshold
 * (evalsim_set_vote); writes it to *tv_out.  Returns the saving (fraction), -1e9 without
 * memory.
 */
double evalsim_pick_vote(struct evalsim_set *s, double max_loss, double *tv_out,
    double *tau_out, uint64_t *u_out, double *loss_out);

/* cot.threshold_slope candidates of evalsim_pick_slope (0 first). */
extern const double evalsim_slopes[];
extern const size_t evalsim_nslopes;

/*
 * The same for a cot set with cot.threshold_slope swept too (evalsim_slopes): for each slope,
 * the cheapest (threshold, bound) as evalsim_pick_threshold picks it under that slope; the
 * slope saving most wins, 0 on ties (so a set where the slope buys nothing picks what
 * evalsim_pick_threshold picks).  Leaves s->slope at the chosen slope and writes it to
 * *slope_out.  Returns the saving (fraction).
 */
double evalsim_pick_slope(struct evalsim_set *s, double max_loss, double *slope_out,
    double *tau_out, uint64_t *u_out, double *loss_out);

/*
 * The cheapest difficulty rule and pair of class thresholds (cot.threshold_easy,
 * cot.threshold_hard, both from evalsim_taus) with the unpromising bound (swept as in
 * evalsim_pick_threshold) whose worst per-model loss bound stays <= max_loss at that pair and
 * at every pair with both thresholds at least as high.  only_rule 0: every rule, r + 1: only
 * evalsim_diff_rules[r]; ordered: only pairs with the hard threshold at least the easy one
 * (hard chains never stop sooner).  Writes the rule index, the two
 * thresholds, the bound and the worst loss; returns the saving.  cot sets only.  Returns a
 * negative value when memory runs out.
 */
double evalsim_pick_classes(const struct evalsim_set *s, double max_loss, int only_rule,
    bool ordered, size_t *rule_out, double *easy_out, double *hard_out, uint64_t *u_out,
    double *loss_out);

/*
 * The savings-vs-loss frontier of a recorded cot set at unpromising bound u: for each loss
 * budget budgets[b] (fraction; plain net loss over all the set's programs) the largest
 * saving of one threshold (saved1[b]) and of a threshold per class of `rule` (saved2[b]); -1
 * where none fits.  In-sample on the set: what each rule could do at best.  Returns 0 or
 * -ENOMEM.
 */
int evalsim_frontier(const struct evalsim_set *s, size_t rule, uint64_t u,
    const double *budgets, size_t nb, double *saved1, double *saved2);

/* Calibration parameters and report. */
struct evalsim_calib {
	double max_loss;          /* accuracy loss allowed per model, as a fraction (0.01) */
	double margin;            /* fit to max_loss * margin on the fitting split, (0, 1];
	                           * 0 means 1.  Held-out loss is noisier than the fit. */
	enum evalsim_split split; /* data to fit on */
	const struct evalsim_filter *filter; /* within the split (NULL: all of it) */
	size_t sc_n;              /* chains for sc (3) */
	double lambda;            /* L2 strength */
	/* Robustness.  folds >= 2: the threshold is chosen on out-of-fold certaindexes (each
	 * fold's programs scored by weights fitted without them; folds by problem hash); 1: on
	 * the fitting data itself (in-sample, optimistic); 0 means 5.  z: the loss of a
	 * candidate is the upper bound (H - F + z sqrt(H + F)) / N (struct evalsim_set); 0: the
	 * plain net loss. */
	unsigned folds;
	double z;
	/* What the models predict.  certa-eval uses SAFE for the chain model (it learns to stop
	 * hopeless chains too) and SAME for the sc vote model (a vote that already matches the
	 * full vote is what stopping sc needs); on the dev traces that pair does best. */
	bool harm_only;           /* bound the harm only (see struct evalsim_set) */
	enum evalsim_label cot_label;
	enum evalsim_label sc_label;
	/* Also try cot thresholds per difficulty class (evalsim_pick_classes) and keep them when
	 * they save more on the out-of-fold trajectories at the same bound.  Otherwise (and
	 * always when false) the result has difficulty.tokens 0 and both class thresholds equal
	 * to cot.threshold. */
	bool difficulty;
	int difficulty_rule;      /* 0: sweep every rule; r + 1: evalsim_diff_rules[r] only */
	bool difficulty_ordered;  /* only cot.threshold_hard >= cot.threshold_easy */
	bool cot_classes;         /* result: the classes were kept */
	/* result: the chosen spacing's chain rows had token statistics (traces exported from
	 * llm workers), the chain model with them predicted the rows significantly better out
	 * of fold (a likelihood-ratio test, p < 0.001 after the design effect of a chain's
	 * rows) and its pick saved more, so the token-probability weights are fitted; otherwise
	 * they are 0 and the pick is the one without them. */
	bool cot_stats;
	bool cot_stats_seen;      /* result: some chain row had token statistics */
	/* Also sweep sc.vote_threshold (evalsim_pick_vote) with the sc threshold; otherwise the
	 * starting policy's value is kept (and the sweep sees it). */
	bool sc_vote;
	/* Also sweep cot.threshold_slope (evalsim_pick_slope) with the cot threshold; otherwise
	 * the starting policy's value is kept (and the sweep sees it).  Difficulty classes are
	 * tried only where the slope is 0. */
	bool cot_slope;
	/* results: on the data the threshold was chosen on (out-of-fold when folds >= 2):
	 * worst-model plain loss, worst-model bound, overall saving */
	double cot_loss, cot_saved, sc_loss, sc_saved;
	double cot_bound, sc_bound;
	/* with the final weights on all the fitting data (in-sample) */
	double cot_in_loss, cot_in_saved, sc_in_loss, sc_in_saved;
	size_t cot_programs, sc_programs;
};

/*
 * Whether token statistics (chain features 9, 14, 15) earn their place in a calibration: the
 * chain model with them predicts its nrows rows (from nprog programs) better out of fold,
 * ll1 against ll0 without them (each row scored by weights fitted without its fold), by a
 * likelihood-ratio statistic 2 (ll1 - ll0) / (nrows / nprog) above 16.27 (chi-squared, 3
 * degrees of freedom, p = 0.001; the division is the full design effect, since one chain's
 * rows are not independent), and the threshold pick with them saves more (saved1 > saved0).
 */
bool evalsim_stats_gain(size_t nrows, size_t nprog, double ll1, double ll0, double saved1,
    double saved0);

/*
 * Fits a policy on the traces (split): cot weights by logistic regression on chain rows; the
 * cot threshold and unpromising bound by sweeping trajectories for the lowest cost whose
 * per-model loss bound (struct evalsim_set, z) stays <= max_loss * margin for every model at
 * that threshold and every higher one.  With folds >= 2 the sweep runs on out-of-fold
 * certaindexes (fold f scored by weights fitted without it) and the final weights are fitted
 * on all the data.  Then the sc weights, threshold and bound the same way (per fold with that
 * fold's chain weights).  The probe spacing (probe_stride, max_step_tokens) is chosen among
 * {0.2, 0.3} x {512, 1024} by the same criterion.  *p holds the starting values (step,
 * budgets...) and receives the result (doubles rounded as policy files write them); when the
 * start gives no model_confidence and the traces carry token statistics, the result's is
 * evalsim_traces_level (the level the rows were measured at: certad's prior for the serving
 * model until it learns that model's).  Returns 0, -EINVAL (no programs) or -ENOMEM.
 */
int evalsim_calibrate(const struct traces *tr, struct evalsim_calib *cal,
    struct sched_policy *p);

#endif
