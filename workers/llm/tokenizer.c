/* tokenizer.c — byte-level BPE from GGUF metadata, streaming decode, prompt formats. */
#include "workers/llm/tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8

#include <errno.h>
#include <pcre2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/error.h"
#include "lib/utf8.h"
#include "workers/llm/gguf.h"

/*
 * Pre-tokenizer split rules, by tokenizer.ggml.pre (llama.cpp's names; the regexes are the
 * tokenizer.json "Split" patterns, with the case-insensitive contractions spelled out as
 * llama.cpp does).  ignore_merges: a piece that is a whole vocabulary entry is taken as is
 * (Llama-3's tokenizer.json sets it).
 */
#define TOKENIZER_RE_QWEN2 \
	"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|" \
	"\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define TOKENIZER_RE_LLAMA3 \
	"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|" \
	"\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define TOKENIZER_RE_GPT2 \
	"'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"

static const struct tokenizer_rule {
	const char *pre;
	const char *regex;
	bool ignore_merges;
} tokenizer_rules[] = {
	{ "qwen2", TOKENIZER_RE_QWEN2, false },
	{ "deepseek-r1-qwen", TOKENIZER_RE_QWEN2, false },
	{ "llama-bpe", TOKENIZER_RE_LLAMA3, true },
	{ "llama3", TOKENIZER_RE_LLAMA3, true },
	{ "llama-v3", TOKENIZER_RE_LLAMA3, true },
	{ "gpt-2", TOKENIZER_RE_GPT2, false },
};

/* Control tokens that end a generation whatever the eos id says. */
static const char *const tokenizer_eog_names[] = {
	"<|im_end|>", "<|eot_id|>", "<|endoftext|>", "<|end_of_text|>",
	"<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>",
};

#define DS_BOS "<\xef\xbd\x9c" "begin\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"
#define DS_USER "<\xef\xbd\x9cUser\xef\xbd\x9c>"
#define DS_ASSISTANT "<\xef\xbd\x9c" "Assistant\xef\xbd\x9c>"

/* Prompt formats: name, aliases, the text before and after the problem. */
static const struct tokenizer_chat_fmt {
	enum tokenizer_chat chat;
	const char *names[3];
	const char *before, *after;
} tokenizer_chats[] = {
	{ TOKENIZER_CHAT_NONE, { "none" }, "", "" },
	{ TOKENIZER_CHAT_CHATML, { "chatml", "qwen3", "qwq" }, "<|im_start|>user\n",
	    "<|im_end|>\n<|im_start|>assistant\n<think>\n" },
	{ TOKENIZER_CHAT_DEEPSEEK_R1, { "deepseek-r1" }, DS_BOS DS_USER,
	    DS_ASSISTANT "<think>\n" },
	{ TOKENIZER_CHAT_LLAMA3, { "llama3" },
	    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n",
	    "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n" },
};

/* An open-addressing hash of byte strings (ptr, len) -> value; slots hold entry index + 1. */
struct tokenizer_map {
	uint32_t *slot;
	uint32_t mask;
};

struct tokenizer {
	size_t n;                       /* vocabulary size */
	char *text;                     /* every token's text, NUL-terminated, back to back */
	size_t *text_off;               /* n + 1 offsets into text */
	uint8_t *type;                  /* enum tokenizer_ttype per id */
	char *dec;                      /* every token's decoded bytes, back to back */
	size_t *dec_off;                /* n + 1 offsets into dec */
	struct tokenizer_map vocab;     /* token text -> id */
	char *merge;                    /* merge strings "a b", back to back (no NUL) */
	size_t *merge_off;              /* nmerge + 1 offsets */
	size_t nmerge;
	struct tokenizer_map merges;    /* "a b" -> rank */
	int32_t *special;               /* added-token ids, by first byte then longest first */
	size_t nspecial;
	uint32_t spec_at[257];          /* first byte -> range of special */
	int32_t bos, eos, pad, eot;
	int32_t eog[8];
	size_t neog;
	const struct tokenizer_rule *rule;
	pcre2_code *re;
	enum tokenizer_chat chat;
	char byte_utf8[256][3];         /* GPT-2 bytes_to_unicode, UTF-8, NUL-terminated */
	int16_t cp_byte[324];           /* code point -> byte (-1: not a mapped character) */
};

struct tokenizer_stream {
	const struct tokenizer *t;
	bool special;
	uint8_t pend[4];
	size_t npend;
	char *out;
	size_t cap;
};

/* Writes a message into err. */
static int
tokenizer_fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (errlen > 0) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return CERTA_EINVAL;
}

