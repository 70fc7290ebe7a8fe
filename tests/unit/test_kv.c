/*
 * test_kv.c — the paged KV cache (workers/llm/kv.c): blocks from a pool, page tables, fork
 * with copy on write, capacity refusals that change nothing, blocks returned on destroy and
 * trim; and the flat cache's fixed capacity.
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
#include "workers/llm/kv.h"

#define LAYERS 2
#define ROW 3
#define BLOCK 4

/* A value unique to (tag, layer, pos, i, k-or-v). */
static float
val(int tag, uint32_t layer, uint32_t pos, uint32_t i, int v)
{
	return (float)(tag * 100000 + v * 10000 + layer * 1000 + pos * 10 + i);
}

/* Writes positions [from, to) as a forward pass would: reserve, store, advance len. */
static int
put(struct kv *kv, int tag, uint32_t from, uint32_t to)
{
	uint32_t l, p, i;
	int rc;

	assert_int_equal(kv->len, from);
	rc = kv->ops->reserve(kv, to);
	if (rc != 0)
		return rc;
	for (l = 0; l < LAYERS; l++)
		for (p = from; p < to; p++)
			for (i = 0; i < ROW; i++) {
				kv_k(kv, l, p)[i] = val(tag, l, p, i, 0);
				kv_v(kv, l, p)[i] = val(tag, l, p, i, 1);
			}
	kv->len = to;
	return 0;
}

/* Positions [from, to) hold tag's values. */
static void
check(struct kv *kv, int tag, uint32_t from, uint32_t to)
{
	uint32_t l, p, i;

	for (l = 0; l < LAYERS; l++)
		for (p = from; p < to; p++)
			for (i = 0; i < ROW; i++) {
				assert_true(kv_k(kv, l, p)[i] == val(tag, l, p, i, 0));
				assert_true(kv_v(kv, l, p)[i] == val(tag, l, p, i, 1));
			}
}

static void
test_paged_fork_cow(void **state)
{
	struct kv_pool *pool;
	struct kv *a, *f, *g;

	(void)state;
	assert_int_equal(kv_pool_create(LAYERS, ROW, BLOCK, 6, &pool), 0);
	assert_int_equal(kv_paged_create(pool, 24, &a), 0);
	assert_true(kv_is_paged(a));
	assert_int_equal(kv_pool_free_blocks(pool), 6);
	assert_int_equal(put(a, 1, 0, 10), 0);             /* blocks 0..2, the last partial */
	assert_int_equal(kv_blocks_held(a), 3);
	assert_int_equal(kv_pool_free_blocks(pool), 3);
	check(a, 1, 0, 10);

	/* A fork shares every block: nothing is taken from the pool. */
	assert_int_equal(kv_fork(a, a->len, &f), 0);
	assert_int_equal(f->len, 10);
	assert_int_equal(kv_pool_free_blocks(pool), 3);
	check(f, 1, 0, 10);
	/* Its first write copies the shared partial block (and takes a new one for 12); the
	 * chain does not see it. */
	assert_int_equal(put(f, 2, 10, 13), 0);
	assert_int_equal(kv_pool_free_blocks(pool), 1);
	check(f, 1, 0, 10);
	check(f, 2, 10, 13);
	check(a, 1, 0, 10);
	/* The chain's own next write: its block is now its alone again (no copy). */
	assert_int_equal(put(a, 3, 10, 12), 0);
	assert_int_equal(kv_pool_free_blocks(pool), 1);
	check(a, 3, 10, 12);
	check(f, 2, 10, 13);

	/* A fork at a block boundary shares only the whole blocks. */
	assert_int_equal(kv_fork(a, 8, &g), 0);
	assert_int_equal(kv_blocks_held(g), 2);
	assert_int_equal(put(g, 4, 8, 9), 0);               /* a new block, nothing copied */
	assert_int_equal(kv_pool_free_blocks(pool), 0);
	/* The pool is empty: another write that needs a block is refused. */
	assert_int_equal(g->ops->reserve(g, 13), CERTA_ECAPACITY);
	check(g, 1, 0, 8);
	check(a, 1, 0, 10);

	/* Destroying the forks returns exactly their own blocks. */
	kv_destroy(f);
	kv_destroy(g);
	assert_int_equal(kv_pool_free_blocks(pool), 3);
	check(a, 1, 0, 10);
	kv_destroy(a);
	assert_int_equal(kv_pool_free_blocks(pool), 6);
	kv_pool_free(pool);
}

