/* reasoning.c — Reasoning service handlers: decode at the edge, delegate to the core. */
#include "daemon/reasoning.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "certa/v1/reasoning.pb-c.h"
#include "daemon/auth.h"
#include "daemon/core.h"
#include "daemon/pool.h"
#include "daemon/queries.h"
#include "daemon/submit.h"
#include "lib/error.h"
#include "lib/log.h"
#include "lib/rpc_server.h"
#include "lib/sampling.h"

/* The tenant the authorizer identified (daemon/auth.c). */
static const char *
reasoning_tenant(struct rpc_call *call)
{
	return rpc_call_identity(call);
}

/* Decodes a wire ProgramSpec into the core's plain spec (strings borrowed from the message). */
static void
reasoning_spec(const Certa__V1__ProgramSpec *in, struct submit_spec *out)
{
	memset(out, 0, sizeof *out);
	out->problem = in->problem;
	out->model = in->model;
	out->policy = in->policy;
	out->idempotency_key = in->idempotency_key;
	out->algorithm = (int)in->algorithm;
	out->n = in->n;
	out->token_budget = in->token_budget;
	out->priority = (int)in->priority;
	out->deadline_unix_ms = in->deadline_unix_ms;
	out->moe_top_p = in->moe_top_p;
	out->seed = in->seed;
	if (in->sampling != NULL) {
		out->has_sampling = true;
		out->temperature = in->sampling->temperature;
		out->top_p = in->sampling->top_p;
	}
}

/*
 * A refused quota (daemon/tenants.c tenants_admit: "quota LIMIT: ...; retry in N s") as
 * google.rpc details: QuotaFailure naming the tenant and the limit, RetryInfo when the quota
 * refills after a known delay.
 */
static void
reasoning_quota_details(struct rpc_call *call, const char *tenant, const char *err)
{
	char subject[192], desc[600];
	const char *retry = strstr(err, "retry in ");
	int64_t retry_ms = 0;
	int n = 0;

	snprintf(subject, sizeof subject, "tenant:%s", tenant);
	if (sscanf(err, "quota %127[a-z_]:%n", desc, &n) == 1 && n > 0)
		snprintf(desc + strlen(desc), sizeof desc - strlen(desc), ": %s", err + n + 1);
	else
		snprintf(desc, sizeof desc, "%s", err);
	if (retry != NULL) {
		double secs = atof(retry + strlen("retry in "));
		if (secs > 0)
			retry_ms = (int64_t)(secs * 1000);
	}
	(void)rpc_call_detail_quota(call, subject, desc, retry_ms);
}

static void
reasoning_submit(struct rpc_call *call, const ProtobufCMessage *msg, void *ctx)
{
	struct core *c = ctx;
	const Certa__V1__SubmitRequest *req = (const Certa__V1__SubmitRequest *)msg;
	struct submit_spec spec;
	char err[512] = "";
	int rc;

	if (req->program != NULL &&
	    sampling_check(req->program->sampling, "program.sampling", err, sizeof err) != 0) {
		rpc_call_fail(call, CERTA_EINVAL, "%s", err);
		return;
	}
	if (req->program != NULL)
		reasoning_spec(req->program, &spec);
	rc = submit_program(c, reasoning_tenant(call), req->program != NULL ? &spec : NULL, call,
	    err, sizeof err);
	if (rc == CERTA_ECAPACITY)
		reasoning_quota_details(call, reasoning_tenant(call), err);
	if (rc != 0)
		rpc_call_fail(call, rc, "%s", err[0] ? err : certa_strerror(rc));
}

static void
reasoning_watch(struct rpc_call *call, const ProtobufCMessage *msg, void *ctx)
{
	struct core *c = ctx;
	const Certa__V1__WatchRequest *req = (const Certa__V1__WatchRequest *)msg;
	int rc;

	if (req->program_id[0] == '\0') {
		rpc_call_fail(call, CERTA_EINVAL, "program_id is empty");
		return;
	}
	rc = queries_watch(c, reasoning_tenant(call), req->program_id, call);
	if (rc != 0)
		rpc_call_fail(call, rc, "program %s: %s", req->program_id, certa_strerror(rc));
}

static void
reasoning_get(struct rpc_call *call, const ProtobufCMessage *msg, void *ctx)
{
	struct core *c = ctx;
	const Certa__V1__GetRequest *req = (const Certa__V1__GetRequest *)msg;
	Certa__V1__Program *pm;
	int rc;

	if (req->program_id[0] == '\0') {
		rpc_call_fail(call, CERTA_EINVAL, "program_id is empty");
		return;
	}
	rc = queries_get(c, reasoning_tenant(call), req->program_id, &pm);
	if (rc != 0) {
		rpc_call_fail(call, rc, "program %s: %s", req->program_id, certa_strerror(rc));
		return;
	}
	rpc_call_reply(call, &pm->base);
	certa__v1__program__free_unpacked(pm, NULL);
}

