/*
 * backend_cuda_kern.h — the per-thread arithmetic of the CUDA backend's kernels (backend_cuda.cu)
 * in C that both nvcc and a C11 compiler accept, so that a test without a GPU
 * (tests/unit/test_cuda_kern.c) runs exactly this index arithmetic on the CPU: every (block,
 * thread) of the launch the backend makes, the idle threads past the end included, with the
 * block reductions done the way the kernels do them.
 *
 * A kernel is its launch size (cuk_blocks, CUK_THREADS threads a block), a call of one of these
 * per thread, and, for rmsnorm and attention, tree reductions over the block between the
 * phases (shared memory, __syncthreads), which stay in the .cu file.  Under nvcc these are
 * __host__ __device__; elsewhere plain static inline functions.
 */
#ifndef CERTA_WORKERS_LLM_BACKEND_CUDA_KERN_H
#define CERTA_WORKERS_LLM_BACKEND_CUDA_KERN_H

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "workers/llm/kv.h"
#include "workers/llm/model.h"

#ifdef __CUDACC__
#define CUK_FN __host__ __device__ static inline
#else
#define CUK_FN static inline
#endif

/* Threads per block of every kernel (a power of two: the block reductions halve it). */
#define CUK_THREADS 256

/* Blocks of CUK_THREADS for n threads' worth of work (one thread per element). */
static inline unsigned
cuk_blocks(size_t n)
{
	return (unsigned)((n + CUK_THREADS - 1) / CUK_THREADS);
}

/* ---- elementwise: thread i of the grid ---------------------------------------------------- */

/* get_rows: where output element i comes from (row ids[t], column col); false past the end. */
CUK_FN bool
cuk_get_rows_src(size_t i, const uint32_t *ids, uint32_t n, uint32_t cols, size_t *src)
{
	size_t t = i / cols, col = i % cols;

	if (t >= n)
		return false;
	*src = (size_t)ids[t] * cols + col;
	return true;
}

