/* program.c — program/chain state, the program state machine, and the record codec. */
#include "daemon/program.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/array.h"
#include "lib/error.h"
#include "lib/intern.h"
#include "lib/log.h"
#include "lib/pbarena.h"
#include "lib/rpc_server.h"
#include "scheduler/certainty.h"

int
program_set_str(char **field, const char *value)
{
	char *s;

	if (value == NULL)
		value = "";
	if (*field != NULL && strcmp(*field, value) == 0)
		return 0;   /* most steps keep their answer: no strdup and free */
	s = strdup(value);
	if (s == NULL)
		return -ENOMEM;
	free(*field);
	*field = s;
	return 0;
}

struct program *
program_new(const char *id, const char *tenant, const char *problem, enum sched_algo algo,
    uint32_t n, uint64_t budget)
{
	struct program *p;
	uint32_t i;

	p = calloc(1, sizeof *p);
	if (p == NULL)
		return NULL;
	fair_entry_init(&p->ready);
	p->chains = calloc(n ? n : 1, sizeof *p->chains);
	if (p->chains == NULL || program_set_str(&p->id, id) != 0 ||
	    program_set_str(&p->tenant, tenant) != 0 ||
	    program_set_str(&p->problem, problem) != 0 || program_set_str(&p->model, "") != 0 ||
	    program_set_str(&p->idempotency_key, "") != 0 || program_set_str(&p->answer, "") != 0) {
		program_free(p);
		return NULL;
	}
	p->tenant_key = intern_str(tenant);
	if (p->tenant_key == NULL) {
		program_free(p);
		return NULL;
	}
	p->algo = algo;
	p->n = n;
	p->budget = budget;
	p->state = PROGRAM_QUEUED;
	for (i = 0; i < n; i++)
		p->chains[i].index = i;
	return p;
}

/* Frees what a chain owns (the chain itself is the program's array element). */
static void
program_chain_clear(struct chain *c)
{
	size_t j;

	free(c->text);
	certainty_scan_free(c->scan);
	free(c->answer);
	free(c->final_answer);
	for (j = 0; j < c->nprobes; j++)
		free(c->probes[j].answer);
	free(c->probes);
	memset(c, 0, sizeof *c);
}

void
program_free(struct program *p)
{
	uint32_t i;
	size_t j;

	if (p == NULL)
		return;
	for (i = 0; p->chains != NULL && i < p->n; i++)
		program_chain_clear(&p->chains[i]);
	free(p->routing);
	for (j = 0; j < p->nwatchers; j++)
		rpc_call_unref(p->watchers[j]);
	free(p->watchers);
	free(p->chains);
	free(p->id);
	free(p->tenant);
	free(p->problem);
	free(p->model);
	free(p->idempotency_key);
	free(p->worker);
	free(p->answer);
	free(p->error_message);
	free(p->shadow_of);
	free(p->shadow_answer);
	free(p);
}

static const char *const program_state_names[] = {
	[PROGRAM_QUEUED] = "queued",
	[PROGRAM_RUNNING] = "running",
	[PROGRAM_FINISHED] = "finished",
	[PROGRAM_CANCELLED] = "cancelled",
	[PROGRAM_FAILED] = "failed",
};

const char *
program_state_name(enum program_state s)
{
	if ((unsigned)s < sizeof program_state_names / sizeof program_state_names[0] &&
	    program_state_names[s] != NULL)
		return program_state_names[s];
	return "unknown";
}

bool
program_is_terminal(const struct program *p)
{
	return p->state == PROGRAM_FINISHED || p->state == PROGRAM_CANCELLED ||
	    p->state == PROGRAM_FAILED;
}

/* Legal transitions, [from][to]. */
static const bool program_transitions[6][6] = {
	[PROGRAM_QUEUED] = {
		[PROGRAM_RUNNING] = true, [PROGRAM_CANCELLED] = true, [PROGRAM_FAILED] = true,
		[PROGRAM_FINISHED] = true,
	},
	[PROGRAM_RUNNING] = {
		[PROGRAM_QUEUED] = true, [PROGRAM_FINISHED] = true, [PROGRAM_CANCELLED] = true,
		[PROGRAM_FAILED] = true,
	},
};

