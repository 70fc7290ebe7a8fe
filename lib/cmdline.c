/* cmdline.c — the command line shared by certad and certa-worker (see cmdline.h). */
#include "lib/cmdline.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "lib/error.h"
#include "lib/version.h"

/* getopt_long values: the built-in options, then CMDLINE_FLAG0 + i for the program's flag i. */
enum cmdline_opt {
	CMDLINE_CONFIG = 'c',
	CMDLINE_SET = 's',
	CMDLINE_HELP = 'h',
	CMDLINE_VERSION = 'V',
	CMDLINE_CHECK = 256,
	CMDLINE_PRINT,
	CMDLINE_PRINT_MAN,
	CMDLINE_FLAG0,
};

static const struct option cmdline_builtin[] = {
	{ "config", required_argument, NULL, CMDLINE_CONFIG },
	{ "set", required_argument, NULL, CMDLINE_SET },
	{ "check-config", no_argument, NULL, CMDLINE_CHECK },
	{ "print-config", no_argument, NULL, CMDLINE_PRINT },
	{ "print-config-man", no_argument, NULL, CMDLINE_PRINT_MAN },
	{ "help", no_argument, NULL, CMDLINE_HELP },
	{ "version", no_argument, NULL, CMDLINE_VERSION },
};
#define CMDLINE_NBUILTIN (sizeof cmdline_builtin / sizeof cmdline_builtin[0])

/* One override, in command-line order: --set KEY=VALUE (key NULL, arg "KEY=VALUE") or a
 * program flag (key its option, arg its argument).  Both point into argv or the table. */
struct cmdline_set {
	const char *key;
	const char *arg;
};

struct cmdline {
	const struct cmdline_program *prog;
	const char *config_path;
	struct cmdline_set *sets;
	size_t nsets;
	int *switches;  /* per program flag: 0, or 1 + the argv index of its last occurrence */
	int check_only;
};

/* Applies one override to cfg; the message in err as the programs have always worded it. */
static int
cmdline_apply(struct config *cfg, const struct cmdline_set *s, char *err, size_t errlen)
{
	char name[128], sub[400];
	const char *eq;
	int rc;

	if (s->key != NULL) {
		rc = config_set(cfg, s->key, s->arg, sub, sizeof sub);
	} else {
		eq = strchr(s->arg, '=');
		if (eq == NULL || (size_t)(eq - s->arg) >= sizeof name) {
			snprintf(err, errlen, "--set expects KEY=VALUE, got '%s'", s->arg);
			return CERTA_ECONFIG;
		}
		memcpy(name, s->arg, (size_t)(eq - s->arg));
		name[eq - s->arg] = '\0';
		rc = config_set(cfg, name, eq + 1, sub, sizeof sub);
	}
	if (rc != 0)
		snprintf(err, errlen, "--set: %s", sub);
	return rc;
}

int
cmdline_load(const struct cmdline *cl, struct config **out, char *err, size_t errlen)
{
	const struct cmdline_program *prog = cl->prog;
	struct config *cfg;
	size_t i;
	int rc;

	rc = config_new(prog->options, prog->noptions, &cfg);
	if (rc != 0) {
		snprintf(err, errlen, "%s", certa_strerror(rc));
		return rc;
	}
	if (cl->config_path != NULL) {
		rc = config_load_file(cfg, cl->config_path, err, errlen);
		if (rc != 0)
			goto fail_cfg;
	}
	for (i = 0; i < cl->nsets; i++) {
		rc = cmdline_apply(cfg, &cl->sets[i], err, errlen);
		if (rc != 0)
			goto fail_cfg;
	}
	if (prog->validate != NULL && (rc = prog->validate(cfg, err, errlen)) != 0)
		goto fail_cfg;
	*out = cfg;
	return 0;
fail_cfg:
	config_free(cfg);
	return rc;
}

/* The getopt_long table: built-ins, then the program's flags; NULL when out of memory. */
static struct option *
cmdline_longopts(const struct cmdline_program *prog)
{
	struct option *lo = calloc(CMDLINE_NBUILTIN + prog->nflags + 1, sizeof *lo);
	size_t i;

	if (lo == NULL)
		return NULL;
	memcpy(lo, cmdline_builtin, sizeof cmdline_builtin);
	for (i = 0; i < prog->nflags; i++) {
		lo[CMDLINE_NBUILTIN + i].name = prog->flags[i].flag;
		lo[CMDLINE_NBUILTIN + i].has_arg =
		    prog->flags[i].key != NULL ? required_argument : no_argument;
		lo[CMDLINE_NBUILTIN + i].val = CMDLINE_FLAG0 + (int)i;
	}
	return lo;
}

