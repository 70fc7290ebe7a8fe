/* forward.c — prefill and decode through the backend table; no arithmetic of its own. */
#include "workers/llm/forward.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/error.h"

#define FORWARD_LOGIT_TILE 8     /* tokens whose logits are computed at once (all_logits) */

struct forward {
	const struct model *m;
	const struct model_hparams *hp;
	struct backend *be;
	uint32_t max_tokens;
	/* Backend buffers, [max_tokens][width]. */
	float *x, *xn, *q, *k, *v, *att, *tmp, *gate, *up, *router, *logits;
	float *router_host;          /* host copy of router logits [max_tokens][n_expert] */
	uint32_t *pos, *ids;         /* host: positions of the chunk, expert ids */
	uint32_t *tok;               /* host: token ids of a batch [max_tokens] */
	uint32_t *tseg;              /* host: segment of each token of a batch [max_tokens] */
	float *weights;              /* host: expert weights */
};

static int forward_fail(char *err, size_t errlen, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int
forward_fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
	va_list ap;

	if (errlen > 0) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return rc;
}

void
forward_destroy(struct forward *f)
{
	struct backend *be;

	if (!f)
		return;
	be = f->be;
	be->ops->release(be, f->x);
	be->ops->release(be, f->xn);
	be->ops->release(be, f->q);
	be->ops->release(be, f->k);
	be->ops->release(be, f->v);
	be->ops->release(be, f->att);
	be->ops->release(be, f->tmp);
	be->ops->release(be, f->gate);
	be->ops->release(be, f->up);
	be->ops->release(be, f->router);
	be->ops->release(be, f->logits);
	free(f->router_host);
	free(f->pos);
	free(f->tok);
	free(f->tseg);
	free(f->ids);
	free(f->weights);
	free(f);
}

int
forward_create(const struct model *m, struct backend *be, uint32_t max_tokens,
    struct forward **out)
{
	const struct model_hparams *hp = model_hparams(m);
	struct forward *f;
	size_t n = max_tokens, qd, kvd, ff;

	if (max_tokens == 0 || max_tokens > (1u << 20) || hp->head_dim > 1024)
		return -EINVAL;
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->m = m;
	f->hp = hp;
	f->be = be;
	f->max_tokens = max_tokens;
	qd = (size_t)hp->n_head * hp->head_dim;
	kvd = (size_t)hp->n_head_kv * hp->head_dim;
	ff = hp->n_ff > hp->n_ff_exp ? hp->n_ff : hp->n_ff_exp;
	f->x = be->ops->alloc(be, n * hp->n_embd);
	f->xn = be->ops->alloc(be, n * hp->n_embd);
	f->q = be->ops->alloc(be, n * qd);
	f->k = be->ops->alloc(be, n * kvd);
	f->v = be->ops->alloc(be, n * kvd);
	f->att = be->ops->alloc(be, n * qd);
	f->tmp = be->ops->alloc(be, n * hp->n_embd);
	f->gate = be->ops->alloc(be, n * ff);
	f->up = be->ops->alloc(be, n * ff);
	f->router = be->ops->alloc(be, n * (hp->n_expert ? hp->n_expert : 1));
	f->logits = be->ops->alloc(be, (size_t)FORWARD_LOGIT_TILE * hp->n_vocab);
	f->router_host = calloc(n * (hp->n_expert ? hp->n_expert : 1), sizeof(float));
	f->pos = calloc(n, sizeof(uint32_t));
	f->tok = calloc(n, sizeof(uint32_t));
	f->tseg = calloc(n, sizeof(uint32_t));
	f->ids = calloc(hp->n_expert ? hp->n_expert : 1, sizeof(uint32_t));
	f->weights = calloc(hp->n_expert ? hp->n_expert : 1, sizeof(float));
	if (!f->x || !f->xn || !f->q || !f->k || !f->v || !f->att || !f->tmp || !f->gate ||
	    !f->up || !f->router || !f->logits || !f->router_host || !f->pos || !f->tok || !f->tseg || !f->ids ||
	    !f->weights) {
		forward_destroy(f);
		return -ENOMEM;
	}
	*out = f;
	return 0;
}

