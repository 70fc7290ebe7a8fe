/* model.c — architecture and weight views from GGUF metadata and tensors. */
#include "workers/llm/model.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/error.h"

/* What each architecture has: one row per `general.architecture` value. */
struct model_arch_desc {
	const char *name;
	enum model_arch arch;
	enum model_rope rope;
	bool qkv_bias, qk_norm, moe, expert_norm;
};

static const struct model_arch_desc model_archs[] = {
	{ "llama",    MODEL_LLAMA,    MODEL_ROPE_NORM, false, false, false, false },
	{ "qwen2",    MODEL_QWEN2,    MODEL_ROPE_NEOX, true,  false, false, false },
	{ "qwen3",    MODEL_QWEN3,    MODEL_ROPE_NEOX, false, true,  false, false },
	/* Qwen3-MoE is trained with norm_topk_prob = true; llama.cpp builds it with norm_w. */
	{ "qwen3moe", MODEL_QWEN3MOE, MODEL_ROPE_NEOX, false, true,  true,  true  },
};

#define MODEL_MAX_LAYERS 4096
#define MODEL_MAX_DIM (1u << 20)

struct model {
	const struct gguf *g;
	struct model_hparams hp;
	struct model_layer *layers;
	struct model_weight token_embd, output;
	const float *output_norm;
	char *name;
};

/* Formats a message into err; returns CERTA_EINVAL. */
static int model_fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int
model_fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (errlen > 0) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return CERTA_EINVAL;
}

bool
model_type_supported(uint32_t type)
{
	switch (type) {
	case GGUF_T_F32: case GGUF_T_F16: case GGUF_T_BF16: case GGUF_T_Q8_0:
	case GGUF_T_Q4_K: case GGUF_T_Q6_K:
		return true;
	default:
		return false;
	}
}

/* Reads "<arch>.<key>" as u32 in [min, MODEL_MAX_DIM]; required unless def is non-NULL. */
static int
model_key_u32(const struct gguf *g, const char *arch, const char *key, const uint32_t *def,
    uint32_t min, uint32_t *out, char *err, size_t errlen)
{
	char full[128];
	int rc;

	snprintf(full, sizeof(full), "%s.%s", arch, key);
	rc = gguf_get_u32(g, full, out);
	if (rc == -ENOENT && def) {
		*out = *def;
		return 0;
	}
	if (rc == -ENOENT)
		return model_fail(err, errlen, "missing key '%s'", full);
	if (rc < 0 || *out < min || *out > MODEL_MAX_DIM)
		return model_fail(err, errlen, "key '%s': not an integer in [%u, %u]", full, min,
		    MODEL_MAX_DIM);
	return 0;
}

/* Reads "<arch>.<key>" as a positive finite float, default def when absent. */
static int
model_key_f32(const struct gguf *g, const char *arch, const char *key, double def, float *out,
    char *err, size_t errlen)
{
	char full[128];
	double v;
	int rc;

	snprintf(full, sizeof(full), "%s.%s", arch, key);
	rc = gguf_get_f64(g, full, &v);
	if (rc == -ENOENT)
		v = def;
	else if (rc < 0 || !(v > 0) || v > 1e30)
		return model_fail(err, errlen, "key '%s': not a positive number", full);
	*out = (float)v;
	return 0;
}

