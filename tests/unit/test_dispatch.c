/* test_dispatch.c — the daemon core's dispatch order (daemon/dispatch.c) on a real core: real
 * LMDB in a temporary directory, no workers, no processes.  Programs are submitted through
 * submit_program and the order a pass would offer them to workers is read with
 * dispatch_order.  Also what the queries see of a removed tenant's programs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>
#include <event2/event.h>
#include <grpc/grpc.h>

#include "daemon/core.h"
#include "daemon/core_impl.h"
#include "daemon/deadlines.h"
#include "daemon/dispatch.h"
#include "daemon/events.h"
#include "lib/rpc_server.h"
#include "daemon/commit.h"
#include "daemon/persist.h"
#include "daemon/policies.h"
#include "daemon/program.h"
#include "daemon/queries.h"
#include "daemon/shadow.h"
#include "daemon/submit.h"
#include "daemon/tenants.h"
#include "lib/error.h"
#include "lib/log.h"
#include "lib/strmap.h"
#include "store/store.h"
#include "tests/support/tcore.h"

#define MAXP 16

struct fx {
	struct tcore tc;          /* a core on a temporary state directory */
	char ids[MAXP][64];       /* submitted programs by label index */
	char err[512];
};

static void
fx_open(struct fx *f)
{
	assert_int_equal(tcore_open(&f->tc), 0);
}

static int
setup(void **state)
{
	struct fx *f = calloc(1, sizeof *f);

	assert_non_null(f);
	assert_int_equal(tcore_init(&f->tc, "dispatch"), 0);
	f->tc.opt.anonymous_tenant = "anon";
	fx_open(f);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;

	if (f->tc.c != NULL)
		assert_int_equal(dispatch_ready_verify(f->tc.c), 0);
	assert_int_equal(tcore_fini(&f->tc), 0);
	free(f);
	return 0;
}

static void
tenant(struct fx *f, const char *name, uint32_t weight)
{
	Certa__V1__Tenant t = CERTA__V1__TENANT__INIT;
	char key[TENANTS_KEY_MAX];

	t.name = (char *)name;
	t.weight = weight;
	assert_int_equal(tenants_create(core_tenants(f->tc.c), &t, key, sizeof key, f->err,
	    sizeof f->err), 0);
}

/* Submits a cot program as `who`; label is the index its id is kept under. */
static void
submit(struct fx *f, int label, const char *who, int priority, int64_t deadline_ms)
{
	struct submit_spec spec = { .model = "", .policy = "", .idempotency_key = "" };
	char problem[32];

	snprintf(problem, sizeof problem, "problem %d", label);
	spec.problem = problem;
	spec.priority = priority;
	spec.deadline_unix_ms = deadline_ms;
	assert_int_equal(submit_program(f->tc.c, who, &spec, NULL, f->err, sizeof f->err), 0);
	commit_sync(f->tc.c);   /* accepted once its write commits (the loop would run it) */
	/* The newest live program is the one just submitted: find it through the order. */
	{
		const char *ids[MAXP];
		size_t n, i, j;
		assert_int_equal(dispatch_order(f->tc.c, ids, MAXP, &n), 0);
		for (i = 0; i < n; i++) {
			for (j = 0; j < MAXP; j++)
				if (j != (size_t)label && strcmp(f->ids[j], ids[i]) == 0)
					break;
			if (j == MAXP)
				snprintf(f->ids[label], sizeof f->ids[label], "%s", ids[i]);
		}
	}
	assert_true(f->ids[label][0] != '\0');
}

/* Checks the next pass's order against labels (-1 ends the list). */
static void
expect_order(struct fx *f, const int *labels)
{
	const char *ids[MAXP];
	size_t n, i;

	assert_int_equal(dispatch_order(f->tc.c, ids, MAXP, &n), 0);
	for (i = 0; labels[i] >= 0; i++) {
		assert_true(i < n);
		if (strcmp(ids[i], f->ids[labels[i]]) != 0)
			fail_msg("position %zu: got %s, want label %d (%s)", i, ids[i], labels[i],
			    f->ids[labels[i]]);
	}
	assert_int_equal(n, i);
}

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Inside a tenant: priority, then deadline (EDF), then submission order. */
static void
test_priority_then_deadline_then_age(void **state)
{
	struct fx *f = *state;
	const int want[] = { 2, 3, 1, 4, 0, -1 };

	submit(f, 0, "anon", CERTA__V1__PRIORITY__PRIORITY_LOW, 0);
	submit(f, 1, "anon", CERTA__V1__PRIORITY__PRIORITY_NORMAL, 0);
	submit(f, 2, "anon", CERTA__V1__PRIORITY__PRIORITY_HIGH, 0);
	submit(f, 3, "anon", CERTA__V1__PRIORITY__PRIORITY_NORMAL, now_ms() + 600000);
	submit(f, 4, "anon", CERTA__V1__PRIORITY__PRIORITY_NORMAL, 0);
	expect_order(f, want);
}

/* Across tenants: VTC with weights — a tenant of weight 2 gets two steps per step of a tenant
 * of weight 1 (equal step costs), ties going to the older program. */
static void
test_tenants_share_by_weight(void **state)
{
	struct fx *f = *state;
	const int want[] = { 0, 1, 3, 2, 5, 7, 4, 6, -1 };
	int i;

	tenant(f, "light", 1);
	tenant(f, "heavy", 2);
	for (i = 0; i < 8; i++)
		submit(f, i, i % 2 == 0 ? "light" : "heavy", 0, 0);
	expect_order(f, want);
}

/* A cancelled program leaves the order at once. */
static void
test_cancelled_program_leaves_order(void **state)
{
	struct fx *f = *state;
	const int want[] = { 0, 2, -1 };
	int st = 0;

	submit(f, 0, "anon", 0, 0);
	submit(f, 1, "anon", 0, 0);
	submit(f, 2, "anon", 0, 0);
	assert_int_equal(queries_cancel(f->tc.c, "anon", f->ids[1], &st), 0);
	assert_int_equal(st, CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_CANCELLED);
	expect_order(f, want);
	/* Another tenant cannot cancel (or see) it. */
	assert_int_equal(queries_cancel(f->tc.c, "other", f->ids[0], &st), CERTA_ENOTFOUND);
}

/* A program whose deadline passed ends in the pass, without a step. */
static void
test_deadline_ends_program_without_step(void **state)
{
	struct fx *f = *state;
	const int want[] = { 1, -1 };
	struct timespec ts = { 0, 120 * 1000000L };
	Certa__V1__Program *pm = NULL;
	size_t queued, running;
	uint64_t finished;

	submit(f, 0, "anon", CERTA__V1__PRIORITY__PRIORITY_HIGH, now_ms() + 60);
	submit(f, 1, "anon", 0, 0);
	nanosleep(&ts, NULL);
	expect_order(f, want);
	core_counts(f->tc.c, &queued, &running, &finished);
	assert_int_equal(queued, 1);
	assert_int_equal(finished, 1);
	assert_int_equal(queries_get(f->tc.c, "anon", f->ids[0], &pm), 0);
	assert_int_equal(pm->state, CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_FINISHED);
	assert_non_null(pm->result);
	assert_int_equal(pm->result->reason, SCHED_REASON_DEADLINE);
	protobuf_c_message_free_unpacked(&pm->base, NULL);
}

/* With no worker slot a pass only ends programs past their deadline (dispatch_expire), which
 * it finds first in the deadline heap: before the deadline nothing ends and the program heads
 * the heap; after it the program ends (reason deadline) and the heap is empty.  Programs
 * without a deadline are not in it. */
static void
test_expire_waits_for_earliest_deadline(void **state)
{
	struct fx *f = *state;
	struct timespec ts = { 0, 150 * 1000000L };
	Certa__V1__Program *pm = NULL;
	size_t queued, running;
	uint64_t finished;
	int64_t deadline = now_ms() + 80;

	submit(f, 0, "anon", 0, 0);
	submit(f, 1, "anon", 0, deadline);
	assert_non_null(deadlines_first(f->tc.c));
	assert_int_equal(deadlines_first(f->tc.c)->deadline_ms, deadline);
	assert_int_equal(f->tc.c->ndl, 1);
	dispatch_run(f->tc.c);   /* no workers: no slot */
	core_counts(f->tc.c, &queued, &running, &finished);
	assert_int_equal(queued, 2);
	assert_int_equal(deadlines_first(f->tc.c)->deadline_ms, deadline);
	nanosleep(&ts, NULL);
	dispatch_run(f->tc.c);
	core_counts(f->tc.c, &queued, &running, &finished);
	assert_int_equal(queued, 1);
	assert_int_equal(finished, 1);
	assert_null(deadlines_first(f->tc.c));
	assert_int_equal(queries_get(f->tc.c, "anon", f->ids[1], &pm), 0);
	assert_int_equal(pm->result->reason, SCHED_REASON_DEADLINE);
	protobuf_c_message_free_unpacked(&pm->base, NULL);
}

/* Many deadlines in random order: passes end exactly the programs whose deadline has passed,
 * earliest first, and the heap always holds the earliest of the rest. */
static void
test_deadline_heap_order(void **state)
{
	enum { N = 60 };
	struct fx *f = *state;
	int64_t base = now_ms() + 100000, dl[N], min;
	unsigned seed = 31;
	size_t i, ended = 0, queued, running;
	uint64_t finished;

	static char ids[N][64];

	for (i = 0; i < N; i++) {
		struct submit_spec spec = { .model = "", .policy = "", .idempotency_key = "" };
		dl[i] = base + (int64_t)(rand_r(&seed) % 1000) * 10;
		spec.problem = "problem 0";
		spec.deadline_unix_ms = dl[i];
		assert_int_equal(submit_program(f->tc.c, "anon", &spec, NULL, f->err, sizeof f->err),
		    0);
		commit_sync(f->tc.c);
		/* The newest live program is the last in the live order. */
		snprintf(ids[i], sizeof ids[i], "%s", f->tc.c->order[f->tc.c->norder - 1]->id);
	}
	assert_int_equal(f->tc.c->ndl, N);
	min = dl[0];
	for (i = 1; i < N; i++)
		if (dl[i] < min)
			min = dl[i];
	assert_int_equal(deadlines_first(f->tc.c)->deadline_ms, min);
	/* Move the deadlines of the first 20 into the past, as if their time had come: dispatch
	 * reads the key in place, so each is taken out and put back. */
	for (i = 0; i < 20; i++) {
		struct program *p = strmap_get(f->tc.c->live, ids[i]);
		assert_non_null(p);
		deadlines_del(f->tc.c, p);
		p->deadline_ms = now_ms() - 1 - (int64_t)i;
		assert_int_equal(deadlines_add(f->tc.c, p), 0);
	}
	assert_int_equal(f->tc.c->ndl, N);
	dispatch_run(f->tc.c);   /* no workers: only the expired end */
	core_counts(f->tc.c, &queued, &running, &finished);
	assert_int_equal(finished, 20);
	assert_int_equal(queued, N - 20);
	assert_int_equal(f->tc.c->ndl, N - 20);
	for (i = 20; i < N; i++)
		ended += strmap_get(f->tc.c->live, ids[i]) == NULL;
	assert_int_equal(ended, 0);
	min = dl[20];
	for (i = 21; i < N; i++)
		if (dl[i] < min)
			min = dl[i];
	assert_int_equal(deadlines_first(f->tc.c)->deadline_ms, min);
}

