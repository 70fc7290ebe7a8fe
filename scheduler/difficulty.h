/*
 * difficulty.h — a chain's difficulty class from its early trajectory, and the stop-certain
 * threshold of each class (issue 13 item 3: difficulty-aware thresholds).
 *
 * A hard problem shows itself early: the chain's probe answer keeps changing, or the chain
 * has no valid answer at all for a long while.  Those chains are where the certaindex meets
 * false consensus (an intermediate result that stays stable for thousands of tokens), so they
 * get a threshold of their own (cot.threshold_hard), and the others (cot.threshold_easy) may
 * stop sooner.
 *
 * The early trajectory is the chain's probes at positions <= difficulty.tokens (the window):
 *   changes      times the valid probe answer changed to a non-equivalent valid answer
 *   first_valid  position of the first valid probe answer (0: none in the window)
 * Class (difficulty_classify), with the window W = difficulty.tokens:
 *   NONE  W = 0 (off): sched_decide() uses cot.threshold
 *   HARD  changes >= difficulty.changes (> 0), or the chain has spent the whole window
 *         without a valid probe answer
 *   EASY  otherwise (provisional until the chain has spent W tokens: a chain can only turn
 *         hard while inside its window, never back)
 * Like every input of sched_decide() the class is a function of the view (probe history), so
 * a restarted daemon classifies as before and the evaluator's replay classifies the same.
 * Only cot programs (and sc programs of one chain) use the classes; sc programs keep
 * sc.threshold.
 *
 * Pure functions; no I/O, no global state; any thread.
 */
#ifndef CERTA_SCHEDULER_DIFFICULTY_H
#define CERTA_SCHEDULER_DIFFICULTY_H

#include <stdint.h>

#include "scheduler/sched.h"

enum difficulty_class {
	DIFFICULTY_NONE = 0,   /* classes off: the plain threshold */
	DIFFICULTY_EASY = 1,
	DIFFICULTY_HARD = 2,
	DIFFICULTY_NCLASSES
};

/* What a chain's probes inside the window show. */
struct difficulty_early {
	uint64_t window;       /* W */
	uint64_t seen;         /* min(chain tokens, W) */
	uint32_t changes;      /* valid answer changes at probe positions <= W */
	uint64_t first_valid;  /* position of the first valid probe answer <= W; 0: none */
};

/* The early trajectory of chain c (problem: for the placeholder test, may be NULL) over the
 * window [0, window]. */
void difficulty_early_eval(const struct sched_chain *c, const char *problem, uint64_t window,
    struct difficulty_early *out);

/* The class of early stats e under the rule of p (difficulty.tokens, difficulty.changes);
 * NONE when p->difficulty_tokens is 0 or e was computed over another window. */
enum difficulty_class difficulty_classify(const struct sched_policy *p,
    const struct difficulty_early *e);

/* The class of chain c of a program about `problem` under p (the two calls above). */
enum difficulty_class difficulty_of_chain(const struct sched_policy *p,
    const struct sched_chain *c, const char *problem);

/* The cot stop-certain threshold of a class: cot.threshold_easy, cot.threshold_hard, or
 * cot.threshold for NONE. */
double difficulty_threshold(const struct sched_policy *p, enum difficulty_class cls);

const char *difficulty_class_name(enum difficulty_class cls);

#endif
