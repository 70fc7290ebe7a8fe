/*
 * certa-eval — offline evaluation and calibration of the certainty policy on recorded traces.
 *
 *   certa-eval --traces DIR [--policy FILE] [--algo cot|sc] [--split all|train|test] [--json]
 *   certa-eval lomo --traces DIR [--algo cot|sc] [--json] [--difficulty] [--sc-vote]
 *              [--cot-slope] [--score-quantiles]  (leave-one-out; do_lomo; --difficulty:
 *              every fold without and with difficulty classes; --sc-vote: every fold's
 *              calibration sweeps sc.vote_threshold; --cot-slope: ... cot.threshold_slope;
 *              --score-quantiles: each leave-one-model-out fold also prints where its
 *              threshold lies in each model's own score distribution, lomo_quantiles;
 *              --staged: sc folds also with each sc.staged mode, the same calibration)
 *   certa-eval online --traces DIR [--algo cot|sc] [--start default|lomo]
 *              [--controller cf|window] [--passes 1] [--model-tokens learned|oracle]
 *              [--runs 5] [--lag 10] [--shadow-frac F] [--target T] [--long-window 500]
 *              [--reach-by 300] ...  (eval/online.h)
 *   certa-eval route --traces DIR [--route-policy FILE] ...  (expert routing; eval/routecmd.h)
 *   certa-eval calibrate --traces DIR [--max-loss 0.01] [--margin 1] [--harm-only]
 *              [--split train|test|all] [--lambda 1] [--folds 5] [--z 1] [--difficulty]
 *              [--sc-vote] [--cot-slope] --out FILE  (--difficulty: also try cot
 *              thresholds per difficulty class; --sc-vote: sweep sc.vote_threshold with
 *              sc.threshold; --cot-slope: sweep cot.threshold_slope with cot.threshold)
 *
 * Evaluation replays every (model, dataset, problem) program through the same sched_decide()
 * the daemon calls (eval/evalsim.h describes the semantics), next to the baselines: Dynasor-CoT
 * (k = 2, 3, 5, 8, 20, 30 agreeing probes) and the free </think> rule; for sc each chain runs
 * the rule and the program takes the majority of their answers.  The reference is the full run
 * (cot: first sample's final answer; sc n=3: majority of the three final answers).  Costs count
 * decode tokens plus every probe's out_tokens; the reference pays no probes.  It prints a table
 * per (model, dataset), per model and overall, the savings-vs-loss curve of the stop threshold
 * per model, and a JSON summary (--json: only the JSON).  Without --policy the built-in default
 * (sched_policy_default(), identical to policy/default.policy) is used.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/evalsim.h"
#include "eval/histexport.h"
#include "eval/online.h"
#include "eval/routecmd.h"
#include "lib/log.h"
#include "lib/error.h"
#include "lib/fileio.h"
#include "lib/traces.h"
#include "scheduler/policy.h"
#include "scheduler/answer.h"
#include "scheduler/difficulty.h"
#include "scheduler/riskctl.h"
#include "scheduler/sched.h"
#include "store/store.h"

/* Reads a policy file on top of *p (scheduler/policy.h format). */
static int
eval_policy_load(const char *path, struct sched_policy *p, char *err, size_t errlen)
{
	char *text;
	size_t len;
	int rc;

	rc = fileio_read(path, POLICY_TEXT_MAX, &text, &len, err, errlen);
	if (rc != 0)
		return rc;
	rc = policy_parse(text, len, path, p, err, errlen);
	free(text);
	return rc;
}

/* Writes p to path (policy_format) after `comment` lines, each prefixed with "# ". */
static int
eval_policy_save(const char *path, const struct sched_policy *p, const char *comment)
{
	size_t need = policy_format(p, NULL, 0), clen = strlen(comment), n = 0;
	const char *c = comment;
	char *buf;
	int rc;

	/* Each comment line gains "# " and may gain a '\n'. */
	buf = malloc(need + 1 + 3 * (clen + 1));
	if (buf == NULL)
		return -ENOMEM;
	while (*c != '\0') {
		const char *e = strchr(c, '\n');
		size_t l = e != NULL ? (size_t)(e - c) : strlen(c);
		n += (size_t)sprintf(buf + n, "# %.*s\n", (int)l, c);
		c += l + (e != NULL);
	}
	policy_format(p, buf + n, need + 1);
	rc = fileio_write(path, buf, n + need);
	free(buf);
	return rc;
}

#define NK 6
static const unsigned dynasor_k[NK] = { 2, 3, 5, 8, 20, 30 };
#define NRULES (2 + NK)          /* policy, dynasor k..., think */
#define RULE_POLICY 0
#define RULE_THINK (1 + NK)
#define MAX_GROUPS 256

static const double curve_taus[] = {
	1.5, 0.999, 0.995, 0.99, 0.98, 0.97, 0.95, 0.93, 0.9, 0.85, 0.8, 0.7, 0.6, 0.5,
};
#define NTAUS (sizeof curve_taus / sizeof curve_taus[0])

struct tally {
	size_t programs, full_ok, ok[NRULES], false_stop[NRULES], early[NRULES], lowconf;
	double full_tokens, tokens[NRULES], probe_tokens[NRULES];
	/* the policy's latency proxy (evalsim_outcome.path_tokens) against the full run's;
	 * programs slower than the full run; staged sc programs that launched */
	double full_path, path;
	size_t slower, launched;
};

struct group {
	const char *model, *dataset;   /* dataset NULL: all datasets; model NULL: all */
	struct tally t;
};

struct eval {
	struct group g[MAX_GROUPS];
	size_t ng;
};

static struct tally *
group_get(struct eval *e, const char *model, const char *dataset)
{
	size_t i;

	for (i = 0; i < e->ng; i++) {
		const struct group *g = &e->g[i];
		if (((g->model == NULL && model == NULL) ||
		    (g->model != NULL && model != NULL && strcmp(g->model, model) == 0)) &&
		    ((g->dataset == NULL && dataset == NULL) ||
		    (g->dataset != NULL && dataset != NULL && strcmp(g->dataset, dataset) == 0)))
			return &e->g[i].t;
	}
	if (e->ng == MAX_GROUPS)
		return NULL;
	e->g[e->ng].model = model;
	e->g[e->ng].dataset = dataset;
	memset(&e->g[e->ng].t, 0, sizeof e->g[e->ng].t);
	return &e->g[e->ng++].t;
}

static void
tally_add(struct tally *t, const struct evalsim_full *full, const struct evalsim_outcome *o)
{
	size_t r;

	if (t == NULL)
		return;
	t->programs++;
	t->full_ok += full->correct;
	t->full_tokens += (double)full->tokens;
	for (r = 0; r < NRULES; r++) {
		t->ok[r] += o[r].correct;
		t->tokens[r] += (double)(o[r].decode_tokens + o[r].probe_tokens);
		t->probe_tokens[r] += (double)o[r].probe_tokens;
		t->false_stop[r] += full->correct && !o[r].correct &&
		    o[r].reason != SCHED_REASON_NATURAL_END;
		t->early[r] += o[r].reason != SCHED_REASON_NATURAL_END;
	}
	t->lowconf += o[RULE_POLICY].low_confidence;
	t->full_path += (double)full->path;
	t->path += (double)o[RULE_POLICY].path_tokens;
	t->slower += o[RULE_POLICY].path_tokens > full->path;
	t->launched += o[RULE_POLICY].launched;
}

static const char *
rule_name(size_t r, char *buf, size_t len)
{
	if (r == RULE_POLICY)
		snprintf(buf, len, "policy");
	else if (r == RULE_THINK)
		snprintf(buf, len, "think_end");
	else
		snprintf(buf, len, "dynasor_k%u", dynasor_k[r - 1]);
	return buf;
}

static double
pct(double a, double b)
{
	return b > 0 ? 100.0 * a / b : 0;
}

static void
json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; s != NULL && *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

/* Runs one algorithm over the programs of the split that filter f (NULL: none) selects;
 * fills e. */
static int
evaluate(const struct traces *tr, const struct sched_policy *p, enum sched_algo algo,
    enum evalsim_split split, const struct evalsim_filter *f, struct eval *e)
{
	struct traces_program views[EVALSIM_FILTER_MAX_SEEDS];
	size_t n = algo == SCHED_ALGO_SC ? 3 : 1, i, v, nv, r;
	int rc;

	e->ng = 0;
	for (i = 0, v = nv = 0; v < nv || i < traces_program_count(tr); v++) {
		const struct traces_program *prog;
		struct evalsim_outcome o[NRULES];
		struct evalsim_full full;

		while (v >= nv && i < traces_program_count(tr)) {
			nv = evalsim_filter_views(f, traces_program_at(tr, i++), split, n, views,
			    EVALSIM_FILTER_MAX_SEEDS);
			v = 0;
		}
		if (v >= nv)
			break;
		prog = &views[v];
		evalsim_reference(prog, n, &full);
		{
			struct sched_policy pm;
			evalsim_model_policy(tr, p, prog->model, &pm);
			rc = evalsim_run(&pm, prog, algo, n, &o[RULE_POLICY], NULL);
		}
		if (rc != 0)
			return rc;
		for (r = 0; r < NK; r++)
			evalsim_chain_rule(prog, n, 0, dynasor_k[r], p->step_tokens, &o[1 + r]);
		evalsim_chain_rule(prog, n, 1, 0, p->step_tokens, &o[RULE_THINK]);
		tally_add(group_get(e, prog->model, prog->dataset), &full, o);
		tally_add(group_get(e, prog->model, NULL), &full, o);
		tally_add(group_get(e, NULL, NULL), &full, o);
	}
	return 0;
}

