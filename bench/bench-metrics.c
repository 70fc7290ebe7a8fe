/*
 * bench-metrics — the cost of one /metrics scrape of certad at T tenants, in process.
 *
 * Builds a real core (fresh LMDB environment, under /dev/shm when TMPDIR is not set) with T
 * tenants, each with the per-tenant series a busy fleet has (submitted, finished, tokens,
 * probe tokens, saved; a few with programs queued and running), then renders /metrics the way
 * the HTTP endpoint does (metrics_render_text) and prints per scrape:
 * the median and best wall time of the whole scrape (the collector's refresh + the render),
 * of the render alone (collector off), the bytes rendered and the allocations made (malloc,
 * calloc, realloc calls; not counted in sanitizer builds).
 *
 *   build/bin/bench-metrics [--tenants T[,T...]] [--scrapes K] [--dump FILE]
 *
 * --dump writes the text of the last count's scrape to FILE.
 *
 * Defaults: --tenants 100,2000,10000 --scrapes 20.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <grpc/grpc.h>

#include "daemon/core.h"
#include "daemon/program.h"
#include "daemon/telemetry.h"
#include "daemon/tenants.h"
#include "lib/error.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "tests/support/harness.h"
#include "tests/support/tcore.h"

/* Allocation counting: the executable's malloc family forwards to glibc's and counts. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define BENCH_COUNT_ALLOCS 0
static long
bench_allocs(void)
{
	return -1;
}
#else
#define BENCH_COUNT_ALLOCS 1
extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t size);
extern void *__libc_realloc(void *p, size_t n);
static atomic_long bench_nallocs;

void *malloc(size_t n);
void *calloc(size_t n, size_t size);
void *realloc(void *p, size_t n);

void *
malloc(size_t n)
{
	atomic_fetch_add_explicit(&bench_nallocs, 1, memory_order_relaxed);
	return __libc_malloc(n);
}

void *
calloc(size_t n, size_t size)
{
	atomic_fetch_add_explicit(&bench_nallocs, 1, memory_order_relaxed);
	return __libc_calloc(n, size);
}

void *
realloc(void *p, size_t n)
{
	atomic_fetch_add_explicit(&bench_nallocs, 1, memory_order_relaxed);
	return __libc_realloc(p, n);
}

static long
bench_allocs(void)
{
	return atomic_load_explicit(&bench_nallocs, memory_order_relaxed);
}
#endif

struct scrape {
	double us;
	size_t bytes;
	long allocs;
};

static const char *bench_dump;

/* One scrape as the endpoint renders it. */
static int
bench_scrape(struct metrics *m, struct scrape *out)
{
	char *text = NULL;
	size_t len = 0;
	long a0 = bench_allocs();
	double t0 = harness_clock_us();
	int rc = metrics_render_text(m, &text, &len);

	if (rc == 0 && bench_dump != NULL) {
		FILE *f = fopen(bench_dump, "w");
		if (f == NULL || fwrite(text, 1, len, f) != len)
			rc = -EIO;
		if (f != NULL && fclose(f) != 0)
			rc = -EIO;
	}
	free(text);
	out->us = harness_clock_us() - t0;
	out->bytes = len;
	out->allocs = BENCH_COUNT_ALLOCS ? bench_allocs() - a0 : -1;
	return rc;
}

static int
bench_cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Median and best wall time (ms) of k scrapes; bytes and allocations of the last. */
static int
bench_series(struct metrics *m, int k, double *med, double *best, size_t *bytes, long *allocs)
{
	double *us = calloc((size_t)k, sizeof *us);
	struct scrape s = { 0 };
	int i, rc = 0;

	if (us == NULL)
		return -ENOMEM;
	for (i = 0; i < k && rc == 0; i++) {
		rc = bench_scrape(m, &s);
		us[i] = s.us;
	}
	qsort(us, (size_t)k, sizeof *us, bench_cmp);
	*med = us[k / 2] / 1e3;
	*best = us[0] / 1e3;
	*bytes = s.bytes;
	*allocs = s.allocs;
	free(us);
	return rc;
}

