/*
 * test_forward.c — the model loader and forward pass against an independent NumPy reference.
 *
 * At setup, scripts/llm/tiny_models.py writes tiny random GGUF models (llama, qwen2, qwen3,
 * qwen3moe; F32, F16, BF16, Q8_0) and the reference logits of a prefill of 7 tokens followed by
 * 5 decode steps into a temporary directory.  Skips (with a message) when python3-numpy is
 * missing.  Run from the source tree's root (make check does).
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "lib/error.h"
#include "workers/llm/backend.h"
#include "workers/llm/forward.h"
#include "workers/llm/gguf.h"
#include "workers/llm/model.h"

#define N_PREFILL 7
#define MAX_TOK 16

static char dir[256];
static bool have_models;

/* One line of cases.txt. */
struct fcase {
	char name[64], model[64], logits[64], ref[64];
	double top_p, experts;
	uint32_t tokens[MAX_TOK];
	uint32_t n;
};

/* Runs the generator with python3, then Debian's interpreter (a pyenv python3 may lack numpy). */
static int
gen_setup(void **state)
{
	static const char *const pythons[] = { "python3", "/usr/bin/python3" };
	const char *tmp = getenv("TMPDIR");
	char cmd[1024];
	size_t i;
	int rc = -1;

	snprintf(dir, sizeof(dir), "%s/certa-fwd-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	assert_non_null(mkdtemp(dir));
	if (access("scripts/llm/tiny_models.py", R_OK) != 0)
		fail_msg("scripts/llm/tiny_models.py not found: run from the source tree's root");
	for (i = 0; i < sizeof(pythons) / sizeof(pythons[0]); i++) {
		snprintf(cmd, sizeof(cmd), "%s scripts/llm/tiny_models.py --out %s 2>/dev/null",
		    pythons[i], dir);
		rc = system(cmd);
		if (rc != -1 && WIFEXITED(rc) && WEXITSTATUS(rc) == 0)
			break;
	}
	if (rc == -1 || !WIFEXITED(rc) || WEXITSTATUS(rc) != 0) {
		if (rc != -1 && WIFEXITED(rc) && WEXITSTATUS(rc) == 77) {
			fprintf(stderr, "test_forward: python3-numpy missing: skipping (install it "
			    "with scripts/deps.sh)\n");
			return 0;
		}
		fail_msg("tiny_models.py failed (status %d)", rc);
	}
	have_models = true;
	return 0;
}

static int
gen_teardown(void **state)
{
	char cmd[512];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "test_forward: could not remove %s\n", dir);
	return 0;
}

#define NEED_MODELS() do { if (!have_models) skip(); } while (0)

static size_t
read_cases(struct fcase *out, size_t max)
{
	char path[512], line[1024], toks[256];
	size_t n = 0;
	FILE *f;

	snprintf(path, sizeof(path), "%s/cases.txt", dir);
	f = fopen(path, "r");
	assert_non_null(f);
	while (n < max && fgets(line, sizeof(line), f)) {
		struct fcase *c = &out[n];
		char *p, *save = NULL;
		assert_int_equal(sscanf(line, "%63s %63s %lf %lf %255s %63s %63s", c->name, c->model,
		    &c->top_p, &c->experts, toks, c->logits, c->ref), 7);
		c->n = 0;
		for (p = strtok_r(toks, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
			assert_true(c->n < MAX_TOK);
			c->tokens[c->n++] = (uint32_t)strtoul(p, NULL, 10);
		}
		n++;
	}
	fclose(f);
	return n;
}

static float *
read_f32(const char *name, size_t n)
{
	char path[512];
	float *v = malloc(n * sizeof(float));
	FILE *f;

	assert_non_null(v);
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "rb");
	assert_non_null(f);
	assert_int_equal(fread(v, sizeof(float), n, f), n);
	fclose(f);
	return v;
}

/* A loaded model with a backend and a forward. */
struct rig {
	struct gguf *g;
	struct model *m;
	struct backend *be;
	struct forward *fw;
	const struct model_hparams *hp;
};

