/*
 * test_answer.c — answer canonicalization, equivalence, placeholders, hashing.
 *
 * The real pairs come from the recorded traces (final answer vs reference answer, with the
 * traces' grader verdict); tests/unit/answer_pairs.inc is regenerated with
 *     scripts/extract_answer_pairs.py TRACES_DIR > tests/unit/answer_pairs.inc
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler/answer.h"

struct pair {
	const char *a, *b;
};

/* Real (final_answer, target) pairs the grader judged equivalent, one or more per rule. */
static const struct pair real_equal[] = {
	{"25", "025"},                                   /* leading zeros (AIME) */
	{"80", "080"},
	{"36", "36"},                                    /* numeric target 36.0 */
	{"-1", "-1"},
	{"(3,\\frac{\\pi}{2})", "\\left( 3, \\frac{\\pi}{2} \\right)"},
	{"p-q", "p - q"},                                /* spacing */
	{"Evelyn", "\\text{Evelyn}"},                    /* \text unwrapped */
	{"90", "90^\\circ"},                             /* degrees */
	{"120", "120^\\circ"},
	{"6-5i", "6 - 5i"},
	{"5", "x=5"},                                    /* single-variable left side */
	{"11\\sqrt{2}", "11\\sqrt2"},                    /* \sqrt2 */
	{"70\\sqrt{2}", "70 \\sqrt{2}"},
	{"\\cotx", "\\cot x"},                           /* whitespace-stripped command */
	{"\\begin{pmatrix}-\\frac{1}{3}\\\\\\frac{2}{3}\\\\\\frac{5}{3}\\end{pmatrix}",
	 "\\begin{pmatrix} -1/3 \\\\ 2/3 \\\\ 5/3 \\end{pmatrix}"},       /* a/b in a matrix */
	{"[\\frac{\\pi^2}{8},\\frac{5\\pi^2}{4}]",
	 "\\left[ \\frac{\\pi^2}{8}, \\frac{5 \\pi^2}{4} \\right]"},        /* ^2 vs ^{2} */
	{"0.35625", ".35625"},                           /* leading dot */
	{"0.0000672", ".0000672"},
	{"(-\\infty,2)\\cup(3,\\infty)", "(-\\infty, 2) \\cup (3, \\infty)"},
	{"2x+3", "y = 2x + 3"},
	{"-2x", "y = -2x"},
	{"18.90", "\\$18.90"},                           /* currency */
	{"36", "\\$36"},
	{"137\\frac{1}{2}", "137 \\frac{1}{2}"},         /* mixed number */
	{"8n^2+4n+1", "8n^2 + 4n + 1"},
	{"\\frac{5}{9}", "\\frac 59"},                   /* \frac shorthand */
	{"\\frac{1}{4}", "\\frac14"},
	{"\\begin{pmatrix}-1&0\\\\0&-1\\end{pmatrix}",
	 "\\begin{pmatrix} -1 & 0 \\\\ 0 & -1 \\end{pmatrix}"},
	{"\\frac{33}{100}", "\\dfrac{33}{100}"},         /* \dfrac */
	{"(\\frac{3}{5},\\frac{8}{3}]", "\\left(\\frac{3}{5},\\frac{8}{3}\\right]"},
	{"B", "\\text{(B)}"},                            /* multiple choice */
	{"58500", "58,500"},                             /* thousands separator */
	{"32348", "\\$32,\\!348"},
	{"11(1+\\sqrt{5})", "11 \\sqrt{5} + 11"},        /* numeric value */
	{"[-2,7]", "x \\in [-2,7]"},                     /* x \in */
	{"4210_5", "4210_{5}"},                          /* _5 vs _{5} */
	{"east", "\\text{east}"},
	{"East", "\\text{east}"},                        /* case of a word */
	{"\\frac{270}{7}", "\\frac{270}7\\text{ degrees}"},  /* unit text dropped */
	{"0.09", "\\frac{9}{100}"},                      /* decimal vs fraction */
	{"(\\frac{3}{2},-13)", "\\left( \\frac{3}{2}, -13 \\right)"},
	{"5x-7y+11z+4=0", "5x - 7y + 11z + 4 = 0"},
	{"(2,12)\\cup(12,102)", "(2,12) \\cup (12,102)"},
};

