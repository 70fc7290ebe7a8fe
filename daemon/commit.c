/* commit.c — the group commit: a loop turn's writes in one set, committed by the writer thread. */
#include "daemon/commit.h"
#include "daemon/core_impl.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <event2/event.h>

#include "daemon/dispatch.h"
#include "daemon/persist.h"
#include "daemon/persist_impl.h"
#include "daemon/program.h"
#include "daemon/submit.h"
#include "daemon/telemetry.h"
#include "lib/array.h"
#include "lib/error.h"
#include "lib/log.h"
#include "lib/strmap.h"
#include "store/store.h"
#include "store/writer.h"
#include "store/wset.h"

/* Group commits are made on the loop while the writer is idle and recent ones took less than
 * this (a thread hand-off each way costs ~0.1-1 ms); commit_recent_s is their moving average
 * (weight of the newest). */
#define COMMIT_INLINE_S 0.001
#define COMMIT_RECENT_WEIGHT 0.2
/* Sets kept for reuse when done: about as many as the writer holds at once under load. */
#define COMMIT_SPARE_SETS 8

/*
 * A turn's group commit is built on the loop (commit_flush: every queued program's records
 * into one write set) and committed by the writer thread (store/writer.h) while the loop goes
 * on.  Its programs stay commit_queued (no step, no event, Watch and Cancel see them as
 * not yet durable) until the loop learns of the commit (commit_on_done, woken through an
 * eventfd); then each one's event goes out (dispatch_persisted).  The chains' saved counts are
 * advanced when the set is built; a failed commit makes its programs rewrite everything
 * (chains_reset) on their own (persist_or_wait, with the usual waiting and retries).
 */
struct commit_entry {
	struct program *p;    /* NULL: dropped (commit_unqueue) */
	int final;
	int first;            /* its accepting write (commit_accept) */
};

struct commit_set {
	struct core *c;
	struct wset *ws;
	struct commit_entry *e;
	size_t n, cap;
	size_t live;          /* entries when handed to the writer */
	size_t later;         /* its first operations: puts taken from later_ws */
	int rc;               /* the commit's result, once done */
	double seconds;       /* its transaction's duration */
	atomic_int done;      /* set by the writer thread after rc and seconds */
	struct commit_set *next;
};

/* A set to fill: a spare one or a new one. */
static struct commit_set *
commit_set_get(struct core *c)
{
	struct commit_set *set = c->sets_spare;

	if (set != NULL) {
		c->sets_spare = set->next;
		c->nsets_spare--;
	} else {
		set = calloc(1, sizeof *set);
		if (set == NULL)
			return NULL;
		if (wset_new(&set->ws) != 0) {
			free(set);
			return NULL;
		}
		set->c = c;
	}
	wset_clear(set->ws);
	set->n = set->live = set->later = 0;
	set->rc = 0;
	set->seconds = 0;
	atomic_store(&set->done, 0);
	set->next = NULL;
	return set;
}

/* Keeps up to COMMIT_SPARE_SETS sets for reuse (their buffers sized by the last turns: a set
 * made anew grows its write set's buffer again by reallocs, to megabytes at large turns),
 * frees the others. */
static void
commit_set_put(struct core *c, struct commit_set *set)
{
	if (c->nsets_spare < COMMIT_SPARE_SETS) {
		set->next = c->sets_spare;
		c->sets_spare = set;
		c->nsets_spare++;
		return;
	}
	wset_free(set->ws);
	free(set->e);
	free(set);
}

void
commit_spares_drop(struct core *c)
{
	struct commit_set *set;

	if (c->sets_spare == NULL)
		return;
	while ((set = c->sets_spare->next) != NULL) {
		c->sets_spare->next = set->next;
		wset_free(set->ws);
		free(set->e);
		free(set);
		c->nsets_spare--;
	}
}

/* Records a set's result; after the done flag the loop may hand it out (and free it). */
static void
commit_set_finish(struct commit_set *set, int rc, double seconds)
{
	set->rc = rc;
	set->seconds = seconds;
	atomic_store_explicit(&set->done, 1, memory_order_release);
}

/* The writer thread: the set is committed (or failed); wake the loop. */
static void
commit_on_written(void *arg, int rc, double seconds)
{
	struct commit_set *set = arg;
	/* Read before done is set: from then on the loop may hand the set out and free it
	 * (commit_hand_out, woken by an earlier set's write, or commit_settle). */
	int efd = set->c->commit_efd;
	uint64_t one = 1;
	ssize_t n;

	commit_set_finish(set, rc, seconds);
	n = write(efd, &one, sizeof one);
	(void)n;   /* a full counter still wakes the loop */
}

