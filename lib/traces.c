/* traces.c — loads recorded reasoning traces (JSONL, optionally gzip'd) and indexes them by
 * problem.  See traces.h for the contract. */
#include "lib/traces.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <zlib.h>

#include "lib/array.h"
#include "lib/error.h"
#include "lib/json.h"
#include "lib/log.h"
#include "lib/median.h"
#include "lib/strmap.h"

#define POOL_CHUNK ((size_t)4 << 20)
#define POOL_BIG (POOL_CHUNK / 16)
#define READ_CHUNK ((size_t)256 << 10)
#define WARN_PER_FILE 20
#define THINK_TAG "</think>"

/* Bump allocator for everything that lives as long as the set: strings, probe arrays. */
struct pool_chunk {
	struct pool_chunk *next;
	size_t cap, used;
	unsigned char *data;
};

struct pool {
	struct pool_chunk *head;
	size_t memory;
};

/* A (model, problem) sample set for traces_find(). */
struct tr_set {
	const char *model;
	const struct trace *const *samples;
	size_t n;
};

/* A distinct problem text with its sets, one per model, in model order. */
struct tr_problem {
	const char *text;
	size_t first_set, nsets;
	const struct tr_problem *next_norm; /* next with the same normalized text, or NULL */
	size_t text_len;
};

struct traces {
	char *dir;
	struct pool pool;
	struct strmap *intern; /* load-time only: text -> pool copy */
	struct trace *recs;
	size_t n, cap;
	size_t nfiles, skipped;
	size_t file_warnings;
	const char **models, **datasets;
	size_t nmodels, ndatasets;
	double *model_prob;   /* per model (models order): traces_model_prob, -1 none */
	const struct trace **set_samples;
	struct tr_set *sets;
	size_t nsets;
	struct tr_problem *problems;
	size_t nproblems;
	/* Read concurrently after load: strmap_get() does not modify a map. */
	struct strmap *exact; /* problem text -> struct tr_problem */
	struct strmap *norm;  /* normalized text -> first struct tr_problem of its chain */
	const struct trace **prog_samples;
	struct traces_program *programs;
	size_t nprograms;
	size_t memory;
};

/* ---- pool ---- */

static void *
pool_alloc(struct pool *p, size_t size, size_t align)
{
	struct pool_chunk *c = p->head;
	size_t off, cap;

	if (c != NULL) {
		off = (c->used + align - 1) & ~(align - 1);
		if (off <= c->cap && c->cap - off >= size) {
			c->used = off + size;
			return c->data + off;
		}
	}
	/* Chunks double from 64 KiB up to POOL_CHUNK, so a small set stays small. */
	cap = p->head != NULL ? p->head->cap * 2 : (size_t)64 << 10;
	if (cap > POOL_CHUNK)
		cap = POOL_CHUNK;
	if (size > POOL_BIG || size > cap)
		cap = size;
	c = malloc(sizeof(*c) + cap + 16);
	if (c == NULL)
		return NULL;
	c->data = (unsigned char *)(c + 1);
	c->cap = cap + 16;
	off = (size_t)(-(uintptr_t)c->data & (align - 1));
	c->used = off + size;
	p->memory += sizeof(*c) + cap + 16;
	if (size > POOL_BIG && p->head != NULL) {
		/* A big string gets its own chunk; keep filling the current one. */
		c->next = p->head->next;
		p->head->next = c;
	} else {
		c->next = p->head;
		p->head = c;
	}
	return c->data + off;
}

static char *
pool_strndup(struct pool *p, const char *s, size_t len)
{
	char *d = pool_alloc(p, len + 1, 1);

	if (d == NULL)
		return NULL;
	memcpy(d, s, len);
	d[len] = '\0';
	return d;
}

static void
pool_free(struct pool *p)
{
	struct pool_chunk *c, *next;

	for (c = p->head; c != NULL; c = next) {
		next = c->next;
		free(c);
	}
	p->head = NULL;
	p->memory = 0;
}

/* One copy of each distinct short string (names, problems, probe answers); s[len] is NUL. */
static const char *
intern(struct traces *tr, const char *s, size_t len)
{
	const char *found = strmap_get(tr->intern, s);
	char *copy;

	if (found != NULL)
		return found;
	if ((copy = pool_strndup(&tr->pool, s, len)) == NULL)
		return NULL;
	if (strmap_put(tr->intern, copy, copy, NULL) < 0)
		return NULL;
	return copy;
}

/* ---- whitespace normalization ---- */

static bool
is_space(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* Writes the normalized form of s into d (room for strlen(s) + 1); returns its length. */
static size_t
normalize_into(char *d, const char *s)
{
	size_t n = 0;
	bool pending = false;

	for (; *s != '\0'; s++) {
		if (is_space((unsigned char)*s)) {
			pending = n > 0;
			continue;
		}
		if (pending)
			d[n++] = ' ';
		pending = false;
		d[n++] = *s;
	}
	d[n] = '\0';
	return n;
}

char *
traces_normalize_ws(const char *s)
{
	char *d;

	if (s == NULL || (d = malloc(strlen(s) + 1)) == NULL)
		return NULL;
	normalize_into(d, s);
	return d;
}

/* ---- record decoding ---- */

/* Canonical text of a JSON number: integers without ".0" (36.0 -> "36"), others the shortest
 * %g form that reads back to the same double (0.5 -> "0.5"). */
static void
number_text(const struct json_value *v, char *buf, size_t n)
{
	double d = json_number(v);

	if (json_is_int(v)) {
		snprintf(buf, n, "%" PRId64, json_int(v));
		return;
	}
	if (d == 0) {
		snprintf(buf, n, "0");
		return;
	}
	if (d == trunc(d) && fabs(d) < 1e17) {
		snprintf(buf, n, "%.0f", d);
		return;
	}
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(buf, n, "%.*g", prec, d);
		if (strtod(buf, NULL) == d)
			return;
	}
}

