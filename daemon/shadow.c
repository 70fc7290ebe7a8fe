/* shadow.c — shadow runs after early stops and the risk controllers they feed. */
#include "daemon/shadow.h"
#include "daemon/core_impl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/commit.h"
#include "daemon/policies.h"
#include "daemon/program.h"
#include "lib/array.h"
#include "lib/error.h"
#include "lib/log.h"
#include "lib/strmap.h"
#include "scheduler/answer.h"
#include "scheduler/chainlen.h"
#include "scheduler/problevel.h"
#include "scheduler/riskctl.h"
#include "store/store.h"

/* One (model, algorithm) controller. */
struct shadow_ctl {
	char *model;
	enum sched_algo algo;
	struct riskctl_state st;
	uint64_t dropped;
};

/* One model's chain lengths (scheduler/chainlen.h) and probe-probability level
 * (scheduler/problevel.h). */
struct shadow_len {
	char *model;
	struct chainlen cl;
	struct problevel pl;
	uint32_t unsaved;      /* programs counted since the last write */
	uint64_t prior;        /* config policy.model_tokens (0: none) */
};

/* Counted programs between writes of a model's lengths (and at a clean exit): a crash loses
 * fewer than this many, which the median does not notice. */
#define SHADOW_LEN_SAVE_EVERY 16

/* The key prefix of the lengths' records in the riskctl DB (controllers: "cot/", "sc/"). */
#define SHADOW_LEN_PREFIX "tokens/"

struct shadow {
	struct shadow_ctl *ctl;
	size_t n, cap;
	struct shadow_len *len;
	size_t nlen, lencap;
};

/* The base policy: the controllers' parameters and the thresholds they shift. */
static const struct sched_policy *
shadow_base(struct core *c)
{
	return policies_effective(c->policies, NULL, NULL);
}

static const char *
shadow_algo_name(enum sched_algo a)
{
	return a == SCHED_ALGO_SC ? "sc" : "cot";
}

/* The controller of (model, algo); created when create (NULL on ENOMEM or not found). */
static struct shadow_ctl *
shadow_ctl(struct shadow *s, const char *model, enum sched_algo algo, bool create)
{
	size_t i;

	if (model == NULL)
		model = "";
	for (i = 0; i < s->n; i++)
		if (s->ctl[i].algo == algo && strcmp(s->ctl[i].model, model) == 0)
			return &s->ctl[i];
	if (!create || ARRAY_GROW(s->ctl, s->cap, s->n + 1) != 0)
		return NULL;
	memset(&s->ctl[s->n], 0, sizeof s->ctl[s->n]);
	s->ctl[s->n].model = strdup(model);
	if (s->ctl[s->n].model == NULL)
		return NULL;
	s->ctl[s->n].algo = algo;
	return &s->ctl[s->n++];
}

/* The lengths of model; created when create (NULL on ENOMEM or not found). */
static struct shadow_len *
shadow_len(struct shadow *s, const char *model, bool create)
{
	size_t i;

	if (model == NULL)
		model = "";
	for (i = 0; i < s->nlen; i++)
		if (strcmp(s->len[i].model, model) == 0)
			return &s->len[i];
	if (!create || ARRAY_GROW(s->len, s->lencap, s->nlen + 1) != 0)
		return NULL;
	memset(&s->len[s->nlen], 0, sizeof s->len[s->nlen]);
	s->len[s->nlen].model = strdup(model);
	if (s->len[s->nlen].model == NULL)
		return NULL;
	return &s->len[s->nlen++];
}

