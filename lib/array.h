/*
 * array.h — growing a malloc'd array in place (Knot Resolver's lib/generic/array.h, as a
 * function rather than a struct): the one realloc-doubling routine of the tree.
 *
 *	struct item *items = NULL;
 *	size_t n = 0, cap = 0;
 *	if (ARRAY_GROW(items, cap, n + 1) != 0)
 *		return -ENOMEM;
 *	items[n++] = x;
 *
 * Any thread (no shared state).
 */
#ifndef CERTA_LIB_ARRAY_H
#define CERTA_LIB_ARRAY_H

#include <stddef.h>

/*
 * Makes the array *ptr (elements of elem bytes, *cap of them allocated) hold at least need
 * elements: capacity doubles from 8 (or jumps to need), through reallocarray, so the size
 * cannot overflow.  On success updates *ptr and *cap and returns 0; on failure leaves both
 * unchanged (the old array stays valid) and returns -ENOMEM (or -EOVERFLOW when need * elem
 * does not fit a size_t).  ptr is a pointer to the array's pointer variable.
 */
int array_grow(void *ptr, size_t *cap, size_t elem, size_t need);

/* array_grow() on an array variable and its size_t capacity variable. */
#define ARRAY_GROW(arr, cap, need) array_grow(&(arr), &(cap), sizeof *(arr), (need))

#endif
