/*
 * test_forward_cuda.c — end-to-end parity of the CUDA backend with the CPU backend on the
 * tiny test models (`make check-cuda`, after test_backend_cuda): the whole forward pass, not
 * one op.  scripts/llm/tiny_models.py writes the models (llama, qwen2, qwen3, qwen3moe as
 * F32, F16, BF16, Q8_0) into a temporary directory; for each model both backends run
 *
 *   chain    a prefill of 7 tokens (logits of every position) then 5 decodes, paged KV of
 *            blocks of 4 (partial blocks) in the backend's memory (ops->kv_mem: device
 *            memory for CUDA), MoE as trained and with top-p 0.6;
 *   probe    the chain's KV forked after the prefill, 5 probe tokens on the fork, the fork
 *            destroyed, then the chain's 5 decodes: on the GPU these must equal the chain's
 *            own decodes without the probe (copy on write leaves the chain alone), and the
 *            probe's logits must match the CPU's;
 *   batch    test_forward's schedule: four sequences (prefill chunks next to decodes, an sc
 *            fork, a probe fork, per-sequence MoE top-p 0 / 0.5 / 0.9) as forward_batch
 *            calls, against the CPU's batch and against the GPU one sequence at a time;
 *   greedy   16 greedy tokens from a 5-token prompt (a flat KV in host memory: CUDA's
 *            staging path): the same tokens, up to the first step
 *            where the CPU's top two logits are closer than 4 x the largest relative error
 *            measured on this model (x the largest |logit|): too close to decide.
 *
 * Logits compare as max |diff| / max |ref| over a run, against a tolerance per weight type:
 * F32 1e-3 (FP32 GEMMs), F16 and Q8_0 (dequantized to F16) 2e-2, BF16 6e-2 (activations are
 * rounded to the weight's 16-bit type for cuBLAS).  A real bug (a wrong page, head or
 * position) gives errors near 1.  MoE expert counts must match exactly for F32 models.
 * Prints the worst error per type; "check-cuda-forward: SKIP: ..." and exit 0 without a
 * device or without python3-numpy.  Run from the source tree's root.
 * TEST_FORWARD_CUDA_FAKE=cpu puts a one-thread CPU backend in the CUDA backend's place, to
 * check the test itself on a machine without a GPU (every error is then 0).
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "workers/llm/backend.h"
#include "workers/llm/forward.h"
#include "workers/llm/gguf.h"
#include "workers/llm/kv.h"
#include "workers/llm/model.h"

#define N_PRE 7
#define N_DEC 5
#define N_ALL (N_PRE + N_DEC)
#define N_GREEDY 16
#define BT_SEQS 4
#define BT_ITERS 3

static int failures, checks;
static bool fake;                /* TEST_FORWARD_CUDA_FAKE=cpu: a second CPU backend stands in */
static char dir[256];
static int device;
static double worst[4];          /* per type: f32, f16, bf16, q8_0 */
static double model_worst;       /* the current model's largest error so far */
static const char *const type_names[4] = { "f32", "f16", "bf16", "q8_0" };

static const uint32_t chain_toks[N_ALL] = { 3, 9, 27, 81, 243, 200, 100, 50, 25, 12, 6, 299 };
static const uint32_t probe_toks[N_DEC] = { 1, 2, 4, 8, 16 };

/* One model on one backend. */
struct side {
	struct backend *be;
	struct forward *fw;
};

static void
fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void
fail(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	printf("FAIL ");
	vprintf(fmt, ap);
	printf("\n");
	va_end(ap);
	failures++;
}

/* max |a - b| / max |b| over n values (NaN: infinity). */
static double
rel_err(const float *a, const float *b, size_t n)
{
	double num = 0, den = 0;
	size_t i;

	for (i = 0; i < n; i++) {
		double d = fabs((double)a[i] - b[i]);
		if (!(d <= num))
			num = isnan(d) ? INFINITY : d;
		if (fabs(b[i]) > den)
			den = fabs(b[i]);
	}
	return den > 0 ? num / den : num;
}

/* Compares GPU logits with the CPU's; records the worst error of the type. */
static void
expect_close(const char *model, const char *what, const float *gpu, const float *cpu, size_t n,
    int type, double tol)
{
	double e = rel_err(gpu, cpu, n);

	checks++;
	if (e > model_worst || isnan(e))
		model_worst = isnan(e) ? INFINITY : e;
	if (e > worst[type] || isnan(e))
		worst[type] = isnan(e) ? INFINITY : e;
	if (!(e <= tol))
		fail("%s %s: relative error %.3g > %.3g", model, what, e, tol);
}