static int
rig_open(struct rig *r, const char *file, uint32_t threads, uint32_t max_tokens, char *err,
    size_t errlen)
{
	char path[512];
	int rc;

	memset(r, 0, sizeof(*r));
	snprintf(path, sizeof(path), "%s/%s", dir, file);
	if ((rc = gguf_open(path, &r->g, err, errlen)) < 0)
		return rc;
	if ((rc = model_open(r->g, &r->m, err, errlen)) < 0) {
		gguf_close(r->g);
		return rc;
	}
	r->hp = model_hparams(r->m);
	assert_int_equal(backend_cpu_create(threads, &r->be), 0);
	assert_int_equal(forward_create(r->m, r->be, max_tokens, &r->fw), 0);
	return 0;
}

static void
rig_close(struct rig *r)
{
	forward_destroy(r->fw);
	backend_destroy(r->be);
	model_close(r->m);
	gguf_close(r->g);
}

/* max |a - b| / max |b| over n values. */
static double
rel_err(const float *a, const float *b, size_t n)
{
	double num = 0, den = 0;
	size_t i;

	for (i = 0; i < n; i++) {
		if (fabs((double)a[i] - b[i]) > num)
			num = fabs((double)a[i] - b[i]);
		if (fabs(b[i]) > den)
			den = fabs(b[i]);
	}
	return den > 0 ? num / den : num;
}

/* Tolerances against the reference on the same stored weights, and against the F32 one. */
static void
tolerances(const char *name, double *same, double *vs_f32)
{
	*same = 1e-4;
	*vs_f32 = 1e-4;
	if (strstr(name, "-f16"))
		*vs_f32 = 2e-2;
	else if (strstr(name, "-bf16"))
		*vs_f32 = 1.5e-1;
	else if (strstr(name, "-q8_0"))
		*vs_f32 = 1e-1;
}

/*
 * Every case: prefill 7 tokens (logits of all 7 positions), then 5 single-token decodes;
 * each row within tolerance of the reference; experts per token as the reference routed.
 */
static void
test_reference_logits(void **state)
{
	static struct fcase cases[64];
	char err[256];
	size_t nc, i;

	NEED_MODELS();
	nc = read_cases(cases, 64);
	assert_true(nc >= 16);
	for (i = 0; i < nc; i++) {
		struct fcase *c = &cases[i];
		struct forward_opts o = { .moe_top_p = (float)c->top_p, .all_logits = true };
		struct forward_stats st, sum = { 0 };
		struct rig r;
		struct kv *kv;
		float *want, *ref, *got;
		double e_same = 0, e_f32 = 0, tol_same, tol_f32, e;
		size_t V;
		uint32_t t;

		assert_int_equal(rig_open(&r, c->model, 2, MAX_TOK, err, sizeof(err)), 0);
		V = r.hp->n_vocab;
		want = read_f32(c->logits, c->n * V);
		ref = read_f32(c->ref, c->n * V);
		got = calloc(c->n * V, sizeof(float));
		assert_non_null(got);
		assert_int_equal(forward_kv_create(r.m, 64, &kv), 0);
		assert_int_equal(forward_run(r.fw, kv, c->tokens, N_PREFILL, &o, got, &st, err,
		    sizeof(err)), 0);
		sum = st;
		o.all_logits = false;
		for (t = N_PREFILL; t < c->n; t++) {
			assert_int_equal(forward_run(r.fw, kv, &c->tokens[t], 1, &o, got + t * V, &st,
			    err, sizeof(err)), 0);
			sum.tokens += st.tokens;
			sum.expert_uses += st.expert_uses;
		}
		assert_int_equal(kv->len, c->n);
		assert_int_equal(sum.tokens, c->n);
		for (t = 0; t < c->n; t++) {
			e = rel_err(got + t * V, want + t * V, V);
			e_same = e > e_same ? e : e_same;
			e = rel_err(got + t * V, ref + t * V, V);
			e_f32 = e > e_f32 ? e : e_f32;
		}
		tolerances(c->name, &tol_same, &tol_f32);
		printf("  %-22s rel err %.2e (same weights)  %.2e (vs f32 ref)", c->name, e_same,
		    e_f32);
		if (c->experts >= 0) {
			double mean = (double)sum.expert_uses / (sum.tokens * sum.moe_layers);
			printf("  experts/token %.3f", mean);
			assert_true(fabs(mean - c->experts) < 1e-9);
		}
		printf("\n");
		/* Quantized router weights may choose other experts than the F32 ones: the
		 * distance to the F32 reference is bounded only where routing is not a choice. */
		if (c->experts >= 0 && c->top_p != 1.0)
			e_f32 = 0;
		if (e_same > tol_same || e_f32 > tol_f32)
			fail_msg("%s: error %.3e / %.3e over tolerance %.0e / %.0e", c->name, e_same,
			    e_f32, tol_same, tol_f32);
		kv_destroy(kv);
		free(want);
		free(ref);
		free(got);
		rig_close(&r);
	}
}

