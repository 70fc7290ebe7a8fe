/*
 * bench-cuda — the CUDA backend against the physical limit: a random-weights model with the
 * shapes of Llama-3-8B (32 layers, 4096 wide, 32 heads, 8 KV heads, FFN 14336, vocab 128256)
 * in BF16; prefill tokens/s, decode tokens/s at batch 1, 16, 64 and 256 (sequences forked from
 * one prompt, one forward_batch per iteration, as the engine runs them), the HBM bandwidth
 * achieved at batch 1 (bytes of weights and KV read per step / step time) against the GPU's
 * peak, and the cost of a probe (fork, 24 suffix tokens, 8 greedy tokens) in decode steps.
 *
 *   build/bin/bench-cuda [--check] [--device N] [--layers N] [--prompt N] [--prefill N] [--tokens N]
 *                        [--batches 1,16,64,256] [--peak-gbs GBS]
 *
 * No 16 GB file: the GGUF is built in memory (the header and the norm vectors written into
 * an anonymous mapping the size of the file, the matrices' bytes never touched), and the
 * backend fills its device copy of every matrix with random values on the device
 * (backend_cuda_fill_random).  --layers shrinks the model for a quick try; --peak-gbs
 * replaces the peak the device reports (2 x memory clock x bus width).
 *
 * Lines starting "SUMMARY " are the figures scripts/device-check.sh reports.  Without the CUDA
 * backend built, or without a device, it says SKIP and exits 0 (bench/run.sh runs it).
 */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "workers/llm/backend.h"
#include "workers/llm/forward.h"
#include "workers/llm/gguf.h"
#include "workers/llm/kv.h"
#include "workers/llm/model.h"

#define BENCH_MAX_BATCHES 8
#define BENCH_SUFFIX 24          /* probe suffix tokens (as bench-llm) */
#define BENCH_PROBE 8            /* probe answer tokens */
#define BENCH_BLOCK 16           /* KV positions per block (the engine's) */

struct bench_opts {
	int device;
	uint32_t layers, prompt, prefill, tokens;
	uint32_t batches[BENCH_MAX_BATCHES], n_batches;
	double peak_gbs;
};

/* Llama-3-8B. */
static const struct {
	uint32_t n_layer, n_embd, n_head, n_head_kv, n_ff, n_vocab, n_ctx;
	float rope_base, eps;
} shape = { 32, 4096, 32, 8, 14336, 128256, 8192, 500000.0f, 1e-5f };

/* ---- the in-memory GGUF ------------------------------------------------------------------ */

struct gw {
	uint8_t *p;
	size_t n, cap;
};

static int
gw_put(struct gw *b, const void *d, size_t n)
{
	if (b->n + n > b->cap) {
		size_t cap = (b->n + n) * 2;
		uint8_t *p = realloc(b->p, cap);
		if (!p)
			return -ENOMEM;
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->n, d, n);
	b->n += n;
	return 0;
}

static int
gw_u32(struct gw *b, uint32_t v)
{
	return gw_put(b, &v, 4);
}

static int
gw_u64(struct gw *b, uint64_t v)
{
	return gw_put(b, &v, 8);
}

static int
gw_str(struct gw *b, const char *s)
{
	return gw_u64(b, strlen(s)) || gw_put(b, s, strlen(s));
}

static int
gw_kv_u32(struct gw *b, const char *k, uint32_t v)
{
	return gw_str(b, k) || gw_u32(b, GGUF_U32) || gw_u32(b, v);
}

static int
gw_kv_f32(struct gw *b, const char *k, float v)
{
	return gw_str(b, k) || gw_u32(b, GGUF_F32) || gw_put(b, &v, 4);
}

static int
gw_kv_str(struct gw *b, const char *k, const char *v)
{
	return gw_str(b, k) || gw_u32(b, GGUF_STRING) || gw_str(b, v);
}

