/*
 * bench-scale — the control plane at cluster scale: certad driving N live programs.
 *
 * For each N it starts a fresh certad (state on disk under $TMPDIR, default /tmp) whose
 * replay workers (--capacity 100000, no step delay) are not up yet, submits N cot programs
 * (they queue: N live), then starts the workers, so every program runs at once.  While they
 * run, a prober measures Get, List (page of 50) and /readyz latency, one program's progress
 * events are watched (gap between two), and /metrics is scraped each second.  With
 * --kill9 the run kills certad with SIGKILL after a third of the expected steps, restarts it
 * on the same state and measures the time until /readyz answers 200 (recovery).  It prints:
 * accepted/s, steps/s through certad, certad CPU per step, the workers' CPU per step (from
 * their first step on: their trace load left out), decision time and dispatch pass
 * time (certad's own histograms: certa_decision_seconds, certa_dispatch_pass_seconds),
 * commit batch size, Get/List/readyz p50/p99, progress gap p50/p99, peak RSS, LMDB bytes
 * per program and the recovery time.  Needs CERTA_TRACES.
 *
 *   CERTA_TRACES=DIR build/bin/bench-scale [--programs 1000,5000,10000] [--workers W]
 *                                          [--kill9] [--floor] [--tenants T]
 *                                          [--deadline-ms D]
 * --tenants T creates T tenants (Admin/CreateTenant over the admin socket) and submits the
 * programs round-robin with their keys (default: one anonymous tenant).  --deadline-ms D
 * gives every program (the watched one aside) a deadline between the workers' start and D
 * ms after it, spread evenly in submission order (the k-th of N at (k + 1) D / N), as the
 * deadlines of programs that arrived over time pass one after another (default: none).  The
 * start is fixed before the first Submit (2 ms per program from then, at least 3 s) and the
 * bench waits for it, so the same D ends about the same share of programs whatever the
 * submission rate; they end for it wherever they are, queued or with a step in flight.
 * --floor also starts an idle certad (no workers, no programs) and probes it the same way:
 * the latency floor of this machine under the same load.  The loop lag and the p99 of each
 * loop phase (certa_loop_lag_seconds, certa_loop_phase_seconds) come from certad.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <grpc/grpc.h>

#include "certa/v1/admin.pb-c.h"
#include "certa/v1/reasoning.pb-c.h"
#include "lib/error.h"
#include "lib/rpc_client.h"
#include "lib/traces.h"
#include "tests/support/certa_client.h"
#include "tests/support/harness.h"

#define MAX_WORKERS 256
#define MAX_RUNS 8
#define SUBMITTERS 4
#define LAT_CAP 200000

/* Latencies (us) one run collects. */
struct lat {
	double *v;
	size_t n;
};

static void
lat_add(struct lat *l, double us)
{
	if (l->v == NULL)
		l->v = calloc(LAT_CAP, sizeof *l->v);
	if (l->v != NULL && l->n < LAT_CAP)
		l->v[l->n++] = us;
}

struct run {
	const struct traces *tr;
	const char *traces_dir;
	char dir[512];
	int dport, mport;
	size_t nprog;
	int nworkers;
	int wport[MAX_WORKERS];
	struct harness_proc *w[MAX_WORKERS];
	struct harness_proc *d;
	const char *const *sets;
	/* ids accepted so far (submitters append under lock) */
	pthread_mutex_t lock;
	char (*ids)[64];
	size_t *id_tenant;          /* with --tenants: the tenant of each id */
	size_t nids, next_prog;
	volatile int stop;          /* probers stop */
	volatile int paused;        /* certad is being killed / restarted */
	struct lat get, list, readyz, gap;
	size_t errors;
	struct run *floor;          /* --floor: an idle certad probed the same way, or NULL */
	size_t ntenants;            /* --tenants: programs go round-robin over their keys */
	char (*keys)[160];
	int64_t deadline_ms;        /* --deadline-ms: the last deadline after the workers' start;
	                             * 0 none */
	int64_t workers_at_ms;      /* when the workers start (unix ms), with deadline_ms */
};

/* Creates r->ntenants tenants over the admin socket and keeps their keys. */
static int
create_tenants(struct run *r)
{
	char target[600], name[32];
	struct rpc_channel *ch;
	size_t i;
	int rc = 0;

	snprintf(target, sizeof target, "unix:%s/admin.sock", r->dir);
	if (rpc_channel_new(target, &ch) != 0)
		return -1;
	r->keys = calloc(r->ntenants, sizeof *r->keys);
	for (i = 0; r->keys != NULL && i < r->ntenants && rc == 0; i++) {
		Certa__V1__CreateTenantRequest req = CERTA__V1__CREATE_TENANT_REQUEST__INIT;
		Certa__V1__Tenant t = CERTA__V1__TENANT__INIT;
		Certa__V1__CreateTenantReply *rep = NULL;
		grpc_status_code st;
		snprintf(name, sizeof name, "tenant-%zu", i);
		t.name = name;
		t.weight = 1 + (uint32_t)(i % 4);
		req.tenant = &t;
		rc = rpc_sync_unary(ch, "/certa.v1.Admin/CreateTenant", &req.base,
		    &certa__v1__create_tenant_reply__descriptor, 10000, NULL, 0,
		    (ProtobufCMessage **)&rep, &st, NULL);
		if (rc == 0 && st != GRPC_STATUS_OK)
			rc = -1;
		if (rc == 0) {
			snprintf(r->keys[i], sizeof r->keys[i], "%s", rep->api_key);
			protobuf_c_message_free_unpacked(&rep->base, NULL);
		}
	}
	rpc_channel_free(ch);
	return r->keys != NULL ? rc : -1;
}

