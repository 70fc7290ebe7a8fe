/*
 * tmpstore.h — unit-test support: a real LMDB environment in a fresh mkdtemp directory.
 *
 * tmpstore_new() makes "$TMPDIR/certa-NAME-XXXXXX" (TMPDIR defaults to /tmp) and opens a store in
 * its env/ subdirectory (no fsync: commits are not durable, which tests do not need);
 * tmpstore_reopen() closes and opens the same environment (what a restart sees);
 * tmpstore_free() closes the store and removes the directory.  Returns 0 or a store error;
 * *out written only on success.  One thread.
 */
#ifndef CERTA_TESTS_SUPPORT_TMPSTORE_H
#define CERTA_TESTS_SUPPORT_TMPSTORE_H

struct store;
struct tmpstore;

int tmpstore_new(const char *name, struct tmpstore **out);
/* The open store (NULL after a failed reopen); owned by ts. */
struct store *tmpstore_store(struct tmpstore *ts);
/* The environment directory (for core_options.state_dir); owned by ts. */
const char *tmpstore_dir(const struct tmpstore *ts);
/* Closes the store (callers first free what uses it) and opens it again. */
int tmpstore_reopen(struct tmpstore *ts);
/* Closes without reopening (a module that opens the directory itself, like core_new). */
void tmpstore_close(struct tmpstore *ts);
void tmpstore_free(struct tmpstore *ts);

#endif
