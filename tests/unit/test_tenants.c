/* test_tenants.c — daemon/tenants: quotas, admission, accounting, keys, persistence (real LMDB). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <openssl/evp.h>

#include "daemon/policies.h"
#include "daemon/program.h"
#include "daemon/tenants.h"
#include "lib/error.h"
#include "lib/log.h"
#include "store/store.h"
#include "tests/support/tmpstore.h"

#define T0 1000000  /* a fixed "now" in ms */

struct fx {
	struct tmpstore *tmp;
	struct tenants *ts;
	char key[TENANTS_KEY_MAX];
	char err[512];
};

static const struct tenant_quota defaults = {
	.max_concurrent_programs = 4,
	.tokens_per_minute = 0,
	.max_budget_per_program = 100000,
	.max_sc_n = 16,
	.max_prompt_bytes = 4096,
};

static int
setup(void **state)
{
	struct fx *f = calloc(1, sizeof *f);

	assert_non_null(f);
	assert_int_equal(tmpstore_new("tenants", &f->tmp), 0);
	assert_int_equal(tenants_open(tmpstore_store(f->tmp), &defaults, &f->ts), 0);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;

	tenants_free(f->ts);
	tmpstore_free(f->tmp);
	free(f);
	return 0;
}

/* Creates tenant `name`; quota fields 0 fall back to the defaults. */
static void
create(struct fx *f, const char *name, const Certa__V1__Quota *q)
{
	Certa__V1__Tenant t = CERTA__V1__TENANT__INIT;

	t.name = (char *)name;
	t.quota = (Certa__V1__Quota *)q;
	assert_int_equal(tenants_create(f->ts, &t, f->key, sizeof f->key, f->err, sizeof f->err),
	    0);
}

static int
admit(struct fx *f, const char *name, uint32_t n, uint64_t budget, size_t prompt, int64_t now)
{
	f->err[0] = '\0';
	return tenants_admit(f->ts, name, n, budget, prompt, now, f->err, sizeof f->err);
}

static void
test_defaults_apply_when_quota_unset(void **state)
{
	struct fx *f = *state;

	create(f, "acme", NULL);
	assert_int_equal(admit(f, "acme", 16, 100000, 4096, T0), 0);
	assert_int_equal(admit(f, "acme", 17, 1000, 10, T0), CERTA_ECAPACITY);
	assert_non_null(strstr(f->err, "max_sc_n"));
	assert_int_equal(admit(f, "acme", 1, 100001, 10, T0), CERTA_ECAPACITY);
	assert_non_null(strstr(f->err, "max_budget_per_program"));
	assert_int_equal(admit(f, "acme", 1, 1000, 4097, T0), CERTA_ECAPACITY);
	assert_non_null(strstr(f->err, "max_prompt_bytes"));
}

static void
test_tenant_quota_overrides_defaults(void **state)
{
	struct fx *f = *state;
	Certa__V1__Quota q = CERTA__V1__QUOTA__INIT;

	q.max_sc_n = 2;
	q.max_prompt_bytes = 100000;
	create(f, "small", &q);
	assert_int_equal(admit(f, "small", 2, 1000, 10, T0), 0);
	assert_int_equal(admit(f, "small", 3, 1000, 10, T0), CERTA_ECAPACITY);
	assert_non_null(strstr(f->err, "max_sc_n"));
	/* Raised above the default for this tenant only. */
	assert_int_equal(admit(f, "small", 1, 1000, 50000, T0), 0);
	/* Unset fields still take the defaults. */
	assert_int_equal(admit(f, "small", 1, 100001, 10, T0), CERTA_ECAPACITY);
}

static void
test_concurrent_programs_counted_by_state(void **state)
{
	struct fx *f = *state;
	Certa__V1__Quota q = CERTA__V1__QUOTA__INIT;

	q.max_concurrent_programs = 2;
	create(f, "busy", &q);
	tenants_program_state(f->ts, "busy", 0, PROGRAM_QUEUED);
	tenants_program_state(f->ts, "busy", 0, PROGRAM_QUEUED);
	tenants_program_state(f->ts, "busy", PROGRAM_QUEUED, PROGRAM_RUNNING);
	assert_int_equal(tenants_live(f->ts, "busy"), 2);
	assert_int_equal(admit(f, "busy", 1, 1000, 10, T0), CERTA_ECAPACITY);
	assert_non_null(strstr(f->err, "max_concurrent_programs"));
	tenants_program_state(f->ts, "busy", PROGRAM_RUNNING, PROGRAM_FINISHED);
	assert_int_equal(tenants_live(f->ts, "busy"), 1);
	assert_int_equal(tenants_stats(f->ts, "busy")->finished, 1);
	assert_int_equal(admit(f, "busy", 1, 1000, 10, T0), 0);
}