int
forward_kv_create(const struct model *m, uint32_t capacity, struct kv **out)
{
	const struct model_hparams *hp = model_hparams(m);

	return kv_flat_create(hp->n_layer, hp->n_head_kv * hp->head_dim, capacity, out);
}

/* A run of tokens of one sequence inside a chunk: tokens [off, off + n) at f->pos[off..]. */
struct forward_seg {
	struct kv *kv;
	uint32_t off, n;
	struct backend_moe_sel sel;
	uint64_t expert_uses;        /* experts its tokens ran, summed over MoE layers */
};

/* Attention block of layer il for n tokens: x += Wo . attn(rope(norm(x) . Wq/k/v)).  The
 * projections run over all n tokens at once; K/V stores and attention per segment, each
 * over its own sequence's KV. */
static int
forward_attention(struct forward *f, const struct forward_seg *seg, uint32_t nseg, uint32_t il,
    uint32_t n)
{
	const struct model_hparams *hp = f->hp;
	const struct model_layer *l = model_layer(f->m, il);
	const struct backend_ops *o = f->be->ops;
	struct backend *be = f->be;
	uint32_t qd = hp->n_head * hp->head_dim, kvd = hp->n_head_kv * hp->head_dim;
	struct backend_rope rope = {
		.mode = hp->rope, .n_rot = hp->n_rot, .base = hp->rope_base,
		.freq_scale = hp->rope_freq_scale, .freqs = hp->rope_freqs,
	};
	struct backend_attn attn = {
		.n_head = hp->n_head, .n_head_kv = hp->n_head_kv, .head_dim = hp->head_dim,
		.layer = il, .scale = 1.0f / sqrtf((float)hp->head_dim),
	};
	uint32_t i;
	int rc;

	o->rmsnorm(be, f->xn, f->x, l->attn_norm, n, hp->n_embd, hp->norm_eps);
	o->matmul(be, &l->wq, f->xn, n, f->q);
	o->matmul(be, &l->wk, f->xn, n, f->k);
	o->matmul(be, &l->wv, f->xn, n, f->v);
	if (l->bq) {
		o->add_bias(be, f->q, l->bq, n, qd);
		o->add_bias(be, f->k, l->bk, n, kvd);
		o->add_bias(be, f->v, l->bv, n, kvd);
	}
	if (l->q_norm) {             /* qwen3: RMS norm of every head before rope */
		o->rmsnorm(be, f->q, f->q, l->q_norm, n * hp->n_head, hp->head_dim, hp->norm_eps);
		o->rmsnorm(be, f->k, f->k, l->k_norm, n * hp->n_head_kv, hp->head_dim,
		    hp->norm_eps);
	}
	o->rope(be, f->q, n, hp->n_head, hp->head_dim, f->pos, &rope);
	o->rope(be, f->k, n, hp->n_head_kv, hp->head_dim, f->pos, &rope);
	for (i = 0; i < nseg; i++) {
		const struct forward_seg *g = &seg[i];
		if ((rc = o->kv_store(be, g->kv, il, f->k + (size_t)g->off * kvd,
		    f->v + (size_t)g->off * kvd, g->n, f->pos + g->off)) < 0)
			return rc;
		o->attention(be, f->att + (size_t)g->off * qd, f->q + (size_t)g->off * qd, g->n,
		    f->pos + g->off, g->kv, &attn);
	}
	o->matmul(be, &l->wo, f->att, n, f->tmp);
	o->add(be, f->x, f->tmp, (size_t)n * hp->n_embd);
	return 0;
}

/* Dense SwiGLU feed-forward: x += Wd . (silu(Wg . norm(x)) * (Wu . norm(x))). */
static void
forward_ffn(struct forward *f, const struct model_layer *l, uint32_t n)
{
	const struct model_hparams *hp = f->hp;
	const struct backend_ops *o = f->be->ops;

	o->matmul(f->be, &l->ffn_gate, f->xn, n, f->gate);
	o->matmul(f->be, &l->ffn_up, f->xn, n, f->up);
	o->swiglu(f->be, f->gate, f->gate, f->up, (size_t)n * hp->n_ff);
	o->matmul(f->be, &l->ffn_down, f->gate, n, f->tmp);
	o->add(f->be, f->x, f->tmp, (size_t)n * hp->n_embd);
}

