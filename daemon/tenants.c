/* tenants.c — tenants, hashed API keys, quotas and per-tenant accounting. */
#include "daemon/tenants.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "certa/v1/records.pb-c.h"
#include "lib/array.h"
#include "lib/error.h"
#include "lib/hex.h"
#include "lib/log.h"
#include "lib/strmap.h"
#include "store/store.h"

#define TENANT_NAME_MAX 64
#define TENANT_KEYS_MAX 16

struct tenant_key {
	char id[17];
	uint8_t hash[32];
	int64_t created_ms;
	bool revoked;
	int64_t revoked_ms;
};

/* The tokens per minute quota counts the tokens served in a sliding window of this many
 * seconds, one slot per second.  A token counts until TENANTS_WINDOW_S seconds after the end
 * of the second it was served in (between 60 and 61 s), so that any 60 s holds at most the
 * quota (plus the steps in flight when it was reached). */
#define TENANTS_WINDOW_S 60
#define TENANTS_SLOTS (TENANTS_WINDOW_S + 1)

struct tenant {
	char name[TENANT_NAME_MAX + 1];
	uint64_t uid;              /* TenantRecord.uid: random, non-zero, fixed at creation */
	uint32_t weight;
	int priority;
	struct tenant_quota q;
	char policy[TENANT_NAME_MAX + 1];
	int64_t created_ms;
	struct tenant_key keys[TENANT_KEYS_MAX];
	size_t nkeys;
	/* runtime */
	struct tenant_stats st;
	/* Tokens served in each of the last TENANTS_SLOTS seconds (tokens per minute quota):
	 * slot s % TENANTS_SLOTS holds second s when win_sec says so, else it is stale. */
	uint64_t win_tokens[TENANTS_SLOTS];
	int64_t win_sec[TENANTS_SLOTS];
	int64_t throttled_since_ms;  /* held back at dispatch since then; 0 = not throttled */
	uint64_t throttled_ms;       /* finished throttled periods */
};

struct tenants {
	struct store *st;
	struct tenant_quota defaults;
	struct tenant **t;
	size_t n, cap;
	struct strmap *byname;     /* name -> struct tenant */
	struct strmap *bykey;      /* key id -> the struct tenant holding it */
	/* The key index is incomplete: two tenants' keys share an id (records written before
	 * new ids were checked against every tenant's) or an insertion failed for memory.
	 * Authentication then falls back to a scan of every tenant's keys. */
	bool scan_keys;
};

static int64_t
tenants_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct tenant *
tenants_find(const struct tenants *ts, const char *name)
{
	if (name == NULL)
		return NULL;
	return strmap_get(ts->byname, name);
}

/* Puts t's key ids in the key index.  An id another tenant holds stays that tenant's and
 * sends authentication to the scan (as does a failed insertion). */
static void
tenants_index_keys(struct tenants *ts, struct tenant *t)
{
	size_t i;

	for (i = 0; i < t->nkeys; i++) {
		struct tenant *o = strmap_get(ts->bykey, t->keys[i].id);
		if (o == t)
			continue;
		if (o != NULL) {
			log_warn(LOG_ADMIN, "tenants %s and %s have keys with the same id %s: rotate "
			    "one of them", o->name, t->name, t->keys[i].id);
			ts->scan_keys = true;
		} else if (strmap_put(ts->bykey, t->keys[i].id, t, NULL) != 0) {
			ts->scan_keys = true;
		}
	}
}

/* Takes t's key ids out of the key index. */
static void
tenants_unindex_keys(struct tenants *ts, const struct tenant *t)
{
	size_t i;

	for (i = 0; i < t->nkeys; i++)
		if (strmap_get(ts->bykey, t->keys[i].id) == t)
			strmap_del(ts->bykey, t->keys[i].id);
}

/* Names: 1..64 of [a-z0-9_-], starting with a letter or digit. */
static bool
tenants_name_valid(const char *s)
{
	size_t i, n = s != NULL ? strlen(s) : 0;

	if (n == 0 || n > TENANT_NAME_MAX || !isalnum((unsigned char)s[0]))
		return false;
	for (i = 0; i < n; i++)
		if (!(islower((unsigned char)s[i]) || isdigit((unsigned char)s[i]) || s[i] == '-' ||
		    s[i] == '_'))
			return false;
	return true;
}

static void
tenants_hash(const char *key, uint8_t out[32])
{
	unsigned int len = 32;

	EVP_Digest(key, strlen(key), out, &len, EVP_sha256(), NULL);
}

