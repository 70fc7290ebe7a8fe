/*
 * test_openai.c — the openai engine against tests/upstream/fake_openai.py, an OpenAI-compatible
 * completions server over the recorded traces (docs/upstream.md "Tests"):
 *   - Worker.Step on an openai worker: the text is the trace's (as the replay engine slices
 *     it), the probe answer the recorded one with token probabilities, a retry from an
 *     earlier boundary gives the same text, a chain moved here continues from its text;
 *   - failures map as documented: 500, reset, timeout, refused -> UNAVAILABLE; 429 retried,
 *     then RESOURCE_EXHAUSTED; 400 -> INVALID_ARGUMENT with the upstream's message; 404 ->
 *     NOT_FOUND; malformed responses -> INTERNAL naming the field; a second upstream replica
 *     takes over from a dead one;
 *   - certad + an openai worker run cot and sc programs with the answers, reasons and tokens
 *     of certad + the replay worker; a worker whose upstream fails mid-program is failed over
 *     to another worker, which continues the chains from their text.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <unistd.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <cmocka.h>
#include <grpc/grpc.h>

#include "certa/v1/reasoning.pb-c.h"
#include "certa/v1/worker.pb-c.h"
#include "lib/rpc_client.h"
#include "lib/traces.h"
#include "scheduler/answer.h"
#include "tests/support/certa_client.h"
#include "tests/support/harness.h"
#include "tests/support/itest.h"
#include "workers/upstream/oai.h"

#define M_STEP "/certa.v1.Worker/Step"
#define NCOT 6
#define NSC 2

struct env {
	struct itest it;                /* first: the replay worker and certad A */
	struct traces *set;
	const struct traces_program *pg[NCOT]; /* programs whose final answers are in their text */
	size_t npg;
	struct harness_proc *up[2];     /* fake upstreams */
	int upport[2];
	struct harness_proc *ow[3];     /* openai workers */
	int owport[3];
	struct harness_proc *d2;        /* certad B */
	int d2port;
	struct rpc_channel *ch2, *wch;
};

static void
start_upstream(struct env *e, int i)
{
	char log[600], pf[600];
	const char *argv[] = { "/usr/bin/python3", "tests/upstream/fake_openai.py", "--traces",
	    harness_traces_dir(), "--port-file", pf, NULL };

	snprintf(log, sizeof log, "%s/up%d.log", e->it.dir, i);
	snprintf(pf, sizeof pf, "%s/up%d.port", e->it.dir, i);
	assert_int_equal(harness_spawn(&e->up[i], log, (char *const *)argv), 0);
	if (harness_wait_port_file(pf, 60000, &e->upport[i]) != 0) {
		harness_dump_log(e->up[i]);
		fail_msg("fake upstream %d did not start", i);
	}
}

/* POST /control to upstream i: {"mode": ...}. */
static void
control(struct env *e, int i, const char *fmt, ...)
{
	char body[512], req[1024], resp[512];
	struct sockaddr_in a;
	va_list ap;
	int fd, n;
	ssize_t got;

	va_start(ap, fmt);
	vsnprintf(body, sizeof body, fmt, ap);
	va_end(ap);
	n = snprintf(req, sizeof req, "POST /control HTTP/1.0\r\nContent-Type: application/json"
	    "\r\nContent-Length: %zu\r\n\r\n%s", strlen(body), body);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	memset(&a, 0, sizeof a);
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)e->upport[i]);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
	assert_int_equal(write(fd, req, (size_t)n), n);
	got = read(fd, resp, sizeof resp - 1);
	close(fd);
	assert_true(got > 12);
	resp[got] = '\0';
	assert_non_null(strstr(resp, " 200 "));
}

static void
start_ow(struct env *e, int k, const char *const extra[])
{
	const char *args[24];
	size_t a = 0, i;

	args[a++] = "--engine";
	args[a++] = "openai";
	args[a++] = "--model";
	args[a++] = traces_model_name(e->set, 0);
	for (i = 0; extra != NULL && extra[i] != NULL; i++)
		args[a++] = extra[i];
	args[a] = NULL;
	assert_int_equal(harness_start_worker(e->it.dir, harness_traces_dir(), args, &e->ow[k],
	    &e->owport[k]), 0);
}

