/*
 * metrics.c — Prometheus registry (counters, gauges, histograms with labels), the text
 * exposition format 0.0.4, and an evhttp endpoint for /metrics, /healthz and /readyz.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "lib/array.h"
#include "lib/error.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "lib/strmap.h"

struct metrics_series {
	char *key;                 /* encoded label values (strmap key) */
	char **values;             /* copies, one per label name */
	double value;              /* COUNTER, GAUGE */
	double sum;                /* HISTOGRAM */
	uint64_t count;
	uint64_t *bucket;          /* HISTOGRAM: per-bucket (not cumulative) counts, +Inf last */
	uint64_t epoch;            /* the family's epoch when last current (refresh) */
	struct metrics_series *prev, *next;
};

struct metrics_family {
	const struct metrics_desc *d;
	size_t nlabels;
	struct strmap *index;      /* key -> series; labelled families only */
	struct metrics_series *head, *tail;
	/* A refresh in progress (metrics_refresh_begin): series whose epoch is not the family's
	 * are stale.  Current ones are moved to the tail as they are updated, so the stale ones
	 * are always the head of the list. */
	int refreshing;
	uint64_t epoch;
	char **le;                 /* HISTOGRAM: the buckets' le label values, formatted once */
};

struct metrics {
	struct metrics_family *fam;
	size_t n;
	metrics_collect_fn collect;
	void *collect_arg;
	size_t render_hint;        /* length of the last rendered text */
};

/* A /metrics request handed to the loop thread, and its rendered text coming back. */
struct metrics_http_job {
	struct evhttp_request *req;  /* touched by the HTTP thread only */
	char *text;
	size_t len;
	int rc;
};

/*
 * The endpoint: evhttp on its own event_base, served by its own thread, so probes never wait
 * for a loop turn.  The loop thread publishes readiness and a heartbeat (atomics); /metrics
 * is rendered on the loop thread (the registry is the loop's) and sent back.
 */
struct metrics_http {
	struct evhttp *http;           /* on hbase: HTTP thread only (after start) */
	struct metrics *m;             /* loop thread only */
	metrics_ready_fn ready;        /* loop thread only */
	void *ready_arg;
	void (*on_beat)(void *arg, double lag_s);
	void *on_beat_arg;
	struct event_base *base;       /* the loop's */
	struct event_base *hbase;      /* the HTTP thread's */
	pthread_t thread;
	int thread_started;
	struct event *beat;            /* loop: heartbeat timer */
	double beat_due;               /* loop: when the heartbeat should run (monotonic s) */
	atomic_int ready_now;          /* loop -> HTTP: ready(ready_arg) at the last beat */
	atomic_llong beat_ms;          /* loop -> HTTP: monotonic ms of the last beat */
	atomic_int stall_ms;
	atomic_int stopping;
	/* HTTP -> loop (todo) and loop -> HTTP (done), under lock; eventfds wake each side. */
	pthread_mutex_t lock;
	struct metrics_http_job *todo, *done;
	size_t ntodo, todocap, ndone, donecap;
	int loop_efd, http_efd;
	struct event *loop_ev, *http_ev;
};

static const char *const metrics_type_names[] = { "counter", "gauge", "histogram" };

static const char *metrics_fmt(char *buf, size_t len, double v);

/* Table and usage errors are programming errors: always abort, with the reason. */
static void __attribute__((noreturn, format(printf, 1, 2)))
metrics_die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "metrics: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	abort();
}

static int
metrics_name_ok(const char *s, int colon)
{
	size_t i;

	if (s == NULL || s[0] == '\0')
		return 0;
	for (i = 0; s[i] != '\0'; i++) {
		char c = s[i];
		int alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
		    (colon && c == ':');
		if (!alpha && !(i > 0 && c >= '0' && c <= '9'))
			return 0;
	}
	return 1;
}

static int
metrics_suffix(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);

	return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Aborts on anything metrics.h says a table must not contain. */
