/* rpc_client.c — async (loop thread) and sync (private queue) gRPC client calls. */
#include "lib/rpc_client.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include "lib/cqbridge.h"
#include "lib/error.h"
#include "lib/log.h"

#define container_of(p, type, member) ((type *)(void *)((char *)(p) - offsetof(type, member)))

struct rpc_channel {
	grpc_channel *ch;
	char *target;
	grpc_completion_queue *pluck;  /* for sync calls, created on first use */
};

/* Common state of one client call: the op buffers gRPC writes into. */
struct rpc_ccall {
	grpc_call *call;
	grpc_metadata *md;
	size_t nmd;
	grpc_byte_buffer *send_bb;
	grpc_byte_buffer *recv_bb;
	grpc_metadata_array init_md;
	grpc_metadata_array trail_md;
	grpc_status_code status;
	grpc_slice details;
	const char *error_string;
	const ProtobufCMessageDescriptor *reply_desc;
	ProtobufCAllocator *reply_alloc;   /* unpacks the reply (NULL: protobuf-c's default) */
};

struct rpc_async {
	struct cqbridge_tag tag;
	struct rpc_ccall cc;
	rpc_unary_cb cb;
	void *arg;
};

struct rpc_stream {
	struct rpc_channel *ch;
	struct rpc_ccall cc;
	int got_status;         /* address used as the status batch's tag */
	int ended;              /* end of stream seen */
	int recv_pending;       /* a RECV_MESSAGE is outstanding (after a timed-out wait) */
};

/* Deadline timeout_ms from now; <= 0 means none. */
static gpr_timespec
rpc_deadline(int timeout_ms)
{
	if (timeout_ms <= 0)
		return gpr_inf_future(GPR_CLOCK_MONOTONIC);
	return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
	    gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
}

int
rpc_channel_new_creds(const char *target, grpc_channel_credentials *creds,
    struct rpc_channel **out)
{
	struct rpc_channel *ch;
	grpc_arg args[1];
	grpc_channel_args cargs;

	ch = calloc(1, sizeof *ch);
	if (ch == NULL)
		return -ENOMEM;
	ch->target = strdup(target);
	if (ch->target == NULL) {
		free(ch);
		return -ENOMEM;
	}
	args[0].type = GRPC_ARG_INTEGER;
	args[0].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
	args[0].value.integer = RPC_MAX_MESSAGE;
	cargs.num_args = 1;
	cargs.args = args;
	ch->ch = grpc_channel_create(target, creds, &cargs);
	if (ch->ch == NULL) {
		free(ch->target);
		free(ch);
		return -ENOMEM;
	}
	*out = ch;
	return 0;
}

int
rpc_channel_new(const char *target, struct rpc_channel **out)
{
	grpc_channel_credentials *creds = grpc_insecure_credentials_create();
	int rc = rpc_channel_new_creds(target, creds, out);

	grpc_channel_credentials_release(creds);
	return rc;
}

void
rpc_channel_free(struct rpc_channel *ch)
{
	if (ch == NULL)
		return;
	grpc_channel_destroy(ch->ch);
	if (ch->pluck != NULL) {
		grpc_completion_queue_shutdown(ch->pluck);
		grpc_completion_queue_destroy(ch->pluck);
	}
	free(ch->target);
	free(ch);
}

const char *
rpc_channel_target(const struct rpc_channel *ch)
{
	return ch->target;
}

/* Prepares metadata and the packed request. */
static int
rpc_ccall_init(struct rpc_ccall *cc, const ProtobufCMessage *req,
    const ProtobufCMessageDescriptor *reply_desc, const struct rpc_metadata *md, size_t nmd)
{
	size_t i;

	memset(cc, 0, sizeof *cc);
	cc->reply_desc = reply_desc;
	grpc_metadata_array_init(&cc->init_md);
	grpc_metadata_array_init(&cc->trail_md);
	if (nmd > 0) {
		cc->md = calloc(nmd, sizeof *cc->md);
		if (cc->md == NULL)
			return -ENOMEM;
		for (i = 0; i < nmd; i++) {
			if (!rpc_metadata_key_valid(md[i].key))
				return CERTA_EINVAL;
			cc->md[i].key = grpc_slice_from_copied_string(md[i].key);
			cc->md[i].value = grpc_slice_from_copied_string(md[i].value);
			cc->nmd++;
		}
	}
	cc->send_bb = rpc_pack(req);
	if (cc->send_bb == NULL)
		return -ENOMEM;
	return 0;
}

