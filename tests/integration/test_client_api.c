/*
 * test_client_api.c — what real clients (Python, Node, curl) found in the Reasoning API,
 * against the real certad and a real replay worker: event numbers clients can de-duplicate
 * on, an idempotency key reused for another program, page tokens, ListModels agreeing with
 * the model hint, sc n over what workers hold, per-chain end reasons and features, a
 * cancelled program's low_confidence, and the metrics address logged once.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <grpc/grpc.h>

#include "certa/v1/reasoning.pb-c.h"
#include "lib/rpc_client.h"
#include "tests/support/certa_client.h"
#include "tests/support/harness.h"
#include "tests/support/itest.h"

#define MAXEV 512

/* The events of one stream: kind ('a', 'p', 'f') and seq of each, the last finished event. */
struct seen {
	char kind[MAXEV];
	uint64_t seq[MAXEV];
	size_t n;
	int duplicate;
	char id[64];
	Certa__V1__ProgramEvent *fin;
	grpc_status_code status;
	char details[512];
};

static int
setup(void **state)
{
	*state = itest_new(sizeof(struct itest), 180, ITEST_TRACES_PICK);
	return 0;
}

static struct rpc_stream *
open_stream(struct itest *e, const char *method, const ProtobufCMessage *req)
{
	struct rpc_stream *s = NULL;

	assert_int_equal(rpc_sync_stream_open(e->ch, method, req,
	    &certa__v1__program_event__descriptor, 60000, NULL, 0, &s), 0);
	return s;
}

/* Reads events from s into sn: up to `stop` progress events (0: to the end, then closes s).
 * Returns 1 when it stopped early with s open. */
static int
read_seen(struct rpc_stream *s, struct seen *sn, size_t stop)
{
	Certa__V1__ProgramEvent *m;
	size_t progress = 0;
	char *d = NULL;

	while (rpc_sync_stream_next(s, 30000, (ProtobufCMessage **)&m) == 1) {
		assert_true(sn->n < MAXEV);
		sn->seq[sn->n] = m->seq;
		switch (m->event_case) {
		case CERTA__V1__PROGRAM_EVENT__EVENT_ACCEPTED:
			sn->kind[sn->n] = 'a';
			sn->duplicate = m->accepted->duplicate;
			snprintf(sn->id, sizeof sn->id, "%s", m->accepted->program_id);
			break;
		case CERTA__V1__PROGRAM_EVENT__EVENT_PROGRESS:
			sn->kind[sn->n] = 'p';
			progress++;
			break;
		case CERTA__V1__PROGRAM_EVENT__EVENT_FINISHED:
			sn->kind[sn->n] = 'f';
			if (sn->fin != NULL)
				protobuf_c_message_free_unpacked(&sn->fin->base, NULL);
			sn->fin = m;
			m = NULL;
			break;
		default:
			fail_msg("event without a kind");
		}
		sn->n++;
		if (m != NULL)
			protobuf_c_message_free_unpacked(&m->base, NULL);
		if (stop > 0 && progress >= stop)
			return 1;
	}
	sn->status = rpc_sync_stream_close(s, &d);
	snprintf(sn->details, sizeof sn->details, "%s", d != NULL ? d : "");
	free(d);
	return 0;
}

static void
seen_free(struct seen *sn)
{
	if (sn->fin != NULL)
		protobuf_c_message_free_unpacked(&sn->fin->base, NULL);
	memset(sn, 0, sizeof *sn);
}

static struct rpc_stream *
submit(struct itest *e, const Certa__V1__ProgramSpec *spec)
{
	Certa__V1__SubmitRequest req = CERTA__V1__SUBMIT_REQUEST__INIT;

	req.program = (Certa__V1__ProgramSpec *)spec;
	return open_stream(e, "/certa.v1.Reasoning/Submit", &req.base);
}

static struct rpc_stream *
watch(struct itest *e, const char *id)
{
	Certa__V1__WatchRequest w = CERTA__V1__WATCH_REQUEST__INIT;

	w.program_id = (char *)id;
	return open_stream(e, "/certa.v1.Reasoning/Watch", &w.base);
}

/* Strictly increasing along the stream, accepted (if any) first and 1, finished last. */
static void
assert_seq_shape(const struct seen *sn)
{
	size_t i;

	assert_true(sn->n > 0);
	for (i = 0; i < sn->n; i++) {
		if (sn->kind[i] == 'a') {
			assert_int_equal(i, 0);
			assert_int_equal(sn->seq[i], 1);
		}
		if (i > 0 && sn->seq[i] <= sn->seq[i - 1])
			fail_msg("event %zu (%c) has seq %llu after %llu", i, sn->kind[i],
			    (unsigned long long)sn->seq[i], (unsigned long long)sn->seq[i - 1]);
	}
	assert_int_equal(sn->kind[sn->n - 1], 'f');
}

