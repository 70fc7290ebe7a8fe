/* riskctl.c — Clopper-Pearson bounds and the shadow-driven threshold controller. */
#include "scheduler/riskctl.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

#include "scheduler/sched.h"

void
riskctl_params_from_policy(const struct sched_policy *p, int algo, struct riskctl_params *out)
{
	out->target = algo == SCHED_ALGO_SC ? p->riskctl_sc_target : p->riskctl_target;
	out->shadow_frac = p->riskctl_shadow_frac;
	out->confidence = p->riskctl_confidence;
	out->step = p->riskctl_step;
	out->min_shift = p->riskctl_min_shift;
	out->max_shift = p->riskctl_max_shift;
	out->min_samples = p->riskctl_min_samples;
	out->window = p->riskctl_window;
	out->frozen = p->riskctl_frozen != 0;
	out->boost = p->riskctl_shadow_boost;
	out->hold_confidence = p->riskctl_hold_confidence;
	out->harm = p->riskctl_harm != 0;
	out->harm_stable = p->riskctl_harm_stable;
	/* The gain rule was fitted on cot; on sc its precision is poor (docs/certainty.md). */
	out->gain = p->riskctl_gain != 0 && algo == SCHED_ALGO_COT;
	out->gain_tokens = p->riskctl_gain_tokens;
}

double
riskctl_threshold(double tau, double shift)
{
	double l;

	if (!(tau > 0 && tau < 1) || shift == 0 || !isfinite(shift))
		return tau;
	l = log(tau / (1 - tau)) - shift;
	return 1 / (1 + exp(-l));
}

/* Continued fraction of I_x(a, b) (modified Lentz), valid for x < (a + 1) / (a + b + 2). */
static double
riskctl_betacf(double a, double b, double x)
{
	const double tiny = 1e-300, eps = 1e-15;
	double qab = a + b, qap = a + 1, qam = a - 1, c = 1, d, h, aa, del;
	int m, m2;

	d = 1 - qab * x / qap;
	if (fabs(d) < tiny)
		d = tiny;
	d = 1 / d;
	h = d;
	for (m = 1; m <= 10000; m++) {
		m2 = 2 * m;
		aa = m * (b - m) * x / ((qam + m2) * (a + m2));
		d = 1 + aa * d;
		if (fabs(d) < tiny)
			d = tiny;
		c = 1 + aa / c;
		if (fabs(c) < tiny)
			c = tiny;
		d = 1 / d;
		h *= d * c;
		aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
		d = 1 + aa * d;
		if (fabs(d) < tiny)
			d = tiny;
		c = 1 + aa / c;
		if (fabs(c) < tiny)
			c = tiny;
		d = 1 / d;
		del = d * c;
		h *= del;
		if (fabs(del - 1) < eps)
			break;
	}
	return h;
}

double
riskctl_betainc(double a, double b, double x)
{
	double lbt;

	if (!(a > 0) || !(b > 0) || !(x >= 0 && x <= 1))
		return NAN;
	if (x == 0 || x == 1)
		return x;
	/* The prefactor x^a (1-x)^b / (a B(a, b)) in logs (lgamma keeps large n finite). */
	lbt = lgamma(a + b) - lgamma(a) - lgamma(b) + a * log(x) + b * log1p(-x);
	/* The fraction converges fast on one side of the mean; use the symmetry on the other. */
	if (x < (a + 1) / (a + b + 2))
		return exp(lbt) * riskctl_betacf(a, b, x) / a;
	return 1 - exp(lbt) * riskctl_betacf(b, a, 1 - x) / b;
}

double
riskctl_beta_quantile(double a, double b, double p)
{
	double lo = 0, hi = 1, mid;
	int i;

	if (!(p >= 0 && p <= 1) || !(a > 0) || !(b > 0))
		return NAN;
	if (p == 0)
		return 0;
	if (p == 1)
		return 1;
	/* I_x is increasing in x: bisection is slow but cannot fail. */
	for (i = 0; i < 200 && hi - lo > 1e-14; i++) {
		mid = 0.5 * (lo + hi);
		if (riskctl_betainc(a, b, mid) < p)
			lo = mid;
		else
			hi = mid;
	}
	return 0.5 * (lo + hi);
}

