/* retention.c — pruning of programs that finished longer ago than retention.max_age. */
#include "daemon/retention.h"
#include "daemon/core_impl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/persist.h"
#include "lib/array.h"
#include "lib/error.h"
#include "lib/log.h"
#include "store/store.h"

/* --- retention --- */

struct retention_prune {
	int64_t cutoff_ms;
	size_t limit;
	char **keys[4];           /* program ids; request keys; idempotency keys; index keys */
	size_t n[4], cap[4];
	char **hist;              /* history keys older than the cutoff */
	size_t nhist, caphist;
	char cutoff_hist[32];
};

static int
retention_add(char ***v, size_t *n, size_t *cap, const char *key)
{
	if (array_grow(v, cap, sizeof **v, *n + 1) != 0)
		return -ENOMEM;
	(*v)[*n] = strdup(key);
	if ((*v)[*n] == NULL)
		return -ENOMEM;
	(*n)++;
	return 0;
}

static void
retention_reset(struct retention_prune *pr)
{
	size_t i, j;

	for (j = 0; j < 4; j++) {
		for (i = 0; i < pr->n[j]; i++)
			free(pr->keys[j][i]);
		pr->n[j] = 0;
	}
	for (i = 0; i < pr->nhist; i++)
		free(pr->hist[i]);
	pr->nhist = 0;
}

/* Programs that ended before the cutoff (terminal state, with a finish time). */
static int
retention_programs(const char *key, size_t keylen, const ProtobufCMessage *msg, void *arg)
{
	struct retention_prune *pr = arg;
	const Certa__V1__ProgramRecord *rec = (const Certa__V1__ProgramRecord *)msg;
	const Certa__V1__Program *pm = rec->program;
	char ik[512];
	int rc;

	(void)keylen;
	if (pm == NULL || pm->result == NULL ||
	    pm->state < CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_FINISHED ||
	    pm->result->finished_unix_ms >= pr->cutoff_ms)
		return 0;
	rc = retention_add(&pr->keys[0], &pr->n[0], &pr->cap[0], key);
	if (rc == 0) {
		store_tenant_index_key(pm->tenant, rec->tenant_uid, key, ik, sizeof ik);
		rc = retention_add(&pr->keys[3], &pr->n[3], &pr->cap[3], ik);
	}
	if (rc == 0 && pm->spec != NULL && pm->spec->idempotency_key[0] != '\0') {
		persist_idem_key(pm->tenant, rec->tenant_uid, pm->spec->idempotency_key, ik,
		    sizeof ik);
		rc = retention_add(&pr->keys[2], &pr->n[2], &pr->cap[2], ik);
	}
	if (rc != 0)
		return rc;
	return pr->n[0] >= pr->limit ? 1 : 0;
}

static int
retention_requests(const char *key, size_t keylen, const ProtobufCMessage *msg, void *arg)
{
	struct retention_prune *pr = arg;

	(void)keylen;
	(void)msg;
	return retention_add(&pr->keys[1], &pr->n[1], &pr->cap[1], key);
}

static int
retention_history(const char *key, size_t keylen, const ProtobufCMessage *msg, void *arg)
{
	struct retention_prune *pr = arg;

	(void)keylen;
	(void)msg;
	if (strncmp(key, pr->cutoff_hist, 16) >= 0)
		return 1;  /* keys are time-ordered: the rest is newer */
	if (pr->nhist >= pr->limit)
		return 1;
	return retention_add(&pr->hist, &pr->nhist, &pr->caphist, key);
}

/* One pruning transaction: collect, then delete (no deletes while scanning a DB). */
static int
retention_txn(struct store_txn *txn, void *arg)
{
	struct retention_prune *pr = arg;
	size_t i, nprog;
	char prefix[256];
	int rc;

	retention_reset(pr);
	rc = store_scan(txn, STORE_DB_PROGRAMS, "", NULL, retention_programs, pr);
	if (rc < 0)
		return rc;
	nprog = pr->n[0];
	for (i = 0; i < nprog; i++) {
		snprintf(prefix, sizeof prefix, "%s/", pr->keys[0][i]);
		rc = store_scan(txn, STORE_DB_REQUESTS, prefix, NULL, retention_requests, pr);
		if (rc < 0)
			return rc;
	}
	rc = store_scan(txn, STORE_DB_HISTORY, "", NULL, retention_history, pr);
	if (rc < 0)
		return rc;
	for (i = 0; i < nprog; i++) {
		if ((rc = store_del(txn, STORE_DB_PROGRAMS, pr->keys[0][i])) != 0)
			return rc;
		/* The chains' text chunks (schema 3). */
		snprintf(prefix, sizeof prefix, "%s/", pr->keys[0][i]);
		if ((rc = store_del_prefix(txn, STORE_DB_TEXT, prefix, NULL)) != 0)
			return rc;
	}
	for (i = 0; i < pr->n[1]; i++)
		if ((rc = store_del(txn, STORE_DB_REQUESTS, pr->keys[1][i])) != 0)
			return rc;
	for (i = 0; i < pr->n[2]; i++) {
		rc = store_del(txn, STORE_DB_IDEMPOTENCY, pr->keys[2][i]);
		if (rc != 0 && rc != CERTA_ENOTFOUND)
			return rc;
	}
	for (i = 0; i < pr->nhist; i++)
		if ((rc = store_del(txn, STORE_DB_HISTORY, pr->hist[i])) != 0)
			return rc;
	for (i = 0; i < pr->n[3]; i++) {
		rc = store_del(txn, STORE_DB_TENANT_PROGRAMS, pr->keys[3][i]);
		if (rc != 0 && rc != CERTA_ENOTFOUND)
			return rc;
	}
	return 0;
}

/* Deletes programs (with their chains, idempotency keys and history) that ended more than
 * retention_ms ago, at most 1000 per run. */
void
retention_on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct core *c = arg;
	struct retention_prune pr;
	size_t j;
	int rc;

	(void)fd;
	(void)what;
	memset(&pr, 0, sizeof pr);
	pr.cutoff_ms = core_now_ms() - c->opt.retention_ms;
	pr.limit = 1000;
	snprintf(pr.cutoff_hist, sizeof pr.cutoff_hist, "%016llx",
	    (unsigned long long)(pr.cutoff_ms > 0 ? pr.cutoff_ms : 0));
	rc = store_update(c->st, retention_txn, &pr);
	if (rc < 0)
		log_err(LOG_STORE, "retention: pruning failed: %s", certa_strerror(rc));
	else if (pr.n[0] > 0 || pr.nhist > 0)
		log_info(LOG_STORE, "retention: removed programs=%zu history=%zu older_than_ms=%lld",
		    pr.n[0], pr.nhist, (long long)c->opt.retention_ms);
	if (rc >= 0)
		c->pruned_total += pr.n[0];
	retention_reset(&pr);
	for (j = 0; j < 4; j++)
		free(pr.keys[j]);
	free(pr.hist);
}