/* seq was a stream counter: Watch on a finished program restarted at 1, a retry of a finished
 * program sent accepted 0 then finished 1, a retry while running accepted 3.  Now each event
 * has its program's number on every stream. */
static void
test_event_seq_stable(void **state)
{
	struct itest *e = *state;
	Certa__V1__ProgramSpec spec = CERTA__V1__PROGRAM_SPEC__INIT;
	struct seen first, w, retry, running, retry_run;
	struct rpc_stream *s, *s2;
	uint64_t fin_seq;
	size_t i;

	HARNESS_NEED_TRACES(e);
	itest_start(e, "20", ITEST_ANONYMOUS | ITEST_SETTLE, NULL);
	spec.problem = (char *)e->tr->problem;
	spec.idempotency_key = (char *)"seq-1";
	memset(&first, 0, sizeof first);
	read_seen(submit(e, &spec), &first, 0);
	assert_int_equal(first.status, GRPC_STATUS_OK);
	assert_seq_shape(&first);
	assert_true(first.n >= 3);              /* accepted, some progress, finished */
	fin_seq = first.seq[first.n - 1];

	/* Watch on the finished program: its finished event, same number. */
	memset(&w, 0, sizeof w);
	read_seen(watch(e, first.id), &w, 0);
	assert_int_equal(w.status, GRPC_STATUS_OK);
	assert_int_equal(w.n, 1);
	assert_int_equal(w.kind[0], 'f');
	assert_int_equal(w.seq[0], fin_seq);

	/* The idempotent retry after the end: accepted 1 (duplicate), finished the same. */
	memset(&retry, 0, sizeof retry);
	read_seen(submit(e, &spec), &retry, 0);
	assert_int_equal(retry.status, GRPC_STATUS_OK);
	assert_int_equal(retry.n, 2);
	assert_int_equal(retry.duplicate, 1);
	assert_string_equal(retry.id, first.id);
	assert_int_equal(retry.seq[0], 1);
	assert_int_equal(retry.seq[1], fin_seq);

	/* A retry while running: accepted 1, then the numbers the first stream gets. */
	spec.idempotency_key = (char *)"seq-2";
	memset(&running, 0, sizeof running);
	s = submit(e, &spec);
	assert_int_equal(read_seen(s, &running, 2), 1);
	memset(&retry_run, 0, sizeof retry_run);
	s2 = submit(e, &spec);
	assert_int_equal(read_seen(s2, &retry_run, 1), 1);
	assert_int_equal(retry_run.kind[0], 'a');
	assert_int_equal(retry_run.seq[0], 1);
	assert_int_equal(retry_run.duplicate, 1);
	read_seen(s, &running, 0);
	read_seen(s2, &retry_run, 0);
	assert_seq_shape(&running);
	assert_seq_shape(&retry_run);
	/* Every event the retry saw after accepted is one the first stream saw, same number. */
	for (i = 1; i < retry_run.n; i++) {
		size_t j;
		int found = 0;
		for (j = 0; j < running.n; j++)
			found |= running.seq[j] == retry_run.seq[i] &&
			    running.kind[j] == retry_run.kind[i];
		if (!found)
			fail_msg("retry event %zu (%c seq %llu) not on the first stream", i,
			    retry_run.kind[i], (unsigned long long)retry_run.seq[i]);
	}
	seen_free(&first);
	seen_free(&w);
	seen_free(&retry);
	seen_free(&running);
	seen_free(&retry_run);
}

/* An idempotency key reused with another problem or algorithm returned the old program
 * silently; now FAILED_PRECONDITION naming the field. */
static void
test_idempotency_mismatch(void **state)
{
	struct itest *e = *state;
	Certa__V1__ProgramSpec spec = CERTA__V1__PROGRAM_SPEC__INIT;
	struct seen a, b, c;

	HARNESS_NEED_TRACES(e);
	itest_start(e, "0", ITEST_ANONYMOUS | ITEST_SETTLE, NULL);
	spec.problem = (char *)e->tr->problem;
	spec.idempotency_key = (char *)"mismatch-1";
	memset(&a, 0, sizeof a);
	read_seen(submit(e, &spec), &a, 0);
	assert_int_equal(a.status, GRPC_STATUS_OK);

	spec.problem = (char *)"What is 2+2?";
	memset(&b, 0, sizeof b);
	read_seen(submit(e, &spec), &b, 0);
	assert_int_equal(b.status, GRPC_STATUS_FAILED_PRECONDITION);
	assert_int_equal(b.n, 0);
	assert_non_null(strstr(b.details, "program.problem"));
	assert_non_null(strstr(b.details, a.id));

	spec.problem = (char *)e->tr->problem;
	spec.algorithm = CERTA__V1__ALGORITHM__ALGORITHM_SC;
	spec.n = 2;
	memset(&c, 0, sizeof c);
	read_seen(submit(e, &spec), &c, 0);
	assert_int_equal(c.status, GRPC_STATUS_FAILED_PRECONDITION);
	assert_non_null(strstr(c.details, "program.algorithm"));
	seen_free(&a);
	seen_free(&b);
	seen_free(&c);
}

