/* test_writer.c — unit tests of store/wset and store/writer: write sets applied in order by the
 * writer thread, the barrier for direct writes, failed sets, map growth beside readers. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib/error.h"
#include "store/store.h"
#include "store/writer.h"
#include "store/wset.h"
#include "tests/support/tmpstore.h"

#define MIB ((size_t)1024 * 1024)

struct fx {
	struct tmpstore *tmp;   /* the directory; the store is opened here with its options */
	struct store *st;
	struct writer *w;
};

static int
setup(void **state)
{
	struct fx *f = calloc(1, sizeof *f);

	if (f == NULL || tmpstore_new("writer", &f->tmp) != 0) {
		free(f);
		return -1;
	}
	tmpstore_close(f->tmp);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;

	writer_stop(f->w);
	store_close(f->st);
	tmpstore_free(f->tmp);
	free(f);
	return 0;
}

static void
open_store(struct fx *f, size_t map_size, size_t max_map_size)
{
	struct store_options o = { .map_size = map_size, .max_map_size = max_map_size,
		.nosync = 1 };

	assert_int_equal(store_open(tmpstore_dir(f->tmp), &o, &f->st), 0);
	assert_int_equal(writer_start(f->st, &f->w), 0);
}

/* A ProgramRecord with id and a step count (the value the tests compare). */
static int
put_rec(struct wset *ws, const char *id, uint64_t steps, size_t pad, int add)
{
	Certa__V1__Program prog = CERTA__V1__PROGRAM__INIT;
	Certa__V1__ProgramRecord rec = CERTA__V1__PROGRAM_RECORD__INIT;
	char *problem = NULL;
	int rc;

	if (pad > 0) {
		problem = malloc(pad + 1);
		assert_non_null(problem);
		memset(problem, 'x', pad);
		problem[pad] = '\0';
		rec.shadow_answer = problem;
	}
	prog.id = (char *)id;
	prog.tenant = "acme";
	rec.program = &prog;
	rec.step_count = steps;
	rc = add ? wset_add(ws, STORE_DB_PROGRAMS, id, &rec.base) :
	    wset_put(ws, STORE_DB_PROGRAMS, id, &rec.base);
	free(problem);
	return rc;
}

struct get {
	const char *id;
	int rc;
	uint64_t steps;
};

static int
get_txn(struct store_txn *txn, void *arg)
{
	struct get *g = arg;
	ProtobufCMessage *m = NULL;

	g->rc = store_get(txn, STORE_DB_PROGRAMS, g->id, NULL, &m);
	if (g->rc == 0) {
		g->steps = ((Certa__V1__ProgramRecord *)m)->step_count;
		protobuf_c_message_free_unpacked(m, NULL);
	}
	return 0;
}

static struct get
get_rec(struct store *st, const char *id)
{
	struct get g = { id, -1, 0 };

	assert_int_equal(store_view(st, get_txn, &g), 0);
	return g;
}

/* What the writer reported, in order. */
struct done_log {
	int order[64];
	int rc[64];
	size_t n;
};

struct done_arg {
	struct done_log *log;
	int index;
};

static void
on_done(void *arg, int rc, double seconds)
{
	struct done_arg *d = arg;

	(void)seconds;
	d->log->order[d->log->n] = d->index;
	d->log->rc[d->log->n] = rc;
	d->log->n++;
}

/* Sets commit in the order queued: the key every set writes ends with the last set's value,
 * every set's own key is there, and the reports come in order. */
static void
test_sets_commit_in_order(void **state)
{
	struct fx *f = *state;
	struct wset *ws[32];
	struct done_arg da[32];
	struct done_log log = { .n = 0 };
	char id[32];
	int i;

	open_store(f, 0, 0);
	for (i = 0; i < 32; i++) {
		assert_int_equal(wset_new(&ws[i]), 0);
		assert_int_equal(put_rec(ws[i], "shared", (uint64_t)i, (size_t)(i % 4) * 3000, 0),
		    0);
		snprintf(id, sizeof id, "own-%02d", i);
		assert_int_equal(put_rec(ws[i], id, (uint64_t)i, 0, 0), 0);
		da[i] = (struct done_arg){ &log, i };
		assert_int_equal(writer_submit(f->w, ws[i], on_done, &da[i]), 0);
	}
	writer_wait(f->w);
	assert_int_equal(writer_pending(f->w), 0);
	assert_int_equal(log.n, 32);
	for (i = 0; i < 32; i++) {
		assert_int_equal(log.order[i], i);
		assert_int_equal(log.rc[i], 0);
		snprintf(id, sizeof id, "own-%02d", i);
		assert_int_equal(get_rec(f->st, id).steps, (uint64_t)i);
		wset_free(ws[i]);
	}
	assert_int_equal(get_rec(f->st, "shared").steps, 31);
}

/* Write transactions committed so far by this process. */
static unsigned long
commits(struct store *st)
{
	struct store_stat_info si;

	assert_int_equal(store_stat(st, &si), 0);
	return si.commits;
}

