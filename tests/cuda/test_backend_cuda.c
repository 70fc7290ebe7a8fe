/*
 * test_backend_cuda.c — every op of the CUDA backend against the CPU backend on random inputs
 * (`make check-cuda`).  Sizes chosen for edge cases: odd widths and head dims, GQA ratios 1, 4
 * and 8, sequences ending in a partial KV block, a fork sharing pages (copy on write), batches
 * of 1 and 257 tokens, MoE and top-p ties; attention over a host pool (staged) and over a
 * pool in device memory (ops->kv_mem: block table, copy on write on the device).  Where no CUDA device is present it says
 * "check-cuda: SKIP: no CUDA device" and exits 0.
 *
 * Tolerances: relative to the largest reference value; F32 paths 1e-4, paths through 16-bit
 * activations (F16/BF16/Q8_0 matmul) 2e-2; selection (argmax, sampling, MoE ids) must match.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "workers/llm/backend.h"
#include "workers/llm/kv.h"

static struct backend *cpu, *gpu;
static int failures, checks;
static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static uint32_t
rnd32(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng >> 16);
}

/* Uniform in [-1, 1). */
static float
rndf(void)
{
	return (float)rnd32() / 2147483648.0f - 1.0f;
}

static float *
rand_vec(size_t n)
{
	float *v = malloc(n * sizeof(float));
	size_t i;

	if (!v) {
		fprintf(stderr, "out of memory\n");
		exit(1);
	}
	for (i = 0; i < n; i++)
		v[i] = rndf();
	return v;
}

static float *
to_gpu(const float *h, size_t n)
{
	float *d = gpu->ops->alloc(gpu, n);

	gpu->ops->write(gpu, d, h, n);
	return d;
}

static float *
from_gpu(const float *d, size_t n)
{
	float *h = malloc(n * sizeof(float));

	gpu->ops->read(gpu, h, d, n);
	return h;
}

static void
check_err(const char *what)
{
	char msg[256] = "";

	if (gpu->ops->error(gpu, msg, sizeof msg) != 0) {
		printf("FAIL %s: device error: %s\n", what, msg);
		failures++;
	}
}

/* Compares n floats (got from the device at d) with ref. */
static void
compare(const char *what, const float *ref, const float *d, size_t n, double tol)
{
	float *got = from_gpu(d, n);
	double maxref = 1e-30, maxdiff = 0;
	size_t i, worst = 0;

	check_err(what);
	for (i = 0; i < n; i++) {
		double diff = fabs((double)ref[i] - got[i]);
		if (fabs(ref[i]) > maxref)
			maxref = fabs(ref[i]);
		if (!(diff <= maxdiff)) {   /* NaN counts */
			maxdiff = isnan(diff) ? INFINITY : diff;
			worst = i;
		}
	}
	checks++;
	if (!(maxdiff / maxref <= tol)) {
		printf("FAIL %s: max |diff| %.3g at %zu (ref %g, got %g), relative %.3g > %.3g\n",
		    what, maxdiff, worst, ref[worst], got[worst], maxdiff / maxref, tol);
		failures++;
	} else {                 /* every op's error, for the one run a GPU is lent for */
		printf("ok   %s: relative %.3g (tolerance %.3g)\n", what, maxdiff / maxref, tol);
	}
	free(got);
}

/* ---- weights ----------------------------------------------------------------------------- */

static uint16_t
rand_half(int exp_lo, int exp_hi)
{
	uint32_t e = (uint32_t)exp_lo + rnd32() % (uint32_t)(exp_hi - exp_lo + 1);

	return (uint16_t)((rnd32() & 1) << 15 | e << 10 | (rnd32() & 0x3ff));
}

