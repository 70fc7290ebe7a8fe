/*
 * test_cuda_kern.c — the CUDA backend's kernel arithmetic (workers/llm/backend_cuda_kern.h) run
 * on the CPU, no GPU needed: every (block, thread) of the launch backend_cuda.cu makes, idle
 * threads past the end included, the block reductions as the kernels do them (tree over
 * CUK_THREADS slots), against the CPU backend's op on the same inputs.  Sizes at the edges:
 * 1, 255/256/257 elements, odd widths, head dims 33/65/300 (more than a block's threads),
 * 300 positions (several per thread), GQA 1/2/4/8, a partial last KV block, chunked prefill
 * over a prefix already in the cache, scattered query positions, a fork written past a
 * partial block (copy on write), the flat-KV staging layout, scores large enough that the
 * softmax overflows unless it subtracts the maximum.
 *
 * Each grid runs twice, threads in forward and in reverse order: a result that depends on the
 * order is two threads touching the same element (a race on the GPU).  Guard values after
 * every output and the scores scratch catch writes past the end.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "workers/llm/backend.h"
#include "workers/llm/backend_cuda_kern.h"
#include "workers/llm/kv.h"

#define GUARD 300                /* floats after each buffer; > a block of threads */
#define GUARD_VAL 12345.5f

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static float
rndf(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (float)(uint32_t)(rng >> 16) / 2147483648.0f - 1.0f;
}

static uint32_t
rndu(uint32_t n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng >> 20) % n;
}

/* n random floats followed by GUARD guard values. */
static float *
buf_rand(size_t n)
{
	float *v = malloc((n + GUARD) * sizeof(float));
	size_t i;

	assert_non_null(v);
	for (i = 0; i < n; i++)
		v[i] = rndf();
	for (i = 0; i < GUARD; i++)
		v[n + i] = GUARD_VAL;
	return v;
}

static float *
buf_copy(const float *src, size_t n)
{
	float *v = buf_rand(n);

	memcpy(v, src, n * sizeof(float));
	return v;
}

static void
guard_intact(const float *v, size_t n, const char *what)
{
	size_t i;

	for (i = 0; i < GUARD; i++)
		if (v[n + i] != GUARD_VAL)
			fail_msg("%s: element %zu past the end written", what, i);
}

/* max |got - ref| / max |ref| over n values must be <= tol (NaN fails). */
static void
close_to(const float *ref, const float *got, size_t n, double tol, const char *what)
{
	double maxref = 1e-30, maxdiff = 0;
	size_t i, worst = 0;

	for (i = 0; i < n; i++) {
		double d = fabs((double)ref[i] - got[i]);
		if (fabs(ref[i]) > maxref)
			maxref = fabs(ref[i]);
		if (!(d <= maxdiff)) {
			maxdiff = isnan(d) ? INFINITY : d;
			worst = i;
		}
	}
	if (!(maxdiff / maxref <= tol))
		fail_msg("%s: relative error %.3g at %zu (ref %g, got %g) > %.3g", what,
		    maxdiff / maxref, worst, ref[worst], got[worst], tol);
}

/* Thread number k of `total` in the given order. */
static size_t
order(size_t k, size_t total, int reverse)
{
	return reverse ? total - 1 - k : k;
}

static struct backend *
cpu_be(void)
{
	struct backend *be = NULL;

	assert_int_equal(backend_cpu_create(1, &be), 0);
	return be;
}

/* ---- launch sizes ------------------------------------------------------------------------ */

static void
test_launch_sizes(void **state)
{
	(void)state;
	assert_int_equal(CUK_THREADS & (CUK_THREADS - 1), 0);   /* the reductions halve it */
	assert_int_equal(cuk_blocks(0), 0);
	assert_int_equal(cuk_blocks(1), 1);
	assert_int_equal(cuk_blocks(CUK_THREADS), 1);
	assert_int_equal(cuk_blocks(CUK_THREADS + 1), 2);
	assert_int_equal(cuk_blocks((size_t)CUK_THREADS * 65535 + 1), 65536);
	assert_int_equal(cuk_attn_nblocks(1, 16), 1);
	assert_int_equal(cuk_attn_nblocks(16, 16), 1);
	assert_int_equal(cuk_attn_nblocks(17, 16), 2);
	assert_int_equal(cuk_attn_nblocks(37, 16), 3);
	assert_int_equal(cuk_attn_nblocks(300, 300), 1);
}

/* ---- matmul inputs to F16 ------------------------------------------------------------------ */

