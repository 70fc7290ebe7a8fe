/* test_openai_request.c — OpenAI request bodies into program specs: the problem text, the
 * parameters, and the 400s that name the parameter. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "daemon/openai_request.h"
#include "lib/error.h"

#define M "\"model\":\"m\""
#define USER "\"messages\":[{\"role\":\"user\",\"content\":\"q\"}]"

/* Parses a chat body that must be accepted. */
static void
parse_ok(enum openai_request_kind kind, const char *body, struct openai_request *r)
{
	struct openai_request_error err;
	int rc = openai_request_parse(kind, body, strlen(body), r, &err);

	if (rc != 0)
		fail_msg("refused %s: [%s] %s", body, err.param, err.message);
}

/* The problem is the system/developer and user texts in order, joined by a blank line. */
static void
test_messages_to_problem(void **state)
{
	static const struct {
		const char *messages;
		const char *problem;
	} cases[] = {
		{ "[{\"role\":\"user\",\"content\":\"What is 2+2?\"}]", "What is 2+2?" },
		{ "[{\"role\":\"system\",\"content\":\"Put the answer in \\\\boxed{}.\"},"
		  "{\"role\":\"user\",\"content\":\"What is 2+2?\"}]",
		  "Put the answer in \\boxed{}.\n\nWhat is 2+2?" },
		{ "[{\"role\":\"developer\",\"content\":\"Be brief.\"},"
		  "{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"user\",\"content\":\"b\"}]",
		  "Be brief.\n\na\n\nb" },
		{ "[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"x = 1. \"},"
		  "{\"type\":\"text\",\"text\":\"Find x.\"}]}]", "x = 1. Find x." },
		{ "[{\"role\":\"user\",\"name\":\"ann\",\"content\":\"\\u00e9t\\u00e9\"}]",
		  "\xc3\xa9t\xc3\xa9" },
	};
	struct openai_request r;
	char body[1024];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		snprintf(body, sizeof body, "{" M ",\"messages\":%s}", cases[i].messages);
		parse_ok(OPENAI_REQUEST_CHAT, body, &r);
		assert_string_equal(r.problem, cases[i].problem);
		assert_string_equal(r.model, "m");
		assert_false(r.stream);
		assert_int_equal(r.n, 1);
		openai_request_clear(&r);
	}
}

