/* test_gpuprof.c — the replay engine's GPU timing model: profile text, iteration costs on
 * known inputs, and a replay engine with a profile where two concurrent steps take longer
 * than one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include <event2/event.h>

#include "lib/error.h"
#include "lib/traces.h"
#include "workers/engine.h"
#include "workers/gpuprof.h"

/* A profile with round numbers: t0 1000 us, a 10 us, b 1 us, prefill 100 us. */
static const char round_text[] =
	"# round numbers\n"
	"name = round\n"
	"t0_us = 1000\n"
	"a_us = 10\n"
	"b_us = 1\n"
	"prefill_us = 100\n"
	"probe_suffix_tokens = 4\n"
	"time_scale = 0.5\n";

static void
test_parse(void **state)
{
	struct gpuprof p;
	char err[200];

	(void)state;
	assert_int_equal(gpuprof_parse(round_text, strlen(round_text), &p, err, sizeof err), 0);
	assert_string_equal(p.name, "round");
	assert_true(p.t0_us == 1000 && p.a_us == 10 && p.b_us == 1 && p.prefill_us == 100);
	assert_int_equal(p.probe_suffix_tokens, 4);
	assert_true(p.time_scale == 0.5);
	/* Missing keys keep the built-in 8B/H100 values. */
	assert_int_equal(gpuprof_parse("a_us = 2\n", 9, &p, err, sizeof err), 0);
	assert_true(p.a_us == 2 && p.t0_us == 5990.0 && p.time_scale == 1.0);
	assert_int_equal(gpuprof_parse("t1_us = 2\n", 10, &p, err, sizeof err), CERTA_ECONFIG);
	assert_non_null(strstr(err, "unknown key 't1_us'"));
	assert_int_equal(gpuprof_parse("b_us = -1\n", 10, &p, err, sizeof err), CERTA_ECONFIG);
	assert_non_null(strstr(err, "b_us"));
	assert_int_equal(gpuprof_parse("time_scale = 0\n", 15, &p, err, sizeof err),
	    CERTA_ECONFIG);
	assert_int_equal(gpuprof_parse("probe_suffix_tokens = 1.5\n", 26, &p, err, sizeof err),
	    CERTA_ECONFIG);
}

/* Shipped profiles parse and give the derived numbers. */
static void
test_shipped(void **state)
{
	struct gpuprof p;
	char err[300];

	(void)state;
	assert_int_equal(gpuprof_load("profiles/llama3-8b-h100.gpu", &p, err, sizeof err), 0);
	/* batch 1, 1000 tokens of context: 5990 + 26.7 + 48.9 */
	assert_true(gpuprof_iter_us(&p, 1, 0, 1000) > 6065.5 &&
	    gpuprof_iter_us(&p, 1, 0, 1000) < 6065.7);
	/* batch 64 at 4096 tokens each: ~20.5 ms */
	assert_true(gpuprof_iter_us(&p, 64, 0, 64 * 4096) > 20000 &&
	    gpuprof_iter_us(&p, 64, 0, 64 * 4096) < 21000);
	assert_int_equal(gpuprof_load("profiles/llama3-8b-h200.gpu", &p, err, sizeof err), 0);
	assert_true(gpuprof_iter_us(&p, 1, 0, 0) < 4210 && gpuprof_iter_us(&p, 1, 0, 0) > 4200);
}

static void
test_iter_known(void **state)
{
	struct gpuprof p;
	char err[200];

	(void)state;
	assert_int_equal(gpuprof_parse(round_text, strlen(round_text), &p, err, sizeof err), 0);
	assert_true(gpuprof_iter_us(&p, 0, 0, 500) == 0.0);          /* idle: nothing */
	assert_true(gpuprof_iter_us(&p, 1, 0, 0) == 1010.0);
	assert_true(gpuprof_iter_us(&p, 3, 0, 200) == 1000.0 + 30 + 200);
	assert_true(gpuprof_iter_us(&p, 0, 7, 0) == 1000.0 + 700);
	assert_true(gpuprof_iter_us(&p, 2, 5, 40) == 1000.0 + 20 + 500 + 40);
}

/* One sequence: prefill 50, decode 3 from there, probe suffix 4 then 2 probe tokens. */
static void
test_iterate_phases(void **state)
{
	struct gpuprof p;
	struct gpuprof_seq s = { .prefill = 50, .decode = 3, .probe_prefill = 4,
	    .probe_decode = 2 };
	static const double want[] = {
		1000 + 100 * 50,          /* prefill the prompt */
		1000 + 10 + 50,           /* decode over 50 */
		1000 + 10 + 51,
		1000 + 10 + 52,
		1000 + 100 * 4,           /* probe suffix on a fork */
		1000 + 10 + 53 + 4,       /* probe token over chain + fork */
		1000 + 10 + 53 + 5,
	};
	char err[200];
	size_t i;

	(void)state;
	assert_int_equal(gpuprof_parse(round_text, strlen(round_text), &p, err, sizeof err), 0);
	for (i = 0; i < sizeof want / sizeof want[0]; i++) {
		assert_true(gpuprof_seq_busy(&s));
		assert_true(gpuprof_iterate(&p, &s, 1) == want[i]);
	}
	assert_false(gpuprof_seq_busy(&s));
	assert_int_equal(s.context, 53);
	assert_int_equal(s.fork, 0);
	assert_true(gpuprof_iterate(&p, &s, 1) == 0.0);
}

