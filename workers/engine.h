/*
 * engine.h — the decode engine behind a certa-worker.
 *
 * An engine keeps per-request decode state (KV cache, replay position) between steps.  One step
 * advances a batch of requests by up to max_new_tokens each and then probes each one (a fork of
 * the context plus the probe suffix, decoded briefly; the chain itself is not disturbed).
 *
 * A step is all or nothing: the engine validates the whole batch first and, if any item is
 * refused, returns its error with a message naming the request and changes no state.
 * Engines: "replay" (recorded traces, workers/engines/replay.c), "llm" (GGUF models on the
 * CPU backend, workers/engines/llm.c), "openai" (an OpenAI-compatible completions server:
 * vLLM, SGLang, ...; workers/engines/openai.c).  A CUDA engine plugs in under llm's backend seam.
 *
 * Threads: an engine object belongs to the worker's loop thread.  A compute engine (llm) runs
 * its steps on an engine thread of its own: engine_attach() starts it, engine_step_async()
 * queues a step there and its completion callback runs back on the loop thread (an eventfd
 * wakes the loop), so the loop never waits on compute.  Release and Info stay synchronous on
 * the loop thread; such an engine makes them safe against its running step (docs/threads.md).
 * A synchronous engine (replay) completes engine_step_async() inline; replay with a GPU timing
 * model (--gpu-profile) runs on an engine thread too, its steps taking the modelled time.
 */
#ifndef CERTA_WORKERS_ENGINE_H
#define CERTA_WORKERS_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct engine;
struct event_base;

struct engine_options {
	const char *traces_dir;  /* replay: directory of *.jsonl.gz traces */
	const char *model;       /* default model ("" = the engine's first) */
	uint32_t capacity;       /* max concurrent requests (0 = 256) */
	/* llm engine */
	const char *model_file;  /* GGUF model */
	const char *alias;       /* name served instead of general.name ("" = general.name) */
	uint32_t threads;        /* compute threads (0 = online CPUs) */
	uint64_t kv_memory;      /* bytes of KV cache for all sequences */
	uint32_t context;        /* positions per sequence (0 = the model's context length) */
	const char *probe_suffix;/* appended to a fork of the chain to probe its answer */
	const char *chat_format; /* prompt format name ("" = from the model's metadata) */
	uint32_t max_batch_tokens; /* tokens per batched iteration (0 = 512) */
	const char *device;      /* compute backend: "cpu" ("" = cpu) */
	/* openai engine (docs/upstream.md); model is the upstream's model name, probe_suffix
	 * and chat_format as for llm ("" = chatml) */
	const char *const *upstreams; /* base URLs of data-parallel replicas */
	size_t nupstreams;
	const char *upstream_key_file; /* bearer key, first line ("" = none) */
	const char *ca_file;     /* CA bundle for https upstreams ("" = the system's) */
	uint32_t logprobs;       /* alternatives per token asked for (0 = 5) */
	uint32_t retries;        /* retries of a 429 answer */
	uint64_t timeout_ms;     /* per request (0 = 300 s) */
	uint64_t connect_timeout_ms; /* (0 = 5 s) */
	/* replay engine: GPU timing model (workers/gpuprof.h); NULL or "" = none (steps return
	 * at once).  time_scale > 0 overrides the profile's. */
	const char *gpu_profile;
	double time_scale;
};

struct engine_feed;

/* One step of several run together by step_many: its items, results and outcome. */
struct engine_work {
	const struct engine_item *items;
	size_t n;
	struct engine_result *out;
	char *err;
	size_t errlen;
	int rc;                  /* set by step_many: as step's return */
};

struct engine_item {
	const char *request_id;  /* "<program id>/<index>" */
	const char *prompt;      /* "" (or NULL): continue the state held for request_id; an
	                          * engine holding none refuses with engine_no_state() */
	const char *resume_text; /* reasoning so far when the request moves to this worker */
	uint64_t resume_tokens;
	uint32_t sample_index;
	uint32_t max_new_tokens;
	uint64_t seed;
	const char *model;       /* "" = default */
	float temperature, top_p;
	uint32_t probe_max_tokens;
	bool want_logprobs;
	float moe_top_p;         /* MoE routing: 0 = trained top-k, (0, 1] = top-p threshold */
};

/* Filled by engine_step; strings are malloc'd, released with engine_result_clear. */
struct engine_result {
	char *text;              /* text generated in this step */
	uint32_t new_tokens;
	uint64_t total_tokens;
	char *probe_answer;
	uint32_t probe_tokens;
	double probe_confidence; /* mean probability of the probe answer's tokens; < 0: unknown */
	double probe_min_prob;   /* their minimum; < 0: unknown */
	double chain_entropy;    /* mean entropy (nats, temperature 1) of the distributions the
	                          * step's own tokens were drawn from; < 0: unknown */
	double experts_per_token;/* mean experts per decoded token and MoE layer; 0 dense,
	                          * < 0: unknown */
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
	/* NULL while healthy; after a device error, why the engine stopped serving (every step
	 * then fails with it, and the worker reports NOT_SERVING).  Valid while the engine is. */
	const char *fault;
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
	/* Optional, threaded engines: runs steps together, each with step's semantics.  It
	 * takes steps with engine_feed_take() (those queued so far, and between its iterations
	 * those queued meanwhile), completes each with engine_feed_done() once its items are
	 * done (w->rc set), and returns when it holds none and none is queued.  NULL: steps
	 * run one by one through step. */
	void (*step_many)(void *state, struct engine_feed *feed);
	/* Optional, step_many engines that wait on something other than the feed (sockets):
	 * called on the loop thread after a step was queued, so the engine thread stops waiting
	 * and takes it.  NULL: none needed. */
	void (*wake)(void *state);
	/* Optional, on the loop thread: 0 when the engine can serve, else CERTA_EUNAVAIL with
	 * why in err (the openai engine while every upstream is failing); Info then fails
	 * UNAVAILABLE so certad keeps the worker down.  NULL: always 0. */
	int (*health)(void *state, char *err, size_t errlen);
	/* true: step computes (run it on the engine thread, see engine_attach); release and
	 * info may then be called on the loop thread while a step runs on the engine thread. */
	bool threaded;
	/* Optional: whether this engine object wants the engine thread although the engine is
	 * not `threaded` (replay with a GPU timing model).  NULL: no. */
	bool (*wants_thread)(void *state);
};

