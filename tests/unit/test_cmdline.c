/* test_cmdline.c — the command line certad and certa-worker share (lib/cmdline.h). */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "lib/cmdline.h"
#include "lib/error.h"

static const struct config_option opts[] = {
	{ .name = "listen", .type = CONFIG_STRING, .def = "127.0.0.1:1", .help = "address" },
	{ .name = "threads", .type = CONFIG_INT, .def = "4", .min = 1, .max = 64,
	  .help = "threads" },
	{ .name = "workers.worker", .type = CONFIG_LIST, .help = "worker" },
};

static const struct cmdline_flag flags[] = {
	{ "listen", "listen" }, { "worker", "workers.worker" },
	{ "init-state", NULL }, { "verify-state", NULL },
};

static int usage_calls;

static void
usage(FILE *f)
{
	usage_calls++;
	fprintf(f, "usage: prog\n");
}

/* Refuses threads = 13, as certad's dmain_validate refuses map_size > max_map_size. */
static int
validate(const struct config *cfg, char *err, size_t errlen)
{
	if (config_get_int(cfg, "threads") != 13)
		return 0;
	snprintf(err, errlen, "threads may not be 13");
	return CERTA_ECONFIG;
}

static const struct cmdline_program prog = {
	.name = "prog",
	.options = opts,
	.noptions = sizeof opts / sizeof opts[0],
	.flags = flags,
	.nflags = sizeof flags / sizeof flags[0],
	.usage = usage,
	.validate = validate,
};

/* Runs cmdline_parse on the NULL-terminated words with stdout and stderr sent to /dev/null;
 * returns its result (*cl and *cfg only written on CMDLINE_RUN). */
static int
parse(struct cmdline **cl, struct config **cfg, ...)
{
	char *argv[32];
	int argc = 0, rc, out, err, null;
	va_list ap;

	argv[argc++] = (char *)"prog";
	va_start(ap, cfg);
	while ((argv[argc] = va_arg(ap, char *)) != NULL)
		argc++;
	va_end(ap);
	fflush(stdout);
	fflush(stderr);
	out = dup(1);
	err = dup(2);
	null = open("/dev/null", O_WRONLY);
	assert_true(out >= 0 && err >= 0 && null >= 0);
	dup2(null, 1);
	dup2(null, 2);
	rc = cmdline_parse(&prog, argc, argv, cl, cfg);
	fflush(stdout);
	fflush(stderr);
	dup2(out, 1);
	dup2(err, 2);
	close(out);
	close(err);
	close(null);
	return rc;
}

