/* recovery.c — crash recovery: unfinished programs are read back and continue. */
#include "daemon/recovery.h"
#include "daemon/core_impl.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/dispatch.h"
#include "daemon/program.h"
#include "daemon/tenants.h"
#include "lib/array.h"
#include "lib/error.h"
#include "lib/log.h"
#include "lib/strmap.h"
#include "store/store.h"

/* Loads the chains of one program from the requests DB. */
struct recovery_load {
	Certa__V1__RequestRecord **reqs;
	size_t n, cap;
};

static int
recovery_load_req(const char *key, size_t keylen, const ProtobufCMessage *msg, void *arg)
{
	struct recovery_load *l = arg;
	size_t len = protobuf_c_message_get_packed_size(msg);
	uint8_t *buf;

	(void)key;
	(void)keylen;
	if (ARRAY_GROW(l->reqs, l->cap, l->n + 1) != 0)
		return -ENOMEM;
	/* The message lives only during the callback: keep a copy. */
	buf = malloc(len ? len : 1);
	if (buf == NULL)
		return -ENOMEM;
	protobuf_c_message_pack(msg, buf);
	l->reqs[l->n] = certa__v1__request_record__unpack(NULL, len, buf);
	free(buf);
	if (l->reqs[l->n] == NULL)
		return CERTA_ECORRUPT;
	l->n++;
	return 0;
}

struct recovery_ctx {
	struct core *c;
	Certa__V1__ProgramRecord **recs;
	size_t n, cap;
};

static int
recovery_collect(const Certa__V1__ProgramRecord *rec, void *arg)
{
	struct recovery_ctx *r = arg;
	size_t len = protobuf_c_message_get_packed_size(&rec->base);
	uint8_t *buf;

	if (ARRAY_GROW(r->recs, r->cap, r->n + 1) != 0)
		return -ENOMEM;
	buf = malloc(len ? len : 1);
	if (buf == NULL)
		return -ENOMEM;
	protobuf_c_message_pack(&rec->base, buf);
	r->recs[r->n] = certa__v1__program_record__unpack(NULL, len, buf);
	free(buf);
	if (r->recs[r->n] == NULL)
		return CERTA_ECORRUPT;
	r->n++;
	return 0;
}

struct recovery_scan {
	const char *prefix;
	struct recovery_load *load;
};

/* A chain's text and sealed probe points read back from its chunks (schemas 3 and 4). */
struct recovery_text {
	char *buf;
	size_t len, cap;
	uint32_t chunks;
	Certa__V1__ProbePoint **probes;   /* unpacked copies, owned until moved to the record */
	size_t nprobes, probes_cap;
};

/* A copy of a chunk's probe point that the chain record's free_unpacked can free. */
static Certa__V1__ProbePoint *
recovery_probe_copy(const Certa__V1__ProbePoint *pp)
{
	size_t len = protobuf_c_message_get_packed_size(&pp->base);
	Certa__V1__ProbePoint *out;
	uint8_t *buf = malloc(len ? len : 1);

	if (buf == NULL)
		return NULL;
	protobuf_c_message_pack(&pp->base, buf);
	out = certa__v1__probe_point__unpack(NULL, len, buf);
	free(buf);
	return out;
}

static void
recovery_text_free(struct recovery_text *t)
{
	size_t i;

	for (i = 0; i < t->nprobes; i++)
		certa__v1__probe_point__free_unpacked(t->probes[i], NULL);
	free(t->probes);
	free(t->buf);
}

/* Puts the chunks' probe points before the record's own (its latest ones). */
static int
recovery_join_probes(Certa__V1__RequestRecord *rr, struct recovery_text *t)
{
	Certa__V1__ProbePoint **all;
	size_t n = t->nprobes + rr->n_probes;

	if (t->nprobes == 0)
		return 0;
	all = malloc(n * sizeof *all);
	if (all == NULL)
		return -ENOMEM;
	memcpy(all, t->probes, t->nprobes * sizeof *all);
	if (rr->n_probes > 0)
		memcpy(all + t->nprobes, rr->probes, rr->n_probes * sizeof *all);
	free(rr->probes);
	rr->probes = all;
	rr->n_probes = n;
	t->nprobes = 0;   /* the record owns them now */
	return 0;
}

static int
recovery_load_chunk(const char *key, size_t keylen, const ProtobufCMessage *msg, void *arg)
{
	struct recovery_text *t = arg;
	const Certa__V1__TextChunk *tc = (const Certa__V1__TextChunk *)msg;
	size_t add = tc->text != NULL ? strlen(tc->text) : 0, i;

	(void)key;
	(void)keylen;
	if (ARRAY_GROW(t->buf, t->cap, t->len + add + 1) != 0)
		return -ENOMEM;
	memcpy(t->buf + t->len, tc->text != NULL ? tc->text : "", add);
	t->len += add;
	t->buf[t->len] = '\0';
	t->chunks++;
	for (i = 0; i < tc->n_probes; i++) {
		if (ARRAY_GROW(t->probes, t->probes_cap, t->nprobes + 1) != 0)
			return -ENOMEM;
		t->probes[t->nprobes] = recovery_probe_copy(tc->probes[i]);
		if (t->probes[t->nprobes] == NULL)
			return -ENOMEM;
		t->nprobes++;
	}
	return 0;
}

