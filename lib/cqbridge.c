/* cqbridge.c — one thread pumps the gRPC completion queue into the libevent loop. */
#include "lib/cqbridge.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>
#include <event2/event.h>

#include "lib/array.h"
#include "lib/log.h"

struct cqbridge_item {
	struct cqbridge_tag *tag;  /* NULL: queue shut down */
	int ok;
};

struct cqbridge {
	grpc_completion_queue *cq;
	struct event *ev;
	struct event *more;            /* zero-delay timer: the next batch, after a poll */
	int efd;
	pthread_t thread;
	int thread_started;

	pthread_mutex_t lock;          /* protects items/nitems/cap */
	struct cqbridge_item *items;
	size_t nitems, cap;

	/* loop thread only */
	struct cqbridge_item *work;    /* queued (not urgent) completions */
	size_t nwork, workcap;
	size_t pos;                    /* next item of work to dispatch */
	size_t spent;                  /* units of CQBRIDGE_BATCH used in this turn */
	unsigned budget_us;            /* time budget of a turn's ordinary completions; 0: none */
	void (*on_turn)(void *arg, double seconds, size_t ran);
	void *on_turn_arg;
	struct cqbridge_item *spare;   /* swapped with items on each drain */
	size_t sparecap;
	void (*done)(void *arg);
	void *done_arg;
	int shut;
	unsigned long long dispatched;
};

/* Appends one completion; wakes the loop only on the empty -> non-empty edge. */
static void
cqbridge_push(struct cqbridge *br, struct cqbridge_tag *tag, int ok)
{
	uint64_t one = 1;
	int wake;

	pthread_mutex_lock(&br->lock);
	if (ARRAY_GROW(br->items, br->cap, br->nitems + 1) != 0) {
		/* Cannot lose a completion: gRPC state would leak forever. */
		pthread_mutex_unlock(&br->lock);
		log_err(LOG_RPC, "cqbridge: out of memory queueing a completion");
		abort();
	}
	wake = br->nitems == 0;
	br->items[br->nitems].tag = tag;
	br->items[br->nitems].ok = ok;
	br->nitems++;
	pthread_mutex_unlock(&br->lock);
	if (wake) {
		while (write(br->efd, &one, sizeof one) < 0 && errno == EINTR)
			;
	}
}