static char *
url(int port)
{
	char *u;

	assert_true(asprintf(&u, "http://127.0.0.1:%d", port) > 0);
	return u;
}

/* Whether every sample's recorded final answer is the last \boxed{} after </think>. */
static int
answers_in_text(const struct traces_program *pg, size_t n)
{
	size_t i;

	for (i = 0; i < n && i < pg->nsamples; i++) {
		const struct trace *t = pg->samples[i];
		const char *th = strstr(t->text, "</think>");
		char *b = oai_boxed(th != NULL ? th + 8 : t->text);
		int same = b != NULL && strcmp(b, t->final_answer) == 0;
		free(b);
		if (!same)
			return 0;
	}
	return 1;
}

static int
setup(void **state)
{
	struct env *e;
	char *u;
	size_t i;

	*state = NULL;
	e = itest_new(sizeof *e, 600, ITEST_TRACES_NEED);
	if (e == NULL)
		return 0;
	assert_int_equal(traces_load(harness_traces_dir(), &e->set), 0);
	for (i = 0; i < traces_program_count(e->set) && e->npg < NCOT; i++) {
		const struct traces_program *pg = traces_program_at(e->set, i);
		if (strcmp(pg->model, traces_model_name(e->set, 0)) == 0 &&
		    strcmp(pg->dataset, "math500") == 0 && pg->nsamples >= 3 &&
		    answers_in_text(pg, 3))
			e->pg[e->npg++] = pg;
	}
	assert_int_equal(e->npg, NCOT);
	start_upstream(e, 0);
	u = url(e->upport[0]);
	{
		const char *extra[] = { "--upstream", u, "--set", "openai.timeout=2s", NULL };
		start_ow(e, 0, extra);
	}
	free(u);
	{
		char target[64];
		snprintf(target, sizeof target, "127.0.0.1:%d", e->owport[0]);
		assert_int_equal(rpc_channel_new(target, &e->wch), 0);
	}
	*state = e;
	return 0;
}

static int
teardown(void **state)
{
	struct env *e = *state;
	size_t i;

	if (e == NULL)
		return 0;
	if (e->ch2 != NULL)
		rpc_channel_free(e->ch2);
	if (e->wch != NULL)
		rpc_channel_free(e->wch);
	harness_proc_free(e->d2);
	for (i = 0; i < 3; i++)
		harness_proc_free(e->ow[i]);
	for (i = 0; i < 2; i++)
		harness_proc_free(e->up[i]);
	traces_free(e->set);
	itest_free(&e->it);
	return 0;
}

/* step() sends items without prompt (continue the worker's state: worker.proto). */
static int g_no_prompt;

/* One Step of one item of program pg's sample s on channel ch. */
static grpc_status_code
step(struct rpc_channel *ch, const struct traces_program *pg, const char *id, uint32_t s,
    uint64_t resume, const char *resume_text, uint32_t n, Certa__V1__StepReply **reply,
    char *details, size_t dlen)
{
	Certa__V1__StepRequest req = CERTA__V1__STEP_REQUEST__INIT;
	Certa__V1__StepItem item = CERTA__V1__STEP_ITEM__INIT, *ptr = &item;
	Certa__V1__SamplingParams sp = CERTA__V1__SAMPLING_PARAMS__INIT;
	ProtobufCMessage *r = NULL;
	grpc_status_code st;

	item.request_id = (char *)id;
	item.prompt = (char *)(g_no_prompt ? "" : pg->problem);
	item.sample_index = s;
	item.seed = s;
	item.max_new_tokens = n;
	item.resume_tokens = resume;
	item.resume_text = (char *)(resume_text != NULL ? resume_text : "");
	sp.temperature = 0.6f;
	sp.top_p = 0.95f;
	item.sampling = &sp;
	req.n_items = 1;
	req.items = &ptr;
	st = itest_call(ch, M_STEP, &req.base, &certa__v1__step_reply__descriptor, NULL, &r,
	    details, dlen);
	*reply = (Certa__V1__StepReply *)r;
	return st;
}

