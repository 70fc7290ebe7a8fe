/* cmd.c — certactl's command table, option parsing, help and dispatch; see cmd.h. */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/client.h"
#include "cli/cmd.h"
#include "cli/cmd_policy.h"
#include "cli/cmd_program.h"
#include "cli/cmd_stats.h"
#include "cli/cmd_tenant.h"
#include "cli/cmd_top.h"
#include "cli/cmd_worker.h"
#include "lib/version.h"

struct cmd_args {
	const struct cmd_entry *entry;
	int argc;
	char **argv;
	const char *value[CMD_MAX_OPTIONS];
	int order[CMD_MAX_OPTIONS];
};

static int cmd_help_exec(struct cmd_ctx *ctx, const struct cmd_args *args);

/* Most words in a command name ("tenant key rotate"). */
#define CMD_MAX_WORDS 3

static const struct cmd_entry cmd_help_entry = {
	.name = "help",
	.usage = "[COMMAND]",
	.summary = "show help for certactl or one command",
	.help = "Prints the overview, or the help of COMMAND (same as `certactl COMMAND --help`;\n"
	    "`certactl help tenant` lists the tenant commands).",
	.options = NULL,
	.min_args = 0,
	.max_args = CMD_MAX_WORDS,
	.offline = 1,
	.exec = cmd_help_exec,
};

/*
 * Every command certactl knows, in the order `certactl --help` lists them; each is defined next
 * to its handlers in its own cli/cmd_*.c file.  The admin commands (tenant, policy, worker,
 * stats, top) call the Admin service.
 */
static const struct cmd_entry *const cmd_table[] = {
	&cmd_program_submit_entry,
	&cmd_program_watch_entry,
	&cmd_program_get_entry,
	&cmd_program_cancel_entry,
	&cmd_program_list_entry,
	&cmd_tenant_add_entry,
	&cmd_tenant_list_entry,
	&cmd_tenant_show_entry,
	&cmd_tenant_set_entry,
	&cmd_tenant_rm_entry,
	&cmd_tenant_key_rotate_entry,
	&cmd_tenant_key_revoke_entry,
	&cmd_policy_get_entry,
	&cmd_policy_set_entry,
	&cmd_policy_history_entry,
	&cmd_policy_rollback_entry,
	&cmd_worker_list_entry,
	&cmd_worker_add_entry,
	&cmd_worker_rm_entry,
	&cmd_worker_drain_entry,
	&cmd_stats_entry,
	&cmd_top_entry,
	&cmd_help_entry,
};
#define CMD_TABLE_LEN (sizeof cmd_table / sizeof cmd_table[0])

/* Options accepted before the command and after it. */
enum cmd_global {
	CMD_G_SERVER,
	CMD_G_TOKEN,
	CMD_G_ADMIN_TOKEN,
	CMD_G_JSON,
	CMD_G_TIMEOUT,
	CMD_G_COUNT
};

static const struct cmd_option cmd_global_options[CMD_G_COUNT] = {
	[CMD_G_SERVER] = { "server", "ADDR",
	    "certad address, host:port or unix:PATH (env CERTA_SERVER, default "
	    CLI_DEFAULT_SERVER ")" },
	[CMD_G_TOKEN] = { "token", "KEY",
	    "API key, sent as `authorization: Bearer KEY` (env CERTA_TOKEN keeps it out of ps)" },
	[CMD_G_ADMIN_TOKEN] = { "admin-token", "TOKEN",
	    "admin credential for tenant, policy, worker, stats and top, sent as `authorization: "
	    "Bearer TOKEN` in place of --token (env CERTA_ADMIN_TOKEN); not needed with --server "
	    "unix:" CLI_ADMIN_SOCKET },
	[CMD_G_JSON] = { "json", NULL, "print one JSON object per line instead of text" },
	[CMD_G_TIMEOUT] = { "timeout", "MS", "deadline of each unary call in milliseconds "
	    "(default 10000; streams have none)" },
};