/* store_scan callback: one RiskctlRecord (a controller, or a model's lengths). */
static int
shadow_load_one(const char *key, size_t keylen, const ProtobufCMessage *msg, void *arg)
{
	const Certa__V1__RiskctlRecord *r = (const Certa__V1__RiskctlRecord *)msg;
	const size_t plen = sizeof SHADOW_LEN_PREFIX - 1;
	struct shadow_ctl *x;

	if (keylen >= plen && memcmp(key, SHADOW_LEN_PREFIX, plen) == 0) {
		struct shadow_len *l = shadow_len(arg, r->model, true);
		if (l == NULL)
			return -ENOMEM;
		chainlen_restore(&l->cl, r->chain_tokens,
		    r->n_chain_tokens > UINT32_MAX ? UINT32_MAX : (uint32_t)r->n_chain_tokens,
		    r->chain_seen);
		problevel_restore(&l->pl, r->chain_prob,
		    r->n_chain_prob > UINT32_MAX ? UINT32_MAX : (uint32_t)r->n_chain_prob,
		    r->prob_seen);
		return 0;
	}
	x = shadow_ctl(arg, r->model, r->algo == SCHED_ALGO_SC ? SCHED_ALGO_SC : SCHED_ALGO_COT,
	    true);
	if (x == NULL)
		return -ENOMEM;
	x->st.shift = r->shift;
	x->st.shadows = r->shadows;
	x->st.changes = r->changes;
	x->st.win_n = r->window_shadows;
	x->st.win_changes = r->window_changes;
	x->st.saves = r->saves;
	x->st.backs = r->backs;
	x->st.tokens = r->tokens;
	x->dropped = r->dropped;
	/* Counterfactual counts; a record from before them has none (the grid starts empty). */
	if (r->grid_n > 0 && r->grid_n <= RISKCTL_GRID_MAX && r->n_grid_stopped == r->grid_n &&
	    r->n_grid_changed == r->grid_n) {
		x->st.gn = r->grid_n;
		x->st.gmin = r->grid_min;
		x->st.gstep = r->grid_step;
		x->st.gtot = r->grid_total;
		memcpy(x->st.gobs, r->grid_stopped, r->grid_n * sizeof *r->grid_stopped);
		memcpy(x->st.gchg, r->grid_changed, r->grid_n * sizeof *r->grid_changed);
	}
	x->st.samples = r->samples;
	x->st.excluded = r->excluded;
	/* The harm mode of the counts (0 in a record from before it: the change rate). */
	x->st.gharm = r->grid_harm;
	/* The gain mode and its counts (0 and none in a record from before them: gain off). */
	x->st.ggainm = r->grid_gain_mode;
	if (x->st.gn > 0 && r->n_grid_gain == x->st.gn)
		memcpy(x->st.ggain, r->grid_gain, x->st.gn * sizeof *r->grid_gain);
	else if (x->st.ggainm != 0)
		x->st.gn = 0;
	return 0;
}

static int
shadow_load_txn(struct store_txn *txn, void *arg)
{
	return store_scan(txn, STORE_DB_RISKCTL, NULL, &certa__v1__riskctl_record__descriptor,
	    shadow_load_one, arg);
}

int
shadow_prior_parse(const char *line, char *model, size_t size, uint64_t *tokens, char *err,
    size_t errlen)
{
	const char *sp = line + strcspn(line, " \t"), *num = sp + strspn(sp, " \t");
	size_t mlen = (size_t)(sp - line);
	char *end;
	unsigned long long v;

	if (mlen == 0 || *num == '\0' || num[strcspn(num, " \t")] != '\0') {
		snprintf(err, errlen, "'%.80s': want MODEL TOKENS", line);
		return CERTA_ECONFIG;
	}
	if (mlen >= 256) {
		snprintf(err, errlen, "'%.80s': model name longer than 255 bytes", line);
		return CERTA_ECONFIG;
	}
	errno = 0;
	v = strtoull(num, &end, 10);
	if (errno != 0 || *end != '\0' || *num == '-' || v < 1 || v > UINT32_MAX) {
		snprintf(err, errlen, "'%.80s': TOKENS must be a whole number in [1, %u]", line,
		    (unsigned)UINT32_MAX);
		return CERTA_ECONFIG;
	}
	if (model != NULL) {
		if (mlen >= size) {
			snprintf(err, errlen, "'%.80s': model name too long", line);
			return CERTA_ECONFIG;
		}
		memcpy(model, line, mlen);
		model[mlen] = '\0';
	}
	if (tokens != NULL)
		*tokens = v;
	return 0;
}

int
shadow_new(struct core *c, struct shadow **out)
{
	struct shadow *s = calloc(1, sizeof *s);
	size_t i;
	int rc;

	if (s == NULL)
		return -ENOMEM;
	rc = store_view(c->st, shadow_load_txn, s);
	if (rc != 0) {
		shadow_free(s);
		return rc;
	}
	for (i = 0; i < c->opt.nmodel_tokens; i++) {
		char model[256], err[160] = "out of memory";
		struct shadow_len *l;
		uint64_t v;
		rc = shadow_prior_parse(c->opt.model_tokens[i], model, sizeof model, &v, err,
		    sizeof err);
		if (rc == 0 && (l = shadow_len(s, model, true)) == NULL)
			rc = -ENOMEM;
		if (rc != 0) {
			log_err(LOG_SCHED, "policy.model_tokens: %s", err);
			shadow_free(s);
			return rc;
		}
		l->prior = v;
	}
	if (s->n > 0)
		log_info(LOG_SCHED, "riskctl: %zu controller(s) loaded", s->n);
	if (s->nlen > 0)
		log_info(LOG_SCHED, "model_tokens: chain lengths of %zu model(s) loaded", s->nlen);
	*out = s;
	return 0;
}

