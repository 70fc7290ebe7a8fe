/* chainlen.c — a model's median chain length over its last counted chains. */
#include "scheduler/chainlen.h"

#include <string.h>

#include "scheduler/sched.h"

/* Only endings that leave the median exact (or biased safe): chainlen.h. */
bool
chainlen_counts(int reason)
{
	/* Right-censored cuts above the median keep it exact (chainlen.h). */
	switch (reason) {
	case SCHED_REASON_NATURAL_END:
	case SCHED_REASON_UNPROMISING:
	case SCHED_REASON_BUDGET:
		return true;
	default:
		return false;
	}
}

/* 0 is no chain; longer than the ring's unit holds is clamped, still the longest. */
void
chainlen_add(struct chainlen *c, uint64_t tokens)
{
	if (tokens == 0)
		return;
	median_ring_add(&c->ring, tokens > UINT32_MAX ? UINT32_MAX : (uint32_t)tokens);
}

/* The ring's median (rounded up between the middle two, as evalsim_model_expected). */
uint64_t
chainlen_median(const struct chainlen *c)
{
	return median_ring_value(&c->ring);
}

/* min_samples 0 never learns: the prior is pinned. */
bool
chainlen_learned(const struct chainlen *c, uint32_t min_samples)
{
	return median_ring_has(&c->ring, min_samples);
}

/* The prior until learned. */
uint64_t
chainlen_tokens(const struct chainlen *c, uint32_t min_samples, uint64_t prior)
{
	return chainlen_learned(c, min_samples) ? chainlen_median(c) : prior;
}

/* Through chainlen_add: a stored 0 (never written) is not a chain. */
void
chainlen_restore(struct chainlen *c, const uint32_t *len, uint32_t n, uint64_t seen)
{
	uint32_t i;

	memset(c, 0, sizeof *c);
	for (i = n > CHAINLEN_CAP ? n - CHAINLEN_CAP : 0; i < n; i++)
		chainlen_add(c, len[i]);
	if (seen > c->ring.seen)
		c->ring.seen = seen;
}

/* For storing: the ring's own order. */
void
chainlen_entries(const struct chainlen *c, uint32_t *out)
{
	median_ring_entries(&c->ring, out);
}
