/* test_metrics.c — Prometheus registry, text format 0.0.4 (checked by a strict parser written
 * here, and by promtool when installed), and the evhttp endpoint over loopback. */
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <cmocka.h>
#include <event2/event.h>

#include "lib/error.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "tests/support/harness.h"

enum {
	M_PROGRAMS,
	M_TOKENS,
	M_QUEUE,
	M_WORKERS_UP,
	M_STEP_SECONDS,
	M_CERTAINDEX,
	M_NFAM
};

static const char *const l_tenant_state[] = { "tenant", "state", NULL };
static const char *const l_worker[] = { "worker", NULL };
static const double b_latency[] = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10 };
static const double b_unit[] = { 0.1, 0.25, 0.5, 0.75, 0.9, 1 };

static const struct metrics_desc table[] = {
	[M_PROGRAMS] = { "certa_programs_total", METRICS_COUNTER,
	    "programs that reached a state", l_tenant_state, NULL, 0 },
	[M_TOKENS] = { "certa_tokens_generated_total", METRICS_COUNTER,
	    "decode tokens generated\nacross all workers (help with a \\ and a newline)",
	    NULL, NULL, 0 },
	[M_QUEUE] = { "certa_queue_depth", METRICS_GAUGE, "programs waiting for a worker",
	    NULL, NULL, 0 },
	[M_WORKERS_UP] = { "certa_worker_up", METRICS_GAUGE, "1 if the worker answers health checks",
	    l_worker, NULL, 0 },
	[M_STEP_SECONDS] = { "certa_step_duration_seconds", METRICS_HISTOGRAM,
	    "duration of one Step RPC", l_worker, b_latency,
	    sizeof b_latency / sizeof b_latency[0] },
	[M_CERTAINDEX] = { "certa_certaindex", METRICS_HISTOGRAM,
	    "certaindex of programs when they stopped", NULL, b_unit,
	    sizeof b_unit / sizeof b_unit[0] },
};

/* ---- a strict parser for the text exposition format 0.0.4 ---- */

struct sample {
	char name[128];
	char labels[512];    /* canonical: k="unescaped v" joined by ',' in input order */
	char le[256];        /* the le label of a _bucket sample, "" otherwise */
	double value;
};

struct family {
	char name[128];
	char type[16];
	int has_help;
};

struct parsed {
	struct sample s[512];
	size_t ns;
	struct family f[64];
	size_t nf;
};

static int
is_name_char(int c, int first, int colon)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':'))
		return 1;
	return !first && c >= '0' && c <= '9';
}

/* Reads a name at *p; returns its length or 0. */
static size_t
read_name(const char **p, char *out, size_t outlen, int colon)
{
	size_t n = 0;

	while (is_name_char((unsigned char)(*p)[n], n == 0, colon))
		n++;
	if (n == 0 || n >= outlen)
		return 0;
	memcpy(out, *p, n);
	out[n] = '\0';
	*p += n;
	return n;
}

/* Parses a value as the format allows: Go float syntax, +Inf, -Inf, NaN. */
static int
parse_value(const char *s, double *v)
{
	char *end;

	if (strcmp(s, "+Inf") == 0) {
		*v = INFINITY;
		return 0;
	}
	if (strcmp(s, "-Inf") == 0) {
		*v = -INFINITY;
		return 0;
	}
	if (strcmp(s, "NaN") == 0) {
		*v = NAN;
		return 0;
	}
	if (*s == '\0' || strchr("+-.0123456789", *s) == NULL)
		return -1;
	*v = strtod(s, &end);
	return *end == '\0' && isfinite(*v) ? 0 : -1;
}

static struct family *
find_family(struct parsed *p, const char *name)
{
	size_t i;

	for (i = 0; i < p->nf; i++)
		if (strcmp(p->f[i].name, name) == 0)
			return &p->f[i];
	return NULL;
}

/* The family a sample belongs to: its own name, or for histograms minus the suffix. */
static struct family *
sample_family(struct parsed *p, const char *name)
{
	static const char *const suffixes[] = { "_bucket", "_sum", "_count" };
	struct family *f = find_family(p, name);
	char base[128];
	size_t i, n = strlen(name);

	if (f != NULL)
		return f;
	for (i = 0; i < 3; i++) {
		size_t k = strlen(suffixes[i]);
		if (n > k && strcmp(name + n - k, suffixes[i]) == 0) {
			memcpy(base, name, n - k);
			base[n - k] = '\0';
			f = find_family(p, base);
			if (f != NULL && strcmp(f->type, "histogram") == 0)
				return f;
		}
	}
	return NULL;
}

