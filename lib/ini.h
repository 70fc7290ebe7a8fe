/*
 * ini.h — the one lexer of certa's `key = value` / `[section]` text (configuration files,
 * scheduling policies, policy text on the wire).
 *
 * Grammar, line by line ('\n' ends a line; a trailing '\r' is blank; a UTF-8 BOM at the start
 * is skipped):
 *
 *	# comment                 ; also a comment
 *	[ section ]               # a comment may follow
 *	key = value               # '#' or ';' after whitespace starts a comment
 *	key = "quoted # value"    (INI_QUOTES only: \" and \\ are the escapes)
 *
 * Keys and section names are letters, digits, '_', '-' and '.'; blanks around them, around '='
 * and at the end of a value are dropped.  A NUL byte anywhere is an error.  The lexer knows no
 * keys: what a section means (a prefix, a known group) is the caller's business.  Callers:
 * lib/config.c, scheduler/policy.c, scheduler/policykv.c.
 *
 * Pure, no allocation beyond one scratch buffer per call.  Any thread.
 */
#ifndef CERTA_LIB_INI_H
#define CERTA_LIB_INI_H

#include <stdbool.h>
#include <stddef.h>

/* Flags of ini_parse(). */
#define INI_QUOTES 0x1u   /* a value starting with '"' is a quoted string */

/* One `key = value` line, valid only during the callback. */
struct ini_item {
	unsigned line;          /* 1-based */
	const char *section;    /* the current [section]; NULL before the first header */
	size_t section_len;
	const char *key;        /* not NUL-terminated */
	size_t key_len;
	const char *value;      /* NUL-terminated (quotes and escapes resolved) */
	size_t value_len;
	bool quoted;
};

/* What went wrong, when ini_parse() returns CERTA_ECONFIG. */
struct ini_error {
	unsigned line;          /* 0: not tied to a line (out of memory) */
	char msg[96];           /* e.g. "expected 'key = value'" */
};

/*
 * Called for each `key = value` in text order; a section header only changes item->section of
 * the items after it.  A non-zero return stops the walk and is returned by ini_parse().
 */
typedef int (*ini_fn)(const struct ini_item *item, void *arg);

/*
 * Lexes text[0..len).  Returns 0 after the whole text, the callback's non-zero value, -ENOMEM,
 * or CERTA_ECONFIG with *e (may be NULL) describing the first malformed line.  `section_fn`
 * (may be NULL) is called at each header with item->section set and no key, so a caller can
 * refuse an unknown section on its own line; its non-zero return stops the walk too.
 */
int ini_parse(const char *text, size_t len, unsigned flags, ini_fn fn, ini_fn section_fn,
    void *arg, struct ini_error *e);

#endif
