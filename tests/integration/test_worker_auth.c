/*
 * test_worker_auth.c — workers accept only certad: mTLS (a client certificate signed by the
 * worker's tls.client_ca, optionally with an allowed CN) and/or the shared token
 * (--token-file, certad's workers.token_file).  Real processes: certa-worker and certad;
 * certificates are made with the openssl CLI at test time.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>

#include "certa/v1/reasoning.pb-c.h"
#include "certa/v1/worker.pb-c.h"
#include "grpc/health/v1/health.pb-c.h"
#include "lib/rpc_client.h"
#include "tests/support/certa_client.h"
#include "tests/support/harness.h"
#include "tests/support/itest.h"

#define TOKEN "wk-3f9c2a7d51e84b06a1c9"
#define WRONG_TOKEN "wk-00000000000000000000"
/* certad with the worker the test started, no admin socket, anonymous callers. */
#define START_FLAGS (ITEST_NO_WORKER | ITEST_NO_ADMIN_SOCKET | ITEST_ANONYMOUS)

struct env {
	struct itest it;             /* first */
	unsigned nspawned;
};

/* CA "good" signs the worker's server certificate (localhost, 127.0.0.1) and client
 * certificates "certad" and "intruder"; CA "other" signs another "certad". */
static int
make_certs(const char *d)
{
	return harness_sh("cd %s && "
	    "for ca in good other; do openssl req -x509 -newkey rsa:2048 -nodes -keyout $ca-ca.key "
	    "-out $ca-ca.pem -days 2 -subj /CN=certa-test-$ca-ca >/dev/null 2>&1 || exit 1; done && "
	    "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > san.ext && "
	    "openssl req -newkey rsa:2048 -nodes -keyout worker.key -out worker.csr "
	    "-subj /CN=worker >/dev/null 2>&1 && "
	    "openssl x509 -req -in worker.csr -CA good-ca.pem -CAkey good-ca.key -CAcreateserial "
	    "-out worker.pem -days 2 -extfile san.ext >/dev/null 2>&1 && "
	    "for c in good:certad good:intruder other:certad; do ca=${c%%:*}; cn=${c#*:}; "
	    "openssl req -newkey rsa:2048 -nodes -keyout $ca-$cn.key -out $ca-$cn.csr -subj /CN=$cn "
	    ">/dev/null 2>&1 && openssl x509 -req -in $ca-$cn.csr -CA $ca-ca.pem -CAkey $ca-ca.key "
	    "-CAcreateserial -out $ca-$cn.pem -days 2 >/dev/null 2>&1 || exit 1; done && "
	    "printf '%%s\\n' " TOKEN " > worker.token && "
	    "printf '%%s\\n' " WRONG_TOKEN " > wrong.token", d);
}

static int
setup(void **state)
{
	struct env *e;

	*state = NULL;
	e = itest_new(sizeof *e, 120, ITEST_TRACES_PICK);
	if (e == NULL)
		return 0;
	if (access("/usr/bin/openssl", X_OK) != 0 || make_certs(e->it.dir) != 0) {
		print_message("openssl cannot make certificates\n");
		itest_free(&e->it);
		return 0;
	}
	*state = e;
	return 0;
}

#define NEED_ENV(e) do { \
	if ((e) == NULL) { \
		print_message("skipped: needs CERTA_TRACES and the openssl command\n"); \
		skip(); \
	} \
} while (0)

/* Starts certa-worker with args (after the fixed ones) and waits for its port file only:
 * harness_start_worker's readiness probe has no credentials. */
static struct harness_proc *
spawn_worker(struct env *e, const char *listen, const char *const args[], int *port)
{
	char pf[600], log[600], *bin = harness_bin("certa-worker");
	const char *argv[32] = { bin, "--listen", listen, "--port-file", pf, "--engine", "replay",
	    "--traces", harness_traces_dir() };
	struct harness_proc *p;
	size_t k = 9, i;

	snprintf(pf, sizeof pf, "%s/aw%u.port", e->it.dir, e->nspawned);
	snprintf(log, sizeof log, "%s/aw%u.log", e->it.dir, e->nspawned++);
	for (i = 0; args != NULL && args[i] != NULL && k < 31; i++)
		argv[k++] = args[i];
	argv[k] = NULL;
	assert_int_equal(harness_spawn(&p, log, (char *const *)argv), 0);
	free(bin);
	if (harness_wait_port_file(pf, 20000, port) != 0) {
		harness_dump_log(p);
		fail_msg("certa-worker did not start");
	}
	return p;
}