/* A rows x cols matrix of ggml type `type` with random values. */
static struct model_weight
rand_weight(enum gguf_ttype type, uint32_t rows, uint32_t cols)
{
	struct model_weight w = { "test", type, cols, rows, 1, 0, 0, NULL };
	uint8_t *p;
	size_t i, j;

	switch (type) {
	case GGUF_T_F32: w.row_bytes = (size_t)cols * 4; break;
	case GGUF_T_F16:
	case GGUF_T_BF16: w.row_bytes = (size_t)cols * 2; break;
	default: w.row_bytes = (size_t)cols / 32 * 34; break;  /* Q8_0 */
	}
	w.mat_bytes = w.row_bytes * rows;
	p = malloc(w.mat_bytes);
	for (i = 0; i < rows; i++) {
		uint8_t *r = p + i * w.row_bytes;
		for (j = 0; j < cols; j++) {
			if (type == GGUF_T_F32) {
				float f = rndf();
				memcpy(r + 4 * j, &f, 4);
			} else if (type == GGUF_T_F16) {
				uint16_t h = rand_half(11, 15);
				memcpy(r + 2 * j, &h, 2);
			} else if (type == GGUF_T_BF16) {
				float f = rndf();
				uint32_t bits;
				memcpy(&bits, &f, 4);
				bits >>= 16;
				r[2 * j] = (uint8_t)bits;
				r[2 * j + 1] = (uint8_t)(bits >> 8);
			} else if (j % 32 == 0) {
				uint8_t *blk = r + j / 32 * 34;
				uint16_t d = rand_half(6, 8);
				memcpy(blk, &d, 2);
				for (size_t k = 0; k < 32; k++)
					blk[2 + k] = (uint8_t)rnd32();
			}
		}
	}
	w.data = p;
	return w;
}

static void
test_matmul(void)
{
	static const enum gguf_ttype types[] = { GGUF_T_F32, GGUF_T_F16, GGUF_T_BF16, GGUF_T_Q8_0 };
	static const char *names[] = { "f32", "f16", "bf16", "q8_0" };
	static const uint32_t toks[] = { 1, 7, 257 };
	static struct model_weight ws[4];  /* alive to the end: the backend caches uploads */
	char what[128];
	size_t i, j;

	for (i = 0; i < 4; i++) {
		uint32_t cols = types[i] == GGUF_T_Q8_0 ? 96 : 65, rows = 67;
		struct model_weight w = ws[i] = rand_weight(types[i], rows, cols);
		for (j = 0; j < 3; j++) {
			uint32_t n = toks[j];
			float *x = rand_vec((size_t)n * cols), *y = calloc((size_t)n * rows, 4);
			float *dx = to_gpu(x, (size_t)n * cols), *dy = gpu->ops->alloc(gpu, (size_t)n * rows);
			cpu->ops->matmul(cpu, &w, x, n, y);
			gpu->ops->matmul(gpu, &w, dx, n, dy);
			snprintf(what, sizeof what, "matmul %s %ux%u, %u tokens", names[i], rows, cols, n);
			compare(what, y, dy, (size_t)n * rows, types[i] == GGUF_T_F32 ? 1e-4 : 2e-2);
			free(x);
			free(y);
			gpu->ops->release(gpu, dx);
			gpu->ops->release(gpu, dy);
		}
		{
			uint32_t n = 257, *ids = malloc(n * sizeof(*ids)), t;
			float *out = calloc((size_t)n * cols, 4), *dout = gpu->ops->alloc(gpu,
			    (size_t)n * cols);
			for (t = 0; t < n; t++)
				ids[t] = t < 2 ? t * (rows - 1) : rnd32() % rows;
			cpu->ops->get_rows(cpu, &w, ids, n, out);
			gpu->ops->get_rows(gpu, &w, ids, n, dout);
			snprintf(what, sizeof what, "get_rows %s, 257 ids", names[i]);
			compare(what, out, dout, (size_t)n * cols, types[i] == GGUF_T_Q8_0 ? 1e-3 : 0);
			free(ids);
			free(out);
			gpu->ops->release(gpu, dout);
		}
	}
	/* Activations above F16's 65504 (F16 and Q8_0 weights: inputs scaled by a power of two,
	 * cuk_f16_scale): finite and as close as small ones; 1 token (one block) and 1,100 (past
	 * CUK_F16_ONE_BLOCK elements: the grid path). */
	for (i = 1; i < 4; i += 2) {
		uint32_t cols = types[i] == GGUF_T_Q8_0 ? 96 : 65, rows = 67;
		static const uint32_t big[] = { 1, 1100 };
		for (j = 0; j < 2; j++) {
			uint32_t n = big[j];
			size_t k, nx = (size_t)n * cols;
			float *x = rand_vec(nx), *y = calloc((size_t)n * rows, 4);
			float *dx, *dy = gpu->ops->alloc(gpu, (size_t)n * rows);
			for (k = 0; k < nx; k++)
				x[k] *= k % 7 == 3 ? 4e5f : 300.0f;
			dx = to_gpu(x, nx);
			cpu->ops->matmul(cpu, &ws[i], x, n, y);
			gpu->ops->matmul(gpu, &ws[i], dx, n, dy);
			snprintf(what, sizeof what, "matmul %s, activations to 4e5, %u tokens", names[i],
			    n);
			compare(what, y, dy, (size_t)n * rows, 2e-2);
			free(x);
			free(y);
			gpu->ops->release(gpu, dx);
			gpu->ops->release(gpu, dy);
		}
	}
	/* The uploaded copies again, after other uploads. */
	{
		uint32_t n = 3;
		float *x = rand_vec((size_t)n * 65), *y = calloc((size_t)n * 67, 4);
		float *dx = to_gpu(x, (size_t)n * 65), *dy = gpu->ops->alloc(gpu, (size_t)n * 67);
		cpu->ops->matmul(cpu, &ws[1], x, n, y);
		gpu->ops->matmul(gpu, &ws[1], dx, n, dy);
		compare("matmul f16 again (cached upload)", y, dy, (size_t)n * 67, 2e-2);
		free(x);
		free(y);
		gpu->ops->release(gpu, dx);
		gpu->ops->release(gpu, dy);
	}
}

