/*
 * llm.c — the llm engine: runs a GGUF model (workers/llm/) behind the engine interface.
 *
 * A request is one chain: the problem in the model's chat format, then the tokens it
 * generates.  Its sequence holds the tokens (`toks`) and a KV cache with every token but the
 * last (`kv->len == ntoks - 1`): a decode feeds the last token, samples the next one from the
 * logits and appends it.  So rolling a chain back to any earlier position is only a matter of
 * shortening both (the flat KV keeps its rows; they are overwritten as the chain grows again).
 *
 * Steps are idempotent.  A step starts from the daemon's resume_tokens R (generated tokens it
 * recorded): a sequence that holds at least R generated tokens rolls back to R; one that holds
 * fewer (or none: first sight, or the chain moved here from another worker) is rebuilt from
 * the prompt plus resume_text and continues from there.  An item without prompt (certad sends
 * it only with the text, on placement) continues the held sequence; one it cannot continue is
 * refused CERTA_ENOSTATE (worker.proto "Held state"), never rebuilt from partial context.  Sampling draws u from a hash of
 * (seed, sample_index, generated position), so the same R gives the same tokens on retry.
 *
 * Text: generated tokens go through the tokenizer's streaming decoder, which never emits half
 * a UTF-8 character; a step restarts the decoder at the last token boundary where it held
 * nothing (`clean`), so a step's text never splits a character and retries agree.
 *
 * Probe: the chain's KV is copied into the engine's probe sequence (a fork), the last token
 * and the probe suffix are prefilled, then greedy decoding runs up to probe_max_tokens and
 * stops at the brace that closes the suffix's \boxed{.  The answer's mean (and min) token
 * probability is the probe confidence.  The chain is untouched.
 *
 * Threads: step runs on the engine thread (engine.c); release and info run on the loop
 * thread.  `mu` guards the request map and each sequence's busy/dead flags: a step marks its
 * sequences busy and computes without the lock; a release of a busy sequence removes it from
 * the map and marks it dead, and the step frees it when done.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/error.h"
#include "lib/log.h"
#include "lib/strmap.h"
#include "workers/engine.h"
#include "workers/llm/backend.h"
#include "workers/llm/forward.h"
#include "workers/llm/gguf.h"
#include "workers/llm/kv.h"
#include "workers/llm/model.h"
#include "workers/llm/tokenizer.h"

#define LLM_MAX_BATCH 512         /* tokens per iteration unless llm.max_batch_tokens says */
#define LLM_BLOCK 16              /* KV positions per block of the paged cache */
#define LLM_PROBE_DEFAULT 16      /* probe tokens when the request does not say */
#define LLM_NONE UINT64_MAX

static const char llm_default_suffix[] =
    "... Oh, I suddenly got the answer to the whole problem, **Final Answer**\n\n\\[ \\boxed{";

struct llm_seq {
	char *prompt;                /* the problem as given (a different one rebuilds) */
	uint32_t sample_index;
	uint64_t seed;
	float moe_top_p;             /* MoE routing the KV was computed with */
	struct kv *kv;               /* K/V of toks[0 .. ntoks-1) */
	uint32_t *toks;              /* base tokens, then generated ones */
	uint8_t *clean;              /* per token: the stream holds no bytes after it */
	uint32_t ntoks, cap;
	uint32_t n_base;             /* tokens of the prompt (+ resume text) */
	uint64_t base_gen;           /* generated tokens the base stands for */
	uint64_t think_at;           /* generated count just after </think>, or LLM_NONE */
	uint64_t end_at;             /* generated count at end of generation, or LLM_NONE */
	bool busy, dead;
};

struct llm {
	struct gguf *g;
	struct model *m;
	struct tokenizer *tok;
	struct backend *be;
	struct forward *fwd;
	enum tokenizer_chat chat;
	char *name;                  /* served model name */
	const char *names[1];
	uint32_t n_ctx, n_vocab, capacity;
	size_t seq_bytes;            /* KV bytes of one sequence at full context */
	int32_t think_end;           /* </think> id or -1 */
	uint32_t *suffix;            /* probe suffix tokens */
	size_t nsuffix;
	uint32_t max_batch;          /* tokens per iteration (forward_batch) */
	struct kv_pool *pool;        /* paged KV blocks of every sequence and probe fork */
	pthread_mutex_t mu;          /* guards reqs and the seqs' busy/dead, and fault */
	struct strmap *reqs;         /* request id -> struct llm_seq */
	/* After a device error (forward's -EIO) the engine stops serving: every later step fails
	 * with this, and Info reports it (the worker turns NOT_SERVING). */
	bool faulted;
	char fault[256];
};

/* What a step prepares for one item before it changes anything. */
struct llm_prep {
	struct llm_seq *seq;         /* existing sequence, or a new one (fresh) */
	bool fresh;
	bool rebuild;
	uint32_t *base;              /* rebuild: prompt (+ resume text) tokens */
	size_t nbase;
};

static void
llm_seq_free(struct llm_seq *s)
{
	if (s == NULL)
		return;
	kv_destroy(s->kv);
	free(s->prompt);
	free(s->toks);
	free(s->clean);
	free(s);
}

static void
llm_seq_free_v(void *p)
{
	llm_seq_free(p);
}

/* splitmix64: the sampler's hash. */
static uint64_t
llm_mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

/* u in [0, 1) for generated position pos of (seed, sample): the same on every retry. */
static double
llm_uniform(uint64_t seed, uint32_t sample, uint64_t pos)
{
	uint64_t x = llm_mix(llm_mix(seed) ^ llm_mix(0x5ca1ab1eULL + sample) ^ llm_mix(~pos));

	return (double)(x >> 11) * (1.0 / 9007199254740992.0);
}

static int
llm_cpu_create(const char *name, uint32_t n_threads, struct backend **out, char *err,
    size_t errlen)
{
	int rc = backend_cpu_create(n_threads, out);

	if (rc != 0)
		snprintf(err, errlen, "cpu backend: %s", certa_strerror(rc));
	return rc;
}

/* "cpu-fault:N": the CPU backend whose N-th forward fails as a broken device would
 * (backend_cpu_create_faulty): tests of the device-error path without a GPU. */
static int
llm_cpu_fault_create(const char *name, uint32_t n_threads, struct backend **out, char *err,
    size_t errlen)
{
	unsigned long n = 1;
	char *end;
	int rc;

	if (name[9] == ':') {
		errno = 0;
		n = strtoul(name + 10, &end, 10);
		if (errno != 0 || end == name + 10 || *end != '\0' || n == 0 || n > UINT32_MAX) {
			snprintf(err, errlen, "bad device '%s' (cpu-fault:N, N >= 1)", name);
			return CERTA_ECONFIG;
		}
	}
	rc = backend_cpu_create_faulty(n_threads, (uint32_t)n, out);
	if (rc != 0)
		snprintf(err, errlen, "cpu backend: %s", certa_strerror(rc));
	return rc;
}

#ifdef BACKEND_HAVE_CUDA
/* "cuda" is cuda:0; "cuda:N" device N (as CUDA numbers them: the systemd unit's
 * CUDA_VISIBLE_DEVICES leaves one, device 0). */
static int
llm_cuda_create(const char *name, uint32_t n_threads, struct backend **out, char *err,
    size_t errlen)
{
	unsigned long n = 0;
	char *end;

	if (name[4] == ':') {
		errno = 0;
		n = strtoul(name + 5, &end, 10);
		if (errno != 0 || end == name + 5 || *end != '\0' || n > 1024) {
			snprintf(err, errlen, "bad device '%s' (cuda or cuda:N)", name);
			return CERTA_ECONFIG;
		}
	}
	return backend_cuda_create((int)n, out, err, errlen);
}
#endif