double
riskctl_cp_upper(uint64_t x, uint64_t n, double conf)
{
	if (n == 0 || x >= n)
		return 1;
	return riskctl_beta_quantile((double)x + 1, (double)(n - x), conf);
}

double
riskctl_cp_lower(uint64_t x, uint64_t n, double conf)
{
	if (n == 0 || x == 0)
		return 0;
	if (x > n)
		x = n;
	return riskctl_beta_quantile((double)x, (double)(n - x) + 1, 1 - conf);
}

double
riskctl_ucb(const struct riskctl_params *pr, const struct riskctl_state *s)
{
	return riskctl_cp_upper(s->win_changes, s->win_n, pr->confidence);
}

/* Moves the shift by delta within the bounds and starts a new window; false if it could not
 * move. */
static bool
riskctl_move_by(const struct riskctl_params *pr, struct riskctl_state *s, double delta)
{
	double to = s->shift + delta;

	if (to > pr->max_shift)
		to = pr->max_shift;
	if (to < pr->min_shift)
		to = pr->min_shift;
	s->win_n = 0;
	s->win_changes = 0;
	if (to == s->shift)
		return false;
	s->shift = to;
	return true;
}

enum riskctl_move
riskctl_observe(const struct riskctl_params *pr, struct riskctl_state *s, bool changed,
    uint64_t tokens)
{
	double ucb;

	s->shadows++;
	s->tokens += tokens;
	if (changed)
		s->changes++;
	if (s->win_n < UINT32_MAX) {
		s->win_n++;
		if (changed)
			s->win_changes++;
	}
	if (pr->frozen)
		return RISKCTL_HOLD;
	/* Clearly over the target: back at once, whatever the sample size. */
	if (riskctl_cp_lower(s->win_changes, s->win_n, pr->confidence) > pr->target) {
		if (riskctl_move_by(pr, s, -pr->step)) {
			s->backs++;
			return RISKCTL_BACK;
		}
		return RISKCTL_HOLD;
	}
	if (s->win_n < pr->min_samples)
		return RISKCTL_HOLD;
	ucb = riskctl_ucb(pr, s);
	if (ucb <= pr->target) {
		if (s->shift < pr->max_shift && riskctl_move_by(pr, s, pr->step)) {
			s->saves++;
			return RISKCTL_SAVE;
		}
		/* At the top: keep counting, the window slides on. */
		if (s->win_n >= pr->window) {
			s->win_n = 0;
			s->win_changes = 0;
		}
		return RISKCTL_HOLD;
	}
	if (s->win_n >= pr->window) {
		/* Not shown safe within a window: the conservative side. */
		if (riskctl_move_by(pr, s, -pr->step)) {
			s->backs++;
			return RISKCTL_BACK;
		}
	}
	return RISKCTL_HOLD;
}

uint32_t
riskctl_grid_size(const struct riskctl_params *pr)
{
	double span = pr->max_shift - pr->min_shift;
	double g;

	if (!(pr->step > 0) || !(span >= 0) || !isfinite(span))
		return 0;
	g = floor(span / pr->step + 1e-9) + 1;
	return g > RISKCTL_GRID_MAX ? RISKCTL_GRID_MAX : (uint32_t)g;
}

double
riskctl_grid_shift(const struct riskctl_params *pr, uint32_t k)
{
	return pr->min_shift + (double)k * pr->step;
}

void
riskctl_cf_stops(const struct riskctl_params *pr, double tau0, const struct riskctl_point *pts,
    size_t n, bool last_is_end, size_t *stop, bool *certain)
{
	uint32_t g = riskctl_grid_size(pr), k;
	size_t i;

	for (k = 0; k < g; k++) {
		double tau = riskctl_threshold(tau0, riskctl_grid_shift(pr, k));
		stop[k] = n;
		certain[k] = false;
		for (i = 0; i < n; i++) {
			/* The order of sched_decide(): natural end, certain, then the others. */
			if (last_is_end && i + 1 == n)
				break;
			if (pts[i].c >= 0 && pts[i].c >= tau) {
				certain[k] = true;
				break;
			}
			if (pts[i].other)
				break;
		}
		stop[k] = i;
	}
}

