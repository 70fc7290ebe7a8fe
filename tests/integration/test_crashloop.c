/*
 * test_crashloop.c — a crash loop: certad is killed with SIGKILL again and again while client
 * threads submit cot and sc programs against replay workers; every accepted program must
 * finish exactly once, with the answer and token count of a crash-free run.
 *
 * The replay engine is deterministic and the policy runs every chain to its recorded end, so a
 * crash-free run (a fresh certad and state directory, each distinct program once) gives the
 * one right result of every (problem, algorithm) pair.  Then CLIENTS threads submit programs in
 * a loop, each with its own idempotency key, and read each stream to its end; a submit that
 * fails (certad is down) is retried with the same key, so a program stored just before a kill
 * is found again instead of submitted twice.  The main thread kills certad CERTA_CRASHLOOP_CYCLES
 * times (default 10; `make check-crashloop` runs more), after a random 300-800 ms of load each,
 * and restarts it on the same state directory.  At the end it waits until every program is
 * terminal and checks, from List:
 *   - duplicates: no two programs carry one idempotency key;
 *   - losses: every program a client saw accepted is there, under the id it was accepted as;
 *   - every program is FINISHED with the crash-free answer and tokens_used.
 * It prints the figures: cycles, programs accepted, in flight at each kill.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include <grpc/grpc.h>

#include "certa/v1/reasoning.pb-c.h"
#include "lib/error.h"
#include "lib/rpc_client.h"
#include "lib/traces.h"
#include "tests/support/certa_client.h"
#include "tests/support/harness.h"
#include "tests/support/itest.h"

#define CRASHLOOP_CLIENTS 6
#define CRASHLOOP_PROBLEMS 4
#define CRASHLOOP_SC_N 3
#define CRASHLOOP_MAX_SUBS 4096     /* per client */
#define CRASHLOOP_MAX_TOKENS 2500   /* shortest recorded runs: cycles see many programs */
#define CRASHLOOP_RPC_MS 10000

/* One submission of a client: a program spec and what became of it. */
struct crashloop_sub {
	int problem;               /* index into env.problems */
	int sc;                    /* 0: cot, 1: sc with CRASHLOOP_SC_N chains */
	char key[32];              /* idempotency key, unique in the test */
	char id[64];               /* the id it was accepted as ("" if never acknowledged) */
};

struct crashloop_client {
	pthread_t thread;
	int index;
	struct crashloop_env *env;
	struct crashloop_sub *subs;
	size_t nsubs;
	unsigned retries;          /* submits retried after a failure */
	char error[256];           /* a client-side failure that fails the test */
};

/* The right result of one (problem, algorithm): from the crash-free run. */
struct crashloop_ref {
	char answer[256];
	uint64_t tokens;
	int done;
};

struct crashloop_env {
	struct itest it;           /* first; it.tr: the loaded traces (tr->set); w: unused */
	const char *problems[CRASHLOOP_PROBLEMS];
	struct crashloop_ref ref[CRASHLOOP_PROBLEMS][2];
	struct harness_proc *w[2];
	int wport[2];
	struct harness_proc *d;
	char state_sets[2][640];

	pthread_mutex_t mu;        /* guards port and gen */
	int port;                  /* certad's current gRPC port; 0 while it is down */
	unsigned gen;              /* bumped at every restart */
	atomic_int stop;           /* clients stop submitting new programs */
};

/* Picks CRASHLOOP_PROBLEMS problems of the default model's math500 programs with at least
 * CRASHLOOP_SC_N samples, each sample finished within CRASHLOOP_MAX_TOKENS tokens. */
static int
crashloop_pick(struct crashloop_env *e)
{
	const struct traces *set = e->it.tr->set;
	int n = 0;

	for (size_t i = 0; i < traces_program_count(set) && n < CRASHLOOP_PROBLEMS; i++) {
		const struct traces_program *pg = traces_program_at(set, i);
		const struct trace *const *s;
		size_t ns, j;

		if (strcmp(pg->model, e->it.tr->model) != 0 || strcmp(pg->dataset, "math500") != 0)
			continue;
		/* what the replay engine serves for this prompt: sample i = i-th seed */
		if (traces_find(set, e->it.tr->model, pg->problem, &s, &ns) != 0 ||
		    ns < CRASHLOOP_SC_N)
			continue;
		for (j = 0; j < CRASHLOOP_SC_N; j++)
			if (s[j]->tokens_used > CRASHLOOP_MAX_TOKENS || s[j]->tokens_used < 256 ||
			    s[j]->final_answer[0] == '\0')
				break;
		if (j == CRASHLOOP_SC_N)
			e->problems[n++] = pg->problem;
	}
	return n == CRASHLOOP_PROBLEMS ? 0 : CERTA_ENOTFOUND;
}

