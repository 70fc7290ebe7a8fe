/*
 * test_diskfull.c — certad on a full disk: the state directory is a small tmpfs that the test
 * fills while programs run.  Their commits fail; they must wait (not fail, not be forgotten),
 * the daemon must say so (/readyz 503, grpc.health NOT_SERVING, the commit failure metric and
 * the gauge of waiting programs), and once space is freed every program must finish by itself
 * with the answer of an undisturbed run.
 *
 * Mounting a tmpfs needs root (the tests run as root here and in CI); elsewhere the test is
 * skipped with a message.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>
#include <grpc/grpc.h>

#include "certa/v1/reasoning.pb-c.h"
#include "grpc/health/v1/health.pb-c.h"
#include "lib/rpc_client.h"
#include "tests/support/certa_client.h"
#include "tests/support/harness.h"
#include "tests/support/itest.h"

#define NPROG 4                /* programs running when the disk fills */

struct env {
	struct itest it;             /* first */
	int mounted;
	char state[600];
};

static int
setup(void **state)
{
	*state = itest_new(sizeof(struct env), 180, ITEST_TRACES_PICK);
	return 0;
}

static int
teardown(void **state)
{
	struct env *e = *state;

	if (e == NULL)
		return 0;
	itest_stop(&e->it);
	if (e->mounted && umount2(e->state, MNT_DETACH) != 0)
		fprintf(stderr, "umount %s: %s\n", e->state, strerror(errno));
	itest_free(&e->it);
	return 0;
}

/* The value of an unlabelled sample, or -1 when absent. */
static double
metric(struct env *e, const char *name)
{
	return harness_metric(e->it.mport, name);
}

/* Mounts a small tmpfs on DIR/state; 0, or -1 (not root, no tmpfs) after saying why. */
static int
mount_state(struct env *e, const char *size)
{
	char opts[64];

	snprintf(e->state, sizeof e->state, "%s/state", e->it.dir);
	assert_int_equal(mkdir(e->state, 0750), 0);
	snprintf(opts, sizeof opts, "size=%s,mode=0750", size);
	if (mount("certa-test", e->state, "tmpfs", 0, opts) != 0) {
		print_message("skipped: cannot mount a tmpfs on %s (%s); this test needs root\n",
		    e->state, strerror(errno));
		return -1;
	}
	e->mounted = 1;
	return 0;
}

static struct rpc_stream *
submit(struct env *e, uint32_t n)
{
	Certa__V1__ProgramSpec spec = CERTA__V1__PROGRAM_SPEC__INIT;
	struct rpc_stream *s = NULL;

	spec.problem = (char *)e->it.tr->problem;
	spec.n = n;
	spec.algorithm = n > 1 ? CERTA__V1__ALGORITHM__ALGORITHM_SC :
	    CERTA__V1__ALGORITHM__ALGORITHM_COT;
	assert_int_equal(certa_client_submit(e->it.ch, &spec, NULL, 120000, &s), 0);
	return s;
}

/* Runs one program to its end; copies its answer. */
static void
reference(struct env *e, uint32_t n, char *answer, size_t len)
{
	struct certa_client_events ev;

	memset(&ev, 0, sizeof ev);
	certa_client_events_read(submit(e, n), 30000, 0, &ev);
	assert_int_equal(ev.status, GRPC_STATUS_OK);
	assert_non_null(ev.finished);
	snprintf(answer, len, "%s", ev.finished->result->answer);
	certa_client_events_free(&ev);
}

/* The stored state and tokens of a program (Get). */
static void
get(struct env *e, const char *id, int *st, uint64_t *tokens)
{
	Certa__V1__GetRequest r = CERTA__V1__GET_REQUEST__INIT;
	Certa__V1__Program *p = NULL;

	r.program_id = (char *)id;
	assert_int_equal(itest_call(e->it.ch, "/certa.v1.Reasoning/Get", &r.base,
	    &certa__v1__program__descriptor, NULL, (ProtobufCMessage **)&p, NULL, 0),
	    GRPC_STATUS_OK);
	*st = p->state;
	*tokens = p->tokens_used;
	protobuf_c_message_free_unpacked(&p->base, NULL);
}

/* Disk full while programs run: they wait, the daemon reports it, and they all finish with
 * the undisturbed answers once space returns. */
