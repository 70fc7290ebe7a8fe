/* test_cmd.c — cli/cmd: certactl's command-line parsing and exit statuses, without a server
 * (every case below is decided before any call is made). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cli/cmd.h"

/* Runs certactl with the given words (NULL-terminated); returns its exit status. */
static int
run(const char *first, ...)
{
	char *argv[32];
	struct cmd_ctx ctx;
	va_list ap;
	const char *w;
	int argc = 0, rc, i;

	argv[argc++] = strdup("certactl");
	va_start(ap, first);
	for (w = first; w != NULL && argc < 31; w = va_arg(ap, const char *))
		argv[argc++] = strdup(w);
	va_end(ap);
	argv[argc] = NULL;
	cmd_ctx_init(&ctx);
	ctx.server = "127.0.0.1:1";   /* nobody listens: a call would end UNAVAILABLE (3) */
	ctx.timeout_ms = 200;
	rc = cmd_main(&ctx, argc, argv);
	for (i = 0; i < argc; i++)
		free(argv[i]);
	return rc;
}

static void
test_help_and_version(void **state)
{
	(void)state;
	assert_int_equal(run("--help", NULL), CLI_EXIT_OK);
	assert_int_equal(run("--version", NULL), CLI_EXIT_OK);
	assert_int_equal(run("help", NULL), CLI_EXIT_OK);
	assert_int_equal(run("submit", "--help", NULL), CLI_EXIT_OK);
	assert_int_equal(run("tenant", "--help", NULL), CLI_EXIT_OK);
}

static void
test_usage_errors(void **state)
{
	(void)state;
	assert_int_equal(run(NULL), CLI_EXIT_USAGE);
	assert_int_equal(run("frobnicate", NULL), CLI_EXIT_USAGE);
	assert_int_equal(run("--bogus", "get", "p-1", NULL), CLI_EXIT_USAGE);
	assert_int_equal(run("--server", NULL), CLI_EXIT_USAGE);
	assert_int_equal(run("get", NULL), CLI_EXIT_USAGE);
	assert_int_equal(run("get", "p-1", "p-2", NULL), CLI_EXIT_USAGE);
	assert_int_equal(run("get", "--bogus", "p-1", NULL), CLI_EXIT_USAGE);
	assert_int_equal(run("submit", NULL), CLI_EXIT_USAGE);
	assert_int_equal(run("submit", "--budget", NULL), CLI_EXIT_USAGE);
}

/* Option values out of range are refused before anything is sent. */
static void
test_option_values_checked_before_call(void **state)
{
	(void)state;
	assert_int_equal(run("submit", "--budget", "0", "2+2?", NULL), CLI_EXIT_USAGE);
	assert_int_equal(run("submit", "--budget", "12abc", "2+2?", NULL), CLI_EXIT_USAGE);
	assert_int_equal(run("submit", "--sc", "0", "2+2?", NULL), CLI_EXIT_USAGE);
	assert_int_equal(run("--timeout", "soon", "get", "p-1", NULL), CLI_EXIT_USAGE);
}

/* A well-formed command reaches the server: with none listening it is UNAVAILABLE. */
static void
test_well_formed_command_reaches_server(void **state)
{
	(void)state;
	assert_int_equal(run("get", "p-1", NULL), CLI_EXIT_UNAVAILABLE);
	/* Options may follow the arguments (GNU permutation). */
	assert_int_equal(run("list", "--state", "queued", NULL), CLI_EXIT_UNAVAILABLE);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_help_and_version),
		cmocka_unit_test(test_usage_errors),
		cmocka_unit_test(test_option_values_checked_before_call),
		cmocka_unit_test(test_well_formed_command_reaches_server),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
