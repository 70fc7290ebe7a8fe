/*
 * recovery.h — crash recovery: every QUEUED/RUNNING program in the store is read back with its
 * chains and continues (steps are idempotent: workers resume from resume_tokens).  For the
 * core's files; called once by core_new.
 */
#ifndef CERTA_DAEMON_RECOVERY_H
#define CERTA_DAEMON_RECOVERY_H

struct core;

/* Adds the unfinished programs to the live set.  A program whose records are unreadable or
 * inconsistent is logged and skipped.  Returns 0, -ENOMEM or a store error. */
int recovery_run(struct core *c);

#endif
