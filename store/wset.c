/* wset.c — write sets: operations recorded with their packed messages, applied in one txn. */
#include "store/wset.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/array.h"
#include "lib/log.h"

/* LMDB's default largest key. */
#define WSET_MAX_KEY 511

enum wset_kind { WSET_PUT, WSET_ADD, WSET_DEL_PREFIX };

/* One operation; its key (NUL-terminated) and value live in the set's byte buffer. */
struct wset_op {
	enum wset_kind kind;
	enum store_db db;
	size_t key;          /* offset of the key */
	size_t val, len;     /* offset and length of the packed message (puts and adds) */
};

struct wset {
	struct wset_op *ops;
	size_t nops, ops_cap;
	uint8_t *buf;
	size_t len, cap;
};

int
wset_new(struct wset **out)
{
	struct wset *ws = calloc(1, sizeof *ws);

	if (ws == NULL)
		return -ENOMEM;
	*out = ws;
	return 0;
}

void
wset_free(struct wset *ws)
{
	if (ws == NULL)
		return;
	free(ws->ops);
	free(ws->buf);
	free(ws);
}

void
wset_clear(struct wset *ws)
{
	ws->nops = 0;
	ws->len = 0;
}

size_t
wset_count(const struct wset *ws)
{
	return ws->nops;
}

size_t
wset_bytes(const struct wset *ws)
{
	return ws->len;
}

size_t
wset_mark(const struct wset *ws)
{
	return ws->nops;
}

void
wset_truncate(struct wset *ws, size_t mark)
{
	if (mark >= ws->nops)
		return;
	ws->nops = mark;
	ws->len = ws->ops[mark].key;   /* an operation's bytes start with its key */
}

/* Room for n more bytes in the buffer. */
static int
wset_reserve(struct wset *ws, size_t n)
{
	return ARRAY_GROW(ws->buf, ws->cap, ws->len + n) != 0 ? -ENOMEM : 0;
}

/* Records an operation and its key; its value (if any) follows the key in the buffer. */
static int
wset_op(struct wset *ws, enum wset_kind kind, enum store_db db, const char *key, size_t vlen,
    struct wset_op **out)
{
	size_t klen = key != NULL ? strlen(key) : 0;
	struct wset_op *op;

	if (store_db_type(db) == NULL || klen == 0 || klen > WSET_MAX_KEY) {
		log_err(LOG_STORE, "write set: db=%s: key of %zu bytes (must be 1..%d)",
		    store_db_name(db), klen, WSET_MAX_KEY);
		return -EINVAL;
	}
	if (ARRAY_GROW(ws->ops, ws->ops_cap, ws->nops + 1) != 0 ||
	    wset_reserve(ws, klen + 1 + vlen) != 0)
		return -ENOMEM;
	op = &ws->ops[ws->nops++];
	op->kind = kind;
	op->db = db;
	op->key = ws->len;
	memcpy(ws->buf + ws->len, key, klen + 1);
	ws->len += klen + 1;
	op->val = ws->len;
	op->len = vlen;
	ws->len += vlen;
	*out = op;
	return 0;
}

static int
wset_put_kind(struct wset *ws, enum wset_kind kind, enum store_db db, const char *key,
    const ProtobufCMessage *msg)
{
	struct wset_op *op;
	size_t len;
	int rc;

	if (msg == NULL || msg->descriptor != store_db_type(db)) {
		log_err(LOG_STORE, "write set: db=%s key=%s: wrong message type %s",
		    store_db_name(db), key != NULL ? key : "", msg != NULL ? msg->descriptor->name :
		    "(null)");
		return -EINVAL;
	}
	if (!protobuf_c_message_check(msg)) {
		log_err(LOG_STORE, "write set: db=%s key=%s: %s fails protobuf_c_message_check",
		    store_db_name(db), key, msg->descriptor->name);
		return -EINVAL;
	}
	len = protobuf_c_message_get_packed_size(msg);
	rc = wset_op(ws, kind, db, key, len, &op);
	if (rc != 0)
		return rc;
	protobuf_c_message_pack(msg, ws->buf + op->val);
	return 0;
}

int
wset_put(struct wset *ws, enum store_db db, const char *key, const ProtobufCMessage *msg)
{
	return wset_put_kind(ws, WSET_PUT, db, key, msg);
}

int
wset_add(struct wset *ws, enum store_db db, const char *key, const ProtobufCMessage *msg)
{
	return wset_put_kind(ws, WSET_ADD, db, key, msg);
}

int
wset_del_prefix(struct wset *ws, enum store_db db, const char *prefix)
{
	struct wset_op *op;

	return wset_op(ws, WSET_DEL_PREFIX, db, prefix, 0, &op);
}

int
wset_append(struct wset *dst, const struct wset *src)
{
	size_t i, base = dst->len;

	if (ARRAY_GROW(dst->ops, dst->ops_cap, dst->nops + src->nops) != 0 ||
	    wset_reserve(dst, src->len) != 0)
		return -ENOMEM;
	memcpy(dst->buf + dst->len, src->buf, src->len);
	dst->len += src->len;
	for (i = 0; i < src->nops; i++) {
		struct wset_op op = src->ops[i];
		op.key += base;
		op.val += base;
		dst->ops[dst->nops++] = op;
	}
	return 0;
}

int
wset_apply(struct store_txn *txn, void *arg)
{
	const struct wset *ws = arg;
	size_t i;
	int rc = 0;

	for (i = 0; i < ws->nops && rc == 0; i++) {
		const struct wset_op *op = &ws->ops[i];
		const char *key = (const char *)ws->buf + op->key;
		switch (op->kind) {
		case WSET_PUT:
		case WSET_ADD:
			rc = store_put_packed(txn, op->db, key, ws->buf + op->val, op->len,
			    op->kind == WSET_ADD);
			break;
		case WSET_DEL_PREFIX:
			rc = store_del_prefix(txn, op->db, key, NULL);
			break;
		}
	}
	return rc;
}
