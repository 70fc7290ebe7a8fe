/* test_config.c — option-table configuration: parsing, validation, errors, docs, robustness. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/config.h"
#include "lib/error.h"
#include "tests/support/harness.h"

static const char *const policies[] = { "fifo", "fair", "certainty", NULL };
static const char *const formats[] = { "plain", "journal", NULL };

static const struct config_option opts[] = {
	{ .name = "name", .type = CONFIG_STRING, .def = "certad", .help = "Instance name" },
	{ .name = "threads", .type = CONFIG_INT, .def = "8", .min = 1, .max = 1000,
	  .help = "Worker threads" },
	{ .name = "ratio", .type = CONFIG_DOUBLE, .def = "0.5", .min = 0, .max = 1,
	  .help = "Share of capacity for retries" },
	{ .name = "verbose", .type = CONFIG_BOOL, .def = "no", .help = "Log more" },
	{ .name = "store.path", .type = CONFIG_STRING, .def = "/var/lib/certa",
	  .help = "Database directory" },
	{ .name = "store.map_size", .type = CONFIG_SIZE, .def = "1G", .min = 1 << 20,
	  .max = 1099511627776.0, .help = "LMDB map size" },
	{ .name = "store.cache", .type = CONFIG_SIZE, .def = "0", .help = "Cache size" },
	{ .name = "store.sync", .type = CONFIG_BOOL, .def = "yes", .help = "fsync on commit" },
	{ .name = "daemon.worker", .type = CONFIG_LIST, .def = "127.0.0.1:7701, 127.0.0.1:7702",
	  .help = "Worker address" },
	{ .name = "daemon.policy", .type = CONFIG_ENUM, .def = "fair", .choices = policies,
	  .help = "Scheduling policy" },
	{ .name = "daemon.timeout", .type = CONFIG_DURATION, .def = "30s", .min = 1, .max = 3600000,
	  .help = "Step deadline" },
	{ .name = "daemon.linger", .type = CONFIG_DURATION, .def = "250", .help = "Grace period" },
	{ .name = "daemon.listen", .type = CONFIG_STRING, .help = "Listen address" },
	{ .name = "daemon.offset", .type = CONFIG_INT, .help = "Unbounded integer" },
	{ .name = "daemon.log_format", .type = CONFIG_ENUM, .choices = formats,
	  .help = "Log format" },
	{ .name = "daemon.peers", .type = CONFIG_LIST, .help = "Peer list" },
	{ .name = "daemon.banner", .type = CONFIG_STRING, .def = "  padded; # value \"q\"  ",
	  .help = "Banner" },
	{ .name = "sched.alpha", .type = CONFIG_DOUBLE, .help = "Unset number" },
};
#define NOPTS (sizeof opts / sizeof opts[0])

static struct config *
new_cfg(void)
{
	struct config *cfg = NULL;

	assert_int_equal(config_new(opts, NOPTS, &cfg), 0);
	assert_non_null(cfg);
	return cfg;
}

/* Every value as text, so "unchanged" is one string comparison. */
static char *
dump(const struct config *cfg)
{
	char *buf = NULL;
	size_t len = 0, i, j, n;
	const char *const *items;
	FILE *f = open_memstream(&buf, &len);

	assert_non_null(f);
	for (i = 0; i < NOPTS; i++) {
		fprintf(f, "%s=", opts[i].name);
		if (opts[i].type == CONFIG_LIST) {
			n = config_get_list(cfg, opts[i].name, &items);
			for (j = 0; j < n; j++)
				fprintf(f, "[%s]", items[j]);
		} else {
			const char *s = config_get_str(cfg, opts[i].name);

			fprintf(f, "%s", s != NULL ? s : "(unset)");
		}
		fputc('\n', f);
	}
	fclose(f);
	return buf;
}

static void
test_defaults(void **state)
{
	struct config *cfg = new_cfg();
	const char *const *items;

	assert_string_equal(config_get_str(cfg, "name"), "certad");
	assert_int_equal(config_get_int(cfg, "threads"), 8);
	assert_true(config_get_double(cfg, "ratio") == 0.5);
	assert_int_equal(config_get_bool(cfg, "verbose"), 0);
	assert_string_equal(config_get_str(cfg, "store.path"), "/var/lib/certa");
	assert_int_equal(config_get_int(cfg, "store.map_size"), 1LL << 30);
	assert_string_equal(config_get_str(cfg, "store.map_size"), "1G");
	assert_int_equal(config_get_int(cfg, "store.cache"), 0);
	assert_int_equal(config_get_bool(cfg, "store.sync"), 1);
	assert_int_equal(config_get_list(cfg, "daemon.worker", &items), 2);
	assert_string_equal(items[0], "127.0.0.1:7701");
	assert_string_equal(items[1], "127.0.0.1:7702");
	assert_int_equal(config_get_enum(cfg, "daemon.policy"), 1);
	assert_string_equal(config_get_str(cfg, "daemon.policy"), "fair");
	assert_int_equal(config_get_int(cfg, "daemon.timeout"), 30000);
	assert_int_equal(config_get_int(cfg, "daemon.linger"), 250);
	assert_string_equal(config_get_str(cfg, "daemon.banner"), "  padded; # value \"q\"  ");

	/* Unset options. */
	assert_null(config_get_str(cfg, "daemon.listen"));
	assert_false(config_is_set(cfg, "daemon.listen"));
	assert_true(config_is_set(cfg, "threads"));
	assert_int_equal(config_get_int(cfg, "daemon.offset"), 0);
	assert_int_equal(config_get_enum(cfg, "daemon.log_format"), -1);
	assert_true(config_get_double(cfg, "sched.alpha") == 0.0);
	assert_int_equal(config_get_list(cfg, "daemon.peers", &items), 0);
	assert_null(items);
	assert_false(config_is_set(cfg, "daemon.peers"));
	assert_true(config_is_set(cfg, "daemon.worker"));
	config_free(cfg);
}

