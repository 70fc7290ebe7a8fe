/* test_traces.c — unit tests for lib/traces on a synthetic directory written here, plus a check
 * of the real recorded traces when CERTA_TRACES names them. */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include <cmocka.h>

#include "lib/error.h"
#include "lib/log.h"
#include "lib/traces.h"

/* Problem texts: P1 has a double space and a newline so normalization matters. */
#define P1 "What is  6 squared?\nGive a number."
#define P1_JSON "What is  6 squared?\\nGive a number." /* as written in the file */
#define P1_NORM "  What is 6 squared? \t Give a\n\nnumber.  "
#define P2 "\xc3\x9cn\xc3\xaf" "c\xc3\xb6" "d\xc3\xa9 problem: x \xe2\x86\x92 y"
/* Multi-byte text: 2-, 3- and 4-byte sequences around the think tag. */
#define MB_TEXT "<think>\\n\xce\xa3 \xce\xb1\xce\xb2\xce\xb3 \xf0\x9f\x98\x80\xf0\x9f\x98\x80 " \
	"\xe2\x88\x9a\xe2\x88\x9a\xe2\x88\x9a done</think>\\n\\nAnswer: \xc2\xbd"
#define MB_TEXT_LEN 61 /* bytes of MB_TEXT once decoded ("\\n" is one byte) */

#define LONG_TEXT_LEN ((size_t)700000)

struct fixture {
	char dir[256];
	struct traces *tr;
};

/* One JSONL line for model/dataset/seed/problem with the given extra fields. */
static char *
line(const char *model, const char *dataset, int seed, const char *pid, const char *problem,
	const char *target, long tokens, const char *probes, const char *text)
{
	char *s = NULL;
	int n = asprintf(&s,
		"{\"model\": \"%s\", \"dataset\": \"%s\", \"seed\": %d, \"phase\": \"development\", "
		"\"problem_id\": %s, \"problem\": \"%s\", \"target\": %s, \"level\": 3, "
		"\"subject\": \"Algebra\", \"tokens_used\": %ld, \"finished\": true, "
		"\"final_answer\": \"36\", \"final_correct\": false, \"probes\": %s, \"text\": \"%s\"}\n",
		model, dataset, seed, pid, problem, target, tokens, probes, text);

	assert_true(n > 0);
	return s;
}

static void
write_file(const char *dir, const char *name, const char *const *lines, size_t n, bool gz)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (gz) {
		gzFile f = gzopen(path, "wb");

		assert_non_null(f);
		for (size_t i = 0; i < n; i++)
			assert_int_equal(gzwrite(f, lines[i], (unsigned)strlen(lines[i])),
				(int)strlen(lines[i]));
		assert_int_equal(gzclose(f), Z_OK);
	} else {
		FILE *f = fopen(path, "w");

		assert_non_null(f);
		for (size_t i = 0; i < n; i++)
			assert_int_equal(fputs(lines[i], f) >= 0, 1);
		assert_int_equal(fclose(f), 0);
	}
}

static void
make_tmpdir(char *buf, size_t len)
{
	const char *tmp = getenv("TMPDIR");

	snprintf(buf, len, "%s/certa-traces-XXXXXX", tmp != NULL && *tmp ? tmp : "/tmp");
	assert_non_null(mkdtemp(buf));
}

static void
remove_dir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char path[512];

	if (d == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		unlink(path);
	}
	closedir(d);
	rmdir(dir);
}

/*
 * The synthetic set:
 *   m1__ds1__seed_43.jsonl.gz  P1 seed 44, P1 seed 43, a malformed (truncated) line, a blank
 *                              line, a line with a mistyped field, P2 seed 42, a 700 KB line
 *   m1__ds1__seed_42.jsonl     P1 seed 42 (plain text), P1 seed 42 again (duplicate)
 *   m2__ds2__seed_42.jsonl.gz  P2 seed 42 for model m2, multi-byte text without a think tag
 *   README.md, .hidden.jsonl   ignored
 */
