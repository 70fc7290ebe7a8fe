/*
 * test_llm_engine.c — certa-worker --engine llm on a tiny random model with a tokenizer
 * (scripts/llm/tiny_chat_model.py), as a real process, alone and behind certad.
 *
 * Random weights make gibberish, so the tests check mechanics: a step generates the tokens it
 * was asked for and a probe comes back; a retried step (same resume_tokens) gives the same
 * text and probe; rolling back and forward is consistent; a prompt longer than the context is
 * refused clearly; Release leaves no live sequence; cot and sc n=3 programs run through certad
 * to a finished state with a reason, and the worker holds no sequence afterwards.  Prints the
 * measured decode tokens/s through the Worker service and the cost of a probe.
 *
 * Failures and routing: certad killed with kill -9 mid-program and restarted finishes the
 * program with the same chain text and tokens as a crash-free run of the same program (steps
 * are seeded per position); a killed llm worker's program finishes on a second one; on the
 * tiny qwen3moe model (4 experts, 2 as trained) StepItem.moe_top_p routes top-k (2 experts per
 * token), top-p with a small p (1) and p = 1 (all 4), and every StepResult statistic is in
 * range (probabilities in [0,1], entropy in [0, log n_vocab]).
 *
 * certad learns the model's probe-probability level (model_confidence) from the llm worker's
 * probabilities: the value it shows and keeps across a kill -9 equals the level computed from
 * the exported history (the median of the chains' first probe probabilities).
 *
 * Skips when NumPy is missing (the model generator needs it).
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>
#include <cmocka.h>
#include <grpc/grpc.h>

#include "certa/v1/admin.pb-c.h"
#include "certa/v1/reasoning.pb-c.h"
#include "certa/v1/worker.pb-c.h"
#include "lib/error.h"
#include "lib/rpc.h"
#include "lib/rpc_client.h"
#include "tests/support/certa_client.h"
#include "tests/support/harness.h"
#include "tests/support/itest.h"

#define TEST_TIMEOUT_S 120
#define RPC_DEADLINE_MS 30000

#define M_STEP "/certa.v1.Worker/Step"
#define M_RELEASE "/certa.v1.Worker/Release"
#define M_INFO "/certa.v1.Worker/Info"

#define MODEL_NAME "tiny-chat-qwen3"
#define PROBLEM "What is the sum of all the solutions of x^2 - 5x + 6 = 0?"

struct fx {
	char *dir;
	char model[512];
	struct harness_proc *w, *d, *w2;
	int wport, dport, wport2;
	struct rpc_channel *ch, *dch;
	int passed;
};

/* Writes the model with python3, else Debian's (a pyenv python3 may lack numpy); 77: none. */
static int
gen_model_arch(const char *out, const char *arch)
{
	static const char *const pythons[] = { "python3", "/usr/bin/python3" };
	size_t i;
	int rc = -1;

	for (i = 0; i < sizeof pythons / sizeof pythons[0]; i++) {
		rc = harness_sh("%s scripts/llm/tiny_chat_model.py --out %s --arch %s >/dev/null "
		    "2>&1", pythons[i], out, arch);
		if (rc == 0)
			return 0;
	}
	return rc;
}

static int
gen_model(const char *out)
{
	return gen_model_arch(out, "qwen3");
}

static int
setup(void **state)
{
	struct fx *f = calloc(1, sizeof *f);
	int rc;

	if (f == NULL)
		return -1;
	if (harness_fixture_setup(TEST_TIMEOUT_S, &f->dir, NULL) != 0) {
		free(f);
		return -1;
	}
	snprintf(f->model, sizeof f->model, "%s/tiny.gguf", f->dir);
	rc = gen_model(f->model);
	if (rc != 0) {
		if (rc != 77)
			fprintf(stderr, "tiny_chat_model.py failed (status %d)\n", rc);
		f->model[0] = '\0';
	}
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;
	int rc = 0, status = 0;

	if (f->w != NULL && f->passed) {
		if (harness_signal(f->w, SIGTERM) != 0 ||
		    harness_wait_exit(f->w, 10000, &status) != 0 ||
		    !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
			fprintf(stderr, "worker did not stop cleanly on SIGTERM\n");
			f->passed = 0;
			rc = -1;
		}
	}
	if (!f->passed) {
		if (f->w != NULL)
			harness_dump_log(f->w);
		if (f->d != NULL)
			harness_dump_log(f->d);
	}
	if (f->w2 != NULL && !f->passed)
		harness_dump_log(f->w2);
	if (f->w2 != NULL)
		(void)harness_kill9(f->w2);
	harness_proc_free(f->w2);
	if (f->ch != NULL)
		rpc_channel_free(f->ch);
	if (f->dch != NULL)
		rpc_channel_free(f->dch);
	harness_proc_free(f->d);
	harness_proc_free(f->w);
	harness_fixture_teardown(f->dir, NULL);
	free(f);
	return rc;
}

static void
need_model(struct fx *f)
{
	if (f->model[0] == '\0') {
		print_message("python3-numpy missing (or the model script failed): skipping\n");
		skip();
	}
}

/* Starts certa-worker --engine llm on model (log and port files DIR/TAG.log, DIR/TAG.port)
 * and waits for its port. */
static void
spawn_worker(struct fx *f, const char *model, const char *tag, struct harness_proc **proc,
    int *wport)
{
	char *bin = harness_bin("certa-worker"), log[600], port[600];
	char *argv[] = { bin, "--engine", "llm", "--model-file", (char *)model, "--threads", "1",
	    "--kv-memory", "64M", "--listen", "127.0.0.1:0", "--port-file", port, NULL };

	assert_non_null(bin);
	snprintf(log, sizeof log, "%s/%s.log", f->dir, tag);
	snprintf(port, sizeof port, "%s/%s.port", f->dir, tag);
	assert_int_equal(harness_spawn(proc, log, argv), 0);
	free(bin);
	if (harness_wait_port_file(port, 20000, wport) != 0) {
		harness_dump_log(*proc);
		fail_msg("the llm worker did not start");
	}
}

/* Starts certa-worker --engine llm on the tiny model; f->ch talks to it. */
static void
start_worker(struct fx *f)
{
	spawn_worker(f, f->model, "w", &f->w, &f->wport);
	assert_int_equal(certa_client_channel(f->wport, &f->ch), 0);
}

/* Calls of these tests wait RPC_DEADLINE_MS (a CPU forward pass can be slow). */
static grpc_status_code
call(struct rpc_channel *ch, const char *method, const ProtobufCMessage *req,
    const ProtobufCMessageDescriptor *rd, ProtobufCMessage **reply, char **details)
{
	return itest_call_ms(ch, method, req, rd, RPC_DEADLINE_MS, reply, details);
}

