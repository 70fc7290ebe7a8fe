/* policykv.c — policy keys and `key = value` text for certactl; see policykv.h. */
#include "scheduler/policykv.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/ini.h"
#include "lib/strmap.h"
#include "scheduler/policy.h"
#include "scheduler/sched.h"

/* Longest key and value kept from a line (policy_parse's own limits are smaller). */
#define POLICYKV_KEY_MAX 160
#define POLICYKV_VAL_MAX 160
#define POLICYKV_LINE_MAX 512

/* policykv_each()'s state across ini_parse() callbacks. */
struct policykv_walk {
	policykv_fn fn;
	void *arg;
};

/* ini_parse() callback: composes "section.key" and hands it on. */
static int
policykv_item(const struct ini_item *it, void *arg)
{
	struct policykv_walk *w = arg;
	char key[POLICYKV_KEY_MAX];

	snprintf(key, sizeof key, "%.*s", (int)it->key_len, it->key);
	/* In a section a key is "section.key" unless it is a full key by itself. */
	if (it->section != NULL && policy_key_find(key) < 0)
		snprintf(key, sizeof key, "%.*s.%.*s", (int)it->section_len, it->section,
		    (int)it->key_len, it->key);
	return w->fn(key, it->value, w->arg);
}

int
policykv_each(const char *text, policykv_fn fn, void *arg)
{
	struct policykv_walk w = { fn, arg };

	return ini_parse(text, strlen(text), 0, policykv_item, NULL, &w, NULL);
}

/* --- keys ------------------------------------------------------------------------------ */

size_t
policykv_keys(char *buf, size_t len)
{
	char name[POLICY_KEY_MAX + 1];
	const char *k;
	size_t i, need = 0;

	if (len > 0)
		buf[0] = '\0';
	for (i = 0; (k = policy_key_name(i, name, sizeof name)) != NULL; i++) {
		if (need < len)
			snprintf(buf + need, len - need, "%s%s", i > 0 ? ", " : "", k);
		need += strlen(k) + (i > 0 ? 2 : 0);
	}
	return need;
}

int
policykv_is_key(const char *key)
{
	return policy_key_find(key) >= 0;
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
