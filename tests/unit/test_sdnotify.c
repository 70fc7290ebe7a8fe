/* test_sdnotify.c — the timers of lib/sdnotify over libsystemd's sd_notify, for real: a unix
 * datagram socket plays systemd, NOTIFY_SOCKET/WATCHDOG_USEC/WATCHDOG_PID are set, the loop
 * runs, datagrams are read back. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <cmocka.h>
#include <event2/event.h>

#include "lib/log.h"
#include "lib/sdnotify.h"

struct box {
	int fd;                  /* the "systemd" end */
	struct event *ev;        /* reads datagrams while the loop runs */
	char (*msgs)[512];
	int nmsgs, maxmsgs;
	char path[108];
	char env[120];           /* NOTIFY_SOCKET value */
};

/* Binds a datagram socket; abstract: an "@name" in the abstract namespace. */
static void
box_open(struct box *b, int abstract)
{
	struct sockaddr_un sa;
	socklen_t len;

	memset(b, 0, sizeof *b);
	memset(&sa, 0, sizeof sa);
	sa.sun_family = AF_UNIX;
	b->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(b->fd >= 0);
	if (abstract) {
		snprintf(b->env, sizeof b->env, "@certa-test-notify-%d", (int)getpid());
		memcpy(sa.sun_path + 1, b->env + 1, strlen(b->env) - 1);
		len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(b->env));
	} else {
		snprintf(b->path, sizeof b->path, "/tmp/certa-notify-%d.sock", (int)getpid());
		unlink(b->path);
		snprintf(sa.sun_path, sizeof sa.sun_path, "%s", b->path);
		snprintf(b->env, sizeof b->env, "%s", b->path);
		len = sizeof sa;
	}
	assert_int_equal(bind(b->fd, (struct sockaddr *)&sa, len), 0);
	assert_int_equal(setenv("NOTIFY_SOCKET", b->env, 1), 0);
}

static void
box_close(struct box *b)
{
	if (b->ev != NULL)
		event_free(b->ev);
	close(b->fd);
	if (b->path[0] != '\0')
		unlink(b->path);
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
}

/* Reads every queued datagram into msgs (NUL-terminated), returns how many. */
static int
box_drain(struct box *b, char msgs[][512], int max)
{
	int n = 0;
	ssize_t r;

	while (n < max) {
		r = recv(b->fd, msgs[n], 511, MSG_DONTWAIT);
		if (r < 0) {
			assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
			break;
		}
		msgs[n][r] = '\0';
		n++;
	}
	return n;
}

/* Like systemd, read datagrams as they come: the kernel queues only a few (max_dgram_qlen). */
static void
box_on_read(evutil_socket_t fd, short what, void *arg)
{
	struct box *b = arg;

	(void)fd;
	(void)what;
	if (b->nmsgs < b->maxmsgs)
		b->nmsgs += box_drain(b, b->msgs + b->nmsgs, b->maxmsgs - b->nmsgs);
}

static void
box_listen(struct box *b, struct event_base *base, char msgs[][512], int max)
{
	b->msgs = msgs;
	b->maxmsgs = max;
	b->nmsgs = 0;
	if (b->ev == NULL)
		b->ev = event_new(base, b->fd, EV_READ | EV_PERSIST, box_on_read, b);
	event_add(b->ev, NULL);
}

static void
run_loop(struct event_base *base, int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
}

static int status_calls;

static void
status_fn(char *buf, size_t len, void *arg)
{
	(void)arg;
	status_calls++;
	/* Changes every other call, and carries a newline that must not reach the wire. */
	snprintf(buf, len, "programs running=%d\nqueued=0", status_calls / 2);
}

