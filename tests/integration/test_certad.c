/*
 * test_certad.c — end to end: the real certad with real replay workers on loopback.
 *
 * Each test starts its own processes on free ports (port files) under a hard alarm, submits
 * real MATH500 problems and checks answers against the recorded traces.
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
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include <grpc/grpc.h>

#include "certa/v1/reasoning.pb-c.h"
#include "certa/v1/worker.pb-c.h"
#include "lib/error.h"
#include "lib/rpc.h"
#include "lib/rpc_client.h"
#include "lib/traces.h"
#include "scheduler/answer.h"
#include "tests/support/certa_client.h"
#include "tests/support/harness.h"

#define RPC_MS 10000

struct env {
	char *dir;
	struct harness_trace *tr;
	struct harness_proc *w[2];
	int wport[2];
	struct harness_proc *d;
	int dport;
	struct rpc_channel *ch;
};

/* Starts certad on a free port with the given workers and extra arguments; waits for it. */
static void
start_certad_extra(struct env *e, int nworkers, const char *const extra[])
{
	char sock[600], pol[600];
	const char *sets[] = { "workers.health_interval=100ms", "metrics.port=0",
	    /* These tests exercise programs, not keys: callers without a key are tenant
	     * "default". */
	    "auth.anonymous_tenant=default", sock,
	    /* Run every chain to its recorded end, so answers and token counts are exact. */
	    pol, NULL };

	snprintf(sock, sizeof sock, "admin.socket=%s/admin.sock", e->dir);
	snprintf(pol, sizeof pol, "policy.file=%s/full.policy", e->dir);
	if (harness_start_certad(e->dir, e->wport, (size_t)nworkers, sets, extra, &e->d,
	    &e->dport) != 0)
		fail_msg("certad did not start");
	if (e->ch != NULL)
		rpc_channel_free(e->ch);
	assert_int_equal(certa_client_channel(e->dport, &e->ch), 0);
}

static void
start_certad(struct env *e, int nworkers)
{
	start_certad_extra(e, nworkers, NULL);
}

static void
start_workers(struct env *e, int n, const char *delay)
{
	const char *extra[] = { "--step-delay", delay, NULL };
	int i;

	for (i = 0; i < n; i++)
		assert_int_equal(harness_start_worker(e->dir, harness_traces_dir(), extra, &e->w[i],
		    &e->wport[i]), 0);
}

static int
setup(void **state)
{
	struct env *e;
	char path[600];

	if (harness_traces_dir() == NULL) {
		*state = NULL;
		return 0;
	}
	e = calloc(1, sizeof *e);
	assert_int_equal(harness_fixture_setup(120, &e->dir, &e->tr), 0);
	snprintf(path, sizeof path, "%s/full.policy", e->dir);
	assert_int_equal(harness_write_file(path, "%s",
	    "# never stop early: thresholds above 1 disable certainty stops\n"
	    "cot.threshold = 2\nsc.threshold = 2\nunpromising_tokens = 0\n"
	    "extend_frac = 0\n"), 0);
	*state = e;
	return 0;
}

static int
teardown(void **state)
{
	struct env *e = *state;
	int i;

	if (e == NULL)
		return 0;
	if (e->ch != NULL)
		rpc_channel_free(e->ch);
	harness_proc_free(e->d);
	for (i = 0; i < 2; i++)
		harness_proc_free(e->w[i]);
	harness_fixture_teardown(e->dir, e->tr);
	free(e);
	return 0;
}

/* Reads a stream to its end (or until stop_after progress events, then returns it open). */
static struct rpc_stream *
read_events(struct rpc_stream *s, struct certa_client_events *ev, int stop_after)
{
	return certa_client_events_read(s, 30000, stop_after, ev) == 1 ? s : NULL;
}

static struct rpc_stream *
submit(struct env *e, const char *problem, Certa__V1__Algorithm algo, uint32_t n)
{
	Certa__V1__ProgramSpec spec = CERTA__V1__PROGRAM_SPEC__INIT;
	struct rpc_stream *s;

	spec.problem = (char *)problem;
	spec.algorithm = algo;
	spec.n = n;
	assert_int_equal(certa_client_submit(e->ch, &spec, NULL, 60000, &s), 0);
	return s;
}

/* Submits spec and reads its stream to the end into ev. */
static void
run_spec(struct env *e, const Certa__V1__ProgramSpec *spec, struct certa_client_events *ev)
{
	struct rpc_stream *s;

	assert_int_equal(certa_client_submit(e->ch, spec, NULL, 60000, &s), 0);
	memset(ev, 0, sizeof *ev);
	read_events(s, ev, 0);
}

static Certa__V1__Program *
get_program(struct env *e, const char *id, grpc_status_code *st, char **details)
{
	Certa__V1__GetRequest g = CERTA__V1__GET_REQUEST__INIT;
	Certa__V1__Program *p = NULL;

	g.program_id = (char *)id;
	assert_int_equal(rpc_sync_unary(e->ch, "/certa.v1.Reasoning/Get", &g.base,
	    &certa__v1__program__descriptor, RPC_MS, NULL, 0, (ProtobufCMessage **)&p, st,
	    details), 0);
	return p;
}

/* Polls Get until the program reaches a terminal state (or 30 s). */
static Certa__V1__Program *
wait_terminal(struct env *e, const char *id)
{
	int i;

	for (i = 0; i < 600; i++) {
		grpc_status_code st;
		Certa__V1__Program *p = get_program(e, id, &st, NULL);
		if (st == GRPC_STATUS_OK && p->state >= CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_FINISHED)
			return p;
		if (p != NULL)
			protobuf_c_message_free_unpacked(&p->base, NULL);
		usleep(50000);
	}
	fail_msg("program %s did not finish", id);
	return NULL;
}