/* Fails (with the line) on anything the format does not allow or certa should not emit. */
static void
parse_strict(const char *text, struct parsed *p)
{
	const char *line = text;
	struct family *cur = NULL;
	size_t i, j;

	memset(p, 0, sizeof *p);
	assert_true(strlen(text) > 0);
	assert_int_equal(text[strlen(text) - 1], '\n');
	while (*line != '\0') {
		const char *nl = strchr(line, '\n'), *q;
		char buf[1024];
		size_t len = (size_t)(nl - line);

		assert_non_null(nl);
		assert_true(len > 0 && len < sizeof buf);   /* no empty lines from us */
		memcpy(buf, line, len);
		buf[len] = '\0';
		line = nl + 1;
		if (strncmp(buf, "# HELP ", 7) == 0 || strncmp(buf, "# TYPE ", 7) == 0) {
			char name[128];
			int help = buf[2] == 'H';
			struct family *f;
			q = buf + 7;
			assert_true(read_name(&q, name, sizeof name, 1) > 0);
			assert_int_equal(*q, ' ');
			q++;
			f = find_family(p, name);
			if (f == NULL) {
				/* A family's lines are contiguous: a new name starts a new one. */
				assert_true(p->nf < 64);
				f = &p->f[p->nf++];
				snprintf(f->name, sizeof f->name, "%s", name);
			} else {
				assert_ptr_equal(f, cur);
			}
			cur = f;
			if (help) {
				assert_false(f->has_help);
				f->has_help = 1;
				/* Escapes in help: only \\ and \n. */
				for (; *q; q++)
					if (*q == '\\') {
						q++;
						assert_true(*q == '\\' || *q == 'n');
					}
			} else {
				assert_int_equal(f->type[0], '\0');   /* one TYPE per family */
				assert_true(strcmp(q, "counter") == 0 || strcmp(q, "gauge") == 0 ||
				    strcmp(q, "histogram") == 0);
				snprintf(f->type, sizeof f->type, "%s", q);
			}
			continue;
		}
		assert_int_not_equal(buf[0], '#');   /* no other comments from us */
		{
			struct sample *s;
			struct family *f;
			char lname[128];
			size_t ll = 0;
			assert_true(p->ns < 512);
			s = &p->s[p->ns++];
			q = buf;
			assert_true(read_name(&q, s->name, sizeof s->name, 1) > 0);
			f = sample_family(p, s->name);
			assert_non_null(f);
			assert_ptr_equal(f, cur);          /* samples follow their TYPE line */
			assert_true(f->type[0] != '\0');
			if (*q == '{') {
				q++;
				while (*q != '}') {
					char val[256];
					size_t vl = 0;
					assert_true(read_name(&q, lname, sizeof lname, 0) > 0);
					assert_false(strncmp(lname, "__", 2) == 0);
					assert_int_equal(*q, '=');
					q++;
					assert_int_equal(*q, '"');
					q++;
					while (*q != '"') {
						char c = *q++;
						assert_int_not_equal(c, '\0');
						assert_int_not_equal(c, '\n');
						if (c == '\\') {
							c = *q++;
							assert_true(c == '\\' || c == '"' || c == 'n');
							if (c == 'n')
								c = '\n';
						}
						assert_true(vl < sizeof val - 1);
						val[vl++] = c;
					}
					val[vl] = '\0';
					q++;
					if (strcmp(lname, "le") == 0)
						snprintf(s->le, sizeof s->le, "%s", val);
					else
						ll += (size_t)snprintf(s->labels + ll,
						    sizeof s->labels - ll, "%s%s=\"%s\"",
						    ll ? "," : "", lname, val);
					if (*q == ',')
						q++;
					else
						assert_int_equal(*q, '}');
				}
				q++;
			}
			assert_int_equal(*q, ' ');
			q++;
			assert_int_equal(parse_value(q, &s->value), 0);  /* no timestamps */
			if (strcmp(f->type, "counter") == 0)
				assert_true(s->value >= 0);
		}
	}
	/* Every family has HELP and TYPE; no series appears twice. */
	for (i = 0; i < p->nf; i++)
		assert_true(p->f[i].has_help && p->f[i].type[0] != '\0');
	for (i = 0; i < p->ns; i++)
		for (j = 0; j < i; j++)
			assert_false(strcmp(p->s[i].name, p->s[j].name) == 0 &&
			    strcmp(p->s[i].labels, p->s[j].labels) == 0 &&
			    strcmp(p->s[i].le, p->s[j].le) == 0);
	/* Histograms: per series the buckets increase in le and in count, end at +Inf, and
	 * +Inf equals _count. */
	for (i = 0; i < p->ns; i++) {
		const struct sample *s = &p->s[i];
		size_t n = strlen(s->name);
		char base[128];
		double last_le = -INFINITY, last = 0, inf = -1, count = -1;
		int nb = 0;
		if (n < 6 || strcmp(s->name + n - 6, "_count") != 0)
			continue;
		memcpy(base, s->name, n - 6);
		base[n - 6] = '\0';
		if (find_family(p, base) == NULL)
			continue;
		count = s->value;
		for (j = 0; j < p->ns; j++) {
			const struct sample *b = &p->s[j];
			double le;
			if (strncmp(b->name, base, n - 6) != 0 ||
			    strcmp(b->name + n - 6, "_bucket") != 0 ||
			    strcmp(b->labels, s->labels) != 0)
				continue;
			assert_int_equal(parse_value(b->le, &le), 0);
			assert_true(le > last_le);
			assert_true(b->value >= last);
			last_le = le;
			last = b->value;
			nb++;
			if (isinf(le))
				inf = b->value;
		}
		assert_true(nb >= 2);
		assert_true(isinf(last_le));
		assert_true(inf == count);
	}
}

/* Value of one sample (labels canonical as struct sample; le "" unless a bucket). */
static double
sample_value(const struct parsed *p, const char *name, const char *labels, const char *le)
{
	size_t i;

	for (i = 0; i < p->ns; i++)
		if (strcmp(p->s[i].name, name) == 0 && strcmp(p->s[i].labels, labels) == 0 &&
		    strcmp(p->s[i].le, le) == 0)
			return p->s[i].value;
	fail_msg("no sample %s{%s%s%s}", name, labels, *le ? " le=" : "", le);
	return NAN;
}

static char *
render(struct metrics *m)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	assert_non_null(f);
	assert_int_equal(metrics_render(m, f), 0);
	assert_int_equal(fclose(f), 0);
	return text;
}

static struct parsed *
render_parse(struct metrics *m)
{
	struct parsed *p = malloc(sizeof *p);
	char *text = render(m);

	assert_non_null(p);
	parse_strict(text, p);
	free(text);
	return p;
}

/* ---- registry ---- */

