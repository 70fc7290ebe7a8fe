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
 * the prompt plus resume_text and continues from there.  Sampling draws u from a hash of
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

#define LLM_PREFILL_CHUNK 64
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
	float *logits;               /* [n_vocab], host */
	struct kv_pool *pool;        /* paged KV blocks of every sequence and probe fork */
	pthread_mutex_t mu;          /* guards reqs and the seqs' busy/dead */
	struct strmap *reqs;         /* request id -> struct llm_seq */
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
llm_open(const struct engine_options *opt, void **state)
{
	struct llm *l;
	char err[512] = "";
	const struct model_hparams *hp;
	const char *suffix;
	int32_t *ids = NULL;
	size_t nids = 0, i;
	uint64_t kvmem;
	int rc;

	if (opt->model_file == NULL || opt->model_file[0] == '\0') {
		log_err(LOG_ENGINE, "llm engine needs a model (--model-file PATH.gguf)");
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
		rc = kv_pool_create(hp->n_layer, hp->n_head_kv * hp->head_dim, LLM_BLOCK,
		    (uint32_t)nb, &l->pool);
		if (rc != 0)
			goto fail;
	}
	if (opt->capacity != 0 && opt->capacity < l->capacity)
		l->capacity = opt->capacity;
	rc = backend_cpu_create(opt->threads, &l->be);
	if (rc != 0)
		goto fail;
	rc = forward_create(l->m, l->be, LLM_PREFILL_CHUNK, &l->fwd);
	if (rc != 0)
		goto fail;
	l->logits = calloc(l->n_vocab, sizeof *l->logits);
	l->reqs = strmap_new();
	l->name = strdup(opt->alias != NULL && opt->alias[0] ? opt->alias :
	    model_name(l->m)[0] ? model_name(l->m) : hp->arch_name);
	if (l->logits == NULL || l->reqs == NULL || l->name == NULL) {
		rc = -ENOMEM;
		goto fail;
	}
	l->names[0] = l->name;
	pthread_mutex_init(&l->mu, NULL);
	log_info(LOG_ENGINE, "llm engine: model=%s arch=%s layers=%u vocab=%u context=%u "
	    "chat=%s kv=%zu bytes/sequence capacity=%u threads=%u", l->name, hp->arch_name,
	    hp->n_layer, l->n_vocab, l->n_ctx, tokenizer_chat_name(l->chat), l->seq_bytes,
	    l->capacity, opt->threads);
	*state = l;
	return 0;

fail_msg:
	log_err(LOG_ENGINE, "llm engine: %s: %s", opt->model_file, err);
fail:
	strmap_free(l->reqs, NULL);
	free(l->name);
	free(l->logits);
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
	free(l->logits);
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

/* Whether an existing sequence can serve the item by rolling back (else it is rebuilt). */
static bool
llm_seq_matches(const struct llm_seq *s, const struct engine_item *it)
{
	return s->prompt != NULL && strcmp(s->prompt, it->prompt) == 0 &&
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

/* Resets s to the prepared base and prefills all of it but the last token. */
static int
llm_seq_rebuild(struct llm *l, struct llm_seq *s, const struct engine_item *it,
    struct llm_prep *p, char *err, size_t errlen)
{
	size_t i;
	int rc;

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
	if (s->ntoks > 1 && llm_share_prefix(l, s))
		return 0;
	if (s->ntoks > 1) {
		struct forward_opts fo = { .moe_top_p = it->moe_top_p };
		rc = forward_run(l->fwd, s->kv, s->toks, s->ntoks - 1, &fo, l->logits, NULL, err,
		    errlen);
		if (rc != 0) {
			/* Unusable until rebuilt: no resume position matches it. */
			s->ntoks = s->n_base = 0;
			s->base_gen = LLM_NONE;
			s->kv->len = 0;
			return rc;
		}
	}
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

/* Forks s into the probe KV, appends the suffix and decodes the boxed answer greedily. */
static int
llm_probe(struct llm *l, struct llm_seq *s, uint32_t max_tokens, struct engine_result *res,
    char *err, size_t errlen)
{
	struct forward_opts fo = { .moe_top_p = s->moe_top_p };
	struct kv *pk = NULL;
	struct tokenizer_stream *st = NULL;
	uint32_t *in = NULL, tok, n = 0;
	char *ans = NULL;
	size_t alen = 0, acap = 0, olen, k;
	const char *o;
	double psum = 0, pmin = 1;
	int depth = 1, rc = 0;

	res->probe_confidence = res->probe_min_prob = -1;
	if (max_tokens == 0)
		max_tokens = LLM_PROBE_DEFAULT;
	/* Room for the last token, the suffix and the answer. */
	if ((uint64_t)s->ntoks + l->nsuffix + max_tokens > l->n_ctx) {
		res->probe_answer = strdup("");
		return res->probe_answer ? 0 : -ENOMEM;
	}
	/* Fork: the chain's blocks are shared; the first write copies the last partial one. */
	rc = kv_fork(s->kv, s->kv->len, &pk);
	if (rc != 0)
		return rc;
	in = malloc((1 + l->nsuffix) * sizeof *in);
	st = tokenizer_stream_new(l->tok, false);
	if (in == NULL || st == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	in[0] = s->toks[s->ntoks - 1];
	memcpy(in + 1, l->suffix, l->nsuffix * sizeof *in);
	rc = forward_run(l->fwd, pk, in, (uint32_t)(1 + l->nsuffix), &fo, l->logits, NULL, err,
	    errlen);
	for (n = 0; rc == 0 && n < max_tokens && depth > 0; ) {
		double p;
		tok = l->be->ops->argmax(l->be, l->logits, l->n_vocab);
		if (tokenizer_is_eog(l->tok, (int32_t)tok))
			break;
		p = llm_prob(l->logits, l->n_vocab, tok);
		psum += p;
		pmin = p < pmin ? p : pmin;
		n++;
		rc = tokenizer_stream_put(st, (int32_t)tok, &o, &olen);
		if (rc != 0)
			break;
		for (k = 0; k < olen; k++) {
			if (o[k] == '{')
				depth++;
			else if (o[k] == '}' && --depth == 0)
				break;
		}
		rc = llm_buf_add(&ans, &alen, &acap, o, k);
		if (rc != 0 || depth == 0 || n == max_tokens)
			break;
		rc = forward_run(l->fwd, pk, &tok, 1, &fo, l->logits, NULL, err, errlen);
	}
	if (rc == 0 && depth > 0 && tokenizer_stream_flush(st, &o, &olen) == 0)
		rc = llm_buf_add(&ans, &alen, &acap, o, olen);
	if (rc == CERTA_ECAPACITY) {
		/* No block left for the fork: no probe this step; the chain is fine. */
		log_warn(LOG_ENGINE, "probe skipped: %s", err);
		err[0] = '\0';
		free(ans);
		ans = NULL;
		n = 0;
		rc = 0;
	}
	if (rc != 0)
		goto out;
	res->probe_answer = ans != NULL ? ans : strdup("");
	ans = NULL;
	if (res->probe_answer == NULL)
		rc = -ENOMEM;
	res->probe_tokens = n;
	if (n > 0) {
		res->probe_confidence = psum / n;
		res->probe_min_prob = pmin;
	}
out:
	kv_destroy(pk);
	free(ans);
	free(in);
	tokenizer_stream_free(st);
	return rc;
}

/* Decodes up to it->max_new_tokens for s (already at resume_tokens) and fills res. */
static int
llm_decode(struct llm *l, struct llm_seq *s, const struct engine_item *it,
    struct engine_result *res, char *err, size_t errlen)
{
	struct tokenizer_stream *st;
	char *text = NULL;
	size_t tlen = 0, tcap = 0, olen;
	const char *o;
	uint32_t j, k, tok;
	uint64_t start = llm_seq_gen(s);
	struct forward_opts fo = { .moe_top_p = it->moe_top_p };
	struct forward_stats fs;
	uint64_t expert_uses = 0, moe_runs = 0;
	double hsum = 0;
	uint32_t hn = 0;
	bool full = false;
	int rc = 0, need = 0;

	memset(res, 0, sizeof *res);
	st = tokenizer_stream_new(l->tok, false);
	if (st == NULL)
		return -ENOMEM;
	/* Warm the decoder from the last clean boundary: bytes of a character cut at R. */
	for (j = s->ntoks; j > s->n_base && !s->clean[j - 1]; j--)
		;
	for (; j < s->ntoks && rc == 0; j++) {
		rc = tokenizer_stream_put(st, (int32_t)s->toks[j], &o, &olen);
		need = llm_need_after(l, need, s->toks[j]);
	}
	for (k = 0; rc == 0 && k < it->max_new_tokens && s->end_at == LLM_NONE; k++) {
		uint64_t g = llm_seq_gen(s);
		if (s->ntoks >= l->n_ctx) {
			full = true;
			s->end_at = g;
			break;
		}
		rc = forward_run(l->fwd, s->kv, &s->toks[s->ntoks - 1], 1, &fo, l->logits, &fs,
		    err, errlen);
		if (rc != 0)
			break;
		expert_uses += fs.expert_uses;
		moe_runs += (uint64_t)fs.tokens * fs.moe_layers;
		hsum += llm_entropy(l->logits, l->n_vocab);
		hn++;
		tok = l->be->ops->sample(l->be, l->logits, l->n_vocab, it->temperature,
		    it->top_p > 0 ? it->top_p : 1.0f, llm_uniform(it->seed, it->sample_index, g),
		    NULL);
		s->toks[s->ntoks++] = tok;
		if (l->think_end >= 0 && tok == (uint32_t)l->think_end && s->think_at == LLM_NONE)
			s->think_at = g + 1;
		if (tokenizer_is_eog(l->tok, (int32_t)tok)) {
			s->clean[s->ntoks - 1] = 1;
			s->end_at = g + 1;
			break;
		}
		rc = tokenizer_stream_put(st, (int32_t)tok, &o, &olen);
		if (rc == 0)
			rc = llm_buf_add(&text, &tlen, &tcap, o, olen);
		/* Clean after this token: no UTF-8 character left open by its bytes. */
		need = llm_need_after(l, need, tok);
		s->clean[s->ntoks - 1] = need == 0;
	}
	if (rc == 0 && s->end_at != LLM_NONE && tokenizer_stream_flush(st, &o, &olen) == 0)
		rc = llm_buf_add(&text, &tlen, &tcap, o, olen);
	tokenizer_stream_free(st);
	if (rc != 0) {
		free(text);
		return rc;
	}
	res->text = text != NULL ? text : strdup("");
	res->new_tokens = (uint32_t)(llm_seq_gen(s) - start);
	res->total_tokens = llm_seq_gen(s);
	res->finished = s->end_at != LLM_NONE;
	res->thinking_done = s->think_at != LLM_NONE;
	res->probe_confidence = res->probe_min_prob = -1;
	res->chain_entropy = hn > 0 ? hsum / hn : -1;
	res->experts_per_token = moe_runs > 0 ? (double)expert_uses / (double)moe_runs :
	    (hn > 0 ? 0 : -1);
	if (res->finished) {
		res->final_answer = llm_final_answer(l, s);
		if (full)
			log_info(LOG_ENGINE, "request %s: context of %u positions full",
			    it->request_id, l->n_ctx);
	}
	if (res->text == NULL || (res->finished && res->final_answer == NULL))
		return -ENOMEM;
	return 0;
}

/* Validates, prepares (nothing changes on error), then computes every item. */
static int
llm_step(void *state, const struct engine_item *items, size_t n, struct engine_result *out,
    char *err, size_t errlen)
{
	struct llm *l = state;
	struct llm_prep *prep;
	size_t i, j, fresh = 0, active;
	int rc = 0;

	if (n == 0) {
		snprintf(err, errlen, "empty batch");
		return CERTA_EINVAL;
	}
	prep = calloc(n, sizeof *prep);
	if (prep == NULL)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		const struct engine_item *it = &items[i];
		if (it->request_id == NULL || it->request_id[0] == '\0') {
			snprintf(err, errlen, "item %zu: missing request_id", i);
			rc = CERTA_EINVAL;
			goto fail;
		}
		if (it->prompt == NULL || it->prompt[0] == '\0') {
			snprintf(err, errlen, "request %s: empty prompt", it->request_id);
			rc = CERTA_EINVAL;
			goto fail;
		}
		if (it->max_new_tokens == 0) {
			snprintf(err, errlen, "request %s: max_new_tokens must be > 0",
			    it->request_id);
			rc = CERTA_EINVAL;
			goto fail;
		}
		if (it->model != NULL && it->model[0] != '\0' && strcmp(it->model, l->name) != 0) {
			snprintf(err, errlen, "request %s: model %s is not served here (this worker "
			    "serves %s)", it->request_id, it->model, l->name);
			rc = CERTA_ENOTFOUND;
			goto fail;
		}
		for (j = 0; j < i; j++) {
			if (strcmp(items[j].request_id, it->request_id) == 0) {
				snprintf(err, errlen, "request %s appears twice in one batch",
				    it->request_id);
				rc = CERTA_EINVAL;
				goto fail;
			}
		}
	}
	pthread_mutex_lock(&l->mu);
	for (i = 0; i < n; i++) {
		prep[i].seq = strmap_get(l->reqs, items[i].request_id);
		if (prep[i].seq == NULL)
			fresh++;
	}
	active = strmap_count(l->reqs);
	pthread_mutex_unlock(&l->mu);
	if (active + fresh > l->capacity) {
		snprintf(err, errlen, "worker at capacity: %zu sequences active, %zu new, capacity "
		    "%u (llm.kv_memory / %zu bytes per sequence)", active, fresh, l->capacity,
		    l->seq_bytes);
		rc = CERTA_ECAPACITY;
		goto fail;
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
	for (i = 0; i < n && rc == 0; i++) {
		struct llm_seq *s = prep[i].seq;
		if (prep[i].rebuild) {
			if (items[i].resume_tokens > 0)
				log_info(LOG_ENGINE, "request %s: prefilling %zu tokens to resume at "
				    "%llu generated", items[i].request_id, prep[i].nbase,
				    (unsigned long long)items[i].resume_tokens);
			rc = llm_seq_rebuild(l, s, &items[i], &prep[i], err, errlen);
		} else {
			llm_seq_rollback(s, items[i].resume_tokens);
		}
		if (rc == 0)
			rc = llm_decode(l, s, &items[i], &out[i], err, errlen);
		if (rc == 0 && !out[i].finished)
			rc = llm_probe(l, s, items[i].probe_max_tokens, &out[i], err, errlen);
		else if (rc == 0)
			out[i].probe_answer = strdup(out[i].final_answer);
		if (rc == 0 && out[i].probe_answer == NULL)
			rc = -ENOMEM;
		if (rc != 0) {
			if (err[0] == '\0')
				snprintf(err, errlen, "request %s: %s", items[i].request_id,
				    certa_strerror(rc));
			engine_result_clear(&out[i]);
			while (i-- > 0)
				engine_result_clear(&out[i]);
			break;
		}
	}
	/* Sequences stay (a retry rolls them back); a released one is freed now. */
	pthread_mutex_lock(&l->mu);
	for (i = 0; i < n; i++) {
		prep[i].seq->busy = false;
		if (prep[i].seq->dead) {
			llm_seq_free(prep[i].seq);
			prep[i].seq = NULL;
		}
	}
	pthread_mutex_unlock(&l->mu);
	for (i = 0; i < n; i++)
		free(prep[i].base);
	free(prep);
	return rc;

fail:
	for (i = 0; i < n; i++) {
		if (prep[i].fresh)
			llm_seq_free(prep[i].seq);
		free(prep[i].base);
	}
	free(prep);
	return rc;
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
}

const struct engine_ops llm_engine_ops = {
	.name = "llm",
	.open = llm_open,
	.close = llm_close,
	.step = llm_step,
	.release = llm_release,
	.info = llm_info,
	.threaded = true,
};
