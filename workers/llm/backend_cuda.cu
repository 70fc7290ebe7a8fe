/*
 * backend_cuda.cu — the backend table (backend.h) on one NVIDIA GPU: CUDA kernels and cuBLAS.
 * Built only when the Makefile finds nvcc (docs/engine.md "CUDA backend").  Compiled, not yet
 * run on a GPU: `make check-cuda` compares every op with the CPU backend where one is present.
 *
 * Memory: alloc() is cudaMalloc (zeroed); read/write/copy are cudaMemcpy with cudaMemcpyDefault
 * (unified addressing), so they take host or device pointers alike.
 *
 * Weights: a model_weight's data (or a norm/bias vector) is host memory of the GGUF mapping.
 * The first op that uses it uploads it once (a table keyed by the host address, checked against
 * the type and shape; contents are assumed not to change while the backend lives): F32, F16 and
 * BF16 as stored, every other type (Q8_0, Q4_K, Q6_K) dequantized on the host with
 * backend_cpu_dequant_row and kept as F16.  A pointer that is already device memory (from
 * alloc) is used as it is.
 *
 * Matmul: cublasGemmEx (cuBLAS loaded with dlopen: cu_blas below) with the weight's type for
 * both inputs (activations converted to it in a scratch buffer when it is F16/BF16) and FP32
 * accumulation and output.  F16 inputs are scaled by a power of two when their largest
 * magnitude exceeds 65504 (cuk_f16_scale; cuBLAS's alpha, read from device memory, undoes it),
 * so a large activation does not become infinite.  F32 weights run in FP32 (no TF32).
 * Results therefore differ from
 * the CPU backend by the rounding of the activations to 16 bits, and cuBLAS may pick another
 * algorithm for another n_tok: batched logits are close to, not bit-identical with,
 * single-sequence ones (unlike the CPU backend).
 *
 * KV: a pool made on ops->kv_mem keeps its blocks in device memory (kv.c only computes
 * addresses; copy on write is a device-to-device copy queued with the ops); kv_store copies
 * the new rows to their pages and attention reads them in place through a block table.  A KV
 * in host memory (a flat KV, a host pool) still works: attention first stages the positions
 * it needs into device scratch (one copy per run of contiguous rows), bound by PCIe.
 *
 * Kernels: their per-thread arithmetic is in backend_cuda_kern.h, which
 * tests/unit/test_cuda_kern.c runs on the CPU (every thread of each launch, no GPU needed);
 * here are only the launches, the shared-memory reductions and the barriers.
 *
 * Streams and threads: every kernel, copy and cuBLAS call goes to the legacy default stream
 * (no --default-stream per-thread; the cuBLAS handle keeps stream 0), so they run in the order
 * queued.  The backend is created on one thread and used on another (the engine thread):
 * cu_of(), through which every op goes, makes the backend's device current on the caller.
 *
 * Host-side ops: moe_gate, softmax, argmax and sample run on a one-thread CPU backend (the
 * CPU twin), after copying device inputs to the host, so their semantics are the CPU ones
 * exactly.
 *
 * Errors: ops cannot return one, so the first CUDA/cuBLAS failure is kept (the ops after it do
 * nothing) and ops->error reports it (-EIO and a message) and clears it; forward_batch and
 * forward_run check it, so that step fails with INTERNAL.  A fault inside a kernel surfaces
 * at ops->error's synchronize and names the op queued last.  After a sticky error the runtime
 * cannot tell device from host pointers: that counts as a failure (cu_where), never as host.
 */
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <new>
#include <unordered_map>

extern "C" {
#include "workers/llm/backend.h"
}
#include "workers/llm/backend_cuda_kern.h"  /* the kernels' per-thread arithmetic */

#define CU_THREADS CUK_THREADS
#define CU_STR2(x) #x
#define CU_STR(x) CU_STR2(x)
#define CU_BLAS_SONAME "libcublas.so." CU_STR(CUBLAS_VER_MAJOR)

/*
 * cuBLAS is opened with dlopen when the first CUDA backend is created, not linked: linking it
 * (and cublasLt, 0.5 GB) costs every certa-worker start ~0.2 s and ~200 MB of resident memory
 * even on the CPU backend.  cudart is small and linked.
 */
static struct {
	void *lib;
	decltype(&cublasCreate_v2) create;
	decltype(&cublasDestroy_v2) destroy;
	decltype(&cublasSetMathMode) set_math_mode;
	decltype(&cublasSetPointerMode_v2) set_pointer_mode;
	cublasStatus_t (*gemm_ex)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int,
	    int, const void *, const void *, cudaDataType, int, const void *, cudaDataType, int,
	    const void *, void *, cudaDataType, int, cublasComputeType_t, cublasGemmAlgo_t);
	decltype(&cublasGetStatusString) status_string;
} cu_blas;

/* 0, or -ENOENT with the reason in err. */
static int
cu_blas_open(char *err, size_t errlen)
{
	void *lib;

	if (cu_blas.lib)
		return 0;
	lib = dlopen(CU_BLAS_SONAME, RTLD_NOW | RTLD_LOCAL);
	if (!lib) {
		snprintf(err, errlen, "cannot load cuBLAS: %s", dlerror());
		return -ENOENT;
	}
	cu_blas.create = (decltype(cu_blas.create))dlsym(lib, "cublasCreate_v2");
	cu_blas.destroy = (decltype(cu_blas.destroy))dlsym(lib, "cublasDestroy_v2");
	cu_blas.set_math_mode = (decltype(cu_blas.set_math_mode))dlsym(lib, "cublasSetMathMode");
	cu_blas.set_pointer_mode = (decltype(cu_blas.set_pointer_mode))dlsym(lib,
	    "cublasSetPointerMode_v2");
	cu_blas.gemm_ex = (decltype(cu_blas.gemm_ex))dlsym(lib, "cublasGemmEx");
	cu_blas.status_string = (decltype(cu_blas.status_string))dlsym(lib,
	    "cublasGetStatusString");
	if (!cu_blas.create || !cu_blas.destroy || !cu_blas.set_math_mode ||
	    !cu_blas.set_pointer_mode || !cu_blas.gemm_ex ||
	    !cu_blas.status_string) {
		snprintf(err, errlen, "%s lacks a function this backend uses", CU_BLAS_SONAME);
		dlclose(lib);
		return -ENOENT;
	}
	cu_blas.lib = lib;       /* stays loaded for the process */
	return 0;
}

