/*
 * fuzz_answer.c — libFuzzer target for the answer canonicalizer and equivalence
 * (scheduler/answer.h).
 *
 * Input: two answers separated by the first '\n' (the second may be empty).  Checks the
 * properties the header promises: answer_canonical returns a length equal to strlen(out) or
 * -E2BIG; answer_equivalent is reflexive and symmetric; a canonical form is equivalent to its
 * answer; answer_is_placeholder and answer_hash accept anything.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler/answer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char out[4 * ANSWER_MAX_LEN + 512];
	const uint8_t *nl = memchr(data, '\n', size);
	size_t alen = nl != NULL ? (size_t)(nl - data) : size;
	char *a, *b;
	int rc;

	if (size > 2 * ANSWER_MAX_LEN + 64)
		return -1;
	a = malloc(alen + 1);
	b = malloc(size - alen + 1);
	if (a == NULL || b == NULL)
		abort();
	memcpy(a, data, alen);
	a[alen] = '\0';
	if (nl != NULL)
		memcpy(b, nl + 1, size - alen - 1);
	b[nl != NULL ? size - alen - 1 : 0] = '\0';

	/* Length-delimited: embedded NULs are allowed. */
	rc = answer_canonical((const char *)data, alen, out, sizeof out);
	if (rc < 0 && rc != -E2BIG)
		abort();
	if (rc >= 0 && (size_t)rc != strlen(out))
		abort();
	rc = answer_canonical(a, strlen(a), out, sizeof out);
	if (rc < 0 && rc != -E2BIG)
		abort();
	if (!answer_equivalent(a, a))
		abort();
	if (answer_equivalent(a, b) != answer_equivalent(b, a))
		abort();
	if (rc >= 0 && !answer_equivalent(a, out))
		abort();
	(void)answer_is_placeholder(a, b);
	(void)answer_hash(a);
	(void)answer_hash(b);
	free(a);
	free(b);
	return 0;
}
