/* persist.c — a program's durable write: record, changed chains, history, idempotency key. */
#include "daemon/persist.h"
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
#define PERSIST_INLINE_S 0.001
#define PERSIST_RECENT_WEIGHT 0.2

/* Retry delays after a failed commit, and the error log's rate limit. */
#define PERSIST_BACKOFF_MIN_MS 100
#define PERSIST_BACKOFF_MAX_MS 5000
#define PERSIST_LOG_MS 10000

/* --- persistence --- */

struct persist_ctx {
	struct program *p;
	int all_chains;   /* write every chain, not only dirty ones */
	int history;      /* also write the history record */
	int first;        /* the accepting write: also record the idempotency key */
};

/* A chain's probe points that go into chunks: all but the latest, whose certaindex the next
 * decision may still set (it stays in the chain's record, rewritten with it). */
static size_t
persist_sealed(const struct chain *ch)
{
	return ch->nprobes > 0 ? ch->nprobes - 1 : 0;
}

/* What the store holds of a chain's chunks: its text bytes, chunk count and probe points
 * there (all zero when the program's chains are rewritten whole, reset). */
struct persist_base {
	size_t text;
	uint32_t chunks;
	size_t probes;
};

static struct persist_base
persist_base(const struct chain *ch, int reset)
{
	struct persist_base b = { 0, 0, 0 };

	if (!reset) {
		b.text = ch->text_saved;
		b.chunks = ch->text_chunks;
		b.probes = ch->probes_saved;
	}
	return b;
}

/* Whether a chain's next write appends a chunk: new text, or probe points sealed since. */
static int
persist_chunk_due(const struct chain *ch, const struct persist_base *b)
{
	return ch->text_len > b->text || persist_sealed(ch) > b->probes;
}

/* Whether the store's chunks of some chain are not a prefix of what the chain holds (cannot
 * happen short of a replaced chain that chains_reset missed): then everything is rewritten. */
static int
persist_inconsistent(const struct program *p)
{
	uint32_t i;

	for (i = 0; i < p->n; i++)
		if (p->chains[i].text_saved > p->chains[i].text_len ||
		    p->chains[i].probes_saved > p->chains[i].nprobes)
			return 1;
	return 0;
}

/* A text chunk's key, "<id>/<index %04u>/<chunk %08x>", without snprintf's format parsing
 * (one per step). */
static void
persist_chunk_key(const struct program *p, uint32_t index, uint32_t chunk, char *buf,
    size_t len)
{
	static const char hex[] = "0123456789abcdef";
	size_t at = program_fmt_key(buf, len, p->id, index, 4);
	int i;

	if (at + 9 >= len) {
		snprintf(buf, len, "%s/%04u/%08x", p->id, index, chunk);
		return;
	}
	buf[at++] = '/';
	for (i = 7; i >= 0; i--)
		buf[at++] = hex[(chunk >> (4 * i)) & 0xf];
	buf[at] = '\0';
}

/* Appends what a chain gained since its last commit as its next chunk in the text DB (schema
 * 4: the new text and the newly sealed probe points), and makes its record say so: text ""
 * and the chunk count, length and probe points in chunks; the record keeps only the probe
 * points after those.  cpb holds the chain's record with all its probe points. */