static Certa__V1__InfoReply *
info(struct fx *f)
{
	return itest_worker_info(f->ch, RPC_DEADLINE_MS);
}

static uint32_t
active(struct fx *f)
{
	return itest_worker_active(f->ch, RPC_DEADLINE_MS);
}

/* One item's step on channel ch with MoE routing moe_top_p; returns the status and, when OK,
 * the reply. */
static grpc_status_code
step_on(struct rpc_channel *ch, const char *id, const char *prompt, uint32_t sample,
    uint64_t resume, uint32_t max_new, float moe_top_p, Certa__V1__StepReply **out,
    char **details)
{
	Certa__V1__StepRequest req = CERTA__V1__STEP_REQUEST__INIT;
	Certa__V1__StepItem item = CERTA__V1__STEP_ITEM__INIT, *ptr = &item;
	Certa__V1__SamplingParams sp = CERTA__V1__SAMPLING_PARAMS__INIT;
	Certa__V1__ProbeSpec probe = CERTA__V1__PROBE_SPEC__INIT;
	ProtobufCMessage *r = NULL;
	grpc_status_code st;

	item.request_id = (char *)id;
	item.prompt = (char *)prompt;
	item.resume_tokens = resume;
	item.sample_index = sample;
	item.max_new_tokens = max_new;
	item.seed = 7;
	item.moe_top_p = moe_top_p;
	sp.temperature = 0.8f;
	sp.top_p = 0.95f;
	item.sampling = &sp;
	probe.max_tokens = 8;
	item.probe = &probe;
	req.n_items = 1;
	req.items = &ptr;
	st = call(ch, M_STEP, &req.base, &certa__v1__step_reply__descriptor, &r, details);
	*out = (Certa__V1__StepReply *)r;
	return st;
}

static grpc_status_code
step_p(struct fx *f, const char *id, const char *prompt, uint64_t resume, uint32_t max_new,
    float moe_top_p, Certa__V1__StepReply **out, char **details)
{
	return step_on(f->ch, id, prompt, 0, resume, max_new, moe_top_p, out, details);
}

static grpc_status_code
step(struct fx *f, const char *id, const char *prompt, uint64_t resume, uint32_t max_new,
    Certa__V1__StepReply **out, char **details)
{
	return step_p(f, id, prompt, resume, max_new, 0, out, details);
}

/* The token statistics of a result are in range (n_vocab: the tiny model's 555 tokens). */
static void
check_stats(const Certa__V1__StepResult *a)
{
	if (a->probe != NULL && a->probe->tokens > 0) {
		assert_true(a->probe_mean_prob > 0 && a->probe_mean_prob <= 1);
		assert_true(a->probe_min_prob > 0 && a->probe_min_prob <= a->probe_mean_prob);
		assert_true(a->probe_mean_prob == a->probe->confidence);
	} else {
		assert_true(a->probe_mean_prob == -1 && a->probe_min_prob == -1);
	}
	if (a->new_tokens > 0)
		assert_true(a->chain_mean_entropy >= 0 &&
		    a->chain_mean_entropy <= log(555.0) + 1e-9);
}

static Certa__V1__StepResult *
step_ok(struct fx *f, const char *id, uint64_t resume, uint32_t max_new,
    Certa__V1__StepReply **keep)
{
	char *details = NULL;
	grpc_status_code st = step(f, id, PROBLEM, resume, max_new, keep, &details);

	if (st != GRPC_STATUS_OK)
		fail_msg("Step %s at %llu: %s: %s", id, (unsigned long long)resume,
		    rpc_status_name(st), details ? details : "");
	free(details);
	assert_int_equal((*keep)->n_results, 1);
	return (*keep)->results[0];
}

static void
release(struct fx *f, const char *id, uint32_t expect)
{
	Certa__V1__ReleaseRequest req = CERTA__V1__RELEASE_REQUEST__INIT;
	ProtobufCMessage *r = NULL;
	char *ids[1] = { (char *)id };

	req.n_request_ids = 1;
	req.request_ids = ids;
	assert_int_equal(call(f->ch, M_RELEASE, &req.base, &certa__v1__release_reply__descriptor,
	    &r, NULL), GRPC_STATUS_OK);
	assert_int_equal(((Certa__V1__ReleaseReply *)r)->released, expect);
	protobuf_c_message_free_unpacked(r, NULL);
}