/* Compute backends by llm.device name: a row matches the name itself or, with `indexed`,
 * NAME:N. */
static const struct llm_device {
	const char *name;
	bool indexed;
	int (*create)(const char *name, uint32_t n_threads, struct backend **out, char *err,
	    size_t errlen);
} llm_devices[] = {
	{ "cpu", false, llm_cpu_create },
	{ "cpu-fault", true, llm_cpu_fault_create },
#ifdef BACKEND_HAVE_CUDA
	{ "cuda", true, llm_cuda_create },
#endif
};

static const struct llm_device *
llm_device(const char *name)
{
	size_t i, len;

	if (name == NULL || name[0] == '\0')
		name = "cpu";
	for (i = 0; i < sizeof llm_devices / sizeof llm_devices[0]; i++) {
		len = strlen(llm_devices[i].name);
		if (strncmp(llm_devices[i].name, name, len) == 0 &&
		    (name[len] == '\0' || (llm_devices[i].indexed && name[len] == ':')))
			return &llm_devices[i];
	}
	return NULL;
}

static int
llm_open(const struct engine_options *opt, void **state)
{
	const struct llm_device *dev;
	struct llm *l;
	char err[512] = "";
	const struct model_hparams *hp;
	const char *suffix;
	int32_t *ids = NULL;
	size_t nids = 0, i;
	uint64_t kvmem;
	uint32_t n_blocks = 0;
	int rc;

	if (opt->model_file == NULL || opt->model_file[0] == '\0') {
		log_err(LOG_ENGINE, "llm engine needs a model (--model PATH.gguf)");
		return CERTA_ECONFIG;
	}
	dev = llm_device(opt->device);
	if (dev == NULL) {
#ifdef BACKEND_HAVE_CUDA
		log_err(LOG_ENGINE, "llm.device '%s': unknown (cpu, cuda, cuda:N)", opt->device);
#else
		log_err(LOG_ENGINE, "llm.device '%s': this certa-worker has only the cpu backend "
		    "(the CUDA backend is not built)", opt->device);
#endif
		return CERTA_ECONFIG;
	}
	l = calloc(1, sizeof *l);
	if (l == NULL)
		return -ENOMEM;
	l->think_end = -1;
	rc = gguf_open(opt->model_file, &l->g, err, sizeof err);
	if (rc != 0)
		goto fail_msg;
	rc = model_open(l->g, &l->m, err, sizeof err);
	if (rc != 0)
		goto fail_msg;
	rc = tokenizer_open(l->g, &l->tok, err, sizeof err);
	if (rc != 0)
		goto fail_msg;
	hp = model_hparams(l->m);
	l->n_vocab = hp->n_vocab;
	if (tokenizer_n_vocab(l->tok) > l->n_vocab) {
		snprintf(err, sizeof err, "the tokenizer has %zu tokens but the model only %u "
		    "embeddings", tokenizer_n_vocab(l->tok), l->n_vocab);
		rc = CERTA_EINVAL;
		goto fail_msg;
	}
	l->n_ctx = opt->context != 0 && opt->context < hp->n_ctx_train ? opt->context :
	    hp->n_ctx_train;
	l->chat = tokenizer_chat_format(l->tok);
	if (opt->chat_format != NULL && opt->chat_format[0] != '\0') {
		rc = tokenizer_chat_by_name(opt->chat_format);
		if (rc < 0) {
			snprintf(err, sizeof err, "unknown chat format '%s' (chatml, qwen3, qwq, "
			    "deepseek-r1, llama3, none)", opt->chat_format);
			rc = CERTA_ECONFIG;
			goto fail_msg;
		}
		l->chat = (enum tokenizer_chat)rc;
	}
	l->think_end = tokenizer_token_id(l->tok, "</think>");
	suffix = opt->probe_suffix != NULL && opt->probe_suffix[0] ? opt->probe_suffix :
	    llm_default_suffix;
	rc = tokenizer_encode(l->tok, suffix, strlen(suffix), 0, &ids, &nids);
	if (rc != 0) {
		snprintf(err, sizeof err, "cannot encode the probe suffix: %s", certa_strerror(rc));
		goto fail_msg;
	}
	l->suffix = calloc(nids ? nids : 1, sizeof *l->suffix);
	if (l->suffix == NULL) {
		free(ids);
		rc = -ENOMEM;
		goto fail;
	}
	for (i = 0; i < nids; i++)
		l->suffix[i] = (uint32_t)ids[i];
	l->nsuffix = nids;
	free(ids);
	/* Capacity: KV memory over one sequence at full context, less the probe's fork. */
	l->seq_bytes = model_kv_bytes_per_token(l->m) * l->n_ctx;
	kvmem = opt->kv_memory ? opt->kv_memory : (uint64_t)1 << 30;
	if (kvmem / l->seq_bytes < 2) {
		snprintf(err, sizeof err, "KV memory %llu bytes holds fewer than 2 sequences of "
		    "%u positions (%zu bytes each: one chain and the probe fork); raise "
		    "llm.kv_memory or lower llm.context", (unsigned long long)kvmem, l->n_ctx,
		    l->seq_bytes);
		rc = CERTA_ECONFIG;
		goto fail_msg;
	}
	l->capacity = (uint32_t)(kvmem / l->seq_bytes - 1 > UINT32_MAX ? UINT32_MAX :
	    kvmem / l->seq_bytes - 1);
	{
		/* Blocks: capacity + 1 sequences at full context (the + 1: probe forks). */
		uint64_t per_seq = (l->n_ctx + LLM_BLOCK - 1) / LLM_BLOCK;
		uint64_t nb = per_seq * ((uint64_t)l->capacity + 1);
		if (nb > UINT32_MAX) {
			snprintf(err, sizeof err, "llm.kv_memory too large: %llu blocks",
			    (unsigned long long)nb);
			rc = CERTA_ECONFIG;
			goto fail_msg;
		}
		n_blocks = (uint32_t)nb;
	}
	if (opt->capacity != 0 && opt->capacity < l->capacity)
		l->capacity = opt->capacity;
	rc = dev->create(opt->device && opt->device[0] ? opt->device : "cpu", opt->threads,
	    &l->be, err, sizeof err);
	if (rc != 0) {
		log_err(LOG_ENGINE, "llm.device '%s': %s", opt->device ? opt->device : "cpu", err);
		goto fail;
	}
	/* The KV blocks where the backend wants them (CUDA: device memory). */
	rc = kv_pool_create_mem(hp->n_layer, hp->n_head_kv * hp->head_dim, LLM_BLOCK, n_blocks,
	    l->be->ops->kv_mem ? l->be->ops->kv_mem(l->be) : NULL, &l->pool);
	if (rc != 0) {
		log_err(LOG_ENGINE, "llm engine: cannot allocate the KV pool (%u blocks, %zu bytes; "
		    "llm.kv_memory) on %s: %s", n_blocks, (size_t)n_blocks * LLM_BLOCK *
		    model_kv_bytes_per_token(l->m), l->be->ops->name, strerror(-rc));
		goto fail;
	}
	l->max_batch = opt->max_batch_tokens ? opt->max_batch_tokens : LLM_MAX_BATCH;
	rc = forward_create(l->m, l->be, l->max_batch, &l->fwd);
	if (rc != 0)
		goto fail;
	l->reqs = strmap_new();
	l->name = strdup(opt->alias != NULL && opt->alias[0] ? opt->alias :
	    model_name(l->m)[0] ? model_name(l->m) : hp->arch_name);
	if (l->reqs == NULL || l->name == NULL) {
		rc = -ENOMEM;
		goto fail;
	}
	l->names[0] = l->name;
	pthread_mutex_init(&l->mu, NULL);
	log_info(LOG_ENGINE, "llm engine: model=%s arch=%s layers=%u vocab=%u context=%u "
	    "chat=%s kv=%zu bytes/sequence capacity=%u device=%s threads=%u max_batch_tokens=%u",
	    l->name, hp->arch_name, hp->n_layer, l->n_vocab, l->n_ctx, tokenizer_chat_name(l->chat),
	    l->seq_bytes, l->capacity,
	    opt->device && opt->device[0] ? opt->device : dev->name, opt->threads, l->max_batch);
	*state = l;
	return 0;

fail_msg:
	/* The reader's messages start with the path already. */
	if (strncmp(err, opt->model_file, strlen(opt->model_file)) == 0)
		log_err(LOG_ENGINE, "llm engine: %s", err);
	else
		log_err(LOG_ENGINE, "llm engine: %s: %s", opt->model_file, err);
fail:
	strmap_free(l->reqs, NULL);
	free(l->name);
	kv_pool_free(l->pool);
	forward_destroy(l->fwd);
	backend_destroy(l->be);
	free(l->suffix);
	tokenizer_free(l->tok);
	model_close(l->m);
	gguf_close(l->g);
	free(l);
	return rc;
}

