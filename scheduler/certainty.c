/* certainty.c — certaindex features and models for chains and programs. */
#include "scheduler/certainty.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#include <strings.h>

#include "lib/array.h"
#include "scheduler/answer.h"

#define CERTAINTY_MAX_SC CERTAINTY_PROGRAM_MAX_CHAINS

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

/* Markers of a model doubting itself (matched case-insensitively at a word start; lower
 * case ASCII), with their lengths. */
struct certainty_hes_word {
	const char *w;
	size_t len;
};

#define CERTAINTY_HES_WORD(s) { s, sizeof s - 1 }
/* Grouped by first letter (certainty_hes_first indexes the groups; a new word's first two
 * letters go in certainty_hes_candidates16 too, and the word in test_certainty_scan's
 * pieces). */
static const struct certainty_hes_word certainty_hes_words[] = {
	CERTAINTY_HES_WORD("alternatively"),                                        /* 0 a */
	CERTAINTY_HES_WORD("but "),                                                 /* 1 b */
	CERTAINTY_HES_WORD("double-check"), CERTAINTY_HES_WORD("double check"),     /* 2 d */
	CERTAINTY_HES_WORD("hmm"), CERTAINTY_HES_WORD("hold on"),                   /* 4 h */
	CERTAINTY_HES_WORD("let me check"),                                         /* 6 l */
	CERTAINTY_HES_WORD("mistake"),                                              /* 7 m */
	CERTAINTY_HES_WORD("not sure"),                                             /* 8 n */
	CERTAINTY_HES_WORD("re-examine"), CERTAINTY_HES_WORD("recheck"),            /* 9 r */
	CERTAINTY_HES_WORD("verify"),                                               /* 11 v */
	CERTAINTY_HES_WORD("wait"),                                                 /* 12 w */
};
#undef CERTAINTY_HES_WORD

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
		for (k = 0; k < sizeof certainty_hes_words / sizeof certainty_hes_words[0]; k++) {
			const struct certainty_hes_word *w = &certainty_hes_words[k];
			if (i + w->len <= len && strncasecmp(text + i, w->w, w->len) == 0) {
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

/* The text features of chain c (as certainty_scan_text), from the whole text. */
static void
certainty_text_full(const struct sched_policy *p, const struct sched_chain *c, const char *ans,
    struct certainty_chain *out)
{
	if (out->valid) {
		size_t last;
		out->mentions = certainty_mentions(ans, c->text, c->text_len, &last);
		out->grounded = out->mentions > 0;
		out->since_mention = out->grounded ? c->text_len - last : c->text_len;
	}
	out->hesitation_count = certainty_hesitation_count(c->text, c->text_len,
	    p->hesitation_window);
	out->boxed = c->text != NULL && memmem(c->text, c->text_len, "\\boxed", 6) != NULL;
	if (out->boxed && out->valid) {
		char box[256];
		int bl = certainty_last_boxed(c->text, c->text_len, box, sizeof box);
		if (bl > 0 && (size_t)bl < sizeof box)
			out->box = certainty_same(box, ans) ? 1 : -1;
	}
}

/* Incremental scan (struct certainty_scan). */

#define CERTAINTY_SCAN_GUARD 16   /* scanned bytes compared to detect a changed text */
#define CERTAINTY_SCAN_OPEN 8     /* unclosed \boxed{ after the last closed one, at most */
#define CERTAINTY_HES_MAXWL 13    /* the longest hesitation word ("alternatively") */
#define CERTAINTY_SCAN_ANSWERS 4  /* answers whose mentions are kept (probes go back and forth) */
#define CERTAINTY_MEMO_LEN 39     /* answers up to this many bytes are remembered by content */
#define CERTAINTY_MEMO_VALID 4    /* answers whose validity is remembered */
#define CERTAINTY_MEMO_SAME 4     /* answer pairs whose equivalence is remembered (the walk
                                   * back over the probes, the sc vote against the others) */
#define CERTAINTY_FORMS 4         /* answers whose comparison form is kept (answer_form) */
#define CERTAINTY_FORM_LEN 63     /* ... forms up to this many bytes */

/* certainty_valid(a, problem) and certainty_probe_hesitant(a) of one answer (a[0] == '\0':
 * unused).  Pure functions of the strings: remembered, never stale. */
struct certainty_memo_valid {
	char a[CERTAINTY_MEMO_LEN + 1];
	bool valid, hesitant;
};

/* certainty_same(a, b) of two answers that differ byte-wise (a and b both empty: unused). */
struct certainty_memo_same {
	char a[CERTAINTY_MEMO_LEN + 1], b[CERTAINTY_MEMO_LEN + 1];
	bool same;
};

/* The comparison form (answer_form) of one answer (a[0] == '\0' with used == 0: unused):
 * a pair that misses the memo compares forms, each canonicalized once per chain. */
struct certainty_form {
	char a[CERTAINTY_MEMO_LEN + 1];
	char f[CERTAINTY_FORM_LEN + 1];
	int flen;                 /* -1: none (answer_form failed, or longer than f) */
	uint64_t used;            /* least recently used goes first */
};

/* certainty_count of one needle, advanced over appended text: hits before `p` are final. */
struct certainty_needle {
	size_t p;                 /* where certainty_count's loop continues */
	unsigned n;               /* valid occurrences before p (up to 64) */
	size_t raw_from;          /* raw (overlapping) occurrences starting before it are seen */
	size_t last;              /* the last raw occurrence (SIZE_MAX: none) */
};

/* A \boxed{ whose braces are not balanced yet. */
struct certainty_open_box {
	size_t start;             /* offset of the content (after "\boxed{") */
	size_t i;                 /* balance scanned up to here */
	size_t depth;
};

/* One answer's mentions: raw (trimmed) and canonical needles, and the last box's verdict. */
struct certainty_answer_scan {
	char *answer;             /* as given (NULL: entry unused) */
	char *raw, *canon;        /* trimmed answer; canonical form when it differs (else NULL) */
	size_t raw_len, canon_len;
	struct certainty_needle nraw, ncanon;
	bool box_cached;          /* box_agree: the last box compared with this answer */
	size_t box_start;
	int box_len, box_agree;
	uint64_t used;            /* least recently used goes first */
};

struct certainty_scan {
	size_t len;               /* bytes scanned */
	char guard[CERTAINTY_SCAN_GUARD];   /* text[len - glen .. len) */
	size_t glen;
	/* hesitation markers: positions below hes_next are decided; hits[head..nhits) are the
	 * decided hits not yet out of every later window */
	size_t hes_window;
	size_t hes_next;
	size_t *hits, head, nhits, hits_cap;
	/* "\boxed" anywhere */
	bool boxed;
	size_t boxed_from;
	/* the last complete \boxed{...}: the closed one that starts last, and the unclosed ones
	 * after it (overflow: too many, fall back to certainty_last_boxed) */
	size_t box_from;
	bool closed;
	size_t closed_start, closed_end;
	struct certainty_open_box open[CERTAINTY_SCAN_OPEN];
	size_t nopen;
	bool overflow;
	/* the latest answers whose mentions are counted (each catches up when it comes back) */
	struct certainty_answer_scan answers[CERTAINTY_SCAN_ANSWERS];
	uint64_t tick;
	/* the verdicts on answers a decision asks for again and again (the latest answer, the
	 * probes it walks back over); vproblem: the problem they are for (the chain's, by
	 * address) */
	const char *vproblem;
	struct certainty_memo_valid valid[CERTAINTY_MEMO_VALID];
	struct certainty_memo_same same[CERTAINTY_MEMO_SAME];
	unsigned valid_next, same_next;
	struct certainty_form forms[CERTAINTY_FORMS];
	uint64_t form_tick;
};

struct certainty_scan *
certainty_scan_new(void)
{
	struct certainty_scan *s = calloc(1, sizeof *s);

	if (s != NULL)
		certainty_scan_reset(s);
	return s;
}

static void
certainty_answer_forget(struct certainty_answer_scan *a)
{
	free(a->answer);
	free(a->raw);
	free(a->canon);
	memset(a, 0, sizeof *a);
}

static void
certainty_scan_forget_answer(struct certainty_scan *s)
{
	size_t k;

	for (k = 0; k < CERTAINTY_SCAN_ANSWERS; k++)
		certainty_answer_forget(&s->answers[k]);
}

void
certainty_scan_free(struct certainty_scan *s)
{
	if (s == NULL)
		return;
	certainty_scan_forget_answer(s);
	free(s->hits);
	free(s);
}

void
certainty_scan_reset(struct certainty_scan *s)
{
	size_t *hits = s->hits, cap = s->hits_cap;

	certainty_scan_forget_answer(s);
	memset(s, 0, sizeof *s);
	s->hits = hits;
	s->hits_cap = cap;
	s->hes_window = SIZE_MAX;   /* no window yet */
}

/* The bytes a hesitation marker starts with (tolower in the C locale: certad and certa-eval
 * never call setlocale): 1 + the index of the first word of their group in
 * certainty_hes_words, 0 for any other byte. */
static const unsigned char certainty_hes_first[256] = {
	['a'] = 1, ['b'] = 2, ['d'] = 3, ['h'] = 5, ['l'] = 7, ['m'] = 8, ['n'] = 9,
	['r'] = 10, ['v'] = 12, ['w'] = 13,
	['A'] = 1, ['B'] = 2, ['D'] = 3, ['H'] = 5, ['L'] = 7, ['M'] = 8, ['N'] = 9,
	['R'] = 10, ['V'] = 12, ['W'] = 13,
};

/* isalpha and tolower in the C locale (ASCII letters only), without the locale lookups. */
static bool
certainty_ascii_alpha(unsigned char ch)
{
	return (ch | 0x20) >= 'a' && (ch | 0x20) <= 'z';
}

static unsigned char
certainty_ascii_lower(unsigned char ch)
{
	return ch >= 'A' && ch <= 'Z' ? (unsigned char)(ch | 0x20) : ch;
}

/* Whether a hesitation marker starts at text[i] (all its bytes within len): the test of
 * certainty_hesitation_count at i (the words are lower case ASCII; strncasecmp in the C
 * locale folds ASCII letters only). */
static bool
certainty_hesitation_at(const char *text, size_t len, size_t i)
{
	unsigned char ch = (unsigned char)text[i];
	size_t k, j;

	if (certainty_hes_first[ch] == 0 ||
	    (i > 0 && certainty_ascii_alpha((unsigned char)text[i - 1])))
		return false;
	ch |= 0x20;   /* a letter (certainty_hes_first): its lower case */
	/* only the words of its group */
	for (k = certainty_hes_first[(unsigned char)text[i]] - 1u;
	    k < sizeof certainty_hes_words / sizeof certainty_hes_words[0] &&
	    (unsigned char)certainty_hes_words[k].w[0] == ch; k++) {
		const struct certainty_hes_word *w = &certainty_hes_words[k];
		if (i + w->len > len)
			continue;
		for (j = 1; j < w->len &&
		    certainty_ascii_lower((unsigned char)text[i + j]) == (unsigned char)w->w[j]; j++)
			;
		if (j == w->len)
			return true;
	}
	return false;
}

/* Records a hesitation marker at i among the decided hits; -1 without memory. */
static int
certainty_scan_hit(struct certainty_scan *s, size_t i)
{
	if (s->nhits == s->hits_cap && s->head > 0) {
		memmove(s->hits, s->hits + s->head, (s->nhits - s->head) * sizeof *s->hits);
		s->nhits -= s->head;
		s->head = 0;
	}
	if (ARRAY_GROW(s->hits, s->hits_cap, s->nhits + 1) != 0)
		return -1;
	s->hits[s->nhits++] = i;
	return 0;
}

#ifdef __SSE2__
/*
 * The candidates of text[i .. i + 16) (i >= 1, text[i + 16] readable), 16 bytes at once: a bit
 * per byte where a marker's first two letters (either case) start, not after an ASCII letter
 * -- the byte loop's test, narrowed by the second letter (certainty_hesitation_at decides).
 */
static unsigned
certainty_hes_candidates16(const char *text, size_t i)
{
	const __m128i low = _mm_set1_epi8(0x20);
	__m128i v = _mm_or_si128(_mm_loadu_si128((const __m128i *)(const void *)(text + i)), low);
	__m128i p = _mm_or_si128(_mm_loadu_si128((const __m128i *)(const void *)(text + i - 1)),
	    low);
	__m128i q = _mm_or_si128(_mm_loadu_si128((const __m128i *)(const void *)(text + i + 1)),
	    low);
	__m128i palpha, pair;

#define CERTAINTY_PAIR(a, b) _mm_and_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8(a)), \
	    _mm_cmpeq_epi8(q, _mm_set1_epi8(b)))
	/* the first two letters of certainty_hes_words ("double-check" and "double check": d o;
	 * "hmm", "hold on": h m, h o; "re-examine", "recheck": r e) */
	pair = _mm_or_si128(_mm_or_si128(_mm_or_si128(CERTAINTY_PAIR('a', 'l'),
	    CERTAINTY_PAIR('b', 'u')), _mm_or_si128(CERTAINTY_PAIR('d', 'o'),
	    CERTAINTY_PAIR('h', 'm'))), _mm_or_si128(_mm_or_si128(CERTAINTY_PAIR('h', 'o'),
	    CERTAINTY_PAIR('l', 'e')), _mm_or_si128(CERTAINTY_PAIR('m', 'i'),
	    CERTAINTY_PAIR('n', 'o'))));
	pair = _mm_or_si128(pair, _mm_or_si128(_mm_or_si128(CERTAINTY_PAIR('r', 'e'),
	    CERTAINTY_PAIR('v', 'e')), CERTAINTY_PAIR('w', 'a')));
#undef CERTAINTY_PAIR
	/* bytes over 0x7f compare negative: not letters */
	palpha = _mm_and_si128(_mm_cmpgt_epi8(p, _mm_set1_epi8('a' - 1)),
	    _mm_cmplt_epi8(p, _mm_set1_epi8('z' + 1)));
	return (unsigned)_mm_movemask_epi8(_mm_andnot_si128(palpha, pair));
}
#endif

