/* admin.c — Admin service handlers: decode at the edge, delegate to tenants/policies/pool. */
#include "daemon/admin.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "certa/v1/admin.pb-c.h"
#include "daemon/auth.h"
#include "daemon/core.h"
#include "daemon/policies.h"
#include "daemon/pool.h"
#include "daemon/shadow.h"
#include "daemon/tenants.h"
#include "lib/config.h"
#include "lib/error.h"
#include "lib/log.h"
#include "lib/rpc_server.h"
#include "scheduler/fair.h"
#include "store/store.h"

static void
admin_fail(struct rpc_call *call, int rc, const char *err)
{
	rpc_call_fail(call, rc, "%s", err[0] ? err : certa_strerror(rc));
}

static void
admin_reply_tenant(struct rpc_call *call, struct core *c, const char *name)
{
	Certa__V1__Tenant t;
	int rc = tenants_to_pb(core_tenants(c), name, &t);

	if (rc != 0) {
		rpc_call_fail(call, rc, "tenant %s: %s", name, certa_strerror(rc));
		return;
	}
	rpc_call_reply(call, &t.base);
	tenants_pb_free(&t);
}

static void
admin_create_tenant(struct rpc_call *call, const ProtobufCMessage *msg, void *ctx)
{
	struct core *c = ctx;
	const Certa__V1__CreateTenantRequest *req = (const Certa__V1__CreateTenantRequest *)msg;
	Certa__V1__CreateTenantReply reply = CERTA__V1__CREATE_TENANT_REPLY__INIT;
	Certa__V1__Tenant t;
	char key[TENANTS_KEY_MAX], err[512] = "";
	int rc;

	if (req->tenant == NULL) {
		rpc_call_fail(call, CERTA_EINVAL, "missing tenant");
		return;
	}
	/* Policies exist only for existing tenants, so records under a free name are leftovers
	 * of a tenant removed before deletions took its policies along: a new tenant starts on
	 * the default policy with an empty history. */
	if (req->tenant->name != NULL && req->tenant->name[0] != '\0' &&
	    strcmp(req->tenant->name, "default") != 0 &&
	    !tenants_exists(core_tenants(c), req->tenant->name)) {
		rc = store_update(core_store(c), policies_delete_txn, req->tenant->name);
		if (rc < 0) {
			rpc_call_fail(call, rc, "cannot clear old policies of %s: %s",
			    req->tenant->name, certa_strerror(rc));
			return;
		}
		policies_forget(core_policies(c), req->tenant->name);
	}
	rc = tenants_create(core_tenants(c), req->tenant, key, sizeof key, err, sizeof err);
	if (rc != 0) {
		admin_fail(call, rc, err);
		return;
	}
	fair_set_weight(core_fair(c), req->tenant->name,
	    tenants_weight(core_tenants(c), req->tenant->name));
	log_notice(LOG_ADMIN, "%s created tenant %s", rpc_call_identity(call), req->tenant->name);
	if (tenants_to_pb(core_tenants(c), req->tenant->name, &t) != 0) {
		rpc_call_fail(call, -12, "out of memory");
		return;
	}
	reply.tenant = &t;
	reply.api_key = key;
	rpc_call_reply(call, &reply.base);
	explicit_bzero(key, sizeof key);
	tenants_pb_free(&t);
}

static void
admin_get_tenant(struct rpc_call *call, const ProtobufCMessage *msg, void *ctx)
{
	const Certa__V1__TenantRef *req = (const Certa__V1__TenantRef *)msg;

	admin_reply_tenant(call, ctx, req->name);
}

static void
admin_list_tenants(struct rpc_call *call, const ProtobufCMessage *msg, void *ctx)
{
	struct core *c = ctx;
	struct tenants *ts = core_tenants(c);
	Certa__V1__ListTenantsReply reply = CERTA__V1__LIST_TENANTS_REPLY__INIT;
	size_t i, n = tenants_count(ts);

	(void)msg;
	reply.tenants = calloc(n ? n : 1, sizeof *reply.tenants);
	if (reply.tenants == NULL) {
		rpc_call_fail(call, -12, "out of memory");
		return;
	}
	for (i = 0; i < n; i++) {
		Certa__V1__Tenant *t = calloc(1, sizeof *t);
		if (t == NULL || tenants_to_pb(ts, tenants_name_at(ts, i), t) != 0) {
			free(t);
			continue;
		}
		reply.tenants[reply.n_tenants++] = t;
	}
	rpc_call_reply(call, &reply.base);
	for (i = 0; i < reply.n_tenants; i++) {
		tenants_pb_free(reply.tenants[i]);
		free(reply.tenants[i]);
	}
	free(reply.tenants);
}

