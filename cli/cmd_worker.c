/* cmd_worker.c — worker list/add/rm/drain; see cmd_worker.h. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cmd_admin.h"
#include "cli/cmd_worker.h"
#include "cli/names.h"
#include "cli/output.h"
#include "cli/table.h"
#include "lib/jsonw.h"

static int cmd_worker_list(struct cmd_ctx *ctx, const struct cmd_args *args);
static int cmd_worker_add(struct cmd_ctx *ctx, const struct cmd_args *args);
static int cmd_worker_rm(struct cmd_ctx *ctx, const struct cmd_args *args);
static int cmd_worker_drain(struct cmd_ctx *ctx, const struct cmd_args *args);

const struct cmd_entry cmd_worker_list_entry = {
	.name = "worker list",
	.usage = "",
	.summary = "list the workers and their state",
	.help = "Lists the workers certad dispatches to, as a table:\n"
	    "  ADDRESS  STATE  ENGINE  MODEL  ACTIVE  CAPACITY  SEEN  ERROR\n"
	    "STATE is unknown (not probed yet), up, down or draining; ACTIVE counts the\n"
	    "requests placed on the worker; SEEN is how long ago it last answered.  With\n"
	    "--json, one worker object per line.",
	.options = NULL,
	.min_args = 0,
	.max_args = 0,
	.admin = 1,
	.exec = cmd_worker_list,
};

const struct cmd_entry cmd_worker_add_entry = {
	.name = "worker add",
	.usage = "ADDR",
	.summary = "add a worker (host:port or unix:PATH)",
	.help = "Adds the worker at ADDR to the pool; certad probes it and sends it work once it\n"
	    "is up.  Prints `worker ADDR: STATE` (--json: the worker object).  Adding a draining\n"
	    "worker puts it back in service.  Workers added here last until certad restarts (and\n"
	    "a reload drops idle ones not in workers.worker): list them in the configuration to\n"
	    "keep them.",
	.options = NULL,
	.min_args = 1,
	.max_args = 1,
	.admin = 1,
	.exec = cmd_worker_add,
};

const struct cmd_entry cmd_worker_rm_entry = {
	.name = "worker rm",
	.usage = "ADDR",
	.summary = "remove a worker from the pool",
	.help = "Removes the worker at ADDR.  Refused (FAILED_PRECONDITION) while chains are\n"
	    "placed on it: drain it first (`certactl worker drain ADDR`) and let them finish.",
	.options = NULL,
	.min_args = 1,
	.max_args = 1,
	.admin = 1,
	.exec = cmd_worker_rm,
};

static const struct cmd_option cmd_worker_drain_options[] = {
	{ "undo", NULL, "end the drain: the worker gets new work again (re-adds it)" },
	{ NULL, NULL, NULL },
};

const struct cmd_entry cmd_worker_drain_entry = {
	.name = "worker drain",
	.usage = "ADDR",
	.summary = "stop sending new work to a worker",
	.help = "Stops sending new work to the worker at ADDR; its chains finish or move\n"
	    "elsewhere.  --undo returns it to service (sent as AddWorker ADDR).  Prints\n"
	    "`worker ADDR: STATE` (--json: the worker object).",
	.options = cmd_worker_drain_options,
	.min_args = 1,
	.max_args = 1,
	.admin = 1,
	.exec = cmd_worker_drain,
};

/* --- output ------------------------------------------------------------------------------ */

/* "4s ago", "3m ago", "2h ago", "5d ago"; "-" when never seen. */
static void
cmd_worker_age_cell(struct table *tb, int64_t seen_ms, int64_t now_ms)
{
	int64_t s;

	if (seen_ms <= 0) {
		table_cell(tb, "-");
		return;
	}
	s = now_ms > seen_ms ? (now_ms - seen_ms) / 1000 : 0;
	if (s < 120)
		table_cellf(tb, "%" PRId64 "s ago", s);
	else if (s < 120 * 60)
		table_cellf(tb, "%" PRId64 "m ago", s / 60);
	else if (s < 48 * 3600)
		table_cellf(tb, "%" PRId64 "h ago", s / 3600);
	else
		table_cellf(tb, "%" PRId64 "d ago", s / 86400);
}

int
cmd_worker_table(FILE *f, Certa__V1__WorkerStatus *const *ws, size_t n)
{
	static const char *const head[] = { "ADDRESS", "STATE", "ENGINE", "MODEL", "ACTIVE",
	    "CAPACITY", "SEEN", "ERROR" };
	int64_t now = output_now_ms();
	struct table *tb;
	size_t i;
	int rc;

	if (table_new(head, "llllrrrl", 8, &tb) != 0)
		return -ENOMEM;
	table_set_max(tb, 7, 60);
	for (i = 0; i < n; i++) {
		table_cell(tb, ws[i]->address);
		table_cell(tb, names_worker_state(ws[i]->state));
		table_cell(tb, ws[i]->engine);
		table_cell(tb, ws[i]->model);
		table_cellf(tb, "%" PRIu32, ws[i]->active);
		table_cellf(tb, "%" PRIu32, ws[i]->capacity);
		cmd_worker_age_cell(tb, ws[i]->last_seen_unix_ms, now);
		table_cell(tb, ws[i]->last_error);
	}
	rc = table_print(tb, f);
	table_free(tb);
	return rc;
}