/* FNV-1a over up to three byte ranges (a pair key is "left" " " "right"). */
static uint32_t
tokenizer_hash(const char *a, size_t alen, const char *b, size_t blen, bool pair)
{
	uint32_t h = 2166136261u;
	size_t i;

	for (i = 0; i < alen; i++)
		h = (h ^ (uint8_t)a[i]) * 16777619u;
	if (pair) {
		h = (h ^ ' ') * 16777619u;
		for (i = 0; i < blen; i++)
			h = (h ^ (uint8_t)b[i]) * 16777619u;
	}
	return h;
}

/* A map sized for n entries (load at most 1/2). */
static int
tokenizer_map_init(struct tokenizer_map *m, size_t n)
{
	size_t cap = 16;

	while (cap < 2 * n)
		cap *= 2;
	m->slot = calloc(cap, sizeof *m->slot);
	if (m->slot == NULL)
		return -ENOMEM;
	m->mask = (uint32_t)(cap - 1);
	return 0;
}

/* The slot of key (a[, ' ', b]) among strings str+off[i]..off[i+1]: its entry or a free slot. */
static uint32_t *
tokenizer_map_find(const struct tokenizer_map *m, const char *str, const size_t *off,
    size_t trail, const char *a, size_t alen, const char *b, size_t blen, bool pair)
{
	uint32_t h = tokenizer_hash(a, alen, b, blen, pair) & m->mask;
	size_t klen = pair ? alen + 1 + blen : alen;

	for (;; h = (h + 1) & m->mask) {
		uint32_t e = m->slot[h];
		const char *s;

		if (e == 0)
			return &m->slot[h];
		s = str + off[e - 1];
		if (off[e] - off[e - 1] - trail != klen || memcmp(s, a, alen) != 0)
			continue;
		if (!pair || (s[alen] == ' ' && memcmp(s + alen + 1, b, blen) == 0))
			return &m->slot[h];
	}
}

/* The id of token text (s, len), or -1. */
static int32_t
tokenizer_lookup(const struct tokenizer *t, const char *s, size_t len)
{
	uint32_t e = *tokenizer_map_find(&t->vocab, t->text, t->text_off, 1, s, len, NULL, 0,
	    false);

	return e == 0 ? -1 : (int32_t)(e - 1);
}

/* The rank of merging left and right, or UINT32_MAX. */
static uint32_t
tokenizer_rank(const struct tokenizer *t, const char *a, size_t alen, const char *b,
    size_t blen)
{
	uint32_t e = *tokenizer_map_find(&t->merges, t->merge, t->merge_off, 0, a, alen, b, blen,
	    true);

	return e == 0 ? UINT32_MAX : e - 1;
}

/* GPT-2's bytes_to_unicode: printable bytes map to themselves, the rest to 256 + k. */
static void
tokenizer_init_bytes(struct tokenizer *t)
{
	int b, k = 0;

	memset(t->cp_byte, 0xff, sizeof t->cp_byte);
	for (b = 0; b < 256; b++) {
		bool keep = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
		int cp = keep ? b : 256 + k++;

		if (cp < 0x80) {
			t->byte_utf8[b][0] = (char)cp;
			t->byte_utf8[b][1] = 0;
		} else {
			t->byte_utf8[b][0] = (char)(0xc0 | (cp >> 6));
			t->byte_utf8[b][1] = (char)(0x80 | (cp & 0x3f));
			t->byte_utf8[b][2] = 0;
		}
		t->cp_byte[cp] = (int16_t)b;
	}
}

/* Reads an optional special id; -1 when absent. */
static int
tokenizer_take_id(struct tokenizer *t, const struct gguf *g, const char *key, int32_t *out,
    char *err, size_t errlen)
{
	uint32_t v;
	int rc = gguf_get_u32(g, key, &v);

	*out = -1;
	if (rc == -ENOENT)
		return 0;
	if (rc != 0 || v >= t->n)
		return tokenizer_fail(err, errlen, "%s is not a token id below %zu", key, t->n);
	*out = (int32_t)v;
	return 0;
}

