/*
 * openai.c — the openai engine: serves Worker steps by driving OpenAI-compatible completions
 * servers (vLLM, SGLang, TensorRT-LLM, llama.cpp; docs/upstream.md).
 *
 * A step of an item is one POST /v1/completions of the chat-formatted problem plus the chain's
 * text so far, max_tokens = max_new_tokens, the item's temperature/top_p/seed and logprobs;
 * then, unless the chain finished, its probe: the same prefix, the step's text and the probe
 * suffix, greedy, max_tokens = probe_max_tokens, cut at the brace that closes \boxed{.  Token
 * counts come from `usage`, token probabilities from `logprobs`.
 *
 * State per chain (request id): its text and the step boundaries (tokens, text length) this
 * worker produced, so a step retried from an earlier boundary (resume_tokens) rolls back to
 * it; a chain moved here continues from the resume_text certad sends.  The chain keeps its
 * problem text too: an item without prompt continues it, and one whose chain is not held (or
 * holds no boundary at resume_tokens) is refused CERTA_ENOSTATE (worker.proto "Held state").
 * A step changes state only when all its items are done (all or nothing, as every engine).
 *
 * Threads: the engine is threaded with step_many: on the engine thread every admitted step's
 * transfers run on one curl multi handle, steps join between polls (ops->wake interrupts the
 * poll) and each completes when its items are done.  Release and Info run on the loop thread
 * under `mu`; a chain released while a step holds it is freed when that step ends.
 *
 * Failures: unreachable, timed out, reset or 5xx -> the next replica, then CERTA_EUNAVAIL
 * (UNAVAILABLE: certad fails the chains over); 429 -> retried after Retry-After (at most
 * openai.retries times), then CERTA_ECAPACITY (RESOURCE_EXHAUSTED); 401/403 -> CERTA_EUNAVAIL
 * (this worker's key is wrong, another may serve); 404 -> CERTA_ENOTFOUND; other 4xx ->
 * CERTA_EINVAL with the upstream's message; a response not as the API promises -> -EPROTO
 * (INTERNAL) naming the field.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <curl/curl.h>

#include "lib/error.h"
#include "lib/hash.h"
#include "lib/log.h"
#include "lib/strmap.h"
#include "workers/engine.h"
#include "workers/llm/tokenizer.h"
#include "workers/upstream/oai.h"

#define OPENAI_PROBE_DEFAULT 16          /* probe tokens when the request does not say */
#define OPENAI_MAX_REPLICAS 64
#define OPENAI_MAX_RESPONSE (64u << 20)  /* bytes of one response body */
#define OPENAI_DOWN_MS 5000              /* a failed replica is avoided this long */
#define OPENAI_RETRY_CAP_MS 10000        /* longest Retry-After honoured */
#define OPENAI_MAX_CKPT 16               /* step boundaries kept per chain */

static const char openai_default_suffix[] =
    "... Oh, I suddenly got the answer to the whole problem, **Final Answer**\n\n\\[ \\boxed{";

struct openai_replica {
	char *base;              /* as configured, for messages */
	char *endpoint;          /* base + /v1/completions */
	uint32_t inflight;
	int64_t down_until_ms;   /* written by the engine thread, read by health (atomic) */
};

/* A step boundary this worker produced: tokens into the chain, bytes of its text. */
struct openai_ckpt {
	uint64_t tokens;
	size_t len;
};

/* A chain held between steps. */
struct openai_chain {
	char *prompt;            /* the problem text (items without prompt continue it) */
	char *text;
	size_t len;
	struct openai_ckpt *ck;
	size_t nck;
	bool busy;               /* a running step holds it */
	bool dead;               /* released while busy: freed by that step */
};

enum openai_phase { OPENAI_STEP, OPENAI_PROBE, OPENAI_DONE };

struct openai_job;

/* One item of a step: its transfer (step, then probe) and what it produced. */
struct openai_xfer {
	struct openai_job *job;
	const struct engine_item *it;
	enum openai_phase phase;
	char *prefix;            /* chat prompt + the chain's text before the step */
	uint64_t home;           /* hash of the problem text: its replica (openai_pick) */
	size_t base_len;         /* bytes of chain text in prefix */
	bool from_resume;        /* that text is the item's resume_text, not ours */
	CURL *h;
	struct curl_slist *hdrs;
	char *body;
	char *resp;
	size_t rlen, rcap;
	bool overflow;
	int rep;                 /* replica of the transfer in flight, -1 none */
	uint64_t tried;          /* replicas tried for this request (bit i) */
	uint32_t tries429;
	int64_t start_at_ms;     /* waiting to (re)start; 0: in flight or done */
	bool waiting;
	uint32_t max_tokens_cap;  /* the step's max_tokens cut to the context's room; 0: none */
	struct oai_completion step, probe;
};

struct openai_job {
	struct engine_work *w;
	struct openai_xfer *x;
	size_t pending;          /* items not DONE */
	bool failed;
	struct openai_job *next;
};

struct openai {
	char *model;
	const char *models[1];
	struct openai_replica *rep;
	size_t nrep;
	char *auth;              /* "Authorization: Bearer KEY" or NULL */
	int chat;
	char *suffix;
	uint32_t capacity, logprobs, retries;
	long timeout_ms, connect_timeout_ms;
	char *ca_file;
	CURLM *multi;
	pthread_mutex_t mu;      /* chains: loop thread (release, info) and engine thread */
	struct strmap *chains;
	char last_err[400];      /* the last upstream failure, for health */
	/* Engine thread only. */
	struct openai_job *running, *queued;
};

