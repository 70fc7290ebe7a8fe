/*
 * bench-dispatch — per-step dispatch overhead and end-to-end throughput of certad.
 *
 * Starts real processes on loopback (two replay workers, one certad with a fresh LMDB
 * environment) and measures, in one run:
 *   A. the raw Worker.Step round trip from a client (the baseline: RPC + replay engine);
 *   B. the per-step latency through certad: the gap between consecutive progress events of a
 *      cot program = dispatch + worker round trip + LMDB commit + event to the client;
 *   C. programs/s and steps/s end to end with N concurrent clients (N = 1, 4, 16).
 * Prints medians and p99 and the ratio B/A.  Needs CERTA_TRACES.
 *
 *   CERTA_TRACES=DIR build/bin/bench-dispatch [--programs N]
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <grpc/grpc.h>

#include "certa/v1/reasoning.pb-c.h"
#include "certa/v1/worker.pb-c.h"
#include "lib/rpc_client.h"
#include "lib/traces.h"
#include "tests/support/certa_client.h"
#include "tests/support/harness.h"

/* A. Step round trips straight to a worker, replaying problems chain by chain. */
static int
bench_raw_step(int port, const struct traces *tr, size_t nprog, double *lat, size_t cap,
    size_t *n)
{
	struct rpc_channel *ch;
	char rid[64];
	size_t i;

	if (certa_client_channel(port, &ch) != 0)
		return -1;
	*n = 0;
	for (i = 0; i < nprog && *n < cap; i++) {
		const struct traces_program *pg = traces_program_at(tr, i);
		Certa__V1__StepRequest req = CERTA__V1__STEP_REQUEST__INIT;
		Certa__V1__StepItem it = CERTA__V1__STEP_ITEM__INIT, *itp = &it;
		uint64_t pos = 0;
		int done = 0;

		snprintf(rid, sizeof rid, "bench/%zu", i);
		it.request_id = rid;
		it.prompt = (char *)pg->problem;
		it.model = (char *)pg->model;
		it.max_new_tokens = 64;
		req.n_items = 1;
		req.items = &itp;
		while (!done && *n < cap) {
			Certa__V1__StepReply *r = NULL;
			grpc_status_code st;
			double t0 = harness_clock_us();
			it.resume_tokens = pos;
			if (rpc_sync_unary(ch, "/certa.v1.Worker/Step", &req.base,
			    &certa__v1__step_reply__descriptor, 10000, NULL, 0,
			    (ProtobufCMessage **)&r, &st, NULL) != 0 || st != GRPC_STATUS_OK)
				break;
			lat[(*n)++] = harness_clock_us() - t0;
			pos = r->results[0]->total_tokens;
			done = r->results[0]->finished;
			protobuf_c_message_free_unpacked(&r->base, NULL);
		}
	}
	rpc_channel_free(ch);
	return 0;
}

struct client {
	int port;                 /* certad's */
	const struct traces *tr;
	size_t first, count;
	double *gaps;             /* progress inter-arrival times (B) */
	size_t ngaps, gapcap;
	size_t done, steps;
};

/* Submits programs one after another and waits for each to finish. */
static void *
client_run(void *arg)
{
	struct client *c = arg;
	struct rpc_channel *ch;
	size_t i;

	if (certa_client_channel(c->port, &ch) != 0)
		return NULL;
	for (i = 0; i < c->count; i++) {
		const struct traces_program *pg = traces_program_at(c->tr, c->first + i);
		Certa__V1__ProgramSpec spec = CERTA__V1__PROGRAM_SPEC__INIT;
		Certa__V1__ProgramEvent *ev;
		struct rpc_stream *s;
		double last = 0;

		spec.problem = (char *)pg->problem;
		spec.model = (char *)pg->model;
		if (certa_client_submit(ch, &spec, NULL, 120000, &s) != 0)
			break;
		while (rpc_sync_stream_next(s, 60000, (ProtobufCMessage **)&ev) == 1) {
			double t = harness_clock_us();
			if (ev->event_case == CERTA__V1__PROGRAM_EVENT__EVENT_PROGRESS) {
				if (last > 0 && c->ngaps < c->gapcap)
					c->gaps[c->ngaps++] = t - last;
				c->steps++;
			}
			if (ev->event_case == CERTA__V1__PROGRAM_EVENT__EVENT_FINISHED)
				c->done++;
			last = t;
			protobuf_c_message_free_unpacked(&ev->base, NULL);
		}
		rpc_sync_stream_close(s, NULL);
	}
	rpc_channel_free(ch);
	return NULL;
}

