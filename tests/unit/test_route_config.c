/*
 * test_route_config.c — certad's [route] configuration (daemon/route.h route_config_build:
 * pool lines over the routing policy, tenant rules, off by default, errors) and the program
 * helpers expert routing uses (program_resize_chains for fork and switch, program_keep_chains
 * for drop, the routing record round trip through ProgramRecord).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "daemon/program.h"
#include "daemon/route.h"
#include "lib/error.h"

static void
test_off_without_pools_or_policy(void **state)
{
	struct route_config cfg;
	char err[256];

	(void)state;
	assert_int_equal(route_config_build(NULL, 0, NULL, NULL, 0, NULL, 0, &cfg, err,
	    sizeof err), 0);
	assert_false(cfg.enabled);
	route_config_free(&cfg);
}

static void
test_pool_lines_override_and_add(void **state)
{
	static const char *const pools[] = {
		"qwen3-8b my-qwen 2.5",          /* override the built-in pool of that name */
		"big some-32b-model 4",          /* a new pool */
		"small some-1b-model",           /* cost 1 when absent */
		"mix some-moe-model 2 moe",      /* a mixture of experts: its top-p may rise */
		"mix2 other-moe-model moe",      /* ... cost 1 */
	};
	struct route_config cfg;
	struct router_policy def;
	char err[256];
	int q, b, s;

	(void)state;
	router_policy_default(&def);
	assert_int_equal(route_config_build(NULL, 0, NULL, pools, 5, NULL, 0, &cfg, err,
	    sizeof err), 0);
	assert_true(cfg.enabled);
	assert_int_equal(cfg.policy.npools, def.npools + 4);
	q = router_pool_find(&cfg.policy, "qwen3-8b");
	b = router_pool_find(&cfg.policy, "big");
	s = router_pool_find(&cfg.policy, "small");
	assert_int_equal(q, router_pool_find(&def, "qwen3-8b"));
	assert_string_equal(cfg.policy.pools[q].model, "my-qwen");
	assert_true(cfg.policy.pools[q].cost == 2.5);
	assert_string_equal(cfg.policy.pools[b].model, "some-32b-model");
	assert_true(cfg.policy.pools[b].cost == 4);
	assert_true(cfg.policy.pools[s].cost == 1);
	assert_false(cfg.policy.pools[s].moe || cfg.policy.pools[q].moe);
	b = router_pool_find(&cfg.policy, "mix");
	assert_true(cfg.policy.pools[b].moe && cfg.policy.pools[b].cost == 2);
	b = router_pool_find(&cfg.policy, "mix2");
	assert_true(cfg.policy.pools[b].moe && cfg.policy.pools[b].cost == 1);
	/* The ladder is the built-in one, on the overridden pool. */
	assert_int_equal(cfg.policy.nrungs, def.nrungs);
	assert_int_equal(cfg.policy.rungs[0].pool, def.rungs[0].pool);
	route_config_free(&cfg);
}

static void
test_policy_text_then_pools(void **state)
{
	static const char text[] =
	    "pool.a = model-a 1\n"
	    "pool.b = model-b 4\n"
	    "rung.0 = a cot 1\n"
	    "rung.1 = b sc 3\n";
	static const char *const pools[] = { "b model-b2 8" };
	struct route_config cfg;
	char err[256];

	(void)state;
	assert_int_equal(route_config_build(text, strlen(text), "r.policy", pools, 1, NULL, 0,
	    &cfg, err, sizeof err), 0);
	assert_true(cfg.enabled);
	assert_int_equal(cfg.policy.nrungs, 2);
	assert_string_equal(cfg.policy.pools[cfg.policy.rungs[1].pool].model, "model-b2");
	route_config_free(&cfg);
	/* A policy file alone turns routing on. */
	assert_int_equal(route_config_build(text, strlen(text), "r.policy", NULL, 0, NULL, 0,
	    &cfg, err, sizeof err), 0);
	assert_true(cfg.enabled);
	route_config_free(&cfg);
}