/* Groups in reading order: by model (overall last), each model's datasets before its total. */
static int
group_cmp(const void *a, const void *b)
{
	const struct group *x = a, *y = b;
	int c;

	if ((x->model == NULL) != (y->model == NULL))
		return x->model == NULL ? 1 : -1;
	if (x->model != NULL && (c = strcmp(x->model, y->model)) != 0)
		return c;
	if ((x->dataset == NULL) != (y->dataset == NULL))
		return x->dataset == NULL ? 1 : -1;
	return x->dataset != NULL ? strcmp(x->dataset, y->dataset) : 0;
}

static void
print_table(struct eval *e, const char *algo, const char *split, const char *pname)
{
	size_t i, r;
	char rn[32];

	qsort(e->g, e->ng, sizeof e->g[0], group_cmp);
	printf("\n== certa-eval: algo %s, split %s, policy %s ==\n", algo, split, pname);
	printf("%-42s %-8s %5s %8s %8s %8s %7s %7s %7s\n", "model", "dataset", "progs",
	    "acc_full", "acc_pol", "loss_pt", "saved%", "fstop%", "early%");
	for (i = 0; i < e->ng; i++) {
		const struct group *g = &e->g[i];
		const struct tally *t = &g->t;
		printf("%-42.42s %-8.8s %5zu %8.2f %8.2f %8.2f %7.1f %7.2f %7.1f\n",
		    g->model != NULL ? g->model : "ALL", g->dataset != NULL ? g->dataset : "all",
		    t->programs, pct((double)t->full_ok, (double)t->programs),
		    pct((double)t->ok[0], (double)t->programs),
		    pct((double)t->full_ok - (double)t->ok[0], (double)t->programs),
		    100.0 - pct(t->tokens[0], t->full_tokens),
		    pct((double)t->false_stop[0], (double)t->full_ok),
		    pct((double)t->early[0], (double)t->programs));
	}
	printf("\n-- rules per model (loss in accuracy points vs the full run; saved = 1 - "
	    "(decode+probe)/full) --\n");
	printf("%-42s %-12s %8s %8s %7s %7s %7s\n", "model", "rule", "acc", "loss_pt", "saved%",
	    "probe%", "fstop%");
	for (i = 0; i < e->ng; i++) {
		const struct group *g = &e->g[i];
		const struct tally *t = &g->t;
		if (g->dataset != NULL)
			continue;
		for (r = 0; r < NRULES; r++)
			printf("%-42.42s %-12s %8.2f %8.2f %7.1f %7.1f %7.2f\n",
			    g->model != NULL ? g->model : "ALL", rule_name(r, rn, sizeof rn),
			    pct((double)t->ok[r], (double)t->programs),
			    pct((double)t->full_ok - (double)t->ok[r], (double)t->programs),
			    100.0 - pct(t->tokens[r], t->full_tokens),
			    pct(t->probe_tokens[r], t->full_tokens),
			    pct((double)t->false_stop[r], (double)t->full_ok));
	}
	printf("\n-- the policy's latency proxy: decode tokens on the critical path (chains decode in "
	    "parallel; a staged sc program's late chains after its first ones), %% of the full "
	    "run's longest chain --\n");
	printf("%-42s %8s %8s %9s\n", "model", "path%", "slower%", "launched%");
	for (i = 0; i < e->ng; i++) {
		const struct group *g = &e->g[i];
		const struct tally *t = &g->t;
		if (g->dataset != NULL)
			continue;
		printf("%-42.42s %8.1f %8.2f %9.2f\n", g->model != NULL ? g->model : "ALL",
		    pct(t->path, t->full_path), pct((double)t->slower, (double)t->programs),
		    pct((double)t->launched, (double)t->programs));
	}
}

static void
print_json_eval(FILE *f, const struct eval *e)
{
	size_t i, r;
	char rn[32];

	fprintf(f, "\"groups\":[");
	for (i = 0; i < e->ng; i++) {
		const struct group *g = &e->g[i];
		const struct tally *t = &g->t;
		fprintf(f, "%s{\"model\":", i ? "," : "");
		json_str(f, g->model != NULL ? g->model : "all");
		fprintf(f, ",\"dataset\":");
		json_str(f, g->dataset != NULL ? g->dataset : "all");
		fprintf(f, ",\"programs\":%zu,\"acc_full\":%.4f,\"tokens_full\":%.0f,\"rules\":{",
		    t->programs, t->programs ? (double)t->full_ok / (double)t->programs : 0,
		    t->full_tokens);
		for (r = 0; r < NRULES; r++) {
			fprintf(f, "%s\"%s\":{\"acc\":%.4f,\"loss_pt\":%.3f,\"tokens\":%.0f,"
			    "\"probe_tokens\":%.0f,\"saved\":%.4f,\"false_stop_rate\":%.4f,"
			    "\"early_stops\":%zu}", r ? "," : "", rule_name(r, rn, sizeof rn),
			    t->programs ? (double)t->ok[r] / (double)t->programs : 0,
			    pct((double)t->full_ok - (double)t->ok[r], (double)t->programs),
			    t->tokens[r], t->probe_tokens[r],
			    t->full_tokens > 0 ? 1.0 - t->tokens[r] / t->full_tokens : 0,
			    t->full_ok ? (double)t->false_stop[r] / (double)t->full_ok : 0,
			    t->early[r]);
		}
		fprintf(f, "}}");
	}
	fprintf(f, "]");
}

/* The savings-vs-loss curve: the stop threshold swept over recorded trajectories (exactly the
 * decisions sched_decide would take with each threshold). */
/* Logit shifts of the class-threshold curve (the risk controller's form, riskctl.h). */
static const double curve_shifts[] = { -3, -2, -1, -0.5, 0, 0.5, 1, 1.5, 2, 3, 4 };
#define NSHIFTS (sizeof curve_shifts / sizeof curve_shifts[0])

/* cot with difficulty classes on (a rule of evalsim_diff_rules): the curve of both class
 * thresholds shifted together in logit space, as sched_decide() applies a risk-controller
 * shift (shift 0: the policy). */
static void
curve_classes(const struct evalsim_set *s, const struct sched_policy *p, enum sched_algo algo,
    bool json, FILE *f)
{
	size_t rule, m, k;

	if (algo != SCHED_ALGO_COT || p->difficulty_tokens == 0)
		return;
	for (rule = 0; rule < EVALSIM_NDIFF; rule++)
		if (evalsim_diff_rules[rule].tokens == p->difficulty_tokens &&
		    evalsim_diff_rules[rule].changes == p->difficulty_changes)
			break;
	if (rule == EVALSIM_NDIFF)
		return;   /* a rule the recording does not carry */
	if (!json)
		printf("\n-- savings vs loss: cot class thresholds (easy %.4g, hard %.4g; window "
		    "%llu, changes %u) shifted together in logit space --\n%-42s %6s %6s %6s %8s "
		    "%7s\n", p->cot_threshold_easy, p->cot_threshold_hard,
		    (unsigned long long)p->difficulty_tokens, p->difficulty_changes, "model",
		    "shift", "easy", "hard", "loss_pt", "saved%");
	else
		fprintf(f, ",\"class_curve\":[");
	for (m = 0; m <= s->nmodels; m++) {
		const char *model = m < s->nmodels ? s->models[m] : NULL;
		for (k = 0; k < NSHIFTS; k++) {
			double tau[3], loss, saved;
			tau[0] = p->cot_threshold;
			tau[DIFFICULTY_EASY] = riskctl_threshold(p->cot_threshold_easy,
			    curve_shifts[k]);
			tau[DIFFICULTY_HARD] = riskctl_threshold(p->cot_threshold_hard,
			    curve_shifts[k]);
			evalsim_score_model_cls(s, model, rule, tau, p->unpromising_tokens, &loss,
			    &saved);
			if (!json) {
				printf("%-42.42s %6.2g %6.4f %6.4f %8.2f %7.1f\n",
				    model != NULL ? model : "ALL", curve_shifts[k],
				    tau[DIFFICULTY_EASY], tau[DIFFICULTY_HARD], 100 * loss,
				    100 * saved);
			} else {
				fprintf(f, "%s{\"model\":", m || k ? "," : "");
				json_str(f, model != NULL ? model : "all");
				fprintf(f, ",\"shift\":%g,\"easy\":%.4f,\"hard\":%.4f,"
				    "\"loss_pt\":%.3f,\"saved\":%.4f}", curve_shifts[k],
				    tau[DIFFICULTY_EASY], tau[DIFFICULTY_HARD], 100 * loss, saved);
			}
		}
	}
	if (json)
		fprintf(f, "]");
}

static int
curve(const struct traces *tr, const struct sched_policy *p, enum sched_algo algo,
    enum evalsim_split split, bool json, FILE *f)
{
	struct evalsim_set s;
	size_t m, k;
	int rc;