void
program_set_state(struct program *p, enum program_state to)
{
	enum program_state from = p->state;

	if (from == to)
		return;
	if ((unsigned)from >= 6 || (unsigned)to >= 6 || !program_transitions[from][to]) {
		log_err(LOG_SCHED, "BUG: program %s: illegal transition %s -> %s", p->id,
		    program_state_name(from), program_state_name(to));
		abort();
	}
	log_debug(LOG_SCHED, "program %s: %s -> %s", p->id, program_state_name(from),
	    program_state_name(to));
	p->state = to;
}

int
program_chain_append(struct chain *c, const char *text, uint64_t total_tokens,
    const char *probe_answer, uint32_t probe_tokens, const struct program_step_stats *st,
    bool finished, const char *final_answer, bool thinking_done)
{
	static const struct program_step_stats unknown = { -1, -1, -1, -1 };
	size_t add = text != NULL ? strlen(text) : 0;

	if (ARRAY_GROW(c->text, c->text_cap, c->text_len + add + 1) != 0)
		return -ENOMEM;
	if (c->scan == NULL)
		c->scan = certainty_scan_new();   /* NULL without memory: the decisions rescan */
	memcpy(c->text + c->text_len, text != NULL ? text : "", add);
	c->text_len += add;
	c->text[c->text_len] = '\0';
	if (ARRAY_GROW(c->probes, c->probes_cap, c->nprobes + 1) != 0)
		return -ENOMEM;
	c->probes[c->nprobes].position = total_tokens;
	c->probes[c->nprobes].answer = strdup(probe_answer != NULL ? probe_answer : "");
	c->probes[c->nprobes].certaindex = 0;
	if (st == NULL)
		st = &unknown;
	c->probes[c->nprobes].confidence = st->mean_prob;
	c->probes[c->nprobes].min_prob = st->min_prob;
	c->probes[c->nprobes].entropy = st->entropy;
	c->probes[c->nprobes].experts = st->experts;
	if (c->probes[c->nprobes].answer == NULL)
		return -ENOMEM;
	c->nprobes++;
	if (program_set_str(&c->answer, probe_answer) != 0)
		return -ENOMEM;
	c->tokens = total_tokens;
	c->probe_tokens += probe_tokens;
	c->thinking_done = thinking_done;
	if (finished) {
		c->finished = true;
		if (program_set_str(&c->final_answer, final_answer) != 0)
			return -ENOMEM;
	}
	c->dirty = true;
	return 0;
}

uint64_t
program_tokens(const struct program *p)
{
	uint64_t t = 0;
	uint32_t i;

	for (i = 0; i < p->n; i++)
		t += p->chains[i].tokens;
	return t + p->spent_tokens;
}

double
program_experts_per_token(const struct program *p)
{
	double sum = 0;
	uint32_t i, n = 0;

	for (i = 0; i < p->n; i++) {
		const struct chain *c = &p->chains[i];
		if (c->nprobes > 0 && c->probes[c->nprobes - 1].experts >= 0) {
			sum += c->probes[c->nprobes - 1].experts;
			n++;
		}
	}
	return n > 0 ? sum / n : -1;
}

uint64_t
program_probe_tokens(const struct program *p)
{
	uint64_t t = 0;
	uint32_t i;

	for (i = 0; i < p->n; i++)
		t += p->chains[i].probe_tokens;
	return t + p->spent_probe_tokens;
}

int
program_route_note(struct program *p, const struct program_route_event *ev)
{
	if (ARRAY_GROW(p->routing, p->routing_cap, p->nrouting + 1) != 0)
		return -ENOMEM;
	p->routing[p->nrouting++] = *ev;
	return 0;
}