static void
admin_update_tenant(struct rpc_call *call, const ProtobufCMessage *msg, void *ctx)
{
	struct core *c = ctx;
	const Certa__V1__UpdateTenantRequest *req = (const Certa__V1__UpdateTenantRequest *)msg;
	char err[512] = "";
	int rc;

	if (req->tenant == NULL) {
		rpc_call_fail(call, CERTA_EINVAL, "missing tenant");
		return;
	}
	rc = tenants_update(core_tenants(c), req->tenant, req->fields, req->n_fields, err,
	    sizeof err);
	if (rc != 0) {
		admin_fail(call, rc, err);
		return;
	}
	fair_set_weight(core_fair(c), req->tenant->name,
	    tenants_weight(core_tenants(c), req->tenant->name));
	log_notice(LOG_ADMIN, "%s updated tenant %s", rpc_call_identity(call), req->tenant->name);
	admin_reply_tenant(call, c, req->tenant->name);
}

/* Whether a client stream's caller still holds a credential for its tenant: the tenant
 * exists and the key it came with (none: the anonymous tenant) still authenticates to it. */
static int
admin_stream_still_ok(struct rpc_call *w, void *arg)
{
	struct tenants *ts = arg;
	const char *who = rpc_call_identity(w), *authz, *tenant = NULL;

	if (!tenants_exists(ts, who))
		return 0;
	authz = rpc_call_metadata(w, "authorization");
	if (authz == NULL)
		return 1;
	return tenants_authenticate(ts, authz, &tenant) == 0 && strcmp(tenant, who) == 0;
}

/* Streams opened with a key that no longer works end now, not when their program does. */
static void
admin_end_stale_streams(struct core *c, const char *tenant, const char *what)
{
	char why[256];

	snprintf(why, sizeof why, "the API key of tenant %s was %s", tenant, what);
	core_end_watchers(c, admin_stream_still_ok, core_tenants(c), why);
}

static void
admin_delete_tenant(struct rpc_call *call, const ProtobufCMessage *msg, void *ctx)
{
	struct core *c = ctx;
	const Certa__V1__TenantRef *req = (const Certa__V1__TenantRef *)msg;
	Certa__V1__DeleteTenantReply reply = CERTA__V1__DELETE_TENANT_REPLY__INIT;
	char err[512] = "";
	int rc;

	/* The tenant's policies go in the same transaction: a tenant created later under this
	 * name starts on the default policy with an empty history. */
	rc = tenants_delete(core_tenants(c), req->name, policies_delete_txn, req->name, err,
	    sizeof err);
	if (rc != 0) {
		admin_fail(call, rc, err);
		return;
	}
	policies_forget(core_policies(c), req->name);
	fair_remove(core_fair(c), req->name);
	log_notice(LOG_ADMIN, "%s deleted tenant %s", rpc_call_identity(call), req->name);
	admin_end_stale_streams(c, req->name, "deleted with its tenant");
	rpc_call_reply(call, &reply.base);
}

static void
admin_rotate_key(struct rpc_call *call, const ProtobufCMessage *msg, void *ctx)
{
	struct core *c = ctx;
	const Certa__V1__RotateKeyRequest *req = (const Certa__V1__RotateKeyRequest *)msg;
	Certa__V1__RotateKeyReply reply = CERTA__V1__ROTATE_KEY_REPLY__INIT;
	Certa__V1__ApiKeyInfo info = CERTA__V1__API_KEY_INFO__INIT;
	char key[TENANTS_KEY_MAX], id[32];
	int rc;

	rc = tenants_rotate_key(core_tenants(c), req->tenant, req->revoke_others, key, sizeof key,
	    id, sizeof id);
	if (rc != 0) {
		rpc_call_fail(call, rc, "tenant %s: %s", req->tenant, certa_strerror(rc));
		return;
	}
	if (req->revoke_others)
		admin_end_stale_streams(c, req->tenant, "rotated; the old keys are revoked");
	info.key_id = id;
	reply.api_key = key;
	reply.info = &info;
	rpc_call_reply(call, &reply.base);
	explicit_bzero(key, sizeof key);
}

