/*
 * bench-fair — fair sharing across tenants on real processes.
 *
 * One replay worker with few step slots (the bottleneck), one certad.  Prints:
 *   1. three backlogged tenants with weights 1:2:4: received token shares over a window
 *      versus their weights (target: each within 5% of its weight share);
 *   2. a tenant that floods 100x more programs than a light tenant: the light tenant's p99
 *      queue wait (submit -> first step) with and without the flood, and the bound.
 *
 *   CERTA_TRACES=DIR build/bin/bench-fair [--window SECONDS]
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
#include <grpc/grpc.h>

#include "certa/v1/admin.pb-c.h"
#include "certa/v1/reasoning.pb-c.h"
#include "lib/rpc_client.h"
#include "lib/traces.h"
#include "tests/support/certa_client.h"
#include "tests/support/harness.h"

struct bench {
	int port;                  /* certad's gRPC port */
	char admin[600];
	const struct traces *tr;
	volatile int stop;
};

struct tclient {
	struct bench *b;
	char key[128];
	size_t first;
	int concurrent;            /* programs kept in flight */
	int sequential_count;      /* light tenant: programs one after another */
	double *waits;             /* submit -> first progress (ms) */
	size_t nwaits, cap;
	pthread_mutex_t lock;
};

/* Runs one program to its end; records its queue wait. */
static void
run_one(struct tclient *c, struct rpc_channel *ch, size_t idx)
{
	const struct traces_program *pg = traces_program_at(c->b->tr, idx %
	    traces_program_count(c->b->tr));
	Certa__V1__ProgramSpec spec = CERTA__V1__PROGRAM_SPEC__INIT;
	struct rpc_stream *s;
	Certa__V1__ProgramEvent *ev;
	double t0 = harness_clock_us() / 1e3;
	int first = 1;

	spec.problem = (char *)pg->problem;
	spec.model = (char *)pg->model;
	if (certa_client_submit(ch, &spec, c->key, 600000, &s) != 0)
		return;
	while (rpc_sync_stream_next(s, 600000, (ProtobufCMessage **)&ev) == 1) {
		if (first && ev->event_case == CERTA__V1__PROGRAM_EVENT__EVENT_PROGRESS) {
			pthread_mutex_lock(&c->lock);
			if (c->nwaits < c->cap)
				c->waits[c->nwaits++] = harness_clock_us() / 1e3 - t0;
			pthread_mutex_unlock(&c->lock);
			first = 0;
		}
		protobuf_c_message_free_unpacked(&ev->base, NULL);
		if (c->b->stop) {
			rpc_sync_stream_cancel(s);
			break;
		}
	}
	rpc_sync_stream_close(s, NULL);
}

struct worker_arg {
	struct tclient *c;
	size_t offset;
};

/* Keeps one program of a tenant in flight until stopped. */
static void *
loop_thread(void *arg)
{
	struct worker_arg *w = arg;
	struct rpc_channel *ch;
	size_t k = 0;

	if (certa_client_channel(w->c->b->port, &ch) != 0)
		return NULL;
	while (!w->c->b->stop) {
		run_one(w->c, ch, w->c->first + w->offset + k * 97);
		k++;
		if (w->c->sequential_count > 0 && (int)k >= w->c->sequential_count)
			break;
	}
	rpc_channel_free(ch);
	return NULL;
}

static int
admin_call(struct bench *b, const char *method, const ProtobufCMessage *req,
    const ProtobufCMessageDescriptor *rd, ProtobufCMessage **out)
{
	struct rpc_channel *ch;
	grpc_status_code st;
	int rc;

	if (rpc_channel_new(b->admin, &ch) != 0)
		return -1;
	rc = rpc_sync_unary(ch, method, req, rd, 10000, NULL, 0, out, &st, NULL);
	rpc_channel_free(ch);
	return rc == 0 && st == GRPC_STATUS_OK ? 0 : -1;
}

static int
create_tenant(struct bench *b, const char *name, uint32_t weight, char *key, size_t len)
{
	Certa__V1__CreateTenantRequest req = CERTA__V1__CREATE_TENANT_REQUEST__INIT;
	Certa__V1__Tenant t = CERTA__V1__TENANT__INIT;
	Certa__V1__CreateTenantReply *r = NULL;

	t.name = (char *)name;
	t.weight = weight;
	req.tenant = &t;
	if (admin_call(b, "/certa.v1.Admin/CreateTenant", &req.base,
	    &certa__v1__create_tenant_reply__descriptor, (ProtobufCMessage **)&r) != 0)
		return -1;
	snprintf(key, len, "%s", r->api_key);
	protobuf_c_message_free_unpacked(&r->base, NULL);
	return 0;
}