/* MoE feed-forward: route each token, run its chosen experts, add their weighted outputs. */
static void
forward_moe(struct forward *f, const struct model_layer *l, uint32_t n,
    struct forward_seg *seg, struct forward_stats *st)
{
	const struct model_hparams *hp = f->hp;
	const struct backend_ops *o = f->be->ops;
	struct backend *be = f->be;
	uint32_t t, j, used;

	o->matmul(be, &l->gate_inp, f->xn, n, f->router);
	o->read(be, f->router_host, f->router, (size_t)n * hp->n_expert);
	for (t = 0; t < n; t++) {
		const float *xt = f->xn + (size_t)t * hp->n_embd;
		used = o->moe_gate(be, f->router_host + (size_t)t * hp->n_expert, hp->n_expert,
		    &seg[f->tseg[t]].sel, f->ids, f->weights);
		st->expert_uses += used;
		seg[f->tseg[t]].expert_uses += used;
		for (j = 0; j < used; j++) {
			struct model_weight g = model_weight_mat(&l->gate_exps, f->ids[j]);
			struct model_weight u = model_weight_mat(&l->up_exps, f->ids[j]);
			struct model_weight d = model_weight_mat(&l->down_exps, f->ids[j]);
			o->matmul(be, &g, xt, 1, f->gate);
			o->matmul(be, &u, xt, 1, f->up);
			o->swiglu(be, f->gate, f->gate, f->up, hp->n_ff_exp);
			o->matmul(be, &d, f->gate, 1, f->tmp);
			o->axpy(be, f->x + (size_t)t * hp->n_embd, f->tmp, f->weights[j], hp->n_embd);
		}
	}
}

/*
 * The layers for a chunk of n <= max_tokens tokens (f->tok, f->pos, f->tseg filled) made of
 * nseg segments; leaves the final normalized hidden states in f->xn.  The KVs are reserved.
 */
static int
forward_core(struct forward *f, struct forward_seg *seg, uint32_t nseg, uint32_t n,
    struct forward_stats *st)
{
	const struct model_hparams *hp = f->hp;
	const struct backend_ops *o = f->be->ops;
	struct backend *be = f->be;
	uint32_t il;
	int rc;

	o->get_rows(be, model_token_embd(f->m), f->tok, n, f->x);
	for (il = 0; il < hp->n_layer; il++) {
		const struct model_layer *l = model_layer(f->m, il);
		if ((rc = forward_attention(f, seg, nseg, il, n)) < 0)
			return rc;
		o->rmsnorm(be, f->xn, f->x, l->ffn_norm, n, hp->n_embd, hp->norm_eps);
		if (hp->n_expert)
			forward_moe(f, l, n, seg, st);
		else
			forward_ffn(f, l, n);
	}
	o->rmsnorm(be, f->xn, f->x, model_output_norm(f->m), n, hp->n_embd, hp->norm_eps);
	st->tokens += n;
	return 0;
}

/* One chunk of n <= max_tokens tokens at positions kv->len... */
static int
forward_chunk(struct forward *f, struct kv *kv, const uint32_t *tokens, uint32_t n,
    const struct forward_opts *opts, const struct backend_moe_sel *sel, float *logits,
    struct forward_stats *st)
{
	const struct model_hparams *hp = f->hp;
	const struct backend_ops *o = f->be->ops;
	struct backend *be = f->be;
	struct forward_seg seg = { .kv = kv, .off = 0, .n = n, .sel = *sel };
	uint32_t t, t0, nt;
	int rc;

	if ((rc = kv->ops->reserve(kv, kv->len + n)) < 0)
		return rc;
	for (t = 0; t < n; t++) {
		f->pos[t] = kv->len + t;
		f->tok[t] = tokens[t];
		f->tseg[t] = 0;
	}
	if ((rc = forward_core(f, &seg, 1, n, st)) < 0)
		return rc;
	if (!opts->all_logits) {
		if (logits) {
			o->matmul(be, model_output(f->m), f->xn + (size_t)(n - 1) * hp->n_embd, 1,
			    f->logits);
			o->read(be, logits, f->logits, hp->n_vocab);
		}
	} else {
		for (t0 = 0; t0 < n; t0 += nt) {
			nt = n - t0 < FORWARD_LOGIT_TILE ? n - t0 : FORWARD_LOGIT_TILE;
			o->matmul(be, model_output(f->m), f->xn + (size_t)t0 * hp->n_embd, nt,
			    f->logits);
			o->read(be, logits + (size_t)t0 * hp->n_vocab, f->logits,
			    (size_t)nt * hp->n_vocab);
		}
	}
	kv->len += n;
	return 0;
}

