/* sched.c — the program-level decision: continue or stop, and with which answer. */
#include "scheduler/sched.h"

#include <stdio.h>
#include <string.h>

#include "lib/error.h"
#include "scheduler/answer.h"

void
sched_policy_default(struct sched_policy *p)
{
	memset(p, 0, sizeof *p);
	p->step_tokens = 64;
	p->default_budget = 16384;
	p->default_sc_n = 3;
	p->max_sc_n = 16;
	p->max_budget = 1u << 20;
}

int
sched_policy_validate(const struct sched_policy *p, char *msg, size_t msglen)
{
	if (p->step_tokens < 1 || p->step_tokens > 4096) {
		snprintf(msg, msglen, "step_tokens: %u is out of range [1, 4096]", p->step_tokens);
		return CERTA_EINVAL;
	}
	if (p->max_sc_n < 1 || p->max_sc_n > 64) {
		snprintf(msg, msglen, "max_sc_n: %u is out of range [1, 64]", p->max_sc_n);
		return CERTA_EINVAL;
	}
	if (p->default_sc_n < 1 || p->default_sc_n > p->max_sc_n) {
		snprintf(msg, msglen, "default_sc_n: %u is out of range [1, max_sc_n=%u]",
		    p->default_sc_n, p->max_sc_n);
		return CERTA_EINVAL;
	}
	if (p->max_budget < p->step_tokens) {
		snprintf(msg, msglen, "max_budget: %llu is below step_tokens %u",
		    (unsigned long long)p->max_budget, p->step_tokens);
		return CERTA_EINVAL;
	}
	if (p->default_budget < p->step_tokens || p->default_budget > p->max_budget) {
		snprintf(msg, msglen, "default_budget: %llu is out of range [step_tokens=%u, "
		    "max_budget=%llu]", (unsigned long long)p->default_budget, p->step_tokens,
		    (unsigned long long)p->max_budget);
		return CERTA_EINVAL;
	}
	return 0;
}

uint64_t
sched_tokens_used(const struct sched_view *v)
{
	uint64_t t = 0;
	size_t i;

	for (i = 0; i < v->nchains; i++)
		t += v->chains[i].tokens;
	return t;
}

const char *
sched_chain_answer(const struct sched_chain *c)
{
	if (c->finished && c->final_answer != NULL && c->final_answer[0] != '\0')
		return c->final_answer;
	return c->answer != NULL ? c->answer : "";
}

bool
sched_vote(const struct sched_view *v, size_t *winner, double *agreement)
{
	size_t i, j, best = 0, best_votes = 0, voters = 0;

	for (i = 0; i < v->nchains; i++) {
		const char *a = sched_chain_answer(&v->chains[i]);
		size_t votes = 0;
		bool seen = false;

		if (a[0] == '\0')
			continue;
		voters++;
		/* Count each distinct answer once, at its first chain. */
		for (j = 0; j < i && !seen; j++)
			seen = answer_equivalent(sched_chain_answer(&v->chains[j]), a);
		if (seen)
			continue;
		for (j = i; j < v->nchains; j++) {
			const char *b = sched_chain_answer(&v->chains[j]);
			if (b[0] != '\0' && answer_equivalent(a, b))
				votes++;
		}
		if (votes > best_votes) {
			best_votes = votes;
			best = i;
		}
	}
	if (voters == 0)
		return false;
	*winner = best;
	*agreement = (double)best_votes / (double)voters;
	return true;
}

void
sched_decide(const struct sched_policy *p, const struct sched_view *v,
    struct sched_decision *out)
{
	uint64_t used = sched_tokens_used(v), left;
	size_t i, active = 0;
	double agreement = 0;
	size_t winner = 0;
	bool have;

	memset(out, 0, sizeof *out);
	for (i = 0; i < v->nchains; i++)
		if (!v->chains[i].finished)
			active++;
	have = sched_vote(v, &winner, &agreement);
	out->answer_chain = winner;
	out->answer = have ? sched_chain_answer(&v->chains[winner]) : "";
	out->agreement = have ? agreement : 0;
	out->certaindex = v->algo == SCHED_ALGO_SC ? out->agreement : (have ? 0.5 : 0);

	if (active == 0) {
		out->stop = true;
		out->reason = SCHED_REASON_NATURAL_END;
		out->certaindex = v->algo == SCHED_ALGO_SC ? out->agreement : 1.0;
		return;
	}
	if (v->deadline_ms > 0 && v->now_ms >= v->deadline_ms) {
		out->stop = true;
		out->reason = SCHED_REASON_DEADLINE;
		out->low_confidence = true;
		return;
	}
	if (used >= v->budget) {
		out->stop = true;
		out->reason = SCHED_REASON_BUDGET;
		out->low_confidence = true;
		return;
	}
	/* Spread what is left of the budget over the unfinished chains, one step at a time. */
	left = (v->budget - used) / active;
	out->step_tokens = p->step_tokens;
	if (left < out->step_tokens)
		out->step_tokens = left > 0 ? (uint32_t)left : 1;
}

static const char *const sched_reason_names[] = {
	[SCHED_REASON_NONE] = "none",
	[SCHED_REASON_CERTAIN] = "certain",
	[SCHED_REASON_BUDGET] = "budget",
	[SCHED_REASON_UNPROMISING] = "unpromising",
	[SCHED_REASON_NATURAL_END] = "natural_end",
	[SCHED_REASON_CANCELLED] = "cancelled",
	[SCHED_REASON_FAILED] = "failed",
	[SCHED_REASON_DEADLINE] = "deadline",
};

const char *
sched_reason_name(enum sched_reason r)
{
	if ((unsigned)r < sizeof sched_reason_names / sizeof sched_reason_names[0])
		return sched_reason_names[r];
	return "unknown";
}