/* The exit statuses, as `certactl --help` documents them. */
static const struct {
	int code;
	const char *text;
} cmd_exit_table[] = {
	{ CLI_EXIT_OK, "success" },
	{ CLI_EXIT_ERROR, "the server answered with an error (NOT_FOUND, INVALID_ARGUMENT, ...)" },
	{ CLI_EXIT_USAGE, "usage error" },
	{ CLI_EXIT_UNAVAILABLE, "server unavailable or no answer in time (UNAVAILABLE, "
	    "DEADLINE_EXCEEDED)" },
	{ CLI_EXIT_PROGRAM, "submit/watch: the program ended as failed or cancelled" },
	{ CLI_EXIT_INTERRUPTED, "interrupted (Ctrl-C) while following a program, which keeps "
	    "running" },
};

/* getopt_long values: command options, then global ones, above any character. */
#define CMD_VAL_OPTION 1000
#define CMD_VAL_GLOBAL 2000

/* Resets getopt for a new argument vector (glibc and musl: optind = 0; BSDs: optreset). */
static void
cmd_getopt_reset(void)
{
#if defined(__APPLE__) || defined(__FreeBSD__) || defined(__OpenBSD__) || defined(__NetBSD__)
	extern int optreset;
	optreset = 1;
	optind = 1;
#else
	optind = 0;
#endif
	opterr = 0;
}

static size_t
cmd_options_count(const struct cmd_option *opts)
{
	size_t n = 0;

	while (opts != NULL && opts[n].name != NULL)
		n++;
	return n;
}

/* --- help ------------------------------------------------------------------------------- */

/* Help text starts in this column and lines end before CMD_HELP_WIDTH. */
#define CMD_HELP_INDENT 24
#define CMD_HELP_WIDTH 80

/* Writes text word-wrapped, continuation lines indented to CMD_HELP_INDENT. */
static void
cmd_print_wrapped(FILE *f, const char *text)
{
	size_t col = CMD_HELP_INDENT, wlen;
	const char *p = text;

	while (*p) {
		while (*p == ' ')
			p++;
		wlen = strcspn(p, " ");
		if (wlen == 0)
			break;
		if (col > CMD_HELP_INDENT && col + 1 + wlen >= CMD_HELP_WIDTH) {
			fprintf(f, "\n%*s", CMD_HELP_INDENT, "");
			col = CMD_HELP_INDENT;
		} else if (col > CMD_HELP_INDENT) {
			fputc(' ', f);
			col++;
		}
		fwrite(p, 1, wlen, f);
		col += wlen;
		p += wlen;
	}
	fputc('\n', f);
}

/* "  --budget T            help" lines. */
static void
cmd_print_options(FILE *f, const struct cmd_option *opts, size_t n)
{
	char left[64];
	size_t i;

	for (i = 0; i < n; i++) {
		snprintf(left, sizeof left, "--%s%s%s", opts[i].name, opts[i].metavar ? " " : "",
		    opts[i].metavar ? opts[i].metavar : "");
		if (strlen(left) > CMD_HELP_INDENT - 4)
			fprintf(f, "  %s\n%*s", left, CMD_HELP_INDENT, "");
		else
			fprintf(f, "  %-*s  ", CMD_HELP_INDENT - 4, left);
		cmd_print_wrapped(f, opts[i].help);
	}
}

static void
cmd_print_usage(FILE *f, const struct cmd_entry *e)
{
	fprintf(f, "usage: certactl %s%s%s%s\n", e->name,
	    cmd_options_count(e->options) > 0 ? " [options]" : "", *e->usage ? " " : "",
	    e->usage);
}