void
shadow_free(struct shadow *s)
{
	size_t i;

	if (s == NULL)
		return;
	for (i = 0; i < s->n; i++)
		free(s->ctl[i].model);
	free(s->ctl);
	for (i = 0; i < s->nlen; i++)
		free(s->len[i].model);
	free(s->len);
	free(s);
}

/* Queues one controller's record for the next group commit (commit_put_later: the loop does
 * not wait for the disk; memory holds the truth, the next write carries it). */
static int
shadow_save_put(struct core *c, const struct shadow_ctl *x)
{
	Certa__V1__RiskctlRecord r = CERTA__V1__RISKCTL_RECORD__INIT;
	char key[512];

	snprintf(key, sizeof key, "%s/%s", shadow_algo_name(x->algo), x->model);
	r.model = x->model;
	r.algo = (uint32_t)x->algo;
	r.shift = x->st.shift;
	r.shadows = x->st.shadows;
	r.changes = x->st.changes;
	r.window_shadows = x->st.win_n;
	r.window_changes = x->st.win_changes;
	r.saves = x->st.saves;
	r.backs = x->st.backs;
	r.tokens = x->st.tokens;
	r.dropped = x->dropped;
	r.grid_n = x->st.gn;
	r.grid_min = x->st.gmin;
	r.grid_step = x->st.gstep;
	r.grid_total = x->st.gtot;
	r.n_grid_stopped = x->st.gn;
	r.grid_stopped = (uint32_t *)x->st.gobs;
	r.n_grid_changed = x->st.gn;
	r.grid_changed = (uint32_t *)x->st.gchg;
	r.samples = x->st.samples;
	r.excluded = x->st.excluded;
	r.grid_harm = x->st.gharm;
	r.n_grid_gain = x->st.gn;
	r.grid_gain = (uint32_t *)x->st.ggain;
	r.grid_gain_mode = x->st.ggainm;
	r.updated_unix_ms = core_now_ms();
	return commit_put_later(c, STORE_DB_RISKCTL, key, &r.base);
}

/* Writes x; a failure is logged (memory keeps the state; the next write carries it). */
static void
shadow_save(struct core *c, const struct shadow_ctl *x)
{
	int rc = shadow_save_put(c, x);

	if (rc != 0)
		log_warn(LOG_SCHED, "riskctl %s/%s: cannot store the controller: %s",
		    shadow_algo_name(x->algo), x->model, certa_strerror(rc));
}

static int
shadow_len_save_put(struct core *c, const struct shadow_len *l, bool now)
{
	Certa__V1__RiskctlRecord r = CERTA__V1__RISKCTL_RECORD__INIT;
	uint32_t ent[CHAINLEN_CAP], prob[PROBLEVEL_CAP];
	char key[512];

	snprintf(key, sizeof key, SHADOW_LEN_PREFIX "%s", l->model);
	chainlen_entries(&l->cl, ent);
	problevel_entries(&l->pl, prob);
	r.model = l->model;
	r.n_chain_tokens = l->cl.ring.n;
	r.chain_tokens = ent;
	r.chain_seen = l->cl.ring.seen;
	r.n_chain_prob = l->pl.ring.n;
	r.chain_prob = prob;
	r.prob_seen = l->pl.ring.seen;
	r.updated_unix_ms = core_now_ms();
	return now ? commit_put_now(c, STORE_DB_RISKCTL, key, &r.base) :
	    commit_put_later(c, STORE_DB_RISKCTL, key, &r.base);
}

/* Writes a model's lengths, with the next group commit or (now) at once; a failure is logged
 * (memory keeps them; the next write carries them). */
static void
shadow_len_save(struct core *c, struct shadow_len *l, bool now)
{
	int rc = shadow_len_save_put(c, l, now);

	if (rc != 0) {
		log_warn(LOG_SCHED, "model_tokens %s: cannot store the chain lengths: %s", l->model,
		    certa_strerror(rc));
		return;
	}
	l->unsaved = 0;
}

void
shadow_flush(struct core *c)
{
	size_t i;

	if (c->shadow == NULL)
		return;
	for (i = 0; i < c->shadow->nlen; i++)
		if (c->shadow->len[i].unsaved > 0)
			shadow_len_save(c, &c->shadow->len[i], false);
}