static char *
write_file(const char *text)
{
	static char path[64];
	int fd;

	snprintf(path, sizeof path, "/tmp/test_cmdline.XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	return path;
}

static void
test_defaults(void **state)
{
	struct cmdline *cl = NULL;
	struct config *cfg = NULL;

	(void)state;
	assert_int_equal(parse(&cl, &cfg, NULL), CMDLINE_RUN);
	assert_string_equal(config_get_str(cfg, "listen"), "127.0.0.1:1");
	assert_int_equal(config_get_int(cfg, "threads"), 4);
	assert_false(cmdline_check_only(cl));
	assert_int_equal(cmdline_switch(cl, "init-state"), 0);
	config_free(cfg);
	cmdline_free(cl);
}

/* The file first (wherever --config stands), then --set and flags in command-line order. */
static void
test_order(void **state)
{
	char *path = write_file("listen = file:1\nthreads = 8\n");
	struct cmdline *cl = NULL;
	struct config *cfg = NULL;
	const char *const *items;

	(void)state;
	assert_int_equal(parse(&cl, &cfg, "--listen", "flag:1", "--set", "listen=set:1",
	    "--worker", "w:1", "-s", "workers.worker=w:2", "--config", path, NULL), CMDLINE_RUN);
	assert_string_equal(config_get_str(cfg, "listen"), "set:1");
	assert_int_equal(config_get_int(cfg, "threads"), 8);
	assert_int_equal(config_get_list(cfg, "workers.worker", &items), 2);
	assert_string_equal(items[0], "w:1");
	assert_string_equal(items[1], "w:2");
	config_free(cfg);
	cmdline_free(cl);

	assert_int_equal(parse(&cl, &cfg, "-c", path, "--set", "listen=set:1", "--listen",
	    "flag:1", NULL), CMDLINE_RUN);
	assert_string_equal(config_get_str(cfg, "listen"), "flag:1");
	config_free(cfg);
	cmdline_free(cl);
	unlink(path);
}

/* cmdline_load rebuilds from scratch: a changed file is read again, the overrides still win. */
static void
test_reload(void **state)
{
	char *path = write_file("threads = 8\n");
	char err[256], keep[64];
	struct cmdline *cl = NULL;
	struct config *cfg = NULL, *again = NULL;
	FILE *f;

	(void)state;
	snprintf(keep, sizeof keep, "%s", path);
	assert_int_equal(parse(&cl, &cfg, "--config", keep, "--listen", "flag:1", NULL),
	    CMDLINE_RUN);
	f = fopen(keep, "w");
	assert_non_null(f);
	fputs("threads = 9\nlisten = file:2\n", f);
	fclose(f);
	assert_int_equal(cmdline_load(cl, &again, err, sizeof err), 0);
	assert_int_equal(config_get_int(again, "threads"), 9);
	assert_string_equal(config_get_str(again, "listen"), "flag:1");
	assert_int_equal(config_get_int(cfg, "threads"), 8);
	config_free(again);

	/* A bad file on reload: an error, nothing written. */
	f = fopen(keep, "w");
	assert_non_null(f);
	fputs("threads = 13\n", f);
	fclose(f);
	again = NULL;
	assert_int_equal(cmdline_load(cl, &again, err, sizeof err), CERTA_ECONFIG);
	assert_null(again);
	assert_string_equal(err, "threads may not be 13");
	config_free(cfg);
	cmdline_free(cl);
	unlink(keep);
}

static void
test_errors_exit_2(void **state)
{
	struct cmdline *cl = NULL;
	struct config *cfg = NULL;

	(void)state;
	usage_calls = 0;
	assert_int_equal(parse(&cl, &cfg, "--bogus", NULL), 2);
	assert_int_equal(usage_calls, 1);
	assert_int_equal(parse(&cl, &cfg, "--listen", NULL), 2);
	assert_int_equal(parse(&cl, &cfg, "stray", NULL), 2);
	assert_int_equal(usage_calls, 3);
	assert_int_equal(parse(&cl, &cfg, "--set", "threads", NULL), 2);
	assert_int_equal(parse(&cl, &cfg, "--set", "threads=0", NULL), 2);
	assert_int_equal(parse(&cl, &cfg, "--set", "nosuch=1", NULL), 2);
	assert_int_equal(parse(&cl, &cfg, "--set", "threads=13", NULL), 2);
	assert_int_equal(parse(&cl, &cfg, "--config", "/nonexistent/prog.conf", NULL), 2);
	/* Switches take no argument. */
	assert_int_equal(parse(&cl, &cfg, "--init-state=yes", NULL), 2);
	assert_int_equal(usage_calls, 4);
	assert_null(cl);
	assert_null(cfg);
}

static void
test_exit_at_once(void **state)
{
	struct cmdline *cl = NULL;
	struct config *cfg = NULL;

	(void)state;
	usage_calls = 0;
	assert_int_equal(parse(&cl, &cfg, "--help", NULL), 0);
	assert_int_equal(usage_calls, 1);
	assert_int_equal(parse(&cl, &cfg, "-V", NULL), 0);
	assert_int_equal(parse(&cl, &cfg, "--version", "--bogus", NULL), 0);
	assert_int_equal(parse(&cl, &cfg, "--print-config", NULL), 0);
	/* Documentation does not need a valid configuration. */
	assert_int_equal(parse(&cl, &cfg, "--set", "threads=0", "--print-config-man", NULL), 0);
	assert_null(cl);
	assert_null(cfg);
}

static void
test_switches_and_check(void **state)
{
	struct cmdline *cl = NULL;
	struct config *cfg = NULL;

	(void)state;
	assert_int_equal(parse(&cl, &cfg, "--init-state", "--check-config", "--verify-state",
	    NULL), CMDLINE_RUN);
	assert_true(cmdline_check_only(cl));
	assert_true(cmdline_switch(cl, "init-state") > 0);
	assert_true(cmdline_switch(cl, "verify-state") > cmdline_switch(cl, "init-state"));
	/* Only switches answer; a flag with an argument or an unknown name is 0. */
	assert_int_equal(cmdline_switch(cl, "listen"), 0);
	assert_int_equal(cmdline_switch(cl, "nosuch"), 0);
	config_free(cfg);
	cmdline_free(cl);

	assert_int_equal(parse(&cl, &cfg, "--verify-state", "--init-state", NULL), CMDLINE_RUN);
	assert_true(cmdline_switch(cl, "init-state") > cmdline_switch(cl, "verify-state"));
	config_free(cfg);
	cmdline_free(cl);
}

int
main(void)
{
	static const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_order),
		cmocka_unit_test(test_reload),
		cmocka_unit_test(test_errors_exit_2),
		cmocka_unit_test(test_exit_at_once),
		cmocka_unit_test(test_switches_and_check),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
