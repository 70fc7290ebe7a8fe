/* problevel.c — a model's probe-probability level over its last counted chains. */
#include "scheduler/problevel.h"

#include <math.h>
#include <string.h>

/* 0 is unknown: proto3 workers that never set the field send it. */
bool
problevel_known(double p)
{
	return p > 0 && p <= 1;   /* false for NaN */
}

/* Kept below 1: the level must stay in the policy key's range [0, 1). */
bool
problevel_add(struct problevel *pl, double p)
{
	uint32_t u;

	if (!problevel_known(p))
		return false;
	u = (uint32_t)lround(p * PROBLEVEL_UNITS);
	median_ring_add(&pl->ring, u < 1 ? 1 : u > PROBLEVEL_UNITS - 1 ? PROBLEVEL_UNITS - 1 : u);
	return true;
}

/* Millionths back to a probability. */
double
problevel_median(const struct problevel *pl)
{
	return (double)median_ring_value(&pl->ring) / PROBLEVEL_UNITS;
}

/* min_samples 0 never learns: the prior is pinned. */
bool
problevel_learned(const struct problevel *pl, uint32_t min_samples)
{
	return median_ring_has(&pl->ring, min_samples);
}

/* The prior until learned, as chainlen_tokens. */
double
problevel_value(const struct problevel *pl, uint32_t min_samples, double prior)
{
	return problevel_learned(pl, min_samples) ? problevel_median(pl) : prior;
}

/* Whether a stored entry is one problevel_add_chain can write. */
static bool
problevel_valid(uint32_t u)
{
	return u >= 1 && u <= PROBLEVEL_UNITS - 1;
}

/* Only entries problevel_add could write: a corrupt record cannot put 0 or 1 in use. */
void
problevel_restore(struct problevel *pl, const uint32_t *v, uint32_t n, uint64_t seen)
{
	uint32_t i, k = 0;

	memset(pl, 0, sizeof *pl);
	for (i = n; i > 0 && k < PROBLEVEL_CAP; i--)   /* the last valid ones */
		k += problevel_valid(v[i - 1]);
	for (; i < n; i++)
		if (problevel_valid(v[i]))
			median_ring_add(&pl->ring, v[i]);
	if (seen > pl->ring.seen)
		pl->ring.seen = seen;
}

/* For storing: the ring's own order. */
void
problevel_entries(const struct problevel *pl, uint32_t *out)
{
	median_ring_entries(&pl->ring, out);
}
