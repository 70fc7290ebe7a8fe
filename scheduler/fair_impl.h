/*
 * fair_impl.h — the tenant table shared by scheduler/fair.c (counters, weights, the ordering
 * of one batch) and scheduler/fairq.c (the ready queue kept across dispatch passes).  Not for
 * other modules.
 */
#ifndef CERTA_SCHEDULER_FAIR_IMPL_H
#define CERTA_SCHEDULER_FAIR_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "scheduler/fair.h"

/* A heap slot: a copy of an entry's key, so that sifting compares within the heap's own
 * array (the entries live in the caller's objects, far apart).  One cache line. */
struct fair_slot {
	struct fair_item key;
	struct fair_entry *e;
};

struct fair_tenant {
	char *name;
	uint32_t weight;
	double counter;
	uint64_t served;
	bool backlogged;
	double recent;            /* decayed tokens served */
	int64_t recent_ms;        /* time of the last decay */
	/* Its queued entries (fairq.c): a binary heap in the order inside a tenant, and the
	 * same entries by age (ready_since_ms, then seq), oldest first. */
	struct fair_slot *q;
	size_t qn, qcap;
	struct fair_entry *oldest, *newest;
	/* During a pass: the simulated counter and the positions in the pass's heaps. */
	double vc;
	size_t tpos, apos;        /* SIZE_MAX: not in that heap */
	bool held;
	bool held_known;          /* held was asked this pass (only of tenants with entries) */
};

struct fair {
	struct fair_tenant *t;
	size_t n, cap;
	struct strmap *ix;        /* name -> index in t, plus one (lib/strmap.h) */
	size_t queued;            /* entries in all tenants' queues */
	/* The pass (fairq.c): tenants with entries as a heap by (vc, best entry's seq), and
	 * tenants whose oldest entry is starved as a heap by that entry's age. */
	bool in_pass;
	int64_t pass_now_ms, pass_bound_ms;
	int (*held_fn)(void *arg, const char *tenant);   /* the pass's */
	void *held_arg;
	size_t *th, nth, thcap;
	size_t *ah, nah, ahcap;
};

/* The tenant of that name, or NULL. */
struct fair_tenant *fair_tenant_find(const struct fair *f, const char *name);
/* Finds or adds a tenant (weight 1, counter 0); NULL without memory.  May move f->t. */
struct fair_tenant *fair_tenant_get(struct fair *f, const char *name);
/* Inside a tenant: priority, deadline (EDF), remaining work (SJF), age, submission. */
static inline bool
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
/* Tenant index j moved to index to (fair_remove): its entries follow. */
void fairq_moved_tenant(struct fair *f, size_t to);
/* Frees the queue's own arrays (fair_free calls it). */
void fairq_fini(struct fair *f);

#endif
