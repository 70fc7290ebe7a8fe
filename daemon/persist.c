/* persist.c — a program's durable write: record, changed chains, history, idempotency key. */
#include "daemon/persist.h"
#include "daemon/core_impl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <event2/event.h>

#include "daemon/dispatch.h"
#include "daemon/program.h"
#include "daemon/telemetry.h"
#include "lib/array.h"
#include "lib/error.h"
#include "lib/log.h"
#include "store/store.h"

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

/* Appends what a chain gained since its last commit as its next chunk in the text DB (schema
 * 4: the new text and the newly sealed probe points), and makes its record say so: text ""
 * and the chunk count, length and probe points in chunks; the record keeps only the probe
 * points after those.  cpb holds the chain's record with all its probe points.  Writes
 * nothing already there, so the transaction can run again. */
static int
persist_chunk(struct store_txn *txn, const struct program *p, uint32_t index,
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
		snprintf(key, sizeof key, "%s/%04u/%08x", p->id, index, b.chunks);
		rc = store_put(txn, STORE_DB_TEXT, key, &tc.base);
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

/* Writes the program record, changed chains and (at the end) history, in one transaction. */
static int
persist_txn(struct store_txn *txn, void *arg)
{
	struct persist_ctx *cp = arg;
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
	rc = store_put(txn, STORE_DB_PROGRAMS, p->id, &rec.base);
	if (rc != 0)
		goto out;
	if (cp->first && p->idempotency_key[0] != '\0') {
		Certa__V1__IdempotencyRecord ir = CERTA__V1__IDEMPOTENCY_RECORD__INIT;
		persist_idem_key(p->tenant, p->tenant_uid, p->idempotency_key, key, sizeof key);
		ir.program_id = p->id;
		ir.created_unix_ms = p->created_ms;
		rc = store_add(txn, STORE_DB_IDEMPOTENCY, key, &ir.base);
		if (rc != 0)
			goto out;
	}
	if (cp->first) {
		/* The per-tenant index List reads. */
		Certa__V1__TenantProgramRecord tp = CERTA__V1__TENANT_PROGRAM_RECORD__INIT;
		tp.created_unix_ms = p->created_ms;
		store_tenant_index_key(p->tenant, p->tenant_uid, p->id, key, sizeof key);
		rc = store_put(txn, STORE_DB_TENANT_PROGRAMS, key, &tp.base);
		if (rc != 0)
			goto out;
	}
	if (p->chains_reset || persist_inconsistent(p)) {
		/* Chains replaced or renumbered: drop every chain record and chunk of the program
		 * and write them all again from chunk 0. */
		reset = 1;
		snprintf(key, sizeof key, "%s/", p->id);
		rc = store_del_prefix(txn, STORE_DB_TEXT, key, NULL);
		if (rc == 0)
			rc = store_del_prefix(txn, STORE_DB_REQUESTS, key, NULL);
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
		rc = persist_chunk(txn, p, i, ch, reset, &cpb[i]);
		if (rc == 0)
			rc = store_put(txn, STORE_DB_REQUESTS, key, &cpb[i].msg.base);
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
		rc = store_put(txn, STORE_DB_HISTORY, key, &h.base);
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

int
persist_write(struct core *c, struct program *p, int all_chains, int history, int first)
{
	struct persist_ctx cp = { p, all_chains, history, first };
	int rc;

	p->updated_ms = core_now_ms();
	rc = store_update(c->st, persist_txn, &cp);
	if (rc < 0) {
		if (rc == CERTA_EEXIST)
			return rc;   /* the idempotency key is taken: not a storage problem */
		persist_failed(c, p, rc);
		return rc;
	}
	telemetry_commit(c->tel, 1);
	persist_saved(p, all_chains);
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

/* Writes every queued program in one transaction. */
static int
persist_group_txn(struct store_txn *txn, void *arg)
{
	struct core *c = arg;
	size_t i;
	int rc;

	for (i = 0; i < c->ncommit; i++) {
		struct program *p = c->commit_q[i];
		struct persist_ctx cp;
		if (p == NULL)
			continue;
		cp.p = p;
		cp.all_chains = p->commit_final;
		cp.history = p->commit_final;
		cp.first = 0;
		rc = persist_txn(txn, &cp);
		if (rc != 0)
			return rc;
	}
	return 0;
}

void
persist_later(struct core *c, struct program *p, int final)
{
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

void
persist_unqueue(struct core *c, struct program *p)
{
	size_t i;

	if (!p->commit_queued)
		return;
	for (i = 0; i < c->ncommit; i++)
		if (c->commit_q[i] == p)
			c->commit_q[i] = NULL;
	for (i = 0; i < c->nflush; i++)
		if (c->flush_q[i] == p)
			c->flush_q[i] = NULL;
	p->commit_queued = false;
	p->commit_final = false;
}

void
persist_flush(struct core *c)
{
	struct program **q;
	size_t n, i, live = 0;
	int64_t now = core_now_ms();
	double t0;
	int rc;

	if (c->ncommit == 0)
		return;
	for (i = 0; i < c->ncommit; i++)
		if (c->commit_q[i] != NULL) {
			c->commit_q[i]->updated_ms = now;
			live++;
		}
	t0 = core_mono_s();
	rc = live > 0 ? store_update(c->st, persist_group_txn, c) : 0;
	telemetry_loop_phase(c->tel, "store", core_mono_s() - t0);
	/* Take the queue: the events below may queue programs again (a new turn). */
	q = c->flush_q = c->commit_q;
	n = c->nflush = c->ncommit;
	c->commit_q = NULL;
	c->ncommit = c->commit_cap = 0;
	if (rc == 0 && live > 0)
		telemetry_commit(c->tel, live);
	for (i = 0; i < n; i++) {
		struct program *p = q[i];
		int final;
		if (p == NULL || !p->commit_queued)
			continue;
		q[i] = NULL;
		final = p->commit_final;
		p->commit_queued = false;
		p->commit_final = false;
		if (rc != 0) {
			/* The group failed: each program on its own, with the usual waiting and
			 * retries for those that fail again. */
			if (persist_or_wait(c, p, final) == 0)
				dispatch_persisted(c, p, final);
			continue;
		}
		persist_saved(p, final);
		if (p->persist_pending) {
			p->persist_pending = false;
			p->persist_final = false;
			c->persist_waiting--;
			persist_health(c);
		}
		dispatch_persisted(c, p, final);
	}
	c->flush_q = NULL;
	c->nflush = 0;
	free(q);
	if (rc == 0 && c->persist_waiting == 0) {
		c->persist_failing_since_ms = 0;
		c->persist_logged_ms = 0;
		c->persist_unlogged = 0;
	}
	core_kick(c);
}

static void
persist_on_commit(evutil_socket_t fd, short what, void *arg)
{
	struct core *c = arg;
	double t0 = core_mono_s();

	(void)fd;
	(void)what;
	persist_flush(c);
	telemetry_loop_phase(c->tel, "commit", core_mono_s() - t0);
}

int
persist_init(struct core *c)
{
	c->persist_retry = evtimer_new(c->base, persist_on_retry, c);
	c->commit = event_new(c->base, -1, 0, persist_on_commit, c);
	c->persist_backoff_ms = PERSIST_BACKOFF_MIN_MS;
	return c->persist_retry != NULL && c->commit != NULL ? 0 : -ENOMEM;
}

void
persist_fini(struct core *c)
{
	size_t i;

	if (c->persist_retry != NULL)
		event_free(c->persist_retry);
	c->persist_retry = NULL;
	if (c->commit != NULL)
		event_free(c->commit);
	c->commit = NULL;
	/* Unwritten results are dropped: the store holds the last committed step. */
	for (i = 0; i < c->ncommit; i++)
		if (c->commit_q[i] != NULL)
			c->commit_q[i]->commit_queued = false;
	free(c->commit_q);
	c->commit_q = NULL;
	c->ncommit = c->commit_cap = 0;
}
