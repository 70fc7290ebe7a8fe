/*
 * test_client_api.c — what real clients (Python, Node, curl) found in the Reasoning API,
 * against the real certad and a real replay worker: event numbers clients can de-duplicate
 * on, an idempotency key reused for another program, page tokens, ListModels agreeing with
 * the model hint, sc n over what workers hold, per-chain end reasons and features, a
 * cancelled program's low_confidence, the metrics address logged once, and google.rpc
 * error details in grpc-status-details-bin.
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
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>

#include "certa/v1/admin.pb-c.h"
#include "certa/v1/reasoning.pb-c.h"
#include "google/rpc/error_details.pb-c.h"
#include "google/rpc/status.pb-c.h"
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
	Certa__V1__ListWorkersRequest lw = CERTA__V1__LIST_WORKERS_REQUEST__INIT;
	Certa__V1__ListWorkersReply *wr = NULL;
	Certa__V1__ProgramSpec spec = CERTA__V1__PROGRAM_SPEC__INIT;
	struct seen sn;
	char msg[512];
	size_t i;
	int found = 0;

	HARNESS_NEED_TRACES(e);
	itest_start(e, "0", ITEST_ANONYMOUS | ITEST_SETTLE | ITEST_ADMIN, NULL);
	assert_int_equal(itest_call(e->ch, "/certa.v1.Reasoning/ListModels", &lm.base,
	    &certa__v1__list_models_reply__descriptor, NULL, (ProtobufCMessage **)&r, msg,
	    sizeof msg), GRPC_STATUS_OK);
	assert_true(r->n_models >= 1);
	assert_int_equal(itest_call(e->adm, "/certa.v1.Admin/ListWorkers", &lw.base,
	    &certa__v1__list_workers_reply__descriptor, NULL, (ProtobufCMessage **)&wr, msg,
	    sizeof msg), GRPC_STATUS_OK);
	assert_int_equal(wr->n_workers, 1);
	for (i = 0; i < r->n_models; i++) {
		size_t j;
		int listed = 0;
		assert_true(r->models[i]->workers >= 1);
		assert_true(r->models[i]->max_chains >= 1);
		found |= strcmp(r->models[i]->name, e->tr->model) == 0;
		/* ListWorkers names every model ListModels does (it showed the primary only). */
		for (j = 0; j < wr->workers[0]->n_models; j++)
			listed |= strcmp(wr->workers[0]->models[j], r->models[i]->name) == 0;
		if (!listed)
			fail_msg("ListModels names %s, ListWorkers does not", r->models[i]->name);
	}
	assert_int_equal(wr->workers[0]->n_models, r->n_models);
	assert_true(found);
	protobuf_c_message_free_unpacked(&wr->base, NULL);

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

/* A call that fails before any message, on the raw API: its status, message and the
 * google.rpc.Status of its grpc-status-details-bin trailer (NULL when none). */
