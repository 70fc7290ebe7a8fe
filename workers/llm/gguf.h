/*
 * gguf.h — a strict reader of GGUF v3 model files (the llama.cpp/ggml format).
 *
 * A GGUF file is a header ("GGUF", version, tensor count, metadata count), typed metadata
 * key/value pairs, tensor infos (name, dimensions, ggml type, offset) and, after padding to
 * `general.alignment` (default 32), the tensor data.  Everything is little-endian.
 *
 * The reader maps the file read-only and checks every count, length, offset, size and
 * alignment against the file before anything uses it: a truncated, corrupt or hostile file
 * gives CERTA_EINVAL with a message naming the problem and where ("tensor 'blk.0.attn_q.weight':
 * data [offset 4096, 8192 bytes) runs past the end of the file (6144 bytes of data)"), never a
 * crash or a read out of bounds.  Refused: versions other than 2 and 3, nested arrays, duplicate
 * keys or tensor names, tensors with a zero or over-large dimension, an unknown ggml type, a row
 * that is not a whole number of quantization blocks, misaligned or overlapping tensor data.
 *
 * Values stay in the mapping (unaligned): read them with the accessors, which convert between
 * integer widths when the value fits and return -ERANGE when it does not.  Strings are not
 * NUL-terminated in the file; gguf_get_str() hands out (pointer, length).
 *
 * Threads: a struct gguf is read-only after gguf_open(); any thread may read it.
 */
#ifndef CERTA_WORKERS_LLM_GGUF_H
#define CERTA_WORKERS_LLM_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct gguf;

/* Metadata value types (the numbering of the file format). */
enum gguf_vtype {
	GGUF_U8 = 0, GGUF_I8 = 1, GGUF_U16 = 2, GGUF_I16 = 3, GGUF_U32 = 4, GGUF_I32 = 5,
	GGUF_F32 = 6, GGUF_BOOL = 7, GGUF_STRING = 8, GGUF_ARRAY = 9, GGUF_U64 = 10,
	GGUF_I64 = 11, GGUF_F64 = 12,
};

/* ggml tensor types this reader knows the block layout of (the file format's numbering). */
enum gguf_ttype {
	GGUF_T_F32 = 0, GGUF_T_F16 = 1, GGUF_T_Q4_0 = 2, GGUF_T_Q4_1 = 3, GGUF_T_Q5_0 = 6,
	GGUF_T_Q5_1 = 7, GGUF_T_Q8_0 = 8, GGUF_T_Q8_1 = 9, GGUF_T_Q2_K = 10, GGUF_T_Q3_K = 11,
	GGUF_T_Q4_K = 12, GGUF_T_Q5_K = 13, GGUF_T_Q6_K = 14, GGUF_T_Q8_K = 15, GGUF_T_I8 = 24,
	GGUF_T_I16 = 25, GGUF_T_I32 = 26, GGUF_T_I64 = 27, GGUF_T_F64 = 28, GGUF_T_BF16 = 30,
};

#define GGUF_MAX_DIMS 4

/* One tensor: pointers into the mapping, valid until gguf_close(). */
struct gguf_tensor {
	const char *name;            /* NUL-terminated copy owned by the struct gguf */
	enum gguf_ttype type;
	uint32_t n_dims;
	uint64_t ne[GGUF_MAX_DIMS];  /* ne[0] is the row length (innermost); unused dims are 1 */
	uint64_t nelem;
	uint64_t nbytes;
	uint64_t offset;             /* from the start of the data section */
	const void *data;
};

/*
 * Maps the file at path and checks it.  On success stores a new reader in *out (free with
 * gguf_close) and returns 0.  On failure writes a message to err (when errlen > 0) that starts
 * with the path and returns -errno (the file cannot be opened or mapped: -ENOENT, -EACCES,
 * -EISDIR, -ENOMEM) or CERTA_EINVAL (not a valid GGUF file; the message says why).
 */
int gguf_open(const char *path, struct gguf **out, char *err, size_t errlen);

/* As gguf_open() over a caller's buffer, which must outlive the reader (tests, fuzzing). */
int gguf_open_buffer(const void *data, size_t len, struct gguf **out, char *err,
    size_t errlen);

/* Unmaps and frees.  NULL is a no-op. */
void gguf_close(struct gguf *g);

uint32_t gguf_version(const struct gguf *g);
uint32_t gguf_alignment(const struct gguf *g);

/* Metadata by index (0..gguf_kv_count-1, file order) or by key. */
size_t gguf_kv_count(const struct gguf *g);
const char *gguf_kv_key(const struct gguf *g, size_t i);
/* The index of key, or -1. */
long gguf_find_key(const struct gguf *g, const char *key);
/* The value's type; for arrays also the element type and count (either may be NULL). */
enum gguf_vtype gguf_kv_type(const struct gguf *g, size_t i, enum gguf_vtype *elem,
    uint64_t *count);

/*
 * Typed reads by key.  Each returns 0 and writes *out, -ENOENT (no such key), -EINVAL (the
 * value has another kind: a string where a number is wanted, ...) or -ERANGE (an integer that
 * does not fit *out, a negative value for an unsigned result).  Integers of any width convert;
 * floats convert between F32 and F64; bools read as 0/1 integers.
 */
int gguf_get_u64(const struct gguf *g, const char *key, uint64_t *out);
int gguf_get_u32(const struct gguf *g, const char *key, uint32_t *out);
int gguf_get_i64(const struct gguf *g, const char *key, int64_t *out);
int gguf_get_f64(const struct gguf *g, const char *key, double *out);
int gguf_get_bool(const struct gguf *g, const char *key, bool *out);
/* A string value: *s points into the file (not NUL-terminated), *len is its length. */
int gguf_get_str(const struct gguf *g, const char *key, const char **s, size_t *len);

/* Arrays: the element count; -ENOENT, -EINVAL when the key is not an array. */
int gguf_arr_len(const struct gguf *g, const char *key, enum gguf_vtype *elem, uint64_t *n);
/* Element i of a numeric array, converted as the scalar reads are. */
int gguf_arr_i64(const struct gguf *g, const char *key, uint64_t i, int64_t *out);
int gguf_arr_f64(const struct gguf *g, const char *key, uint64_t i, double *out);
/* Element i of a string array (O(1): the reader indexes string arrays at open). */
int gguf_arr_str(const struct gguf *g, const char *key, uint64_t i, const char **s,
    size_t *len);

/* Tensors in file order. */
size_t gguf_tensor_count(const struct gguf *g);
const struct gguf_tensor *gguf_tensor_at(const struct gguf *g, size_t i);
/* The tensor named name, or NULL. */
const struct gguf_tensor *gguf_find_tensor(const struct gguf *g, const char *name);

/* A type's name ("q8_0"), elements per block and bytes per block; 0/NULL for unknown types. */
const char *gguf_ttype_name(uint32_t type);
uint32_t gguf_ttype_block(uint32_t type);
uint32_t gguf_ttype_size(uint32_t type);

#endif