struct bench_tensor {
	char name[64];
	uint64_t ne0, ne1;           /* ne1 = 1: a vector */
	enum gguf_ttype type;
	uint64_t offset, bytes;
};

/* The tensor table of the llama model, offsets aligned to 32; returns the count. */
static size_t
bench_tensors(uint32_t n_layer, struct bench_tensor *t)
{
	uint32_t e = shape.n_embd, q = shape.n_head * (e / shape.n_head),
	    kv = shape.n_head_kv * (e / shape.n_head), il;
	size_t n = 0, i;
	uint64_t off = 0;

#define T(nm, a, b, ty) do { \
	snprintf(t[n].name, sizeof t[n].name, "%s", nm); \
	t[n].ne0 = (a); t[n].ne1 = (b); t[n].type = (ty); n++; } while (0)
	T("token_embd.weight", e, shape.n_vocab, GGUF_T_BF16);
	T("output_norm.weight", e, 1, GGUF_T_F32);
	T("output.weight", e, shape.n_vocab, GGUF_T_BF16);
	for (il = 0; il < n_layer; il++) {
		char nm[64];
#define L(s, a, b, ty) do { snprintf(nm, sizeof nm, "blk.%u." s, il); T(nm, a, b, ty); } while (0)
		L("attn_norm.weight", e, 1, GGUF_T_F32);
		L("ffn_norm.weight", e, 1, GGUF_T_F32);
		L("attn_q.weight", e, q, GGUF_T_BF16);
		L("attn_k.weight", e, kv, GGUF_T_BF16);
		L("attn_v.weight", e, kv, GGUF_T_BF16);
		L("attn_output.weight", q, e, GGUF_T_BF16);
		L("ffn_gate.weight", e, shape.n_ff, GGUF_T_BF16);
		L("ffn_up.weight", e, shape.n_ff, GGUF_T_BF16);
		L("ffn_down.weight", shape.n_ff, e, GGUF_T_BF16);
#undef L
	}
#undef T
	for (i = 0; i < n; i++) {
		t[i].bytes = t[i].ne0 * t[i].ne1 * (t[i].type == GGUF_T_F32 ? 4 : 2);
		t[i].offset = off;
		off += (t[i].bytes + 31) / 32 * 32;
	}
	return n;
}

/*
 * The GGUF file of the model in an anonymous mapping of *len bytes: header and norm vectors
 * (1.0) written, the matrices left unwritten (never touched, so never resident).
 */
static void *
bench_gguf(uint32_t n_layer, size_t *len)
{
	struct bench_tensor *t = calloc(3 + 9 * (size_t)n_layer, sizeof(*t));
	struct gw h = { 0 };
	size_t n, i, data;
	uint8_t *map = NULL;
	int bad = 0;

	if (!t)
		return NULL;
	n = bench_tensors(n_layer, t);
	bad |= gw_put(&h, "GGUF", 4) || gw_u32(&h, 3) || gw_u64(&h, n) || gw_u64(&h, 10);
	bad |= gw_kv_str(&h, "general.architecture", "llama") ||
	    gw_kv_str(&h, "general.name", "random-llama3-8b-shape") ||
	    gw_kv_u32(&h, "llama.block_count", n_layer) ||
	    gw_kv_u32(&h, "llama.context_length", shape.n_ctx) ||
	    gw_kv_u32(&h, "llama.embedding_length", shape.n_embd) ||
	    gw_kv_u32(&h, "llama.feed_forward_length", shape.n_ff) ||
	    gw_kv_u32(&h, "llama.attention.head_count", shape.n_head) ||
	    gw_kv_u32(&h, "llama.attention.head_count_kv", shape.n_head_kv) ||
	    gw_kv_f32(&h, "llama.rope.freq_base", shape.rope_base) ||
	    gw_kv_f32(&h, "llama.attention.layer_norm_rms_epsilon", shape.eps);
	for (i = 0; i < n; i++)
		bad |= gw_str(&h, t[i].name) || gw_u32(&h, t[i].ne1 > 1 ? 2 : 1) ||
		    gw_u64(&h, t[i].ne0) || (t[i].ne1 > 1 && gw_u64(&h, t[i].ne1)) ||
		    gw_u32(&h, t[i].type) || gw_u64(&h, t[i].offset);
	if (bad)
		goto out;
	data = (h.n + 31) / 32 * 32;
	*len = data + t[n - 1].offset + (t[n - 1].bytes + 31) / 32 * 32;
	map = mmap(NULL, *len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
	    -1, 0);
	if (map == MAP_FAILED) {
		map = NULL;
		goto out;
	}
	memcpy(map, h.p, h.n);
	for (i = 0; i < n; i++)
		if (t[i].type == GGUF_T_F32) {
			float *v = (float *)(map + data + t[i].offset);
			for (uint64_t j = 0; j < t[i].ne0; j++)
				v[j] = 1.0f;
		}
out:
	free(h.p);
	free(t);
	return map;
}