/* Info, steps, retries, rollback, a too-long prompt, release; and the figures. */
static void
test_worker_steps(void **state)
{
	struct fx *f = *state;
	Certa__V1__InfoReply *inf;
	Certa__V1__StepReply *r1, *r2, *r3, *r4, *r5;
	Certa__V1__StepResult *a, *b, *c, *d;
	char *details = NULL, *longp;
	double t0, t_step, t_one;
	size_t i;

	need_model(f);
	start_worker(f);
	inf = info(f);
	assert_string_equal(inf->engine, "llm");
	assert_string_equal(inf->model, MODEL_NAME);
	assert_true(inf->capacity >= 1 && inf->capacity <= 63);   /* 64M / 1M per sequence */
	assert_int_equal(inf->active, 0);
	protobuf_c_message_free_unpacked(&inf->base, NULL);

	/* First step: tokens advance, a probe comes back. */
	t0 = harness_clock_us();
	a = step_ok(f, "p/0", 0, 32, &r1);
	t_step = harness_clock_us() - t0;
	assert_true(a->new_tokens >= 1 && a->new_tokens <= 32);
	assert_int_equal(a->total_tokens, a->new_tokens);
	assert_non_null(a->probe);
	check_stats(a);
	assert_true(a->experts_per_token == 0);      /* a dense model */
	if (!a->finished) {
		assert_true(a->probe->tokens >= 1 && a->probe->tokens <= 8);
		assert_true(a->probe->confidence > 0 && a->probe->confidence <= 1);
	}
	assert_int_equal(active(f), 1);

	/* The same step again (a retry after a daemon crash): the same text and probe. */
	b = step_ok(f, "p/0", 0, 32, &r2);
	assert_string_equal(a->text, b->text);
	assert_int_equal(a->new_tokens, b->new_tokens);
	assert_string_equal(a->probe->answer, b->probe->answer);
	assert_true(a->probe->confidence == b->probe->confidence);
	assert_true(a->probe_min_prob == b->probe_min_prob);
	assert_true(a->chain_mean_entropy == b->chain_mean_entropy);

	/* Forward from there, then back to there again: a retried second step agrees. */
	if (!a->finished) {
		c = step_ok(f, "p/0", a->total_tokens, 16, &r3);
		assert_int_equal(c->total_tokens, a->total_tokens + c->new_tokens);
		d = step_ok(f, "p/0", a->total_tokens, 16, &r4);
		assert_string_equal(c->text, d->text);
		assert_string_equal(c->probe->answer, d->probe->answer);
		/* One step of 48 from 0 is the two steps' text. */
		protobuf_c_message_free_unpacked(&r4->base, NULL);
		d = step_ok(f, "p/0", 0, 32 + 16, &r4);
		if (!c->finished) {
			char *both = NULL;
			assert_true(asprintf(&both, "%s%s", a->text, c->text) > 0);
			assert_string_equal(d->text, both);
			free(both);
		}
		protobuf_c_message_free_unpacked(&r3->base, NULL);
		protobuf_c_message_free_unpacked(&r4->base, NULL);
	}

	/* A step of one token: its time is mostly the probe's. */
	t0 = harness_clock_us();
	d = step_ok(f, "p/1", 0, 1, &r5);
	t_one = harness_clock_us() - t0;
	assert_int_equal(active(f), 2);
	/* Decode per token from the difference; the probe is the 1-token step less one token. */
	if (a->new_tokens > 1) {
		double per_tok = (t_step - t_one) / (a->new_tokens - 1);
		print_message("llm worker: step of %u tokens + probe %.1f ms; step of 1 token + "
		    "probe of %u tokens %.1f ms; decode %.2f ms/token (%.0f tokens/s); probe "
		    "%.1f ms = %.1f decode tokens\n", a->new_tokens, t_step / 1000,
		    d->probe->tokens, t_one / 1000, per_tok / 1000, 1e6 / per_tok,
		    (t_one - per_tok) / 1000, (t_one - per_tok) / per_tok);
	}
	protobuf_c_message_free_unpacked(&r5->base, NULL);

	/* A prompt longer than the context (1024 tokens): refused, clearly; nothing held. */
	longp = malloc(20001);
	assert_non_null(longp);
	for (i = 0; i < 20000; i++)
		longp[i] = (char)('a' + (i * 7) % 26);
	longp[20000] = '\0';
	assert_int_equal(step(f, "p/2", longp, 0, 4, &r5, &details),
	    GRPC_STATUS_INVALID_ARGUMENT);
	assert_non_null(details);
	assert_non_null(strstr(details, "context"));
	free(details);
	free(longp);
	assert_int_equal(active(f), 2);

	release(f, "p/0", 1);
	release(f, "p/1", 1);
	release(f, "p/0", 0);
	assert_int_equal(active(f), 0);
	protobuf_c_message_free_unpacked(&r1->base, NULL);
	protobuf_c_message_free_unpacked(&r2->base, NULL);
	f->passed = 1;
}

/* Held state (worker.proto): an item without prompt continues the sequence the worker holds,
 * with the text a step with the prompt gives; without a sequence (never seen, released) or
 * one it cannot continue from there, the step is refused FAILED_PRECONDITION "state
 * missing", never rebuilt from the prompt alone. */
static void
test_held_state(void **state)
{
	struct fx *f = *state;
	Certa__V1__InfoReply *inf;
	Certa__V1__StepReply *r1 = NULL, *r2 = NULL, *r3 = NULL;
	Certa__V1__StepResult *a, *c, *d;
	char *details = NULL;

	need_model(f);
	start_worker(f);
	inf = info(f);
	assert_true(inf->prompt_once);
	protobuf_c_message_free_unpacked(&inf->base, NULL);
	assert_int_equal(step(f, "h/0", "", 0, 32, &r1, &details),
	    GRPC_STATUS_FAILED_PRECONDITION);
	assert_non_null(details);
	assert_non_null(strstr(details, "state missing: request h/0"));
	free(details);
	details = NULL;
	assert_int_equal(active(f), 0);
	a = step_ok(f, "h/0", 0, 32, &r1);
	if (a->finished) {
		print_message("the chain finished in one step: nothing to continue\n");
		protobuf_c_message_free_unpacked(&r1->base, NULL);
		f->passed = 1;
		return;
	}
	assert_int_equal(step(f, "h/0", "", a->total_tokens, 16, &r2, &details),
	    GRPC_STATUS_OK);
	c = r2->results[0];
	d = step_ok(f, "h/0", a->total_tokens, 16, &r3);
	assert_string_equal(c->text, d->text);
	assert_int_equal(c->total_tokens, d->total_tokens);
	protobuf_c_message_free_unpacked(&r2->base, NULL);
	protobuf_c_message_free_unpacked(&r3->base, NULL);
	/* Past what it holds: the text would be needed. */
	assert_int_equal(step(f, "h/0", "", a->total_tokens + 500, 16, &r2, &details),
	    GRPC_STATUS_FAILED_PRECONDITION);
	assert_non_null(strstr(details, "state missing"));
	free(details);
	details = NULL;
	release(f, "h/0", 1);
	assert_int_equal(step(f, "h/0", "", a->total_tokens, 16, &r2, &details),
	    GRPC_STATUS_FAILED_PRECONDITION);
	free(details);
	assert_int_equal(active(f), 0);
	protobuf_c_message_free_unpacked(&r1->base, NULL);
	f->passed = 1;
}

/*
 * Continuous batching: six Step calls at once (six threads, one channel each) — three sc
 * chains of one prompt (they share its prefill), three other prompts of different lengths,
 * different max_new_tokens — give exactly the texts and probe answers of the same steps run
 * one after another; then each continues from its resume point, again all at once.
 */
#define CB_N 6

struct cb_call {
	struct fx *f;
	const char *id, *prompt;
	uint32_t sample, max_new;
	uint64_t resume;
	char *text, *probe;
	uint64_t total;
	double pmean, pmin, entropy, experts; /* the result's token statistics */
	grpc_status_code st;
	pthread_barrier_t *go;
};

static void
cb_run(struct cb_call *c, struct rpc_channel *ch)
{
	Certa__V1__StepReply *r = NULL;
	char *details = NULL;

	c->st = step_on(ch, c->id, c->prompt, c->sample, c->resume, c->max_new, 0, &r, &details);
	free(details);
	if (c->st == GRPC_STATUS_OK && r != NULL && r->n_results == 1) {
		c->text = strdup(r->results[0]->text);
		c->probe = strdup(r->results[0]->probe != NULL && r->results[0]->probe->answer != NULL ?
		    r->results[0]->probe->answer : "");
		c->total = r->results[0]->total_tokens;
		c->pmean = r->results[0]->probe_mean_prob;
		c->pmin = r->results[0]->probe_min_prob;
		c->entropy = r->results[0]->chain_mean_entropy;
		c->experts = r->results[0]->experts_per_token;
	}
	if (r != NULL)
		protobuf_c_message_free_unpacked(&r->base, NULL);
}

