/* histexport.c — LMDB history -> traces JSONL (for certa-eval on an operator's own traffic). */
#include "eval/histexport.h"

#include <errno.h>
#include <string.h>

#include "certa/v1/records.pb-c.h"
#include "lib/jsonw.h"
#include "scheduler/answer.h"
#include "store/store.h"

struct histexport_ctx {
	FILE *f;
	bool all;
	struct jsonw *w;
	struct histexport_stats st;
	int err;
};

/* A probe statistic, or null when unknown (< 0). */
static void
histexport_stat(struct jsonw *w, double v)
{
	if (v >= 0)
		jsonw_double(w, v);
	else
		jsonw_null(w);
}

/* One probe point: [position, answer, out_tokens] and, when the engine gave token statistics,
 * [..., mean_prob, min_prob, chain_entropy] (null where one is unknown).  Records from before
 * the statistics existed (stats false) carry only the mean probability, as restore reads them. */
static void
histexport_probe(struct jsonw *w, const Certa__V1__ProbePoint *pp, uint64_t out_tokens)
{
	double mean = pp->confidence, min = pp->stats ? pp->min_prob : -1,
	    ent = pp->stats ? pp->chain_entropy : -1;

	jsonw_array_begin(w);
	jsonw_uint(w, pp->position);
	jsonw_string(w, pp->answer);
	jsonw_uint(w, out_tokens);
	if (mean >= 0 || min >= 0 || ent >= 0) {
		histexport_stat(w, mean);
		histexport_stat(w, mean >= 0 ? min : -1);
		histexport_stat(w, ent);
	}
	jsonw_array_end(w);
}

/* Whether a probe ran at point pp, as far as the record tells: the engine gave statistics
 * and a mean probability (>= 0: any known one; an engine that ran a probe but gave no
 * probability at some points of a chain that has them elsewhere would lose those points'
 * share, which no engine here does). */
static bool
histexport_ran(const Certa__V1__ProbePoint *pp)
{
	return pp->stats && pp->confidence >= 0;
}

/* The points of r that share its probe tokens: those where a probe ran when the engine gave
 * statistics at some point (at least one), else all of them. */
static size_t
histexport_probes_ran(const Certa__V1__RequestRecord *r)
{
	size_t i, n = 0;

	for (i = 0; i < r->n_probes; i++)
		n += histexport_ran(r->probes[i]);
	return n > 0 ? n : r->n_probes;
}

/* One chain as one traces line. */
static int
histexport_chain(struct histexport_ctx *x, const Certa__V1__Program *pm,
    const Certa__V1__RequestRecord *r, const char *target)
{
	const char *final = r->finished ? r->final_answer : r->answer;
	const char *data;
	size_t i, k, len, ran;

	jsonw_reset(x->w);
	jsonw_object_begin(x->w);
	jsonw_kstring(x->w, "model", pm->spec->model[0] ? pm->spec->model : "unknown");
	jsonw_kstring(x->w, "dataset", "history");
	/* Unique per program and chain: the same problem asked twice gives more samples. */
	jsonw_kint(x->w, "seed", (int64_t)x->st.programs * 100 + r->index);
	jsonw_kstring(x->w, "phase", pm->tenant);
	jsonw_kstring(x->w, "problem_id", pm->id);
	jsonw_kstring(x->w, "problem", pm->spec->problem);
	jsonw_kstring(x->w, "target", target);
	jsonw_knull(x->w, "level");
	jsonw_knull(x->w, "subject");
	jsonw_kuint(x->w, "tokens_used", r->tokens);
	jsonw_kbool(x->w, "finished", r->finished);
	jsonw_kstring(x->w, "final_answer", final);
	jsonw_kbool(x->w, "final_correct", target[0] != '\0' && answer_equivalent(final, target));
	jsonw_key(x->w, "probes");
	jsonw_array_begin(x->w);
	/* The record keeps the chain's probe tokens as a sum: each probe gets its share (the
	 * first ones the remainder), so a replay charges what the chain paid for probing.  Where
	 * the engine gave statistics, a point without a mean probability ran no probe (a
	 * finished chain's last step) and gets none. */
	ran = histexport_probes_ran(r);
	for (i = 0, k = 0; i < r->n_probes; i++) {
		uint64_t share = 0;
		if (ran == r->n_probes || histexport_ran(r->probes[i])) {
			share = r->probe_tokens / ran + (k < r->probe_tokens % ran ? 1 : 0);
			k++;
		}
		histexport_probe(x->w, r->probes[i], share);
	}
	jsonw_array_end(x->w);
	jsonw_kstring(x->w, "text", r->text);
	jsonw_object_end(x->w);
	if (jsonw_error(x->w) != 0)
		return -ENOMEM;
	data = jsonw_data(x->w, &len);
	if (fwrite(data, 1, len, x->f) != len || fputc('\n', x->f) == EOF)
		return -EIO;
	x->st.chains++;
	return 0;
}

static int
histexport_one(const char *key, size_t keylen, const ProtobufCMessage *msg, void *arg)
{
	struct histexport_ctx *x = arg;
	const Certa__V1__HistoryRecord *h = (const Certa__V1__HistoryRecord *)msg;
	const Certa__V1__Program *pm = h->program;
	size_t i;
	int rc;

	(void)key;
	(void)keylen;
	if (pm == NULL || pm->spec == NULL || h->n_requests == 0 || pm->result == NULL ||
	    (!x->all && pm->result->reason !=
	    CERTA__V1__FINISH_REASON__FINISH_REASON_NATURAL_END)) {
		x->st.skipped++;
		return 0;
	}
	for (i = 0; i < h->n_requests; i++) {
		/* a chain that never ran (a staged sc program's pending one) is no sample */
		if (h->requests[i]->tokens == 0 && h->requests[i]->n_probes == 0)
			continue;
		rc = histexport_chain(x, pm, h->requests[i], pm->result->answer);
		if (rc != 0)
			return rc;
	}
	x->st.programs++;
	return 0;
}

static int
histexport_txn(struct store_txn *txn, void *arg)
{
	return store_scan(txn, STORE_DB_HISTORY, "", NULL, histexport_one, arg);
}

int
histexport_write(struct store *st, FILE *f, bool all, struct histexport_stats *out)
{
	struct histexport_ctx x;
	int rc;

	memset(&x, 0, sizeof x);
	x.f = f;
	x.all = all;
	rc = jsonw_new(&x.w);
	if (rc != 0)
		return rc;
	rc = store_view(st, histexport_txn, &x);
	jsonw_free(x.w);
	if (rc < 0)
		return rc;
	if (fflush(f) != 0)
		return -EIO;
	if (out != NULL)
		*out = x.st;
	return 0;
}