/* A program past its deadline that cannot be decided now (its step in flight) leaves the
 * deadline heap, so passes do not look at it again; when it can step again dispatch_ready
 * puts it back and the next pass ends it (reason deadline). */
static void
test_deadline_passed_in_flight(void **state)
{
	struct fx *f = *state;
	Certa__V1__Program *pm = NULL;
	struct program *p;
	size_t queued, running;
	uint64_t finished;

	submit(f, 0, "anon", 0, now_ms() + 100000);
	p = strmap_get(f->tc.c->live, f->ids[0]);
	assert_non_null(p);
	assert_int_equal(p->dl_pos, 1);
	/* Its step went out; then its deadline passed. */
	dispatch_unready(f->tc.c, p);
	p->inflight = true;
	deadlines_del(f->tc.c, p);
	p->deadline_ms = now_ms() - 5;
	assert_int_equal(deadlines_add(f->tc.c, p), 0);
	dispatch_run(f->tc.c);
	assert_int_equal(p->dl_pos, 0);
	assert_null(deadlines_first(f->tc.c));
	core_counts(f->tc.c, &queued, &running, &finished);
	assert_int_equal(finished, 0);
	/* The step landed. */
	p->inflight = false;
	dispatch_ready(f->tc.c, p);
	assert_ptr_equal(deadlines_first(f->tc.c), p);
	dispatch_run(f->tc.c);
	core_counts(f->tc.c, &queued, &running, &finished);
	assert_int_equal(finished, 1);
	assert_null(deadlines_first(f->tc.c));
	assert_int_equal(queries_get(f->tc.c, "anon", f->ids[0], &pm), 0);
	assert_int_equal(pm->result->reason, SCHED_REASON_DEADLINE);
	protobuf_c_message_free_unpacked(&pm->base, NULL);
}

/* The newest program of `who` in *id (List); returns how many it has. */
static size_t
list_newest(struct fx *f, const char *who, char *id, size_t idlen)
{
	Certa__V1__ListReply lr;
	size_t n;

	assert_int_equal(queries_list(f->tc.c, who, 0, 0, "", &lr), 0);
	n = lr.n_programs;
	if (n > 0 && id != NULL)
		snprintf(id, idlen, "%s", lr.programs[0]->id);
	queries_list_free(&lr);
	return n;
}

static void
submit_idem(struct fx *f, const char *who, const char *idem)
{
	struct submit_spec spec = { .model = "", .policy = "", .idempotency_key = idem };

	spec.problem = "a problem";
	assert_int_equal(submit_program(f->tc.c, who, &spec, NULL, f->err, sizeof f->err), 0);
	commit_sync(f->tc.c);
}

/* A tenant removed and created again under the same name (another uid) sees nothing of the
 * old one: Get, Cancel and List say NOT_FOUND / nothing, its idempotency key makes a new
 * program; the same after a restart. */
static void
test_reused_name_sees_nothing_of_old_tenant(void **state)
{
	struct fx *f = *state;
	Certa__V1__Program *pm = NULL;
	char old_id[64] = "", new_id[64] = "";
	int st = 0, round;

	tenant(f, "bravo", 1);
	submit_idem(f, "bravo", "k1");
	assert_int_equal(list_newest(f, "bravo", old_id, sizeof old_id), 1);
	/* Work in progress keeps the tenant. */
	assert_int_equal(tenants_delete(core_tenants(f->tc.c), "bravo", NULL, NULL, f->err,
	    sizeof f->err), CERTA_ESTATE);
	assert_int_equal(queries_cancel(f->tc.c, "bravo", old_id, &st), 0);
	assert_int_equal(tenants_delete(core_tenants(f->tc.c), "bravo", NULL, NULL, f->err,
	    sizeof f->err), 0);
	tenant(f, "bravo", 1);

	assert_int_equal(list_newest(f, "bravo", NULL, 0), 0);
	submit_idem(f, "bravo", "k1");   /* the old key is not the new tenant's */
	assert_int_equal(list_newest(f, "bravo", new_id, sizeof new_id), 1);
	assert_string_not_equal(new_id, old_id);
	for (round = 0; round < 2; round++) {
		assert_int_equal(queries_get(f->tc.c, "bravo", old_id, &pm), CERTA_ENOTFOUND);
		assert_int_equal(queries_cancel(f->tc.c, "bravo", old_id, &st), CERTA_ENOTFOUND);
		assert_int_equal(list_newest(f, "bravo", new_id, sizeof new_id), 1);
		assert_int_equal(queries_get(f->tc.c, "bravo", new_id, &pm), 0);
		protobuf_c_message_free_unpacked(&pm->base, NULL);
		core_free(f->tc.c);
		f->tc.c = NULL;
		fx_open(f);
	}
	/* A retry with the key now is the new tenant's program. */
	submit_idem(f, "bravo", "k1");
	assert_int_equal(list_newest(f, "bravo", NULL, 0), 1);
}

/* After a restart (recovery) the same programs are queued in the same order. */
static void
test_order_survives_restart(void **state)
{
	struct fx *f = *state;
	const int want[] = { 1, 2, 0, -1 };
	size_t queued, running;
	uint64_t finished;

	submit(f, 0, "anon", CERTA__V1__PRIORITY__PRIORITY_LOW, 0);
	submit(f, 1, "anon", CERTA__V1__PRIORITY__PRIORITY_HIGH, 0);
	submit(f, 2, "anon", CERTA__V1__PRIORITY__PRIORITY_NORMAL, 0);
	expect_order(f, want);
	core_free(f->tc.c);
	f->tc.c = NULL;
	fx_open(f);
	core_counts(f->tc.c, &queued, &running, &finished);
	assert_int_equal(queued, 3);
	assert_int_equal(running, 0);
	expect_order(f, want);
}

/* A program's seed (ProgramSpec.seed, chain i steps with seed + i) is stored with it and
 * survives a restart. */
static void
test_seed_stored(void **state)
{
	struct fx *f = *state;
	struct submit_spec spec = { .model = "", .policy = "", .idempotency_key = "",
	    .problem = "seeded", .seed = 0xfeedfacecafeULL };
	Certa__V1__Program *pm = NULL;
	const char *ids[MAXP];
	char id[64];
	size_t n;
	int round;

	assert_int_equal(submit_program(f->tc.c, "anon", &spec, NULL, f->err, sizeof f->err), 0);
	commit_sync(f->tc.c);
	assert_int_equal(dispatch_order(f->tc.c, ids, MAXP, &n), 0);
	assert_int_equal(n, 1);
	snprintf(id, sizeof id, "%s", ids[0]);
	for (round = 0; round < 2; round++) {
		assert_int_equal(queries_get(f->tc.c, "anon", id, &pm), 0);
		assert_non_null(pm->spec);
		assert_true(pm->spec->seed == 0xfeedfacecafeULL);
		certa__v1__program__free_unpacked(pm, NULL);
		pm = NULL;
		core_free(f->tc.c);
		f->tc.c = NULL;
		fx_open(f);
	}
}

/* Turns a stored program into a shadow (daemon/shadow.h) of the system account. */
static int
make_shadow_txn(struct store_txn *txn, void *arg)
{
	const char *id = arg;
	ProtobufCMessage *m = NULL;
	Certa__V1__ProgramRecord *r;
	char *tenant, *of;
	int rc;

	rc = store_get(txn, STORE_DB_PROGRAMS, id, &certa__v1__program_record__descriptor, &m);
	if (rc != 0)
		return rc;
	r = (Certa__V1__ProgramRecord *)m;
	tenant = r->program->tenant;
	of = r->shadow_of;
	r->program->tenant = (char *)"_system";
	r->shadow_of = (char *)"p-original";
	rc = store_put(txn, STORE_DB_PROGRAMS, id, &r->base);
	r->program->tenant = tenant;
	r->shadow_of = of;
	protobuf_c_message_free_unpacked(m, NULL);
	return rc;
}

/* A shadow runs after every tenant's ready work: last, though older than them and of the same
 * priority, and it survives a restart as a shadow. */
static void
test_shadow_dispatched_last(void **state)
{
	struct fx *f = *state;
	const int want[] = { 2, 1, 0, -1 };
	struct store *st;
	struct store_options so = { 0 };

	submit(f, 0, "anon", CERTA__V1__PRIORITY__PRIORITY_LOW, 0);
	core_free(f->tc.c);
	f->tc.c = NULL;
	assert_int_equal(store_open(f->tc.opt.state_dir, &so, &st), 0);
	assert_int_equal(store_update(st, make_shadow_txn, f->ids[0]), 0);
	store_close(st);
	fx_open(f);
	submit(f, 1, "anon", CERTA__V1__PRIORITY__PRIORITY_LOW, 0);
	submit(f, 2, "anon", CERTA__V1__PRIORITY__PRIORITY_NORMAL, 0);
	expect_order(f, want);
	/* Not the tenant's: its stats count only its own two programs. */
	assert_int_equal(tenants_stats(core_tenants(f->tc.c), "anon")->queued, 2);
}

/* The decision of p's next step under the policy dispatch gives it (shadow_decision_policy
 * of the tenant's policy, as dispatch_decide): p's one chain at `tokens`, unfinished. */
static void
decide_at(struct fx *f, struct program *p, uint64_t tokens, struct sched_decision *d,
    uint64_t *model_tokens)
{
	const struct sched_policy *base = policies_effective(core_policies(f->tc.c), NULL, NULL);
	const struct sched_policy *pol;
	struct sched_policy buf;
	struct sched_chain ch[1];
	struct sched_view v;

	assert_int_equal(p->n, 1);
	p->budget = 1u << 20;   /* the unpromising bound decides, not the budget */
	p->chains[0].tokens = tokens;
	p->chains[0].finished = false;
	program_view(p, ch, core_now_ms(), &v);
	pol = shadow_decision_policy(f->tc.c, p, base, &buf);
	*model_tokens = pol->model_tokens;
	sched_decide(pol, &v, d);
}

/* A program of the model ends for its client with one chain of `tokens`. */
static void
end_program(struct fx *f, struct program *q, uint64_t tokens, enum sched_reason reason)
{
	q->chains[0].tokens = tokens;
	q->chains[0].finished = reason == SCHED_REASON_NATURAL_END;
	q->state = PROGRAM_FINISHED;
	q->reason = reason;
	shadow_spawn(f->tc.c, q);
}