struct cu_buf {
	void *p;
	size_t bytes;
};

struct cu_weight {
	void *dev;
	enum gguf_ttype type;    /* F32, F16 or BF16 on the device */
	enum gguf_ttype src;     /* as the host holds it */
	size_t rows, cols;       /* a vector: 1 x n */
};

struct backend_cuda {
	struct backend base;     /* first */
	int device;
	cublasHandle_t blas;
	struct backend *cpu;     /* the CPU twin for the host-side ops */
	std::unordered_map<const void *, cu_weight> *weights;
	struct cu_buf xconv, ids, pos, kst, vst, scores, host, tab;
	float *scal;             /* device: the GEMMs' alpha and beta (CU_SCAL_*) */
	/* Small host-to-device uploads (positions, ids, block tables) go through a ring of pinned
	 * memory and cudaMemcpyAsync, so a decode step does not wait for the device per op. */
	uint8_t *ring_h, *ring_d;
	size_t ring_off;
	const float **tab_h;     /* host block table being built, tab_cap entries */
	size_t tab_cap;
	struct kv_mem kvmem;     /* KV blocks in device memory (ops->kv_mem) */
	int err;                 /* 0, or -EIO after the first failure */
	char msg[256];
	const char *last;        /* the op launched last (names an asynchronous fault) */
};

#define CU_RING_BYTES ((size_t)8 << 20)

/* backend_cuda.scal: cuBLAS reads alpha and beta from device memory, so that the scale of an
 * F16 input (k_to_f16_*) becomes alpha without a round trip to the host. */
enum { CU_SCAL_ONE, CU_SCAL_ZERO, CU_SCAL_F16, CU_SCAL_ABSMAX, CU_SCAL_N };

/*
 * The backend of an op, with its device made current on the calling thread.  The worker
 * creates the backend on its main thread and the engine thread runs the ops; a thread's
 * current device starts as device 0, so without this every launch, cuBLAS call and copy of
 * cuda:N (N > 0) on the engine thread would go to device 0.  Cheap (a thread-local check).
 */
static struct backend_cuda *
cu_of(struct backend *be)
{
	struct backend_cuda *c = (struct backend_cuda *)be;

	(void)cudaSetDevice(c->device);
	return c;
}

/* Keeps the first failure; returns whether the backend is still healthy. */
static bool
cu_fail(struct backend_cuda *c, const char *fmt, ...)
{
	va_list ap;

	if (c->err == 0) {
		c->err = -EIO;
		va_start(ap, fmt);
		vsnprintf(c->msg, sizeof c->msg, fmt, ap);
		va_end(ap);
	}
	return false;
}

static bool
cu_ok(struct backend_cuda *c, cudaError_t e, const char *what)
{
	if (e == cudaSuccess)
		return c->err == 0;
	return cu_fail(c, "CUDA error in %s: %s", what, cudaGetErrorString(e));
}

static bool
cu_launched(struct backend_cuda *c, const char *what)
{
	c->last = what;
	return cu_ok(c, cudaGetLastError(), what);
}

static void *
cu_scratch(struct backend_cuda *c, struct cu_buf *b, size_t bytes)
{
	if (b->bytes >= bytes)
		return b->p;
	if (b->p) {
		cudaDeviceSynchronize();     /* queued kernels may still read it */
		cudaFree(b->p);
	}
	b->p = NULL;
	b->bytes = 0;
	if (!cu_ok(c, cudaMalloc(&b->p, bytes ? bytes : 1), "scratch allocation"))
		return NULL;
	b->bytes = bytes;
	return b->p;
}

static void *
cu_host_scratch(struct backend_cuda *c, size_t bytes)
{
	void *p;

	if (c->host.bytes >= bytes)
		return c->host.p;
	p = realloc(c->host.p, bytes ? bytes : 1);
	if (!p) {
		cu_fail(c, "out of host memory (%zu bytes)", bytes);
		return NULL;
	}
	c->host.p = p;
	c->host.bytes = bytes;
	return p;
}

/*
 * A device copy of n host bytes for the ops queued next: through the pinned ring (async; the
 * ring is reused only after the device drained it), or, when the ring is missing or n is too
 * large, a synchronous copy into scratch buffer b.  NULL after a failure.
 */
static const void *
cu_upload(struct backend_cuda *c, struct cu_buf *b, const void *src, size_t n)
{
	size_t need = (n + 255) & ~(size_t)255, off;
	void *d;

	if (c->ring_h && need <= CU_RING_BYTES) {
		if (c->ring_off + need > CU_RING_BYTES) {
			if (!cu_ok(c, cudaStreamSynchronize(0), "upload ring"))
				return NULL;
			c->ring_off = 0;
		}
		off = c->ring_off;
		memcpy(c->ring_h + off, src, n);
		if (!cu_ok(c, cudaMemcpyAsync(c->ring_d + off, c->ring_h + off, n,
		    cudaMemcpyHostToDevice, 0), "upload"))
			return NULL;
		c->ring_off += need;
		return c->ring_d + off;
	}
	if (!(d = cu_scratch(c, b, n)) ||
	    !cu_ok(c, cudaMemcpy(d, src, n, cudaMemcpyHostToDevice), "upload"))
		return NULL;
	return d;
}

static unsigned
cu_blocks(size_t n)
{
	return cuk_blocks(n);
}

/*
 * Where p is: 1 device memory, 0 host memory, -1 the runtime cannot tell (a broken context:
 * the failure is kept).  "Cannot tell" must not read as host: the host-side ops would hand a
 * device address to the CPU twin, which would crash the worker instead of failing the step.
 */
static int
cu_where(struct backend_cuda *c, const void *p)
{
	cudaPointerAttributes a;
	cudaError_t e = cudaPointerGetAttributes(&a, p);

	if (e == cudaErrorInvalidValue) {
		cudaGetLastError();  /* clear: older runtimes say this of a plain host pointer */
		return 0;
	}
	if (!cu_ok(c, e, "pointer attributes"))
		return -1;
	return a.type == cudaMemoryTypeDevice || a.type == cudaMemoryTypeManaged;
}

/* ---- weights ----------------------------------------------------------------------------- */

/* The device copy of a host float vector of n elements (uploaded once), or p itself when it
 * is device memory. */
