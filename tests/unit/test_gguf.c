/* test_gguf.c — the strict GGUF reader: values, tensors, and every way a file can be bad. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "lib/error.h"
#include "tests/support/ggufw.h"
#include "workers/llm/gguf.h"

/* Offsets of interesting places in the model file, for targeted corruption. */
struct layout {
	size_t nkv_at, type_of_vocab_at, tensor_info_at, first_dims_at, first_type_at;
	size_t first_offset_at, data_at;
};

/*
 * A small model-like file: 7 metadata pairs (u32, i32, f32, bool, string, string array,
 * f32 array), alignment 64, and three tensors (f32 [8], f16 [4 x 2], q8_0 [32 x 2]).
 */
static struct ggufw
model(struct layout *lo)
{
	struct ggufw b = { 0 };
	static const char *const vocab[] = { "<s>", "hello", "", "w\xc3\xb6rld" };
	const float scores[3] = { 0.5f, -1.0f, 2.25f };
	int32_t neg = -42;
	float f = 1e-5f;
	uint8_t t = 1;
	size_t i, pad;

	ggufw_put(&b, "GGUF", 4);
	ggufw_u32(&b, 3);
	ggufw_u64(&b, 3);                     /* tensors */
	lo->nkv_at = b.n;
	ggufw_u64(&b, 8);                     /* kvs */
	ggufw_kv_str(&b, "general.architecture", "llama");
	ggufw_kv_u32(&b, "general.alignment", 64);
	ggufw_kv_u32(&b, "llama.block_count", 2);
	ggufw_str(&b, "llama.neg");
	ggufw_u32(&b, GGUF_I32);
	ggufw_put(&b, &neg, 4);
	ggufw_str(&b, "llama.attention.layer_norm_rms_epsilon");
	ggufw_u32(&b, GGUF_F32);
	ggufw_put(&b, &f, 4);
	ggufw_str(&b, "tokenizer.ggml.add_bos_token");
	ggufw_u32(&b, GGUF_BOOL);
	ggufw_put(&b, &t, 1);
	ggufw_str(&b, "tokenizer.ggml.tokens");
	lo->type_of_vocab_at = b.n;
	ggufw_u32(&b, GGUF_ARRAY);
	ggufw_u32(&b, GGUF_STRING);
	ggufw_u64(&b, 4);
	for (i = 0; i < 4; i++)
		ggufw_str(&b, vocab[i]);
	ggufw_str(&b, "tokenizer.ggml.scores");
	ggufw_u32(&b, GGUF_ARRAY);
	ggufw_u32(&b, GGUF_F32);
	ggufw_u64(&b, 3);
	ggufw_put(&b, scores, sizeof scores);

	lo->tensor_info_at = b.n;
	ggufw_str(&b, "a.weight");            /* f32 [8] at 0 (32 bytes) */
	ggufw_u32(&b, 1);
	lo->first_dims_at = b.n;
	ggufw_u64(&b, 8);
	lo->first_type_at = b.n;
	ggufw_u32(&b, GGUF_T_F32);
	lo->first_offset_at = b.n;
	ggufw_u64(&b, 0);
	ggufw_str(&b, "b.weight");            /* f16 [4 x 2] at 64 (16 bytes) */
	ggufw_u32(&b, 2);
	ggufw_u64(&b, 4);
	ggufw_u64(&b, 2);
	ggufw_u32(&b, GGUF_T_F16);
	ggufw_u64(&b, 64);
	ggufw_str(&b, "c.weight");            /* q8_0 [32 x 2] at 128 (68 bytes) */
	ggufw_u32(&b, 2);
	ggufw_u64(&b, 32);
	ggufw_u64(&b, 2);
	ggufw_u32(&b, GGUF_T_Q8_0);
	ggufw_u64(&b, 128);
	pad = (64 - b.n % 64) % 64;
	for (i = 0; i < pad; i++)
		ggufw_put(&b, "", 1);
	lo->data_at = b.n;
	for (i = 0; i < 196; i++) {
		uint8_t v = (uint8_t)i;
		ggufw_put(&b, &v, 1);
	}
	return b;
}

static int
open_buf(const struct ggufw *b, struct gguf **g, char *err, size_t errlen)
{
	err[0] = '\0';
	return gguf_open_buffer(b->p, b->n, g, err, errlen);
}