static void
test_paged_capacity(void **state)
{
	struct kv_pool *pool;
	struct kv *a, *b;

	(void)state;
	assert_int_equal(kv_pool_create(LAYERS, ROW, BLOCK, 4, &pool), 0);
	assert_int_equal(kv_paged_create(pool, 100, &a), 0);
	assert_int_equal(kv_paged_create(pool, 8, &b), 0);
	assert_int_equal(put(a, 1, 0, 12), 0);
	/* Two more blocks wanted, one free: refused, nothing taken. */
	assert_int_equal(put(b, 2, 0, 5), CERTA_ECAPACITY);
	assert_int_equal(b->len, 0);
	assert_int_equal(kv_blocks_held(b), 0);
	assert_int_equal(kv_pool_free_blocks(pool), 1);
	/* Past the sequence's own maximum: refused too. */
	assert_int_equal(put(b, 2, 0, 4), 0);
	assert_int_equal(b->ops->reserve(b, 9), CERTA_ECAPACITY);
	/* A rollback and trim gives blocks back; the rows below len are kept. */
	a->len = 5;
	kv_trim(a);
	assert_int_equal(kv_blocks_held(a), 2);
	assert_int_equal(kv_pool_free_blocks(pool), 1);
	check(a, 1, 0, 5);
	assert_int_equal(put(a, 3, 5, 8), 0);
	check(a, 1, 0, 5);
	check(a, 3, 5, 8);
	kv_destroy(a);
	kv_destroy(b);
	assert_int_equal(kv_pool_free_blocks(pool), 4);
	kv_pool_free(pool);
}

static void
test_flat(void **state)
{
	struct kv *a, *f;

	(void)state;
	assert_int_equal(kv_flat_create(LAYERS, ROW, 6, &a), 0);
	assert_false(kv_is_paged(a));
	assert_int_equal(put(a, 1, 0, 6), 0);
	check(a, 1, 0, 6);
	assert_int_equal(a->ops->reserve(a, 7), CERTA_ECAPACITY);
	assert_int_equal(kv_blocks_held(a), 0);
	assert_int_equal(kv_fork(a, 3, &f), -EINVAL);        /* only paged caches fork */
	kv_destroy(a);
	assert_int_equal(kv_flat_create(0, ROW, 6, &a), -EINVAL);
}

/* A kv_mem over host memory that counts its calls (a device backend's stand-in). */
struct fake_mem {
	int allocs, frees, copies;
	size_t bytes, copied;
};

static void *
fake_alloc(void *ctx, size_t bytes)
{
	struct fake_mem *m = ctx;

	m->allocs++;
	m->bytes = bytes;
	return calloc(1, bytes);
}

static void
fake_free(void *ctx, void *p)
{
	((struct fake_mem *)ctx)->frees++;
	free(p);
}

static void
fake_copy(void *ctx, void *dst, const void *src, size_t bytes)
{
	struct fake_mem *m = ctx;

	m->copies++;
	m->copied += bytes;
	memcpy(dst, src, bytes);
}

/* A pool in a backend's memory: one allocation of the whole pool, copy on write through the
 * hook (one block per shared block written), never through memcpy on the pool. */
static void
test_pool_mem(void **state)
{
	struct fake_mem fm = { 0 };
	const struct kv_mem mem = { fake_alloc, fake_free, fake_copy, &fm };
	struct kv_pool *pool;
	struct kv *a, *f;

	(void)state;
	assert_int_equal(kv_pool_create_mem(LAYERS, ROW, BLOCK, 6, &mem, &pool), 0);
	assert_int_equal(fm.allocs, 1);
	assert_int_equal(fm.bytes, (size_t)6 * 2 * LAYERS * BLOCK * ROW * sizeof(float));
	assert_int_equal(kv_paged_create(pool, 64, &a), 0);
	assert_int_equal(put(a, 1, 0, 6), 0);          /* blocks 0 and 1 (partial) */
	assert_int_equal(fm.copies, 0);
	assert_int_equal(kv_fork(a, 6, &f), 0);
	assert_int_equal(put(f, 2, 6, 7), 0);          /* the shared partial block is copied */
	assert_int_equal(fm.copies, 1);
	assert_int_equal(fm.copied, (size_t)2 * LAYERS * BLOCK * ROW * sizeof(float));
	check(f, 1, 0, 6);
	check(f, 2, 6, 7);
	assert_int_equal(put(a, 3, 6, 8), 0);          /* a's own block now: no copy */
	assert_int_equal(fm.copies, 1);
	check(a, 1, 0, 6);
	check(a, 3, 6, 8);
	kv_destroy(f);
	kv_destroy(a);
	assert_int_equal(kv_pool_free_blocks(pool), 6);
	assert_int_equal(fm.frees, 0);
	kv_pool_free(pool);
	assert_int_equal(fm.frees, 1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_paged_fork_cow),
		cmocka_unit_test(test_paged_capacity),
		cmocka_unit_test(test_flat),
		cmocka_unit_test(test_pool_mem),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