static const float *
cu_vec(struct backend_cuda *c, const float *p, size_t n)
{
	void *d = NULL;
	int where;

	if (p == NULL || (where = cu_where(c, p)) == 1)
		return p;
	if (where < 0)
		return NULL;
	auto it = c->weights->find(p);
	if (it != c->weights->end()) {
		if (it->second.src == GGUF_T_F32 && it->second.rows == 1 && it->second.cols >= n)
			return (const float *)it->second.dev;
		cudaFree(it->second.dev);        /* another shape at that address: upload again */
		c->weights->erase(it);
	}
	if (!cu_ok(c, cudaMalloc(&d, n * sizeof(float)), "weight upload") ||
	    !cu_ok(c, cudaMemcpy(d, p, n * sizeof(float), cudaMemcpyHostToDevice), "weight upload")) {
		if (d)
			cudaFree(d);
		return NULL;
	}
	(*c->weights)[p] = cu_weight{ d, GGUF_T_F32, GGUF_T_F32, 1, n };
	return (const float *)d;
}

/* The device copy of matrix w: rows x cols of F32, F16 or BF16, row-major. */
static const cu_weight *
cu_mat(struct backend_cuda *c, const struct model_weight *w)
{
	size_t n = (size_t)w->rows * w->cols;
	cu_weight cw = { NULL, w->type, w->type, w->rows, w->cols };
	uint16_t *h = NULL;
	float *row = NULL;
	uint32_t r, i;
	cudaError_t e;

	auto it = c->weights->find(w->data);
	if (it != c->weights->end()) {
		if (it->second.src == w->type && it->second.rows == w->rows &&
		    it->second.cols == w->cols)
			return &it->second;
		cudaFree(it->second.dev);        /* another matrix at that address: upload again */
		c->weights->erase(it);
	}
	if (w->type == GGUF_T_F32 || w->type == GGUF_T_F16 || w->type == GGUF_T_BF16) {
		size_t esz = w->type == GGUF_T_F32 ? 4 : 2;
		e = cudaMalloc(&cw.dev, n * esz);
		if (e == cudaSuccess)
			e = cudaMemcpy2D(cw.dev, w->cols * esz, w->data, w->row_bytes, w->cols * esz,
			    w->rows, cudaMemcpyHostToDevice);
	} else {
		cw.type = GGUF_T_F16;
		h = (uint16_t *)malloc(n * sizeof(*h));
		row = (float *)malloc((size_t)w->cols * sizeof(float));
		if (!h || !row) {
			free(h);
			free(row);
			cu_fail(c, "out of host memory converting %s", w->name ? w->name : "a weight");
			return NULL;
		}
		for (r = 0; r < w->rows; r++) {
			backend_cpu_dequant_row(w->type, (const uint8_t *)w->data +
			    (size_t)r * w->row_bytes, row, w->cols);
			for (i = 0; i < w->cols; i++) {
				__half v = __float2half_rn(row[i]);
				memcpy(&h[(size_t)r * w->cols + i], &v, 2);
			}
		}
		e = cudaMalloc(&cw.dev, n * 2);
		if (e == cudaSuccess)
			e = cudaMemcpy(cw.dev, h, n * 2, cudaMemcpyHostToDevice);
		free(h);
		free(row);
	}
	if (e != cudaSuccess) {
		if (cw.dev)
			cudaFree(cw.dev);
		cu_fail(c, "uploading %s (%zu elements): %s", w->name ? w->name : "a weight", n,
		    cudaGetErrorString(e));
		return NULL;
	}
	cu_weight &slot = (*c->weights)[w->data];
	slot = cw;
	return &slot;
}

/* ---- kernels ----------------------------------------------------------------------------- */

/* The largest of red[0 .. blockDim.x) (a power of two) into red[0], by a tree over the block;
 * every thread of the block calls it after writing its own red[threadIdx.x]. */
__device__ static void
cu_block_max(float *red)
{
	uint32_t tid = threadIdx.x, st;

	__syncthreads();
	for (st = blockDim.x / 2; st > 0; st >>= 1) {
		if (tid < st)
			red[tid] = fmaxf(red[tid], red[tid + st]);
		__syncthreads();
	}
}

/*
 * Matmul input to F16 with the scale of cuk_f16_scale (so no activation above 65504 becomes
 * infinite), for up to CUK_F16_ONE_BLOCK elements: one block finds the largest magnitude
 * (a max tree over the block), then converts x / s; alpha (device memory, the GEMM's alpha
 * in CUBLAS_POINTER_MODE_DEVICE) = s.
 */
__global__ void
k_to_f16_block(__half *out, float *alpha, const float *x, size_t n)
{
	__shared__ float red[CU_THREADS];
	uint32_t tid = threadIdx.x;
	float sc, inv;
	size_t i;

	red[tid] = cuk_absmax_part(tid, blockDim.x, x, n);
	cu_block_max(red);
	sc = cuk_f16_scale(red[0]);
	inv = 1.0f / sc;
	for (i = tid; i < n; i += blockDim.x)
		out[i] = __float2half_rn(x[i] * inv);
	if (tid == 0)
		*alpha = sc;
}

/* The largest magnitude of x over a grid: a max tree per block, then atomicMax on the bits
 * (non-negative floats order as unsigned integers) into *word, zeroed before the launch. */
__global__ void
k_absmax(unsigned *word, const float *x, size_t n)
{
	__shared__ float red[CU_THREADS];
	uint32_t tid = threadIdx.x;

	red[tid] = cuk_absmax_part((size_t)blockIdx.x * blockDim.x + tid,
	    (size_t)gridDim.x * blockDim.x, x, n);
	cu_block_max(red);
	if (tid == 0)
		atomicMax(word, __float_as_uint(red[0]));
}

/* After k_absmax: x / s to F16, one thread per element; alpha = s. */
__global__ void
k_to_f16_grid(__half *out, float *alpha, const unsigned *word, const float *x, size_t n)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	float sc = cuk_f16_scale(__uint_as_float(*word));

	if (i < n)
		out[i] = __float2half_rn(x[i] * (1.0f / sc));
	if (i == 0)
		*alpha = sc;
}

__global__ void
k_to_bf16(__nv_bfloat16 *out, const float *x, size_t n)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;

	if (i < n)
		out[i] = __float2bfloat16_rn(x[i]);
}

