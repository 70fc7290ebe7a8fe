/*
 * program.h — a program (one client query) and its chains (requests) inside certad.
 *
 * A program is an explicit state machine (program_set_state asserts and logs each transition):
 *
 *     QUEUED ──► RUNNING ──► FINISHED
 *       │  ▲        │   └──► CANCELLED / FAILED
 *       │  └────────┘  (worker lost: back to QUEUED until another worker takes it)
 *       └──► CANCELLED / FAILED
 *
 * Independently of the state, `inflight` says a Step RPC is outstanding for it.  Programs live
 * on the loop thread in the core's live set and dispatch order (daemon/core.c, core_impl.h);
 * submit.c creates them, dispatch.c steps and finalizes them, persist.c writes them,
 * events.c streams their changes, queries.c reads and cancels them, recovery.c reloads the
 * unfinished ones and retention.c prunes the old (module table: docs/daemon.md).  This module
 * also holds the codec between programs and their LMDB records / wire messages (protobuf
 * stays at this edge).
 */
#ifndef CERTA_DAEMON_PROGRAM_H
#define CERTA_DAEMON_PROGRAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "certa/v1/reasoning.pb-c.h"
#include "certa/v1/records.pb-c.h"
#include "scheduler/fair.h"
#include "scheduler/router.h"
#include "scheduler/sched.h"

struct pbarena;
struct rpc_call;

/* One routing decision (daemon/route.h), kept in the program's history (Program.routing). */
struct program_route_event {
	int64_t unix_ms;
	char action[8];           /* route, fork, switch, drop, raise */
	uint32_t rung;
	char pool[ROUTER_NAME_MAX];
	char model[ROUTER_MODEL_MAX];
	enum sched_algo algo;
	uint32_t n;
	uint64_t tokens;          /* decode tokens used when it was taken */
	char reason[ROUTER_REASON_MAX];
};

enum program_state {
	PROGRAM_QUEUED = CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_QUEUED,
	PROGRAM_RUNNING = CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_RUNNING,
	PROGRAM_FINISHED = CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_FINISHED,
	PROGRAM_CANCELLED = CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_CANCELLED,
	PROGRAM_FAILED = CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_FAILED,
};

/* Token statistics a worker reports for one step of one chain (StepStats); < 0 unknown. */
struct program_step_stats {
	double mean_prob;         /* probe answer tokens: mean probability */
	double min_prob;          /* ... their minimum */
	double entropy;           /* mean entropy (nats) of the chain's own tokens */
	double experts;           /* mean experts per token and MoE layer (0: dense) */
};

struct probe_point {
	uint64_t position;
	char *answer;
	double certaindex;        /* the program's certaindex after this step */
	double confidence;        /* probe token probability from the engine; < 0 unknown */
	double min_prob;          /* the step's other statistics (program_step_stats) */
	double entropy;
	double experts;
};

struct chain {
	uint32_t index;
	char *text;               /* reasoning so far (resume text) */
	size_t text_len, text_cap;
	uint64_t tokens;
	char *answer;             /* latest probe answer */
	bool finished;
	char *final_answer;
	bool thinking_done;
	uint64_t probe_tokens;
	struct probe_point *probes;
	size_t nprobes, probes_cap;
	bool dirty;               /* changed since last persisted */
	/* This chain's own certainty features at the last decision (has_features false: none
	 * since the program was loaded; the program's are reported instead). */
	struct sched_features features;
	bool has_features;
	size_t text_saved;        /* bytes of text in the store's text chunks (persist.c) */
	uint32_t text_chunks;     /* ... in this many chunks */
	size_t probes_saved;      /* probe points in those chunks (the first ones; persist.c) */
	/* Incremental scan of text for the certainty features (scheduler/certainty.h; from the
	 * first append, rebuilt from the text after a restart; NULL: rescans) */
	struct certainty_scan *scan;
};

struct program {
	char *id;
	char *tenant;
	const char *tenant_key;   /* tenant interned (lib/intern.h): equal tenants, equal
	                           * pointers (the dispatch pass groups by it) */
	uint64_t tenant_uid;      /* the tenant's uid at submission (tenants.h); stored */
	char *problem;
	char *model;
	char *idempotency_key;
	enum sched_algo algo;
	uint32_t n;
	/* Staged sc (sched_policy.sc_staged; stored): chains launched so far, the first ones;
	 * the others are pending (not stepped, held on the worker).  0: not staged. */
	uint32_t launched;
	uint64_t budget;
	int priority;
	int64_t deadline_ms;
	float temperature, top_p;
	float moe_top_p;          /* passed to workers (StepItem.moe_top_p) */
	uint64_t seed;            /* chain i steps with seed + i (StepItem.seed) */
	int64_t created_ms, updated_ms;

	enum program_state state;
	struct chain *chains;     /* n of them */