/* A new key "certa_<8 hex id>_<48 hex secret>"; the key itself is never stored. */
static int
tenants_new_key(const struct tenants *ts, struct tenant *t, char *key, size_t keylen,
    char *key_id, size_t idlen)
{
	uint8_t rnd[28];
	char id[9], secret[49];
	struct tenant_key *k;
	size_t i;

	/* The id names the key for authentication and revocation: unique across tenants (32
	 * random bits meet again within ~65k keys). */
	for (;;) {
		if (getrandom(rnd, sizeof rnd, 0) != sizeof rnd)
			return -EIO;
		hex_encode(rnd, 4, id);
		for (i = 0; i < t->nkeys && strcmp(t->keys[i].id, id) != 0; i++)
			;
		if (i == t->nkeys && strmap_get(ts->bykey, id) == NULL)
			break;
	}
	hex_encode(rnd + 4, 24, secret);
	if (t->nkeys == TENANT_KEYS_MAX) {
		/* Make room by forgetting the oldest revoked key. */
		for (i = 0; i < t->nkeys && !t->keys[i].revoked; i++)
			;
		if (i == t->nkeys)
			return CERTA_ECAPACITY;
		memmove(&t->keys[i], &t->keys[i + 1], (t->nkeys - i - 1) * sizeof t->keys[0]);
		t->nkeys--;
	}
	k = &t->keys[t->nkeys];
	memset(k, 0, sizeof *k);
	snprintf(k->id, sizeof k->id, "%s", id);
	snprintf(key, keylen, "certa_%s_%s", id, secret);
	tenants_hash(key, k->hash);
	k->created_ms = tenants_now_ms();
	t->nkeys++;
	if (key_id != NULL)
		snprintf(key_id, idlen, "%s", id);
	explicit_bzero(rnd, sizeof rnd);
	explicit_bzero(secret, sizeof secret);
	return 0;
}

/* A uid for a new tenant: random, non-zero, and no current tenant's (a removed tenant's uid
 * is not remembered; 64 random bits do not repeat in practice). */
static int
tenants_new_uid(const struct tenants *ts, uint64_t *uid)
{
	size_t i;

	for (;;) {
		if (getrandom(uid, sizeof *uid, 0) != (ssize_t)sizeof *uid)
			return -EIO;
		if (*uid == 0)
			continue;
		for (i = 0; i < ts->n && ts->t[i]->uid != *uid; i++)
			;
		if (i == ts->n)
			return 0;
	}
}

/* --- persistence --- */

static int
tenants_put_txn(struct store_txn *txn, void *arg)
{
	struct tenant *t = arg;
	Certa__V1__TenantRecord rec = CERTA__V1__TENANT_RECORD__INIT;
	Certa__V1__Tenant tp = CERTA__V1__TENANT__INIT;
	Certa__V1__Quota q = CERTA__V1__QUOTA__INIT;
	Certa__V1__KeyHash kh[TENANT_KEYS_MAX], *khp[TENANT_KEYS_MAX];
	size_t i;

	tp.name = t->name;
	tp.weight = t->weight;
	tp.priority = (Certa__V1__Priority)t->priority;
	q.max_concurrent_programs = t->q.max_concurrent_programs;
	q.tokens_per_minute = t->q.tokens_per_minute;
	q.max_budget_per_program = t->q.max_budget_per_program;
	q.max_sc_n = t->q.max_sc_n;
	q.max_prompt_bytes = t->q.max_prompt_bytes;
	tp.quota = &q;
	tp.policy = t->policy;
	tp.created_unix_ms = t->created_ms;
	for (i = 0; i < t->nkeys; i++) {
		certa__v1__key_hash__init(&kh[i]);
		kh[i].key_id = t->keys[i].id;
		kh[i].sha256.data = t->keys[i].hash;
		kh[i].sha256.len = 32;
		kh[i].created_unix_ms = t->keys[i].created_ms;
		kh[i].revoked = t->keys[i].revoked;
		kh[i].revoked_unix_ms = t->keys[i].revoked_ms;
		khp[i] = &kh[i];
	}
	rec.tenant = &tp;
	rec.uid = t->uid;
	rec.n_keys = t->nkeys;
	rec.keys = khp;
	return store_put(txn, STORE_DB_TENANTS, t->name, &rec.base);
}

static int
tenants_save(struct tenants *ts, struct tenant *t)
{
	int rc = store_update(ts->st, tenants_put_txn, t);

	if (rc < 0)
		log_err(LOG_ADMIN, "tenant %s: cannot store: %s", t->name, certa_strerror(rc));
	return rc < 0 ? rc : 0;
}