/* The first known probe probability of chain ch (problevel_known), or -1. */
static double
shadow_first_prob(const struct chain *ch)
{
	size_t j;

	for (j = 0; j < ch->nprobes; j++)
		if (problevel_known(ch->probes[j].confidence))
			return ch->probes[j].confidence;
	return -1;
}

/* Whether a launched chain of p has a known probe probability. */
static bool
shadow_has_level(const struct program *p)
{
	uint32_t i;

	for (i = 0; i < program_launched(p); i++)
		if (shadow_first_prob(&p->chains[i]) > 0)
			return true;
	return false;
}

/* Counts p's chains in the model's probability level (scheduler/problevel.h: each chain's
 * first known probe probability).  Returns whether the learned level took over now. */
static bool
shadow_learn_level(const struct program *p, struct shadow_len *l, uint32_t min_samples)
{
	bool before = problevel_learned(&l->pl, min_samples), counted = false;
	uint32_t i;

	for (i = 0; i < program_launched(p); i++)
		counted |= problevel_add(&l->pl, shadow_first_prob(&p->chains[i]));
	return counted && !before && problevel_learned(&l->pl, min_samples);
}

/* p has ended for good (a program for its client, or a shadow): counts its chains' lengths
 * when its ending leaves them meaningful (chainlen_counts), and their first probe
 * probabilities whatever the ending (problevel.h). */
static void
shadow_learn(struct core *c, const struct program *p)
{
	const struct sched_policy *base = shadow_base(c);
	struct shadow_len *l;
	uint32_t i;
	bool lengths, before, took_over = false, level_over;

	if (c->shadow == NULL || p->state != PROGRAM_FINISHED)
		return;
	lengths = chainlen_counts(p->reason);
	if (!lengths && !shadow_has_level(p))
		return;
	if ((l = shadow_len(c->shadow, p->model, true)) == NULL)
		return;
	level_over = shadow_learn_level(p, l, base->model_confidence_min_samples);
	if (level_over)
		log_info(LOG_SCHED, "model_confidence %s: learned %.4f (median of %u chains)",
		    l->model, problevel_median(&l->pl), l->pl.ring.n);
	if (lengths) {
		before = chainlen_learned(&l->cl, base->model_tokens_min_samples);
		for (i = 0; i < program_launched(p); i++)   /* staged sc: chains never launched */
			chainlen_add(&l->cl, p->chains[i].tokens);
		took_over = !before && chainlen_learned(&l->cl, base->model_tokens_min_samples);
		if (took_over)
			log_info(LOG_SCHED, "model_tokens %s: learned %llu (median of %u chains)",
			    l->model, (unsigned long long)chainlen_median(&l->cl), l->cl.ring.n);
	}
	l->unsaved++;
	/* Written every few programs, and when a learned value takes over: that one at once,
	 * the rest with the next group commit. */
	if (l->unsaved >= SHADOW_LEN_SAVE_EVERY || took_over || level_over)
		shadow_len_save(c, l, took_over || level_over);
}

uint64_t
shadow_model_tokens(struct core *c, const char *model, const struct sched_policy *pol)
{
	const struct shadow_len *l;

	if (c->shadow == NULL || (l = shadow_len(c->shadow, model, false)) == NULL)
		return pol->model_tokens;
	/* The prior: the policy's model_tokens, else the configured one of the model. */
	return chainlen_tokens(&l->cl, pol->model_tokens_min_samples,
	    pol->model_tokens > 0 ? pol->model_tokens : l->prior);
}

double
shadow_model_confidence(struct core *c, const char *model, const struct sched_policy *pol)
{
	const struct shadow_len *l;

	if (c->shadow == NULL || (l = shadow_len(c->shadow, model, false)) == NULL)
		return pol->model_confidence;
	return problevel_value(&l->pl, pol->model_confidence_min_samples, pol->model_confidence);
}

const struct sched_policy *
shadow_model_policy(struct core *c, const char *model, const struct sched_policy *pol,
    struct sched_policy *buf)
{
	uint64_t mt = pol->unpromising_relative ? shadow_model_tokens(c, model, pol) :
	    pol->model_tokens;
	double mc = shadow_model_confidence(c, model, pol);

	if (mt == pol->model_tokens && mc == pol->model_confidence)
		return pol;
	*buf = *pol;
	buf->model_tokens = mt;
	buf->model_confidence = mc;
	return buf;
}