static int
setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));
	char *long_text, *a[7], *b[2], *c[1];
	int rc;

	if (fx == NULL)
		return -1;
	make_tmpdir(fx->dir, sizeof(fx->dir));
	a[0] = line("m1", "ds1", 44, "7", P1_JSON, "36.0", 300,
		"[[64, \"3\", 4], [128, \"36\", 5], [192, \"36\", 5]]", "<think>\\nsix times six</think> 36");
	a[1] = line("m1", "ds1", 43, "7", P1_JSON, "36.0", 200,
		"[[128, \"36\", 5], [64, \"6\", 4]]", "<think>\\nhmm</think>\\n36");
	a[2] = strdup("{\"model\": \"m1\", \"dataset\": \"ds1\", \"seed\": 45, \"problem\": \"trunc\n");
	a[3] = strdup("   \n");
	a[4] = line("m1", "ds1", 46, "8", "bad tokens", "1", -5, "[]", "x");
	a[5] = line("m1", "ds1", 42, "\"p-2\"", P2, "0.5", 64,
		"[{\"position\": 64, \"answer\": \"\\\\frac{1}{2}\", \"out_tokens\": 7}]", MB_TEXT);
	long_text = malloc(LONG_TEXT_LEN + 1);
	assert_non_null(long_text);
	memset(long_text, 'a', LONG_TEXT_LEN);
	long_text[LONG_TEXT_LEN] = '\0';
	a[6] = line("m1", "ds1", 42, "9", "long one", "\"x\"", 1000, "[]", long_text);
	free(long_text);
	write_file(fx->dir, "m1__ds1__seed_43.jsonl.gz", (const char *const *)a, 7, true);

	b[0] = line("m1", "ds1", 42, "7", P1_JSON, "36", 100, "[[64, \"6\", 4]]", "<think>a</think>b");
	b[1] = b[0];
	write_file(fx->dir, "m1__ds1__seed_42.jsonl", (const char *const *)b, 2, false);

	c[0] = line("m2", "ds2", 42, "1", P2, "\"\\\\frac12\"", 20, "[]", MB_TEXT);
	write_file(fx->dir, "m2__ds2__seed_42.jsonl.gz", (const char *const *)c, 1, true);
	write_file(fx->dir, "README.md", (const char *const *)c, 1, false);
	write_file(fx->dir, ".hidden.jsonl", (const char *const *)c, 1, false);

	for (int i = 0; i < 7; i++)
		free(a[i]);
	free(b[0]);
	free(c[0]);
	rc = traces_load(fx->dir, &fx->tr);
	if (rc != 0) {
		fprintf(stderr, "traces_load: %s\n", certa_strerror(rc));
		return -1;
	}
	*state = fx;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *fx = *state;

	if (fx != NULL) {
		traces_free(fx->tr);
		remove_dir(fx->dir);
		free(fx);
	}
	return 0;
}

static const struct trace *
find_sample(const struct traces *tr, const char *model, const char *problem, size_t i)
{
	const struct trace *t = NULL;
	int rc = traces_find_sample(tr, model, problem, i, &t);

	if (rc != 0)
		fail_msg("find_sample %s #%zu: %s", model ? model : "(null)", i, certa_strerror(rc));
	return t;
}

static void
test_counts(void **state)
{
	struct fixture *fx = *state;
	const struct traces *tr = fx->tr;

	assert_int_equal(traces_file_count(tr), 3);
	/* 4 good lines in the .gz, 1 in the plain file (its copy is dropped), 1 for m2. */
	assert_int_equal(traces_count(tr), 6);
	/* Truncated JSON, negative tokens_used, duplicate. */
	assert_int_equal(traces_skipped(tr), 3);
	assert_string_equal(traces_dir(tr), fx->dir);
	assert_true(traces_memory(tr) > LONG_TEXT_LEN);
	assert_int_equal(traces_model_count(tr), 2);
	assert_string_equal(traces_model_name(tr, 0), "m1");
	assert_string_equal(traces_model_name(tr, 1), "m2");
	assert_null(traces_model_name(tr, 2));
	assert_int_equal(traces_dataset_count(tr), 2);
	assert_string_equal(traces_dataset_name(tr, 0), "ds1");
	assert_string_equal(traces_dataset_name(tr, 1), "ds2");
	assert_null(traces_dataset_name(tr, 2));
	/* Load order: files by name (seed_42 before seed_43), then lines. */
	assert_string_equal(traces_at(tr, 0)->file, "m1__ds1__seed_42.jsonl");
	assert_int_equal(traces_at(tr, 0)->line, 1);
	assert_string_equal(traces_at(tr, 1)->file, "m1__ds1__seed_43.jsonl.gz");
	assert_int_equal(traces_at(tr, 1)->seed, 44);
	assert_int_equal(traces_at(tr, 3)->line, 6);
	assert_null(traces_at(tr, 6));
}

