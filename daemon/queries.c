/* queries.c — reads of programs: Get, Watch, Cancel, List. */
#include "daemon/queries.h"
#include "daemon/core_impl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/dispatch.h"
#include "daemon/events.h"
#include "daemon/program.h"
#include "daemon/tenants.h"
#include "lib/array.h"
#include "lib/error.h"
#include "lib/rpc_server.h"
#include "lib/strmap.h"
#include "store/store.h"

/*
 * Whose a program is: the tenant of that name with the uid the program was submitted under.
 * A tenant removed and created again under the same name has another uid, so the programs of
 * the removed one are nobody's (NOT_FOUND to everyone) until retention removes them.
 */
static bool
queries_owned(struct core *c, const char *tenant, const char *ptenant, uint64_t puid)
{
	uint64_t uid;

	return ptenant != NULL && strcmp(ptenant, tenant) == 0 &&
	    tenants_uid(c->tenants, tenant, &uid) == 0 && uid == puid;
}

/* Reads a stored program record; CERTA_ENOTFOUND when absent or another tenant's. */
struct queries_get_ctx {
	const char *id;
	Certa__V1__ProgramRecord *rec;
};

static int
queries_get_txn(struct store_txn *txn, void *arg)
{
	struct queries_get_ctx *g = arg;

	return store_get(txn, STORE_DB_PROGRAMS, g->id, NULL, (ProtobufCMessage **)&g->rec);
}

/* Reads the caller's program (detached from its record) and its committed step count. */
static int
queries_load(struct core *c, const char *tenant, const char *id, Certa__V1__Program **out,
    uint64_t *steps)
{
	struct queries_get_ctx g = { id, NULL };
	Certa__V1__Program *pm;
	int rc;

	if (id == NULL || id[0] == '\0')
		return CERTA_EINVAL;
	rc = store_view(c->st, queries_get_txn, &g);
	if (rc != 0)
		return rc;
	if (g.rec->program == NULL ||
	    !queries_owned(c, tenant, g.rec->program->tenant, g.rec->tenant_uid)) {
		certa__v1__program_record__free_unpacked(g.rec, NULL);
		return CERTA_ENOTFOUND;
	}
	/* Detach the Program from its record. */
	pm = g.rec->program;
	g.rec->program = NULL;
	if (steps != NULL)
		*steps = g.rec->step_count;
	certa__v1__program_record__free_unpacked(g.rec, NULL);
	*out = pm;
	return 0;
}

int
queries_get(struct core *c, const char *tenant, const char *id, Certa__V1__Program **out)
{
	return queries_load(c, tenant, id, out, NULL);
}

int
queries_watch(struct core *c, const char *tenant, const char *id, struct rpc_call *watcher)
{
	struct program *p = strmap_get(c->live, id);
	Certa__V1__Program *pm;
	uint64_t steps = 0;
	int rc;

	/* An ending whose write is still retried is not in the store yet: its watchers get
	 * the finished event once it is. */
	if (p != NULL && (!program_is_terminal(p) || p->persist_pending || p->commit_queued)) {
		if (!queries_owned(c, tenant, p->tenant, p->tenant_uid))
			return CERTA_ENOTFOUND;
		return program_watch(p, watcher);
	}
	/* Ended (or not live): send its final state from the store. */
	rc = queries_load(c, tenant, id, &pm, &steps);
	if (rc != 0)
		return rc;
	{
		Certa__V1__ProgramEvent ev = CERTA__V1__PROGRAM_EVENT__INIT;
		Certa__V1__Finished fin = CERTA__V1__FINISHED__INIT;
		fin.program_id = pm->id;
		fin.result = pm->result;
		fin.n_requests = pm->n_requests;
		fin.requests = pm->requests;
		ev.event_case = CERTA__V1__PROGRAM_EVENT__EVENT_FINISHED;
		ev.finished = &fin;
		ev.seq = events_seq_finished(steps);   /* the number its live stream gave it */
		rpc_call_send(watcher, &ev.base);
		rpc_call_finish(watcher, GRPC_STATUS_OK, NULL);
	}
	certa__v1__program__free_unpacked(pm, NULL);
	return 0;
}

int
queries_cancel(struct core *c, const char *tenant, const char *id, int *state)
{
	struct program *p = strmap_get(c->live, id);
	Certa__V1__Program *pm;
	int rc;

	if (p != NULL && queries_owned(c, tenant, p->tenant, p->tenant_uid) &&
	    !program_is_terminal(p)) {
		dispatch_finalize(c, p, PROGRAM_CANCELLED, SCHED_REASON_CANCELLED, p->answer, 0, NULL);
		*state = PROGRAM_CANCELLED;
		return 0;
	}
	if (p != NULL && strcmp(p->tenant, tenant) == 0 &&
	    (p->persist_pending || p->commit_queued)) {
		*state = p->state;   /* ended, its write still retried or queued */
		return 0;
	}
	rc = queries_get(c, tenant, id, &pm);
	if (rc != 0)
		return rc;
	*state = pm->state;
	certa__v1__program__free_unpacked(pm, NULL);
	return 0;
}

