/*
 * test_tokenizer.c — the byte-level BPE tokenizer over a tiny hand-made vocabulary written as
 * GGUF: merge order, added tokens, every byte, streaming decode across split characters,
 * refusals, prompt formats.  (The check against the real Qwen3/Llama-3 tokenizers is
 * tests/tokenizer/check.sh.)
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "lib/error.h"
#include "tests/support/ggufw.h"
#include "workers/llm/gguf.h"
#include "workers/llm/tokenizer.h"

/* GPT-2's byte characters, written independently of the tokenizer's table. */
static void
byte_char(int b, char out[3])
{
	static int map[256];
	static bool init;

	if (!init) {
		int k = 0, i;

		for (i = 0; i < 256; i++)
			map[i] = ((i >= 33 && i <= 126) || (i >= 161 && i <= 172) || i >= 174) ? i :
			    256 + k++;
		init = true;
	}
	if (map[b] < 0x80) {
		out[0] = (char)map[b];
		out[1] = 0;
	} else {
		out[0] = (char)(0xc0 | (map[b] >> 6));
		out[1] = (char)(0x80 | (map[b] & 0x3f));
		out[2] = 0;
	}
}

/* Ids 0..255 are the bytes; then the entries below. */
enum { T_HE = 256, T_EL, T_GT, T_GTHE, T_IM_START, T_THINK, T_ENDTHINK, T_IM_END, T_HEL,
	T_THINK_LONG, NTOK };
static const char *const extra[] = { "he", "el", "\xc4\xa0t", "\xc4\xa0the", "<|im_start|>",
	"<think>", "</think>", "<|im_end|>", "hel", "<think>!" };
static const int32_t extra_type[] = { 1, 1, 1, 1, 3, 4, 4, 3, 1, 4 };
/* Ranks: "e l" before "h e", so "hel" is h + el. */
static const char *const merges[] = { "e l", "h e", "\xc4\xa0 t", "\xc4\xa0t he" };

struct opts {
	const char *model, *pre, *tpl;
	size_t ntypes;       /* token_type entries; 0 for NTOK */
	uint32_t bos;        /* UINT32_MAX: none */
	bool no_merges;
};

static struct tokenizer *
open_tok(const struct opts *o, int *rc, char *err, size_t errlen)
{
	static char chars[256][3];
	const char *toks[NTOK];
	int32_t types[NTOK];
	struct ggufw b = { 0 };
	struct gguf *g;
	struct tokenizer *t = NULL;
	uint64_t nkv = 5;
	int i;

	for (i = 0; i < 256; i++) {
		byte_char(i, chars[i]);
		toks[i] = chars[i];
		types[i] = 1;
	}
	for (i = 256; i < NTOK; i++) {
		toks[i] = extra[i - 256];
		types[i] = extra_type[i - 256];
	}
	nkv += (o->pre != NULL) + (o->tpl != NULL) + (o->bos != UINT32_MAX) - o->no_merges;
	ggufw_put(&b, "GGUF", 4);
	ggufw_u32(&b, 3);
	ggufw_u64(&b, 0);
	ggufw_u64(&b, nkv + 1);
	ggufw_kv_str(&b, "general.architecture", "qwen3");
	ggufw_kv_str(&b, "tokenizer.ggml.model", o->model ? o->model : "gpt2");
	if (o->pre)
		ggufw_kv_str(&b, "tokenizer.ggml.pre", o->pre);
	ggufw_kv_strs(&b, "tokenizer.ggml.tokens", toks, NTOK);
	ggufw_kv_i32s(&b, "tokenizer.ggml.token_type", types, o->ntypes ? o->ntypes : NTOK);
	if (!o->no_merges)
		ggufw_kv_strs(&b, "tokenizer.ggml.merges", merges,
		    sizeof merges / sizeof merges[0]);
	ggufw_kv_u32(&b, "tokenizer.ggml.eos_token_id", T_IM_END);
	if (o->bos != UINT32_MAX)
		ggufw_kv_u32(&b, "tokenizer.ggml.bos_token_id", o->bos);
	if (o->tpl)
		ggufw_kv_str(&b, "tokenizer.chat_template", o->tpl);
	assert_int_equal(gguf_open_buffer(b.p, b.n, &g, err, errlen), 0);
	*rc = tokenizer_open(g, &t, err, errlen);
	gguf_close(g);  /* the tokenizer keeps its own copies */
	free(b.p);
	return t;
}

