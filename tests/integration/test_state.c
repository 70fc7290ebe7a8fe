/*
 * test_state.c — the real certad on a damaged state directory (issue 10, findings 3-5):
 * truncated data.mdb (was SIGBUS), deleted or emptied data.mdb (was a silent new empty state),
 * a flipped bit in a record (was served without a word).  Each must end in exit status 1 with a
 * message naming the file or record; --init-state and --verify-state are the explicit tools.
 * No workers or traces needed.
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "tests/support/harness.h"
#include "tests/support/itest.h"

#define TENANT "zqxtenant"   /* a name that occurs nowhere else in data.mdb */

struct env {
	struct itest it;             /* first */
	char state[600];
	char out[600], err[600];
};

static int
setup(void **state)
{
	struct env *e = itest_new(sizeof *e, 60, ITEST_TRACES_NONE);

	snprintf(e->state, sizeof e->state, "%s/state", e->it.dir);
	snprintf(e->out, sizeof e->out, "%s/run.out", e->it.dir);
	snprintf(e->err, sizeof e->err, "%s/run.err", e->it.dir);
	*state = e;
	return 0;
}

/* Runs a binary to its end (10 s at most); returns its exit status, or 1000 + the signal that
 * killed it.  stdout and stderr are left in e->out and e->err. */
static int
run(struct env *e, const char *bin, const char *const args[])
{
	char *argv[16], *path = harness_bin(bin);
	struct harness_proc *p;
	int status = 0, i;

	assert_non_null(path);
	argv[0] = path;
	for (i = 0; args[i] != NULL; i++)
		argv[i + 1] = (char *)args[i];
	argv[i + 1] = NULL;
	assert_int_equal(harness_spawn_io(&p, e->out, e->err, argv), 0);
	if (harness_wait_exit(p, 10000, &status) != 0) {
		harness_dump_log(p);
		harness_proc_free(p);
		free(path);
		fail_msg("%s did not exit within 10 s", bin);
	}
	harness_proc_free(p);
	free(path);
	return WIFSIGNALED(status) ? 1000 + WTERMSIG(status) : WEXITSTATUS(status);
}

/* Runs certad on the state directory as a daemon would start; it must exit by itself. */
static int
run_certad(struct env *e, const char *extra)
{
	const char *args[] = { "--listen", "127.0.0.1:0", "--state-dir", e->state,
	    "--set", "metrics.port=0", extra, NULL };

	return run(e, "certad", args);
}

static void
assert_err_has(struct env *e, const char *what)
{
	char *text = NULL;

	assert_int_equal(harness_read_file(e->err, &text), 0);
	if (strstr(text, what) == NULL) {
		fprintf(stderr, "--- stderr ---\n%s--- end ---\n", text);
		free(text);
		fail_msg("stderr does not mention \"%s\"", what);
	}
	free(text);
}

/* Starts certad once (creating the state), adds a tenant over the admin socket, stops it. */
static void
make_state(struct env *e)
{
	char sock[640], sockset[700];
	const char *sets[] = { "metrics.port=0", sockset, NULL };
	const char *add[] = { "--server", sock, "tenant", "add", TENANT, NULL };
	struct harness_proc *d;
	int port, status = 0;

	snprintf(sock, sizeof sock, "unix:%s/admin.sock", e->it.dir);
	snprintf(sockset, sizeof sockset, "admin.socket=%s/admin.sock", e->it.dir);
	assert_int_equal(harness_start_certad(e->it.dir, NULL, 0, sets, NULL, &d, &port), 0);
	assert_int_equal(run(e, "certactl", add), 0);
	assert_int_equal(harness_signal(d, SIGTERM), 0);
	assert_int_equal(harness_wait_exit(d, 10000, &status), 0);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	harness_proc_free(d);
}

static void
data_path(const struct env *e, char *buf, size_t size)
{
	snprintf(buf, size, "%s/data.mdb", e->state);
}