/* Integer value of v if it is an integral number (also written as 42.0) within int64 range. */
static bool
number_int(const struct json_value *v, int64_t *out)
{
	double d;

	if (json_is_int(v)) {
		*out = json_int(v);
		return true;
	}
	if (json_type(v) != JSON_NUMBER)
		return false;
	d = json_number(v);
	if (d != trunc(d) || fabs(d) > 9007199254740992.0)
		return false;
	*out = (int64_t)d;
	return true;
}

enum field_flags {
	F_REQUIRED = 1 << 0, /* absent or null is an error */
	F_NUMBER = 1 << 1,   /* a number is accepted and turned into canonical text */
	F_NONEMPTY = 1 << 2,
	F_INTERN = 1 << 3,   /* share one copy with equal strings */
};

struct decoder {
	struct traces *tr;
	const struct json_value *obj;
	char *why;
	size_t whylen;
	int err; /* -ENOMEM, or -EBADMSG with `why` set */
};

static void __attribute__((format(printf, 2, 3)))
bad(struct decoder *dc, const char *fmt, ...)
{
	va_list ap;

	if (dc->err != 0)
		return;
	dc->err = -EBADMSG;
	va_start(ap, fmt);
	vsnprintf(dc->why, dc->whylen, fmt, ap);
	va_end(ap);
}

/* Copies a text field into the pool; "" if optional and absent/null.  NULL on error. */
static const char *
get_text(struct decoder *dc, const char *key, unsigned flags)
{
	const struct json_value *v = json_object_get(dc->obj, key);
	char num[64];
	const char *s;
	size_t len;
	const char *r;

	if (dc->err != 0)
		return NULL;
	switch (json_type(v)) {
	case JSON_NONE:
	case JSON_NULL:
		if (flags & F_REQUIRED) {
			bad(dc, "missing field \"%s\"", key);
			return NULL;
		}
		return "";
	case JSON_STRING:
		s = json_string(v, &len);
		if (strlen(s) != len) {
			bad(dc, "field \"%s\" contains a NUL character", key);
			return NULL;
		}
		break;
	case JSON_NUMBER:
		if (flags & F_NUMBER) {
			number_text(v, num, sizeof(num));
			s = num;
			len = strlen(num);
			break;
		}
		/* fallthrough */
	default:
		bad(dc, "field \"%s\" is %s, expected string", key, json_type_name(json_type(v)));
		return NULL;
	}
	if ((flags & F_NONEMPTY) && len == 0) {
		bad(dc, "field \"%s\" is empty", key);
		return NULL;
	}
	r = (flags & F_INTERN) ? intern(dc->tr, s, len) : pool_strndup(&dc->tr->pool, s, len);
	if (r == NULL)
		dc->err = -ENOMEM;
	return r;
}

static int64_t
get_int(struct decoder *dc, const char *key, bool required, int64_t min)
{
	const struct json_value *v = json_object_get(dc->obj, key);
	int64_t x = 0;

	if (dc->err != 0)
		return 0;
	if (json_type(v) == JSON_NONE || json_type(v) == JSON_NULL) {
		if (required)
			bad(dc, "missing field \"%s\"", key);
		return 0;
	}
	if (!number_int(v, &x)) {
		bad(dc, "field \"%s\" is not an integer", key);
		return 0;
	}
	if (x < min) {
		bad(dc, "field \"%s\" is negative", key);
		return 0;
	}
	return x;
}

static bool
get_bool(struct decoder *dc, const char *key)
{
	const struct json_value *v = json_object_get(dc->obj, key);
	enum json_type t = json_type(v);

	if (dc->err != 0 || t == JSON_NONE || t == JSON_NULL)
		return false;
	if (t != JSON_TRUE && t != JSON_FALSE)
		bad(dc, "field \"%s\" is %s, expected boolean", key, json_type_name(t));
	return t == JSON_TRUE;
}

/* MATH500 level: an integer, or a string such as "Level 3"; 0 when absent. */
static int64_t
get_level(struct decoder *dc)
{
	const struct json_value *v = json_object_get(dc->obj, "level");
	const char *s;

	if (json_type(v) == JSON_STRING) {
		s = json_string(v, NULL);
		s += strcspn(s, "0123456789");
		return *s != '\0' ? strtoll(s, NULL, 10) : 0;
	}
	return get_int(dc, "level", false, INT64_MIN);
}

/* Fields of one probe: [position, answer, out_tokens] or {"position", "answer", "out_tokens"}. */
static void
probe_fields(const struct json_value *p, const struct json_value **pos,
	const struct json_value **ans, const struct json_value **out)
{
	if (json_type(p) == JSON_ARRAY) {
		*pos = json_array_at(p, 0);
		*ans = json_array_at(p, 1);
		*out = json_array_at(p, 2);
	} else {
		*pos = json_object_get(p, "position");
		*ans = json_object_get(p, "answer");
		*out = json_object_get(p, "out_tokens");
	}
}

/* The optional token statistics of a probe, in trace_probe order (mean_prob, min_prob,
 * chain_entropy): array elements 3-5 or object keys. */
static const char *const probe_stat_keys[3] = { "mean_prob", "min_prob", "chain_entropy" };

static const struct json_value *
probe_stat(const struct json_value *p, size_t k)
{
	return json_type(p) == JSON_ARRAY ? json_array_at(p, 3 + k) :
	    json_object_get(p, probe_stat_keys[k]);
}

/* A statistic: absent or null -> -1 (unknown); otherwise a number in [0, 1] (probabilities)
 * or >= 0 (entropy).  False when present and out of range or not a number. */
static bool
probe_stat_value(const struct json_value *v, size_t k, double *out)
{
	double d;

	*out = -1;
	if (json_type(v) == JSON_NONE || json_type(v) == JSON_NULL)
		return true;
	if (json_type(v) != JSON_NUMBER)
		return false;
	d = json_number(v);
	if (!(d >= 0) || (k < 2 && d > 1) || d > 1e6)
		return false;
	*out = d;
	return true;
}

