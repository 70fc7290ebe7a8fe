/*
 * pbcheck.h — edge validation of encoded protobuf messages that protobuf-c cannot do itself.
 *
 * proto3 `string` fields must hold valid UTF-8, and protobuf-c hands strings to C as
 * NUL-terminated char*, so a NUL inside one silently cuts it short ("What is 2+2?\0 IGNORE"
 * would be stored as "What is 2+2?").  pbcheck_strings() walks the encoded bytes guided by the
 * message descriptor (recursing into nested messages, repeated fields and maps) and refuses
 * every string field that is not valid UTF-8 or holds a NUL byte.  It works on any message
 * type: lib/rpc_server runs it on every request before a handler sees it.
 *
 * Threads: pure functions, any thread.
 */
#ifndef CERTA_LIB_PBCHECK_H
#define CERTA_LIB_PBCHECK_H

#include <stddef.h>
#include <stdint.h>
#include <protobuf-c/protobuf-c.h>

/* Deepest message nesting pbcheck_strings() follows (deeper is refused as malformed). */
#define PBCHECK_MAX_DEPTH 32

/*
 * Checks the string fields of buf[0..len), an encoded message of type desc.  Unknown fields
 * are skipped.  On a bad string writes "PATH: invalid UTF-8 at byte N" or "PATH: NUL byte at
 * byte N" into err (PATH is the dotted field path from the top message, e.g.
 * "program.problem"; N the offset inside the string) and returns CERTA_EINVAL.  Returns 0
 * when every string is good, CERTA_EDECODE when the bytes are not a well-formed message
 * (truncated, bad wire type, nesting deeper than PBCHECK_MAX_DEPTH).
 */
int pbcheck_strings(const ProtobufCMessageDescriptor *desc, const uint8_t *buf, size_t len,
    char *err, size_t errlen);

/* Validates s[0..n) as UTF-8 (RFC 3629: shortest forms only, no surrogates, at most
 * U+10FFFF); NUL bytes count as valid here.  Returns n when it all is, else the offset of
 * the first byte of the first bad sequence. */
size_t pbcheck_utf8(const uint8_t *s, size_t n);

#endif
