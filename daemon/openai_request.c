/* openai_request.c — OpenAI request bodies into program specs: strict types, named params. */
#include "daemon/openai_request.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/array.h"
#include "lib/error.h"
#include "lib/json.h"

/* A growing text (the problem being assembled). */
struct oreq_buf {
	char *s;
	size_t len, cap;
};

static int
oreq_buf_add(struct oreq_buf *b, const char *s, size_t n)
{
	if (ARRAY_GROW(b->s, b->cap, b->len + n + 1) != 0)
		return -ENOMEM;
	memcpy(b->s + b->len, s, n);
	b->len += n;
	b->s[b->len] = '\0';
	return 0;
}

static int oreq_fail(struct openai_request_error *err, const char *param, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Fills err and returns CERTA_EINVAL. */
static int
oreq_fail(struct openai_request_error *err, const char *param, const char *fmt, ...)
{
	va_list ap;

	snprintf(err->param, sizeof err->param, "%s", param);
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof err->message, fmt, ap);
	va_end(ap);
	return CERTA_EINVAL;
}

/* A member that is absent or JSON null counts as not given (OpenAI clients send null). */
static const struct json_value *
oreq_get(const struct json_value *obj, const char *key)
{
	const struct json_value *v = json_object_get(obj, key);

	return json_type(v) == JSON_NULL ? NULL : v;
}

static int
oreq_string(const struct json_value *v, const char *param, const char **out, size_t *len,
    struct openai_request_error *err)
{
	const char *s = json_string(v, len);

	if (s == NULL)
		return oreq_fail(err, param, "%s must be a string, not %s", param,
		    json_type_name(json_type(v)));
	if (strlen(s) != *len)
		return oreq_fail(err, param, "%s holds a NUL character", param);
	*out = s;
	return 0;
}

static int
oreq_number(const struct json_value *v, const char *param, double lo, double hi, double *out,
    struct openai_request_error *err)
{
	double d;

	if (json_type(v) != JSON_NUMBER)
		return oreq_fail(err, param, "%s must be a number, not %s", param,
		    json_type_name(json_type(v)));
	d = json_number(v);
	if (!(d >= lo && d <= hi))
		return oreq_fail(err, param, "%s is %g; allowed range is [%g, %g]", param, d, lo, hi);
	*out = d;
	return 0;
}

static int
oreq_int(const struct json_value *v, const char *param, int64_t lo, int64_t hi, int64_t *out,
    struct openai_request_error *err)
{
	int64_t i;

	if (json_type(v) != JSON_NUMBER || !json_is_int(v))
		return oreq_fail(err, param, "%s must be an integer, not %s", param,
		    json_type(v) == JSON_NUMBER ? "a fraction" : json_type_name(json_type(v)));
	i = json_int(v);
	if (i < lo || i > hi)
		return oreq_fail(err, param, "%s is %lld; allowed range is [%lld, %lld]", param,
		    (long long)i, (long long)lo, (long long)hi);
	*out = i;
	return 0;
}

static int
oreq_bool(const struct json_value *v, const char *param, bool *out,
    struct openai_request_error *err)
{
	if (json_type(v) != JSON_TRUE && json_type(v) != JSON_FALSE)
		return oreq_fail(err, param, "%s must be a boolean, not %s", param,
		    json_type_name(json_type(v)));
	*out = json_type(v) == JSON_TRUE;
	return 0;
}

/* One message's content: a string, or text parts.  Appended to b. */
static int
oreq_content(const struct json_value *c, const char *param, struct oreq_buf *b,
    struct openai_request_error *err)
{
	char sub[160];
	const char *s;
	size_t i, len;
	int rc;

	if (json_type(c) == JSON_STRING) {
		if ((rc = oreq_string(c, param, &s, &len, err)) != 0)
			return rc;
		return oreq_buf_add(b, s, len);
	}
	if (json_type(c) != JSON_ARRAY)
		return oreq_fail(err, param, "%s must be a string or an array of text parts, not %s",
		    param, json_type_name(json_type(c)));
	for (i = 0; i < json_array_len(c); i++) {
		const struct json_value *part = json_array_at(c, i);
		const char *type;
		snprintf(sub, sizeof sub, "%s[%zu].type", param, i);
		if (json_type(part) != JSON_OBJECT)
			return oreq_fail(err, sub, "%s[%zu] must be an object", param, i);
		if ((rc = oreq_string(json_object_get(part, "type"), sub, &type, &len, err)) != 0)
			return rc;
		if (strcmp(type, "text") != 0)
			return oreq_fail(err, sub, "%s is '%s'; certa takes text parts only", sub, type);
		snprintf(sub, sizeof sub, "%s[%zu].text", param, i);
		if ((rc = oreq_string(json_object_get(part, "text"), sub, &s, &len, err)) != 0 ||
		    (rc = oreq_buf_add(b, s, len)) != 0)
			return rc;
	}
	return 0;
}

