/* rpc_server.c — method-table gRPC servers on the core API, one loop thread, no locks. */
#include "lib/rpc_server.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "google/protobuf/any.pb-c.h"
#include "google/rpc/error_details.pb-c.h"
#include "google/rpc/status.pb-c.h"
#include "lib/cqbridge.h"
#include "lib/error.h"
#include "lib/log.h"

#define RPC_ACCEPT_SLOTS 8
#define RPC_MAX_SERVICES 8
#define container_of(p, type, member) ((type *)(void *)((char *)(p) - offsetof(type, member)))

struct rpc_accept {
	struct cqbridge_tag tag;
	struct rpc_server *srv;
	grpc_call *call;
	grpc_call_details details;
	grpc_metadata_array md;
};

struct rpc_md {
	char *key;
	char *value;
};

struct rpc_service {
	const struct rpc_method *methods;
	size_t nmethods;
	void *ctx;
};

struct rpc_call {
	struct rpc_server *srv;
	const struct rpc_method *method;
	void *method_ctx;
	grpc_call *call;
	char *path;
	char *peer;
	struct rpc_md *md;
	size_t nmd;
	int refs;               /* outstanding batches + user references */

	int dead;               /* client gone or call cancelled */
	int finished;           /* a status is queued */
	int status_sent;
	int initial_md_sent;
	int send_inflight;
	int recv_close_cancelled;

	struct cqbridge_tag tag_close;
	struct cqbridge_tag tag_recv;
	struct cqbridge_tag tag_send;

	grpc_byte_buffer *recv_bb;
	grpc_byte_buffer **q;   /* ring of queued messages */
	size_t qhead, qlen, qcap;
	grpc_byte_buffer *inflight;

	grpc_status_code status;
	grpc_slice status_slice;
	int has_status_slice;
	char *status_msg;       /* the message again, for google.rpc.Status */

	/* google.rpc.Status details (packed Any values) and the trailer they go out in */
	Google__Protobuf__Any **details;
	size_t ndetails;
	int has_bad_request;
	grpc_metadata trailer;
	int has_trailer;

	void (*cancel_fn)(struct rpc_call *call, void *arg);
	void *cancel_arg;
	void *data;
	char *identity;         /* who the authorizer says the caller is */
	const struct rpc_call_sink *sink;   /* local calls only (srv NULL) */
	void *sink_arg;

	struct rpc_call *prev, *next;
};

enum rpc_server_state {
	RPC_SERVER_NEW,
	RPC_SERVER_RUNNING,
	RPC_SERVER_SHUTTING,
	RPC_SERVER_DONE,
};

struct rpc_server {
	grpc_server *server;
	struct cqbridge *br;
	struct rpc_service services[RPC_MAX_SERVICES];
	size_t nservices;
	void *ctx;              /* the first service's context */
	rpc_authorize_fn authorize;
	void *authorize_ctx;
	enum rpc_server_state state;

	struct rpc_accept *slots[RPC_ACCEPT_SLOTS];
	size_t accepts_pending;
	struct rpc_call *calls;
	size_t ncalls;

	struct cqbridge_tag tag_shutdown;
	int shutdown_notified;
	void (*done)(void *arg);
	void *done_arg;
};

static void rpc_call_pump(struct rpc_call *c);
static void rpc_call_details_free(struct rpc_call *c);
static void rpc_call_details_trailer(struct rpc_call *c);
static void rpc_call_detail_field_from_message(struct rpc_call *c, const char *msg);
static void rpc_call_recv_next(struct rpc_call *c);
static void rpc_server_maybe_done(struct rpc_server *srv);

/* A local call's memory (no gRPC state). */
static void
rpc_call_free_local(struct rpc_call *c)
{
	size_t i;

	for (i = 0; i < c->nmd; i++) {
		free(c->md[i].key);
		free(c->md[i].value);
	}
	rpc_call_details_free(c);
	free(c->md);
	free(c->path);
	free(c->peer);
	free(c->identity);
	free(c);
}