/* certainty_hesitation_count(text, len, window), from the decided positions. */
static unsigned
certainty_scan_hesitation(struct certainty_scan *s, const char *text, size_t len,
    size_t window)
{
	size_t ws = len > window ? len - window : 0, final_end, i;
	unsigned n = 0;

	if (window != s->hes_window) {
		s->hes_window = window;
		s->hes_next = 0;
		s->head = s->nhits = 0;
	}
	if (s->hes_next < ws)
		s->hes_next = ws;   /* earlier positions are out of every later window */
	/* positions i with i + MAXWL <= len are decided: a hit, or no word fits there */
	final_end = len >= CERTAINTY_HES_MAXWL ? len - CERTAINTY_HES_MAXWL + 1 : 0;
	i = s->hes_next;
#ifdef __SSE2__
	/* 16 bytes at a time (the byte before each block is read too: from i >= 1) */
	if (i == 0 && final_end > 0) {
		if (certainty_hesitation_at(text, len, 0) && certainty_scan_hit(s, 0) != 0)
			goto fail_hits;
		i = 1;
	}
	for (; i + 16 <= final_end; i += 16) {
		unsigned m = certainty_hes_candidates16(text, i);
		while (m != 0) {
			size_t j = i + (size_t)__builtin_ctz(m);
			m &= m - 1;
			if (certainty_hesitation_at(text, len, j) && certainty_scan_hit(s, j) != 0)
				goto fail_hits;
		}
	}
#endif
	/* the rest byte by byte (without SSE2: all of it) */
	for (; i < final_end; i++)
		if (certainty_hesitation_at(text, len, i) && certainty_scan_hit(s, i) != 0)
			goto fail_hits;
	if (final_end > s->hes_next)
		s->hes_next = final_end;
	while (s->head < s->nhits && s->hits[s->head] < ws)
		s->head++;
	n = (unsigned)(s->nhits - s->head);
	/* the undecided tail: counted now, looked at again next time */
	for (i = s->hes_next; i < len; i++)
		if (certainty_hesitation_at(text, len, i))
			n++;
	return n;
fail_hits:
	/* keep nothing decided: count this window from the text */
	s->hes_window = SIZE_MAX;
	return certainty_hesitation_count(text, len, window);
}