int
program_resize_chains(struct program *p, uint32_t n, bool keep)
{
	struct chain *nc;
	uint32_t i, from = keep ? p->n : 0;

	if (n == 0 || (keep && n < p->n))
		return CERTA_EINVAL;
	nc = calloc(n, sizeof *nc);
	if (nc == NULL)
		return -ENOMEM;
	for (i = 0; i < p->n; i++) {
		if (keep) {
			nc[i] = p->chains[i];
			continue;
		}
		p->spent_tokens += p->chains[i].tokens;
		p->spent_probe_tokens += p->chains[i].probe_tokens;
		program_chain_clear(&p->chains[i]);
	}
	for (i = from; i < n; i++) {
		nc[i].index = i;
		nc[i].dirty = true;
	}
	if (!keep)
		p->chains_reset = true;   /* the old chains' chunks are not the new ones' */
	free(p->chains);
	p->chains = nc;
	p->n = n;
	return 0;
}

int
program_keep_chains(struct program *p, uint64_t keep)
{
	uint32_t i, k = 0;

	for (i = 0; i < p->n && i < 64; i++)
		if (keep >> i & 1u)
			k++;
	if (k == 0)
		return CERTA_EINVAL;
	k = 0;
	for (i = 0; i < p->n; i++) {
		if (i >= 64 || (keep >> i & 1u) == 0) {
			p->spent_tokens += p->chains[i].tokens;
			p->spent_probe_tokens += p->chains[i].probe_tokens;
			program_chain_clear(&p->chains[i]);
			continue;
		}
		if (k != i) {
			p->chains[k] = p->chains[i];
			memset(&p->chains[i], 0, sizeof p->chains[i]);
		}
		p->chains[k].index = k;
		p->chains[k].dirty = true;
		k++;
	}
	/* Chains dropped or renumbered: their chunks are keyed by the old indexes. */
	if (k != p->n)
		p->chains_reset = true;
	p->n = k;
	return 0;
}

void
program_record_route(const struct program *p, Certa__V1__ProgramRecord *rec)
{
	rec->routed = p->routed;
	rec->route_state = (uint32_t)p->rstate.state;
	rec->route_rung = p->rstate.rung;
	rec->route_escalations = p->rstate.escalations;
	rec->route_base = p->rstate.base;
	rec->spent_tokens = p->spent_tokens;
	rec->spent_probe_tokens = p->spent_probe_tokens;
}

/* The probe histories of the last view (loop thread only; valid until the next call). */
static struct sched_probe *program_view_probes;
static size_t program_view_probes_cap;

void
program_view(const struct program *p, struct sched_chain *chains, int64_t now_ms,
    struct sched_view *out)
{
	size_t total = 0, used = 0, j;
	uint32_t i;

	/* The scheduler reads each chain's probe history; copy it into one shared buffer (the
	 * chain keeps struct probe_point, which owns its strings). */
	for (i = 0; i < p->n; i++)
		total += p->chains[i].nprobes;
	/* On -ENOMEM the chains go without their probe history (total > cap below). */
	(void)ARRAY_GROW(program_view_probes, program_view_probes_cap, total);
	for (i = 0; i < p->n; i++) {
		const struct chain *c = &p->chains[i];
		chains[i].tokens = c->tokens;
		chains[i].finished = c->finished;
		chains[i].answer = c->answer != NULL ? c->answer : "";
		chains[i].final_answer = c->final_answer != NULL ? c->final_answer : "";
		chains[i].thinking_done = c->thinking_done;
		chains[i].text = c->text;
		chains[i].text_len = c->text != NULL ? c->text_len : 0;
		chains[i].scan = c->scan;
		chains[i].probes = NULL;
		chains[i].nprobes = 0;
		if (total <= program_view_probes_cap && c->nprobes > 0) {
			/* Out of memory above: the view falls back to the latest answer only. */
			chains[i].probes = program_view_probes + used;
			chains[i].nprobes = c->nprobes;
			for (j = 0; j < c->nprobes; j++) {
				struct sched_probe *sp = &program_view_probes[used++];
				sp->position = c->probes[j].position;
				sp->answer = c->probes[j].answer != NULL ? c->probes[j].answer : "";
				sp->confidence = c->probes[j].confidence;
				sp->min_prob = c->probes[j].min_prob;
				sp->entropy = c->probes[j].entropy;
			}
		}
	}
	memset(out, 0, sizeof *out);
	out->algo = p->algo;
	out->budget = p->budget;
	out->now_ms = now_ms;
	out->deadline_ms = p->deadline_ms;
	out->problem = p->problem;
	out->nchains = program_launched(p);
	out->chains = chains;
	/* staged sc: the scheduler sees the launched chains and counts the others as pending */
	out->staged = p->launched > 0;
	out->pending = p->n - out->nchains;
}

