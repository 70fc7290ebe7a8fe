/* cmd_stats.c — `certactl stats`; see cmd_stats.h. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli/cmd_admin.h"
#include "cli/cmd_stats.h"
#include "cli/output.h"
#include "cli/table.h"
#include "lib/jsonw.h"

static int cmd_stats(struct cmd_ctx *ctx, const struct cmd_args *args);

static const struct cmd_option cmd_stats_options[] = {
	{ "tenant", "T", "only tenant T (default: all tenants)" },
	{ NULL, NULL, NULL },
};

const struct cmd_entry cmd_stats_entry = {
	.name = "stats",
	.usage = "",
	.summary = "per-tenant programs, tokens and fair share",
	.help = "Shows, per tenant, its programs by state, the tokens served (decode + probe)\n"
	    "and saved (estimated, by stopping early), and the share of tokens it received\n"
	    "recently (decayed, half-life 30 s) next to the share its weight entitles it to\n"
	    "among the backlogged tenants:\n"
	    "  TENANT QUEUED RUNNING FINISHED CANCELLED FAILED TOKENS SAVED SHARE WEIGHT\n"
	    "  workers up: 2  steps: 12345\n"
	    "With --json, one object: {\"tenants\":[{\"tenant\":...,\"queued\":N,\"running\":N,\n"
	    "\"finished\":N,\"cancelled\":N,\"failed\":N,\"tokens_used\":N,\"tokens_saved\":N,\n"
	    "\"share_received\":0.25,\"share_weight\":0.25}],\"workers_up\":N,\"steps_total\":N,\n"
	    "\"riskctl\":[{\"model\":...,\"algo\":\"cot\",\"shift\":0.5,\"threshold\":...,\"ucb\":...,\n"
	    "\"target\":...,\"shadows\":N,\"changes\":N,...,\"frozen\":false}],\n"
	    "\"model_tokens\":[{\"model\":...,\"tokens\":N,\"source\":\"learned\",...,\n"
	    "\"confidence\":0.83,\"confidence_source\":\"learned\",...}]}.\n"
	    "Then one line per risk controller (online risk control from shadow runs,\n"
	    "docs/certainty.md): its threshold shift, the change rate's bound, its shadows;\n"
	    "and two lines per model: the model_tokens its unpromising bounds use (learned:\n"
	    "the median of its last finished chains; prior: the policy's; absolute: none),\n"
	    "and the model_confidence its probability features are measured from (learned:\n"
	    "the median first probe probability of its last finished chains; prior: the\n"
	    "policy's).",
	.options = cmd_stats_options,
	.min_args = 0,
	.max_args = 0,
	.admin = 1,
	.exec = cmd_stats,
};

int
cmd_stats_table(FILE *f, const Certa__V1__StatsReply *r)
{
	static const char *const head[] = { "TENANT", "QUEUED", "RUNNING", "FINISHED",
	    "CANCELLED", "FAILED", "TOKENS", "SAVED", "SHARE", "WEIGHT" };
	struct table *tb;
	size_t i;
	int rc;

	if (table_new(head, "lrrrrrrrrr", 10, &tb) != 0)
		return -ENOMEM;
	for (i = 0; i < r->n_tenants; i++) {
		const Certa__V1__TenantStats *t = r->tenants[i];

		table_cell(tb, t->tenant);
		table_cellf(tb, "%" PRIu64, t->queued);
		table_cellf(tb, "%" PRIu64, t->running);
		table_cellf(tb, "%" PRIu64, t->finished);
		table_cellf(tb, "%" PRIu64, t->cancelled);
		table_cellf(tb, "%" PRIu64, t->failed);
		table_cellf(tb, "%" PRIu64, t->tokens_used);
		table_cellf(tb, "%" PRIu64, t->tokens_saved);
		table_cellf(tb, "%.1f%%", t->share_received * 100.0);
		table_cellf(tb, "%.1f%%", t->share_weight * 100.0);
	}
	rc = table_print(tb, f);
	table_free(tb);
	return rc;
}

void
cmd_stats_summary(FILE *f, const Certa__V1__StatsReply *r)
{
	fprintf(f, "workers up: %" PRIu64 "  steps: %" PRIu64 "\n", r->workers_up,
	    r->steps_total);
	cmd_stats_riskctl(f, r, "");
}

void
cmd_stats_riskctl(FILE *f, const Certa__V1__StatsReply *r, const char *prefix)
{
	size_t i;

	for (i = 0; i < r->n_riskctl; i++) {
		const Certa__V1__RiskControl *k = r->riskctl[i];
		fprintf(f, "%sriskctl %s %s: shift %+.2f (threshold %.4g)%s, window %u/%u changed, "
		    "ucb %.4f, target %g; shadows %" PRIu64 " (changed %" PRIu64 ", running %"
		    PRIu64 ", dropped %" PRIu64 "), tokens %" PRIu64 ", moves save %" PRIu64
		    "/back %" PRIu64 "; counterfactual: %u/%u changed at this shift, %" PRIu64
		    " counted, %" PRIu64 " excluded\n", prefix, k->model[0] != '\0' ? k->model : "(default)",
		    k->algo, k->shift, k->threshold, k->frozen ? " frozen" : "",
		    k->window_changes, k->window_shadows, k->ucb, k->target, k->shadows, k->changes,
		    k->running, k->dropped, k->tokens, k->saves, k->backs, k->point_changed,
		    k->point_stopped, k->samples, k->excluded);
	}
	for (i = 0; i < r->n_model_tokens; i++) {
		const Certa__V1__ModelTokens *k = r->model_tokens[i];
		fprintf(f, "%smodel_tokens %s: %" PRIu64 " (%s); median %" PRIu64 " of %u kept chains "
		    "(used from %u), %" PRIu64 " counted\n", prefix,
		    k->model[0] != '\0' ? k->model : "(default)", k->tokens, k->source, k->median,
		    k->samples, k->min_samples, k->seen);
		if (k->confidence_source[0] == '\0')
			continue;   /* a certad from before the learned level */
		fprintf(f, "%smodel_confidence %s: %.4f (%s); median %.4f of %u kept chains "
		    "(used from %u), %" PRIu64 " counted\n", prefix,
		    k->model[0] != '\0' ? k->model : "(default)",
		    k->confidence, k->confidence_source,
		    k->confidence_median, k->confidence_samples, k->confidence_min_samples,
		    k->confidence_seen);
	}
}

