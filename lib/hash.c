/* hash.c — FNV-1a 64 (see hash.h). */
#include "lib/hash.h"

uint64_t
hash_fnv1a(const void *data, size_t len, uint64_t h)
{
	const unsigned char *p = data;
	size_t i;

	for (i = 0; i < len; i++) {
		h ^= p[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}
