/*
 * fuzz_config.c — libFuzzer target for the INI configuration parser (lib/config.h).
 *
 * The input is loaded as a configuration file into a config built from a table with one
 * option of every type (bounded and unbounded, sections and top level, a list, an enum).
 * Checks: a failed load leaves the config unchanged (the example document still matches);
 * a successful load's values can be read with every getter and copied; every "name=value"
 * line is also tried with config_set.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/config.h"
#include "lib/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const fuzz_config_levels[] = { "error", "warn", "info", "debug", NULL };

static const struct config_option fuzz_config_table[] = {
	{ "threads", CONFIG_INT, "8", 1, 1000, NULL, "worker threads" },
	{ "offset", CONFIG_INT, "0", 0, 0, NULL, "unbounded integer" },
	{ "log.level", CONFIG_ENUM, "info", 0, 0, fuzz_config_levels, "log level" },
	{ "store.path", CONFIG_STRING, "/var/lib/certa", 0, 0, NULL, "state directory" },
	{ "store.map_size", CONFIG_SIZE, "64M", 1048576, 1099511627776.0, NULL, "map size" },
	{ "store.sync", CONFIG_BOOL, "true", 0, 0, NULL, "fsync" },
	{ "daemon.worker", CONFIG_LIST, "127.0.0.1:7701", 0, 0, NULL, "workers" },
	{ "daemon.ratio", CONFIG_DOUBLE, "0.5", 0, 1, NULL, "a ratio" },
	{ "daemon.scale", CONFIG_DOUBLE, NULL, 0, 0, NULL, "unbounded double" },
	{ "daemon.timeout", CONFIG_DURATION, "5s", 0, 86400000, NULL, "timeout" },
	{ "daemon.name", CONFIG_STRING, NULL, 0, 0, NULL, "unset string" },
};
#define FUZZ_CONFIG_N (sizeof fuzz_config_table / sizeof fuzz_config_table[0])

/* Reads every option with its typed getter. */
static void
fuzz_config_read(const struct config *cfg)
{
	const char *const *items;

	for (size_t i = 0; i < FUZZ_CONFIG_N; i++) {
		const struct config_option *o = &fuzz_config_table[i];
		const char *s;

		(void)config_is_set(cfg, o->name);
		switch (o->type) {
		case CONFIG_LIST: {
			size_t n = config_get_list(cfg, o->name, &items);
			for (size_t j = 0; j < n; j++)
				(void)strlen(items[j]);
			continue;
		}
		case CONFIG_INT:
		case CONFIG_SIZE:
		case CONFIG_DURATION:
			(void)config_get_int(cfg, o->name);
			break;
		case CONFIG_DOUBLE:
			(void)config_get_double(cfg, o->name);
			break;
		case CONFIG_BOOL:
			(void)config_get_bool(cfg, o->name);
			break;
		case CONFIG_ENUM:
			(void)config_get_enum(cfg, o->name);
			break;
		case CONFIG_STRING:
			break;
		}
		s = config_get_str(cfg, o->name);
		if (s != NULL)
			(void)strlen(s);
	}
}

/* The example document of cfg's current values, for comparing before and after. */
static char *
fuzz_config_snapshot(const struct config *cfg, size_t *len)
{
	char *buf = NULL;
	FILE *f = open_memstream(&buf, len);
	const char *const *items;

	if (f == NULL)
		abort();
	for (size_t i = 0; i < FUZZ_CONFIG_N; i++) {
		const struct config_option *o = &fuzz_config_table[i];

		if (o->type == CONFIG_LIST) {
			size_t n = config_get_list(cfg, o->name, &items);
			for (size_t j = 0; j < n; j++)
				fprintf(f, "%s+=%s\n", o->name, items[j]);
		} else {
			const char *s = config_get_str(cfg, o->name);
			fprintf(f, "%s=%s\n", o->name, s != NULL ? s : "(unset)");
		}
	}
	fclose(f);
	return buf;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int initialized;
	struct config *cfg, *dup;
	char err[256];
	char *text, *before, *after, *line, *save = NULL;
	size_t blen, alen;
	int rc;

	if (!initialized) {
		/* Below LOG_LVL_ERR: the parsers log nothing while fuzzed. */
		log_init("fuzz", LOG_FORMAT_PLAIN, (enum log_level)(LOG_LVL_ERR - 1));
		initialized = 1;
	}
	if (size > 65536)
		return -1;
	text = malloc(size + 1);
	if (text == NULL || config_new(fuzz_config_table, FUZZ_CONFIG_N, &cfg) != 0)
		abort();
	memcpy(text, data, size);
	text[size] = '\0';

	before = fuzz_config_snapshot(cfg, &blen);
	rc = config_load_string(cfg, "fuzz.conf", text, err, sizeof err);
	after = fuzz_config_snapshot(cfg, &alen);
	if (rc != 0 && (blen != alen || memcmp(before, after, blen) != 0))
		abort();   /* a failed load must leave the config as it was */
	if (rc != 0 && strlen(err) == 0)
		abort();   /* every failure has a message */
	fuzz_config_read(cfg);
	if (config_dup(cfg, &dup) != 0)
		abort();
	fuzz_config_read(dup);
	config_free(dup);

	/* Each "name=value" line as a command-line override. */
	for (line = strtok_r(text, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
		char *eq = strchr(line, '=');

		if (eq == NULL)
			continue;
		*eq = '\0';
		(void)config_set(cfg, line, eq + 1, err, sizeof err);
	}
	fuzz_config_read(cfg);
	free(before);
	free(after);
	config_free(cfg);
	free(text);
	return 0;
}