/* Tokens per minute counts what was served in the last minute (a token counts until 60 s
 * after the end of its second): refused (admission) and held back (tenants_throttle,
 * dispatch) until those tokens leave the window; the time held back is counted. */
static void
test_tokens_per_minute_window_frees(void **state)
{
	struct fx *f = *state;
	Certa__V1__Quota q = CERTA__V1__QUOTA__INIT;

	q.tokens_per_minute = 600;
	create(f, "metered", &q);
	create(f, "free", NULL);
	assert_int_equal(admit(f, "metered", 1, 1000, 10, T0), 0);
	assert_int_equal(tenants_throttle(f->ts, "metered", T0), 0);
	tenants_charge(f->ts, "metered", 400, T0);
	assert_int_equal(tenants_throttle(f->ts, "metered", T0 + 500), 0);
	tenants_charge(f->ts, "metered", 500, T0 + 10000);
	assert_int_equal(tenants_stats(f->ts, "metered")->tokens_used, 900);
	assert_int_equal(admit(f, "metered", 1, 1000, 10, T0 + 10000), CERTA_ECAPACITY);
	assert_non_null(strstr(f->err, "tokens_per_minute"));
	assert_non_null(strstr(f->err, "retry in 51 s"));
	/* 900 served: held back until the first 400 leave the window (T0 + 61 s). */
	assert_int_equal(tenants_throttle(f->ts, "metered", T0 + 10000), 51000);
	assert_int_equal(tenants_throttle(f->ts, "metered", T0 + 60999), 1);
	assert_int_equal(admit(f, "metered", 1, 1000, 10, T0 + 60999), CERTA_ECAPACITY);
	assert_int_equal(tenants_throttled_ms(f->ts, "metered", T0 + 60999), 50999);
	/* Others are not affected. */
	tenants_charge(f->ts, "free", 100000, T0 + 10000);
	assert_int_equal(tenants_throttle(f->ts, "free", T0 + 10000), 0);
	assert_int_equal(tenants_throttled_ms(f->ts, "free", T0 + 60999), 0);
	/* 500 left in the window: under 600, open again; the throttled period ends. */
	assert_int_equal(tenants_throttle(f->ts, "metered", T0 + 61000), 0);
	assert_int_equal(admit(f, "metered", 1, 1000, 10, T0 + 61000), 0);
	assert_int_equal(tenants_throttled_ms(f->ts, "metered", T0 + 90000), 51000);
	/* And open again once the 500 have left too. */
	tenants_charge(f->ts, "metered", 599, T0 + 62000);
	assert_int_equal(tenants_throttle(f->ts, "metered", T0 + 62000), 9000);
	assert_int_equal(tenants_throttle(f->ts, "metered", T0 + 71000), 0);
}

static void
test_unknown_tenant_refused(void **state)
{
	struct fx *f = *state;

	assert_false(tenants_exists(f->ts, "ghost"));
	assert_int_equal(admit(f, "ghost", 1, 1000, 10, T0), CERTA_EAUTH);
}

static void
test_bad_name_refused(void **state)
{
	struct fx *f = *state;
	Certa__V1__Tenant t = CERTA__V1__TENANT__INIT;

	t.name = (char *)"Bad Name";
	assert_int_equal(tenants_create(f->ts, &t, f->key, sizeof f->key, f->err, sizeof f->err),
	    CERTA_EINVAL);
	assert_false(tenants_exists(f->ts, "Bad Name"));
}