	rc = evalsim_record(tr, p, algo, algo == SCHED_ALGO_SC ? 3 : 1, split, &s);
	if (rc != 0)
		return rc;
	if (!json) {
		printf("\n-- savings vs loss: %s threshold sweep (unpromising_tokens %llu; "
		    "tau 1.5 = never stop-certain) --\n", algo == SCHED_ALGO_SC ? "sc" : "cot",
		    (unsigned long long)(algo == SCHED_ALGO_SC ? p->sc_unpromising_tokens :
		    p->unpromising_tokens));
		printf("%-42s %6s %8s %7s\n", "model", "tau", "loss_pt", "saved%");
	} else {
		fprintf(f, ",\"curve\":[");
	}
	for (m = 0; m <= s.nmodels; m++) {
		const char *model = m < s.nmodels ? s.models[m] : NULL;
		for (k = 0; k < NTAUS; k++) {
			double loss, saved;
			evalsim_score_model(&s, model, curve_taus[k], algo == SCHED_ALGO_SC ?
			    p->sc_unpromising_tokens : p->unpromising_tokens, &loss, &saved);
			if (!json) {
				printf("%-42.42s %6.3f %8.2f %7.1f\n", model != NULL ? model : "ALL",
				    curve_taus[k], 100 * loss, 100 * saved);
			} else {
				fprintf(f, "%s{\"model\":", m || k ? "," : "");
				json_str(f, model != NULL ? model : "all");
				fprintf(f, ",\"tau\":%.4f,\"loss_pt\":%.3f,\"saved\":%.4f}",
				    curve_taus[k], 100 * loss, saved);
			}
		}
	}
	if (json)
		fprintf(f, "]");
	curve_classes(&s, p, algo, json, f);
	evalsim_set_free(&s);
	return 0;
}

/* Writes every cot decision point (features, outcome) as CSV, for analysis. */
static int
dump_points(const struct traces *tr, const struct sched_policy *p0, const char *path)
{
	struct sched_policy pol = *p0, *p = &pol;
	FILE *f = fopen(path, "w");
	size_t i, k, j;
	int rc = 0;

	if (f == NULL)
		return -errno;
	pol.cot_threshold = 2;   /* record whole runs */
	pol.unpromising_tokens = 0;
	pol.sc_unpromising_tokens = 0;
	fprintf(f, "prog,model,dataset,test,cost,full_tokens,full_correct,end,valid,c,same,correct");
	for (j = 0; j < SCHED_COT_NFEAT; j++)
		fprintf(f, ",x%zu", j);
	fprintf(f, "\n");
	for (i = 0; i < traces_program_count(tr); i++) {
		const struct traces_program *prog = traces_program_at(tr, i);
		struct evalsim_traj t;
		struct evalsim_outcome o;
		struct evalsim_full full;

		memset(&t, 0, sizeof t);
		evalsim_reference(prog, 1, &full);
		rc = evalsim_run(p, prog, SCHED_ALGO_COT, 1, &o, &t);
		if (rc != 0)
			break;
		for (k = 0; k < t.npts; k++) {
			const struct evalsim_point *pt = &t.pts[k];
			fprintf(f, "%zu,%s,%s,%d,%llu,%llu,%d,%d,%d,%.6f,%d,%d", i, prog->model,
			    prog->dataset, evalsim_in_split(prog->problem, EVALSIM_TEST),
			    (unsigned long long)pt->cost, (unsigned long long)full.tokens,
			    full.correct, pt->end, pt->valid, pt->c, pt->same, pt->correct);
			for (j = 0; j < SCHED_COT_NFEAT; j++)
				fprintf(f, ",%.5g", pt->x[j]);
			fprintf(f, "\n");
		}
		evalsim_traj_free(&t);
	}
	fclose(f);
	return rc;
}

/* certa-eval grader: how often answer_equivalent(final_answer, target) agrees with the traces'
 * own grader (final_correct), over every trace; lists the disagreements. */
static int
do_grader(const struct traces *tr)
{
	size_t i, agree = 0, n = traces_count(tr);

	for (i = 0; i < n; i++) {
		const struct trace *t = traces_at(tr, i);
		bool eq = answer_equivalent(t->final_answer, t->target);
		if (eq == t->final_correct) {
			agree++;
			continue;
		}
		printf("disagree %s %s %s seed %lld: final \"%.60s\" target \"%.60s\" grader %s, "
		    "certa %s\n", t->model, t->dataset, t->problem_id, (long long)t->seed,
		    t->final_answer, t->target, t->final_correct ? "right" : "wrong",
		    eq ? "equal" : "different");
	}
	printf("answer equivalence agrees with the traces' grader on %zu of %zu traces (%.2f%%)\n",
	    agree, n, n ? 100.0 * (double)agree / (double)n : 0);
	return 0;
}

/* certa-eval export-history: certad's LMDB history as a traces file. */
static int
do_export(const char *state, const char *out, bool all)
{
	struct store_options so;
	struct histexport_stats hs;
	struct store *st;
	FILE *f;
	int rc;

	memset(&so, 0, sizeof so);
	so.create = STORE_CREATE_NEVER;   /* a tool reads a state; it never makes one */
	rc = store_open(state, &so, &st);
	if (rc != 0) {
		fprintf(stderr, "certa-eval: %s: cannot open the state directory: %s\n", state,
		    certa_strerror(rc));
		return 1;
	}
	f = fopen(out, "w");
	if (f == NULL) {
		fprintf(stderr, "certa-eval: %s: %s\n", out, strerror(errno));
		store_close(st);
		return 1;
	}
	rc = histexport_write(st, f, all, &hs);
	if (fclose(f) != 0 && rc == 0)
		rc = -EIO;
	store_close(st);
	if (rc != 0) {
		fprintf(stderr, "certa-eval: export failed (%d)\n", rc);
		return 1;
	}
	printf("exported %zu programs (%zu chains) to %s; %zu skipped%s\n", hs.programs,
	    hs.chains, out, hs.skipped, all ? "" : " (not run to the end; --all includes them)");
	return 0;
}

/*
 * certa-eval lomo: leave-one-out evaluation.  Each fold calibrates a policy (evalsim_calibrate,
 * the options of `calibrate`) on the traces without the held-out part and replays the held-out
 * part under it and under Dynasor-CoT:
 *   in-distribution      calibrate on the train split, measure on the test split
 *   leave-one-model-out  calibrate on every other model (all splits), measure on the model
 *   leave-one-seed-out   cot: calibrate on the chains of the other seeds, measure on the
 *                        chains of the held-out seed (one cot program per problem and seed);
 *   leave-problems-out   sc, in place of leave-one-seed-out: an sc n=3 program uses all
 *                        three recorded seeds, so no seed can be held out; the held-out part
 *                        is a third of the problems (evalsim_group_of(problem, 3)), every
 *                        model and seed of them.
 */
enum lomo_kind { LOMO_IN, LOMO_MODEL, LOMO_SEED, LOMO_PROBLEMS, LOMO_NKINDS };
static const char *const lomo_kind_names[LOMO_NKINDS] = {
	"in-distribution", "leave-one-model-out", "leave-one-seed-out", "leave-problems-out",
};

#define LOMO_MAX_FOLDS 32

struct lomo_fold {
	enum lomo_kind kind;
	char held_out[96];
	unsigned algos;                  /* bit 0 cot, bit 1 sc */
	enum evalsim_split calib_split, eval_split;
	struct evalsim_filter calib, eval;
};

struct lomo_result {
	size_t programs;
	double loss, saved, tau;         /* policy: pt, %, threshold */
	double vote;                     /* sc: sc.vote_threshold (> 1: off) */
	double slope;                    /* cot: cot.threshold_slope (0: off) */
	/* cot, difficulty classes kept by the calibration: the rule and class thresholds */
	bool classes;
	uint64_t diff_tokens;
	uint32_t diff_changes;
	double tau_easy, tau_hard;
	/* cot with --difficulty: the held-out frontier (lomo_budgets), one threshold / one per
	 * class of the fold's rule (in-sample on the held-out part; -1: none fits) */
	double front1[8], front2[8];
	unsigned k;                      /* best Dynasor k within max loss; 0: none */
	double k_loss, k_saved;          /* its figures (none: those of the largest k) */
	/* sc with --staged: the fold's calibrated policy with sc.staged = 0, 1 and 2: loss pt,
	 * saved %, critical path % of the full run's longest chain, % of programs that
	 * launched (docs/certainty.md "Staged sc") */
	bool staged;
	double st_loss[3], st_saved[3], st_path[3], st_launched[3];
};

struct lomo_opts {
	double max_loss, lambda, z;
	unsigned folds;
	unsigned algos;
	bool json;
	bool difficulty;                 /* run every fold without and with difficulty classes */
	int diff_rule;                   /* evalsim_calib.difficulty_rule */
	bool diff_ordered;               /* evalsim_calib.difficulty_ordered */
	bool sc_vote;                    /* evalsim_calib.sc_vote */
	bool cot_slope;                  /* evalsim_calib.cot_slope */
	bool score_quantiles;            /* print lomo_quantiles for leave-one-model-out folds */
	bool staged;                     /* sc folds also with sc.staged = 0, 1, 2 */
	/* --policy: the starting values of every fold's calibration (NULL: the built-in
	 * default), e.g. unpromising_relative = 1 */
	const struct sched_policy *start;
	unsigned kinds;                  /* --kind: bit per enum lomo_kind run (0: all) */
};

/* Loss budgets (pt) of the held-out savings-vs-loss frontier printed with --difficulty. */
static const double lomo_budgets[] = { 0, 0.5, 1, 1.5, 2, 3, 5 };
#define LOMO_NBUDGETS (sizeof lomo_budgets / sizeof lomo_budgets[0])