/* How common byte c is in reasoning text, 0 (rare: backslash, braces, ^, _, brackets, bytes
 * outside ASCII) to 3 (space, e t i a o s r n h), from the byte frequencies of the recorded
 * traces (space 19%, e 7.7% ... digits 0.3-1.4%, '\\' 0.34%, '{' 0.26%). */
static unsigned
certainty_byte_rank(unsigned char c)
{
	switch (c) {
	case ' ': case 'e': case 't': case 'i': case 'a': case 'o': case 's': case 'r': case 'n':
	case 'h':
		return 3;
	case '\n': case ',': case '.':
		return 2;
	case '=': case '-': case '(': case ')': case '+': case '$': case '*': case '/': case ':':
		return 1;
	default:
		break;
	}
	if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
		return 2;
	return c >= 'A' && c <= 'Z' ? 1 : 0;
}

/*
 * memmem(h, hl, n, nl): the first occurrence.  The scan's searches run over a few hundred new
 * bytes per step, where memmem's setup (its shift table) costs more than the search; this one
 * looks for the needle's least common byte with memchr and compares the needle around it.
 */
static const char *
certainty_find(const char *h, size_t hl, const char *n, size_t nl)
{
	const char *p, *end;
	size_t k = 0, i;
	unsigned rk, r;

	if (nl == 0)
		return h;
	if (nl > hl)
		return NULL;
	rk = certainty_byte_rank((unsigned char)n[0]);
	for (i = 1; i < nl && rk > 0; i++)
		if ((r = certainty_byte_rank((unsigned char)n[i])) < rk) {
			k = i;
			rk = r;
		}
	/* a match starts in [h, h + hl - nl]: its anchor byte lies in [h + k, end) */
	p = h + k;
	end = h + (hl - nl) + k + 1;
	while (p < end && (p = memchr(p, (unsigned char)n[k], (size_t)(end - p))) != NULL) {
		if (memcmp(p - k, n, nl) == 0)
			return p - k;
		p++;
	}
	return NULL;
}