static int
tenants_add(struct tenants *ts, struct tenant *t)
{
	if (ARRAY_GROW(ts->t, ts->cap, ts->n + 1) != 0 ||
	    strmap_put(ts->byname, t->name, t, NULL) != 0)
		return -ENOMEM;
	ts->t[ts->n++] = t;
	tenants_index_keys(ts, t);
	return 0;
}

static int
tenants_load_one(const char *key, size_t keylen, const ProtobufCMessage *msg, void *arg)
{
	struct tenants *ts = arg;
	const Certa__V1__TenantRecord *rec = (const Certa__V1__TenantRecord *)msg;
	struct tenant *t;
	size_t i;

	(void)keylen;
	if (rec->tenant == NULL || !tenants_name_valid(rec->tenant->name)) {
		log_warn(LOG_STORE, "tenants: skipping malformed record %s", key);
		return 0;
	}
	t = calloc(1, sizeof *t);
	if (t == NULL)
		return -ENOMEM;
	snprintf(t->name, sizeof t->name, "%s", rec->tenant->name);
	t->uid = rec->uid;
	t->weight = rec->tenant->weight ? rec->tenant->weight : 1;
	t->priority = rec->tenant->priority;
	if (rec->tenant->quota != NULL) {
		t->q.max_concurrent_programs = rec->tenant->quota->max_concurrent_programs;
		t->q.tokens_per_minute = rec->tenant->quota->tokens_per_minute;
		t->q.max_budget_per_program = rec->tenant->quota->max_budget_per_program;
		t->q.max_sc_n = rec->tenant->quota->max_sc_n;
		t->q.max_prompt_bytes = rec->tenant->quota->max_prompt_bytes;
	}
	snprintf(t->policy, sizeof t->policy, "%s", rec->tenant->policy);
	t->created_ms = rec->tenant->created_unix_ms;
	for (i = 0; i < rec->n_keys && t->nkeys < TENANT_KEYS_MAX; i++) {
		struct tenant_key *k = &t->keys[t->nkeys];
		if (rec->keys[i]->sha256.len != 32)
			continue;
		snprintf(k->id, sizeof k->id, "%s", rec->keys[i]->key_id);
		memcpy(k->hash, rec->keys[i]->sha256.data, 32);
		k->created_ms = rec->keys[i]->created_unix_ms;
		k->revoked = rec->keys[i]->revoked;
		k->revoked_ms = rec->keys[i]->revoked_unix_ms;
		t->nkeys++;
	}
	if (tenants_add(ts, t) != 0) {
		free(t);
		return -ENOMEM;
	}
	return 0;
}

static int
tenants_load_txn(struct store_txn *txn, void *arg)
{
	return store_scan(txn, STORE_DB_TENANTS, "", NULL, tenants_load_one, arg);
}

int
tenants_open(struct store *st, const struct tenant_quota *defaults, struct tenants **out)
{
	struct tenants *ts = calloc(1, sizeof *ts);
	int rc;

	if (ts == NULL)
		return -ENOMEM;
	ts->byname = strmap_new();
	ts->bykey = strmap_new();
	if (ts->byname == NULL || ts->bykey == NULL) {
		tenants_free(ts);
		return -ENOMEM;
	}
	ts->st = st;
	ts->defaults = *defaults;
	rc = store_view(st, tenants_load_txn, ts);
	if (rc < 0) {
		tenants_free(ts);
		return rc;
	}
	log_info(LOG_ADMIN, "tenants: %zu loaded", ts->n);
	*out = ts;
	return 0;
}

void
tenants_free(struct tenants *ts)
{
	size_t i;

	if (ts == NULL)
		return;
	for (i = 0; i < ts->n; i++)
		free(ts->t[i]);
	free(ts->t);
	strmap_free(ts->byname, NULL);
	strmap_free(ts->bykey, NULL);
	free(ts);
}

void
tenants_set_defaults(struct tenants *ts, const struct tenant_quota *defaults)
{
	ts->defaults = *defaults;
}

