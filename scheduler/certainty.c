/* certainty.c — certaindex features and models for chains and programs. */
#include "scheduler/certainty.h"

#include <ctype.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "scheduler/answer.h"

#define CERTAINTY_MAX_SC 64

static const char *const certainty_cot_names[CERTAINTY_COT_NFEAT] = {
	"bias", "stable", "stable_frac", "grounded", "hesitation", "think_done", "position",
	"changes", "boxed", "confidence", "mentions", "recent", "box_agree", "box_conflict",
	"min_prob", "chain_entropy",
};

static const char *const certainty_sc_names[CERTAINTY_SC_NFEAT] = {
	"bias", "agreement", "entropy", "mean_c", "min_c", "finished", "dissent_c",
};

const char *
certainty_cot_feature_name(size_t i)
{
	return i < CERTAINTY_COT_NFEAT ? certainty_cot_names[i] : NULL;
}

const char *
certainty_sc_feature_name(size_t i)
{
	return i < CERTAINTY_SC_NFEAT ? certainty_sc_names[i] : NULL;
}

double
certainty_logistic(const double *w, const double *x, size_t n)
{
	double z = 0;
	size_t i;

	for (i = 0; i < n; i++)
		z += w[i] * x[i];
	if (z > 40)
		z = 40;
	if (z < -40)
		z = -40;
	return 1.0 / (1.0 + exp(-z));
}

/* Markers of a model doubting itself (matched case-insensitively at a word start). */
static const char *const certainty_hesitation_words[] = {
	"wait", "hmm", "but ", "alternatively", "double-check", "double check", "let me check",
	"verify", "mistake", "re-examine", "recheck", "not sure", "hold on",
};

static bool
certainty_word_start(const char *text, size_t i)
{
	return i == 0 || !isalpha((unsigned char)text[i - 1]);
}

unsigned
certainty_hesitation_count(const char *text, size_t len, size_t window)
{
	size_t start = len > window ? len - window : 0, i, k;
	unsigned n = 0;

	if (text == NULL)
		return 0;
	for (i = start; i < len; i++) {
		unsigned char ch = (unsigned char)tolower((unsigned char)text[i]);
		if (ch != 'w' && ch != 'h' && ch != 'b' && ch != 'a' && ch != 'd' && ch != 'l' &&
		    ch != 'v' && ch != 'm' && ch != 'r' && ch != 'n')
			continue;
		if (!certainty_word_start(text, i))
			continue;
		for (k = 0; k < sizeof certainty_hesitation_words /
		    sizeof certainty_hesitation_words[0]; k++) {
			const char *w = certainty_hesitation_words[k];
			size_t wl = strlen(w);
			if (i + wl <= len && strncasecmp(text + i, w, wl) == 0) {
				n++;
				break;
			}
		}
	}
	return n;
}

bool
certainty_probe_hesitant(const char *answer)
{
	static const char *const words[] = { "wait", "hold", "but", "okay", "no", "hmm" };
	size_t i, k, len;

	if (answer == NULL)
		return false;
	len = strlen(answer);
	for (i = 0; i < len; i++) {
		if (!certainty_word_start(answer, i))
			continue;
		for (k = 0; k < sizeof words / sizeof words[0]; k++) {
			size_t wl = strlen(words[k]);
			if (i + wl <= len && strncasecmp(answer + i, words[k], wl) == 0 &&
			    (i + wl == len || !isalpha((unsigned char)answer[i + wl])))
				return true;
		}
	}
	return false;
}

/* Occurrences (up to max) of needle in text with number-aware boundaries. */
static unsigned
certainty_count(const char *needle, size_t nl, const char *text, size_t len, unsigned max)
{
	const char *p = text, *end = text + len;
	bool digit_first, digit_last;
	unsigned n = 0;

	if (nl == 0 || nl > len)
		return 0;
	digit_first = isdigit((unsigned char)needle[0]);
	digit_last = isdigit((unsigned char)needle[nl - 1]);
	while (p + nl <= end) {
		const char *hit = memmem(p, (size_t)(end - p), needle, nl);
		if (hit == NULL)
			return n;
		if ((!digit_first || hit == text ||
		    (!isdigit((unsigned char)hit[-1]) && hit[-1] != '.')) &&
		    (!digit_last || hit + nl == end ||
		    (!isdigit((unsigned char)hit[nl]) &&
		    !(hit[nl] == '.' && hit + nl + 1 < end && isdigit((unsigned char)hit[nl + 1]))))) {
			if (++n >= max)
				return n;
			p = hit + nl;
			continue;
		}
		p = hit + 1;
	}
	return n;
}

