/* test_policies.c — daemon/policies: versions, audit, rollback, precedence, persistence
 * (real LMDB). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "daemon/policies.h"
#include "lib/error.h"
#include "lib/log.h"
#include "scheduler/sched.h"
#include "tests/support/tmpstore.h"

struct fx {
	struct tmpstore *tmp;
	struct policies *ps;
	struct sched_policy base;
	char err[512];
};

static int
setup(void **state)
{
	struct fx *f = calloc(1, sizeof *f);

	assert_non_null(f);
	sched_policy_default(&f->base);
	assert_int_equal(tmpstore_new("policies", &f->tmp), 0);
	assert_int_equal(policies_open(tmpstore_store(f->tmp), &f->base, &f->ps), 0);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;

	policies_free(f->ps);
	tmpstore_free(f->tmp);
	free(f);
	return 0;
}

static void
set(struct fx *f, const char *name, const char *text, const char *who)
{
	assert_int_equal(policies_set(f->ps, name, text, who, f->err, sizeof f->err), 0);
}

static void
test_base_applies_without_stored_policy(void **state)
{
	struct fx *f = *state;
	const struct sched_policy *p = policies_effective(f->ps, "acme", NULL);

	assert_int_equal(p->step_tokens, f->base.step_tokens);
	assert_int_equal(p->default_budget, f->base.default_budget);
}

static void
test_versions_and_audit(void **state)
{
	struct fx *f = *state;
	Certa__V1__PolicyHistoryReply h;
	Certa__V1__Policy cur;

	set(f, "acme", "step_tokens = 32\n", "alice");
	set(f, "acme", "default_budget = 2048\n", "bob");
	/* The second change applies on top of the first. */
	assert_int_equal(policies_effective(f->ps, "acme", NULL)->step_tokens, 32);
	assert_int_equal(policies_effective(f->ps, "acme", NULL)->default_budget, 2048);
	assert_int_equal(policies_get(f->ps, "acme", &cur), 0);
	assert_int_equal(cur.version, 2);
	assert_string_equal(cur.updated_by, "bob");
	policies_pb_free(&cur);
	assert_int_equal(policies_history(f->ps, "acme", &h), 0);
	assert_int_equal(h.n_entries, 2);
	assert_int_equal(h.entries[0]->version, 1);
	assert_string_equal(h.entries[0]->who, "alice");
	assert_int_equal(h.entries[1]->version, 2);
	assert_string_equal(h.entries[1]->who, "bob");
	assert_non_null(strstr(h.entries[1]->old_policy->text, "step_tokens = 32"));
	policies_history_free(&h);
}

static void
test_invalid_text_changes_nothing(void **state)
{
	struct fx *f = *state;
	uint64_t gen = policies_generation(f->ps);

	assert_int_equal(policies_set(f->ps, "acme", "step_tokens = 0\n", "eve", f->err,
	    sizeof f->err), CERTA_EINVAL);
	assert_non_null(strstr(f->err, "step_tokens"));
	assert_int_equal(policies_set(f->ps, "acme", "no_such_key = 1\n", "eve", f->err,
	    sizeof f->err), CERTA_EINVAL);
	assert_int_equal(policies_generation(f->ps), gen);
	assert_int_equal(policies_effective(f->ps, "acme", NULL)->step_tokens,
	    f->base.step_tokens);
}

static void
test_generation_moves_with_every_version(void **state)
{
	struct fx *f = *state;
	uint64_t g0 = policies_generation(f->ps);

	set(f, "acme", "step_tokens = 32\n", "alice");
	assert_true(policies_generation(f->ps) > g0);
	g0 = policies_generation(f->ps);
	policies_set_base(f->ps, &f->base);
	assert_true(policies_generation(f->ps) > g0);
}

static void
test_rollback_is_a_new_version(void **state)
{
	struct fx *f = *state;
	Certa__V1__Policy cur;

	set(f, "acme", "step_tokens = 32\n", "alice");
	set(f, "acme", "step_tokens = 128\n", "bob");
	assert_int_equal(policies_rollback(f->ps, "acme", 1, "carol", f->err, sizeof f->err), 0);
	assert_int_equal(policies_effective(f->ps, "acme", NULL)->step_tokens, 32);
	assert_int_equal(policies_get(f->ps, "acme", &cur), 0);
	assert_int_equal(cur.version, 3);
	policies_pb_free(&cur);
	assert_int_equal(policies_rollback(f->ps, "acme", 42, "carol", f->err, sizeof f->err),
	    CERTA_ENOTFOUND);
}

static void
test_precedence_ref_tenant_default_base(void **state)
{
	struct fx *f = *state;

	set(f, "default", "step_tokens = 48\n", "ops");
	assert_int_equal(policies_effective(f->ps, "acme", NULL)->step_tokens, 48);
	set(f, "acme", "step_tokens = 96\n", "ops");
	set(f, "shared", "step_tokens = 160\n", "ops");
	assert_int_equal(policies_effective(f->ps, "acme", NULL)->step_tokens, 96);
	assert_int_equal(policies_effective(f->ps, "acme", "shared")->step_tokens, 160);
	assert_int_equal(policies_effective(f->ps, "other", NULL)->step_tokens, 48);
}

static void
test_versions_survive_reopen(void **state)
{
	struct fx *f = *state;
	Certa__V1__PolicyHistoryReply h;

	set(f, "acme", "step_tokens = 32\n", "alice");
	set(f, "acme", "step_tokens = 128\n", "bob");
	policies_free(f->ps);
	f->ps = NULL;
	assert_int_equal(tmpstore_reopen(f->tmp), 0);
	assert_int_equal(policies_open(tmpstore_store(f->tmp), &f->base, &f->ps), 0);
	assert_int_equal(policies_effective(f->ps, "acme", NULL)->step_tokens, 128);
	assert_int_equal(policies_history(f->ps, "acme", &h), 0);
	assert_int_equal(h.n_entries, 2);
	policies_history_free(&h);
	set(f, "acme", "step_tokens = 64\n", "carol");
	assert_int_equal(policies_history(f->ps, "acme", &h), 0);
	assert_int_equal(h.n_entries, 3);
	assert_int_equal(h.entries[2]->version, 3);
	policies_history_free(&h);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_base_applies_without_stored_policy, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_versions_and_audit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_invalid_text_changes_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_generation_moves_with_every_version, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_rollback_is_a_new_version, setup, teardown),
		cmocka_unit_test_setup_teardown(test_precedence_ref_tenant_default_base, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_versions_survive_reopen, setup, teardown),
	};

	log_init("test_policies", LOG_FORMAT_PLAIN, LOG_LVL_WARN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
