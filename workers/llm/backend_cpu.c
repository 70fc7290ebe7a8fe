/*
 * backend_cpu.c — the CPU backend: C11 and pthreads.  Matrix rows and attention heads are
 * split over a small pool (the calling thread works too); everything else is one loop.
 * Weights are dequantized a chunk (at most 256 elements) at a time into a stack buffer and
 * used for every token of the batch before the next chunk, so nothing is allocated per op.
 */
#include "workers/llm/backend.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CPU_CHUNK 256            /* elements dequantized at once: one K-quant block */
#define CPU_TILE 32              /* tokens sharing one dequantized chunk */
#define CPU_MAX_HEAD_DIM 1024

struct cpu_job {
	void (*fn)(void *arg, uint32_t i0, uint32_t i1);
	void *arg;
	uint32_t n, chunk;
	atomic_uint next;
};

struct backend_cpu {
	struct backend base;     /* first */
	uint32_t n_threads;      /* including the caller */
	pthread_t *threads;
	uint32_t started;
	pthread_mutex_t mu;
	pthread_cond_t go, done;
	uint64_t gen;
	uint32_t pending;
	bool stop;
	struct cpu_job *job;
	uint32_t fail_at, error_calls;   /* backend_cpu_create_faulty */
};

/* ---- numbers ---------------------------------------------------------------------------- */

static float cpu_f16_table[1 << 16];
static pthread_once_t cpu_f16_once = PTHREAD_ONCE_INIT;

/* IEEE half to float, subnormals and infinities included. */
static float
cpu_f16_convert(uint16_t h)
{
	uint32_t s = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu, bits;
	float f;

	if (e == 0) {
		f = ldexpf((float)m, -24);
		return s ? -f : f;
	}
	if (e == 31)
		bits = s | 0x7f800000u | (m << 13);
	else
		bits = s | ((e + 112) << 23) | (m << 13);
	memcpy(&f, &bits, sizeof(f));
	return f;
}

static void
cpu_f16_init(void)
{
	uint32_t i;

	for (i = 0; i < (1u << 16); i++)
		cpu_f16_table[i] = cpu_f16_convert((uint16_t)i);
}

/* Reads a little-endian half at p (unaligned). */
static inline float
cpu_f16(const uint8_t *p)
{
	return cpu_f16_table[(uint16_t)(p[0] | (p[1] << 8))];
}

/* ggml's packing of the 6-bit scales and mins of a Q4_K block. */
static inline void
cpu_q4k_scale(int j, const uint8_t *q, uint8_t *d, uint8_t *m)
{
	if (j < 4) {
		*d = q[j] & 63;
		*m = q[j + 4] & 63;
	} else {
		*d = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
		*m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
	}
}

void
backend_cpu_dequant_row(uint32_t type, const void *row, float *out, uint32_t n)
{
	const uint8_t *p = row;
	uint32_t i, j, l;

	pthread_once(&cpu_f16_once, cpu_f16_init);
	switch (type) {
	case GGUF_T_F32:
		memcpy(out, row, (size_t)n * sizeof(float));
		break;
	case GGUF_T_F16:
		for (i = 0; i < n; i++)
			out[i] = cpu_f16(p + 2 * i);
		break;
	case GGUF_T_BF16:
		for (i = 0; i < n; i++) {
			uint32_t bits = (uint32_t)(p[2 * i] | (p[2 * i + 1] << 8)) << 16;
			memcpy(&out[i], &bits, sizeof(float));
		}
		break;
	case GGUF_T_Q8_0:            /* blocks of 32: half d, int8 q[32]; x = d * q */
		for (i = 0; i < n; i += 32, p += 34) {
			float d = cpu_f16(p);
			for (j = 0; j < 32; j++)
				out[i + j] = d * (float)(int8_t)p[2 + j];
		}
		break;
	case GGUF_T_Q4_K:            /* 256: half d, half dmin, scales[12], qs[128] */
		for (i = 0; i < n; i += 256, p += 144) {
			float d = cpu_f16(p), dmin = cpu_f16(p + 2);
			const uint8_t *sc = p + 4, *q = p + 16;
			float *y = out + i;
			int is = 0;
			for (j = 0; j < 256; j += 64, q += 32, is += 2) {
				uint8_t s1, m1, s2, m2;
				cpu_q4k_scale(is, sc, &s1, &m1);
				cpu_q4k_scale(is + 1, sc, &s2, &m2);
				for (l = 0; l < 32; l++)
					*y++ = d * s1 * (float)(q[l] & 0xF) - dmin * m1;
				for (l = 0; l < 32; l++)
					*y++ = d * s2 * (float)(q[l] >> 4) - dmin * m2;
			}
		}
		break;
	case GGUF_T_Q6_K:            /* 256: ql[128], qh[64], int8 scales[16], half d */
		for (i = 0; i < n; i += 256, p += 210) {
			const uint8_t *ql = p, *qh = p + 128;
			const int8_t *sc = (const int8_t *)(p + 192);
			float d = cpu_f16(p + 208);
			float *y = out + i;
			for (j = 0; j < 256; j += 128, y += 128, ql += 64, qh += 32, sc += 8) {
				for (l = 0; l < 32; l++) {
					int is = (int)l / 16;
					int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
					int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
					int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
					int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
					y[l] = d * sc[is] * (float)q1;
					y[l + 32] = d * sc[is + 2] * (float)q2;
					y[l + 64] = d * sc[is + 4] * (float)q3;
					y[l + 96] = d * sc[is + 6] * (float)q4;
				}
			}
		}
		break;
	default:                     /* model_open() refuses every other type */
		abort();
	}
}