static int
recovery_scan_txn(struct store_txn *txn, void *arg)
{
	struct recovery_scan *s = arg;
	char prefix[300];
	size_t i;
	int rc;

	rc = store_scan(txn, STORE_DB_REQUESTS, s->prefix, NULL, recovery_load_req, s->load);
	if (rc < 0)
		return rc;
	/* Chains whose text is in chunks get it back whole, and their probe points in order
	 * (the chunks' before the record's); a missing or extra chunk, or a length or probe
	 * count that does not add up, is damage. */
	for (i = 0; i < s->load->n; i++) {
		Certa__V1__RequestRecord *rr = s->load->reqs[i];
		struct recovery_text t = { NULL, 0, 0, 0, NULL, 0, 0 };
		if (rr->text_chunks == 0) {
			if (rr->chunk_probes != 0)
				return CERTA_EDATALOSS;
			continue;
		}
		snprintf(prefix, sizeof prefix, "%s%04u/", s->prefix, rr->index);
		rc = store_scan(txn, STORE_DB_TEXT, prefix, NULL, recovery_load_chunk, &t);
		if (rc >= 0 && (t.chunks != rr->text_chunks || t.len != rr->text_bytes ||
		    t.nprobes != rr->chunk_probes))
			rc = CERTA_EDATALOSS;
		if (rc >= 0)
			rc = recovery_join_probes(rr, &t);
		if (rc < 0) {
			recovery_text_free(&t);
			return rc;
		}
		/* An empty string from unpack is protobuf-c's shared default: not ours to free. */
		if (rr->text != NULL && rr->text != (char *)protobuf_c_empty_string)
			free(rr->text);
		rr->text = t.buf != NULL ? t.buf : strdup("");
		t.buf = NULL;
		recovery_text_free(&t);
		if (rr->text == NULL)
			return -ENOMEM;
	}
	return 0;
}

/* Crash recovery: every QUEUED/RUNNING program comes back and continues. */
int
recovery_run(struct core *c)
{
	struct recovery_ctx r = { c, NULL, 0, 0 };
	size_t i, j, resumed = 0;
	int rc;

	rc = store_scan_unfinished(c->st, recovery_collect, &r);
	if (rc < 0)
		goto out;
	rc = 0;
	for (i = 0; i < r.n; i++) {
		struct recovery_load load = { NULL, 0, 0 };
		struct recovery_scan sr;
		char prefix[256];
		struct program *p;

		snprintf(prefix, sizeof prefix, "%s/", r.recs[i]->program->id);
		sr.prefix = prefix;
		sr.load = &load;
		rc = store_view(c->st, recovery_scan_txn, &sr);
		if (rc < 0) {
			log_err(LOG_STORE, "recovery of %s: %s", r.recs[i]->program->id,
			    certa_strerror(rc));
		} else {
			p = program_from_records(r.recs[i], load.reqs, load.n);
			/* What the store holds of each chain's text (persist.c appends the rest). */
			for (j = 0; p != NULL && j < load.n; j++) {
				const Certa__V1__RequestRecord *rr = load.reqs[j];
				if (rr->index < p->n && rr->text_chunks > 0 &&
				    rr->text_bytes == p->chains[rr->index].text_len) {
					p->chains[rr->index].text_saved = (size_t)rr->text_bytes;
					p->chains[rr->index].text_chunks = rr->text_chunks;
					p->chains[rr->index].probes_saved = rr->chunk_probes;
				}
			}
			if (p == NULL) {
				log_err(LOG_STORE, "recovery of %s: inconsistent record, skipped",
				    r.recs[i]->program->id);
			} else if (strmap_put(c->live, p->id, p, NULL) != 0 ||
			    core_order_add(c, p) != 0) {
				program_free(p);
				rc = -ENOMEM;
			} else {
				p->seq = c->next_seq++;
				p->ready_since_ms = core_now_ms();
				dispatch_ready(c, p);   /* queued with its seq and age */
				(void)tenants_ensure(c->tenants, p->tenant);
				tenants_program_state(c->tenants, p->tenant, 0, (int)p->state);
				resumed++;
			}
		}
		for (j = 0; j < load.n; j++)
			certa__v1__request_record__free_unpacked(load.reqs[j], NULL);
		free(load.reqs);
		if (rc == -ENOMEM)
			goto out;
		rc = 0;
	}
	if (resumed > 0)
		log_notice(LOG_STORE, "recovered %zu unfinished programs", resumed);
out:
	for (i = 0; i < r.n; i++)
		certa__v1__program_record__free_unpacked(r.recs[i], NULL);
	free(r.recs);
	return rc;
}
