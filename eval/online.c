/* online.c — certa-eval online: the shadow-driven risk controller over a stream of traces. */
#include "eval/online.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/evalsim.h"
#include "scheduler/chainlen.h"
#include "scheduler/riskctl.h"

/* One program of a simulated stream. */
struct online_prog {
	double cost;              /* decode + probe tokens up to the stop */
	double shadow;            /* shadow tokens it started (0: none) */
	double full;              /* the full run's tokens */
	int diff;                 /* full run right - stopped right (loss in programs) */
	bool shadowed, changed;
	double shift;             /* the shift it ran under */
	uint64_t model_tokens;    /* the model_tokens it ran under (0: absolute bounds) */
	int reason;               /* enum sched_reason of its stop */
};

/* A shadow whose outcome is still on its way. */
struct online_pending {
	size_t at;                /* stream index at which it lands */
	size_t j;                 /* its program (trajectory) */
	bool changed;
	bool lengths;             /* its chains count in the model's lengths */
	uint64_t tokens;
};

/* The trajectory t as a program decided with model_tokens mt sees it: its points with `most`
 * in the units of pm (sched_unpromising_tokens of the raw tokens), into buf; or t itself when
 * learn is false (the set was recorded with the model's median from all its traces). */
static const struct evalsim_traj *
online_view(const struct evalsim_traj *t, const struct sched_policy *pm, bool learn,
    struct evalsim_point *buf, struct evalsim_traj *view)
{
	size_t i;

	if (!learn)
		return t;
	*view = *t;
	view->pts = buf;
	for (i = 0; i < t->npts; i++) {
		buf[i] = t->pts[i];
		buf[i].most = sched_unpromising_tokens(pm, t->pts[i].open_raw);
	}
	return view;
}

/* Why a program stopped at pt (left points after it), as sched_decide() orders the checks. */
static enum sched_reason
online_reason(const struct evalsim_point *pt, size_t left, double tau, uint64_t u)
{
	if (pt->end || left == 0)
		return SCHED_REASON_NATURAL_END;
	if ((tau <= 1.0 && pt->decided) || (pt->c >= 0 && pt->c >= tau))
		return SCHED_REASON_CERTAIN;
	if (u > 0 && pt->most >= u)
		return SCHED_REASON_UNPROMISING;
	return SCHED_REASON_NATURAL_END;
}

/* What certad's chain-length learning (daemon/shadow.c) counts of a program that ended with
 * `reason` at point pt: its chains at their lengths there (the chains started first at
 * most_raw, those of a staged launch at `late`; chains never launched do not exist), when
 * chainlen_counts() says the ending counts (a shadow: NATURAL_END at the trajectory's end). */
static void
online_learn(struct chainlen *cl, const struct evalsim_traj *t, int reason,
    const struct evalsim_point *pt)
{
	size_t i, started = t->started > 0 ? t->started : t->nchains;

	if (!chainlen_counts(reason))
		return;
	for (i = 0; i < t->nchains; i++) {
		uint64_t at = i < started ? pt->most_raw : pt->late;
		if (i >= started && at == 0)
			continue;
		chainlen_add(cl, t->chain_tokens[i] < at ? t->chain_tokens[i] : at);
	}
}

/* A recorded trajectory as the controller's counterfactual points (riskctl.h): c with the sc
 * vote decided by finished chains as certaindex 1 (it stops at every threshold <= 1), other =
 * the unpromising bound, same = the answer equals the full run's. */
static void
online_points(const struct evalsim_traj *t, double tau0, uint64_t u, struct riskctl_point *out)
{
	size_t i;

	for (i = 0; i < t->npts; i++) {
		const struct evalsim_point *pt = &t->pts[i];
		out[i].c = tau0 <= 1.0 && pt->decided ? 1 : pt->c;
		out[i].other = u > 0 && pt->most >= u;
		out[i].same = pt->same;
		out[i].valid = pt->valid;
		out[i].cont = pt->cont;
		out[i].tokens = pt->decode;
	}
}

/* A recorded trajectory's natural end as the harm proxy sees it (riskctl_end). */
static void
online_end(const struct evalsim_traj *t, struct riskctl_end *e)
{
	e->cut = t->end_cut;
	e->chains = (uint32_t)t->nchains;
	e->votes = t->end_votes;
}

/* What one run of a stream gives. */
struct online_result {
	double saved, loss;       /* whole stream, shadows included */
	double worst_window_loss; /* largest over any `window` consecutive programs */
	double worst_long;        /* ... over any `long_window` (NAN: not asked) */
	double start_window;      /* the fixed start threshold's worst `window` on this order */
	double best_window, best_long;  /* the fixed best threshold's worst window, long window */
	long converged;           /* programs until the trailing window reaches 80% of best; -1 */
	long reach;               /* first program run under a setting >= 80% of best (-1) */
	long held;                /* programs from which on the shift's static saving stays >= 80%
	                           * of best (-1: never) */
	double final_shift;
	uint64_t shadows, changes, saves, backs;
	uint64_t samples, excluded;  /* counterfactual: trajectories counted / excluded */
	double shadow_share;      /* shadow tokens / full-run tokens */
	long learned_at;          /* first program run under a learned model_tokens (-1) */
	uint64_t final_mt;        /* the model_tokens of the last program */
};

static uint64_t
online_rand(uint64_t *s)
{
	*s = *s * 6364136223846793005ull + 1442695040888963407ull;
	return *s >> 17;
}

/* A seeded Fisher-Yates permutation of 0..n-1. */
static void
online_shuffle(size_t *order, size_t n, uint64_t *seed)
{
	size_t i, j, t;

	for (i = 0; i < n; i++)
		order[i] = i;
	for (i = n; i > 1; i--) {
		j = (size_t)(online_rand(seed) % i);
		t = order[i - 1];
		order[i - 1] = order[j];
		order[j] = t;
	}
}

