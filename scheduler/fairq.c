/* fairq.c — the ready queue kept across dispatch passes: per-tenant heaps and age lists,
 * and a pass over them (scheduler/fair.h). */
#include "scheduler/fair.h"
#include "scheduler/fair_impl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lib/array.h"

void
fair_entry_init(struct fair_entry *e)
{
	memset(e, 0, sizeof *e);
	e->pos = FAIR_OUT;
}

size_t
fair_queued(const struct fair *f)
{
	return f->queued;
}

/* --- inside a tenant: a heap of entries, and a list by age --- */

/* Slot a goes before slot b inside their tenant (fair_item_before; seq breaks every tie). */
static inline int
fairq_slot_before(const struct fair_slot *a, const struct fair_slot *b)
{
	return fair_item_before(&a->key, &b->key);
}

/* Entry a is older than entry b (the starvation order). */
static int
fairq_entry_older(const struct fair_entry *a, const struct fair_entry *b)
{
	if (a->item.ready_since_ms != b->item.ready_since_ms)
		return a->item.ready_since_ms < b->item.ready_since_ms;
	return a->item.seq < b->item.seq;
}

static inline void
fairq_heap_set(struct fair_tenant *t, size_t i, const struct fair_slot *s)
{
	t->q[i] = *s;
	s->e->pos = i;
}

static void
fairq_heap_up(struct fair_tenant *t, size_t i)
{
	struct fair_slot s = t->q[i];

	while (i > 0 && fairq_slot_before(&s, &t->q[(i - 1) / 2])) {
		fairq_heap_set(t, i, &t->q[(i - 1) / 2]);
		i = (i - 1) / 2;
	}
	fairq_heap_set(t, i, &s);
}

static void
fairq_heap_down(struct fair_tenant *t, size_t i)
{
	struct fair_slot s = t->q[i];

	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = l;
		if (l >= t->qn)
			break;
		if (r < t->qn && fairq_slot_before(&t->q[r], &t->q[l]))
			m = r;
		if (!fairq_slot_before(&t->q[m], &s))
			break;
		fairq_heap_set(t, i, &t->q[m]);
		i = m;
	}
	fairq_heap_set(t, i, &s);
}

/* Age list: inserted from the newest end (entries mostly come newest). */
static void
fairq_age_insert(struct fair_tenant *t, struct fair_entry *e)
{
	struct fair_entry *at = t->newest;

	while (at != NULL && fairq_entry_older(e, at))
		at = at->older;
	/* e goes right after `at` (or first when at is NULL). */
	e->older = at;
	e->newer = at != NULL ? at->newer : t->oldest;
	if (e->newer != NULL)
		e->newer->older = e;
	else
		t->newest = e;
	if (at != NULL)
		at->newer = e;
	else
		t->oldest = e;
}

static void
fairq_age_remove(struct fair_tenant *t, struct fair_entry *e)
{
	if (e->older != NULL)
		e->older->newer = e->newer;
	else
		t->oldest = e->newer;
	if (e->newer != NULL)
		e->newer->older = e->older;
	else
		t->newest = e->older;
	e->older = e->newer = NULL;
}

/* --- the pass's heaps of tenants --- */

/* Tenant a before tenant b in the VTC heap: the least simulated counter, then the older
 * (smaller seq) best entry. */
static int
fairq_vtc_before(const struct fair *f, size_t a, size_t b)
{
	const struct fair_tenant *ta = &f->t[a], *tb = &f->t[b];

	if (ta->vc != tb->vc)
		return ta->vc < tb->vc;
	return ta->q[0].key.seq < tb->q[0].key.seq;
}

/* Tenant a before tenant b in the starvation heap: the older oldest entry. */
static int
fairq_age_before(const struct fair *f, size_t a, size_t b)
{
	return fairq_entry_older(f->t[a].oldest, f->t[b].oldest);
}

/* One of the two tenant heaps (which: 0 VTC, 1 starvation). */
struct fairq_theap {
	size_t **h, *n, *cap;
	int (*before)(const struct fair *, size_t, size_t);
	int which;
};

static struct fairq_theap
fairq_theap(struct fair *f, int which)
{
	struct fairq_theap H;

	H.which = which;
	if (which == 0) {
		H.h = &f->th;
		H.n = &f->nth;
		H.cap = &f->thcap;
		H.before = fairq_vtc_before;
	} else {
		H.h = &f->ah;
		H.n = &f->nah;
		H.cap = &f->ahcap;
		H.before = fairq_age_before;
	}
	return H;
}