/* "DIR/NAME" in a static buffer ring (enough for one argument list). */
static const char *
path(const struct env *e, const char *name)
{
	static char ring[12][600];
	static unsigned i;
	char *s = ring[i++ % 12];

	snprintf(s, sizeof ring[0], "%s/%s", e->it.dir, name);
	return s;
}

/* A "key=DIR/file" --set value in the ring of path(). */
static const char *
set_path(const struct env *e, const char *key, const char *name)
{
	static char ring[8][700];
	static unsigned i;
	char *s = ring[i++ % 8];

	snprintf(s, sizeof ring[0], "%s=%s", key, path(e, name));
	return s;
}

/* Submits the test problem to certad and reads it to the end: the finished status. */
static void
run_program(struct env *e)
{
	Certa__V1__ProgramSpec spec = CERTA__V1__PROGRAM_SPEC__INIT;
	struct certa_client_events ev;
	struct rpc_channel *ch;

	assert_int_equal(certa_client_channel(e->it.dport, &ch), 0);
	spec.problem = (char *)e->it.tr->problem;
	spec.algorithm = CERTA__V1__ALGORITHM__ALGORITHM_COT;
	assert_int_equal(itest_run(ch, &spec, NULL, &ev), 0);
	if (ev.finished == NULL || ev.status != GRPC_STATUS_OK) {
		harness_dump_log(e->it.d);
		fail_msg("program did not finish: status %d %s", ev.status, ev.details);
	}
	assert_true(ev.progress > 0);
	assert_non_null(ev.finished->result);
	assert_string_not_equal(ev.finished->result->answer, "");
	certa_client_events_free(&ev);
	rpc_channel_free(ch);
}

/* A channel to the worker: TLS with ca and, when prefix is set, client cert PREFIX.pem/.key;
 * plaintext when ca is NULL. */
static struct rpc_channel *
worker_channel(const struct env *e, const char *ca, const char *prefix)
{
	grpc_ssl_pem_key_cert_pair pair;
	grpc_channel_credentials *creds;
	struct rpc_channel *ch;
	char target[64], name[64], *ca_pem = NULL, *crt = NULL, *key = NULL;

	snprintf(target, sizeof target, "127.0.0.1:%d", e->it.wport);
	if (ca == NULL) {
		assert_int_equal(rpc_channel_new(target, &ch), 0);
		return ch;
	}
	assert_int_equal(harness_read_file(path(e, ca), &ca_pem), 0);
	if (prefix != NULL) {
		snprintf(name, sizeof name, "%s.pem", prefix);
		assert_int_equal(harness_read_file(path(e, name), &crt), 0);
		snprintf(name, sizeof name, "%s.key", prefix);
		assert_int_equal(harness_read_file(path(e, name), &key), 0);
		pair.private_key = key;
		pair.cert_chain = crt;
	}
	creds = grpc_ssl_credentials_create(ca_pem, prefix != NULL ? &pair : NULL, NULL, NULL);
	assert_int_equal(rpc_channel_new_creds(target, creds, &ch), 0);
	grpc_channel_credentials_release(creds);
	free(ca_pem);
	free(crt);
	free(key);
	return ch;
}

enum wcall { W_INFO, W_STEP, W_RELEASE };

/* One Worker call with an optional bearer token; its status (details into msg). */
static grpc_status_code
worker_call(struct rpc_channel *ch, enum wcall which, const char *token, char *msg,
    size_t len)
{
	Certa__V1__InfoRequest info = CERTA__V1__INFO_REQUEST__INIT;
	Certa__V1__StepRequest step = CERTA__V1__STEP_REQUEST__INIT;
	Certa__V1__ReleaseRequest rel = CERTA__V1__RELEASE_REQUEST__INIT;
	char *ids[1] = { (char *)"p-nothing/0000" }, bearer[128], *d = NULL;
	struct rpc_metadata md = { "authorization", bearer };
	ProtobufCMessage *reply = NULL;
	grpc_status_code st = GRPC_STATUS_UNKNOWN;
	static const char *const paths[] = { "/certa.v1.Worker/Info", "/certa.v1.Worker/Step",
	    "/certa.v1.Worker/Release" };
	const ProtobufCMessageDescriptor *replies[] = { &certa__v1__info_reply__descriptor,
	    &certa__v1__step_reply__descriptor, &certa__v1__release_reply__descriptor };
	const ProtobufCMessage *reqs[] = { &info.base, &step.base, &rel.base };

	rel.n_request_ids = 1;
	rel.request_ids = ids;
	snprintf(bearer, sizeof bearer, "Bearer %s", token ? token : "");
	assert_int_equal(rpc_sync_unary(ch, paths[which], reqs[which], replies[which], 10000,
	    token != NULL ? &md : NULL, token != NULL ? 1 : 0, &reply, &st, &d), 0);
	if (msg != NULL)
		snprintf(msg, len, "%s", d ? d : "");
	free(d);
	if (reply != NULL)
		protobuf_c_message_free_unpacked(reply, NULL);
	return st;
}

