/*
 * knn.c — hashed character n-gram TF-IDF cosine nearest neighbours (knn.h).
 */
#include "scheduler/knn.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* One bucket of a sparse vector. */
struct knn_term {
	uint32_t bucket;
	uint32_t count;
};

struct knn_doc {
	uint64_t tag;
	size_t off, n;            /* terms[off .. off + n), bucket ascending */
};

struct knn {
	struct knn_term *terms;
	size_t nterms, terms_cap;
	struct knn_doc *docs;
	size_t ndocs, docs_cap;
	uint32_t *df;             /* KNN_DIMS document frequencies */
	/* Caches for queries, rebuilt on the first query after an add: idf per bucket and the
	 * norm of each document's weighted vector. */
	double *idf;
	double *norm;
	size_t cached_docs;       /* documents the caches describe; 0: none */
};

struct knn *
knn_new(void)
{
	struct knn *k = calloc(1, sizeof *k);

	if (k == NULL)
		return NULL;
	k->df = calloc(KNN_DIMS, sizeof *k->df);
	if (k->df == NULL) {
		free(k);
		return NULL;
	}
	return k;
}

void
knn_free(struct knn *k)
{
	if (k == NULL)
		return;
	free(k->terms);
	free(k->docs);
	free(k->df);
	free(k->idf);
	free(k->norm);
	free(k);
}

size_t
knn_count(const struct knn *k)
{
	return k != NULL ? k->ndocs : 0;
}

static int
knn_cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* The normalized text form of knn.h in a new buffer (length in *len); NULL out of memory. */
static char *
knn_normalize(const char *text, size_t *len)
{
	size_t n = strlen(text), o = 0;
	char *buf = malloc(n + 1);
	int space = 0;

	if (buf == NULL)
		return NULL;
	for (; *text != '\0'; text++) {
		unsigned char c = (unsigned char)*text;
		if (c == ' ' || (c >= '\t' && c <= '\r')) {
			space = o > 0;
			continue;
		}
		if (space)
			buf[o++] = ' ';
		space = 0;
		buf[o++] = (char)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
	}
	buf[o] = '\0';
	*len = o;
	return buf;
}

/* The sparse vector of text: a new array of terms, bucket ascending; *out NULL when the text
 * has no n-gram.  Returns 0 or -ENOMEM. */
static int
knn_vector(const char *text, struct knn_term **out, size_t *nout)
{
	size_t len, i, n, cnt = 0, nt = 0;
	uint32_t *b;
	struct knn_term *t;
	char *s = knn_normalize(text, &len);

	*out = NULL;
	*nout = 0;
	if (s == NULL)
		return -ENOMEM;
	for (n = KNN_NGRAM_MIN; n <= KNN_NGRAM_MAX; n++)
		cnt += len >= n ? len - n + 1 : 0;
	if (cnt == 0) {
		free(s);
		return 0;
	}
	b = malloc(cnt * sizeof *b);
	t = b != NULL ? malloc(cnt * sizeof *t) : NULL;
	if (t == NULL) {
		free(b);
		free(s);
		return -ENOMEM;
	}
	cnt = 0;
	for (n = KNN_NGRAM_MIN; n <= KNN_NGRAM_MAX; n++)
		for (i = 0; i + n <= len; i++) {
			uint32_t h = 2166136261u ^ (uint32_t)n;
			size_t j;
			for (j = 0; j < n; j++) {
				h ^= (unsigned char)s[i + j];
				h *= 16777619u;
			}
			b[cnt++] = h & (KNN_DIMS - 1);
		}
	qsort(b, cnt, sizeof *b, knn_cmp_u32);
	for (i = 0; i < cnt; i++) {
		if (nt > 0 && t[nt - 1].bucket == b[i]) {
			t[nt - 1].count++;
			continue;
		}
		t[nt].bucket = b[i];
		t[nt].count = 1;
		nt++;
	}
	free(b);
	free(s);
	*out = t;
	*nout = nt;
	return 0;
}

int
knn_add(struct knn *k, const char *text, uint64_t tag)
{
	struct knn_term *t;
	size_t nt, i;
	int rc;

	if (k == NULL || text == NULL)
		return -EINVAL;
	rc = knn_vector(text, &t, &nt);
	if (rc != 0)
		return rc;
	if (k->nterms + nt > k->terms_cap) {
		size_t cap = k->terms_cap ? k->terms_cap : 4096;
		struct knn_term *nterms;
		while (cap < k->nterms + nt)
			cap *= 2;
		nterms = realloc(k->terms, cap * sizeof *nterms);
		if (nterms == NULL)
			goto fail_vector;
		k->terms = nterms;
		k->terms_cap = cap;
	}
	if (k->ndocs == k->docs_cap) {
		size_t cap = k->docs_cap ? 2 * k->docs_cap : 64;
		struct knn_doc *nd = realloc(k->docs, cap * sizeof *nd);
		if (nd == NULL)
			goto fail_vector;
		k->docs = nd;
		k->docs_cap = cap;
	}
	if (nt > 0)
		memcpy(k->terms + k->nterms, t, nt * sizeof *t);
	k->docs[k->ndocs].tag = tag;
	k->docs[k->ndocs].off = k->nterms;
	k->docs[k->ndocs].n = nt;
	k->ndocs++;
	k->nterms += nt;
	for (i = 0; i < nt; i++)
		k->df[t[i].bucket]++;
	free(t);
	return 0;
fail_vector:
	free(t);
	return -ENOMEM;
}