static int
probe_cmp(const void *a, const void *b)
{
	const struct trace_probe *x = a, *y = b;

	return (x->position > y->position) - (x->position < y->position);
}

static int
get_probes(struct decoder *dc, struct trace *t)
{
	const struct json_value *arr = json_object_get(dc->obj, "probes");
	struct trace_probe *probes;
	size_t n = json_array_len(arr);
	bool sorted = true;

	if (dc->err != 0)
		return dc->err;
	if (json_type(arr) != JSON_ARRAY) {
		bad(dc, "field \"probes\" is %s, expected array", json_type_name(json_type(arr)));
		return dc->err;
	}
	/* Validate everything before copying anything. */
	for (size_t i = 0; i < n; i++) {
		const struct json_value *p = json_array_at(arr, i), *pos, *ans, *out;
		int64_t x;
		size_t len;
		const char *s;

		if (json_type(p) != JSON_ARRAY && json_type(p) != JSON_OBJECT) {
			bad(dc, "probe %zu is %s", i, json_type_name(json_type(p)));
			return dc->err;
		}
		probe_fields(p, &pos, &ans, &out);
		if (!number_int(pos, &x) || x < 0) {
			bad(dc, "probe %zu: bad position", i);
			return dc->err;
		}
		if (json_type(out) != JSON_NONE && json_type(out) != JSON_NULL &&
		    (!number_int(out, &x) || x < 0 || x > UINT32_MAX)) {
			bad(dc, "probe %zu: bad out_tokens", i);
			return dc->err;
		}
		s = json_string(ans, &len);
		if (json_type(ans) != JSON_NULL && json_type(ans) != JSON_NUMBER &&
		    (s == NULL || strlen(s) != len)) {
			bad(dc, "probe %zu: bad answer", i);
			return dc->err;
		}
		for (size_t k = 0; k < 3; k++) {
			double v;

			if (!probe_stat_value(probe_stat(p, k), k, &v)) {
				bad(dc, "probe %zu: bad %s (a probability in [0, 1], an entropy "
				    ">= 0, or null)", i, probe_stat_keys[k]);
				return dc->err;
			}
		}
	}
	probes = pool_alloc(&dc->tr->pool, (n ? n : 1) * sizeof(*probes), _Alignof(struct trace_probe));
	if (probes == NULL)
		return dc->err = -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		const struct json_value *pos, *ans, *out;
		char num[64];
		const char *s = "";
		size_t len = 0;
		int64_t x = 0;

		probe_fields(json_array_at(arr, i), &pos, &ans, &out);
		number_int(pos, &x);
		probes[i].position = (uint64_t)x;
		x = 0;
		if (json_type(out) == JSON_NUMBER)
			number_int(out, &x);
		probes[i].out_tokens = (uint32_t)x;
		probe_stat_value(probe_stat(json_array_at(arr, i), 0), 0, &probes[i].mean_prob);
		probe_stat_value(probe_stat(json_array_at(arr, i), 1), 1, &probes[i].min_prob);
		probe_stat_value(probe_stat(json_array_at(arr, i), 2), 2, &probes[i].chain_entropy);
		if (json_type(ans) == JSON_STRING) {
			s = json_string(ans, &len);
		} else if (json_type(ans) == JSON_NUMBER) {
			number_text(ans, num, sizeof(num));
			s = num;
			len = strlen(num);
		}
		if ((probes[i].answer = intern(dc->tr, s, len)) == NULL)
			return dc->err = -ENOMEM;
		if (i > 0 && probes[i].position < probes[i - 1].position)
			sorted = false;
	}
	if (!sorted)
		qsort(probes, n, sizeof(*probes), probe_cmp);
	t->probes = probes;
	t->nprobes = n;
	return 0;
}

static uint64_t
muldiv_floor(uint64_t a, uint64_t b, uint64_t c)
{
#ifdef __SIZEOF_INT128__
	return (uint64_t)((unsigned __int128)a * b / c);
#else
	if (b == 0 || a <= UINT64_MAX / b)
		return a * b / c;
	return (uint64_t)((long double)a * b / c);
#endif
}

static uint64_t
think_end_of(const struct trace *t)
{
	const char *tag = memmem(t->text, t->text_len, THINK_TAG, strlen(THINK_TAG));
	uint64_t e, p;

	if (tag == NULL || t->text_len == 0)
		return 0;
	e = (uint64_t)(tag - t->text) + strlen(THINK_TAG);
	/* ceil(e * T / L) */
	p = muldiv_floor(e, t->tokens_used, t->text_len);
	if (muldiv_floor(p, t->text_len, t->tokens_used ? t->tokens_used : 1) < e)
		p++;
	return p < t->tokens_used ? p : t->tokens_used;
}

/* Decodes one record into *t.  Returns 0, -EBADMSG (reason in why) or -ENOMEM.  Validates all
 * fields before the big copies so a bad line costs little. */
