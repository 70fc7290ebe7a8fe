/* evalsim.c — trace replay through sched_decide(), baselines, and policy calibration. */
#include "eval/evalsim.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lib/array.h"
#include "lib/hash.h"
#include "lib/median.h"
#include "scheduler/answer.h"
#include "scheduler/certainty.h"
#include "scheduler/difficulty.h"
#include "scheduler/policy.h"

const struct evalsim_diff_rule evalsim_diff_rules[EVALSIM_NDIFF] = {
	{ 512, 1 }, { 512, 2 }, { 512, 3 },
	{ 1024, 1 }, { 1024, 2 }, { 1024, 3 },
	{ 2048, 1 }, { 2048, 2 }, { 2048, 3 },
};

/* The class of a cot chain under every difficulty rule (one scan per distinct window). */
static void
evalsim_classes(const struct sched_policy *p0, const struct sched_chain *c, const char *problem,
    unsigned char cls[EVALSIM_NDIFF])
{
	struct sched_policy q = *p0;
	struct difficulty_early e;
	size_t r;

	memset(&e, 0, sizeof e);
	for (r = 0; r < EVALSIM_NDIFF; r++) {
		if (r == 0 || evalsim_diff_rules[r].tokens != e.window)
			difficulty_early_eval(c, problem, evalsim_diff_rules[r].tokens, &e);
		q.difficulty_tokens = evalsim_diff_rules[r].tokens;
		q.difficulty_changes = evalsim_diff_rules[r].changes;
		cls[r] = (unsigned char)difficulty_classify(&q, &e);
	}
}

static uint64_t
evalsim_problem_hash(const char *problem)
{
	char *norm = traces_normalize_ws(problem);
	const char *s = norm != NULL ? norm : problem;
	uint64_t h;

	/* The seed is not FNV's basis (a digit short) but the split and the folds of every
	 * published figure were drawn with it: keep it. */
	h = hash_fnv1a(s, strlen(s), 1469598103934665603ull);
	free(norm);
	return h;
}

bool
evalsim_in_split(const char *problem, enum evalsim_split split)
{
	bool test;

	if (split == EVALSIM_ALL)
		return true;
	test = (evalsim_problem_hash(problem) & 1) != 0;
	return split == EVALSIM_TEST ? test : !test;
}

unsigned
evalsim_fold_of(const char *problem, unsigned folds)
{
	uint64_t h;

	if (folds < 2)
		return 0;
	h = evalsim_problem_hash(problem);
	h ^= h >> 29;   /* mix the high bits down: FNV's low bits are weak */
	h *= 0xbf58476d1ce4e5b9ull;
	h ^= h >> 32;
	return (unsigned)((h >> 1) % folds);
}

unsigned
evalsim_group_of(const char *problem, unsigned groups)
{
	uint64_t h;

	if (groups < 2)
		return 0;
	h = evalsim_problem_hash(problem);
	h ^= h >> 31;   /* a different mix from evalsim_fold_of's */
	h *= 0x94d049bb133111ebull;
	h ^= h >> 29;
	return (unsigned)((h >> 1) % groups);
}

/* Whether a seed filter (nseeds > 0) lists seed. */
static bool
evalsim_filter_has_seed(const struct evalsim_filter *f, int64_t seed)
{
	size_t i;

	for (i = 0; i < f->nseeds && i < EVALSIM_FILTER_MAX_SEEDS; i++)
		if (f->seeds[i] == seed)
			return true;
	return false;
}

size_t
evalsim_filter_views(const struct evalsim_filter *f, const struct traces_program *prog,
    enum evalsim_split split, size_t n, struct traces_program *views, size_t max)
{
	size_t j, k = 0;

	if (max == 0 || prog->nsamples < n || !evalsim_in_split(prog->problem, split))
		return 0;
	if (f != NULL && f->model != NULL &&
	    (strcmp(prog->model, f->model) == 0) == f->not_model)
		return 0;
	if (f != NULL && f->groups >= 2 &&
	    (evalsim_group_of(prog->problem, f->groups) == f->group) == f->not_group)
		return 0;
	if (f == NULL || f->nseeds == 0 || n != 1) {
		views[0] = *prog;
		return 1;
	}
	for (j = 0; j < prog->nsamples && k < max; j++) {
		const struct trace *t = prog->samples[j];
		if (!evalsim_filter_has_seed(f, t->seed))
			continue;
		views[k] = *prog;
		views[k].samples = prog->samples + j;
		views[k].nsamples = prog->nsamples - j;
		views[k].problem_id = t->problem_id;
		views[k].target = t->target;
		k++;
	}
	return k;
}

static int
evalsim_u64_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

uint64_t
evalsim_model_expected(const struct traces *tr, const char *model)
{
	size_t n = traces_count(tr), i, k = 0;
	uint64_t *len, med;

	len = malloc((n ? n : 1) * sizeof *len);
	if (len == NULL)
		return 0;
	for (i = 0; i < n; i++) {
		const struct trace *t = traces_at(tr, i);
		if (strcmp(t->model, model) == 0)
			len[k++] = t->tokens_used;
	}
	qsort(len, k, sizeof *len, evalsim_u64_cmp);
	med = k == 0 ? 0 : k % 2 ? len[k / 2] : (len[k / 2 - 1] + len[k / 2] + 1) / 2;
	free(len);
	return med;
}

double
evalsim_traces_level(const struct traces *tr)
{
	double v[64];
	size_t i, n = 0;

	for (i = 0; i < traces_model_count(tr) && n < sizeof v / sizeof v[0]; i++) {
		double c = traces_model_prob(tr, traces_model_name(tr, i));
		if (c > 0 && c < 1)
			v[n++] = c;
	}
	return n > 0 ? median_doubles(v, n) : -1;
}

void
evalsim_model_policy(const struct traces *tr, const struct sched_policy *p, const char *model,
    struct sched_policy *out)
{
	uint64_t e;
	double c;

	*out = *p;
	if (p->unpromising_relative && (e = evalsim_model_expected(tr, model)) > 0)
		out->model_tokens = e;
	/* token probabilities relative to the model's own level, where the traces carry them */
	if ((c = traces_model_prob(tr, model)) > 0 && c < 1)
		out->model_confidence = c;
}

void
evalsim_traj_free(struct evalsim_traj *t)
{
	free(t->pts);
	free(t->x);
	free(t->y);
	memset(t, 0, sizeof *t);
}

static int
evalsim_add_point(struct evalsim_traj *t, const struct evalsim_point *pt)
{
	if (ARRAY_GROW(t->pts, t->cap, t->npts + 1) != 0)
		return -ENOMEM;
	t->pts[t->npts++] = *pt;
	return 0;
}

static int
evalsim_add_row(struct evalsim_traj *t, const double *x, size_t nfeat, bool y)
{
	if (t->nfeat == 0)
		t->nfeat = nfeat;
	if (t->nfeat != nfeat)
		return -EINVAL;
	if (t->nrows == t->rows_cap) {
		/* x holds nfeat doubles per row, y one byte: both grow to the same row count. */
		size_t xcap = t->rows_cap;
		if (array_grow(&t->x, &xcap, nfeat * sizeof *t->x, t->nrows + 1) != 0 ||
		    ARRAY_GROW(t->y, t->rows_cap, t->nrows + 1) != 0)
			return -ENOMEM;
	}
	memcpy(t->x + t->nrows * nfeat, x, nfeat * sizeof *x);
	t->y[t->nrows++] = y;
	return 0;
}

/* Majority vote of answers with sched_vote's rules. */
static const char *
evalsim_vote(const char *const *answers, size_t n)
{
	struct sched_chain ch[EVALSIM_MAX_N];
	struct sched_view v;
	size_t i, w = 0;
	double agr;

	memset(&v, 0, sizeof v);
	memset(ch, 0, sizeof ch);
	for (i = 0; i < n && i < EVALSIM_MAX_N; i++) {
		ch[i].finished = true;
		ch[i].final_answer = answers[i];
		ch[i].answer = answers[i];
	}
	v.algo = SCHED_ALGO_SC;
	v.nchains = i;
	v.chains = ch;
	if (!sched_vote(&v, &w, &agr))
		return "";
	return answers[w];
}

void
evalsim_reference(const struct traces_program *prog, size_t n, struct evalsim_full *out)
{
	const char *ans[EVALSIM_MAX_N];
	size_t i;

	memset(out, 0, sizeof *out);
	if (n > prog->nsamples)
		n = prog->nsamples;
	if (n > EVALSIM_MAX_N)
		n = EVALSIM_MAX_N;
	for (i = 0; i < n; i++) {
		ans[i] = prog->samples[i]->final_answer;
		out->tokens += prog->samples[i]->tokens_used;
		if (prog->samples[i]->tokens_used > out->path)
			out->path = prog->samples[i]->tokens_used;
	}
	out->answer = n == 1 ? ans[0] : evalsim_vote(ans, n);
	out->correct = out->answer[0] != '\0' && answer_equivalent(out->answer, prog->target);
}