static void
cmd_print_command_help(FILE *f, const struct cmd_entry *e)
{
	cmd_print_usage(f, e);
	fprintf(f, "\n%s\n", e->help);
	if (cmd_options_count(e->options) > 0) {
		fprintf(f, "\noptions:\n");
		cmd_print_options(f, e->options, cmd_options_count(e->options));
	}
	if (e->admin)
		fprintf(f, "\nAdmin command: authenticate with --admin-token TOKEN (env "
		    "CERTA_ADMIN_TOKEN),\nor run it on the daemon's host with --server unix:"
		    CLI_ADMIN_SOCKET ".\n");
	fprintf(f, "\nglobal options (see certactl --help): --server ADDR, --token KEY,\n"
	    "  --admin-token TOKEN, --json, --timeout MS\n");
}

/* Width of the name + usage column of command lists. */
#define CMD_LIST_COLS 28

/* "  tenant add NAME              summary" */
static void
cmd_print_list_line(FILE *f, const struct cmd_entry *e)
{
	char left[96];

	snprintf(left, sizeof left, "%s%s%s", e->name, *e->usage ? " " : "", e->usage);
	if (strlen(left) > CMD_LIST_COLS)
		fprintf(f, "  %s\n  %-*s  %s\n", left, CMD_LIST_COLS, "", e->summary);
	else
		fprintf(f, "  %-*s  %s\n", CMD_LIST_COLS, left, e->summary);
}

static void
cmd_print_main_help(FILE *f)
{
	size_t i;

	fprintf(f,
	    "usage: certactl [--server ADDR] [--token KEY] [--admin-token TOKEN] [--json]\n"
	    "                [--timeout MS] COMMAND [ARGS]\n"
	    "       certactl COMMAND --help\n"
	    "       certactl --version\n"
	    "\ncertactl talks to certad, the certa control daemon: it submits reasoning\n"
	    "programs, follows their progress and shows their results; operators manage\n"
	    "tenants, API keys, quotas, policies and workers and watch tenant statistics.\n"
	    "\ncommands:\n");
	for (i = 0; i < CMD_TABLE_LEN; i++)
		cmd_print_list_line(f, cmd_table[i]);
	fprintf(f, "\nglobal options (also accepted after COMMAND):\n");
	cmd_print_options(f, cmd_global_options, CMD_G_COUNT);
	fprintf(f, "  %-20s  %s\n  %-20s  %s\n", "--help", "show this help", "--version",
	    "print the version");
	fprintf(f, "\nenvironment:\n"
	    "  CERTA_SERVER          default for --server\n"
	    "  CERTA_TOKEN           default for --token\n"
	    "  CERTA_ADMIN_TOKEN     default for --admin-token\n");
	fprintf(f, "\nadmin access: the tenant, policy, worker, stats and top commands call the "
	    "Admin\nservice.  They send --admin-token (or, without one, --token); on the "
	    "daemon's\nhost --server unix:" CLI_ADMIN_SOCKET " needs no token (the socket's "
	    "file\nmode decides who may connect).\n");
	fprintf(f, "\nexit status:\n");
	for (i = 0; i < sizeof cmd_exit_table / sizeof cmd_exit_table[0]; i++)
		fprintf(f, "  %-4d  %s\n", cmd_exit_table[i].code, cmd_exit_table[i].text);
}

/* Number of words in a command name. */
static int
cmd_name_words(const char *name)
{
	int n = 1;

	for (; *name; name++)
		n += *name == ' ';
	return n;
}

/* True when the first n words of name are argv[0..n-1]. */
static int
cmd_name_match(const char *name, int n, char *const *argv)
{
	size_t len;
	int i;

	for (i = 0; i < n; i++) {
		len = strcspn(name, " ");
		if (len == 0 || strlen(argv[i]) != len || memcmp(name, argv[i], len) != 0)
			return 0;
		name += len;
		if (*name == ' ')
			name++;
	}
	return 1;
}

/* The command whose name is the longest run of words at the start of argv (argc of them);
 * *nwords gets its word count.  NULL when none. */
