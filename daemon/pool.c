/* pool.c — worker channels, health checks and placement. */
#include "daemon/pool.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <event2/event.h>

#include "lib/array.h"
#include "lib/cqbridge.h"
#include "lib/cred.h"
#include "lib/error.h"
#include "lib/log.h"
#include "lib/pbarena.h"
#include "lib/rpc_client.h"
#include "lib/strmap.h"

/* Request ids per Release call (the turn's releases to a worker go in as few calls). */
#define POOL_RELEASE_MAX 4096
/* The largest array of pending releases a worker keeps across turns. */
#define POOL_RELEASE_KEEP POOL_RELEASE_MAX

struct pool_worker {
	struct pool *pl;
	char *addr;
	struct rpc_channel *ch;
	enum pool_wstate state;
	int info_inflight;
	uint32_t capacity;
	uint32_t held;
	char engine[32];
	char model[128];
	char models[1024];        /* every model it serves, ",a,b," (from Info) */
	char *model_names[POOL_MAX_MODELS];  /* ... split (into model_buf), for ListWorkers */
	size_t nmodel_names;
	char model_buf[1024];
	char error[320];
	char instance[40];        /* the worker process we talk to (from Info) */
	bool prompt_once;         /* it keeps prompts with its state (Info; worker.proto) */
	int64_t last_seen_ms;
	uint32_t inflight;        /* chains in flight (step slots used) */
	int removed;              /* removed while calls were in flight */
	int calls;                /* async calls in flight */
	struct pool_batch *building;  /* the Step call of this dispatch pass, not sent yet */
	char **rel;               /* request ids released this loop turn, not sent yet */
	size_t nrel, rel_cap;
	struct pbarena *arena;    /* its Step replies are unpacked here (lib/pbarena.h) and
	                           * dropped at once when handled; NULL: protobuf-c's malloc */
	unsigned arena_depth;     /* Step replies being handled (a reset waits for 0) */
};

struct pool {
	struct event_base *base;
	struct cqbridge *br;
	struct pool_options opt;
	pool_change_fn on_change;
	void *arg;
	struct pool_worker **w;
	size_t n, cap;
	struct strmap *byaddr;            /* address -> struct pool_worker (the n in w) */
	struct event *timer;
	struct event *rel_ev;             /* sends the turn's releases (pool_on_release_flush) */
	size_t inflight;                  /* programs' steps added, not completed */
	uint64_t step_calls;
	grpc_channel_credentials *creds;  /* TLS to workers; NULL = plaintext */
	char *bearer;                     /* "Bearer TOKEN" or NULL */
	struct rpc_metadata md[1];        /* sent on every Worker call */
	size_t nmd;
};

/* One program's step in a batch: its items are items[off .. off + n). */
struct pool_part {
	size_t off, n;
	pool_step_fn cb;
	void *arg;
};

/* One Step call: built during a dispatch pass, then in flight until its reply. */
struct pool_batch {
	struct pool_worker *w;
	Certa__V1__StepItem **items;  /* borrowed from the callers until sent */
	size_t n, cap;
	size_t bytes;                 /* estimated packed size */
	struct pool_part *parts;
	size_t nparts, partcap;
	int err;                      /* the call could not start: failed on a later turn */
	struct pbarena *arena;        /* its reply's allocator: w->arena, or NULL (default) */
};

static void pool_batch_free(struct pool_batch *b);

/* w->models (",a,b,") into model_names, each name once, for ListWorkers. */
static void
pool_split_models(struct pool_worker *w)
{
	char *save = NULL, *tok;
	size_t i;

	snprintf(w->model_buf, sizeof w->model_buf, "%s", w->models);
	w->nmodel_names = 0;
	for (tok = strtok_r(w->model_buf, ",", &save); tok != NULL &&
	    w->nmodel_names < POOL_MAX_MODELS; tok = strtok_r(NULL, ",", &save)) {
		for (i = 0; i < w->nmodel_names; i++)
			if (strcmp(w->model_names[i], tok) == 0)
				break;
		if (i == w->nmodel_names)
			w->model_names[w->nmodel_names++] = tok;
	}
}