/* ---- elementwise ------------------------------------------------------------------------- */

static void
test_elementwise(void)
{
	uint32_t rows = 257, dim = 65;
	size_t n = (size_t)rows * dim;
	float *x = rand_vec(n), *y = rand_vec(n), *w = rand_vec(dim), *ref = malloc(n * 4);
	float *dx = to_gpu(x, n), *dy = to_gpu(y, n), *dout = gpu->ops->alloc(gpu, n);

	cpu->ops->rmsnorm(cpu, ref, x, w, rows, dim, 1e-6f);
	gpu->ops->rmsnorm(gpu, dout, dx, w, rows, dim, 1e-6f);
	compare("rmsnorm 257x65", ref, dout, n, 1e-5);
	memcpy(ref, x, n * 4);
	cpu->ops->rmsnorm(cpu, ref, ref, w, rows * 5, 13, 1e-5f);
	gpu->ops->write(gpu, dout, x, n);
	gpu->ops->rmsnorm(gpu, dout, dout, w, rows * 5, 13, 1e-5f);
	compare("rmsnorm in place, 1285x13", ref, dout, n, 1e-5);

	cpu->ops->swiglu(cpu, ref, x, y, n);
	gpu->ops->swiglu(gpu, dout, dx, dy, n);
	compare("swiglu", ref, dout, n, 1e-6);

	memcpy(ref, x, n * 4);
	gpu->ops->write(gpu, dout, x, n);
	cpu->ops->add(cpu, ref, y, n);
	gpu->ops->add(gpu, dout, dy, n);
	compare("add", ref, dout, n, 0);
	cpu->ops->axpy(cpu, ref, y, -0.37f, n);
	gpu->ops->axpy(gpu, dout, dy, -0.37f, n);
	compare("axpy", ref, dout, n, 1e-6);
	cpu->ops->add_bias(cpu, ref, w, rows, dim);
	gpu->ops->add_bias(gpu, dout, w, rows, dim);
	compare("add_bias", ref, dout, n, 1e-6);
	gpu->ops->copy(gpu, dout, dx + dim, dim * 3);
	compare("copy", x + dim, dout, dim * 3, 0);

	free(x);
	free(y);
	free(w);
	free(ref);
	gpu->ops->release(gpu, dx);
	gpu->ops->release(gpu, dy);
	gpu->ops->release(gpu, dout);
}

