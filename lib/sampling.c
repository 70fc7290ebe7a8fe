/* sampling.c — range checks of sampling parameters: NaN, infinities and absurd values out. */
#include "lib/sampling.h"

#include <math.h>
#include <stdio.h>

#include "lib/error.h"

int
sampling_check(const Certa__V1__SamplingParams *sp, const char *field, char *err,
    size_t errlen)
{
	if (sp == NULL)
		return 0;
	/* Written so that NaN fails every comparison into the error branch. */
	if (!(sp->temperature >= 0.0f && sp->temperature <= SAMPLING_TEMPERATURE_MAX)) {
		snprintf(err, errlen, "%s.temperature is %g; allowed range is [0, %g] "
		    "(0: engine default)", field, (double)sp->temperature,
		    (double)SAMPLING_TEMPERATURE_MAX);
		return CERTA_EINVAL;
	}
	if (!(sp->top_p >= 0.0f && sp->top_p <= 1.0f)) {
		snprintf(err, errlen, "%s.top_p is %g; allowed range is (0, 1] (0: engine default)",
		    field, (double)sp->top_p);
		return CERTA_EINVAL;
	}
	if (sp->top_k > SAMPLING_TOP_K_MAX) {
		snprintf(err, errlen, "%s.top_k is %u; allowed range is [0, %u] "
		    "(0: engine default)", field, sp->top_k, SAMPLING_TOP_K_MAX);
		return CERTA_EINVAL;
	}
	return 0;
}
