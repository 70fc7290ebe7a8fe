/*
 * persist_impl.h — what persist.c (a program's write) and commit.c (the group commit) share:
 * building a program's records into a write set, marking them saved, the health hook and the
 * "accepted" hand-off.  Only for those two files; loop thread only.
 */
#ifndef CERTA_DAEMON_PERSIST_IMPL_H
#define CERTA_DAEMON_PERSIST_IMPL_H

#include "store/wset.h"

struct core;
struct pbarena;
struct program;

/* The error log's rate limit for failed writes and failed group commits. */
#define PERSIST_LOG_MS 10000

/* What one write of a program holds. */
struct persist_ctx {
	struct program *p;
	int all_chains;   /* write every chain, not only dirty ones */
	int history;      /* also write the history record */
	int first;        /* the accepting write: also record the idempotency key */
	struct pbarena *scratch;   /* the messages' arrays while they are packed (reset before
	                            * persist_build returns); NULL: the heap */
};

/* Records the program record, changed chains (their new text as chunks) and, with history,
 * the history record in ws; on the accepting write also the idempotency key and the tenant
 * index.  Returns 0, -ENOMEM or a wset error (ws then holds part of it: truncate to a mark). */
int persist_build(struct wset *ws, const struct persist_ctx *cp);
/* After a commit of what persist_build recorded (or once it is handed to the writer): the
 * chains written hold their text and sealed probe points in the store. */
void persist_saved(struct program *p, int all_chains);
/* Tells the health hook when the core becomes degraded (programs wait for a write) or healthy
 * again. */
void persist_health(struct core *c);
/* p's accepting write committed: p leaves the pending accepts, the client hears "accepted". */
void persist_accepted(struct core *c, struct program *p);

#endif
