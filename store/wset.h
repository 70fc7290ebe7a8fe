/*
 * wset.h — a write set: puts, adds and prefix deletes recorded now (messages packed at once)
 * and applied later, in the order recorded, inside one store transaction (wset_apply).
 *
 * Building a write set touches no store and keeps no pointer to what it was built from, so the
 * objects may change, and the set may be applied on another thread (store/writer.h), while the
 * builder goes on.  Applying only reads the set; it can run again (store_update's retry after
 * growing the map).
 *
 * Threads: a set belongs to one thread at a time (the builder, then the writer until its
 * commit is reported).  Errors: 0, -ENOMEM, -EINVAL (bad key, wrong message type, a message
 * that fails protobuf_c_message_check); wset_apply: the store's errors, CERTA_EEXIST for an
 * add whose key exists.
 */
#ifndef CERTA_STORE_WSET_H
#define CERTA_STORE_WSET_H

#include <stddef.h>

#include "store/store.h"

struct wset;   /* opaque */

int wset_new(struct wset **out);
void wset_free(struct wset *ws);
/* Empties ws, keeping its buffers for the next set. */
void wset_clear(struct wset *ws);

/* Records "store msg under key in db" (replacing any value); msg is packed now. */
int wset_put(struct wset *ws, enum store_db db, const char *key, const ProtobufCMessage *msg);
/* As wset_put, but applying fails with CERTA_EEXIST when key exists (store_add). */
int wset_add(struct wset *ws, enum store_db db, const char *key, const ProtobufCMessage *msg);
/* Records "delete every key of db that starts with prefix" (store_del_prefix). */
int wset_del_prefix(struct wset *ws, enum store_db db, const char *prefix);

/* Records every operation of src after those of dst (src unchanged).  0 or -ENOMEM (dst
 * unchanged). */
int wset_append(struct wset *dst, const struct wset *src);

/* Operations recorded, and the bytes they hold (keys and packed messages). */
size_t wset_count(const struct wset *ws);
size_t wset_bytes(const struct wset *ws);
/* A mark of what is recorded so far, and dropping everything recorded after a mark. */
size_t wset_mark(const struct wset *ws);
void wset_truncate(struct wset *ws, size_t mark);

/* Applies every operation in order through txn (a store_update body: store_txn_fn with the
 * set as arg).  Returns 0 or the first failing operation's error. */
int wset_apply(struct store_txn *txn, void *ws);

#endif