/* Dot product with eight partial sums (vectorizes without -ffast-math). */
static inline float
cpu_dot(const float *a, const float *b, uint32_t n)
{
	float s[8] = { 0 };
	uint32_t i, j;

	for (i = 0; i + 8 <= n; i += 8)
		for (j = 0; j < 8; j++)
			s[j] += a[i + j] * b[i + j];
	for (; i < n; i++)
		s[0] += a[i] * b[i];
	return ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
}

/* Blocks of 32 Q8_0 quants (already as floats, scales d[]) against x, accumulated into *sum
 * block by block: the same arithmetic whether one token or a tile of 32 uses the converted
 * quants, so a token's result does not depend on what it is batched with. */
static inline void
cpu_dot_q8_0_blocks(const float *q, const float *d, const float *x, uint32_t nblocks,
    float *sum)
{
	uint32_t b, j;

	for (b = 0; b < nblocks; b++, q += 32, x += 32) {
		float s[8] = { 0 };
		for (j = 0; j < 32; j += 8) {
			s[0] += q[j] * x[j];
			s[1] += q[j + 1] * x[j + 1];
			s[2] += q[j + 2] * x[j + 2];
			s[3] += q[j + 3] * x[j + 3];
			s[4] += q[j + 4] * x[j + 4];
			s[5] += q[j + 5] * x[j + 5];
			s[6] += q[j + 6] * x[j + 6];
			s[7] += q[j + 7] * x[j + 7];
		}
		*sum += d[b] * (((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7])));
	}
}

/* ---- the pool ---------------------------------------------------------------------------- */

static void
cpu_work(struct cpu_job *job)
{
	uint32_t i0;

	while ((i0 = atomic_fetch_add(&job->next, job->chunk)) < job->n)
		job->fn(job->arg, i0, i0 + job->chunk < job->n ? i0 + job->chunk : job->n);
}

static void *
cpu_thread(void *arg)
{
	struct backend_cpu *c = arg;
	uint64_t seen = 0;
	struct cpu_job *job;

	for (;;) {
		pthread_mutex_lock(&c->mu);
		while (!c->stop && c->gen == seen)
			pthread_cond_wait(&c->go, &c->mu);
		if (c->stop) {
			pthread_mutex_unlock(&c->mu);
			return NULL;
		}
		seen = c->gen;
		job = c->job;
		pthread_mutex_unlock(&c->mu);
		cpu_work(job);
		pthread_mutex_lock(&c->mu);
		if (--c->pending == 0)
			pthread_cond_signal(&c->done);
		pthread_mutex_unlock(&c->mu);
	}
}

/* Runs fn over [0, n) in chunks on every thread; returns when all are done. */
static void
cpu_run(struct backend_cpu *c, void (*fn)(void *, uint32_t, uint32_t), void *arg, uint32_t n)
{
	struct cpu_job job = { .fn = fn, .arg = arg, .n = n };

	if (c->started == 0 || n < 2) {
		if (n)
			fn(arg, 0, n);
		return;
	}
	job.chunk = n / (c->n_threads * 4);
	if (job.chunk == 0)
		job.chunk = 1;
	atomic_init(&job.next, 0);
	pthread_mutex_lock(&c->mu);
	c->job = &job;
	c->gen++;
	c->pending = c->started;
	pthread_cond_broadcast(&c->go);
	pthread_mutex_unlock(&c->mu);
	cpu_work(&job);
	pthread_mutex_lock(&c->mu);
	while (c->pending > 0)
		pthread_cond_wait(&c->done, &c->mu);
	pthread_mutex_unlock(&c->mu);
}