static Google__Rpc__Status *
raw_failing_call(struct itest *e, const char *method, const ProtobufCMessage *req,
    const char *bearer, grpc_status_code *status, char *details, size_t len)
{
	grpc_channel_credentials *creds = grpc_insecure_credentials_create();
	grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
	grpc_metadata_array init, trail;
	Google__Rpc__Status *st = NULL;
	grpc_byte_buffer *bb = rpc_pack(req);
	grpc_metadata md;
	grpc_slice det, m = grpc_slice_from_copied_string(method);
	grpc_channel *ch;
	grpc_call *call;
	grpc_op ops[5];
	grpc_event ev;
	char target[64], authz[256];
	size_t i;
	gpr_timespec dl = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
	    gpr_time_from_millis(ITEST_RPC_MS, GPR_TIMESPAN));

	snprintf(target, sizeof target, "127.0.0.1:%d", e->dport);
	ch = grpc_channel_create(target, creds, NULL);
	grpc_channel_credentials_release(creds);
	call = grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, m, NULL, dl, NULL);
	grpc_slice_unref(m);
	grpc_metadata_array_init(&init);
	grpc_metadata_array_init(&trail);
	memset(ops, 0, sizeof ops);
	memset(&md, 0, sizeof md);
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	if (bearer != NULL) {
		snprintf(authz, sizeof authz, "Bearer %s", bearer);
		md.key = grpc_slice_from_static_string("authorization");
		md.value = grpc_slice_from_copied_string(authz);
		ops[0].data.send_initial_metadata.count = 1;
		ops[0].data.send_initial_metadata.metadata = &md;
	}
	ops[1].op = GRPC_OP_SEND_MESSAGE;
	ops[1].data.send_message.send_message = bb;
	ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[3].data.recv_initial_metadata.recv_initial_metadata = &init;
	ops[4].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[4].data.recv_status_on_client.trailing_metadata = &trail;
	ops[4].data.recv_status_on_client.status = status;
	ops[4].data.recv_status_on_client.status_details = &det;
	assert_int_equal(grpc_call_start_batch(call, ops, 5, (void *)1, NULL), GRPC_CALL_OK);
	ev = grpc_completion_queue_pluck(cq, (void *)1, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
	assert_int_equal(ev.type, GRPC_OP_COMPLETE);
	snprintf(details, len, "%.*s", (int)GRPC_SLICE_LENGTH(det),
	    (const char *)GRPC_SLICE_START_PTR(det));
	for (i = 0; i < trail.count; i++) {
		if (!grpc_slice_str_cmp(trail.metadata[i].key, "grpc-status-details-bin"))
			st = google__rpc__status__unpack(NULL,
			    GRPC_SLICE_LENGTH(trail.metadata[i].value),
			    GRPC_SLICE_START_PTR(trail.metadata[i].value));
	}
	grpc_slice_unref(det);
	if (bearer != NULL)
		grpc_slice_unref(md.value);
	grpc_byte_buffer_destroy(bb);
	grpc_metadata_array_destroy(&init);
	grpc_metadata_array_destroy(&trail);
	grpc_call_unref(call);
	grpc_channel_destroy(ch);
	grpc_completion_queue_shutdown(cq);
	while (grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_REALTIME),
	    NULL).type != GRPC_QUEUE_SHUTDOWN)
		;
	grpc_completion_queue_destroy(cq);
	return st;
}

/* No structured error details: now google.rpc.Status with BadRequest naming the field for
 * INVALID_ARGUMENT, QuotaFailure naming the limit and RetryInfo for a quota that refills. */
