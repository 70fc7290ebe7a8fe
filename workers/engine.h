/*
 * engine.h — the decode engine behind a certa-worker.
 *
 * An engine keeps per-request decode state (KV cache, replay position) between steps.  One step
 * advances a batch of requests by up to max_new_tokens each and then probes each one (a fork of
 * the context plus the probe suffix, decoded briefly; the chain itself is not disturbed).
 *
 * A step is all or nothing: the engine validates the whole batch first and, if any item is
 * refused, returns its error with a message naming the request and changes no state.
 * Engines: "replay" (recorded traces, workers/engines/replay.c).  A CUDA engine plugs in here.
 *
 * Threads: an engine object belongs to the worker's loop thread.
 */
#ifndef CERTA_WORKERS_ENGINE_H
#define CERTA_WORKERS_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct engine;

struct engine_options {
	const char *traces_dir;  /* replay: directory of *.jsonl.gz traces */
	const char *model;       /* default model ("" = the engine's first) */
	uint32_t capacity;       /* max concurrent requests (0 = 256) */
};

struct engine_item {
	const char *request_id;  /* "<program id>/<index>" */
	const char *prompt;
	const char *resume_text; /* reasoning so far when the request moves to this worker */
	uint64_t resume_tokens;
	uint32_t sample_index;
	uint32_t max_new_tokens;
	uint64_t seed;
	const char *model;       /* "" = default */
	float temperature, top_p;
	uint32_t probe_max_tokens;
	bool want_logprobs;
};

/* Filled by engine_step; strings are malloc'd, released with engine_result_clear. */
struct engine_result {
	char *text;              /* text generated in this step */
	uint32_t new_tokens;
	uint64_t total_tokens;
	char *probe_answer;
	uint32_t probe_tokens;
	double probe_confidence; /* < 0: unknown */
	bool finished;
	char *final_answer;
	bool thinking_done;
};

struct engine_info {
	const char *engine;
	const char *model;
	uint32_t capacity;
	uint32_t active;
	size_t nmodels;
	const char *const *models;
	uint32_t problems;
};

/* The engine table entry each engine module exports. */
struct engine_ops {
	const char *name;
	int (*open)(const struct engine_options *opt, void **state);
	void (*close)(void *state);
	int (*step)(void *state, const struct engine_item *items, size_t n,
	    struct engine_result *out, char *err, size_t errlen);
	int (*release)(void *state, const char *request_id);
	void (*info)(void *state, struct engine_info *out);
};

/* Opens engine `name`.  Returns 0, CERTA_EINVAL for an unknown engine name, or the engine's
 * open error (e.g. CERTA_ENOTFOUND when the traces directory has no traces). */
int engine_open(const char *name, const struct engine_options *opt, struct engine **out);
void engine_close(struct engine *e);

/* Steps n items; out[0..n) is written only on success.  Errors: CERTA_ENOTFOUND (unknown
 * prompt), CERTA_EINVAL (bad item, e.g. more samples than recorded), CERTA_ECAPACITY (the batch
 * would exceed capacity); err gets a message a person can act on. */
int engine_step(struct engine *e, const struct engine_item *items, size_t n,
    struct engine_result *out, char *err, size_t errlen);

/* Frees a request's state; CERTA_ENOTFOUND when the engine holds none for it. */
int engine_release(struct engine *e, const char *request_id);
void engine_info(struct engine *e, struct engine_info *out);
void engine_result_clear(struct engine_result *r);
/* Comma-separated names of the engines built in (for --help). */
const char *engine_names(void);

#endif