uint32_t
program_launched(const struct program *p)
{
	return p->launched > 0 && p->launched < p->n ? p->launched : p->n;
}

int
program_watch(struct program *p, struct rpc_call *call)
{
	if (ARRAY_GROW(p->watchers, p->watchers_cap, p->nwatchers + 1) != 0)
		return -ENOMEM;
	rpc_call_ref(call);
	p->watchers[p->nwatchers++] = call;
	return 0;
}

void
program_unwatch(struct program *p, struct rpc_call *call)
{
	size_t i;

	for (i = 0; i < p->nwatchers; i++) {
		if (p->watchers[i] == call) {
			p->watchers[i] = p->watchers[--p->nwatchers];
			rpc_call_unref(call);
			return;
		}
	}
}

size_t
program_fmt_key(char *buf, size_t len, const char *id, uint32_t u, unsigned width)
{
	char digits[10];
	size_t idlen = strlen(id), nd = 0, pad, at;
	uint32_t v = u;

	do
		digits[nd++] = (char)('0' + v % 10);
	while ((v /= 10) != 0);
	pad = width > nd ? width - nd : 0;
	if (idlen + 1 + pad + nd >= len) {
		/* Does not fit: snprintf's truncation (rare; ids and keys are short). */
		int r = snprintf(buf, len, "%s/%0*u", id, (int)width, (unsigned)u);
		return r < 0 ? 0 : (size_t)r;
	}
	memcpy(buf, id, idlen);
	buf[idlen] = '/';
	memset(buf + idlen + 1, '0', pad);
	for (at = idlen + 1 + pad; nd > 0; at++)
		buf[at] = digits[--nd];
	buf[at] = '\0';
	return at;
}

void
program_chain_key(const struct program *p, uint32_t i, char *buf, size_t len)
{
	program_fmt_key(buf, len, p->id, i, 4);
}

/* program_pb_fill's and program_chain_pb_fill's blocks: each array keeps the next aligned. */
_Static_assert(sizeof(Certa__V1__RequestProgress) % 8 == 0 &&
    sizeof(Certa__V1__CertaintyFeatures) % 8 == 0 && sizeof(Certa__V1__StepStats) % 8 == 0 &&
    sizeof(Certa__V1__ProbePoint) % 8 == 0, "a message struct is not a multiple of 8 bytes");

void *
program_zalloc(struct pbarena *a, size_t n)
{
	if (n == 0)
		n = 1;
	return a != NULL ? pbarena_zalloc(a, n) : calloc(1, n);
}

int
program_pb_fill(const struct program *p, struct program_pb *pb)
{
	return program_pb_fill_in(p, pb, NULL);
}