/* Bodies refused with 400, and the parameter each names. */
static void
test_refused_params(void **state)
{
	static const struct {
		const char *body;
		const char *param;
	} cases[] = {
		{ "not json", "" },
		{ "[1]", "" },
		{ "{" USER "}", "model" },
		{ "{\"model\":5," USER "}", "model" },
		{ "{" M "}", "messages" },
		{ "{" M ",\"messages\":{}}", "messages" },
		{ "{" M ",\"messages\":[]}", "messages" },
		{ "{" M ",\"messages\":[{\"role\":\"system\",\"content\":\"s\"}]}", "messages" },
		{ "{" M ",\"messages\":[{\"role\":\"user\",\"content\":\"q\"},"
		  "{\"role\":\"assistant\",\"content\":\"a\"}]}", "messages[1].role" },
		{ "{" M ",\"messages\":[{\"role\":\"wizard\",\"content\":\"q\"}]}", "messages[0].role" },
		{ "{" M ",\"messages\":[{\"content\":\"q\"}]}", "messages[0].role" },
		{ "{" M ",\"messages\":[{\"role\":\"user\",\"content\":7}]}", "messages[0].content" },
		{ "{" M ",\"messages\":[{\"role\":\"user\"}]}", "messages[0].content" },
		{ "{" M ",\"messages\":[{\"role\":\"user\",\"content\":\"a\\u0000b\"}]}",
		  "messages[0].content" },
		{ "{" M ",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}",
		  "messages[0].content[0].type" },
		{ "{" M ",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\"}]}]}",
		  "messages[0].content[0].text" },
		{ "{" M "," USER ",\"temperature\":\"hot\"}", "temperature" },
		{ "{" M "," USER ",\"temperature\":2.5}", "temperature" },
		{ "{" M "," USER ",\"temperature\":-1}", "temperature" },
		{ "{" M "," USER ",\"top_p\":1.5}", "top_p" },
		{ "{" M "," USER ",\"n\":0}", "n" },
		{ "{" M "," USER ",\"n\":2.5}", "n" },
		{ "{" M "," USER ",\"n\":\"3\"}", "n" },
		{ "{" M "," USER ",\"n\":1000}", "n" },
		{ "{" M "," USER ",\"max_tokens\":0}", "max_tokens" },
		{ "{" M "," USER ",\"max_tokens\":-5}", "max_tokens" },
		{ "{" M "," USER ",\"max_tokens\":10,\"max_completion_tokens\":20}",
		  "max_completion_tokens" },
		{ "{" M "," USER ",\"stream\":\"yes\"}", "stream" },
		{ "{" M "," USER ",\"stream_options\":{\"include_usage\":1}}",
		  "stream_options.include_usage" },
		{ "{" M "," USER ",\"seed\":1.5}", "seed" },
		{ "{" M "," USER ",\"tools\":[{\"type\":\"function\"}]}", "tools" },
		{ "{" M "," USER ",\"logprobs\":true}", "logprobs" },
		{ "{" M "," USER ",\"stop\":\"\\n\"}", "stop" },
		{ "{" M "," USER ",\"presence_penalty\":0.5}", "presence_penalty" },
		{ "{" M "," USER ",\"response_format\":{\"type\":\"json_object\"}}",
		  "response_format" },
		{ "{" M "," USER ",\"certa\":[]}", "certa" },
		{ "{" M "," USER ",\"certa\":{\"algo\":\"sc\"}}", "certa" },
		{ "{" M "," USER ",\"certa\":{\"algorithm\":\"beam\"}}", "certa.algorithm" },
		{ "{" M "," USER ",\"certa\":{\"algorithm\":2}}", "certa.algorithm" },
		{ "{" M "," USER ",\"certa\":{\"priority\":\"urgent\"}}", "certa.priority" },
		{ "{" M "," USER ",\"certa\":{\"deadline_s\":0}}", "certa.deadline_s" },
		{ "{" M "," USER ",\"certa\":{\"deadline_s\":\"30\"}}", "certa.deadline_s" },
		{ "{" M "," USER ",\"n\":2,\"certa\":{\"n\":3}}", "certa.n" },
		{ "{" M "," USER ",\"certa\":{\"idempotency_key\":7}}", "certa.idempotency_key" },
	};
	struct openai_request r;
	struct openai_request_error err;
	size_t i;
	int rc;

	(void)state;
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		rc = openai_request_parse(OPENAI_REQUEST_CHAT, cases[i].body, strlen(cases[i].body),
		    &r, &err);
		if (rc != CERTA_EINVAL)
			fail_msg("accepted (%d): %s", rc, cases[i].body);
		if (strcmp(err.param, cases[i].param) != 0)
			fail_msg("%s: param '%s', want '%s' (%s)", cases[i].body, err.param,
			    cases[i].param, err.message);
		assert_true(err.message[0] != '\0');
		openai_request_clear(&r);
	}
}

/* Defaults, nulls and the values that are fine. */
static void
test_accepted_params(void **state)
{
	static const char *const bodies[] = {
		"{" M "," USER ",\"temperature\":null,\"n\":null,\"stop\":null,\"tools\":[]}",
		"{" M "," USER ",\"logprobs\":false,\"presence_penalty\":0,\"logit_bias\":{}}",
		"{" M "," USER ",\"response_format\":{\"type\":\"text\"},\"user\":\"u-1\"}",
		"{" M "," USER ",\"seed\":-42,\"certa\":{\"idempotency_key\":\"\"}}",
		"{\"model\":\"\"," USER "}",
		"{" M "," USER ",\"reasoning_effort\":\"high\",\"metadata\":{\"a\":\"b\"}}",
	};
	struct openai_request r;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
		parse_ok(OPENAI_REQUEST_CHAT, bodies[i], &r);
		assert_string_equal(r.problem, "q");
		openai_request_clear(&r);
	}
}