/* Applies one settable field from an admin message; validates its value. */
static int
tenants_apply(struct tenant *t, const Certa__V1__Tenant *src, const char *field, char *err,
    size_t errlen)
{
	const Certa__V1__Quota *q = src->quota;

	if (strcmp(field, "weight") == 0) {
		if (src->weight < 1 || src->weight > 10000) {
			snprintf(err, errlen, "weight: %u is out of range [1, 10000]", src->weight);
			return CERTA_EINVAL;
		}
		t->weight = src->weight;
	} else if (strcmp(field, "priority") == 0) {
		if (src->priority < 0 || src->priority > CERTA__V1__PRIORITY__PRIORITY_HIGH) {
			snprintf(err, errlen, "priority: %d is not low, normal or high",
			    (int)src->priority);
			return CERTA_EINVAL;
		}
		t->priority = src->priority ? src->priority : CERTA__V1__PRIORITY__PRIORITY_NORMAL;
	} else if (strcmp(field, "policy") == 0) {
		if (src->policy[0] != '\0' && !tenants_name_valid(src->policy)) {
			snprintf(err, errlen, "policy: '%s' is not a valid policy name", src->policy);
			return CERTA_EINVAL;
		}
		snprintf(t->policy, sizeof t->policy, "%s", src->policy);
	} else if (strncmp(field, "quota.", 6) == 0) {
		const char *f = field + 6;
		if (q == NULL) {
			snprintf(err, errlen, "%s: no quota given", field);
			return CERTA_EINVAL;
		}
		if (strcmp(f, "max_concurrent_programs") == 0)
			t->q.max_concurrent_programs = q->max_concurrent_programs;
		else if (strcmp(f, "tokens_per_minute") == 0)
			t->q.tokens_per_minute = q->tokens_per_minute;
		else if (strcmp(f, "max_budget_per_program") == 0)
			t->q.max_budget_per_program = q->max_budget_per_program;
		else if (strcmp(f, "max_sc_n") == 0) {
			if (q->max_sc_n > 64) {
				snprintf(err, errlen, "quota.max_sc_n: %u is out of range [0, 64]",
				    q->max_sc_n);
				return CERTA_EINVAL;
			}
			t->q.max_sc_n = q->max_sc_n;
		} else if (strcmp(f, "max_prompt_bytes") == 0)
			t->q.max_prompt_bytes = q->max_prompt_bytes;
		else {
			snprintf(err, errlen, "unknown field '%s'", field);
			return CERTA_EINVAL;
		}
	} else {
		snprintf(err, errlen, "unknown field '%s' (settable: weight, priority, policy, "
		    "quota.max_concurrent_programs, quota.tokens_per_minute, "
		    "quota.max_budget_per_program, quota.max_sc_n, quota.max_prompt_bytes)", field);
		return CERTA_EINVAL;
	}
	return 0;
}

static const char *const tenants_all_fields[] = {
	"weight", "priority", "policy", "quota.max_concurrent_programs", "quota.tokens_per_minute",
	"quota.max_budget_per_program", "quota.max_sc_n", "quota.max_prompt_bytes",
};

int
tenants_create(struct tenants *ts, const Certa__V1__Tenant *src, char *key, size_t keylen,
    char *err, size_t errlen)
{
	struct tenant *t;
	Certa__V1__Tenant tmp;
	size_t i;
	int rc;

	if (src == NULL || !tenants_name_valid(src->name)) {
		snprintf(err, errlen, "name: '%s' is not valid (1-64 of a-z, 0-9, '-', '_')",
		    src != NULL ? src->name : "");
		return CERTA_EINVAL;
	}
	if (tenants_find(ts, src->name) != NULL) {
		snprintf(err, errlen, "tenant %s already exists", src->name);
		return CERTA_EEXIST;
	}
	t = calloc(1, sizeof *t);
	if (t == NULL)
		return -ENOMEM;
	snprintf(t->name, sizeof t->name, "%s", src->name);
	t->weight = 1;
	t->priority = CERTA__V1__PRIORITY__PRIORITY_NORMAL;
	tmp = *src;
	if (tmp.weight == 0)
		tmp.weight = 1;
	for (i = 0; i < sizeof tenants_all_fields / sizeof tenants_all_fields[0]; i++) {
		if (tmp.quota == NULL && strncmp(tenants_all_fields[i], "quota.", 6) == 0)
			continue;
		rc = tenants_apply(t, &tmp, tenants_all_fields[i], err, errlen);
		if (rc != 0)
			goto fail;
	}
	t->created_ms = tenants_now_ms();
	rc = tenants_new_uid(ts, &t->uid);
	if (rc != 0)
		goto fail;
	rc = tenants_new_key(ts, t, key, keylen, NULL, 0);
	if (rc != 0)
		goto fail;
	rc = tenants_save(ts, t);
	if (rc != 0) {
		snprintf(err, errlen, "cannot store tenant: %s", certa_strerror(rc));
		goto fail;
	}
	rc = tenants_add(ts, t);
	if (rc != 0)
		goto fail;
	log_notice(LOG_ADMIN, "tenant %s created weight=%u key_id=%s", t->name, t->weight,
	    t->keys[0].id);
	return 0;
fail:
	explicit_bzero(key, keylen);
	free(t);
	return rc;
}