static void
rpc_ccall_destroy(struct rpc_ccall *cc)
{
	size_t i;

	for (i = 0; i < cc->nmd; i++) {
		grpc_slice_unref(cc->md[i].key);
		grpc_slice_unref(cc->md[i].value);
	}
	free(cc->md);
	if (cc->send_bb != NULL)
		grpc_byte_buffer_destroy(cc->send_bb);
	if (cc->recv_bb != NULL)
		grpc_byte_buffer_destroy(cc->recv_bb);
	grpc_metadata_array_destroy(&cc->init_md);
	grpc_metadata_array_destroy(&cc->trail_md);
	grpc_slice_unref(cc->details);
	if (cc->error_string != NULL)
		gpr_free((void *)cc->error_string);
	if (cc->call != NULL)
		grpc_call_unref(cc->call);
}

/* Fills the six ops of a unary call (or the four opening ops of a stream). */
static size_t
rpc_ccall_ops(struct rpc_ccall *cc, grpc_op *ops, int unary)
{
	size_t n = 0;

	memset(ops, 0, 6 * sizeof *ops);
	ops[n].op = GRPC_OP_SEND_INITIAL_METADATA;
	ops[n].data.send_initial_metadata.count = cc->nmd;
	ops[n].data.send_initial_metadata.metadata = cc->md;
	n++;
	ops[n].op = GRPC_OP_SEND_MESSAGE;
	ops[n].data.send_message.send_message = cc->send_bb;
	n++;
	ops[n].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
	n++;
	ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
	ops[n].data.recv_initial_metadata.recv_initial_metadata = &cc->init_md;
	n++;
	if (unary) {
		ops[n].op = GRPC_OP_RECV_MESSAGE;
		ops[n].data.recv_message.recv_message = &cc->recv_bb;
		n++;
		ops[n].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
		ops[n].data.recv_status_on_client.trailing_metadata = &cc->trail_md;
		ops[n].data.recv_status_on_client.status = &cc->status;
		ops[n].data.recv_status_on_client.status_details = &cc->details;
		ops[n].data.recv_status_on_client.error_string = &cc->error_string;
		n++;
	}
	return n;
}

/* Decodes the reply of a finished unary call; a bad body becomes INTERNAL. */
static ProtobufCMessage *
rpc_ccall_reply(struct rpc_ccall *cc, char *detail_buf, size_t len)
{
	ProtobufCMessage *reply = NULL;
	char *d;

	d = grpc_slice_to_c_string(cc->details);
	snprintf(detail_buf, len, "%s", d);
	gpr_free(d);
	if (cc->status != GRPC_STATUS_OK)
		return NULL;
	if (rpc_unpack_alloc(cc->recv_bb, cc->reply_desc, cc->reply_alloc, &reply) != 0) {
		cc->status = GRPC_STATUS_INTERNAL;
		snprintf(detail_buf, len, "malformed reply: not a valid %s message",
		    cc->reply_desc->name);
		return NULL;
	}
	return reply;
}

static void
rpc_async_done(struct cqbridge_tag *tag, int ok)
{
	struct rpc_async *a = container_of(tag, struct rpc_async, tag);
	ProtobufCMessage *reply = NULL;
	char details[1024];

	if (!ok) {
		a->cc.status = GRPC_STATUS_CANCELLED;
		snprintf(details, sizeof details, "call failed");
	} else {
		reply = rpc_ccall_reply(&a->cc, details, sizeof details);
	}
	a->cb(a->arg, a->cc.status, details, reply);
	rpc_ccall_destroy(&a->cc);
	free(a);
}

int
rpc_client_unary(struct rpc_channel *ch, struct cqbridge *br, const char *method,
    const ProtobufCMessage *req, const ProtobufCMessageDescriptor *reply_desc, int timeout_ms,
    const struct rpc_metadata *md, size_t nmd, rpc_unary_cb cb, void *arg)
{
	return rpc_client_unary_alloc(ch, br, method, req, reply_desc, NULL, timeout_ms, md, nmd,
	    cb, arg);
}