static void
test_rope(void)
{
	static const struct { uint32_t head_dim, n_rot, n_heads; } shapes[] = {
		{ 66, 64, 5 }, { 128, 128, 8 }, { 65, 32, 3 },
	};
	float freqs[64];
	char what[128];
	size_t s, m, f, i;

	for (i = 0; i < 64; i++)
		freqs[i] = 1.0f + (float)i / 16;
	for (s = 0; s < 3; s++)
		for (m = 0; m < 2; m++)
			for (f = 0; f < 2; f++) {
				uint32_t n_tok = 257, t, *pos = malloc(n_tok * 4);
				size_t n = (size_t)n_tok * shapes[s].n_heads * shapes[s].head_dim;
				struct backend_rope r = { m ? MODEL_ROPE_NEOX : MODEL_ROPE_NORM,
				    shapes[s].n_rot, 10000.0f, f ? 0.25f : 1.0f, f ? freqs : NULL };
				float *x = rand_vec(n), *dx = to_gpu(x, n);
				for (t = 0; t < n_tok; t++)
					pos[t] = t < 4 ? t : rnd32() % 8192;
				cpu->ops->rope(cpu, x, n_tok, shapes[s].n_heads, shapes[s].head_dim, pos, &r);
				gpu->ops->rope(gpu, dx, n_tok, shapes[s].n_heads, shapes[s].head_dim, pos, &r);
				snprintf(what, sizeof what, "rope %s head_dim %u n_rot %u%s",
				    m ? "neox" : "norm", shapes[s].head_dim, shapes[s].n_rot,
				    f ? " freqs+scale" : "");
				compare(what, x, dx, n, 1e-5);
				free(x);
				free(pos);
				gpu->ops->release(gpu, dx);
			}
}

/* ---- KV and attention -------------------------------------------------------------------- */

/* Stores random K/V of positions [p0, p1) of both layers into a (CPU) and b (GPU). */
static void
store_both(struct kv *a, struct kv *b, uint32_t p0, uint32_t p1)
{
	uint32_t n = p1 - p0, t, layer, *pos = malloc(n * 4);
	size_t sz = (size_t)n * a->row;
	float *k = rand_vec(sz), *v = rand_vec(sz), *dk = to_gpu(k, sz), *dv = to_gpu(v, sz);

	for (t = 0; t < n; t++)
		pos[t] = p0 + t;
	if (a->ops->reserve(a, p1) != 0 || b->ops->reserve(b, p1) != 0) {
		printf("FAIL kv reserve %u\n", p1);
		failures++;
	}
	for (layer = 0; layer < a->n_layer; layer++) {
		cpu->ops->kv_store(cpu, a, layer, k, v, n, pos);
		if (gpu->ops->kv_store(gpu, b, layer, dk, dv, n, pos) != 0) {
			printf("FAIL kv_store\n");
			failures++;
		}
	}
	a->len = b->len = p1;
	free(pos);
	free(k);
	free(v);
	gpu->ops->release(gpu, dk);
	gpu->ops->release(gpu, dv);
}

/* Queries for positions [p0, p1) of layer 1 over a (CPU) and b (GPU). */
static void
attend_both(const char *what, struct kv *a, struct kv *b, const struct backend_attn *at,
    uint32_t p0, uint32_t p1)
{
	uint32_t n = p1 - p0, t, *pos = malloc(n * 4);
	size_t sz = (size_t)n * at->n_head * at->head_dim;
	float *q = rand_vec(sz), *dq = to_gpu(q, sz), *ref = malloc(sz * 4);
	float *dout = gpu->ops->alloc(gpu, sz);

	for (t = 0; t < n; t++)
		pos[t] = p0 + t;
	cpu->ops->attention(cpu, ref, q, n, pos, a, at);
	gpu->ops->attention(gpu, dout, dq, n, pos, b, at);
	compare(what, ref, dout, sz, 1e-4);
	free(pos);
	free(q);
	free(ref);
	gpu->ops->release(gpu, dq);
	gpu->ops->release(gpu, dout);
}

/* Queries at scattered positions (not consecutive: the positions are uploaded). */
static void
attend_scattered(const char *what, struct kv *a, struct kv *b, const struct backend_attn *at)
{
	uint32_t pos[3] = { a->len - 1, 0, a->len / 2 };
	size_t sz = (size_t)3 * at->n_head * at->head_dim;
	float *q = rand_vec(sz), *dq = to_gpu(q, sz), *ref = malloc(sz * 4);
	float *dout = gpu->ops->alloc(gpu, sz);

	cpu->ops->attention(cpu, ref, q, 3, pos, a, at);
	gpu->ops->attention(gpu, dout, dq, 3, pos, b, at);
	compare(what, ref, dout, sz, 1e-4);
	free(q);
	free(ref);
	gpu->ops->release(gpu, dq);
	gpu->ops->release(gpu, dout);
}