__global__ void
k_get_rows(float *out, const void *w, int type, const uint32_t *ids, uint32_t n, uint32_t cols)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x, src;

	if (!cuk_get_rows_src(i, ids, n, cols, &src))
		return;
	if (type == GGUF_T_F32)
		out[i] = ((const float *)w)[src];
	else if (type == GGUF_T_F16)
		out[i] = __half2float(((const __half *)w)[src]);
	else
		out[i] = __bfloat162float(((const __nv_bfloat16 *)w)[src]);
}

/* One block per row; double sums as the CPU backend. */
__global__ void
k_rmsnorm(float *out, const float *x, const float *w, uint32_t dim, float eps)
{
	__shared__ double part[CU_THREADS];
	uint32_t s;

	part[threadIdx.x] = cuk_rmsnorm_part(blockIdx.x, threadIdx.x, blockDim.x, x, dim);
	__syncthreads();
	for (s = blockDim.x / 2; s > 0; s >>= 1) {
		if (threadIdx.x < s)
			part[threadIdx.x] += part[threadIdx.x + s];
		__syncthreads();
	}
	cuk_rmsnorm_apply(blockIdx.x, threadIdx.x, blockDim.x, out, x, w, dim, eps, part[0]);
}

/* One thread per (token, pair, head). */
__global__ void
k_rope(float *x, uint32_t n_tok, uint32_t n_heads, uint32_t head_dim, const uint32_t *pos,
    int mode, uint32_t n_rot, float base, float freq_scale, const float *freqs)
{
	cuk_rope((size_t)blockIdx.x * blockDim.x + threadIdx.x, x, n_tok, n_heads, head_dim, pos,
	    mode, n_rot, base, freq_scale, freqs);
}

/*
 * Attention: one block per (token, head) over the sequence's K/V where they are, through the
 * block table (struct cuk_attn): scores and their maximum, exp and their sum, weighted V, with
 * a block reduction between the phases.  A barrier after each reduction's read of red[0]
 * keeps the next phase from overwriting it early; the barriers of the sum reduction also make
 * every thread's scores visible to the V phase.
 */
__global__ void
k_attention(struct cuk_attn a)
{
	__shared__ float red[CU_THREADS];
	uint32_t tid = threadIdx.x, s;
	float m, l;

	red[tid] = cuk_attn_scores(&a, blockIdx.x, tid, blockDim.x);
	cu_block_max(red);
	m = red[0];
	__syncthreads();
	red[tid] = cuk_attn_exp(&a, blockIdx.x, tid, blockDim.x, m);
	__syncthreads();
	for (s = blockDim.x / 2; s > 0; s >>= 1) {
		if (tid < s)
			red[tid] += red[tid + s];
		__syncthreads();
	}
	l = red[0];
	cuk_attn_out(&a, blockIdx.x, tid, blockDim.x, l);
}

__global__ void
k_swiglu(float *out, const float *gate, const float *up, size_t n)
{
	cuk_swiglu((size_t)blockIdx.x * blockDim.x + threadIdx.x, out, gate, up, n);
}

__global__ void
k_axpy(float *x, const float *y, float a, size_t n, size_t ny)
{
	cuk_axpy((size_t)blockIdx.x * blockDim.x + threadIdx.x, x, y, a, n, ny);
}

__device__ static uint64_t
cu_mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

/* out[i] = uniform [-scale, scale) from (seed, i), stored as `type` (F32, F16, BF16). */
__global__ void
k_fill_random(void *out, int type, size_t n, uint64_t seed, float scale)
{
	size_t i;

	for (i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
	    i += (size_t)gridDim.x * blockDim.x) {
		float u = (float)(cu_mix64(seed ^ (i * 0xd1342543de82ef95ULL)) >> 40) *
		    (2.0f / 16777216.0f) - 1.0f;
		if (type == GGUF_T_F32)
			((float *)out)[i] = u * scale;
		else if (type == GGUF_T_F16)
			((__half *)out)[i] = __float2half_rn(u * scale);
		else
			((__nv_bfloat16 *)out)[i] = __float2bfloat16_rn(u * scale);
	}
}

/* ---- memory ------------------------------------------------------------------------------ */

static float *
cu_alloc(struct backend *be, size_t n)
{
	struct backend_cuda *c = cu_of(be);
	void *p = NULL;
	size_t bytes = (n ? n : 1) * sizeof(float);

	/* cu_ok is false after an earlier failure even when these succeed: free p then. */
	if (!cu_ok(c, cudaMalloc(&p, bytes), "alloc") ||
	    !cu_ok(c, cudaMemset(p, 0, bytes), "alloc")) {
		if (p)
			cudaFree(p);
		return NULL;
	}
	return (float *)p;
}

static void
cu_release(struct backend *be, float *p)
{
	if (p) {
		cudaDeviceSynchronize();     /* queued kernels may still use it */
		cudaFree(p);
	}
}

static void
cu_copy(struct backend *be, float *dst, const float *src, size_t n)
{
	struct backend_cuda *c = cu_of(be);

	if (c->err == 0 && n)
		cu_ok(c, cudaMemcpy(dst, src, n * sizeof(float), cudaMemcpyDefault), "copy");
}

/* ---- matrices ---------------------------------------------------------------------------- */

