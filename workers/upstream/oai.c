/* oai.c — OpenAI completions: request bodies, strict response reading, logprob features. */
#include "workers/upstream/oai.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/error.h"
#include "lib/json.h"
#include "lib/jsonw.h"

int
oai_request_body(const struct oai_request *r, char **body, size_t *len)
{
	struct jsonw *w;
	const char *data;
	int rc;

	rc = jsonw_new(&w);
	if (rc != 0)
		return rc;
	jsonw_object_begin(w);
	jsonw_kstring(w, "model", r->model);
	jsonw_kstring(w, "prompt", r->prompt);
	jsonw_kuint(w, "max_tokens", r->max_tokens);
	jsonw_kdouble(w, "temperature", r->temperature);
	if (r->top_p > 0 && r->top_p < 1)
		jsonw_kdouble(w, "top_p", r->top_p);
	/* Servers read seed as a signed 64-bit (or smaller) integer. */
	jsonw_kuint(w, "seed", r->seed & 0x7fffffffu);
	jsonw_kuint(w, "logprobs", r->logprobs ? r->logprobs : 1);
	jsonw_kuint(w, "n", 1);
	jsonw_kbool(w, "stream", false);
	jsonw_kbool(w, "echo", false);
	jsonw_object_end(w);
	data = jsonw_data(w, len);
	if (data == NULL) {
		rc = jsonw_error(w) ? jsonw_error(w) : -ENOMEM;
		jsonw_free(w);
		return rc;
	}
	*body = strndup(data, *len);
	jsonw_free(w);
	return *body != NULL ? 0 : -ENOMEM;
}

void
oai_completion_clear(struct oai_completion *c)
{
	free(c->text);
	free(c->finish_reason);
	free(c->tok_len);
	free(c->tok_logprob);
	free(c->tok_entropy);
	memset(c, 0, sizeof *c);
}

/* "response field F: expected W, got T" */
static int
oai_bad(char *err, size_t errlen, const char *field, const char *want,
    const struct json_value *v)
{
	if (v == NULL)
		snprintf(err, errlen, "response field %s: missing", field);
	else
		snprintf(err, errlen, "response field %s: expected %s, got %s", field, want,
		    json_type_name(json_type(v)));
	return CERTA_EDECODE;
}

/* A non-negative integer that fits 32 bits. */
static int
oai_u32(const struct json_value *v, const char *field, uint32_t *out, char *err, size_t errlen)
{
	if (json_type(v) != JSON_NUMBER || !json_is_int(v) || json_int(v) < 0 ||
	    json_int(v) > (int64_t)UINT32_MAX)
		return oai_bad(err, errlen, field, "a non-negative integer", v);
	*out = (uint32_t)json_int(v);
	return 0;
}

/* Entropy estimate of one top_logprobs object: the top-k terms plus the rest of the mass as
 * one bucket (a lower bound of the full distribution's entropy). */
static int
oai_entropy(const struct json_value *top, size_t i, double *out, char *err, size_t errlen)
{
	char field[96];
	double h = 0, mass = 0, p;
	size_t j, n;

	if (json_type(top) == JSON_NULL) {
		*out = -1;
		return 0;
	}
	snprintf(field, sizeof field, "choices[0].logprobs.top_logprobs[%zu]", i);
	if (json_type(top) != JSON_OBJECT)
		return oai_bad(err, errlen, field, "an object or null", top);
	n = json_object_len(top);
	for (j = 0; j < n; j++) {
		const struct json_value *v = json_object_value_at(top, j);
		if (json_type(v) != JSON_NUMBER || json_number(v) > 1e-6) {
			snprintf(field, sizeof field, "choices[0].logprobs.top_logprobs[%zu].%s", i,
			    json_object_key_at(top, j, NULL));
			return oai_bad(err, errlen, field, "a log probability (number <= 0)", v);
		}
		p = exp(json_number(v));
		if (p > 0)
			h -= p * log(p);
		mass += p;
	}
	if (mass < 1 - 1e-9 && mass > 0)
		h -= (1 - mass) * log(1 - mass);
	*out = n > 0 ? h : -1;
	return 0;
}

