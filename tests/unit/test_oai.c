/*
 * test_oai.c — workers/upstream/oai: the completions request body, the strict response
 * reader (every malformed field named), error bodies, the probe cut and the logprob features.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "lib/error.h"
#include "lib/json.h"
#include "workers/upstream/oai.h"

#define GOOD_LP \
	"\"logprobs\": {\"tokens\": [\"\\\\frac{1\", \"}{2}\", \"}\", \" \\\\]\"], " \
	"\"token_logprobs\": [-0.1, -0.2, 0, -3.0], " \
	"\"top_logprobs\": [{\"a\": -0.1, \"b\": -2.5}, null, {\"}\": 0}, {\"x\": -3.0}]}"

static const char good[] =
    "{\"id\": \"c\", \"object\": \"text_completion\", \"choices\": [{\"index\": 0, "
    "\"text\": \"\\\\frac{1}{2}} \\\\]\", \"finish_reason\": \"length\", " GOOD_LP "}], "
    "\"usage\": {\"prompt_tokens\": 12, \"completion_tokens\": 4, \"total_tokens\": 16}}";

static int
parse(const char *body, struct oai_completion *c, char *err, size_t errlen)
{
	err[0] = '\0';
	return oai_parse_completion(body, strlen(body), c, err, errlen);
}

static void
test_parse_good(void **state)
{
	struct oai_completion c;
	char err[256];
	size_t alen;
	uint32_t ntok;
	double mean, min;

	(void)state;
	assert_int_equal(parse(good, &c, err, sizeof err), 0);
	assert_string_equal(c.text, "\\frac{1}{2}} \\]");
	assert_string_equal(c.finish_reason, "length");
	assert_int_equal(c.completion_tokens, 4);
	assert_int_equal(c.prompt_tokens, 12);
	assert_int_equal(c.ntokens, 4);
	assert_int_equal(c.tok_len[0], 7);
	assert_true(c.tok_entropy[1] < 0);                  /* null alternatives */
	assert_true(fabs(c.tok_entropy[2]) < 1e-12);        /* p = 1: no entropy */
	/* Top-2 plus the rest as one bucket. */
	{
		double p1 = exp(-0.1), p2 = exp(-2.5), r = 1 - p1 - p2;
		assert_true(fabs(c.tok_entropy[0] - (-p1 * log(p1) - p2 * log(p2) -
		    r * log(r))) < 1e-9);
	}
	/* The answer closes at the third token's brace ("\frac{1" "}{2}" "}"). */
	oai_probe_cut(&c, &alen, &ntok);
	assert_int_equal(alen, strlen("\\frac{1}{2}"));
	assert_int_equal(ntok, 3);
	oai_token_probs(&c, ntok, &mean, &min);
	assert_true(fabs(mean - (exp(-0.1) + exp(-0.2) + 1) / 3) < 1e-12);
	assert_true(fabs(min - exp(-0.2)) < 1e-12);
	assert_true(oai_mean_entropy(&c) > 0);
	oai_completion_clear(&c);
}

/* No logprobs, a null finish_reason, no prompt_tokens: fine, statistics unknown. */
static void
test_parse_minimal(void **state)
{
	static const char body[] = "{\"choices\": [{\"text\": \"2}\", \"finish_reason\": null, "
	    "\"logprobs\": null}], \"usage\": {\"completion_tokens\": 2}}";
	struct oai_completion c;
	char err[256];
	size_t alen;
	uint32_t ntok;
	double mean, min;

	(void)state;
	assert_int_equal(parse(body, &c, err, sizeof err), 0);
	assert_string_equal(c.finish_reason, "");
	assert_int_equal(c.ntokens, 0);
	oai_probe_cut(&c, &alen, &ntok);
	assert_int_equal(alen, 1);
	assert_int_equal(ntok, 2);                          /* completion_tokens */
	oai_token_probs(&c, ntok, &mean, &min);
	assert_true(mean < 0 && min < 0);
	assert_true(oai_mean_entropy(&c) < 0);
	oai_completion_clear(&c);
}