/* Checks one sequence's tokens against the vocabulary, context and KV shape. */
static int
forward_check(struct forward *f, const struct kv *kv, const uint32_t *tokens, uint32_t n,
    float top_p, char *err, size_t errlen)
{
	const struct model_hparams *hp = f->hp;
	uint32_t i;

	if (n == 0)
		return forward_fail(err, errlen, CERTA_EINVAL, "no tokens to run");
	if (!(top_p >= 0 && top_p <= 1))
		return forward_fail(err, errlen, CERTA_EINVAL, "moe top_p %g outside [0, 1]",
		    (double)top_p);
	for (i = 0; i < n; i++)
		if (tokens[i] >= hp->n_vocab)
			return forward_fail(err, errlen, CERTA_EINVAL,
			    "token %u at index %u is outside the vocabulary (%u tokens)", tokens[i], i,
			    hp->n_vocab);
	if ((uint64_t)kv->len + n > hp->n_ctx_train)
		return forward_fail(err, errlen, CERTA_EINVAL,
		    "%u tokens after %u would pass the context length %u", n, kv->len,
		    hp->n_ctx_train);
	if (kv->n_layer != hp->n_layer || kv->row != hp->n_head_kv * hp->head_dim)
		return forward_fail(err, errlen, CERTA_EINVAL, "KV cache shape does not fit the "
		    "model");
	return 0;
}

/* A device backend's failure during the ops just issued (backend.h ops->error): 0, or its
 * code (-EIO: the step fails with INTERNAL) with the message in err. */
static int
forward_device_error(struct backend *be, char *err, size_t errlen)
{
	char msg[256] = "";
	int rc;

	if (be->ops->error == NULL || (rc = be->ops->error(be, msg, sizeof msg)) == 0)
		return 0;
	return forward_fail(err, errlen, rc, "device error: %s", msg);
}

int
forward_batch(struct forward *f, struct forward_seq *seqs, uint32_t n_seq,
    struct forward_stats *stats, char *err, size_t errlen)
{
	const struct model_hparams *hp = f->hp;
	const struct backend_ops *o = f->be->ops;
	struct backend *be = f->be;
	struct forward_seg *seg;
	struct forward_stats st = { 0 };
	uint32_t i, j, t, n = 0, nl, t0, nt;
	int rc, drc;