static void
metrics_check_table(const struct metrics_desc *t, size_t n)
{
	size_t i, j;

	for (i = 0; i < n; i++) {
		const struct metrics_desc *d = &t[i];
		if (!metrics_name_ok(d->name, 1))
			metrics_die("table entry %zu: bad metric name '%s'", i,
			    d->name ? d->name : "(null)");
		for (j = 0; j < i; j++)
			if (strcmp(t[j].name, d->name) == 0)
				metrics_die("duplicate metric name '%s'", d->name);
		if ((unsigned)d->type > METRICS_HISTOGRAM)
			metrics_die("%s: bad type", d->name);
		if (d->help == NULL)
			metrics_die("%s: no help text", d->name);
		if (d->type == METRICS_COUNTER && !metrics_suffix(d->name, "_total"))
			metrics_die("%s: counter names end in _total", d->name);
		for (j = 0; d->labels != NULL && d->labels[j] != NULL; j++) {
			const char *l = d->labels[j];
			size_t k;
			if (!metrics_name_ok(l, 0) || strncmp(l, "__", 2) == 0)
				metrics_die("%s: bad label name '%s'", d->name, l);
			if (d->type == METRICS_HISTOGRAM && strcmp(l, "le") == 0)
				metrics_die("%s: histograms cannot have a label 'le'", d->name);
			for (k = 0; k < j; k++)
				if (strcmp(d->labels[k], l) == 0)
					metrics_die("%s: duplicate label '%s'", d->name, l);
		}
		if (d->type == METRICS_HISTOGRAM) {
			if (d->buckets == NULL || d->nbuckets == 0)
				metrics_die("%s: histogram without buckets", d->name);
			for (j = 0; j < d->nbuckets; j++) {
				if (!isfinite(d->buckets[j]) ||
				    (j > 0 && !(d->buckets[j] > d->buckets[j - 1])))
					metrics_die("%s: buckets must be finite and increasing",
					    d->name);
			}
		}
	}
}

static void
metrics_series_free(struct metrics_series *s, size_t nlabels)
{
	size_t i;

	if (s == NULL)
		return;
	for (i = 0; s->values != NULL && i < nlabels; i++)
		free(s->values[i]);
	free(s->values);
	free(s->bucket);
	free(s->key);
	free(s);
}

/* Allocates a zeroed series holding copies of values (key may be NULL: unlabelled). */
static struct metrics_series *
metrics_series_new(const struct metrics_family *f, const char *key, const char *const *values)
{
	struct metrics_series *s = calloc(1, sizeof *s);
	size_t i;

	if (s == NULL)
		return NULL;
	if (f->d->type == METRICS_HISTOGRAM &&
	    (s->bucket = calloc(f->d->nbuckets + 1, sizeof *s->bucket)) == NULL)
		goto fail;
	if (f->nlabels > 0) {
		if ((s->key = strdup(key)) == NULL ||
		    (s->values = calloc(f->nlabels, sizeof *s->values)) == NULL)
			goto fail;
		for (i = 0; i < f->nlabels; i++)
			if ((s->values[i] = strdup(values[i])) == NULL)
				goto fail;
	}
	return s;
fail:
	metrics_series_free(s, f->nlabels);
	return NULL;
}

static void
metrics_family_link(struct metrics_family *f, struct metrics_series *s)
{
	s->next = NULL;
	s->prev = f->tail;
	if (f->tail != NULL)
		f->tail->next = s;
	else
		f->head = s;
	f->tail = s;
}

static void
metrics_family_unlink(struct metrics_family *f, struct metrics_series *s)
{
	if (s->prev != NULL)
		s->prev->next = s->next;
	else
		f->head = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	else
		f->tail = s->prev;
}

int
metrics_new(const struct metrics_desc *table, size_t n, struct metrics **out)
{
	struct metrics *m;
	size_t i;

	metrics_check_table(table, n);
	m = calloc(1, sizeof *m);
	if (m == NULL)
		return -ENOMEM;
	m->n = n;
	m->fam = calloc(n ? n : 1, sizeof *m->fam);
	if (m->fam == NULL)
		goto fail;
	for (i = 0; i < n; i++) {
		struct metrics_family *f = &m->fam[i];
		f->d = &table[i];
		while (f->d->labels != NULL && f->d->labels[f->nlabels] != NULL)
			f->nlabels++;
		if (f->d->type == METRICS_HISTOGRAM) {
			size_t b;
			if ((f->le = calloc(f->d->nbuckets, sizeof *f->le)) == NULL)
				goto fail;
			for (b = 0; b < f->d->nbuckets; b++) {
				char num[40];
				f->le[b] = strdup(metrics_fmt(num, sizeof num, f->d->buckets[b]));
				if (f->le[b] == NULL)
					goto fail;
			}
		}
		if (f->nlabels > 0) {
			if ((f->index = strmap_new()) == NULL)
				goto fail;
		} else {
			struct metrics_series *s = metrics_series_new(f, NULL, NULL);
			if (s == NULL)
				goto fail;
			metrics_family_link(f, s);
		}
	}
	*out = m;
	return 0;
fail:
	metrics_free(m);
	return -ENOMEM;
}

void
metrics_free(struct metrics *m)
{
	size_t i, j;

	if (m == NULL)
		return;
	for (i = 0; m->fam != NULL && i < m->n; i++) {
		struct metrics_family *f = &m->fam[i];
		struct metrics_series *s, *next;
		for (s = f->head; s != NULL; s = next) {
			next = s->next;
			metrics_series_free(s, f->nlabels);
		}
		strmap_free(f->index, NULL);
		for (j = 0; f->le != NULL && j < f->d->nbuckets; j++)
			free(f->le[j]);
		free(f->le);
	}
	free(m->fam);
	free(m);
}