/* p's write with the writer is done: drop p from its set, and if the set failed make p's
 * next write rewrite everything.  Waits for the writer if needed (rare: an ending or a
 * forget while p's step is being written).  An accepting write that committed has made p
 * durable with its idempotency key: the client hears "accepted" now (the next write must not
 * add the key again). */
void
commit_settle(struct core *c, struct program *p)
{
	struct commit_set *set = p->commit_set;
	int first = 0;
	size_t i;

	if (set == NULL)
		return;
	if (!atomic_load_explicit(&set->done, memory_order_acquire))
		writer_wait(c->writer);
	for (i = 0; i < set->n; i++)
		if (set->e[i].p == p) {
			set->e[i].p = NULL;
			first = first || set->e[i].first;
		}
	if (set->rc != 0)
		p->chains_reset = true;
	p->commit_set = NULL;
	p->commit_queued = false;
	p->commit_final = false;
	p->commit_again = false;
	p->commit_again_final = false;
	if (set->rc == 0 && first && p->accept_pending)
		persist_accepted(c, p);
	dispatch_ready(c, p);
}

/* An accepting write's set is done (rc: its result): the client hears "accepted"; when the
 * set failed the program is written alone, and if that fails too the Submit is refused
 * (submit_refused: UNAVAILABLE, the program forgotten), as a direct write would have. */
static void
commit_accept_done(struct core *c, struct program *p, int rc)
{
	if (rc == 0) {
		persist_accepted(c, p);
		dispatch_ready(c, p);
		core_kick(c);
		return;
	}
	p->chains_reset = true;
	rc = persist_write(c, p, 1, 0, 1);
	if (rc == 0) {
		dispatch_ready(c, p);
		core_kick(c);
		return;
	}
	commit_accept_end(c, p);
	submit_refused(c, p, rc);
}

/* A set failed: the puts it took from later_ws go back in front of those queued since, for
 * the next set (not at once: a full disk would fail it again every turn). */
static void
commit_later_again(struct core *c, struct commit_set *set)
{
	struct wset *ws = NULL;

	if (set->later == 0)
		return;
	wset_truncate(set->ws, set->later);
	if (wset_new(&ws) != 0 || wset_append(ws, set->ws) != 0 ||
	    (c->later_ws != NULL && wset_append(ws, c->later_ws) != 0)) {
		log_warn(LOG_STORE, "%zu records for a failed group commit are lost (no memory); "
		    "their next change writes them", set->later);
		wset_free(ws);
		return;
	}
	wset_free(c->later_ws);
	c->later_ws = ws;
}

/* Waits until the writer is idle (every set queued so far done) and gives the later puts of
 * the failed ones not yet handed out back to later_ws (oldest set first, in front of those
 * queued since): a direct put or the exit's write of later_ws goes after them. */
static void
commit_later_failed(struct core *c)
{
	writer_wait(c->writer);
	for (;;) {
		struct commit_set *set, *last = NULL;
		for (set = c->sets_head; set != NULL; set = set->next)
			if (atomic_load_explicit(&set->done, memory_order_acquire) &&
			    set->rc != 0 && set->later > 0)
				last = set;
		if (last == NULL)
			break;
		commit_later_again(c, last);
		last->later = 0;
	}
}

/* A group commit failed: counted, and a warning at most once per PERSIST_LOG_MS (its programs'
 * own writes follow; if they fail too, persist_failed logs them). */
static void
commit_set_failed(struct core *c, const struct commit_set *set)
{
	int64_t now = core_now_ms();

	c->set_failures++;
	if (c->set_logged_ms != 0 && now - c->set_logged_ms < PERSIST_LOG_MS)
		return;
	c->set_logged_ms = now;
	log_warn(LOG_STORE, "group commit failed: %s (state %s): its %zu programs are written "
	    "alone now, its %zu other records with the next one; %llu group commits failed since "
	    "start", certa_strerror(set->rc), store_path(c->st), set->live, set->later,
	    (unsigned long long)c->set_failures);
}

