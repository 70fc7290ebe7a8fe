/* config.c — INI configuration validated against an option table (see config.h). */
#include "lib/config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/error.h"
#include "lib/fileio.h"
#include "lib/ini.h"
#include "lib/log.h"

#define CONFIG_FILE_MAX (16L << 20)  /* larger files are refused, not slurped */
#define CONFIG_NAME_MAX 128          /* longest option name, NUL included */
#define CONFIG_SHOW_MAX 64           /* bytes of user text quoted in a message */
#define CONFIG_SHOW_BUF (CONFIG_SHOW_MAX * 4 + 8)
#define CONFIG_MSG_MAX 512

/* The value of one option; which fields count depends on the option's type. */
struct config_value {
	char *str;        /* as written; NULL = unset (all types but LIST) */
	long long i;      /* INT, SIZE (bytes), DURATION (ms), BOOL, ENUM index */
	double d;         /* DOUBLE */
	char **items;     /* LIST */
	size_t nitems;
};

struct config {
	const struct config_option *table;
	size_t n;
	struct config_value *values;  /* n entries, parallel to table */
};

/* State of one config_load_* call. */
struct config_parse {
	struct config *cfg;   /* the copy being filled; installed only if the whole text parses */
	const char *name;     /* PATH in messages */
	unsigned *seen;       /* per option: line it was set at in this load, 0 = not yet */
	const char *sect;     /* current [section], pointing into the text; NULL at the top */
	size_t sectlen;
	char *err;
	size_t errlen;
};

struct config_unit {
	const char *suffix;
	long long mult;
};

static const struct config_unit config_size_units[] = {
	{ "", 1 }, { "b", 1 },
	{ "k", 1LL << 10 }, { "kb", 1LL << 10 }, { "kib", 1LL << 10 },
	{ "m", 1LL << 20 }, { "mb", 1LL << 20 }, { "mib", 1LL << 20 },
	{ "g", 1LL << 30 }, { "gb", 1LL << 30 }, { "gib", 1LL << 30 },
	{ "t", 1LL << 40 }, { "tb", 1LL << 40 }, { "tib", 1LL << 40 },
	{ NULL, 0 },
};

static const struct config_unit config_duration_units[] = {
	{ "", 1 }, { "ms", 1 }, { "s", 1000 }, { "m", 60 * 1000 }, { "h", 60 * 60 * 1000 },
	{ NULL, 0 },
};

/* Largest first: how bounds and ranges are shown back to the user. */
static const struct config_unit config_size_show[] = {
	{ "T", 1LL << 40 }, { "G", 1LL << 30 }, { "M", 1LL << 20 }, { "K", 1LL << 10 },
	{ NULL, 0 },
};

static const struct config_unit config_duration_show[] = {
	{ "h", 60 * 60 * 1000 }, { "m", 60 * 1000 }, { "s", 1000 }, { "ms", 1 },
	{ NULL, 0 },
};

static const struct {
	const char *word;
	int value;
} config_bool_words[] = {
	{ "true", 1 }, { "false", 0 }, { "yes", 1 }, { "no", 0 },
	{ "on", 1 }, { "off", 0 }, { "1", 1 }, { "0", 0 },
};

static const char *const config_type_names[] = {
	[CONFIG_STRING] = "string",
	[CONFIG_INT] = "integer",
	[CONFIG_DOUBLE] = "number",
	[CONFIG_BOOL] = "boolean",
	[CONFIG_LIST] = "list",
	[CONFIG_ENUM] = "enum",
	[CONFIG_SIZE] = "size",
	[CONFIG_DURATION] = "duration",
};

static void config_bug(const char *fmt, ...)
	__attribute__((noreturn, format(printf, 1, 2)));