static struct tokenizer *
qwen(void)
{
	struct opts o = { .pre = "qwen2", .bos = UINT32_MAX };
	char err[256];
	int rc;
	struct tokenizer *t = open_tok(&o, &rc, err, sizeof err);

	assert_int_equal(rc, 0);
	return t;
}

/* Encodes s and compares with the expected ids (terminated by -1). */
static void
expect_ids(const struct tokenizer *t, const char *s, unsigned flags, ...)
{
	int32_t *ids;
	size_t n, i = 0;
	va_list ap;
	int id;

	assert_int_equal(tokenizer_encode(t, s, strlen(s), flags, &ids, &n), 0);
	va_start(ap, flags);
	while ((id = va_arg(ap, int)) >= 0) {
		assert_true(i < n);
		assert_int_equal(ids[i], id);
		i++;
	}
	va_end(ap);
	assert_int_equal(n, i);
	free(ids);
}

static void
test_merges_by_rank(void **state)
{
	struct tokenizer *t = qwen();

	(void)state;
	assert_int_equal(tokenizer_n_vocab(t), NTOK);
	assert_string_equal(tokenizer_pre(t), "qwen2");
	/* "e l" (rank 0) wins over "h e" (rank 1): h + el, not he + l. */
	expect_ids(t, "hel", 0, 'h', T_EL, -1);
	expect_ids(t, "he", 0, T_HE, -1);
	/* " the": h e, then Ġ t, then Ġt he. */
	expect_ids(t, " the", 0, T_GTHE, -1);
	/* Split first: "he he" is two pieces, the second with its space; no merge spans them. */
	expect_ids(t, "he he", 0, T_HE, ' ', T_HE, -1);
	tokenizer_free(t);
}

static void
test_ignore_merges_llama(void **state)
{
	struct opts o = { .pre = "llama-bpe", .bos = UINT32_MAX };
	struct tokenizer *t;
	char err[256];
	int rc;

	(void)state;
	t = open_tok(&o, &rc, err, sizeof err);
	assert_int_equal(rc, 0);
	/* A piece that is a whole entry is taken as is (merges would give h + el). */
	expect_ids(t, "hel", 0, T_HEL, -1);
	/* Digits: Llama-3 groups up to three, Qwen splits each; neither has digit merges here. */
	expect_ids(t, "1234", 0, '1', '2', '3', '4', -1);
	tokenizer_free(t);
}

static void
test_added_tokens(void **state)
{
	struct tokenizer *t = qwen();

	(void)state;
	expect_ids(t, "<|im_start|>he<think>\n</think>he", TOKENIZER_SPECIAL, T_IM_START, T_HE,
	    T_THINK, '\n', T_ENDTHINK, T_HE, -1);
	/* Longest first: "<think>!" is an entry of its own. */
	expect_ids(t, "<think>!", TOKENIZER_SPECIAL, T_THINK_LONG, -1);
	/* Without TOKENIZER_SPECIAL control tokens are plain text; user-defined ones still match. */
	{
		int32_t *ids;
		size_t n, i;

		assert_int_equal(tokenizer_encode(t, "<|im_start|><think>", 19, 0, &ids, &n), 0);
		assert_true(n > 2);
		for (i = 0; i + 1 < n; i++)
			assert_true(ids[i] < 256);
		assert_int_equal(ids[n - 1], T_THINK);
		free(ids);
	}
	assert_int_equal(tokenizer_token_id(t, "</think>"), T_ENDTHINK);
	assert_int_equal(tokenizer_token_id(t, "<think>"), T_THINK);
	assert_int_equal(tokenizer_token_id(t, "</nothink>"), -1);
	assert_int_equal(tokenizer_token_type(t, T_IM_START), TOKENIZER_T_CONTROL);
	assert_true(tokenizer_is_eog(t, T_IM_END));
	assert_false(tokenizer_is_eog(t, T_THINK));
	assert_int_equal(tokenizer_eos(t), T_IM_END);
	assert_int_equal(tokenizer_bos(t), -1);
	tokenizer_free(t);
}