/* The sched/daemon seam: a decision's unpromising bound counts in the model's learned chain
 * length once model_tokens.min_samples chains are counted (the shipped policy: relative
 * bounds, no prior, 20 chains), absolute tokens before; certainty stops do not count; the
 * learned value survives a restart. */
static void
test_decision_uses_learned_model_tokens(void **state)
{
	struct fx *f = *state;
	struct shadow_model_info mi;
	struct sched_decision d;
	struct program *p, *q;
	uint64_t mt;
	int k;

	assert_int_equal(f->tc.opt.policy.unpromising_relative, 1);
	assert_int_equal(f->tc.opt.policy.model_tokens_min_samples, 20);
	assert_int_equal(f->tc.opt.policy.unpromising_tokens, 16384);
	submit(f, 0, "anon", CERTA__V1__PRIORITY__PRIORITY_NORMAL, 0);
	submit(f, 1, "anon", CERTA__V1__PRIORITY__PRIORITY_NORMAL, 0);
	p = strmap_get(f->tc.c->live, f->ids[0]);
	q = strmap_get(f->tc.c->live, f->ids[1]);
	assert_non_null(p);
	assert_non_null(q);
	/* Nothing learned: 20000 tokens are past the absolute bound (16384). */
	decide_at(f, p, 20000, &d, &mt);
	assert_int_equal(mt, 0);
	assert_true(d.stop);
	assert_int_equal(d.reason, SCHED_REASON_UNPROMISING);
	/* Certainty stops are not counted; 19 natural ends are not yet enough. */
	for (k = 0; k < 5; k++)
		end_program(f, q, 100, SCHED_REASON_CERTAIN);
	for (k = 0; k < 19; k++)
		end_program(f, q, 8000 + (uint64_t)k, SCHED_REASON_NATURAL_END);
	assert_int_equal(shadow_model_count(f->tc.c), 1);
	shadow_model_get(f->tc.c, 0, &mi);
	assert_int_equal(mi.samples, 19);
	assert_string_equal(mi.source, "absolute");
	decide_at(f, p, 20000, &d, &mt);
	assert_int_equal(mt, 0);
	assert_true(d.stop);
	/* The 20th: the median of 8000..8019 (8010) is the unit's base, 20000 tokens are 10227
	 * units: below the bound, the program goes on. */
	end_program(f, q, 8019, SCHED_REASON_NATURAL_END);
	shadow_model_get(f->tc.c, 0, &mi);
	assert_string_equal(mi.source, "learned");
	assert_int_equal(mi.tokens, 8010);
	decide_at(f, p, 20000, &d, &mt);
	assert_int_equal(mt, 8010);
	assert_false(d.stop);
	decide_at(f, p, 32100, &d, &mt);   /* 16410 units */
	assert_true(d.stop);
	assert_int_equal(d.reason, SCHED_REASON_UNPROMISING);
	/* A restart keeps it (written when it took over, and at the clean exit). */
	end_program(f, q, 8500, SCHED_REASON_UNPROMISING);
	q->state = PROGRAM_QUEUED;
	core_free(f->tc.c);
	f->tc.c = NULL;
	fx_open(f);
	assert_int_equal(shadow_model_count(f->tc.c), 1);
	shadow_model_get(f->tc.c, 0, &mi);
	assert_int_equal(mi.samples, 21);
	assert_int_equal(mi.seen, 21);
	assert_int_equal(mi.tokens, 8010);   /* 8000..8019 and 8500 */
	p = strmap_get(f->tc.c->live, f->ids[0]);
	assert_non_null(p);
	decide_at(f, p, 20000, &d, &mt);
	assert_int_equal(mt, 8010);
	assert_false(d.stop);
}

/* A tenant with a tokens_per_minute quota. */
static void
tenant_tpm(struct fx *f, const char *name, uint64_t tpm)
{
	Certa__V1__Tenant t = CERTA__V1__TENANT__INIT;
	Certa__V1__Quota q = CERTA__V1__QUOTA__INIT;
	char key[TENANTS_KEY_MAX];

	t.name = (char *)name;
	t.weight = 1;
	q.tokens_per_minute = tpm;
	t.quota = &q;
	assert_int_equal(tenants_create(core_tenants(f->tc.c), &t, key, sizeof key, f->err,
	    sizeof f->err), 0);
}

/* tokens_per_minute at dispatch: a tenant that was served its quota in the last minute has
 * its steps held back (still queued, not failed); another tenant's go on. */
static void
test_throttled_tenant_held_back_at_dispatch(void **state)
{
	struct fx *f = *state;
	const int both[] = { 0, 1, 2, 3, -1 }, other_only[] = { 1, 3, -1 };
	size_t queued, running;
	uint64_t finished;

	tenant_tpm(f, "meter", 500);
	tenant(f, "other", 1);
	submit(f, 0, "meter", 0, 0);
	submit(f, 1, "other", 0, 0);
	submit(f, 2, "meter", 0, 0);
	submit(f, 3, "other", 0, 0);
	expect_order(f, both);
	/* Steps of meter's programs completed: 499 tokens, still under the limit. */
	tenants_charge(core_tenants(f->tc.c), "meter", 499, now_ms());
	expect_order(f, both);
	tenants_charge(core_tenants(f->tc.c), "meter", 1, now_ms());
	expect_order(f, other_only);
	core_counts(f->tc.c, &queued, &running, &finished);
	assert_int_equal(queued, 4);
	assert_int_equal(finished, 0);
	assert_true(tenants_throttle(core_tenants(f->tc.c), "meter", now_ms()) > 50000);
	assert_int_equal(tenants_throttle(core_tenants(f->tc.c), "other", now_ms()), 0);
	/* The time held back is counted (certa_tenant_throttled_seconds_total). */
	assert_true(tenants_throttled_ms(core_tenants(f->tc.c), "meter", now_ms() + 1000) >= 1000);
	assert_int_equal(tenants_throttled_ms(core_tenants(f->tc.c), "other", now_ms() + 1000), 0);
}

struct filler {
	size_t len;
	unsigned n;      /* fillers written (keys "zz/<i>") */
	unsigned from;   /* filler_del: the first one deleted */
};

static int
filler_put(struct store_txn *txn, void *arg)
{
	struct filler *fl = arg;
	char key[32];
	static char buf[65536];

	snprintf(key, sizeof key, "zz/%08u", fl->n);
	memset(buf, 'x', sizeof buf);
	return store_put_raw(txn, STORE_DB_IDEMPOTENCY, key, buf, fl->len);
}

static int
filler_del(struct store_txn *txn, void *arg)
{
	struct filler *fl = arg;
	char key[32];
	unsigned i;
	int rc;

	for (i = fl->from; i < fl->n; i++) {
		snprintf(key, sizeof key, "zz/%08u", i);
		rc = store_del(txn, STORE_DB_IDEMPOTENCY, key);
		if (rc != 0)
			return rc;
	}
	return 0;
}

/* Fills the map (at its max_map_size) until even a small record does not fit. */
static void
fill_store(struct fx *f, struct filler *fl)
{
	static const size_t sizes[] = { 60000, 4000, 400, 40 };
	size_t i;
	int rc;

	for (i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
		fl->len = sizes[i];
		while ((rc = store_update(core_store(f->tc.c), filler_put, fl)) == 0)
			fl->n++;
		assert_int_equal(rc, CERTA_EMAPFULL);
	}
}

static void
on_degraded(void *arg, int degraded)
{
	int *calls = arg;

	calls[degraded ? 1 : 0]++;
}

/* Reopens the core on a 1 MiB map (at its max_map_size: fill_store fills it); writer_only:
 * every group commit through the writer thread, none on the loop. */
static void
reopen_small(struct fx *f, int writer_only)
{
	core_free(f->tc.c);
	f->tc.opt.map_size = f->tc.opt.max_map_size = 1u << 20;
	fx_open(f);
	if (writer_only)
		f->tc.c->commit_inline_s = 0;
}

/* Deletes what fill_store wrote, in two commits (LMDB reuses the pages a commit freed only
 * after one more commit). */
static void
free_room(struct fx *f, struct filler *fl)
{
	fl->from = fl->n / 2;
	assert_int_equal(store_update(core_store(f->tc.c), filler_del, fl), 0);
	fl->n = fl->from;
	fl->from = 0;
	assert_int_equal(store_update(core_store(f->tc.c), filler_del, fl), 0);
}

/* Runs the loop for ms milliseconds (retry timers). */
static void
run_loop(struct fx *f, int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	event_base_loopexit(f->tc.base, &tv);
	event_base_dispatch(f->tc.base);
}

/* A program's write fails (here: the map is at store.max_map_size): the program waits, not
 * forgotten, the core is degraded and counts the failure; once there is room again the retry
 * writes it by itself and the core is healthy again. */
static void
test_failed_commit_waits_and_recovers(void **state)
{
	struct fx *f = *state;
	struct filler fl = { 0, 0, 0 };
	Certa__V1__Program *pm = NULL;
	uint64_t failures;
	size_t waiting;
	int calls[2] = { 0, 0 }, st = 0;
	const int want[] = { 1, -1 };

	reopen_small(f, 0);
	core_on_degraded(f->tc.c, on_degraded, calls);
	submit(f, 0, "anon", 0, 0);
	submit(f, 1, "anon", 0, 0);
	fill_store(f, &fl);
	/* The cancel's write fails: the program ends in memory, waits for its write. */
	assert_int_equal(queries_cancel(f->tc.c, "anon", f->ids[0], &st), 0);
	assert_int_equal(st, CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_CANCELLED);
	core_persist_stats(f->tc.c, &failures, &waiting);
	assert_true(failures >= 1);
	assert_int_equal(waiting, 1);
	assert_true(core_degraded(f->tc.c));
	assert_int_equal(calls[1], 1);
	/* Not in the store yet: still queued there. */
	assert_int_equal(queries_get(f->tc.c, "anon", f->ids[0], &pm), 0);
	assert_int_equal(pm->state, CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_QUEUED);
	protobuf_c_message_free_unpacked(&pm->base, NULL);
	/* Still known as cancelled, and never offered to a worker. */
	assert_int_equal(queries_cancel(f->tc.c, "anon", f->ids[0], &st), 0);
	assert_int_equal(st, CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_CANCELLED);
	expect_order(f, want);
	/* Retries keep failing while the map is full. */
	run_loop(f, 400);
	core_persist_stats(f->tc.c, &failures, &waiting);
	assert_true(failures >= 2);
	assert_int_equal(waiting, 1);
	/* Room again: the next retry writes it, by itself. */
	free_room(f, &fl);
	run_loop(f, 1200);
	core_persist_stats(f->tc.c, &failures, &waiting);
	assert_int_equal(waiting, 0);
	assert_false(core_degraded(f->tc.c));
	assert_int_equal(calls[0], 1);
	assert_int_equal(queries_get(f->tc.c, "anon", f->ids[0], &pm), 0);
	assert_int_equal(pm->state, CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_CANCELLED);
	assert_non_null(pm->result);
	assert_int_equal(pm->result->reason, SCHED_REASON_CANCELLED);
	protobuf_c_message_free_unpacked(&pm->base, NULL);
	expect_order(f, want);
}

