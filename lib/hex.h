/* hex.h — lowercase hexadecimal encoding of bytes (key ids, secrets, identities). Any thread. */
#ifndef CERTA_LIB_HEX_H
#define CERTA_LIB_HEX_H

#include <stddef.h>
#include <stdint.h>

/* Writes the 2 * n lowercase hex digits of b[0..n) and a NUL to out (2 * n + 1 bytes). */
void hex_encode(const uint8_t *b, size_t n, char *out);

/* The value 0..15 of one hex digit (either case), or -1. */
int hex_value(char c);

/* Decodes 2 * n hex digits (either case) of s into b[0..n).  Returns 0, or -EINVAL when s
 * has a non-hex character among them (b is then unspecified). */
int hex_decode(const char *s, size_t n, uint8_t *b);

#endif