static void
test_disk_full_programs_wait_and_resume(void **state)
{
	struct env *e = *state;
	struct rpc_stream *s[NPROG];
	struct certa_client_events ev[NPROG];
	char ref_cot[256], ref_sc[256], fill[700], body[256];
	uint64_t tok;
	double failures = 0, waiting = 0;
	int i, k, st;

	HARNESS_NEED_TRACES(e);
	if (mount_state(e, "4m") != 0)
		skip();
	itest_start(&e->it, "150", ITEST_ANONYMOUS | ITEST_METRICS | ITEST_SETTLE, NULL);
	reference(e, 1, ref_cot, sizeof ref_cot);
	reference(e, 3, ref_sc, sizeof ref_sc);
	assert_int_equal(harness_http_get(e->it.mport, "/readyz", body, sizeof body), 200);
	assert_true(metric(e, "certa_store_commit_failures_total") == 0);

	for (i = 0; i < NPROG; i++) {
		memset(&ev[i], 0, sizeof ev[i]);
		s[i] = submit(e, i == 0 ? 3 : 1);
		assert_int_equal(certa_client_events_read(s[i], 30000, 1, &ev[i]), 1);
	}
	/* Fill the disk: dd stops at ENOSPC. */
	snprintf(fill, sizeof fill, "%s/fill", e->state);
	harness_sh("dd if=/dev/zero of=%s bs=64k >/dev/null 2>&1", fill);
	for (k = 0; k < 200; k++) {
		failures = metric(e, "certa_store_commit_failures_total");
		waiting = metric(e, "certa_programs_waiting_persist");
		if (failures > 0 && waiting >= 1)
			break;
		usleep(50000);
	}
	if (failures <= 0 || waiting < 1) {
		harness_dump_log(e->it.d);
		fail_msg("no commit failed on a full disk (failures %.0f, waiting %.0f)", failures,
		    waiting);
	}
	/* The steps' group commit failed first, and is counted as such. */
	assert_true(metric(e, "certa_store_group_commit_failures_total") >= 1);
	/* Reported: not ready, NOT_SERVING, an error line with the cause. */
	assert_int_equal(harness_http_get(e->it.mport, "/readyz", body, sizeof body), 503);
	assert_int_equal(certa_client_health(e->it.dport, ""),
	    GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING);
	assert_int_equal(certa_client_health(e->it.dport, "certa.v1.Reasoning"),
	    GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING);
	{
		/* The line may trail the metric by a moment (it is written after the count). */
		char *log = NULL;
		for (k = 0; k < 100; k++) {
			free(log);
			log = NULL;
			assert_int_equal(harness_read_file(harness_log_path(e->it.d), &log), 0);
			if (strstr(log, "commit failed") != NULL &&
			    strstr(log, "No space left on device") != NULL)
				break;
			usleep(50000);
		}
		if (strstr(log, "No space left on device") == NULL) {
			harness_dump_log(e->it.d);
			fail_msg("no error line naming the full disk");
		}
		free(log);
	}
	/* Stalled, not lost: nothing failed.  (A commit that still fits in pages LMDB freed
	 * earlier succeeds, so some programs may go on for a while; the others wait.) */
	usleep(1000000);
	for (i = 0; i < NPROG; i++) {
		get(e, ev[i].id, &st, &tok);
		assert_true(st == CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_QUEUED ||
		    st == CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_RUNNING ||
		    st == CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_FINISHED);
	}
	assert_true(metric(e, "certa_programs_waiting_persist") >= 1);
	assert_true(metric(e, "certa_store_commit_failures_total") >= failures);

	/* Space returns: everything resumes by itself and ends with the undisturbed answer. */
	assert_int_equal(unlink(fill), 0);
	for (i = 0; i < NPROG; i++) {
		certa_client_events_read(s[i], 30000, 0, &ev[i]);
		if (ev[i].status != GRPC_STATUS_OK || ev[i].finished == NULL) {
			harness_dump_log(e->it.d);
			fail_msg("program %s: status %d %s", ev[i].id, ev[i].status, ev[i].details);
		}
		assert_true(ev[i].monotone);
		assert_string_equal(ev[i].finished->result->answer, i == 0 ? ref_sc : ref_cot);
		get(e, ev[i].id, &st, &tok);
		assert_int_equal(st, CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_FINISHED);
		assert_true(tok > 0);
		certa_client_events_free(&ev[i]);
	}
	assert_true(metric(e, "certa_programs_waiting_persist") == 0);
	assert_int_equal(harness_http_get(e->it.mport, "/readyz", body, sizeof body), 200);
	assert_int_equal(certa_client_health(e->it.dport, ""),
	    GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_disk_full_programs_wait_and_resume, setup,
		    teardown),
	};
	int rc;

	grpc_init();
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	grpc_shutdown();
	return rc;
}