/* Where step_many's steps come from and go: the engine feed, or one synchronous step. */
struct openai_src {
	struct engine_feed *feed;
	struct engine_work *one;
	bool one_done;
};

static int64_t
openai_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
openai_chain_free(void *p)
{
	struct openai_chain *c = p;

	if (c == NULL)
		return;
	free(c->prompt);
	free(c->text);
	free(c->ck);
	free(c);
}

/* The first line of the key file, trimmed. */
static int
openai_read_key(const char *path, char **out)
{
	char line[4096];
	size_t n;
	FILE *f = fopen(path, "re");

	if (f == NULL) {
		log_err(LOG_ENGINE, "upstream_key_file %s: %s", path, strerror(errno));
		return CERTA_ECONFIG;
	}
	if (fgets(line, sizeof line, f) == NULL)
		line[0] = '\0';
	fclose(f);
	n = strcspn(line, "\r\n");
	line[n] = '\0';
	if (n == 0) {
		log_err(LOG_ENGINE, "upstream_key_file %s: empty", path);
		return CERTA_ECONFIG;
	}
	if (asprintf(out, "Authorization: Bearer %s", line) < 0)
		return -ENOMEM;
	memset(line, 0, sizeof line);
	return 0;
}

static void
openai_close(void *state)
{
	struct openai *o = state;
	size_t i;

	if (o == NULL)
		return;
	if (o->multi != NULL)
		curl_multi_cleanup(o->multi);
	for (i = 0; i < o->nrep; i++) {
		free(o->rep[i].base);
		free(o->rep[i].endpoint);
	}
	free(o->rep);
	if (o->auth != NULL) {
		memset(o->auth, 0, strlen(o->auth));
		free(o->auth);
	}
	strmap_free(o->chains, openai_chain_free);
	pthread_mutex_destroy(&o->mu);
	free(o->suffix);
	free(o->ca_file);
	free(o->model);
	free(o);
}

static int
openai_open(const struct engine_options *opt, void **state)
{
	struct openai *o;
	size_t i, n;
	int rc;

	if (opt->nupstreams == 0) {
		log_err(LOG_ENGINE, "openai engine needs an upstream server (--upstream URL)");
		return CERTA_ECONFIG;
	}
	if (opt->nupstreams > OPENAI_MAX_REPLICAS) {
		log_err(LOG_ENGINE, "openai engine: %zu upstreams, at most %d", opt->nupstreams,
		    OPENAI_MAX_REPLICAS);
		return CERTA_ECONFIG;
	}
	if (opt->model == NULL || opt->model[0] == '\0') {
		log_err(LOG_ENGINE, "openai engine needs the upstream's model name (--model NAME)");
		return CERTA_ECONFIG;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return -ENOMEM;
	o = calloc(1, sizeof *o);
	if (o == NULL)
		return -ENOMEM;
	pthread_mutex_init(&o->mu, NULL);
	o->chains = strmap_new();
	o->model = strdup(opt->model);
	o->suffix = strdup(opt->probe_suffix != NULL && opt->probe_suffix[0] ?
	    opt->probe_suffix : openai_default_suffix);
	o->ca_file = opt->ca_file != NULL && opt->ca_file[0] ? strdup(opt->ca_file) : NULL;
	o->rep = calloc(opt->nupstreams, sizeof *o->rep);
	o->multi = curl_multi_init();
	rc = -ENOMEM;
	if (o->chains == NULL || o->model == NULL || o->suffix == NULL || o->rep == NULL ||
	    o->multi == NULL || (opt->ca_file != NULL && opt->ca_file[0] && o->ca_file == NULL))
		goto fail;
	o->models[0] = o->model;
	for (i = 0; i < opt->nupstreams; i++) {
		const char *u = opt->upstreams[i];
		if (strncmp(u, "http://", 7) != 0 && strncmp(u, "https://", 8) != 0) {
			log_err(LOG_ENGINE, "upstream '%s': want http://HOST:PORT or https://...", u);
			rc = CERTA_ECONFIG;
			goto fail;
		}
		n = strlen(u);
		while (n > 0 && u[n - 1] == '/')
			n--;
		o->rep[i].base = strndup(u, n);
		/* A URL that already names /v1 gets /completions only. */
		if (o->rep[i].base == NULL || asprintf(&o->rep[i].endpoint, "%s%s", o->rep[i].base,
		    n >= 3 && strcmp(o->rep[i].base + n - 3, "/v1") == 0 ? "/completions" :
		    "/v1/completions") < 0) {
			o->rep[i].endpoint = NULL;
			o->nrep = i + 1;
			goto fail;
		}
		o->nrep = i + 1;
	}
	o->chat = tokenizer_chat_by_name(opt->chat_format != NULL && opt->chat_format[0] ?
	    opt->chat_format : "chatml");
	if (o->chat < 0) {
		log_err(LOG_ENGINE, "openai.chat_format '%s': one of chatml, qwen3, qwq, "
		    "deepseek-r1, llama3, none", opt->chat_format);
		rc = CERTA_ECONFIG;
		goto fail;
	}
	if (opt->upstream_key_file != NULL && opt->upstream_key_file[0] &&
	    (rc = openai_read_key(opt->upstream_key_file, &o->auth)) != 0)
		goto fail;
	o->capacity = opt->capacity ? opt->capacity : 256;
	o->logprobs = opt->logprobs ? opt->logprobs : 5;
	o->retries = opt->retries;
	o->timeout_ms = opt->timeout_ms ? (long)opt->timeout_ms : 300000;
	o->connect_timeout_ms = opt->connect_timeout_ms ? (long)opt->connect_timeout_ms : 5000;
	curl_multi_setopt(o->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)o->capacity * 2);
	log_info(LOG_ENGINE, "openai engine: model=%s upstreams=%zu (first %s) chat_format=%s "
	    "capacity=%u logprobs=%u timeout=%ldms %s", o->model, o->nrep, o->rep[0].endpoint,
	    tokenizer_chat_name((enum tokenizer_chat)o->chat), o->capacity, o->logprobs,
	    o->timeout_ms, o->auth != NULL ? "with key" : "no key");
	*state = o;
	return 0;

fail:
	openai_close(o);
	return rc;
}

