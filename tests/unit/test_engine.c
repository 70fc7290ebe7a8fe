/*
 * test_engine.c — the engine layer's batch checks (workers/engine.c engine_check_items) and
 * the held-state contract (worker.proto "Held state") on the real replay engine over the demo
 * traces: an item without prompt continues the state the engine holds, and one whose request
 * it holds no state for is refused CERTA_ENOSTATE without changing anything; and the token
 * statistics a trace carries reach the step results.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "lib/error.h"
#include "lib/log.h"
#include "lib/traces.h"
#include "tests/support/harness.h"
#include "workers/engine.h"

#define STEP 64

/* --- engine_check_items --- */

/* n items "p<i>/<i % 4>" (distinct), each with a prompt and max_new_tokens. */
static struct engine_item *
make_items(size_t n, char (**ids)[32])
{
	struct engine_item *it = calloc(n, sizeof *it);
	size_t i;

	*ids = calloc(n, sizeof **ids);
	assert_non_null(it);
	assert_non_null(*ids);
	for (i = 0; i < n; i++) {
		snprintf((*ids)[i], sizeof (*ids)[i], "p%zu/%zu", i / 4, i % 4);
		it[i].request_id = (*ids)[i];
		it[i].prompt = "x";
		it[i].max_new_tokens = 8;
	}
	return it;
}

static void
test_check_items_basic(void **state)
{
	struct engine_item it[2] = {
		{ .request_id = "a/0", .prompt = "x", .max_new_tokens = 1 },
		{ .request_id = "a/1", .prompt = "", .max_new_tokens = 1 },
	};
	char err[256];

	(void)state;
	assert_int_equal(engine_check_items(it, 0, err, sizeof err), CERTA_EINVAL);
	assert_non_null(strstr(err, "empty batch"));
	/* An empty prompt is allowed: the engine continues its held state. */
	assert_int_equal(engine_check_items(it, 2, err, sizeof err), 0);
	it[1].prompt = NULL;
	assert_int_equal(engine_check_items(it, 2, err, sizeof err), 0);
	it[1].max_new_tokens = 0;
	assert_int_equal(engine_check_items(it, 2, err, sizeof err), CERTA_EINVAL);
	assert_non_null(strstr(err, "max_new_tokens"));
	it[1].max_new_tokens = 1;
	it[1].request_id = "";
	assert_int_equal(engine_check_items(it, 2, err, sizeof err), CERTA_EINVAL);
	assert_non_null(strstr(err, "missing request_id"));
	it[1].request_id = "a/0";
	assert_int_equal(engine_check_items(it, 2, err, sizeof err), CERTA_EINVAL);
	assert_non_null(strstr(err, "a/0 appears twice"));
}

/* Every size around the table's growth steps (on the stack and on the heap): distinct ids
 * pass, and a duplicate anywhere (first with last, neighbours) is found and named. */
static void
test_check_items_duplicates(void **state)
{
	static const size_t sizes[] = { 1, 2, 7, 8, 9, 255, 256, 257, 1000, 4096 };
	char err[256], want[64];
	size_t k;

	(void)state;
	for (k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
		size_t n = sizes[k];
		char (*ids)[32];
		struct engine_item *it = make_items(n, &ids);

		assert_int_equal(engine_check_items(it, n, err, sizeof err), 0);
		if (n > 1) {
			it[n - 1].request_id = it[0].request_id;
			assert_int_equal(engine_check_items(it, n, err, sizeof err), CERTA_EINVAL);
			snprintf(want, sizeof want, "request %s appears twice", it[0].request_id);
			assert_non_null(strstr(err, want));
			it[n - 1].request_id = ids[n - 1];
			it[n / 2].request_id = it[n / 2 - 1].request_id;
			assert_int_equal(engine_check_items(it, n, err, sizeof err), CERTA_EINVAL);
		}
		free(it);
		free(ids);
	}
}

/* Hashed, not every pair compared: 200k distinct ids check in well under a second (pairwise
 * compares would be 2e10 strcmps, minutes). */