/* Queues a large set (20,000 records), then 32 small ones (each its own key and "shared"),
 * optionally set `fail` adding set 10's key (it must fail); waits for all and checks the
 * reports came in order with the expected results and every record of the others is there.
 * Returns the write transactions committed meanwhile. */
static unsigned long
queue_behind_big(struct fx *f, int fail)
{
	struct wset *big, *ws[32];
	struct done_arg da[33];
	struct done_log log = { .n = 0 };
	unsigned long before;
	char id[32];
	int i;

	assert_int_equal(wset_new(&big), 0);
	for (i = 0; i < 20000; i++) {
		snprintf(id, sizeof id, "bulk-%06d", i);
		assert_int_equal(put_rec(big, id, (uint64_t)i, 200, 0), 0);
	}
	for (i = 0; i < 32; i++) {
		assert_int_equal(wset_new(&ws[i]), 0);
		snprintf(id, sizeof id, "own-%02d", i);
		assert_int_equal(put_rec(ws[i], id, (uint64_t)i, 0, 0), 0);
		assert_int_equal(put_rec(ws[i], "shared", (uint64_t)i, 0, 0), 0);
	}
	if (fail >= 0)
		assert_int_equal(put_rec(ws[fail], "own-10", 99, 0, 1), 0);
	before = commits(f->st);
	da[0] = (struct done_arg){ &log, 0 };
	assert_int_equal(writer_submit(f->w, big, on_done, &da[0]), 0);
	for (i = 0; i < 32; i++) {
		da[i + 1] = (struct done_arg){ &log, i + 1 };
		assert_int_equal(writer_submit(f->w, ws[i], on_done, &da[i + 1]), 0);
	}
	writer_wait(f->w);
	assert_int_equal(log.n, 33);
	for (i = 0; i < 33; i++) {
		assert_int_equal(log.order[i], i);
		assert_int_equal(log.rc[i], fail >= 0 && i == fail + 1 ? CERTA_EEXIST : 0);
	}
	for (i = 0; i < 32; i++) {
		snprintf(id, sizeof id, "own-%02d", i);
		if (i == fail)
			assert_int_equal(get_rec(f->st, id).rc, CERTA_ENOTFOUND);
		else
			assert_int_equal(get_rec(f->st, id).steps, (uint64_t)i);
		wset_free(ws[i]);
	}
	assert_int_equal(get_rec(f->st, "shared").steps, fail == 31 ? 30 : 31);
	assert_int_equal(get_rec(f->st, "bulk-019999").steps, 19999);
	wset_free(big);
	return commits(f->st) - before;
}

/* Sets queued while a commit runs share the next transaction: the 32 small sets queued behind
 * the large one commit in a few transactions, not one each (33 in all without merging). */
static void
test_queued_sets_share_a_commit(void **state)
{
	struct fx *f = *state;

	open_store(f, 0, 0);
	assert_true(queue_behind_big(f, -1) <= 4);
}

/* A set that fails inside a shared transaction fails alone: every other set is written (the
 * shared transaction is dropped and its sets committed one by one). */
static void
test_failed_set_fails_alone_in_a_shared_commit(void **state)
{
	struct fx *f = *state;

	open_store(f, 0, 0);
	assert_true(queue_behind_big(f, 20) >= 2);
}

/* A direct write after a queued set sees the set committed (the barrier): it reads the key the
 * set wrote last.  The set is large so that without the barrier the direct write would begin
 * while the writer is still applying it. */
static int
direct_txn(struct store_txn *txn, void *arg)
{
	struct get *g = arg;

	get_txn(txn, g);
	return 0;
}

static void
test_direct_write_waits(void **state)
{
	struct fx *f = *state;
	struct done_log log = { .n = 0 };
	struct done_arg da = { &log, 0 };
	struct wset *ws;
	struct get g = { "last", -1, 0 };
	char id[32];
	int i;

	open_store(f, 0, 0);
	assert_int_equal(wset_new(&ws), 0);
	for (i = 0; i < 20000; i++) {
		snprintf(id, sizeof id, "bulk-%06d", i);
		assert_int_equal(put_rec(ws, id, (uint64_t)i, 200, 0), 0);
	}
	assert_int_equal(put_rec(ws, "last", 77, 0, 0), 0);
	assert_int_equal(writer_submit(f->w, ws, on_done, &da), 0);
	/* No wait here: store_update must wait by itself. */
	assert_int_equal(store_update(f->st, direct_txn, &g), 0);
	assert_int_equal(g.rc, 0);
	assert_int_equal(g.steps, 77);
	assert_int_equal(log.n, 1);
	wset_free(ws);
}

/* A set whose add meets an existing key fails whole: CERTA_EEXIST reported, nothing of it
 * written, the key keeps its value; the next set commits. */