/* Every byte decodes to itself; every character of valid UTF-8 encodes to its bytes. */
static void
test_every_byte(void **state)
{
	static const uint32_t cps[] = { 0x1, 0x7f, 0x80, 0xe9, 0x7ff, 0x800, 0xfffd, 0xffff,
		0x10000, 0x1f600, 0x10ffff };
	struct tokenizer *t = qwen();
	int32_t id, *ids;
	char *out, s[5];
	size_t len, n, i;
	int b;

	(void)state;
	for (b = 0; b < 256; b++) {
		id = b;
		assert_int_equal(tokenizer_decode(t, &id, 1, false, &out, &len), 0);
		assert_int_equal(len, 1);
		assert_int_equal((uint8_t)out[0], b);
		free(out);
	}
	for (b = 0; b < 0x80; b++) {
		s[0] = (char)b;
		assert_int_equal(tokenizer_encode(t, s, 1, 0, &ids, &n), 0);
		assert_int_equal(n, 1);
		assert_int_equal(ids[0], b);
		free(ids);
	}
	for (i = 0; i < sizeof cps / sizeof cps[0]; i++) {
		uint32_t c = cps[i];

		if (c < 0x80)
			s[0] = (char)c, len = 1;
		else if (c < 0x800)
			s[0] = (char)(0xc0 | c >> 6), s[1] = (char)(0x80 | (c & 0x3f)), len = 2;
		else if (c < 0x10000)
			s[0] = (char)(0xe0 | c >> 12), s[1] = (char)(0x80 | ((c >> 6) & 0x3f)),
			s[2] = (char)(0x80 | (c & 0x3f)), len = 3;
		else
			s[0] = (char)(0xf0 | c >> 18), s[1] = (char)(0x80 | ((c >> 12) & 0x3f)),
			s[2] = (char)(0x80 | ((c >> 6) & 0x3f)), s[3] = (char)(0x80 | (c & 0x3f)),
			len = 4;
		assert_int_equal(tokenizer_encode(t, s, len, 0, &ids, &n), 0);
		assert_int_equal(n, len);
		for (b = 0; b < (int)len; b++)
			assert_int_equal(ids[b], (uint8_t)s[b]);
		assert_int_equal(tokenizer_decode(t, ids, n, false, &out, &len), 0);
		assert_memory_equal(out, s, n);
		free(out);
		free(ids);
	}
	tokenizer_free(t);
}

static void
test_invalid_utf8_refused(void **state)
{
	static const char *const bad[] = { "\xff", "a\xc3", "\xc0\xaf", "\xed\xa0\x80",
		"\xf4\x90\x80\x80", "\x80", "ok\xe2\x82" };
	struct tokenizer *t = qwen();
	int32_t *ids = (int32_t *)(uintptr_t)1;
	size_t n = 7, i;

	(void)state;
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
		assert_int_equal(tokenizer_encode(t, bad[i], strlen(bad[i]), 0, &ids, &n), -EILSEQ);
	assert_int_equal(n, 7);  /* nothing stored */
	tokenizer_free(t);
}

/* Puts id and checks what comes out. */
static void
expect_put(struct tokenizer_stream *s, int32_t id, const char *want)
{
	const char *out;
	size_t len;

	assert_int_equal(tokenizer_stream_put(s, id, &out, &len), 0);
	assert_int_equal(len, strlen(want));
	assert_memory_equal(out, want, len);
}

static void
test_stream_split_utf8(void **state)
{
	struct tokenizer *t = qwen();
	struct tokenizer_stream *s = tokenizer_stream_new(t, false);
	const char *out;
	size_t len;

	(void)state;
	assert_non_null(s);
	/* é = C3 A9 across two tokens: nothing, then the whole character. */
	expect_put(s, 0xc3, "");
	expect_put(s, 0xa9, "\xc3\xa9");
	/* 😀 = F0 9F 98 80 across four tokens, after "he". */
	expect_put(s, T_HE, "he");
	expect_put(s, 0xf0, "");
	expect_put(s, 0x9f, "");
	expect_put(s, 0x98, "");
	expect_put(s, 0x80, "\xf0\x9f\x98\x80");
	/* A byte that can never start a character, and a broken sequence: U+FFFD, then on. */
	expect_put(s, 0xff, "\xef\xbf\xbd");
	expect_put(s, 0xe2, "");
	expect_put(s, 'x', "\xef\xbf\xbdx");
	/* Control tokens are skipped without special, user-defined ones are text. */
	expect_put(s, T_IM_START, "");
	expect_put(s, T_ENDTHINK, "</think>");
	/* Flush: a held incomplete character comes out as U+FFFD, then nothing. */
	expect_put(s, 0xe2, "");
	assert_int_equal(tokenizer_stream_flush(s, &out, &len), 0);
	assert_int_equal(len, 3);
	assert_memory_equal(out, "\xef\xbf\xbd", 3);
	assert_int_equal(tokenizer_stream_flush(s, &out, &len), 0);
	assert_int_equal(len, 0);
	assert_int_equal(tokenizer_stream_put(s, NTOK, &out, &len), -EINVAL);
	tokenizer_stream_free(s);
	s = tokenizer_stream_new(t, true);
	expect_put(s, T_IM_START, "<|im_start|>");
	tokenizer_stream_free(s);
	tokenizer_free(t);
}

