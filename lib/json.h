/*
 * json.h — a small, strict JSON parser (RFC 8259) into a read-only DOM.
 *
 * json_parse() reads one JSON text from a byte buffer and builds a tree of values.  All memory of
 * one document (values, decoded strings, member tables) comes from a single arena owned by the
 * struct json_doc; json_free() releases it at once.  Every pointer obtained from a document
 * (values, strings, keys) stays valid until json_free() of that document and no longer.
 *
 * Strictness: exactly the RFC 8259 grammar.  No comments, no trailing commas, no single quotes,
 * no leading zeros, no leading '+', no NaN/Infinity, no byte order mark, no control characters
 * inside strings.  Strings must be valid UTF-8 (no overlong forms, no encoded surrogates, nothing
 * above U+10FFFF); \uXXXX escapes are decoded to UTF-8, surrogate pairs are combined and a lone
 * surrogate is an error.  Any value may be the top-level value; only whitespace may follow it.
 * Duplicate object keys are accepted; json_object_get() returns the first.  Numbers whose
 * magnitude overflows a double are rejected.
 *
 * Limits: nesting depth (arrays + objects) and input size are bounded (JSON_DEFAULT_MAX_DEPTH,
 * JSON_DEFAULT_MAX_SIZE, or per call with json_parse_ex()).  Recursion depth of the parser is
 * bounded by the depth limit; memory is bounded by a small multiple of the input size.  The
 * parser never reads outside [buf, buf + len) and needs no terminating NUL, so it is safe to
 * feed it untrusted bytes.
 *
 * Threads: a parse touches only its own document; different threads may parse concurrently.
 * A finished document is immutable: any number of threads may read it concurrently.
 *
 * Accessors are NULL-tolerant so lookups can be chained: json_object_get(json_object_get(v, "a"),
 * "b") returns NULL if any step is missing or has the wrong type.
 */
#ifndef CERTA_LIB_JSON_H
#define CERTA_LIB_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JSON_DEFAULT_MAX_DEPTH 64
#define JSON_DEFAULT_MAX_SIZE ((size_t)256 << 20) /* 256 MiB */

struct json_doc;
struct json_value;

enum json_type {
	JSON_NONE = 0, /* only for a NULL value pointer */
	JSON_NULL,
	JSON_FALSE,
	JSON_TRUE,
	JSON_NUMBER,
	JSON_STRING,
	JSON_ARRAY,
	JSON_OBJECT,
};

/* Per-call limits for json_parse_ex(); a zero field means the default. */
struct json_limits {
	unsigned max_depth; /* nesting of arrays/objects; 1 = scalars and flat containers */
	size_t max_size;    /* bytes of input */
};

/*
 * Parses buf[0..len) as one JSON text.  On success stores a new document in *out (free it with
 * json_free()) and returns 0; *out is written only on success.
 * On failure writes "offset N: message" into err (if err != NULL and errlen > 0; always
 * NUL-terminated, truncated to errlen) and returns:
 *   -EINVAL   buf == NULL with len > 0, or out == NULL
 *   -EBADMSG  not valid JSON, or nesting deeper than the limit (message says which, offset is
 *             the byte where the problem was found; offset == len for truncated input)
 *   -E2BIG    len exceeds the size limit
 *   -ENOMEM   out of memory
 */
int json_parse(const char *buf, size_t len, struct json_doc **out, char *err, size_t errlen);

/* As json_parse(), with explicit limits (lim may be NULL) and the error offset returned in
 * *err_offset (may be NULL; written only on failure). */
int json_parse_ex(const char *buf, size_t len, const struct json_limits *lim,
	struct json_doc **out, size_t *err_offset, char *err, size_t errlen);

/* Frees a document and everything obtained from it.  NULL is a no-op. */
void json_free(struct json_doc *doc);

/* The top-level value; never NULL for a document returned by json_parse(). */
const struct json_value *json_root(const struct json_doc *doc);

/* Bytes of memory held by the document's arena (for accounting). */
size_t json_doc_memory(const struct json_doc *doc);

/* The type of v; JSON_NONE for v == NULL. */
enum json_type json_type(const struct json_value *v);
/* Name of a type ("null", "number", ...), for messages. */
const char *json_type_name(enum json_type t);

/* Value of key in object v (first match when keys repeat); NULL if v is not an object or has no
 * such key.  json_object_getn() takes a key that may contain NUL bytes. */
const struct json_value *json_object_get(const struct json_value *v, const char *key);
const struct json_value *json_object_getn(const struct json_value *v, const char *key,
	size_t keylen);
/* Number of members of object v (0 if not an object); members keep their input order. */
size_t json_object_len(const struct json_value *v);
/* Key / value of member i of object v; NULL if out of range or v is not an object.  The key is
 * NUL-terminated; *keylen (may be NULL) receives its length (keys may contain "\u0000"). */
const char *json_object_key_at(const struct json_value *v, size_t i, size_t *keylen);
const struct json_value *json_object_value_at(const struct json_value *v, size_t i);

/* Number of elements of array v (0 if not an array); element i, NULL if out of range. */
size_t json_array_len(const struct json_value *v);
const struct json_value *json_array_at(const struct json_value *v, size_t i);

/* Decoded UTF-8 of string v, NUL-terminated, or NULL if v is not a string.  *len (may be NULL)
 * receives the byte length, which is less than strlen() only if the string held "\u0000". */
const char *json_string(const struct json_value *v, size_t *len);

/* Value of number v as a double; 0.0 if v is not a number. */
double json_number(const struct json_value *v);
/* True if number v was written without fraction or exponent and fits an int64_t; its exact
 * value (also beyond 2^53) is then json_int(v).  json_int() is 0 for anything else. */
bool json_is_int(const struct json_value *v);
int64_t json_int(const struct json_value *v);

/* True for the literal true, false for false and for anything else. */
bool json_bool(const struct json_value *v);

#endif