static void
test_render_parses(void **state)
{
	struct metrics *m;
	struct parsed *p;
	char *text;

	(void)state;
	assert_int_equal(metrics_new(table, M_NFAM, &m), 0);
	/* Fresh: unlabelled families have their series at 0, labelled ones none. */
	p = render_parse(m);
	assert_int_equal(p->nf, M_NFAM);
	assert_true(sample_value(p, "certa_tokens_generated_total", "", "") == 0);
	assert_true(sample_value(p, "certa_queue_depth", "", "") == 0);
	assert_true(sample_value(p, "certa_certaindex_count", "", "") == 0);
	assert_true(sample_value(p, "certa_certaindex_bucket", "", "+Inf") == 0);
	free(p);

	assert_int_equal(metrics_inc(m, M_PROGRAMS, METRICS_LABELS("a", "running")), 0);
	assert_int_equal(metrics_counter_add(m, M_TOKENS, NULL, 1e12 + 1), 0);
	assert_int_equal(metrics_gauge_set(m, M_QUEUE, NULL, -3.5), 0);
	assert_int_equal(metrics_gauge_set(m, M_WORKERS_UP, METRICS_LABELS("127.0.0.1:7701"), 1),
	    0);
	assert_int_equal(metrics_observe(m, M_STEP_SECONDS, METRICS_LABELS("127.0.0.1:7701"),
	    0.042), 0);
	assert_int_equal(metrics_observe(m, M_CERTAINDEX, NULL, 0.93), 0);
	text = render(m);
	/* The exact shapes Prometheus expects. */
	assert_non_null(strstr(text, "# HELP certa_tokens_generated_total decode tokens "
	    "generated\\nacross all workers (help with a \\\\ and a newline)\n"));
	assert_non_null(strstr(text, "# TYPE certa_step_duration_seconds histogram\n"));
	assert_non_null(strstr(text, "certa_programs_total{tenant=\"a\",state=\"running\"} 1\n"));
	assert_non_null(strstr(text, "certa_tokens_generated_total 1000000000001\n"));
	assert_non_null(strstr(text, "certa_queue_depth -3.5\n"));
	assert_non_null(strstr(text,
	    "certa_step_duration_seconds_bucket{worker=\"127.0.0.1:7701\",le=\"0.025\"} 0\n"
	    "certa_step_duration_seconds_bucket{worker=\"127.0.0.1:7701\",le=\"0.05\"} 1\n"));
	assert_non_null(strstr(text,
	    "certa_step_duration_seconds_bucket{worker=\"127.0.0.1:7701\",le=\"+Inf\"} 1\n"
	    "certa_step_duration_seconds_sum{worker=\"127.0.0.1:7701\"} 0.042\n"
	    "certa_step_duration_seconds_count{worker=\"127.0.0.1:7701\"} 1\n"));
	assert_non_null(strstr(text, "certa_certaindex_bucket{le=\"0.9\"} 0\n"
	    "certa_certaindex_bucket{le=\"1\"} 1\n"));
	p = malloc(sizeof *p);
	parse_strict(text, p);
	free(p);
	free(text);
	metrics_free(m);
}

/* Series are told apart by all their label values, whatever the values hold (separators,
 * lengths of one or more digits, keys past the lookup's stack buffer): each combination below
 * is its own series with its own count. */
static void
test_series_keys_distinct(void **state)
{
	struct metrics *m;
	char *text, *at, longa[400], longb[400], want[1024];
	size_t lines = 0;
	int i;

	(void)state;
	memset(longa, 'x', sizeof longa - 1);
	longa[sizeof longa - 1] = '\0';
	memcpy(longb, longa, sizeof longa);
	longb[sizeof longb - 2] = 'y';   /* differs in its last byte only */
	assert_int_equal(metrics_new(table, M_NFAM, &m), 0);
	assert_int_equal(metrics_inc(m, M_PROGRAMS, METRICS_LABELS("a:b", "c")), 0);
	assert_int_equal(metrics_inc(m, M_PROGRAMS, METRICS_LABELS("a", "b:c")), 0);
	assert_int_equal(metrics_inc(m, M_PROGRAMS, METRICS_LABELS("ab", "")), 0);
	assert_int_equal(metrics_inc(m, M_PROGRAMS, METRICS_LABELS("a", "b")), 0);
	assert_int_equal(metrics_inc(m, M_PROGRAMS, METRICS_LABELS("0123456789", "1:x")), 0);
	assert_int_equal(metrics_inc(m, M_PROGRAMS, METRICS_LABELS("0123456789:1", "x")), 0);
	for (i = 0; i < 3; i++)
		assert_int_equal(metrics_inc(m, M_PROGRAMS, METRICS_LABELS(longa, "s")), 0);
	assert_int_equal(metrics_inc(m, M_PROGRAMS, METRICS_LABELS(longb, "s")), 0);
	text = render(m);
	for (at = text; (at = strstr(at, "\ncerta_programs_total{")) != NULL; at++)
		lines++;
	assert_int_equal(lines, 8);
	snprintf(want, sizeof want, "certa_programs_total{tenant=\"%s\",state=\"s\"} 3\n", longa);
	assert_non_null(strstr(text, want));
	snprintf(want, sizeof want, "certa_programs_total{tenant=\"%s\",state=\"s\"} 1\n", longb);
	assert_non_null(strstr(text, want));
	assert_non_null(strstr(text, "certa_programs_total{tenant=\"a:b\",state=\"c\"} 1\n"));
	assert_non_null(strstr(text, "certa_programs_total{tenant=\"a\",state=\"b:c\"} 1\n"));
	free(text);
	metrics_free(m);
}

/* Values render as the shortest plain decimal that reads back (whole numbers without a
 * fraction, -0 kept), an exponent only outside [1e-9, 1e15). */
