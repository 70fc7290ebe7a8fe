/* store.c — LMDB environment, named DBs, protobuf-c values, map growth, recovery scan. */
#include "store/store.h"

#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <lmdb.h>

#include "lib/error.h"
#include "lib/log.h"

#define STORE_MIB (1024u * 1024u)
#define STORE_DEFAULT_MAP_SIZE ((size_t)64 * STORE_MIB)
#define STORE_DEFAULT_MAX_MAP_SIZE ((size_t)64 * 1024 * STORE_MIB)
#define STORE_MAX_DBS 8                 /* named DBs plus room to add a few */
#define STORE_RESIZE_TRIES 8            /* MDB_MAP_RESIZED retries per txn begin */
#define STORE_META_KEY "meta"
#define STORE_KEY_BUF 512               /* LMDB's default max key size (511) + NUL */

/* Name and message type of each named DB: the schema. */
static const struct {
	const char *name;
	const ProtobufCMessageDescriptor *desc;
} store_db_table[STORE_DB_COUNT] = {
	[STORE_DB_META] = { "meta", &certa__v1__meta_record__descriptor },
	[STORE_DB_PROGRAMS] = { "programs", &certa__v1__program_record__descriptor },
	[STORE_DB_REQUESTS] = { "requests", &certa__v1__request_record__descriptor },
	[STORE_DB_TENANTS] = { "tenants", &certa__v1__tenant_record__descriptor },
	[STORE_DB_POLICIES] = { "policies", &certa__v1__policy_record__descriptor },
	[STORE_DB_HISTORY] = { "history", &certa__v1__history_record__descriptor },
	[STORE_DB_IDEMPOTENCY] = { "idempotency", &certa__v1__idempotency_record__descriptor },
};

struct store {
	MDB_env *env;
	MDB_dbi dbi[STORE_DB_COUNT];
	char *path;
	size_t max_map_size;
	unsigned schema_version;
	unsigned map_grows;
	int in_txn;                 /* a store_txn_fn is running: refuse nesting */
};

struct store_txn {
	struct store *st;
	MDB_txn *txn;
	int rdonly;
	int map_full;               /* an LMDB call hit MDB_MAP_FULL: txn is dead, grow + rerun */
};

int
store_error(int mdb_rc)
{
	int err;

	switch (mdb_rc) {
	case MDB_SUCCESS:
		return 0;
	case MDB_NOTFOUND:
		err = CERTA_ENOTFOUND;
		break;
	case MDB_KEYEXIST:
		err = CERTA_EEXIST;
		break;
	case MDB_MAP_FULL:
		err = CERTA_EMAPFULL;
		break;
	case MDB_CORRUPTED:
	case MDB_INVALID:
	case MDB_VERSION_MISMATCH:
		err = CERTA_ECORRUPT;
		break;
	default:
		/* LMDB passes system errors through as positive errno values. */
		err = mdb_rc > 0 ? -mdb_rc : CERTA_ESTORE;
		break;
	}
	log_debug(LOG_STORE, "lmdb rc=%d (%s) -> %s", mdb_rc, mdb_strerror(mdb_rc),
		certa_strerror(err));
	return err;
}

const char *
store_db_name(enum store_db db)
{
	if ((unsigned)db >= STORE_DB_COUNT)
		return "?";
	return store_db_table[db].name;
}

const char *
store_path(const struct store *st)
{
	return st->path;
}

/* Translates an LMDB failure inside a txn and remembers MAP_FULL, which kills the txn even if
 * fn swallows the error. */
static int
store_txn_fail(struct store_txn *txn, int rc, const char *op, enum store_db db, const char *key)
{
	if (rc == MDB_MAP_FULL)
		txn->map_full = 1;
	else if (rc != MDB_NOTFOUND && rc != MDB_KEYEXIST)
		log_err(LOG_STORE, "%s db=%s key=%s: %s", op, store_db_name(db),
			key != NULL ? key : "-", mdb_strerror(rc));
	return store_error(rc);
}

