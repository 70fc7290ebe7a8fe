/* strmap.c — open-addressing string hash map (FNV-1a, linear probing). */
#include "lib/strmap.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/hash.h"

#define STRMAP_TOMB ((char *)(uintptr_t)1)

struct strmap_slot {
	char *key;      /* NULL: empty, STRMAP_TOMB: deleted */
	void *value;
	uint64_t hash;
};

struct strmap {
	struct strmap_slot *slots;
	size_t cap;     /* power of two */
	size_t count;
	size_t used;    /* count + tombstones */
};

static uint64_t
strmap_hash(const char *s)
{
	return hash_fnv1a(s, strlen(s), HASH_FNV1A_BASIS);
}

struct strmap *
strmap_new(void)
{
	struct strmap *m = calloc(1, sizeof *m);

	if (m == NULL)
		return NULL;
	m->cap = 16;
	m->slots = calloc(m->cap, sizeof *m->slots);
	if (m->slots == NULL) {
		free(m);
		return NULL;
	}
	return m;
}

void
strmap_free(struct strmap *m, void (*free_value)(void *))
{
	size_t i;

	if (m == NULL)
		return;
	for (i = 0; i < m->cap; i++) {
		if (m->slots[i].key != NULL && m->slots[i].key != STRMAP_TOMB) {
			if (free_value != NULL)
				free_value(m->slots[i].value);
			free(m->slots[i].key);
		}
	}
	free(m->slots);
	free(m);
}

/* Slot holding key, or NULL. */
static struct strmap_slot *
strmap_find(const struct strmap *m, const char *key, uint64_t h)
{
	size_t i = (size_t)h & (m->cap - 1), n;

	for (n = 0; n < m->cap; n++, i = (i + 1) & (m->cap - 1)) {
		struct strmap_slot *s = &m->slots[i];
		if (s->key == NULL)
			return NULL;
		if (s->key != STRMAP_TOMB && s->hash == h && strcmp(s->key, key) == 0)
			return s;
	}
	return NULL;
}

/* Rehashes into a table of ncap slots (drops tombstones). */
static int
strmap_grow(struct strmap *m, size_t ncap)
{
	struct strmap_slot *ns = calloc(ncap, sizeof *ns);
	size_t i, j;

	if (ns == NULL)
		return -ENOMEM;
	for (i = 0; i < m->cap; i++) {
		struct strmap_slot *s = &m->slots[i];
		if (s->key == NULL || s->key == STRMAP_TOMB)
			continue;
		j = (size_t)s->hash & (ncap - 1);
		while (ns[j].key != NULL)
			j = (j + 1) & (ncap - 1);
		ns[j] = *s;
	}
	free(m->slots);
	m->slots = ns;
	m->cap = ncap;
	m->used = m->count;
	return 0;
}

void *
strmap_get(const struct strmap *m, const char *key)
{
	struct strmap_slot *s = strmap_find(m, key, strmap_hash(key));

	return s != NULL ? s->value : NULL;
}

int
strmap_put(struct strmap *m, const char *key, void *value, void **old)
{
	uint64_t h = strmap_hash(key);
	struct strmap_slot *s = strmap_find(m, key, h);
	size_t i;
	char *k;

	if (s != NULL) {
		if (old != NULL)
			*old = s->value;
		s->value = value;
		return 0;
	}
	if ((m->used + 1) * 4 >= m->cap * 3) {
		size_t ncap = m->count * 2 + 2 > m->cap ? m->cap * 2 : m->cap;
		if (strmap_grow(m, ncap) != 0)
			return -ENOMEM;
	}
	k = strdup(key);
	if (k == NULL)
		return -ENOMEM;
	i = (size_t)h & (m->cap - 1);
	while (m->slots[i].key != NULL && m->slots[i].key != STRMAP_TOMB)
		i = (i + 1) & (m->cap - 1);
	if (m->slots[i].key == NULL)
		m->used++;
	m->slots[i].key = k;
	m->slots[i].value = value;
	m->slots[i].hash = h;
	m->count++;
	if (old != NULL)
		*old = NULL;
	return 0;
}

void *
strmap_del(struct strmap *m, const char *key)
{
	struct strmap_slot *s = strmap_find(m, key, strmap_hash(key));
	void *v;

	if (s == NULL)
		return NULL;
	v = s->value;
	free(s->key);
	s->key = STRMAP_TOMB;
	s->value = NULL;
	m->count--;
	return v;
}

size_t
strmap_count(const struct strmap *m)
{
	return m->count;
}

int
strmap_foreach(const struct strmap *m, int (*fn)(const char *, void *, void *), void *arg)
{
	size_t i;
	int rc;

	for (i = 0; i < m->cap; i++) {
		struct strmap_slot *s = &m->slots[i];
		if (s->key == NULL || s->key == STRMAP_TOMB)
			continue;
		rc = fn(s->key, s->value, arg);
		if (rc != 0)
			return rc;
	}
	return 0;
}