/* The folds of a lomo run over tr's models and seeds; returns how many. */
static size_t
lomo_folds(const struct traces *tr, unsigned algos, struct lomo_fold *fl, size_t max)
{
	const char *models[16];
	int64_t seeds[EVALSIM_FILTER_MAX_SEEDS];
	size_t nm = 0, ns = 0, n = 0, i, j;

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
	for (i = 1; i < ns; i++)   /* ascending */
		for (j = i; j > 0 && seeds[j - 1] > seeds[j]; j--) {
			int64_t t = seeds[j];
			seeds[j] = seeds[j - 1];
			seeds[j - 1] = t;
		}
	memset(fl, 0, max * sizeof *fl);
	fl[n].kind = LOMO_IN;
	snprintf(fl[n].held_out, sizeof fl[n].held_out, "test split");
	fl[n].algos = algos;
	fl[n].calib_split = EVALSIM_TRAIN;
	fl[n++].eval_split = EVALSIM_TEST;
	for (i = 0; i < nm && nm >= 2 && n < max; i++, n++) {
		fl[n].kind = LOMO_MODEL;
		snprintf(fl[n].held_out, sizeof fl[n].held_out, "%s", models[i]);
		fl[n].algos = algos;
		fl[n].calib.model = fl[n].eval.model = models[i];
		fl[n].calib.not_model = true;
	}
	for (i = 0; (algos & 1) && ns >= 2 && i < ns && n < max; i++, n++) {
		fl[n].kind = LOMO_SEED;
		snprintf(fl[n].held_out, sizeof fl[n].held_out, "seed %lld", (long long)seeds[i]);
		fl[n].algos = 1;
		fl[n].eval.seeds[fl[n].eval.nseeds++] = seeds[i];
		for (j = 0; j < ns; j++)
			if (j != i)
				fl[n].calib.seeds[fl[n].calib.nseeds++] = seeds[j];
	}
	for (i = 0; (algos & 2) && i < 3 && n < max; i++, n++) {
		fl[n].kind = LOMO_PROBLEMS;
		snprintf(fl[n].held_out, sizeof fl[n].held_out, "problem third %zu (all seeds)", i);
		fl[n].algos = 2;
		fl[n].calib.groups = fl[n].eval.groups = 3;
		fl[n].calib.group = fl[n].eval.group = (unsigned)i;
		fl[n].calib.not_group = true;
	}
	return n;
}

/* Calibrates on one fold and measures each of its algorithms on the held-out part. */
/* The held-out frontier of policy p (cot) with and without the classes of its rule (the
 * rule of p, or 1024 tokens / 2 changes when p has classes off). */
static int
lomo_frontier(const struct traces *tr, const struct sched_policy *p, const struct lomo_fold *fl,
    struct lomo_result *x)
{
	struct evalsim_set s;
	double b[LOMO_NBUDGETS];
	size_t rule = 4, r, i;
	int rc;

	for (r = 0; r < EVALSIM_NDIFF; r++)
		if (evalsim_diff_rules[r].tokens == p->difficulty_tokens &&
		    evalsim_diff_rules[r].changes == p->difficulty_changes)
			rule = r;
	for (i = 0; i < LOMO_NBUDGETS; i++)
		b[i] = lomo_budgets[i] / 100;
	rc = evalsim_record_filtered(tr, p, SCHED_ALGO_COT, 1, fl->eval_split, EVALSIM_LABEL_SAFE,
	    1, &fl->eval, &s);
	if (rc != 0)
		return rc;
	rc = evalsim_frontier(&s, rule, p->unpromising_tokens, b, LOMO_NBUDGETS, x->front1,
	    x->front2);
	evalsim_set_free(&s);
	return rc;
}

/*
 * The score-quantile check of a leave-one-model-out fold (issue 13; docs/certainty.md, "A
 * threshold relative to the model's own scores"): would the fold's threshold, read as a
 * quantile of the fitting model's own score distribution (evalsim_score_dist, unlabelled) and
 * mapped to the same quantile of the held-out model's distribution, transfer better than the
 * raw level?  For each algorithm and statistic (every decision point; each program's highest
 * score) prints the threshold's share in both distributions, the mapped level and the
 * held-out loss and saving at the raw and the mapped level; then, in hindsight on the
 * held-out labels (no policy could know them), the threshold the calibration's bound would
 * pick there and the cheapest one within max_loss, with their held-out shares.  The held-out
 * distribution is read from its own traces (transductive, unlabelled, as model_tokens).
 * Text on stdout (stderr with --json).
 */
static int
lomo_quantiles(const struct traces *tr, const struct lomo_opts *o, const struct lomo_fold *fl,
    const struct sched_policy *p)
{
	static const char *const stat_names[2] = { "points", "per-program max" };
	FILE *f = o->json ? stderr : stdout;   /* keep --json output valid */
	int a, rc = 0;

	for (a = 0; a < 2; a++) {
		enum sched_algo algo = a == 0 ? SCHED_ALGO_COT : SCHED_ALGO_SC;
		size_t n = a == 0 ? 1 : 3, nv[2][2], st, ti;
		enum evalsim_label label = a == 0 ? EVALSIM_LABEL_SAFE : EVALSIM_LABEL_SAME;
		double *v[2][2] = { { NULL, NULL }, { NULL, NULL } };
		double tau = a == 0 ? p->cot_threshold : p->sc_threshold, loss, saved, tb, lb;
		double best = -1, best_tau = 1.5, best_loss = 0;
		uint64_t u = a == 0 ? p->unpromising_tokens : p->sc_unpromising_tokens, ub = u;
		struct evalsim_set fit, held;

		if (!(fl->algos & (1u << a)))
			continue;
		rc = evalsim_record_filtered(tr, p, algo, n, fl->calib_split, label, 1, &fl->calib,
		    &fit);
		if (rc != 0)
			return rc;
		rc = evalsim_record_filtered(tr, p, algo, n, fl->eval_split, label, 1, &fl->eval,
		    &held);
		if (rc != 0)
			goto fail_fit;
		for (st = 0; st < 2 && rc == 0; st++) {
			rc = evalsim_score_dist(&fit, p, algo, NULL, st == 1, &v[0][st], &nv[0][st]);
			if (rc == 0)
				rc = evalsim_score_dist(&held, p, algo, NULL, st == 1, &v[1][st],
				    &nv[1][st]);
		}
		if (rc != 0)
			goto fail_dist;
		fprintf(f, "score quantiles, %s held out, %s: threshold %g, bound %llu\n",
		    fl->held_out, a == 0 ? "cot" : "sc n=3", tau, (unsigned long long)u);
		evalsim_score_model(&held, NULL, tau, u, &loss, &saved);
		fprintf(f, "  raw level %g on the held-out model: loss %.2f pt, saved %.1f%%\n", tau,
		    100 * loss, 100 * saved);
		for (st = 0; st < 2; st++) {
			double qf = evalsim_dist_cdf(v[0][st], nv[0][st], tau);
			double qh = evalsim_dist_cdf(v[1][st], nv[1][st], tau);
			double lvl = evalsim_dist_level(v[1][st], nv[1][st], qf);
			evalsim_score_model(&held, NULL, lvl, u, &loss, &saved);
			fprintf(f, "  %-15s (%zu / %zu values): share below %g: fitting model %.4f, "
			    "held-out %.4f; mapped level %.4f: loss %.2f pt, saved %.1f%%\n",
			    stat_names[st], nv[0][st], nv[1][st], tau, qf, qh, lvl, 100 * loss,
			    100 * saved);
		}
		held.z = o->z;
		evalsim_pick_threshold(&held, o->max_loss, false, &tb, &ub, &lb);
		held.z = 0;
		for (ti = 0; ti < evalsim_ntaus; ti++) {
			evalsim_score_model(&held, NULL, evalsim_taus[ti], u, &loss, &saved);
			if (loss <= o->max_loss + 1e-12 && saved > best)
				best = saved, best_tau = evalsim_taus[ti], best_loss = loss;
		}
		evalsim_score_model(&held, NULL, tb, u, &loss, &saved);
		fprintf(f, "  hindsight on the held-out labels: bound (z %g) picks %g (held-out shares "
		    "%.4f / %.4f): loss %.2f pt, saved %.1f%%; cheapest within %.2f pt: %g "
		    "(%.4f / %.4f): loss %.2f pt, saved %.1f%%\n", o->z, tb,
		    evalsim_dist_cdf(v[1][0], nv[1][0], tb), evalsim_dist_cdf(v[1][1], nv[1][1], tb),
		    100 * loss, 100 * saved, 100 * o->max_loss, best_tau,
		    evalsim_dist_cdf(v[1][0], nv[1][0], best_tau),
		    evalsim_dist_cdf(v[1][1], nv[1][1], best_tau), 100 * best_loss, 100 * best);
fail_dist:
		for (st = 0; st < 2; st++)
			free(v[0][st]), free(v[1][st]);
		evalsim_set_free(&held);
fail_fit:
		evalsim_set_free(&fit);
		if (rc != 0)
			return rc;
	}
	return 0;
}

