/* fair.c — virtual token counters across tenants, priorities/EDF/SJF inside a tenant. */
#include "scheduler/fair.h"
#include "scheduler/fair_impl.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "lib/array.h"
#include "lib/strmap.h"

struct fair *
fair_new(void)
{
	struct fair *f = calloc(1, sizeof(struct fair));

	if (f == NULL)
		return NULL;
	f->ix = strmap_new();
	if (f->ix == NULL) {
		free(f);
		return NULL;
	}
	return f;
}

void
fair_free(struct fair *f)
{
	size_t i;

	if (f == NULL)
		return;
	fairq_fini(f);
	for (i = 0; i < f->n; i++) {
		free(f->t[i].name);
		free(f->t[i].q);
	}
	free(f->t);
	strmap_free(f->ix, NULL);
	free(f);
}

struct fair_tenant *
fair_tenant_find(const struct fair *f, const char *name)
{
	uintptr_t v = (uintptr_t)strmap_get(f->ix, name);

	return v != 0 ? &f->t[v - 1] : NULL;
}

struct fair_tenant *
fair_tenant_get(struct fair *f, const char *name)
{
	struct fair_tenant *t = fair_tenant_find(f, name);

	if (t != NULL)
		return t;
	if (ARRAY_GROW(f->t, f->cap, f->n + 1) != 0)
		return NULL;
	t = &f->t[f->n];
	memset(t, 0, sizeof *t);
	t->name = strdup(name);
	if (t->name == NULL)
		return NULL;
	if (strmap_put(f->ix, name, (void *)(uintptr_t)(f->n + 1), NULL) != 0) {
		free(t->name);
		return NULL;
	}
	t->weight = 1;
	t->tpos = t->apos = SIZE_MAX;
	f->n++;
	return t;
}

int
fair_set_weight(struct fair *f, const char *tenant, uint32_t weight)
{
	struct fair_tenant *t;

	if (weight < 1)
		return -EINVAL;
	t = fair_tenant_get(f, tenant);
	if (t == NULL)
		return -ENOMEM;
	/* Keep the virtual time continuous: served/weight under the new weight. */
	t->weight = weight;
	return 0;
}

void
fair_charge(struct fair *f, const char *tenant, uint64_t tokens)
{
	struct fair_tenant *t = fair_tenant_get(f, tenant);

	if (t == NULL)
		return;
	t->counter += (double)tokens / (double)t->weight;
	t->served += tokens;
}

double
fair_counter(const struct fair *f, const char *tenant)
{
	const struct fair_tenant *t = fair_tenant_find(f, tenant);

	return t != NULL ? t->counter : 0;
}

uint64_t
fair_served(const struct fair *f, const char *tenant)
{
	const struct fair_tenant *t = fair_tenant_find(f, tenant);

	return t != NULL ? t->served : 0;
}

/* The decayed counter as of now_ms. */
static double
fair_decayed(const struct fair_tenant *t, int64_t now_ms)
{
	if (now_ms <= t->recent_ms)
		return t->recent;
	return t->recent * pow(0.5, (double)(now_ms - t->recent_ms) / FAIR_WINDOW_HALF_LIFE_MS);
}

void
fair_note_served(struct fair *f, const char *tenant, uint64_t tokens, int64_t now_ms)
{
	struct fair_tenant *t = fair_tenant_get(f, tenant);

	if (t == NULL)
		return;
	t->recent = fair_decayed(t, now_ms) + (double)tokens;
	if (now_ms > t->recent_ms)
		t->recent_ms = now_ms;
}

double
fair_recent_share(const struct fair *f, const char *tenant, int64_t now_ms)
{
	double mine = 0, all = 0, v;
	size_t i;

	for (i = 0; i < f->n; i++) {
		v = fair_decayed(&f->t[i], now_ms);
		all += v;
		if (strcmp(f->t[i].name, tenant) == 0)
			mine = v;
	}
	return all > 0 ? mine / all : 0;
}

void
fair_remove(struct fair *f, const char *tenant)
{
	struct fair_tenant *t = fair_tenant_find(f, tenant);
	size_t j;

	if (t == NULL)
		return;
	j = (size_t)(t - f->t);
	if (t->qn > 0) {
		/* Its programs still wait in the queue: keep the slot, forget its share (a tenant
		 * created again under the name starts afresh; lifted when it is next backlogged). */
		t->weight = 1;
		t->counter = 0;
		t->served = 0;
		t->recent = 0;
		t->recent_ms = 0;
		t->backlogged = false;
		return;
	}
	strmap_del(f->ix, t->name);
	free(t->name);
	free(t->q);
	*t = f->t[--f->n];
	if (j < f->n) {
		/* Replacing a key's value needs no memory: cannot fail. */
		(void)strmap_put(f->ix, t->name, (void *)(uintptr_t)(j + 1), NULL);
		fairq_moved_tenant(f, j);
	}
}
