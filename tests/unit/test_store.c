/* test_store.c — unit tests of store/: records, scans, map growth, schema, corruption, tools. */
#include <errno.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <lmdb.h>

#include "lib/error.h"
#include "lib/log.h"
#include "store/store.h"

#define KIB ((size_t)1024)
#define MIB (KIB * 1024)
#define MDB_STAT_BIN "/usr/bin/mdb_stat"

/* Bytes that do not decode as any record: field 1, length-delimited, 127 bytes promised, 1 given. */
static const unsigned char garbage[] = { 0x0a, 0x7f, 0x01 };

struct fx {
	char tmp[512];        /* mkdtemp directory, removed in teardown */
	char env[600];        /* tmp/env: created by store_open */
	struct store *st;
};

static int
rm_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
	(void)sb;
	(void)type;
	(void)ftw;
	return remove(path);
}

static int
setup(void **state)
{
	const char *base = getenv("TMPDIR");
	struct fx *f = calloc(1, sizeof *f);

	if (f == NULL)
		return -1;
	if (base == NULL || *base == '\0')
		base = "/tmp";
	snprintf(f->tmp, sizeof f->tmp, "%s/certa-store-XXXXXX", base);
	if (mkdtemp(f->tmp) == NULL) {
		free(f);
		return -1;
	}
	snprintf(f->env, sizeof f->env, "%s/env", f->tmp);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;

	store_close(f->st);
	nftw(f->tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

static struct store *
open_small(struct fx *f, size_t map_size, size_t max_map_size)
{
	struct store_options o = { .map_size = map_size, .max_map_size = max_map_size,
		.nosync = 1 };

	assert_int_equal(store_open(f->env, &o, &f->st), 0);
	assert_non_null(f->st);
	return f->st;
}

static struct store *
open_default(struct fx *f)
{
	return open_small(f, 0, 0);
}

/* --- closures -------------------------------------------------------------------------- */

struct programs {
	const char *const *ids;
	const Certa__V1__ProgramState *states;
	size_t n;
};

static int
put_programs_fn(struct store_txn *txn, void *arg)
{
	const struct programs *p = arg;
	size_t i;
	int rc;

	for (i = 0; i < p->n; i++) {
		Certa__V1__Program prog = CERTA__V1__PROGRAM__INIT;
		Certa__V1__ProgramRecord rec = CERTA__V1__PROGRAM_RECORD__INIT;

		prog.id = (char *)p->ids[i];
		prog.tenant = "acme";
		prog.state = p->states[i];
		prog.tokens_used = 100 + i;
		rec.program = &prog;
		rec.step_count = 7;
		rec.budget = 4096;
		rc = store_put(txn, STORE_DB_PROGRAMS, p->ids[i], &rec.base);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static void
put_program(struct store *st, const char *id, Certa__V1__ProgramState state)
{
	struct programs p = { .ids = &id, .states = &state, .n = 1 };

	assert_int_equal(store_update(st, put_programs_fn, &p), 0);
}

/* Writes requests "<prefix>/<index:06>" [first, first+n) with `text_bytes` of text each. */
struct fill {
	const char *prefix;
	size_t first, n, text_bytes;
	unsigned runs;
	char *text;
};

static int
fill_fn(struct store_txn *txn, void *arg)
{
	struct fill *fl = arg;
	char key[64];
	size_t i;
	int rc;

	fl->runs++;
	for (i = fl->first; i < fl->first + fl->n; i++) {
		Certa__V1__RequestRecord rec = CERTA__V1__REQUEST_RECORD__INIT;

		snprintf(key, sizeof key, "%s/%06zu", fl->prefix, i);
		rec.program_id = (char *)fl->prefix;
		rec.index = (uint32_t)i;
		rec.text = fl->text;
		rec.tokens = i * 64;
		rc = store_put(txn, STORE_DB_REQUESTS, key, &rec.base);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static char *
make_text(size_t n)
{
	char *t = malloc(n + 1);
	size_t i;

	assert_non_null(t);
	for (i = 0; i < n; i++)
		t[i] = (char)('a' + (i * 7) % 26);
	t[n] = '\0';
	return t;
}

/* Collects scanned keys and checks request records against their keys. */
struct seen {
	char keys[64][32];
	size_t n, total, bad, text_bytes;
	size_t stop_after;    /* 0 = never */
	int fail_with;        /* returned at stop_after when < 0 */
};

static int
seen_fn(const char *key, size_t keylen, const ProtobufCMessage *msg, void *arg)
{
	const Certa__V1__RequestRecord *rec = (const Certa__V1__RequestRecord *)msg;
	struct seen *s = arg;
	const char *slash = strrchr(key, '/');

	if (strlen(key) != keylen || slash == NULL ||
	    strtoul(slash + 1, NULL, 10) != rec->index ||
	    strncmp(key, rec->program_id, (size_t)(slash - key)) != 0 ||
	    (s->text_bytes > 0 && strlen(rec->text) != s->text_bytes))
		s->bad++;
	if (s->n < 64)
		snprintf(s->keys[s->n++], sizeof s->keys[0], "%s", key);
	s->total++;
	if (s->stop_after > 0 && s->total == s->stop_after)
		return s->fail_with < 0 ? s->fail_with : 1;
	return 0;
}

struct scan_args {
	enum store_db db;
	const char *prefix;
	struct seen *seen;
};

static int
scan_fn(struct store_txn *txn, void *arg)
{
	struct scan_args *a = arg;

	return store_scan(txn, a->db, a->prefix, NULL, seen_fn, a->seen);
}

static int
scan_requests(struct store *st, const char *prefix, struct seen *s)
{
	struct scan_args a = { .db = STORE_DB_REQUESTS, .prefix = prefix, .seen = s };

	return store_view(st, scan_fn, &a);
}

struct get_args {
	enum store_db db;
	const char *key;
	const ProtobufCMessageDescriptor *desc;
	ProtobufCMessage *msg;
};

static int
get_fn(struct store_txn *txn, void *arg)
{
	struct get_args *g = arg;

	return store_get(txn, g->db, g->key, g->desc, &g->msg);
}

static int
del_fn(struct store_txn *txn, void *arg)
{
	struct get_args *g = arg;

	return store_del(txn, g->db, g->key);
}

struct raw_args {
	enum store_db db;
	const char *key;
	const void *data;
	size_t len;
};

static int
put_raw_fn(struct store_txn *txn, void *arg)
{
	struct raw_args *r = arg;

	return store_put_raw(txn, r->db, r->key, r->data, r->len);
}

static void
put_garbage(struct store *st, enum store_db db, const char *key)
{
	struct raw_args r = { .db = db, .key = key, .data = garbage, .len = sizeof garbage };

	assert_int_equal(store_update(st, put_raw_fn, &r), 0);
}

static void
put_requests(struct store *st, const char *prefix, size_t first, size_t n)
{
	struct fill fl = { .prefix = prefix, .first = first, .n = n, .text_bytes = 16 };

	fl.text = make_text(fl.text_bytes);
	assert_int_equal(store_update(st, fill_fn, &fl), 0);
	free(fl.text);
}

/* --- tests ----------------------------------------------------------------------------- */

static void
test_put_get_del(void **state)
{
	struct fx *f = *state;
	struct store *st = open_default(f);
	struct get_args g = { .db = STORE_DB_PROGRAMS, .key = "p-1" };
	Certa__V1__ProgramRecord *rec;
	ProtobufCMessage *sentinel = (ProtobufCMessage *)&g;

	put_program(st, "p-1", CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_RUNNING);
	assert_int_equal(store_view(st, get_fn, &g), 0);
	rec = (Certa__V1__ProgramRecord *)g.msg;
	assert_non_null(rec->program);
	assert_string_equal(rec->program->id, "p-1");
	assert_string_equal(rec->program->tenant, "acme");
	assert_int_equal(rec->program->state, CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_RUNNING);
	assert_int_equal(rec->step_count, 7);
	assert_int_equal(rec->budget, 4096);
	protobuf_c_message_free_unpacked(g.msg, NULL);

	/* Missing key: CERTA_ENOTFOUND and the out-parameter untouched. */
	g.key = "p-2";
	g.msg = sentinel;
	assert_int_equal(store_view(st, get_fn, &g), CERTA_ENOTFOUND);
	assert_ptr_equal(g.msg, sentinel);

	g.key = "p-1";
	assert_int_equal(store_update(st, del_fn, &g), 0);
	assert_int_equal(store_view(st, get_fn, &g), CERTA_ENOTFOUND);
	assert_ptr_equal(g.msg, sentinel);
	assert_int_equal(store_update(st, del_fn, &g), CERTA_ENOTFOUND);
}

static int
add_fn(struct store_txn *txn, void *arg)
{
	Certa__V1__TenantRecord rec = CERTA__V1__TENANT_RECORD__INIT;

	(void)arg;
	return store_add(txn, STORE_DB_TENANTS, "acme", &rec.base);
}

static void
test_add_refuses_existing_key(void **state)
{
	struct fx *f = *state;
	struct store *st = open_default(f);
	struct store_stat_info si;

	assert_int_equal(store_update(st, add_fn, NULL), 0);
	assert_int_equal(store_update(st, add_fn, NULL), CERTA_EEXIST);
	assert_int_equal(store_stat(st, &si), 0);
	assert_int_equal(si.entries[STORE_DB_TENANTS], 1);
}

static void
test_scan_prefix_in_key_order(void **state)
{
	struct fx *f = *state;
	struct store *st = open_default(f);
	struct seen s = { 0 };

	put_requests(st, "p2", 0, 2);
	put_requests(st, "p1", 0, 3);
	put_requests(st, "p10", 0, 1);
	put_requests(st, "q", 0, 1);

	assert_int_equal(scan_requests(st, "p1/", &s), 0);
	assert_int_equal(s.total, 3);
	assert_int_equal(s.bad, 0);
	assert_string_equal(s.keys[0], "p1/000000");
	assert_string_equal(s.keys[1], "p1/000001");
	assert_string_equal(s.keys[2], "p1/000002");

	/* "p1" also matches "p10/..."; bytewise order puts "p1/" before "p10/". */
	memset(&s, 0, sizeof s);
	assert_int_equal(scan_requests(st, "p1", &s), 0);
	assert_int_equal(s.total, 4);
	assert_string_equal(s.keys[3], "p10/000000");

	memset(&s, 0, sizeof s);
	assert_int_equal(scan_requests(st, NULL, &s), 0);
	assert_int_equal(s.total, 7);
	assert_int_equal(s.bad, 0);
	assert_string_equal(s.keys[0], "p1/000000");
	assert_string_equal(s.keys[5], "p2/000001");
	assert_string_equal(s.keys[6], "q/000000");

	memset(&s, 0, sizeof s);
	assert_int_equal(scan_requests(st, "zz", &s), 0);
	assert_int_equal(s.total, 0);
}

static void
test_scan_stop_and_error(void **state)
{
	struct fx *f = *state;
	struct store *st = open_default(f);
	struct seen s = { .stop_after = 2 };

	put_requests(st, "p", 0, 5);
	assert_int_equal(scan_requests(st, "", &s), 0);
	assert_int_equal(s.total, 2);

	memset(&s, 0, sizeof s);
	s.stop_after = 3;
	s.fail_with = -ECANCELED;
	assert_int_equal(scan_requests(st, "", &s), -ECANCELED);
	assert_int_equal(s.total, 3);
}

static int
put_then_fail_fn(struct store_txn *txn, void *arg)
{
	int rc = fill_fn(txn, arg);

	return rc < 0 ? rc : -EINVAL;
}

static void
test_update_abort_writes_nothing(void **state)
{
	struct fx *f = *state;
	struct store *st = open_default(f);
	struct fill fl = { .prefix = "p", .n = 3, .text_bytes = 8 };
	struct store_stat_info si;

	fl.text = make_text(fl.text_bytes);
	assert_int_equal(store_update(st, put_then_fail_fn, &fl), -EINVAL);
	assert_int_equal(fl.runs, 1);
	free(fl.text);
	assert_int_equal(store_stat(st, &si), 0);
	assert_int_equal(si.entries[STORE_DB_REQUESTS], 0);
}

static int
return_five_fn(struct store_txn *txn, void *arg)
{
	(void)txn;
	(void)arg;
	return 5;
}

static int
write_in_view_fn(struct store_txn *txn, void *arg)
{
	int *results = arg;

	results[0] = store_put_raw(txn, STORE_DB_META, "x", "y", 1);
	results[1] = store_del(txn, STORE_DB_META, "meta");
	return 0;
}

static void
test_view_is_read_only(void **state)
{
	struct fx *f = *state;
	struct store *st = open_default(f);
	int results[2] = { 0, 0 };

	assert_int_equal(store_view(st, write_in_view_fn, results), 0);
	assert_int_equal(results[0], -EACCES);
	assert_int_equal(results[1], -EACCES);
	/* Non-negative results of fn are passed through (and commit). */
	assert_int_equal(store_update(st, return_five_fn, NULL), 5);
	assert_int_equal(store_view(st, return_five_fn, NULL), 5);
}

struct bad_args {
	struct store *st;
	int empty_key, long_key, null_key, wrong_type_put, wrong_type_get, wrong_type_scan,
		bad_db, nested_view, nested_update;
	ProtobufCMessage *msg;
};

static int
nested_fn(struct store_txn *txn, void *arg)
{
	(void)txn;
	(void)arg;
	return 0;
}

static int
bad_args_fn(struct store_txn *txn, void *arg)
{
	struct bad_args *r = arg;
	Certa__V1__TenantRecord tenant = CERTA__V1__TENANT_RECORD__INIT;
	char longkey[600];
	struct seen s = { 0 };

	memset(longkey, 'k', sizeof longkey - 1);
	longkey[sizeof longkey - 1] = '\0';
	r->empty_key = store_put(txn, STORE_DB_TENANTS, "", &tenant.base);
	r->long_key = store_put(txn, STORE_DB_TENANTS, longkey, &tenant.base);
	r->null_key = store_put(txn, STORE_DB_TENANTS, NULL, &tenant.base);
	r->wrong_type_put = store_put(txn, STORE_DB_PROGRAMS, "p", &tenant.base);
	r->wrong_type_get = store_get(txn, STORE_DB_TENANTS, "acme",
		&certa__v1__program_record__descriptor, &r->msg);
	r->wrong_type_scan = store_scan(txn, STORE_DB_TENANTS, NULL,
		&certa__v1__program_record__descriptor, seen_fn, &s);
	r->bad_db = store_put(txn, STORE_DB_COUNT, "p", &tenant.base);
	r->nested_view = store_view(r->st, nested_fn, NULL);
	r->nested_update = store_update(r->st, nested_fn, NULL);
	return 0;
}

static void
test_bad_arguments_refused(void **state)
{
	struct fx *f = *state;
	struct bad_args r = { .st = open_default(f) };
	struct store_stat_info si;

	assert_int_equal(store_update(r.st, bad_args_fn, &r), 0);
	assert_int_equal(r.empty_key, -EINVAL);
	assert_int_equal(r.long_key, -EINVAL);
	assert_int_equal(r.null_key, -EINVAL);
	assert_int_equal(r.wrong_type_put, -EINVAL);
	assert_int_equal(r.wrong_type_get, -EINVAL);
	assert_int_equal(r.wrong_type_scan, -EINVAL);
	assert_int_equal(r.bad_db, -EINVAL);
	assert_int_equal(r.nested_view, -EBUSY);
	assert_int_equal(r.nested_update, -EBUSY);
	assert_null(r.msg);
	assert_int_equal(store_stat(r.st, &si), 0);
	assert_int_equal(si.entries[STORE_DB_TENANTS], 0);
	assert_int_equal(si.entries[STORE_DB_PROGRAMS], 0);
	assert_int_equal(store_update(NULL, nested_fn, NULL), -EINVAL);
	assert_int_equal(store_view(r.st, NULL, NULL), -EINVAL);
}

static void
check_requests(struct store *st, const char *prefix, size_t n, size_t text_bytes)
{
	struct seen s = { .text_bytes = text_bytes };

	assert_int_equal(scan_requests(st, prefix, &s), 0);
	assert_int_equal(s.total, n);
	assert_int_equal(s.bad, 0);
}

static void
test_map_grows_in_one_update(void **state)
{
	struct fx *f = *state;
	struct store *st = open_small(f, 64 * KIB, 0);
	struct fill fl = { .prefix = "big", .n = 1000, .text_bytes = 4000 };
	struct store_stat_info si;

	assert_int_equal(store_stat(st, &si), 0);
	assert_true(si.map_size < 128 * KIB);
	fl.text = make_text(fl.text_bytes);
	assert_int_equal(store_update(st, fill_fn, &fl), 0);
	free(fl.text);
	/* The first runs hit MDB_MAP_FULL and were re-run from the start after growth. */
	assert_true(fl.runs > 1);
	assert_int_equal(store_stat(st, &si), 0);
	assert_true(si.map_grows >= 1);
	assert_true(si.map_size >= 4 * MIB);
	assert_true(si.used_bytes >= fl.n * fl.text_bytes);
	assert_true(si.used_bytes <= si.map_size);
	assert_int_equal(si.entries[STORE_DB_REQUESTS], 1000);
	check_requests(st, "big/", 1000, 4000);
}

static void
test_map_grows_over_many_updates(void **state)
{
	struct fx *f = *state;
	struct store *st = open_small(f, 64 * KIB, 0);
	struct fill fl = { .prefix = "many", .n = 4, .text_bytes = 3000 };
	struct store_stat_info si;
	size_t i;

	fl.text = make_text(fl.text_bytes);
	for (i = 0; i < 250; i++) {
		fl.first = i * fl.n;
		assert_int_equal(store_update(st, fill_fn, &fl), 0);
	}
	free(fl.text);
	assert_true(fl.runs > 250);
	assert_int_equal(store_stat(st, &si), 0);
	assert_true(si.map_grows >= 4);
	assert_true(si.map_size >= 3 * MIB);
	assert_int_equal(si.entries[STORE_DB_REQUESTS], 1000);
	check_requests(st, "many/", 1000, 3000);
}

static void
test_map_full_at_max_writes_nothing(void **state)
{
	struct fx *f = *state;
	struct store *st = open_small(f, 64 * KIB, 512 * KIB);
	struct fill fl = { .prefix = "big", .n = 500, .text_bytes = 4000 };
	struct store_stat_info si;

	fl.text = make_text(fl.text_bytes);
	assert_int_equal(store_update(st, fill_fn, &fl), CERTA_EMAPFULL);
	free(fl.text);
	assert_int_equal(store_stat(st, &si), 0);
	assert_int_equal(si.map_size, 512 * KIB);
	assert_int_equal(si.max_map_size, 512 * KIB);
	assert_int_equal(si.entries[STORE_DB_REQUESTS], 0);
	/* Still usable for what fits. */
	put_requests(st, "small", 0, 10);
	check_requests(st, "small/", 10, 16);
}

/* Another process grows the map; this one adopts it on its next transaction
 * (MDB_MAP_RESIZED -> mdb_env_set_mapsize(env, 0) -> retry). */
static void
test_map_resized_by_other_process(void **state)
{
	struct fx *f = *state;
	struct store *st = open_small(f, 64 * KIB, 0);
	struct store_stat_info before, after;
	pid_t pid;
	int status = 0;

	put_requests(st, "parent", 0, 2);
	assert_int_equal(store_stat(st, &before), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* Child: its own environment handle; never touch the parent's. */
		struct store_options o = { .map_size = 8 * MIB, .nosync = 1 };
		struct fill fl = { .prefix = "child", .n = 1000, .text_bytes = 4000 };
		struct store *cst = NULL;
		int rc;

		fl.text = make_text(fl.text_bytes);
		rc = store_open(f->env, &o, &cst);
		if (rc == 0)
			rc = store_update(cst, fill_fn, &fl);
		store_close(cst);
		_exit(rc == 0 && fl.runs == 1 ? 0 : 1);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);

	check_requests(st, "child/", 1000, 4000);
	check_requests(st, "parent/", 2, 16);
	assert_int_equal(store_stat(st, &after), 0);
	assert_true(before.map_size < 4 * MIB);
	assert_true(after.map_size >= 8 * MIB);
	assert_int_equal(after.map_grows, 0);   /* adopted, not grown by this process */
	assert_int_equal(after.entries[STORE_DB_REQUESTS], 1002);
	put_requests(st, "parent", 2, 2);
	check_requests(st, "parent/", 4, 16);
}

static void
test_reopen_keeps_data(void **state)
{
	struct fx *f = *state;
	struct store *st = open_small(f, 64 * KIB, 0);
	struct get_args g = { .db = STORE_DB_PROGRAMS, .key = "p-7" };
	struct store_stat_info si;
	struct fill fl = { .prefix = "r", .n = 300, .text_bytes = 2000 };

	put_program(st, "p-7", CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_FINISHED);
	fl.text = make_text(fl.text_bytes);
	assert_int_equal(store_update(st, fill_fn, &fl), 0);
	free(fl.text);
	store_close(st);
	f->st = NULL;

	/* Reopening with a map smaller than the data still works (LMDB raises it). */
	st = open_small(f, 64 * KIB, 0);
	assert_int_equal(store_view(st, get_fn, &g), 0);
	assert_string_equal(((Certa__V1__ProgramRecord *)g.msg)->program->id, "p-7");
	assert_int_equal(((Certa__V1__ProgramRecord *)g.msg)->program->state,
		CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_FINISHED);
	protobuf_c_message_free_unpacked(g.msg, NULL);
	check_requests(st, "r/", 300, 2000);
	assert_int_equal(store_stat(st, &si), 0);
	assert_int_equal(si.entries[STORE_DB_PROGRAMS], 1);
	assert_int_equal(si.entries[STORE_DB_META], 1);
	assert_string_equal(store_path(st), f->env);
	put_requests(st, "after", 0, 3);
	check_requests(st, "after/", 3, 16);
}

static void
test_corrupt_value_get(void **state)
{
	struct fx *f = *state;
	struct store *st = open_default(f);
	struct get_args g = { .db = STORE_DB_PROGRAMS, .key = "bad" };
	ProtobufCMessage *sentinel = (ProtobufCMessage *)&g;

	put_garbage(st, STORE_DB_PROGRAMS, "bad");
	g.msg = sentinel;
	assert_int_equal(store_view(st, get_fn, &g), CERTA_EDATALOSS);
	assert_ptr_equal(g.msg, sentinel);
	/* Raw access still sees the bytes, so an operator tool can dump or delete them. */
	assert_int_equal(store_update(st, del_fn, &g), 0);
	assert_int_equal(store_view(st, get_fn, &g), CERTA_ENOTFOUND);
}

static int
unfinished_fn(const Certa__V1__ProgramRecord *rec, void *arg)
{
	struct seen *s = arg;

	if (s->n < 64)
		snprintf(s->keys[s->n++], sizeof s->keys[0], "%s", rec->program->id);
	s->total++;
	if (rec->program->state != CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_QUEUED &&
	    rec->program->state != CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_RUNNING)
		s->bad++;
	if (s->stop_after > 0 && s->total == s->stop_after)
		return s->fail_with < 0 ? s->fail_with : 1;
	return 0;
}

static void
test_corrupt_value_scan(void **state)
{
	struct fx *f = *state;
	struct store *st = open_default(f);
	struct store_stat_info si;
	unsigned long before;
	struct seen s = { 0 };

	put_requests(st, "a", 0, 3);
	put_garbage(st, STORE_DB_REQUESTS, "a/000001");
	assert_int_equal(scan_requests(st, "a/", &s), CERTA_EDATALOSS);
	assert_int_equal(s.total, 1);
	assert_string_equal(s.keys[0], "a/000000");
	/* A scan that does not reach the corrupt key is unaffected. */
	memset(&s, 0, sizeof s);
	assert_int_equal(scan_requests(st, "a/000002", &s), 0);
	assert_int_equal(s.total, 1);

	/* Recovery reports a program it cannot read, counts it, and resumes the others. */
	put_program(st, "p-a", CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_QUEUED);
	put_garbage(st, STORE_DB_PROGRAMS, "p-b");
	put_program(st, "p-c", CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_RUNNING);
	memset(&s, 0, sizeof s);
	assert_int_equal(store_stat(st, &si), 0);
	before = si.corrupt_records;
	assert_int_equal(store_scan_unfinished(st, unfinished_fn, &s), 0);
	assert_int_equal(s.total, 2);
	assert_string_equal(s.keys[0], "p-a");
	assert_string_equal(s.keys[1], "p-c");
	assert_int_equal(store_stat(st, &si), 0);
	assert_int_equal(si.corrupt_records, before + 1);
}

static void
test_schema_mismatch_refused(void **state)
{
	struct fx *f = *state;
	struct store_options o1 = { .schema_version = 1, .nosync = 1 };
	struct store_options o2 = { .schema_version = 2, .nosync = 1 };
	struct store *sentinel = (struct store *)f, *st = sentinel;
	struct get_args g = { .db = STORE_DB_META, .key = "meta" };

	assert_int_equal(store_open(f->env, &o1, &f->st), 0);
	assert_int_equal(store_view(f->st, get_fn, &g), 0);
	assert_int_equal(((Certa__V1__MetaRecord *)g.msg)->schema_version, 1);
	assert_true(((Certa__V1__MetaRecord *)g.msg)->created_unix_ms > 0);
	protobuf_c_message_free_unpacked(g.msg, NULL);
	store_close(f->st);
	f->st = NULL;

	assert_int_equal(store_open(f->env, &o2, &st), CERTA_ESCHEMA);
	assert_ptr_equal(st, sentinel);
	/* The refused open changed nothing: version 1 still opens. */
	assert_int_equal(store_open(f->env, &o1, &f->st), 0);
}

static void
test_corrupt_meta_refused(void **state)
{
	struct fx *f = *state;
	struct store *st = open_default(f);
	struct store *sentinel = (struct store *)f, *out = sentinel;

	put_garbage(st, STORE_DB_META, "meta");
	store_close(st);
	f->st = NULL;
	assert_int_equal(store_open(f->env, NULL, &out), CERTA_ECORRUPT);
	assert_ptr_equal(out, sentinel);
}

static int
put_empty_program_fn(struct store_txn *txn, void *arg)
{
	return store_put(txn, STORE_DB_PROGRAMS, "p-00-empty", arg);
}

static void
test_scan_unfinished_queued_running(void **state)
{
	static const char *const ids[] = { "p-0", "p-1", "p-2", "p-3", "p-4", "p-5", "p-6" };
	static const Certa__V1__ProgramState states[] = {
		CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_UNSPECIFIED,
		CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_QUEUED,
		CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_RUNNING,
		CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_FINISHED,
		CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_CANCELLED,
		CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_FAILED,
		CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_QUEUED,
	};
	struct fx *f = *state;
	struct store *st = open_default(f);
	struct programs p = { .ids = ids, .states = states, .n = 7 };
	Certa__V1__ProgramRecord empty = CERTA__V1__PROGRAM_RECORD__INIT;
	struct store_stat_info si;
	struct seen s = { 0 };

	assert_int_equal(store_update(st, put_programs_fn, &p), 0);
	/* A record without a program is skipped, not handed to recovery, and counted as corrupt
	 * (regression: it used to vanish with one warning). */
	assert_int_equal(store_update(st, put_empty_program_fn, &empty), 0);
	assert_int_equal(store_scan_unfinished(st, unfinished_fn, &s), 0);
	assert_int_equal(store_stat(st, &si), 0);
	assert_int_equal(si.corrupt_records, 1);
	assert_int_equal(s.total, 3);
	assert_int_equal(s.bad, 0);
	assert_string_equal(s.keys[0], "p-1");
	assert_string_equal(s.keys[1], "p-2");
	assert_string_equal(s.keys[2], "p-6");

	memset(&s, 0, sizeof s);
	s.stop_after = 2;
	assert_int_equal(store_scan_unfinished(st, unfinished_fn, &s), 0);
	assert_int_equal(s.total, 2);
	memset(&s, 0, sizeof s);
	s.stop_after = 1;
	s.fail_with = -EIO;
	assert_int_equal(store_scan_unfinished(st, unfinished_fn, &s), -EIO);
}

/* --- integrity: checksums, truncation, identity (issue 10 findings 3-5) --------------- */

struct raw_copy {
	enum store_db db;
	const char *key;
	unsigned char buf[4096];
	size_t len;
};

static int
get_raw_copy_fn(struct store_txn *txn, void *arg)
{
	struct raw_copy *c = arg;
	const void *data;
	size_t len;
	int rc;

	rc = store_get_raw(txn, c->db, c->key, &data, &len);
	if (rc < 0)
		return rc;
	if (len > sizeof c->buf)
		return -E2BIG;
	memcpy(c->buf, data, len);
	c->len = len;
	return 0;
}

/* Flips bit `bit` of the stored bytes of db/key (frame included). */
static void
flip_stored_bit(struct store *st, enum store_db db, const char *key, size_t bit)
{
	struct raw_copy c = { .db = db, .key = key };
	struct raw_args r = { .db = db, .key = key };

	assert_int_equal(store_view(st, get_raw_copy_fn, &c), 0);
	assert_true(bit / 8 < c.len);
	c.buf[bit / 8] ^= (unsigned char)(1u << (bit % 8));
	r.data = c.buf;
	r.len = c.len;
	assert_int_equal(store_update(st, put_raw_fn, &r), 0);
}

struct verify_seen {
	size_t n;
	enum store_db db[8];
	char key[8][64];
	char reason[8][160];
};

static void
verify_cb(enum store_db db, const char *key, const char *reason, void *arg)
{
	struct verify_seen *v = arg;

	if (v->n < 8) {
		v->db[v->n] = db;
		snprintf(v->key[v->n], sizeof v->key[0], "%s", key);
		snprintf(v->reason[v->n], sizeof v->reason[0], "%s", reason);
	}
	v->n++;
}

/* Regression (issue 10 finding 5): a bit flip inside a value used to decode into a different,
 * silently served record.  Every single-bit flip of a stored program is now DATA_LOSS. */
static void
test_bit_flip_is_data_loss(void **state)
{
	struct fx *f = *state;
	struct store *st = open_default(f);
	struct get_args g = { .db = STORE_DB_PROGRAMS, .key = "p-flip" };
	struct raw_copy c = { .db = STORE_DB_PROGRAMS, .key = "p-flip" };
	struct store_stat_info si;
	size_t bit, nbits;

	put_program(st, "p-flip", CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_RUNNING);
	assert_int_equal(store_view(st, get_raw_copy_fn, &c), 0);
	nbits = c.len * 8;
	for (bit = 0; bit < nbits; bit++) {
		flip_stored_bit(st, STORE_DB_PROGRAMS, "p-flip", bit);
		assert_int_equal(store_view(st, get_fn, &g), CERTA_EDATALOSS);
		flip_stored_bit(st, STORE_DB_PROGRAMS, "p-flip", bit);
	}
	assert_int_equal(store_view(st, get_fn, &g), 0);
	protobuf_c_message_free_unpacked(g.msg, NULL);
	assert_int_equal(store_stat(st, &si), 0);
	assert_int_equal(si.corrupt_records, nbits);
}

/* The key is inside the checksum: a whole, valid value moved under another key is caught. */
static void
test_value_under_other_key_is_data_loss(void **state)
{
	struct fx *f = *state;
	struct store *st = open_default(f);
	struct raw_copy c = { .db = STORE_DB_PROGRAMS, .key = "p-a" };
	struct raw_args r = { .db = STORE_DB_PROGRAMS, .key = "p-b" };
	struct get_args g = { .db = STORE_DB_PROGRAMS, .key = "p-b" };

	put_program(st, "p-a", CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_QUEUED);
	assert_int_equal(store_view(st, get_raw_copy_fn, &c), 0);
	r.data = c.buf;
	r.len = c.len;
	assert_int_equal(store_update(st, put_raw_fn, &r), 0);
	assert_int_equal(store_view(st, get_fn, &g), CERTA_EDATALOSS);
}

/* store_verify walks every DB, reports each damaged record with its DB, key and reason, and
 * does not stop at the first. */
static void
test_verify_reports_every_corrupt_record(void **state)
{
	struct fx *f = *state;
	struct store *st = open_default(f);
	struct verify_seen v = { 0 };
	size_t records = 0;

	put_program(st, "p-1", CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_QUEUED);
	put_program(st, "p-2", CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_FINISHED);
	put_requests(st, "p-1", 0, 4);
	assert_int_equal(store_verify(st, verify_cb, &v, &records), 0);
	assert_int_equal(v.n, 0);
	assert_int_equal(records, 1 + 2 + 4);   /* meta + programs + requests */

	flip_stored_bit(st, STORE_DB_PROGRAMS, "p-2", 60);
	put_garbage(st, STORE_DB_REQUESTS, "p-1/000002");
	assert_int_equal(store_verify(st, verify_cb, &v, &records), 2);
	assert_int_equal(v.n, 2);
	assert_int_equal(v.db[0], STORE_DB_PROGRAMS);
	assert_string_equal(v.key[0], "p-2");
	assert_non_null(strstr(v.reason[0], "checksum mismatch"));
	assert_int_equal(v.db[1], STORE_DB_REQUESTS);
	assert_string_equal(v.key[1], "p-1/000002");
	assert_non_null(strstr(v.reason[1], "shorter than"));
	assert_int_equal(store_verify(st, NULL, NULL, NULL), 2);
}

static int
put_program_fn(struct store_txn *txn, void *arg)
{
	Certa__V1__ProgramRecord rec = CERTA__V1__PROGRAM_RECORD__INIT;
	Certa__V1__Program pm = CERTA__V1__PROGRAM__INIT;

	(void)arg;
	pm.id = (char *)"p-1";
	pm.tenant = (char *)"acme";
	pm.created_unix_ms = 1234;
	rec.program = &pm;
	rec.tenant_uid = 0xab;
	return store_put(txn, STORE_DB_PROGRAMS, "p-1", &rec.base);
}

/* A schema 2 store is moved to 3 and on to 4 on open (only the version changes: its records
 * read as before); a build of schema 2 then refuses it. */
static void
test_schema_2_migrates_to_3(void **state)
{
	struct fx *f = *state;
	struct store_options o2 = { .schema_version = 2, .nosync = 1 };
	struct store *sentinel = (struct store *)f, *st = sentinel;
	struct get_args g = { .db = STORE_DB_META, .key = "meta" };

	assert_int_equal(STORE_SCHEMA_VERSION, 4);
	assert_int_equal(store_open(f->env, &o2, &f->st), 0);
	assert_int_equal(store_update(f->st, put_program_fn, NULL), 0);
	store_close(f->st);
	f->st = NULL;
	assert_int_equal(store_open(f->env, NULL, &f->st), 0);
	assert_int_equal(store_view(f->st, get_fn, &g), 0);
	assert_int_equal(((Certa__V1__MetaRecord *)g.msg)->schema_version, 4);
	protobuf_c_message_free_unpacked(g.msg, NULL);
	/* The per-tenant index was built from the programs already there. */
	g.db = STORE_DB_TENANT_PROGRAMS;
	g.key = "acme/00000000000000ab/p-1";
	assert_int_equal(store_view(f->st, get_fn, &g), 0);
	assert_int_equal(((Certa__V1__TenantProgramRecord *)g.msg)->created_unix_ms, 1234);
	protobuf_c_message_free_unpacked(g.msg, NULL);
	store_close(f->st);
	f->st = NULL;
	assert_int_equal(store_open(f->env, &o2, &st), CERTA_ESCHEMA);
	assert_ptr_equal(st, sentinel);
}

/* A schema 3 store is moved to 4 on open (chain records with all their probe points inline
 * read as before); a build of schema 3 then refuses it, so it never misses the probe points
 * kept in text chunks.  A store opened as 3 stays 3. */
static void
test_schema_3_migrates_to_4(void **state)
{
	struct fx *f = *state;
	struct store_options o3 = { .schema_version = 3, .nosync = 1 };
	struct store *sentinel = (struct store *)f, *st = sentinel;
	struct get_args g = { .db = STORE_DB_META, .key = "meta" };

	assert_int_equal(store_open(f->env, &o3, &f->st), 0);
	assert_int_equal(store_update(f->st, put_program_fn, NULL), 0);
	store_close(f->st);
	f->st = NULL;
	assert_int_equal(store_open(f->env, &o3, &f->st), 0);
	assert_int_equal(store_view(f->st, get_fn, &g), 0);
	assert_int_equal(((Certa__V1__MetaRecord *)g.msg)->schema_version, 3);
	protobuf_c_message_free_unpacked(g.msg, NULL);
	store_close(f->st);
	f->st = NULL;
	assert_int_equal(store_open(f->env, NULL, &f->st), 0);
	assert_int_equal(store_view(f->st, get_fn, &g), 0);
	assert_int_equal(((Certa__V1__MetaRecord *)g.msg)->schema_version, 4);
	protobuf_c_message_free_unpacked(g.msg, NULL);
	/* The records are untouched. */
	g.db = STORE_DB_PROGRAMS;
	g.key = "p-1";
	assert_int_equal(store_view(f->st, get_fn, &g), 0);
	assert_int_equal(((Certa__V1__ProgramRecord *)g.msg)->tenant_uid, 0xab);
	protobuf_c_message_free_unpacked(g.msg, NULL);
	store_close(f->st);
	f->st = NULL;
	assert_int_equal(store_open(f->env, &o3, &st), CERTA_ESCHEMA);
	assert_ptr_equal(st, sentinel);
}

struct prefix_args {
	const char *prefix;
	size_t deleted;
};

static int
put_chunks_fn(struct store_txn *txn, void *arg)
{
	static const char *const keys[] = { "p-1/0000/00000000", "p-1/0000/00000001",
	    "p-1/0001/00000000", "p-10/0000/00000000", "p-0/0000/00000000" };
	Certa__V1__TextChunk tc = CERTA__V1__TEXT_CHUNK__INIT;
	size_t i;
	int rc;

	(void)arg;
	tc.text = (char *)"piece";
	for (i = 0; i < sizeof keys / sizeof keys[0]; i++)
		if ((rc = store_put(txn, STORE_DB_TEXT, keys[i], &tc.base)) != 0)
			return rc;
	return 0;
}

static int
del_prefix_fn(struct store_txn *txn, void *arg)
{
	struct prefix_args *a = arg;

	return store_del_prefix(txn, STORE_DB_TEXT, a->prefix, &a->deleted);
}

static int
count_fn(const char *key, size_t keylen, const ProtobufCMessage *msg, void *arg)
{
	(void)key;
	(void)keylen;
	(void)msg;
	(*(size_t *)arg)++;
	return 0;
}

static int
count_text_fn(struct store_txn *txn, void *arg)
{
	return store_scan(txn, STORE_DB_TEXT, "", NULL, count_fn, arg);
}

/* store_del_prefix deletes exactly the keys under the prefix ("p-1/" is not "p-10/"). */
static void
test_del_prefix(void **state)
{
	struct fx *f = *state;
	struct store *st = open_default(f);
	struct prefix_args a = { "p-1/", 0 };
	size_t left = 0;

	assert_int_equal(store_update(st, put_chunks_fn, NULL), 0);
	assert_int_equal(store_update(st, del_prefix_fn, &a), 0);
	assert_int_equal(a.deleted, 3);
	assert_int_equal(store_view(st, count_text_fn, &left), 0);
	assert_int_equal(left, 2);
	a.deleted = 7;
	assert_int_equal(store_update(st, del_prefix_fn, &a), 0);
	assert_int_equal(a.deleted, 0);
}

/* A schema 1 store (unframed values) is refused with ESCHEMA, not reported as corrupt. */
static void
test_old_schema_store_refused(void **state)
{
	struct fx *f = *state;
	struct store *st = open_default(f);
	struct store *sentinel = (struct store *)f, *out = sentinel;
	Certa__V1__MetaRecord meta = CERTA__V1__META_RECORD__INIT;
	unsigned char buf[64];
	struct raw_args r = { .db = STORE_DB_META, .key = "meta", .data = buf };

	meta.schema_version = 1;
	meta.created_unix_ms = 1;
	meta.created_by = "certa";
	r.len = protobuf_c_message_pack(&meta.base, buf);
	assert_int_equal(store_update(st, put_raw_fn, &r), 0);
	store_close(st);
	f->st = NULL;
	assert_int_equal(store_open(f->env, NULL, &out), CERTA_ESCHEMA);
	assert_ptr_equal(out, sentinel);
}

static void
path_in(const struct fx *f, const char *name, char *buf, size_t size)
{
	snprintf(buf, size, "%s/%s", f->env, name);
}

/* Fills a store with enough pages to truncate it meaningfully; returns its used bytes. */
static size_t
make_filled_store(struct fx *f)
{
	struct store *st = open_default(f);
	struct fill fl = { .prefix = "big", .n = 200, .text_bytes = 1000 };
	struct store_stat_info si;

	fl.text = make_text(fl.text_bytes);
	assert_int_equal(store_update(st, fill_fn, &fl), 0);
	free(fl.text);
	assert_int_equal(store_stat(st, &si), 0);
	store_close(st);
	f->st = NULL;
	assert_true(si.used_bytes > 16 * si.page_size);
	return si.used_bytes;
}

/* Opens f->env in a child process: returns its store_open code, or 1000 + the signal that
 * killed it (without the meta-page check, SIGBUS: LMDB maps the pages that are not there). */
static int
open_in_child(struct fx *f, enum store_create mode)
{
	struct store_options o = { .nosync = 1, .create = mode };
	int status = 0;
	pid_t pid;

	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct store *st = NULL;
		struct seen s = { 0 };
		int rc = store_open(f->env, &o, &st);

		if (rc == 0) {
			/* Touch every page, as recovery would. */
			rc = scan_requests(st, "big/", &s);
			store_close(st);
		}
		_exit(rc == 0 ? 0 : rc == CERTA_EDATALOSS ? 2 : rc == CERTA_ECORRUPT ? 3 : 4);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (WIFSIGNALED(status))
		return 1000 + WTERMSIG(status);
	return WEXITSTATUS(status);
}

/* Regression (issue 10 finding 3): certad died of SIGBUS on a truncated data.mdb. */
static void
test_truncated_data_file_refused(void **state)
{
	struct fx *f = *state;
	char data[700];
	size_t used = make_filled_store(f);
	struct stat sb;

	path_in(f, "data.mdb", data, sizeof data);
	/* Exactly the used pages: whole, opens and reads. */
	assert_int_equal(truncate(data, (off_t)used), 0);
	assert_int_equal(open_in_child(f, STORE_CREATE_IF_EMPTY), 0);
	/* One byte short of the used pages, half, two pages: refused, no signal. */
	assert_int_equal(truncate(data, (off_t)used - 1), 0);
	assert_int_equal(open_in_child(f, STORE_CREATE_IF_EMPTY), 2);
	assert_int_equal(truncate(data, (off_t)used / 2), 0);
	assert_int_equal(open_in_child(f, STORE_CREATE_IF_EMPTY), 2);
	assert_int_equal(truncate(data, 8192), 0);
	assert_int_equal(open_in_child(f, STORE_CREATE_IF_EMPTY), 2);
	/* Less than two meta pages: refused too; --init-state does not replace it. */
	assert_int_equal(truncate(data, 4000), 0);
	assert_int_equal(open_in_child(f, STORE_CREATE_INIT), 2);
	assert_int_equal(stat(data, &sb), 0);
	assert_int_equal(sb.st_size, 4000);
}

/* Regression (issue 10 finding 4): data.mdb deleted or emptied used to give a new empty state. */
static void
test_lost_data_file_refused(void **state)
{
	struct fx *f = *state;
	struct store_options init = { .nosync = 1, .create = STORE_CREATE_INIT };
	struct store *st = open_default(f);
	struct store *sentinel = (struct store *)f, *out = sentinel;
	char data[700], id[64];
	struct stat sb;

	snprintf(id, sizeof id, "%s", store_state_id(st));
	assert_int_equal(strlen(id), 32);
	store_close(st);
	f->st = NULL;
	path_in(f, "data.mdb", data, sizeof data);

	assert_int_equal(truncate(data, 0), 0);
	assert_int_equal(store_open(f->env, NULL, &out), CERTA_EDATALOSS);
	assert_ptr_equal(out, sentinel);
	assert_int_equal(unlink(data), 0);
	assert_int_equal(store_open(f->env, NULL, &out), CERTA_EDATALOSS);
	assert_ptr_equal(out, sentinel);
	assert_int_equal(stat(data, &sb), -1);   /* nothing was created in its place */

	/* Explicitly asked for: a new state with a new id. */
	assert_int_equal(store_open(f->env, &init, &f->st), 0);
	assert_string_not_equal(store_state_id(f->st), id);
}

/* A directory with other files and no state is not taken over without --init-state. */
static void
test_nonempty_dir_needs_init(void **state)
{
	struct fx *f = *state;
	struct store_options never = { .nosync = 1, .create = STORE_CREATE_NEVER };
	struct store_options init = { .nosync = 1, .create = STORE_CREATE_INIT };
	struct store *sentinel = (struct store *)f, *out = sentinel;
	char other[700];
	FILE *fp;

	assert_int_equal(store_open(f->env, &never, &out), -ENOENT);
	assert_int_equal(mkdir(f->env, 0750), 0);
	assert_int_equal(store_open(f->env, &never, &out), CERTA_ENOTFOUND);
	path_in(f, "notes.txt", other, sizeof other);
	fp = fopen(other, "w");
	assert_non_null(fp);
	fclose(fp);
	assert_int_equal(store_open(f->env, NULL, &out), -ENOTEMPTY);
	assert_ptr_equal(out, sentinel);
	assert_int_equal(store_open(f->env, &init, &f->st), 0);
	store_close(f->st);
	f->st = NULL;
	/* Now it is a state: opens by default, and STORE_CREATE_INIT just opens it again. */
	assert_int_equal(store_open(f->env, NULL, &f->st), 0);
	store_close(f->st);
	f->st = NULL;
	assert_int_equal(store_open(f->env, &init, &f->st), 0);
}

/* The identity file: rewritten when only it was lost, fatal when it names another state. */
static void
test_state_id_checked(void **state)
{
	struct fx *f = *state;
	struct store *st = open_default(f);
	struct store *sentinel = (struct store *)f, *out = sentinel;
	char idpath[700], id[64], line[64];
	FILE *fp;

	snprintf(id, sizeof id, "%s", store_state_id(st));
	store_close(st);
	f->st = NULL;
	path_in(f, "state-id", idpath, sizeof idpath);
	assert_int_equal(unlink(idpath), 0);
	assert_int_equal(store_open(f->env, NULL, &f->st), 0);
	assert_string_equal(store_state_id(f->st), id);
	store_close(f->st);
	f->st = NULL;
	fp = fopen(idpath, "r");
	assert_non_null(fp);
	assert_non_null(fgets(line, sizeof line, fp));
	fclose(fp);
	line[strcspn(line, "\n")] = '\0';
	assert_string_equal(line, id);

	fp = fopen(idpath, "w");
	assert_non_null(fp);
	fputs("0123456789abcdef0123456789abcdef\n", fp);
	fclose(fp);
	assert_int_equal(store_open(f->env, NULL, &out), CERTA_EDATALOSS);
	fp = fopen(idpath, "w");
	assert_non_null(fp);
	fputs("not an id\n", fp);
	fclose(fp);
	assert_int_equal(store_open(f->env, NULL, &out), CERTA_ECORRUPT);
	assert_ptr_equal(out, sentinel);
}

static void
test_store_error_mapping(void **state)
{
	static const struct {
		int mdb_rc;
		int want;
	} table[] = {
		{ MDB_SUCCESS, 0 },
		{ MDB_NOTFOUND, CERTA_ENOTFOUND },
		{ MDB_KEYEXIST, CERTA_EEXIST },
		{ MDB_MAP_FULL, CERTA_EMAPFULL },
		{ MDB_CORRUPTED, CERTA_ECORRUPT },
		{ MDB_INVALID, CERTA_ECORRUPT },
		{ MDB_VERSION_MISMATCH, CERTA_ECORRUPT },
		{ ENOMEM, -ENOMEM },
		{ EACCES, -EACCES },
		{ ENOSPC, -ENOSPC },
		{ EIO, -EIO },
		{ MDB_PANIC, CERTA_ESTORE },
		{ MDB_MAP_RESIZED, CERTA_ESTORE },
		{ MDB_TXN_FULL, CERTA_ESTORE },
		{ MDB_DBS_FULL, CERTA_ESTORE },
		{ MDB_READERS_FULL, CERTA_ESTORE },
		{ MDB_BAD_TXN, CERTA_ESTORE },
		{ MDB_BAD_VALSIZE, CERTA_ESTORE },
		{ MDB_BAD_DBI, CERTA_ESTORE },
		{ -1, CERTA_ESTORE },
	};
	enum log_level saved = log_get_level();
	size_t i;

	(void)state;
	log_set_level(LOG_LVL_DEBUG);   /* exercise the debug line's formatting too */
	for (i = 0; i < sizeof table / sizeof table[0]; i++) {
		int got = store_error(table[i].mdb_rc);

		if (got != table[i].want)
			fail_msg("store_error(%d) = %d (%s), want %d (%s)", table[i].mdb_rc, got,
				certa_strerror(got), table[i].want, certa_strerror(table[i].want));
	}
	log_set_level(saved);
}

static void
test_open_creates_dir_0750(void **state)
{
	struct fx *f = *state;
	char file[700], nodir[700];
	struct store *sentinel = (struct store *)f, *out = sentinel;
	struct stat sb;
	mode_t old = umask(022);
	FILE *fp;

	open_default(f);
	umask(old);
	assert_int_equal(stat(f->env, &sb), 0);
	assert_true(S_ISDIR(sb.st_mode));
	assert_int_equal(sb.st_mode & 0777, 0750);
	snprintf(file, sizeof file, "%s/data.mdb", f->env);
	assert_int_equal(stat(file, &sb), 0);

	/* A path that is a file, and one whose parent is missing, are refused. */
	snprintf(file, sizeof file, "%s/file", f->tmp);
	fp = fopen(file, "w");
	assert_non_null(fp);
	fclose(fp);
	assert_int_equal(store_open(file, NULL, &out), -ENOTDIR);
	snprintf(nodir, sizeof nodir, "%s/no/such", f->tmp);
	assert_int_equal(store_open(nodir, NULL, &out), -ENOENT);
	assert_ptr_equal(out, sentinel);
	assert_int_equal(store_open(NULL, NULL, &out), -EINVAL);
}

static void
test_stat_counts_entries(void **state)
{
	struct fx *f = *state;
	struct store *st = open_default(f);
	struct store_stat_info si;
	int i;

	assert_int_equal(store_stat(st, &si), 0);
	assert_int_equal(si.entries[STORE_DB_META], 1);
	for (i = STORE_DB_PROGRAMS; i < STORE_DB_COUNT; i++)
		assert_int_equal(si.entries[i], 0);
	assert_int_equal(si.map_size, 64 * MIB);
	assert_int_equal(si.max_map_size, 64 * 1024 * MIB);
	assert_true(si.page_size >= 512);
	assert_true(si.used_bytes > 0 && si.used_bytes < si.map_size);

	put_program(st, "p-1", CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_QUEUED);
	put_program(st, "p-2", CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_QUEUED);
	put_requests(st, "p-1", 0, 3);
	assert_int_equal(store_stat(st, &si), 0);
	assert_int_equal(si.entries[STORE_DB_PROGRAMS], 2);
	assert_int_equal(si.entries[STORE_DB_REQUESTS], 3);
	assert_int_equal(si.entries[STORE_DB_HISTORY], 0);
	assert_string_equal(store_db_name(STORE_DB_HISTORY), "history");
	assert_string_equal(store_db_name(STORE_DB_COUNT), "?");
}

/* The standard LMDB tools must be able to read the environment. */
static void
test_mdb_stat_opens_env(void **state)
{
	struct fx *f = *state;
	struct store *st = open_default(f);
	char cmd[800], out[16384], want[64];
	size_t n = 0, r;
	FILE *p;
	int status, i;

	put_program(st, "p-1", CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_QUEUED);
	put_requests(st, "p-1", 0, 2);
	if (access(MDB_STAT_BIN, X_OK) != 0) {
		print_message("skipping mdb_stat check: %s not installed\n", MDB_STAT_BIN);
		skip();
	}
	/* Run while the store is open, as an operator would. */
	snprintf(cmd, sizeof cmd, "%s -a '%s' 2>&1", MDB_STAT_BIN, f->env);
	p = popen(cmd, "r");
	assert_non_null(p);
	while (n < sizeof out - 1 && (r = fread(out + n, 1, sizeof out - 1 - n, p)) > 0)
		n += r;
	out[n] = '\0';
	status = pclose(p);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail_msg("mdb_stat failed (status %d):\n%s", status, out);
	for (i = 0; i < STORE_DB_COUNT; i++) {
		snprintf(want, sizeof want, "Status of %s\n", store_db_name((enum store_db)i));
		if (strstr(out, want) == NULL)
			fail_msg("mdb_stat output lacks \"%s\":\n%s", store_db_name((enum store_db)i),
				out);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_put_get_del, setup, teardown),
		cmocka_unit_test_setup_teardown(test_add_refuses_existing_key, setup, teardown),
		cmocka_unit_test_setup_teardown(test_scan_prefix_in_key_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_scan_stop_and_error, setup, teardown),
		cmocka_unit_test_setup_teardown(test_update_abort_writes_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_view_is_read_only, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_arguments_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_map_grows_in_one_update, setup, teardown),
		cmocka_unit_test_setup_teardown(test_map_grows_over_many_updates, setup, teardown),
		cmocka_unit_test_setup_teardown(test_map_full_at_max_writes_nothing, setup,
			teardown),
		cmocka_unit_test_setup_teardown(test_map_resized_by_other_process, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reopen_keeps_data, setup, teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_value_get, setup, teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_value_scan, setup, teardown),
		cmocka_unit_test_setup_teardown(test_schema_mismatch_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_schema_3_migrates_to_4, setup, teardown),
		cmocka_unit_test_setup_teardown(test_schema_2_migrates_to_3, setup, teardown),
		cmocka_unit_test_setup_teardown(test_del_prefix, setup, teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_meta_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_scan_unfinished_queued_running, setup,
			teardown),
		cmocka_unit_test_setup_teardown(test_bit_flip_is_data_loss, setup, teardown),
		cmocka_unit_test_setup_teardown(test_value_under_other_key_is_data_loss, setup,
			teardown),
		cmocka_unit_test_setup_teardown(test_verify_reports_every_corrupt_record, setup,
			teardown),
		cmocka_unit_test_setup_teardown(test_old_schema_store_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_truncated_data_file_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lost_data_file_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_nonempty_dir_needs_init, setup, teardown),
		cmocka_unit_test_setup_teardown(test_state_id_checked, setup, teardown),
		cmocka_unit_test(test_store_error_mapping),
		cmocka_unit_test_setup_teardown(test_open_creates_dir_0750, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stat_counts_entries, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mdb_stat_opens_env, setup, teardown),
	};

	log_init("test_store", LOG_FORMAT_PLAIN, LOG_LVL_NOTICE);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