/* List reads the per-tenant index: newest first, pages chained by their token, only the
 * caller's programs, the state filter applied, across a restart. */
static void
test_list_pages_from_index(void **state)
{
	struct fx *f = *state;
	Certa__V1__ListReply lr;
	const char *token;
	char tok[64] = "";
	int label, seen = 0, k;

	tenant(f, "other", 1);
	for (label = 0; label < 5; label++) {
		struct timespec ts = { 0, 2000000 };
		submit(f, label, "anon", 0, 0);
		nanosleep(&ts, NULL);   /* ids are time-ordered to the millisecond */
	}
	submit(f, 5, "other", 0, 0);
	assert_int_equal(queries_cancel(f->tc.c, "anon", f->ids[1], &k), 0);
	core_free(f->tc.c);
	f->tc.c = NULL;
	fx_open(f);
	label = 4;
	for (;;) {
		size_t i;
		assert_int_equal(queries_list(f->tc.c, "anon", 0, 2, tok, &lr), 0);
		for (i = 0; i < lr.n_programs; i++, label--) {
			assert_true(label >= 0);
			assert_string_equal(lr.programs[i]->id, f->ids[label]);
			seen++;
		}
		token = lr.next_page_token;
		if (token == NULL || token[0] == '\0') {
			queries_list_free(&lr);
			break;
		}
		assert_int_equal(lr.n_programs, 2);
		snprintf(tok, sizeof tok, "%s", token);
		queries_list_free(&lr);
	}
	assert_int_equal(seen, 5);
	assert_int_equal(queries_list(f->tc.c, "anon", CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_CANCELLED,
	    0, "", &lr), 0);
	assert_int_equal(lr.n_programs, 1);
	assert_string_equal(lr.programs[0]->id, f->ids[1]);
	queries_list_free(&lr);
	assert_int_equal(queries_list(f->tc.c, "other", 0, 0, "", &lr), 0);
	assert_int_equal(lr.n_programs, 1);
	assert_string_equal(lr.programs[0]->id, f->ids[5]);
	queries_list_free(&lr);
}

/* --- chain text appended in chunks (schema 3) --- */

struct chunk_scan {
	char prefix[128];
	size_t n;
	char text[4096];
	char answers[256];        /* the chunks' probe answers, each followed by ',' */
	size_t nprobes;
	Certa__V1__RequestRecord *rec;
	char key[128];
};

static int
chunk_count_fn(const char *key, size_t keylen, const ProtobufCMessage *msg, void *arg)
{
	struct chunk_scan *s = arg;
	const Certa__V1__TextChunk *tc = (const Certa__V1__TextChunk *)msg;
	size_t i;

	(void)key;
	(void)keylen;
	s->n++;
	strncat(s->text, tc->text, sizeof s->text - strlen(s->text) - 1);
	for (i = 0; i < tc->n_probes; i++) {
		strncat(s->answers, tc->probes[i]->answer,
		    sizeof s->answers - strlen(s->answers) - 1);
		strncat(s->answers, ",", sizeof s->answers - strlen(s->answers) - 1);
		s->nprobes++;
	}
	return 0;
}

static int
chunk_scan_txn(struct store_txn *txn, void *arg)
{
	struct chunk_scan *s = arg;
	ProtobufCMessage *m = NULL;
	int rc;

	s->n = s->nprobes = 0;
	s->text[0] = s->answers[0] = '\0';
	rc = store_scan(txn, STORE_DB_TEXT, s->prefix, NULL, chunk_count_fn, s);
	if (rc < 0)
		return rc;
	rc = store_get(txn, STORE_DB_REQUESTS, s->key, NULL, &m);
	s->rec = (Certa__V1__RequestRecord *)m;
	return rc;
}

/* What the store holds of chain 0 of program label 0 (s is cleared first). */
static void
chunks_of(struct fx *f, struct chunk_scan *s)
{
	memset(s, 0, sizeof *s);
	snprintf(s->prefix, sizeof s->prefix, "%s/0000/", f->ids[0]);
	snprintf(s->key, sizeof s->key, "%s/0000", f->ids[0]);
	assert_int_equal(store_view(core_store(f->tc.c), chunk_scan_txn, s), 0);
	assert_non_null(s->rec);
}

/* Writes p's step: through the group commit (group) or at once; ch is written after. */
static void
persist_step(struct fx *f, struct program *p, const struct chain *ch, int group)
{
	if (group) {
		commit_later(f->tc.c, p, 0);
		commit_sync(f->tc.c);
	} else {
		assert_int_equal(persist_or_wait(f->tc.c, p, 0), 0);
	}
	assert_false(ch->dirty);
}

static void
step_text(struct fx *f, struct program *p, const char *piece, int group)
{
	struct chain *ch = &p->chains[0];

	assert_int_equal(program_chain_append(ch, piece, ch->tokens + 3, "", 0, NULL, false, NULL,
	    false), 0);
	persist_step(f, p, ch, group);
}

static int
del_chunk_txn(struct store_txn *txn, void *arg)
{
	return store_del(txn, STORE_DB_TEXT, arg);
}

/* Each step appends one chunk (its new text only); the record holds no text; the text comes
 * back whole after a restart and the next step appends to it; a chunk lost is damage (the
 * program is skipped, not resumed with a hole in its text). */
static void
test_chain_text_in_chunks(void **state)
{
	struct fx *f = *state;
	struct chunk_scan s;
	struct program *p;
	char key[160];

	submit(f, 0, "anon", 0, 0);
	p = strmap_get(f->tc.c->live, f->ids[0]);
	assert_non_null(p);
	step_text(f, p, "<think>one ", 0);
	step_text(f, p, "two ", 0);
	step_text(f, p, "three ", 1);
	chunks_of(f, &s);
	assert_int_equal(s.n, 3);
	assert_string_equal(s.text, "<think>one two three ");
	assert_string_equal(s.rec->text, "");
	assert_int_equal(s.rec->text_chunks, 3);
	assert_int_equal(s.rec->text_bytes, strlen("<think>one two three "));
	certa__v1__request_record__free_unpacked(s.rec, NULL);

	core_free(f->tc.c);
	f->tc.c = NULL;
	fx_open(f);
	p = strmap_get(f->tc.c->live, f->ids[0]);
	assert_non_null(p);
	assert_string_equal(p->chains[0].text, "<think>one two three ");
	step_text(f, p, "four", 1);
	chunks_of(f, &s);
	assert_int_equal(s.n, 4);
	assert_string_equal(s.text, "<think>one two three four");
	certa__v1__request_record__free_unpacked(s.rec, NULL);

	/* A lost chunk: the program is not resumed. */
	snprintf(key, sizeof key, "%s/0000/%08x", f->ids[0], 1u);
	assert_int_equal(store_update(core_store(f->tc.c), del_chunk_txn, key), 0);
	core_free(f->tc.c);
	f->tc.c = NULL;
	fx_open(f);
	assert_null(strmap_get(f->tc.c->live, f->ids[0]));
}

static int
put_inline_txn(struct store_txn *txn, void *arg)
{
	struct chunk_scan *s = arg;
	int rc = store_del_prefix(txn, STORE_DB_TEXT, s->prefix, NULL);

	if (rc != 0)
		return rc;
	s->rec->text = (char *)"<think>older build ";
	s->rec->text_chunks = 0;
	s->rec->text_bytes = 0;
	return store_put(txn, STORE_DB_REQUESTS, s->key, &s->rec->base);
}

/* A chain record of schema 2 (text inline, no chunks) reads as before, and its next write
 * moves the whole text into chunk 0. */
static void
test_inline_text_moves_to_chunks(void **state)
{
	struct fx *f = *state;
	struct chunk_scan s;
	struct program *p;
	char *inline_text;

	submit(f, 0, "anon", 0, 0);
	p = strmap_get(f->tc.c->live, f->ids[0]);
	step_text(f, p, "x", 0);
	chunks_of(f, &s);
	inline_text = s.rec->text;
	assert_int_equal(store_update(core_store(f->tc.c), put_inline_txn, &s), 0);
	s.rec->text = inline_text;
	certa__v1__request_record__free_unpacked(s.rec, NULL);
	core_free(f->tc.c);
	f->tc.c = NULL;
	fx_open(f);
	p = strmap_get(f->tc.c->live, f->ids[0]);
	assert_non_null(p);
	assert_string_equal(p->chains[0].text, "<think>older build ");
	step_text(f, p, "then newer", 0);
	chunks_of(f, &s);
	assert_int_equal(s.n, 1);
	assert_string_equal(s.text, "<think>older build then newer");
	assert_int_equal(s.rec->text_chunks, 1);
	certa__v1__request_record__free_unpacked(s.rec, NULL);
}


/* One step of chain `idx` with a probe answer and statistics; the latest probe's certaindex
 * is set as a decision does.  group: through the group commit. */
static void
step_probe(struct fx *f, struct program *p, uint32_t idx, const char *piece, const char *answer,
    double cx, int group)
{
	struct chain *ch = &p->chains[idx];
	struct program_step_stats st = { 0.9, 0.5, 1.25, 2 };

	assert_int_equal(program_chain_append(ch, piece, ch->tokens + 3, answer, 1, &st, false,
	    NULL, false), 0);
	ch->probes[ch->nprobes - 1].certaindex = cx;
	persist_step(f, p, ch, group);
}

/* Chain idx's probe answers, each followed by ','. */
static void
probe_answers(const struct program *p, uint32_t idx, char *buf, size_t len)
{
	size_t i;

	buf[0] = '\0';
	for (i = 0; i < p->chains[idx].nprobes; i++) {
		strncat(buf, p->chains[idx].probes[i].answer, len - strlen(buf) - 1);
		strncat(buf, ",", len - strlen(buf) - 1);
	}
}

static void
reopen(struct fx *f)
{
	core_free(f->tc.c);
	f->tc.c = NULL;
	fx_open(f);
}

/* Two programs written by turns, in one group commit and alone: the write's scratch space
 * (persist_build's arena, reused by every write, and the commit sets kept for reuse) never
 * carries one program's chains, text or probe points into the other's records.  A long
 * program A (many probe points, long answers) is written just before a short program B each
 * time; after a restart each has exactly its own text and probe points. */
