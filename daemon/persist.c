/* persist.c — a program's durable write: record, changed chains, history, idempotency key. */
#include "daemon/persist.h"
#include "daemon/core_impl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <event2/event.h>

#include "daemon/commit.h"
#include "daemon/dispatch.h"
#include "daemon/persist_impl.h"
#include "daemon/program.h"
#include "daemon/submit.h"
#include "daemon/telemetry.h"
#include "lib/array.h"
#include "lib/error.h"
#include "lib/log.h"
#include "lib/pbarena.h"
#include "store/store.h"
#include "store/wset.h"

/* Retry delays after a failed commit (the error log's rate limit: persist_impl.h). */
#define PERSIST_BACKOFF_MIN_MS 100
#define PERSIST_BACKOFF_MAX_MS 5000


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
void
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
int
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

	rc = program_pb_fill_in(p, &pb, cp->scratch);
	if (rc != 0)
		goto out;
	rec.program = &pb.msg;
	rec.step_count = p->steps;
	rec.budget = p->budget;
	rec.tenant_uid = p->tenant_uid;
	program_record_route(p, &rec);
	rec.staged_launched = p->launched;
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
	cpb = program_zalloc(cp->scratch, p->n * sizeof *cpb);
	rr = program_zalloc(cp->scratch, p->n * sizeof *rr);
	if (cpb == NULL || rr == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	for (i = 0; i < p->n; i++) {
		struct chain *ch = &p->chains[i];
		if (!cp->all_chains && !reset && !ch->dirty && !cp->history)
			continue;   /* neither written nor part of the history record */
		/* The probe points a step's write packs: those since the chain's last chunk (the
		 * history record: all of them). */
		rc = program_chain_pb_fill_in(p, ch, &cpb[i], cp->scratch, cp->history ? 0 :
		    persist_base(ch, reset).probes);
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
	if (cp->scratch != NULL) {
		pbarena_reset(cp->scratch);   /* everything above is packed into ws */
	} else {
		free(cpb);
		free(rr);
	}
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
void
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

/* p's accepting write committed: the client hears "accepted" (submit_accepted). */
void
persist_accepted(struct core *c, struct program *p)
{
	commit_accept_end(c, p);
	submit_accepted(c, p);
}

int
persist_write(struct core *c, struct program *p, int all_chains, int history, int first)
{
	struct persist_ctx cp = { p, all_chains, history, first, c->persist_scratch };
	int rc;

	/* A write of p still with the writer goes first (and if it failed, this one rewrites
	 * everything). */
	commit_settle(c, p);
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
	commit_settle(c, p);
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
	commit_unqueue(c, p);
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

int
persist_init(struct core *c)
{
	c->persist_retry = evtimer_new(c->base, persist_on_retry, c);
	c->persist_backoff_ms = PERSIST_BACKOFF_MIN_MS;
	c->persist_scratch = pbarena_new(0);
	if (c->persist_retry == NULL || wset_new(&c->sync_ws) != 0 || c->persist_scratch == NULL)
		return -ENOMEM;
	return 0;
}

void
persist_fini(struct core *c)
{
	wset_free(c->sync_ws);
	c->sync_ws = NULL;
	pbarena_free(c->persist_scratch);
	c->persist_scratch = NULL;
	if (c->persist_retry != NULL)
		event_free(c->persist_retry);
	c->persist_retry = NULL;
}
