/*
 * config.h — configuration driven by an option table.
 *
 * Each program (certad, certa-worker) declares a static array of struct config_option: name,
 * type, default, bounds, help, written with designated initializers as tmux's options-table.c
 * (`{ .name = "listen", .type = CONFIG_STRING, .def = "127.0.0.1:7700", .help = "..." }`; an
 * omitted field is 0/NULL).  Everything else follows from the table: parsing and validation
 * of the INI file, command-line overrides, typed getters, and the documentation
 * (config_write_doc: a commented example file and the OPTIONS section of certad.conf(5)).
 *
 * File syntax (INI):
 *
 *	# comment            ; also a comment
 *	threads = 8          # inline comments start at '#' or ';' preceded by whitespace
 *	[store]
 *	path = "/var/lib/certa"   # quoted values keep spaces, '#' and ';'; escapes \" and \\ only
 *	map_size = 4G
 *	[daemon]
 *	worker = 127.0.0.1:7701   # a CONFIG_LIST key may repeat; each line adds one item
 *	worker = 127.0.0.1:7702
 *
 * A key inside [section] names the option "section.key"; keys before the first section header
 * name top-level options ("key").  A full dotted name is also accepted at the top level
 * ("store.path = ...").  Keys are made of [A-Za-z0-9_.-].  Whitespace around keys and
 * unquoted values is trimmed; CRLF line ends and a UTF-8 byte-order mark are accepted.
 * The lexing is lib/ini.h's, shared with policy files; this module gives the words meaning.
 * Loading a file applies on top of the current values: an option absent from the file keeps
 * its current value.  Within one load a non-list key may appear only once.  The first
 * occurrence of a list key in a load replaces the current list; an empty value ("worker =")
 * clears the list.
 *
 * Value syntax per type:
 *	CONFIG_STRING    any text; "" is the empty string.
 *	CONFIG_INT       decimal integer with optional sign (long long).
 *	CONFIG_DOUBLE    finite decimal number (strtod syntax, no nan/inf).
 *	CONFIG_BOOL      true/false, yes/no, on/off, 1/0 (case-insensitive).
 *	CONFIG_LIST      one item per line, verbatim; the .def of a list option is a
 *	                 comma-separated list of items (NULL or "" = empty).
 *	CONFIG_ENUM      exactly one of the option's choices (case-sensitive).
 *	CONFIG_SIZE      non-negative integer of bytes with an optional binary suffix
 *	                 K, M, G, T (case-insensitive, optionally followed by "B" or "iB").
 *	CONFIG_DURATION  non-negative integer with suffix ms, s, m or h; a bare number is ms.
 *
 * Errors: functions return 0 or a negative code: CERTA_ECONFIG for bad configuration, -ENOMEM,
 * or -errno when a file cannot be read (-ENOENT, -EACCES, -EISDIR, ...).  When err is not NULL
 * and errlen > 0 a one-line, NUL-terminated message is written there on every failure, e.g.
 *	certad.conf:12: value 99999 for 'threads' is out of range [1, 1000]
 * (truncated to errlen).  User text in messages is sanitised (non-printable bytes as \xNN,
 * long values cut).  On any failure the config is left exactly as it was, so a bad file on
 * SIGHUP leaves the running configuration in force.
 *
 * Programming errors abort with a message (an always-on assertion, not disabled by NDEBUG):
 * a getter asked for a name that is not in the table, a getter of the wrong type, and a table
 * that is malformed (bad or duplicate name, ENUM without choices, default that does not
 * validate) — config_new checks the whole table.
 *
 * Threads: a struct config is not locked.  Create, load, set and free it on the main (event
 * loop) thread only.  Getters are read-only and may run on other threads only while no one
 * modifies the config; a thread that needs a stable view takes a config_dup.
 *
 * Reload pattern (SIGHUP): build a fresh config (config_new, config_load_file, re-apply the
 * command-line config_set calls); on success free the old one and install the new one; on
 * failure log err and keep the old one.  (Loading into the live config also keeps it intact
 * on failure, but an option deleted from the file would keep its old value.)
 */
#ifndef CERTA_LIB_CONFIG_H
#define CERTA_LIB_CONFIG_H

#include <stddef.h>
#include <stdio.h>

enum config_type {
	CONFIG_STRING,
	CONFIG_INT,
	CONFIG_DOUBLE,
	CONFIG_BOOL,
	CONFIG_LIST,      /* repeatable key, e.g. `worker = 127.0.0.1:7701` lines */
	CONFIG_ENUM,      /* one of a NULL-terminated list of words */
	CONFIG_SIZE,      /* bytes with optional K/M/G/T suffix (binary) */
	CONFIG_DURATION,  /* milliseconds with ms/s/m/h suffix, bare number = ms */
};

/* One row of a program's option table.  The table (and the strings it points to) must outlive
 * every struct config made from it; it is normally a static const array. */