/* Arguments shared by all record calls; checked here so LMDB never sees a bad key. */
static int
store_txn_check(const struct store_txn *txn, enum store_db db, const char *key, int write)
{
	size_t len;

	if (txn == NULL || (unsigned)db >= STORE_DB_COUNT || key == NULL)
		return -EINVAL;
	len = strlen(key);
	if (len == 0 || len > (size_t)mdb_env_get_maxkeysize(txn->st->env)) {
		log_err(LOG_STORE, "db=%s: key of %zu bytes (must be 1..%d)", store_db_name(db), len,
			mdb_env_get_maxkeysize(txn->st->env));
		return -EINVAL;
	}
	if (write && txn->rdonly)
		return -EACCES;
	return 0;
}

/* NULL means the DB's own type; another type would decode garbage, so refuse it. */
static const ProtobufCMessageDescriptor *
store_desc(enum store_db db, const ProtobufCMessageDescriptor *desc)
{
	if (desc == NULL || desc == store_db_table[db].desc)
		return store_db_table[db].desc;
	log_err(LOG_STORE, "db=%s holds %s, not %s", store_db_name(db),
		store_db_table[db].desc->name, desc->name);
	return NULL;
}

static size_t
store_map_size(const struct store *st)
{
	MDB_envinfo info;

	mdb_env_info(st->env, &info);
	return info.me_mapsize;
}

/* Begins a txn; a map grown by another process is adopted (set_mapsize(0)) and retried. */
static int
store_txn_begin(struct store *st, unsigned flags, MDB_txn **out)
{
	MDB_txn *txn;
	int rc, tries;

	for (tries = 0;; tries++) {
		rc = mdb_txn_begin(st->env, NULL, flags, &txn);
		if (rc != MDB_MAP_RESIZED || tries >= STORE_RESIZE_TRIES)
			break;
		/* No txn of ours is active here, so the map may be replaced. */
		rc = mdb_env_set_mapsize(st->env, 0);
		if (rc != 0)
			break;
		log_info(LOG_STORE, "map grown by another process, now map_mib=%zu",
			store_map_size(st) / STORE_MIB);
	}
	if (rc != 0) {
		log_err(LOG_STORE, "begin %s txn in %s: %s", (flags & MDB_RDONLY) ? "read" : "write",
			st->path, mdb_strerror(rc));
		return store_error(rc);
	}
	*out = txn;
	return 0;
}

/* Doubles the map after MDB_MAP_FULL; only called with no txn active in this process. */
static int
store_grow(struct store *st)
{
	size_t cur = store_map_size(st), next;
	int rc;

	if (cur >= st->max_map_size) {
		log_err(LOG_STORE, "map full in %s: map_kib=%zu is at max_map_kib=%zu", st->path,
			cur / 1024, st->max_map_size / 1024);
		return CERTA_EMAPFULL;
	}
	next = cur > st->max_map_size / 2 ? st->max_map_size : cur * 2;
	rc = mdb_env_set_mapsize(st->env, next);
	if (rc != 0) {
		log_err(LOG_STORE, "grow map of %s to %zu bytes: %s", st->path, next,
			mdb_strerror(rc));
		return store_error(rc);
	}
	st->map_grows++;
	log_notice(LOG_STORE, "map full, grown map_kib=%zu -> %zu (%s)", cur / 1024,
		store_map_size(st) / 1024, st->path);
	return 0;
}

int
store_update(struct store *st, store_txn_fn fn, void *arg)
{
	struct store_txn t;
	int ret, rc;

	if (st == NULL || fn == NULL)
		return -EINVAL;
	if (st->in_txn) {
		log_err(LOG_STORE, "store_update inside a transaction");
		return -EBUSY;
	}
	for (;;) {
		t = (struct store_txn){ .st = st };
		ret = store_txn_begin(st, 0, &t.txn);
		if (ret < 0)
			return ret;
		st->in_txn = 1;
		ret = fn(&t, arg);
		st->in_txn = 0;
		if (t.map_full) {
			mdb_txn_abort(t.txn);
			goto grow;
		}
		if (ret < 0) {
			mdb_txn_abort(t.txn);
			return ret;
		}
		/* Commit frees the txn whether or not it succeeds. */
		rc = mdb_txn_commit(t.txn);
		if (rc == MDB_SUCCESS)
			return ret;
		if (rc != MDB_MAP_FULL) {
			log_err(LOG_STORE, "commit in %s: %s", st->path, mdb_strerror(rc));
			return store_error(rc);
		}
grow:
		rc = store_grow(st);
		if (rc < 0)
			return rc;
	}
}