static int
record_from_json(struct traces *tr, const struct json_value *root, struct trace *t, char *why,
	size_t whylen)
{
	struct decoder dc = { .tr = tr, .obj = root, .why = why, .whylen = whylen };
	const struct json_value *text = json_object_get(root, "text");
	size_t text_len = 0;
	const char *s;

	if (json_type(root) != JSON_OBJECT) {
		snprintf(why, whylen, "line is %s, expected object", json_type_name(json_type(root)));
		return -EBADMSG;
	}
	memset(t, 0, sizeof(*t));
	s = json_string(text, &text_len);
	if (s == NULL) {
		snprintf(why, whylen, "field \"text\" missing or not a string");
		return -EBADMSG;
	}
	if (strlen(s) != text_len) {
		snprintf(why, whylen, "field \"text\" contains a NUL character");
		return -EBADMSG;
	}
	t->seed = get_int(&dc, "seed", true, INT64_MIN);
	t->tokens_used = (uint64_t)get_int(&dc, "tokens_used", true, 0);
	t->level = get_level(&dc);
	t->finished = get_bool(&dc, "finished");
	t->final_correct = get_bool(&dc, "final_correct");
	if (dc.err == 0 && json_type(json_object_get(root, "problem")) != JSON_STRING)
		bad(&dc, "field \"problem\" missing or not a string");
	if (dc.err != 0)
		return dc.err;
	t->model = get_text(&dc, "model", F_REQUIRED | F_NONEMPTY | F_INTERN);
	t->dataset = get_text(&dc, "dataset", F_REQUIRED | F_NONEMPTY | F_INTERN);
	t->problem = get_text(&dc, "problem", F_REQUIRED | F_NONEMPTY | F_INTERN);
	t->phase = get_text(&dc, "phase", F_INTERN);
	t->problem_id = get_text(&dc, "problem_id", F_NUMBER | F_INTERN);
	t->target = get_text(&dc, "target", F_NUMBER | F_INTERN);
	t->subject = get_text(&dc, "subject", F_INTERN);
	t->final_answer = get_text(&dc, "final_answer", F_NUMBER | F_INTERN);
	if (dc.err != 0 || get_probes(&dc, t) < 0)
		return dc.err;
	if ((t->text = pool_strndup(&tr->pool, s, text_len)) == NULL)
		return -ENOMEM;
	t->text_len = text_len;
	t->think_end = think_end_of(t);
	return 0;
}

/* ---- reading files ---- */

/* Splits a gzip (or plain: zlib reads those transparently) stream into lines of any length. */
struct line_reader {
	gzFile gz;
	char *buf;
	size_t cap, start, end, scan;
	bool eof;
};

/* Returns 1 with the next line (without '\n') in *line and *len, 0 at end, -1 on a read error,
 * -ENOMEM.  The line stays valid until the next call. */
static int
line_next(struct line_reader *lr, char **line, size_t *len)
{
	for (;;) {
		char *nl = lr->end > lr->scan ? memchr(lr->buf + lr->scan, '\n', lr->end - lr->scan)
					       : NULL;
		int n;

		if (nl != NULL) {
			*line = lr->buf + lr->start;
			*len = (size_t)(nl - *line);
			lr->start = lr->scan = (size_t)(nl - lr->buf) + 1;
			return 1;
		}
		lr->scan = lr->end;
		if (lr->eof) {
			if (lr->start == lr->end)
				return 0;
			*line = lr->buf + lr->start;
			*len = lr->end - lr->start;
			lr->start = lr->scan = lr->end;
			return 1;
		}
		if (lr->start > 0) {
			memmove(lr->buf, lr->buf + lr->start, lr->end - lr->start);
			lr->end -= lr->start;
			lr->scan -= lr->start;
			lr->start = 0;
		}
		/* At least READ_CHUNK / 2 free: doubles, starting at READ_CHUNK. */
		if (lr->cap - lr->end < READ_CHUNK / 2 &&
		    ARRAY_GROW(lr->buf, lr->cap, lr->end + READ_CHUNK) != 0)
			return -ENOMEM;
		n = gzread(lr->gz, lr->buf + lr->end,
			(unsigned)(lr->cap - lr->end > INT_MAX ? INT_MAX : lr->cap - lr->end));
		if (n < 0)
			return -1;
		if (n == 0)
			lr->eof = true;
		lr->end += (size_t)n;
	}
}

static bool
blank(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (!is_space((unsigned char)s[i]))
			return false;
	return true;
}

static void
skip_line(struct traces *tr, const char *file, size_t line, const char *why)
{
	tr->skipped++;
	if (tr->file_warnings++ < WARN_PER_FILE)
		log_warn(LOG_ENGINE, "traces: %s:%zu: skipped line: %s", file, line, why);
	else if (tr->file_warnings == WARN_PER_FILE + 1)
		log_warn(LOG_ENGINE, "traces: %s: more malformed lines, not reporting each", file);
}

/* Parses one line of a trace file and appends its record; a malformed line is skipped with a
 * warning.  Returns 0 or -ENOMEM. */
static int
load_line(struct traces *tr, const char *fname, size_t lineno, const char *line, size_t len)
{
	struct json_doc *doc;
	char err[256];
	int rc;

	if (blank(line, len))
		return 0;
	rc = json_parse(line, len, &doc, err, sizeof(err));
	if (rc == -ENOMEM)
		return rc;
	if (rc < 0) {
		skip_line(tr, fname, lineno, err);
		return 0;
	}
	if (ARRAY_GROW(tr->recs, tr->cap, tr->n + 1) != 0) {
		json_free(doc);
		return -ENOMEM;
	}
	rc = record_from_json(tr, json_root(doc), &tr->recs[tr->n], err, sizeof(err));
	json_free(doc);
	if (rc == -ENOMEM)
		return rc;
	if (rc < 0) {
		skip_line(tr, fname, lineno, err);
		return 0;
	}
	tr->recs[tr->n].file = fname;
	tr->recs[tr->n].line = lineno;
	tr->n++;
	return 0;
}

/* Reads one file; appends its records.  Fails only on open errors or out of memory. */
static int
load_file(struct traces *tr, const char *path, const char *fname)
{
	struct line_reader lr = { 0 };
	char err[256];
	size_t lineno = 0;
	char *line;
	size_t len;
	int rc;

	errno = 0;
	lr.gz = gzopen(path, "rb");
	if (lr.gz == NULL) {
		rc = errno ? -errno : -ENOMEM;
		log_err(LOG_ENGINE, "traces: cannot open %s: %s", path, certa_strerror(rc));
		return rc;
	}
	gzbuffer(lr.gz, READ_CHUNK);
	tr->file_warnings = 0;
	while ((rc = line_next(&lr, &line, &len)) > 0) {
		lineno++;
		rc = load_line(tr, fname, lineno, line, len);
		if (rc < 0)
			goto fail_reader;
	}
	if (rc == -1) {
		int zerr;
		const char *msg = gzerror(lr.gz, &zerr);

		if (zerr == Z_MEM_ERROR) {
			rc = -ENOMEM;
			goto fail_reader;
		}
		snprintf(err, sizeof(err), "read error: %s", msg);
		skip_line(tr, fname, lineno + 1, err);
		rc = 0;
	}
fail_reader:
	free(lr.buf);
	gzclose(lr.gz);
	return rc;
}