/* Logits of all 12 tokens, run as one prefill, in chunks of 3, and one token at a time. */
static void
run_modes(const char *model, uint32_t threads, float *all, float *chunked, float *single,
    size_t *V)
{
	static const uint32_t toks[12] = { 3, 9, 27, 81, 243, 200, 100, 50, 25, 12, 6, 299 };
	struct forward_opts o = { .all_logits = true };
	struct rig r, rc3;
	struct kv *kv;
	char err[256];
	uint32_t t;

	assert_int_equal(rig_open(&r, model, threads, MAX_TOK, err, sizeof(err)), 0);
	assert_int_equal(rig_open(&rc3, model, threads, 3, err, sizeof(err)), 0);
	*V = r.hp->n_vocab;
	assert_int_equal(forward_kv_create(r.m, 64, &kv), 0);
	assert_int_equal(forward_run(r.fw, kv, toks, 12, &o, all, NULL, err, sizeof(err)), 0);
	kv_destroy(kv);
	assert_int_equal(forward_kv_create(r.m, 64, &kv), 0);
	assert_int_equal(forward_run(rc3.fw, kv, toks, 12, &o, chunked, NULL, err, sizeof(err)),
	    0);
	kv_destroy(kv);
	assert_int_equal(forward_kv_create(r.m, 64, &kv), 0);
	for (t = 0; t < 12; t++)
		assert_int_equal(forward_run(r.fw, kv, &toks[t], 1, &o, single + t * *V, NULL, err,
		    sizeof(err)), 0);
	kv_destroy(kv);
	rig_close(&rc3);
	rig_close(&r);
}

/* Largest |a - b| over n floats. */
static float
max_diff(const float *a, const float *b, size_t n)
{
	float m = 0;
	size_t i;

	for (i = 0; i < n; i++)
		if (fabsf(a[i] - b[i]) > m)
			m = fabsf(a[i] - b[i]);
	return m;
}

/*
 * The paged cache under the forward pass: a chain on blocks of 4 gives the flat cache's
 * logits; a probe on a fork (5 other tokens) leaves the chain's next logits unchanged; a
 * second chain forked from the first's prefix (sc sharing) continues exactly as if it had
 * prefilled the prefix itself; every block returns to the pool.
 */
