/*
 * bench-serve — program rate at a latency SLO: certa against the baselines, in one run.
 *
 * Starts N replay workers with a GPU timing model (--gpu-profile, a .gpu file of profiles/: each step
 * takes what a continuous-batching engine on that GPU would take, given what else runs) and
 * one certad per policy, drives Poisson arrivals of programs drawn from the traces (one model,
 * every dataset, half cot and half sc with n = 3), sweeps the arrival rate, and reports per
 * policy: SLO attainment per rate, the highest rate with >= 90% of programs within the SLO,
 * P50/P90 latency at a fixed rate, accuracy against the reference answers (next to running to
 * the end), tokens per program.  Times are modelled GPU seconds: the workers run time_scale
 * wall seconds per GPU second, the bench divides wall times by it.
 *
 * Policies (policy files written at start; the knobs are scheduler/sched.h's):
 *   certa        the default calibrated policy (early stop, fair/SJF order)
 *   run-to-end   no early stop, arrival order (certad's EDF with a far deadline per program
 *                = submission order; what vLLM/SGLang do without a certainty layer)
 *   dynasor-k20, dynasor-k30   the Dynasor-CoT rule (probe every 64 tokens, stop when k
 *                agree), fair/SJF order; dynasor-k40, dynasor-k50 (only when named): the same
 *                with larger k, to compare at certa's accuracy
 *   certa-nostop certa's ordering without early stopping (separates the two effects)
 *   certa-staged, certa-staged2   certa with staged sc (sc.staged = 1, 2; only when named)
 *
 *   CERTA_TRACES=DIR build/bin/bench-serve [--quick] [--workers N] [--scale X] [--slo S]
 *       [--programs M] [--rates R1,R2,...] [--fixed-rate R] [--policies a,b,...]
 *       [--profile FILE] [--capacity C] [--out FILE.tsv] [--seed S]
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <grpc/grpc.h>

#include "certa/v1/reasoning.pb-c.h"
#include "lib/rpc_client.h"
#include "lib/traces.h"
#include "scheduler/answer.h"
#include "tests/support/certa_client.h"
#include "tests/support/harness.h"

/* The policies compared: name, policy text, whether programs get a far deadline (FIFO), and
 * whether it runs only when --policies names it. */
static const struct bpolicy {
	const char *name;
	const char *text;
	int fifo;
	int named_only;
} bench_policies[] = {
	{ "certa", "", 0, 0 },
	{ "run-to-end", "cot.threshold = 2\nsc.threshold = 2\nunpromising_tokens = 0\n"
	  "sc.unpromising_tokens = 0\nsettle_closed = 0\nextend_frac = 0\n", 1, 0 },
	{ "dynasor-k20", "cot.threshold = 2\nsc.threshold = 2\nunpromising_tokens = 0\n"
	  "sc.unpromising_tokens = 0\nsettle_closed = 0\nextend_frac = 0\nprobe_stride = 0\n"
	  "step_tokens = 64\ndynasor_k = 20\n", 0, 0 },
	{ "dynasor-k30", "cot.threshold = 2\nsc.threshold = 2\nunpromising_tokens = 0\n"
	  "sc.unpromising_tokens = 0\nsettle_closed = 0\nextend_frac = 0\nprobe_stride = 0\n"
	  "step_tokens = 64\ndynasor_k = 30\n", 0, 0 },
	/* Larger k: Dynasor at certa's accuracy (named only). */
	{ "dynasor-k40", "cot.threshold = 2\nsc.threshold = 2\nunpromising_tokens = 0\n"
	  "sc.unpromising_tokens = 0\nsettle_closed = 0\nextend_frac = 0\nprobe_stride = 0\n"
	  "step_tokens = 64\ndynasor_k = 40\n", 0, 1 },
	{ "dynasor-k50", "cot.threshold = 2\nsc.threshold = 2\nunpromising_tokens = 0\n"
	  "sc.unpromising_tokens = 0\nsettle_closed = 0\nextend_frac = 0\nprobe_stride = 0\n"
	  "step_tokens = 64\ndynasor_k = 50\n", 0, 1 },
	{ "certa-nostop", "cot.threshold = 2\nsc.threshold = 2\nunpromising_tokens = 0\n"
	  "sc.unpromising_tokens = 0\nsettle_closed = 0\nextend_frac = 0\n", 0, 0 },
	/* Staged sc on (sc.staged; named only): tokens against latency. */
	{ "certa-staged", "sc.staged = 1\n", 0, 1 },
	{ "certa-staged2", "sc.staged = 2\n", 0, 1 },
};
#define NPOLICIES (sizeof bench_policies / sizeof bench_policies[0])

