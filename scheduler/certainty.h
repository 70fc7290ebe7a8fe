/*
 * certainty.h — the certaindex: how sure a request (chain) and a program are of their answer.
 *
 * Everything is recomputed from the view (probe history, reasoning text so far, finished
 * flags), so a decision needs no state from earlier steps and survives a daemon restart; a
 * chain may carry an incremental scan of its text (struct certainty_scan, below), a cache
 * that gives the same results as the full rescan.
 *
 * Chain features (vector index: meaning):
 *   0 bias         1
 *   1 stable       log2(1 + stable_tokens / 64): stable_tokens = tokens since the first probe
 *                  of the current run of equivalent answers (0 with a single probe)
 *   2 stable_frac  stable_tokens / tokens
 *   3 grounded     the answer appears in the reasoning text so far (raw or canonical form;
 *                  a number must not be part of a longer number)
 *   4 hesitation   hesitation markers ("wait", "hmm", "but", "alternatively", "double-check",
 *                  "let me check", "verify", "mistake", ...) in the last hesitation_window
 *                  bytes of text, min(count, 4) / 4
 *   5 think_done   the chain has closed its thinking section (</think>)
 *   6 position     min(tokens / expected_tokens, 4)
 *   7 changes      log2(1 + number of times the (non-empty) probe answer string changed)
 *   8 boxed        the text so far contains "\boxed"
 *   9 confidence   probe confidence - 0.5 when the engine gives it, else 0
 *  10 mentions     log2(1 + occurrences of the answer in the text so far, up to 64)
 *  11 recent       the answer occurs in the last 2 * hesitation_window bytes of text
 *  12 box_agree    the last complete \boxed{...} in the text so far holds an answer
 *                  equivalent to the current one
 *  13 box_conflict the last complete \boxed{...} holds a different answer
 *  14 min_prob     least token probability of the latest probe's answer - 0.5 when the
 *                  engine gives it, else 0 (DEER-style answer confidence, with confidence)
 *  15 chain_entropy mean entropy (nats, capped at 4) of the distributions the chain's own
 *                  tokens were drawn from in the latest step, when the engine gives it, else 0
 * 9, 14 and 15 ship with weight 0 (policy/default.policy): replay traces carry none of them,
 * so they wait for calibration on llm-engine history.
 * The chain certaindex is sigmoid(cot_w . x) when the answer is valid (not empty, not a
 * placeholder: answer_is_placeholder), 0 otherwise, and 1 once the chain finished or is
 * settled (policy settle_closed: thinking closed and box_agree; what is left is the summary).
 *
 * Program features for sc (votes: a finished chain votes its final answer, an unfinished one
 * its latest probe answer when valid; equivalence decides who agrees):
 *   0 bias         1
 *   1 agreement    votes for the majority answer / n
 *   2 entropy      normalized answer entropy (Dynasor: H(answers) / log n; every invalid
 *                  answer counts as a distinct one), 0 when all agree
 *   3 mean_c       mean chain certaindex of the chains voting for the majority
 *   4 min_c        least chain certaindex among them
 *   5 finished     share of the majority's chains that finished
 *   6 dissent_c    highest chain certaindex among valid dissenting chains (0 if none)
 * The sc certaindex is sigmoid(sc_w . x), or 1 when the finished and settled chains alone
 * already decide the vote whatever the others answer (decided; settled chains vote as
 * finished, and count in `finished`).  decided_final: finished chains alone decide.  With
 * sc.vote_threshold <= 1 an unfinished chain whose chain certaindex reaches it votes as
 * finished for `decided` too (not for the feature `finished`).  cot programs use the chain
 * certaindex.
 *
 * Pure functions; no I/O, no global state; any thread (a chain's scan, when it has one, by
 * one thread at a time).  Strings in results point into the view.
 */
#ifndef CERTA_SCHEDULER_CERTAINTY_H
#define CERTA_SCHEDULER_CERTAINTY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "scheduler/sched.h"

#define CERTAINTY_COT_NFEAT SCHED_COT_NFEAT
#define CERTAINTY_SC_NFEAT SCHED_SC_NFEAT

/* What certainty_chain() computes for one chain. */
struct certainty_chain {
	const char *answer;       /* current answer ("" if none): final answer once finished */
	const char *best;         /* best answer to stop with: answer if valid, else the latest
	                           * valid probe answer, else answer */
	bool valid;
	bool ever_valid;          /* valid now or some earlier probe was */
	uint64_t stable_tokens;
	unsigned changes;
	bool grounded;
	unsigned mentions;        /* occurrences of the answer in the text (up to 64) */
	size_t since_mention;     /* text bytes after the last occurrence */
	unsigned hesitation_count;
	bool probe_hesitant;      /* Dynasor: the probe answer holds an uncertainty word */
	bool boxed;
	int box;                  /* last complete \boxed{} vs the answer: 1 agrees, -1 differs,
	                           * 0 none */
	double position;
	double confidence;        /* < 0 unknown */
	double min_prob;          /* latest probe's least token probability; < 0 unknown */
	double entropy;           /* latest step's mean chain token entropy; < 0 unknown */
	double x[CERTAINTY_COT_NFEAT];
	bool settled;             /* thinking closed and the last \boxed{} agrees with the valid
	                           * answer (policy settle_closed): certaindex 1 */
	double certaindex;
};