/* WATCHDOG=1 keeps coming at half the period; STATUS= arrives and repeats when it changes. */
static void
test_watchdog_and_status(void **state)
{
	static char msgs[256][512];
	struct event_base *base = event_base_new();
	struct sdnotify *n;
	struct box b;
	char pid[32];
	int i, count, pings = 0, statuses = 0, other = 0;

	(void)state;
	box_open(&b, 0);
	snprintf(pid, sizeof pid, "%d", (int)getpid());
	setenv("WATCHDOG_USEC", "100000", 1);  /* 100 ms: a ping every 50 ms */
	setenv("WATCHDOG_PID", pid, 1);
	assert_int_equal(sdnotify_new(base, &n), 0);
	assert_true(sdnotify_enabled(n));
	assert_int_equal(sdnotify_watchdog_usec(n), 100000);
	status_calls = 0;
	assert_int_equal(sdnotify_set_status(n, status_fn, NULL, 100), 0);
	box_listen(&b, base, msgs, 256);
	assert_int_equal(sdnotify_ready(n, "serving on port 1"), 0);
	run_loop(base, 600);
	box_on_read(b.fd, EV_READ, &b);   /* what came after the loop's last turn */
	count = b.nmsgs;
	for (i = 0; i < count; i++) {
		if (strcmp(msgs[i], "WATCHDOG=1") == 0)
			pings++;
		else if (strncmp(msgs[i], "STATUS=programs running=", 24) == 0) {
			statuses++;
			assert_null(strchr(msgs[i], '\n'));
			assert_non_null(strstr(msgs[i], " queued=0"));
		} else
			other++;
	}
	/* 600 ms / 50 ms = 12 pings plus the first one; allow for a loaded machine. */
	assert_true(pings >= 6);
	assert_true(pings <= 14);
	assert_int_equal((uint64_t)pings, sdnotify_watchdog_pings(n));
	/* Status every 100 ms, sent only when changed (every other call): about 3, first forced. */
	assert_true(statuses >= 2);
	assert_true(statuses < status_calls);
	assert_int_equal(other, 1);   /* READY=1\nSTATUS=... */
	for (i = 0; i < count; i++)
		if (strncmp(msgs[i], "READY=1", 7) == 0)
			assert_string_equal(msgs[i], "READY=1\nSTATUS=serving on port 1");

	/* Pings continue after STOPPING=1 (a drain can take a while). */
	assert_int_equal(sdnotify_stopping(n), 0);
	assert_int_equal(sdnotify_set_status(n, NULL, NULL, 0), 0);
	box_listen(&b, base, msgs, 256);
	run_loop(base, 200);
	box_on_read(b.fd, EV_READ, &b);
	count = b.nmsgs;
	assert_true(count >= 3);
	assert_string_equal(msgs[0], "STOPPING=1");
	for (i = 1; i < count; i++)
		assert_string_equal(msgs[i], "WATCHDOG=1");

	assert_int_equal(sdnotify_reloading(n), 0);
	count = box_drain(&b, msgs, 256);
	assert_int_equal(count, 1);
	assert_int_equal(strncmp(msgs[0], "RELOADING=1\nMONOTONIC_USEC=", 27), 0);

	sdnotify_free(n);
	box_close(&b);
	event_base_free(base);
}

/* WATCHDOG_PID naming another process (a child of the service): no watchdog, but
 * notifications still work; an abstract socket name works too. */
static void
test_watchdog_other_pid_abstract(void **state)
{
	static char msgs[16][512];
	struct event_base *base = event_base_new();
	struct sdnotify *n;
	struct box b;
	char pid[32];

	(void)state;
	box_open(&b, 1);
	snprintf(pid, sizeof pid, "%d", (int)getpid() + 1);
	setenv("WATCHDOG_USEC", "100000", 1);
	setenv("WATCHDOG_PID", pid, 1);
	assert_int_equal(sdnotify_new(base, &n), 0);
	assert_int_equal(sdnotify_watchdog_usec(n), 0);
	run_loop(base, 150);
	assert_int_equal(box_drain(&b, msgs, 16), 0);
	assert_int_equal(sdnotify_ready(n, NULL), 0);
	assert_int_equal(box_drain(&b, msgs, 16), 1);
	assert_string_equal(msgs[0], "READY=1");
	sdnotify_free(n);
	box_close(&b);

	/* Bad values: no watchdog. */
	box_open(&b, 0);
	setenv("WATCHDOG_USEC", "12x", 1);
	assert_int_equal(sdnotify_new(base, &n), 0);
	assert_int_equal(sdnotify_watchdog_usec(n), 0);
	sdnotify_free(n);
	box_close(&b);
	event_base_free(base);
}

/* Not under systemd: everything is a harmless no-op; a bad NOTIFY_SOCKET (libsystemd parses it)
 * fails the sends with its error, not sdnotify_new. */
static void
test_not_under_systemd(void **state)
{
	struct event_base *base = event_base_new();
	struct sdnotify *n = NULL;

	(void)state;
	unsetenv("NOTIFY_SOCKET");
	setenv("WATCHDOG_USEC", "100000", 1);  /* ignored without a socket */
	assert_int_equal(sdnotify_new(base, &n), 0);
	assert_false(sdnotify_enabled(n));
	assert_int_equal(sdnotify_watchdog_usec(n), 0);
	assert_int_equal(sdnotify_ready(n, "x"), 0);
	assert_int_equal(sdnotify_stopping(n), 0);
	assert_int_equal(sdnotify_set_status(n, status_fn, NULL, 50), 0);
	run_loop(base, 120);
	sdnotify_free(n);
	unsetenv("WATCHDOG_USEC");

	setenv("NOTIFY_SOCKET", "relative/path", 1);
	assert_int_equal(sdnotify_new(base, &n), 0);
	assert_true(sdnotify_enabled(n));
	assert_int_equal(sdnotify_ready(n, NULL), -EINVAL);
	assert_int_equal(sdnotify_set_status(n, status_fn, NULL, 0), -EINVAL);
	sdnotify_free(n);
	/* Nobody listening on the path: the send fails with an error, once logged. */
	setenv("NOTIFY_SOCKET", "/nonexistent/certa/notify", 1);
	assert_int_equal(sdnotify_new(base, &n), 0);
	assert_int_equal(sdnotify_ready(n, NULL), -ENOENT);
	sdnotify_free(n);
	unsetenv("NOTIFY_SOCKET");
	event_base_free(base);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_watchdog_and_status),
		cmocka_unit_test(test_watchdog_other_pid_abstract),
		cmocka_unit_test(test_not_under_systemd),
	};

	log_init("test_sdnotify", LOG_FORMAT_PLAIN, LOG_LVL_ERR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