size_t
pool_worker_models(const struct pool_worker *w, char *const **names)
{
	*names = w->model_names;
	return w->nmodel_names;
}

static int64_t
pool_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *const pool_state_names[] = {
	[POOL_UNKNOWN] = "unknown",
	[POOL_UP] = "up",
	[POOL_DOWN] = "down",
	[POOL_DRAINING] = "draining",
};

const char *
pool_wstate_name(enum pool_wstate s)
{
	if ((unsigned)s < sizeof pool_state_names / sizeof pool_state_names[0] &&
	    pool_state_names[s] != NULL)
		return pool_state_names[s];
	return "?";
}

/* The one place worker state changes: logs and notifies the owner. */
static void
pool_set_state(struct pool_worker *w, enum pool_wstate to, const char *why)
{
	enum pool_wstate from = w->state;

	if (from == to)
		return;
	w->state = to;
	if (to == POOL_DOWN)
		log_warn(LOG_DISPATCH, "worker %s %s -> %s: %s", w->addr, pool_wstate_name(from),
		    pool_wstate_name(to), why ? why : "");
	else
		log_notice(LOG_DISPATCH, "worker %s %s -> %s engine=%s model=%s capacity=%u",
		    w->addr, pool_wstate_name(from), pool_wstate_name(to), w->engine, w->model,
		    w->capacity);
	if (w->pl->on_change != NULL)
		w->pl->on_change(w->pl->arg, w, from, to);
}

void
pool_mark_down(struct pool *pl, struct pool_worker *w, const char *why)
{
	(void)pl;
	snprintf(w->error, sizeof w->error, "%s", why ? why : "");
	if (w->state != POOL_DRAINING)
		pool_set_state(w, POOL_DOWN, why);
}

/* Frees the ids of the releases held (sent or dropped); keeps their array for the next
 * turn's (it was grown again by reallocs every turn) unless it is large. */
static void
pool_release_clear(struct pool_worker *w)
{
	size_t i;

	for (i = 0; i < w->nrel; i++)
		free(w->rel[i]);
	w->nrel = 0;
	if (w->rel_cap > POOL_RELEASE_KEEP) {
		free(w->rel);
		w->rel = NULL;
		w->rel_cap = 0;
	}
}

/* Drops the releases not sent yet, and their array. */
static void
pool_release_drop(struct pool_worker *w)
{
	pool_release_clear(w);
	free(w->rel);
	w->rel = NULL;
	w->rel_cap = 0;
}

/* Frees a worker whose last call completed after it was removed. */
static void
pool_worker_free(struct pool_worker *w)
{
	pool_release_drop(w);
	pbarena_free(w->arena);
	rpc_channel_free(w->ch);
	free(w->addr);
	free(w);
}

static void
pool_call_done(struct pool_worker *w)
{
	w->calls--;
	if (w->removed && w->calls == 0)
		pool_worker_free(w);
}

/* Whether a status says the worker refused certad's credentials (token or certificate). */
static int
pool_is_auth_error(grpc_status_code status)
{
	return status == GRPC_STATUS_UNAUTHENTICATED || status == GRPC_STATUS_PERMISSION_DENIED;
}

/* Whether a Step status says the worker cannot serve (it goes DOWN): lost, timed out, or
 * refusing certad's credentials. */
static int
pool_is_down_status(grpc_status_code status)
{
	return status == GRPC_STATUS_UNAVAILABLE || status == GRPC_STATUS_DEADLINE_EXCEEDED ||
	    pool_is_auth_error(status);
}

/* Marks w DOWN after a failed call; a refused credential is a configuration error and is
 * said so, once per transition. */
static void
pool_call_failed(struct pool_worker *w, const char *what, grpc_status_code status,
    const char *details)
{
	char why[300];

	snprintf(why, sizeof why, "%s: %s: %s", what, rpc_status_name(status),
	    details ? details : "");
	if (pool_is_auth_error(status) && (w->state != POOL_DOWN || strcmp(w->error, why) != 0))
		log_err(LOG_DISPATCH, "worker %s refuses certad's credentials (%s: %s): check "
		    "workers.token_file and workers.tls_* against the worker's token_file and "
		    "tls.* options", w->addr, rpc_status_name(status), details ? details : "");
	if (w->state != POOL_DOWN || strcmp(w->error, why) != 0)
		pool_mark_down(w->pl, w, why);
}