static void
test_paged_fork(void **state)
{
	static const char *const models[] = { "llama-q8_0.gguf", "qwen3-f32.gguf",
	    "qwen3moe-f16.gguf" };
	static const uint32_t toks[12] = { 3, 9, 27, 81, 243, 200, 100, 50, 25, 12, 6, 299 };
	static const uint32_t probe[5] = { 1, 2, 4, 8, 16 };
	struct forward_opts o = { .all_logits = true };
	struct kv_pool *pool;
	struct kv *flat, *chain, *fork, *sc;
	float *ref, *got;
	char err[256];
	struct rig r;
	size_t i, V;

	(void)state;
	NEED_MODELS();
	for (i = 0; i < sizeof(models) / sizeof(models[0]); i++) {
		assert_int_equal(rig_open(&r, models[i], 1, MAX_TOK, err, sizeof(err)), 0);
		V = r.hp->n_vocab;
		ref = malloc(12 * V * sizeof(float));
		got = malloc(12 * V * sizeof(float));
		assert_non_null(ref);
		assert_non_null(got);
		assert_int_equal(forward_kv_create(r.m, 64, &flat), 0);
		assert_int_equal(forward_run(r.fw, flat, toks, 12, &o, ref, NULL, err, sizeof(err)),
		    0);
		kv_destroy(flat);

		assert_int_equal(kv_pool_create(r.hp->n_layer, r.hp->n_head_kv * r.hp->head_dim, 4,
		    16, &pool), 0);
		assert_int_equal(kv_paged_create(pool, 64, &chain), 0);
		assert_int_equal(forward_run(r.fw, chain, toks, 7, &o, got, NULL, err, sizeof(err)),
		    0);
		assert_true(max_diff(got, ref, 7 * V) == 0);
		/* Probe on a fork: 5 tokens the chain never sees. */
		assert_int_equal(kv_fork(chain, chain->len, &fork), 0);
		assert_int_equal(forward_run(r.fw, fork, probe, 5, &o, got, NULL, err, sizeof(err)),
		    0);
		kv_destroy(fork);
		assert_int_equal(forward_run(r.fw, chain, toks + 7, 5, &o, got, NULL, err,
		    sizeof(err)), 0);
		assert_true(max_diff(got, ref + 7 * V, 5 * V) == 0);
		/* sc: a chain that shares the first 6 positions and continues from there. */
		assert_int_equal(kv_fork(chain, 6, &sc), 0);
		assert_int_equal(forward_run(r.fw, sc, toks + 6, 6, &o, got, NULL, err, sizeof(err)),
		    0);
		assert_true(max_diff(got, ref + 6 * V, 6 * V) == 0);
		kv_destroy(sc);
		kv_destroy(chain);
		assert_int_equal(kv_pool_free_blocks(pool), 16);
		kv_pool_free(pool);
		free(ref);
		free(got);
		rig_close(&r);
	}
}

/*
 * The schedule of test_forward_batch: three iterations over four sequences of a paged pool —
 * A (7-token prefill, then decodes), B (3-token prefill at other positions, then decodes), F
 * (A's first 6 positions forked, sc-style, then 2 tokens and a decode) and P (a probe fork of
 * A after its prefill: 5 tokens).  Every iteration's sequences either run one at a time
 * (forward_run) or as one forward_batch; logits[seq][iteration] are kept, and so are the
 * experts each sequence ran (uses[seq][iteration]: forward_run's stats, forward_batch's
 * per-sequence expert_uses, whose sum must be the batch's stats).
 */
#define BT_SEQS 4
#define BT_ITERS 3

struct bt_run {
	uint32_t seq, n;
	const uint32_t *toks;
};

