/* output.c — certactl's text and JSON output; see output.h. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/names.h"
#include "cli/output.h"
#include "lib/jsonw.h"

struct output {
	int json;
	struct jsonw *w;
};

/* Widest cell of the list table's ID and ANSWER columns; longer values end in "...". */
#define OUTPUT_ID_COLS 40
#define OUTPUT_ANSWER_COLS 32
/* Widest answer inside a progress line. */
#define OUTPUT_PROGRESS_ANSWER_COLS 40

int
output_new(int json, struct output **out)
{
	struct output *o = calloc(1, sizeof *o);

	if (o == NULL)
		return -ENOMEM;
	o->json = json;
	if (json && jsonw_new(&o->w) != 0) {
		free(o);
		return -ENOMEM;
	}
	*out = o;
	return 0;
}

void
output_free(struct output *o)
{
	if (o == NULL)
		return;
	jsonw_free(o->w);
	free(o);
}

/* Accessors for the admin printers. */
int
output_is_json(const struct output *o)
{
	return o->json;
}

/* NULL for a text printer. */
struct jsonw *
output_jsonw(struct output *o)
{
	return o->w;
}

/* --- terminal-safe text ------------------------------------------------------------------- */

/*
 * Writes s to f (f == NULL: only measures) with control characters, C1 controls and invalid
 * UTF-8 escaped, stopping before the unit that would exceed maxcols columns (0: no limit).
 * Returns the columns written (one per code point; wide characters are not accounted for).
 */
static size_t
output_text_raw(FILE *f, const char *str, size_t maxcols)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t n = strlen(str), i = 0, cols = 0, ulen, ucols;
	char esc[8];
	unsigned cp;

	while (i < n) {
		esc[0] = '\0';
		ucols = 0;
		if (s[i] >= 0x20 && s[i] < 0x7f) {
			ulen = 1;
			ucols = 1;
		} else if (s[i] == '\n' || s[i] == '\t' || s[i] == '\r') {
			snprintf(esc, sizeof esc, "\\%c", s[i] == '\n' ? 'n' : s[i] == '\t' ? 't' : 'r');
			ulen = 1;
		} else if (s[i] < 0x80) {
			snprintf(esc, sizeof esc, "\\x%02x", s[i]);
			ulen = 1;
		} else if ((ulen = jsonw_utf8(s + i, n - i, &cp)) == 0) {
			snprintf(esc, sizeof esc, "\\x%02x", s[i]);
			ulen = 1;
		} else if (cp < 0xa0) {
			snprintf(esc, sizeof esc, "\\u%04x", cp);
		} else {
			ucols = 1;
		}
		if (esc[0] != '\0')
			ucols = strlen(esc);
		if (maxcols > 0 && cols + ucols > maxcols)
			break;
		if (f != NULL) {
			if (esc[0] != '\0')
				fputs(esc, f);
			else
				fwrite(s + i, 1, ulen, f);
		}
		cols += ucols;
		i += ulen;
	}
	return cols;
}

/* Columns s takes when written by output_text(.., 0). */
size_t
output_text_cols(const char *s)
{
	return output_text_raw(NULL, s, 0);
}

/* Writes s, shortened to at most maxcols columns with a trailing "..." (0: whole).  An empty
 * string is written as "-".  Returns the columns written. */
size_t
output_text(FILE *f, const char *s, size_t maxcols)
{
	size_t cols;

	if (s == NULL || *s == '\0') {
		fputc('-', f);
		return 1;
	}
	if (maxcols == 0 || output_text_cols(s) <= maxcols)
		return output_text_raw(f, s, 0);
	if (maxcols <= 3)
		maxcols = 4;
	cols = output_text_raw(f, s, maxcols - 3);
	fputs("...", f);
	return cols + 3;
}

/* Same as output_text, in double quotes; empty answers print as "-" without quotes. */
static void
output_quoted(FILE *f, const char *s, size_t maxcols)
{
	if (s == NULL || *s == '\0') {
		fputc('-', f);
		return;
	}
	fputc('"', f);
	output_text(f, s, maxcols);
	fputc('"', f);
}