static int
crashloop_setup(void **state)
{
	struct crashloop_env *e;
	const char *extra[] = { "--step-delay", "2", NULL };
	char path[600];

	*state = NULL;
	e = itest_new(sizeof *e, 600, ITEST_TRACES_PICK);
	if (e == NULL)
		return 0;
	assert_int_equal(crashloop_pick(e), 0);
	pthread_mutex_init(&e->mu, NULL);
	snprintf(path, sizeof path, "%s/full.policy", e->it.dir);
	assert_int_equal(harness_write_file(path, "%s",
	    "# never stop early: every chain runs to its recorded end\n"
	    "cot.threshold = 2\nsc.threshold = 2\nunpromising_tokens = 0\n"
	    "sc.unpromising_tokens = 0\nextend_frac = 0\n"), 0);
	for (int i = 0; i < 2; i++)
		assert_int_equal(harness_start_worker(e->it.dir, harness_traces_dir(), extra,
		    &e->w[i], &e->wport[i]), 0);
	*state = e;
	return 0;
}

static int
crashloop_teardown(void **state)
{
	struct crashloop_env *e = *state;

	if (e == NULL)
		return 0;
	itest_stop(&e->it);
	for (int i = 0; i < 2; i++)
		harness_proc_free(e->w[i]);
	pthread_mutex_destroy(&e->mu);
	itest_free(&e->it);
	return 0;
}

/* Starts certad on DIR/STATE (a sub-directory name) with both workers; stores its port. */
static void
crashloop_start(struct crashloop_env *e, const char *state_name)
{
	char sock[700], pol[700], stdir[700];
	const char *sets[] = { "workers.health_interval=100ms", "metrics.port=0",
	    "auth.anonymous_tenant=default", sock, pol, NULL };
	const char *extra[] = { "--state-dir", stdir, NULL };
	int port;

	snprintf(sock, sizeof sock, "admin.socket=%s/admin.sock", e->it.dir);
	snprintf(pol, sizeof pol, "policy.file=%s/full.policy", e->it.dir);
	snprintf(stdir, sizeof stdir, "%s/%s", e->it.dir, state_name);
	if (harness_start_certad(e->it.dir, e->wport, 2, sets, extra, &e->it.d, &port) != 0)
		fail_msg("certad did not start");
	pthread_mutex_lock(&e->mu);
	e->port = port;
	e->gen++;
	pthread_mutex_unlock(&e->mu);
}

static void
crashloop_spec(const struct crashloop_env *e, int problem, int sc, const char *key,
    Certa__V1__ProgramSpec *spec)
{
	certa__v1__program_spec__init(spec);
	spec->problem = (char *)e->problems[problem];
	spec->algorithm = sc ? CERTA__V1__ALGORITHM__ALGORITHM_SC : CERTA__V1__ALGORITHM__ALGORITHM_COT;
	spec->n = sc ? CRASHLOOP_SC_N : 1;
	spec->idempotency_key = (char *)key;
}

/* The crash-free run: each (problem, algorithm) once, all at once, read to the end. */
static void
crashloop_reference(struct crashloop_env *e)
{
	struct rpc_channel *ch;
	struct rpc_stream *s[CRASHLOOP_PROBLEMS][2];
	struct certa_client_events ev;
	Certa__V1__ProgramSpec spec;
	char key[32];

	crashloop_start(e, "ref-state");
	assert_int_equal(certa_client_channel(e->port, &ch), 0);
	for (int p = 0; p < CRASHLOOP_PROBLEMS; p++)
		for (int sc = 0; sc < 2; sc++) {
			snprintf(key, sizeof key, "ref-%d-%d", p, sc);
			crashloop_spec(e, p, sc, key, &spec);
			assert_int_equal(certa_client_submit(ch, &spec, NULL, 120000, &s[p][sc]), 0);
		}
	for (int p = 0; p < CRASHLOOP_PROBLEMS; p++)
		for (int sc = 0; sc < 2; sc++) {
			memset(&ev, 0, sizeof ev);
			(void)certa_client_events_read(s[p][sc], 60000, 0, &ev);
			if (ev.status != GRPC_STATUS_OK || ev.finished == NULL)
				fail_msg("crash-free run of problem %d %s: status %d %s", p,
				    sc ? "sc" : "cot", (int)ev.status, ev.details);
			snprintf(e->ref[p][sc].answer, sizeof e->ref[p][sc].answer, "%s",
			    ev.finished->result->answer);
			e->ref[p][sc].tokens = ev.finished->result->tokens_used;
			e->ref[p][sc].done = 1;
			certa_client_events_free(&ev);
		}
	rpc_channel_free(ch);
	assert_int_equal(harness_kill9(e->it.d), 0);
	harness_proc_free(e->it.d);
	e->it.d = NULL;
}