static void
admin_revoke_key(struct rpc_call *call, const ProtobufCMessage *msg, void *ctx)
{
	struct core *c = ctx;
	const Certa__V1__RevokeKeyRequest *req = (const Certa__V1__RevokeKeyRequest *)msg;
	Certa__V1__RevokeKeyReply reply = CERTA__V1__REVOKE_KEY_REPLY__INIT;
	int rc;

	rc = tenants_revoke_key(core_tenants(c), req->tenant, req->key_id);
	if (rc != 0) {
		rpc_call_fail(call, rc, "tenant %s key %s: %s", req->tenant, req->key_id,
		    certa_strerror(rc));
		return;
	}
	admin_end_stale_streams(c, req->tenant, "revoked");
	rpc_call_reply(call, &reply.base);
}

/* "" -> "default"; otherwise the tenant must exist. */
static const char *
admin_policy_name(struct rpc_call *call, struct core *c, const char *tenant)
{
	if (tenant == NULL || tenant[0] == '\0')
		return "default";
	if (!tenants_exists(core_tenants(c), tenant)) {
		rpc_call_fail(call, CERTA_ENOTFOUND, "no tenant %s", tenant);
		return NULL;
	}
	return tenant;
}

static void
admin_reply_policy(struct rpc_call *call, struct core *c, const char *name)
{
	Certa__V1__Policy p;
	int rc = policies_get(core_policies(c), name, &p);

	if (rc != 0) {
		rpc_call_fail(call, rc, "policy %s: %s", name, certa_strerror(rc));
		return;
	}
	rpc_call_reply(call, &p.base);
	policies_pb_free(&p);
}

static void
admin_get_policy(struct rpc_call *call, const ProtobufCMessage *msg, void *ctx)
{
	const Certa__V1__PolicyRef *req = (const Certa__V1__PolicyRef *)msg;
	const char *name = admin_policy_name(call, ctx, req->tenant);

	if (name != NULL)
		admin_reply_policy(call, ctx, name);
}

static void
admin_set_policy(struct rpc_call *call, const ProtobufCMessage *msg, void *ctx)
{
	struct core *c = ctx;
	const Certa__V1__SetPolicyRequest *req = (const Certa__V1__SetPolicyRequest *)msg;
	const char *name = admin_policy_name(call, c, req->tenant);
	char err[512] = "";
	int rc;

	if (name == NULL)
		return;
	if (req->policy == NULL || req->policy->text[0] == '\0') {
		rpc_call_fail(call, CERTA_EINVAL, "policy.text is empty: give `key = value` lines");
		return;
	}
	rc = policies_set(core_policies(c), name, req->policy->text, rpc_call_identity(call), err,
	    sizeof err);
	if (rc != 0) {
		admin_fail(call, rc, err);
		return;
	}
	admin_reply_policy(call, c, name);
}

static void
admin_policy_history(struct rpc_call *call, const ProtobufCMessage *msg, void *ctx)
{
	struct core *c = ctx;
	const Certa__V1__PolicyRef *req = (const Certa__V1__PolicyRef *)msg;
	const char *name = admin_policy_name(call, c, req->tenant);
	Certa__V1__PolicyHistoryReply reply;
	int rc;

	if (name == NULL)
		return;
	rc = policies_history(core_policies(c), name, &reply);
	if (rc != 0) {
		rpc_call_fail(call, rc, "policy %s: %s", name, certa_strerror(rc));
		return;
	}
	rpc_call_reply(call, &reply.base);
	policies_history_free(&reply);
}

