/*
 * persist.h — a program's durable write (one LMDB transaction): the ProgramRecord, its changed
 * chains (RequestRecords), at the end the HistoryRecord, and on acceptance the idempotency key.
 * Chains are marked clean only after the commit.  For the core's files; loop thread only.
 *
 * A write that fails (disk full: -ENOSPC; map at store.max_map_size: CERTA_EMAPFULL; -EIO)
 * is counted (commit failures), logged at error level with the cause (at most once per 10 s),
 * and, for a step or an ending (persist_or_wait), leaves the program waiting: no further step,
 * no event, until a timer (100 ms doubling to 5 s) writes it again; then dispatch_persisted
 * sends its event and it carries on.  Nothing is lost: memory holds the step, the store the
 * last committed one, and the worker resumes from resume_tokens after a crash.  While any
 * program waits the core is degraded (core_degraded; the hook from core_on_degraded).
 */
#ifndef CERTA_DAEMON_PERSIST_H
#define CERTA_DAEMON_PERSIST_H

#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

struct core;
struct program;

/* Writes p: every chain (all_chains) or only dirty ones, the history record (history), the
 * idempotency key (first: the accepting write; CERTA_EEXIST if the key is taken).  Returns 0,
 * a store error (logged) or -ENOMEM. */
int persist_write(struct core *c, struct program *p, int all_chains, int history, int first);
/* persist_write without the idempotency key: every later write. */
int persist_program(struct core *c, struct program *p, int all_chains, int history);
/* A step's write (final 0: changed chains) or an ending's (final 1: every chain and the
 * history record).  Returns 0 when committed (a program that was waiting stops waiting), or
 * the store error: p->persist_pending is then set, p waits and is retried by the timer. */
int persist_or_wait(struct core *c, struct program *p, int final);
/*
 * Group commit.  persist_later queues p's step (final 0) or ending (final 1) for the commit
 * that runs once the loop turn's step results are handled: every queued program's records
 * go into one write set (built on the loop), which the writer thread (store/writer.h) commits
 * in one transaction (one fsync) while the loop goes on; when the loop learns it is durable,
 * each one's progress or finished event goes out (dispatch_persisted).  A queued program is
 * not dispatched, and its events wait for the commit.  Sets commit in the order built, and a
 * direct write (persist_write, and any other store_update) waits for the sets queued before
 * it.  When a set's transaction fails each of its programs is written alone, whole
 * (persist_or_wait: waiting and retries as above).  persist_flush builds and queues the set
 * now; persist_sync also waits for every set and hands their events out (drain, shutdown);
 * persist_unqueue drops p from the queue or its set (its own write or core_forget takes over;
 * if p's set is still being written, this waits for it, and an accepting write that committed
 * there sends "accepted" then: the next write does not add the idempotency key again).
 */
void persist_later(struct core *c, struct program *p, int final);
/* Queues a new program's accepting write (record, chains, idempotency key, tenant index) for
 * the group commit: the Submit is answered when it is durable (submit_accepted), or refused if
 * it cannot be written even alone (submit_refused).  Returns 0 or -ENOMEM (nothing queued). */
int persist_accept(struct core *c, struct program *p);
/* p's accepting write is over (committed, refused, or p forgotten): p leaves the pending
 * accepts and their idempotency keys.  Nothing when p is not accept-pending. */
void persist_accept_end(struct core *c, struct program *p);
/* The live program whose accepting write, carrying this tenant's idempotency key, is not yet
 * known to be committed (queued, with the writer, or retried after a failure), or NULL. */
struct program *persist_accept_key(struct core *c, const char *tenant, uint64_t uid,
    const char *key);
/* Queues a put for the next group commit (no acknowledgement: records whose memory copy is
 * the truth and is written again later, e.g. risk controllers); a set that fails gives its
 * puts back for the next one; written at core_free if no set took it.  Returns 0, -ENOMEM or
 * -EINVAL (wset_put). */
int persist_put_later(struct core *c, enum store_db db, const char *key,
    const ProtobufCMessage *msg);
/* The same put, durable when this returns (after everything queued before it, and after the
 * puts still waiting for the next set, written in the same transaction so that an older value
 * never lands after this one): a direct write, for the rare record that must not wait. */
int persist_put_now(struct core *c, enum store_db db, const char *key, const ProtobufCMessage *msg);
void persist_flush(struct core *c);
void persist_sync(struct core *c);
void persist_unqueue(struct core *c, struct program *p);
/* The retry timer, the group commit's events and the writer thread (core_new; -ENOMEM,
 * -EAGAIN) and their release (core_free: what the writer holds is committed; results queued
 * and not built are dropped: the store holds the last commit). */
int persist_init(struct core *c);
void persist_fini(struct core *c);

/* The idempotency DB key of a client's key: "<tenant>/<uid, 16 hex>/<key>", so a tenant
 * re-created under the same name (another uid) never meets the old tenant's keys; a tenant of
 * uid 0 (from before uids) keeps the old "<tenant>/<key>".  Truncated to len. */
void persist_idem_key(const char *tenant, uint64_t uid, const char *key, char *buf, size_t len);

#endif
