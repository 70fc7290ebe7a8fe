/* pbarena.c — bump allocator for protobuf-c unpacking (chunks, dropped at reset). */
#include "lib/pbarena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Allocations are aligned for any field protobuf-c stores (max_align_t). */
#define PBARENA_ALIGN _Alignof(max_align_t)
#define PBARENA_DEFAULT_CHUNK (64u * 1024)
/* The largest chunk kept across resets (a round larger than this allocates its excess anew
 * each time, so one huge reply does not pin its memory for good). */
#define PBARENA_KEEP_MAX (16u * 1024 * 1024)

struct pbarena_chunk {
	struct pbarena_chunk *next;   /* older chunks of this round */
	size_t size, off;             /* usable bytes after the header, bytes handed out */
	_Alignas(max_align_t) unsigned char data[];
};

struct pbarena {
	ProtobufCAllocator alloc;     /* first: pbarena_alloc gets it back as the arena */
	struct pbarena_chunk *cur;    /* newest chunk; the others hang off next */
	size_t chunk;                 /* size of the next fresh chunk */
	size_t used;                  /* handed out since the reset */
	size_t nchunks;
};

static struct pbarena_chunk *
pbarena_chunk_new(size_t size)
{
	struct pbarena_chunk *ch = malloc(sizeof *ch + size);

	if (ch == NULL)
		return NULL;
	ch->next = NULL;
	ch->size = size;
	ch->off = 0;
	return ch;
}

static void *
pbarena_alloc(void *data, size_t size)
{
	struct pbarena *a = data;
	struct pbarena_chunk *ch = a->cur;
	size_t need = (size + PBARENA_ALIGN - 1) & ~(size_t)(PBARENA_ALIGN - 1);
	void *p;

	if (need < size)
		return NULL;   /* overflow */
	if (ch == NULL || ch->size - ch->off < need) {
		size_t csize = need > a->chunk ? need : a->chunk;
		struct pbarena_chunk *nc = pbarena_chunk_new(csize);
		if (nc == NULL)
			return NULL;
		nc->next = ch;
		a->cur = ch = nc;
		a->nchunks++;
	}
	p = ch->data + ch->off;
	ch->off += need;
	a->used += need;
	return p;
}

static void
pbarena_nofree(void *data, void *ptr)
{
	(void)data;
	(void)ptr;
}

void *
pbarena_zalloc(struct pbarena *a, size_t n)
{
	void *p = pbarena_alloc(a, n);

	if (p != NULL)
		memset(p, 0, n);
	return p;
}

struct pbarena *
pbarena_new(size_t chunk)
{
	struct pbarena *a = calloc(1, sizeof *a);

	if (a == NULL)
		return NULL;
	a->alloc.alloc = pbarena_alloc;
	a->alloc.free = pbarena_nofree;
	a->alloc.allocator_data = a;
	a->chunk = chunk ? chunk : PBARENA_DEFAULT_CHUNK;
	return a;
}

/* Frees the chunk list from ch on. */
static void
pbarena_chunks_free(struct pbarena_chunk *ch)
{
	while (ch != NULL) {
		struct pbarena_chunk *next = ch->next;
		free(ch);
		ch = next;
	}
}

void
pbarena_free(struct pbarena *a)
{
	if (a == NULL)
		return;
	pbarena_chunks_free(a->cur);
	free(a);
}

ProtobufCAllocator *
pbarena_allocator(struct pbarena *a)
{
	return &a->alloc;
}

void
pbarena_reset(struct pbarena *a)
{
	if (a->cur != NULL && a->cur->next != NULL) {
		/* The round outgrew one chunk: next time one chunk of what it used (so the
		 * arena settles on a single chunk as large as a typical round). */
		if (a->used > a->chunk)
			a->chunk = a->used < PBARENA_KEEP_MAX ? a->used : PBARENA_KEEP_MAX;
		pbarena_chunks_free(a->cur);
		a->cur = NULL;
		a->nchunks = 0;
	} else if (a->cur != NULL && a->cur->size > PBARENA_KEEP_MAX) {
		/* One oversized reply's chunk: not kept. */
		pbarena_chunks_free(a->cur);
		a->cur = NULL;
		a->nchunks = 0;
	} else if (a->cur != NULL) {
		a->cur->off = 0;
	}
	a->used = 0;
}

size_t
pbarena_used(const struct pbarena *a)
{
	return a->used;
}

size_t
pbarena_chunks(const struct pbarena *a)
{
	return a->nchunks;
}
