/* store.c — LMDB environment, named DBs, protobuf-c values, map growth, recovery scan. */
#include "store/store.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <lmdb.h>

#include "lib/crc32c.h"
#include "lib/error.h"
#include "lib/log.h"

#define STORE_MIB (1024u * 1024u)
#define STORE_DEFAULT_MAP_SIZE ((size_t)64 * STORE_MIB)
#define STORE_DEFAULT_MAX_MAP_SIZE ((size_t)64 * 1024 * STORE_MIB)
#define STORE_MAX_DBS 16                /* named DBs plus room to add a few */
#define STORE_RESIZE_TRIES 8            /* MDB_MAP_RESIZED retries per txn begin */
#define STORE_META_KEY "meta"
#define STORE_KEY_BUF 512               /* LMDB's default max key size (511) + NUL */
#define STORE_DATA_FILE "data.mdb"
#define STORE_ID_FILE "state-id"
#define STORE_ID_BYTES 16               /* random bytes of a state id (32 hex digits) */

/* Every value is framed: [format byte][CRC-32C of key + message, little-endian][message]. */
#define STORE_REC_FORMAT 0xc2u          /* schema 2; never the first byte of a v1 MetaRecord */
#define STORE_REC_HDR 5

/* LMDB 0.9.x on-disk meta pages (mdb.c: MDB_page, MDB_meta, MDB_db; LP64).  Pages 0 and 1 each
 * hold a 16-byte page header (p_pgno 8, mp_pad 2, mp_flags 2, lower/upper 4) and then MDB_meta:
 * magic 4, version 4, address 8, mapsize 8, two MDB_db of 48 bytes (the FREE_DBI one's md_pad is
 * the page size), last_pg 8, txnid 8.  The newer (higher txnid) valid meta is the live one. */
#define STORE_MDB_MAGIC 0xBEEFC0DEu
#define STORE_MDB_DATA_VERSION 1u
#define STORE_MDB_P_META 0x08u
#define STORE_MDB_OFF_FLAGS 10
#define STORE_MDB_OFF_META 16
#define STORE_MDB_META_MAGIC 0
#define STORE_MDB_META_VERSION 4
#define STORE_MDB_META_PSIZE 24         /* mm_dbs[FREE_DBI].md_pad */
#define STORE_MDB_META_LAST_PG 120
#define STORE_MDB_META_TXNID 128
#define STORE_MDB_META_END 136

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
	[STORE_DB_RISKCTL] = { "riskctl", &certa__v1__riskctl_record__descriptor },
	[STORE_DB_TEXT] = { "text", &certa__v1__text_chunk__descriptor },
	[STORE_DB_TENANT_PROGRAMS] = { "tenant_programs",
		&certa__v1__tenant_program_record__descriptor },
};

struct store {
	MDB_env *env;
	MDB_dbi dbi[STORE_DB_COUNT];
	char *path;
	size_t max_map_size;
	unsigned schema_version;
	unsigned map_grows;
	/* Transactions may run on two threads (the loop's, and a writer thread's: store/writer.h).
	 * Every transaction holds map_lock shared; changing the map size (which LMDB allows only
	 * with no transaction active in the process) holds it exclusive. */
	pthread_rwlock_t map_lock;
	void (*barrier)(void *arg);   /* store_update waits on it first (store_set_barrier) */
	void *barrier_arg;
	int creating;               /* store_open decided on a new state: write meta + id */
	char state_id[2 * STORE_ID_BYTES + 1];  /* from state-id; "" when absent */
	unsigned long corrupt_records;  /* damaged records met by reads since open */
	atomic_ulong commits;       /* write transactions committed since open (any thread) */
};

/* A store_txn_fn is running on this thread: refuse nesting. */
static _Thread_local int store_in_txn;

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