static void
admin_rollback_policy(struct rpc_call *call, const ProtobufCMessage *msg, void *ctx)
{
	struct core *c = ctx;
	const Certa__V1__RollbackPolicyRequest *req = (const Certa__V1__RollbackPolicyRequest *)msg;
	const char *name = admin_policy_name(call, c, req->tenant);
	char err[512] = "";
	int rc;

	if (name == NULL)
		return;
	rc = policies_rollback(core_policies(c), name, req->version, rpc_call_identity(call), err,
	    sizeof err);
	if (rc != 0) {
		admin_fail(call, rc, err);
		return;
	}
	admin_reply_policy(call, c, name);
}

static void
admin_worker_pb(struct pool_worker *w, Certa__V1__WorkerStatus *out)
{
	certa__v1__worker_status__init(out);
	out->address = (char *)pool_worker_addr(w);
	out->state = (Certa__V1__WorkerState)pool_worker_state(w);
	out->engine = (char *)pool_worker_engine(w);
	out->model = (char *)pool_worker_model(w);
	{
		char *const *names;
		out->n_models = pool_worker_models(w, &names);
		out->models = (char **)names;
	}
	out->capacity = pool_worker_capacity(w);
	out->active = pool_worker_held(w);
	out->last_seen_unix_ms = pool_worker_last_seen(w);
	out->last_error = (char *)pool_worker_error(w);
}

static void
admin_list_workers(struct rpc_call *call, const ProtobufCMessage *msg, void *ctx)
{
	struct pool *pl = core_pool(ctx);
	Certa__V1__ListWorkersReply reply = CERTA__V1__LIST_WORKERS_REPLY__INIT;
	Certa__V1__WorkerStatus *ws;
	Certa__V1__WorkerStatus **wp;
	size_t i, n = pool_count(pl);

	(void)msg;
	ws = calloc(n ? n : 1, sizeof *ws);
	wp = calloc(n ? n : 1, sizeof *wp);
	if (ws == NULL || wp == NULL) {
		free(ws);
		free(wp);
		rpc_call_fail(call, -12, "out of memory");
		return;
	}
	for (i = 0; i < n; i++) {
		admin_worker_pb(pool_at(pl, i), &ws[i]);
		wp[i] = &ws[i];
	}
	reply.n_workers = n;
	reply.workers = wp;
	rpc_call_reply(call, &reply.base);
	free(ws);
	free(wp);
}

/* host:port with a port in 1..65535, or unix:/path. */
static int
admin_addr_valid(const char *a)
{
	char err[320];

	/* The same syntax --check-config and startup accept for workers.worker. */
	return config_check_address(a, 0, err, sizeof err) == 0;
}

static void
admin_add_worker(struct rpc_call *call, const ProtobufCMessage *msg, void *ctx)
{
	struct pool *pl = core_pool(ctx);
	const Certa__V1__AddWorkerRequest *req = (const Certa__V1__AddWorkerRequest *)msg;
	Certa__V1__WorkerStatus ws;
	int rc;

	if (!admin_addr_valid(req->address)) {
		rpc_call_fail(call, CERTA_EINVAL, "worker address '%s' is not host:port or "
		    "unix:/path", req->address);
		return;
	}
	/* Adding a worker that is being drained puts it back in service. */
	if (pool_find(pl, req->address) != NULL &&
	    pool_worker_state(pool_find(pl, req->address)) == POOL_DRAINING) {
		pool_drain(pl, req->address, 0);
		log_notice(LOG_ADMIN, "%s undrained worker %s", rpc_call_identity(call),
		    req->address);
		admin_worker_pb(pool_find(pl, req->address), &ws);
		rpc_call_reply(call, &ws.base);
		return;
	}
	rc = pool_add(pl, req->address);
	if (rc != 0) {
		rpc_call_fail(call, rc, "worker %s: %s", req->address, certa_strerror(rc));
		return;
	}
	log_notice(LOG_ADMIN, "%s added worker %s", rpc_call_identity(call), req->address);
	admin_worker_pb(pool_find(pl, req->address), &ws);
	rpc_call_reply(call, &ws.base);
}