static void
test_empty_table(void **state)
{
	struct config *cfg = NULL;
	char err[256];

	assert_int_equal(config_new(NULL, 0, &cfg), 0);
	assert_int_equal(config_load_string(cfg, "e", "# nothing\n\n", err, sizeof err), 0);
	assert_int_equal(config_load_string(cfg, "e", "x = 1\n", err, sizeof err),
		CERTA_ECONFIG);
	assert_string_equal(err, "e:1: unknown option 'x'");
	config_free(cfg);
	config_free(NULL);
}

/* Loads "[section]\nkey = text" into a fresh config and returns the integer value. */
static long long
load_int(const char *section, const char *key, const char *text)
{
	struct config *cfg = new_cfg();
	char buf[256], err[256], name[128];
	long long v;
	int rc;

	snprintf(buf, sizeof buf, "[%s]\n%s = %s\n", section, key, text);
	rc = config_load_string(cfg, "t.conf", buf, err, sizeof err);
	if (rc != 0)
		fail_msg("'%s': %s", text, err);
	snprintf(name, sizeof name, "%s.%s", section, key);
	v = config_get_int(cfg, name);
	config_free(cfg);
	return v;
}

static void
test_sizes(void **state)
{
	static const struct {
		const char *text;
		long long bytes;
	} cases[] = {
		{ "0", 0 }, { "512", 512 }, { "4K", 4096 }, { "4k", 4096 }, { "4KB", 4096 },
		{ "4KiB", 4096 }, { "2M", 2LL << 20 }, { "64 MiB", 64LL << 20 },
		{ "3G", 3LL << 30 }, { "3gb", 3LL << 30 }, { "1T", 1LL << 40 }, { "7B", 7 },
	};
	size_t i;

	for (i = 0; i < sizeof cases / sizeof cases[0]; i++)
		assert_int_equal(load_int("store", "cache", cases[i].text), cases[i].bytes);
	{
		/* 8388608T is 2^63 bytes, one more than LLONG_MAX. */
		struct config *cfg = new_cfg();
		char err[256];

		assert_int_equal(config_set(cfg, "store.cache", "8388608T", err, sizeof err),
			CERTA_ECONFIG);
		assert_string_equal(err, "value 8388608T for 'store.cache' is too large");
		assert_int_equal(config_set(cfg, "store.cache", "8388607T", err, sizeof err), 0);
		assert_int_equal(config_get_int(cfg, "store.cache"), 8388607LL << 40);
		config_free(cfg);
	}
}

static void
test_durations(void **state)
{
	static const struct {
		const char *text;
		long long ms;
	} cases[] = {
		{ "0", 0 }, { "250", 250 }, { "250ms", 250 }, { "2s", 2000 }, { "10 s", 10000 },
		{ "3m", 180000 }, { "1h", 3600000 }, { "2H", 7200000 }, { "15MS", 15 },
	};
	size_t i;

	for (i = 0; i < sizeof cases / sizeof cases[0]; i++)
		assert_int_equal(load_int("daemon", "linger", cases[i].text), cases[i].ms);
}

static void
test_bools(void **state)
{
	static const struct {
		const char *text;
		int value;
	} cases[] = {
		{ "true", 1 }, { "false", 0 }, { "yes", 1 }, { "no", 0 }, { "on", 1 },
		{ "off", 0 }, { "1", 1 }, { "0", 0 }, { "YES", 1 }, { "Off", 0 },
	};
	struct config *cfg;
	char buf[128], err[256];
	size_t i;

	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		cfg = new_cfg();
		snprintf(buf, sizeof buf, "verbose = %s\n[store]\nsync = %s\n", cases[i].text,
			cases[i].text);
		assert_int_equal(config_load_string(cfg, "t", buf, err, sizeof err), 0);
		assert_int_equal(config_get_bool(cfg, "verbose"), cases[i].value);
		assert_int_equal(config_get_bool(cfg, "store.sync"), cases[i].value);
		config_free(cfg);
	}
}

static void
test_each_type(void **state)
{
	static const char text[] =
		"name = node-1\n"
		"threads = 16\n"
		"ratio = 0.25\n"
		"verbose = on\n"
		"[store]\n"
		"path = /srv/certa\n"
		"map_size = 4G\n"
		"[daemon]\n"
		"worker = 10.0.0.1:7701\n"
		"worker = 10.0.0.2:7701\n"
		"worker = 10.0.0.3:7701\n"
		"policy = certainty\n"
		"timeout = 2m\n"
		"offset = -42\n"
		"log_format = journal\n"
		"listen = [::1]:7700\n"
		"[sched]\n"
		"alpha = 1e-3\n";
	struct config *cfg = new_cfg();
	const char *const *items;
	char err[256];

	assert_int_equal(config_load_string(cfg, "t.conf", text, err, sizeof err), 0);
	assert_string_equal(config_get_str(cfg, "name"), "node-1");
	assert_int_equal(config_get_int(cfg, "threads"), 16);
	assert_true(config_get_double(cfg, "ratio") == 0.25);
	assert_int_equal(config_get_bool(cfg, "verbose"), 1);
	assert_string_equal(config_get_str(cfg, "store.path"), "/srv/certa");
	assert_int_equal(config_get_int(cfg, "store.map_size"), 4LL << 30);
	assert_int_equal(config_get_list(cfg, "daemon.worker", &items), 3);
	assert_string_equal(items[0], "10.0.0.1:7701");
	assert_string_equal(items[1], "10.0.0.2:7701");
	assert_string_equal(items[2], "10.0.0.3:7701");
	assert_int_equal(config_get_enum(cfg, "daemon.policy"), 2);
	assert_int_equal(config_get_int(cfg, "daemon.timeout"), 120000);
	assert_int_equal(config_get_int(cfg, "daemon.offset"), -42);
	assert_int_equal(config_get_enum(cfg, "daemon.log_format"), 1);
	assert_string_equal(config_get_str(cfg, "daemon.listen"), "[::1]:7700");
	assert_true(config_get_double(cfg, "sched.alpha") == 1e-3);
	/* Options absent from the text keep their values. */
	assert_int_equal(config_get_bool(cfg, "store.sync"), 1);
	assert_int_equal(config_get_int(cfg, "daemon.linger"), 250);
	config_free(cfg);
}