/* Looks up a tensor and checks its dims (0 in want = any, for n_mat 1 the third dim is 1). */
static int
model_tensor(const struct gguf *g, const char *name, bool required, uint32_t ndims,
    const uint64_t want[3], const struct gguf_tensor **out, char *err, size_t errlen)
{
	const struct gguf_tensor *t = gguf_find_tensor(g, name);
	uint32_t i;

	*out = NULL;
	if (!t) {
		if (!required)
			return 0;
		return model_fail(err, errlen, "missing tensor '%s'", name);
	}
	for (i = 0; i < GGUF_MAX_DIMS; i++) {
		uint64_t w = i < ndims ? want[i] : 1;
		if (t->ne[i] != w) {
			if (ndims == 1)
				return model_fail(err, errlen,
				    "tensor '%s': shape [%llu, %llu, %llu], expected [%llu]", name,
				    (unsigned long long)t->ne[0], (unsigned long long)t->ne[1],
				    (unsigned long long)t->ne[2], (unsigned long long)want[0]);
			if (ndims == 2)
				return model_fail(err, errlen,
				    "tensor '%s': shape [%llu, %llu, %llu], expected [%llu, %llu]",
				    name, (unsigned long long)t->ne[0], (unsigned long long)t->ne[1],
				    (unsigned long long)t->ne[2], (unsigned long long)want[0],
				    (unsigned long long)want[1]);
			return model_fail(err, errlen,
			    "tensor '%s': shape [%llu, %llu, %llu], expected [%llu, %llu, %llu]", name,
			    (unsigned long long)t->ne[0], (unsigned long long)t->ne[1],
			    (unsigned long long)t->ne[2], (unsigned long long)want[0],
			    (unsigned long long)want[1], (unsigned long long)want[2]);
		}
	}
	*out = t;
	return 0;
}

/* A vector (norm weight, bias): F32 of length n. */
static int
model_vec(const struct gguf *g, const char *name, bool required, uint32_t n,
    const float **out, char *err, size_t errlen)
{
	const struct gguf_tensor *t;
	uint64_t want[3] = { n, 1, 1 };
	int rc;

	*out = NULL;
	rc = model_tensor(g, name, required, 1, want, &t, err, errlen);
	if (rc < 0 || !t)
		return rc;
	if (t->type != GGUF_T_F32)
		return model_fail(err, errlen, "tensor '%s': type %s, expected f32", name,
		    gguf_ttype_name(t->type));
	if ((uintptr_t)t->data % sizeof(float) != 0)
		return model_fail(err, errlen, "tensor '%s': data not 4-byte aligned", name);
	*out = t->data;
	return 0;
}

/* A matrix (or n_mat matrices) of rows x cols in a supported type. */
static int
model_mat(const struct gguf *g, const char *name, bool required, uint32_t cols, uint32_t rows,
    uint32_t n_mat, struct model_weight *out, char *err, size_t errlen)
{
	const struct gguf_tensor *t;
	uint64_t want[3] = { cols, rows, n_mat };
	int rc;

	memset(out, 0, sizeof(*out));
	rc = model_tensor(g, name, required, n_mat > 1 ? 3 : 2, want, &t, err, errlen);
	if (rc < 0 || !t)
		return rc;
	if (!model_type_supported(t->type))
		return model_fail(err, errlen,
		    "tensor '%s': type %s not supported (f32, f16, bf16, q8_0, q4_k, q6_k)", name,
		    gguf_ttype_name(t->type) ? gguf_ttype_name(t->type) : "?");
	if (t->type == GGUF_T_F32 && (uintptr_t)t->data % sizeof(float) != 0)
		return model_fail(err, errlen, "tensor '%s': data not 4-byte aligned", name);
	out->name = t->name;
	out->type = t->type;
	out->cols = cols;
	out->rows = rows;
	out->n_mat = n_mat;
	/* gguf checked that cols is a whole number of blocks. */
	out->row_bytes = (size_t)cols / gguf_ttype_block(t->type) * gguf_ttype_size(t->type);
	out->mat_bytes = out->row_bytes * rows;
	out->data = t->data;
	return 0;
}

/* Reads and checks the hyperparameters. */
static int
model_read_hparams(const struct gguf *g, const struct model_arch_desc *d,
    struct model_hparams *hp, char *err, size_t errlen)
{
	const char *a = d->name, *s;
	size_t slen;
	uint32_t def;
	uint64_t nvocab;
	char key[128];
	double factor;
	int rc;