/* Regression: truncated to 8192 bytes or to half its size, certad died of SIGBUS. */
static void
test_truncated_state_exits_1(void **state)
{
	struct env *e = *state;
	char data[700];
	struct stat sb;

	make_state(e);
	data_path(e, data, sizeof data);
	assert_int_equal(stat(data, &sb), 0);
	assert_int_equal(truncate(data, sb.st_size / 2), 0);
	assert_int_equal(run_certad(e, NULL), 1);
	assert_err_has(e, "data.mdb is truncated");
	assert_int_equal(truncate(data, 8192), 0);
	assert_int_equal(run_certad(e, NULL), 1);
	assert_err_has(e, "data.mdb is truncated");
	/* --init-state does not paper over it either. */
	assert_int_equal(run_certad(e, "--init-state"), 1);
	assert_err_has(e, "restore data.mdb from a backup");
}

/* Regression: with data.mdb deleted or emptied, certad started on a new empty state. */
static void
test_lost_state_exits_1(void **state)
{
	struct env *e = *state;
	const char *verify[] = { "--state-dir", e->state, "--verify-state", NULL };
	char data[700];

	make_state(e);
	data_path(e, data, sizeof data);
	assert_int_equal(truncate(data, 0), 0);
	assert_int_equal(run_certad(e, NULL), 1);
	assert_err_has(e, "state lost");
	assert_err_has(e, "empty (0 bytes)");
	assert_int_equal(unlink(data), 0);
	assert_int_equal(run_certad(e, NULL), 1);
	assert_err_has(e, "state lost");
	assert_err_has(e, "--init-state");
	assert_int_equal(access(data, F_OK), -1);

	/* The explicit way out: a new state, then a normal start... that is stopped at once. */
	assert_int_equal(run_certad(e, "--init-state"), 0);
	assert_int_equal(run(e, "certad", verify), 0);
}

/* A directory with other files and no state is not taken over silently. */
static void
test_nonempty_dir_needs_init(void **state)
{
	struct env *e = *state;
	char other[700];

	assert_int_equal(mkdir(e->state, 0750), 0);
	snprintf(other, sizeof other, "%s/README", e->state);
	assert_int_equal(harness_write_file(other, "%s", "not a state\n"), 0);
	assert_int_equal(run_certad(e, NULL), 1);
	assert_err_has(e, "holds no certa state");
	assert_int_equal(run_certad(e, "--init-state"), 0);
}

/* Flips the low bit of the last byte of every occurrence of `needle` in the file. */
static size_t
flip_all(const char *path, const char *needle)
{
	size_t n = strlen(needle), len, i, hits = 0;
	unsigned char *buf;
	FILE *f = fopen(path, "r+b");

	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	len = (size_t)ftell(f);
	rewind(f);
	buf = malloc(len);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, len, f), len);
	for (i = 0; i + n <= len; i++)
		if (memcmp(buf + i, needle, n) == 0) {
			buf[i + n - 1] ^= 1;
			hits++;
		}
	rewind(f);
	assert_int_equal(fwrite(buf, 1, len, f), len);
	fclose(f);
	free(buf);
	return hits;
}

/* Regression: bit flips changed records and certad served them without a word. */
static void
test_bit_flip_detected(void **state)
{
	struct env *e = *state;
	const char *verify[] = { "--state-dir", e->state, "--verify-state", NULL };
	char data[700], *text = NULL;

	make_state(e);
	assert_int_equal(run(e, "certad", verify), 0);
	data_path(e, data, sizeof data);
	assert_true(flip_all(data, TENANT) > 0);
	assert_int_equal(run(e, "certad", verify), 1);
	assert_int_equal(harness_read_file(e->out, &text), 0);
	assert_non_null(strstr(text, "corrupt: db=tenants key="));
	assert_non_null(strstr(text, "checksum mismatch"));
	assert_non_null(strstr(text, "1 corrupt"));
	free(text);
	/* The daemon refuses to start on it, naming the record. */
	assert_int_equal(run_certad(e, NULL), 1);
	assert_err_has(e, "corrupt record");
	assert_err_has(e, "db=tenants");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_truncated_state_exits_1, setup,
		    itest_teardown),
		cmocka_unit_test_setup_teardown(test_lost_state_exits_1, setup, itest_teardown),
		cmocka_unit_test_setup_teardown(test_nonempty_dir_needs_init, setup,
		    itest_teardown),
		cmocka_unit_test_setup_teardown(test_bit_flip_detected, setup, itest_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