static void
test_scratch_reuse_between_programs(void **state)
{
	struct fx *f = *state;
	struct program_step_stats st = { 0.9, 0.5, 1.25, 2 };
	struct program *a, *b;
	struct chunk_scan s;
	char want_a[512] = "", want_b[128] = "", got[512], text_a[512] = "", text_b[128] = "";
	int k;

	submit(f, 0, "anon", 0, 0);
	submit(f, 1, "anon", 0, 0);
	a = strmap_get(f->tc.c->live, f->ids[0]);
	b = strmap_get(f->tc.c->live, f->ids[1]);
	assert_non_null(a);
	assert_non_null(b);
	for (k = 0; k < 12; k++) {
		char piece[64], ans[64];
		snprintf(piece, sizeof piece, "a-step-%02d-with-a-longer-text ", k);
		snprintf(ans, sizeof ans, "\\frac{%d}{%d}-from-program-a", k, k + 1);
		assert_int_equal(program_chain_append(&a->chains[0], piece, a->chains[0].tokens + 9,
		    ans, 1, &st, false, NULL, false), 0);
		strncat(text_a, piece, sizeof text_a - strlen(text_a) - 1);
		strncat(want_a, ans, sizeof want_a - strlen(want_a) - 1);
		strncat(want_a, ",", sizeof want_a - strlen(want_a) - 1);
		if (k % 3 == 0) {
			/* B steps every third turn: its write follows A's in the same scratch. */
			snprintf(piece, sizeof piece, "b%d ", k);
			snprintf(ans, sizeof ans, "%d", k);
			assert_int_equal(program_chain_append(&b->chains[0], piece,
			    b->chains[0].tokens + 2, ans, 1, &st, false, NULL, false), 0);
			strncat(text_b, piece, sizeof text_b - strlen(text_b) - 1);
			strncat(want_b, ans, sizeof want_b - strlen(want_b) - 1);
			strncat(want_b, ",", sizeof want_b - strlen(want_b) - 1);
		}
		if (k % 2 == 0) {
			/* One set: A first, then B. */
			commit_later(f->tc.c, a, 0);
			commit_later(f->tc.c, b, 0);
			commit_sync(f->tc.c);
		} else {
			/* Alone, in that order. */
			assert_int_equal(persist_or_wait(f->tc.c, a, 0), 0);
			assert_int_equal(persist_or_wait(f->tc.c, b, 0), 0);
		}
		assert_false(a->chains[0].dirty);
		assert_false(b->chains[0].dirty);
	}
	/* B's stored chain: its own chunks and latest probe point only. */
	memset(&s, 0, sizeof s);
	snprintf(s.prefix, sizeof s.prefix, "%s/0000/", f->ids[1]);
	snprintf(s.key, sizeof s.key, "%s/0000", f->ids[1]);
	assert_int_equal(store_view(core_store(f->tc.c), chunk_scan_txn, &s), 0);
	assert_non_null(s.rec);
	assert_string_equal(s.text, text_b);
	assert_int_equal(s.rec->n_probes, 1);
	assert_string_equal(s.rec->probes[0]->answer, "9");
	assert_string_equal(s.rec->program_id, f->ids[1]);
	certa__v1__request_record__free_unpacked(s.rec, NULL);

	reopen(f);
	a = strmap_get(f->tc.c->live, f->ids[0]);
	b = strmap_get(f->tc.c->live, f->ids[1]);
	assert_non_null(a);
	assert_non_null(b);
	assert_string_equal(a->chains[0].text, text_a);
	assert_string_equal(b->chains[0].text, text_b);
	probe_answers(a, 0, got, sizeof got);
	assert_string_equal(got, want_a);
	probe_answers(b, 0, got, sizeof got);
	assert_string_equal(got, want_b);
	assert_int_equal(a->chains[0].nprobes, 12);
	assert_int_equal(b->chains[0].nprobes, 4);
	assert_true(b->chains[0].probes[3].position == 8);
	assert_true(a->chains[0].probes[11].position == 108);
	/* Their other chains (if any) were never stepped. */
	for (k = 1; k < (int)b->n; k++)
		assert_int_equal(b->chains[k].nprobes, 0);
	for (k = 1; k < (int)a->n; k++)
		assert_int_equal(a->chains[k].nprobes, 0);
}

static int
put_chunk_txn(struct store_txn *txn, void *arg)
{
	const char **kv = arg;
	Certa__V1__TextChunk tc = CERTA__V1__TEXT_CHUNK__INIT;

	tc.text = (char *)kv[1];
	return store_put(txn, STORE_DB_TEXT, kv[0], &tc.base);
}

/* Probe points are appended with the text (schema 4): each chunk holds the probe points sealed
 * since the one before (all but the latest, which stays in the chain's record because a later
 * decision may still set its certaindex); a step with no text but a probe appends a chunk too;
 * after a restart the chain has every probe point, in order, with its values, and goes on
 * appending; a chunk whose probe points are lost is damage (the program is skipped). */
static void
test_chain_probes_in_chunks(void **state)
{
	struct fx *f = *state;
	struct chunk_scan s;
	struct program *p;
	char answers[128], key[160];
	const char *kv[2];

	submit(f, 0, "anon", 0, 0);
	p = strmap_get(f->tc.c->live, f->ids[0]);
	assert_non_null(p);
	step_probe(f, p, 0, "<think>one ", "a", 0.1, 0);
	step_probe(f, p, 0, "two ", "b", 0.2, 0);
	step_probe(f, p, 0, "", "c", 0.3, 1);
	chunks_of(f, &s);
	assert_int_equal(s.n, 3);
	assert_string_equal(s.text, "<think>one two ");
	assert_string_equal(s.answers, "a,b,");
	assert_int_equal(s.rec->chunk_probes, 2);
	assert_int_equal(s.rec->n_probes, 1);
	assert_string_equal(s.rec->probes[0]->answer, "c");
	assert_true(s.rec->probes[0]->certaindex == 0.3);
	assert_int_equal(s.rec->text_chunks, 3);
	certa__v1__request_record__free_unpacked(s.rec, NULL);

	/* A later decision changes the latest probe's certaindex: it is sealed with it. */
	p->chains[0].probes[2].certaindex = 0.35;
	step_probe(f, p, 0, "three ", "d", 0.4, 1);
	reopen(f);
	p = strmap_get(f->tc.c->live, f->ids[0]);
	assert_non_null(p);
	assert_string_equal(p->chains[0].text, "<think>one two three ");
	probe_answers(p, 0, answers, sizeof answers);
	assert_string_equal(answers, "a,b,c,d,");
	assert_true(p->chains[0].probes[0].certaindex == 0.1);
	assert_true(p->chains[0].probes[2].certaindex == 0.35);
	assert_true(p->chains[0].probes[3].certaindex == 0.4);
	assert_true(p->chains[0].probes[1].position == 6);
	assert_true(p->chains[0].probes[1].confidence == 0.9);
	assert_true(p->chains[0].probes[1].min_prob == 0.5);
	assert_true(p->chains[0].probes[1].entropy == 1.25);
	assert_true(p->chains[0].probes[1].experts == 2);
	assert_int_equal(p->chains[0].probes_saved, 3);
	assert_int_equal(p->chains[0].text_chunks, 4);

	/* It goes on appending after the restart. */
	step_probe(f, p, 0, "four", "e", 0.5, 0);
	chunks_of(f, &s);
	assert_int_equal(s.n, 5);
	assert_string_equal(s.answers, "a,b,c,d,");
	assert_int_equal(s.rec->chunk_probes, 4);
	certa__v1__request_record__free_unpacked(s.rec, NULL);
	reopen(f);
	p = strmap_get(f->tc.c->live, f->ids[0]);
	assert_non_null(p);
	probe_answers(p, 0, answers, sizeof answers);
	assert_string_equal(answers, "a,b,c,d,e,");
	assert_string_equal(p->chains[0].text, "<think>one two three four");

	/* Chunk 1 rewritten without its probe point: the count does not add up. */
	snprintf(key, sizeof key, "%s/0000/%08x", f->ids[0], 1u);
	kv[0] = key;
	kv[1] = "two ";
	assert_int_equal(store_update(core_store(f->tc.c), put_chunk_txn, kv), 0);
	reopen(f);
	assert_null(strmap_get(f->tc.c->live, f->ids[0]));
}

static int
put_schema3_txn(struct store_txn *txn, void *arg)
{
	struct program *p = arg;
	struct chain_pb pb;
	const char *kv[2];
	char key[160];
	int rc;

	rc = store_del_prefix(txn, STORE_DB_TEXT, p->id, NULL);
	if (rc != 0)
		return rc;
	snprintf(key, sizeof key, "%s/0000/%08x", p->id, 0u);
	kv[0] = key;
	kv[1] = p->chains[0].text;
	rc = put_chunk_txn(txn, kv);
	if (rc != 0)
		return rc;
	assert_int_equal(program_chain_pb_fill(p, &p->chains[0], &pb), 0);
	pb.msg.text = (char *)"";
	pb.msg.text_chunks = 1;
	pb.msg.text_bytes = p->chains[0].text_len;
	program_chain_key(p, 0, key, sizeof key);
	rc = store_put(txn, STORE_DB_REQUESTS, key, &pb.msg.base);
	program_chain_pb_free(&pb);
	return rc;
}

/* A chain record of schema 3 (text in one chunk, every probe point inline) reads as before;
 * its next write seals the probe points into the new chunk. */
static void
test_inline_probes_move_to_chunks(void **state)
{
	struct fx *f = *state;
	struct chunk_scan s;
	struct program *p;
	char answers[128];

	submit(f, 0, "anon", 0, 0);
	p = strmap_get(f->tc.c->live, f->ids[0]);
	step_probe(f, p, 0, "<think>x ", "a", 0.1, 0);
	step_probe(f, p, 0, "y ", "b", 0.2, 0);
	step_probe(f, p, 0, "z ", "c", 0.3, 0);
	assert_int_equal(store_update(core_store(f->tc.c), put_schema3_txn, p), 0);
	reopen(f);
	p = strmap_get(f->tc.c->live, f->ids[0]);
	assert_non_null(p);
	probe_answers(p, 0, answers, sizeof answers);
	assert_string_equal(answers, "a,b,c,");
	assert_int_equal(p->chains[0].probes_saved, 0);
	assert_true(p->chains[0].probes[1].certaindex == 0.2);
	step_probe(f, p, 0, "w", "d", 0.4, 1);
	chunks_of(f, &s);
	assert_int_equal(s.n, 2);
	assert_string_equal(s.text, "<think>x y z w");
	assert_string_equal(s.answers, "a,b,c,");
	assert_int_equal(s.rec->chunk_probes, 3);
	assert_int_equal(s.rec->n_probes, 1);
	certa__v1__request_record__free_unpacked(s.rec, NULL);
	reopen(f);
	p = strmap_get(f->tc.c->live, f->ids[0]);
	assert_non_null(p);
	probe_answers(p, 0, answers, sizeof answers);
	assert_string_equal(answers, "a,b,c,d,");
}