/* Token texts, types, decoded bytes and the vocabulary hash. */
static int
tokenizer_take_vocab(struct tokenizer *t, const struct gguf *g, char *err, size_t errlen)
{
	enum gguf_vtype elem;
	uint64_t n, ntype;
	size_t i, total = 0, dtotal = 0;
	int rc;

	if (gguf_arr_len(g, "tokenizer.ggml.tokens", &elem, &n) != 0 || elem != GGUF_STRING ||
	    n == 0 || n > INT32_MAX)
		return tokenizer_fail(err, errlen, "tokenizer.ggml.tokens: missing or not a "
		    "non-empty string array");
	t->n = (size_t)n;
	rc = gguf_arr_len(g, "tokenizer.ggml.token_type", &elem, &ntype);
	if (rc == 0 && ntype != n)
		return tokenizer_fail(err, errlen, "tokenizer.ggml.token_type has %llu entries for "
		    "%llu tokens", (unsigned long long)ntype, (unsigned long long)n);
	if (rc != 0 && rc != -ENOENT)
		return tokenizer_fail(err, errlen, "tokenizer.ggml.token_type is not an array");
	t->text_off = malloc((t->n + 1) * sizeof *t->text_off);
	t->dec_off = malloc((t->n + 1) * sizeof *t->dec_off);
	t->type = malloc(t->n);
	if (t->text_off == NULL || t->dec_off == NULL || t->type == NULL)
		return -ENOMEM;
	for (i = 0; i < t->n; i++) {
		const char *s;
		size_t len;
		int64_t ty = TOKENIZER_T_NORMAL;

		if (gguf_arr_str(g, "tokenizer.ggml.tokens", i, &s, &len) != 0)
			return tokenizer_fail(err, errlen, "tokenizer.ggml.tokens[%zu] unreadable", i);
		if (rc == 0 && (gguf_arr_i64(g, "tokenizer.ggml.token_type", i, &ty) != 0 ||
		    ty < 0 || ty > TOKENIZER_T_BYTE))
			return tokenizer_fail(err, errlen, "tokenizer.ggml.token_type[%zu] is not a "
			    "token type (0..6)", i);
		if (memchr(s, 0, len) != NULL)
			return tokenizer_fail(err, errlen, "tokenizer.ggml.tokens[%zu] holds a NUL", i);
		t->type[i] = (uint8_t)ty;
		total += len + 1;
		dtotal += len;  /* decoded bytes are never longer than the text */
	}
	t->text = malloc(total);
	t->dec = malloc(dtotal + 1);
	if (t->text == NULL || t->dec == NULL || tokenizer_map_init(&t->vocab, t->n) != 0)
		return -ENOMEM;
	total = dtotal = 0;
	for (i = 0; i < t->n; i++) {
		const char *s;
		size_t len, j;
		uint32_t *slot;

		gguf_arr_str(g, "tokenizer.ggml.tokens", i, &s, &len);
		t->text_off[i] = total;
		memcpy(t->text + total, s, len);
		t->text[total + len] = 0;
		total += len + 1;
		t->dec_off[i] = dtotal;
		switch (t->type[i]) {
		case TOKENIZER_T_CONTROL:
		case TOKENIZER_T_USER_DEFINED:
			memcpy(t->dec + dtotal, s, len);
			dtotal += len;
			break;
		case TOKENIZER_T_NORMAL:
		case TOKENIZER_T_BYTE:
			/* Mapped characters back to bytes; anything else stays as written. */
			for (j = 0; j < len;) {
				int l = utf8_char((const uint8_t *)s + j, len - j, NULL);
				unsigned cp;

				if (l <= 0)
					return tokenizer_fail(err, errlen, "tokenizer.ggml.tokens[%zu] "
					    "is not valid UTF-8", i);
				cp = l == 1 ? (uint8_t)s[j] : l == 2 ?
				    (((uint8_t)s[j] & 0x1fu) << 6) | ((uint8_t)s[j + 1] & 0x3fu) : 0x10000;
				if (cp < 324 && t->cp_byte[cp] >= 0)
					t->dec[dtotal++] = (char)t->cp_byte[cp];
				else {
					memcpy(t->dec + dtotal, s + j, (size_t)l);
					dtotal += (size_t)l;
				}
				j += (size_t)l;
			}
			break;
		default:
			break;
		}
		slot = tokenizer_map_find(&t->vocab, t->text, t->text_off, 1, s, len, NULL, 0, false);
		t->text_off[i + 1] = total;  /* the probe above compares against entries < i only */
		if (*slot == 0)
			*slot = (uint32_t)i + 1;  /* a duplicate spelling keeps the first id */
	}
	t->text_off[t->n] = total;
	t->dec_off[t->n] = dtotal;
	return 0;
}