static void
test_check_items_large_batch_is_fast(void **state)
{
	size_t n = 200000;
	char (*ids)[32];
	struct engine_item *it = make_items(n, &ids);
	char err[256];
	struct timespec t0, t1;
	double s;

	(void)state;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(engine_check_items(it, n, err, sizeof err), 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	s = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
	if (s > 2.0)
		fail_msg("engine_check_items on %zu items took %.2f s", n, s);
	free(it);
	free(ids);
}

/* --- the replay engine's held state --- */

struct fx {
	struct traces *tr;
	const struct trace *t;   /* a trace of the first model, long enough for three steps */
	struct engine *e;
};

static int
setup(void **state)
{
	struct fx *f = calloc(1, sizeof *f);
	struct engine_options o = { 0 };
	size_t i;

	if (f == NULL || harness_demo_traces(&f->tr) != 0) {
		free(f);
		*state = NULL;
		return 0;
	}
	for (i = 0; i < traces_count(f->tr) && f->t == NULL; i++)
		if (traces_at(f->tr, i)->tokens_used >= 4 * STEP &&
		    strcmp(traces_at(f->tr, i)->model, traces_model_name(f->tr, 0)) == 0)
			f->t = traces_at(f->tr, i);
	o.traces_dir = "data/traces-demo";
	if (f->t == NULL || engine_open("replay", &o, &f->e) != 0) {
		traces_free(f->tr);
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;

	if (f != NULL) {
		engine_close(f->e);
		traces_free(f->tr);
		free(f);
	}
	return 0;
}

#define NEED_DEMO(f) do { \
	if ((f) == NULL) { \
		print_message("data/traces-demo not found (run from the source tree): skipping\n"); \
		skip(); \
	} \
} while (0)

/* The sample index of f->t among its problem's samples (seeds ascending). */
static uint32_t
fx_sample(const struct fx *f)
{
	const struct trace *const *s;
	size_t n, i;

	assert_int_equal(traces_find(f->tr, f->t->model, f->t->problem, &s, &n), 0);
	for (i = 0; i < n && s[i] != f->t; i++)
		;
	assert_true(i < n);
	return (uint32_t)i;
}

static struct engine_item
fx_item(const struct fx *f, const char *id, const char *prompt, uint64_t resume)
{
	struct engine_item it = { 0 };

	it.request_id = id;
	it.prompt = prompt;
	it.resume_text = "";
	it.resume_tokens = resume;
	it.sample_index = fx_sample(f);
	it.max_new_tokens = STEP;
	it.model = "";
	return it;
}

static uint32_t
fx_active(const struct fx *f)
{
	struct engine_info info;

	engine_info(f->e, &info);
	return info.active;
}

/* Never seen, without prompt: state missing, nothing held, nothing stepped. */
static void
test_no_prompt_no_state(void **state)
{
	struct fx *f = *state;
	struct engine_item it;
	struct engine_result r;
	char err[512];

	NEED_DEMO(f);
	it = fx_item(f, "p/0", "", 0);
	memset(&r, 0, sizeof r);
	assert_int_equal(engine_step(f->e, &it, 1, &r, err, sizeof err), CERTA_ENOSTATE);
	assert_non_null(strstr(err, "state missing: request p/0"));
	assert_null(r.text);
	assert_int_equal(fx_active(f), 0);
	/* ... also at a position: it is not stepped from scratch. */
	it.resume_tokens = STEP;
	assert_int_equal(engine_step(f->e, &it, 1, &r, err, sizeof err), CERTA_ENOSTATE);
	assert_int_equal(fx_active(f), 0);
}

/* Stepped once with prompt, then without: it continues, with the text a step with the prompt
 * gives; once released, state missing again. */
static void
test_no_prompt_with_state(void **state)
{
	struct fx *f = *state;
	struct engine_item it, ref;
	struct engine_result a, b, c;
	char err[512];

	NEED_DEMO(f);
	it = fx_item(f, "p/0", f->t->problem, 0);
	assert_int_equal(engine_step(f->e, &it, 1, &a, err, sizeof err), 0);
	assert_int_equal(a.total_tokens, STEP);
	it = fx_item(f, "p/0", "", a.total_tokens);
	assert_int_equal(engine_step(f->e, &it, 1, &b, err, sizeof err), 0);
	ref = fx_item(f, "q/0", f->t->problem, a.total_tokens);
	assert_int_equal(engine_step(f->e, &ref, 1, &c, err, sizeof err), 0);
	assert_int_equal(b.total_tokens, 2 * STEP);
	assert_string_equal(b.text, c.text);
	assert_string_equal(b.probe_answer, c.probe_answer);
	engine_result_clear(&a);
	engine_result_clear(&b);
	engine_result_clear(&c);
	assert_int_equal(engine_release(f->e, "p/0"), 0);
	it.resume_tokens = 2 * STEP;
	assert_int_equal(engine_step(f->e, &it, 1, &b, err, sizeof err), CERTA_ENOSTATE);
}

/* A batch with one held request and one not, both without prompt: refused whole (the held
 * one does not advance); with the missing one's prompt it goes through. */
static void
test_no_prompt_mixed_batch(void **state)
{
	struct fx *f = *state;
	struct engine_item it[2];
	struct engine_result r[2];
	char err[512];

	NEED_DEMO(f);
	it[0] = fx_item(f, "p/0", f->t->problem, 0);
	assert_int_equal(engine_step(f->e, it, 1, r, err, sizeof err), 0);
	engine_result_clear(&r[0]);
	it[0] = fx_item(f, "p/0", "", STEP);
	it[1] = fx_item(f, "p/1", "", 0);
	memset(r, 0, sizeof r);
	assert_int_equal(engine_step(f->e, it, 2, r, err, sizeof err), CERTA_ENOSTATE);
	assert_non_null(strstr(err, "p/1"));
	assert_null(r[0].text);
	assert_int_equal(fx_active(f), 1);
	it[1].prompt = f->t->problem;
	assert_int_equal(engine_step(f->e, it, 2, r, err, sizeof err), 0);
	assert_int_equal(r[0].total_tokens, 2 * STEP);
	assert_int_equal(r[1].total_tokens, STEP);
	engine_result_clear(&r[0]);
	engine_result_clear(&r[1]);
	assert_int_equal(fx_active(f), 2);
}

/* The replay engine serves the token statistics a trace carries (a history exported from llm
 * workers): the probe in effect's mean and least probability and the chain entropy; -1 where
 * the trace has none (null, or absent), the least probability only with a mean. */
static void
test_replay_token_stats(void **state)
{
	static const struct { double mean, min, ent; } want[] = {
		{ 0.25, 0.125, 1.5 }, { -1, -1, 0.5 }, { -1, -1, -1 },
	};
	struct engine_options o = { 0 };
	struct engine_item it = { 0 };
	struct engine_result r;
	struct engine *e = NULL;
	char dir[64], path[128], err[512];
	size_t i;
	FILE *fp;

	(void)state;
	assert_non_null(mkdtemp(strcpy(dir, "/tmp/certa-test-engine-XXXXXX")));
	snprintf(path, sizeof path, "%s/m__d__seed_42.jsonl", dir);
	assert_non_null(fp = fopen(path, "w"));
	fprintf(fp, "{\"model\":\"m\",\"dataset\":\"d\",\"seed\":42,\"problem_id\":\"p1\","
	    "\"problem\":\"What is 6 squared?\",\"target\":\"36\",\"tokens_used\":192,"
	    "\"finished\":true,\"final_answer\":\"36\",\"final_correct\":true,"
	    "\"text\":\"six times six is thirty-six, so the answer is 36\",\"probes\":"
	    "[[64,\"3\",5,0.25,0.125,1.5],[128,\"36\",4,null,null,0.5],[192,\"36\",4]]}\n");
	assert_int_equal(fclose(fp), 0);
	o.traces_dir = dir;
	assert_int_equal(engine_open("replay", &o, &e), 0);
	it.request_id = "p/0";
	it.prompt = "What is 6 squared?";
	it.resume_text = "";
	it.max_new_tokens = 64;
	it.model = "";
	for (i = 0; i < 3; i++) {
		it.resume_tokens = 64 * i;
		memset(&r, 0, sizeof r);
		assert_int_equal(engine_step(e, &it, 1, &r, err, sizeof err), 0);
		assert_int_equal(r.total_tokens, 64 * (i + 1));
		assert_true(r.probe_confidence == want[i].mean);
		assert_true(r.probe_min_prob == want[i].min);
		assert_true(r.chain_entropy == want[i].ent);
		assert_true(r.experts_per_token == -1);
		engine_result_clear(&r);
	}
	engine_close(e);
	assert_int_equal(harness_rmrf(dir), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_check_items_basic),
		cmocka_unit_test(test_check_items_duplicates),
		cmocka_unit_test(test_check_items_large_batch_is_fast),
		cmocka_unit_test(test_replay_token_stats),
		cmocka_unit_test_setup_teardown(test_no_prompt_no_state, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_prompt_with_state, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_prompt_mixed_batch, setup, teardown),
	};

	log_set_level(LOG_LVL_WARN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