const struct sched_policy *
shadow_decision_policy(struct core *c, const struct program *p, const struct sched_policy *pol,
    struct sched_policy *buf)
{
	if (p->shadow_of != NULL) {
		/* A shadow runs to its natural end. */
		shadow_policy(pol, buf);
		return buf;
	}
	return shadow_model_policy(c, p->model, pol, buf);
}

/* The shift as applied: clamped into the current bounds. */
static double
shadow_applied(const struct riskctl_params *pr, double shift)
{
	if (shift > pr->max_shift)
		return pr->max_shift;
	if (shift < pr->min_shift)
		return pr->min_shift;
	return shift;
}

double
shadow_shift(struct core *c, const struct program *p)
{
	struct shadow_ctl *x;
	struct riskctl_params pr;

	if (c->shadow == NULL || p->shadow_of != NULL)
		return 0;
	x = shadow_ctl(c->shadow, p->model, p->algo, false);
	if (x == NULL)
		return 0;
	riskctl_params_from_policy(shadow_base(c), p->algo, &pr);
	return shadow_applied(&pr, x->st.shift);
}

void
shadow_policy(const struct sched_policy *base, struct sched_policy *out)
{
	*out = *base;
	out->cot_threshold = 2;
	out->sc_threshold = 2;
	out->unpromising_tokens = 0;
	out->sc_unpromising_tokens = 0;
}

/* The answer of chain ch at step k (its probe answer then; the final answer from its last
 * step on, once finished). */
static const char *
shadow_chain_answer(const struct chain *ch, size_t k)
{
	if (ch->finished && k + 1 >= ch->nprobes)
		return ch->final_answer != NULL ? ch->final_answer : "";
	if (k < ch->nprobes)
		return ch->probes[k].answer != NULL ? ch->probes[k].answer : "";
	return "";
}

/* The program's answer at step k: the chain's (cot), or the plurality of the chains' non-empty
 * answers merged with answer_equivalent, the first chain's first on a tie (sc). */
static const char *
shadow_step_answer(const struct program *p, size_t k)
{
	const char *best = "";
	uint32_t i, j, bestn = 0;

	for (i = 0; i < p->n; i++) {
		const char *a = shadow_chain_answer(&p->chains[i], k);
		uint32_t cnt = 0;
		if (a[0] == '\0')
			continue;
		for (j = 0; j < p->n; j++)
			cnt += answer_equivalent(a, shadow_chain_answer(&p->chains[j], k));
		if (cnt > bestn)
			best = a, bestn = cnt;
	}
	return best;
}

/*
 * p's decision points as the controller's counterfactual trajectory (riskctl.h): one point per
 * step, c = the program certaindex recorded after it (probe_point.certaindex: settled chains and
 * decided votes are 1), other = a chain at or past the unpromising bound, same = the step's
 * answer is equivalent to `end` (the natural end's answer; NULL: the last step's), valid = the
 * first chain's probe answer there is valid (not empty, not a placeholder; the harm proxy reads
 * it for cot), cont = the step's answer is not empty and equivalent to the previous step's,
 * tokens = the chains' decode tokens there (both for the gain proxy).  *e: the end as the
 * harm proxy sees it (riskctl_end): cut when p did not end naturally or a chain finished
 * without an answer (or did not finish), votes = the chains whose final answer is equivalent
 * to `end`.  Returns the number of points (0: no step, or ENOMEM;
 * *out then NULL).  The caller frees *out.
 */
static size_t
shadow_traj(const struct program *p, const struct sched_policy *base, const char *end,
    struct riskctl_point **out, struct riskctl_end *e)
{
	uint64_t u = p->algo == SCHED_ALGO_SC ? base->sc_unpromising_tokens :
	    base->unpromising_tokens;
	struct riskctl_point *pts;
	const char *prev = "";
	size_t n = 0, k;
	uint32_t i;