static int
lomo_run_fold(const struct traces *tr, const struct lomo_opts *o, const struct lomo_fold *fl,
    bool difficulty, struct lomo_result res[2])
{
	static struct eval e;
	struct sched_policy p;
	struct evalsim_calib cal;
	int a, rc;
	size_t r;

	if (o->start != NULL)
		p = *o->start;
	else
		sched_policy_default(&p);
	memset(&cal, 0, sizeof cal);
	cal.max_loss = o->max_loss;
	cal.split = fl->calib_split;
	cal.filter = &fl->calib;
	cal.sc_n = 3;
	cal.lambda = o->lambda;
	cal.margin = 1;
	cal.folds = o->folds;
	cal.z = o->z;
	cal.difficulty = difficulty;
	cal.difficulty_rule = o->diff_rule;
	cal.difficulty_ordered = o->diff_ordered;
	cal.sc_vote = o->sc_vote;
	cal.cot_slope = o->cot_slope;
	cal.cot_label = EVALSIM_LABEL_SAFE;
	cal.sc_label = EVALSIM_LABEL_SAME;
	rc = evalsim_calibrate(tr, &cal, &p);
	if (rc != 0)
		return rc;
	if (o->score_quantiles && fl->kind == LOMO_MODEL && !difficulty &&
	    (rc = lomo_quantiles(tr, o, fl, &p)) != 0)
		return rc;
	for (a = 0; a < 2; a++) {
		enum sched_algo algo = a == 0 ? SCHED_ALGO_COT : SCHED_ALGO_SC;
		struct lomo_result *x = &res[a];
		const struct tally *t;

		memset(x, 0, sizeof *x);
		if (!(fl->algos & (1u << a)))
			continue;
		rc = evaluate(tr, &p, algo, fl->eval_split, &fl->eval, &e);
		if (rc != 0)
			return rc;
		t = group_get(&e, NULL, NULL);
		x->programs = t->programs;
		x->tau = a == 0 ? p.cot_threshold : p.sc_threshold;
		x->vote = a == 0 ? 2 : p.sc_vote_threshold;
		x->slope = a == 0 ? p.cot_threshold_slope : 0;
		if (a == 0 && p.difficulty_tokens > 0) {
			x->classes = true;
			x->diff_tokens = p.difficulty_tokens;
			x->diff_changes = p.difficulty_changes;
			x->tau_easy = p.cot_threshold_easy;
			x->tau_hard = p.cot_threshold_hard;
		}
		if (a == 0 && difficulty && (rc = lomo_frontier(tr, &p, fl, x)) != 0)
			return rc;
		if (a == 1 && o->staged) {
			/* the same calibrated policy with each staging mode (evaluate refills e) */
			struct sched_policy q = p;
			uint32_t m;
			x->staged = true;
			for (m = 0; m < 3; m++) {
				const struct tally *u;
				q.sc_staged = m;
				rc = evaluate(tr, &q, algo, fl->eval_split, &fl->eval, &e);
				if (rc != 0)
					return rc;
				u = group_get(&e, NULL, NULL);
				x->st_loss[m] = pct((double)u->full_ok - (double)u->ok[RULE_POLICY],
				    (double)u->programs);
				x->st_saved[m] = 100.0 - pct(u->tokens[RULE_POLICY], u->full_tokens);
				x->st_path[m] = pct(u->path, u->full_path);
				x->st_launched[m] = pct((double)u->launched, (double)u->programs);
			}
			rc = evaluate(tr, &p, algo, fl->eval_split, &fl->eval, &e);
			if (rc != 0)
				return rc;
			t = group_get(&e, NULL, NULL);
		}
		for (r = 0; r < 1 + NK; r++) {
			double loss = pct((double)t->full_ok - (double)t->ok[r], (double)t->programs);
			double saved = 100.0 - pct(t->tokens[r], t->full_tokens);
			if (r == RULE_POLICY) {
				x->loss = loss, x->saved = saved;
			} else if (loss <= 100 * o->max_loss + 1e-9 && (x->k == 0 ||
			    saved > x->k_saved)) {
				x->k = dynasor_k[r - 1], x->k_loss = loss, x->k_saved = saved;
			} else if (x->k == 0 && r == NK) {   /* none within: the largest k */
				x->k_loss = loss, x->k_saved = saved;
			}
		}
	}
	return 0;
}

/* Prints one algorithm's folds and the mean/worst per kind (text or JSON). */
static void
lomo_print(const struct lomo_opts *o, const char *algo, const struct lomo_fold *fl,
    const struct lomo_result *res, size_t nf, size_t a, bool first, bool difficulty)
{
	size_t i, kd, shown = 0;

	if (o->json) {
		printf("%s{\"algo\":\"%s\",\"difficulty\":%s,\"folds\":[", first ? "" : ",",
		    algo, difficulty ? "true" : "false");
	} else {
		printf("\n== certa-eval lomo: algo %s%s; policy calibrated without the held-out part "
		    "(--max-loss %g --folds %u --z %g); Dynasor k: best within %.2f pt on the "
		    "same data ==\n", algo, difficulty ? ", with difficulty classes" : "",
		    o->max_loss, o->folds, o->z, 100 * o->max_loss);
		printf("%-19s %-40s %5s %7s %7s %6s %10s %7s %7s\n", "kind", "held out", "progs",
		    "loss_pt", "saved%", "tau", "dynasor_k", "k_loss", "k_sav%");
	}
	for (i = 0; i < nf; i++) {
		const struct lomo_result *x = &res[i * 2 + a];
		if (!(fl[i].algos & (1u << a)))
			continue;
		if (o->json) {
			printf("%s{\"kind\":\"%s\",\"held_out\":", shown++ ? "," : "",
			    lomo_kind_names[fl[i].kind]);
			json_str(stdout, fl[i].held_out);
			printf(",\"programs\":%zu,\"loss_pt\":%.3f,\"saved\":%.4f,\"threshold\":%.4g,"
			    "\"dynasor_k\":%u,\"dynasor_loss_pt\":%.3f,\"dynasor_saved\":%.4f",
			    x->programs, x->loss, x->saved / 100, x->tau, x->k, x->k_loss,
			    x->k_saved / 100);
			if (x->vote <= 1)
				printf(",\"vote_threshold\":%.4g", x->vote);
			if (x->slope != 0)
				printf(",\"threshold_slope\":%.4g", x->slope);
			if (x->staged) {
				uint32_t m;
				printf(",\"staged\":[");
				for (m = 0; m < 3; m++)
					printf("%s{\"mode\":%u,\"loss_pt\":%.3f,\"saved\":%.4f,"
					    "\"path\":%.4f,\"launched\":%.4f}", m ? "," : "", m,
					    x->st_loss[m], x->st_saved[m] / 100, x->st_path[m] / 100,
					    x->st_launched[m] / 100);
				printf("]");
			}
			if (x->classes)
				printf(",\"difficulty_tokens\":%llu,\"difficulty_changes\":%u,"
				    "\"threshold_easy\":%.4g,\"threshold_hard\":%.4g",
				    (unsigned long long)x->diff_tokens, x->diff_changes, x->tau_easy,
				    x->tau_hard);
			printf("}");
		} else {
			char k[16];
			snprintf(k, sizeof k, x->k ? "k=%u" : "none(k=30)", x->k);
			printf("%-19s %-40.40s %5zu %7.2f %7.1f %6.4g %10s %7.2f %7.1f",
			    lomo_kind_names[fl[i].kind], fl[i].held_out, x->programs, x->loss,
			    x->saved, x->tau, k, x->k_loss, x->k_saved);
			if (x->classes)
				printf("  classes %llu/%u: easy %.4g hard %.4g",
				    (unsigned long long)x->diff_tokens, x->diff_changes, x->tau_easy,
				    x->tau_hard);
			if (x->vote <= 1)
				printf("  sc.vote_threshold %.4g", x->vote);
			if (x->slope != 0)
				printf("  cot.threshold_slope %.4g", x->slope);
			if (x->staged) {
				uint32_t m;
				for (m = 0; m < 3; m++)
					printf("  staged %u: %.2f pt %.1f%% path %.1f%% launched %.1f%%", m,
					    x->st_loss[m], x->st_saved[m], x->st_path[m],
					    x->st_launched[m]);
			}
			printf("\n");
		}
	}
	shown = 0;
	if (o->json)
		printf("],\"summary\":[");
	else
		printf("-- across folds (Dynasor: a fold with no k within the bound counts 0%% "
		    "saved; beats: policy within the bound and saving more) --\n");
	for (kd = 0; kd < LOMO_NKINDS; kd++) {
		double sl = 0, wl = -1e9, ss = 0, ws = 1e9, sk = 0;
		size_t n = 0, beats = 0;
		for (i = 0; i < nf; i++) {
			const struct lomo_result *x = &res[i * 2 + a];
			double ks;
			if (fl[i].kind != kd || !(fl[i].algos & (1u << a)))
				continue;
			ks = x->k ? x->k_saved : 0;
			n++;
			sl += x->loss, ss += x->saved, sk += ks;
			wl = x->loss > wl ? x->loss : wl;
			ws = x->saved < ws ? x->saved : ws;
			beats += x->loss <= 100 * o->max_loss + 1e-9 && x->saved > ks;
		}
		if (n == 0)
			continue;
		if (o->json)
			printf("%s{\"kind\":\"%s\",\"folds\":%zu,\"mean_loss_pt\":%.3f,"
			    "\"worst_loss_pt\":%.3f,\"mean_saved\":%.4f,\"worst_saved\":%.4f,"
			    "\"dynasor_mean_saved\":%.4f,\"beats\":%zu}", shown++ ? "," : "",
			    lomo_kind_names[kd], n, sl / (double)n, wl, ss / (double)n / 100,
			    ws / 100, sk / (double)n / 100, beats);
		else
			printf("%-19s folds %zu: loss mean %.2f pt, worst %.2f pt; saved mean %.1f%%, "
			    "worst %.1f%%; best Dynasor k saved mean %.1f%%; policy beats it in "
			    "%zu of %zu\n", lomo_kind_names[kd], n, sl / (double)n, wl,
			    ss / (double)n, ws, sk / (double)n, beats, n);
	}
	if (o->json)
		printf("]}");
}

