/* json.c — strict RFC 8259 parser into an arena-allocated DOM.  See json.h for the contract. */
#include "lib/json.h"

#include <errno.h>
#include <math.h>
#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/hex.h"
#include "lib/utf8.h"

struct json_member {
	const char *key;
	size_t keylen;
	struct json_value *value;
};

struct json_value {
	enum json_type type;
	bool is_int;
	union {
		struct {
			double d;
			int64_t i;
		} num;
		struct {
			const char *s;
			size_t len;
		} str;
		struct {
			struct json_value **items;
			size_t n;
		} arr;
		struct {
			struct json_member *members;
			size_t n;
		} obj;
	} u;
};

/* Arena chunk; data follows the header, aligned for any object. */
struct chunk {
	struct chunk *next;
	size_t cap;
	size_t used;
	alignas(max_align_t) unsigned char data[];
};

#define CHUNK_MIN ((size_t)1024)
#define CHUNK_MAX ((size_t)1 << 20)

struct json_doc {
	struct chunk *chunks; /* newest first */
	size_t memory;
	struct json_value *root;
};

struct parser {
	const unsigned char *start, *p, *end;
	struct json_doc *doc;
	unsigned depth, max_depth;
	struct json_member *stack; /* open containers' elements, shared by all levels */
	size_t top, cap;
	int err;
	size_t err_off;
	const char *err_msg;
};

/* Bump allocation; big requests get a chunk of their own so the doubling stays bounded. */
static void *
arena_alloc(struct json_doc *doc, size_t size)
{
	const size_t align = alignof(max_align_t);
	struct chunk *c = doc->chunks;
	size_t need, cap;

	if (size > SIZE_MAX / 2)
		return NULL;
	size = (size + align - 1) & ~(align - 1);
	if (c != NULL && c->cap - c->used >= size) {
		void *p = c->data + c->used;
		c->used += size;
		return p;
	}
	cap = c != NULL ? c->cap * 2 : CHUNK_MIN;
	if (cap > CHUNK_MAX)
		cap = CHUNK_MAX;
	need = size > cap ? size : cap;
	c = malloc(sizeof(*c) + need);
	if (c == NULL)
		return NULL;
	c->cap = need;
	c->used = size;
	doc->memory += sizeof(*c) + need;
	if (size > cap && doc->chunks != NULL) {
		/* Oversized: keep filling the current chunk afterwards. */
		c->next = doc->chunks->next;
		doc->chunks->next = c;
	} else {
		c->next = doc->chunks;
		doc->chunks = c;
	}
	return c->data;
}

/* Records the first error only: later ones are consequences. */
static int
fail(struct parser *ps, const unsigned char *at, const char *msg)
{
	if (ps->err == 0) {
		ps->err = -EBADMSG;
		ps->err_off = (size_t)(at - ps->start);
		ps->err_msg = at >= ps->end ? "unexpected end of input" : msg;
	}
	return ps->err;
}

static int
fail_nomem(struct parser *ps)
{
	if (ps->err == 0) {
		ps->err = -ENOMEM;
		ps->err_off = (size_t)(ps->p - ps->start);
		ps->err_msg = "out of memory";
	}
	return ps->err;
}