/* --check: the in-memory model opens (no device needed); prints its size. */
static int
bench_check(const struct bench_opts *o)
{
	struct gguf *g = NULL;
	struct model *m = NULL;
	size_t len = 0;
	void *map = bench_gguf(o->layers, &len);
	char err[256] = "";
	int rc = 1;

	if (!map) {
		fprintf(stderr, "bench-cuda: cannot map the model\n");
		return 1;
	}
	if (gguf_open_buffer(map, len, &g, err, sizeof err) < 0 ||
	    model_open(g, &m, err, sizeof err) < 0) {
		fprintf(stderr, "bench-cuda: the in-memory model: %s\n", err);
	} else {
		const struct model_hparams *hp = model_hparams(m);
		printf("bench-cuda: model ok: %s, %u layers, %u wide, %u/%u heads, head_dim %u, "
		    "FFN %u, vocab %u, output %s, %.2f GB file (mapped, not resident), KV %zu "
		    "bytes/token\n", hp->arch_name, hp->n_layer, hp->n_embd, hp->n_head,
		    hp->n_head_kv, hp->head_dim, hp->n_ff, hp->n_vocab,
		    gguf_ttype_name(model_output(m)->type), len / 1e9, model_kv_bytes_per_token(m));
		rc = 0;
	}
	model_close(m);
	gguf_close(g);
	munmap(map, len);
	return rc;
}

#ifdef BACKEND_HAVE_CUDA

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Every matrix of the model random on the device; returns the bytes of weights a decode step
 * reads (every matrix but the embedding, plus one embedding row) via *step_bytes. */
static int
bench_fill(struct backend *be, const struct model *m, double *step_bytes)
{
	const struct model_hparams *hp = model_hparams(m);
	const struct model_weight *w[7];
	uint64_t seed = 20261130;
	uint32_t il, i;
	double bytes = 0;
	int rc;

#define FILL(x, sc) do { if ((rc = backend_cuda_fill_random(be, (x), seed++, (sc))) < 0) \
	return rc; } while (0)
	FILL(model_token_embd(m), 1.0f);
	FILL(model_output(m), sqrtf(3.0f / hp->n_embd));
	bytes += (double)model_output(m)->mat_bytes + model_token_embd(m)->row_bytes;
	for (il = 0; il < hp->n_layer; il++) {
		const struct model_layer *l = model_layer(m, il);
		w[0] = &l->wq; w[1] = &l->wk; w[2] = &l->wv; w[3] = &l->wo;
		w[4] = &l->ffn_gate; w[5] = &l->ffn_up; w[6] = &l->ffn_down;
		for (i = 0; i < 7; i++) {
			FILL(w[i], sqrtf(3.0f / w[i]->cols));
			bytes += (double)w[i]->mat_bytes;
		}
	}