struct opts {
	int quick;
	int workers;
	double scale;             /* wall s per GPU s */
	double slo;               /* GPU s */
	int programs;             /* per rate */
	double rates[16];
	int nrates;
	double fixed_rate;
	const char *policies;
	const char *profile;
	int capacity;
	const char *out;
	unsigned seed;
};

/* One program of a run. */
struct prog {
	const struct traces_program *pg;
	int sc;
	double t_submit, t_end;   /* wall ms */
	uint64_t tokens, probe_tokens;
	int done, ok, correct, reason;
	char answer[256];
};

struct run {
	int port;
	struct prog *progs;
	int n;
	int fifo;
	double scale;
	atomic_int finished;
};

struct parg {
	struct run *r;
	int i;
};

static double
now_ms(void)
{
	return harness_clock_us() / 1e3;
}

/* Runs one program to its end (its own thread and channel). */
static void *
prog_thread(void *arg)
{
	struct parg *a = arg;
	struct run *r = a->r;
	struct prog *p = &r->progs[a->i];
	Certa__V1__ProgramSpec spec = CERTA__V1__PROGRAM_SPEC__INIT;
	struct certa_client_events ev;
	struct rpc_channel *ch = NULL;
	struct rpc_stream *s;

	free(a);
	memset(&ev, 0, sizeof ev);
	spec.problem = (char *)p->pg->problem;
	spec.model = (char *)p->pg->model;
	spec.algorithm = p->sc ? CERTA__V1__ALGORITHM__ALGORITHM_SC :
	    CERTA__V1__ALGORITHM__ALGORITHM_COT;
	spec.n = p->sc ? 3 : 1;
	spec.token_budget = 16384u * spec.n;
	p->t_submit = now_ms();
	if (r->fifo) { /* EDF over equally far deadlines = arrival order; never reached */
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		spec.deadline_unix_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 +
		    24 * 3600 * 1000LL;
	}
	if (certa_client_channel(r->port, &ch) != 0 ||
	    certa_client_submit(ch, &spec, NULL, 3600000, &s) != 0) {
		fprintf(stderr, "bench-serve: cannot submit\n");
		goto out;
	}
	certa_client_events_read(s, 3600000, 0, &ev);
	p->t_end = now_ms();
	if (ev.finished != NULL && ev.finished->result != NULL) {
		Certa__V1__ProgramResult *res = ev.finished->result;

		p->ok = res->reason != CERTA__V1__FINISH_REASON__FINISH_REASON_FAILED;
		p->reason = res->reason;
		p->tokens = res->tokens_used;
		p->probe_tokens = res->probe_tokens;
		snprintf(p->answer, sizeof p->answer, "%s", res->answer ? res->answer : "");
		p->correct = p->answer[0] != '\0' && answer_equivalent(p->answer, p->pg->target);
	}
	if (!p->ok)
		fprintf(stderr, "bench-serve: program failed: status %d %s\n", (int)ev.status,
		    ev.details);
	certa_client_events_free(&ev);
out:
	if (ch != NULL)
		rpc_channel_free(ch);
	p->done = 1;
	atomic_fetch_add(&r->finished, 1);
	return NULL;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double
pct(double *v, int n, double q)
{
	int i;

	if (n == 0)
		return NAN;
	qsort(v, (size_t)n, sizeof *v, cmp_double);
	i = (int)ceil(q * n) - 1;
	return v[i < 0 ? 0 : i];
}

struct point {
	double rate, attain, p50, p90, acc, tokens;
	int n, failed;
};

/* One rate: Poisson arrivals of o->programs programs (the same sequence for every policy). */
static void
run_rate(const struct opts *o, int port, int fifo, const struct traces *tr,
    const size_t *pool, size_t npool, double rate, struct point *pt)
{
	struct run r;
	double *lat;
	double t_next = 0, t0;
	unsigned st = o->seed;
	int i, nlat = 0, within = 0, correct = 0;
	uint64_t tokens = 0;

	memset(&r, 0, sizeof r);
	r.port = port;
	r.fifo = fifo;
	r.scale = o->scale;
	r.n = o->programs;
	r.progs = calloc((size_t)r.n, sizeof *r.progs);
	lat = calloc((size_t)r.n, sizeof *lat);
	for (i = 0; i < r.n; i++) {
		r.progs[i].pg = traces_program_at(tr, pool[rand_r(&st) % npool]);
		r.progs[i].sc = rand_r(&st) % 2;
	}
	t0 = now_ms();
	for (i = 0; i < r.n; i++) {
		struct parg *a = malloc(sizeof *a);
		pthread_t tid;
		double u = (rand_r(&st) + 1.0) / ((double)RAND_MAX + 2.0), wait;

		wait = t0 + t_next - now_ms();
		if (wait > 0)
			usleep((useconds_t)(wait * 1000));
		a->r = &r;
		a->i = i;
		if (pthread_create(&tid, NULL, prog_thread, a) != 0) {
			free(a);
			r.progs[i].done = 1;
			atomic_fetch_add(&r.finished, 1);
		} else {
			pthread_detach(tid);
		}
		/* exponential gap in GPU seconds -> wall ms */
		t_next += -log(u) / rate * o->scale * 1000.0;
	}
	while (atomic_load(&r.finished) < r.n)
		usleep(20000);
	memset(pt, 0, sizeof *pt);
	pt->rate = rate;
	pt->n = r.n;
	for (i = 0; i < r.n; i++) {
		struct prog *p = &r.progs[i];
		double l = (p->t_end - p->t_submit) / 1000.0 / o->scale;

		if (!p->ok) {
			pt->failed++;
			continue;
		}
		lat[nlat++] = l;
		within += l <= o->slo;
		correct += p->correct;
		tokens += p->tokens + p->probe_tokens;
	}
	pt->attain = (double)within / r.n;
	pt->acc = nlat ? (double)correct / nlat : 0;
	pt->tokens = nlat ? (double)tokens / nlat : 0;
	pt->p50 = pct(lat, nlat, 0.5);
	pt->p90 = pct(lat, nlat, 0.9);
	free(lat);
	free(r.progs);
}

/*
 * Per policy: the highest rate of the sweep with >= 90% within the SLO (every rate up to it
 * too), P50/P90 at the fixed rate, accuracy and tokens next to run-to-end's (same programs).
 */
static void
summary(const struct opts *o, struct point pts[][16], const int *ran)
{
	const struct point *ref = NULL;
	double ref_rate = 0;
	size_t k;
	int ri;

	for (k = 0; k < NPOLICIES; k++)
		if (ran[k] && strcmp(bench_policies[k].name, "run-to-end") == 0)
			ref = pts[k];
	printf("\nsummary (SLO %.0f GPU s; P50/P90 at %g programs/s; accuracy and tokens over "
	    "the same programs; the sweep's rates only)\n", o->slo, o->fixed_rate);
	printf("%-13s %11s %8s %8s %7s %9s %9s %8s\n", "policy", "rate@90%SLO", "p50 s",
	    "p90 s", "acc", "acc-r2e", "tok/prog", "tok/r2e");
	if (ref != NULL)
		for (ri = 0; ri < o->nrates && ref[ri].attain >= 0.9; ri++)
			ref_rate = ref[ri].rate;
	for (k = 0; k < NPOLICIES; k++) {
		const struct point *p = pts[k], *f = NULL;
		double best = 0;

		if (!ran[k])
			continue;
		for (ri = 0; ri < o->nrates && p[ri].attain >= 0.9; ri++)
			best = p[ri].rate;
		for (ri = 0; ri < o->nrates; ri++)
			if (p[ri].rate == o->fixed_rate)
				f = &p[ri];
		printf("%-13s %11.2f %8.1f %8.1f %7.3f %+9.3f %9.0f %8.2f", bench_policies[k].name,
		    best, f ? f->p50 : NAN, f ? f->p90 : NAN, p[0].acc,
		    ref ? p[0].acc - ref[0].acc : NAN, p[0].tokens,
		    ref && ref[0].tokens > 0 ? p[0].tokens / ref[0].tokens : NAN);
		if (ref_rate > 0 && best > 0)
			printf("  rate x%.2f vs run-to-end", best / ref_rate);
		printf("\n");
	}
}

static int
policy_on(const struct opts *o, const struct bpolicy *bp)
{
	const char *s = o->policies, *name = bp->name;
	size_t n = strlen(name);

	if (s == NULL)
		return !bp->named_only;
	while (*s) {
		if (strncmp(s, name, n) == 0 && (s[n] == ',' || s[n] == '\0'))
			return 1;
		s = strchr(s, ',');
		if (s == NULL)
			break;
		s++;
	}
	return 0;
}

static void
usage(void)
{
	fprintf(stderr, "usage: bench-serve [--quick] [--workers N] [--scale X] [--slo S] "
	    "[--programs M] [--rates R,...] [--fixed-rate R] [--policies a,b] [--profile F] "
	    "[--capacity C] [--out F.tsv] [--seed S]\n");
	exit(2);
}

static void
parse(int argc, char **argv, struct opts *o)
{
	const char *rates = NULL;
	int i;

	memset(o, 0, sizeof *o);
	o->workers = 1;
	o->scale = 0.05;
	o->slo = 200;
	o->programs = 160;
	o->profile = "profiles/llama3-8b-h100.gpu";
	o->capacity = 64;
	o->out = "build/bench-serve.tsv";
	o->seed = 17;
	for (i = 1; i < argc; i++) {
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(argv[i], "--quick") == 0) {
			o->quick = 1;
			continue;
		}
		if (v == NULL)
			usage();
		i++;
		if (strcmp(argv[i - 1], "--workers") == 0) o->workers = atoi(v);
		else if (strcmp(argv[i - 1], "--scale") == 0) o->scale = atof(v);
		else if (strcmp(argv[i - 1], "--slo") == 0) o->slo = atof(v);
		else if (strcmp(argv[i - 1], "--programs") == 0) o->programs = atoi(v);
		else if (strcmp(argv[i - 1], "--rates") == 0) rates = v;
		else if (strcmp(argv[i - 1], "--fixed-rate") == 0) o->fixed_rate = atof(v);
		else if (strcmp(argv[i - 1], "--policies") == 0) o->policies = v;
		else if (strcmp(argv[i - 1], "--profile") == 0) o->profile = v;
		else if (strcmp(argv[i - 1], "--capacity") == 0) o->capacity = atoi(v);
		else if (strcmp(argv[i - 1], "--out") == 0) o->out = v;
		else if (strcmp(argv[i - 1], "--seed") == 0) o->seed = (unsigned)atoi(v);
		else usage();
	}
	if (rates == NULL)
		rates = o->quick ? "0.5,1,1.5" : "0.2,0.4,0.6,0.8,1,1.5,2";
	if (o->quick && o->programs == 160)
		o->programs = 40;
	for (const char *s = rates; s && *s && o->nrates < 16; ) {
		o->rates[o->nrates++] = atof(s);
		s = strchr(s, ',');
		s = s ? s + 1 : NULL;
	}
	if (o->fixed_rate <= 0)
		o->fixed_rate = o->rates[o->nrates > 1 ? 1 : 0];
	if (o->workers < 1 || o->workers > 16 || o->scale <= 0 || o->programs < 1)
		usage();
}