/* cot: the answer is the recorded final answer; the whole recorded run is replayed. */
static void
test_submit_and_finish(void **state)
{
	struct env *e = *state;
	struct certa_client_events ev;
	Certa__V1__Program *p;
	grpc_status_code st;

	HARNESS_NEED_TRACES(e);
	start_workers(e, 1, "0");
	start_certad(e, 1);
	memset(&ev, 0, sizeof ev);
	read_events(submit(e, e->tr->problem, CERTA__V1__ALGORITHM__ALGORITHM_COT, 0), &ev, 0);
	assert_int_equal(ev.status, GRPC_STATUS_OK);
	assert_int_equal(ev.accepted, 1);
	assert_true(ev.progress >= 1);
	assert_true(ev.monotone);
	assert_non_null(ev.finished);
	assert_true(answer_equivalent(ev.finished->result->answer, e->tr->final_answer));
	assert_int_equal(ev.finished->result->reason,
	    CERTA__V1__FINISH_REASON__FINISH_REASON_NATURAL_END);
	assert_int_equal(ev.finished->result->tokens_used, e->tr->tokens_used);
	assert_true(ev.finished->result->probe_tokens > 0);

	p = get_program(e, ev.id, &st, NULL);
	assert_int_equal(st, GRPC_STATUS_OK);
	assert_int_equal(p->state, CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_FINISHED);
	assert_string_equal(p->result->answer, ev.finished->result->answer);
	assert_int_equal(p->n_requests, 1);
	assert_int_equal(p->requests[0]->tokens, e->tr->tokens_used);
	protobuf_c_message_free_unpacked(&p->base, NULL);
	certa_client_events_free(&ev);
}

/* sc with 3 chains: three recorded samples, majority answer. */
static void
test_sc_three_chains(void **state)
{
	struct env *e = *state;
	struct certa_client_events ev;
	size_t i, j, best = 0, bestv = 0;
	uint64_t total = 0;

	HARNESS_NEED_TRACES(e);
	start_workers(e, 1, "0");
	start_certad(e, 1);
	memset(&ev, 0, sizeof ev);
	read_events(submit(e, e->tr->problem, CERTA__V1__ALGORITHM__ALGORITHM_SC, 3), &ev, 0);
	assert_int_equal(ev.status, GRPC_STATUS_OK);
	assert_non_null(ev.finished);
	assert_int_equal(ev.finished->n_requests, 3);
	for (i = 0; i < 3; i++) {
		size_t v = 0;
		if (ev.finished->requests[i]->finished)
			assert_true(answer_equivalent(ev.finished->requests[i]->answer,
			    e->tr->samples[i]->final_answer));
		total += e->tr->samples[i]->tokens_used;
		for (j = 0; j < 3; j++)
			v += answer_equivalent(e->tr->samples[i]->final_answer,
			    e->tr->samples[j]->final_answer);
		if (v > bestv) {
			bestv = v;
			best = i;
		}
	}
	assert_true(answer_equivalent(ev.finished->result->answer,
	    e->tr->samples[best]->final_answer));
	/* Either all chains ran to the end, or the vote was already decided (two finished
	 * chains agree and the third cannot change the majority). */
	if (ev.finished->result->reason == CERTA__V1__FINISH_REASON__FINISH_REASON_NATURAL_END) {
		assert_int_equal(ev.finished->result->tokens_used, total);
	} else {
		assert_int_equal(ev.finished->result->reason,
		    CERTA__V1__FINISH_REASON__FINISH_REASON_CERTAIN);
		assert_true(ev.finished->result->tokens_used < total);
		assert_true(bestv >= 2);
	}
	certa_client_events_free(&ev);
}

static int
worker_active(int port)
{
	struct rpc_channel *ch;
	Certa__V1__InfoRequest req = CERTA__V1__INFO_REQUEST__INIT;
	Certa__V1__InfoReply *r = NULL;
	grpc_status_code st;
	int active;

	assert_int_equal(certa_client_channel(port, &ch), 0);
	assert_int_equal(rpc_sync_unary(ch, "/certa.v1.Worker/Info", &req.base,
	    &certa__v1__info_reply__descriptor, RPC_MS, NULL, 0, (ProtobufCMessage **)&r, &st,
	    NULL), 0);
	assert_int_equal(st, GRPC_STATUS_OK);
	active = (int)r->active;
	protobuf_c_message_free_unpacked(&r->base, NULL);
	rpc_channel_free(ch);
	return active;
}

