/*
 * tokcompare.c — the engine's tokenizer against the real one: loads a tokenizer-only GGUF
 * (tok2gguf.py), encodes every text of a reference file written by ref.js and compares the ids
 * one by one.  Also checks that decoding our ids gives the text back.
 *
 * Usage: tokcompare MODEL.gguf REF [LABEL]
 * Prints the agreement (texts identical / total, tokens in identical texts / total), the first
 * mismatches with context, and the encoder's speed.  Exit 0 when every text agrees, 1 when one
 * does not, 2 on a usage or file error.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/error.h"
#include "workers/llm/gguf.h"
#include "workers/llm/tokenizer.h"

#define SHOW_MISMATCHES 3

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);  /* CPU time: the machine is shared */
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static bool
get_u32(FILE *f, uint32_t *v)
{
	uint8_t b[4];

	if (fread(b, 1, 4, f) != 4)
		return false;
	*v = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
	return true;
}

/* Token i of ids as readable text: the stored spelling. */
static void
show_ids(const struct tokenizer *t, const char *what, const uint32_t *ids, size_t n, size_t at)
{
	size_t i, lo = at > 4 ? at - 4 : 0, hi = at + 5 < n ? at + 5 : n;

	printf("    %s:", what);
	for (i = lo; i < hi; i++)
		printf(" %s%u'%s'", i == at ? ">" : "", ids[i],
		    tokenizer_token_text(t, (int32_t)ids[i]) ? tokenizer_token_text(t,
		    (int32_t)ids[i]) : "?");
	printf("\n");
}

int
main(int argc, char **argv)
{
	const char *label = argc > 3 ? argv[3] : "tokenizer";
	struct gguf *g;
	struct tokenizer *t;
	char err[256], magic[8];
	FILE *f;
	size_t texts = 0, same = 0, shown = 0, bad_rt = 0;
	unsigned long long toks = 0, toks_same = 0, bytes = 0, ours_total = 0;
	double spent = 0;
	int rc;

	if (argc < 3) {
		fprintf(stderr, "usage: tokcompare MODEL.gguf REF [LABEL]\n");
		return 2;
	}
	if ((rc = gguf_open(argv[1], &g, err, sizeof err)) != 0) {
		fprintf(stderr, "tokcompare: %s\n", err);
		return 2;
	}
	if ((rc = tokenizer_open(g, &t, err, sizeof err)) != 0) {
		fprintf(stderr, "tokcompare: %s: %s\n", argv[1], err);
		return 2;
	}
	gguf_close(g);
	f = fopen(argv[2], "rb");
	if (f == NULL || fread(magic, 1, 8, f) != 8 || memcmp(magic, "CTOKREF1", 8) != 0) {
		fprintf(stderr, "tokcompare: %s: not a reference file\n", argv[2]);
		return 2;
	}
	for (;;) {
		int kind = fgetc(f);
		uint32_t len, n, i;
		char *text, *dec;
		uint32_t *ref;
		int32_t *ours;
		size_t nours, declen;
		double t0;

		if (kind == EOF)
			break;
		if (!get_u32(f, &len) || (text = malloc(len + 1)) == NULL ||
		    fread(text, 1, len, f) != len || !get_u32(f, &n) ||
		    (ref = malloc((n + 1) * sizeof *ref)) == NULL || fread(ref, 4, n, f) != n) {
			fprintf(stderr, "tokcompare: %s: truncated\n", argv[2]);
			return 2;
		}
		t0 = now();
		rc = tokenizer_encode(t, text, len, TOKENIZER_SPECIAL, &ours, &nours);
		spent += now() - t0;
		if (rc != 0) {
			fprintf(stderr, "tokcompare: text %zu: %s\n", texts, certa_strerror(rc));
			return 2;
		}
		texts++;
		toks += n;
		bytes += len;
		ours_total += nours;
		for (i = 0; i < n && i < nours && (uint32_t)ours[i] == ref[i]; i++)
			;
		if (i == n && n == nours) {
			same++;
			toks_same += n;
		} else if (shown++ < SHOW_MISMATCHES) {
			printf("  mismatch: %s text %zu at token %u (ref %u tokens, ours %zu)\n",
			    kind == 0 ? "problem" : "reasoning", texts - 1, i, n, nours);
			show_ids(t, "ref ", ref, n, i);
			show_ids(t, "ours", (uint32_t *)ours, nours, i);
		}
		if (tokenizer_decode(t, ours, nours, true, &dec, &declen) != 0 || declen != len ||
		    memcmp(dec, text, len) != 0)
			bad_rt++;
		else
			free(dec);
		free(ours);
		free(ref);
		free(text);
	}
	fclose(f);
	printf("%s: texts identical %zu/%zu (%.2f%%), tokens in identical texts %llu/%llu "
	    "(%.3f%%), ours %llu tokens; round trip failures %zu\n", label, same, texts,
	    texts ? 100.0 * (double)same / (double)texts : 0.0, toks_same, toks,
	    toks ? 100.0 * (double)toks_same / (double)toks : 0.0, ours_total, bad_rt);
	printf("%s: encode %llu bytes, %llu tokens in %.2f s CPU: %.0f tokens/s, %.1f MB/s\n", label,
	    bytes, ours_total, spent, spent > 0 ? (double)ours_total / spent : 0.0,
	    spent > 0 ? (double)bytes / spent / 1e6 : 0.0);
	tokenizer_free(t);
	return same == texts && bad_rt == 0 ? 0 : 1;
}