static void
pool_on_info(void *arg, grpc_status_code status, const char *details, ProtobufCMessage *reply)
{
	struct pool_worker *w = arg;
	Certa__V1__InfoReply *r = (Certa__V1__InfoReply *)reply;

	w->info_inflight = 0;
	if (!w->removed) {
		if (status == GRPC_STATUS_OK && r != NULL) {
			if (w->instance[0] != '\0' && strcmp(w->instance, r->instance) != 0 &&
			    w->state == POOL_UP) {
				/* Same address, new process: its per-request state is gone, so
				 * the chains placed on it must move (re-prefill) like after a loss. */
				pool_mark_down(w->pl, w, "worker restarted (new instance)");
			}
			snprintf(w->instance, sizeof w->instance, "%s", r->instance);
			w->prompt_once = r->prompt_once;
			w->capacity = r->capacity;
			snprintf(w->engine, sizeof w->engine, "%s", r->engine);
			snprintf(w->model, sizeof w->model, "%s", r->model);
			{
				size_t k, off = 0;
				w->models[0] = '\0';
				off += (size_t)snprintf(w->models, sizeof w->models, ",%s,", r->model);
				for (k = 0; k < r->n_models && off < sizeof w->models; k++)
					off += (size_t)snprintf(w->models + off, sizeof w->models - off,
					    "%s,", r->models[k]);
				pool_split_models(w);
			}
			w->last_seen_ms = pool_now_ms();
			w->error[0] = '\0';
			if (w->state == POOL_UNKNOWN || w->state == POOL_DOWN)
				pool_set_state(w, POOL_UP, NULL);
		} else if (w->state != POOL_DOWN || w->error[0] == '\0' ||
		    pool_is_auth_error(status)) {
			pool_call_failed(w, "health check", status, details);
		}
	}
	if (reply != NULL)
		protobuf_c_message_free_unpacked(reply, NULL);
	pool_call_done(w);
}

/* Sends one Info unless one is outstanding. */
static void
pool_probe(struct pool_worker *w)
{
	Certa__V1__InfoRequest req = CERTA__V1__INFO_REQUEST__INIT;

	if (w->info_inflight || w->removed)
		return;
	if (rpc_client_unary(w->ch, w->pl->br, "/certa.v1.Worker/Info", &req.base,
	    &certa__v1__info_reply__descriptor, w->pl->opt.info_timeout_ms, w->pl->md,
	    w->pl->nmd, pool_on_info, w) == 0) {
		w->info_inflight = 1;
		w->calls++;
	}
}

static void
pool_on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct pool *pl = arg;
	size_t i;

	(void)fd;
	(void)what;
	for (i = 0; i < pl->n; i++)
		pool_probe(pl->w[i]);
}

static void pool_on_release_flush(evutil_socket_t fd, short what, void *arg);

int
pool_new(struct event_base *base, struct cqbridge *br, const struct pool_options *opt,
    pool_change_fn on_change, void *arg, struct pool **out)
{
	struct pool *pl = calloc(1, sizeof *pl);
	struct timeval tv;

	if (pl == NULL)
		return -ENOMEM;
	pl->base = base;
	pl->br = br;
	pl->opt = *opt;
	pl->on_change = on_change;
	pl->arg = arg;
	pl->timer = event_new(base, -1, EV_PERSIST, pool_on_timer, pl);
	pl->rel_ev = event_new(base, -1, 0, pool_on_release_flush, pl);
	pl->byaddr = strmap_new();
	if (pl->timer == NULL || pl->rel_ev == NULL || pl->byaddr == NULL) {
		if (pl->timer != NULL)
			event_free(pl->timer);
		if (pl->rel_ev != NULL)
			event_free(pl->rel_ev);
		strmap_free(pl->byaddr, NULL);
		free(pl);
		return -ENOMEM;
	}
	/* The PEM text and the token are the caller's: keep only what is built from them. */
	pl->opt.tls_ca = pl->opt.tls_cert = pl->opt.tls_key = pl->opt.token = NULL;
	if (opt->tls_ca != NULL) {
		pl->creds = cred_channel_tls(opt->tls_ca, opt->tls_cert, opt->tls_key);
		if (pl->creds == NULL) {
			event_free(pl->timer);
			free(pl);
			return CERTA_ECONFIG;
		}
	}
	if (opt->token != NULL) {
		if (asprintf(&pl->bearer, "Bearer %s", opt->token) < 0) {
			if (pl->creds != NULL)
				grpc_channel_credentials_release(pl->creds);
			event_free(pl->timer);
			free(pl);
			return -ENOMEM;
		}
		pl->md[0].key = "authorization";
		pl->md[0].value = pl->bearer;
		pl->nmd = 1;
	}
	tv.tv_sec = opt->health_interval_ms / 1000;
	tv.tv_usec = (opt->health_interval_ms % 1000) * 1000;
	event_add(pl->timer, &tv);
	*out = pl;
	return 0;
}

