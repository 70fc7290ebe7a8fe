/* writer.c — the store's writer thread: queued write sets committed in order. */
#include "store/writer.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/log.h"

/* Most queued sets one transaction takes (bounds its size and the first set's wait). */
#define WRITER_RUN_MAX 64

struct writer_job {
	struct wset *ws;
	writer_done_fn done;
	void *arg;
	struct writer_job *next;
};

struct writer {
	struct store *st;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t work;          /* a job queued, or stop */
	pthread_cond_t idle;          /* a job reported */
	struct writer_job *head, *tail;
	uint64_t queued, reported;    /* jobs since start */
	int stop;
};

static double
writer_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A run of queued jobs committed together, in queue order. */
struct writer_run {
	struct writer_job *job[WRITER_RUN_MAX];
	size_t n;
};

/* Applies every set of the run in one transaction, in order. */
static int
writer_apply_run(struct store_txn *txn, void *arg)
{
	const struct writer_run *run = arg;
	size_t i;
	int rc = 0;

	for (i = 0; i < run->n && rc == 0; i++)
		rc = wset_apply(txn, run->job[i]->ws);
	return rc;
}

/* Commits a run (n >= 1) and reports each job.  Several sets share one transaction (one write
 * of their pages, one fdatasync): the same records in the same order as one transaction each.
 * If the shared one fails (a set whose add meets an existing key, a store error), nothing of
 * it was written and each set is committed alone, so a failing set fails alone, as it would
 * have on its own. */
static void
writer_commit_run(struct writer *w, const struct writer_run *run)
{
	double t0 = writer_now(), seconds;
	size_t i;
	int rc;

	if (run->n > 1) {
		rc = store_update_now(w->st, writer_apply_run, (void *)run);
		if (rc >= 0) {
			seconds = writer_now() - t0;
			for (i = 0; i < run->n; i++)
				run->job[i]->done(run->job[i]->arg, 0, seconds);
			return;
		}
	}
	for (i = 0; i < run->n; i++) {
		t0 = writer_now();
		rc = store_update_now(w->st, wset_apply, run->job[i]->ws);
		run->job[i]->done(run->job[i]->arg, rc < 0 ? rc : 0, writer_now() - t0);
	}
}

static void *
writer_main(void *arg)
{
	struct writer *w = arg;
	struct writer_run run;
	size_t i;

	for (;;) {
		pthread_mutex_lock(&w->mu);
		while (w->head == NULL && !w->stop)
			pthread_cond_wait(&w->work, &w->mu);
		if (w->head == NULL) {   /* stop, and nothing left */
			pthread_mutex_unlock(&w->mu);
			break;
		}
		/* Everything queued so far (up to WRITER_RUN_MAX sets) goes in one commit; the jobs
		 * stay queued (writer_pending counts them) until reported. */
		run.n = 0;
		for (struct writer_job *j = w->head; j != NULL && run.n < WRITER_RUN_MAX; j = j->next)
			run.job[run.n++] = j;
		pthread_mutex_unlock(&w->mu);
		writer_commit_run(w, &run);
		pthread_mutex_lock(&w->mu);
		w->head = run.job[run.n - 1]->next;   /* under the lock: writer_submit appends */
		if (w->head == NULL)
			w->tail = NULL;
		w->reported += run.n;
		pthread_cond_broadcast(&w->idle);
		pthread_mutex_unlock(&w->mu);
		for (i = 0; i < run.n; i++)
			free(run.job[i]);
	}
	return NULL;
}

void
writer_wait(struct writer *w)
{
	uint64_t target;

	if (w == NULL)
		return;
	pthread_mutex_lock(&w->mu);
	target = w->queued;
	while (w->reported < target)
		pthread_cond_wait(&w->idle, &w->mu);
	pthread_mutex_unlock(&w->mu);
}

static void
writer_barrier(void *arg)
{
	writer_wait(arg);
}

size_t
writer_pending(struct writer *w)
{
	size_t n;

	pthread_mutex_lock(&w->mu);
	n = (size_t)(w->queued - w->reported);
	pthread_mutex_unlock(&w->mu);
	return n;
}

int
writer_submit(struct writer *w, struct wset *ws, writer_done_fn done, void *arg)
{
	struct writer_job *job = malloc(sizeof *job);

	if (job == NULL)
		return -ENOMEM;
	*job = (struct writer_job){ .ws = ws, .done = done, .arg = arg };
	pthread_mutex_lock(&w->mu);
	if (w->tail != NULL)
		w->tail->next = job;
	else
		w->head = job;
	w->tail = job;
	w->queued++;
	pthread_cond_signal(&w->work);
	pthread_mutex_unlock(&w->mu);
	return 0;
}

int
writer_start(struct store *st, struct writer **out)
{
	struct writer *w = calloc(1, sizeof *w);
	sigset_t all, old;
	int rc;

	if (w == NULL)
		return -ENOMEM;
	w->st = st;
	if (pthread_mutex_init(&w->mu, NULL) != 0)
		goto fail_w;
	if (pthread_cond_init(&w->work, NULL) != 0)
		goto fail_mu;
	if (pthread_cond_init(&w->idle, NULL) != 0)
		goto fail_work;
	/* Signals stay with the threads that handle them. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&w->thread, NULL, writer_main, w);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		log_err(LOG_STORE, "writer thread: %s", strerror(rc));
		goto fail_idle;
	}
	store_set_barrier(st, writer_barrier, w);
	*out = w;
	return 0;

fail_idle:
	pthread_cond_destroy(&w->idle);
fail_work:
	pthread_cond_destroy(&w->work);
fail_mu:
	pthread_mutex_destroy(&w->mu);
fail_w:
	free(w);
	return -EAGAIN;
}

void
writer_stop(struct writer *w)
{
	if (w == NULL)
		return;
	pthread_mutex_lock(&w->mu);
	w->stop = 1;
	pthread_cond_signal(&w->work);
	pthread_mutex_unlock(&w->mu);
	pthread_join(w->thread, NULL);
	store_set_barrier(w->st, NULL, NULL);
	pthread_cond_destroy(&w->idle);
	pthread_cond_destroy(&w->work);
	pthread_mutex_destroy(&w->mu);
	free(w);
}