/* Frees the call once no batch and no user holds it. */
static void
rpc_call_release(struct rpc_call *c)
{
	struct rpc_server *srv = c->srv;
	size_t i;

	if (--c->refs > 0)
		return;
	if (srv == NULL) {
		rpc_call_free_local(c);
		return;
	}
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		srv->calls = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	srv->ncalls--;

	for (i = 0; i < c->qlen; i++)
		grpc_byte_buffer_destroy(c->q[(c->qhead + i) % c->qcap]);
	free(c->q);
	if (c->inflight != NULL)
		grpc_byte_buffer_destroy(c->inflight);
	if (c->recv_bb != NULL)
		grpc_byte_buffer_destroy(c->recv_bb);
	if (c->has_status_slice)
		grpc_slice_unref(c->status_slice);
	free(c->status_msg);
	rpc_call_details_free(c);
	if (c->has_trailer) {
		grpc_slice_unref(c->trailer.key);
		grpc_slice_unref(c->trailer.value);
	}
	for (i = 0; i < c->nmd; i++) {
		free(c->md[i].key);
		free(c->md[i].value);
	}
	free(c->md);
	free(c->path);
	free(c->identity);
	if (c->peer != NULL)
		gpr_free(c->peer);
	grpc_call_unref(c->call);
	free(c);
	rpc_server_maybe_done(srv);
}

void
rpc_call_ref(struct rpc_call *c)
{
	c->refs++;
}

void
rpc_call_unref(struct rpc_call *c)
{
	rpc_call_release(c);
}

/* The call is gone: drop queued output and tell the owner once. */
static void
rpc_call_kill(struct rpc_call *c)
{
	size_t i;

	if (c->dead)
		return;
	c->dead = 1;
	for (i = 0; i < c->qlen; i++)
		grpc_byte_buffer_destroy(c->q[(c->qhead + i) % c->qcap]);
	c->qlen = 0;
	if (!c->status_sent && c->cancel_fn != NULL) {
		c->refs++;
		c->cancel_fn(c, c->cancel_arg);
		c->cancel_fn = NULL;
		rpc_call_release(c);
	}
}

int
rpc_call_local_new(const struct rpc_call_sink *sink, void *arg, const char *peer,
    struct rpc_call **out)
{
	struct rpc_call *c = calloc(1, sizeof *c);

	if (c == NULL)
		return -ENOMEM;
	c->sink = sink;
	c->sink_arg = arg;
	c->refs = 1;
	c->initial_md_sent = 1;
	c->path = strdup("local");
	c->peer = strdup(peer != NULL ? peer : "local");
	if (c->path == NULL || c->peer == NULL) {
		rpc_call_free_local(c);
		return -ENOMEM;
	}
	*out = c;
	return 0;
}

int
rpc_call_local_set_metadata(struct rpc_call *c, const char *key, const char *value)
{
	struct rpc_md *nmd = realloc(c->md, (c->nmd + 1) * sizeof *nmd);

	if (nmd == NULL)
		return -ENOMEM;
	c->md = nmd;
	c->md[c->nmd].key = strdup(key);
	c->md[c->nmd].value = strdup(value);
	if (c->md[c->nmd].key == NULL || c->md[c->nmd].value == NULL) {
		free(c->md[c->nmd].key);
		free(c->md[c->nmd].value);
		return -ENOMEM;
	}
	c->nmd++;
	return 0;
}

void
rpc_call_local_close(struct rpc_call *c)
{
	rpc_call_kill(c);
}

/* RECV_CLOSE_ON_SERVER completed: the call is over, cancelled or not. */
static void
rpc_call_on_close(struct cqbridge_tag *tag, int ok)
{
	struct rpc_call *c = container_of(tag, struct rpc_call, tag_close);

	if (!ok || c->recv_close_cancelled) {
		log_debug(LOG_RPC, "call %s from %s cancelled", c->path,
		    c->peer ? c->peer : "?");
		rpc_call_kill(c);
	} else if (!c->status_sent) {
		/* Closed without our status having gone out: treat as dead. */
		rpc_call_kill(c);
	}
	rpc_call_release(c);
}

/* Starts one batch holding a reference; on failure the call is cancelled. */
static int
rpc_call_batch(struct rpc_call *c, const grpc_op *ops, size_t n, struct cqbridge_tag *tag)
{
	grpc_call_error e;

	c->refs++;
	e = grpc_call_start_batch(c->call, ops, n, tag, NULL);
	if (e != GRPC_CALL_OK) {
		log_warn(LOG_RPC, "start_batch on %s failed: %d", c->path, (int)e);
		c->refs--;
		grpc_call_cancel(c->call, NULL);
		rpc_call_kill(c);
		return CERTA_ERPC;
	}
	return 0;
}