void
pool_free(struct pool *pl)
{
	size_t i;

	if (pl == NULL)
		return;
	event_free(pl->timer);
	event_free(pl->rel_ev);
	for (i = 0; i < pl->n; i++) {
		/* Outstanding Info calls complete (cancelled) when the channel goes. */
		pl->w[i]->removed = 1;
		pool_release_drop(pl->w[i]);
		if (pl->w[i]->building != NULL) {
			/* Never sent (pool_step_flush ends every pass): nobody waits on it. */
			pool_batch_free(pl->w[i]->building);
			pl->w[i]->building = NULL;
		}
		rpc_channel_free(pl->w[i]->ch);
		pl->w[i]->ch = NULL;
		if (pl->w[i]->calls == 0) {
			pbarena_free(pl->w[i]->arena);
			free(pl->w[i]->addr);
			free(pl->w[i]);
		}
	}
	free(pl->w);
	strmap_free(pl->byaddr, NULL);
	if (pl->creds != NULL)
		grpc_channel_credentials_release(pl->creds);
	cred_free_secret(pl->bearer);
	free(pl);
}

int
pool_add(struct pool *pl, const char *addr)
{
	struct pool_worker *w;
	int rc;

	if (pool_find(pl, addr) != NULL)
		return CERTA_EEXIST;
	if (ARRAY_GROW(pl->w, pl->cap, pl->n + 1) != 0)
		return -ENOMEM;
	w = calloc(1, sizeof *w);
	if (w == NULL)
		return -ENOMEM;
	w->pl = pl;
	w->state = POOL_UNKNOWN;
	w->addr = strdup(addr);
	if (w->addr == NULL) {
		free(w);
		return -ENOMEM;
	}
	rc = pl->creds != NULL ? rpc_channel_new_creds(addr, pl->creds, &w->ch) :
	    rpc_channel_new(addr, &w->ch);
	if (rc == 0 && strmap_put(pl->byaddr, addr, w, NULL) != 0) {
		rpc_channel_free(w->ch);
		rc = -ENOMEM;
	}
	if (rc != 0) {
		free(w->addr);
		free(w);
		return rc;
	}
	pl->w[pl->n++] = w;
	log_info(LOG_DISPATCH, "worker %s added", addr);
	pool_probe(w);
	return 0;
}

int
pool_remove(struct pool *pl, const char *addr)
{
	size_t i;

	for (i = 0; i < pl->n; i++) {
		struct pool_worker *w = pl->w[i];
		if (strcmp(w->addr, addr) != 0)
			continue;
		if (w->held > 0)
			return CERTA_ESTATE;
		pl->w[i] = pl->w[--pl->n];
		strmap_del(pl->byaddr, w->addr);
		w->removed = 1;
		pool_release_drop(w);
		log_info(LOG_DISPATCH, "worker %s removed", addr);
		if (w->calls == 0)
			pool_worker_free(w);
		return 0;
	}
	return CERTA_ENOTFOUND;
}