/* Merge strings and their ranks. */
static int
tokenizer_take_merges(struct tokenizer *t, const struct gguf *g, char *err, size_t errlen)
{
	enum gguf_vtype elem;
	uint64_t n;
	size_t i, total = 0;

	if (gguf_arr_len(g, "tokenizer.ggml.merges", &elem, &n) != 0 || elem != GGUF_STRING ||
	    n >= UINT32_MAX)
		return tokenizer_fail(err, errlen, "tokenizer.ggml.merges: missing or not a string "
		    "array");
	t->nmerge = (size_t)n;
	for (i = 0; i < t->nmerge; i++) {
		const char *s;
		size_t len;

		if (gguf_arr_str(g, "tokenizer.ggml.merges", i, &s, &len) != 0)
			return tokenizer_fail(err, errlen, "tokenizer.ggml.merges[%zu] unreadable", i);
		if (len < 3 || memchr(s + 1, ' ', len - 2) == NULL)
			return tokenizer_fail(err, errlen, "tokenizer.ggml.merges[%zu] is not "
			    "\"left right\"", i);
		total += len;
	}
	t->merge = malloc(total + 1);
	t->merge_off = malloc((t->nmerge + 1) * sizeof *t->merge_off);
	if (t->merge == NULL || t->merge_off == NULL ||
	    tokenizer_map_init(&t->merges, t->nmerge) != 0)
		return -ENOMEM;
	total = 0;
	for (i = 0; i < t->nmerge; i++) {
		const char *s, *sp;
		size_t len;
		uint32_t *slot;

		gguf_arr_str(g, "tokenizer.ggml.merges", i, &s, &len);
		t->merge_off[i] = total;
		memcpy(t->merge + total, s, len);
		total += len;
		t->merge_off[i + 1] = total;
		sp = memchr(s + 1, ' ', len - 2);
		slot = tokenizer_map_find(&t->merges, t->merge, t->merge_off, 0, s, (size_t)(sp - s),
		    sp + 1, len - (size_t)(sp - s) - 1, true);
		if (*slot == 0)
			*slot = (uint32_t)i + 1;  /* a repeated merge keeps its first rank */
	}
	return 0;
}

/* Orders added tokens by first byte, then longest first (qsort_r: opens may run in parallel). */
static int
tokenizer_special_cmp(const void *a, const void *b, void *ctx)
{
	const struct tokenizer *t = ctx;
	int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
	uint8_t fx = (uint8_t)t->text[t->text_off[x]], fy = (uint8_t)t->text[t->text_off[y]];
	size_t lx = t->text_off[x + 1] - t->text_off[x], ly = t->text_off[y + 1] - t->text_off[y];

	if (fx != fy)
		return fx < fy ? -1 : 1;
	if (lx != ly)
		return lx > ly ? -1 : 1;
	return x < y ? -1 : x > y;
}

/* The added tokens matched in text before the split, indexed by first byte. */
static int
tokenizer_take_special(struct tokenizer *t)
{
	size_t i, k = 0;

	for (i = 0; i < t->n; i++)
		if ((t->type[i] == TOKENIZER_T_CONTROL || t->type[i] == TOKENIZER_T_USER_DEFINED) &&
		    t->text_off[i + 1] - t->text_off[i] > 1)
			k++;
	t->special = malloc((k + 1) * sizeof *t->special);
	if (t->special == NULL)
		return -ENOMEM;
	for (i = 0; i < t->n; i++)
		if ((t->type[i] == TOKENIZER_T_CONTROL || t->type[i] == TOKENIZER_T_USER_DEFINED) &&
		    t->text_off[i + 1] - t->text_off[i] > 1)
			t->special[t->nspecial++] = (int32_t)i;
	qsort_r(t->special, t->nspecial, sizeof *t->special, tokenizer_special_cmp, t);
	for (i = 0, k = 0; k < 256; k++) {
		t->spec_at[k] = (uint32_t)i;
		while (i < t->nspecial && (uint8_t)t->text[t->text_off[t->special[i]]] == k)
			i++;
	}
	t->spec_at[256] = (uint32_t)t->nspecial;
	return 0;
}

/* The prompt format from the template's markers, else from the vocabulary. */
static enum tokenizer_chat
tokenizer_pick_chat(const struct tokenizer *t, const struct gguf *g)
{
	static const struct {
		const char *marker;
		enum tokenizer_chat chat;
	} marks[] = {
		{ DS_ASSISTANT, TOKENIZER_CHAT_DEEPSEEK_R1 },
		{ "<|im_start|>", TOKENIZER_CHAT_CHATML },
		{ "<|start_header_id|>", TOKENIZER_CHAT_LLAMA3 },
	};
	const char *tpl;
	size_t len, i;

	if (gguf_get_str(g, "tokenizer.chat_template", &tpl, &len) == 0)
		for (i = 0; i < sizeof marks / sizeof marks[0]; i++)
			if (memmem(tpl, len, marks[i].marker, strlen(marks[i].marker)) != NULL)
				return marks[i].chat;
	for (i = 0; i < sizeof marks / sizeof marks[0]; i++)
		if (tokenizer_token_id(t, marks[i].marker) >= 0)
			return marks[i].chat;
	return TOKENIZER_CHAT_NONE;
}

