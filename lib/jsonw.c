/* jsonw.c — a tiny streaming JSON writer; see jsonw.h. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/jsonw.h"
#include "lib/utf8.h"

enum jsonw_frame {
	JSONW_ARRAY = 1,
	JSONW_OBJECT,
};

struct jsonw {
	char *buf;
	size_t len, cap;
	int err;
	unsigned depth;
	unsigned char kind[JSONW_MAX_DEPTH];   /* enum jsonw_frame per open level */
	size_t count[JSONW_MAX_DEPTH];         /* members/elements written per open level */
	int have_key;                          /* a key was written, its value is due */
	int done;                              /* the top-level value is complete */
};

int
jsonw_new(struct jsonw **out)
{
	struct jsonw *w = calloc(1, sizeof *w);

	if (w == NULL)
		return -ENOMEM;
	w->cap = 256;
	w->buf = malloc(w->cap);
	if (w->buf == NULL) {
		free(w);
		return -ENOMEM;
	}
	w->buf[0] = '\0';
	*out = w;
	return 0;
}

void
jsonw_free(struct jsonw *w)
{
	if (w == NULL)
		return;
	free(w->buf);
	free(w);
}

void
jsonw_reset(struct jsonw *w)
{
	w->len = 0;
	w->buf[0] = '\0';
	w->err = 0;
	w->depth = 0;
	w->have_key = 0;
	w->done = 0;
}

int
jsonw_error(const struct jsonw *w)
{
	return w->err;
}

const char *
jsonw_data(const struct jsonw *w, size_t *len)
{
	if (w->err != 0 || !w->done)
		return NULL;
	if (len != NULL)
		*len = w->len;
	return w->buf;
}

/* Makes room for n more bytes plus the terminating NUL; doubling keeps appends amortized O(1). */
static int
jsonw_reserve(struct jsonw *w, size_t n)
{
	size_t cap;
	char *p;

	if (w->err != 0)
		return -1;
	if (n < w->cap - w->len)
		return 0;
	cap = w->cap;
	while (n >= cap - w->len) {
		if (cap > SIZE_MAX / 2) {
			w->err = -ENOMEM;
			return -1;
		}
		cap *= 2;
	}
	p = realloc(w->buf, cap);
	if (p == NULL) {
		w->err = -ENOMEM;
		return -1;
	}
	w->buf = p;
	w->cap = cap;
	return 0;
}

static void
jsonw_put(struct jsonw *w, const char *s, size_t n)
{
	if (jsonw_reserve(w, n) != 0)
		return;
	memcpy(w->buf + w->len, s, n);
	w->len += n;
	w->buf[w->len] = '\0';
}

static void
jsonw_putc(struct jsonw *w, char c)
{
	jsonw_put(w, &c, 1);
}

/* Checks that a value may come now and writes the separator before it.  Returns 0 to go on. */
static int
jsonw_value_begin(struct jsonw *w)
{
	if (w->err != 0)
		return -1;
	if (w->depth == 0) {
		if (w->done) {
			w->err = -EINVAL;  /* a second top-level value */
			return -1;
		}
		return 0;
	}
	if (w->kind[w->depth - 1] == JSONW_OBJECT) {
		if (!w->have_key) {
			w->err = -EINVAL;  /* object member without a key */
			return -1;
		}
		w->have_key = 0;
		return 0;
	}
	if (w->count[w->depth - 1]++ > 0)
		jsonw_putc(w, ',');
	return w->err != 0 ? -1 : 0;
}

/* Bookkeeping after a complete value (scalar or closed container). */
static void
jsonw_value_end(struct jsonw *w)
{
	if (w->depth == 0)
		w->done = 1;
}

/* The one UTF-8 check of certa's writers: jsonw_quote() and certactl's terminal-safe text. */
size_t
jsonw_utf8(const unsigned char *s, size_t n, unsigned *cp)
{
	uint32_t v;
	int k = utf8_char(s, n, &v);

	/* ASCII is the callers' own business: only multi-byte characters count here. */
	if (k < 2)
		return 0;
	if (cp != NULL)
		*cp = v;
	return (size_t)k;
}

/* Writes s[0..n) as a quoted, escaped JSON string. */
static void
jsonw_quote(struct jsonw *w, const char *str, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0, run, ulen;
	char esc[6];

	jsonw_putc(w, '"');
	while (i < n && w->err == 0) {
		/* Copy the longest run of bytes that need nothing. */
		for (run = i; run < n && s[run] >= 0x20 && s[run] < 0x80 && s[run] != '"' &&
		    s[run] != '\\'; run++)
			;
		if (run > i) {
			jsonw_put(w, str + i, run - i);
			i = run;
			continue;
		}
		if (s[i] >= 0x80) {
			ulen = jsonw_utf8(s + i, n - i, NULL);
			if (ulen == 0) {
				jsonw_put(w, "\xef\xbf\xbd", 3);  /* U+FFFD */
				i++;
			} else {
				jsonw_put(w, str + i, ulen);
				i += ulen;
			}
			continue;
		}
		switch (s[i]) {
		case '"':  jsonw_put(w, "\\\"", 2); break;
		case '\\': jsonw_put(w, "\\\\", 2); break;
		case '\b': jsonw_put(w, "\\b", 2); break;
		case '\f': jsonw_put(w, "\\f", 2); break;
		case '\n': jsonw_put(w, "\\n", 2); break;
		case '\r': jsonw_put(w, "\\r", 2); break;
		case '\t': jsonw_put(w, "\\t", 2); break;
		default:
			memcpy(esc, "\\u00", 4);
			esc[4] = hex[s[i] >> 4];
			esc[5] = hex[s[i] & 0xf];
			jsonw_put(w, esc, 6);
			break;
		}
		i++;
	}
	jsonw_putc(w, '"');
}