/* With --difficulty: per cot fold, the held-out frontier without and with classes. */
static void
lomo_print_frontier(const struct lomo_opts *o, const struct lomo_fold *fl,
    const struct lomo_result *res, size_t nf, bool first)
{
	size_t i, b, shown = 0;

	if (o->json)
		printf("%s{\"frontier_budgets_pt\":[", first ? "" : ",");
	else
		printf("\n== held-out savings-vs-loss frontier (cot; in-sample on the held-out part, "
		    "the fold's calibrated weights and unpromising bound): saved %% at loss <= "
		    "budget, one threshold / thresholds per class of the fold's rule ==\n%-19s "
		    "%-28s", "kind", "held out");
	for (b = 0; b < LOMO_NBUDGETS; b++)
		printf(o->json ? "%s%g" : "%s%9g pt", o->json && b ? "," : " ", lomo_budgets[b]);
	printf(o->json ? "],\"folds\":[" : "\n");
	for (i = 0; i < nf; i++) {
		const struct lomo_result *x = &res[i * 2];
		if (!(fl[i].algos & 1))
			continue;
		if (o->json) {
			printf("%s{\"kind\":\"%s\",\"held_out\":", shown++ ? "," : "",
			    lomo_kind_names[fl[i].kind]);
			json_str(stdout, fl[i].held_out);
			printf(",\"one\":[");
			for (b = 0; b < LOMO_NBUDGETS; b++)
				printf("%s%.4f", b ? "," : "", x->front1[b]);
			printf("],\"classes\":[");
			for (b = 0; b < LOMO_NBUDGETS; b++)
				printf("%s%.4f", b ? "," : "", x->front2[b]);
			printf("]}");
			continue;
		}
		printf("%-19s %-28.28s", lomo_kind_names[fl[i].kind], fl[i].held_out);
		for (b = 0; b < LOMO_NBUDGETS; b++) {   /* "-": nothing fits the budget */
			char one[16] = "-", two[16] = "-";
			if (x->front1[b] >= 0)
				snprintf(one, sizeof one, "%.1f", 100 * x->front1[b]);
			if (x->front2[b] >= 0)
				snprintf(two, sizeof two, "%.1f", 100 * x->front2[b]);
			printf(" %5s/%5s", one, two);
		}
		printf("\n");
	}
	if (o->json)
		printf("]}");
}

static int
do_lomo(const struct traces *tr, const struct lomo_opts *o)
{
	static struct lomo_fold fl[LOMO_MAX_FOLDS];
	static struct lomo_result res[2][LOMO_MAX_FOLDS * 2];
	size_t nf = lomo_folds(tr, o->algos, fl, LOMO_MAX_FOLDS), i, a, d;
	size_t npass = o->difficulty ? 2 : 1;
	bool first = true;
	int rc;

	if (o->kinds != 0) {   /* --kind: only those folds */
		size_t k = 0;
		for (i = 0; i < nf; i++)
			if (o->kinds & (1u << fl[i].kind))
				fl[k++] = fl[i];
		nf = k;
	}
	for (d = 0; d < npass; d++)
		for (i = 0; i < nf; i++) {
			rc = lomo_run_fold(tr, o, &fl[i], d == 1, &res[d][i * 2]);
			if (rc != 0) {
				fprintf(stderr, "certa-eval: lomo: fold %s (%s) failed: %s\n",
				    fl[i].held_out, lomo_kind_names[fl[i].kind], strerror(-rc));
				return 1;
			}
		}
	if (o->json)
		printf("{\"traces\":%zu,\"max_loss_pt\":%.3f,\"results\":[", traces_count(tr),
		    100 * o->max_loss);
	for (d = 0; d < npass; d++)
		for (a = 0; a < 2; a++)
			if (o->algos & (1u << a)) {
				lomo_print(o, a == 0 ? "cot" : "sc n=3", fl, res[d], nf, a, first,
				    d == 1);
				first = false;
			}
	if (o->difficulty && (o->algos & 1))
		lomo_print_frontier(o, fl, res[1], nf, first);
	if (o->json)
		printf("]}\n");
	return 0;
}

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: certa-eval --traces DIR [--policy FILE] [--algo cot|sc] "
	    "[--split all|train|test] [--json] [--no-curve] [--dump-points CSV]\n"
	    "       certa-eval calibrate --traces DIR [--max-loss 0.01] [--split train|test|all] "
	    "[--margin 1] [--harm-only] [--lambda 1] [--folds 5] [--z 1] [--policy START] "
	    "[--difficulty] [--sc-vote] [--cot-slope] --out FILE\n"
	    "           (--policy: starting values, e.g. settle_closed = 0; weights, thresholds,\n"
	    "           bounds and spacing are fitted; --difficulty: cot thresholds per\n"
	    "           difficulty class too, kept when they save more; --sc-vote:\n"
	    "           sc.vote_threshold swept with sc.threshold; --cot-slope:\n"
	    "           cot.threshold_slope swept with cot.threshold)\n"
	    "       certa-eval lomo --traces DIR [--algo cot|sc] [--json] [--max-loss 0.01] "
	    "[--lambda 1] [--folds 5] [--z 1] [--difficulty] [--sc-vote] [--cot-slope]\n"
	    "           [--score-quantiles (leave-one-model-out folds: the threshold in each\n"
	    "           model's own score distribution; docs/certainty.md)]\n"
	    "           [--policy START (every fold's starting values)] [--kind in|model|seed]\n"
	    "           [--difficulty-rule R (1-9: one rule of evalsim_diff_rules)]\n"
	    "           [--difficulty-ordered (hard threshold >= easy)]\n"
	    "           [--staged (sc folds also with sc.staged = 0, 1, 2: loss, saved,\n"
	    "           critical path, launched; docs/certainty.md \"Staged sc\")]\n"
	    "           (leave-one-model-out and leave-one-seed-out next to train->test, with\n"
	    "           the Dynasor baselines; --difficulty: each fold also with difficulty\n"
	    "           classes, and the held-out frontiers; docs/certainty.md)\n"
	    "       certa-eval online --traces DIR [--algo cot|sc] [--policy START] "
	    "[--start default|lomo] [--controller cf|window] [--passes 1] [--runs 5] [--lag 10] [--shadow-frac 0.2] "
	    "[--target T] [--sc-target T] [--confidence C] [--step S] [--min-samples N] [--window N] "
	    "[--model-tokens learned|oracle] [--verbose] [--first-run 0] [--shadow-boost B] "
	    "[--hold-confidence C] [--harm 0|1] [--harm-stable M] [--gain 0|1] [--gain-tokens T] [--long-window 500] "
	    "[--reach-by 300]\n"
	    "           (the shadow-driven risk controller over each model's programs in\n"
	    "           virtual time, shadow tokens counted, model_tokens learned from the\n"
	    "           stream as certad or the traces' median; the window criteria against\n"
	    "           the fixed best threshold; eval/online.h)\n"
	    "       certa-eval grader --traces DIR   (answer equivalence vs the traces' grader)\n"
	    "       certa-eval export-history --state STATE_DIR --out FILE.jsonl [--all]\n"
	    "           (certad's history as traces: recalibrate on your own traffic)\n"
	    "       certa-eval route --traces DIR [--route-policy FILE] [--cost POOL=W]... "
	    "[--folds 5] [--target full|policy] [--min-accuracy PCT] [--out FILE]\n"
	    "           (expert routing: frontier vs fixed choices and oracle; docs/routing.md)\n"
	    "DIR defaults to $CERTA_TRACES.\n");
}

static int
parse_split(const char *s, enum evalsim_split *out)
{
	if (strcmp(s, "all") == 0)
		*out = EVALSIM_ALL;
	else if (strcmp(s, "train") == 0)
		*out = EVALSIM_TRAIN;
	else if (strcmp(s, "test") == 0)
		*out = EVALSIM_TEST;
	else
		return -1;
	return 0;
}

static const char *const split_names[] = { "all", "train", "test" };