static void
cu_matmul(struct backend *be, const struct model_weight *w, const float *x, uint32_t n_tok,
    float *y)
{
	struct backend_cuda *c = cu_of(be);
	const cu_weight *cw;
	const float *alpha = &c->scal[CU_SCAL_ONE];
	size_t n = (size_t)n_tok * w->cols;
	cudaDataType_t t = CUDA_R_32F;
	const void *xb = x;
	cublasStatus_t st;

	if (c->err || n_tok == 0 || !(cw = cu_mat(c, w)))
		return;
	if (cw->type == GGUF_T_F16 || cw->type == GGUF_T_BF16) {
		void *s = cu_scratch(c, &c->xconv, n * 2);
		if (!s)
			return;
		if (cw->type == GGUF_T_F16 && n <= CUK_F16_ONE_BLOCK) {
			k_to_f16_block<<<1, CU_THREADS>>>((__half *)s, &c->scal[CU_SCAL_F16], x, n);
			alpha = &c->scal[CU_SCAL_F16];
			t = CUDA_R_16F;
		} else if (cw->type == GGUF_T_F16) {
			unsigned *word = (unsigned *)&c->scal[CU_SCAL_ABSMAX];
			unsigned nb = cu_blocks(n);
			if (!cu_ok(c, cudaMemsetAsync(word, 0, sizeof(*word), 0), "matmul scale"))
				return;
			k_absmax<<<nb < 1024 ? nb : 1024, CU_THREADS>>>(word, x, n);
			k_to_f16_grid<<<nb, CU_THREADS>>>((__half *)s, &c->scal[CU_SCAL_F16], word,
			    x, n);
			alpha = &c->scal[CU_SCAL_F16];
			t = CUDA_R_16F;
		} else {
			k_to_bf16<<<cu_blocks(n), CU_THREADS>>>((__nv_bfloat16 *)s, x, n);
			t = CUDA_R_16BF;
		}
		if (!cu_launched(c, "matmul input conversion"))
			return;
		xb = s;
	}
	/* Row-major W [rows][cols] is column-major [cols x rows]: y = W^T(cm) . x(cm).  alpha and
	 * beta are device pointers (CUBLAS_POINTER_MODE_DEVICE, set at creation). */
	st = cu_blas.gemm_ex(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)w->rows, (int)n_tok,
	    (int)w->cols, alpha, cw->dev, t, (int)w->cols, xb, t, (int)w->cols,
	    &c->scal[CU_SCAL_ZERO], y, CUDA_R_32F, (int)w->rows, CUBLAS_COMPUTE_32F,
	    CUBLAS_GEMM_DEFAULT);
	c->last = "matmul (cublasGemmEx)";
	if (st != CUBLAS_STATUS_SUCCESS)
		cu_fail(c, "cublasGemmEx %s [%u x %u] x %u tokens: %s", w->name ? w->name : "",
		    w->rows, w->cols, n_tok, cu_blas.status_string(st));
}

static void
cu_get_rows(struct backend *be, const struct model_weight *w, const uint32_t *ids,
    uint32_t n, float *out)
{
	struct backend_cuda *c = cu_of(be);
	const cu_weight *cw;
	const uint32_t *di;
	size_t total = (size_t)n * w->cols;

	if (c->err || n == 0 || !(cw = cu_mat(c, w)))
		return;
	if (!(di = (const uint32_t *)cu_upload(c, &c->ids, ids, n * sizeof(*ids))))
		return;
	k_get_rows<<<cu_blocks(total), CU_THREADS>>>(out, cw->dev, cw->type, di, n, w->cols);
	cu_launched(c, "get_rows");
}

/* ---- elementwise ------------------------------------------------------------------------- */

static void
cu_rmsnorm(struct backend *be, float *out, const float *x, const float *w, uint32_t n_rows,
    uint32_t dim, float eps)
{
	struct backend_cuda *c = cu_of(be);
	const float *dw;

	if (c->err || n_rows == 0 || !(dw = cu_vec(c, w, dim)))
		return;
	k_rmsnorm<<<n_rows, CU_THREADS>>>(out, x, dw, dim, eps);
	cu_launched(c, "rmsnorm");
}

static const uint32_t *
cu_positions(struct backend_cuda *c, const uint32_t *pos, uint32_t n)
{
	return (const uint32_t *)cu_upload(c, &c->pos, pos, n * sizeof(*pos));
}

static void
cu_rope(struct backend *be, float *x, uint32_t n_tok, uint32_t n_heads, uint32_t head_dim,
    const uint32_t *pos, const struct backend_rope *r)
{
	struct backend_cuda *c = cu_of(be);
	size_t n = (size_t)n_tok * (r->n_rot / 2) * n_heads;
	const uint32_t *dp;
	const float *df = NULL;

	if (c->err || n == 0 || !(dp = cu_positions(c, pos, n_tok)))
		return;
	if (r->freqs && !(df = cu_vec(c, r->freqs, r->n_rot / 2)))
		return;
	k_rope<<<cu_blocks(n), CU_THREADS>>>(x, n_tok, n_heads, head_dim, dp, (int)r->mode,
	    r->n_rot, r->base, r->freq_scale, df);
	cu_launched(c, "rope");
}

/* Copies K (or V) rows of positions 0..n_pos-1 of layer to dst [n_pos][row], one copy per run
 * of positions that are contiguous in the cache (a page). */
static bool
cu_stage(struct backend_cuda *c, float *dst, struct kv *kv, uint32_t layer, uint32_t n_pos,
    bool values)
{
	uint32_t p0, p;

	for (p0 = 0; p0 < n_pos; p0 = p) {
		const float *s = values ? kv_v(kv, layer, p0) : kv_k(kv, layer, p0);
		for (p = p0 + 1; p < n_pos; p++)
			if ((values ? kv_v(kv, layer, p) : kv_k(kv, layer, p)) !=
			    s + (size_t)(p - p0) * kv->row)
				break;
		if (!cu_ok(c, cudaMemcpy(dst + (size_t)p0 * kv->row, s,
		    (size_t)(p - p0) * kv->row * sizeof(float), cudaMemcpyDefault), "KV staging"))
			return false;
	}
	return true;
}

/*
 * Attention over the sequence's KV: in device memory (a pool on ops->kv_mem), the kernel reads
 * the pages through a block table uploaded with the call; in host memory (a flat KV, a host
 * pool), positions 0..max(pos) are first staged into device scratch (one copy per block), which
 * is correct but bound by PCIe.
 */