static int64_t
unix_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sum of every sample of the family name (any labels; with label, only the samples whose
 * labels include it, e.g. reason="deadline"); -1 when there is none. */
static double
metric_sum_where(const char *body, const char *name, const char *label)
{
	size_t nl = strlen(name);
	const char *p = body;
	double sum = 0;
	int found = 0;

	while (p != NULL && *p != '\0') {
		if (strncmp(p, name, nl) == 0 && (p[nl] == ' ' || p[nl] == '{')) {
			const char *sp = strchr(p, ' '), *cb = NULL;
			if (p[nl] == '{') {
				cb = strchr(p, '}');
				sp = cb != NULL ? strchr(cb, ' ') : NULL;
			}
			if (label != NULL) {
				const char *l = cb != NULL ? strstr(p, label) : NULL;
				if (l == NULL || l > cb)
					sp = NULL;
			}
			if (sp != NULL) {
				sum += strtod(sp + 1, NULL);
				found = 1;
			}
		}
		p = strchr(p, '\n');
		if (p != NULL)
			p++;
	}
	return found ? sum : -1;
}

/* Sum of every sample of a metric family line that starts with name (any labels). */
static double
metric_sum(const char *body, const char *name)
{
	return metric_sum_where(body, name, NULL);
}

/* The cumulative buckets of histogram NAME (with labels, or none: NULL) into les / cnt (at
 * most 64); their number, 0 when absent. */
static size_t
metric_hist_buckets(const char *body, const char *name, const char *labels, double *les,
    double *cnt)
{
	char pfx[256];
	const char *p = body;
	size_t n = 0;

	snprintf(pfx, sizeof pfx, "%s_bucket{%s%sle=\"", name, labels != NULL ? labels : "",
	    labels != NULL ? "," : "");
	while (p != NULL && *p != '\0' && n < 64) {
		if (strncmp(p, pfx, strlen(pfx)) == 0) {
			const char *v = p + strlen(pfx);
			les[n] = strncmp(v, "+Inf", 4) == 0 ? 1e30 : strtod(v, NULL);
			cnt[n] = strtod(strchr(v, ' ') + 1, NULL);
			n++;
		}
		p = strchr(p, '\n');
		if (p != NULL)
			p++;
	}
	return n;
}

/* The q-quantile of a Prometheus histogram NAME (no labels) from its buckets: the upper
 * bound of the bucket holding it (an upper estimate); -1 when absent or empty. */
static double
metric_hist_ql(const char *body, const char *name, const char *labels, double q)
{
	double les[64], cnt[64];
	size_t n = metric_hist_buckets(body, name, labels, les, cnt), i;

	if (n == 0 || cnt[n - 1] <= 0)
		return -1;
	for (i = 0; i < n; i++)
		if (cnt[i] >= q * cnt[n - 1])
			return les[i];
	return les[n - 1];
}

/* The share of histogram NAME's observations over le (a bucket bound); -1 when absent, empty
 * or le is not a bound. */
static double
metric_hist_over(const char *body, const char *name, double le)
{
	double les[64], cnt[64];
	size_t n = metric_hist_buckets(body, name, NULL, les, cnt), i;

	if (n == 0 || cnt[n - 1] <= 0)
		return -1;
	for (i = 0; i < n; i++)
		if (les[i] >= le * (1 - 1e-9) && les[i] <= le * (1 + 1e-9))
			return 1 - cnt[i] / cnt[n - 1];
	return -1;
}

/* The value of the one sample whose line starts with series ("name{labels}"); -1 if none. */
static double
metric_series(const char *body, const char *series)
{
	size_t sl = strlen(series);
	const char *p = body;

	while (p != NULL && *p != '\0') {
		if (strncmp(p, series, sl) == 0 && p[sl] == ' ')
			return strtod(p + sl + 1, NULL);
		p = strchr(p, '\n');
		if (p != NULL)
			p++;
	}
	return -1;
}

static double
metric_hist_q(const char *body, const char *name, double q)
{
	return metric_hist_ql(body, name, NULL, q);
}

