/*
 * test_python_client.c — the Python client (clients/python, generated into $(BUILD)/python by
 * `make`) against the real certad and a real replay worker, with Debian's python3-grpcio:
 * runs clients/python/tests/test_client.py.  Skips when the generated tree or grpcio for
 * CERTA_PYTHON (default /usr/bin/python3) is missing.
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

#include "tests/support/harness.h"
#include "tests/support/itest.h"

static int
setup(void **state)
{
	*state = itest_new(sizeof(struct itest), 240, ITEST_TRACES_PICK);
	return 0;
}

/* The problem as a shell word: single quotes, ' as '\''. */
static void
shell_quote(const char *s, char *out, size_t len)
{
	size_t o = 0;

	if (len < 3)
		return;
	out[o++] = '\'';
	for (; *s != '\0' && o + 6 < len; s++) {
		if (*s == '\'') {
			memcpy(out + o, "'\\''", 4);
			o += 4;
		} else {
			out[o++] = *s;
		}
	}
	out[o++] = '\'';
	out[o] = '\0';
}

static void
test_python_client(void **state)
{
	struct itest *e = *state;
	const char *py = getenv("CERTA_PYTHON");
	const char *build = getenv("BUILD");
	char pkg[512], problem[8192];
	int rc;

	HARNESS_NEED_TRACES(e);
	if (py == NULL || py[0] == '\0')
		py = "/usr/bin/python3";
	if (build == NULL || build[0] == '\0')
		build = "build";
	snprintf(pkg, sizeof pkg, "%s/python/certa_client/_proto/certa/v1/reasoning_pb2.py",
	    build);
	if (access(pkg, R_OK) != 0) {
		fprintf(stderr, "SKIP: %s missing (make python needs protobuf-compiler-grpc)\n", pkg);
		skip();
	}
	if (harness_sh("%s -c 'import grpc, google.protobuf' >/dev/null 2>&1", py) != 0) {
		fprintf(stderr, "SKIP: %s has no grpcio (Debian: python3-grpcio)\n", py);
		skip();
	}
	itest_start(e, "20", ITEST_ANONYMOUS | ITEST_SETTLE, NULL);
	shell_quote(e->tr->problem, problem, sizeof problem);
	rc = harness_sh("cd clients/python/tests && PYTHONDONTWRITEBYTECODE=1 "
	    "PYTHONPATH=%s%s/python CERTA_TARGET=127.0.0.1:%d CERTA_PROBLEM=%s "
	    "timeout 200 %s -m unittest -v test_client >%s/py.log 2>&1",
	    build[0] == '/' ? "" : "../../../", build, e->dport, problem, py, e->dir);
	if (rc != 0) {
		harness_sh("cat %s/py.log >&2", e->dir);
		fail_msg("clients/python/tests/test_client.py exit %d", rc);
	}
	harness_sh("tail -3 %s/py.log >&2", e->dir);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_python_client, setup, itest_teardown),
	};
	int rc;

	grpc_init();
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	grpc_shutdown();
	return rc;
}
