/*
 * backend.h — the compute seam under the forward pass: a small table of operations that a
 * backend (CPU now, CUDA next) implements.  forward.c calls only these for arithmetic; it
 * never touches activation memory itself, so a device backend can keep activations, weights
 * and the KV cache in device memory.
 *
 * Buffers: every float pointer an op takes comes from ops->alloc() of the same backend (or, for
 * weights, from a struct model_weight, which a device backend maps once with upload_weights
 * when it has one).  The CPU backend's buffers are plain host memory.  Results reach the host
 * through ops->read().
 *
 * Layouts: activations are row-major [n_tok][dim].  A matrix op computes, for every token t
 * and output row r, y[t][r] = sum_c W[r][c] * x[t][c] (W as GGUF stores it, row r of `cols`
 * elements, dequantized on the fly).  Heads are contiguous inside a token's row:
 * q[t][h * head_dim + i].
 *
 * Batching: every op computes a token's row with the same arithmetic whatever else shares
 * the call (matmul tiles, thread splits), so a sequence's logits are bit-identical whether it
 * runs alone or in a batch with others (forward_batch).
 *
 * Threads: a backend belongs to one caller thread (the engine thread); the CPU backend splits
 * each op over its own pool internally.
 */
#ifndef CERTA_WORKERS_LLM_BACKEND_H
#define CERTA_WORKERS_LLM_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "workers/llm/kv.h"
#include "workers/llm/model.h"

struct backend;

/* Rotary embedding parameters (see model.h for the modes). */
struct backend_rope {
	enum model_rope mode;
	uint32_t n_rot;          /* dims rotated at the start of each head (even) */
	float base;              /* theta */
	float freq_scale;        /* position multiplier (linear scaling) */
	const float *freqs;      /* n_rot/2 divisors or NULL */
};

/* Shape of attention over one sequence (GQA: head h reads KV head h / (n_head/n_head_kv)). */
struct backend_attn {
	uint32_t n_head, n_head_kv, head_dim, layer;
	float scale;             /* usually 1/sqrt(head_dim) */
};

/* Expert selection for one token (MoE gate). */
struct backend_moe_sel {
	uint32_t top_k;          /* as trained, used when top_p <= 0 */
	float top_p;             /* > 0: smallest prefix of experts by probability reaching p */
	uint32_t max_experts;    /* cap for top_p (0 = all experts) */
	bool renorm;             /* weights of the chosen experts renormalized to sum 1 */
};

struct backend_ops {
	const char *name;
	void (*destroy)(struct backend *be);

	/* Memory: n floats (zeroed), freed with release; read copies n floats to the host. */
	float *(*alloc)(struct backend *be, size_t n);
	void (*release)(struct backend *be, float *p);
	void (*read)(struct backend *be, float *host, const float *src, size_t n);
	void (*write)(struct backend *be, float *dst, const float *host, size_t n);
	/* n floats from src to dst, both backend memory (gathering rows of a batch). */
	void (*copy)(struct backend *be, float *dst, const float *src, size_t n);