	hp->arch = d->arch;
	hp->arch_name = d->name;
	hp->rope = d->rope;
	hp->expert_norm = d->expert_norm;
	if ((rc = model_key_u32(g, a, "block_count", NULL, 1, &hp->n_layer, err, errlen)) < 0 ||
	    (rc = model_key_u32(g, a, "embedding_length", NULL, 1, &hp->n_embd, err, errlen)) < 0 ||
	    (rc = model_key_u32(g, a, "attention.head_count", NULL, 1, &hp->n_head, err,
		errlen)) < 0)
		return rc;
	if (hp->n_layer > MODEL_MAX_LAYERS)
		return model_fail(err, errlen, "key '%s.block_count': %u layers is too many", a,
		    hp->n_layer);
	def = hp->n_head;
	if ((rc = model_key_u32(g, a, "attention.head_count_kv", &def, 1, &hp->n_head_kv, err,
	    errlen)) < 0)
		return rc;
	if (hp->n_head % hp->n_head_kv != 0)
		return model_fail(err, errlen, "%u heads is not a multiple of %u KV heads",
		    hp->n_head, hp->n_head_kv);
	def = hp->n_embd / hp->n_head;
	if ((rc = model_key_u32(g, a, "attention.key_length", &def, 2, &hp->head_dim, err,
	    errlen)) < 0)
		return rc;
	if ((rc = model_key_u32(g, a, "attention.value_length", &hp->head_dim, 1, &def, err,
	    errlen)) < 0)
		return rc;
	if (def != hp->head_dim)
		return model_fail(err, errlen, "value_length %u differs from key_length %u: not "
		    "supported", def, hp->head_dim);
	if ((rc = model_key_u32(g, a, "rope.dimension_count", &hp->head_dim, 2, &hp->n_rot, err,
	    errlen)) < 0)
		return rc;
	if (hp->n_rot > hp->head_dim || hp->n_rot % 2)
		return model_fail(err, errlen, "rope.dimension_count %u: must be even and at most "
		    "the head dimension %u", hp->n_rot, hp->head_dim);
	def = 4096;
	if ((rc = model_key_u32(g, a, "context_length", &def, 1, &hp->n_ctx_train, err,
	    errlen)) < 0)
		return rc;
	if ((rc = model_key_f32(g, a, "rope.freq_base", 10000.0, &hp->rope_base, err,
	    errlen)) < 0 ||
	    (rc = model_key_f32(g, a, "attention.layer_norm_rms_epsilon", 1e-6, &hp->norm_eps,
		err, errlen)) < 0)
		return rc;

	hp->rope_freq_scale = 1.0f;
	snprintf(key, sizeof(key), "%s.rope.scaling.type", a);
	if (gguf_get_str(g, key, &s, &slen) == 0 &&
	    !(slen == 4 && memcmp(s, "none", 4) == 0)) {
		if (slen == 6 && memcmp(s, "linear", 6) == 0) {
			snprintf(key, sizeof(key), "%s.rope.scaling.factor", a);
			if (gguf_get_f64(g, key, &factor) < 0 || !(factor >= 1.0) || factor > 1e6)
				return model_fail(err, errlen, "rope scaling 'linear' needs '%s' >= 1",
				    key);
			hp->rope_freq_scale = (float)(1.0 / factor);
		} else if (!(slen == 6 && memcmp(s, "llama3", 6) == 0)) {
			/* llama3 scaling lives in rope_freqs.weight, read below. */
			return model_fail(err, errlen, "rope scaling type '%.*s' not supported "
			    "(none, linear, llama3 via rope_freqs.weight)", (int)(slen > 32 ? 32 : slen),
			    s);
		}
	}

	if (d->moe) {
		if ((rc = model_key_u32(g, a, "expert_count", NULL, 1, &hp->n_expert, err,
		    errlen)) < 0 ||
		    (rc = model_key_u32(g, a, "expert_used_count", NULL, 1, &hp->n_expert_used, err,
			errlen)) < 0 ||
		    (rc = model_key_u32(g, a, "expert_feed_forward_length", NULL, 1, &hp->n_ff_exp,
			err, errlen)) < 0)
			return rc;
		if (hp->n_expert_used > hp->n_expert || hp->n_expert > 1024)
			return model_fail(err, errlen, "expert_used_count %u, expert_count %u: "
			    "need used <= count <= 1024", hp->n_expert_used, hp->n_expert);
		def = 0;
		if ((rc = model_key_u32(g, a, "feed_forward_length", &def, 0, &hp->n_ff, err,
		    errlen)) < 0)
			return rc;
	} else if ((rc = model_key_u32(g, a, "feed_forward_length", NULL, 1, &hp->n_ff, err,
	    errlen)) < 0) {
		return rc;
	}

