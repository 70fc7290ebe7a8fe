/* submit.c — Submit: validation, idempotency keys, quotas, the accepting write. */
#include "daemon/submit.h"
#include "daemon/core_impl.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "daemon/events.h"
#include "daemon/commit.h"
#include "daemon/persist.h"
#include "daemon/queries.h"
#include "daemon/route.h"
#include "daemon/policies.h"
#include "daemon/program.h"
#include "daemon/telemetry.h"
#include "daemon/tenants.h"
#include "scheduler/fair.h"
#include "lib/error.h"
#include "lib/log.h"
#include "lib/rpc_server.h"
#include "lib/strmap.h"
#include "store/store.h"

/* Checks a client's spec against the policy; fills the effective algorithm, n and budget. */
static int
submit_validate(struct core *c, const struct sched_policy *pol, const struct submit_spec *spec,
    enum sched_algo *algo, uint32_t *n, uint64_t *budget, char *err, size_t errlen)
{
	size_t plen;

	if (spec == NULL) {
		snprintf(err, errlen, "missing program");
		return CERTA_EINVAL;
	}
	plen = spec->problem != NULL ? strlen(spec->problem) : 0;
	if (plen == 0) {
		snprintf(err, errlen, "program.problem is empty");
		return CERTA_EINVAL;
	}
	if (plen > c->opt.max_prompt_bytes) {
		snprintf(err, errlen, "program.problem is %zu bytes; the limit is %u bytes", plen,
		    c->opt.max_prompt_bytes);
		return CERTA_EINVAL;
	}
	switch (spec->algorithm) {
	case SUBMIT_ALGO_UNSPECIFIED:
		*algo = spec->n > 1 ? SCHED_ALGO_SC : SCHED_ALGO_COT;
		break;
	case SUBMIT_ALGO_COT:
		*algo = SCHED_ALGO_COT;
		break;
	case SUBMIT_ALGO_SC:
		*algo = SCHED_ALGO_SC;
		break;
	default:
		snprintf(err, errlen, "program.algorithm %d is not one of COT (1), SC (2)",
		    (int)spec->algorithm);
		return CERTA_EINVAL;
	}
	if (*algo == SCHED_ALGO_COT) {
		if (spec->n > 1) {
			snprintf(err, errlen, "program.n is %u but cot runs one chain (use sc)",
			    spec->n);
			return CERTA_EINVAL;
		}
		*n = 1;
	} else {
		*n = spec->n ? spec->n : pol->default_sc_n;
		if (*n < 1 || *n > pol->max_sc_n) {
			snprintf(err, errlen, "program.n is %u; allowed range is [1, %u]", *n,
			    pol->max_sc_n);
			return CERTA_EINVAL;
		}
	}
	*budget = spec->token_budget ? spec->token_budget : pol->default_budget * *n;
	if (*budget > pol->max_budget) {
		snprintf(err, errlen, "program.token_budget %llu exceeds the limit %llu",
		    (unsigned long long)*budget, (unsigned long long)pol->max_budget);
		return CERTA_EINVAL;
	}
	if (spec->priority < 0 || spec->priority > SUBMIT_PRIORITY_MAX) {
		snprintf(err, errlen, "program.priority %d is not a known priority",
		    (int)spec->priority);
		return CERTA_EINVAL;
	}
	if (spec->policy[0] != '\0') {
		snprintf(err, errlen, "program.policy: per-program policies are not supported; the "
		    "tenant's policy applies (certactl policy get --tenant)");
		return CERTA_EINVAL;
	}
	if (spec->model[0] != '\0') {
		char avail[256];
		if (!pool_model_known(c->pool, spec->model, avail, sizeof avail)) {
			snprintf(err, errlen, "program.model: no worker serves model '%s' (workers "
			    "up serve: %s)", spec->model, avail[0] ? avail : "none");
			return CERTA_EINVAL;
		}
	}
	{
		/* A gang of n chains runs on one worker: more than any worker serving the model
		 * holds at once could never be placed.  Known only while some worker is up. */
		uint32_t cap = pool_max_capacity(c->pool, spec->model);
		if (cap > 0 && *n > cap) {
			snprintf(err, errlen, "program.n is %u; the largest worker serving %s runs "
			    "%u chains at once", *n, spec->model[0] ? spec->model : "programs", cap);
			return CERTA_EINVAL;
		}
	}
	if (!(spec->moe_top_p >= 0 && spec->moe_top_p <= 1)) {
		snprintf(err, errlen, "program.moe_top_p %g: must be 0 (the model's trained top-k) "
		    "or in (0, 1]", (double)spec->moe_top_p);
		return CERTA_EINVAL;
	}
	if (spec->deadline_unix_ms != 0 && spec->deadline_unix_ms <= core_now_ms()) {
		snprintf(err, errlen, "program.deadline_unix_ms %lld is in the past",
		    (long long)spec->deadline_unix_ms);
		return CERTA_EINVAL;
	}
	return 0;
}

