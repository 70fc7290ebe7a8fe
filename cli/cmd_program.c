/* cmd_program.c — submit, watch, get, cancel and list; see cmd_program.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "certa/v1/reasoning.pb-c.h"
#include "cli/client.h"
#include "cli/cmd_program.h"
#include "cli/interrupt.h"
#include "cli/names.h"
#include "cli/output.h"
#include "lib/array.h"
#include "lib/error.h"
#include "lib/rpc.h"
#include "lib/rpc_client.h"

/* How long one wait for a stream message lasts, so Ctrl-C is noticed promptly. */
#define CMD_PROGRAM_POLL_MS 200
/* Default number of programs `list` shows; --limit 0 shows all. */
#define CMD_PROGRAM_LIST_DEFAULT 50
/* Largest page the server hands out (ListRequest.page_size). */
#define CMD_PROGRAM_LIST_PAGE_MAX 1000

static int cmd_program_submit(struct cmd_ctx *ctx, const struct cmd_args *args);
static int cmd_program_watch(struct cmd_ctx *ctx, const struct cmd_args *args);
static int cmd_program_get(struct cmd_ctx *ctx, const struct cmd_args *args);
static int cmd_program_cancel(struct cmd_ctx *ctx, const struct cmd_args *args);
static int cmd_program_list(struct cmd_ctx *ctx, const struct cmd_args *args);

static const struct cmd_option cmd_program_submit_options[] = {
	{ "sc", "N", "self-consistency: N chains and a majority vote" },
	{ "cot", NULL, "one chain of thought (default: the tenant policy's algorithm)" },
	{ "budget", "T", "token budget across all chains (default: the policy's)" },
	{ "priority", "P", "low, normal or high (default normal)" },
	{ "deadline", "SECONDS", "stop the program SECONDS from now (reason: deadline)" },
	{ "model", "NAME", "run on a worker serving this model (refused if none does)" },
	{ "policy", "NAME", "per-program policy (this server refuses it: the tenant's policy "
	    "applies)" },
	{ "idempotency-key", "KEY", "resubmitting with the same KEY returns the same program" },
	{ "watch", NULL, "print a progress line after every step" },
	{ "no-watch", NULL, "print only the id and the final result (default)" },
	{ "detach", NULL, "print the id once the program is accepted and exit" },
	{ NULL, NULL, NULL },
};

const struct cmd_entry cmd_program_submit_entry = {
	.name = "submit",
	.usage = "PROBLEM",
	.summary = "submit a problem and wait for its answer",
	.help =
	    "Submits PROBLEM (\"-\": read it from standard input) as a new program, prints its id\n"
	    "once the server has stored it, waits for it to finish and prints the result:\n"
	    "  answer: 36  reason: certain  tokens: 2900  certaindex: 0.93\n"
	    "With --watch a progress line follows every step:\n"
	    "  [ID] tokens=1280 certaindex=0.42 answers: #0 \"36\" (1280 tok) #1 \"27\" (1216 tok, "
	    "done)\n"
	    "With --json every printed event is one JSON line (event: accepted, progress,\n"
	    "finished); progress events are printed with --watch.\n"
	    "Ctrl-C stops following; the program keeps running (certactl watch ID / get ID).\n"
	    "Exit status 4 when the program ends as failed or cancelled.",
	.options = cmd_program_submit_options,
	.min_args = 1,
	.max_args = 1,
	.exec = cmd_program_submit,
};

const struct cmd_entry cmd_program_watch_entry = {
	.name = "watch",
	.usage = "ID",
	.summary = "follow a program's progress until it finishes",
	.help =
	    "Follows program ID like `certactl submit --watch`: a progress line after every step,\n"
	    "then the result.  Ctrl-C stops following; the program keeps running.\n"
	    "Exit status 4 when the program ends as failed or cancelled.",
	.options = NULL,
	.min_args = 1,
	.max_args = 1,
	.exec = cmd_program_watch,
};

static const struct cmd_option cmd_program_get_options[] = {
	{ "explain", NULL, "also every expert routing decision (route, fork, switch, drop, "
	    "raise) with its reason" },
	{ NULL, NULL, NULL },
};