int
tenants_ensure(struct tenants *ts, const char *name)
{
	struct tenant *t;
	int rc;

	if (tenants_find(ts, name) != NULL)
		return 0;
	if (!tenants_name_valid(name))
		return CERTA_EINVAL;
	t = calloc(1, sizeof *t);
	if (t == NULL)
		return -ENOMEM;
	snprintf(t->name, sizeof t->name, "%s", name);
	t->weight = 1;
	t->priority = CERTA__V1__PRIORITY__PRIORITY_NORMAL;
	t->created_ms = tenants_now_ms();
	rc = tenants_new_uid(ts, &t->uid);
	if (rc == 0)
		rc = tenants_save(ts, t);
	if (rc == 0)
		rc = tenants_add(ts, t);
	if (rc != 0)
		free(t);
	return rc;
}

int
tenants_update(struct tenants *ts, const Certa__V1__Tenant *src, char *const *fields,
    size_t nfields, char *err, size_t errlen)
{
	struct tenant *t, copy;
	size_t i;
	int rc;

	t = src != NULL ? tenants_find(ts, src->name) : NULL;
	if (t == NULL) {
		snprintf(err, errlen, "no tenant %s", src != NULL ? src->name : "");
		return CERTA_ENOTFOUND;
	}
	/* Validate everything on a copy: a bad value changes nothing. */
	copy = *t;
	if (nfields == 0) {
		for (i = 0; i < sizeof tenants_all_fields / sizeof tenants_all_fields[0]; i++) {
			if (src->quota == NULL && strncmp(tenants_all_fields[i], "quota.", 6) == 0)
				continue;
			rc = tenants_apply(&copy, src, tenants_all_fields[i], err, errlen);
			if (rc != 0)
				return rc;
		}
	}
	for (i = 0; i < nfields; i++) {
		rc = tenants_apply(&copy, src, fields[i], err, errlen);
		if (rc != 0)
			return rc;
	}
	rc = tenants_save(ts, &copy);
	if (rc != 0) {
		snprintf(err, errlen, "cannot store tenant: %s", certa_strerror(rc));
		return rc;
	}
	*t = copy;
	log_notice(LOG_ADMIN, "tenant %s updated weight=%u", t->name, t->weight);
	return 0;
}

struct tenants_del {
	const char *name;
	int (*also)(struct store_txn *txn, void *arg);
	void *also_arg;
};

static int
tenants_del_txn(struct store_txn *txn, void *arg)
{
	struct tenants_del *d = arg;
	int rc = store_del(txn, STORE_DB_TENANTS, d->name);

	if (rc == 0 && d->also != NULL)
		rc = d->also(txn, d->also_arg);
	return rc;
}

int
tenants_delete(struct tenants *ts, const char *name,
    int (*also)(struct store_txn *txn, void *arg), void *also_arg, char *err, size_t errlen)
{
	struct tenants_del d = { name, also, also_arg };
	struct tenant *t = tenants_find(ts, name);
	size_t i;
	int rc;

	if (t == NULL) {
		snprintf(err, errlen, "no tenant %s", name);
		return CERTA_ENOTFOUND;
	}
	if (t->st.queued + t->st.running > 0) {
		snprintf(err, errlen, "tenant %s has %llu programs in progress; cancel them first",
		    name, (unsigned long long)(t->st.queued + t->st.running));
		return CERTA_ESTATE;
	}
	rc = store_update(ts->st, tenants_del_txn, &d);
	if (rc < 0) {
		snprintf(err, errlen, "cannot delete tenant: %s", certa_strerror(rc));
		return rc;
	}
	tenants_unindex_keys(ts, t);
	strmap_del(ts->byname, t->name);
	for (i = 0; i < ts->n; i++) {
		if (ts->t[i] == t) {
			ts->t[i] = ts->t[--ts->n];
			break;
		}
	}
	log_notice(LOG_ADMIN, "tenant %s deleted (uid %016llx)", name, (unsigned long long)t->uid);
	free(t);
	return 0;
}

int
tenants_rotate_key(struct tenants *ts, const char *name, bool revoke_others, char *key,
    size_t keylen, char *key_id, size_t idlen)
{
	struct tenant *t = tenants_find(ts, name), copy;
	size_t i;
	int rc;

	if (t == NULL)
		return CERTA_ENOTFOUND;
	copy = *t;
	if (revoke_others) {
		for (i = 0; i < copy.nkeys; i++) {
			if (!copy.keys[i].revoked) {
				copy.keys[i].revoked = true;
				copy.keys[i].revoked_ms = tenants_now_ms();
			}
		}
	}
	rc = tenants_new_key(ts, &copy, key, keylen, key_id, idlen);
	if (rc == 0)
		rc = tenants_save(ts, &copy);
	if (rc != 0) {
		explicit_bzero(key, keylen);
		return rc;
	}
	/* The new key in, and a revoked one it made room by dropping out of the index. */
	tenants_unindex_keys(ts, t);
	*t = copy;
	tenants_index_keys(ts, t);
	log_notice(LOG_ADMIN, "tenant %s: new key %s%s", name, key_id,
	    revoke_others ? " (others revoked)" : "");
	return 0;
}