struct submit_idem {
	const char *key;
	Certa__V1__IdempotencyRecord *rec;
};

static int
submit_idem_txn(struct store_txn *txn, void *arg)
{
	struct submit_idem *g = arg;

	return store_get(txn, STORE_DB_IDEMPOTENCY, g->key, NULL, (ProtobufCMessage **)&g->rec);
}

/* What a retry must repeat of the program its key created: the problem, the effective
 * algorithm, n (when the retry gives one), the budget (when it gives one) and the model; of a
 * program expert routing placed (daemon/route.h) only the problem, since the router chose
 * (and may have escalated) the rest.  Returns the first field that differs, or NULL. */
static const char *
submit_idem_mismatch(const char *problem, int algo, uint32_t n, uint64_t budget,
    const char *model, bool routed, const struct submit_spec *spec, enum sched_algo want_algo,
    uint32_t want_n, uint64_t want_budget)
{
	if (strcmp(problem, spec->problem) != 0)
		return "problem";
	if (routed)
		return NULL;
	if (algo != (int)want_algo)
		return "algorithm";
	if (spec->n != 0 && n != want_n)
		return "n";
	if (spec->token_budget != 0 && budget != want_budget)
		return "token_budget";
	if (strcmp(model != NULL ? model : "", spec->model) != 0)
		return "model";
	return NULL;
}

/* The program the key names, live or stored, against the retried spec: CERTA_ESTATE
 * (FAILED_PRECONDITION) naming the field that differs, as payment APIs answer a reused key. */
static int
submit_idem_compare(struct core *c, const char *tenant, const char *id,
    const struct submit_spec *spec, enum sched_algo algo, uint32_t n, uint64_t budget,
    char *err, size_t errlen)
{
	struct program *p = strmap_get(c->live, id);
	Certa__V1__Program *pm = NULL;
	const char *field;
	int rc;

	if (p != NULL) {
		field = submit_idem_mismatch(p->problem, (int)p->algo, p->n, p->budget, p->model,
		    p->routed, spec, algo, n, budget);
	} else {
		rc = queries_get(c, tenant, id, &pm);
		if (rc != 0)
			return rc == CERTA_ENOTFOUND ? 0 : rc;   /* the watch below answers it */
		if (pm->spec == NULL)
			field = NULL;
		else
			field = submit_idem_mismatch(pm->spec->problem, (int)pm->spec->algorithm,
			    pm->spec->n, pm->spec->token_budget, pm->spec->model,
			    pm->n_routing > 0, spec, algo, n, budget);
	}
	if (field != NULL)
		snprintf(err, errlen, "program.idempotency_key was used for program %s with another "
		    "program.%s; use a new key for a different program", id, field);
	if (pm != NULL)
		certa__v1__program__free_unpacked(pm, NULL);
	return field != NULL ? CERTA_ESTATE : 0;
}

/* A Submit that repeats an idempotency key gets the program the key created: accepted with
 * duplicate set, then its events (or its final event); the same key with another spec is
 * CERTA_ESTATE naming the field.  CERTA_ENOTFOUND: a new key. */