struct config_option {
	const char *name;            /* "section.key", or "key" for the top level */
	enum config_type type;
	const char *def;             /* default, in file syntax; NULL = unset */
	double min, max;             /* INT/DOUBLE/SIZE(bytes)/DURATION(ms), inclusive;
	                              * min == max == 0 means unbounded */
	const char *const *choices;  /* ENUM: NULL-terminated words */
	const char *help;            /* one line, no trailing period needed */
};

/* Formats of config_write_doc. */
enum config_doc_format {
	CONFIG_DOC_INI = 0,  /* commented example configuration file */
	CONFIG_DOC_MAN = 1,  /* roff OPTIONS section for certad.conf(5) */
};

struct config;

/*
 * Creates a config for the n options of table, with every option at its default.
 * On success *out owns the new config (free with config_free); *out is written only on success.
 * Errors: -ENOMEM.  Aborts if the table is malformed (see above).
 */
int config_new(const struct config_option *table, size_t n, struct config **out);

/*
 * Checks the syntax of a gRPC address without touching the network: "unix:/PATH" (under 108
 * bytes), "HOST:PORT" (HOST a name or IPv4 address of letters, digits, '.', '-', '_') or
 * "[IPV6]:PORT", PORT a decimal in 1..65535 (0 too when allow_port0, for listeners).  Returns
 * 0, or CERTA_ECONFIG with "'ADDR' is not host:port (...)" in err.
 */
int config_check_address(const char *addr, int allow_port0, char *err, size_t errlen);

/* Frees cfg and every value in it; NULL is a no-op. */
void config_free(struct config *cfg);

/*
 * Makes an independent deep copy of src (same table) in *out, written only on success.
 * Errors: -ENOMEM.
 */
int config_dup(const struct config *src, struct config **out);

/*
 * Reads the INI file at path and applies it to cfg.  All or nothing: the file is parsed into a
 * copy that replaces cfg's values only if the whole file is valid.
 * Errors: CERTA_ECONFIG ("PATH:LINE: ..."), -ENOMEM, -errno from opening or reading the file
 * ("PATH: No such file or directory").  Files of 16 MiB or more are refused (-EFBIG).
 */
int config_load_file(struct config *cfg, const char *path, char *err, size_t errlen);

/*
 * Same as config_load_file for the NUL-terminated text; name stands in for PATH in messages.
 * Errors: CERTA_ECONFIG, -ENOMEM.
 */
int config_load_string(struct config *cfg, const char *name, const char *text,
	char *err, size_t errlen);

/*
 * Sets one option by full name from a command-line override (`--set name=value`,
 * `--name value`), with the same validation as the file (the message has no PATH:LINE
 * prefix, e.g. "unknown option 'foo'").  For a CONFIG_LIST option the value is appended to the
 * current list; an empty value clears the list.  Any other option is replaced (no duplicate
 * check: the last override wins).  name and value must not be NULL.
 * Errors: CERTA_ECONFIG, -ENOMEM; cfg is unchanged on failure.
 */
int config_set(struct config *cfg, const char *name, const char *value, char *err, size_t errlen);

/*
 * Getters.  name must be an option of cfg's table of a matching type, or the program aborts.
 * Returned pointers belong to cfg and stay valid until the next successful config_load_*,
 * config_set or config_free on cfg; copy what you keep across a reload.
 */

/* Non-zero if the option has a value (always, if it has a default; a LIST: non-empty). */
int config_is_set(const struct config *cfg, const char *name);

/* Any type but LIST: the value as written (unquoted), e.g. "64M" for a SIZE, the choice word
 * for an ENUM; NULL if unset. */
const char *config_get_str(const struct config *cfg, const char *name);

/* INT: the value; SIZE: bytes; DURATION: milliseconds.  0 if unset. */
long long config_get_int(const struct config *cfg, const char *name);

/* DOUBLE only.  0.0 if unset. */
double config_get_double(const struct config *cfg, const char *name);

/* BOOL only: 1 or 0.  0 if unset. */
int config_get_bool(const struct config *cfg, const char *name);

/* LIST only: returns the number of items and points *items at them (NULL when there are
 * none); items and their strings belong to cfg. */
size_t config_get_list(const struct config *cfg, const char *name, const char *const **items);

/* ENUM only: the index of the value in the option's choices; -1 if unset. */
int config_get_enum(const struct config *cfg, const char *name);

/*
 * Writes documentation generated from the table to f.  CONFIG_DOC_INI: a commented example
 * file listing every option (grouped by section) with its help, type, range and default; an
 * option with a default is shown as "#key = default", so deleting the '#' gives a valid line,
 * and the file itself (everything commented out) parses.  CONFIG_DOC_MAN: roff for the OPTIONS
 * section of certad.conf(5) (".SH OPTIONS", one ".SS" per section, one ".TP" per option,
 * named by its full dotted name, which is also the name for config_set).
 * Output errors are the caller's to check with ferror(f).
 */
void config_write_doc(const struct config_option *table, size_t n, FILE *f, int format);

#endif