/* ---- Replicas ---------------------------------------------------------------------------- */

/*
 * The replica for x's next try: the problem's own replica (a hash of the prompt, so the chains
 * of one problem share a prefix cache) unless it was tried, is down or holds 8 more requests
 * than the least loaded; else the least loaded untried one that is up; else any untried one.
 * -1 when every replica was tried.
 */
static int
openai_pick(struct openai *o, struct openai_xfer *x)
{
	int64_t now = openai_now_ms();
	size_t i, home = (size_t)(x->home % o->nrep);
	int best = -1, any = -1;

	for (i = 0; i < o->nrep; i++) {
		if (x->tried & (1ull << i))
			continue;
		if (any < 0 || o->rep[i].inflight < o->rep[any].inflight)
			any = (int)i;
		if (o->rep[i].down_until_ms > now)
			continue;
		if (best < 0 || o->rep[i].inflight < o->rep[best].inflight)
			best = (int)i;
	}
	if (!(x->tried & (1ull << home)) && o->rep[home].down_until_ms <= now && best >= 0 &&
	    o->rep[home].inflight <= o->rep[best].inflight + 8)
		return (int)home;
	return best >= 0 ? best : any;
}

/* ---- Transfers --------------------------------------------------------------------------- */

static size_t
openai_on_data(char *p, size_t size, size_t nmemb, void *arg)
{
	struct openai_xfer *x = arg;
	size_t n = size * nmemb, cap;
	char *b;

	if (x->rlen + n + 1 > OPENAI_MAX_RESPONSE) {
		x->overflow = true;
		return 0;
	}
	if (x->rlen + n + 1 > x->rcap) {
		cap = x->rcap ? x->rcap : 4096;
		while (cap < x->rlen + n + 1)
			cap *= 2;
		b = realloc(x->resp, cap);
		if (b == NULL)
			return 0;
		x->resp = b;
		x->rcap = cap;
	}
	memcpy(x->resp + x->rlen, p, n);
	x->rlen += n;
	x->resp[x->rlen] = '\0';
	return n;
}

static void
openai_xfer_stop(struct openai *o, struct openai_xfer *x)
{
	if (x->h != NULL) {
		curl_multi_remove_handle(o->multi, x->h);
		curl_easy_cleanup(x->h);
		x->h = NULL;
		if (x->rep >= 0 && o->rep[x->rep].inflight > 0)
			o->rep[x->rep].inflight--;
	}
	curl_slist_free_all(x->hdrs);
	x->hdrs = NULL;
	x->rep = -1;
}

/* Builds the request of x's phase into x->body. */
static int
openai_xfer_body(struct openai *o, struct openai_xfer *x)
{
	struct oai_request r;
	char *prompt = NULL;
	size_t len;
	int rc;

	memset(&r, 0, sizeof r);
	r.model = o->model;
	r.seed = x->it->seed;
	r.logprobs = o->logprobs;
	if (x->phase == OPENAI_STEP) {
		r.prompt = x->prefix;
		r.max_tokens = x->max_tokens_cap != 0 && x->max_tokens_cap < x->it->max_new_tokens ?
		    x->max_tokens_cap : x->it->max_new_tokens;
		r.temperature = x->it->temperature;
		r.top_p = x->it->top_p;
	} else {
		if (asprintf(&prompt, "%s%s%s", x->prefix, x->step.text, o->suffix) < 0)
			return -ENOMEM;
		r.prompt = prompt;
		r.max_tokens = x->it->probe_max_tokens ? x->it->probe_max_tokens :
		    OPENAI_PROBE_DEFAULT;
		r.temperature = 0;
		r.top_p = 1;
	}
	free(x->body);
	x->body = NULL;
	rc = oai_request_body(&r, &x->body, &len);
	free(prompt);
	return rc;
}

/* Starts x's request on a replica not tried yet.  Returns 0, or -EAGAIN when none is left. */
static int
openai_xfer_start(struct openai *o, struct openai_xfer *x)
{
	int rep = openai_pick(o, x);
	CURL *h;

	if (rep < 0)
		return -EAGAIN;
	h = curl_easy_init();
	if (h == NULL)
		return -ENOMEM;
	x->hdrs = curl_slist_append(NULL, "Content-Type: application/json");
	x->hdrs = curl_slist_append(x->hdrs, "Expect:");
	if (o->auth != NULL)
		x->hdrs = curl_slist_append(x->hdrs, o->auth);
	x->rlen = 0;
	x->overflow = false;
	curl_easy_setopt(h, CURLOPT_URL, o->rep[rep].endpoint);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, x->hdrs);
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, x->body);
	curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(x->body));
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, openai_on_data);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(h, CURLOPT_PRIVATE, x);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, o->timeout_ms);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, o->connect_timeout_ms);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	if (o->ca_file != NULL)
		curl_easy_setopt(h, CURLOPT_CAINFO, o->ca_file);
	if (curl_multi_add_handle(o->multi, h) != CURLM_OK) {
		curl_easy_cleanup(h);
		curl_slist_free_all(x->hdrs);
		x->hdrs = NULL;
		return -ENOMEM;
	}
	x->h = h;
	x->rep = rep;
	x->tried |= 1ull << rep;
	x->waiting = false;
	o->rep[rep].inflight++;
	return 0;
}