int
tenants_revoke_key(struct tenants *ts, const char *name, const char *key_id)
{
	struct tenant *t = tenants_find(ts, name), copy;
	size_t i;
	int rc;

	if (t == NULL)
		return CERTA_ENOTFOUND;
	copy = *t;
	for (i = 0; i < copy.nkeys; i++) {
		if (strcmp(copy.keys[i].id, key_id) != 0)
			continue;
		if (!copy.keys[i].revoked) {
			copy.keys[i].revoked = true;
			copy.keys[i].revoked_ms = tenants_now_ms();
		}
		rc = tenants_save(ts, &copy);
		if (rc != 0)
			return rc;
		*t = copy;
		log_notice(LOG_ADMIN, "tenant %s: key %s revoked", name, key_id);
		return 0;
	}
	return CERTA_ENOTFOUND;
}

/* t holds a key of that id and hash that is not revoked. */
static bool
tenants_key_match(const struct tenant *t, const char *id, const uint8_t h[32])
{
	size_t j;

	for (j = 0; j < t->nkeys; j++) {
		const struct tenant_key *k = &t->keys[j];
		if (strcmp(k->id, id) == 0 && !k->revoked && CRYPTO_memcmp(k->hash, h, 32) == 0)
			return true;
	}
	return false;
}

int
tenants_authenticate(struct tenants *ts, const char *authorization, const char **tenant)
{
	const char *key, *id, *us;
	char idbuf[17];
	struct tenant *t;
	uint8_t h[32];
	size_t i, idlen;

	if (authorization == NULL || strncasecmp(authorization, "Bearer ", 7) != 0)
		return CERTA_EAUTH;
	key = authorization + 7;
	while (*key == ' ')
		key++;
	if (strncmp(key, "certa_", 6) != 0)
		return CERTA_EAUTH;
	id = key + 6;
	us = strchr(id, '_');
	if (us == NULL || (idlen = (size_t)(us - id)) == 0 || idlen > 16)
		return CERTA_EAUTH;
	memcpy(idbuf, id, idlen);
	idbuf[idlen] = '\0';
	tenants_hash(key, h);
	t = strmap_get(ts->bykey, idbuf);
	if (t != NULL && tenants_key_match(t, idbuf, h))
		goto found;
	if (!ts->scan_keys)
		return CERTA_EAUTH;
	for (i = 0; i < ts->n; i++) {
		t = ts->t[i];
		if (tenants_key_match(t, idbuf, h))
			goto found;
	}
	return CERTA_EAUTH;
found:
	*tenant = t->name;
	return 0;
}

bool
tenants_exists(const struct tenants *ts, const char *name)
{
	return tenants_find(ts, name) != NULL;
}

int
tenants_uid(const struct tenants *ts, const char *name, uint64_t *uid)
{
	struct tenant *t = tenants_find(ts, name);

	if (t == NULL)
		return CERTA_ENOTFOUND;
	*uid = t->uid;
	return 0;
}

size_t
tenants_count(const struct tenants *ts)
{
	return ts->n;
}

const char *
tenants_name_at(const struct tenants *ts, size_t i)
{
	return i < ts->n ? ts->t[i]->name : NULL;
}

uint32_t
tenants_weight(const struct tenants *ts, const char *name)
{
	struct tenant *t = tenants_find(ts, name);

	return t != NULL ? t->weight : 1;
}

int
tenants_priority(const struct tenants *ts, const char *name)
{
	struct tenant *t = tenants_find(ts, name);

	return t != NULL ? t->priority : CERTA__V1__PRIORITY__PRIORITY_NORMAL;
}

const char *
tenants_policy(const struct tenants *ts, const char *name)
{
	struct tenant *t = tenants_find(ts, name);

	return t != NULL ? t->policy : "";
}

