/* fair.c — virtual token counters across tenants, priorities/EDF/SJF inside a tenant. */
#include "scheduler/fair.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "lib/array.h"

struct fair_tenant {
	char *name;
	uint32_t weight;
	double counter;
	uint64_t served;
	bool backlogged;
	double recent;            /* decayed tokens served */
	int64_t recent_ms;        /* time of the last decay */
};

struct fair {
	struct fair_tenant *t;
	size_t n, cap;
};

struct fair *
fair_new(void)
{
	return calloc(1, sizeof(struct fair));
}

void
fair_free(struct fair *f)
{
	size_t i;

	if (f == NULL)
		return;
	for (i = 0; i < f->n; i++)
		free(f->t[i].name);
	free(f->t);
	free(f);
}

static struct fair_tenant *
fair_find(const struct fair *f, const char *name)
{
	size_t i;

	for (i = 0; i < f->n; i++)
		if (strcmp(f->t[i].name, name) == 0)
			return &f->t[i];
	return NULL;
}

/* Finds or adds a tenant (weight 1, counter 0). */
static struct fair_tenant *
fair_get(struct fair *f, const char *name)
{
	struct fair_tenant *t = fair_find(f, name);

	if (t != NULL)
		return t;
	if (ARRAY_GROW(f->t, f->cap, f->n + 1) != 0)
		return NULL;
	t = &f->t[f->n];
	memset(t, 0, sizeof *t);
	t->name = strdup(name);
	if (t->name == NULL)
		return NULL;
	t->weight = 1;
	f->n++;
	return t;
}

int
fair_set_weight(struct fair *f, const char *tenant, uint32_t weight)
{
	struct fair_tenant *t;

	if (weight < 1)
		return -EINVAL;
	t = fair_get(f, tenant);
	if (t == NULL)
		return -ENOMEM;
	/* Keep the virtual time continuous: served/weight under the new weight. */
	t->weight = weight;
	return 0;
}

void
fair_charge(struct fair *f, const char *tenant, uint64_t tokens)
{
	struct fair_tenant *t = fair_get(f, tenant);

	if (t == NULL)
		return;
	t->counter += (double)tokens / (double)t->weight;
	t->served += tokens;
}

double
fair_counter(const struct fair *f, const char *tenant)
{
	const struct fair_tenant *t = fair_find(f, tenant);

	return t != NULL ? t->counter : 0;
}

uint64_t
fair_served(const struct fair *f, const char *tenant)
{
	const struct fair_tenant *t = fair_find(f, tenant);

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
	struct fair_tenant *t = fair_get(f, tenant);

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
	struct fair_tenant *t = fair_find(f, tenant);

	if (t == NULL)
		return;
	free(t->name);
	*t = f->t[--f->n];
}

/* Inside a tenant: priority, deadline (EDF), remaining work (SJF), age, submission. */
static bool
fair_item_before(const struct fair_item *a, const struct fair_item *b)
{
	if (a->priority != b->priority)
		return a->priority > b->priority;
	if ((a->deadline_ms != 0) != (b->deadline_ms != 0))
		return a->deadline_ms != 0;
	if (a->deadline_ms != b->deadline_ms)
		return a->deadline_ms < b->deadline_ms;
	if (a->est_remaining != b->est_remaining)
		return a->est_remaining < b->est_remaining;
	if (a->ready_since_ms != b->ready_since_ms)
		return a->ready_since_ms < b->ready_since_ms;
	return a->seq < b->seq;
}

int
fair_order(struct fair *f, const struct fair_item *items, size_t n, int64_t now_ms,
    int64_t starvation_bound_ms, size_t *order)
{
	struct fair_tenant **ten = NULL;
	double *vc = NULL, minc = 0;
	bool *taken = NULL, have_min = false;
	size_t i, j, k = 0;
	int rc = -ENOMEM;

	if (n == 0)
		return 0;
	ten = calloc(n, sizeof *ten);
	vc = calloc(f->n + n, sizeof *vc);
	taken = calloc(n, sizeof *taken);
	if (ten == NULL || vc == NULL || taken == NULL)
		goto out;
	for (i = 0; i < n; i++) {
		ten[i] = fair_get(f, items[i].tenant);
		if (ten[i] == NULL)
			goto out;
	}
	/* fair_get may have moved the array: resolve pointers again. */
	for (i = 0; i < n; i++)
		ten[i] = fair_find(f, items[i].tenant);
	/* Lift newly backlogged tenants to the least counter among the continuing ones. */
	for (j = 0; j < f->n; j++) {
		bool now_backlogged = false;
		for (i = 0; i < n && !now_backlogged; i++)
			now_backlogged = ten[i] == &f->t[j];
		if (now_backlogged && f->t[j].backlogged && (!have_min || f->t[j].counter < minc)) {
			minc = f->t[j].counter;
			have_min = true;
		}
	}
	for (j = 0; j < f->n; j++) {
		bool now_backlogged = false;
		for (i = 0; i < n && !now_backlogged; i++)
			now_backlogged = ten[i] == &f->t[j];
		if (now_backlogged && !f->t[j].backlogged && have_min && f->t[j].counter < minc)
			f->t[j].counter = minc;
		f->t[j].backlogged = now_backlogged;
		vc[j] = f->t[j].counter;
	}
	/* Starved items first, oldest first. */
	if (starvation_bound_ms > 0) {
		for (;;) {
			size_t best = n;
			for (i = 0; i < n; i++) {
				if (taken[i] || now_ms - items[i].ready_since_ms < starvation_bound_ms)
					continue;
				if (best == n || items[i].ready_since_ms < items[best].ready_since_ms)
					best = i;
			}
			if (best == n)
				break;
			taken[best] = true;
			order[k++] = best;
			vc[ten[best] - f->t] += (double)items[best].cost / ten[best]->weight;
		}
	}
	/* Then VTC: the tenant with the least (simulated) counter gets its best item. */
	while (k < n) {
		size_t best = n;
		for (i = 0; i < n; i++) {
			size_t ti;
			if (taken[i])
				continue;
			if (best == n) {
				best = i;
				continue;
			}
			ti = (size_t)(ten[i] - f->t);
			if (vc[ti] < vc[ten[best] - f->t] ||
			    (ten[i] == ten[best] && fair_item_before(&items[i], &items[best])) ||
			    (vc[ti] == vc[ten[best] - f->t] && ten[i] != ten[best] &&
			    items[i].seq < items[best].seq))
				best = i;
		}
		taken[best] = true;
		order[k++] = best;
		vc[ten[best] - f->t] += (double)(items[best].cost ? items[best].cost : 1) /
		    ten[best]->weight;
	}
	rc = 0;
out:
	free(ten);
	free(vc);
	free(taken);
	return rc;
}