/* ---- Steps ------------------------------------------------------------------------------- */

static void
openai_job_free(struct openai *o, struct openai_job *j)
{
	size_t i;

	for (i = 0; i < j->w->n; i++) {
		struct openai_xfer *x = &j->x[i];
		openai_xfer_stop(o, x);
		free(x->prefix);
		free(x->body);
		free(x->resp);
		oai_completion_clear(&x->step);
		oai_completion_clear(&x->probe);
	}
	free(j->x);
	free(j);
}

/*
 * Checks a step whole and finds each item's problem text (its own, or its chain's when it came
 * without) and starting text; nothing changes.  mu held.  Returns 0, an engine error (w->err
 * set), or 1: a chain is busy in a running step (wait).
 */
static int
openai_check(struct openai *o, struct engine_work *w, const char **prompt, const char **base,
    size_t *base_len)
{
	size_t i, fresh = 0;
	bool busy = false;
	int rc;

	rc = engine_check_items(w->items, w->n, w->err, w->errlen);
	if (rc != 0)
		return rc;
	for (i = 0; i < w->n; i++) {
		const struct engine_item *it = &w->items[i];
		struct openai_chain *c = strmap_get(o->chains, it->request_id);
		const char *rt = it->resume_text != NULL ? it->resume_text : "";
		size_t k;

		if (it->model != NULL && it->model[0] && strcmp(it->model, o->model) != 0) {
			snprintf(w->err, w->errlen, "request %s: model %s is not served here (this "
			    "worker serves %s)", it->request_id, it->model, o->model);
			return CERTA_ENOTFOUND;
		}
		if (c != NULL && c->dead)
			c = NULL;
		if (c == NULL)
			fresh++;
		if (c != NULL && c->busy)
			busy = true;
		base[i] = NULL;
		prompt[i] = it->prompt;
		if (!engine_item_has_prompt(it)) {
			/* Continue the chain held, from a boundary it produced. */
			for (k = 0; c != NULL && c->prompt != NULL && k < c->nck; k++)
				if (c->ck[k].tokens == it->resume_tokens)
					break;
			if (c == NULL || c->prompt == NULL)
				return engine_no_state(it, "holds no state for it (never stepped "
				    "here, released, or the worker restarted)", w->err, w->errlen);
			if (k == c->nck)
				return engine_no_state(it, "holds no text for the chain at "
				    "resume_tokens", w->err, w->errlen);
			prompt[i] = c->prompt;
		}
		for (k = 0; c != NULL && k < c->nck; k++) {
			if (c->ck[k].tokens == it->resume_tokens) {
				base[i] = c->text;
				base_len[i] = c->ck[k].len;
				break;
			}
		}
		if (base[i] == NULL && (it->resume_tokens == 0 || rt[0] != '\0')) {
			base[i] = rt;
			base_len[i] = strlen(rt);
		}
		if (base[i] == NULL) {
			snprintf(w->err, w->errlen, "request %s: resume at %llu tokens, but this worker "
			    "holds no text for the chain there and none came with the step (worker "
			    "restarted?): resend it with its text", it->request_id,
			    (unsigned long long)it->resume_tokens);
			return CERTA_EUNAVAIL;
		}
	}
	if (strmap_count(o->chains) + fresh > o->capacity) {
		snprintf(w->err, w->errlen, "worker at capacity: %zu requests active, %zu new, "
		    "capacity %u", strmap_count(o->chains), fresh, o->capacity);
		return CERTA_ECAPACITY;
	}
	return busy ? 1 : 0;
}

/* A step's completion to whoever gave it. */
static void
openai_hand_back(struct openai_src *src, struct engine_work *w)
{
	if (src->feed != NULL)
		engine_feed_done(src->feed, w);
	else
		src->one_done = true;
}

/* Finishes job j (rc 0: commit its chains and results), hands it back, frees it. */
static void
openai_job_end(struct openai *o, struct openai_job *j, struct openai_src *src)
{
	struct engine_work *w = j->w;
	size_t i;

	pthread_mutex_lock(&o->mu);
	for (i = 0; i < w->n; i++) {
		struct openai_chain *c = strmap_get(o->chains, w->items[i].request_id);
		if (c != NULL && c->busy) {
			c->busy = false;
			if (c->dead) {
				strmap_del(o->chains, w->items[i].request_id);
				openai_chain_free(c);
			}
		}
	}
	pthread_mutex_unlock(&o->mu);
	/* w belongs to the loop thread again once handed back: free j first. */
	openai_job_free(o, j);
	openai_hand_back(src, w);
}