static char *
scrape(int mport)
{
	/* 16 MiB: with thousands of tenants the per-tenant series pass 1 MiB. */
	char *buf = malloc(1 << 24);

	if (buf == NULL)
		return NULL;
	if (harness_http_get(mport, "/metrics", buf, 1 << 24) != 200) {
		free(buf);
		return NULL;
	}
	return buf;
}

/* utime + stime in seconds from a /proc stat file (a process's or a thread's); 0 if unreadable. */
static double
stat_cpu(const char *path)
{
	char *s = NULL, *p;
	unsigned long ut = 0, st = 0;
	int i;

	if (harness_read_file(path, &s) != 0)
		return 0;
	p = strrchr(s, ')');
	for (i = 0; p != NULL && i < 12; i++)
		p = strchr(p + 1, ' ');
	if (p != NULL)
		sscanf(p + 1, "%lu %lu", &ut, &st);
	free(s);
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* utime + stime of pid in seconds, its peak RSS and its anonymous RSS now in kB (LMDB's
 * map counts in RSS as file pages; RssAnon is the heap). */
static long proc_anon_kb;

static double
proc_cpu(pid_t pid, long *hwm_kb)
{
	char path[64], *s = NULL, *p;

	snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
	if (hwm_kb != NULL && harness_read_file(path, &s) == 0) {
		p = strstr(s, "VmHWM:");
		*hwm_kb = p != NULL ? strtol(p + 6, NULL, 10) : 0;
		p = strstr(s, "RssAnon:");
		proc_anon_kb = p != NULL ? strtol(p + 8, NULL, 10) : 0;
		free(s);
	}
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	return stat_cpu(path);
}

/* CPU seconds of pid's main thread (certad's loop thread: the one the loop's work is on). */
static double
loop_cpu(pid_t pid)
{
	char path[96];

	snprintf(path, sizeof path, "/proc/%d/task/%d/stat", (int)pid, (int)pid);
	return stat_cpu(path);
}

/* CPU seconds of all of a run's workers. */
static double
workers_cpu(const struct run *r)
{
	double s = 0;
	int i;

	for (i = 0; i < r->nworkers; i++)
		if (r->w[i] != NULL)
			s += proc_cpu(harness_pid(r->w[i]), NULL);
	return s;
}

/* Submitters: Submit, read Accepted, keep the id, drop the stream (the program goes on). */
static void *
submitter(void *arg)
{
	struct run *r = arg;
	struct rpc_channel *ch;

	if (certa_client_channel(r->dport, &ch) != 0)
		return NULL;
	for (;;) {
		Certa__V1__ProgramSpec spec = CERTA__V1__PROGRAM_SPEC__INIT;
		Certa__V1__ProgramEvent *ev = NULL;
		const struct traces_program *pg;
		struct rpc_stream *s;
		size_t k;

		pthread_mutex_lock(&r->lock);
		k = r->next_prog < r->nprog ? r->next_prog++ : (size_t)-1;
		pthread_mutex_unlock(&r->lock);
		if (k == (size_t)-1)
			break;
		pg = traces_program_at(r->tr, k % traces_program_count(r->tr));
		spec.problem = (char *)pg->problem;
		spec.model = (char *)pg->model;
		if (r->deadline_ms > 0)
			spec.deadline_unix_ms = r->workers_at_ms +
			    (int64_t)((double)r->deadline_ms * (double)(k + 1) / (double)r->nprog);
		if (certa_client_submit(ch, &spec, r->ntenants > 0 ? r->keys[k % r->ntenants] : NULL,
		    60000, &s) != 0) {
			r->errors++;
			continue;
		}
		if (rpc_sync_stream_next(s, 60000, (ProtobufCMessage **)&ev) == 1 &&
		    ev->event_case == CERTA__V1__PROGRAM_EVENT__EVENT_ACCEPTED) {
			pthread_mutex_lock(&r->lock);
			if (r->ntenants > 0)
				r->id_tenant[r->nids] = k % r->ntenants;
			snprintf(r->ids[r->nids++], 64, "%s", ev->accepted->program_id);
			pthread_mutex_unlock(&r->lock);
		} else {
			r->errors++;
		}
		if (ev != NULL)
			protobuf_c_message_free_unpacked(&ev->base, NULL);
		rpc_sync_stream_cancel(s);
		rpc_sync_stream_close(s, NULL);
	}
	rpc_channel_free(ch);
	return NULL;
}

/* Prober: Get of a random accepted program, List (50), /readyz, every 20 ms. */
static void *
prober(void *arg)
{
	struct run *r = arg;
	struct rpc_channel *ch = NULL;
	unsigned seed = 7;
	int port = -1;
	char body[256];

	while (!r->stop) {
		Certa__V1__GetRequest g = CERTA__V1__GET_REQUEST__INIT;
		Certa__V1__ListRequest l = CERTA__V1__LIST_REQUEST__INIT;
		ProtobufCMessage *rep = NULL;
		grpc_status_code st;
		char id[64];
		const char *key;
		double t0;

		if (r->paused) {
			usleep(20000);
			continue;
		}
		if (port != r->dport) {
			if (ch != NULL)
				rpc_channel_free(ch);
			ch = NULL;
			if (certa_client_channel(r->dport, &ch) != 0) {
				usleep(20000);
				continue;
			}
			port = r->dport;
		}
		t0 = harness_clock_us();
		if (harness_http_get(r->mport, "/readyz", body, sizeof body) > 0)
			lat_add(&r->readyz, harness_clock_us() - t0);   /* any answer (200 or 503) */
		/* A program, asked for (and its tenant's list) with its tenant's key. */
		pthread_mutex_lock(&r->lock);
		key = NULL;
		id[0] = '\0';
		if (r->nids > 0) {
			size_t j = (size_t)rand_r(&seed) % r->nids;
			snprintf(id, sizeof id, "%s", r->ids[j]);
			key = r->ntenants > 0 ? r->keys[r->id_tenant[j]] : NULL;
		}
		pthread_mutex_unlock(&r->lock);
		if (id[0] != '\0') {
			g.program_id = id;
			t0 = harness_clock_us();
			if (certa_client_unary(ch, "/certa.v1.Reasoning/Get", &g.base,
			    &certa__v1__program__descriptor, 10000, key, &rep, &st, NULL) == 0 &&
			    st == GRPC_STATUS_OK)
				lat_add(&r->get, harness_clock_us() - t0);
			if (rep != NULL)
				protobuf_c_message_free_unpacked(rep, NULL);
			rep = NULL;
		}
		l.page_size = 50;
		t0 = harness_clock_us();
		if (certa_client_unary(ch, "/certa.v1.Reasoning/List", &l.base,
		    &certa__v1__list_reply__descriptor, 10000, key, &rep, &st, NULL) == 0 &&
		    st == GRPC_STATUS_OK)
			lat_add(&r->list, harness_clock_us() - t0);
		if (rep != NULL)
			protobuf_c_message_free_unpacked(rep, NULL);
		usleep(20000);
	}
	if (ch != NULL)
		rpc_channel_free(ch);
	return NULL;
}

/* Watcher: submits one program (counted in N) and records the gaps between its progress
 * events while it runs. */
static void *
watcher(void *arg)
{
	struct run *r = arg;
	const struct traces_program *pg = traces_program_at(r->tr, 0);
	Certa__V1__ProgramSpec spec = CERTA__V1__PROGRAM_SPEC__INIT;
	Certa__V1__ProgramEvent *ev;
	struct rpc_channel *ch;
	struct rpc_stream *s;
	double last = 0;

	if (certa_client_channel(r->dport, &ch) != 0)
		return NULL;
	spec.problem = (char *)pg->problem;
	spec.model = (char *)pg->model;
	if (certa_client_submit(ch, &spec, NULL, 600000, &s) == 0) {
		while (rpc_sync_stream_next(s, 600000, (ProtobufCMessage **)&ev) == 1) {
			double t = harness_clock_us();
			if (ev->event_case == CERTA__V1__PROGRAM_EVENT__EVENT_PROGRESS) {
				if (last > 0)
					lat_add(&r->gap, t - last);
				last = t;
			}
			protobuf_c_message_free_unpacked(&ev->base, NULL);
		}
		rpc_sync_stream_close(s, NULL);
	}
	rpc_channel_free(ch);
	return NULL;
}

static int
start_certad(struct run *r)
{
	const char *extra[2 * MAX_WORKERS + 4];
	char mpf[600], waddr[MAX_WORKERS][64];
	size_t ne = 0, i;
	int rc;

	extra[ne++] = "--log-level";
	extra[ne++] = "warn";
	for (i = 0; i < (size_t)r->nworkers; i++) {
		snprintf(waddr[i], sizeof waddr[i], "127.0.0.1:%d", r->wport[i]);
		extra[ne++] = "--worker";
		extra[ne++] = waddr[i];
	}
	extra[ne] = NULL;
	snprintf(mpf, sizeof mpf, "%s/m.port", r->dir);
	unlink(mpf);
	rc = harness_start_certad(r->dir, NULL, 0, r->sets, extra, &r->d, &r->dport);
	if (rc != 0)
		return rc;
	return harness_wait_port_file(mpf, 20000, &r->mport);
}

/* Waits up to ms for /readyz to answer 200; returns the time it took (us) or -1. */
static double
wait_ready(struct run *r, int ms)
{
	double t0 = harness_clock_us();
	char body[256];

	while (harness_clock_us() - t0 < ms * 1000.0) {
		if (harness_http_get(r->mport, "/readyz", body, sizeof body) == 200)
			return harness_clock_us() - t0;
		usleep(2000);
	}
	return -1;
}

static void
print_lat(const char *what, struct lat *l)
{
	printf("  %-8s n=%-6zu p50 %9.2f ms  p99 %9.2f ms\n", what, l->n,
	    harness_percentile(l->v, l->n, 0.5) / 1000, harness_percentile(l->v, l->n, 0.99) / 1000);
}

static int
run_one(struct run *r, int kill9)
{
	pthread_t sub[SUBMITTERS], pr, wa, fpr;
	char *m0 = NULL, *m1 = NULL, mdb[600], body[256];
	double t0, t1, tsub, cpu0, cpu1 = 0, steps0 = 0, steps = 0, recover_us = -1;
	double live_peak = 0, cpu_before_kill = 0, steps_before_kill = 0;
	double lcpu0, lcpu1, lcpu_before_kill = 0;   /* the loop thread's share */
	double wcpu0 = -1, wsteps0 = 0;   /* workers' CPU and steps when steps began to flow */
	double wcpu1 = 0, wsteps = 0;
	long hwm = 0;
	struct stat sb;
	size_t i;
	int rc;

	pthread_mutex_init(&r->lock, NULL);
	r->ids = calloc(r->nprog + 1, sizeof *r->ids);
	r->id_tenant = calloc(r->nprog + 1, sizeof *r->id_tenant);
	r->nids = r->next_prog = 0;
	r->stop = r->paused = 0;
	memset(&r->get, 0, sizeof r->get);
	memset(&r->list, 0, sizeof r->list);
	memset(&r->readyz, 0, sizeof r->readyz);
	memset(&r->gap, 0, sizeof r->gap);
	for (i = 0; i < (size_t)r->nworkers; i++)
		r->wport[i] = harness_free_port();
	if ((rc = start_certad(r)) != 0)
		return rc;
	if (wait_ready(r, 20000) < 0)
		return CERTA_ETIMEOUT;
	if (r->ntenants > 0) {
		double tt = harness_clock_us();
		if (create_tenants(r) != 0) {
			fprintf(stderr, "bench-scale: cannot create %zu tenants\n", r->ntenants);
			return -1;
		}
		printf("  %zu tenants created in %.1f s\n", r->ntenants,
		    (harness_clock_us() - tt) / 1e6);
	}
	if (r->floor != NULL) {
		pthread_mutex_init(&r->floor->lock, NULL);
		if ((rc = start_certad(r->floor)) != 0)
			return rc;
		if (wait_ready(r->floor, 20000) < 0)
			return CERTA_ETIMEOUT;
	}
	/* 1. Submit N - 1 programs and the watched one while no worker is up: all queue. */
	t0 = harness_clock_us();
	r->workers_at_ms = unix_ms() + 3000 + 2 * (int64_t)r->nprog;
	r->nprog--;
	for (i = 0; i < SUBMITTERS; i++)
		pthread_create(&sub[i], NULL, submitter, r);
	for (i = 0; i < SUBMITTERS; i++)
		pthread_join(sub[i], NULL);
	r->nprog++;
	tsub = (harness_clock_us() - t0) / 1e6;
	pthread_create(&wa, NULL, watcher, r);
	usleep(200000);
	if (r->deadline_ms > 0) {
		int64_t wait = r->workers_at_ms - unix_ms();
		if (wait > 0)
			usleep((useconds_t)wait * 1000);
		else
			printf("  (the workers start %lld ms later than the deadlines assume)\n",
			    (long long)-wait);
	}
	/* 2. Workers up: every program runs. */
	cpu0 = proc_cpu(harness_pid(r->d), NULL);
	lcpu0 = loop_cpu(harness_pid(r->d));
	m0 = scrape(r->mport);
	steps0 = m0 != NULL ? metric_sum(m0, "certa_step_duration_seconds_count") : 0;
	if (steps0 < 0)
		steps0 = 0;
	pthread_create(&pr, NULL, prober, r);
	if (r->floor != NULL)
		pthread_create(&fpr, NULL, prober, r->floor);
	t0 = harness_clock_us();
	for (i = 0; i < (size_t)r->nworkers; i++) {
		char port[64], *argv[16];
		char *bin = harness_bin("certa-worker");
		char log[600];
		int k = 0;
		snprintf(port, sizeof port, "127.0.0.1:%d", r->wport[i]);
		snprintf(log, sizeof log, "%s/w%zu.log", r->dir, i);
		argv[k++] = bin;
		argv[k++] = "--listen";
		argv[k++] = port;
		argv[k++] = "--engine";
		argv[k++] = "replay";
		argv[k++] = "--traces";
		argv[k++] = (char *)r->traces_dir;
		argv[k++] = "--capacity";
		argv[k++] = "100000";
		argv[k++] = "--log-level";
		argv[k++] = "warn";
		argv[k] = NULL;
		if (harness_spawn(&r->w[i], log, argv) != 0)
			return -1;
		free(bin);
	}
	/* 3. Until every program ended (certa_programs of live states drop to 0). */
	for (;;) {
		char *m;
		double live, fin;
		usleep(500000);
		m = scrape(r->mport);
		if (m == NULL)
			continue;
		live = metric_sum(m, "certa_programs") -
		    0;  /* by tenant and state, finished states included: see below */
		{
			/* live = queued + running */
			double q = 0, run = 0;
			const char *p = m;
			while ((p = strstr(p, "certa_programs{")) != NULL) {
				const char *sp = strchr(p, '}');
				if (sp != NULL && strstr(p, "state=\"queued\"") != NULL &&
				    strstr(p, "state=\"queued\"") < sp)
					q += strtod(sp + 2, NULL);
				if (sp != NULL && strstr(p, "state=\"running\"") != NULL &&
				    strstr(p, "state=\"running\"") < sp)
					run += strtod(sp + 2, NULL);
				p = sp != NULL ? sp : p + 1;
			}
			live = q + run;
		}
		if (live > live_peak)
			live_peak = live;
		if (getenv("BENCH_SCALE_DEBUG") != NULL)
			fprintf(stderr, "t=%.1f live=%.0f steps=%.0f\n", (harness_clock_us() - t0) / 1e6,
			    live, metric_sum(m, "certa_step_duration_seconds_count"));
		fin = metric_sum(m, "certa_step_duration_seconds_count");
		if (wcpu0 < 0 && fin - steps0 > 0) {
			/* The workers serve: their trace load is behind them. */
			wcpu0 = workers_cpu(r);
			wsteps0 = fin;
		}
		if (kill9 && recover_us < 0 && fin - steps0 > 0 && harness_clock_us() - t0 > 3e6) {
			/* 4. kill -9 3 s into the run, with whatever is live; restart; time to
			 * ready. */
			double tk;
			cpu_before_kill = proc_cpu(harness_pid(r->d), NULL) - cpu0;
			lcpu_before_kill = loop_cpu(harness_pid(r->d)) - lcpu0;
			steps_before_kill = fin - steps0;
			r->paused = 1;
			harness_kill9(r->d);
			harness_proc_free(r->d);
			r->d = NULL;
			tk = harness_clock_us();
			if ((rc = start_certad(r)) != 0)
				return rc;
			recover_us = harness_clock_us() - tk;
			{
				double w = wait_ready(r, 60000);
				recover_us = w < 0 ? -1 : harness_clock_us() - tk;
			}
			printf("  kill -9 with %.0f live: /readyz 200 again %.2f s after the restart "
			    "(includes the first worker health check)\n", live, recover_us / 1e6);
			cpu0 = proc_cpu(harness_pid(r->d), NULL);
			lcpu0 = loop_cpu(harness_pid(r->d));
			free(m);
			m = scrape(r->mport);
			steps0 = m != NULL ? metric_sum(m, "certa_step_duration_seconds_count") : 0;
			if (steps0 < 0)
				steps0 = 0;
			r->paused = 0;
			free(m);
			continue;
		}
		free(m);
		if (live == 0)
			break;
	}
	t1 = harness_clock_us();
	wcpu1 = workers_cpu(r) - wcpu0;
	wsteps = metric_sum(m1 = scrape(r->mport), "certa_step_duration_seconds_count") - wsteps0;
	free(m1);
	m1 = NULL;
	cpu1 = proc_cpu(harness_pid(r->d), &hwm) - cpu0 + cpu_before_kill;
	lcpu1 = loop_cpu(harness_pid(r->d)) - lcpu0 + lcpu_before_kill;
	m1 = scrape(r->mport);
	steps = (m1 != NULL ? metric_sum(m1, "certa_step_duration_seconds_count") : 0) - steps0 +
	    steps_before_kill;
	r->stop = 1;
	pthread_join(pr, NULL);
	if (r->floor != NULL) {
		r->floor->stop = 1;
		pthread_join(fpr, NULL);
	}
	pthread_join(wa, NULL);
	snprintf(mdb, sizeof mdb, "%s/state/data.mdb", r->dir);
	printf("N=%zu workers=%d tenants=%zu deadline=%lld ms (state on %s)\n", r->nprog,
	    r->nworkers, r->ntenants > 0 ? r->ntenants : 1, (long long)r->deadline_ms, r->dir);
	printf("  accepted %zu in %.2f s: %.0f programs/s  (errors %zu)\n", r->nids + 1, tsub,
	    (r->nids + 1) / tsub, r->errors);
	printf("  live peak %.0f; %.0f steps in %.2f s: %.0f steps/s through certad\n",
	    live_peak, steps, (t1 - t0) / 1e6, steps / ((t1 - t0) / 1e6));
	if (r->deadline_ms > 0 && m1 != NULL) {
		double dl = metric_sum_where(m1, "certa_programs_finished_total",
		    "reason=\"deadline\"");
		printf("  ended for their deadline: %.0f of %zu programs\n", dl > 0 ? dl : 0,
		    r->nprog);
	}
	printf("  certad CPU %.2f s: %.1f us per step; peak RSS %.1f MB (anonymous at the end "
	    "%.1f MB)\n", cpu1, steps > 0 ? cpu1 * 1e6 / steps : 0, hwm / 1024.0,
	    proc_anon_kb / 1024.0);
	printf("  certad loop thread CPU %.2f s: %.1f us per step\n", lcpu1,
	    steps > 0 ? lcpu1 * 1e6 / steps : 0);
	if (wcpu0 >= 0 && wsteps > 0 && !kill9)   /* a restart resets the step count */
		printf("  workers CPU %.2f s from their first step on: %.1f us per step\n", wcpu1,
		    wcpu1 * 1e6 / wsteps);
	if (m1 != NULL) {
		printf("  decision (step result -> decided) p50 <= %.0f us  p99 <= %.0f us  mean %.1f "
		    "us  over 50 us %.2f%%\n",
		    metric_hist_q(m1, "certa_decision_seconds", 0.5) * 1e6,
		    metric_hist_q(m1, "certa_decision_seconds", 0.99) * 1e6,
		    metric_sum(m1, "certa_decision_seconds_sum") * 1e6 /
		    metric_sum(m1, "certa_decision_seconds_count"),
		    100 * metric_hist_over(m1, "certa_decision_seconds", 50e-6));
		printf("  dispatch pass p50 <= %.0f us  p99 <= %.0f us; passes %.0f, %.1f us of pass "
		    "per step (wall)\n",
		    metric_hist_q(m1, "certa_dispatch_pass_seconds", 0.5) * 1e6,
		    metric_hist_q(m1, "certa_dispatch_pass_seconds", 0.99) * 1e6,
		    metric_sum(m1, "certa_dispatch_pass_seconds_count"),
		    steps > 0 ? metric_sum(m1, "certa_dispatch_pass_seconds_sum") * 1e6 / steps : 0);
		printf("  commits %.0f (LMDB transactions %.0f), steps per commit p50 <= %.0f  "
		    "p99 <= %.0f\n", metric_sum(m1, "certa_store_commit_steps_count"),
		    metric_sum(m1, "certa_store_transactions_total"),
		    metric_hist_q(m1, "certa_store_commit_steps", 0.5),
		    metric_hist_q(m1, "certa_store_commit_steps", 0.99));
	}
	print_lat("Get", &r->get);
	print_lat("List", &r->list);
	print_lat("/readyz", &r->readyz);
	print_lat("gap", &r->gap);
	if (r->floor != NULL) {
		printf("  floor: an idle certad (no workers, no programs) probed the same way:\n");
		print_lat("List", &r->floor->list);
		print_lat("/readyz", &r->floor->readyz);
	}
	if (m1 != NULL) {
		static const char *const ph[] = { "bridge", "serialize", "commit", "store", "dispatch",
		    "tick" };
		size_t k;
		printf("  loop lag (heartbeat) p50 <= %.1f ms  p99 <= %.1f ms; loop phases p99:",
		    metric_hist_q(m1, "certa_loop_lag_seconds", 0.5) * 1e3,
		    metric_hist_q(m1, "certa_loop_lag_seconds", 0.99) * 1e3);
		for (k = 0; k < sizeof ph / sizeof ph[0]; k++) {
			char sel[64];
			snprintf(sel, sizeof sel, "phase=\"%s\"", ph[k]);
			printf(" %s <= %.1f ms", ph[k],
			    metric_hist_ql(m1, "certa_loop_phase_seconds", sel, 0.99) * 1e3);
		}
		printf("\n  loop phases n / mean / share of the run:");
		for (k = 0; k < sizeof ph / sizeof ph[0]; k++) {
			char ser[96];
			double cnt, sum;
			snprintf(ser, sizeof ser, "certa_loop_phase_seconds_count{phase=\"%s\"}", ph[k]);
			cnt = metric_series(m1, ser);
			snprintf(ser, sizeof ser, "certa_loop_phase_seconds_sum{phase=\"%s\"}", ph[k]);
			sum = metric_series(m1, ser);
			printf(" %s %.0f / %.1f ms / %.0f%%", ph[k], cnt, cnt > 0 ? sum / cnt * 1e3 : 0,
			    sum * 1e6 / (t1 - t0) * 100);
		}
		printf("\n");
	}
	if (stat(mdb, &sb) == 0) {
		double used = m1 != NULL ? metric_sum(m1, "certa_store_map_used_bytes") : -1;
		printf("  data.mdb %.1f MB (%.0f bytes per program; map used %.0f bytes per "
		    "program)\n", sb.st_size / 1e6, (double)sb.st_size / r->nprog,
		    used / r->nprog);
	}
	if (kill9)
		printf("  recovery (kill -9 -> /readyz 200): %.2f s\n", recover_us / 1e6);
	(void)body;
	fflush(stdout);
	free(m0);
	free(m1);
	for (i = 0; i < (size_t)r->nworkers; i++) {
		harness_proc_free(r->w[i]);
		r->w[i] = NULL;
	}
	harness_proc_free(r->d);
	r->d = NULL;
	if (r->floor != NULL) {
		harness_proc_free(r->floor->d);
		r->floor->d = NULL;
		free(r->floor->list.v);
		free(r->floor->readyz.v);
		memset(&r->floor->list, 0, sizeof r->floor->list);
		memset(&r->floor->readyz, 0, sizeof r->floor->readyz);
	}
	free(r->ids);
	free(r->id_tenant);
	free(r->keys);
	r->keys = NULL;
	free(r->get.v);
	free(r->list.v);
	free(r->readyz.v);
	free(r->gap.v);
	return 0;
}

int
main(int argc, char **argv)
{
	const char *sets[] = { "metrics.port=0", "admin.socket=", "auth.anonymous_tenant=bench",
	    "quota.max_concurrent_programs=1000000", "workers.health_interval=200ms",
	    "workers.max_inflight=100000", NULL, NULL, NULL };
	const char *dir = harness_traces_dir();
	size_t progs[MAX_RUNS] = { 1000 }, nruns = 1, i;
	struct traces *tr = NULL;
	struct run r;
	char *tmp = NULL, mpset[600];
	int nworkers = 1, kill9 = 0, floor = 0, a;
	size_t ntenants = 0;
	int64_t deadline_ms = 0;
	char asock[600];
	struct run fr;
	char fmpset[600];
	const char *fsets[8];

	for (a = 1; a < argc; a++) {
		if (strcmp(argv[a], "--programs") == 0 && a + 1 < argc) {
			char *s = argv[++a], *e;
			nruns = 0;
			while (*s != '\0' && nruns < MAX_RUNS) {
				progs[nruns++] = strtoul(s, &e, 10);
				s = *e == ',' ? e + 1 : e;
				if (e == s && *e != '\0')
					break;
			}
		} else if (strcmp(argv[a], "--workers") == 0 && a + 1 < argc) {
			nworkers = atoi(argv[++a]);
		} else if (strcmp(argv[a], "--kill9") == 0) {
			kill9 = 1;
		} else if (strcmp(argv[a], "--floor") == 0) {
			floor = 1;
		} else if (strcmp(argv[a], "--tenants") == 0 && a + 1 < argc) {
			ntenants = strtoul(argv[++a], NULL, 10);
		} else if (strcmp(argv[a], "--deadline-ms") == 0 && a + 1 < argc) {
			deadline_ms = strtoll(argv[++a], NULL, 10);
		} else {
			fprintf(stderr, "usage: bench-scale [--programs N,N,...] [--workers W] "
			    "[--kill9] [--floor] [--tenants T] [--deadline-ms D]\n");
			return 2;
		}
	}
	if (nworkers < 1 || nworkers > MAX_WORKERS)
		nworkers = 1;
	if (dir == NULL) {
		fprintf(stderr, "bench-scale: set CERTA_TRACES to the traces directory\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	grpc_init();
	harness_alarm(3600);
	if (traces_load(dir, &tr) != 0 || harness_tmpdir(&tmp) != 0)
		return 1;
	for (i = 0; i < nruns; i++) {
		memset(&r, 0, sizeof r);
		r.tr = tr;
		r.traces_dir = dir;
		r.nworkers = nworkers;
		r.nprog = progs[i] < 2 ? 2 : progs[i];
		snprintf(r.dir, sizeof r.dir, "%s/run%zu", tmp, i);
		mkdir(r.dir, 0700);
		snprintf(mpset, sizeof mpset, "metrics.port_file=%s/m.port", r.dir);
		sets[6] = mpset;
		r.ntenants = ntenants;
		r.deadline_ms = deadline_ms;
		if (ntenants > 0) {
			snprintf(asock, sizeof asock, "admin.socket=%s/admin.sock", r.dir);
			sets[1] = asock;
		}
		r.sets = sets;
		if (floor) {
			memset(&fr, 0, sizeof fr);
			memcpy(fsets, sets, sizeof fsets);
			fsets[1] = "admin.socket=";
			snprintf(fr.dir, sizeof fr.dir, "%s/floor%zu", tmp, i);
			mkdir(fr.dir, 0700);
			snprintf(fmpset, sizeof fmpset, "metrics.port_file=%s/m.port", fr.dir);
			fsets[6] = fmpset;
			fr.sets = fsets;
			r.floor = &fr;
		}
		if (run_one(&r, kill9) != 0) {
			fprintf(stderr, "bench-scale: run N=%zu failed (logs in %s)\n", r.nprog, r.dir);
			return 1;
		}
	}
	harness_rmrf(tmp);
	free(tmp);
	traces_free(tr);
	grpc_shutdown();
	return 0;
}