/* Cancel stops a running program, ends its stream and frees the worker's state. */
static void
test_cancel(void **state)
{
	struct env *e = *state;
	struct certa_client_events ev;
	struct rpc_stream *s;
	Certa__V1__CancelRequest c = CERTA__V1__CANCEL_REQUEST__INIT;
	Certa__V1__CancelReply *cr = NULL;
	Certa__V1__Program *p;
	grpc_status_code st;
	int i;

	HARNESS_NEED_TRACES(e);
	start_workers(e, 1, "30");
	start_certad(e, 1);
	memset(&ev, 0, sizeof ev);
	s = read_events(submit(e, e->tr->problem, CERTA__V1__ALGORITHM__ALGORITHM_SC, 3), &ev, 2);
	assert_non_null(s);
	assert_int_equal(worker_active(e->wport[0]), 3);
	c.program_id = ev.id;
	assert_int_equal(rpc_sync_unary(e->ch, "/certa.v1.Reasoning/Cancel", &c.base,
	    &certa__v1__cancel_reply__descriptor, RPC_MS, NULL, 0, (ProtobufCMessage **)&cr, &st,
	    NULL), 0);
	assert_int_equal(st, GRPC_STATUS_OK);
	assert_int_equal(cr->state, CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_CANCELLED);
	protobuf_c_message_free_unpacked(&cr->base, NULL);
	read_events(s, &ev, 0);
	assert_int_equal(ev.status, GRPC_STATUS_OK);
	assert_non_null(ev.finished);
	assert_int_equal(ev.finished->result->reason,
	    CERTA__V1__FINISH_REASON__FINISH_REASON_CANCELLED);
	p = get_program(e, ev.id, &st, NULL);
	assert_int_equal(p->state, CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_CANCELLED);
	assert_true(p->tokens_used < e->tr->tokens_used * 3);
	protobuf_c_message_free_unpacked(&p->base, NULL);
	/* Worker state is released (the in-flight step completes first). */
	for (i = 0; i < 100 && worker_active(e->wport[0]) != 0; i++)
		usleep(20000);
	assert_int_equal(worker_active(e->wport[0]), 0);
	/* Cancelling again reports the terminal state. */
	assert_int_equal(rpc_sync_unary(e->ch, "/certa.v1.Reasoning/Cancel", &c.base,
	    &certa__v1__cancel_reply__descriptor, RPC_MS, NULL, 0, (ProtobufCMessage **)&cr, &st,
	    NULL), 0);
	assert_int_equal(st, GRPC_STATUS_OK);
	assert_int_equal(cr->state, CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_CANCELLED);
	protobuf_c_message_free_unpacked(&cr->base, NULL);
	certa_client_events_free(&ev);
}

