/*
 * persist.h — a program's durable write (one LMDB transaction): the ProgramRecord, its changed
 * chains (RequestRecords), at the end the HistoryRecord, and on acceptance the idempotency key.
 * Chains are marked clean only after the commit.  For the core's files; loop thread only.
 */
#ifndef CERTA_DAEMON_PERSIST_H
#define CERTA_DAEMON_PERSIST_H

#include <stddef.h>
#include <stdint.h>

struct core;
struct program;

/* Writes p: every chain (all_chains) or only dirty ones, the history record (history), the
 * idempotency key (first: the accepting write; CERTA_EEXIST if the key is taken).  Returns 0,
 * a store error (logged) or -ENOMEM. */
int persist_write(struct core *c, struct program *p, int all_chains, int history, int first);
/* persist_write without the idempotency key: every later write. */
int persist_program(struct core *c, struct program *p, int all_chains, int history);

/* The idempotency DB key of a client's key: "<tenant>/<uid, 16 hex>/<key>", so a tenant
 * re-created under the same name (another uid) never meets the old tenant's keys; a tenant of
 * uid 0 (from before uids) keeps the old "<tenant>/<key>".  Truncated to len. */
void persist_idem_key(const char *tenant, uint64_t uid, const char *key, char *buf, size_t len);

#endif
