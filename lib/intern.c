/* intern.c — process-wide interned strings (a locked strmap of copies). */
#include "lib/intern.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "lib/strmap.h"

static pthread_mutex_t intern_lock = PTHREAD_MUTEX_INITIALIZER;
static struct strmap *intern_map;   /* value -> its copy (the map's value) */

const char *
intern_str(const char *s)
{
	char *copy = NULL;

	pthread_mutex_lock(&intern_lock);
	if (intern_map == NULL && (intern_map = strmap_new()) == NULL)
		goto unlock;
	copy = strmap_get(intern_map, s);
	if (copy != NULL)
		goto unlock;
	copy = strdup(s);
	if (copy != NULL && strmap_put(intern_map, s, copy, NULL) != 0) {
		free(copy);
		copy = NULL;
	}
unlock:
	pthread_mutex_unlock(&intern_lock);
	return copy;
}

unsigned long
intern_count(void)
{
	unsigned long n;

	pthread_mutex_lock(&intern_lock);
	n = intern_map != NULL ? (unsigned long)strmap_count(intern_map) : 0;
	pthread_mutex_unlock(&intern_lock);
	return n;
}

void
intern_free(void)
{
	pthread_mutex_lock(&intern_lock);
	strmap_free(intern_map, free);
	intern_map = NULL;
	pthread_mutex_unlock(&intern_lock);
}
