/*
 * bench-llm — CPU forward-pass speed of GGUF models: prefill, decode at batch 1, 8 and 32
 * (concurrent sequences advanced together by forward_batch, as the engine's iterations do),
 * the KV bytes per token, the cost of one probe against a decode step, and what prefix
 * sharing saves an sc n=3 program (3 chains of one prompt, --tokens each, decoded together):
 * prefill tokens computed, KV blocks held and time with the prompt prefilled once and forked
 * 3 times against each chain prefilling its own copy, in the same run, with their ratios.
 *
 *   build/bin/bench-llm [--tiny PATH] [--model PATH] [--threads N] [--prompt N] [--tokens N]
 *
 * --tiny: a tiny model (scripts/llm/tiny_chat_model.py --out FILE.gguf); --model (or
 * CERTA_LLM_MODEL): a larger one, e.g. the ~0.5B-shaped random Q8_0 model of
 *   python3 scripts/llm/tiny_models.py --out DIR --bench-05b
 * Each model given is measured in turn; the batch-8/32 figures print their ratio to batch 1
 * of the same run.  With no model at all it says so and exits 0, so bench/run.sh can run it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "workers/llm/backend.h"
#include "workers/llm/forward.h"
#include "workers/llm/gguf.h"
#include "workers/llm/kv.h"
#include "workers/llm/model.h"

#define BENCH_MAX_BATCH 32
#define BENCH_SUFFIX 24          /* probe suffix tokens (Dynasor's is ~24 in real vocabularies) */
#define BENCH_PROBE 8            /* probe answer tokens */
#define BENCH_SC 3               /* sc chains of one prompt */

