/* persist.c — a program's durable write: record, changed chains, history, idempotency key. */
#include "daemon/persist.h"
#include "daemon/core_impl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "daemon/program.h"
#include "lib/error.h"
#include "lib/log.h"
#include "store/store.h"

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

int
persist_write(struct core *c, struct program *p, int all_chains, int history, int first)
{
	struct persist_ctx cp = { p, all_chains, history, first };
	uint32_t i;
	int rc;

	p->updated_ms = core_now_ms();
	rc = store_update(c->st, persist_txn, &cp);
	if (rc < 0) {
		log_err(LOG_STORE, "program %s: persist failed: %s", p->id, certa_strerror(rc));
		return rc;
	}
	for (i = 0; i < p->n; i++)
		p->chains[i].dirty = false;
	return 0;
}

int
persist_program(struct core *c, struct program *p, int all_chains, int history)
{
	return persist_write(c, p, all_chains, history, 0);
}
