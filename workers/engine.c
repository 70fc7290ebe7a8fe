/* engine.c — the engine table and dispatch. */
#include "workers/engine.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <event2/event.h>

#include "lib/error.h"
#include "lib/hash.h"
#include "lib/log.h"

extern const struct engine_ops replay_engine_ops;
extern const struct engine_ops llm_engine_ops;
extern const struct engine_ops openai_engine_ops;

static const struct engine_ops *const engine_table[] = {
	&replay_engine_ops,
	&llm_engine_ops,
	&openai_engine_ops,
};

/* One queued step: what engine_step_async() was given (as the engine_work step_many sees,
 * first so that a work pointer is its job), and its outcome. */
struct engine_job {
	struct engine_work w;
	engine_done_fn done;
	void *arg;
	struct engine_job *next;
};

/* A FIFO of jobs. */
struct engine_fifo {
	struct engine_job *head, *tail;
};

/*
 * The engine thread of a threaded engine.  Lock order: only `mu`.  The loop thread pushes to
 * `todo` and signals `cond`; the engine thread pops, runs ops->step without the lock, pushes
 * to `done` and writes the eventfd on the empty -> non-empty edge (as lib/cqbridge does).
 */
struct engine_thread {
	pthread_t tid;
	pthread_mutex_t mu;
	pthread_cond_t cond;
	struct engine_fifo todo, done;
	bool stop;
	bool abort;              /* engine_abort(): step_many ends what it holds */
	int efd;
	struct event *ev;
};

struct engine {
	const struct engine_ops *ops;
	void *state;
	struct engine_thread *th;   /* NULL: steps run inline */
};

static void
engine_fifo_push(struct engine_fifo *f, struct engine_job *j)
{
	j->next = NULL;
	if (f->tail != NULL)
		f->tail->next = j;
	else
		f->head = j;
	f->tail = j;
}

static struct engine_job *
engine_fifo_pop(struct engine_fifo *f)
{
	struct engine_job *j = f->head;

	if (j != NULL) {
		f->head = j->next;
		if (f->head == NULL)
			f->tail = NULL;
	}
	return j;
}

/* Engine thread, th->mu held: a finished job to the done list (waking the loop on the empty ->
 * non-empty edge). */
static void
engine_post_done(struct engine_thread *th, struct engine_job *j)
{
	uint64_t one = 1;
	bool wake = th->done.head == NULL;

	engine_fifo_push(&th->done, j);
	if (wake && write(th->efd, &one, sizeof one) != (ssize_t)sizeof one)
		log_warn(LOG_ENGINE, "engine thread: eventfd write failed");
}

/* The feed step_many reads from: the engine itself. */
struct engine_work *
engine_feed_take(struct engine_feed *feed)
{
	struct engine_thread *th = ((struct engine *)(void *)feed)->th;
	struct engine_job *j;

	pthread_mutex_lock(&th->mu);
	j = th->stop ? NULL : engine_fifo_pop(&th->todo);
	pthread_mutex_unlock(&th->mu);
	return j != NULL ? &j->w : NULL;
}

bool
engine_feed_stopping(struct engine_feed *feed)
{
	struct engine_thread *th = ((struct engine *)(void *)feed)->th;
	bool stop;

	pthread_mutex_lock(&th->mu);
	stop = th->stop || th->abort;
	pthread_mutex_unlock(&th->mu);
	return stop;
}

void
engine_abort(struct engine *e)
{
	struct engine_thread *th = e->th;

	if (th == NULL)
		return;
	pthread_mutex_lock(&th->mu);
	th->abort = true;
	pthread_mutex_unlock(&th->mu);
	if (e->ops->wake != NULL)
		e->ops->wake(e->state);
}

void
engine_feed_done(struct engine_feed *feed, struct engine_work *w)
{
	struct engine_thread *th = ((struct engine *)(void *)feed)->th;

	pthread_mutex_lock(&th->mu);
	engine_post_done(th, (struct engine_job *)(void *)w);
	pthread_mutex_unlock(&th->mu);
}

/* Engine thread: run queued steps until told to stop.  A step_many engine takes them all,
 * and those that arrive while it computes (continuous batching across Step RPCs). */