/* Replay state of one chain. */
int
evalsim_chain_advance(struct evalsim_chain *st, struct sched_chain *ch, uint32_t step_tokens,
    uint64_t *probe_tokens)
{
	const struct trace *t = st->t;
	const struct trace_probe *pr;
	uint64_t pos;

	pos = ch->tokens + (step_tokens ? step_tokens : 1);
	if (pos > t->tokens_used)
		pos = t->tokens_used;
	pr = traces_probe_at(t, pos);
	if (ARRAY_GROW(st->probes, st->cap, st->nprobes + 1) != 0)
		return -ENOMEM;
	ch->probes = st->probes;
	st->probes[st->nprobes].position = pos;
	st->probes[st->nprobes].answer = pr != NULL ? pr->answer : "";
	/* token statistics where the trace carries them (history of llm workers), else unknown */
	st->probes[st->nprobes].confidence = pr != NULL ? pr->mean_prob : -1;
	st->probes[st->nprobes].min_prob = pr != NULL ? pr->min_prob : -1;
	st->probes[st->nprobes].entropy = pr != NULL ? pr->chain_entropy : -1;
	st->nprobes++;
	ch->nprobes = st->nprobes;
	*probe_tokens += pr != NULL ? pr->out_tokens : 0;
	ch->tokens = pos;
	ch->answer = pr != NULL ? pr->answer : "";
	ch->text_len = traces_text_offset(t, pos);
	ch->thinking_done = t->think_end > 0 && pos >= t->think_end;
	if (pos >= t->tokens_used) {
		ch->finished = true;
		ch->final_answer = t->final_answer;
	}
	return 0;
}

/* Chains a trajectory started with (all n without one). */
static size_t
traj_started(const struct evalsim_traj *t, size_t n)
{
	return t != NULL && t->started > 0 ? t->started : n;
}

int
evalsim_run(const struct sched_policy *p, const struct traces_program *prog,
    enum sched_algo algo, size_t n, struct evalsim_outcome *out, struct evalsim_traj *traj)
{
	struct evalsim_chain st[EVALSIM_MAX_N];
	struct sched_chain ch[EVALSIM_MAX_N];
	struct certainty_chain cc[EVALSIM_MAX_N];
	struct sched_state state = { SCHED_PS_NEW };
	struct sched_decision d;
	struct evalsim_full full;
	struct sched_view v;
	uint64_t probe_tokens = 0, path = 0;
	size_t i;
	int rc = 0;
	bool launched = false;
	const char *prev_answer = "";

	if (n < 1 || n > EVALSIM_MAX_N || n > prog->nsamples || (algo == SCHED_ALGO_COT && n != 1))
		return -EINVAL;
	evalsim_reference(prog, n, &full);
	memset(st, 0, sizeof st);
	memset(ch, 0, sizeof ch);
	for (i = 0; i < n; i++) {
		st[i].t = prog->samples[i];
		st[i].cap = st[i].t->tokens_used / (p->step_tokens ? p->step_tokens : 1) + 4;
		st[i].probes = calloc(st[i].cap, sizeof *st[i].probes);
		if (st[i].probes == NULL) {
			rc = -ENOMEM;
			goto fail_chains;
		}
		ch[i].answer = "";
		ch[i].final_answer = "";
		ch[i].text = st[i].t->text;
		ch[i].probes = st[i].probes;
		/* the text only grows: scan it incrementally (NULL without memory: rescans) */
		ch[i].scan = certainty_scan_new();
	}
	memset(&v, 0, sizeof v);
	v.algo = algo;
	v.budget = UINT64_MAX / 4;
	v.problem = prog->problem;
	v.nchains = algo == SCHED_ALGO_SC ? sched_sc_started(p, n) : n;
	v.pending = n - v.nchains;
	v.staged = v.pending > 0;
	v.chains = ch;
	v.state = &state;
	if (traj != NULL) {
		traj->nchains = n;
		traj->started = v.nchains;
		traj->end_cut = false;
		traj->end_votes = 0;
		for (i = 0; i < n; i++) {
			const struct trace *t = st[i].t;
			traj->chain_tokens[i] = t->tokens_used;
			if (!t->finished || t->final_answer[0] == '\0')
				traj->end_cut = true;
			else if (answer_equivalent(t->final_answer, full.answer))
				traj->end_votes++;
		}
	}
	for (;;) {
		uint64_t decode = sched_tokens_used(&v), most = 0, open = 0, late = 0;
		bool any_open = false;

		sched_decide(p, &v, &d);
		for (i = 0; i < n; i++) {
			if (ch[i].tokens > most)
				most = ch[i].tokens;
			if (i < v.nchains && !ch[i].finished) {
				any_open = true;
				if (ch[i].tokens > open)
					open = ch[i].tokens;
			}
			if (i >= traj_started(traj, n) && ch[i].tokens > late)
				late = ch[i].tokens;
		}
		/* sched_decide's bound reads the longest unfinished chain (the longest chain while
		 * the chains advance together) */
		if (!any_open && v.pending == 0)
			open = most;
		if (traj != NULL) {
			struct certainty_program cp;
			struct evalsim_point pt;

			certainty_program_eval(p, &v, &cp, cc);
			memset(&pt, 0, sizeof pt);
			pt.cost = decode + probe_tokens;
			/* in the bound's units (unpromising_relative), as sched_decide() compares */
			pt.most = sched_unpromising_tokens(p, open);
			pt.most_raw = most;
			pt.late = late;
			pt.open_raw = open;
			pt.end = d.stop && d.reason == SCHED_REASON_NATURAL_END;
			pt.decided = cp.decided;
			pt.vote = cp.vote_level;
			pt.cm = cp.x[0] == 0 ? 0 :
			    certainty_logistic(p->sc_w, cp.x, CERTAINTY_SC_NFEAT);
			/* staged sc: only a decided vote stops (pt.decided) */
			pt.c = cp.any_valid && cp.answer[0] != '\0' && !v.staged ?
			    cp.certaindex : -1;
			pt.correct = d.answer[0] != '\0' && answer_equivalent(d.answer, prog->target);
			pt.same = answer_equivalent(d.answer, full.answer);
			if (pt.end)
				pt.correct = full.correct, pt.same = true;
			if (algo == SCHED_ALGO_COT || n == 1) {
				memcpy(pt.x, cc[0].x, sizeof cc[0].x);
				pt.valid = cc[0].valid;
				pt.settled = cc[0].settled;
				evalsim_classes(p, &ch[0], prog->problem, pt.cls);
			} else {
				memcpy(pt.x, cp.x, sizeof cp.x);
			}
			/* the gain proxy's runs: d.answer points into the traces (or ""), which
			 * outlive the loop */
			pt.decode = decode;
			pt.cont = d.answer[0] != '\0' && prev_answer[0] != '\0' &&
			    answer_equivalent(d.answer, prev_answer);
			prev_answer = d.answer;
			rc = evalsim_add_point(traj, &pt);
			if (rc != 0)
				goto fail_chains;
			if (algo == SCHED_ALGO_COT || n == 1) {
				for (i = 0; i < n; i++)
					if (!ch[i].finished && cc[i].valid) {
						bool y;
						if (traj->label == EVALSIM_LABEL_SAFE)
							y = !full.correct ||
							    answer_equivalent(cc[i].answer, prog->target);
						else
							y = strcmp(cc[i].answer, st[i].t->final_answer) == 0 ||
							    answer_equivalent(cc[i].answer,
							    st[i].t->final_answer);
						rc = evalsim_add_row(traj, cc[i].x, CERTAINTY_COT_NFEAT, y);
						if (rc != 0)
							goto fail_chains;
					}
			} else if (!pt.end && !(cp.vote_level > 1) && cp.any_valid && cp.x[0] != 0 &&
			    !v.staged) {
				/* not decided without certain voters: the rows do not depend on
				 * sc.vote_threshold */
				rc = evalsim_add_row(traj, cp.x, CERTAINTY_SC_NFEAT,
				    traj->label == EVALSIM_LABEL_SAFE ? !full.correct || pt.correct :
				    pt.same);
				if (rc != 0)
					goto fail_chains;
			}
		}
		if (d.stop)
			break;
		if (d.launch) {
			/* staged sc: the pending chains start from the prompt */
			v.nchains = n;
			v.pending = 0;
			launched = true;
		}
		{
			uint64_t adv = 0;
			for (i = 0; i < v.nchains; i++) {
				uint64_t before = ch[i].tokens;
				if (ch[i].finished)
					continue;
				rc = evalsim_chain_advance(&st[i], &ch[i], d.step_tokens,
				    &probe_tokens);
				if (rc != 0)
					goto fail_chains;
				if (ch[i].tokens - before > adv)
					adv = ch[i].tokens - before;
			}
			path += adv;
		}
	}
	memset(out, 0, sizeof *out);
	out->answer = d.answer;
	out->correct = d.answer[0] != '\0' && answer_equivalent(d.answer, prog->target);
	out->decode_tokens = sched_tokens_used(&v);
	out->probe_tokens = probe_tokens;
	out->reason = d.reason;
	out->low_confidence = d.low_confidence;
	out->path_tokens = path;
	out->launched = launched;
	for (i = 0; i < n; i++)
		if (ch[i].tokens > out->stop_tokens)
			out->stop_tokens = ch[i].tokens;
fail_chains:
	for (i = 0; i < n; i++) {
		free(st[i].probes);
		certainty_scan_free(ch[i].scan);
	}
	return rc;
}

void
evalsim_dynasor_chain(const struct trace *t, unsigned k, uint64_t step,
    struct evalsim_outcome *out)
{
	uint64_t pos = 0;
	const char *run = NULL;
	unsigned agree = 0;