int
tokenizer_open(const struct gguf *g, struct tokenizer **out, char *err, size_t errlen)
{
	struct tokenizer *t;
	const char *s;
	size_t len, i;
	int rc, perr;
	PCRE2_SIZE poff;
	char name[64];

	if (gguf_get_str(g, "tokenizer.ggml.model", &s, &len) != 0)
		return tokenizer_fail(err, errlen, "tokenizer.ggml.model: missing");
	if (len != 4 || memcmp(s, "gpt2", 4) != 0)
		return tokenizer_fail(err, errlen, "tokenizer.ggml.model '%.*s' is not supported "
		    "(only \"gpt2\", byte-level BPE)", (int)(len > 40 ? 40 : len), s);
	if (gguf_get_str(g, "tokenizer.ggml.pre", &s, &len) != 0)
		return tokenizer_fail(err, errlen, "tokenizer.ggml.pre: missing (the pre-tokenizer "
		    "rule must be named)");
	snprintf(name, sizeof name, "%.*s", (int)(len > 60 ? 60 : len), s);
	t = calloc(1, sizeof *t);
	if (t == NULL)
		return -ENOMEM;
	for (i = 0; i < sizeof tokenizer_rules / sizeof tokenizer_rules[0]; i++)
		if (strlen(tokenizer_rules[i].pre) == len && memcmp(tokenizer_rules[i].pre, s, len) == 0)
			t->rule = &tokenizer_rules[i];
	if (t->rule == NULL) {
		rc = tokenizer_fail(err, errlen, "tokenizer.ggml.pre '%s' is not supported (known: "
		    "qwen2, deepseek-r1-qwen, llama-bpe, llama3, llama-v3, gpt-2)", name);
		goto fail_tok;
	}
	tokenizer_init_bytes(t);
	if ((rc = tokenizer_take_vocab(t, g, err, errlen)) != 0 ||
	    (rc = tokenizer_take_merges(t, g, err, errlen)) != 0 ||
	    (rc = tokenizer_take_special(t)) != 0 ||
	    (rc = tokenizer_take_id(t, g, "tokenizer.ggml.bos_token_id", &t->bos, err, errlen)) ||
	    (rc = tokenizer_take_id(t, g, "tokenizer.ggml.eos_token_id", &t->eos, err, errlen)) ||
	    (rc = tokenizer_take_id(t, g, "tokenizer.ggml.padding_token_id", &t->pad, err,
	    errlen)) ||
	    (rc = tokenizer_take_id(t, g, "tokenizer.ggml.eot_token_id", &t->eot, err, errlen)))
		goto fail_tok;
	t->re = pcre2_compile((PCRE2_SPTR)t->rule->regex, PCRE2_ZERO_TERMINATED,
	    PCRE2_UTF | PCRE2_UCP, &perr, &poff, NULL);
	if (t->re == NULL) {
		rc = tokenizer_fail(err, errlen, "pre-tokenizer '%s': regex does not compile (PCRE2 "
		    "error %d at %zu)", name, perr, (size_t)poff);
		goto fail_tok;
	}
	(void)pcre2_jit_compile(t->re, PCRE2_JIT_COMPLETE);  /* the interpreter when no JIT */
	if (t->eos >= 0)
		t->eog[t->neog++] = t->eos;
	if (t->eot >= 0)
		t->eog[t->neog++] = t->eot;
	for (i = 0; i < sizeof tokenizer_eog_names / sizeof tokenizer_eog_names[0]; i++) {
		int32_t id = tokenizer_token_id(t, tokenizer_eog_names[i]);

		if (id >= 0 && t->type[id] == TOKENIZER_T_CONTROL &&
		    t->neog < sizeof t->eog / sizeof t->eog[0])
			t->eog[t->neog++] = id;
	}
	t->chat = tokenizer_pick_chat(t, g);
	*out = t;
	return 0;

fail_tok:
	if (rc == -ENOMEM && errlen > 0)
		snprintf(err, errlen, "out of memory");
	tokenizer_free(t);
	return rc;
}

void
tokenizer_free(struct tokenizer *t)
{
	if (t == NULL)
		return;
	pcre2_code_free(t->re);
	free(t->text);
	free(t->text_off);
	free(t->type);
	free(t->dec);
	free(t->dec_off);
	free(t->vocab.slot);
	free(t->merge);
	free(t->merge_off);
	free(t->merges.slot);
	free(t->special);
	free(t);
}

size_t tokenizer_n_vocab(const struct tokenizer *t) { return t->n; }
const char *tokenizer_pre(const struct tokenizer *t) { return t->rule->pre; }
int32_t tokenizer_bos(const struct tokenizer *t) { return t->bos; }
int32_t tokenizer_eos(const struct tokenizer *t) { return t->eos; }
int32_t tokenizer_pad(const struct tokenizer *t) { return t->pad; }
enum tokenizer_chat tokenizer_chat_format(const struct tokenizer *t) { return t->chat; }