static void *
cb_thread(void *arg)
{
	struct cb_call *c = arg;
	struct rpc_channel *ch = NULL;

	if (certa_client_channel(c->f->wport, &ch) != 0)
		return NULL;
	pthread_barrier_wait(c->go);
	cb_run(c, ch);
	rpc_channel_free(ch);
	return NULL;
}

static void
cb_round(struct fx *f, struct cb_call *c, bool together)
{
	pthread_t tid[CB_N];
	pthread_barrier_t go;
	int i;

	pthread_barrier_init(&go, NULL, CB_N);
	for (i = 0; i < CB_N; i++) {
		c[i].f = f;
		c[i].go = &go;
		c[i].text = c[i].probe = NULL;
		if (!together)
			cb_run(&c[i], f->ch);
		else
			assert_int_equal(pthread_create(&tid[i], NULL, cb_thread, &c[i]), 0);
	}
	for (i = 0; together && i < CB_N; i++)
		pthread_join(tid[i], NULL);
	pthread_barrier_destroy(&go);
	for (i = 0; i < CB_N; i++) {
		if (c[i].st != GRPC_STATUS_OK || c[i].text == NULL)
			fail_msg("step %s: %s", c[i].id, rpc_status_name(c[i].st));
	}
}

static void
test_concurrent_steps(void **state)
{
	struct fx *f = *state;
	static const char *const ids[CB_N] = { "c/0", "c/1", "c/2", "d/0", "e/0", "g/0" };
	static const char *const prompts[CB_N] = { PROBLEM, PROBLEM, PROBLEM, "Add 2 and 3.",
	    "Prove that the square root of 2 is irrational, then compute 17 * 23 and explain.",
	    "x" };
	static const uint32_t samples[CB_N] = { 0, 1, 2, 0, 0, 0 };
	static const uint32_t max_new[CB_N] = { 24, 9, 16, 1, 20, 12 };
	struct cb_call seq[CB_N], bat[CB_N];
	int i, round;

	need_model(f);
	start_worker(f);
	memset(seq, 0, sizeof seq);
	for (i = 0; i < CB_N; i++)
		seq[i] = (struct cb_call){ .id = ids[i], .prompt = prompts[i],
		    .sample = samples[i], .max_new = max_new[i] };
	memcpy(bat, seq, sizeof seq);
	for (round = 0; round < 2; round++) {
		cb_round(f, seq, false);
		for (i = 0; i < CB_N; i++)
			release(f, ids[i], 1);
		/* Round 2 resumes where round 1 ended: each is rebuilt from the prompt. */
		cb_round(f, bat, true);
		for (i = 0; i < CB_N; i++) {
			if (strcmp(seq[i].text, bat[i].text) != 0 ||
			    strcmp(seq[i].probe, bat[i].probe) != 0 || seq[i].total != bat[i].total)
				fail_msg("round %d, %s: one at a time '%s' / '%s', together '%s' / '%s'",
				    round, ids[i], seq[i].text, seq[i].probe, bat[i].text, bat[i].probe);
			/* The same logits: the same statistics, to the bit. */
			if (seq[i].pmean != bat[i].pmean || seq[i].pmin != bat[i].pmin ||
			    seq[i].entropy != bat[i].entropy || seq[i].experts != bat[i].experts)
				fail_msg("round %d, %s: statistics one at a time %g %g %g %g, together "
				    "%g %g %g %g", round, ids[i], seq[i].pmean, seq[i].pmin,
				    seq[i].entropy, seq[i].experts, bat[i].pmean, bat[i].pmin,
				    bat[i].entropy, bat[i].experts);
			free(seq[i].text);
			free(seq[i].probe);
			free(bat[i].text);
			free(bat[i].probe);
			seq[i].resume = bat[i].resume = bat[i].total;
		}
		if (round == 0)
			for (i = 0; i < CB_N; i++)
				release(f, ids[i], 1);
	}
	for (i = 0; i < CB_N; i++)
		release(f, ids[i], 1);
	assert_int_equal(active(f), 0);
	{
		/* Whether the calls met in the engine depends on timing: reported, not required. */
		char cmd[700];
		snprintf(cmd, sizeof cmd, "grep -c 'steps run together' %s/w.log >/dev/null", f->dir);
		print_message("concurrent steps %s batched together in the engine\n",
		    system(cmd) == 0 ? "were" : "were not (timing)");
	}
	f->passed = 1;
}

/* Runs one program through certad to its end. */
static void
run_program(struct fx *f, Certa__V1__Algorithm algo, uint32_t n)
{
	Certa__V1__ProgramSpec spec = CERTA__V1__PROGRAM_SPEC__INIT;
	struct certa_client_events ev;
	struct rpc_stream *s;
	size_t i;

	spec.problem = (char *)PROBLEM;
	spec.algorithm = algo;
	spec.n = n;
	spec.token_budget = 96 * (n ? n : 1);
	assert_int_equal(certa_client_submit(f->dch, &spec, NULL, 60000, &s), 0);
	memset(&ev, 0, sizeof ev);
	assert_int_equal(certa_client_events_read(s, 60000, 0, &ev), 0);
	if (ev.status != GRPC_STATUS_OK)
		fail_msg("program stream: %s: %s", rpc_status_name(ev.status), ev.details);
	assert_int_equal(ev.accepted, 1);
	assert_true(ev.progress >= 1);
	assert_non_null(ev.finished);
	assert_true(ev.finished->result->reason != CERTA__V1__FINISH_REASON__FINISH_REASON_UNSPECIFIED);
	assert_true(ev.finished->result->reason != CERTA__V1__FINISH_REASON__FINISH_REASON_FAILED);
	assert_true(ev.finished->result->tokens_used > 0);
	assert_true(ev.finished->result->probe_tokens > 0);
	/* Every chain's latest step statistics reached the client: a dense model, entropy known. */
	assert_int_equal(ev.finished->n_requests, n ? n : 1);
	for (i = 0; i < ev.finished->n_requests; i++) {
		const Certa__V1__StepStats *st = ev.finished->requests[i]->last_step;
		assert_non_null(st);
		assert_true(st->experts_per_token == 0);
		assert_true(st->chain_mean_entropy >= 0 && st->chain_mean_entropy <= log(555.0));
		assert_true(st->probe_mean_prob == -1 ||
		    (st->probe_mean_prob > 0 && st->probe_mean_prob <= 1));
		assert_true(st->probe_min_prob <= st->probe_mean_prob);
	}
	print_message("%s n=%u: reason %d, %llu tokens, %llu probe tokens, answer '%s'\n",
	    algo == CERTA__V1__ALGORITHM__ALGORITHM_SC ? "sc" : "cot", n,
	    (int)ev.finished->result->reason,
	    (unsigned long long)ev.finished->result->tokens_used,
	    (unsigned long long)ev.finished->result->probe_tokens, ev.finished->result->answer);
	certa_client_events_free(&ev);
}

