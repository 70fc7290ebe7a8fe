/* policies.c — versioned, audited scheduling policies in LMDB. */
#include "daemon/policies.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "certa/v1/records.pb-c.h"
#include "lib/array.h"
#include "lib/error.h"
#include "lib/log.h"
#include "lib/strmap.h"
#include "scheduler/policy.h"
#include "store/store.h"

#define POLICIES_TEXT_MAX 8192

struct policy_entry {
	struct sched_policy pol;
	uint32_t version;
	int64_t updated_ms;
	char who[128];
};

struct policies {
	struct store *st;
	struct sched_policy base;
	struct strmap *cur;       /* name -> struct policy_entry (stored current versions) */
	uint64_t generation;
};

static int64_t
policies_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Loads current versions (keys without '@'). */
static int
policies_load_one(const char *key, size_t keylen, const ProtobufCMessage *msg, void *arg)
{
	struct policies *ps = arg;
	const Certa__V1__PolicyRecord *rec = (const Certa__V1__PolicyRecord *)msg;
	struct policy_entry *e;
	char err[256];

	(void)keylen;
	if (strchr(key, '@') != NULL || rec->policy == NULL)
		return 0;
	e = calloc(1, sizeof *e);
	if (e == NULL)
		return -ENOMEM;
	sched_policy_default(&e->pol);
	if (policy_parse(rec->policy->text, strlen(rec->policy->text), key, &e->pol, err,
	    sizeof err) != 0) {
		log_err(LOG_STORE, "stored policy %s v%u does not parse (%s); ignored", key,
		    rec->policy->version, err);
		free(e);
		return 0;
	}
	e->version = rec->policy->version;
	e->updated_ms = rec->policy->updated_unix_ms;
	snprintf(e->who, sizeof e->who, "%s", rec->policy->updated_by);
	if (strmap_put(ps->cur, key, e, NULL) != 0) {
		free(e);
		return -ENOMEM;
	}
	return 0;
}

static int
policies_load_txn(struct store_txn *txn, void *arg)
{
	return store_scan(txn, STORE_DB_POLICIES, "", NULL, policies_load_one, arg);
}

int
policies_open(struct store *st, const struct sched_policy *base, struct policies **out)
{
	struct policies *ps = calloc(1, sizeof *ps);
	int rc;

	if (ps == NULL)
		return -ENOMEM;
	ps->st = st;
	ps->base = *base;
	ps->cur = strmap_new();
	if (ps->cur == NULL) {
		free(ps);
		return -ENOMEM;
	}
	rc = store_view(st, policies_load_txn, ps);
	if (rc < 0) {
		policies_free(ps);
		return rc;
	}
	log_info(LOG_ADMIN, "policies: %zu stored", strmap_count(ps->cur));
	*out = ps;
	return 0;
}

void
policies_free(struct policies *ps)
{
	if (ps == NULL)
		return;
	strmap_free(ps->cur, free);
	free(ps);
}

void
policies_set_base(struct policies *ps, const struct sched_policy *base)
{
	ps->base = *base;
	ps->generation++;
}

uint64_t
policies_generation(const struct policies *ps)
{
	return ps->generation;
}

const struct sched_policy *
policies_effective(const struct policies *ps, const char *tenant, const char *ref)
{
	const struct policy_entry *e = NULL;

	if (ref != NULL && ref[0] != '\0')
		e = strmap_get(ps->cur, ref);
	if (e == NULL && tenant != NULL && tenant[0] != '\0')
		e = strmap_get(ps->cur, tenant);
	if (e == NULL)
		e = strmap_get(ps->cur, "default");
	return e != NULL ? &e->pol : &ps->base;
}

/* The current policy of a name and its version (0 when it falls back). */
static const struct sched_policy *
policies_current(const struct policies *ps, const char *name, const struct policy_entry **ent)
{
	const struct policy_entry *e = strmap_get(ps->cur, name);

	*ent = e;
	if (e != NULL)
		return &e->pol;
	return policies_effective(ps, strcmp(name, "default") == 0 ? NULL : name, NULL);
}

/* Fills a Policy message; text malloc'd. */
static int
policies_fill(const char *name, const struct sched_policy *p, const struct policy_entry *e,
    Certa__V1__Policy *out)
{
	size_t n = policy_format(p, NULL, 0);

	certa__v1__policy__init(out);
	out->name = strdup(name);
	out->text = malloc(n + 1);
	if (out->name == NULL || out->text == NULL) {
		policies_pb_free(out);
		return -ENOMEM;
	}
	policy_format(p, out->text, n + 1);
	if (e != NULL) {
		out->version = e->version;
		out->updated_unix_ms = e->updated_ms;
		out->updated_by = (char *)e->who;
	}
	return 0;
}