bool
tokenizer_is_eog(const struct tokenizer *t, int32_t id)
{
	size_t i;

	for (i = 0; i < t->neog; i++)
		if (t->eog[i] == id)
			return true;
	return false;
}

int32_t
tokenizer_token_id(const struct tokenizer *t, const char *s)
{
	return tokenizer_lookup(t, s, strlen(s));
}

const char *
tokenizer_token_text(const struct tokenizer *t, int32_t id)
{
	return id < 0 || (size_t)id >= t->n ? NULL : t->text + t->text_off[id];
}

enum tokenizer_ttype
tokenizer_token_type(const struct tokenizer *t, int32_t id)
{
	return id < 0 || (size_t)id >= t->n ? TOKENIZER_T_UNDEFINED : t->type[id];
}

/* A growing array of ids. */
struct tokenizer_ids {
	int32_t *v;
	size_t n, cap;
};

static int
tokenizer_push(struct tokenizer_ids *a, int32_t id)
{
	if (a->n == a->cap) {
		size_t cap = a->cap ? a->cap * 2 : 256;
		int32_t *v = realloc(a->v, cap * sizeof *v);

		if (v == NULL)
			return -ENOMEM;
		a->v = v;
		a->cap = cap;
	}
	a->v[a->n++] = id;
	return 0;
}

/* Scratch for one piece's BPE: the mapped text and its symbols. */
struct tokenizer_work {
	char *map;
	size_t mapcap;
	uint32_t *off, *len, *rank;
	size_t symcap;
};

/* Rank of the pair (i, i+1) of the work's symbols. */
static uint32_t
tokenizer_pair_rank(const struct tokenizer *t, const struct tokenizer_work *w, size_t i)
{
	return tokenizer_rank(t, w->map + w->off[i], w->len[i], w->map + w->off[i + 1],
	    w->len[i + 1]);
}

/* One pre-tokenized piece: byte map, merges by rank, ids. */
static int
tokenizer_bpe(const struct tokenizer *t, struct tokenizer_work *w, const uint8_t *p,
    size_t len, struct tokenizer_ids *out)
{
	size_t i, n = 0, m = 0;
	int rc;

	if (2 * len > w->mapcap) {
		char *map = realloc(w->map, 2 * len);

		if (map == NULL)
			return -ENOMEM;
		w->map = map;
		w->mapcap = 2 * len;
	}
	if (len > w->symcap) {
		uint32_t *o = realloc(w->off, len * sizeof *o);

		if (o == NULL)
			return -ENOMEM;
		w->off = o;
		if ((o = realloc(w->len, len * sizeof *o)) == NULL)
			return -ENOMEM;
		w->len = o;
		if ((o = realloc(w->rank, len * sizeof *o)) == NULL)
			return -ENOMEM;
		w->rank = o;
		w->symcap = len;
	}
	for (i = 0; i < len; i++) {
		const char *u = t->byte_utf8[p[i]];

		w->off[n] = (uint32_t)m;
		w->len[n] = u[1] ? 2 : 1;
		memcpy(w->map + m, u, w->len[n]);
		m += w->len[n++];
	}
	if (t->rule->ignore_merges) {
		int32_t id = tokenizer_lookup(t, w->map, m);

		if (id >= 0)
			return tokenizer_push(out, id);
	}
	for (i = 0; i + 1 < n; i++)
		w->rank[i] = tokenizer_pair_rank(t, w, i);
	while (n > 1) {
		size_t best = 0;

		for (i = 1; i + 1 < n; i++)
			if (w->rank[i] < w->rank[best])
				best = i;
		if (w->rank[best] == UINT32_MAX)
			break;
		w->len[best] += w->len[best + 1];
		memmove(w->off + best + 1, w->off + best + 2, (n - best - 2) * sizeof *w->off);
		memmove(w->len + best + 1, w->len + best + 2, (n - best - 2) * sizeof *w->len);
		memmove(w->rank + best + 1, w->rank + best + 2, (n - best - 2) * sizeof *w->rank);
		n--;
		if (best > 0)
			w->rank[best - 1] = tokenizer_pair_rank(t, w, best - 1);
		if (best + 1 < n)
			w->rank[best] = tokenizer_pair_rank(t, w, best);
	}
	for (i = 0; i < n; i++) {
		int32_t id = tokenizer_lookup(t, w->map + w->off[i], w->len[i]);

		if (id < 0)
			return CERTA_EINVAL;  /* a byte character missing from the vocabulary */
		if ((rc = tokenizer_push(out, id)) != 0)
			return rc;
	}
	return 0;
}