/* Bad input: unknown problem, malformed and invalid requests, unknown ids. */
static void
test_bad_input(void **state)
{
	struct env *e = *state;
	struct certa_client_events ev;
	Certa__V1__GetRequest g = CERTA__V1__GET_REQUEST__INIT;
	Certa__V1__Program *p;
	ProtobufCMessage *m = NULL;
	grpc_status_code st;
	char *details = NULL;
	char big[70000];

	HARNESS_NEED_TRACES(e);
	start_workers(e, 1, "0");
	start_certad(e, 1);

	memset(&ev, 0, sizeof ev);
	read_events(submit(e, "What is the airspeed velocity of an unladen swallow?",
	    CERTA__V1__ALGORITHM__ALGORITHM_COT, 0), &ev, 0);
	/* A failed program is data: its finished event says FAILED and why, then the stream
	 * ends OK (it used to end NOT_FOUND, read as "no such program"). */
	assert_int_equal(ev.status, GRPC_STATUS_OK);
	assert_non_null(ev.finished);
	assert_int_equal(ev.finished->result->reason, CERTA__V1__FINISH_REASON__FINISH_REASON_FAILED);
	assert_non_null(strstr(ev.finished->result->error_message, "traces directory"));
	assert_int_equal(ev.accepted, 1);
	p = get_program(e, ev.id, &st, NULL);
	assert_int_equal(p->state, CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_FAILED);
	assert_non_null(strstr(p->result->error_message, "no recorded trace"));
	protobuf_c_message_free_unpacked(&p->base, NULL);
	certa_client_events_free(&ev);

	/* Bytes that are not a SubmitRequest. */
	g.program_id = (char *)"\xff\xff\xff\xff\xff";
	assert_int_equal(rpc_sync_unary(e->ch, "/certa.v1.Reasoning/Submit", &g.base,
	    &certa__v1__program_event__descriptor, RPC_MS, NULL, 0, &m, &st, &details), 0);
	assert_int_equal(st, GRPC_STATUS_INVALID_ARGUMENT);
	assert_non_null(strstr(details, "certa.v1.SubmitRequest"));
	free(details);

	memset(&ev, 0, sizeof ev);
	read_events(submit(e, "", CERTA__V1__ALGORITHM__ALGORITHM_COT, 0), &ev, 0);
	assert_int_equal(ev.status, GRPC_STATUS_INVALID_ARGUMENT);
	assert_non_null(strstr(ev.details, "problem is empty"));
	assert_int_equal(ev.accepted, 0);
	certa_client_events_free(&ev);

	memset(&ev, 0, sizeof ev);
	read_events(submit(e, e->tr->problem, CERTA__V1__ALGORITHM__ALGORITHM_COT, 2), &ev, 0);
	assert_int_equal(ev.status, GRPC_STATUS_INVALID_ARGUMENT);
	assert_non_null(strstr(ev.details, "cot runs one chain"));
	certa_client_events_free(&ev);

	memset(&ev, 0, sizeof ev);
	read_events(submit(e, e->tr->problem, CERTA__V1__ALGORITHM__ALGORITHM_SC, 99), &ev, 0);
	assert_int_equal(ev.status, GRPC_STATUS_INVALID_ARGUMENT);
	assert_non_null(strstr(ev.details, "allowed range"));
	certa_client_events_free(&ev);

	memset(big, 'x', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	memset(&ev, 0, sizeof ev);
	read_events(submit(e, big, CERTA__V1__ALGORITHM__ALGORITHM_COT, 0), &ev, 0);
	assert_int_equal(ev.status, GRPC_STATUS_INVALID_ARGUMENT);
	assert_non_null(strstr(ev.details, "limit"));
	certa_client_events_free(&ev);

	/* sc asking for more samples than were recorded: the worker's message reaches the client
	 * in the failed program's result; the stream itself ends OK. */
	memset(&ev, 0, sizeof ev);
	read_events(submit(e, e->tr->problem, CERTA__V1__ALGORITHM__ALGORITHM_SC, 4), &ev, 0);
	assert_int_equal(ev.status, GRPC_STATUS_OK);
	assert_non_null(ev.finished);
	assert_int_equal(ev.finished->result->reason, CERTA__V1__FINISH_REASON__FINISH_REASON_FAILED);
	assert_non_null(strstr(ev.finished->result->error_message, "only 3 samples"));
	certa_client_events_free(&ev);

	p = get_program(e, "p-0000000000000000", &st, &details);
	assert_null(p);
	assert_int_equal(st, GRPC_STATUS_NOT_FOUND);
	free(details);
	p = get_program(e, "", &st, &details);
	assert_int_equal(st, GRPC_STATUS_INVALID_ARGUMENT);
	free(details);

	/* The daemon is still healthy after all that. */
	memset(&ev, 0, sizeof ev);
	read_events(submit(e, e->tr->problem, CERTA__V1__ALGORITHM__ALGORITHM_COT, 0), &ev, 0);
	assert_int_equal(ev.status, GRPC_STATUS_OK);
	certa_client_events_free(&ev);
}

/* kill -9 certad mid-program: after restart it completes with the same answer, once. */
static void
test_daemon_crash_resume(void **state)
{
	struct env *e = *state;
	struct certa_client_events ev;
	struct rpc_stream *s;
	Certa__V1__ListRequest lr = CERTA__V1__LIST_REQUEST__INIT;
	Certa__V1__ListReply *list = NULL;
	Certa__V1__Program *p;
	grpc_status_code st;
	char id[64];
	size_t i, seen = 0;

	HARNESS_NEED_TRACES(e);
	start_workers(e, 1, "15");
	start_certad(e, 1);
	memset(&ev, 0, sizeof ev);
	s = read_events(submit(e, e->tr->problem, CERTA__V1__ALGORITHM__ALGORITHM_COT, 0), &ev, 3);
	assert_non_null(s);
	snprintf(id, sizeof id, "%s", ev.id);
	assert_int_equal(harness_kill9(e->d), 0);
	harness_proc_free(e->d);
	e->d = NULL;
	read_events(s, &ev, 0);
	assert_int_not_equal(ev.status, GRPC_STATUS_OK);
	certa_client_events_free(&ev);

	start_certad(e, 1);
	p = wait_terminal(e, id);
	assert_int_equal(p->state, CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_FINISHED);
	assert_true(answer_equivalent(p->result->answer, e->tr->final_answer));
	assert_int_equal(p->result->tokens_used, e->tr->tokens_used);
	protobuf_c_message_free_unpacked(&p->base, NULL);

	/* Exactly one program, no duplicate result. */
	assert_int_equal(rpc_sync_unary(e->ch, "/certa.v1.Reasoning/List", &lr.base,
	    &certa__v1__list_reply__descriptor, RPC_MS, NULL, 0, (ProtobufCMessage **)&list, &st,
	    NULL), 0);
	assert_int_equal(st, GRPC_STATUS_OK);
	for (i = 0; i < list->n_programs; i++)
		seen += strcmp(list->programs[i]->id, id) == 0;
	assert_int_equal(list->n_programs, 1);
	assert_int_equal(seen, 1);
	protobuf_c_message_free_unpacked(&list->base, NULL);
}

/* Submit with an idempotency key: retries get the same program (accepted.duplicate), across a
 * crash too; nothing runs twice. */
static void
test_idempotency_key(void **state)
{
	struct env *e = *state;
	Certa__V1__ProgramSpec spec = CERTA__V1__PROGRAM_SPEC__INIT;
	Certa__V1__ListRequest lr = CERTA__V1__LIST_REQUEST__INIT;
	Certa__V1__ListReply *list = NULL;
	Certa__V1__ProgramEvent *m;
	struct certa_client_events ev;
	struct rpc_stream *s1, *s2;
	grpc_status_code st;
	char id[64];
	int round;

	HARNESS_NEED_TRACES(e);
	start_workers(e, 1, "10");
	start_certad(e, 1);
	spec.problem = (char *)e->tr->problem;
	spec.idempotency_key = (char *)"order-7f3a";
	assert_int_equal(certa_client_submit(e->ch, &spec, NULL, 60000, &s1), 0);
	memset(&ev, 0, sizeof ev);
	s1 = read_events(s1, &ev, 2);
	assert_non_null(s1);
	snprintf(id, sizeof id, "%s", ev.id);

	/* Three retries: while it runs, after it finished, and after a crash of certad. */
	for (round = 0; round < 3; round++) {
		if (round == 1) {
			read_events(s1, &ev, 0);
			assert_int_equal(ev.status, GRPC_STATUS_OK);
			assert_non_null(ev.finished);
			certa_client_events_free(&ev);
		}
		if (round == 2) {
			assert_int_equal(harness_kill9(e->d), 0);
			harness_proc_free(e->d);
			e->d = NULL;
			start_certad(e, 1);
		}
		assert_int_equal(certa_client_submit(e->ch, &spec, NULL, 60000, &s2), 0);
		assert_int_equal(rpc_sync_stream_next(s2, 10000, (ProtobufCMessage **)&m), 1);
		assert_int_equal(m->event_case, CERTA__V1__PROGRAM_EVENT__EVENT_ACCEPTED);
		assert_string_equal(m->accepted->program_id, id);
		assert_true(m->accepted->duplicate);
		protobuf_c_message_free_unpacked(&m->base, NULL);
		memset(&ev, 0, sizeof ev);
		read_events(s2, &ev, 0);
		assert_int_equal(ev.status, GRPC_STATUS_OK);
		assert_non_null(ev.finished);
		assert_string_equal(ev.finished->program_id, id);
		assert_true(answer_equivalent(ev.finished->result->answer, e->tr->final_answer));
		certa_client_events_free(&ev);
	}
	/* A different key is a different program. */
	spec.idempotency_key = (char *)"order-7f3b";
	memset(&ev, 0, sizeof ev);
	assert_int_equal(certa_client_submit(e->ch, &spec, NULL, 60000, &s2), 0);
	read_events(s2, &ev, 0);
	assert_int_equal(ev.status, GRPC_STATUS_OK);
	assert_string_not_equal(ev.id, id);
	certa_client_events_free(&ev);
	assert_int_equal(rpc_sync_unary(e->ch, "/certa.v1.Reasoning/List", &lr.base,
	    &certa__v1__list_reply__descriptor, RPC_MS, NULL, 0, (ProtobufCMessage **)&list, &st,
	    NULL), 0);
	assert_int_equal(st, GRPC_STATUS_OK);
	assert_int_equal(list->n_programs, 2);
	protobuf_c_message_free_unpacked(&list->base, NULL);
}

/* A deadline ends a program with reason DEADLINE; a small budget ends it with BUDGET (no
 * more tokens than the budget allows, plus at most one step per chain in flight). */
static void
test_deadline_and_budget(void **state)
{
	struct env *e = *state;
	Certa__V1__ProgramSpec spec = CERTA__V1__PROGRAM_SPEC__INIT;
	struct certa_client_events ev;
	struct timespec now;

	HARNESS_NEED_TRACES(e);
	start_workers(e, 1, "100");
	start_certad(e, 1);
	clock_gettime(CLOCK_REALTIME, &now);
	spec.problem = (char *)e->tr->problem;
	spec.deadline_unix_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000 + 800;
	run_spec(e, &spec, &ev);
	assert_int_equal(ev.status, GRPC_STATUS_OK);
	assert_non_null(ev.finished);
	assert_int_equal(ev.finished->result->reason,
	    CERTA__V1__FINISH_REASON__FINISH_REASON_DEADLINE);
	assert_true(ev.finished->result->low_confidence);
	assert_true(ev.finished->result->tokens_used < e->tr->tokens_used);
	certa_client_events_free(&ev);

	/* The full policy used by these tests never extends budgets (extend_frac = 0). */
	spec.deadline_unix_ms = 0;
	spec.token_budget = 320;
	run_spec(e, &spec, &ev);
	assert_int_equal(ev.status, GRPC_STATUS_OK);
	assert_non_null(ev.finished);
	assert_int_equal(ev.finished->result->reason,
	    CERTA__V1__FINISH_REASON__FINISH_REASON_BUDGET);
	assert_int_equal(ev.finished->result->tokens_used, 320);
	assert_true(ev.finished->result->low_confidence);
	certa_client_events_free(&ev);
}

/* Retention: finished programs older than retention.max_age disappear with their chains and
 * history; programs in progress stay. */
static void
test_retention(void **state)
{
	struct env *e = *state;
	const char *extra[] = { "--set", "retention.max_age=1s", "--set",
	    "retention.interval=200ms", NULL };
	struct certa_client_events ev;
	struct rpc_stream *slow;
	Certa__V1__Program *p;
	grpc_status_code st;
	char done_id[64], live_id[64];
	int i;

	HARNESS_NEED_TRACES(e);
	start_workers(e, 1, "0");
	start_certad_extra(e, 1, extra);
	memset(&ev, 0, sizeof ev);
	read_events(submit(e, e->tr->problem, CERTA__V1__ALGORITHM__ALGORITHM_COT, 0), &ev, 0);
	assert_int_equal(ev.status, GRPC_STATUS_OK);
	snprintf(done_id, sizeof done_id, "%s", ev.id);
	certa_client_events_free(&ev);
	p = get_program(e, done_id, &st, NULL);
	assert_int_equal(st, GRPC_STATUS_OK);
	protobuf_c_message_free_unpacked(&p->base, NULL);

	/* A program in progress (no worker can take it) must survive pruning. */
	harness_proc_free(e->w[0]);
	e->w[0] = NULL;
	memset(&ev, 0, sizeof ev);
	slow = submit(e, e->tr->problem, CERTA__V1__ALGORITHM__ALGORITHM_COT, 0);
	assert_int_equal(rpc_sync_stream_next(slow, 10000, (ProtobufCMessage **)&ev.last), 1);
	assert_int_equal(ev.last->event_case, CERTA__V1__PROGRAM_EVENT__EVENT_ACCEPTED);
	snprintf(live_id, sizeof live_id, "%s", ev.last->accepted->program_id);
	protobuf_c_message_free_unpacked(&ev.last->base, NULL);
	ev.last = NULL;

	for (i = 0; i < 60; i++) {
		p = get_program(e, done_id, &st, NULL);
		if (p != NULL)
			protobuf_c_message_free_unpacked(&p->base, NULL);
		if (st == GRPC_STATUS_NOT_FOUND)
			break;
		usleep(100000);
	}
	assert_int_equal(st, GRPC_STATUS_NOT_FOUND);
	usleep(1500000);
	p = get_program(e, live_id, &st, NULL);
	assert_int_equal(st, GRPC_STATUS_OK);
	assert_true(p->state == CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_QUEUED ||
	    p->state == CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_RUNNING);
	protobuf_c_message_free_unpacked(&p->base, NULL);
	rpc_sync_stream_cancel(slow);
	read_events(slow, &ev, 0);
	certa_client_events_free(&ev);
}

/* A worker that restarts on the same address (new process, state lost) is noticed (a failed
 * step, or a new Info instance id); its chains are re-prefilled from the text so far on the
 * new process and finish right. */
static void
test_worker_restart_same_address(void **state)
{
	struct env *e = *state;
	struct certa_client_events ev;
	struct rpc_stream *s;
	char listen[64], *log = NULL, path[600];
	const char *extra[] = { "--listen", listen, "--step-delay", "15", NULL };
	int port, i, seen = 0;

	HARNESS_NEED_TRACES(e);
	start_workers(e, 1, "15");
	start_certad(e, 1);
	memset(&ev, 0, sizeof ev);
	s = read_events(submit(e, e->tr->problem, CERTA__V1__ALGORITHM__ALGORITHM_COT, 0), &ev, 3);
	assert_non_null(s);
	port = e->wport[0];
	harness_proc_free(e->w[0]);            /* kills it */
	e->w[0] = NULL;
	snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
	assert_int_equal(harness_start_worker(e->dir, harness_traces_dir(), extra, &e->w[0],
	    &e->wport[0]), 0);
	assert_int_equal(e->wport[0], port);
	read_events(s, &ev, 0);
	assert_int_equal(ev.status, GRPC_STATUS_OK);
	assert_non_null(ev.finished);
	assert_true(answer_equivalent(ev.finished->result->answer, e->tr->final_answer));
	assert_int_equal(ev.finished->result->tokens_used, e->tr->tokens_used);
	certa_client_events_free(&ev);
	/* The new process was given the chain's text so far (a non-empty re-prefill). */
	snprintf(path, sizeof path, "%s", harness_log_path(e->w[0]));
	for (i = 0; i < 50 && !seen; i++) {
		char *p;
		unsigned long long tokens;
		size_t bytes;
		free(log);
		log = NULL;
		if (harness_read_file(path, &log) == 0 && (p = strstr(log, "resumed at ")) != NULL &&
		    sscanf(p, "resumed at %llu tokens (%zu bytes", &tokens, &bytes) == 2)
			seen = tokens > 0 && bytes > 0;
		if (!seen)
			usleep(100000);
	}
	free(log);
	assert_true(seen);
}

/* Whether certad's log says `what` (polled for up to 5 s: the log is written as it goes). */
static int
certad_log_has(struct env *e, const char *what)
{
	char *log = NULL;
	int i, seen = 0;

	for (i = 0; i < 50 && !seen; i++) {
		free(log);
		log = NULL;
		seen = harness_read_file(harness_log_path(e->d), &log) == 0 &&
		    strstr(log, what) != NULL;
		if (!seen)
			usleep(100000);
	}
	free(log);
	return seen;
}

/* Runs certactl against certad's admin socket; returns its exit status. */
static int
ctl_worker(struct env *e, const char *verb, int port, const char *flag)
{
	char *bin = harness_bin("certactl");
	int rc;

	assert_non_null(bin);
	rc = harness_sh("'%s' --server 'unix:%s/admin.sock' worker %s 127.0.0.1:%d %s >/dev/null",
	    bin, e->dir, verb, port, flag);
	free(bin);
	return rc;
}

/*
 * A worker killed (-9) and restarted on the same address between two steps, unseen by certad's
 * health check (an operator's restart: drain, kill, start, undrain; the health check is slowed
 * so that it does not probe the dead process): certad still believes the worker holds the
 * chains, so the next steps go without prompt (worker.proto "Held state") and find nothing
 * there; certad resends prompt and text, and every program finishes with the answer and tokens
 * of a run without the restart.  (Before, the prompt went with every step but the text did
 * not: the llm engine rebuilt such chains from the prompt alone.)  The drain makes sure no
 * step is in flight when the worker dies (a failed step takes the other path,
 * test_worker_restart_same_address).
 */
#define RESTART_PROGRAMS 4
static void
test_worker_restart_between_steps(void **state)
{
	struct env *e = *state;
	const char *slow_health[] = { "--set", "workers.health_interval=30s", NULL };
	const char *wextra[] = { "--listen", NULL, "--step-delay", "30", NULL };
	struct certa_client_events ev[RESTART_PROGRAMS], ref;
	struct rpc_stream *s[RESTART_PROGRAMS];
	char listen[64];
	int port, i;

	HARNESS_NEED_TRACES(e);
	start_workers(e, 1, "30");
	start_certad_extra(e, 1, slow_health);
	for (i = 0; i < RESTART_PROGRAMS; i++) {
		memset(&ev[i], 0, sizeof ev[i]);
		s[i] = submit(e, e->tr->problem, i % 2 ? CERTA__V1__ALGORITHM__ALGORITHM_SC :
		    CERTA__V1__ALGORITHM__ALGORITHM_COT, i % 2 ? 3 : 0);
	}
	for (i = 0; i < RESTART_PROGRAMS; i++) {
		s[i] = read_events(s[i], &ev[i], 2);
		assert_non_null(s[i]);
	}
	port = e->wport[0];
	assert_int_equal(ctl_worker(e, "drain", port, ""), 0);
	usleep(500000);            /* the steps in flight (30 ms each) come back */
	assert_int_equal(harness_kill9(e->w[0]), 0);
	harness_proc_free(e->w[0]);
	e->w[0] = NULL;
	snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
	wextra[1] = listen;
	assert_int_equal(harness_start_worker(e->dir, harness_traces_dir(), wextra, &e->w[0],
	    &e->wport[0]), 0);
	assert_int_equal(e->wport[0], port);
	assert_int_equal(ctl_worker(e, "drain", port, "--undo"), 0);
	for (i = 0; i < RESTART_PROGRAMS; i++) {
		read_events(s[i], &ev[i], 0);
		if (ev[i].status != GRPC_STATUS_OK || ev[i].finished == NULL)
			fail_msg("program %d: %s: %s", i, rpc_status_name(ev[i].status),
			    ev[i].details);
	}
	/* The path this test is about was taken: the new process held nothing. */
	if (!certad_log_has(e, "holds no state for its chains")) {
		harness_dump_log(e->d);
		fail_msg("certad did not resend a program's prompt and text after the restart");
	}
	/* The same programs without a restart: the same answers and tokens. */
	for (i = 0; i < RESTART_PROGRAMS; i++) {
		memset(&ref, 0, sizeof ref);
		read_events(submit(e, e->tr->problem, i % 2 ? CERTA__V1__ALGORITHM__ALGORITHM_SC :
		    CERTA__V1__ALGORITHM__ALGORITHM_COT, i % 2 ? 3 : 0), &ref, 0);
		assert_int_equal(ref.status, GRPC_STATUS_OK);
		assert_non_null(ref.finished);
		assert_string_equal(ev[i].finished->result->answer, ref.finished->result->answer);
		assert_int_equal(ev[i].finished->result->tokens_used,
		    ref.finished->result->tokens_used);
		if (i % 2 == 0) {
			assert_true(answer_equivalent(ev[i].finished->result->answer,
			    e->tr->final_answer));
			assert_int_equal(ev[i].finished->result->tokens_used, e->tr->tokens_used);
		}
		certa_client_events_free(&ref);
		certa_client_events_free(&ev[i]);
	}
}

/* Programs go to a worker that serves their model; an unknown model or a per-program policy
 * is refused with a clear message. */
static void
test_model_routing(void **state)
{
	struct env *e = *state;
	const char *models[2] = { "deepseek-ai-deepseek-r1-distill-qwen-7b", "qwen-qwen3-8b" };
	char dirs[2][600];
	const char *extra[] = { "--step-delay", "0", NULL };
	Certa__V1__ProgramSpec spec = CERTA__V1__PROGRAM_SPEC__INIT;
	struct certa_client_events ev;
	Certa__V1__Program *p;
	grpc_status_code st;
	int i;

	HARNESS_NEED_TRACES(e);
	/* Two workers, each with the traces of one model only. */
	for (i = 0; i < 2; i++) {
		snprintf(dirs[i], sizeof dirs[i], "%s/traces-%d", e->dir, i);
		assert_int_equal(harness_sh("mkdir -p '%s' && ln -s '%s'/%s__* '%s'/", dirs[i],
		    harness_traces_dir(), models[i], dirs[i]), 0);
		assert_int_equal(harness_start_worker(e->dir, dirs[i], extra, &e->w[i],
		    &e->wport[i]), 0);
	}
	start_certad(e, 2);
	usleep(300000);
	for (i = 0; i < 2; i++) {
		const struct trace *t;
		char want[64];
		assert_int_equal(traces_find_sample(e->tr->set, models[i], e->tr->problem, 0, &t), 0);
		spec.problem = (char *)e->tr->problem;
		spec.model = (char *)models[i];
		run_spec(e, &spec, &ev);
		assert_int_equal(ev.status, GRPC_STATUS_OK);
		assert_true(answer_equivalent(ev.finished->result->answer, t->final_answer));
		assert_int_equal(ev.finished->result->tokens_used, t->tokens_used);
		p = get_program(e, ev.id, &st, NULL);
		snprintf(want, sizeof want, "127.0.0.1:%d", e->wport[i]);
		assert_string_equal(p->requests[0]->worker, want);
		protobuf_c_message_free_unpacked(&p->base, NULL);
		certa_client_events_free(&ev);
	}
	spec.model = (char *)"no-such-model";
	run_spec(e, &spec, &ev);
	assert_int_equal(ev.status, GRPC_STATUS_INVALID_ARGUMENT);
	assert_non_null(strstr(ev.details, "no worker serves model 'no-such-model'"));
	certa_client_events_free(&ev);
	spec.model = (char *)"";
	spec.policy = (char *)"fast";
	run_spec(e, &spec, &ev);
	assert_int_equal(ev.status, GRPC_STATUS_INVALID_ARGUMENT);
	assert_non_null(strstr(ev.details, "program.policy"));
	certa_client_events_free(&ev);
}

/* kill -9 the worker holding a program: it completes on the other worker. */
static void
test_worker_failover(void **state)
{
	struct env *e = *state;
	struct certa_client_events ev;
	struct rpc_stream *s;
	Certa__V1__Program *p;
	grpc_status_code st;
	char holder[64], other[64];
	int victim;

	HARNESS_NEED_TRACES(e);
	start_workers(e, 2, "15");
	start_certad(e, 2);
	memset(&ev, 0, sizeof ev);
	s = read_events(submit(e, e->tr->problem, CERTA__V1__ALGORITHM__ALGORITHM_COT, 0), &ev, 3);
	assert_non_null(s);
	p = get_program(e, ev.id, &st, NULL);
	assert_int_equal(st, GRPC_STATUS_OK);
	snprintf(holder, sizeof holder, "%s", p->requests[0]->worker);
	protobuf_c_message_free_unpacked(&p->base, NULL);
	victim = strstr(holder, ":") && atoi(strrchr(holder, ':') + 1) == e->wport[0] ? 0 : 1;
	assert_int_equal(atoi(strrchr(holder, ':') + 1), e->wport[victim]);
	snprintf(other, sizeof other, "127.0.0.1:%d", e->wport[1 - victim]);
	assert_int_equal(harness_kill9(e->w[victim]), 0);

	read_events(s, &ev, 0);
	assert_int_equal(ev.status, GRPC_STATUS_OK);
	assert_non_null(ev.finished);
	assert_true(answer_equivalent(ev.finished->result->answer, e->tr->final_answer));
	assert_int_equal(ev.finished->result->tokens_used, e->tr->tokens_used);
	p = get_program(e, ev.id, &st, NULL);
	assert_string_equal(p->requests[0]->worker, other);  /* finished on the survivor */
	protobuf_c_message_free_unpacked(&p->base, NULL);
	certa_client_events_free(&ev);
}

/* SIGTERM drains: the stream ends UNAVAILABLE, certad exits 0, the program resumes later. */
static void
test_sigterm_drain(void **state)
{
	struct env *e = *state;
	struct certa_client_events ev;
	struct rpc_stream *s;
	Certa__V1__Program *p;
	int status = 0;
	char id[64];

	HARNESS_NEED_TRACES(e);
	start_workers(e, 1, "15");
	start_certad(e, 1);
	memset(&ev, 0, sizeof ev);
	s = read_events(submit(e, e->tr->problem, CERTA__V1__ALGORITHM__ALGORITHM_COT, 0), &ev, 2);
	assert_non_null(s);
	snprintf(id, sizeof id, "%s", ev.id);
	assert_int_equal(harness_signal(e->d, SIGTERM), 0);
	read_events(s, &ev, 0);
	assert_int_equal(ev.status, GRPC_STATUS_UNAVAILABLE);
	assert_non_null(strstr(ev.details, "continues after restart"));
	assert_int_equal(harness_wait_exit(e->d, 10000, &status), 0);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	harness_proc_free(e->d);
	e->d = NULL;
	certa_client_events_free(&ev);

	start_certad(e, 1);
	p = wait_terminal(e, id);
	assert_int_equal(p->state, CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_FINISHED);
	assert_true(answer_equivalent(p->result->answer, e->tr->final_answer));
	assert_int_equal(p->result->tokens_used, e->tr->tokens_used);
	protobuf_c_message_free_unpacked(&p->base, NULL);
}

/* Watch re-attaches to a running program; List pages newest first. */
static void
test_watch_and_list(void **state)
{
	struct env *e = *state;
	struct certa_client_events ev, wev;
	struct rpc_stream *s, *w;
	Certa__V1__WatchRequest wr = CERTA__V1__WATCH_REQUEST__INIT;
	Certa__V1__ListRequest lr = CERTA__V1__LIST_REQUEST__INIT;
	Certa__V1__ListReply *list = NULL;
	grpc_status_code st;
	char ids[3][64];
	int i;

	HARNESS_NEED_TRACES(e);
	start_workers(e, 1, "5");
	start_certad(e, 1);
	for (i = 0; i < 3; i++) {
		memset(&ev, 0, sizeof ev);
		s = read_events(submit(e, e->tr->problem, CERTA__V1__ALGORITHM__ALGORITHM_COT, 0),
		    &ev, 1);
		snprintf(ids[i], sizeof ids[i], "%s", ev.id);
		if (i < 2) {
			read_events(s, &ev, 0);
			assert_int_equal(ev.status, GRPC_STATUS_OK);
			certa_client_events_free(&ev);
			usleep(2000);
			continue;
		}
		/* Drop the Submit stream; the program keeps running; Watch picks it up. */
		rpc_sync_stream_cancel(s);
		read_events(s, &ev, 0);
		certa_client_events_free(&ev);
	}
	wr.program_id = ids[2];
	assert_int_equal(rpc_sync_stream_open(e->ch, "/certa.v1.Reasoning/Watch", &wr.base,
	    &certa__v1__program_event__descriptor, 60000, NULL, 0, &w), 0);
	memset(&wev, 0, sizeof wev);
	read_events(w, &wev, 0);
	assert_int_equal(wev.status, GRPC_STATUS_OK);
	assert_non_null(wev.finished);
	assert_true(answer_equivalent(wev.finished->result->answer, e->tr->final_answer));
	certa_client_events_free(&wev);

	lr.page_size = 2;
	assert_int_equal(rpc_sync_unary(e->ch, "/certa.v1.Reasoning/List", &lr.base,
	    &certa__v1__list_reply__descriptor, RPC_MS, NULL, 0, (ProtobufCMessage **)&list, &st,
	    NULL), 0);
	assert_int_equal(st, GRPC_STATUS_OK);
	assert_int_equal(list->n_programs, 2);
	assert_string_equal(list->programs[0]->id, ids[2]);
	assert_string_equal(list->programs[1]->id, ids[1]);
	assert_string_not_equal(list->next_page_token, "");
	lr.page_token = list->next_page_token;
	{
		Certa__V1__ListReply *l2 = NULL;
		assert_int_equal(rpc_sync_unary(e->ch, "/certa.v1.Reasoning/List", &lr.base,
		    &certa__v1__list_reply__descriptor, RPC_MS, NULL, 0, (ProtobufCMessage **)&l2,
		    &st, NULL), 0);
		assert_int_equal(l2->n_programs, 1);
		assert_string_equal(l2->programs[0]->id, ids[0]);
		assert_string_equal(l2->next_page_token, "");
		protobuf_c_message_free_unpacked(&l2->base, NULL);
	}
	protobuf_c_message_free_unpacked(&list->base, NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_submit_and_finish, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sc_three_chains, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_input, setup, teardown),
		cmocka_unit_test_setup_teardown(test_daemon_crash_resume, setup, teardown),
		cmocka_unit_test_setup_teardown(test_idempotency_key, setup, teardown),
		cmocka_unit_test_setup_teardown(test_deadline_and_budget, setup, teardown),
		cmocka_unit_test_setup_teardown(test_retention, setup, teardown),
		cmocka_unit_test_setup_teardown(test_model_routing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_worker_restart_same_address, setup, teardown),
		cmocka_unit_test_setup_teardown(test_worker_restart_between_steps, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_worker_failover, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sigterm_drain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_watch_and_list, setup, teardown),
	};
	int rc;

	grpc_init();
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	grpc_shutdown();
	return rc;
}
