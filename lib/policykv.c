/* policykv.c — policy keys and `key = value` text for certactl; see policykv.h. */
#include "lib/policykv.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/strmap.h"
#include "scheduler/policy.h"
#include "scheduler/sched.h"

/* Longest key and value kept from a line (policy_parse's own limits are smaller). */
#define POLICYKV_KEY_MAX 160
#define POLICYKV_VAL_MAX 160
#define POLICYKV_LINE_MAX 512

/* The default policy in text form (malloc'd), the source of the valid keys. */
static char *
policykv_default_text(void)
{
	struct sched_policy p;
	size_t need;
	char *s;

	sched_policy_default(&p);
	need = policy_format(&p, NULL, 0);
	s = malloc(need + 1);
	if (s != NULL)
		policy_format(&p, s, need + 1);
	return s;
}

/* Whether key is one of the keys of def, the default policy's text ("key = value" lines, no
 * sections, no comments: what policy_format writes). */
static int
policykv_in_default(const char *def, const char *key)
{
	size_t klen = strlen(key);

	while (*def) {
		if (strncmp(def, key, klen) == 0 && strncmp(def + klen, " =", 2) == 0)
			return 1;
		def += strcspn(def, "\n");
		def += *def == '\n';
	}
	return 0;
}

/* Trims spaces at both ends of s in place; returns the start. */
static char *
policykv_trim(char *s)
{
	size_t n;

	while (isspace((unsigned char)*s))
		s++;
	n = strlen(s);
	while (n > 0 && isspace((unsigned char)s[n - 1]))
		s[--n] = '\0';
	return s;
}

int
policykv_each(const char *text, policykv_fn fn, void *arg)
{
	char line[POLICYKV_LINE_MAX], section[64] = "", key[POLICYKV_KEY_MAX], *l, *eq, *c, *k;
	char *def = NULL;   /* the valid keys, formatted once per call when a section needs them */
	size_t n;
	int rc = 0;

	while (*text) {
		n = strcspn(text, "\n");
		snprintf(line, sizeof line, "%.*s", (int)(n < sizeof line ? n : sizeof line - 1),
		    text);
		text += n + (text[n] == '\n');
		/* Comments: whole-line, or '#'/';' after whitespace (as policy_parse reads them). */
		for (c = line; *c; c++)
			if ((*c == '#' || *c == ';') && (c == line || isspace((unsigned char)c[-1]))) {
				*c = '\0';
				break;
			}
		l = policykv_trim(line);
		if (*l == '\0')
			continue;
		n = strlen(l);
		if (l[0] == '[') {
			if (n >= 3 && l[n - 1] == ']')
				snprintf(section, sizeof section, "%.*s", (int)(n - 2), l + 1);
			continue;
		}
		eq = strchr(l, '=');
		if (eq == NULL)
			continue;
		*eq = '\0';
		k = policykv_trim(l);
		if (*k == '\0')
			continue;
		/* In a section a key is "section.key" unless it is a full key by itself.  Out of
		 * memory: every key in a section is taken as relative to it. */
		if (section[0] != '\0' && def == NULL)
			def = policykv_default_text();
		if (section[0] != '\0' && (def == NULL || !policykv_in_default(def, k)))
			snprintf(key, sizeof key, "%s.%s", section, k);
		else
			snprintf(key, sizeof key, "%s", k);
		rc = fn(key, policykv_trim(eq + 1), arg);
		if (rc != 0)
			break;
	}
	free(def);
	return rc;
}

/* --- keys ------------------------------------------------------------------------------ */

struct policykv_keys_acc {
	char *buf;
	size_t len, need;
};

static int
policykv_keys_cb(const char *key, const char *value, void *arg)
{
	struct policykv_keys_acc *a = arg;
	size_t at = a->need;

	(void)value;
	if (at < a->len)
		snprintf(a->buf + at, a->len - at, "%s%s", at > 0 ? ", " : "", key);
	a->need += strlen(key) + (at > 0 ? 2 : 0);
	return 0;
}

size_t
policykv_keys(char *buf, size_t len)
{
	struct policykv_keys_acc a = { buf, len, 0 };
	char *def = policykv_default_text();

	if (len > 0)
		buf[0] = '\0';
	if (def == NULL)
		return 0;
	policykv_each(def, policykv_keys_cb, &a);
	free(def);
	return a.need;
}

int
policykv_is_key(const char *key)
{
	char *def = policykv_default_text();
	int rc;

	if (def == NULL)
		return -ENOMEM;
	rc = policykv_in_default(def, key);
	free(def);
	return rc;
}

/* --- assignments ------------------------------------------------------------------------ */

/* A finite decimal number: digits, sign, point and exponent only (no hex, nan, inf). */
static int
policykv_number(const char *s, double *out)
{
	char *end;
	double v;

	if (*s == '\0' || strspn(s, "0123456789+-.eE") != strlen(s))
		return -EINVAL;
	errno = 0;
	v = strtod(s, &end);
	if (*end != '\0' || !isfinite(v) || (errno == ERANGE && fabs(v) > 1.0))
		return -EINVAL;
	if (out != NULL)
		*out = v;
	return 0;
}

