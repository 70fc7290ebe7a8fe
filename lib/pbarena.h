/*
 * pbarena.h — a bump allocator for unpacking protobuf-c messages that are freed all at once.
 *
 * protobuf_c_message_unpack with the default allocator makes one malloc per submessage,
 * string and repeated field, and protobuf_c_message_free_unpacked one free each: for a
 * worker's Step reply (hundreds of results with their texts and probes) that is thousands of
 * calls per reply.  Unpacked through pbarena_allocator, a message lives in the arena's chunks
 * and is dropped with everything else unpacked there by pbarena_reset (free_unpacked is not
 * needed; with this allocator it frees nothing).  After a reset the arena keeps one chunk as
 * large as what the last round used, so a steady stream of similar replies allocates nothing.
 * Not thread-safe: one arena belongs to one thread.
 */
#ifndef CERTA_LIB_PBARENA_H
#define CERTA_LIB_PBARENA_H

#include <stddef.h>
#include <protobuf-c/protobuf-c.h>

struct pbarena;

/* A new arena whose first chunk holds chunk bytes (0: 64 kB); NULL on ENOMEM. */
struct pbarena *pbarena_new(size_t chunk);
void pbarena_free(struct pbarena *a);

/* The allocator to pass to protobuf_c_message_unpack / free_unpacked (valid as long as the
 * arena).  Its alloc returns NULL on ENOMEM (unpack then fails cleanly); its free does
 * nothing. */
ProtobufCAllocator *pbarena_allocator(struct pbarena *a);

/* n zeroed bytes (aligned as an allocation of the allocator above), for a message's arrays
 * built by hand; NULL on ENOMEM. */
void *pbarena_zalloc(struct pbarena *a, size_t n);

/* Drops everything allocated since the last reset: every message unpacked into the arena is
 * gone. */
void pbarena_reset(struct pbarena *a);

/* Bytes handed out since the last reset (alignment padding included), and chunks held. */
size_t pbarena_used(const struct pbarena *a);
size_t pbarena_chunks(const struct pbarena *a);

#endif