static const struct cmd_entry *
cmd_find(int argc, char *const *argv, int *nwords)
{
	const struct cmd_entry *best = NULL;
	size_t i;
	int k;

	for (i = 0; i < CMD_TABLE_LEN; i++) {
		k = cmd_name_words(cmd_table[i]->name);
		if (k <= argc && (best == NULL || k > *nwords) &&
		    cmd_name_match(cmd_table[i]->name, k, argv)) {
			best = cmd_table[i];
			*nwords = k;
		}
	}
	return best;
}

/* How many words at the start of argv name a group ("tenant", "tenant key"): a prefix of
 * longer command names.  0 when none. */
static int
cmd_group_depth(int argc, char *const *argv)
{
	size_t i;
	int k, g = 0;

	for (i = 0; i < CMD_TABLE_LEN; i++) {
		k = cmd_name_words(cmd_table[i]->name) - 1;
		if (k > argc)
			k = argc;
		for (; k > g; k--)
			if (cmd_name_match(cmd_table[i]->name, k, argv)) {
				g = k;
				break;
			}
	}
	return g;
}

/* The first g words of argv joined by spaces. */
static const char *
cmd_group_name(int g, char *const *argv, char *buf, size_t len)
{
	size_t at = 0;
	int i;

	buf[0] = '\0';
	for (i = 0; i < g && at < len; i++)
		at += (size_t)snprintf(buf + at, len - at, "%s%s", i > 0 ? " " : "", argv[i]);
	return buf;
}

/* The commands of group `group` (g words of argv). */
static void
cmd_print_group(FILE *f, int g, char *const *argv)
{
	char name[128];
	size_t i;

	cmd_group_name(g, argv, name, sizeof name);
	fprintf(f, "usage: certactl %s SUBCOMMAND [options] [ARGS]\n"
	    "       certactl %s SUBCOMMAND --help\n\ncommands:\n", name, name);
	for (i = 0; i < CMD_TABLE_LEN; i++)
		if (cmd_name_words(cmd_table[i]->name) > g &&
		    cmd_name_match(cmd_table[i]->name, g, argv))
			cmd_print_list_line(f, cmd_table[i]);
}

/* argv names no command: a group without (or with an unknown) subcommand, or nothing known. */
static int
cmd_not_found(int argc, char *const *argv)
{
	char name[128];
	int g = cmd_group_depth(argc, argv);

	if (g == 0) {
		fprintf(stderr, "certactl: unknown command '%s' (certactl --help lists the "
		    "commands)\n", argv[0]);
		return CLI_EXIT_USAGE;
	}
	cmd_group_name(g, argv, name, sizeof name);
	if (g < argc && (strcmp(argv[g], "--help") == 0 || strcmp(argv[g], "-h") == 0)) {
		cmd_print_group(stdout, g, argv);
		return CLI_EXIT_OK;
	}
	if (g == argc)
		fprintf(stderr, "certactl %s: missing subcommand\n", name);
	else if (argv[g][0] == '-')
		fprintf(stderr, "certactl %s: expected a subcommand, not '%s' (options go after "
		    "the subcommand)\n", name, argv[g]);
	else
		fprintf(stderr, "certactl %s: unknown subcommand '%s'\n", name, argv[g]);
	cmd_print_group(stderr, g, argv);
	return CLI_EXIT_USAGE;
}

static int
cmd_help_exec(struct cmd_ctx *ctx, const struct cmd_args *args)
{
	const struct cmd_entry *e;
	int n = cmd_args_count(args), nw = 0;

	(void)ctx;
	if (n == 0) {
		cmd_print_main_help(stdout);
		return CLI_EXIT_OK;
	}
	e = cmd_find(n, args->argv, &nw);
	if (e != NULL && nw == n) {
		cmd_print_command_help(stdout, e);
		return CLI_EXIT_OK;
	}
	if (e == NULL && cmd_group_depth(n, args->argv) == n) {
		cmd_print_group(stdout, n, args->argv);
		return CLI_EXIT_OK;
	}
	return cmd_usage_error(args, "unknown command '%s'", cmd_args_at(args, 0));
}