/* What a request becomes: n, budget per choice, sampling, certa's knobs. */
static void
test_spec(void **state)
{
	const char *body = "{" M "," USER ",\"n\":3,\"max_tokens\":100,\"temperature\":0.6,"
	    "\"stream\":true,\"stream_options\":{\"include_usage\":true},\"seed\":7,"
	    "\"certa\":{\"algorithm\":\"sc\",\"priority\":\"high\",\"deadline_s\":1.5,"
	    "\"idempotency_key\":\"k-1\",\"n\":3}}";
	struct openai_request r;
	struct submit_spec spec;

	(void)state;
	parse_ok(OPENAI_REQUEST_CHAT, body, &r);
	assert_true(r.stream);
	assert_true(r.include_usage);
	assert_true(r.has_seed);
	assert_int_equal(r.seed, 7);
	openai_request_spec(&r, 1000000, &spec);
	assert_string_equal(spec.problem, "q");
	assert_string_equal(spec.model, "m");
	assert_string_equal(spec.policy, "");
	assert_string_equal(spec.idempotency_key, "k-1");
	assert_int_equal(spec.algorithm, SUBMIT_ALGO_SC);
	assert_int_equal(spec.n, 3);
	assert_int_equal(spec.token_budget, 300);
	assert_int_equal(spec.priority, 3);
	assert_int_equal(spec.deadline_unix_ms, 1001500);
	assert_true(spec.has_sampling);
	assert_true(spec.temperature > 0.59f && spec.temperature < 0.61f);
	assert_true(spec.top_p == 0.0f);
	assert_true(spec.seed == 7);
	openai_request_clear(&r);

	/* Nothing given: the policy decides (n 0, budget 0, no sampling, no deadline). */
	parse_ok(OPENAI_REQUEST_CHAT, "{" M "," USER ",\"max_completion_tokens\":64}", &r);
	openai_request_spec(&r, 5, &spec);
	assert_int_equal(spec.algorithm, SUBMIT_ALGO_UNSPECIFIED);
	assert_int_equal(spec.n, 0);
	assert_int_equal(spec.token_budget, 64);
	assert_false(spec.has_sampling);
	assert_true(spec.seed == 0);
	assert_int_equal(spec.deadline_unix_ms, 0);
	assert_int_equal(spec.priority, 0);
	openai_request_clear(&r);

	/* n > 1 alone is sc by submit's rule (algorithm left unspecified). */
	parse_ok(OPENAI_REQUEST_CHAT, "{" M "," USER ",\"n\":4}", &r);
	openai_request_spec(&r, 5, &spec);
	assert_int_equal(spec.n, 4);
	assert_int_equal(spec.token_budget, 0);
	assert_int_equal(spec.algorithm, SUBMIT_ALGO_UNSPECIFIED);
	openai_request_clear(&r);
}

/* /v1/completions: prompt is a string or an array of one. */
static void
test_completion_prompt(void **state)
{
	struct openai_request r;
	struct openai_request_error err;
	const char *two = "{" M ",\"prompt\":[\"a\",\"b\"]}";

	(void)state;
	parse_ok(OPENAI_REQUEST_COMPLETION, "{" M ",\"prompt\":\"Solve x+1=2.\"}", &r);
	assert_string_equal(r.problem, "Solve x+1=2.");
	assert_int_equal(r.kind, OPENAI_REQUEST_COMPLETION);
	openai_request_clear(&r);
	parse_ok(OPENAI_REQUEST_COMPLETION, "{" M ",\"prompt\":[\"one\"]}", &r);
	assert_string_equal(r.problem, "one");
	openai_request_clear(&r);
	assert_int_equal(openai_request_parse(OPENAI_REQUEST_COMPLETION, two, strlen(two), &r,
	    &err), CERTA_EINVAL);
	assert_string_equal(err.param, "prompt");
	openai_request_clear(&r);
	assert_int_equal(openai_request_parse(OPENAI_REQUEST_COMPLETION, "{" M "}",
	    strlen("{" M "}"), &r, &err), CERTA_EINVAL);
	assert_string_equal(err.param, "prompt");
	openai_request_clear(&r);
}

/* Submit's messages name the request parameter they come from. */
static void
test_param_of(void **state)
{
	(void)state;
	assert_string_equal(openai_request_param_of("program.n is 9; allowed range is [1, 8]"),
	    "n");
	assert_string_equal(openai_request_param_of("program.token_budget 9 exceeds the limit 8"),
	    "max_tokens");
	assert_string_equal(openai_request_param_of("program.model: no worker serves model 'x'"),
	    "model");
	assert_string_equal(openai_request_param_of("quota max_sc_n: 9 chains requested"), "n");
	assert_string_equal(openai_request_param_of("program.nothing"), "");
	assert_string_equal(openai_request_param_of("unknown tenant t"), "");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_messages_to_problem),
		cmocka_unit_test(test_refused_params),
		cmocka_unit_test(test_accepted_params),
		cmocka_unit_test(test_spec),
		cmocka_unit_test(test_completion_prompt),
		cmocka_unit_test(test_param_of),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