	memset(out, 0, sizeof *out);
	out->reason = SCHED_REASON_NATURAL_END;
	if (step == 0)
		step = 64;
	while (pos < t->tokens_used) {
		const struct trace_probe *pr;
		const char *a;

		pos += step;
		if (pos > t->tokens_used)
			pos = t->tokens_used;
		pr = traces_probe_at(t, pos);
		a = pr != NULL ? pr->answer : "";
		out->probe_tokens += pr != NULL ? pr->out_tokens : 0;
		if (a[0] == '\0' || certainty_probe_hesitant(a)) {
			agree = 0;
			run = NULL;
		} else if (run != NULL && (strcmp(run, a) == 0 || answer_equivalent(run, a))) {
			agree++;
		} else {
			run = a;
			agree = 1;
		}
		if (pos >= t->tokens_used)
			break;
		if (agree >= k) {
			out->decode_tokens = pos;
			out->stop_tokens = pos;
			out->answer = a;
			out->reason = SCHED_REASON_CERTAIN;
			return;
		}
	}
	out->decode_tokens = t->tokens_used;
	out->stop_tokens = t->tokens_used;
	out->answer = t->final_answer;
}

void
evalsim_think_chain(const struct trace *t, uint64_t step, struct evalsim_outcome *out)
{
	uint64_t pos;
	const struct trace_probe *pr;

	memset(out, 0, sizeof *out);
	if (step == 0)
		step = 64;
	pos = (t->think_end + step - 1) / step * step;
	if (t->think_end > 0 && pos < t->tokens_used) {
		pr = traces_probe_at(t, pos);
		if (pr != NULL && pr->answer[0] != '\0') {
			out->answer = pr->answer;
			out->decode_tokens = pos;
			out->stop_tokens = pos;
			out->probe_tokens = pr->out_tokens;
			out->reason = SCHED_REASON_CERTAIN;
			return;
		}
	}
	out->answer = t->final_answer;
	out->decode_tokens = t->tokens_used;
	out->stop_tokens = t->tokens_used;
	out->reason = SCHED_REASON_NATURAL_END;
}

void
evalsim_chain_rule(const struct traces_program *prog, size_t n, int kind, unsigned k,
    uint64_t step, struct evalsim_outcome *out)
{
	const char *ans[EVALSIM_MAX_N];
	struct evalsim_outcome o;
	uint64_t dec = 0, prb = 0, most = 0;
	size_t i;
	bool early = false;

	if (n > prog->nsamples)
		n = prog->nsamples;
	if (n > EVALSIM_MAX_N)
		n = EVALSIM_MAX_N;
	for (i = 0; i < n; i++) {
		if (kind == 0)
			evalsim_dynasor_chain(prog->samples[i], k, step, &o);
		else
			evalsim_think_chain(prog->samples[i], step, &o);
		ans[i] = o.answer;
		dec += o.decode_tokens;
		prb += o.probe_tokens;
		if (o.stop_tokens > most)
			most = o.stop_tokens;
		early |= o.reason == SCHED_REASON_CERTAIN;
	}
	memset(out, 0, sizeof *out);
	out->answer = n == 1 ? ans[0] : evalsim_vote(ans, n);
	out->correct = out->answer[0] != '\0' && answer_equivalent(out->answer, prog->target);
	out->decode_tokens = dec;
	out->probe_tokens = prb;
	out->stop_tokens = most;
	out->reason = early ? SCHED_REASON_CERTAIN : SCHED_REASON_NATURAL_END;
}

size_t
evalsim_stop_index(const struct evalsim_point *pts, size_t n, double tau, uint64_t u)
{
	size_t i;

	for (i = 0; i < n; i++) {
		const struct evalsim_point *pt = &pts[i];
		if (pt->end || (tau <= 1.0 && pt->decided) || (pt->c >= 0 && pt->c >= tau) ||
		    (u > 0 && pt->most >= u))
			return i;
	}
	return n > 0 ? n - 1 : 0;
}

/* evalsim_stop_index_cls with cot.threshold_slope `slope` (sched_cot_threshold_at after the
 * class threshold, as sched_decide() applies it). */
static size_t
evalsim_stop_at(const struct evalsim_point *pts, size_t n, size_t rule, const double tau[3],
    double slope, uint64_t u)
{
	size_t i;

	for (i = 0; i < n; i++) {
		const struct evalsim_point *pt = &pts[i];
		double t = rule < EVALSIM_NDIFF ? tau[pt->cls[rule] < 3 ? pt->cls[rule] : 0] :
		    tau[0];
		t = sched_cot_threshold_at(t, slope, pt->most);
		if (pt->end || (t <= 1.0 && pt->decided) || (pt->c >= 0 && pt->c >= t) ||
		    (u > 0 && pt->most >= u))
			return i;
	}
	return n > 0 ? n - 1 : 0;
}

size_t
evalsim_stop_index_cls(const struct evalsim_point *pts, size_t n, size_t rule,
    const double tau[3], uint64_t u)
{
	return evalsim_stop_at(pts, n, rule, tau, 0, u);
}

size_t
evalsim_stop_index_slope(const struct evalsim_point *pts, size_t n, double tau, double slope,
    uint64_t u)
{
	const double taus[3] = { tau, tau, tau };

	return evalsim_stop_at(pts, n, EVALSIM_NDIFF, taus, slope, u);
}

/* Solves a (k x k, row-major, symmetric positive definite) x = b by Gaussian elimination with
 * partial pivoting; b receives x.  Returns false when singular. */
static bool
evalsim_solve(double *a, double *b, size_t k)
{
	size_t i, j, r;

	for (i = 0; i < k; i++) {
		size_t piv = i;
		for (r = i + 1; r < k; r++)
			if (fabs(a[r * k + i]) > fabs(a[piv * k + i]))
				piv = r;
		if (fabs(a[piv * k + i]) < 1e-12)
			return false;
		if (piv != i) {
			for (j = 0; j < k; j++) {
				double tmp = a[i * k + j];
				a[i * k + j] = a[piv * k + j];
				a[piv * k + j] = tmp;
			}
			{
				double tmp = b[i];
				b[i] = b[piv];
				b[piv] = tmp;
			}
		}
		for (r = i + 1; r < k; r++) {
			double f = a[r * k + i] / a[i * k + i];
			for (j = i; j < k; j++)
				a[r * k + j] -= f * a[i * k + j];
			b[r] -= f * b[i];
		}
	}
	for (i = k; i-- > 0;) {
		for (j = i + 1; j < k; j++)
			b[i] -= a[i * k + j] * b[j];
		b[i] /= a[i * k + i];
	}
	return true;
}

int
evalsim_fit_logistic(const double *x, const unsigned char *y, size_t nrows, size_t nfeat,
    double lambda, double *w)
{
	double *h, *g;
	size_t it, r, i, j;

	h = calloc(nfeat * nfeat, sizeof *h);
	g = calloc(nfeat, sizeof *g);
	if (h == NULL || g == NULL) {
		free(h);
		free(g);
		return -ENOMEM;
	}
	memset(w, 0, nfeat * sizeof *w);
	for (it = 0; it < 30; it++) {
		double step = 0;
		memset(h, 0, nfeat * nfeat * sizeof *h);
		memset(g, 0, nfeat * sizeof *g);
		for (r = 0; r < nrows; r++) {
			const double *xr = x + r * nfeat;
			double pr = certainty_logistic(w, xr, nfeat), s = pr * (1 - pr);
			for (i = 0; i < nfeat; i++) {
				g[i] += (pr - (double)y[r]) * xr[i];
				for (j = 0; j < nfeat; j++)
					h[i * nfeat + j] += s * xr[i] * xr[j];
			}
		}
		for (i = 0; i < nfeat; i++) {
			double l = i == 0 ? 1e-6 : lambda;
			g[i] += l * w[i];
			h[i * nfeat + i] += l;
		}
		if (!evalsim_solve(h, g, nfeat))
			break;
		for (i = 0; i < nfeat; i++) {
			w[i] -= g[i];
			step += fabs(g[i]);
		}
		if (step < 1e-7)
			break;
	}
	free(h);
	free(g);
	return 0;
}

void
evalsim_set_free(struct evalsim_set *s)
{
	size_t i;

	for (i = 0; s->traj != NULL && i < s->nprog; i++)
		evalsim_traj_free(&s->traj[i]);
	free(s->traj);
	free(s->model);
	free(s->full_correct);
	free(s->full_tokens);
	free(s->fold);
	free(s->row_fold);
	evalsim_traj_free(&s->rows);
	memset(s, 0, sizeof *s);
}

int
evalsim_record(const struct traces *tr, const struct sched_policy *p0, enum sched_algo algo,
    size_t n, enum evalsim_split split, struct evalsim_set *s)
{
	return evalsim_record_labeled(tr, p0, algo, n, split, EVALSIM_LABEL_SAFE, s);
}

int
evalsim_record_labeled(const struct traces *tr, const struct sched_policy *p0,
    enum sched_algo algo, size_t n, enum evalsim_split split, enum evalsim_label label,
    struct evalsim_set *s)
{
	return evalsim_record_folds(tr, p0, algo, n, split, label, 1, s);
}

static int
evalsim_grow_folds(unsigned **a, size_t need, size_t *cap)
{
	return array_grow(a, cap, sizeof **a, need) != 0 ? -ENOMEM : 0;
}