static void
test_status_details(void **state)
{
	struct itest *e = *state;
	Certa__V1__SubmitRequest req = CERTA__V1__SUBMIT_REQUEST__INIT;
	Certa__V1__ProgramSpec spec = CERTA__V1__PROGRAM_SPEC__INIT;
	Certa__V1__SamplingParams sp = CERTA__V1__SAMPLING_PARAMS__INIT;
	Certa__V1__CreateTenantRequest ct = CERTA__V1__CREATE_TENANT_REQUEST__INIT;
	Certa__V1__Tenant t = CERTA__V1__TENANT__INIT;
	Certa__V1__Quota q = CERTA__V1__QUOTA__INIT;
	Certa__V1__CreateTenantReply *cr = NULL;
	Google__Rpc__BadRequest *br;
	Google__Rpc__QuotaFailure *qf;
	Google__Rpc__RetryInfo *ri;
	Google__Rpc__Status *st;
	struct certa_client_events ev;
	struct rpc_stream *s;
	grpc_status_code code;
	char details[1024], key[128];

	HARNESS_NEED_TRACES(e);
	itest_start(e, "0", ITEST_ADMIN | ITEST_ANONYMOUS | ITEST_SETTLE, NULL);

	/* BadRequest: the field of an out-of-range value. */
	sp.temperature = -1;
	spec.problem = (char *)e->tr->problem;
	spec.sampling = &sp;
	req.program = &spec;
	st = raw_failing_call(e, "/certa.v1.Reasoning/Submit", &req.base, NULL, &code, details,
	    sizeof details);
	assert_int_equal(code, GRPC_STATUS_INVALID_ARGUMENT);
	assert_non_null(st);
	assert_int_equal(st->code, GRPC_STATUS_INVALID_ARGUMENT);
	assert_string_equal(st->message, details);     /* what from_call() helpers check */
	assert_int_equal(st->n_details, 1);
	assert_string_equal(st->details[0]->type_url, "type.googleapis.com/google.rpc.BadRequest");
	br = google__rpc__bad_request__unpack(NULL, st->details[0]->value.len,
	    st->details[0]->value.data);
	assert_non_null(br);
	assert_int_equal(br->n_field_violations, 1);
	assert_string_equal(br->field_violations[0]->field, "program.sampling.temperature");
	protobuf_c_message_free_unpacked(&br->base, NULL);
	protobuf_c_message_free_unpacked(&st->base, NULL);

	/* QuotaFailure + RetryInfo: a tenant that spent its tokens_per_minute. */
	q.tokens_per_minute = 100;
	t.name = (char *)"meter";
	t.weight = 1;
	t.quota = &q;
	ct.tenant = &t;
	assert_int_equal(itest_call(e->adm, "/certa.v1.Admin/CreateTenant", &ct.base,
	    &certa__v1__create_tenant_reply__descriptor, NULL, (ProtobufCMessage **)&cr, NULL,
	    0), GRPC_STATUS_OK);
	snprintf(key, sizeof key, "%s", cr->api_key);
	protobuf_c_message_free_unpacked(&cr->base, NULL);
	spec.sampling = NULL;
	assert_int_equal(certa_client_submit(e->ch, &spec, key, 60000, &s), 0);
	memset(&ev, 0, sizeof ev);
	assert_int_equal(certa_client_events_read(s, 10000, 2, &ev), 1);
	st = raw_failing_call(e, "/certa.v1.Reasoning/Submit", &req.base, key, &code, details,
	    sizeof details);
	assert_int_equal(code, GRPC_STATUS_RESOURCE_EXHAUSTED);
	assert_non_null(st);
	assert_string_equal(st->message, details);
	assert_int_equal(st->n_details, 2);
	assert_string_equal(st->details[0]->type_url,
	    "type.googleapis.com/google.rpc.QuotaFailure");
	qf = google__rpc__quota_failure__unpack(NULL, st->details[0]->value.len,
	    st->details[0]->value.data);
	assert_non_null(qf);
	assert_int_equal(qf->n_violations, 1);
	assert_string_equal(qf->violations[0]->subject, "tenant:meter");
	assert_int_equal(strncmp(qf->violations[0]->description, "tokens_per_minute:", 18), 0);
	assert_string_equal(st->details[1]->type_url, "type.googleapis.com/google.rpc.RetryInfo");
	ri = google__rpc__retry_info__unpack(NULL, st->details[1]->value.len,
	    st->details[1]->value.data);
	assert_non_null(ri);
	assert_non_null(ri->retry_delay);
	/* The minute is kept in one-second slots: up to 61 s. */
	if (!(ri->retry_delay->seconds >= 1 && ri->retry_delay->seconds <= 61))
		fail_msg("retry_delay %lld s %d ns for \"%s\"", (long long)ri->retry_delay->seconds,
		    ri->retry_delay->nanos, details);
	protobuf_c_message_free_unpacked(&ri->base, NULL);
	protobuf_c_message_free_unpacked(&qf->base, NULL);
	protobuf_c_message_free_unpacked(&st->base, NULL);
	rpc_sync_stream_cancel(s);
	certa_client_events_read(s, 10000, 0, &ev);
	certa_client_events_free(&ev);
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
		cmocka_unit_test_setup_teardown(test_status_details, setup, itest_teardown),
	};
	int rc;

	grpc_init();
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	grpc_shutdown();
	return rc;
}