static void
test_values_and_tensors(void **state)
{
	struct layout lo;
	struct ggufw b = model(&lo);
	struct gguf *g = NULL;
	const struct gguf_tensor *t;
	enum gguf_vtype et;
	const char *s;
	size_t len;
	uint64_t n, u64;
	uint32_t u32;
	int64_t i64;
	double d;
	bool flag;
	char err[256];

	(void)state;
	assert_int_equal(open_buf(&b, &g, err, sizeof err), 0);
	assert_int_equal(gguf_version(g), 3);
	assert_int_equal(gguf_alignment(g), 64);
	assert_int_equal(gguf_kv_count(g), 8);
	assert_string_equal(gguf_kv_key(g, 0), "general.architecture");
	assert_int_equal(gguf_get_str(g, "general.architecture", &s, &len), 0);
	assert_int_equal(len, 5);
	assert_memory_equal(s, "llama", 5);
	assert_int_equal(gguf_get_u32(g, "llama.block_count", &u32), 0);
	assert_int_equal(u32, 2);
	assert_int_equal(gguf_get_u64(g, "llama.block_count", &u64), 0);
	assert_int_equal(gguf_get_i64(g, "llama.neg", &i64), 0);
	assert_int_equal(i64, -42);
	/* A negative value does not fit an unsigned result; a string is not a number. */
	assert_int_equal(gguf_get_u32(g, "llama.neg", &u32), -ERANGE);
	assert_int_equal(gguf_get_u32(g, "general.architecture", &u32), -EINVAL);
	assert_int_equal(gguf_get_u32(g, "no.such.key", &u32), -ENOENT);
	assert_int_equal(gguf_get_f64(g, "llama.attention.layer_norm_rms_epsilon", &d), 0);
	assert_true(d > 0.99e-5 && d < 1.01e-5);
	assert_int_equal(gguf_get_f64(g, "llama.block_count", &d), -EINVAL);
	assert_int_equal(gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &flag), 0);
	assert_true(flag);

	assert_int_equal(gguf_arr_len(g, "tokenizer.ggml.tokens", &et, &n), 0);
	assert_int_equal(et, GGUF_STRING);
	assert_int_equal(n, 4);
	assert_int_equal(gguf_arr_str(g, "tokenizer.ggml.tokens", 3, &s, &len), 0);
	assert_int_equal(len, 6);
	assert_memory_equal(s, "w\xc3\xb6rld", 6);
	assert_int_equal(gguf_arr_str(g, "tokenizer.ggml.tokens", 2, &s, &len), 0);
	assert_int_equal(len, 0);
	assert_int_equal(gguf_arr_str(g, "tokenizer.ggml.tokens", 4, &s, &len), -EINVAL);
	assert_int_equal(gguf_arr_f64(g, "tokenizer.ggml.scores", 2, &d), 0);
	assert_true(d == 2.25);
	assert_int_equal(gguf_arr_str(g, "tokenizer.ggml.scores", 0, &s, &len), -EINVAL);
	assert_int_equal(gguf_arr_len(g, "llama.block_count", &et, &n), -EINVAL);

	assert_int_equal(gguf_tensor_count(g), 3);
	t = gguf_find_tensor(g, "c.weight");
	assert_non_null(t);
	assert_int_equal(t->type, GGUF_T_Q8_0);
	assert_int_equal(t->n_dims, 2);
	assert_int_equal(t->ne[0], 32);
	assert_int_equal(t->ne[1], 2);
	assert_int_equal(t->ne[2], 1);
	assert_int_equal(t->nelem, 64);
	assert_int_equal(t->nbytes, 68);
	assert_ptr_equal(t->data, b.p + lo.data_at + 128);
	t = gguf_find_tensor(g, "b.weight");
	assert_int_equal(t->nbytes, 16);
	assert_ptr_equal(t->data, b.p + lo.data_at + 64);
	assert_null(gguf_find_tensor(g, "d.weight"));
	assert_string_equal(gguf_ttype_name(GGUF_T_Q6_K), "q6_k");
	assert_int_equal(gguf_ttype_block(GGUF_T_Q4_K), 256);
	assert_int_equal(gguf_ttype_size(GGUF_T_Q4_K), 144);
	assert_null(gguf_ttype_name(99));
	gguf_close(g);
	free(b.p);
}

