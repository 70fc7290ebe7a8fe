/*
 * commit.h — the group commit: the writes of one loop turn (steps, endings, accepting writes,
 * queued puts) in one write set, committed by the store's writer thread (store/writer.h) in one
 * transaction while the loop goes on; events and acknowledgements go out once it is durable.
 * A program's own write and the retries of failed ones: persist.h.  Loop thread only.
 *
 * commit_later queues p's step (final 0) or ending (final 1) for the commit
 * that runs once the loop turn's step results are handled: every queued program's records
 * go into one write set (built on the loop), which the writer thread (store/writer.h) commits
 * in one transaction (one fsync) while the loop goes on; when the loop learns it is durable,
 * each one's progress or finished event goes out (dispatch_persisted).  A queued program is
 * not dispatched, and its events wait for the commit.  Sets commit in the order built, and a
 * direct write (persist_write, and any other store_update) waits for the sets queued before
 * it.  When a set's transaction fails each of its programs is written alone, whole
 * (persist_or_wait: waiting and retries as above).  commit_flush builds and queues the set
 * now; commit_sync also waits for every set and hands their events out (drain, shutdown);
 * commit_unqueue drops p from the queue or its set (its own write or core_forget takes over;
 * if p's set is still being written, this waits for it, and an accepting write that committed
 * there sends "accepted" then: the next write does not add the idempotency key again).
 */
#ifndef CERTA_DAEMON_COMMIT_H
#define CERTA_DAEMON_COMMIT_H

#include <stdint.h>

#include "store/store.h"

struct core;
struct program;

void commit_later(struct core *c, struct program *p, int final);
/* Queues a new program's accepting write (record, chains, idempotency key, tenant index) for
 * the group commit: the Submit is answered when it is durable (submit_accepted), or refused if
 * it cannot be written even alone (submit_refused).  Returns 0 or -ENOMEM (nothing queued). */
int commit_accept(struct core *c, struct program *p);
/* p's accepting write is over (committed, refused, or p forgotten): p leaves the pending
 * accepts and their idempotency keys.  Nothing when p is not accept-pending. */
void commit_accept_end(struct core *c, struct program *p);
/* The live program whose accepting write, carrying this tenant's idempotency key, is not yet
 * known to be committed (queued, with the writer, or retried after a failure), or NULL. */
struct program *commit_accept_key(struct core *c, const char *tenant, uint64_t uid,
    const char *key);
/* Queues a put for the next group commit (no acknowledgement: records whose memory copy is
 * the truth and is written again later, e.g. risk controllers); a set that fails gives its
 * puts back for the next one; written at core_free if no set took it.  Returns 0, -ENOMEM or
 * -EINVAL (wset_put). */
int commit_put_later(struct core *c, enum store_db db, const char *key,
    const ProtobufCMessage *msg);
/* The same put, durable when this returns (after everything queued before it, and after the
 * puts still waiting for the next set, written in the same transaction so that an older value
 * never lands after this one): a direct write, for the rare record that must not wait. */
int commit_put_now(struct core *c, enum store_db db, const char *key, const ProtobufCMessage *msg);
/* Frees the spare sets kept for reuse but the most recently used one (core_trim: the load
 * fell; their write-set buffers, up to a few MB each, were sized by the peak's turns). */
void commit_spares_drop(struct core *c);
void commit_flush(struct core *c);
void commit_sync(struct core *c);
void commit_unqueue(struct core *c, struct program *p);
/* p's write with the writer is done: p leaves its set (waiting for the writer if needed); if
 * the set failed p's next write rewrites everything; an accepting write that committed sends
 * "accepted" now.  Nothing when p is in no set.  persist_write calls it first. */
void commit_settle(struct core *c, struct program *p);
/* The group commit's events and the writer thread (core_new; -errno, -ENOMEM, -EAGAIN) and
 * their release (core_free: later puts are written, what the writer holds is committed;
 * results queued and not built are dropped: the store holds the last commit). */
int commit_init(struct core *c);
void commit_fini(struct core *c);

#endif
