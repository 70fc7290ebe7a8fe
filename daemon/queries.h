/*
 * queries.h — reads of programs for the Reasoning service: Get, Watch, Cancel, List.
 *
 * A tenant sees only its own programs: another tenant's id answers CERTA_ENOTFOUND like an
 * unknown one.  Live programs are answered from memory, ended ones from the store.  Loop
 * thread only.
 */
#ifndef CERTA_DAEMON_QUERIES_H
#define CERTA_DAEMON_QUERIES_H

#include <stddef.h>
#include <stdint.h>

#include "certa/v1/reasoning.pb-c.h"

struct core;
struct rpc_call;

/* Attaches a stream to an existing program (or sends its final event if it has ended).
 * CERTA_ENOTFOUND if the tenant has no such program. */
int queries_watch(struct core *c, const char *tenant, const char *id, struct rpc_call *watcher);
/* Cancels a program; *state gets the state after the call.  CERTA_ENOTFOUND. */
int queries_cancel(struct core *c, const char *tenant, const char *id, int *state);
/* Reads a program as stored; *out owned by the caller (protobuf_c_message_free_unpacked).
 * CERTA_EINVAL (empty id), CERTA_ENOTFOUND (also for another tenant's program), store
 * errors. */
int queries_get(struct core *c, const char *tenant, const char *id, Certa__V1__Program **out);
/* Lists a tenant's programs newest first (state 0: any; page_size 0: 50, at most 1000; a
 * page token continues after the previous page) into a reply the caller frees with
 * queries_list_free.  -ENOMEM, store errors. */
int queries_list(struct core *c, const char *tenant, int state, uint32_t page_size,
    const char *page_token, Certa__V1__ListReply *reply);
void queries_list_free(Certa__V1__ListReply *reply);
/* The reasoning text so far of chain `index` of a live program of the tenant (borrowed: valid
 * until control returns to the loop) into *text and *len.  CERTA_ENOTFOUND when the program
 * is not live or not the tenant's, or has no such chain.  For the HTTP API's
 * reasoning_content, read while an event is delivered (the program is still live when its
 * finished event goes out). */
int queries_chain_text(struct core *c, const char *tenant, const char *id, uint32_t index,
    const char **text, size_t *len);

#endif
