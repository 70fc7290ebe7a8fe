/*
 * test_certainty_scan.c — the incremental text scan (struct certainty_scan) gives exactly the
 * full rescan's chain features: random texts appended in random pieces (splits inside
 * hesitation words, inside "\boxed{", inside numbers), answers that change, a window that
 * slides, texts replaced under the scan, and more unclosed boxes than the scan tracks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler/certainty.h"
#include "scheduler/sched.h"

/* Pieces random texts are made of: hesitation words in several cases, near misses, boxes,
 * braces, numbers and their neighbours, the answers below. */
static const char *const scan_pieces[] = {
	"wait", "Wait", "WAIT", "await", "hmm", "but ", "butter", "but", "alternatively",
	"double-check", "double check", "let me check", "let me", "verify", "mistake",
	"re-examine", "recheck", "not sure", "hold on", "hold", " ", " ", " ", ", ", ". ", "\n",
	"\\boxed{", "\\boxed{12}", "\\boxed{\\frac{1}{2}}", "\\boxed", "{", "}", "}", "12", "123",
	"12.5", "1.5", "11.5", ".", "0", "5", "x", "x = ", "1/2", "\\frac{1}{2}", "\\dfrac12",
	"0.5", "so the answer is ", "abc", "-", "the", "W", "a", "it",
};

static const char *const scan_answers[] = {
	"12", "12.5", "1.5", "5", "\\frac{1}{2}", "0.5", " 12 ", "x", "wait", "abc", "123",
};

static unsigned long scan_rng = 88172645463325252UL;

static unsigned long
scan_rand(void)
{
	scan_rng ^= scan_rng << 13;
	scan_rng ^= scan_rng >> 7;
	scan_rng ^= scan_rng << 17;
	return scan_rng;
}

/* Compares every text-derived result (and the rest) of the two evaluations. */
static void
scan_same(const struct certainty_chain *a, const struct certainty_chain *b, size_t len)
{
	size_t i;

	if (a->mentions != b->mentions || a->grounded != b->grounded ||
	    a->since_mention != b->since_mention || a->hesitation_count != b->hesitation_count ||
	    a->boxed != b->boxed || a->box != b->box || a->valid != b->valid ||
	    a->probe_hesitant != b->probe_hesitant || a->settled != b->settled)
		fail_msg("at %zu bytes: mentions %u/%u since %zu/%zu hesitation %u/%u boxed %d/%d "
		    "box %d/%d", len, a->mentions, b->mentions, a->since_mention, b->since_mention,
		    a->hesitation_count, b->hesitation_count, a->boxed, b->boxed, a->box, b->box);
	for (i = 0; i < CERTAINTY_COT_NFEAT; i++)
		assert_memory_equal(&a->x[i], &b->x[i], sizeof a->x[i]);
	assert_memory_equal(&a->certaindex, &b->certaindex, sizeof a->certaindex);
}

/* Evaluates chain c with and without scan s and compares. */
static void
scan_check(const struct sched_policy *p, struct sched_chain *c, struct certainty_scan *s)
{
	struct certainty_chain full, inc;

	c->scan = NULL;
	certainty_chain_eval(p, c, "Find x.", &full);
	c->scan = s;
	certainty_chain_eval(p, c, "Find x.", &inc);
	c->scan = NULL;
	scan_same(&full, &inc, c->text_len);
}

static void
scan_policy(struct sched_policy *p, uint32_t window)
{
	sched_policy_default(p);
	p->hesitation_window = window;
	p->settle_closed = true;
}

/* A random text of about n bytes into buf (NUL-terminated); returns its length. */
static size_t
scan_text(char *buf, size_t cap, size_t n)
{
	size_t len = 0;

	while (len < n) {
		const char *piece = scan_pieces[scan_rand() % (sizeof scan_pieces /
		    sizeof scan_pieces[0])];
		size_t pl = strlen(piece);
		if (len + pl + 1 > cap)
			break;
		memcpy(buf + len, piece, pl);
		len += pl;
	}
	buf[len] = '\0';
	return len;
}

