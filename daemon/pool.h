/*
 * pool.h — certad's view of its workers: gRPC channels, periodic Info health checks, up/down
 * state, placement and load accounting, and the Step/Release calls.
 *
 * Worker states: UNKNOWN (not probed yet) -> UP <-> DOWN; DRAINING (operator: no new work).
 * A worker is marked DOWN when an Info check fails, or a Step fails with UNAVAILABLE, a
 * deadline, UNAUTHENTICATED or PERMISSION_DENIED (the worker refuses certad's credentials: a
 * configuration error, logged once as such); the next successful Info brings it back UP.  The owner learns about every transition through
 * the change callback and moves work accordingly.  Loop thread only.
 */
#ifndef CERTA_DAEMON_POOL_H
#define CERTA_DAEMON_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <grpc/status.h>

#include "certa/v1/worker.pb-c.h"

struct cqbridge;
struct event_base;
struct pool;
struct pool_worker;

enum pool_wstate {
	POOL_UNKNOWN = 1,
	POOL_UP = 2,
	POOL_DOWN = 3,
	POOL_DRAINING = 4,
};

struct pool_options {
	int health_interval_ms;   /* Info period */
	int info_timeout_ms;
	int step_timeout_ms;
	uint32_t max_inflight;    /* chains in flight per worker (its batch slots); 0 = capacity */
	/* Worker authentication: PEM text and the token itself (not paths), used only inside
	 * pool_new (the caller keeps ownership).  tls_ca set: every worker channel is TLS and
	 * the worker's certificate must be signed by tls_ca and name the address's host;
	 * tls_cert + tls_key: the client certificate presented to workers (mTLS).  token: sent
	 * as "authorization: Bearer TOKEN" on every Worker call.  NULL: plaintext, no token. */
	const char *tls_ca;
	const char *tls_cert;
	const char *tls_key;
	const char *token;
};

typedef void (*pool_change_fn)(void *arg, struct pool_worker *w, enum pool_wstate from,
    enum pool_wstate to);
/* Step completion; reply owned by the callee (free with protobuf_c_message_free_unpacked),
 * NULL unless status is OK.  w is valid during the call (it may be DOWN by then). */
/* One program's step completion: status and details are its own (the call's, or the error
 * the worker put on its items), results[0..n) its items' results in the order they were
 * added (owned by the pool, valid during the call): with OK their step, with an error the
 * worker put on the items those items (error_code, error_message, state_missing); n = 0 when
 * the call itself failed.  w is valid during the call (it may be DOWN by then). */
typedef void (*pool_step_fn)(void *arg, struct pool_worker *w, grpc_status_code status,
    const char *details, Certa__V1__StepResult *const *results, size_t n);

/* Items one Step call carries at most, and its estimated size at most (a quarter of
 * RPC_MAX_MESSAGE); a program larger than that goes alone. */
#define POOL_BATCH_ITEMS 256
#define POOL_BATCH_BYTES (4u * 1024 * 1024)

/* Returns 0, -ENOMEM, or CERTA_ECONFIG when the TLS credentials cannot be built (only one
 * of tls_cert and tls_key, or PEM text gRPC refuses). */
int pool_new(struct event_base *base, struct cqbridge *br, const struct pool_options *opt,
    pool_change_fn on_change, void *arg, struct pool **out);
/* Stops health checks and destroys channels; call when no Step is in flight. */
void pool_free(struct pool *pl);

/* Adds a worker address (probed at once).  CERTA_EEXIST if present, -ENOMEM. */
int pool_add(struct pool *pl, const char *addr);
/* Removes a worker (it must hold no chains: CERTA_ESTATE otherwise).  CERTA_ENOTFOUND. */
int pool_remove(struct pool *pl, const char *addr);
/* Marks a worker DRAINING (no new placements) or back to probing. */
int pool_drain(struct pool *pl, const char *addr, int drain);

struct pool_worker *pool_find(struct pool *pl, const char *addr);
size_t pool_count(const struct pool *pl);
struct pool_worker *pool_at(struct pool *pl, size_t i);
size_t pool_count_up(const struct pool *pl);

/* Chooses a worker for a step of `need` chains of `model` ("" = any): `prefer` (sticky
 * placement; it already holds the chains) when it is UP, otherwise the UP worker serving the
 * model with the most free capacity.  The worker
 * must also have `need` free step slots (max_inflight).  NULL when none can take it now (a
 * sticky program waits for its worker's slots rather than moving). */