void
metrics_set_collector(struct metrics *m, metrics_collect_fn fn, void *arg)
{
	m->collect = fn;
	m->collect_arg = arg;
}

static struct metrics_family *
metrics_family_at(const struct metrics *m, size_t id, int want_type)
{
	struct metrics_family *f;

	if (id >= m->n)
		metrics_die("metric index %zu out of range (%zu families)", id, m->n);
	f = &m->fam[id];
	if (want_type >= 0 && f->d->type != (enum metrics_type)want_type)
		metrics_die("%s is a %s", f->d->name, metrics_type_names[f->d->type]);
	return f;
}

static void
metrics_series_zero(const struct metrics_family *f, struct metrics_series *s)
{
	s->value = 0;
	s->sum = 0;
	s->count = 0;
	if (s->bucket != NULL)
		memset(s->bucket, 0, (f->d->nbuckets + 1) * sizeof *s->bucket);
}

/* A stale series updated in a refresh: current again, from 0, last in the family's order. */
static void
metrics_series_revive(struct metrics_family *f, struct metrics_series *s)
{
	metrics_series_zero(f, s);
	s->epoch = f->epoch;
	if (f->tail != s) {
		metrics_family_unlink(f, s);
		metrics_family_link(f, s);
	}
}

/* Room for the keys of short label values without a malloc (a lookup per step and
 * counter: the tenant's token counters). */
#define METRICS_KEY_STACK 256

/* Encodes label values as "LEN:value" pairs: unambiguous whatever the values contain.  The
 * key goes in buf (cap bytes) when it fits, else in a malloc'd block.  Returns the key, or
 * NULL with *err = -EINVAL (NULL value) or -ENOMEM. */
static char *
metrics_key(const struct metrics_family *f, const char *const *values, char *buf, size_t cap,
    int *err)
{
	size_t i, len = 1;
	char *key, *p;

	*err = -EINVAL;
	if (values == NULL)
		return NULL;
	for (i = 0; i < f->nlabels; i++) {
		if (values[i] == NULL)
			return NULL;
		len += strlen(values[i]) + 24;
	}
	*err = -ENOMEM;
	key = len <= cap ? buf : malloc(len);
	if (key == NULL)
		return NULL;
	p = key;
	for (i = 0; i < f->nlabels; i++) {
		size_t vl = strlen(values[i]), v = vl;
		char digits[24];
		int nd = 0;
		do {
			digits[nd++] = (char)('0' + v % 10);
			v /= 10;
		} while (v > 0);
		while (nd > 0)
			*p++ = digits[--nd];
		*p++ = ':';
		memcpy(p, values[i], vl);
		p += vl;
	}
	*p = '\0';
	return key;
}

/* Whether s is the series of values (none NULL). */
static int
metrics_series_is(const struct metrics_family *f, const struct metrics_series *s,
    const char *const *values)
{
	size_t i;

	if (values == NULL)
		return 0;
	for (i = 0; i < f->nlabels; i++)
		if (values[i] == NULL || strcmp(values[i], s->values[i]) != 0)
			return 0;
	return 1;
}

/* Finds (create: or makes) the series for values.  Returns NULL with *err set. */
static struct metrics_series *
metrics_lookup(struct metrics_family *f, const char *const *values, int create, int *err)
{
	struct metrics_series *s;
	char buf[METRICS_KEY_STACK], *key;

	if (f->nlabels == 0)
		return f->head;
	/* A refresh mostly updates the series in the order of the last one, and the stale
	 * series are the head of the list in that order: try the head before the index. */
	if (f->refreshing && create && (s = f->head) != NULL && s->epoch != f->epoch &&
	    metrics_series_is(f, s, values)) {
		metrics_series_revive(f, s);
		return s;
	}
	key = metrics_key(f, values, buf, sizeof buf, err);
	if (key == NULL)
		return NULL;
	s = strmap_get(f->index, key);
	if (s != NULL && f->refreshing && s->epoch != f->epoch) {
		/* Stale in a refresh: absent to readers; an update revives it as metrics_reset
		 * and a re-creation would (from 0, at the end of the order). */
		if (create)
			metrics_series_revive(f, s);
		else
			s = NULL;
	}
	if (s == NULL && create) {
		s = metrics_series_new(f, key, values);
		if (s == NULL || strmap_put(f->index, key, s, NULL) != 0) {
			metrics_series_free(s, f->nlabels);
			if (key != buf)
				free(key);
			*err = -ENOMEM;
			return NULL;
		}
		s->epoch = f->epoch;
		metrics_family_link(f, s);
	}
	if (key != buf)
		free(key);
	if (s == NULL)
		*err = CERTA_ENOTFOUND;
	return s;
}