int
tenants_to_pb(const struct tenants *ts, const char *name, Certa__V1__Tenant *out)
{
	struct tenant *t = tenants_find(ts, name);
	Certa__V1__Quota *q;
	size_t i;

	if (t == NULL)
		return CERTA_ENOTFOUND;
	certa__v1__tenant__init(out);
	q = calloc(1, sizeof *q);
	out->keys = calloc(t->nkeys ? t->nkeys : 1, sizeof *out->keys);
	if (q == NULL || out->keys == NULL) {
		free(q);
		free(out->keys);
		return -ENOMEM;
	}
	certa__v1__quota__init(q);
	q->max_concurrent_programs = t->q.max_concurrent_programs;
	q->tokens_per_minute = t->q.tokens_per_minute;
	q->max_budget_per_program = t->q.max_budget_per_program;
	q->max_sc_n = t->q.max_sc_n;
	q->max_prompt_bytes = t->q.max_prompt_bytes;
	out->name = t->name;
	out->weight = t->weight;
	out->priority = (Certa__V1__Priority)t->priority;
	out->quota = q;
	out->policy = t->policy;
	out->created_unix_ms = t->created_ms;
	for (i = 0; i < t->nkeys; i++) {
		Certa__V1__ApiKeyInfo *k = calloc(1, sizeof *k);
		if (k == NULL)
			break;
		certa__v1__api_key_info__init(k);
		k->key_id = t->keys[i].id;
		k->created_unix_ms = t->keys[i].created_ms;
		k->revoked = t->keys[i].revoked;
		k->revoked_unix_ms = t->keys[i].revoked_ms;
		out->keys[out->n_keys++] = k;
	}
	return 0;
}

void
tenants_pb_free(Certa__V1__Tenant *t)
{
	size_t i;

	for (i = 0; i < t->n_keys; i++)
		free(t->keys[i]);
	free(t->keys);
	free(t->quota);
	t->keys = NULL;
	t->quota = NULL;
}

/* Effective quota: the tenant's value, or the server default when 0. */
#define TQ(t, ts, f) ((t)->q.f ? (t)->q.f : (ts)->defaults.f)

/* Tokens served in the last minute (the current second and the 60 whole ones before it). */
static uint64_t
tenants_window_used(const struct tenant *t, int64_t now_ms)
{
	int64_t sec = now_ms / 1000;
	uint64_t used = 0;
	size_t i;

	for (i = 0; i < TENANTS_SLOTS; i++)
		if (t->win_sec[i] > sec - TENANTS_SLOTS && t->win_sec[i] <= sec)
			used += t->win_tokens[i];
	return used;
}

/* Milliseconds until the tokens served in the last minute fall below lim (0: already). */
static int64_t
tenants_window_wait_ms(const struct tenant *t, uint64_t lim, int64_t now_ms)
{
	int64_t sec = now_ms / 1000, s;
	uint64_t used = tenants_window_used(t, now_ms);

	/* Seconds leave the window oldest first. */
	for (s = sec - TENANTS_SLOTS + 1; s <= sec && used >= lim; s++) {
		size_t slot = (size_t)(s % TENANTS_SLOTS);
		if (t->win_sec[slot] == s)
			used -= t->win_tokens[slot];
		if (used < lim)
			return (s + TENANTS_SLOTS) * 1000 - now_ms;
	}
	return used >= lim ? TENANTS_SLOTS * 1000 : 0;
}

void
tenants_program_limits(const struct tenants *ts, const char *name, uint32_t *max_n,
    uint64_t *max_budget)
{
	const struct tenant *t = tenants_find(ts, name);

	*max_n = t != NULL ? TQ(t, ts, max_sc_n) : 0;
	*max_budget = t != NULL ? TQ(t, ts, max_budget_per_program) : 0;
}

int
tenants_admit(struct tenants *ts, const char *name, uint32_t n, uint64_t budget,
    size_t prompt_bytes, int64_t now_ms, char *err, size_t errlen)
{
	struct tenant *t = tenants_find(ts, name);
	uint64_t lim;

	if (t == NULL) {
		snprintf(err, errlen, "no tenant %s", name);
		return CERTA_EAUTH;
	}
	lim = TQ(t, ts, max_prompt_bytes);
	if (lim && prompt_bytes > lim) {
		snprintf(err, errlen, "quota max_prompt_bytes: the problem is %zu bytes, tenant %s "
		    "may send %llu", prompt_bytes, name, (unsigned long long)lim);
		return CERTA_ECAPACITY;
	}
	lim = TQ(t, ts, max_sc_n);
	if (lim && n > lim) {
		snprintf(err, errlen, "quota max_sc_n: %u chains requested, tenant %s may run %llu",
		    n, name, (unsigned long long)lim);
		return CERTA_ECAPACITY;
	}
	lim = TQ(t, ts, max_budget_per_program);
	if (lim && budget > lim) {
		snprintf(err, errlen, "quota max_budget_per_program: budget %llu tokens, tenant %s "
		    "may use %llu per program", (unsigned long long)budget, name,
		    (unsigned long long)lim);
		return CERTA_ECAPACITY;
	}
	lim = TQ(t, ts, max_concurrent_programs);
	if (lim && t->st.queued + t->st.running >= lim) {
		snprintf(err, errlen, "quota max_concurrent_programs: tenant %s has %llu programs in "
		    "progress (limit %llu); retry when one finishes", name,
		    (unsigned long long)(t->st.queued + t->st.running), (unsigned long long)lim);
		return CERTA_ECAPACITY;
	}
	lim = TQ(t, ts, tokens_per_minute);
	if (lim && tenants_window_used(t, now_ms) >= lim) {
		double secs = (double)tenants_window_wait_ms(t, lim, now_ms) / 1000.0;
		snprintf(err, errlen, "quota tokens_per_minute: tenant %s used its %llu tokens "
		    "per minute; retry in %.0f s", name, (unsigned long long)lim, secs < 1 ? 1 : secs);
		return CERTA_ECAPACITY;
	}
	return 0;
}