/* Real pairs the grader judged different (and so do we). */
static const struct pair real_unequal[] = {
	{"17", "371"},
	{"229", "073"},
	{"\\frac{36000}{469}", "080"},
	{"0", "9"},
	{"34", "4"},
	{"117+41i", "6+9i"},
	{"1", "1,-2"},                                   /* not a thousands group */
	{"7", "3, 5, 7"},
	{"-\\frac{35}{64}", "\\frac{35}{64}"},           /* sign matters */
	{"-\\frac{9}{100}", "\\frac{9}{100}"},
	{"13", "1 \\pm \\sqrt{19}"},
	{"E", "\\text{east}"},                           /* a letter is not a word */
	{"E", "\\text{Evelyn}"},
	{"\\frac{-1-\\sqrt{5}}{4}", "-2"},
	{"20", "\\frac{270}7\\text{ degrees}"},
	{"32352", "\\$32,\\!348"},
	{"3-2\\sqrt{2}", "3 \\pm 2 \\sqrt{2}"},
	{"(2,\\4)", "(2,4)"},                            /* garbage command stays */
	{"56.3", "55^\\circ"},
	{"60", "90^\\circ"},
	{"-2,1", "1,-2"},                                /* lists are ordered */
	{"2516", "2516_8"},                              /* base subscript matters */
	{"52", "52_8"},
	{"4343", "4343_6"},
	{"\\frac{1}{6}", "\\frac{1}{3}"},
	{"5", "1\\frac{4}{5}"},                          /* mixed number 1 4/5 */
	{"0.1", "1\\frac{4}{5}"},
	{"2.121112112112122", "\\frac{14}{3}"},
	{"{-2,1-\\sqrt{5},1+\\sqrt{5}}", "\\{1\\pm\\sqrt{5},-2\\}"},
	{"2.299", "1+2\\sqrt{3}"},
	{"", "2"},
	{"-1", "(6,31,-1)"},
	{"1", "-1"},
	{"x^2+y^2+z^2=36", "288 \\pi"},                  /* equation is not "x = value" */
	{"8thgradeshouldhave10representatives", "10"},
	{"1-\\sqrt{19}", "1 \\pm \\sqrt{19}"},
	{"\\frac{4}{9}", "\\frac{1}{2}"},
	{"\\frac{10000}{\\pi}", "\\frac{20000}{\\pi}"},
	{"1", "p - q"},
	{"9", "70 \\sqrt{2}"},
	{"-3", "x^5 - x^4 + x^3 - x^2 + x - 1"},
	{"3.221122221122", "\\frac{14}{3}"},             /* tolerance is tight */
	{"1", "\\frac{1}{16}"},
};

/* Hand-made cases, one group per rule. */
static const struct pair hand_equal[] = {
	{"\\left(3,\\dfrac{\\pi}{2}\\right)", "(3,\\frac{\\pi}{2})"},
	{"\\tfrac{1}{2}", "\\frac{1}{2}"},
	{"\\boxed{42}", "42"},
	{"\\boxed{\\frac{1}{2}}", "0.5"},
	{"42}", "42"},                                   /* unbalanced trailing brace */
	{"{{7}}", "7"},
	{"$5$", "5"},
	{"\\(5\\)", "5"},
	{"7.", "7"},                                     /* trailing dot */
	{"7.0", "7"},
	{"007.500", "7.5"},
	{"5.5", "\\frac{11}{2}"},
	{"11/2", "\\frac{11}{2}"},
	{"-1/3", "-\\frac{1}{3}"},
	{"(a+b)/2", "\\frac{a+b}{2}"},
	{"\\pi/2", "\\frac{\\pi}{2}"},
	{"3\\pi/2", "\\frac{3\\pi}{2}"},
	{"\\sqrt{2}/2", "\\frac{\\sqrt2}{2}"},
	{"x^2", "x^{2}"},
	{"1,000", "1000"},
	{"1,000,000", "1000000"},
	{"50\\%", "50"},
	{"50%", "50"},
	{"30^{\\circ}", "30"},
	{"30\xc2\xb0", "30"},                            /* degree sign */
	{"\\pi", "\xcf\x80"},
	{"2\\pi", "6.283185307179586"},
	{"\\sqrt{2}", "\xe2\x88\x9a" "2"},
	{"\xe2\x88\x92" "3", "-3"},                      /* Unicode minus */
	{"15\\text{ cm}", "15"},
	{"864\\mbox{ inches}^2", "864"},
	{"12\\,\\text{inches}", "12"},
	{"1\\,000", "1000"},
	{"10\\!", "10"},
	{"a\\ b", "ab"},
	{"(A)", "A"},
	{"\\textbf{(C)}", "C"},
	{"\\text{(D)}", "(D)"},
	{"x = \\frac{1}{2}", "0.5"},
	{"\\theta = 30^\\circ", "30"},
	{"a_1 = 3", "3"},
	{"f(x)=2x+1", "2x+1"},
	{"2+3=5", "5"},
	{"5!", "120"},
	{"2^{10}", "1024"},
	{"\\sqrt[3]{27}", "3"},
	{"2\\frac{1}{2}", "2.5"},
	{"-2\\frac{1}{2}", "-2.5"},
	{"\\frac{\\sqrt{3}}{2}", "0.8660254037844386"},
	{"(1, 2)", "(1,2)"},
	{"(0.5, \\frac{1}{3})", "(\\frac12, 1/3)"},
	{"[1, 2)", "[1,2)"},
	{"\\{1, 2\\}", "\\left\\{1,2\\right\\}"},
	{"\\begin{pmatrix} 1/2 \\\\ 3 \\end{pmatrix}", "\\begin{pmatrix}0.5\\\\3.0\\end{pmatrix}"},
	{"\\\\frac{10000}{\\\\pi}", "\\frac{10000}{\\pi}"},  /* double-escaped */
	{"\\fracab", "\\frac{a}{b}"},                    /* whitespace-stripped */
	{"\\sqrtx", "\\sqrt{x}"},
	{"5\\le x", "5\\leq x"},
	{"YES", "yes"},
	{"1.5e", "1.5e"},
	{"100", "1\\times10^2"},
	{"0", "-0"},
	{"1e-13", "1e-13"},
};

