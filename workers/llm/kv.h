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
 * Threads: a kv belongs to its sequence's owner; backends read it while the owner waits.
 */
#ifndef CERTA_WORKERS_LLM_KV_H
#define CERTA_WORKERS_LLM_KV_H

#include <stddef.h>
#include <stdint.h>

struct kv;

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

#endif