int
pool_drain(struct pool *pl, const char *addr, int drain)
{
	struct pool_worker *w = pool_find(pl, addr);

	if (w == NULL)
		return CERTA_ENOTFOUND;
	if (drain)
		pool_set_state(w, POOL_DRAINING, "operator drain");
	else if (w->state == POOL_DRAINING) {
		pool_set_state(w, POOL_UNKNOWN, NULL);
		pool_probe(w);
	}
	return 0;
}

struct pool_worker *
pool_find(struct pool *pl, const char *addr)
{
	if (addr == NULL)
		return NULL;
	return strmap_get(pl->byaddr, addr);
}

size_t
pool_count(const struct pool *pl)
{
	return pl->n;
}

struct pool_worker *
pool_at(struct pool *pl, size_t i)
{
	return i < pl->n ? pl->w[i] : NULL;
}

size_t
pool_count_up(const struct pool *pl)
{
	size_t i, n = 0;

	for (i = 0; i < pl->n; i++)
		if (pl->w[i]->state == POOL_UP)
			n++;
	return n;
}

/* Step slots a worker has free. */
static uint32_t
pool_slots_free(const struct pool_worker *w)
{
	uint32_t max = w->pl->opt.max_inflight ? w->pl->opt.max_inflight : w->capacity;

	return w->inflight >= max ? 0 : max - w->inflight;
}

int
pool_has_slots(const struct pool *pl)
{
	size_t i;

	for (i = 0; i < pl->n; i++)
		if (pl->w[i]->state == POOL_UP && pool_slots_free(pl->w[i]) > 0)
			return 1;
	return 0;
}

uint32_t
pool_worker_inflight(const struct pool_worker *w)
{
	return w->inflight;
}

int
pool_worker_serves(const struct pool_worker *w, const char *model)
{
	char pat[160];

	if (model == NULL || model[0] == '\0')
		return 1;
	snprintf(pat, sizeof pat, ",%s,", model);
	return strstr(w->models, pat) != NULL;
}

int
pool_model_known(const struct pool *pl, const char *model, char *avail, size_t len)
{
	size_t i, off = 0, up = 0;
	int found = 0;

	if (len > 0)
		avail[0] = '\0';
	for (i = 0; i < pl->n; i++) {
		const struct pool_worker *w = pl->w[i];
		if (w->state != POOL_UP)
			continue;
		up++;
		found |= pool_worker_serves(w, model);
		{
			/* Every model it serves: what ListModels lists. */
			const char *m;
			for (m = w->models + 1; *m != '\0' && off < len; m = strchr(m, ',') + 1) {
				int l = (int)(strchr(m, ',') - m);
				char one[160];
				snprintf(one, sizeof one, "%.*s", l, m);
				if (l > 0 && strstr(avail, one) == NULL)
					off += (size_t)snprintf(avail + off, len - off, "%s%s",
					    off ? ", " : "", one);
			}
		}
	}
	return found || up == 0;
}

/* The models UP workers serve, each once, with how many serve it and their largest
 * capacity: the set pool_model_known accepts. */
int
pool_models(const struct pool *pl, void (*fn)(void *arg, const char *model, uint32_t workers,
    uint32_t max_capacity), void *arg)
{
	char seen[4096] = ",", name[128];
	size_t i, j, off = 1;

	for (i = 0; i < pl->n; i++) {
		const char *m;
		if (pl->w[i]->state != POOL_UP)
			continue;
		for (m = pl->w[i]->models + 1; *m != '\0'; m = strchr(m, ',') + 1) {
			size_t len = (size_t)(strchr(m, ',') - m);
			char pat[164];
			uint32_t nw = 0, cap = 0;
			if (len == 0 || len >= sizeof name)
				continue;
			memcpy(name, m, len);
			name[len] = '\0';
			snprintf(pat, sizeof pat, ",%s,", name);
			if (strstr(seen, pat) != NULL)
				continue;
			if (off + len + 1 < sizeof seen)
				off += (size_t)snprintf(seen + off, sizeof seen - off, "%s,", name);
			for (j = 0; j < pl->n; j++) {
				const struct pool_worker *w = pl->w[j];
				if (w->state != POOL_UP || !pool_worker_serves(w, name))
					continue;
				nw++;
				if (w->capacity > cap)
					cap = w->capacity;
			}
			fn(arg, name, nw, cap);
		}
	}
	return 0;
}