static int
persist_chunk(struct wset *ws, const struct program *p, uint32_t index,
    const struct chain *ch, int reset, struct chain_pb *cpb)
{
	Certa__V1__TextChunk tc = CERTA__V1__TEXT_CHUNK__INIT;
	Certa__V1__RequestRecord *rr = &cpb->msg;
	struct persist_base b = persist_base(ch, reset);
	size_t sealed = persist_sealed(ch), in_chunks = b.probes;
	char key[256];
	int rc = 0;

	if (persist_chunk_due(ch, &b)) {
		/* The new text is the tail of the chain's NUL-terminated text: no copy. */
		tc.text = ch->text != NULL ? ch->text + b.text : (char *)"";
		if (sealed > b.probes) {
			tc.n_probes = sealed - b.probes;
			tc.probes = cpb->probe_ptrs + b.probes;
			in_chunks = sealed;
		}
		persist_chunk_key(p, index, b.chunks, key, sizeof key);
		rc = wset_put(ws, STORE_DB_TEXT, key, &tc.base);
		b.chunks++;
	}
	rr->text = (char *)"";
	rr->text_chunks = b.chunks;
	rr->text_bytes = ch->text_len;
	rr->chunk_probes = (uint32_t)in_chunks;
	rr->n_probes = ch->nprobes - in_chunks;
	rr->probes = rr->n_probes > 0 ? cpb->probe_ptrs + in_chunks : NULL;
	return rc;
}

/* After a commit: the chains written hold their text and sealed probe points in the store. */
static void
persist_saved(struct program *p, int all_chains)
{
	/* As persist_txn decided: a rewrite from chunk 0 resets every chain's counts. */
	int reset = p->chains_reset || persist_inconsistent(p);
	uint32_t i;

	for (i = 0; i < p->n; i++) {
		struct chain *ch = &p->chains[i];
		struct persist_base b;
		if (!all_chains && !reset && !ch->dirty)
			continue;
		b = persist_base(ch, reset);
		if (persist_chunk_due(ch, &b)) {
			ch->text_chunks = b.chunks + 1;
			ch->text_saved = ch->text_len;
			ch->probes_saved = persist_sealed(ch) > b.probes ? persist_sealed(ch) :
			    b.probes;
		} else {
			ch->text_chunks = b.chunks;
			ch->text_saved = b.text;
			ch->probes_saved = b.probes;
		}
		ch->dirty = false;
	}
	p->chains_reset = false;
}

/* Records the program record, changed chains and (at the end) history in ws: what one
 * transaction writes for p (persist_saved follows once it is committed, or once handed to the
 * writer). */