/* Simulates one stream order; fills progs[0..total) and r. */
/* Whether a stop at pt (left points after it) is a stop-certain before the end: the stops
 * the controller's shift moves and the daemon shadows (unpromising stops do not depend on
 * the shift and are not shadowed). */
static bool
online_certain(const struct evalsim_point *pt, size_t left, double tau)
{
	if (left == 0 || pt->end)
		return false;
	return (tau <= 1.0 && pt->decided) || (pt->c >= 0 && pt->c >= tau);
}

/* The static saving of a shift on the whole set, cached per distinct shift (few). */
struct online_cache {
	double shift[64], saved[64];
	size_t n;
};

static double
online_static_saved(struct online_cache *c, const struct evalsim_set *set, double tau0,
    uint64_t u, double shift)
{
	double l, s;
	size_t i;

	for (i = 0; i < c->n; i++)
		if (c->shift[i] == shift)
			return c->saved[i];
	evalsim_score_model(set, NULL, riskctl_threshold(tau0, shift), u, &l, &s);
	if (c->n < 64) {
		c->shift[c->n] = shift;
		c->saved[c->n++] = s;
	}
	return s;
}

static int
online_stream(const struct online_opts *o, const struct evalsim_set *set, const char *model,
    enum sched_algo algo, const struct sched_policy *p, double tau0, uint64_t u, unsigned run, double best,
    uint64_t oracle_mt, struct online_prog *progs, size_t total, struct online_result *r)
{
	bool learn = !o->oracle_tokens && p->unpromising_relative;
	struct sched_policy pm = *p;
	struct evalsim_point *vbuf;
	struct evalsim_traj view;
	struct chainlen *cl;
	struct online_cache cache = { .n = 0 };
	struct riskctl_params pr;
	struct riskctl_state st;
	struct online_pending *pend;
	struct riskctl_point *pts;
	struct riskctl_end end;
	size_t *order, npend = 0, k, i, w = o->window, maxpts = 1;
	uint64_t seed = 0x9e3779b97f4a7c15ull * (run + 1);
	double cost = 0, full = 0, shadow = 0;
	long diff = 0;
	char key[256];

	for (i = 0; i < set->nprog; i++)
		if (set->traj[i].npts > maxpts)
			maxpts = set->traj[i].npts;
	order = calloc(set->nprog, sizeof *order);
	pend = calloc(total, sizeof *pend);
	pts = calloc(maxpts, sizeof *pts);
	vbuf = calloc(maxpts, sizeof *vbuf);
	cl = calloc(1, sizeof *cl);
	if (order == NULL || pend == NULL || pts == NULL || vbuf == NULL || cl == NULL) {
		free(order);
		free(pend);
		free(pts);
		free(vbuf);
		free(cl);
		return -ENOMEM;
	}
	riskctl_params_from_policy(p, algo, &pr);
	memset(&st, 0, sizeof st);
	memset(r, 0, sizeof *r);
	for (k = 0; k < total; k++) {
		const struct evalsim_traj *t;
		size_t j, idx, last, pass = k / set->nprog;
		double tau, frac;
		struct online_prog *g = &progs[k];

		if (k % set->nprog == 0)
			online_shuffle(order, set->nprog, &seed);
		/* Shadows that ended by now reach the controller, in the order they started. */
		for (i = 0; i < npend && pend[i].at <= k; i++) {
			const struct evalsim_traj *pt = &set->traj[pend[i].j];
			/* The shadow ran to its natural end: its chains count at full length, when
			 * the base share alone would have shadowed it (certad's
			 * shadow_counts_lengths). */
			if (learn && pt->npts > 0 && pend[i].lengths)
				online_learn(cl, pt, SCHED_REASON_NATURAL_END,
				    &pt->pts[pt->npts - 1]);
			pt = online_view(pt, &pm, learn, vbuf, &view);
			if (o->windowed) {
				riskctl_observe(&pr, &st, pend[i].changed, pend[i].tokens);
				continue;
			}
			online_points(pt, tau0, u, pts);
			online_end(pt, &end);
			riskctl_observe_cf(&pr, &st, tau0, pts, pt->npts, &end, true,
			    pend[i].changed, pend[i].tokens);
		}
		if (i > 0) {
			memmove(pend, pend + i, (npend - i) * sizeof *pend);
			npend -= i;
		}
		j = order[k % set->nprog];
		/* The model_tokens this program is decided with: the median learned so far from the
		 * finished programs and shadows (absolute bounds before min_samples chains), as
		 * certad; or (oracle) the median of all the model's traces. */
		pm.model_tokens = learn ? chainlen_tokens(cl, p->model_tokens_min_samples,
		    p->model_tokens) : oracle_mt;
		t = online_view(&set->traj[j], &pm, learn, vbuf, &view);
		memset(g, 0, sizeof *g);  /* progs is reused across runs: no stale program */
		if (t->npts == 0)
			continue;
		last = t->npts - 1;
		tau = riskctl_threshold(tau0, st.shift);
		idx = evalsim_stop_index(t->pts, t->npts, tau, u);
		g->shift = st.shift;
		g->model_tokens = pm.model_tokens;
		g->cost = (double)t->pts[idx].cost;
		g->full = (double)set->full_tokens[j];
		g->diff = (int)set->full_correct[j] - (int)t->pts[idx].correct;
		snprintf(key, sizeof key, "%s/%zu/%zu/%u", model, j, pass, run);
		/* The share sampled now (riskctl_sample_frac: boosted while undecided), as certad. */
		frac = o->windowed ? pr.shadow_frac : riskctl_sample_frac(&pr, &st);
		if (!o->windowed && idx == last && riskctl_pick(key, frac)) {
			/* Counterfactual: a picked program that ran to its end is a free sample. */
			online_points(t, tau0, u, pts);
			online_end(t, &end);
			riskctl_observe_cf(&pr, &st, tau0, pts, t->npts, &end, false, false, 0);
		} else if (!o->windowed && riskctl_pick(key, frac) &&
		    (online_points(t, tau0, u, pts),
		    !riskctl_cf_movable(&pr, tau0, pts, idx + 1, false))) {
			/* Counterfactual: an early stop every grid shift makes alike needs no
			 * shadow; it counts as a program with no controllable change. */
			riskctl_observe_excluded(&pr, &st);
		} else if ((!o->windowed || online_certain(&t->pts[idx], last - idx, tau)) &&
		    riskctl_pick(key, frac)) {
			/* Counterfactual: any early stop some grid shift would have moved (certain
			 * or not) runs on; windowed: a picked certain stop does. */
			uint64_t extra = t->pts[last].cost - t->pts[idx].cost;
			g->shadowed = true;
			g->changed = !t->pts[idx].same;
			g->shadow = (double)extra;
			pend[npend].at = k + o->lag;
			pend[npend].j = j;
			pend[npend].changed = g->changed;
			pend[npend].tokens = extra;
			pend[npend].lengths = riskctl_pick(key, pr.shadow_frac);
			npend++;
		}
		g->reason = online_reason(&t->pts[idx], last - idx, tau, u);
		/* As certad's shadow_spawn: a shadowed program's chains count at the shadow's end
		 * instead (when the base share picked it), others at their ending. */
		if (learn && !(g->shadowed && riskctl_pick(key, pr.shadow_frac)))
			online_learn(cl, t, g->reason, &t->pts[idx]);
		cost += g->cost;
		shadow += g->shadow;
		full += g->full;
		diff += g->diff;
	}
	r->saved = full > 0 ? 1 - (cost + shadow) / full : 0;
	r->loss = total > 0 ? (double)diff / (double)total : 0;
	r->shadow_share = full > 0 ? shadow / full : 0;
	r->final_shift = st.shift;
	r->shadows = st.shadows;
	r->changes = st.changes;
	r->saves = st.saves;
	r->backs = st.backs;
	r->samples = st.samples;
	r->excluded = st.excluded;
	r->learned_at = -1;
	for (k = 0; k < total; k++) {
		if (learn && r->learned_at < 0 && progs[k].model_tokens != p->model_tokens)
			r->learned_at = (long)k + 1;
		r->final_mt = progs[k].model_tokens;
	}
	if (o->mt_trace != NULL && o->mt_trace->n == 0 && run == 0) {
		for (k = 0; k < total && k < o->mt_trace->max; k++) {
			o->mt_trace->mt[k] = progs[k].model_tokens;
			if (o->mt_trace->reason != NULL)
				o->mt_trace->reason[k] = progs[k].reason;
		}
		o->mt_trace->n = k;
		o->mt_trace->oracle = oracle_mt;
	}
	r->converged = -1;
	r->held = -1;
	r->reach = -1;
	for (k = 0; k < total && best > 0; k++)
		if (online_static_saved(&cache, set, tau0, u, progs[k].shift) >= 0.8 * best) {
			r->reach = (long)k + 1;
			break;
		}
	for (k = total; k > 0; k--) {
		if (best <= 0 || online_static_saved(&cache, set, tau0, u, progs[k - 1].shift) <
		    0.8 * best)
			break;
		r->held = (long)k - 1;
	}
	/* Sliding windows of w programs: the first that saves 80% of best (the window losses:
	 * online_worst_window, by the caller). */
	{
		double wc = 0, wf = 0;
		for (k = 0; k < total; k++) {
			wc += progs[k].cost + progs[k].shadow;
			wf += progs[k].full;
			if (k >= w) {
				wc -= progs[k - w].cost + progs[k - w].shadow;
				wf -= progs[k - w].full;
			}
			if (k + 1 < w)
				continue;
			if (r->converged < 0 && wf > 0 && best > 0 && 1 - wc / wf >= 0.8 * best)
				r->converged = (long)k + 1;
		}
	}
	free(order);
	free(pend);
	free(pts);
	free(vbuf);
	free(cl);
	return 0;
}

