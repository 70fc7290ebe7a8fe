/* cmd_top.c — `certactl top`, the live view; see cmd_top.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "certa/v1/admin.pb-c.h"
#include "cli/cmd_admin.h"
#include "cli/cmd_stats.h"
#include "cli/cmd_top.h"
#include "cli/cmd_worker.h"
#include "cli/interrupt.h"
#include "cli/output.h"
#include "lib/jsonw.h"

#define CMD_TOP_DEFAULT_INTERVAL_MS 1000
#define CMD_TOP_MIN_INTERVAL_MS 100
#define CMD_TOP_MAX_INTERVAL_MS 3600000
/* Longest sleep between two looks at the Ctrl-C flag. */
#define CMD_TOP_SLICE_MS 100

/* Home the cursor and clear the screen (ANSI/VT100). */
#define CMD_TOP_CLEAR "\033[H\033[2J"

static int cmd_top(struct cmd_ctx *ctx, const struct cmd_args *args);

static const struct cmd_option cmd_top_options[] = {
	{ "interval", "MS", "refresh every MS milliseconds (default 1000, at least 100)" },
	{ "count", "N", "stop after N refreshes (default: until Ctrl-C)" },
	{ NULL, NULL, NULL },
};

const struct cmd_entry cmd_top_entry = {
	.name = "top",
	.usage = "",
	.summary = "live view of tenants and workers",
	.help = "Shows `certactl stats` and `certactl worker list` together and refreshes them\n"
	    "every --interval.  On a terminal the screen is redrawn in place; otherwise each\n"
	    "refresh prints one block, blocks separated by an empty line.  With --json, one\n"
	    "line per refresh: {\"unix_ms\":...,\"stats\":{...},\"workers\":[...]}.\n"
	    "Ctrl-C ends it (exit status 0; a second Ctrl-C exits at once with 130).  A\n"
	    "failed refresh ends it with that call's exit status.",
	.options = cmd_top_options,
	.min_args = 0,
	.max_args = 0,
	.admin = 1,
	.exec = cmd_top,
};

/* One refresh: both replies, freed together. */
struct cmd_top_view {
	Certa__V1__StatsReply *stats;
	Certa__V1__ListWorkersReply *workers;
	int64_t unix_ms;
};

static void
cmd_top_view_free(struct cmd_top_view *v)
{
	if (v->stats != NULL)
		protobuf_c_message_free_unpacked(&v->stats->base, NULL);
	if (v->workers != NULL)
		protobuf_c_message_free_unpacked(&v->workers->base, NULL);
	memset(v, 0, sizeof *v);
}

/* GetStats + ListWorkers.  Returns an exit status (errors already printed). */
static int
cmd_top_fetch(struct cmd_ctx *ctx, struct cmd_top_view *v)
{
	Certa__V1__StatsRequest sreq = CERTA__V1__STATS_REQUEST__INIT;
	Certa__V1__ListWorkersRequest wreq = CERTA__V1__LIST_WORKERS_REQUEST__INIT;
	ProtobufCMessage *msg;
	int rc;

	rc = cmd_admin_call(ctx, "GetStats", &sreq.base, &msg);
	if (rc != CLI_EXIT_OK)
		return rc;
	v->stats = (Certa__V1__StatsReply *)msg;
	rc = cmd_admin_call(ctx, "ListWorkers", &wreq.base, &msg);
	if (rc != CLI_EXIT_OK)
		return rc;
	v->workers = (Certa__V1__ListWorkersReply *)msg;
	v->unix_ms = output_now_ms();
	return CLI_EXIT_OK;
}

/* The text block of one refresh, written to f. */
static int
cmd_top_block(FILE *f, struct cmd_ctx *ctx, const struct cmd_top_view *v, int interval_ms)
{
	char tbuf[32];
	int rc;

	fputs("certa top  server ", f);
	output_text(f, ctx->server, 0);
	fprintf(f, "  %s  (every %d ms; Ctrl-C quits)\n",
	    output_time(tbuf, sizeof tbuf, v->unix_ms), interval_ms);
	cmd_stats_summary(f, v->stats);
	fputc('\n', f);
	rc = cmd_stats_table(f, v->stats);
	if (rc != 0)
		return rc;
	fputc('\n', f);
	return cmd_worker_table(f, v->workers->workers, v->workers->n_workers);
}