/* Roles and what becomes of their text (docs/http-api.md). */
static const struct {
	const char *role;
	bool kept;          /* joined into the problem; false: refused */
	bool user;
} oreq_roles[] = {
	{ "system", true, false },
	{ "developer", true, false },
	{ "user", true, true },
	{ "assistant", false, false },
	{ "tool", false, false },
	{ "function", false, false },
};

/* messages -> problem. */
static int
oreq_messages(const struct json_value *msgs, struct oreq_buf *b,
    struct openai_request_error *err)
{
	char param[96];
	const char *role;
	size_t i, j, len, users = 0;
	int rc;

	if (msgs == NULL)
		return oreq_fail(err, "messages", "messages is required");
	if (json_type(msgs) != JSON_ARRAY)
		return oreq_fail(err, "messages", "messages must be an array, not %s",
		    json_type_name(json_type(msgs)));
	for (i = 0; i < json_array_len(msgs); i++) {
		const struct json_value *m = json_array_at(msgs, i);
		if (json_type(m) != JSON_OBJECT)
			return oreq_fail(err, "messages", "messages[%zu] must be an object", i);
		snprintf(param, sizeof param, "messages[%zu].role", i);
		if ((rc = oreq_string(json_object_get(m, "role"), param, &role, &len, err)) != 0)
			return rc;
		for (j = 0; j < sizeof oreq_roles / sizeof oreq_roles[0]; j++)
			if (strcmp(oreq_roles[j].role, role) == 0)
				break;
		if (j == sizeof oreq_roles / sizeof oreq_roles[0])
			return oreq_fail(err, param, "%s '%s' is not one of system, developer, user",
			    param, role);
		if (!oreq_roles[j].kept)
			return oreq_fail(err, param, "%s '%s': certa answers one question per "
			    "program; send the system/developer and user messages only", param, role);
		users += oreq_roles[j].user;
		if (b->len > 0 && (rc = oreq_buf_add(b, "\n\n", 2)) != 0)
			return rc;
		snprintf(param, sizeof param, "messages[%zu].content", i);
		if ((rc = oreq_content(oreq_get(m, "content"), param, b, err)) != 0)
			return rc;
	}
	if (users == 0)
		return oreq_fail(err, "messages", "messages needs at least one user message");
	return 0;
}

/* prompt -> problem (completions). */
static int
oreq_prompt(const struct json_value *p, struct oreq_buf *b, struct openai_request_error *err)
{
	const char *s;
	size_t len;
	int rc;

	if (p == NULL)
		return oreq_fail(err, "prompt", "prompt is required");
	if (json_type(p) == JSON_ARRAY) {
		if (json_array_len(p) != 1)
			return oreq_fail(err, "prompt", "prompt: certa takes one prompt per request, "
			    "not an array of %zu", json_array_len(p));
		p = json_array_at(p, 0);
	}
	if ((rc = oreq_string(p, "prompt", &s, &len, err)) != 0)
		return rc;
	return oreq_buf_add(b, s, len);
}

/* Parameters certa cannot honour: refused unless absent, null, or their default. */
static const struct {
	const char *name;
	enum json_type ok_type;   /* this type is the default when ... */
	const char *ok_string;    /* ... it is this string (JSON_STRING) */
} oreq_unsupported[] = {
	{ "tools", JSON_ARRAY, NULL },          /* an empty array is fine */
	{ "functions", JSON_ARRAY, NULL },
	{ "tool_choice", JSON_STRING, "none" },
	{ "logprobs", JSON_FALSE, NULL },
	{ "top_logprobs", JSON_NONE, NULL },
	{ "stop", JSON_NONE, NULL },
	{ "logit_bias", JSON_OBJECT, NULL },    /* an empty object is fine */
	{ "presence_penalty", JSON_NUMBER, NULL },  /* 0 is fine */
	{ "frequency_penalty", JSON_NUMBER, NULL },
	{ "echo", JSON_FALSE, NULL },
	{ "best_of", JSON_NUMBER, NULL },       /* 1 is fine */
	{ "suffix", JSON_NONE, NULL },
};