	*out = NULL;
	memset(e, 0, sizeof *e);
	for (i = 0; i < p->n; i++)
		if (p->chains[i].nprobes > n)
			n = p->chains[i].nprobes;
	if (n == 0 || (pts = calloc(n, sizeof *pts)) == NULL)
		return 0;
	if (end == NULL)
		end = shadow_step_answer(p, n - 1);
	for (k = 0; k < n; k++) {
		uint64_t most = 0;
		const char *sa = shadow_step_answer(p, k);
		pts[k].c = -1;
		for (i = 0; i < p->n; i++) {
			const struct chain *ch = &p->chains[i];
			uint64_t pos = k < ch->nprobes ? ch->probes[k].position : ch->tokens;
			if (k < ch->nprobes && pts[k].c < 0)
				pts[k].c = ch->probes[k].certaindex;
			if (pos > most)
				most = pos;
			pts[k].tokens += pos;
		}
		pts[k].other = u > 0 && sched_unpromising_tokens(base, most) >= u;
		pts[k].same = answer_equivalent(sa, end);
		pts[k].cont = k > 0 && sa[0] != '\0' && answer_equivalent(sa, prev);
		prev = sa;
		if (k < p->chains[0].nprobes) {
			const char *a = shadow_chain_answer(&p->chains[0], k);
			pts[k].valid = a[0] != '\0' && !answer_is_placeholder(a, p->problem);
		}
	}
	e->chains = p->n;
	e->cut = p->reason != SCHED_REASON_NATURAL_END;
	for (i = 0; i < p->n; i++) {
		const struct chain *ch = &p->chains[i];
		const char *fa = ch->final_answer != NULL ? ch->final_answer : "";
		if (!ch->finished || fa[0] == '\0')
			e->cut = true;
		else if (answer_equivalent(fa, end))
			e->votes++;
	}
	*out = pts;
	return n;
}

/* The base policy's unshifted stop-certain threshold for algo. */
static double
shadow_tau0(const struct sched_policy *base, enum sched_algo algo)
{
	return algo == SCHED_ALGO_SC ? base->sc_threshold : base->cot_threshold;
}

/* The shadow part of shadow_spawn.  Returns true when a shadow started (its end counts the
 * chains' lengths, not p's). */
static bool
shadow_start(struct core *c, struct program *p)
{
	struct sched_policy mbuf;
	const struct sched_policy *base = shadow_base(c);
	struct riskctl_params pr;
	struct riskctl_point *pts = NULL;
	struct riskctl_end e;
	struct riskctl_state fresh = { .shift = 0 };
	struct program *s;
	struct shadow_ctl *x;
	char id[256];
	size_t n;
	uint32_t i;
	bool open = false;
	int rc;

	/* A staged sc program stops certain only on a decided vote: no threshold shift moves
	 * it, and it is not counted (the controller's sc counts are the unstaged programs'). */
	if (c->shadow == NULL || p->shadow_of != NULL || p->state != PROGRAM_FINISHED ||
	    c->draining || p->launched > 0)
		return false;
	for (i = 0; i < p->n; i++)
		open = open || !p->chains[i].finished;
	/* Shadowed: early stops the shift decides or could have (certain, unpromising); a
	 * natural end is a free sample below. */
	if (open && p->reason != SCHED_REASON_CERTAIN && p->reason != SCHED_REASON_UNPROMISING)
		return false;
	riskctl_params_from_policy(base, p->algo, &pr);
	if (!(pr.shadow_frac > 0))
		return false;
	/* The share sampled follows the controller (riskctl_sample_frac: boosted while the
	 * setting is undecided; a controller not made yet is at the start); the choice depends on
	 * the state, never on p's own steps. */
	x = shadow_ctl(c->shadow, p->model, p->algo, false);
	if (!riskctl_pick(p->id, riskctl_sample_frac(&pr, x != NULL ? &x->st : &fresh)))
		return false;
	x = shadow_ctl(c->shadow, p->model, p->algo, true);
	if (x == NULL)
		return false;
	/* The trajectory counts the unpromising bound in the model's units, as decided. */
	n = shadow_traj(p, shadow_model_policy(c, p->model, base, &mbuf),
	    open ? NULL : p->answer, &pts, &e);
	if (!open) {
		/* Ran to its end: the whole trajectory is known, no shadow needed. */
		if (n > 0) {
			(void)riskctl_clamp(&pr, &x->st);
			(void)riskctl_observe_cf(&pr, &x->st, shadow_tau0(base, p->algo), pts, n,
			    &e, false, false, 0);
			shadow_save(c, x);
		}
		free(pts);
		return false;
	}
	if (n > 0 && !riskctl_cf_movable(&pr, shadow_tau0(base, p->algo), pts, n, false)) {
		/* Every grid shift stops it here alike: a shadow would tell nothing. */
		free(pts);
		(void)riskctl_clamp(&pr, &x->st);
		(void)riskctl_observe_excluded(&pr, &x->st);
		shadow_save(c, x);
		return false;
	}
	free(pts);
	snprintf(id, sizeof id, "%s.shadow", p->id);
	s = program_new(id, SHADOW_TENANT, p->problem, p->algo, p->n, p->budget);
	if (s == NULL)
		goto fail;
	if (program_set_str(&s->model, p->model) != 0 ||
	    program_set_str(&s->idempotency_key, "") != 0 ||
	    program_set_str(&s->shadow_of, p->id) != 0 ||
	    program_set_str(&s->shadow_answer, p->answer != NULL ? p->answer : "") != 0 ||
	    program_set_str(&s->answer, p->answer != NULL ? p->answer : "") != 0 ||
	    program_copy_chains(s, p) != 0)
		goto fail_s;
	s->priority = CERTA__V1__PRIORITY__PRIORITY_LOW;
	s->moe_top_p = p->moe_top_p;
	s->seed = p->seed;
	s->temperature = p->temperature;
	s->top_p = p->top_p;
	s->steps = p->steps;
	s->shadow_base_tokens = program_tokens(p) + program_probe_tokens(p);
	s->created_ms = core_now_ms();
	s->ready_since_ms = s->created_ms;
	s->seq = c->next_seq++;
	if (strmap_put(c->live, s->id, s, NULL) != 0 || core_order_add(c, s) != 0 ||
	    (rc = commit_accept(c, s)) != 0) {
		log_warn(LOG_SCHED, "program %s: shadow not started: out of memory", p->id);
		core_forget(c, s);
		goto fail;
	}
	log_info(LOG_SCHED, "program %s: shadow %s started (%s/%s, answer \"%s\")", p->id, s->id,
	    shadow_algo_name(p->algo), p->model, p->answer != NULL ? p->answer : "");
	core_kick(c);
	return true;
fail_s:
	program_free(s);
fail:
	x->dropped++;
	shadow_save(c, x);
	return false;
}

