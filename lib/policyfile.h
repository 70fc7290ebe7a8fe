/*
 * policyfile.h — reading a scheduling policy file (format: scheduler/policy.h).
 *
 * The scheduler core does no I/O; this is its file edge.  Main thread (startup, reload).
 */
#ifndef CERTA_LIB_POLICYFILE_H
#define CERTA_LIB_POLICYFILE_H

#include <stddef.h>

#include "scheduler/sched.h"

/* Largest policy file read, in bytes. */
#define POLICYFILE_MAX (1u << 20)

/*
 * Reads path and applies it on top of *p (policy_parse).  On success writes *p and returns 0;
 * on failure leaves *p unchanged, writes a one-line message to err and returns -errno (file
 * cannot be read: -ENOENT, -EACCES, -EISDIR, -EFBIG over POLICYFILE_MAX, -ENOMEM) or
 * CERTA_ECONFIG (bad content).
 */
int policyfile_load(const char *path, struct sched_policy *p, char *err, size_t errlen);

/* Writes p to path (policy_format), with `comment` lines (may be NULL; each line is prefixed
 * with "# ") first.  Returns 0 or -errno. */
int policyfile_save(const char *path, const struct sched_policy *p, const char *comment);

#endif