/* A program spec with moe_top_p outside 0 or (0, 1]: INVALID_ARGUMENT, nothing accepted. */
static void
bad_moe_top_p(struct fx *f, float p)
{
	Certa__V1__ProgramSpec spec = CERTA__V1__PROGRAM_SPEC__INIT;
	struct certa_client_events ev;
	struct rpc_stream *s;

	spec.problem = (char *)PROBLEM;
	spec.algorithm = CERTA__V1__ALGORITHM__ALGORITHM_COT;
	spec.moe_top_p = p;
	assert_int_equal(certa_client_submit(f->dch, &spec, NULL, 60000, &s), 0);
	memset(&ev, 0, sizeof ev);
	assert_int_equal(certa_client_events_read(s, 60000, 0, &ev), 0);
	assert_int_equal(ev.status, GRPC_STATUS_INVALID_ARGUMENT);
	assert_int_equal(ev.accepted, 0);
	assert_non_null(strstr(ev.details, "moe_top_p"));
	certa_client_events_free(&ev);
}

/* certad + the llm worker: cot and sc n=3 finish; the worker holds nothing afterwards. */
static void
test_programs(void **state)
{
	struct fx *f = *state;
	char sock[600];
	const char *const sets[] = { "workers.health_interval=100ms", "metrics.port=0",
	    "auth.anonymous_tenant=default", sock, NULL };
	int i;

	need_model(f);
	snprintf(sock, sizeof sock, "admin.socket=%s/admin.sock", f->dir);
	start_worker(f);
	assert_int_equal(harness_start_certad(f->dir, &f->wport, 1, sets, NULL, &f->d, &f->dport),
	    0);
	assert_int_equal(certa_client_channel(f->dport, &f->dch), 0);
	run_program(f, CERTA__V1__ALGORITHM__ALGORITHM_COT, 1);
	run_program(f, CERTA__V1__ALGORITHM__ALGORITHM_SC, 3);
	bad_moe_top_p(f, 1.5f);
	bad_moe_top_p(f, -0.25f);
	/* certad releases finished chains (asynchronously after the Finished event). */
	for (i = 0; i < 200 && active(f) != 0; i++)
		usleep(25000);
	assert_int_equal(active(f), 0);
	f->passed = 1;
}

/* StepItem.moe_top_p on the tiny qwen3moe model: 4 experts, 2 per token as trained. */
static void
test_moe_routing(void **state)
{
	struct fx *f = *state;
	char moe[600], *details = NULL;
	static const struct {
		const char *id;
		float p;
		double lo, hi;
	} cases[] = {
		{ "m/0", 0, 2, 2 },           /* trained top-k */
		{ "m/1", 0.01f, 1, 1 },       /* a small p: the top expert alone */
		{ "m/2", 0.6f, 1, 4 },
		{ "m/3", 1, 4, 4 },           /* p -> 1: every expert */
	};
	Certa__V1__StepReply *r, *r2, *one[4];
	Certa__V1__StepResult *a, *b;
	Certa__V1__StepRequest req = CERTA__V1__STEP_REQUEST__INIT;
	Certa__V1__StepItem items[4], *iptr[4];
	Certa__V1__SamplingParams sp = CERTA__V1__SAMPLING_PARAMS__INIT;
	Certa__V1__ProbeSpec probe = CERTA__V1__PROBE_SPEC__INIT;
	ProtobufCMessage *rm = NULL;
	static const char *const bids[4] = { "n/0", "n/1", "n/2", "n/3" };
	size_t i;

	need_model(f);
	snprintf(moe, sizeof moe, "%s/moe.gguf", f->dir);
	if (gen_model_arch(moe, "qwen3moe") != 0)
		fail_msg("tiny_chat_model.py --arch qwen3moe failed");
	spawn_worker(f, moe, "w", &f->w, &f->wport);
	assert_int_equal(certa_client_channel(f->wport, &f->ch), 0);
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		assert_int_equal(step_p(f, cases[i].id, PROBLEM, 0, 16, cases[i].p, &r, &details),
		    GRPC_STATUS_OK);
		free(details);
		details = NULL;
		a = r->results[0];
		print_message("moe_top_p %.2f: %.3f experts per token, entropy %.3f, probe mean "
		    "%.3f min %.3f\n", (double)cases[i].p, a->experts_per_token,
		    a->chain_mean_entropy, a->probe_mean_prob, a->probe_min_prob);
		assert_true(a->new_tokens >= 1);
		assert_true(a->experts_per_token >= cases[i].lo &&
		    a->experts_per_token <= cases[i].hi);
		check_stats(a);
		/* Retried with the same p: the same tokens and routing (idempotent). */
		assert_int_equal(step_p(f, cases[i].id, PROBLEM, 0, 16, cases[i].p, &r2, NULL),
		    GRPC_STATUS_OK);
		b = r2->results[0];
		assert_string_equal(a->text, b->text);
		assert_true(a->experts_per_token == b->experts_per_token);
		one[i] = r;
		protobuf_c_message_free_unpacked(&r2->base, NULL);
	}
	/*
	 * The four routings as one step: their tokens run in the same forward_batch iterations,
	 * each sequence with its own p, and the prompt they share is not shared across routings.
	 * Every result equals the one-at-a-time one above, statistics included.
	 */
	sp.temperature = 0.8f;
	sp.top_p = 0.95f;
	probe.max_tokens = 8;
	for (i = 0; i < 4; i++) {
		certa__v1__step_item__init(&items[i]);
		items[i].request_id = (char *)bids[i];
		items[i].prompt = (char *)PROBLEM;
		items[i].max_new_tokens = 16;
		items[i].seed = 7;
		items[i].moe_top_p = cases[i].p;
		items[i].sampling = &sp;
		items[i].probe = &probe;
		iptr[i] = &items[i];
	}
	req.n_items = 4;
	req.items = iptr;
	assert_int_equal(call(f->ch, M_STEP, &req.base, &certa__v1__step_reply__descriptor, &rm,
	    NULL), GRPC_STATUS_OK);
	r = (Certa__V1__StepReply *)rm;
	assert_int_equal(r->n_results, 4);
	for (i = 0; i < 4; i++) {
		a = one[i]->results[0];
		b = r->results[i];
		if (strcmp(a->text, b->text) != 0 || strcmp(a->probe->answer, b->probe->answer) != 0)
			fail_msg("moe_top_p %.2f: alone '%s' / '%s', batched '%s' / '%s'",
			    (double)cases[i].p, a->text, a->probe->answer, b->text, b->probe->answer);
		assert_true(a->experts_per_token == b->experts_per_token);
		assert_true(a->chain_mean_entropy == b->chain_mean_entropy);
		assert_true(a->probe_mean_prob == b->probe_mean_prob);
		assert_true(a->probe_min_prob == b->probe_min_prob);
		protobuf_c_message_free_unpacked(&one[i]->base, NULL);
	}
	protobuf_c_message_free_unpacked(&r->base, NULL);
	/* Outside [0, 1]: refused before anything runs. */
	assert_int_equal(step_p(f, "m/9", PROBLEM, 0, 4, 1.5f, &r, &details),
	    GRPC_STATUS_INVALID_ARGUMENT);
	assert_non_null(details);
	assert_non_null(strstr(details, "moe_top_p"));
	free(details);
	assert_int_equal(active(f), 8);
	f->passed = 1;
}

