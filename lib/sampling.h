/*
 * sampling.h — the allowed ranges of SamplingParams, checked at every edge that receives them
 * (certad's Submit, the worker's Step).  Zero means "engine default" for every field.
 *
 * Threads: pure functions, any thread.
 */
#ifndef CERTA_LIB_SAMPLING_H
#define CERTA_LIB_SAMPLING_H

#include <stddef.h>

#include "certa/v1/common.pb-c.h"

#define SAMPLING_TEMPERATURE_MAX 10.0f  /* temperature in [0, 10] */
#define SAMPLING_TOP_K_MAX 1000000u     /* top_k in [0, 1000000] */
/* top_p: 0 (default) or (0, 1] */

/* Checks sp (NULL: all defaults, fine).  field names it in messages, e.g. "program.sampling".
 * Returns 0, or CERTA_EINVAL with "FIELD.temperature is nan; allowed range is [0, 10]
 * (0: engine default)" (and so on) in err.  NaN and infinities are always refused. */
int sampling_check(const Certa__V1__SamplingParams *sp, const char *field, char *err,
    size_t errlen);

#endif
