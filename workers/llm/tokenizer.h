/*
 * tokenizer.h — the model's tokenizer, built from GGUF metadata: byte-level BPE
 * (`tokenizer.ggml.model = "gpt2"`, the Qwen2/Qwen3/QwQ, DeepSeek-R1 distill and Llama-3 family),
 * the pre-tokenizer split rule of `tokenizer.ggml.pre`, merges by rank, special tokens, a
 * streaming decoder and the chat prompt formats of the reasoning models.
 *
 * Encoding follows Hugging Face `tokenizers` (and llama.cpp) step by step:
 *   1. added tokens (token_type 3 "control" and 4 "user-defined": `<|im_start|>`, `<think>`,
 *      `</think>`, ...) are found in the text first, leftmost then longest, and become one id
 *      each (control tokens only with TOKENIZER_SPECIAL; user-defined ones always);
 *   2. the text between them is split by the pre-tokenizer regex of the model (PCRE2 with
 *      Unicode properties; the table in tokenizer.c names the rule per `tokenizer.ggml.pre`);
 *   3. each piece's bytes are mapped to printable characters (GPT-2's bytes_to_unicode), then
 *      merged pairwise, lowest merge rank first (leftmost on ties), until no pair has a rank;
 *      Llama-3 ("ignore_merges") takes a piece that is a whole vocabulary entry as is;
 *   4. each resulting symbol is a vocabulary entry (every byte's character must be one).
 * No Unicode normalization is applied (Qwen's tokenizer.json asks for NFC; llama.cpp skips it
 * as well): the texts certa handles arrive in NFC.
 *
 * Errors: functions return 0 or a negative code (lib/error.h): CERTA_EINVAL for a GGUF whose
 * tokenizer metadata is missing, inconsistent or of a kind not supported (the message in err
 * names which), -EILSEQ for text that is not valid UTF-8, -ENOMEM.
 *
 * Threads: a struct tokenizer is read-only after tokenizer_open(); any thread may encode and
 * decode with it at the same time.  A struct tokenizer_stream belongs to one sequence and is
 * used by one thread at a time.
 */
#ifndef CERTA_WORKERS_LLM_TOKENIZER_H
#define CERTA_WORKERS_LLM_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct gguf;
struct tokenizer;
struct tokenizer_stream;

/* token_type values of the GGUF format. */
enum tokenizer_ttype {
	TOKENIZER_T_UNDEFINED = 0, TOKENIZER_T_NORMAL = 1, TOKENIZER_T_UNKNOWN = 2,
	TOKENIZER_T_CONTROL = 3, TOKENIZER_T_USER_DEFINED = 4, TOKENIZER_T_UNUSED = 5,
	TOKENIZER_T_BYTE = 6,
};

/* Prompt formats (not Jinja: the fixed formats of the families certa runs). */
enum tokenizer_chat {
	TOKENIZER_CHAT_NONE = 0,     /* no format known: the problem text is the prompt */
	TOKENIZER_CHAT_CHATML,       /* Qwen3 / QwQ: <|im_start|>user ... <|im_start|>assistant */
	TOKENIZER_CHAT_DEEPSEEK_R1,  /* R1 distills: <｜begin▁of▁sentence｜><｜User｜>...<｜Assistant｜> */
	TOKENIZER_CHAT_LLAMA3,       /* Llama-3 header format */
};

/* tokenizer_encode flags. */
#define TOKENIZER_SPECIAL 0x1u  /* control tokens written in the text become their ids */

/*
 * Builds the tokenizer from g's metadata: tokenizer.ggml.model (must be "gpt2"),
 * tokenizer.ggml.pre (a rule in the table of tokenizer.c, else refused), tokens, token_type
 * (optional: all normal), merges, bos/eos/padding/eot ids (optional; checked against the
 * vocabulary), tokenizer.chat_template (optional; only used to choose the prompt format).
 * Copies what it keeps: g may be closed afterwards.  Stores a new tokenizer in *out and returns
 * 0; CERTA_EINVAL with a message in err naming the key and the problem; -ENOMEM.
 */
int tokenizer_open(const struct gguf *g, struct tokenizer **out, char *err, size_t errlen);

/* Frees.  NULL is a no-op. */
void tokenizer_free(struct tokenizer *t);

/* Vocabulary size (ids are 0..n-1), the pre-tokenizer rule's name. */
size_t tokenizer_n_vocab(const struct tokenizer *t);
const char *tokenizer_pre(const struct tokenizer *t);

