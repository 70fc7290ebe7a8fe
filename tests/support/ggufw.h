/*
 * ggufw.h — a little GGUF writer for tests: little-endian values, strings and metadata pairs
 * appended to a growing buffer, to build model and tokenizer files by hand (the format is
 * described in workers/llm/gguf.h).
 *
 * A struct ggufw starts zeroed ({ 0 }); p[0..n) is what was written so far.  Running out of
 * memory aborts (tests only).  Free it with ggufw_free().
 */
#ifndef CERTA_TESTS_SUPPORT_GGUFW_H
#define CERTA_TESTS_SUPPORT_GGUFW_H

#include <stddef.h>
#include <stdint.h>

struct ggufw {
	uint8_t *p;
	size_t n, cap;
};

/* Appends the n bytes at d. */
void ggufw_put(struct ggufw *b, const void *d, size_t n);

/* Appends v (host byte order: the tests run little-endian). */
void ggufw_u32(struct ggufw *b, uint32_t v);
void ggufw_u64(struct ggufw *b, uint64_t v);

/* Appends a GGUF string: its u64 length, then its bytes. */
void ggufw_str(struct ggufw *b, const char *s);

/* Appends a metadata pair: key k, then the value type and v. */
void ggufw_kv_u32(struct ggufw *b, const char *k, uint32_t v);
void ggufw_kv_str(struct ggufw *b, const char *k, const char *v);

/* Appends a metadata pair whose value is an array of the n strings (i32s) of v. */
void ggufw_kv_strs(struct ggufw *b, const char *k, const char *const *v, size_t n);
void ggufw_kv_i32s(struct ggufw *b, const char *k, const int32_t *v, size_t n);

/* Frees p and zeroes b. */
void ggufw_free(struct ggufw *b);

#endif
