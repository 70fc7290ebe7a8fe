/* test_tenants.c — daemon/tenants: quotas, admission, accounting, keys, persistence (real LMDB). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "daemon/program.h"
#include "daemon/tenants.h"
#include "lib/error.h"
#include "lib/log.h"
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
	};

	log_init("test_tenants", LOG_FORMAT_PLAIN, LOG_LVL_WARN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