static void
test_fields(void **state)
{
	struct fixture *fx = *state;
	const struct trace *t = find_sample(fx->tr, "m1", P1, 1);

	assert_string_equal(t->model, "m1");
	assert_string_equal(t->dataset, "ds1");
	assert_int_equal(t->seed, 43);
	assert_string_equal(t->phase, "development");
	assert_string_equal(t->problem_id, "7");
	assert_string_equal(t->problem, P1);
	assert_string_equal(t->target, "36"); /* written as 36.0 */
	assert_int_equal(t->level, 3);
	assert_string_equal(t->subject, "Algebra");
	assert_int_equal(t->tokens_used, 200);
	assert_true(t->finished);
	assert_string_equal(t->final_answer, "36");
	assert_false(t->final_correct);
	assert_string_equal(t->text, "<think>\nhmm</think>\n36");
	assert_int_equal(t->text_len, strlen(t->text));
	/* Probes were out of order in the file. */
	assert_int_equal(t->nprobes, 2);
	assert_int_equal(t->probes[0].position, 64);
	assert_string_equal(t->probes[0].answer, "6");
	assert_int_equal(t->probes[0].out_tokens, 4);
	assert_int_equal(t->probes[1].position, 128);

	t = find_sample(fx->tr, "m1", P2, 0);
	assert_string_equal(t->problem_id, "p-2");
	assert_string_equal(t->target, "0.5");
	assert_int_equal(t->nprobes, 1);
	assert_string_equal(t->probes[0].answer, "\\frac{1}{2}");
	assert_int_equal(t->probes[0].out_tokens, 7);
	assert_int_equal(t->text_len, MB_TEXT_LEN);

	t = find_sample(fx->tr, "m2", P2, 0);
	assert_string_equal(t->target, "\\frac12");

	/* The 700 KB line survived whole. */
	t = find_sample(fx->tr, NULL, "long one", 0);
	assert_int_equal(t->text_len, LONG_TEXT_LEN);
	assert_int_equal(t->nprobes, 0);
	assert_string_equal(t->target, "x");
}

static void
test_find_by_seed(void **state)
{
	struct fixture *fx = *state;
	const struct trace *const *s = NULL;
	const struct trace *t;
	size_t n = 0;

	assert_int_equal(traces_find(fx->tr, "m1", P1, &s, &n), 0);
	assert_int_equal(n, 3);
	assert_int_equal(s[0]->seed, 42);
	assert_int_equal(s[1]->seed, 43);
	assert_int_equal(s[2]->seed, 44);
	assert_string_equal(s[0]->file, "m1__ds1__seed_42.jsonl");
	for (size_t i = 0; i < n; i++)
		assert_ptr_equal(find_sample(fx->tr, "m1", P1, i), s[i]);
	assert_int_equal(traces_find_sample(fx->tr, "m1", P1, 3, &t), CERTA_ENOTFOUND);
	assert_int_equal(traces_find_exact(fx->tr, "m1", P1, &s, &n), 0);
	assert_int_equal(n, 3);
	assert_int_equal(traces_find(fx->tr, "m1", "no such problem", &s, &n), CERTA_ENOTFOUND);
	assert_int_equal(traces_find(fx->tr, "m1", "", &s, &n), CERTA_ENOTFOUND);
	assert_int_equal(traces_find(fx->tr, "m1", NULL, &s, &n), -EINVAL);
	assert_int_equal(traces_find(NULL, "m1", P1, &s, &n), -EINVAL);
	assert_int_equal(traces_find(fx->tr, "m1", P1, NULL, &n), -EINVAL);
	assert_int_equal(traces_find_sample(fx->tr, "m1", P1, 0, NULL), -EINVAL);
}