static void
test_random_appends(void **state)
{
	static char text[8192];
	static const uint32_t windows[] = { 600, 40, 13, 0, 1 };
	struct sched_policy p;
	struct sched_chain c;
	struct certainty_scan *s;
	size_t round, len, at;
	unsigned checks = 0;

	(void)state;
	s = certainty_scan_new();
	assert_non_null(s);
	for (round = 0; round < 400; round++) {
		scan_policy(&p, windows[round % (sizeof windows / sizeof windows[0])]);
		len = scan_text(text, sizeof text, 200 + scan_rand() % 4000);
		memset(&c, 0, sizeof c);
		c.final_answer = "";
		c.answer = scan_answers[scan_rand() % (sizeof scan_answers / sizeof scan_answers[0])];
		c.text = text;
		c.thinking_done = round % 3 == 0;
		certainty_scan_reset(s);
		/* random appends: 1 byte to ~300 bytes, so splits land inside words and boxes */
		for (at = 0; at < len;) {
			size_t add = scan_rand() % 4 == 0 ? 1 + scan_rand() % 3 : 1 + scan_rand() % 300;
			at = at + add > len ? len : at + add;
			c.text_len = at;
			c.tokens = at / 4 + 1;
			if (scan_rand() % 8 == 0)
				c.answer = scan_answers[scan_rand() % (sizeof scan_answers /
				    sizeof scan_answers[0])];
			scan_check(&p, &c, s);
			/* a second evaluation of the same text (the daemon evaluates twice a step) */
			if (scan_rand() % 4 == 0)
				scan_check(&p, &c, s);
			checks++;
		}
	}
	certainty_scan_free(s);
	assert_true(checks > 1000);
}

/* Every split point inside the needles the scan must not miss across appends. */
static void
test_split_needles(void **state)
{
	static const char *const texts[] = {
		"So x = 12. Wait, let me verify: \\boxed{12} and alternatively 123",
		"hmm... \\boxed{\\frac{1}{2}} double-check \\boxed{12",
		"the value 12.5 not 12 nor 12.55 but 112 and 12.",
		"recheck\\boxed{5}} \\boxed{{5}} not sure hold on re-examine",
	};
	static const char *const answers[] = { "12", "\\frac{1}{2}", "12.5", "5", "0.5" };
	struct sched_policy p;
	struct sched_chain c;
	size_t t, a, cut;

	(void)state;
	scan_policy(&p, 30);
	for (t = 0; t < sizeof texts / sizeof texts[0]; t++)
		for (a = 0; a < sizeof answers / sizeof answers[0]; a++)
			for (cut = 0; cut <= strlen(texts[t]); cut++) {
				struct certainty_scan *s = certainty_scan_new();
				assert_non_null(s);
				memset(&c, 0, sizeof c);
				c.final_answer = "";
				c.answer = answers[a];
				c.text = texts[t];
				c.tokens = 100;
				c.text_len = cut;
				scan_check(&p, &c, s);
				c.text_len = strlen(texts[t]);
				scan_check(&p, &c, s);
				certainty_scan_free(s);
			}
}

/* A text replaced under the scan (shorter, or changed before the scanned point) is rescanned. */
static void
test_replaced_text(void **state)
{
	char a[] = "wait wait \\boxed{12} 12 hmm";
	char b[] = "all good here, \\boxed{7} and 7 and nothing else to say";
	struct sched_policy p;
	struct sched_chain c;
	struct certainty_scan *s = certainty_scan_new();

	(void)state;
	assert_non_null(s);
	scan_policy(&p, 600);
	memset(&c, 0, sizeof c);
	c.final_answer = "";
	c.answer = "12";
	c.tokens = 10;
	c.text = a;
	c.text_len = strlen(a);
	scan_check(&p, &c, s);
	c.text = b;   /* longer, different */
	c.text_len = strlen(b);
	scan_check(&p, &c, s);
	c.text = a;   /* shorter */
	c.text_len = strlen(a);
	scan_check(&p, &c, s);
	certainty_scan_free(s);
}

/* More unclosed \boxed{ than the scan tracks: it falls back to the full search. */
static void
test_many_open_boxes(void **state)
{
	char text[2048];
	struct sched_policy p;
	struct sched_chain c;
	struct certainty_scan *s = certainty_scan_new();
	size_t len = 0, i;

	(void)state;
	assert_non_null(s);
	scan_policy(&p, 600);
	len += (size_t)snprintf(text + len, sizeof text - len, "\\boxed{5} ");
	for (i = 0; i < 20; i++)
		len += (size_t)snprintf(text + len, sizeof text - len, "\\boxed{%zu ", i);
	for (i = 0; i < 20; i++)
		len += (size_t)snprintf(text + len, sizeof text - len, "}");
	memset(&c, 0, sizeof c);
	c.final_answer = "";
	c.answer = "5";
	c.tokens = 10;
	c.text = text;
	for (i = 1; i <= len; i += 3) {
		c.text_len = i;
		scan_check(&p, &c, s);
	}
	c.text_len = len;
	scan_check(&p, &c, s);
	certainty_scan_free(s);
}