int
policies_get(const struct policies *ps, const char *name, Certa__V1__Policy *out)
{
	const struct policy_entry *e;
	const struct sched_policy *p = policies_current(ps, name, &e);

	return policies_fill(name, p, e, out);
}

void
policies_pb_free(Certa__V1__Policy *p)
{
	if (p->name != protobuf_c_empty_string)
		free(p->name);
	if (p->text != protobuf_c_empty_string)
		free(p->text);
	p->name = NULL;
	p->text = NULL;
}

struct policies_write {
	const char *name;
	Certa__V1__PolicyRecord rec;
};

static int
policies_write_txn(struct store_txn *txn, void *arg)
{
	struct policies_write *w = arg;
	char key[160];
	int rc;

	snprintf(key, sizeof key, "%s@%08u", w->name, w->rec.policy->version);
	rc = store_add(txn, STORE_DB_POLICIES, key, &w->rec.base);
	if (rc != 0)
		return rc;
	return store_put(txn, STORE_DB_POLICIES, w->name, &w->rec.base);
}

/* Stores `next` as the new current version of name, with an audit record. */
static int
policies_commit(struct policies *ps, const char *name, const struct sched_policy *next,
    const char *who, char *err, size_t errlen)
{
	const struct policy_entry *e;
	const struct sched_policy *old = policies_current(ps, name, &e);
	struct policy_entry *ne;
	struct policies_write w;
	Certa__V1__Policy oldp, newp;
	Certa__V1__PolicyAudit audit = CERTA__V1__POLICY_AUDIT__INIT;
	int rc;

	ne = calloc(1, sizeof *ne);
	if (ne == NULL)
		return -ENOMEM;
	ne->pol = *next;
	ne->version = (e != NULL ? e->version : 0) + 1;
	ne->updated_ms = policies_now_ms();
	snprintf(ne->who, sizeof ne->who, "%s", who);
	rc = policies_fill(name, old, e, &oldp);
	if (rc != 0) {
		free(ne);
		return rc;
	}
	rc = policies_fill(name, next, ne, &newp);
	if (rc != 0) {
		policies_pb_free(&oldp);
		free(ne);
		return rc;
	}
	audit.version = ne->version;
	audit.who = ne->who;
	audit.unix_ms = ne->updated_ms;
	audit.old_policy = &oldp;
	audit.new_policy = &newp;
	certa__v1__policy_record__init(&w.rec);
	w.name = name;
	w.rec.policy = &newp;
	w.rec.audit = &audit;
	rc = store_update(ps->st, policies_write_txn, &w);
	policies_pb_free(&oldp);
	policies_pb_free(&newp);
	if (rc < 0) {
		snprintf(err, errlen, "cannot store the policy: %s", certa_strerror(rc));
		free(ne);
		return rc;
	}
	if (strmap_put(ps->cur, name, ne, (void **)&e) != 0) {
		free(ne);
		return -ENOMEM;
	}
	free((void *)e);
	ps->generation++;
	log_notice(LOG_ADMIN, "policy %s -> v%u by %s", name, ne->version, who);
	return 0;
}

int
policies_set(struct policies *ps, const char *name, const char *text, const char *who,
    char *err, size_t errlen)
{
	const struct policy_entry *e;
	struct sched_policy next = *policies_current(ps, name, &e);
	int rc;

	if (text == NULL || strlen(text) > POLICIES_TEXT_MAX) {
		snprintf(err, errlen, "policy text is missing or longer than %d bytes",
		    POLICIES_TEXT_MAX);
		return CERTA_EINVAL;
	}
	rc = policy_parse(text, strlen(text), NULL, &next, err, errlen);
	if (rc != 0)
		return CERTA_EINVAL;
	return policies_commit(ps, name, &next, who, err, errlen);
}

struct policies_hist {
	Certa__V1__PolicyAudit **v;
	size_t n, cap;
	uint32_t want;             /* rollback: the version to find (0 = collect all) */
	ProtobufCMessage *found;
};

static int
policies_hist_one(const char *key, size_t keylen, const ProtobufCMessage *msg, void *arg)
{
	struct policies_hist *h = arg;
	const Certa__V1__PolicyRecord *rec = (const Certa__V1__PolicyRecord *)msg;
	size_t len;
	uint8_t *buf;
	Certa__V1__PolicyAudit *a;

	(void)key;
	(void)keylen;
	if (rec->audit == NULL)
		return 0;
	if (h->want != 0 && rec->audit->version != h->want)
		return 0;
	len = protobuf_c_message_get_packed_size(&rec->audit->base);
	buf = malloc(len ? len : 1);
	if (buf == NULL)
		return -ENOMEM;
	protobuf_c_message_pack(&rec->audit->base, buf);
	a = certa__v1__policy_audit__unpack(NULL, len, buf);
	free(buf);
	if (a == NULL)
		return CERTA_ECORRUPT;
	if (ARRAY_GROW(h->v, h->cap, h->n + 1) != 0) {
		certa__v1__policy_audit__free_unpacked(a, NULL);
		return -ENOMEM;
	}
	h->v[h->n++] = a;
	return 0;
}