/* Whether the shadow of program id counts in the model's chain lengths: only when
 * riskctl.shadow_frac alone would have picked it (riskctl_pick is nested in its share), so
 * that the lengths see the same sample whatever riskctl.shadow_boost adds for the risk
 * counts.  The boosted shadows are the movable early stops, longer than the rest: counting
 * them all raised the learned median and loosened the unpromising bound (docs/certainty.md). */
static bool
shadow_counts_lengths(struct core *c, const char *id, int algo)
{
	struct riskctl_params pr;

	riskctl_params_from_policy(shadow_base(c), algo, &pr);
	return riskctl_pick(id, pr.shadow_frac);
}

void
shadow_spawn(struct core *c, struct program *p)
{
	if (p->shadow_of != NULL)
		return;
	/* A shadowed program's chains count at the shadow's end instead; one that only the
	 * boosted share shadowed (shadow_counts_lengths) counts as if it had not been. */
	if (!shadow_start(c, p) || !shadow_counts_lengths(c, p->id, p->algo))
		shadow_learn(c, p);
}

void
shadow_done(struct core *c, struct program *p)
{
	struct sched_policy mbuf;
	struct riskctl_params pr;
	struct shadow_ctl *x;
	struct riskctl_point *pts;
	struct riskctl_end e;
	enum riskctl_move mv;
	uint64_t used = program_tokens(p) + program_probe_tokens(p), tokens;
	size_t n;
	bool changed;

	if (c->shadow == NULL || p->shadow_of == NULL)
		return;
	/* Ran to its natural end (or the budget): the model's lengths count it, when the base
	 * share would have shadowed it. */
	if (shadow_counts_lengths(c, p->shadow_of, p->algo))
		shadow_learn(c, p);
	x = shadow_ctl(c->shadow, p->model, p->algo, true);
	if (x == NULL)
		return;
	if (p->state != PROGRAM_FINISHED) {
		x->dropped++;
		log_info(LOG_SCHED, "shadow %s ended %s: dropped", p->id,
		    program_state_name(p->state));
		shadow_save(c, x);
		return;
	}
	riskctl_params_from_policy(shadow_base(c), p->algo, &pr);
	(void)riskctl_clamp(&pr, &x->st);
	changed = !answer_equivalent(p->answer != NULL ? p->answer : "",
	    p->shadow_answer != NULL ? p->shadow_answer : "");
	tokens = used > p->shadow_base_tokens ? used - p->shadow_base_tokens : 0;
	/* The shadow's chains hold the program's own steps and the continuation: where every
	 * grid shift would have stopped.  Without a trajectory, the outcome counts at the
	 * current setting only. */
	n = shadow_traj(p, shadow_model_policy(c, p->model, shadow_base(c), &mbuf),
	    p->answer != NULL ? p->answer : "", &pts, &e);
	if (n > 0)
		mv = riskctl_observe_cf(&pr, &x->st, shadow_tau0(shadow_base(c), p->algo), pts, n,
		    &e, true, changed, tokens);
	else
		mv = riskctl_observe(&pr, &x->st, changed, tokens);
	free(pts);
	log_info(LOG_SCHED, "shadow %s of %s ended: answer \"%s\" vs stopped \"%s\" (%s), %llu "
	    "tokens; riskctl %s/%s: %u/%u changed in window, ucb %.4f, target %g, %s -> shift "
	    "%+.2f", p->id, p->shadow_of, p->answer != NULL ? p->answer : "", p->shadow_answer,
	    changed ? "changed" : "same", (unsigned long long)tokens, shadow_algo_name(p->algo),
	    x->model, x->st.win_changes, x->st.win_n, riskctl_ucb(&pr, &x->st), pr.target,
	    riskctl_move_name(mv), x->st.shift);
	shadow_save(c, x);
}