/* SEND batch completed. */
static void
rpc_call_on_send(struct cqbridge_tag *tag, int ok)
{
	struct rpc_call *c = container_of(tag, struct rpc_call, tag_send);

	c->send_inflight = 0;
	if (c->inflight != NULL) {
		grpc_byte_buffer_destroy(c->inflight);
		c->inflight = NULL;
	}
	if (!ok)
		rpc_call_kill(c);
	else
		rpc_call_pump(c);
	rpc_call_release(c);
}

/* Sends the next queued message, with the status when it is the last thing to send. */
static void
rpc_call_pump(struct rpc_call *c)
{
	grpc_op ops[3];
	size_t n = 0;

	if (c->send_inflight || c->dead || c->status_sent)
		return;
	memset(ops, 0, sizeof ops);
	if (!c->initial_md_sent) {
		ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
		n++;
		c->initial_md_sent = 1;
	}
	if (c->qlen > 0) {
		c->inflight = c->q[c->qhead];
		c->qhead = (c->qhead + 1) % c->qcap;
		c->qlen--;
		ops[n].op = GRPC_OP_SEND_MESSAGE;
		ops[n].data.send_message.send_message = c->inflight;
		n++;
	}
	if (c->qlen == 0 && c->finished) {
		ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
		ops[n].data.send_status_from_server.status = c->status;
		ops[n].data.send_status_from_server.status_details =
		    c->has_status_slice ? &c->status_slice : NULL;
		rpc_call_details_trailer(c);
		if (c->has_trailer) {
			ops[n].data.send_status_from_server.trailing_metadata_count = 1;
			ops[n].data.send_status_from_server.trailing_metadata = &c->trailer;
		}
		n++;
		c->status_sent = 1;
	}
	if (n == 0)
		return;
	c->send_inflight = 1;
	(void)rpc_call_batch(c, ops, n, &c->tag_send);
}

/* Appends a packed message to the ring. */
static int
rpc_call_enqueue(struct rpc_call *c, const ProtobufCMessage *msg)
{
	grpc_byte_buffer *bb;

	if (c->dead)
		return CERTA_ECANCELLED;
	if (c->finished)
		return CERTA_ESTATE;
	if (c->qlen == c->qcap) {
		size_t ncap = c->qcap ? c->qcap * 2 : 4, i;
		grpc_byte_buffer **nq = malloc(ncap * sizeof *nq);
		if (nq == NULL)
			return -ENOMEM;
		for (i = 0; i < c->qlen; i++)
			nq[i] = c->q[(c->qhead + i) % c->qcap];
		free(c->q);
		c->q = nq;
		c->qcap = ncap;
		c->qhead = 0;
	}
	bb = rpc_pack(msg);
	if (bb == NULL)
		return -ENOMEM;
	c->q[(c->qhead + c->qlen) % c->qcap] = bb;
	c->qlen++;
	return 0;
}

int
rpc_call_send(struct rpc_call *c, const ProtobufCMessage *msg)
{
	int rc;

	if (c->srv == NULL) {
		if (c->dead)
			return CERTA_ECANCELLED;
		if (c->finished)
			return CERTA_ESTATE;
		if (c->sink->send(c->sink_arg, msg) != 0) {
			rpc_call_kill(c);
			return CERTA_ECANCELLED;
		}
		return 0;
	}
	rc = rpc_call_enqueue(c, msg);

	if (rc == 0)
		rpc_call_pump(c);
	return rc;
}

/* --- google.rpc.Status details --- */

/* Appends one packed detail; type URL from the message's full name. */
static int
rpc_call_add_detail(struct rpc_call *c, const ProtobufCMessage *m)
{
	Google__Protobuf__Any *any, **nd;
	size_t len;
	char url[160];

	if (c->finished || c->dead)
		return CERTA_ESTATE;
	nd = realloc(c->details, (c->ndetails + 1) * sizeof *nd);
	if (nd == NULL)
		return -ENOMEM;
	c->details = nd;
	any = calloc(1, sizeof *any);
	if (any == NULL)
		return -ENOMEM;
	google__protobuf__any__init(any);
	snprintf(url, sizeof url, "type.googleapis.com/%s", m->descriptor->name);
	len = protobuf_c_message_get_packed_size(m);
	any->type_url = strdup(url);
	any->value.data = malloc(len ? len : 1);
	if (any->type_url == NULL || any->value.data == NULL) {
		free(any->type_url);
		free(any->value.data);
		free(any);
		return -ENOMEM;
	}
	any->value.len = protobuf_c_message_pack(m, any->value.data);
	c->details[c->ndetails++] = any;
	return 0;
}

