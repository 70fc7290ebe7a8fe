/*
 * cmd.h — certactl's command table, option parsing and exit codes.
 *
 * Every subcommand is one declarative struct cmd_entry (name, usage, help, options, positional
 * argument counts, handler), in the spirit of tmux's cmd_entry.  A name may have several words
 * ("tenant add", "tenant key rotate"): the words before the last form a group, and
 * `certactl tenant --help` lists the group's commands.  cmd.c owns the list of entries,
 * parses the global options and each command's options (getopt_long), prints help, checks the
 * argument counts and, for commands that talk to the daemon, opens the client connection before
 * calling the handler.  Handlers read their options back by name from struct cmd_args.
 *
 * Main thread only (getopt keeps global state).
 */
#ifndef CERTA_CLI_CMD_H
#define CERTA_CLI_CMD_H

#include <stdint.h>

struct client;

/* Exit statuses scripts can rely on; documented by `certactl --help` (table in cmd.c). */
enum cli_exit {
	CLI_EXIT_OK = 0,
	CLI_EXIT_ERROR = 1,          /* the server answered with an error (or a local failure) */
	CLI_EXIT_USAGE = 2,          /* bad command line */
	CLI_EXIT_UNAVAILABLE = 3,    /* server unreachable, or no answer before the deadline */
	CLI_EXIT_PROGRAM = 4,        /* submit/watch: the program ended as failed or cancelled */
	CLI_EXIT_INTERRUPTED = 130,  /* Ctrl-C while following a program (it keeps running) */
};

#define CLI_DEFAULT_SERVER "127.0.0.1:7700"
#define CLI_DEFAULT_TIMEOUT_MS 10000
/* certad's admin socket in the packaged configuration; serves Admin without a token. */
#define CLI_ADMIN_SOCKET "/run/certa/admin.sock"

/* Global options, filled from the environment and the command line. */
struct cmd_ctx {
	const char *server;          /* host:port or unix:PATH */
	const char *token;           /* API key or NULL */
	const char *admin_token;     /* admin credential or NULL; replaces token on Admin calls */
	int json;                    /* one JSON object per line instead of text */
	int timeout_ms;              /* deadline of unary calls */
	struct client *client;       /* connection, set for commands that talk to the daemon */
};

/* One command-specific option.  The long name is also the key for cmd_args_get(). */
struct cmd_option {
	const char *name;            /* "budget" for --budget */
	const char *metavar;         /* "T" when it takes a value, NULL for a flag */
	const char *help;
};

#define CMD_MAX_OPTIONS 16

struct cmd_args;

/* Returns an enum cli_exit value. */
typedef int (*cmd_exec_fn)(struct cmd_ctx *ctx, const struct cmd_args *args);

struct cmd_entry {
	const char *name;
	const char *usage;           /* positional part: "PROBLEM", "ID", "" */
	const char *summary;         /* one line for `certactl --help` */
	const char *help;            /* paragraph for `certactl CMD --help` */
	const struct cmd_option *options;   /* NULL-name terminated, at most CMD_MAX_OPTIONS */
	int min_args, max_args;      /* positional arguments */
	int offline;                 /* runs without a server connection */
	int admin;                   /* calls the Admin service: sends --admin-token if given */
	cmd_exec_fn exec;
};

/* Positional arguments after option parsing. */
int cmd_args_count(const struct cmd_args *a);
const char *cmd_args_at(const struct cmd_args *a, int i);
/* Value of option `name` ("" for a flag that was given), NULL when absent; the last occurrence
 * wins.  name must be one of the entry's options (anything else aborts: a programming error). */
const char *cmd_args_get(const struct cmd_args *a, const char *name);
/* Position of the option's last occurrence on the command line (1-based), 0 when absent; tells
 * which of two contradicting flags came last. */
int cmd_args_order(const struct cmd_args *a, const char *name);
/* Parses option `name` as an unsigned integer in [min, max] into *out (untouched when the option
 * is absent).  Returns CLI_EXIT_OK, or prints a usage error and returns CLI_EXIT_USAGE. */
int cmd_args_uint(const struct cmd_args *a, const char *name, uint64_t min, uint64_t max,
    uint64_t *out);

/* Checks that positional argument i is not empty; what names it in the usage error ("the
 * tenant NAME is empty").  Returns CLI_EXIT_OK, or prints the error and returns
 * CLI_EXIT_USAGE. */
int cmd_args_nonempty(const struct cmd_args *a, int i, const char *what);

/* Prints "certactl CMD: message" and the command's usage line to stderr; returns
 * CLI_EXIT_USAGE. */
int cmd_usage_error(const struct cmd_args *a, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Fills ctx from the environment (CERTA_SERVER, CERTA_TOKEN, CERTA_ADMIN_TOKEN) and the
 * defaults. */
void cmd_ctx_init(struct cmd_ctx *ctx);

/* Runs `certactl [global options] COMMAND [args]`: parses, dispatches, returns the exit status.
 * argv is permuted by getopt. */
int cmd_main(struct cmd_ctx *ctx, int argc, char **argv);

#endif