static void
test_bounds_inclusive(void **state)
{
	struct config *cfg = new_cfg();
	char err[256];

	assert_int_equal(config_load_string(cfg, "t", "threads = 1\nratio = 1\n"
		"[store]\nmap_size = 1M\n[daemon]\ntimeout = 1h\n", err, sizeof err), 0);
	assert_int_equal(config_get_int(cfg, "threads"), 1);
	assert_true(config_get_double(cfg, "ratio") == 1.0);
	assert_int_equal(config_get_int(cfg, "store.map_size"), 1 << 20);
	assert_int_equal(config_get_int(cfg, "daemon.timeout"), 3600000);
	assert_int_equal(config_load_string(cfg, "t", "threads = +1000\nratio = 0\n"
		"[store]\nmap_size = 1T\n[daemon]\ntimeout = 1\n", err, sizeof err), 0);
	assert_int_equal(config_get_int(cfg, "threads"), 1000);
	assert_true(config_get_double(cfg, "ratio") == 0.0);
	assert_int_equal(config_get_int(cfg, "store.map_size"), 1LL << 40);
	assert_int_equal(config_get_int(cfg, "daemon.timeout"), 1);
	config_free(cfg);
}

static void
test_bad_values(void **state)
{
	static const struct {
		const char *text;
		const char *err;
	} cases[] = {
		{ "threads = 99999\n", "t.conf:1: value 99999 for 'threads' is out of range [1, 1000]" },
		{ "threads = 0\n", "t.conf:1: value 0 for 'threads' is out of range [1, 1000]" },
		{ "ratio = 1.5\n", "t.conf:1: value 1.5 for 'ratio' is out of range [0, 1]" },
		{ "[store]\nmap_size = 2T\n",
			"t.conf:2: value 2T for 'store.map_size' is out of range [1M, 1T]" },
		{ "[store]\nmap_size = 1023K\n",
			"t.conf:2: value 1023K for 'store.map_size' is out of range [1M, 1T]" },
		{ "[daemon]\ntimeout = 2h\n",
			"t.conf:2: value 2h for 'daemon.timeout' is out of range [1ms, 1h]" },
		{ "[daemon]\ntimeout = 0\n",
			"t.conf:2: value 0 for 'daemon.timeout' is out of range [1ms, 1h]" },
		{ "[daemon]\noffset = 99999999999999999999\n",
			"t.conf:2: value 99999999999999999999 for 'daemon.offset' is too large" },
		{ "threads = 99999999999999999999\n", "t.conf:1: value 99999999999999999999 "
			"for 'threads' is out of range [1, 1000]" },
		{ "# ok\n[store]\nbogus = 1\n", "t.conf:3: unknown option 'store.bogus'" },
		{ "foo.bar = 1\n", "t.conf:1: unknown option 'foo.bar'" },
		{ "threads = 2\n[nope]\nx = 1\n", "t.conf:2: unknown section 'nope'" },
		{ "[stor]\n", "t.conf:1: unknown section 'stor'" },
		{ "threads = abc\n", "t.conf:1: 'abc' is not an integer" },
		{ "threads = 12abc\n", "t.conf:1: '12abc' is not an integer" },
		{ "threads = \n", "t.conf:1: '' is not an integer" },
		{ "threads = 1.5\n", "t.conf:1: '1.5' is not an integer" },
		{ "ratio = x1\n", "t.conf:1: 'x1' is not a number" },
		{ "ratio = nan\n", "t.conf:1: 'nan' is not a number" },
		{ "ratio = 0.5x\n", "t.conf:1: '0.5x' is not a number" },
		{ "threads\n", "t.conf:1: expected 'key = value'" },
		{ "\n\n = 5\n", "t.conf:3: expected 'key = value'" },
		{ "thr eads = 5\n", "t.conf:1: expected 'key = value'" },
		{ "threads : 5\n", "t.conf:1: expected 'key = value'" },
		{ "name = \"abc\n", "t.conf:1: unterminated quoted value" },
		{ "name = \"abc\\\"\n", "t.conf:1: unterminated quoted value" },
		{ "name = \"abc\\", "t.conf:1: unterminated quoted value" },
		{ "name = \"a\" b\n", "t.conf:1: unexpected text after quoted value" },
		{ "name = \"a\\n\"\n",
			"t.conf:1: unknown escape '\\n' in quoted value (only \\\" and \\\\)" },
		{ "threads = 2\n\nthreads = 3\n", "t.conf:3: 'threads' already set at line 1" },
		{ "[store]\npath = /a\n[daemon]\n[store]\npath = /b\n",
			"t.conf:5: 'store.path' already set at line 2" },
		{ "store.path = /a\n[store]\npath = /b\n",
			"t.conf:3: 'store.path' already set at line 1" },
		{ "verbose = maybe\n",
			"t.conf:1: 'maybe' is not one of: true, false, yes, no, on, off, 1, 0" },
		{ "[daemon]\npolicy = maybe\n",
			"t.conf:2: 'maybe' is not one of: fifo, fair, certainty" },
		{ "[daemon]\npolicy = FIFO\n",
			"t.conf:2: 'FIFO' is not one of: fifo, fair, certainty" },
		{ "[store]\nmap_size = 12Q\n", "t.conf:2: '12Q' is not a size "
			"(bytes with an optional K, M, G or T suffix)" },
		{ "[store]\nmap_size = -1M\n", "t.conf:2: '-1M' is not a size "
			"(bytes with an optional K, M, G or T suffix)" },
		{ "[daemon]\ntimeout = 2d\n", "t.conf:2: '2d' is not a duration "
			"(a number with an ms, s, m or h suffix)" },
		{ "[daemon]\ntimeout = 1.5s\n", "t.conf:2: '1.5s' is not a duration "
			"(a number with an ms, s, m or h suffix)" },
		{ "[store\n", "t.conf:1: expected '[section]'" },
		{ "[]\n", "t.conf:1: expected '[section]'" },
		{ "[store] path = /x\n", "t.conf:1: expected '[section]'" },
		{ "threads = 5\x01\n", "t.conf:1: '5\\x01' is not an integer" },
	};
	struct config *cfg = new_cfg();
	char err[256], *before, *after;
	size_t i;
	int rc;

	/* Non-default values first, so "unchanged" cannot be confused with "reset". */
	assert_int_equal(config_load_string(cfg, "base", "threads = 3\nname = base\n"
		"[daemon]\nworker = w1\npolicy = fifo\n", err, sizeof err), 0);
	before = dump(cfg);
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		memset(err, 'x', sizeof err);
		rc = config_load_string(cfg, "t.conf", cases[i].text, err, sizeof err);
		if (rc != CERTA_ECONFIG)
			fail_msg("case %zu (%s): rc %d", i, cases[i].text, rc);
		assert_string_equal(err, cases[i].err);
		after = dump(cfg);
		assert_string_equal(after, before);
		free(after);
	}
	/* Valid lines before the bad one are not applied either. */
	assert_int_equal(config_load_string(cfg, "t.conf", "threads = 9\n[daemon]\nworker = w9\n"
		"policy = wrong\n", err, sizeof err), CERTA_ECONFIG);
	assert_string_equal(err, "t.conf:4: 'wrong' is not one of: fifo, fair, certainty");
	assert_int_equal(config_get_int(cfg, "threads"), 3);
	after = dump(cfg);
	assert_string_equal(after, before);
	free(after);
	/* A NULL or zero-length err is allowed. */
	assert_int_equal(config_load_string(cfg, "t", "threads = x\n", NULL, 0), CERTA_ECONFIG);
	err[0] = 'z';
	assert_int_equal(config_load_string(cfg, "t", "threads = x\n", err, 0), CERTA_ECONFIG);
	assert_int_equal(err[0], 'z');
	/* A short err is truncated, still terminated. */
	assert_int_equal(config_load_string(cfg, "t", "threads = x\n", err, 8), CERTA_ECONFIG);
	assert_string_equal(err, "t:1: 'x");
	free(before);
	config_free(cfg);
}

