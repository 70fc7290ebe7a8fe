/*
 * fuzz_gguf.c — libFuzzer target for the GGUF reader (workers/llm/gguf.h): any bytes through
 * gguf_open_buffer, then every accessor over whatever was accepted (each key with every typed
 * read, each array element, each tensor's last data byte), so an accepted file is proved safe
 * to walk in full.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "workers/llm/gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Reads every value of every key with every accessor; the answers do not matter. */
static void
fuzz_gguf_walk(const struct gguf *g)
{
	volatile uint64_t sink = 0;
	size_t i;

	for (i = 0; i < gguf_kv_count(g); i++) {
		const char *key = gguf_kv_key(g, i), *s;
		enum gguf_vtype elem;
		uint64_t n, u64, k;
		uint32_t u32;
		int64_t i64;
		double d;
		bool b;
		size_t len;

		if (key == NULL || gguf_find_key(g, key) != (long)i)
			abort();   /* keys are unique and found by name */
		(void)gguf_get_u64(g, key, &u64);
		(void)gguf_get_u32(g, key, &u32);
		(void)gguf_get_i64(g, key, &i64);
		(void)gguf_get_f64(g, key, &d);
		(void)gguf_get_bool(g, key, &b);
		if (gguf_get_str(g, key, &s, &len) == 0 && len > 0)
			sink += (uint8_t)s[len - 1];
		if (gguf_arr_len(g, key, &elem, &n) != 0)
			continue;
		for (k = 0; k < n && k < 4096; k++) {
			(void)gguf_arr_i64(g, key, k, &i64);
			(void)gguf_arr_f64(g, key, k, &d);
			if (gguf_arr_str(g, key, k, &s, &len) == 0 && len > 0)
				sink += (uint8_t)s[len - 1];
		}
	}
	for (i = 0; i < gguf_tensor_count(g); i++) {
		const struct gguf_tensor *t = gguf_tensor_at(g, i);

		if (t == NULL || gguf_find_tensor(g, t->name) != t || t->nbytes == 0)
			abort();
		sink += ((const uint8_t *)t->data)[0] + ((const uint8_t *)t->data)[t->nbytes - 1];
	}
	(void)sink;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct gguf *g = NULL;
	uint8_t *copy;
	char err[256];

	/* An exact-size copy: ASan sees any read past the end. */
	copy = malloc(size > 0 ? size : 1);
	if (copy == NULL)
		return 0;
	memcpy(copy, data, size);
	if (gguf_open_buffer(copy, size, &g, err, sizeof err) == 0) {
		fuzz_gguf_walk(g);
		gguf_close(g);
	} else if (err[0] == '\0') {
		abort();   /* a refusal always says why */
	}
	free(copy);
	return 0;
}