static void
rpc_call_details_free(struct rpc_call *c)
{
	size_t i;

	for (i = 0; i < c->ndetails; i++) {
		free(c->details[i]->type_url);
		free(c->details[i]->value.data);
		free(c->details[i]);
	}
	free(c->details);
	c->details = NULL;
	c->ndetails = 0;
}

/* Packs google.rpc.Status into the grpc-status-details-bin trailer (non-OK statuses). */
static void
rpc_call_details_trailer(struct rpc_call *c)
{
	Google__Rpc__Status st = GOOGLE__RPC__STATUS__INIT;
	uint8_t *buf;
	size_t len;

	if (c->ndetails == 0 || c->status == GRPC_STATUS_OK || c->has_trailer)
		return;
	st.code = (int32_t)c->status;
	st.message = c->status_msg != NULL ? c->status_msg : (char *)"";
	st.n_details = c->ndetails;
	st.details = c->details;
	len = protobuf_c_message_get_packed_size(&st.base);
	buf = malloc(len ? len : 1);
	if (buf == NULL)
		return;
	len = protobuf_c_message_pack(&st.base, buf);
	c->trailer.key = grpc_slice_from_static_string("grpc-status-details-bin");
	c->trailer.value = grpc_slice_from_copied_buffer((const char *)buf, len);
	c->has_trailer = 1;
	free(buf);
}

int
rpc_call_detail_bad_request(struct rpc_call *c, const char *field, const char *desc)
{
	Google__Rpc__BadRequest br = GOOGLE__RPC__BAD_REQUEST__INIT;
	Google__Rpc__BadRequest__FieldViolation fv = GOOGLE__RPC__BAD_REQUEST__FIELD_VIOLATION__INIT;
	Google__Rpc__BadRequest__FieldViolation *fvp = &fv;
	int rc;

	fv.field = (char *)field;
	fv.description = (char *)desc;
	br.n_field_violations = 1;
	br.field_violations = &fvp;
	rc = rpc_call_add_detail(c, &br.base);
	if (rc == 0)
		c->has_bad_request = 1;
	return rc;
}

int
rpc_call_detail_quota(struct rpc_call *c, const char *subject, const char *desc,
    int64_t retry_ms)
{
	Google__Rpc__QuotaFailure qf = GOOGLE__RPC__QUOTA_FAILURE__INIT;
	Google__Rpc__QuotaFailure__Violation v = GOOGLE__RPC__QUOTA_FAILURE__VIOLATION__INIT;
	Google__Rpc__QuotaFailure__Violation *vp = &v;
	Google__Rpc__RetryInfo ri = GOOGLE__RPC__RETRY_INFO__INIT;
	Google__Protobuf__Duration d = GOOGLE__PROTOBUF__DURATION__INIT;
	int rc;

	v.subject = (char *)subject;
	v.description = (char *)desc;
	qf.n_violations = 1;
	qf.violations = &vp;
	rc = rpc_call_add_detail(c, &qf.base);
	if (rc != 0 || retry_ms <= 0)
		return rc;
	d.seconds = retry_ms / 1000;
	d.nanos = (int32_t)(retry_ms % 1000) * 1000000;
	ri.retry_delay = &d;
	return rpc_call_add_detail(c, &ri.base);
}

/* "program.sampling.temperature is -1; ..." / "page_token: ..." -> BadRequest naming the
 * leading field path: identifier characters with a '.' or '_' in them, or followed by ':'. */
static void
rpc_call_detail_field_from_message(struct rpc_call *c, const char *msg)
{
	char field[128];
	size_t n = 0;
	int dotted = 0;

	while (n < sizeof field - 1 && ((msg[n] >= 'a' && msg[n] <= 'z') ||
	    (msg[n] >= 'A' && msg[n] <= 'Z') || (msg[n] >= '0' && msg[n] <= '9') ||
	    msg[n] == '_' || msg[n] == '.' || msg[n] == '[' || msg[n] == ']')) {
		dotted |= msg[n] == '.' || msg[n] == '_';
		field[n] = msg[n];
		n++;
	}
	field[n] = '\0';
	if (n == 0 || field[n - 1] == '.' || !(msg[n] == ':' || (dotted && msg[n] == ' ')))
		return;
	/* The status is already recorded: add the detail directly. */
	{
		int finished = c->finished;
		c->finished = 0;
		(void)rpc_call_detail_bad_request(c, field, msg);
		c->finished = finished;
	}
}

