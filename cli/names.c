/* names.c — printable names of the wire enums; see names.h. */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "cli/names.h"

struct names_entry {
	int value;
	const char *name;
};

#define NAMES_COUNT(t) (sizeof(t) / sizeof((t)[0]))

static const struct names_entry names_states[] = {
	{ CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_QUEUED, "queued" },
	{ CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_RUNNING, "running" },
	{ CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_FINISHED, "finished" },
	{ CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_CANCELLED, "cancelled" },
	{ CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_FAILED, "failed" },
};

static const struct names_entry names_reasons[] = {
	{ CERTA__V1__FINISH_REASON__FINISH_REASON_CERTAIN, "certain" },
	{ CERTA__V1__FINISH_REASON__FINISH_REASON_BUDGET, "budget" },
	{ CERTA__V1__FINISH_REASON__FINISH_REASON_UNPROMISING, "unpromising" },
	{ CERTA__V1__FINISH_REASON__FINISH_REASON_NATURAL_END, "natural_end" },
	{ CERTA__V1__FINISH_REASON__FINISH_REASON_CANCELLED, "cancelled" },
	{ CERTA__V1__FINISH_REASON__FINISH_REASON_FAILED, "failed" },
	{ CERTA__V1__FINISH_REASON__FINISH_REASON_DEADLINE, "deadline" },
};

static const struct names_entry names_algorithms[] = {
	{ CERTA__V1__ALGORITHM__ALGORITHM_COT, "cot" },
	{ CERTA__V1__ALGORITHM__ALGORITHM_SC, "sc" },
};

static const struct names_entry names_priorities[] = {
	{ CERTA__V1__PRIORITY__PRIORITY_LOW, "low" },
	{ CERTA__V1__PRIORITY__PRIORITY_NORMAL, "normal" },
	{ CERTA__V1__PRIORITY__PRIORITY_HIGH, "high" },
};

static const struct names_entry names_worker_states[] = {
	{ CERTA__V1__WORKER_STATE__WORKER_STATE_UNKNOWN, "unknown" },
	{ CERTA__V1__WORKER_STATE__WORKER_STATE_UP, "up" },
	{ CERTA__V1__WORKER_STATE__WORKER_STATE_DOWN, "down" },
	{ CERTA__V1__WORKER_STATE__WORKER_STATE_DRAINING, "draining" },
};

static const char *
names_find(const struct names_entry *t, size_t n, int value)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (t[i].value == value)
			return t[i].name;
	return NULL;
}

static int
names_parse(const struct names_entry *t, size_t n, const char *s, int *out)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (strcmp(t[i].name, s) == 0) {
			*out = t[i].value;
			return 0;
		}
	}
	return -EINVAL;
}

const char *
names_state(Certa__V1__ProgramState v)
{
	return names_find(names_states, NAMES_COUNT(names_states), (int)v);
}

const char *
names_reason(Certa__V1__FinishReason v)
{
	return names_find(names_reasons, NAMES_COUNT(names_reasons), (int)v);
}

const char *
names_algorithm(Certa__V1__Algorithm v)
{
	return names_find(names_algorithms, NAMES_COUNT(names_algorithms), (int)v);
}

const char *
names_priority(Certa__V1__Priority v)
{
	return names_find(names_priorities, NAMES_COUNT(names_priorities), (int)v);
}

const char *
names_worker_state(Certa__V1__WorkerState v)
{
	return names_find(names_worker_states, NAMES_COUNT(names_worker_states), (int)v);
}

int
names_state_parse(const char *s, Certa__V1__ProgramState *out)
{
	int v;

	if (names_parse(names_states, NAMES_COUNT(names_states), s, &v) != 0)
		return -EINVAL;
	*out = (Certa__V1__ProgramState)v;
	return 0;
}

int
names_priority_parse(const char *s, Certa__V1__Priority *out)
{
	int v;

	if (names_parse(names_priorities, NAMES_COUNT(names_priorities), s, &v) != 0)
		return -EINVAL;
	*out = (Certa__V1__Priority)v;
	return 0;
}

const char *
names_state_choices(void)
{
	return "queued|running|finished|cancelled|failed";
}

const char *
names_priority_choices(void)
{
	return "low|normal|high";
}