/* Chains replaced (a routing switch) or dropped and renumbered: the next write drops the
 * program's old chain records and chunks and writes the chains whole, so a restart brings
 * back the new chains, not a mix with the old ones' chunks. */
static void
test_replaced_chains_rewritten(void **state)
{
	struct fx *f = *state;
	struct program *p;
	char answers[128];

	submit(f, 0, "anon", 0, 0);
	p = strmap_get(f->tc.c->live, f->ids[0]);
	step_probe(f, p, 0, "<think>old one ", "a", 0.1, 0);
	step_probe(f, p, 0, "old two ", "b", 0.2, 0);
	step_probe(f, p, 0, "old three ", "c", 0.3, 0);
	assert_int_equal(program_resize_chains(p, 2, false), 0);
	step_probe(f, p, 0, "<think>new zero ", "x", 0.4, 0);
	step_probe(f, p, 1, "<think>new one ", "y", 0.5, 1);
	step_probe(f, p, 1, "more ", "z", 0.6, 0);
	reopen(f);
	p = strmap_get(f->tc.c->live, f->ids[0]);
	assert_non_null(p);
	assert_int_equal(p->n, 2);
	assert_string_equal(p->chains[0].text, "<think>new zero ");
	assert_string_equal(p->chains[1].text, "<think>new one more ");
	probe_answers(p, 1, answers, sizeof answers);
	assert_string_equal(answers, "y,z,");

	/* Chain 0 dropped, chain 1 becomes chain 0. */
	assert_int_equal(program_keep_chains(p, 0x2), 0);
	step_probe(f, p, 0, "end", "w", 0.7, 1);
	reopen(f);
	p = strmap_get(f->tc.c->live, f->ids[0]);
	assert_non_null(p);
	assert_int_equal(p->n, 1);
	assert_string_equal(p->chains[0].text, "<think>new one more end");
	probe_answers(p, 0, answers, sizeof answers);
	assert_string_equal(answers, "y,z,w,");
}

/* A chain whose saved counts are not a prefix of what it holds (persist_txn's fallback:
 * every chain rewritten from chunk 0): the counts kept in memory follow that rewrite, so the
 * next append goes after the one chunk there and a restart brings the chain back. */
static void
test_inconsistent_counts_rewritten(void **state)
{
	struct fx *f = *state;
	struct chunk_scan s;
	struct program *p;
	char answers[128];

	submit(f, 0, "anon", 0, 0);
	p = strmap_get(f->tc.c->live, f->ids[0]);
	assert_non_null(p);
	step_probe(f, p, 0, "<think>one ", "a", 0.1, 0);
	step_probe(f, p, 0, "two ", "b", 0.2, 0);
	assert_int_equal(p->chains[0].text_chunks, 2);
	p->chains[0].text_saved = p->chains[0].text_len + 100;   /* not a prefix */
	step_probe(f, p, 0, "three ", "c", 0.3, 0);
	assert_int_equal(p->chains[0].text_chunks, 1);
	step_probe(f, p, 0, "four", "d", 0.4, 1);
	chunks_of(f, &s);
	assert_int_equal(s.n, 2);
	assert_int_equal(s.rec->text_chunks, 2);
	assert_string_equal(s.text, "<think>one two three four");
	certa__v1__request_record__free_unpacked(s.rec, NULL);
	reopen(f);
	p = strmap_get(f->tc.c->live, f->ids[0]);
	assert_non_null(p);
	assert_string_equal(p->chains[0].text, "<think>one two three four");
	probe_answers(p, 0, answers, sizeof answers);
	assert_string_equal(answers, "a,b,c,d,");
}

/* Submits program label 0 and appends "<think>one " (3 tokens) to its chain, unwritten. */
static struct program *
submit_one_piece(struct fx *f)
{
	struct program *p;

	submit(f, 0, "anon", 0, 0);
	p = strmap_get(f->tc.c->live, f->ids[0]);
	assert_non_null(p);
	assert_int_equal(program_chain_append(&p->chains[0], "<think>one ", 3, "", 0, NULL, false,
	    NULL, false), 0);
	return p;
}

/* The group commit goes through the writer thread: after commit_flush the program stays
 * queued (not durable, no step, no event) until the loop hears of the commit; a set that fails
 * (map at max_map_size) leaves the program waiting, and once there is room its retry writes
 * it whole, so the store holds every byte of its text. */
static void
test_group_commit_async(void **state)
{
	struct fx *f = *state;
	struct filler fl = { 0, 0, 0 };
	struct chunk_scan s;
	struct program *p;
	struct chain *ch;
	uint64_t failures;
	size_t waiting;

	reopen_small(f, 1);
	p = submit_one_piece(f);
	ch = &p->chains[0];
	commit_later(f->tc.c, p, 0);
	commit_flush(f->tc.c);
	assert_true(p->commit_queued);
	assert_non_null(p->commit_set);
	run_loop(f, 200);
	assert_false(p->commit_queued);
	assert_null(p->commit_set);
	chunks_of(f, &s);
	assert_string_equal(s.text, "<think>one ");
	certa__v1__request_record__free_unpacked(s.rec, NULL);

	/* The next set fails: the program waits, its counts say nothing was written. */
	fill_store(f, &fl);
	assert_int_equal(program_chain_append(ch, "two ", 6, "", 0, NULL, false, NULL, false),
	    0);
	assert_int_equal(core_set_failures(f->tc.c), 0);
	commit_later(f->tc.c, p, 0);
	commit_flush(f->tc.c);
	run_loop(f, 200);
	assert_int_equal(core_set_failures(f->tc.c), 1);   /* the group commit, counted as such */
	core_persist_stats(f->tc.c, &failures, &waiting);
	assert_true(failures >= 1);
	assert_int_equal(waiting, 1);
	assert_true(p->persist_pending);
	assert_true(p->chains_reset);
	/* Room again: the retry rewrites the chain from chunk 0. */
	free_room(f, &fl);
	run_loop(f, 1200);
	core_persist_stats(f->tc.c, &failures, &waiting);
	assert_int_equal(waiting, 0);
	assert_false(p->chains_reset);
	chunks_of(f, &s);
	assert_string_equal(s.text, "<think>one two ");
	assert_int_equal(s.rec->text_chunks, s.n);
	assert_int_equal(s.rec->text_bytes, strlen("<think>one two "));
	certa__v1__request_record__free_unpacked(s.rec, NULL);
}

/* A watcher of a Submit, as certad's HTTP API hands one over (a local call). */
struct accept_log {
	int sends, finishes;
	uint64_t first_seq;
	grpc_status_code status;
};

static int
accept_send(void *arg, const ProtobufCMessage *msg)
{
	struct accept_log *l = arg;

	if (l->sends++ == 0)
		l->first_seq = ((const Certa__V1__ProgramEvent *)msg)->seq;
	return 0;
}

static void
accept_finish(void *arg, grpc_status_code status, const char *message)
{
	struct accept_log *l = arg;

	(void)message;
	l->finishes++;
	l->status = status;
}

static const struct rpc_call_sink accept_sink = { accept_send, accept_finish };

/* Accepted == durable, without a write on the Submit's own turn: the program waits in the
 * group commit (not ordered, nothing sent) and its watcher gets "accepted" once the commit
 * is handed out.  When its write cannot be made (map at max_map_size) the stream ends
 * UNAVAILABLE, the program is forgotten and the tenant's queued count goes back. */
static void
test_submit_accepted_when_durable(void **state)
{
	struct fx *f = *state;
	struct submit_spec spec = { .model = "", .policy = "", .idempotency_key = "" };
	struct filler fl = { 0, 0, 0 };
	struct accept_log l = { 0 };
	struct rpc_call *call;
	const char *ids[MAXP];
	size_t n, queued, running;
	uint64_t finished;

	reopen_small(f, 0);
	spec.problem = "accepted when durable";
	assert_int_equal(rpc_call_local_new(&accept_sink, &l, "test", &call), 0);
	assert_int_equal(submit_program(f->tc.c, "anon", &spec, call, f->err, sizeof f->err), 0);
	assert_int_equal(l.sends, 0);
	assert_int_equal(dispatch_order(f->tc.c, ids, MAXP, &n), 0);
	assert_int_equal(n, 0);
	run_loop(f, 200);
	assert_int_equal(l.sends, 1);
	assert_int_equal(l.first_seq, EVENTS_SEQ_ACCEPTED);
	assert_int_equal(dispatch_order(f->tc.c, ids, MAXP, &n), 0);
	assert_int_equal(n, 1);
	rpc_call_local_close(call);
	rpc_call_unref(call);

	/* No room: refused after the fact. */
	fill_store(f, &fl);
	memset(&l, 0, sizeof l);
	spec.problem = "refused when not durable";
	assert_int_equal(rpc_call_local_new(&accept_sink, &l, "test", &call), 0);
	assert_int_equal(submit_program(f->tc.c, "anon", &spec, call, f->err, sizeof f->err), 0);
	core_counts(f->tc.c, &queued, &running, &finished);
	assert_int_equal(queued, 2);
	run_loop(f, 200);
	assert_int_equal(l.sends, 0);
	assert_int_equal(l.finishes, 1);
	assert_int_equal(l.status, GRPC_STATUS_UNAVAILABLE);
	core_counts(f->tc.c, &queued, &running, &finished);
	assert_int_equal(queued, 1);
	assert_int_equal(dispatch_order(f->tc.c, ids, MAXP, &n), 0);
	assert_int_equal(n, 1);
	rpc_call_unref(call);
}

/* Cancelled while its accepting write (with an idempotency key) is with the writer thread:
 * that write commits, so the cancel's own write must not add the key again (it would fail
 * CERTA_EEXIST for ever, the program waiting and degraded); the watcher hears "accepted"
 * and then "finished", and the key names the cancelled program. */
static void
test_cancel_while_accept_in_flight(void **state)
{
	struct fx *f = *state;
	struct submit_spec spec = { .model = "", .policy = "", .idempotency_key = "key-1" };
	struct accept_log l = { 0 };
	struct rpc_call *call;
	struct program *p;
	Certa__V1__Program *pm;
	uint64_t failures;
	size_t waiting;
	char id[64];
	int st;

	f->tc.c->commit_inline_s = 0;   /* every set through the writer thread */
	spec.problem = "cancelled at once";
	assert_int_equal(rpc_call_local_new(&accept_sink, &l, "test", &call), 0);
	assert_int_equal(submit_program(f->tc.c, "anon", &spec, call, f->err, sizeof f->err), 0);
	assert_true(f->tc.c->norder > 0);
	p = f->tc.c->order[f->tc.c->norder - 1];
	snprintf(id, sizeof id, "%s", p->id);
	commit_flush(f->tc.c);   /* the set is with the writer; the loop has not heard of it */
	assert_non_null(p->commit_set);
	assert_int_equal(queries_cancel(f->tc.c, "anon", id, &st), 0);
	assert_int_equal(st, PROGRAM_CANCELLED);
	core_persist_stats(f->tc.c, &failures, &waiting);
	assert_int_equal(waiting, 0);
	assert_int_equal(failures, 0);
	assert_int_equal(f->tc.c->accepts_pending, 0);
	run_loop(f, 100);
	assert_int_equal(l.sends, 2);   /* accepted, finished */
	assert_int_equal(l.first_seq, EVENTS_SEQ_ACCEPTED);
	assert_int_equal(queries_get(f->tc.c, "anon", id, &pm), 0);
	assert_int_equal(pm->state, CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_CANCELLED);
	certa__v1__program__free_unpacked(pm, NULL);
	rpc_call_local_close(call);
	rpc_call_unref(call);
}