/* Modelled time until seqs[0] is done. */
static double
time_until_first_done(const struct gpuprof *p, struct gpuprof_seq *seqs, size_t n)
{
	double t = 0;

	while (gpuprof_seq_busy(&seqs[0]))
		t += gpuprof_iterate(p, seqs, n);
	return t;
}

/* The same step takes longer when another runs with it: shared iterations cost more. */
static void
test_iterate_batch(void **state)
{
	struct gpuprof p;
	struct gpuprof_seq one[1] = { { .decode = 100, .context = 1000 } };
	struct gpuprof_seq two[2] = { { .decode = 100, .context = 1000 },
	    { .decode = 100, .context = 3000 } };
	double t1, t2;

	(void)state;
	gpuprof_defaults(&p);
	t1 = time_until_first_done(&p, one, 1);
	t2 = time_until_first_done(&p, two, 2);
	/* alone: 100 x (5990 + 26.7) + 0.0489 x (1000 + ... + 1099) = 606802 */
	assert_true(t1 > 606700 && t1 < 606900);
	/* together: + 100 x 26.7 + 0.0489 x (3000 + ... + 3099) = + 17582 */
	assert_true(t2 - t1 > 2670 + 14800 && t2 - t1 < 2670 + 15000);
}

/* ---- the replay engine with a profile, on an engine thread ---- */

struct done_flag {
	int n;
	int rc;
	struct event_base *base;
};

static void
on_done(void *arg, int rc, const char *err)
{
	struct done_flag *d = arg;

	(void)err;
	if (rc != 0)
		d->rc = rc;
	if (++d->n == 2 || d->rc != 0)
		event_base_loopbreak(d->base);
}

static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Runs nsteps concurrent one-item steps of `tokens` tokens each; returns wall ms. */
static double
engine_run(struct engine *e, struct event_base *base, const char *prompt, size_t nsteps,
    uint32_t tokens, const char *tag)
{
	struct engine_item it[2];
	struct engine_result out[2];
	char ids[2][32], errs[2][200];
	struct done_flag d = { .n = 2 - (int)nsteps, .base = base };
	double t0 = now_ms(), t;
	size_t i;

	memset(it, 0, sizeof it);
	for (i = 0; i < nsteps; i++) {
		snprintf(ids[i], sizeof ids[i], "%s/%zu", tag, i);
		it[i] = (struct engine_item){ .request_id = ids[i], .prompt = prompt,
		    .sample_index = 0, .max_new_tokens = tokens, .model = "" };
		engine_step_async(e, &it[i], 1, &out[i], errs[i], sizeof errs[i], on_done, &d);
	}
	event_base_dispatch(base);
	t = now_ms() - t0;
	assert_int_equal(d.rc, 0);
	assert_int_equal(d.n, 2);
	for (i = 0; i < nsteps; i++) {
		assert_int_equal(out[i].new_tokens, tokens);
		engine_result_clear(&out[i]);
		assert_int_equal(engine_release(e, ids[i]), 0);
	}
	return t;
}

static void
test_engine_concurrent(void **state)
{
	const char *dir = getenv("CERTA_TRACES");
	char prof[] = "/tmp/certa-gpuprof-XXXXXX";
	struct engine_options o = { 0 };
	struct event_base *base;
	struct engine *e;
	struct traces *tr;
	const struct trace *t = NULL;
	double one, two;
	size_t i;
	FILE *f;
	int fd;

	(void)state;
	if (dir == NULL || dir[0] == '\0')
		dir = "data/traces-demo";
	assert_int_equal(traces_load(dir, &tr), 0);
	for (i = 0; i < traces_count(tr) && t == NULL; i++)
		if (traces_at(tr, i)->tokens_used >= 200 &&
		    strcmp(traces_at(tr, i)->model, traces_model_name(tr, 0)) == 0)
			t = traces_at(tr, i);
	assert_non_null(t);
	/* Context dominated: each iteration 50 us + 100 us per context token (x 0.05 wall), so
	 * two sequences at once make every iteration about twice as long.  The modelled time
	 * (~100+ ms wall per step) dwarfs the engine's own overhead, which under sanitizers and
	 * a loaded machine is several ms and would blur the ratio. */
	fd = mkstemp(prof);
	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	assert_non_null(f);
	fprintf(f, "t0_us = 50\na_us = 0\nb_us = 100\nprefill_us = 0\nprobe_suffix_tokens = 0\n"
	    "time_scale = 0.05\n");
	fclose(f);
	o.traces_dir = dir;
	o.gpu_profile = prof;
	assert_int_equal(engine_open("replay", &o, &e), 0);
	base = event_base_new();
	assert_non_null(base);
	assert_int_equal(engine_attach(e, base), 0);
	/* The prompt's ~(len/4) tokens are prefilled once, then 100 tokens decoded over them. */
	one = engine_run(e, base, t->problem, 1, 100, "a");
	two = engine_run(e, base, t->problem, 2, 100, "b");
	print_message("one step %.1f ms, two concurrent steps %.1f ms\n", one, two);
	assert_true(one >= 100 * 0.05 * 100 * (double)(strlen(t->problem) / 4) / 1000.0);
	assert_true(two > 1.6 * one);
	engine_close(e);
	event_base_free(base);
	traces_free(tr);
	unlink(prof);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_shipped),
		cmocka_unit_test(test_iter_known),
		cmocka_unit_test(test_iterate_phases),
		cmocka_unit_test(test_iterate_batch),
		cmocka_unit_test(test_engine_concurrent),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