static const uint32_t bench_batches[] = { 1, 8, 32 };

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* One model: returns 0, or 1 with a message. */
static int
bench_model(const char *path, uint32_t threads, uint32_t prompt, uint32_t tokens)
{
	const struct model_hparams *hp;
	struct forward_seq fs[BENCH_MAX_BATCH];
	struct kv *kv[BENCH_MAX_BATCH] = { 0 }, *base = NULL, *pk = NULL;
	uint32_t next[BENCH_MAX_BATCH], *ids = NULL, i, b, s, nb, per_seq, suffix[BENCH_SUFFIX];
	struct kv_pool *pool = NULL;
	struct forward *fw = NULL;
	struct backend *be = NULL;
	struct model *m = NULL;
	struct gguf *g = NULL;
	float *logits = NULL;
	double t0, t_prefill, rate1 = 0, step1 = 0, t_probe, sc_t[2];
	uint32_t sc_blocks[2], sc_prefill[2], mode, free0;
	struct kv *root = NULL;
	char err[512];
	int rc = 1;

	if (gguf_open(path, &g, err, sizeof(err)) < 0 || model_open(g, &m, err, sizeof(err)) < 0) {
		fprintf(stderr, "bench-llm: %s: %s\n", path, err);
		goto out;
	}
	hp = model_hparams(m);
	if (prompt + tokens + BENCH_SUFFIX + BENCH_PROBE + 1 > hp->n_ctx_train) {
		fprintf(stderr, "bench-llm: %s: --prompt + --tokens too long for the context %u\n",
		    path, hp->n_ctx_train);
		goto out;
	}
	per_seq = (prompt + tokens + BENCH_SUFFIX + BENCH_PROBE + 15) / 16 + 1;
	ids = calloc(prompt, sizeof(*ids));
	logits = calloc((size_t)BENCH_MAX_BATCH * hp->n_vocab, sizeof(float));
	if (!ids || !logits || backend_cpu_create(threads, &be) < 0 ||
	    forward_create(m, be, prompt > BENCH_MAX_BATCH ? prompt : BENCH_MAX_BATCH, &fw) < 0 ||
	    kv_pool_create(hp->n_layer, hp->n_head_kv * hp->head_dim, 16,
	    per_seq * (BENCH_MAX_BATCH + 2), &pool) < 0 ||
	    kv_paged_create(pool, hp->n_ctx_train, &base) < 0) {
		fprintf(stderr, "bench-llm: out of memory\n");
		goto out;
	}
	for (i = 0; i < prompt; i++)
		ids[i] = (i * 7919u + 13) % hp->n_vocab;
	for (i = 0; i < BENCH_SUFFIX; i++)
		suffix[i] = (i * 104729u + 7) % hp->n_vocab;

	printf("model %s (%s): %u layers, %u wide, %u/%u heads, head_dim %u, vocab %u, "
	    "output %s\n", model_name(m), hp->arch_name, hp->n_layer, hp->n_embd, hp->n_head,
	    hp->n_head_kv, hp->head_dim, hp->n_vocab, gguf_ttype_name(model_output(m)->type));
	printf("threads %s%u\n", threads ? "" : "(all) ", threads);
	printf("KV bytes per token (f32): %zu\n", model_kv_bytes_per_token(m));
	t0 = now_s();
	if (forward_run(fw, base, ids, prompt, NULL, logits, NULL, err, sizeof(err)) < 0)
		goto fail;
	t_prefill = now_s() - t0;
	printf("prefill %u tokens: %.3f s, %.1f tokens/s\n", prompt, t_prefill,
	    prompt / t_prefill);

	/* Decode at batch b: b sequences forked from the prompt (shared blocks), one token
	 * each per iteration, all in one forward_batch. */
	for (nb = 0; nb < sizeof(bench_batches) / sizeof(bench_batches[0]); nb++) {
		double t, rate;
		b = bench_batches[nb];
		for (s = 0; s < b; s++) {
			if (kv_fork(base, base->len, &kv[s]) < 0)
				goto oom;
			next[s] = (ids[prompt - 1] + s) % hp->n_vocab;
		}
		t0 = now_s();
		for (i = 0; i < tokens; i++) {
			for (s = 0; s < b; s++)
				fs[s] = (struct forward_seq){ .kv = kv[s], .tokens = &next[s], .n = 1,
				    .logits = logits + (size_t)s * hp->n_vocab };
			if (forward_batch(fw, fs, b, NULL, err, sizeof(err)) < 0)
				goto fail;
			for (s = 0; s < b; s++)
				next[s] = be->ops->argmax(be, logits + (size_t)s * hp->n_vocab,
				    hp->n_vocab);
		}
		t = now_s() - t0;
		rate = (double)b * tokens / t;
		if (b == 1) {
			rate1 = rate;
			step1 = t / tokens;
		}
		printf("decode batch %2u, %u tokens each: %.3f s, %.1f tokens/s (%.2f ms/iteration)"
		    ", x%.2f batch 1\n", b, tokens, t, rate, 1e3 * t / tokens, rate / rate1);
		for (s = 0; s < b; s++) {
			kv_destroy(kv[s]);
			kv[s] = NULL;
		}
	}

	/* A probe: fork, the suffix prefilled, BENCH_PROBE greedy tokens, the fork freed. */
	t0 = now_s();
	if (kv_fork(base, base->len, &pk) < 0)
		goto oom;
	if (forward_run(fw, pk, suffix, BENCH_SUFFIX, NULL, logits, NULL, err, sizeof(err)) < 0)
		goto fail;
	for (i = 0; i < BENCH_PROBE; i++) {
		next[0] = be->ops->argmax(be, logits, hp->n_vocab);
		if (forward_run(fw, pk, &next[0], 1, NULL, logits, NULL, err, sizeof(err)) < 0)
			goto fail;
	}
	kv_destroy(pk);
	pk = NULL;
	t_probe = now_s() - t0;
	printf("probe (fork, %u suffix tokens, %u answer tokens): %.2f ms = %.1f decode steps "
	    "at batch 1\n", BENCH_SUFFIX, BENCH_PROBE, 1e3 * t_probe, t_probe / step1);

	/* sc n=3: mode 0 prefills the prompt once and forks it (what the engine does), mode 1
	 * gives each chain its own prefill; then --tokens decodes of the 3 chains together. */
	for (mode = 0; mode < 2; mode++) {
		free0 = kv_pool_free_blocks(pool);
		t0 = now_s();
		if (mode == 0) {
			if (kv_paged_create(pool, hp->n_ctx_train, &root) < 0)
				goto oom;
			if (forward_run(fw, root, ids, prompt, NULL, logits, NULL, err,
			    sizeof(err)) < 0)
				goto fail;
		}
		for (s = 0; s < BENCH_SC; s++) {
			if (mode == 0 ? kv_fork(root, root->len, &kv[s]) < 0 :
			    kv_paged_create(pool, hp->n_ctx_train, &kv[s]) < 0)
				goto oom;
			if (mode == 1 && forward_run(fw, kv[s], ids, prompt, NULL, logits, NULL, err,
			    sizeof(err)) < 0)
				goto fail;
			next[s] = (ids[prompt - 1] + s) % hp->n_vocab;
		}
		sc_prefill[mode] = mode == 0 ? prompt : BENCH_SC * prompt;
		for (i = 0; i < tokens; i++) {
			for (s = 0; s < BENCH_SC; s++)
				fs[s] = (struct forward_seq){ .kv = kv[s], .tokens = &next[s], .n = 1,
				    .logits = logits + (size_t)s * hp->n_vocab };
			if (forward_batch(fw, fs, BENCH_SC, NULL, err, sizeof(err)) < 0)
				goto fail;
			for (s = 0; s < BENCH_SC; s++)
				next[s] = be->ops->argmax(be, logits + (size_t)s * hp->n_vocab,
				    hp->n_vocab);
		}
		sc_t[mode] = now_s() - t0;
		sc_blocks[mode] = free0 - kv_pool_free_blocks(pool);
		for (s = 0; s < BENCH_SC; s++) {
			kv_destroy(kv[s]);
			kv[s] = NULL;
		}
		kv_destroy(root);
		root = NULL;
	}
	printf("sc n=%u, prompt %u, %u tokens each: shared prefix %u prefill tokens, %u KV blocks, "
	    "%.3f s; unshared %u prefill tokens, %u KV blocks, %.3f s; sharing saves x%.2f "
	    "prefill, x%.2f blocks, x%.2f time\n", BENCH_SC, prompt, tokens, sc_prefill[0],
	    sc_blocks[0], sc_t[0], sc_prefill[1], sc_blocks[1], sc_t[1],
	    (double)sc_prefill[1] / sc_prefill[0], (double)sc_blocks[1] / sc_blocks[0],
	    sc_t[1] / sc_t[0]);
	rc = 0;
	goto out;
oom:
	snprintf(err, sizeof(err), "out of KV blocks");
fail:
	fprintf(stderr, "bench-llm: %s: %s\n", path, err);
out:
	for (s = 0; s < BENCH_MAX_BATCH; s++)
		kv_destroy(kv[s]);
	kv_destroy(pk);
	kv_destroy(root);
	kv_destroy(base);
	kv_pool_free(pool);
	free(ids);
	free(logits);
	forward_destroy(fw);
	backend_destroy(be);
	model_close(m);
	gguf_close(g);
	return rc;
}