static void
test_value_text(void **state)
{
	static const struct {
		double v;
		const char *text;
	} cases[] = {
		{ 0, "0" }, { -0.0, "-0" }, { 1, "1" }, { -1, "-1" }, { 7, "7" }, { 10, "10" },
		{ -42, "-42" }, { 1e12 + 1, "1000000000001" }, { 999999999999999, "999999999999999" },
		{ -999999999999999, "-999999999999999" }, { 1e15, "1e+15" }, { 9007199254740993.0,
		"9007199254740992" }, { 1e300, "1e+300" }, { 0.5, "0.5" }, { -3.5, "-3.5" },
		{ 0.1, "0.1" }, { 2.675, "2.675" }, { 123456.25, "123456.25" }, { 1e-9, "0.000000001" },
		{ 1e-10, "1e-10" }, { 4503599627370495.5, "4503599627370495.5" }, { 0.001, "0.001" },
	};
	struct metrics *m;
	size_t i;

	(void)state;
	assert_int_equal(metrics_new(table, M_NFAM, &m), 0);
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char *text, want[128];
		assert_int_equal(metrics_gauge_set(m, M_QUEUE, NULL, cases[i].v), 0);
		text = render(m);
		snprintf(want, sizeof want, "\ncerta_queue_depth %s\n", cases[i].text);
		if (strstr(text, want) == NULL)
			fail_msg("%.17g: want %s", cases[i].v, cases[i].text);
		free(text);
	}
	metrics_free(m);
}

/* Histogram bounds printed as le="1e+01": the le label is matched as a string, so bounds and
 * values are plain decimals. */
static void
test_le_plain_decimals(void **state)
{
	struct metrics *m;
	char *text;

	(void)state;
	assert_int_equal(metrics_new(table, M_NFAM, &m), 0);
	assert_int_equal(metrics_observe(m, M_STEP_SECONDS, METRICS_LABELS("w"), 7), 0);
	assert_int_equal(metrics_gauge_set(m, M_QUEUE, NULL, 20), 0);
	text = render(m);
	assert_non_null(strstr(text, "certa_step_duration_seconds_bucket{worker=\"w\",le=\"10\"} 1\n"));
	assert_non_null(strstr(text, "certa_step_duration_seconds_bucket{worker=\"w\",le=\"0.005\"} 0\n"));
	assert_non_null(strstr(text, "certa_step_duration_seconds_sum{worker=\"w\"} 7\n"));
	assert_non_null(strstr(text, "certa_queue_depth 20\n"));
	assert_null(strstr(text, "e+"));
	assert_null(strstr(text, "e-0"));
	free(text);
	metrics_free(m);
}

static void
test_counters_move(void **state)
{
	struct metrics *m;
	struct parsed *p;
	double v = -1;
	int i;

	(void)state;
	assert_int_equal(metrics_new(table, M_NFAM, &m), 0);
	assert_int_equal(metrics_get(m, M_PROGRAMS, METRICS_LABELS("a", "done"), &v),
	    CERTA_ENOTFOUND);
	assert_true(v == -1);
	for (i = 0; i < 5; i++)
		assert_int_equal(metrics_inc(m, M_PROGRAMS, METRICS_LABELS("a", "done")), 0);
	assert_int_equal(metrics_inc(m, M_PROGRAMS, METRICS_LABELS("b", "done")), 0);
	assert_int_equal(metrics_counter_add(m, M_TOKENS, NULL, 64), 0);
	assert_int_equal(metrics_counter_add(m, M_TOKENS, NULL, 0.5), 0);
	/* Counters only go up; NaN is refused everywhere it would poison a series. */
	assert_int_equal(metrics_counter_add(m, M_TOKENS, NULL, -1), -EINVAL);
	assert_int_equal(metrics_counter_add(m, M_TOKENS, NULL, NAN), -EINVAL);
	assert_int_equal(metrics_observe(m, M_CERTAINDEX, NULL, NAN), -EINVAL);
	/* A NULL label value is refused and creates nothing. */
	assert_int_equal(metrics_inc(m, M_PROGRAMS, METRICS_LABELS("a", NULL)), -EINVAL);
	assert_int_equal(metrics_inc(m, M_PROGRAMS, NULL), -EINVAL);
	assert_int_equal(metrics_gauge_add(m, M_QUEUE, NULL, 3), 0);
	assert_int_equal(metrics_gauge_add(m, M_QUEUE, NULL, -1), 0);

	assert_int_equal(metrics_get(m, M_PROGRAMS, METRICS_LABELS("a", "done"), &v), 0);
	assert_true(v == 5);
	p = render_parse(m);
	assert_true(sample_value(p, "certa_programs_total", "tenant=\"a\",state=\"done\"", "") == 5);
	assert_true(sample_value(p, "certa_programs_total", "tenant=\"b\",state=\"done\"", "") == 1);
	assert_true(sample_value(p, "certa_tokens_generated_total", "", "") == 64.5);
	assert_true(sample_value(p, "certa_queue_depth", "", "") == 2);
	free(p);

	/* Remove and reset. */
	assert_int_equal(metrics_remove(m, M_PROGRAMS, METRICS_LABELS("b", "done")), 0);
	assert_int_equal(metrics_remove(m, M_PROGRAMS, METRICS_LABELS("b", "done")),
	    CERTA_ENOTFOUND);
	assert_int_equal(metrics_get(m, M_PROGRAMS, METRICS_LABELS("b", "done"), &v),
	    CERTA_ENOTFOUND);
	assert_int_equal(metrics_get(m, M_PROGRAMS, METRICS_LABELS("a", "done"), &v), 0);
	metrics_reset(m, M_PROGRAMS);
	assert_int_equal(metrics_get(m, M_PROGRAMS, METRICS_LABELS("a", "done"), &v),
	    CERTA_ENOTFOUND);
	metrics_reset(m, M_TOKENS);
	assert_int_equal(metrics_get(m, M_TOKENS, NULL, &v), 0);
	assert_true(v == 0);
	p = render_parse(m);
	free(p);
	metrics_free(m);
}