bool
riskctl_cf_movable(const struct riskctl_params *pr, double tau0,
    const struct riskctl_point *pts, size_t n, bool last_is_end)
{
	size_t stop[RISKCTL_GRID_MAX];
	bool certain[RISKCTL_GRID_MAX];
	uint32_t g = riskctl_grid_size(pr), k;

	riskctl_cf_stops(pr, tau0, pts, n, last_is_end, stop, certain);
	for (k = 1; k < g; k++)
		if (stop[k] != stop[0] || certain[k] != certain[0])
			return true;
	return false;
}

uint32_t
riskctl_harm_mode(const struct riskctl_params *pr)
{
	return pr->harm ? 1 + pr->harm_stable : 0;
}

bool
riskctl_end_trusted(const struct riskctl_params *pr, const struct riskctl_point *pts, size_t n,
    const struct riskctl_end *end)
{
	uint32_t need = pr->harm_stable;
	size_t i;

	if (!pr->harm || end == NULL)
		return true;
	if (end->cut)
		return false;
	if (end->chains > 1)
		return 2 * (uint64_t)end->votes > end->chains;
	/* cot: the last `need` valid probe answers before the end equal it. */
	for (i = n > 0 ? n - 1 : 0; i > 0 && need > 0; i--) {
		if (!pts[i - 1].valid)
			continue;
		if (!pts[i - 1].same)
			return false;
		need--;
	}
	return need == 0;
}

uint32_t
riskctl_gain_mode(const struct riskctl_params *pr)
{
	return pr->gain ? (pr->gain_tokens > 0 ? pr->gain_tokens : 1) : 0;
}

bool
riskctl_gain_called(const struct riskctl_params *pr, const struct riskctl_point *pts, size_t n,
    size_t s)
{
	size_t i = s, j = s;
	uint64_t from, to;

	if (!pr->gain || s + 1 >= n || pts[n - 1].cont)
		return false;
	/* The run of s's answer: back to its first point, on to its last (before the end). */
	while (i > 0 && pts[i].cont)
		i--;
	while (j + 2 < n && pts[j + 1].cont)
		j++;
	from = i > 0 ? pts[i - 1].tokens : 0;
	to = pts[j].tokens;
	return to > from && to - from >= pr->gain_tokens;
}

uint32_t
riskctl_grid_changes(const struct riskctl_state *s, uint32_t k)
{
	return s->gchg[k] > s->ggain[k] ? s->gchg[k] - s->ggain[k] : 0;
}

/* Whether the counts were made on the parameters' grid, harm and gain modes. */
static bool
riskctl_grid_current(const struct riskctl_params *pr, const struct riskctl_state *s)
{
	return s->gn == riskctl_grid_size(pr) && s->gmin == pr->min_shift &&
	    s->gstep == pr->step && s->gharm == riskctl_harm_mode(pr) &&
	    s->ggainm == riskctl_gain_mode(pr);
}

/* Resets the counts when the grid, harm or gain mode of the parameters is not the one they
 * were made on. */
static void
riskctl_grid_sync(const struct riskctl_params *pr, struct riskctl_state *s)
{
	if (riskctl_grid_current(pr, s))
		return;
	s->gn = riskctl_grid_size(pr);
	s->gmin = pr->min_shift;
	s->gstep = pr->step;
	s->gharm = riskctl_harm_mode(pr);
	s->ggainm = riskctl_gain_mode(pr);
	s->gtot = 0;
	memset(s->gobs, 0, sizeof s->gobs);
	memset(s->gchg, 0, sizeof s->gchg);
	memset(s->ggain, 0, sizeof s->ggain);
}