const ProtobufCMessageDescriptor *
store_db_type(enum store_db db)
{
	if ((unsigned)db >= STORE_DB_COUNT)
		return NULL;
	return store_db_table[db].desc;
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

static int store_grow_locked(struct store *st);

/* Adopts a map grown by another process (set_mapsize(0)); holds map_lock exclusive, so no
 * transaction of this process is active.  Called with map_lock not held. */
static int
store_adopt_map(struct store *st)
{
	int rc;

	pthread_rwlock_wrlock(&st->map_lock);
	rc = mdb_env_set_mapsize(st->env, 0);
	pthread_rwlock_unlock(&st->map_lock);
	if (rc != 0)
		return rc;
	log_info(LOG_STORE, "map grown by another process, now map_mib=%zu",
		store_map_size(st) / STORE_MIB);
	return 0;
}

/* Begins a txn with map_lock held shared (released on failure); a map grown by another
 * process is adopted and retried. */
static int
store_txn_begin(struct store *st, unsigned flags, MDB_txn **out)
{
	MDB_txn *txn;
	int rc, tries;

	for (tries = 0;; tries++) {
		pthread_rwlock_rdlock(&st->map_lock);
		rc = mdb_txn_begin(st->env, NULL, flags, &txn);
		if (rc == 0)
			break;
		pthread_rwlock_unlock(&st->map_lock);
		if (rc != MDB_MAP_RESIZED || tries >= STORE_RESIZE_TRIES)
			break;
		rc = store_adopt_map(st);
		if (rc != 0)
			break;
	}
	if (rc != 0) {
		log_err(LOG_STORE, "begin %s txn in %s: %s", (flags & MDB_RDONLY) ? "read" : "write",
			st->path, mdb_strerror(rc));
		return store_error(rc);
	}
	*out = txn;
	return 0;
}

/* Doubles the map after MDB_MAP_FULL; called with map_lock not held (taken exclusive here, so
 * no txn of this process is active). */
static int
store_grow(struct store *st)
{
	int rc;

	pthread_rwlock_wrlock(&st->map_lock);
	rc = store_grow_locked(st);
	pthread_rwlock_unlock(&st->map_lock);
	return rc;
}

static int
store_grow_locked(struct store *st)
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

void
store_set_barrier(struct store *st, void (*fn)(void *arg), void *arg)
{
	st->barrier = fn;
	st->barrier_arg = arg;
}

int
store_update_now(struct store *st, store_txn_fn fn, void *arg)
{
	struct store_txn t;
	int ret, rc;

	if (st == NULL || fn == NULL)
		return -EINVAL;
	if (store_in_txn) {
		log_err(LOG_STORE, "store_update inside a transaction");
		return -EBUSY;
	}
	for (;;) {
		t = (struct store_txn){ .st = st };
		ret = store_txn_begin(st, 0, &t.txn);
		if (ret < 0)
			return ret;
		store_in_txn = 1;
		ret = fn(&t, arg);
		store_in_txn = 0;
		if (t.map_full) {
			mdb_txn_abort(t.txn);
			pthread_rwlock_unlock(&st->map_lock);
			goto grow;
		}
		if (ret < 0) {
			mdb_txn_abort(t.txn);
			pthread_rwlock_unlock(&st->map_lock);
			return ret;
		}
		/* Commit frees the txn whether or not it succeeds. */
		rc = mdb_txn_commit(t.txn);
		pthread_rwlock_unlock(&st->map_lock);
		if (rc == MDB_SUCCESS) {
			atomic_fetch_add_explicit(&st->commits, 1, memory_order_relaxed);
			return ret;
		}
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
store_update(struct store *st, store_txn_fn fn, void *arg)
{
	if (st != NULL && st->barrier != NULL && !store_in_txn)
		st->barrier(st->barrier_arg);
	return store_update_now(st, fn, arg);
}

int
store_view(struct store *st, store_txn_fn fn, void *arg)
{
	struct store_txn t = { .st = st, .rdonly = 1 };
	int ret;

	if (st == NULL || fn == NULL)
		return -EINVAL;
	if (store_in_txn) {
		log_err(LOG_STORE, "store_view inside a transaction");
		return -EBUSY;
	}
	ret = store_txn_begin(st, MDB_RDONLY, &t.txn);
	if (ret < 0)
		return ret;
	store_in_txn = 1;
	ret = fn(&t, arg);
	store_in_txn = 0;
	mdb_txn_abort(t.txn);
	pthread_rwlock_unlock(&st->map_lock);
	return ret;
}

/* The checksum covers the key too, so a value that ends up under another key is caught. */
static uint32_t
store_rec_crc(const void *key, size_t keylen, const void *msg, size_t len)
{
	return crc32c_update(crc32c_update(0, key, keylen), msg, len);
}

/* Checks a value's frame; on success msg and len are the packed message inside it.  On failure
 * `reason` says what is wrong, for the log and store_verify. */
static int
store_unframe(const MDB_val *k, const MDB_val *v, const uint8_t **msg, size_t *len,
	char *reason, size_t rsize)
{
	const uint8_t *p = v->mv_data;
	uint32_t stored, computed;

	if (v->mv_size < STORE_REC_HDR) {
		snprintf(reason, rsize, "value of %zu bytes is shorter than its %d-byte header",
			v->mv_size, STORE_REC_HDR);
		return CERTA_EDATALOSS;
	}
	if (p[0] != STORE_REC_FORMAT) {
		snprintf(reason, rsize, "unknown format byte 0x%02x (expected 0x%02x)", p[0],
			STORE_REC_FORMAT);
		return CERTA_EDATALOSS;
	}
	stored = (uint32_t)p[1] | (uint32_t)p[2] << 8 | (uint32_t)p[3] << 16 |
		(uint32_t)p[4] << 24;
	computed = store_rec_crc(k->mv_data, k->mv_size, p + STORE_REC_HDR,
		v->mv_size - STORE_REC_HDR);
	if (stored != computed) {
		snprintf(reason, rsize, "checksum mismatch (stored crc32c %08" PRIx32
			", computed %08" PRIx32 " over %zu bytes)", stored, computed,
			v->mv_size - STORE_REC_HDR);
		return CERTA_EDATALOSS;
	}
	*msg = p + STORE_REC_HDR;
	*len = v->mv_size - STORE_REC_HDR;
	return 0;
}

/* Reserves room for a framed value of len message bytes under key and writes its frame; the
 * caller fills *msg (len bytes) and then calls store_frame_seal. */
static int
store_put_reserve(struct store_txn *txn, enum store_db db, const char *key, size_t len,
	unsigned flags, uint8_t **msg)
{
	MDB_val k, v;
	int rc;

	k = (MDB_val){ .mv_size = strlen(key), .mv_data = (void *)key };
	v = (MDB_val){ .mv_size = STORE_REC_HDR + len, .mv_data = NULL };
	/* The value is written straight into the page LMDB reserves for it: no copy. */
	rc = mdb_put(txn->txn, txn->st->dbi[db], &k, &v, flags | MDB_RESERVE);
	if (rc != 0)
		return store_txn_fail(txn, rc, "put", db, key);
	*msg = (uint8_t *)v.mv_data + STORE_REC_HDR;
	return 0;
}

/* Writes the frame (format byte, checksum of key and message) in front of msg. */
static void
store_frame_seal(const char *key, uint8_t *msg, size_t len)
{
	uint8_t *p = msg - STORE_REC_HDR;
	uint32_t crc = store_rec_crc(key, strlen(key), msg, len);

	p[0] = STORE_REC_FORMAT;
	p[1] = (uint8_t)crc;
	p[2] = (uint8_t)(crc >> 8);
	p[3] = (uint8_t)(crc >> 16);
	p[4] = (uint8_t)(crc >> 24);
}

static int
store_put_flags(struct store_txn *txn, enum store_db db, const char *key,
	const ProtobufCMessage *msg, unsigned flags)
{
	size_t len, packed;
	uint8_t *p;
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
	rc = store_put_reserve(txn, db, key, len, flags, &p);
	if (rc != 0)
		return rc;
	packed = protobuf_c_message_pack(msg, p);
	assert(packed == len);
	(void)packed;
	store_frame_seal(key, p, len);
	return 0;
}

int
store_put_packed(struct store_txn *txn, enum store_db db, const char *key, const void *msg,
	size_t len, int add)
{
	uint8_t *p;
	int rc;

	rc = store_txn_check(txn, db, key, 1);
	if (rc < 0)
		return rc;
	if (msg == NULL && len > 0)
		return -EINVAL;
	rc = store_put_reserve(txn, db, key, len, add ? MDB_NOOVERWRITE : 0, &p);
	if (rc != 0)
		return rc;
	if (len > 0)
		memcpy(p, msg, len);
	store_frame_seal(key, p, len);
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

/* Checks and decodes one stored value without logging; `reason` says what is wrong. */
static int
store_check_value(const MDB_val *k, const MDB_val *v,
	const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out, char *reason,
	size_t rsize)
{
	ProtobufCMessage *msg;
	const uint8_t *data;
	size_t len;
	int rc;

	rc = store_unframe(k, v, &data, &len, reason, rsize);
	if (rc < 0)
		return rc;
	msg = protobuf_c_message_unpack(desc, NULL, len, data);
	if (msg == NULL) {
		snprintf(reason, rsize, "checksum good but %zu bytes do not decode as %s", len,
			desc->name);
		return CERTA_EDATALOSS;
	}
	if (out != NULL)
		*out = msg;
	else
		protobuf_c_message_free_unpacked(msg, NULL);
	return 0;
}

/* Decodes one stored value; a damaged value is reported loudly and counted, never trusted. */
static int
store_decode(struct store *st, enum store_db db, const char *key,
	const ProtobufCMessageDescriptor *desc, const MDB_val *v, ProtobufCMessage **out)
{
	MDB_val k = { .mv_size = strlen(key), .mv_data = (void *)key };
	char reason[160];
	int rc;

	rc = store_check_value(&k, v, desc, out, reason, sizeof reason);
	if (rc < 0) {
		st->corrupt_records++;
		log_err(LOG_STORE, "corrupt record in %s: db=%s key=%s: %s", st->path,
			store_db_name(db), key, reason);
	}
	return rc;
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
	return store_decode(txn->st, db, key, desc, &v, out);
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

void
store_tenant_index_key(const char *tenant, uint64_t uid, const char *id, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%016llx/%s", tenant, (unsigned long long)uid, id);
}

int
store_keys_rev(struct store_txn *txn, enum store_db db, const char *prefix, const char *before,
    store_key_fn fn, void *arg)
{
	char keybuf[STORE_KEY_BUF], upper[STORE_KEY_BUF];
	size_t plen;
	MDB_cursor *cur;
	MDB_val k, v;
	int rc, ret = 0;

	if (fn == NULL || (rc = store_txn_check(txn, db, prefix, 0)) < 0)
		return fn == NULL ? -EINVAL : rc;
	plen = strlen(prefix);
	if (plen >= sizeof upper || (before != NULL && strlen(before) >= sizeof upper))
		return -EINVAL;
	rc = mdb_cursor_open(txn->txn, txn->st->dbi[db], &cur);
	if (rc != 0)
		return store_txn_fail(txn, rc, "cursor", db, prefix);
	/* Start at the last key below the bound: `before`, or the prefix's successor. */
	if (before != NULL && before[0] != '\0') {
		k = (MDB_val){ .mv_size = strlen(before), .mv_data = (void *)before };
	} else {
		memcpy(upper, prefix, plen);
		upper[plen - 1]++;
		k = (MDB_val){ .mv_size = plen, .mv_data = upper };
	}
	rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	rc = rc == 0 ? mdb_cursor_get(cur, &k, &v, MDB_PREV) :
	    rc == MDB_NOTFOUND ? mdb_cursor_get(cur, &k, &v, MDB_LAST) : rc;
	for (; rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_PREV)) {
		if (k.mv_size < plen || memcmp(k.mv_data, prefix, plen) != 0)
			break;
		if (k.mv_size >= sizeof keybuf)
			continue;
		memcpy(keybuf, k.mv_data, k.mv_size);
		keybuf[k.mv_size] = '\0';
		ret = fn(keybuf, k.mv_size, arg);
		if (ret != 0)
			break;
	}
	mdb_cursor_close(cur);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return store_txn_fail(txn, rc, "scan back", db, prefix);
	return ret < 0 ? ret : 0;
}

int
store_del_prefix(struct store_txn *txn, enum store_db db, const char *prefix, size_t *deleted)
{
	size_t plen = prefix != NULL ? strlen(prefix) : 0, n = 0;
	MDB_cursor *cur;
	MDB_val k, v;
	int rc;

	rc = store_txn_check(txn, db, prefix, 1);
	if (rc < 0)
		return rc;
	rc = mdb_cursor_open(txn->txn, txn->st->dbi[db], &cur);
	if (rc != 0)
		return store_txn_fail(txn, rc, "cursor", db, prefix);
	for (;;) {
		/* Seek again after each delete (the simplest cursor state to trust). */
		k = (MDB_val){ .mv_size = plen, .mv_data = (void *)prefix };
		rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
		if (rc != 0 || k.mv_size < plen || memcmp(k.mv_data, prefix, plen) != 0)
			break;
		rc = mdb_cursor_del(cur, 0);
		if (rc != 0)
			break;
		n++;
	}
	mdb_cursor_close(cur);
	if (rc != 0 && rc != MDB_NOTFOUND)
		return store_txn_fail(txn, rc, "del prefix", db, prefix);
	if (deleted != NULL)
		*deleted = n;
	return 0;
}

/* store_scan, and with `skipped` not NULL a scan that counts damaged records there (each one
 * logged by store_decode) and goes on with the next. */
static int
store_scan_impl(struct store_txn *txn, enum store_db db, const char *prefix,
	const ProtobufCMessageDescriptor *desc, store_scan_fn fn, void *arg, size_t *skipped)
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
		ret = store_decode(txn->st, db, keybuf, desc, &v, &msg);
		if (ret == CERTA_EDATALOSS && skipped != NULL) {
			(*skipped)++;
			ret = 0;
			continue;
		}
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

int
store_scan(struct store_txn *txn, enum store_db db, const char *prefix,
	const ProtobufCMessageDescriptor *desc, store_scan_fn fn, void *arg)
{
	return store_scan_impl(txn, db, prefix, desc, fn, arg, NULL);
}

struct store_unfinished {
	struct store *st;
	int (*fn)(const Certa__V1__ProgramRecord *rec, void *arg);
	void *arg;
	size_t programs;
	size_t unfinished;
	size_t corrupt;
};

static int
store_unfinished_cb(const char *key, size_t keylen, const ProtobufCMessage *msg, void *arg)
{
	const Certa__V1__ProgramRecord *rec = (const Certa__V1__ProgramRecord *)msg;
	struct store_unfinished *u = arg;

	u->programs++;
	if (rec->program == NULL) {
		/* Checksummed but empty: written that way by a bug, so it is as lost as a bit flip. */
		log_err(LOG_STORE, "corrupt record: db=programs key=%s: no program in the record; "
			"skipped by recovery", key);
		u->corrupt++;
		u->st->corrupt_records++;
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
	struct store_unfinished *u = arg;

	return store_scan_impl(txn, STORE_DB_PROGRAMS, NULL, NULL, store_unfinished_cb, arg,
		&u->corrupt);
}

int
store_scan_unfinished(struct store *st, int (*fn)(const Certa__V1__ProgramRecord *rec,
	void *arg), void *arg)
{
	struct store_unfinished u = { .st = st, .fn = fn, .arg = arg };
	int rc;

	if (st == NULL || fn == NULL)
		return -EINVAL;
	rc = store_view(st, store_unfinished_txn, &u);
	if (u.corrupt > 0) {
		log_err(LOG_STORE, "recovery scan of %s: %zu corrupt program records skipped (see "
			"above; `certad --verify-state` lists all)", st->path, u.corrupt);
	}
	if (rc < 0) {
		log_err(LOG_STORE, "recovery scan of %s stopped after %zu programs: %s", st->path,
			u.programs, certa_strerror(rc));
		return rc;
	}
	log_info(LOG_STORE, "recovery scan: unfinished=%zu programs=%zu", u.unfinished,
		u.programs);
	return 0;
}

struct store_verify {
	store_verify_fn fn;
	void *arg;
	size_t records;
	size_t corrupt;
};

/* Walks every record of every named DB; reports, never stops at, a damaged one. */
static int
store_verify_txn(struct store_txn *txn, void *arg)
{
	struct store_verify *vf = arg;
	char keybuf[STORE_KEY_BUF], reason[160];
	MDB_cursor *cur;
	MDB_cursor_op op;
	MDB_val k, v;
	int rc, i;

	for (i = 0; i < STORE_DB_COUNT; i++) {
		rc = mdb_cursor_open(txn->txn, txn->st->dbi[i], &cur);
		if (rc != 0)
			return store_txn_fail(txn, rc, "cursor", (enum store_db)i, NULL);
		for (op = MDB_FIRST;; op = MDB_NEXT) {
			rc = mdb_cursor_get(cur, &k, &v, op);
			if (rc == MDB_NOTFOUND)
				break;
			if (rc != 0) {
				mdb_cursor_close(cur);
				return store_txn_fail(txn, rc, "verify", (enum store_db)i, NULL);
			}
			vf->records++;
			/* Keys are printed as stored, cut at the buffer (LMDB keys are <= 511). */
			snprintf(keybuf, sizeof keybuf, "%.*s", (int)(k.mv_size < sizeof keybuf ?
				k.mv_size : sizeof keybuf - 1), (const char *)k.mv_data);
			if (store_check_value(&k, &v, store_db_table[i].desc, NULL, reason,
			    sizeof reason) == 0)
				continue;
			vf->corrupt++;
			log_err(LOG_STORE, "corrupt record in %s: db=%s key=%s: %s", txn->st->path,
				store_db_name((enum store_db)i), keybuf, reason);
			if (vf->fn != NULL)
				vf->fn((enum store_db)i, keybuf, reason, vf->arg);
		}
		mdb_cursor_close(cur);
	}
	return 0;
}

int
store_verify(struct store *st, store_verify_fn fn, void *arg, size_t *records)
{
	struct store_verify vf = { .fn = fn, .arg = arg };
	int rc;

	if (st == NULL)
		return -EINVAL;
	rc = store_view(st, store_verify_txn, &vf);
	if (rc < 0)
		return rc;
	st->corrupt_records += vf.corrupt;
	log_info(LOG_STORE, "verified %s: records=%zu corrupt=%zu", st->path, vf.records,
		vf.corrupt);
	if (records != NULL)
		*records = vf.records;
	return vf.corrupt > (size_t)INT32_MAX ? INT32_MAX : (int)vf.corrupt;
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
		.corrupt_records = st->corrupt_records,
		.commits = atomic_load_explicit(&st->commits, memory_order_relaxed),
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

/* The meta record of an older build (schema 1, no frame): say so instead of "corrupt". */
static int
store_legacy_meta(const struct store *st, const void *data, size_t len)
{
	Certa__V1__MetaRecord *m;
	unsigned have;

	m = certa__v1__meta_record__unpack(NULL, len, data);
	if (m == NULL || m->schema_version == 0) {
		if (m != NULL)
			certa__v1__meta_record__free_unpacked(m, NULL);
		log_err(LOG_STORE, "%s: the meta record is damaged (%zu bytes, no valid frame)",
			st->path, len);
		return CERTA_ECORRUPT;
	}
	have = m->schema_version;
	certa__v1__meta_record__free_unpacked(m, NULL);
	log_err(LOG_STORE, "%s holds schema_version=%u, written by an older certa without record "
		"checksums; this build reads and writes schema_version=%u and does not convert "
		"stores: run the older certad on it, or export what you need and start this build "
		"on an empty state directory", st->path, have, st->schema_version);
	return CERTA_ESCHEMA;
}

/* Schema 2 -> 3: one program into the per-tenant index. */
static int
store_index_program(const char *key, size_t keylen, const ProtobufCMessage *msg, void *arg)
{
	const Certa__V1__ProgramRecord *rec = (const Certa__V1__ProgramRecord *)msg;
	Certa__V1__TenantProgramRecord ir = CERTA__V1__TENANT_PROGRAM_RECORD__INIT;
	char ik[STORE_KEY_BUF];

	(void)keylen;
	if (rec->program == NULL || rec->program->tenant == NULL)
		return 0;
	ir.created_unix_ms = rec->program->created_unix_ms;
	store_tenant_index_key(rec->program->tenant, rec->tenant_uid, key, ik, sizeof ik);
	return store_put(arg, STORE_DB_TENANT_PROGRAMS, ik, &ir.base);
}

/* Opens (creating) the named DBs and checks or writes the meta record, which carries the
 * schema version and the state id.  Re-runnable: the dbi handles are simply reassigned. */
static int
store_open_txn(struct store_txn *txn, void *arg)
{
	struct store *st = arg;
	Certa__V1__MetaRecord meta = CERTA__V1__META_RECORD__INIT;
	Certa__V1__MetaRecord *have;
	ProtobufCMessage *msg;
	struct timespec now;
	const void *data;
	size_t len;
	int rc, i;

	for (i = 0; i < STORE_DB_COUNT; i++) {
		rc = mdb_dbi_open(txn->txn, store_db_table[i].name, MDB_CREATE, &st->dbi[i]);
		if (rc != 0)
			return store_txn_fail(txn, rc, "open db", (enum store_db)i, NULL);
	}
	rc = store_get_raw(txn, STORE_DB_META, STORE_META_KEY, &data, &len);
	if (rc == CERTA_ENOTFOUND) {
		if (!st->creating) {
			log_err(LOG_STORE, "%s/%s has no meta record: not a certa state, or its "
				"creation was interrupted", st->path, STORE_DATA_FILE);
			return CERTA_ECORRUPT;
		}
		clock_gettime(CLOCK_REALTIME, &now);
		meta.schema_version = st->schema_version;
		meta.created_unix_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
		meta.created_by = "certa";
		meta.state_id = st->state_id;
		rc = store_put(txn, STORE_DB_META, STORE_META_KEY, &meta.base);
		if (rc == 0)
			log_notice(LOG_STORE, "new state in %s: state_id=%s schema_version=%u",
				st->path, st->state_id, st->schema_version);
		return rc;
	}
	if (rc < 0)
		return rc;
	if (len > 0 && *(const uint8_t *)data != STORE_REC_FORMAT)
		return store_legacy_meta(st, data, len);
	rc = store_get(txn, STORE_DB_META, STORE_META_KEY, NULL, &msg);
	if (rc < 0)
		return rc == CERTA_EDATALOSS ? CERTA_ECORRUPT : rc;
	have = (Certa__V1__MetaRecord *)msg;
	if (have->schema_version == 2 && st->schema_version >= 3) {
		/* 2 -> 3 adds the text DB; schema 2 chain records (inline text) read as before and
		 * move their text to chunks on their next write.  Only the version changes. */
		have->schema_version = 3;
		rc = store_scan(txn, STORE_DB_PROGRAMS, "", NULL, store_index_program, txn);
		if (rc == 0)
			rc = store_put(txn, STORE_DB_META, STORE_META_KEY, &have->base);
		if (rc != 0) {
			protobuf_c_message_free_unpacked(msg, NULL);
			return rc;
		}
		log_notice(LOG_STORE, "%s: schema_version 2 -> 3 (chain text appended in chunks, "
			"per-tenant index of programs built); older builds refuse this state from "
			"now on", st->path);
	}
	if (have->schema_version == 3 && st->schema_version == 4) {
		/* 3 -> 4 moves probe points into the text chunks as chains are written; schema 3
		 * chain records (all probe points inline) read as before.  Only the version
		 * changes. */
		have->schema_version = 4;
		rc = store_put(txn, STORE_DB_META, STORE_META_KEY, &have->base);
		if (rc != 0) {
			protobuf_c_message_free_unpacked(msg, NULL);
			return rc;
		}
		log_notice(LOG_STORE, "%s: schema_version 3 -> 4 (chain probe points appended in "
			"chunks); older builds refuse this state from now on", st->path);
	}
	if (have->schema_version != st->schema_version) {
		log_err(LOG_STORE, "schema version mismatch in %s: environment has "
			"schema_version=%u, this build expects %u; refusing to open",
			st->path, have->schema_version, st->schema_version);
		rc = CERTA_ESCHEMA;
	} else if (have->state_id == NULL || strlen(have->state_id) != 2 * STORE_ID_BYTES) {
		log_err(LOG_STORE, "%s: the meta record has no state id", st->path);
		rc = CERTA_ECORRUPT;
	} else if (st->state_id[0] == '\0') {
		/* data.mdb is whole and names itself: the identity file alone was lost. */
		memcpy(st->state_id, have->state_id, sizeof st->state_id);
	} else if (strcmp(st->state_id, have->state_id) != 0) {
		log_err(LOG_STORE, "%s/%s belongs to state %s, but %s/%s says %s: this data.mdb "
			"was copied from another state directory; put back the right data.mdb, or "
			"remove %s/%s to adopt this one", st->path, STORE_DATA_FILE, have->state_id,
			st->path, STORE_ID_FILE, st->state_id, st->path, STORE_ID_FILE);
		rc = CERTA_EDATALOSS;
	}
	protobuf_c_message_free_unpacked(msg, NULL);
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

/* What a state directory holds, read before LMDB touches it. */
struct store_probe {
	long long data_size;        /* data.mdb bytes; -1 when there is none */
	int has_id;                 /* state-id present (its id in st->state_id) */
	size_t entries;             /* directory entries besides ".", ".." and lost+found */
};

/* Reads DIR/state-id ("<32 hex digits>\n") into st->state_id. */
static int
store_read_id(struct store *st, const char *path)
{
	char buf[2 * STORE_ID_BYTES + 2];
	ssize_t n;
	size_t i;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		log_err(LOG_STORE, "open %s: %s", path, strerror(errno));
		return -errno;
	}
	n = read(fd, buf, sizeof buf);
	close(fd);
	if (n > 0 && buf[n - 1] == '\n')
		n--;
	for (i = 0; n == 2 * STORE_ID_BYTES && i < (size_t)n; i++)
		if (!((buf[i] >= '0' && buf[i] <= '9') || (buf[i] >= 'a' && buf[i] <= 'f')))
			break;
	if (n != 2 * STORE_ID_BYTES || i != (size_t)n) {
		log_err(LOG_STORE, "%s is malformed (expected 32 lowercase hex digits)", path);
		return CERTA_ECORRUPT;
	}
	memcpy(st->state_id, buf, 2 * STORE_ID_BYTES);
	st->state_id[2 * STORE_ID_BYTES] = '\0';
	return 1;
}

static int
store_probe_dir(struct store *st, struct store_probe *pr)
{
	char path[4096];
	struct dirent *de;
	struct stat sb;
	DIR *d;
	int rc;

	*pr = (struct store_probe){ .data_size = -1 };
	d = opendir(st->path);
	if (d == NULL) {
		log_err(LOG_STORE, "opendir %s: %s", st->path, strerror(errno));
		return -errno;
	}
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0 &&
		    strcmp(de->d_name, "lost+found") != 0)
			pr->entries++;
	closedir(d);
	snprintf(path, sizeof path, "%s/%s", st->path, STORE_DATA_FILE);
	if (stat(path, &sb) == 0)
		pr->data_size = (long long)sb.st_size;
	else if (errno != ENOENT) {
		log_err(LOG_STORE, "stat %s: %s", path, strerror(errno));
		return -errno;
	}
	snprintf(path, sizeof path, "%s/%s", st->path, STORE_ID_FILE);
	rc = store_read_id(st, path);
	if (rc < 0)
		return rc;
	pr->has_id = rc;
	return 0;
}

static uint32_t
store_u32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, sizeof v);   /* LMDB files are in host byte order */
	return v;
}

static uint64_t
store_u64(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof v);
	return v;
}

/*
 * LMDB maps data.mdb and trusts it: a page past the end of a truncated file is a SIGBUS on the
 * first read.  So before mdb_env_open, read both meta pages with pread (as LMDB itself does)
 * and refuse a file shorter than the pages its live meta says are in use.
 */
static int
store_check_data_file(const struct store *st)
{
	uint8_t page[2][STORE_MDB_OFF_META + STORE_MDB_META_END];
	uint64_t last_pg = 0, txnid = 0, need;
	char path[4096];
	uint32_t psize;
	struct stat sb;
	ssize_t n;
	int fd, i, live = -1, rc = 0;

	snprintf(path, sizeof path, "%s/%s", st->path, STORE_DATA_FILE);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		log_err(LOG_STORE, "open %s: %s", path, strerror(errno));
		return -errno;
	}
	if (fstat(fd, &sb) != 0) {
		rc = -errno;
		log_err(LOG_STORE, "stat %s: %s", path, strerror(errno));
		goto close_fd;
	}
	n = pread(fd, page[0], sizeof page[0], 0);
	psize = n == (ssize_t)sizeof page[0] ?
		store_u32(page[0] + STORE_MDB_OFF_META + STORE_MDB_META_PSIZE) : 0;
	if (psize < 512 || psize > 65536 || (psize & (psize - 1)) != 0 ||
	    (long long)sb.st_size < 2 * (long long)psize) {
		log_err(LOG_STORE, "%s (%lld bytes) is not a whole LMDB file: no valid meta page "
			"0 and 1 (page size %u); restore it from a backup", path,
			(long long)sb.st_size, psize);
		rc = CERTA_EDATALOSS;
		goto close_fd;
	}
	n = pread(fd, page[1], sizeof page[1], psize);
	for (i = 0; i < 2; i++) {
		const uint8_t *m = page[i] + STORE_MDB_OFF_META;
		uint16_t flags;

		memcpy(&flags, page[i] + STORE_MDB_OFF_FLAGS, sizeof flags);
		if ((i == 1 && n != (ssize_t)sizeof page[1]) || !(flags & STORE_MDB_P_META) ||
		    store_u32(m + STORE_MDB_META_MAGIC) != STORE_MDB_MAGIC ||
		    store_u32(m + STORE_MDB_META_VERSION) != STORE_MDB_DATA_VERSION) {
			log_err(LOG_STORE, "%s: meta page %d is not an LMDB 0.9 meta page (magic "
				"%08x version %u); not a certa state, or damaged", path, i,
				store_u32(m + STORE_MDB_META_MAGIC),
				store_u32(m + STORE_MDB_META_VERSION));
			rc = CERTA_ECORRUPT;
			goto close_fd;
		}
		if (live < 0 || store_u64(m + STORE_MDB_META_TXNID) > txnid) {
			live = i;
			txnid = store_u64(m + STORE_MDB_META_TXNID);
			last_pg = store_u64(m + STORE_MDB_META_LAST_PG);
		}
	}
	need = (last_pg + 1) * (uint64_t)psize;
	if ((uint64_t)sb.st_size < need) {
		log_err(LOG_STORE, "%s is truncated: %lld bytes, but its live meta page %d "
			"(txnid %" PRIu64 ") uses pages 0..%" PRIu64 " of %u bytes = %" PRIu64
			" bytes; restore data.mdb from a backup", path, (long long)sb.st_size, live,
			txnid, last_pg, psize, need);
		rc = CERTA_EDATALOSS;
	}
close_fd:
	close(fd);
	return rc;
}

/* A fresh random state id, as 32 hex digits. */
static int
store_new_id(struct store *st)
{
	uint8_t b[STORE_ID_BYTES];
	size_t i;

	if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b) {
		log_err(LOG_STORE, "getrandom: %s", strerror(errno));
		return -EIO;
	}
	for (i = 0; i < sizeof b; i++)
		snprintf(st->state_id + 2 * i, 3, "%02x", b[i]);
	return 0;
}