#undef FILL
	*step_bytes = bytes;
	return 0;
}

/* ---- the run ----------------------------------------------------------------------------- */

static int
bench_run(const struct bench_opts *o)
{
	struct backend_cuda_info info;
	const struct model_hparams *hp;
	struct backend *be = NULL;
	struct gguf *g = NULL;
	struct model *m = NULL;
	struct forward *fw = NULL;
	struct kv_pool *pool = NULL;
	struct kv *base = NULL, *pre = NULL, *pk = NULL, **kv = NULL;
	struct forward_seq *fs = NULL;
	uint32_t *ids = NULL, *next = NULL, maxb = 1, i, s, b, nb, suffix[BENCH_SUFFIX];
	uint32_t max_tokens, blocks, per_fork;
	float *logits = NULL;
	void *map = NULL;
	size_t map_len = 0;
	double t0 = 0, t, w_bytes = 0, kv_bytes = 0, step1 = 0, rate1 = 0, peak;
	char err[512] = "";
	int rc, ret = 1, finite = 1;

	rc = backend_cuda_info(o->device, &info, err, sizeof err);
	if (rc == -ENODEV) {
		printf("bench-cuda: SKIP: no CUDA device (%s)\n", err);
		return 0;
	}
	if (rc < 0) {
		fprintf(stderr, "bench-cuda: %s\n", err);
		return 1;
	}
	peak = o->peak_gbs > 0 ? o->peak_gbs : info.peak_gbs;
	printf("device cuda:%d: %s, sm_%d%d, %d SMs, %.1f GiB (%.1f free), peak DRAM %.0f GB/s "
	    "(%s), driver CUDA %d.%d, runtime %d.%d\n", o->device, info.name, info.cc_major,
	    info.cc_minor, info.sm_count, info.mem_total / 1073741824.0,
	    info.mem_free / 1073741824.0, peak,
	    o->peak_gbs > 0 ? "--peak-gbs" : "reported by the device",
	    info.driver_version / 1000, info.driver_version % 1000 / 10,
	    info.runtime_version / 1000, info.runtime_version % 1000 / 10);
	printf("SUMMARY gpu %s, peak %.0f GB/s (%s)\n", info.name, peak,
	    o->peak_gbs > 0 ? "--peak-gbs" : "device: 2 x memory clock x bus width");

	for (i = 0; i < o->n_batches; i++)
		if (o->batches[i] > maxb)
			maxb = o->batches[i];
	t0 = now_s();
	if (!(map = bench_gguf(o->layers, &map_len))) {
		fprintf(stderr, "bench-cuda: cannot map %zu bytes for the model\n", map_len);
		goto out;
	}
	if (gguf_open_buffer(map, map_len, &g, err, sizeof err) < 0 ||
	    model_open(g, &m, err, sizeof err) < 0) {
		fprintf(stderr, "bench-cuda: the in-memory model: %s\n", err);
		goto out;
	}
	hp = model_hparams(m);
	if ((rc = backend_cuda_create(o->device, &be, err, sizeof err)) < 0) {
		fprintf(stderr, "bench-cuda: %s\n", err);
		goto out;
	}
	if ((rc = bench_fill(be, m, &w_bytes)) < 0 || (rc = be->ops->error(be, err, sizeof err)) < 0) {
		fprintf(stderr, "bench-cuda: random weights on the device: %s (%d)\n",
		    err[0] ? err : "failed", rc);
		goto out;
	}
	printf("model: llama, %u layers, %u wide, %u/%u heads, head_dim %u, FFN %u, vocab %u, "
	    "BF16; %.2f GB of weights read per decode step; random weights on the device in "
	    "%.2f s\n", hp->n_layer, hp->n_embd, hp->n_head, hp->n_head_kv, hp->head_dim, hp->n_ff,
	    hp->n_vocab, w_bytes / 1e9, now_s() - t0);
	printf("KV: f32, %zu bytes per token, paged in device memory (blocks of %u)\n",
	    model_kv_bytes_per_token(m), BENCH_BLOCK);

	max_tokens = o->prefill > maxb ? o->prefill : maxb;
	if (max_tokens < BENCH_SUFFIX)
		max_tokens = BENCH_SUFFIX;
	per_fork = (o->prompt + o->tokens + 2 + BENCH_BLOCK - 1) / BENCH_BLOCK -
	    o->prompt / BENCH_BLOCK + 1;
	blocks = (o->prefill + BENCH_BLOCK - 1) / BENCH_BLOCK + (o->prompt + BENCH_BLOCK - 1) /
	    BENCH_BLOCK + maxb * per_fork + (BENCH_SUFFIX + BENCH_PROBE) / BENCH_BLOCK + 8;
	ids = calloc(max_tokens, sizeof(*ids));
	next = calloc(maxb, sizeof(*next));
	kv = calloc(maxb, sizeof(*kv));
	fs = calloc(maxb, sizeof(*fs));
	logits = calloc((size_t)maxb * hp->n_vocab, sizeof(float));
	if (!ids || !next || !kv || !fs || !logits ||
	    forward_create(m, be, max_tokens, &fw) < 0 ||
	    kv_pool_create_mem(hp->n_layer, hp->n_head_kv * hp->head_dim, BENCH_BLOCK, blocks,
	    be->ops->kv_mem(be), &pool) < 0) {
		fprintf(stderr, "bench-cuda: out of memory (forward for %u tokens, %u KV blocks of "
		    "%zu bytes)\n", max_tokens, blocks, model_kv_bytes_per_token(m) * BENCH_BLOCK);
		goto out;
	}
	for (i = 0; i < max_tokens; i++)
		ids[i] = (i * 7919u + 13) % hp->n_vocab;
	for (i = 0; i < BENCH_SUFFIX; i++)
		suffix[i] = (i * 104729u + 7) % hp->n_vocab;

	/* Warm-up (cuBLAS heuristics, first launches), then the timed prefill. */
	if (kv_paged_create(pool, hp->n_ctx_train, &pre) < 0 ||
	    forward_run(fw, pre, ids, 16, NULL, logits, NULL, err, sizeof err) < 0)
		goto fail;
	kv_destroy(pre);
	pre = NULL;
	if (kv_paged_create(pool, hp->n_ctx_train, &pre) < 0)
		goto oom;
	t0 = now_s();
	if (forward_run(fw, pre, ids, o->prefill, NULL, logits, NULL, err, sizeof err) < 0)
		goto fail;
	t = now_s() - t0;
	printf("prefill %u tokens: %.3f s, %.0f tokens/s\n", o->prefill, t, o->prefill / t);
	printf("SUMMARY prefill %u tokens: %.0f tokens/s (%.1f ms)\n", o->prefill, o->prefill / t,
	    1e3 * t);
	kv_destroy(pre);
	pre = NULL;

	if (kv_paged_create(pool, hp->n_ctx_train, &base) < 0)
		goto oom;
	if (forward_run(fw, base, ids, o->prompt, NULL, logits, NULL, err, sizeof err) < 0)
		goto fail;
	/* Decode at batch b: b forks of the prompt, one warm-up iteration, then --tokens. */
	for (nb = 0; nb < o->n_batches; nb++) {
		uint32_t it;
		double rate, bw, kvb;
		b = o->batches[nb];
		for (s = 0; s < b; s++) {
			if (kv_fork(base, base->len, &kv[s]) < 0)
				goto oom;
			next[s] = (ids[o->prompt - 1] + s) % hp->n_vocab;
		}
		for (it = 0; it <= o->tokens; it++) {
			if (it == 1)
				t0 = now_s();
			for (s = 0; s < b; s++)
				fs[s] = (struct forward_seq){ .kv = kv[s], .tokens = &next[s], .n = 1,
				    .logits = logits + (size_t)s * hp->n_vocab };
			if (forward_batch(fw, fs, b, NULL, err, sizeof err) < 0)
				goto fail;
			for (s = 0; s < b; s++)
				next[s] = be->ops->argmax(be, logits + (size_t)s * hp->n_vocab,
				    hp->n_vocab);
		}
		t = now_s() - t0;
		rate = (double)b * o->tokens / t;
		for (i = 0; i < hp->n_vocab; i++)
			finite &= isfinite(logits[i]);
		if (nb == 0 || b == 1) {
			rate1 = rate;
			step1 = t / o->tokens;
		}
		printf("decode batch %3u, %u tokens each: %.3f s, %.1f tokens/s (%.2f ms/iteration),"
		    " x%.2f batch %u\n", b, o->tokens, t, rate, 1e3 * t / o->tokens, rate / rate1,
		    o->batches[0]);
		/* Bytes per step: the weights once, every sequence's K and V of all layers. */
		kvb = (double)b * model_kv_bytes_per_token(m) * (o->prompt + 1 + o->tokens / 2.0);
		bw = (w_bytes + kvb) / (t / o->tokens) / 1e9;
		if (b == 1) {
			kv_bytes = kvb;
			printf("SUMMARY decode batch 1: %.1f tokens/s, %.2f ms/step; %.2f GB read per "
			    "step (weights %.2f + KV %.3f) = %.0f GB/s = %.1f%% of peak; roofline %.0f "
			    "tokens/s; goal >= 70%%: %s\n", rate, 1e3 * t / o->tokens,
			    (w_bytes + kv_bytes) / 1e9, w_bytes / 1e9, kv_bytes / 1e9, bw,
			    peak > 0 ? 100 * bw / peak : 0.0, peak > 0 ? peak * 1e9 / (w_bytes +
			    kv_bytes) : 0.0, peak > 0 && bw >= 0.7 * peak ? "met" : "NOT met");
		} else {
			printf("SUMMARY decode batch %u: %.1f tokens/s, %.2f ms/step, x%.2f batch %u, "
			    "%.0f GB/s effective\n", b, rate, 1e3 * t / o->tokens, rate / rate1,
			    o->batches[0], bw);
		}
		for (s = 0; s < b; s++) {
			kv_destroy(kv[s]);
			kv[s] = NULL;
		}
	}

	/* A probe: fork, the suffix prefilled, BENCH_PROBE greedy tokens, the fork freed. */
	t0 = now_s();
	if (kv_fork(base, base->len, &pk) < 0)
		goto oom;
	if (forward_run(fw, pk, suffix, BENCH_SUFFIX, NULL, logits, NULL, err, sizeof err) < 0)
		goto fail;
	for (i = 0; i < BENCH_PROBE; i++) {
		next[0] = be->ops->argmax(be, logits, hp->n_vocab);
		if (forward_run(fw, pk, &next[0], 1, NULL, logits, NULL, err, sizeof err) < 0)
			goto fail;
	}
	kv_destroy(pk);
	pk = NULL;
	t = now_s() - t0;
	printf("probe (fork, %u suffix tokens, %u answer tokens): %.2f ms = %.1f decode steps at "
	    "batch %u\n", BENCH_SUFFIX, BENCH_PROBE, 1e3 * t, t / step1, o->batches[0]);
	printf("SUMMARY probe (fork + %u suffix + %u tokens): %.2f ms = %.1f decode steps\n",
	    BENCH_SUFFIX, BENCH_PROBE, 1e3 * t, t / step1);
	printf("SUMMARY logits finite: %s\n", finite ? "yes" : "NO");
	ret = finite ? 0 : 1;
	goto out;
oom:
	snprintf(err, sizeof err, "out of KV blocks");
fail:
	fprintf(stderr, "bench-cuda: %s\n", err);
	printf("SUMMARY error: %s\n", err);
out:
	if (kv)
		for (s = 0; s < maxb; s++)
			kv_destroy(kv[s]);
	kv_destroy(pk);
	kv_destroy(pre);
	kv_destroy(base);
	kv_pool_free(pool);
	forward_destroy(fw);
	backend_destroy(be);
	model_close(m);
	gguf_close(g);
	if (map)
		munmap(map, map_len);
	free(ids);
	free(next);
	free(kv);
	free(fs);
	free(logits);
	return ret;
}