int
metrics_counter_add(struct metrics *m, size_t id, const char *const *values, double v)
{
	struct metrics_family *f = metrics_family_at(m, id, METRICS_COUNTER);
	struct metrics_series *s;
	int err;

	if (!(v >= 0))
		return -EINVAL;
	if ((s = metrics_lookup(f, values, 1, &err)) == NULL)
		return err;
	s->value += v;
	return 0;
}

int
metrics_gauge_set(struct metrics *m, size_t id, const char *const *values, double v)
{
	struct metrics_family *f = metrics_family_at(m, id, METRICS_GAUGE);
	struct metrics_series *s;
	int err;

	if ((s = metrics_lookup(f, values, 1, &err)) == NULL)
		return err;
	s->value = v;
	return 0;
}

int
metrics_gauge_add(struct metrics *m, size_t id, const char *const *values, double v)
{
	struct metrics_family *f = metrics_family_at(m, id, METRICS_GAUGE);
	struct metrics_series *s;
	int err;

	if ((s = metrics_lookup(f, values, 1, &err)) == NULL)
		return err;
	s->value += v;
	return 0;
}

int
metrics_observe(struct metrics *m, size_t id, const char *const *values, double v)
{
	struct metrics_family *f = metrics_family_at(m, id, METRICS_HISTOGRAM);
	struct metrics_series *s;
	size_t i;
	int err;

	if (isnan(v))
		return -EINVAL;
	if ((s = metrics_lookup(f, values, 1, &err)) == NULL)
		return err;
	/* le is inclusive: an observation equal to a bound counts in that bucket. */
	for (i = 0; i < f->d->nbuckets && v > f->d->buckets[i]; i++)
		;
	s->bucket[i]++;
	s->count++;
	s->sum += v;
	return 0;
}

int
metrics_get(const struct metrics *m, size_t id, const char *const *values, double *out)
{
	struct metrics_family *f = metrics_family_at(m, id, -1);
	struct metrics_series *s;
	int err;

	if ((s = metrics_lookup(f, values, 0, &err)) == NULL)
		return err;
	*out = f->d->type == METRICS_HISTOGRAM ? (double)s->count : s->value;
	return 0;
}

int
metrics_remove(struct metrics *m, size_t id, const char *const *values)
{
	struct metrics_family *f = metrics_family_at(m, id, -1);
	struct metrics_series *s;
	int err;

	if (f->nlabels == 0) {
		metrics_series_zero(f, f->head);
		return 0;
	}
	if ((s = metrics_lookup(f, values, 0, &err)) == NULL)
		return err;
	strmap_del(f->index, s->key);
	metrics_family_unlink(f, s);
	metrics_series_free(s, f->nlabels);
	return 0;
}

void
metrics_reset(struct metrics *m, size_t id)
{
	struct metrics_family *f = metrics_family_at(m, id, -1);
	struct metrics_series *s, *next;

	if (f->nlabels == 0) {
		metrics_series_zero(f, f->head);
		return;
	}
	for (s = f->head; s != NULL; s = next) {
		next = s->next;
		strmap_del(f->index, s->key);
		metrics_series_free(s, f->nlabels);
	}
	f->head = f->tail = NULL;
}

void
metrics_refresh_begin(struct metrics *m, size_t id)
{
	struct metrics_family *f = metrics_family_at(m, id, -1);

	if (f->refreshing)
		metrics_die("%s: refresh begun twice", f->d->name);
	if (f->nlabels == 0) {
		metrics_series_zero(f, f->head);
		return;
	}
	f->epoch++;
	f->refreshing = 1;
}

void
metrics_refresh_end(struct metrics *m, size_t id)
{
	struct metrics_family *f = metrics_family_at(m, id, -1);
	struct metrics_series *s;

	if (f->nlabels == 0)
		return;
	if (!f->refreshing)
		metrics_die("%s: refresh ended without a begin", f->d->name);
	/* The stale series are the head of the list (updates moved the current ones behind). */
	while ((s = f->head) != NULL && s->epoch != f->epoch) {
		strmap_del(f->index, s->key);
		metrics_family_unlink(f, s);
		metrics_series_free(s, f->nlabels);
	}
	f->refreshing = 0;
}

/* Shortest decimal that reads back as v; "+Inf", "-Inf", "NaN" as the format spells them.
 * Plain decimals ("10", "0.0001", not "1e+01"): a histogram's le label is matched as a string
 * by dashboards and recording rules.  Only magnitudes outside [1e-9, 1e15) use an exponent. */