static void
test_tenant_rules(void **state)
{
	static const char *const pools[] = { "r1-7b m1 1", "qwen3-8b m2 1" };
	static const char *const tenants[] = {
		"alice pools=qwen3-8b no-hints",
		"bob no-escalation",
		"carol pools=r1-7b,qwen3-8b",
	};
	struct route_config cfg;
	struct router_tenant t;
	char err[256];
	int q, r;

	(void)state;
	assert_int_equal(route_config_build(NULL, 0, NULL, pools, 2, tenants, 3, &cfg, err,
	    sizeof err), 0);
	q = router_pool_find(&cfg.policy, "qwen3-8b");
	r = router_pool_find(&cfg.policy, "r1-7b");
	t = route_config_tenant(&cfg, "alice");
	assert_int_equal(t.pool_mask, 1u << q);
	assert_true(t.no_hints);
	assert_false(t.no_escalation);
	t = route_config_tenant(&cfg, "bob");
	assert_int_equal(t.pool_mask, 0);
	assert_false(t.no_hints);
	assert_true(t.no_escalation);
	t = route_config_tenant(&cfg, "carol");
	assert_int_equal(t.pool_mask, (1u << q) | (1u << r));
	t = route_config_tenant(&cfg, "dave");   /* no rules: everything */
	assert_int_equal(t.pool_mask, 0);
	assert_false(t.no_hints || t.no_escalation);
	route_config_free(&cfg);
}

static void
expect_error(const char *text, const char *const *pools, size_t npools,
    const char *const *tenants, size_t ntenants, const char *want)
{
	struct route_config cfg;
	char err[256] = "";

	memset(&cfg, 0x5a, sizeof cfg);
	assert_int_equal(route_config_build(text, text != NULL ? strlen(text) : 0, "r.policy",
	    pools, npools, tenants, ntenants, &cfg, err, sizeof err), CERTA_ECONFIG);
	if (strstr(err, want) == NULL)
		fail_msg("error '%s' does not contain '%s'", err, want);
}

static void
test_errors(void **state)
{
	static const char *const bad_pool1[] = { "lonely" };
	static const char *const bad_pool2[] = { "p m 1 extra" };
	static const char *const bad_pool3[] = { "p m -1" };
	static const char *const bad_pool4[] = { "p m x" };
	static const char *const bad_pool5[] = { "p m 1 dense" };
	static const char *const bad_pool6[] = { "p m 1 moe x" };
	static const char *const ok_pool[] = { "p m 1" };
	static const char *const bad_t1[] = { "alice pools=nope" };
	static const char *const bad_t2[] = { "alice sometimes" };
	static const char *const bad_t3[] = { "alice", "alice no-hints" };
	static const char *const bad_t4[] = { "" };

	(void)state;
	expect_error(NULL, bad_pool1, 1, NULL, 0, "want NAME MODEL [COST]");
	expect_error(NULL, bad_pool2, 1, NULL, 0, "want NAME MODEL [COST]");
	expect_error(NULL, bad_pool3, 1, NULL, 0, "cost");
	expect_error(NULL, bad_pool4, 1, NULL, 0, "want NAME MODEL [COST]");
	expect_error(NULL, bad_pool5, 1, NULL, 0, "want NAME MODEL [COST] [moe]");
	expect_error(NULL, bad_pool6, 1, NULL, 0, "want NAME MODEL [COST] [moe]");
	expect_error(NULL, ok_pool, 1, bad_t1, 1, "no pool 'nope'");
	expect_error(NULL, ok_pool, 1, bad_t2, 1, "unknown word 'sometimes'");
	expect_error(NULL, ok_pool, 1, bad_t3, 2, "listed twice");
	expect_error(NULL, ok_pool, 1, bad_t4, 1, "empty line");
	expect_error("rung.0 = nosuchpool cot 1\n", NULL, 0, NULL, 0, "r.policy:1");
}

/* Fork keeps chain 0 and adds empty chains; switch restarts them, their tokens spent; drop
 * keeps the chosen ones in order. */