/* A keyed program cancelled while its accepting write is with the writer, on a full store:
 * the set fails, the cancel's own write fails, the program waits for its retry, not durable.
 * A Submit repeating the key meanwhile is refused UNAVAILABLE (not a second program under the
 * key); once there is room the retry writes the first program with its key, and a repeat is
 * answered with it. */
static void
test_repeat_key_while_cancelled_accept_retried(void **state)
{
	struct fx *f = *state;
	struct submit_spec spec = { .model = "", .policy = "", .idempotency_key = "key-1" };
	struct filler fl = { 0, 0, 0 };
	struct accept_log l = { 0 }, l2 = { 0 }, l3 = { 0 };
	struct rpc_call *call, *call2, *call3;
	struct program *p;
	size_t live;
	char id[64];
	int st, i;

	reopen_small(f, 1);
	fill_store(f, &fl);
	spec.problem = "cancelled on a full disk";
	assert_int_equal(rpc_call_local_new(&accept_sink, &l, "test", &call), 0);
	assert_int_equal(submit_program(f->tc.c, "anon", &spec, call, f->err, sizeof f->err), 0);
	p = f->tc.c->order[f->tc.c->norder - 1];
	snprintf(id, sizeof id, "%s", p->id);
	commit_flush(f->tc.c);   /* with the writer: fails for lack of room */
	assert_int_equal(queries_cancel(f->tc.c, "anon", id, &st), 0);
	assert_int_equal(st, PROGRAM_CANCELLED);
	assert_true(f->tc.c->accepts_pending > 0);
	live = strmap_count(f->tc.c->live);
	/* The repeat: refused, nothing new. */
	assert_int_equal(rpc_call_local_new(&accept_sink, &l2, "test", &call2), 0);
	assert_int_equal(submit_program(f->tc.c, "anon", &spec, call2, f->err, sizeof f->err),
	    CERTA_EUNAVAIL);
	assert_non_null(strstr(f->err, id));
	assert_int_equal(strmap_count(f->tc.c->live), live);
	/* Room again: the retry writes it (with its key). */
	free_room(f, &fl);
	for (i = 0; i < 50 && f->tc.c->accepts_pending > 0; i++)
		run_loop(f, 100);
	assert_int_equal(f->tc.c->accepts_pending, 0);
	assert_int_equal(l.first_seq, EVENTS_SEQ_ACCEPTED);
	assert_int_equal(rpc_call_local_new(&accept_sink, &l3, "test", &call3), 0);
	assert_int_equal(submit_program(f->tc.c, "anon", &spec, call3, f->err, sizeof f->err), 0);
	assert_true(l3.sends >= 1);   /* accepted (duplicate), then its final event */
	rpc_call_local_close(call3);
	rpc_call_unref(call3);
	rpc_call_local_close(call2);
	rpc_call_unref(call2);
	rpc_call_local_close(call);
	rpc_call_unref(call);
}

/* A keyed Submit waits for pending accepting writes only when its own key is among them: a
 * new key leaves the first program's write with the group commit; a repeat of the first key
 * settles it and is answered with the first program (no second one). */
static void
test_keyed_submit_waits_only_for_its_key(void **state)
{
	struct fx *f = *state;
	struct submit_spec spec = { .model = "", .policy = "", .idempotency_key = "key-a" };
	struct accept_log la = { 0 }, lb = { 0 }, la2 = { 0 };
	struct rpc_call *ca, *cb, *ca2;
	size_t live;

	f->tc.c->commit_inline_s = 0;
	spec.problem = "first";
	assert_int_equal(rpc_call_local_new(&accept_sink, &la, "test", &ca), 0);
	assert_int_equal(submit_program(f->tc.c, "anon", &spec, ca, f->err, sizeof f->err), 0);
	assert_int_equal(f->tc.c->accepts_pending, 1);
	spec.idempotency_key = "key-b";
	spec.problem = "second";
	assert_int_equal(rpc_call_local_new(&accept_sink, &lb, "test", &cb), 0);
	assert_int_equal(submit_program(f->tc.c, "anon", &spec, cb, f->err, sizeof f->err), 0);
	assert_int_equal(f->tc.c->accepts_pending, 2);   /* the first was not settled */
	assert_int_equal(la.sends, 0);
	live = strmap_count(f->tc.c->live);
	spec.idempotency_key = "key-a";
	spec.problem = "first";
	assert_int_equal(rpc_call_local_new(&accept_sink, &la2, "test", &ca2), 0);
	assert_int_equal(submit_program(f->tc.c, "anon", &spec, ca2, f->err, sizeof f->err), 0);
	assert_int_equal(strmap_count(f->tc.c->live), live);
	assert_int_equal(f->tc.c->accepts_pending, 0);   /* settled, both */
	assert_int_equal(la.first_seq, EVENTS_SEQ_ACCEPTED);
	assert_int_equal(la2.first_seq, EVENTS_SEQ_ACCEPTED);
	rpc_call_local_close(ca2);
	rpc_call_unref(ca2);
	rpc_call_local_close(cb);
	rpc_call_unref(cb);
	rpc_call_local_close(ca);
	rpc_call_unref(ca);
}

static int
riskctl_get_txn(struct store_txn *txn, void *arg)
{
	ProtobufCMessage **out = arg;

	return store_get(txn, STORE_DB_RISKCTL, "order/test", NULL, out);
}

/* A direct put (commit_put_now) is not overtaken by an older put of the same key that waits
 * for the next group commit (commit_put_later): the store ends with the newer value. */
static void
test_put_now_after_put_later(void **state)
{
	struct fx *f = *state;
	Certa__V1__RiskctlRecord r = CERTA__V1__RISKCTL_RECORD__INIT;
	Certa__V1__RiskctlRecord *got;
	ProtobufCMessage *m = NULL;

	r.samples = 1;
	assert_int_equal(commit_put_later(f->tc.c, STORE_DB_RISKCTL, "order/test", &r.base), 0);
	r.samples = 2;
	assert_int_equal(commit_put_now(f->tc.c, STORE_DB_RISKCTL, "order/test", &r.base), 0);
	commit_sync(f->tc.c);
	run_loop(f, 50);
	assert_int_equal(store_view(core_store(f->tc.c), riskctl_get_txn, &m), 0);
	got = (Certa__V1__RiskctlRecord *)m;
	assert_int_equal(got->samples, 2);
	protobuf_c_message_free_unpacked(m, NULL);
}

/* Many group commits in flight at once while the loop goes on (the writer thread commits,
 * the loop hears of it between the next steps): programs stepped again while their last
 * write is with the writer (commit_again) end with every byte of their text in the store, no
 * failure, no program left queued.  Under -fsanitize=thread this is the loop/writer race
 * check of the group commit. */
static void
test_group_commits_in_flight(void **state)
{
	struct fx *f = *state;
	struct program *ps[4];
	struct chunk_scan s;
	uint64_t failures;
	size_t waiting;
	char piece[32];
	int k, it, queued;

	f->tc.c->commit_inline_s = 0;   /* every set through the writer thread */
	for (k = 0; k < 4; k++) {
		submit(f, k, "anon", 0, 0);
		ps[k] = strmap_get(f->tc.c->live, f->ids[k]);
		assert_non_null(ps[k]);
	}
	for (it = 0; it < 100; it++) {
		for (k = 0; k < 4; k++) {
			struct chain *ch = &ps[k]->chains[0];
			snprintf(piece, sizeof piece, "%s%d ", it == 0 ? "<think>" : "", it);
			assert_int_equal(program_chain_append(ch, piece, ch->tokens + 2, "", 0,
			    NULL, false, NULL, false), 0);
			commit_later(f->tc.c, ps[k], 0);
		}
		commit_flush(f->tc.c);
		event_base_loop(f->tc.base, EVLOOP_NONBLOCK);
	}
	for (it = 0, queued = 1; it < 50 && queued; it++) {
		commit_sync(f->tc.c);
		for (k = 0, queued = 0; k < 4; k++)
			queued += ps[k]->commit_queued;
	}
	assert_int_equal(queued, 0);
	core_persist_stats(f->tc.c, &failures, &waiting);
	assert_int_equal(failures, 0);
	assert_int_equal(waiting, 0);
	for (k = 0; k < 4; k++) {
		memset(&s, 0, sizeof s);
		snprintf(s.prefix, sizeof s.prefix, "%s/0000/", f->ids[k]);
		snprintf(s.key, sizeof s.key, "%s/0000", f->ids[k]);
		assert_int_equal(store_view(core_store(f->tc.c), chunk_scan_txn, &s), 0);
		assert_non_null(s.rec);
		assert_string_equal(s.text, ps[k]->chains[0].text);
		assert_int_equal(s.rec->text_bytes, ps[k]->chains[0].text_len);
		certa__v1__request_record__free_unpacked(s.rec, NULL);
	}
}

/* The memory a peak left goes back once the load fell by half: four sets with the writer at
 * once leave four spares; with three of four programs live nothing goes, with two of four
 * (and trim_min ended) the spares but one go, and the one kept still commits. */
