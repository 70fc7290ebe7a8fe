/*
 * forward.h — the transformer forward pass over the backend seam (backend.h): prefill of a
 * token sequence or decode of one token, appending to a sequence's KV (kv.h) and returning
 * logits.
 *
 * A struct forward owns activation buffers for up to max_tokens tokens per call (a longer
 * prefill runs in chunks).  Each call appends tokens at positions kv->len.. of the sequence
 * and advances kv->len; on error the sequence is unchanged (kv->len stays; K/V rows past it
 * may have been written and mean nothing).
 *
 * MoE (qwen3moe): per call, top-k as trained (opts.moe_top_p = 0) or top-p: the experts in
 * descending router probability until their cumulative probability reaches p (at least 1, at
 * most moe_max_experts), weighted by their router probabilities renormalized over the chosen
 * set, as Qwen3-MoE does for top-k (norm_topk_prob).  stats report experts used.
 *
 * Threads: one caller at a time per struct forward (the engine thread); the backend may use
 * more threads inside each op.
 */
#ifndef CERTA_WORKERS_LLM_FORWARD_H
#define CERTA_WORKERS_LLM_FORWARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "workers/llm/backend.h"
#include "workers/llm/kv.h"
#include "workers/llm/model.h"

struct forward;

struct forward_opts {
	float moe_top_p;             /* 0: top-k (expert_used_count); (0, 1]: top-p */
	uint32_t moe_max_experts;    /* cap for top-p; 0 = expert_count */
	bool all_logits;             /* logits of every token, else of the last only */
};

struct forward_stats {
	uint32_t tokens;             /* tokens run */
	uint64_t expert_uses;        /* experts run, summed over tokens and MoE layers */
	uint32_t moe_layers;         /* MoE layers per token (0: dense model) */
};

/*
 * Buffers for up to max_tokens tokens per chunk on backend be (both must outlive the
 * forward).  Returns 0 and *out, -EINVAL (max_tokens 0, head_dim over 1024), -ENOMEM.
 */
int forward_create(const struct model *m, struct backend *be, uint32_t max_tokens,
    struct forward **out);
void forward_destroy(struct forward *f);

/*
 * Runs tokens[0..n) at positions kv->len.. and writes logits to the host buffer `logits`:
 * [n][n_vocab] with opts->all_logits, else [n_vocab] for the last token.  opts may be NULL
 * (top-k, last logits); stats may be NULL.  Returns 0, CERTA_EINVAL (n 0, a token id outside
 * the vocabulary, positions past the model's context length, top_p outside [0, 1]; err says
 * which), CERTA_ECAPACITY (the KV has no room) or the kv's error.
 */
int forward_run(struct forward *f, struct kv *kv, const uint32_t *tokens, uint32_t n,
    const struct forward_opts *opts, float *logits, struct forward_stats *stats, char *err,
    size_t errlen);

/* One sequence of a batch: n tokens appended at kv->len.. */
struct forward_seq {
	struct kv *kv;               /* distinct per entry */
	const uint32_t *tokens;
	uint32_t n;
	float moe_top_p;             /* as forward_opts, per sequence */
	uint32_t moe_max_experts;
	float *logits;               /* host [n_vocab]: logits of the last token, or NULL */
	uint64_t expert_uses;        /* out: experts its tokens ran, summed over MoE layers (the
	                              * share of forward_stats.expert_uses; 0 for a dense model) */
};

/*
 * Runs several sequences as one chunk: every matrix product over all their tokens together
 * (decode tokens of many chains, probe tokens, a prefill chunk), K/V stores and attention per
 * sequence over its own KV.  The total of tokens must be at most max_tokens (the caller
 * chunks prefills).  Each sequence's logits are bit-identical to what forward_run would give
 * it alone.  Returns 0 (every kv->len advanced), or as forward_run, with every kv->len
 * unchanged; CERTA_EINVAL also for a kv given twice or a batch over max_tokens.
 */
int forward_batch(struct forward *f, struct forward_seq *seqs, uint32_t n_seq,
    struct forward_stats *stats, char *err, size_t errlen);

/* A flat KV for this model with room for capacity positions (kv_flat_create). */
int forward_kv_create(const struct model *m, uint32_t capacity, struct kv **out);

#endif
