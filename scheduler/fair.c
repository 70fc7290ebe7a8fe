/* fair.c — virtual token counters across tenants, priorities/EDF/SJF inside a tenant. */
#include "scheduler/fair.h"
#include "scheduler/fair_impl.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "lib/array.h"
#include "lib/hash.h"

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
	fairq_fini(f);
	for (i = 0; i < f->n; i++) {
		free(f->t[i].name);
		free(f->t[i].q);
	}
	free(f->t);
	free(f);
}

struct fair_tenant *
fair_tenant_find(const struct fair *f, const char *name)
{
	size_t i;

	for (i = 0; i < f->n; i++)
		if (strcmp(f->t[i].name, name) == 0)
			return &f->t[i];
	return NULL;
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
	free(t->name);
	free(t->q);
	*t = f->t[--f->n];
	if (j < f->n)
		fairq_moved_tenant(f, j);
}

/* --- the dispatch order: per-tenant heaps of items, a heap of tenants --- */

struct fair_iter {
	struct fair *f;
	const struct fair_item *items;
	size_t n;
	size_t *tix;            /* item -> tenant index in f->t */
	double *vc;             /* simulated counters, by tenant index */
	size_t *starved;        /* starved items, oldest first */
	size_t nstarved, next_starved;
	bool vtc;               /* the tenant heap is built (starved items are out) */
	/* per tenant: its items as a binary heap (fair_iter_item_before) */
	size_t **heap;
	size_t *hn;
	/* tenants with items, as a binary heap keyed by (vc, best item's seq, index) */
	size_t *th;
	size_t *tpos;           /* tenant index -> position in th, or SIZE_MAX */
	size_t nth;
};

/* Inside a tenant; equal items keep their order in the input. */
static bool
fair_iter_item_before(const struct fair_iter *it, size_t a, size_t b)
{
	if (fair_item_before(&it->items[a], &it->items[b]))
		return true;
	if (fair_item_before(&it->items[b], &it->items[a]))
		return false;
	return a < b;
}

static void
fair_iter_item_down(struct fair_iter *it, size_t *h, size_t n, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i, t;
		if (l < n && fair_iter_item_before(it, h[l], h[m]))
			m = l;
		if (r < n && fair_iter_item_before(it, h[r], h[m]))
			m = r;
		if (m == i)
			return;
		t = h[i];
		h[i] = h[m];
		h[m] = t;
		i = m;
	}
}

/* Tenant a goes before tenant b: least simulated counter, then the older best item. */
static bool
fair_iter_tenant_before(const struct fair_iter *it, size_t a, size_t b)
{
	size_t ia = it->heap[a][0], ib = it->heap[b][0];

	if (it->vc[a] != it->vc[b])
		return it->vc[a] < it->vc[b];
	if (it->items[ia].seq != it->items[ib].seq)
		return it->items[ia].seq < it->items[ib].seq;
	return ia < ib;
}

static void
fair_iter_tenant_swap(struct fair_iter *it, size_t i, size_t j)
{
	size_t t = it->th[i];

	it->th[i] = it->th[j];
	it->th[j] = t;
	it->tpos[it->th[i]] = i;
	it->tpos[it->th[j]] = j;
}

static void
fair_iter_tenant_down(struct fair_iter *it, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		if (l < it->nth && fair_iter_tenant_before(it, it->th[l], it->th[m]))
			m = l;
		if (r < it->nth && fair_iter_tenant_before(it, it->th[r], it->th[m]))
			m = r;
		if (m == i)
			return;
		fair_iter_tenant_swap(it, i, m);
		i = m;
	}
}

/* Restores the tenant heap around position i (its key went up or down). */
static void
fair_iter_tenant_fix(struct fair_iter *it, size_t i)
{
	while (i > 0 && fair_iter_tenant_before(it, it->th[i], it->th[(i - 1) / 2])) {
		fair_iter_tenant_swap(it, i, (i - 1) / 2);
		i = (i - 1) / 2;
	}
	fair_iter_tenant_down(it, i);
}

/* Starved items: oldest first, then input order. */
static const struct fair_item *fair_sort_items;

static int
fair_starved_cmp(const void *a, const void *b)
{
	size_t ia = *(const size_t *)a, ib = *(const size_t *)b;
	int64_t ra = fair_sort_items[ia].ready_since_ms, rb = fair_sort_items[ib].ready_since_ms;

	if (ra != rb)
		return ra < rb ? -1 : 1;
	return ia < ib ? -1 : ia > ib;
}

