/*
 * problevel.h — a model's probe-probability level learned online: the median, over the
 * model's last PROBLEVEL_CAP counted chains, of each chain's first known probe mean token
 * probability.  It is the sched_policy.model_confidence a decision on that model uses
 * (scheduler/sched.h): where the probability features 9 and 14 of the certaindex read 0, so
 * that weights fitted on one model carry to a model whose probabilities sit higher or lower.
 *
 * Why the first probe.  Whatever statistic of a chain is taken, the stops must not move it,
 * or the level would follow the policy that uses it: a median over the probes up to a
 * certainty stop reads lower the earlier the stops (the probes before an answer settles sit
 * lower), a lower level makes the probability features read higher and stop earlier still;
 * leaving stopped chains out instead keeps the harder programs, which sit lower too.  Every
 * chain that ran a probe has its first one, whatever stopped it and when, so the level is
 * the model's alone: it moves with the model (weights, sampling temperature), not with the
 * policy.  certa-eval's traces_model_prob (lib/traces.h) measures the level a policy is
 * calibrated at the same way.
 *
 * Which chains count (daemon/shadow.c): every chain with a known probe probability of a
 * program that finished, whatever the ending, each once (a program run on as a shadow at
 * the shadow's end).
 *
 * Values are kept in millionths (p in (0, 1) as round(p * 1e6), clamped into [1, 999999]:
 * a level is below 1, as the policy key requires).
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

/* A model's ring (zero = empty): each counted chain's first known probe probability in
 * millionths (ring.n chains kept, ring.seen counted all time). */
struct problevel {
	struct median_ring ring;
};

/* Whether p is a known probe probability (in (0, 1]; not a number, 0 from a worker that
 * never sets it, or < 0 for unknown, are not). */
bool problevel_known(double p);

/* Counts one chain by its first known probe mean probability p; p not known
 * (problevel_known) is not counted.  Returns whether it counted. */
bool problevel_add(struct problevel *pl, double p);

/* The median of the kept chains' values as a probability; 0 when none. */
double problevel_median(const struct problevel *pl);

/* Whether at least min_samples chains are kept (min_samples > 0). */
bool problevel_learned(const struct problevel *pl, uint32_t min_samples);

/* The model_confidence to use: the median once learned (problevel_learned), else prior. */
double problevel_value(const struct problevel *pl, uint32_t min_samples, double prior);

/* Restores a ring from stored entries in millionths (the oldest first), keeping the last
 * PROBLEVEL_CAP valid ones (an entry outside [1, PROBLEVEL_UNITS - 1] is skipped), and the
 * all-time count (at least the entries kept). */
void problevel_restore(struct problevel *pl, const uint32_t *v, uint32_t n, uint64_t seen);

/* The kept entries in millionths, the oldest first, into out[0..pl->ring.n). */
void problevel_entries(const struct problevel *pl, uint32_t *out);

#endif