/* choices[0].logprobs into c's arrays. */
static int
oai_parse_logprobs(const struct json_value *lp, struct oai_completion *c, char *err,
    size_t errlen)
{
	const struct json_value *toks, *lps, *top;
	char field[96];
	size_t i, n;
	int rc;

	if (lp == NULL || json_type(lp) == JSON_NULL)
		return 0;
	if (json_type(lp) != JSON_OBJECT)
		return oai_bad(err, errlen, "choices[0].logprobs", "an object or null", lp);
	toks = json_object_get(lp, "tokens");
	lps = json_object_get(lp, "token_logprobs");
	top = json_object_get(lp, "top_logprobs");
	if (json_type(toks) != JSON_ARRAY)
		return oai_bad(err, errlen, "choices[0].logprobs.tokens", "an array", toks);
	n = json_array_len(toks);
	if (json_type(lps) != JSON_ARRAY || json_array_len(lps) != n) {
		if (json_type(lps) == JSON_ARRAY) {
			snprintf(err, errlen, "response field choices[0].logprobs.token_logprobs: %zu "
			    "entries for %zu tokens", json_array_len(lps), n);
			return CERTA_EDECODE;
		}
		return oai_bad(err, errlen, "choices[0].logprobs.token_logprobs", "an array", lps);
	}
	if (top != NULL && json_type(top) != JSON_NULL &&
	    (json_type(top) != JSON_ARRAY || json_array_len(top) != n)) {
		if (json_type(top) == JSON_ARRAY) {
			snprintf(err, errlen, "response field choices[0].logprobs.top_logprobs: %zu "
			    "entries for %zu tokens", json_array_len(top), n);
			return CERTA_EDECODE;
		}
		return oai_bad(err, errlen, "choices[0].logprobs.top_logprobs", "an array or null",
		    top);
	}
	c->tok_len = calloc(n ? n : 1, sizeof *c->tok_len);
	c->tok_logprob = calloc(n ? n : 1, sizeof *c->tok_logprob);
	c->tok_entropy = calloc(n ? n : 1, sizeof *c->tok_entropy);
	if (c->tok_len == NULL || c->tok_logprob == NULL || c->tok_entropy == NULL)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		const struct json_value *t = json_array_at(toks, i), *l = json_array_at(lps, i);
		if (json_type(t) != JSON_STRING) {
			snprintf(field, sizeof field, "choices[0].logprobs.tokens[%zu]", i);
			return oai_bad(err, errlen, field, "a string", t);
		}
		(void)json_string(t, &c->tok_len[i]);
		if (json_type(l) != JSON_NUMBER || json_number(l) > 1e-6) {
			snprintf(field, sizeof field, "choices[0].logprobs.token_logprobs[%zu]", i);
			return oai_bad(err, errlen, field, "a log probability (number <= 0)", l);
		}
		c->tok_logprob[i] = json_number(l) > 0 ? 0 : json_number(l);
		c->tok_entropy[i] = -1;
		if (top != NULL && json_type(top) == JSON_ARRAY) {
			rc = oai_entropy(json_array_at(top, i), i, &c->tok_entropy[i], err, errlen);
			if (rc != 0)
				return rc;
		}
	}
	c->ntokens = n;
	return 0;
}