/* Where answer occurs in text: occurrences (raw form, else canonical form; up to 64) and the
 * offset of the last one (via *last, len if none). */
static unsigned
certainty_mentions(const char *answer, const char *text, size_t len, size_t *last)
{
	char canon[512];
	const char *needle = answer;
	size_t al, tail;
	unsigned n;
	int cl;

	*last = len;
	if (answer == NULL || text == NULL)
		return 0;
	while (*answer == ' ')
		answer++;
	al = strlen(answer);
	while (al > 0 && answer[al - 1] == ' ')
		al--;
	if (al == 0)
		return 0;
	needle = answer;
	n = certainty_count(answer, al, text, len, 64);
	if (n == 0) {
		cl = answer_canonical(answer, al, canon, sizeof canon);
		if (cl <= 0 || ((size_t)cl == al && memcmp(canon, answer, al) == 0))
			return 0;
		needle = canon;
		al = (size_t)cl;
		n = certainty_count(canon, al, text, len, 64);
		if (n == 0)
			return 0;
	}
	/* The last occurrence: search the tail windows backwards. */
	for (tail = 2048; ; tail *= 4) {
		size_t start = len > tail ? len - tail : 0;
		if (certainty_count(needle, al, text + start, len - start, 1) > 0) {
			const char *p = text + start, *hit = NULL, *h;
			while ((h = memmem(p, (size_t)(text + len - p), needle, al)) != NULL) {
				hit = h;
				p = h + 1;
			}
			*last = hit != NULL ? (size_t)(hit - text) : len;
			break;
		}
		if (start == 0)
			break;
	}
	return n;
}

int
certainty_last_boxed(const char *text, size_t len, char *out, size_t outlen)
{
	size_t end = len;

	if (out != NULL && outlen > 0)
		out[0] = '\0';
	if (text == NULL)
		return -1;
	while (end >= 7) {
		const char *hit = NULL, *h, *p = text;
		size_t start, i, depth = 1, n;

		/* the last "\boxed{" starting before end */
		while ((h = memmem(p, end - (size_t)(p - text), "\\boxed{", 7)) != NULL) {
			hit = h;
			p = h + 1;
		}
		if (hit == NULL)
			return -1;
		start = (size_t)(hit - text) + 7;
		for (i = start; i < len; i++) {
			if (text[i] == '{')
				depth++;
			else if (text[i] == '}' && --depth == 0)
				break;
		}
		if (i < len) {
			n = i - start;
			if (out != NULL && outlen > 0) {
				size_t c = n < outlen - 1 ? n : outlen - 1;
				memcpy(out, text + start, c);
				out[c] = '\0';
			}
			return (int)(n > INT32_MAX ? INT32_MAX : n);
		}
		end = (size_t)(hit - text);   /* unclosed: look at the one before */
	}
	return -1;
}

bool
certainty_grounded(const char *answer, const char *text, size_t len)
{
	size_t last;

	return certainty_mentions(answer, text, len, &last) > 0;
}

double
certainty_entropy(const size_t *counts, size_t k, size_t n)
{
	double h = 0;
	size_t i, sum = 0;

	if (n < 2)
		return 0;
	for (i = 0; i < k; i++) {
		double q = (double)counts[i] / (double)n;
		sum += counts[i];
		if (counts[i] > 0)
			h -= q * log(q);
	}
	if (sum < n)  /* the rest: distinct singletons */
		h -= (double)(n - sum) * (1.0 / (double)n) * log(1.0 / (double)n);
	h /= log((double)n);
	return h < 0 ? 0 : (h > 1 ? 1 : h);
}

/* Equivalence with a cheap byte-equal shortcut (most consecutive probes repeat verbatim). */
static bool
certainty_same(const char *a, const char *b)
{
	return strcmp(a, b) == 0 || answer_equivalent(a, b);
}

static bool
certainty_valid(const char *a, const char *problem)
{
	return a[0] != '\0' && !answer_is_placeholder(a, problem);
}

