/* utf8.c — strict UTF-8 decoding (see utf8.h). */
#include "lib/utf8.h"

int
utf8_char(const uint8_t *s, size_t n, uint32_t *cp)
{
	uint8_t c = s[0], lo = 0x80, hi = 0xbf;
	uint32_t v;
	int len, i;

	if (c < 0x80) {
		if (cp != NULL)
			*cp = c;
		return 1;
	}
	if (c >= 0xc2 && c <= 0xdf) {
		len = 2;
		v = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		v = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		v = c & 0x07;
	} else {
		return -1;  /* continuation byte, overlong lead C0/C1, or F5..FF */
	}
	/* The second byte's range excludes overlong forms, surrogates and > U+10FFFF. */
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	for (i = 1; i < len; i++) {
		if ((size_t)i >= n)
			return 0;
		if (s[i] < (i == 1 ? lo : 0x80) || s[i] > (i == 1 ? hi : 0xbf))
			return -1;
		v = (v << 6) | (s[i] & 0x3f);
	}
	if (cp != NULL)
		*cp = v;
	return len;
}

size_t
utf8_valid_prefix(const uint8_t *s, size_t n)
{
	size_t i = 0;
	int k;

	while (i < n) {
		k = utf8_char(s + i, n - i, NULL);
		if (k <= 0)
			return i;
		i += (size_t)k;
	}
	return n;
}