static void
cu_attention(struct backend *be, float *out, const float *q, uint32_t n_tok,
    const uint32_t *pos, struct kv *kv, const struct backend_attn *a)
{
	struct backend_cuda *c = cu_of(be);
	uint32_t n_pos, blk, nb;
	const uint32_t *dp = NULL;
	const float *const *dtab;
	float *ks, *vs, *sc;
	size_t rowb = (size_t)kv->row * sizeof(float);
	bool consecutive;
	struct cuk_attn ka;
	int where;

	if (c->err || n_tok == 0)
		return;
	consecutive = cuk_attn_plan(pos, n_tok, &n_pos);
	if (!consecutive && !(dp = cu_positions(c, pos, n_tok)))
		return;
	if (!(sc = (float *)cu_scratch(c, &c->scores,
	    (size_t)n_tok * a->n_head * n_pos * sizeof(float))))
		return;
	if ((where = cu_where(c, kv_k(kv, a->layer, 0))) < 0)
		return;
	if (where) {
		blk = kv_block_size(kv);
		nb = cuk_attn_nblocks(n_pos, blk);
		if (c->tab_cap < 2 * (size_t)nb) {
			const float **nt = (const float **)realloc(c->tab_h, 2 * (size_t)nb *
			    sizeof(*nt));
			if (!nt) {
				cu_fail(c, "out of host memory (block table of %u blocks)", nb);
				return;
			}
			c->tab_h = nt;
			c->tab_cap = 2 * (size_t)nb;
		}
		cuk_attn_table(kv, a->layer, n_pos, blk, c->tab_h);
	} else {
		if (!(ks = (float *)cu_scratch(c, &c->kst, n_pos * rowb)) ||
		    !(vs = (float *)cu_scratch(c, &c->vst, n_pos * rowb)) ||
		    !cu_stage(c, ks, kv, a->layer, n_pos, false) ||
		    !cu_stage(c, vs, kv, a->layer, n_pos, true))
			return;
		if (c->tab_cap < 2) {
			const float **nt = (const float **)realloc(c->tab_h, 2 * sizeof(*nt));
			if (!nt) {
				cu_fail(c, "out of host memory");
				return;
			}
			c->tab_h = nt;
			c->tab_cap = 2;
		}
		blk = n_pos;
		nb = 1;
		c->tab_h[0] = ks;
		c->tab_h[1] = vs;
	}
	if (!(dtab = (const float *const *)cu_upload(c, &c->tab, c->tab_h,
	    2 * (size_t)nb * sizeof(*c->tab_h))))
		return;
	ka.out = out;
	ka.q = q;
	ka.pos = dp;
	ka.pos0 = pos[0];
	ka.tab = dtab;
	ka.blk = blk;
	ka.row = kv->row;
	ka.scores = sc;
	ka.n_head = a->n_head;
	ka.n_head_kv = a->n_head_kv;
	ka.hd = a->head_dim;
	ka.n_pos = n_pos;
	ka.scale = a->scale;
	k_attention<<<n_tok * a->n_head, CU_THREADS>>>(ka);
	cu_launched(c, "attention");
}

/* Stores K/V rows: one copy per run of tokens whose positions are consecutive and whose rows
 * are contiguous in the cache (a page), so a prefill chunk costs a copy per block, not per
 * token; asynchronous when the cache is device memory. */
static int
cu_kv_store(struct backend *be, struct kv *kv, uint32_t layer, const float *k,
    const float *v, uint32_t n_tok, const uint32_t *pos)
{
	struct backend_cuda *c = cu_of(be);
	size_t rowb = (size_t)kv->row * sizeof(float);
	uint32_t t0, t;
	int dev = -1;            /* whether the cache is device memory (asynchronous copies) */

	if (c->err)
		return c->err;
	for (t0 = 0; t0 < n_tok; t0 = t) {
		float *dk = kv_k(kv, layer, pos[t0]), *dv = kv_v(kv, layer, pos[t0]);
		for (t = t0 + 1; t < n_tok; t++)
			if (pos[t] != pos[t0] + (t - t0) ||
			    kv_k(kv, layer, pos[t]) != dk + (size_t)(t - t0) * kv->row ||
			    kv_v(kv, layer, pos[t]) != dv + (size_t)(t - t0) * kv->row)
				break;
		if (dev < 0 && (dev = cu_where(c, dk)) < 0)
			return c->err;
		if (dev ? (!cu_ok(c, cudaMemcpyAsync(dk, k + (size_t)t0 * kv->row, (t - t0) * rowb,
		    cudaMemcpyDeviceToDevice, 0), "KV store") ||
		    !cu_ok(c, cudaMemcpyAsync(dv, v + (size_t)t0 * kv->row, (t - t0) * rowb,
		    cudaMemcpyDeviceToDevice, 0), "KV store")) :
		    (!cu_ok(c, cudaMemcpy(dk, k + (size_t)t0 * kv->row, (t - t0) * rowb,
		    cudaMemcpyDefault), "KV store") ||
		    !cu_ok(c, cudaMemcpy(dv, v + (size_t)t0 * kv->row, (t - t0) * rowb,
		    cudaMemcpyDefault), "KV store")))
			return c->err;
	}
	return 0;
}

static void
cu_swiglu(struct backend *be, float *out, const float *gate, const float *up, size_t n)
{
	struct backend_cuda *c = cu_of(be);

	if (c->err || n == 0)
		return;
	k_swiglu<<<cu_blocks(n), CU_THREADS>>>(out, gate, up, n);
	cu_launched(c, "swiglu");
}

static void
cu_axpy(struct backend *be, float *x, const float *y, float a, size_t n)
{
	struct backend_cuda *c = cu_of(be);

	if (c->err || n == 0)
		return;
	k_axpy<<<cu_blocks(n), CU_THREADS>>>(x, y, a, n, n);
	cu_launched(c, "axpy");
}

static void
cu_add(struct backend *be, float *x, const float *y, size_t n)
{
	cu_axpy(be, x, y, 1.0f, n);
}

static void
cu_add_bias(struct backend *be, float *x, const float *b, uint32_t n_rows, uint32_t n)
{
	struct backend_cuda *c = cu_of(be);
	size_t total = (size_t)n_rows * n;
	const float *db;

	if (c->err || total == 0 || !(db = cu_vec(c, b, n)))
		return;
	k_axpy<<<cu_blocks(total), CU_THREADS>>>(x, db, 1.0f, total, n);
	cu_launched(c, "add_bias");
}

/* ---- host-side ops (the CPU twin) -------------------------------------------------------- */

/* x itself when it is host memory, else a host copy of its n floats (NULL after a failure:
 * the ops do nothing then, as every other op). */
static float *
cu_on_host(struct backend_cuda *c, const float *x, size_t n, bool *copied)
{
	float *h;
	int where;

	*copied = false;
	if (c->err || (where = cu_where(c, x)) < 0)
		return NULL;
	if (!(*copied = where == 1))
		return (float *)x;
	if (!(h = (float *)cu_host_scratch(c, n * sizeof(float))) ||
	    !cu_ok(c, cudaMemcpy(h, x, n * sizeof(float), cudaMemcpyDeviceToHost), "read to host"))
		return NULL;
	return h;
}

static uint32_t
cu_moe_gate(struct backend *be, const float *logits, uint32_t n_expert,
    const struct backend_moe_sel *sel, uint32_t *ids, float *weights)
{
	struct backend_cuda *c = cu_of(be);
	bool copied;
	const float *h = cu_on_host(c, logits, n_expert, &copied);

	if (!h) {                    /* failed: expert 0 with weight 1; the step fails anyway */
		ids[0] = 0;
		weights[0] = 1;
		return 1;
	}
	return c->cpu->ops->moe_gate(c->cpu, h, n_expert, sel, ids, weights);
}