static void
bt_schedule(struct rig *r, bool batched, float *logits /* [BT_SEQS][BT_ITERS][V] */,
    uint64_t *uses /* [BT_SEQS][BT_ITERS] */)
{
	static const uint32_t a[9] = { 3, 9, 27, 81, 243, 200, 100, 50, 25 };
	static const uint32_t b[5] = { 11, 22, 33, 44, 55 };
	static const uint32_t f[3] = { 7, 70, 170 };
	static const uint32_t p[5] = { 1, 2, 4, 8, 16 };
	static const struct bt_run iters[BT_ITERS][BT_SEQS] = {
		{ { 0, 7, a }, { 1, 3, b } },
		{ { 0, 1, a + 7 }, { 1, 1, b + 3 }, { 2, 2, f }, { 3, 5, p } },
		{ { 2, 1, f + 2 }, { 0, 1, a + 8 }, { 1, 1, b + 4 } },
	};
	static const float top_p[BT_SEQS] = { 0, 0.5f, 0.9f, 0 };
	struct forward_opts o = { 0 };
	struct forward_stats st;
	struct forward_seq fs[BT_SEQS];
	uint64_t sum;
	struct kv_pool *pool;
	struct kv *kv[BT_SEQS] = { 0 };
	size_t V = r->hp->n_vocab;
	uint32_t it, i, ns;
	char err[256];

	assert_int_equal(kv_pool_create(r->hp->n_layer, r->hp->n_head_kv * r->hp->head_dim, 4,
	    32, &pool), 0);
	assert_int_equal(kv_paged_create(pool, 64, &kv[0]), 0);
	assert_int_equal(kv_paged_create(pool, 64, &kv[1]), 0);
	for (it = 0; it < BT_ITERS; it++) {
		if (it == 1) {
			assert_int_equal(kv_fork(kv[0], 6, &kv[2]), 0);
			assert_int_equal(kv_fork(kv[0], kv[0]->len, &kv[3]), 0);
		}
		for (i = 0, ns = 0; i < BT_SEQS && iters[it][i].n; i++, ns++) {
			const struct bt_run *br = &iters[it][i];
			float *out = logits + ((size_t)br->seq * BT_ITERS + it) * V;
			if (!batched) {
				o.moe_top_p = top_p[br->seq];
				assert_int_equal(forward_run(r->fw, kv[br->seq], br->toks, br->n, &o, out,
				    &st, err, sizeof(err)), 0);
				uses[br->seq * BT_ITERS + it] = st.expert_uses;
				continue;
			}
			fs[i] = (struct forward_seq){ .kv = kv[br->seq], .tokens = br->toks,
			    .n = br->n, .moe_top_p = top_p[br->seq], .logits = out };
		}
		if (batched) {
			if (forward_batch(r->fw, fs, ns, &st, err, sizeof(err)) != 0)
				fail_msg("forward_batch: %s", err);
			for (i = 0, sum = 0; i < ns; i++) {
				uses[iters[it][i].seq * BT_ITERS + it] = fs[i].expert_uses;
				sum += fs[i].expert_uses;
			}
			assert_true(sum == st.expert_uses);
		}
	}
	for (i = 0; i < BT_SEQS; i++)
		kv_destroy(kv[i]);
	assert_int_equal(kv_pool_free_blocks(pool), 32);
	kv_pool_free(pool);
}

/*
 * forward_batch against one sequence at a time: sequences of different lengths and
 * positions, an sc fork sharing a prefix and a probe fork, prefill chunks next to decodes,
 * per-sequence MoE top-p: logits within 1e-5 — in fact bit-identical, which is what makes the
 * engine's batched texts equal the sequential ones.  Also the refusals.
 */
static void
test_forward_batch(void **state)
{
	static const char *const models[] = { "llama-q8_0.gguf", "qwen2-f16.gguf",
	    "qwen3-f32.gguf", "qwen3moe-bf16.gguf", "qwen3moe-q8_0.gguf" };
	static const uint32_t toks[17] = { 5, 6, 7 };
	struct forward_seq fs[2];
	struct kv *kv;
	float *one, *bat, *lg;
	uint64_t uone[BT_SEQS * BT_ITERS], ubat[BT_SEQS * BT_ITERS];
	char err[256];
	struct rig r;
	size_t i, V;

	(void)state;
	NEED_MODELS();
	for (i = 0; i < sizeof(models) / sizeof(models[0]); i++) {
		if (rig_open(&r, models[i], 2, 16, err, sizeof(err)) != 0)
			continue;            /* not every (architecture, type) is generated */
		V = r.hp->n_vocab;
		one = calloc(BT_SEQS * BT_ITERS * V, sizeof(float));
		bat = calloc(BT_SEQS * BT_ITERS * V, sizeof(float));
		assert_true(one && bat);
		memset(uone, 0, sizeof uone);
		memset(ubat, 0, sizeof ubat);
		bt_schedule(&r, false, one, uone);
		bt_schedule(&r, true, bat, ubat);
		/* Each sequence ran the experts it runs alone (0 for a dense model). */
		assert_memory_equal(ubat, uone, sizeof uone);
		if (r.hp->n_expert)
			assert_true(uone[0] > 0 && uone[1 * BT_ITERS] > 0);
		assert_true(rel_err(bat, one, BT_SEQS * BT_ITERS * V) < 1e-5);
		if (max_diff(bat, one, BT_SEQS * BT_ITERS * V) != 0)
			fail_msg("%s: batched logits differ from one at a time by %g", models[i],
			    (double)max_diff(bat, one, BT_SEQS * BT_ITERS * V));
		/* Refusals: a kv twice, over max_tokens, an empty sequence; nothing moves. */
		lg = bat;
		assert_int_equal(forward_kv_create(r.m, 64, &kv), 0);
		fs[0] = (struct forward_seq){ .kv = kv, .tokens = toks, .n = 3, .logits = lg };
		fs[1] = fs[0];
		assert_int_equal(forward_batch(r.fw, fs, 2, NULL, err, sizeof(err)), CERTA_EINVAL);
		assert_non_null(strstr(err, "twice"));
		fs[0].n = 17;
		assert_int_equal(forward_batch(r.fw, fs, 1, NULL, err, sizeof(err)), CERTA_EINVAL);
		assert_non_null(strstr(err, "more than 16"));
		fs[0].n = 0;
		assert_int_equal(forward_batch(r.fw, fs, 1, NULL, err, sizeof(err)), CERTA_EINVAL);
		assert_int_equal(kv->len, 0);
		kv_destroy(kv);
		free(one);
		free(bat);
		rig_close(&r);
	}
}

