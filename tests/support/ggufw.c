/* ggufw.c — a little GGUF writer for tests (see ggufw.h). */
#include "tests/support/ggufw.h"

#include <stdlib.h>
#include <string.h>

#include "workers/llm/gguf.h"

void
ggufw_put(struct ggufw *b, const void *d, size_t n)
{
	if (b->n + n > b->cap) {
		size_t cap = (b->n + n) * 2 + 64;
		uint8_t *p = realloc(b->p, cap);

		if (p == NULL)
			abort();
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->n, d, n);
	b->n += n;
}

void
ggufw_u32(struct ggufw *b, uint32_t v)
{
	ggufw_put(b, &v, sizeof v);
}

void
ggufw_u64(struct ggufw *b, uint64_t v)
{
	ggufw_put(b, &v, sizeof v);
}

void
ggufw_str(struct ggufw *b, const char *s)
{
	ggufw_u64(b, strlen(s));
	ggufw_put(b, s, strlen(s));
}

void
ggufw_kv_u32(struct ggufw *b, const char *k, uint32_t v)
{
	ggufw_str(b, k);
	ggufw_u32(b, GGUF_U32);
	ggufw_u32(b, v);
}

void
ggufw_kv_str(struct ggufw *b, const char *k, const char *v)
{
	ggufw_str(b, k);
	ggufw_u32(b, GGUF_STRING);
	ggufw_str(b, v);
}

void
ggufw_kv_strs(struct ggufw *b, const char *k, const char *const *v, size_t n)
{
	size_t i;

	ggufw_str(b, k);
	ggufw_u32(b, GGUF_ARRAY);
	ggufw_u32(b, GGUF_STRING);
	ggufw_u64(b, n);
	for (i = 0; i < n; i++)
		ggufw_str(b, v[i]);
}

void
ggufw_kv_i32s(struct ggufw *b, const char *k, const int32_t *v, size_t n)
{
	ggufw_str(b, k);
	ggufw_u32(b, GGUF_ARRAY);
	ggufw_u32(b, GGUF_I32);
	ggufw_u64(b, n);
	ggufw_put(b, v, n * sizeof *v);
}

void
ggufw_free(struct ggufw *b)
{
	free(b->p);
	memset(b, 0, sizeof *b);
}
