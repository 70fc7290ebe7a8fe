/*
 * strmap.h — a string-keyed hash map (open addressing, linear probing, tombstones).
 *
 * Keys are copied into the map; values are opaque pointers owned by the caller.  Not
 * thread-safe: each map belongs to one thread.
 */
#ifndef CERTA_LIB_STRMAP_H
#define CERTA_LIB_STRMAP_H

#include <stddef.h>

struct strmap;

/* Returns NULL on allocation failure. */
struct strmap *strmap_new(void);
/* Frees the map; free_value (may be NULL) is called on every value. */
void strmap_free(struct strmap *m, void (*free_value)(void *value));

/* Value for key, or NULL. */
void *strmap_get(const struct strmap *m, const char *key);
/* Inserts or replaces.  When old is not NULL it receives the replaced value (or NULL).
 * Returns 0 or -ENOMEM (map unchanged). */
int strmap_put(struct strmap *m, const char *key, void *value, void **old);
/* Removes key; returns its value or NULL. */
void *strmap_del(struct strmap *m, const char *key);
size_t strmap_count(const struct strmap *m);

/* Calls fn for each entry in unspecified order; stop early by returning non-zero (returned).
 * fn must not modify the map. */
int strmap_foreach(const struct strmap *m, int (*fn)(const char *key, void *value, void *arg),
    void *arg);

#endif