/* Submits sub until a server acknowledges it (Accepted), then reads the stream to its end
 * (a kill ends it early; the program finishes after the restart).  Gives up on a submission
 * never acknowledged once e->stop is set. */
static void
crashloop_submit(struct crashloop_client *cl, struct crashloop_sub *sub, struct rpc_channel **ch,
    unsigned *gen)
{
	struct crashloop_env *e = cl->env;
	Certa__V1__ProgramSpec spec;
	Certa__V1__ProgramEvent *m;
	struct certa_client_events ev;
	struct rpc_stream *s;
	int port, rc;

	crashloop_spec(e, sub->problem, sub->sc, sub->key, &spec);
	for (int attempt = 0;; attempt++) {
		if (attempt > 0) {
			cl->retries++;
			if (e->stop)
				return;
			usleep(50000);
		}
		pthread_mutex_lock(&e->mu);
		port = e->port;
		if (*gen != e->gen && *ch != NULL) {
			rpc_channel_free(*ch);
			*ch = NULL;
		}
		*gen = e->gen;
		pthread_mutex_unlock(&e->mu);
		if (port == 0)
			continue;
		if (*ch == NULL && certa_client_channel(port, ch) != 0)
			continue;
		if (certa_client_submit(*ch, &spec, NULL, 120000, &s) != 0)
			continue;
		rc = rpc_sync_stream_next(s, 10000, (ProtobufCMessage **)&m);
		if (rc != 1) {
			rpc_sync_stream_cancel(s);
			(void)rpc_sync_stream_close(s, NULL);
			continue;
		}
		if (m->event_case != CERTA__V1__PROGRAM_EVENT__EVENT_ACCEPTED) {
			snprintf(cl->error, sizeof cl->error, "%s: first event is %d, not accepted",
			    sub->key, (int)m->event_case);
			protobuf_c_message_free_unpacked(&m->base, NULL);
			rpc_sync_stream_cancel(s);
			(void)rpc_sync_stream_close(s, NULL);
			return;
		}
		if (sub->id[0] != '\0' && strcmp(sub->id, m->accepted->program_id) != 0)
			snprintf(cl->error, sizeof cl->error, "%s: accepted as %s, then as %s",
			    sub->key, sub->id, m->accepted->program_id);
		snprintf(sub->id, sizeof sub->id, "%s", m->accepted->program_id);
		protobuf_c_message_free_unpacked(&m->base, NULL);
		memset(&ev, 0, sizeof ev);
		(void)certa_client_events_read(s, 30000, 0, &ev);
		certa_client_events_free(&ev);
		return;
	}
}

static void *
crashloop_client_main(void *arg)
{
	struct crashloop_client *cl = arg;
	struct rpc_channel *ch = NULL;
	unsigned gen = 0, seed = 0x9e3779b9u * (unsigned)(cl->index + 1);

	while (!cl->env->stop && cl->nsubs < CRASHLOOP_MAX_SUBS && cl->error[0] == '\0') {
		struct crashloop_sub *sub = &cl->subs[cl->nsubs++];

		sub->problem = (int)(rand_r(&seed) % CRASHLOOP_PROBLEMS);
		sub->sc = (int)((cl->nsubs + (size_t)cl->index) % 2);
		snprintf(sub->key, sizeof sub->key, "c%d-%zu", cl->index, cl->nsubs);
		crashloop_submit(cl, sub, &ch, &gen);
	}
	if (ch != NULL)
		rpc_channel_free(ch);
	return NULL;
}