static void
test_find_normalized(void **state)
{
	struct fixture *fx = *state;
	const struct trace *const *s = NULL, *const *exact = NULL;
	size_t n = 0;
	char *norm;

	assert_int_equal(traces_find_exact(fx->tr, "m1", P1_NORM, &s, &n), CERTA_ENOTFOUND);
	assert_int_equal(traces_find(fx->tr, "m1", P1, &exact, &n), 0);
	assert_int_equal(traces_find(fx->tr, "m1", P1_NORM, &s, &n), 0);
	assert_ptr_equal(s, exact);
	assert_int_equal(n, 3);
	assert_int_equal(traces_find(fx->tr, NULL, "What is 6 squared? Give a number.", &s, &n), 0);
	assert_ptr_equal(s, exact);
	/* Normalization does not paper over other differences. */
	assert_int_equal(traces_find(fx->tr, "m1", "What is 6 squared? Give a number", &s, &n),
		CERTA_ENOTFOUND);
	/* Whitespace is the only thing normalized: the multi-byte problem matches padded. */
	assert_int_equal(traces_find(fx->tr, "m2", "\n " P2 " \n", &s, &n), 0);
	assert_string_equal(s[0]->model, "m2");

	norm = traces_normalize_ws(" a \t\n b  c ");
	assert_string_equal(norm, "a b c");
	free(norm);
	norm = traces_normalize_ws(" \n ");
	assert_string_equal(norm, "");
	free(norm);
}

static void
test_model_select(void **state)
{
	struct fixture *fx = *state;
	const struct trace *const *s = NULL;
	size_t n = 0;

	assert_int_equal(traces_find(fx->tr, NULL, P2, &s, &n), 0);
	assert_string_equal(s[0]->model, "m1");
	assert_int_equal(traces_find(fx->tr, "", P2, &s, &n), 0);
	assert_string_equal(s[0]->model, "m1");
	assert_int_equal(traces_find(fx->tr, "m2", P2, &s, &n), 0);
	assert_int_equal(n, 1);
	assert_string_equal(s[0]->model, "m2");
	assert_string_equal(s[0]->dataset, "ds2");
	assert_int_equal(traces_find(fx->tr, "m3", P2, &s, &n), CERTA_ENOTFOUND);
	/* P1 exists only for m1. */
	assert_int_equal(traces_find(fx->tr, "m2", P1, &s, &n), CERTA_ENOTFOUND);
	assert_int_equal(traces_find(fx->tr, NULL, P1, &s, &n), 0);
	assert_string_equal(s[0]->model, "m1");
}

static void
test_programs(void **state)
{
	struct fixture *fx = *state;
	const struct traces *tr = fx->tr;
	const struct traces_program *p;

	/* (m1, ds1): P1 (first seen in seed_42.jsonl), then P2, "long one"; (m2, ds2): P2. */
	assert_int_equal(traces_program_count(tr), 4);
	p = traces_program_at(tr, 0);
	assert_string_equal(p->model, "m1");
	assert_string_equal(p->dataset, "ds1");
	assert_string_equal(p->problem, P1);
	assert_string_equal(p->problem_id, "7");
	assert_string_equal(p->target, "36");
	assert_int_equal(p->nsamples, 3);
	for (size_t i = 0; i < 3; i++)
		assert_int_equal(p->samples[i]->seed, 42 + (int)i);
	p = traces_program_at(tr, 1);
	assert_string_equal(p->problem, P2);
	assert_int_equal(p->nsamples, 1);
	p = traces_program_at(tr, 2);
	assert_string_equal(p->problem, "long one");
	p = traces_program_at(tr, 3);
	assert_string_equal(p->model, "m2");
	assert_string_equal(p->problem, P2);
	assert_null(traces_program_at(tr, 4));
}

/* text_offset is monotone, never splits a character, and hits both ends exactly. */
static void
check_offsets(const struct trace *t)
{
	size_t prev = 0;

	assert_int_equal(traces_text_offset(t, 0), 0);
	for (uint64_t pos = 0; pos <= t->tokens_used + 3; pos++) {
		size_t off = traces_text_offset(t, pos);

		assert_true(off >= prev);
		assert_true(off <= t->text_len);
		/* A boundary: the end, or a byte that is not a continuation byte. */
		assert_true(off == t->text_len || ((unsigned char)t->text[off] & 0xC0) != 0x80);
		if (pos < t->tokens_used) {
			size_t want = (size_t)(pos * t->text_len / t->tokens_used);

			assert_true(off >= want && off < want + 4);
		} else {
			assert_int_equal(off, t->text_len);
		}
		prev = off;
	}
}