/* The loop: hands out the results of the sets the writer has committed, oldest first. */
static void
commit_hand_out(struct core *c)
{
	struct commit_set *set;
	size_t i;

	while ((set = c->sets_head) != NULL &&
	    atomic_load_explicit(&set->done, memory_order_acquire)) {
		c->sets_head = set->next;
		if (c->sets_head == NULL)
			c->sets_tail = NULL;
		telemetry_loop_phase(c->tel, "store", set->seconds);
		c->commit_recent_s = c->commit_recent_s * (1 - COMMIT_RECENT_WEIGHT) +
		    set->seconds * COMMIT_RECENT_WEIGHT;
		if (set->rc == 0) {
			telemetry_commit(c->tel, set->live);
		} else {
			commit_set_failed(c, set);
			commit_later_again(c, set);
		}
		for (i = 0; i < set->n; i++) {
			struct program *p = set->e[i].p;
			int final = set->e[i].final;
			if (p == NULL)
				continue;
			set->e[i].p = NULL;
			p->commit_set = NULL;
			p->commit_queued = false;
			p->commit_final = false;
			if (set->e[i].first) {
				/* An accepting write: "accepted", or the Submit refused. */
				commit_accept_done(c, p, set->rc);
				continue;
			}
			if (p->commit_again) {
				/* Queued again while this write was with the writer: the next
				 * commit carries both, and its event. */
				final = final || p->commit_again_final;
				p->commit_again = false;
				p->commit_again_final = false;
				if (set->rc != 0)
					p->chains_reset = true;
				commit_later(c, p, final);
				continue;
			}
			if (set->rc != 0) {
				/* The group failed: each program on its own, rewritten whole, with
				 * the usual waiting and retries for those that fail again. */
				p->chains_reset = true;
				if (persist_or_wait(c, p, final) == 0)
					dispatch_persisted(c, p, final);
				continue;
			}
			if (p->persist_pending) {
				p->persist_pending = false;
				p->persist_final = false;
				c->persist_waiting--;
				persist_health(c);
			}
			dispatch_persisted(c, p, final);
		}
		if (set->rc == 0 && c->persist_waiting == 0) {
			c->persist_failing_since_ms = 0;
			c->persist_logged_ms = 0;
			c->persist_unlogged = 0;
		}
		commit_set_put(c, set);
	}
	core_kick(c);
}

static void
commit_on_done(evutil_socket_t fd, short what, void *arg)
{
	struct core *c = arg;
	uint64_t v;
	double t0 = core_mono_s();
	ssize_t n;

	(void)what;
	n = read(fd, &v, sizeof v);
	(void)n;
	commit_hand_out(c);
	telemetry_loop_phase(c->tel, "commit", core_mono_s() - t0);
}

void
commit_later(struct core *c, struct program *p, int final)
{
	if (p->commit_set != NULL) {
		/* Its last write is with the writer: this one follows when that is done. */
		p->commit_again = true;
		p->commit_again_final = p->commit_again_final || final;
		return;
	}
	if (p->commit_queued) {
		p->commit_final = p->commit_final || final;
		return;
	}
	if (ARRAY_GROW(c->commit_q, c->commit_cap, c->ncommit + 1) != 0) {
		/* No room to queue it: write it alone now. */
		if (persist_or_wait(c, p, final) == 0)
			dispatch_persisted(c, p, final);
		return;
	}
	c->commit_q[c->ncommit++] = p;
	p->commit_queued = true;
	p->commit_final = final != 0;
	if (c->ncommit == 1)
		event_active(c->commit, 0, 0);
}

int
commit_accept(struct core *c, struct program *p)
{
	char key[512];

	if (ARRAY_GROW(c->commit_q, c->commit_cap, c->ncommit + 1) != 0)
		return -ENOMEM;
	if (p->idempotency_key[0] != '\0') {
		persist_idem_key(p->tenant, p->tenant_uid, p->idempotency_key, key, sizeof key);
		if (strmap_put(c->accept_keys, key, p, NULL) != 0)
			return -ENOMEM;
	}
	p->accept_pending = true;
	c->accepts_pending++;
	c->commit_q[c->ncommit++] = p;
	p->commit_queued = true;
	p->commit_final = false;
	if (c->ncommit == 1)
		event_active(c->commit, 0, 0);
	return 0;
}

void
commit_accept_end(struct core *c, struct program *p)
{
	char key[512];

	if (!p->accept_pending)
		return;
	p->accept_pending = false;
	c->accepts_pending--;
	if (p->idempotency_key[0] != '\0') {
		persist_idem_key(p->tenant, p->tenant_uid, p->idempotency_key, key, sizeof key);
		if (strmap_get(c->accept_keys, key) == p)
			strmap_del(c->accept_keys, key);
	}
}

