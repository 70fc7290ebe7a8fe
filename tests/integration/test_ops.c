/*
 * test_ops.c — certad as a service: the sd_notify protocol over a real unix datagram socket
 * (READY=1 only once the gRPC port accepts connections, WATCHDOG=1 keeps coming, STOPPING=1 on
 * SIGTERM), Prometheus /metrics (parsed strictly, and by promtool when installed) with counters
 * that move, /healthz and /readyz, grpc.health.v1 SERVING and NOT_SERVING while draining,
 * --check-config, and SIGHUP with a bad configuration keeping the old one.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <regex.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include <grpc/grpc.h>

#include "certa/v1/reasoning.pb-c.h"
#include "grpc/health/v1/health.pb-c.h"
#include "lib/rpc_client.h"
#include "tests/support/certa_client.h"
#include "tests/support/harness.h"
#include "tests/support/itest.h"

struct env {
	struct itest it;             /* first */
	int nsock;                   /* notify socket */
	char nsock_path[600];
	char cfg[600];
};

static int
setup(void **state)
{
	struct env *e;

	*state = e = itest_new(sizeof *e, 120, ITEST_TRACES_PICK);
	if (e != NULL)
		e->nsock = -1;
	return 0;
}

static int
teardown(void **state)
{
	struct env *e = *state;

	if (e == NULL)
		return 0;
	itest_stop(&e->it);
	if (e->nsock >= 0)
		close(e->nsock);
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
	itest_free(&e->it);
	return 0;
}

/* Starts a worker (with a step delay) and certad with a config file; no waiting. */
static void
spawn_certad(struct env *e, const char *delay, const char *config_text)
{
	const char *wextra[] = { "--step-delay", delay, NULL };
	const char *args[] = { "--config", e->cfg, NULL };
	char portfile[600], mportfile[700], state[600], wa[64];

	if (e->it.w == NULL)
		assert_int_equal(harness_start_worker(e->it.dir, harness_traces_dir(), wextra,
		    &e->it.w, &e->it.wport), 0);
	snprintf(e->cfg, sizeof e->cfg, "%s/certad.conf", e->it.dir);
	snprintf(portfile, sizeof portfile, "%s/d.port", e->it.dir);
	snprintf(mportfile, sizeof mportfile, "%s/m.port", e->it.dir);
	snprintf(state, sizeof state, "%s/state", e->it.dir);
	snprintf(wa, sizeof wa, "127.0.0.1:%d", e->it.wport);
	unlink(mportfile);
	assert_int_equal(harness_write_file(e->cfg,
	    "listen = 127.0.0.1:0\nstate_dir = %s\nport_file = %s\n"
	    "auth.anonymous_tenant = default\nadmin.socket =\n"
	    "[metrics]\nport = 0\nport_file = %s\n[workers]\nworker = %s\n"
	    "health_interval = 100ms\n%s", state, portfile, mportfile, wa,
	    config_text != NULL ? config_text : ""), 0);
	/* Removes a stale d.port, too. */
	assert_int_equal(harness_spawn_certad(e->it.dir, args, &e->it.d), 0);
}

static void
wait_certad(struct env *e)
{
	char pf[600];

	if (harness_wait_certad(e->it.dir, e->it.d, &e->it.dport) != 0)
		fail_msg("certad did not start");
	snprintf(pf, sizeof pf, "%s/m.port", e->it.dir);
	assert_int_equal(harness_wait_port_file(pf, 20000, &e->it.mport), 0);
}

/* Receives one notify datagram (NUL-terminated) within timeout_ms; 0 or -ETIMEDOUT. */
static int
notify_recv(struct env *e, char *buf, size_t len, int timeout_ms)
{
	struct pollfd p = { e->nsock, POLLIN, 0 };
	ssize_t n;

	if (poll(&p, 1, timeout_ms) <= 0)
		return -ETIMEDOUT;
	n = recv(e->nsock, buf, len - 1, 0);
	if (n < 0)
		return -errno;
	buf[n] = '\0';
	return 0;
}

static int
tcp_connect_ok(int port)
{
	struct sockaddr_in a;
	int fd = socket(AF_INET, SOCK_STREAM, 0), rc;

	memset(&a, 0, sizeof a);
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	rc = connect(fd, (struct sockaddr *)&a, sizeof a);
	close(fd);
	return rc == 0;
}