int
program_pb_fill_in(const struct program *p, struct program_pb *pb, struct pbarena *a)
{
	uint32_t i;

	memset(pb, 0, sizeof *pb);
	pb->arena = a;
	certa__v1__program__init(&pb->msg);
	certa__v1__program_spec__init(&pb->spec);
	certa__v1__sampling_params__init(&pb->sampling);
	certa__v1__program_result__init(&pb->result);
	{
		/* The four per-chain arrays in one block (each part's size keeps the next one's
		 * alignment: every message struct starts with pointers); program_pb_free frees
		 * it through reqs. */
		size_t n = p->n ? p->n : 1;
		char *at = program_zalloc(a, n * (sizeof *pb->reqs + sizeof *pb->req_ptrs +
		    sizeof *pb->feats + sizeof *pb->stats));
		if (at == NULL)
			return -ENOMEM;
		pb->reqs = (Certa__V1__RequestProgress *)(void *)at;
		at += n * sizeof *pb->reqs;
		pb->feats = (Certa__V1__CertaintyFeatures *)(void *)at;
		at += n * sizeof *pb->feats;
		pb->stats = (Certa__V1__StepStats *)(void *)at;
		at += n * sizeof *pb->stats;
		pb->req_ptrs = (Certa__V1__RequestProgress **)(void *)at;
	}
	pb->spec.problem = p->problem;
	pb->spec.algorithm = (Certa__V1__Algorithm)p->algo;
	pb->spec.n = p->n;
	pb->spec.token_budget = p->budget;
	pb->spec.priority = (Certa__V1__Priority)p->priority;
	pb->spec.deadline_unix_ms = p->deadline_ms;
	pb->spec.model = p->model;
	pb->spec.idempotency_key = p->idempotency_key;
	pb->spec.policy = (char *)"";
	pb->spec.moe_top_p = p->moe_top_p;
	pb->spec.seed = p->seed;
	pb->sampling.temperature = p->temperature;
	pb->sampling.top_p = p->top_p;
	pb->spec.sampling = &pb->sampling;

	pb->msg.id = p->id;
	pb->msg.tenant = p->tenant;
	pb->msg.spec = &pb->spec;
	pb->msg.state = (Certa__V1__ProgramState)p->state;
	pb->msg.created_unix_ms = p->created_ms;
	pb->msg.updated_unix_ms = p->updated_ms;
	pb->msg.certaindex = p->certaindex;
	pb->msg.tokens_used = program_tokens(p);
	for (i = 0; i < p->n; i++) {
		const struct chain *c = &p->chains[i];
		Certa__V1__RequestProgress *r = &pb->reqs[i];
		certa__v1__request_progress__init(r);
		certa__v1__certainty_features__init(&pb->feats[i]);
		r->index = c->index;
		r->tokens = c->tokens;
		r->answer = (char *)(c->finished && c->final_answer ? c->final_answer :
		    (c->answer ? c->answer : ""));
		r->finished = c->finished;
		r->worker = p->worker != NULL ? p->worker : (char *)"";
		/* Each chain's own end: the model ended it, or the program stopped it (certain,
		 * budget, deadline, cancelled, failed...); UNSPECIFIED while it runs. */
		r->reason = c->finished ? CERTA__V1__FINISH_REASON__FINISH_REASON_NATURAL_END :
		    program_is_terminal(p) ? (Certa__V1__FinishReason)p->reason :
		    CERTA__V1__FINISH_REASON__FINISH_REASON_UNSPECIFIED;
		/* The chain's own features; the program's when none was computed since load.
		 * agreement and entropy are the program's (they are about all chains). */
		{
			/* a staged sc chain not launched has none: zeros */
			static const struct sched_features none;
			const struct sched_features *f = i >= program_launched(p) ? &none :
			    c->has_features ? &c->features : &p->features;
			pb->feats[i].certaindex = f->certaindex;
			pb->feats[i].stable_tokens = f->stable_tokens;
			pb->feats[i].grounded = f->grounded;
			pb->feats[i].hesitation = f->hesitation;
			pb->feats[i].valid_answer = f->valid_answer;
			pb->feats[i].position = f->position;
		}
		pb->feats[i].agreement = p->features.agreement;
		pb->feats[i].entropy = p->features.entropy;
		pb->feats[i].thinking_done = c->thinking_done;
		pb->feats[i].probe_confidence = c->nprobes > 0 ?
		    c->probes[c->nprobes - 1].confidence : -1;
		r->certainty = &pb->feats[i];
		certa__v1__step_stats__init(&pb->stats[i]);
		pb->stats[i].probe_mean_prob = pb->stats[i].probe_min_prob = -1;
		pb->stats[i].chain_mean_entropy = pb->stats[i].experts_per_token = -1;
		if (c->nprobes > 0) {
			const struct probe_point *pp = &c->probes[c->nprobes - 1];
			pb->stats[i].probe_mean_prob = pp->confidence;
			pb->stats[i].probe_min_prob = pp->min_prob;
			pb->stats[i].chain_mean_entropy = pp->entropy;
			pb->stats[i].experts_per_token = pp->experts;
		}
		r->last_step = &pb->stats[i];
		r->pending = i >= program_launched(p);
		pb->req_ptrs[i] = r;
	}
	pb->msg.n_requests = p->n;
	pb->msg.requests = pb->req_ptrs;
	if (p->nrouting > 0) {
		size_t k;
		pb->route = program_zalloc(a, p->nrouting * sizeof *pb->route);
		pb->route_ptrs = program_zalloc(a, p->nrouting * sizeof *pb->route_ptrs);
		if (pb->route == NULL || pb->route_ptrs == NULL) {
			program_pb_free(pb);
			return -ENOMEM;
		}
		for (k = 0; k < p->nrouting; k++) {
			const struct program_route_event *e = &p->routing[k];
			Certa__V1__RoutingEvent *m = &pb->route[k];
			certa__v1__routing_event__init(m);
			m->unix_ms = e->unix_ms;
			m->action = (char *)e->action;
			m->rung = e->rung;
			m->pool = (char *)e->pool;
			m->model = (char *)e->model;
			m->algorithm = (Certa__V1__Algorithm)e->algo;
			m->n = e->n;
			m->tokens = e->tokens;
			m->reason = (char *)e->reason;
			pb->route_ptrs[k] = m;
		}
		pb->msg.n_routing = p->nrouting;
		pb->msg.routing = pb->route_ptrs;
	}
	if (program_is_terminal(p)) {
		pb->result.answer = p->answer != NULL ? p->answer : (char *)"";
		pb->result.reason = (Certa__V1__FinishReason)p->reason;
		pb->result.tokens_used = program_tokens(p);
		pb->result.probe_tokens = program_probe_tokens(p);
		pb->result.certaindex = p->certaindex;
		pb->result.low_confidence = p->low_confidence;
		pb->result.error_message = p->error_message != NULL ? p->error_message : (char *)"";
		pb->result.finished_unix_ms = p->finished_ms;
		pb->msg.result = &pb->result;
	}
	return 0;
}