/* Each malformed response: CERTA_EDECODE and a message naming the field. */
static void
test_parse_malformed(void **state)
{
	static const struct {
		const char *body;
		const char *says;
	} cases[] = {
		{ "{\"choices\": [", "response is not JSON: offset 13" },
		{ "", "response is not JSON" },
		{ "[1]", "response field (top level): expected an object, got array" },
		{ "{\"usage\": {\"completion_tokens\": 1}}", "response field choices: missing" },
		{ "{\"choices\": {}}", "response field choices: expected an array, got object" },
		{ "{\"choices\": []}", "response field choices: empty array" },
		{ "{\"choices\": [3]}", "response field choices[0]: expected an object, got number" },
		{ "{\"choices\": [{}]}", "response field choices[0].text: missing" },
		{ "{\"choices\": [{\"text\": null}]}",
		  "response field choices[0].text: expected a string, got null" },
		{ "{\"choices\": [{\"text\": \"a\\u0000b\"}]}",
		  "response field choices[0].text: holds a NUL character" },
		{ "{\"choices\": [{\"text\": \"a\", \"finish_reason\": 1}]}",
		  "response field choices[0].finish_reason: expected a string or null, got number" },
		{ "{\"choices\": [{\"text\": \"a\"}]}", "response field usage: missing" },
		{ "{\"choices\": [{\"text\": \"a\"}], \"usage\": []}",
		  "response field usage: expected an object, got array" },
		{ "{\"choices\": [{\"text\": \"a\"}], \"usage\": {}}",
		  "response field usage.completion_tokens: missing" },
		{ "{\"choices\": [{\"text\": \"a\"}], \"usage\": {\"completion_tokens\": -1}}",
		  "response field usage.completion_tokens: expected a non-negative integer, got "
		  "number" },
		{ "{\"choices\": [{\"text\": \"a\"}], \"usage\": {\"completion_tokens\": 1.5}}",
		  "usage.completion_tokens: expected a non-negative integer" },
		{ "{\"choices\": [{\"text\": \"a\"}], \"usage\": {\"completion_tokens\": \"1\"}}",
		  "usage.completion_tokens: expected a non-negative integer, got string" },
		{ "{\"choices\": [{\"text\": \"a\"}], \"usage\": {\"completion_tokens\": 1, "
		  "\"prompt_tokens\": true}}",
		  "response field usage.prompt_tokens: expected a non-negative integer, got true" },
		{ "{\"choices\": [{\"text\": \"a\", \"logprobs\": 1}], \"usage\": "
		  "{\"completion_tokens\": 1}}",
		  "response field choices[0].logprobs: expected an object or null, got number" },
		{ "{\"choices\": [{\"text\": \"a\", \"logprobs\": {}}], \"usage\": "
		  "{\"completion_tokens\": 1}}",
		  "response field choices[0].logprobs.tokens: missing" },
		{ "{\"choices\": [{\"text\": \"a\", \"logprobs\": {\"tokens\": [\"a\"]}}], "
		  "\"usage\": {\"completion_tokens\": 1}}",
		  "response field choices[0].logprobs.token_logprobs: missing" },
		{ "{\"choices\": [{\"text\": \"a\", \"logprobs\": {\"tokens\": [\"a\"], "
		  "\"token_logprobs\": []}}], \"usage\": {\"completion_tokens\": 1}}",
		  "response field choices[0].logprobs.token_logprobs: 0 entries for 1 tokens" },
		{ "{\"choices\": [{\"text\": \"a\", \"logprobs\": {\"tokens\": [1], "
		  "\"token_logprobs\": [0]}}], \"usage\": {\"completion_tokens\": 1}}",
		  "response field choices[0].logprobs.tokens[0]: expected a string, got number" },
		{ "{\"choices\": [{\"text\": \"a\", \"logprobs\": {\"tokens\": [\"a\"], "
		  "\"token_logprobs\": [0.5]}}], \"usage\": {\"completion_tokens\": 1}}",
		  "response field choices[0].logprobs.token_logprobs[0]: expected a log "
		  "probability (number <= 0), got number" },
		{ "{\"choices\": [{\"text\": \"a\", \"logprobs\": {\"tokens\": [\"a\"], "
		  "\"token_logprobs\": [null]}}], \"usage\": {\"completion_tokens\": 1}}",
		  "choices[0].logprobs.token_logprobs[0]: expected a log probability (number <= "
		  "0), got null" },
		{ "{\"choices\": [{\"text\": \"a\", \"logprobs\": {\"tokens\": [\"a\"], "
		  "\"token_logprobs\": [0], \"top_logprobs\": {}}}], \"usage\": "
		  "{\"completion_tokens\": 1}}",
		  "response field choices[0].logprobs.top_logprobs: expected an array or null, got "
		  "object" },
		{ "{\"choices\": [{\"text\": \"a\", \"logprobs\": {\"tokens\": [\"a\"], "
		  "\"token_logprobs\": [0], \"top_logprobs\": [{}, {}]}}], \"usage\": "
		  "{\"completion_tokens\": 1}}",
		  "response field choices[0].logprobs.top_logprobs: 2 entries for 1 tokens" },
		{ "{\"choices\": [{\"text\": \"a\", \"logprobs\": {\"tokens\": [\"a\"], "
		  "\"token_logprobs\": [0], \"top_logprobs\": [[]]}}], \"usage\": "
		  "{\"completion_tokens\": 1}}",
		  "response field choices[0].logprobs.top_logprobs[0]: expected an object or null, "
		  "got array" },
		{ "{\"choices\": [{\"text\": \"a\", \"logprobs\": {\"tokens\": [\"a\"], "
		  "\"token_logprobs\": [0], \"top_logprobs\": [{\"a\": \"x\"}]}}], \"usage\": "
		  "{\"completion_tokens\": 1}}",
		  "response field choices[0].logprobs.top_logprobs[0].a: expected a log "
		  "probability (number <= 0), got string" },
	};
	struct oai_completion c;
	char err[256];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		int rc = parse(cases[i].body, &c, err, sizeof err);
		if (rc != CERTA_EDECODE || strstr(err, cases[i].says) == NULL)
			fail_msg("case %zu %s: rc %d '%s', want '%s'", i, cases[i].body, rc, err,
			    cases[i].says);
		/* Nothing is left allocated on failure. */
		assert_null(c.text);
		assert_null(c.tok_len);
	}
}

