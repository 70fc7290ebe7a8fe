/* queries.c — reads of programs: Get, Watch, Cancel, List. */
#include "daemon/queries.h"
#include "daemon/core_impl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/dispatch.h"
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

int
queries_get(struct core *c, const char *tenant, const char *id, Certa__V1__Program **out)
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
	certa__v1__program_record__free_unpacked(g.rec, NULL);
	*out = pm;
	return 0;
}

int
queries_watch(struct core *c, const char *tenant, const char *id, struct rpc_call *watcher)
{
	struct program *p = strmap_get(c->live, id);
	Certa__V1__Program *pm;
	int rc;

	/* An ending whose write is still retried is not in the store yet: its watchers get
	 * the finished event once it is. */
	if (p != NULL && (!program_is_terminal(p) || p->persist_pending || p->commit_queued)) {
		if (!queries_owned(c, tenant, p->tenant, p->tenant_uid))
			return CERTA_ENOTFOUND;
		return program_watch(p, watcher);
	}
	/* Ended (or not live): send its final state from the store. */
	rc = queries_get(c, tenant, id, &pm);
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
		ev.seq = 1;
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
	const char *tenant;
	uint64_t uid;
	int state;
	const char *before;       /* page token: ids strictly older */
	char **ids;
	size_t n, cap;
};

static int
queries_list_scan(const char *key, size_t keylen, const ProtobufCMessage *msg, void *arg)
{
	struct queries_list_ctx *l = arg;
	const Certa__V1__ProgramRecord *rec = (const Certa__V1__ProgramRecord *)msg;

	(void)keylen;
	if (rec->program == NULL || rec->tenant_uid != l->uid ||
	    strcmp(rec->program->tenant, l->tenant) != 0)
		return 0;
	if (l->state != 0 && (int)rec->program->state != l->state)
		return 0;
	if (l->before != NULL && l->before[0] != '\0' && strcmp(key, l->before) >= 0)
		return 0;
	if (ARRAY_GROW(l->ids, l->cap, l->n + 1) != 0)
		return -ENOMEM;
	l->ids[l->n] = strdup(key);
	if (l->ids[l->n] == NULL)
		return -ENOMEM;
	l->n++;
	return 0;
}

static int
queries_list_txn(struct store_txn *txn, void *arg)
{
	return store_scan(txn, STORE_DB_PROGRAMS, "", NULL, queries_list_scan, arg);
}

int
queries_list(struct core *c, const char *tenant, int state, uint32_t page_size,
    const char *page_token, Certa__V1__ListReply *reply)
{
	struct queries_list_ctx l;
	size_t i, take;
	int rc;

	memset(&l, 0, sizeof l);
	certa__v1__list_reply__init(reply);
	if (tenants_uid(c->tenants, tenant, &l.uid) != 0)
		return 0;   /* no such tenant: nothing is its */
	l.tenant = tenant;
	l.state = state;
	l.before = page_token;
	if (page_size == 0)
		page_size = 50;
	if (page_size > 1000)
		page_size = 1000;
	rc = store_view(c->st, queries_list_txn, &l);
	if (rc < 0)
		goto out;
	rc = 0;
	/* Keys are time-ordered ids: newest first is the scan order reversed. */
	take = l.n < page_size ? l.n : page_size;
	reply->programs = calloc(take ? take : 1, sizeof *reply->programs);
	if (reply->programs == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	for (i = 0; i < take; i++) {
		Certa__V1__Program *pm;
		if (queries_get(c, tenant, l.ids[l.n - 1 - i], &pm) != 0)
			continue;
		reply->programs[reply->n_programs++] = pm;
	}
	if (l.n > take)
		reply->next_page_token = strdup(l.ids[l.n - take]);
out:
	for (i = 0; i < l.n; i++)
		free(l.ids[i]);
	free(l.ids);
	return rc;
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