static void
test_program_chain_reshaping(void **state)
{
	struct program *p = program_new("p1", "t", "problem", SCHED_ALGO_COT, 1, 1000);

	(void)state;
	assert_non_null(p);
	assert_int_equal(program_chain_append(&p->chains[0], "abc", 100, "7", 5, NULL, false,
	    NULL, false), 0);
	assert_int_equal(program_resize_chains(p, 3, true), 0);
	assert_int_equal(p->n, 3);
	assert_string_equal(p->chains[0].text, "abc");
	assert_int_equal(p->chains[0].tokens, 100);
	assert_int_equal(p->chains[2].index, 2);
	assert_int_equal(p->chains[2].tokens, 0);
	assert_true(p->chains[2].dirty);
	assert_int_equal(program_tokens(p), 100);
	assert_int_equal(program_resize_chains(p, 2, true), CERTA_EINVAL);  /* no shrinking */
	assert_int_equal(program_chain_append(&p->chains[2], "xy", 40, "8", 3, NULL, false,
	    NULL, false), 0);
	/* drop chain 1: chains 0 and 2 remain, as 0 and 1 */
	assert_int_equal(program_keep_chains(p, 0x5), 0);
	assert_int_equal(p->n, 2);
	assert_string_equal(p->chains[1].text, "xy");
	assert_int_equal(p->chains[1].index, 1);
	assert_int_equal(program_keep_chains(p, 0), CERTA_EINVAL);
	assert_int_equal(program_tokens(p), 140);
	/* switch: 3 fresh chains; 140 tokens and 8 probe tokens spent */
	assert_int_equal(program_resize_chains(p, 3, false), 0);
	assert_int_equal(p->n, 3);
	assert_null(p->chains[0].text);
	assert_int_equal(p->spent_tokens, 140);
	assert_int_equal(p->spent_probe_tokens, 8);
	assert_int_equal(program_tokens(p), 140);
	assert_int_equal(program_probe_tokens(p), 8);
	program_free(p);
}

/* The routing state and decisions go through ProgramRecord and back. */
static void
test_program_route_record_round_trip(void **state)
{
	struct program *p = program_new("p2", "t", "problem", SCHED_ALGO_SC, 3, 3000), *q;
	Certa__V1__ProgramRecord rec = CERTA__V1__PROGRAM_RECORD__INIT;
	struct program_route_event ev;
	struct program_pb pb;
	uint8_t *buf;
	size_t len;
	Certa__V1__ProgramRecord *back;

	(void)state;
	assert_non_null(p);
	p->routed = true;
	p->rstate.state = ROUTER_ES_RUNNING;
	p->rstate.rung = 1;
	p->rstate.escalations = 1;
	p->rstate.base = 512;
	p->spent_tokens = 700;
	memset(&ev, 0, sizeof ev);
	strcpy(ev.action, "route");
	strcpy(ev.pool, "a");
	strcpy(ev.model, "model-a");
	ev.algo = SCHED_ALGO_COT;
	ev.n = 1;
	strcpy(ev.reason, "rung 0: no neighbours");
	assert_int_equal(program_route_note(p, &ev), 0);
	strcpy(ev.action, "switch");
	ev.rung = 1;
	ev.tokens = 700;
	strcpy(ev.reason, "switch rung 0 -> 1: unpromising");
	assert_int_equal(program_route_note(p, &ev), 0);
	assert_int_equal(program_pb_fill(p, &pb), 0);
	rec.program = &pb.msg;
	program_record_route(p, &rec);
	len = certa__v1__program_record__get_packed_size(&rec);
	buf = malloc(len);
	assert_non_null(buf);
	certa__v1__program_record__pack(&rec, buf);
	program_pb_free(&pb);
	back = certa__v1__program_record__unpack(NULL, len, buf);
	assert_non_null(back);
	q = program_from_records(back, NULL, 0);
	assert_non_null(q);
	assert_true(q->routed);
	assert_int_equal(q->rstate.state, ROUTER_ES_RUNNING);
	assert_int_equal(q->rstate.rung, 1);
	assert_int_equal(q->rstate.escalations, 1);
	assert_int_equal(q->rstate.base, 512);
	assert_int_equal(q->spent_tokens, 700);
	assert_int_equal(q->nrouting, 2);
	assert_string_equal(q->routing[1].action, "switch");
	assert_string_equal(q->routing[1].reason, "switch rung 0 -> 1: unpromising");
	assert_int_equal(q->routing[1].tokens, 700);
	assert_string_equal(q->routing[0].model, "model-a");
	certa__v1__program_record__free_unpacked(back, NULL);
	free(buf);
	program_free(p);
	program_free(q);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_off_without_pools_or_policy),
		cmocka_unit_test(test_pool_lines_override_and_add),
		cmocka_unit_test(test_policy_text_then_pools),
		cmocka_unit_test(test_tenant_rules),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_program_chain_reshaping),
		cmocka_unit_test(test_program_route_record_round_trip),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
