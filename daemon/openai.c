/* openai.c — the OpenAI-compatible HTTP API: evhttp in, programs and their events out. */
#include "daemon/openai.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "certa/v1/reasoning.pb-c.h"
#include "daemon/auth.h"
#include "daemon/core.h"
#include "daemon/openai_request.h"
#include "daemon/pool.h"
#include "daemon/queries.h"
#include "daemon/submit.h"
#include "lib/error.h"
#include "lib/jsonw.h"
#include "lib/log.h"
#include "lib/rpc_server.h"

struct oai_req;

struct openai {
	struct event_base *base;
	struct core *core;
	struct auth *auth;
	struct evhttp *http;
	SSL_CTX *ssl;              /* NULL: plain HTTP */
	struct oai_req *reqs;      /* requests waiting for their program */
};

/* One POST that became (or found) a program.  Owned by the openai; freed on the loop after
 * its answer is complete or its client went away (oai_req_release). */
struct oai_req {
	struct openai *o;
	struct evhttp_request *req;       /* NULL once answered or the client is gone */
	struct evhttp_connection *conn;
	struct rpc_call *call;            /* the program's watcher (our reference) */
	struct openai_request pr;
	char *tenant;
	char id[64];                      /* program id, from `accepted` */
	long long created;                /* unix seconds */
	bool streaming;                   /* headers of an event stream are out */
	bool failed;                      /* the finished event said FAILED */
	char *fail_message;
	char *body;                       /* non-stream: the response, built at `finished` */
	size_t *sent;                     /* stream: reasoning bytes sent per chain */
	size_t nsent;
	bool released;
	struct oai_req *prev, *next;
};

/* --- errors in OpenAI's shape --- */

/* HTTP status and OpenAI error type of a certa error code. */
static const struct {
	int err;
	int http;
	const char *type;
	const char *code;
} oai_errors[] = {
	{ CERTA_EINVAL, 400, "invalid_request_error", NULL },
	{ CERTA_EAUTH, 401, "invalid_request_error", "invalid_api_key" },
	{ CERTA_EDENIED, 403, "permission_error", NULL },
	{ CERTA_ENOTFOUND, 404, "invalid_request_error", "not_found" },
	{ CERTA_ECAPACITY, 429, "rate_limit_error", "rate_limit_exceeded" },
	{ CERTA_EUNAVAIL, 503, "service_unavailable_error", "unavailable" },
	{ CERTA_ETIMEOUT, 504, "timeout_error", NULL },
};

/* A failed program's gRPC status as HTTP. */
static const struct {
	grpc_status_code status;
	int http;
} oai_grpc_http[] = {
	{ GRPC_STATUS_INVALID_ARGUMENT, 400 },
	{ GRPC_STATUS_FAILED_PRECONDITION, 400 },
	{ GRPC_STATUS_OUT_OF_RANGE, 400 },
	{ GRPC_STATUS_UNAUTHENTICATED, 401 },
	{ GRPC_STATUS_PERMISSION_DENIED, 403 },
	{ GRPC_STATUS_NOT_FOUND, 404 },
	{ GRPC_STATUS_RESOURCE_EXHAUSTED, 429 },
	{ GRPC_STATUS_UNAVAILABLE, 503 },
	{ GRPC_STATUS_DEADLINE_EXCEEDED, 504 },
};

/* Quotas that a retry later can pass: 429 with Retry-After.  The others (sizes) are 400. */
static const char *const oai_retryable_quotas[] = {
	"quota tokens_per_minute", "quota max_concurrent_programs",
};

static const char *
oai_reason_phrase(int http)
{
	switch (http) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 413: return "Payload Too Large";
	case 429: return "Too Many Requests";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	default: return "Internal Server Error";
	}
}

/* {"error": {...}} into w. */
static void
oai_error_json(struct jsonw *w, const char *message, const char *type, const char *param,
    const char *code)
{
	jsonw_object_begin(w);
	jsonw_key(w, "error");
	jsonw_object_begin(w);
	jsonw_kstring(w, "message", message);
	jsonw_kstring(w, "type", type);
	if (param != NULL && param[0] != '\0')
		jsonw_kstring(w, "param", param);
	else
		jsonw_knull(w, "param");
	if (code != NULL)
		jsonw_kstring(w, "code", code);
	else
		jsonw_knull(w, "code");
	jsonw_object_end(w);
	jsonw_object_end(w);
}