/* Each bad file is refused with a message naming the problem. */
static void
test_refusals(void **state)
{
	static const struct {
		struct opts o;
		const char *msg;
	} cases[] = {
		{ { .pre = "qwen9", .bos = UINT32_MAX }, "tokenizer.ggml.pre 'qwen9' is not supported" },
		{ { .bos = UINT32_MAX }, "tokenizer.ggml.pre: missing" },
		{ { .model = "llama", .pre = "qwen2", .bos = UINT32_MAX },
		    "tokenizer.ggml.model 'llama' is not supported" },
		{ { .pre = "qwen2", .ntypes = 3, .bos = UINT32_MAX }, "token_type has 3 entries" },
		{ { .pre = "qwen2", .bos = NTOK }, "bos_token_id is not a token id" },
		{ { .pre = "qwen2", .bos = UINT32_MAX, .no_merges = true },
		    "tokenizer.ggml.merges: missing" },
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		char err[256] = "";
		int rc;
		struct tokenizer *t = open_tok(&cases[i].o, &rc, err, sizeof err);

		assert_null(t);
		assert_int_equal(rc, CERTA_EINVAL);
		if (strstr(err, cases[i].msg) == NULL)
			fail_msg("case %zu: '%s' does not say '%s'", i, err, cases[i].msg);
	}
}

static void
test_chat_formats(void **state)
{
	struct opts o = { .pre = "qwen2", .bos = UINT32_MAX,
		.tpl = "{% for m in messages %}<|start_header_id|>{{ m.role }}{% endfor %}" };
	struct tokenizer *t = qwen();
	char *p, err[256];
	size_t len;
	int rc;

	(void)state;
	/* No template: the vocabulary has <|im_start|>. */
	assert_int_equal(tokenizer_chat_format(t), TOKENIZER_CHAT_CHATML);
	assert_int_equal(tokenizer_chat_prompt(TOKENIZER_CHAT_CHATML, "1+1?", 4, &p, &len), 0);
	assert_string_equal(p, "<|im_start|>user\n1+1?<|im_end|>\n<|im_start|>assistant\n<think>\n");
	assert_int_equal(len, strlen(p));
	expect_ids(t, p, TOKENIZER_SPECIAL, T_IM_START, 'u', 's', 'e', 'r', '\n', '1', '+', '1',
	    '?', T_IM_END, '\n', T_IM_START, 'a', 's', 's', 'i', 's', 't', 'a', 'n', 't', '\n',
	    T_THINK, '\n', -1);
	free(p);
	tokenizer_free(t);
	/* The template's markers win over the vocabulary. */
	t = open_tok(&o, &rc, err, sizeof err);
	assert_int_equal(rc, 0);
	assert_int_equal(tokenizer_chat_format(t), TOKENIZER_CHAT_LLAMA3);
	tokenizer_free(t);
	assert_int_equal(tokenizer_chat_prompt(TOKENIZER_CHAT_DEEPSEEK_R1, "x", 1, &p, &len), 0);
	assert_string_equal(p, "<\xef\xbd\x9c" "begin\xe2\x96\x81of\xe2\x96\x81sentence"
	    "\xef\xbd\x9c><\xef\xbd\x9cUser\xef\xbd\x9c>x<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>"
	    "<think>\n");
	free(p);
	assert_int_equal(tokenizer_chat_prompt(TOKENIZER_CHAT_LLAMA3, "x", 1, &p, &len), 0);
	assert_string_equal(p, "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nx"
	    "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
	free(p);
	assert_int_equal(tokenizer_chat_by_name("qwq"), TOKENIZER_CHAT_CHATML);
	assert_int_equal(tokenizer_chat_by_name("deepseek-r1"), TOKENIZER_CHAT_DEEPSEEK_R1);
	assert_int_equal(tokenizer_chat_by_name("llama3"), TOKENIZER_CHAT_LLAMA3);
	assert_int_equal(tokenizer_chat_by_name("jinja"), -EINVAL);
	assert_string_equal(tokenizer_chat_name(TOKENIZER_CHAT_DEEPSEEK_R1), "deepseek-r1");
}

int
main(void)
{
	static const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_merges_by_rank),
		cmocka_unit_test(test_ignore_merges_llama),
		cmocka_unit_test(test_added_tokens),
		cmocka_unit_test(test_every_byte),
		cmocka_unit_test(test_invalid_utf8_refused),
		cmocka_unit_test(test_stream_split_utf8),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_chat_formats),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
