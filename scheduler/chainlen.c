/* chainlen.c — a model's median chain length over its last counted chains. */
#include "scheduler/chainlen.h"

#include <string.h>

#include "scheduler/sched.h"

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

/* The first index of sorted[0..n) whose value is >= v. */
static uint32_t
chainlen_lower(const uint32_t *sorted, uint32_t n, uint32_t v)
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

void
chainlen_add(struct chainlen *c, uint64_t tokens)
{
	uint32_t v = tokens > UINT32_MAX ? UINT32_MAX : (uint32_t)tokens, k;

	if (tokens == 0)
		return;
	if (c->n == CHAINLEN_CAP) {
		/* the overwritten one leaves the sorted copy */
		k = chainlen_lower(c->sorted, c->n, c->len[c->next]);
		memmove(c->sorted + k, c->sorted + k + 1, (c->n - k - 1) * sizeof *c->sorted);
		c->n--;
	}
	k = chainlen_lower(c->sorted, c->n, v);
	memmove(c->sorted + k + 1, c->sorted + k, (c->n - k) * sizeof *c->sorted);
	c->sorted[k] = v;
	c->len[c->next] = v;
	c->next = (c->next + 1) % CHAINLEN_CAP;
	c->n++;
	c->seen++;
}

uint64_t
chainlen_median(const struct chainlen *c)
{
	const uint32_t *v = c->sorted;
	uint32_t n = c->n;

	if (n == 0)
		return 0;
	if (n % 2)
		return v[n / 2];
	return ((uint64_t)v[n / 2 - 1] + v[n / 2] + 1) / 2;
}

bool
chainlen_learned(const struct chainlen *c, uint32_t min_samples)
{
	return min_samples > 0 && c->n >= min_samples;
}

uint64_t
chainlen_tokens(const struct chainlen *c, uint32_t min_samples, uint64_t prior)
{
	return chainlen_learned(c, min_samples) ? chainlen_median(c) : prior;
}

void
chainlen_restore(struct chainlen *c, const uint32_t *len, uint32_t n, uint64_t seen)
{
	uint32_t i;

	memset(c, 0, sizeof *c);
	for (i = n > CHAINLEN_CAP ? n - CHAINLEN_CAP : 0; i < n; i++)
		chainlen_add(c, len[i]);
	if (seen > c->seen)
		c->seen = seen;
}

void
chainlen_entries(const struct chainlen *c, uint32_t *out)
{
	uint32_t start = c->n < CHAINLEN_CAP ? 0 : c->next, i;

	for (i = 0; i < c->n; i++)
		out[i] = c->len[(start + i) % CHAINLEN_CAP];
}