void
certainty_chain_eval(const struct sched_policy *p, const struct sched_chain *c,
    const char *problem, struct certainty_chain *out)
{
	const char *ans = c->answer != NULL ? c->answer : "";
	uint64_t first = c->tokens;
	const char *prev = NULL;
	size_t i;
	double expected = p->expected_tokens > 0 ? (double)p->expected_tokens : 4096.0;
	double *x = out->x;

	memset(out, 0, sizeof *out);
	out->confidence = -1;
	out->min_prob = -1;
	out->entropy = -1;
	if (c->finished) {
		out->answer = sched_chain_answer(c);
		out->best = out->answer;
		out->valid = out->answer[0] != '\0';
		out->ever_valid = out->valid;
		out->certaindex = 1;
		out->position = (double)c->tokens / expected;
		x[0] = 1;
		return;
	}
	out->answer = ans;
	out->best = ans;
	out->valid = certainty_valid(ans, problem);
	out->ever_valid = out->valid;
	if (c->nprobes > 0) {
		const struct sched_probe *last = &c->probes[c->nprobes - 1];
		out->confidence = last->confidence;
		out->min_prob = last->confidence >= 0 && last->min_prob >= 0 ? last->min_prob : -1;
		out->entropy = last->entropy >= 0 ? last->entropy : -1;
		first = last->position;
		/* Walk back while the probes agree with the current answer. */
		for (i = c->nprobes; i-- > 0;) {
			const char *a = c->probes[i].answer != NULL ? c->probes[i].answer : "";
			if (!certainty_same(a, ans))
				break;
			first = c->probes[i].position;
		}
		for (i = 0; i < c->nprobes; i++) {
			const char *a = c->probes[i].answer != NULL ? c->probes[i].answer : "";
			if (a[0] == '\0')
				continue;
			if (prev != NULL && strcmp(prev, a) != 0)
				out->changes++;
			prev = a;
		}
		if (!out->valid) {
			for (i = c->nprobes; i-- > 0;) {
				const char *a = c->probes[i].answer != NULL ? c->probes[i].answer : "";
				if (certainty_valid(a, problem)) {
					out->best = a;
					out->ever_valid = true;
					break;
				}
			}
		}
	}
	out->stable_tokens = c->tokens > first ? c->tokens - first : 0;
	if (out->valid) {
		size_t last;
		out->mentions = certainty_mentions(ans, c->text, c->text_len, &last);
		out->grounded = out->mentions > 0;
		out->since_mention = out->grounded ? c->text_len - last : c->text_len;
	}
	out->hesitation_count = certainty_hesitation_count(c->text, c->text_len,
	    p->hesitation_window);
	out->probe_hesitant = certainty_probe_hesitant(ans);
	out->boxed = c->text != NULL && memmem(c->text, c->text_len, "\\boxed", 6) != NULL;
	if (out->boxed && out->valid) {
		char box[256];
		int bl = certainty_last_boxed(c->text, c->text_len, box, sizeof box);
		if (bl > 0 && (size_t)bl < sizeof box)
			out->box = certainty_same(box, ans) ? 1 : -1;
	}
	out->position = (double)c->tokens / expected;

	x[0] = 1;
	x[1] = log2(1.0 + (double)out->stable_tokens / 64.0);
	x[2] = c->tokens > 0 ? (double)out->stable_tokens / (double)c->tokens : 0;
	x[3] = out->grounded;
	x[4] = (out->hesitation_count > 4 ? 4 : out->hesitation_count) / 4.0;
	x[5] = c->thinking_done;
	x[6] = out->position > 4 ? 4 : out->position;
	x[7] = log2(1.0 + out->changes);
	x[8] = out->boxed;
	x[9] = out->confidence >= 0 ? out->confidence - 0.5 : 0;
	x[10] = log2(1.0 + out->mentions);
	x[11] = out->grounded && out->since_mention <= 2 * (size_t)p->hesitation_window;
	x[12] = out->box > 0;
	x[13] = out->box < 0;
	x[14] = out->min_prob >= 0 ? out->min_prob - 0.5 : 0;
	x[15] = out->entropy >= 0 ? (out->entropy > 4 ? 4 : out->entropy) : 0;
	out->settled = p->settle_closed && c->thinking_done && out->box > 0;
	out->certaindex = !out->valid ? 0 : out->settled ? 1 :
	    certainty_logistic(p->cot_w, x, CERTAINTY_COT_NFEAT);
}

/* One distinct answer of an sc vote. */
struct certainty_bucket {
	size_t first;             /* chain that introduced it */
	size_t votes;
	size_t finished;
};

void
certainty_program_eval(const struct sched_policy *p, const struct sched_view *v,
    struct certainty_program *out, struct certainty_chain *chains_out)
{
	struct certainty_chain local[CERTAINTY_MAX_SC], *cc;
	struct certainty_bucket b[CERTAINTY_MAX_SC];
	size_t bucket_of[CERTAINTY_MAX_SC];
	size_t n = v->nchains, nb = 0, i, j, best = 0, unfinished = 0, second = 0;
	size_t counts[CERTAINTY_MAX_SC];
	double sum_c = 0, min_c = 1, dissent = 0;
	struct sched_features *f = &out->features;

