/* ini.c — the `key = value` / `[section]` lexer (see ini.h). */
#include "lib/ini.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/error.h"

/* The walk's state: the caller's callbacks and the current section. */
struct ini_walk {
	unsigned flags;
	ini_fn fn, section_fn;
	void *arg;
	struct ini_error *e;
	const char *section;
	size_t section_len;
	char *scratch;          /* value buffer, as long as the longest line + 1 */
};

/* Only ASCII whitespace: the C locale functions would depend on setlocale. */
static int
ini_isspace(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/* Characters of keys and section names: letters, digits, '_', '-', '.'. */
static int
ini_iskey(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	    c == '_' || c == '-' || c == '.';
}

/* Records the first error and returns CERTA_ECONFIG. */
static int ini_fail(struct ini_walk *w, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
ini_fail(struct ini_walk *w, unsigned line, const char *fmt, ...)
{
	va_list ap;

	if (w->e != NULL) {
		w->e->line = line;
		va_start(ap, fmt);
		vsnprintf(w->e->msg, sizeof w->e->msg, fmt, ap);
		va_end(ap);
	}
	return CERTA_ECONFIG;
}

/* Whether s[i..len) is blank or a comment. */
static int
ini_rest_empty(const char *s, size_t i, size_t len)
{
	while (i < len && ini_isspace(s[i]))
		i++;
	return i == len || s[i] == '#' || s[i] == ';';
}

/* "[ section ]" with an optional comment after it. */
static int
ini_section(struct ini_walk *w, unsigned line, const char *s, size_t len)
{
	struct ini_item it;
	size_t i = 1, start, end;

	while (i < len && ini_isspace(s[i]))
		i++;
	start = i;
	while (i < len && ini_iskey(s[i]))
		i++;
	end = i;
	while (i < len && ini_isspace(s[i]))
		i++;
	if (start == end || i >= len || s[i] != ']' || !ini_rest_empty(s, i + 1, len))
		return ini_fail(w, line, "expected '[section]'");
	w->section = s + start;
	w->section_len = end - start;
	if (w->section_fn == NULL)
		return 0;
	memset(&it, 0, sizeof it);
	it.line = line;
	it.section = w->section;
	it.section_len = w->section_len;
	it.value = "";
	return w->section_fn(&it, w->arg);
}

/* A "..." value at s[*pos]: unescapes \" and \\ into out; *pos moves past the quote. */
static int
ini_quoted(struct ini_walk *w, unsigned line, const char *s, size_t len, size_t *pos,
    char *out, size_t *outlen)
{
	size_t i = *pos + 1, o = 0;

	for (;;) {
		char c;

		if (i >= len)
			return ini_fail(w, line, "unterminated quoted value");
		c = s[i++];
		if (c == '"')
			break;
		if (c == '\\') {
			if (i >= len)
				return ini_fail(w, line, "unterminated quoted value");
			c = s[i++];
			if (c != '"' && c != '\\' && c > ' ' && c < 127)
				return ini_fail(w, line, "unknown escape '\\%c' in quoted value "
				    "(only \\\" and \\\\)", c);
			if (c != '"' && c != '\\')
				return ini_fail(w, line, "unknown escape '\\x%02x' in quoted value "
				    "(only \\\" and \\\\)", (unsigned char)c);
		}
		out[o++] = c;
	}
	out[o] = '\0';
	*pos = i;
	*outlen = o;
	return 0;
}

/* One line without its '\n'. */
static int
ini_line(struct ini_walk *w, unsigned line, const char *s, size_t len)
{
	struct ini_item it;
	size_t i = 0, key, keyend, vstart;
	int rc;

	if (memchr(s, '\0', len) != NULL)
		return ini_fail(w, line, "NUL byte in line");
	while (len > 0 && ini_isspace(s[len - 1]))
		len--;
	while (i < len && ini_isspace(s[i]))
		i++;
	if (i == len || s[i] == '#' || s[i] == ';')
		return 0;
	if (s[i] == '[')
		return ini_section(w, line, s + i, len - i);

	key = i;
	while (i < len && ini_iskey(s[i]))
		i++;
	keyend = i;
	while (i < len && ini_isspace(s[i]))
		i++;
	if (key == keyend || i >= len || s[i] != '=')
		return ini_fail(w, line, "expected 'key = value'");
	i++;
	while (i < len && ini_isspace(s[i]))
		i++;

	memset(&it, 0, sizeof it);
	if ((w->flags & INI_QUOTES) && i < len && s[i] == '"') {
		rc = ini_quoted(w, line, s, len, &i, w->scratch, &it.value_len);
		if (rc != 0)
			return rc;
		if (!ini_rest_empty(s, i, len))
			return ini_fail(w, line, "unexpected text after quoted value");
		it.quoted = true;
	} else {
		/* A '#' or ';' after whitespace starts a comment; trailing blanks are dropped. */
		vstart = i;
		for (; i < len; i++)
			if ((s[i] == '#' || s[i] == ';') && ini_isspace(s[i - 1]))
				break;
		while (i > vstart && ini_isspace(s[i - 1]))
			i--;
		memcpy(w->scratch, s + vstart, i - vstart);
		w->scratch[i - vstart] = '\0';
		it.value_len = i - vstart;
	}
	it.line = line;
	it.section = w->section;
	it.section_len = w->section_len;
	it.key = s + key;
	it.key_len = keyend - key;
	it.value = w->scratch;
	return w->fn(&it, w->arg);
}

int
ini_parse(const char *text, size_t len, unsigned flags, ini_fn fn, ini_fn section_fn,
    void *arg, struct ini_error *e)
{
	struct ini_walk w;
	const char *s = text, *end = text + len, *nl;
	size_t longest = 0;
	unsigned line = 0;
	int rc = 0;

	memset(&w, 0, sizeof w);
	w.flags = flags;
	w.fn = fn;
	w.section_fn = section_fn;
	w.arg = arg;
	w.e = e;
	if (len >= 3 && memcmp(s, "\xef\xbb\xbf", 3) == 0)
		s += 3;
	/* One scratch buffer for every value: a value is never longer than its line. */
	for (const char *p = s; p < end; p = nl + 1) {
		nl = memchr(p, '\n', (size_t)(end - p));
		if (nl == NULL)
			nl = end;
		if ((size_t)(nl - p) > longest)
			longest = (size_t)(nl - p);
	}
	w.scratch = malloc(longest + 1);
	if (w.scratch == NULL) {
		ini_fail(&w, 0, "out of memory");
		return -ENOMEM;
	}
	while (s < end) {
		nl = memchr(s, '\n', (size_t)(end - s));
		if (nl == NULL)
			nl = end;
		if (line == UINT_MAX) {
			rc = ini_fail(&w, line, "too many lines");
			break;
		}
		rc = ini_line(&w, ++line, s, (size_t)(nl - s));
		if (rc != 0)
			break;
		s = nl + 1;
	}
	free(w.scratch);
	return rc;
}