static void
admin_remove_worker(struct rpc_call *call, const ProtobufCMessage *msg, void *ctx)
{
	struct pool *pl = core_pool(ctx);
	const Certa__V1__WorkerRef *req = (const Certa__V1__WorkerRef *)msg;
	Certa__V1__RemoveWorkerReply reply = CERTA__V1__REMOVE_WORKER_REPLY__INIT;
	int rc = pool_remove(pl, req->address);

	if (rc == CERTA_ESTATE) {
		rpc_call_fail(call, rc, "worker %s still holds chains; drain it first",
		    req->address);
		return;
	}
	if (rc != 0) {
		rpc_call_fail(call, rc, "unknown worker %s", req->address);
		return;
	}
	log_notice(LOG_ADMIN, "%s removed worker %s", rpc_call_identity(call), req->address);
	rpc_call_reply(call, &reply.base);
}

static void
admin_drain_worker(struct rpc_call *call, const ProtobufCMessage *msg, void *ctx)
{
	struct pool *pl = core_pool(ctx);
	const Certa__V1__WorkerRef *req = (const Certa__V1__WorkerRef *)msg;
	Certa__V1__WorkerStatus ws;
	int rc = pool_drain(pl, req->address, 1);

	if (rc != 0) {
		rpc_call_fail(call, rc, "unknown worker %s", req->address);
		return;
	}
	log_notice(LOG_ADMIN, "%s drains worker %s", rpc_call_identity(call), req->address);
	admin_worker_pb(pool_find(pl, req->address), &ws);
	rpc_call_reply(call, &ws.base);
}

static void
admin_get_stats(struct rpc_call *call, const ProtobufCMessage *msg, void *ctx)
{
	struct core *c = ctx;
	const Certa__V1__StatsRequest *req = (const Certa__V1__StatsRequest *)msg;
	struct tenants *ts = core_tenants(c);
	Certa__V1__StatsReply reply = CERTA__V1__STATS_REPLY__INIT;
	Certa__V1__TenantStats *st, **sp;
	size_t i, n = tenants_count(ts), k = 0;
	double wsum = 0;
	int64_t now_ms;

	if (req->tenant[0] != '\0' && !tenants_exists(ts, req->tenant)) {
		rpc_call_fail(call, CERTA_ENOTFOUND, "no tenant %s", req->tenant);
		return;
	}
	{
		struct timespec tsp;
		clock_gettime(CLOCK_REALTIME, &tsp);
		now_ms = (int64_t)tsp.tv_sec * 1000 + tsp.tv_nsec / 1000000;
	}
	st = calloc(n ? n : 1, sizeof *st);
	sp = calloc(n ? n : 1, sizeof *sp);
	if (st == NULL || sp == NULL) {
		free(st);
		free(sp);
		rpc_call_fail(call, -12, "out of memory");
		return;
	}
	for (i = 0; i < n; i++) {
		const char *name = tenants_name_at(ts, i);
		if (tenants_live(ts, name) > 0)
			wsum += tenants_weight(ts, name);
	}
	for (i = 0; i < n; i++) {
		const char *name = tenants_name_at(ts, i);
		const struct tenant_stats *s = tenants_stats(ts, name);
		if (req->tenant[0] != '\0' && strcmp(req->tenant, name) != 0)
			continue;
		certa__v1__tenant_stats__init(&st[k]);
		st[k].tenant = (char *)name;
		st[k].queued = s->queued;
		st[k].running = s->running;
		st[k].finished = s->finished;
		st[k].cancelled = s->cancelled;
		st[k].failed = s->failed;
		st[k].tokens_used = s->tokens_used;
		st[k].tokens_saved = s->tokens_saved;
		st[k].share_received = fair_recent_share(core_fair(c), name, now_ms);
		st[k].share_weight = tenants_live(ts, name) > 0 && wsum > 0 ?
		    tenants_weight(ts, name) / wsum : 0;
		sp[k] = &st[k];
		k++;
	}
	reply.n_tenants = k;
	reply.tenants = sp;
	reply.workers_up = pool_count_up(core_pool(c));
	reply.steps_total = core_steps(c);
	{
		/* Online risk control (daemon/shadow.h), not per tenant. */
		size_t nr = shadow_count(c), j;
		Certa__V1__RiskControl *rk = calloc(nr ? nr : 1, sizeof *rk);
		Certa__V1__RiskControl **rp = calloc(nr ? nr : 1, sizeof *rp);
		if (rk != NULL && rp != NULL) {
			for (j = 0; j < nr; j++) {
				struct shadow_info si;
				shadow_get(c, j, &si);
				certa__v1__risk_control__init(&rk[j]);
				rk[j].model = (char *)si.model;
				rk[j].algo = (char *)(si.algo == SCHED_ALGO_SC ? "sc" : "cot");
				rk[j].shift = si.shift;
				rk[j].threshold = si.threshold;
				rk[j].ucb = si.ucb;
				rk[j].target = si.target;
				rk[j].shadows = si.shadows;
				rk[j].changes = si.changes;
				rk[j].window_shadows = si.win_n;
				rk[j].window_changes = si.win_changes;
				rk[j].saves = si.saves;
				rk[j].backs = si.backs;
				rk[j].tokens = si.tokens;
				rk[j].dropped = si.dropped;
				rk[j].running = si.running;
				rk[j].frozen = si.frozen;
				rk[j].samples = si.samples;
				rk[j].excluded = si.excluded;
				rk[j].point_stopped = si.point_stopped;
				rk[j].point_changed = si.point_changed;
				rp[j] = &rk[j];
			}
			reply.n_riskctl = nr;
			reply.riskctl = rp;
		}
		/* Model lengths (daemon/shadow.h). */
		size_t nm = shadow_model_count(c);
		Certa__V1__ModelTokens *mk = calloc(nm ? nm : 1, sizeof *mk);
		Certa__V1__ModelTokens **mp = calloc(nm ? nm : 1, sizeof *mp);
		if (mk != NULL && mp != NULL) {
			for (j = 0; j < nm; j++) {
				struct shadow_model_info mi;
				shadow_model_get(c, j, &mi);
				certa__v1__model_tokens__init(&mk[j]);
				mk[j].model = (char *)mi.model;
				mk[j].tokens = mi.tokens;
				mk[j].source = (char *)mi.source;
				mk[j].median = mi.median;
				mk[j].samples = mi.samples;
				mk[j].min_samples = mi.min_samples;
				mk[j].seen = mi.seen;
				mk[j].confidence = mi.confidence;
				mk[j].confidence_source = (char *)mi.confidence_source;
				mk[j].confidence_median = mi.confidence_median;
				mk[j].confidence_samples = mi.confidence_samples;
				mk[j].confidence_min_samples = mi.confidence_min_samples;
				mk[j].confidence_seen = mi.confidence_seen;
				mp[j] = &mk[j];
			}
			reply.n_model_tokens = nm;
			reply.model_tokens = mp;
		}
		rpc_call_reply(call, &reply.base);
		free(rk);
		free(rp);
		free(mk);
		free(mp);
	}
	free(st);
	free(sp);
}