int
store_view(struct store *st, store_txn_fn fn, void *arg)
{
	struct store_txn t = { .st = st, .rdonly = 1 };
	int ret;

	if (st == NULL || fn == NULL)
		return -EINVAL;
	if (st->in_txn) {
		log_err(LOG_STORE, "store_view inside a transaction");
		return -EBUSY;
	}
	ret = store_txn_begin(st, MDB_RDONLY, &t.txn);
	if (ret < 0)
		return ret;
	st->in_txn = 1;
	ret = fn(&t, arg);
	st->in_txn = 0;
	mdb_txn_abort(t.txn);
	return ret;
}

static int
store_put_flags(struct store_txn *txn, enum store_db db, const char *key,
	const ProtobufCMessage *msg, unsigned flags)
{
	MDB_val k, v;
	size_t len, packed;
	int rc;

	rc = store_txn_check(txn, db, key, 1);
	if (rc < 0)
		return rc;
	if (msg == NULL || store_desc(db, msg->descriptor) == NULL)
		return -EINVAL;
	if (!protobuf_c_message_check(msg)) {
		log_err(LOG_STORE, "db=%s key=%s: %s fails protobuf_c_message_check",
			store_db_name(db), key, msg->descriptor->name);
		return -EINVAL;
	}
	len = protobuf_c_message_get_packed_size(msg);
	k = (MDB_val){ .mv_size = strlen(key), .mv_data = (void *)key };
	v = (MDB_val){ .mv_size = len, .mv_data = NULL };
	/* Pack straight into the page LMDB reserves for the value: no copy. */
	rc = mdb_put(txn->txn, txn->st->dbi[db], &k, &v, flags | MDB_RESERVE);
	if (rc != 0)
		return store_txn_fail(txn, rc, "put", db, key);
	packed = protobuf_c_message_pack(msg, v.mv_data);
	assert(packed == len);
	(void)packed;
	return 0;
}

int
store_put(struct store_txn *txn, enum store_db db, const char *key, const ProtobufCMessage *msg)
{
	return store_put_flags(txn, db, key, msg, 0);
}

int
store_add(struct store_txn *txn, enum store_db db, const char *key, const ProtobufCMessage *msg)
{
	return store_put_flags(txn, db, key, msg, MDB_NOOVERWRITE);
}

int
store_put_raw(struct store_txn *txn, enum store_db db, const char *key, const void *data,
	size_t len)
{
	MDB_val k, v;
	int rc;

	rc = store_txn_check(txn, db, key, 1);
	if (rc < 0)
		return rc;
	if (data == NULL && len > 0)
		return -EINVAL;
	k = (MDB_val){ .mv_size = strlen(key), .mv_data = (void *)key };
	v = (MDB_val){ .mv_size = len, .mv_data = (void *)data };
	rc = mdb_put(txn->txn, txn->st->dbi[db], &k, &v, 0);
	if (rc != 0)
		return store_txn_fail(txn, rc, "put", db, key);
	return 0;
}

int
store_get_raw(struct store_txn *txn, enum store_db db, const char *key, const void **data,
	size_t *len)
{
	MDB_val k, v;
	int rc;

	rc = store_txn_check(txn, db, key, 0);
	if (rc < 0)
		return rc;
	if (data == NULL || len == NULL)
		return -EINVAL;
	k = (MDB_val){ .mv_size = strlen(key), .mv_data = (void *)key };
	rc = mdb_get(txn->txn, txn->st->dbi[db], &k, &v);
	if (rc != 0)
		return store_txn_fail(txn, rc, "get", db, key);
	*data = v.mv_data;
	*len = v.mv_size;
	return 0;
}

