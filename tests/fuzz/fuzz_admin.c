/*
 * fuzz_admin.c — libFuzzer target for the Admin requests past decoding: what the handlers of
 * daemon/admin.c do with a decoded request, without a server.
 *
 * The first input byte picks a request; the rest is its wire encoding, decoded with
 * rpc_unpack.  Then, as the handler does (same nil checks, same order): CreateTenant ->
 * tenants_create, UpdateTenant -> tenants_update, DeleteTenant -> tenants_delete, RotateKey ->
 * tenants_rotate_key, RevokeKey -> tenants_revoke_key, SetPolicy -> policies_set,
 * RollbackPolicy -> policies_rollback, GetPolicy/PolicyHistory -> policies_get/_history, and
 * an authorization header (the decoded request's bytes as text) -> tenants_authenticate.  The
 * state is a real LMDB store in a private temporary directory (no fsync), with one tenant
 * "acme" created at start so that updates and keys have something to act on; it is wiped
 * every FUZZ_ADMIN_REOPEN inputs so policy history stays small.  Checks: a failure says why;
 * a created tenant can be read back and authenticates with its key.
 */
#include <grpc/byte_buffer.h>
#include <grpc/slice.h>
#include <protobuf-c/protobuf-c.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "certa/v1/admin.pb-c.h"
#include "daemon/policies.h"
#include "daemon/tenants.h"
#include "lib/error.h"
#include "lib/log.h"
#include "lib/rpc.h"
#include "scheduler/sched.h"
#include "store/store.h"
#include "tests/support/harness.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_ADMIN_REOPEN 2000

enum fuzz_admin_op {
	FUZZ_ADMIN_CREATE,
	FUZZ_ADMIN_UPDATE,
	FUZZ_ADMIN_DELETE,
	FUZZ_ADMIN_ROTATE,
	FUZZ_ADMIN_REVOKE,
	FUZZ_ADMIN_SET_POLICY,
	FUZZ_ADMIN_ROLLBACK,
	FUZZ_ADMIN_GET_POLICY,
	FUZZ_ADMIN_AUTH,
	FUZZ_ADMIN_NOPS
};

static const ProtobufCMessageDescriptor *const fuzz_admin_desc[FUZZ_ADMIN_NOPS] = {
	[FUZZ_ADMIN_CREATE] = &certa__v1__create_tenant_request__descriptor,
	[FUZZ_ADMIN_UPDATE] = &certa__v1__update_tenant_request__descriptor,
	[FUZZ_ADMIN_DELETE] = &certa__v1__tenant_ref__descriptor,
	[FUZZ_ADMIN_ROTATE] = &certa__v1__rotate_key_request__descriptor,
	[FUZZ_ADMIN_REVOKE] = &certa__v1__revoke_key_request__descriptor,
	[FUZZ_ADMIN_SET_POLICY] = &certa__v1__set_policy_request__descriptor,
	[FUZZ_ADMIN_ROLLBACK] = &certa__v1__rollback_policy_request__descriptor,
	[FUZZ_ADMIN_GET_POLICY] = &certa__v1__policy_ref__descriptor,
	[FUZZ_ADMIN_AUTH] = NULL,   /* raw text */
};

static struct {
	char *dir;
	struct store *st;
	struct tenants *ts;
	struct policies *ps;
	unsigned inputs;
	char acme_key[TENANTS_KEY_MAX];
} fuzz_admin;

static void
fuzz_admin_close(void)
{
	policies_free(fuzz_admin.ps);
	tenants_free(fuzz_admin.ts);
	store_close(fuzz_admin.st);
	fuzz_admin.ps = NULL;
	fuzz_admin.ts = NULL;
	fuzz_admin.st = NULL;
	if (fuzz_admin.dir != NULL) {
		harness_rmrf(fuzz_admin.dir);
		free(fuzz_admin.dir);
		fuzz_admin.dir = NULL;
	}
}

static void
fuzz_admin_open(void)
{
	struct store_options so = { .nosync = 1 };
	struct tenant_quota q = { .max_concurrent_programs = 1000 };
	struct sched_policy base;
	Certa__V1__Tenant t = CERTA__V1__TENANT__INIT;
	char err[512];

	sched_policy_default(&base);
	if (harness_tmpdir(&fuzz_admin.dir) != 0 ||
	    store_open(fuzz_admin.dir, &so, &fuzz_admin.st) != 0 ||
	    tenants_open(fuzz_admin.st, &q, &fuzz_admin.ts) != 0 ||
	    policies_open(fuzz_admin.st, &base, &fuzz_admin.ps) != 0)
		abort();
	t.name = "acme";
	t.weight = 2;
	if (tenants_create(fuzz_admin.ts, &t, fuzz_admin.acme_key, sizeof fuzz_admin.acme_key, err,
	    sizeof err) != 0)
		abort();
}

static void
fuzz_admin_atexit(void)
{
	fuzz_admin_close();
}

/* admin.c admin_policy_name: "" is the default policy, else the tenant must exist. */
static const char *
fuzz_admin_policy_name(const char *tenant)
{
	if (tenant == NULL || tenant[0] == '\0')
		return "default";
	return tenants_exists(fuzz_admin.ts, tenant) ? tenant : NULL;
}

static void
fuzz_admin_check_policy(const char *name)
{
	Certa__V1__Policy p;
	Certa__V1__PolicyHistoryReply h;

	if (policies_get(fuzz_admin.ps, name, &p) == 0)
		policies_pb_free(&p);
	if (policies_history(fuzz_admin.ps, name, &h) == 0)
		policies_history_free(&h);
}