static const struct pair hand_unequal[] = {
	{"1,2", "12"},                                   /* not groups of three */
	{"1,2345", "12345"},
	{"(1,000)", "(1000)"},                           /* a tuple stays a tuple */
	{"[1,2)", "(1,2)"},                              /* interval ends matter */
	{"(1,2)", "(2,1)"},
	{"(1,2)", "(1,2,3)"},
	{"x", "y"},
	{"x+1", "1+y"},
	{"2\\frac{1}{2}", "1"},                          /* 2 1/2, not 2 * 1/2 */
	{"0.333", "\\frac{1}{3}"},
	{"1.0000001", "1"},
	{"x=5", "x=6"},
	{"x^2=5", "5"},                                  /* left side is not one variable */
	{"15\\text{ cm}", "16"},
	{"\\text{A}", "\\text{B}"},
	{"A", "B"},
	{"2^{2}", "2^{3}"},
	{"\\sqrt{2}", "\\sqrt{3}"},
	{"\\infty", "-\\infty"},
	{"3\\pi", "3"},
	{"1\\cup2", "1,2"},
	{"a", "A"},                                      /* single letters keep case */
	{"1\\frac{1}{2}x", "1.5"},
	{"\\frac{1}{0}", "\\frac{1}{0}x"},
};

struct canon_case {
	const char *in, *out;
};

static const struct canon_case canon_cases[] = {
	{"\\left( 3, \\dfrac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})"},
	{"080", "80"},
	{"7.0", "7"},
	{".5", "0.5"},
	{"\\frac12", "\\frac{1}{2}"},
	{"\\sqrt2", "\\sqrt{2}"},
	{"x^2+1", "x^{2}+1"},
	{"1/2", "\\frac{1}{2}"},
	{"\\boxed{x = 5}", "5"},
	{"90^\\circ", "90"},
	{"\\$1,000.", "1000"},
	{"\\text{(B)}", "B"},
	{"\\text{East}", "east"},
	{"15\\mbox{ cm}^2", "15"},
	{"  ", ""},
	{"\\cot x", "\\cot x"},
	{"\\pi r^2", "\\pi r^{2}"},
	{"\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}"},
	{"6 - 1 = 5", "5"},
	{"x \\in [1, 2)", "[1,2)"},
	{"\\sqrt[3]{2}", "\\sqrt[3]{2}"},
};

static void test_canonical_forms(void **state)
{
	(void)state;
	char out[256];
	for (size_t i = 0; i < sizeof(canon_cases) / sizeof(canon_cases[0]); i++) {
		const char *in = canon_cases[i].in;
		int n = answer_canonical(in, strlen(in), out, sizeof(out));
		if (n < 0 || strcmp(out, canon_cases[i].out) != 0)
			fail_msg("canonical(%s) = %s (%d), want %s", in, n < 0 ? "?" : out, n,
				 canon_cases[i].out);
		assert_int_equal(n, (int)strlen(canon_cases[i].out));
	}
}