/* Writes DIR/state-id atomically and durably (temp file, fsync, rename, fsync DIR). */
static int
store_write_id(const struct store *st)
{
	char tmp[4096], path[4096], line[2 * STORE_ID_BYTES + 2];
	int fd, dfd, rc = 0;
	size_t len;

	snprintf(tmp, sizeof tmp, "%s/%s.tmp", st->path, STORE_ID_FILE);
	snprintf(path, sizeof path, "%s/%s", st->path, STORE_ID_FILE);
	len = (size_t)snprintf(line, sizeof line, "%s\n", st->state_id);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
	if (fd < 0) {
		rc = -errno;
		goto fail;
	}
	if (write(fd, line, len) != (ssize_t)len || fsync(fd) != 0)
		rc = errno != 0 ? -errno : -EIO;
	if (close(fd) != 0 && rc == 0)
		rc = -errno;
	if (rc == 0 && rename(tmp, path) != 0)
		rc = -errno;
	if (rc < 0) {
		unlink(tmp);
		goto fail;
	}
	dfd = open(st->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		(void)fsync(dfd);
		close(dfd);
	}
	log_info(LOG_STORE, "wrote %s (state_id=%s)", path, st->state_id);
	return 0;
fail:
	log_err(LOG_STORE, "write %s: %s", path, strerror(-rc));
	return rc;
}