int
rpc_client_unary_alloc(struct rpc_channel *ch, struct cqbridge *br, const char *method,
    const ProtobufCMessage *req, const ProtobufCMessageDescriptor *reply_desc,
    ProtobufCAllocator *reply_alloc, int timeout_ms, const struct rpc_metadata *md, size_t nmd,
    rpc_unary_cb cb, void *arg)
{
	struct rpc_async *a;
	grpc_op ops[6];
	size_t n;
	grpc_slice m;
	int rc;

	a = calloc(1, sizeof *a);
	if (a == NULL)
		return -ENOMEM;
	a->tag.fn = rpc_async_done;
	a->cb = cb;
	a->arg = arg;
	rc = rpc_ccall_init(&a->cc, req, reply_desc, md, nmd);
	if (rc != 0)
		goto fail_cc;
	a->cc.reply_alloc = reply_alloc;
	m = grpc_slice_from_copied_string(method);
	a->cc.call = grpc_channel_create_call(ch->ch, NULL, GRPC_PROPAGATE_DEFAULTS,
	    cqbridge_cq(br), m, NULL, rpc_deadline(timeout_ms), NULL);
	grpc_slice_unref(m);
	if (a->cc.call == NULL) {
		rc = -ENOMEM;
		goto fail_cc;
	}
	n = rpc_ccall_ops(&a->cc, ops, 1);
	if (grpc_call_start_batch(a->cc.call, ops, n, &a->tag, NULL) != GRPC_CALL_OK) {
		rc = CERTA_ERPC;
		goto fail_cc;
	}
	return 0;

fail_cc:
	rpc_ccall_destroy(&a->cc);
	free(a);
	return rc;
}

/* The channel's private pluck queue for sync calls. */
static grpc_completion_queue *
rpc_channel_pluck(struct rpc_channel *ch)
{
	if (ch->pluck == NULL)
		ch->pluck = grpc_completion_queue_create_for_pluck(NULL);
	return ch->pluck;
}

/* Waits for one tag on the pluck queue. */
static int
rpc_pluck(grpc_completion_queue *cq, void *tag, int wait_ms)
{
	grpc_event e = grpc_completion_queue_pluck(cq, tag, rpc_deadline(wait_ms), NULL);

	if (e.type == GRPC_QUEUE_TIMEOUT)
		return CERTA_ETIMEOUT;
	if (e.type != GRPC_OP_COMPLETE)
		return CERTA_ERPC;
	return e.success ? 1 : 0;
}