static void check_pairs(const struct pair *p, size_t n, bool want)
{
	for (size_t i = 0; i < n; i++) {
		bool ab = answer_equivalent(p[i].a, p[i].b);
		bool ba = answer_equivalent(p[i].b, p[i].a);
		if (ab != want || ba != want)
			fail_msg("equivalent(\"%s\", \"%s\") = %d/%d, want %d", p[i].a, p[i].b, ab,
				 ba, want);
	}
}

static void test_real_equal(void **state)
{
	(void)state;
	assert_true(sizeof(real_equal) / sizeof(real_equal[0]) >= 40);
	check_pairs(real_equal, sizeof(real_equal) / sizeof(real_equal[0]), true);
}

static void test_real_unequal(void **state)
{
	(void)state;
	assert_true(sizeof(real_unequal) / sizeof(real_unequal[0]) >= 40);
	check_pairs(real_unequal, sizeof(real_unequal) / sizeof(real_unequal[0]), false);
}

static void test_hand_equal(void **state)
{
	(void)state;
	check_pairs(hand_equal, sizeof(hand_equal) / sizeof(hand_equal[0]), true);
}

static void test_hand_unequal(void **state)
{
	(void)state;
	check_pairs(hand_unequal, sizeof(hand_unequal) / sizeof(hand_unequal[0]), false);
}

struct trace_pair {
	const char *answer, *target;
	bool correct;
	const char *file;
};

static const struct trace_pair trace_pairs[] = {
#include "tests/unit/answer_pairs.inc"
};

/* The bar: agree with the traces' grader on >= 98% of the distinct real pairs. */
static void test_agrees_with_grader(void **state)
{
	(void)state;
	size_t n = sizeof(trace_pairs) / sizeof(trace_pairs[0]), agree = 0, files = 0;
	const char *last = "";
	assert_true(n >= 300);
	for (size_t i = 0; i < n; i++) {
		bool eq = answer_equivalent(trace_pairs[i].answer, trace_pairs[i].target);
		if (eq == trace_pairs[i].correct)
			agree++;
		else
			print_message("  disagree (grader %d): %.60s | %.60s  [%s]\n",
				      trace_pairs[i].correct, trace_pairs[i].answer,
				      trace_pairs[i].target, trace_pairs[i].file);
		if (strcmp(trace_pairs[i].file, last) != 0) {
			files++;
			last = trace_pairs[i].file;
		}
	}
	print_message("  agreement with the traces' grader: %zu/%zu = %.2f%% (%zu trace files)\n",
		      agree, n, 100.0 * (double)agree / (double)n, files);
	assert_true(files >= 12);
	assert_true(agree * 100 >= n * 98);
}

struct placeholder_case {
	const char *ans, *problem;
	bool want;
};

static const struct placeholder_case placeholder_cases[] = {
	{"", NULL, true},
	{"   ", NULL, true},
	{"?", NULL, true},
	{"\\\\", NULL, true},
	{"\\", NULL, true},
	{"}", NULL, true},
	{"(,)", NULL, true},
	{"x", NULL, true},
	{"n", "Find n.", true},
	{"\\theta", NULL, true},
	{"\\pi", NULL, false},
	{"\\infty", NULL, false},
	{"\\emptyset", NULL, false},
	{"B", "Which is largest? $\\textbf{(A)}\\ 1 \\qquad \\textbf{(B)}\\ 2$", false},
	{"B", "Let B be a point.", true},
	{"12", "A box holds 12 eggs and 7 apples.", true},
	{"012", "A box holds 12 eggs.", true},
	{"12", "A box holds 120 eggs.", false},
	{"12", "A box holds 3.12 kg.", false},
	{"7.5", "It weighs 7.5 kg.", true},
	{"-3", "Solve x + 3 = 0.", false},
	{"-3", "Given f(-3) = 2.", true},
	{"36", "Find the area.", false},
	{"36", NULL, false},
	{"\\frac{1}{2}", "Half of 1 and 2.", false},
	{"2x+1", NULL, false},
	{"(1,2)", NULL, false},
	{"\\text{even}", NULL, false},
	{"ab", NULL, false},
};

static void test_placeholder(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(placeholder_cases) / sizeof(placeholder_cases[0]); i++) {
		const struct placeholder_case *c = &placeholder_cases[i];
		bool got = answer_is_placeholder(c->ans, c->problem);
		if (got != c->want)
			fail_msg("placeholder(\"%s\", \"%s\") = %d, want %d", c->ans,
				 c->problem ? c->problem : "(null)", got, c->want);
	}
	assert_true(answer_is_placeholder(NULL, NULL));
}