/* Pads a cell of `used` columns to `width`. */
static void
output_pad(FILE *f, size_t used, size_t width)
{
	for (; used < width; used++)
		fputc(' ', f);
}

/* "2024-05-01T12:00:00Z" (UTC) into buf, or "-" for 0. */
const char *
output_time(char *buf, size_t len, int64_t unix_ms)
{
	time_t t;
	struct tm tm;

	if (unix_ms <= 0)
		return "-";
	t = (time_t)(unix_ms / 1000);
	if (gmtime_r(&t, &tm) == NULL || strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		return "-";
	return buf;
}

/* CLOCK_REALTIME: the server's timestamps are wall-clock times too. */
int64_t
output_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* For names_*() results, which are NULL for values newer than this build. */
const char *
output_or_dash(const char *s)
{
	return s != NULL ? s : "-";
}

/* Labels are plain ASCII literals, so printf's padding is the column count. */
void
output_label(const char *label, int width)
{
	printf("%-*s", width, label);
}

/* --- text ------------------------------------------------------------------------------- */

/* `"36" (1280 tok, done: certain)` */
static void
output_request_text(FILE *f, const Certa__V1__RequestProgress *r)
{
	const char *reason = names_reason(r->reason);

	fprintf(f, "#%" PRIu32 " ", r->index);
	output_quoted(f, r->answer, OUTPUT_PROGRESS_ANSWER_COLS);
	fprintf(f, " (%" PRIu64 " tok", r->tokens);
	if (r->finished)
		fprintf(f, reason != NULL ? ", done: %s" : ", done", reason);
	else if (r->pending)
		fputs(", pending", f);   /* staged sc: not launched */
	fputc(')', f);
}

static void
output_requests_text(FILE *f, size_t n, Certa__V1__RequestProgress *const *rs)
{
	size_t i;

	if (n == 0)
		return;
	fputs(" answers:", f);
	for (i = 0; i < n; i++) {
		fputc(' ', f);
		output_request_text(f, rs[i]);
	}
}

/* `answer: 36  reason: certain  tokens: 2900  certaindex: 0.93  low confidence` */
static void
output_result_text(FILE *f, const Certa__V1__ProgramResult *res)
{
	fputs("answer: ", f);
	output_text(f, res->answer, 0);
	fprintf(f, "  reason: %s  tokens: %" PRIu64 "  certaindex: %.2f",
	    output_or_dash(names_reason(res->reason)), res->tokens_used, res->certaindex);
	if (res->low_confidence)
		fputs("  low confidence", f);
	if (res->error_message != NULL && *res->error_message) {
		fputs("  error: ", f);
		output_text(f, res->error_message, 0);
	}
	fputc('\n', f);
}

static const Certa__V1__ProgramResult output_no_result = CERTA__V1__PROGRAM_RESULT__INIT;

static void
output_event_text(const Certa__V1__ProgramEvent *ev)
{
	const Certa__V1__Progress *p;

	switch (ev->event_case) {
	case CERTA__V1__PROGRAM_EVENT__EVENT_ACCEPTED:
		fputs("accepted: ", stdout);
		output_text(stdout, ev->accepted->program_id, 0);
		if (ev->accepted->duplicate)
			fputs("  (duplicate: an earlier submission with the same idempotency key)",
			    stdout);
		fputc('\n', stdout);
		break;
	case CERTA__V1__PROGRAM_EVENT__EVENT_PROGRESS:
		p = ev->progress;
		fputc('[', stdout);
		output_text(stdout, p->program_id, 0);
		fprintf(stdout, "] tokens=%" PRIu64 " certaindex=%.2f", p->tokens_used,
		    p->certaindex);
		output_requests_text(stdout, p->n_requests, p->requests);
		fputc('\n', stdout);
		break;
	case CERTA__V1__PROGRAM_EVENT__EVENT_FINISHED:
		output_result_text(stdout, ev->finished->result != NULL ? ev->finished->result :
		    &output_no_result);
		break;
	default:
		break;  /* an event kind newer than this certactl */
	}
}

/* Width of the labels of `certactl get` (`label:      value` lines). */
#define OUTPUT_LABEL_COLS 14

static void
output_program_text(const Certa__V1__Program *p)
{
	const Certa__V1__ProgramSpec *spec = p->spec;
	char tbuf[32];
	size_t i;

	output_label("program:", OUTPUT_LABEL_COLS);
	output_text(stdout, p->id, 0);
	fputc('\n', stdout);
	output_label("tenant:", OUTPUT_LABEL_COLS);
	output_text(stdout, p->tenant, 0);
	fputc('\n', stdout);
	output_label("state:", OUTPUT_LABEL_COLS);
	printf("%s\n", output_or_dash(names_state(p->state)));
	output_label("created:", OUTPUT_LABEL_COLS);
	printf("%s\n", output_time(tbuf, sizeof tbuf, p->created_unix_ms));
	output_label("updated:", OUTPUT_LABEL_COLS);
	printf("%s\n", output_time(tbuf, sizeof tbuf, p->updated_unix_ms));
	if (spec != NULL) {
		output_label("problem:", OUTPUT_LABEL_COLS);
		output_text(stdout, spec->problem, 0);
		fputc('\n', stdout);
		output_label("algorithm:", OUTPUT_LABEL_COLS);
		printf("%s", names_algorithm(spec->algorithm) != NULL ?
		    names_algorithm(spec->algorithm) : "default");
		if (spec->n > 0)
			printf("  n=%" PRIu32, spec->n);
		fputc('\n', stdout);
		output_label("budget:", OUTPUT_LABEL_COLS);
		if (spec->token_budget > 0)
			printf("%" PRIu64 " tokens\n", spec->token_budget);
		else
			printf("default\n");
		output_label("priority:", OUTPUT_LABEL_COLS);
		printf("%s\n", names_priority(spec->priority) != NULL ?
		    names_priority(spec->priority) : "normal");
		output_label("deadline:", OUTPUT_LABEL_COLS);
		printf("%s\n", output_time(tbuf, sizeof tbuf, spec->deadline_unix_ms));
		if (spec->model != NULL && *spec->model) {
			output_label("model:", OUTPUT_LABEL_COLS);
			output_text(stdout, spec->model, 0);
			fputc('\n', stdout);
		}
		if (spec->policy != NULL && *spec->policy) {
			output_label("policy:", OUTPUT_LABEL_COLS);
			output_text(stdout, spec->policy, 0);
			fputc('\n', stdout);
		}
		if (spec->idempotency_key != NULL && *spec->idempotency_key) {
			output_label("key:", OUTPUT_LABEL_COLS);
			output_text(stdout, spec->idempotency_key, 0);
			fputc('\n', stdout);
		}
	}
	output_label("tokens:", OUTPUT_LABEL_COLS);
	printf("%" PRIu64 "\n", p->tokens_used);
	output_label("certaindex:", OUTPUT_LABEL_COLS);
	printf("%.2f\n", p->certaindex);
	if (p->n_requests > 0) {
		printf("requests:\n");
		for (i = 0; i < p->n_requests; i++) {
			const Certa__V1__RequestProgress *r = p->requests[i];

			fputs("  ", stdout);
			output_request_text(stdout, r);
			if (r->worker != NULL && *r->worker) {
				fputs(" worker=", stdout);
				output_text(stdout, r->worker, 0);
			}
			if (r->certainty != NULL && !r->pending)   /* a pending chain has none */
				printf(" certaindex=%.2f", r->certainty->certaindex);
			fputc('\n', stdout);
		}
	}
	if (p->result != NULL) {
		output_label("result:", OUTPUT_LABEL_COLS);
		output_result_text(stdout, p->result);
		output_label("probe tokens:", OUTPUT_LABEL_COLS);
		printf("%" PRIu64 "\n", p->result->probe_tokens);
		output_label("finished:", OUTPUT_LABEL_COLS);
		printf("%s\n", output_time(tbuf, sizeof tbuf, p->result->finished_unix_ms));
	}
	if (p->n_routing > 0) {
		const Certa__V1__RoutingEvent *e = p->routing[p->n_routing - 1];
		output_label("routing:", OUTPUT_LABEL_COLS);
		printf("%zu decision%s, last: %s to rung %" PRIu32 " (", p->n_routing,
		    p->n_routing == 1 ? "" : "s", e->action, e->rung);
		output_text(stdout, e->pool, 0);
		printf(")  (certactl get --explain %s)\n", p->id);
	}
}

/* `certactl get --explain`: every routing decision with its reason. */
static void
output_routing_text(const Certa__V1__Program *p)
{
	char tbuf[32];
	size_t i;

	if (p->n_routing == 0) {
		printf("routing: none (routing is off, or the program named a model outside the "
		    "routing pools)\n");
		return;
	}
	printf("routing:\n");
	for (i = 0; i < p->n_routing; i++) {
		const Certa__V1__RoutingEvent *e = p->routing[i];
		printf("  %s  %-6s rung %" PRIu32 " ", output_time(tbuf, sizeof tbuf, e->unix_ms),
		    e->action, e->rung);
		output_text(stdout, e->pool, 0);
		fputs(" (", stdout);
		output_text(stdout, e->model, 0);
		printf(") %s n=%" PRIu32 " at %" PRIu64 " tokens\n    ",
		    output_or_dash(names_algorithm(e->algorithm)), e->n, e->tokens);
		output_text(stdout, e->reason, 0);
		fputc('\n', stdout);
	}
}

/* --- JSON ------------------------------------------------------------------------------- */

/* Writes the finished document as one line on stdout and resets the writer. */
int
output_json_line(struct output *o)
{
	size_t len;
	const char *s = jsonw_data(o->w, &len);
	int rc = jsonw_error(o->w);

	if (s == NULL) {
		fprintf(stderr, "certactl: cannot format JSON output: %s\n",
		    rc == -ENOMEM ? "out of memory" : "internal error");
		jsonw_reset(o->w);
		return rc != 0 ? rc : -EINVAL;
	}
	fwrite(s, 1, len, stdout);
	fputc('\n', stdout);
	jsonw_reset(o->w);
	return 0;
}

static void
output_json_certainty(struct jsonw *w, const Certa__V1__CertaintyFeatures *c)
{
	if (c == NULL) {
		jsonw_null(w);
		return;
	}
	jsonw_object_begin(w);
	jsonw_kdouble(w, "certaindex", c->certaindex);
	jsonw_kuint(w, "stable_tokens", c->stable_tokens);
	jsonw_kbool(w, "grounded", c->grounded);
	jsonw_kbool(w, "hesitation", c->hesitation);
	jsonw_kbool(w, "valid_answer", c->valid_answer);
	jsonw_kdouble(w, "agreement", c->agreement);
	jsonw_kdouble(w, "entropy", c->entropy);
	jsonw_kdouble(w, "position", c->position);
	jsonw_kdouble(w, "probe_confidence", c->probe_confidence);
	jsonw_kbool(w, "thinking_done", c->thinking_done);
	jsonw_object_end(w);
}

/* {"probe_mean_prob":0.8,"probe_min_prob":0.4,"chain_mean_entropy":1.2,"experts_per_token":0}
 * (-1: unknown), or null */
static void
output_json_step_stats(struct jsonw *w, const Certa__V1__StepStats *s)
{
	if (s == NULL) {
		jsonw_null(w);
		return;
	}
	jsonw_object_begin(w);
	jsonw_kdouble(w, "probe_mean_prob", s->probe_mean_prob);
	jsonw_kdouble(w, "probe_min_prob", s->probe_min_prob);
	jsonw_kdouble(w, "chain_mean_entropy", s->chain_mean_entropy);
	jsonw_kdouble(w, "experts_per_token", s->experts_per_token);
	jsonw_object_end(w);
}

/* "requests":[{"index":0,"tokens":1280,"answer":"36","finished":false,"reason":null,...}] */
static void
output_json_requests(struct jsonw *w, size_t n, Certa__V1__RequestProgress *const *rs)
{
	size_t i;

	jsonw_key(w, "requests");
	jsonw_array_begin(w);
	for (i = 0; i < n; i++) {
		const Certa__V1__RequestProgress *r = rs[i];

		jsonw_object_begin(w);
		jsonw_kuint(w, "index", r->index);
		jsonw_kuint(w, "tokens", r->tokens);
		jsonw_kstring(w, "answer", r->answer);
		jsonw_kbool(w, "finished", r->finished);
		jsonw_kbool(w, "pending", r->pending);
		jsonw_kstring(w, "reason", names_reason(r->reason));
		jsonw_kstring(w, "worker", r->worker);
		jsonw_key(w, "certainty");
		output_json_certainty(w, r->certainty);
		jsonw_key(w, "last_step");
		output_json_step_stats(w, r->last_step);
		jsonw_object_end(w);
	}
	jsonw_array_end(w);
}

/* The members of a ProgramResult, written into the current object. */
static void
output_json_result_members(struct jsonw *w, const Certa__V1__ProgramResult *res)
{
	jsonw_kstring(w, "answer", res->answer);
	jsonw_kstring(w, "reason", names_reason(res->reason));
	jsonw_kuint(w, "tokens_used", res->tokens_used);
	jsonw_kuint(w, "probe_tokens", res->probe_tokens);
	jsonw_kdouble(w, "certaindex", res->certaindex);
	jsonw_kbool(w, "low_confidence", res->low_confidence);
	jsonw_kstring(w, "error_message", res->error_message);
	jsonw_kint(w, "finished_unix_ms", res->finished_unix_ms);
}

/* The members every event line starts with: "event", "seq", "program_id". */
static void
output_json_event_head(struct jsonw *w, const char *event, uint64_t seq, const char *id)
{
	jsonw_kstring(w, "event", event);
	jsonw_kuint(w, "seq", seq);
	jsonw_kstring(w, "program_id", id);
}

/* Event lines:
 *   {"event":"accepted","seq":1,"program_id":"p-1","accepted_unix_ms":...,"duplicate":false}
 *   {"event":"progress","seq":2,"program_id":"p-1","tokens_used":...,"certaindex":...,
 *    "answer":"36","experts_per_token":0,"requests":[...]}
 *   {"event":"finished","seq":9,"program_id":"p-1","answer":"36","reason":"certain",
 *    "tokens_used":...,"probe_tokens":...,"certaindex":...,"low_confidence":false,
 *    "error_message":"","finished_unix_ms":...,"requests":[...]} */
static int
output_event_json(struct output *o, const Certa__V1__ProgramEvent *ev)
{
	struct jsonw *w = o->w;

	jsonw_object_begin(w);
	switch (ev->event_case) {
	case CERTA__V1__PROGRAM_EVENT__EVENT_ACCEPTED:
		output_json_event_head(w, "accepted", ev->seq, ev->accepted->program_id);
		jsonw_kint(w, "accepted_unix_ms", ev->accepted->accepted_unix_ms);
		jsonw_kbool(w, "duplicate", ev->accepted->duplicate);
		break;
	case CERTA__V1__PROGRAM_EVENT__EVENT_PROGRESS:
		output_json_event_head(w, "progress", ev->seq, ev->progress->program_id);
		jsonw_kuint(w, "tokens_used", ev->progress->tokens_used);
		jsonw_kdouble(w, "certaindex", ev->progress->certaindex);
		jsonw_kstring(w, "answer", ev->progress->answer);
		jsonw_kdouble(w, "experts_per_token", ev->progress->experts_per_token);
		output_json_requests(w, ev->progress->n_requests, ev->progress->requests);
		break;
	case CERTA__V1__PROGRAM_EVENT__EVENT_FINISHED:
		output_json_event_head(w, "finished", ev->seq, ev->finished->program_id);
		output_json_result_members(w, ev->finished->result != NULL ?
		    ev->finished->result : &output_no_result);
		output_json_requests(w, ev->finished->n_requests, ev->finished->requests);
		break;
	default:
		jsonw_reset(w);
		return 0;  /* an event kind newer than this certactl: skip */
	}
	jsonw_object_end(w);
	return output_json_line(o);
}

/* {"program_id":...,"tenant":...,"state":"running","created_unix_ms":...,"updated_unix_ms":...,
 *  "tokens_used":...,"certaindex":...,"spec":{...},"requests":[...],"result":{...}|null} */
static void
output_json_program(struct jsonw *w, const Certa__V1__Program *p)
{
	const Certa__V1__ProgramSpec *spec = p->spec;

	jsonw_object_begin(w);
	jsonw_kstring(w, "program_id", p->id);
	jsonw_kstring(w, "tenant", p->tenant);
	jsonw_kstring(w, "state", names_state(p->state));
	jsonw_kint(w, "created_unix_ms", p->created_unix_ms);
	jsonw_kint(w, "updated_unix_ms", p->updated_unix_ms);
	jsonw_kuint(w, "tokens_used", p->tokens_used);
	jsonw_kdouble(w, "certaindex", p->certaindex);
	jsonw_key(w, "spec");
	if (spec == NULL) {
		jsonw_null(w);
	} else {
		jsonw_object_begin(w);
		jsonw_kstring(w, "problem", spec->problem);
		jsonw_kstring(w, "algorithm", names_algorithm(spec->algorithm));
		jsonw_kuint(w, "n", spec->n);
		jsonw_kuint(w, "token_budget", spec->token_budget);
		jsonw_kstring(w, "priority", names_priority(spec->priority));
		jsonw_kint(w, "deadline_unix_ms", spec->deadline_unix_ms);
		jsonw_kstring(w, "policy", spec->policy);
		jsonw_kstring(w, "idempotency_key", spec->idempotency_key);
		jsonw_kstring(w, "model", spec->model);
		jsonw_kdouble(w, "moe_top_p", spec->moe_top_p);
		jsonw_kuint(w, "seed", spec->seed);
		jsonw_object_end(w);
	}
	output_json_requests(w, p->n_requests, p->requests);
	if (p->n_routing > 0) {
		size_t i;
		jsonw_key(w, "routing");
		jsonw_array_begin(w);
		for (i = 0; i < p->n_routing; i++) {
			const Certa__V1__RoutingEvent *e = p->routing[i];
			jsonw_object_begin(w);
			jsonw_kint(w, "unix_ms", e->unix_ms);
			jsonw_kstring(w, "action", e->action);
			jsonw_kuint(w, "rung", e->rung);
			jsonw_kstring(w, "pool", e->pool);
			jsonw_kstring(w, "model", e->model);
			jsonw_kstring(w, "algorithm", names_algorithm(e->algorithm));
			jsonw_kuint(w, "n", e->n);
			jsonw_kuint(w, "tokens", e->tokens);
			jsonw_kstring(w, "reason", e->reason);
			jsonw_object_end(w);
		}
		jsonw_array_end(w);
	}
	jsonw_key(w, "result");
	if (p->result == NULL) {
		jsonw_null(w);
	} else {
		jsonw_object_begin(w);
		output_json_result_members(w, p->result);
		jsonw_object_end(w);
	}
	jsonw_object_end(w);
}

/* --- entry points ------------------------------------------------------------------------ */

int
output_event(struct output *o, const Certa__V1__ProgramEvent *ev)
{
	int rc = 0;

	if (o->json)
		rc = output_event_json(o, ev);
	else
		output_event_text(ev);
	fflush(stdout);
	return rc;
}

int
output_accepted_id(struct output *o, const Certa__V1__ProgramEvent *ev)
{
	if (ev->event_case != CERTA__V1__PROGRAM_EVENT__EVENT_ACCEPTED)
		return 0;
	if (o->json)
		return output_event(o, ev);
	output_text(stdout, ev->accepted->program_id, 0);
	fputc('\n', stdout);
	fflush(stdout);
	return 0;
}

int
output_program(struct output *o, const Certa__V1__Program *p)
{
	if (!o->json) {
		output_program_text(p);
		return 0;
	}
	output_json_program(o->w, p);
	return output_json_line(o);
}

int
output_program_explain(struct output *o, const Certa__V1__Program *p)
{
	if (!o->json) {
		output_program_text(p);
		output_routing_text(p);
		return 0;
	}
	output_json_program(o->w, p);
	return output_json_line(o);
}

int
output_cancel(struct output *o, const char *program_id, Certa__V1__ProgramState state)
{
	if (!o->json) {
		output_text(stdout, program_id, 0);
		printf(": %s\n", output_or_dash(names_state(state)));
		return 0;
	}
	jsonw_object_begin(o->w);
	jsonw_kstring(o->w, "program_id", program_id);
	jsonw_kstring(o->w, "state", names_state(state));
	jsonw_object_end(o->w);
	return output_json_line(o);
}

/* The ANSWER cell of a list row: the final answer when there is one. */
static const char *
output_list_answer(const Certa__V1__Program *p)
{
	return p->result != NULL ? p->result->answer : NULL;
}

/* Cell widths are measured first so the columns line up whatever the ids look like. */
int
output_list(struct output *o, Certa__V1__Program *const *ps, size_t n)
{
	static const char *const head[] = { "ID", "STATE", "ALGO", "TOKENS", "ANSWER", "CREATED" };
	size_t wid[6], i, c;
	char tbuf[32], num[24];
	int rc;

	if (o->json) {
		for (i = 0; i < n; i++) {
			output_json_program(o->w, ps[i]);
			rc = output_json_line(o);
			if (rc != 0)
				return rc;
		}
		return 0;
	}
	for (c = 0; c < 6; c++)
		wid[c] = strlen(head[c]);
	for (i = 0; i < n; i++) {
		const Certa__V1__Program *p = ps[i];
		size_t w;

		w = *p->id ? output_text_cols(p->id) : 1;
		wid[0] = w > wid[0] ? (w < OUTPUT_ID_COLS ? w : OUTPUT_ID_COLS) : wid[0];
		w = strlen(output_or_dash(names_state(p->state)));
		wid[1] = w > wid[1] ? w : wid[1];
		w = strlen(p->spec != NULL ? output_or_dash(names_algorithm(p->spec->algorithm)) :
		    "-");
		wid[2] = w > wid[2] ? w : wid[2];
		w = (size_t)snprintf(num, sizeof num, "%" PRIu64, p->tokens_used);
		wid[3] = w > wid[3] ? w : wid[3];
		w = output_list_answer(p) != NULL && *output_list_answer(p) ?
		    output_text_cols(output_list_answer(p)) : 1;
		wid[4] = w > wid[4] ? (w < OUTPUT_ANSWER_COLS ? w : OUTPUT_ANSWER_COLS) : wid[4];
	}
	printf("%-*s  %-*s  %-*s  %*s  %-*s  %s\n", (int)wid[0], head[0], (int)wid[1], head[1],
	    (int)wid[2], head[2], (int)wid[3], head[3], (int)wid[4], head[4], head[5]);
	for (i = 0; i < n; i++) {
		const Certa__V1__Program *p = ps[i];

		output_pad(stdout, output_text(stdout, p->id, wid[0]), wid[0]);
		printf("  %-*s  %-*s  %*" PRIu64 "  ", (int)wid[1],
		    output_or_dash(names_state(p->state)), (int)wid[2],
		    p->spec != NULL ? output_or_dash(names_algorithm(p->spec->algorithm)) : "-",
		    (int)wid[3], p->tokens_used);
		output_pad(stdout, output_text(stdout, output_list_answer(p), wid[4]), wid[4]);
		printf("  %s\n", output_time(tbuf, sizeof tbuf, p->created_unix_ms));
	}
	return 0;
}