	if (gguf_arr_len(g, "tokenizer.ggml.tokens", NULL, &nvocab) < 0) {
		const struct gguf_tensor *t = gguf_find_tensor(g, "token_embd.weight");
		if (!t)
			return model_fail(err, errlen, "missing tensor 'token_embd.weight'");
		nvocab = t->ne[1];
	}
	if (nvocab == 0 || nvocab > (1u << 24))
		return model_fail(err, errlen, "vocabulary of %llu tokens is out of range",
		    (unsigned long long)nvocab);
	hp->n_vocab = (uint32_t)nvocab;
	return 0;
}

/* Binds and checks one block's tensors. */
static int
model_bind_layer(const struct gguf *g, const struct model_arch_desc *d,
    const struct model_hparams *hp, uint32_t il, struct model_layer *l, char *err,
    size_t errlen)
{
	uint32_t q = hp->n_head * hp->head_dim, kv = hp->n_head_kv * hp->head_dim;
	char n[96];
	int rc;

#define NAME(s) (snprintf(n, sizeof(n), "blk.%u." s, il), n)
	if ((rc = model_vec(g, NAME("attn_norm.weight"), true, hp->n_embd, &l->attn_norm, err,
	    errlen)) < 0 ||
	    (rc = model_vec(g, NAME("ffn_norm.weight"), true, hp->n_embd, &l->ffn_norm, err,
		errlen)) < 0 ||
	    (rc = model_mat(g, NAME("attn_q.weight"), true, hp->n_embd, q, 1, &l->wq, err,
		errlen)) < 0 ||
	    (rc = model_mat(g, NAME("attn_k.weight"), true, hp->n_embd, kv, 1, &l->wk, err,
		errlen)) < 0 ||
	    (rc = model_mat(g, NAME("attn_v.weight"), true, hp->n_embd, kv, 1, &l->wv, err,
		errlen)) < 0 ||
	    (rc = model_mat(g, NAME("attn_output.weight"), true, q, hp->n_embd, 1, &l->wo, err,
		errlen)) < 0)
		return rc;
	/* Biases: required for qwen2, honoured when present elsewhere (llama.cpp does too). */
	if ((rc = model_vec(g, NAME("attn_q.bias"), d->qkv_bias, q, &l->bq, err, errlen)) < 0 ||
	    (rc = model_vec(g, NAME("attn_k.bias"), d->qkv_bias, kv, &l->bk, err, errlen)) < 0 ||
	    (rc = model_vec(g, NAME("attn_v.bias"), d->qkv_bias, kv, &l->bv, err, errlen)) < 0)
		return rc;
	if (d->qk_norm &&
	    ((rc = model_vec(g, NAME("attn_q_norm.weight"), true, hp->head_dim, &l->q_norm, err,
		errlen)) < 0 ||
	     (rc = model_vec(g, NAME("attn_k_norm.weight"), true, hp->head_dim, &l->k_norm, err,
		errlen)) < 0))
		return rc;
	if (d->moe) {
		if ((rc = model_mat(g, NAME("ffn_gate_inp.weight"), true, hp->n_embd, hp->n_expert,
		    1, &l->gate_inp, err, errlen)) < 0 ||
		    (rc = model_mat(g, NAME("ffn_gate_exps.weight"), true, hp->n_embd, hp->n_ff_exp,
			hp->n_expert, &l->gate_exps, err, errlen)) < 0 ||
		    (rc = model_mat(g, NAME("ffn_up_exps.weight"), true, hp->n_embd, hp->n_ff_exp,
			hp->n_expert, &l->up_exps, err, errlen)) < 0 ||
		    (rc = model_mat(g, NAME("ffn_down_exps.weight"), true, hp->n_ff_exp, hp->n_embd,
			hp->n_expert, &l->down_exps, err, errlen)) < 0)
			return rc;
		/* A single-expert tensor is written with two dims; model_tensor saw ne[2] = 1. */
		return 0;
	}
	if ((rc = model_mat(g, NAME("ffn_gate.weight"), true, hp->n_embd, hp->n_ff, 1,
	    &l->ffn_gate, err, errlen)) < 0 ||
	    (rc = model_mat(g, NAME("ffn_up.weight"), true, hp->n_embd, hp->n_ff, 1, &l->ffn_up,
		err, errlen)) < 0 ||
	    (rc = model_mat(g, NAME("ffn_down.weight"), true, hp->n_ff, hp->n_embd, 1,
		&l->ffn_down, err, errlen)) < 0)
		return rc;
#undef NAME
	return 0;
}

