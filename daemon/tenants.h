/*
 * tenants.h — tenants, API keys and quotas.
 *
 * Tenants live in the LMDB tenants DB (TenantRecord: the tenant and the SHA-256 hashes of its
 * keys) and are cached here.  API keys look like "certa_<key id>_<secret>": the key id is
 * public (shown in listings, used to find the tenant), the whole key is shown once at creation
 * and only its SHA-256 is stored; verification compares hashes in constant time.
 *
 * Every tenant has a uid (TenantRecord.uid): 64 random bits, non-zero, fixed when the tenant is
 * created and never given to another current tenant.  Programs, history and idempotency keys
 * carry it, so a tenant removed and created again under the same name (another uid) sees
 * nothing of the old one.  Tenants stored before uids existed keep uid 0 and their data.
 *
 * Quotas (per tenant, 0 = the server default from configuration): concurrent programs, tokens
 * per minute, budget per program, sc n, prompt bytes.  tenants_admit() checks all of them
 * before anything is written.  Tokens per minute counts the tokens served (charged as steps
 * complete) in a sliding window of the last 60 seconds; it is checked at admission and again
 * before every step (tenants_throttle): a tenant at its limit has its steps held back, not
 * failed, until the window frees up.
 *
 * Loop thread only.  Errors: CERTA_EINVAL (bad name/value; message says which), CERTA_EEXIST,
 * CERTA_ENOTFOUND, CERTA_ECAPACITY (quota; message says which and when to retry), CERTA_EAUTH,
 * store errors, -ENOMEM.
 */
#ifndef CERTA_DAEMON_TENANTS_H
#define CERTA_DAEMON_TENANTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "certa/v1/admin.pb-c.h"

struct store;
struct store_txn;
struct tenants;

#define TENANTS_KEY_MAX 96

struct tenant_quota {
	uint32_t max_concurrent_programs;
	uint64_t tokens_per_minute;
	uint64_t max_budget_per_program;
	uint32_t max_sc_n;
	uint32_t max_prompt_bytes;
};

/* Per-tenant counters (memory; rebuilt from programs on restart where it matters). */
struct tenant_stats {
	uint64_t queued, running, finished, cancelled, failed;
	uint64_t tokens_used, tokens_saved;
};

int tenants_open(struct store *st, const struct tenant_quota *defaults, struct tenants **out);
void tenants_free(struct tenants *ts);
void tenants_set_defaults(struct tenants *ts, const struct tenant_quota *defaults);

/* Creates a tenant from an admin request and its first API key (written to key, shown once).
 * Fields left 0 take defaults (weight 1, priority NORMAL). */
int tenants_create(struct tenants *ts, const Certa__V1__Tenant *t, char *key, size_t keylen,
    char *err, size_t errlen);
/* Creates a key-less tenant if it does not exist (the anonymous tenant). */
int tenants_ensure(struct tenants *ts, const char *name);
/* Updates the listed fields ("weight", "priority", "policy", "quota.max_sc_n", ...; none
 * listed = all settable fields). */
int tenants_update(struct tenants *ts, const Certa__V1__Tenant *t, char *const *fields,
    size_t nfields, char *err, size_t errlen);
/* Deletes a tenant without programs in progress (CERTA_ESTATE otherwise).  `also` (may be
 * NULL) runs inside the deleting LMDB transaction with also_arg (e.g. policies_delete_txn, so
 * the tenant's policies go with it); it must be re-runnable (store.h), and its error aborts the
 * deletion.  The tenant's memory (accounting, quota bucket) goes with it. */
int tenants_delete(struct tenants *ts, const char *name,
    int (*also)(struct store_txn *txn, void *arg), void *also_arg, char *err, size_t errlen);
int tenants_rotate_key(struct tenants *ts, const char *name, bool revoke_others, char *key,
    size_t keylen, char *key_id, size_t idlen);
int tenants_revoke_key(struct tenants *ts, const char *name, const char *key_id);

/* Verifies an "authorization" metadata value ("Bearer <key>"); on success *tenant points to
 * the tenant's name (valid until the tenant is deleted).  CERTA_EAUTH otherwise. */
int tenants_authenticate(struct tenants *ts, const char *authorization, const char **tenant);

bool tenants_exists(const struct tenants *ts, const char *name);
/* The tenant's uid into *uid (0: a tenant from before uids).  CERTA_ENOTFOUND: no tenant. */
int tenants_uid(const struct tenants *ts, const char *name, uint64_t *uid);
size_t tenants_count(const struct tenants *ts);
const char *tenants_name_at(const struct tenants *ts, size_t i);
uint32_t tenants_weight(const struct tenants *ts, const char *name);
int tenants_priority(const struct tenants *ts, const char *name);
const char *tenants_policy(const struct tenants *ts, const char *name);
/* Fills an admin Tenant message; strings and arrays are owned by ts / freed with
 * tenants_pb_free. */
int tenants_to_pb(const struct tenants *ts, const char *name, Certa__V1__Tenant *out);
void tenants_pb_free(Certa__V1__Tenant *t);

/* Admission: checks every quota for a new program of n chains, budget tokens and a problem of
 * prompt_bytes.  Nothing changes. */
int tenants_admit(struct tenants *ts, const char *name, uint32_t n, uint64_t budget,
    size_t prompt_bytes, int64_t now_ms, char *err, size_t errlen);
/* Accounting hooks. */
void tenants_program_state(struct tenants *ts, const char *name, int from, int to);
void tenants_charge(struct tenants *ts, const char *name, uint64_t tokens, int64_t now_ms);
void tenants_saved(struct tenants *ts, const char *name, uint64_t tokens);
/* Dispatch: 0 when the tenant may start a step at now_ms, else the milliseconds until the
 * tokens it was served in the last minute fall below its tokens_per_minute (its steps wait).
 * The first refusal starts a throttled period (logged), the next 0 ends it (logged, added to
 * tenants_throttled_ms).  An unknown tenant or no limit: 0. */
int64_t tenants_throttle(struct tenants *ts, const char *name, int64_t now_ms);
/* Milliseconds the tenant's steps were held back by tokens_per_minute since start, the
 * period in progress included. */
uint64_t tenants_throttled_ms(const struct tenants *ts, const char *name, int64_t now_ms);
const struct tenant_stats *tenants_stats(const struct tenants *ts, const char *name);
/* The tenant's effective per-program limits (its quota, else the server default; 0: no
 * limit) on chains (max_sc_n) and budget (max_budget_per_program), for the router: a routed
 * start or an escalation stays within them.  An unknown tenant: both 0. */
void tenants_program_limits(const struct tenants *ts, const char *name, uint32_t *max_n,
    uint64_t *max_budget);
/* Live (queued + running) programs of a tenant. */
uint64_t tenants_live(const struct tenants *ts, const char *name);

#endif