static int
oreq_check_unsupported(const struct json_value *root, struct openai_request_error *err)
{
	size_t i;

	for (i = 0; i < sizeof oreq_unsupported / sizeof oreq_unsupported[0]; i++) {
		const char *name = oreq_unsupported[i].name;
		const struct json_value *v = oreq_get(root, name);
		enum json_type t = json_type(v);
		bool fine;

		if (v == NULL)
			continue;
		switch (oreq_unsupported[i].ok_type) {
		case JSON_ARRAY:
			fine = t == JSON_ARRAY && json_array_len(v) == 0;
			break;
		case JSON_OBJECT:
			fine = t == JSON_OBJECT && json_object_len(v) == 0;
			break;
		case JSON_STRING:
			fine = t == JSON_STRING &&
			    strcmp(json_string(v, NULL), oreq_unsupported[i].ok_string) == 0;
			break;
		case JSON_FALSE:
			fine = t == JSON_FALSE;
			break;
		case JSON_NUMBER:
			fine = t == JSON_NUMBER &&
			    json_number(v) == (strcmp(name, "best_of") == 0 ? 1.0 : 0.0);
			break;
		default:
			fine = false;
			break;
		}
		if (!fine)
			return oreq_fail(err, name, "%s is not supported by certa (leave it out)", name);
	}
	{
		const struct json_value *rf = oreq_get(root, "response_format");
		const char *t;
		if (rf != NULL && ((t = json_string(json_object_get(rf, "type"), NULL)) == NULL ||
		    strcmp(t, "text") != 0))
			return oreq_fail(err, "response_format", "response_format: certa answers "
			    "text only");
	}
	return 0;
}

/* Names of certa.priority, by certa.v1.Priority number. */
static const char *const oreq_priorities[] = { NULL, "low", "normal", "high" };

/* The "certa" object: certa's own knobs. */
static int
oreq_certa(const struct json_value *ce, struct openai_request *r,
    struct openai_request_error *err)
{
	const struct json_value *v;
	const char *s;
	size_t len, i;
	int64_t n;
	int rc;

	if (ce == NULL)
		return 0;
	if (json_type(ce) != JSON_OBJECT)
		return oreq_fail(err, "certa", "certa must be an object, not %s",
		    json_type_name(json_type(ce)));
	for (i = 0; i < json_object_len(ce); i++) {
		static const char *const known[] = { "algorithm", "n", "priority", "deadline_s",
		    "idempotency_key" };
		const char *k = json_object_key_at(ce, i, NULL);
		size_t j;
		for (j = 0; j < sizeof known / sizeof known[0]; j++)
			if (strcmp(k, known[j]) == 0)
				break;
		if (j == sizeof known / sizeof known[0])
			return oreq_fail(err, "certa", "certa.%s is not a certa option (algorithm, n, "
			    "priority, deadline_s, idempotency_key)", k);
	}
	if ((v = oreq_get(ce, "algorithm")) != NULL) {
		if ((rc = oreq_string(v, "certa.algorithm", &s, &len, err)) != 0)
			return rc;
		if (strcmp(s, "cot") == 0)
			r->algorithm = SUBMIT_ALGO_COT;
		else if (strcmp(s, "sc") == 0)
			r->algorithm = SUBMIT_ALGO_SC;
		else
			return oreq_fail(err, "certa.algorithm", "certa.algorithm '%s' is not one of "
			    "cot, sc", s);
	}
	if ((v = oreq_get(ce, "n")) != NULL) {
		if ((rc = oreq_int(v, "certa.n", 1, OPENAI_REQUEST_MAX_N, &n, err)) != 0)
			return rc;
		if (r->n_given && r->n != (uint32_t)n)
			return oreq_fail(err, "certa.n", "certa.n (%lld) and n (%u) disagree",
			    (long long)n, r->n);
		r->n = (uint32_t)n;
		r->n_given = true;
	}
	if ((v = oreq_get(ce, "priority")) != NULL) {
		if ((rc = oreq_string(v, "certa.priority", &s, &len, err)) != 0)
			return rc;
		for (i = 1; i < sizeof oreq_priorities / sizeof oreq_priorities[0]; i++)
			if (strcmp(s, oreq_priorities[i]) == 0)
				break;
		if (i == sizeof oreq_priorities / sizeof oreq_priorities[0])
			return oreq_fail(err, "certa.priority", "certa.priority '%s' is not one of "
			    "low, normal, high", s);
		r->priority = (int)i;
	}
	if ((v = oreq_get(ce, "deadline_s")) != NULL) {
		if ((rc = oreq_number(v, "certa.deadline_s", 0, 31536000, &r->deadline_s, err)) != 0)
			return rc;
		if (r->deadline_s <= 0)
			return oreq_fail(err, "certa.deadline_s", "certa.deadline_s must be > 0");
	}
	if ((v = oreq_get(ce, "idempotency_key")) != NULL) {
		if ((rc = oreq_string(v, "certa.idempotency_key", &s, &len, err)) != 0)
			return rc;
		if (len > 128)
			return oreq_fail(err, "certa.idempotency_key", "certa.idempotency_key is %zu "
			    "bytes; the limit is 128", len);
		free(r->idempotency_key);
		if ((r->idempotency_key = strdup(s)) == NULL)
			return -ENOMEM;
	}
	return 0;
}

