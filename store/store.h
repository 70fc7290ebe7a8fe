/*
 * store.h — certa's persistent state in one LMDB environment.
 *
 * The environment is a directory (data.mdb + lock.mdb + state-id) holding one named DB per kind
 * of record.  Every value is a protobuf-c message from proto/certa/v1/records.proto in a 5-byte
 * frame: a format byte (0xc2), then the CRC-32C (lib/crc32c.h, little-endian) of the key bytes
 * followed by the packed message, then the packed message.  Every read checks the frame; a
 * damaged record is CERTA_EDATALOSS, logged at error level with its DB and key, and counted
 * (store_stat_info.corrupt_records).  Each DB has exactly one message type (see enum store_db).
 * Keys are C strings, stored without their NUL, compared bytewise (so scans run in strcmp
 * order).  Standard tools work on the environment: `mdb_stat -a DIR`, `mdb_dump -s programs DIR`
 * (values then show the frame before the message).
 *
 * Identity: a state is created only in an empty directory, or when asked (STORE_CREATE_INIT,
 * `certad --init-state`).  Creation writes a random 32-hex-digit state id into the meta record
 * and, after the commit, into DIR/state-id.  A directory whose state-id names a state but whose
 * data.mdb is missing, empty, or names another state is never given a new empty state: the
 * open fails loudly.  A data.mdb shorter than the pages its LMDB meta page says are in use is
 * refused before it is mapped (LMDB would die of SIGBUS on the first missing page).
 *
 * Transactions are closures.  LMDB aborts a write transaction that runs out of map space
 * (MDB_MAP_FULL), and the map may only be resized while this process has no transaction open, so
 * store_update() runs the caller's function inside a write transaction and, when the map fills,
 * aborts, doubles the map (up to store_options.max_map_size) and runs the function again from
 * the start.  A store_txn_fn must therefore be re-runnable: it may only change state through the
 * transaction (and may overwrite, not accumulate, its own out-parameters).
 *
 * Threads: a struct store belongs to one thread — in certad the libevent loop thread — plus at
 * most one writer thread (store/writer.h) that only runs store_update_now().  Both may have a
 * transaction open at once (LMDB: one write transaction at a time, readers beside it); changing
 * the map size, which LMDB allows only with no transaction open in the process, waits for the
 * other thread's transaction (a read-write lock).  Opened without MDB_NOTLS (one read
 * transaction per thread at a time).  Transactions do not nest: calling store_update() or
 * store_view() from inside a store_txn_fn returns -EBUSY.  Several processes may open the same
 * environment (LMDB locks it); a map grown by another process is adopted on the next
 * transaction.
 *
 * Errors: 0 on success or a negative code from lib/error.h.  Every function may return
 * CERTA_ESTORE (an LMDB failure not listed below, logged) and -ENOMEM; the lists below name
 * the others.  LMDB codes are translated in exactly one place, store_error().
 */
#ifndef CERTA_STORE_STORE_H
#define CERTA_STORE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "certa/v1/records.pb-c.h"

/* The schema version this build writes into and expects from the meta record.  Bump it when a
 * change to records.proto or the key layout is not readable by the previous build. */
#define STORE_SCHEMA_VERSION 4u    /* 2: framed, checksummed values and a state id; 3: chain
                                    * text appended in chunks (text DB); 4: probe points
                                    * too (TextChunk.probes, RequestRecord.chunk_probes) */

/* Named DBs and the one message type stored in each. */
enum store_db {
	STORE_DB_META = 0,  /* "meta": key "meta" -> certa.v1.MetaRecord */
	STORE_DB_PROGRAMS,  /* "programs": program id -> certa.v1.ProgramRecord */
	STORE_DB_REQUESTS,  /* "requests": "<program id>/<index>" -> certa.v1.RequestRecord */
	STORE_DB_TENANTS,   /* "tenants": tenant name -> certa.v1.TenantRecord */
	STORE_DB_POLICIES,  /* "policies": name or "<name>@<version>" -> certa.v1.PolicyRecord */
	STORE_DB_HISTORY,   /* "history": "<finished_unix_ms:016x>/<id>" -> certa.v1.HistoryRecord */
	STORE_DB_IDEMPOTENCY, /* "idempotency": "<tenant>/<tenant uid:016x>/<key>" (uid 0:
	                       * "<tenant>/<key>") -> certa.v1.IdempotencyRecord */
	STORE_DB_RISKCTL,   /* "riskctl": "<cot|sc>/<model>" -> certa.v1.RiskctlRecord */
	STORE_DB_TEXT,      /* "text": "<program id>/<index>/<chunk:08x>" -> certa.v1.TextChunk */
	STORE_DB_TENANT_PROGRAMS, /* "tenant_programs": store_tenant_index_key() ->
	                           * certa.v1.TenantProgramRecord (the index List reads) */
	STORE_DB_COUNT
};