/* List with a garbage page_token answered OK and nothing. */
static void
test_page_token_refused(void **state)
{
	struct itest *e = *state;
	Certa__V1__ListRequest lr = CERTA__V1__LIST_REQUEST__INIT;
	ProtobufCMessage *r = NULL;
	char msg[512];

	itest_start(e, "0", ITEST_ANONYMOUS, NULL);
	lr.page_token = (char *)"garbage";
	assert_int_equal(itest_call(e->ch, "/certa.v1.Reasoning/List", &lr.base,
	    &certa__v1__list_reply__descriptor, NULL, &r, msg, sizeof msg),
	    GRPC_STATUS_INVALID_ARGUMENT);
	assert_non_null(strstr(msg, "page_token"));
	lr.page_token = (char *)"p-00000000000000000x";
	assert_int_equal(itest_call(e->ch, "/certa.v1.Reasoning/List", &lr.base,
	    &certa__v1__list_reply__descriptor, NULL, &r, msg, sizeof msg),
	    GRPC_STATUS_INVALID_ARGUMENT);
	/* A well-formed token (of no program) is a page, maybe empty; page_size over the
	 * maximum is served as the maximum. */
	lr.page_token = (char *)"p-0000000000000000ab";
	lr.page_size = 100000;
	assert_int_equal(itest_call(e->ch, "/certa.v1.Reasoning/List", &lr.base,
	    &certa__v1__list_reply__descriptor, NULL, &r, msg, sizeof msg), GRPC_STATUS_OK);
	protobuf_c_message_free_unpacked(r, NULL);
}

/* ListModels names what the model hint accepts, every name a worker serves; sc n over what
 * the largest worker holds is refused at submit instead of failing inside. */
static void
test_models_agree(void **state)
{
	struct itest *e = *state;
	Certa__V1__ListModelsRequest lm = CERTA__V1__LIST_MODELS_REQUEST__INIT;
	Certa__V1__ListModelsReply *r = NULL;
	Certa__V1__ProgramSpec spec = CERTA__V1__PROGRAM_SPEC__INIT;
	struct seen sn;
	char msg[512];
	size_t i;
	int found = 0;

	HARNESS_NEED_TRACES(e);
	itest_start(e, "0", ITEST_ANONYMOUS | ITEST_SETTLE, NULL);
	assert_int_equal(itest_call(e->ch, "/certa.v1.Reasoning/ListModels", &lm.base,
	    &certa__v1__list_models_reply__descriptor, NULL, (ProtobufCMessage **)&r, msg,
	    sizeof msg), GRPC_STATUS_OK);
	assert_true(r->n_models >= 1);
	for (i = 0; i < r->n_models; i++) {
		assert_true(r->models[i]->workers >= 1);
		assert_true(r->models[i]->max_chains >= 1);
		found |= strcmp(r->models[i]->name, e->tr->model) == 0;
	}
	assert_true(found);

	/* Each listed name is accepted as a hint... */
	spec.problem = (char *)e->tr->problem;
	spec.model = r->models[0]->name;
	spec.token_budget = 64;
	memset(&sn, 0, sizeof sn);
	read_seen(submit(e, &spec), &sn, 0);
	assert_int_equal(sn.status, GRPC_STATUS_OK);
	seen_free(&sn);
	/* ... one not listed is not, and the message lists the names. */
	spec.model = (char *)"no-such-model";
	memset(&sn, 0, sizeof sn);
	read_seen(submit(e, &spec), &sn, 0);
	assert_int_equal(sn.status, GRPC_STATUS_INVALID_ARGUMENT);
	assert_non_null(strstr(sn.details, r->models[0]->name));
	seen_free(&sn);

	/* sc n larger than any worker holds at once. */
	spec.model = (char *)"";
	spec.algorithm = CERTA__V1__ALGORITHM__ALGORITHM_SC;
	spec.n = r->models[0]->max_chains + 1;
	memset(&sn, 0, sizeof sn);
	read_seen(submit(e, &spec), &sn, 0);
	assert_int_equal(sn.status, GRPC_STATUS_INVALID_ARGUMENT);
	assert_non_null(strstr(sn.details, "program.n"));
	assert_int_equal(sn.n, 0);
	seen_free(&sn);
	protobuf_c_message_free_unpacked(&r->base, NULL);
}