/* Records the final status; pump sends it after the queue drains. */
static int
rpc_call_vfinish(struct rpc_call *c, grpc_status_code status, const char *fmt, va_list ap)
{
	char msg[1024];

	if (c->dead)
		return CERTA_ECANCELLED;
	if (c->finished)
		return CERTA_ESTATE;
	c->finished = 1;
	c->status = status;
	msg[0] = '\0';
	if (fmt != NULL) {
		vsnprintf(msg, sizeof msg, fmt, ap);
		if (msg[0] != '\0' && c->srv != NULL) {
			c->status_slice = grpc_slice_from_copied_string(msg);
			c->has_status_slice = 1;
			c->status_msg = strdup(msg);
		}
	}
	if (c->srv == NULL) {
		c->status_sent = 1;
		c->sink->finish(c->sink_arg, status, msg);
		return 0;
	}
	if (status == GRPC_STATUS_INVALID_ARGUMENT && !c->has_bad_request && c->status_msg != NULL)
		rpc_call_detail_field_from_message(c, c->status_msg);
	if (status != GRPC_STATUS_OK)
		log_debug(LOG_RPC, "call %s -> %s: %s", c->path, rpc_status_name(status),
		    c->has_status_slice ? msg : "");
	rpc_call_pump(c);
	return 0;
}

int
rpc_call_finish(struct rpc_call *c, grpc_status_code status, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = rpc_call_vfinish(c, status, fmt, ap);
	va_end(ap);
	return rc;
}

int
rpc_call_fail(struct rpc_call *c, int err, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = rpc_call_vfinish(c, rpc_status_from_error(err), fmt, ap);
	va_end(ap);
	return rc;
}

int
rpc_call_reply(struct rpc_call *c, const ProtobufCMessage *msg)
{
	int rc = c->srv == NULL ? rpc_call_send(c, msg) : rpc_call_enqueue(c, msg);

	if (rc != 0)
		return rc;
	return rpc_call_finish(c, GRPC_STATUS_OK, NULL);
}

int
rpc_call_is_dead(const struct rpc_call *c)
{
	return c->dead;
}

int
rpc_call_is_finished(const struct rpc_call *c)
{
	return c->finished;
}

void
rpc_call_on_cancel(struct rpc_call *c, void (*fn)(struct rpc_call *, void *), void *arg)
{
	c->cancel_fn = fn;
	c->cancel_arg = arg;
}

const char *
rpc_call_metadata(const struct rpc_call *c, const char *key)
{
	size_t i;

	for (i = 0; i < c->nmd; i++)
		if (strcmp(c->md[i].key, key) == 0)
			return c->md[i].value;
	return NULL;
}

const char *
rpc_call_method(const struct rpc_call *c)
{
	return c->path;
}

const char *
rpc_call_peer(const struct rpc_call *c)
{
	return c->peer != NULL ? c->peer : "";
}

grpc_call *
rpc_call_grpc(const struct rpc_call *c)
{
	return c->srv == NULL ? NULL : c->call;
}

size_t
rpc_call_pending(const struct rpc_call *c)
{
	return c->qlen + (c->send_inflight ? 1 : 0);
}

void
rpc_call_set_data(struct rpc_call *c, void *data)
{
	c->data = data;
}

void *
rpc_call_get_data(const struct rpc_call *c)
{
	return c->data;
}

int
rpc_call_set_identity(struct rpc_call *c, const char *who)
{
	char *s = strdup(who != NULL ? who : "");

	if (s == NULL)
		return -ENOMEM;
	free(c->identity);
	c->identity = s;
	return 0;
}

const char *
rpc_call_identity(const struct rpc_call *c)
{
	return c->identity != NULL ? c->identity : "";
}

int
rpc_call_is_local(const struct rpc_call *c)
{
	return c->srv != NULL && c->peer != NULL && strncmp(c->peer, "unix:", 5) == 0;
}

