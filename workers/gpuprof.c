/* gpuprof.c — the GPU timing model of the replay engine (workers/gpuprof.h). */
#include "workers/gpuprof.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/error.h"
#include "lib/fileio.h"
#include "lib/ini.h"

/* The keys of a profile: a table of (name, field offset, kind). */
enum gpuprof_kind { GPUPROF_US, GPUPROF_TOKENS, GPUPROF_SCALE, GPUPROF_NAME };

static const struct gpuprof_key {
	const char *name;
	size_t off;
	enum gpuprof_kind kind;
} gpuprof_keys[] = {
	{ "name", offsetof(struct gpuprof, name), GPUPROF_NAME },
	{ "t0_us", offsetof(struct gpuprof, t0_us), GPUPROF_US },
	{ "a_us", offsetof(struct gpuprof, a_us), GPUPROF_US },
	{ "b_us", offsetof(struct gpuprof, b_us), GPUPROF_US },
	{ "prefill_us", offsetof(struct gpuprof, prefill_us), GPUPROF_US },
	{ "probe_suffix_tokens", offsetof(struct gpuprof, probe_suffix_tokens), GPUPROF_TOKENS },
	{ "time_scale", offsetof(struct gpuprof, time_scale), GPUPROF_SCALE },
};

void
gpuprof_defaults(struct gpuprof *out)
{
	/* profiles/llama3-8b-h100.gpu derives each number. */
	memset(out, 0, sizeof *out);
	snprintf(out->name, sizeof out->name, "llama3-8b-h100");
	out->t0_us = 5990.0;
	out->a_us = 26.7;
	out->b_us = 0.0489;
	out->prefill_us = 26.7;
	out->probe_suffix_tokens = 16;
	out->time_scale = 1.0;
}

struct gpuprof_parse {
	struct gpuprof *p;
	char *err;
	size_t errlen;
	int said;               /* the callback wrote err */
};

static int
gpuprof_item(const struct ini_item *it, void *arg)
{
	struct gpuprof_parse *ps = arg;
	const struct gpuprof_key *k = NULL;
	char *end;
	double v;
	size_t i;

	for (i = 0; i < sizeof gpuprof_keys / sizeof gpuprof_keys[0]; i++)
		if (strlen(gpuprof_keys[i].name) == it->key_len &&
		    memcmp(gpuprof_keys[i].name, it->key, it->key_len) == 0)
			k = &gpuprof_keys[i];
	if (k == NULL || it->section != NULL) {
		snprintf(ps->err, ps->errlen, "line %u: unknown key '%.*s'", it->line,
		    (int)it->key_len, it->key);
		ps->said = 1;
		return CERTA_ECONFIG;
	}
	if (k->kind == GPUPROF_NAME) {
		snprintf((char *)ps->p + k->off, sizeof ps->p->name, "%s", it->value);
		return 0;
	}
	errno = 0;
	v = strtod(it->value, &end);
	if (errno != 0 || end == it->value || *end != '\0' || !isfinite(v) || v < 0 ||
	    (k->kind == GPUPROF_SCALE && v <= 0) ||
	    (k->kind == GPUPROF_TOKENS && (v != floor(v) || v > 1e6))) {
		snprintf(ps->err, ps->errlen, "line %u: '%s' is not a valid value for %s%s",
		    it->line, it->value, k->name,
		    k->kind == GPUPROF_SCALE ? " (a number > 0)" :
		    k->kind == GPUPROF_TOKENS ? " (a whole number of tokens)" : " (a number >= 0)");
		ps->said = 1;
		return CERTA_ECONFIG;
	}
	if (k->kind == GPUPROF_TOKENS)
		*(uint32_t *)(void *)((char *)ps->p + k->off) = (uint32_t)v;
	else
		*(double *)(void *)((char *)ps->p + k->off) = v;
	return 0;
}

int
gpuprof_parse(const char *text, size_t len, struct gpuprof *out, char *err, size_t errlen)
{
	struct gpuprof p;
	struct gpuprof_parse ps = { &p, err, errlen, 0 };
	struct ini_error ie = { 0 };
	int rc;

	gpuprof_defaults(&p);
	rc = ini_parse(text, len, 0, gpuprof_item, NULL, &ps, &ie);
	if (rc == CERTA_ECONFIG && !ps.said)
		snprintf(err, errlen, "line %u: %s", ie.line, ie.msg);
	if (rc != 0)
		return rc == -ENOMEM ? rc : CERTA_ECONFIG;
	*out = p;
	return 0;
}

int
gpuprof_load(const char *path, struct gpuprof *out, char *err, size_t errlen)
{
	char *text, msg[160];
	size_t len;
	int rc;

	rc = fileio_read(path, 1u << 20, &text, &len, err, errlen);
	if (rc != 0)
		return rc;
	rc = gpuprof_parse(text, len, out, msg, sizeof msg);
	if (rc != 0)
		snprintf(err, errlen, "%s: %s", path, msg);
	free(text);
	return rc;
}

double
gpuprof_iter_us(const struct gpuprof *p, uint64_t decode_tokens, uint64_t prefill_tokens,
    uint64_t context_tokens)
{
	if (decode_tokens == 0 && prefill_tokens == 0)
		return 0.0;
	return p->t0_us + p->a_us * (double)decode_tokens + p->prefill_us * (double)prefill_tokens +
	    p->b_us * (double)context_tokens;
}

int
gpuprof_seq_busy(const struct gpuprof_seq *s)
{
	return s->prefill + s->decode + s->probe_prefill + s->probe_decode > 0;
}

void
gpuprof_seq_advance(struct gpuprof_seq *s, uint64_t *dec, uint64_t *pre, uint64_t *ctx)
{
	if (s->prefill > 0) {
		*pre += s->prefill;
		s->context += s->prefill;
		s->prefill = 0;
	} else if (s->decode > 0) {
		(*dec)++;
		*ctx += s->context;
		s->context++;
		s->decode--;
	} else if (s->probe_prefill > 0) {
		*pre += s->probe_prefill;
		s->fork = s->probe_prefill;
		s->probe_prefill = 0;
	} else if (s->probe_decode > 0) {
		(*dec)++;
		*ctx += s->context + s->fork;
		s->fork++;
		s->probe_decode--;
		if (s->probe_decode == 0)
			s->fork = 0;   /* the fork is dropped after the probe */
	}
}

double
gpuprof_iterate(const struct gpuprof *p, struct gpuprof_seq *seqs, size_t n)
{
	uint64_t dec = 0, pre = 0, ctx = 0;
	size_t i;

	for (i = 0; i < n; i++)
		gpuprof_seq_advance(&seqs[i], &dec, &pre, &ctx);
	return gpuprof_iter_us(p, dec, pre, ctx);
}