/* The replay engine's slice of trace t between token positions a and b. */
static char *
slice(const struct trace *t, uint64_t a, uint64_t b)
{
	size_t x = traces_text_offset(t, a), y = traces_text_offset(t, b);

	return strndup(t->text + x, y - x);
}

static void
test_step_contract(void **state)
{
	struct env *e = *state;
	const struct traces_program *pg;
	const struct trace *t;
	Certa__V1__StepReply *r = NULL, *r2 = NULL;
	const Certa__V1__StepResult *x;
	const struct trace_probe *p;
	char det[512], *want, *moved;
	uint64_t total;

	HARNESS_NEED_TRACES(e);
	pg = e->pg[0];
	t = pg->samples[1];
	/* First step from nothing. */
	assert_int_equal(step(e->wch, pg, "c/1", 1, 0, NULL, 200, &r, det, sizeof det),
	    GRPC_STATUS_OK);
	x = r->results[0];
	want = slice(t, 0, 200);
	assert_string_equal(x->text, want);
	free(want);
	assert_int_equal(x->new_tokens, 200);
	assert_int_equal(x->total_tokens, 200);
	assert_false(x->finished);
	p = traces_probe_at(t, 200);
	assert_non_null(x->probe);
	assert_string_equal(x->probe->answer, p != NULL ? p->answer : "");
	assert_true(x->probe_mean_prob > 0 && x->probe_mean_prob <= 1);
	assert_true(x->probe_min_prob > 0 && x->probe_min_prob <= x->probe_mean_prob + 1e-12);
	assert_true(x->chain_mean_entropy > 0);
	assert_true(x->experts_per_token < 0);
	total = x->total_tokens;
	protobuf_c_message_free_unpacked(&r->base, NULL);
	/* The next step continues from the worker's own text. */
	if (step(e->wch, pg, "c/1", 1, total, NULL, 300, &r, det, sizeof det) != GRPC_STATUS_OK)
		fail_msg("second step: %s", det);
	want = slice(t, 200, 500);
	assert_string_equal(r->results[0]->text, want);
	free(want);
	assert_int_equal(r->results[0]->total_tokens, 500);
	/* A retry from the earlier boundary (certad crashed before recording it): the same. */
	assert_int_equal(step(e->wch, pg, "c/1", 1, total, NULL, 300, &r2, det, sizeof det),
	    GRPC_STATUS_OK);
	assert_string_equal(r2->results[0]->text, r->results[0]->text);
	assert_string_equal(r2->results[0]->probe->answer, r->results[0]->probe->answer);
	protobuf_c_message_free_unpacked(&r2->base, NULL);
	/* Without prompt (worker.proto "Held state"): the held chain continues the same, with
	 * its own problem text; a chain not held is refused "state missing", not started. */
	g_no_prompt = 1;
	assert_int_equal(step(e->wch, pg, "c/1", 1, total, NULL, 300, &r2, det, sizeof det),
	    GRPC_STATUS_OK);
	assert_string_equal(r2->results[0]->text, r->results[0]->text);
	protobuf_c_message_free_unpacked(&r2->base, NULL);
	assert_int_equal(step(e->wch, pg, "n/1", 1, 0, NULL, 100, &r2, det, sizeof det),
	    GRPC_STATUS_FAILED_PRECONDITION);
	assert_non_null(strstr(det, "state missing: request n/1"));
	g_no_prompt = 0;
	protobuf_c_message_free_unpacked(&r->base, NULL);
	/* A chain moved here from another worker continues from the text it brings. */
	moved = slice(t, 0, 500);
	assert_int_equal(step(e->wch, pg, "m/1", 1, 500, moved, 100, &r, det, sizeof det),
	    GRPC_STATUS_OK);
	want = slice(t, 500, 600);
	assert_string_equal(r->results[0]->text, want);
	assert_int_equal(r->results[0]->total_tokens, 600);
	free(want);
	free(moved);
	protobuf_c_message_free_unpacked(&r->base, NULL);
	/* At a position it holds no text for, and none comes with the step: UNAVAILABLE, so
	 * certad moves the chain (with its text). */
	assert_int_equal(step(e->wch, pg, "x/1", 1, 64, NULL, 100, &r, det, sizeof det),
	    GRPC_STATUS_UNAVAILABLE);
	assert_non_null(strstr(det, "holds no text"));
	/* Measured: Step round trips of 64 tokens plus the probe (two HTTP requests to the
	 * Python server) on one chain. */
	{
		uint64_t pos = 500;
		double t0 = harness_clock_us();
		int k;
		for (k = 0; k < 20; k++) {
			assert_int_equal(step(e->wch, pg, "c/1", 1, pos, NULL, 64, &r, det,
			    sizeof det), GRPC_STATUS_OK);
			pos = r->results[0]->total_tokens;
			protobuf_c_message_free_unpacked(&r->base, NULL);
		}
		print_message("openai worker: a 64-token step with its probe: %.1f ms (mean of 20)\n",
		    (harness_clock_us() - t0) / 1000 / 20);
		/* The worker keeps the last 16 boundaries: 500 is gone, so a step from there
		 * must come with its text. */
		assert_int_equal(step(e->wch, pg, "c/1", 1, 500, NULL, 64, &r, det, sizeof det),
		    GRPC_STATUS_UNAVAILABLE);
		g_no_prompt = 1;
		assert_int_equal(step(e->wch, pg, "c/1", 1, 500, NULL, 64, &r, det, sizeof det),
		    GRPC_STATUS_FAILED_PRECONDITION);
		assert_non_null(strstr(det, "holds no text for the chain at resume_tokens"));
		g_no_prompt = 0;
		total = pos;
	}
	/* To the end: finished with the recorded final answer. */
	assert_int_equal(step(e->wch, pg, "c/1", 1, total, NULL, 1000000, &r, det, sizeof det),
	    GRPC_STATUS_OK);
	assert_true(r->results[0]->finished);
	assert_int_equal(r->results[0]->total_tokens, t->tokens_used);
	assert_string_equal(r->results[0]->final_answer, t->final_answer);
	assert_int_equal(r->results[0]->thinking_done, t->think_end > 0);
	protobuf_c_message_free_unpacked(&r->base, NULL);
}