/* ---- memory ------------------------------------------------------------------------------ */

static float *
cpu_alloc(struct backend *be, size_t n)
{
	return calloc(n ? n : 1, sizeof(float));
}

static void
cpu_release(struct backend *be, float *p)
{
	free(p);
}

static void
cpu_copy(struct backend *be, float *dst, const float *src, size_t n)
{
	memmove(dst, src, n * sizeof(float));
}

/* ---- matrices ---------------------------------------------------------------------------- */

struct cpu_mm {
	const struct model_weight *w;
	const float *x;
	uint32_t n_tok;
	float *y;
};

/* Row r of a Q8_0 matrix for every token: the quants of CPU_CHUNK columns are converted to
 * floats once and serve a tile of up to CPU_TILE tokens, each summing d * sum(q x) per block. */
static void
cpu_matmul_q8_0_row(const struct cpu_mm *a, const uint8_t *row, uint32_t r)
{
	const struct model_weight *w = a->w;
	float q[CPU_CHUNK], d[CPU_CHUNK / 32], acc[CPU_TILE];
	uint32_t t0, t, nt, off, len, b, j;

	for (t0 = 0; t0 < a->n_tok; t0 += CPU_TILE) {
		nt = a->n_tok - t0 < CPU_TILE ? a->n_tok - t0 : CPU_TILE;
		memset(acc, 0, sizeof(acc));
		for (off = 0; off < w->cols; off += len) {
			const uint8_t *blk = row + (size_t)off / 32 * 34;
			len = w->cols - off < CPU_CHUNK ? w->cols - off : CPU_CHUNK;
			for (b = 0; b < len / 32; b++, blk += 34) {
				const int8_t *qs = (const int8_t *)(blk + 2);
				d[b] = cpu_f16(blk);
				for (j = 0; j < 32; j++)
					q[b * 32 + j] = (float)qs[j];
			}
			for (t = 0; t < nt; t++)
				cpu_dot_q8_0_blocks(q, d, a->x + (size_t)(t0 + t) * w->cols + off, len / 32,
				    &acc[t]);
		}
		for (t = 0; t < nt; t++)
			a->y[(size_t)(t0 + t) * w->rows + r] = acc[t];
	}
}

/* Rows [r0, r1) of y for every token.  Every type computes a token's row with the same
 * arithmetic whatever n_tok is: batching sequences together changes no result. */
static void
cpu_matmul_rows(void *arg, uint32_t r0, uint32_t r1)
{
	const struct cpu_mm *a = arg;
	const struct model_weight *w = a->w;
	uint32_t blk = gguf_ttype_block(w->type), bsz = gguf_ttype_size(w->type);
	float buf[CPU_CHUNK], acc[CPU_TILE];
	uint32_t r, t0, t, nt, off, len;

	for (r = r0; r < r1; r++) {
		const uint8_t *row = (const uint8_t *)w->data + (size_t)r * w->row_bytes;
		if (w->type == GGUF_T_F32) {
			for (t = 0; t < a->n_tok; t++)
				a->y[(size_t)t * w->rows + r] = cpu_dot((const float *)row,
				    a->x + (size_t)t * w->cols, w->cols);
			continue;
		}
		if (w->type == GGUF_T_Q8_0) {
			cpu_matmul_q8_0_row(a, row, r);
			continue;
		}
		for (t0 = 0; t0 < a->n_tok; t0 += CPU_TILE) {
			nt = a->n_tok - t0 < CPU_TILE ? a->n_tok - t0 : CPU_TILE;
			memset(acc, 0, sizeof(acc));
			for (off = 0; off < w->cols; off += len) {
				len = w->cols - off < CPU_CHUNK ? w->cols - off : CPU_CHUNK;
				backend_cpu_dequant_row(w->type, row + (size_t)off / blk * bsz, buf, len);
				for (t = 0; t < nt; t++)
					acc[t] += cpu_dot(buf, a->x + (size_t)(t0 + t) * w->cols + off,
					    len);
			}
			for (t = 0; t < nt; t++)
				a->y[(size_t)(t0 + t) * w->rows + r] = acc[t];
		}
	}
}