void
program_pb_free(struct program_pb *pb)
{
	if (pb->arena == NULL) {
		free(pb->reqs);   /* with req_ptrs, feats and stats (program_pb_fill) */
		free(pb->route);
		free(pb->route_ptrs);
	}
	pb->stats = NULL;
	pb->route = NULL;
	pb->route_ptrs = NULL;
	pb->reqs = NULL;
	pb->req_ptrs = NULL;
	pb->feats = NULL;
}

int
program_chain_pb_fill(const struct program *p, const struct chain *c, struct chain_pb *pb)
{
	return program_chain_pb_fill_in(p, c, pb, NULL, 0);
}

int
program_chain_pb_fill_in(const struct program *p, const struct chain *c, struct chain_pb *pb,
    struct pbarena *a, size_t from)
{
	size_t i;

	memset(pb, 0, sizeof *pb);
	pb->arena = a;
	if (from > c->nprobes)
		from = c->nprobes;
	certa__v1__request_record__init(&pb->msg);
	pb->msg.program_id = p->id;
	pb->msg.index = c->index;
	pb->msg.text = c->text != NULL ? c->text : (char *)"";
	pb->msg.tokens = c->tokens;
	pb->msg.answer = c->answer != NULL ? c->answer : (char *)"";
	pb->msg.finished = c->finished;
	pb->msg.final_answer = c->final_answer != NULL ? c->final_answer : (char *)"";
	pb->msg.worker = p->worker != NULL ? p->worker : (char *)"";
	pb->msg.probe_tokens = c->probe_tokens;
	pb->msg.thinking_done = c->thinking_done;
	if (c->nprobes > from) {
		/* Both arrays in one block, freed through probes: the messages of the points
		 * from `from` on, then a pointer for every point (NULL before from). */
		size_t m = c->nprobes - from;
		pb->probes = program_zalloc(a, m * sizeof *pb->probes +
		    c->nprobes * sizeof *pb->probe_ptrs);
		if (pb->probes == NULL)
			return -ENOMEM;
		pb->probe_ptrs = (Certa__V1__ProbePoint **)(void *)(pb->probes + m);
		for (i = from; i < c->nprobes; i++) {
			Certa__V1__ProbePoint *pp = &pb->probes[i - from];
			certa__v1__probe_point__init(pp);
			pp->position = c->probes[i].position;
			pp->answer = c->probes[i].answer;
			pp->certaindex = c->probes[i].certaindex;
			pp->confidence = c->probes[i].confidence;
			pp->min_prob = c->probes[i].min_prob;
			pp->chain_entropy = c->probes[i].entropy;
			pp->experts_per_token = c->probes[i].experts;
			pp->stats = true;
			pb->probe_ptrs[i] = pp;
		}
		pb->msg.n_probes = c->nprobes - from;
		pb->msg.probes = pb->probe_ptrs + from;
	}
	return 0;
}