/* The largest magnitude as k_to_f16_block (one block) or k_absmax (a grid) finds it. */
static float
absmax_launch(const float *x, size_t n, bool grid)
{
	size_t nb = grid ? cuk_blocks(n) : 1, stride, t;
	float m = 0.0f;

	if (nb > 1024)
		nb = 1024;
	stride = nb * CUK_THREADS;
	for (t = 0; t < stride; t++)     /* the block trees and atomicMax are a plain max */
		m = fmaxf(m, cuk_absmax_part(t, stride, x, n));
	return m;
}

static void
test_f16_scale(void **state)
{
	static const size_t sizes[] = { 1, 255, 257, 4096, CUK_F16_ONE_BLOCK + 3 };
	size_t s, i, n;
	uint64_t r = 7;

	(void)state;
	assert_true(cuk_f16_scale(0.0f) == 1.0f);
	assert_true(cuk_f16_scale(CUK_F16_MAX) == 1.0f);
	assert_true(cuk_f16_scale(65505.0f) == 2.0f);
	assert_true(cuk_f16_scale(2.0f * CUK_F16_MAX) == 2.0f);
	assert_true(cuk_f16_scale(2.0f * CUK_F16_MAX + 1.0f) == 4.0f);
	assert_true(cuk_f16_scale(1e6f) == 16.0f);
	assert_true(cuk_f16_scale(INFINITY) == 1.0f);
	assert_true(cuk_f16_scale(NAN) == 1.0f);
	/* Over many magnitudes: a power of two, the scaled maximum fits, and it is the smallest. */
	for (i = 0; i < 20000; i++) {
		float a, sc;
		int e;
		r = r * 6364136223846793005ULL + 1442695040888963407ULL;
		a = ldexpf((float)(r >> 40) / 16777216.0f + 0.5f, (int)(r >> 20 & 127) - 20);
		sc = cuk_f16_scale(a);
		assert_true(frexpf(sc, &e) == 0.5f);
		assert_true(a / sc <= CUK_F16_MAX);
		assert_true(sc == 1.0f || a / (sc / 2.0f) > CUK_F16_MAX);
	}
	/* The launches' maximum over every element, one spike anywhere (the last, past a block). */
	for (s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		n = sizes[s];
		float *x = malloc(n * sizeof(float));
		assert_non_null(x);
		for (i = 0; i < n; i++)
			x[i] = (float)((int)(i % 17) - 8);
		x[n - 1] = -3e5f;
		assert_true(absmax_launch(x, n, false) == 3e5f);
		assert_true(absmax_launch(x, n, true) == 3e5f);
		if (n > 2) {
			x[n / 2] = NAN;      /* ignored by the max; propagates in the product */
			assert_true(absmax_launch(x, n, true) == 3e5f);
		}
		free(x);
	}
#ifdef __FLT16_MAX__
	/* A dot product through 16-bit inputs as the GEMM gets them: scaled, it is finite and
	 * close to FP32; unscaled (the old conversion), the 3e5 activation was infinite. */
	{
		float x[64], w[64], ref = 0.0f, got = 0.0f, old = 0.0f, sc;
		for (i = 0; i < 64; i++) {
			x[i] = (float)((int)i - 31) * 1000.0f;
			w[i] = (float)(_Float16)((float)((int)(i * 7 % 13) - 6) / 8.0f);
			ref += w[i] * x[i];
		}
		x[5] = 3e5f;
		ref += w[5] * (3e5f - (float)(5 - 31) * 1000.0f);
		sc = cuk_f16_scale(absmax_launch(x, 64, false));
		assert_true(sc == 8.0f);
		for (i = 0; i < 64; i++) {
			got += w[i] * (float)(_Float16)(x[i] * (1.0f / sc));
			old += w[i] * (float)(_Float16)x[i];
		}
		got *= sc;
		assert_true(isfinite(got));
		assert_true(fabsf(got - ref) <= 1e-3f * fabsf(ref) + 1.0f);
		assert_true(!isfinite(old) || w[5] == 0.0f);
	}
#endif
}

/* ---- elementwise ------------------------------------------------------------------------- */