/* Text between added tokens: split by the rule's regex, every piece and gap through BPE. */
static int
tokenizer_segment(const struct tokenizer *t, struct tokenizer_work *w, pcre2_match_data *md,
    const uint8_t *s, size_t len, struct tokenizer_ids *out)
{
	size_t pos = 0, gap = 0;
	uint32_t opts = PCRE2_NO_UTF_CHECK;
	int rc;

	while (pos < len) {
		PCRE2_SIZE *ov;

		rc = pcre2_match(t->re, s, len, pos, opts, md, NULL);
		if (rc == PCRE2_ERROR_JIT_STACKLIMIT && !(opts & PCRE2_NO_JIT)) {
			opts |= PCRE2_NO_JIT;  /* a pathological run: the interpreter copes */
			continue;
		}
		if (rc == PCRE2_ERROR_NOMATCH)
			break;
		if (rc < 0)
			return rc == PCRE2_ERROR_NOMEMORY ? -ENOMEM : CERTA_EINVAL;
		ov = pcre2_get_ovector_pointer(md);
		if (ov[1] == ov[0]) {  /* an empty match: step one character, keep the gap */
			int l = utf8_char(s + ov[0], len - ov[0], NULL);

			pos = ov[0] + (size_t)(l > 0 ? l : 1);
			continue;
		}
		if (ov[0] > gap && (rc = tokenizer_bpe(t, w, s + gap, ov[0] - gap, out)) != 0)
			return rc;
		if ((rc = tokenizer_bpe(t, w, s + ov[0], ov[1] - ov[0], out)) != 0)
			return rc;
		pos = gap = ov[1];
	}
	if (len > gap)
		return tokenizer_bpe(t, w, s + gap, len - gap, out);
	return 0;
}

/* The added token at p (longest first), or -1. */
static int32_t
tokenizer_special_at(const struct tokenizer *t, const uint8_t *p, size_t left, unsigned flags)
{
	uint32_t i;

	for (i = t->spec_at[*p]; i < t->spec_at[*p + 1]; i++) {
		int32_t id = t->special[i];
		size_t l = t->text_off[id + 1] - t->text_off[id] - 1;

		if (t->type[id] == TOKENIZER_T_CONTROL && !(flags & TOKENIZER_SPECIAL))
			continue;
		if (l <= left && memcmp(p, t->text + t->text_off[id], l) == 0)
			return id;
	}
	return -1;
}

int
tokenizer_encode(const struct tokenizer *t, const char *text, size_t len, unsigned flags,
    int32_t **ids, size_t *n)
{
	const uint8_t *s = (const uint8_t *)text;
	struct tokenizer_ids out = { 0 };
	struct tokenizer_work w = { 0 };
	pcre2_match_data *md;
	size_t i, seg = 0;
	int rc = 0;

	for (i = 0; i < len;) {
		int l = utf8_char(s + i, len - i, NULL);

		if (l <= 0)
			return -EILSEQ;
		i += (size_t)l;
	}
	md = pcre2_match_data_create_from_pattern(t->re, NULL);
	if (md == NULL)
		return -ENOMEM;
	for (i = 0; i < len; i++) {
		int32_t id;

		if (t->spec_at[s[i]] == t->spec_at[s[i] + 1] ||
		    (id = tokenizer_special_at(t, s + i, len - i, flags)) < 0)
			continue;
		if (i > seg && (rc = tokenizer_segment(t, &w, md, s + seg, i - seg, &out)) != 0)
			goto fail_out;
		if ((rc = tokenizer_push(&out, id)) != 0)
			goto fail_out;
		i += t->text_off[id + 1] - t->text_off[id] - 2;  /* the loop adds one */
		seg = i + 1;
	}
	if (len > seg && (rc = tokenizer_segment(t, &w, md, s + seg, len - seg, &out)) != 0)
		goto fail_out;
	*ids = out.v;
	*n = out.n;
	out.v = NULL;

fail_out:
	free(out.v);
	free(w.map);
	free(w.off);
	free(w.len);
	free(w.rank);
	pcre2_match_data_free(md);
	return rc;
}

/* The bytes a token contributes to decoded text. */
static const char *
tokenizer_piece(const struct tokenizer *t, int32_t id, bool special, size_t *len)
{
	if (t->type[id] == TOKENIZER_T_CONTROL && !special) {
		*len = 0;
		return "";
	}
	*len = t->dec_off[id + 1] - t->dec_off[id];
	return t->dec + t->dec_off[id];
}