/* Whether certainty_count's boundary test passes for a hit at h (of nl bytes) in text[0..len). */
static bool
certainty_count_valid(const char *text, size_t len, const char *needle, size_t nl, size_t h)
{
	bool digit_first = isdigit((unsigned char)needle[0]);
	bool digit_last = isdigit((unsigned char)needle[nl - 1]);
	const char *hit = text + h, *end = text + len;

	return (!digit_first || h == 0 ||
	    (!isdigit((unsigned char)hit[-1]) && hit[-1] != '.')) &&
	    (!digit_last || hit + nl == end ||
	    (!isdigit((unsigned char)hit[nl]) &&
	    !(hit[nl] == '.' && hit + nl + 1 < end && isdigit((unsigned char)hit[nl + 1]))));
}

/* The last (raw, overlapping) occurrence of needle (nl > 0 bytes) in text[0..len) that starts
 * at or after from; SIZE_MAX when none.  Searched backwards from the end: one pass over the
 * bytes after it, however many occurrences come before. */
static size_t
certainty_last_raw(const char *text, size_t len, size_t from, const char *needle, size_t nl)
{
	const char *q;
	size_t end;

	if (len < nl || from > len - nl)
		return SIZE_MAX;
	for (end = len - nl + 1; end > from; end = (size_t)(q - text)) {
		/* candidates start in [from, end) */
		q = memrchr(text + from, needle[0], end - from);
		if (q == NULL)
			return SIZE_MAX;
		if (memcmp(q + 1, needle + 1, nl - 1) == 0)
			return (size_t)(q - text);
	}
	return SIZE_MAX;
}