static void
jsonw_open(struct jsonw *w, enum jsonw_frame kind, char c)
{
	if (jsonw_value_begin(w) != 0)
		return;
	if (w->depth == JSONW_MAX_DEPTH) {
		w->err = -EINVAL;
		return;
	}
	w->kind[w->depth] = (unsigned char)kind;
	w->count[w->depth] = 0;
	w->depth++;
	jsonw_putc(w, c);
}

static void
jsonw_close(struct jsonw *w, enum jsonw_frame kind, char c)
{
	if (w->err != 0)
		return;
	if (w->depth == 0 || w->kind[w->depth - 1] != kind || w->have_key) {
		w->err = -EINVAL;
		return;
	}
	w->depth--;
	jsonw_putc(w, c);
	jsonw_value_end(w);
}

void
jsonw_object_begin(struct jsonw *w)
{
	jsonw_open(w, JSONW_OBJECT, '{');
}

void
jsonw_object_end(struct jsonw *w)
{
	jsonw_close(w, JSONW_OBJECT, '}');
}

void
jsonw_array_begin(struct jsonw *w)
{
	jsonw_open(w, JSONW_ARRAY, '[');
}

void
jsonw_array_end(struct jsonw *w)
{
	jsonw_close(w, JSONW_ARRAY, ']');
}

void
jsonw_key(struct jsonw *w, const char *key)
{
	if (w->err != 0)
		return;
	if (key == NULL || w->depth == 0 || w->kind[w->depth - 1] != JSONW_OBJECT ||
	    w->have_key) {
		w->err = -EINVAL;
		return;
	}
	if (w->count[w->depth - 1]++ > 0)
		jsonw_putc(w, ',');
	jsonw_quote(w, key, strlen(key));
	jsonw_putc(w, ':');
	w->have_key = 1;
}

/* Writes an already formatted scalar token. */
static void
jsonw_raw_value(struct jsonw *w, const char *tok, size_t n)
{
	if (jsonw_value_begin(w) != 0)
		return;
	jsonw_put(w, tok, n);
	jsonw_value_end(w);
}

void
jsonw_stringn(struct jsonw *w, const char *s, size_t len)
{
	if (jsonw_value_begin(w) != 0)
		return;
	jsonw_quote(w, s, len);
	jsonw_value_end(w);
}

void
jsonw_string(struct jsonw *w, const char *s)
{
	if (s == NULL)
		jsonw_null(w);
	else
		jsonw_stringn(w, s, strlen(s));
}

void
jsonw_int(struct jsonw *w, int64_t v)
{
	char tok[24];
	int n = snprintf(tok, sizeof tok, "%" PRId64, v);

	jsonw_raw_value(w, tok, (size_t)n);
}

void
jsonw_uint(struct jsonw *w, uint64_t v)
{
	char tok[24];
	int n = snprintf(tok, sizeof tok, "%" PRIu64, v);

	jsonw_raw_value(w, tok, (size_t)n);
}

/* Shortest %.Ng that reads back as the same double, with '.' whatever LC_NUMERIC says. */
void
jsonw_double(struct jsonw *w, double v)
{
	char tok[40], *p;
	int prec, n = 0;

	if (!isfinite(v)) {
		jsonw_null(w);
		return;
	}
	for (prec = 15; prec <= 17; prec++) {
		n = snprintf(tok, sizeof tok, "%.*g", prec, v);
		for (p = tok; *p; p++)
			if (*p == ',')
				*p = '.';
		if (strtod(tok, NULL) == v)
			break;
	}
	jsonw_raw_value(w, tok, (size_t)n);
}

void
jsonw_bool(struct jsonw *w, bool v)
{
	if (v)
		jsonw_raw_value(w, "true", 4);
	else
		jsonw_raw_value(w, "false", 5);
}

void
jsonw_null(struct jsonw *w)
{
	jsonw_raw_value(w, "null", 4);
}

void
jsonw_kstring(struct jsonw *w, const char *key, const char *s)
{
	jsonw_key(w, key);
	jsonw_string(w, s);
}

void
jsonw_kint(struct jsonw *w, const char *key, int64_t v)
{
	jsonw_key(w, key);
	jsonw_int(w, v);
}

void
jsonw_kuint(struct jsonw *w, const char *key, uint64_t v)
{
	jsonw_key(w, key);
	jsonw_uint(w, v);
}

void
jsonw_kdouble(struct jsonw *w, const char *key, double v)
{
	jsonw_key(w, key);
	jsonw_double(w, v);
}

void
jsonw_kbool(struct jsonw *w, const char *key, bool v)
{
	jsonw_key(w, key);
	jsonw_bool(w, v);
}

void
jsonw_knull(struct jsonw *w, const char *key)
{
	jsonw_key(w, key);
	jsonw_null(w);
}
