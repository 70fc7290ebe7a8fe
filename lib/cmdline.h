/*
 * cmdline.h — the command line that certad and certa-worker share, driven by a table of the
 * program's own flags:
 *
 *	--config FILE, -c FILE   load FILE over the defaults
 *	--set KEY=VALUE, -s ...  set one option (repeatable; applied in order, after the file)
 *	--FLAG ARG               a program flag that sets one option, as --set KEY=ARG would
 *	                         (e.g. certad's --listen ADDR -> listen); in order with --set
 *	--SWITCH                 a program switch without argument (e.g. --init-state)
 *	--check-config           only check the configuration (the program does the checking)
 *	--print-config           print an example configuration file and exit
 *	--print-config-man       print the roff OPTIONS section and exit
 *	--version, -V            print "NAME CERTA_VERSION" and exit
 *	--help, -h               print the usage on stdout and exit
 *
 * The configuration is built as defaults, then the file, then the overrides in command-line
 * order, then the program's validate hook; cmdline_load rebuilds it the same way (SIGHUP).
 *
 * Exit statuses and messages (on stderr, prefixed "NAME: "): a bad or unknown option prints
 * getopt's message and the usage, 2; an argument that is not an option: "unexpected argument
 * 'ARG'" and the usage, 2; a configuration that does not load: the load's message, 2 (1 when
 * out of memory); --help, --version: 0; --print-config*: 0, or 1 when stdout fails.
 *
 * Main thread only (getopt_long's state is global).
 */
#ifndef CERTA_LIB_CMDLINE_H
#define CERTA_LIB_CMDLINE_H

#include <stddef.h>
#include <stdio.h>

#include "lib/config.h"

/* One program flag: --flag ARG sets the option key, or (key NULL) --flag is a switch. */
struct cmdline_flag {
	const char *flag;  /* long option without the dashes, e.g. "state-dir" */
	const char *key;   /* option it sets, e.g. "state_dir"; NULL: a switch, no argument */
};

/* What a program tells the handler; normally a static const struct. */
struct cmdline_program {
	const char *name;                     /* "certad": message prefix and --version */
	const struct config_option *options;  /* the program's option table */
	size_t noptions;
	const struct cmdline_flag *flags;     /* the program's own flags (may be NULL) */
	size_t nflags;
	void (*usage)(FILE *f);               /* the usage text, for --help and errors */
	/* Checks across options after every load (NULL: none): 0, or CERTA_ECONFIG with a
	 * message in err. */
	int (*validate)(const struct config *cfg, char *err, size_t errlen);
};

/* cmdline_parse's "go on" (every other value is an exit status). */
#define CMDLINE_RUN (-1)

struct cmdline;

/*
 * Parses argv and, unless the command line asks for something that exits at once, builds the
 * configuration.  Returns CMDLINE_RUN with *out (the parsed command line: free with
 * cmdline_free) and *cfg (owned by the caller: config_free); otherwise returns the exit status
 * (0, 1 or 2, see above) after printing what was asked or the error, and writes neither.
 * argv's strings must outlive *out (it points into them).
 */
int cmdline_parse(const struct cmdline_program *prog, int argc, char **argv,
	struct cmdline **out, struct config **cfg);

/*
 * Builds a fresh configuration from the parsed command line: defaults, --config's file, the
 * overrides in order, validate.  On success *out is the caller's; on failure *out is not
 * written and err holds a one-line message (without the program name).
 * Errors: CERTA_ECONFIG, -ENOMEM, -errno of reading the file.
 */
int cmdline_load(const struct cmdline *cl, struct config **out, char *err, size_t errlen);

/* Non-zero if --check-config was given. */
int cmdline_check_only(const struct cmdline *cl);

/*
 * 0 if the switch flag (a flag without key) was not given; otherwise a positive number that
 * grows with the position of its last occurrence, so that of two switches the later wins.
 */
int cmdline_switch(const struct cmdline *cl, const char *flag);

/* Frees cl; NULL is a no-op. */
void cmdline_free(struct cmdline *cl);

#endif