static void config_errf(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int config_parse_error(struct config_parse *p, unsigned line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* A programming error (bad table, unknown name, wrong getter): always abort, never NDEBUG. */
static void
config_bug(const char *fmt, ...)
{
	char msg[CONFIG_MSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	log_msg(LOG_LVL_ERR, LOG_CONFIG, "BUG: %s", msg);
	abort();
}

/* Writes a message for the caller; err may be NULL when the caller only wants the code. */
static void
config_errf(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* Line-numbered message "PATH:LINE: ..."; returns CERTA_ECONFIG so callers can return it. */
static int
config_parse_error(struct config_parse *p, unsigned line, const char *fmt, ...)
{
	char msg[CONFIG_MSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	config_errf(p->err, p->errlen, "%s:%u: %s", p->name, line, msg);
	return CERTA_ECONFIG;
}

/* User text goes into log lines: escape what is not printable ASCII and cut long values. */
static void
config_show(char *buf, size_t buflen, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	size_t i, o = 0;

	for (i = 0; i < len && i < CONFIG_SHOW_MAX && o + 5 < buflen; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c >= 0x20 && c < 0x7f) {
			buf[o++] = (char)c;
		} else {
			buf[o++] = '\\';
			buf[o++] = 'x';
			buf[o++] = hex[c >> 4];
			buf[o++] = hex[c & 15];
		}
	}
	if (i < len && o + 4 <= buflen) {
		memcpy(buf + o, "...", 3);
		o += 3;
	}
	buf[o] = '\0';
}

/* Only ASCII whitespace; the C locale functions would depend on setlocale. */
static int
config_isspace(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

static int
config_isdigit(char c)
{
	return c >= '0' && c <= '9';
}

/* Characters of keys and section names: letters, digits, '_', '-', '.'. */
static int
config_iskey(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || config_isdigit(c) ||
		c == '_' || c == '-' || c == '.';
}

/* Linear search: tables are tens of rows and lookups happen at start and reload. */
static long
config_find(const struct config_option *table, size_t n, const char *name)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (strcmp(table[i].name, name) == 0)
			return (long)i;
	}
	return -1;
}

/* Getter lookup: an unknown name or a getter of the wrong type is a bug in the caller. */
static const struct config_value *
config_lookup(const struct config *cfg, const char *name, unsigned type_mask, const char *getter)
{
	long i;

	if (cfg == NULL || name == NULL)
		config_bug("%s called with a NULL %s", getter, cfg == NULL ? "config" : "name");
	i = config_find(cfg->table, cfg->n, name);
	if (i < 0)
		config_bug("%s: no option '%s' in the option table", getter, name);
	if (!(type_mask & (1u << cfg->table[i].type)))
		config_bug("%s: option '%s' is of type %s", getter, name,
			config_type_names[cfg->table[i].type]);
	return &cfg->values[i];
}

/* Bounds of zero and zero mean none. */
static int
config_bounded(const struct config_option *o)
{
	return !(o->min == 0 && o->max == 0);
}

/* Shows a bound the way a user would write it: "1000", "0.5", "64M", "30s". */
static void
config_fmt_number(const struct config_option *o, double x, char *buf, size_t len)
{
	const struct config_unit *u = NULL;
	long long v;

	if (o->type == CONFIG_DOUBLE || x != floor(x) || fabs(x) >= 9.2e18) {
		snprintf(buf, len, "%g", x);
		return;
	}
	v = (long long)x;
	if (o->type == CONFIG_SIZE)
		u = config_size_show;
	else if (o->type == CONFIG_DURATION)
		u = config_duration_show;
	for (; u != NULL && u->suffix != NULL; u++) {
		if (v != 0 && v % u->mult == 0) {
			snprintf(buf, len, "%lld%s", v / u->mult, u->suffix);
			return;
		}
	}
	snprintf(buf, len, "%lld%s", v, o->type == CONFIG_DURATION ? "ms" : "");
}

/* Decimal integer with an optional sign and nothing else; 0, -EINVAL or -ERANGE. */
static int
config_parse_ll(const char *s, long long *out)
{
	const char *digits = s;
	char *end;
	long long v;

	if (*digits == '+' || *digits == '-')
		digits++;
	if (!config_isdigit(*digits))
		return -EINVAL;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (*end != '\0')
		return -EINVAL;
	if (errno == ERANGE)
		return -ERANGE;
	*out = v;
	return 0;
}

/* Non-negative integer, optional blanks, then one of units' suffixes (case-insensitive). */
static int
config_parse_scaled(const char *s, const struct config_unit *units, long long *out)
{
	const struct config_unit *u;
	long long v = 0;
	int overflow = 0;

	if (!config_isdigit(*s))
		return -EINVAL;
	for (; config_isdigit(*s); s++) {
		int d = *s - '0';

		if (v > (LLONG_MAX - d) / 10)
			overflow = 1;
		else
			v = v * 10 + d;
	}
	while (*s == ' ' || *s == '\t')
		s++;
	for (u = units; u->suffix != NULL; u++) {
		if (strcasecmp(s, u->suffix) != 0)
			continue;
		if (overflow || v > LLONG_MAX / u->mult)
			return -ERANGE;
		*out = v * u->mult;
		return 0;
	}
	return -EINVAL;
}

/* "'x' is not one of: a, b, c" for ENUM and BOOL. */
static void
config_not_one_of(char *msg, size_t msglen, const char *shown, const char *const *words,
	size_t nwords)
{
	size_t i, o;
	int w;

	w = snprintf(msg, msglen, "'%s' is not one of: ", shown);
	o = w < 0 ? 0 : (size_t)w;
	for (i = 0; i < nwords && o < msglen; i++) {
		w = snprintf(msg + o, msglen - o, "%s%s", i > 0 ? ", " : "", words[i]);
		if (w < 0)
			break;
		o += (size_t)w;
	}
}

/*
 * Validates text for a non-list option into *out (which then owns a copy of text).
 * Returns 0, CERTA_ECONFIG with a message without "PATH:LINE: ", or -ENOMEM.
 */
static int
config_parse_value(const struct config_option *o, const char *text, struct config_value *out,
	char *msg, size_t msglen)
{
	struct config_value v = { 0 };
	char shown[CONFIG_SHOW_BUF], lo[64], hi[64];
	const char *bool_words[sizeof config_bool_words / sizeof config_bool_words[0]];
	double x = 0;
	size_t i, n;
	char *end;
	int rc = 0;

	config_show(shown, sizeof shown, text, strlen(text));
	switch (o->type) {
	case CONFIG_STRING:
		break;
	case CONFIG_INT:
		rc = config_parse_ll(text, &v.i);
		if (rc == -EINVAL) {
			snprintf(msg, msglen, "'%s' is not an integer", shown);
			return CERTA_ECONFIG;
		}
		x = (double)v.i;
		break;
	case CONFIG_DOUBLE:
		errno = 0;
		v.d = strtod(text, &end);
		if (!(config_isdigit(text[0]) || text[0] == '+' || text[0] == '-' ||
		    text[0] == '.') || end == text || *end != '\0' || !isfinite(v.d)) {
			snprintf(msg, msglen, "'%s' is not a number", shown);
			return CERTA_ECONFIG;
		}
		x = v.d;
		break;
	case CONFIG_BOOL:
		n = sizeof config_bool_words / sizeof config_bool_words[0];
		for (i = 0; i < n; i++) {
			if (strcasecmp(text, config_bool_words[i].word) == 0)
				break;
		}
		if (i == n) {
			for (i = 0; i < n; i++)
				bool_words[i] = config_bool_words[i].word;
			config_not_one_of(msg, msglen, shown, bool_words, n);
			return CERTA_ECONFIG;
		}
		v.i = config_bool_words[i].value;
		break;
	case CONFIG_ENUM:
		for (i = 0; o->choices[i] != NULL; i++) {
			if (strcmp(text, o->choices[i]) == 0)
				break;
		}
		if (o->choices[i] == NULL) {
			config_not_one_of(msg, msglen, shown, o->choices, i);
			return CERTA_ECONFIG;
		}
		v.i = (long long)i;
		break;
	case CONFIG_SIZE:
	case CONFIG_DURATION:
		rc = config_parse_scaled(text, o->type == CONFIG_SIZE ? config_size_units :
			config_duration_units, &v.i);
		if (rc == -EINVAL) {
			if (o->type == CONFIG_SIZE)
				snprintf(msg, msglen, "'%s' is not a size (bytes with an optional "
					"K, M, G or T suffix)", shown);
			else
				snprintf(msg, msglen, "'%s' is not a duration (a number with an "
					"ms, s, m or h suffix)", shown);
			return CERTA_ECONFIG;
		}
		x = (double)v.i;
		break;
	case CONFIG_LIST:
	default:
		config_bug("config_parse_value: option '%s' has type %d", o->name, (int)o->type);
	}
	if (rc == -ERANGE && !config_bounded(o)) {
		snprintf(msg, msglen, "value %s for '%s' is too large", shown, o->name);
		return CERTA_ECONFIG;
	}
	if (rc == -ERANGE || (config_bounded(o) && (x < o->min || x > o->max))) {
		config_fmt_number(o, o->min, lo, sizeof lo);
		config_fmt_number(o, o->max, hi, sizeof hi);
		snprintf(msg, msglen, "value %s for '%s' is out of range [%s, %s]", shown, o->name,
			lo, hi);
		return CERTA_ECONFIG;
	}
	v.str = strdup(text);
	if (v.str == NULL)
		return -ENOMEM;
	*out = v;
	return 0;
}

/* Frees a list's items; the value then is the empty list. */
static void
config_list_clear(struct config_value *v)
{
	size_t i;

	for (i = 0; i < v->nitems; i++)
		free(v->items[i]);
	free(v->items);
	v->items = NULL;
	v->nitems = 0;
}

/* Appends a copy of s[0..len); on -ENOMEM the list is as it was. */
static int
config_list_append(struct config_value *v, const char *s, size_t len)
{
	char **items;
	char *item;

	item = strndup(s, len);
	if (item == NULL)
		return -ENOMEM;
	items = realloc(v->items, (v->nitems + 1) * sizeof *items);
	if (items == NULL) {
		free(item);
		return -ENOMEM;
	}
	items[v->nitems++] = item;
	v->items = items;
	return 0;
}

/* Releases whatever a value holds. */
static void
config_value_clear(struct config_value *v)
{
	free(v->str);
	config_list_clear(v);
	memset(v, 0, sizeof *v);
}

/* Deep copy for config_dup; dst is empty on -ENOMEM. */
static int
config_value_copy(struct config_value *dst, const struct config_value *src)
{
	size_t i;

	memset(dst, 0, sizeof *dst);
	dst->i = src->i;
	dst->d = src->d;
	if (src->str != NULL) {
		dst->str = strdup(src->str);
		if (dst->str == NULL)
			goto fail;
	}
	for (i = 0; i < src->nitems; i++) {
		if (config_list_append(dst, src->items[i], strlen(src->items[i])) < 0)
			goto fail;
	}
	return 0;
fail:
	config_value_clear(dst);
	return -ENOMEM;
}

static void
config_values_free(struct config_value *values, size_t n)
{
	size_t i;

	if (values == NULL)
		return;
	for (i = 0; i < n; i++)
		config_value_clear(&values[i]);
	free(values);
}

/* A list default is "a, b, c": comma-separated, blanks trimmed, empty items skipped. */
static int
config_list_default(struct config_value *v, const char *def)
{
	const char *p = def, *end;
	size_t len;

	while (*p != '\0') {
		end = strchr(p, ',');
		if (end == NULL)
			end = p + strlen(p);
		len = (size_t)(end - p);
		while (len > 0 && config_isspace(*p)) {
			p++;
			len--;
		}
		while (len > 0 && config_isspace(p[len - 1]))
			len--;
		if (len > 0 && config_list_append(v, p, len) < 0)
			return -ENOMEM;
		p = *end == ',' ? end + 1 : end;
	}
	return 0;
}

/* Tables are code: catch their mistakes on the first config_new, not in production. */
static void
config_check_table(const struct config_option *table, size_t n)
{
	const struct config_option *o;
	size_t i, j, len;

	if (table == NULL && n > 0)
		config_bug("config_new: NULL table with %zu options", n);
	for (i = 0; i < n; i++) {
		o = &table[i];
		if (o->name == NULL)
			config_bug("config_new: option %zu has no name", i);
		len = strlen(o->name);
		if (len == 0 || len >= CONFIG_NAME_MAX || o->name[0] == '.' ||
		    o->name[len - 1] == '.' || strstr(o->name, "..") != NULL)
			config_bug("config_new: bad option name '%s'", o->name);
		for (j = 0; j < len; j++) {
			if (!config_iskey(o->name[j]))
				config_bug("config_new: bad option name '%s'", o->name);
		}
		if ((unsigned)o->type > CONFIG_DURATION)
			config_bug("config_new: option '%s' has type %d", o->name, (int)o->type);
		if (o->type == CONFIG_ENUM && (o->choices == NULL || o->choices[0] == NULL))
			config_bug("config_new: enum option '%s' has no choices", o->name);
		if (o->min > o->max)
			config_bug("config_new: option '%s' has min > max", o->name);
		if ((o->def != NULL && strpbrk(o->def, "\r\n") != NULL) ||
		    (o->help != NULL && strpbrk(o->help, "\r\n") != NULL))
			config_bug("config_new: option '%s': default and help are one line",
				o->name);
		for (j = 0; j < i; j++) {
			if (strcmp(table[j].name, o->name) == 0)
				config_bug("config_new: option '%s' appears twice", o->name);
		}
	}
}

/* Applies defaults after checking the table; aborts on a default that does not validate. */
int
config_new(const struct config_option *table, size_t n, struct config **out)
{
	struct config *cfg;
	char msg[CONFIG_MSG_MAX];
	size_t i;
	int rc;

	config_check_table(table, n);
	cfg = calloc(1, sizeof *cfg);
	if (cfg == NULL)
		return -ENOMEM;
	cfg->table = table;
	cfg->n = n;
	cfg->values = calloc(n > 0 ? n : 1, sizeof *cfg->values);
	if (cfg->values == NULL) {
		rc = -ENOMEM;
		goto fail_cfg;
	}
	for (i = 0; i < n; i++) {
		const char *def = table[i].def;

		if (def == NULL)
			continue;
		if (table[i].type == CONFIG_LIST)
			rc = config_list_default(&cfg->values[i], def);
		else
			rc = config_parse_value(&table[i], def, &cfg->values[i], msg, sizeof msg);
		if (rc == CERTA_ECONFIG)
			config_bug("config_new: default of '%s': %s", table[i].name, msg);
		if (rc < 0)
			goto fail_values;
	}
	*out = cfg;
	return 0;

fail_values:
	config_values_free(cfg->values, n);
fail_cfg:
	free(cfg);
	return rc;
}

/* Frees every value, then the config; the table is not ours. */
void
config_free(struct config *cfg)
{
	if (cfg == NULL)
		return;
	config_values_free(cfg->values, cfg->n);
	free(cfg);
}

/* Deep copy, so the copy can be loaded into and thrown away without touching src. */
int
config_dup(const struct config *src, struct config **out)
{
	struct config *cfg;
	size_t i;

	cfg = calloc(1, sizeof *cfg);
	if (cfg == NULL)
		return -ENOMEM;
	cfg->table = src->table;
	cfg->n = src->n;
	cfg->values = calloc(src->n > 0 ? src->n : 1, sizeof *cfg->values);
	if (cfg->values == NULL)
		goto fail_cfg;
	for (i = 0; i < src->n; i++) {
		if (config_value_copy(&cfg->values[i], &src->values[i]) < 0)
			goto fail_values;
	}
	*out = cfg;
	return 0;

fail_values:
	config_values_free(cfg->values, cfg->n);
fail_cfg:
	free(cfg);
	return -ENOMEM;
}

/* A section is known if some option is named "section.something". */
static int
config_section_known(const struct config *cfg, const char *sect, size_t len)
{
	size_t i;

	for (i = 0; i < cfg->n; i++) {
		const char *name = cfg->table[i].name;

		if (strncmp(name, sect, len) == 0 && name[len] == '.')
			return 1;
	}
	return 0;
}

/* One "key = value" of a load: duplicates of non-list keys are an error, lists accumulate. */
static int
config_parse_assign(struct config_parse *p, unsigned line, const char *key, size_t keylen,
	const char *value)
{
	char name[CONFIG_NAME_MAX + 1], shown[CONFIG_SHOW_BUF], msg[CONFIG_MSG_MAX];
	struct config_value nv, *v;
	const struct config_option *o;
	long idx = -1;
	int w, rc;

	if (p->sect != NULL)
		w = snprintf(name, sizeof name, "%.*s.%.*s", (int)p->sectlen, p->sect,
			(int)keylen, key);
	else
		w = snprintf(name, sizeof name, "%.*s", (int)keylen, key);
	/* A name too long for the buffer is longer than any option's (config_check_table). */
	if (w >= 0 && (size_t)w < sizeof name)
		idx = config_find(p->cfg->table, p->cfg->n, name);
	if (idx < 0) {
		config_show(shown, sizeof shown, name, strlen(name));
		return config_parse_error(p, line, "unknown option '%s'", shown);
	}
	o = &p->cfg->table[idx];
	v = &p->cfg->values[idx];
	if (o->type == CONFIG_LIST) {
		/* The file's list replaces the default (or the previous load's) list. */
		if (p->seen[idx] == 0 || value[0] == '\0')
			config_list_clear(v);
		p->seen[idx] = line;
		if (value[0] == '\0')
			return 0;
		if (config_list_append(v, value, strlen(value)) < 0)
			goto fail_nomem;
		return 0;
	}
	if (p->seen[idx] != 0)
		return config_parse_error(p, line, "'%s' already set at line %u", o->name,
			p->seen[idx]);
	rc = config_parse_value(o, value, &nv, msg, sizeof msg);
	if (rc == -ENOMEM)
		goto fail_nomem;
	if (rc < 0)
		return config_parse_error(p, line, "%s", msg);
	config_value_clear(v);
	*v = nv;
	p->seen[idx] = line;
	return 0;

fail_nomem:
	config_errf(p->err, p->errlen, "%s:%u: out of memory", p->name, line);
	return -ENOMEM;
}

/* ini_parse() callback of a section header: refuses a section no option lives in. */
static int
config_parse_section(const struct ini_item *it, void *arg)
{
	struct config_parse *p = arg;
	char shown[CONFIG_SHOW_BUF];

	if (!config_section_known(p->cfg, it->section, it->section_len)) {
		config_show(shown, sizeof shown, it->section, it->section_len);
		return config_parse_error(p, it->line, "unknown section '%s'", shown);
	}
	return 0;
}

/* ini_parse() callback of one `key = value`. */
static int
config_parse_item(const struct ini_item *it, void *arg)
{
	struct config_parse *p = arg;

	p->sect = it->section;
	p->sectlen = it->section_len;
	return config_parse_assign(p, it->line, it->key, it->key_len, it->value);
}

/* Parses text[0..len) into a copy of cfg and installs the copy's values only on success. */
static int
config_parse_text(struct config *cfg, const char *name, const char *text, size_t len,
	char *err, size_t errlen)
{
	struct config_parse p = { 0 };
	struct ini_error ie = { 0 };
	struct config_value *values;
	struct config *copy;
	int rc;

	rc = config_dup(cfg, &copy);
	if (rc < 0) {
		config_errf(err, errlen, "%s: out of memory", name);
		return rc;
	}
	p.cfg = copy;
	p.name = name;
	p.err = err;
	p.errlen = errlen;
	p.seen = calloc(cfg->n > 0 ? cfg->n : 1, sizeof *p.seen);
	if (p.seen == NULL) {
		config_errf(err, errlen, "%s: out of memory", name);
		rc = -ENOMEM;
		goto fail_copy;
	}
	rc = ini_parse(text, len, INI_QUOTES, config_parse_item, config_parse_section, &p, &ie);
	if (rc == CERTA_ECONFIG && ie.msg[0] != '\0') {
		/* The lexer's own complaint (a callback already wrote its message). */
		config_parse_error(&p, ie.line, "%s", ie.msg);
		goto fail_seen;
	}
	if (rc == -ENOMEM)
		config_errf(err, errlen, "%s: out of memory", name);
	if (rc != 0)
		goto fail_seen;
	values = cfg->values;
	cfg->values = copy->values;
	copy->values = values;
	rc = 0;

fail_seen:
	free(p.seen);
fail_copy:
	config_free(copy);
	return rc;
}

/* All or nothing, like the file: a bad string leaves cfg as it was. */
int
config_load_string(struct config *cfg, const char *name, const char *text, char *err,
	size_t errlen)
{
	return config_parse_text(cfg, name != NULL ? name : "(string)", text, strlen(text),
		err, errlen);
}

/* Reads the whole file (bounded) so that parsing has no I/O in the middle of it. */
int
config_load_file(struct config *cfg, const char *path, char *err, size_t errlen)
{
	char *buf;
	size_t len;
	int rc;

	rc = fileio_read(path, (size_t)CONFIG_FILE_MAX, &buf, &len, err, errlen);
	if (rc != 0)
		return rc;
	rc = config_parse_text(cfg, path, buf, len, err, errlen);
	free(buf);
	return rc;
}

/* A command-line override: same checks as a file line, lists append. */
int
config_set(struct config *cfg, const char *name, const char *value, char *err, size_t errlen)
{
	char shown[CONFIG_SHOW_BUF], msg[CONFIG_MSG_MAX];
	struct config_value nv, *v;
	long idx;
	int rc;

	idx = config_find(cfg->table, cfg->n, name);
	if (idx < 0) {
		config_show(shown, sizeof shown, name, strlen(name));
		config_errf(err, errlen, "unknown option '%s'", shown);
		return CERTA_ECONFIG;
	}
	v = &cfg->values[idx];
	if (cfg->table[idx].type == CONFIG_LIST) {
		if (value[0] == '\0') {
			config_list_clear(v);
			return 0;
		}
		rc = config_list_append(v, value, strlen(value));
		if (rc < 0)
			config_errf(err, errlen, "out of memory");
		return rc;
	}
	rc = config_parse_value(&cfg->table[idx], value, &nv, msg, sizeof msg);
	if (rc == -ENOMEM) {
		config_errf(err, errlen, "out of memory");
		return rc;
	}
	if (rc < 0) {
		config_errf(err, errlen, "%s", msg);
		return rc;
	}
	config_value_clear(v);
	*v = nv;
	return 0;
}

#define CONFIG_T(t) (1u << (t))

/* A list counts as set when it has items, so "is there a worker?" is one call. */
int
config_is_set(const struct config *cfg, const char *name)
{
	const struct config_value *v = config_lookup(cfg, name, ~0u, "config_is_set");

	return v->str != NULL || v->nitems > 0;
}

/* The text as written works for every scalar type, for logging and messages. */
const char *
config_get_str(const struct config *cfg, const char *name)
{
	return config_lookup(cfg, name, ~CONFIG_T(CONFIG_LIST), "config_get_str")->str;
}

/* SIZE and DURATION are integers with units; they share the getter. */
long long
config_get_int(const struct config *cfg, const char *name)
{
	const struct config_value *v = config_lookup(cfg, name,
		CONFIG_T(CONFIG_INT) | CONFIG_T(CONFIG_SIZE) | CONFIG_T(CONFIG_DURATION),
		"config_get_int");

	return v->str != NULL ? v->i : 0;
}

/* DOUBLE only: silently converting an INT would hide a wrong table. */
double
config_get_double(const struct config *cfg, const char *name)
{
	const struct config_value *v = config_lookup(cfg, name, CONFIG_T(CONFIG_DOUBLE),
		"config_get_double");

	return v->str != NULL ? v->d : 0.0;
}

/* Unset reads as false. */
int
config_get_bool(const struct config *cfg, const char *name)
{
	const struct config_value *v = config_lookup(cfg, name, CONFIG_T(CONFIG_BOOL),
		"config_get_bool");

	return v->str != NULL ? (int)v->i : 0;
}

/* Hands out cfg's own array; see config.h for how long it lives. */
size_t
config_get_list(const struct config *cfg, const char *name, const char *const **items)
{
	const struct config_value *v = config_lookup(cfg, name, CONFIG_T(CONFIG_LIST),
		"config_get_list");

	*items = v->nitems > 0 ? (const char *const *)v->items : NULL;
	return v->nitems;
}

/* Index into the option's choices, so callers can map it onto their own enum. */
int
config_get_enum(const struct config *cfg, const char *name)
{
	const struct config_value *v = config_lookup(cfg, name, CONFIG_T(CONFIG_ENUM),
		"config_get_enum");

	return v->str != NULL ? (int)v->i : -1;
}

/* Writes s so that the parser reads it back as s: quoted only when it has to be. */
static void
config_doc_value(FILE *f, const char *s)
{
	size_t len = strlen(s), i;
	int quote = len == 0 || config_isspace(s[0]) || config_isspace(s[len - 1]) ||
		s[0] == '"' || strpbrk(s, "#;") != NULL;

	if (!quote) {
		fputs(s, f);
		return;
	}
	fputc('"', f);
	for (i = 0; i < len; i++) {
		if (s[i] == '"' || s[i] == '\\')
			fputc('\\', f);
		fputc(s[i] == '\n' ? ' ' : s[i], f);
	}
	fputc('"', f);
}

/* Text for roff: backslashes and minus signs escaped, no request at the start of a line. */
static void
config_doc_roff(FILE *f, const char *s)
{
	if (s[0] == '.' || s[0] == '\'')
		fputs("\\&", f);
	for (; *s != '\0'; s++) {
		if (*s == '\\')
			fputs("\\e", f);
		else if (*s == '-')
			fputs("\\-", f);
		else if (*s == '\n')
			fputc(' ', f);
		else
			fputc(*s, f);
	}
}

/* "integer, range [1, 1000]", "one of: a, b", "size in bytes (suffix K, M, G or T)". */
static void
config_doc_type(const struct config_option *o, char *buf, size_t len)
{
	char lo[64], hi[64];
	size_t i, used;

	switch (o->type) {
	case CONFIG_BOOL:
		snprintf(buf, len, "boolean (true/false, yes/no, on/off, 1/0)");
		break;
	case CONFIG_LIST:
		snprintf(buf, len, "list (repeat the key, one item per line)");
		break;
	case CONFIG_ENUM:
		snprintf(buf, len, "one of: ");
		for (i = 0; o->choices[i] != NULL; i++) {
			used = strlen(buf);
			snprintf(buf + used, len - used, "%s%s", i > 0 ? ", " : "", o->choices[i]);
		}
		break;
	case CONFIG_SIZE:
		snprintf(buf, len, "size in bytes (suffix K, M, G or T)");
		break;
	case CONFIG_DURATION:
		snprintf(buf, len, "duration (suffix ms, s, m or h; a bare number is ms)");
		break;
	default:
		snprintf(buf, len, "%s", config_type_names[o->type]);
		break;
	}
	if (config_bounded(o) && (o->type == CONFIG_INT || o->type == CONFIG_DOUBLE ||
	    o->type == CONFIG_SIZE || o->type == CONFIG_DURATION)) {
		config_fmt_number(o, o->min, lo, sizeof lo);
		config_fmt_number(o, o->max, hi, sizeof hi);
		used = strlen(buf);
		snprintf(buf + used, len - used, ", range [%s, %s]", lo, hi);
	}
}

/* Length of the section part of a name ("store" of "store.path"), 0 at the top level. */
static size_t
config_doc_section(const char *name)
{
	const char *dot = strchr(name, '.');

	return dot != NULL ? (size_t)(dot - name) : 0;
}

/* One option of the example file: help, type and default, then the commented-out line. */
static void
config_doc_ini_option(FILE *f, const struct config_option *o, size_t sectlen)
{
	const char *key = o->name + (sectlen > 0 ? sectlen + 1 : 0);
	const char *def = o->def, *p, *end;
	char type[CONFIG_MSG_MAX];

	config_doc_type(o, type, sizeof type);
	fprintf(f, "# %s\n# Type: %s.\n", o->help != NULL ? o->help : o->name, type);
	if (def == NULL || (o->type == CONFIG_LIST && def[strspn(def, " \t,")] == '\0')) {
		fprintf(f, "# Default: none.\n# %s = <%s>\n\n", key, config_type_names[o->type]);
		return;
	}
	if (o->type != CONFIG_LIST) {
		fprintf(f, "# Default: %s.\n#%s = ", def, key);
		config_doc_value(f, def);
		fputs("\n\n", f);
		return;
	}
	fprintf(f, "# Default: %s.\n", def);
	for (p = def; *p != '\0'; p = *end == ',' ? end + 1 : end) {
		char item[1024];
		size_t len;

		end = strchr(p, ',');
		if (end == NULL)
			end = p + strlen(p);
		while (p < end && config_isspace(*p))
			p++;
		len = (size_t)(end - p);
		while (len > 0 && config_isspace(p[len - 1]))
			len--;
		if (len == 0)
			continue;
		snprintf(item, sizeof item, "%.*s", (int)len, p);
		fprintf(f, "#%s = ", key);
		config_doc_value(f, item);
		fputc('\n', f);
	}
	fputc('\n', f);
}

/* One ".TP" entry of the man page. */
static void
config_doc_man_option(FILE *f, const struct config_option *o)
{
	char type[CONFIG_MSG_MAX];

	fputs(".TP\n\\fB", f);
	config_doc_roff(f, o->name);
	fputs("\\fR = \\fI", f);
	config_doc_roff(f, config_type_names[o->type]);
	fputs("\\fR\n", f);
	if (o->help != NULL && o->help[0] != '\0') {
		config_doc_roff(f, o->help);
		fputs(o->help[strlen(o->help) - 1] == '.' ? "\n" : ".\n", f);
	}
	config_doc_type(o, type, sizeof type);
	fputs("Type: ", f);
	config_doc_roff(f, type);
	fputs(".\n", f);
	if (o->def == NULL || o->def[0] == '\0') {
		fputs("Default: none.\n", f);
	} else {
		fputs("Default: \\fB", f);
		config_doc_roff(f, o->def);
		fputs("\\fR.\n", f);
	}
}

/* Top-level options first, then one group per section in order of first appearance. */
void
config_write_doc(const struct config_option *table, size_t n, FILE *f, int format)
{
	char sect[CONFIG_NAME_MAX];
	size_t i, j, sl, slj;
	int man = format == CONFIG_DOC_MAN, top = 0;

	if (man)
		fputs(".SH OPTIONS\n", f);
	else
		fputs("# Example configuration, generated from the option table.\n"
			"# Every option is shown with its default value; remove the '#' in front\n"
			"# of a key to set it.\n\n", f);
	for (i = 0; i < n; i++) {
		if (config_doc_section(table[i].name) != 0)
			continue;
		if (man && !top++)
			fputs(".SS \"Top level\"\n", f);
		if (man)
			config_doc_man_option(f, &table[i]);
		else
			config_doc_ini_option(f, &table[i], 0);
	}
	for (i = 0; i < n; i++) {
		sl = config_doc_section(table[i].name);
		if (sl == 0)
			continue;
		for (j = 0; j < i; j++) {
			if (config_doc_section(table[j].name) == sl &&
			    strncmp(table[j].name, table[i].name, sl) == 0)
				break;
		}
		if (j < i)
			continue;  /* section already written */
		snprintf(sect, sizeof sect, "%.*s", (int)sl, table[i].name);
		if (man) {
			fputs(".SS \"[", f);
			config_doc_roff(f, sect);
			fputs("]\"\n", f);
		} else {
			fprintf(f, "[%s]\n\n", sect);
		}
		for (j = i; j < n; j++) {
			slj = config_doc_section(table[j].name);
			if (slj != sl || strncmp(table[j].name, sect, sl) != 0)
				continue;
			if (man)
				config_doc_man_option(f, &table[j]);
			else
				config_doc_ini_option(f, &table[j], sl);
		}
	}
}

int
config_check_address(const char *addr, int allow_port0, char *err, size_t errlen)
{
	const char *colon, *h, *why = NULL;
	char *end;
	long port;

	if (strncmp(addr, "unix:", 5) == 0) {
		if (addr[5] != '/' || strlen(addr + 5) >= 108)
			why = "a unix socket needs an absolute path under 108 bytes";
		goto out;
	}
	colon = strrchr(addr, ':');
	if (colon == NULL || colon == addr) {
		why = "missing host or port";
		goto out;
	}
	if (addr[0] == '[') {
		if (colon[-1] != ']' || colon - addr < 4)
			why = "an IPv6 address goes in brackets: [ADDR]:PORT";
		for (h = addr + 1; why == NULL && h < colon - 1; h++)
			if (!isxdigit((unsigned char)*h) && *h != ':' && *h != '.')
				why = "bad character in the IPv6 address";
	} else {
		for (h = addr; why == NULL && h < colon; h++)
			if (!isalnum((unsigned char)*h) && *h != '.' && *h != '-' && *h != '_')
				why = "bad character in the host (IPv6 goes in brackets)";
	}
	if (why == NULL && colon - addr > 253)
		why = "host name too long";
	if (why != NULL)
		goto out;
	errno = 0;
	port = strtol(colon + 1, &end, 10);
	if (colon[1] == '\0' || *end != '\0' || errno != 0 || port < (allow_port0 ? 0 : 1) ||
	    port > 65535)
		why = allow_port0 ? "the port must be a number in 0..65535" :
		    "the port must be a number in 1..65535";
out:
	if (why == NULL)
		return 0;
	snprintf(err, errlen, "'%s' is not host:port (%s)", addr, why);
	return CERTA_ECONFIG;
}