	/* scheduling (memory only) */
	bool inflight;
	bool persist_pending;     /* its last write failed: no step, no event until retried */
	bool persist_final;       /* ... and that write was its ending (history, finished) */
	bool commit_queued;       /* its step or ending waits for the group commit (queued, or
	                           * with the writer thread: commit_set) */
	bool commit_final;        /* ... and it is its ending */
	struct commit_set *commit_set;  /* the set with the writer that holds its write */
	bool commit_again;        /* queued again while commit_set was being written */
	bool commit_again_final;  /* ... and that is its ending */
	bool accept_pending;      /* accepted, its accepting write not yet committed: nobody was
	                           * told of it (commit_accept) */
	bool chains_reset;        /* chains replaced or renumbered (routing) since the last write:
	                           * the next one rewrites every chain's record and chunks */
	char *worker;             /* address of the worker holding the chains (sticky) */
	uint32_t attempts;        /* consecutive failed steps */
	int64_t not_before_ms;    /* backoff after a failure */
	int64_t ready_since_ms;   /* when it last became ready to step (starvation bound) */
	uint64_t seq;             /* submission order (memory) */
	struct fair_entry ready;  /* in the ready queue (dispatch_ready) while it can step */
	size_t order_ix;          /* its index in the core's live order */
	bool asleep;              /* backing off: in the core's sleepers, not queued */
	size_t sleep_ix;          /* its index there */
	size_t dl_pos;            /* its index in the core's deadline heap + 1 (0: not there) */
	uint64_t steps;
	double certaindex;
	char *answer;             /* current best answer */
	struct sched_state pstate;        /* policy state machine (scheduler/sched.h) */
	/* The last continue decision, valid while nothing it depends on changed (steps, policy
	 * generation, deadline): waiting programs are not re-scored on every dispatch pass. */
	bool decided;
	uint64_t decided_steps;
	uint64_t decided_gen;
	uint32_t next_step_tokens;
	uint64_t decided_used;    /* program_tokens at that decision: chains change only by a
	                           * step or a decision, so a pass reads this instead of
	                           * walking the chains (dispatch_collect) */
	struct sched_features features;   /* what produced the last certaindex */

	/* result (terminal states) */
	enum sched_reason reason;
	bool low_confidence;
	char *error_message;
	int error_status;         /* grpc status for FAILED */
	int64_t finished_ms;

	/* A shadow (daemon/shadow.h; stored): the program it continues (NULL: not a shadow),
	 * the answer that program gave its client, its tokens when the shadow began. */
	char *shadow_of;
	char *shadow_answer;
	uint64_t shadow_base_tokens;

	/* Expert routing (daemon/route.h; stored): routed by the router, its escalation state,
	 * the tokens of chains a switch or drop left behind (counted in program_tokens), and
	 * every routing decision with its reason. */
	bool routed;
	struct router_state rstate;
	bool resend_text;         /* memory: its MoE top-p rose (the worker rebuilds the sequences
	                           * with the new p), or the worker said it holds no state for
	                           * them, so the chains' prompt and text travel with the next
	                           * step; cleared by that step's success */
	uint64_t spent_tokens, spent_probe_tokens;
	struct program_route_event *routing;
	size_t nrouting, routing_cap;

	/* streaming */
	struct rpc_call **watchers;
	size_t nwatchers, watchers_cap;
};

/* Allocates a program with n empty chains; strings are copied.  NULL on ENOMEM. */
struct program *program_new(const char *id, const char *tenant, const char *problem,
    enum sched_algo algo, uint32_t n, uint64_t budget);
void program_free(struct program *p);

/* Asserts the transition is legal (aborts on a bug) and logs it. */
void program_set_state(struct program *p, enum program_state to);
bool program_is_terminal(const struct program *p);
const char *program_state_name(enum program_state s);

/* Appends step output to a chain; st (NULL: all unknown) goes with the step's probe point.
 * Returns 0 or -ENOMEM. */
int program_chain_append(struct chain *c, const char *text, uint64_t total_tokens,
    const char *probe_answer, uint32_t probe_tokens, const struct program_step_stats *st,
    bool finished, const char *final_answer, bool thinking_done);
/* Mean experts per token over the chains' latest steps (those that report it); < 0 when
 * none does. */
double program_experts_per_token(const struct program *p);
/* Total decode / probe tokens across chains, with those of chains a routing switch or drop
 * left behind. */
uint64_t program_tokens(const struct program *p);
uint64_t program_probe_tokens(const struct program *p);
/* A scheduler view of the program; chains storage is provided by the caller (n entries).
 * Staged sc: the view holds the launched chains and counts the others as pending. */
void program_view(const struct program *p, struct sched_chain *chains, int64_t now_ms,
    struct sched_view *out);
/* The chains launched: the first ones, all n unless staged sc holds some back. */
uint32_t program_launched(const struct program *p);