static void
cu_softmax(struct backend *be, float *x, size_t n)
{
	struct backend_cuda *c = cu_of(be);
	bool copied;
	float *h = cu_on_host(c, x, n, &copied);

	if (!h)
		return;
	c->cpu->ops->softmax(c->cpu, h, n);
	if (copied)
		cu_ok(c, cudaMemcpy(x, h, n * sizeof(float), cudaMemcpyHostToDevice), "softmax");
}

static uint32_t
cu_argmax(struct backend *be, const float *x, size_t n)
{
	struct backend_cuda *c = cu_of(be);
	bool copied;
	const float *h = cu_on_host(c, x, n, &copied);

	return h ? c->cpu->ops->argmax(c->cpu, h, n) : 0;
}

static uint32_t
cu_sample(struct backend *be, const float *logits, size_t n, float temperature, float top_p,
    double u, float *prob)
{
	struct backend_cuda *c = cu_of(be);
	bool copied;
	const float *h = cu_on_host(c, logits, n, &copied);

	if (!h) {
		if (prob)
			*prob = 0;
		return 0;
	}
	return c->cpu->ops->sample(c->cpu, h, n, temperature, top_p, u, prob);
}

/* ---- KV blocks in device memory --------------------------------------------------------- */

static void *
cu_kv_alloc(void *ctx, size_t bytes)
{
	struct backend_cuda *c = (struct backend_cuda *)ctx;
	void *p = NULL;

	cudaSetDevice(c->device);    /* the pool may be made on another thread */
	if (cudaMalloc(&p, bytes ? bytes : 1) != cudaSuccess) {
		cudaGetLastError();
		return NULL;
	}
	if (cudaMemset(p, 0, bytes) != cudaSuccess) {
		cudaGetLastError();
		cudaFree(p);
		return NULL;
	}
	return p;
}

static void
cu_kv_free(void *ctx, void *p)
{
	struct backend_cuda *c = (struct backend_cuda *)ctx;

	cudaSetDevice(c->device);
	cudaDeviceSynchronize();
	cudaFree(p);
}

/* Copy on write of a block: queued on the device like the ops around it. */
static void
cu_kv_copy(void *ctx, void *dst, const void *src, size_t bytes)
{
	struct backend_cuda *c = (struct backend_cuda *)ctx;

	(void)cudaSetDevice(c->device);      /* a fork may be reserved on another thread */
	if (c->err == 0)
		cu_ok(c, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, 0),
		    "KV copy on write");
}

static const struct kv_mem *
cu_kv_mem(struct backend *be)
{
	return &cu_of(be)->kvmem;
}

/* ---- errors and lifetime ----------------------------------------------------------------- */

static int
cu_error(struct backend *be, char *msg, size_t len)
{
	struct backend_cuda *c = cu_of(be);
	char what[96];
	int rc;

	/* A fault inside a kernel shows here, not at its launch: name the op queued last (the
	 * faulty kernel is that one or an earlier one since the last wait; with
	 * CUDA_LAUNCH_BLOCKING=1 the faulty launch itself reports, by name). */
	snprintf(what, sizeof what, "a kernel (last queued: %s)", c->last ? c->last : "none");
	cu_ok(c, cudaDeviceSynchronize(), what);
	rc = c->err;
	if (rc && msg && len)
		snprintf(msg, len, "cuda:%d: %s", c->device, c->msg);
	c->err = 0;
	c->msg[0] = '\0';
	return rc;
}

static void
cu_destroy(struct backend *be)
{
	struct backend_cuda *c = cu_of(be);

	if (c->weights) {
		for (auto &kv : *c->weights)
			cudaFree(kv.second.dev);
		delete c->weights;
	}
	cudaFree(c->xconv.p);
	cudaFree(c->scal);
	cudaFree(c->ids.p);
	cudaFree(c->pos.p);
	cudaFree(c->kst.p);
	cudaFree(c->vst.p);
	cudaFree(c->scores.p);
	cudaFree(c->tab.p);
	if (c->ring_h)
		cudaFreeHost(c->ring_h);
	if (c->ring_d)
		cudaFree(c->ring_d);
	free(c->tab_h);
	free(c->host.p);
	if (c->blas)
		cu_blas.destroy(c->blas);
	backend_destroy(c->cpu);
	free(c);
}

static const struct backend_ops cuda_ops = {
	"cuda",
	cu_destroy,
	cu_alloc,
	cu_release,
	cu_copy,                 /* read */
	cu_copy,                 /* write */
	cu_copy,
	cu_matmul,
	cu_get_rows,
	cu_rmsnorm,
	cu_rope,
	cu_attention,
	cu_kv_store,
	cu_swiglu,
	cu_add,
	cu_axpy,
	cu_add_bias,
	cu_moe_gate,
	cu_softmax,
	cu_argmax,
	cu_sample,
	cu_error,
	cu_kv_mem,
};