uint32_t
pool_max_capacity(const struct pool *pl, const char *model)
{
	uint32_t cap = 0;
	size_t i;

	for (i = 0; i < pl->n; i++) {
		const struct pool_worker *w = pl->w[i];
		if (w->state == POOL_UP && pool_worker_serves(w, model) && w->capacity > cap)
			cap = w->capacity;
	}
	return cap;
}

struct pool_worker *
pool_pick(struct pool *pl, const char *prefer, uint32_t need, const char *model)
{
	struct pool_worker *best = NULL, *w;
	uint32_t best_free = 0;
	size_t i;

	/* The preferred worker already holds the chains: it needs no new room, only slots. */
	w = pool_find(pl, prefer);
	if (w != NULL && w->state == POOL_UP && pool_worker_serves(w, model))
		return pool_slots_free(w) >= need ? w : NULL;
	for (i = 0; i < pl->n; i++) {
		uint32_t freec;
		w = pl->w[i];
		if (w->state != POOL_UP || w->held + need > w->capacity ||
		    pool_slots_free(w) < need || !pool_worker_serves(w, model))
			continue;
		freec = w->capacity - w->held;
		if (best == NULL || freec > best_free) {
			best = w;
			best_free = freec;
		}
	}
	return best;
}

void
pool_hold(struct pool_worker *w, int delta)
{
	if (delta < 0 && (uint32_t)-delta > w->held)
		w->held = 0;
	else
		w->held = (uint32_t)((int)w->held + delta);
}

static void
pool_batch_free(struct pool_batch *b)
{
	free(b->items);
	free(b->parts);
	free(b);
}

/* Runs every part's callback with its own outcome, then frees the batch.  status is the
 * call's; with OK each part gets its results, or the error the worker put on its items. */
static void
pool_batch_done(struct pool_batch *b, grpc_status_code status, const char *details,
    Certa__V1__StepReply *reply)
{
	struct pool_worker *w = b->w;
	size_t i, k;

	if (status == GRPC_STATUS_OK && (reply == NULL || reply->n_results != b->n)) {
		status = GRPC_STATUS_INTERNAL;
		details = "worker reply does not match the batch";
	}
	for (i = 0; i < b->nparts; i++) {
		const struct pool_part *pt = &b->parts[i];
		const Certa__V1__StepResult *bad = NULL;

		w->pl->inflight--;
		if (status != GRPC_STATUS_OK) {
			pt->cb(pt->arg, w, status, details, NULL, 0);
			continue;
		}
		for (k = pt->off; k < pt->off + pt->n && bad == NULL; k++)
			if (reply->results[k]->error_code != 0)
				bad = reply->results[k];
		if (bad != NULL) {
			/* The worker cannot serve (an upstream engine's UNAVAILABLE, ...): DOWN
			 * as when a call fails so, before the program moves on. */
			if (!w->removed && pool_is_down_status((grpc_status_code)bad->error_code))
				pool_call_failed(w, "step", (grpc_status_code)bad->error_code,
				    bad->error_message);
			pt->cb(pt->arg, w, (grpc_status_code)bad->error_code, bad->error_message,
			    reply->results + pt->off, pt->n);
		}
		else
			pt->cb(pt->arg, w, GRPC_STATUS_OK, NULL, reply->results + pt->off, pt->n);
	}
	/* A reply in the worker's arena goes with the arena's reset (pool_on_step). */
	if (reply != NULL && b->arena == NULL)
		protobuf_c_message_free_unpacked(&reply->base, NULL);
	pool_batch_free(b);
}

static void
pool_on_step(void *arg, grpc_status_code status, const char *details, ProtobufCMessage *reply)
{
	struct pool_batch *b = arg;
	struct pool_worker *w = b->w;
	struct pbarena *arena = b->arena;

	w->inflight -= b->n < w->inflight ? (uint32_t)b->n : w->inflight;
	/* A reply carries many programs' steps: the loop turn counts each (bounded turns). */
	if (b->nparts > 1)
		cqbridge_charge(w->pl->br, b->nparts - 1);
	if (!w->removed && pool_is_down_status(status))
		pool_call_failed(w, "step", status, details);
	/* Another reply of w handled inside this one's callbacks (a nested turn) lives in the
	 * same arena: the arena is reset when the outermost one is done. */
	w->arena_depth++;
	pool_batch_done(b, status, details, (Certa__V1__StepReply *)reply);
	if (--w->arena_depth == 0 && arena != NULL)
		pbarena_reset(arena);
	pool_call_done(w);
}

