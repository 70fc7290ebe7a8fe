/*
 * fair.h — weighted fair sharing of decode steps across tenants (virtual token counter, VTC:
 * Sheng et al., "Fairness in Serving Large Language Models", OSDI'24), with priorities and
 * deadlines inside a tenant and a starvation bound.
 *
 * Each tenant has a virtual counter: tokens served divided by its weight.  The next step goes
 * to the backlogged tenant with the smallest counter, so over any window where tenants stay
 * backlogged their served tokens approach the ratio of their weights.  A tenant that becomes
 * backlogged again is lifted to the smallest counter of the tenants already backlogged, so idle
 * time cannot be banked (work-conserving without bursts after idleness).  Inside a tenant:
 * higher priority first, then earliest deadline, then least estimated remaining work (SJF),
 * then oldest.  Any item that has waited longer than the starvation bound goes first.
 *
 * Pure and deterministic: no I/O, no clock (time is passed in).  One fair object per daemon,
 * used from the loop thread.
 */
#ifndef CERTA_SCHEDULER_FAIR_H
#define CERTA_SCHEDULER_FAIR_H

#include <stddef.h>
#include <stdint.h>

struct fair;

/* A unit of work ready to be dispatched (one program's next gang step). */
struct fair_item {
	const char *tenant;
	int priority;             /* larger = more urgent */
	int64_t deadline_ms;      /* 0: none */
	int64_t ready_since_ms;   /* when it became ready (for the starvation bound) */
	uint64_t est_remaining;   /* estimated tokens still to run (SJF inside a tenant) */
	uint64_t cost;            /* tokens this step will consume (what a pass charges for it) */
	uint64_t seq;             /* tie breaker: submission order */
};

struct fair *fair_new(void);
void fair_free(struct fair *f);

/* Sets a tenant's weight (>= 1; default 1). Returns 0 or -ENOMEM / -EINVAL. */
int fair_set_weight(struct fair *f, const char *tenant, uint32_t weight);
/* Charges tokens actually served to a tenant's counter. */
void fair_charge(struct fair *f, const char *tenant, uint64_t tokens);
/* The tenant's virtual counter (tokens / weight). */
double fair_counter(const struct fair *f, const char *tenant);
/* Tokens served in total (for share reports). */
uint64_t fair_served(const struct fair *f, const char *tenant);

/* Half-life of the recent-share window. */
#define FAIR_WINDOW_HALF_LIFE_MS 30000

/* Records tokens served at now_ms in the tenant's recent (exponentially decayed) counter.
 * fair_charge() does not: call both (the core does), or only this for reporting. */
void fair_note_served(struct fair *f, const char *tenant, uint64_t tokens, int64_t now_ms);
/* The tenant's share of all tokens served recently (decayed with FAIR_WINDOW_HALF_LIFE_MS),
 * in [0,1]; 0 when nothing was served. */
double fair_recent_share(const struct fair *f, const char *tenant, int64_t now_ms);
/* Forgets a tenant: its weight, counter and share.  While it has queued entries its slot stays
 * (weight 1, counter 0: lifted when next backlogged) and the entries stay queued. */
void fair_remove(struct fair *f, const char *tenant);

/*
 * The ready queue kept across dispatch passes (scheduler/fairq.c): per tenant a heap of its
 * queued entries in the order inside a tenant and a list of them by age, updated as work
 * becomes ready (fair_enqueue) and is taken (fair_pass_next), so a pass costs
 * O(tenants + taken * log n), not O(ready).  Entries are embedded in the caller's objects;
 * item.tenant must stay valid while the entry is queued.  The key (item) is read when the
 * entry is queued: to change it, dequeue, change, enqueue.
 *
 * A pass simulates VTC over what it hands out.  fair_pass_start marks the backlogged tenants
 * (those with entries; a tenant that `held` says is held back, e.g. at its rate limit, takes
 * no part in the pass and counts as not backlogged) and lifts the counter of each newly
 * backlogged tenant to the least counter of those already backlogged.  fair_pass_next
 * dequeues and returns the next entry: starved entries first (waited >= the bound since
 * ready_since_ms), oldest first (ties: seq), then the tenant with the least simulated counter
 * gives its best entry (ties: the older seq).  The caller charges what it took with fair_pass_charge (the
 * simulated counter of the pass; real service is charged with fair_charge).  Entries
 * queued or dequeued during a pass take part in it.  fair_pass_end closes the pass.
 */
struct fair_entry {
	struct fair_item item;
	struct fair_entry *older, *newer;  /* the tenant's entries by age */
	size_t pos;                        /* in the tenant's heap; FAIR_OUT: not queued */
	size_t tix;                        /* the tenant's index (internal) */
};
#define FAIR_OUT SIZE_MAX

/* An entry that is not queued (call once before its first use). */
void fair_entry_init(struct fair_entry *e);
static inline int
fair_entry_queued(const struct fair_entry *e)
{
	return e->pos != FAIR_OUT;
}
/* Queues an entry with the key in e->item (the tenant is added when new).  0, -EALREADY
 * (already queued) or -ENOMEM. */
int fair_enqueue(struct fair *f, struct fair_entry *e);
/* Takes an entry out of the queue (nothing when it is not queued). */
void fair_dequeue(struct fair *f, struct fair_entry *e);
/* Entries queued. */
size_t fair_queued(const struct fair *f);

/* Starts a pass at now_ms; held(arg, tenant) may be NULL.  0 or -ENOMEM. */
int fair_pass_start(struct fair *f, int64_t now_ms, int64_t starvation_bound_ms,
    int (*held)(void *arg, const char *tenant), void *arg);
/* The next entry of the pass, dequeued; NULL when no tenant taking part has one. */
struct fair_entry *fair_pass_next(struct fair *f);
/* Adds cost (at least 1) tokens to the pass's simulated counter of e's tenant. */
void fair_pass_charge(struct fair *f, const struct fair_entry *e, uint64_t cost);
void fair_pass_end(struct fair *f);

#endif