/* The CQ thread: blocks in next() until the queue is shut down. */
static void *
cqbridge_thread(void *arg)
{
	struct cqbridge *br = arg;

	for (;;) {
		grpc_event e = grpc_completion_queue_next(br->cq,
		    gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
		if (e.type == GRPC_QUEUE_SHUTDOWN) {
			cqbridge_push(br, NULL, 0);
			break;
		}
		if (e.type == GRPC_OP_COMPLETE)
			cqbridge_push(br, e.tag, e.success);
	}
	return NULL;
}

/* The next batch on the next loop turn, after the loop polled its descriptors (an event made
 * active from a callback would run in this same turn). */
static void
cqbridge_again(struct cqbridge *br)
{
	static const struct timeval zero = { 0, 0 };

	if (!br->shut && br->more != NULL && !evtimer_pending(br->more, NULL))
		evtimer_add(br->more, &zero);
}

static double
cqbridge_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* Runs one completion (the shutdown sentinel: the done callback). */
static void
cqbridge_run(struct cqbridge *br, struct cqbridge_item *it)
{
	if (it->tag == NULL) {
		br->shut = 1;
		log_debug(LOG_RPC, "cqbridge: queue shut down");
		if (br->done != NULL)
			br->done(br->done_arg);
		return;
	}
	br->dispatched++;
	it->tag->fn(it->tag, it->ok);
}

/* Loop thread: takes what arrived (swapped out under the lock) and runs the urgent
 * completions at once; the others (and the shutdown sentinel, last) queue behind the work
 * list.  Completions of one call keep their order (a call's tags are all of one class). */
static void
cqbridge_take(struct cqbridge *br)
{
	struct cqbridge_item *in;
	size_t i, n, incap;

	pthread_mutex_lock(&br->lock);
	in = br->items;
	incap = br->cap;
	n = br->nitems;
	br->items = br->spare;
	br->cap = br->sparecap;
	br->nitems = 0;
	pthread_mutex_unlock(&br->lock);
	if (br->pos > 0 && br->pos == br->nwork)
		br->nwork = br->pos = 0;
	for (i = 0; i < n; i++) {
		if (in[i].tag != NULL && in[i].tag->urgent) {
			cqbridge_run(br, &in[i]);
			continue;
		}
		if (br->pos > 0 && br->nwork == br->workcap) {
			memmove(br->work, br->work + br->pos, (br->nwork - br->pos) * sizeof *br->work);
			br->nwork -= br->pos;
			br->pos = 0;
		}
		if (ARRAY_GROW(br->work, br->workcap, br->nwork + 1) != 0) {
			/* Cannot drop a completion: run it now instead. */
			cqbridge_run(br, &in[i]);
			continue;
		}
		br->work[br->nwork++] = in[i];
	}
	br->spare = in;
	br->sparecap = incap;
}

/* Loop thread: urgent completions now; at most CQBRIDGE_BATCH ordinary ones per loop turn,
 * and no more once budget_us went by since the turn began (a step reply may stand for many
 * programs' results): the rest waits for the next turn (a zero-delay timer, so the loop polls
 * its descriptors first), and timers, HTTP requests and work deferred to the end of a turn
 * (certad's group commit and dispatch pass) run between batches. */
static void
cqbridge_drain(evutil_socket_t fd, short what, void *arg)
{
	struct cqbridge *br = arg;
	uint64_t cnt;
	size_t n;
	unsigned long long before = br->dispatched;
	double t0 = cqbridge_now_us(), t = t0;

	(void)what;
	while (read(fd, &cnt, sizeof cnt) < 0 && errno == EINTR)
		;
	cqbridge_take(br);
	br->spent = 0;
	while (br->pos < br->nwork && br->spent < CQBRIDGE_BATCH &&
	    (br->budget_us == 0 || br->spent == 0 || t - t0 < (double)br->budget_us)) {
		struct cqbridge_item it = br->work[br->pos++];
		br->spent++;
		cqbridge_run(br, &it);
		t = cqbridge_now_us();
	}
	if (br->on_turn != NULL && br->dispatched != before)
		br->on_turn(br->on_turn_arg, (cqbridge_now_us() - t0) / 1e6,
		    (size_t)(br->dispatched - before));
	if (br->pos == br->nwork)
		br->nwork = br->pos = 0;
	/* More queued here, or arrived meanwhile without writing the eventfd (it is written
	 * only when the list was empty): look again next turn. */
	pthread_mutex_lock(&br->lock);
	n = br->nitems;
	pthread_mutex_unlock(&br->lock);
	if (br->nwork > 0 || n > 0)
		cqbridge_again(br);
}

static void
cqbridge_on_more(evutil_socket_t fd, short what, void *arg)
{
	struct cqbridge *br = arg;

	(void)fd;
	cqbridge_drain(br->efd, what, br);
}

int
cqbridge_new(struct event_base *base, struct cqbridge **out)
{
	struct cqbridge *br;
	int rc;

	br = calloc(1, sizeof *br);
	if (br == NULL)
		return -ENOMEM;
	pthread_mutex_init(&br->lock, NULL);
	br->budget_us = CQBRIDGE_BUDGET_US;
	br->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (br->efd < 0) {
		rc = -errno;
		goto fail_br;
	}
	br->ev = event_new(base, br->efd, EV_READ | EV_PERSIST, cqbridge_drain, br);
	br->more = evtimer_new(base, cqbridge_on_more, br);
	if (br->ev == NULL || br->more == NULL || event_add(br->ev, NULL) != 0) {
		rc = -ENOMEM;
		goto fail_ev;
	}
	br->cq = grpc_completion_queue_create_for_next(NULL);
	if (br->cq == NULL) {
		rc = -ENOMEM;
		goto fail_ev;
	}
	rc = pthread_create(&br->thread, NULL, cqbridge_thread, br);
	if (rc != 0) {
		rc = -rc;
		goto fail_cq;
	}
	br->thread_started = 1;
	*out = br;
	return 0;

fail_cq:
	grpc_completion_queue_shutdown(br->cq);
	while (grpc_completion_queue_next(br->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC),
	    NULL).type != GRPC_QUEUE_SHUTDOWN)
		;
	grpc_completion_queue_destroy(br->cq);
fail_ev:
	if (br->more != NULL)
		event_free(br->more);
	if (br->ev != NULL)
		event_free(br->ev);
	close(br->efd);
fail_br:
	pthread_mutex_destroy(&br->lock);
	free(br);
	return rc;
}

grpc_completion_queue *
cqbridge_cq(struct cqbridge *br)
{
	return br->cq;
}

void
cqbridge_shutdown(struct cqbridge *br, void (*done)(void *arg), void *arg)
{
	br->done = done;
	br->done_arg = arg;
	grpc_completion_queue_shutdown(br->cq);
}

void
cqbridge_free(struct cqbridge *br)
{
	if (br == NULL)
		return;
	if (br->thread_started) {
		if (!br->shut)
			grpc_completion_queue_shutdown(br->cq);
		pthread_join(br->thread, NULL);
	}
	grpc_completion_queue_destroy(br->cq);
	event_free(br->more);
	event_free(br->ev);
	close(br->efd);
	pthread_mutex_destroy(&br->lock);
	free(br->items);
	free(br->spare);
	free(br->work);
	free(br);
}

void
cqbridge_charge(struct cqbridge *br, size_t units)
{
	br->spent += units;
}

void
cqbridge_set_budget(struct cqbridge *br, unsigned budget_us)
{
	br->budget_us = budget_us;
}

void
cqbridge_on_turn(struct cqbridge *br, void (*fn)(void *arg, double seconds, size_t ran),
    void *arg)
{
	br->on_turn = fn;
	br->on_turn_arg = arg;
}

void
cqbridge_post(struct cqbridge *br, struct cqbridge_tag *tag, int ok)
{
	cqbridge_push(br, tag, ok);
}

unsigned long long
cqbridge_dispatched(const struct cqbridge *br)
{
	return br->dispatched;
}
