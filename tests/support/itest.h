/*
 * itest.h — the scaffolding integration tests share: a fixture holding a replay worker, certad
 * and channels to it, started and torn down in one place; unary calls that report status and
 * details; submitting a program and reading its stream to the end.
 *
 * Unlike the rest of tests/support these functions assert (cmocka): a failure fails the
 * running test.  The object is linked into the integration tests only (not the benches, which
 * have no cmocka).
 *
 * A test whose fixture needs more fields declares `struct env { struct itest it; ... }` with
 * the struct itest first, allocates it with itest_new(sizeof(struct env), ...) and releases it
 * with itest_free(&e->it) after its own cleanup.
 *
 * Threads: main thread only.
 */
#ifndef CERTA_TESTS_SUPPORT_ITEST_H
#define CERTA_TESTS_SUPPORT_ITEST_H

#include <stddef.h>

#include "certa/v1/reasoning.pb-c.h"
#include "certa/v1/worker.pb-c.h"
#include "lib/rpc_client.h"
#include "tests/support/certa_client.h"

/* The deadline of itest_call(). */
#define ITEST_RPC_MS 10000

/* The Admin token itest_start(ITEST_ADMIN_TOKEN) writes to DIR/admin.token. */
#define ITEST_ADMIN_TOKEN "s3cret-admin-token-0123456789"

/* What a fixture needs of the recorded traces (itest_new). */
enum itest_traces {
	ITEST_TRACES_NONE,          /* runs without them; no trace picked */
	ITEST_TRACES_NEED,          /* skipped without them; no trace picked */
	ITEST_TRACES_PICK,          /* skipped without them; tr is harness_trace_pick()'s */
};

/* What itest_start() starts and turns on (flags, or'ed). */
enum {
	ITEST_NO_WORKER = 1 << 0,   /* start none: certad gets the one in w/wport, if any */
	ITEST_ADMIN = 1 << 1,       /* admin.socket=DIR/admin.sock; adm is a channel to it */
	ITEST_ADMIN_TOKEN_FILE = 1 << 2, /* admin.token_file holding ITEST_ADMIN_TOKEN */
	ITEST_ANONYMOUS = 1 << 3,   /* auth.anonymous_tenant=default */
	ITEST_METRICS = 1 << 4,     /* metrics.port_file=DIR/m.port; mport is the port */
	ITEST_SETTLE = 1 << 5,      /* wait 300 ms: the first worker health check */
	ITEST_NO_ADMIN_SOCKET = 1 << 6, /* admin.socket= (none; certad's default is one) */
};

struct itest {
	char *dir;                  /* the test's private directory */
	struct harness_trace *tr;   /* with ITEST_TRACES_PICK, else NULL */
	struct harness_proc *w, *d; /* the replay worker and certad (NULL until started) */
	int wport, dport, mport;    /* their ports and the metrics port (0 until known) */
	struct rpc_channel *ch;     /* TCP to certad (NULL until itest_start) */
	struct rpc_channel *adm;    /* the local admin socket (with ITEST_ADMIN) */
};

/*
 * The common setup: returns NULL when traces are wanted and harness_traces_dir() is NULL (the
 * tests then skip), else a zeroed allocation of size bytes (at least sizeof(struct itest),
 * which it starts with) whose struct itest has had harness_fixture_setup(timeout_s, ...) done.
 */
void *itest_new(size_t size, unsigned timeout_s, enum itest_traces traces);

/* Frees the channels and the processes (kills them) and clears their fields; idempotent. */
void itest_stop(struct itest *it);

/* itest_stop(), then harness_fixture_teardown() and free(it).  NULL is a no-op. */
void itest_free(struct itest *it);

/* A cmocka teardown for fixtures that are a plain struct itest (or need no more cleanup). */
int itest_teardown(void **state);

/*
 * Starts a replay worker (unless ITEST_NO_WORKER; with "--step-delay DELAY" when delay is not
 * NULL) and certad (with the worker in w, if any) with workers.health_interval=100ms,
 * metrics.port=0, what flags ask for and the NULL-terminated extra_sets (or NULL); fails the
 * test when certad does not start.  Then opens ch (and adm with ITEST_ADMIN).  Call
 * itest_stop() before starting again.
 */
void itest_start(struct itest *it, const char *delay, unsigned flags,
    const char *const extra_sets[]);

/* One unary call with ITEST_RPC_MS as deadline (the call itself must run): returns the
 * status, stores the reply in *reply (NULL when not OK; it is freed when reply is NULL) and
 * the details in buf (when not NULL; "" when none). */
grpc_status_code itest_call(struct rpc_channel *ch, const char *method,
    const ProtobufCMessage *req, const ProtobufCMessageDescriptor *rd, const char *bearer,
    ProtobufCMessage **reply, char *buf, size_t len);

/* As itest_call() without a bearer and with its own deadline; the details (malloc'd, may be
 * NULL) go to *details when details is not NULL, else they are freed. */
grpc_status_code itest_call_ms(struct rpc_channel *ch, const char *method,
    const ProtobufCMessage *req, const ProtobufCMessageDescriptor *rd, int deadline_ms,
    ProtobufCMessage **reply, char **details);

/* A worker's Worker.Info reply (the call must end OK; free the reply), and its active count. */
Certa__V1__InfoReply *itest_worker_info(struct rpc_channel *ch, int deadline_ms);
uint32_t itest_worker_active(struct rpc_channel *ch, int deadline_ms);

/* Submits spec on ch (bearer when not NULL; 60 s deadline) and reads its stream to the end
 * (30 s at most per event) into ev, zeroed first; returns certa_client_events_read()'s result.
 * Free ev with certa_client_events_free(). */
int itest_run(struct rpc_channel *ch, const Certa__V1__ProgramSpec *spec, const char *bearer,
    struct certa_client_events *ev);

#endif
