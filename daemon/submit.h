/*
 * submit.h — Submit: a client's program spec becomes a durable, queued program.
 *
 * Order (docs/daemon.md): draining -> tenant -> validation against the tenant's policy ->
 * idempotency key (a repeat gets the program the key created) -> quotas -> one LMDB write with
 * the program, its empty chains and the key -> `accepted` event.  Nothing is written before the
 * checks pass; nothing is acknowledged before the commit.  Loop thread only.
 */
#ifndef CERTA_DAEMON_SUBMIT_H
#define CERTA_DAEMON_SUBMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct core;
struct program;
struct rpc_call;

/* Algorithms a client may ask for (UNSPECIFIED: sc when n > 1, else cot).  Other values are
 * refused.  The numbers are certa.v1.Algorithm's. */
enum submit_algo {
	SUBMIT_ALGO_UNSPECIFIED = 0,
	SUBMIT_ALGO_COT = 1,
	SUBMIT_ALGO_SC = 2,
};

/* The highest priority (certa.v1.Priority numbering: 0 unspecified, 1 low, 2 normal, 3 high;
 * larger = more urgent). */
#define SUBMIT_PRIORITY_MAX 3

/* A client's program spec as decoded at the edge (daemon/reasoning.c).  Strings are borrowed
 * for the call; "" means not given (NULL is taken as "" for problem only). */
struct submit_spec {
	const char *problem;
	const char *model;            /* "": any worker */
	const char *policy;           /* per-program policies are refused when not "" */
	const char *idempotency_key;  /* "": none; at most 128 bytes */
	int algorithm;                /* enum submit_algo, as sent */
	uint32_t n;                   /* chains; 0: the policy's default */
	uint64_t token_budget;        /* 0: the policy's default */
	int priority;                 /* 0..SUBMIT_PRIORITY_MAX, as sent */
	int64_t deadline_unix_ms;     /* 0: none */
	bool has_sampling;            /* temperature and top_p were given */
	float temperature, top_p;
	float moe_top_p;              /* MoE routing: 0 trained top-k, (0, 1] top-p */
	uint64_t seed;                /* 0: default; chain i is sampled with seed + i */
};

/* Validates, persists and queues a program (spec NULL: "missing program"); `watcher` (a Submit
 * stream, may be NULL) gets the accepted event and all later events.  Accepted == durable:
 * the program's accepting write goes with the loop turn's group commit (commit_accept), and
 * the accepted event goes out once it is committed (submit_accepted); a program that cannot
 * be written ends the stream with UNAVAILABLE then (submit_refused).  Errors returned at once
 * (message in err): CERTA_EINVAL (bad spec), CERTA_EAUTH (unknown tenant), CERTA_ECAPACITY
 * (quota), CERTA_EUNAVAIL (draining), CERTA_ESTORE, -ENOMEM. */
int submit_program(struct core *c, const char *tenant, const struct submit_spec *spec,
    struct rpc_call *watcher, char *err, size_t errlen);
/* p's accepting write is durable: its watchers get the accepted event; it may be scheduled. */
void submit_accepted(struct core *c, struct program *p);
/* p's accepting write failed (rc) even alone: its watchers' streams end UNAVAILABLE (the
 * client may retry), the program is forgotten. */
void submit_refused(struct core *c, struct program *p, int rc);

#endif
