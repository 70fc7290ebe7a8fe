/*
 * persist.h — a program's durable write (one LMDB transaction): the ProgramRecord, its changed
 * chains (RequestRecords), at the end the HistoryRecord, and on acceptance the idempotency key.
 * Chains are marked clean only after the commit.  For the core's files; loop thread only.
 */
#ifndef CERTA_DAEMON_PERSIST_H
#define CERTA_DAEMON_PERSIST_H

struct core;
struct program;

/* Writes p: every chain (all_chains) or only dirty ones, the history record (history), the
 * idempotency key (first: the accepting write; CERTA_EEXIST if the key is taken).  Returns 0,
 * a store error (logged) or -ENOMEM. */
int persist_write(struct core *c, struct program *p, int all_chains, int history, int first);
/* persist_write without the idempotency key: every later write. */
int persist_program(struct core *c, struct program *p, int all_chains, int history);

#endif