double
online_worst_window(const int *diff, size_t n, size_t w)
{
	long sum = 0, worst = 0;
	size_t k;

	if (diff == NULL || n == 0 || w == 0)
		return NAN;
	if (n < w) {
		for (k = 0; k < n; k++)
			sum += diff[k];
		return (double)sum / (double)n;
	}
	for (k = 0; k < n; k++) {
		sum += diff[k];
		if (k >= w)
			sum -= diff[k - w];
		if (k + 1 == w || (k + 1 > w && sum > worst))
			worst = sum;
	}
	return (double)worst / (double)w;
}

/* The loss of each program (online_prog.diff) of run `run`'s stream order under a fixed
 * threshold (no controller, no shadows), into d[0..total): the noise floor a window figure is
 * read against.  0, or -ENOMEM. */
static int
online_static_diffs(const struct evalsim_set *set, double tau, uint64_t u, unsigned run,
    size_t total, int *d)
{
	uint64_t seed = 0x9e3779b97f4a7c15ull * (run + 1);
	size_t *order = calloc(set->nprog ? set->nprog : 1, sizeof *order), k;

	if (order == NULL)
		return -ENOMEM;
	for (k = 0; k < total; k++) {
		const struct evalsim_traj *t;
		size_t j, idx;
		if (k % set->nprog == 0)
			online_shuffle(order, set->nprog, &seed);
		j = order[k % set->nprog];
		t = &set->traj[j];
		d[k] = 0;
		if (t->npts > 0) {
			idx = evalsim_stop_index(t->pts, t->npts, tau, u);
			d[k] = (int)set->full_correct[j] - (int)t->pts[idx].correct;
		}
	}
	free(order);
	return 0;
}

/* The window figures of run `run` (its loop stream in progs) into r: the loop's worst window
 * and long window, the fixed start and best thresholds' on the same order.  d: scratch of
 * total.  0, or -ENOMEM. */