static void
fuzz_admin_run(enum fuzz_admin_op op, const ProtobufCMessage *m)
{
	char err[512] = "", key[TENANTS_KEY_MAX], id[32];
	const char *name, *who;
	int rc = 0;

	switch (op) {
	case FUZZ_ADMIN_CREATE: {
		const Certa__V1__CreateTenantRequest *r = (const void *)m;
		Certa__V1__Tenant t;
		char auth[TENANTS_KEY_MAX + 8];

		if (r->tenant == NULL)
			return;
		rc = tenants_create(fuzz_admin.ts, r->tenant, key, sizeof key, err, sizeof err);
		if (rc == 0) {
			if (tenants_to_pb(fuzz_admin.ts, r->tenant->name, &t) != 0)
				abort();   /* a created tenant can be read back */
			tenants_pb_free(&t);
			snprintf(auth, sizeof auth, "Bearer %s", key);
			if (tenants_authenticate(fuzz_admin.ts, auth, &who) != 0 ||
			    strcmp(who, r->tenant->name) != 0)
				abort();   /* and its key names it */
			(void)tenants_delete(fuzz_admin.ts, r->tenant->name, policies_delete_txn,
			    r->tenant->name, err, sizeof err);
			return;
		}
		break;
	}
	case FUZZ_ADMIN_UPDATE: {
		const Certa__V1__UpdateTenantRequest *r = (const void *)m;

		if (r->tenant == NULL)
			return;
		rc = tenants_update(fuzz_admin.ts, r->tenant, r->fields, r->n_fields, err,
		    sizeof err);
		break;
	}
	case FUZZ_ADMIN_DELETE: {
		const Certa__V1__TenantRef *r = (const void *)m;

		if (strcmp(r->name, "acme") == 0)
			return;   /* keep the fixture tenant */
		rc = tenants_delete(fuzz_admin.ts, r->name, policies_delete_txn, r->name, err,
		    sizeof err);
		break;
	}
	case FUZZ_ADMIN_ROTATE: {
		const Certa__V1__RotateKeyRequest *r = (const void *)m;

		/* never revoke acme's fixture key */
		(void)tenants_rotate_key(fuzz_admin.ts, r->tenant, false, key, sizeof key, id,
		    sizeof id);
		return;
	}
	case FUZZ_ADMIN_REVOKE: {
		const Certa__V1__RevokeKeyRequest *r = (const void *)m;

		(void)tenants_revoke_key(fuzz_admin.ts, r->tenant, r->key_id);
		return;
	}
	case FUZZ_ADMIN_SET_POLICY: {
		const Certa__V1__SetPolicyRequest *r = (const void *)m;

		if ((name = fuzz_admin_policy_name(r->tenant)) == NULL || r->policy == NULL ||
		    r->policy->text[0] == '\0')
			return;
		rc = policies_set(fuzz_admin.ps, name, r->policy->text, "fuzz", err, sizeof err);
		fuzz_admin_check_policy(name);
		break;
	}
	case FUZZ_ADMIN_ROLLBACK: {
		const Certa__V1__RollbackPolicyRequest *r = (const void *)m;

		if ((name = fuzz_admin_policy_name(r->tenant)) == NULL)
			return;
		rc = policies_rollback(fuzz_admin.ps, name, r->version, "fuzz", err, sizeof err);
		fuzz_admin_check_policy(name);
		break;
	}
	case FUZZ_ADMIN_GET_POLICY: {
		const Certa__V1__PolicyRef *r = (const void *)m;

		if ((name = fuzz_admin_policy_name(r->tenant)) != NULL)
			fuzz_admin_check_policy(name);
		return;
	}
	default:
		abort();
	}
	/* Request errors come with a message (store and ENOMEM errors may not). */
	if (rc == CERTA_EINVAL && err[0] == '\0')
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	enum fuzz_admin_op op;
	ProtobufCMessage *m = NULL;
	const char *who;

	if (fuzz_admin.st == NULL) {
		/* Below LOG_LVL_ERR: nothing is logged while fuzzed. */
		log_init("fuzz", LOG_FORMAT_PLAIN, (enum log_level)(LOG_LVL_ERR - 1));
		if (fuzz_admin.inputs == 0)
			atexit(fuzz_admin_atexit);
		fuzz_admin_open();
	}
	if (size < 1 || size > 65536)
		return -1;
	op = (enum fuzz_admin_op)(data[0] % FUZZ_ADMIN_NOPS);
	data++;
	size--;
	if (op == FUZZ_ADMIN_AUTH) {
		char *auth = malloc(size + 1);

		if (auth == NULL)
			abort();
		memcpy(auth, data, size);
		auth[size] = '\0';
		(void)tenants_authenticate(fuzz_admin.ts, auth, &who);
		free(auth);
	} else {
		grpc_slice s = grpc_slice_from_copied_buffer((const char *)data, size);
		grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);

		grpc_slice_unref(s);
		if (rpc_unpack(bb, fuzz_admin_desc[op], &m) == 0) {
			fuzz_admin_run(op, m);
			protobuf_c_message_free_unpacked(m, NULL);
		}
		grpc_byte_buffer_destroy(bb);
	}
	if (++fuzz_admin.inputs % FUZZ_ADMIN_REOPEN == 0)
		fuzz_admin_close();
	return 0;
}