/* Starts certad over the workers in ports[0..n) on f->dir's state. */
static void
start_daemon(struct fx *f, const int *ports, size_t n)
{
	char sock[600];
	const char *const sets[] = { "workers.health_interval=100ms", "metrics.port=0",
	    "auth.anonymous_tenant=default", sock, NULL };

	snprintf(sock, sizeof sock, "admin.socket=%s/admin.sock", f->dir);
	assert_int_equal(harness_start_certad(f->dir, ports, n, sets, NULL, &f->d, &f->dport),
	    0);
	if (f->dch != NULL)
		rpc_channel_free(f->dch);
	assert_int_equal(certa_client_channel(f->dport, &f->dch), 0);
}

/* Submits a cot program long enough to be caught mid-way; reads events until the first
 * progress (or the end: then *s is NULL). */
static void
submit_long(struct fx *f, float moe_top_p, struct certa_client_events *ev,
    struct rpc_stream **s)
{
	Certa__V1__ProgramSpec spec = CERTA__V1__PROGRAM_SPEC__INIT;

	spec.problem = (char *)PROBLEM;
	spec.algorithm = CERTA__V1__ALGORITHM__ALGORITHM_COT;
	spec.token_budget = 900;
	spec.moe_top_p = moe_top_p;
	assert_int_equal(certa_client_submit(f->dch, &spec, NULL, 60000, s), 0);
	memset(ev, 0, sizeof *ev);
	if (certa_client_events_read(*s, 60000, 1, ev) != 1)
		*s = NULL;
	assert_true(ev->id[0] != '\0');
}

static Certa__V1__Program *
get_program(struct fx *f, const char *id)
{
	Certa__V1__GetRequest g = CERTA__V1__GET_REQUEST__INIT;
	ProtobufCMessage *r = NULL;

	g.program_id = (char *)id;
	assert_int_equal(call(f->dch, "/certa.v1.Reasoning/Get", &g.base,
	    &certa__v1__program__descriptor, &r, NULL), GRPC_STATUS_OK);
	return (Certa__V1__Program *)r;
}

/* Polls Get until the program is terminal (60 s). */
static Certa__V1__Program *
wait_terminal(struct fx *f, const char *id)
{
	Certa__V1__Program *p;
	int i;

	for (i = 0; i < 1200; i++) {
		p = get_program(f, id);
		if (p->state >= CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_FINISHED)
			return p;
		protobuf_c_message_free_unpacked(&p->base, NULL);
		usleep(50000);
	}
	fail_msg("program %s did not finish", id);
	return NULL;
}

/* Stops certad (SIGTERM) and exports its whole history with certa-eval into out
 * (DIR/history.jsonl). */
static void
stop_export(struct fx *f, char *out, size_t len)
{
	char *eval = harness_bin("certa-eval");
	int status = 0;

	assert_int_equal(harness_signal(f->d, SIGTERM), 0);
	assert_int_equal(harness_wait_exit(f->d, 10000, &status), 0);
	snprintf(out, len, "%s/history.jsonl", f->dir);
	assert_non_null(eval);
	assert_int_equal(harness_sh("%s export-history --state %s/state --out %s --all >/dev/null",
	    eval, f->dir, out), 0);
	free(eval);
}

/* kill -9 certad mid-program, restart it on the same state: the program finishes with the same
 * tokens, answer, step statistics and chain text as the same program run without a crash. */