/* A batch whose call could not start, on the loop turn after: each program fails INTERNAL
 * (and retries after its backoff). */
static void
pool_on_unsent(evutil_socket_t fd, short what, void *arg)
{
	struct pool_batch *b = arg;
	struct pool_worker *w = b->w;
	char msg[160];

	(void)fd;
	(void)what;
	w->inflight -= b->n < w->inflight ? (uint32_t)b->n : w->inflight;
	snprintf(msg, sizeof msg, "cannot start the Step call: %s", certa_strerror(b->err));
	pool_batch_done(b, GRPC_STATUS_INTERNAL, msg, NULL);
	pool_call_done(w);
}

static void pool_release_send(struct pool *pl, struct pool_worker *w);

/* Sends w's batch being built (if any). */
static void
pool_batch_send(struct pool_worker *w)
{
	struct pool *pl = w->pl;
	struct pool_batch *b = w->building;
	Certa__V1__StepRequest req = CERTA__V1__STEP_REQUEST__INIT;
	int rc;

	if (b == NULL)
		return;
	/* Releases of this turn go first: a program released and placed again on w in the same
	 * pass (routing's switch or drop after a policy change) sends its fresh chains under the
	 * same request ids, which a Release started after the Step would free. */
	if (w->nrel > 0)
		pool_release_send(pl, w);
	w->building = NULL;
	if (b->nparts == 0) {
		/* Only an allocation that failed in pool_step_add: nothing to send. */
		pool_batch_free(b);
		return;
	}
	req.n_items = b->n;
	req.items = b->items;
	req.program_errors = 1;
	w->calls++;
	if (w->arena == NULL)
		w->arena = pbarena_new(0);   /* without memory: protobuf-c's malloc */
	b->arena = w->arena;
	rc = rpc_client_unary_alloc(w->ch, pl->br, "/certa.v1.Worker/Step", &req.base,
	    &certa__v1__step_reply__descriptor,
	    b->arena != NULL ? pbarena_allocator(b->arena) : NULL, pl->opt.step_timeout_ms,
	    pl->md, pl->nmd, pool_on_step, b);
	/* The request is packed: the callers' items are not needed any more. */
	free(b->items);
	b->items = NULL;
	if (rc == 0) {
		pl->step_calls++;
		return;
	}
	b->err = rc;
	if (event_base_once(pl->base, -1, EV_TIMEOUT, pool_on_unsent, b, NULL) != 0) {
		/* Not even that: fail them now (rare; the callers tolerate it). */
		pool_on_unsent(-1, 0, b);
	}
}

/* Estimated packed size of one item (its strings and some framing). */
static size_t
pool_item_bytes(const Certa__V1__StepItem *it)
{
	return 64 + strlen(it->request_id) + strlen(it->prompt) + strlen(it->resume_text) +
	    strlen(it->model);
}

int
pool_step_add(struct pool *pl, struct pool_worker *w, Certa__V1__StepItem *const *items,
    size_t n, pool_step_fn cb, void *arg)
{
	struct pool_batch *b;
	size_t i, bytes = 0;

	for (i = 0; i < n; i++)
		bytes += pool_item_bytes(items[i]);
	b = w->building;
	if (b != NULL && (b->n + n > POOL_BATCH_ITEMS || b->bytes + bytes > POOL_BATCH_BYTES))
		pool_batch_send(w);
	if (w->building == NULL) {
		w->building = calloc(1, sizeof *w->building);
		if (w->building == NULL)
			return -ENOMEM;
		w->building->w = w;
	}
	b = w->building;
	if (ARRAY_GROW(b->items, b->cap, b->n + n) != 0 ||
	    ARRAY_GROW(b->parts, b->partcap, b->nparts + 1) != 0)
		return -ENOMEM;
	b->parts[b->nparts].off = b->n;
	b->parts[b->nparts].n = n;
	b->parts[b->nparts].cb = cb;
	b->parts[b->nparts].arg = arg;
	b->nparts++;
	for (i = 0; i < n; i++)
		b->items[b->n++] = items[i];
	b->bytes += bytes;
	w->inflight += (uint32_t)n;
	pl->inflight++;
	if (b->n >= POOL_BATCH_ITEMS)
		pool_batch_send(w);
	return 0;
}