/* Waits up to ms for the file at p to contain needle. */
static int
log_has(const char *p, const char *needle, int ms)
{
	char *s = NULL;
	int found = 0;

	for (; ms > 0 && !found; ms -= 50) {
		if (harness_read_file(p, &s) == 0) {
			found = strstr(s, needle) != NULL;
			free(s);
		}
		if (!found)
			usleep(50000);
	}
	return found;
}

/* certad and the worker over mTLS: a program finishes; clients without the right
 * certificate never reach the Worker service. */
static void
test_mtls_program_finishes_and_strangers_are_refused(void **state)
{
	struct env *e = *state;
	struct rpc_channel *ch;
	char msg[512];

	NEED_ENV(e);
	{
		const char *args[] = { "--tls-cert", path(e, "worker.pem"), "--tls-key",
		    path(e, "worker.key"), "--tls-client-ca", path(e, "good-ca.pem"), "--set",
		    "tls.allowed_cn=certad", NULL };
		e->it.w = spawn_worker(e, "127.0.0.1:0", args, &e->it.wport);
	}
	{
		const char *sets[] = { set_path(e, "workers.tls_ca", "good-ca.pem"),
		    set_path(e, "workers.tls_cert", "good-certad.pem"),
		    set_path(e, "workers.tls_key", "good-certad.key"), NULL };
		itest_start(&e->it, NULL, START_FLAGS, sets);
	}
	run_program(e);

	/* The same certificate certad holds works directly. */
	ch = worker_channel(e, "good-ca.pem", "good-certad");
	assert_int_equal(worker_call(ch, W_INFO, NULL, msg, sizeof msg), GRPC_STATUS_OK);
	rpc_channel_free(ch);
	/* No client certificate, or plaintext: the handshake fails. */
	ch = worker_channel(e, "good-ca.pem", NULL);
	assert_int_equal(worker_call(ch, W_INFO, NULL, msg, sizeof msg), GRPC_STATUS_UNAVAILABLE);
	assert_int_equal(worker_call(ch, W_STEP, NULL, msg, sizeof msg), GRPC_STATUS_UNAVAILABLE);
	rpc_channel_free(ch);
	ch = worker_channel(e, NULL, NULL);
	assert_int_equal(worker_call(ch, W_RELEASE, NULL, msg, sizeof msg),
	    GRPC_STATUS_UNAVAILABLE);
	rpc_channel_free(ch);
	/* CN "certad", but signed by another CA (the client trusts the worker's CA). */
	ch = worker_channel(e, "good-ca.pem", "other-certad");
	assert_int_equal(worker_call(ch, W_INFO, NULL, msg, sizeof msg), GRPC_STATUS_UNAVAILABLE);
	assert_int_equal(worker_call(ch, W_STEP, NULL, msg, sizeof msg), GRPC_STATUS_UNAVAILABLE);
	rpc_channel_free(ch);
	/* Signed by the right CA, but its CN is not on tls.allowed_cn. */
	ch = worker_channel(e, "good-ca.pem", "good-intruder");
	assert_int_equal(worker_call(ch, W_INFO, NULL, msg, sizeof msg),
	    GRPC_STATUS_PERMISSION_DENIED);
	assert_non_null(strstr(msg, "tls.allowed_cn"));
	assert_int_equal(worker_call(ch, W_RELEASE, NULL, msg, sizeof msg),
	    GRPC_STATUS_PERMISSION_DENIED);
	rpc_channel_free(ch);
}

