/*
 * oai.h — the OpenAI completions subset the openai engine speaks (docs/upstream.md): the
 * request body of POST /v1/completions, the strict reading of its response and of an error
 * body, and what the engine derives from a completion's logprobs (probe answer cut, token
 * probabilities, entropy).  Pure functions: no I/O, no state; any thread.
 *
 * Errors: 0 or a negative code (lib/error.h).  A response that is not what the API promises is
 * CERTA_EDECODE with a message naming the field, e.g.
 * `response field usage.completion_tokens: expected a non-negative integer, got string`.
 */
#ifndef CERTA_WORKERS_UPSTREAM_OAI_H
#define CERTA_WORKERS_UPSTREAM_OAI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One completion request (streaming off, one choice, no echo). */
struct oai_request {
	const char *model;
	const char *prompt;      /* the whole prompt text, chat format applied */
	uint32_t max_tokens;
	double temperature;      /* 0: greedy */
	double top_p;            /* sent when in (0, 1) */
	uint64_t seed;
	uint32_t logprobs;       /* alternatives per token to return (>= 1) */
};

/*
 * The JSON body of r in a new malloc'd NUL-terminated string (*len its length).  Returns 0,
 * -ENOMEM.
 */
int oai_request_body(const struct oai_request *r, char **body, size_t *len);

/* A parsed completion.  Arrays have ntokens entries (0 when the server sent no logprobs). */
struct oai_completion {
	char *text;
	char *finish_reason;     /* "stop", "length", ... ("" for null) */
	uint32_t completion_tokens;
	uint32_t prompt_tokens;
	size_t ntokens;
	size_t *tok_len;         /* bytes of each token's text */
	double *tok_logprob;     /* log probability of the token chosen */
	double *tok_entropy;     /* entropy estimate (nats) from top_logprobs; < 0: none sent */
};

/*
 * Parses a 200 response body into *out (cleared first; oai_completion_clear() releases it).
 * Required: choices[0].text (string), usage.completion_tokens (integer >= 0).  Optional:
 * choices[0].finish_reason (string or null), usage.prompt_tokens, choices[0].logprobs (null,
 * or tokens[] strings with token_logprobs[] numbers of the same length, top_logprobs[] null or
 * objects of numbers).  Returns 0, CERTA_EDECODE (err names the field), -ENOMEM.
 */
int oai_parse_completion(const char *body, size_t len, struct oai_completion *out, char *err,
    size_t errlen);
void oai_completion_clear(struct oai_completion *c);

/*
 * The message of an error body ({"error": {"message": M}}, {"error": M}, {"message": M},
 * {"detail": M} or, failing all, the body's first 200 bytes made printable) into msg.
 */
void oai_error_message(const char *body, size_t len, char *msg, size_t msglen);

/*
 * The probe's answer: text up to the brace that closes the suffix's \boxed{ (nested braces
 * counted), or the whole text when it never closes.  *answer_len its bytes; *ntok the tokens
 * it took (the token holding the closing brace included): from the logprobs' token lengths
 * when they add up to the text, else c->completion_tokens.
 */
void oai_probe_cut(const struct oai_completion *c, size_t *answer_len, uint32_t *ntok);

/* Mean and minimum of exp(logprob) over tokens [0, n) (n <= c->ntokens); -1 when n is 0. */
void oai_token_probs(const struct oai_completion *c, size_t n, double *mean, double *min);

/* Mean entropy over the tokens that have one; -1 when none has. */
double oai_mean_entropy(const struct oai_completion *c);

/*
 * Whether an upstream's 400 message says the request exceeds the model's context (vLLM:
 * "This model's maximum context length is N tokens. However, you requested M tokens (P in
 * the messages, K in the completion)" or "... your request has P input tokens"; SGLang:
 * "... maximum context length of N tokens. ... P tokens from the input messages ...").
 * Returns 1 and *room = N - P (0 when the input alone fills it, or when the numbers cannot
 * be read), or 0 for any other message.
 */
int oai_context_room(const char *msg, uint32_t *room);

/* The last \boxed{...} of text (nested braces counted), in a new string ("" when none);
 * NULL when out of memory. */
char *oai_boxed(const char *text);

#endif