static void
test_long_value_shown_cut(void **state)
{
	struct config *cfg = new_cfg();
	char text[600], err[512], expect[200];

	memset(text, 0, sizeof text);
	memcpy(text, "threads = ", 10);
	memset(text + 10, '7', 300);
	assert_int_equal(config_load_string(cfg, "t", text, err, sizeof err), CERTA_ECONFIG);
	snprintf(expect, sizeof expect, "t:1: value %.64s... for 'threads' is out of range "
		"[1, 1000]", text + 10);
	assert_string_equal(err, expect);
	config_free(cfg);
}

static void
test_comments_and_quoting(void **state)
{
	static const char text[] =
		"\xef\xbb\xbf# full-line comment\n"
		"; another full-line comment\n"
		"   # indented comment\n"
		"\t\n"
		"name = \"hello # not a comment ; nor this\"   # a comment\n"
		"threads=12;not a comment\n";
	static const char text2[] =
		"threads = 12 ; comment\r\n"
		"verbose = yes# not a comment\r\n";
	static const char text3[] =
		"[ store ] ; comment\n"
		"path = /srv/certa#1 ; trailing comment\n"
		"[daemon]# comment right after ]\n"
		"listen = \"  spaced  \"\n"
		"banner = \"say \\\"hi\\\" \\\\ ok\"#c\n"
		"peers = \"\"\n"
		"peers = \"a # b\"\n"
		"peers = plain value with  inner  spaces   \n"
		"store.cache = 1K\n";  /* dotted name inside a section: daemon.store.cache */
	static const char text4[] =
		"store.cache = 2K\n"   /* full dotted name at the top level */
		"[store]\n"
		"path = \"\"\n";
	struct config *cfg = new_cfg();
	const char *const *items;
	char err[256];

	assert_int_equal(config_load_string(cfg, "t", text, err, sizeof err), CERTA_ECONFIG);
	assert_string_equal(err, "t:6: '12;not a comment' is not an integer");
	assert_string_equal(config_get_str(cfg, "name"), "certad");

	assert_int_equal(config_load_string(cfg, "t", text2, err, sizeof err), CERTA_ECONFIG);
	assert_string_equal(err, "t:2: 'yes# not a comment' is not one of: true, false, yes, no, "
		"on, off, 1, 0");

	assert_int_equal(config_load_string(cfg, "t", text3, err, sizeof err), CERTA_ECONFIG);
	assert_string_equal(err, "t:9: unknown option 'daemon.store.cache'");

	{
		/* The same text without its last line loads. */
		char *t3 = strdup(text3);

		assert_non_null(t3);
		*strstr(t3, "store.cache") = '\0';
		assert_int_equal(config_load_string(cfg, "t", t3, err, sizeof err), 0);
		free(t3);
	}
	assert_string_equal(config_get_str(cfg, "store.path"), "/srv/certa#1");
	assert_string_equal(config_get_str(cfg, "daemon.listen"), "  spaced  ");
	assert_string_equal(config_get_str(cfg, "daemon.banner"), "say \"hi\" \\ ok");
	assert_int_equal(config_get_list(cfg, "daemon.peers", &items), 2);
	assert_string_equal(items[0], "a # b");
	assert_string_equal(items[1], "plain value with  inner  spaces");

	assert_int_equal(config_load_string(cfg, "t", "threads = 12 ; c\r\nverbose = yes # c\r\n"
		"name = \"x\"\r\n", err, sizeof err), 0);
	assert_int_equal(config_get_int(cfg, "threads"), 12);
	assert_int_equal(config_get_bool(cfg, "verbose"), 1);
	assert_string_equal(config_get_str(cfg, "name"), "x");

	assert_int_equal(config_load_string(cfg, "t", text4, err, sizeof err), 0);
	assert_int_equal(config_get_int(cfg, "store.cache"), 2048);
	assert_string_equal(config_get_str(cfg, "store.path"), "");
	assert_true(config_is_set(cfg, "store.path"));

	/* No trailing newline, empty text. */
	assert_int_equal(config_load_string(cfg, "t", "threads = 77", err, sizeof err), 0);
	assert_int_equal(config_get_int(cfg, "threads"), 77);
	assert_int_equal(config_load_string(cfg, "t", "", err, sizeof err), 0);
	assert_int_equal(config_get_int(cfg, "threads"), 77);
	config_free(cfg);
}

