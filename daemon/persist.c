/* persist.c — a program's durable write: record, changed chains, history, idempotency key. */
#include "daemon/persist.h"
#include "daemon/core_impl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <event2/event.h>

#include "daemon/dispatch.h"
#include "daemon/program.h"
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
	int rc;

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
	cpb = calloc(p->n, sizeof *cpb);
	rr = calloc(p->n, sizeof *rr);
	if (cpb == NULL || rr == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	for (i = 0; i < p->n; i++) {
		struct chain *ch = &p->chains[i];
		rc = program_chain_pb_fill(p, ch, &cpb[i]);
		if (rc != 0)
			goto out;
		rr[i] = &cpb[i].msg;
		if (!cp->all_chains && !ch->dirty)
			continue;
		program_chain_key(p, i, key, sizeof key);
		rc = store_put(txn, STORE_DB_REQUESTS, key, &cpb[i].msg.base);
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
	uint32_t i;
	int rc;

	p->updated_ms = core_now_ms();
	rc = store_update(c->st, persist_txn, &cp);
	if (rc < 0) {
		if (rc == CERTA_EEXIST)
			return rc;   /* the idempotency key is taken: not a storage problem */
		persist_failed(c, p, rc);
		return rc;
	}
	for (i = 0; i < p->n; i++)
		p->chains[i].dirty = false;
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
	int rc = persist_program(c, p, final, final);

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
	return c->persist_retry != NULL ? 0 : -ENOMEM;
}

void
persist_fini(struct core *c)
{
	if (c->persist_retry != NULL)
		event_free(c->persist_retry);
	c->persist_retry = NULL;
}