int
policykv_text(char *const *as, size_t n, char **text, char *err, size_t errlen)
{
	char keys[1024], *buf = NULL, *p, *k, *v;
	const char *eq;
	size_t len = 0, i, j, klen;
	int rc;

	for (i = 0; i < n; i++) {
		eq = strchr(as[i], '=');
		if (eq == NULL || eq == as[i]) {
			if (err != NULL)
				snprintf(err, errlen, "'%s' is not KEY=VALUE", as[i]);
			rc = -EINVAL;
			goto fail_buf;
		}
		klen = (size_t)(eq - as[i]);
		k = strndup(as[i], klen);
		if (k == NULL) {
			rc = -ENOMEM;
			goto fail_buf;
		}
		rc = klen < POLICYKV_KEY_MAX && strpbrk(k, " \t#;[]") == NULL ?
		    policykv_is_key(k) : 0;
		if (rc <= 0) {
			if (rc == 0 && err != NULL) {
				policykv_keys(keys, sizeof keys);
				snprintf(err, errlen, "unknown policy key '%.64s' (valid keys: %s)", k,
				    keys);
			}
			free(k);
			rc = rc == 0 ? -ENOENT : rc;
			goto fail_buf;
		}
		free(k);
		v = (char *)eq + 1;
		if (strlen(v) >= POLICYKV_VAL_MAX || policykv_number(v, NULL) != 0) {
			if (err != NULL)
				snprintf(err, errlen, "%.*s expects a number such as 64 or 0.9, not "
				    "'%.64s'", (int)klen, as[i], v);
			rc = -EINVAL;
			goto fail_buf;
		}
		for (j = 0; j < i; j++) {
			if (strncmp(as[j], as[i], klen + 1) == 0) {
				if (err != NULL)
					snprintf(err, errlen, "%.*s is given twice", (int)klen,
					    as[i]);
				rc = -EEXIST;
				goto fail_buf;
			}
		}
		p = realloc(buf, len + strlen(as[i]) + 4);
		if (p == NULL) {
			rc = -ENOMEM;
			goto fail_buf;
		}
		buf = p;
		len += (size_t)sprintf(buf + len, "%.*s = %s\n", (int)klen, as[i], v);
	}
	if (buf == NULL && (buf = strdup("")) == NULL)
		return -ENOMEM;
	*text = buf;
	return 0;

fail_buf:
	if (rc == -ENOMEM && err != NULL)
		snprintf(err, errlen, "out of memory");
	free(buf);
	return rc;
}

/* --- reading texts ----------------------------------------------------------------------- */

struct policykv_find {
	const char *key;
	char *val;
	size_t vallen;
	int found;
};

static int
policykv_value_cb(const char *key, const char *value, void *arg)
{
	struct policykv_find *f = arg;

	if (strcmp(key, f->key) != 0)
		return 0;
	if (f->vallen > 0)
		snprintf(f->val, f->vallen, "%s", value);
	f->found = 1;
	return 0;  /* a later line wins, as it would on the server */
}

int
policykv_value(const char *text, const char *key, char *val, size_t vallen)
{
	struct policykv_find f = { key, val, vallen, 0 };

	policykv_each(text, policykv_value_cb, &f);
	return f.found ? 0 : -ENOENT;
}

/* Values equal as numbers when both are numbers, else as strings. */
static int
policykv_same(const char *a, const char *b)
{
	double x, y;

	if (policykv_number(a, &x) == 0 && policykv_number(b, &y) == 0)
		return x == y;
	return strcmp(a, b) == 0;
}

/* The last value of each key of a text (a later line wins, as on the server), and how many
 * lines of the text carry each key. */
struct policykv_last {
	struct strmap *values;       /* key -> malloc'd value */
	int oom;
};

static int
policykv_last_cb(const char *key, const char *value, void *arg)
{
	struct policykv_last *l = arg;
	char *v = strdup(value);
	void *old = NULL;

	if (v == NULL || strmap_put(l->values, key, v, &old) != 0) {
		free(v);
		l->oom = 1;
		return 1;
	}
	free(old);
	return 0;
}

/* Fills l from text.  Returns 0 or -ENOMEM (l is then empty and freed). */
static int
policykv_last_load(struct policykv_last *l, const char *text)
{
	l->oom = 0;
	l->values = strmap_new();
	if (l->values == NULL)
		return -ENOMEM;
	policykv_each(text, policykv_last_cb, l);
	if (l->oom) {
		strmap_free(l->values, free);
		l->values = NULL;
		return -ENOMEM;
	}
	return 0;
}

struct policykv_diff_ctx {
	const struct strmap *other;  /* last values of the text compared against */
	int old_side;                /* walking the old text (keys missing from the new one) */
	policykv_change_fn fn;
	void *arg;
	int n;
};

static int
policykv_diff_cb(const char *key, const char *value, void *arg)
{
	struct policykv_diff_ctx *d = arg;
	const char *other = strmap_get(d->other, key);

	if (other == NULL) {
		d->fn(key, d->old_side ? value : NULL, d->old_side ? NULL : value, d->arg);
		d->n++;
	} else if (!d->old_side && !policykv_same(other, value)) {
		d->fn(key, other, value, d->arg);
		d->n++;
	}
	return 0;
}

/* Each text is read into a map of its keys' last values once: comparing line by line against
 * the other text again was quadratic in the number of lines (seconds for a 64 KiB text;
 * found by fuzz_policy). */
int
policykv_diff(const char *old_text, const char *new_text, policykv_change_fn fn, void *arg)
{
	struct policykv_last o, n;
	struct policykv_diff_ctx d = { NULL, 0, fn, arg, 0 };

	if (policykv_last_load(&o, old_text) != 0)
		return -ENOMEM;
	if (policykv_last_load(&n, new_text) != 0) {
		strmap_free(o.values, free);
		return -ENOMEM;
	}
	d.other = o.values;
	policykv_each(new_text, policykv_diff_cb, &d);
	d.other = n.values;
	d.old_side = 1;
	policykv_each(old_text, policykv_diff_cb, &d);
	strmap_free(o.values, free);
	strmap_free(n.values, free);
	return d.n;
}
