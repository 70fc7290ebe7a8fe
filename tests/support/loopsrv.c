/* loopsrv.c — a gRPC server on a loop thread for unit tests. */
#include "tests/support/loopsrv.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <event2/event.h>

#include "lib/cqbridge.h"
#include "lib/rpc_server.h"

#define LOOPSRV_STOP '\0'   /* the command byte that shuts down (not passed to callbacks) */

struct loopsrv {
	struct loopsrv_options opt;
	struct event_base *base;
	struct cqbridge *br;
	struct rpc_server *srv;
	struct event *cmd_ev;
	int cmd_pipe[2];      /* test thread -> loop: one command byte */
	int ack_pipe[2];      /* loop -> test thread: one int per command */
	pthread_t thread;
	int port;
	char target[64];
};

static void
loopsrv_bridge_done(void *arg)
{
	struct loopsrv *ls = arg;

	event_base_loopbreak(ls->base);
}

static void
loopsrv_server_done(void *arg)
{
	struct loopsrv *ls = arg;

	ls->srv = NULL;
	if (ls->opt.stopped != NULL)
		ls->opt.stopped(ls->opt.arg);
	cqbridge_shutdown(ls->br, loopsrv_bridge_done, ls);
}

static void
loopsrv_on_cmd(evutil_socket_t fd, short what, void *arg)
{
	struct loopsrv *ls = arg;
	char c;
	int r = 0;

	(void)what;
	if (read(fd, &c, 1) != 1)
		return;
	if (c == LOOPSRV_STOP) {
		event_del(ls->cmd_ev);
		rpc_server_shutdown(ls->srv, loopsrv_server_done, ls);
		return;  /* no ack: loopsrv_stop joins the thread */
	}
	if (ls->opt.command != NULL)
		r = ls->opt.command(c, ls->opt.arg);
	if (write(ls->ack_pipe[1], &r, sizeof r) != (ssize_t)sizeof r)
		abort();
}

static void *
loopsrv_thread(void *arg)
{
	struct loopsrv *ls = arg;

	event_base_dispatch(ls->base);
	return NULL;
}

int
loopsrv_start(const struct loopsrv_options *opt, struct loopsrv **out)
{
	struct loopsrv *ls = calloc(1, sizeof *ls);
	int rc = -ENOMEM;

	if (ls == NULL)
		return -ENOMEM;
	ls->opt = *opt;
	ls->cmd_pipe[0] = ls->cmd_pipe[1] = ls->ack_pipe[0] = ls->ack_pipe[1] = -1;
	ls->base = event_base_new();
	if (ls->base == NULL)
		goto fail_ls;
	rc = cqbridge_new(ls->base, &ls->br);
	if (rc != 0)
		goto fail_base;
	rc = rpc_server_new(ls->br, opt->methods, opt->nmethods, opt->ctx, &ls->srv);
	if (rc != 0)
		goto fail_bridge;
	if (opt->configure != NULL && (rc = opt->configure(ls->srv, opt->arg)) != 0)
		goto fail_bridge;
	rc = rpc_server_listen(ls->srv, "127.0.0.1:0", &ls->port);
	if (rc != 0)
		goto fail_bridge;
	snprintf(ls->target, sizeof ls->target, "127.0.0.1:%d", ls->port);
	rc = rpc_server_start(ls->srv);
	if (rc != 0)
		goto fail_bridge;
	if (pipe(ls->cmd_pipe) != 0 || pipe(ls->ack_pipe) != 0) {
		rc = -errno;
		goto fail_bridge;
	}
	ls->cmd_ev = event_new(ls->base, ls->cmd_pipe[0], EV_READ | EV_PERSIST, loopsrv_on_cmd, ls);
	if (ls->cmd_ev == NULL || event_add(ls->cmd_ev, NULL) != 0) {
		rc = -ENOMEM;
		goto fail_bridge;
	}
	rc = pthread_create(&ls->thread, NULL, loopsrv_thread, ls);
	if (rc != 0) {
		rc = -rc;
		goto fail_bridge;
	}
	*out = ls;
	return 0;

fail_bridge:
	/* Shutting a started server down needs the loop: run it here, on this thread. */
	if (ls->srv != NULL)
		rpc_server_shutdown(ls->srv, loopsrv_server_done, ls);
	else
		cqbridge_shutdown(ls->br, loopsrv_bridge_done, ls);
	ls->opt.stopped = NULL;
	event_base_dispatch(ls->base);
	cqbridge_free(ls->br);
	if (ls->cmd_ev != NULL)
		event_free(ls->cmd_ev);
fail_base:
	event_base_free(ls->base);
fail_ls:
	if (ls->cmd_pipe[0] >= 0) {
		close(ls->cmd_pipe[0]);
		close(ls->cmd_pipe[1]);
	}
	if (ls->ack_pipe[0] >= 0) {
		close(ls->ack_pipe[0]);
		close(ls->ack_pipe[1]);
	}
	free(ls);
	return rc;
}

int
loopsrv_cmd(struct loopsrv *ls, char c)
{
	int r;

	if (write(ls->cmd_pipe[1], &c, 1) != 1 || read(ls->ack_pipe[0], &r, sizeof r) !=
	    (ssize_t)sizeof r)
		abort();
	return r;
}

void
loopsrv_stop(struct loopsrv *ls)
{
	char c = LOOPSRV_STOP;

	if (ls == NULL)
		return;
	if (write(ls->cmd_pipe[1], &c, 1) != 1)
		abort();
	pthread_join(ls->thread, NULL);
	cqbridge_free(ls->br);
	event_free(ls->cmd_ev);
	event_base_free(ls->base);
	close(ls->cmd_pipe[0]);
	close(ls->cmd_pipe[1]);
	close(ls->ack_pipe[0]);
	close(ls->ack_pipe[1]);
	free(ls);
}

const char *
loopsrv_target(const struct loopsrv *ls)
{
	return ls->target;
}

int
loopsrv_port(const struct loopsrv *ls)
{
	return ls->port;
}

struct cqbridge *
loopsrv_bridge(struct loopsrv *ls)
{
	return ls->br;
}

struct rpc_server *
loopsrv_server(struct loopsrv *ls)
{
	return ls->srv;
}