/* READY=1 only after the port accepts; WATCHDOG=1 keeps coming; STOPPING=1 on SIGTERM. */
static void
test_sd_notify(void **state)
{
	struct env *e = *state;
	struct sockaddr_un a;
	char buf[1024], pf[600];
	int ready = 0, watchdogs = 0, status_seen = 0, stopping = 0, i, st = 0;

	HARNESS_NEED_TRACES(e);
	e->nsock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(e->nsock >= 0);
	memset(&a, 0, sizeof a);
	a.sun_family = AF_UNIX;
	snprintf(e->nsock_path, sizeof e->nsock_path, "%s/notify", e->it.dir);
	assert_true(strlen(e->nsock_path) < sizeof a.sun_path);
	memcpy(a.sun_path, e->nsock_path, strlen(e->nsock_path) + 1);
	assert_int_equal(bind(e->nsock, (struct sockaddr *)&a, sizeof a), 0);
	setenv("NOTIFY_SOCKET", e->nsock_path, 1);
	setenv("WATCHDOG_USEC", "300000", 1);
	spawn_certad(e, "200", NULL);
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");

	snprintf(pf, sizeof pf, "%s/d.port", e->it.dir);
	for (i = 0; i < 200 && !ready; i++) {
		if (notify_recv(e, buf, sizeof buf, 100) != 0)
			continue;
		if (strstr(buf, "READY=1") != NULL) {
			ready = 1;
			/* At READY the port file exists and the gRPC port accepts connections. */
			assert_int_equal(harness_wait_port_file(pf, 1, &e->it.dport), 0);
			assert_true(tcp_connect_ok(e->it.dport));
			assert_int_equal(certa_client_health(e->it.dport, ""),
			    GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
		}
		watchdogs += strstr(buf, "WATCHDOG=1") != NULL;
		status_seen |= strstr(buf, "STATUS=") != NULL;
	}
	assert_true(ready);
	for (i = 0; i < 30 && watchdogs < 4; i++) {
		if (notify_recv(e, buf, sizeof buf, 200) == 0) {
			watchdogs += strstr(buf, "WATCHDOG=1") != NULL;
			status_seen |= strstr(buf, "STATUS=") != NULL;
		}
	}
	assert_true(watchdogs >= 4);
	assert_true(status_seen);
	assert_int_equal(harness_signal(e->it.d, SIGTERM), 0);
	for (i = 0; i < 50 && !stopping; i++)
		if (notify_recv(e, buf, sizeof buf, 100) == 0)
			stopping = strstr(buf, "STOPPING=1") != NULL;
	assert_true(stopping);
	assert_int_equal(harness_wait_exit(e->it.d, 10000, &st), 0);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* Every sample line must be `name{label="v",...} value` and every family typed. */
static void
check_exposition(const char *text)
{
	regex_t sample, help, type;
	const char *line = text;
	int samples = 0;

	assert_int_equal(regcomp(&sample, "^[a-zA-Z_:][a-zA-Z0-9_:]*"
	    "(\\{([a-zA-Z_][a-zA-Z0-9_]*=\"([^\"\\\\]|\\\\.)*\",?)*\\})? "
	    "(-?[0-9.e+-]+|\\+Inf|NaN)$", REG_EXTENDED | REG_NOSUB), 0);
	assert_int_equal(regcomp(&help, "^# HELP [a-zA-Z_:][a-zA-Z0-9_:]* .*$",
	    REG_EXTENDED | REG_NOSUB), 0);
	assert_int_equal(regcomp(&type, "^# TYPE [a-zA-Z_:][a-zA-Z0-9_:]* "
	    "(counter|gauge|histogram)$", REG_EXTENDED | REG_NOSUB), 0);
	while (*line != '\0') {
		const char *nl = strchr(line, '\n');
		char l[2048];
		size_t n = nl ? (size_t)(nl - line) : strlen(line);
		assert_true(n < sizeof l);
		memcpy(l, line, n);
		l[n] = '\0';
		if (n > 0) {
			if (strncmp(l, "# HELP", 6) == 0)
				assert_int_equal(regexec(&help, l, 0, NULL, 0), 0);
			else if (strncmp(l, "# TYPE", 6) == 0)
				assert_int_equal(regexec(&type, l, 0, NULL, 0), 0);
			else {
				if (regexec(&sample, l, 0, NULL, 0) != 0)
					fail_msg("bad exposition line: %s", l);
				samples++;
			}
		}
		line += n + (nl ? 1 : 0);
	}
	assert_true(samples > 5);
	regfree(&sample);
	regfree(&help);
	regfree(&type);
}

/* Value of a sample line "SERIES VALUE" (not a HELP/TYPE line); -1 when absent. */
static double
metric_value(const char *text, const char *series)
{
	const char *p = text;
	size_t n = strlen(series);

	while ((p = strstr(p, series)) != NULL) {
		if ((p == text || p[-1] == '\n') && p[n] == ' ')
			return atof(p + n + 1);
		p += n;
	}
	return -1;
}

/* /metrics parses and moves; /healthz, /readyz; Health NOT_SERVING while draining. */
static void
test_metrics_and_health(void **state)
{
	struct env *e = *state;
	static char body[1 << 20];
	struct rpc_channel *ch;
	struct rpc_stream *s;
	Certa__V1__ProgramSpec spec = CERTA__V1__PROGRAM_SPEC__INIT;
	struct certa_client_events ev;
	char path[700];
	double before, after;
	int st = 0, i, code;

	HARNESS_NEED_TRACES(e);
	spawn_certad(e, "0", NULL);
	wait_certad(e);
	for (i = 0; i < 100 && harness_http_get(e->it.mport, "/readyz", body, sizeof body) != 200;
	    i++)
		usleep(50000);
	assert_int_equal(harness_http_get(e->it.mport, "/readyz", body, sizeof body), 200);
	assert_int_equal(harness_http_get(e->it.mport, "/healthz", body, sizeof body), 200);
	assert_int_equal(harness_http_get(e->it.mport, "/nope", body, sizeof body), 404);
	assert_int_equal(harness_http_get(e->it.mport, "/metrics", body, sizeof body), 200);
	check_exposition(body);
	before = metric_value(body, "certa_programs_submitted_total{tenant=\"default\"}");
	assert_true(before <= 0);
	{
		char series[128];
		snprintf(series, sizeof series, "certa_worker_up{worker=\"127.0.0.1:%d\"}",
		    e->it.wport);
		assert_true(metric_value(body, series) == 1);
	}

	assert_int_equal(certa_client_channel(e->it.dport, &ch), 0);
	spec.problem = (char *)e->it.tr->problem;
	assert_int_equal(certa_client_submit(ch, &spec, NULL, 60000, &s), 0);
	memset(&ev, 0, sizeof ev);
	certa_client_events_read(s, 30000, 0, &ev);
	assert_int_equal(ev.status, GRPC_STATUS_OK);
	certa_client_events_free(&ev);
	assert_int_equal(harness_http_get(e->it.mport, "/metrics", body, sizeof body), 200);
	check_exposition(body);
	after = metric_value(body, "certa_programs_submitted_total{tenant=\"default\"}");
	assert_true(after == 1);
	assert_true(metric_value(body, "certa_tokens_generated_total{tenant=\"default\"}") > 0);
	assert_true(metric_value(body, "certa_step_duration_seconds_count") > 0);
	assert_true(metric_value(body, "certa_store_map_used_bytes") > 0);
	/* The real parser, when installed. */
	if (access("/usr/bin/promtool", X_OK) == 0) {
		snprintf(path, sizeof path, "%s/metrics.txt", e->it.dir);
		assert_int_equal(harness_write_file(path, "%s", body), 0);
		code = harness_sh("/usr/bin/promtool check metrics < %s >/dev/null 2>&1", path);
		/* promtool exits 3 for lint warnings only (e.g. missing unit suffixes); 1 for
		 * parse errors; harness_sh() is -1 when it did not exit. */
		assert_true(code >= 0 && code != 1);
	} else {
		print_message("promtool not installed: checked with the built-in parser only\n");
	}
	rpc_channel_free(ch);
	(void)st;
}

/* While draining (a step in flight), Health answers NOT_SERVING and /readyz 503. */
static void
test_health_while_draining(void **state)
{
	struct env *e = *state;
	static char body[1 << 16];
	struct rpc_channel *ch;
	struct rpc_stream *s;
	Certa__V1__ProgramSpec spec = CERTA__V1__PROGRAM_SPEC__INIT;
	Certa__V1__ProgramEvent *ev;
	struct certa_client_events rest;
	int st = 0, i;

	HARNESS_NEED_TRACES(e);
	spawn_certad(e, "1500", NULL);
	wait_certad(e);
	for (i = 0; i < 100 && certa_client_health(e->it.dport, "") !=
	    GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING; i++)
		usleep(50000);
	assert_int_equal(certa_client_health(e->it.dport, "certa.v1.Reasoning"),
	    GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
	assert_int_equal(certa_client_channel(e->it.dport, &ch), 0);
	spec.problem = (char *)e->it.tr->problem;
	assert_int_equal(certa_client_submit(ch, &spec, NULL, 60000, &s), 0);
	assert_int_equal(rpc_sync_stream_next(s, 10000, (ProtobufCMessage **)&ev), 1);
	protobuf_c_message_free_unpacked(&ev->base, NULL);
	usleep(200000);  /* the first step (1.5 s) is now in flight */
	assert_int_equal(harness_signal(e->it.d, SIGTERM), 0);
	usleep(200000);
	assert_int_equal(certa_client_health(e->it.dport, ""),
	    GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING);
	assert_int_equal(harness_http_get(e->it.mport, "/readyz", body, sizeof body), 503);
	memset(&rest, 0, sizeof rest);
	certa_client_events_read(s, 10000, 0, &rest);
	assert_int_equal(rest.status, GRPC_STATUS_UNAVAILABLE);
	certa_client_events_free(&rest);
	assert_int_equal(harness_wait_exit(e->it.d, 10000, &st), 0);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	rpc_channel_free(ch);
}

/* --check-config and SIGHUP: a bad new file is reported and the old configuration stays. */
static void
test_config_check_and_reload(void **state)
{
	struct env *e = *state;
	char *bin = harness_bin("certad");
	char cmd[1600], log[700], *text = NULL;
	FILE *f;
	int rc, i, reloaded = 0;

	HARNESS_NEED_TRACES(e);
	spawn_certad(e, "0", NULL);
	wait_certad(e);
	rc = harness_sh("%s --check-config --config %s >/dev/null 2>&1", bin, e->cfg);
	assert_true(rc == 0);  /* it exited, with 0 */

	/* Break the file: an out-of-range value on a known line. */
	f = fopen(e->cfg, "a");
	assert_non_null(f);
	fputs("step_timeout = 999h\n", f);
	fclose(f);
	snprintf(cmd, sizeof cmd, "%s --check-config --config %s 2>&1", bin, e->cfg);
	{
		FILE *p = popen(cmd, "r");
		char out[1024] = "";
		size_t n = fread(out, 1, sizeof out - 1, p);
		out[n] = '\0';
		rc = pclose(p);
		assert_true(WIFEXITED(rc) && WEXITSTATUS(rc) == 2);
		assert_non_null(strstr(out, "certad.conf:"));
		assert_non_null(strstr(out, "out of range"));
	}
	assert_int_equal(harness_signal(e->it.d, SIGHUP), 0);
	snprintf(log, sizeof log, "%s/d.log", e->it.dir);
	for (i = 0; i < 100 && !reloaded; i++) {
		usleep(50000);
		free(text);
		text = NULL;
		if (harness_read_file(log, &text) == 0)
			reloaded = strstr(text, "reload failed, keeping the running configuration") !=
			    NULL;
	}
	assert_true(reloaded);
	assert_true(harness_running(e->it.d));
	assert_true(tcp_connect_ok(e->it.dport));
	assert_int_equal(certa_client_health(e->it.dport, ""),
	    GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
	free(text);
	free(bin);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_sd_notify, setup, teardown),
		cmocka_unit_test_setup_teardown(test_metrics_and_health, setup, teardown),
		cmocka_unit_test_setup_teardown(test_health_while_draining, setup, teardown),
		cmocka_unit_test_setup_teardown(test_config_check_and_reload, setup, teardown),
	};
	int rc;

	grpc_init();
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	grpc_shutdown();
	return rc;
}