size_t
shadow_count(struct core *c)
{
	return c->shadow != NULL ? c->shadow->n : 0;
}

void
shadow_get(struct core *c, size_t i, struct shadow_info *out)
{
	const struct sched_policy *base = shadow_base(c);
	const struct shadow_ctl *x = &c->shadow->ctl[i];
	struct riskctl_params pr;
	size_t k;

	memset(out, 0, sizeof *out);
	riskctl_params_from_policy(base, x->algo, &pr);
	out->model = x->model;
	out->algo = x->algo;
	out->shift = shadow_applied(&pr, x->st.shift);
	out->threshold = riskctl_threshold(x->algo == SCHED_ALGO_SC ? base->sc_threshold :
	    base->cot_threshold, out->shift);
	out->ucb = riskctl_ucb(&pr, &x->st);
	out->target = pr.target;
	out->shadows = x->st.shadows;
	out->changes = x->st.changes;
	out->saves = x->st.saves;
	out->backs = x->st.backs;
	out->tokens = x->st.tokens;
	out->dropped = x->dropped;
	out->win_n = x->st.win_n;
	out->win_changes = x->st.win_changes;
	out->frozen = pr.frozen;
	out->samples = x->st.samples;
	out->excluded = x->st.excluded;
	if (x->st.gn == riskctl_grid_size(&pr) && x->st.gmin == pr.min_shift &&
	    x->st.gstep == pr.step && x->st.gharm == riskctl_harm_mode(&pr) &&
	    x->st.ggainm == riskctl_gain_mode(&pr) && x->st.gn > 0) {
		uint32_t g = riskctl_grid_index(&pr, out->shift);
		out->point_stopped = x->st.gobs[g];
		out->point_changed = riskctl_grid_changes(&x->st, g);
	}
	/* Running: stored (a shadow whose accepting write is still queued would not come back
	 * after a crash). */
	for (k = 0; k < c->norder; k++) {
		const struct program *p = c->order[k];
		if (p->shadow_of != NULL && !program_is_terminal(p) && !p->accept_pending &&
		    p->algo == x->algo && strcmp(p->model != NULL ? p->model : "", x->model) == 0)
			out->running++;
	}
}

size_t
shadow_model_count(struct core *c)
{
	return c->shadow != NULL ? c->shadow->nlen : 0;
}

void
shadow_model_get(struct core *c, size_t i, struct shadow_model_info *out)
{
	const struct sched_policy *base = shadow_base(c);
	const struct shadow_len *l = &c->shadow->len[i];

	memset(out, 0, sizeof *out);
	out->model = l->model;
	out->tokens = shadow_model_tokens(c, l->model, base);
	out->source = !base->unpromising_relative || out->tokens == 0 ? "absolute" :
	    chainlen_learned(&l->cl, base->model_tokens_min_samples) ? "learned" : "prior";
	out->median = chainlen_median(&l->cl);
	out->samples = l->cl.ring.n;
	out->min_samples = base->model_tokens_min_samples;
	out->seen = l->cl.ring.seen;
	out->confidence = shadow_model_confidence(c, l->model, base);
	if (out->confidence == 0)
		out->confidence = 0.5;   /* what 0 means (sched.h) */
	out->confidence_source = problevel_learned(&l->pl, base->model_confidence_min_samples) ?
	    "learned" : "prior";
	out->confidence_median = problevel_median(&l->pl);
	out->confidence_samples = l->pl.ring.n;
	out->confidence_min_samples = base->model_confidence_min_samples;
	out->confidence_seen = l->pl.ring.seen;
}