extern "C" int
backend_cuda_create(int device, struct backend **out, char *err, size_t errlen)
{
	struct backend_cuda *c;
	int count = 0, rc;
	cudaError_t e;
	cublasStatus_t st;

	e = cudaGetDeviceCount(&count);
	if (e != cudaSuccess || device < 0 || device >= count) {
		snprintf(err, errlen, "no CUDA device %d (found %d)%s%s", device,
		    e == cudaSuccess ? count : 0, e == cudaSuccess ? "" : ": ",
		    e == cudaSuccess ? "" : cudaGetErrorString(e));
		return -ENODEV;
	}
	if ((e = cudaSetDevice(device)) != cudaSuccess || (e = cudaFree(0)) != cudaSuccess) {
		snprintf(err, errlen, "CUDA device %d: %s", device, cudaGetErrorString(e));
		return e == cudaErrorMemoryAllocation ? -ENOMEM : -EIO;
	}
	c = (struct backend_cuda *)calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->base.ops = &cuda_ops;
	c->device = device;
	c->kvmem = kv_mem{ cu_kv_alloc, cu_kv_free, cu_kv_copy, c };
	/* The upload ring; without it uploads are synchronous (slower, still correct). */
	if (cudaHostAlloc((void **)&c->ring_h, CU_RING_BYTES, cudaHostAllocDefault) != cudaSuccess ||
	    cudaMalloc((void **)&c->ring_d, CU_RING_BYTES) != cudaSuccess) {
		cudaGetLastError();
		if (c->ring_h)
			cudaFreeHost(c->ring_h);
		if (c->ring_d)
			cudaFree(c->ring_d);
		c->ring_h = c->ring_d = NULL;
	}
	c->weights = new (std::nothrow) std::unordered_map<const void *, cu_weight>();
	if (!c->weights) {
		rc = -ENOMEM;
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if ((rc = backend_cpu_create(1, &c->cpu)) != 0) {
		snprintf(err, errlen, "CPU twin: %s", strerror(-rc));
		goto fail;
	}
	if ((rc = cu_blas_open(err, errlen)) != 0)
		goto fail;
	if ((st = cu_blas.create(&c->blas)) != CUBLAS_STATUS_SUCCESS) {
		snprintf(err, errlen, "CUDA device %d: cublasCreate: %s", device,
		    cu_blas.status_string(st));
		rc = st == CUBLAS_STATUS_ALLOC_FAILED ? -ENOMEM : -EIO;
		goto fail;
	}
	/* FP32 weights stay FP32 (no TF32), so they compare with the CPU backend closely. */
	cu_blas.set_math_mode(c->blas, CUBLAS_DEFAULT_MATH);
	{
		const float init[CU_SCAL_N] = { 1.0f, 0.0f, 1.0f, 0.0f };
		if ((e = cudaMalloc((void **)&c->scal, sizeof(init))) != cudaSuccess ||
		    (e = cudaMemcpy(c->scal, init, sizeof(init), cudaMemcpyHostToDevice)) !=
		    cudaSuccess) {
			snprintf(err, errlen, "CUDA device %d: %s", device, cudaGetErrorString(e));
			rc = e == cudaErrorMemoryAllocation ? -ENOMEM : -EIO;
			goto fail;
		}
	}
	if ((st = cu_blas.set_pointer_mode(c->blas, CUBLAS_POINTER_MODE_DEVICE)) !=
	    CUBLAS_STATUS_SUCCESS) {
		snprintf(err, errlen, "CUDA device %d: cublasSetPointerMode: %s", device,
		    cu_blas.status_string(st));
		rc = -EIO;
		goto fail;
	}
	*out = &c->base;
	return 0;
fail:
	cu_destroy(&c->base);
	return rc;
}

extern "C" int
backend_cuda_info(int device, struct backend_cuda_info *out, char *err, size_t errlen)
{
	cudaDeviceProp p;
	int count = 0, clk = 0, bus = 0;
	cudaError_t e;

	memset(out, 0, sizeof(*out));
	/* Before the device count: a driver too old for the runtime is the usual reason for none. */
	if (cudaDriverGetVersion(&out->driver_version) != cudaSuccess)
		out->driver_version = 0;
	if (cudaRuntimeGetVersion(&out->runtime_version) != cudaSuccess)
		out->runtime_version = 0;
	e = cudaGetDeviceCount(&count);
	if (e != cudaSuccess || device < 0 || device >= count) {
		snprintf(err, errlen, "no CUDA device %d (found %d)%s%s; driver CUDA %d.%d, runtime "
		    "%d.%d", device, e == cudaSuccess ? count : 0, e == cudaSuccess ? "" : ": ",
		    e == cudaSuccess ? "" : cudaGetErrorString(e), out->driver_version / 1000,
		    out->driver_version % 1000 / 10, out->runtime_version / 1000,
		    out->runtime_version % 1000 / 10);
		cudaGetLastError();
		return -ENODEV;
	}
	if ((e = cudaGetDeviceProperties(&p, device)) != cudaSuccess ||
	    (e = cudaSetDevice(device)) != cudaSuccess ||
	    (e = cudaMemGetInfo(&out->mem_free, &out->mem_total)) != cudaSuccess) {
		snprintf(err, errlen, "CUDA device %d: %s", device, cudaGetErrorString(e));
		return -EIO;
	}
	snprintf(out->name, sizeof out->name, "%s", p.name);
	out->sm_count = p.multiProcessorCount;
	out->cc_major = p.major;
	out->cc_minor = p.minor;
	/* kHz and bits; DDR: two transfers per clock. */
	if (cudaDeviceGetAttribute(&clk, cudaDevAttrMemoryClockRate, device) == cudaSuccess &&
	    cudaDeviceGetAttribute(&bus, cudaDevAttrGlobalMemoryBusWidth, device) == cudaSuccess)
		out->peak_gbs = 2.0 * clk * 1e3 * (bus / 8.0) / 1e9;
	cudaGetLastError();
	return 0;
}

extern "C" int
backend_cuda_fill_random(struct backend *be, const struct model_weight *w, uint64_t seed,
    float scale)
{
	struct backend_cuda *c = cu_of(be);
	size_t n = (size_t)w->rows * w->cols, esz;
	uint32_t e, n_mat = w->n_mat ? w->n_mat : 1;
	cudaError_t ce;

	if (w->type != GGUF_T_F32 && w->type != GGUF_T_F16 && w->type != GGUF_T_BF16)
		return -EINVAL;
	if (c->err)
		return c->err;
	esz = w->type == GGUF_T_F32 ? 4 : 2;
	for (e = 0; e < n_mat; e++) {
		const void *key = (const uint8_t *)w->data + (size_t)e * w->mat_bytes;
		cu_weight cw = { NULL, w->type, w->type, w->rows, w->cols };
		size_t blocks = cu_blocks(n);
		auto it = c->weights->find(key);
		if (it != c->weights->end()) {
			cudaFree(it->second.dev);
			c->weights->erase(it);
		}
		if ((ce = cudaMalloc(&cw.dev, n * esz)) != cudaSuccess) {
			cudaGetLastError();
			return ce == cudaErrorMemoryAllocation ? -ENOMEM : -EIO;
		}
		k_fill_random<<<(unsigned)(blocks < 65536 ? blocks : 65536), CU_THREADS>>>(cw.dev,
		    (int)w->type, n, seed + e * 0x632be59bd9b4e019ULL, scale);
		if (!cu_launched(c, "random weights")) {
			cudaFree(cw.dev);
			return c->err;
		}
		(*c->weights)[key] = cw;
	}
	return 0;
}