static void
test_keys_and_quota_survive_reopen(void **state)
{
	struct fx *f = *state;
	Certa__V1__Quota q = CERTA__V1__QUOTA__INIT;
	char auth[TENANTS_KEY_MAX + 16];
	const char *who = NULL;

	q.max_sc_n = 3;
	create(f, "durable", &q);
	snprintf(auth, sizeof auth, "Bearer %s", f->key);
	tenants_free(f->ts);
	f->ts = NULL;
	assert_int_equal(tmpstore_reopen(f->tmp), 0);
	assert_int_equal(tenants_open(tmpstore_store(f->tmp), &defaults, &f->ts), 0);
	assert_true(tenants_exists(f->ts, "durable"));
	assert_int_equal(tenants_authenticate(f->ts, auth, &who), 0);
	assert_string_equal(who, "durable");
	auth[strlen(auth) - 1] ^= 1;
	assert_int_equal(tenants_authenticate(f->ts, auth, &who), CERTA_EAUTH);
	assert_int_equal(admit(f, "durable", 4, 1000, 10, T0), CERTA_ECAPACITY);
}

static void
reopen(struct fx *f)
{
	tenants_free(f->ts);
	f->ts = NULL;
	assert_int_equal(tmpstore_reopen(f->tmp), 0);
	assert_int_equal(tenants_open(tmpstore_store(f->tmp), &defaults, &f->ts), 0);
}

/* A uid is non-zero, survives a restart, and a tenant created again under the same name gets
 * another one. */
static void
test_uid_fixed_and_new_on_recreate(void **state)
{
	struct fx *f = *state;
	uint64_t u1 = 0, u1b = 0, u2 = 0, other = 0;

	create(f, "bravo", NULL);
	create(f, "charlie", NULL);
	assert_int_equal(tenants_uid(f->ts, "bravo", &u1), 0);
	assert_int_equal(tenants_uid(f->ts, "charlie", &other), 0);
	assert_true(u1 != 0);
	assert_true(other != 0 && other != u1);
	assert_int_equal(tenants_uid(f->ts, "nobody", &u2), CERTA_ENOTFOUND);
	reopen(f);
	assert_int_equal(tenants_uid(f->ts, "bravo", &u1b), 0);
	assert_true(u1b == u1);
	assert_int_equal(tenants_delete(f->ts, "bravo", NULL, NULL, f->err, sizeof f->err), 0);
	assert_int_equal(tenants_uid(f->ts, "bravo", &u2), CERTA_ENOTFOUND);
	create(f, "bravo", NULL);
	assert_int_equal(tenants_uid(f->ts, "bravo", &u2), 0);
	assert_true(u2 != 0 && u2 != u1);
	reopen(f);
	assert_int_equal(tenants_uid(f->ts, "bravo", &u1b), 0);
	assert_true(u1b == u2);
}

static int
put_legacy_tenant(struct store_txn *txn, void *arg)
{
	Certa__V1__TenantRecord rec = CERTA__V1__TENANT_RECORD__INIT;
	Certa__V1__Tenant t = CERTA__V1__TENANT__INIT;

	t.name = arg;
	t.weight = 1;
	rec.tenant = &t;   /* no uid: a record written before uids existed */
	return store_put(txn, STORE_DB_TENANTS, arg, &rec.base);
}

/* A tenant stored before uids keeps uid 0 (and with it its programs and keys), also after a
 * change is saved. */
static void
test_legacy_tenant_keeps_uid_zero(void **state)
{
	struct fx *f = *state;
	Certa__V1__Tenant t = CERTA__V1__TENANT__INIT;
	char *fields[] = { (char *)"weight" };
	uint64_t uid = 1;

	assert_int_equal(store_update(tmpstore_store(f->tmp), put_legacy_tenant, "old"), 0);
	reopen(f);
	assert_int_equal(tenants_uid(f->ts, "old", &uid), 0);
	assert_true(uid == 0);
	t.name = (char *)"old";
	t.weight = 7;
	assert_int_equal(tenants_update(f->ts, &t, fields, 1, f->err, sizeof f->err), 0);
	reopen(f);
	uid = 1;
	assert_int_equal(tenants_uid(f->ts, "old", &uid), 0);
	assert_true(uid == 0);
	assert_int_equal(tenants_weight(f->ts, "old"), 7);
}

/* Bearer header for key. */
static void
bearer(char *out, size_t len, const char *key)
{
	snprintf(out, len, "Bearer %s", key);
}

/* Many tenants, keys rotated (the others revoked) and tenants deleted: every live key finds
 * its own tenant, revoked keys and deleted tenants' keys do not, before and after a reopen. */