/* Completion of engine_step_async(), on the loop thread: rc and err as engine_step(), out[]
 * filled on success. */
typedef void (*engine_done_fn)(void *arg, int rc, const char *err);

/* Opens engine `name`.  Returns 0, CERTA_EINVAL for an unknown engine name, or the engine's
 * open error (e.g. CERTA_ENOTFOUND when the traces directory has no traces). */
int engine_open(const char *name, const struct engine_options *opt, struct engine **out);
void engine_close(struct engine *e);

/* Steps n items; out[0..n) is written only on success.  Errors: CERTA_ENOTFOUND (unknown
 * prompt), CERTA_EINVAL (bad item, e.g. more samples than recorded), CERTA_ECAPACITY (the batch
 * would exceed capacity), CERTA_ENOSTATE (an item without prompt whose request the engine
 * holds no usable state for: never seen, released, or the worker restarted; certad resends
 * prompt and resume_text, worker.proto StepResult.state_missing); err gets a message a person
 * can act on. */
int engine_step(struct engine *e, const struct engine_item *items, size_t n,
    struct engine_result *out, char *err, size_t errlen);

/*
 * Starts the engine thread of a threaded engine, its completions delivered on base's loop
 * (an eventfd event).  A no-op for a synchronous engine.  Returns 0, -errno (eventfd,
 * pthread_create), -ENOMEM.
 */
int engine_attach(struct engine *e, struct event_base *base);

/* Asks a step_many engine to end the steps it holds now, with an error (their callbacks
 * run), and every later one: for shutdown, so the server's in-flight calls complete.  Engines
 * that never wait long (replay) and the llm engine finish what they hold instead. */
void engine_abort(struct engine *e);

/* Waits for the running step, drops queued ones (their callbacks do not run: call this only
 * when no caller waits any more, after the loop stopped) and stops the engine thread.
 * Idempotent; engine_close() calls it. */
void engine_detach(struct engine *e);

/*
 * engine_step() off the loop thread: items (and the strings they point to), out[0..n) and
 * err[0..errlen) must stay valid until done(arg, rc, err) runs, on the loop thread.  A
 * synchronous engine, or one not attached, runs the step inline and calls done before
 * returning.  With step_many, steps run together and each completes as soon as its items are
 * done (a short step does not wait for a long one); otherwise in submission order.
 */
void engine_step_async(struct engine *e, const struct engine_item *items, size_t n,
    struct engine_result *out, char *err, size_t errlen, engine_done_fn done, void *arg);

/* For step_many, on the engine thread: the next queued step (NULL: none, or the engine is
 * detaching); and its completion (w->rc, w->err, w->out as step's), after which w is gone. */
struct engine_work *engine_feed_take(struct engine_feed *feed);
void engine_feed_done(struct engine_feed *feed, struct engine_work *w);
/* For step_many: true once engine_abort() or engine_detach() began: end what it holds now
 * (complete it with an error). */
bool engine_feed_stopping(struct engine_feed *feed);

/* ops->health: 0, or CERTA_EUNAVAIL with the reason in err. */
int engine_health(struct engine *e, char *err, size_t errlen);

/* Frees a request's state; CERTA_ENOTFOUND when the engine holds none for it. */
int engine_release(struct engine *e, const char *request_id);
void engine_info(struct engine *e, struct engine_info *out);
void engine_result_clear(struct engine_result *r);
/*
 * The checks every engine makes of a batch before anything else: not empty, each item has a
 * request_id and max_new_tokens > 0, no request_id twice (hashed: O(n) expected).  The prompt
 * may be empty: the engine then continues the state it holds (engine_no_state otherwise).
 * Returns 0, CERTA_EINVAL with a message naming the item, or -ENOMEM.  Engines call it first
 * in their step.
 */
int engine_check_items(const struct engine_item *items, size_t n, char *err, size_t errlen);

/* An item came without prompt and the engine holds no usable state for it (why: "holds no
 * state for it", ...): writes the message certad and people read (it starts "state missing")
 * and returns CERTA_ENOSTATE, which the worker sends as StepResult.state_missing. */
int engine_no_state(const struct engine_item *it, const char *why, char *err, size_t errlen);

/* Whether an item carries its prompt (else it continues the held state). */
static inline bool
engine_item_has_prompt(const struct engine_item *it)
{
	return it->prompt != NULL && it->prompt[0] != '\0';
}

/* Comma-separated names of the engines built in (for --help). */
const char *engine_names(void);

#endif