/* The creation rule: a new state only in an empty directory or when asked (--init-state); a
 * directory whose state-id says it had a state never silently gets a new one. */
static int
store_decide(struct store *st, const struct store_probe *pr, enum store_create mode)
{
	if (pr->data_size > 0)
		return store_check_data_file(st);
	if (pr->has_id && mode != STORE_CREATE_INIT) {
		log_err(LOG_STORE, "state lost: %s/%s names state %s, but %s/%s is %s.  certad "
			"will not start on a new empty state in its place.  Restore data.mdb from a "
			"backup; or, to start over with no programs, tenants or keys, run "
			"`certad --init-state`", st->path, STORE_ID_FILE, st->state_id, st->path,
			STORE_DATA_FILE, pr->data_size < 0 ? "missing" : "empty (0 bytes)");
		return CERTA_EDATALOSS;
	}
	if (mode == STORE_CREATE_NEVER) {
		log_err(LOG_STORE, "no certa state in %s (no %s)", st->path, STORE_DATA_FILE);
		return CERTA_ENOTFOUND;
	}
	if (pr->entries > 0 && mode != STORE_CREATE_INIT) {
		log_err(LOG_STORE, "%s is not empty but holds no certa state (%s %s, no %s): "
			"refusing to create a new state there.  If a state was here, restore it "
			"from a backup; to create a new one, empty the directory or run "
			"`certad --init-state`", st->path, STORE_DATA_FILE,
			pr->data_size < 0 ? "missing" : "empty", STORE_ID_FILE);
		return -ENOTEMPTY;
	}
	if (pr->has_id)
		log_warn(LOG_STORE, "replacing lost state %s in %s with a new empty state (asked "
			"for by --init-state)", st->state_id, st->path);
	st->creating = 1;
	return store_new_id(st);
}