static int
submit_idempotent(struct core *c, const char *tenant, uint64_t uid, const char *ikey,
    const struct submit_spec *spec, enum sched_algo algo, uint32_t n, uint64_t budget,
    struct rpc_call *watcher, char *err, size_t errlen)
{
	struct submit_idem g;
	char key[512];
	struct program *p;
	int rc;

	if (strlen(ikey) > 128) {
		snprintf(err, errlen, "program.idempotency_key is longer than 128 bytes");
		return CERTA_EINVAL;
	}
	persist_idem_key(tenant, uid, ikey, key, sizeof key);
	g.key = key;
	g.rec = NULL;
	rc = store_view(c->st, submit_idem_txn, &g);
	if (rc != 0)
		return rc;
	log_info(LOG_SCHED, "program %s: repeated idempotency key from tenant %s",
	    g.rec->program_id, tenant);
	rc = submit_idem_compare(c, tenant, g.rec->program_id, spec, algo, n, budget, err,
	    errlen);
	if (rc != 0) {
		certa__v1__idempotency_record__free_unpacked(g.rec, NULL);
		return rc;
	}
	p = strmap_get(c->live, g.rec->program_id);
	if (p != NULL && (p->tenant_uid != uid || strcmp(p->tenant, tenant) != 0)) {
		rc = CERTA_ENOTFOUND;   /* not this tenant's (cannot happen with the uid in the key) */
	} else if (p != NULL && !program_is_terminal(p)) {
		if (watcher != NULL) {
			events_accepted(p, watcher, 1);
			program_watch(p, watcher);
		}
	} else if (watcher != NULL) {
		events_accepted_stored(watcher, g.rec->program_id, g.rec->created_unix_ms);
		rc = queries_watch(c, tenant, g.rec->program_id, watcher);
	}
	certa__v1__idempotency_record__free_unpacked(g.rec, NULL);
	return rc;
}

int
submit_program(struct core *c, const char *tenant, const struct submit_spec *spec,
    struct rpc_call *watcher, char *err, size_t errlen)
{
	struct program *p;
	const struct program *q;
	enum sched_algo algo;
	uint32_t n;
	uint64_t budget;
	struct route_start route;
	char id[64];
	uint64_t uid;
	int rc;

