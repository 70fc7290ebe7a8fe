/* kv.c — the flat per-sequence KV buffer and the paged cache (blocks, page tables, fork). */
#include "workers/llm/kv.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

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

/* ---- paged KV: a shared pool of fixed-size blocks, reference-counted ---------------------- */

struct kv_pool {
	uint32_t n_layer, row, block, n_blocks;
	size_t block_floats;       /* K and V of one block: 2 * n_layer * block * row */
	float *data;               /* [n_blocks][2][n_layer][block][row] */
	const struct kv_mem *mem;  /* NULL: data is host memory */
	uint32_t *ref;             /* per block; 0 = free */
	uint32_t *free_ids;        /* stack of free block ids */
	uint32_t n_free;
	pthread_mutex_t mu;        /* guards ref and the free stack */
};

struct kv_paged {
	struct kv base;            /* first */
	struct kv_pool *pool;
	uint32_t max_pos;
	uint32_t n_pages;          /* pages in the table (blocks held) */
	uint32_t *pages;           /* block id per block of positions; room for max_pos */
};

int
kv_pool_create(uint32_t n_layer, uint32_t row, uint32_t block, uint32_t n_blocks,
    struct kv_pool **out)
{
	return kv_pool_create_mem(n_layer, row, block, n_blocks, NULL, out);
}

int
kv_pool_create_mem(uint32_t n_layer, uint32_t row, uint32_t block, uint32_t n_blocks,
    const struct kv_mem *mem, struct kv_pool **out)
{
	struct kv_pool *p;
	uint32_t i;

	if (n_layer == 0 || row == 0 || block == 0 || n_blocks == 0)
		return -EINVAL;
	if ((size_t)2 * n_layer * block > SIZE_MAX / sizeof(float) / row ||
	    (size_t)2 * n_layer * block * row > SIZE_MAX / sizeof(float) / n_blocks)
		return -EOVERFLOW;
	p = calloc(1, sizeof *p);
	if (p == NULL)
		return -ENOMEM;
	p->n_layer = n_layer;
	p->row = row;
	p->block = block;
	p->n_blocks = n_blocks;
	p->block_floats = (size_t)2 * n_layer * block * row;
	p->mem = mem;
	p->data = mem ? mem->alloc(mem->ctx, p->block_floats * n_blocks * sizeof(float)) :
	    calloc(p->block_floats * n_blocks, sizeof(float));
	p->ref = calloc(n_blocks, sizeof *p->ref);
	p->free_ids = malloc(n_blocks * sizeof *p->free_ids);
	if (p->data == NULL || p->ref == NULL || p->free_ids == NULL) {
		if (mem && p->data)
			mem->free(mem->ctx, p->data);
		else
			free(p->data);
		free(p->ref);
		free(p->free_ids);
		free(p);
		return -ENOMEM;
	}
	for (i = 0; i < n_blocks; i++)
		p->free_ids[i] = n_blocks - 1 - i;
	p->n_free = n_blocks;
	pthread_mutex_init(&p->mu, NULL);
	*out = p;
	return 0;
}

void
kv_pool_free(struct kv_pool *p)
{
	if (p == NULL)
		return;
	pthread_mutex_destroy(&p->mu);
	if (p->mem)
		p->mem->free(p->mem->ctx, p->data);
	else
		free(p->data);
	free(p->ref);
	free(p->free_ids);
	free(p);
}

uint32_t
kv_pool_free_blocks(struct kv_pool *p)
{
	uint32_t n;

	pthread_mutex_lock(&p->mu);
	n = p->n_free;
	pthread_mutex_unlock(&p->mu);
	return n;
}

uint32_t
kv_pool_blocks(const struct kv_pool *p)
{
	return p->n_blocks;
}

uint32_t
kv_pool_block_size(const struct kv_pool *p)
{
	return p->block;
}

/* Drops one reference (pool lock held); the block is free at 0. */
static void
kv_pool_unref_locked(struct kv_pool *p, uint32_t b)
{
	if (--p->ref[b] == 0)
		p->free_ids[p->n_free++] = b;
}

static float *
kv_paged_at(struct kv *kv, uint32_t layer, uint32_t pos, int which)
{
	struct kv_paged *s = (struct kv_paged *)kv;
	const struct kv_pool *p = s->pool;
	uint32_t b = s->pages[pos / p->block];

	return p->data + b * p->block_floats +
	    (((size_t)which * p->n_layer + layer) * p->block + pos % p->block) * p->row;
}

static float *
kv_paged_k(struct kv *kv, uint32_t layer, uint32_t pos)
{
	return kv_paged_at(kv, layer, pos, 0);
}

static float *
kv_paged_v(struct kv *kv, uint32_t layer, uint32_t pos)
{
	return kv_paged_at(kv, layer, pos, 1);
}