/* --- arguments -------------------------------------------------------------------------- */

int
cmd_args_count(const struct cmd_args *a)
{
	return a->argc;
}

const char *
cmd_args_at(const struct cmd_args *a, int i)
{
	return i >= 0 && i < a->argc ? a->argv[i] : NULL;
}

/* Index of option name in the entry's table; an unknown name is a programming error. */
static size_t
cmd_args_index(const struct cmd_args *a, const char *name)
{
	size_t i, n = cmd_options_count(a->entry->options);

	for (i = 0; i < n; i++)
		if (strcmp(a->entry->options[i].name, name) == 0)
			return i;
	fprintf(stderr, "certactl: internal error: %s has no option --%s\n", a->entry->name,
	    name);
	abort();
}

const char *
cmd_args_get(const struct cmd_args *a, const char *name)
{
	return a->value[cmd_args_index(a, name)];
}

int
cmd_args_order(const struct cmd_args *a, const char *name)
{
	return a->order[cmd_args_index(a, name)];
}

int
cmd_usage_error(const struct cmd_args *a, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "certactl %s: ", a->entry->name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	cmd_print_usage(stderr, a->entry);
	fprintf(stderr, "(certactl %s --help for more)\n", a->entry->name);
	return CLI_EXIT_USAGE;
}

/* Strict unsigned decimal: digits only, no sign, no spaces, no overflow. */
static int
cmd_parse_u64(const char *s, uint64_t *out)
{
	uint64_t v = 0;

	if (*s == '\0')
		return -EINVAL;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -EINVAL;
		if (v > (UINT64_MAX - (uint64_t)(*s - '0')) / 10)
			return -ERANGE;
		v = v * 10 + (uint64_t)(*s - '0');
	}
	*out = v;
	return 0;
}

int
cmd_args_uint(const struct cmd_args *a, const char *name, uint64_t min, uint64_t max,
    uint64_t *out)
{
	const char *s = cmd_args_get(a, name);
	uint64_t v;

	if (s == NULL)
		return CLI_EXIT_OK;
	if (cmd_parse_u64(s, &v) != 0 || v < min || v > max)
		return cmd_usage_error(a, "--%s expects a whole number from %llu to %llu, not '%s'",
		    name, (unsigned long long)min, (unsigned long long)max, s);
	*out = v;
	return CLI_EXIT_OK;
}

/* An empty NAME or ADDR would only come back from the server as a less clear error. */
int
cmd_args_nonempty(const struct cmd_args *a, int i, const char *what)
{
	if (*cmd_args_at(a, i) == '\0')
		return cmd_usage_error(a, "the %s is empty", what);
	return CLI_EXIT_OK;
}

/* --- parsing ------------------------------------------------------------------------------ */

void
cmd_ctx_init(struct cmd_ctx *ctx)
{
	const char *s;

	memset(ctx, 0, sizeof *ctx);
	s = getenv("CERTA_SERVER");
	ctx->server = s != NULL && *s ? s : CLI_DEFAULT_SERVER;
	s = getenv("CERTA_TOKEN");
	ctx->token = s != NULL && *s ? s : NULL;
	s = getenv("CERTA_ADMIN_TOKEN");
	ctx->admin_token = s != NULL && *s ? s : NULL;
	ctx->timeout_ms = CLI_DEFAULT_TIMEOUT_MS;
}