/* Batched prefill, chunked prefill and token-at-a-time decode agree; so do 1 and 3 threads. */
static void
test_batched_equals_single(void **state)
{
	static const char *const models[] = { "llama-q8_0.gguf", "qwen2-f16.gguf",
	    "qwen3-bf16.gguf", "qwen3moe-f32.gguf" };
	size_t i, V = 300;
	float *a = calloc(12 * 300, sizeof(float)), *b = calloc(12 * 300, sizeof(float));
	float *c = calloc(12 * 300, sizeof(float)), *d = calloc(12 * 300, sizeof(float));

	NEED_MODELS();
	assert_true(a && b && c && d);
	for (i = 0; i < sizeof(models) / sizeof(models[0]); i++) {
		run_modes(models[i], 2, a, b, c, &V);
		assert_int_equal(V, 300);
		assert_true(rel_err(b, a, 12 * V) < 1e-5);
		assert_true(rel_err(c, a, 12 * V) < 1e-5);
		run_modes(models[i], 3, d, b, c, &V);
		/* Rows split over threads; each row's arithmetic is the same. */
		assert_true(rel_err(d, a, 12 * V) == 0);
	}
	free(a);
	free(b);
	free(c);
	free(d);
}

/* Files the loader must refuse, each with a message naming what is wrong. */
static void
test_refusals(void **state)
{
	static const struct {
		const char *file, *msg;
	} bad[] = {
		{ "bad-arch.gguf", "unknown architecture 'gpt2'" },
		{ "bad-shape.gguf", "tensor 'blk.1.attn_k.weight': shape [64, 48, 1], expected [64, 32]" },
		{ "bad-type.gguf", "tensor 'blk.0.ffn_up.weight': type q5_1 not supported" },
		{ "bad-missing.gguf", "missing tensor 'blk.1.ffn_down.weight'" },
	};
	char err[256];
	struct rig r;
	size_t i;

	NEED_MODELS();
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		assert_int_equal(rig_open(&r, bad[i].file, 1, 4, err, sizeof(err)), CERTA_EINVAL);
		if (!strstr(err, bad[i].msg))
			fail_msg("%s: got \"%s\", want \"%s\"", bad[i].file, err, bad[i].msg);
	}
}

/* Bad calls: a token outside the vocabulary, past the context, a full KV, a bad top_p;
 * the sequence is unchanged after each. */