static int
online_windows(const struct online_opts *o, const struct evalsim_set *set, double tau0,
    double best_tau, uint64_t u, unsigned run, const struct online_prog *progs, size_t total,
    int *d, struct online_result *r)
{
	size_t k;
	int rc;

	for (k = 0; k < total; k++)
		d[k] = progs[k].diff;
	r->worst_window_loss = online_worst_window(d, total, o->window);
	r->worst_long = online_worst_window(d, total, o->long_window);
	rc = online_static_diffs(set, tau0, u, run, total, d);
	if (rc != 0)
		return rc;
	r->start_window = online_worst_window(d, total, o->window);
	rc = online_static_diffs(set, best_tau, u, run, total, d);
	if (rc != 0)
		return rc;
	r->best_window = online_worst_window(d, total, o->window);
	r->best_long = online_worst_window(d, total, o->long_window);
	return 0;
}

/* Staged sc against the window criteria (sc only; docs/certainty.md "Staged sc"): the start
 * policy with sc.staged = 1 and 2 as fixed policies (no controller: no threshold shift moves a
 * staged program, certad shadows none), replayed on the runs' stream orders: their saving,
 * loss and worst window losses, next to the model's best threshold.  d: scratch of total.
 * 0, or an error of the replay. */
static int
online_print_staged(const struct traces *tr, const struct online_opts *o,
    const struct sched_policy *p, const struct evalsim_filter *f, double tau0, uint64_t u,
    double best, size_t total, int *d)
{
	uint32_t m;
	int rc;

	for (m = 1; m <= 2; m++) {
		struct sched_policy q = *p;
		struct evalsim_set ss;
		double l, sv, ww = -1, wl = -1;
		unsigned run;

		q.sc_staged = m;
		rc = evalsim_record_filtered(tr, &q, SCHED_ALGO_SC, 3, EVALSIM_ALL,
		    EVALSIM_LABEL_SAME, 1, f, &ss);
		if (rc != 0)
			return rc;
		evalsim_score_model(&ss, NULL, tau0, u, &l, &sv);
		for (run = 0; run < o->runs; run++) {
			double x;
			rc = online_static_diffs(&ss, tau0, u, o->first_run + run, total, d);
			if (rc != 0) {
				evalsim_set_free(&ss);
				return rc;
			}
			x = online_worst_window(d, total, o->window);
			ww = x > ww ? x : ww;
			x = online_worst_window(d, total, o->long_window);
			wl = x > wl ? x : wl;
		}
		printf("staged sc (sc.staged = %u, no controller, no shadows; the same stream "
		    "orders): saved %.1f%% (%.0f%% of the best threshold's) from the first program, "
		    "loss %.2f pt; worst %u-window loss %.2f pt, worst %u-window %.2f pt\n", m,
		    100 * sv, best > 0 ? 100 * sv / best : 0, 100 * l, o->window, 100 * ww,
		    o->long_window, 100 * wl);
		evalsim_set_free(&ss);
	}
	return 0;
}

/* The per-window table of one run. */
static void
online_print_windows(const struct online_opts *o, const struct online_prog *progs,
    size_t total, double tau0)
{
	size_t k, w = o->window;

	printf("| programs | loss pt | saved (shadows incl.) | shadow tokens | shadows | changed "
	    "| shift at end | threshold at end |\n|---|---|---|---|---|---|---|---|\n");
	for (k = 0; k < total; k += w) {
		size_t e = k + w < total ? k + w : total, i;
		double c = 0, f = 0, sh = 0;
		long d = 0;
		unsigned ns = 0, nc = 0;
		for (i = k; i < e; i++) {
			c += progs[i].cost + progs[i].shadow;
			sh += progs[i].shadow;
			f += progs[i].full;
			d += progs[i].diff;
			ns += progs[i].shadowed;
			nc += progs[i].changed;
		}
		printf("| %zu-%zu | %.2f | %.1f%% | %.1f%% | %u | %u | %+.2f | %.4g |\n", k + 1, e,
		    100.0 * (double)d / (double)(e - k), f > 0 ? 100 * (1 - c / f) : 0,
		    f > 0 ? 100 * sh / f : 0, ns, nc, progs[e - 1].shift,
		    riskctl_threshold(tau0, progs[e - 1].shift));
	}
}

/* Program i of the static tables stopped under threshold tau (u: the unpromising bound):
 * its loss against the full run is added to *diff; true, with its stop point in *idx, when
 * the stop is a certain one the controller could have moved (movable) that changed the
 * answer. */
static bool
online_changed_stop(const struct evalsim_set *set, const bool *movable, size_t i, double tau,
    uint64_t u, size_t *idx, long *diff)
{
	const struct evalsim_traj *t = &set->traj[i];

	if (t->npts == 0)
		return false;
	*idx = evalsim_stop_index(t->pts, t->npts, tau, u);
	*diff += (long)set->full_correct[i] - (long)t->pts[*idx].correct;
	return movable[i] && online_certain(&t->pts[*idx], t->npts - 1 - *idx, tau) &&
	    !t->pts[*idx].same;
}

/* Harm proxy candidates of the static table (riskctl_end_trusted): per shift, the movable
 * certain stops that change the answer per program when only a trusted end counts, with
 * harm_stable m = 0 (cot: the end is not cut), 1, 2, 3; sc: the rule (majority, no chain cut)
 * and the majority alone; and the loss.  pts: scratch of the longest trajectory. */