/* Decodes one stored value; a value that does not decode is reported, never trusted. */
static int
store_decode(enum store_db db, const char *key, const ProtobufCMessageDescriptor *desc,
	const MDB_val *v, ProtobufCMessage **out)
{
	ProtobufCMessage *msg;

	msg = protobuf_c_message_unpack(desc, NULL, v->mv_size, v->mv_data);
	if (msg == NULL) {
		log_err(LOG_STORE, "corrupt value db=%s key=%s bytes=%zu: does not decode as %s",
			store_db_name(db), key, v->mv_size, desc->name);
		return CERTA_ECORRUPT;
	}
	*out = msg;
	return 0;
}

int
store_get(struct store_txn *txn, enum store_db db, const char *key,
	const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out)
{
	const void *data;
	MDB_val v;
	size_t len;
	int rc;

	rc = store_txn_check(txn, db, key, 0);
	if (rc < 0)
		return rc;
	desc = store_desc(db, desc);
	if (desc == NULL || out == NULL)
		return -EINVAL;
	rc = store_get_raw(txn, db, key, &data, &len);
	if (rc < 0)
		return rc;
	v = (MDB_val){ .mv_size = len, .mv_data = (void *)data };
	return store_decode(db, key, desc, &v, out);
}

int
store_del(struct store_txn *txn, enum store_db db, const char *key)
{
	MDB_val k;
	int rc;

	rc = store_txn_check(txn, db, key, 1);
	if (rc < 0)
		return rc;
	k = (MDB_val){ .mv_size = strlen(key), .mv_data = (void *)key };
	rc = mdb_del(txn->txn, txn->st->dbi[db], &k, NULL);
	if (rc != 0)
		return store_txn_fail(txn, rc, "del", db, key);
	return 0;
}

int
store_scan(struct store_txn *txn, enum store_db db, const char *prefix,
	const ProtobufCMessageDescriptor *desc, store_scan_fn fn, void *arg)
{
	char keybuf[STORE_KEY_BUF];
	ProtobufCMessage *msg;
	MDB_cursor *cur;
	MDB_cursor_op op;
	MDB_val k, v;
	size_t plen;
	int rc, ret = 0;

	if (txn == NULL || (unsigned)db >= STORE_DB_COUNT || fn == NULL)
		return -EINVAL;
	desc = store_desc(db, desc);
	if (desc == NULL)
		return -EINVAL;
	plen = prefix != NULL ? strlen(prefix) : 0;
	if (plen >= sizeof keybuf)
		return -EINVAL;
	rc = mdb_cursor_open(txn->txn, txn->st->dbi[db], &cur);
	if (rc != 0)
		return store_txn_fail(txn, rc, "cursor", db, prefix);
	/* SET_RANGE puts the cursor on the first key >= prefix. */
	k = (MDB_val){ .mv_size = plen, .mv_data = (void *)prefix };
	op = plen > 0 ? MDB_SET_RANGE : MDB_FIRST;
	for (;; op = MDB_NEXT) {
		rc = mdb_cursor_get(cur, &k, &v, op);
		if (rc == MDB_NOTFOUND)
			break;
		if (rc != 0) {
			ret = store_txn_fail(txn, rc, "scan", db, prefix);
			goto close_cursor;
		}
		if (plen > 0 && (k.mv_size < plen || memcmp(k.mv_data, prefix, plen) != 0))
			break;
		if (k.mv_size >= sizeof keybuf) {
			log_err(LOG_STORE, "db=%s: key of %zu bytes", store_db_name(db), k.mv_size);
			ret = CERTA_ECORRUPT;
			goto close_cursor;
		}
		memcpy(keybuf, k.mv_data, k.mv_size);
		keybuf[k.mv_size] = '\0';
		ret = store_decode(db, keybuf, desc, &v, &msg);
		if (ret < 0)
			goto close_cursor;
		ret = fn(keybuf, k.mv_size, msg, arg);
		protobuf_c_message_free_unpacked(msg, NULL);
		if (ret != 0)
			break;
	}
	if (ret > 0)
		ret = 0;
close_cursor:
	mdb_cursor_close(cur);
	return ret;
}

struct store_unfinished {
	int (*fn)(const Certa__V1__ProgramRecord *rec, void *arg);
	void *arg;
	size_t programs;
	size_t unfinished;
};