static void
test_crash_resume(void **state)
{
	struct fx *f = *state;
	struct certa_client_events ev;
	struct rpc_stream *s;
	Certa__V1__Program *a, *b;
	char ida[64], idb[64], out[700];
	const Certa__V1__RequestProgress *ra, *rb;

	need_model(f);
	start_worker(f);
	start_daemon(f, &f->wport, 1);
	/* The crash-free run. */
	submit_long(f, 0, &ev, &s);
	snprintf(ida, sizeof ida, "%s", ev.id);
	if (s != NULL)
		certa_client_events_read(s, 60000, 0, &ev);
	certa_client_events_free(&ev);
	a = wait_terminal(f, ida);
	/* The same program again, certad killed after its first step. */
	submit_long(f, 0, &ev, &s);
	snprintf(idb, sizeof idb, "%s", ev.id);
	assert_non_null(s);            /* still running: a mid-program kill */
	assert_null(ev.finished);
	assert_int_equal(harness_kill9(f->d), 0);
	harness_proc_free(f->d);
	f->d = NULL;
	certa_client_events_read(s, 5000, 0, &ev);
	assert_int_not_equal(ev.status, GRPC_STATUS_OK);
	certa_client_events_free(&ev);
	start_daemon(f, &f->wport, 1);
	b = wait_terminal(f, idb);

	print_message("crash-free %s: %llu tokens, '%s'; resumed %s: %llu tokens, '%s'\n", ida,
	    (unsigned long long)a->tokens_used, a->result->answer, idb,
	    (unsigned long long)b->tokens_used, b->result->answer);
	assert_int_equal(a->state, b->state);
	assert_int_equal(a->tokens_used, b->tokens_used);
	assert_string_equal(a->result->answer, b->result->answer);
	assert_int_equal(a->result->reason, b->result->reason);
	assert_int_equal(a->n_requests, 1);
	ra = a->requests[0];
	rb = b->requests[0];
	assert_int_equal(ra->tokens, rb->tokens);
	assert_string_equal(ra->answer, rb->answer);
	assert_non_null(ra->last_step);
	assert_non_null(rb->last_step);
	assert_true(ra->last_step->chain_mean_entropy >= 0);
	assert_true(ra->last_step->chain_mean_entropy == rb->last_step->chain_mean_entropy);
	assert_true(ra->last_step->probe_mean_prob == rb->last_step->probe_mean_prob);
	assert_true(ra->last_step->experts_per_token == 0);
	protobuf_c_message_free_unpacked(&a->base, NULL);
	protobuf_c_message_free_unpacked(&b->base, NULL);

	/* The chains' text, from the history (certad stopped: certa-eval reads the state). */
	stop_export(f, out, sizeof out);
	assert_int_equal(harness_sh("python3 -c 'import json, sys\n"
	    "c = {}\n"
	    "for l in open(sys.argv[1]):\n"
	    "    j = json.loads(l); c[j[\"problem_id\"]] = (j[\"text\"], j[\"tokens_used\"])\n"
	    "a, b = c[sys.argv[2]], c[sys.argv[3]]\n"
	    "sys.exit(0 if a == b and len(a[0]) > 0 else 1)' %s %s %s", out, ida, idb), 0);
	/* Every probe of the llm worker's chains carries its token statistics (mean and least
	 * probability, chain entropy) and a share of the probe tokens (a finished chain's last
	 * point, where no probe ran, none), so calibration can fit the token-probability
	 * weights and price the probes; the evaluator replays the file. */
	assert_int_equal(harness_sh("python3 -c 'import json, sys\n"
	    "n = 0\n"
	    "for l in open(sys.argv[1]):\n"
	    "    pp = json.loads(l)[\"probes\"]\n"
	    "    for i, p in enumerate(pp):\n"
	    "        pos, ans, tok, mean, least, ent = p\n"
	    "        assert ent >= 0, p\n"
	    "        if mean is None:  # the end: no probe ran, none of the probe tokens\n"
	    "            assert least is None and i == len(pp) - 1 and tok == 0, p\n"
	    "            continue\n"
	    "        assert 0 < mean <= 1 and 0 <= least <= mean and tok > 0, p\n"
	    "        n += 1\n"
	    "sys.exit(0 if n > 0 else 1)' %s", out), 0);
	{
		char *eval = harness_bin("certa-eval");
		assert_non_null(eval);
		assert_int_equal(harness_sh("%s --traces %s --no-curve >/dev/null 2>&1", eval,
		    f->dir), 0);
		free(eval);
	}
	f->passed = 1;
}

/* Starts certad on the llm worker under a policy that learns the probability level from 3
 * chains (never certain, no shadows: every program ends at the budget or naturally and
 * counts at once); opens the admin channel into *adm and reads the metrics port. */
static void
start_learning(struct fx *f, struct rpc_channel **adm, int *mport)
{
	char sock[600], pol[600], mset[600], path[512], target[600];
	const char *const sets[] = { "workers.health_interval=100ms", "metrics.port=0",
	    "auth.anonymous_tenant=default", sock, pol, mset, NULL };

	snprintf(path, sizeof path, "%s/learn.policy", f->dir);
	assert_int_equal(harness_write_file(path, "cot.threshold = 2\nriskctl.shadow_frac = 0\n"
	    "model_confidence.min_samples = 3\n"), 0);
	snprintf(pol, sizeof pol, "policy.file=%s", path);
	snprintf(sock, sizeof sock, "admin.socket=%s/admin.sock", f->dir);
	snprintf(mset, sizeof mset, "metrics.port_file=%s/metrics.port", f->dir);
	unlink(mset + strlen("metrics.port_file="));
	assert_int_equal(harness_start_certad(f->dir, &f->wport, 1, sets, NULL, &f->d, &f->dport),
	    0);
	assert_int_equal(harness_wait_port_file(mset + strlen("metrics.port_file="), 20000,
	    mport), 0);
	if (f->dch != NULL)
		rpc_channel_free(f->dch);
	assert_int_equal(certa_client_channel(f->dport, &f->dch), 0);
	snprintf(target, sizeof target, "unix:%s/admin.sock", f->dir);
	if (*adm != NULL)
		rpc_channel_free(*adm);
	assert_int_equal(rpc_channel_new(target, adm), 0);
}

/* The one model's row of certactl stats (GetStats); the reply into *reply (caller frees). */
static const Certa__V1__ModelTokens *
model_row(struct rpc_channel *adm, Certa__V1__StatsReply **reply)
{
	Certa__V1__StatsRequest req = CERTA__V1__STATS_REQUEST__INIT;
	ProtobufCMessage *r = NULL;

	assert_int_equal(call(adm, "/certa.v1.Admin/GetStats", &req.base,
	    &certa__v1__stats_reply__descriptor, &r, NULL), GRPC_STATUS_OK);
	*reply = (Certa__V1__StatsReply *)r;
	assert_int_equal((*reply)->n_model_tokens, 1);
	return (*reply)->model_tokens[0];
}

/* certad learns the llm model's probe-probability level (model_confidence): the policy's
 * (0: 0.5) for a cot program's one chain, then, from an sc n=3 program's three more, the
 * median over the chains of each chain's first probe probability, shown in stats and
 * /metrics; it survives a kill -9 (written when it took over) and equals the level computed
 * independently from the exported history. */