static void
test_list_semantics(void **state)
{
	struct config *cfg = new_cfg();
	const char *const *items;
	char err[256];

	/* A list in the file replaces the default list. */
	assert_int_equal(config_load_string(cfg, "t", "[daemon]\nworker = a\n", err, sizeof err),
		0);
	assert_int_equal(config_get_list(cfg, "daemon.worker", &items), 1);
	assert_string_equal(items[0], "a");
	/* A later load replaces it again, and repeats accumulate within a load. */
	assert_int_equal(config_load_string(cfg, "t", "daemon.worker = b\n[daemon]\nworker = c\n",
		err, sizeof err), 0);
	assert_int_equal(config_get_list(cfg, "daemon.worker", &items), 2);
	assert_string_equal(items[0], "b");
	assert_string_equal(items[1], "c");
	/* A load without the key keeps it. */
	assert_int_equal(config_load_string(cfg, "t", "threads = 4\n", err, sizeof err), 0);
	assert_int_equal(config_get_list(cfg, "daemon.worker", &items), 2);
	/* An empty value clears; later lines add again. */
	assert_int_equal(config_load_string(cfg, "t", "[daemon]\nworker =\n", err, sizeof err), 0);
	assert_int_equal(config_get_list(cfg, "daemon.worker", &items), 0);
	assert_null(items);
	assert_int_equal(config_load_string(cfg, "t", "[daemon]\nworker = x\nworker =\n"
		"worker = y\n", err, sizeof err), 0);
	assert_int_equal(config_get_list(cfg, "daemon.worker", &items), 1);
	assert_string_equal(items[0], "y");
	/* config_set appends; an empty value clears. */
	assert_int_equal(config_set(cfg, "daemon.worker", "z", err, sizeof err), 0);
	assert_int_equal(config_get_list(cfg, "daemon.worker", &items), 2);
	assert_string_equal(items[0], "y");
	assert_string_equal(items[1], "z");
	assert_int_equal(config_set(cfg, "daemon.worker", "", err, sizeof err), 0);
	assert_int_equal(config_get_list(cfg, "daemon.worker", &items), 0);
	config_free(cfg);
}

static void
test_set_override(void **state)
{
	struct config *cfg = new_cfg();
	char err[256], *before, *after;

	assert_int_equal(config_set(cfg, "threads", "64", err, sizeof err), 0);
	assert_int_equal(config_get_int(cfg, "threads"), 64);
	/* set replaces: no duplicate error, last one wins. */
	assert_int_equal(config_set(cfg, "threads", "65", err, sizeof err), 0);
	assert_int_equal(config_get_int(cfg, "threads"), 65);
	assert_int_equal(config_set(cfg, "store.map_size", "2G", err, sizeof err), 0);
	assert_int_equal(config_get_int(cfg, "store.map_size"), 2LL << 30);
	assert_int_equal(config_set(cfg, "daemon.policy", "fifo", err, sizeof err), 0);
	assert_int_equal(config_get_enum(cfg, "daemon.policy"), 0);
	assert_int_equal(config_set(cfg, "daemon.listen", "0.0.0.0:7700", err, sizeof err), 0);
	assert_string_equal(config_get_str(cfg, "daemon.listen"), "0.0.0.0:7700");
	assert_int_equal(config_set(cfg, "verbose", "true", err, sizeof err), 0);
	assert_int_equal(config_get_bool(cfg, "verbose"), 1);
	assert_int_equal(config_set(cfg, "sched.alpha", "-2.5", err, sizeof err), 0);
	assert_true(config_get_double(cfg, "sched.alpha") == -2.5);

	before = dump(cfg);
	assert_int_equal(config_set(cfg, "threads", "99999", err, sizeof err), CERTA_ECONFIG);
	assert_string_equal(err, "value 99999 for 'threads' is out of range [1, 1000]");
	assert_int_equal(config_set(cfg, "nope", "1", err, sizeof err), CERTA_ECONFIG);
	assert_string_equal(err, "unknown option 'nope'");
	assert_int_equal(config_set(cfg, "store", "1", err, sizeof err), CERTA_ECONFIG);
	assert_string_equal(err, "unknown option 'store'");
	assert_int_equal(config_set(cfg, "daemon.timeout", "soon", err, sizeof err),
		CERTA_ECONFIG);
	assert_string_equal(err, "'soon' is not a duration (a number with an ms, s, m or h "
		"suffix)");
	assert_int_equal(config_set(cfg, "sched.alpha", " 1", err, sizeof err), CERTA_ECONFIG);
	assert_string_equal(err, "' 1' is not a number");
	after = dump(cfg);
	assert_string_equal(after, before);
	free(after);
	free(before);

	/* A file loaded after an override may set the key again: set is not "seen". */
	assert_int_equal(config_load_string(cfg, "t", "threads = 5\n", err, sizeof err), 0);
	assert_int_equal(config_get_int(cfg, "threads"), 5);
	config_free(cfg);
}