int
main(int argc, char **argv)
{
	static const char *const sets[] = { "metrics.port=0", "admin.socket=",
	    "auth.anonymous_tenant=bench", NULL };
	static const char *const extra[] = { "--log-level", "warn", NULL };
	const char *dir = harness_traces_dir();
	struct harness_proc *w[2] = { NULL, NULL }, *d = NULL;
	struct traces *tr = NULL;
	int wport[2], dport, i;
	char *tmp = NULL;
	size_t nprog = 40, n = 0, k;
	double *lat;
	static const int clients[] = { 1, 4, 16 };

	if (argc == 3 && strcmp(argv[1], "--programs") == 0)
		nprog = (size_t)atoi(argv[2]);
	if (dir == NULL) {
		fprintf(stderr, "bench-dispatch: set CERTA_TRACES to the traces directory\n");
		return 2;
	}
	grpc_init();
	harness_alarm(600);
	if (traces_load(dir, &tr) != 0 || harness_tmpdir(&tmp) != 0)
		return 1;
	for (i = 0; i < 2; i++)
		if (harness_start_worker(tmp, dir, NULL, &w[i], &wport[i]) != 0)
			return 1;
	if (harness_start_certad(tmp, wport, 2, sets, extra, &d, &dport) != 0)
		return 1;
	sleep(1);  /* first health check */

	lat = calloc(200000, sizeof *lat);
	bench_raw_step(wport[0], tr, nprog, lat, 200000, &n);
	double a50 = harness_percentile(lat, n, 0.5), a99 = harness_percentile(lat, n, 0.99);
	printf("A  worker Step round trip (client -> worker), %zu steps: median %.0f us  p99 %.0f us\n",
	    n, a50, a99);

	for (k = 0; k < sizeof clients / sizeof clients[0]; k++) {
		int nc = clients[k];
		struct client *cl = calloc((size_t)nc, sizeof *cl);
		pthread_t *th = calloc((size_t)nc, sizeof *th);
		size_t per = nprog / (size_t)nc ? nprog / (size_t)nc : 1, done = 0, steps = 0, ng = 0;
		double t0 = harness_clock_us(), secs, *all;

		for (i = 0; i < nc; i++) {
			cl[i].port = dport;
			cl[i].tr = tr;
			cl[i].first = ((size_t)i * per) % traces_program_count(tr);
			cl[i].count = per;
			cl[i].gapcap = 100000;
			cl[i].gaps = calloc(cl[i].gapcap, sizeof *cl[i].gaps);
			pthread_create(&th[i], NULL, client_run, &cl[i]);
		}
		for (i = 0; i < nc; i++)
			pthread_join(th[i], NULL);
		secs = (harness_clock_us() - t0) / 1e6;
		all = calloc(1000000, sizeof *all);
		for (i = 0; i < nc; i++) {
			done += cl[i].done;
			steps += cl[i].steps;
			memcpy(all + ng, cl[i].gaps, cl[i].ngaps * sizeof *all);
			ng += cl[i].ngaps;
			free(cl[i].gaps);
		}
		if (nc == 1) {
			double b50 = harness_percentile(all, ng, 0.5);
			double b99 = harness_percentile(all, ng, 0.99);
			printf("B  step through certad (progress event gap), %zu steps: median %.0f us  "
			    "p99 %.0f us  ratio B/A median %.2f\n", ng, b50, b99, b50 / a50);
		}
		printf("C  clients=%-2d programs=%zu in %.2f s: %.1f programs/s, %.0f steps/s\n", nc,
		    done, secs, done / secs, steps / secs);
		free(all);
		free(cl);
		free(th);
	}

	harness_signal(d, 15);
	harness_wait_exit(d, 10000, &i);
	harness_proc_free(d);
	for (i = 0; i < 2; i++) {
		harness_kill9(w[i]);
		harness_proc_free(w[i]);
	}
	harness_rmrf(tmp);
	free(tmp);
	free(lat);
	traces_free(tr);
	grpc_shutdown();
	return 0;
}