int
rpc_sync_unary(struct rpc_channel *ch, const char *method, const ProtobufCMessage *req,
    const ProtobufCMessageDescriptor *reply_desc, int timeout_ms,
    const struct rpc_metadata *md, size_t nmd, ProtobufCMessage **reply,
    grpc_status_code *status, char **details)
{
	struct rpc_ccall cc;
	grpc_completion_queue *cq = rpc_channel_pluck(ch);
	grpc_op ops[6];
	size_t n;
	grpc_slice m;
	char buf[1024];
	ProtobufCMessage *r;
	int rc;

	rc = rpc_ccall_init(&cc, req, reply_desc, md, nmd);
	if (rc != 0)
		goto out;
	m = grpc_slice_from_copied_string(method);
	cc.call = grpc_channel_create_call(ch->ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, m, NULL,
	    rpc_deadline(timeout_ms), NULL);
	grpc_slice_unref(m);
	if (cc.call == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	n = rpc_ccall_ops(&cc, ops, 1);
	if (grpc_call_start_batch(cc.call, ops, n, &cc, NULL) != GRPC_CALL_OK) {
		rc = CERTA_ERPC;
		goto out;
	}
	rc = rpc_pluck(cq, &cc, -1);
	if (rc < 0)
		goto out;
	rc = 0;
	r = rpc_ccall_reply(&cc, buf, sizeof buf);
	*status = cc.status;
	if (details != NULL)
		*details = buf[0] ? strdup(buf) : NULL;
	if (r != NULL)
		*reply = r;
out:
	rpc_ccall_destroy(&cc);
	return rc;
}

int
rpc_sync_stream_open(struct rpc_channel *ch, const char *method,
    const ProtobufCMessage *req, const ProtobufCMessageDescriptor *reply_desc, int timeout_ms,
    const struct rpc_metadata *md, size_t nmd, struct rpc_stream **out)
{
	struct rpc_stream *s;
	grpc_completion_queue *cq = rpc_channel_pluck(ch);
	grpc_op ops[6];
	size_t n;
	grpc_slice m;
	int rc;

	s = calloc(1, sizeof *s);
	if (s == NULL)
		return -ENOMEM;
	s->ch = ch;
	rc = rpc_ccall_init(&s->cc, req, reply_desc, md, nmd);
	if (rc != 0)
		goto fail;
	m = grpc_slice_from_copied_string(method);
	s->cc.call = grpc_channel_create_call(ch->ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, m, NULL,
	    rpc_deadline(timeout_ms), NULL);
	grpc_slice_unref(m);
	if (s->cc.call == NULL) {
		rc = -ENOMEM;
		goto fail;
	}
	n = rpc_ccall_ops(&s->cc, ops, 0);
	if (grpc_call_start_batch(s->cc.call, ops, n, s, NULL) != GRPC_CALL_OK) {
		rc = CERTA_ERPC;
		goto fail;
	}
	/* Status is received in its own batch so it can arrive at any time. */
	memset(ops, 0, sizeof ops);
	ops[0].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
	ops[0].data.recv_status_on_client.trailing_metadata = &s->cc.trail_md;
	ops[0].data.recv_status_on_client.status = &s->cc.status;
	ops[0].data.recv_status_on_client.status_details = &s->cc.details;
	ops[0].data.recv_status_on_client.error_string = &s->cc.error_string;
	if (grpc_call_start_batch(s->cc.call, ops, 1, &s->got_status, NULL) != GRPC_CALL_OK) {
		rc = CERTA_ERPC;
		grpc_call_cancel(s->cc.call, NULL);
		(void)rpc_pluck(cq, s, -1);
		goto fail;
	}
	(void)rpc_pluck(cq, s, -1);
	*out = s;
	return 0;

fail:
	rpc_ccall_destroy(&s->cc);
	free(s);
	return rc;
}

int
rpc_sync_stream_next(struct rpc_stream *s, int wait_ms, ProtobufCMessage **msg)
{
	grpc_completion_queue *cq = rpc_channel_pluck(s->ch);
	grpc_op op;
	int rc;

	if (s->ended)
		return 0;
	/* Post a receive unless one is already outstanding (after a timeout). */
	if (!s->recv_pending) {
		memset(&op, 0, sizeof op);
		op.op = GRPC_OP_RECV_MESSAGE;
		op.data.recv_message.recv_message = &s->cc.recv_bb;
		if (grpc_call_start_batch(s->cc.call, &op, 1, &s->cc.recv_bb, NULL) !=
		    GRPC_CALL_OK)
			return CERTA_ERPC;
		s->recv_pending = 1;
	}
	rc = rpc_pluck(cq, &s->cc.recv_bb, wait_ms);
	if (rc == CERTA_ETIMEOUT)
		return rc;
	s->recv_pending = 0;
	if (rc <= 0 || s->cc.recv_bb == NULL) {
		s->ended = 1;
		return rc < 0 ? rc : 0;
	}
	rc = rpc_unpack(s->cc.recv_bb, s->cc.reply_desc, msg);
	grpc_byte_buffer_destroy(s->cc.recv_bb);
	s->cc.recv_bb = NULL;
	if (rc != 0)
		return rc;
	return 1;
}

void
rpc_sync_stream_cancel(struct rpc_stream *s)
{
	grpc_call_cancel(s->cc.call, NULL);
}

grpc_status_code
rpc_sync_stream_close(struct rpc_stream *s, char **details)
{
	grpc_completion_queue *cq = rpc_channel_pluck(s->ch);
	grpc_status_code st;
	char *d;

	if (s->recv_pending) {
		/* A receive is still outstanding: cancel and collect it. */
		grpc_call_cancel(s->cc.call, NULL);
		(void)rpc_pluck(cq, &s->cc.recv_bb, -1);
	} else if (!s->ended) {
		grpc_call_cancel(s->cc.call, NULL);
	}
	(void)rpc_pluck(cq, &s->got_status, -1);
	st = s->cc.status;
	if (details != NULL) {
		d = grpc_slice_to_c_string(s->cc.details);
		*details = d[0] ? strdup(d) : NULL;
		gpr_free(d);
	}
	rpc_ccall_destroy(&s->cc);
	free(s);
	return st;
}