/* out[i] = silu(gate[i]) * up[i]. */
CUK_FN void
cuk_swiglu(size_t i, float *out, const float *gate, const float *up, size_t n)
{
	if (i < n)
		out[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

/* ny == n: x += a y; ny < n: y repeats every ny (a bias per row, a == 1). */
CUK_FN void
cuk_axpy(size_t i, float *x, const float *y, float a, size_t n, size_t ny)
{
	if (i < n)
		x[i] += a == 1.0f ? y[i % ny] : a * y[i % ny];
}

/* Rotary embedding: thread idx of n_tok * n_rot/2 * n_heads rotates one pair of one head of
 * one token; theta in double as the CPU backend. */
CUK_FN void
cuk_rope(size_t idx, float *x, uint32_t n_tok, uint32_t n_heads, uint32_t head_dim,
    const uint32_t *pos, int mode, uint32_t n_rot, float base, float freq_scale,
    const float *freqs)
{
	uint32_t half = n_rot / 2, h, i, t, a, b;
	double theta;
	float c, s, x0, x1, *v;

	if (idx >= (size_t)n_tok * half * n_heads)
		return;
	h = (uint32_t)(idx % n_heads);
	i = (uint32_t)(idx / n_heads % half);
	t = (uint32_t)(idx / n_heads / half);
	theta = (double)pos[t] * freq_scale * pow((double)base, -2.0 * i / n_rot);
	if (freqs)
		theta /= freqs[i];
	c = (float)cos(theta);
	s = (float)sin(theta);
	v = x + ((size_t)t * n_heads + h) * head_dim;
	a = mode == MODEL_ROPE_NORM ? 2 * i : i;
	b = mode == MODEL_ROPE_NORM ? 2 * i + 1 : i + half;
	x0 = v[a];
	x1 = v[b];
	v[a] = x0 * c - x1 * s;
	v[b] = x0 * s + x1 * c;
}

/* ---- matmul inputs to F16 with a power-of-two scale ---------------------------------------- */

/* The largest finite F16. */
#define CUK_F16_MAX 65504.0f

/* Matmul inputs up to this many elements are converted by one block (largest magnitude, scale
 * and conversion in one launch: a decode step's inputs); larger ones by a grid (two kernels). */
#define CUK_F16_ONE_BLOCK ((size_t)1 << 16)

/*
 * The scale for rounding activations whose largest magnitude is absmax to F16: 1 when they
 * fit, else the smallest power of two s with absmax / s <= 65504.  x / s is then exact (a
 * power of two; only values below F16's subnormals lose bits, as they would anyway relative to
 * absmax) and cuBLAS multiplies the product back by alpha = s.  Without it a value above 65504
 * became infinite in the GEMM.  absmax infinite or NaN: 1 (it propagates, as on the CPU).
 */
CUK_FN float
cuk_f16_scale(float absmax)
{
	float s;
	int e;

	if (!(absmax > CUK_F16_MAX) || isinf(absmax))
		return 1.0f;
	(void)frexpf(absmax / CUK_F16_MAX, &e);   /* absmax / 65504 <= 2^e, up to its rounding */
	s = ldexpf(1.0f, e);
	/* Exact checks (dividing by a power of two is exact): the smallest that fits. */
	if (absmax / s > CUK_F16_MAX)
		s *= 2.0f;
	else if (s > 1.0f && absmax / (s * 0.5f) <= CUK_F16_MAX)
		s *= 0.5f;
	return s;
}

/* The largest magnitude among x[tid], x[tid + stride], ... below n (NaN ignored: fmaxf). */
CUK_FN float
cuk_absmax_part(size_t tid, size_t stride, const float *x, size_t n)
{
	float m = 0.0f;
	size_t i;

	for (i = tid; i < n; i += stride)
		m = fmaxf(m, fabsf(x[i]));
	return m;
}

/* ---- rmsnorm: one block per row ----------------------------------------------------------- */

/* Thread tid's part of the row's sum of squares (double, as the CPU backend). */
CUK_FN double
cuk_rmsnorm_part(uint32_t row, uint32_t tid, uint32_t nthr, const float *x, uint32_t dim)
{
	const float *xr = x + (size_t)row * dim;
	double ss = 0;
	uint32_t i;

	for (i = tid; i < dim; i += nthr)
		ss += (double)xr[i] * xr[i];
	return ss;
}

/* After the block's sum: thread tid's elements of the row (out may alias x). */
CUK_FN void
cuk_rmsnorm_apply(uint32_t row, uint32_t tid, uint32_t nthr, float *out, const float *x,
    const float *w, uint32_t dim, float eps, double sum)
{
	const float *xr = x + (size_t)row * dim;
	float *o = out + (size_t)row * dim, scale = (float)(1.0 / sqrt(sum / dim + eps));
	uint32_t i;

	for (i = tid; i < dim; i += nthr)
		o[i] = xr[i] * scale * w[i];
}

/* ---- attention: one block per (token, head) ---------------------------------------------- */

/*
 * Block b of positions [b * blk, (b + 1) * blk) has its K rows from tab[2b] and its V rows from
 * tab[2b + 1] (this layer's row of position b * blk; rows `row` floats apart).  Query token t
 * is at position pos[t], or pos0 + t when pos is NULL, and attends to 0..that position.
 * scores: [n_tok * n_head][n_pos] scratch.
 */
struct cuk_attn {
	float *out;
	const float *q;
	const uint32_t *pos;
	uint32_t pos0;
	const float *const *tab;
	uint32_t blk, row;
	float *scores;
	uint32_t n_head, n_head_kv, hd, n_pos;
	float scale;
};

/* Item (block) `item` = t * n_head + h: its KV head and how many positions it sees. */
CUK_FN void
cuk_attn_item(const struct cuk_attn *a, uint32_t item, uint32_t *hk, uint32_t *np)
{
	uint32_t t = item / a->n_head, h = item % a->n_head;

	*hk = h / (a->n_head / a->n_head_kv);
	*np = (a->pos ? a->pos[t] : a->pos0 + t) + 1;
}

/* Phase 1: scores of thread tid's positions; returns their maximum (-inf for none). */
CUK_FN float
cuk_attn_scores(const struct cuk_attn *a, uint32_t item, uint32_t tid, uint32_t nthr)
{
	const float *qh = a->q + (size_t)item * a->hd;
	float *sc = a->scores + (size_t)item * a->n_pos, m = -INFINITY;
	uint32_t hk, np, p, d;

	cuk_attn_item(a, item, &hk, &np);
	for (p = tid; p < np; p += nthr) {
		const float *kr = a->tab[2 * (p / a->blk)] + (size_t)(p % a->blk) * a->row +
		    (size_t)hk * a->hd;
		float dot = 0;
		for (d = 0; d < a->hd; d++)
			dot += qh[d] * kr[d];
		sc[p] = dot * a->scale;
		m = fmaxf(m, sc[p]);
	}
	return m;
}

/* Phase 2, after the block's maximum m: exp(score - m) in place; returns their sum. */
CUK_FN float
cuk_attn_exp(const struct cuk_attn *a, uint32_t item, uint32_t tid, uint32_t nthr, float m)
{
	float *sc = a->scores + (size_t)item * a->n_pos, l = 0;
	uint32_t hk, np, p;

	cuk_attn_item(a, item, &hk, &np);
	for (p = tid; p < np; p += nthr) {
		sc[p] = expf(sc[p] - m);
		l += sc[p];
	}
	return l;
}

/* Phase 3, after the block's sum l (every score of the item written): thread tid's output
 * dimensions, the weighted sum of V walking the block table. */
CUK_FN void
cuk_attn_out(const struct cuk_attn *a, uint32_t item, uint32_t tid, uint32_t nthr, float l)
{
	const float *sc = a->scores + (size_t)item * a->n_pos;
	uint32_t hk, np, p, d, b, p1;

	cuk_attn_item(a, item, &hk, &np);
	for (d = tid; d < a->hd; d += nthr) {
		float acc = 0;
		for (p = 0, b = 0; p < np; b++) {
			const float *vr = a->tab[2 * b + 1] + (size_t)hk * a->hd + d;
			for (p1 = p + a->blk < np ? p + a->blk : np; p < p1; p++, vr += a->row)
				acc += sc[p] * *vr;
		}
		a->out[(size_t)item * a->hd + d] = acc / l;
	}
}

/* Host side, per call: positions 0..*n_pos-1 are needed (the largest query position + 1);
 * returns whether pos[t] == pos[0] + t for every t (then the kernel gets pos0 = pos[0] and no
 * position array). */
static inline bool
cuk_attn_plan(const uint32_t *pos, uint32_t n_tok, uint32_t *n_pos)
{
	bool consecutive = true;
	uint32_t t;

	*n_pos = 0;
	for (t = 0; t < n_tok; t++) {
		if (pos[t] + 1 > *n_pos)
			*n_pos = pos[t] + 1;
		consecutive &= pos[t] == pos[0] + t;
	}
	return consecutive;
}

/*
 * The block table of positions 0..n_pos-1 of layer (host side): K and V row pointers of the
 * first position of every block of blk positions (kv_block_size) into tab (room for 2 x
 * cuk_attn_nblocks entries).  Returns the number of blocks.
 */
static inline uint32_t
cuk_attn_nblocks(uint32_t n_pos, uint32_t blk)
{
	return (n_pos + blk - 1) / blk;
}

static inline uint32_t
cuk_attn_table(struct kv *kv, uint32_t layer, uint32_t n_pos, uint32_t blk, const float **tab)
{
	uint32_t nb = cuk_attn_nblocks(n_pos, blk), b;

	for (b = 0; b < nb; b++) {
		tab[2 * b] = kv_k(kv, layer, b * blk);
		tab[2 * b + 1] = kv_v(kv, layer, b * blk);
	}
	return nb;
}

#endif