/* Fails j with rc and a message; its transfers stop, no chain changes. */
static void
openai_job_fail(struct openai *o, struct openai_job *j, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
openai_job_fail(struct openai *o, struct openai_job *j, int rc, const char *fmt, ...)
{
	va_list ap;
	size_t i;

	if (j->failed)
		return;
	j->failed = true;
	j->w->rc = rc;
	va_start(ap, fmt);
	vsnprintf(j->w->err, j->w->errlen, fmt, ap);
	va_end(ap);
	for (i = 0; i < j->w->n; i++)
		openai_xfer_stop(o, &j->x[i]);
	log_warn(LOG_ENGINE, "step failed: %s", j->w->err);
}

/* The results of a finished job and its chains' new state.  Returns 0 or -ENOMEM. */
static int
openai_commit(struct openai *o, struct openai_job *j)
{
	struct engine_work *w = j->w;
	char **texts;
	size_t i;
	int rc = -ENOMEM;

	texts = calloc(w->n, sizeof *texts);
	if (texts == NULL)
		return -ENOMEM;
	/* Results first: an allocation failure changes nothing. */
	for (i = 0; i < w->n; i++) {
		struct openai_xfer *x = &j->x[i];
		struct engine_result *res = &w->out[i];
		const struct engine_item *it = x->it;
		const char *think;
		size_t plen = strlen(x->prefix) - x->base_len;

		memset(res, 0, sizeof *res);
		if (asprintf(&texts[i], "%s%s", x->prefix + plen, x->step.text) < 0) {
			texts[i] = NULL;
			goto fail;
		}
		res->text = strdup(x->step.text);
		res->new_tokens = x->step.completion_tokens;
		res->total_tokens = it->resume_tokens + x->step.completion_tokens;
		/* "stop": end of sequence; "length" short of max_tokens: the context is full. */
		res->finished = strcmp(x->step.finish_reason, "stop") == 0 ||
		    (strcmp(x->step.finish_reason, "length") == 0 &&
		    x->step.completion_tokens < it->max_new_tokens);
		think = strstr(texts[i], "</think>");
		res->thinking_done = think != NULL;
		res->chain_entropy = oai_mean_entropy(&x->step);
		res->experts_per_token = -1;
		res->probe_confidence = res->probe_min_prob = -1;
		if (res->finished) {
			res->final_answer = oai_boxed(think != NULL ? think + 8 : texts[i]);
			res->probe_answer = res->final_answer ? strdup(res->final_answer) : NULL;
		} else {
			size_t alen;
			uint32_t ntok;
			oai_probe_cut(&x->probe, &alen, &ntok);
			res->probe_answer = strndup(x->probe.text, alen);
			/* What the upstream decoded (its cost), also past the brace. */
			res->probe_tokens = x->probe.completion_tokens;
			oai_token_probs(&x->probe, ntok, &res->probe_confidence,
			    &res->probe_min_prob);
		}
		if (res->text == NULL || res->probe_answer == NULL)
			goto fail;
	}
	pthread_mutex_lock(&o->mu);
	for (i = 0; i < w->n; i++) {
		const struct engine_item *it = &w->items[i];
		struct openai_chain *c = strmap_get(o->chains, it->request_id);
		struct openai_ckpt *ck;
		size_t k, keep = 0, base_len = j->x[i].base_len;

		if (c != NULL && c->dead)
			continue;     /* released while the step ran: openai_job_end frees it */
		if (c == NULL) {
			c = calloc(1, sizeof *c);
			if (c == NULL || strmap_put(o->chains, it->request_id, c, NULL) != 0) {
				free(c);
				log_warn(LOG_ENGINE, "out of memory tracking %s", it->request_id);
				continue;
			}
			c->busy = true;   /* cleared by openai_job_end */
		}
		if (engine_item_has_prompt(it) &&
		    (c->prompt == NULL || strcmp(c->prompt, it->prompt) != 0)) {
			char *dup = strdup(it->prompt);
			if (dup == NULL) {
				/* Forget the chain: a later step must bring its prompt and text. */
				c->nck = 0;
				continue;
			}
			free(c->prompt);
			c->prompt = dup;
		}
		/* Boundaries before this step's start stay, unless the text came with it. */
		for (k = 0; !j->x[i].from_resume && k < c->nck; k++)
			if (c->ck[k].tokens < it->resume_tokens && c->ck[k].len < base_len)
				c->ck[keep++] = c->ck[k];
		ck = realloc(c->ck, (keep + 2) * sizeof *ck);
		if (ck == NULL) {
			/* Forget the chain: a later step must bring its text. */
			c->nck = 0;
			continue;
		}
		c->ck = ck;
		c->ck[keep++] = (struct openai_ckpt){ it->resume_tokens, base_len };
		c->ck[keep++] = (struct openai_ckpt){ w->out[i].total_tokens, strlen(texts[i]) };
		/* A retry goes back a step or two (what certad has recorded): keep the last few. */
		if (keep > OPENAI_MAX_CKPT) {
			memmove(c->ck, c->ck + (keep - OPENAI_MAX_CKPT),
			    OPENAI_MAX_CKPT * sizeof *c->ck);
			keep = OPENAI_MAX_CKPT;
		}
		c->nck = keep;
		free(c->text);
		c->text = texts[i];
		c->len = strlen(texts[i]);
		texts[i] = NULL;
	}
	pthread_mutex_unlock(&o->mu);
	for (i = 0; i < w->n; i++)
		free(texts[i]);      /* those of chains not kept */
	free(texts);
	return 0;
fail:
	for (i = 0; i < w->n; i++) {
		engine_result_clear(&w->out[i]);
		free(texts[i]);
	}
	free(texts);
	return rc;
}

/* Admits step w: checks it, builds its transfers and starts them.  Returns 0 (admitted or
 * completed with an error) or 1 (a chain is busy: try again later). */
static int
openai_admit(struct openai *o, struct engine_work *w, struct openai_src *src)
{
	struct openai_job *j;
	const char **base, **prompt;
	size_t *base_len, i, n = w->n;
	int rc;

	base = calloc(n ? n : 1, sizeof *base);
	prompt = calloc(n ? n : 1, sizeof *prompt);
	base_len = calloc(n ? n : 1, sizeof *base_len);
	j = calloc(1, sizeof *j);
	if (j != NULL)
		j->x = calloc(n ? n : 1, sizeof *j->x);
	if (base == NULL || prompt == NULL || base_len == NULL || j == NULL || j->x == NULL) {
		rc = -ENOMEM;
		snprintf(w->err, w->errlen, "out of memory admitting the step");
		goto done;
	}
	j->w = w;
	pthread_mutex_lock(&o->mu);
	rc = openai_check(o, w, prompt, base, base_len);
	if (rc == 1) {
		pthread_mutex_unlock(&o->mu);
		free(j->x);
		free(j);
		free(base);
		free(prompt);
		free(base_len);
		return 1;
	}
	for (i = 0; rc == 0 && i < n; i++) {
		struct openai_xfer *x = &j->x[i];
		char *chat = NULL;
		size_t clen;

		x->job = j;
		x->it = &w->items[i];
		x->rep = -1;
		x->home = hash_fnv1a(prompt[i], strlen(prompt[i]), 0);
		rc = tokenizer_chat_prompt((enum tokenizer_chat)o->chat, prompt[i],
		    strlen(prompt[i]), &chat, &clen);
		if (rc == 0 && asprintf(&x->prefix, "%s%.*s", chat, (int)base_len[i], base[i]) < 0) {
			x->prefix = NULL;
			rc = -ENOMEM;
		}
		free(chat);
		x->base_len = base_len[i];
		x->from_resume = base[i] == x->it->resume_text;
		if (rc != 0)
			snprintf(w->err, w->errlen, "out of memory building the prompt");
	}
	if (rc == 0) {
		for (i = 0; i < n; i++) {
			struct openai_chain *c = strmap_get(o->chains, w->items[i].request_id);
			if (c != NULL && !c->dead)
				c->busy = true;
		}
	}
	pthread_mutex_unlock(&o->mu);
	if (rc != 0)
		goto done;
	j->pending = n;
	j->next = o->running;
	o->running = j;
	for (i = 0; i < n; i++) {
		struct openai_xfer *x = &j->x[i];
		x->phase = OPENAI_STEP;
		rc = openai_xfer_body(o, x);
		if (rc == 0)
			rc = openai_xfer_start(o, x);
		if (rc != 0) {
			openai_job_fail(o, j, rc, "cannot start the request to the upstream: %s",
			    certa_strerror(rc));
			break;
		}
	}
	free(base);
	free(prompt);
	free(base_len);
	return 0;
done:
	w->rc = rc;
	if (j != NULL && j->x != NULL)
		for (i = 0; i < n; i++)
			free(j->x[i].prefix);
	if (j != NULL)
		free(j->x);
	free(j);
	openai_hand_back(src, w);
	free(base);
	free(prompt);
	free(base_len);
	return 0;
}

/* Failure of x's request on replica `rep` with class rc (CERTA_EUNAVAIL: try another
 * replica; else the job fails) and the words for it. */
static void
openai_xfer_failed(struct openai *o, struct openai_xfer *x, int rep, int rc, const char *what)
{
	const char *url = o->rep[rep].base;

	if (rc == CERTA_EUNAVAIL) {
		__atomic_store_n(&o->rep[rep].down_until_ms, openai_now_ms() + OPENAI_DOWN_MS,
		    __ATOMIC_RELAXED);
		pthread_mutex_lock(&o->mu);
		snprintf(o->last_err, sizeof o->last_err, "upstream %s: %s", url, what);
		pthread_mutex_unlock(&o->mu);
		log_warn(LOG_ENGINE, "upstream %s: %s (request %s)", url, what, x->it->request_id);
		if (openai_xfer_start(o, x) == 0)
			return;
		openai_job_fail(o, x->job, rc, "request %s: upstream %s: %s%s", x->it->request_id,
		    url, what, o->nrep > 1 ? " (every upstream failed)" : "");
		return;
	}
	openai_job_fail(o, x->job, rc, "request %s: upstream %s: %s", x->it->request_id, url,
	    what);
}

/*
 * A step refused because prompt + text + max_tokens exceed the model's context (vLLM and
 * SGLang answer 400): with room left, the step is sent again with max_tokens cut to the room
 * (its "length" finish then reads as the context being full); with none, the chain ends here
 * with no new tokens, as the llm engine ends a chain whose context is full.  Returns 1 when
 * it took the transfer over, 0 when msg is another error.
 */
static int
openai_context_full(struct openai *o, struct openai_xfer *x, const char *msg)
{
	uint32_t room;
	int rc;

	if (!oai_context_room(msg, &room))
		return 0;
	log_info(LOG_ENGINE, "request %s: context full (%s): %s", x->it->request_id, msg,
	    room > 0 ? "shorter step" : "chain ends");
	if (room > 0 && room < x->it->max_new_tokens) {
		x->max_tokens_cap = room;
		x->tried = 0;
		x->tries429 = 0;
		rc = openai_xfer_body(o, x);
		if (rc == 0)
			rc = openai_xfer_start(o, x);
		if (rc != 0)
			openai_job_fail(o, x->job, rc, "cannot resend the step: %s",
			    certa_strerror(rc));
		return 1;
	}
	oai_completion_clear(&x->step);
	x->step.text = strdup("");
	x->step.finish_reason = strdup("length");
	if (x->step.text == NULL || x->step.finish_reason == NULL) {
		openai_job_fail(o, x->job, -ENOMEM, "out of memory");
		return 1;
	}
	x->step.completion_tokens = 0;
	x->phase = OPENAI_DONE;
	x->job->pending--;
	return 1;
}

/* A transfer finished: classify, retry, parse, next phase. */
static void
openai_on_done(struct openai *o, struct openai_xfer *x, CURLcode cc)
{
	struct openai_job *j = x->job;
	char what[700], msg[512], perr[400];
	long status = 0;
	curl_off_t retry_after = 0;
	int rep = x->rep, rc;

	curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_getinfo(x->h, CURLINFO_RETRY_AFTER, &retry_after);
	openai_xfer_stop(o, x);
	if (cc != CURLE_OK) {
		if (x->overflow)
			openai_xfer_failed(o, x, rep, -EPROTO, "response larger than 64 MiB");
		else {
			snprintf(what, sizeof what, "%s", curl_easy_strerror(cc));
			openai_xfer_failed(o, x, rep, CERTA_EUNAVAIL, what);
		}
		return;
	}
	if (status != 200) {
		oai_error_message(x->resp != NULL ? x->resp : "", x->rlen, msg, sizeof msg);
		snprintf(what, sizeof what, "HTTP %ld: %s", status, msg);
		if (status == 429) {
			if (x->tries429 < o->retries) {
				int64_t wait = retry_after > 0 ? (int64_t)retry_after * 1000 :
				    (int64_t)250 << x->tries429;
				x->tries429++;
				x->tried &= ~(1ull << rep);
				x->waiting = true;
				x->start_at_ms = openai_now_ms() +
				    (wait > OPENAI_RETRY_CAP_MS ? OPENAI_RETRY_CAP_MS : wait);
				log_info(LOG_ENGINE, "upstream %s: 429, retry %u of %u in %lld ms",
				    o->rep[rep].base, x->tries429, o->retries,
				    (long long)(x->start_at_ms - openai_now_ms()));
				return;
			}
			snprintf(what + strlen(what), sizeof what - strlen(what),
			    " (after %u retries)", x->tries429);
			openai_xfer_failed(o, x, rep, CERTA_ECAPACITY, what);
		} else if (status >= 500 || status == 401 || status == 403) {
			openai_xfer_failed(o, x, rep, CERTA_EUNAVAIL, what);
		} else if (status == 404) {
			openai_xfer_failed(o, x, rep, CERTA_ENOTFOUND, what);
		} else if (status == 400 && x->phase == OPENAI_STEP && x->max_tokens_cap == 0 &&
		    openai_context_full(o, x, msg)) {
			return;
		} else if (status >= 400) {
			openai_xfer_failed(o, x, rep, CERTA_EINVAL, what);
		} else {
			openai_xfer_failed(o, x, rep, -EPROTO, what);
		}
		return;
	}
	__atomic_store_n(&o->rep[rep].down_until_ms, 0, __ATOMIC_RELAXED);
	rc = oai_parse_completion(x->resp != NULL ? x->resp : "", x->rlen,
	    x->phase == OPENAI_STEP ? &x->step : &x->probe, perr, sizeof perr);
	if (rc != 0) {
		openai_xfer_failed(o, x, rep, rc == -ENOMEM ? -ENOMEM : -EPROTO,
		    rc == -ENOMEM ? "out of memory reading the response" : perr);
		return;
	}
	if (x->phase == OPENAI_STEP &&
	    x->step.completion_tokens > x->it->max_new_tokens) {
		snprintf(what, sizeof what, "response field usage.completion_tokens: %u, more than "
		    "max_tokens %u", x->step.completion_tokens, x->it->max_new_tokens);
		openai_xfer_failed(o, x, rep, -EPROTO, what);
		return;
	}
	if (x->phase == OPENAI_STEP && strcmp(x->step.finish_reason, "stop") != 0 &&
	    !(strcmp(x->step.finish_reason, "length") == 0 &&
	    x->step.completion_tokens < x->it->max_new_tokens)) {
		/* Not finished: probe. */
		x->phase = OPENAI_PROBE;
		x->tried = 0;
		x->tries429 = 0;
		rc = openai_xfer_body(o, x);
		if (rc == 0)
			rc = openai_xfer_start(o, x);
		if (rc != 0)
			openai_job_fail(o, j, rc, "cannot start the probe: %s", certa_strerror(rc));
		return;
	}
	x->phase = OPENAI_DONE;
	j->pending--;
}

/* Unlinks job j from the running list. */
static void
openai_unlink(struct openai *o, struct openai_job *j)
{
	struct openai_job **pp;

	for (pp = &o->running; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == j) {
			*pp = j->next;
			return;
		}
	}
}

