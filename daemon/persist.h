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
 * The group commit of a loop turn's writes, through the store's writer thread: commit.h.
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
/* The retry timer and the direct writes' set (core_new; -ENOMEM) and their release (core_free,
 * after commit_fini). */
int persist_init(struct core *c);
void persist_fini(struct core *c);

/* The idempotency DB key of a client's key: "<tenant>/<uid, 16 hex>/<key>", so a tenant
 * re-created under the same name (another uid) never meets the old tenant's keys; a tenant of
 * uid 0 (from before uids) keeps the old "<tenant>/<key>".  Truncated to len. */
void persist_idem_key(const char *tenant, uint64_t uid, const char *key, char *buf, size_t len);

#endif