/* certainty_count(needle, nl, text, len, 64) and the last raw occurrence (*last, SIZE_MAX if
 * none), advancing st over text appended since the last call. */
static unsigned
certainty_needle_advance(struct certainty_needle *st, const char *needle, size_t nl,
    const char *text, size_t len, size_t *last)
{
	bool digit_last = isdigit((unsigned char)needle[nl - 1]);
	size_t p, h;
	unsigned n;
	const char *hit;

	*last = st->last;
	if (nl == 0 || nl > len)
		return 0;
	/* the counting loop: commit hits whose validity no later byte can change */
	while (st->n < 64 && st->p + nl <= len) {
		hit = certainty_find(text + st->p, len - st->p, needle, nl);
		if (hit == NULL) {
			st->p = len - nl + 1;
			break;
		}
		h = (size_t)(hit - text);
		if (digit_last && h + nl + 2 > len)
			break;   /* the bytes after it are not all there yet */
		if (certainty_count_valid(text, len, needle, nl, h)) {
			st->n++;
			st->p = h + nl;
		} else {
			st->p = h + 1;
		}
	}
	/* the provisional rest, as of now */
	n = st->n;
	p = st->p;
	while (n < 64 && p + nl <= len) {
		hit = certainty_find(text + p, len - p, needle, nl);
		if (hit == NULL)
			break;
		h = (size_t)(hit - text);
		if (certainty_count_valid(text, len, needle, nl, h)) {
			n++;
			p = h + nl;
		} else {
			p = h + 1;
		}
	}
	if (n == 0)
		return 0;   /* the last occurrence is not asked for: found later from raw_from */
	/* the last raw occurrence: raw matches never change once the bytes are there */
	h = certainty_last_raw(text, len, st->raw_from, needle, nl);
	if (h != SIZE_MAX)
		st->last = h;
	st->raw_from = len - nl + 1;
	*last = st->last;
	return n;
}

/* The entry of the answer whose mentions are counted (a new one replaces the least recently
 * used); NULL without memory. */
static struct certainty_answer_scan *
certainty_scan_answer(struct certainty_scan *sc, const char *answer)
{
	struct certainty_answer_scan *s = &sc->answers[0];
	char canon[512];
	const char *a = answer;
	size_t al, k;
	int cl;

	for (k = 0; k < CERTAINTY_SCAN_ANSWERS; k++) {
		struct certainty_answer_scan *e = &sc->answers[k];
		if (e->answer != NULL && strcmp(e->answer, answer) == 0) {
			e->used = ++sc->tick;
			return e;
		}
		if (e->used < s->used)
			s = e;
	}
	certainty_answer_forget(s);
	s->used = ++sc->tick;
	s->nraw.last = s->ncanon.last = SIZE_MAX;
	while (*a == ' ')
		a++;
	al = strlen(a);
	while (al > 0 && a[al - 1] == ' ')
		al--;
	s->answer = strdup(answer);
	s->raw = strndup(a, al);
	if (s->answer == NULL || s->raw == NULL)
		goto fail_strings;
	s->raw_len = al;
	if (al == 0)
		return s;
	cl = answer_canonical(a, al, canon, sizeof canon);
	if (cl <= 0 || ((size_t)cl == al && memcmp(canon, a, al) == 0))
		return s;
	s->canon = strndup(canon, (size_t)cl);
	if (s->canon == NULL)
		goto fail_strings;
	s->canon_len = (size_t)cl;
	return s;
fail_strings:
	certainty_answer_forget(s);
	return NULL;
}

/* certainty_mentions(answer, text, len, last) from the scan (*entry: the answer's); -1
 * without memory. */
static int
certainty_scan_mentions(struct certainty_scan *sc, const char *answer, const char *text,
    size_t len, size_t *last, struct certainty_answer_scan **entry)
{
	struct certainty_answer_scan *s;
	size_t lr, lc;
	unsigned n;

	*last = len;
	s = *entry = certainty_scan_answer(sc, answer);
	if (s == NULL)
		return -1;
	if (text == NULL || s->raw_len == 0)
		return 0;
	n = certainty_needle_advance(&s->nraw, s->raw, s->raw_len, text, len, &lr);
	if (n == 0 && s->canon != NULL) {
		/* advanced only while the raw form is not found: it catches up when needed */
		unsigned nc = certainty_needle_advance(&s->ncanon, s->canon, s->canon_len, text,
		    len, &lc);
		if (nc > 0) {
			*last = lc;
			return (int)nc;
		}
	}
	if (n > 0)
		*last = lr;
	return (int)n;
}

/* Balances the unclosed box b over text[b->i .. len); true when it closed (at b->i). */
static bool
certainty_box_balance(struct certainty_open_box *b, const char *text, size_t len)
{
	size_t i;

	for (i = b->i; i < len; i++) {
		if (text[i] == '{')
			b->depth++;
		else if (text[i] == '}' && --b->depth == 0)
			break;
	}
	b->i = i;
	return i < len;
}

