/*
 * kv.h — where a sequence's keys and values live, behind a small interface so the paged
 * cache (fixed-size blocks, a page table per sequence, fork) replaces the flat buffer here
 * without touching the forward pass or the backends.
 *
 * A struct kv holds, for each layer and position 0..len-1 of one sequence, a K row and a V row
 * of `row` floats (n_head_kv * head_dim).  The forward pass reserves room for the positions it
 * is about to write, stores K/V through kv_k()/kv_v() (append at position p), attends over
 * positions 0..p and then advances len.
 *
 * kv_flat (kv.c) is the simple implementation: one contiguous f32 buffer per sequence,
 * [layer][position][row] for K and the same for V, of fixed capacity.
 *
 * kv_paged (kv.c) is the paged cache: a struct kv_pool of fixed-size blocks (each `block`
 * positions of K and V for every layer) with a reference count per block, and per sequence a
 * page table (block id per `block` positions).  kv_fork() makes a sequence that shares the
 * source's blocks for its first n positions (reference counts go up; nothing is copied); a
 * write into a shared block copies that block first (reserve does it: copy on write), so the
 * source never sees a fork's writes and vice versa.  Blocks return to the pool when the last
 * sequence holding them is destroyed (or trimmed past).
 *
 * Threads: a kv belongs to its sequence's owner; backends read it while the owner waits.  The
 * pool's counts are under a mutex, so sequences of one pool may be forked, reserved and
 * destroyed from different threads (the data of a block is written only by its sole owner).
 */
#ifndef CERTA_WORKERS_LLM_KV_H
#define CERTA_WORKERS_LLM_KV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct kv;
struct kv_pool;

struct kv_ops {
	/* Start of the K (V) row of (layer, pos); pos below the reserved length. */
	float *(*k)(struct kv *kv, uint32_t layer, uint32_t pos);
	float *(*v)(struct kv *kv, uint32_t layer, uint32_t pos);
	/* Makes positions 0..n_pos-1 writable: 0, or CERTA_ECAPACITY (no room; nothing changed). */
	int (*reserve)(struct kv *kv, uint32_t n_pos);
	void (*destroy)(struct kv *kv);
};

struct kv {
	const struct kv_ops *ops;
	uint32_t n_layer;
	uint32_t row;            /* floats per K (and per V) row */
	uint32_t len;            /* positions holding valid K/V */
};

static inline float *kv_k(struct kv *kv, uint32_t layer, uint32_t pos)
{
	return kv->ops->k(kv, layer, pos);
}

static inline float *kv_v(struct kv *kv, uint32_t layer, uint32_t pos)
{
	return kv->ops->v(kv, layer, pos);
}

static inline void kv_destroy(struct kv *kv)
{
	if (kv)
		kv->ops->destroy(kv);
}

/* A flat per-sequence cache of `capacity` positions.  Returns 0 and *out, -EINVAL (a zero
 * size), -EOVERFLOW (too large) or -ENOMEM. */
int kv_flat_create(uint32_t n_layer, uint32_t row, uint32_t capacity, struct kv **out);

/*
 * Where a pool's blocks live.  NULL (kv_pool_create) is host memory (calloc, memcpy).  A device
 * backend gives its own (backend_ops.kv_mem): the blocks are then device memory that kv.c never
 * dereferences: kv_k()/kv_v() only compute addresses, and copy on write asks copy().  alloc
 * returns zeroed memory or NULL; copy may be asynchronous (the backend reports its failures
 * through its own error path, backend.h ops->error).
 */
struct kv_mem {
	void *(*alloc)(void *ctx, size_t bytes);
	void (*free)(void *ctx, void *p);
	void (*copy)(void *ctx, void *dst, const void *src, size_t bytes);
	void *ctx;
};

/*
 * A pool of n_blocks blocks of `block` positions for n_layer layers of `row` floats (K and V):
 * 2 * n_layer * block * row * 4 bytes each, allocated at once (zeroed lazily by the OS).
 * Returns 0 and *out, -EINVAL (a zero size), -EOVERFLOW, -ENOMEM.  Free it after every
 * sequence of it is destroyed.
 */
int kv_pool_create(uint32_t n_layer, uint32_t row, uint32_t block, uint32_t n_blocks,
    struct kv_pool **out);
/* The same with the blocks in mem's memory (NULL: host); mem must outlive the pool. */
int kv_pool_create_mem(uint32_t n_layer, uint32_t row, uint32_t block, uint32_t n_blocks,
    const struct kv_mem *mem, struct kv_pool **out);
void kv_pool_free(struct kv_pool *p);
uint32_t kv_pool_free_blocks(struct kv_pool *p);
uint32_t kv_pool_blocks(const struct kv_pool *p);
uint32_t kv_pool_block_size(const struct kv_pool *p);

/* An empty paged sequence of at most max_pos positions on pool p (no blocks held until
 * reserve).  Returns 0 and *out, -EINVAL, -ENOMEM.  Reserve fails with CERTA_ECAPACITY when the
 * pool runs out of blocks (nothing changed) or past max_pos. */
int kv_paged_create(struct kv_pool *p, uint32_t max_pos, struct kv **out);
bool kv_is_paged(const struct kv *kv);

/* A new paged sequence holding src's positions 0..n_pos-1 (n_pos <= src->len), sharing its
 * blocks (copy on write).  Returns 0 and *out, -EINVAL (src not paged, n_pos past len),
 * -ENOMEM. */
int kv_fork(struct kv *src, uint32_t n_pos, struct kv **out);

/* Returns the blocks wholly past kv->len to the pool (after a rollback); no-op when flat. */
void kv_trim(struct kv *kv);

/* Positions per block of contiguous rows: the pool's block size for a paged sequence, the
 * capacity for a flat one (positions p and q of one block have K rows (q - p) * row floats
 * apart, V likewise), so a device backend can address a layer's K/V by a block table. */
uint32_t kv_block_size(const struct kv *kv);

/* Blocks a paged sequence holds (0 for a flat one). */
uint32_t kv_blocks_held(const struct kv *kv);

#endif