static void
cpu_matmul(struct backend *be, const struct model_weight *w, const float *x, uint32_t n_tok,
    float *y)
{
	struct cpu_mm a = { w, x, n_tok, y };

	cpu_run((struct backend_cpu *)be, cpu_matmul_rows, &a, w->rows);
}

static void
cpu_get_rows(struct backend *be, const struct model_weight *w, const uint32_t *ids,
    uint32_t n, float *out)
{
	uint32_t i;

	for (i = 0; i < n; i++)
		backend_cpu_dequant_row(w->type, (const uint8_t *)w->data +
		    (size_t)ids[i] * w->row_bytes, out + (size_t)i * w->cols, w->cols);
}

/* ---- elementwise ------------------------------------------------------------------------- */

static void
cpu_rmsnorm(struct backend *be, float *out, const float *x, const float *w, uint32_t n_rows,
    uint32_t dim, float eps)
{
	uint32_t r, i;

	for (r = 0; r < n_rows; r++) {
		const float *xr = x + (size_t)r * dim;
		float *o = out + (size_t)r * dim;
		double ss = 0;
		float scale;
		for (i = 0; i < dim; i++)
			ss += (double)xr[i] * xr[i];
		scale = (float)(1.0 / sqrt(ss / dim + eps));
		for (i = 0; i < dim; i++)
			o[i] = xr[i] * scale * w[i];
	}
}

static void
cpu_rope(struct backend *be, float *x, uint32_t n_tok, uint32_t n_heads, uint32_t head_dim,
    const uint32_t *pos, const struct backend_rope *r)
{
	uint32_t t, h, i, half = r->n_rot / 2;

	for (t = 0; t < n_tok; t++) {
		double p = (double)pos[t] * r->freq_scale;
		for (i = 0; i < half; i++) {
			double theta = p * pow(r->base, -2.0 * i / r->n_rot);
			float c, s;
			if (r->freqs)
				theta /= r->freqs[i];
			c = (float)cos(theta);
			s = (float)sin(theta);
			for (h = 0; h < n_heads; h++) {
				float *v = x + ((size_t)t * n_heads + h) * head_dim;
				/* NORM rotates (2i, 2i+1); NEOX rotates (i, i + n_rot/2). */
				uint32_t a = r->mode == MODEL_ROPE_NORM ? 2 * i : i;
				uint32_t b = r->mode == MODEL_ROPE_NORM ? 2 * i + 1 : i + half;
				float x0 = v[a], x1 = v[b];
				v[a] = x0 * c - x1 * s;
				v[b] = x0 * s + x1 * c;
			}
		}
	}
}

struct cpu_attn {
	float *out;
	const float *q;
	const uint32_t *pos;
	struct kv *kv;
	const struct backend_attn *a;
};

/* Items [i0, i1) of (token, head): one pass of online softmax over positions 0..pos[t]. */
static void
cpu_attention_items(void *arg, uint32_t i0, uint32_t i1)
{
	const struct cpu_attn *c = arg;
	const struct backend_attn *a = c->a;
	uint32_t hd = a->head_dim, group = a->n_head / a->n_head_kv, i, p, d;
	float acc[CPU_MAX_HEAD_DIM];

	for (i = i0; i < i1; i++) {
		uint32_t t = i / a->n_head, h = i % a->n_head, hk = h / group;
		const float *q = c->q + ((size_t)t * a->n_head + h) * hd;
		float *o = c->out + ((size_t)t * a->n_head + h) * hd;
		float m = -INFINITY, l = 0;

		memset(acc, 0, hd * sizeof(float));
		for (p = 0; p <= c->pos[t]; p++) {
			const float *k = kv_k(c->kv, a->layer, p) + (size_t)hk * hd;
			const float *v = kv_v(c->kv, a->layer, p) + (size_t)hk * hd;
			float s = cpu_dot(q, k, hd) * a->scale, w;
			if (s > m) {
				float corr = expf(m - s);
				l *= corr;
				for (d = 0; d < hd; d++)
					acc[d] *= corr;
				m = s;
			}
			w = expf(s - m);
			l += w;
			for (d = 0; d < hd; d++)
				acc[d] += w * v[d];
		}
		for (d = 0; d < hd; d++)
			o[d] = acc[d] / l;
	}
}

static void
cpu_attention(struct backend *be, float *out, const float *q, uint32_t n_tok,
    const uint32_t *pos, struct kv *kv, const struct backend_attn *a)
{
	struct cpu_attn c = { out, q, pos, kv, a };

	if (a->head_dim > CPU_MAX_HEAD_DIM)
		abort();             /* forward_create() refuses such models */
	cpu_run((struct backend_cpu *)be, cpu_attention_items, &c, n_tok * a->n_head);
}

