/*
 * fuzz_traces.c — libFuzzer target for the traces reader (lib/traces.h): JSON lines in a
 * buffer through traces_load_buffer, then every query of the loaded set (flat access,
 * programs, the (model, problem) index with and without whitespace normalization, the text
 * offsets, probes and answers of each trace).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "lib/traces.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
fuzz_traces_query(const struct traces *tr)
{
	const struct trace *const *samples;
	const struct trace *t;
	size_t n;

	for (size_t i = 0; i < traces_count(tr); i++) {
		t = traces_at(tr, i);
		if (t == NULL || strlen(t->text) != t->text_len)
			abort();
		if (traces_find(tr, t->model, t->problem, &samples, &n) != 0 || n == 0)
			abort();   /* every loaded trace is found by its own (model, problem) */
		(void)traces_find(tr, NULL, t->problem, &samples, &n);
		(void)traces_find_sample(tr, t->model, t->problem, n, &t);
		t = traces_at(tr, i);
		if (traces_think_end(t) != t->think_end)
			abort();
		size_t prev = 0;
		for (unsigned k = 0; k <= 10; k++) {
			/* 0, tokens_used/8, ..., tokens_used, then past the end */
			uint64_t pos = k <= 8 ? t->tokens_used / 8 * k
			    : t->tokens_used > UINT64_MAX - 16 ? UINT64_MAX : t->tokens_used + k;
			size_t off = traces_text_offset(t, pos);

			if (k == 8 && pos < t->tokens_used)
				pos = t->tokens_used, off = traces_text_offset(t, pos);
			if (off > t->text_len || off < prev)
				abort();   /* within the text, monotone */
			if (pos >= t->tokens_used && off != t->text_len)
				abort();
			prev = off;
			(void)traces_probe_at(t, pos);
			(void)strlen(traces_answer_at(t, pos));
		}
	}
	for (size_t i = 0; i < traces_program_count(tr); i++) {
		const struct traces_program *p = traces_program_at(tr, i);

		if (p == NULL || p->nsamples == 0)
			abort();
		for (size_t j = 0; j < p->nsamples; j++)
			(void)strlen(p->samples[j]->problem);
	}
	for (size_t i = 0; i < traces_model_count(tr); i++)
		(void)strlen(traces_model_name(tr, i));
	for (size_t i = 0; i < traces_dataset_count(tr); i++)
		(void)strlen(traces_dataset_name(tr, i));
	(void)traces_memory(tr);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static int initialized;
	struct traces *tr;

	if (!initialized) {
		/* Below LOG_LVL_ERR: skipped lines log nothing while fuzzed. */
		log_init("fuzz", LOG_FORMAT_PLAIN, (enum log_level)(LOG_LVL_ERR - 1));
		initialized = 1;
	}
	if (traces_load_buffer("fuzz.jsonl", (const char *)data, size, &tr) == 0) {
		fuzz_traces_query(tr);
		traces_free(tr);
	}
	return 0;
}