int
tokenizer_decode(const struct tokenizer *t, const int32_t *ids, size_t n, bool special,
    char **out, size_t *len)
{
	size_t i, total = 0, l;
	char *buf;

	for (i = 0; i < n; i++) {
		if (ids[i] < 0 || (size_t)ids[i] >= t->n)
			return -EINVAL;
		tokenizer_piece(t, ids[i], special, &l);
		total += l;
	}
	buf = malloc(total + 1);
	if (buf == NULL)
		return -ENOMEM;
	total = 0;
	for (i = 0; i < n; i++) {
		const char *p = tokenizer_piece(t, ids[i], special, &l);

		memcpy(buf + total, p, l);
		total += l;
	}
	buf[total] = 0;
	*out = buf;
	*len = total;
	return 0;
}

struct tokenizer_stream *
tokenizer_stream_new(const struct tokenizer *t, bool special)
{
	struct tokenizer_stream *s = calloc(1, sizeof *s);

	if (s == NULL)
		return NULL;
	s->t = t;
	s->special = special;
	return s;
}

void
tokenizer_stream_free(struct tokenizer_stream *s)
{
	if (s == NULL)
		return;
	free(s->out);
	free(s);
}

/* Room for need bytes of output. */
static int
tokenizer_stream_room(struct tokenizer_stream *s, size_t need)
{
	if (need > s->cap) {
		char *o = realloc(s->out, need);

		if (o == NULL)
			return -ENOMEM;
		s->out = o;
		s->cap = need;
	}
	return 0;
}

int
tokenizer_stream_put(struct tokenizer_stream *s, int32_t id, const char **out, size_t *len)
{
	const uint8_t *p;
	size_t plen, n, i = 0, o = 0;
	uint8_t *w;
	int rc;

	if (id < 0 || (size_t)id >= s->t->n)
		return -EINVAL;
	p = (const uint8_t *)tokenizer_piece(s->t, id, s->special, &plen);
	n = s->npend + plen;
	/* Held bytes and the token's, then at most 3 output bytes per input byte (U+FFFD). */
	if ((rc = tokenizer_stream_room(s, n + 3 * n + 1)) != 0)
		return rc;
	w = (uint8_t *)s->out + 3 * n + 1;
	memcpy(w, s->pend, s->npend);
	memcpy(w + s->npend, p, plen);
	s->npend = 0;
	while (i < n) {
		int l = utf8_char(w + i, n - i, NULL);

		if (l == 0) {  /* an incomplete character at the end: hold it */
			memcpy(s->pend, w + i, n - i);
			s->npend = n - i;
			break;
		}
		if (l < 0) {
			memcpy(s->out + o, "\xef\xbf\xbd", 3);
			o += 3;
			i++;
			continue;
		}
		memmove(s->out + o, w + i, (size_t)l);
		o += (size_t)l;
		i += (size_t)l;
	}
	s->out[o] = 0;
	*out = s->out;
	*len = o;
	return 0;
}

int
tokenizer_stream_flush(struct tokenizer_stream *s, const char **out, size_t *len)
{
	int rc = tokenizer_stream_room(s, 4);

	if (rc != 0)
		return rc;
	*len = 0;
	if (s->npend > 0) {
		memcpy(s->out, "\xef\xbf\xbd", 3);
		*len = 3;
		s->npend = 0;
	}
	s->out[*len] = 0;
	*out = s->out;
	return 0;
}

int
tokenizer_chat_by_name(const char *name)
{
	size_t i, j;

	for (i = 0; i < sizeof tokenizer_chats / sizeof tokenizer_chats[0]; i++)
		for (j = 0; j < 3 && tokenizer_chats[i].names[j] != NULL; j++)
			if (strcmp(tokenizer_chats[i].names[j], name) == 0)
				return (int)tokenizer_chats[i].chat;
	return -EINVAL;
}

const char *
tokenizer_chat_name(enum tokenizer_chat c)
{
	size_t i;

	for (i = 0; i < sizeof tokenizer_chats / sizeof tokenizer_chats[0]; i++)
		if (tokenizer_chats[i].chat == c)
			return tokenizer_chats[i].names[0];
	return "unknown";
}

int
tokenizer_chat_prompt(enum tokenizer_chat c, const char *problem, size_t len, char **out,
    size_t *outlen)
{
	const struct tokenizer_chat_fmt *f = NULL;
	size_t i, b, a;
	char *buf;

	for (i = 0; i < sizeof tokenizer_chats / sizeof tokenizer_chats[0]; i++)
		if (tokenizer_chats[i].chat == c)
			f = &tokenizer_chats[i];
	if (f == NULL)
		return -EINVAL;
	b = strlen(f->before);
	a = strlen(f->after);
	buf = malloc(b + len + a + 1);
	if (buf == NULL)
		return -ENOMEM;
	memcpy(buf, f->before, b);
	memcpy(buf + b, problem, len);
	memcpy(buf + b + len, f->after, a);
	buf[b + len + a] = 0;
	*out = buf;
	*outlen = b + len + a;
	return 0;
}