static void test_out_buffer_too_small(void **state)
{
	(void)state;
	char out[8];
	memset(out, 'Z', sizeof(out));
	/* "\frac{1}{2}" is 11 bytes + NUL */
	assert_int_equal(answer_canonical("1/2", 3, out, sizeof(out)), -ENOSPC);
	assert_int_equal(out[0], 'Z');  /* untouched on failure */
	assert_int_equal(answer_canonical("1/2", 3, out, 11), -ENOSPC);
	char exact[12];
	assert_int_equal(answer_canonical("1/2", 3, exact, sizeof(exact)), 11);
	assert_string_equal(exact, "\\frac{1}{2}");
	assert_int_equal(answer_canonical("", 0, out, 1), 0);
	assert_string_equal(out, "");
	assert_int_equal(answer_canonical("5", 1, out, 0), -ENOSPC);
	assert_int_equal(answer_canonical(NULL, 1, out, sizeof(out)), -EINVAL);
	assert_int_equal(answer_canonical("5", 1, NULL, 4), -EINVAL);
}

static void test_too_long(void **state)
{
	(void)state;
	size_t n = ANSWER_MAX_LEN + 1;
	char *a = malloc(n + 1), *b = malloc(n + 1), out[64];
	assert_non_null(a);
	assert_non_null(b);
	memset(a, '1', n);
	a[n] = '\0';
	memcpy(b, a, n + 1);
	assert_int_equal(answer_canonical(a, n, out, sizeof(out)), -E2BIG);
	assert_true(answer_equivalent(a, b));   /* byte-identical */
	b[0] = '2';
	assert_false(answer_equivalent(a, b));
	assert_false(answer_equivalent(a, "1"));
	assert_false(answer_is_placeholder(a, NULL));
	assert_int_equal(answer_hash(a), answer_hash(a));
	assert_true(answer_hash(a) != answer_hash(b));
	/* At the limit it is still canonicalized. */
	a[ANSWER_MAX_LEN] = '\0';
	assert_true(answer_canonical(a, ANSWER_MAX_LEN, b, n + 1) == ANSWER_MAX_LEN);
	free(a);
	free(b);
}

static void test_hash(void **state)
{
	(void)state;
	assert_true(answer_hash("\\left(3,\\dfrac{\\pi}{2}\\right)") == answer_hash("(3,\\frac{\\pi}{2})"));
	assert_true(answer_hash("080") == answer_hash("80"));
	assert_true(answer_hash("0.5") == answer_hash("\\frac12"));
	assert_true(answer_hash("1/2") == answer_hash("\\frac{1}{2}"));
	assert_true(answer_hash("x = 5") == answer_hash("5"));
	assert_true(answer_hash("5") != answer_hash("6"));
	assert_true(answer_hash("x+1") != answer_hash("x+2"));
	assert_true(answer_hash(NULL) == answer_hash(""));
	/* Real equal pairs with equal canonical forms hash equally. */
	char ca[512], cb[512];
	for (size_t i = 0; i < sizeof(real_equal) / sizeof(real_equal[0]); i++) {
		const struct pair *p = &real_equal[i];
		if (answer_canonical(p->a, strlen(p->a), ca, sizeof(ca)) >= 0 &&
		    answer_canonical(p->b, strlen(p->b), cb, sizeof(cb)) >= 0 && strcmp(ca, cb) == 0)
			assert_true(answer_hash(p->a) == answer_hash(p->b));
	}
}

/* xorshift64*: fixed seed, so failures reproduce. */
static uint64_t rng_next(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545F4914F6CDD1DULL;
}

static const char *const fuzz_seeds[] = {
	"\\left( 3, \\dfrac{\\pi}{2} \\right)", "\\frac{270}7\\text{ degrees}", "\\$32,\\!348",
	"\\begin{pmatrix} -1/3 \\\\ 2/3 \\end{pmatrix}", "x \\in [-2,7]", "11 \\sqrt{5} + 11",
	"(-\\infty, 2) \\cup (3, \\infty)", "15\\mbox{ cm}^2", "\\sqrt[3]{2}^{\\frac12}",
	"\\boxed{\\text{(B)}}", "2\\frac{1}{2}", "5!\\times3!", "1,000", "y = 2x + 3",
	"{{{{(((([[[[", "}}}})))]]]]", "\\\\frac{1}{\\\\pi}", "2^-2^-2^-2", "\xcf\x80\xc2\xb2",
};