/*
 * Positions len..n_pos-1 are about to be written: every block they touch must be this
 * sequence's alone.  Missing blocks are taken from the pool; a shared one (a fork's) is copied
 * first (copy on write).  All or nothing: CERTA_ECAPACITY when the pool has too few blocks.
 */
static int
kv_paged_reserve(struct kv *kv, uint32_t n_pos)
{
	struct kv_paged *s = (struct kv_paged *)kv;
	struct kv_pool *p = s->pool;
	uint32_t first, last, i, need = 0;

	if (n_pos > s->max_pos)
		return CERTA_ECAPACITY;
	if (n_pos <= kv->len)
		return 0;
	first = kv->len / p->block;
	last = (n_pos - 1) / p->block;
	pthread_mutex_lock(&p->mu);
	for (i = first; i <= last; i++)
		if (i >= s->n_pages || p->ref[s->pages[i]] > 1)
			need++;
	if (need > p->n_free) {
		pthread_mutex_unlock(&p->mu);
		return CERTA_ECAPACITY;
	}
	for (i = first; i <= last; i++) {
		uint32_t b;
		if (i < s->n_pages && p->ref[s->pages[i]] == 1)
			continue;
		b = p->free_ids[--p->n_free];
		p->ref[b] = 1;
		if (i < s->n_pages) {
			float *dst = p->data + b * p->block_floats;
			const float *src = p->data + s->pages[i] * p->block_floats;
			if (p->mem)
				p->mem->copy(p->mem->ctx, dst, src, p->block_floats * sizeof(float));
			else
				memcpy(dst, src, p->block_floats * sizeof(float));
			kv_pool_unref_locked(p, s->pages[i]);
		} else {
			s->n_pages = i + 1;
		}
		s->pages[i] = b;
	}
	pthread_mutex_unlock(&p->mu);
	return 0;
}

static void
kv_paged_destroy(struct kv *kv)
{
	struct kv_paged *s = (struct kv_paged *)kv;
	uint32_t i;

	pthread_mutex_lock(&s->pool->mu);
	for (i = 0; i < s->n_pages; i++)
		kv_pool_unref_locked(s->pool, s->pages[i]);
	pthread_mutex_unlock(&s->pool->mu);
	free(s->pages);
	free(s);
}

static const struct kv_ops kv_paged_ops = {
	.k = kv_paged_k,
	.v = kv_paged_v,
	.reserve = kv_paged_reserve,
	.destroy = kv_paged_destroy,
};

int
kv_paged_create(struct kv_pool *p, uint32_t max_pos, struct kv **out)
{
	struct kv_paged *s;

	if (max_pos == 0)
		return -EINVAL;
	s = calloc(1, sizeof *s);
	if (s == NULL)
		return -ENOMEM;
	s->pages = calloc((max_pos + p->block - 1) / p->block, sizeof *s->pages);
	if (s->pages == NULL) {
		free(s);
		return -ENOMEM;
	}
	s->base.ops = &kv_paged_ops;
	s->base.n_layer = p->n_layer;
	s->base.row = p->row;
	s->pool = p;
	s->max_pos = max_pos;
	*out = &s->base;
	return 0;
}

bool
kv_is_paged(const struct kv *kv)
{
	return kv != NULL && kv->ops == &kv_paged_ops;
}

int
kv_fork(struct kv *src, uint32_t n_pos, struct kv **out)
{
	struct kv_paged *s = (struct kv_paged *)src, *f;
	struct kv *kv;
	uint32_t i, n;
	int rc;

	if (!kv_is_paged(src) || n_pos > src->len)
		return -EINVAL;
	rc = kv_paged_create(s->pool, s->max_pos, &kv);
	if (rc != 0)
		return rc;
	f = (struct kv_paged *)kv;
	n = (n_pos + s->pool->block - 1) / s->pool->block;
	pthread_mutex_lock(&s->pool->mu);
	for (i = 0; i < n; i++) {
		f->pages[i] = s->pages[i];
		s->pool->ref[s->pages[i]]++;
	}
	pthread_mutex_unlock(&s->pool->mu);
	f->n_pages = n;
	kv->len = n_pos;
	*out = kv;
	return 0;
}

void
kv_trim(struct kv *kv)
{
	struct kv_paged *s = (struct kv_paged *)kv;
	uint32_t keep;

	if (!kv_is_paged(kv))
		return;
	keep = (kv->len + s->pool->block - 1) / s->pool->block;
	pthread_mutex_lock(&s->pool->mu);
	while (s->n_pages > keep)
		kv_pool_unref_locked(s->pool, s->pages[--s->n_pages]);
	pthread_mutex_unlock(&s->pool->mu);
}

uint32_t
kv_blocks_held(const struct kv *kv)
{
	return kv_is_paged(kv) ? ((const struct kv_paged *)kv)->n_pages : 0;
}

uint32_t
kv_block_size(const struct kv *kv)
{
	if (kv_is_paged(kv))
		return ((const struct kv_paged *)kv)->pool->block;
	return ((const struct kv_flat *)kv)->capacity;
}