const struct cmd_entry cmd_program_get_entry = {
	.name = "get",
	.usage = "ID",
	.summary = "show a program: state, spec, progress, result",
	.help = "Shows program ID: its state, what was asked, the progress of each chain and,\n"
	    "once it has ended, the result.  With --explain, every routing decision of the\n"
	    "server's expert routing: where the program started and why, and each escalation\n"
	    "(fork to more chains, switch to another pool) with its reason (--json: the\n"
	    "\"routing\" array).",
	.options = cmd_program_get_options,
	.min_args = 1,
	.max_args = 1,
	.exec = cmd_program_get,
};

const struct cmd_entry cmd_program_cancel_entry = {
	.name = "cancel",
	.usage = "ID",
	.summary = "cancel a program",
	.help = "Cancels program ID and prints its state afterwards (a program that has already\n"
	    "finished stays finished).",
	.options = NULL,
	.min_args = 1,
	.max_args = 1,
	.exec = cmd_program_cancel,
};

static const struct cmd_option cmd_program_list_options[] = {
	{ "state", "S", "only programs in state S: queued, running, finished, cancelled, failed" },
	{ "limit", "N", "show at most N programs, newest first (default 50; 0: all)" },
	{ NULL, NULL, NULL },
};

const struct cmd_entry cmd_program_list_entry = {
	.name = "list",
	.usage = "",
	.summary = "list your programs, newest first",
	.help = "Lists the programs of your tenant, newest first, as a table:\n"
	    "  ID  STATE  ALGO  TOKENS  ANSWER  CREATED\n"
	    "or, with --json, one program object per line.",
	.options = cmd_program_list_options,
	.min_args = 0,
	.max_args = 0,
	.exec = cmd_program_list,
};

/* --- following a stream ------------------------------------------------------------------ */

/* What one Submit or Watch stream has told us so far. */
struct cmd_program_follow {
	int watch;                   /* print progress events */
	int detach;                  /* stop after `accepted` */
	char *id;                    /* program id, once known */
	int events;                  /* events received */
	int finished;                /* a `finished` event arrived */
	int exit_code;               /* from the finished event */
};