/* Label values with every character the format escapes, and UTF-8, round-trip. */
static void
test_label_escaping(void **state)
{
	static const char *const nasty = "a\"b\\c\nd é {x=\"y\"},";
	struct metrics *m;
	struct parsed *p;
	char *text, want[256];

	(void)state;
	assert_int_equal(metrics_new(table, M_NFAM, &m), 0);
	assert_int_equal(metrics_inc(m, M_PROGRAMS, METRICS_LABELS(nasty, "")), 0);
	text = render(m);
	assert_non_null(strstr(text,
	    "certa_programs_total{tenant=\"a\\\"b\\\\c\\nd é {x=\\\"y\\\"},\",state=\"\"} 1\n"));
	p = malloc(sizeof *p);
	parse_strict(text, p);
	snprintf(want, sizeof want, "tenant=\"%s\",state=\"\"", nasty);
	assert_true(sample_value(p, "certa_programs_total", want, "") == 1);
	free(p);
	free(text);
	/* Values that differ only where a naive join would collide stay distinct series. */
	assert_int_equal(metrics_inc(m, M_PROGRAMS, METRICS_LABELS("x,y", "z")), 0);
	assert_int_equal(metrics_inc(m, M_PROGRAMS, METRICS_LABELS("x", "y,z")), 0);
	assert_int_equal(metrics_inc(m, M_PROGRAMS, METRICS_LABELS("1:x", "")), 0);
	assert_int_equal(metrics_inc(m, M_PROGRAMS, METRICS_LABELS("", "1:x")), 0);
	p = render_parse(m);
	{
		size_t i, n = 0;
		for (i = 0; i < p->ns; i++)
			n += strcmp(p->s[i].name, "certa_programs_total") == 0;
		assert_int_equal(n, 5);
	}
	free(p);
	metrics_free(m);
}

/* Buckets are cumulative, le is inclusive, +Inf catches the rest, sum and count agree. */
static void
test_histogram_buckets(void **state)
{
	static const double obs[] = { 0, 0.1, 0.1000001, 0.5, 0.75, 0.99, 1, 1.5, 42, -1 };
	struct metrics *m;
	struct parsed *p;
	double sum = 0, v;
	size_t i;

	(void)state;
	assert_int_equal(metrics_new(table, M_NFAM, &m), 0);
	for (i = 0; i < sizeof obs / sizeof obs[0]; i++) {
		assert_int_equal(metrics_observe(m, M_CERTAINDEX, NULL, obs[i]), 0);
		sum += obs[i];
	}
	assert_int_equal(metrics_observe(m, M_CERTAINDEX, NULL, INFINITY), 0);
	p = render_parse(m);
	assert_true(sample_value(p, "certa_certaindex_bucket", "", "0.1") == 3);   /* -1, 0, .1 */
	assert_true(sample_value(p, "certa_certaindex_bucket", "", "0.25") == 4);
	assert_true(sample_value(p, "certa_certaindex_bucket", "", "0.5") == 5);
	assert_true(sample_value(p, "certa_certaindex_bucket", "", "0.75") == 6);
	assert_true(sample_value(p, "certa_certaindex_bucket", "", "0.9") == 6);
	assert_true(sample_value(p, "certa_certaindex_bucket", "", "1") == 8);
	assert_true(sample_value(p, "certa_certaindex_bucket", "", "+Inf") == 11);
	assert_true(sample_value(p, "certa_certaindex_count", "", "") == 11);
	assert_true(isinf(sample_value(p, "certa_certaindex_sum", "", "")));
	free(p);
	assert_int_equal(metrics_get(m, M_CERTAINDEX, NULL, &v), 0);
	assert_true(v == 11);
	metrics_reset(m, M_CERTAINDEX);
	assert_int_equal(metrics_observe(m, M_CERTAINDEX, NULL, 0.3), 0);
	p = render_parse(m);
	assert_true(sample_value(p, "certa_certaindex_sum", "", "") == 0.3);
	assert_true(sample_value(p, "certa_certaindex_bucket", "", "0.25") == 0);
	assert_true(sample_value(p, "certa_certaindex_bucket", "", "0.5") == 1);
	free(p);
	(void)sum;
	metrics_free(m);
}

/* The collect callback runs at render time. */
static void
collect_queue(struct metrics *m, void *arg)
{
	int *calls = arg;

	(*calls)++;
	metrics_reset(m, M_WORKERS_UP);
	metrics_gauge_set(m, M_QUEUE, NULL, 100 + *calls);
	metrics_gauge_set(m, M_WORKERS_UP, METRICS_LABELS("w1"), *calls % 2);
}

static void
test_collector(void **state)
{
	struct metrics *m;
	struct parsed *p;
	int calls = 0;

	(void)state;
	assert_int_equal(metrics_new(table, M_NFAM, &m), 0);
	metrics_set_collector(m, collect_queue, &calls);
	p = render_parse(m);
	assert_true(sample_value(p, "certa_queue_depth", "", "") == 101);
	assert_true(sample_value(p, "certa_worker_up", "worker=\"w1\"", "") == 1);
	free(p);
	p = render_parse(m);
	assert_true(sample_value(p, "certa_queue_depth", "", "") == 102);
	assert_true(sample_value(p, "certa_worker_up", "worker=\"w1\"", "") == 0);
	free(p);
	metrics_free(m);
}