void
pool_step_flush(struct pool *pl)
{
	size_t i;

	for (i = 0; i < pl->n; i++)
		pool_batch_send(pl->w[i]);
}

uint64_t
pool_step_calls(const struct pool *pl)
{
	return pl->step_calls;
}

static void
pool_on_release(void *arg, grpc_status_code status, const char *details, ProtobufCMessage *reply)
{
	struct pool_worker *w = arg;

	if (status != GRPC_STATUS_OK)
		log_info(LOG_DISPATCH, "release on %s: %s: %s", w->addr, rpc_status_name(status),
		    details ? details : "");
	if (reply != NULL)
		protobuf_c_message_free_unpacked(reply, NULL);
	pool_call_done(w);
}

/* Sends one worker's pending releases, POOL_RELEASE_MAX ids per call. */
static void
pool_release_send(struct pool *pl, struct pool_worker *w)
{
	Certa__V1__ReleaseRequest req = CERTA__V1__RELEASE_REQUEST__INIT;
	size_t off, n;

	for (off = 0; off < w->nrel && w->state != POOL_DOWN; off += n) {
		n = w->nrel - off < POOL_RELEASE_MAX ? w->nrel - off : POOL_RELEASE_MAX;
		req.n_request_ids = n;
		req.request_ids = w->rel + off;
		if (rpc_client_unary(w->ch, pl->br, "/certa.v1.Worker/Release", &req.base,
		    &certa__v1__release_reply__descriptor, pl->opt.info_timeout_ms, pl->md, pl->nmd,
		    pool_on_release, w) == 0)
			w->calls++;
	}
	pool_release_clear(w);
}

static void
pool_on_release_flush(evutil_socket_t fd, short what, void *arg)
{
	struct pool *pl = arg;
	size_t i;

	(void)fd;
	(void)what;
	for (i = 0; i < pl->n; i++)
		if (pl->w[i]->nrel > 0)
			pool_release_send(pl, pl->w[i]);
}

void
pool_release(struct pool *pl, const char *addr, char *const *ids, size_t n)
{
	struct pool_worker *w = pool_find(pl, addr);
	size_t i;

	if (w == NULL || n == 0 || w->state == POOL_DOWN)
		return;
	if (ARRAY_GROW(w->rel, w->rel_cap, w->nrel + n) != 0)
		return;   /* best effort, like the call itself */
	for (i = 0; i < n; i++) {
		char *id = strdup(ids[i]);
		if (id == NULL)
			break;
		w->rel[w->nrel++] = id;
	}
	/* Every release of this loop turn to this worker goes in one call. */
	event_active(pl->rel_ev, 0, 0);
}

const char *
pool_worker_addr(const struct pool_worker *w)
{
	return w->addr;
}

enum pool_wstate
pool_worker_state(const struct pool_worker *w)
{
	return w->state;
}

uint32_t
pool_worker_capacity(const struct pool_worker *w)
{
	return w->capacity;
}

uint32_t
pool_worker_held(const struct pool_worker *w)
{
	return w->held;
}

const char *
pool_worker_engine(const struct pool_worker *w)
{
	return w->engine;
}

const char *
pool_worker_model(const struct pool_worker *w)
{
	return w->model;
}

const char *
pool_worker_error(const struct pool_worker *w)
{
	return w->error;
}

int64_t
pool_worker_last_seen(const struct pool_worker *w)
{
	return w->last_seen_ms;
}

size_t
pool_inflight(const struct pool *pl)
{
	return pl->inflight;
}

bool
pool_worker_prompt_once(const struct pool_worker *w)
{
	return w->prompt_once;
}