	if (c->draining) {
		snprintf(err, errlen, "certad is shutting down; retry on another instance or later");
		return CERTA_EUNAVAIL;
	}
	if (tenants_uid(c->tenants, tenant, &uid) != 0) {
		snprintf(err, errlen, "unknown tenant %s", tenant);
		return CERTA_EAUTH;
	}
	rc = submit_validate(c, policies_effective(c->policies, tenant,
	    tenants_policy(c->tenants, tenant)), spec, &algo, &n, &budget, err, errlen);
	if (rc != 0)
		return rc;
	if (spec->idempotency_key[0] != '\0') {
		/* A key in an accepting write not known to be committed: settle the writes first
		 * (a repeat within moments of the first Submit; other keyed Submits do not wait). */
		if (commit_accept_key(c, tenant, uid, spec->idempotency_key) != NULL)
			commit_sync(c);
		rc = submit_idempotent(c, tenant, uid, spec->idempotency_key, spec, algo, n, budget,
		    watcher, err, errlen);
		if (rc != CERTA_ENOTFOUND)
			return rc;  /* 0: a retry of an accepted program, answered */
		q = commit_accept_key(c, tenant, uid, spec->idempotency_key);
		if (q != NULL) {
			/* Its write failed and is retried (a cancelled program on a failing
			 * disk): a second program under the key would be a duplicate. */
			snprintf(err, errlen, "the program this idempotency key created (%s) is not "
			    "durable yet: its write is being retried (state storage failing); retry "
			    "later", q->id);
			return CERTA_EUNAVAIL;
		}
	}
	/* Expert routing (daemon/route.h; off: nothing changes). */
	rc = route_program(c, tenant, spec, policies_effective(c->policies, tenant,
	    tenants_policy(c->tenants, tenant)), &algo, &n, &budget, &route, err, errlen);
	if (rc != 0)
		return rc;
	rc = tenants_admit(c->tenants, tenant, n, budget, strlen(spec->problem), core_now_ms(), err,
	    errlen);
	if (rc != 0)
		return rc;
	core_new_id(id, sizeof id);
	p = program_new(id, tenant, spec->problem, algo, n, budget);
	if (p == NULL)
		return -ENOMEM;
	p->tenant_uid = uid;
	if (program_set_str(&p->model, spec->model) != 0 ||
	    program_set_str(&p->idempotency_key, spec->idempotency_key) != 0) {
		program_free(p);
		return -ENOMEM;
	}
	p->priority = spec->priority;
	p->deadline_ms = spec->deadline_unix_ms;
	p->moe_top_p = spec->moe_top_p;
	p->seed = spec->seed;
	if (spec->has_sampling) {
		p->temperature = spec->temperature;
		p->top_p = spec->top_p;
	}
	p->created_ms = core_now_ms();
	p->ready_since_ms = p->created_ms;
	/* Staged sc (sc.staged): the smallest majority first, the others when they disagree.
	 * Not with a deadline (the late chains would start late) nor when the router places
	 * the program (its rungs choose n). */
	if (algo == SCHED_ALGO_SC && !route.routed && p->deadline_ms == 0) {
		size_t first = sched_sc_started(policies_effective(c->policies, tenant,
		    tenants_policy(c->tenants, tenant)), n);
		if (first < n)
			p->launched = (uint32_t)first;
	}
	if (route_attach(p, &route) != 0) {
		program_free(p);
		return -ENOMEM;
	}
	p->seq = c->next_seq++;
	/* Accepted == durable (with its idempotency key, in the same transaction): the write
	 * goes with this loop turn's group commit, and the accepted event once it is committed
	 * (submit_accepted). */
	if (strmap_put(c->live, p->id, p, NULL) != 0 || core_order_add(c, p) != 0 ||
	    (watcher != NULL && program_watch(p, watcher) != 0) || commit_accept(c, p) != 0) {
		if (watcher != NULL)
			program_unwatch(p, watcher);   /* nothing when it was not watching */
		core_forget(c, p);
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	tenants_program_state(c->tenants, tenant, 0, PROGRAM_QUEUED);
	telemetry_submitted(c->tel, tenant);
	fair_set_weight(c->fair, tenant, tenants_weight(c->tenants, tenant));
	return 0;
}

void
submit_accepted(struct core *c, struct program *p)
{
	size_t i;

	log_info(LOG_SCHED, "program %s accepted tenant=%s algo=%s n=%u%s budget=%llu", p->id,
	    p->tenant, p->algo == SCHED_ALGO_SC ? "sc" : "cot", p->n,
	    p->launched > 0 ? " (staged)" : "", (unsigned long long)p->budget);
	for (i = 0; i < p->nwatchers; i++)
		events_accepted(p, p->watchers[i], 0);
	core_kick(c);
}

void
submit_refused(struct core *c, struct program *p, int rc)
{
	int status = rc == -ENOSPC || rc == CERTA_EMAPFULL || rc == -EIO ? CERTA_EUNAVAIL :
	    CERTA_ESTORE;
	size_t j;

	log_warn(LOG_SCHED, "program %s refused: cannot store it: %s", p->id, certa_strerror(rc));
	/* Out of room (disk, map) or I/O: passes, so the client may retry (UNAVAILABLE). */
	while ((j = p->nwatchers) > 0) {
		rpc_call_fail(p->watchers[j - 1], status, "cannot store the program: %s",
		    certa_strerror(rc));
		program_unwatch(p, p->watchers[j - 1]);
	}
	if (p->shadow_of == NULL)
		tenants_program_state(c->tenants, p->tenant, PROGRAM_QUEUED, 0);
	core_forget(c, p);
}