struct queries_list_ctx {
	struct core *c;
	struct store_txn *txn;
	const char *tenant;
	uint64_t uid;
	const char *page_token;   /* ids strictly older than this one ("" or NULL: from the top) */
	size_t plen;              /* length of the index prefix "<tenant>/<uid>/" */
	int state;
	uint32_t page_size;
	Certa__V1__ListReply *reply;
};

/* One index key, newest first: its program, when it is the caller's and in the state asked
 * for; one more than a page means there is a next page. */
static int
queries_list_key(const char *key, size_t keylen, void *arg)
{
	struct queries_list_ctx *l = arg;
	Certa__V1__ListReply *reply = l->reply;
	Certa__V1__ProgramRecord *rec;
	ProtobufCMessage *msg = NULL;
	int rc;

	(void)keylen;
	rc = store_get(l->txn, STORE_DB_PROGRAMS, key + l->plen, NULL, &msg);
	if (rc == CERTA_ENOTFOUND || rc == CERTA_EDATALOSS)
		return 0;   /* pruned meanwhile, or damaged (logged and counted): skipped */
	if (rc < 0)
		return rc;
	rec = (Certa__V1__ProgramRecord *)msg;
	if (rec->program == NULL ||
	    !queries_owned(l->c, l->tenant, rec->program->tenant, rec->tenant_uid) ||
	    (l->state != 0 && (int)rec->program->state != l->state)) {
		certa__v1__program_record__free_unpacked(rec, NULL);
		return 0;
	}
	if (reply->n_programs == l->page_size) {
		/* A next page exists: it starts below the last program of this one. */
		certa__v1__program_record__free_unpacked(rec, NULL);
		reply->next_page_token = strdup(reply->programs[reply->n_programs - 1]->id);
		return reply->next_page_token != NULL ? 1 : -ENOMEM;
	}
	/* Detach the Program from its record. */
	reply->programs[reply->n_programs++] = rec->program;
	rec->program = NULL;
	certa__v1__program_record__free_unpacked(rec, NULL);
	return 0;
}

static int
queries_list_txn(struct store_txn *txn, void *arg)
{
	struct queries_list_ctx *l = arg;
	char prefix[300], before[600];

	l->txn = txn;
	store_tenant_index_key(l->tenant, l->uid, "", prefix, sizeof prefix);
	l->plen = strlen(prefix);
	before[0] = '\0';
	if (l->page_token != NULL && l->page_token[0] != '\0')
		snprintf(before, sizeof before, "%s%s", prefix, l->page_token);
	return store_keys_rev(txn, STORE_DB_TENANT_PROGRAMS, prefix, before, queries_list_key, l);
}

int
queries_list(struct core *c, const char *tenant, int state, uint32_t page_size,
    const char *page_token, Certa__V1__ListReply *reply)
{
	struct queries_list_ctx l;
	int rc;

	memset(&l, 0, sizeof l);
	certa__v1__list_reply__init(reply);
	if (tenants_uid(c->tenants, tenant, &l.uid) != 0)
		return 0;   /* no such tenant: nothing is its */
	l.c = c;
	l.tenant = tenant;
	l.state = state;
	l.page_token = page_token;
	if (page_size == 0)
		page_size = 50;
	if (page_size > 1000)
		page_size = 1000;
	l.page_size = page_size;
	l.reply = reply;
	reply->programs = calloc(page_size, sizeof *reply->programs);
	if (reply->programs == NULL)
		return -ENOMEM;
	/* The index of the tenant's programs (store_tenant_index_key), newest first, from
	 * below the page token: O(page), not O(programs in the store). */
	rc = store_view(c->st, queries_list_txn, &l);
	if (rc < 0) {
		queries_list_free(reply);
		certa__v1__list_reply__init(reply);
		return rc;
	}
	return 0;
}

void
queries_list_free(Certa__V1__ListReply *reply)
{
	size_t i;

	for (i = 0; i < reply->n_programs; i++)
		certa__v1__program__free_unpacked(reply->programs[i], NULL);
	free(reply->programs);
	if (reply->next_page_token != NULL && reply->next_page_token != protobuf_c_empty_string)
		free(reply->next_page_token);
}

int
queries_chain_text(struct core *c, const char *tenant, const char *id, uint32_t index,
    const char **text, size_t *len)
{
	struct program *p = strmap_get(c->live, id);

	if (p == NULL || !queries_owned(c, tenant, p->tenant, p->tenant_uid) || index >= p->n)
		return CERTA_ENOTFOUND;
	*text = p->chains[index].text != NULL ? p->chains[index].text : "";
	*len = p->chains[index].text != NULL ? p->chains[index].text_len : 0;
	return 0;
}