void
tenants_program_state(struct tenants *ts, const char *name, int from, int to)
{
	struct tenant *t = tenants_find(ts, name);
	uint64_t *slot[6] = { NULL };

	if (t == NULL)
		return;
	slot[CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_QUEUED] = &t->st.queued;
	slot[CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_RUNNING] = &t->st.running;
	slot[CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_FINISHED] = &t->st.finished;
	slot[CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_CANCELLED] = &t->st.cancelled;
	slot[CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_FAILED] = &t->st.failed;
	if (from > 0 && from < 6 && slot[from] != NULL && *slot[from] > 0)
		(*slot[from])--;
	if (to > 0 && to < 6 && slot[to] != NULL)
		(*slot[to])++;
}

void
tenants_charge(struct tenants *ts, const char *name, uint64_t tokens, int64_t now_ms)
{
	struct tenant *t = tenants_find(ts, name);
	int64_t sec = now_ms / 1000;
	size_t slot = (size_t)(sec % TENANTS_SLOTS);

	if (t == NULL)
		return;
	t->st.tokens_used += tokens;
	if (t->win_sec[slot] != sec) {
		t->win_sec[slot] = sec;
		t->win_tokens[slot] = 0;
	}
	t->win_tokens[slot] += tokens;
}

int64_t
tenants_throttle(struct tenants *ts, const char *name, int64_t now_ms)
{
	struct tenant *t = tenants_find(ts, name);
	uint64_t lim;
	int64_t wait;

	if (t == NULL)
		return 0;
	lim = TQ(t, ts, tokens_per_minute);
	wait = lim ? tenants_window_wait_ms(t, lim, now_ms) : 0;
	if (wait > 0 && t->throttled_since_ms == 0) {
		t->throttled_since_ms = now_ms;
		log_info(LOG_DISPATCH, "tenant %s throttled: %llu tokens served in the last minute, "
		    "tokens_per_minute %llu; its steps wait %.1f s", name,
		    (unsigned long long)tenants_window_used(t, now_ms), (unsigned long long)lim,
		    (double)wait / 1000.0);
	} else if (wait == 0 && t->throttled_since_ms != 0) {
		int64_t d = now_ms > t->throttled_since_ms ? now_ms - t->throttled_since_ms : 0;
		t->throttled_ms += (uint64_t)d;
		t->throttled_since_ms = 0;
		log_info(LOG_DISPATCH, "tenant %s no longer throttled (held back %.1f s)", name,
		    (double)d / 1000.0);
	}
	return wait;
}

uint64_t
tenants_throttled_ms(const struct tenants *ts, const char *name, int64_t now_ms)
{
	struct tenant *t = tenants_find(ts, name);

	if (t == NULL)
		return 0;
	if (t->throttled_since_ms != 0 && now_ms > t->throttled_since_ms)
		return t->throttled_ms + (uint64_t)(now_ms - t->throttled_since_ms);
	return t->throttled_ms;
}

void
tenants_saved(struct tenants *ts, const char *name, uint64_t tokens)
{
	struct tenant *t = tenants_find(ts, name);

	if (t != NULL)
		t->st.tokens_saved += tokens;
}

const struct tenant_stats *
tenants_stats(const struct tenants *ts, const char *name)
{
	struct tenant *t = tenants_find(ts, name);

	return t != NULL ? &t->st : NULL;
}

uint64_t
tenants_live(const struct tenants *ts, const char *name)
{
	struct tenant *t = tenants_find(ts, name);

	return t != NULL ? t->st.queued + t->st.running : 0;
}