/* Index of the largest of n values and the gap to the second. */
static uint32_t
top2(const float *x, size_t n, float *gap)
{
	uint32_t best = 0, i;
	float second = -INFINITY;

	for (i = 1; i < n; i++) {
		if (x[i] > x[best]) {
			second = x[best];
			best = i;
		} else if (x[i] > second) {
			second = x[i];
		}
	}
	*gap = x[best] - second;
	return best;
}

/* ---- setup ------------------------------------------------------------------------------- */

/* 0: models in dir; 77: numpy missing; else a failure. */
static int
gen_models(void)
{
	static const char *const pythons[] = { "python3", "/usr/bin/python3" };
	const char *tmp = getenv("TMPDIR");
	char cmd[1024];
	size_t i;
	int rc = -1;

	snprintf(dir, sizeof dir, "%s/certa-fwdcuda-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(dir))
		return -1;
	if (access("scripts/llm/tiny_models.py", R_OK) != 0) {
		printf("scripts/llm/tiny_models.py not found: run from the source tree's root\n");
		return -1;
	}
	for (i = 0; i < sizeof pythons / sizeof pythons[0]; i++) {
		snprintf(cmd, sizeof cmd, "%s scripts/llm/tiny_models.py --out %s 2>/dev/null",
		    pythons[i], dir);
		rc = system(cmd);
		if (rc != -1 && WIFEXITED(rc) && WEXITSTATUS(rc) == 0)
			return 0;
	}
	return rc != -1 && WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static void
rm_models(void)
{
	char cmd[512];

	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		printf("could not remove %s\n", dir);
}

/* Both backends' forwards for model m: a fresh CUDA backend per model (its weight table is
 * keyed by host addresses, which the next model's mapping may reuse). */
static int
sides_open(const struct model *m, struct side *cpu, struct side *gpu)
{
	char err[256] = "";

	memset(cpu, 0, sizeof *cpu);
	memset(gpu, 0, sizeof *gpu);
	if (backend_cpu_create(2, &cpu->be) != 0 || forward_create(m, cpu->be, 16, &cpu->fw) != 0) {
		fail("CPU backend");
		return -1;
	}
	if ((fake ? backend_cpu_create(1, &gpu->be) :
	    backend_cuda_create(device, &gpu->be, err, sizeof err)) != 0 ||
	    forward_create(m, gpu->be, 16, &gpu->fw) != 0) {
		fail("CUDA backend: %s", err);
		return -1;
	}
	return 0;
}

static void
side_close(struct side *s)
{
	forward_destroy(s->fw);
	backend_destroy(s->be);
}

/* ---- the runs ---------------------------------------------------------------------------- */

/* The chain: prefill N_PRE (every position's logits), N_DEC decodes; out [N_ALL][V].  With
 * probe, a fork after the prefill runs probe_toks first (its logits to probe_out [N_DEC][V]).
 * Returns the experts used by the chain. */
static uint64_t
run_chain(struct side *s, const struct model_hparams *hp, float top_p, float *out,
    float *probe_out, const char *who)
{
	struct forward_opts all = { .moe_top_p = top_p, .all_logits = true };
	struct forward_stats st;
	struct kv_pool *pool = NULL;
	struct kv *chain = NULL, *fork = NULL;
	size_t V = hp->n_vocab;
	uint64_t uses = 0;
	char err[256] = "";
	uint32_t i;

	if (kv_pool_create_mem(hp->n_layer, hp->n_head_kv * hp->head_dim, 4, 32,
	    s->be->ops->kv_mem ? s->be->ops->kv_mem(s->be) : NULL, &pool) != 0 ||
	    kv_paged_create(pool, 64, &chain) != 0) {
		fail("%s: KV setup", who);
		goto out;
	}
	if (forward_run(s->fw, chain, chain_toks, N_PRE, &all, out, &st, err, sizeof err) != 0) {
		fail("%s: prefill: %s", who, err);
		goto out;
	}
	uses += st.expert_uses;
	if (probe_out) {
		if (kv_fork(chain, chain->len, &fork) != 0 ||
		    forward_run(s->fw, fork, probe_toks, N_DEC, &all, probe_out, NULL, err,
		    sizeof err) != 0) {
			fail("%s: probe: %s", who, err);
			goto out;
		}
		kv_destroy(fork);
		fork = NULL;
	}
	for (i = 0; i < N_DEC; i++) {
		if (forward_run(s->fw, chain, chain_toks + N_PRE + i, 1, &all,
		    out + (size_t)(N_PRE + i) * V, &st, err, sizeof err) != 0) {
			fail("%s: decode %u: %s", who, i, err);
			goto out;
		}
		uses += st.expert_uses;
	}
	kv_destroy(chain);
	chain = NULL;
	checks++;
	if (kv_pool_free_blocks(pool) != 32)
		fail("%s: %u KV blocks not returned", who, 32 - kv_pool_free_blocks(pool));
out:
	kv_destroy(fork);
	kv_destroy(chain);
	kv_pool_free(pool);
	return uses;
}

struct bt_run {
	uint32_t seq, n;
	const uint32_t *toks;
};

/* test_forward's batch schedule; logits [BT_SEQS][BT_ITERS][V], uses [BT_SEQS][BT_ITERS]. */
static void
run_batch(struct side *s, const struct model_hparams *hp, bool batched, float *logits,
    uint64_t *uses, const char *who)
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
	struct kv_pool *pool = NULL;
	struct kv *kv[BT_SEQS] = { 0 };
	size_t V = hp->n_vocab;
	uint32_t it, i, ns;
	char err[256] = "";

	if (kv_pool_create_mem(hp->n_layer, hp->n_head_kv * hp->head_dim, 4, 32,
	    s->be->ops->kv_mem ? s->be->ops->kv_mem(s->be) : NULL, &pool) != 0 ||
	    kv_paged_create(pool, 64, &kv[0]) != 0 || kv_paged_create(pool, 64, &kv[1]) != 0) {
		fail("%s: KV setup", who);
		goto out;
	}
	for (it = 0; it < BT_ITERS; it++) {
		if (it == 1 && (kv_fork(kv[0], 6, &kv[2]) != 0 ||
		    kv_fork(kv[0], kv[0]->len, &kv[3]) != 0)) {
			fail("%s: fork", who);
			goto out;
		}
		for (i = 0, ns = 0; i < BT_SEQS && iters[it][i].n; i++, ns++) {
			const struct bt_run *br = &iters[it][i];
			float *lg = logits + ((size_t)br->seq * BT_ITERS + it) * V;
			if (!batched) {
				o.moe_top_p = top_p[br->seq];
				if (forward_run(s->fw, kv[br->seq], br->toks, br->n, &o, lg, &st, err,
				    sizeof err) != 0) {
					fail("%s: forward_run: %s", who, err);
					goto out;
				}
				uses[br->seq * BT_ITERS + it] = st.expert_uses;
				continue;
			}
			fs[i] = (struct forward_seq){ .kv = kv[br->seq], .tokens = br->toks,
			    .n = br->n, .moe_top_p = top_p[br->seq], .logits = lg };
		}
		if (batched) {
			if (forward_batch(s->fw, fs, ns, &st, err, sizeof err) != 0) {
				fail("%s: forward_batch: %s", who, err);
				goto out;
			}
			for (i = 0; i < ns; i++)
				uses[iters[it][i].seq * BT_ITERS + it] = fs[i].expert_uses;
		}
	}
out:
	for (i = 0; i < BT_SEQS; i++)
		kv_destroy(kv[i]);
	kv_pool_free(pool);
}

/* N_GREEDY greedy tokens after a 5-token prompt; gaps[i]: top-1 minus top-2 logit, and the
 * largest |logit| of the step in scale[i]. */
static void
run_greedy(struct side *s, const struct model_hparams *hp, uint32_t *toks, float *gaps,
    float *scale, const char *who)
{
	struct kv *kv = NULL;
	float *lg = malloc(hp->n_vocab * sizeof(float));
	uint32_t next, i, j;
	char err[256] = "";

	if (!lg || kv_flat_create(hp->n_layer, hp->n_head_kv * hp->head_dim, 64, &kv) != 0) {
		fail("%s: greedy setup", who);
		goto out;
	}
	if (forward_run(s->fw, kv, chain_toks, 5, NULL, lg, NULL, err, sizeof err) != 0) {
		fail("%s: greedy prompt: %s", who, err);
		goto out;
	}
	for (i = 0; i < N_GREEDY; i++) {
		toks[i] = next = top2(lg, hp->n_vocab, &gaps[i]);
		scale[i] = 0;
		for (j = 0; j < hp->n_vocab; j++)
			if (fabsf(lg[j]) > scale[i])
				scale[i] = fabsf(lg[j]);
		if (i + 1 < N_GREEDY &&
		    forward_run(s->fw, kv, &next, 1, NULL, lg, NULL, err, sizeof err) != 0) {
			fail("%s: greedy step %u: %s", who, i, err);
			goto out;
		}
	}
out:
	kv_destroy(kv);
	free(lg);
}

/* ---- one model --------------------------------------------------------------------------- */

static void
test_model(const char *file, int type, double tol)
{
	struct side cpu, gpu;
	struct gguf *g = NULL;
	struct model *m = NULL;
	const struct model_hparams *hp;
	char path[512], err[256] = "";
	float *a = NULL, *b = NULL, *c = NULL, *pa = NULL, *pb = NULL;
	float gap_a[N_GREEDY], gap_b[N_GREEDY], sc_a[N_GREEDY], sc_b[N_GREEDY];
	uint32_t tok_a[N_GREEDY], tok_b[N_GREEDY], agree, i, r;
	uint64_t ua, ub, bua[BT_SEQS * BT_ITERS], bub[BT_SEQS * BT_ITERS];
	uint64_t buc[BT_SEQS * BT_ITERS];
	size_t V, nb;
	float ps[2] = { 0, 0.6f };
	uint32_t np, k;

	snprintf(path, sizeof path, "%s/%s", dir, file);
	if (access(path, R_OK) != 0)
		return;                  /* not every (architecture, type) is written */
	if (gguf_open(path, &g, err, sizeof err) != 0 || model_open(g, &m, err, sizeof err) != 0) {
		fail("%s: %s", file, err);
		gguf_close(g);
		return;
	}
	hp = model_hparams(m);
	V = hp->n_vocab;
	model_worst = 0;
	nb = (size_t)BT_SEQS * BT_ITERS * V;
	if (sides_open(m, &cpu, &gpu) != 0)
		goto out;
	a = calloc(nb > N_ALL * V ? nb : N_ALL * V, sizeof(float));
	b = calloc(nb > N_ALL * V ? nb : N_ALL * V, sizeof(float));
	c = calloc(nb > N_ALL * V ? nb : N_ALL * V, sizeof(float));
	pa = calloc(N_DEC * V, sizeof(float));
	pb = calloc(N_DEC * V, sizeof(float));
	if (!a || !b || !c || !pa || !pb) {
		fail("out of memory");
		goto out;
	}

	/* chain (and MoE top-p) */
	np = hp->n_expert ? 2 : 1;
	for (k = 0; k < np; k++) {
		char what[64];
		ua = run_chain(&cpu, hp, ps[k], a, NULL, "cpu");
		ub = run_chain(&gpu, hp, ps[k], b, NULL, "cuda");
		snprintf(what, sizeof what, "chain (moe top_p %g)", (double)ps[k]);
		expect_close(file, what, b, a, N_ALL * V, type, tol);
		if (hp->n_expert) {
			checks++;
			printf("  %s %s: experts %llu (cpu) %llu (cuda)\n", file, what,
			    (unsigned long long)ua, (unsigned long long)ub);
			if (type == 0 && ua != ub)
				fail("%s %s: experts used %llu on the CPU, %llu on CUDA", file, what,
				    (unsigned long long)ua, (unsigned long long)ub);
		}
	}

	/* probe on a fork: the chain's GPU decodes unchanged, the probe's logits close */
	run_chain(&gpu, hp, 0, b, NULL, "cuda");
	run_chain(&gpu, hp, 0, c, pb, "cuda probe");
	run_chain(&cpu, hp, 0, a, pa, "cpu probe");
	checks++;
	{
		double e = rel_err(c + N_PRE * V, b + N_PRE * V, N_DEC * V);
		if (!(e <= 1e-6))
			fail("%s: the chain's decodes after a probe on its fork differ by %.3g "
			    "(copy on write broken?)", file, e);
	}
	expect_close(file, "probe on a fork", pb, pa, N_DEC * V, type, tol);
	expect_close(file, "chain after the probe", c, a, N_ALL * V, type, tol);

	/* batch schedule */
	memset(bua, 0, sizeof bua);
	memset(bub, 0, sizeof bub);
	memset(buc, 0, sizeof buc);
	memset(a, 0, nb * sizeof(float));
	memset(b, 0, nb * sizeof(float));
	memset(c, 0, nb * sizeof(float));
	run_batch(&cpu, hp, true, a, bua, "cpu batch");
	run_batch(&gpu, hp, true, b, bub, "cuda batch");
	run_batch(&gpu, hp, false, c, buc, "cuda one at a time");
	expect_close(file, "batch", b, a, nb, type, tol);
	expect_close(file, "batch vs one at a time (cuda)", b, c, nb, type, tol);
	if (hp->n_expert) {
		checks++;
		if (memcmp(bub, buc, sizeof bub) != 0)
			fail("%s: experts per sequence differ between batched and one at a time on "
			    "CUDA", file);
		if (type == 0 && memcmp(bua, bub, sizeof bua) != 0)
			fail("%s: experts per sequence in the batch differ from the CPU's", file);
	}

	/* greedy tokens */
	run_greedy(&cpu, hp, tok_a, gap_a, sc_a, "cpu greedy");
	run_greedy(&gpu, hp, tok_b, gap_b, sc_b, "cuda greedy");
	for (agree = 0, r = N_GREEDY, i = 0; i < N_GREEDY; i++) {
		if (gap_a[i] < 4 * fmax(model_worst, 1e-6) * sc_a[i]) {
			r = i;               /* too close to call: later tokens may differ */
			break;
		}
		if (tok_a[i] != tok_b[i])
			break;
		agree++;
	}
	checks++;
	if (agree < r)
		fail("%s: greedy token %u: %u on the CPU, %u on CUDA (gap %.3g, clear)", file, agree,
		    tok_a[agree], tok_b[agree], (double)gap_a[agree]);
	printf("  %s: greedy %u/%u tokens equal%s\n", file, agree, N_GREEDY,
	    r < N_GREEDY ? " (then a near tie)" : "");
out:
	free(a);
	free(b);
	free(c);
	free(pa);
	free(pb);
	side_close(&cpu);
	side_close(&gpu);
	model_close(m);
	gguf_close(g);
}

int
main(int argc, char **argv)
{
	static const char *const archs[] = { "llama", "qwen2", "qwen3", "qwen3moe" };
	static const double tols[4] = { 1e-3, 2e-2, 6e-2, 2e-2 };
	struct backend *probe = NULL;
	char err[256] = "", file[64];
	size_t i, t;
	int rc;

	setvbuf(stdout, NULL, _IOLBF, 0);    /* lines reach a pipe before a timeout kills us */
	device = argc > 1 ? atoi(argv[1]) : 0;
	fake = getenv("TEST_FORWARD_CUDA_FAKE") && strcmp(getenv("TEST_FORWARD_CUDA_FAKE"),
	    "cpu") == 0;
	rc = fake ? backend_cpu_create(1, &probe) : backend_cuda_create(device, &probe, err,
	    sizeof err);
	if (rc == -ENODEV) {
		printf("check-cuda-forward: SKIP: no CUDA device (%s)\n", err);
		return 0;
	}
	if (rc != 0) {
		printf("check-cuda-forward: FAIL: %s\n", err);
		return 1;
	}
	backend_destroy(probe);
	rc = gen_models();
	if (rc == 77) {
		printf("check-cuda-forward: SKIP: python3-numpy is missing (scripts/deps.sh)\n");
		rm_models();
		return 0;
	}
	if (rc != 0) {
		printf("check-cuda-forward: FAIL: scripts/llm/tiny_models.py failed (%d)\n", rc);
		rm_models();
		return 1;
	}
	for (i = 0; i < sizeof archs / sizeof archs[0]; i++)
		for (t = 0; t < 4; t++) {
			snprintf(file, sizeof file, "%s-%s.gguf", archs[i], type_names[t]);
			test_model(file, (int)t, tols[t]);
		}
	rm_models();
	for (t = 0; t < 4; t++)
		printf("SUMMARY parity %-4s: worst relative logit error %.3g (tolerance %.0e)\n",
		    type_names[t], worst[t], tols[t]);
	printf("check-cuda-forward: %s: %d checks, %d failed (%s:%d)\n",
	    failures ? "FAIL" : "ok", checks, failures, fake ? "FAKE cpu" : "cuda", device);
	return failures ? 1 : 0;
}
