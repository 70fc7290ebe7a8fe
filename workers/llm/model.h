/*
 * model.h — a decoder-only transformer described by a GGUF file: hyperparameters from the
 * metadata and weight views into the mapping (nothing is copied).
 *
 * Architectures (`general.architecture`): llama, qwen2 (q/k/v biases), qwen3 (per-head RMS
 * norm of Q and K; head_dim from `.attention.key_length`), qwen3moe (qwen3 attention, a router
 * and `expert_count` SwiGLU experts per layer).  Tensor names are llama.cpp's; every expected
 * tensor is checked for presence, type and shape before model_open() returns, so the forward
 * pass never meets a surprise.  Matrices may be F32, F16, BF16, Q8_0, Q4_K or Q6_K; norm
 * weights and biases must be F32 (as llama.cpp writes them).
 *
 * Rope: llama rotates adjacent pairs (x[2i], x[2i+1]) — llama.cpp's LLAMA_ROPE_TYPE_NORM, the
 * converter having permuted Q/K for it — and the qwen family rotates halves (x[i],
 * x[i + n_rot/2]), LLAMA_ROPE_TYPE_NEOX.  Scaling: none, linear (`.rope.scaling.type` =
 * "linear", positions times 1/factor) and per-dimension frequency factors (tensor
 * `rope_freqs.weight`, how llama.cpp stores llama3 scaling); other types (yarn, ...) are refused.
 *
 * Threads: a struct model is read-only after model_open(); any thread may read it.
 */
#ifndef CERTA_WORKERS_LLM_MODEL_H
#define CERTA_WORKERS_LLM_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "workers/llm/gguf.h"

struct model;

enum model_arch { MODEL_LLAMA, MODEL_QWEN2, MODEL_QWEN3, MODEL_QWEN3MOE };
enum model_rope { MODEL_ROPE_NORM, MODEL_ROPE_NEOX };

/*
 * A weight matrix of `rows` rows of `cols` elements (GGUF ne[0] = cols, ne[1] = rows), stored
 * as ggml type `type`; row r starts at data + r * row_bytes.  Expert tensors hold n_mat such
 * matrices mat_bytes apart (model_weight_mat() takes one).
 */
struct model_weight {
	const char *name;
	enum gguf_ttype type;
	uint32_t cols, rows, n_mat;
	size_t row_bytes, mat_bytes;
	const void *data;
};

struct model_hparams {
	enum model_arch arch;
	const char *arch_name;
	uint32_t n_layer, n_embd, n_ff, n_head, n_head_kv, head_dim, n_rot, n_vocab, n_ctx_train;
	uint32_t n_expert, n_expert_used, n_ff_exp;  /* 0 for dense models */
	bool expert_norm;        /* renormalize the chosen experts' router weights to sum 1 */
	enum model_rope rope;
	float rope_base;         /* theta */
	float rope_freq_scale;   /* 1 / linear scaling factor; 1 = none */
	const float *rope_freqs; /* n_rot/2 frequency divisors (llama3 scaling) or NULL */
	float norm_eps;
};

/* One block's weights; absent parts have data == NULL (vectors: NULL pointers). */
struct model_layer {
	const float *attn_norm, *ffn_norm;       /* [n_embd] */
	struct model_weight wq, wk, wv, wo;
	const float *bq, *bk, *bv;               /* qwen2 */
	const float *q_norm, *k_norm;            /* qwen3*: [head_dim] */
	struct model_weight ffn_gate, ffn_up, ffn_down;          /* dense */
	struct model_weight gate_inp;                            /* moe router [n_embd -> n_expert] */
	struct model_weight gate_exps, up_exps, down_exps;       /* moe: n_expert matrices */
};

/*
 * Opens and checks the model in g (which must outlive the model).  Returns 0 and *out, or
 * CERTA_EINVAL with a message naming the problem ("unknown architecture 'gpt2' (supported:
 * llama, qwen2, qwen3, qwen3moe)", "tensor 'blk.1.attn_k.weight': shape [64, 48], expected
 * [64, 32]", "tensor 'blk.0.ffn_up.weight': type q5_1 not supported (f32, f16, bf16, q8_0,
 * q4_k, q6_k)", "missing key 'llama.block_count'"), or -ENOMEM.
 */
int model_open(const struct gguf *g, struct model **out, char *err, size_t errlen);
void model_close(struct model *m);

const struct model_hparams *model_hparams(const struct model *m);
const struct model_layer *model_layer(const struct model *m, uint32_t i);
const struct model_weight *model_token_embd(const struct model *m);
const float *model_output_norm(const struct model *m);
/* output.weight, or token_embd when the file ties them. */
const struct model_weight *model_output(const struct model *m);
/* `general.name` (or "") — NUL-terminated copy. */
const char *model_name(const struct model *m);

/* Matrix e of an expert tensor, as a plain matrix view. */
struct model_weight model_weight_mat(const struct model_weight *w, uint32_t e);

/* Whether matrices of this ggml type can be used (dequantized row by row). */
bool model_type_supported(uint32_t type);

/* Bytes of K and V per token of one sequence (f32 cache, all layers). */
size_t model_kv_bytes_per_token(const struct model *m);

#endif
