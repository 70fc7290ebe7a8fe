/*
 * jsonw.h — a tiny streaming JSON writer (RFC 8259) into a growable memory buffer.
 *
 * Usage: jsonw_object_begin(w); jsonw_kstring(w, "id", id); jsonw_kuint(w, "tokens", n);
 * jsonw_object_end(w); then jsonw_data() gives the text ("{"id":"p-1","tokens":12}"), which
 * the caller writes wherever it wants.  jsonw_reset() empties the buffer for the next document
 * (JSON lines: one document per line).  Output is compact: no whitespace at all.
 *
 * Strings: '"', '\\' and every control character U+0000..U+001F are escaped (\" \\ \b \f \n
 * \r \t, the rest as \u00XX).  Valid UTF-8 passes through unchanged (no \u escapes for
 * non-ASCII).  Bytes that are not valid UTF-8 (stray continuation bytes, truncated or overlong
 * sequences, encoded surrogates, anything above U+10FFFF) are replaced by U+FFFD one byte at a
 * time, so the output is always valid UTF-8 and valid JSON whatever the input bytes are.
 * Numbers: integers exactly; doubles with the fewest digits (up to 17) that read back as the
 * same double, independent of the locale; NaN and infinities are written as null.
 *
 * Errors are sticky: the first failure (out of memory, or misuse such as a value in an object
 * without a key, a key outside an object, a mismatched end, nesting deeper than
 * JSONW_MAX_DEPTH, a second top-level value) is remembered, later calls do nothing, and
 * jsonw_error() reports it.  So a document is built without checking every call and checked
 * once at the end.
 *
 * Threads: a writer is used by one thread at a time; different writers are independent.
 */
#ifndef CERTA_LIB_JSONW_H
#define CERTA_LIB_JSONW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Deepest nesting of arrays and objects. */
#define JSONW_MAX_DEPTH 32

struct jsonw;

/* Creates an empty writer.  Returns 0 or -ENOMEM; *out is written only on success. */
int jsonw_new(struct jsonw **out);
/* Frees the writer and its buffer.  NULL is a no-op. */
void jsonw_free(struct jsonw *w);
/* Forgets the document and any error; keeps the buffer's memory for reuse. */
void jsonw_reset(struct jsonw *w);

/* 0, or the first error: -ENOMEM, or -EINVAL for misuse (see above). */
int jsonw_error(const struct jsonw *w);

/* The text written so far, NUL-terminated, owned by the writer and valid until the next call
 * on it; *len (may be NULL) receives its length.  Returns NULL when an error occurred or the
 * document is not complete (an open array/object, a key without its value, nothing written). */
const char *jsonw_data(const struct jsonw *w, size_t *len);

void jsonw_object_begin(struct jsonw *w);
void jsonw_object_end(struct jsonw *w);
void jsonw_array_begin(struct jsonw *w);
void jsonw_array_end(struct jsonw *w);

/* Writes the key of the next object member (escaped like a string); NULL is misuse. */
void jsonw_key(struct jsonw *w, const char *key);

/* Values.  jsonw_string(w, NULL) writes null; jsonw_stringn() takes len bytes, NULs included
 * (written as \u0000). */
void jsonw_string(struct jsonw *w, const char *s);
void jsonw_stringn(struct jsonw *w, const char *s, size_t len);
void jsonw_int(struct jsonw *w, int64_t v);
void jsonw_uint(struct jsonw *w, uint64_t v);
void jsonw_double(struct jsonw *w, double v);
void jsonw_bool(struct jsonw *w, bool v);
void jsonw_null(struct jsonw *w);

/* Key + value in one call, for object members. */
void jsonw_kstring(struct jsonw *w, const char *key, const char *s);
void jsonw_kint(struct jsonw *w, const char *key, int64_t v);
void jsonw_kuint(struct jsonw *w, const char *key, uint64_t v);
void jsonw_kdouble(struct jsonw *w, const char *key, double v);
void jsonw_kbool(struct jsonw *w, const char *key, bool v);
void jsonw_knull(struct jsonw *w, const char *key);

/* Length (1 to 4) of the valid UTF-8 sequence at s, n > 0 bytes available, and its code point
 * in *cp (may be NULL; written only on success); 0 when s does not start with valid UTF-8
 * (the bytes the string writers replace by U+FFFD).  The same test serves anyone else who
 * must tell valid UTF-8 from stray bytes, such as certactl's terminal-safe text. */
size_t jsonw_utf8(const unsigned char *s, size_t n, unsigned *cp);

#endif
