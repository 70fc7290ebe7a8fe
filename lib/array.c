/* array.c — growing arrays (see array.h). */
#include "lib/array.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int
array_grow(void *ptr, size_t *cap, size_t elem, size_t need)
{
	void *old, *nw;
	size_t ncap;

	if (need <= *cap)
		return 0;
	if (elem == 0 || need > SIZE_MAX / elem)
		return -EOVERFLOW;
	ncap = *cap < 8 ? 8 : *cap;
	while (ncap < need)
		ncap = ncap > SIZE_MAX / 2 ? need : ncap * 2;
	if (ncap > SIZE_MAX / elem)
		ncap = need;
	memcpy(&old, ptr, sizeof old);
	nw = reallocarray(old, ncap, elem);
	if (nw == NULL)
		return -ENOMEM;
	memcpy(ptr, &nw, sizeof nw);
	*cap = ncap;
	return 0;
}
