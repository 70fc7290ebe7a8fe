/* client.c — certactl's channel to certad and the gRPC status -> exit status boundary. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/client.h"
#include "cli/cmd.h"
#include "lib/error.h"
#include "lib/rpc.h"
#include "lib/rpc_client.h"

struct client {
	struct rpc_channel *ch;
	char *auth;                      /* "Bearer KEY" or NULL */
	struct rpc_metadata md[1];
	size_t nmd;
	int timeout_ms;
	int admin;                       /* Admin service calls */
};

/* A header value must be visible ASCII or space; anything else would make every call fail
 * inside gRPC with a less helpful message. */
static int
client_token_valid(const char *token)
{
	const unsigned char *p;

	if (*token == '\0')
		return 0;
	for (p = (const unsigned char *)token; *p; p++)
		if (*p < 0x20 || *p > 0x7e)
			return 0;
	return 1;
}

int
client_new(const char *server, const char *token, int admin, int timeout_ms,
    struct client **out)
{
	struct client *c;
	int rc;

	if (token != NULL && !client_token_valid(token))
		return -EINVAL;
	c = calloc(1, sizeof *c);
	if (c == NULL)
		return -ENOMEM;
	c->timeout_ms = timeout_ms;
	c->admin = admin;
	if (token != NULL) {
		if (asprintf(&c->auth, "Bearer %s", token) < 0) {
			rc = -ENOMEM;
			goto fail_client;
		}
		c->md[0].key = "authorization";
		c->md[0].value = c->auth;
		c->nmd = 1;
	}
	grpc_init();
	rc = rpc_channel_new(server, &c->ch);
	if (rc != 0)
		goto fail_grpc;
	*out = c;
	return 0;

fail_grpc:
	grpc_shutdown();
	free(c->auth);
fail_client:
	free(c);
	return rc;
}

void
client_free(struct client *c)
{
	if (c == NULL)
		return;
	rpc_channel_free(c->ch);
	grpc_shutdown();
	free(c->auth);
	free(c);
}

const char *
client_server(const struct client *c)
{
	return rpc_channel_target(c->ch);
}

int
client_exit_code(grpc_status_code status)
{
	switch (status) {
	case GRPC_STATUS_OK:
		return CLI_EXIT_OK;
	case GRPC_STATUS_UNAVAILABLE:
	case GRPC_STATUS_DEADLINE_EXCEEDED:
		return CLI_EXIT_UNAVAILABLE;
	default:
		return CLI_EXIT_ERROR;
	}
}

int
client_report(const struct client *c, grpc_status_code status, const char *details)
{
	const char *msg = details != NULL && *details ? details : "(no message)";

	switch (status) {
	case GRPC_STATUS_UNAVAILABLE:
		fprintf(stderr, "certactl: %s: %s (server %s)\n", rpc_status_name(status), msg,
		    client_server(c));
		break;
	case GRPC_STATUS_DEADLINE_EXCEEDED:
		fprintf(stderr, "certactl: %s: %s (no answer from %s within %d ms; see --timeout)\n",
		    rpc_status_name(status), msg, client_server(c), c->timeout_ms);
		break;
	case GRPC_STATUS_UNAUTHENTICATED:
	case GRPC_STATUS_PERMISSION_DENIED:
		fprintf(stderr, "certactl: %s: %s\n", rpc_status_name(status), msg);
		if (c->admin)
			fprintf(stderr, "certactl: admin commands need --admin-token TOKEN (env "
			    "CERTA_ADMIN_TOKEN), or --server unix:" CLI_ADMIN_SOCKET " on the "
			    "daemon's host\n");
		break;
	default:
		fprintf(stderr, "certactl: %s: %s\n", rpc_status_name(status), msg);
		break;
	}
	return client_exit_code(status);
}

/* Resolves svc/method to its path and descriptor; a name that is not in the generated service
 * is a programming error. */
static const ProtobufCMethodDescriptor *
client_method(const ProtobufCServiceDescriptor *svc, const char *method,
    const ProtobufCMessage *req, char *path, size_t len)
{
	const ProtobufCMethodDescriptor *m;

	m = protobuf_c_service_descriptor_get_method_by_name(svc, method);
	if (m == NULL || req->descriptor != m->input ||
	    rpc_method_path(svc, method, path, len) == NULL) {
		fprintf(stderr, "certactl: internal error: bad call %s/%s\n", svc->name, method);
		abort();
	}
	return m;
}

/* A local failure (no memory, a reply that does not decode) is reported like a server error. */
static int
client_local_error(int err)
{
	fprintf(stderr, "certactl: %s\n", certa_strerror(err));
	return CLI_EXIT_ERROR;
}

int
client_call(struct client *c, const ProtobufCServiceDescriptor *svc, const char *method,
    const ProtobufCMessage *req, ProtobufCMessage **reply)
{
	const ProtobufCMethodDescriptor *m;
	ProtobufCMessage *r = NULL;
	grpc_status_code status = GRPC_STATUS_UNKNOWN;
	char path[128], *details = NULL;
	int rc;

	m = client_method(svc, method, req, path, sizeof path);
	rc = rpc_sync_unary(c->ch, path, req, m->output, c->timeout_ms, c->md, c->nmd, &r,
	    &status, &details);
	if (rc != 0)
		return client_local_error(rc);
	if (status != GRPC_STATUS_OK) {
		rc = client_report(c, status, details);
		free(details);
		return rc;
	}
	free(details);
	*reply = r;
	return CLI_EXIT_OK;
}

int
client_stream_open(struct client *c, const ProtobufCServiceDescriptor *svc, const char *method,
    const ProtobufCMessage *req, struct rpc_stream **out)
{
	const ProtobufCMethodDescriptor *m;
	char path[128];
	int rc;

	m = client_method(svc, method, req, path, sizeof path);
	rc = rpc_sync_stream_open(c->ch, path, req, m->output, 0, c->md, c->nmd, out);
	if (rc != 0)
		return client_local_error(rc);
	return CLI_EXIT_OK;
}

grpc_status_code
client_stream_close(struct rpc_stream *s, char **details)
{
	return rpc_sync_stream_close(s, details);
}