/* tokens_used per tenant name, from GetStats. */
static void
stats(struct bench *b, const char *const *names, size_t n, uint64_t *used)
{
	Certa__V1__StatsRequest req = CERTA__V1__STATS_REQUEST__INIT;
	Certa__V1__StatsReply *r = NULL;
	size_t i, j;

	memset(used, 0, n * sizeof *used);
	if (admin_call(b, "/certa.v1.Admin/GetStats", &req.base, &certa__v1__stats_reply__descriptor,
	    (ProtobufCMessage **)&r) != 0)
		return;
	for (i = 0; i < r->n_tenants; i++)
		for (j = 0; j < n; j++)
			if (strcmp(r->tenants[i]->tenant, names[j]) == 0)
				used[j] = r->tenants[i]->tokens_used;
	protobuf_c_message_free_unpacked(&r->base, NULL);
}

static int
start_all(const char *dir, const char *tmp, const char *slots, struct harness_proc **w,
    struct harness_proc **d, struct bench *b)
{
	static const char *const extra[] = { "--log-level", "warn", NULL };
	const char *wextra[] = { "--step-delay", "10", NULL };
	char sock[700], pol[700], slot[64];
	const char *sets[] = { sock, pol, slot, "metrics.port=0", NULL };
	int wport;

	snprintf(pol, sizeof pol, "%s/full.policy", tmp);
	if (harness_write_file(pol, "%s", "cot.threshold = 2\nsc.threshold = 2\n"
	    "unpromising_tokens = 0\nprobe_stride = 0\n") != 0)
		return -1;
	if (harness_start_worker(tmp, dir, wextra, w, &wport) != 0)
		return -1;
	snprintf(sock, sizeof sock, "admin.socket=%s/admin.sock", tmp);
	snprintf(b->admin, sizeof b->admin, "unix:%s/admin.sock", tmp);
	snprintf(pol, sizeof pol, "policy.file=%s/full.policy", tmp);
	snprintf(slot, sizeof slot, "workers.max_inflight=%s", slots);
	if (harness_start_certad(tmp, &wport, 1, sets, extra, d, &b->port) != 0)
		return -1;
	sleep(1);
	return 0;
}

static void
stop_all(struct harness_proc *w, struct harness_proc *d)
{
	int st;

	harness_signal(d, 15);
	harness_wait_exit(d, 20000, &st);
	harness_proc_free(d);
	harness_kill9(w);
	harness_proc_free(w);
}

/* Runs the light tenant (sequential) with or without a flooding tenant. */
static double
flood_run(const char *dir, const char *tmp, struct traces *tr, int flood, size_t *n_out,
    double *flood_share)
{
	struct harness_proc *w, *d;
	struct bench b;
	struct tclient light, heavy;
	struct worker_arg la, ha[100];
	pthread_t lt, ht[100];
	char sub[600];
	int i, nflood = flood ? 100 : 0;
	double r;
	const char *names[2] = { "light", "flood" };
	uint64_t used[2];

	memset(&b, 0, sizeof b);
	b.tr = tr;
	snprintf(sub, sizeof sub, "%s/%s", tmp, flood ? "flood" : "base");
	mkdir(sub, 0700);
	if (start_all(dir, sub, "4", &w, &d, &b) != 0)
		return -1;
	memset(&light, 0, sizeof light);
	memset(&heavy, 0, sizeof heavy);
	light.b = heavy.b = &b;
	light.cap = heavy.cap = 100000;
	light.waits = calloc(light.cap, sizeof *light.waits);
	heavy.waits = calloc(heavy.cap, sizeof *heavy.waits);
	pthread_mutex_init(&light.lock, NULL);
	pthread_mutex_init(&heavy.lock, NULL);
	create_tenant(&b, "light", 1, light.key, sizeof light.key);
	create_tenant(&b, "flood", 1, heavy.key, sizeof heavy.key);
	heavy.first = 500;
	for (i = 0; i < nflood; i++) {
		ha[i].c = &heavy;
		ha[i].offset = (size_t)i;
		pthread_create(&ht[i], NULL, loop_thread, &ha[i]);
	}
	if (nflood > 0)
		sleep(2);  /* the flood is in full swing */
	light.sequential_count = 20;
	la.c = &light;
	la.offset = 0;
	pthread_create(&lt, NULL, loop_thread, &la);
	pthread_join(lt, NULL);
	stats(&b, names, 2, used);
	*flood_share = used[0] + used[1] > 0 ? (double)used[1] / (double)(used[0] + used[1]) : 0;
	b.stop = 1;
	for (i = 0; i < nflood; i++)
		pthread_join(ht[i], NULL);
	r = harness_percentile(light.waits, light.nwaits, 0.99);
	*n_out = light.nwaits;
	stop_all(w, d);
	free(light.waits);
	free(heavy.waits);
	return r;
}