static void
test_error_message(void **state)
{
	static const struct {
		const char *body;
		const char *msg;
	} cases[] = {
		{ "{\"error\": {\"message\": \"model not found\", \"code\": 404}}", "model not found" },
		{ "{\"error\": \"rate limited\"}", "rate limited" },
		{ "{\"object\": \"error\", \"message\": \"This model's maximum context length is 4096 "
		  "tokens\"}", "This model's maximum context length is 4096 tokens" },
		{ "{\"detail\": \"Not Found\"}", "Not Found" },
		{ "<html>\n<h1>502 Bad Gateway</h1>", "<html>.<h1>502 Bad Gateway</h1>" },
		{ "", "(empty body)" },
	};
	char msg[128];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		oai_error_message(cases[i].body, strlen(cases[i].body), msg, sizeof msg);
		assert_string_equal(msg, cases[i].msg);
	}
}

/* Context-length refusals of vLLM (two wordings) and SGLang, and messages that are not. */
static void
test_context_room(void **state)
{
	static const struct {
		const char *msg;
		int is;
		uint32_t room;
	} cases[] = {
		{ "This model's maximum context length is 4096 tokens. However, you requested 4200 "
		  "tokens (4100 in the messages, 100 in the completion). Please reduce the length of "
		  "the messages or completion.", 1, 0 },
		{ "This model's maximum context length is 4096 tokens. However, you requested 4200 "
		  "tokens (4000 in the messages, 200 in the completion).", 1, 96 },
		{ "This model's maximum context length is 32768 tokens. However, your request has "
		  "32000 input tokens. Please reduce the length of the input messages.", 1, 768 },
		{ "Requested token count exceeds the model's maximum context length of 8192 tokens. "
		  "You requested a total of 8300 tokens: 8000 tokens from the input messages and 300 "
		  "tokens for the completion. Please reduce the number of tokens in the input "
		  "messages or the completion to fit within the limit.", 1, 192 },
		{ "Maximum context length exceeded", 1, 0 },
		{ "max_tokens must be at least 1, got 0.", 0, 0 },
		{ "The model `x` does not exist.", 0, 0 },
		{ "", 0, 0 },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		uint32_t room = 12345;
		int is = oai_context_room(cases[i].msg, &room);
		if (is != cases[i].is || room != cases[i].room)
			fail_msg("case %zu: %d room %u, want %d room %u", i, is, room, cases[i].is,
			    cases[i].room);
	}
}