/* The OpenAI sampling and size parameters. */
static int
oreq_params(const struct json_value *root, struct openai_request *r,
    struct openai_request_error *err)
{
	const struct json_value *v, *mt, *mct;
	double d;
	int64_t i;
	int rc;

	if ((v = oreq_get(root, "stream")) != NULL && (rc = oreq_bool(v, "stream", &r->stream,
	    err)) != 0)
		return rc;
	if ((v = oreq_get(root, "stream_options")) != NULL) {
		const struct json_value *iu;
		if (json_type(v) != JSON_OBJECT)
			return oreq_fail(err, "stream_options", "stream_options must be an object");
		if ((iu = oreq_get(v, "include_usage")) != NULL &&
		    (rc = oreq_bool(iu, "stream_options.include_usage", &r->include_usage, err)) != 0)
			return rc;
	}
	if ((v = oreq_get(root, "n")) != NULL) {
		if ((rc = oreq_int(v, "n", 1, OPENAI_REQUEST_MAX_N, &i, err)) != 0)
			return rc;
		r->n = (uint32_t)i;
		r->n_given = true;
	}
	mt = oreq_get(root, "max_tokens");
	mct = oreq_get(root, "max_completion_tokens");
	if (mt != NULL && (rc = oreq_int(mt, "max_tokens", 1, INT64_C(1) << 40, &i, err)) != 0)
		return rc;
	if (mt != NULL)
		r->max_tokens = (uint64_t)i;
	if (mct != NULL) {
		if ((rc = oreq_int(mct, "max_completion_tokens", 1, INT64_C(1) << 40, &i, err)) != 0)
			return rc;
		if (mt != NULL && r->max_tokens != (uint64_t)i)
			return oreq_fail(err, "max_completion_tokens", "max_completion_tokens (%lld) "
			    "and max_tokens (%llu) disagree", (long long)i,
			    (unsigned long long)r->max_tokens);
		r->max_tokens = (uint64_t)i;
	}
	if ((v = oreq_get(root, "temperature")) != NULL) {
		if ((rc = oreq_number(v, "temperature", 0, 2, &d, err)) != 0)
			return rc;
		r->has_temperature = true;
		r->temperature = (float)d;
	}
	if ((v = oreq_get(root, "top_p")) != NULL) {
		if ((rc = oreq_number(v, "top_p", 0, 1, &d, err)) != 0)
			return rc;
		r->has_top_p = true;
		r->top_p = (float)d;
	}
	if ((v = oreq_get(root, "seed")) != NULL) {
		if ((rc = oreq_int(v, "seed", INT64_MIN, INT64_MAX, &r->seed, err)) != 0)
			return rc;
		r->has_seed = true;
	}
	return 0;
}

int
openai_request_parse(enum openai_request_kind kind, const char *body, size_t len,
    struct openai_request *r, struct openai_request_error *err)
{
	struct oreq_buf b = { NULL, 0, 0 };
	struct json_doc *doc = NULL;
	const struct json_value *root, *v;
	const char *s;
	size_t slen;
	char jerr[160];
	int rc;