static size_t *
fairq_tpos(struct fair *f, const struct fairq_theap *H, size_t j)
{
	return H->which == 0 ? &f->t[j].tpos : &f->t[j].apos;
}

static void
fairq_theap_set(struct fair *f, const struct fairq_theap *H, size_t i, size_t j)
{
	(*H->h)[i] = j;
	*fairq_tpos(f, H, j) = i;
}

/* Restores the heap around position i (its key went up or down). */
static void
fairq_theap_fix(struct fair *f, const struct fairq_theap *H, size_t i)
{
	size_t *h = *H->h, n = *H->n, j = h[i];

	while (i > 0 && H->before(f, j, h[(i - 1) / 2])) {
		fairq_theap_set(f, H, i, h[(i - 1) / 2]);
		i = (i - 1) / 2;
	}
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = l;
		if (l >= n)
			break;
		if (r < n && H->before(f, h[r], h[l]))
			m = r;
		if (!H->before(f, h[m], j))
			break;
		fairq_theap_set(f, H, i, h[m]);
		i = m;
	}
	fairq_theap_set(f, H, i, j);
}

static int
fairq_theap_push(struct fair *f, const struct fairq_theap *H, size_t j)
{
	if (ARRAY_GROW(*H->h, *H->cap, *H->n + 1) != 0)
		return -ENOMEM;
	fairq_theap_set(f, H, (*H->n)++, j);
	fairq_theap_fix(f, H, *H->n - 1);
	return 0;
}

static void
fairq_theap_remove(struct fair *f, const struct fairq_theap *H, size_t j)
{
	size_t i = *fairq_tpos(f, H, j), last;

	*fairq_tpos(f, H, j) = SIZE_MAX;
	last = --(*H->n);
	if (i == last)
		return;
	fairq_theap_set(f, H, i, (*H->h)[last]);
	fairq_theap_fix(f, H, i);
}

/* During a pass: puts tenant j where its queue says (in or out of each heap, at the right
 * place).  Without memory for a heap slot the tenant sits this pass out (its entries stay
 * queued for the next). */
static void
fairq_pass_place(struct fair *f, size_t j)
{
	struct fair_tenant *t = &f->t[j];
	struct fairq_theap V = fairq_theap(f, 0), A = fairq_theap(f, 1);
	int starved;

	if (!f->in_pass)
		return;
	if (!t->held_known && t->qn > 0) {
		/* Its first entry of the pass came during the pass: ask now. */
		t->held = f->held_fn != NULL && f->held_fn(f->held_arg, t->name);
		t->held_known = true;
	}
	if (t->held || t->qn == 0) {
		if (t->tpos != SIZE_MAX)
			fairq_theap_remove(f, &V, j);
		if (t->apos != SIZE_MAX)
			fairq_theap_remove(f, &A, j);
		return;
	}
	if (t->tpos == SIZE_MAX)
		(void)fairq_theap_push(f, &V, j);
	else
		fairq_theap_fix(f, &V, t->tpos);
	starved = f->pass_bound_ms > 0 &&
	    f->pass_now_ms - t->oldest->item.ready_since_ms >= f->pass_bound_ms;
	if (!starved) {
		if (t->apos != SIZE_MAX)
			fairq_theap_remove(f, &A, j);
	} else if (t->apos == SIZE_MAX) {
		(void)fairq_theap_push(f, &A, j);
	} else {
		fairq_theap_fix(f, &A, t->apos);
	}
}

/* --- queueing --- */

int
fair_enqueue(struct fair *f, struct fair_entry *e)
{
	struct fair_tenant *t;

	if (e->pos != FAIR_OUT)
		return -EALREADY;
	/* The entry remembers its tenant's index: one compare instead of a lookup. */
	if (e->tix < f->n && (f->t[e->tix].name == e->item.tenant ||
	    strcmp(f->t[e->tix].name, e->item.tenant) == 0)) {
		t = &f->t[e->tix];
	} else {
		t = fair_tenant_get(f, e->item.tenant);
		if (t == NULL)
			return -ENOMEM;
		e->tix = (size_t)(t - f->t);
	}
	if (ARRAY_GROW(t->q, t->qcap, t->qn + 1) != 0)
		return -ENOMEM;
	t->q[t->qn].key = e->item;
	t->q[t->qn++].e = e;
	fairq_heap_up(t, t->qn - 1);
	fairq_age_insert(t, e);
	f->queued++;
	fairq_pass_place(f, e->tix);
	return 0;
}