/* A cancelled program reported low_confidence=false, and chains the program stopped said
 * finished=false with reason UNSPECIFIED and the program's features. */
static void
test_cancel_chain_reasons(void **state)
{
	struct itest *e = *state;
	Certa__V1__ProgramSpec spec = CERTA__V1__PROGRAM_SPEC__INIT;
	Certa__V1__CancelRequest cr = CERTA__V1__CANCEL_REQUEST__INIT;
	ProtobufCMessage *r = NULL;
	const Certa__V1__Finished *f;
	struct rpc_stream *s;
	struct seen sn;
	size_t i, differ = 0;

	HARNESS_NEED_TRACES(e);
	itest_start(e, "20", ITEST_ANONYMOUS | ITEST_SETTLE, NULL);
	if (e->tr->nsamples < 3)
		skip();
	spec.problem = (char *)e->tr->problem;
	spec.algorithm = CERTA__V1__ALGORITHM__ALGORITHM_SC;
	spec.n = 3;
	memset(&sn, 0, sizeof sn);
	s = submit(e, &spec);
	assert_int_equal(read_seen(s, &sn, 3), 1);
	cr.program_id = sn.id;
	assert_int_equal(itest_call(e->ch, "/certa.v1.Reasoning/Cancel", &cr.base,
	    &certa__v1__cancel_reply__descriptor, NULL, &r, NULL, 0), GRPC_STATUS_OK);
	protobuf_c_message_free_unpacked(r, NULL);
	read_seen(s, &sn, 0);
	assert_int_equal(sn.status, GRPC_STATUS_OK);
	assert_non_null(sn.fin);
	f = sn.fin->finished;
	assert_int_equal(f->result->reason, CERTA__V1__FINISH_REASON__FINISH_REASON_CANCELLED);
	assert_true(f->result->low_confidence);
	assert_int_equal(f->n_requests, 3);
	for (i = 0; i < f->n_requests; i++) {
		const Certa__V1__RequestProgress *rq = f->requests[i];
		assert_non_null(rq->certainty);
		if (rq->finished)
			assert_int_equal(rq->reason,
			    CERTA__V1__FINISH_REASON__FINISH_REASON_NATURAL_END);
		else
			assert_int_equal(rq->reason,
			    CERTA__V1__FINISH_REASON__FINISH_REASON_CANCELLED);
		if (i > 0 && (rq->certainty->stable_tokens !=
		    f->requests[0]->certainty->stable_tokens ||
		    rq->certainty->certaindex != f->requests[0]->certainty->certaindex ||
		    rq->certainty->grounded != f->requests[0]->certainty->grounded ||
		    rq->certainty->valid_answer != f->requests[0]->certainty->valid_answer ||
		    rq->certainty->position != f->requests[0]->certainty->position))
			differ++;
	}
	/* Three recorded samples of one problem: their own features are not all the same. */
	assert_true(differ > 0);
	seen_free(&sn);
}

/* certad logged "metrics on http://..." twice (main and lib/metrics). */
static void
test_metrics_logged_once(void **state)
{
	struct itest *e = *state;
	char cmd[1024];
	FILE *p;
	int n = -1;

	itest_start(e, "0", ITEST_ANONYMOUS | ITEST_METRICS, NULL);
	snprintf(cmd, sizeof cmd, "grep -c 'metrics on http://' %s",
	    harness_log_path(e->d));
	p = popen(cmd, "r");
	assert_non_null(p);
	assert_int_equal(fscanf(p, "%d", &n), 1);
	pclose(p);
	assert_int_equal(n, 1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_event_seq_stable, setup, itest_teardown),
		cmocka_unit_test_setup_teardown(test_idempotency_mismatch, setup, itest_teardown),
		cmocka_unit_test_setup_teardown(test_page_token_refused, setup, itest_teardown),
		cmocka_unit_test_setup_teardown(test_models_agree, setup, itest_teardown),
		cmocka_unit_test_setup_teardown(test_cancel_chain_reasons, setup, itest_teardown),
		cmocka_unit_test_setup_teardown(test_metrics_logged_once, setup, itest_teardown),
	};
	int rc;

	grpc_init();
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	grpc_shutdown();
	return rc;
}