static void
test_dup_is_deep(void **state)
{
	struct config *cfg = new_cfg(), *copy = NULL;
	const char *const *items;
	char err[256], *a, *b;

	assert_int_equal(config_dup(cfg, &copy), 0);
	a = dump(cfg);
	b = dump(copy);
	assert_string_equal(a, b);
	free(b);
	assert_int_equal(config_load_string(copy, "t", "name = other\n[daemon]\nworker = q\n",
		err, sizeof err), 0);
	b = dump(cfg);
	assert_string_equal(a, b);
	assert_string_equal(config_get_str(copy, "name"), "other");
	assert_int_equal(config_get_list(copy, "daemon.worker", &items), 1);
	assert_int_equal(config_get_list(cfg, "daemon.worker", &items), 2);
	free(a);
	free(b);
	config_free(cfg);
	assert_string_equal(config_get_str(copy, "store.path"), "/var/lib/certa");
	config_free(copy);
}

static char *
write_doc(int format)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	assert_non_null(f);
	config_write_doc(opts, NOPTS, f, format);
	assert_int_equal(ferror(f), 0);
	fclose(f);
	assert_non_null(buf);
	return buf;
}

/* Removes the '#' of "#key = value" lines (the example's settings), leaving prose alone. */
static char *
uncomment(const char *doc)
{
	char *out = malloc(strlen(doc) + 1), *o = out;
	const char *s = doc;
	int bol = 1;

	assert_non_null(out);
	for (; *s != '\0'; s++) {
		if (bol && s[0] == '#' && s[1] != ' ' && s[1] != '#' && s[1] != '\n' &&
		    s[1] != '\0') {
			bol = 0;
			continue;
		}
		bol = *s == '\n';
		*o++ = *s;
	}
	*o = '\0';
	return out;
}

static void
test_write_doc_ini(void **state)
{
	struct config *cfg = new_cfg();
	char *doc = write_doc(CONFIG_DOC_INI), *live, *before, *after;
	char err[256], line[256];
	const char *key;
	size_t i;

	for (i = 0; i < NOPTS; i++) {
		key = strchr(opts[i].name, '.') != NULL ? strchr(opts[i].name, '.') + 1 :
			opts[i].name;
		if (strstr(doc, opts[i].help) == NULL)
			fail_msg("help of %s missing", opts[i].name);
		if (opts[i].def == NULL) {
			snprintf(line, sizeof line, "\n# %s = <", key);
			if (strstr(doc, line) == NULL)
				fail_msg("placeholder for %s missing:\n%s", opts[i].name, doc);
			continue;
		}
		snprintf(line, sizeof line, "# Default: %s.\n", opts[i].def);
		if (strstr(doc, line) == NULL)
			fail_msg("default of %s missing:\n%s", opts[i].name, doc);
		if (opts[i].type != CONFIG_LIST && strcmp(opts[i].name, "daemon.banner") != 0) {
			snprintf(line, sizeof line, "\n#%s = %s\n", key, opts[i].def);
			if (strstr(doc, line) == NULL)
				fail_msg("line for %s missing:\n%s", opts[i].name, doc);
		}
	}
	assert_non_null(strstr(doc, "\n#worker = 127.0.0.1:7701\n#worker = 127.0.0.1:7702\n"));
	assert_non_null(strstr(doc, "\n#banner = \"  padded; # value \\\"q\\\"  \"\n"));
	assert_non_null(strstr(doc, "range [1M, 1T]"));
	assert_non_null(strstr(doc, "range [1ms, 1h]"));
	assert_non_null(strstr(doc, "one of: fifo, fair, certainty"));
	assert_non_null(strstr(doc, "\n[store]\n"));
	assert_non_null(strstr(doc, "\n[daemon]\n"));
	assert_non_null(strstr(doc, "\n[sched]\n"));
	/* Top-level options come before the first section. */
	assert_true(strstr(doc, "#threads = 8") < strstr(doc, "[store]"));

	/* As written (all commented out) it parses and changes nothing. */
	assert_int_equal(config_set(cfg, "threads", "3", err, sizeof err), 0);
	assert_int_equal(config_set(cfg, "daemon.banner", "x", err, sizeof err), 0);
	assert_int_equal(config_set(cfg, "daemon.worker", "", err, sizeof err), 0);
	before = dump(cfg);
	if (config_load_string(cfg, "doc", doc, err, sizeof err) != 0)
		fail_msg("%s", err);
	after = dump(cfg);
	assert_string_equal(after, before);
	free(after);
	free(before);

	/* Uncommented, it sets every option back to its default. */
	live = uncomment(doc);
	if (config_load_string(cfg, "doc", live, err, sizeof err) != 0)
		fail_msg("%s\n%s", err, live);
	after = dump(cfg);
	config_free(cfg);
	cfg = new_cfg();
	before = dump(cfg);
	assert_string_equal(after, before);
	free(after);
	free(before);
	free(live);
	free(doc);
	config_free(cfg);
}