/* Takes new steps from src into the queue. */
static void
openai_take(struct openai *o, struct openai_src *src)
{
	struct engine_work *w;
	struct openai_job *j, **tail;

	for (;;) {
		if (src->feed != NULL)
			w = engine_feed_take(src->feed);
		else {
			w = src->one;
			src->one = NULL;
		}
		if (w == NULL)
			return;
		/* Queued as a bare job (no transfers) until admitted. */
		j = calloc(1, sizeof *j);
		if (j == NULL) {
			w->rc = -ENOMEM;
			snprintf(w->err, w->errlen, "out of memory queueing the step");
			openai_hand_back(src, w);
			continue;
		}
		j->w = w;
		for (tail = &o->queued; *tail != NULL; tail = &(*tail)->next)
			;
		*tail = j;
	}
}

/* Runs steps until none is held and none queued (see engine_ops.step_many). */
static void
openai_run(struct openai *o, struct openai_src *src)
{
	struct openai_job *j, *next, **pp;
	CURLMsg *m;
	int left, still;
	size_t i;

	for (;;) {
		int64_t now, next_at = -1;

		openai_take(o, src);
		for (pp = &o->queued; *pp != NULL;) {
			j = *pp;
			if (openai_admit(o, j->w, src) == 1) {
				pp = &j->next;
				continue;
			}
			*pp = j->next;
			free(j);
		}
		if (o->running == NULL) {
			if (o->queued == NULL)
				return;
			/* Waiting on a chain no running step holds: cannot happen; fail it. */
			j = o->queued;
			o->queued = j->next;
			j->w->rc = -EDEADLK;
			snprintf(j->w->err, j->w->errlen, "internal: step waits on no step");
			openai_hand_back(src, j->w);
			free(j);
			continue;
		}
		/* Aborted or detaching (the worker stops): end what we hold now. */
		if (src->feed != NULL && engine_feed_stopping(src->feed))
			for (j = o->running; j != NULL; j = j->next)
				openai_job_fail(o, j, CERTA_ECANCELLED, "the worker is stopping");
		curl_multi_perform(o->multi, &still);
		while ((m = curl_multi_info_read(o->multi, &left)) != NULL) {
			struct openai_xfer *x = NULL;
			if (m->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
			if (x != NULL && !x->job->failed)
				openai_on_done(o, x, m->data.result);
		}
		/* Retries whose time came; finished and failed jobs end. */
		now = openai_now_ms();
		for (j = o->running; j != NULL; j = next) {
			next = j->next;
			for (i = 0; !j->failed && i < j->w->n; i++) {
				struct openai_xfer *x = &j->x[i];
				if (!x->waiting)
					continue;
				if (x->start_at_ms <= now) {
					if (openai_xfer_start(o, x) != 0)
						openai_job_fail(o, j, CERTA_EUNAVAIL, "request %s: no "
						    "upstream left to retry on", x->it->request_id);
				} else if (next_at < 0 || x->start_at_ms < next_at) {
					next_at = x->start_at_ms;
				}
			}
			if (j->failed || j->pending == 0) {
				openai_unlink(o, j);
				if (!j->failed) {
					j->w->rc = openai_commit(o, j);
					if (j->w->rc != 0)
						snprintf(j->w->err, j->w->errlen, "out of memory "
						    "building the results");
				}
				openai_job_end(o, j, src);
			}
		}
		if (o->running != NULL) {
			int ms = 1000;
			if (next_at >= 0 && next_at - now < ms)
				ms = (int)(next_at - now > 0 ? next_at - now : 0);
			curl_multi_poll(o->multi, NULL, 0, ms, NULL);
		}
	}
}

static void
openai_step_many(void *state, struct engine_feed *feed)
{
	struct openai_src src = { .feed = feed };

	openai_run(state, &src);
}

/* Synchronous (an engine not attached: tests, tools). */
static int
openai_step(void *state, const struct engine_item *items, size_t n, struct engine_result *out,
    char *err, size_t errlen)
{
	struct engine_work w = { .items = items, .n = n, .out = out, .err = err,
	    .errlen = errlen };
	struct openai_src src = { .one = &w };

	openai_run(state, &src);
	return w.rc;
}

static void
openai_wake(void *state)
{
	struct openai *o = state;

	curl_multi_wakeup(o->multi);
}

/* Unavailable while every upstream failed within the last OPENAI_DOWN_MS. */
static int
openai_health(void *state, char *err, size_t errlen)
{
	struct openai *o = state;
	int64_t now = openai_now_ms();
	size_t i;

	for (i = 0; i < o->nrep; i++)
		if (__atomic_load_n(&o->rep[i].down_until_ms, __ATOMIC_RELAXED) <= now)
			return 0;
	pthread_mutex_lock(&o->mu);
	snprintf(err, errlen, "every upstream is failing (%zu); last: %s", o->nrep, o->last_err);
	pthread_mutex_unlock(&o->mu);
	return CERTA_EUNAVAIL;
}

static int
openai_release(void *state, const char *request_id)
{
	struct openai *o = state;
	struct openai_chain *c;
	int rc = 0;

	pthread_mutex_lock(&o->mu);
	c = strmap_get(o->chains, request_id);
	if (c == NULL || c->dead)
		rc = CERTA_ENOTFOUND;
	else if (c->busy)
		c->dead = true;
	else {
		strmap_del(o->chains, request_id);
		openai_chain_free(c);
	}
	pthread_mutex_unlock(&o->mu);
	return rc;
}

static void
openai_info(void *state, struct engine_info *out)
{
	struct openai *o = state;

	out->engine = "openai";
	out->model = o->model;
	out->capacity = o->capacity;
	pthread_mutex_lock(&o->mu);
	out->active = (uint32_t)strmap_count(o->chains);
	pthread_mutex_unlock(&o->mu);
	out->models = o->models;
	out->nmodels = 1;
}

const struct engine_ops openai_engine_ops = {
	.name = "openai",
	.open = openai_open,
	.close = openai_close,
	.step = openai_step,
	.release = openai_release,
	.info = openai_info,
	.step_many = openai_step_many,
	.wake = openai_wake,
	.health = openai_health,
	.threaded = true,
};