static void
test_failed_set_writes_nothing(void **state)
{
	struct fx *f = *state;
	struct done_log log = { .n = 0 };
	struct done_arg da[3] = { { &log, 0 }, { &log, 1 }, { &log, 2 } };
	struct wset *ws[3];
	int i;

	open_store(f, 0, 0);
	for (i = 0; i < 3; i++)
		assert_int_equal(wset_new(&ws[i]), 0);
	assert_int_equal(put_rec(ws[0], "key", 1, 0, 1), 0);
	assert_int_equal(put_rec(ws[1], "other", 2, 0, 0), 0);
	assert_int_equal(put_rec(ws[1], "key", 2, 0, 1), 0);
	assert_int_equal(put_rec(ws[2], "third", 3, 0, 0), 0);
	for (i = 0; i < 3; i++)
		assert_int_equal(writer_submit(f->w, ws[i], on_done, &da[i]), 0);
	writer_wait(f->w);
	assert_int_equal(log.n, 3);
	assert_int_equal(log.rc[0], 0);
	assert_int_equal(log.rc[1], CERTA_EEXIST);
	assert_int_equal(log.rc[2], 0);
	assert_int_equal(get_rec(f->st, "key").steps, 1);
	assert_int_equal(get_rec(f->st, "other").rc, CERTA_ENOTFOUND);
	assert_int_equal(get_rec(f->st, "third").steps, 3);
	for (i = 0; i < 3; i++)
		wset_free(ws[i]);
}

/* The writer grows the map (1 MiB -> several) while this thread keeps reading: growth waits
 * for the reader's transaction, every read succeeds, everything is written. */
static void
test_growth_beside_reads(void **state)
{
	struct fx *f = *state;
	struct done_log log = { .n = 0 };
	struct done_arg da[16];
	struct wset *ws[16];
	struct store_stat_info info;
	char id[32];
	int i, j, reads = 0;

	open_store(f, MIB, 256 * MIB);
	assert_int_equal(wset_new(&ws[0]), 0);
	assert_int_equal(put_rec(ws[0], "probe", 5, 0, 0), 0);
	da[0] = (struct done_arg){ &log, 0 };
	assert_int_equal(writer_submit(f->w, ws[0], on_done, &da[0]), 0);
	writer_wait(f->w);
	for (i = 1; i < 16; i++) {
		assert_int_equal(wset_new(&ws[i]), 0);
		for (j = 0; j < 200; j++) {
			snprintf(id, sizeof id, "big-%02d-%03d", i, j);
			assert_int_equal(put_rec(ws[i], id, (uint64_t)j, 2000, 0), 0);
		}
		da[i] = (struct done_arg){ &log, i };
		assert_int_equal(writer_submit(f->w, ws[i], on_done, &da[i]), 0);
	}
	while (writer_pending(f->w) > 0) {
		struct get g = get_rec(f->st, "probe");
		assert_int_equal(g.rc, 0);
		assert_int_equal(g.steps, 5);
		reads++;
	}
	writer_wait(f->w);
	assert_int_equal(log.n, 16);
	for (i = 0; i < 16; i++)
		assert_int_equal(log.rc[i], 0);
	assert_int_equal(store_stat(f->st, &info), 0);
	assert_true(info.map_grows > 0);
	assert_int_equal(get_rec(f->st, "big-15-199").steps, 199);
	assert_true(reads > 0);
	for (i = 0; i < 16; i++)
		wset_free(ws[i]);
}

/* Marks and truncation; keys and message types are checked when recorded. */
static void
test_wset_mark_truncate(void **state)
{
	struct fx *f = *state;
	struct wset *ws;
	Certa__V1__TextChunk tc = CERTA__V1__TEXT_CHUNK__INIT;
	size_t mark, bytes;
	char key[600];

	open_store(f, 0, 0);
	assert_int_equal(wset_new(&ws), 0);
	assert_int_equal(put_rec(ws, "kept", 1, 0, 0), 0);
	mark = wset_mark(ws);
	bytes = wset_bytes(ws);
	assert_int_equal(put_rec(ws, "dropped", 2, 100, 0), 0);
	assert_int_equal(wset_del_prefix(ws, STORE_DB_TEXT, "kept/"), 0);
	assert_int_equal(wset_count(ws), 3);
	wset_truncate(ws, mark);
	assert_int_equal(wset_count(ws), 1);
	assert_int_equal(wset_bytes(ws), bytes);
	/* A text chunk is not a program record; empty and oversized keys are refused. */
	assert_int_equal(wset_put(ws, STORE_DB_PROGRAMS, "x", &tc.base), -EINVAL);
	assert_int_equal(wset_put(ws, STORE_DB_TEXT, "", &tc.base), -EINVAL);
	memset(key, 'k', sizeof key - 1);
	key[sizeof key - 1] = '\0';
	assert_int_equal(wset_put(ws, STORE_DB_TEXT, key, &tc.base), -EINVAL);
	assert_int_equal(wset_count(ws), 1);
	assert_int_equal(store_update(f->st, wset_apply, ws), 0);
	assert_int_equal(get_rec(f->st, "kept").steps, 1);
	assert_int_equal(get_rec(f->st, "dropped").rc, CERTA_ENOTFOUND);
	wset_free(ws);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_sets_commit_in_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_direct_write_waits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failed_set_writes_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_queued_sets_share_a_commit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failed_set_fails_alone_in_a_shared_commit, setup,
		    teardown),
		cmocka_unit_test_setup_teardown(test_growth_beside_reads, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wset_mark_truncate, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