static int
cpu_kv_store(struct backend *be, struct kv *kv, uint32_t layer, const float *k,
    const float *v, uint32_t n_tok, const uint32_t *pos)
{
	uint32_t t;

	for (t = 0; t < n_tok; t++) {
		memcpy(kv_k(kv, layer, pos[t]), k + (size_t)t * kv->row, kv->row * sizeof(float));
		memcpy(kv_v(kv, layer, pos[t]), v + (size_t)t * kv->row, kv->row * sizeof(float));
	}
	return 0;
}

static void
cpu_swiglu(struct backend *be, float *out, const float *gate, const float *up, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		out[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

static void
cpu_add(struct backend *be, float *x, const float *y, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		x[i] += y[i];
}

static void
cpu_axpy(struct backend *be, float *x, const float *y, float a, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		x[i] += a * y[i];
}

static void
cpu_add_bias(struct backend *be, float *x, const float *b, uint32_t n_rows, uint32_t n)
{
	uint32_t r;

	for (r = 0; r < n_rows; r++)
		cpu_add(be, x + (size_t)r * n, b, n);
}

/* ---- selection and sampling -------------------------------------------------------------- */

static void
cpu_softmax(struct backend *be, float *x, size_t n)
{
	float m = -INFINITY;
	double sum = 0;
	size_t i;

	for (i = 0; i < n; i++)
		if (x[i] > m)
			m = x[i];
	for (i = 0; i < n; i++) {
		x[i] = expf(x[i] - m);
		sum += x[i];
	}
	for (i = 0; i < n; i++)
		x[i] = (float)(x[i] / sum);
}

static uint32_t
cpu_argmax(struct backend *be, const float *x, size_t n)
{
	size_t i, best = 0;

	for (i = 1; i < n; i++)
		if (x[i] > x[best])
			best = i;
	return (uint32_t)best;
}

static uint32_t
cpu_moe_gate(struct backend *be, const float *logits, uint32_t n_expert,
    const struct backend_moe_sel *sel, uint32_t *ids, float *weights)
{
	float p[1024];
	bool taken[1024] = { false };
	uint32_t n = 0, cap, i, best;
	double cum = 0, sum = 0;

	if (n_expert == 0 || n_expert > 1024)
		abort();             /* model_open() caps expert_count */
	memcpy(p, logits, n_expert * sizeof(float));
	cpu_softmax(be, p, n_expert);
	cap = sel->top_p > 0 ? (sel->max_experts ? sel->max_experts : n_expert) : sel->top_k;
	if (cap > n_expert)
		cap = n_expert;
	if (cap == 0)
		cap = 1;
	/* Descending probability, ties to the lower index; n_expert is small. */
	while (n < cap) {
		best = n_expert;
		for (i = 0; i < n_expert; i++)
			if (!taken[i] && (best == n_expert || p[i] > p[best]))
				best = i;
		taken[best] = true;
		ids[n] = best;
		weights[n] = p[best];
		cum += p[best];
		n++;
		if (sel->top_p > 0 && cum >= sel->top_p)
			break;
	}
	if (sel->renorm) {
		for (i = 0; i < n; i++)
			sum += weights[i];
		for (i = 0; i < n; i++)
			weights[i] = (float)(weights[i] / sum);
	}
	return n;
}

struct cpu_cand {
	float p;
	uint32_t id;
};

static int
cpu_cand_cmp(const void *a, const void *b)
{
	const struct cpu_cand *x = a, *y = b;

	if (x->p != y->p)
		return x->p > y->p ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id;
}

static uint32_t
cpu_sample(struct backend *be, const float *logits, size_t n, float temperature, float top_p,
    double u, float *prob)
{
	struct cpu_cand *c;
	float m = -INFINITY;
	double sum = 0, cum = 0, keep;
	size_t i, k;
	uint32_t tok;

	if (temperature <= 0 || !(c = malloc(n * sizeof(*c)))) {
		/* Greedy (or no memory for candidates: still an answer). */
		tok = cpu_argmax(be, logits, n);
		if (prob) {
			for (i = 0; i < n; i++)
				sum += exp((double)logits[i] - logits[tok]);
			*prob = (float)(1.0 / sum);
		}
		return tok;
	}
	for (i = 0; i < n; i++)
		if (logits[i] > m)
			m = logits[i];
	for (i = 0; i < n; i++) {
		c[i].p = expf((logits[i] - m) / temperature);
		c[i].id = (uint32_t)i;
		sum += c[i].p;
	}
	k = n;
	if (top_p > 0 && top_p < 1) {
		qsort(c, n, sizeof(*c), cpu_cand_cmp);
		for (k = 0; k < n; k++) {
			cum += c[k].p / sum;
			if (cum >= top_p) {
				k++;
				break;
			}
		}
		if (k > n)
			k = n;
	}
	keep = 0;
	for (i = 0; i < k; i++)
		keep += c[i].p;
	cum = 0;
	tok = c[k - 1].id;
	for (i = 0; i < k; i++) {
		cum += c[i].p / keep;
		if (u < cum) {
			tok = c[i].id;
			break;
		}
	}
	if (prob)
		*prob = (float)(c[i < k ? i : k - 1].p / keep);
	free(c);
	return tok;
}

/* ---- lifetime ---------------------------------------------------------------------------- */

static void
cpu_destroy(struct backend *be)
{
	struct backend_cpu *c = (struct backend_cpu *)be;
	uint32_t i;

	pthread_mutex_lock(&c->mu);
	c->stop = true;
	pthread_cond_broadcast(&c->go);
	pthread_mutex_unlock(&c->mu);
	for (i = 0; i < c->started; i++)
		pthread_join(c->threads[i], NULL);
	pthread_cond_destroy(&c->done);
	pthread_cond_destroy(&c->go);
	pthread_mutex_destroy(&c->mu);
	free(c->threads);
	free(c);
}

#define CPU_OPS \
	.destroy = cpu_destroy, \
	.alloc = cpu_alloc, \
	.release = cpu_release, \
	.read = cpu_copy, \
	.write = cpu_copy, \
	.copy = cpu_copy, \
	.matmul = cpu_matmul, \
	.get_rows = cpu_get_rows, \
	.rmsnorm = cpu_rmsnorm, \
	.rope = cpu_rope, \
	.attention = cpu_attention, \
	.kv_store = cpu_kv_store, \
	.swiglu = cpu_swiglu, \
	.add = cpu_add, \
	.axpy = cpu_axpy, \
	.add_bias = cpu_add_bias, \
	.moe_gate = cpu_moe_gate, \
	.softmax = cpu_softmax, \
	.argmax = cpu_argmax, \
	.sample = cpu_sample

static const struct backend_ops cpu_ops = {
	.name = "cpu",
	CPU_OPS,
};

/* The injected fault: from the fail_at-th call on, -EIO (a device that stays broken). */
static int
cpu_fault_error(struct backend *be, char *msg, size_t len)
{
	struct backend_cpu *c = (struct backend_cpu *)be;

	if (c->error_calls < UINT32_MAX)
		c->error_calls++;
	if (c->error_calls < c->fail_at)
		return 0;
	if (msg && len)
		snprintf(msg, len, "injected device fault (call %u)", c->error_calls);
	return -EIO;
}

static const struct backend_ops cpu_fault_ops = {
	.name = "cpu-fault",
	CPU_OPS,
	.error = cpu_fault_error,
};

int
backend_cpu_create(uint32_t n_threads, struct backend **out)
{
	struct backend_cpu *c;
	long ncpu;
	int rc;

	pthread_once(&cpu_f16_once, cpu_f16_init);
	if (n_threads == 0) {
		ncpu = sysconf(_SC_NPROCESSORS_ONLN);
		n_threads = ncpu > 0 && ncpu < 256 ? (uint32_t)ncpu : 1;
	}
	if (n_threads > 256)
		n_threads = 256;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->base.ops = &cpu_ops;
	c->n_threads = n_threads;
	c->threads = calloc(n_threads, sizeof(*c->threads));
	if (!c->threads) {
		free(c);
		return -ENOMEM;
	}
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->go, NULL);
	pthread_cond_init(&c->done, NULL);
	for (c->started = 0; c->started + 1 < n_threads; c->started++) {
		rc = pthread_create(&c->threads[c->started], NULL, cpu_thread, c);
		if (rc != 0) {
			cpu_destroy(&c->base);
			return -rc;
		}
	}
	*out = &c->base;
	return 0;
}

int
backend_cpu_create_faulty(uint32_t n_threads, uint32_t fail_at, struct backend **out)
{
	int rc = backend_cpu_create(n_threads, out);

	if (rc == 0) {
		((struct backend_cpu *)*out)->base.ops = &cpu_fault_ops;
		((struct backend_cpu *)*out)->fail_at = fail_at;
	}
	return rc;
}
