/*
 * policies.h — scheduling policies: a global default plus per-tenant overrides, versioned in
 * the LMDB policies DB with an audit record per change (who, when, old -> new), validated on
 * write, applied live (the next scheduling decision uses the new version).
 *
 * Keys in the policies DB: "<name>" -> the current version; "<name>@<version, 8 digits>" ->
 * every version ever stored with its audit.  name is "default" or a tenant's name.  Without a
 * stored "default", the base policy (built-in calibrated defaults, or the configured policy
 * file) applies.  Loop thread only.
 */
#ifndef CERTA_DAEMON_POLICIES_H
#define CERTA_DAEMON_POLICIES_H

#include <stddef.h>
#include <stdint.h>

#include "certa/v1/admin.pb-c.h"
#include "scheduler/sched.h"

struct store;
struct store_txn;
struct policies;

int policies_open(struct store *st, const struct sched_policy *base, struct policies **out);
void policies_free(struct policies *ps);
/* Replaces the base policy (configuration reload). */
void policies_set_base(struct policies *ps, const struct sched_policy *base);

/* Changes with every stored version and base change (callers cache decisions by it). */
uint64_t policies_generation(const struct policies *ps);

/* The policy that applies to a tenant: its override (named by ref, or its own name), else the
 * stored default, else the base.  Never NULL. */
const struct sched_policy *policies_effective(const struct policies *ps, const char *tenant,
    const char *ref);

/* Current policy of `name` ("default" or a tenant) as a wire message; text and name are
 * malloc'd (policies_pb_free).  An unset tenant policy returns the policy that applies. */
int policies_get(const struct policies *ps, const char *name, Certa__V1__Policy *out);
void policies_pb_free(Certa__V1__Policy *p);
/* Applies `text` (policy-file lines) on top of name's current policy, validates, stores a new
 * version with an audit record by `who`.  CERTA_EINVAL with the field and range in err when a
 * value is bad (nothing changes); store errors. */
int policies_set(struct policies *ps, const char *name, const char *text, const char *who,
    char *err, size_t errlen);
/* Makes an earlier version current again (as a new version).  CERTA_ENOTFOUND. */
int policies_rollback(struct policies *ps, const char *name, uint32_t version, const char *who,
    char *err, size_t errlen);
/* Audit trail of name, oldest first; free with policies_history_free. */
int policies_history(const struct policies *ps, const char *name,
    Certa__V1__PolicyHistoryReply *out);
void policies_history_free(Certa__V1__PolicyHistoryReply *out);

/* A store_txn_fn (arg: the name, a C string) deleting every policy record of that name, the
 * current one and its "<name>@<version>" audit trail, inside the caller's write transaction
 * (a tenant's deletion: tenants_delete).  Re-runnable.  Names without records are fine;
 * "default" is -EINVAL.  Follow a commit with policies_forget. */
int policies_delete_txn(struct store_txn *txn, void *name);
/* Drops the cached current policy of `name` (after policies_delete_txn committed): the name
 * falls back to the default from now on (the generation changes). */
void policies_forget(struct policies *ps, const char *name);

#endif