static void
test_write_doc_man(void **state)
{
	char *doc = write_doc(CONFIG_DOC_MAN), line[256];
	size_t i;

	assert_true(strncmp(doc, ".SH OPTIONS\n", 12) == 0);
	assert_non_null(strstr(doc, ".SS \"Top level\"\n"));
	assert_non_null(strstr(doc, ".SS \"[store]\"\n"));
	assert_non_null(strstr(doc, ".SS \"[daemon]\"\n"));
	for (i = 0; i < NOPTS; i++) {
		snprintf(line, sizeof line, ".TP\n\\fB%s\\fR = \\fI", opts[i].name);
		if (strstr(doc, line) == NULL)
			fail_msg("%s missing:\n%s", opts[i].name, doc);
		if (strstr(doc, opts[i].help) == NULL)
			fail_msg("help of %s missing", opts[i].name);
		if (opts[i].def == NULL)
			continue;
		snprintf(line, sizeof line, "Default: \\fB%s\\fR.\n", opts[i].def);
		if (strstr(doc, line) == NULL)
			fail_msg("default of %s missing:\n%s", opts[i].name, doc);
	}
	assert_non_null(strstr(doc, "Default: none.\n"));
	/* No line may start a roff request by accident. */
	assert_null(strstr(doc, "\n'"));
	free(doc);
}

static void
test_doc_roff_escaping(void **state)
{
	static const struct config_option t[] = {
		{ .name = "my-opt", .type = CONFIG_STRING, .def = "a\\b-c",
		  .help = ".starts with a dot" },
	};
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	assert_non_null(f);
	config_write_doc(t, 1, f, CONFIG_DOC_MAN);
	fclose(f);
	assert_non_null(strstr(buf, "\\fBmy\\-opt\\fR"));
	assert_non_null(strstr(buf, "Default: \\fBa\\eb\\-c\\fR."));
	assert_non_null(strstr(buf, "\n\\&.starts with a dot.\n"));
	free(buf);
}

static void
test_load_file(void **state)
{
	char path[] = "/tmp/test_config.XXXXXX", dir[] = "/tmp/test_config_dir.XXXXXX";
	char err[512], expect[600];
	struct config *cfg = new_cfg();
	const char *const *items;
	FILE *f;
	int fd;

	fd = mkstemp(path);
	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	assert_non_null(f);
	fputs("threads = 24\n[daemon]\nworker = 10.1.1.1:7701\nworker = 10.1.1.2:7701\n", f);
	fclose(f);
	assert_int_equal(config_load_file(cfg, path, err, sizeof err), 0);
	assert_int_equal(config_get_int(cfg, "threads"), 24);
	assert_int_equal(config_get_list(cfg, "daemon.worker", &items), 2);
	assert_string_equal(items[1], "10.1.1.2:7701");

	f = fopen(path, "w");
	assert_non_null(f);
	fputs("threads = 25\n\n[daemon]\npolicy = lottery\n", f);
	fclose(f);
	assert_int_equal(config_load_file(cfg, path, err, sizeof err), CERTA_ECONFIG);
	snprintf(expect, sizeof expect, "%s:4: 'lottery' is not one of: fifo, fair, certainty",
		path);
	assert_string_equal(err, expect);
	assert_int_equal(config_get_int(cfg, "threads"), 24);

	/* An embedded NUL byte is an error, not a silent truncation. */
	f = fopen(path, "w");
	assert_non_null(f);
	fwrite("threads = 26\nname = a\0b\n", 1, 24, f);
	fclose(f);
	assert_int_equal(config_load_file(cfg, path, err, sizeof err), CERTA_ECONFIG);
	snprintf(expect, sizeof expect, "%s:2: NUL byte in line", path);
	assert_string_equal(err, expect);
	assert_int_equal(config_get_int(cfg, "threads"), 24);
	assert_int_equal(unlink(path), 0);

	assert_int_equal(config_load_file(cfg, path, err, sizeof err), -ENOENT);
	snprintf(expect, sizeof expect, "%s: No such file or directory", path);
	assert_string_equal(err, expect);

	assert_non_null(mkdtemp(dir));
	assert_int_equal(config_load_file(cfg, dir, err, sizeof err), -EISDIR);
	snprintf(expect, sizeof expect, "%s: Is a directory", dir);
	assert_string_equal(err, expect);
	assert_int_equal(rmdir(dir), 0);
	assert_int_equal(config_get_int(cfg, "threads"), 24);
	config_free(cfg);
}

static void
get_unknown_name(void *arg)
{
	struct config *cfg = NULL;

	(void)arg;
	if (config_new(opts, NOPTS, &cfg) == 0)
		(void)config_get_int(cfg, "no.such.option");
}

static void
get_wrong_type(void *arg)
{
	struct config *cfg = NULL;

	(void)arg;
	if (config_new(opts, NOPTS, &cfg) == 0)
		(void)config_get_int(cfg, "name");
}

static void
get_known_name(void *arg)
{
	struct config *cfg = NULL;

	(void)arg;
	if (config_new(opts, NOPTS, &cfg) == 0) {
		(void)config_get_int(cfg, "threads");
		config_free(cfg);
	}
}

static void
table_duplicate(void *arg)
{
	static const struct config_option t[] = {
		{ .name = "a", .type = CONFIG_INT, .def = "1", .help = "a" },
		{ .name = "a", .type = CONFIG_INT, .def = "2", .help = "a again" },
	};
	struct config *cfg = NULL;

	(void)arg;
	(void)config_new(t, 2, &cfg);
}

static void
table_bad_default(void *arg)
{
	static const struct config_option t[] = {
		{ .name = "a", .type = CONFIG_INT, .def = "7", .min = 1, .max = 5,
		  .help = "out of its own range" },
	};
	struct config *cfg = NULL;

	(void)arg;
	(void)config_new(t, 1, &cfg);
}

static void
table_enum_without_choices(void *arg)
{
	static const struct config_option t[] = {
		{ .name = "a", .type = CONFIG_ENUM, .help = "no choices" },
	};
	struct config *cfg = NULL;

	(void)arg;
	(void)config_new(t, 1, &cfg);
}