int
evalsim_record_folds(const struct traces *tr, const struct sched_policy *p0,
    enum sched_algo algo, size_t n, enum evalsim_split split, enum evalsim_label label,
    unsigned folds, struct evalsim_set *s)
{
	return evalsim_record_filtered(tr, p0, algo, n, split, label, folds, NULL, s);
}

int
evalsim_record_filtered(const struct traces *tr, const struct sched_policy *p0,
    enum sched_algo algo, size_t n, enum evalsim_split split, enum evalsim_label label,
    unsigned folds, const struct evalsim_filter *f, struct evalsim_set *s)
{
	size_t row_fold_cap = 0;
	struct sched_policy p = *p0;
	struct traces_program views[EVALSIM_FILTER_MAX_SEEDS];
	size_t nv = f != NULL && f->nseeds > 0 && n == 1 ? EVALSIM_FILTER_MAX_SEEDS : 1;
	size_t np = traces_program_count(tr) * nv, i, m, v, vn;
	int rc;

	memset(s, 0, sizeof *s);
	/* sc.staged = 2's voters read cot.threshold, which the recording turns off: every
	 * program of a staged recording is staged, so the vote threshold carries it. */
	if (algo == SCHED_ALGO_SC && p0->sc_staged == 2 && p0->cot_threshold < p.sc_vote_threshold)
		p.sc_vote_threshold = p0->cot_threshold;
	p.cot_threshold = 2;
	p.sc_threshold = 2;
	p.unpromising_tokens = 0;
	p.sc_unpromising_tokens = 0;
	p.difficulty_tokens = 0;   /* no class threshold either */
	s->traj = calloc(np ? np : 1, sizeof *s->traj);
	s->model = calloc(np ? np : 1, sizeof *s->model);
	s->full_correct = calloc(np ? np : 1, sizeof *s->full_correct);
	s->full_tokens = calloc(np ? np : 1, sizeof *s->full_tokens);
	s->folds = folds < 2 ? 1 : folds;
	s->fold = calloc(np ? np : 1, sizeof *s->fold);
	if (s->traj == NULL || s->model == NULL || s->full_correct == NULL ||
	    s->full_tokens == NULL || s->fold == NULL) {
		rc = -ENOMEM;
		goto fail;
	}
	for (i = 0, v = vn = 0; v < vn || i < traces_program_count(tr); v++) {
		const struct traces_program *prog;
		struct evalsim_traj *t = &s->traj[s->nprog];
		struct evalsim_outcome o;
		struct evalsim_full full;
		size_t k;

		while (v >= vn && i < traces_program_count(tr)) {   /* the next program's views */
			vn = evalsim_filter_views(f, traces_program_at(tr, i++), split, n, views,
			    nv);
			v = 0;
		}
		if (v >= vn)
			break;
		prog = &views[v];
		t->label = label;
		{
			/* the model's own chain length and probability level (evalsim.h) */
			struct sched_policy pm;
			evalsim_model_policy(tr, &p, prog->model, &pm);
			rc = evalsim_run(&pm, prog, algo, n, &o, t);
		}
		if (rc != 0)
			goto fail;
		evalsim_reference(prog, n, &full);
		s->model[s->nprog] = prog->model;
		s->full_correct[s->nprog] = full.correct;
		s->full_tokens[s->nprog] = full.tokens;
		s->fold[s->nprog] = evalsim_fold_of(prog->problem, s->folds);
		rc = evalsim_grow_folds(&s->row_fold, s->rows.nrows + t->nrows, &row_fold_cap);
		if (rc != 0)
			goto fail;
		for (k = 0; k < t->nrows; k++)
			s->row_fold[s->rows.nrows + k] = s->fold[s->nprog];
		for (m = 0; m < s->nmodels; m++)
			if (strcmp(s->models[m], prog->model) == 0)
				break;
		if (m == s->nmodels && s->nmodels < 16)
			s->models[s->nmodels++] = prog->model;
		for (k = 0; k < t->nrows; k++) {
			rc = evalsim_add_row(&s->rows, t->x + k * t->nfeat, t->nfeat, t->y[k]);
			if (rc != 0)
				goto fail;
		}
		free(t->x);
		free(t->y);
		t->x = NULL;
		t->y = NULL;
		t->nrows = t->rows_cap = 0;
		s->nprog++;
	}
	if (s->nprog > 0)
		return 0;
	rc = -EINVAL;
fail:
	evalsim_set_free(s);
	return rc;
}

void
evalsim_score_model(const struct evalsim_set *s, const char *model, double tau, uint64_t u,
    double *loss, double *saved)
{
	const double taus[3] = { tau, tau, tau };

	evalsim_score_model_cls(s, model, EVALSIM_NDIFF, taus, u, loss, saved);
}

void
evalsim_score_model_cls(const struct evalsim_set *s, const char *model, size_t rule,
    const double tau[3], uint64_t u, double *loss, double *saved)
{
	double full_cost = 0, cost = 0;
	long diff = 0;
	size_t i, cnt = 0;

	for (i = 0; i < s->nprog; i++) {
		const struct evalsim_traj *t = &s->traj[i];
		size_t k;
		if (model != NULL && strcmp(s->model[i], model) != 0)
			continue;
		k = evalsim_stop_at(t->pts, t->npts, rule, tau, s->slope, u);
		diff += (long)s->full_correct[i] - (long)t->pts[k].correct;
		cost += (double)t->pts[k].cost;
		full_cost += (double)s->full_tokens[i];
		cnt++;
	}
	*loss = cnt > 0 ? (double)diff / (double)cnt : 0;
	*saved = full_cost > 0 ? 1.0 - cost / full_cost : 0;
}

/* Worst per-model loss (or its bound, see struct evalsim_set) and total saving of class
 * thresholds tau[] under difficulty rule `rule` (evalsim_stop_index_cls) and u on a recorded
 * set; *plain_out (may be NULL) receives the worst plain net loss. */
static void
evalsim_score_cls(const struct evalsim_set *s, size_t rule, const double tau[3], uint64_t u,
    double *worst_loss, double *saved, double *plain_out)
{
	double full_cost = 0, cost = 0, worst = -1e9, worst_plain = -1e9;
	size_t m, i;

	for (m = 0; m < s->nmodels; m++) {
		long harm = 0, fix = 0;
		size_t cnt = 0;
		double l, net;
		for (i = 0; i < s->nprog; i++) {
			const struct evalsim_traj *t = &s->traj[i];
			size_t k;
			if (strcmp(s->model[i], s->models[m]) != 0)
				continue;
			k = evalsim_stop_at(t->pts, t->npts, rule, tau, s->slope, u);
			harm += s->full_correct[i] && !t->pts[k].correct;
			fix += !s->full_correct[i] && t->pts[k].correct;
			cost += (double)t->pts[k].cost;
			full_cost += (double)s->full_tokens[i];
			cnt++;
		}
		if (cnt == 0)
			continue;
		net = s->harm_only ? (double)harm : (double)(harm - fix);
		if (net / (double)cnt > worst_plain)
			worst_plain = net / (double)cnt;
		if (s->z > 0)
			net += s->z * sqrt((double)(s->harm_only ? harm : harm + fix));
		l = net / (double)cnt;
		if (l > worst)
			worst = l;
	}
	*worst_loss = worst > -1e9 ? worst : 0;
	*saved = full_cost > 0 ? 1.0 - cost / full_cost : 0;
	if (plain_out != NULL)
		*plain_out = worst_plain > -1e9 ? worst_plain : 0;
}

/* The same for one threshold tau (no classes). */
static void
evalsim_score_ex(const struct evalsim_set *s, double tau, uint64_t u, double *worst_loss,
    double *saved, double *plain_out)
{
	const double taus[3] = { tau, tau, tau };

	evalsim_score_cls(s, EVALSIM_NDIFF, taus, u, worst_loss, saved, plain_out);
}

static void
evalsim_score(const struct evalsim_set *s, double tau, uint64_t u, double *worst_loss,
    double *saved)
{
	evalsim_score_ex(s, tau, u, worst_loss, saved, NULL);
}

int
evalsim_fit_set(const struct evalsim_set *s, unsigned skip, size_t nfeat, double lambda,
    double *w)
{
	const struct evalsim_traj *r = &s->rows;
	double *x;
	unsigned char *y;
	size_t i, n = 0;
	int rc;

	if (r->nrows == 0 || r->nfeat != nfeat)
		return -EINVAL;
	if (skip >= s->folds || s->row_fold == NULL)
		return evalsim_fit_logistic(r->x, r->y, r->nrows, nfeat, lambda, w);
	x = malloc(r->nrows * nfeat * sizeof *x);
	y = malloc(r->nrows);
	if (x == NULL || y == NULL) {
		free(x);
		free(y);
		return -ENOMEM;
	}
	for (i = 0; i < r->nrows; i++) {
		if (s->row_fold[i] == skip)
			continue;
		memcpy(x + n * nfeat, r->x + i * nfeat, nfeat * sizeof *x);
		y[n++] = r->y[i];
	}
	rc = n > 0 ? evalsim_fit_logistic(x, y, n, nfeat, lambda, w) : -EINVAL;
	free(x);
	free(y);
	return rc;
}