static bool
is_trace_file(const char *name)
{
	size_t n = strlen(name);

	if (name[0] == '.')
		return false;
	return (n > 9 && strcmp(name + n - 9, ".jsonl.gz") == 0) ||
	       (n > 6 && strcmp(name + n - 6, ".jsonl") == 0);
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Sorted names of the trace files of dir (regular files, symlinks followed). */
static int
list_files(const char *dir, char ***names_out, size_t *n_out)
{
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	DIR *d;
	int rc = 0;

	if ((d = opendir(dir)) == NULL)
		return -errno;
	for (;;) {
		struct stat st;

		errno = 0;
		if ((de = readdir(d)) == NULL) {
			rc = -errno;
			break;
		}
		if (!is_trace_file(de->d_name))
			continue;
		if (fstatat(dirfd(d), de->d_name, &st, 0) < 0 || !S_ISREG(st.st_mode))
			continue;
		if (ARRAY_GROW(names, cap, n + 1) != 0) {
			rc = -ENOMEM;
			break;
		}
		if ((names[n] = strdup(de->d_name)) == NULL) {
			rc = -ENOMEM;
			break;
		}
		n++;
	}
	closedir(d);
	if (rc < 0) {
		while (n > 0)
			free(names[--n]);
		free(names);
		return rc;
	}
	if (n > 1)
		qsort(names, n, sizeof(*names), cmp_str);
	*names_out = names;
	*n_out = n;
	return 0;
}

/* ---- indexing ---- */

/* Records are compared through pointers into tr->recs; the pointer order is the load order. */
static int
cmp_ptr(const struct trace *a, const struct trace *b)
{
	return (a > b) - (a < b);
}

static int
cmp_seed(const struct trace *a, const struct trace *b)
{
	return (a->seed > b->seed) - (a->seed < b->seed);
}

/* (model, dataset, problem, seed, load order): duplicates end up adjacent. */
static int
cmp_mdps(const void *pa, const void *pb)
{
	const struct trace *a = *(const struct trace *const *)pa, *b = *(const struct trace *const *)pb;
	int c;

	if ((c = strcmp(a->model, b->model)) != 0 || (c = strcmp(a->dataset, b->dataset)) != 0 ||
	    (c = strcmp(a->problem, b->problem)) != 0 || (c = cmp_seed(a, b)) != 0)
		return c;
	return cmp_ptr(a, b);
}

/* (problem, model, seed, dataset, load order): the traces_find() order. */
static int
cmp_pmsd(const void *pa, const void *pb)
{
	const struct trace *a = *(const struct trace *const *)pa, *b = *(const struct trace *const *)pb;
	int c;

	if ((c = strcmp(a->problem, b->problem)) != 0 || (c = strcmp(a->model, b->model)) != 0 ||
	    (c = cmp_seed(a, b)) != 0 || (c = strcmp(a->dataset, b->dataset)) != 0)
		return c;
	return cmp_ptr(a, b);
}

/* Programs ordered by model, dataset, then first appearance in load order (samples[0] is the
 * lowest seed, not necessarily the first loaded, so the group carries its first record). */
struct prog_sort {
	struct traces_program prog;
	const struct trace *first;
};

static int
cmp_prog(const void *pa, const void *pb)
{
	const struct prog_sort *a = pa, *b = pb;
	int c;

	if ((c = strcmp(a->prog.model, b->prog.model)) != 0 ||
	    (c = strcmp(a->prog.dataset, b->prog.dataset)) != 0)
		return c;
	return cmp_ptr(a->first, b->first);
}

/* Same model, dataset and problem (interned, so pointers compare). */
static bool
same_mdp(const struct trace *a, const struct trace *b)
{
	return a->model == b->model && a->dataset == b->dataset && a->problem == b->problem;
}

/* Sorted distinct values of one interned field. */
static int
distinct(const struct trace **v, size_t n, size_t field_off, const char ***out, size_t *nout)
{
	const char **names = malloc((n ? n : 1) * sizeof(*names));
	size_t k = 0;

	if (names == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		names[i] = *(const char *const *)((const char *)v[i] + field_off);
	qsort(names, n, sizeof(*names), cmp_str);
	for (size_t i = 0; i < n; i++)
		if (k == 0 || strcmp(names[k - 1], names[i]) != 0)
			names[k++] = names[i];
	*out = names;
	*nout = k;
	return 0;
}

/* Drops later duplicates of (model, dataset, problem, seed), keeping load order. */
static int
drop_duplicates(struct traces *tr)
{
	const struct trace **v = malloc((tr->n ? tr->n : 1) * sizeof(*v));
	bool *dup = calloc(tr->n ? tr->n : 1, sizeof(*dup));
	size_t k = 0;
	int rc = 0;

	if (v == NULL || dup == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < tr->n; i++)
		v[i] = &tr->recs[i];
	qsort(v, tr->n, sizeof(*v), cmp_mdps);
	tr->file_warnings = 0;
	for (size_t i = 1, keep = 0; i < tr->n; i++) {
		if (!same_mdp(v[i], v[keep]) || v[i]->seed != v[keep]->seed) {
			keep = i;
		} else {
			char why[160];

			snprintf(why, sizeof(why), "duplicate of %s:%zu (same model, dataset, problem, seed)",
				v[keep]->file, v[keep]->line);
			skip_line(tr, v[i]->file, v[i]->line, why);
			dup[v[i] - tr->recs] = true;
		}
	}
	for (size_t i = 0; i < tr->n; i++)
		if (!dup[i])
			tr->recs[k++] = tr->recs[i];
	tr->n = k;
out:
	free(dup);
	free(v);
	return rc;
}

static int
build_programs(struct traces *tr, const struct trace **v)
{
	struct prog_sort *ps = NULL;
	size_t np = 0, k = 0;

	qsort(v, tr->n, sizeof(*v), cmp_mdps);
	for (size_t i = 0; i < tr->n; i++)
		if (i == 0 || !same_mdp(v[i], v[i - 1]))
			np++;
	ps = calloc(np ? np : 1, sizeof(*ps));
	tr->prog_samples = malloc((tr->n ? tr->n : 1) * sizeof(*tr->prog_samples));
	tr->programs = malloc((np ? np : 1) * sizeof(*tr->programs));
	if (ps == NULL || tr->prog_samples == NULL || tr->programs == NULL) {
		free(ps);
		return -ENOMEM;
	}
	for (size_t i = 0, g = SIZE_MAX; i < tr->n; i++) {
		if (i == 0 || !same_mdp(v[i], v[i - 1])) {
			g = g == SIZE_MAX ? 0 : g + 1;
			ps[g].prog.model = v[i]->model;
			ps[g].prog.dataset = v[i]->dataset;
			ps[g].prog.problem = v[i]->problem;
			ps[g].prog.problem_id = v[i]->problem_id;
			ps[g].prog.target = v[i]->target;
			ps[g].prog.samples = (const struct trace *const *)&v[i]; /* rebased below */
			ps[g].first = v[i];
		}
		ps[g].prog.nsamples++;
		if (v[i] < ps[g].first)
			ps[g].first = v[i];
	}
	qsort(ps, np, sizeof(*ps), cmp_prog);
	for (size_t g = 0; g < np; g++) {
		const struct trace *const *src = ps[g].prog.samples;

		tr->programs[g] = ps[g].prog;
		tr->programs[g].samples = &tr->prog_samples[k];
		for (size_t j = 0; j < ps[g].prog.nsamples; j++)
			tr->prog_samples[k++] = src[j];
	}
	tr->nprograms = np;
	free(ps);
	return 0;
}

static int
build_find_index(struct traces *tr, const struct trace **v)
{
	size_t nsets = 0, nprob = 0, k = 0;
	struct tr_problem **norm_tail = NULL;
	char *scratch = NULL;
	size_t scratch_cap = 0;
	int rc = -ENOMEM;

	qsort(v, tr->n, sizeof(*v), cmp_pmsd);
	for (size_t i = 0; i < tr->n; i++) {
		if (i == 0 || v[i]->problem != v[i - 1]->problem)
			nprob++;
		if (i == 0 || v[i]->problem != v[i - 1]->problem || v[i]->model != v[i - 1]->model)
			nsets++;
	}
	tr->set_samples = malloc((tr->n ? tr->n : 1) * sizeof(*tr->set_samples));
	tr->sets = calloc(nsets ? nsets : 1, sizeof(*tr->sets));
	tr->problems = calloc(nprob ? nprob : 1, sizeof(*tr->problems));
	norm_tail = malloc((nprob ? nprob : 1) * sizeof(*norm_tail));
	if (tr->set_samples == NULL || tr->sets == NULL || tr->problems == NULL || norm_tail == NULL)
		goto out;
	nsets = nprob = 0;
	for (size_t i = 0; i < tr->n; i++) {
		bool new_prob = i == 0 || v[i]->problem != v[i - 1]->problem;
		struct tr_set *set;

		if (new_prob) {
			tr->problems[nprob].text = v[i]->problem;
			tr->problems[nprob].first_set = nsets;
			tr->problems[nprob].text_len = strlen(v[i]->problem);
			nprob++;
		}
		if (new_prob || v[i]->model != v[i - 1]->model) {
			tr->sets[nsets].model = v[i]->model;
			tr->sets[nsets].samples = &tr->set_samples[k];
			tr->problems[nprob - 1].nsets++;
			nsets++;
		}
		set = &tr->sets[nsets - 1];
		/* One sample per seed: the same text in two datasets must not repeat a seed. */
		if (set->n > 0 && set->samples[set->n - 1]->seed == v[i]->seed)
			continue;
		tr->set_samples[k++] = v[i];
		set->n++;
	}
	tr->nsets = nsets;
	tr->nproblems = nprob;

	if ((tr->exact = strmap_new()) == NULL || (tr->norm = strmap_new()) == NULL)
		goto out;
	/* Problems are in strcmp order, so each normalized chain is too. */
	for (size_t i = 0; i < nprob; i++) {
		struct tr_problem *pr = &tr->problems[i];
		struct tr_problem *first;

		if (strmap_put(tr->exact, pr->text, pr, NULL) < 0)
			goto out;
		if (pr->text_len + 1 > scratch_cap) {
			free(scratch);
			scratch_cap = 2 * pr->text_len + 1;
			if ((scratch = malloc(scratch_cap)) == NULL)
				goto out;
		}
		normalize_into(scratch, pr->text);
		if ((first = strmap_get(tr->norm, scratch)) == NULL) {
			if (strmap_put(tr->norm, scratch, pr, NULL) < 0)
				goto out;
			first = pr;
		} else {
			norm_tail[first - tr->problems]->next_norm = pr;
		}
		/* norm_tail is indexed by the chain's first problem. */
		norm_tail[first - tr->problems] = pr;
	}
	rc = 0;
out:
	free(scratch);
	free(norm_tail);
	return rc;
}

/* Each model's probe-probability level (traces_model_prob; -1 when none of its probes has
 * one). */
static int
build_model_prob(struct traces *tr)
{
	double *w = NULL;
	size_t wcap = 0;

	tr->model_prob = malloc((tr->nmodels ? tr->nmodels : 1) * sizeof(*tr->model_prob));
	if (tr->model_prob == NULL)
		return -ENOMEM;
	for (size_t m = 0; m < tr->nmodels; m++) {
		size_t nw = 0;

		for (size_t i = 0; i < tr->n; i++) {
			const struct trace *t = &tr->recs[i];
			size_t j;
			if (strcmp(t->model, tr->models[m]) != 0)
				continue;
			for (j = 0; j < t->nprobes && !(t->probes[j].mean_prob > 0); j++)
				;
			if (j == t->nprobes)
				continue;
			if (ARRAY_GROW(w, wcap, nw + 1) != 0) {
				free(w);
				return -ENOMEM;
			}
			w[nw++] = t->probes[j].mean_prob;   /* the run's first known one */
		}
		tr->model_prob[m] = median_doubles(w, nw);   /* -1: none */
	}
	free(w);
	return 0;
}

static int
build_index(struct traces *tr)
{
	const struct trace **v;
	int rc;

	if ((rc = drop_duplicates(tr)) < 0)
		return rc;
	if ((v = malloc((tr->n ? tr->n : 1) * sizeof(*v))) == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < tr->n; i++)
		v[i] = &tr->recs[i];
	if ((rc = distinct(v, tr->n, offsetof(struct trace, model), &tr->models, &tr->nmodels)) < 0 ||
	    (rc = distinct(v, tr->n, offsetof(struct trace, dataset), &tr->datasets,
		    &tr->ndatasets)) < 0 ||
	    (rc = build_programs(tr, v)) < 0 || (rc = build_find_index(tr, v)) < 0 ||
	    (rc = build_model_prob(tr)) < 0)
		goto out;
out:
	free(v);
	return rc;
}

static size_t
index_memory(const struct traces *tr)
{
	/* The two problem maps: a key copy and about two 24-byte slots per entry in each. */
	size_t maps = 0;

	for (size_t i = 0; i < tr->nproblems; i++)
		maps += 2 * (tr->problems[i].text_len + 1 + 16 + 48);
	return sizeof(*tr) + strlen(tr->dir) + 1 + tr->pool.memory + tr->cap * sizeof(*tr->recs) +
	       (tr->nmodels + tr->ndatasets) * sizeof(char *) + tr->nmodels * sizeof(double) +
	       2 * tr->n * sizeof(struct trace *) + tr->nsets * sizeof(*tr->sets) +
	       tr->nproblems * sizeof(*tr->problems) + tr->nprograms * sizeof(*tr->programs) + maps;
}

static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int
traces_load(const char *dir, struct traces **out)
{
	struct traces *tr;
	char **names = NULL;
	size_t nnames = 0;
	double t0 = now_ms();
	int rc;

	if (dir == NULL || *dir == '\0' || out == NULL)
		return -EINVAL;
	if ((tr = calloc(1, sizeof(*tr))) == NULL)
		return -ENOMEM;
	if ((tr->dir = strdup(dir)) == NULL || (tr->intern = strmap_new()) == NULL) {
		rc = -ENOMEM;
		goto fail_tr;
	}
	if ((rc = list_files(dir, &names, &nnames)) < 0) {
		log_err(LOG_ENGINE, "traces: cannot list %s: %s", dir, certa_strerror(rc));
		goto fail_tr;
	}
	if (nnames == 0) {
		log_err(LOG_ENGINE, "traces: no *.jsonl.gz or *.jsonl files in %s", dir);
		rc = CERTA_ENOTFOUND;
		goto fail_names;
	}
	for (size_t i = 0; i < nnames; i++) {
		size_t plen = strlen(dir) + strlen(names[i]) + 2;
		char *path = malloc(plen);
		const char *fname;

		if (path == NULL || (fname = intern(tr, names[i], strlen(names[i]))) == NULL) {
			free(path);
			rc = -ENOMEM;
			goto fail_names;
		}
		snprintf(path, plen, "%s/%s", dir, names[i]);
		rc = load_file(tr, path, fname);
		free(path);
		if (rc < 0)
			goto fail_names;
		tr->nfiles++;
	}
	if ((rc = build_index(tr)) < 0)
		goto fail_names;
	if (tr->n == 0) {
		rc = tr->skipped > 0 ? CERTA_ETRACE : CERTA_ENOTFOUND;
		log_err(LOG_ENGINE, "traces: no valid record in %s (%zu lines skipped)", dir,
			tr->skipped);
		goto fail_names;
	}
	strmap_free(tr->intern, NULL);
	tr->intern = NULL;
	tr->memory = index_memory(tr);
	log_info(LOG_ENGINE,
		"traces: loaded dir=%s files=%zu traces=%zu models=%zu datasets=%zu programs=%zu "
		"skipped=%zu mem_mb=%.1f ms=%.0f",
		dir, tr->nfiles, tr->n, tr->nmodels, tr->ndatasets, tr->nprograms, tr->skipped,
		tr->memory / 1048576.0, now_ms() - t0);
	for (size_t i = 0; i < nnames; i++)
		free(names[i]);
	free(names);
	*out = tr;
	return 0;

fail_names:
	for (size_t i = 0; i < nnames; i++)
		free(names[i]);
	free(names);
fail_tr:
	traces_free(tr);
	return rc;
}

int
traces_load_buffer(const char *name, const char *buf, size_t len, struct traces **out)
{
	struct traces *tr;
	const char *fname;
	size_t pos = 0, lineno = 0;
	int rc;

	if (name == NULL || *name == '\0' || (buf == NULL && len > 0) || out == NULL)
		return -EINVAL;
	if ((tr = calloc(1, sizeof(*tr))) == NULL)
		return -ENOMEM;
	if ((tr->dir = strdup(name)) == NULL || (tr->intern = strmap_new()) == NULL ||
	    (fname = intern(tr, name, strlen(name))) == NULL) {
		rc = -ENOMEM;
		goto fail_tr;
	}
	while (pos < len) {
		const char *nl = memchr(buf + pos, '\n', len - pos);
		size_t end = nl != NULL ? (size_t)(nl - buf) : len;

		rc = load_line(tr, fname, ++lineno, buf + pos, end - pos);
		if (rc < 0)
			goto fail_tr;
		pos = end + 1;
	}
	tr->nfiles = 1;
	if ((rc = build_index(tr)) < 0)
		goto fail_tr;
	if (tr->n == 0) {
		rc = tr->skipped > 0 ? CERTA_ETRACE : CERTA_ENOTFOUND;
		goto fail_tr;
	}
	strmap_free(tr->intern, NULL);
	tr->intern = NULL;
	tr->memory = index_memory(tr);
	*out = tr;
	return 0;

fail_tr:
	traces_free(tr);
	return rc;
}

void
traces_free(struct traces *tr)
{
	if (tr == NULL)
		return;
	strmap_free(tr->intern, NULL);
	strmap_free(tr->exact, NULL);
	strmap_free(tr->norm, NULL);
	free(tr->programs);
	free(tr->prog_samples);
	free(tr->problems);
	free(tr->sets);
	free(tr->set_samples);
	free(tr->models);
	free(tr->model_prob);
	free(tr->datasets);
	free(tr->recs);
	pool_free(&tr->pool);
	free(tr->dir);
	free(tr);
}

/* ---- queries ---- */

const char *
traces_dir(const struct traces *tr)
{
	return tr->dir;
}

size_t
traces_file_count(const struct traces *tr)
{
	return tr->nfiles;
}

size_t
traces_count(const struct traces *tr)
{
	return tr->n;
}

size_t
traces_skipped(const struct traces *tr)
{
	return tr->skipped;
}

size_t
traces_memory(const struct traces *tr)
{
	return tr->memory;
}

const struct trace *
traces_at(const struct traces *tr, size_t i)
{
	return i < tr->n ? &tr->recs[i] : NULL;
}

size_t
traces_model_count(const struct traces *tr)
{
	return tr->nmodels;
}

const char *
traces_model_name(const struct traces *tr, size_t i)
{
	return i < tr->nmodels ? tr->models[i] : NULL;
}

double
traces_model_prob(const struct traces *tr, const char *model)
{
	for (size_t i = 0; model != NULL && i < tr->nmodels; i++)
		if (strcmp(tr->models[i], model) == 0)
			return tr->model_prob[i];
	return -1;
}

size_t
traces_dataset_count(const struct traces *tr)
{
	return tr->ndatasets;
}

const char *
traces_dataset_name(const struct traces *tr, size_t i)
{
	return i < tr->ndatasets ? tr->datasets[i] : NULL;
}

size_t
traces_program_count(const struct traces *tr)
{
	return tr->nprograms;
}

const struct traces_program *
traces_program_at(const struct traces *tr, size_t i)
{
	return i < tr->nprograms ? &tr->programs[i] : NULL;
}

/* The sample set of problem pr for model (NULL/"" = first). */
static const struct tr_set *
problem_set(const struct traces *tr, const struct tr_problem *pr, const char *model)
{
	for (size_t i = 0; i < pr->nsets; i++) {
		const struct tr_set *s = &tr->sets[pr->first_set + i];

		if (model == NULL || *model == '\0' || strcmp(s->model, model) == 0)
			return s;
	}
	return NULL;
}

static int
found(const struct tr_set *s, const struct trace *const **samples, size_t *nsamples)
{
	*samples = s->samples;
	*nsamples = s->n;
	return 0;
}

int
traces_find_exact(const struct traces *tr, const char *model, const char *problem,
	const struct trace *const **samples, size_t *nsamples)
{
	const struct tr_problem *pr;
	const struct tr_set *s;

	if (tr == NULL || problem == NULL || samples == NULL || nsamples == NULL)
		return -EINVAL;
	pr = strmap_get(tr->exact, problem);
	if (pr == NULL || (s = problem_set(tr, pr, model)) == NULL)
		return CERTA_ENOTFOUND;
	return found(s, samples, nsamples);
}

int
traces_find(const struct traces *tr, const char *model, const char *problem,
	const struct trace *const **samples, size_t *nsamples)
{
	const struct tr_problem *pr;
	char small[1024], *norm;
	size_t len;
	int rc;

	rc = traces_find_exact(tr, model, problem, samples, nsamples);
	if (rc != CERTA_ENOTFOUND)
		return rc;
	len = strlen(problem);
	norm = len < sizeof(small) ? small : malloc(len + 1);
	if (norm == NULL)
		return -ENOMEM;
	normalize_into(norm, problem);
	pr = strmap_get(tr->norm, norm);
	if (norm != small)
		free(norm);
	for (; pr != NULL; pr = pr->next_norm) {
		const struct tr_set *s = problem_set(tr, pr, model);

		if (s != NULL)
			return found(s, samples, nsamples);
	}
	return CERTA_ENOTFOUND;
}

int
traces_find_sample(const struct traces *tr, const char *model, const char *problem,
	size_t index, const struct trace **out)
{
	const struct trace *const *samples;
	size_t n;
	int rc;

	if (out == NULL)
		return -EINVAL;
	if ((rc = traces_find(tr, model, problem, &samples, &n)) < 0)
		return rc;
	if (index >= n)
		return CERTA_ENOTFOUND;
	*out = samples[index];
	return 0;
}

size_t
traces_text_offset(const struct trace *t, uint64_t token_pos)
{
	uint64_t off;

	if (t->tokens_used == 0 || token_pos >= t->tokens_used)
		return t->text_len;
	off = muldiv_floor(token_pos, t->text_len, t->tokens_used);
	/* Forward to a character boundary: skip UTF-8 continuation bytes. */
	while (off < t->text_len && ((unsigned char)t->text[off] & 0xC0) == 0x80)
		off++;
	return (size_t)off;
}

uint64_t
traces_think_end(const struct trace *t)
{
	return t->think_end;
}

const struct trace_probe *
traces_probe_at(const struct trace *t, uint64_t pos)
{
	size_t lo = 0, hi = t->nprobes;

	/* First probe with position > pos; the one before it is in effect. */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (t->probes[mid].position <= pos)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo > 0 ? &t->probes[lo - 1] : NULL;
}

const char *
traces_answer_at(const struct trace *t, uint64_t pos)
{
	const struct trace_probe *p = traces_probe_at(t, pos);

	return p != NULL ? p->answer : "";
}