/* The request message arrived (or not): decode and dispatch to the handler. */
static void
rpc_call_on_recv(struct cqbridge_tag *tag, int ok)
{
	struct rpc_call *c = container_of(tag, struct rpc_call, tag_recv);
	ProtobufCMessage *req = NULL;
	char msg[512];
	int rc;

	if (!ok || c->dead) {
		rpc_call_kill(c);
		goto out;
	}
	if (c->recv_bb == NULL && c->method->kind == RPC_BIDI) {
		/* The client half-closed: a bidi call ends OK after what is queued. */
		rpc_call_finish(c, GRPC_STATUS_OK, NULL);
		goto out;
	}
	if (c->recv_bb == NULL) {
		rpc_call_finish(c, GRPC_STATUS_INVALID_ARGUMENT,
		    "%s: missing request message", c->path);
		goto out;
	}
	rc = rpc_unpack_checked(c->recv_bb, c->method->input, &req, msg, sizeof msg);
	grpc_byte_buffer_destroy(c->recv_bb);
	c->recv_bb = NULL;
	if (rc == CERTA_EINVAL) {
		/* Not valid UTF-8 or a NUL inside a string: protobuf-c would have kept it or cut
		 * it short; no handler may see it. */
		log_info(LOG_RPC, "refused %s from %s: %s", c->method->input->name,
		    rpc_call_peer(c), msg);
		rpc_call_finish(c, GRPC_STATUS_INVALID_ARGUMENT, "%s", msg);
		goto out;
	}
	if (rc != 0) {
		log_info(LOG_RPC, "malformed %s from %s", c->method->input->name, rpc_call_peer(c));
		rpc_call_finish(c, GRPC_STATUS_INVALID_ARGUMENT,
		    "malformed request: not a valid %s message", c->method->input->name);
		goto out;
	}
	c->method->handler(c, req, c->method_ctx);
	protobuf_c_message_free_unpacked(req, NULL);
	if (c->method->kind == RPC_BIDI)
		rpc_call_recv_next(c);
out:
	rpc_call_release(c);
}

/* Bidi: reads the client's next message (the handler runs for it), unless the call ended. */
static void
rpc_call_recv_next(struct rpc_call *c)
{
	grpc_op op;

	if (c->dead || c->finished)
		return;
	memset(&op, 0, sizeof op);
	op.op = GRPC_OP_RECV_MESSAGE;
	op.data.recv_message.recv_message = &c->recv_bb;
	(void)rpc_call_batch(c, &op, 1, &c->tag_recv);
}

/* Copies the request metadata into C strings owned by the call. */
static int
rpc_call_copy_md(struct rpc_call *c, const grpc_metadata_array *md)
{
	size_t i;

	if (md->count == 0)
		return 0;
	c->md = calloc(md->count, sizeof *c->md);
	if (c->md == NULL)
		return -ENOMEM;
	for (i = 0; i < md->count; i++) {
		c->md[i].key = grpc_slice_to_c_string(md->metadata[i].key);
		c->md[i].value = grpc_slice_to_c_string(md->metadata[i].value);
		c->nmd++;
	}
	return 0;
}

/* Finds the method for a path in the server's tables, and its service's context. */
static const struct rpc_method *
rpc_server_lookup(const struct rpc_server *srv, const char *path, void **ctx)
{
	size_t i, j;

	for (i = 0; i < srv->nservices; i++) {
		const struct rpc_service *s = &srv->services[i];
		for (j = 0; j < s->nmethods; j++) {
			if (strcmp(s->methods[j].path, path) == 0) {
				*ctx = s->ctx;
				return &s->methods[j];
			}
		}
	}
	return NULL;
}

static int rpc_server_post_accept(struct rpc_server *srv, struct rpc_accept *a);