static int
do_calibrate(const struct traces *tr, double max_loss, double margin, bool harm_only,
    enum evalsim_split split, double lambda, unsigned folds, double z, bool difficulty,
    int diff_rule, bool diff_ordered, bool sc_vote, bool cot_slope, const char *policy,
    const char *out)
{
	struct sched_policy p;
	struct evalsim_calib cal;
	char comment[1024], err[512], dopt[64] = "";
	int rc;

	sched_policy_default(&p);
	/* --policy: the starting values (spacing floor, budgets, switches); calibration
	 * replaces the weights, thresholds, bounds and spacing. */
	if (policy != NULL && eval_policy_load(policy, &p, err, sizeof err) != 0) {
		fprintf(stderr, "certa-eval: %s\n", err);
		return 1;
	}
	memset(&cal, 0, sizeof cal);
	cal.max_loss = max_loss;
	cal.split = split;
	cal.sc_n = 3;
	cal.lambda = lambda;
	cal.margin = margin;
	cal.harm_only = harm_only;
	cal.folds = folds;
	cal.z = z;
	cal.difficulty = difficulty;
	cal.difficulty_rule = diff_rule;
	cal.difficulty_ordered = diff_ordered;
	cal.sc_vote = sc_vote;
	cal.cot_slope = cot_slope;
	cal.cot_label = EVALSIM_LABEL_SAFE;
	cal.sc_label = EVALSIM_LABEL_SAME;
	if (diff_rule > 0 || diff_ordered) {
		int k = diff_rule > 0 ? snprintf(dopt, sizeof dopt, "--difficulty-rule %d ",
		    diff_rule) : 0;
		if (diff_ordered)
			snprintf(dopt + k, sizeof dopt - (size_t)k, "--difficulty-ordered ");
	}
	rc = evalsim_calibrate(tr, &cal, &p);
	if (rc != 0) {
		fprintf(stderr, "certa-eval: calibration failed: %s\n", strerror(-rc));
		return 1;
	}
	snprintf(comment, sizeof comment,
	    "certa scheduling policy, written by `certa-eval calibrate --max-loss %g --margin %g "
	    "%s%s%s%s%s--split %s --lambda %g --folds %u --z %g`\n"
	    "fitted on %zu cot / %zu sc programs (%zu trace files, %zu traces)\n"
	    "threshold chosen on %s: cot worst-model loss %.2f pt (bound %.2f), saved %.1f%%; "
	    "sc worst-model loss %.2f pt (bound %.2f), saved %.1f%%\n"
	    "in-sample (final weights): cot loss %.2f pt, saved %.1f%%; sc loss %.2f pt, "
	    "saved %.1f%%\n"
	    "format: scheduler/policy.h; features: scheduler/certainty.h; method: "
	    "docs/certainty.md",
	    max_loss, cal.margin, harm_only ? "--harm-only " : "",
	    difficulty && diff_rule == 0 && !diff_ordered ? "--difficulty " : "", dopt,
	    sc_vote ? "--sc-vote " : "", cot_slope ? "--cot-slope " : "", split_names[split],
	    cal.lambda,
	    cal.folds, cal.z, cal.cot_programs, cal.sc_programs,
	    traces_file_count(tr), traces_count(tr),
	    cal.folds >= 2 ? "out-of-fold certaindexes" : "the fitting data",
	    100 * cal.cot_loss, 100 * cal.cot_bound, 100 * cal.cot_saved,
	    100 * cal.sc_loss, 100 * cal.sc_bound, 100 * cal.sc_saved,
	    100 * cal.cot_in_loss, 100 * cal.cot_in_saved, 100 * cal.sc_in_loss,
	    100 * cal.sc_in_saved);
	rc = eval_policy_save(out, &p, comment);
	if (rc != 0) {
		fprintf(stderr, "certa-eval: %s: %s\n", out, strerror(-rc));
		return 1;
	}
	printf("calibrated on split %s (%u folds, z %g): cot %zu programs, %s worst-model loss "
	    "%.2f pt (bound %.2f), saved %.1f%%, in-sample %.2f pt / %.1f%% (threshold %.4g, "
	    "probe_stride %.3g, max_step_tokens %u, unpromising_tokens %llu); sc %zu programs, "
	    "worst-model loss %.2f pt (bound %.2f), saved %.1f%%, in-sample %.2f pt / %.1f%% "
	    "(threshold %.4g, unpromising_tokens %llu)\nwrote %s\n",
	    split_names[split], cal.folds, cal.z, cal.cot_programs,
	    cal.folds >= 2 ? "out-of-fold" : "in-sample", 100 * cal.cot_loss,
	    100 * cal.cot_bound, 100 * cal.cot_saved, 100 * cal.cot_in_loss,
	    100 * cal.cot_in_saved, p.cot_threshold, p.probe_stride, p.max_step_tokens,
	    (unsigned long long)p.unpromising_tokens, cal.sc_programs, 100 * cal.sc_loss,
	    100 * cal.sc_bound, 100 * cal.sc_saved, 100 * cal.sc_in_loss, 100 * cal.sc_in_saved,
	    p.sc_threshold, (unsigned long long)p.sc_unpromising_tokens, out);
	if (sc_vote)
		printf("sc.vote_threshold %.4g%s\n", p.sc_vote_threshold,
		    p.sc_vote_threshold > 1 ? " (off: no saving over settled chains alone)" : "");
	if (cot_slope)
		printf("cot.threshold_slope %.4g%s\n", p.cot_threshold_slope,
		    p.cot_threshold_slope == 0 ? " (off: no saving over a flat threshold)" : "");
	if (cal.cot_stats_seen)
		printf("token statistics: %s (cot.w.confidence %.4g, cot.w.min_prob %.4g, "
		    "cot.w.chain_entropy %.4g)\n", cal.cot_stats ? "fitted" :
		    "not kept (no significant out-of-fold gain over the fit without them)",
		    p.cot_w[9], p.cot_w[14], p.cot_w[15]);
	if (p.model_confidence > 0)
		printf("model_confidence %.4g: the probe-probability level the weights were fitted "
		    "at; certad's prior until it learns the serving model's "
		    "(model_confidence.min_samples chains)\n", p.model_confidence);
	if (difficulty)
		printf("difficulty classes: %s (difficulty.tokens %llu, difficulty.changes %u, "
		    "cot.threshold_easy %.4g, cot.threshold_hard %.4g)\n",
		    cal.cot_classes ? "kept" : "not kept (no saving over one threshold)",
		    (unsigned long long)p.difficulty_tokens, p.difficulty_changes,
		    p.cot_threshold_easy, p.cot_threshold_hard);
	return 0;
}