void
evalsim_set_reweight(struct evalsim_set *s, enum sched_algo algo, const double *w,
    unsigned fold)
{
	size_t i, k;

	for (i = 0; i < s->nprog; i++) {
		struct evalsim_traj *t = &s->traj[i];
		if (fold < s->folds && s->fold[i] != fold)
			continue;
		for (k = 0; k < t->npts; k++) {
			struct evalsim_point *pt = &t->pts[k];
			if (pt->c < 0 || pt->end)
				continue;
			if (algo == SCHED_ALGO_COT)
				pt->c = !pt->valid ? 0 : pt->settled ? 1.0 :
				    certainty_logistic(w, pt->x, CERTAINTY_COT_NFEAT);
			else {
				pt->cm = pt->x[0] == 0 ? 0 :
				    certainty_logistic(w, pt->x, CERTAINTY_SC_NFEAT);
				pt->c = pt->decided ? 1.0 : pt->cm;
			}
		}
	}
}

void
evalsim_set_vote(struct evalsim_set *s, double tv)
{
	size_t i, k;

	for (i = 0; i < s->nprog; i++) {
		struct evalsim_traj *t = &s->traj[i];
		for (k = 0; k < t->npts; k++) {
			struct evalsim_point *pt = &t->pts[k];
			if (pt->end)
				continue;
			pt->decided = pt->vote > 1 || (tv <= 1 && pt->vote >= tv);
			if (pt->c >= 0)
				pt->c = pt->decided ? 1.0 : pt->cm;
		}
	}
}

/* qsort order of doubles, ascending. */
static int
evalsim_double_cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Unlabelled by construction: reads features, scores and settled/decided flags only. */
int
evalsim_score_dist(const struct evalsim_set *s, const struct sched_policy *p,
    enum sched_algo algo, const char *model, bool per_program, double **out, size_t *n)
{
	double *v = NULL;
	size_t cap = 0, k = 0, i, j;

	for (i = 0; i < s->nprog; i++) {
		const struct evalsim_traj *t = &s->traj[i];
		double most = -1;
		if (model != NULL && strcmp(s->model[i], model) != 0)
			continue;
		for (j = 0; j < t->npts; j++) {
			const struct evalsim_point *pt = &t->pts[j];
			double x;
			if (pt->end || pt->c < 0)
				continue;
			if (algo == SCHED_ALGO_COT) {
				if (!pt->valid || pt->settled)
					continue;
				x = certainty_logistic(p->cot_w, pt->x, CERTAINTY_COT_NFEAT);
			} else {
				if (pt->decided)
					continue;
				x = pt->cm;
			}
			if (per_program) {
				if (x > most)
					most = x;
				continue;
			}
			if (ARRAY_GROW(v, cap, k + 1) != 0)
				goto fail_mem;
			v[k++] = x;
		}
		if (per_program && most >= 0) {
			if (ARRAY_GROW(v, cap, k + 1) != 0)
				goto fail_mem;
			v[k++] = most;
		}
	}
	if (k == 0) {
		free(v);
		return -EINVAL;
	}
	qsort(v, k, sizeof *v, evalsim_double_cmp);
	*out = v;
	*n = k;
	return 0;
fail_mem:
	free(v);
	return -ENOMEM;
}

/* Binary search: the sets hold ~10^4 points and the caller asks a few levels. */
double
evalsim_dist_cdf(const double *v, size_t n, double t)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {   /* first index with v >= t */
		size_t mid = lo + (hi - lo) / 2;
		if (v[mid] < t)
			lo = mid + 1;
		else
			hi = mid;
	}
	return n == 0 ? 0 : (double)lo / (double)n;
}

/* Rounded index, so that a share read off one model maps to the nearest rank in another. */
double
evalsim_dist_level(const double *v, size_t n, double q)
{
	double k = floor(q * (double)n + 0.5);

	if (k < 0)
		k = 0;
	if (k >= (double)n)
		return nextafter(v[n - 1], INFINITY);
	return v[(size_t)k];
}

/* Candidate thresholds, high to low. */
const double evalsim_taus[] = {
	1.5, 0.999, 0.998, 0.997, 0.996, 0.995, 0.993, 0.99, 0.985, 0.98, 0.975, 0.97, 0.96,
	0.95, 0.94, 0.93, 0.92, 0.9, 0.88, 0.86, 0.84, 0.82, 0.8, 0.77, 0.74, 0.7, 0.65, 0.6,
	0.55, 0.5, 0.4, 0.3,
};
const size_t evalsim_ntaus = sizeof evalsim_taus / sizeof evalsim_taus[0];
#define EVALSIM_NTAUS (sizeof evalsim_taus / sizeof evalsim_taus[0])
static const uint64_t evalsim_us[] = { 0, 24576, 16384, 12288, 10240, 8192, 6144 };
#define EVALSIM_NUS (sizeof evalsim_us / sizeof evalsim_us[0])

double
evalsim_pick_threshold(const struct evalsim_set *s, double max_loss, bool sweep_u, double *tau_out,
    uint64_t *u_out, double *loss_out)
{
	double best_saved = -1e9;
	uint64_t u_fixed = *u_out;
	size_t ui, ti;

	*tau_out = 1.5;
	*loss_out = 0;
	for (ui = 0; ui < (sweep_u ? EVALSIM_NUS : 1); ui++) {
		uint64_t u = sweep_u ? evalsim_us[ui] : u_fixed;
		for (ti = 0; ti < EVALSIM_NTAUS; ti++) {
			double loss, saved;
			evalsim_score(s, evalsim_taus[ti], u, &loss, &saved);
			if (loss > max_loss + 1e-12)
				break;
			if (saved > best_saved) {
				best_saved = saved;
				*tau_out = evalsim_taus[ti];
				*u_out = u;
				*loss_out = loss;
			}
		}
	}
	return best_saved;
}

double
evalsim_pick_vote(struct evalsim_set *s, double max_loss, double *tv_out, double *tau_out,
    uint64_t *u_out, double *loss_out)
{
	bool (*feas)[EVALSIM_NTAUS][EVALSIM_NTAUS];   /* [u][vote][tau] */
	double best_saved = -1e9;
	size_t vi, ui, ti;

	feas = calloc(EVALSIM_NUS, sizeof *feas);
	if (feas == NULL)
		return -1e9;
	*tv_out = *tau_out = 1.5;
	*loss_out = 0;
	for (vi = 0; vi < EVALSIM_NTAUS; vi++) {
		evalsim_set_vote(s, evalsim_taus[vi]);
		for (ui = 0; ui < EVALSIM_NUS; ui++)
			for (ti = 0; ti < EVALSIM_NTAUS; ti++) {
				double loss = 0, saved = 0;
				/* feasible only if every pair at least as high is */
				bool ok = (ti == 0 || feas[ui][vi][ti - 1]) &&
				    (vi == 0 || feas[ui][vi - 1][ti]);
				if (ok) {
					evalsim_score(s, evalsim_taus[ti], evalsim_us[ui], &loss,
					    &saved);
					ok = loss <= max_loss + 1e-12;
				}
				feas[ui][vi][ti] = ok;
				if (ok && saved > best_saved) {
					best_saved = saved;
					*tv_out = evalsim_taus[vi];
					*tau_out = evalsim_taus[ti];
					*u_out = evalsim_us[ui];
					*loss_out = loss;
				}
			}
	}
	free(feas);
	evalsim_set_vote(s, *tv_out);
	return best_saved;
}

const double evalsim_slopes[] = { 0, -0.01, 0.01, -0.02, 0.02, -0.05, 0.05, -0.1, 0.1 };
const size_t evalsim_nslopes = sizeof evalsim_slopes / sizeof evalsim_slopes[0];

double
evalsim_pick_slope(struct evalsim_set *s, double max_loss, double *slope_out, double *tau_out,
    uint64_t *u_out, double *loss_out)
{
	double best_saved = -1e9;
	size_t i;

	*slope_out = 0;
	*tau_out = 1.5;
	*loss_out = 0;
	for (i = 0; i < evalsim_nslopes; i++) {
		double tau, loss, saved;
		uint64_t u = 0;

		s->slope = evalsim_slopes[i];
		saved = evalsim_pick_threshold(s, max_loss, true, &tau, &u, &loss);
		if (saved > best_saved + 1e-12) {
			best_saved = saved;
			*slope_out = evalsim_slopes[i];
			*tau_out = tau;
			*u_out = u;
			*loss_out = loss;
		}
	}
	s->slope = *slope_out;
	return best_saved;
}

/*
 * Where each threshold of each class, each unpromising bound and the natural end first stop
 * each program of a recorded cot set: evalsim_stop_index_cls is the minimum of these, so a
 * sweep over thresholds pairs costs one lookup per program instead of a scan.
 */
struct evalsim_firsts {
	size_t nprog;
	uint32_t *cls;     /* [prog][rule][easy, hard][tau] */
	uint32_t *plain;   /* [prog][tau]: every point (no classes) */
	uint32_t *u;       /* [prog][bound] */
	uint32_t *end;     /* [prog] */
	unsigned *model;   /* [prog]: index into s->models */
};

#define EVALSIM_FCLS(f, i, r, c, t) \
	((f)->cls[(((i) * EVALSIM_NDIFF + (r)) * 2 + (c)) * EVALSIM_NTAUS + (t)])

static void
evalsim_firsts_free(struct evalsim_firsts *f)
{
	free(f->cls);
	free(f->plain);
	free(f->u);
	free(f->end);
	free(f->model);
	memset(f, 0, sizeof *f);
}

