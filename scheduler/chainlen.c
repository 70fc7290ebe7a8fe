/* chainlen.c — a model's median chain length over its last counted chains. */
#include "scheduler/chainlen.h"

#include <stdlib.h>
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

void
chainlen_add(struct chainlen *c, uint64_t tokens)
{
	if (tokens == 0)
		return;
	c->len[c->next] = tokens > UINT32_MAX ? UINT32_MAX : (uint32_t)tokens;
	c->next = (c->next + 1) % CHAINLEN_CAP;
	if (c->n < CHAINLEN_CAP)
		c->n++;
	c->seen++;
}

static int
chainlen_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

uint64_t
chainlen_median(const struct chainlen *c)
{
	uint32_t v[CHAINLEN_CAP];
	uint32_t n = c->n;

	if (n == 0)
		return 0;
	/* A sort of at most CHAINLEN_CAP values, once per counted program: cheap. */
	memcpy(v, c->len, n * sizeof *v);
	qsort(v, n, sizeof *v, chainlen_cmp);
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