static int
persist_build(struct wset *ws, const struct persist_ctx *cp)
{
	struct program *p = cp->p;
	Certa__V1__ProgramRecord rec = CERTA__V1__PROGRAM_RECORD__INIT;
	struct program_pb pb;
	struct chain_pb *cpb = NULL;
	Certa__V1__RequestRecord **rr = NULL;
	char key[256];
	uint32_t i;
	int rc, reset = 0;

	rc = program_pb_fill(p, &pb);
	if (rc != 0)
		return rc;
	rec.program = &pb.msg;
	rec.step_count = p->steps;
	rec.budget = p->budget;
	rec.tenant_uid = p->tenant_uid;
	program_record_route(p, &rec);
	if (p->shadow_of != NULL) {
		rec.shadow_of = p->shadow_of;
		rec.shadow_answer = p->shadow_answer != NULL ? p->shadow_answer : (char *)"";
		rec.shadow_base_tokens = p->shadow_base_tokens;
	}
	rc = wset_put(ws, STORE_DB_PROGRAMS, p->id, &rec.base);
	if (rc != 0)
		goto out;
	if (cp->first && p->idempotency_key[0] != '\0') {
		Certa__V1__IdempotencyRecord ir = CERTA__V1__IDEMPOTENCY_RECORD__INIT;
		persist_idem_key(p->tenant, p->tenant_uid, p->idempotency_key, key, sizeof key);
		ir.program_id = p->id;
		ir.created_unix_ms = p->created_ms;
		rc = wset_add(ws, STORE_DB_IDEMPOTENCY, key, &ir.base);
		if (rc != 0)
			goto out;
	}
	if (cp->first) {
		/* The per-tenant index List reads. */
		Certa__V1__TenantProgramRecord tp = CERTA__V1__TENANT_PROGRAM_RECORD__INIT;
		tp.created_unix_ms = p->created_ms;
		store_tenant_index_key(p->tenant, p->tenant_uid, p->id, key, sizeof key);
		rc = wset_put(ws, STORE_DB_TENANT_PROGRAMS, key, &tp.base);
		if (rc != 0)
			goto out;
	}
	if (p->chains_reset || persist_inconsistent(p)) {
		/* Chains replaced or renumbered: drop every chain record and chunk of the program
		 * and write them all again from chunk 0. */
		reset = 1;
		snprintf(key, sizeof key, "%s/", p->id);
		rc = wset_del_prefix(ws, STORE_DB_TEXT, key);
		if (rc == 0)
			rc = wset_del_prefix(ws, STORE_DB_REQUESTS, key);
		if (rc != 0)
			goto out;
	}
	cpb = calloc(p->n, sizeof *cpb);
	rr = calloc(p->n, sizeof *rr);
	if (cpb == NULL || rr == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	for (i = 0; i < p->n; i++) {
		struct chain *ch = &p->chains[i];
		if (!cp->all_chains && !reset && !ch->dirty && !cp->history)
			continue;   /* neither written nor part of the history record */
		rc = program_chain_pb_fill(p, ch, &cpb[i]);
		if (rc != 0)
			goto out;
		rr[i] = &cpb[i].msg;
		if (!cp->all_chains && !reset && !ch->dirty)
			continue;
		program_chain_key(p, i, key, sizeof key);
		rc = persist_chunk(ws, p, i, ch, reset, &cpb[i]);
		if (rc == 0)
			rc = wset_put(ws, STORE_DB_REQUESTS, key, &cpb[i].msg.base);
		/* The history record keeps the whole text and every probe point. */
		cpb[i].msg.text = ch->text != NULL ? ch->text : (char *)"";
		cpb[i].msg.text_chunks = 0;
		cpb[i].msg.text_bytes = 0;
		cpb[i].msg.chunk_probes = 0;
		cpb[i].msg.n_probes = ch->nprobes;
		cpb[i].msg.probes = ch->nprobes > 0 ? cpb[i].probe_ptrs : NULL;
		if (rc != 0)
			goto out;
	}
	if (cp->history) {
		Certa__V1__HistoryRecord h = CERTA__V1__HISTORY_RECORD__INIT;
		h.program = &pb.msg;
		h.n_requests = p->n;
		h.requests = rr;
		h.tenant_uid = p->tenant_uid;
		snprintf(key, sizeof key, "%016llx/%s", (unsigned long long)p->finished_ms, p->id);
		rc = wset_put(ws, STORE_DB_HISTORY, key, &h.base);
	}
out:
	if (cpb != NULL)
		for (i = 0; i < p->n; i++)
			program_chain_pb_free(&cpb[i]);
	free(cpb);
	free(rr);
	program_pb_free(&pb);
	return rc;
}

void
persist_idem_key(const char *tenant, uint64_t uid, const char *key, char *buf, size_t len)
{
	if (uid == 0)
		snprintf(buf, len, "%s/%s", tenant, key);
	else
		snprintf(buf, len, "%s/%016llx/%s", tenant, (unsigned long long)uid, key);
}

/* Tells the health hook when the daemon becomes degraded (programs wait for a write) or
 * healthy again. */
static void
persist_health(struct core *c)
{
	int degraded = c->persist_waiting > 0;

	if (degraded == c->degraded)
		return;
	c->degraded = degraded;
	if (c->degraded_fn != NULL)
		c->degraded_fn(c->degraded_arg, degraded);
}

/* A failed commit: counted, logged at error level at most once per PERSIST_LOG_MS (the lines
 * in between are counted in the next one). */
static void
persist_failed(struct core *c, const struct program *p, int rc)
{
	int64_t now = core_now_ms();

	c->commit_failures++;
	if (c->persist_failing_since_ms == 0)
		c->persist_failing_since_ms = now;
	if (c->persist_logged_ms != 0 && now - c->persist_logged_ms < PERSIST_LOG_MS) {
		c->persist_unlogged++;
		return;
	}
	log_err(LOG_STORE, "program %s: commit failed: %s (state %s: free space there%s); "
	    "%zu programs were already waiting for their writes, retried with a backoff up to "
	    "%d ms; %llu failures not logged since the last line", p->id, certa_strerror(rc),
	    store_path(c->st),
	    rc == CERTA_EMAPFULL ? ", or raise store.max_map_size" : "", c->persist_waiting,
	    PERSIST_BACKOFF_MAX_MS, (unsigned long long)c->persist_unlogged);
	c->persist_logged_ms = now;
	c->persist_unlogged = 0;
}

static void persist_settle(struct core *c, struct program *p);

/* p's accepting write committed: the client hears "accepted" (submit_accepted). */
static void
persist_accepted(struct core *c, struct program *p)
{
	persist_accept_end(c, p);
	submit_accepted(c, p);
}

void
persist_accept_end(struct core *c, struct program *p)
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
persist_accept_key(struct core *c, const char *tenant, uint64_t uid, const char *key)
{
	char k[512];

	if (c->accepts_pending == 0)
		return NULL;
	persist_idem_key(tenant, uid, key, k, sizeof k);
	return strmap_get(c->accept_keys, k);
}

int
persist_write(struct core *c, struct program *p, int all_chains, int history, int first)
{
	struct persist_ctx cp = { p, all_chains, history, first };
	int rc;

	/* A write of p still with the writer goes first (and if it failed, this one rewrites
	 * everything). */
	persist_settle(c, p);
	p->updated_ms = core_now_ms();
	wset_clear(c->sync_ws);
	rc = persist_build(c->sync_ws, &cp);
	/* store_update waits for the writer's queue first (store_set_barrier). */
	if (rc == 0)
		rc = store_update(c->st, wset_apply, c->sync_ws);
	if (rc < 0) {
		if (rc == CERTA_EEXIST)
			return rc;   /* the idempotency key is taken: not a storage problem */
		persist_failed(c, p, rc);
		return rc;
	}
	telemetry_commit(c->tel, 1);
	persist_saved(p, all_chains);
	if (first && p->accept_pending)
		persist_accepted(c, p);
	if (c->persist_waiting == 0) {
		/* A failure with nobody waiting (a refused Submit) ends here. */
		c->persist_failing_since_ms = 0;
		c->persist_logged_ms = 0;
		c->persist_unlogged = 0;
	}
	return 0;
}

int
persist_program(struct core *c, struct program *p, int all_chains, int history)
{
	/* A program whose accepting write never committed (its set failed, or it was taken
	 * out of it) is accepted by this one; one whose set is still with the writer is settled
	 * first (committed: accepted there, and this write must not add its key again). */
	persist_settle(c, p);
	if (p->accept_pending)
		return persist_write(c, p, 1, history, 1);
	return persist_write(c, p, all_chains, history, 0);
}

/* Arms the retry timer with the current backoff. */
static void
persist_arm(struct core *c)
{
	struct timeval tv;

	if (c->persist_retry == NULL || evtimer_pending(c->persist_retry, NULL))
		return;
	if (c->persist_backoff_ms <= 0)
		c->persist_backoff_ms = PERSIST_BACKOFF_MIN_MS;
	tv.tv_sec = c->persist_backoff_ms / 1000;
	tv.tv_usec = (c->persist_backoff_ms % 1000) * 1000;
	evtimer_add(c->persist_retry, &tv);
}

int
persist_or_wait(struct core *c, struct program *p, int final)
{
	int rc;

	/* This write carries whatever the group commit would have: it is no longer queued. */
	persist_unqueue(c, p);
	rc = persist_program(c, p, final, final);

	if (rc == 0) {
		if (p->persist_pending) {
			p->persist_pending = false;
			p->persist_final = false;
			c->persist_waiting--;
			persist_health(c);
		}
		return 0;
	}
	if (!p->persist_pending) {
		p->persist_pending = true;
		c->persist_waiting++;
	}
	if (final)
		p->persist_final = true;
	persist_health(c);
	persist_arm(c);
	return rc;
}

/* The retry timer: writes waiting programs again, oldest first, and stops at the first
 * failure (the next try backs off further).  A program written is carried on by
 * dispatch_persisted (its progress or finished event, its next step). */
static void
persist_on_retry(evutil_socket_t fd, short what, void *arg)
{
	struct core *c = arg;
	size_t i = 0, resumed = 0;
	int rc = 0;

	(void)fd;
	(void)what;
	while (i < c->norder && c->persist_waiting > 0) {
		struct program *p = c->order[i];
		int final = p->persist_final;
		if (!p->persist_pending) {
			i++;
			continue;
		}
		rc = persist_or_wait(c, p, final);
		if (rc != 0)
			break;
		resumed++;
		dispatch_persisted(c, p, final);
		/* dispatch_persisted may have dropped p from the order. */
		if (i < c->norder && c->order[i] == p)
			i++;
	}
	if (c->persist_waiting > 0) {
		c->persist_backoff_ms = c->persist_backoff_ms * 2 > PERSIST_BACKOFF_MAX_MS ?
		    PERSIST_BACKOFF_MAX_MS : c->persist_backoff_ms * 2;
		persist_arm(c);
		return;
	}
	log_notice(LOG_STORE, "commits succeed again after %.1f s: %zu waiting programs written "
	    "and resumed (%llu failed commits since start)",
	    (double)(core_now_ms() - c->persist_failing_since_ms) / 1000.0, resumed,
	    (unsigned long long)c->commit_failures);
	c->persist_failing_since_ms = 0;
	c->persist_logged_ms = 0;
	c->persist_unlogged = 0;
	c->persist_backoff_ms = PERSIST_BACKOFF_MIN_MS;
	core_kick(c);
}

/* --- group commit --- */

/*
 * A turn's group commit is built on the loop (persist_flush: every queued program's records
 * into one write set) and committed by the writer thread (store/writer.h) while the loop goes
 * on.  Its programs stay commit_queued (no step, no event, Watch and Cancel see them as
 * not yet durable) until the loop learns of the commit (persist_on_done, woken through an
 * eventfd); then each one's event goes out (dispatch_persisted).  The chains' saved counts are
 * advanced when the set is built; a failed commit makes its programs rewrite everything
 * (chains_reset) on their own (persist_or_wait, with the usual waiting and retries).
 */
struct persist_entry {
	struct program *p;    /* NULL: dropped (persist_unqueue) */
	int final;
	int first;            /* its accepting write (persist_accept) */
};

struct persist_set {
	struct core *c;
	struct wset *ws;
	struct persist_entry *e;
	size_t n, cap;
	size_t live;          /* entries when handed to the writer */
	size_t later;         /* its first operations: puts taken from later_ws */
	int rc;               /* the commit's result, once done */
	double seconds;       /* its transaction's duration */
	atomic_int done;      /* set by the writer thread after rc and seconds */
	struct persist_set *next;
};

/* A set to fill: a spare one or a new one. */
static struct persist_set *
persist_set_get(struct core *c)
{
	struct persist_set *set = c->sets_spare;

	if (set != NULL) {
		c->sets_spare = set->next;
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

/* Keeps one set for reuse (its buffers sized by the last turns), frees the others. */
static void
persist_set_put(struct core *c, struct persist_set *set)
{
	if (c->sets_spare == NULL) {
		set->next = NULL;
		c->sets_spare = set;
		return;
	}
	wset_free(set->ws);
	free(set->e);
	free(set);
}

/* Records a set's result; after the done flag the loop may hand it out (and free it). */
static void
persist_set_finish(struct persist_set *set, int rc, double seconds)
{
	set->rc = rc;
	set->seconds = seconds;
	atomic_store_explicit(&set->done, 1, memory_order_release);
}

/* The writer thread: the set is committed (or failed); wake the loop. */
static void
persist_on_written(void *arg, int rc, double seconds)
{
	struct persist_set *set = arg;
	/* Read before done is set: from then on the loop may hand the set out and free it
	 * (persist_done, woken by an earlier set's write, or persist_settle). */
	int efd = set->c->commit_efd;
	uint64_t one = 1;
	ssize_t n;

	persist_set_finish(set, rc, seconds);
	n = write(efd, &one, sizeof one);
	(void)n;   /* a full counter still wakes the loop */
}

/* p's write with the writer is done: drop p from its set, and if the set failed make p's
 * next write rewrite everything.  Waits for the writer if needed (rare: an ending or a
 * forget while p's step is being written).  An accepting write that committed has made p
 * durable with its idempotency key: the client hears "accepted" now (the next write must not
 * add the key again). */
static void
persist_settle(struct core *c, struct program *p)
{
	struct persist_set *set = p->commit_set;
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
}

/* An accepting write's set is done (rc: its result): the client hears "accepted"; when the
 * set failed the program is written alone, and if that fails too the Submit is refused
 * (submit_refused: UNAVAILABLE, the program forgotten), as a direct write would have. */
static void
persist_accept_done(struct core *c, struct program *p, int rc)
{
	if (rc == 0) {
		persist_accepted(c, p);
		core_kick(c);
		return;
	}
	p->chains_reset = true;
	rc = persist_write(c, p, 1, 0, 1);
	if (rc == 0) {
		core_kick(c);
		return;
	}
	persist_accept_end(c, p);
	submit_refused(c, p, rc);
}

/* A set failed: the puts it took from later_ws go back in front of those queued since, for
 * the next set (not at once: a full disk would fail it again every turn). */
static void
persist_later_again(struct core *c, struct persist_set *set)
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
persist_later_failed(struct core *c)
{
	writer_wait(c->writer);
	for (;;) {
		struct persist_set *set, *last = NULL;
		for (set = c->sets_head; set != NULL; set = set->next)
			if (atomic_load_explicit(&set->done, memory_order_acquire) &&
			    set->rc != 0 && set->later > 0)
				last = set;
		if (last == NULL)
			break;
		persist_later_again(c, last);
		last->later = 0;
	}
}

/* A group commit failed: counted, and a warning at most once per PERSIST_LOG_MS (its programs'
 * own writes follow; if they fail too, persist_failed logs them). */
static void
persist_set_failed(struct core *c, const struct persist_set *set)
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
persist_done(struct core *c)
{
	struct persist_set *set;
	size_t i;

	while ((set = c->sets_head) != NULL &&
	    atomic_load_explicit(&set->done, memory_order_acquire)) {
		c->sets_head = set->next;
		if (c->sets_head == NULL)
			c->sets_tail = NULL;
		telemetry_loop_phase(c->tel, "store", set->seconds);
		c->commit_recent_s = c->commit_recent_s * (1 - PERSIST_RECENT_WEIGHT) +
		    set->seconds * PERSIST_RECENT_WEIGHT;
		if (set->rc == 0) {
			telemetry_commit(c->tel, set->live);
		} else {
			persist_set_failed(c, set);
			persist_later_again(c, set);
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
				persist_accept_done(c, p, set->rc);
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
				persist_later(c, p, final);
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
		persist_set_put(c, set);
	}
	core_kick(c);
}

static void
persist_on_done(evutil_socket_t fd, short what, void *arg)
{
	struct core *c = arg;
	uint64_t v;
	double t0 = core_mono_s();
	ssize_t n;

	(void)what;
	n = read(fd, &v, sizeof v);
	(void)n;
	persist_done(c);
	telemetry_loop_phase(c->tel, "commit", core_mono_s() - t0);
}

void
persist_later(struct core *c, struct program *p, int final)
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
persist_accept(struct core *c, struct program *p)
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

int
persist_put_now(struct core *c, enum store_db db, const char *key, const ProtobufCMessage *msg)
{
	struct wset *ws;
	int rc;

	rc = wset_new(&ws);
	if (rc != 0)
		return rc;
	/* The puts of failed sets go back to later_ws now, not after this put. */
	persist_later_failed(c);
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
persist_put_later(struct core *c, enum store_db db, const char *key,
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
persist_unqueue(struct core *c, struct program *p)
{
	size_t i;

	if (!p->commit_queued)
		return;
	if (p->commit_set != NULL) {
		persist_settle(c, p);
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
persist_set_add(struct persist_set *set, struct program *p, int final)
{
	int first = p->accept_pending;
	struct persist_ctx cp = { p, final || first, final, first };
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
persist_flush(struct core *c)
{
	struct persist_set *set;
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
	set = persist_set_get(c);
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
		if (persist_set_add(set, p, p->commit_final) != 0)
			continue;   /* written alone below */
		q[i] = NULL;
		persist_saved(p, p->commit_final || p->accept_pending);
		p->commit_set = set;
	}
	if (set != NULL && wset_count(set->ws) > 0) {
		set->live = set->n;
		/* A fast store (tmpfs, a quick disk: recent commits under PERSIST_INLINE_S) and an
		 * idle writer: commit here and hand out now, as two thread wake-ups (to the writer
		 * and back) would cost more than the commit.  Otherwise (or with no memory to
		 * queue it) the writer commits it while the loop goes on. */
		inline_set = writer_pending(c->writer) == 0 && c->commit_recent_s < c->commit_inline_s;
		if (inline_set || writer_submit(c->writer, set->ws, persist_on_written, set) != 0) {
			double t0 = core_mono_s();
			int rc = store_update(c->st, wset_apply, set->ws);
			persist_set_finish(set, rc < 0 ? rc : 0, core_mono_s() - t0);
			inline_set = 1;
		}
		if (c->sets_tail != NULL)
			c->sets_tail->next = set;
		else
			c->sets_head = set;
		c->sets_tail = set;
	} else if (set != NULL) {
		persist_set_put(c, set);
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
		persist_done(c);
}

void
persist_sync(struct core *c)
{
	persist_flush(c);
	writer_wait(c->writer);
	persist_done(c);
}

static void
persist_on_commit(evutil_socket_t fd, short what, void *arg)
{
	struct core *c = arg;
	double t0 = core_mono_s();

	(void)fd;
	(void)what;
	persist_flush(c);
	telemetry_loop_phase(c->tel, "serialize", core_mono_s() - t0);
}

int
persist_init(struct core *c)
{
	c->commit_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (c->commit_efd < 0)
		return -errno;
	c->persist_retry = evtimer_new(c->base, persist_on_retry, c);
	c->commit = event_new(c->base, -1, 0, persist_on_commit, c);
	c->commit_done = event_new(c->base, c->commit_efd, EV_READ | EV_PERSIST, persist_on_done,
	    c);
	c->persist_backoff_ms = PERSIST_BACKOFF_MIN_MS;
	c->commit_inline_s = PERSIST_INLINE_S;
	if (c->persist_retry == NULL || c->commit == NULL || c->commit_done == NULL ||
	    event_add(c->commit_done, NULL) != 0 || wset_new(&c->sync_ws) != 0)
		return -ENOMEM;
	return writer_start(c->st, &c->writer);
}

void
persist_fini(struct core *c)
{
	struct persist_set *set;
	size_t i;

	/* Puts not yet in a set (risk controllers, chain lengths at a clean exit, those of
	 * failed sets) are written now, after what the writer holds. */
	persist_later_failed(c);
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
	wset_free(c->sync_ws);
	c->sync_ws = NULL;
	if (c->persist_retry != NULL)
		event_free(c->persist_retry);
	c->persist_retry = NULL;
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