	memset(out, 0, sizeof *out);
	out->answer = "";
	f->probe_confidence = -1;
	if (n > CERTAINTY_MAX_SC)
		n = CERTAINTY_MAX_SC;
	if (n == 0)
		return;
	cc = chains_out != NULL ? chains_out : local;
	for (i = 0; i < n; i++)
		certainty_chain_eval(p, &v->chains[i], v->problem, &cc[i]);

	if (v->algo != SCHED_ALGO_SC || n == 1) {
		const struct certainty_chain *c = &cc[0];
		out->answer_chain = 0;
		out->answer = c->best;
		out->any_valid = c->ever_valid;
		out->agreement = out->answer[0] != '\0' ? 1 : 0;
		out->certaindex = c->certaindex;
		out->decided = v->chains[0].finished;
		out->decided_final = out->decided;
		f->stable_tokens = c->stable_tokens;
		f->grounded = c->grounded;
		f->hesitation = c->hesitation_count > 0 || c->probe_hesitant;
		f->valid_answer = c->valid;
		f->position = c->position;
		f->probe_confidence = c->confidence;
		f->thinking_done = v->chains[0].thinking_done;
		f->agreement = out->agreement;
		f->certaindex = out->certaindex;
		return;
	}

	/* sc: vote over finished answers and valid probe answers. */
	for (i = 0; i < n; i++) {
		bucket_of[i] = SIZE_MAX;
		if (!v->chains[i].finished && !cc[i].settled)
			unfinished++;
		if (cc[i].ever_valid)
			out->any_valid = true;
		if (!cc[i].valid)
			continue;
		for (j = 0; j < nb; j++)
			if (certainty_same(cc[b[j].first].answer, cc[i].answer))
				break;
		if (j == nb) {
			b[nb].first = i;
			b[nb].votes = 0;
			b[nb].finished = 0;
			nb++;
		}
		b[j].votes++;
		if (v->chains[i].finished || cc[i].settled)
			b[j].finished++;
		bucket_of[i] = j;
	}
	if (nb == 0) {
		/* Nobody has a valid answer: fall back to the best remembered one. */
		for (i = 0; i < n; i++)
			if (cc[i].best[0] != '\0') {
				out->answer_chain = i;
				out->answer = cc[i].best;
				break;
			}
		f->position = cc[0].position;
		return;
	}
	for (j = 0; j < nb; j++) {
		counts[j] = b[j].votes;
		if (b[j].votes > b[best].votes)
			best = j;
	}
	for (j = 0; j < nb; j++)
		if (j != best && b[j].finished > second)
			second = b[j].finished;
	out->answer_chain = b[best].first;
	out->answer = cc[b[best].first].answer;
	out->agreement = (double)b[best].votes / (double)n;
	out->entropy = certainty_entropy(counts, nb, n);
	out->decided = b[best].finished > second + unfinished;
	/* the same with finished chains only (settled ones count as unfinished) */
	{
		size_t fin_best = 0, fin_second = 0, open = 0;
		for (i = 0; i < n; i++) {
			if (!v->chains[i].finished)
				open++;
			else if (bucket_of[i] == best)
				fin_best++;
		}
		for (j = 0; j < nb; j++) {
			size_t fj = 0;
			if (j == best)
				continue;
			for (i = 0; i < n; i++)
				if (bucket_of[i] == j && v->chains[i].finished)
					fj++;
			if (fj > fin_second)
				fin_second = fj;
		}
		out->decided_final = fin_best > fin_second + open;
	}
	for (i = 0; i < n; i++) {
		if (bucket_of[i] == best) {
			sum_c += cc[i].certaindex;
			if (cc[i].certaindex < min_c)
				min_c = cc[i].certaindex;
		} else if (cc[i].valid && cc[i].certaindex > dissent) {
			dissent = cc[i].certaindex;
		}
	}
	out->x[0] = 1;
	out->x[1] = out->agreement;
	out->x[2] = out->entropy;
	out->x[3] = sum_c / (double)b[best].votes;
	out->x[4] = min_c;
	out->x[5] = (double)b[best].finished / (double)b[best].votes;
	out->x[6] = dissent;
	out->certaindex = out->decided ? 1.0 :
	    certainty_logistic(p->sc_w, out->x, CERTAINTY_SC_NFEAT);

	i = out->answer_chain;
	f->stable_tokens = cc[i].stable_tokens;
	f->grounded = cc[i].grounded;
	f->hesitation = cc[i].hesitation_count > 0 || cc[i].probe_hesitant;
	f->valid_answer = true;
	f->position = cc[i].position;
	f->probe_confidence = cc[i].confidence;
	f->thinking_done = v->chains[i].thinking_done;
	f->agreement = out->agreement;
	f->entropy = out->entropy;
	f->certaindex = out->certaindex;
}
