/*
 * utf8.h — the one strict UTF-8 decoder of the tree (Unicode table 3-7: no overlong forms, no
 * surrogates, nothing above U+10FFFF).  Used by the JSON reader and writer, the protobuf string
 * check at the gRPC edge and the model engine's tokenizer.  Pure; any thread.
 */
#ifndef CERTA_LIB_UTF8_H
#define CERTA_LIB_UTF8_H

#include <stddef.h>
#include <stdint.h>

/*
 * The character at s, with n >= 1 bytes available: returns its length 1..4 when it is whole and
 * valid (and writes its code point to *cp when cp is not NULL), 0 when the n bytes are a valid
 * but incomplete start of one (more bytes could complete it), -1 when they can never be one.
 */
int utf8_char(const uint8_t *s, size_t n, uint32_t *cp);

/* The offset of the first byte of s[0..n) that does not start a whole valid character (an
 * incomplete one at the end counts), or n when all of s is valid UTF-8. */
size_t utf8_valid_prefix(const uint8_t *s, size_t n);

#endif
