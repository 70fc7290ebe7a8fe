/*
 * problevel.h — a model's probe-probability level learned online: the median, over the
 * model's last PROBLEVEL_CAP counted chains, of each chain's median probe mean token
 * probability.  It is the sched_policy.model_confidence a decision on that model uses
 * (scheduler/sched.h): where the probability features 9 and 14 of the certaindex read 0, so
 * that weights fitted on one model carry to a model whose probabilities sit higher or lower.
 *
 * Which chains count (daemon/shadow.c): every chain with at least one known probe
 * probability of a program that finished, whatever stopped it, each trajectory once at its
 * longest: a program run on as a shadow counts at the shadow's end (its whole trajectory),
 * not at its stop.  A probability is a property of the model at a position, not of the
 * ending, so no ending is excluded; a chain's median (not its probes one by one) keeps one
 * long chain from outweighing many short ones and the window measured in chains, as
 * certa-eval's traces_model_prob (lib/traces.h) measures the level a policy is calibrated
 * at.  Chains cut by a certainty stop count over their probes up to the stop only: the
 * probes before an answer settles sit lower, so the level reads somewhat lower than on whole
 * trajectories; shadows (whole trajectories) remove part of that.
 *
 * Values are kept in millionths (p in (0, 1] as round(p * 1e6), at least 1).
 *
 * Pure data and functions; no I/O, no globals; any thread.
 */
#ifndef CERTA_SCHEDULER_PROBLEVEL_H
#define CERTA_SCHEDULER_PROBLEVEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/median.h"

/* Chains kept per model (the last ones counted). */
#define PROBLEVEL_CAP MEDIAN_RING_CAP

/* The units of a kept value: a probability p is kept as round(p * PROBLEVEL_UNITS). */
#define PROBLEVEL_UNITS 1000000u

/* A model's ring (zero = empty): each counted chain's median probe probability in
 * millionths (ring.n chains kept, ring.seen counted all time). */
struct problevel {
	struct median_ring ring;
};

/* Counts one chain from its probes' mean probabilities v[0..n): the unknown ones (outside
 * (0, 1], or not a number) are skipped, and a chain with none is not counted.  Reorders v.
 * Returns whether the chain counted. */
bool problevel_add_chain(struct problevel *pl, double *v, size_t n);

/* The median of the kept chains' values as a probability; 0 when none. */
double problevel_median(const struct problevel *pl);

/* Whether at least min_samples chains are kept (min_samples > 0). */
bool problevel_learned(const struct problevel *pl, uint32_t min_samples);

/* The model_confidence to use: the median once learned (problevel_learned), else prior. */
double problevel_value(const struct problevel *pl, uint32_t min_samples, double prior);

/* Restores a ring from stored entries in millionths (the oldest first), keeping the last
 * PROBLEVEL_CAP valid ones (an entry outside [1, PROBLEVEL_UNITS] is skipped), and the
 * all-time count (at least the entries kept). */
void problevel_restore(struct problevel *pl, const uint32_t *v, uint32_t n, uint64_t seen);

/* The kept entries in millionths, the oldest first, into out[0..pl->ring.n). */
void problevel_entries(const struct problevel *pl, uint32_t *out);

#endif