static void
test_text_offset(void **state)
{
	struct fixture *fx = *state;
	const struct trace *t;
	bool moved = false;

	/* m2's trace: 61 bytes of multi-byte text over 20 tokens, so positions land mid-char. */
	t = find_sample(fx->tr, "m2", P2, 0);
	check_offsets(t);
	for (uint64_t pos = 0; pos < t->tokens_used; pos++)
		if (traces_text_offset(t, pos) != (size_t)(pos * t->text_len / t->tokens_used))
			moved = true;
	assert_true(moved); /* some position had to be snapped forward */
	check_offsets(find_sample(fx->tr, "m1", P2, 0));
	for (size_t i = 0; i < traces_count(fx->tr); i++)
		check_offsets(traces_at(fx->tr, i));
}

static void
test_think_end(void **state)
{
	struct fixture *fx = *state;

	for (size_t i = 0; i < traces_count(fx->tr); i++) {
		const struct trace *t = traces_at(fx->tr, i);
		const char *tag = strstr(t->text, "</think>");
		uint64_t te = traces_think_end(t);

		assert_int_equal(te, t->think_end);
		if (tag == NULL) {
			assert_int_equal(te, 0);
			continue;
		}
		size_t tag_end = (size_t)(tag - t->text) + strlen("</think>");

		assert_true(te > 0 && te <= t->tokens_used);
		/* te is the first position whose text covers the whole tag. */
		assert_true(traces_text_offset(t, te) >= tag_end);
		assert_true(traces_text_offset(t, te - 1) < tag_end);
	}
	/* 64 tokens over 61 bytes, tag ends at byte 49: ceil(49 * 64 / 61) = 52. */
	assert_int_equal(traces_think_end(find_sample(fx->tr, "m1", P2, 0)), 52);
	assert_int_equal(traces_think_end(find_sample(fx->tr, NULL, "long one", 0)), 0);
}