/* What certainty_program() computes. */
struct certainty_program {
	size_t answer_chain;      /* chain whose answer is the program's answer */
	const char *answer;       /* "" if none */
	double agreement;
	double entropy;
	bool decided;             /* sc: finished and settled chains alone decide the vote, or
	                           * with the chains at least sc.vote_threshold certain
	                           * (vote_level >= it) */
	double vote_level;        /* sc: the highest sc.vote_threshold that decides the vote
	                           * (CERTAINTY_VOTE_ALWAYS: finished and settled chains alone;
	                           * -1: none, or not sc) */
	bool decided_final;       /* ... finished chains alone (stops even with thresholds > 1) */
	bool any_valid;           /* some chain has, or had, a valid answer */
	/* sc with pending chains (sched_view.pending): the started chains can no longer decide
	 * the vote on their own, however the unfinished ones end (sched_decision.launch) */
	bool stalled;
	double x[CERTAINTY_SC_NFEAT];   /* sc features (zeros for cot) */
	double certaindex;
	struct sched_features features;
};

/* Features and certaindex of chain c of a program about `problem` (may be NULL). */
void certainty_chain_eval(const struct sched_policy *p, const struct sched_chain *c,
    const char *problem, struct certainty_chain *out);

/* certainty_program.vote_level when the vote is decided without certain voters. */
#define CERTAINTY_VOTE_ALWAYS 2.0

/* The chains certainty_program_eval evaluates, at most (the first ones). */
#define CERTAINTY_PROGRAM_MAX_CHAINS 64

/* Program certaindex, answer and features.  chains_out (may be NULL) receives v->nchains
 * per-chain results; sc programs with more than 64 chains are evaluated on the first 64. */
void certainty_program_eval(const struct sched_policy *p, const struct sched_view *v,
    struct certainty_program *out, struct certainty_chain *chains_out);

/* sigmoid(w . x) over n features. */
double certainty_logistic(const double *w, const double *x, size_t n);

/* Hesitation markers in the last `window` bytes of text[0..len). */
unsigned certainty_hesitation_count(const char *text, size_t len, size_t window);
/* Dynasor-CoT's uncertainty test on a probe answer: a whole word among wait, hold, but, okay,
 * no, hmm (case-insensitive). */
bool certainty_probe_hesitant(const char *answer);
/* Whether answer occurs in text[0..len) (raw or canonical form; numbers not inside longer
 * numbers).  Empty answers are never grounded. */
bool certainty_grounded(const char *answer, const char *text, size_t len);
/* Normalized entropy of a vote: counts[0..k) over n voters (sum may be < n: the rest count as
 * distinct singletons); 0 when n < 2. */
double certainty_entropy(const size_t *counts, size_t k, size_t n);

/* The content of the last complete \boxed{...} in text[0..len) (braces balanced), copied
 * NUL-terminated into out (truncated to outlen - 1); returns its length, or -1 when there is
 * none. */
int certainty_last_boxed(const char *text, size_t len, char *out, size_t outlen);

/*
 * Incremental scan of one chain's text (struct sched_chain.scan): what certainty_chain_eval
 * derives from the text (hesitation markers in the window, \boxed, the last complete
 * \boxed{...}, the answer's mentions and the last one), advanced over only the bytes appended
 * since the previous evaluation.  Results are identical to the full rescan: matches whose
 * outcome depends on bytes not yet there (a word or a number at the end of the text) stay
 * provisional and are looked at again.  The current answer's mentions are rescanned from the
 * start when the answer changes.  A text shorter than what was scanned, or whose bytes before
 * that point changed (a guard compares the last 16 scanned bytes), is rescanned from the
 * start; certainty_scan_reset does so explicitly.  Owned by the caller (one per chain); not
 * thread-safe (one evaluation at a time).
 */
struct certainty_scan;

/* A fresh scan (nothing scanned), or NULL without memory. */
struct certainty_scan *certainty_scan_new(void);
/* Frees s (NULL is a no-op). */
void certainty_scan_free(struct certainty_scan *s);
/* Forgets what was scanned: the next evaluation rescans the whole text. */
void certainty_scan_reset(struct certainty_scan *s);

/* Feature names ("stable", ...) as used in policy files (cot.w.NAME, sc.w.NAME). */
const char *certainty_cot_feature_name(size_t i);
const char *certainty_sc_feature_name(size_t i);

#endif
