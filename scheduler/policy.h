/*
 * policy.h — the text form of a scheduling policy (struct sched_policy, scheduler/sched.h).
 *
 * A policy file is INI-like `key = value` lines:
 *
 *	# comment                ; also a comment
 *	step_tokens = 64
 *	[cot]                    # keys below read as "cot.<key>"
 *	threshold = 0.93
 *	w.stable = 1.25          # logistic weight of a certainty feature (certainty.h)
 *
 * Keys (names in the table in policy.c): step_tokens, default_budget, default_sc_n, max_sc_n,
 * max_budget, probe_stride, max_step_tokens, expected_tokens, hesitation_window,
 * unpromising_tokens, sc.unpromising_tokens, extend_frac, extend_min, starvation_ms,
 * settle_closed, cot.threshold, cot.threshold_slope, sc.threshold, sc.vote_threshold,
 * dynasor_k (the Dynasor-CoT baseline), unpromising_relative, model_tokens (model-relative
 * unpromising bounds), cot.w.<feature>, sc.w.<feature>.  A dotted key is also accepted at
 * the top level.  Values are decimal numbers; integers must be whole and non-negative.  Keys
 * missing from the text keep the value they had in *p (start from sched_policy_default()).
 * A key may appear once.
 *
 * Pure (no I/O): callers read files with lib/fileio.h and parse the buffer.  Any thread.
 */
#ifndef CERTA_SCHEDULER_POLICY_H
#define CERTA_SCHEDULER_POLICY_H

#include <stddef.h>

#include "scheduler/sched.h"

/* Largest policy text accepted from a file, in bytes. */
#define POLICY_TEXT_MAX (1u << 20)

/*
 * Applies text[0..len) on top of *p, then validates the result (sched_policy_validate).  On
 * success writes *p and returns 0.  On failure leaves *p unchanged, writes a one-line message
 * ("line 3: unknown key 'foo'", "line 5: value 'x' for 'cot.threshold' is not a number",
 * "step_tokens: 0 is out of range ...") into err (when errlen > 0) and returns CERTA_ECONFIG.
 * `name` (may be NULL) prefixes line numbers in messages ("default.policy:3: ...").
 */
int policy_parse(const char *text, size_t len, const char *name, struct sched_policy *p,
    char *err, size_t errlen);

/*
 * Writes p in the file form (every key, one per line, doubles with %.6g) to buf, NUL-terminated
 * and truncated to buflen like snprintf.  Returns the length the full text needs (excluding the
 * NUL).  Parsing the output of a policy whose doubles already have 6 significant digits gives
 * back exactly p.
 */
size_t policy_format(const struct sched_policy *p, char *buf, size_t buflen);

/* Longest policy key, NUL excluded ("sc.w.<longest feature name>"). */
#define POLICY_KEY_MAX 63

/*
 * The table of valid keys, in policy_format() order: policy_key_count() keys, index
 * 0..count-1.  policy_key_name() returns the name of key i (a table string, or buf filled with
 * a composed "cot.w.<feature>" name; len >= POLICY_KEY_MAX + 1), NULL past the end.
 * policy_key_find() returns the index of key or -1.  certactl validates `policy set` keys with
 * these, without parsing any text.
 */
size_t policy_key_count(void);
const char *policy_key_name(size_t i, char *buf, size_t len);
int policy_key_find(const char *key);

/* Rounds every double of p to 6 significant digits (what policy_format writes). */
void policy_round(struct sched_policy *p);

/* Whether two policies have equal values in every key. */
int policy_equal(const struct sched_policy *a, const struct sched_policy *b);

#endif