static const char *
metrics_fmt(char *buf, size_t len, double v)
{
	int prec;

	if (isnan(v))
		return "NaN";
	if (isinf(v))
		return v > 0 ? "+Inf" : "-Inf";
	if (fabs(v) < 1e15 && v == trunc(v) && !(v == 0 && signbit(v))) {
		/* Whole numbers (counts, tokens, bytes): the digits "%.0f" prints, without printf's
		 * float conversion or the round trip through strtod. */
		uint64_t u = (uint64_t)fabs(v);
		char *p = buf + len - 1;
		*p = '\0';
		do {
			*--p = (char)('0' + u % 10);
			u /= 10;
		} while (u > 0);
		if (v < 0)
			*--p = '-';
		return p;
	}
	if (v == 0 || (fabs(v) >= 1e-9 && fabs(v) < 1e15)) {
		for (prec = 0; prec <= 24; prec++) {
			snprintf(buf, len, "%.*f", prec, v);
			if (strtod(buf, NULL) == v)
				return buf;
		}
	}
	for (prec = 1; prec <= 17; prec++) {
		snprintf(buf, len, "%.*g", prec, v);
		if (strtod(buf, NULL) == v)
			break;
	}
	return buf;
}

/* The rendered text: one buffer grown geometrically; err set once an allocation failed. */
struct metrics_buf {
	char *p;
	size_t len, cap;
	int err;
};

static void
metrics_buf_grow(struct metrics_buf *b, size_t n)
{
	if (ARRAY_GROW(b->p, b->cap, b->len + n + 1) != 0)
		b->err = -ENOMEM;
}