/* Expert routing (daemon/route.c).  program_route_note appends a decision to the program's
 * routing history (0 or -ENOMEM).  program_resize_chains gives the program n chains: keep
 * true keeps the current ones (n not below the current count; a fork), false frees them and
 * starts n empty ones (a switch: their tokens move to spent_*).  program_keep_chains keeps
 * the chains whose bit is set in keep, in order (a drop).  New and moved chains are marked
 * dirty.  0, CERTA_EINVAL or -ENOMEM (the program is unchanged then). */
int program_route_note(struct program *p, const struct program_route_event *ev);
int program_resize_chains(struct program *p, uint32_t n, bool keep);
int program_keep_chains(struct program *p, uint64_t keep);
/* Fills rec's routing fields from p (for the program's write). */
void program_record_route(const struct program *p, Certa__V1__ProgramRecord *rec);

/* Replaces a string field (strdup; nothing when it already holds value); returns 0 or
 * -ENOMEM. */
int program_set_str(char **field, const char *value);

/* Watchers: client streams receiving this program's events (each holds an rpc_call ref). */
int program_watch(struct program *p, struct rpc_call *call);
void program_unwatch(struct program *p, struct rpc_call *call);

/* --- codec (protobuf at the edge) --- */

/* Storage behind one Program message (the heap's or an arena's); free with program_pb_free. */
struct program_pb {
	Certa__V1__Program msg;
	Certa__V1__ProgramSpec spec;
	Certa__V1__SamplingParams sampling;
	Certa__V1__ProgramResult result;
	Certa__V1__RequestProgress *reqs;
	Certa__V1__RequestProgress **req_ptrs;
	Certa__V1__CertaintyFeatures *feats;
	Certa__V1__StepStats *stats;
	Certa__V1__RoutingEvent *route;
	Certa__V1__RoutingEvent **route_ptrs;
	struct pbarena *arena;   /* where the arrays are (NULL: the heap) */
};
/* Fills pb from p (strings borrowed from p).  Returns 0 or -ENOMEM. */
int program_pb_fill(const struct program *p, struct program_pb *pb);
/* The same with pb's arrays in arena a (lib/pbarena.h; NULL: the heap): they go with a's next
 * reset, program_pb_free frees nothing of them.  For writes built once per step. */
int program_pb_fill_in(const struct program *p, struct program_pb *pb, struct pbarena *a);
void program_pb_free(struct program_pb *pb);
/* n zeroed bytes from arena a, or from the heap (calloc) without one; NULL on ENOMEM.  What
 * the fills above and a write's own arrays (persist_build) are allocated with. */
void *program_zalloc(struct pbarena *a, size_t n);

/* Storage behind one RequestRecord. */
struct chain_pb {
	Certa__V1__RequestRecord msg;
	Certa__V1__ProbePoint *probes;        /* the points filled (from _fill_in's from on) */
	Certa__V1__ProbePoint **probe_ptrs;   /* indexed by probe point (see _fill_in's from) */
	struct pbarena *arena;                /* where they are (NULL: the heap) */
};
int program_chain_pb_fill(const struct program *p, const struct chain *c, struct chain_pb *pb);
/* The same in arena a (NULL: the heap), with the probe points from the from-th on: the
 * record's probes are those (msg.n_probes = nprobes - from), probe_ptrs[i] is probe point i
 * for i >= from and NULL before.  A step's write needs only the points since its last chunk;
 * the history record needs from 0. */
int program_chain_pb_fill_in(const struct program *p, const struct chain *c, struct chain_pb *pb,
    struct pbarena *a, size_t from);
void program_chain_pb_free(struct chain_pb *pb);

/* Copies src's chains (text, tokens, probe history, answers, finished flags) into dst's empty
 * chains (same n; marked dirty).  Returns 0, CERTA_EINVAL (other n, or dst's chains not
 * empty) or -ENOMEM (dst then holds a partial copy: free it). */
int program_copy_chains(struct program *dst, const struct program *src);

/* Rebuilds a program from its records (recovery).  reqs[i] may be NULL (chain never stepped).
 * Returns NULL on ENOMEM or an inconsistent record (no program or spec, n == 0, a request
 * record whose index is not a chain of the program, two request records for one chain).  A
 * routed program skips request records past its chains: a routing switch or drop leaves
 * them behind. */
struct program *program_from_records(const Certa__V1__ProgramRecord *rec,
    Certa__V1__RequestRecord *const *reqs, size_t nreqs);

/* Key of chain i in the requests DB: "<id>/<i>" (zero-padded so keys sort). */
void program_chain_key(const struct program *p, uint32_t i, char *buf, size_t len);
/* Writes "<id>/<u>", u in decimal zero-padded to width digits, into buf: what snprintf(buf,
 * len, "%s/%0*u", id, width, u) writes (truncated alike), without its format parsing (a step
 * formats several of these: request ids, record keys).  Returns the untruncated length. */
size_t program_fmt_key(char *buf, size_t len, const char *id, uint32_t u, unsigned width);

#endif