static void
test_bad_calls(void **state)
{
	uint32_t toks[70] = { 0 }, bad = 300;
	struct forward_opts o = { .moe_top_p = 1.5f };
	float *logits = calloc(300, sizeof(float));
	char err[256];
	struct rig r;
	struct kv *kv;

	NEED_MODELS();
	assert_non_null(logits);
	assert_int_equal(rig_open(&r, "qwen3moe-q8_0.gguf", 2, 8, err, sizeof(err)), 0);
	assert_int_equal(forward_kv_create(r.m, 10, &kv), 0);
	assert_int_equal(forward_run(r.fw, kv, toks, 4, NULL, logits, NULL, err, sizeof(err)), 0);
	assert_int_equal(forward_run(r.fw, kv, &bad, 1, NULL, logits, NULL, err, sizeof(err)),
	    CERTA_EINVAL);
	assert_non_null(strstr(err, "outside the vocabulary"));
	assert_int_equal(forward_run(r.fw, kv, toks, 1, &o, logits, NULL, err, sizeof(err)),
	    CERTA_EINVAL);
	assert_int_equal(forward_run(r.fw, kv, toks, 61, NULL, logits, NULL, err, sizeof(err)),
	    CERTA_EINVAL);
	assert_non_null(strstr(err, "context length 64"));
	assert_int_equal(forward_run(r.fw, kv, toks, 7, NULL, logits, NULL, err, sizeof(err)),
	    CERTA_ECAPACITY);
	assert_non_null(strstr(err, "KV cache full"));
	assert_int_equal(kv->len, 4);
	assert_int_equal(forward_run(r.fw, kv, toks, 6, NULL, logits, NULL, err, sizeof(err)), 0);
	assert_int_equal(kv->len, 10);
	kv_destroy(kv);
	rig_close(&r);
	free(logits);
}

/* Q4_K and Q6_K rows decode as ggml lays them out, and a matmul over them agrees. */
static void
test_kquants(void **state)
{
	static const char *const names[] = { "q4_k", "q6_k" };
	const struct gguf_tensor *t, *want, *x, *y;
	char path[512], err[256], key[32];
	struct backend *be;
	struct gguf *g;
	float row[512], out[6];
	size_t i;
	uint32_t r;

	NEED_MODELS();
	snprintf(path, sizeof(path), "%s/kquants.gguf", dir);
	assert_int_equal(gguf_open(path, &g, err, sizeof(err)), 0);
	assert_int_equal(backend_cpu_create(2, &be), 0);
	assert_non_null(x = gguf_find_tensor(g, "x"));
	for (i = 0; i < 2; i++) {
		struct model_weight w = { 0 };
		assert_non_null(t = gguf_find_tensor(g, names[i]));
		snprintf(key, sizeof(key), "%s.expected", names[i]);
		assert_non_null(want = gguf_find_tensor(g, key));
		snprintf(key, sizeof(key), "%s.y", names[i]);
		assert_non_null(y = gguf_find_tensor(g, key));
		assert_true(model_type_supported(t->type));
		w.type = t->type;
		w.cols = 512;
		w.rows = 3;
		w.n_mat = 1;
		w.row_bytes = t->nbytes / 3;
		w.data = t->data;
		for (r = 0; r < 3; r++) {
			backend_cpu_dequant_row(t->type, (const uint8_t *)t->data + r * w.row_bytes,
			    row, 512);
			if (rel_err(row, (const float *)want->data + r * 512, 512) > 1e-6)
				fail_msg("%s row %u decodes wrong", names[i], r);
		}
		be->ops->matmul(be, &w, x->data, 2, out);
		if (rel_err(out, y->data, 6) > 1e-5)
			fail_msg("%s matmul: rel err %.3e", names[i], rel_err(out, y->data, 6));
	}
	backend_destroy(be);
	gguf_close(g);
}

/* A device backend whose kv_store fails (as the CUDA backend's does after a failed copy):
 * the CPU backend with kv_store and error replaced in a copy of its table. */
static int kvfail_pending;

static int
kvfail_store(struct backend *be, struct kv *kv, uint32_t layer, const float *k,
    const float *v, uint32_t n_tok, const uint32_t *pos)
{
	kvfail_pending = 1;
	return -EIO;
}

static int
kvfail_error(struct backend *be, char *msg, size_t len)
{
	if (!kvfail_pending)
		return 0;
	kvfail_pending = 0;
	snprintf(msg, len, "injected KV copy failure");
	return -EIO;
}