static inline void
metrics_put(struct metrics_buf *b, const char *s, size_t n)
{
	if (b->cap - b->len < n + 1) {
		metrics_buf_grow(b, n);
		if (b->err != 0)
			return;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

static inline void
metrics_puts(struct metrics_buf *b, const char *s)
{
	metrics_put(b, s, strlen(s));
}

static inline void
metrics_putc(struct metrics_buf *b, char c)
{
	metrics_put(b, &c, 1);
}

static void
metrics_put_u64(struct metrics_buf *b, uint64_t v)
{
	char d[24];
	int n = (int)sizeof d;

	do {
		d[--n] = (char)('0' + v % 10);
		v /= 10;
	} while (v > 0);
	metrics_put(b, d + n, sizeof d - (size_t)n);
}

/* Writes s with the escapes the format asks for: label values escape \ " and newline; help
 * text escapes \ and newline only. */
static void
metrics_escape(struct metrics_buf *b, const char *s, int quote)
{
	const char *special = quote ? "\\\n\"" : "\\\n";

	for (;;) {
		/* The run up to the next character to escape, in one write. */
		size_t n = strcspn(s, special);
		if (n > 0)
			metrics_put(b, s, n);
		s += n;
		if (*s == '\0')
			return;
		metrics_put(b, *s == '\\' ? "\\\\" : *s == '\n' ? "\\n" : "\\\"", 2);
		s++;
	}
}

/* name{l1="v1",...[,le="x"]} — braces only when there is a label. */
static void
metrics_write_labels(struct metrics_buf *out, const struct metrics_family *f,
    const struct metrics_series *s, const char *le)
{
	size_t i;

	if (f->nlabels == 0 && le == NULL)
		return;
	metrics_putc(out, '{');
	for (i = 0; i < f->nlabels; i++) {
		if (i > 0)
			metrics_putc(out, ',');
		metrics_puts(out, f->d->labels[i]);
		metrics_put(out, "=\"", 2);
		metrics_escape(out, s->values[i], 1);
		metrics_putc(out, '"');
	}
	if (le != NULL) {
		metrics_puts(out, f->nlabels ? ",le=\"" : "le=\"");
		metrics_puts(out, le);
		metrics_putc(out, '"');
	}
	metrics_putc(out, '}');
}

/* " VALUE\n" */
static void
metrics_write_value(struct metrics_buf *out, double v)
{
	char num[40];

	metrics_putc(out, ' ');
	metrics_puts(out, metrics_fmt(num, sizeof num, v));
	metrics_putc(out, '\n');
}

static void
metrics_write_count(struct metrics_buf *out, uint64_t v)
{
	metrics_putc(out, ' ');
	metrics_put_u64(out, v);
	metrics_putc(out, '\n');
}

static void
metrics_write_family(struct metrics_buf *out, const struct metrics_family *f)
{
	const struct metrics_desc *d = f->d;
	const struct metrics_series *s;
	size_t i, nl = strlen(d->name);

	metrics_puts(out, "# HELP ");
	metrics_put(out, d->name, nl);
	metrics_putc(out, ' ');
	metrics_escape(out, d->help, 0);
	metrics_puts(out, "\n# TYPE ");
	metrics_put(out, d->name, nl);
	metrics_putc(out, ' ');
	metrics_puts(out, metrics_type_names[d->type]);
	metrics_putc(out, '\n');
	for (s = f->head; s != NULL; s = s->next) {
		if (f->refreshing && s->epoch != f->epoch)
			continue;   /* stale in an unfinished refresh */
		if (d->type != METRICS_HISTOGRAM) {
			metrics_put(out, d->name, nl);
			metrics_write_labels(out, f, s, NULL);
			metrics_write_value(out, s->value);
			continue;
		}
		uint64_t cum = 0;
		for (i = 0; i <= d->nbuckets; i++) {
			cum += s->bucket[i];
			metrics_put(out, d->name, nl);
			metrics_put(out, "_bucket", 7);
			metrics_write_labels(out, f, s, i < d->nbuckets ? f->le[i] : "+Inf");
			metrics_write_count(out, cum);
		}
		metrics_put(out, d->name, nl);
		metrics_put(out, "_sum", 4);
		metrics_write_labels(out, f, s, NULL);
		metrics_write_value(out, s->sum);
		metrics_put(out, d->name, nl);
		metrics_put(out, "_count", 6);
		metrics_write_labels(out, f, s, NULL);
		metrics_write_count(out, s->count);
	}
}

int
metrics_render_text(struct metrics *m, char **text, size_t *len)
{
	struct metrics_buf b = { NULL, 0, 0, 0 };
	size_t i;

	if (m->collect != NULL)
		m->collect(m, m->collect_arg);
	/* Sized for the last scrape's text: one allocation, no copies as it grows. */
	metrics_buf_grow(&b, m->render_hint + m->render_hint / 8);
	for (i = 0; i < m->n && b.err == 0; i++)
		metrics_write_family(&b, &m->fam[i]);
	if (b.err != 0) {
		free(b.p);
		return b.err;
	}
	b.p[b.len] = '\0';
	m->render_hint = b.len;
	*text = b.p;
	*len = b.len;
	return 0;
}

int
metrics_render(struct metrics *m, FILE *f)
{
	char *text;
	size_t len;
	int rc = metrics_render_text(m, &text, &len);

	if (rc != 0)
		return rc;
	if (len > 0 && fwrite(text, 1, len, f) != len)
		rc = -EIO;
	free(text);
	return rc == 0 && ferror(f) ? -EIO : rc;
}

/* ---- HTTP ---- */

static void
metrics_http_reply(struct evhttp_request *req, int code, const char *reason,
    const char *ctype, const char *body, size_t len)
{
	struct evbuffer *b = evbuffer_new();
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);

	if (b == NULL) {
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	evhttp_add_header(h, "Content-Type", ctype);
	evhttp_add_header(h, "Cache-Control", "no-store");
	if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD) {
		/* evhttp would send a body even for HEAD: announce the length, send none. */
		char n[32];
		snprintf(n, sizeof n, "%zu", len);
		evhttp_add_header(h, "Content-Length", n);
	} else {
		evbuffer_add(b, body, len);
	}
	evhttp_send_reply(req, code, reason, b);
	evbuffer_free(b);
}

static long long
metrics_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static double
metrics_mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
metrics_efd_write(int fd)
{
	uint64_t one = 1;

	while (write(fd, &one, sizeof one) < 0 && errno == EINTR)
		;
}

static void
metrics_efd_read(int fd)
{
	uint64_t n;

	while (read(fd, &n, sizeof n) < 0 && errno == EINTR)
		;
}

/* Loop thread: publish readiness and the heartbeat. */
static void
metrics_http_publish(struct metrics_http *h)
{
	atomic_store(&h->ready_now, h->ready == NULL || h->ready(h->ready_arg) ? 1 : 0);
	atomic_store(&h->beat_ms, metrics_mono_ms());
}

/* Loop thread: the heartbeat timer (how late it runs is the loop's lag). */
static void
metrics_http_beat(evutil_socket_t fd, short what, void *arg)
{
	struct metrics_http *h = arg;
	double now = metrics_mono_s(), lag = now - h->beat_due;

	(void)fd;
	(void)what;
	h->beat_due = now + METRICS_BEAT_MS / 1000.0;
	metrics_http_publish(h);
	if (h->on_beat != NULL)
		h->on_beat(h->on_beat_arg, lag > 0 ? lag : 0);
}

/* HTTP thread: is the loop's heartbeat recent? */
static int
metrics_http_loop_alive(struct metrics_http *h)
{
	return metrics_mono_ms() - atomic_load(&h->beat_ms) <= atomic_load(&h->stall_ms);
}

/* Queues a job on one side's list; -ENOMEM. */
static int
metrics_http_queue(struct metrics_http *h, struct metrics_http_job **list, size_t *n,
    size_t *cap, const struct metrics_http_job *job, int efd)
{
	int wake;

	pthread_mutex_lock(&h->lock);
	if (ARRAY_GROW(*list, *cap, *n + 1) != 0) {
		pthread_mutex_unlock(&h->lock);
		return -ENOMEM;
	}
	wake = *n == 0;
	(*list)[(*n)++] = *job;
	pthread_mutex_unlock(&h->lock);
	if (wake)
		metrics_efd_write(efd);
	return 0;
}

/* Takes one side's list (swapped out under the lock). */
static struct metrics_http_job *
metrics_http_take(struct metrics_http *h, struct metrics_http_job **list, size_t *n,
    size_t *cap, size_t *got)
{
	struct metrics_http_job *jobs;

	pthread_mutex_lock(&h->lock);
	jobs = *list;
	*got = *n;
	*list = NULL;
	*n = *cap = 0;
	pthread_mutex_unlock(&h->lock);
	return jobs;
}

/* Loop thread: render the /metrics requests the HTTP thread handed over. */
static void
metrics_http_on_todo(evutil_socket_t fd, short what, void *arg)
{
	struct metrics_http *h = arg;
	struct metrics_http_job *jobs;
	size_t n, i;

	(void)what;
	metrics_efd_read(fd);
	jobs = metrics_http_take(h, &h->todo, &h->ntodo, &h->todocap, &n);
	for (i = 0; i < n; i++) {
		struct metrics_http_job *j = &jobs[i];
		j->rc = metrics_render_text(h->m, &j->text, &j->len);
		if (metrics_http_queue(h, &h->done, &h->ndone, &h->donecap, j, h->http_efd) != 0) {
			/* Cannot hand it back: the request stays unanswered until its connection
			 * times out (evhttp frees it with the endpoint). */
			free(j->text);
		}
	}
	free(jobs);
}

/* HTTP thread: send the rendered /metrics; or stop. */
static void
metrics_http_on_done(evutil_socket_t fd, short what, void *arg)
{
	struct metrics_http *h = arg;
	struct metrics_http_job *jobs;
	size_t n, i;

	(void)what;
	metrics_efd_read(fd);
	if (atomic_load(&h->stopping)) {
		event_base_loopbreak(h->hbase);
		return;
	}
	jobs = metrics_http_take(h, &h->done, &h->ndone, &h->donecap, &n);
	for (i = 0; i < n; i++) {
		struct metrics_http_job *j = &jobs[i];
		if (j->rc != 0) {
			log_err(LOG_METRICS, "cannot render metrics: %s", certa_strerror(j->rc));
			metrics_http_reply(j->req, HTTP_INTERNAL, "Internal Server Error",
			    "text/plain; charset=utf-8", "cannot render metrics\n", 22);
		} else {
			metrics_http_reply(j->req, HTTP_OK, "OK", METRICS_CONTENT_TYPE, j->text,
			    j->len);
		}
		free(j->text);
	}
	free(jobs);
}

/* Routes one request; runs on the HTTP thread.  /healthz and /readyz are answered here from
 * what the loop published; /metrics goes to the loop thread. */
static void
metrics_http_handle(struct evhttp_request *req, void *arg)
{
	struct metrics_http *h = arg;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);

	if (path == NULL)
		path = "/";
	if (strcmp(path, "/metrics") != 0 && strcmp(path, "/healthz") != 0 &&
	    strcmp(path, "/readyz") != 0) {
		metrics_http_reply(req, HTTP_NOTFOUND, "Not Found", "text/plain; charset=utf-8",
		    "not found\n", 10);
		return;
	}
	if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
		metrics_http_reply(req, 405, "Method Not Allowed", "text/plain; charset=utf-8",
		    "method not allowed\n", 19);
		return;
	}
	if (strcmp(path, "/healthz") == 0) {
		if (metrics_http_loop_alive(h))
			metrics_http_reply(req, HTTP_OK, "OK", "text/plain; charset=utf-8", "ok\n", 3);
		else
			metrics_http_reply(req, 503, "Service Unavailable",
			    "text/plain; charset=utf-8", "loop stalled\n", 13);
	} else if (strcmp(path, "/readyz") == 0) {
		if (!metrics_http_loop_alive(h))
			metrics_http_reply(req, 503, "Service Unavailable",
			    "text/plain; charset=utf-8", "loop stalled\n", 13);
		else if (atomic_load(&h->ready_now))
			metrics_http_reply(req, HTTP_OK, "OK", "text/plain; charset=utf-8",
			    "ready\n", 6);
		else
			metrics_http_reply(req, 503, "Service Unavailable",
			    "text/plain; charset=utf-8", "not ready\n", 10);
	} else {
		struct metrics_http_job j = { req, NULL, 0, 0 };
		if (metrics_http_queue(h, &h->todo, &h->ntodo, &h->todocap, &j, h->loop_efd) != 0)
			metrics_http_reply(req, HTTP_INTERNAL, "Internal Server Error",
			    "text/plain; charset=utf-8", "cannot render metrics\n", 22);
	}
}