/* An upstream whose context fills (vLLM's 400 "maximum context length"): a step with room
 * left is sent again cut to the room and finishes the chain; with no room the chain ends
 * with no new tokens; neither fails the Step. */
static void
test_context_full(void **state)
{
	struct env *e = *state;
	const struct traces_program *pg;
	const struct trace *t;
	Certa__V1__StepReply *r = NULL;
	char det[512], *want;

	HARNESS_NEED_TRACES(e);
	pg = e->pg[1];
	t = pg->samples[0];
	assert_true(t->tokens_used > 300);
	control(e, 0, "{\"mode\": \"context\", \"max_len\": 250}");
	if (step(e->wch, pg, "cf/0", 0, 0, NULL, 200, &r, det, sizeof det) != GRPC_STATUS_OK)
		fail_msg("first step: %s", det);
	assert_false(r->results[0]->finished);
	assert_int_equal(r->results[0]->total_tokens, 200);
	protobuf_c_message_free_unpacked(&r->base, NULL);
	/* 200 + 100 > 250: cut to 50, and the chain is finished (its context is full). */
	if (step(e->wch, pg, "cf/0", 0, 200, NULL, 100, &r, det, sizeof det) != GRPC_STATUS_OK)
		fail_msg("step at the context's end: %s", det);
	want = slice(t, 200, 250);
	assert_string_equal(r->results[0]->text, want);
	free(want);
	assert_int_equal(r->results[0]->new_tokens, 50);
	assert_int_equal(r->results[0]->total_tokens, 250);
	assert_true(r->results[0]->finished);
	protobuf_c_message_free_unpacked(&r->base, NULL);
	/* A chain that arrives with its context already full ends with no new tokens. */
	want = slice(t, 0, 250);
	if (step(e->wch, pg, "cf2/0", 0, 250, want, 64, &r, det, sizeof det) != GRPC_STATUS_OK)
		fail_msg("step with a full context: %s", det);
	free(want);
	assert_int_equal(r->results[0]->new_tokens, 0);
	assert_int_equal(r->results[0]->total_tokens, 250);
	assert_true(r->results[0]->finished);
	assert_string_equal(r->results[0]->text, "");
	protobuf_c_message_free_unpacked(&r->base, NULL);
	/* Any other 400 still fails the Step with the upstream's words. */
	control(e, 0, "{\"mode\": \"http400\", \"what\": \"prompt has a bad byte\"}");
	assert_int_equal(step(e->wch, pg, "cf3/0", 0, 0, NULL, 64, &r, det, sizeof det),
	    GRPC_STATUS_INVALID_ARGUMENT);
	assert_non_null(strstr(det, "bad byte"));
	control(e, 0, "{\"mode\": \"ok\"}");
}

