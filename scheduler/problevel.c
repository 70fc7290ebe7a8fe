/* problevel.c — a model's probe-probability level over its last counted chains. */
#include "scheduler/problevel.h"

#include <math.h>
#include <string.h>

bool
problevel_add_chain(struct problevel *pl, double *v, size_t n)
{
	size_t i, k = 0;
	double m;
	uint32_t u;

	for (i = 0; i < n; i++)
		if (v[i] > 0 && v[i] <= 1)   /* false for NaN */
			v[k++] = v[i];
	if (k == 0)
		return false;
	m = median_doubles(v, k);
	u = (uint32_t)lround(m * PROBLEVEL_UNITS);
	median_ring_add(&pl->ring, u > 0 ? u : 1);
	return true;
}

double
problevel_median(const struct problevel *pl)
{
	return (double)median_ring_value(&pl->ring) / PROBLEVEL_UNITS;
}

bool
problevel_learned(const struct problevel *pl, uint32_t min_samples)
{
	return min_samples > 0 && pl->ring.n >= min_samples;
}

double
problevel_value(const struct problevel *pl, uint32_t min_samples, double prior)
{
	return problevel_learned(pl, min_samples) ? problevel_median(pl) : prior;
}

void
problevel_restore(struct problevel *pl, const uint32_t *v, uint32_t n, uint64_t seen)
{
	uint32_t i, k = 0;

	memset(pl, 0, sizeof *pl);
	for (i = n; i > 0 && k < PROBLEVEL_CAP; i--)   /* the last valid ones */
		k += v[i - 1] >= 1 && v[i - 1] <= PROBLEVEL_UNITS;
	for (; i < n; i++)
		if (v[i] >= 1 && v[i] <= PROBLEVEL_UNITS)
			median_ring_add(&pl->ring, v[i]);
	if (seen > pl->ring.seen)
		pl->ring.seen = seen;
}

void
problevel_entries(const struct problevel *pl, uint32_t *out)
{
	median_ring_entries(&pl->ring, out);
}
