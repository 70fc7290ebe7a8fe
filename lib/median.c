/* median.c — the median of an array, and of a sliding window (a ring with a sorted copy). */
#include "lib/median.h"

#include <stdlib.h>
#include <string.h>

/* The first index of sorted[0..n) whose value is >= v. */
static uint32_t
median_lower(const uint32_t *sorted, uint32_t n, uint32_t v)
{
	uint32_t lo = 0, hi = n;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (sorted[mid] < v)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Insert into the sorted copy (after dropping the overwritten value): O(n) moves, no sort. */
void
median_ring_add(struct median_ring *r, uint32_t v)
{
	uint32_t k;

	if (r->n == MEDIAN_RING_CAP) {
		/* the overwritten one leaves the sorted copy */
		k = median_lower(r->sorted, r->n, r->val[r->next]);
		memmove(r->sorted + k, r->sorted + k + 1, (r->n - k - 1) * sizeof *r->sorted);
		r->n--;
	}
	k = median_lower(r->sorted, r->n, v);
	memmove(r->sorted + k + 1, r->sorted + k, (r->n - k) * sizeof *r->sorted);
	r->sorted[k] = v;
	r->val[r->next] = v;
	r->next = (r->next + 1) % MEDIAN_RING_CAP;
	r->n++;
	r->seen++;
}

/* Read from the sorted copy: O(1) per decision. */
uint64_t
median_ring_value(const struct median_ring *r)
{
	const uint32_t *v = r->sorted;
	uint32_t n = r->n;

	if (n == 0)
		return 0;
	if (n % 2)
		return v[n / 2];
	return ((uint64_t)v[n / 2 - 1] + v[n / 2] + 1) / 2;
}

/* min 0 never: a minimum sample of 0 pins the prior of chainlen and problevel. */
bool
median_ring_has(const struct median_ring *r, uint32_t min)
{
	return min > 0 && r->n >= min;
}

/* Ring order, the oldest first: what a restore replays to get the same ring. */
void
median_ring_entries(const struct median_ring *r, uint32_t *out)
{
	uint32_t start = r->n < MEDIAN_RING_CAP ? 0 : r->next, i;

	for (i = 0; i < r->n; i++)
		out[i] = r->val[(start + i) % MEDIAN_RING_CAP];
}

static int
median_cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* qsort: used once per model on load, not per decision. */
double
median_doubles(double *v, size_t n)
{
	if (n == 0)
		return -1;
	qsort(v, n, sizeof *v, median_cmp);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}