static void
llm_close(void *state)
{
	struct llm *l = state;

	strmap_free(l->reqs, llm_seq_free_v);
	pthread_mutex_destroy(&l->mu);
	if (kv_pool_free_blocks(l->pool) != kv_pool_blocks(l->pool))
		log_warn(LOG_ENGINE, "llm engine: %u KV blocks still held at close",
		    kv_pool_blocks(l->pool) - kv_pool_free_blocks(l->pool));
	kv_pool_free(l->pool);
	free(l->name);
	forward_destroy(l->fwd);
	backend_destroy(l->be);
	free(l->suffix);
	tokenizer_free(l->tok);
	model_close(l->m);
	gguf_close(l->g);
	free(l);
}

/* Generated tokens a sequence holds. */
static uint64_t
llm_seq_gen(const struct llm_seq *s)
{
	return s->base_gen + (s->ntoks - s->n_base);
}

/* The prompt (+ resume text) as tokens, checked against the context. */
static int
llm_encode_base(struct llm *l, const struct engine_item *it, struct llm_prep *p, char *err,
    size_t errlen)
{
	char *prompt = NULL;
	size_t plen, n1 = 0, n2 = 0, i;
	int32_t *a = NULL, *b = NULL;
	int rc;

	rc = tokenizer_chat_prompt(l->chat, it->prompt, strlen(it->prompt), &prompt, &plen);
	if (rc != 0)
		return rc;
	rc = tokenizer_encode(l->tok, prompt, plen, TOKENIZER_SPECIAL, &a, &n1);
	free(prompt);
	if (rc == 0 && it->resume_tokens > 0 && it->resume_text != NULL)
		rc = tokenizer_encode(l->tok, it->resume_text, strlen(it->resume_text), 0, &b, &n2);
	if (rc != 0) {
		snprintf(err, errlen, "request %s: cannot encode the %s: %s", it->request_id,
		    b == NULL && n1 == 0 ? "prompt" : "resume text", certa_strerror(rc));
		rc = CERTA_EINVAL;
		goto out;
	}
	if (n1 + n2 == 0 || n1 + n2 >= l->n_ctx) {
		snprintf(err, errlen, "request %s: the prompt%s is %zu tokens but the context "
		    "holds %u (it needs room for at least one generated token)", it->request_id,
		    n2 ? " with the resumed text" : "", n1 + n2, l->n_ctx);
		rc = CERTA_EINVAL;
		goto out;
	}
	p->base = malloc((n1 + n2) * sizeof *p->base);
	if (p->base == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	for (i = 0; i < n1; i++)
		p->base[i] = (uint32_t)a[i];
	for (i = 0; i < n2; i++)
		p->base[n1 + i] = (uint32_t)b[i];
	p->nbase = n1 + n2;
out:
	free(a);
	free(b);
	return rc;
}

/* Whether an existing sequence can serve the item by rolling back (else it is rebuilt).  An
 * item without prompt continues the sequence's own. */
static bool
llm_seq_matches(const struct llm_seq *s, const struct engine_item *it)
{
	return s->prompt != NULL &&
	    (!engine_item_has_prompt(it) || strcmp(s->prompt, it->prompt) == 0) &&
	    s->sample_index == it->sample_index && s->seed == it->seed &&
	    s->moe_top_p == it->moe_top_p && it->resume_tokens >= s->base_gen && it->resume_tokens <= llm_seq_gen(s);
}

/* Finds a sequence whose KV already holds s's base (all but its last token): sc chains of one
 * program share the prompt.  Under the map lock, so the donor cannot be freed meanwhile. */
struct llm_donor_ctx {
	const struct llm_seq *s;
	const struct llm_seq *donor;
};

static int
llm_donor_cb(const char *key, void *value, void *arg)
{
	struct llm_donor_ctx *c = arg;
	const struct llm_seq *d = value, *s = c->s;

	(void)key;
	if (d == s || d->dead || d->n_base != s->n_base || d->ntoks < s->n_base ||
	    d->moe_top_p != s->moe_top_p ||
	    d->kv->len + 1 < s->n_base || d->base_gen == LLM_NONE ||
	    memcmp(d->toks, s->toks, (s->n_base - 1) * sizeof *s->toks) != 0)
		return 0;
	c->donor = d;
	return 1;
}

/* Forks a donor's prefix into s (s->kv empty).  True when it did: no prefill needed. */
static bool
llm_share_prefix(struct llm *l, struct llm_seq *s)
{
	struct llm_donor_ctx c = { s, NULL };
	struct kv *kv = NULL;

	pthread_mutex_lock(&l->mu);
	(void)strmap_foreach(l->reqs, llm_donor_cb, &c);
	if (c.donor != NULL && kv_fork(c.donor->kv, s->n_base - 1, &kv) != 0)
		kv = NULL;
	pthread_mutex_unlock(&l->mu);
	if (kv == NULL)
		return false;
	kv_destroy(s->kv);
	s->kv = kv;
	log_debug(LOG_ENGINE, "prefix of %u tokens shared, not prefilled", s->n_base - 1);
	return true;
}

/* Resets s to the prepared base; its KV is empty (the iterations prefill it) unless another
 * chain holds the same base, whose prefix it then shares. */
static int
llm_seq_reset(struct llm *l, struct llm_seq *s, const struct engine_item *it,
    struct llm_prep *p)
{
	size_t i;

	if (s->cap < l->n_ctx) {
		uint32_t *t = realloc(s->toks, l->n_ctx * sizeof *t);
		uint8_t *c;
		if (t == NULL)
			return -ENOMEM;
		s->toks = t;
		c = realloc(s->clean, l->n_ctx);
		if (c == NULL)
			return -ENOMEM;
		s->clean = c;
		s->cap = l->n_ctx;
	}
	if (s->prompt == NULL || strcmp(s->prompt, it->prompt) != 0) {
		char *dup = strdup(it->prompt);
		if (dup == NULL)
			return -ENOMEM;
		free(s->prompt);
		s->prompt = dup;
	}
	s->sample_index = it->sample_index;
	s->seed = it->seed;
	s->moe_top_p = it->moe_top_p;
	memcpy(s->toks, p->base, p->nbase * sizeof *s->toks);
	memset(s->clean, 1, p->nbase);
	s->ntoks = s->n_base = (uint32_t)p->nbase;
	s->base_gen = it->resume_tokens;
	s->end_at = LLM_NONE;
	s->think_at = LLM_NONE;
	for (i = 0; i < p->nbase && l->think_end >= 0; i++)
		if (s->toks[i] == (uint32_t)l->think_end)
			s->think_at = s->base_gen;
	s->kv->len = 0;
	kv_trim(s->kv);
	if (s->ntoks > 1)
		(void)llm_share_prefix(l, s);
	return 0;
}

/* Rolls s back to R generated tokens (base_gen <= R <= what it holds). */
static void
llm_seq_rollback(struct llm_seq *s, uint64_t r)
{
	s->ntoks = s->n_base + (uint32_t)(r - s->base_gen);
	s->kv->len = s->ntoks - 1;
	kv_trim(s->kv);
	if (s->think_at != LLM_NONE && s->think_at > r)
		s->think_at = LLM_NONE;
	if (s->end_at != LLM_NONE && s->end_at > r)
		s->end_at = LLM_NONE;
}

/* UTF-8 lead byte: how many continuation bytes follow (0 for ASCII and stray bytes). */
static int
llm_utf8_need(unsigned char c)
{
	if (c >= 0xf0 && c < 0xf8)
		return 3;
	if (c >= 0xe0)
		return c < 0xf0 ? 2 : 0;
	if (c >= 0xc2)
		return 1;
	return 0;
}

/* UTF-8 continuation bytes still expected after token tok's bytes (need: before them).
 * Control tokens print nothing; user-defined ones are whole text. */
static int
llm_need_after(struct llm *l, int need, uint32_t tok)
{
	char *bytes = NULL;
	size_t nb, b;
	int32_t id = (int32_t)tok;

	if (tokenizer_token_type(l->tok, id) != TOKENIZER_T_NORMAL)
		return tokenizer_token_type(l->tok, id) == TOKENIZER_T_CONTROL ? need : 0;
	if (tokenizer_decode(l->tok, &id, 1, false, &bytes, &nb) != 0)
		return 0;
	for (b = 0; b < nb; b++) {
		unsigned char c = (unsigned char)bytes[b];
		if (need > 0 && (c & 0xc0) == 0x80)
			need--;
		else
			need = llm_utf8_need(c);
	}
	free(bytes);
	return need;
}

/* Appends len bytes to a growing string. */
static int
llm_buf_add(char **buf, size_t *len, size_t *cap, const char *p, size_t n)
{
	if (*len + n + 1 > *cap) {
		size_t nc = (*cap ? *cap * 2 : 256);
		char *b;
		while (nc < *len + n + 1)
			nc *= 2;
		b = realloc(*buf, nc);
		if (b == NULL)
			return -ENOMEM;
		*buf = b;
		*cap = nc;
	}
	memcpy(*buf + *len, p, n);
	*len += n;
	(*buf)[*len] = '\0';
	return 0;
}

/* The last \boxed{...} of text (balanced braces), or "" — the chain's final answer. */
static char *
llm_boxed(const char *text)
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

/* The chain's final answer: the last boxed answer after </think> (or anywhere). */
static char *
llm_final_answer(struct llm *l, const struct llm_seq *s)
{
	char *text = NULL, *ans;
	size_t len, from = s->n_base, i;
	int32_t *ids;

	for (i = s->n_base; i < s->ntoks && l->think_end >= 0; i++)
		if (s->toks[i] == (uint32_t)l->think_end)
			from = i + 1;
	ids = malloc((s->ntoks - from + 1) * sizeof *ids);
	if (ids == NULL)
		return NULL;
	for (i = from; i < s->ntoks; i++)
		ids[i - from] = (int32_t)s->toks[i];
	if (tokenizer_decode(l->tok, ids, s->ntoks - from, false, &text, &len) != 0) {
		free(ids);
		return NULL;
	}
	free(ids);
	ans = llm_boxed(text);
	free(text);
	return ans;
}

/* Probability of token id under softmax(logits). */
static double
llm_prob(const float *logits, uint32_t n, uint32_t id)
{
	float mx = logits[0];
	double sum = 0;
	uint32_t i;

	for (i = 1; i < n; i++)
		if (logits[i] > mx)
			mx = logits[i];
	for (i = 0; i < n; i++)
		sum += exp((double)logits[i] - mx);
	return exp((double)logits[id] - mx) / sum;
}

/* Entropy (nats) of softmax(logits). */
static double
llm_entropy(const float *logits, uint32_t n)
{
	float mx = logits[0];
	double sum = 0, wsum = 0, z;
	uint32_t i;

	for (i = 1; i < n; i++)
		if (logits[i] > mx)
			mx = logits[i];
	for (i = 0; i < n; i++) {
		double d = (double)logits[i] - mx, e = exp(d);
		sum += e;
		wsum += e * d;
	}
	/* H = log Z - E[d], with d = logit - max and Z = sum exp(d). */
	z = log(sum) - wsum / sum;
	return z > 0 ? z : 0;
}

/*
 * ---- the batched step ----------------------------------------------------------------------
 *
 * Every item of every step taken together is a piece of work with a phase (table below); each
 * iteration asks every unfinished piece what it wants to run (a decode token, probe tokens, a
 * chunk of prefill), packs them into one forward_batch of at most max_batch tokens (decodes
 * first, then prefill chunks) and hands each its logits.  forward_batch gives a sequence the
 * same logits as a run of its own, so the tokens are those of the one-at-a-time path.
 */
enum llm_phase {
	LLM_PH_PREFILL,              /* the chain's KV up to its last token */
	LLM_PH_DECODE,               /* up to max_new_tokens sampled tokens */
	LLM_PH_PROBE_IN,             /* the fork: last token + probe suffix */
	LLM_PH_PROBE,                /* greedy answer tokens */
	LLM_PH_DONE,
};

struct llm_work {
	struct llm_job *job;         /* its step */
	const struct engine_item *it;
	struct engine_result *res;
	struct llm_seq *s;
	enum llm_phase ph;
	long leader;                 /* piece whose prefill this one waits for, or -1 */
	bool share;                  /* then try to share a prefix (sc chains of one prompt) */
	float *logits;               /* [n_vocab] */
	/* this iteration */
	struct kv *fkv;
	const uint32_t *feed;
	uint32_t nfeed;
	bool want_logits;
	/* decode */
	struct tokenizer_stream *st;
	char *text;
	size_t tlen, tcap;
	uint32_t k;
	uint64_t start;
	bool full;
	int need;
	double hsum;                 /* entropies of the distributions sampled from */
	uint32_t hn;
	uint64_t expert_uses, moe_runs; /* experts run / (tokens x MoE layers) */
	/* probe */
	struct kv *pk;
	uint32_t *pin, npin, pdone, pmax, pn, ptok;
	char *ans;
	size_t alen, acap;
	double psum, pmin;
	int depth;
};

/* Frees a piece's scratch (not its results). */
static void
llm_work_clear(struct llm_work *w)
{
	tokenizer_stream_free(w->st);
	w->st = NULL;
	free(w->text);
	w->text = NULL;
	kv_destroy(w->pk);
	w->pk = NULL;
	free(w->pin);
	w->pin = NULL;
	free(w->ans);
	w->ans = NULL;
	free(w->logits);
	w->logits = NULL;
}

/* Decode phase entry: warms the decoder from the last clean boundary. */
static int
llm_decode_begin(struct llm *l, struct llm_work *w)
{
	struct llm_seq *s = w->s;
	const char *o;
	size_t olen;
	uint32_t j;
	int rc = 0;

	memset(w->res, 0, sizeof *w->res);
	w->st = tokenizer_stream_new(l->tok, false);
	if (w->st == NULL)
		return -ENOMEM;
	for (j = s->ntoks; j > s->n_base && !s->clean[j - 1]; j--)
		;
	for (; j < s->ntoks && rc == 0; j++) {
		rc = tokenizer_stream_put(w->st, (int32_t)s->toks[j], &o, &olen);
		w->need = llm_need_after(l, w->need, s->toks[j]);
	}
	w->start = llm_seq_gen(s);
	w->ph = LLM_PH_DECODE;
	return rc;
}

/* Decode phase exit: the step's text and flags. */
static int
llm_decode_end(struct llm *l, struct llm_work *w)
{
	struct llm_seq *s = w->s;
	struct engine_result *res = w->res;
	const char *o;
	size_t olen;
	int rc = 0;

	if (s->end_at != LLM_NONE && tokenizer_stream_flush(w->st, &o, &olen) == 0)
		rc = llm_buf_add(&w->text, &w->tlen, &w->tcap, o, olen);
	tokenizer_stream_free(w->st);
	w->st = NULL;
	if (rc != 0)
		return rc;
	res->text = w->text != NULL ? w->text : strdup("");
	w->text = NULL;
	res->new_tokens = (uint32_t)(llm_seq_gen(s) - w->start);
	res->total_tokens = llm_seq_gen(s);
	res->finished = s->end_at != LLM_NONE;
	res->thinking_done = s->think_at != LLM_NONE;
	res->probe_confidence = res->probe_min_prob = -1;
	res->chain_entropy = w->hn > 0 ? w->hsum / w->hn : -1;
	res->experts_per_token = w->moe_runs > 0 ?
	    (double)w->expert_uses / (double)w->moe_runs : (w->hn > 0 ? 0 : -1);
	if (res->finished) {
		res->final_answer = llm_final_answer(l, s);
		if (w->full)
			log_info(LOG_ENGINE, "request %s: context of %u positions full",
			    w->it->request_id, l->n_ctx);
	}
	if (res->text == NULL || (res->finished && res->final_answer == NULL))
		return -ENOMEM;
	return 0;
}

/* Probe entry: a finished chain's probe answer is its final answer; else fork the chain. */
static int
llm_probe_begin(struct llm *l, struct llm_work *w)
{
	struct llm_seq *s = w->s;
	struct engine_result *res = w->res;
	int rc;

	w->ph = LLM_PH_DONE;
	if (res->finished) {
		res->probe_answer = strdup(res->final_answer);
		return res->probe_answer ? 0 : -ENOMEM;
	}
	w->pmax = w->it->probe_max_tokens ? w->it->probe_max_tokens : LLM_PROBE_DEFAULT;
	if ((uint64_t)s->ntoks + l->nsuffix + w->pmax > l->n_ctx) {
		res->probe_answer = strdup("");
		return res->probe_answer ? 0 : -ENOMEM;
	}
	/* Fork: the chain's blocks are shared; the first write copies the last partial one. */
	if ((rc = kv_fork(s->kv, s->kv->len, &w->pk)) != 0)
		return rc;
	w->npin = (uint32_t)(1 + l->nsuffix);
	w->pin = malloc(w->npin * sizeof *w->pin);
	w->st = tokenizer_stream_new(l->tok, false);
	if (w->pin == NULL || w->st == NULL)
		return -ENOMEM;
	w->pin[0] = s->toks[s->ntoks - 1];
	memcpy(w->pin + 1, l->suffix, l->nsuffix * sizeof *w->pin);
	w->pdone = w->pn = 0;
	w->psum = 0;
	w->pmin = 1;
	w->depth = 1;
	w->ph = LLM_PH_PROBE_IN;
	return 0;
}

/* Probe exit (skipped: no answer, no tokens). */
static int
llm_probe_end(struct llm_work *w, bool skipped)
{
	struct engine_result *res = w->res;
	const char *o;
	size_t olen;
	int rc = 0;

	if (skipped) {
		free(w->ans);
		w->ans = NULL;
		w->pn = 0;
	} else if (w->depth > 0 && tokenizer_stream_flush(w->st, &o, &olen) == 0) {
		rc = llm_buf_add(&w->ans, &w->alen, &w->acap, o, olen);
	}
	res->probe_answer = w->ans != NULL ? w->ans : strdup("");
	w->ans = NULL;
	kv_destroy(w->pk);
	w->pk = NULL;
	tokenizer_stream_free(w->st);
	w->st = NULL;
	w->ph = LLM_PH_DONE;
	if (rc != 0 || res->probe_answer == NULL)
		return rc != 0 ? rc : -ENOMEM;
	res->probe_tokens = w->pn;
	if (w->pn > 0) {
		res->probe_confidence = w->psum / w->pn;
		res->probe_min_prob = w->pmin;
	}
	return 0;
}

/* Moves a piece through the phases that need no compute and says what it wants to run now
 * (nfeed 0: nothing this iteration, e.g. waiting for its leader's prefill, or done). */
static int
llm_work_plan(struct llm *l, struct llm_work *w, const struct llm_work *all)
{
	struct llm_seq *s = w->s;
	int rc;

	w->nfeed = 0;
	w->want_logits = false;
	for (;;) {
		switch (w->ph) {
		case LLM_PH_PREFILL:
			if (w->leader >= 0 && all[w->leader].ph == LLM_PH_PREFILL)
				return 0;
			w->leader = -1;
			if (w->share) {
				w->share = false;
				if (s->kv->len == 0)
					(void)llm_share_prefix(l, s);
			}
			if (s->kv->len + 1 < s->ntoks) {
				w->fkv = s->kv;
				w->feed = s->toks + s->kv->len;
				w->nfeed = s->ntoks - 1 - s->kv->len;
				return 0;
			}
			if ((rc = llm_decode_begin(l, w)) != 0)
				return rc;
			break;
		case LLM_PH_DECODE:
			if (w->k < w->it->max_new_tokens && s->end_at == LLM_NONE &&
			    s->ntoks >= l->n_ctx) {
				w->full = true;
				s->end_at = llm_seq_gen(s);
			}
			if (w->k < w->it->max_new_tokens && s->end_at == LLM_NONE) {
				w->fkv = s->kv;
				w->feed = &s->toks[s->ntoks - 1];
				w->nfeed = 1;
				w->want_logits = true;
				return 0;
			}
			if ((rc = llm_decode_end(l, w)) != 0 || (rc = llm_probe_begin(l, w)) != 0)
				return rc;
			break;
		case LLM_PH_PROBE_IN:
			w->fkv = w->pk;
			w->feed = w->pin + w->pdone;
			w->nfeed = w->npin - w->pdone;
			w->want_logits = true;
			return 0;
		case LLM_PH_PROBE:
			w->fkv = w->pk;
			w->feed = &w->ptok;
			w->nfeed = 1;
			w->want_logits = true;
			return 0;
		case LLM_PH_DONE:
			return 0;
		}
	}
}

/* After fs->n of the wanted tokens ran (logits ready when they were all of them); moe_layers
 * as forward_stats says (0: dense). */
static int
llm_work_after(struct llm *l, struct llm_work *w, const struct forward_seq *fs,
    uint32_t moe_layers)
{
	uint32_t n = fs->n;
	struct llm_seq *s = w->s;
	const struct engine_item *it = w->it;
	const char *o;
	size_t olen, k;
	uint32_t tok;
	uint64_t g;
	double p;
	int rc = 0;

	switch (w->ph) {
	case LLM_PH_PREFILL:
		return 0;                /* kv->len moved */
	case LLM_PH_DECODE:
		g = llm_seq_gen(s);
		w->expert_uses += fs->expert_uses;
		w->moe_runs += (uint64_t)n * moe_layers;
		w->hsum += llm_entropy(w->logits, l->n_vocab);
		w->hn++;
		tok = l->be->ops->sample(l->be, w->logits, l->n_vocab, it->temperature,
		    it->top_p > 0 ? it->top_p : 1.0f, llm_uniform(it->seed, it->sample_index, g),
		    NULL);
		s->toks[s->ntoks++] = tok;
		w->k++;
		if (l->think_end >= 0 && tok == (uint32_t)l->think_end && s->think_at == LLM_NONE)
			s->think_at = g + 1;
		if (tokenizer_is_eog(l->tok, (int32_t)tok)) {
			s->clean[s->ntoks - 1] = 1;
			s->end_at = g + 1;
			return 0;
		}
		rc = tokenizer_stream_put(w->st, (int32_t)tok, &o, &olen);
		if (rc == 0)
			rc = llm_buf_add(&w->text, &w->tlen, &w->tcap, o, olen);
		/* Clean after this token: no UTF-8 character left open by its bytes. */
		w->need = llm_need_after(l, w->need, tok);
		s->clean[s->ntoks - 1] = w->need == 0;
		return rc;
	case LLM_PH_PROBE_IN:
		w->pdone += n;
		if (w->pdone < w->npin)
			return 0;
		w->ph = LLM_PH_PROBE;   /* the suffix's logits give the first answer token */
		/* FALLTHROUGH */
	case LLM_PH_PROBE:
		tok = l->be->ops->argmax(l->be, w->logits, l->n_vocab);
		if (tokenizer_is_eog(l->tok, (int32_t)tok))
			return llm_probe_end(w, false);
		p = llm_prob(w->logits, l->n_vocab, tok);
		w->psum += p;
		w->pmin = p < w->pmin ? p : w->pmin;
		w->pn++;
		if ((rc = tokenizer_stream_put(w->st, (int32_t)tok, &o, &olen)) != 0)
			return rc;
		for (k = 0; k < olen; k++) {
			if (o[k] == '{')
				w->depth++;
			else if (o[k] == '}' && --w->depth == 0)
				break;
		}
		if ((rc = llm_buf_add(&w->ans, &w->alen, &w->acap, o, k)) != 0)
			return rc;
		if (w->depth == 0 || w->pn == w->pmax)
			return llm_probe_end(w, false);
		w->ptok = tok;
		return 0;
	case LLM_PH_DONE:
		return 0;
	}
	return 0;
}

/* A compute error for piece w (rc, err): a probe that found no KV block is skipped (the chain
 * is fine); anything else fails the piece's step. */
/* A device error: the engine stops serving (once; logged).  Any thread. */
static void
llm_set_fault(struct llm *l, const char *msg)
{
	bool first;

	pthread_mutex_lock(&l->mu);
	first = !l->faulted;
	if (first) {
		snprintf(l->fault, sizeof l->fault, "%s", msg);
		l->faulted = true;
	}
	pthread_mutex_unlock(&l->mu);
	if (first)
		log_err(LOG_ENGINE, "llm engine: %s: no longer serving", msg);
}

/* Whether a device error stopped the engine: true with the message in err. */
static bool
llm_faulted(struct llm *l, char *err, size_t errlen)
{
	bool f;

	pthread_mutex_lock(&l->mu);
	f = l->faulted;
	if (f)
		snprintf(err, errlen, "worker unhealthy after a device error: %.200s",
		    l->fault);
	pthread_mutex_unlock(&l->mu);
	return f;
}

static int
llm_work_error(struct llm_work *w, int rc, const char *err)
{
	if ((w->ph == LLM_PH_PROBE_IN || w->ph == LLM_PH_PROBE) && rc == CERTA_ECAPACITY) {
		log_warn(LOG_ENGINE, "probe skipped: %s", err);
		return llm_probe_end(w, true);
	}
	if (w->ph == LLM_PH_PREFILL) {
		/* Unusable until rebuilt: no resume position matches it. */
		w->s->ntoks = w->s->n_base = 0;
		w->s->base_gen = LLM_NONE;
		w->s->kv->len = 0;
	}
	return rc;
}

/* Validates one step's items and commits their sequences (busy); nothing changes on error.
 * *conflict (and 0) when an item's sequence is busy in this run: the step waits a round. */
static int
llm_prepare(struct llm *l, const struct engine_item *items, size_t n, struct llm_prep *prep,
    bool *conflict, char *err, size_t errlen)
{
	size_t i, fresh = 0, active;
	int rc = 0;

	*conflict = false;
	rc = engine_check_items(items, n, err, errlen);
	if (rc != 0)
		return rc;
	if (llm_faulted(l, err, errlen))
		return -EIO;
	for (i = 0; i < n; i++) {
		const struct engine_item *it = &items[i];
		if (it->model != NULL && it->model[0] != '\0' && strcmp(it->model, l->name) != 0) {
			snprintf(err, errlen, "request %s: model %s is not served here (this worker "
			    "serves %s)", it->request_id, it->model, l->name);
			return CERTA_ENOTFOUND;
		}
	}
	pthread_mutex_lock(&l->mu);
	for (i = 0; i < n; i++) {
		prep[i].seq = strmap_get(l->reqs, items[i].request_id);
		if (prep[i].seq == NULL)
			fresh++;
		else if (prep[i].seq->busy)
			*conflict = true;
	}
	active = strmap_count(l->reqs);
	pthread_mutex_unlock(&l->mu);
	if (*conflict)
		return 0;
	for (i = 0; i < n; i++) {
		/* An item without prompt continues its sequence, or there is nothing to continue
		 * (rebuilding needs the prompt and the text): before capacity, which a worker
		 * that restarted does not lack. */
		if (engine_item_has_prompt(&items[i]) ||
		    (prep[i].seq != NULL && llm_seq_matches(prep[i].seq, &items[i])))
			continue;
		return engine_no_state(&items[i], prep[i].seq == NULL ? "holds no sequence for "
		    "it (never stepped here, released, or the worker restarted)" : "cannot "
		    "continue its sequence from resume_tokens with these parameters", err, errlen);
	}
	if (active + fresh > l->capacity) {
		snprintf(err, errlen, "worker at capacity: %zu sequences active, %zu new, capacity "
		    "%u (llm.kv_memory / %zu bytes per sequence)", active, fresh, l->capacity,
		    l->seq_bytes);
		return CERTA_ECAPACITY;
	}
	for (i = 0; i < n; i++) {
		struct llm_prep *p = &prep[i];
		if (p->seq == NULL || !llm_seq_matches(p->seq, &items[i])) {
			p->rebuild = true;
			rc = llm_encode_base(l, &items[i], p, err, errlen);
			if (rc != 0)
				goto fail;
		}
		if (p->seq == NULL) {
			p->seq = calloc(1, sizeof *p->seq);
			if (p->seq == NULL) {
				rc = -ENOMEM;
				goto fail;
			}
			p->fresh = true;
			rc = kv_paged_create(l->pool, l->n_ctx, &p->seq->kv);
			if (rc != 0) {
				snprintf(err, errlen, "request %s: no memory for its KV cache (%zu "
				    "bytes)", items[i].request_id, l->seq_bytes);
				rc = CERTA_ECAPACITY;
				goto fail;
			}
		}
	}
	/* Commit: the new sequences exist from here on, all marked busy. */
	pthread_mutex_lock(&l->mu);
	for (i = 0; i < n; i++) {
		if (prep[i].fresh &&
		    strmap_put(l->reqs, items[i].request_id, prep[i].seq, NULL) != 0) {
			/* Out of memory: the sequence lives for this step only. */
			prep[i].seq->dead = true;
		}
		prep[i].seq->busy = true;
		prep[i].fresh = false;
	}
	pthread_mutex_unlock(&l->mu);
	return 0;

fail:
	for (i = 0; i < n; i++) {
		if (prep[i].fresh)
			llm_seq_free(prep[i].seq);
		prep[i].fresh = false;
		prep[i].seq = NULL;
		free(prep[i].base);
		prep[i].base = NULL;
	}
	return rc;
}

/* A step in a run: its work, its items' preparation, and whether it waits for admission. */
struct llm_job {
	struct engine_work *wk;
	struct llm_prep *prep;       /* [wk->n] */
	size_t left;                 /* pieces not done (counted after each iteration) */
	bool pending;                /* not admitted yet: a sequence it needs is busy */
	struct llm_job *next;
};

/* Where steps come from and go to: the engine's feed, or one synchronous step. */
struct llm_src {
	struct engine_work *(*take)(void *ctx);
	void (*done)(void *ctx, struct engine_work *w);
	void *ctx;
};

/* The run: its steps (in arrival order), their pieces, and per-iteration scratch. */
struct llm_run {
	struct llm_job *jobs, **tail;
	struct llm_work *w;
	size_t nw, capw;
	struct forward_seq *fs;
	size_t *who, *remap;
};

/* Fails job j (wk->rc and err[] set): its pieces stop, its results are cleared. */
static void
llm_fail_job(struct llm_run *r, struct llm_job *j)
{
	struct engine_work *wk = j->wk;
	size_t i;

	for (i = 0; i < r->nw; i++) {
		if (r->w[i].job != j)
			continue;
		llm_work_clear(&r->w[i]);
		engine_result_clear(r->w[i].res);
		r->w[i].ph = LLM_PH_DONE;
	}
	if (wk->err[0] == '\0')
		snprintf(wk->err, wk->errlen, "%s", certa_strerror(wk->rc));
}

/* Room for n more pieces (and the per-iteration arrays). */
static int
llm_run_grow(struct llm_run *r, size_t n)
{
	size_t cap = r->capw ? r->capw : 16;
	void *p;

	if (r->nw + n <= r->capw)
		return 0;
	while (cap < r->nw + n)
		cap *= 2;
	if ((p = realloc(r->w, cap * sizeof *r->w)) == NULL)
		return -ENOMEM;
	r->w = p;
	if ((p = realloc(r->fs, cap * sizeof *r->fs)) == NULL)
		return -ENOMEM;
	r->fs = p;
	if ((p = realloc(r->who, cap * sizeof *r->who)) == NULL)
		return -ENOMEM;
	r->who = p;
	if ((p = realloc(r->remap, cap * sizeof *r->remap)) == NULL)
		return -ENOMEM;
	r->remap = p;
	r->capw = cap;
	return 0;
}

/*
 * Admits a pending step: validates and commits its sequences (llm_prepare), then adds a piece
 * per item (rolled back, or reset for a rebuild; a rebuild whose base an earlier piece is
 * still prefilling waits for it and shares its prefix).  Returns false when it must wait
 * (a sequence it needs is busy in this run); a failed step gets wk->rc and no pieces.
 */
static bool
llm_admit(struct llm *l, struct llm_run *r, struct llm_job *j)
{
	struct engine_work *wk = j->wk;
	bool conflict;
	size_t i, o;

	memset(j->prep, 0, wk->n * sizeof *j->prep);
	wk->err[0] = '\0';
	wk->rc = llm_prepare(l, wk->items, wk->n, j->prep, &conflict, wk->err, wk->errlen);
	if (conflict) {
		memset(j->prep, 0, wk->n * sizeof *j->prep);
		return false;
	}
	j->pending = false;
	if (wk->rc != 0) {
		for (i = 0; i < wk->n; i++)
			j->prep[i].seq = NULL;
		return true;
	}
	if (llm_run_grow(r, wk->n) != 0) {
		wk->rc = -ENOMEM;
		snprintf(wk->err, wk->errlen, "out of memory");
		return true;             /* its sequences are unmarked when it finishes */
	}
	for (i = 0; i < wk->n; i++) {
		struct llm_prep *p = &j->prep[i];
		struct llm_work *x = &r->w[r->nw++];
		memset(x, 0, sizeof *x);
		x->job = j;
		x->it = &wk->items[i];
		x->res = &wk->out[i];
		x->s = p->seq;
		x->leader = -1;
		x->ph = LLM_PH_PREFILL;
		memset(x->res, 0, sizeof *x->res);
		x->logits = malloc(l->n_vocab * sizeof *x->logits);
		if (x->logits == NULL && wk->rc == 0)
			wk->rc = -ENOMEM;
		if (wk->rc != 0)
			continue;
		if (!p->rebuild) {
			llm_seq_rollback(p->seq, x->it->resume_tokens);
			continue;
		}
		if (x->it->resume_tokens > 0)
			log_info(LOG_ENGINE, "request %s: prefilling %zu tokens to resume at %llu "
			    "generated", x->it->request_id, p->nbase,
			    (unsigned long long)x->it->resume_tokens);
		wk->rc = llm_seq_reset(l, p->seq, x->it, p);
		/* A piece prefilling the same base: wait for it and share its KV. */
		for (o = 0; o < r->nw - 1 && wk->rc == 0 && p->seq->kv->len == 0; o++) {
			const struct llm_work *y = &r->w[o];
			if (y->ph == LLM_PH_PREFILL && y->s->kv->len == 0 &&
			    y->s->n_base == p->seq->n_base && y->s->ntoks > 1 &&
			    y->s->moe_top_p == p->seq->moe_top_p &&
			    memcmp(y->s->toks, p->seq->toks, p->seq->n_base * sizeof *p->seq->toks) ==
			    0) {
				x->leader = (long)o;
				x->share = true;
				break;
			}
		}
	}
	if (wk->rc != 0)
		llm_fail_job(r, j);
	return true;
}

/* One iteration over every unfinished piece; false when none wanted to run. */
static bool
llm_iterate_once(struct llm *l, struct llm_run *r)
{
	struct llm_work *w = r->w;
	size_t i, nseq = 0, pass;
	uint32_t budget = l->max_batch, take;
	struct forward_stats st = { 0 };
	char err[256];
	bool alone;
	int rc;

	for (i = 0; i < r->nw; i++) {
		if (w[i].ph == LLM_PH_DONE)
			continue;
		if ((rc = llm_work_plan(l, &w[i], w)) != 0) {
			w[i].job->wk->rc = rc;
			llm_fail_job(r, w[i].job);
		}
	}
	/* Pack: single tokens (decodes, probe answers) first, then chunks of prefill. */
	for (pass = 0; pass < 2; pass++) {
		for (i = 0; i < r->nw && budget > 0; i++) {
			if (w[i].ph == LLM_PH_DONE || w[i].nfeed == 0 ||
			    (pass == 0) != (w[i].nfeed == 1))
				continue;
			take = w[i].nfeed < budget ? w[i].nfeed : budget;
			/* Every phase runs with the routing the chain's KV was computed with. */
			r->fs[nseq] = (struct forward_seq){ .kv = w[i].fkv, .tokens = w[i].feed,
			    .n = take, .moe_top_p = w[i].s->moe_top_p,
			    .logits = w[i].want_logits && take == w[i].nfeed ? w[i].logits : NULL };
			r->who[nseq++] = i;
			budget -= take;
		}
	}
	if (nseq == 0)
		return false;
	err[0] = '\0';
	rc = forward_batch(l->fwd, r->fs, (uint32_t)nseq, &st, err, sizeof err);
	if (rc == -EIO)
		llm_set_fault(l, err);
	alone = rc != 0;
	for (i = 0; i < nseq; i++) {
		struct llm_work *x = &w[r->who[i]];
		struct engine_work *wk = x->job->wk;
		if (wk->rc != 0)
			continue;
		/* After a device error nothing runs again: every piece fails with it. */
		if (alone && llm_faulted(l, err, sizeof err)) {
			wk->rc = llm_work_error(x, -EIO, err);
			snprintf(wk->err, wk->errlen, "request %s: %s", x->it->request_id, err);
			llm_fail_job(r, x->job);
			continue;
		}
		/* The batch failed: each runs alone, so only the culprit fails. */
		if (alone && (rc = forward_batch(l->fwd, &r->fs[i], 1, &st, err,
		    sizeof err)) != 0) {
			if (rc == -EIO)
				llm_set_fault(l, err);
			rc = llm_work_error(x, rc, err);
			if (rc != 0) {
				wk->rc = rc;
				snprintf(wk->err, wk->errlen, "request %s: %s", x->it->request_id, err);
				llm_fail_job(r, x->job);
			}
			continue;
		}
		if ((rc = llm_work_after(l, x, &r->fs[i], st.moe_layers)) != 0) {
			wk->rc = rc;
			llm_fail_job(r, x->job);
		}
	}
	return true;
}

/* Completes job j: its pieces' scratch freed, its sequences unmarked (a released one freed:
 * sequences otherwise stay, a retry rolls them back), its reply sent. */
static void
llm_finish(struct llm *l, struct llm_run *r, struct llm_job *j, const struct llm_src *src)
{
	struct engine_work *wk = j->wk;
	size_t i;

	for (i = 0; i < r->nw; i++) {
		if (r->w[i].job == j) {
			llm_work_clear(&r->w[i]);
			r->w[i].job = NULL;
		}
	}
	pthread_mutex_lock(&l->mu);
	for (i = 0; i < wk->n; i++) {
		struct llm_seq *s = j->prep[i].seq;
		if (s == NULL)
			continue;
		s->busy = false;
		if (s->dead)
			llm_seq_free(s);
	}
	pthread_mutex_unlock(&l->mu);
	for (i = 0; i < wk->n; i++)
		free(j->prep[i].base);
	free(j->prep);
	free(j);
	src->done(src->ctx, wk);
}

/* Drops the pieces of finished steps, keeping the order and the leaders' indices. */
static void
llm_compact(struct llm_run *r)
{
	size_t i, n = 0;

	for (i = 0; i < r->nw; i++) {
		r->remap[i] = r->w[i].job != NULL ? n : SIZE_MAX;
		if (r->w[i].job != NULL)
			r->w[n++] = r->w[i];
	}
	for (i = 0; i < n; i++)
		if (r->w[i].leader >= 0)
			r->w[i].leader = r->remap[r->w[i].leader] == SIZE_MAX ? -1 :
			    (long)r->remap[r->w[i].leader];
	r->nw = n;
}

/*
 * The batched step loop: take every queued step (and, between iterations, those that
 * arrive), admit them, run one iteration over all their pieces, reply to each step whose
 * pieces are all done; until none is left.
 */
static void
llm_run_steps(struct llm *l, const struct llm_src *src)
{
	struct llm_run r = { .jobs = NULL };
	struct llm_job *j, **pj;
	struct engine_work *wk;
	bool ran, moved, told = false;
	size_t i, njobs;

	r.tail = &r.jobs;
	for (;;) {
		moved = false;
		while ((wk = src->take(src->ctx)) != NULL) {
			j = calloc(1, sizeof *j);
			if (j != NULL)
				j->prep = calloc(wk->n ? wk->n : 1, sizeof *j->prep);
			if (j == NULL || j->prep == NULL) {
				free(j);
				wk->rc = -ENOMEM;
				snprintf(wk->err, wk->errlen, "out of memory");
				src->done(src->ctx, wk);
				continue;
			}
			j->wk = wk;
			j->pending = true;
			*r.tail = j;
			r.tail = &j->next;
		}
		for (j = r.jobs; j != NULL; j = j->next)
			if (j->pending && llm_admit(l, &r, j))
				moved = true;
		if (r.jobs == NULL)
			break;
		for (j = r.jobs, njobs = 0; j != NULL; j = j->next)
			njobs++;
		if (njobs > 1 && !told) {
			log_info(LOG_ENGINE, "%zu steps run together (continuous batching)", njobs);
			told = true;
		}
		ran = llm_iterate_once(l, &r);
		for (j = r.jobs; j != NULL; j = j->next)
			j->left = 0;
		for (i = 0; i < r.nw; i++)
			if (r.w[i].ph != LLM_PH_DONE)
				r.w[i].job->left++;
		for (pj = &r.jobs; (j = *pj) != NULL; ) {
			if (j->pending || j->left > 0) {
				pj = &j->next;
				continue;
			}
			*pj = j->next;
			llm_finish(l, &r, j, src);
			moved = true;
		}
		for (r.tail = &r.jobs; *r.tail != NULL; r.tail = &(*r.tail)->next)
			;
		llm_compact(&r);
		if (!ran && !moved && r.jobs != NULL) {
			/* Only steps waiting for sequences nothing here holds: cannot happen, but
			 * never spin. */
			for (j = r.jobs; j != NULL; j = j->next) {
				j->pending = false;
				j->wk->rc = CERTA_EINVAL;
				snprintf(j->wk->err, j->wk->errlen, "a request of this step is busy");
			}
		}
	}
	free(r.w);
	free(r.fs);
	free(r.who);
	free(r.remap);
}

static struct engine_work *
llm_feed_take(void *ctx)
{
	return engine_feed_take(ctx);
}

static void
llm_feed_done(void *ctx, struct engine_work *w)
{
	engine_feed_done(ctx, w);
}

static void
llm_step_many(void *state, struct engine_feed *feed)
{
	const struct llm_src src = { llm_feed_take, llm_feed_done, feed };

	llm_run_steps(state, &src);
}

/* One synchronous step (the engine not attached): a source of exactly one step. */
struct llm_one {
	struct engine_work w;
	bool taken;
};

static struct engine_work *
llm_one_take(void *ctx)
{
	struct llm_one *o = ctx;

	if (o->taken)
		return NULL;
	o->taken = true;
	return &o->w;
}

static void
llm_one_done(void *ctx, struct engine_work *w)
{
	(void)ctx;
	(void)w;
}

static int
llm_step(void *state, const struct engine_item *items, size_t n, struct engine_result *out,
    char *err, size_t errlen)
{
	struct llm_one one = { .w = { .items = items, .n = n, .out = out, .err = err,
	    .errlen = errlen } };
	const struct llm_src src = { llm_one_take, llm_one_done, &one };

	llm_run_steps(state, &src);
	return one.w.rc;
}

static int
llm_release(void *state, const char *request_id)
{
	struct llm *l = state;
	struct llm_seq *s;

	pthread_mutex_lock(&l->mu);
	s = strmap_del(l->reqs, request_id);
	if (s != NULL && s->busy) {
		s->dead = true;   /* the running step frees it */
		s = NULL;
		pthread_mutex_unlock(&l->mu);
		return 0;
	}
	pthread_mutex_unlock(&l->mu);
	if (s == NULL)
		return CERTA_ENOTFOUND;
	llm_seq_free(s);
	return 0;
}

static void
llm_info(void *state, struct engine_info *out)
{
	struct llm *l = state;

	out->engine = "llm";
	out->model = l->name;
	out->capacity = l->capacity;
	pthread_mutex_lock(&l->mu);
	out->active = (uint32_t)strmap_count(l->reqs);
	pthread_mutex_unlock(&l->mu);
	out->models = l->names;
	out->nmodels = 1;
	out->problems = 0;
	pthread_mutex_lock(&l->mu);
	out->fault = l->faulted ? l->fault : NULL;
	pthread_mutex_unlock(&l->mu);
}

const struct engine_ops llm_engine_ops = {
	.name = "llm",
	.open = llm_open,
	.close = llm_close,
	.step = llm_step,
	.release = llm_release,
	.info = llm_info,
	.step_many = llm_step_many,
	.threaded = true,
};
