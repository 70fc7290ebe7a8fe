/*
 * bench-llm — CPU forward-pass speed of a GGUF model at batch 1.
 *
 * Prints prefill tokens/s, decode tokens/s (one sequence, greedy), and the KV bytes per token.
 * Write a ~0.5B-shaped random model (Qwen2.5-0.5B's dimensions, Q8_0) with
 *   python3 scripts/llm/tiny_models.py --out DIR --bench-05b
 * then
 *   build/bin/bench-llm --model DIR/bench-05b.gguf [--threads N] [--prompt N] [--tokens N]
 * Without --model (or CERTA_LLM_MODEL) it says so and exits 0, so bench/run.sh can run it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "workers/llm/backend.h"
#include "workers/llm/forward.h"
#include "workers/llm/gguf.h"
#include "workers/llm/model.h"

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int
main(int argc, char **argv)
{
	const char *path = getenv("CERTA_LLM_MODEL");
	uint32_t threads = 0, prompt = 64, tokens = 32, i, *ids;
	const struct model_hparams *hp;
	struct forward_stats st;
	struct forward *fw;
	struct backend *be;
	struct model *m;
	struct gguf *g;
	struct kv *kv;
	char err[512];
	float *logits;
	double t0, t_prefill, t_decode;
	int a;

	for (a = 1; a < argc; a++) {
		if (strcmp(argv[a], "--model") == 0 && a + 1 < argc)
			path = argv[++a];
		else if (strcmp(argv[a], "--threads") == 0 && a + 1 < argc)
			threads = (uint32_t)strtoul(argv[++a], NULL, 10);
		else if (strcmp(argv[a], "--prompt") == 0 && a + 1 < argc)
			prompt = (uint32_t)strtoul(argv[++a], NULL, 10);
		else if (strcmp(argv[a], "--tokens") == 0 && a + 1 < argc)
			tokens = (uint32_t)strtoul(argv[++a], NULL, 10);
		else {
			fprintf(stderr, "usage: bench-llm --model PATH [--threads N] [--prompt N] "
			    "[--tokens N]\n");
			return 2;
		}
	}
	if (!path || !*path) {
		printf("bench-llm: no model (--model PATH or CERTA_LLM_MODEL; write one with "
		    "scripts/llm/tiny_models.py --out DIR --bench-05b): skipped\n");
		return 0;
	}
	if (prompt == 0 || tokens == 0) {
		fprintf(stderr, "bench-llm: --prompt and --tokens must be positive\n");
		return 2;
	}
	if (gguf_open(path, &g, err, sizeof(err)) < 0 || model_open(g, &m, err, sizeof(err)) < 0) {
		fprintf(stderr, "bench-llm: %s\n", err);
		return 1;
	}
	hp = model_hparams(m);
	if (backend_cpu_create(threads, &be) < 0 || forward_create(m, be, prompt, &fw) < 0 ||
	    forward_kv_create(m, prompt + tokens, &kv) < 0) {
		fprintf(stderr, "bench-llm: out of memory\n");
		return 1;
	}
	ids = calloc(prompt + tokens, sizeof(*ids));
	logits = calloc(hp->n_vocab, sizeof(float));
	if (!ids || !logits)
		return 1;
	for (i = 0; i < prompt; i++)
		ids[i] = (i * 7919u + 13) % hp->n_vocab;

	t0 = now_s();
	if (forward_run(fw, kv, ids, prompt, NULL, logits, &st, err, sizeof(err)) < 0) {
		fprintf(stderr, "bench-llm: %s\n", err);
		return 1;
	}
	t_prefill = now_s() - t0;
	t0 = now_s();
	for (i = 0; i < tokens; i++) {
		ids[prompt + i] = be->ops->argmax(be, logits, hp->n_vocab);
		if (forward_run(fw, kv, &ids[prompt + i], 1, NULL, logits, &st, err,
		    sizeof(err)) < 0) {
			fprintf(stderr, "bench-llm: %s\n", err);
			return 1;
		}
	}
	t_decode = now_s() - t0;

	printf("model %s (%s): %u layers, %u wide, %u/%u heads, head_dim %u, vocab %u, "
	    "output %s\n", model_name(m), hp->arch_name, hp->n_layer, hp->n_embd, hp->n_head,
	    hp->n_head_kv, hp->head_dim, hp->n_vocab, gguf_ttype_name(model_output(m)->type));
	printf("threads %s%u\n", threads ? "" : "(all) ", threads);
	printf("prefill %u tokens: %.2f s, %.1f tokens/s\n", prompt, t_prefill,
	    prompt / t_prefill);
	printf("decode batch 1, %u tokens: %.2f s, %.2f tokens/s (%.1f ms/token)\n", tokens,
	    t_decode, tokens / t_decode, 1e3 * t_decode / tokens);
	printf("KV bytes per token (f32): %zu\n", model_kv_bytes_per_token(m));

	free(ids);
	free(logits);
	kv_destroy(kv);
	forward_destroy(fw);
	backend_destroy(be);
	model_close(m);
	gguf_close(g);
	return 0;
}
