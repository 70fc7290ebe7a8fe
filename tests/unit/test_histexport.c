/* test_histexport.c — LMDB history exported as traces, read back by the trace loader. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "certa/v1/records.pb-c.h"
#include "eval/histexport.h"
#include "lib/log.h"
#include "lib/traces.h"
#include "store/store.h"

struct fx {
	char dir[256];
	struct store *st;
};

/* A history record of a program with n chains, each with two probes. */
struct hist_rec {
	const char *id;
	int reason;
	const char *answer;
	size_t n;
	const char *finals[3];
	size_t pending;           /* the last ones never ran (a staged sc program's) */
};

static int
put_hist(struct store_txn *txn, void *arg)
{
	const struct hist_rec *h = arg;
	Certa__V1__HistoryRecord rec = CERTA__V1__HISTORY_RECORD__INIT;
	Certa__V1__Program pm = CERTA__V1__PROGRAM__INIT;
	Certa__V1__ProgramSpec spec = CERTA__V1__PROGRAM_SPEC__INIT;
	Certa__V1__ProgramResult res = CERTA__V1__PROGRAM_RESULT__INIT;
	Certa__V1__RequestRecord rr[3], *rp[3];
	Certa__V1__ProbePoint pp[3][2], *ppp[3][2];
	char key[128];
	size_t i;

	spec.problem = (char *)"What is 6*7?";
	spec.model = (char *)"model-x";
	pm.id = (char *)h->id;
	pm.tenant = (char *)"acme";
	pm.spec = &spec;
	res.answer = (char *)h->answer;
	res.reason = (Certa__V1__FinishReason)h->reason;
	pm.result = &res;
	for (i = 0; i < h->n; i++) {
		certa__v1__request_record__init(&rr[i]);
		certa__v1__probe_point__init(&pp[i][0]);
		certa__v1__probe_point__init(&pp[i][1]);
		pp[i][0].position = 64;
		pp[i][0].answer = (char *)"40";
		pp[i][1].position = 128;
		pp[i][1].answer = (char *)h->finals[i];
		/* token statistics (an llm worker's): the first probe all known, the second
		 * without a mean probability (the finished chain's last step: no probe ran; the
		 * others are not read); chain 1 has none at all (a replay worker's) */
		pp[i][0].confidence = 0.875;
		pp[i][0].min_prob = 0.5;
		pp[i][0].chain_entropy = 1.25 + (double)i;
		pp[i][0].stats = i != 1;
		pp[i][1].confidence = -1;
		pp[i][1].min_prob = 0.25;
		pp[i][1].chain_entropy = -1;
		pp[i][1].stats = i != 1;
		if (i == 1)
			pp[i][0].confidence = -1;
		ppp[i][0] = &pp[i][0];
		ppp[i][1] = &pp[i][1];
		rr[i].program_id = (char *)h->id;
		rr[i].index = (uint32_t)i;
		rr[i].text = (char *)"6 times 7 is 42. </think> **Final Answer** \\boxed{42}";
		rr[i].tokens = 130 + i;
		rr[i].answer = (char *)h->finals[i];
		rr[i].finished = h->reason == CERTA__V1__FINISH_REASON__FINISH_REASON_NATURAL_END;
		rr[i].final_answer = (char *)h->finals[i];
		rr[i].n_probes = 2;
		rr[i].probes = ppp[i];
		rr[i].probe_tokens = 11 + i;
		if (i >= h->n - h->pending) {
			rr[i].text = (char *)"";
			rr[i].tokens = 0;
			rr[i].answer = rr[i].final_answer = (char *)"";
			rr[i].n_probes = 0;
		}
		rp[i] = &rr[i];
	}
	rec.program = &pm;
	rec.n_requests = h->n;
	rec.requests = rp;
	snprintf(key, sizeof key, "0000000000000001/%s", h->id);
	return store_put(txn, STORE_DB_HISTORY, key, &rec.base);
}