uint32_t
riskctl_grid_index(const struct riskctl_params *pr, double shift)
{
	uint32_t g = riskctl_grid_size(pr);
	double k;

	if (g == 0)
		return 0;
	k = floor((shift - pr->min_shift) / pr->step + 0.5);
	if (!(k > 0))
		return 0;
	return k >= g ? g - 1 : (uint32_t)k;
}

/* The grid point nearest the shift. */
static uint32_t
riskctl_grid_at(const struct riskctl_params *pr, const struct riskctl_state *s)
{
	return riskctl_grid_index(pr, s->shift);
}

/* Grid point k is clearly over the target: its lower bound is. */
static bool
riskctl_grid_over(const struct riskctl_params *pr, const struct riskctl_state *s, uint32_t k)
{
	return riskctl_cp_lower(riskctl_grid_changes(s, k), s->gtot, pr->confidence) > pr->target;
}

static bool
riskctl_grid_bad(const struct riskctl_params *pr, const struct riskctl_state *s, uint32_t k)
{
	if (riskctl_grid_over(pr, s, k))
		return true;
	return s->gtot >= pr->window &&
	    riskctl_cp_upper(riskctl_grid_changes(s, k), s->gtot, pr->confidence) > pr->target;
}

static bool
riskctl_grid_proven(const struct riskctl_params *pr, const struct riskctl_state *s, uint32_t k)
{
	return s->gtot >= pr->min_samples &&
	    riskctl_cp_upper(riskctl_grid_changes(s, k), s->gtot, pr->confidence) <= pr->target;
}

/* Whether the current point k is to be left (pick rule): clearly over, or not under the
 * target at the hold confidence after a window. */
static bool
riskctl_grid_leave(const struct riskctl_params *pr, const struct riskctl_state *s, uint32_t k)
{
	double hc = pr->hold_confidence;

	if (!(hc >= 0.5) || hc > pr->confidence)
		hc = pr->confidence;
	if (riskctl_grid_over(pr, s, k))
		return true;
	return s->gtot >= pr->window &&
	    riskctl_cp_upper(riskctl_grid_changes(s, k), s->gtot, hc) > pr->target;
}

/* Moves to grid point k (new window). */
static void
riskctl_grid_go(const struct riskctl_params *pr, struct riskctl_state *s, uint32_t k)
{
	s->shift = riskctl_grid_shift(pr, k);
	s->win_n = 0;
	s->win_changes = 0;
}

enum riskctl_move
riskctl_pick_shift(const struct riskctl_params *pr, struct riskctl_state *s)
{
	uint32_t k, cur;
	long best = -1;

	riskctl_grid_sync(pr, s);
	if (pr->frozen || s->gn == 0)
		return RISKCTL_HOLD;
	cur = riskctl_grid_at(pr, s);
	for (k = 0; k < s->gn; k++) {
		if (riskctl_grid_bad(pr, s, k))
			break;
		if (riskctl_grid_proven(pr, s, k))
			best = (long)k;
	}
	if (best > (long)cur) {
		riskctl_grid_go(pr, s, (uint32_t)best);
		s->saves++;
		return RISKCTL_SAVE;
	}
	if (riskctl_grid_leave(pr, s, cur) && cur > 0) {
		riskctl_grid_go(pr, s, best >= 0 && best < (long)cur ? (uint32_t)best : cur - 1);
		s->backs++;
		return RISKCTL_BACK;
	}
	return RISKCTL_HOLD;
}

/* Whether grid point k, neither proven nor clearly over, is within reach: at its estimated
 * rate x/n, `window` more counted programs would prove it (the UCB at gtot + window programs
 * with the same share changed is <= target).  Fewer than min_samples counted: yes. */
static bool
riskctl_grid_reachable(const struct riskctl_params *pr, const struct riskctl_state *s,
    uint32_t k)
{
	uint64_t n = (uint64_t)s->gtot + pr->window;
	double x;

	if (s->gtot < pr->min_samples)
		return true;
	x = floor((double)riskctl_grid_changes(s, k) * (double)n / (double)s->gtot + 0.5);
	return riskctl_cp_upper((uint64_t)x, n, pr->confidence) <= pr->target;
}

