/*
 * sdnotify.c — libsystemd's sd_notify(3) driven by libevent timers: the protocol is
 * libsystemd's, the watchdog and status timers are ours (they tick on the loop).
 */
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <event2/event.h>
#include <systemd/sd-daemon.h>

#include "lib/error.h"
#include "lib/log.h"
#include "lib/sdnotify.h"

struct sdnotify {
	int enabled;                     /* NOTIFY_SOCKET set: 0 makes every send a no-op */
	uint64_t watchdog_usec;          /* 0: watchdog off */
	uint64_t pings;
	struct event *watchdog_ev;
	struct event *status_ev;
	sdnotify_status_fn status_fn;
	void *status_arg;
	char last_status[256];
	int warned;
};

/* WATCHDOG_USEC as sd_watchdog_enabled(3) reads it (honouring WATCHDOG_PID); 0 when off or
 * malformed. */
static uint64_t
sdnotify_watchdog_env(void)
{
	uint64_t usec = 0;

	return sd_watchdog_enabled(0, &usec) > 0 ? usec : 0;
}

/* Sends msg with sd_notify(3): 1 sent, 0 nothing to do or dropped (notifications off, or the
 * socket full: best effort), or -errno (logged once). */
static int
sdnotify_sendmsg(struct sdnotify *n, const char *msg)
{
	int r;

	if (!n->enabled)
		return 0;
	r = sd_notify(0, msg);
	if (r > 0)
		return 1;
	if (r == 0 || r == -EAGAIN || r == -EWOULDBLOCK)
		return 0;
	if (!n->warned) {
		n->warned = 1;
		log_warn(LOG_MAIN, "cannot notify systemd: %s", certa_strerror(r));
	}
	return r;
}

int
sdnotify_send(struct sdnotify *n, const char *msg)
{
	int rc = sdnotify_sendmsg(n, msg);

	return rc < 0 ? rc : 0;
}

/* Keep-alive from the loop: a stalled loop stops these, and systemd acts. */
static void
sdnotify_on_watchdog(evutil_socket_t fd, short what, void *arg)
{
	struct sdnotify *n = arg;

	(void)fd;
	(void)what;
	if (sdnotify_sendmsg(n, "WATCHDOG=1") == 1)
		n->pings++;
}

/* Sends STATUS= when the callback's text changed (force: always). */
static int
sdnotify_status_now(struct sdnotify *n, int force)
{
	char text[sizeof n->last_status], msg[sizeof text + 8];
	char *nl;

	if (n->status_fn == NULL)
		return 0;
	text[0] = '\0';
	n->status_fn(text, sizeof text, n->status_arg);
	text[sizeof text - 1] = '\0';
	while ((nl = strchr(text, '\n')) != NULL)  /* one line: a newline would start a key */
		*nl = ' ';
	if (!force && strcmp(text, n->last_status) == 0)
		return 0;
	memcpy(n->last_status, text, sizeof text);
	snprintf(msg, sizeof msg, "STATUS=%s", text);
	return sdnotify_send(n, msg);
}

static void
sdnotify_on_status(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)sdnotify_status_now(arg, 0);
}

int
sdnotify_new(struct event_base *base, struct sdnotify **out)
{
	struct sdnotify *n = calloc(1, sizeof *n);
	const char *path = getenv("NOTIFY_SOCKET");
	int rc;

	if (n == NULL)
		return -ENOMEM;
	if (path != NULL && *path != '\0') {
		n->enabled = 1;
		n->watchdog_usec = sdnotify_watchdog_env();
	}
	n->watchdog_ev = event_new(base, -1, EV_PERSIST, sdnotify_on_watchdog, n);
	n->status_ev = event_new(base, -1, EV_PERSIST, sdnotify_on_status, n);
	if (n->watchdog_ev == NULL || n->status_ev == NULL) {
		rc = -ENOMEM;
		goto fail;
	}
	if (n->watchdog_usec > 0) {
		uint64_t half = n->watchdog_usec / 2;
		struct timeval tv = { (time_t)(half / 1000000), (suseconds_t)(half % 1000000) };
		event_add(n->watchdog_ev, &tv);
		log_info(LOG_MAIN, "systemd watchdog: ping every %" PRIu64 " ms", half / 1000);
		sdnotify_on_watchdog(-1, 0, n);  /* the first ping now, not after half a period */
	}
	*out = n;
	return 0;
fail:
	sdnotify_free(n);
	return rc;
}

void
sdnotify_free(struct sdnotify *n)
{
	if (n == NULL)
		return;
	if (n->watchdog_ev != NULL)
		event_free(n->watchdog_ev);
	if (n->status_ev != NULL)
		event_free(n->status_ev);
	free(n);
}

int
sdnotify_enabled(const struct sdnotify *n)
{
	return n->enabled;
}

uint64_t
sdnotify_watchdog_usec(const struct sdnotify *n)
{
	return n->watchdog_usec;
}

uint64_t
sdnotify_watchdog_pings(const struct sdnotify *n)
{
	return n->pings;
}

int
sdnotify_set_status(struct sdnotify *n, sdnotify_status_fn fn, void *arg, int interval_ms)
{
	event_del(n->status_ev);
	n->status_fn = fn;
	n->status_arg = arg;
	n->last_status[0] = '\0';
	if (fn == NULL)
		return 0;
	if (interval_ms > 0) {
		struct timeval tv = { interval_ms / 1000, (interval_ms % 1000) * 1000 };
		if (event_add(n->status_ev, &tv) != 0)
			return -ENOMEM;
	}
	return sdnotify_status_now(n, 1);
}

int
sdnotify_ready(struct sdnotify *n, const char *status)
{
	char msg[512];

	if (status == NULL)
		return sdnotify_send(n, "READY=1");
	snprintf(msg, sizeof msg, "READY=1\nSTATUS=%s", status);
	return sdnotify_send(n, msg);
}

int
sdnotify_reloading(struct sdnotify *n)
{
	struct timespec ts;
	char msg[96];

	clock_gettime(CLOCK_MONOTONIC, &ts);
	snprintf(msg, sizeof msg, "RELOADING=1\nMONOTONIC_USEC=%llu",
	    (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000);
	return sdnotify_send(n, msg);
}

int
sdnotify_stopping(struct sdnotify *n)
{
	return sdnotify_send(n, "STOPPING=1");
}