static const char fuzz_alphabet[] = "0123456789.,/-+*^_{}()[]\\$%=!&| xabAB";
static const char *const fuzz_tokens[] = {
	"\\frac", "\\sqrt", "\\left", "\\right", "\\text{", "\\pi", "\\circ", "\\boxed{", "\\cup",
	"\\begin{pmatrix}", "\\end{pmatrix}", "\\\\", "\\,", "\\in", "=", "^{", "\xc2\xb0",
};

/* Makes one fuzz input in buf: random bytes or a mutated LaTeX answer. */
static size_t fuzz_input(uint64_t *rng, char *buf, size_t cap)
{
	uint64_t r = rng_next(rng);
	size_t n = 0;
	if (r % 4 == 0) {
		n = (size_t)(rng_next(rng) % 64);
		for (size_t i = 0; i < n; i++)
			buf[i] = (char)(rng_next(rng) & 0xff);
	} else {
		const char *seed = fuzz_seeds[rng_next(rng) % (sizeof(fuzz_seeds) / sizeof(fuzz_seeds[0]))];
		n = strlen(seed);
		memcpy(buf, seed, n);
		int muts = (int)(rng_next(rng) % 6) + 1;
		for (int m = 0; m < muts; m++) {
			uint64_t k = rng_next(rng);
			size_t at = n ? (size_t)(rng_next(rng) % (n + 1)) : 0;
			switch (k % 4) {
			case 0: /* delete a byte */
				if (n > 0 && at < n) {
					memmove(buf + at, buf + at + 1, n - at - 1);
					n--;
				}
				break;
			case 1: /* insert a character */
				if (n + 1 < cap) {
					memmove(buf + at + 1, buf + at, n - at);
					buf[at] = fuzz_alphabet[rng_next(rng) % (sizeof(fuzz_alphabet) - 1)];
					n++;
				}
				break;
			case 2: { /* insert a token */
				const char *t = fuzz_tokens[rng_next(rng) %
							   (sizeof(fuzz_tokens) / sizeof(fuzz_tokens[0]))];
				size_t tl = strlen(t);
				if (n + tl < cap) {
					memmove(buf + at + tl, buf + at, n - at);
					memcpy(buf + at, t, tl);
					n += tl;
				}
				break;
			}
			default: /* flip a byte */
				if (n > 0 && at < n)
					buf[at] = (char)(rng_next(rng) & 0xff);
				break;
			}
		}
	}
	buf[n] = '\0';
	return n;
}

static void test_fuzz(void **state)
{
	(void)state;
	const char *env = getenv("ANSWER_FUZZ_ITERS");
	long iters = env ? atol(env) : 100000;
	uint64_t rng = 0x9E3779B97F4A7C15ULL;
	char a[512], b[512], out[4 * ANSWER_MAX_LEN + 512];
	long equal_pairs = 0;
	for (long it = 0; it < iters; it++) {
		size_t an = fuzz_input(&rng, a, 200);
		fuzz_input(&rng, b, 200);
		/* Embedded NULs are fine for answer_canonical (length-delimited). */
		int rc = answer_canonical(a, an, out, sizeof(out));
		assert_true(rc >= 0 || rc == -E2BIG);
		if (rc >= 0)
			assert_int_equal((size_t)rc, strlen(out));
		rc = answer_canonical(a, strlen(a), out, sizeof(out));
		assert_true(rc >= 0 || rc == -E2BIG);
		if (!answer_equivalent(a, a))
			fail_msg("not reflexive at iteration %ld: \"%s\"", it, a);
		bool ab = answer_equivalent(a, b), ba = answer_equivalent(b, a);
		if (ab != ba)
			fail_msg("not symmetric at iteration %ld: \"%s\" vs \"%s\"", it, a, b);
		equal_pairs += ab;
		/* The canonical form of an answer is equivalent to it. */
		if (rc >= 0 && !answer_equivalent(a, out))
			fail_msg("canonical form not equivalent at %ld: \"%s\" -> \"%s\"", it, a, out);
		(void)answer_is_placeholder(a, b);
		(void)answer_hash(a);
	}
	print_message("  fuzz: %ld iterations, %ld equivalent random pairs\n", iters, equal_pairs);
}

/* "\\.\\.\\.\\." canonicalized to "\\" (the dots stripped, one lone backslash left), and
 * "\\" canonicalizes to "": the canonical form was not equivalent to its answer
 * (fuzz_answer).  A trailing lone backslash now goes with the dots. */