static void
test_request_body(void **state)
{
	struct oai_request r = { .model = "Qwen/QwQ-32B", .prompt = "a \"quoted\"\nprompt",
	    .max_tokens = 64, .temperature = 0.6, .top_p = 0.95, .seed = 7, .logprobs = 5 };
	struct json_doc *doc;
	const struct json_value *root;
	char *body;
	size_t len;

	(void)state;
	assert_int_equal(oai_request_body(&r, &body, &len), 0);
	assert_int_equal(strlen(body), len);
	assert_int_equal(json_parse(body, len, &doc, NULL, 0), 0);
	root = json_root(doc);
	assert_string_equal(json_string(json_object_get(root, "model"), NULL), "Qwen/QwQ-32B");
	assert_string_equal(json_string(json_object_get(root, "prompt"), NULL),
	    "a \"quoted\"\nprompt");
	assert_int_equal(json_int(json_object_get(root, "max_tokens")), 64);
	assert_int_equal(json_int(json_object_get(root, "seed")), 7);
	assert_int_equal(json_int(json_object_get(root, "logprobs")), 5);
	assert_true(fabs(json_number(json_object_get(root, "top_p")) - 0.95) < 1e-6);
	assert_int_equal(json_type(json_object_get(root, "stream")), JSON_FALSE);
	json_free(doc);
	free(body);
	/* top_p 1 (or 0) is not sent; a greedy probe. */
	r.top_p = 1;
	r.temperature = 0;
	assert_int_equal(oai_request_body(&r, &body, &len), 0);
	assert_null(strstr(body, "top_p"));
	assert_non_null(strstr(body, "\"temperature\":0"));
	free(body);
}

static void
test_probe_cut(void **state)
{
	static const struct {
		const char *text;
		const char *answer;
	} cases[] = {
		{ "42}", "42" },
		{ "\\frac{1}{2}} \\]", "\\frac{1}{2}" },
		{ "(3,\\frac{\\pi}{2})}", "(3,\\frac{\\pi}{2})" },
		{ "\\text{Evelyn", "\\text{Evelyn" },      /* never closes: all of it */
		{ "}", "" },
	};
	struct oai_completion c;
	size_t i, alen;
	uint32_t ntok;

	(void)state;
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		memset(&c, 0, sizeof c);
		c.text = (char *)cases[i].text;
		c.completion_tokens = 9;
		oai_probe_cut(&c, &alen, &ntok);
		assert_int_equal(alen, strlen(cases[i].answer));
		assert_memory_equal(c.text, cases[i].answer, alen);
		assert_int_equal(ntok, 9);
	}
	/* The last \boxed{} of a text, nested braces counted. */
	{
		char *b = oai_boxed("\\boxed{1} then \\boxed{\\frac{a}{b}} end");
		assert_string_equal(b, "\\frac{a}{b}");
		free(b);
		b = oai_boxed("no box");
		assert_string_equal(b, "");
		free(b);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_good),
		cmocka_unit_test(test_parse_minimal),
		cmocka_unit_test(test_parse_malformed),
		cmocka_unit_test(test_error_message),
		cmocka_unit_test(test_context_room),
		cmocka_unit_test(test_request_body),
		cmocka_unit_test(test_probe_cut),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