static void
test_keys_across_many_tenants(void **state)
{
	enum { N = 300 };
	struct fx *f = *state;
	static char keys[N][TENANTS_KEY_MAX + 16], old[N][TENANTS_KEY_MAX + 16];
	char name[32], id[32], key[TENANTS_KEY_MAX];
	const char *who;
	size_t i;
	int pass;

	for (i = 0; i < N; i++) {
		snprintf(name, sizeof name, "tenant-%zu", i);
		create(f, name, NULL);
		bearer(keys[i], sizeof keys[i], f->key);
		old[i][0] = '\0';
	}
	for (i = 0; i < N; i += 3) {
		snprintf(name, sizeof name, "tenant-%zu", i);
		memcpy(old[i], keys[i], sizeof old[i]);
		assert_int_equal(tenants_rotate_key(f->ts, name, true, key, sizeof key, id,
		    sizeof id), 0);
		bearer(keys[i], sizeof keys[i], key);
	}
	for (i = 1; i < N; i += 7) {
		snprintf(name, sizeof name, "tenant-%zu", i);
		assert_int_equal(tenants_delete(f->ts, name, NULL, NULL, f->err, sizeof f->err), 0);
	}
	for (pass = 0; pass < 2; pass++) {
		for (i = 0; i < N; i++) {
			snprintf(name, sizeof name, "tenant-%zu", i);
			who = NULL;
			if (i % 7 == 1) {
				assert_false(tenants_exists(f->ts, name));
				assert_int_equal(tenants_authenticate(f->ts, keys[i], &who), CERTA_EAUTH);
				continue;
			}
			assert_int_equal(tenants_authenticate(f->ts, keys[i], &who), 0);
			assert_string_equal(who, name);
			assert_int_equal(tenants_weight(f->ts, name), 1);
			if (old[i][0] != '\0')
				assert_int_equal(tenants_authenticate(f->ts, old[i], &who), CERTA_EAUTH);
		}
		reopen(f);
	}
}

/* A stored tenant with one key (id, the key's SHA-256). */
struct keyed_tenant {
	const char *name, *id, *key;
};

static int
put_keyed_tenant(struct store_txn *txn, void *arg)
{
	const struct keyed_tenant *kt = arg;
	Certa__V1__TenantRecord rec = CERTA__V1__TENANT_RECORD__INIT;
	Certa__V1__Tenant t = CERTA__V1__TENANT__INIT;
	Certa__V1__KeyHash kh = CERTA__V1__KEY_HASH__INIT, *khs[1] = { &kh };
	uint8_t h[32];
	unsigned int len = 32;

	EVP_Digest(kt->key, strlen(kt->key), h, &len, EVP_sha256(), NULL);
	t.name = (char *)kt->name;
	t.weight = 1;
	kh.key_id = (char *)kt->id;
	kh.sha256.data = h;
	kh.sha256.len = 32;
	rec.tenant = &t;
	rec.uid = 1 + strlen(kt->name);
	rec.keys = khs;
	rec.n_keys = 1;
	return store_put(txn, STORE_DB_TENANTS, kt->name, &rec.base);
}

/* Two stored tenants whose keys share an id (ids were once checked only within a tenant):
 * each key still authenticates as its own tenant, and a wrong secret as neither. */
static void
test_shared_key_id_authenticates_each(void **state)
{
	struct fx *f = *state;
	struct keyed_tenant a = { "alpha", "0badc0de", "certa_0badc0de_aaaa" },
	    b = { "beta", "0badc0de", "certa_0badc0de_bbbb" };
	const char *who = NULL;

	assert_int_equal(store_update(tmpstore_store(f->tmp), put_keyed_tenant, &a), 0);
	assert_int_equal(store_update(tmpstore_store(f->tmp), put_keyed_tenant, &b), 0);
	reopen(f);
	assert_int_equal(tenants_authenticate(f->ts, "Bearer certa_0badc0de_aaaa", &who), 0);
	assert_string_equal(who, "alpha");
	assert_int_equal(tenants_authenticate(f->ts, "Bearer certa_0badc0de_bbbb", &who), 0);
	assert_string_equal(who, "beta");
	assert_int_equal(tenants_authenticate(f->ts, "Bearer certa_0badc0de_cccc", &who),
	    CERTA_EAUTH);
	/* Deleting one leaves the other's key working. */
	assert_int_equal(tenants_delete(f->ts, "alpha", NULL, NULL, f->err, sizeof f->err), 0);
	assert_int_equal(tenants_authenticate(f->ts, "Bearer certa_0badc0de_bbbb", &who), 0);
	assert_string_equal(who, "beta");
	assert_int_equal(tenants_authenticate(f->ts, "Bearer certa_0badc0de_aaaa", &who),
	    CERTA_EAUTH);
}