void
fair_iter_free(struct fair_iter *it)
{
	size_t j;

	if (it == NULL)
		return;
	if (it->heap != NULL)
		for (j = 0; j < it->f->n; j++)
			free(it->heap[j]);
	free(it->heap);
	free(it->hn);
	free(it->th);
	free(it->tpos);
	free(it->tix);
	free(it->vc);
	free(it->starved);
	free(it);
}

/* Tenant index of every item (tenants seen for the first time are added). */
static int
fair_iter_tenants(struct fair *f, const struct fair_item *items, size_t n, size_t *tix)
{
	size_t i, cap = 16, *tab = NULL, mask;
	int rc = -ENOMEM;

	while (cap < 2 * (f->n + 64))
		cap *= 2;
	tab = malloc(cap * sizeof *tab);
	if (tab == NULL)
		return -ENOMEM;
	mask = cap - 1;
	for (i = 0; i < cap; i++)
		tab[i] = SIZE_MAX;
	for (i = 0; i < f->n; i++) {
		size_t h = (size_t)hash_fnv1a(f->t[i].name, strlen(f->t[i].name),
		    HASH_FNV1A_BASIS) & mask;
		while (tab[h] != SIZE_MAX)
			h = (h + 1) & mask;
		tab[h] = i;
	}
	for (i = 0; i < n; i++) {
		const char *name = items[i].tenant;
		size_t h;
		if (i > 0 && (items[i - 1].tenant == name ||
		    strcmp(items[i - 1].tenant, name) == 0)) {
			tix[i] = tix[i - 1];
			continue;
		}
		h = (size_t)hash_fnv1a(name, strlen(name), HASH_FNV1A_BASIS) & mask;
		while (tab[h] != SIZE_MAX && strcmp(f->t[tab[h]].name, name) != 0)
			h = (h + 1) & mask;
		if (tab[h] == SIZE_MAX) {
			if (2 * (f->n + 1) > cap) {
				/* Table full: rebuild it larger (rare: many new tenants at once). */
				free(tab);
				if (fair_tenant_get(f, name) == NULL)
					return -ENOMEM;
				return fair_iter_tenants(f, items, n, tix);
			}
			if (fair_tenant_get(f, name) == NULL)
				goto out;
			tab[h] = f->n - 1;
		}
		tix[i] = tab[h];
	}
	rc = 0;
out:
	free(tab);
	return rc;
}

int
fair_iter_start(struct fair *f, const struct fair_item *items, size_t n, int64_t now_ms,
    int64_t starvation_bound_ms, struct fair_iter **out)
{
	struct fair_iter *it = calloc(1, sizeof *it);
	double minc = 0;
	bool have_min = false, *now_backlogged = NULL;
	size_t i, j, nt;

	if (it == NULL)
		return -ENOMEM;
	it->f = f;
	it->items = items;
	it->n = n;
	it->tix = calloc(n ? n : 1, sizeof *it->tix);
	it->starved = calloc(n ? n : 1, sizeof *it->starved);
	if (it->tix == NULL || it->starved == NULL ||
	    fair_iter_tenants(f, items, n, it->tix) != 0)
		goto fail;
	nt = f->n;
	it->vc = calloc(nt ? nt : 1, sizeof *it->vc);
	it->heap = calloc(nt ? nt : 1, sizeof *it->heap);
	it->hn = calloc(nt ? nt : 1, sizeof *it->hn);
	it->th = calloc(nt ? nt : 1, sizeof *it->th);
	it->tpos = calloc(nt ? nt : 1, sizeof *it->tpos);
	now_backlogged = calloc(nt ? nt : 1, sizeof *now_backlogged);
	if (it->vc == NULL || it->heap == NULL || it->hn == NULL || it->th == NULL ||
	    it->tpos == NULL || now_backlogged == NULL)
		goto fail;
	for (i = 0; i < n; i++)
		now_backlogged[it->tix[i]] = true;
	/* Lift newly backlogged tenants to the least counter among the continuing ones. */
	for (j = 0; j < nt; j++)
		if (now_backlogged[j] && f->t[j].backlogged && (!have_min || f->t[j].counter < minc)) {
			minc = f->t[j].counter;
			have_min = true;
		}
	for (j = 0; j < nt; j++) {
		if (now_backlogged[j] && !f->t[j].backlogged && have_min && f->t[j].counter < minc)
			f->t[j].counter = minc;
		f->t[j].backlogged = now_backlogged[j];
		it->vc[j] = f->t[j].counter;
	}
	/* Starved items first, oldest first; the rest into their tenant's heap. */
	for (i = 0; i < n; i++) {
		if (starvation_bound_ms > 0 && now_ms - items[i].ready_since_ms >= starvation_bound_ms)
			it->starved[it->nstarved++] = i;
		else
			it->hn[it->tix[i]]++;
	}
	if (it->nstarved > 1) {
		fair_sort_items = items;
		qsort(it->starved, it->nstarved, sizeof *it->starved, fair_starved_cmp);
		fair_sort_items = NULL;
	}
	for (j = 0; j < nt; j++) {
		it->tpos[j] = SIZE_MAX;
		if (it->hn[j] > 0 && (it->heap[j] = malloc(it->hn[j] * sizeof **it->heap)) == NULL)
			goto fail;
		it->hn[j] = 0;
	}
	for (i = 0; i < n; i++)
		if (!(starvation_bound_ms > 0 &&
		    now_ms - items[i].ready_since_ms >= starvation_bound_ms))
			it->heap[it->tix[i]][it->hn[it->tix[i]]++] = i;
	for (j = 0; j < nt; j++) {
		size_t k;
		if (it->hn[j] == 0)
			continue;
		for (k = it->hn[j] / 2; k-- > 0;)
			fair_iter_item_down(it, it->heap[j], it->hn[j], k);
	}
	free(now_backlogged);
	now_backlogged = NULL;
	*out = it;
	return 0;
fail:
	free(now_backlogged);
	fair_iter_free(it);
	return -ENOMEM;
}