int
oai_parse_completion(const char *body, size_t len, struct oai_completion *out, char *err,
    size_t errlen)
{
	struct json_doc *doc = NULL;
	const struct json_value *root, *choices, *ch, *v, *usage;
	char jerr[128];
	size_t n;
	int rc;

	memset(out, 0, sizeof *out);
	rc = json_parse(body, len, &doc, jerr, sizeof jerr);
	if (rc == -ENOMEM)
		return rc;
	if (rc != 0) {
		snprintf(err, errlen, "response is not JSON: %s", jerr);
		return CERTA_EDECODE;
	}
	root = json_root(doc);
	if (json_type(root) != JSON_OBJECT) {
		rc = oai_bad(err, errlen, "(top level)", "an object", root);
		goto out;
	}
	choices = json_object_get(root, "choices");
	if (json_type(choices) != JSON_ARRAY || json_array_len(choices) == 0) {
		rc = json_type(choices) == JSON_ARRAY ?
		    (snprintf(err, errlen, "response field choices: empty array"), CERTA_EDECODE) :
		    oai_bad(err, errlen, "choices", "an array", choices);
		goto out;
	}
	ch = json_array_at(choices, 0);
	if (json_type(ch) != JSON_OBJECT) {
		rc = oai_bad(err, errlen, "choices[0]", "an object", ch);
		goto out;
	}
	v = json_object_get(ch, "text");
	if (json_type(v) != JSON_STRING) {
		rc = oai_bad(err, errlen, "choices[0].text", "a string", v);
		goto out;
	}
	if (json_string(v, &n), strlen(json_string(v, NULL)) != n) {
		snprintf(err, errlen, "response field choices[0].text: holds a NUL character");
		rc = CERTA_EDECODE;
		goto out;
	}
	out->text = strdup(json_string(v, NULL));
	v = json_object_get(ch, "finish_reason");
	if (v != NULL && json_type(v) != JSON_NULL && json_type(v) != JSON_STRING) {
		rc = oai_bad(err, errlen, "choices[0].finish_reason", "a string or null", v);
		goto out;
	}
	out->finish_reason = strdup(json_type(v) == JSON_STRING ? json_string(v, NULL) : "");
	if (out->text == NULL || out->finish_reason == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	usage = json_object_get(root, "usage");
	if (json_type(usage) != JSON_OBJECT) {
		rc = oai_bad(err, errlen, "usage", "an object", usage);
		goto out;
	}
	rc = oai_u32(json_object_get(usage, "completion_tokens"), "usage.completion_tokens",
	    &out->completion_tokens, err, errlen);
	if (rc != 0)
		goto out;
	v = json_object_get(usage, "prompt_tokens");
	if (v != NULL && (rc = oai_u32(v, "usage.prompt_tokens", &out->prompt_tokens, err,
	    errlen)) != 0)
		goto out;
	rc = oai_parse_logprobs(json_object_get(ch, "logprobs"), out, err, errlen);
out:
	json_free(doc);
	if (rc != 0)
		oai_completion_clear(out);
	return rc;
}

void
oai_error_message(const char *body, size_t len, char *msg, size_t msglen)
{
	struct json_doc *doc = NULL;
	const struct json_value *root, *e, *m = NULL;
	size_t i, o = 0;

	if (msglen == 0)
		return;
	msg[0] = '\0';
	if (json_parse(body, len, &doc, NULL, 0) == 0) {
		root = json_root(doc);
		e = json_object_get(root, "error");
		if (json_type(e) == JSON_OBJECT)
			m = json_object_get(e, "message");
		else if (json_type(e) == JSON_STRING)
			m = e;
		if (json_type(m) != JSON_STRING)
			m = json_object_get(root, "message");
		if (json_type(m) != JSON_STRING)
			m = json_object_get(root, "detail");
		if (json_type(m) == JSON_STRING) {
			snprintf(msg, msglen, "%s", json_string(m, NULL));
			json_free(doc);
			return;
		}
		json_free(doc);
	}
	/* Not the promised shape: the start of the body, printable. */
	for (i = 0; i < len && i < 200 && o + 1 < msglen; i++)
		msg[o++] = isprint((unsigned char)body[i]) ? body[i] : '.';
	msg[o] = '\0';
	if (o == 0)
		snprintf(msg, msglen, "(empty body)");
}

void
oai_probe_cut(const struct oai_completion *c, size_t *answer_len, uint32_t *ntok)
{
	const char *s = c->text;
	size_t pos, sum = 0, i;
	int depth = 1;
	bool closed = false;

	for (pos = 0; s[pos] != '\0'; pos++) {
		if (s[pos] == '{')
			depth++;
		else if (s[pos] == '}' && --depth == 0) {
			closed = true;
			break;
		}
	}
	*answer_len = pos;
	*ntok = c->completion_tokens;
	if (!closed || c->ntokens == 0)
		return;
	for (i = 0; i < c->ntokens; i++)
		sum += c->tok_len[i];
	if (sum != strlen(s))
		return;
	/* The token holding byte pos (the closing brace), counted. */
	for (sum = 0, i = 0; i < c->ntokens; i++) {
		sum += c->tok_len[i];
		if (sum > pos) {
			*ntok = (uint32_t)(i + 1);
			return;
		}
	}
}

void
oai_token_probs(const struct oai_completion *c, size_t n, double *mean, double *min)
{
	double sum = 0, mn = 1, p;
	size_t i;

	if (n > c->ntokens)
		n = c->ntokens;
	if (n == 0) {
		*mean = *min = -1;
		return;
	}
	for (i = 0; i < n; i++) {
		p = exp(c->tok_logprob[i]);
		sum += p;
		if (p < mn)
			mn = p;
	}
	*mean = sum / (double)n;
	*min = mn;
}

double
oai_mean_entropy(const struct oai_completion *c)
{
	double sum = 0;
	size_t i, n = 0;

	for (i = 0; i < c->ntokens; i++) {
		if (c->tok_entropy[i] >= 0) {
			sum += c->tok_entropy[i];
			n++;
		}
	}
	return n > 0 ? sum / (double)n : -1;
}

/* The number that ends right before text[at] (spaces skipped), or -1. */
static long long
oai_number_before(const char *text, size_t at)
{
	size_t e = at, b;

	while (e > 0 && text[e - 1] == ' ')
		e--;
	b = e;
	while (b > 0 && text[b - 1] >= '0' && text[b - 1] <= '9')
		b--;
	if (b == e || e - b > 12)
		return -1;
	return strtoll(text + b, NULL, 10);
}

int
oai_context_room(const char *msg, uint32_t *room)
{
	static const char *const input_marks[] = {
		" in the messages", " tokens from the input", " input tokens",
	};
	const char *p = strcasestr(msg, "maximum context length");
	long long max_ctx = -1, input = -1;
	size_t i;

	*room = 0;
	if (p == NULL)
		return 0;
	for (p += strlen("maximum context length"); *p != '\0' && (*p < '0' || *p > '9'); p++)
		;
	if (*p != '\0' && strspn(p, "0123456789") <= 12)
		max_ctx = strtoll(p, NULL, 10);
	for (i = 0; i < sizeof input_marks / sizeof input_marks[0] && input < 0; i++) {
		const char *m = strstr(msg, input_marks[i]);
		if (m != NULL)
			input = oai_number_before(msg, (size_t)(m - msg));
	}
	if (max_ctx > 0 && input >= 0 && input < max_ctx)
		*room = max_ctx - input > UINT32_MAX ? UINT32_MAX : (uint32_t)(max_ctx - input);
	return 1;
}

char *
oai_boxed(const char *text)
{
	const char *p = NULL, *q = text, *s;
	int depth = 1;

	while ((q = strstr(q, "\\boxed{")) != NULL) {
		p = q;
		q += 7;
	}
	if (p == NULL)
		return strdup("");
	for (s = p + 7; *s != '\0'; s++) {
		if (*s == '{')
			depth++;
		else if (*s == '}' && --depth == 0)
			break;
	}
	return strndup(p + 7, (size_t)(s - (p + 7)));
}