void
fair_dequeue(struct fair *f, struct fair_entry *e)
{
	struct fair_tenant *t;
	size_t i;

	if (e->pos == FAIR_OUT)
		return;
	t = &f->t[e->tix];
	i = e->pos;
	e->pos = FAIR_OUT;
	if (--t->qn > i) {
		struct fair_entry *moved = t->q[t->qn].e;
		fairq_heap_set(t, i, &t->q[t->qn]);
		fairq_heap_up(t, i);
		fairq_heap_down(t, moved->pos);
	}
	fairq_age_remove(t, e);
	f->queued--;
	fairq_pass_place(f, e->tix);
}

void
fairq_moved_tenant(struct fair *f, size_t to)
{
	struct fair_tenant *t = &f->t[to];
	size_t i;

	for (i = 0; i < t->qn; i++)
		t->q[i].e->tix = to;
	if (t->tpos != SIZE_MAX)
		f->th[t->tpos] = to;
	if (t->apos != SIZE_MAX)
		f->ah[t->apos] = to;
}

void
fairq_fini(struct fair *f)
{
	free(f->th);
	free(f->ah);
	f->th = f->ah = NULL;
	f->nth = f->nah = f->thcap = f->ahcap = 0;
}

/* --- a pass --- */

int
fair_pass_start(struct fair *f, int64_t now_ms, int64_t starvation_bound_ms,
    int (*held)(void *arg, const char *tenant), void *arg)
{
	double minc = 0;
	int have_min = 0;
	size_t j;

	if (f->in_pass)
		fair_pass_end(f);
	if (ARRAY_GROW(f->th, f->thcap, f->n) != 0 || ARRAY_GROW(f->ah, f->ahcap, f->n) != 0)
		return -ENOMEM;
	f->pass_now_ms = now_ms;
	f->pass_bound_ms = starvation_bound_ms;
	f->held_fn = held;
	f->held_arg = arg;
	/* Backlogged: has entries and is not held back.  Lift the newly backlogged tenants to
	 * the least counter among the continuing ones (no banked idle time).  Only tenants with
	 * entries are asked whether they are held (one that gets its first during the pass is
	 * asked then: fairq_pass_place). */
	for (j = 0; j < f->n; j++) {
		struct fair_tenant *t = &f->t[j];
		t->held_known = t->qn > 0;
		t->held = t->held_known && held != NULL && held(arg, t->name);
		if (t->qn > 0 && !t->held && t->backlogged && (!have_min || t->counter < minc)) {
			minc = t->counter;
			have_min = 1;
		}
	}
	f->in_pass = true;
	for (j = 0; j < f->n; j++) {
		struct fair_tenant *t = &f->t[j];
		int now_b = t->qn > 0 && !t->held;
		if (now_b && !t->backlogged && have_min && t->counter < minc)
			t->counter = minc;
		t->backlogged = now_b;
		t->vc = t->counter;
		t->tpos = t->apos = SIZE_MAX;
		fairq_pass_place(f, j);
	}
	return 0;
}

struct fair_entry *
fair_pass_next(struct fair *f)
{
	struct fair_entry *e;

	if (!f->in_pass)
		return NULL;
	if (f->nah > 0)
		e = f->t[f->ah[0]].oldest;           /* starved: the oldest first */
	else if (f->nth > 0)
		e = f->t[f->th[0]].q[0].e;           /* VTC: the least counter's best */
	else
		return NULL;
	fair_dequeue(f, e);
	return e;
}

void
fair_pass_charge(struct fair *f, const struct fair_entry *e, uint64_t cost)
{
	struct fair_tenant *t;

	if (e->tix >= f->n)
		return;
	t = &f->t[e->tix];
	t->vc += (double)(cost ? cost : 1) / t->weight;
	if (f->in_pass && t->tpos != SIZE_MAX) {
		struct fairq_theap V = fairq_theap(f, 0);
		fairq_theap_fix(f, &V, t->tpos);
	}
}

void
fair_pass_end(struct fair *f)
{
	size_t j;

	/* Only the tenants in the pass's heaps have a position there. */
	for (j = 0; j < f->nth; j++)
		f->t[f->th[j]].tpos = SIZE_MAX;
	for (j = 0; j < f->nah; j++)
		f->t[f->ah[j]].apos = SIZE_MAX;
	f->nth = f->nah = 0;
	f->in_pass = false;
	f->held_fn = NULL;
	f->held_arg = NULL;
}