void
cmd_stats_json(struct jsonw *w, const Certa__V1__StatsReply *r)
{
	size_t i;

	jsonw_object_begin(w);
	jsonw_key(w, "tenants");
	jsonw_array_begin(w);
	for (i = 0; i < r->n_tenants; i++) {
		const Certa__V1__TenantStats *t = r->tenants[i];

		jsonw_object_begin(w);
		jsonw_kstring(w, "tenant", t->tenant);
		jsonw_kuint(w, "queued", t->queued);
		jsonw_kuint(w, "running", t->running);
		jsonw_kuint(w, "finished", t->finished);
		jsonw_kuint(w, "cancelled", t->cancelled);
		jsonw_kuint(w, "failed", t->failed);
		jsonw_kuint(w, "tokens_used", t->tokens_used);
		jsonw_kuint(w, "tokens_saved", t->tokens_saved);
		jsonw_kdouble(w, "share_received", t->share_received);
		jsonw_kdouble(w, "share_weight", t->share_weight);
		jsonw_object_end(w);
	}
	jsonw_array_end(w);
	jsonw_kuint(w, "workers_up", r->workers_up);
	jsonw_kuint(w, "steps_total", r->steps_total);
	jsonw_key(w, "riskctl");
	jsonw_array_begin(w);
	for (i = 0; i < r->n_riskctl; i++) {
		const Certa__V1__RiskControl *k = r->riskctl[i];
		jsonw_object_begin(w);
		jsonw_kstring(w, "model", k->model);
		jsonw_kstring(w, "algo", k->algo);
		jsonw_kdouble(w, "shift", k->shift);
		jsonw_kdouble(w, "threshold", k->threshold);
		jsonw_kdouble(w, "ucb", k->ucb);
		jsonw_kdouble(w, "target", k->target);
		jsonw_kuint(w, "shadows", k->shadows);
		jsonw_kuint(w, "changes", k->changes);
		jsonw_kuint(w, "window_shadows", k->window_shadows);
		jsonw_kuint(w, "window_changes", k->window_changes);
		jsonw_kuint(w, "saves", k->saves);
		jsonw_kuint(w, "backs", k->backs);
		jsonw_kuint(w, "tokens", k->tokens);
		jsonw_kuint(w, "dropped", k->dropped);
		jsonw_kuint(w, "running", k->running);
		jsonw_kbool(w, "frozen", k->frozen);
		jsonw_kuint(w, "samples", k->samples);
		jsonw_kuint(w, "excluded", k->excluded);
		jsonw_kuint(w, "point_stopped", k->point_stopped);
		jsonw_kuint(w, "point_changed", k->point_changed);
		jsonw_object_end(w);
	}
	jsonw_array_end(w);
	jsonw_key(w, "model_tokens");
	jsonw_array_begin(w);
	for (i = 0; i < r->n_model_tokens; i++) {
		const Certa__V1__ModelTokens *k = r->model_tokens[i];
		jsonw_object_begin(w);
		jsonw_kstring(w, "model", k->model);
		jsonw_kuint(w, "tokens", k->tokens);
		jsonw_kstring(w, "source", k->source);
		jsonw_kuint(w, "median", k->median);
		jsonw_kuint(w, "samples", k->samples);
		jsonw_kuint(w, "min_samples", k->min_samples);
		jsonw_kuint(w, "seen", k->seen);
		jsonw_kdouble(w, "confidence", k->confidence);
		jsonw_kstring(w, "confidence_source", k->confidence_source);
		jsonw_kdouble(w, "confidence_median", k->confidence_median);
		jsonw_kuint(w, "confidence_samples", k->confidence_samples);
		jsonw_kuint(w, "confidence_min_samples", k->confidence_min_samples);
		jsonw_kuint(w, "confidence_seen", k->confidence_seen);
		jsonw_object_end(w);
	}
	jsonw_array_end(w);
	jsonw_object_end(w);
}

/* The table and the summary line, or one JSON object. */
static int
cmd_stats_print(struct output *out, const ProtobufCMessage *reply, const void *arg)
{
	const Certa__V1__StatsReply *r = (const Certa__V1__StatsReply *)reply;
	int rc;

	if (output_is_json(out)) {
		cmd_stats_json(output_jsonw(out), r);
		return output_json_line(out);
	}
	rc = cmd_stats_table(stdout, r);
	if (rc == 0)
		cmd_stats_summary(stdout, r);
	return rc;
}

static int
cmd_stats(struct cmd_ctx *ctx, const struct cmd_args *args)
{
	Certa__V1__StatsRequest req = CERTA__V1__STATS_REQUEST__INIT;
	const char *tenant = cmd_args_get(args, "tenant");

	req.tenant = (char *)(tenant != NULL ? tenant : "");
	return cmd_admin_run(ctx, "GetStats", &req.base, cmd_stats_print, NULL);
}