int
store_open(const char *dir, const struct store_options *opt, struct store **out)
{
	struct store_options o = { 0 };
	struct store_probe pr;
	struct store *st;
	int rc, dead = 0, had_id;

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

	if (o.create == STORE_CREATE_NEVER) {
		struct stat sb;
		if (stat(dir, &sb) != 0) {
			log_err(LOG_STORE, "stat %s: %s", dir, strerror(errno));
			return -errno;
		}
	}
	rc = store_mkdir(dir);
	if (rc < 0)
		return rc;
	st = calloc(1, sizeof *st);
	if (st == NULL)
		return -ENOMEM;
	if (pthread_rwlock_init(&st->map_lock, NULL) != 0) {
		free(st);
		return -ENOMEM;
	}
	st->path = strdup(dir);
	if (st->path == NULL) {
		rc = -ENOMEM;
		goto fail_st;
	}
	st->max_map_size = o.max_map_size;
	st->schema_version = o.schema_version;
	rc = store_probe_dir(st, &pr);
	if (rc == 0)
		rc = store_decide(st, &pr, o.create);
	if (rc < 0)
		goto fail_path;
	had_id = pr.has_id && !st->creating;

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
	/* After the commit: a crash before this leaves a whole data.mdb that names itself. */
	if (!had_id) {
		if (!st->creating)
			log_notice(LOG_STORE, "%s/%s was missing; rewritten from data.mdb", dir,
				STORE_ID_FILE);
		rc = store_write_id(st);
		if (rc < 0)
			goto fail_env;
	}
	st->creating = 0;
	log_info(LOG_STORE, "opened %s state_id=%s schema_version=%u map_kib=%zu "
		"max_map_mib=%zu", dir, st->state_id, st->schema_version,
		store_map_size(st) / 1024, st->max_map_size / STORE_MIB);
	*out = st;
	return 0;

fail_env:
	mdb_env_close(st->env);
fail_path:
	free(st->path);
fail_st:
	pthread_rwlock_destroy(&st->map_lock);
	free(st);
	return rc;
}

const char *
store_state_id(const struct store *st)
{
	return st->state_id;
}

void
store_close(struct store *st)
{
	if (st == NULL)
		return;
	if (store_in_txn)
		log_err(LOG_STORE, "store_close inside a transaction");
	mdb_env_close(st->env);
	pthread_rwlock_destroy(&st->map_lock);
	log_info(LOG_STORE, "closed %s", st->path);
	free(st->path);
	free(st);
}