/* Sublinear term frequency, 1 + ln tf, for the small counts of one text from a table. */
static double
knn_tf(uint32_t count)
{
	static const double tab[] = {
		0, 1, 1.6931471805599454, 2.0986122886681098, 2.386294361119891,
		2.6094379124341005, 2.791759469228055, 2.9459101090932196, 3.0794415416798357,
	};

	return count < sizeof tab / sizeof tab[0] ? tab[count] : 1.0 + log((double)count);
}

/* Rebuilds the idf and norm caches when documents were added since the last query. */
static int
knn_refresh(struct knn *k)
{
	size_t b, d, j;
	double *norm;

	if (k->cached_docs == k->ndocs && k->idf != NULL)
		return 0;
	if (k->idf == NULL) {
		k->idf = malloc(KNN_DIMS * sizeof *k->idf);
		if (k->idf == NULL)
			return -ENOMEM;
	}
	norm = realloc(k->norm, (k->ndocs ? k->ndocs : 1) * sizeof *norm);
	if (norm == NULL)
		return -ENOMEM;
	k->norm = norm;
	for (b = 0; b < KNN_DIMS; b++)
		k->idf[b] = log((1.0 + (double)k->ndocs) / (1.0 + (double)k->df[b])) + 1.0;
	for (d = 0; d < k->ndocs; d++) {
		const struct knn_term *t = k->terms + k->docs[d].off;
		double s = 0;
		for (j = 0; j < k->docs[d].n; j++) {
			double w = knn_tf(t[j].count) * k->idf[t[j].bucket];
			s += w * w;
		}
		norm[d] = sqrt(s);
	}
	k->cached_docs = k->ndocs;
	return 0;
}

/* Whether hit a goes before hit b. */
static int
knn_before(const struct knn_hit *a, const struct knn_hit *b)
{
	if (fabs(a->sim - b->sim) > 1e-12)
		return a->sim > b->sim;
	return a->index < b->index;
}

int
knn_query(struct knn *k, const char *text, size_t max, int use_exclude,
    uint64_t exclude, struct knn_hit *hits, size_t *nhits)
{
	struct knn_term *q;
	double *qw, qnorm = 0;
	size_t nq, i, d, n = 0;
	int rc;

	if (k == NULL || text == NULL || nhits == NULL || (hits == NULL && max > 0))
		return -EINVAL;
	*nhits = 0;
	if (k->ndocs == 0 || max == 0)
		return 0;
	rc = knn_refresh(k);
	if (rc != 0)
		return rc;
	rc = knn_vector(text, &q, &nq);
	if (rc != 0)
		return rc;
	if (nq == 0)
		return 0;
	qw = malloc(nq * sizeof *qw);
	if (qw == NULL) {
		free(q);
		return -ENOMEM;
	}
	for (i = 0; i < nq; i++) {
		qw[i] = knn_tf(q[i].count) * k->idf[q[i].bucket];
		qnorm += qw[i] * qw[i];
	}
	qnorm = sqrt(qnorm);
	for (d = 0; d < k->ndocs; d++) {
		const struct knn_doc *doc = &k->docs[d];
		const struct knn_term *t = k->terms + doc->off;
		double dot = 0, dnorm = k->norm[d];
		size_t a = 0, j;
		struct knn_hit h;

		if (use_exclude && doc->tag == exclude)
			continue;
		for (j = 0; j < doc->n && a < nq; j++) {
			while (a < nq && q[a].bucket < t[j].bucket)
				a++;
			if (a < nq && q[a].bucket == t[j].bucket)
				dot += knn_tf(t[j].count) * k->idf[t[j].bucket] * qw[a];
		}
		if (dot <= 0 || dnorm <= 0)
			continue;
		h.tag = doc->tag;
		h.index = d;
		h.sim = dot / (dnorm * qnorm);
		if (h.sim > 1)
			h.sim = 1;
		/* Insertion into the sorted top-max list. */
		if (n == max && !knn_before(&h, &hits[n - 1]))
			continue;
		j = n < max ? n++ : n - 1;
		while (j > 0 && knn_before(&h, &hits[j - 1])) {
			hits[j] = hits[j - 1];
			j--;
		}
		hits[j] = h;
	}
	free(qw);
	free(q);
	*nhits = n;
	return 0;
}