/* Documentation, help and version: print and return the exit status. */
static int
cmdline_print(const struct cmdline_program *prog, int c)
{
	switch (c) {
	case CMDLINE_PRINT:
	case CMDLINE_PRINT_MAN:
		config_write_doc(prog->options, prog->noptions, stdout,
		    c == CMDLINE_PRINT ? CONFIG_DOC_INI : CONFIG_DOC_MAN);
		break;
	case CMDLINE_HELP:
		prog->usage(stdout);
		break;
	default:
		printf("%s %s\n", prog->name, CERTA_VERSION);
		break;
	}
	return fflush(stdout) != 0 || ferror(stdout) ? 1 : 0;
}

/* Reads argv into cl: CMDLINE_RUN, or the exit status. */
static int
cmdline_getopt(struct cmdline *cl, int argc, char **argv, const struct option *lo)
{
	const struct cmdline_program *prog = cl->prog;
	int c;

	optind = 0;  /* glibc: start afresh (the unit tests parse many command lines) */
	while ((c = getopt_long(argc, argv, "c:s:hV", lo, NULL)) != -1) {
		switch (c) {
		case CMDLINE_CONFIG:
			cl->config_path = optarg;
			break;
		case CMDLINE_SET:
			cl->sets[cl->nsets++] = (struct cmdline_set){ NULL, optarg };
			break;
		case CMDLINE_CHECK:
			cl->check_only = 1;
			break;
		case CMDLINE_PRINT:
		case CMDLINE_PRINT_MAN:
		case CMDLINE_HELP:
		case CMDLINE_VERSION:
			return cmdline_print(prog, c);
		default:
			if (c < CMDLINE_FLAG0 || (size_t)(c - CMDLINE_FLAG0) >= prog->nflags) {
				prog->usage(stderr);
				return 2;
			}
			if (prog->flags[c - CMDLINE_FLAG0].key == NULL)
				cl->switches[c - CMDLINE_FLAG0] = optind;
			else
				cl->sets[cl->nsets++] = (struct cmdline_set){
					prog->flags[c - CMDLINE_FLAG0].key, optarg };
			break;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "%s: unexpected argument '%s'\n", prog->name, argv[optind]);
		prog->usage(stderr);
		return 2;
	}
	return CMDLINE_RUN;
}

int
cmdline_parse(const struct cmdline_program *prog, int argc, char **argv,
	struct cmdline **out, struct config **cfg)
{
	struct cmdline *cl;
	struct option *lo;
	char err[512];
	int rc;

	cl = calloc(1, sizeof *cl);
	if (cl == NULL)
		return 1;
	cl->prog = prog;
	cl->sets = calloc((size_t)argc + 1, sizeof *cl->sets);
	cl->switches = calloc(prog->nflags + 1, sizeof *cl->switches);
	lo = cmdline_longopts(prog);
	if (cl->sets == NULL || cl->switches == NULL || lo == NULL) {
		rc = 1;
		goto fail_cl;
	}
	rc = cmdline_getopt(cl, argc, argv, lo);
	if (rc != CMDLINE_RUN)
		goto fail_cl;
	rc = cmdline_load(cl, cfg, err, sizeof err);
	if (rc != 0) {
		fprintf(stderr, "%s: %s\n", prog->name, err);
		rc = rc == -ENOMEM ? 1 : 2;
		goto fail_cl;
	}
	free(lo);
	*out = cl;
	return CMDLINE_RUN;
fail_cl:
	free(lo);
	cmdline_free(cl);
	return rc;
}

int
cmdline_check_only(const struct cmdline *cl)
{
	return cl->check_only;
}

int
cmdline_switch(const struct cmdline *cl, const char *flag)
{
	size_t i;

	for (i = 0; i < cl->prog->nflags; i++)
		if (cl->prog->flags[i].key == NULL && strcmp(cl->prog->flags[i].flag, flag) == 0)
			return cl->switches[i];
	return 0;
}

void
cmdline_free(struct cmdline *cl)
{
	if (cl == NULL)
		return;
	free(cl->sets);
	free(cl->switches);
	free(cl);
}