void
program_chain_pb_free(struct chain_pb *pb)
{
	if (pb->arena == NULL)
		free(pb->probes);   /* with probe_ptrs */
	pb->probes = NULL;
	pb->probe_ptrs = NULL;
}

/* Restores one chain from its record. */
static int
program_chain_restore(struct chain *c, const Certa__V1__RequestRecord *r)
{
	size_t i;

	if (program_chain_append(c, r->text, r->tokens, r->answer, 0, NULL, false, NULL,
	    r->thinking_done) != 0)
		return -ENOMEM;
	/* program_chain_append added one probe point; replace with the recorded ones. */
	free(c->probes[0].answer);
	c->nprobes = 0;
	for (i = 0; i < r->n_probes; i++) {
		if (ARRAY_GROW(c->probes, c->probes_cap, c->nprobes + 1) != 0)
			return -ENOMEM;
		c->probes[c->nprobes].position = r->probes[i]->position;
		c->probes[c->nprobes].certaindex = r->probes[i]->certaindex;
		c->probes[c->nprobes].confidence = r->probes[i]->confidence;
		/* A record from before the statistics: unknown, not 0. */
		c->probes[c->nprobes].min_prob = r->probes[i]->stats ? r->probes[i]->min_prob : -1;
		c->probes[c->nprobes].entropy = r->probes[i]->stats ?
		    r->probes[i]->chain_entropy : -1;
		c->probes[c->nprobes].experts = r->probes[i]->stats ?
		    r->probes[i]->experts_per_token : -1;
		c->probes[c->nprobes].answer = strdup(r->probes[i]->answer);
		if (c->probes[c->nprobes].answer == NULL)
			return -ENOMEM;
		c->nprobes++;
	}
	c->probe_tokens = r->probe_tokens;
	if (r->finished) {
		c->finished = true;
		if (program_set_str(&c->final_answer, r->final_answer) != 0)
			return -ENOMEM;
	}
	c->dirty = false;
	return 0;
}

int
program_copy_chains(struct program *dst, const struct program *src)
{
	struct chain_pb pb;
	uint32_t i;
	int rc;

	if (dst->n != src->n)
		return CERTA_EINVAL;
	for (i = 0; i < src->n; i++) {
		if (dst->chains[i].text != NULL)
			return CERTA_EINVAL;
		rc = program_chain_pb_fill(src, &src->chains[i], &pb);
		if (rc != 0)
			return rc;
		rc = program_chain_restore(&dst->chains[i], &pb.msg);
		program_chain_pb_free(&pb);
		if (rc != 0)
			return rc;
		dst->chains[i].dirty = true;
	}
	return 0;
}