/* Each failure mode of the upstream, and what the Step call says. */
static void
test_failures(void **state)
{
	static const struct {
		const char *control;
		grpc_status_code want;
		const char *says;
	} cases[] = {
		{ "{\"mode\": \"http500\"}", GRPC_STATUS_UNAVAILABLE, "HTTP 500: the engine died" },
		{ "{\"mode\": \"reset\"}", GRPC_STATUS_UNAVAILABLE, "upstream http://" },
		{ "{\"mode\": \"slow\", \"delay_ms\": 4000}", GRPC_STATUS_UNAVAILABLE, "imeout" },
		{ "{\"mode\": \"http429\"}", GRPC_STATUS_RESOURCE_EXHAUSTED,
		  "HTTP 429: too many requests (on command) (after 3 retries)" },
		{ "{\"mode\": \"http400\", \"what\": \"prompt too long\"}",
		  GRPC_STATUS_INVALID_ARGUMENT, "HTTP 400: prompt too long" },
		{ "{\"mode\": \"malformed\", \"what\": \"json\"}", GRPC_STATUS_INTERNAL,
		  "response is not JSON" },
		{ "{\"mode\": \"malformed\", \"what\": \"usage\"}", GRPC_STATUS_INTERNAL,
		  "response field usage: missing" },
		{ "{\"mode\": \"malformed\", \"what\": \"text\"}", GRPC_STATUS_INTERNAL,
		  "response field choices[0].text: expected a string, got number" },
		{ "{\"mode\": \"malformed\", \"what\": \"logprobs\"}", GRPC_STATUS_INTERNAL,
		  "choices[0].logprobs.token_logprobs[" },
		/* A 429 once: retried, the step succeeds. */
		{ "{\"mode\": \"http429\", \"count\": 1}", GRPC_STATUS_OK, NULL },
	};
	struct env *e = *state;
	Certa__V1__StepReply *r = NULL;
	char det[512], id[32];
	size_t i;

	HARNESS_NEED_TRACES(e);
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		grpc_status_code st;
		control(e, 0, "%s", cases[i].control);
		snprintf(id, sizeof id, "f%zu/0", i);
		st = step(e->wch, e->pg[1], id, 0, 0, NULL, 64, &r, det, sizeof det);
		if (st != cases[i].want || (cases[i].says != NULL &&
		    strstr(det, cases[i].says) == NULL))
			fail_msg("case %s: %s: %s; want %s with '%s'", cases[i].control,
			    rpc_status_name(st), det, rpc_status_name(cases[i].want),
			    cases[i].says ? cases[i].says : "");
		print_message("%-52s -> %s: %s\n", cases[i].control, rpc_status_name(st), det);
		if (r != NULL)
			protobuf_c_message_free_unpacked(&r->base, NULL);
		r = NULL;
	}
	control(e, 0, "{\"mode\": \"ok\"}");
	/* The worker still serves, and held no state from the failed steps. */
	assert_int_equal(step(e->wch, e->pg[1], "ok/0", 0, 0, NULL, 64, &r, det, sizeof det),
	    GRPC_STATUS_OK);
	protobuf_c_message_free_unpacked(&r->base, NULL);
	/* Held: f9/0 (the 429 retried) and ok/0; the failed steps left nothing. */
	assert_int_equal(itest_worker_active(e->wch, 5000), 2);
}

