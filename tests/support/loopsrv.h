/*
 * loopsrv.h — unit-test support: a real gRPC server (lib/rpc_server) on 127.0.0.1, an ephemeral
 * port, driven by a libevent loop on its own thread, as in certad and certa-worker.
 *
 * The test thread starts it, talks to it over loopback with blocking clients, and runs
 * commands on the loop thread (where rpc_call and loop-owned objects may be touched) with
 * loopsrv_cmd(): one byte goes through a pipe, the options' command callback runs on the loop
 * thread, its int result comes back.  loopsrv_stop() shuts the server down on the loop thread
 * (the stopped callback runs there afterwards), then the bridge, joins the thread and frees
 * everything.
 *
 * Errors: loopsrv_start returns 0 or a negative code (lib/error.h: -errno, CERTA_EUNAVAIL when
 * the port cannot be bound); *out is written only on success.  Test thread only, except the
 * callbacks, which run on the loop thread.  grpc_init() must have been called.
 */
#ifndef CERTA_TESTS_SUPPORT_LOOPSRV_H
#define CERTA_TESTS_SUPPORT_LOOPSRV_H

#include <stddef.h>

struct cqbridge;
struct event_base;
struct loopsrv;
struct rpc_method;
struct rpc_server;

struct loopsrv_options {
	const struct rpc_method *methods;   /* the server's first method table */
	size_t nmethods;
	void *ctx;                          /* handlers' ctx */
	/* Test thread, before the server starts (add tables, set an authorizer); 0 or an error
	 * that loopsrv_start returns.  May be NULL. */
	int (*configure)(struct rpc_server *srv, void *arg);
	/* Loop thread: runs command c; the result is loopsrv_cmd's.  May be NULL (result 0). */
	int (*command)(char c, void *arg);
	/* Loop thread, once the server has shut down (free channels and registries here).  May
	 * be NULL. */
	void (*stopped)(void *arg);
	void *arg;                          /* for the three callbacks */
};

int loopsrv_start(const struct loopsrv_options *opt, struct loopsrv **out);
/* Runs one command on the loop thread and returns its result. */
int loopsrv_cmd(struct loopsrv *ls, char c);
/* Shuts down and frees (NULL: no-op). */
void loopsrv_stop(struct loopsrv *ls);

/* "127.0.0.1:<port>"; owned by ls. */
const char *loopsrv_target(const struct loopsrv *ls);
int loopsrv_port(const struct loopsrv *ls);
/* The loop's bridge and server (use them on the loop thread only). */
struct cqbridge *loopsrv_bridge(struct loopsrv *ls);
struct rpc_server *loopsrv_server(struct loopsrv *ls);

#endif