static void
reasoning_cancel(struct rpc_call *call, const ProtobufCMessage *msg, void *ctx)
{
	struct core *c = ctx;
	const Certa__V1__CancelRequest *req = (const Certa__V1__CancelRequest *)msg;
	Certa__V1__CancelReply reply = CERTA__V1__CANCEL_REPLY__INIT;
	int rc, state = 0;

	if (req->program_id[0] == '\0') {
		rpc_call_fail(call, CERTA_EINVAL, "program_id is empty");
		return;
	}
	rc = queries_cancel(c, reasoning_tenant(call), req->program_id, &state);
	if (rc != 0) {
		rpc_call_fail(call, rc, "program %s: %s", req->program_id, certa_strerror(rc));
		return;
	}
	reply.state = (Certa__V1__ProgramState)state;
	rpc_call_reply(call, &reply.base);
}

/* A page token is the id of the last program of the previous page: "p-" and 18 lower-case
 * hex digits (daemon/core.c core_new_id). */
static bool
reasoning_page_token_valid(const char *t)
{
	size_t i;

	if (strncmp(t, "p-", 2) != 0 || strlen(t) != 20)
		return false;
	for (i = 2; i < 20; i++)
		if (!((t[i] >= '0' && t[i] <= '9') || (t[i] >= 'a' && t[i] <= 'f')))
			return false;
	return true;
}

static void
reasoning_list(struct rpc_call *call, const ProtobufCMessage *msg, void *ctx)
{
	struct core *c = ctx;
	const Certa__V1__ListRequest *req = (const Certa__V1__ListRequest *)msg;
	Certa__V1__ListReply reply;
	int rc;

	if (req->state < 0 || req->state > CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_FAILED) {
		rpc_call_fail(call, CERTA_EINVAL, "state %d is not a program state", (int)req->state);
		return;
	}
	if (req->page_token[0] != '\0' && !reasoning_page_token_valid(req->page_token)) {
		rpc_call_fail(call, CERTA_EINVAL, "page_token: not a next_page_token of a List "
		    "reply");
		return;
	}
	rc = queries_list(c, reasoning_tenant(call), req->state, req->page_size, req->page_token,
	    &reply);
	if (rc != 0) {
		rpc_call_fail(call, rc, "list: %s", certa_strerror(rc));
		return;
	}
	rpc_call_reply(call, &reply.base);
	queries_list_free(&reply);
}

struct reasoning_models {
	Certa__V1__ListModelsReply reply;
	Certa__V1__Model *items;
	size_t cap;
	int err;
};

static void
reasoning_model_add(void *arg, const char *model, uint32_t workers, uint32_t max_capacity)
{
	struct reasoning_models *m = arg;
	Certa__V1__Model *it;

	if (m->err != 0 || m->reply.n_models == m->cap) {
		m->err = -ENOMEM;
		return;
	}
	it = &m->items[m->reply.n_models];
	certa__v1__model__init(it);
	it->name = strdup(model);
	if (it->name == NULL) {
		m->err = -ENOMEM;
		return;
	}
	it->workers = workers;
	it->max_chains = max_capacity;
	m->reply.models[m->reply.n_models++] = it;
}

static void
reasoning_list_models(struct rpc_call *call, const ProtobufCMessage *msg, void *ctx)
{
	struct core *c = ctx;
	struct reasoning_models m;
	size_t i;

	(void)msg;
	memset(&m, 0, sizeof m);
	certa__v1__list_models_reply__init(&m.reply);
	m.cap = 256;
	m.items = calloc(m.cap, sizeof *m.items);
	m.reply.models = calloc(m.cap, sizeof *m.reply.models);
	if (m.items == NULL || m.reply.models == NULL)
		m.err = -ENOMEM;
	else
		pool_models(core_pool(c), reasoning_model_add, &m);
	if (m.err != 0)
		rpc_call_fail(call, m.err, "list models: %s", certa_strerror(m.err));
	else
		rpc_call_reply(call, &m.reply.base);
	for (i = 0; i < m.reply.n_models; i++)
		free(m.items[i].name);
	free(m.items);
	free(m.reply.models);
}

static const struct rpc_method reasoning_table[] = {
	{ "/certa.v1.Reasoning/Submit", RPC_SERVER_STREAM, &certa__v1__submit_request__descriptor,
	  reasoning_submit, AUTH_TENANT },
	{ "/certa.v1.Reasoning/Watch", RPC_SERVER_STREAM, &certa__v1__watch_request__descriptor,
	  reasoning_watch, AUTH_TENANT },
	{ "/certa.v1.Reasoning/Get", RPC_UNARY, &certa__v1__get_request__descriptor,
	  reasoning_get, AUTH_TENANT },
	{ "/certa.v1.Reasoning/Cancel", RPC_UNARY, &certa__v1__cancel_request__descriptor,
	  reasoning_cancel, AUTH_TENANT },
	{ "/certa.v1.Reasoning/List", RPC_UNARY, &certa__v1__list_request__descriptor,
	  reasoning_list, AUTH_TENANT },
	{ "/certa.v1.Reasoning/ListModels", RPC_UNARY, &certa__v1__list_models_request__descriptor,
	  reasoning_list_models, AUTH_TENANT },
};

const struct rpc_method *
reasoning_methods(size_t *n)
{
	*n = sizeof reasoning_table / sizeof reasoning_table[0];
	return reasoning_table;
}
