/*
 * openai.h — certad's OpenAI-compatible HTTP API (docs/http-api.md):
 *
 *	POST /v1/chat/completions   a program from chat messages; JSON or server-sent events
 *	POST /v1/completions        the same from a prompt
 *	GET  /v1/models             the models the UP workers serve
 *
 * on its own listener (libevent evhttp on certad's loop; TLS with a certificate and key when
 * given).  `Authorization: Bearer <tenant API key>` names the tenant exactly as on gRPC
 * (auth_tenant: same keys, anonymous tenant, quotas and fair share through submit_program).
 * A request is a program: the HTTP side is one more watcher of it (a local rpc_call whose
 * sink turns accepted / progress / finished events into the response), so a client that goes
 * away does not cancel it, and draining ends open streams like gRPC ones (503 / an error
 * event).  Errors use OpenAI's shape {"error": {"message", "type", "param", "code"}} with
 * the HTTP status (400, 401, 404, 405, 413, 429 + Retry-After, 500, 503).
 *
 * Loop thread only.
 */
#ifndef CERTA_DAEMON_OPENAI_H
#define CERTA_DAEMON_OPENAI_H

#include <stddef.h>

struct auth;
struct core;
struct event_base;
struct openai;

struct openai_options {
	const char *listen;        /* "host:port" (port 0: any free port) */
	const char *tls_cert;      /* PEM file of the certificate chain; NULL/"": plain HTTP */
	const char *tls_key;       /* PEM file of its private key (with tls_cert) */
	size_t max_body;           /* largest request body accepted (413 above) */
};

/* Binds and serves.  *port (may be NULL) gets the bound port.  Returns 0, CERTA_ECONFIG
 * (bad address, unreadable certificate or key), CERTA_EUNAVAIL (cannot bind), -ENOMEM; *out
 * is written only on success. */
int openai_new(struct event_base *base, struct core *c, struct auth *a,
    const struct openai_options *opt, int *port, struct openai **out);

/* Closes the listener and every connection; open requests stop watching their programs
 * (which go on).  Before core_free.  NULL is a no-op. */
void openai_free(struct openai *o);

#endif