int
main(int argc, char **argv)
{
	static const char *const dextra[] = { "--log-level", "warn", NULL };
	struct opts o;
	const char *dir = harness_traces_dir();
	struct traces *tr;
	size_t *pool, npool = 0, i;
	char *tmp;
	FILE *out;
	int rc = 1;

	parse(argc, argv, &o);
	if (dir == NULL) {
		fprintf(stderr, "bench-serve: set CERTA_TRACES to the recorded traces directory\n");
		return 2;
	}
	grpc_init();
	if (traces_load(dir, &tr) != 0 || harness_tmpdir(&tmp) != 0)
		return 1;
	/* One model (an 8B-class model, as the profile), every dataset. */
	pool = calloc(traces_program_count(tr), sizeof *pool);
	for (i = 0; i < traces_program_count(tr); i++)
		if (strcmp(traces_program_at(tr, i)->model, traces_model_name(tr, 0)) == 0 &&
		    traces_program_at(tr, i)->nsamples >= 3)
			pool[npool++] = i;
	out = fopen(o.out, "w");
	if (out == NULL) {
		perror(o.out);
		return 1;
	}
	fprintf(out, "# bench-serve: profile %s, %d workers x capacity %d, SLO %.0f GPU s, "
	    "%d programs per rate, time scale %g, model %s\n", o.profile, o.workers, o.capacity,
	    o.slo, o.programs, o.scale, traces_model_name(tr, 0));
	fprintf(out, "policy\trate\tattain\tp50\tp90\taccuracy\ttokens\tfailed\n");
	printf("bench-serve: %s, %d workers x %d, SLO %.0f s (GPU time), %d programs per rate, "
	    "time scale %g, %zu programs of %s\n", o.profile, o.workers, o.capacity, o.slo,
	    o.programs, o.scale, npool, traces_model_name(tr, 0));
	printf("%-13s %6s %7s %8s %8s %6s %8s %s\n", "policy", "rate/s", "in-SLO", "p50 s",
	    "p90 s", "acc", "tok/prog", "failed");
	static struct point pts[NPOLICIES][16];
	static int ran[NPOLICIES];

	for (size_t k = 0; k < NPOLICIES; k++) {
		const struct bpolicy *bp = &bench_policies[k];
		struct harness_proc *w[16], *d;
		int wports[16], port, nw = 0;
		char pol[700], polset[760], scale[32], cap[16];
		const char *wextra[] = { "--gpu-profile", o.profile, "--time-scale", scale,
		    "--capacity", cap, "--log-level", "warn", NULL };
		const char *sets[] = { "metrics.port=0", "auth.anonymous_tenant=bench", polset,
		    NULL };

		if (!policy_on(&o, bp))
			continue;
		snprintf(scale, sizeof scale, "%g", o.scale);
		snprintf(cap, sizeof cap, "%d", o.capacity);
		snprintf(pol, sizeof pol, "%s/%s.policy", tmp, bp->name);
		snprintf(polset, sizeof polset, "policy.file=%s", pol);
		if (harness_write_file(pol, "%s", bp->text) != 0)
			goto out;
		if (bp->text[0] == '\0')
			sets[2] = NULL;   /* certa: the built-in calibrated policy */
		for (nw = 0; nw < o.workers; nw++)
			if (harness_start_worker(tmp, dir, wextra, &w[nw], &wports[nw]) != 0)
				goto out;
		{
			char sd[700];

			snprintf(sd, sizeof sd, "rm -rf %s/state", tmp);
			if (harness_sh("%s", sd) != 0)
				goto out;
		}
		if (harness_start_certad(tmp, wports, (size_t)nw, sets,
		    dextra, &d, &port) != 0)
			goto out;
		for (int ri = 0; ri < o.nrates; ri++) {
			struct point pt;

			run_rate(&o, port, bp->fifo, tr, pool, npool, o.rates[ri], &pt);
			pts[k][ri] = pt;
			ran[k] = 1;
			printf("%-13s %6.3f %6.0f%% %8.1f %8.1f %6.3f %8.0f %d\n", bp->name, pt.rate,
			    100 * pt.attain, pt.p50, pt.p90, pt.acc, pt.tokens, pt.failed);
			fprintf(out, "%s\t%g\t%.4f\t%.2f\t%.2f\t%.4f\t%.0f\t%d\n", bp->name, pt.rate,
			    pt.attain, pt.p50, pt.p90, pt.acc, pt.tokens, pt.failed);
			fflush(stdout);
			fflush(out);
		}
		{
			int st;

			harness_signal(d, 15);
			harness_wait_exit(d, 20000, &st);
			harness_proc_free(d);
			for (int j = 0; j < nw; j++) {
				harness_kill9(w[j]);
				harness_proc_free(w[j]);
			}
		}
	}
	summary(&o, pts, ran);
	rc = 0;
out:
	fclose(out);
	harness_rmrf(tmp);
	free(tmp);
	free(pool);
	traces_free(tr);
	return rc;
}
