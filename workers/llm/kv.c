/* kv.c — the flat per-sequence KV buffer (the paged cache replaces it behind kv.h). */
#include "workers/llm/kv.h"

#include <errno.h>
#include <stdlib.h>

#include "lib/error.h"

struct kv_flat {
	struct kv base;          /* first: a struct kv * is a struct kv_flat * */
	uint32_t capacity;
	float *k, *v;            /* [n_layer][capacity][row] */
};

/* Offset of (layer, pos) in either buffer. */
static size_t
kv_flat_at(const struct kv_flat *f, uint32_t layer, uint32_t pos)
{
	return ((size_t)layer * f->capacity + pos) * f->base.row;
}

static float *
kv_flat_k(struct kv *kv, uint32_t layer, uint32_t pos)
{
	struct kv_flat *f = (struct kv_flat *)kv;

	return f->k + kv_flat_at(f, layer, pos);
}

static float *
kv_flat_v(struct kv *kv, uint32_t layer, uint32_t pos)
{
	struct kv_flat *f = (struct kv_flat *)kv;

	return f->v + kv_flat_at(f, layer, pos);
}

/* Fixed capacity: refuse rather than grow (the paged cache is where memory is managed). */
static int
kv_flat_reserve(struct kv *kv, uint32_t n_pos)
{
	return n_pos <= ((struct kv_flat *)kv)->capacity ? 0 : CERTA_ECAPACITY;
}

static void
kv_flat_destroy(struct kv *kv)
{
	struct kv_flat *f = (struct kv_flat *)kv;

	free(f->k);
	free(f->v);
	free(f);
}

static const struct kv_ops kv_flat_ops = {
	.k = kv_flat_k,
	.v = kv_flat_v,
	.reserve = kv_flat_reserve,
	.destroy = kv_flat_destroy,
};

int
kv_flat_create(uint32_t n_layer, uint32_t row, uint32_t capacity, struct kv **out)
{
	struct kv_flat *f;
	size_t n;

	if (n_layer == 0 || row == 0 || capacity == 0)
		return -EINVAL;
	if ((size_t)n_layer * capacity > SIZE_MAX / sizeof(float) / row)
		return -EOVERFLOW;
	n = (size_t)n_layer * capacity * row;
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->k = calloc(n, sizeof(float));
	if (!f->k)
		goto fail_flat;
	f->v = calloc(n, sizeof(float));
	if (!f->v)
		goto fail_k;
	f->base.ops = &kv_flat_ops;
	f->base.n_layer = n_layer;
	f->base.row = row;
	f->capacity = capacity;
	*out = &f->base;
	return 0;

fail_k:
	free(f->k);
fail_flat:
	free(f);
	return -ENOMEM;
}
