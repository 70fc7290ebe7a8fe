/*
 * traces.h — recorded reasoning traces: loader and problem index.
 *
 * traces_load() reads every "*.jsonl.gz" and "*.jsonl" file of a directory (see
 * data/traces/README.md for the format: one JSON object per line, one sampled reasoning run of
 * one model on one problem) and keeps the whole set in memory, indexed three ways:
 *   - by (model, problem text): the samples of that problem, ordered by seed ascending.  Sample
 *     index i is the i-th seed.  This is what the replay engine uses to turn a (prompt, sample
 *     index) into a trace.  traces_find() matches the exact text first and then the text with
 *     whitespace normalized (trimmed, runs of whitespace collapsed to one space), so a prompt that
 *     went through a shell or a YAML file still matches.
 *   - programs: (model, dataset, problem) groups with their samples ordered by seed, for the
 *     offline evaluator.  Ordered by model, dataset, then the problem's first appearance in the
 *     files (files are read in name order).
 *   - flat: traces_at(i), in load order (files by name, lines in order).
 *
 * Ownership: everything returned (struct trace, its strings and probes, sample arrays, model
 * names, programs) is owned by the struct traces and valid until traces_free().  All strings are
 * NUL-terminated UTF-8 and never NULL (absent optional fields read as "").
 *
 * Threads: traces_load() and traces_free() touch only their own object.  A loaded object is never
 * modified, so any number of threads may call the query functions concurrently without locks.
 *
 * Errors: functions return 0 or a negative code (lib/error.h).  A malformed line (bad JSON,
 * missing or mistyped field, a duplicate of an earlier (model, dataset, problem, seed), an
 * unreadable compressed stream) is skipped with a warning naming file:line and counted in
 * traces_skipped(); it never fails the whole load.
 */
#ifndef CERTA_LIB_TRACES_H
#define CERTA_LIB_TRACES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct traces;

/* One probe: the model's answer when its reasoning up to `position` tokens was followed by the
 * "**Final Answer** \[ \boxed{" suffix. */
struct trace_probe {
	uint64_t position;   /* decode tokens into the run (64, 128, ... in the recorded data) */
	const char *answer;  /* LaTeX fragment, may be "" */
	uint32_t out_tokens; /* tokens the probe decoded */
	/* Token statistics of the engine that recorded the run (certad's history of llm workers;
	 * optional 4th-6th array elements or keys "mean_prob", "min_prob", "chain_entropy"), -1
	 * where absent or null (the recorded dev traces): the probe answer's mean and least token
	 * probability in [0,1], and the mean entropy in nats (>= 0) of the distributions the
	 * chain's own tokens were drawn from in the step that ended here. */
	double mean_prob;
	double min_prob;
	double chain_entropy;
};

/* One recorded run.  Plain read-only data; fields follow the trace format. */
struct trace {
	const char *model;        /* e.g. "qwen-qwen3-8b" */
	const char *dataset;      /* e.g. "math500" */
	int64_t seed;
	const char *phase;        /* "" if absent */
	const char *problem_id;   /* int or string in the file, always a string here */
	const char *problem;      /* exact problem text */
	const char *target;       /* reference answer; numbers canonical: 36.0 -> "36", 0.5 -> "0.5" */
	int64_t level;            /* MATH500 level, 0 if absent/null */
	const char *subject;      /* "" if absent/null */
	uint64_t tokens_used;     /* decode tokens of the whole run */
	bool finished;            /* model stopped by itself within its budget */
	const char *final_answer; /* "" if absent/null */
	bool final_correct;
	const struct trace_probe *probes; /* sorted by position ascending */
	size_t nprobes;
	const char *text;         /* full generated text */
	size_t text_len;          /* strlen(text) */
	uint64_t think_end;       /* see traces_think_end() */
	const char *file;         /* file name (no directory) the trace came from */
	size_t line;              /* 1-based line in that file */
};

/* A (model, dataset, problem) group: one program's worth of independent samples. */
struct traces_program {
	const char *model;
	const char *dataset;
	const char *problem;
	const char *problem_id;   /* of the first sample */
	const char *target;       /* of the first sample */
	const struct trace *const *samples; /* ordered by seed ascending */
	size_t nsamples;
};

/*
 * Loads all trace files of dir.  On success stores the new set in *out (free with traces_free())
 * and returns 0; logs one info line with counts, time and memory.  *out is written only on
 * success.  Returns:
 *   -EINVAL           dir or out is NULL or dir is ""
 *   -errno            dir cannot be opened/listed, or a trace file cannot be opened (-ENOENT,
 *                     -EACCES, -ENOTDIR, ...)
 *   CERTA_ENOTFOUND   dir has no *.jsonl.gz / *.jsonl file, or the files hold no record
 *   CERTA_ETRACE      the files hold lines but every one of them is malformed
 *   -ENOMEM           out of memory
 */