static int
store_unfinished_cb(const char *key, size_t keylen, const ProtobufCMessage *msg, void *arg)
{
	const Certa__V1__ProgramRecord *rec = (const Certa__V1__ProgramRecord *)msg;
	struct store_unfinished *u = arg;

	u->programs++;
	if (rec->program == NULL) {
		log_warn(LOG_STORE, "program record key=%s has no program; skipped", key);
		return 0;
	}
	if (rec->program->state != CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_QUEUED &&
	    rec->program->state != CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_RUNNING)
		return 0;
	u->unfinished++;
	return u->fn(rec, u->arg);
}

static int
store_unfinished_txn(struct store_txn *txn, void *arg)
{
	return store_scan(txn, STORE_DB_PROGRAMS, NULL, NULL, store_unfinished_cb, arg);
}

int
store_scan_unfinished(struct store *st, int (*fn)(const Certa__V1__ProgramRecord *rec,
	void *arg), void *arg)
{
	struct store_unfinished u = { .fn = fn, .arg = arg };
	int rc;

	if (st == NULL || fn == NULL)
		return -EINVAL;
	rc = store_view(st, store_unfinished_txn, &u);
	if (rc < 0) {
		log_err(LOG_STORE, "recovery scan of %s stopped after %zu programs: %s", st->path,
			u.programs, certa_strerror(rc));
		return rc;
	}
	log_info(LOG_STORE, "recovery scan: unfinished=%zu programs=%zu", u.unfinished,
		u.programs);
	return 0;
}

static int
store_stat_txn(struct store_txn *txn, void *arg)
{
	struct store_stat_info *info = arg;
	struct store *st = txn->st;
	MDB_envinfo ei;
	MDB_stat ms;
	int rc, i;

	mdb_env_info(st->env, &ei);
	rc = mdb_env_stat(st->env, &ms);
	if (rc != 0)
		return store_error(rc);
	*info = (struct store_stat_info){
		.map_size = ei.me_mapsize,
		.max_map_size = st->max_map_size,
		.page_size = ms.ms_psize,
		.used_bytes = (ei.me_last_pgno + 1) * (size_t)ms.ms_psize,
		.map_grows = st->map_grows,
	};
	for (i = 0; i < STORE_DB_COUNT; i++) {
		rc = mdb_stat(txn->txn, st->dbi[i], &ms);
		if (rc != 0)
			return store_txn_fail(txn, rc, "stat", (enum store_db)i, NULL);
		info->entries[i] = ms.ms_entries;
	}
	return 0;
}

int
store_stat(struct store *st, struct store_stat_info *out)
{
	struct store_stat_info info;
	int rc;

	if (st == NULL || out == NULL)
		return -EINVAL;
	rc = store_view(st, store_stat_txn, &info);
	if (rc < 0)
		return rc;
	*out = info;
	return 0;
}

/* Opens (creating) the named DBs and checks or writes the meta record.  Re-runnable: the dbi
 * handles are simply reassigned. */
static int
store_open_txn(struct store_txn *txn, void *arg)
{
	struct store *st = arg;
	Certa__V1__MetaRecord meta = CERTA__V1__META_RECORD__INIT;
	ProtobufCMessage *msg;
	struct timespec now;
	unsigned have;
	int rc, i;

	for (i = 0; i < STORE_DB_COUNT; i++) {
		rc = mdb_dbi_open(txn->txn, store_db_table[i].name, MDB_CREATE, &st->dbi[i]);
		if (rc != 0)
			return store_txn_fail(txn, rc, "open db", (enum store_db)i, NULL);
	}
	rc = store_get(txn, STORE_DB_META, STORE_META_KEY, NULL, &msg);
	if (rc == 0) {
		have = ((Certa__V1__MetaRecord *)msg)->schema_version;
		protobuf_c_message_free_unpacked(msg, NULL);
		if (have != st->schema_version) {
			log_err(LOG_STORE, "schema version mismatch in %s: environment has "
				"schema_version=%u, this build expects %u; refusing to open",
				st->path, have, st->schema_version);
			return CERTA_ESCHEMA;
		}
		return 0;
	}
	if (rc != CERTA_ENOTFOUND)
		return rc;
	clock_gettime(CLOCK_REALTIME, &now);
	meta.schema_version = st->schema_version;
	meta.created_unix_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
	meta.created_by = "certa";
	rc = store_put(txn, STORE_DB_META, STORE_META_KEY, &meta.base);
	if (rc == 0)
		log_info(LOG_STORE, "new environment %s schema_version=%u", st->path,
			st->schema_version);
	return rc;
}