static void
test_spares_dropped_when_load_falls(void **state)
{
	struct fx *f = *state;
	struct program *ps[4];
	uint64_t failures;
	size_t waiting;
	int k, st = 0;

	f->tc.c->commit_inline_s = 0;   /* every set through the writer thread */
	f->tc.c->trim_min = 2;
	for (k = 0; k < 4; k++) {
		submit(f, k, "anon", 0, 0);
		ps[k] = strmap_get(f->tc.c->live, f->ids[k]);
		assert_non_null(ps[k]);
	}
	/* One program per set: none is handed out (no loop turn) before the four are built. */
	for (k = 0; k < 4; k++) {
		assert_int_equal(program_chain_append(&ps[k]->chains[0], "<think>one ", 3, "", 0,
		    NULL, false, NULL, false), 0);
		commit_later(f->tc.c, ps[k], 0);
		commit_flush(f->tc.c);
		assert_non_null(ps[k]->commit_set);
	}
	commit_sync(f->tc.c);
	assert_int_equal(f->tc.c->nsets_spare, 4);
	assert_int_equal(core_trim(f->tc.c), 0);   /* nothing ended */

	assert_int_equal(queries_cancel(f->tc.c, "anon", f->ids[0], &st), 0);
	commit_sync(f->tc.c);
	assert_int_equal(f->tc.c->norder, 3);
	assert_int_equal(core_trim(f->tc.c), 0);   /* 3 of 4: not half */
	assert_int_equal(f->tc.c->nsets_spare, 4);

	assert_int_equal(queries_cancel(f->tc.c, "anon", f->ids[1], &st), 0);
	commit_sync(f->tc.c);
	assert_int_equal(f->tc.c->norder, 2);
	assert_int_equal(core_trim(f->tc.c), CORE_TRIM_SETS);
	assert_int_equal(f->tc.c->nsets_spare, 1);
	assert_non_null(f->tc.c->sets_spare);
	assert_int_equal(core_trim(f->tc.c), 0);   /* the peak is now 2 */

	/* The set kept is reused: the next write commits. */
	assert_int_equal(program_chain_append(&ps[2]->chains[0], "two ", 6, "", 0, NULL, false,
	    NULL, false), 0);
	commit_later(f->tc.c, ps[2], 0);
	commit_sync(f->tc.c);
	assert_false(ps[2]->commit_queued);
	assert_int_equal(f->tc.c->nsets_spare, 1);
	core_persist_stats(f->tc.c, &failures, &waiting);
	assert_int_equal(failures, 0);
	assert_int_equal(waiting, 0);

	/* None live: half of the new peak (2) gone, the one spare left stays. */
	assert_int_equal(queries_cancel(f->tc.c, "anon", f->ids[2], &st), 0);
	assert_int_equal(queries_cancel(f->tc.c, "anon", f->ids[3], &st), 0);
	commit_sync(f->tc.c);
	assert_int_equal(f->tc.c->norder, 0);
	assert_int_equal(core_trim(f->tc.c), CORE_TRIM_SETS);
	assert_int_equal(f->tc.c->nsets_spare, 1);
	assert_int_equal(core_trim(f->tc.c), 0);
}

/* Reopens the core on a full 1 MiB map, every set through the writer thread, and queues a
 * riskctl put ("order/test", `samples`) larger than any room left: its set will fail. */
static void
queue_big_put(struct fx *f, struct filler *fl, uint64_t samples)
{
	Certa__V1__RiskctlRecord r = CERTA__V1__RISKCTL_RECORD__INIT;
	static uint32_t big[4096];
	size_t i;

	reopen_small(f, 1);
	fill_store(f, fl);
	r.samples = samples;
	r.n_chain_tokens = sizeof big / sizeof big[0];
	r.chain_tokens = big;
	for (i = 0; i < r.n_chain_tokens; i++)
		big[i] = 100000 + (uint32_t)i;
	assert_int_equal(commit_put_later(f->tc.c, STORE_DB_RISKCTL, "order/test", &r.base), 0);
}

/* A put queued for the group commit (commit_put_later: risk controllers, chain lengths) whose
 * set fails (map at max_map_size) is not lost: it waits for the next set, which writes it
 * once there is room. */
static void
test_put_later_survives_failed_set(void **state)
{
	struct fx *f = *state;
	struct filler fl = { 0, 0, 0 };
	ProtobufCMessage *m = NULL;

	queue_big_put(f, &fl, 7);
	commit_sync(f->tc.c);   /* the set fails: no room */
	assert_int_equal(store_view(core_store(f->tc.c), riskctl_get_txn, &m), CERTA_ENOTFOUND);
	/* Room again. */
	free_room(f, &fl);
	commit_sync(f->tc.c);   /* the next set carries it */
	assert_int_equal(store_view(core_store(f->tc.c), riskctl_get_txn, &m), 0);
	assert_int_equal(((Certa__V1__RiskctlRecord *)m)->samples, 7);
	protobuf_c_message_free_unpacked(m, NULL);
}

/* A failed set's later puts go back for the next set, but never over a newer value of the
 * same key written directly (commit_put_now) after that set failed and before the loop
 * heard of it. */
static void
test_put_now_after_failed_set(void **state)
{
	struct fx *f = *state;
	Certa__V1__RiskctlRecord r = CERTA__V1__RISKCTL_RECORD__INIT;
	struct filler fl = { 0, 0, 0 };
	ProtobufCMessage *m = NULL;

	queue_big_put(f, &fl, 1);
	commit_flush(f->tc.c);   /* with the writer: fails, the loop does not hear of it yet */
	free_room(f, &fl);
	r.samples = 2;
	r.n_chain_tokens = 0;
	r.chain_tokens = NULL;
	assert_int_equal(commit_put_now(f->tc.c, STORE_DB_RISKCTL, "order/test", &r.base), 0);
	commit_sync(f->tc.c);
	commit_sync(f->tc.c);
	assert_int_equal(store_view(core_store(f->tc.c), riskctl_get_txn, &m), 0);
	assert_int_equal(((Certa__V1__RiskctlRecord *)m)->samples, 2);
	protobuf_c_message_free_unpacked(m, NULL);
}

/* At exit (core_free) the later puts of a set that failed and was never handed out are
 * written with the others still queued. */
static void
test_failed_set_puts_written_at_exit(void **state)
{
	struct fx *f = *state;
	struct filler fl = { 0, 0, 0 };
	ProtobufCMessage *m = NULL;

	queue_big_put(f, &fl, 3);
	commit_flush(f->tc.c);   /* with the writer: fails, the loop does not hear of it */
	free_room(f, &fl);
	core_free(f->tc.c);
	fx_open(f);
	assert_int_equal(store_view(core_store(f->tc.c), riskctl_get_txn, &m), 0);
	assert_int_equal(((Certa__V1__RiskctlRecord *)m)->samples, 3);
	protobuf_c_message_free_unpacked(m, NULL);
}

/* A program stepped again while its set is with the writer (commit_again), and that set
 * fails: the next set rewrites its chains from chunk 0, so the store holds every byte. */
static void
test_commit_again_after_failed_set(void **state)
{
	struct fx *f = *state;
	struct filler fl = { 0, 0, 0 };
	struct chunk_scan s;
	struct program *p;
	struct chain *ch;
	uint64_t failures;
	size_t waiting;
	int i;

	reopen_small(f, 1);
	p = submit_one_piece(f);
	ch = &p->chains[0];
	commit_later(f->tc.c, p, 0);
	commit_sync(f->tc.c);
	fill_store(f, &fl);
	assert_int_equal(program_chain_append(ch, "two ", 6, "", 0, NULL, false, NULL, false),
	    0);
	commit_later(f->tc.c, p, 0);
	commit_flush(f->tc.c);   /* fails with the writer; the loop has not heard of it */
	assert_non_null(p->commit_set);
	assert_int_equal(program_chain_append(ch, "three ", 9, "", 0, NULL, false, NULL, false),
	    0);
	commit_later(f->tc.c, p, 0);
	assert_true(p->commit_again);
	free_room(f, &fl);
	for (i = 0; i < 10 && p->commit_queued; i++)
		commit_sync(f->tc.c);
	assert_false(p->commit_queued);
	core_persist_stats(f->tc.c, &failures, &waiting);
	assert_int_equal(waiting, 0);
	assert_false(p->chains_reset);
	chunks_of(f, &s);
	assert_string_equal(s.text, "<think>one two three ");
	assert_int_equal(s.rec->text_chunks, s.n);
	certa__v1__request_record__free_unpacked(s.rec, NULL);
}

/* With the writer idle and recent commits fast (a fresh core: none yet; tmpfs here), a set is
 * committed on the loop and handed out at once (no thread hand-off); once commits are slow
 * (commit_recent_s over commit_inline_s) the writer takes them. */
static void
test_fast_store_commits_inline(void **state)
{
	struct fx *f = *state;
	struct program *p;

	submit(f, 0, "anon", 0, 0);
	p = strmap_get(f->tc.c->live, f->ids[0]);
	assert_non_null(p);
	assert_int_equal(program_chain_append(&p->chains[0], "inline ", 3, "", 0, NULL, false,
	    NULL, false), 0);
	/* Recent commits fast (the accepting one above may have been slow on a loaded host). */
	f->tc.c->commit_recent_s = 0;
	commit_later(f->tc.c, p, 0);
	commit_flush(f->tc.c);
	assert_false(p->commit_queued);
	assert_null(p->commit_set);
	f->tc.c->commit_recent_s = 1.0;   /* as if the disk took a second per commit */
	assert_int_equal(program_chain_append(&p->chains[0], "queued ", 6, "", 0, NULL, false,
	    NULL, false), 0);
	commit_later(f->tc.c, p, 0);
	commit_flush(f->tc.c);
	assert_true(p->commit_queued);
	assert_non_null(p->commit_set);
	commit_sync(f->tc.c);
	assert_false(p->commit_queued);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_priority_then_deadline_then_age, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_tenants_share_by_weight, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancelled_program_leaves_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_deadline_heap_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_deadline_passed_in_flight, setup, teardown),
		cmocka_unit_test_setup_teardown(test_expire_waits_for_earliest_deadline, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_deadline_ends_program_without_step, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_order_survives_restart, setup, teardown),
		cmocka_unit_test_setup_teardown(test_shadow_dispatched_last, setup, teardown),
		cmocka_unit_test_setup_teardown(test_decision_uses_learned_model_tokens, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_reused_name_sees_nothing_of_old_tenant, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_throttled_tenant_held_back_at_dispatch, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_seed_stored, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failed_commit_waits_and_recovers, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_list_pages_from_index, setup, teardown),
		cmocka_unit_test_setup_teardown(test_chain_text_in_chunks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_inline_text_moves_to_chunks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_chain_probes_in_chunks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_scratch_reuse_between_programs, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_inline_probes_move_to_chunks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_replaced_chains_rewritten, setup, teardown),
		cmocka_unit_test_setup_teardown(test_inconsistent_counts_rewritten, setup, teardown),
		cmocka_unit_test_setup_teardown(test_group_commit_async, setup, teardown),
		cmocka_unit_test_setup_teardown(test_submit_accepted_when_durable, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancel_while_accept_in_flight, setup, teardown),
		cmocka_unit_test_setup_teardown(test_repeat_key_while_cancelled_accept_retried, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_keyed_submit_waits_only_for_its_key, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_put_now_after_put_later, setup, teardown),
		cmocka_unit_test_setup_teardown(test_group_commits_in_flight, setup, teardown),
		cmocka_unit_test_setup_teardown(test_spares_dropped_when_load_falls, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_put_later_survives_failed_set, setup, teardown),
		cmocka_unit_test_setup_teardown(test_put_now_after_failed_set, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failed_set_puts_written_at_exit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_commit_again_after_failed_set, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fast_store_commits_inline, setup, teardown),
	};
	int rc;

	log_init("test_dispatch", LOG_FORMAT_PLAIN, LOG_LVL_WARN);
	grpc_init();
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	grpc_shutdown();
	return rc;
}