static void test_trailing_escaped_dots(void **state)
{
	(void)state;
	static const char *const in[] = {"\\.\\.\\.\\.", "\\.\\.", "x\\.\\.\\.", "5\\", "5\\\\\\"};
	char out[64], again[64];
	for (size_t i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
		int rc = answer_canonical(in[i], strlen(in[i]), out, sizeof(out));
		assert_true(rc >= 0);
		assert_true(answer_canonical(out, strlen(out), again, sizeof(again)) >= 0);
		if (strcmp(out, again) != 0 || !answer_equivalent(in[i], out))
			fail_msg("\"%s\" -> \"%s\" -> \"%s\"", in[i], out, again);
	}
}

/* Deeply nested and long inputs stay within bounds (no recursion without a limit). */
static void test_deep_nesting(void **state)
{
	(void)state;
	static char a[ANSWER_MAX_LEN + 1], b[ANSWER_MAX_LEN + 1];
	const char *units[] = {"(", "{", "[", "\\frac{", "\\sqrt{", "2^-", "-", "\\left("};
	for (size_t u = 0; u < sizeof(units) / sizeof(units[0]); u++) {
		size_t ul = strlen(units[u]), n = 0;
		while (n + ul < ANSWER_MAX_LEN) {
			memcpy(a + n, units[u], ul);
			n += ul;
		}
		a[n] = '\0';
		memcpy(b, a, n + 1);
		b[n - 1] = b[n - 1] == '(' ? '[' : '(';
		assert_true(answer_equivalent(a, a));
		assert_true(answer_equivalent(a, b) == answer_equivalent(b, a));
		(void)answer_is_placeholder(a, a);
		(void)answer_hash(a);
	}
}

/* Each thread works in its own work areas: threads canonicalizing, comparing and hashing at
 * once get what one thread alone gets (with one area shared by all, they overwrite each
 * other's intermediate forms). */
static void *threads_worker(void *arg)
{
	size_t *bad = arg;
	char out[256];
	for (int round = 0; round < 300; round++) {
		for (size_t i = 0; i < sizeof(canon_cases) / sizeof(canon_cases[0]); i++) {
			const char *in = canon_cases[i].in;
			int n = answer_canonical(in, strlen(in), out, sizeof(out));
			if (n < 0 || strcmp(out, canon_cases[i].out) != 0)
				(*bad)++;
		}
		for (size_t i = 0; i < sizeof(real_equal) / sizeof(real_equal[0]); i++)
			if (!answer_equivalent(real_equal[i].a, real_equal[i].b))
				(*bad)++;
		for (size_t i = 0; i < sizeof(real_unequal) / sizeof(real_unequal[0]); i++)
			if (answer_equivalent(real_unequal[i].a, real_unequal[i].b))
				(*bad)++;
	}
	return NULL;
}

/* Plain integers (up to 8 digits, no leading zero) skip the canonicalization passes; the same
 * number after a space takes them.  Both must give the same canonical form, the same
 * placeholder verdict and the same equivalence, near neighbours and the 8-digit edge
 * included (10 digits: 9999999999 and 9999999998 are within the numeric tolerance). */
static void test_plain_int_paths(void **state)
{
	static const char *const problems[] = {
		"Find the sum of 12 and 30.", "What is 1,000 - 7?", "Compute $2^{10}$ and 0.5.",
		"No numbers here.", "Let x = -5 and y = 080.",
	};
	static const unsigned long edge[] = { 12, 30, 80, 1000, 1024, 99999999, 99999998,
	    10000000, 10000001, 999999999, 999999998, 123456789, 9999999999UL, 9999999998UL };
	char ints[64][16], spaced[18], a[64], b[64];
	unsigned long rng = 12345, v;
	size_t n = 0, i, j, k;

	(void)state;
	for (v = 0; v < 12; v++)
		snprintf(ints[n++], sizeof ints[0], "%lu", v);
	for (k = 0; k < sizeof edge / sizeof edge[0]; k++)
		snprintf(ints[n++], sizeof ints[0], "%lu", edge[k]);
	while (n < 64) {
		rng = rng * 6364136223846793005UL + 1442695040888963407UL;
		snprintf(ints[n++], sizeof ints[0], "%lu", (rng >> 33) % 100000000UL);
	}
	for (i = 0; i < n; i++) {
		int la, lb;
		spaced[0] = ' ';
		memcpy(spaced + 1, ints[i], strlen(ints[i]) + 1);   /* at most 15 + NUL */
		la = answer_canonical(ints[i], strlen(ints[i]), a, sizeof a);
		lb = answer_canonical(spaced, strlen(spaced), b, sizeof b);
		assert_int_equal(la, lb);
		assert_string_equal(a, b);
		assert_int_equal(answer_canonical(ints[i], strlen(ints[i]), a, strlen(ints[i])),
		    -ENOSPC);
		for (k = 0; k < sizeof problems / sizeof problems[0]; k++)
			assert_int_equal(answer_is_placeholder(ints[i], problems[k]),
			    answer_is_placeholder(spaced, problems[k]));
		assert_int_equal(answer_is_placeholder(ints[i], NULL),
		    answer_is_placeholder(spaced, NULL));
		for (j = 0; j < n; j++)
			assert_int_equal(answer_equivalent(ints[i], ints[j]),
			    answer_equivalent(spaced, ints[j]));
	}
	/* the problem's own numbers are placeholders on the fast path too */
	assert_true(answer_is_placeholder("12", problems[0]));
	assert_false(answer_is_placeholder("42", problems[0]));
	assert_false(answer_equivalent("99999999", "99999998"));
}