struct pool_worker *pool_pick(struct pool *pl, const char *prefer, uint32_t need,
    const char *model);
/* Whether a worker serves model (by its Info: primary model or model list; "" = any). */
int pool_worker_serves(const struct pool_worker *w, const char *model);
/* Whether some UP worker serves model (true when no worker is up yet: it may come); avail
 * gets the UP workers' primary models for an error message. */
int pool_model_known(const struct pool *pl, const char *model, char *avail, size_t len);
/* Calls fn once per model some UP worker serves (primary or listed), with the number of UP
 * workers serving it and their largest capacity (chains at once); Reasoning.ListModels.
 * Returns 0. */
int pool_models(const struct pool *pl, void (*fn)(void *arg, const char *model,
    uint32_t workers, uint32_t max_capacity), void *arg);
/* The largest capacity of the UP workers serving model ("" any); 0 when none is up. */
uint32_t pool_max_capacity(const struct pool *pl, const char *model);
/* True when some UP worker has a free step slot (dispatch can stop early otherwise). */
int pool_has_slots(const struct pool *pl);

/* Chains placed on a worker (held until released or moved); delta may be negative. */
void pool_hold(struct pool_worker *w, int delta);

/*
 * Adds one program's step (its items: consecutive, request ids "<program>/<chain>") to the
 * Step call being built for w in this dispatch pass, and takes its step slots now.  The call
 * goes out when it holds POOL_BATCH_ITEMS items or POOL_BATCH_BYTES, or at pool_step_flush;
 * the items and the strings they point to must stay valid until then.  Every program's
 * items travel in one call (StepRequest.program_errors): cb runs exactly once per added step
 * if this returns 0 (-ENOMEM otherwise), with that program's own outcome: a failed call
 * (UNAVAILABLE, DEADLINE_EXCEEDED, UNAUTHENTICATED or PERMISSION_DENIED mark the worker DOWN
 * first) fails every program in it; an error the worker put on a program's items only that
 * program (one of those statuses there marks the worker DOWN too, as it would have failed
 * the program's own call: the others of the call keep their completed step and move on at
 * their next); a call that cannot start fails each with INTERNAL on a later loop turn.
 */
int pool_step_add(struct pool *pl, struct pool_worker *w, Certa__V1__StepItem *const *items,
    size_t n, pool_step_fn cb, void *arg);
/* Sends the Step calls being built (the end of a dispatch pass). */
void pool_step_flush(struct pool *pl);
/* Step calls sent to workers so far (each carrying one or more programs' steps). */
uint64_t pool_step_calls(const struct pool *pl);
/* Chains in flight on a worker. */
uint32_t pool_worker_inflight(const struct pool_worker *w);
/* Fire-and-forget Release of request ids (best effort; errors are logged).  The ids released
 * to a worker during one loop turn go out together, in one call (per 4096 ids). */
void pool_release(struct pool *pl, const char *addr, char *const *ids, size_t n);
/* Marks a worker DOWN with a reason (e.g. a failed step). */
void pool_mark_down(struct pool *pl, struct pool_worker *w, const char *why);

const char *pool_worker_addr(const struct pool_worker *w);
enum pool_wstate pool_worker_state(const struct pool_worker *w);
const char *pool_wstate_name(enum pool_wstate s);
uint32_t pool_worker_capacity(const struct pool_worker *w);
uint32_t pool_worker_held(const struct pool_worker *w);
const char *pool_worker_engine(const struct pool_worker *w);
/* Whether the worker's last Info said it keeps each request's prompt with its state
 * (InfoReply.prompt_once): its steps then carry prompt and text only on placement
 * (worker.proto "Held state").  false until its first Info. */
bool pool_worker_prompt_once(const struct pool_worker *w);
const char *pool_worker_model(const struct pool_worker *w);
/* Every model the worker serves (primary first, each once; from its last Info), at most
 * POOL_MAX_MODELS; *names stays valid until its next Info.  Returns the count. */
#define POOL_MAX_MODELS 16
size_t pool_worker_models(const struct pool_worker *w, char *const **names);
const char *pool_worker_error(const struct pool_worker *w);
int64_t pool_worker_last_seen(const struct pool_worker *w);
/* Programs' steps in flight to all workers (added, not completed yet). */
size_t pool_inflight(const struct pool *pl);

#endif