#define ADMIN(m, in, fn) \
	{ "/certa.v1.Admin/" m, RPC_UNARY, &certa__v1__##in##__descriptor, fn, AUTH_ADMIN }

static const struct rpc_method admin_table[] = {
	ADMIN("CreateTenant", create_tenant_request, admin_create_tenant),
	ADMIN("GetTenant", tenant_ref, admin_get_tenant),
	ADMIN("ListTenants", list_tenants_request, admin_list_tenants),
	ADMIN("UpdateTenant", update_tenant_request, admin_update_tenant),
	ADMIN("DeleteTenant", tenant_ref, admin_delete_tenant),
	ADMIN("RotateKey", rotate_key_request, admin_rotate_key),
	ADMIN("RevokeKey", revoke_key_request, admin_revoke_key),
	ADMIN("GetPolicy", policy_ref, admin_get_policy),
	ADMIN("SetPolicy", set_policy_request, admin_set_policy),
	ADMIN("PolicyHistory", policy_ref, admin_policy_history),
	ADMIN("RollbackPolicy", rollback_policy_request, admin_rollback_policy),
	ADMIN("ListWorkers", list_workers_request, admin_list_workers),
	ADMIN("AddWorker", add_worker_request, admin_add_worker),
	ADMIN("RemoveWorker", worker_ref, admin_remove_worker),
	ADMIN("DrainWorker", worker_ref, admin_drain_worker),
	ADMIN("GetStats", stats_request, admin_get_stats),
};

const struct rpc_method *
admin_methods(size_t *n)
{
	*n = sizeof admin_table / sizeof admin_table[0];
	return admin_table;
}