/* Special ids from the metadata, or -1 when absent. */
int32_t tokenizer_bos(const struct tokenizer *t);
int32_t tokenizer_eos(const struct tokenizer *t);
int32_t tokenizer_pad(const struct tokenizer *t);

/*
 * True when id ends a generation: the eos or eot id, or a control token among <|im_end|>,
 * <|eot_id|>, <|endoftext|>, <|end_of_text|>, <｜end▁of▁sentence｜>.  False for a bad id.
 */
bool tokenizer_is_eog(const struct tokenizer *t, int32_t id);

/* The id of the vocabulary entry spelled exactly s (as stored: "</think>", "Ġthe"), or -1. */
int32_t tokenizer_token_id(const struct tokenizer *t, const char *s);

/* Entry id as stored (NUL-terminated, owned by t) and its type; NULL / UNDEFINED for a bad id. */
const char *tokenizer_token_text(const struct tokenizer *t, int32_t id);
enum tokenizer_ttype tokenizer_token_type(const struct tokenizer *t, int32_t id);

/*
 * Encodes text[0..len) (UTF-8; need not be NUL-terminated) into a new malloc'd array of ids
 * stored in *ids (free it; NULL when *n is 0) with the count in *n.  flags: TOKENIZER_SPECIAL.
 * Returns 0; -EILSEQ when the text is not valid UTF-8 (nothing is stored); CERTA_EINVAL when a
 * piece has no token (a vocabulary that lacks one of the 256 byte characters); -ENOMEM.
 */
int tokenizer_encode(const struct tokenizer *t, const char *text, size_t len, unsigned flags,
    int32_t **ids, size_t *n);

/*
 * The bytes of ids[0..n) into a new malloc'd NUL-terminated string *out (length in *len):
 * normal tokens through the byte map, user-defined tokens as written, control tokens as written
 * when special is true and skipped otherwise.  The result can end in the middle of a UTF-8
 * character or hold invalid sequences (it is what the tokens spell); use a stream for text that
 * must be valid.  Returns 0, -EINVAL (an id out of range), -ENOMEM.
 */
int tokenizer_decode(const struct tokenizer *t, const int32_t *ids, size_t n, bool special,
    char **out, size_t *len);

/*
 * Streaming decode for one sequence: tokenizer_stream_put() appends one token's bytes and
 * returns in *out and *len the longest part that ends on a whole UTF-8 character (held-back bytes of
 * an incomplete character come with a later token); what it emits is always valid UTF-8:
 * bytes that can never form a character become U+FFFD.  *out points into the stream and stays
 * valid until the next call on it.  tokenizer_stream_flush() emits what is held back (an
 * incomplete character at the end as U+FFFD).  special: as tokenizer_decode().
 * new returns NULL on allocation failure; put returns 0, -EINVAL (bad id), -ENOMEM.
 */
struct tokenizer_stream *tokenizer_stream_new(const struct tokenizer *t, bool special);
int tokenizer_stream_put(struct tokenizer_stream *s, int32_t id, const char **out,
    size_t *len);
int tokenizer_stream_flush(struct tokenizer_stream *s, const char **out, size_t *len);
void tokenizer_stream_free(struct tokenizer_stream *s);

/*
 * The prompt format chosen at open: from tokenizer.chat_template markers when present, else
 * from which family's special tokens the vocabulary has (DeepSeek-R1's first, as the distills
 * keep their base model's tokens), else TOKENIZER_CHAT_NONE.
 */
enum tokenizer_chat tokenizer_chat_format(const struct tokenizer *t);

/* By name ("chatml", "qwen3", "qwq", "deepseek-r1", "llama3", "none"), or -EINVAL. */
int tokenizer_chat_by_name(const char *name);
const char *tokenizer_chat_name(enum tokenizer_chat c);

/*
 * One user problem as the prompt for format c, opened for the model's thinking, into a new
 * malloc'd NUL-terminated string *out (length in *len).  The prompt spells its special tokens
 * (and the BOS of formats that have one): encode it with TOKENIZER_SPECIAL and add no BOS.
 *   CHATML:      <|im_start|>user\n{P}<|im_end|>\n<|im_start|>assistant\n<think>\n
 *   DEEPSEEK_R1: <｜begin▁of▁sentence｜><｜User｜>{P}<｜Assistant｜><think>\n
 *   LLAMA3:      <|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n{P}<|eot_id|>
 *                <|start_header_id|>assistant<|end_header_id|>\n\n
 *   NONE:        {P}
 * Returns 0, -EINVAL (unknown c), -ENOMEM.
 */
int tokenizer_chat_prompt(enum tokenizer_chat c, const char *problem, size_t len, char **out,
    size_t *outlen);

#endif