static void
online_print_harm(const struct evalsim_set *set, const struct riskctl_params *pr0,
    const struct sched_policy *p, double tau0, uint64_t u, struct riskctl_point *pts,
    const bool *movable)
{
	struct riskctl_params pr = *pr0;
	unsigned char *tr = calloc(set->nprog ? set->nprog : 1, 1);
	size_t i, ntr = 0;
	double sh;
	int m;

	if (tr == NULL)
		return;
	/* Bit m (0..3): trusted with harm_stable m; bit 4: majority of the chains alone. */
	pr.harm = true;
	for (i = 0; i < set->nprog; i++) {
		const struct evalsim_traj *t = &set->traj[i];
		struct riskctl_end e;
		if (t->npts == 0)
			continue;
		online_points(t, tau0, u, pts);
		online_end(t, &e);
		for (m = 0; m < 4; m++) {
			pr.harm_stable = (uint32_t)m;
			if (riskctl_end_trusted(&pr, pts, t->npts, &e))
				tr[i] |= (unsigned char)(1u << m);
		}
		if (2 * (uint64_t)e.votes > e.chains)
			tr[i] |= 1u << 4;
		ntr += (tr[i] >> 2) & 1u;
	}
	printf("harm proxy (changes per program counted only from a trusted end; cot: m = the "
	    "valid probe answers before the end that must equal it, 0: only not cut; sc: majority "
	    "and no chain cut, and majority alone), trusted ends: %.1f%% (m=2) of %zu\n"
	    "| shift | changed per program | harm m=0 | m=1 | m=2 | m=3 | majority alone | loss pt "
	    "| m=2: end right, stop wrong / the reverse |\n|---|---|---|---|---|---|---|---|---|\n",
	    set->nprog ? 100.0 * (double)ntr / (double)set->nprog : 0, set->nprog);
	for (sh = p->riskctl_min_shift; sh <= p->riskctl_max_shift + 1e-9; sh += p->riskctl_step) {
		double tau = riskctl_threshold(tau0, sh);
		size_t chg = 0, h[5] = { 0, 0, 0, 0, 0 }, rw = 0, wr = 0;
		long diff = 0;
		for (i = 0; i < set->nprog; i++) {
			const struct evalsim_traj *t = &set->traj[i];
			size_t idx;
			if (!online_changed_stop(set, movable, i, tau, u, &idx, &diff))
				continue;
			chg++;
			for (m = 0; m < 5; m++)
				h[m] += (tr[i] >> m) & 1u;
			/* Of the m = 2 count: the end right and the stop wrong (a loss), and the
			 * reverse (a gain). */
			if ((tr[i] >> 2) & 1u) {
				rw += set->full_correct[i] && !t->pts[idx].correct;
				wr += !set->full_correct[i] && t->pts[idx].correct;
			}
		}
		printf("| %+.2f | %.2f%% | %.2f%% | %.2f%% | %.2f%% | %.2f%% | %.2f%% | %.2f | %zu / %zu "
		    "|\n", sh,
		    100.0 * (double)chg / (double)set->nprog,
		    100.0 * (double)h[0] / (double)set->nprog,
		    100.0 * (double)h[1] / (double)set->nprog,
		    100.0 * (double)h[2] / (double)set->nprog,
		    100.0 * (double)h[3] / (double)set->nprog,
		    100.0 * (double)h[4] / (double)set->nprog,
		    100.0 * (double)diff / (double)set->nprog, rw, wr);
	}
	free(tr);
}

/* The gain proxy of the static table (riskctl_gain_called, gain_tokens of the policy), against
 * the ground truth: per shift, the movable certain stops that change the answer, those the
 * proxy calls gains and what they really are (a gain: stop right, end wrong; a loss: the
 * reverse; neither: both wrong), precision and recall, the count the controller bounds with
 * riskctl.gain (changes not called gains less called gains, at least 0) and the true net
 * (losses less gains) per program, and the loss.  A last row sums the shifts >= 0 (a change
 * counted once per shift).  pts: scratch of the longest trajectory. */
static void
online_print_gain(const struct evalsim_set *set, const struct riskctl_params *pr0,
    const struct sched_policy *p, double tau0, uint64_t u, struct riskctl_point *pts,
    const bool *movable)
{
	struct riskctl_params pr = *pr0;
	size_t all[6] = { 0, 0, 0, 0, 0, 0 }, i;
	double sh, np = set->nprog ? (double)set->nprog : 1;

	pr.gain = true;
	pr.gain_tokens = p->riskctl_gain_tokens;
	printf("gain proxy (riskctl.gain, gain_tokens %u: a change whose stop answer was held >= "
	    "that many decode tokens and whose end answer appears only at the end; against the "
	    "ground truth)\n| shift | changed | called gains | ... really gains / losses / "
	    "neither | precision | recall (gains called / all gains) | controlled: changes - "
	    "2 called, per program | true net (losses - gains) per program | loss pt |\n"
	    "|---|---|---|---|---|---|---|---|---|\n", pr.gain_tokens);
	for (sh = p->riskctl_min_shift; sh <= p->riskctl_max_shift + 1e-9; sh += p->riskctl_step) {
		double tau = riskctl_threshold(tau0, sh);
		/* changed, called, called gains, called losses, gains, losses */
		size_t c[6] = { 0, 0, 0, 0, 0, 0 };
		long diff = 0, ctl;
		int j;
		for (i = 0; i < set->nprog; i++) {
			const struct evalsim_traj *t = &set->traj[i];
			bool gain, loss;
			size_t idx;
			if (!online_changed_stop(set, movable, i, tau, u, &idx, &diff))
				continue;
			gain = t->pts[idx].correct && !set->full_correct[i];
			loss = !t->pts[idx].correct && set->full_correct[i];
			c[0]++;
			c[4] += gain;
			c[5] += loss;
			online_points(t, tau0, u, pts);
			if (riskctl_gain_called(&pr, pts, t->npts, idx)) {
				c[1]++;
				c[2] += gain;
				c[3] += loss;
			}
		}
		if (sh >= -1e-9)
			for (j = 0; j < 6; j++)
				all[j] += c[j];
		ctl = (long)c[0] - 2 * (long)c[1];
		printf("| %+.2f | %zu | %zu | %zu / %zu / %zu | %.2f | %zu / %zu | %.2f%% | %.2f%% | "
		    "%.2f |\n", sh, c[0], c[1], c[2], c[3], c[1] - c[2] - c[3],
		    c[1] ? (double)c[2] / (double)c[1] : 0, c[2], c[4],
		    100.0 * (double)(ctl > 0 ? ctl : 0) / np,
		    100.0 * ((double)c[5] - (double)c[4]) / np, 100.0 * (double)diff / np);
	}
	printf("| >= 0, summed | %zu | %zu | %zu / %zu / %zu | %.2f | %zu / %zu (%.2f) | | | |\n",
	    all[0], all[1], all[2], all[3], all[1] - all[2] - all[3],
	    all[1] ? (double)all[2] / (double)all[1] : 0, all[2], all[4],
	    all[4] ? (double)all[2] / (double)all[4] : 0);
}

