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
	uint64_t cost;            /* tokens this step will consume (charged when ordering) */
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
/* Forgets a tenant. */
void fair_remove(struct fair *f, const char *tenant);

/*
 * Orders n ready items for dispatch: writes a permutation of 0..n-1 into order.  Tenants that
 * have items are the backlogged set (counters of newly backlogged tenants are lifted first).
 * Ordering simulates VTC over the round: after choosing an item its cost is added (temporarily)
 * to its tenant's counter.  Returns 0 or -ENOMEM.
 */
int fair_order(struct fair *f, const struct fair_item *items, size_t n, int64_t now_ms,
    int64_t starvation_bound_ms, size_t *order);

/*
 * The same order, one item at a time, for a pass that stops early (no free step slots):
 * building costs O(n) (heaps per tenant, a heap of tenants), each fair_iter_next
 * O(log n).  Inside a tenant items come in the order above (input order among equal
 * items); across tenants the least simulated counter wins and, at equal counters, the
 * tenant whose next item is the older (seq).  fair_iter_start updates the tenants'
 * backlogged state and lifted counters as fair_order does; items must stay valid until
 * fair_iter_free.  fair_iter_next stores the next item's index and returns 1, or returns 0
 * when all were given.  fair_iter_start returns 0 or -ENOMEM.
 */
struct fair_iter;
int fair_iter_start(struct fair *f, const struct fair_item *items, size_t n, int64_t now_ms,
    int64_t starvation_bound_ms, struct fair_iter **out);
int fair_iter_next(struct fair_iter *it, size_t *idx);
void fair_iter_free(struct fair_iter *it);

/* The former O(n^2) selection (kept as the reference the tests compare with).  It agrees
 * with fair_order except when tenants tie on their counters: it then can pick a tenant's
 * item out of the tenant's own order (it compares each item's seq across tenants, so the
 * result depends on the input order). */
int fair_order_ref(struct fair *f, const struct fair_item *items, size_t n, int64_t now_ms,
    int64_t starvation_bound_ms, size_t *order);

#endif