static void
skip_ws(struct parser *ps)
{
	const unsigned char *p = ps->p;

	while (p < ps->end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
		p++;
	ps->p = p;
}

static struct json_value *
new_value(struct parser *ps, enum json_type t)
{
	struct json_value *v = arena_alloc(ps->doc, sizeof(*v));

	if (v == NULL)
		return NULL;
	memset(v, 0, sizeof(*v));
	v->type = t;
	return v;
}

static int
push(struct parser *ps, const char *key, size_t keylen, struct json_value *v)
{
	if (ps->top == ps->cap) {
		size_t ncap = ps->cap ? ps->cap * 2 : 64;
		struct json_member *n = realloc(ps->stack, ncap * sizeof(*n));

		if (n == NULL)
			return fail_nomem(ps);
		ps->stack = n;
		ps->cap = ncap;
	}
	ps->stack[ps->top].key = key;
	ps->stack[ps->top].keylen = keylen;
	ps->stack[ps->top].value = v;
	ps->top++;
	return 0;
}

/* Reads the 4 hex digits after "\u" at p (p points at 'u'); -1 if malformed. */
static long
read_u4(const unsigned char *p, const unsigned char *end)
{
	long v = 0;

	if (end - p < 5)
		return -1;
	for (int i = 1; i <= 4; i++) {
		int h = hex_value((char)p[i]);

		if (h < 0)
			return -1;
		v = v * 16 + h;
	}
	return v;
}

/* Length of the valid multi-byte UTF-8 sequence at p (2..4), or 0 (lib/utf8.h). */
static size_t
utf8_seq(const unsigned char *p, const unsigned char *end)
{
	int k = utf8_char(p, (size_t)(end - p), NULL);

	return k >= 2 ? (size_t)k : 0;
}

static size_t
put_utf8(unsigned char *o, unsigned long cp)
{
	if (cp < 0x80) {
		o[0] = (unsigned char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (unsigned char)(0xC0 | (cp >> 6));
		o[1] = (unsigned char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		o[0] = (unsigned char)(0xE0 | (cp >> 12));
		o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
		o[2] = (unsigned char)(0x80 | (cp & 0x3F));
		return 3;
	}
	o[0] = (unsigned char)(0xF0 | (cp >> 18));
	o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
	o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
	o[3] = (unsigned char)(0x80 | (cp & 0x3F));
	return 4;
}

/* Parses the string at ps->p (a '"') into the arena.  Two passes: find the closing quote (so
 * the decoded size has a bound: it never exceeds the raw size), then decode and validate. */
static int
parse_string(struct parser *ps, const char **out, size_t *outlen)
{
	const unsigned char *q = ps->p + 1, *qend, *end = ps->end;
	unsigned char *buf, *o;

	while (q < end && *q != '"') {
		if (*q == '\\')
			q++;
		else if (*q < 0x20)
			return fail(ps, q, "control character in string");
		q++;
	}
	if (q >= end)
		return fail(ps, end, "unterminated string");
	qend = q;
	buf = arena_alloc(ps->doc, (size_t)(qend - (ps->p + 1)) + 1);
	if (buf == NULL)
		return fail_nomem(ps);
	o = buf;
	q = ps->p + 1;
	while (q < qend) {
		unsigned char c = *q;

		if (c == '\\') {
			long cp;

			switch (q[1]) {
			case '"': *o++ = '"'; q += 2; continue;
			case '\\': *o++ = '\\'; q += 2; continue;
			case '/': *o++ = '/'; q += 2; continue;
			case 'b': *o++ = '\b'; q += 2; continue;
			case 'f': *o++ = '\f'; q += 2; continue;
			case 'n': *o++ = '\n'; q += 2; continue;
			case 'r': *o++ = '\r'; q += 2; continue;
			case 't': *o++ = '\t'; q += 2; continue;
			case 'u': break;
			default:
				return fail(ps, q, "invalid escape in string");
			}
			cp = read_u4(q + 1, qend);
			if (cp < 0)
				return fail(ps, q, "invalid \\u escape");
			if (cp >= 0xDC00 && cp <= 0xDFFF)
				return fail(ps, q, "lone low surrogate");
			if (cp >= 0xD800 && cp <= 0xDBFF) {
				long lo = -1;

				if (qend - q >= 12 && q[6] == '\\' && q[7] == 'u')
					lo = read_u4(q + 7, qend);
				if (lo < 0xDC00 || lo > 0xDFFF)
					return fail(ps, q, "lone high surrogate");
				cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
				q += 6;
			}
			o += put_utf8(o, (unsigned long)cp);
			q += 6;
		} else if (c < 0x80) {
			*o++ = c;
			q++;
		} else {
			size_t n = utf8_seq(q, qend);

			if (n == 0)
				return fail(ps, q, "invalid UTF-8 in string");
			memcpy(o, q, n);
			o += n;
			q += n;
		}
	}
	*o = '\0';
	*out = (const char *)buf;
	*outlen = (size_t)(o - buf);
	ps->p = qend + 1;
	return 0;
}

static bool
is_digit(const unsigned char *p, const unsigned char *end)
{
	return p < end && *p >= '0' && *p <= '9';
}

/* Grammar: -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)? */
static int
parse_number(struct parser *ps, struct json_value *v)
{
	const unsigned char *s = ps->p, *p = ps->p, *end = ps->end;
	bool integral = true, neg = false;
	char small[64], *tmp, *endp;
	size_t n;

	if (*p == '-') {
		neg = true;
		p++;
	}
	if (!is_digit(p, end))
		return fail(ps, p, "expected digit");
	if (*p == '0') {
		p++;
		if (is_digit(p, end))
			return fail(ps, p, "leading zero in number");
	} else {
		while (is_digit(p, end))
			p++;
	}
	if (p < end && *p == '.') {
		integral = false;
		p++;
		if (!is_digit(p, end))
			return fail(ps, p, "expected digit after decimal point");
		while (is_digit(p, end))
			p++;
	}
	if (p < end && (*p == 'e' || *p == 'E')) {
		integral = false;
		p++;
		if (p < end && (*p == '+' || *p == '-'))
			p++;
		if (!is_digit(p, end))
			return fail(ps, p, "expected digit in exponent");
		while (is_digit(p, end))
			p++;
	}
	n = (size_t)(p - s);

	if (integral) {
		/* Exact int64 when it fits; accumulate negatively so INT64_MIN fits too. */
		int64_t acc = 0;
		bool fits = true;

		for (const unsigned char *d = s + neg; d < p; d++) {
			int dig = *d - '0';

			if (acc < (INT64_MIN + dig) / 10) {
				fits = false;
				break;
			}
			acc = acc * 10 - dig;
		}
		if (fits && !neg && acc == INT64_MIN)
			fits = false;
		if (fits) {
			v->is_int = true;
			v->u.num.i = neg ? acc : -acc;
		}
	}
	/* strtod needs a terminated copy; the C locale's '.' is assumed (certa never calls
	 * setlocale), and a partial conversion is reported instead of silently accepted. */
	tmp = n < sizeof(small) ? small : malloc(n + 1);
	if (tmp == NULL)
		return fail_nomem(ps);
	memcpy(tmp, s, n);
	tmp[n] = '\0';
	errno = 0;
	v->u.num.d = strtod(tmp, &endp);
	if (endp != tmp + n) {
		if (tmp != small)
			free(tmp);
		return fail(ps, s, "number conversion failed");
	}
	if (tmp != small)
		free(tmp);
	if (isinf(v->u.num.d))
		return fail(ps, s, "number out of range");
	ps->p = p;
	return 0;
}

static int parse_value(struct parser *ps, struct json_value **out);

static int
parse_array(struct parser *ps, struct json_value *v)
{
	size_t base = ps->top, n;
	int rc;

	ps->p++; /* '[' */
	skip_ws(ps);
	if (ps->p < ps->end && *ps->p == ']') {
		ps->p++;
		return 0;
	}
	for (;;) {
		struct json_value *item;

		if ((rc = parse_value(ps, &item)) < 0)
			return rc;
		if ((rc = push(ps, NULL, 0, item)) < 0)
			return rc;
		skip_ws(ps);
		if (ps->p >= ps->end)
			return fail(ps, ps->p, "expected ',' or ']'");
		if (*ps->p == ']') {
			ps->p++;
			break;
		}
		if (*ps->p != ',')
			return fail(ps, ps->p, "expected ',' or ']'");
		ps->p++;
	}
	n = ps->top - base;
	v->u.arr.items = arena_alloc(ps->doc, n * sizeof(*v->u.arr.items));
	if (v->u.arr.items == NULL)
		return fail_nomem(ps);
	for (size_t i = 0; i < n; i++)
		v->u.arr.items[i] = ps->stack[base + i].value;
	v->u.arr.n = n;
	ps->top = base;
	return 0;
}

static int
parse_object(struct parser *ps, struct json_value *v)
{
	size_t base = ps->top, n;
	int rc;

	ps->p++; /* '{' */
	skip_ws(ps);
	if (ps->p < ps->end && *ps->p == '}') {
		ps->p++;
		return 0;
	}
	for (;;) {
		struct json_value *val;
		const char *key;
		size_t keylen;

		if (ps->p >= ps->end || *ps->p != '"')
			return fail(ps, ps->p, "expected string key");
		if ((rc = parse_string(ps, &key, &keylen)) < 0)
			return rc;
		skip_ws(ps);
		if (ps->p >= ps->end || *ps->p != ':')
			return fail(ps, ps->p, "expected ':'");
		ps->p++;
		if ((rc = parse_value(ps, &val)) < 0)
			return rc;
		if ((rc = push(ps, key, keylen, val)) < 0)
			return rc;
		skip_ws(ps);
		if (ps->p >= ps->end)
			return fail(ps, ps->p, "expected ',' or '}'");
		if (*ps->p == '}') {
			ps->p++;
			break;
		}
		if (*ps->p != ',')
			return fail(ps, ps->p, "expected ',' or '}'");
		ps->p++;
		skip_ws(ps);
	}
	n = ps->top - base;
	v->u.obj.members = arena_alloc(ps->doc, n * sizeof(*v->u.obj.members));
	if (v->u.obj.members == NULL)
		return fail_nomem(ps);
	memcpy(v->u.obj.members, ps->stack + base, n * sizeof(*v->u.obj.members));
	v->u.obj.n = n;
	ps->top = base;
	return 0;
}

static int
parse_literal(struct parser *ps, const char *lit, enum json_type t, struct json_value **out)
{
	size_t n = strlen(lit), avail = (size_t)(ps->end - ps->p);

	for (size_t i = 0; i < n; i++) {
		if (i >= avail)
			return fail(ps, ps->end, "truncated literal");
		if (ps->p[i] != (unsigned char)lit[i])
			return fail(ps, ps->p, "invalid literal");
	}
	if ((*out = new_value(ps, t)) == NULL)
		return fail_nomem(ps);
	ps->p += n;
	return 0;
}

/* Recursion is bounded by max_depth: containers increment depth before descending. */
static int
parse_value(struct parser *ps, struct json_value **out)
{
	struct json_value *v;
	int rc;

	skip_ws(ps);
	if (ps->p >= ps->end)
		return fail(ps, ps->p, "expected value");
	switch (*ps->p) {
	case 'n':
		return parse_literal(ps, "null", JSON_NULL, out);
	case 't':
		return parse_literal(ps, "true", JSON_TRUE, out);
	case 'f':
		return parse_literal(ps, "false", JSON_FALSE, out);
	case '"':
		if ((v = new_value(ps, JSON_STRING)) == NULL)
			return fail_nomem(ps);
		if ((rc = parse_string(ps, &v->u.str.s, &v->u.str.len)) < 0)
			return rc;
		break;
	case '[':
	case '{':
		if (++ps->depth > ps->max_depth)
			return fail(ps, ps->p, "nesting too deep");
		if ((v = new_value(ps, *ps->p == '[' ? JSON_ARRAY : JSON_OBJECT)) == NULL)
			return fail_nomem(ps);
		rc = v->type == JSON_ARRAY ? parse_array(ps, v) : parse_object(ps, v);
		if (rc < 0)
			return rc;
		ps->depth--;
		break;
	default:
		if (*ps->p != '-' && !(*ps->p >= '0' && *ps->p <= '9'))
			return fail(ps, ps->p, "unexpected character");
		if ((v = new_value(ps, JSON_NUMBER)) == NULL)
			return fail_nomem(ps);
		if ((rc = parse_number(ps, v)) < 0)
			return rc;
		break;
	}
	*out = v;
	return 0;
}

int
json_parse(const char *buf, size_t len, struct json_doc **out, char *err, size_t errlen)
{
	return json_parse_ex(buf, len, NULL, out, NULL, err, errlen);
}

int
json_parse_ex(const char *buf, size_t len, const struct json_limits *lim,
	struct json_doc **out, size_t *err_offset, char *err, size_t errlen)
{
	size_t max_size = lim != NULL && lim->max_size ? lim->max_size : JSON_DEFAULT_MAX_SIZE;
	struct parser ps = { 0 };
	struct json_value *root;
	int rc;

	if ((buf == NULL && len > 0) || out == NULL) {
		rc = -EINVAL;
		ps.err_msg = "invalid argument";
		goto fail;
	}
	if (len > max_size) {
		rc = -E2BIG;
		ps.err_off = max_size;
		ps.err_msg = "input exceeds size limit";
		goto fail;
	}
	ps.start = ps.p = (const unsigned char *)(buf != NULL ? buf : "");
	ps.end = ps.start + len;
	ps.max_depth = lim != NULL && lim->max_depth ? lim->max_depth : JSON_DEFAULT_MAX_DEPTH;
	ps.doc = calloc(1, sizeof(*ps.doc));
	if (ps.doc == NULL) {
		rc = -ENOMEM;
		ps.err_msg = "out of memory";
		goto fail;
	}
	if ((rc = parse_value(&ps, &root)) < 0)
		goto fail_doc;
	skip_ws(&ps);
	if (ps.p != ps.end) {
		rc = fail(&ps, ps.p, "trailing characters after value");
		goto fail_doc;
	}
	ps.doc->root = root;
	free(ps.stack);
	*out = ps.doc;
	return 0;

fail_doc:
	free(ps.stack);
	json_free(ps.doc);
fail:
	if (err_offset != NULL)
		*err_offset = ps.err_off;
	if (err != NULL && errlen > 0)
		snprintf(err, errlen, "offset %zu: %s", ps.err_off, ps.err_msg);
	return rc;
}

void
json_free(struct json_doc *doc)
{
	struct chunk *c, *next;

	if (doc == NULL)
		return;
	for (c = doc->chunks; c != NULL; c = next) {
		next = c->next;
		free(c);
	}
	free(doc);
}

const struct json_value *
json_root(const struct json_doc *doc)
{
	return doc != NULL ? doc->root : NULL;
}

size_t
json_doc_memory(const struct json_doc *doc)
{
	return doc != NULL ? doc->memory + sizeof(*doc) : 0;
}

enum json_type
json_type(const struct json_value *v)
{
	return v != NULL ? v->type : JSON_NONE;
}

const char *
json_type_name(enum json_type t)
{
	static const char *const names[] = {
		[JSON_NONE] = "none",
		[JSON_NULL] = "null",
		[JSON_FALSE] = "false",
		[JSON_TRUE] = "true",
		[JSON_NUMBER] = "number",
		[JSON_STRING] = "string",
		[JSON_ARRAY] = "array",
		[JSON_OBJECT] = "object",
	};

	if ((unsigned)t < sizeof(names) / sizeof(names[0]))
		return names[t];
	return "unknown";
}

const struct json_value *
json_object_getn(const struct json_value *v, const char *key, size_t keylen)
{
	if (v == NULL || v->type != JSON_OBJECT || key == NULL)
		return NULL;
	for (size_t i = 0; i < v->u.obj.n; i++) {
		const struct json_member *m = &v->u.obj.members[i];

		if (m->keylen == keylen && memcmp(m->key, key, keylen) == 0)
			return m->value;
	}
	return NULL;
}

const struct json_value *
json_object_get(const struct json_value *v, const char *key)
{
	return key != NULL ? json_object_getn(v, key, strlen(key)) : NULL;
}

size_t
json_object_len(const struct json_value *v)
{
	return v != NULL && v->type == JSON_OBJECT ? v->u.obj.n : 0;
}

const char *
json_object_key_at(const struct json_value *v, size_t i, size_t *keylen)
{
	if (v == NULL || v->type != JSON_OBJECT || i >= v->u.obj.n)
		return NULL;
	if (keylen != NULL)
		*keylen = v->u.obj.members[i].keylen;
	return v->u.obj.members[i].key;
}

const struct json_value *
json_object_value_at(const struct json_value *v, size_t i)
{
	if (v == NULL || v->type != JSON_OBJECT || i >= v->u.obj.n)
		return NULL;
	return v->u.obj.members[i].value;
}

size_t
json_array_len(const struct json_value *v)
{
	return v != NULL && v->type == JSON_ARRAY ? v->u.arr.n : 0;
}

const struct json_value *
json_array_at(const struct json_value *v, size_t i)
{
	if (v == NULL || v->type != JSON_ARRAY || i >= v->u.arr.n)
		return NULL;
	return v->u.arr.items[i];
}

const char *
json_string(const struct json_value *v, size_t *len)
{
	if (v == NULL || v->type != JSON_STRING)
		return NULL;
	if (len != NULL)
		*len = v->u.str.len;
	return v->u.str.s;
}

double
json_number(const struct json_value *v)
{
	return v != NULL && v->type == JSON_NUMBER ? v->u.num.d : 0.0;
}

bool
json_is_int(const struct json_value *v)
{
	return v != NULL && v->type == JSON_NUMBER && v->is_int;
}

int64_t
json_int(const struct json_value *v)
{
	return json_is_int(v) ? v->u.num.i : 0;
}

bool
json_bool(const struct json_value *v)
{
	return v != NULL && v->type == JSON_TRUE;
}