static int
evalsim_firsts_build(const struct evalsim_set *s, struct evalsim_firsts *f)
{
	size_t i, k, r, t, ui, np = s->nprog ? s->nprog : 1;

	memset(f, 0, sizeof *f);
	f->nprog = s->nprog;
	f->cls = malloc(np * EVALSIM_NDIFF * 2 * EVALSIM_NTAUS * sizeof *f->cls);
	f->plain = malloc(np * EVALSIM_NTAUS * sizeof *f->plain);
	f->u = malloc(np * EVALSIM_NUS * sizeof *f->u);
	f->end = malloc(np * sizeof *f->end);
	f->model = calloc(np, sizeof *f->model);
	if (f->cls == NULL || f->plain == NULL || f->u == NULL || f->end == NULL ||
	    f->model == NULL) {
		evalsim_firsts_free(f);
		return -ENOMEM;
	}
	for (i = 0; i < s->nprog; i++) {
		const struct evalsim_traj *tj = &s->traj[i];
		uint32_t last = tj->npts > 0 ? (uint32_t)(tj->npts - 1) : 0;

		for (k = 0; k < s->nmodels && strcmp(s->models[k], s->model[i]) != 0; k++)
			;
		f->model[i] = (unsigned)k;
		f->end[i] = last;
		for (t = 0; t < EVALSIM_NTAUS; t++) {
			f->plain[i * EVALSIM_NTAUS + t] = last;
			for (r = 0; r < EVALSIM_NDIFF; r++)
				EVALSIM_FCLS(f, i, r, 0, t) = EVALSIM_FCLS(f, i, r, 1, t) = last;
		}
		for (ui = 0; ui < EVALSIM_NUS; ui++)
			f->u[i * EVALSIM_NUS + ui] = last;
		/* backwards: the earliest point wins */
		for (k = tj->npts; k-- > 0;) {
			const struct evalsim_point *pt = &tj->pts[k];
			if (pt->end)
				f->end[i] = (uint32_t)k;
			for (ui = 0; ui < EVALSIM_NUS; ui++)
				if (evalsim_us[ui] > 0 && pt->most >= evalsim_us[ui])
					f->u[i * EVALSIM_NUS + ui] = (uint32_t)k;
			for (t = 0; t < EVALSIM_NTAUS; t++) {
				double tau = evalsim_taus[t];
				if (!((tau <= 1.0 && pt->decided) || (pt->c >= 0 && pt->c >= tau)))
					continue;
				f->plain[i * EVALSIM_NTAUS + t] = (uint32_t)k;
				for (r = 0; r < EVALSIM_NDIFF; r++)
					EVALSIM_FCLS(f, i, r, pt->cls[r] == DIFFICULTY_HARD, t) =
					    (uint32_t)k;
			}
		}
	}
	return 0;
}

/* The stop point of program i: rule >= EVALSIM_NDIFF: plain threshold te. */
static inline uint32_t
evalsim_firsts_stop(const struct evalsim_firsts *f, size_t i, size_t rule, size_t te,
    size_t th, size_t ui)
{
	uint32_t k = f->end[i], x;

	if (rule < EVALSIM_NDIFF) {
		x = EVALSIM_FCLS(f, i, rule, 0, te);
		k = x < k ? x : k;
		x = EVALSIM_FCLS(f, i, rule, 1, th);
		k = x < k ? x : k;
	} else {
		x = f->plain[i * EVALSIM_NTAUS + te];
		k = x < k ? x : k;
	}
	x = f->u[i * EVALSIM_NUS + ui];
	return x < k ? x : k;
}

/* As evalsim_score_ex for a (rule, te, th, ui) of the fast form; *total_out (may be NULL):
 * the plain net loss over all programs. */
static void
evalsim_firsts_score(const struct evalsim_set *s, const struct evalsim_firsts *f, size_t rule,
    size_t te, size_t th, size_t ui, double *worst_loss, double *saved, double *plain_out,
    double *total_out)
{
	long harm[16] = { 0 }, fix[16] = { 0 };
	size_t cnt[16] = { 0 }, i, m;
	double cost = 0, full_cost = 0, worst = -1e9, worst_plain = -1e9;
	long net_all = 0;

	for (i = 0; i < f->nprog; i++) {
		const struct evalsim_traj *tj = &s->traj[i];
		const struct evalsim_point *pt = &tj->pts[evalsim_firsts_stop(f, i, rule, te, th,
		    ui)];
		unsigned mi = f->model[i];
		long h = s->full_correct[i] && !pt->correct, x = !s->full_correct[i] && pt->correct;

		cost += (double)pt->cost;
		full_cost += (double)s->full_tokens[i];
		net_all += h - x;
		if (mi >= 16)
			continue;
		harm[mi] += h;
		fix[mi] += x;
		cnt[mi]++;
	}
	for (m = 0; m < s->nmodels && m < 16; m++) {
		double net, l;
		if (cnt[m] == 0)
			continue;
		net = s->harm_only ? (double)harm[m] : (double)(harm[m] - fix[m]);
		if (net / (double)cnt[m] > worst_plain)
			worst_plain = net / (double)cnt[m];
		if (s->z > 0)
			net += s->z * sqrt((double)(s->harm_only ? harm[m] : harm[m] + fix[m]));
		l = net / (double)cnt[m];
		if (l > worst)
			worst = l;
	}
	*worst_loss = worst > -1e9 ? worst : 0;
	*saved = full_cost > 0 ? 1.0 - cost / full_cost : 0;
	if (plain_out != NULL)
		*plain_out = worst_plain > -1e9 ? worst_plain : 0;
	if (total_out != NULL)
		*total_out = f->nprog > 0 ? (double)net_all / (double)f->nprog : 0;
}

double
evalsim_pick_classes(const struct evalsim_set *s, double max_loss, int only_rule,
    bool ordered, size_t *rule_out, double *easy_out, double *hard_out, uint64_t *u_out,
    double *loss_out)
{
	static bool feas[EVALSIM_NTAUS][EVALSIM_NTAUS];
	struct evalsim_firsts f;
	double best_saved = -1e9;
	size_t r, ui, i, j;

	if (evalsim_firsts_build(s, &f) != 0)
		return -1e9;
	*rule_out = 0;
	*easy_out = *hard_out = 1.5;
	*loss_out = 0;
	for (r = 0; r < EVALSIM_NDIFF; r++) {
		if (only_rule > 0 && (size_t)only_rule != r + 1)
			continue;
		for (ui = 0; ui < EVALSIM_NUS; ui++)
			for (i = 0; i < EVALSIM_NTAUS; i++)
				for (j = 0; j < EVALSIM_NTAUS; j++) {
					double loss, saved;
					/* feasible only if every pair at least as high is */
					feas[i][j] = (i == 0 || feas[i - 1][j]) &&
					    (j == 0 || feas[i][j - 1]);
					if (!feas[i][j])
						continue;
					evalsim_firsts_score(s, &f, r, i, j, ui, &loss, &saved,
					    NULL, NULL);
					feas[i][j] = loss <= max_loss + 1e-12;
					if (feas[i][j] && saved > best_saved &&
					    (!ordered || j <= i)) {
						best_saved = saved;
						*rule_out = r;
						*easy_out = evalsim_taus[i];
						*hard_out = evalsim_taus[j];
						*u_out = evalsim_us[ui];
						*loss_out = loss;
					}
				}
	}
	evalsim_firsts_free(&f);
	return best_saved;
}

int
evalsim_frontier(const struct evalsim_set *s, size_t rule, uint64_t u,
    const double *budgets, size_t nb, double *saved1, double *saved2)
{
	struct evalsim_firsts f;
	size_t ui, i, j, b;
	int rc;

	for (ui = 0; ui < EVALSIM_NUS && evalsim_us[ui] != u; ui++)
		;
	if (ui == EVALSIM_NUS || rule >= EVALSIM_NDIFF)
		return -EINVAL;
	rc = evalsim_firsts_build(s, &f);
	if (rc != 0)
		return rc;
	for (b = 0; b < nb; b++)
		saved1[b] = saved2[b] = -1;
	for (i = 0; i < EVALSIM_NTAUS; i++)
		for (j = 0; j < EVALSIM_NTAUS; j++) {
			double wl, saved, total;
			evalsim_firsts_score(s, &f, rule, i, j, ui, &wl, &saved, NULL, &total);
			for (b = 0; b < nb; b++) {
				if (total > budgets[b] + 1e-12)
					continue;
				if (saved > saved2[b])
					saved2[b] = saved;
				if (i == j && saved > saved1[b])
					saved1[b] = saved;
			}
		}
	evalsim_firsts_free(&f);
	return 0;
}

/* Probe spacing candidates: (probe_stride, max_step_tokens). */
static const struct {
	double stride;
	uint32_t max_step;
} evalsim_spacings[] = {
	{ 0.2, 512 }, { 0.3, 512 }, { 0.2, 1024 }, { 0.3, 1024 },
};

#define EVALSIM_MAX_FOLDS 20

/* Rounds weights as a policy file writes them. */
static void
evalsim_round_w(double *w, size_t n, bool sc)
{
	struct sched_policy q;

	sched_policy_default(&q);
	if (sc)
		memcpy(q.sc_w, w, n * sizeof *w);
	else
		memcpy(q.cot_w, w, n * sizeof *w);
	policy_round(&q);
	memcpy(w, sc ? q.sc_w : q.cot_w, n * sizeof *w);
}

/* Scores s's trajectories with the weights evalsim_fit_folds() fitted: each fold's with its
 * own (out-of-fold) when the set has folds, all with wall otherwise. */