int
main(int argc, char **argv)
{
	const char *dir = harness_traces_dir();
	struct traces *tr = NULL;
	struct harness_proc *w, *d;
	struct bench b;
	struct tclient cl[3];
	struct worker_arg wa[3][12];
	pthread_t th[3][12];
	const char *names[3] = { "w1", "w2", "w4" };
	uint32_t weights[3] = { 1, 2, 4 };
	uint64_t u0[3], u1[3], tot = 0;
	char *tmp = NULL;
	int window = 15, i, j;
	double worst = 0;

	if (argc == 3 && strcmp(argv[1], "--window") == 0)
		window = atoi(argv[2]);
	if (dir == NULL) {
		fprintf(stderr, "bench-fair: set CERTA_TRACES to the traces directory\n");
		return 2;
	}
	grpc_init();
	harness_alarm(900);
	if (traces_load(dir, &tr) != 0 || harness_tmpdir(&tmp) != 0)
		return 1;

	/* 1. weighted shares */
	memset(&b, 0, sizeof b);
	b.tr = tr;
	if (start_all(dir, tmp, "4", &w, &d, &b) != 0)
		return 1;
	for (i = 0; i < 3; i++) {
		memset(&cl[i], 0, sizeof cl[i]);
		cl[i].b = &b;
		cl[i].first = (size_t)i * 100;
		cl[i].cap = 100000;
		cl[i].waits = calloc(cl[i].cap, sizeof *cl[i].waits);
		pthread_mutex_init(&cl[i].lock, NULL);
		if (create_tenant(&b, names[i], weights[i], cl[i].key, sizeof cl[i].key) != 0)
			return 1;
		for (j = 0; j < 12; j++) {
			wa[i][j].c = &cl[i];
			wa[i][j].offset = (size_t)j;
			pthread_create(&th[i][j], NULL, loop_thread, &wa[i][j]);
		}
	}
	sleep(3);  /* warm up: everyone backlogged */
	stats(&b, names, 3, u0);
	sleep((unsigned)window);
	stats(&b, names, 3, u1);
	b.stop = 1;
	for (i = 0; i < 3; i++)
		for (j = 0; j < 12; j++)
			pthread_join(th[i][j], NULL);
	stop_all(w, d);
	for (i = 0; i < 3; i++)
		tot += u1[i] - u0[i];
	printf("weighted shares over %d s (1 worker, 4 step slots, 12 programs in flight per "
	    "tenant):\n", window);
	for (i = 0; i < 3; i++) {
		double share = tot ? (double)(u1[i] - u0[i]) / (double)tot : 0;
		double want = weights[i] / 7.0, rel = (share - want) / want;
		if (rel < 0)
			rel = -rel;
		if (rel > worst)
			worst = rel;
		printf("  tenant %-3s weight %u: %8llu tokens  share %.3f  weight share %.3f  "
		    "deviation %4.1f%%\n", names[i], weights[i],
		    (unsigned long long)(u1[i] - u0[i]), share, want, rel * 100);
	}
	printf("  worst relative deviation %.1f%% (target <= 5%%)\n", worst * 100);

	/* 2. a flooding tenant */
	{
		size_t n0 = 0, n1 = 0;
		double fs0 = 0, fs1 = 0;
		double base = flood_run(dir, tmp, tr, 0, &n0, &fs0);
		double flood = flood_run(dir, tmp, tr, 1, &n1, &fs1);
		printf("flood: light tenant (1 program at a time) vs a tenant with 100 programs in "
		    "flight:\n");
		printf("  light p99 queue wait alone      %7.1f ms (%zu programs)\n", base, n0);
		printf("  light p99 queue wait with flood %7.1f ms (%zu programs); flood got %.0f%% "
		    "of tokens\n", flood, n1, fs1 * 100);
		/* A light tenant's ready program waits at most for one slot to free (one step,
		 * 10 ms here) plus the dispatch pass: bound = alone + 2 steps. */
		printf("  bound: alone + 2 steps = %.1f ms -> %s (ratio with/without %.2f)\n",
		    base + 20.0, flood <= base + 20.0 ? "within" : "EXCEEDED",
		    base > 0 ? flood / base : 0);
	}
	harness_rmrf(tmp);
	free(tmp);
	traces_free(tr);
	grpc_shutdown();
	return 0;
}