static void *
metrics_http_thread(void *arg)
{
	struct metrics_http *h = arg;

	event_base_dispatch(h->hbase);
	return NULL;
}

/* Frees what metrics_http_start made (the thread joined or never started). */
static void
metrics_http_free(struct metrics_http *h)
{
	size_t i;

	if (h->beat != NULL)
		event_free(h->beat);
	if (h->loop_ev != NULL)
		event_free(h->loop_ev);
	if (h->http != NULL)
		evhttp_free(h->http);
	if (h->http_ev != NULL)
		event_free(h->http_ev);
	if (h->hbase != NULL)
		event_base_free(h->hbase);
	/* Requests still queued belonged to the evhttp just freed. */
	for (i = 0; i < h->ndone; i++)
		free(h->done[i].text);
	free(h->done);
	free(h->todo);
	if (h->loop_efd >= 0)
		close(h->loop_efd);
	if (h->http_efd >= 0)
		close(h->http_efd);
	pthread_mutex_destroy(&h->lock);
	free(h);
}

int
metrics_http_start(struct event_base *base, const char *addr, int port,
    struct metrics *m, metrics_ready_fn ready, void *ready_arg, int *bound_port,
    struct metrics_http **out)
{
	static const struct timeval beat = { METRICS_BEAT_MS / 1000,
	    (METRICS_BEAT_MS % 1000) * 1000 };
	struct metrics_http *h;
	struct evhttp_bound_socket *sock;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	int got = 0, rc;

