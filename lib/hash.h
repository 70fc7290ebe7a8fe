/*
 * hash.h — the one non-cryptographic string hash of the tree: FNV-1a, 64 bits.
 *
 * Stable across builds and machines (answer keys, the evaluator's train/test split and folds
 * depend on it: never change the function).  Not for anything an attacker chooses where
 * collisions matter (API keys use SHA-256).  Any thread.
 */
#ifndef CERTA_LIB_HASH_H
#define CERTA_LIB_HASH_H

#include <stddef.h>
#include <stdint.h>

/* The FNV-1a 64-bit offset basis: the seed of a fresh hash. */
#define HASH_FNV1A_BASIS 0xcbf29ce484222325ULL

/* Continues hash h over data[0..len): hash_fnv1a(s, n, HASH_FNV1A_BASIS) hashes s alone,
 * feeding the result in as h hashes a concatenation. */
uint64_t hash_fnv1a(const void *data, size_t len, uint64_t h);

#endif