#endif /* BACKEND_HAVE_CUDA */

static int
bench_batches(const char *s, struct bench_opts *o)
{
	char *end;

	o->n_batches = 0;
	while (*s && o->n_batches < BENCH_MAX_BATCHES) {
		unsigned long v = strtoul(s, &end, 10);
		if (end == s || v == 0 || v > 4096)
			return -1;
		o->batches[o->n_batches++] = (uint32_t)v;
		s = *end == ',' ? end + 1 : end;
		if (*end && *end != ',')
			return -1;
	}
	return o->n_batches ? 0 : -1;
}

int
main(int argc, char **argv)
{
	bool check = false;
	struct bench_opts o = { .device = 0, .layers = shape.n_layer, .prompt = 128,
	    .prefill = 512, .tokens = 8, .batches = { 1, 16, 64, 256 }, .n_batches = 4 };
	int a;

	setvbuf(stdout, NULL, _IOLBF, 0);    /* lines reach a pipe before a timeout kills us */
	for (a = 1; a < argc; a++) {
		const char *v = a + 1 < argc ? argv[a + 1] : NULL;
		if (strcmp(argv[a], "--check") == 0) {
			check = true;
			continue;
		}
		if (v && strcmp(argv[a], "--device") == 0)
			o.device = atoi(v);
		else if (v && strcmp(argv[a], "--layers") == 0)
			o.layers = (uint32_t)strtoul(v, NULL, 10);
		else if (v && strcmp(argv[a], "--prompt") == 0)
			o.prompt = (uint32_t)strtoul(v, NULL, 10);
		else if (v && strcmp(argv[a], "--prefill") == 0)
			o.prefill = (uint32_t)strtoul(v, NULL, 10);
		else if (v && strcmp(argv[a], "--tokens") == 0)
			o.tokens = (uint32_t)strtoul(v, NULL, 10);
		else if (v && strcmp(argv[a], "--peak-gbs") == 0)
			o.peak_gbs = strtod(v, NULL);
		else if (v && strcmp(argv[a], "--batches") == 0) {
			if (bench_batches(v, &o) < 0) {
				fprintf(stderr, "bench-cuda: --batches: up to %d sizes in 1..4096, "
				    "comma-separated\n", BENCH_MAX_BATCHES);
				return 2;
			}
		} else {
			fprintf(stderr, "usage: bench-cuda [--check] [--device N] [--layers N] [--prompt N] "
			    "[--prefill N] [--tokens N] [--batches 1,16,64,256] [--peak-gbs GBS]\n");
			return 2;
		}
		a++;
	}
	if (o.layers == 0 || o.layers > 256 || o.prompt == 0 || o.prefill == 0 || o.tokens == 0 ||
	    o.prompt + o.tokens + BENCH_SUFFIX + BENCH_PROBE + 2 > shape.n_ctx ||
	    o.prefill > shape.n_ctx) {
		fprintf(stderr, "bench-cuda: --layers in 1..256; --prompt, --prefill, --tokens "
		    "positive and within the context (%u)\n", shape.n_ctx);
		return 2;
	}
	if (check)
		return bench_check(&o);
#ifdef BACKEND_HAVE_CUDA
	return bench_run(&o);
#else
	printf("bench-cuda: SKIP: the CUDA backend is not built (make CUDA=1 where nvcc is)\n");
	return 0;
#endif
}