	if (port < 0 || port > 65535)
		return CERTA_EUNAVAIL;
	h = calloc(1, sizeof *h);
	if (h == NULL)
		return -ENOMEM;
	pthread_mutex_init(&h->lock, NULL);
	h->m = m;
	h->ready = ready;
	h->ready_arg = ready_arg;
	h->base = base;
	atomic_init(&h->stall_ms, METRICS_STALL_MS);
	h->loop_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	h->http_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	h->hbase = event_base_new();
	if (h->loop_efd < 0 || h->http_efd < 0 || h->hbase == NULL)
		goto fail_nomem;
	h->loop_ev = event_new(base, h->loop_efd, EV_READ | EV_PERSIST, metrics_http_on_todo, h);
	h->http_ev = event_new(h->hbase, h->http_efd, EV_READ | EV_PERSIST, metrics_http_on_done,
	    h);
	h->beat = event_new(base, -1, EV_PERSIST, metrics_http_beat, h);
	h->http = evhttp_new(h->hbase);
	if (h->loop_ev == NULL || h->http_ev == NULL || h->beat == NULL || h->http == NULL ||
	    event_add(h->loop_ev, NULL) != 0 || event_add(h->http_ev, NULL) != 0)
		goto fail_nomem;
	evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD |
	    EVHTTP_REQ_POST | EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS);
	evhttp_set_timeout(h->http, 30);
	evhttp_set_max_headers_size(h->http, 16384);
	evhttp_set_max_body_size(h->http, 4096);
	evhttp_set_gencb(h->http, metrics_http_handle, h);
	sock = evhttp_bind_socket_with_handle(h->http, addr, (ev_uint16_t)port);
	if (sock == NULL) {
		log_err(LOG_METRICS, "cannot listen on %s port %d for metrics", addr, port);
		rc = CERTA_EUNAVAIL;
		goto fail;
	}
	if (getsockname(evhttp_bound_socket_get_fd(sock), (struct sockaddr *)&ss, &sl) == 0) {
		if (ss.ss_family == AF_INET)
			got = ntohs(((struct sockaddr_in *)&ss)->sin_port);
		else if (ss.ss_family == AF_INET6)
			got = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	}
	metrics_http_publish(h);
	h->beat_due = metrics_mono_s() + METRICS_BEAT_MS / 1000.0;
	if (event_add(h->beat, &beat) != 0)
		goto fail_nomem;
	rc = pthread_create(&h->thread, NULL, metrics_http_thread, h);
	if (rc != 0) {
		rc = -rc;
		goto fail;
	}
	h->thread_started = 1;
	log_info(LOG_METRICS, "metrics on http://%s:%d/metrics", addr, got);
	if (bound_port != NULL)
		*bound_port = got;
	*out = h;
	return 0;

fail_nomem:
	rc = -ENOMEM;
fail:
	metrics_http_free(h);
	return rc;
}

void
metrics_http_ready_changed(struct metrics_http *h)
{
	if (h != NULL)
		metrics_http_publish(h);
}

void
metrics_http_set_stall(struct metrics_http *h, int stall_ms)
{
	atomic_store(&h->stall_ms, stall_ms);
}

void
metrics_http_on_beat(struct metrics_http *h, void (*fn)(void *arg, double lag_s), void *arg)
{
	h->on_beat = fn;
	h->on_beat_arg = arg;
}

void
metrics_http_stop(struct metrics_http *h)
{
	if (h == NULL)
		return;
	if (h->thread_started) {
		atomic_store(&h->stopping, 1);
		metrics_efd_write(h->http_efd);
		pthread_join(h->thread, NULL);
	}
	metrics_http_free(h);
}