static void
test_confidence_learned(void **state)
{
	struct fx *f = *state;
	struct rpc_channel *adm = NULL;
	const Certa__V1__ModelTokens *m;
	Certa__V1__StatsReply *r;
	static char body[1 << 16];
	char series[300], out[700];
	double learned;
	int mport = 0;

	need_model(f);
	start_worker(f);
	start_learning(f, &adm, &mport);
	run_program(f, CERTA__V1__ALGORITHM__ALGORITHM_COT, 1);
	m = model_row(adm, &r);
	assert_int_equal(m->confidence_samples, 1);
	assert_int_equal(m->confidence_min_samples, 3);
	assert_string_equal(m->confidence_source, "prior");
	assert_true(m->confidence == 0.5);
	assert_true(m->confidence_median > 0 && m->confidence_median <= 1);
	protobuf_c_message_free_unpacked(&r->base, NULL);
	run_program(f, CERTA__V1__ALGORITHM__ALGORITHM_SC, 3);   /* three chains of their own */
	m = model_row(adm, &r);
	assert_int_equal(m->confidence_samples, 4);
	assert_int_equal(m->confidence_seen, 4);
	assert_string_equal(m->confidence_source, "learned");
	assert_true(m->confidence == m->confidence_median);
	learned = m->confidence;
	print_message("learned model_confidence %.6f for model '%s'\n", learned, m->model);
	assert_int_equal(harness_http_get(mport, "/metrics", body, sizeof body), 200);
	snprintf(series, sizeof series, "certa_model_confidence{model=\"%s\",source=\"learned\"} ",
	    m->model);
	assert_non_null(strstr(body, series));
	assert_true(fabs(strtod(strstr(body, series) + strlen(series), NULL) - learned) < 1e-6);
	protobuf_c_message_free_unpacked(&r->base, NULL);

	/* kill -9: written when the learned level took over. */
	assert_int_equal(harness_kill9(f->d), 0);
	harness_proc_free(f->d);
	f->d = NULL;
	start_learning(f, &adm, &mport);
	m = model_row(adm, &r);
	assert_int_equal(m->confidence_samples, 4);
	assert_string_equal(m->confidence_source, "learned");
	assert_true(m->confidence == learned);
	protobuf_c_message_free_unpacked(&r->base, NULL);
	rpc_channel_free(adm);

	/* The same level from the history: per chain its first known probe mean, the median
	 * over the chains. */
	stop_export(f, out, sizeof out);
	assert_int_equal(harness_sh("python3 -c 'import json, statistics, sys\n"
	    "m = []\n"
	    "for l in open(sys.argv[1]):\n"
	    "    v = [p[3] for p in json.loads(l)[\"probes\"] if p[3] is not None and 0 < p[3] <= 1]\n"
	    "    if v: m.append(v[0])\n"
	    "lv = statistics.median(m)\n"
	    "print(\"history: %%d chains, level %%.6f\" %% (len(m), lv))\n"
	    "sys.exit(0 if len(m) == 4 and abs(lv - float(sys.argv[2])) < 2e-6 else 1)' %s %.9f",
	    out, learned), 0);
	f->passed = 1;
}

/* Two llm workers; the one holding a program is killed: the program finishes on the other. */
static void
test_failover(void **state)
{
	struct fx *f = *state;
	struct certa_client_events ev;
	struct rpc_stream *s;
	Certa__V1__Program *p;
	char holder[64], id[64];
	int ports[2], victim;

	need_model(f);
	start_worker(f);
	spawn_worker(f, f->model, "w2", &f->w2, &f->wport2);
	ports[0] = f->wport;
	ports[1] = f->wport2;
	start_daemon(f, ports, 2);
	submit_long(f, 0, &ev, &s);
	snprintf(id, sizeof id, "%s", ev.id);
	assert_non_null(s);
	p = get_program(f, id);
	snprintf(holder, sizeof holder, "%s", p->requests[0]->worker);
	protobuf_c_message_free_unpacked(&p->base, NULL);
	assert_non_null(strrchr(holder, ':'));
	victim = atoi(strrchr(holder, ':') + 1) == f->wport ? 0 : 1;
	assert_int_equal(atoi(strrchr(holder, ':') + 1), ports[victim]);
	assert_int_equal(harness_kill9(victim == 0 ? f->w : f->w2), 0);
	certa_client_events_read(s, 60000, 0, &ev);
	assert_int_equal(ev.status, GRPC_STATUS_OK);
	assert_non_null(ev.finished);
	assert_true(ev.finished->result->reason != CERTA__V1__FINISH_REASON__FINISH_REASON_FAILED);
	assert_true(ev.finished->result->tokens_used > 0);
	certa_client_events_free(&ev);
	p = get_program(f, id);
	assert_int_equal(atoi(strrchr(p->requests[0]->worker, ':') + 1), ports[1 - victim]);
	print_message("failover: %llu tokens, finished on %s\n",
	    (unsigned long long)p->tokens_used, p->requests[0]->worker);
	protobuf_c_message_free_unpacked(&p->base, NULL);
	/* The killed worker is gone: teardown must not expect a clean SIGTERM exit from it. */
	if (victim == 0) {
		harness_proc_free(f->w);
		f->w = f->w2;
		f->w2 = NULL;
		rpc_channel_free(f->ch);
		assert_int_equal(certa_client_channel(f->wport2, &f->ch), 0);
	}
	f->passed = 1;
}

/* Cancel mid-program on an llm worker: the program ends CANCELLED and the worker is told to
 * release the chain (its active count drops to 0). */
static void
test_cancel_releases(void **state)
{
	struct fx *f = *state;
	struct certa_client_events ev;
	struct rpc_stream *s;
	Certa__V1__CancelRequest c = CERTA__V1__CANCEL_REQUEST__INIT;
	Certa__V1__Program *p;
	char id[64];
	int i;

	need_model(f);
	start_worker(f);
	start_daemon(f, &f->wport, 1);
	submit_long(f, 0, &ev, &s);
	snprintf(id, sizeof id, "%s", ev.id);
	assert_non_null(s);   /* still running after its first progress event */
	c.program_id = id;
	assert_int_equal(call(f->dch, "/certa.v1.Reasoning/Cancel", &c.base,
	    &certa__v1__cancel_reply__descriptor, NULL, NULL), GRPC_STATUS_OK);
	certa_client_events_free(&ev);
	certa_client_events_read(s, 60000, 0, &ev);
	certa_client_events_free(&ev);
	p = wait_terminal(f, id);
	assert_int_equal(p->state, CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_CANCELLED);
	protobuf_c_message_free_unpacked(&p->base, NULL);
	/* The release travels after the cancel: give it a moment. */
	for (i = 0; i < 100 && active(f) != 0; i++)
		usleep(50000);
	assert_int_equal(active(f), 0);
	f->passed = 1;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_worker_steps, setup, teardown),
		cmocka_unit_test_setup_teardown(test_held_state, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_steps, setup, teardown),
		cmocka_unit_test_setup_teardown(test_programs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_moe_routing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_crash_resume, setup, teardown),
		cmocka_unit_test_setup_teardown(test_confidence_learned, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failover, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancel_releases, setup, teardown),
	};
	int rc;

	grpc_init();
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	grpc_shutdown();
	return rc;
}
