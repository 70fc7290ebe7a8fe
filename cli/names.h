/*
 * names.h — the one table of printable names for the wire enums certactl shows and parses:
 * ProgramState (queued, running, ...), FinishReason (certain, budget, ...), Algorithm (cot, sc),
 * Priority (low, normal, high) and WorkerState (unknown, up, down, draining).  The same names appear in text and JSON output, so scripts
 * can rely on them.  UNSPECIFIED and values unknown to this build have no name (NULL).
 * Thread-safe (constant tables).
 */
#ifndef CERTA_CLI_NAMES_H
#define CERTA_CLI_NAMES_H

#include "certa/v1/admin.pb-c.h"
#include "certa/v1/common.pb-c.h"

/* Name of a value, or NULL for UNSPECIFIED and unknown values. */
const char *names_state(Certa__V1__ProgramState v);
const char *names_reason(Certa__V1__FinishReason v);
const char *names_algorithm(Certa__V1__Algorithm v);
const char *names_priority(Certa__V1__Priority v);
const char *names_worker_state(Certa__V1__WorkerState v);

/* Parses a name (exact, lower case) into *out.  Returns 0 or -EINVAL; *out is written only
 * on success. */
int names_state_parse(const char *s, Certa__V1__ProgramState *out);
int names_priority_parse(const char *s, Certa__V1__Priority *out);

/* "queued|running|finished|cancelled|failed", "low|normal|high": for usage messages. */
const char *names_state_choices(void);
const char *names_priority_choices(void);

#endif
