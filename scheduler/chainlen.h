/*
 * chainlen.h — a model's typical chain length learned online: the median decode tokens of its
 * last CHAINLEN_CAP counted chains (a ring, bounded memory), for the model-relative
 * unpromising bounds (sched_policy.model_tokens, scheduler/sched.h).
 *
 * Which chains count (chainlen_counts): those of programs whose chains ended where the chain
 * or a length bound ended them, never where a certainty stop cut them:
 *
 *   - natural end: every chain finished; its length is the chain's own;
 *   - unpromising, budget: the cut chains are right-censored (length >= the tokens at the
 *     cut).  The unpromising bound sits at several model_tokens (16384 / 4096 units: 4 of
 *     them), above the median, and the median of min(X, c) equals the median of X whenever
 *     c is above it, so counting the tokens at the cut leaves the median exact.  A budget
 *     below the median makes the estimate at most that budget; the relative bound (>= 4 such
 *     units) then lies beyond the budget and never fires first, so that error is harmless;
 *   - certain: the chains are cut at an arbitrary point, mostly below the median; not
 *     counted (a shadow of the program runs it to the end and counts instead);
 *   - cancelled, failed, deadline: not counted (the client or a fault ended them).
 *
 * Leaving certain stops out biases the estimate upward (programs that never became certain
 * are the harder, longer ones): a larger unit, looser bounds, fewer unpromising stops: the
 * safe direction.  Shadows (run to their natural end) remove part of the bias.
 *
 * Pure data and functions; no I/O, no globals; any thread.
 */
#ifndef CERTA_SCHEDULER_CHAINLEN_H
#define CERTA_SCHEDULER_CHAINLEN_H

#include <stdbool.h>
#include <stdint.h>

#include "lib/median.h"

/* Chains kept per model (the last ones counted). */
#define CHAINLEN_CAP MEDIAN_RING_CAP

/* A model's ring (zero = empty): decode tokens per chain (lib/median.h; ring.n chains kept,
 * ring.seen counted all time). */
struct chainlen {
	struct median_ring ring;
};

/* Whether the chains of a program that ended with reason (enum sched_reason) count. */
bool chainlen_counts(int reason);

/* Counts one chain of `tokens` decode tokens (0 is ignored; above UINT32_MAX is clamped). */
void chainlen_add(struct chainlen *c, uint64_t tokens);

/* The median of the kept chains: the middle one, or the rounded mean of the two middle ones
 * (as certa-eval's evalsim_model_expected); 0 when none.  O(1): read from the sorted copy
 * (it is asked once per decision; a chain is counted once per ended program). */
uint64_t chainlen_median(const struct chainlen *c);

/* The model_tokens to use: the median once at least min_samples chains are kept
 * (min_samples > 0), else prior (the policy's model_tokens; 0: the bounds run absolute). */
uint64_t chainlen_tokens(const struct chainlen *c, uint32_t min_samples, uint64_t prior);

/* Whether chainlen_tokens uses the learned median. */
bool chainlen_learned(const struct chainlen *c, uint32_t min_samples);

/* Restores a ring from stored entries (in ring order, the oldest first), keeping the last
 * CHAINLEN_CAP, and the all-time count (at least the entries). */
void chainlen_restore(struct chainlen *c, const uint32_t *len, uint32_t n, uint64_t seen);

/* The kept entries, the oldest first, into out[0..c->n) (for storing). */
void chainlen_entries(const struct chainlen *c, uint32_t *out);

#endif