struct store;       /* an open environment; opaque */
struct store_txn;   /* a transaction inside store_update()/store_view(); opaque */

/* When store_open may create a new state. */
enum store_create {
	STORE_CREATE_IF_EMPTY = 0, /* only in a missing or empty directory (default) */
	STORE_CREATE_INIT,         /* also in a non-empty directory without a store, and in place of
	                            * a lost one (state-id present, data.mdb missing or empty); a
	                            * data.mdb with content is opened, never replaced */
	STORE_CREATE_NEVER,        /* open an existing state only (tools, --verify-state) */
};

struct store_options {
	size_t map_size;          /* initial map size in bytes; 0 = 64 MiB.  An environment that
	                           * already holds more data opens at its used size. */
	size_t max_map_size;      /* growth stops here (CERTA_EMAPFULL); 0 = 64 GiB.  Raised to
	                           * map_size when smaller. */
	unsigned schema_version;  /* 0 = STORE_SCHEMA_VERSION; other values are for tests */
	int nosync;               /* tests only: MDB_NOSYNC, commits are not durable */
	enum store_create create; /* 0 = STORE_CREATE_IF_EMPTY */
};

/* Figures for metrics and `certactl stats`. */
struct store_stat_info {
	size_t map_size;                  /* current map size in bytes */
	size_t max_map_size;              /* configured growth limit */
	size_t page_size;                 /* LMDB page size */
	size_t used_bytes;                /* (last used page + 1) * page size */
	unsigned map_grows;               /* map growths done by this process since open */
	unsigned long corrupt_records;    /* damaged records met by reads since open (a record
	                                   * read twice counts twice) */
	unsigned long commits;            /* write transactions committed by this process since
	                                   * open (the writer thread merges queued sets into one) */
	size_t entries[STORE_DB_COUNT];   /* records per named DB */
};

/*
 * Opens the state in directory `dir`, creating it as opt->create allows (see the top of this
 * file).  A missing `dir` is created with mode 0750 (its parent must exist; not with
 * STORE_CREATE_NEVER); files are created with mode 0640.  On a new state the named DBs, the meta
 * record (schema version, creation time, state id) and DIR/state-id are written; an existing
 * one must carry the schema version asked for and the state id of DIR/state-id (a missing
 * state-id beside a whole data.mdb is rewritten from it).  `opt` may be NULL (defaults).
 * Stale reader slots left by crashed processes are cleared.  Every refusal is logged at error
 * level with the file, the sizes or ids involved, and how to recover.
 * On success *out is a store to release with store_close(); on failure *out is not written.
 * Errors: -EINVAL (NULL dir/out), -errno from mkdir/open/stat (e.g. -ENOENT, -EACCES,
 * -ENOTDIR), -ENOTEMPTY (no state, directory not empty, creation not asked for),
 * CERTA_ENOTFOUND (no state and STORE_CREATE_NEVER),
 * CERTA_EDATALOSS (state-id present but data.mdb missing or empty; data.mdb truncated below
 * its used pages; data.mdb of another state),
 * CERTA_ESCHEMA (another schema version, including schema 1 of older builds, which is not
 * converted; logged with both versions),
 * CERTA_ECORRUPT (not an LMDB environment, a malformed state-id, or a damaged or missing meta
 * record), CERTA_EMAPFULL (max_map_size too small even for the empty schema).
 */
int store_open(const char *dir, const struct store_options *opt, struct store **out);

/* The state id (32 hex digits) of an open store; owned by st. */
const char *store_state_id(const struct store *st);

/*
 * Called by store_verify for each damaged record: `reason` says what is wrong (short value,
 * unknown format, checksum mismatch with both CRCs, does not decode).  Strings live only
 * during the call.
 */
typedef void (*store_verify_fn)(enum store_db db, const char *key, const char *reason,
	void *arg);