void
cmd_worker_json(struct jsonw *w, const Certa__V1__WorkerStatus *ws)
{
	jsonw_object_begin(w);
	jsonw_kstring(w, "address", ws->address);
	jsonw_kstring(w, "state", names_worker_state(ws->state));
	jsonw_kstring(w, "engine", ws->engine);
	jsonw_kstring(w, "model", ws->model);
	jsonw_kuint(w, "capacity", ws->capacity);
	jsonw_kuint(w, "active", ws->active);
	jsonw_kint(w, "last_seen_unix_ms", ws->last_seen_unix_ms);
	jsonw_kstring(w, "last_error", ws->last_error);
	jsonw_object_end(w);
}

/* `worker list`: the table, or one worker object per line. */
static int
cmd_worker_print_list(struct output *out, const ProtobufCMessage *reply, const void *arg)
{
	const Certa__V1__ListWorkersReply *r = (const Certa__V1__ListWorkersReply *)reply;
	size_t i;
	int rc;

	if (!output_is_json(out))
		return cmd_worker_table(stdout, r->workers, r->n_workers);
	for (rc = 0, i = 0; rc == 0 && i < r->n_workers; i++) {
		cmd_worker_json(output_jsonw(out), r->workers[i]);
		rc = output_json_line(out);
	}
	return rc;
}

/* The WorkerStatus reply of AddWorker or DrainWorker: `worker ADDR: STATE` or the worker
 * object. */
static int
cmd_worker_print_status(struct output *out, const ProtobufCMessage *reply, const void *arg)
{
	const Certa__V1__WorkerStatus *ws = (const Certa__V1__WorkerStatus *)reply;

	if (output_is_json(out)) {
		cmd_worker_json(output_jsonw(out), ws);
		return output_json_line(out);
	}
	fputs("worker ", stdout);
	output_text(stdout, ws->address, 0);
	printf(": %s\n", output_or_dash(names_worker_state(ws->state)));
	return 0;
}

/* `removed worker ADDR` or {"address":...,"removed":true}; arg is the ADDR. */
static int
cmd_worker_print_removed(struct output *out, const ProtobufCMessage *reply, const void *arg)
{
	struct jsonw *w = output_jsonw(out);

	if (!output_is_json(out)) {
		fputs("removed worker ", stdout);
		output_text(stdout, arg, 0);
		fputc('\n', stdout);
		return 0;
	}
	jsonw_object_begin(w);
	jsonw_kstring(w, "address", arg);
	jsonw_kbool(w, "removed", true);
	jsonw_object_end(w);
	return output_json_line(out);
}

/* --- commands ---------------------------------------------------------------------------- */

static int
cmd_worker_list(struct cmd_ctx *ctx, const struct cmd_args *args)
{
	Certa__V1__ListWorkersRequest req = CERTA__V1__LIST_WORKERS_REQUEST__INIT;

	return cmd_admin_run(ctx, "ListWorkers", &req.base, cmd_worker_print_list, NULL);
}

static int
cmd_worker_add(struct cmd_ctx *ctx, const struct cmd_args *args)
{
	Certa__V1__AddWorkerRequest req = CERTA__V1__ADD_WORKER_REQUEST__INIT;
	int rc;

	req.address = (char *)cmd_args_at(args, 0);
	if ((rc = cmd_args_nonempty(args, 0, "worker ADDR")) != CLI_EXIT_OK)
		return rc;
	return cmd_admin_run(ctx, "AddWorker", &req.base, cmd_worker_print_status, NULL);
}
static int
cmd_worker_drain(struct cmd_ctx *ctx, const struct cmd_args *args)
{
	Certa__V1__WorkerRef ref = CERTA__V1__WORKER_REF__INIT;
	Certa__V1__AddWorkerRequest add = CERTA__V1__ADD_WORKER_REQUEST__INIT;
	int rc;

	ref.address = (char *)cmd_args_at(args, 0);
	if ((rc = cmd_args_nonempty(args, 0, "worker ADDR")) != CLI_EXIT_OK)
		return rc;
	/* The Admin service has no "undrain": adding a known worker returns it to service. */
	if (cmd_args_get(args, "undo") != NULL) {
		add.address = ref.address;
		rc = cmd_admin_run(ctx, "AddWorker", &add.base, cmd_worker_print_status, NULL);
		if (rc == CLI_EXIT_ERROR)
			fprintf(stderr, "certactl: this certad cannot end a drain (AddWorker of a known "
			    "worker failed); `certactl worker rm ADDR` and `certactl worker add ADDR` "
			    "do it once the worker holds no chains\n");
		return rc;
	}
	return cmd_admin_run(ctx, "DrainWorker", &ref.base, cmd_worker_print_status, NULL);
}

static int
cmd_worker_rm(struct cmd_ctx *ctx, const struct cmd_args *args)
{
	Certa__V1__WorkerRef req = CERTA__V1__WORKER_REF__INIT;
	int rc;

	req.address = (char *)cmd_args_at(args, 0);
	if ((rc = cmd_args_nonempty(args, 0, "worker ADDR")) != CLI_EXIT_OK)
		return rc;
	return cmd_admin_run(ctx, "RemoveWorker", &req.base, cmd_worker_print_removed, req.address);
}