static void *
engine_thread_main(void *arg)
{
	struct engine *e = arg;
	struct engine_thread *th = e->th;
	struct engine_job *j;

	pthread_mutex_lock(&th->mu);
	for (;;) {
		while (!th->stop && th->todo.head == NULL)
			pthread_cond_wait(&th->cond, &th->mu);
		if (th->stop)
			break;
		if (e->ops->step_many != NULL) {
			pthread_mutex_unlock(&th->mu);
			e->ops->step_many(e->state, (struct engine_feed *)(void *)e);
			pthread_mutex_lock(&th->mu);
			continue;
		}
		j = engine_fifo_pop(&th->todo);
		pthread_mutex_unlock(&th->mu);
		j->w.rc = e->ops->step(e->state, j->w.items, j->w.n, j->w.out, j->w.err,
		    j->w.errlen);
		pthread_mutex_lock(&th->mu);
		engine_post_done(th, j);
	}
	pthread_mutex_unlock(&th->mu);
	return NULL;
}

/* Loop thread: deliver finished steps. */
static void
engine_on_done(evutil_socket_t fd, short what, void *arg)
{
	struct engine *e = arg;
	struct engine_thread *th = e->th;
	struct engine_fifo got;
	struct engine_job *j;
	uint64_t v;

	(void)what;
	if (read(fd, &v, sizeof v) < 0 && errno != EAGAIN)
		log_warn(LOG_ENGINE, "engine eventfd read failed");
	pthread_mutex_lock(&th->mu);
	got = th->done;
	th->done.head = th->done.tail = NULL;
	pthread_mutex_unlock(&th->mu);
	while ((j = engine_fifo_pop(&got)) != NULL) {
		j->done(j->arg, j->w.rc, j->w.err);
		free(j);
	}
}

int
engine_attach(struct engine *e, struct event_base *base)
{
	struct engine_thread *th;
	int rc;

	if ((!e->ops->threaded &&
	    (e->ops->wants_thread == NULL || !e->ops->wants_thread(e->state))) || e->th != NULL)
		return 0;
	th = calloc(1, sizeof *th);
	if (th == NULL)
		return -ENOMEM;
	th->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (th->efd < 0) {
		rc = -errno;
		goto fail_th;
	}
	th->ev = event_new(base, th->efd, EV_READ | EV_PERSIST, engine_on_done, e);
	if (th->ev == NULL || event_add(th->ev, NULL) != 0) {
		rc = -ENOMEM;
		goto fail_ev;
	}
	pthread_mutex_init(&th->mu, NULL);
	pthread_cond_init(&th->cond, NULL);
	e->th = th;
	rc = -pthread_create(&th->tid, NULL, engine_thread_main, e);
	if (rc != 0)
		goto fail_sync;
	return 0;

fail_sync:
	e->th = NULL;
	pthread_cond_destroy(&th->cond);
	pthread_mutex_destroy(&th->mu);
fail_ev:
	if (th->ev != NULL)
		event_free(th->ev);
	close(th->efd);
fail_th:
	free(th);
	return rc;
}

void
engine_detach(struct engine *e)
{
	struct engine_thread *th = e->th;
	struct engine_job *j;
	size_t dropped = 0;

	if (th == NULL)
		return;
	pthread_mutex_lock(&th->mu);
	th->stop = true;
	pthread_cond_signal(&th->cond);
	pthread_mutex_unlock(&th->mu);
	if (e->ops->wake != NULL)
		e->ops->wake(e->state);
	pthread_join(th->tid, NULL);
	while ((j = engine_fifo_pop(&th->todo)) != NULL || (j = engine_fifo_pop(&th->done)) != NULL) {
		free(j);
		dropped++;
	}
	if (dropped > 0)
		log_warn(LOG_ENGINE, "engine stopped with %zu steps not delivered", dropped);
	event_free(th->ev);
	close(th->efd);
	pthread_cond_destroy(&th->cond);
	pthread_mutex_destroy(&th->mu);
	free(th);
	e->th = NULL;
}

void
engine_step_async(struct engine *e, const struct engine_item *items, size_t n,
    struct engine_result *out, char *err, size_t errlen, engine_done_fn done, void *arg)
{
	struct engine_thread *th = e->th;
	struct engine_job *j;

	if (th == NULL) {
		/* Synchronous engine (or not attached): run it here. */
		int rc = e->ops->step(e->state, items, n, out, err, errlen);
		done(arg, rc, err);
		return;
	}
	j = calloc(1, sizeof *j);
	if (j == NULL) {
		snprintf(err, errlen, "out of memory queueing the step");
		done(arg, -ENOMEM, err);
		return;
	}
	j->w = (struct engine_work){ .items = items, .n = n, .out = out, .err = err,
	    .errlen = errlen };
	j->done = done;
	j->arg = arg;
	pthread_mutex_lock(&th->mu);
	engine_fifo_push(&th->todo, j);
	pthread_cond_signal(&th->cond);
	pthread_mutex_unlock(&th->mu);
	if (e->ops->wake != NULL)
		e->ops->wake(e->state);
}