/* One collector pass, with metrics_reset (how refreshes were written) or in place. */
static void
refresh_pass(struct metrics *m, int in_place, const char *const *tenants, size_t n)
{
	size_t i;

	if (in_place) {
		metrics_refresh_begin(m, M_PROGRAMS);
		metrics_refresh_begin(m, M_WORKERS_UP);
		metrics_refresh_begin(m, M_STEP_SECONDS);
		metrics_refresh_begin(m, M_QUEUE);
	} else {
		metrics_reset(m, M_PROGRAMS);
		metrics_reset(m, M_WORKERS_UP);
		metrics_reset(m, M_STEP_SECONDS);
		metrics_reset(m, M_QUEUE);
	}
	for (i = 0; i < n; i++) {
		assert_int_equal(metrics_counter_add(m, M_PROGRAMS,
		    METRICS_LABELS(tenants[i], "queued"), (double)(i + n)), 0);
		assert_int_equal(metrics_counter_add(m, M_PROGRAMS,
		    METRICS_LABELS(tenants[i], "queued"), 0.5), 0);
		assert_int_equal(metrics_gauge_add(m, M_WORKERS_UP, METRICS_LABELS("all"), 1), 0);
		assert_int_equal(metrics_gauge_set(m, M_WORKERS_UP, METRICS_LABELS(tenants[i]),
		    (double)i), 0);
		assert_int_equal(metrics_observe(m, M_STEP_SECONDS, METRICS_LABELS(tenants[i]),
		    0.01 * (double)(i + 1)), 0);
	}
	assert_int_equal(metrics_gauge_add(m, M_QUEUE, NULL, (double)n), 0);
	if (in_place) {
		metrics_refresh_end(m, M_PROGRAMS);
		metrics_refresh_end(m, M_WORKERS_UP);
		metrics_refresh_end(m, M_STEP_SECONDS);
		metrics_refresh_end(m, M_QUEUE);
	}
}

/* A family refreshed in place renders exactly what metrics_reset and the same updates did:
 * departed series gone, the others from 0 in the order of this pass (a tenant list that
 * was reordered by a swap-remove), whatever series came and went between passes. */
static void
test_refresh_in_place(void **state)
{
	static const char *const p1[] = { "a", "b", "c", "d" };
	static const char *const p2[] = { "a", "d", "c" };          /* b left; d moved */
	static const char *const p3[] = { "e", "c", "a", "d", "b" }; /* e, b (again) came */
	static const char *const *const passes[] = { p1, p2, p2, p3, p1 };
	static const size_t np[] = { 4, 3, 3, 5, 4 };
	struct metrics *ref, *m;
	size_t i;
	double v;

	(void)state;
	assert_int_equal(metrics_new(table, M_NFAM, &ref), 0);
	assert_int_equal(metrics_new(table, M_NFAM, &m), 0);
	for (i = 0; i < sizeof np / sizeof np[0]; i++) {
		char *want, *got;
		refresh_pass(ref, 0, passes[i], np[i]);
		refresh_pass(m, 1, passes[i], np[i]);
		want = render(ref);
		got = render(m);
		assert_string_equal(got, want);
		if (i == 1) {
			assert_null(strstr(got, "tenant=\"b\""));
			assert_null(strstr(got, "worker=\"b\""));
			assert_non_null(strstr(got,
			    "certa_programs_total{tenant=\"a\",state=\"queued\"} 3.5\n"
			    "certa_programs_total{tenant=\"d\",state=\"queued\"} 4.5\n"
			    "certa_programs_total{tenant=\"c\",state=\"queued\"} 5.5\n"));
			assert_non_null(strstr(got, "certa_worker_up{worker=\"all\"} 3\n"));
			assert_non_null(strstr(got, "certa_queue_depth 3\n"));
		}
		free(want);
		free(got);
	}
	/* In a refresh, a stale series is absent to readers and the render until updated. */
	metrics_refresh_begin(m, M_PROGRAMS);
	assert_int_equal(metrics_get(m, M_PROGRAMS, METRICS_LABELS("a", "queued"), &v),
	    CERTA_ENOTFOUND);
	assert_int_equal(metrics_remove(m, M_PROGRAMS, METRICS_LABELS("a", "queued")),
	    CERTA_ENOTFOUND);
	{
		char *text = render(m);
		assert_null(strstr(text, "certa_programs_total{"));
		free(text);
	}
	assert_int_equal(metrics_inc(m, M_PROGRAMS, METRICS_LABELS("b", "queued")), 0);
	assert_int_equal(metrics_get(m, M_PROGRAMS, METRICS_LABELS("b", "queued"), &v), 0);
	assert_true(v == 1);
	metrics_refresh_end(m, M_PROGRAMS);
	assert_int_equal(metrics_get(m, M_PROGRAMS, METRICS_LABELS("a", "queued"), &v),
	    CERTA_ENOTFOUND);
	assert_int_equal(metrics_get(m, M_PROGRAMS, METRICS_LABELS("b", "queued"), &v), 0);
	/* An empty pass removes every series. */
	refresh_pass(m, 1, NULL, 0);
	{
		char *text = render(m);
		assert_null(strstr(text, "certa_programs_total{"));
		assert_null(strstr(text, "certa_worker_up{"));
		free(text);
	}
	metrics_free(ref);
	metrics_free(m);
}

/* Unpaired refresh calls on a labelled family are programming errors: they abort.  arg: 0,
 * begin twice; 1, an end without a begin. */
static void
refresh_unpaired(void *arg)
{
	struct metrics *m;

	if (metrics_new(table, M_NFAM, &m) != 0)
		_exit(1);
	/* Unlabelled families take begin and end in any order. */
	metrics_refresh_end(m, M_QUEUE);
	metrics_refresh_begin(m, M_QUEUE);
	metrics_refresh_begin(m, M_QUEUE);
	if (*(const int *)arg == 0) {
		metrics_refresh_begin(m, M_PROGRAMS);
		metrics_refresh_begin(m, M_PROGRAMS);
	} else {
		metrics_refresh_end(m, M_PROGRAMS);
	}
}

static void
test_refresh_unpaired_aborts(void **state)
{
	int c;

	(void)state;
	for (c = 0; c < 2; c++)
		assert_int_equal(harness_aborts(refresh_unpaired, &c), 1);
}

/* A malformed table is a programming error: metrics_new aborts. */
struct table_case {
	const struct metrics_desc *t;
	size_t n;
};

static void
table_new(void *arg)
{
	const struct table_case *tc = arg;
	struct metrics *m;

	(void)metrics_new(tc->t, tc->n, &m);
}