static void
evalsim_reweight_folds(struct evalsim_set *s, enum sched_algo algo,
    double wf[][SCHED_COT_NFEAT], const double *wall)
{
	unsigned f;

	if (s->folds < 2) {
		evalsim_set_reweight(s, algo, wall, s->folds);
		return;
	}
	for (f = 0; f < s->folds; f++)
		evalsim_set_reweight(s, algo, wf[f], f);
}

/*
 * Fits per-fold weights (fold f: rows outside f) and the all-data weights of one model from
 * a recorded set, and leaves the set's certaindexes out-of-fold (each fold scored by its own
 * weights) when folds >= 2, in-sample (all-data weights) otherwise.
 */
static int
evalsim_fit_folds(struct evalsim_set *s, enum sched_algo algo, double lambda,
    double wf[][SCHED_COT_NFEAT], double *wall)
{
	size_t nfeat = algo == SCHED_ALGO_COT ? CERTAINTY_COT_NFEAT : CERTAINTY_SC_NFEAT;
	unsigned f;
	int rc;

	rc = evalsim_fit_set(s, s->folds, nfeat, lambda, wall);
	if (rc != 0)
		return rc;
	evalsim_round_w(wall, nfeat, algo != SCHED_ALGO_COT);
	for (f = 0; s->folds >= 2 && f < s->folds; f++) {
		rc = evalsim_fit_set(s, f, nfeat, lambda, wf[f]);
		if (rc == -EINVAL)  /* every row in this fold: fall back to all data */
			memcpy(wf[f], wall, nfeat * sizeof *wall), rc = 0;
		if (rc != 0)
			return rc;
		evalsim_round_w(wf[f], nfeat, algo != SCHED_ALGO_COT);
	}
	evalsim_reweight_folds(s, algo, wf, wall);
	return 0;
}

/* One cot fit and pick (evalsim_calibrate, per spacing). */
struct evalsim_cot_pick {
	double saved, tau, slope, ctau[3];
	uint64_t u;
	size_t rule;
};

/* Chi-squared with 3 degrees of freedom at p = 0.001: the likelihood-ratio statistic the
 * token statistics (3 features) must exceed to be kept. */
#define EVALSIM_STATS_CHI2 16.27

/* Fits the cot weights on s (per fold and all data, leaving s scored out-of-fold) and picks
 * the threshold, bound, and (cal) slope or difficulty classes; s->slope is the starting
 * slope on entry and the picked one on return. */
static int
evalsim_cot_fit_pick(struct evalsim_set *s, const struct evalsim_calib *cal, double target,
    double wf[][SCHED_COT_NFEAT], double *w, struct evalsim_cot_pick *pk)
{
	double loss;
	int rc;

	memset(pk, 0, sizeof *pk);
	rc = evalsim_fit_folds(s, SCHED_ALGO_COT, cal->lambda, wf, w);
	if (rc != 0)
		return rc;
	if (cal->cot_slope)
		pk->saved = evalsim_pick_slope(s, target, &pk->slope, &pk->tau, &pk->u, &loss);
	else
		pk->saved = evalsim_pick_threshold(s, target, true, &pk->tau, &pk->u, &loss);
	pk->slope = s->slope;
	pk->rule = EVALSIM_NDIFF;
	pk->ctau[0] = pk->ctau[1] = pk->ctau[2] = pk->tau;
	if (cal->difficulty && s->slope == 0) {
		size_t r;
		uint64_t cu = pk->u;
		double te, th, closs;
		double cs = evalsim_pick_classes(s, target, cal->difficulty_rule,
		    cal->difficulty_ordered, &r, &te, &th, &cu, &closs);
		if (cs > pk->saved + 1e-12) {
			pk->rule = r;
			pk->ctau[DIFFICULTY_EASY] = te;
			pk->ctau[DIFFICULTY_HARD] = th;
			pk->u = cu;
			pk->saved = cs;
		}
	}
	return 0;
}

/* Log-likelihood of s's chain rows under the weights that scored them: fold f's rows under
 * wf[f] when the set has folds (out-of-fold), all under w otherwise. */
static double
evalsim_rows_loglik(const struct evalsim_set *s, double wf[][SCHED_COT_NFEAT], const double *w)
{
	const struct evalsim_traj *t = &s->rows;
	double ll = 0;
	size_t r;

	for (r = 0; r < t->nrows; r++) {
		const double *wr = s->folds >= 2 && s->row_fold != NULL ? wf[s->row_fold[r]] : w;
		double pr = certainty_logistic(wr, t->x + r * t->nfeat, t->nfeat);
		if (pr < 1e-12)
			pr = 1e-12;
		if (pr > 1 - 1e-12)
			pr = 1 - 1e-12;
		ll += t->y[r] ? log(pr) : log(1 - pr);
	}
	return ll;
}

/* evalsim.h; the saving alone is no test: on traces whose statistics are noise the threshold
 * sweep still finds a point more saving by chance (1.2 pt on one model of the dev traces)
 * while the likelihood gets worse (docs/certainty.md "Token-probability features"). */
bool
evalsim_stats_gain(size_t nrows, size_t nprog, double ll1, double ll0, double saved1,
    double saved0)
{
	double deff = nprog > 0 ? (double)nrows / (double)nprog : 1;

	if (deff < 1)
		deff = 1;
	return 2 * (ll1 - ll0) / deff > EVALSIM_STATS_CHI2 && saved1 > saved0;
}

/* The token-statistics features of the chain rows (9 confidence, 14 min_prob, 15
 * chain_entropy). */
static const size_t evalsim_stat_feats[3] = { 9, 14, 15 };

/* When some chain row of s (the rows the fit reads) has a token-statistics feature, moves
 * those columns to a new array in *stash (3 doubles per row), zeroes them in s and returns 1
 * (a fit then gives them weight 0, so the trajectories' features need no change); 0 when none
 * has one (nothing changed, *stash NULL); -ENOMEM. */
static int
evalsim_set_stats(struct evalsim_set *s, double **stash)
{
	struct evalsim_traj *t = &s->rows;
	size_t r, k;
	bool any = false;

	*stash = NULL;
	if (t->nfeat != CERTAINTY_COT_NFEAT)
		return 0;
	for (r = 0; r < t->nrows && !any; r++)
		for (k = 0; k < 3; k++)
			any |= t->x[r * t->nfeat + evalsim_stat_feats[k]] != 0;
	if (!any)
		return 0;
	*stash = malloc(t->nrows * 3 * sizeof **stash);
	if (*stash == NULL)
		return -ENOMEM;
	for (r = 0; r < t->nrows; r++)
		for (k = 0; k < 3; k++) {
			double *v = &t->x[r * t->nfeat + evalsim_stat_feats[k]];
			(*stash)[r * 3 + k] = *v;
			*v = 0;
		}
	return 1;
}

/* Puts back the columns evalsim_set_stats() moved to stash. */
static void
evalsim_set_stats_restore(struct evalsim_set *s, const double *stash)
{
	struct evalsim_traj *t = &s->rows;
	size_t r, k;

	for (r = 0; r < t->nrows; r++)
		for (k = 0; k < 3; k++)
			t->x[r * t->nfeat + evalsim_stat_feats[k]] = stash[r * 3 + k];
}

/* evalsim_calibrate without the level: the fit and its early returns. */
static int
evalsim_calibrate_fit(const struct traces *tr, struct evalsim_calib *cal,
    struct sched_policy *p)
{
	struct sched_policy q, qsc, best = *p;
	struct evalsim_set s;
	double best_saved = -1e9, tau, loss, saved, plain, target;
	double wf[EVALSIM_MAX_FOLDS][SCHED_COT_NFEAT], best_wf[EVALSIM_MAX_FOLDS][SCHED_COT_NFEAT];
	double w[SCHED_COT_NFEAT], ws[SCHED_COT_NFEAT], ctau[3], tv = p->sc_vote_threshold;
	double *stash = NULL;
	struct evalsim_cot_pick pk;
	double ll1;
	bool stats_kept;
	uint64_t u;
	unsigned folds, f;
	size_t si, i, rule;
	int rc;