static void
test_probe_at(void **state)
{
	struct fixture *fx = *state;
	const struct trace *t = find_sample(fx->tr, "m1", P1, 2); /* seed 44: 64 "3", 128/192 "36" */
	static const struct {
		uint64_t pos;
		const char *answer;
	} cases[] = {
		{ 0, "" }, { 63, "" }, { 64, "3" }, { 127, "3" }, { 128, "36" }, { 191, "36" },
		{ 192, "36" }, { 100000, "36" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		assert_string_equal(traces_answer_at(t, cases[i].pos), cases[i].answer);
	assert_null(traces_probe_at(t, 63));
	assert_ptr_equal(traces_probe_at(t, 64), &t->probes[0]);
	assert_ptr_equal(traces_probe_at(t, 130), &t->probes[1]);
	assert_ptr_equal(traces_probe_at(t, 500), &t->probes[2]);
	t = find_sample(fx->tr, NULL, "long one", 0);
	assert_null(traces_probe_at(t, 1000));
	assert_string_equal(traces_answer_at(t, 1000), "");
}

/* traces_load_buffer: the same records from memory (the fuzz target's entry point); blank
 * and malformed lines are skipped, a last line without '\n' counts, nothing valid fails. */
static void
test_load_buffer(void **state)
{
	char *a = line("m1", "ds1", 42, "1", "What is 6 squared?", "36", 100, "[]", "six times six");
	char *b = line("m1", "ds1", 43, "1", "What is 6 squared?", "36", 120, "[]", "it is 36");
	char *buf = NULL;
	struct traces *tr;
	const struct trace *const *samples;
	size_t n;

	(void)state;
	/* b without its '\n' at the very end */
	assert_true(asprintf(&buf, "%s\n{not json\n%.*s", a, (int)strlen(b) - 1, b) > 0);
	assert_int_equal(traces_load_buffer("mem.jsonl", buf, strlen(buf), &tr), 0);
	assert_int_equal(traces_count(tr), 2);
	assert_int_equal(traces_skipped(tr), 1);
	assert_string_equal(traces_dir(tr), "mem.jsonl");
	assert_string_equal(traces_at(tr, 1)->file, "mem.jsonl");
	assert_int_equal(traces_at(tr, 1)->line, 4);
	assert_int_equal(traces_find(tr, "m1", "What is 6 squared?", &samples, &n), 0);
	assert_int_equal(n, 2);
	traces_free(tr);
	assert_int_equal(traces_load_buffer("mem.jsonl", "{not json\n", 10, &tr), CERTA_ETRACE);
	assert_int_equal(traces_load_buffer("mem.jsonl", "\n\n", 2, &tr), CERTA_ENOTFOUND);
	assert_int_equal(traces_load_buffer("mem.jsonl", NULL, 0, &tr), CERTA_ENOTFOUND);
	assert_int_equal(traces_load_buffer("", "", 0, &tr), -EINVAL);
	free(buf);
	free(a);
	free(b);
}

/* Probe token statistics (history of llm workers): array elements 3-5 or keys, null or
 * absent = unknown (-1); a probability outside [0, 1] or a negative entropy skips the line. */
static void
test_probe_stats(void **state)
{
	char *a = line("m1", "ds1", 42, "1", "p", "36", 200,
	    "[[64, \"3\", 5, 0.25, 0.125, 1.5], [128, \"36\", 4, null, null, 0.5], "
	    "[160, \"36\", 4, 0.375], [192, \"36\", 4]]", "t");
	char *b = line("m1", "ds1", 43, "1", "p", "36", 200,
	    "[{\"position\": 64, \"answer\": \"36\", \"out_tokens\": 3, \"mean_prob\": 0.75, "
	    "\"chain_entropy\": 0}]", "t");
	char *bad1 = line("m1", "ds1", 44, "1", "p", "36", 200, "[[64, \"3\", 5, 1.5]]", "t");
	char *bad2 = line("m1", "ds1", 45, "1", "p", "36", 200, "[[64, \"3\", 5, 0.5, 0.5, -1]]",
	    "t");
	char *bad3 = line("m1", "ds1", 46, "1", "p", "36", 200, "[[64, \"3\", 5, \"0.5\"]]", "t");
	char *buf = NULL;
	struct traces *tr;
	const struct trace *t;

	(void)state;
	log_set_level(LOG_LVL_ERR);
	assert_true(asprintf(&buf, "%s%s%s%s%s", a, b, bad1, bad2, bad3) > 0);
	assert_int_equal(traces_load_buffer("mem.jsonl", buf, strlen(buf), &tr), 0);
	log_set_level(LOG_LVL_INFO);
	assert_int_equal(traces_count(tr), 2);
	assert_int_equal(traces_skipped(tr), 3);
	t = traces_at(tr, 0);
	assert_int_equal(t->nprobes, 4);
	assert_true(t->probes[0].mean_prob == 0.25 && t->probes[0].min_prob == 0.125 &&
	    t->probes[0].chain_entropy == 1.5);
	assert_int_equal(t->probes[0].out_tokens, 5);
	assert_true(t->probes[1].mean_prob == -1 && t->probes[1].min_prob == -1 &&
	    t->probes[1].chain_entropy == 0.5);
	assert_true(t->probes[2].mean_prob == 0.375 && t->probes[2].min_prob == -1 &&
	    t->probes[2].chain_entropy == -1);
	assert_true(t->probes[3].mean_prob == -1 && t->probes[3].min_prob == -1 &&
	    t->probes[3].chain_entropy == -1);
	t = traces_at(tr, 1);
	assert_true(t->probes[0].mean_prob == 0.75 && t->probes[0].min_prob == -1 &&
	    t->probes[0].chain_entropy == 0);
	/* the model's level: the median over its runs of each run's first known mean
	 * probability (0.25, 0.75); not the median over the probes (0.375) nor over each run's
	 * median (0.3125, 0.75: 0.53125) */
	assert_true(traces_model_prob(tr, "m1") == 0.5);
	assert_true(traces_model_prob(tr, "m2") == -1);
	assert_true(traces_model_prob(tr, NULL) == -1);
	traces_free(tr);
	free(buf);
	free(a);
	free(b);
	free(bad1);
	free(bad2);
	free(bad3);
}

static void
test_load_errors(void **state)
{
	struct traces *tr = NULL;
	char dir[256], path[300];
	const char *bad[] = { "not json\n", "[1, 2]\n" };

	log_set_level(LOG_LVL_ERR); /* the expected warnings stay quiet */

	assert_int_equal(traces_load(NULL, &tr), -EINVAL);
	assert_int_equal(traces_load("", &tr), -EINVAL);
	make_tmpdir(dir, sizeof(dir));
	/* No trace files at all. */
	assert_int_equal(traces_load(dir, &tr), CERTA_ENOTFOUND);
	assert_null(tr);
	/* Only malformed lines. */
	write_file(dir, "x.jsonl", bad, 2, false);
	assert_int_equal(traces_load(dir, &tr), CERTA_ETRACE);
	assert_null(tr);
	/* Only an empty file. */
	remove_dir(dir);
	make_tmpdir(dir, sizeof(dir));
	write_file(dir, "empty.jsonl.gz", bad, 0, true);
	assert_int_equal(traces_load(dir, &tr), CERTA_ENOTFOUND);
	/* A truncated gzip stream: the lines before the damage still load. */
	{
		char *l = line("m", "d", 1, "1", "p", "1", 10, "[]", "t");
		gzFile f;
		FILE *raw;
		long size;
		char *buf;

		snprintf(path, sizeof(path), "%s/cut.jsonl.gz", dir);
		f = gzopen(path, "wb");
		assert_non_null(f);
		for (int i = 0; i < 2000; i++)
			gzprintf(f, "%s", l);
		gzclose(f);
		free(l);
		raw = fopen(path, "r+");
		assert_non_null(raw);
		fseek(raw, 0, SEEK_END);
		size = ftell(raw);
		buf = malloc((size_t)size);
		assert_non_null(buf);
		rewind(raw);
		assert_int_equal(fread(buf, 1, (size_t)size, raw), (size_t)size);
		fclose(raw);
		raw = fopen(path, "w");
		assert_non_null(raw);
		fwrite(buf, 1, (size_t)size / 2, raw);
		fclose(raw);
		free(buf);
		assert_int_equal(traces_load(dir, &tr), 0);
		assert_true(traces_count(tr) == 1); /* all lines are one (model, dataset, problem, seed) */
		assert_true(traces_skipped(tr) >= 1);
		traces_free(tr);
		tr = NULL;
	}
	remove_dir(dir);
	/* Missing directory. */
	assert_int_equal(traces_load(dir, &tr), -ENOENT);
	assert_null(tr);
	traces_free(NULL);
	log_set_level(LOG_LVL_INFO);
}

/* ---- the real recorded traces ---- */

/* Lines of one (possibly gzip'd) file. */
static size_t
count_lines(const char *path)
{
	gzFile f = gzopen(path, "rb");
	char buf[65536];
	size_t n = 0;
	int r;

	assert_non_null(f);
	while ((r = gzread(f, buf, sizeof(buf))) > 0)
		for (int i = 0; i < r; i++)
			n += buf[i] == '\n';
	assert_true(r == 0);
	gzclose(f);
	return n;
}

static void
test_real_traces(void **state)
{
	const char *dir = getenv("CERTA_TRACES");
	static const char *const datasets[] = { "aime24", "amc23", "math500" };
	static const size_t per_seed[] = { 24, 32, 400 };
	struct traces *tr = NULL;
	struct timespec t0, t1;
	struct stat st;
	size_t expect = 0, nfiles = 0;
	double ms;
	DIR *d;
	struct dirent *de;

	if (dir == NULL || *dir == '\0' || stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
		print_message("CERTA_TRACES unset or not a directory: skipping the real-trace test\n");
		skip();
	}
	d = opendir(dir);
	assert_non_null(d);
	while ((de = readdir(d)) != NULL) {
		char path[4096];

		if (strstr(de->d_name, ".jsonl.gz") == NULL)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		expect += count_lines(path);
		nfiles++;
	}
	closedir(d);

	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(traces_load(dir, &tr), 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
	print_message("real traces: %zu traces, %zu files, %.0f ms, %.1f MiB\n", traces_count(tr),
		traces_file_count(tr), ms, traces_memory(tr) / 1048576.0);

	assert_int_equal(traces_file_count(tr), nfiles);
	assert_int_equal(traces_count(tr), expect);
	assert_int_equal(traces_skipped(tr), 0);
	/* README: 2 models x 3 seeds x (400 + 32 + 24) problems. */
	assert_int_equal(traces_count(tr), 2 * 3 * (400 + 32 + 24));
	assert_int_equal(traces_model_count(tr), 2);
	assert_int_equal(traces_dataset_count(tr), 3);
	for (size_t i = 0; i < 3; i++)
		assert_string_equal(traces_dataset_name(tr, i), datasets[i]);
	assert_int_equal(traces_program_count(tr), 2 * (400 + 32 + 24));

	for (size_t i = 0; i < traces_program_count(tr); i++) {
		const struct traces_program *p = traces_program_at(tr, i);
		const struct trace *const *s;
		size_t n;

		assert_int_equal(p->nsamples, 3);
		for (size_t k = 0; k < 3; k++) {
			assert_int_equal(p->samples[k]->seed, 42 + (int64_t)k);
			assert_ptr_equal(p->samples[k]->problem, p->problem);
		}
		/* The replay lookup finds the same samples, in the same order. */
		assert_int_equal(traces_find(tr, p->model, p->problem, &s, &n), 0);
		assert_int_equal(n, 3);
		for (size_t k = 0; k < 3; k++)
			assert_ptr_equal(s[k], p->samples[k]);
	}
	/* Problems per dataset and model match the README. */
	for (size_t m = 0; m < 2; m++) {
		for (size_t ds = 0; ds < 3; ds++) {
			size_t n = 0;

			for (size_t i = 0; i < traces_program_count(tr); i++) {
				const struct traces_program *p = traces_program_at(tr, i);

				n += strcmp(p->model, traces_model_name(tr, m)) == 0 &&
				     strcmp(p->dataset, datasets[ds]) == 0;
			}
			assert_int_equal(n, per_seed[ds]);
		}
	}
	for (size_t i = 0; i < traces_count(tr); i++) {
		const struct trace *t = traces_at(tr, i);
		uint64_t te = traces_think_end(t);
		size_t prev = 0;

		for (size_t k = 0; k < t->nprobes; k++) {
			assert_int_equal(t->probes[k].position % 64, 0);
			assert_true(t->probes[k].position > 0);
			assert_ptr_equal(traces_probe_at(t, t->probes[k].position), &t->probes[k]);
		}
		assert_true(t->tokens_used > 0);
		assert_true(*t->target != '\0');
		/* Spot-check offsets at probe spacing. */
		for (uint64_t pos = 0; pos <= t->tokens_used; pos += 64) {
			size_t off = traces_text_offset(t, pos);

			assert_true(off >= prev);
			assert_true(off == t->text_len || ((unsigned char)t->text[off] & 0xC0) != 0x80);
			prev = off;
		}
		if (te > 0)
			assert_true(traces_text_offset(t, te) >=
				    (size_t)(strstr(t->text, "</think>") - t->text) + 8);
	}
	/* A numeric target (36.0 in the AMC23 file) reads as "36". */
	{
		const struct trace *t = NULL;

		assert_int_equal(traces_find_sample(tr, "qwen-qwen3-8b",
			"Positive real numbers $x$ and $y$ satisfy $y^3=x^2$ and $(y-x)^2=4y^2$. "
			"What is $x+y$?", 0, &t), 0);
		assert_string_equal(t->target, "36");
		assert_int_equal(t->seed, 42);
	}
	traces_free(tr);
}

int
main(void)
{
	const struct CMUnitTest synthetic[] = {
		cmocka_unit_test(test_counts),
		cmocka_unit_test(test_fields),
		cmocka_unit_test(test_find_by_seed),
		cmocka_unit_test(test_find_normalized),
		cmocka_unit_test(test_model_select),
		cmocka_unit_test(test_programs),
		cmocka_unit_test(test_text_offset),
		cmocka_unit_test(test_think_end),
		cmocka_unit_test(test_probe_at),
	};
	const struct CMUnitTest standalone[] = {
		cmocka_unit_test(test_load_buffer),
		cmocka_unit_test(test_probe_stats),
		cmocka_unit_test(test_load_errors),
		cmocka_unit_test(test_real_traces),
	};
	int rc;

	/* Warnings about the deliberately malformed lines are expected; keep the output short. */
	log_set_level(LOG_LVL_ERR);
	rc = cmocka_run_group_tests_name("traces_synthetic", synthetic, setup, teardown);
	log_set_level(LOG_LVL_INFO);
	rc |= cmocka_run_group_tests_name("traces_files", standalone, NULL, NULL);
	return rc;
}