static void
test_bad_tables_abort(void **state)
{
	static const struct metrics_desc no_total[] = {
		{ "certa_programs", METRICS_COUNTER, "x", NULL, NULL, 0 },
	};
	static const char *const le[] = { "le", NULL };
	static const struct metrics_desc le_label[] = {
		{ "h_seconds", METRICS_HISTOGRAM, "x", le, b_unit, 6 },
	};
	static const double bad_b[] = { 1, 0.5 };
	static const struct metrics_desc bad_buckets[] = {
		{ "h_seconds", METRICS_HISTOGRAM, "x", NULL, bad_b, 2 },
	};
	static const struct metrics_desc bad_name[] = {
		{ "certa-x", METRICS_GAUGE, "x", NULL, NULL, 0 },
	};
	static const struct metrics_desc dup[] = {
		{ "g", METRICS_GAUGE, "x", NULL, NULL, 0 },
		{ "g", METRICS_GAUGE, "y", NULL, NULL, 0 },
	};
	static const struct table_case cases[] = { { no_total, 1 }, { le_label, 1 },
	    { bad_buckets, 1 }, { bad_name, 1 }, { dup, 2 } };
	size_t i;

	(void)state;
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++)
		assert_int_equal(harness_aborts(table_new, (void *)&cases[i]), 1);
}

/* promtool (Debian package prometheus), when installed, must accept the output. */
static void
test_promtool(void **state)
{
	static const char *const paths[] = { "/usr/bin/promtool", "/usr/local/bin/promtool" };
	const char *tool = NULL;
	struct metrics *m;
	char file[] = "/tmp/certa-metrics-XXXXXX", cmd[256];
	char *text;
	FILE *f;
	size_t i;
	int fd, rc;

	(void)state;
	for (i = 0; i < 2; i++)
		if (access(paths[i], X_OK) == 0)
			tool = paths[i];
	if (tool == NULL) {
		print_message("promtool not installed (Debian: prometheus): skipped\n");
		skip();
	}
	assert_int_equal(metrics_new(table, M_NFAM, &m), 0);
	assert_int_equal(metrics_inc(m, M_PROGRAMS, METRICS_LABELS("a\"\\\n", "running")), 0);
	assert_int_equal(metrics_counter_add(m, M_TOKENS, NULL, 12345), 0);
	assert_int_equal(metrics_observe(m, M_STEP_SECONDS, METRICS_LABELS("w"), 0.3), 0);
	assert_int_equal(metrics_observe(m, M_CERTAINDEX, NULL, 0.3), 0);
	assert_int_equal(metrics_gauge_set(m, M_WORKERS_UP, METRICS_LABELS("w"), 1), 0);
	text = render(m);
	fd = mkstemp(file);
	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
	snprintf(cmd, sizeof cmd, "%s check metrics < %s", tool, file);
	rc = system(cmd);
	unlink(file);
	free(text);
	metrics_free(m);
	assert_true(WIFEXITED(rc));
	assert_int_equal(WEXITSTATUS(rc), 0);
}

/* ---- HTTP over loopback ---- */

struct hfix {
	struct event_base *base;
	struct metrics *m;
	struct metrics_http *http;
	struct event *cmd_ev;
	int cmd_pipe[2], ack_pipe[2];
	pthread_t thread;
	int port;
	int ready;   /* read by the loop thread only (changed through commands) */
};

static int
is_ready(void *arg)
{
	return ((struct hfix *)arg)->ready;
}

static void
on_hcmd(evutil_socket_t fd, short what, void *arg)
{
	struct hfix *h = arg;
	char c;

	(void)what;
	if (read(fd, &c, 1) != 1)
		return;
	switch (c) {
	case 'r':
		h->ready = 1;
		metrics_http_ready_changed(h->http);
		break;
	case 'u':
		h->ready = 0;
		metrics_http_ready_changed(h->http);
		break;
	case 'b':
		/* A long loop turn: ack first, then keep the loop thread busy. */
		assert_int_equal(write(h->ack_pipe[1], &c, 1), 1);
		usleep(700000);
		return;
	case 'i':
		metrics_inc(h->m, M_PROGRAMS, METRICS_LABELS("a", "done"));
		break;
	case 's':
		metrics_http_stop(h->http);
		h->http = NULL;
		event_del(h->cmd_ev);
		event_base_loopbreak(h->base);
		return;
	}
	assert_int_equal(write(h->ack_pipe[1], &c, 1), 1);
}

static void
hcmd(struct hfix *h, char c)
{
	assert_int_equal(write(h->cmd_pipe[1], &c, 1), 1);
	assert_int_equal(read(h->ack_pipe[0], &c, 1), 1);
}

static void *
hloop(void *arg)
{
	event_base_dispatch(((struct hfix *)arg)->base);
	return NULL;
}