static void
test_elementwise(void **state)
{
	static const size_t sizes[] = { 1, 255, 256, 257, 1000, 65 * 257 };
	struct backend *cpu = cpu_be();
	size_t s, k, n, total;
	int rev;

	(void)state;
	for (s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
		n = sizes[s];
		total = (size_t)cuk_blocks(n) * CUK_THREADS;
		float *g = buf_rand(n), *u = buf_rand(n), *ref = buf_rand(n);
		for (rev = 0; rev < 2; rev++) {
			float *out = buf_rand(n), *x = buf_copy(g, n), *x2 = buf_copy(g, n);
			char what[64];
			cpu->ops->swiglu(cpu, ref, g, u, n);
			for (k = 0; k < total; k++)
				cuk_swiglu(order(k, total, rev), out, g, u, n);
			snprintf(what, sizeof what, "swiglu %zu", n);
			close_to(ref, out, n, 1e-6, what);
			guard_intact(out, n, what);

			memcpy(ref, g, n * sizeof(float));
			cpu->ops->axpy(cpu, ref, u, -0.37f, n);
			for (k = 0; k < total; k++)
				cuk_axpy(order(k, total, rev), x, u, -0.37f, n, n);
			snprintf(what, sizeof what, "axpy %zu", n);
			close_to(ref, x, n, 1e-6, what);
			guard_intact(x, n, what);

			/* add_bias: rows of 65 (or n itself when smaller), the bias repeating. */
			size_t dim = n >= 65 && n % 65 == 0 ? 65 : n;
			memcpy(ref, g, n * sizeof(float));
			cpu->ops->add_bias(cpu, ref, u, (uint32_t)(n / dim), (uint32_t)dim);
			for (k = 0; k < total; k++)
				cuk_axpy(order(k, total, rev), x2, u, 1.0f, n, dim);
			snprintf(what, sizeof what, "add_bias %zu rows of %zu", n / dim, dim);
			close_to(ref, x2, n, 0, what);
			guard_intact(x2, n, what);
			free(out);
			free(x);
			free(x2);
		}
		free(g);
		free(u);
		free(ref);
	}
	backend_destroy(cpu);
}

static void
test_get_rows(void **state)
{
	const uint32_t rows = 67, cols = 65, n = 257;
	struct model_weight w = { "w", GGUF_T_F32, cols, rows, 1, (size_t)cols * 4,
	    (size_t)cols * 4 * rows, NULL };
	struct backend *cpu = cpu_be();
	float *data = buf_rand((size_t)rows * cols), *ref = buf_rand((size_t)n * cols);
	uint32_t ids[257], t;
	size_t k, total = (size_t)cuk_blocks((size_t)n * cols) * CUK_THREADS, src;
	int rev;

	(void)state;
	w.data = data;
	for (t = 0; t < n; t++)
		ids[t] = t < 2 ? t * (rows - 1) : rndu(rows);
	cpu->ops->get_rows(cpu, &w, ids, n, ref);
	for (rev = 0; rev < 2; rev++) {
		float *out = buf_rand((size_t)n * cols);
		for (k = 0; k < total; k++) {
			size_t i = order(k, total, rev);
			if (cuk_get_rows_src(i, ids, n, cols, &src)) {
				assert_true(src < (size_t)rows * cols);
				out[i] = data[src];
			}
		}
		close_to(ref, out, (size_t)n * cols, 0, "get_rows");
		guard_intact(out, (size_t)n * cols, "get_rows");
		free(out);
	}
	free(data);
	free(ref);
	backend_destroy(cpu);
}