static void
test_programming_errors_abort(void **state)
{
	assert_int_equal(harness_aborts(get_known_name, NULL), 0);
	assert_int_equal(harness_aborts(get_unknown_name, NULL), 1);
	assert_int_equal(harness_aborts(get_wrong_type, NULL), 1);
	assert_int_equal(harness_aborts(table_duplicate, NULL), 1);
	assert_int_equal(harness_aborts(table_bad_default, NULL), 1);
	assert_int_equal(harness_aborts(table_enum_without_choices, NULL), 1);
}

/* Deterministic generator so a failure reproduces. */
static uint32_t fuzz_state = 0x2545f491u;

static uint32_t
fuzz_next(void)
{
	fuzz_state ^= fuzz_state << 13;
	fuzz_state ^= fuzz_state >> 17;
	fuzz_state ^= fuzz_state << 5;
	return fuzz_state;
}

static void
check_message(const char *err, int rc)
{
	const char *s;

	if (rc == 0)
		return;
	assert_int_equal(rc, CERTA_ECONFIG);
	assert_true(strncmp(err, "fuzz:", 5) == 0);
	for (s = err; *s != '\0'; s++) {
		if ((unsigned char)*s < 0x20 || (unsigned char)*s >= 0x7f)
			fail_msg("unprintable byte in message: %s", err);
	}
}

static void
test_fuzz_random_bytes(void **state)
{
	static const char alphabet[] = "[]=#;\"\\ \t\r\n.abcdefhmnorstuwy0123456789KMGT-_";
	static const char seed_text[] =
		"name = \"x # y\"\nthreads = 12\nratio = 0.75\nverbose = yes\n[store]\n"
		"map_size = 2G\ncache = 64K\n[daemon]\nworker = a:1\nworker = b:2\n"
		"policy = fifo\ntimeout = 10s\n; end\n";
	struct config *cfg = new_cfg();
	char text[1024], err[256], *before, *after;
	size_t len, i, k;
	int iter, rc, ok = 0;

	before = dump(cfg);
	for (iter = 0; iter < 4000; iter++) {
		if (iter % 2 == 0) {
			/* Raw bytes, biased towards the syntax. */
			len = fuzz_next() % (sizeof text - 1);
			for (i = 0; i < len; i++) {
				uint32_t r = fuzz_next();

				text[i] = r % 4 == 0 ? (char)(r >> 8) :
					alphabet[(r >> 8) % (sizeof alphabet - 1)];
			}
			text[len] = '\0';
		} else {
			/* A valid file with a few bytes flipped. */
			memcpy(text, seed_text, sizeof seed_text);
			len = sizeof seed_text - 1;
			for (k = 0; k < 1 + fuzz_next() % 3; k++)
				text[fuzz_next() % len] = (char)fuzz_next();
		}
		rc = config_load_string(cfg, "fuzz", text, err, sizeof err);
		check_message(err, rc);
		after = dump(cfg);
		if (rc != 0) {
			assert_string_equal(after, before);
			free(after);
		} else {
			ok++;
			free(before);
			before = after;
		}
		/* The same text as a command-line value must not crash either. */
		text[strcspn(text, "=")] = '\0';
		rc = config_set(cfg, opts[fuzz_next() % NOPTS].name, text, err, sizeof err);
		assert_true(rc == 0 || rc == CERTA_ECONFIG);
		free(before);
		before = dump(cfg);
	}
	/* The mutations must let some texts through, or the test only covers errors. */
	assert_true(ok > 0);
	free(before);
	config_free(cfg);
}

/* Address syntax shared by --check-config, startup and AddWorker ("worker = ::::" passed). */
static void
test_check_address(void **state)
{
	static const struct {
		const char *addr;
		int port0, ok;
	} cases[] = {
		{ "127.0.0.1:7001", 0, 1 }, { "worker-3.example.com:443", 0, 1 },
		{ "[::1]:7000", 0, 1 }, { "[fe80::1]:65535", 0, 1 }, { "unix:/run/w.sock", 0, 1 },
		{ "127.0.0.1:0", 1, 1 }, { "127.0.0.1:0", 0, 0 },
		{ "::::", 0, 0 }, { "::::7000", 0, 0 }, { "::1:7000", 0, 0 }, { ":7000", 0, 0 },
		{ "host", 0, 0 }, { "host:", 0, 0 }, { "host:65536", 0, 0 }, { "host:-1", 0, 0 },
		{ "host:70x", 0, 0 }, { "ho st:70", 0, 0 }, { "[::1:70", 0, 0 }, { "[]:70", 0, 0 },
		{ "[zz::1]:70", 0, 0 }, { "unix:relative", 0, 0 }, { "host:99999999999999999999", 0, 0 },
	};
	char err[400];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		int rc = config_check_address(cases[i].addr, cases[i].port0, err, sizeof err);
		if ((rc == 0) != cases[i].ok)
			fail_msg("'%s': rc %d (%s)", cases[i].addr, rc, rc ? err : "accepted");
		if (rc != 0) {
			assert_int_equal(rc, CERTA_ECONFIG);
			assert_non_null(strstr(err, "is not host:port"));
		}
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_empty_table),
		cmocka_unit_test(test_sizes),
		cmocka_unit_test(test_durations),
		cmocka_unit_test(test_bools),
		cmocka_unit_test(test_each_type),
		cmocka_unit_test(test_bounds_inclusive),
		cmocka_unit_test(test_bad_values),
		cmocka_unit_test(test_long_value_shown_cut),
		cmocka_unit_test(test_comments_and_quoting),
		cmocka_unit_test(test_list_semantics),
		cmocka_unit_test(test_set_override),
		cmocka_unit_test(test_dup_is_deep),
		cmocka_unit_test(test_write_doc_ini),
		cmocka_unit_test(test_write_doc_man),
		cmocka_unit_test(test_doc_roff_escaping),
		cmocka_unit_test(test_load_file),
		cmocka_unit_test(test_programming_errors_abort),
		cmocka_unit_test(test_fuzz_random_bytes),
		cmocka_unit_test(test_check_address),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