/*
 * Checks every record of every named DB (frame, checksum, decode) in one read-only snapshot.
 * Each damaged record is logged at error level and passed to fn (may be NULL); the scan always
 * goes on to the end.  *records (may be NULL) gets the number of records read.  Returns the
 * number of damaged records (>= 0).  Errors: -EBUSY (inside a transaction), -EINVAL, LMDB
 * failures (CERTA_ECORRUPT, CERTA_ESTORE).
 */
int store_verify(struct store *st, store_verify_fn fn, void *arg, size_t *records);

/* Closes the environment and frees `st`.  NULL is a no-op.  No transaction may be running. */
void store_close(struct store *st);

/*
 * A transaction body.  store_update: return >= 0 to commit (the value is returned by
 * store_update), < 0 to abort (returned).  store_view: the return value is passed through.
 * `txn` is valid only during the call; do not keep it or pointers obtained through it.
 */
typedef int (*store_txn_fn)(struct store_txn *txn, void *arg);

/*
 * Runs fn(txn, arg) in a write transaction and commits it when fn returns >= 0.
 * When the map fills (in a put inside fn or in the commit) the transaction is aborted, the map
 * doubled (logged at notice level) and fn run again from the start, so fn must be re-runnable
 * (see the top of this file).  A map grown by another process is adopted and retried too.
 * Returns fn's value on commit.  Errors: fn's negative value (nothing written),
 * CERTA_EMAPFULL (map at max_map_size and still full; nothing written), -EBUSY (called inside
 * a transaction), -EINVAL (NULL st/fn), -ENOSPC/-EIO (disk, from the commit).
 */
int store_update(struct store *st, store_txn_fn fn, void *arg);

/*
 * A barrier store_update calls before it begins (and store_update_now does not): a writer
 * thread (store/writer.h) sets it to "wait until every write set queued so far is committed",
 * so that a direct write never overtakes a write set queued before it.  NULL fn: none.  Set
 * it while no other thread uses the store.
 */
void store_set_barrier(struct store *st, void (*fn)(void *arg), void *arg);
/* store_update without the barrier: the writer thread's own transactions. */
int store_update_now(struct store *st, store_txn_fn fn, void *arg);

/*
 * Runs fn(txn, arg) in a read-only snapshot and returns what fn returns.  Writes through txn
 * fail with -EACCES.  Errors besides fn's: -EBUSY (called inside a transaction), -EINVAL.
 */
int store_view(struct store *st, store_txn_fn fn, void *arg);

/*
 * Stores `msg` (packed with protobuf_c_message_pack) under `key` in `db`, replacing any value.
 * msg->descriptor must be the DB's message type.  The caller keeps ownership of msg.
 * Errors: -EINVAL (empty key, key longer than the LMDB limit of 511 bytes, wrong message type,
 * message fails protobuf_c_message_check), -EACCES (read-only txn), CERTA_EMAPFULL (only seen by
 * fn: store_update retries after growing, so just return it).
 */
int store_put(struct store_txn *txn, enum store_db db, const char *key,
	const ProtobufCMessage *msg);

/* As store_put, but fails with CERTA_EEXIST when `key` already exists (nothing is written). */
int store_add(struct store_txn *txn, enum store_db db, const char *key,
	const ProtobufCMessage *msg);

/* As store_put (add 0) or store_add (add 1) for a message already packed (msg, len bytes: the
 * DB's message type, packed by protobuf_c_message_pack); framed and checksummed here. */
int store_put_packed(struct store_txn *txn, enum store_db db, const char *key, const void *msg,
	size_t len, int add);

/*
 * Reads and decodes the value under `key` in `db`.  `desc` is the expected message type; NULL
 * means the DB's type, and any other type than the DB's is -EINVAL.  On success *out is a newly
 * allocated message the caller frees with protobuf_c_message_free_unpacked(*out, NULL) (it does
 * not depend on the transaction); on failure *out is not written.
 * Errors: CERTA_ENOTFOUND (no such key), CERTA_EDATALOSS (the value's frame or checksum is
 * wrong, or it does not decode; logged with the DB, key and reason, and counted), -EINVAL.
 */
int store_get(struct store_txn *txn, enum store_db db, const char *key,
	const ProtobufCMessageDescriptor *desc, ProtobufCMessage **out);

/*
 * Raw bytes as stored, frame included, for tools and tests (e.g. writing a damaged value).  store_get_raw's
 * *data points into the map, is valid only until the transaction ends and must not be written
 * to; *data and *len are written only on success.
 * Errors: as store_put / store_get (no message checks).
 */