/* Every program of the tenant, all pages, on a fresh channel to the current certad. */
static Certa__V1__Program **
crashloop_list(struct crashloop_env *e, size_t *n)
{
	Certa__V1__ListRequest lr = CERTA__V1__LIST_REQUEST__INIT;
	Certa__V1__Program **all = NULL;
	struct rpc_channel *ch;
	char token[128] = "";
	size_t cap = 0;

	*n = 0;
	assert_int_equal(certa_client_channel(e->port, &ch), 0);
	do {
		Certa__V1__ListReply *list = NULL;
		grpc_status_code st;

		lr.page_size = 1000;
		lr.page_token = token;
		assert_int_equal(rpc_sync_unary(ch, "/certa.v1.Reasoning/List", &lr.base,
		    &certa__v1__list_reply__descriptor, CRASHLOOP_RPC_MS, NULL, 0,
		    (ProtobufCMessage **)&list, &st, NULL), 0);
		assert_int_equal(st, GRPC_STATUS_OK);
		for (size_t i = 0; i < list->n_programs; i++) {
			if (*n == cap) {
				cap = cap ? 2 * cap : 256;
				all = realloc(all, cap * sizeof *all);
				assert_non_null(all);
			}
			/* keep the program: detach it from the reply */
			all[(*n)++] = list->programs[i];
			list->programs[i] = NULL;
		}
		list->n_programs = 0;
		snprintf(token, sizeof token, "%s", list->next_page_token);
		protobuf_c_message_free_unpacked(&list->base, NULL);
	} while (token[0] != '\0');
	rpc_channel_free(ch);
	return all;
}

static void
crashloop_list_free(Certa__V1__Program **all, size_t n)
{
	for (size_t i = 0; i < n; i++)
		protobuf_c_message_free_unpacked(&all[i]->base, NULL);
	free(all);
}

static int
crashloop_terminal(const Certa__V1__Program *p)
{
	return p->state != CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_QUEUED &&
	    p->state != CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_RUNNING;
}

/* The submission with this idempotency key, or NULL. */
static struct crashloop_sub *
crashloop_find_sub(struct crashloop_client *cl, const char *key)
{
	int c;
	size_t i;

	if (sscanf(key, "c%d-%zu", &c, &i) != 2 || c < 0 || c >= CRASHLOOP_CLIENTS || i < 1 ||
	    i > cl[c].nsubs)
		return NULL;
	return strcmp(cl[c].subs[i - 1].key, key) == 0 ? &cl[c].subs[i - 1] : NULL;
}

