/*
 * histexport.h — turns certad's LMDB history into recorded-trace files, so an operator can
 * evaluate and recalibrate the certainty policy on their own traffic with certa-eval.
 *
 * Every finished program in the history DB becomes one JSON line per chain in the traces format
 * (data/traces README): model (the program's model, "unknown" when none was asked for),
 * dataset "history", seed = 100 * (program ordinal) + chain index (unique, so the same
 * problem asked by several programs gives more samples), problem_id = program id, problem, target, tokens_used,
 * finished, final_answer, final_correct, probes and text.  A probe is [position, answer,
 * out_tokens], out_tokens being the chain's probe tokens shared evenly over its probes (the
 * record keeps only the sum), followed by [mean_prob, min_prob, chain_entropy] when the engine
 * gave token statistics (llm workers; null where one is unknown), so calibration can fit the
 * token-probability features (docs/certainty.md).
 *
 * Labels: certad does not know the right answer.  target is the program's own answer (for a
 * program that ran to its natural end, the majority of its chains' final answers); replace it
 * with ground truth where you have it.  By default only programs that ran to their natural end
 * are exported, because a chain stopped early has no final answer to learn from: to collect
 * such data, run a share of traffic under a policy that does not stop early (thresholds > 1).
 *
 * Any thread that owns the store handle.
 */
#ifndef CERTA_EVAL_HISTEXPORT_H
#define CERTA_EVAL_HISTEXPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

struct store;

struct histexport_stats {
	size_t programs;      /* exported */
	size_t chains;        /* lines written */
	size_t skipped;       /* not run to the natural end (unless all) or without chains */
};

/* Writes the history of st to f.  all: also programs that stopped early (their chains'
 * final_answer is the last probe answer and finished is false).  Returns 0, -EIO when writing
 * failed, -ENOMEM, or a store error. */
int histexport_write(struct store *st, FILE *f, bool all, struct histexport_stats *out);

#endif