struct program *
commit_accept_key(struct core *c, const char *tenant, uint64_t uid, const char *key)
{
	char k[512];

	if (c->accepts_pending == 0)
		return NULL;
	persist_idem_key(tenant, uid, key, k, sizeof k);
	return strmap_get(c->accept_keys, k);
}

int
commit_put_now(struct core *c, enum store_db db, const char *key, const ProtobufCMessage *msg)
{
	struct wset *ws;
	int rc;

	rc = wset_new(&ws);
	if (rc != 0)
		return rc;
	/* The puts of failed sets go back to later_ws now, not after this put. */
	commit_later_failed(c);
	/* Puts still waiting for the next set go first, in this transaction: an older value of
	 * the same key must not land after this one. */
	if (c->later_ws != NULL && wset_count(c->later_ws) > 0)
		rc = wset_append(ws, c->later_ws);
	if (rc == 0)
		rc = wset_put(ws, db, key, msg);
	/* store_update waits for the writer's queue first (store_set_barrier). */
	if (rc == 0)
		rc = store_update(c->st, wset_apply, ws);
	if (rc == 0 && c->later_ws != NULL)
		wset_clear(c->later_ws);
	wset_free(ws);
	return rc < 0 ? rc : 0;
}

int
commit_put_later(struct core *c, enum store_db db, const char *key,
    const ProtobufCMessage *msg)
{
	int rc;

	if (c->commit == NULL)
		return -ESHUTDOWN;   /* after persist_fini */
	if (c->later_ws == NULL && wset_new(&c->later_ws) != 0)
		return -ENOMEM;
	rc = wset_put(c->later_ws, db, key, msg);
	if (rc == 0 && c->ncommit == 0 && wset_count(c->later_ws) == 1)
		event_active(c->commit, 0, 0);
	return rc;
}

void
commit_unqueue(struct core *c, struct program *p)
{
	size_t i;

	if (!p->commit_queued)
		return;
	if (p->commit_set != NULL) {
		commit_settle(c, p);
	} else {
		for (i = 0; i < c->ncommit; i++)
			if (c->commit_q[i] == p)
				c->commit_q[i] = NULL;
	}
	p->commit_queued = false;
	p->commit_final = false;
}

/* Adds p's write to set; 0, or the error (set unchanged). */
static int
commit_set_add(struct commit_set *set, struct program *p, int final)
{
	int first = p->accept_pending;
	struct persist_ctx cp = { p, final || first, final, first, set->c->persist_scratch };
	size_t mark = wset_mark(set->ws);
	int rc;

	if (ARRAY_GROW(set->e, set->cap, set->n + 1) != 0)
		return -ENOMEM;
	rc = persist_build(set->ws, &cp);
	if (rc != 0) {
		wset_truncate(set->ws, mark);
		return rc;
	}
	set->e[set->n].p = p;
	set->e[set->n].final = final;
	set->e[set->n].first = first;
	set->n++;
	return 0;
}