/* certainty_last_boxed(text, len, ...) from the scan: the content's length (its offset in
 * *start), -1 when there is none, -2 when the scan gave up (too many unclosed boxes: the
 * caller asks certainty_last_boxed). */
static int
certainty_scan_last_boxed(struct certainty_scan *s, const char *text, size_t len, size_t *start)
{
	const char *hit;
	size_t k, j, n;

	if (s->overflow)
		return -2;
	/* the unclosed ones over the new bytes: one closing becomes the last closed when it
	 * starts later (they are in start order) */
	for (k = 0; k < s->nopen; k++)
		if (certainty_box_balance(&s->open[k], text, len) &&
		    (!s->closed || s->open[k].start > s->closed_start)) {
			s->closed = true;
			s->closed_start = s->open[k].start;
			s->closed_end = s->open[k].i;
		}
	for (k = 0, j = 0; k < s->nopen; k++)
		if (s->open[k].depth > 0 && (!s->closed || s->open[k].start > s->closed_start))
			s->open[j++] = s->open[k];
	s->nopen = j;
	/* new "\boxed{" occurrences, each later than all before */
	while (s->box_from + 7 <= len &&
	    (hit = certainty_find(text + s->box_from, len - s->box_from, "\\boxed{", 7)) !=
	    NULL) {
		struct certainty_open_box b;
		size_t h = (size_t)(hit - text);
		b.start = h + 7;
		b.i = h + 7;
		b.depth = 1;
		s->box_from = h + 1;
		if (certainty_box_balance(&b, text, len)) {
			s->closed = true;
			s->closed_start = b.start;
			s->closed_end = b.i;
			s->nopen = 0;
			continue;
		}
		if (s->nopen == CERTAINTY_SCAN_OPEN) {
			s->overflow = true;
			return -2;
		}
		s->open[s->nopen++] = b;
	}
	if (len >= 7 && s->box_from < len - 6)
		s->box_from = len - 6;
	if (!s->closed)
		return -1;
	*start = s->closed_start;
	n = s->closed_end - s->closed_start;
	return (int)(n > INT32_MAX ? INT32_MAX : n);
}

/* The remembered verdicts on answer a (computed at the first ask); NULL when a is too long
 * to be remembered. */
static const struct certainty_memo_valid *
certainty_scan_memo(struct certainty_scan *s, const char *a, const char *problem)
{
	struct certainty_memo_valid *e;
	size_t al = strlen(a), k;

	if (al == 0 || al > CERTAINTY_MEMO_LEN)
		return NULL;
	if (s->vproblem != problem) {
		memset(s->valid, 0, sizeof s->valid);
		s->vproblem = problem;
	}
	for (k = 0; k < CERTAINTY_MEMO_VALID; k++)
		if (strcmp(s->valid[k].a, a) == 0)
			return &s->valid[k];
	e = &s->valid[s->valid_next++ % CERTAINTY_MEMO_VALID];
	memcpy(e->a, a, al + 1);
	e->valid = certainty_valid(a, problem);
	e->hesitant = certainty_probe_hesitant(a);
	return e;
}

/* certainty_valid(a, problem), remembered (s may be NULL). */
static bool
certainty_scan_valid(struct certainty_scan *s, const char *a, const char *problem)
{
	const struct certainty_memo_valid *e;

	if (a[0] == '\0')
		return false;
	e = s != NULL ? certainty_scan_memo(s, a, problem) : NULL;
	return e != NULL ? e->valid : certainty_valid(a, problem);
}

/* certainty_probe_hesitant(a), remembered (s may be NULL). */
static bool
certainty_scan_hesitant(struct certainty_scan *s, const char *a, const char *problem)
{
	const struct certainty_memo_valid *e;

	e = s != NULL && a[0] != '\0' ? certainty_scan_memo(s, a, problem) : NULL;
	return e != NULL ? e->hesitant : certainty_probe_hesitant(a);
}

/* The kept comparison form of answer a (al <= CERTAINTY_MEMO_LEN bytes), computed when new;
 * NULL when it has none. */
static const struct certainty_form *
certainty_scan_form(struct certainty_scan *s, const char *a, size_t al)
{
	struct certainty_form *e = &s->forms[0];
	size_t k;

	for (k = 0; k < CERTAINTY_FORMS; k++) {
		struct certainty_form *x = &s->forms[k];
		if (x->used != 0 && strcmp(x->a, a) == 0) {
			x->used = ++s->form_tick;
			return x->flen >= 0 ? x : NULL;
		}
		if (x->used < e->used)
			e = x;
	}
	memcpy(e->a, a, al + 1);
	e->flen = answer_form(a, al, e->f, sizeof e->f);
	if (e->flen < 0)
		e->flen = -1;
	e->used = ++s->form_tick;
	return e->flen >= 0 ? e : NULL;
}