	if (n_seq == 0)
		return forward_fail(err, errlen, CERTA_EINVAL, "no sequences to run");
	for (i = 0; i < n_seq; i++) {
		if ((uint64_t)n + seqs[i].n > f->max_tokens)
			return forward_fail(err, errlen, CERTA_EINVAL, "batch of more than %u tokens",
			    f->max_tokens);
		if ((rc = forward_check(f, seqs[i].kv, seqs[i].tokens, seqs[i].n, seqs[i].moe_top_p,
		    err, errlen)) < 0)
			return rc;
		for (j = 0; j < i; j++)
			if (seqs[j].kv == seqs[i].kv)
				return forward_fail(err, errlen, CERTA_EINVAL, "sequence %u appears "
				    "twice in one batch", i);
		n += seqs[i].n;
	}
	seg = calloc(n_seq, sizeof(*seg));
	if (!seg)
		return -ENOMEM;
	for (i = 0, t = 0; i < n_seq; i++) {
		struct kv *kv = seqs[i].kv;
		if ((rc = kv->ops->reserve(kv, kv->len + seqs[i].n)) < 0) {
			forward_fail(err, errlen, rc, "forward at position %u of sequence %u: %s",
			    kv->len, i, rc == CERTA_ECAPACITY ? "KV cache full" : "KV error");
			goto out;
		}
		seg[i].kv = kv;
		seg[i].off = t;
		seg[i].n = seqs[i].n;
		seg[i].sel.top_k = hp->n_expert_used;
		seg[i].sel.top_p = seqs[i].moe_top_p;
		seg[i].sel.max_experts = seqs[i].moe_max_experts;
		seg[i].sel.renorm = hp->expert_norm;
		for (j = 0; j < seqs[i].n; j++, t++) {
			f->pos[t] = kv->len + j;
			f->tok[t] = seqs[i].tokens[j];
			f->tseg[t] = i;
		}
	}
	st.moe_layers = hp->n_expert ? hp->n_layer : 0;
	if ((rc = forward_core(f, seg, n_seq, n, &st)) < 0) {
		/* A device failure (kv_store's -EIO) says what failed, and is cleared. */
		if ((drc = forward_device_error(be, err, errlen)) < 0) {
			rc = drc;
			goto out;
		}
		forward_fail(err, errlen, rc, "batched forward: %s",
		    rc == CERTA_ECAPACITY ? "KV cache full" : "KV error");
		goto out;
	}
	/* Last-token logits of the sequences that want them, FORWARD_LOGIT_TILE rows at once. */
	for (i = 0; i < n_seq; i = j) {
		for (j = i, nl = 0; j < n_seq && nl < FORWARD_LOGIT_TILE; j++) {
			if (!seqs[j].logits)
				continue;
			o->copy(be, f->tmp + (size_t)nl * hp->n_embd,
			    f->xn + (size_t)(seg[j].off + seg[j].n - 1) * hp->n_embd, hp->n_embd);
			nl++;
		}
		if (nl == 0)
			continue;
		o->matmul(be, model_output(f->m), f->tmp, nl, f->logits);
		for (t0 = i, nt = 0; t0 < j; t0++)
			if (seqs[t0].logits)
				o->read(be, seqs[t0].logits, f->logits + (size_t)nt++ * hp->n_vocab,
				    hp->n_vocab);
	}
	if ((rc = forward_device_error(be, err, errlen)) < 0)
		goto out;
	for (i = 0; i < n_seq; i++) {
		seqs[i].kv->len += seqs[i].n;
		seqs[i].expert_uses = seg[i].expert_uses;
	}
	if (stats)
		*stats = st;
	rc = 0;
out:
	free(seg);
	return rc;
}

int
forward_run(struct forward *f, struct kv *kv, const uint32_t *tokens, uint32_t n,
    const struct forward_opts *opts, float *logits, struct forward_stats *stats, char *err,
    size_t errlen)
{
	static const struct forward_opts defaults = { 0 };
	const struct model_hparams *hp = f->hp;
	struct backend_moe_sel sel;
	struct forward_stats st = { 0 };
	uint32_t done, len0 = kv->len, c;
	int rc, drc;

	if (!opts)
		opts = &defaults;
	if ((rc = forward_check(f, kv, tokens, n, opts->moe_top_p, err, errlen)) < 0)
		return rc;
	sel.top_k = hp->n_expert_used;
	sel.top_p = opts->moe_top_p;
	sel.max_experts = opts->moe_max_experts;
	sel.renorm = hp->expert_norm;
	st.moe_layers = hp->n_expert ? hp->n_layer : 0;
	for (done = 0; done < n; done += c) {
		c = n - done < f->max_tokens ? n - done : f->max_tokens;
		/* Last-token logits: only the final chunk computes them. */
		rc = forward_chunk(f, kv, tokens + done, c, opts, &sel,
		    opts->all_logits ? logits + (size_t)done * hp->n_vocab :
		    done + c == n ? logits : NULL, &st);
		if (rc < 0) {
			kv->len = len0;
			if ((drc = forward_device_error(f->be, err, errlen)) < 0)
				return drc;
			return forward_fail(err, errlen, rc, "forward at position %u: %s",
			    kv->len + done, rc == CERTA_ECAPACITY ? "KV cache full" : "KV error");
		}
	}
	if ((rc = forward_device_error(f->be, err, errlen)) < 0) {
		kv->len = len0;
		return rc;
	}
	if (stats)
		*stats = st;
	return 0;
}
