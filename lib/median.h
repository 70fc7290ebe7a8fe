/*
 * median.h — medians: of an array of doubles, and of a sliding window of the last
 * MEDIAN_RING_CAP unsigned values (a ring with a sorted copy, so the median is read in O(1)
 * and each value costs one insertion into the copy).
 *
 * The ring is plain data (zero = empty, no allocation): certad keeps one per model for its
 * learned chain lengths (scheduler/chainlen.h) and probe-probability level
 * (scheduler/problevel.h), and stores it as its entries, the oldest first.
 *
 * No I/O, no globals; any thread.
 */
#ifndef CERTA_LIB_MEDIAN_H
#define CERTA_LIB_MEDIAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Values a ring keeps (the last ones added). */
#define MEDIAN_RING_CAP 512

struct median_ring {
	uint32_t val[MEDIAN_RING_CAP];      /* in arrival order, the oldest overwritten */
	uint32_t sorted[MEDIAN_RING_CAP];   /* val's valid entries in ascending order */
	uint32_t n;                         /* valid entries, <= MEDIAN_RING_CAP */
	uint32_t next;                      /* where the next one goes */
	uint64_t seen;                      /* values added, all time */
};

/* Adds v, overwriting the oldest when the ring is full. */
void median_ring_add(struct median_ring *r, uint32_t v);

/* The median of the kept values: the middle one, or the rounded-up mean of the two middle
 * ones; 0 when none. */
uint64_t median_ring_value(const struct median_ring *r);

/* Whether at least min values are kept, min > 0 (a learned value's minimum sample; 0 never
 * is). */
bool median_ring_has(const struct median_ring *r, uint32_t min);

/* The kept entries, the oldest first, into out[0..r->n) (for storing). */
void median_ring_entries(const struct median_ring *r, uint32_t *out);

/* The median of v[0..n) (the mean of the two middle ones when n is even), sorting v in
 * place; -1 when n is 0. */
double median_doubles(double *v, size_t n);

#endif
