/*
 * test_worker.c — certa-worker as a real process: the replay engine over gRPC, checked against
 * the recorded traces read here with lib/traces.
 *
 * Each test starts its own worker (port 0, port file) through tests/support/harness under a hard
 * per-test timeout; a failing test prints the worker's log.  Needs CERTA_TRACES (the Makefile
 * exports it); without it the tests that need traces skip.  BUILD selects the binaries.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <cmocka.h>
#include <grpc/grpc.h>

#include "certa/v1/reasoning.pb-c.h"
#include "certa/v1/worker.pb-c.h"
#include "lib/error.h"
#include "lib/log.h"
#include "lib/rpc.h"
#include "lib/rpc_client.h"
#include "lib/traces.h"
#include "tests/support/certa_client.h"
#include "tests/support/harness.h"

#define TEST_TIMEOUT_S 60       /* hard limit per test, worker start included */
#define RPC_DEADLINE_MS 10000   /* every RPC of these tests */
#define STEP 64                 /* the daemon's default step_tokens */

#define M_STEP "/certa.v1.Worker/Step"
#define M_RELEASE "/certa.v1.Worker/Release"
#define M_INFO "/certa.v1.Worker/Info"

/* The problem the tests replay (picked once in main), or why there is none. */
static struct harness_trace *g_tr;
static const char *g_traces_dir;
static int g_pick_err;
static int g_program_errors;    /* fx_step sets StepRequest.program_errors */

struct fx {
	char *dir;
	struct harness_proc *w;
	int port;
	struct rpc_channel *ch;
	int passed;             /* set last by a test; teardown prints the log otherwise */
};

/* One item of a step batch; NULL strings are sent as "". */
struct item_spec {
	const char *id;
	const char *prompt;
	uint32_t sample;
	uint32_t max_new;
	uint64_t resume;
	const char *model;
};

