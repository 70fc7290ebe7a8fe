/*
 * core_impl.h — the core's shared state, for the daemon modules that make up the core only
 * (core.c, persist.c, events.c, dispatch.c, recovery.c, retention.c, submit.c, queries.c).
 * Everything else uses daemon/core.h, where struct core is opaque.  The helpers below live in
 * core.c.  Loop thread only.
 */
#ifndef CERTA_DAEMON_CORE_IMPL_H
#define CERTA_DAEMON_CORE_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "daemon/core.h"
#include "daemon/program.h"

struct core {
	struct event_base *base;
	struct cqbridge *br;
	struct core_options opt;
	struct store *st;
	struct pool *pool;
	struct tenants *tenants;
	struct policies *policies;
	struct fair *fair;          /* tenants' shares, and the ready queue of tenant work */
	struct fair *shadow_fair;   /* the ready queue of shadows (offered after tenant work) */
	struct program **sleeping;  /* backing off after a failed step (dispatch_ready) */
	size_t nsleeping, sleeping_cap;
	int64_t sleep_next_ms;      /* the earliest not_before_ms among them (0: none) */
	int64_t ready_check_ms;     /* when dispatch_ready_check last walked the live programs */
	uint64_t ready_missed;      /* ready programs it found out of the queue (a missed
	                             * dispatch_ready: tests expect 0) */
	struct telemetry *tel;      /* may be NULL */
	struct shadow *shadow;      /* shadow runs and risk controllers (shadow.c) */
	struct route *route;        /* expert routing (route.c); NULL: off */
	void (*first_probe)(void *arg);
	void *first_probe_arg;
	struct event *probe_timeout;
	struct event *retention;    /* periodic pruning of old finished programs */
	uint64_t pruned_total;
	uint64_t next_seq;
	struct strmap *live;        /* id -> struct program (not yet terminal, or inflight) */
	struct program **order;     /* live programs (p->order_ix: its index; removal moves the
	                             * last one into the hole) */
	size_t norder, order_cap;
	size_t trim_peak;           /* most live programs since the spare sets were dropped */
	size_t trim_min;            /* how many fewer it takes (core_trim; CORE_TRIM_MIN_ENDED,
	                             * tests set less) */
	struct program **dl;        /* live programs with a deadline, a min-heap by it
	                             * (daemon/deadlines.h) */
	size_t ndl, dl_cap;
	struct event *kick;         /* deferred dispatch */
	struct event *tick;         /* periodic dispatch (backoff, deadlines) */
	int draining;
	void (*drain_done)(void *arg);
	void *drain_arg;
	uint64_t finished_total;
	uint64_t steps_total;
	/* Failed commits (disk full, map at max_map_size, I/O error): persist.c. */
	struct event *persist_retry;    /* retries the writes of waiting programs */
	int persist_backoff_ms;         /* next retry delay (doubles up to PERSIST_BACKOFF_MAX_MS) */
	size_t persist_waiting;         /* programs with persist_pending */
	uint64_t commit_failures;       /* failed program writes since start */
	uint64_t set_failures;          /* failed group commits since start (their programs are
	                                 * then written one by one: commit_failures if that fails) */
	int64_t set_logged_ms;          /* last warning about one (rate limit) */
	int64_t persist_failing_since_ms;  /* first failure of the current episode; 0: none */
	int64_t persist_logged_ms;      /* last error line (rate limit) */
	uint64_t persist_unlogged;      /* failures since that line */
	int degraded;                   /* last value given to degraded_fn */
	void (*degraded_fn)(void *arg, int degraded);
	void *degraded_arg;
	/* Group commit (persist.c): step results and endings of one loop turn, one transaction,
	 * committed by the writer thread. */
	struct program **commit_q;      /* queued, not yet built into a set (NULL: dropped) */
	size_t ncommit, commit_cap;
	struct event *commit;           /* builds the turn's set and hands it to the writer */
	struct writer *writer;          /* store/writer.h */
	struct commit_set *sets_head, *sets_tail;  /* with the writer, oldest first */
	struct commit_set *sets_spare; /* sets kept for reuse (commit.c: COMMIT_SPARE_SETS) */
	size_t nsets_spare;
	int commit_efd;                 /* the writer wakes the loop: a set is done */
	struct event *commit_done;      /* ... read here (commit_on_done) */
	struct wset *sync_ws;           /* the write set of a direct write (persist_write) */
	struct pbarena *persist_scratch;  /* persist_build's messages (lib/pbarena.h): one block
	                                 * reused by every write instead of a calloc per array */
	struct wset *later_ws;          /* puts for the next set (commit_put_later) */
	double commit_recent_s;         /* moving average of group commits' durations */
	double commit_inline_s;         /* below it (writer idle) a set commits on the loop;
	                                 * COMMIT_INLINE_S, 0: always the writer (tests) */
	size_t accepts_pending;         /* programs with accept_pending */
	struct strmap *accept_keys;     /* persist_idem_key -> program, for those of them with
	                                 * an idempotency key */
};

/* Wall-clock milliseconds. */
int64_t core_now_ms(void);
/* Monotonic seconds (durations). */
double core_mono_s(void);
/* A new time-ordered program id. */
void core_new_id(char *buf, size_t len);
/* Every program state change: the state machine plus tenant accounting. */
void core_set_state(struct core *c, struct program *p, enum program_state to);
/* A dispatch pass on the next loop iteration (never re-entrant). */
void core_kick(struct core *c);
/* Adds a program to the dispatch order; -ENOMEM. */
int core_order_add(struct core *c, struct program *p);
/* Drops a program from the live set and frees it. */
void core_forget(struct core *c, struct program *p);
/* Gives back the memory a peak load left (every tick): once the live programs fell to half
 * their peak since the last time, and by at least trim_min, the spare commit sets but one go
 * (commit_spares_drop): CORE_TRIM_SETS.  Returns what it did (0: nothing). */
#define CORE_TRIM_SETS 1
int core_trim(struct core *c);

#endif
