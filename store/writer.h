/*
 * writer.h — the store's writer thread: write sets (store/wset.h) committed in the order they
 * were queued, off the caller's thread.
 *
 * The caller (certad's loop) builds a write set, queues it with writer_submit and goes on; the
 * writer commits it (store_update_now: writes, fdatasync, meta page) and reports the result
 * through the set's callback, called on the writer thread: the callback must only hand the
 * result over (a flag and a wake-up of the caller's loop).  The caller keeps the set (does not
 * touch it) until then.  The sets queued while a commit runs go together in the next
 * transaction (one write of their pages, one fdatasync; at most 64): the same records in the
 * same order as a transaction each, reported when that transaction is durable.  A set that
 * fails (an add meeting an existing key, a store error) fails alone: the shared transaction is
 * then dropped and its sets committed one by one.  While a writer runs, store_update on any other thread first waits
 * until everything queued so far is committed (store_set_barrier), so a direct write never
 * overtakes a queued one; store_view does not wait (it reads the last commit).
 *
 * Threads: writer_start, writer_submit, writer_wait and writer_stop from the owning thread.
 */
#ifndef CERTA_STORE_WRITER_H
#define CERTA_STORE_WRITER_H

#include "store/store.h"
#include "store/wset.h"

struct writer;   /* opaque */

/* A commit's result: 0 or the store error (nothing of the set was written), and how long its
 * transaction took (shared with the sets committed with it).  Called on the writer thread. */
typedef void (*writer_done_fn)(void *arg, int rc, double seconds);

/* Starts the thread and installs the barrier on st.  Errors: -ENOMEM, -EAGAIN (no thread). */
int writer_start(struct store *st, struct writer **out);
/* Queues ws; done(arg, ...) is called once it is committed (or failed).  -ENOMEM: not queued. */
int writer_submit(struct writer *w, struct wset *ws, writer_done_fn done, void *arg);
/* Waits until every set queued so far has been committed and reported. */
void writer_wait(struct writer *w);
/* Sets queued and not yet reported. */
size_t writer_pending(struct writer *w);
/* Commits what is queued, stops the thread and removes the barrier.  NULL: nothing. */
void writer_stop(struct writer *w);

#endif