/* A worker stopped while a step waits on a slow upstream exits at once: the transfer is
 * abandoned, not waited for until openai.timeout (300 s here). */
static void
stop_while_waiting(struct env *e, struct rpc_channel *ch)
{
	control(e, 0, "{\"mode\": \"slow\", \"delay_ms\": 30000}");
	{
		Certa__V1__StepRequest req = CERTA__V1__STEP_REQUEST__INIT;
		Certa__V1__StepItem item = CERTA__V1__STEP_ITEM__INIT, *ptr = &item;
		ProtobufCMessage *rr = NULL;
		double t0;
		int status;

		item.request_id = (char *)"slow/0";
		item.prompt = (char *)e->pg[1]->problem;
		item.max_new_tokens = 64;
		req.n_items = 1;
		req.items = &ptr;
		assert_int_equal(itest_call_ms(ch, M_STEP, &req.base,
		    &certa__v1__step_reply__descriptor, 300, &rr, NULL),
		    GRPC_STATUS_DEADLINE_EXCEEDED);
		t0 = harness_clock_us();
		assert_int_equal(harness_signal(e->ow[1], SIGTERM), 0);
		assert_int_equal(harness_wait_exit(e->ow[1], 5000, &status), 0);
		assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
		print_message("stopped with a step in flight: exit 0 after %.0f ms\n",
		    (harness_clock_us() - t0) / 1000);
	}
	control(e, 0, "{\"mode\": \"ok\"}");
}

/* Refused connections; a model the upstream does not have; a dead replica before a live one. */
static void
test_refused_and_replicas(void **state)
{
	struct env *e = *state;
	Certa__V1__StepReply *r = NULL;
	struct rpc_channel *ch;
	char det[512], target[64], *dead, *live;
	int port = harness_free_port();

	HARNESS_NEED_TRACES(e);
	assert_true(port > 0);
	dead = url(port);
	live = url(e->upport[0]);
	{
		const char *extra[] = { "--upstream", dead, NULL };
		start_ow(e, 1, extra);
	}
	snprintf(target, sizeof target, "127.0.0.1:%d", e->owport[1]);
	assert_int_equal(rpc_channel_new(target, &ch), 0);
	assert_int_equal(step(ch, e->pg[2], "r/0", 0, 0, NULL, 64, &r, det, sizeof det),
	    GRPC_STATUS_UNAVAILABLE);
	assert_non_null(strstr(det, "ouldn't connect"));
	print_message("refused -> UNAVAILABLE: %s\n", det);
	rpc_channel_free(ch);
	harness_proc_free(e->ow[1]);
	e->ow[1] = NULL;
	/* Replicas: the dead one first; every step lands on the live one. */
	{
		const char *extra[] = { "--upstream", dead, "--upstream", live, "--model",
		    "no-such-model", NULL };
		start_ow(e, 1, extra);
	}
	snprintf(target, sizeof target, "127.0.0.1:%d", e->owport[1]);
	assert_int_equal(rpc_channel_new(target, &ch), 0);
	assert_int_equal(step(ch, e->pg[2], "r/0", 0, 0, NULL, 64, &r, det, sizeof det),
	    GRPC_STATUS_NOT_FOUND);
	assert_non_null(strstr(det, "HTTP 404: The model `no-such-model` does not exist."));
	print_message("unknown model -> NOT_FOUND: %s\n", det);
	rpc_channel_free(ch);
	harness_proc_free(e->ow[1]);
	{
		const char *extra[] = { "--upstream", dead, "--upstream", live, NULL };
		start_ow(e, 1, extra);
	}
	snprintf(target, sizeof target, "127.0.0.1:%d", e->owport[1]);
	assert_int_equal(rpc_channel_new(target, &ch), 0);
	assert_int_equal(step(ch, e->pg[2], "r/0", 0, 0, NULL, 64, &r, det, sizeof det),
	    GRPC_STATUS_OK);
	assert_int_equal(r->results[0]->total_tokens, 64);
	protobuf_c_message_free_unpacked(&r->base, NULL);
	assert_int_equal(step(ch, e->pg[2], "r/0", 0, 64, NULL, 64, &r, det, sizeof det),
	    GRPC_STATUS_OK);
	assert_int_equal(r->results[0]->total_tokens, 128);
	protobuf_c_message_free_unpacked(&r->base, NULL);
	stop_while_waiting(e, ch);
	rpc_channel_free(ch);
	harness_proc_free(e->ow[1]);
	e->ow[1] = NULL;
	free(dead);
	free(live);
}