int
main(int argc, char **argv)
{
	const char *path = getenv("CERTA_LLM_MODEL"), *tiny = NULL;
	uint32_t threads = 0, prompt = 64, tokens = 32;
	int a, rc = 0;

	for (a = 1; a < argc; a++) {
		if (strcmp(argv[a], "--model") == 0 && a + 1 < argc)
			path = argv[++a];
		else if (strcmp(argv[a], "--tiny") == 0 && a + 1 < argc)
			tiny = argv[++a];
		else if (strcmp(argv[a], "--threads") == 0 && a + 1 < argc)
			threads = (uint32_t)strtoul(argv[++a], NULL, 10);
		else if (strcmp(argv[a], "--prompt") == 0 && a + 1 < argc)
			prompt = (uint32_t)strtoul(argv[++a], NULL, 10);
		else if (strcmp(argv[a], "--tokens") == 0 && a + 1 < argc)
			tokens = (uint32_t)strtoul(argv[++a], NULL, 10);
		else {
			fprintf(stderr, "usage: bench-llm [--tiny PATH] [--model PATH] [--threads N] "
			    "[--prompt N] [--tokens N]\n");
			return 2;
		}
	}
	if ((!path || !*path) && !tiny) {
		printf("bench-llm: no model (--tiny PATH from scripts/llm/tiny_chat_model.py, "
		    "--model PATH or CERTA_LLM_MODEL from scripts/llm/tiny_models.py --bench-05b)"
		    ": skipped\n");
		return 0;
	}
	if (prompt == 0 || tokens == 0) {
		fprintf(stderr, "bench-llm: --prompt and --tokens must be positive\n");
		return 2;
	}
	if (tiny)
		rc |= bench_model(tiny, threads, prompt, tokens);
	if (path && *path)
		rc |= bench_model(path, threads, prompt, tokens);
	return rc;
}