/* "exit N" / "signal N" for a wait status, in a static buffer (for failure messages). */
static const char *
wait_status_str(int status)
{
	static char buf[48];

	if (WIFEXITED(status))
		snprintf(buf, sizeof buf, "exit %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, sizeof buf, "killed by signal %d", WTERMSIG(status));
	else
		snprintf(buf, sizeof buf, "wait status 0x%x", (unsigned)status);
	return buf;
}

static int
setup(void **state)
{
	struct fx *f = calloc(1, sizeof *f);

	if (f == NULL)
		return -1;
	if (harness_fixture_setup(TEST_TIMEOUT_S, &f->dir, NULL) != 0) {
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

/* A passed test's worker must also stop cleanly: SIGTERM -> exit 0 (under ASan this is where
 * LeakSanitizer checks the worker).  Anything else fails the test with the log. */
static int
teardown(void **state)
{
	struct fx *f = *state;
	int rc = 0, status = 0;

	if (f->w != NULL && f->passed && harness_running(f->w)) {
		if (harness_signal(f->w, SIGTERM) != 0 ||
		    harness_wait_exit(f->w, 10000, &status) != 0 ||
		    !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
			fprintf(stderr, "worker did not stop cleanly on SIGTERM (%s)\n",
			    harness_running(f->w) ? "still running" : wait_status_str(status));
			f->passed = 0;
			rc = -1;
		}
	}
	if (f->w != NULL && !f->passed) {
		(void)harness_kill9(f->w);
		harness_dump_log(f->w);
	}
	if (f->ch != NULL)
		rpc_channel_free(f->ch);
	harness_proc_free(f->w);
	harness_fixture_teardown(f->dir, NULL);
	free(f);
	return rc;
}

/* Skips the test when there are no traces; fails it when they could not be used. */
static void
need_traces(void)
{
	if (g_traces_dir == NULL) {
		print_message("CERTA_TRACES unset or not a directory: skipping\n");
		skip();
	}
	if (g_tr == NULL)
		fail_msg("no usable MATH500 problem in %s: %s", g_traces_dir,
		    certa_strerror(g_pick_err));
}

/* Starts a worker on the recorded traces with extra arguments and opens a channel to it. */
static void
fx_start(struct fx *f, const char *const extra[])
{
	need_traces();
	assert_int_equal(harness_start_worker(f->dir, g_traces_dir, extra, &f->w, &f->port), 0);
	assert_int_equal(certa_client_channel(f->port, &f->ch), 0);
}

/* One unary call with the standard deadline; the call itself must run. */
static grpc_status_code
fx_call(struct fx *f, const char *method, const ProtobufCMessage *req,
    const ProtobufCMessageDescriptor *rd, ProtobufCMessage **reply, char **details)
{
	grpc_status_code st = GRPC_STATUS_UNKNOWN;
	ProtobufCMessage *r = NULL;
	char *d = NULL;

	assert_int_equal(certa_client_unary(f->ch, method, req, rd, RPC_DEADLINE_MS, NULL, &r, &st,
	    &d), 0);
	if (st == GRPC_STATUS_OK)
		assert_non_null(r);
	if (reply != NULL)
		*reply = r;
	else if (r != NULL)
		protobuf_c_message_free_unpacked(r, NULL);
	if (details != NULL)
		*details = d;
	else
		free(d);
	return st;
}

static Certa__V1__InfoReply *
fx_info(struct fx *f)
{
	Certa__V1__InfoRequest req = CERTA__V1__INFO_REQUEST__INIT;
	ProtobufCMessage *reply = NULL;

	assert_int_equal(fx_call(f, M_INFO, &req.base, &certa__v1__info_reply__descriptor,
	    &reply, NULL), GRPC_STATUS_OK);
	return (Certa__V1__InfoReply *)reply;
}

static uint32_t
fx_active(struct fx *f)
{
	Certa__V1__InfoReply *info = fx_info(f);
	uint32_t active = info->active;

	protobuf_c_message_free_unpacked(&info->base, NULL);
	return active;
}

/* Sends one Step batch; *reply only when OK. */
static grpc_status_code
fx_step(struct fx *f, const struct item_spec *spec, size_t n, Certa__V1__StepReply **reply,
    char **details)
{
	Certa__V1__StepRequest req = CERTA__V1__STEP_REQUEST__INIT;
	static Certa__V1__StepItem items[256];
	Certa__V1__StepItem *ptrs[256];
	ProtobufCMessage *r = NULL;
	grpc_status_code st;
	size_t i;

	assert_true(n <= 256);
	for (i = 0; i < n; i++) {
		certa__v1__step_item__init(&items[i]);
		items[i].request_id = (char *)(spec[i].id ? spec[i].id : "");
		items[i].prompt = (char *)(spec[i].prompt ? spec[i].prompt : "");
		items[i].sample_index = spec[i].sample;
		items[i].max_new_tokens = spec[i].max_new;
		items[i].resume_tokens = spec[i].resume;
		items[i].model = (char *)(spec[i].model ? spec[i].model : "");
		items[i].seed = 42 + spec[i].sample;
		ptrs[i] = &items[i];
	}
	req.n_items = n;
	req.items = n > 0 ? ptrs : NULL;
	req.program_errors = g_program_errors;
	st = fx_call(f, M_STEP, &req.base, &certa__v1__step_reply__descriptor, &r, details);
	if (st == GRPC_STATUS_OK) {
		assert_int_equal(((Certa__V1__StepReply *)r)->n_results, n);
		*reply = (Certa__V1__StepReply *)r;
	}
	return st;
}

/* Steps one item that must succeed; returns its reply (caller frees). */
static Certa__V1__StepReply *
fx_step1(struct fx *f, const char *id, uint32_t sample, uint64_t resume, uint32_t max_new)
{
	struct item_spec s = { id, g_tr->problem, sample, max_new, resume, NULL };
	Certa__V1__StepReply *reply = NULL;
	char *details = NULL;
	grpc_status_code st = fx_step(f, &s, 1, &reply, &details);

	if (st != GRPC_STATUS_OK)
		fail_msg("Step %s: %s: %s", id, rpc_status_name(st), details ? details : "");
	free(details);
	assert_non_null(reply->results[0]);
	assert_string_equal(reply->results[0]->request_id, id);
	return reply;
}

static void
free_reply(Certa__V1__StepReply *r)
{
	protobuf_c_message_free_unpacked(&r->base, NULL);
}

/* The recorded text of t between two token positions, as the replay engine slices it. */
static char *
trace_slice(const struct trace *t, uint64_t from, uint64_t to)
{
	size_t a = traces_text_offset(t, from), b = traces_text_offset(t, to);
	char *s = strndup(t->text + a, b - a);

	assert_non_null(s);
	return s;
}

/* The trace of (model, problem, seed) found by scanning every trace: an oracle that does not go
 * through the index the worker uses. */
static const struct trace *
trace_by_seed(int64_t seed)
{
	const struct trace *t;
	size_t i;

	for (i = 0; (t = traces_at(g_tr->set, i)) != NULL; i++)
		if (t->seed == seed && strcmp(t->model, g_tr->model) == 0 &&
		    strcmp(t->problem, g_tr->problem) == 0 &&
		    strcmp(t->dataset, g_tr->dataset) == 0)
			return t;
	return NULL;
}

/* ---- tests ---- */

/* Info: engine, models and capacity as the traces and the command line say. */
static void
test_info(void **state)
{
	struct fx *f = *state;
	Certa__V1__InfoReply *info;
	size_t i;

	fx_start(f, NULL);
	info = fx_info(f);
	assert_string_equal(info->engine, "replay");
	assert_string_equal(info->model, traces_model_name(g_tr->set, 0));
	assert_int_equal(info->n_models, traces_model_count(g_tr->set));
	for (i = 0; i < info->n_models; i++)
		assert_string_equal(info->models[i], traces_model_name(g_tr->set, i));
	assert_int_equal(info->capacity, 256);
	assert_int_equal(info->active, 0);
	assert_int_equal(info->problems, traces_program_count(g_tr->set));
	assert_true(info->version[0] != '\0');
	protobuf_c_message_free_unpacked(&info->base, NULL);
	f->passed = 1;
}

/* One step advances by max_new_tokens and returns the recorded slice and probe answer. */
static void
test_step_one(void **state)
{
	struct fx *f = *state;
	const struct trace *t;
	Certa__V1__StepReply *r;
	Certa__V1__StepResult *res;
	char *want;

	fx_start(f, NULL);
	t = g_tr->samples[0];
	assert_true(t->tokens_used > STEP + 100);

	r = fx_step1(f, "p1/0", 0, 0, STEP);
	res = r->results[0];
	assert_int_equal(res->new_tokens, STEP);
	assert_int_equal(res->total_tokens, STEP);
	assert_true(res->text[0] != '\0');
	want = trace_slice(t, 0, STEP);
	assert_string_equal(res->text, want);
	free(want);
	assert_non_null(res->probe);
	assert_string_equal(res->probe->answer, traces_answer_at(t, STEP));
	assert_false(res->finished);
	assert_string_equal(res->final_answer, "");
	assert_int_equal(res->thinking_done, STEP >= t->think_end);
	free_reply(r);

	/* A step that does not end on a probe position: the probe in effect there. */
	r = fx_step1(f, "p1/0", 0, STEP, 100);
	res = r->results[0];
	assert_int_equal(res->new_tokens, 100);
	assert_int_equal(res->total_tokens, STEP + 100);
	want = trace_slice(t, STEP, STEP + 100);
	assert_string_equal(res->text, want);
	free(want);
	assert_string_equal(res->probe->answer, traces_answer_at(t, STEP + 100));
	free_reply(r);
	assert_int_equal(fx_active(f), 1);
	f->passed = 1;
}

/* Stepping as the daemon does (resume = previous total) replays the whole recorded run. */
static void
test_step_to_end(void **state)
{
	struct fx *f = *state;
	const struct trace *t;
	Certa__V1__StepReply *r;
	Certa__V1__StepResult *res;
	uint64_t total = 0, max_steps, nsteps = 0;
	size_t len = 0;
	char *text;
	int finished = 0, think_seen = 0;

	fx_start(f, NULL);
	t = g_tr->samples[0];
	max_steps = t->tokens_used / STEP + 2;
	text = calloc(1, t->text_len + 1);
	assert_non_null(text);
	while (!finished) {
		assert_true(++nsteps <= max_steps);
		r = fx_step1(f, "run/0", 0, total, STEP);
		res = r->results[0];
		assert_int_equal(res->total_tokens, total + res->new_tokens);
		assert_true(res->new_tokens == STEP || res->total_tokens == t->tokens_used);
		total = res->total_tokens;
		assert_string_equal(res->probe->answer, traces_answer_at(t, total));
		assert_int_equal(res->thinking_done, total >= t->think_end);
		think_seen |= res->thinking_done;
		assert_true(len + strlen(res->text) <= t->text_len);
		memcpy(text + len, res->text, strlen(res->text));
		len += strlen(res->text);
		finished = res->finished;
		if (finished)
			assert_string_equal(res->final_answer, g_tr->final_answer);
		else
			assert_string_equal(res->final_answer, "");
		free_reply(r);
	}
	assert_int_equal(total, g_tr->tokens_used);
	assert_int_equal(total, t->tokens_used);
	assert_true(think_seen);
	assert_int_equal(len, t->text_len);
	assert_string_equal(text, t->text);
	free(text);

	/* One token short of the end is not finished; the last token finishes. */
	r = fx_step1(f, "edge/0", 0, 0, (uint32_t)(t->tokens_used - 1));
	assert_int_equal(r->results[0]->total_tokens, t->tokens_used - 1);
	assert_false(r->results[0]->finished);
	assert_string_equal(r->results[0]->final_answer, "");
	free_reply(r);
	r = fx_step1(f, "edge/0", 0, t->tokens_used - 1, STEP);
	assert_int_equal(r->results[0]->new_tokens, 1);
	assert_true(r->results[0]->finished);
	assert_string_equal(r->results[0]->final_answer, g_tr->final_answer);
	free_reply(r);

	/* A retried step at the end: nothing new, still finished with the same answer. */
	r = fx_step1(f, "run/0", 0, total, STEP);
	assert_int_equal(r->results[0]->new_tokens, 0);
	assert_int_equal(r->results[0]->total_tokens, total);
	assert_string_equal(r->results[0]->text, "");
	assert_true(r->results[0]->finished);
	assert_string_equal(r->results[0]->final_answer, g_tr->final_answer);
	free_reply(r);
	f->passed = 1;
}

/* Sample index i replays the i-th seed (42, 43, 44): whole runs compared. */
static void
test_sample_index_selects_seed(void **state)
{
	struct fx *f = *state;
	Certa__V1__StepReply *r;
	Certa__V1__StepResult *res;
	const struct trace *t;
	char id[32];
	size_t i;

	fx_start(f, NULL);
	assert_int_equal(g_tr->nsamples, 3);
	for (i = 0; i < g_tr->nsamples; i++) {
		t = trace_by_seed(42 + (int64_t)i);
		assert_non_null(t);
		snprintf(id, sizeof id, "sc/%zu", i);
		r = fx_step1(f, id, (uint32_t)i, 0, (uint32_t)t->tokens_used);
		res = r->results[0];
		assert_int_equal(res->total_tokens, t->tokens_used);
		assert_true(res->finished);
		assert_string_equal(res->text, t->text);
		assert_string_equal(res->final_answer, t->final_answer);
		free_reply(r);
	}
	assert_int_equal(fx_active(f), g_tr->nsamples);
	f->passed = 1;
}

/* Asking for more samples than recorded names the limit. */
static void
test_sample_index_out_of_range(void **state)
{
	struct fx *f = *state;
	struct item_spec s = { "sc/9", NULL, 0, STEP, 0, NULL };
	Certa__V1__StepReply *r = NULL;
	char *details = NULL, want[32];

	fx_start(f, NULL);
	s.prompt = g_tr->problem;
	s.sample = (uint32_t)g_tr->nsamples;
	assert_int_equal(fx_step(f, &s, 1, &r, &details), GRPC_STATUS_INVALID_ARGUMENT);
	snprintf(want, sizeof want, "only %zu", g_tr->nsamples);
	assert_non_null(details);
	if (strstr(details, want) == NULL)
		fail_msg("details '%s' do not contain '%s'", details, want);
	free(details);
	assert_int_equal(fx_active(f), 0);
	f->passed = 1;
}

/* A problem nobody recorded: NOT_FOUND naming the traces directory. */
static void
test_unknown_prompt(void **state)
{
	struct fx *f = *state;
	struct item_spec s = { "u/0", "certa integration test: a problem that was never recorded",
	    0, STEP, 0, NULL };
	Certa__V1__StepReply *r = NULL;
	char *details = NULL;

	fx_start(f, NULL);
	assert_int_equal(fx_step(f, &s, 1, &r, &details), GRPC_STATUS_NOT_FOUND);
	assert_non_null(details);
	if (strstr(details, g_traces_dir) == NULL)
		fail_msg("details '%s' do not name %s", details, g_traces_dir);
	free(details);
	assert_int_equal(fx_active(f), 0);
	f->passed = 1;
}

/* Bytes of another message type that do not parse as a StepRequest: INVALID_ARGUMENT, and the
 * worker keeps serving. */
static void
test_malformed_bytes(void **state)
{
	struct fx *f = *state;
	Certa__V1__GetRequest bad = CERTA__V1__GET_REQUEST__INIT;
	uint8_t buf[64];
	size_t len;
	ProtobufCMessage *parsed;
	char *details = NULL;

	bad.program_id = (char *)"\xff\xff\xff\xff\xff";
	/* The premise: these bytes really are not a StepRequest. */
	len = protobuf_c_message_pack(&bad.base, buf);
	assert_true(len > 0 && len < sizeof buf);
	parsed = protobuf_c_message_unpack(&certa__v1__step_request__descriptor, NULL, len, buf);
	assert_null(parsed);

	fx_start(f, NULL);
	assert_int_equal(fx_call(f, M_STEP, &bad.base, &certa__v1__step_reply__descriptor, NULL,
	    &details), GRPC_STATUS_INVALID_ARGUMENT);
	free(details);
	assert_true(harness_running(f->w));
	assert_int_equal(fx_active(f), 0);
	f->passed = 1;
}

static void
test_empty_batch(void **state)
{
	struct fx *f = *state;
	Certa__V1__StepReply *r = NULL;
	char *details = NULL;

	fx_start(f, NULL);
	assert_int_equal(fx_step(f, NULL, 0, &r, &details), GRPC_STATUS_INVALID_ARGUMENT);
	free(details);
	assert_int_equal(fx_active(f), 0);
	f->passed = 1;
}

/* Refused items, each next to a valid one: the batch fails as a whole and nothing changes. */
static const struct bad_item_case {
	const char *name;
	struct item_spec item;  /* prompt NULL: the picked problem */
	int prompt_empty;
	grpc_status_code status;
	const char *needle;     /* NULL: the traces directory */
} bad_item_cases[] = {
	{ "missing request_id", { "", NULL, 0, STEP, 0, NULL }, 0,
	  GRPC_STATUS_INVALID_ARGUMENT, "missing request_id" },
	/* Without prompt: continue held state; none is held for b/1 (worker.proto). */
	{ "no prompt, no state", { "b/1", NULL, 0, STEP, 0, NULL }, 1,
	  GRPC_STATUS_FAILED_PRECONDITION, "state missing: request b/1" },
	{ "zero max_new_tokens", { "b/1", NULL, 0, 0, 0, NULL }, 0,
	  GRPC_STATUS_INVALID_ARGUMENT, "max_new_tokens" },
	{ "duplicate id", { "ok/0", NULL, 1, STEP, 0, NULL }, 0,
	  GRPC_STATUS_INVALID_ARGUMENT, "twice" },
	{ "sample out of range", { "b/1", NULL, 99, STEP, 0, NULL }, 0,
	  GRPC_STATUS_INVALID_ARGUMENT, "only" },
	{ "unknown prompt", { "b/1", "never recorded", 0, STEP, 0, NULL }, 0,
	  GRPC_STATUS_NOT_FOUND, NULL },
	{ "unknown model", { "b/1", NULL, 0, STEP, 0, "no-such-model" }, 0,
	  GRPC_STATUS_NOT_FOUND, "no-such-model" },
};

static void
test_bad_item_changes_nothing(void **state)
{
	struct fx *f = *state;
	Certa__V1__StepReply *r = NULL;
	char *details;
	size_t i;

	fx_start(f, NULL);
	for (i = 0; i < sizeof bad_item_cases / sizeof bad_item_cases[0]; i++) {
		const struct bad_item_case *c = &bad_item_cases[i];
		struct item_spec batch[2] = { { "ok/0", g_tr->problem, 0, STEP, 0, NULL }, c->item };
		const char *needle = c->needle ? c->needle : g_traces_dir;
		grpc_status_code st;

		if (batch[1].prompt == NULL)
			batch[1].prompt = c->prompt_empty ? "" : g_tr->problem;
		details = NULL;
		st = fx_step(f, batch, 2, &r, &details);
		if (st != c->status || details == NULL || strstr(details, needle) == NULL)
			fail_msg("%s: got %s '%s', want %s with '%s'", c->name, rpc_status_name(st),
			    details ? details : "", rpc_status_name(c->status), needle);
		free(details);
		assert_int_equal(fx_active(f), 0);
	}
	f->passed = 1;
}

/* --capacity 2: a batch that does not fit is refused whole; Release makes room. */
/* program_errors (certad's batches of several programs): a program the engine refuses gets
 * its error on its own results, the other programs of the call are stepped; and a batch of
 * 256 programs (certad's largest) goes through in one call. */
static void
test_program_errors(void **state)
{
	struct fx *f = *state;
	struct item_spec batch[4] = {
		{ "ok/0", NULL, 0, STEP, 0, NULL },
		{ "ok/1", NULL, 1, STEP, 0, NULL },
		{ "bad/0", "certa integration test: a problem that was never recorded", 0, STEP, 0,
		  NULL },
		{ "ok2/0", NULL, 0, STEP, 0, NULL },
	};
	static struct item_spec many[256];
	static char ids[256][16];
	Certa__V1__StepReply *r = NULL;
	size_t i;

	fx_start(f, NULL);
	g_program_errors = 1;
	batch[0].prompt = batch[1].prompt = batch[3].prompt = g_tr->problem;
	assert_int_equal(fx_step(f, batch, 4, &r, NULL), GRPC_STATUS_OK);
	for (i = 0; i < 4; i++) {
		const Certa__V1__StepResult *res = r->results[i];
		assert_string_equal(res->request_id, batch[i].id);
		if (i == 2) {
			assert_int_equal(res->error_code, GRPC_STATUS_NOT_FOUND);
			assert_non_null(strstr(res->error_message, g_traces_dir));
			assert_int_equal(res->total_tokens, 0);
			continue;
		}
		assert_int_equal(res->error_code, 0);
		assert_int_equal(res->total_tokens, STEP);
		assert_true(res->text[0] != '\0');
	}
	free_reply(r);
	assert_int_equal(fx_active(f), 3);

	/* Without it the same batch is all or nothing, as before. */
	g_program_errors = 0;
	batch[0].resume = batch[1].resume = batch[3].resume = STEP;
	assert_int_equal(fx_step(f, batch, 4, &r, NULL), GRPC_STATUS_NOT_FOUND);
	assert_int_equal(fx_active(f), 3);

	/* 256 programs in one call (the replay engine's default capacity: 3 held + 253 new). */
	g_program_errors = 1;
	for (i = 0; i < 256; i++) {
		if (i < 3) {
			many[i] = batch[i == 2 ? 3 : i];
			continue;
		}
		snprintf(ids[i], sizeof ids[i], "m%zu/0", i);
		many[i] = (struct item_spec){ ids[i], g_tr->problem, 0, STEP, 0, NULL };
	}
	assert_int_equal(fx_step(f, many, 256, &r, NULL), GRPC_STATUS_OK);
	for (i = 0; i < 256; i++) {
		assert_int_equal(r->results[i]->error_code, 0);
		assert_int_equal(r->results[i]->total_tokens, i < 3 ? 2 * STEP : STEP);
	}
	free_reply(r);
	assert_int_equal(fx_active(f), 256);
	g_program_errors = 0;
	f->passed = 1;
}

/* Held state over the wire (worker.proto "Held state"): Info says prompt_once; with
 * program_errors a program sent without prompt that the worker holds no state for gets
 * state_missing (FAILED_PRECONDITION) on its own results while the others are stepped, and
 * once stepped with its prompt it continues without, as a step with the prompt would. */
static void
test_state_missing(void **state)
{
	struct fx *f = *state;
	struct item_spec batch[2] = {
		{ "held/0", NULL, 0, STEP, 0, NULL },
		{ "new/0", "", 0, STEP, 0, NULL },
	};
	Certa__V1__StepReply *r = NULL, *ref;
	Certa__V1__InfoReply *info;

	fx_start(f, NULL);
	info = fx_info(f);
	assert_true(info->prompt_once);
	protobuf_c_message_free_unpacked(&info->base, NULL);
	batch[0].prompt = g_tr->problem;
	g_program_errors = 1;
	assert_int_equal(fx_step(f, batch, 2, &r, NULL), GRPC_STATUS_OK);
	assert_int_equal(r->results[0]->error_code, 0);
	assert_false(r->results[0]->state_missing);
	assert_int_equal(r->results[1]->error_code, GRPC_STATUS_FAILED_PRECONDITION);
	assert_true(r->results[1]->state_missing);
	assert_non_null(strstr(r->results[1]->error_message, "state missing: request new/0"));
	free_reply(r);
	assert_int_equal(fx_active(f), 1);
	/* held/0 continues without its prompt; new/0 with it is stepped from the start. */
	batch[0].prompt = "";
	batch[0].resume = STEP;
	batch[1].prompt = g_tr->problem;
	assert_int_equal(fx_step(f, batch, 2, &r, NULL), GRPC_STATUS_OK);
	g_program_errors = 0;
	ref = fx_step1(f, "ref/0", 0, STEP, STEP);
	assert_int_equal(r->results[0]->error_code, 0);
	assert_int_equal(r->results[0]->total_tokens, 2 * STEP);
	assert_string_equal(r->results[0]->text, ref->results[0]->text);
	assert_int_equal(r->results[1]->error_code, 0);
	assert_int_equal(r->results[1]->total_tokens, STEP);
	free_reply(r);
	free_reply(ref);
	f->passed = 1;
}

static void
test_capacity(void **state)
{
	static const char *const extra[] = { "--capacity", "2", NULL };
	struct fx *f = *state;
	struct item_spec three[3] = {
		{ "c1/0", NULL, 0, STEP, 0, NULL },
		{ "c2/0", NULL, 0, STEP, 0, NULL },
		{ "c3/0", NULL, 0, STEP, 0, NULL },
	};
	Certa__V1__ReleaseRequest rel = CERTA__V1__RELEASE_REQUEST__INIT;
	Certa__V1__ReleaseReply *rr = NULL;
	Certa__V1__InfoReply *info;
	Certa__V1__StepReply *r = NULL;
	char *ids[2], *details = NULL;
	size_t i;

	fx_start(f, extra);
	for (i = 0; i < 3; i++)
		three[i].prompt = g_tr->problem;
	info = fx_info(f);
	assert_int_equal(info->capacity, 2);
	assert_int_equal(info->active, 0);
	protobuf_c_message_free_unpacked(&info->base, NULL);

	assert_int_equal(fx_step(f, three, 3, &r, &details), GRPC_STATUS_RESOURCE_EXHAUSTED);
	assert_non_null(details);
	assert_non_null(strstr(details, "capacity"));
	free(details);
	assert_int_equal(fx_active(f), 0);

	/* Two fit; a third new one does not, but the held ones keep stepping. */
	assert_int_equal(fx_step(f, three, 2, &r, NULL), GRPC_STATUS_OK);
	free_reply(r);
	assert_int_equal(fx_active(f), 2);
	assert_int_equal(fx_step(f, &three[2], 1, &r, NULL), GRPC_STATUS_RESOURCE_EXHAUSTED);
	assert_int_equal(fx_active(f), 2);
	three[0].resume = STEP;
	three[1].resume = STEP;
	assert_int_equal(fx_step(f, three, 2, &r, NULL), GRPC_STATUS_OK);
	assert_int_equal(r->results[0]->total_tokens, 2 * STEP);
	free_reply(r);

	/* Release one (plus an unknown id, ignored). */
	ids[0] = (char *)"c1/0";
	ids[1] = (char *)"never-stepped/0";
	rel.n_request_ids = 2;
	rel.request_ids = ids;
	assert_int_equal(fx_call(f, M_RELEASE, &rel.base, &certa__v1__release_reply__descriptor,
	    (ProtobufCMessage **)&rr, NULL), GRPC_STATUS_OK);
	assert_int_equal(rr->released, 1);
	protobuf_c_message_free_unpacked(&rr->base, NULL);
	assert_int_equal(fx_active(f), 1);

	assert_int_equal(fx_step(f, &three[2], 1, &r, NULL), GRPC_STATUS_OK);
	free_reply(r);
	assert_int_equal(fx_active(f), 2);
	f->passed = 1;
}

/* The same resume_tokens gives the same text, also after the request moved past it. */
static void
test_step_idempotent(void **state)
{
	struct fx *f = *state;
	Certa__V1__StepReply *a, *b, *c;
	char *want;

	fx_start(f, NULL);
	a = fx_step1(f, "i/0", 0, 0, STEP);
	b = fx_step1(f, "i/0", 0, 0, STEP);
	assert_string_equal(a->results[0]->text, b->results[0]->text);
	assert_int_equal(a->results[0]->total_tokens, b->results[0]->total_tokens);
	free_reply(b);
	c = fx_step1(f, "i/0", 0, STEP, STEP);
	b = fx_step1(f, "i/0", 0, 2 * STEP, STEP);
	free_reply(b);
	/* Back to an earlier position (a retry after a daemon crash). */
	b = fx_step1(f, "i/0", 0, STEP, STEP);
	assert_string_equal(b->results[0]->text, c->results[0]->text);
	assert_string_equal(b->results[0]->probe->answer, c->results[0]->probe->answer);
	assert_int_equal(b->results[0]->total_tokens, 2 * STEP);
	want = trace_slice(g_tr->samples[0], STEP, 2 * STEP);
	assert_string_equal(c->results[0]->text, want);
	free(want);
	assert_string_not_equal(a->results[0]->text, c->results[0]->text);
	free_reply(a);
	free_reply(b);
	free_reply(c);
	assert_int_equal(fx_active(f), 1);
	f->passed = 1;
}

/* SIGTERM: the worker shuts down cleanly and exits 0 within a few seconds. */
static void
test_sigterm_exits_zero(void **state)
{
	struct fx *f = *state;
	Certa__V1__StepReply *r;
	int status = 0;

	fx_start(f, NULL);
	r = fx_step1(f, "t/0", 0, 0, STEP);
	free_reply(r);
	assert_int_equal(harness_signal(f->w, SIGTERM), 0);
	assert_int_equal(harness_wait_exit(f->w, 5000, &status), 0);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail_msg("worker ended with %s after SIGTERM, want exit 0",
		    wait_status_str(status));
	f->passed = 1;
}

/* SIGTERM while a paced step (--step-delay) is still held: the worker still exits 0 promptly,
 * and a step whose caller gave up before it ran changes nothing. */
static void
test_sigterm_with_step_held(void **state)
{
	static const char *const extra[] = { "--step-delay", "1000", NULL };
	struct fx *f = *state;
	Certa__V1__StepRequest req = CERTA__V1__STEP_REQUEST__INIT;
	Certa__V1__StepItem item = CERTA__V1__STEP_ITEM__INIT, *ptr = &item;
	ProtobufCMessage *reply = NULL;
	grpc_status_code st = GRPC_STATUS_OK;
	char *details = NULL;
	int status = 0;

	fx_start(f, extra);
	item.request_id = (char *)"held/0";
	item.prompt = (char *)g_tr->problem;
	item.max_new_tokens = STEP;
	req.n_items = 1;
	req.items = &ptr;
	/* The caller gives up long before the step would run. */
	assert_int_equal(rpc_sync_unary(f->ch, M_STEP, &req.base,
	    &certa__v1__step_reply__descriptor, 200, NULL, 0, &reply, &st, &details), 0);
	free(details);
	assert_int_equal(st, GRPC_STATUS_DEADLINE_EXCEEDED);
	usleep(1300 * 1000);
	assert_int_equal(fx_active(f), 0);

	/* Again, and stop the worker while the step is held. */
	details = NULL;
	assert_int_equal(rpc_sync_unary(f->ch, M_STEP, &req.base,
	    &certa__v1__step_reply__descriptor, 200, NULL, 0, &reply, &st, &details), 0);
	free(details);
	assert_int_equal(st, GRPC_STATUS_DEADLINE_EXCEEDED);
	assert_int_equal(harness_signal(f->w, SIGTERM), 0);
	assert_int_equal(harness_wait_exit(f->w, 5000, &status), 0);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail_msg("worker ended with %s after SIGTERM with a held step, want exit 0",
		    wait_status_str(status));
	f->passed = 1;
}

/* No traces to replay: the worker refuses to start, saying why. */
static void
test_refuses_without_traces(void **state)
{
	struct fx *f = *state;
	static const char *const kinds[] = { "missing", "empty" };
	char *bin = harness_bin("certa-worker");
	size_t k;

	assert_non_null(bin);
	for (k = 0; k < 2; k++) {
		char traces[512], port_file[512], log_file[512], want[600], *log = NULL;
		char *argv[] = { bin, (char *)"--listen", (char *)"127.0.0.1:0",
		    (char *)"--port-file", port_file, (char *)"--engine", (char *)"replay",
		    (char *)"--traces", traces, NULL };
		struct stat st;
		int status = 0;

		snprintf(traces, sizeof traces, "%s/%s-traces", f->dir, kinds[k]);
		snprintf(port_file, sizeof port_file, "%s/%s.port", f->dir, kinds[k]);
		snprintf(log_file, sizeof log_file, "%s/%s.log", f->dir, kinds[k]);
		if (k == 1)
			assert_int_equal(mkdir(traces, 0755), 0);
		assert_int_equal(harness_spawn(&f->w, log_file, argv), 0);
		assert_int_equal(harness_wait_exit(f->w, 20000, &status), 0);
		if (!WIFEXITED(status) || WEXITSTATUS(status) == 0)
			fail_msg("%s traces dir: worker ended with %s, want a non-zero exit",
			    kinds[k], wait_status_str(status));
		assert_int_equal(harness_read_file(log_file, &log), 0);
		snprintf(want, sizeof want, "cannot load traces from %s", traces);
		if (strstr(log, want) == NULL)
			fail_msg("%s traces dir: log lacks '%s':\n%s", kinds[k], want, log);
		if (strstr(log, "Sanitizer") != NULL || strstr(log, "runtime error") != NULL)
			fail_msg("%s traces dir: sanitizer report in the log:\n%s", kinds[k], log);
		free(log);
		assert_int_equal(stat(port_file, &st), -1);
		harness_proc_free(f->w);
		f->w = NULL;
	}
	free(bin);
	f->passed = 1;
}

/* The harness itself: waits time out instead of hanging, kill9 reaps, exec failures show. */
static void
test_harness_timeouts(void **state)
{
	struct fx *f = *state;
	char log_file[512], *log = NULL;
	char *sleep_argv[] = { (char *)"/bin/sleep", (char *)"30", NULL };
	char *bad_argv[] = { (char *)"/nonexistent/certa-binary", NULL };
	struct timespec t0, t1;
	int status = 0, port = 0;
	long ms;

	snprintf(log_file, sizeof log_file, "%s/sleep.log", f->dir);
	assert_int_equal(harness_spawn(&f->w, log_file, sleep_argv), 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(harness_wait_exit(f->w, 200, &status), CERTA_ETIMEOUT);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
	assert_true(ms >= 200 && ms < 2000);
	assert_true(harness_running(f->w));
	assert_int_equal(harness_kill9(f->w), 0);
	assert_int_equal(harness_wait_exit(f->w, 0, &status), 0);
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	assert_int_equal(harness_signal(f->w, SIGTERM), -ESRCH);
	harness_proc_free(f->w);
	f->w = NULL;

	snprintf(log_file, sizeof log_file, "%s/never.port", f->dir);
	assert_int_equal(harness_wait_port_file(log_file, 50, &port), CERTA_ETIMEOUT);

	snprintf(log_file, sizeof log_file, "%s/bad.log", f->dir);
	assert_int_equal(harness_spawn(&f->w, log_file, bad_argv), 0);
	assert_int_equal(harness_wait_exit(f->w, 5000, &status), 0);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 127);
	assert_int_equal(harness_read_file(log_file, &log), 0);
	assert_non_null(strstr(log, "exec /nonexistent/certa-binary failed"));
	free(log);
	f->passed = 1;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_harness_timeouts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_info, setup, teardown),
		cmocka_unit_test_setup_teardown(test_step_one, setup, teardown),
		cmocka_unit_test_setup_teardown(test_step_to_end, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sample_index_selects_seed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sample_index_out_of_range, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_prompt, setup, teardown),
		cmocka_unit_test_setup_teardown(test_malformed_bytes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_empty_batch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_item_changes_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_capacity, setup, teardown),
		cmocka_unit_test_setup_teardown(test_program_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_state_missing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_step_idempotent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sigterm_exits_zero, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sigterm_with_step_held, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refuses_without_traces, setup, teardown),
	};
	int rc;

	log_init("test_worker", LOG_FORMAT_PLAIN, LOG_LVL_WARN);
	harness_init();
	g_traces_dir = harness_traces_dir();
	if (g_traces_dir != NULL)
		g_pick_err = harness_trace_pick(g_traces_dir, NULL, "math500", &g_tr);
	grpc_init();
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	grpc_shutdown();
	harness_trace_free(g_tr);
	return rc;
}