/* Builds the call object from an accepted slot and starts its first batches. */
static void
rpc_server_new_call(struct rpc_server *srv, struct rpc_accept *a)
{
	struct rpc_call *c;
	grpc_op ops[2];
	char *p;
	char msg[512];
	grpc_status_code st;

	c = calloc(1, sizeof *c);
	if (c == NULL) {
		grpc_call_cancel_with_status(a->call, GRPC_STATUS_RESOURCE_EXHAUSTED,
		    "out of memory", NULL);
		grpc_call_unref(a->call);
		return;
	}
	c->srv = srv;
	c->call = a->call;
	c->tag_close.fn = rpc_call_on_close;
	c->tag_recv.fn = rpc_call_on_recv;
	c->tag_send.fn = rpc_call_on_send;
	c->tag_close.urgent = c->tag_recv.urgent = c->tag_send.urgent = 1;
	p = grpc_slice_to_c_string(a->details.method);
	c->path = strdup(p);
	gpr_free(p);
	c->peer = grpc_call_get_peer(a->call);
	c->next = srv->calls;
	if (srv->calls != NULL)
		srv->calls->prev = c;
	srv->calls = c;
	srv->ncalls++;
	if (c->path == NULL || rpc_call_copy_md(c, &a->md) != 0) {
		/* refs is 0: take one and release to free through the normal path. */
		grpc_call_cancel(c->call, NULL);
		c->refs = 1;
		c->dead = 1;
		rpc_call_release(c);
		return;
	}

	c->refs++;  /* guard while setting up */
	memset(ops, 0, sizeof ops);
	ops[0].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
	ops[0].data.recv_close_on_server.cancelled = &c->recv_close_cancelled;
	if (rpc_call_batch(c, ops, 1, &c->tag_close) != 0)
		goto out;

	c->method = rpc_server_lookup(srv, c->path, &c->method_ctx);
	if (c->method == NULL) {
		log_info(LOG_RPC, "unknown method %s from %s", c->path, rpc_call_peer(c));
		rpc_call_finish(c, GRPC_STATUS_UNIMPLEMENTED, "unknown method %s", c->path);
		goto out;
	}
	if (srv->authorize != NULL) {
		msg[0] = '\0';
		st = srv->authorize(c, c->method, srv->authorize_ctx, msg, sizeof msg);
		if (st != GRPC_STATUS_OK) {
			rpc_call_finish(c, st, "%s", msg[0] ? msg : rpc_status_name(st));
			goto out;
		}
	}
	memset(ops, 0, sizeof ops);
	ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[1].op = GRPC_OP_RECV_MESSAGE;
	ops[1].data.recv_message.recv_message = &c->recv_bb;
	c->initial_md_sent = 1;
	(void)rpc_call_batch(c, ops, 2, &c->tag_recv);
out:
	rpc_call_release(c);
}

/* A request-call slot completed: a new call, or the server is shutting down. */
static void
rpc_server_on_accept(struct cqbridge_tag *tag, int ok)
{
	struct rpc_accept *a = container_of(tag, struct rpc_accept, tag);
	struct rpc_server *srv = a->srv;

	srv->accepts_pending--;
	if (ok && a->call != NULL)
		rpc_server_new_call(srv, a);
	grpc_call_details_destroy(&a->details);
	grpc_metadata_array_destroy(&a->md);
	a->call = NULL;
	if (ok && srv->state == RPC_SERVER_RUNNING) {
		if (rpc_server_post_accept(srv, a) == 0)
			return;
	}
	{
		size_t i;
		for (i = 0; i < RPC_ACCEPT_SLOTS; i++)
			if (srv->slots[i] == a)
				srv->slots[i] = NULL;
	}
	free(a);
	rpc_server_maybe_done(srv);
}

/* Posts a generic request-call on one slot (also catches unknown methods). */
static int
rpc_server_post_accept(struct rpc_server *srv, struct rpc_accept *a)
{
	grpc_call_error e;
	grpc_completion_queue *cq = cqbridge_cq(srv->br);

	grpc_call_details_init(&a->details);
	grpc_metadata_array_init(&a->md);
	a->call = NULL;
	e = grpc_server_request_call(srv->server, &a->call, &a->details, &a->md, cq, cq,
	    &a->tag);
	if (e != GRPC_CALL_OK) {
		log_err(LOG_RPC, "grpc_server_request_call failed: %d", (int)e);
		grpc_call_details_destroy(&a->details);
		grpc_metadata_array_destroy(&a->md);
		return CERTA_ERPC;
	}
	srv->accepts_pending++;
	return 0;
}

int
rpc_server_new(struct cqbridge *br, const struct rpc_method *methods, size_t nmethods,
    void *ctx, struct rpc_server **out)
{
	struct rpc_server *srv;
	grpc_arg args[2];
	grpc_channel_args cargs;

	srv = calloc(1, sizeof *srv);
	if (srv == NULL)
		return -ENOMEM;
	/* A second daemon on the same port must fail loudly, not share it. */
	args[0].type = GRPC_ARG_INTEGER;
	args[0].key = (char *)GRPC_ARG_ALLOW_REUSEPORT;
	args[0].value.integer = 0;
	args[1].type = GRPC_ARG_INTEGER;
	args[1].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
	args[1].value.integer = RPC_MAX_MESSAGE;
	cargs.num_args = 2;
	cargs.args = args;
	srv->server = grpc_server_create(&cargs, NULL);
	if (srv->server == NULL) {
		free(srv);
		return -ENOMEM;
	}
	grpc_server_register_completion_queue(srv->server, cqbridge_cq(br), NULL);
	srv->br = br;
	srv->services[0].methods = methods;
	srv->services[0].nmethods = nmethods;
	srv->services[0].ctx = ctx;
	srv->nservices = 1;
	srv->ctx = ctx;
	srv->state = RPC_SERVER_NEW;
	*out = srv;
	return 0;
}