/* dev: the GPU side's pool in device memory (ops->kv_mem: block table, copy on write on the
 * device), else in host memory (staged). */
static void
test_attention(void)
{
	static const struct { uint32_t n_head, n_head_kv, head_dim; } shapes[] = {
		{ 8, 8, 65 }, { 8, 2, 128 }, { 16, 2, 64 }, { 4, 1, 33 },
	};
	static const uint32_t lens[] = { 37, 300 };
	char what[160];
	size_t s, l;
	int dev;

	for (dev = 0; dev < 2; dev++)
	for (s = 0; s < 4; s++)
		for (l = 0; l < 2; l++) {
			uint32_t row = shapes[s].n_head_kv * shapes[s].head_dim, len = lens[l];
			struct backend_attn at = { shapes[s].n_head, shapes[s].n_head_kv,
			    shapes[s].head_dim, 1, 1.0f / sqrtf((float)shapes[s].head_dim) };
			struct kv_pool *pa = NULL, *pb = NULL;
			struct kv *a = NULL, *b = NULL, *fa = NULL, *fb = NULL;
			const char *kvw = dev ? "device KV" : "host KV";

			if (kv_pool_create(2, row, 16, 64, &pa) != 0 ||
			    kv_pool_create_mem(2, row, 16, 64, dev ? gpu->ops->kv_mem(gpu) : NULL,
			    &pb) != 0 ||
			    kv_paged_create(pa, 1024, &a) != 0 || kv_paged_create(pb, 1024, &b) != 0) {
				printf("FAIL kv setup (%s)\n", kvw);
				failures++;
				goto done;
			}
			store_both(a, b, 0, len);
			snprintf(what, sizeof what, "attention %s heads %u/%u head_dim %u len %u: "
			    "1 query", kvw, at.n_head, at.n_head_kv, at.head_dim, len);
			attend_both(what, a, b, &at, len - 1, len);
			snprintf(what, sizeof what, "attention %s heads %u/%u head_dim %u len %u: "
			    "%u causal", kvw, at.n_head, at.n_head_kv, at.head_dim, len,
			    len > 257 ? 257 : len);
			attend_both(what, a, b, &at, len > 257 ? len - 257 : 0, len);
			snprintf(what, sizeof what, "attention %s heads %u/%u len %u: scattered "
			    "positions", kvw, at.n_head, at.n_head_kv, len);
			attend_scattered(what, a, b, &at);
			/* A fork at a partial block, written past the fork point (copy on write). */
			if (kv_fork(a, 21, &fa) != 0 || kv_fork(b, 21, &fb) != 0) {
				printf("FAIL kv_fork\n");
				failures++;
				goto done;
			}
			store_both(fa, fb, 21, 40);
			snprintf(what, sizeof what, "attention %s fork heads %u/%u head_dim %u", kvw,
			    at.n_head, at.n_head_kv, at.head_dim);
			attend_both(what, fa, fb, &at, 30, 40);
			snprintf(what, sizeof what, "attention %s source after fork heads %u/%u", kvw,
			    at.n_head, at.n_head_kv);
			attend_both(what, a, b, &at, 21, 37);
done:
			kv_destroy(fa);
			kv_destroy(fb);
			kv_destroy(a);
			kv_destroy(b);
			kv_pool_free(pa);
			kv_pool_free(pb);
		}
}

/* ---- selection and sampling -------------------------------------------------------------- */