/* Every proper prefix of a valid file is refused with a message, and never read past. */
static void
test_every_truncation_refused(void **state)
{
	struct layout lo;
	struct ggufw b = model(&lo);
	struct gguf *g;
	char err[256];
	size_t n;

	(void)state;
	for (n = 0; n < b.n; n++) {
		/* A private copy of exactly n bytes, so ASan sees any read past it. */
		uint8_t *cut = malloc(n > 0 ? n : 1);
		assert_non_null(cut);
		memcpy(cut, b.p, n);
		g = NULL;
		err[0] = '\0';
		if (gguf_open_buffer(cut, n, &g, err, sizeof err) != CERTA_EINVAL)
			fail_msg("a file cut to %zu of %zu bytes was not refused", n, b.n);
		assert_null(g);
		assert_true(strlen(err) > 10);
		free(cut);
	}
	free(b.p);
}

/* Writes v (n bytes) at off of a copy of the model; expects refusal with msg in the error. */
static void
expect_bad(const struct ggufw *good, size_t off, const void *v, size_t n, const char *msg)
{
	struct ggufw b = { 0 };
	struct gguf *g = NULL;
	char err[256];

	ggufw_put(&b, good->p, good->n);
	memcpy(b.p + off, v, n);
	assert_int_equal(open_buf(&b, &g, err, sizeof err), CERTA_EINVAL);
	if (strstr(err, msg) == NULL)
		fail_msg("error '%s' lacks '%s'", err, msg);
	free(b.p);
}

static void
test_corruptions_named(void **state)
{
	struct layout lo;
	struct ggufw b = model(&lo);
	uint64_t big = 1ull << 60, zero = 0, dim33 = 33, mis = 8, over = 64, far = 4096;
	uint32_t v1 = 1, arr = GGUF_ARRAY, unk = 77, nd5 = 5, tq = 99;

	(void)state;
	expect_bad(&b, 0, "GGUX", 4, "no \"GGUF\" magic");
	expect_bad(&b, 4, &v1, 4, "version 1 is not supported");
	expect_bad(&b, lo.nkv_at, &big, 8, "metadata count");
	expect_bad(&b, 8, &big, 8, "tensor count");
	/* The tokens array's element type made an array: nested arrays are refused. */
	expect_bad(&b, lo.type_of_vocab_at + 4, &arr, 4, "nested arrays");
	expect_bad(&b, lo.type_of_vocab_at + 4, &unk, 4, "unknown array element type 77");
	expect_bad(&b, lo.type_of_vocab_at, &unk, 4, "unknown value type 77");
	expect_bad(&b, lo.type_of_vocab_at + 8, &big, 8, "runs past the end");
	expect_bad(&b, lo.first_dims_at - 4, &nd5, 4, "5 dimensions");
	expect_bad(&b, lo.first_dims_at - 4, &zero, 4, "0 dimensions");
	expect_bad(&b, lo.first_dims_at, &zero, 8, "dimension 0 is 0");
	expect_bad(&b, lo.first_type_at, &tq, 4, "unknown ggml type 99");
	expect_bad(&b, lo.first_offset_at, &mis, 8, "not a multiple of the alignment 64");
	expect_bad(&b, lo.first_offset_at, &over, 8, "overlap");
	expect_bad(&b, lo.first_offset_at, &far, 8, "runs past the end of the file");
	/* A q8_0 row of 33 elements is not whole blocks: patch c.weight's ne[0] (skip the
	 * infos of a.weight and b.weight: name, n_dims, dims, type, offset). */
	{
		size_t at = lo.tensor_info_at;
		at += 8 + 8 + 4 + 8 + 4 + 8;
		at += 8 + 8 + 4 + 16 + 4 + 8;
		at += 8 + 8 + 4;
		expect_bad(&b, at, &dim33, 8, "not a whole number of q8_0 blocks");
	}
	/* Two tensors of one name: b.weight renamed a.weight. */
	{
		uint8_t *at = memmem(b.p, b.n, "b.weight", 8);
		assert_non_null(at);
		expect_bad(&b, (size_t)(at - b.p), "a", 1, "tensor 'a.weight' appears twice");
	}
	free(b.p);
}