struct program *
program_from_records(const Certa__V1__ProgramRecord *rec, Certa__V1__RequestRecord *const *reqs,
    size_t nreqs)
{
	const Certa__V1__Program *pm = rec->program;
	const Certa__V1__ProgramSpec *sp;
	struct program *p;
	size_t i;

	if (pm == NULL || pm->spec == NULL || pm->spec->n == 0)
		return NULL;
	sp = pm->spec;
	p = program_new(pm->id, pm->tenant, sp->problem, (enum sched_algo)sp->algorithm, sp->n,
	    sp->token_budget);
	if (p == NULL)
		return NULL;
	if (program_set_str(&p->model, sp->model) != 0 ||
	    program_set_str(&p->idempotency_key, sp->idempotency_key) != 0)
		goto fail;
	p->priority = sp->priority;
	p->deadline_ms = sp->deadline_unix_ms;
	p->moe_top_p = sp->moe_top_p;
	p->seed = sp->seed;
	if (sp->sampling != NULL) {
		p->temperature = sp->sampling->temperature;
		p->top_p = sp->sampling->top_p;
	}
	p->created_ms = pm->created_unix_ms;
	p->updated_ms = pm->updated_unix_ms;
	p->state = (enum program_state)pm->state;
	p->certaindex = pm->certaindex;
	p->steps = rec->step_count;
	p->tenant_uid = rec->tenant_uid;
	if (rec->shadow_of != NULL && rec->shadow_of[0] != '\0') {
		if (program_set_str(&p->shadow_of, rec->shadow_of) != 0 ||
		    program_set_str(&p->shadow_answer, rec->shadow_answer) != 0)
			goto fail;
		p->shadow_base_tokens = rec->shadow_base_tokens;
	}
	if (pm->result != NULL) {
		if (program_set_str(&p->answer, pm->result->answer) != 0 ||
		    program_set_str(&p->error_message, pm->result->error_message) != 0)
			goto fail;
		p->reason = (enum sched_reason)pm->result->reason;
		p->low_confidence = pm->result->low_confidence;
		p->finished_ms = pm->result->finished_unix_ms;
	}
	p->routed = rec->routed;
	p->rstate.state = rec->route_state < ROUTER_ES_COUNT ?
	    (enum router_estate)rec->route_state : ROUTER_ES_DONE;
	p->rstate.rung = rec->route_rung;
	p->rstate.escalations = rec->route_escalations;
	p->rstate.base = rec->route_base;
	p->rstate.top_p = p->moe_top_p;
	p->spent_tokens = rec->spent_tokens;
	p->spent_probe_tokens = rec->spent_probe_tokens;
	for (i = 0; i < pm->n_routing; i++) {
		const Certa__V1__RoutingEvent *m = pm->routing[i];
		struct program_route_event e;
		memset(&e, 0, sizeof e);
		e.unix_ms = m->unix_ms;
		snprintf(e.action, sizeof e.action, "%s", m->action);
		e.rung = m->rung;
		snprintf(e.pool, sizeof e.pool, "%s", m->pool);
		snprintf(e.model, sizeof e.model, "%s", m->model);
		e.algo = (enum sched_algo)m->algorithm;
		e.n = m->n;
		e.tokens = m->tokens;
		snprintf(e.reason, sizeof e.reason, "%s", m->reason);
		if (program_route_note(p, &e) != 0)
			goto fail;
	}
	for (i = 0; i < nreqs; i++) {
		if (reqs[i] == NULL)
			continue;
		if (reqs[i]->index >= p->n && p->routed)
			continue;   /* left behind by a routing switch or drop */
		if (reqs[i]->index >= p->n)
			goto fail;
		/* Two records for one chain: restoring the second on top of the first would append
		 * its text to the first's and leak its probes. */
		if (p->chains[reqs[i]->index].text != NULL)
			goto fail;
		if (program_chain_restore(&p->chains[reqs[i]->index], reqs[i]) != 0)
			goto fail;
	}
	/* Staged sc: a chain past the launched ones that has tokens was launched (a record
	 * from before the program record caught up cannot hide it). */
	if (rec->staged_launched > 0 && p->algo == SCHED_ALGO_SC && !p->routed) {
		p->launched = rec->staged_launched < p->n ? rec->staged_launched : p->n;
		for (i = p->launched; i < p->n; i++)
			if (p->chains[i].tokens > 0)
				p->launched = (uint32_t)i + 1;
	}
	return p;
fail:
	program_free(p);
	return NULL;
}
