/*
 * openai_request.h — an OpenAI-style request body (chat completions, completions) read into a
 * certa program spec, with the strict type checks the HTTP API answers 400 for.
 *
 * What a request becomes (docs/http-api.md has the full table):
 *  - chat: the text of the `system`/`developer` and `user` messages, in their order, joined
 *    with a blank line ("\n\n"), is the problem; `content` is a string or an array of
 *    {"type": "text", "text": ...} parts (joined without separator).  At least one user
 *    message is needed; `assistant` and `tool` messages (earlier turns) are refused: a program
 *    answers one question.  The chat template is the worker's.
 *  - completions: `prompt` (a string, or an array of exactly one string) is the problem.
 *  - `n` (or `certa.n`) > 1 runs sc with n chains; `max_tokens` / `max_completion_tokens` is
 *    the budget of one choice (the program's token_budget is n times it); `temperature` in
 *    [0, 2] and `top_p` in [0, 1] go to the workers (0: the engine's default); `seed` (an
 *    integer, taken modulo 2^64) is the program's seed: chain i samples with seed + i; `certa` = {algorithm "cot"|"sc", n, priority
 *    "low"|"normal"|"high", deadline_s > 0, idempotency_key}.
 *  - Parameters certa cannot honour are refused when set to anything but their default
 *    (tools, functions, logprobs, stop, response_format other than text, penalties,
 *    logit_bias); other unknown members are ignored, as OpenAI-compatible servers do.
 *
 * Pure code: any thread.  Errors: CERTA_EINVAL with the parameter's name (OpenAI's `param`,
 * e.g. "messages[1].content") and a message in *err; -ENOMEM.
 */
#ifndef CERTA_DAEMON_OPENAI_REQUEST_H
#define CERTA_DAEMON_OPENAI_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/submit.h"

enum openai_request_kind {
	OPENAI_REQUEST_CHAT = 0,          /* POST /v1/chat/completions */
	OPENAI_REQUEST_COMPLETION,        /* POST /v1/completions */
};

/* The largest n / certa.n accepted before the policy's own limit (max_sc_n) is asked. */
#define OPENAI_REQUEST_MAX_N 128

struct openai_request {
	enum openai_request_kind kind;
	char *problem;                /* malloc'd */
	char *model;                  /* malloc'd; "" when the request named none */
	char *idempotency_key;        /* malloc'd; "" when none */
	bool stream;
	bool include_usage;           /* stream_options.include_usage */
	uint32_t n;                   /* choices (chains); 1 when not given */
	bool n_given;
	uint64_t max_tokens;          /* per choice; 0: the policy's default */
	bool has_temperature, has_top_p;
	float temperature, top_p;
	bool has_seed;
	int64_t seed;                 /* ProgramSpec.seed (as unsigned) */
	int algorithm;                /* enum submit_algo */
	int priority;                 /* 0..SUBMIT_PRIORITY_MAX */
	double deadline_s;            /* 0: none */
};

struct openai_request_error {
	char param[96];               /* OpenAI's `param` ("" when none applies) */
	char message[512];
};

/* Parses body[0..len) (JSON) as a request of `kind` into *out (zeroed first; release with
 * openai_request_clear even on failure).  Returns 0, CERTA_EINVAL (err says which parameter
 * and why), -ENOMEM. */
int openai_request_parse(enum openai_request_kind kind, const char *body, size_t len,
    struct openai_request *out, struct openai_request_error *err);

/* Frees what parse allocated; the struct may be parsed into again. */
void openai_request_clear(struct openai_request *r);

/* The program spec for submit_program: strings borrowed from r; now_ms turns deadline_s
 * into deadline_unix_ms. */
void openai_request_spec(const struct openai_request *r, int64_t now_ms,
    struct submit_spec *spec);

/* The request parameter a submit error message names ("program.n ..." -> "n"), for
 * OpenAI's `param`; "" when none.  Table in the .c. */
const char *openai_request_param_of(const char *submit_message);

#endif