int
model_open(const struct gguf *g, struct model **out, char *err, size_t errlen)
{
	const struct model_arch_desc *d = NULL;
	const char *s;
	size_t slen, i;
	struct model *m;
	uint32_t il;
	int rc;

	if (gguf_get_str(g, "general.architecture", &s, &slen) < 0)
		return model_fail(err, errlen, "missing string key 'general.architecture'");
	for (i = 0; i < sizeof(model_archs) / sizeof(model_archs[0]); i++)
		if (strlen(model_archs[i].name) == slen && memcmp(model_archs[i].name, s, slen) == 0)
			d = &model_archs[i];
	if (!d)
		return model_fail(err, errlen, "unknown architecture '%.*s' (supported: llama, "
		    "qwen2, qwen3, qwen3moe)", (int)(slen > 64 ? 64 : slen), s);

	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->g = g;
	if ((rc = model_read_hparams(g, d, &m->hp, err, errlen)) < 0)
		goto fail_model;
	m->layers = calloc(m->hp.n_layer, sizeof(*m->layers));
	if (!m->layers) {
		rc = -ENOMEM;
		goto fail_model;
	}
	if ((rc = model_mat(g, "token_embd.weight", true, m->hp.n_embd, m->hp.n_vocab, 1,
	    &m->token_embd, err, errlen)) < 0 ||
	    (rc = model_vec(g, "output_norm.weight", true, m->hp.n_embd, &m->output_norm, err,
		errlen)) < 0 ||
	    (rc = model_mat(g, "output.weight", false, m->hp.n_embd, m->hp.n_vocab, 1,
		&m->output, err, errlen)) < 0)
		goto fail_layers;
	if (!m->output.data)
		m->output = m->token_embd;
	if ((rc = model_vec(g, "rope_freqs.weight", false, m->hp.n_rot / 2, &m->hp.rope_freqs,
	    err, errlen)) < 0)
		goto fail_layers;
	for (il = 0; il < m->hp.n_layer; il++)
		if ((rc = model_bind_layer(g, d, &m->hp, il, &m->layers[il], err, errlen)) < 0)
			goto fail_layers;
	if (gguf_get_str(g, "general.name", &s, &slen) < 0) {
		s = "";
		slen = 0;
	}
	m->name = strndup(s, slen);
	if (!m->name) {
		rc = -ENOMEM;
		goto fail_layers;
	}
	*out = m;
	return 0;

fail_layers:
	free(m->layers);
fail_model:
	free(m);
	return rc;
}

void
model_close(struct model *m)
{
	if (!m)
		return;
	free(m->layers);
	free(m->name);
	free(m);
}

const struct model_hparams *
model_hparams(const struct model *m)
{
	return &m->hp;
}

const struct model_layer *
model_layer(const struct model *m, uint32_t i)
{
	return &m->layers[i];
}

const struct model_weight *
model_token_embd(const struct model *m)
{
	return &m->token_embd;
}

const float *
model_output_norm(const struct model *m)
{
	return m->output_norm;
}

const struct model_weight *
model_output(const struct model *m)
{
	return &m->output;
}

const char *
model_name(const struct model *m)
{
	return m->name;
}

struct model_weight
model_weight_mat(const struct model_weight *w, uint32_t e)
{
	struct model_weight v = *w;

	v.n_mat = 1;
	v.data = (const uint8_t *)w->data + (size_t)e * w->mat_bytes;
	return v;
}

size_t
model_kv_bytes_per_token(const struct model *m)
{
	return (size_t)2 * m->hp.n_layer * m->hp.n_head_kv * m->hp.head_dim * sizeof(float);
}