/* The forward reports the device's own message when kv_store fails, and clears it. */
static void
test_kv_store_device_error(void **state)
{
	static struct backend_ops ops;
	const struct backend_ops *cpu_ops;
	uint32_t toks[4] = { 1, 2, 3, 4 };
	float *logits = calloc(300, sizeof(float));
	struct forward_seq seq = { 0 };
	char err[256];
	struct rig r;
	struct kv *kv;

	NEED_MODELS();
	assert_non_null(logits);
	assert_int_equal(rig_open(&r, "qwen3-f32.gguf", 1, 8, err, sizeof(err)), 0);
	assert_int_equal(forward_kv_create(r.m, 16, &kv), 0);
	cpu_ops = r.be->ops;
	ops = *cpu_ops;
	ops.kv_store = kvfail_store;
	ops.error = kvfail_error;
	r.be->ops = &ops;
	err[0] = '\0';
	assert_int_equal(forward_run(r.fw, kv, toks, 4, NULL, logits, NULL, err, sizeof(err)),
	    -EIO);
	if (!strstr(err, "device error: injected KV copy failure"))
		fail_msg("forward_run: \"%s\"", err);
	assert_int_equal(kv->len, 0);
	assert_int_equal(kvfail_pending, 0);
	seq.kv = kv;
	seq.tokens = toks;
	seq.n = 4;
	seq.logits = logits;
	err[0] = '\0';
	assert_int_equal(forward_batch(r.fw, &seq, 1, NULL, err, sizeof(err)), -EIO);
	if (!strstr(err, "device error: injected KV copy failure"))
		fail_msg("forward_batch: \"%s\"", err);
	assert_int_equal(kvfail_pending, 0);
	r.be->ops = cpu_ops;
	kv_destroy(kv);
	rig_close(&r);
	free(logits);
}

/* Sampling: greedy is argmax; a fixed u gives a fixed token; top-p small keeps the best. */
static void
test_sampling(void **state)
{
	float logits[5] = { 0.1f, 2.0f, -1.0f, 1.9f, 0.0f }, p;
	struct backend *be;

	assert_int_equal(backend_cpu_create(1, &be), 0);
	assert_int_equal(be->ops->sample(be, logits, 5, 0, 1, 0.99, &p), 1);
	assert_true(p > 0.3f && p < 0.5f);
	assert_int_equal(be->ops->sample(be, logits, 5, 1.0f, 0.01f, 0.99, &p), 1);
	assert_true(fabsf(p - 1.0f) < 1e-6f);
	assert_int_equal(be->ops->sample(be, logits, 5, 1.0f, 1.0f, 0.0, NULL), 0);
	assert_int_equal(be->ops->sample(be, logits, 5, 1.0f, 1.0f, 0.9999, NULL), 4);
	backend_destroy(be);
}

/* MoE gate on known logits: top-k renormalized; top-p 1 takes all; tiny p one; cap holds. */
static void
test_moe_gate(void **state)
{
	const float logits[4] = { 1.0f, 3.0f, 2.0f, 0.0f };
	struct backend_moe_sel s = { .top_k = 2, .renorm = true };
	uint32_t ids[4];
	float w[4];
	struct backend *be;

	assert_int_equal(backend_cpu_create(1, &be), 0);
	assert_int_equal(be->ops->moe_gate(be, logits, 4, &s, ids, w), 2);
	assert_int_equal(ids[0], 1);
	assert_int_equal(ids[1], 2);
	assert_true(fabsf(w[0] + w[1] - 1.0f) < 1e-6f);
	assert_true(fabsf(w[0] / w[1] - expf(1.0f)) < 1e-5f);
	s.top_p = 1.0f;
	assert_int_equal(be->ops->moe_gate(be, logits, 4, &s, ids, w), 4);
	s.top_p = 0.01f;
	assert_int_equal(be->ops->moe_gate(be, logits, 4, &s, ids, w), 1);
	assert_true(fabsf(w[0] - 1.0f) < 1e-6f);
	s.top_p = 1.0f;
	s.max_experts = 3;
	assert_int_equal(be->ops->moe_gate(be, logits, 4, &s, ids, w), 3);
	backend_destroy(be);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reference_logits),
		cmocka_unit_test(test_batched_equals_single),
		cmocka_unit_test(test_paged_fork),
		cmocka_unit_test(test_forward_batch),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_bad_calls),
		cmocka_unit_test(test_kquants),
		cmocka_unit_test(test_sampling),
		cmocka_unit_test(test_moe_gate),
		cmocka_unit_test(test_kv_store_device_error),
	};

	return cmocka_run_group_tests(tests, gen_setup, gen_teardown);
}