/* Renders the block in memory first, so the screen is redrawn in one write. */
static int
cmd_top_text(struct cmd_ctx *ctx, const struct cmd_top_view *v, int interval_ms, int tty,
    int first)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f;
	int rc;

	f = open_memstream(&buf, &len);
	if (f == NULL)
		return -ENOMEM;
	if (tty)
		fputs(CMD_TOP_CLEAR, f);
	else if (!first)
		fputc('\n', f);
	rc = cmd_top_block(f, ctx, v, interval_ms);
	if (fclose(f) != 0 && rc == 0)
		rc = -ENOMEM;
	if (rc == 0) {
		fwrite(buf, 1, len, stdout);
		fflush(stdout);
	}
	free(buf);
	return rc;
}

/* {"unix_ms":...,"stats":{...},"workers":[{...}]} */
static int
cmd_top_json(struct output *out, const struct cmd_top_view *v)
{
	struct jsonw *w = output_jsonw(out);
	size_t i;
	int rc;

	jsonw_object_begin(w);
	jsonw_kint(w, "unix_ms", v->unix_ms);
	jsonw_key(w, "stats");
	cmd_stats_json(w, v->stats);
	jsonw_key(w, "workers");
	jsonw_array_begin(w);
	for (i = 0; i < v->workers->n_workers; i++)
		cmd_worker_json(w, v->workers->workers[i]);
	jsonw_array_end(w);
	jsonw_object_end(w);
	rc = output_json_line(out);
	fflush(stdout);
	return rc;
}

/* Sleeps ms in slices; returns 1 when Ctrl-C was pressed meanwhile. */
static int
cmd_top_sleep(int ms)
{
	struct timespec ts;
	int slice;

	while (ms > 0 && !interrupt_pending()) {
		slice = ms < CMD_TOP_SLICE_MS ? ms : CMD_TOP_SLICE_MS;
		ts.tv_sec = 0;
		ts.tv_nsec = (long)slice * 1000000L;
		nanosleep(&ts, NULL);
		ms -= slice;
	}
	return interrupt_pending();
}

static int
cmd_top(struct cmd_ctx *ctx, const struct cmd_args *args)
{
	struct cmd_top_view v = { 0 };
	struct output *out = NULL;
	uint64_t interval = CMD_TOP_DEFAULT_INTERVAL_MS, count = 0, n;
	int rc, tty;

	if ((rc = cmd_args_uint(args, "interval", CMD_TOP_MIN_INTERVAL_MS,
	    CMD_TOP_MAX_INTERVAL_MS, &interval)) != CLI_EXIT_OK ||
	    (rc = cmd_args_uint(args, "count", 1, UINT32_MAX, &count)) != CLI_EXIT_OK)
		return rc;
	if (output_new(ctx->json, &out) != 0) {
		fprintf(stderr, "certactl: out of memory\n");
		return CLI_EXIT_ERROR;
	}
	tty = !ctx->json && isatty(STDOUT_FILENO);
	/* Ctrl-C only sets a flag, checked between refreshes; a second one exits at once. */
	interrupt_arm("\n");
	interrupt_poll();
	for (n = 0;; ) {
		rc = cmd_top_fetch(ctx, &v);
		if (rc != CLI_EXIT_OK)
			break;
		rc = ctx->json ? cmd_top_json(out, &v) :
		    cmd_top_text(ctx, &v, (int)interval, tty, n == 0);
		cmd_top_view_free(&v);
		if (rc != 0) {
			rc = cmd_admin_exit(rc);
			break;
		}
		rc = CLI_EXIT_OK;
		if (++n == count || interrupt_pending() || cmd_top_sleep((int)interval))
			break;
	}
	cmd_top_view_free(&v);
	interrupt_disarm();
	output_free(out);
	return rc;
}