/* Hesitation markers in texts of any bytes: the words and their neighbours in random case
 * mixed with random bytes (high ones included: no letters in the C locale), appended in
 * random pieces; the scan counts what certainty_hesitation_count counts. */
static void
test_hesitation_bytes(void **state)
{
	static const char *const words[] = {
		"wait", "hmm", "but ", "but", "alternatively", "double-check", "double check",
		"let me check", "verify", "mistake", "re-examine", "recheck", "not sure", "hold on",
		"hold", "let me", "double", "re-", "not",
	};
	static char text[4096];
	static const uint32_t windows[] = { 600, 40, 13, 1 };
	struct sched_policy p;
	struct sched_chain c;
	struct certainty_chain full, inc;
	struct certainty_scan *s = certainty_scan_new();
	size_t round, len, at, i;

	(void)state;
	assert_non_null(s);
	for (round = 0; round < 200; round++) {
		scan_policy(&p, windows[round % 4]);
		for (len = 0; len < sizeof text - 16;) {
			if (scan_rand() % 2 == 0) {
				const char *w = words[scan_rand() % (sizeof words / sizeof words[0])];
				for (i = 0; w[i] != '\0'; i++)
					text[len++] = (char)(scan_rand() % 3 == 0 && w[i] >= 'a' &&
					    w[i] <= 'z' ? w[i] - 'a' + 'A' : w[i]);
			} else {
				text[len++] = (char)(1 + scan_rand() % 255);
			}
		}
		memset(&c, 0, sizeof c);
		c.final_answer = "";
		c.answer = "";
		c.text = text;
		certainty_scan_reset(s);
		for (at = 0; at < len;) {
			at += 1 + scan_rand() % 200;
			if (at > len)
				at = len;
			c.text_len = at;
			c.tokens = at / 4 + 1;
			c.scan = NULL;
			certainty_chain_eval(&p, &c, "Find x.", &full);
			c.scan = s;
			certainty_chain_eval(&p, &c, "Find x.", &inc);
			assert_int_equal(inc.hesitation_count, full.hesitation_count);
			assert_int_equal(full.hesitation_count,
			    certainty_hesitation_count(text, at, p.hesitation_window));
		}
	}
	certainty_scan_free(s);
}

/* Answers probe histories are made of: equivalent forms, placeholders (empty, a variable, a
 * number or a choice the problem states), hesitant ones, and some longer than the scan
 * remembers by content. */
static const char *const memo_answers[] = {
	"", "12", " 12 ", "12.0", "0.5", "\\frac{1}{2}", "1/2", "\\dfrac12", "x", "7", "A", "(B)",
	"wait", "wait, 12", "but no 5", "5", "-7", "\\frac{12345678901234567890}{98765432109876}",
	"\\frac{12345678901234567890}{98765432109876}.", "0.50000000000000000000000000000000000000",
	"0.500000000000000000000000000000000000000", "abc", "Hold on",
};

/* Appends probe i (answer a, at 64 * (i + 1), no token statistics) to c's history and
 * evaluates c without and then with the scan s (full, inc). */
static void
probe_both(struct sched_chain *c, struct sched_probe *probes, size_t i, const char *a,
    const struct sched_policy *p, const char *problem, struct certainty_scan *s,
    struct certainty_chain *full, struct certainty_chain *inc)
{
	probes[i].position = 64 * (i + 1);
	probes[i].answer = a;
	probes[i].confidence = -1;
	probes[i].min_prob = -1;
	probes[i].entropy = -1;
	c->nprobes = i + 1;
	c->scan = NULL;
	certainty_chain_eval(p, c, problem, full);
	c->scan = s;
	certainty_chain_eval(p, c, problem, inc);
	c->scan = NULL;
}

/* The verdicts the scan remembers (validity, hesitation, equivalence of answers) give the
 * evaluation without a scan: random probe histories whose answers repeat, change, come back
 * in equivalent forms and turn invalid, for chains whose problem changes under the scan. */