double
riskctl_sample_frac(const struct riskctl_params *pr, const struct riskctl_state *s)
{
	uint32_t cur;

	if (!(pr->shadow_frac > 0))
		return 0;
	/* Only up to the first move, within one window of shadows. */
	if (pr->frozen || !(pr->boost > pr->shadow_frac) || s->saves + s->backs > 0 ||
	    s->win_n >= pr->window)
		return pr->shadow_frac;
	if (!riskctl_grid_current(pr, s))
		return riskctl_grid_size(pr) > 0 ? pr->boost : pr->shadow_frac;
	if (s->gn == 0)
		return pr->shadow_frac;
	if (s->gtot < pr->min_samples)
		return pr->boost;
	cur = riskctl_grid_at(pr, s);
	if (cur + 1 < s->gn && !riskctl_grid_proven(pr, s, cur + 1) &&
	    !riskctl_grid_over(pr, s, cur + 1) &&
	    riskctl_grid_reachable(pr, s, cur + 1))
		return pr->boost;
	return pr->shadow_frac;
}

enum riskctl_move
riskctl_observe_excluded(const struct riskctl_params *pr, struct riskctl_state *s)
{
	riskctl_grid_sync(pr, s);
	if (s->gn == 0)
		return RISKCTL_HOLD;
	if (s->gtot < UINT32_MAX)
		s->gtot++;
	s->excluded++;
	return riskctl_pick_shift(pr, s);
}

enum riskctl_move
riskctl_observe_cf(const struct riskctl_params *pr, struct riskctl_state *s, double tau0,
    const struct riskctl_point *pts, size_t n, const struct riskctl_end *end, bool shadow,
    bool changed, uint64_t tokens)
{
	size_t stop[RISKCTL_GRID_MAX];
	bool certain[RISKCTL_GRID_MAX];
	bool trusted;
	uint32_t k;

	riskctl_grid_sync(pr, s);
	if (shadow) {
		s->shadows++;
		s->tokens += tokens;
		if (changed)
			s->changes++;
		if (s->win_n < UINT32_MAX) {
			s->win_n++;
			if (changed)
				s->win_changes++;
		}
	}
	if (n == 0 || s->gn == 0)
		return RISKCTL_HOLD;
	if (s->gtot < UINT32_MAX)
		s->gtot++;
	if (!riskctl_cf_movable(pr, tau0, pts, n, true)) {
		s->excluded++;
		return riskctl_pick_shift(pr, s);
	}
	s->samples++;
	trusted = riskctl_end_trusted(pr, pts, n, end);
	riskctl_cf_stops(pr, tau0, pts, n, true, stop, certain);
	for (k = 0; k < s->gn; k++) {
		if (!certain[k] || s->gobs[k] == UINT32_MAX || s->gtot == UINT32_MAX)
			continue;
		s->gobs[k]++;
		if (pts[stop[k]].same || !trusted)
			continue;
		if (riskctl_gain_called(pr, pts, n, stop[k]))
			s->ggain[k]++;
		else
			s->gchg[k]++;
	}
	return riskctl_pick_shift(pr, s);
}

bool
riskctl_clamp(const struct riskctl_params *pr, struct riskctl_state *s)
{
	if (s->shift <= pr->max_shift && s->shift >= pr->min_shift)
		return false;
	return riskctl_move_by(pr, s, 0);
}

bool
riskctl_pick(const char *id, double frac)
{
	uint64_t h = 1469598103934665603ull;
	const unsigned char *q;

	if (!(frac > 0))
		return false;
	if (frac >= 1)
		return true;
	for (q = (const unsigned char *)id; *q != '\0'; q++) {
		h ^= *q;
		h *= 1099511628211ull;
	}
	/* Mix the low bits up (FNV-1a's high bits alone are weak for short keys). */
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	return (double)(h >> 11) / 9007199254740992.0 < frac;
}

const char *
riskctl_move_name(enum riskctl_move m)
{
	switch (m) {
	case RISKCTL_SAVE: return "save";
	case RISKCTL_BACK: return "back";
	default: return "hold";
	}
}
