/*
 * fuzz_openai_request.c — libFuzzer target for the HTTP API's request reader
 * (daemon/openai_request.h): any body, as a chat and as a completions request; an accepted
 * one must give a non-empty problem and a spec that borrows it, a refused one a message.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/openai_request.h"
#include "lib/error.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const enum openai_request_kind kinds[] = { OPENAI_REQUEST_CHAT,
	    OPENAI_REQUEST_COMPLETION };
	struct openai_request r;
	struct openai_request_error err;
	struct submit_spec spec;
	size_t i;
	int rc;

	for (i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
		rc = openai_request_parse(kinds[i], (const char *)data, size, &r, &err);
		if (rc == 0) {
			if (r.problem == NULL || r.problem[0] == '\0' || r.model == NULL || r.n < 1 ||
			    r.n > OPENAI_REQUEST_MAX_N)
				abort();
			openai_request_spec(&r, 1000, &spec);
			if (spec.problem != r.problem || strlen(spec.idempotency_key) > 128)
				abort();
		} else if (rc == CERTA_EINVAL && err.message[0] == '\0') {
			abort();   /* every refusal says why */
		} else if (rc != CERTA_EINVAL && rc != -ENOMEM) {
			abort();
		}
		openai_request_clear(&r);
	}
	return 0;
}
