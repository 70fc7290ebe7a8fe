/* proc.c — event loop, signals, bridge and shutdown shared by the daemons. */
#include "lib/proc.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <event2/event.h>
#include <grpc/grpc.h>

#include "lib/cqbridge.h"
#include "lib/log.h"

static const int proc_signals[] = { SIGTERM, SIGINT, SIGHUP };
#define PROC_NSIG (sizeof proc_signals / sizeof proc_signals[0])

struct proc {
	struct event_base *base;
	struct cqbridge *br;
	struct event *sig[PROC_NSIG];
	proc_signal_fn on_signal;
	void *arg;
	int finished;
};

/* All signals arrive here, on the loop thread (libevent's self-pipe). */
static void
proc_on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct proc *p = arg;

	(void)what;
	log_info(LOG_MAIN, "signal %s", strsignal((int)sig));
	p->on_signal((int)sig, p->arg);
}

int
proc_new(proc_signal_fn on_signal, void *arg, struct proc **out)
{
	struct proc *p;
	size_t i;
	int rc;

	p = calloc(1, sizeof *p);
	if (p == NULL)
		return -ENOMEM;
	signal(SIGPIPE, SIG_IGN);
	p->on_signal = on_signal;
	p->arg = arg;
	p->base = event_base_new();
	if (p->base == NULL) {
		rc = -ENOMEM;
		goto fail_p;
	}
	for (i = 0; i < PROC_NSIG; i++) {
		p->sig[i] = evsignal_new(p->base, proc_signals[i], proc_on_signal, p);
		if (p->sig[i] == NULL || evsignal_add(p->sig[i], NULL) != 0) {
			rc = -ENOMEM;
			goto fail_sig;
		}
	}
	grpc_init();
	rc = cqbridge_new(p->base, &p->br);
	if (rc != 0)
		goto fail_grpc;
	*out = p;
	return 0;

fail_grpc:
	grpc_shutdown();
fail_sig:
	for (i = 0; i < PROC_NSIG; i++)
		if (p->sig[i] != NULL)
			event_free(p->sig[i]);
	event_base_free(p->base);
fail_p:
	free(p);
	return rc;
}

struct event_base *
proc_base(struct proc *p)
{
	return p->base;
}

struct cqbridge *
proc_bridge(struct proc *p)
{
	return p->br;
}

/* The bridge reported its queue empty and shut down: leave the loop. */
static void
proc_on_bridge_done(void *arg)
{
	struct proc *p = arg;

	p->finished = 1;
	event_base_loopbreak(p->base);
}

void
proc_finish(struct proc *p)
{
	cqbridge_shutdown(p->br, proc_on_bridge_done, p);
}

int
proc_run(struct proc *p)
{
	while (!p->finished) {
		if (event_base_dispatch(p->base) < 0)
			return -EIO;
		if (event_base_got_exit(p->base) && !p->finished)
			break;
	}
	return 0;
}

void
proc_free(struct proc *p)
{
	size_t i;

	if (p == NULL)
		return;
	cqbridge_free(p->br);
	for (i = 0; i < PROC_NSIG; i++)
		event_free(p->sig[i]);
	event_base_free(p->base);
	grpc_shutdown();
	free(p);
}

int
proc_write_port_file(const char *path, int port)
{
	char tmp[4096];
	FILE *f;

	if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
		return -ENAMETOOLONG;
	f = fopen(tmp, "w");
	if (f == NULL)
		return -errno;
	fprintf(f, "%d\n", port);
	if (fclose(f) != 0)
		return -errno;
	if (rename(tmp, path) != 0)
		return -errno;
	return 0;
}