/* mkdir that accepts an existing directory (and only a directory). */
static int
store_mkdir(const char *dir)
{
	struct stat sb;

	if (mkdir(dir, 0750) == 0) {
		log_info(LOG_STORE, "created directory %s", dir);
		return 0;
	}
	if (errno != EEXIST) {
		log_err(LOG_STORE, "mkdir %s: %s", dir, strerror(errno));
		return -errno;
	}
	if (stat(dir, &sb) != 0) {
		log_err(LOG_STORE, "stat %s: %s", dir, strerror(errno));
		return -errno;
	}
	if (!S_ISDIR(sb.st_mode)) {
		log_err(LOG_STORE, "%s is not a directory", dir);
		return -ENOTDIR;
	}
	return 0;
}

int
store_open(const char *dir, const struct store_options *opt, struct store **out)
{
	struct store_options o = { 0 };
	struct store *st;
	int rc, dead = 0;

	if (dir == NULL || *dir == '\0' || out == NULL)
		return -EINVAL;
	if (opt != NULL)
		o = *opt;
	if (o.map_size == 0)
		o.map_size = STORE_DEFAULT_MAP_SIZE;
	if (o.max_map_size == 0)
		o.max_map_size = STORE_DEFAULT_MAX_MAP_SIZE;
	if (o.max_map_size < o.map_size)
		o.max_map_size = o.map_size;
	if (o.schema_version == 0)
		o.schema_version = STORE_SCHEMA_VERSION;

	rc = store_mkdir(dir);
	if (rc < 0)
		return rc;
	st = calloc(1, sizeof *st);
	if (st == NULL)
		return -ENOMEM;
	st->path = strdup(dir);
	if (st->path == NULL) {
		rc = -ENOMEM;
		goto fail_st;
	}
	st->max_map_size = o.max_map_size;
	st->schema_version = o.schema_version;

	rc = mdb_env_create(&st->env);
	if (rc != 0) {
		log_err(LOG_STORE, "mdb_env_create: %s", mdb_strerror(rc));
		rc = store_error(rc);
		goto fail_path;
	}
	/* Before open the size is only recorded; LMDB raises it to the used size if larger. */
	rc = mdb_env_set_maxdbs(st->env, STORE_MAX_DBS);
	if (rc == 0)
		rc = mdb_env_set_mapsize(st->env, o.map_size);
	if (rc == 0)
		rc = mdb_env_open(st->env, dir, o.nosync ? MDB_NOSYNC : 0, 0640);
	if (rc != 0) {
		log_err(LOG_STORE, "open environment %s: %s", dir, mdb_strerror(rc));
		rc = store_error(rc);
		goto fail_env;
	}
	/* Reader slots of crashed processes would pin old pages forever. */
	rc = mdb_reader_check(st->env, &dead);
	if (rc == 0 && dead > 0)
		log_notice(LOG_STORE, "cleared %d stale reader slots in %s", dead, dir);

	rc = store_update(st, store_open_txn, st);
	if (rc < 0)
		goto fail_env;
	log_info(LOG_STORE, "opened %s schema_version=%u map_kib=%zu max_map_mib=%zu", dir,
		st->schema_version, store_map_size(st) / 1024, st->max_map_size / STORE_MIB);
	*out = st;
	return 0;

fail_env:
	mdb_env_close(st->env);
fail_path:
	free(st->path);
fail_st:
	free(st);
	return rc;
}

void
store_close(struct store *st)
{
	if (st == NULL)
		return;
	if (st->in_txn)
		log_err(LOG_STORE, "store_close inside a transaction");
	mdb_env_close(st->env);
	log_info(LOG_STORE, "closed %s", st->path);
	free(st->path);
	free(st);
}