static void
test_crashloop(void **state)
{
	struct crashloop_env *e = *state;
	struct crashloop_client cl[CRASHLOOP_CLIENTS];
	const char *env_cycles = getenv("CERTA_CRASHLOOP_CYCLES");
	int cycles = env_cycles != NULL ? atoi(env_cycles) : 10;
	unsigned seed = 20261130, retries = 0;
	char inflight_line[1024] = "";
	size_t accepted = 0, unacked = 0, total_inflight = 0, n = 0;
	Certa__V1__Program **all = NULL;
	unsigned char *seen[CRASHLOOP_CLIENTS];
	struct timespec t0, t1;

	HARNESS_NEED_TRACES(e);
	if (cycles < 1)
		cycles = 1;
	harness_alarm(120 + (unsigned)cycles * 15);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	crashloop_reference(e);

	crashloop_start(e, "state");
	memset(cl, 0, sizeof cl);
	for (int i = 0; i < CRASHLOOP_CLIENTS; i++) {
		cl[i].index = i;
		cl[i].env = e;
		cl[i].subs = calloc(CRASHLOOP_MAX_SUBS, sizeof *cl[i].subs);
		assert_non_null(cl[i].subs);
		assert_int_equal(pthread_create(&cl[i].thread, NULL, crashloop_client_main, &cl[i]),
		    0);
	}
	for (int c = 0; c < cycles; c++) {
		size_t inflight = 0;
		char item[16];

		usleep(300000 + (useconds_t)(rand_r(&seed) % 500) * 1000);
		all = crashloop_list(e, &n);
		for (size_t i = 0; i < n; i++)
			inflight += !crashloop_terminal(all[i]);
		crashloop_list_free(all, n);
		total_inflight += inflight;
		snprintf(item, sizeof item, "%s%zu", c ? " " : "", inflight);
		if (strlen(inflight_line) + strlen(item) < sizeof inflight_line)
			strcat(inflight_line, item);

		pthread_mutex_lock(&e->mu);
		e->port = 0;
		pthread_mutex_unlock(&e->mu);
		assert_int_equal(harness_kill9(e->it.d), 0);
		harness_proc_free(e->it.d);
		e->it.d = NULL;
		crashloop_start(e, "state");
	}
	/* Let the last restart see some load, then stop submitting and wait for the clients. */
	usleep(300000);
	e->stop = 1;
	for (int i = 0; i < CRASHLOOP_CLIENTS; i++) {
		assert_int_equal(pthread_join(cl[i].thread, NULL), 0);
		if (cl[i].error[0] != '\0')
			fail_msg("client %d: %s", i, cl[i].error);
		retries += cl[i].retries;
	}

	/* Wait until every stored program is terminal. */
	for (int waited = 0;; waited += 200) {
		size_t open = 0;

		all = crashloop_list(e, &n);
		for (size_t i = 0; i < n; i++)
			open += !crashloop_terminal(all[i]);
		if (open == 0)
			break;
		crashloop_list_free(all, n);
		if (waited > 90000)
			fail_msg("%zu programs still not finished 90 s after the last kill", open);
		usleep(200000);
	}

	/* Exactly once, with the crash-free result. */
	for (int i = 0; i < CRASHLOOP_CLIENTS; i++) {
		seen[i] = calloc(CRASHLOOP_MAX_SUBS, 1);
		assert_non_null(seen[i]);
	}
	for (size_t i = 0; i < n; i++) {
		const Certa__V1__Program *p = all[i];
		struct crashloop_sub *sub = crashloop_find_sub(cl, p->spec->idempotency_key);
		const struct crashloop_ref *ref;
		unsigned char *mark;

		if (sub == NULL)
			fail_msg("program %s has key '%s', which no client used", p->id,
			    p->spec->idempotency_key);
		mark = NULL;
		for (int c = 0; c < CRASHLOOP_CLIENTS; c++)
			if (sub >= cl[c].subs && sub < cl[c].subs + CRASHLOOP_MAX_SUBS)
				mark = &seen[c][sub - cl[c].subs];
		assert_non_null(mark);
		if (*mark)
			fail_msg("duplicate: key %s has two programs (second %s)", sub->key, p->id);
		*mark = 1;
		if (sub->id[0] != '\0' && strcmp(sub->id, p->id) != 0)
			fail_msg("key %s was accepted as %s but stored as %s", sub->key, sub->id,
			    p->id);
		if (p->state != CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_FINISHED)
			fail_msg("program %s (%s) ended in state %d: %s", p->id, sub->key,
			    (int)p->state, p->result != NULL ? p->result->error_message : "");
		ref = &e->ref[sub->problem][sub->sc];
		if (strcmp(p->result->answer, ref->answer) != 0 ||
		    p->result->tokens_used != ref->tokens)
			fail_msg("program %s (%s, problem %d %s): answer '%s' after %llu tokens; the "
			    "crash-free run: '%s' after %llu", p->id, sub->key, sub->problem,
			    sub->sc ? "sc" : "cot", p->result->answer,
			    (unsigned long long)p->result->tokens_used, ref->answer,
			    (unsigned long long)ref->tokens);
		if (sub->id[0] == '\0')
			unacked++;
	}
	/* No loss: every acknowledged program is stored. */
	for (int c = 0; c < CRASHLOOP_CLIENTS; c++) {
		for (size_t i = 0; i < cl[c].nsubs; i++) {
			if (cl[c].subs[i].id[0] == '\0')
				continue;
			accepted++;
			if (!seen[c][i])
				fail_msg("lost: %s was accepted as %s but is not stored",
				    cl[c].subs[i].key, cl[c].subs[i].id);
		}
		free(seen[c]);
		free(cl[c].subs);
	}
	/* A loop that killed an idle daemon tested nothing. */
	if (total_inflight < (size_t)cycles || accepted < (size_t)cycles)
		fail_msg("too little load: %zu programs accepted, %zu in flight over %d kills",
		    accepted, total_inflight, cycles);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	print_message("crashloop: %d kill -9 cycles, %zu programs accepted (%zu stored, %zu of "
	    "them never acknowledged), %u submits retried, in flight at each kill: %s "
	    "(mean %.1f); duplicates 0, losses 0, all answers equal to the crash-free run; "
	    "%.1f s\n", cycles, accepted, n, unacked, retries, inflight_line,
	    (double)total_inflight / cycles, (double)(t1.tv_sec - t0.tv_sec) +
	    (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
	crashloop_list_free(all, n);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_crashloop, crashloop_setup,
		    crashloop_teardown),
	};
	int rc;

	grpc_init();
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	grpc_shutdown();
	return rc;
}