int
fair_iter_next(struct fair_iter *it, size_t *idx)
{
	size_t t, i, j;

	if (it->next_starved < it->nstarved) {
		i = it->starved[it->next_starved++];
		t = it->tix[i];
		it->vc[t] += (double)it->items[i].cost / it->f->t[t].weight;
		if (it->tpos[t] != SIZE_MAX)
			fair_iter_tenant_fix(it, it->tpos[t]);
		*idx = i;
		return 1;
	}
	if (!it->vtc) {
		/* First VTC pick: build the tenant heap now (starved picks moved the counters). */
		it->vtc = true;
		for (j = 0; j < it->f->n; j++)
			if (it->hn[j] > 0) {
				it->tpos[j] = it->nth;
				it->th[it->nth++] = j;
			}
		for (j = it->nth / 2; j-- > 0;)
			fair_iter_tenant_down(it, j);
	}
	if (it->nth == 0)
		return 0;
	/* VTC: the tenant with the least (simulated) counter gets its best item. */
	t = it->th[0];
	i = it->heap[t][0];
	it->heap[t][0] = it->heap[t][--it->hn[t]];
	fair_iter_item_down(it, it->heap[t], it->hn[t], 0);
	it->vc[t] += (double)(it->items[i].cost ? it->items[i].cost : 1) / it->f->t[t].weight;
	if (it->hn[t] == 0) {
		it->tpos[t] = SIZE_MAX;
		if (--it->nth > 0) {
			it->th[0] = it->th[it->nth];
			it->tpos[it->th[0]] = 0;
			fair_iter_tenant_fix(it, 0);
		}
	} else {
		fair_iter_tenant_fix(it, 0);
	}
	*idx = i;
	return 1;
}

int
fair_order(struct fair *f, const struct fair_item *items, size_t n, int64_t now_ms,
    int64_t starvation_bound_ms, size_t *order)
{
	struct fair_iter *it;
	size_t k = 0;
	int rc;

	if (n == 0)
		return 0;
	rc = fair_iter_start(f, items, n, now_ms, starvation_bound_ms, &it);
	if (rc != 0)
		return rc;
	while (k < n && fair_iter_next(it, &order[k]))
		k++;
	fair_iter_free(it);
	return 0;
}

int
fair_order_ref(struct fair *f, const struct fair_item *items, size_t n, int64_t now_ms,
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
		ten[i] = fair_tenant_get(f, items[i].tenant);
		if (ten[i] == NULL)
			goto out;
	}
	/* fair_get may have moved the array: resolve pointers again. */
	for (i = 0; i < n; i++)
		ten[i] = fair_tenant_find(f, items[i].tenant);
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