static int
setup(void **state)
{
	struct fx *f = calloc(1, sizeof *f);
	struct store_options so;
	const char *tmp = getenv("TMPDIR");
	struct hist_rec a = { "p-a", CERTA__V1__FINISH_REASON__FINISH_REASON_NATURAL_END, "42", 3,
	    { "42", "42", "41" }, 0 };
	struct hist_rec b = { "p-b", CERTA__V1__FINISH_REASON__FINISH_REASON_CERTAIN, "42", 1,
	    { "42" }, 0 };
	/* staged sc: two chains agreed, the third was never launched */
	struct hist_rec c = { "p-c", CERTA__V1__FINISH_REASON__FINISH_REASON_CERTAIN, "42", 3,
	    { "42", "42", "" }, 1 };

	snprintf(f->dir, sizeof f->dir, "%s/certa-hist-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	assert_non_null(mkdtemp(f->dir));
	memset(&so, 0, sizeof so);
	so.nosync = 1;
	{
		char env[300];
		snprintf(env, sizeof env, "%s/env", f->dir);
		assert_int_equal(store_open(env, &so, &f->st), 0);
	}
	assert_int_equal(store_update(f->st, put_hist, &a), 0);
	assert_int_equal(store_update(f->st, put_hist, &b), 0);
	assert_int_equal(store_update(f->st, put_hist, &c), 0);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;
	char cmd[400];

	store_close(f->st);
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

static struct traces *
export_and_load(struct fx *f, bool all, struct histexport_stats *hs)
{
	char path[400], tdir[300];
	struct traces *tr = NULL;
	FILE *out;

	snprintf(tdir, sizeof tdir, "%s/traces-%d", f->dir, all);
	assert_int_equal(mkdir(tdir, 0700), 0);
	snprintf(path, sizeof path, "%s/history.jsonl", tdir);
	out = fopen(path, "w");
	assert_non_null(out);
	assert_int_equal(histexport_write(f->st, out, all, hs), 0);
	fclose(out);
	assert_int_equal(traces_load(tdir, &tr), 0);
	return tr;
}

/* Programs that ran to their end become traces the evaluator can replay. */
static void
test_export_natural_end(void **state)
{
	struct fx *f = *state;
	struct histexport_stats hs;
	struct traces *tr = export_and_load(f, false, &hs);
	const struct trace *const *s;
	size_t n;

	assert_int_equal(hs.programs, 1);
	assert_int_equal(hs.chains, 3);
	assert_int_equal(hs.skipped, 2);
	assert_int_equal(traces_count(tr), 3);
	assert_int_equal(traces_find(tr, "model-x", "What is 6*7?", &s, &n), 0);
	assert_int_equal(n, 3);
	assert_string_equal(s[0]->dataset, "history");
	assert_string_equal(s[0]->problem_id, "p-a");
	assert_string_equal(s[0]->target, "42");
	assert_true(s[0]->finished);
	assert_true(s[0]->final_correct);
	assert_false(s[2]->final_correct);       /* "41" against the majority "42" */
	assert_int_equal(s[1]->tokens_used, 131);
	assert_int_equal(s[0]->nprobes, 2);
	assert_int_equal(s[0]->probes[1].position, 128);
	assert_string_equal(s[0]->probes[0].answer, "40");
	assert_true(s[0]->think_end > 0);
	/* the probe tokens shared over the probes that ran (the record has the sum): with
	 * statistics those with a mean probability, without them all; the statistics kept */
	assert_int_equal(s[0]->probes[0].out_tokens, 11);
	assert_int_equal(s[0]->probes[1].out_tokens, 0);
	assert_int_equal(s[1]->probes[0].out_tokens, 6);
	assert_int_equal(s[1]->probes[1].out_tokens, 6);
	assert_true(s[1]->probes[0].mean_prob == -1 && s[1]->probes[0].chain_entropy == -1);
	assert_true(s[0]->probes[0].mean_prob == 0.875 && s[0]->probes[0].min_prob == 0.5);
	assert_true(s[2]->probes[0].chain_entropy == 3.25);
	assert_true(s[0]->probes[1].mean_prob == -1 && s[0]->probes[1].min_prob == -1 &&
	    s[0]->probes[1].chain_entropy == -1);
	traces_free(tr);
}

/* --all also exports programs that stopped early (their chains are unfinished); a chain that
 * never ran (staged sc) is no sample. */
static void
test_export_all(void **state)
{
	struct fx *f = *state;
	struct histexport_stats hs;
	struct traces *tr = export_and_load(f, true, &hs);
	size_t i, unfinished = 0;

	assert_int_equal(hs.programs, 3);
	assert_int_equal(hs.chains, 6);
	assert_int_equal(hs.skipped, 0);
	for (i = 0; i < traces_count(tr); i++) {
		unfinished += !traces_at(tr, i)->finished;
		assert_true(traces_at(tr, i)->tokens_used > 0);
	}
	assert_int_equal(unfinished, 3);
	/* The same problem in three programs: one group with all six chains as samples. */
	assert_int_equal(traces_count(tr), 6);
	assert_int_equal(traces_program_count(tr), 1);
	assert_int_equal(traces_program_at(tr, 0)->nsamples, 6);
	traces_free(tr);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_export_natural_end, setup, teardown),
		cmocka_unit_test_setup_teardown(test_export_all, setup, teardown),
	};

	log_init("test_histexport", LOG_FORMAT_PLAIN, LOG_LVL_WARN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