void
commit_flush(struct core *c)
{
	struct commit_set *set;
	struct program **q;
	size_t n, i;
	int64_t now = core_now_ms();
	int inline_set = 0;

	if (c->ncommit == 0 && (c->later_ws == NULL || wset_count(c->later_ws) == 0))
		return;
	/* Take the queue: the writes done alone below may queue programs again. */
	q = c->commit_q;
	n = c->ncommit;
	c->commit_q = NULL;
	c->ncommit = c->commit_cap = 0;
	set = commit_set_get(c);
	if (set != NULL && c->later_ws != NULL && wset_count(c->later_ws) > 0 &&
	    wset_append(set->ws, c->later_ws) == 0) {
		set->later = wset_count(set->ws);
		wset_clear(c->later_ws);
	}
	for (i = 0; i < n; i++) {
		struct program *p = q[i];
		if (p == NULL || set == NULL)
			continue;
		p->updated_ms = now;
		if (commit_set_add(set, p, p->commit_final) != 0)
			continue;   /* written alone below */
		q[i] = NULL;
		persist_saved(p, p->commit_final || p->accept_pending);
		p->commit_set = set;
	}
	if (set != NULL && wset_count(set->ws) > 0) {
		set->live = set->n;
		/* A fast store (tmpfs, a quick disk: recent commits under COMMIT_INLINE_S) and an
		 * idle writer: commit here and hand out now, as two thread wake-ups (to the writer
		 * and back) would cost more than the commit.  Otherwise (or with no memory to
		 * queue it) the writer commits it while the loop goes on. */
		inline_set = writer_pending(c->writer) == 0 && c->commit_recent_s < c->commit_inline_s;
		if (inline_set || writer_submit(c->writer, set->ws, commit_on_written, set) != 0) {
			double t0 = core_mono_s();
			int rc = store_update(c->st, wset_apply, set->ws);
			commit_set_finish(set, rc < 0 ? rc : 0, core_mono_s() - t0);
			inline_set = 1;
		}
		if (c->sets_tail != NULL)
			c->sets_tail->next = set;
		else
			c->sets_head = set;
		c->sets_tail = set;
	} else if (set != NULL) {
		commit_set_put(c, set);
	}
	/* What could not join the set (no memory, a record that does not pack): alone, with
	 * the usual waiting and retries. */
	for (i = 0; i < n; i++) {
		struct program *p = q[i];
		int final;
		if (p == NULL || !p->commit_queued || p->commit_set != NULL)
			continue;
		final = p->commit_final;
		p->commit_queued = false;
		p->commit_final = false;
		if (persist_or_wait(c, p, final) == 0)
			dispatch_persisted(c, p, final);
	}
	free(q);
	if (inline_set)
		commit_hand_out(c);
}

void
commit_sync(struct core *c)
{
	commit_flush(c);
	writer_wait(c->writer);
	commit_hand_out(c);
}

static void
commit_on_turn(evutil_socket_t fd, short what, void *arg)
{
	struct core *c = arg;
	double t0 = core_mono_s();

	(void)fd;
	(void)what;
	commit_flush(c);
	telemetry_loop_phase(c->tel, "serialize", core_mono_s() - t0);
}

int
commit_init(struct core *c)
{
	c->commit_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (c->commit_efd < 0)
		return -errno;
	c->commit = event_new(c->base, -1, 0, commit_on_turn, c);
	c->commit_done = event_new(c->base, c->commit_efd, EV_READ | EV_PERSIST, commit_on_done,
	    c);
	c->commit_inline_s = COMMIT_INLINE_S;
	if (c->commit == NULL || c->commit_done == NULL || event_add(c->commit_done, NULL) != 0)
		return -ENOMEM;
	return writer_start(c->st, &c->writer);
}

void
commit_fini(struct core *c)
{
	struct commit_set *set;
	size_t i;

	/* Puts not yet in a set (risk controllers, chain lengths at a clean exit, those of
	 * failed sets) are written now, after what the writer holds. */
	commit_later_failed(c);
	if (c->later_ws != NULL && wset_count(c->later_ws) > 0 && c->st != NULL &&
	    store_update(c->st, wset_apply, c->later_ws) != 0)
		log_warn(LOG_STORE, "%zu records written later were lost at exit",
		    wset_count(c->later_ws));
	wset_free(c->later_ws);
	c->later_ws = NULL;
	/* What the writer holds is committed; its results are not handed out any more. */
	writer_stop(c->writer);
	c->writer = NULL;
	while ((set = c->sets_head) != NULL) {
		c->sets_head = set->next;
		for (i = 0; i < set->n; i++)
			if (set->e[i].p != NULL) {
				set->e[i].p->commit_set = NULL;
				set->e[i].p->commit_queued = false;
			}
		set->next = NULL;
		wset_free(set->ws);
		free(set->e);
		free(set);
	}
	c->sets_tail = NULL;
	while ((set = c->sets_spare) != NULL) {
		c->sets_spare = set->next;
		wset_free(set->ws);
		free(set->e);
		free(set);
	}
	c->nsets_spare = 0;
	if (c->commit != NULL)
		event_free(c->commit);
	c->commit = NULL;
	if (c->commit_done != NULL)
		event_free(c->commit_done);
	c->commit_done = NULL;
	if (c->commit_efd >= 0)
		close(c->commit_efd);
	c->commit_efd = -1;
	/* Unwritten results are dropped: the store holds the last committed step. */
	for (i = 0; i < c->ncommit; i++)
		if (c->commit_q[i] != NULL)
			c->commit_q[i]->commit_queued = false;
	free(c->commit_q);
	c->commit_q = NULL;
	c->ncommit = c->commit_cap = 0;
}