/* A core with t tenants and their series; prints one line. */
static int
bench_one(size_t ntenants, int k)
{
	struct tcore tc;
	struct core *c;
	struct telemetry *t = NULL;
	struct scrape warm;
	double med, best, rmed, rbest;
	size_t i, bytes, rbytes;
	long allocs, rallocs;
	int rc;

	if ((rc = tcore_init(&tc, "bench-metrics")) != 0)
		goto done;
	tc.opt.map_size = (size_t)1 << 30;
	if ((rc = tcore_open(&tc)) != 0 || (rc = telemetry_new(tc.c, &t)) != 0)
		goto done;
	c = tc.c;
	for (i = 0; i < ntenants; i++) {
		struct tenants *ts = core_tenants(c);
		char name[32];
		snprintf(name, sizeof name, "tenant-%05zu", i);
		if ((rc = tenants_ensure(ts, name)) != 0)
			goto done;
		telemetry_submitted(t, name);
		telemetry_finished(t, name, "certain", 0.9, 12);
		telemetry_tokens(t, name, 1000 + i, 37 * i);
		telemetry_saved(t, name, 250 + i);
		if (i % 10 == 0) {
			/* A few with programs in progress: two queued, one of them then running. */
			telemetry_submitted(t, name);
			tenants_program_state(ts, name, 0, PROGRAM_QUEUED);
			tenants_program_state(ts, name, 0, PROGRAM_QUEUED);
			tenants_program_state(ts, name, PROGRAM_QUEUED, PROGRAM_RUNNING);
		}
	}
	if ((rc = bench_scrape(telemetry_metrics(t), &warm)) != 0 ||
	    (rc = bench_series(telemetry_metrics(t), k, &med, &best, &bytes, &allocs)) != 0)
		goto done;
	/* The render alone: the collector off (the gauges keep the values it last set). */
	metrics_set_collector(telemetry_metrics(t), NULL, NULL);
	if ((rc = bench_series(telemetry_metrics(t), k, &rmed, &rbest, &rbytes, &rallocs)) != 0)
		goto done;
	printf("%8zu %10.3f %10.3f %10.3f %10.3f %10zu %10ld %10ld\n", ntenants, med, best,
	    rmed, rbest, bytes, allocs, rallocs);
	fflush(stdout);
done:
	telemetry_free(t);
	(void)tcore_fini(&tc);
	return rc;
}

int
main(int argc, char **argv)
{
	const char *list = "100,2000,10000";
	int k = 20, i;
	char *copy, *tok, *save = NULL;
	struct stat sb;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--tenants") == 0 && i + 1 < argc) {
			list = argv[++i];
		} else if (strcmp(argv[i], "--dump") == 0 && i + 1 < argc) {
			bench_dump = argv[++i];
		} else if (strcmp(argv[i], "--scrapes") == 0 && i + 1 < argc) {
			k = atoi(argv[++i]);
		} else {
			fprintf(stderr, "usage: bench-metrics [--tenants T[,T...]] [--scrapes K] "
			    "[--dump FILE]\n");
			return 2;
		}
	}
	if (k < 1) {
		fprintf(stderr, "bench-metrics: --scrapes must be at least 1\n");
		return 2;
	}
	/* Creating thousands of tenants is thousands of fdatasyncs: keep them in memory. */
	if (getenv("TMPDIR") == NULL && stat("/dev/shm", &sb) == 0 && S_ISDIR(sb.st_mode))
		setenv("TMPDIR", "/dev/shm", 0);
	printf("# one /metrics scrape (ms: median, best of %d); render = collector off\n", k);
	printf("%8s %10s %10s %10s %10s %10s %10s %10s\n", "tenants", "scrape", "best",
	    "render", "best", "bytes", "allocs", "r_allocs");
	copy = strdup(list);
	if (copy == NULL)
		return 1;
	log_init("bench-metrics", LOG_FORMAT_PLAIN, LOG_LVL_WARN);
	grpc_init();
	i = 0;
	for (tok = strtok_r(copy, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
		long n = atol(tok);
		int rc;
		if (n < 1) {
			fprintf(stderr, "bench-metrics: bad tenant count '%s'\n", tok);
			i = 2;
			break;
		}
		rc = bench_one((size_t)n, k);
		if (rc != 0) {
			fprintf(stderr, "bench-metrics: %zu tenants: %s\n", (size_t)n,
			    certa_strerror(rc));
			i = 1;
			break;
		}
	}
	grpc_shutdown();
	free(copy);
	return i;
}