/* An id is echoed in shell commands only when it cannot surprise a shell or a terminal. */
static int
cmd_program_id_safe(const char *id)
{
	const char *p;

	if (*id == '\0' || strlen(id) > 200)
		return 0;
	for (p = id; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.' || *p == ':'))
			return 0;
	return 1;
}

/* The hint printed when Ctrl-C stops following (also from the signal handler). */
static void
cmd_program_hint(struct cmd_ctx *ctx, const char *id)
{
	char hint[2048], prog[256];
	const char *env = getenv("CERTA_SERVER");

	/* Repeat --server when the address did not come from the defaults. */
	if (strcmp(ctx->server, CLI_DEFAULT_SERVER) != 0 &&
	    (env == NULL || strcmp(env, ctx->server) != 0) && cmd_program_id_safe(ctx->server))
		snprintf(prog, sizeof prog, "certactl --server %s", ctx->server);
	else
		snprintf(prog, sizeof prog, "certactl");
	if (id == NULL)
		snprintf(hint, sizeof hint, "\ncertactl: interrupted before the server confirmed the "
		    "submission; it may still have been accepted (see: %s list)\n", prog);
	else if (!cmd_program_id_safe(id))
		snprintf(hint, sizeof hint, "\ncertactl: interrupted; the program keeps running on "
		    "the server (see: %s list)\n", prog);
	else if (snprintf(hint, sizeof hint, "\ncertactl: interrupted; program %s keeps running "
	    "on the server\n  follow it:   %s watch %s\n  its result:  %s get %s\n"
	    "  stop it:     %s cancel %s\n", id, prog, id, prog, id, prog, id) >= (int)sizeof hint)
		snprintf(hint, sizeof hint, "\ncertactl: interrupted; the program keeps running on "
		    "the server\n");
	interrupt_set_hint(hint);
}

/* Exit status for a program that finished with result res. */
static int
cmd_program_result_exit(const Certa__V1__ProgramResult *res)
{
	if (res == NULL)
		return CLI_EXIT_ERROR;
	switch (res->reason) {
	case CERTA__V1__FINISH_REASON__FINISH_REASON_FAILED:
	case CERTA__V1__FINISH_REASON__FINISH_REASON_CANCELLED:
		return CLI_EXIT_PROGRAM;
	default:
		return CLI_EXIT_OK;
	}
}

/* The program id an event carries ("" when none). */
static const char *
cmd_program_event_id(const Certa__V1__ProgramEvent *ev)
{
	switch (ev->event_case) {
	case CERTA__V1__PROGRAM_EVENT__EVENT_ACCEPTED:
		return ev->accepted->program_id;
	case CERTA__V1__PROGRAM_EVENT__EVENT_PROGRESS:
		return ev->progress->program_id;
	case CERTA__V1__PROGRAM_EVENT__EVENT_FINISHED:
		return ev->finished->program_id;
	default:
		return "";
	}
}

/* Handles one event.  Returns 1 when following is over, 0 to go on, <0 on output failure. */
static int
cmd_program_event(struct cmd_ctx *ctx, struct cmd_program_follow *f, struct output *out,
    const Certa__V1__ProgramEvent *ev)
{
	const char *id = cmd_program_event_id(ev);

	f->events++;
	if (f->id == NULL && *id) {
		f->id = strdup(id);
		if (f->id == NULL) {
			fprintf(stderr, "certactl: out of memory\n");
			return -ENOMEM;
		}
		cmd_program_hint(ctx, f->id);
	}
	switch (ev->event_case) {
	case CERTA__V1__PROGRAM_EVENT__EVENT_ACCEPTED:
		if (f->detach)
			return output_accepted_id(out, ev) < 0 ? -EIO : 1;
		return output_event(out, ev) < 0 ? -EIO : 0;
	case CERTA__V1__PROGRAM_EVENT__EVENT_PROGRESS:
		if (!f->watch)
			return 0;
		return output_event(out, ev) < 0 ? -EIO : 0;
	case CERTA__V1__PROGRAM_EVENT__EVENT_FINISHED:
		f->finished = 1;
		f->exit_code = cmd_program_result_exit(ev->finished->result);
		if (ev->finished->result == NULL)
			fprintf(stderr, "certactl: the server sent no result for the program\n");
		return output_event(out, ev) < 0 ? -EIO : 1;
	default:
		return 0;  /* newer than this certactl */
	}
}

/*
 * Opens svc/method with req and prints its events until the program finishes (or, detached,
 * is accepted), the stream fails, or Ctrl-C.  id is the program id when already known (watch).
 */
static int
cmd_program_follow(struct cmd_ctx *ctx, const char *method, const ProtobufCMessage *req,
    const char *id, int watch, int detach)
{
	struct cmd_program_follow f = { .watch = watch, .detach = detach };
	struct output *out = NULL;
	struct rpc_stream *s = NULL;
	ProtobufCMessage *msg;
	grpc_status_code status;
	char *details = NULL;
	int rc, done = 0, interrupted = 0, err = 0;

	if (output_new(ctx->json, &out) != 0) {
		fprintf(stderr, "certactl: out of memory\n");
		return CLI_EXIT_ERROR;
	}
	if (id != NULL && (f.id = strdup(id)) == NULL) {
		fprintf(stderr, "certactl: out of memory\n");
		rc = CLI_EXIT_ERROR;
		goto out;
	}
	interrupt_arm(NULL);
	cmd_program_hint(ctx, f.id);
	rc = client_stream_open(ctx->client, &certa__v1__reasoning__descriptor, method, req, &s);
	if (rc != CLI_EXIT_OK)
		goto out_disarm;
	interrupt_poll();
	while (!done) {
		if (interrupt_pending()) {
			interrupted = 1;
			break;
		}
		rc = rpc_sync_stream_next(s, CMD_PROGRAM_POLL_MS, &msg);
		if (rc == CERTA_ETIMEOUT)
			continue;
		if (rc <= 0) {
			err = rc;     /* 0: end of stream; the status says why */
			break;
		}
		rc = cmd_program_event(ctx, &f, out,
		    (const Certa__V1__ProgramEvent *)msg);
		protobuf_c_message_free_unpacked(msg, NULL);
		if (rc < 0) {
			err = rc;
			break;
		}
		done = rc;
	}
	status = client_stream_close(s, &details);
	if (interrupted) {
		fputs(interrupt_hint(), stderr);
		rc = CLI_EXIT_INTERRUPTED;
	} else if (f.finished) {
		rc = f.exit_code;
	} else if (done) {
		rc = CLI_EXIT_OK;                       /* detached after `accepted` */
	} else if (err == -EIO || err == -ENOMEM) {
		rc = CLI_EXIT_ERROR;                    /* output failed; already reported */
	} else if (err == CERTA_EDECODE) {
		fprintf(stderr, "certactl: the server sent an event that does not decode\n");
		rc = CLI_EXIT_ERROR;
	} else if (status != GRPC_STATUS_OK) {
		rc = client_report(ctx->client, status, details);
	} else if (err < 0) {
		fprintf(stderr, "certactl: %s\n", certa_strerror(err));
		rc = CLI_EXIT_ERROR;
	} else {
		fprintf(stderr, "certactl: the server ended the stream before the program "
		    "finished\n");
		rc = CLI_EXIT_ERROR;
	}
	/* Lost the stream of a program known to exist (it sent events): say how to pick it up
	 * again. */
	if (!interrupted && !f.finished && !done && f.id != NULL && f.events > 0)
		fprintf(stderr, "certactl: program %s may still be running; follow it with "
		    "`certactl watch %s`\n", cmd_program_id_safe(f.id) ? f.id : "?",
		    cmd_program_id_safe(f.id) ? f.id : "ID");
	free(details);
out_disarm:
	interrupt_disarm();
out:
	free(f.id);
	output_free(out);
	return rc;
}

/* --- submit ------------------------------------------------------------------------------ */

/* Reads the whole of standard input (for PROBLEM "-"), without trailing newlines. */
static int
cmd_program_read_stdin(char **out)
{
	size_t len = 0, cap = 4096, n;
	char *buf = malloc(cap);

	if (buf == NULL)
		return -ENOMEM;
	for (;;) {
		if (cap - len < 2) {
			if (cap >= RPC_MAX_MESSAGE) {
				free(buf);
				return -E2BIG;
			}
			if (ARRAY_GROW(buf, cap, cap * 2) != 0) {
				free(buf);
				return -ENOMEM;
			}
		}
		n = fread(buf + len, 1, cap - len - 1, stdin);
		len += n;
		if (n == 0)
			break;
	}
	if (ferror(stdin)) {
		free(buf);
		return -EIO;
	}
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
		len--;
	if (memchr(buf, '\0', len) != NULL) {
		free(buf);
		return -EINVAL;
	}
	buf[len] = '\0';
	*out = buf;
	return 0;
}

/* Fills spec from the options (problem set by the caller). */
static int
cmd_program_spec(const struct cmd_args *args, Certa__V1__ProgramSpec *spec)
{
	uint64_t n = 0, budget = 0, deadline = 0;
	const char *s;
	int rc;

	if ((rc = cmd_args_uint(args, "sc", 1, 1000000, &n)) != CLI_EXIT_OK ||
	    (rc = cmd_args_uint(args, "budget", 1, INT64_MAX, &budget)) != CLI_EXIT_OK ||
	    (rc = cmd_args_uint(args, "deadline", 1, 10ULL * 366 * 86400, &deadline)) !=
	    CLI_EXIT_OK)
		return rc;
	if (cmd_args_get(args, "sc") != NULL && cmd_args_get(args, "cot") != NULL)
		return cmd_usage_error(args, "--sc and --cot exclude each other");
	if (cmd_args_get(args, "sc") != NULL) {
		spec->algorithm = CERTA__V1__ALGORITHM__ALGORITHM_SC;
		spec->n = (uint32_t)n;
	} else if (cmd_args_get(args, "cot") != NULL) {
		spec->algorithm = CERTA__V1__ALGORITHM__ALGORITHM_COT;
	}
	spec->token_budget = budget;
	s = cmd_args_get(args, "priority");
	if (s != NULL && names_priority_parse(s, &spec->priority) != 0)
		return cmd_usage_error(args, "--priority expects %s, not '%s'",
		    names_priority_choices(), s);
	if (deadline > 0)
		spec->deadline_unix_ms = output_now_ms() + (int64_t)deadline * 1000;
	if ((s = cmd_args_get(args, "model")) != NULL)
		spec->model = (char *)s;
	if ((s = cmd_args_get(args, "policy")) != NULL)
		spec->policy = (char *)s;
	if ((s = cmd_args_get(args, "idempotency-key")) != NULL)
		spec->idempotency_key = (char *)s;
	return CLI_EXIT_OK;
}

static int
cmd_program_submit(struct cmd_ctx *ctx, const struct cmd_args *args)
{
	Certa__V1__SubmitRequest req = CERTA__V1__SUBMIT_REQUEST__INIT;
	Certa__V1__ProgramSpec spec = CERTA__V1__PROGRAM_SPEC__INIT;
	const char *problem = cmd_args_at(args, 0);
	char *input = NULL;
	int rc, watch, detach;

	watch = cmd_args_order(args, "watch") > cmd_args_order(args, "no-watch");
	detach = cmd_args_get(args, "detach") != NULL;
	if (detach && watch)
		return cmd_usage_error(args, "--detach and --watch exclude each other");
	rc = cmd_program_spec(args, &spec);
	if (rc != CLI_EXIT_OK)
		return rc;
	if (strcmp(problem, "-") == 0) {
		rc = cmd_program_read_stdin(&input);
		if (rc != 0) {
			fprintf(stderr, "certactl submit: reading the problem from standard input: "
			    "%s\n", rc == -EINVAL ? "it contains a NUL byte" : strerror(-rc));
			return rc == -EINVAL ? CLI_EXIT_USAGE : CLI_EXIT_ERROR;
		}
		problem = input;
	}
	if (*problem == '\0') {
		free(input);
		return cmd_usage_error(args, "the problem is empty");
	}
	spec.problem = (char *)problem;
	req.program = &spec;
	rc = cmd_program_follow(ctx, "Submit", &req.base, NULL, watch, detach);
	free(input);
	return rc;
}

/* --- watch, get, cancel ------------------------------------------------------------------ */

static int
cmd_program_watch(struct cmd_ctx *ctx, const struct cmd_args *args)
{
	Certa__V1__WatchRequest req = CERTA__V1__WATCH_REQUEST__INIT;

	req.program_id = (char *)cmd_args_at(args, 0);
	return cmd_program_follow(ctx, "Watch", &req.base, req.program_id, 1, 0);
}

static int
cmd_program_get(struct cmd_ctx *ctx, const struct cmd_args *args)
{
	Certa__V1__GetRequest req = CERTA__V1__GET_REQUEST__INIT;
	ProtobufCMessage *reply;
	struct output *out;
	int rc;

	req.program_id = (char *)cmd_args_at(args, 0);
	rc = client_call(ctx->client, &certa__v1__reasoning__descriptor, "Get", &req.base,
	    &reply);
	if (rc != CLI_EXIT_OK)
		return rc;
	rc = CLI_EXIT_ERROR;
	if (output_new(ctx->json, &out) == 0) {
		if ((cmd_args_get(args, "explain") != NULL ?
		    output_program_explain(out, (const Certa__V1__Program *)reply) :
		    output_program(out, (const Certa__V1__Program *)reply)) == 0)
			rc = CLI_EXIT_OK;
		output_free(out);
	}
	protobuf_c_message_free_unpacked(reply, NULL);
	return rc;
}

static int
cmd_program_cancel(struct cmd_ctx *ctx, const struct cmd_args *args)
{
	Certa__V1__CancelRequest req = CERTA__V1__CANCEL_REQUEST__INIT;
	ProtobufCMessage *reply;
	struct output *out;
	int rc;

	req.program_id = (char *)cmd_args_at(args, 0);
	rc = client_call(ctx->client, &certa__v1__reasoning__descriptor, "Cancel", &req.base,
	    &reply);
	if (rc != CLI_EXIT_OK)
		return rc;
	rc = CLI_EXIT_ERROR;
	if (output_new(ctx->json, &out) == 0) {
		if (output_cancel(out, req.program_id,
		    ((const Certa__V1__CancelReply *)reply)->state) == 0)
			rc = CLI_EXIT_OK;
		output_free(out);
	}
	protobuf_c_message_free_unpacked(reply, NULL);
	return rc;
}

/* --- list -------------------------------------------------------------------------------- */

/* Pages fetched so far; the programs point into the replies, freed together. */
struct cmd_program_pages {
	Certa__V1__ListReply **replies;
	size_t nreplies;
	Certa__V1__Program **programs;
	size_t nprograms;
};

static void
cmd_program_pages_free(struct cmd_program_pages *pg)
{
	size_t i;

	for (i = 0; i < pg->nreplies; i++)
		protobuf_c_message_free_unpacked(&pg->replies[i]->base, NULL);
	free(pg->replies);
	free(pg->programs);
}

/* Keeps reply and up to `room` of its programs (room 0: all). */
static int
cmd_program_pages_add(struct cmd_program_pages *pg, Certa__V1__ListReply *reply, size_t room)
{
	size_t take = reply->n_programs, i;
	void *p;

	if (room > 0 && take > room)
		take = room;
	p = realloc(pg->replies, (pg->nreplies + 1) * sizeof *pg->replies);
	if (p == NULL)
		return -ENOMEM;
	pg->replies = p;
	pg->replies[pg->nreplies++] = reply;
	p = realloc(pg->programs, (pg->nprograms + take + 1) * sizeof *pg->programs);
	if (p == NULL)
		return -ENOMEM;
	pg->programs = p;
	for (i = 0; i < take; i++)
		pg->programs[pg->nprograms++] = reply->programs[i];
	return 0;
}

static int
cmd_program_list(struct cmd_ctx *ctx, const struct cmd_args *args)
{
	Certa__V1__ListRequest req = CERTA__V1__LIST_REQUEST__INIT;
	struct cmd_program_pages pg = { 0 };
	Certa__V1__ListReply *reply;
	ProtobufCMessage *msg;
	struct output *out = NULL;
	uint64_t limit = CMD_PROGRAM_LIST_DEFAULT;
	const char *s = cmd_args_get(args, "state");
	char *token = NULL;
	size_t room;
	int rc;

	rc = cmd_args_uint(args, "limit", 0, UINT32_MAX, &limit);
	if (rc != CLI_EXIT_OK)
		return rc;
	if (s != NULL && names_state_parse(s, &req.state) != 0)
		return cmd_usage_error(args, "--state expects %s, not '%s'", names_state_choices(),
		    s);
	/* Follow next_page_token until the limit is reached or the server has no more. */
	for (;;) {
		room = limit > 0 ? (size_t)limit - pg.nprograms : 0;
		req.page_size = room > 0 && room < CMD_PROGRAM_LIST_PAGE_MAX ? (uint32_t)room :
		    CMD_PROGRAM_LIST_PAGE_MAX;
		req.page_token = token != NULL ? token : (char *)"";
		rc = client_call(ctx->client, &certa__v1__reasoning__descriptor, "List", &req.base,
		    &msg);
		if (rc != CLI_EXIT_OK)
			goto out;
		reply = (Certa__V1__ListReply *)msg;
		if (cmd_program_pages_add(&pg, reply, room) != 0) {
			protobuf_c_message_free_unpacked(msg, NULL);
			goto nomem;
		}
		/* Stop at the end, at the limit, and on a page that makes no progress. */
		if (*reply->next_page_token == '\0' || reply->n_programs == 0 ||
		    (limit > 0 && pg.nprograms >= limit) ||
		    (token != NULL && strcmp(token, reply->next_page_token) == 0))
			break;
		free(token);
		token = strdup(reply->next_page_token);
		if (token == NULL)
			goto nomem;
	}
	if (output_new(ctx->json, &out) != 0)
		goto nomem;
	rc = output_list(out, pg.programs, pg.nprograms) == 0 ? CLI_EXIT_OK : CLI_EXIT_ERROR;
	goto out;
nomem:
	fprintf(stderr, "certactl: out of memory\n");
	rc = CLI_EXIT_ERROR;
out:
	output_free(out);
	free(token);
	cmd_program_pages_free(&pg);
	return rc;
}