/* With --token-file every Worker method needs the token; health stays open. */
static void
test_token_required_on_step_release_info(void **state)
{
	struct env *e = *state;
	static const enum wcall calls[] = { W_INFO, W_STEP, W_RELEASE };
	struct rpc_channel *ch;
	char msg[512];
	size_t i;

	NEED_ENV(e);
	{
		const char *args[] = { "--token-file", path(e, "worker.token"), NULL };
		e->it.w = spawn_worker(e, "127.0.0.1:0", args, &e->it.wport);
	}
	ch = worker_channel(e, NULL, NULL);
	for (i = 0; i < sizeof calls / sizeof calls[0]; i++) {
		assert_int_equal(worker_call(ch, calls[i], NULL, msg, sizeof msg),
		    GRPC_STATUS_UNAUTHENTICATED);
		assert_non_null(strstr(msg, "worker token"));
		assert_int_equal(worker_call(ch, calls[i], WRONG_TOKEN, msg, sizeof msg),
		    GRPC_STATUS_UNAUTHENTICATED);
		/* A prefix of the token, or the token with a suffix, is not the token. */
		assert_int_equal(worker_call(ch, calls[i], "wk-3f9c2a7d51e84b06a1c", msg,
		    sizeof msg), GRPC_STATUS_UNAUTHENTICATED);
		assert_int_equal(worker_call(ch, calls[i], TOKEN "0", msg, sizeof msg),
		    GRPC_STATUS_UNAUTHENTICATED);
	}
	assert_int_equal(worker_call(ch, W_INFO, TOKEN, msg, sizeof msg), GRPC_STATUS_OK);
	assert_int_equal(worker_call(ch, W_RELEASE, TOKEN, msg, sizeof msg), GRPC_STATUS_OK);
	/* An empty Step gets past the authorizer (whatever the worker thinks of it). */
	assert_int_not_equal(worker_call(ch, W_STEP, TOKEN, msg, sizeof msg),
	    GRPC_STATUS_UNAUTHENTICATED);
	rpc_channel_free(ch);
	/* grpc.health.v1 needs no token (documented). */
	assert_int_equal(certa_client_health(e->it.wport, "certa.v1.Worker"),
	    GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);

	{
		const char *sets[] = { set_path(e, "workers.token_file", "worker.token"), NULL };
		itest_start(&e->it, NULL, START_FLAGS, sets);
	}
	run_program(e);
}

/* certad with the wrong token: the worker is down, and the log says why in plain words. */
static void
test_wrong_token_marks_worker_down(void **state)
{
	struct env *e = *state;
	char want[160];

	NEED_ENV(e);
	{
		const char *args[] = { "--token-file", path(e, "worker.token"), NULL };
		e->it.w = spawn_worker(e, "127.0.0.1:0", args, &e->it.wport);
	}
	{
		const char *sets[] = { set_path(e, "workers.token_file", "wrong.token"), NULL };
		itest_start(&e->it, NULL, START_FLAGS, sets);
	}
	snprintf(want, sizeof want, "worker 127.0.0.1:%d refuses certad's credentials "
	    "(UNAUTHENTICATED", e->it.wport);
	if (!log_has(path(e, "d.log"), want, 10000)) {
		harness_dump_log(e->it.d);
		fail_msg("no log line '%s'", want);
	}
	snprintf(want, sizeof want, "worker 127.0.0.1:%d unknown -> down", e->it.wport);
	assert_true(log_has(path(e, "d.log"), want, 5000));
	/* The worker logged the refusal too. */
	assert_true(log_has(harness_log_path(e->it.w), "missing or wrong worker token", 5000));
}

/* A worker with no credential configured warns when it listens beyond loopback. */
static void
test_open_worker_warns_beyond_loopback(void **state)
{
	struct env *e = *state;
	struct harness_proc *lo;
	int port;

	NEED_ENV(e);
	e->it.w = spawn_worker(e, "0.0.0.0:0", NULL, &e->it.wport);
	assert_true(log_has(harness_log_path(e->it.w), "without authentication", 5000));
	lo = spawn_worker(e, "127.0.0.1:0", NULL, &port);
	assert_true(log_has(harness_log_path(lo), "serving on", 5000));
	assert_false(log_has(harness_log_path(lo), "without authentication", 100));
	harness_proc_free(lo);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_mtls_program_finishes_and_strangers_are_refused,
		    setup, itest_teardown),
		cmocka_unit_test_setup_teardown(test_token_required_on_step_release_info, setup,
		    itest_teardown),
		cmocka_unit_test_setup_teardown(test_wrong_token_marks_worker_down, setup,
		    itest_teardown),
		cmocka_unit_test_setup_teardown(test_open_worker_warns_beyond_loopback, setup,
		    itest_teardown),
	};
	int rc;

	grpc_init();
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	grpc_shutdown();
	return rc;
}