/* Applies one global option; who is "" before the command or "CMD" after it. */
static int
cmd_global_set(struct cmd_ctx *ctx, enum cmd_global g, const char *arg, const char *who)
{
	uint64_t v;

	switch (g) {
	case CMD_G_SERVER:
		if (*arg == '\0') {
			fprintf(stderr, "certactl%s%s: --server needs an address (host:port or "
			    "unix:PATH)\n", *who ? " " : "", who);
			return CLI_EXIT_USAGE;
		}
		ctx->server = arg;
		break;
	case CMD_G_TOKEN:
		ctx->token = *arg ? arg : NULL;
		break;
	case CMD_G_ADMIN_TOKEN:
		ctx->admin_token = *arg ? arg : NULL;
		break;
	case CMD_G_JSON:
		ctx->json = 1;
		break;
	case CMD_G_TIMEOUT:
		if (cmd_parse_u64(arg, &v) != 0 || v < 1 || v > 86400000) {
			fprintf(stderr, "certactl%s%s: --timeout expects milliseconds from 1 to "
			    "86400000, not '%s'\n", *who ? " " : "", who, arg);
			return CLI_EXIT_USAGE;
		}
		ctx->timeout_ms = (int)v;
		break;
	default:
		abort();
	}
	return CLI_EXIT_OK;
}

/* Appends struct option rows for opts (n of them) with values base + i. */
static size_t
cmd_longopts_add(struct option *lo, size_t at, const struct cmd_option *opts, size_t n,
    int base)
{
	size_t i;

	for (i = 0; i < n; i++, at++) {
		lo[at].name = opts[i].name;
		lo[at].has_arg = opts[i].metavar != NULL ? required_argument : no_argument;
		lo[at].flag = NULL;
		lo[at].val = base + (int)i;
	}
	return at;
}

/* The name of the option getopt just complained about. */
static const char *
cmd_bad_option(char **argv, const struct option *lo, char *buf, size_t len)
{
	size_t i;

	if (optopt >= CMD_VAL_OPTION) {
		for (i = 0; lo[i].name != NULL; i++)
			if (lo[i].val == optopt) {
				snprintf(buf, len, "--%s", lo[i].name);
				return buf;
			}
	}
	if (optopt > 0 && optopt < 256) {
		snprintf(buf, len, "-%c", optopt);
		return buf;
	}
	return argv[optind - 1];
}

/* Parses a command's options and positional arguments (GNU permutation: options may follow
 * the arguments; `--` ends options).  *help is set for --help/-h. */
static int
cmd_parse(struct cmd_ctx *ctx, const struct cmd_entry *e, int argc, char **argv,
    struct cmd_args *a, int *help)
{
	struct option lo[CMD_MAX_OPTIONS + CMD_G_COUNT + 2];
	size_t nopt = cmd_options_count(e->options), at;
	char buf[64];
	int c, order = 0, rc;

	if (nopt > CMD_MAX_OPTIONS)
		abort();
	memset(a, 0, sizeof *a);
	a->entry = e;
	at = cmd_longopts_add(lo, 0, e->options, nopt, CMD_VAL_OPTION);
	at = cmd_longopts_add(lo, at, cmd_global_options, CMD_G_COUNT, CMD_VAL_GLOBAL);
	lo[at++] = (struct option){ "help", no_argument, NULL, 'h' };
	lo[at] = (struct option){ NULL, 0, NULL, 0 };

	*help = 0;
	cmd_getopt_reset();
	while ((c = getopt_long(argc, argv, ":h", lo, NULL)) != -1) {
		order++;
		if (c == 'h') {
			*help = 1;
		} else if (c >= CMD_VAL_GLOBAL && c < CMD_VAL_GLOBAL + CMD_G_COUNT) {
			rc = cmd_global_set(ctx, (enum cmd_global)(c - CMD_VAL_GLOBAL), optarg,
			    e->name);
			if (rc != CLI_EXIT_OK)
				return rc;
		} else if (c >= CMD_VAL_OPTION && c < CMD_VAL_OPTION + (int)nopt) {
			a->value[c - CMD_VAL_OPTION] = optarg != NULL ? optarg : "";
			a->order[c - CMD_VAL_OPTION] = order;
		} else if (c == ':') {
			return cmd_usage_error(a, "option %s needs a value",
			    cmd_bad_option(argv, lo, buf, sizeof buf));
		} else {
			return cmd_usage_error(a, "unknown option '%s' (put -- before an argument "
			    "that starts with '-')", cmd_bad_option(argv, lo, buf, sizeof buf));
		}
	}
	a->argc = argc - optind;
	a->argv = argv + optind;
	return CLI_EXIT_OK;
}