int traces_load(const char *dir, struct traces **out);

/*
 * As traces_load() for the JSON lines in buf[0..len) (plain text, not compressed), as if they
 * were one file called `name` (traces_dir() and trace->file read `name`).  Logs nothing but the
 * warnings for skipped lines.  Returns 0, -EINVAL (name NULL or "", buf NULL with len > 0, out
 * NULL), CERTA_ENOTFOUND (no record), CERTA_ETRACE (every line malformed), -ENOMEM.
 */
int traces_load_buffer(const char *name, const char *buf, size_t len, struct traces **out);

/* Frees the set and everything obtained from it.  NULL is a no-op. */
void traces_free(struct traces *tr);

/* The directory given to traces_load() (a copy). */
const char *traces_dir(const struct traces *tr);
/* Number of files read, of traces loaded, of lines skipped as malformed or duplicate. */
size_t traces_file_count(const struct traces *tr);
size_t traces_count(const struct traces *tr);
size_t traces_skipped(const struct traces *tr);
/* Bytes of memory held by the set (strings, probes, indexes). */
size_t traces_memory(const struct traces *tr);

/* Trace i in load order; NULL if i >= traces_count(). */
const struct trace *traces_at(const struct traces *tr, size_t i);

/* Distinct model / dataset names in strcmp order; name i or NULL if out of range. */
size_t traces_model_count(const struct traces *tr);
const char *traces_model_name(const struct traces *tr, size_t i);
size_t traces_dataset_count(const struct traces *tr);
/* The model's probe-probability level: the median over its traces of each trace's first
 * known probe mean probability (trace_probe.mean_prob > 0), the even case the mean of the
 * middle two; -1 when none carries one or the model is unknown.  The first probe, as certad
 * learns the level (scheduler/problevel.h: no stop moves it). */
double traces_model_prob(const struct traces *tr, const char *model);
const char *traces_dataset_name(const struct traces *tr, size_t i);

/*
 * The samples of `problem` for `model`, ordered by seed ascending (one per seed: if the same
 * problem text appears in several datasets with the same seed, the dataset first in strcmp order
 * wins).  model NULL or "" selects the first model, in strcmp order, that has the problem.
 * Matches the exact text first; if that finds nothing for the model, the text with whitespace
 * normalized (several problems normalizing to the same text: the first in strcmp order of the
 * exact text that has the model).  On success stores the array and its length (>= 1) and
 * returns 0.  Returns -EINVAL if tr, problem, samples or nsamples is NULL; CERTA_ENOTFOUND if no
 * such (model, problem).
 */
int traces_find(const struct traces *tr, const char *model, const char *problem,
	const struct trace *const **samples, size_t *nsamples);
/* As traces_find() without the whitespace-normalized fallback. */
int traces_find_exact(const struct traces *tr, const char *model, const char *problem,
	const struct trace *const **samples, size_t *nsamples);
/* Sample `index` (0 = lowest seed) of traces_find(); CERTA_ENOTFOUND also if index is out of
 * range.  Stores the trace in *out on success. */
int traces_find_sample(const struct traces *tr, const char *model, const char *problem,
	size_t index, const struct trace **out);

/* Programs: (model, dataset, problem) groups; program i or NULL if out of range. */
size_t traces_program_count(const struct traces *tr);
const struct traces_program *traces_program_at(const struct traces *tr, size_t i);

/*
 * Byte offset in t->text reached after `token_pos` decode tokens.  There is no tokenizer, so the
 * position maps proportionally: floor(token_pos * text_len / tokens_used), then moved forward to
 * the next UTF-8 character boundary (a multi-byte character is never split).  Monotone
 * non-decreasing in token_pos; 0 for token_pos 0; text_len for token_pos >= tokens_used (also
 * when tokens_used is 0).
 */
size_t traces_text_offset(const struct trace *t, uint64_t token_pos);

/*
 * Token position at which the thinking section has closed: the smallest p such that
 * traces_text_offset(t, p) is at or past the end of the first "</think>" in the text, i.e.
 * ceil(tag_end * tokens_used / text_len).  0 if the text has no "</think>".  Same as
 * t->think_end (computed at load).
 */
uint64_t traces_think_end(const struct trace *t);

/* The probe in effect at token position pos: the last with position <= pos, or NULL before the
 * first probe. */
const struct trace_probe *traces_probe_at(const struct trace *t, uint64_t pos);
/* Its answer; "" before the first probe. */
const char *traces_answer_at(const struct trace *t, uint64_t pos);

/* Copies s with whitespace normalized (leading/trailing removed, runs of space, \t, \n, \r, \v, \f
 * collapsed to one space) into a new malloc'd string the caller frees; NULL if out of memory. */
char *traces_normalize_ws(const char *s);

#endif