static void
test_selection(void)
{
	static const struct backend_moe_sel sels[] = {
		{ 2, 0, 0, true }, { 8, 0, 0, false }, { 2, 0.5f, 4, true }, { 2, 0.9f, 0, false },
	};
	static const uint32_t experts[] = { 8, 64 };
	uint32_t ids_a[64], ids_b[64], na, nb, e, s, i, k;
	float wa[64], wb[64];

	for (e = 0; e < 2; e++)
		for (s = 0; s < 4; s++)
			for (k = 0; k < 3; k++) {
				float *lg = rand_vec(experts[e]), *dlg;
				if (k == 1)      /* ties */
					for (i = 0; i < experts[e]; i++)
						lg[i] = (float)(i % 3);
				dlg = to_gpu(lg, experts[e]);
				na = cpu->ops->moe_gate(cpu, lg, experts[e], &sels[s], ids_a, wa);
				nb = gpu->ops->moe_gate(gpu, k == 2 ? dlg : lg, experts[e], &sels[s],
				    ids_b, wb);
				checks++;
				if (na != nb || memcmp(ids_a, ids_b, na * 4) != 0 ||
				    memcmp(wa, wb, na * 4) != 0) {
					printf("FAIL moe_gate %u experts, selection %u, case %u\n",
					    experts[e], s, k);
					failures++;
				}
				free(lg);
				gpu->ops->release(gpu, dlg);
			}
	{
		size_t n = 1001;
		float *lg = rand_vec(n), *dlg, *ref = malloc(n * 4), pa, pb;
		uint32_t ta, tb;
		double u;

		for (i = 0; i < 40; i++)  /* ties at the top */
			lg[i * 7] = 1.5f;
		dlg = to_gpu(lg, n);
		for (i = 0; i < 64; i++) {
			float temp = i % 4 == 0 ? 0.0f : 0.3f * (float)(i % 4);
			float top_p = i % 3 == 0 ? 1.0f : 0.5f + 0.2f * (float)(i % 3);
			u = (double)rnd32() / 4294967296.0;
			ta = cpu->ops->sample(cpu, lg, n, temp, top_p, u, &pa);
			tb = gpu->ops->sample(gpu, i % 2 ? dlg : lg, n, temp, top_p, u, &pb);
			checks++;
			if (ta != tb || pa != pb) {
				printf("FAIL sample t=%g p=%g u=%g: %u (%g) vs %u (%g)\n", temp, top_p,
				    u, ta, pa, tb, pb);
				failures++;
			}
		}
		checks++;
		if (cpu->ops->argmax(cpu, lg, n) != gpu->ops->argmax(gpu, dlg, n)) {
			printf("FAIL argmax\n");
			failures++;
		}
		memcpy(ref, lg, n * 4);
		cpu->ops->softmax(cpu, ref, n);
		gpu->ops->softmax(gpu, dlg, n);
		compare("softmax 1001", ref, dlg, n, 0);
		free(lg);
		free(ref);
		gpu->ops->release(gpu, dlg);
	}
}

int
main(int argc, char **argv)
{
	struct backend_cuda_info info;
	char err[256] = "";
	int device = argc > 1 ? atoi(argv[1]) : 0, rc;

	setvbuf(stdout, NULL, _IOLBF, 0);    /* lines reach a pipe before a timeout kills us */
	if (backend_cuda_info(device, &info, err, sizeof err) == 0)
		printf("device cuda:%d: %s, sm_%d%d, %d SMs, %.1f GiB (%.1f free), driver CUDA "
		    "%d.%d, runtime %d.%d\n", device, info.name, info.cc_major, info.cc_minor,
		    info.sm_count, info.mem_total / 1073741824.0, info.mem_free / 1073741824.0,
		    info.driver_version / 1000, info.driver_version % 1000 / 10,
		    info.runtime_version / 1000, info.runtime_version % 1000 / 10);
	else
		printf("device cuda:%d: %s\n", device, err);
	rc = backend_cuda_create(device, &gpu, err, sizeof err);
	if (rc == -ENODEV) {
		printf("check-cuda: SKIP: no CUDA device (%s)\n", err);
		return 0;
	}
	if (rc != 0) {
		printf("check-cuda: FAIL: %s\n", err);
		return 1;
	}
	if (backend_cpu_create(2, &cpu) != 0) {
		printf("check-cuda: FAIL: cpu backend\n");
		return 1;
	}
	test_matmul();
	test_elementwise();
	test_rope();
	test_attention();
	test_selection();
	check_err("the end");
	backend_destroy(gpu);
	backend_destroy(cpu);
	printf("check-cuda: %s: %d checks, %d failed (cuda:%d)\n", failures ? "FAIL" : "ok",
	    checks, failures, device);
	return failures ? 1 : 0;
}
