/* certa_client.c — gRPC helpers shared by integration tests and benches. */
#include "tests/support/certa_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc/health/v1/health.pb-c.h"

#define CERTA_CLIENT_HEALTH_MS 5000

int
certa_client_channel(int port, struct rpc_channel **out)
{
	char target[64];

	snprintf(target, sizeof target, "127.0.0.1:%d", port);
	return rpc_channel_new(target, out);
}

/* Fills md[0] with the bearer header; the number of metadata entries (0 without a token). */
static size_t
certa_client_bearer(const char *bearer, struct rpc_metadata *md, char *buf, size_t len)
{
	if (bearer == NULL)
		return 0;
	snprintf(buf, len, "Bearer %s", bearer);
	md[0].key = "authorization";
	md[0].value = buf;
	return 1;
}

int
certa_client_unary(struct rpc_channel *ch, const char *method, const ProtobufCMessage *req,
    const ProtobufCMessageDescriptor *reply_desc, int timeout_ms, const char *bearer,
    ProtobufCMessage **reply, grpc_status_code *status, char **details)
{
	struct rpc_metadata md[1];
	char authz[512];
	size_t nmd = certa_client_bearer(bearer, md, authz, sizeof authz);

	return rpc_sync_unary(ch, method, req, reply_desc, timeout_ms, nmd > 0 ? md : NULL, nmd,
	    reply, status, details);
}

int
certa_client_submit(struct rpc_channel *ch, const Certa__V1__ProgramSpec *spec,
    const char *bearer, int timeout_ms, struct rpc_stream **out)
{
	Certa__V1__SubmitRequest req = CERTA__V1__SUBMIT_REQUEST__INIT;
	struct rpc_metadata md[1];
	char authz[512];
	size_t nmd = certa_client_bearer(bearer, md, authz, sizeof authz);

	req.program = (Certa__V1__ProgramSpec *)spec;
	return rpc_sync_stream_open(ch, "/certa.v1.Reasoning/Submit", &req.base,
	    &certa__v1__program_event__descriptor, timeout_ms, nmd > 0 ? md : NULL, nmd, out);
}

int
certa_client_events_read(struct rpc_stream *s, int wait_ms, int stop_after,
    struct certa_client_events *ev)
{
	Certa__V1__ProgramEvent *m;
	char *d = NULL;

	ev->monotone = 1;
	while (rpc_sync_stream_next(s, wait_ms, (ProtobufCMessage **)&m) == 1) {
		switch (m->event_case) {
		case CERTA__V1__PROGRAM_EVENT__EVENT_ACCEPTED:
			ev->accepted++;
			snprintf(ev->id, sizeof ev->id, "%s", m->accepted->program_id);
			break;
		case CERTA__V1__PROGRAM_EVENT__EVENT_PROGRESS:
			ev->progress++;
			if (m->progress->tokens_used < ev->last_tokens)
				ev->monotone = 0;
			ev->last_tokens = m->progress->tokens_used;
			break;
		case CERTA__V1__PROGRAM_EVENT__EVENT_FINISHED:
			if (ev->last != NULL)
				protobuf_c_message_free_unpacked(&ev->last->base, NULL);
			ev->last = m;
			ev->finished = m->finished;
			m = NULL;
			break;
		default:
			break;
		}
		if (m != NULL)
			protobuf_c_message_free_unpacked(&m->base, NULL);
		if (stop_after > 0 && ev->progress >= stop_after)
			return 1;
	}
	ev->status = rpc_sync_stream_close(s, &d);
	snprintf(ev->details, sizeof ev->details, "%s", d != NULL ? d : "");
	free(d);
	return 0;
}

void
certa_client_events_free(struct certa_client_events *ev)
{
	if (ev->last != NULL)
		protobuf_c_message_free_unpacked(&ev->last->base, NULL);
	memset(ev, 0, sizeof *ev);
}

int
certa_client_health(int port, const char *service)
{
	Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
	Grpc__Health__V1__HealthCheckResponse *r = NULL;
	struct rpc_channel *ch;
	grpc_status_code st;
	int status = -1;

	if (certa_client_channel(port, &ch) != 0)
		return -1;
	req.service = (char *)service;
	if (rpc_sync_unary(ch, "/grpc.health.v1.Health/Check", &req.base,
	    &grpc__health__v1__health_check_response__descriptor, CERTA_CLIENT_HEALTH_MS, NULL, 0,
	    (ProtobufCMessage **)&r, &st, NULL) == 0 && st == GRPC_STATUS_OK) {
		status = r->status;
		protobuf_c_message_free_unpacked(&r->base, NULL);
	}
	rpc_channel_free(ch);
	return status;
}