int
rpc_server_add_methods(struct rpc_server *srv, const struct rpc_method *methods,
    size_t nmethods, void *ctx)
{
	if (srv->nservices == RPC_MAX_SERVICES)
		return -ENOSPC;
	srv->services[srv->nservices].methods = methods;
	srv->services[srv->nservices].nmethods = nmethods;
	srv->services[srv->nservices].ctx = ctx;
	srv->nservices++;
	return 0;
}

void
rpc_server_set_authorizer(struct rpc_server *srv, rpc_authorize_fn fn, void *ctx)
{
	srv->authorize = fn;
	srv->authorize_ctx = ctx;
}

int
rpc_server_listen_creds(struct rpc_server *srv, const char *addr,
    grpc_server_credentials *creds, int *port)
{
	int p = grpc_server_add_http2_port(srv->server, addr, creds);

	if (p <= 0) {
		log_err(LOG_RPC, "cannot listen on %s (address in use or invalid)", addr);
		return CERTA_EUNAVAIL;
	}
	if (port != NULL)
		*port = strncmp(addr, "unix:", 5) == 0 ? 0 : p;
	return 0;
}

int
rpc_server_listen(struct rpc_server *srv, const char *addr, int *port)
{
	grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
	int rc = rpc_server_listen_creds(srv, addr, creds, port);

	grpc_server_credentials_release(creds);
	return rc;
}

int
rpc_server_start(struct rpc_server *srv)
{
	size_t i;

	grpc_server_start(srv->server);
	srv->state = RPC_SERVER_RUNNING;
	for (i = 0; i < RPC_ACCEPT_SLOTS; i++) {
		struct rpc_accept *a = calloc(1, sizeof *a);
		if (a == NULL)
			return -ENOMEM;
		a->srv = srv;
		a->tag.fn = rpc_server_on_accept;
		a->tag.urgent = 1;
		if (rpc_server_post_accept(srv, a) != 0) {
			free(a);
			return CERTA_ERPC;
		}
		srv->slots[i] = a;
	}
	return 0;
}

/* Destroys the server when gRPC confirmed shutdown and nothing refers to it any more. */
static void
rpc_server_maybe_done(struct rpc_server *srv)
{
	void (*done)(void *);
	void *arg;

	if (srv->state != RPC_SERVER_SHUTTING || !srv->shutdown_notified ||
	    srv->accepts_pending > 0 || srv->ncalls > 0)
		return;
	srv->state = RPC_SERVER_DONE;
	grpc_server_destroy(srv->server);
	done = srv->done;
	arg = srv->done_arg;
	free(srv);
	if (done != NULL)
		done(arg);
}

static void
rpc_server_on_shutdown(struct cqbridge_tag *tag, int ok)
{
	struct rpc_server *srv = container_of(tag, struct rpc_server, tag_shutdown);

	(void)ok;
	srv->shutdown_notified = 1;
	rpc_server_maybe_done(srv);
}

void
rpc_server_shutdown(struct rpc_server *srv, void (*done)(void *), void *arg)
{
	if (srv->state == RPC_SERVER_SHUTTING || srv->state == RPC_SERVER_DONE)
		return;
	srv->done = done;
	srv->done_arg = arg;
	srv->tag_shutdown.fn = rpc_server_on_shutdown;
	if (srv->state == RPC_SERVER_NEW) {
		/* Never started: gRPC still wants shutdown_and_notify before destroy. */
		srv->state = RPC_SERVER_SHUTTING;
		grpc_server_shutdown_and_notify(srv->server, cqbridge_cq(srv->br),
		    &srv->tag_shutdown);
		return;
	}
	srv->state = RPC_SERVER_SHUTTING;
	grpc_server_shutdown_and_notify(srv->server, cqbridge_cq(srv->br), &srv->tag_shutdown);
	grpc_server_cancel_all_calls(srv->server);
}

size_t
rpc_server_active_calls(const struct rpc_server *srv)
{
	return srv->ncalls;
}

void
rpc_server_each_method(const struct rpc_server *srv, void (*fn)(void *arg, const char *path),
    void *arg)
{
	size_t i, j;

	for (i = 0; i < srv->nservices; i++)
		for (j = 0; j < srv->services[i].nmethods; j++)
			fn(arg, srv->services[i].methods[j].path);
}

struct rpc_server *
rpc_call_server(const struct rpc_call *c)
{
	return c->srv;
}