/* A duplicate metadata key and a bad alignment, built directly. */
static void
test_bad_metadata(void **state)
{
	struct ggufw b = { 0 };
	struct gguf *g = NULL;
	char err[256];

	(void)state;
	ggufw_put(&b, "GGUF", 4);
	ggufw_u32(&b, 3);
	ggufw_u64(&b, 0);
	ggufw_u64(&b, 2);
	ggufw_kv_u32(&b, "x", 1);
	ggufw_kv_u32(&b, "x", 2);
	assert_int_equal(open_buf(&b, &g, err, sizeof err), CERTA_EINVAL);
	assert_non_null(strstr(err, "'x' appears twice"));
	b.n = 0;
	ggufw_put(&b, "GGUF", 4);
	ggufw_u32(&b, 3);
	ggufw_u64(&b, 0);
	ggufw_u64(&b, 1);
	ggufw_kv_u32(&b, "general.alignment", 48);
	assert_int_equal(open_buf(&b, &g, err, sizeof err), CERTA_EINVAL);
	assert_non_null(strstr(err, "power of two"));
	/* No tensors and no metadata at all is a valid (empty) file. */
	b.n = 0;
	ggufw_put(&b, "GGUF", 4);
	ggufw_u32(&b, 3);
	ggufw_u64(&b, 0);
	ggufw_u64(&b, 0);
	assert_int_equal(open_buf(&b, &g, err, sizeof err), 0);
	assert_int_equal(gguf_tensor_count(g), 0);
	gguf_close(g);
	free(b.p);
}

/* Random byte changes: refused or accepted, but never a crash or a read out of bounds. */
static void
test_random_damage(void **state)
{
	struct layout lo;
	struct ggufw b = model(&lo);
	uint64_t x = 0x9e3779b97f4a7c15ull;
	struct gguf *g;
	char err[256];
	int i, k, accepted = 0;

	(void)state;
	for (i = 0; i < 3000; i++) {
		uint8_t *c = malloc(b.n);
		assert_non_null(c);
		memcpy(c, b.p, b.n);
		for (k = 0; k < 1 + i % 4; k++) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			c[(x >> 8) % lo.data_at] = (uint8_t)x;
		}
		g = NULL;
		if (gguf_open_buffer(c, b.n, &g, err, sizeof err) == 0) {
			size_t j;
			accepted++;
			/* Whatever was accepted is safe to walk completely. */
			for (j = 0; j < gguf_tensor_count(g); j++) {
				const struct gguf_tensor *t = gguf_tensor_at(g, j);
				volatile uint8_t sink = ((const uint8_t *)t->data)[t->nbytes - 1];
				(void)sink;
			}
			gguf_close(g);
		}
		free(c);
	}
	print_message("random damage: %d of 3000 damaged files still valid\n", accepted);
	free(b.p);
}

static void
test_open_file(void **state)
{
	struct layout lo;
	struct ggufw b = model(&lo);
	char dir[] = "/tmp/certa-gguf.XXXXXX", path[64], err[256];
	struct gguf *g = NULL;
	int fd;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof path, "%s/m.gguf", dir);
	assert_int_equal(gguf_open(path, &g, err, sizeof err), -ENOENT);
	assert_non_null(strstr(err, "m.gguf"));
	assert_int_equal(gguf_open(dir, &g, err, sizeof err), -EISDIR);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, b.p, 10), 10);
	close(fd);
	assert_int_equal(gguf_open(path, &g, err, sizeof err), CERTA_EINVAL);
	assert_non_null(strstr(err, "shorter than a GGUF header"));
	fd = open(path, O_WRONLY | O_TRUNC);
	assert_int_equal(write(fd, b.p, b.n), (ssize_t)b.n);
	close(fd);
	assert_int_equal(gguf_open(path, &g, err, sizeof err), 0);
	assert_int_equal(gguf_find_tensor(g, "c.weight")->nbytes, 68);
	assert_int_equal(((const uint8_t *)gguf_find_tensor(g, "c.weight")->data)[0], 128);
	gguf_close(g);
	unlink(path);
	rmdir(dir);
	free(b.p);
}

int
main(void)
{
	static const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_values_and_tensors),
		cmocka_unit_test(test_every_truncation_refused),
		cmocka_unit_test(test_corruptions_named),
		cmocka_unit_test(test_bad_metadata),
		cmocka_unit_test(test_random_damage),
		cmocka_unit_test(test_open_file),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