	if (cal->lambda <= 0)
		cal->lambda = 1.0;
	if (cal->margin <= 0 || cal->margin > 1)
		cal->margin = 1.0;
	if (cal->folds == 0)
		cal->folds = 5;
	if (cal->folds > EVALSIM_MAX_FOLDS)
		cal->folds = EVALSIM_MAX_FOLDS;
	if (cal->z < 0)
		cal->z = 0;
	folds = cal->folds;
	target = cal->max_loss * cal->margin;
	if (cal->sc_n == 0)
		cal->sc_n = 3;
	cal->cot_classes = false;
	cal->cot_stats = false;
	cal->cot_stats_seen = false;
	memset(best_wf, 0, sizeof best_wf);
	/* cot: for each probe spacing, record once (the chain features and steps do not depend
	 * on the weights), fit per fold, sweep the out-of-fold trajectories. */
	for (si = 0; si < sizeof evalsim_spacings / sizeof evalsim_spacings[0]; si++) {
		q = *p;
		q.probe_stride = evalsim_spacings[si].stride;
		q.max_step_tokens = evalsim_spacings[si].max_step;
		rc = evalsim_record_filtered(tr, &q, SCHED_ALGO_COT, 1, cal->split,
		    cal->cot_label, folds, cal->filter, &s);
		if (rc != 0)
			return rc;
		memset(wf, 0, sizeof wf);
		s.harm_only = cal->harm_only;
		s.z = cal->z;
		s.slope = p->cot_threshold_slope;
		rc = evalsim_cot_fit_pick(&s, cal, target, wf, w, &pk);
		ll1 = rc == 0 ? evalsim_rows_loglik(&s, wf, w) : 0;
		if (rc == 0)
			rc = evalsim_set_stats(&s, &stash);
		/* Token statistics (history of llm workers) are kept only where they make the
		 * out-of-fold pick save more than without them: a feature that carries nothing
		 * still jitters the certaindex, and stopping at its first crossing turns that
		 * jitter into early stops (docs/certainty.md "Token-probability features"). */
		if (rc > 0) {
			double wf0[EVALSIM_MAX_FOLDS][SCHED_COT_NFEAT], w0[SCHED_COT_NFEAT];
			struct evalsim_cot_pick pk0;

			cal->cot_stats_seen = true;
			memset(wf0, 0, sizeof wf0);
			s.slope = p->cot_threshold_slope;
			rc = evalsim_cot_fit_pick(&s, cal, target, wf0, w0, &pk0);
			if (rc == 0 && !evalsim_stats_gain(s.rows.nrows, s.nprog, ll1, evalsim_rows_loglik(&s, wf0, w0),
			    pk.saved, pk0.saved)) {
				memcpy(wf, wf0, sizeof wf);
				memcpy(w, w0, sizeof w);
				pk = pk0;
			} else if (rc == 0) {
				/* back to the fit with them: its weights are still in wf, w */
				evalsim_set_stats_restore(&s, stash);
				evalsim_reweight_folds(&s, SCHED_ALGO_COT, wf, w);
				s.slope = pk.slope;
			}
			free(stash);
			stash = NULL;
		}
		if (rc != 0) {
			evalsim_set_free(&s);
			return rc;
		}
		stats_kept = w[9] != 0 || w[14] != 0 || w[15] != 0;
		saved = pk.saved;
		tau = pk.tau;
		u = pk.u;
		rule = pk.rule;
		memcpy(ctau, pk.ctau, sizeof ctau);
		if (saved > best_saved) {
			evalsim_score_cls(&s, rule, ctau, u, &loss, &saved, &plain);
			best_saved = saved;
			best = q;
			for (i = 0; i < CERTAINTY_COT_NFEAT; i++)
				best.cot_w[i] = w[i];
			best.cot_threshold = tau;
			best.cot_threshold_slope = s.slope;
			best.unpromising_tokens = u;
			/* classes off (equal thresholds) unless they were chosen */
			best.difficulty_tokens = rule < EVALSIM_NDIFF ?
			    evalsim_diff_rules[rule].tokens : 0;
			if (rule < EVALSIM_NDIFF)
				best.difficulty_changes = evalsim_diff_rules[rule].changes;
			best.cot_threshold_easy = ctau[DIFFICULTY_EASY];
			best.cot_threshold_hard = ctau[DIFFICULTY_HARD];
			cal->cot_classes = rule < EVALSIM_NDIFF;
			cal->cot_stats = stats_kept;
			cal->cot_bound = loss;
			cal->cot_loss = plain;
			cal->cot_saved = saved;
			cal->cot_programs = s.nprog;
			memcpy(best_wf, wf, sizeof wf);
			/* in-sample: the final weights on all the fitting data */
			evalsim_set_reweight(&s, SCHED_ALGO_COT, w, folds);
			s.z = 0;
			s.harm_only = false;
			evalsim_score_cls(&s, rule, ctau, u, &loss, &saved, &plain);
			cal->cot_in_loss = plain;
			cal->cot_in_saved = saved;
		}
		evalsim_set_free(&s);
	}
	/* sc: the program features depend on the chain weights, so each fold's sc rows and
	 * trajectories are recorded with that fold's chain weights; then the same sweep. */
	q = best;
	policy_round(&q);
	/* The sc model, threshold and bound are fitted on programs whose chains step together
	 * (a staged program's trajectory stops certain only on a decided vote, whatever the
	 * threshold; its bound is the one unstaged programs use: measured, docs/certainty.md
	 * "Staged sc"). */
	qsc = q;
	qsc.sc_staged = 0;
	if (folds >= 2) {
		struct evalsim_set oof;
		memset(&oof, 0, sizeof oof);
		for (f = 0; f < folds; f++) {
			struct sched_policy qf = qsc;
			memcpy(qf.cot_w, best_wf[f], sizeof qf.cot_w);
			rc = evalsim_record_filtered(tr, &qf, SCHED_ALGO_SC, cal->sc_n,
			    cal->split, cal->sc_label, folds, cal->filter, &s);
			if (rc == -EINVAL && f == 0) {
				*p = best;
				policy_round(p);
				return 0;   /* no program with enough samples: sc keeps its values */
			}
			if (rc != 0)
				goto sc_fail;
			rc = evalsim_fit_set(&s, f, CERTAINTY_SC_NFEAT, cal->lambda, ws);
			if (rc == -EINVAL)
				rc = evalsim_fit_set(&s, folds, CERTAINTY_SC_NFEAT, cal->lambda, ws);
			if (rc != 0) {
				evalsim_set_free(&s);
				goto sc_fail;
			}
			evalsim_round_w(ws, CERTAINTY_SC_NFEAT, true);
			evalsim_set_reweight(&s, SCHED_ALGO_SC, ws, f);
			/* keep the fold's programs (out-of-fold scored) in oof */
			if (f == 0) {
				oof = s;
				memset(&s, 0, sizeof s);
				/* keep only fold 0 programs */
				for (i = 0; i < oof.nprog; i++)
					if (oof.fold[i] != 0)
						evalsim_traj_free(&oof.traj[i]);
			} else {
				for (i = 0; i < s.nprog && i < oof.nprog; i++)
					if (s.fold[i] == f) {
						evalsim_traj_free(&oof.traj[i]);
						oof.traj[i] = s.traj[i];
						memset(&s.traj[i], 0, sizeof s.traj[i]);
					}
				evalsim_set_free(&s);
			}
		}
		oof.harm_only = cal->harm_only;
		oof.z = cal->z;
		u = 0;
		if (cal->sc_vote)
			evalsim_pick_vote(&oof, target, &tv, &tau, &u, &loss);
		else
			evalsim_pick_threshold(&oof, target, true, &tau, &u, &loss);
		evalsim_score_ex(&oof, tau, u, &loss, &saved, &plain);
		cal->sc_bound = loss;
		cal->sc_loss = plain;
		cal->sc_saved = saved;
		cal->sc_programs = oof.nprog;
		evalsim_set_free(&oof);
		if (0) {
sc_fail:
			evalsim_set_free(&oof);
			return rc;
		}
	}
	/* The final sc weights: all the data, with the final chain weights. */
	rc = evalsim_record_filtered(tr, &qsc, SCHED_ALGO_SC, cal->sc_n, cal->split, cal->sc_label,
	    1, cal->filter, &s);
	if (rc == -EINVAL) {
		*p = best;
		policy_round(p);
		return 0;   /* no program with enough samples: sc keeps its values */
	}
	if (rc != 0)
		return rc;
	rc = evalsim_fit_set(&s, 1, CERTAINTY_SC_NFEAT, cal->lambda, ws);
	if (rc == -EINVAL) {
		evalsim_set_free(&s);
		*p = best;
		policy_round(p);
		return 0;   /* no sc rows: sc keeps its values */
	}
	if (rc != 0) {
		evalsim_set_free(&s);
		return rc;
	}
	evalsim_round_w(ws, CERTAINTY_SC_NFEAT, true);
	evalsim_set_reweight(&s, SCHED_ALGO_SC, ws, 1);
	if (folds < 2) {
		s.harm_only = cal->harm_only;
		s.z = cal->z;
		u = 0;
		if (cal->sc_vote)
			evalsim_pick_vote(&s, target, &tv, &tau, &u, &loss);
		else
			evalsim_pick_threshold(&s, target, true, &tau, &u, &loss);
		evalsim_score_ex(&s, tau, u, &loss, &saved, &plain);
		cal->sc_bound = loss;
		cal->sc_loss = plain;
		cal->sc_saved = saved;
		cal->sc_programs = s.nprog;
		s.z = 0;
		s.harm_only = false;
	}
	evalsim_set_vote(&s, tv);
	evalsim_score_ex(&s, tau, u, &loss, &saved, &plain);
	cal->sc_in_loss = plain;
	cal->sc_in_saved = saved;
	evalsim_set_free(&s);
	for (i = 0; i < CERTAINTY_SC_NFEAT; i++)
		q.sc_w[i] = ws[i];
	q.sc_threshold = tau;
	q.sc_unpromising_tokens = u;
	q.sc_vote_threshold = tv;
	policy_round(&q);
	*p = q;
	return 0;
}

int
evalsim_calibrate(const struct traces *tr, struct evalsim_calib *cal,
    struct sched_policy *p)
{
	double lv;
	int rc = evalsim_calibrate_fit(tr, cal, p);

	/* The level the rows were measured at (evalsim_model_policy), as certad's prior until it
	 * learns the serving model's: at 0 (0.5) the probability features of a model whose
	 * probabilities sit higher would read more confident than the weights ever saw. */
	if (rc == 0 && p->model_confidence == 0 && (lv = evalsim_traces_level(tr)) > 0) {
		p->model_confidence = lv;
		policy_round(p);
	}
	return rc;
}