int
main(int argc, char **argv)
{
	const char *dir = getenv("CERTA_TRACES"), *policy = NULL, *out = NULL, *dump = NULL;
	const char *algos[2] = { "cot", "sc" };
	enum evalsim_split split = EVALSIM_ALL;
	bool calibrate = false, json = false, split_given = false, do_curve = true, grader = false;
	bool export = false, export_all = false, lomo = false, online = false;
	struct online_opts oo = { .passes = 1, .runs = 5, .lag = 10, .window = 100,
	    .long_window = 500, .reach_by = 300 };
	double on_frac = 0.2, on_target = -1, on_sc_target = -1, on_conf = -1, on_step = -1;
	long on_min = -1, on_win = -1;
	double on_boost = -1, on_hold = -1, on_harm = -1, on_harm_stable = -1;
	double on_gain = -1, on_gain_tokens = -1;
	const char *state = NULL;
	bool harm_only = false, difficulty = false, diff_ordered = false, sc_vote = false;
	bool cot_slope = false, score_quantiles = false, staged = false;
	int diff_rule = 0;
	double max_loss = 0.01, lambda = 1.0, margin = 1.0, z = 1.0;
	long folds = 5;
	int i, a0 = 0, a1 = 2, rc;
	unsigned lomo_only = 0;
	struct sched_policy p;
	struct traces *tr;
	char err[512];
	static struct eval e;

	if (argc > 1 && strcmp(argv[1], "route") == 0)
		return routecmd_main(argc - 1, argv + 1);
	for (i = 1; i < argc; i++) {
		const char *o = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (i == 1 && strcmp(o, "calibrate") == 0) {
			calibrate = true;
			continue;
		}
		if (i == 1 && strcmp(o, "lomo") == 0) {
			lomo = true;
			continue;
		}
		if (i == 1 && strcmp(o, "online") == 0) {
			online = true;
			continue;
		}
		if (strcmp(o, "--verbose") == 0) {
			oo.verbose = true;
			continue;
		}
		if (i == 1 && strcmp(o, "grader") == 0) {
			grader = true;
			continue;
		}
		if (i == 1 && strcmp(o, "export-history") == 0) {
			export = true;
			continue;
		}
		if (strcmp(o, "--all") == 0) {
			export_all = true;
			continue;
		}
		if (strcmp(o, "--state") == 0 && v != NULL) {
			state = v;
			i++;
			continue;
		}
		if (strcmp(o, "--json") == 0) {
			json = true;
			continue;
		}
		if (strcmp(o, "--harm-only") == 0) {
			harm_only = true;
			continue;
		}
		if (strcmp(o, "--difficulty") == 0) {
			difficulty = true;
			continue;
		}
		if (strcmp(o, "--difficulty-ordered") == 0) {
			difficulty = diff_ordered = true;
			continue;
		}
		if (strcmp(o, "--sc-vote") == 0) {
			sc_vote = true;
			continue;
		}
		if (strcmp(o, "--cot-slope") == 0) {
			cot_slope = true;
			continue;
		}
		if (strcmp(o, "--score-quantiles") == 0) {
			score_quantiles = true;
			continue;
		}
		if (strcmp(o, "--staged") == 0) {
			staged = true;
			continue;
		}
		if (strcmp(o, "--no-curve") == 0) {
			do_curve = false;
			continue;
		}
		if (strcmp(o, "-h") == 0 || strcmp(o, "--help") == 0) {
			usage(stdout);
			return 0;
		}
		if (v == NULL) {
			usage(stderr);
			return 2;
		}
		i++;
		if (strcmp(o, "--traces") == 0) {
			dir = v;
		} else if (strcmp(o, "--policy") == 0) {
			policy = v;
		} else if (strcmp(o, "--out") == 0) {
			out = v;
		} else if (strcmp(o, "--dump-points") == 0) {
			dump = v;
		} else if (strcmp(o, "--kind") == 0) {
			if (strcmp(v, "in") == 0)
				lomo_only = 1u << LOMO_IN;
			else if (strcmp(v, "model") == 0)
				lomo_only = 1u << LOMO_MODEL;
			else if (strcmp(v, "seed") == 0)
				lomo_only = (1u << LOMO_SEED) | (1u << LOMO_PROBLEMS);
			else {
				fprintf(stderr, "certa-eval: --kind must be in, model or seed\n");
				return 2;
			}
		} else if (strcmp(o, "--algo") == 0) {
			if (strcmp(v, "cot") == 0)
				a0 = 0, a1 = 1;
			else if (strcmp(v, "sc") == 0)
				a0 = 1, a1 = 2;
			else {
				fprintf(stderr, "certa-eval: --algo must be cot or sc\n");
				return 2;
			}
		} else if (strcmp(o, "--split") == 0) {
			if (parse_split(v, &split) != 0) {
				fprintf(stderr, "certa-eval: --split must be all, train or test\n");
				return 2;
			}
			split_given = true;
		} else if (strcmp(o, "--max-loss") == 0) {
			max_loss = strtod(v, NULL);
		} else if (strcmp(o, "--margin") == 0) {
			margin = strtod(v, NULL);
		} else if (strcmp(o, "--lambda") == 0) {
			lambda = strtod(v, NULL);
		} else if (strcmp(o, "--folds") == 0) {
			folds = strtol(v, NULL, 10);
		} else if (strcmp(o, "--z") == 0) {
			z = strtod(v, NULL);
		} else if (strcmp(o, "--difficulty-rule") == 0) {
			diff_rule = atoi(v);
			difficulty = true;
			if (diff_rule < 1 || diff_rule > EVALSIM_NDIFF) {
				fprintf(stderr, "certa-eval: --difficulty-rule must be in [1, %d]\n",
				    EVALSIM_NDIFF);
				return 2;
			}
		} else if (strcmp(o, "--start") == 0 && (strcmp(v, "default") == 0 ||
		    strcmp(v, "lomo") == 0)) {
			oo.start_lomo = strcmp(v, "lomo") == 0;
		} else if (strcmp(o, "--controller") == 0 && (strcmp(v, "cf") == 0 ||
		    strcmp(v, "window") == 0)) {
			oo.windowed = strcmp(v, "window") == 0;
		} else if (strcmp(o, "--model-tokens") == 0 && (strcmp(v, "oracle") == 0 ||
		    strcmp(v, "learned") == 0)) {
			oo.oracle_tokens = strcmp(v, "oracle") == 0;
		} else if (strcmp(o, "--passes") == 0) {
			oo.passes = (unsigned)strtoul(v, NULL, 10);
		} else if (strcmp(o, "--runs") == 0) {
			oo.runs = (unsigned)strtoul(v, NULL, 10);
		} else if (strcmp(o, "--first-run") == 0) {
			oo.first_run = (unsigned)strtoul(v, NULL, 10);
		} else if (strcmp(o, "--long-window") == 0) {
			oo.long_window = (unsigned)strtoul(v, NULL, 10);
		} else if (strcmp(o, "--reach-by") == 0) {
			oo.reach_by = (unsigned)strtoul(v, NULL, 10);
		} else if (strcmp(o, "--shadow-boost") == 0) {
			on_boost = strtod(v, NULL);
		} else if (strcmp(o, "--hold-confidence") == 0) {
			on_hold = strtod(v, NULL);
		} else if (strcmp(o, "--harm") == 0) {
			on_harm = strtod(v, NULL);
		} else if (strcmp(o, "--harm-stable") == 0) {
			on_harm_stable = strtod(v, NULL);
		} else if (strcmp(o, "--gain") == 0) {
			on_gain = strtod(v, NULL);
		} else if (strcmp(o, "--gain-tokens") == 0) {
			on_gain_tokens = strtod(v, NULL);
		} else if (strcmp(o, "--lag") == 0) {
			oo.lag = (unsigned)strtoul(v, NULL, 10);
		} else if (strcmp(o, "--shadow-frac") == 0) {
			on_frac = strtod(v, NULL);
		} else if (strcmp(o, "--target") == 0) {
			on_target = strtod(v, NULL);
		} else if (strcmp(o, "--sc-target") == 0) {
			on_sc_target = strtod(v, NULL);
		} else if (strcmp(o, "--confidence") == 0) {
			on_conf = strtod(v, NULL);
		} else if (strcmp(o, "--step") == 0) {
			on_step = strtod(v, NULL);
		} else if (strcmp(o, "--min-samples") == 0) {
			on_min = strtol(v, NULL, 10);
		} else if (strcmp(o, "--window") == 0) {
			on_win = strtol(v, NULL, 10);
		} else {
			usage(stderr);
			return 2;
		}
	}
	if (export) {
		if (state == NULL || out == NULL) {
			fprintf(stderr, "certa-eval: export-history needs --state DIR and --out FILE\n");
			return 2;
		}
		log_set_level(LOG_LVL_WARN);
		return do_export(state, out, export_all);
	}
	if (dir == NULL || dir[0] == '\0') {
		fprintf(stderr, "certa-eval: no traces directory (--traces DIR or CERTA_TRACES)\n");
		return 2;
	}
	if (calibrate && out == NULL) {
		fprintf(stderr, "certa-eval: calibrate needs --out FILE\n");
		return 2;
	}
	if (!(max_loss >= 0 && max_loss < 1) || !(lambda > 0) || !(margin > 0 && margin <= 1) ||
	    folds < 1 || folds > 20 || !(z >= 0 && z <= 10)) {
		fprintf(stderr, "certa-eval: --max-loss must be in [0, 1), --lambda > 0, "
		    "--margin in (0, 1], --folds in [1, 20], --z in [0, 10]\n");
		return 2;
	}
	log_set_level(LOG_LVL_WARN);
	rc = traces_load(dir, &tr);
	if (rc != 0) {
		fprintf(stderr, "certa-eval: %s: cannot load traces (%d)\n", dir, rc);
		return 1;
	}
	if (grader) {
		rc = do_grader(tr);
		traces_free(tr);
		return rc;
	}
	if (lomo) {
		struct sched_policy lstart;
		struct lomo_opts lo = {
			.max_loss = max_loss, .lambda = lambda, .z = z, .folds = (unsigned)folds,
			.algos = (a0 == 0 ? 1u : 0u) | (a1 == 2 ? 2u : 0u), .json = json,
			.difficulty = difficulty, .diff_rule = diff_rule,
			.diff_ordered = diff_ordered, .sc_vote = sc_vote,
			.cot_slope = cot_slope, .kinds = lomo_only,
			.score_quantiles = score_quantiles, .staged = staged,
		};
		if (policy != NULL) {
			sched_policy_default(&lstart);
			if (eval_policy_load(policy, &lstart, err, sizeof err) != 0) {
				fprintf(stderr, "certa-eval: %s\n", err);
				traces_free(tr);
				return 1;
			}
			lo.start = &lstart;
		}
		rc = do_lomo(tr, &lo);
		traces_free(tr);
		return rc;
	}
	if (online) {
		sched_policy_default(&p);
		if (policy != NULL && eval_policy_load(policy, &p, err, sizeof err) != 0) {
			fprintf(stderr, "certa-eval: %s\n", err);
			traces_free(tr);
			return 1;
		}
		p.riskctl_shadow_frac = on_frac;
		if (on_target >= 0)
			p.riskctl_target = on_target;
		if (on_sc_target >= 0)
			p.riskctl_sc_target = on_sc_target;
		if (on_conf >= 0)
			p.riskctl_confidence = on_conf;
		if (on_step >= 0)
			p.riskctl_step = on_step;
		if (on_min >= 0)
			p.riskctl_min_samples = (uint32_t)on_min;
		if (on_win >= 0)
			p.riskctl_window = (uint32_t)on_win;
		if (on_boost >= 0)
			p.riskctl_shadow_boost = on_boost;
		if (on_hold >= 0)
			p.riskctl_hold_confidence = on_hold;
		if (on_harm >= 0)
			p.riskctl_harm = (uint32_t)on_harm;
		if (on_harm_stable >= 0)
			p.riskctl_harm_stable = (uint32_t)on_harm_stable;
		if (on_gain >= 0)
			p.riskctl_gain = (uint32_t)on_gain;
		if (on_gain_tokens >= 0)
			p.riskctl_gain_tokens = (uint32_t)on_gain_tokens;
		if (sched_policy_validate(&p, err, sizeof err) != 0 || oo.passes < 1 ||
		    oo.runs < 1 || oo.runs > 1000 || oo.first_run > 100000) {
			fprintf(stderr, "certa-eval: online: %s\n", oo.passes < 1 || oo.runs < 1 ||
			    oo.runs > 1000 || oo.first_run > 100000 ?
			    "--passes >= 1, --runs in [1, 1000], --first-run <= 100000" : err);
			traces_free(tr);
			return 2;
		}
		oo.start = &p;
		oo.max_loss = max_loss;
		oo.algos = (a0 == 0 ? 1u : 0u) | (a1 == 2 ? 2u : 0u);
		rc = online_run(tr, &oo);
		traces_free(tr);
		if (rc != 0)
			fprintf(stderr, "certa-eval: online: %s\n", strerror(-rc));
		return rc != 0;
	}
	if (calibrate) {
		rc = do_calibrate(tr, max_loss, margin, harm_only,
		    split_given ? split : EVALSIM_TRAIN, lambda, (unsigned)folds, z, difficulty,
		    diff_rule, diff_ordered, sc_vote, cot_slope, policy, out);
		traces_free(tr);
		return rc;
	}
	sched_policy_default(&p);
	if (policy != NULL && eval_policy_load(policy, &p, err, sizeof err) != 0) {
		fprintf(stderr, "certa-eval: %s\n", err);
		traces_free(tr);
		return 1;
	}
	if (dump != NULL) {
		rc = dump_points(tr, &p, dump);
		traces_free(tr);
		if (rc != 0)
			fprintf(stderr, "certa-eval: %s: %s\n", dump, strerror(-rc));
		return rc != 0;
	}
	if (json)
		printf("{\"traces\":%zu,\"split\":\"%s\",\"policy\":", traces_count(tr),
		    split_names[split]), json_str(stdout, policy != NULL ? policy : "default"),
		    printf(",\"results\":[");
	for (i = a0; i < a1; i++) {
		enum sched_algo algo = i == 0 ? SCHED_ALGO_COT : SCHED_ALGO_SC;
		rc = evaluate(tr, &p, algo, split, NULL, &e);
		if (rc != 0) {
			fprintf(stderr, "certa-eval: evaluation failed (%d)\n", rc);
			traces_free(tr);
			return 1;
		}
		if (json) {
			printf("%s{\"algo\":\"%s\",", i > a0 ? "," : "", algos[i]);
			print_json_eval(stdout, &e);
		} else {
			print_table(&e, algos[i], split_names[split],
			    policy != NULL ? policy : "built-in default");
		}
		if (do_curve && (rc = curve(tr, &p, algo, split, json, stdout)) != 0 &&
		    rc != -EINVAL) {
			fprintf(stderr, "certa-eval: curve failed (%d)\n", rc);
			traces_free(tr);
			return 1;
		}
		if (json)
			printf("}");
	}
	if (json)
		printf("]}\n");
	traces_free(tr);
	return 0;
}
