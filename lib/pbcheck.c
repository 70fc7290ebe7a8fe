/* pbcheck.c — descriptor-driven walk over encoded protobuf: every string is UTF-8, no NUL. */
#include "lib/pbcheck.h"

#include <stdio.h>
#include <string.h>

#include "lib/error.h"
#include "lib/utf8.h"

enum pbcheck_wire {
	PBCHECK_VARINT = 0,
	PBCHECK_I64 = 1,
	PBCHECK_LEN = 2,
	PBCHECK_I32 = 5,
};

/* Where the walk is: the dotted path of the enclosing fields, for messages. */
struct pbcheck_walk {
	char path[256];
	char *err;
	size_t errlen;
};

size_t
pbcheck_utf8(const uint8_t *s, size_t n)
{
	return utf8_valid_prefix(s, n);
}

/* Reads a varint at *p (below end); advances *p.  Returns 0 or CERTA_EDECODE. */
static int
pbcheck_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	uint64_t r = 0;
	unsigned shift;

	for (shift = 0; shift < 64 && *p < end; shift += 7) {
		uint8_t b = *(*p)++;
		r |= (uint64_t)(b & 0x7f) << shift;
		if ((b & 0x80) == 0) {
			*v = r;
			return 0;
		}
	}
	return CERTA_EDECODE;
}

/* One string field's bytes. */
static int
pbcheck_string(struct pbcheck_walk *w, const uint8_t *s, size_t n)
{
	const uint8_t *nul = memchr(s, 0, n);
	size_t bad = pbcheck_utf8(s, n);

	if (nul != NULL && (size_t)(nul - s) < bad) {
		snprintf(w->err, w->errlen, "%s: NUL byte at byte %zu", w->path,
		    (size_t)(nul - s));
		return CERTA_EINVAL;
	}
	if (bad < n) {
		snprintf(w->err, w->errlen, "%s: invalid UTF-8 at byte %zu", w->path, bad);
		return CERTA_EINVAL;
	}
	return 0;
}

/* Walks one encoded message of type desc; w->path names it. */
static int
pbcheck_message(struct pbcheck_walk *w, const ProtobufCMessageDescriptor *desc,
    const uint8_t *p, const uint8_t *end, int depth)
{
	if (depth > PBCHECK_MAX_DEPTH)
		return CERTA_EDECODE;
	while (p < end) {
		const ProtobufCFieldDescriptor *f;
		uint64_t key, len;
		size_t plen;
		int rc;

		if (pbcheck_varint(&p, end, &key) != 0 || (key >> 3) == 0 || (key >> 3) > UINT32_MAX)
			return CERTA_EDECODE;
		switch ((enum pbcheck_wire)(key & 7)) {
		case PBCHECK_VARINT:
			if (pbcheck_varint(&p, end, &len) != 0)
				return CERTA_EDECODE;
			continue;
		case PBCHECK_I64:
			if (end - p < 8)
				return CERTA_EDECODE;
			p += 8;
			continue;
		case PBCHECK_I32:
			if (end - p < 4)
				return CERTA_EDECODE;
			p += 4;
			continue;
		case PBCHECK_LEN:
			break;
		default:
			return CERTA_EDECODE;   /* groups (3, 4) and unknown wire types */
		}
		if (pbcheck_varint(&p, end, &len) != 0 || len > (uint64_t)(end - p))
			return CERTA_EDECODE;
		f = protobuf_c_message_descriptor_get_field(desc, (unsigned)(key >> 3));
		if (f != NULL && (f->type == PROTOBUF_C_TYPE_STRING ||
		    f->type == PROTOBUF_C_TYPE_MESSAGE)) {
			plen = strlen(w->path);
			snprintf(w->path + plen, sizeof w->path - plen, "%s%s", plen ? "." : "",
			    f->name);
			if (f->type == PROTOBUF_C_TYPE_STRING)
				rc = pbcheck_string(w, p, (size_t)len);
			else
				rc = pbcheck_message(w, f->descriptor, p, p + len, depth + 1);
			if (rc != 0)
				return rc;
			w->path[plen] = '\0';
		}
		p += len;
	}
	return 0;
}

int
pbcheck_strings(const ProtobufCMessageDescriptor *desc, const uint8_t *buf, size_t len,
    char *err, size_t errlen)
{
	struct pbcheck_walk w;
	int rc;

	w.path[0] = '\0';
	w.err = err;
	w.errlen = errlen;
	rc = pbcheck_message(&w, desc, buf, buf + len, 0);
	if (rc == CERTA_EDECODE)
		snprintf(err, errlen, "malformed %s message", desc->name);
	return rc;
}