/* certainty_same(a, b), remembered for answers that differ byte-wise (s may be NULL). */
static bool
certainty_scan_same(struct certainty_scan *s, const char *a, const char *b)
{
	const struct certainty_form *fa, *fb;
	struct certainty_memo_same *e;
	size_t al, bl, k;

	if (strcmp(a, b) == 0)
		return true;
	/* An empty answer (a probe that gave none: the walk back over a chain's probes reaches
	 * one every decision) is remembered too: an unused entry ("", "") cannot match, as a
	 * pair of equal strings returns above. */
	if (s == NULL || (al = strlen(a)) > CERTAINTY_MEMO_LEN ||
	    (bl = strlen(b)) > CERTAINTY_MEMO_LEN)
		return answer_equivalent(a, b);
	for (k = 0; k < CERTAINTY_MEMO_SAME; k++)
		if (strcmp(s->same[k].a, a) == 0 && strcmp(s->same[k].b, b) == 0)
			return s->same[k].same;
	e = &s->same[s->same_next++ % CERTAINTY_MEMO_SAME];
	memcpy(e->a, a, al + 1);
	memcpy(e->b, b, bl + 1);
	/* both forms kept: compared without canonicalizing again (b's lookup cannot evict a's:
	 * a's entry is the most recently used) */
	fa = certainty_scan_form(s, a, al);
	fb = fa != NULL ? certainty_scan_form(s, b, bl) : NULL;
	e->same = fb != NULL ? answer_forms_equivalent(fa->f, (size_t)fa->flen, fb->f,
	    (size_t)fb->flen) : answer_equivalent(a, b);
	return e->same;
}

/* The text features of chain c (mentions of the valid answer ans, hesitation markers,
 * \boxed, the last complete box against ans) from its scan; -1 without memory. */
static int
certainty_scan_text(struct certainty_scan *s, const struct sched_policy *p,
    const struct sched_chain *c, const char *ans, struct certainty_chain *out)
{
	struct certainty_answer_scan *e = NULL;
	const char *text = c->text;
	size_t len = c->text_len, g, last, bstart = SIZE_MAX;
	int m, bl;

	if (text == NULL)
		return -1;   /* nothing to scan: the full path is free */
	g = s->glen;
	if (len < s->len || (g > 0 && memcmp(text + s->len - g, s->guard, g) != 0))
		certainty_scan_reset(s);
	if (out->valid) {
		m = certainty_scan_mentions(s, ans, text, len, &last, &e);
		if (m < 0)
			return -1;
		out->mentions = (unsigned)m;
		out->grounded = out->mentions > 0;
		out->since_mention = out->grounded ? len - last : len;
	}
	out->hesitation_count = certainty_scan_hesitation(s, text, len, p->hesitation_window);
	if (!s->boxed) {
		s->boxed = s->boxed_from + 6 <= len &&
		    certainty_find(text + s->boxed_from, len - s->boxed_from, "\\boxed",
		    6) != NULL;
		if (!s->boxed && len >= 6)
			s->boxed_from = len - 5;
	}
	out->boxed = s->boxed;
	bl = certainty_scan_last_boxed(s, text, len, &bstart);
	if (out->boxed && out->valid) {
		char box[256];
		if (bl == -2)
			bl = certainty_last_boxed(text, len, box, sizeof box);
		else if (bl > 0 && (size_t)bl < sizeof box) {
			memcpy(box, text + bstart, (size_t)bl);
			box[bl] = '\0';
		}
		if (bl > 0 && (size_t)bl < sizeof box) {
			/* the same box against the same answer: the same verdict */
			if (!e->box_cached || e->box_start != bstart || e->box_len != bl) {
				e->box_agree = certainty_same(box, ans) ? 1 : -1;
				e->box_cached = bstart != SIZE_MAX;
				e->box_start = bstart;
				e->box_len = bl;
			}
			out->box = e->box_agree;
		}
	}
	s->len = len;
	s->glen = len < CERTAINTY_SCAN_GUARD ? len : CERTAINTY_SCAN_GUARD;
	memcpy(s->guard, text + len - s->glen, s->glen);
	return 0;
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
	double level = p->model_confidence > 0 ? p->model_confidence : 0.5;
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
	out->valid = certainty_scan_valid(c->scan, ans, problem);
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
			if (!certainty_scan_same(c->scan, a, ans))
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
				if (certainty_scan_valid(c->scan, a, problem)) {
					out->best = a;
					out->ever_valid = true;
					break;
				}
			}
		}
	}
	out->stable_tokens = c->tokens > first ? c->tokens - first : 0;
	if (c->scan == NULL || certainty_scan_text(c->scan, p, c, ans, out) != 0)
		certainty_text_full(p, c, ans, out);
	out->probe_hesitant = certainty_scan_hesitant(c->scan, ans, problem);
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
	x[9] = out->confidence >= 0 ? out->confidence - level : 0;
	x[10] = log2(1.0 + out->mentions);
	x[11] = out->grounded && out->since_mention <= 2 * (size_t)p->hesitation_window;
	x[12] = out->box > 0;
	x[13] = out->box < 0;
	x[14] = out->min_prob >= 0 ? out->min_prob - level : 0;
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

/*
 * The highest sc.vote_threshold at which the vote is decided when the unfinished, unsettled
 * valid chains with chain certaindex >= it vote as finished (-1: at none).  Adding voters
 * only makes the vote more decided (a voter for the majority raises it, one for another
 * answer raises that answer by one and lowers the open chains by one), so adding them from
 * the most certain down, the first that decides the vote gives the level.
 */