/* Runs one program through certad on ch; returns its Finished event (caller frees). */
static Certa__V1__ProgramEvent *
run(struct rpc_channel *ch, const struct traces_program *pg, int sc)
{
	Certa__V1__ProgramSpec spec = CERTA__V1__PROGRAM_SPEC__INIT;
	struct certa_client_events ev;
	Certa__V1__ProgramEvent *fin;

	spec.problem = (char *)pg->problem;
	spec.model = (char *)pg->model;
	spec.algorithm = sc ? CERTA__V1__ALGORITHM__ALGORITHM_SC :
	    CERTA__V1__ALGORITHM__ALGORITHM_COT;
	spec.n = sc ? 3 : 1;
	itest_run(ch, &spec, NULL, &ev);
	fin = ev.last;
	ev.last = NULL;
	if (ev.status != GRPC_STATUS_OK || fin == NULL)
		fail_msg("program %s: %s: %s", pg->problem_id, rpc_status_name(ev.status),
		    ev.details);
	return fin;
}

/* The same program on both certads: same reason, answer and decode tokens. */
static void
same_outcome(struct env *e, struct rpc_channel *other, const struct traces_program *pg, int sc,
    const char *what)
{
	Certa__V1__ProgramEvent *a = run(e->it.ch, pg, sc), *b = run(other, pg, sc);
	const Certa__V1__ProgramResult *ra = a->finished->result, *rb = b->finished->result;

	if (ra->reason != rb->reason || ra->tokens_used != rb->tokens_used ||
	    strcmp(ra->answer, rb->answer) != 0)
		fail_msg("%s program %s (%s): replay reason=%d tokens=%llu answer=%s; openai "
		    "reason=%d tokens=%llu answer=%s", what, pg->problem_id, sc ? "sc" : "cot",
		    (int)ra->reason, (unsigned long long)ra->tokens_used, ra->answer,
		    (int)rb->reason, (unsigned long long)rb->tokens_used, rb->answer);
	print_message("%s %s %s: reason=%d tokens=%llu probe tokens %llu/%llu answer=%s\n", what,
	    sc ? "sc " : "cot", pg->problem_id, (int)ra->reason,
	    (unsigned long long)ra->tokens_used, (unsigned long long)ra->probe_tokens,
	    (unsigned long long)rb->probe_tokens, ra->answer);
	protobuf_c_message_free_unpacked(&a->base, NULL);
	protobuf_c_message_free_unpacked(&b->base, NULL);
}

/* The "failed" count of upstream i's /stats. */
static int
upstream_failed(struct env *e, int i)
{
	char stats[256];
	const char *f;

	assert_int_equal(harness_http_get(e->upport[i], "/stats", stats, sizeof stats), 200);
	f = strstr(stats, "\"failed\": ");
	assert_non_null(f);
	return atoi(f + 10);
}