/* What each controller setting would do statically on the whole set: share stopped early,
 * answer-change rate among those (what shadows measure), loss, saving; and the worst loss
 * over 100 consecutive programs in the recorded order (noise: a fixed threshold too). */
static void
online_print_levels(const struct evalsim_set *set, const struct sched_policy *p, double tau0,
    uint64_t u, enum sched_algo algo)
{
	struct riskctl_params pr;
	struct riskctl_point *pts;
	bool *movable;
	size_t i, maxpts = 1;
	double sh;

	riskctl_params_from_policy(p, algo, &pr);
	for (i = 0; i < set->nprog; i++)
		if (set->traj[i].npts > maxpts)
			maxpts = set->traj[i].npts;
	pts = calloc(maxpts, sizeof *pts);
	movable = calloc(set->nprog ? set->nprog : 1, sizeof *movable);
	if (pts == NULL || movable == NULL) {
		free(pts);
		free(movable);
		return;
	}
	for (i = 0; i < set->nprog; i++) {
		online_points(&set->traj[i], tau0, u, pts);
		movable[i] = set->traj[i].npts > 0 &&
		    riskctl_cf_movable(&pr, tau0, pts, set->traj[i].npts, true);
	}
	printf("| shift | threshold | stopped certain | answer changed among them | ... among the "
	    "movable (counterfactual counts) | ... per program | loss pt | saved |\n"
	    "|---|---|---|---|---|---|---|---|\n");
	for (sh = p->riskctl_min_shift; sh <= p->riskctl_max_shift + 1e-9; sh += p->riskctl_step) {
		double tau = riskctl_threshold(tau0, sh), cost = 0, full = 0;
		size_t stopped = 0, changed = 0, mstop = 0, mchg = 0;
		long diff = 0;
		for (i = 0; i < set->nprog; i++) {
			const struct evalsim_traj *t = &set->traj[i];
			size_t idx;
			if (t->npts == 0)
				continue;
			idx = evalsim_stop_index(t->pts, t->npts, tau, u);
			if (online_certain(&t->pts[idx], t->npts - 1 - idx, tau)) {
				stopped++;
				changed += !t->pts[idx].same;
				if (movable[i]) {
					mstop++;
					mchg += !t->pts[idx].same;
				}
			}
			diff += (long)set->full_correct[i] - (long)t->pts[idx].correct;
			cost += (double)t->pts[idx].cost;
			full += (double)set->full_tokens[i];
		}
		printf("| %+.2f | %.4g | %.1f%% | %.1f%% | %.1f%% of %zu | %.2f%% | %.2f | %.1f%% |\n",
		    sh, tau, 100.0 * (double)stopped / (double)set->nprog,
		    stopped ? 100.0 * (double)changed / (double)stopped : 0,
		    mstop ? 100.0 * (double)mchg / (double)mstop : 0, mstop,
		    100.0 * (double)mchg / (double)set->nprog,
		    100.0 * (double)diff / (double)set->nprog, full > 0 ? 100 * (1 - cost / full) : 0);
	}
	online_print_harm(set, &pr, p, tau0, u, pts, movable);
	online_print_gain(set, &pr, p, tau0, u, pts, movable);
	free(pts);
	free(movable);
}

/* Whether a run meets the window criteria (docs/certainty.md, "Window criteria for the
 * online target"): (a) its worst window at most 1 pt (one flip in 100) over the fixed best
 * threshold's on the same order; (b) its worst long window <= 1 pt.  Integer flips over
 * w programs: the 1e-9 absorbs the division. */
static bool
online_crit_a(const struct online_result *r)
{
	return r->worst_window_loss <= r->best_window + 0.01 + 1e-9;
}

static bool
online_crit_b(const struct online_result *r)
{
	return r->worst_long <= 0.01 + 1e-9;
}

/* The window criteria of every run and their summary line ("criteria MODEL ALGO: ..."). */
static void
online_print_criteria(const struct online_opts *o, const char *model, enum sched_algo algo,
    const struct online_result *res, size_t total)
{
	unsigned run, reach = 0, kept = 0, na = 0, nb = 0, ra = 0, rb = 0, ka = 0, kb = 0;
	double ms = 0, ml = 0;
	bool lw = o->long_window > 0, rby = o->reach_by > 0;

	printf("window criteria: (a) the loop's worst %u-window loss at most 1 pt over the fixed "
	    "best threshold's on the same order; (b) the loop's worst %u-window loss <= 1 pt\n"
	    "| run | saved (shadows incl.) | loss pt | loop worst %u | fixed best worst %u | "
	    "fixed start worst %u | (a) | loop worst %u | fixed best worst %u | (b) | "
	    ">= 80%% of best by %u | ... kept from <= %u |\n"
	    "|---|---|---|---|---|---|---|---|---|---|---|---|\n", o->window, o->long_window,
	    o->window, o->window, o->window, o->long_window, o->long_window, o->reach_by,
	    o->reach_by);
	if (lw && total < o->long_window)
		printf("(a stream of %zu programs, shorter than %u: the long window is the whole "
		    "stream, its loss the run's)\n", total, o->long_window);
	for (run = 0; run < o->runs; run++) {
		const struct online_result *r = &res[run];
		bool a = online_crit_a(r), b = lw && online_crit_b(r);
		bool re = rby && r->reach >= 0 && r->reach <= (long)o->reach_by;
		bool ke = rby && r->held >= 0 && r->held <= (long)o->reach_by;
		char ll[32] = "-", bl[32] = "-";
		if (lw) {
			snprintf(ll, sizeof ll, "%.2f", 100 * r->worst_long);
			snprintf(bl, sizeof bl, "%.2f", 100 * r->best_long);
		}
		printf("| %u | %.1f%% | %.2f | %.2f | %.2f | %.2f | %s | %s | %s | %s | %s | %s |\n",
		    o->first_run + run, 100 * r->saved, 100 * r->loss, 100 * r->worst_window_loss,
		    100 * r->best_window, 100 * r->start_window, a ? "yes" : "no", ll, bl,
		    lw ? (b ? "yes" : "no") : "-", rby ? (re ? "yes" : "no") : "-",
		    rby ? (ke ? "yes" : "no") : "-");
		ms += r->saved;
		ml += r->loss;
		reach += re;
		kept += ke;
		na += a;
		nb += b;
		ra += re && a;
		rb += re && b;
		ka += ke && a;
		kb += ke && b;
	}
	printf("criteria %s %s: mean saved %.1f%% (shadows incl.), mean loss %.2f pt; of %u runs: "
	    "80%% of best by %u %u (kept %u); (a) %u, (b) %u; by %u and (a) %u (kept %u), "
	    "and (b) %u (kept %u)\n", model, algo == SCHED_ALGO_SC ? "sc" : "cot",
	    100 * ms / o->runs, 100 * ml / o->runs, o->runs, o->reach_by, reach, kept, na, nb,
	    o->reach_by, ra, ka, rb, kb);
}