	/* y[n_tok][w->rows] = x[n_tok][w->cols] . W^T; y must not alias x. */
	void (*matmul)(struct backend *be, const struct model_weight *w, const float *x,
	    uint32_t n_tok, float *y);
	/* out[i][w->cols] = row ids[i] of W, dequantized (embedding lookup). */
	void (*get_rows)(struct backend *be, const struct model_weight *w, const uint32_t *ids,
	    uint32_t n, float *out);
	/* out[r] = x[r] / rms(x[r]) * w for n_rows rows of dim (out may alias x). */
	void (*rmsnorm)(struct backend *be, float *out, const float *x, const float *w,
	    uint32_t n_rows, uint32_t dim, float eps);
	/* x[t][h][0..n_rot) rotated by position pos[t], for n_heads heads of head_dim. */
	void (*rope)(struct backend *be, float *x, uint32_t n_tok, uint32_t n_heads,
	    uint32_t head_dim, const uint32_t *pos, const struct backend_rope *r);
	/*
	 * Causal attention: query token t (at position pos[t]) attends to positions
	 * 0..pos[t] of the sequence's KV in layer a->layer (which must already hold them).
	 * q: [n_tok][n_head * head_dim]; out: the same shape.
	 */
	void (*attention)(struct backend *be, float *out, const float *q, uint32_t n_tok,
	    const uint32_t *pos, struct kv *kv, const struct backend_attn *a);
	/* Stores k, v rows ([n_tok][n_head_kv * head_dim]) at positions pos[t] of layer. */
	int (*kv_store)(struct backend *be, struct kv *kv, uint32_t layer, const float *k,
	    const float *v, uint32_t n_tok, const uint32_t *pos);
	/* out[i] = silu(gate[i]) * up[i]. */
	void (*swiglu)(struct backend *be, float *out, const float *gate, const float *up,
	    size_t n);
	/* x[i] += y[i]; x[i] += a * y[i]; x[r][i] += b[i] for n_rows rows of n. */
	void (*add)(struct backend *be, float *x, const float *y, size_t n);
	void (*axpy)(struct backend *be, float *x, const float *y, float a, size_t n);
	void (*add_bias)(struct backend *be, float *x, const float *b, uint32_t n_rows,
	    uint32_t n);
	/*
	 * MoE gate for one token: softmax over router logits[n_expert], then the experts in
	 * descending probability (top_k, or top_p until the cumulative probability reaches p: at
	 * least 1, at most max_experts).  Writes ids[] and weights[] (room for n_expert) and
	 * returns how many were chosen.  Host memory (the routing decision drives dispatch).
	 */
	uint32_t (*moe_gate)(struct backend *be, const float *logits, uint32_t n_expert,
	    const struct backend_moe_sel *sel, uint32_t *ids, float *weights);
	/* In place softmax of n floats; argmax; sampling (temperature 0 = argmax) with top-p,
	 * driven by u in [0, 1) so the caller decides determinism.  *prob gets the chosen token's
	 * probability under the (temperature, top-p) distribution when prob is non-NULL. */
	void (*softmax)(struct backend *be, float *x, size_t n);
	uint32_t (*argmax)(struct backend *be, const float *x, size_t n);
	uint32_t (*sample)(struct backend *be, const float *logits, size_t n, float temperature,
	    float top_p, double u, float *prob);
	/*
	 * Device failures (NULL for a backend whose ops cannot fail, the CPU one): waits for the
	 * ops issued so far, then returns 0, or -EIO with the first failure since the last call
	 * in msg (which it clears).  After a failure the ops do nothing until this is called.
	 */
	int (*error)(struct backend *be, char *msg, size_t len);
	/*
	 * Where this backend wants KV blocks (NULL, or a NULL result: host memory): a device
	 * backend's memory for kv_pool_create_mem(), so attention reads the pages where they are
	 * (the CUDA backend: device memory, copy on write on the device).  The result lives as long
	 * as the backend; a pool on it must be freed before the backend is destroyed.
	 */
	const struct kv_mem *(*kv_mem)(struct backend *be);
};

struct backend {
	const struct backend_ops *ops;
};

/*
 * The CPU backend (backend_cpu.c): C11, n_threads workers for matrix rows and attention heads
 * (0 = the number of online CPUs).  Returns 0 and *out, -ENOMEM, or -errno from
 * pthread_create.
 */
int backend_cpu_create(uint32_t n_threads, struct backend **out);

/*
 * Fault injection (tests of the device-error path on machines without a GPU): the CPU backend
 * with an ops->error that, from its fail_at-th call on (1 = the first), reports what a broken
 * device would: -EIO, "injected device fault".  forward_run/forward_batch call it once each,
 * so the fail_at-th forward fails.  The llm engine's device `cpu-fault:N` is this.
 */
int backend_cpu_create_faulty(uint32_t n_threads, uint32_t fail_at, struct backend **out);

/*
 * The CUDA backend (backend_cuda.cu, built when the Makefile finds nvcc: BACKEND_HAVE_CUDA is
 * then defined) on CUDA device `device`.  Returns 0 and *out, or -ENODEV ("no CUDA device N
 * (found M)"), -ENOMEM, -EIO with a message in err.
 */
int backend_cuda_create(int device, struct backend **out, char *err, size_t errlen);

/*
 * CUDA device facts for benchmarks and test logs (backend_cuda.cu): name, memory, SMs, compute
 * capability, the peak DRAM bandwidth the device reports (2 x memory clock x bus width; 0 when
 * the driver does not say) and the driver's and runtime's CUDA versions (1000 x major + 10 x
 * minor, as cudaDriverGetVersion gives them; 0 when unknown).  Returns 0, or -ENODEV with a
 * message in err.
 */
struct backend_cuda_info {
	char name[256];
	size_t mem_total, mem_free;
	int sm_count, cc_major, cc_minor;
	double peak_gbs;         /* GB/s (1e9 bytes) */
	int driver_version, runtime_version;
};
int backend_cuda_info(int device, struct backend_cuda_info *out, char *err, size_t errlen);

/*
 * Benchmarks: makes the CUDA backend's device copy of matrix w (F32, F16 or BF16, one matrix
 * or all n_mat of an expert tensor) uniform random values in [-scale, scale) from `seed`,
 * generated on the device: w->data (host) is never read, so a model whose tensor data was
 * never written (bench/bench-cuda.c's in-memory GGUF) runs without 16 GB of host traffic.
 * Later ops on w use that copy.  Returns 0, -EINVAL (another type), -ENOMEM / -EIO.
 */
int backend_cuda_fill_random(struct backend *be, const struct model_weight *w, uint64_t seed,
    float scale);

/* Dequantizes one row of n elements of ggml type `type` (any type model_type_supported()
 * accepts) into out; exported for tests and device backends' reference checks. */
void backend_cpu_dequant_row(uint32_t type, const void *row, float *out, uint32_t n);

static inline void
backend_destroy(struct backend *be)
{
	if (be)
		be->ops->destroy(be);
}

#endif
