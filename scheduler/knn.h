/*
 * knn.h — nearest problems by text: hashed character n-gram TF-IDF vectors and cosine
 * similarity, in plain C (no external model).  The router (scheduler/router.h) asks it for the
 * finished programs whose problem texts are nearest to a new one.
 *
 * Text form: ASCII letters lowercased, every run of whitespace one space, leading and trailing
 * whitespace dropped; every character n-gram with KNN_NGRAM_MIN <= n <= KNN_NGRAM_MAX bytes of
 * that form is hashed (FNV-1a 32) into one of KNN_DIMS buckets.  A document is the sparse
 * vector of its bucket counts.  Weights: (1 + ln tf) * idf, idf = ln((1 + N) / (1 + df)) + 1
 * over the documents in the index at query time (N documents, df documents holding the bucket),
 * so the index never needs rebuilding as documents are added.  Similarity: cosine of the
 * weighted vectors, in [0, 1].
 *
 * Order of results: similarity descending; equal similarities (to 1e-12) by insertion order,
 * earlier first — deterministic, and the same online and offline when both add documents in the
 * same order.
 *
 * Ownership: the index copies nothing but the bucket counts (texts are not kept).  Not
 * thread-safe per object (the daemon uses it from the loop thread only); distinct objects on
 * distinct threads are fine.  Errors: 0 or -EINVAL / -ENOMEM.
 */
#ifndef CERTA_SCHEDULER_KNN_H
#define CERTA_SCHEDULER_KNN_H

#include <stddef.h>
#include <stdint.h>

#define KNN_DIMS (1u << 18)
#define KNN_NGRAM_MIN 3
#define KNN_NGRAM_MAX 5

struct knn;

/* One neighbour: the tag given to knn_add and the cosine similarity. */
struct knn_hit {
	uint64_t tag;
	double sim;
	size_t index;             /* insertion index (0 = first document added) */
};

/* A new, empty index; NULL when out of memory. */
struct knn *knn_new(void);
/* Frees the index; NULL is a no-op. */
void knn_free(struct knn *k);

/* Adds a document with the caller's tag (tags need not be unique).  Returns 0, -EINVAL (k or
 * text NULL) or -ENOMEM (the index is unchanged). */
int knn_add(struct knn *k, const char *text, uint64_t tag);

/* Documents in the index. */
size_t knn_count(const struct knn *k);

/*
 * The up to `max` documents nearest to `text` with similarity > 0, skipping every document
 * whose tag equals `exclude` when `use_exclude` is nonzero (leave-one-problem-out: a problem
 * is never its own neighbour).  Writes them to hits in the order above and their number to
 * *nhits.  An empty index, or a text with no n-gram, gives 0 hits.  The first query after an
 * add rebuilds the idf table and document norms (O(KNN_DIMS + terms)); later ones only merge
 * sparse vectors.  Returns 0, -EINVAL (NULL argument) or -ENOMEM.
 */
int knn_query(struct knn *k, const char *text, size_t max, int use_exclude,
    uint64_t exclude, struct knn_hit *hits, size_t *nhits);

#endif
