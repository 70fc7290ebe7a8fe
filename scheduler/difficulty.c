/* difficulty.c — difficulty classes from the early trajectory; see difficulty.h. */
#include "scheduler/difficulty.h"

#include <string.h>

#include "scheduler/answer.h"

static int
difficulty_valid(const char *a, const char *problem)
{
	return a != NULL && a[0] != '\0' && !answer_is_placeholder(a, problem);
}

void
difficulty_early_eval(const struct sched_chain *c, const char *problem, uint64_t window,
    struct difficulty_early *out)
{
	const char *last = NULL;
	size_t i;

	memset(out, 0, sizeof *out);
	out->window = window;
	out->seen = c->tokens < window ? c->tokens : window;
	for (i = 0; i < c->nprobes && c->probes != NULL; i++) {
		const struct sched_probe *pr = &c->probes[i];
		if (pr->position > window)
			break;
		if (!difficulty_valid(pr->answer, problem))
			continue;
		if (last == NULL)
			out->first_valid = pr->position > 0 ? pr->position : 1;
		else if (strcmp(last, pr->answer) != 0 && !answer_equivalent(last, pr->answer))
			out->changes++;
		last = pr->answer;
	}
}

enum difficulty_class
difficulty_classify(const struct sched_policy *p, const struct difficulty_early *e)
{
	if (p->difficulty_tokens == 0 || e->window != p->difficulty_tokens)
		return DIFFICULTY_NONE;
	if (p->difficulty_changes > 0 && e->changes >= p->difficulty_changes)
		return DIFFICULTY_HARD;
	if (e->first_valid == 0 && e->seen >= e->window)
		return DIFFICULTY_HARD;
	return DIFFICULTY_EASY;
}

enum difficulty_class
difficulty_of_chain(const struct sched_policy *p, const struct sched_chain *c,
    const char *problem)
{
	struct difficulty_early e;

	if (p->difficulty_tokens == 0)
		return DIFFICULTY_NONE;
	difficulty_early_eval(c, problem, p->difficulty_tokens, &e);
	return difficulty_classify(p, &e);
}

double
difficulty_threshold(const struct sched_policy *p, enum difficulty_class cls)
{
	switch (cls) {
	case DIFFICULTY_EASY: return p->cot_threshold_easy;
	case DIFFICULTY_HARD: return p->cot_threshold_hard;
	default: return p->cot_threshold;
	}
}

static const char *const difficulty_names[DIFFICULTY_NCLASSES] = {
	[DIFFICULTY_NONE] = "none",
	[DIFFICULTY_EASY] = "easy",
	[DIFFICULTY_HARD] = "hard",
};

const char *
difficulty_class_name(enum difficulty_class cls)
{
	return (unsigned)cls < DIFFICULTY_NCLASSES ? difficulty_names[cls] : "unknown";
}
