/* gguf.c — strict GGUF v3 reader over a read-only mapping (see gguf.h). */
#include "workers/llm/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/array.h"
#include "lib/error.h"
#include "lib/strmap.h"

#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_ALIGNMENT (1u << 20)
#define GGUF_MAX_KEY 65535           /* longest key accepted */

/* One metadata pair; val points at the value (for arrays: at the first element). */
struct gguf_kv {
	char *key;
	enum gguf_vtype type, elem;
	uint64_t count;               /* arrays */
	const uint8_t *val;
	uint64_t *stroff;             /* string arrays: offset of each element from val */
};

struct gguf {
	const uint8_t *base;
	size_t size;
	bool mapped;
	uint32_t version, alignment;
	struct gguf_kv *kv;
	size_t nkv, kvcap;
	struct gguf_tensor *t;
	size_t nt;
	struct strmap *keys, *tensors;  /* name -> index + 1 */
};

/* A bounds-checked read position in the file. */
struct gguf_cur {
	const uint8_t *p, *end;
	const uint8_t *base;
	char *err;
	size_t errlen;
	const char *path;
};

/* Per type: name, elements per block, bytes per block (ggml's table for these types). */
static const struct {
	const char *name;
	uint32_t block, size;
} gguf_types[] = {
	[GGUF_T_F32] = { "f32", 1, 4 },      [GGUF_T_F16] = { "f16", 1, 2 },
	[GGUF_T_Q4_0] = { "q4_0", 32, 18 },  [GGUF_T_Q4_1] = { "q4_1", 32, 20 },
	[GGUF_T_Q5_0] = { "q5_0", 32, 22 },  [GGUF_T_Q5_1] = { "q5_1", 32, 24 },
	[GGUF_T_Q8_0] = { "q8_0", 32, 34 },  [GGUF_T_Q8_1] = { "q8_1", 32, 36 },
	[GGUF_T_Q2_K] = { "q2_k", 256, 84 }, [GGUF_T_Q3_K] = { "q3_k", 256, 110 },
	[GGUF_T_Q4_K] = { "q4_k", 256, 144 }, [GGUF_T_Q5_K] = { "q5_k", 256, 176 },
	[GGUF_T_Q6_K] = { "q6_k", 256, 210 }, [GGUF_T_Q8_K] = { "q8_k", 256, 292 },
	[GGUF_T_I8] = { "i8", 1, 1 },        [GGUF_T_I16] = { "i16", 1, 2 },
	[GGUF_T_I32] = { "i32", 1, 4 },      [GGUF_T_I64] = { "i64", 1, 8 },
	[GGUF_T_F64] = { "f64", 1, 8 },      [GGUF_T_BF16] = { "bf16", 1, 2 },
};
#define GGUF_NTYPES (sizeof gguf_types / sizeof gguf_types[0])

/* Bytes of one scalar value of type t; 0 for strings, arrays and unknown types. */
static size_t
gguf_vsize(uint32_t t)
{
	switch (t) {
	case GGUF_U8: case GGUF_I8: case GGUF_BOOL: return 1;
	case GGUF_U16: case GGUF_I16: return 2;
	case GGUF_U32: case GGUF_I32: case GGUF_F32: return 4;
	case GGUF_U64: case GGUF_I64: case GGUF_F64: return 8;
	default: return 0;
	}
}