static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* One HTTP/1.0 exchange over a raw socket; returns the status, the response in *resp
 * (malloc'd, headers and body). */
static int
http_get(int port, const char *method, const char *path, char **resp)
{
	struct sockaddr_in sa;
	char req[256], *buf = NULL;
	size_t len = 0, cap = 0;
	int fd, code = -1;
	ssize_t n;

	fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	memset(&sa, 0, sizeof sa);
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	snprintf(req, sizeof req, "%s %s HTTP/1.0\r\nHost: localhost\r\n\r\n", method, path);
	assert_int_equal(write(fd, req, strlen(req)), (ssize_t)strlen(req));
	for (;;) {
		if (cap - len < 4096) {
			cap = cap ? cap * 2 : 8192;
			buf = realloc(buf, cap + 1);
			assert_non_null(buf);
		}
		n = read(fd, buf + len, cap - len);
		assert_true(n >= 0);
		if (n == 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	buf[len] = '\0';
	assert_int_equal(sscanf(buf, "HTTP/1.%*d %d", &code), 1);
	*resp = buf;
	return code;
}

static const char *
http_body(const char *resp)
{
	const char *b = strstr(resp, "\r\n\r\n");

	assert_non_null(b);
	return b + 4;
}

static void
test_http_endpoint(void **state)
{
	struct hfix h;
	struct parsed *p;
	char *resp;

	(void)state;
	memset(&h, 0, sizeof h);
	h.base = event_base_new();
	assert_int_equal(metrics_new(table, M_NFAM, &h.m), 0);
	assert_int_equal(metrics_http_start(h.base, "127.0.0.1", 0, h.m, is_ready, &h, &h.port,
	    &h.http), 0);
	assert_true(h.port > 0);
	/* The port is taken now: a second endpoint on it fails cleanly. */
	{
		struct metrics_http *again = NULL;
		assert_int_equal(metrics_http_start(h.base, "127.0.0.1", h.port, h.m, NULL, NULL,
		    NULL, &again), CERTA_EUNAVAIL);
		assert_null(again);
	}
	assert_int_equal(pipe(h.cmd_pipe), 0);
	assert_int_equal(pipe(h.ack_pipe), 0);
	h.cmd_ev = event_new(h.base, h.cmd_pipe[0], EV_READ | EV_PERSIST, on_hcmd, &h);
	event_add(h.cmd_ev, NULL);
	assert_int_equal(pthread_create(&h.thread, NULL, hloop, &h), 0);

	assert_int_equal(http_get(h.port, "GET", "/healthz", &resp), 200);
	assert_string_equal(http_body(resp), "ok\n");
	free(resp);

	assert_int_equal(http_get(h.port, "GET", "/readyz", &resp), 503);
	assert_string_equal(http_body(resp), "not ready\n");
	free(resp);
	hcmd(&h, 'r');
	assert_int_equal(http_get(h.port, "GET", "/readyz", &resp), 200);
	assert_string_equal(http_body(resp), "ready\n");
	free(resp);
	hcmd(&h, 'u');
	assert_int_equal(http_get(h.port, "GET", "/readyz", &resp), 503);
	free(resp);

	/* The probes do not wait for the loop: answered while it is busy (700 ms turn); once
	 * its heartbeat is older than the stall time, both say so. */
	hcmd(&h, 'r');
	hcmd(&h, 'b');
	{
		double t0 = now_ms();
		assert_int_equal(http_get(h.port, "GET", "/readyz", &resp), 200);
		free(resp);
		assert_int_equal(http_get(h.port, "GET", "/healthz", &resp), 200);
		free(resp);
		assert_true(now_ms() - t0 < 300);
		metrics_http_set_stall(h.http, 100);
		usleep(250000);
		assert_int_equal(http_get(h.port, "GET", "/readyz", &resp), 503);
		assert_string_equal(http_body(resp), "loop stalled\n");
		free(resp);
		assert_int_equal(http_get(h.port, "GET", "/healthz", &resp), 503);
		free(resp);
		assert_true(now_ms() - t0 < 600);
	}
	/* The loop runs again (the command after 'b' is handled once it is back). */
	metrics_http_set_stall(h.http, METRICS_STALL_MS);
	hcmd(&h, 'r');
	assert_int_equal(http_get(h.port, "GET", "/readyz", &resp), 200);
	free(resp);
	assert_int_equal(http_get(h.port, "GET", "/healthz", &resp), 200);
	free(resp);
	hcmd(&h, 'u');

	hcmd(&h, 'i');
	hcmd(&h, 'i');
	assert_int_equal(http_get(h.port, "GET", "/metrics?x=1", &resp), 200);
	assert_non_null(strstr(resp, "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
	p = malloc(sizeof *p);
	parse_strict(http_body(resp), p);
	assert_true(sample_value(p, "certa_programs_total", "tenant=\"a\",state=\"done\"", "") == 2);
	free(resp);
	hcmd(&h, 'i');
	assert_int_equal(http_get(h.port, "GET", "/metrics", &resp), 200);
	parse_strict(http_body(resp), p);
	assert_true(sample_value(p, "certa_programs_total", "tenant=\"a\",state=\"done\"", "") == 3);
	free(p);
	free(resp);

	assert_int_equal(http_get(h.port, "HEAD", "/metrics", &resp), 200);
	assert_string_equal(http_body(resp), "");
	free(resp);
	assert_int_equal(http_get(h.port, "GET", "/", &resp), 404);
	free(resp);
	assert_int_equal(http_get(h.port, "GET", "/metricsx", &resp), 404);
	free(resp);
	assert_int_equal(http_get(h.port, "POST", "/metrics", &resp), 405);
	free(resp);

	{
		char c = 's';
		assert_int_equal(write(h.cmd_pipe[1], &c, 1), 1);
	}
	pthread_join(h.thread, NULL);
	event_free(h.cmd_ev);
	close(h.cmd_pipe[0]);
	close(h.cmd_pipe[1]);
	close(h.ack_pipe[0]);
	close(h.ack_pipe[1]);
	metrics_free(h.m);
	event_base_free(h.base);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_render_parses),
		cmocka_unit_test(test_counters_move),
		cmocka_unit_test(test_le_plain_decimals),
		cmocka_unit_test(test_value_text),
		cmocka_unit_test(test_series_keys_distinct),
		cmocka_unit_test(test_label_escaping),
		cmocka_unit_test(test_histogram_buckets),
		cmocka_unit_test(test_collector),
		cmocka_unit_test(test_refresh_in_place),
		cmocka_unit_test(test_refresh_unpaired_aborts),
		cmocka_unit_test(test_bad_tables_abort),
		cmocka_unit_test(test_promtool),
		cmocka_unit_test(test_http_endpoint),
	};

	log_init("test_metrics", LOG_FORMAT_PLAIN, LOG_LVL_WARN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