static int
fail_hook(struct store_txn *txn, void *arg)
{
	(void)txn;
	(*(int *)arg)++;
	return CERTA_ESTORE;
}

/* The hook runs in the deleting transaction: its failure keeps the tenant, in memory and in
 * the store. */
static void
test_delete_hook_failure_keeps_tenant(void **state)
{
	struct fx *f = *state;
	int calls = 0;

	create(f, "bravo", NULL);
	assert_int_equal(tenants_delete(f->ts, "bravo", fail_hook, &calls, f->err,
	    sizeof f->err), CERTA_ESTORE);
	assert_int_equal(calls, 1);
	assert_true(tenants_exists(f->ts, "bravo"));
	reopen(f);
	assert_true(tenants_exists(f->ts, "bravo"));
}

/* Deleting a tenant with policies_delete_txn removes its current policy and audit trail (and
 * nothing of another name sharing its prefix); the name falls back to the default. */
static void
test_delete_takes_policies_along(void **state)
{
	struct fx *f = *state;
	struct sched_policy base;
	struct policies *ps;
	Certa__V1__PolicyHistoryReply h;
	Certa__V1__Policy p, d;

	sched_policy_default(&base);
	assert_int_equal(policies_open(tmpstore_store(f->tmp), &base, &ps), 0);
	create(f, "bravo", NULL);
	create(f, "bravo2", NULL);
	assert_int_equal(policies_set(ps, "bravo", "step_tokens = 128\n", "test", f->err,
	    sizeof f->err), 0);
	assert_int_equal(policies_set(ps, "bravo", "step_tokens = 256\n", "test", f->err,
	    sizeof f->err), 0);
	assert_int_equal(policies_set(ps, "bravo2", "step_tokens = 128\n", "test", f->err,
	    sizeof f->err), 0);
	assert_int_equal(policies_delete_txn(NULL, (char *)"default"), -EINVAL);

	assert_int_equal(tenants_delete(f->ts, "bravo", policies_delete_txn, (char *)"bravo",
	    f->err, sizeof f->err), 0);
	policies_forget(ps, "bravo");
	assert_true(policies_effective(ps, "bravo", "")->step_tokens == base.step_tokens);
	assert_true(policies_effective(ps, "bravo2", "")->step_tokens == 128);

	/* From the store too: a fresh load and the audit trail. */
	policies_free(ps);
	assert_int_equal(policies_open(tmpstore_store(f->tmp), &base, &ps), 0);
	assert_int_equal(policies_history(ps, "bravo", &h), 0);
	assert_int_equal(h.n_entries, 0);
	policies_history_free(&h);
	assert_int_equal(policies_history(ps, "bravo2", &h), 0);
	assert_int_equal(h.n_entries, 1);
	policies_history_free(&h);
	assert_int_equal(policies_get(ps, "bravo", &p), 0);
	assert_int_equal(policies_get(ps, "default", &d), 0);
	assert_int_equal(p.version, 0);
	assert_string_equal(p.text, d.text);
	policies_pb_free(&p);
	policies_pb_free(&d);
	policies_free(ps);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_defaults_apply_when_quota_unset, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tenant_quota_overrides_defaults, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_programs_counted_by_state, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_tokens_per_minute_window_frees, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_tenant_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_name_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_keys_and_quota_survive_reopen, setup, teardown),
		cmocka_unit_test_setup_teardown(test_uid_fixed_and_new_on_recreate, setup, teardown),
		cmocka_unit_test_setup_teardown(test_legacy_tenant_keeps_uid_zero, setup, teardown),
		cmocka_unit_test_setup_teardown(test_delete_hook_failure_keeps_tenant, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_delete_takes_policies_along, setup, teardown),
		cmocka_unit_test_setup_teardown(test_keys_across_many_tenants, setup, teardown),
		cmocka_unit_test_setup_teardown(test_shared_key_id_authenticates_each, setup,
		    teardown),
	};

	log_init("test_tenants", LOG_FORMAT_PLAIN, LOG_LVL_WARN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