static int gguf_fail(struct gguf_cur *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* "PATH: <message> (at byte N)"; returns CERTA_EINVAL. */
static int
gguf_fail(struct gguf_cur *c, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	if (c->err == NULL || c->errlen == 0)
		return CERTA_EINVAL;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	snprintf(c->err, c->errlen, "%s: %s (at byte %zu)", c->path, msg,
	    (size_t)(c->p - c->base));
	return CERTA_EINVAL;
}

static size_t
gguf_left(const struct gguf_cur *c)
{
	return (size_t)(c->end - c->p);
}

/* Little-endian reads that never pass the end; what names the field for the message. */
static int
gguf_read(struct gguf_cur *c, void *out, size_t n, const char *what)
{
	if (gguf_left(c) < n)
		return gguf_fail(c, "file ends inside %s", what);
	memcpy(out, c->p, n);   /* the host is little-endian (checked in gguf_parse) */
	c->p += n;
	return 0;
}

static int
gguf_u32(struct gguf_cur *c, uint32_t *v, const char *what)
{
	return gguf_read(c, v, 4, what);
}

static int
gguf_u64(struct gguf_cur *c, uint64_t *v, const char *what)
{
	return gguf_read(c, v, 8, what);
}

/* A string: u64 length, bytes.  *s points into the file. */
static int
gguf_str(struct gguf_cur *c, const uint8_t **s, uint64_t *len, const char *what)
{
	int rc = gguf_u64(c, len, what);

	if (rc != 0)
		return rc;
	if (*len > gguf_left(c))
		return gguf_fail(c, "%s: length %llu runs past the end of the file", what,
		    (unsigned long long)*len);
	*s = c->p;
	c->p += *len;
	return 0;
}

/* Skips one value of type t (not an array). */
static int
gguf_skip_scalar(struct gguf_cur *c, uint32_t t, const char *what)
{
	const uint8_t *s;
	uint64_t len;
	size_t n;

	if (t == GGUF_STRING)
		return gguf_str(c, &s, &len, what);
	n = gguf_vsize(t);
	if (n == 0)
		return gguf_fail(c, "%s: unknown value type %u", what, t);
	if (gguf_left(c) < n)
		return gguf_fail(c, "file ends inside %s", what);
	c->p += n;
	return 0;
}

/* One metadata value at the cursor into kv (key already set). */
static int
gguf_parse_value(struct gguf_cur *c, struct gguf_kv *kv)
{
	uint32_t type = 0, elem = 0;
	uint64_t count = 0, i;
	size_t esz;
	int rc;

	if ((rc = gguf_u32(c, &type, kv->key)) != 0)
		return rc;
	kv->type = (enum gguf_vtype)type;
	if (type != GGUF_ARRAY) {
		kv->val = c->p;
		return gguf_skip_scalar(c, type, kv->key);
	}
	if ((rc = gguf_u32(c, &elem, kv->key)) != 0 || (rc = gguf_u64(c, &count, kv->key)) != 0)
		return rc;
	if (elem == GGUF_ARRAY)
		return gguf_fail(c, "'%s': nested arrays are not supported", kv->key);
	kv->elem = (enum gguf_vtype)elem;
	kv->count = count;
	kv->val = c->p;
	if (elem != GGUF_STRING) {
		esz = gguf_vsize(elem);
		if (esz == 0)
			return gguf_fail(c, "'%s': unknown array element type %u", kv->key, elem);
		if (count > gguf_left(c) / esz)
			return gguf_fail(c, "'%s': array of %llu elements runs past the end of the "
			    "file", kv->key, (unsigned long long)count);
		c->p += count * esz;
		return 0;
	}
	/* Every string takes at least its 8-byte length. */
	if (count > gguf_left(c) / 8)
		return gguf_fail(c, "'%s': array of %llu strings runs past the end of the file",
		    kv->key, (unsigned long long)count);
	kv->stroff = reallocarray(NULL, count > 0 ? count : 1, sizeof *kv->stroff);
	if (kv->stroff == NULL)
		return -ENOMEM;
	for (i = 0; i < count; i++) {
		kv->stroff[i] = (uint64_t)(c->p - kv->val);
		if ((rc = gguf_skip_scalar(c, GGUF_STRING, kv->key)) != 0)
			return rc;
	}
	return 0;
}

/* Header fields and metadata. */
static int
gguf_parse_kvs(struct gguf *g, struct gguf_cur *c, uint64_t nkv)
{
	const uint8_t *ks = NULL;
	uint64_t klen = 0, i;
	void *old;
	int rc;

	/* A pair takes at least 8 (key length) + 4 (type) + 1 bytes. */
	if (nkv > gguf_left(c) / 13)
		return gguf_fail(c, "metadata count %llu is larger than the file can hold",
		    (unsigned long long)nkv);
	for (i = 0; i < nkv; i++) {
		struct gguf_kv *kv;

		if (ARRAY_GROW(g->kv, g->kvcap, g->nkv + 1) != 0)
			return -ENOMEM;
		kv = &g->kv[g->nkv];
		memset(kv, 0, sizeof *kv);
		if ((rc = gguf_str(c, &ks, &klen, "a metadata key")) != 0)
			return rc;
		if (klen == 0 || klen > GGUF_MAX_KEY || memchr(ks, '\0', klen) != NULL)
			return gguf_fail(c, "metadata key %llu is empty, too long or has a NUL byte",
			    (unsigned long long)i);
		kv->key = strndup((const char *)ks, klen);
		if (kv->key == NULL)
			return -ENOMEM;
		g->nkv++;
		if ((rc = gguf_parse_value(c, kv)) != 0)
			return rc;
		if (strmap_get(g->keys, kv->key) != NULL)
			return gguf_fail(c, "metadata key '%s' appears twice", kv->key);
		if (strmap_put(g->keys, kv->key, (void *)(uintptr_t)g->nkv, &old) != 0)
			return -ENOMEM;
	}
	return 0;
}

/* Tensor infos, then the data section's start and every tensor's bounds. */
static int
gguf_parse_tensors(struct gguf *g, struct gguf_cur *c, uint64_t nt)
{
	const uint8_t *ns = NULL;
	uint64_t nlen = 0, i, data_start, data_size, pad;
	void *old;
	int rc;

	/* An info takes at least 8 (name length) + 4 + 8 + 4 + 8 bytes. */
	if (nt > gguf_left(c) / 32)
		return gguf_fail(c, "tensor count %llu is larger than the file can hold",
		    (unsigned long long)nt);
	g->t = calloc(nt > 0 ? nt : 1, sizeof *g->t);
	if (g->t == NULL)
		return -ENOMEM;
	for (i = 0; i < nt; i++) {
		struct gguf_tensor *t = &g->t[i];
		uint32_t nd = 0, type = 0, d;
		uint64_t rowblocks;

		if ((rc = gguf_str(c, &ns, &nlen, "a tensor name")) != 0)
			return rc;
		if (nlen == 0 || nlen > GGUF_MAX_KEY || memchr(ns, '\0', nlen) != NULL)
			return gguf_fail(c, "tensor %llu: name is empty, too long or has a NUL byte",
			    (unsigned long long)i);
		t->name = strndup((const char *)ns, nlen);
		if (t->name == NULL)
			return -ENOMEM;
		g->nt++;
		if ((rc = gguf_u32(c, &nd, t->name)) != 0)
			return rc;
		if (nd == 0 || nd > GGUF_MAX_DIMS)
			return gguf_fail(c, "tensor '%s': %u dimensions (1 to %d)", t->name, nd,
			    GGUF_MAX_DIMS);
		t->n_dims = nd;
		t->nelem = 1;
		for (d = 0; d < GGUF_MAX_DIMS; d++) {
			t->ne[d] = 1;
			if (d >= nd)
				continue;
			if ((rc = gguf_u64(c, &t->ne[d], t->name)) != 0)
				return rc;
			if (t->ne[d] == 0 || t->ne[d] > (1ull << 40) ||
			    t->nelem > (UINT64_MAX >> 1) / t->ne[d])
				return gguf_fail(c, "tensor '%s': dimension %u is %llu", t->name, d,
				    (unsigned long long)t->ne[d]);
			t->nelem *= t->ne[d];
		}
		if ((rc = gguf_u32(c, &type, t->name)) != 0)
			return rc;
		if (type >= GGUF_NTYPES || gguf_types[type].name == NULL)
			return gguf_fail(c, "tensor '%s': unknown ggml type %u", t->name, type);
		t->type = (enum gguf_ttype)type;
		if (t->ne[0] % gguf_types[type].block != 0)
			return gguf_fail(c, "tensor '%s': row of %llu elements is not a whole number "
			    "of %s blocks (%u)", t->name, (unsigned long long)t->ne[0],
			    gguf_types[type].name, gguf_types[type].block);
		rowblocks = t->nelem / gguf_types[type].block;
		if (rowblocks > UINT64_MAX / gguf_types[type].size)
			return gguf_fail(c, "tensor '%s': size overflows", t->name);
		t->nbytes = rowblocks * gguf_types[type].size;
		if ((rc = gguf_u64(c, &t->offset, t->name)) != 0)
			return rc;
		if (t->offset % g->alignment != 0)
			return gguf_fail(c, "tensor '%s': offset %llu is not a multiple of the "
			    "alignment %u", t->name, (unsigned long long)t->offset, g->alignment);
		if (strmap_get(g->tensors, t->name) != NULL)
			return gguf_fail(c, "tensor '%s' appears twice", t->name);
		if (strmap_put(g->tensors, t->name, (void *)(uintptr_t)(i + 1), &old) != 0)
			return -ENOMEM;
	}
	data_start = (uint64_t)(c->p - c->base);
	pad = (g->alignment - data_start % g->alignment) % g->alignment;
	if (nt == 0)
		return 0;
	if (pad > gguf_left(c))
		return gguf_fail(c, "file ends before the tensor data");
	data_start += pad;
	data_size = g->size - data_start;
	for (i = 0; i < nt; i++) {
		struct gguf_tensor *t = &g->t[i];

		if (t->offset > data_size || t->nbytes > data_size - t->offset) {
			c->p = c->base + data_start;
			return gguf_fail(c, "tensor '%s': data [offset %llu, %llu bytes) runs past "
			    "the end of the file (%llu bytes of data)", t->name,
			    (unsigned long long)t->offset, (unsigned long long)t->nbytes,
			    (unsigned long long)data_size);
		}
		t->data = c->base + data_start + t->offset;
	}
	return 0;
}

/* Orders tensors by offset, for the overlap check. */
static int
gguf_cmp_offset(const void *a, const void *b)
{
	const struct gguf_tensor *x = *(const struct gguf_tensor *const *)a;
	const struct gguf_tensor *y = *(const struct gguf_tensor *const *)b;

	return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* No two tensors share bytes. */
static int
gguf_check_overlap(struct gguf *g, struct gguf_cur *c)
{
	const struct gguf_tensor **v;
	size_t i;
	int rc = 0;

	if (g->nt < 2)
		return 0;
	v = reallocarray(NULL, g->nt, sizeof *v);
	if (v == NULL)
		return -ENOMEM;
	for (i = 0; i < g->nt; i++)
		v[i] = &g->t[i];
	qsort(v, g->nt, sizeof *v, gguf_cmp_offset);
	for (i = 1; i < g->nt && rc == 0; i++)
		if (v[i - 1]->offset + v[i - 1]->nbytes > v[i]->offset)
			rc = gguf_fail(c, "tensors '%s' and '%s' overlap", v[i - 1]->name,
			    v[i]->name);
	free(v);
	return rc;
}

/* The alignment from metadata (general.alignment), checked. */
static int
gguf_take_alignment(struct gguf *g, struct gguf_cur *c)
{
	uint64_t a;
	int rc = gguf_get_u64(g, "general.alignment", &a);

	g->alignment = GGUF_DEFAULT_ALIGNMENT;
	if (rc == -ENOENT)
		return 0;
	if (rc != 0 || a == 0 || a > GGUF_MAX_ALIGNMENT || (a & (a - 1)) != 0)
		return gguf_fail(c, "general.alignment must be a power of two up to %u",
		    GGUF_MAX_ALIGNMENT);
	g->alignment = (uint32_t)a;
	return 0;
}

/* The whole file: header, metadata, tensor infos, data bounds. */
static int
gguf_parse(struct gguf *g, const char *path, char *err, size_t errlen)
{
	struct gguf_cur c = { g->base, g->base + g->size, g->base, err, errlen, path };
	const uint16_t probe = 1;
	uint8_t magic[4];
	uint64_t nt = 0, nkv = 0;
	int rc;

	if (*(const uint8_t *)&probe != 1)
		return gguf_fail(&c, "big-endian hosts are not supported");
	if (g->size < 4 || (rc = gguf_read(&c, magic, 4, "the magic")) != 0 ||
	    memcmp(magic, "GGUF", 4) != 0) {
		c.p = c.base;
		return gguf_fail(&c, "not a GGUF file (no \"GGUF\" magic)");
	}
	if ((rc = gguf_u32(&c, &g->version, "the header")) != 0)
		return rc;
	if (g->version != 2 && g->version != 3)
		return gguf_fail(&c, "GGUF version %u is not supported (2 or 3)", g->version);
	if ((rc = gguf_u64(&c, &nt, "the header")) != 0 ||
	    (rc = gguf_u64(&c, &nkv, "the header")) != 0)
		return rc;
	if ((rc = gguf_parse_kvs(g, &c, nkv)) != 0)
		return rc;
	if ((rc = gguf_take_alignment(g, &c)) != 0)
		return rc;
	if ((rc = gguf_parse_tensors(g, &c, nt)) != 0)
		return rc;
	return gguf_check_overlap(g, &c);
}

/* A reader over base[0..size); parses it. */
static int
gguf_new(const void *base, size_t size, bool mapped, const char *path, struct gguf **out,
    char *err, size_t errlen)
{
	struct gguf *g;
	int rc;

	g = calloc(1, sizeof *g);
	if (g == NULL)
		return -ENOMEM;
	g->base = base;
	g->size = size;
	g->mapped = mapped;
	g->keys = strmap_new();
	g->tensors = strmap_new();
	if (g->keys == NULL || g->tensors == NULL) {
		rc = -ENOMEM;
		goto fail;
	}
	rc = gguf_parse(g, path, err, errlen);
	if (rc != 0)
		goto fail;
	*out = g;
	return 0;

fail:
	if (rc == -ENOMEM && err != NULL && errlen > 0)
		snprintf(err, errlen, "%s: out of memory", path);
	g->mapped = false;   /* the caller unmaps on failure */
	gguf_close(g);
	return rc;
}

int
gguf_open_buffer(const void *data, size_t len, struct gguf **out, char *err, size_t errlen)
{
	return gguf_new(data, len, false, "(buffer)", out, err, errlen);
}

int
gguf_open(const char *path, struct gguf **out, char *err, size_t errlen)
{
	struct stat st;
	void *map;
	int fd, rc;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		goto fail_msg;
	}
	if (fstat(fd, &st) != 0) {
		rc = -errno;
		goto fail_fd;
	}
	if (S_ISDIR(st.st_mode)) {
		rc = -EISDIR;
		goto fail_fd;
	}
	if (!S_ISREG(st.st_mode) || st.st_size < 24) {
		close(fd);
		if (err != NULL && errlen > 0)
			snprintf(err, errlen, "%s: not a GGUF file (%s)", path,
			    S_ISREG(st.st_mode) ? "shorter than a GGUF header" :
			    "not a regular file");
		return CERTA_EINVAL;
	}
	map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	if (map == MAP_FAILED) {
		rc = -errno;
		goto fail_fd;
	}
	close(fd);
	rc = gguf_new(map, (size_t)st.st_size, true, path, out, err, errlen);
	if (rc != 0)
		munmap(map, (size_t)st.st_size);
	return rc;

fail_fd:
	close(fd);
fail_msg:
	if (err != NULL && errlen > 0)
		snprintf(err, errlen, "%s: %s", path, strerror(-rc));
	return rc;
}

void
gguf_close(struct gguf *g)
{
	size_t i;

	if (g == NULL)
		return;
	for (i = 0; i < g->nkv; i++) {
		free(g->kv[i].key);
		free(g->kv[i].stroff);
	}
	for (i = 0; i < g->nt; i++)
		free((char *)g->t[i].name);
	free(g->kv);
	free(g->t);
	strmap_free(g->keys, NULL);
	strmap_free(g->tensors, NULL);
	if (g->mapped)
		munmap((void *)g->base, g->size);
	free(g);
}

uint32_t
gguf_version(const struct gguf *g)
{
	return g->version;
}

uint32_t
gguf_alignment(const struct gguf *g)
{
	return g->alignment;
}

size_t
gguf_kv_count(const struct gguf *g)
{
	return g->nkv;
}

const char *
gguf_kv_key(const struct gguf *g, size_t i)
{
	return i < g->nkv ? g->kv[i].key : NULL;
}

long
gguf_find_key(const struct gguf *g, const char *key)
{
	uintptr_t v = (uintptr_t)strmap_get(g->keys, key);

	return v == 0 ? -1 : (long)(v - 1);
}

enum gguf_vtype
gguf_kv_type(const struct gguf *g, size_t i, enum gguf_vtype *elem, uint64_t *count)
{
	if (elem != NULL)
		*elem = g->kv[i].elem;
	if (count != NULL)
		*count = g->kv[i].count;
	return g->kv[i].type;
}

/* Reads a numeric scalar of type t at p as a signed 128-bit-safe pair: integers in *iv (with
 * *neg for negative values) or a float in *fv; returns 1 for integers, 2 for floats, 0 for
 * anything else. */
static int
gguf_num(uint32_t t, const uint8_t *p, uint64_t *iv, bool *neg, double *fv)
{
	union { uint8_t u8; int8_t i8; uint16_t u16; int16_t i16; uint32_t u32; int32_t i32;
		uint64_t u64; int64_t i64; float f32; double f64; } v;
	size_t n = gguf_vsize(t);

	if (n == 0)
		return 0;
	memcpy(&v, p, n);
	*neg = false;
	switch (t) {
	case GGUF_U8: *iv = v.u8; return 1;
	case GGUF_BOOL: *iv = v.u8 != 0; return 1;
	case GGUF_U16: *iv = v.u16; return 1;
	case GGUF_U32: *iv = v.u32; return 1;
	case GGUF_U64: *iv = v.u64; return 1;
	case GGUF_I8: *neg = v.i8 < 0; *iv = (uint64_t)(v.i8 < 0 ? -(int64_t)v.i8 : v.i8); return 1;
	case GGUF_I16: *neg = v.i16 < 0; *iv = (uint64_t)(v.i16 < 0 ? -(int64_t)v.i16 : v.i16);
		return 1;
	case GGUF_I32: *neg = v.i32 < 0; *iv = (uint64_t)(v.i32 < 0 ? -(int64_t)v.i32 : v.i32);
		return 1;
	case GGUF_I64:
		*neg = v.i64 < 0;
		*iv = v.i64 < 0 ? (uint64_t)0 - (uint64_t)v.i64 : (uint64_t)v.i64;
		return 1;
	case GGUF_F32: *fv = v.f32; return 2;
	case GGUF_F64: *fv = v.f64; return 2;
	default: return 0;
	}
}

/* The scalar kv of key, or an error code. */
static int
gguf_scalar(const struct gguf *g, const char *key, const struct gguf_kv **out)
{
	long i = gguf_find_key(g, key);

	if (i < 0)
		return -ENOENT;
	if (g->kv[i].type == GGUF_ARRAY)
		return -EINVAL;
	*out = &g->kv[i];
	return 0;
}

/* Converts a numeric value to int64 / uint64. */
static int
gguf_to_i64(uint32_t t, const uint8_t *p, int64_t *out)
{
	uint64_t iv;
	double fv;
	bool neg;

	if (gguf_num(t, p, &iv, &neg, &fv) != 1)
		return -EINVAL;
	if (!neg && iv > (uint64_t)INT64_MAX)
		return -ERANGE;
	if (neg && iv > (uint64_t)INT64_MAX + 1)
		return -ERANGE;
	*out = neg ? (int64_t)(0 - iv) : (int64_t)iv;
	return 0;
}

/* The scalar number under key as gguf_num() reads it; -EINVAL unless of the kind wanted
 * (1: an integer, 2: a float). */
static int
gguf_get_num(const struct gguf *g, const char *key, int kind, uint64_t *iv, bool *neg,
    double *fv)
{
	const struct gguf_kv *kv;
	int rc = gguf_scalar(g, key, &kv);

	if (rc != 0)
		return rc;
	return gguf_num(kv->type, kv->val, iv, neg, fv) == kind ? 0 : -EINVAL;
}

int
gguf_get_u64(const struct gguf *g, const char *key, uint64_t *out)
{
	uint64_t iv;
	double fv;
	bool neg;
	int rc = gguf_get_num(g, key, 1, &iv, &neg, &fv);

	if (rc != 0)
		return rc;
	if (neg && iv != 0)
		return -ERANGE;
	*out = iv;
	return 0;
}

int
gguf_get_u32(const struct gguf *g, const char *key, uint32_t *out)
{
	uint64_t v;
	int rc = gguf_get_u64(g, key, &v);

	if (rc != 0)
		return rc;
	if (v > UINT32_MAX)
		return -ERANGE;
	*out = (uint32_t)v;
	return 0;
}

int
gguf_get_i64(const struct gguf *g, const char *key, int64_t *out)
{
	const struct gguf_kv *kv;
	int rc = gguf_scalar(g, key, &kv);

	return rc != 0 ? rc : gguf_to_i64(kv->type, kv->val, out);
}

int
gguf_get_f64(const struct gguf *g, const char *key, double *out)
{
	uint64_t iv;
	double fv;
	bool neg;
	int rc = gguf_get_num(g, key, 2, &iv, &neg, &fv);

	if (rc != 0)
		return rc;
	*out = fv;
	return 0;
}

int
gguf_get_bool(const struct gguf *g, const char *key, bool *out)
{
	const struct gguf_kv *kv;
	int rc = gguf_scalar(g, key, &kv);

	if (rc != 0)
		return rc;
	if (kv->type != GGUF_BOOL)
		return -EINVAL;
	*out = kv->val[0] != 0;
	return 0;
}

/* A string at p (u64 length, bytes), already bounds-checked at open. */
static void
gguf_str_at(const uint8_t *p, const char **s, size_t *len)
{
	uint64_t n;

	memcpy(&n, p, 8);
	*s = (const char *)p + 8;
	*len = (size_t)n;
}

int
gguf_get_str(const struct gguf *g, const char *key, const char **s, size_t *len)
{
	const struct gguf_kv *kv;
	int rc = gguf_scalar(g, key, &kv);

	if (rc != 0)
		return rc;
	if (kv->type != GGUF_STRING)
		return -EINVAL;
	gguf_str_at(kv->val, s, len);
	return 0;
}

/* The array kv of key. */
static int
gguf_array(const struct gguf *g, const char *key, const struct gguf_kv **out)
{
	long i = gguf_find_key(g, key);

	if (i < 0)
		return -ENOENT;
	if (g->kv[i].type != GGUF_ARRAY)
		return -EINVAL;
	*out = &g->kv[i];
	return 0;
}

int
gguf_arr_len(const struct gguf *g, const char *key, enum gguf_vtype *elem, uint64_t *n)
{
	const struct gguf_kv *kv;
	int rc = gguf_array(g, key, &kv);

	if (rc != 0)
		return rc;
	if (elem != NULL)
		*elem = kv->elem;
	*n = kv->count;
	return 0;
}

int
gguf_arr_i64(const struct gguf *g, const char *key, uint64_t i, int64_t *out)
{
	const struct gguf_kv *kv;
	int rc = gguf_array(g, key, &kv);

	if (rc != 0)
		return rc;
	if (i >= kv->count || kv->elem == GGUF_STRING)
		return -EINVAL;
	return gguf_to_i64(kv->elem, kv->val + i * gguf_vsize(kv->elem), out);
}

int
gguf_arr_f64(const struct gguf *g, const char *key, uint64_t i, double *out)
{
	const struct gguf_kv *kv;
	uint64_t iv;
	bool neg;
	int rc = gguf_array(g, key, &kv);

	if (rc != 0)
		return rc;
	if (i >= kv->count || kv->elem == GGUF_STRING)
		return -EINVAL;
	rc = gguf_num(kv->elem, kv->val + i * gguf_vsize(kv->elem), &iv, &neg, out);
	if (rc == 1)
		*out = neg ? -(double)iv : (double)iv;
	return rc == 0 ? -EINVAL : 0;
}

int
gguf_arr_str(const struct gguf *g, const char *key, uint64_t i, const char **s, size_t *len)
{
	const struct gguf_kv *kv;
	int rc = gguf_array(g, key, &kv);

	if (rc != 0)
		return rc;
	if (i >= kv->count || kv->elem != GGUF_STRING)
		return -EINVAL;
	gguf_str_at(kv->val + kv->stroff[i], s, len);
	return 0;
}

size_t
gguf_tensor_count(const struct gguf *g)
{
	return g->nt;
}

const struct gguf_tensor *
gguf_tensor_at(const struct gguf *g, size_t i)
{
	return i < g->nt ? &g->t[i] : NULL;
}

const struct gguf_tensor *
gguf_find_tensor(const struct gguf *g, const char *name)
{
	uintptr_t v = (uintptr_t)strmap_get(g->tensors, name);

	return v == 0 ? NULL : &g->t[v - 1];
}

const char *
gguf_ttype_name(uint32_t type)
{
	return type < GGUF_NTYPES ? gguf_types[type].name : NULL;
}

uint32_t
gguf_ttype_block(uint32_t type)
{
	return type < GGUF_NTYPES ? gguf_types[type].block : 0;
}

uint32_t
gguf_ttype_size(uint32_t type)
{
	return type < GGUF_NTYPES ? gguf_types[type].size : 0;
}