int
engine_open(const char *name, const struct engine_options *opt, struct engine **out)
{
	struct engine *e;
	size_t i;
	int rc;

	for (i = 0; i < sizeof engine_table / sizeof engine_table[0]; i++) {
		if (strcmp(engine_table[i]->name, name) != 0)
			continue;
		e = calloc(1, sizeof *e);
		if (e == NULL)
			return -ENOMEM;
		e->ops = engine_table[i];
		rc = e->ops->open(opt, &e->state);
		if (rc != 0) {
			free(e);
			return rc;
		}
		*out = e;
		return 0;
	}
	log_err(LOG_ENGINE, "unknown engine '%s' (built in: %s)", name, engine_names());
	return CERTA_EINVAL;
}

void
engine_close(struct engine *e)
{
	if (e == NULL)
		return;
	engine_detach(e);
	e->ops->close(e->state);
	free(e);
}

/* Synchronous: on a threaded engine only while it is not attached (tests, tools). */
int
engine_step(struct engine *e, const struct engine_item *items, size_t n,
    struct engine_result *out, char *err, size_t errlen)
{
	return e->ops->step(e->state, items, n, out, err, errlen);
}

int
engine_release(struct engine *e, const char *request_id)
{
	return e->ops->release(e->state, request_id);
}

int
engine_health(struct engine *e, char *err, size_t errlen)
{
	return e->ops->health != NULL ? e->ops->health(e->state, err, errlen) : 0;
}

void
engine_info(struct engine *e, struct engine_info *out)
{
	memset(out, 0, sizeof *out);
	e->ops->info(e->state, out);
}

void
engine_result_clear(struct engine_result *r)
{
	free(r->text);
	free(r->probe_answer);
	free(r->final_answer);
	memset(r, 0, sizeof *r);
}

const char *
engine_names(void)
{
	return "replay, llm, openai";
}

/* Duplicate request ids of a batch: an open-addressed table of item indexes (at least twice
 * as many slots as items), so a batch of hundreds costs O(n) expected, not O(n^2) compares. */
#define ENGINE_DUP_EMPTY UINT32_MAX
#define ENGINE_DUP_STACK 512

int
engine_check_items(const struct engine_item *items, size_t n, char *err, size_t errlen)
{
	uint32_t stack[ENGINE_DUP_STACK], *slot = stack;
	size_t i, nslots = 16, mask;
	int rc = 0;

	if (n == 0) {
		snprintf(err, errlen, "empty batch");
		return CERTA_EINVAL;
	}
	if (n >= ENGINE_DUP_EMPTY / 4) {
		snprintf(err, errlen, "batch of %zu items is too large", n);
		return CERTA_EINVAL;
	}
	while (nslots < 2 * n)
		nslots <<= 1;
	if (nslots > ENGINE_DUP_STACK) {
		slot = malloc(nslots * sizeof *slot);
		if (slot == NULL) {
			snprintf(err, errlen, "out of memory checking the batch");
			return -ENOMEM;
		}
	}
	memset(slot, 0xff, nslots * sizeof *slot);
	mask = nslots - 1;
	for (i = 0; i < n; i++) {
		const struct engine_item *it = &items[i];
		size_t h;

		if (it->request_id == NULL || it->request_id[0] == '\0') {
			snprintf(err, errlen, "item %zu: missing request_id", i);
			rc = CERTA_EINVAL;
			break;
		}
		if (it->max_new_tokens == 0) {
			snprintf(err, errlen, "request %s: max_new_tokens must be > 0",
			    it->request_id);
			rc = CERTA_EINVAL;
			break;
		}
		h = (size_t)hash_fnv1a(it->request_id, strlen(it->request_id), HASH_FNV1A_BASIS) &
		    mask;
		while (slot[h] != ENGINE_DUP_EMPTY &&
		    strcmp(items[slot[h]].request_id, it->request_id) != 0)
			h = (h + 1) & mask;
		if (slot[h] != ENGINE_DUP_EMPTY) {
			snprintf(err, errlen, "request %s appears twice in one batch",
			    it->request_id);
			rc = CERTA_EINVAL;
			break;
		}
		slot[h] = (uint32_t)i;
	}
	if (slot != stack)
		free(slot);
	return rc;
}

int
engine_no_state(const struct engine_item *it, const char *why, char *err, size_t errlen)
{
	snprintf(err, errlen, "state missing: request %s came without its prompt but this worker "
	    "%s: resend it with prompt and resume_text", it->request_id, why);
	return CERTA_ENOSTATE;
}