/* answer_forms_equivalent over answer_form()s gives answer_equivalent's verdict, on every
 * pair the other tests use (real, hand-made, the traces' own), both ways round. */
static bool forms_equivalent(const char *a, const char *b, bool *have)
{
	char fa[512], fb[512];
	int la = answer_form(a, strlen(a), fa, sizeof fa);
	int lb = answer_form(b, strlen(b), fb, sizeof fb);

	*have = la >= 0 && lb >= 0;
	return *have && answer_forms_equivalent(fa, (size_t)la, fb, (size_t)lb);
}

static void check_forms(const char *a, const char *b, size_t *n)
{
	bool have, ab = forms_equivalent(a, b, &have), ba;

	if (!have)
		return;
	ba = forms_equivalent(b, a, &have);
	if (ab != answer_equivalent(a, b) || ba != answer_equivalent(b, a))
		fail_msg("forms(\"%s\", \"%s\") = %d/%d, equivalent %d", a, b, ab, ba,
		    answer_equivalent(a, b));
	(*n)++;
}

static void test_forms(void **state)
{
	const struct pair *sets[] = { real_equal, real_unequal, hand_equal, hand_unequal };
	const size_t lens[] = { sizeof real_equal / sizeof real_equal[0],
	    sizeof real_unequal / sizeof real_unequal[0], sizeof hand_equal / sizeof hand_equal[0],
	    sizeof hand_unequal / sizeof hand_unequal[0] };
	size_t n = 0, i, k;
	char small[2];

	(void)state;
	for (k = 0; k < 4; k++)
		for (i = 0; i < lens[k]; i++)
			check_forms(sets[k][i].a, sets[k][i].b, &n);
	for (i = 0; i < sizeof trace_pairs / sizeof trace_pairs[0]; i++)
		check_forms(trace_pairs[i].answer, trace_pairs[i].target, &n);
	assert_true(n >= 400);
	assert_int_equal(answer_form("\\frac12", 8, small, sizeof small), -ENOSPC);
	assert_int_equal(answer_form(NULL, 1, small, sizeof small), -EINVAL);
}

static void test_threads_own_work(void **state)
{
	(void)state;
	enum { NT = 4 };
	pthread_t t[NT];
	size_t bad[NT] = { 0 };
	for (int i = 0; i < NT; i++)
		assert_int_equal(pthread_create(&t[i], NULL, threads_worker, &bad[i]), 0);
	for (int i = 0; i < NT; i++) {
		assert_int_equal(pthread_join(t[i], NULL), 0);
		if (bad[i] != 0)
			fail_msg("thread %d: %zu results differ from one thread's", i, bad[i]);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_canonical_forms),
		cmocka_unit_test(test_real_equal),
		cmocka_unit_test(test_real_unequal),
		cmocka_unit_test(test_hand_equal),
		cmocka_unit_test(test_hand_unequal),
		cmocka_unit_test(test_agrees_with_grader),
		cmocka_unit_test(test_placeholder),
		cmocka_unit_test(test_out_buffer_too_small),
		cmocka_unit_test(test_too_long),
		cmocka_unit_test(test_hash),
		cmocka_unit_test(test_fuzz),
		cmocka_unit_test(test_trailing_escaped_dots),
		cmocka_unit_test(test_deep_nesting),
		cmocka_unit_test(test_threads_own_work),
		cmocka_unit_test(test_plain_int_paths),
		cmocka_unit_test(test_forms),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
