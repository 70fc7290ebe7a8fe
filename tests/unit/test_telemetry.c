/* test_telemetry.c — certad's /metrics text on a real core: the scrape-time gauges (programs by
 * tenant and state, throttled time, workers) render the expected text, and series of a
 * departed tenant or worker disappear while the others stay as they were. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <grpc/grpc.h>

#include "daemon/core.h"
#include "daemon/pool.h"
#include "daemon/program.h"
#include "daemon/telemetry.h"
#include "daemon/tenants.h"
#include "lib/log.h"
#include "lib/metrics.h"
#include "tests/support/tcore.h"

struct fx {
	struct tcore tc;          /* a core on a temporary state directory */
	struct telemetry *t;
};

static int
setup(void **state)
{
	struct fx *f = calloc(1, sizeof *f);

	assert_non_null(f);
	assert_int_equal(tcore_init(&f->tc, "telemetry"), 0);
	f->tc.opt.pool.health_interval_ms = 60000;
	assert_int_equal(tcore_open(&f->tc), 0);
	assert_int_equal(telemetry_new(f->tc.c, &f->t), 0);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;

	telemetry_free(f->t);
	assert_int_equal(tcore_fini(&f->tc), 0);
	free(f);
	return 0;
}

static char *
render(struct telemetry *t)
{
	char *text = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&text, &len);

	assert_non_null(fp);
	assert_int_equal(metrics_render(telemetry_metrics(t), fp), 0);
	assert_int_equal(fclose(fp), 0);
	return text;
}

/* The sample lines (no comments) of the families named, in the order rendered. */
static char *
pick(const char *text, const char *const *names)
{
	size_t cap = strlen(text) + 1, n = 0;
	char *out = malloc(cap);
	const char *line = text;

	assert_non_null(out);
	while (*line != '\0') {
		const char *end = strchr(line, '\n');
		size_t len = end != NULL ? (size_t)(end - line) + 1 : strlen(line), i;
		for (i = 0; names[i] != NULL; i++) {
			size_t nl = strlen(names[i]);
			if (strncmp(line, names[i], nl) == 0 && (line[nl] == '{' || line[nl] == ' ')) {
				memcpy(out + n, line, len);
				n += len;
				break;
			}
		}
		line += len;
	}
	out[n] = '\0';
	return out;
}

/* The families telemetry's collector recomputes at each scrape. */
static const char *const collected[] = { "certa_programs", "certa_tenant_throttled_seconds_total",
    "certa_worker_up", "certa_worker_chains", "certa_worker_inflight_chains", NULL };
/* And the per-tenant counters the hooks move. */
static const char *const tenant_counters[] = { "certa_programs_submitted_total",
    "certa_programs_finished_total", "certa_tokens_generated_total", NULL };

static void
add_tenant(struct fx *f, const char *name, int queued, int running)
{
	struct tenants *ts = core_tenants(f->tc.c);
	int i;

	assert_int_equal(tenants_ensure(ts, name), 0);
	for (i = 0; i < queued + running; i++) {
		tenants_program_state(ts, name, 0, PROGRAM_QUEUED);
		telemetry_submitted(f->t, name);
	}
	for (i = 0; i < running; i++)
		tenants_program_state(ts, name, PROGRAM_QUEUED, PROGRAM_RUNNING);
}

/* A small fixed state renders the text it always has (written from the output of the
 * collector that rebuilt these families from scratch at each scrape). */
static void
test_render_expected_text(void **state)
{
	struct fx *f = *state;
	char *text, *got;

	add_tenant(f, "alpha", 2, 1);
	add_tenant(f, "beta", 0, 0);
	add_tenant(f, "gamma", 0, 4);
	telemetry_finished(f->t, "beta", "certain", 0.9, 3);
	telemetry_tokens(f->t, "gamma", 120, 8);
	assert_int_equal(pool_add(core_pool(f->tc.c), "127.0.0.1:1"), 0);
	assert_int_equal(pool_add(core_pool(f->tc.c), "127.0.0.1:2"), 0);
	text = render(f->t);
	got = pick(text, collected);
	assert_string_equal(got,
	    "certa_programs{tenant=\"alpha\",state=\"queued\"} 2\n"
	    "certa_programs{tenant=\"alpha\",state=\"running\"} 1\n"
	    "certa_programs{tenant=\"beta\",state=\"queued\"} 0\n"
	    "certa_programs{tenant=\"beta\",state=\"running\"} 0\n"
	    "certa_programs{tenant=\"gamma\",state=\"queued\"} 0\n"
	    "certa_programs{tenant=\"gamma\",state=\"running\"} 4\n"
	    "certa_worker_up{worker=\"127.0.0.1:1\"} 0\n"
	    "certa_worker_up{worker=\"127.0.0.1:2\"} 0\n"
	    "certa_worker_chains{worker=\"127.0.0.1:1\"} 0\n"
	    "certa_worker_chains{worker=\"127.0.0.1:2\"} 0\n"
	    "certa_worker_inflight_chains{worker=\"127.0.0.1:1\"} 0\n"
	    "certa_worker_inflight_chains{worker=\"127.0.0.1:2\"} 0\n"
	    "certa_tenant_throttled_seconds_total{tenant=\"alpha\"} 0\n"
	    "certa_tenant_throttled_seconds_total{tenant=\"beta\"} 0\n"
	    "certa_tenant_throttled_seconds_total{tenant=\"gamma\"} 0\n");
	free(got);
	got = pick(text, tenant_counters);
	assert_string_equal(got,
	    "certa_programs_submitted_total{tenant=\"alpha\"} 3\n"
	    "certa_programs_submitted_total{tenant=\"gamma\"} 4\n"
	    "certa_programs_finished_total{tenant=\"beta\",reason=\"certain\"} 1\n"
	    "certa_tokens_generated_total{tenant=\"gamma\"} 120\n");
	free(got);
	free(text);
	/* A second scrape of the same state is the same text, byte for byte. */
	got = render(f->t);
	text = render(f->t);
	assert_string_equal(got, text);
	free(got);
	free(text);
}