/* Runs one command: argv[0] is its name. */
static int
cmd_run(struct cmd_ctx *ctx, const struct cmd_entry *e, int argc, char **argv)
{
	struct cmd_args a;
	const char *token;
	int help, rc;

	rc = cmd_parse(ctx, e, argc, argv, &a, &help);
	if (rc != CLI_EXIT_OK)
		return rc;
	if (help) {
		cmd_print_command_help(stdout, e);
		return CLI_EXIT_OK;
	}
	if (a.argc < e->min_args)
		return cmd_usage_error(&a, "missing argument%s", e->max_args > 1 ? "s" : "");
	if (a.argc > e->max_args)
		return cmd_usage_error(&a, "unexpected argument '%s'", a.argv[e->max_args]);
	if (!e->offline) {
		/* Admin calls carry the admin credential when there is one. */
		token = e->admin && ctx->admin_token != NULL ? ctx->admin_token : ctx->token;
		rc = client_new(ctx->server, token, e->admin, ctx->timeout_ms, &ctx->client);
		if (rc == -EINVAL)
			return cmd_usage_error(&a, "the token may contain only printable ASCII");
		if (rc != 0) {
			fprintf(stderr, "certactl: cannot create a channel to %s: %s\n", ctx->server,
			    strerror(-rc));
			return CLI_EXIT_ERROR;
		}
	}
	rc = e->exec(ctx, &a);
	client_free(ctx->client);
	ctx->client = NULL;
	return rc;
}

int
cmd_main(struct cmd_ctx *ctx, int argc, char **argv)
{
	struct option lo[CMD_G_COUNT + 3];
	const struct cmd_entry *e;
	size_t at;
	char buf[64];
	int c, rc, nw = 0;

	at = cmd_longopts_add(lo, 0, cmd_global_options, CMD_G_COUNT, CMD_VAL_GLOBAL);
	lo[at++] = (struct option){ "help", no_argument, NULL, 'h' };
	lo[at++] = (struct option){ "version", no_argument, NULL, 'V' };
	lo[at] = (struct option){ NULL, 0, NULL, 0 };

	/* '+': stop at the command name; its options are parsed by cmd_parse. */
	cmd_getopt_reset();
	while ((c = getopt_long(argc, argv, "+:hV", lo, NULL)) != -1) {
		switch (c) {
		case 'h':
			cmd_print_main_help(stdout);
			return CLI_EXIT_OK;
		case 'V':
			printf("certactl %s\n", CERTA_VERSION);
			return CLI_EXIT_OK;
		case ':':
			fprintf(stderr, "certactl: option %s needs a value\n",
			    cmd_bad_option(argv, lo, buf, sizeof buf));
			return CLI_EXIT_USAGE;
		case '?':
			fprintf(stderr, "certactl: unknown option '%s' (certactl --help)\n",
			    cmd_bad_option(argv, lo, buf, sizeof buf));
			return CLI_EXIT_USAGE;
		default:
			rc = cmd_global_set(ctx, (enum cmd_global)(c - CMD_VAL_GLOBAL), optarg, "");
			if (rc != CLI_EXIT_OK)
				return rc;
			break;
		}
	}
	if (optind >= argc) {
		fprintf(stderr, "certactl: no command given\n");
		fprintf(stderr, "usage: certactl [global options] COMMAND [ARGS] "
		    "(certactl --help lists the commands)\n");
		return CLI_EXIT_USAGE;
	}
	e = cmd_find(argc - optind, argv + optind, &nw);
	if (e == NULL)
		return cmd_not_found(argc - optind, argv + optind);
	/* The command's last word becomes its argv[0]. */
	return cmd_run(ctx, e, argc - optind - (nw - 1), argv + optind + (nw - 1));
}