int store_put_raw(struct store_txn *txn, enum store_db db, const char *key,
	const void *data, size_t len);
int store_get_raw(struct store_txn *txn, enum store_db db, const char *key,
	const void **data, size_t *len);

/* Deletes `key` from `db`.  Errors: CERTA_ENOTFOUND (no such key), -EINVAL, -EACCES. */
int store_del(struct store_txn *txn, enum store_db db, const char *key);
/* Calls fn with each key of db that starts with prefix (not empty) and sorts before `before`
 * (NULL or "": no bound), in descending order, values unread, until fn returns non-zero: a
 * negative value is returned, a positive one just stops.  Returns 0, -EINVAL or a store
 * error. */
typedef int (*store_key_fn)(const char *key, size_t keylen, void *arg);
int store_keys_rev(struct store_txn *txn, enum store_db db, const char *prefix,
    const char *before, store_key_fn fn, void *arg);
/* The tenant_programs key of a program: "<tenant>/<uid, 16 hex>/<id>" (truncated to len). */
void store_tenant_index_key(const char *tenant, uint64_t uid, const char *id, char *buf,
    size_t len);

/* Deletes every key of db that starts with prefix (not empty); *deleted (may be NULL) gets
 * their number.  Returns 0, -EINVAL, -EACCES (read-only) or a store error. */
int store_del_prefix(struct store_txn *txn, enum store_db db, const char *prefix,
    size_t *deleted);

/*
 * Called by store_scan for each record: `key` is NUL-terminated (keylen excludes the NUL), `msg`
 * is the decoded value.  Both are valid only during the call (copy what you keep).  Return 0 to
 * continue, 1 to stop (store_scan returns 0), < 0 to stop with that error.  The callback must
 * not put or delete in the DB being scanned.
 */
typedef int (*store_scan_fn)(const char *key, size_t keylen, const ProtobufCMessage *msg,
	void *arg);

/*
 * Calls fn for every record of `db` whose key starts with `prefix` (NULL or "" = all), in key
 * order.  `desc` as in store_get.  A damaged value stops the scan with CERTA_EDATALOSS
 * (logged with its key, as in store_get) after fn has seen the records before it.
 * Errors: CERTA_EDATALOSS, fn's negative value, -EINVAL.
 */
int store_scan(struct store_txn *txn, enum store_db db, const char *prefix,
	const ProtobufCMessageDescriptor *desc, store_scan_fn fn, void *arg);

/*
 * Crash recovery: in one read-only snapshot, calls fn for every program record whose
 * program.state is QUEUED or RUNNING, in program id order.  `rec` is valid only during the call.
 * fn returns 0 to continue, 1 to stop (returns 0), < 0 to stop with that error.
 * A damaged program record (bad checksum, does not decode, or no program inside) is logged at
 * error level with its key, counted in corrupt_records, and skipped: the other programs still
 * resume.  `certad --verify-state` lists them all.
 * Errors: fn's negative value, -EBUSY (inside a transaction), -EINVAL.
 */
int store_scan_unfinished(struct store *st,
	int (*fn)(const Certa__V1__ProgramRecord *rec, void *arg), void *arg);

/* Fills *out (written only on success) from a read-only snapshot.  Errors: -EBUSY, -EINVAL. */
int store_stat(struct store *st, struct store_stat_info *out);

/* The environment directory as given to store_open; owned by st. */
const char *store_path(const struct store *st);

/* The name of a DB ("programs", ...) as stored in LMDB's main DB; "?" when out of range. */
const char *store_db_name(enum store_db db);
/* A DB's message type (NULL for an unknown DB).  Pure; any thread. */
const ProtobufCMessageDescriptor *store_db_type(enum store_db db);

/*
 * The one translation from LMDB return codes to certa errors: 0 -> 0, MDB_NOTFOUND ->
 * CERTA_ENOTFOUND, MDB_KEYEXIST -> CERTA_EEXIST, MDB_MAP_FULL -> CERTA_EMAPFULL,
 * MDB_CORRUPTED/MDB_INVALID/MDB_VERSION_MISMATCH -> CERTA_ECORRUPT, a positive errno e -> -e,
 * anything else -> CERTA_ESTORE.  Logs the LMDB message at debug level.  Pure; any thread.
 */
int store_error(int mdb_rc);

#endif
