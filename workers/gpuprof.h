/*
 * gpuprof.h — a GPU timing model for the replay engine: what a continuous-batching engine
 * (vLLM, SGLang, certa's llm engine) would take to serve the steps a replay worker runs.
 *
 * All active sequences advance together, one iteration at a time.  An iteration costs
 *
 *	t = t0 + a * decode_tokens + p * prefill_tokens + b * context_tokens      (microseconds)
 *
 * t0: reading the weights once (memory bound), a: compute per decoded token, p: compute per
 * (re-)prefilled token, b: reading one token of KV cache.  decode_tokens: sequences decoding
 * this iteration (one token each); prefill_tokens: prompt, resumed text and probe suffixes
 * prefilled this iteration; context_tokens: the KV each decoding sequence attends over.  So a
 * step's latency depends on what else the worker runs.  Profiles: the .gpu files in profiles/ (the file
 * format below; each coefficient's source is written there and in docs/bench-serve.md).
 *
 * Profile text, lib/ini.h syntax:  t0_us, a_us, b_us, prefill_us (>= 0, microseconds),
 * probe_suffix_tokens (tokens prefilled before each probe), time_scale (> 0: wall seconds per
 * modelled GPU second; 0.01 runs 100x faster than the GPU would), name.
 *
 * Pure (gpuprof_load reads one file).  Any thread.
 */
#ifndef CERTA_WORKERS_GPUPROF_H
#define CERTA_WORKERS_GPUPROF_H

#include <stddef.h>
#include <stdint.h>

struct gpuprof {
	char name[64];
	double t0_us, a_us, b_us, prefill_us;
	uint32_t probe_suffix_tokens;
	double time_scale;
};

/* One sequence's remaining work in its current step, in the order it is done. */
struct gpuprof_seq {
	uint64_t prefill;         /* tokens to prefill first (prompt / resumed text; 0: cached) */
	uint64_t decode;          /* tokens to decode */
	uint64_t probe_prefill;   /* then the probe: suffix tokens prefilled on a fork */
	uint64_t probe_decode;    /* and the probe answer's tokens decoded there */
	uint64_t context;         /* KV tokens of the chain so far */
	uint64_t fork;            /* KV tokens of the probe fork beyond the chain */
};

/* Parses profile text over gpuprof_defaults().  0, or CERTA_ECONFIG with a message in err. */
int gpuprof_parse(const char *text, size_t len, struct gpuprof *out, char *err, size_t errlen);
/* Reads and parses a profile file.  0, CERTA_ECONFIG or the read error, message in err. */
int gpuprof_load(const char *path, struct gpuprof *out, char *err, size_t errlen);
/* The built-in profile (8B model, one H100 SXM; profiles/llama3-8b-h100.gpu), time scale 1. */
void gpuprof_defaults(struct gpuprof *out);

/* The cost of one iteration, in modelled microseconds. */
double gpuprof_iter_us(const struct gpuprof *p, uint64_t decode_tokens,
    uint64_t prefill_tokens, uint64_t context_tokens);

/* Whether a sequence has work left in its step. */
int gpuprof_seq_busy(const struct gpuprof_seq *s);

/* Advances s by its share of one iteration, adding what it does to the iteration's counts. */
void gpuprof_seq_advance(struct gpuprof_seq *s, uint64_t *decode_tokens,
    uint64_t *prefill_tokens, uint64_t *context_tokens);

/*
 * Runs one iteration over seqs[0..n): each busy sequence prefills everything pending (whole,
 * no chunking), or decodes one token (chain, then probe fork).  Advances them and returns the
 * iteration's cost (0 when none is busy).
 */
double gpuprof_iterate(const struct gpuprof *p, struct gpuprof_seq *seqs, size_t n);

#endif