static double
certainty_vote_level(const struct sched_view *v, const struct certainty_chain *cc, size_t n,
    const size_t *bucket_of, size_t best, const struct certainty_bucket *b, size_t nb,
    size_t open)
{
	size_t fin[CERTAINTY_MAX_SC], order[CERTAINTY_MAX_SC], m = 0, i, j, k;

	for (j = 0; j < nb; j++)
		fin[j] = b[j].finished;
	for (i = 0; i < n; i++) {
		if (v->chains[i].finished || cc[i].settled || bucket_of[i] == SIZE_MAX)
			continue;
		for (k = m++; k > 0 && cc[order[k - 1]].certaindex < cc[i].certaindex; k--)
			order[k] = order[k - 1];
		order[k] = i;
	}
	for (k = 0; k < m; k++) {
		size_t second = 0;

		fin[bucket_of[order[k]]]++;
		open--;
		for (j = 0; j < nb; j++)
			if (j != best && fin[j] > second)
				second = fin[j];
		if (fin[best] > second + open)
			return cc[order[k]].certaindex;
	}
	return -1;
}

/*
 * Whether the started chains can still decide the vote of all of them (staged sc) without the
 * `pending` ones: some answer can still get more finished or settled votes than any other
 * answer has plus the pending chains, if every `open` started chain (unfinished, unsettled)
 * ended with it; an answer nobody has yet counts too.
 */
static bool
certainty_started_decide(const struct certainty_bucket *b, size_t nb, size_t open,
    size_t pending)
{
	size_t j, k, most = 0;

	for (j = 0; j < nb; j++) {
		size_t other = 0;
		for (k = 0; k < nb; k++)
			if (k != j && b[k].finished > other)
				other = b[k].finished;
		if (b[j].finished + open > other + pending)
			return true;
		if (b[j].finished > most)
			most = b[j].finished;
	}
	return open > most + pending;
}

void
certainty_program_eval(const struct sched_policy *p, const struct sched_view *v,
    struct certainty_program *out, struct certainty_chain *chains_out)
{
	struct certainty_chain local[CERTAINTY_MAX_SC], *cc;
	struct certainty_bucket b[CERTAINTY_MAX_SC];
	size_t bucket_of[CERTAINTY_MAX_SC];
	size_t n = v->nchains, nb = 0, i, j, best = 0, unfinished = 0, second = 0, total;
	size_t pending = v->algo == SCHED_ALGO_SC ? v->pending : 0;
	size_t counts[CERTAINTY_MAX_SC];
	double sum_c = 0, min_c = 1, dissent = 0;
	struct sched_features *f = &out->features;

	memset(out, 0, sizeof *out);
	out->answer = "";
	out->vote_level = -1;
	f->probe_confidence = -1;
	if (n > CERTAINTY_MAX_SC)
		n = CERTAINTY_MAX_SC;
	if (n == 0)
		return;
	cc = chains_out != NULL ? chains_out : local;
	for (i = 0; i < n; i++)
		certainty_chain_eval(p, &v->chains[i], v->problem, &cc[i]);

	if (v->algo != SCHED_ALGO_SC || (n == 1 && pending == 0)) {
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

	/* sc: vote over finished answers and valid probe answers; pending chains are unfinished
	 * and have none. */
	if (pending > CERTAINTY_MAX_SC - n)
		pending = CERTAINTY_MAX_SC - n;
	total = n + pending;
	unfinished = pending;
	for (i = 0; i < n; i++) {
		bucket_of[i] = SIZE_MAX;
		if (!v->chains[i].finished && !cc[i].settled)
			unfinished++;
		if (cc[i].ever_valid)
			out->any_valid = true;
		if (!cc[i].valid)
			continue;
		/* remembered in chain i's scan: the same pairs meet again at the next step */
		for (j = 0; j < nb; j++)
			if (certainty_scan_same(v->chains[i].scan, cc[b[j].first].answer,
			    cc[i].answer))
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
	if (pending > 0)
		out->stalled = !certainty_started_decide(b, nb, unfinished - pending, pending);
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
	out->agreement = (double)b[best].votes / (double)total;
	out->entropy = certainty_entropy(counts, nb, total);
	out->vote_level = b[best].finished > second + unfinished ? CERTAINTY_VOTE_ALWAYS :
	    certainty_vote_level(v, cc, n, bucket_of, best, b, nb, unfinished);
	{
		/* Staged sc with sc.staged = 2: chains certain at cot.threshold vote too. */
		double tv = p->sc_vote_threshold;
		if ((v->staged || v->pending > 0) && p->sc_staged == 2 && p->cot_threshold < tv)
			tv = p->cot_threshold;
		out->decided = out->vote_level > 1 || (tv <= 1 && out->vote_level >= tv);
	}
	/* the same with finished chains only (settled ones count as unfinished) */
	{
		size_t fin_best = 0, fin_second = 0, open = pending;
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