	memset(r, 0, sizeof *r);
	memset(err, 0, sizeof *err);
	r->kind = kind;
	r->n = 1;
	rc = json_parse(body, len, &doc, jerr, sizeof jerr);
	if (rc == -ENOMEM)
		return rc;
	if (rc != 0)
		return oreq_fail(err, "", "the body is not valid JSON (%s)", jerr);
	root = json_root(doc);
	rc = CERTA_EINVAL;
	if (json_type(root) != JSON_OBJECT) {
		oreq_fail(err, "", "the body must be a JSON object, not %s",
		    json_type_name(json_type(root)));
		goto out_doc;
	}
	if ((v = json_object_get(root, "model")) == NULL) {
		oreq_fail(err, "model", "model is required (GET /v1/models lists them)");
		goto out_doc;
	}
	if ((rc = oreq_string(v, "model", &s, &slen, err)) != 0)
		goto out_doc;
	if ((r->model = strdup(s)) == NULL || (r->idempotency_key = strdup("")) == NULL) {
		rc = -ENOMEM;
		goto out_doc;
	}
	if ((rc = oreq_check_unsupported(root, err)) != 0 ||
	    (rc = oreq_params(root, r, err)) != 0 ||
	    (rc = oreq_certa(oreq_get(root, "certa"), r, err)) != 0)
		goto out_doc;
	rc = kind == OPENAI_REQUEST_CHAT ? oreq_messages(oreq_get(root, "messages"), &b, err) :
	    oreq_prompt(oreq_get(root, "prompt"), &b, err);
	if (rc != 0)
		goto out_buf;
	if (b.len == 0) {
		rc = oreq_fail(err, kind == OPENAI_REQUEST_CHAT ? "messages" : "prompt",
		    "the %s hold no text", kind == OPENAI_REQUEST_CHAT ? "messages" : "prompt");
		goto out_buf;
	}
	r->problem = b.s;
	json_free(doc);
	return 0;
out_buf:
	free(b.s);
out_doc:
	json_free(doc);
	return rc;
}

void
openai_request_clear(struct openai_request *r)
{
	free(r->problem);
	free(r->model);
	free(r->idempotency_key);
	memset(r, 0, sizeof *r);
}

void
openai_request_spec(const struct openai_request *r, int64_t now_ms, struct submit_spec *spec)
{
	memset(spec, 0, sizeof *spec);
	spec->problem = r->problem;
	spec->model = r->model != NULL ? r->model : "";
	spec->policy = "";
	spec->idempotency_key = r->idempotency_key != NULL ? r->idempotency_key : "";
	spec->algorithm = r->algorithm;
	/* n > 1 is sc by submit's rule for UNSPECIFIED; an explicit cot with n > 1 is refused
	 * there, naming n.  Not given: the policy's default (1 for cot, default_sc_n for sc). */
	spec->n = r->n_given ? r->n : 0;
	spec->token_budget = r->max_tokens * (r->n_given ? r->n : 1);
	spec->priority = r->priority;
	spec->seed = r->has_seed ? (uint64_t)r->seed : 0;
	if (r->deadline_s > 0)
		spec->deadline_unix_ms = now_ms + (int64_t)ceil(r->deadline_s * 1000.0);
	if (r->has_temperature || r->has_top_p) {
		spec->has_sampling = true;
		spec->temperature = r->has_temperature ? r->temperature : 0;
		spec->top_p = r->has_top_p ? r->top_p : 0;
	}
}

/* Submit's field names (daemon/submit.c messages) and the request parameter each comes from. */
static const struct {
	const char *prefix;
	const char *param;
} oreq_params_of[] = {
	{ "program.problem", "messages" },
	{ "program.n", "n" },
	{ "program.token_budget", "max_tokens" },
	{ "program.model", "model" },
	{ "program.priority", "certa.priority" },
	{ "program.deadline_unix_ms", "certa.deadline_s" },
	{ "program.idempotency_key", "certa.idempotency_key" },
	{ "program.algorithm", "certa.algorithm" },
	{ "quota max_sc_n", "n" },
	{ "quota max_budget_per_program", "max_tokens" },
	{ "quota max_prompt_bytes", "messages" },
};

const char *
openai_request_param_of(const char *msg)
{
	size_t i;

	for (i = 0; i < sizeof oreq_params_of / sizeof oreq_params_of[0]; i++) {
		size_t n = strlen(oreq_params_of[i].prefix);
		if (strncmp(msg, oreq_params_of[i].prefix, n) == 0 &&
		    (msg[n] == ' ' || msg[n] == ':' || msg[n] == '\0'))
			return oreq_params_of[i].param;
	}
	return "";
}