struct policies_hist_ctx {
	const char *name;
	struct policies_hist *h;
};

static int
policies_hist_txn(struct store_txn *txn, void *arg)
{
	struct policies_hist_ctx *c = arg;
	char prefix[160];

	snprintf(prefix, sizeof prefix, "%s@", c->name);
	return store_scan(txn, STORE_DB_POLICIES, prefix, NULL, policies_hist_one, c->h);
}

int
policies_history(const struct policies *ps, const char *name,
    Certa__V1__PolicyHistoryReply *out)
{
	struct policies_hist h;
	struct policies_hist_ctx c = { name, &h };
	int rc;

	memset(&h, 0, sizeof h);
	certa__v1__policy_history_reply__init(out);
	rc = store_view(ps->st, policies_hist_txn, &c);
	if (rc < 0) {
		out->entries = h.v;
		out->n_entries = h.n;
		policies_history_free(out);
		return rc;
	}
	out->entries = h.v;
	out->n_entries = h.n;
	return 0;
}

void
policies_history_free(Certa__V1__PolicyHistoryReply *out)
{
	size_t i;

	for (i = 0; i < out->n_entries; i++)
		certa__v1__policy_audit__free_unpacked(out->entries[i], NULL);
	free(out->entries);
	out->entries = NULL;
	out->n_entries = 0;
}

struct policies_del {
	char **keys;
	size_t n, cap;
};

static int
policies_del_collect(const char *key, size_t keylen, const ProtobufCMessage *msg, void *arg)
{
	struct policies_del *d = arg;

	(void)keylen;
	(void)msg;
	if (d->n == d->cap) {
		size_t ncap = d->cap ? d->cap * 2 : 16;
		char **nk = realloc(d->keys, ncap * sizeof *nk);
		if (nk == NULL)
			return -ENOMEM;
		d->keys = nk;
		d->cap = ncap;
	}
	d->keys[d->n] = strdup(key);
	if (d->keys[d->n] == NULL)
		return -ENOMEM;
	d->n++;
	return 0;
}

int
policies_delete_txn(struct store_txn *txn, void *arg)
{
	const char *name = arg;
	struct policies_del d = { NULL, 0, 0 };
	char prefix[160];
	size_t i;
	int rc;

	if (name == NULL || name[0] == '\0' || strcmp(name, "default") == 0 ||
	    strchr(name, '@') != NULL)
		return -EINVAL;
	/* Collect first: no deletes while scanning the DB. */
	snprintf(prefix, sizeof prefix, "%s@", name);
	rc = store_scan(txn, STORE_DB_POLICIES, prefix, NULL, policies_del_collect, &d);
	if (rc < 0)
		goto free_keys;
	rc = 0;
	for (i = 0; i < d.n && rc == 0; i++)
		rc = store_del(txn, STORE_DB_POLICIES, d.keys[i]);
	if (rc == 0) {
		rc = store_del(txn, STORE_DB_POLICIES, name);
		if (rc == CERTA_ENOTFOUND)
			rc = 0;
	}
free_keys:
	for (i = 0; i < d.n; i++)
		free(d.keys[i]);
	free(d.keys);
	return rc;
}

void
policies_forget(struct policies *ps, const char *name)
{
	free(strmap_del(ps->cur, name));
	ps->generation++;
}

int
policies_rollback(struct policies *ps, const char *name, uint32_t version, const char *who,
    char *err, size_t errlen)
{
	struct policies_hist h;
	struct policies_hist_ctx c = { name, &h };
	struct sched_policy p;
	size_t i;
	int rc;

	memset(&h, 0, sizeof h);
	h.want = version;
	rc = store_view(ps->st, policies_hist_txn, &c);
	if (rc >= 0 && h.n == 0) {
		snprintf(err, errlen, "policy %s has no version %u", name, version);
		rc = CERTA_ENOTFOUND;
	}
	if (rc >= 0) {
		const Certa__V1__Policy *np = h.v[0]->new_policy;
		sched_policy_default(&p);
		if (np == NULL || policy_parse(np->text, strlen(np->text), NULL, &p, err,
		    errlen) != 0) {
			snprintf(err, errlen, "policy %s version %u does not parse any more", name,
			    version);
			rc = CERTA_ECORRUPT;
		} else {
			char why[160];
			snprintf(why, sizeof why, "%s (rollback to v%u)", who, version);
			rc = policies_commit(ps, name, &p, why, err, errlen);
		}
	}
	for (i = 0; i < h.n; i++)
		certa__v1__policy_audit__free_unpacked(h.v[i], NULL);
	free(h.v);
	return rc < 0 ? rc : 0;
}