/* Sends a complete JSON reply (body NULL: an empty object). */
static void
oai_send_json(struct evhttp_request *req, int http, const char *body, size_t len,
    int retry_after_s)
{
	struct evbuffer *b = evbuffer_new();
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	char ra[24];

	if (b == NULL) {
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	evhttp_add_header(h, "Content-Type", "application/json");
	evhttp_add_header(h, "Cache-Control", "no-store");
	if (retry_after_s > 0) {
		snprintf(ra, sizeof ra, "%d", retry_after_s);
		evhttp_add_header(h, "Retry-After", ra);
	}
	evbuffer_add(b, body != NULL ? body : "{}", body != NULL ? len : 2);
	evbuffer_add(b, "\n", 1);
	evhttp_send_reply(req, http, oai_reason_phrase(http), b);
	evbuffer_free(b);
}

/* An error reply. */
static void
oai_send_error(struct evhttp_request *req, int http, const char *message, const char *type,
    const char *param, const char *code, int retry_after_s)
{
	struct jsonw *w;
	const char *data;
	size_t len;

	if (jsonw_new(&w) != 0) {
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	oai_error_json(w, message, type, param, code);
	data = jsonw_data(w, &len);
	oai_send_json(req, http, data, len, retry_after_s);
	jsonw_free(w);
}

/* Seconds a quota message asks to wait ("... retry in 12 s"); 1 when it names none. */
static int
oai_retry_after(const char *msg)
{
	const char *p = strstr(msg, "retry in ");
	long s;

	if (p == NULL)
		return 1;
	s = strtol(p + 9, NULL, 10);
	return s >= 1 && s <= 3600 ? (int)s : 1;
}

/* The error reply for a certa error code and its message (submit, auth). */
static void
oai_send_certa_error(struct evhttp_request *req, enum openai_request_kind kind, int rc,
    const char *msg)
{
	const char *param = openai_request_param_of(msg);
	size_t i;

	if (strcmp(param, "messages") == 0 && kind == OPENAI_REQUEST_COMPLETION)
		param = "prompt";
	if (rc == CERTA_EINVAL && strcmp(param, "model") == 0) {
		oai_send_error(req, 404, msg, "invalid_request_error", "model", "model_not_found", 0);
		return;
	}
	if (rc == CERTA_ECAPACITY) {
		for (i = 0; i < sizeof oai_retryable_quotas / sizeof oai_retryable_quotas[0]; i++)
			if (strncmp(msg, oai_retryable_quotas[i], strlen(oai_retryable_quotas[i])) == 0)
				break;
		if (i == sizeof oai_retryable_quotas / sizeof oai_retryable_quotas[0]) {
			oai_send_error(req, 400, msg, "invalid_request_error", param, "quota_exceeded",
			    0);
			return;
		}
		oai_send_error(req, 429, msg, "rate_limit_error", NULL, "rate_limit_exceeded",
		    oai_retry_after(msg));
		return;
	}
	for (i = 0; i < sizeof oai_errors / sizeof oai_errors[0]; i++) {
		if (oai_errors[i].err == rc) {
			oai_send_error(req, oai_errors[i].http, msg, oai_errors[i].type, param,
			    oai_errors[i].code, oai_errors[i].http == 503 ? 1 : 0);
			return;
		}
	}
	oai_send_error(req, 500, msg[0] ? msg : certa_strerror(rc), "server_error", NULL, NULL,
	    0);
}

/* --- request lifetime --- */

static void oai_conn_closed(struct evhttp_connection *conn, void *arg);

/* Frees a request (on the loop, outside any callback that may still use it). */
static void
oai_req_free_cb(evutil_socket_t fd, short what, void *arg)
{
	struct oai_req *r = arg;

	(void)fd;
	(void)what;
	openai_request_clear(&r->pr);
	free(r->tenant);
	free(r->fail_message);
	free(r->body);
	free(r->sent);
	free(r);
}

/* The request is over for us: stop watching the program (it goes on), forget the
 * connection, free the memory on the next loop turn (now: at once, when the loop stops). */
static void
oai_req_drop(struct oai_req *r, bool now)
{
	struct timeval tv0 = { 0, 0 };

	if (r->released)
		return;
	r->released = true;
	if (r->conn != NULL)
		evhttp_connection_set_closecb(r->conn, NULL, NULL);
	r->conn = NULL;
	r->req = NULL;
	if (r->call != NULL) {
		rpc_call_local_close(r->call);
		rpc_call_unref(r->call);
		r->call = NULL;
	}
	if (r->prev != NULL)
		r->prev->next = r->next;
	else
		r->o->reqs = r->next;
	if (r->next != NULL)
		r->next->prev = r->prev;
	if (now)
		oai_req_free_cb(-1, 0, r);
	else if (event_base_once(r->o->base, -1, EV_TIMEOUT, oai_req_free_cb, r, &tv0) != 0)
		log_err(LOG_MAIN, "http: cannot schedule a request's release (leaked)");
}

static void
oai_req_release(struct oai_req *r)
{
	oai_req_drop(r, false);
}

/* The client went away: its program goes on (certactl watch / get find it). */
static void
oai_conn_closed(struct evhttp_connection *conn, void *arg)
{
	struct oai_req *r = arg;

	(void)conn;
	if (r->id[0] != '\0')
		log_info(LOG_MAIN, "http: client of program %s went away; the program goes on",
		    r->id);
	/* A request libevent detached from its closing connection (EOF before our answer) is
	 * ours to free; one still attached goes with the connection. */
	if (r->req != NULL && evhttp_request_get_connection(r->req) == NULL)
		evhttp_request_free(r->req);
	r->req = NULL;
	r->conn = NULL;
	oai_req_release(r);
}

/* --- response bodies --- */

static const char *const oai_reasons[] = {
	[CERTA__V1__FINISH_REASON__FINISH_REASON_UNSPECIFIED] = "unspecified",
	[CERTA__V1__FINISH_REASON__FINISH_REASON_CERTAIN] = "certain",
	[CERTA__V1__FINISH_REASON__FINISH_REASON_BUDGET] = "budget",
	[CERTA__V1__FINISH_REASON__FINISH_REASON_UNPROMISING] = "unpromising",
	[CERTA__V1__FINISH_REASON__FINISH_REASON_NATURAL_END] = "natural_end",
	[CERTA__V1__FINISH_REASON__FINISH_REASON_CANCELLED] = "cancelled",
	[CERTA__V1__FINISH_REASON__FINISH_REASON_FAILED] = "failed",
	[CERTA__V1__FINISH_REASON__FINISH_REASON_DEADLINE] = "deadline",
};

static const char *
oai_reason_name(int reason)
{
	if (reason >= 0 && (size_t)reason < sizeof oai_reasons / sizeof oai_reasons[0])
		return oai_reasons[reason];
	return "unspecified";
}

/* OpenAI's finish_reason: "length" when the budget ended the program, else "stop". */
static const char *
oai_finish_reason(int reason)
{
	return reason == CERTA__V1__FINISH_REASON__FINISH_REASON_BUDGET ? "length" : "stop";
}

/* Opens a response or chunk object: id, object, created, model. */
static void
oai_head(struct oai_req *r, struct jsonw *w, bool chunk)
{
	char id[96];
	bool chat = r->pr.kind == OPENAI_REQUEST_CHAT;

	snprintf(id, sizeof id, "%s%s", chat ? "chatcmpl-" : "cmpl-", r->id);
	jsonw_object_begin(w);
	jsonw_kstring(w, "id", id);
	jsonw_kstring(w, "object", chat ? (chunk ? "chat.completion.chunk" : "chat.completion") :
	    "text_completion");
	jsonw_kint(w, "created", r->created);
	jsonw_kstring(w, "model", r->pr.model);
	jsonw_knull(w, "system_fingerprint");
}

/* usage from a result. */
static void
oai_usage(struct jsonw *w, const Certa__V1__ProgramResult *res)
{
	uint64_t reasoning = res != NULL ? res->tokens_used : 0;
	uint64_t completion = reasoning + (res != NULL ? res->probe_tokens : 0);

	jsonw_key(w, "usage");
	jsonw_object_begin(w);
	jsonw_kuint(w, "prompt_tokens", 0);
	jsonw_kuint(w, "completion_tokens", completion);
	jsonw_kuint(w, "total_tokens", completion);
	jsonw_key(w, "completion_tokens_details");
	jsonw_object_begin(w);
	jsonw_kuint(w, "reasoning_tokens", reasoning);
	jsonw_object_end(w);
	jsonw_object_end(w);
}

/* certa's extra object of a final response / chunk. */
static void
oai_certa_final(struct oai_req *r, struct jsonw *w, const Certa__V1__Finished *fin)
{
	const Certa__V1__ProgramResult *res = fin->result;

	jsonw_key(w, "certa");
	jsonw_object_begin(w);
	jsonw_kstring(w, "program_id", r->id);
	jsonw_kstring(w, "reason", oai_reason_name(res != NULL ? (int)res->reason : 0));
	jsonw_kstring(w, "answer", res != NULL ? res->answer : "");
	jsonw_kdouble(w, "certaindex", res != NULL ? res->certaindex : 0);
	jsonw_kbool(w, "low_confidence", res != NULL && res->low_confidence);
	jsonw_kuint(w, "tokens_used", res != NULL ? res->tokens_used : 0);
	jsonw_kuint(w, "probe_tokens", res != NULL ? res->probe_tokens : 0);
	jsonw_kuint(w, "chains", fin->n_requests);
	jsonw_object_end(w);
}

/* Choice i's answer: the program's for one chain; for sc each chain's own (the program's
 * voted answer is certa.answer), the program's when a chain has none yet. */
static const char *
oai_choice_answer(const Certa__V1__Finished *fin, size_t i)
{
	const char *prog = fin->result != NULL ? fin->result->answer : "";

	if (fin->n_requests <= 1 || i >= fin->n_requests || fin->requests[i]->answer == NULL ||
	    fin->requests[i]->answer[0] == '\0')
		return prog;
	return fin->requests[i]->answer;
}

/* Chain i's reasoning (live programs; "" once it is only in the store). */
static void
oai_chain_text(struct oai_req *r, uint32_t i, const char **text, size_t *len)
{
	if (queries_chain_text(r->o->core, r->tenant, r->id, i, text, len) != 0) {
		*text = "";
		*len = 0;
	}
}

/* Non-stream: the whole response, built while the program is still live. */
static int
oai_build_final(struct oai_req *r, const Certa__V1__Finished *fin)
{
	struct jsonw *w;
	const char *data, *text;
	size_t i, len, n = fin->n_requests > 0 ? fin->n_requests : 1;
	bool chat = r->pr.kind == OPENAI_REQUEST_CHAT;
	int reason = fin->result != NULL ? (int)fin->result->reason : 0;

	if (jsonw_new(&w) != 0)
		return -ENOMEM;
	oai_head(r, w, false);
	jsonw_key(w, "choices");
	jsonw_array_begin(w);
	for (i = 0; i < n; i++) {
		oai_chain_text(r, (uint32_t)i, &text, &len);
		jsonw_object_begin(w);
		jsonw_kint(w, "index", (int64_t)i);
		if (chat) {
			jsonw_key(w, "message");
			jsonw_object_begin(w);
			jsonw_kstring(w, "role", "assistant");
			jsonw_kstring(w, "content", oai_choice_answer(fin, i));
			jsonw_key(w, "reasoning_content");
			jsonw_stringn(w, text, len);
			jsonw_object_end(w);
		} else {
			jsonw_kstring(w, "text", oai_choice_answer(fin, i));
			jsonw_key(w, "reasoning_content");
			jsonw_stringn(w, text, len);
		}
		jsonw_knull(w, "logprobs");
		jsonw_kstring(w, "finish_reason", oai_finish_reason(reason));
		jsonw_object_end(w);
	}
	jsonw_array_end(w);
	oai_usage(w, fin->result);
	oai_certa_final(r, w, fin);
	jsonw_object_end(w);
	data = jsonw_data(w, &len);
	if (data == NULL || (r->body = strdup(data)) == NULL) {
		jsonw_free(w);
		return -ENOMEM;
	}
	jsonw_free(w);
	return 0;
}

/* Stream: one `data:` event. */
static void
oai_sse_send(struct oai_req *r, const char *data, size_t len)
{
	struct evbuffer *b;

	if (r->req == NULL || (b = evbuffer_new()) == NULL)
		return;
	evbuffer_add(b, "data: ", 6);
	evbuffer_add(b, data, len);
	evbuffer_add(b, "\n\n", 2);
	evhttp_send_reply_chunk(r->req, b);
	evbuffer_free(b);
}

static void
oai_sse_jsonw(struct oai_req *r, struct jsonw *w)
{
	size_t len;
	const char *data = jsonw_data(w, &len);

	if (data != NULL)
		oai_sse_send(r, data, len);
	else
		log_err(LOG_MAIN, "http: program %s: cannot build an event (%d)", r->id,
		    jsonw_error(w));
}

/* Stream: starts the event stream (200, text/event-stream). */
static void
oai_sse_start(struct oai_req *r)
{
	struct evkeyvalq *h;

	if (r->streaming || r->req == NULL)
		return;
	h = evhttp_request_get_output_headers(r->req);
	evhttp_add_header(h, "Content-Type", "text/event-stream");
	evhttp_add_header(h, "Cache-Control", "no-cache");
	evhttp_add_header(h, "X-Accel-Buffering", "no");
	evhttp_send_reply_start(r->req, 200, "OK");
	r->streaming = true;
}

/* Opens one choice of a chunk: {"index": i, "delta": {  (chat) or {"index": i,  (text). */
static void
oai_choice_open(struct oai_req *r, struct jsonw *w, size_t i)
{
	jsonw_object_begin(w);
	jsonw_kint(w, "index", (int64_t)i);
	if (r->pr.kind == OPENAI_REQUEST_CHAT) {
		jsonw_key(w, "delta");
		jsonw_object_begin(w);
	}
}

static void
oai_choice_close(struct oai_req *r, struct jsonw *w, const char *finish_reason)
{
	if (r->pr.kind == OPENAI_REQUEST_CHAT)
		jsonw_object_end(w);
	jsonw_knull(w, "logprobs");
	if (finish_reason != NULL)
		jsonw_kstring(w, "finish_reason", finish_reason);
	else
		jsonw_knull(w, "finish_reason");
	jsonw_object_end(w);
}

/* Stream: the reasoning each chain added since the last event, one choice per chain. */
static void
oai_sse_reasoning(struct oai_req *r, size_t nchains, struct jsonw *w)
{
	const char *text;
	size_t i, len;

	for (i = 0; i < nchains && i < r->nsent; i++) {
		oai_chain_text(r, (uint32_t)i, &text, &len);
		if (len <= r->sent[i])
			continue;
		oai_choice_open(r, w, i);
		if (r->pr.kind == OPENAI_REQUEST_COMPLETION)
			jsonw_kstring(w, "text", "");
		jsonw_key(w, "reasoning_content");
		jsonw_stringn(w, text + r->sent[i], len - r->sent[i]);
		r->sent[i] = len;
		oai_choice_close(r, w, NULL);
	}
}

/* Stream: an error event (OpenAI's shape; the SDKs raise it) then [DONE]. */
static void
oai_sse_error(struct oai_req *r, int http, const char *message)
{
	struct jsonw *w;
	char code[16];

	if (jsonw_new(&w) != 0)
		return;
	snprintf(code, sizeof code, "%d", http);
	oai_error_json(w, message, http == 503 ? "service_unavailable_error" : "server_error",
	    NULL, code);
	oai_sse_jsonw(r, w);
	jsonw_free(w);
}

/* --- the program's events (the local call's sink) --- */

static int
oai_on_accepted(struct oai_req *r, const Certa__V1__Accepted *acc)
{
	struct jsonw *w;
	size_t i;

	snprintf(r->id, sizeof r->id, "%s", acc->program_id);
	log_info(LOG_MAIN, "http: program %s for tenant %s%s", r->id, r->tenant,
	    acc->duplicate ? " (idempotency key repeated)" : "");
	if (!r->pr.stream)
		return 0;
	r->nsent = r->pr.n_given ? r->pr.n : 1;
	if ((r->sent = calloc(r->nsent, sizeof *r->sent)) == NULL)
		return -ENOMEM;
	oai_sse_start(r);
	if (jsonw_new(&w) != 0)
		return -ENOMEM;
	oai_head(r, w, true);
	jsonw_key(w, "choices");
	jsonw_array_begin(w);
	for (i = 0; i < r->nsent; i++) {
		oai_choice_open(r, w, i);
		if (r->pr.kind == OPENAI_REQUEST_CHAT) {
			jsonw_kstring(w, "role", "assistant");
			jsonw_kstring(w, "content", "");
		} else {
			jsonw_kstring(w, "text", "");
		}
		oai_choice_close(r, w, NULL);
	}
	jsonw_array_end(w);
	jsonw_key(w, "certa");
	jsonw_object_begin(w);
	jsonw_kstring(w, "program_id", r->id);
	jsonw_kbool(w, "duplicate", acc->duplicate);
	jsonw_object_end(w);
	jsonw_object_end(w);
	oai_sse_jsonw(r, w);
	jsonw_free(w);
	return 0;
}

/* More chains than the request said (sc with the policy's default n): widen the table. */
static int
oai_grow_sent(struct oai_req *r, size_t n)
{
	size_t *ns;

	if (n <= r->nsent)
		return 0;
	ns = realloc(r->sent, n * sizeof *ns);
	if (ns == NULL)
		return -ENOMEM;
	memset(ns + r->nsent, 0, (n - r->nsent) * sizeof *ns);
	r->sent = ns;
	r->nsent = n;
	return 0;
}

static int
oai_on_progress(struct oai_req *r, const Certa__V1__Progress *pr)
{
	struct jsonw *w;
	size_t i;

	if (!r->pr.stream)
		return 0;
	if (oai_grow_sent(r, pr->n_requests) != 0 || jsonw_new(&w) != 0)
		return -ENOMEM;
	oai_head(r, w, true);
	jsonw_key(w, "choices");
	jsonw_array_begin(w);
	oai_sse_reasoning(r, pr->n_requests, w);
	jsonw_array_end(w);
	jsonw_key(w, "certa");
	jsonw_object_begin(w);
	jsonw_kstring(w, "program_id", r->id);
	jsonw_kdouble(w, "certaindex", pr->certaindex);
	jsonw_kuint(w, "tokens_used", pr->tokens_used);
	jsonw_kstring(w, "answer", pr->answer);
	jsonw_key(w, "chains");
	jsonw_array_begin(w);
	for (i = 0; i < pr->n_requests; i++) {
		jsonw_object_begin(w);
		jsonw_kuint(w, "index", pr->requests[i]->index);
		jsonw_kuint(w, "tokens", pr->requests[i]->tokens);
		jsonw_kstring(w, "answer", pr->requests[i]->answer);
		jsonw_kbool(w, "finished", pr->requests[i]->finished);
		jsonw_object_end(w);
	}
	jsonw_array_end(w);
	jsonw_object_end(w);
	jsonw_object_end(w);
	oai_sse_jsonw(r, w);
	jsonw_free(w);
	return 0;
}

/* Stream: the rest of the reasoning, the answers, the finish reasons, usage. */
static int
oai_sse_finished(struct oai_req *r, const Certa__V1__Finished *fin)
{
	struct jsonw *w;
	size_t i, n = fin->n_requests > 0 ? fin->n_requests : 1;
	int reason = fin->result != NULL ? (int)fin->result->reason : 0;

	if (oai_grow_sent(r, n) != 0 || jsonw_new(&w) != 0)
		return -ENOMEM;
	/* Reasoning not sent yet (the last step's), then the answers: one choice per index and
	 * chunk, as OpenAI's streams have them. */
	oai_head(r, w, true);
	jsonw_key(w, "choices");
	jsonw_array_begin(w);
	oai_sse_reasoning(r, n, w);
	jsonw_array_end(w);
	jsonw_object_end(w);
	oai_sse_jsonw(r, w);
	jsonw_reset(w);
	oai_head(r, w, true);
	jsonw_key(w, "choices");
	jsonw_array_begin(w);
	for (i = 0; i < n; i++) {
		oai_choice_open(r, w, i);
		jsonw_kstring(w, r->pr.kind == OPENAI_REQUEST_CHAT ? "content" : "text",
		    oai_choice_answer(fin, i));
		oai_choice_close(r, w, NULL);
	}
	jsonw_array_end(w);
	jsonw_object_end(w);
	oai_sse_jsonw(r, w);
	/* The finish reasons with certa's own, and usage. */
	jsonw_reset(w);
	oai_head(r, w, true);
	jsonw_key(w, "choices");
	jsonw_array_begin(w);
	for (i = 0; i < n; i++) {
		oai_choice_open(r, w, i);
		if (r->pr.kind == OPENAI_REQUEST_COMPLETION)
			jsonw_kstring(w, "text", "");
		oai_choice_close(r, w, oai_finish_reason(reason));
	}
	jsonw_array_end(w);
	oai_certa_final(r, w, fin);
	jsonw_object_end(w);
	oai_sse_jsonw(r, w);
	if (r->pr.include_usage) {
		jsonw_reset(w);
		oai_head(r, w, true);
		jsonw_key(w, "choices");
		jsonw_array_begin(w);
		jsonw_array_end(w);
		oai_usage(w, fin->result);
		jsonw_object_end(w);
		oai_sse_jsonw(r, w);
	}
	jsonw_free(w);
	return 0;
}

static int
oai_on_finished(struct oai_req *r, const Certa__V1__Finished *fin)
{
	if (fin->result != NULL &&
	    fin->result->reason == CERTA__V1__FINISH_REASON__FINISH_REASON_FAILED) {
		r->failed = true;
		free(r->fail_message);
		r->fail_message = strdup(fin->result->error_message != NULL ?
		    fin->result->error_message : "");
		return 0;
	}
	if (r->id[0] == '\0')
		snprintf(r->id, sizeof r->id, "%s", fin->program_id);
	return r->pr.stream ? oai_sse_finished(r, fin) : oai_build_final(r, fin);
}

/* rpc_call_sink.send: one ProgramEvent.  An event that cannot be answered (out of memory)
 * ends the HTTP answer with a 500 (the program goes on; the sender drops this watcher). */
static int
oai_sink_send(void *arg, const ProtobufCMessage *msg)
{
	struct oai_req *r = arg;
	const Certa__V1__ProgramEvent *ev = (const Certa__V1__ProgramEvent *)msg;
	int rc = 0;

	if (r->req == NULL)
		return CERTA_ECANCELLED;
	switch (ev->event_case) {
	case CERTA__V1__PROGRAM_EVENT__EVENT_ACCEPTED:
		rc = oai_on_accepted(r, ev->accepted);
		break;
	case CERTA__V1__PROGRAM_EVENT__EVENT_PROGRESS:
		rc = oai_on_progress(r, ev->progress);
		break;
	case CERTA__V1__PROGRAM_EVENT__EVENT_FINISHED:
		rc = oai_on_finished(r, ev->finished);
		break;
	default:
		break;
	}
	if (rc != 0 && r->req != NULL) {
		char msg500[200];
		snprintf(msg500, sizeof msg500, "program %s: cannot answer: %s (certactl get %s)",
		    r->id, certa_strerror(rc), r->id);
		if (r->conn != NULL)
			evhttp_connection_set_closecb(r->conn, NULL, NULL);
		r->conn = NULL;
		if (r->streaming) {
			oai_sse_error(r, 500, msg500);
			oai_sse_send(r, "[DONE]", 6);
			evhttp_send_reply_end(r->req);
		} else {
			oai_send_error(r->req, 500, msg500, "server_error", NULL, NULL, 0);
		}
		r->req = NULL;
		oai_req_release(r);
	}
	return rc;
}

/* rpc_call_sink.finish: the program ended (OK), failed, or its stream was ended (drain,
 * revoked key).  Completes the HTTP answer. */
static void
oai_sink_finish(void *arg, grpc_status_code status, const char *message)
{
	struct oai_req *r = arg;
	struct evhttp_request *req = r->req;
	char msg[1200] = "";
	int http = 500;
	size_t i;

	if (req == NULL)
		return;
	if (r->failed || status != GRPC_STATUS_OK) {
		for (i = 0; i < sizeof oai_grpc_http / sizeof oai_grpc_http[0]; i++)
			if (oai_grpc_http[i].status == status)
				http = oai_grpc_http[i].http;
		const char *why = r->failed && r->fail_message != NULL && r->fail_message[0] ?
		    r->fail_message : message;
		if (r->failed && strncmp(why, "program ", 8) != 0)
			snprintf(msg, sizeof msg, "program %s failed: %.1000s", r->id, why);
		else
			snprintf(msg, sizeof msg, "%s", why);
	}
	if (r->conn != NULL)
		evhttp_connection_set_closecb(r->conn, NULL, NULL);
	r->conn = NULL;
	if (r->streaming) {
		if (r->failed || status != GRPC_STATUS_OK)
			oai_sse_error(r, http, msg);
		oai_sse_send(r, "[DONE]", 6);
		evhttp_send_reply_end(req);
	} else if (r->failed || status != GRPC_STATUS_OK) {
		oai_send_error(req, http, msg, http == 503 ? "service_unavailable_error" :
		    http < 500 ? "invalid_request_error" : "server_error", NULL, NULL,
		    http == 503 ? 1 : 0);
	} else if (r->body != NULL) {
		oai_send_json(req, 200, r->body, strlen(r->body), 0);
	} else {
		oai_send_error(req, 500, "the program ended without a result", "server_error",
		    NULL, NULL, 0);
	}
	r->req = NULL;
	oai_req_release(r);
}

static const struct rpc_call_sink oai_sink = { oai_sink_send, oai_sink_finish };

/* --- handlers --- */

/* The caller's tenant, or an answered 401. */
static const char *
oai_authenticate(struct openai *o, struct evhttp_request *req)
{
	const char *authz = evhttp_find_header(evhttp_request_get_input_headers(req),
	    "Authorization");
	const char *tenant = NULL;
	char msg[256];

	if (auth_tenant(o->auth, authz, &tenant, msg, sizeof msg) != 0) {
		oai_send_error(req, 401, msg, "invalid_request_error", NULL, "invalid_api_key", 0);
		return NULL;
	}
	return tenant;
}

/* One /v1/models entry (pool_models callback). */
static void
oai_model_add(void *arg, const char *model, uint32_t workers, uint32_t max_capacity)
{
	struct jsonw *w = arg;

	(void)workers;
	(void)max_capacity;
	jsonw_object_begin(w);
	jsonw_kstring(w, "id", model);
	jsonw_kstring(w, "object", "model");
	jsonw_kint(w, "created", 0);
	jsonw_kstring(w, "owned_by", "certa");
	jsonw_object_end(w);
}

/* GET /v1/models: every model an UP worker serves, once (the list Reasoning.ListModels
 * gives, so the two agree). */
static void
oai_models(struct openai *o, struct evhttp_request *req, const char *tenant)
{
	struct jsonw *w;
	const char *data;
	size_t len;

	(void)tenant;
	if (jsonw_new(&w) != 0) {
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	jsonw_object_begin(w);
	jsonw_kstring(w, "object", "list");
	jsonw_key(w, "data");
	jsonw_array_begin(w);
	pool_models(core_pool(o->core), oai_model_add, w);
	jsonw_array_end(w);
	jsonw_object_end(w);
	data = jsonw_data(w, &len);
	if (data != NULL)
		oai_send_json(req, 200, data, len, 0);
	else
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
	jsonw_free(w);
}

/* POST /v1/chat/completions and /v1/completions. */
static void
oai_complete(struct openai *o, struct evhttp_request *req, const char *tenant,
    enum openai_request_kind kind)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	const char *body = len > 0 ? (const char *)evbuffer_pullup(in, -1) : "";
	struct openai_request_error perr;
	struct submit_spec spec;
	struct oai_req *r;
	struct rpc_call *call;
	char err[600] = "", peer[96];
	char *host = NULL;
	ev_uint16_t port = 0;
	int rc;

	r = calloc(1, sizeof *r);
	if (r == NULL) {
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	r->o = o;
	rc = openai_request_parse(kind, body, len, &r->pr, &perr);
	if (rc != 0) {
		if (rc == CERTA_EINVAL)
			oai_send_error(req, 400, perr.message, "invalid_request_error", perr.param,
			    NULL, 0);
		else
			oai_send_error(req, 500, certa_strerror(rc), "server_error", NULL, NULL, 0);
		goto fail_req;
	}
	if (r->pr.model[0] != '\0') {
		char avail[256];
		if (!pool_model_known(core_pool(o->core), r->pr.model, avail, sizeof avail)) {
			snprintf(err, sizeof err, "The model '%s' does not exist: no worker serves it "
			    "(workers up serve: %s; GET /v1/models)", r->pr.model,
			    avail[0] ? avail : "none");
			oai_send_error(req, 404, err, "invalid_request_error", "model",
			    "model_not_found", 0);
			goto fail_req;
		}
	}
	r->req = req;
	r->conn = evhttp_request_get_connection(req);
	r->created = (long long)time(NULL);
	if (r->conn != NULL)
		evhttp_connection_get_peer(r->conn, &host, &port);
	snprintf(peer, sizeof peer, "http:%s:%u", host != NULL ? host : "?", (unsigned)port);
	if ((r->tenant = strdup(tenant)) == NULL ||
	    rpc_call_local_new(&oai_sink, r, peer, &r->call) != 0 ||
	    rpc_call_set_identity(r->call, tenant) != 0) {
		oai_send_error(req, 500, "out of memory", "server_error", NULL, NULL, 0);
		goto fail_call;
	}
	{
		const char *authz = evhttp_find_header(evhttp_request_get_input_headers(req),
		    "Authorization");
		if (authz != NULL && rpc_call_local_set_metadata(r->call, "authorization",
		    authz) != 0) {
			oai_send_error(req, 500, "out of memory", "server_error", NULL, NULL, 0);
			goto fail_call;
		}
	}
	r->next = o->reqs;
	if (o->reqs != NULL)
		o->reqs->prev = r;
	o->reqs = r;
	if (r->conn != NULL)
		evhttp_connection_set_closecb(r->conn, oai_conn_closed, r);
	{
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		openai_request_spec(&r->pr, (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000,
		    &spec);
	}
	/* The call may be answered inside (an idempotent retry of an ended program): r is
	 * freed on a later loop turn, the call is held here. */
	call = r->call;
	rpc_call_ref(call);
	rc = submit_program(o->core, tenant, &spec, call, err, sizeof err);
	if (rc != 0 && r->req != NULL) {
		if (r->streaming) {
			oai_sse_error(r, 500, err[0] ? err : certa_strerror(rc));
			oai_sse_send(r, "[DONE]", 6);
			evhttp_send_reply_end(req);
		} else {
			oai_send_certa_error(req, kind, rc, err[0] ? err : certa_strerror(rc));
		}
		r->req = NULL;
		oai_req_release(r);
	}
	rpc_call_unref(call);
	return;
fail_call:
	if (r->call != NULL)
		rpc_call_unref(r->call);
	r->call = NULL;
fail_req:
	openai_request_clear(&r->pr);
	free(r->tenant);
	free(r);
}

enum oai_route {
	OAI_CHAT,
	OAI_COMPLETIONS,
	OAI_MODELS,
};

/* The API's routes. */
static const struct {
	const char *path;
	enum evhttp_cmd_type method;
	const char *allow;
	enum oai_route route;
} oai_routes[] = {
	{ "/v1/chat/completions", EVHTTP_REQ_POST, "POST", OAI_CHAT },
	{ "/v1/completions", EVHTTP_REQ_POST, "POST", OAI_COMPLETIONS },
	{ "/v1/models", EVHTTP_REQ_GET, "GET", OAI_MODELS },
};

static void
oai_handle(struct evhttp_request *req, void *arg)
{
	struct openai *o = arg;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
	const char *tenant;
	char msg[300];
	size_t i, plen;

	if (path == NULL)
		path = "/";
	plen = strlen(path);
	while (plen > 1 && path[plen - 1] == '/')
		plen--;
	for (i = 0; i < sizeof oai_routes / sizeof oai_routes[0]; i++)
		if (strlen(oai_routes[i].path) == plen &&
		    strncmp(oai_routes[i].path, path, plen) == 0)
			break;
	if (i == sizeof oai_routes / sizeof oai_routes[0]) {
		snprintf(msg, sizeof msg, "no such endpoint: %.200s (certa serves POST "
		    "/v1/chat/completions, POST /v1/completions, GET /v1/models)", path);
		oai_send_error(req, 404, msg, "invalid_request_error", NULL, "unknown_url", 0);
		return;
	}
	if (evhttp_request_get_command(req) != oai_routes[i].method) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "Allow",
		    oai_routes[i].allow);
		snprintf(msg, sizeof msg, "%s takes %s only", oai_routes[i].path,
		    oai_routes[i].allow);
		oai_send_error(req, 405, msg, "invalid_request_error", NULL, "method_not_allowed", 0);
		return;
	}
	if ((tenant = oai_authenticate(o, req)) == NULL)
		return;
	switch (oai_routes[i].route) {
	case OAI_MODELS:
		oai_models(o, req, tenant);
		break;
	case OAI_CHAT:
		oai_complete(o, req, tenant, OPENAI_REQUEST_CHAT);
		break;
	case OAI_COMPLETIONS:
		oai_complete(o, req, tenant, OPENAI_REQUEST_COMPLETION);
		break;
	}
}

/* --- listener --- */

/* evhttp's bufferevent for a TLS connection. */
static struct bufferevent *
oai_tls_bev(struct event_base *base, void *arg)
{
	struct openai *o = arg;
	SSL *ssl = SSL_new(o->ssl);

	if (ssl == NULL)
		return NULL;
	return bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
	    BEV_OPT_CLOSE_ON_FREE);
}

/* The server's TLS context from PEM files. */
static int
oai_tls_ctx(const struct openai_options *opt, SSL_CTX **out)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	unsigned long e;

	if (ctx == NULL)
		return -ENOMEM;
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	if (SSL_CTX_use_certificate_chain_file(ctx, opt->tls_cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, opt->tls_key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		e = ERR_get_error();
		log_err(LOG_CONFIG, "http TLS: certificate %s / key %s: %s", opt->tls_cert,
		    opt->tls_key, ERR_error_string(e, NULL));
		ERR_clear_error();
		SSL_CTX_free(ctx);
		return CERTA_ECONFIG;
	}
	*out = ctx;
	return 0;
}

/* "host:port" or "[v6]:port" into host and port. */
static int
oai_split_addr(const char *addr, char *host, size_t hlen, int *port)
{
	const char *colon = strrchr(addr, ':');
	const char *h = addr;
	size_t n;
	char *end;
	long p;

	if (colon == NULL)
		return CERTA_ECONFIG;
	n = (size_t)(colon - addr);
	if (n >= 2 && addr[0] == '[' && addr[n - 1] == ']') {
		h = addr + 1;
		n -= 2;
	}
	if (n == 0 || n >= hlen)
		return CERTA_ECONFIG;
	memcpy(host, h, n);
	host[n] = '\0';
	p = strtol(colon + 1, &end, 10);
	if (*end != '\0' || end == colon + 1 || p < 0 || p > 65535)
		return CERTA_ECONFIG;
	*port = (int)p;
	return 0;
}

int
openai_new(struct event_base *base, struct core *c, struct auth *a,
    const struct openai_options *opt, int *bound_port, struct openai **out)
{
	struct openai *o;
	struct evhttp_bound_socket *sock;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	char host[256];
	int port, rc;

	if (oai_split_addr(opt->listen, host, sizeof host, &port) != 0) {
		log_err(LOG_CONFIG, "http.listen %s: not host:port", opt->listen);
		return CERTA_ECONFIG;
	}
	o = calloc(1, sizeof *o);
	if (o == NULL)
		return -ENOMEM;
	o->base = base;
	o->core = c;
	o->auth = a;
	if (opt->tls_cert != NULL && opt->tls_cert[0] != '\0' &&
	    (rc = oai_tls_ctx(opt, &o->ssl)) != 0)
		goto fail_o;
	rc = -ENOMEM;
	o->http = evhttp_new(base);
	if (o->http == NULL)
		goto fail_ssl;
	evhttp_set_allowed_methods(o->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
	    EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
	evhttp_set_timeout(o->http, 3600);   /* a program may think for a while */
	evhttp_set_max_headers_size(o->http, 32768);
	evhttp_set_max_body_size(o->http, (ev_ssize_t)opt->max_body);
	evhttp_set_gencb(o->http, oai_handle, o);
	if (o->ssl != NULL)
		evhttp_set_bevcb(o->http, oai_tls_bev, o);
	sock = evhttp_bind_socket_with_handle(o->http, host, (ev_uint16_t)port);
	if (sock == NULL) {
		rc = CERTA_EUNAVAIL;
		goto fail_http;
	}
	if (bound_port != NULL) {
		*bound_port = port;
		if (getsockname(evhttp_bound_socket_get_fd(sock), (struct sockaddr *)&ss, &sl) == 0)
			*bound_port = ss.ss_family == AF_INET6 ?
			    ntohs(((struct sockaddr_in6 *)&ss)->sin6_port) :
			    ntohs(((struct sockaddr_in *)&ss)->sin_port);
	}
	*out = o;
	return 0;
fail_http:
	evhttp_free(o->http);
fail_ssl:
	if (o->ssl != NULL)
		SSL_CTX_free(o->ssl);
fail_o:
	free(o);
	return rc;
}

void
openai_free(struct openai *o)
{
	if (o == NULL)
		return;
	while (o->reqs != NULL)
		oai_req_drop(o->reqs, true);
	evhttp_free(o->http);
	if (o->ssl != NULL)
		SSL_CTX_free(o->ssl);
	free(o);
}