static void
test_remembered_verdicts(void **state)
{
	static const char *const problems[] = {
		"Find x.", "Seven (7) apples and 12 pears: (A) 5 (B) 7. Find x.",
		"If -7 is a root, find 0.5 of it.",
	};
	char probs[3][64];
	struct sched_probe probes[48];
	struct sched_policy p;
	struct sched_chain c;
	struct certainty_chain full, inc;
	struct certainty_scan *s = certainty_scan_new();
	const size_t na = sizeof memo_answers / sizeof memo_answers[0];
	size_t round, i, k;
	unsigned checks = 0;

	(void)state;
	assert_non_null(s);
	for (k = 0; k < 3; k++)
		snprintf(probs[k], sizeof probs[k], "%s", problems[k]);
	scan_policy(&p, 600);
	for (round = 0; round < 300; round++) {
		/* the same scan across chains: a new problem (another address) or the same one */
		const char *problem = probs[round % 3];
		memset(&c, 0, sizeof c);
		c.final_answer = "";
		c.text = "so the answer is 12 or 0.5, wait, 7";
		c.text_len = strlen(c.text);
		c.probes = probes;
		for (i = 0; i < sizeof probes / sizeof probes[0]; i++) {
			/* mostly the previous answer again, else any */
			const char *a = i > 0 && scan_rand() % 3 != 0 ? probes[i - 1].answer :
			    memo_answers[scan_rand() % na];
			c.tokens = 64 * (i + 1) + scan_rand() % 64;
			c.answer = scan_rand() % 8 == 0 ? memo_answers[scan_rand() % na] : a;
			probe_both(&c, probes, i, a, &p, problem, s, &full, &inc);
			scan_same(&full, &inc, c.text_len);
			assert_int_equal(inc.stable_tokens, full.stable_tokens);
			assert_int_equal(inc.changes, full.changes);
			assert_int_equal(inc.ever_valid, full.ever_valid);
			assert_string_equal(inc.best, full.best);
			checks++;
		}
	}
	certainty_scan_free(s);
	assert_true(checks > 10000);
}

/* The verdicts on pairs of answers a chain compares through its memo and its kept comparison
 * forms (a fresh scan per chain, so each chain's memo and forms start empty) are the
 * unremembered ones: many chains, answers from a pool far larger than the memo and the forms
 * (evictions), with equivalent forms ("3/2", "1.5", "\\frac{3}{2}", " 3/2 ") so both verdicts
 * occur. */
static void
test_shared_equivalence(void **state)
{
	char pool[400][24];
	struct sched_probe probes[24];
	struct sched_policy p;
	struct sched_chain c;
	struct certainty_chain full, inc;
	size_t np = 0, round, i, k;
	unsigned checks = 0, stable_differs = 0;

	(void)state;
	for (k = 0; k < 100; k++) {
		snprintf(pool[np++], sizeof pool[0], "%zu/2", k);
		snprintf(pool[np++], sizeof pool[0], "%zu.5", k / 2);
		snprintf(pool[np++], sizeof pool[0], "\\frac{%zu}{2}", k);
		snprintf(pool[np++], sizeof pool[0], " %zu ", k % 50);
	}
	scan_policy(&p, 600);
	for (round = 0; round < 400; round++) {
		struct certainty_scan *s = certainty_scan_new();
		assert_non_null(s);
		memset(&c, 0, sizeof c);
		c.final_answer = "";
		c.text = "so x is 3/2, or 1.5; wait, 7";
		c.text_len = strlen(c.text);
		c.probes = probes;
		for (i = 0; i < sizeof probes / sizeof probes[0]; i++) {
			const char *a = i > 0 && scan_rand() % 2 != 0 ? probes[i - 1].answer :
			    pool[scan_rand() % np];
			c.tokens = 64 * (i + 1);
			c.answer = scan_rand() % 3 == 0 ? pool[scan_rand() % np] : a;
			probe_both(&c, probes, i, a, &p, "Find x.", s, &full, &inc);
			assert_int_equal(inc.stable_tokens, full.stable_tokens);
			assert_string_equal(inc.best, full.best);
			stable_differs += full.stable_tokens != c.tokens - probes[i].position;
			checks++;
		}
		certainty_scan_free(s);
	}
	assert_true(checks >= 9000);
	assert_true(stable_differs > 0);   /* walks went back over agreeing probes */
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_random_appends),
		cmocka_unit_test(test_split_needles),
		cmocka_unit_test(test_replaced_text),
		cmocka_unit_test(test_many_open_boxes),
		cmocka_unit_test(test_remembered_verdicts),
		cmocka_unit_test(test_shared_equivalence),
		cmocka_unit_test(test_hesitation_bytes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