static void
test_rope(void **state)
{
	static const struct { uint32_t head_dim, n_rot, n_heads; } shapes[] = {
		{ 66, 64, 5 }, { 128, 128, 8 }, { 65, 32, 3 }, { 2, 2, 1 },
	};
	struct backend *cpu = cpu_be();
	float freqs[64];
	uint32_t s, m, f, t, n_tok = 257, pos[257];
	int rev;

	(void)state;
	for (t = 0; t < 64; t++)
		freqs[t] = 1.0f + (float)t / 16;
	for (t = 0; t < n_tok; t++)
		pos[t] = t < 4 ? t : rndu(8192);
	for (s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
		for (m = 0; m < 2; m++)
			for (f = 0; f < 2; f++)
				for (rev = 0; rev < 2; rev++) {
					struct backend_rope r = { m ? MODEL_ROPE_NEOX : MODEL_ROPE_NORM,
					    shapes[s].n_rot, 10000.0f, f ? 0.25f : 1.0f, f ? freqs : NULL };
					size_t n = (size_t)n_tok * shapes[s].n_heads * shapes[s].head_dim;
					size_t work = (size_t)n_tok * (shapes[s].n_rot / 2) * shapes[s].n_heads;
					size_t total = (size_t)cuk_blocks(work) * CUK_THREADS, k;
					float *x = buf_rand(n), *ref = buf_copy(x, n);
					char what[96];
					cpu->ops->rope(cpu, ref, n_tok, shapes[s].n_heads, shapes[s].head_dim,
					    pos, &r);
					for (k = 0; k < total; k++)
						cuk_rope(order(k, total, rev), x, n_tok, shapes[s].n_heads,
						    shapes[s].head_dim, pos, (int)r.mode, r.n_rot, r.base,
						    r.freq_scale, r.freqs);
					snprintf(what, sizeof what, "rope %s head_dim %u n_rot %u%s%s",
					    m ? "neox" : "norm", shapes[s].head_dim, shapes[s].n_rot,
					    f ? " freqs+scale" : "", rev ? " reversed" : "");
					close_to(ref, x, n, 1e-6, what);
					guard_intact(x, n, what);
					free(x);
					free(ref);
				}
	backend_destroy(cpu);
}

/* ---- rmsnorm: block reductions ----------------------------------------------------------- */

static void
test_rmsnorm(void **state)
{
	static const struct { uint32_t rows, dim; } shapes[] = {
		{ 257, 65 }, { 1285, 13 }, { 3, 1000 }, { 2, 1 }, { 1, 256 }, { 1, 257 },
	};
	struct backend *cpu = cpu_be();
	double part[CUK_THREADS];
	uint32_t s, row, tid, st;
	int rev, inplace;

	(void)state;
	for (s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
		for (inplace = 0; inplace < 2; inplace++)
			for (rev = 0; rev < 2; rev++) {
				uint32_t rows = shapes[s].rows, dim = shapes[s].dim;
				size_t n = (size_t)rows * dim;
				float *x = buf_rand(n), *w = buf_rand(dim), *ref = buf_rand(n);
				float *out = inplace ? x : buf_rand(n);
				char what[96];
				cpu->ops->rmsnorm(cpu, ref, x, w, rows, dim, 1e-6f);
				for (row = 0; row < rows; row++) {
					for (tid = 0; tid < CUK_THREADS; tid++) {
						uint32_t th = (uint32_t)order(tid, CUK_THREADS, rev);
						part[th] = cuk_rmsnorm_part(row, th, CUK_THREADS, x, dim);
					}
					for (st = CUK_THREADS / 2; st > 0; st >>= 1)
						for (tid = 0; tid < st; tid++)
							part[tid] += part[tid + st];
					for (tid = 0; tid < CUK_THREADS; tid++)
						cuk_rmsnorm_apply(row, (uint32_t)order(tid, CUK_THREADS, rev),
						    CUK_THREADS, out, x, w, dim, 1e-6f, part[0]);
				}
				snprintf(what, sizeof what, "rmsnorm %ux%u%s%s", rows, dim,
				    inplace ? " in place" : "", rev ? " reversed" : "");
				close_to(ref, out, n, 1e-6, what);
				guard_intact(out, n, what);
				if (!inplace)
					free(out);
				free(x);
				free(w);
				free(ref);
			}
	backend_destroy(cpu);
}

/* ---- attention --------------------------------------------------------------------------- */

/*
 * The attention op as backend_cuda.cu runs it: the plan (positions needed, consecutive or
 * not), the block table (a paged KV read in place) or the staged layout (a flat KV: one block
 * of n_pos rows), then every block (token, head) of CUK_THREADS threads, phase by phase with
 * the kernel's tree reductions.
 */
static void
emulate_attention(float *out, const float *q, uint32_t n_tok, const uint32_t *pos,
    struct kv *kv, const struct backend_attn *at, int rev)
{
	struct cuk_attn a;
	const float **tab;
	float red[CUK_THREADS], *scores, m, l;
	uint32_t n_pos, nb, item, tid, s, th;
	bool consecutive = cuk_attn_plan(pos, n_tok, &n_pos);
	size_t ns;

	if (kv_is_paged(kv)) {
		a.blk = kv_block_size(kv);
		nb = cuk_attn_nblocks(n_pos, a.blk);
		tab = calloc(2 * (size_t)nb, sizeof(*tab));
		assert_non_null(tab);
		assert_int_equal(cuk_attn_table(kv, at->layer, n_pos, a.blk, tab), nb);
	} else {                 /* staged: positions 0..n_pos-1 as one block */
		a.blk = n_pos;
		tab = calloc(2, sizeof(*tab));
		assert_non_null(tab);
		tab[0] = kv_k(kv, at->layer, 0);
		tab[1] = kv_v(kv, at->layer, 0);
	}
	ns = (size_t)n_tok * at->n_head * n_pos;
	scores = buf_rand(ns);
	a.out = out;
	a.q = q;
	a.pos = consecutive ? NULL : pos;
	a.pos0 = pos[0];
	a.tab = tab;
	a.row = kv->row;
	a.scores = scores;
	a.n_head = at->n_head;
	a.n_head_kv = at->n_head_kv;
	a.hd = at->head_dim;
	a.n_pos = n_pos;
	a.scale = at->scale;
	for (item = 0; item < n_tok * at->n_head; item++) {
		for (tid = 0; tid < CUK_THREADS; tid++) {
			th = (uint32_t)order(tid, CUK_THREADS, rev);
			red[th] = cuk_attn_scores(&a, item, th, CUK_THREADS);
		}
		for (s = CUK_THREADS / 2; s > 0; s >>= 1)
			for (tid = 0; tid < s; tid++)
				red[tid] = fmaxf(red[tid], red[tid + s]);
		m = red[0];
		for (tid = 0; tid < CUK_THREADS; tid++) {
			th = (uint32_t)order(tid, CUK_THREADS, rev);
			red[th] = cuk_attn_exp(&a, item, th, CUK_THREADS, m);
		}
		for (s = CUK_THREADS / 2; s > 0; s >>= 1)
			for (tid = 0; tid < s; tid++)
				red[tid] += red[tid + s];
		l = red[0];
		for (tid = 0; tid < CUK_THREADS; tid++)
			cuk_attn_out(&a, item, (uint32_t)order(tid, CUK_THREADS, rev), CUK_THREADS, l);
	}
	guard_intact(scores, ns, "attention scores scratch");
	free(scores);
	free(tab);
}

/* Random K/V for positions [p0, p1) of every layer, stored by the CPU backend. */
static void
store(struct backend *cpu, struct kv *kv, uint32_t p0, uint32_t p1)
{
	uint32_t n = p1 - p0, t, layer, *pos = malloc(n * sizeof(*pos));
	float *k = buf_rand((size_t)n * kv->row), *v = buf_rand((size_t)n * kv->row);

	assert_non_null(pos);
	for (t = 0; t < n; t++)
		pos[t] = p0 + t;
	assert_int_equal(kv->ops->reserve(kv, p1), 0);
	for (layer = 0; layer < kv->n_layer; layer++)
		assert_int_equal(cpu->ops->kv_store(cpu, kv, layer, k, v, n, pos), 0);
	kv->len = p1;
	free(pos);
	free(k);
	free(v);
}

/* n_tok queries at pos[] through both; the emulation in both thread orders. */
static void
attend(struct backend *cpu, struct kv *kv, const struct backend_attn *at, const uint32_t *pos,
    uint32_t n_tok, const char *what)
{
	size_t sz = (size_t)n_tok * at->n_head * at->head_dim;
	float *q = buf_rand(sz), *ref = buf_rand(sz);
	char msg[192];
	int rev;

	cpu->ops->attention(cpu, ref, q, n_tok, pos, kv, at);
	for (rev = 0; rev < 2; rev++) {
		float *out = buf_rand(sz);
		emulate_attention(out, q, n_tok, pos, kv, at, rev);
		snprintf(msg, sizeof msg, "%s: heads %u/%u head_dim %u%s", what, at->n_head,
		    at->n_head_kv, at->head_dim, rev ? " reversed" : "");
		/* Scores near 200 carry float rounding of ~1e-5 into exp: a wider bound there (a
		 * softmax without the maximum subtracted gives inf or NaN). */
		close_to(ref, out, sz, at->scale > 1 ? 1e-3 : 1e-5, msg);
		guard_intact(out, sz, msg);
		free(out);
	}
	free(q);
	free(ref);
}

/* Queries for positions [p0, p1). */
static void
attend_range(struct backend *cpu, struct kv *kv, const struct backend_attn *at, uint32_t p0,
    uint32_t p1, const char *what)
{
	uint32_t *pos = malloc((p1 - p0) * sizeof(*pos)), t;

	assert_non_null(pos);
	for (t = p0; t < p1; t++)
		pos[t - p0] = t;
	attend(cpu, kv, at, pos, p1 - p0, what);
	free(pos);
}

static void
test_attention(void **state)
{
	static const struct { uint32_t n_head, n_head_kv, head_dim; } shapes[] = {
		{ 8, 8, 65 }, { 8, 2, 128 }, { 16, 2, 64 }, { 4, 1, 33 }, { 6, 3, 300 },
	};
	static const uint32_t lens[] = { 37, 300 };
	struct backend *cpu = cpu_be();
	size_t s, l;

	(void)state;
	for (s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
		for (l = 0; l < 2; l++) {
			uint32_t row = shapes[s].n_head_kv * shapes[s].head_dim, len = lens[l];
			uint32_t scattered[3] = { len - 1, 0, len / 2 };
			struct backend_attn at = { shapes[s].n_head, shapes[s].n_head_kv,
			    shapes[s].head_dim, 1, 1.0f / sqrtf((float)shapes[s].head_dim) };
			struct backend_attn big = at;
			struct kv_pool *pool = NULL;
			struct kv *kv = NULL, *fork = NULL, *flat = NULL;

			assert_int_equal(kv_pool_create(2, row, 16, 64, &pool), 0);
			assert_int_equal(kv_paged_create(pool, 1024, &kv), 0);
			store(cpu, kv, 0, len);
			attend_range(cpu, kv, &at, len - 1, len, "paged, decode");
			attend_range(cpu, kv, &at, 20, len, "paged, chunk after a prefix of 20");
			attend_range(cpu, kv, &at, 0, len < 40 ? len : 40, "paged, prefill");
			attend(cpu, kv, &at, scattered, 3, "paged, scattered positions");
			/* Scores in the hundreds: exp overflows unless the maximum is subtracted. */
			big.scale = 20.0f;
			attend_range(cpu, kv, &big, len - 3, len, "paged, large scores");
			/* A fork at a partial block written past the fork point (copy on write). */
			assert_int_equal(kv_fork(kv, 21, &fork), 0);
			store(cpu, fork, 21, 40);
			attend_range(cpu, fork, &at, 30, 40, "fork after copy on write");
			attend_range(cpu, kv, &at, 21, 37, "source after the fork");
			/* A flat KV: the host path's staged layout. */
			assert_int_equal(kv_flat_create(2, row, 512, &flat), 0);
			store(cpu, flat, 0, len);
			attend_range(cpu, flat, &at, len - 20, len, "flat (staged)");
			attend(cpu, flat, &at, scattered, 3, "flat, scattered positions");
			kv_destroy(flat);
			kv_destroy(fork);
			kv_destroy(kv);
			kv_pool_free(pool);
		}
	backend_destroy(cpu);
}

/* One position's score far above the others, seen by a thread that also sees later ones: the
 * block's maximum must be the maximum of every score, not of each thread's last one. */
static void
test_attention_spike(void **state)
{
	const uint32_t len = 300;
	struct backend_attn at = { 1, 1, 1, 0, 1.0f };
	struct backend *cpu = cpu_be();
	struct kv *kv = NULL;
	float *k = malloc(len * sizeof(float)), *v = buf_rand(len), q = 1.0f, ref, out[1 + GUARD];
	uint32_t *pos = malloc(len * sizeof(uint32_t)), p, qpos = len - 1;
	int rev;

	(void)state;
	assert_non_null(k);
	assert_non_null(pos);
	for (p = 0; p < len; p++) {
		k[p] = p == 0 ? 100.0f : -100.0f + 0.1f * (float)p;
		pos[p] = p;
	}
	assert_int_equal(kv_flat_create(1, 1, len, &kv), 0);
	assert_int_equal(kv->ops->reserve(kv, len), 0);
	assert_int_equal(cpu->ops->kv_store(cpu, kv, 0, k, v, len, pos), 0);
	kv->len = len;
	cpu->ops->attention(cpu, &ref, &q, 1, &qpos, kv, &at);
	for (rev = 0; rev < 2; rev++) {
		out[0] = 0;
		emulate_attention(out, &q, 1, &qpos, kv, &at, rev);
		close_to(&ref, out, 1, 1e-5, "attention with one spike at position 0");
	}
	kv_destroy(kv);
	free(k);
	free(v);
	free(pos);
	backend_destroy(cpu);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_launch_sizes),
		cmocka_unit_test(test_f16_scale),
		cmocka_unit_test(test_elementwise),
		cmocka_unit_test(test_get_rows),
		cmocka_unit_test(test_rope),
		cmocka_unit_test(test_rmsnorm),
		cmocka_unit_test(test_attention),
		cmocka_unit_test(test_attention_spike),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