/* One held-out model and algorithm. */
static int
online_model(const struct traces *tr, const struct online_opts *o, const char *model,
    enum sched_algo algo, const int64_t *seeds, size_t nseeds)
{
	struct sched_policy p = *o->start;
	struct evalsim_filter f;
	struct evalsim_set set;
	struct online_prog *progs = NULL;
	struct online_result *res = NULL;
	int *d = NULL;
	struct sched_policy om;
	double tau0, best = 0, best_tau = 0, best_loss = 0, l0, s0;
	uint64_t u;
	size_t i, total, n = algo == SCHED_ALGO_SC ? 3 : 1;
	unsigned run;
	int rc;

	if (o->start_lomo) {
		struct evalsim_calib cal;
		struct evalsim_filter cf;
		memset(&cf, 0, sizeof cf);
		cf.model = model;
		cf.not_model = true;
		memset(&cal, 0, sizeof cal);
		cal.max_loss = o->max_loss;
		cal.split = EVALSIM_ALL;
		cal.filter = &cf;
		cal.sc_n = 3;
		cal.lambda = 1;
		cal.margin = 1;
		cal.folds = 5;
		cal.z = 1;
		cal.cot_label = EVALSIM_LABEL_SAFE;
		cal.sc_label = EVALSIM_LABEL_SAME;
		rc = evalsim_calibrate(tr, &cal, &p);
		if (rc != 0)
			return rc;
	}
	/* The controller governs unstaged sc programs: certad neither shadows nor counts staged
	 * ones (they stop certain only on a decided vote, which no shift moves). */
	p.sc_staged = 0;
	memset(&f, 0, sizeof f);
	f.model = model;
	if (algo == SCHED_ALGO_COT)
		for (i = 0; i < nseeds && i < EVALSIM_FILTER_MAX_SEEDS; i++)
			f.seeds[f.nseeds++] = seeds[i];
	rc = evalsim_record_filtered(tr, &p, algo, n, EVALSIM_ALL,
	    algo == SCHED_ALGO_SC ? EVALSIM_LABEL_SAME : EVALSIM_LABEL_SAFE, 1, &f, &set);
	if (rc != 0)
		return rc;
	tau0 = algo == SCHED_ALGO_SC ? p.sc_threshold : p.cot_threshold;
	u = algo == SCHED_ALGO_SC ? p.sc_unpromising_tokens : p.unpromising_tokens;
	/* The model's own best threshold: in-sample, the calibration grid, same bound u. */
	for (i = 0; i < evalsim_ntaus; i++) {
		double l, s;
		evalsim_score_model(&set, NULL, evalsim_taus[i], u, &l, &s);
		if (l <= o->max_loss + 1e-12 && s > best)
			best = s, best_tau = evalsim_taus[i], best_loss = l;
	}
	evalsim_score_model(&set, NULL, tau0, u, &l0, &s0);
	total = (size_t)o->passes * set.nprog;
	progs = calloc(total ? total : 1, sizeof *progs);
	res = calloc(o->runs, sizeof *res);
	d = calloc(total ? total : 1, sizeof *d);
	if (progs == NULL || res == NULL || d == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	printf("\n== %s, %s: %zu programs x %u pass(es), start threshold %.4g (%s), controller %s, "
	    "shadow_frac %g (boost %g), target %g, confidence %g (hold %g), step %g, min_samples %u, "
	    "window %u, lag %u, harm %u (stable %u), gain %u (tokens %u)\n",
	    model, algo == SCHED_ALGO_SC ? "sc n=3" : "cot", set.nprog, o->passes, tau0,
	    o->start_lomo ? "calibrated without this model" : "start policy",
	    o->windowed ? "window" : "cf", p.riskctl_shadow_frac, p.riskctl_shadow_boost,
	    algo == SCHED_ALGO_SC ? p.riskctl_sc_target : p.riskctl_target,
	    p.riskctl_confidence, p.riskctl_hold_confidence, p.riskctl_step,
	    p.riskctl_min_samples, p.riskctl_window, o->lag, p.riskctl_harm,
	    p.riskctl_harm_stable, p.riskctl_gain, p.riskctl_gain_tokens);
	printf("static start threshold: loss %.2f pt, saved %.1f%%; this model's own best "
	    "threshold (in-sample, loss <= %.2g pt): %.4g, loss %.2f pt, saved %.1f%%\n",
	    100 * l0, 100 * s0, 100 * o->max_loss, best_tau, 100 * best_loss, 100 * best);
	online_print_levels(&set, &p, tau0, u, algo);
	evalsim_model_policy(tr, &p, model, &om);
	/* token probabilities at the model's level, as certa-eval's replay (no effect on traces
	 * without token statistics) */
	p.model_confidence = om.model_confidence;
	if (!p.unpromising_relative)
		printf("model_tokens: absolute unpromising bounds (unpromising_relative 0)\n");
	else if (o->oracle_tokens)
		printf("model_tokens: oracle, %llu (the median of all this model's traces) from the "
		    "first program\n", (unsigned long long)om.model_tokens);
	else
		printf("model_tokens: learned from the stream (median of the last %u counted "
		    "chains once %u are kept; before: %llu%s; the median of all traces: %llu)\n",
		    (unsigned)CHAINLEN_CAP, p.model_tokens_min_samples,
		    (unsigned long long)p.model_tokens, p.model_tokens ? "" : ", absolute bounds",
		    (unsigned long long)om.model_tokens);
	for (run = 0; run < o->runs; run++) {
		rc = online_stream(o, &set, model, algo, &p, tau0, u, o->first_run + run, best,
		    om.model_tokens, progs, total, &res[run]);
		if (rc == 0)
			rc = online_windows(o, &set, tau0, best_tau, u, o->first_run + run, progs,
			    total, d, &res[run]);
		if (rc != 0)
			goto out;
		if (run == 0 || o->verbose) {
			printf("run %u (stream order %u):\n", o->first_run + run, o->first_run + run);
			online_print_windows(o, progs, total, tau0);
		}
	}
	printf("| run | saved | loss pt | worst %u-window loss pt | trailing window >= 80%% of best "
	    "first at program | setting >= 80%% of best first at program | ... and from program on "
	    "| final shift | shadows | changed | moves save/back | shadow tokens | counted / "
	    "excluded |\n"
	    "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n", o->window);
	{
		double ms = 0, ml = 0, ww = -1;
		unsigned conv = 0;
		for (run = 0; run < o->runs; run++) {
			const struct online_result *r = &res[run];
			char cv[32], hv[32], rv[32];
			if (r->reach >= 0)
				snprintf(rv, sizeof rv, "%ld", r->reach);
			else
				snprintf(rv, sizeof rv, "never");
			if (r->converged >= 0)
				snprintf(cv, sizeof cv, "%ld", r->converged);
			else
				snprintf(cv, sizeof cv, "never");
			if (r->held >= 0)
				snprintf(hv, sizeof hv, "%ld", r->held), conv++;
			else
				snprintf(hv, sizeof hv, "never");
			printf("| %u | %.1f%% | %.2f | %.2f | %s | %s | %s | %+.2f | %llu | %llu | "
			    "%llu/%llu | %.1f%% | %llu / %llu |\n", o->first_run + run, 100 * r->saved,
			    100 * r->loss,
			    100 * r->worst_window_loss, cv, rv, hv, r->final_shift,
			    (unsigned long long)r->shadows, (unsigned long long)r->changes,
			    (unsigned long long)r->saves, (unsigned long long)r->backs,
			    100 * r->shadow_share, (unsigned long long)r->samples,
			    (unsigned long long)r->excluded);
			ms += r->saved;
			ml += r->loss;
			if (r->worst_window_loss > ww)
				ww = r->worst_window_loss;
		}
		{
			double ws = res[0].start_window, wb = res[0].best_window;
			for (run = 1; run < o->runs; run++) {
				ws = res[run].start_window > ws ? res[run].start_window : ws;
				wb = res[run].best_window > wb ? res[run].best_window : wb;
			}
			printf("fixed thresholds on the same stream orders: worst %u-window loss "
			    "%.2f pt at the start threshold, %.2f pt at the best one\n", o->window,
			    100 * ws, 100 * wb);
		}
		printf("summary %s %s: mean saved %.1f%% (best threshold %.1f%%), mean loss %.2f pt, "
		    "worst window loss %.2f pt, setting held >= 80%% of best in %u of %u runs\n", model,
		    algo == SCHED_ALGO_SC ? "sc" : "cot", 100 * ms / o->runs, 100 * best,
		    100 * ml / o->runs, 100 * ww, conv, o->runs);
		if (p.unpromising_relative && !o->oracle_tokens)
			printf("model_tokens %s %s: learned from program %ld (run 0), %llu at the end "
			    "(the median of all traces: %llu)\n", model,
			    algo == SCHED_ALGO_SC ? "sc" : "cot", res[0].learned_at,
			    (unsigned long long)res[0].final_mt,
			    (unsigned long long)om.model_tokens);
	}
	online_print_criteria(o, model, algo, res, total);
	rc = algo == SCHED_ALGO_SC ? online_print_staged(tr, o, &p, &f, tau0, u, best, total, d) : 0;
out:
	free(progs);
	free(res);
	free(d);
	evalsim_set_free(&set);
	return rc;
}

int
online_run(const struct traces *tr, const struct online_opts *o)
{
	const char *models[16];
	int64_t seeds[EVALSIM_FILTER_MAX_SEEDS];
	size_t nm = 0, ns = 0, i, j;
	int a, rc;

	for (i = 0; i < traces_program_count(tr); i++) {
		const char *m = traces_program_at(tr, i)->model;
		for (j = 0; j < nm && strcmp(models[j], m) != 0; j++)
			;
		if (j == nm && nm < 16)
			models[nm++] = m;
	}
	for (i = 0; i < traces_count(tr); i++) {
		int64_t sd = traces_at(tr, i)->seed;
		for (j = 0; j < ns && seeds[j] != sd; j++)
			;
		if (j == ns && ns < EVALSIM_FILTER_MAX_SEEDS)
			seeds[ns++] = sd;
	}
	if (nm < 2 && o->start_lomo)
		return -EINVAL;
	if (nm == 0)
		return -EINVAL;
	for (a = 0; a < 2; a++) {
		if (!(o->algos & (1u << a)))
			continue;
		for (i = 0; i < nm; i++) {
			rc = online_model(tr, o, models[i], a == 0 ? SCHED_ALGO_COT : SCHED_ALGO_SC,
			    seeds, ns);
			if (rc != 0)
				return rc;
		}
	}
	return 0;
}