/* A departed tenant's and a removed worker's scrape-time series are gone at the next scrape;
 * the others keep their text, in the order a registry built from scratch gives them. */
static void
test_departed_series_removed(void **state)
{
	struct fx *f = *state;
	struct telemetry *fresh;
	char *before, *after, *want, *got, err[256];

	add_tenant(f, "a", 1, 0);
	add_tenant(f, "b", 0, 0);
	add_tenant(f, "c", 0, 2);
	add_tenant(f, "d", 3, 0);
	assert_int_equal(pool_add(core_pool(f->tc.c), "127.0.0.1:1"), 0);
	assert_int_equal(pool_add(core_pool(f->tc.c), "127.0.0.1:2"), 0);
	before = render(f->t);
	assert_non_null(strstr(before, "certa_programs{tenant=\"b\",state=\"queued\"} 0\n"));
	assert_non_null(strstr(before, "certa_tenant_throttled_seconds_total{tenant=\"b\"} 0\n"));

	assert_int_equal(tenants_delete(core_tenants(f->tc.c), "b", NULL, NULL, err, sizeof err), 0);
	assert_int_equal(pool_remove(core_pool(f->tc.c), "127.0.0.1:1"), 0);
	tenants_program_state(core_tenants(f->tc.c), "d", PROGRAM_QUEUED, PROGRAM_RUNNING);
	after = render(f->t);
	got = pick(after, collected);
	assert_null(strstr(got, "tenant=\"b\""));
	assert_null(strstr(got, "127.0.0.1:1"));
	assert_string_equal(got,
	    "certa_programs{tenant=\"a\",state=\"queued\"} 1\n"
	    "certa_programs{tenant=\"a\",state=\"running\"} 0\n"
	    "certa_programs{tenant=\"d\",state=\"queued\"} 2\n"
	    "certa_programs{tenant=\"d\",state=\"running\"} 1\n"
	    "certa_programs{tenant=\"c\",state=\"queued\"} 0\n"
	    "certa_programs{tenant=\"c\",state=\"running\"} 2\n"
	    "certa_worker_up{worker=\"127.0.0.1:2\"} 0\n"
	    "certa_worker_chains{worker=\"127.0.0.1:2\"} 0\n"
	    "certa_worker_inflight_chains{worker=\"127.0.0.1:2\"} 0\n"
	    "certa_tenant_throttled_seconds_total{tenant=\"a\"} 0\n"
	    "certa_tenant_throttled_seconds_total{tenant=\"d\"} 0\n"
	    "certa_tenant_throttled_seconds_total{tenant=\"c\"} 0\n");
	/* What a registry that never saw b or the first worker renders. */
	assert_int_equal(telemetry_new(f->tc.c, &fresh), 0);
	want = render(fresh);
	{
		char *w = pick(want, collected);
		assert_string_equal(got, w);
		free(w);
	}
	/* The counters the hooks moved stay (b's included: counters are kept). */
	{
		char *cb = pick(before, tenant_counters), *ca = pick(after, tenant_counters);
		assert_string_equal(ca, cb);
		free(cb);
		free(ca);
	}
	telemetry_free(fresh);
	free(want);
	free(got);
	free(before);
	free(after);
}

/* metrics.per_tenant = false: every tenant adds into one series per state, from 0 at each
 * scrape. */
static void
test_all_tenants_sum_each_scrape(void **state)
{
	struct fx *f = *state;
	char *text, *got;
	int i;

	telemetry_set_per_tenant(f->t, 0);
	add_tenant(f, "a", 1, 2);
	add_tenant(f, "b", 3, 0);
	for (i = 0; i < 3; i++) {
		text = render(f->t);
		got = pick(text, collected);
		assert_string_equal(got,
		    "certa_programs{tenant=\"_all\",state=\"queued\"} 4\n"
		    "certa_programs{tenant=\"_all\",state=\"running\"} 2\n"
		    "certa_tenant_throttled_seconds_total{tenant=\"_all\"} 0\n");
		free(got);
		free(text);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_render_expected_text, setup, teardown),
		cmocka_unit_test_setup_teardown(test_departed_series_removed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_all_tenants_sum_each_scrape, setup, teardown),
	};
	int rc;

	log_init("test_telemetry", LOG_FORMAT_PLAIN, LOG_LVL_WARN);
	grpc_init();
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	grpc_shutdown();
	return rc;
}