/* Waits (10 s at most) until Worker.Info on ch succeeds. */
static void
wait_healthy(struct rpc_channel *ch)
{
	int i;

	for (i = 0; i < 100; i++) {
		Certa__V1__InfoRequest req = CERTA__V1__INFO_REQUEST__INIT;
		ProtobufCMessage *r = NULL;
		if (itest_call_ms(ch, "/certa.v1.Worker/Info", &req.base,
		    &certa__v1__info_reply__descriptor, 2000, &r, NULL) == GRPC_STATUS_OK) {
			protobuf_c_message_free_unpacked(r, NULL);
			return;
		}
		usleep(100000);
	}
	fail_msg("the worker did not become healthy again");
}

static void
start_certad_b(struct env *e, const int *wports, size_t n)
{
	const char *sets[] = { "workers.health_interval=100ms", "metrics.port=0",
	    "auth.anonymous_tenant=default", NULL };
	char dir[600];

	snprintf(dir, sizeof dir, "%s/b", e->it.dir);
	assert_int_equal(harness_sh("mkdir -p '%s'", dir), 0);
	if (harness_start_certad(dir, wports, n, sets, NULL, &e->d2, &e->d2port) != 0)
		fail_msg("certad B did not start");
	assert_int_equal(certa_client_channel(e->d2port, &e->ch2), 0);
	usleep(300000);
}

static void
test_programs_equal_replay(void **state)
{
	struct env *e = *state;
	size_t i;

	HARNESS_NEED_TRACES(e);
	itest_start(&e->it, NULL, ITEST_ANONYMOUS | ITEST_SETTLE, NULL);
	start_certad_b(e, &e->owport[0], 1);
	for (i = 0; i < NCOT; i++)
		same_outcome(e, e->ch2, e->pg[i], 0, "equal");
	for (i = 0; i < NSC; i++)
		same_outcome(e, e->ch2, e->pg[i], 1, "equal");
}

/* Two openai workers on two upstreams; the first upstream starts failing after a few
 * requests: certad moves the chains to the other worker, which continues from their text. */
static void
test_failover(void **state)
{
	struct env *e = *state;
	int wports[2];
	char *u2;
	size_t i;

	HARNESS_NEED_TRACES(e);
	start_upstream(e, 1);
	u2 = url(e->upport[1]);
	{
		/* Less capacity: certad places programs on worker 0 first. */
		const char *extra[] = { "--upstream", u2, "--capacity", "8", NULL };
		start_ow(e, 2, extra);
	}
	free(u2);
	itest_start(&e->it, NULL, ITEST_ANONYMOUS | ITEST_SETTLE, NULL);
	wports[0] = e->owport[0];
	wports[1] = e->owport[2];
	start_certad_b(e, wports, 2);
	for (i = 0; i < 2; i++) {
		char body[128];
		/* Two steps with their probes succeed, then every request fails. */
		snprintf(body, sizeof body, "{\"mode\": \"http500\", \"after\": 4}");
		control(e, 0, "%s", body);
		same_outcome(e, e->ch2, e->pg[3 + i], i, "failover");
		control(e, 0, "{\"mode\": \"ok\"}");
		/* Worker 0 says UNAVAILABLE to Info while its upstream counts as failing (5 s). */
		assert_int_equal(upstream_failed(e, 0) > 0, 1);
		wait_healthy(e->wch);
	}
	{
		char stats[256];
		assert_true(harness_http_get(e->upport[1], "/stats", stats, sizeof stats) == 200);
		print_message("second upstream: %s\n", stats);
		assert_null(strstr(stats, "\"requests\": 0,"));
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_step_contract, setup, teardown),
		cmocka_unit_test_setup_teardown(test_context_full, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failures, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refused_and_replicas, setup, teardown),
		cmocka_unit_test_setup_teardown(test_programs_equal_replay, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failover, setup, teardown),
	};
	int rc;

	grpc_init();
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	grpc_shutdown();
	return rc;
}
