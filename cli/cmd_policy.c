/* cmd_policy.c — policy get/set/history/rollback; see cmd_policy.h. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "certa/v1/admin.pb-c.h"
#include "cli/cmd_admin.h"
#include "cli/cmd_policy.h"
#include "cli/cmd_stats.h"
#include "cli/output.h"
#include "cli/table.h"
#include "lib/jsonw.h"
#include "scheduler/policykv.h"

/* Most KEY=VALUE arguments of one `policy set`. */
#define CMD_POLICY_MAX_ASSIGN 256

static int cmd_policy_get(struct cmd_ctx *ctx, const struct cmd_args *args);
static int cmd_policy_set(struct cmd_ctx *ctx, const struct cmd_args *args);
static int cmd_policy_history(struct cmd_ctx *ctx, const struct cmd_args *args);
static int cmd_policy_rollback(struct cmd_ctx *ctx, const struct cmd_args *args);

static const struct cmd_option cmd_policy_options[] = {
	{ "tenant", "T", "tenant T's policy instead of the global default" },
	{ NULL, NULL, NULL },
};

const struct cmd_entry cmd_policy_get_entry = {
	.name = "policy get",
	.usage = "",
	.summary = "show the policy (global default or --tenant T)",
	.help = "Prints the policy in its file form, `key = value` lines, after a comment line\n"
	    "with its name and version:\n"
	    "  # policy default version 3, updated 2024-05-01T12:00:00Z by admin\n"
	    "  step_tokens = 64\n"
	    "  cot.threshold = 0.93\n"
	    "  ...\n"
	    "then, for the global default, one comment line per risk controller (the\n"
	    "threshold shift it applies per model and algorithm; certactl stats).\n"
	    "With --json: {\"name\":...,\"version\":N,\"text\":...,\"updated_unix_ms\":...,\n"
	    "\"updated_by\":...,\"values\":{\"step_tokens\":64,...}}.",
	.options = cmd_policy_options,
	.min_args = 0,
	.max_args = 0,
	.admin = 1,
	.exec = cmd_policy_get,
};

const struct cmd_entry cmd_policy_set_entry = {
	.name = "policy set",
	.usage = "KEY=VALUE...",
	.summary = "change policy values; stored as a new version",
	.help = "Changes the given keys of the policy (the others keep their values) and\n"
	    "stores the result as a new version, applied from the next scheduling step.  KEY\n"
	    "is one of the keys `certactl policy get` prints (step_tokens, default_budget,\n"
	    "cot.threshold, sc.threshold, cot.w.FEATURE, ...); an unknown key is a usage\n"
	    "error that lists them.\n"
	    "VALUE is a number.  The server checks the ranges; a bad value is refused\n"
	    "(INVALID_ARGUMENT, naming the field and its range) and nothing changes.  Prints\n"
	    "what changed and the new version:\n"
	    "  cot.threshold: 0.93 -> 0.95\n"
	    "  policy default is now version 4\n"
	    "With --json, the stored policy (as `certactl policy get --json`).",
	.options = cmd_policy_options,
	.min_args = 1,
	.max_args = CMD_POLICY_MAX_ASSIGN,
	.admin = 1,
	.exec = cmd_policy_set,
};

const struct cmd_entry cmd_policy_history_entry = {
	.name = "policy history",
	.usage = "",
	.summary = "list the policy's versions: who changed what",
	.help = "Lists the audit record of the policy, one version per row:\n"
	    "  VERSION  WHEN  WHO  CHANGES\n"
	    "where CHANGES reads `cot.threshold 0.93->0.95, ...`.  With --json, one entry\n"
	    "per line: {\"version\":N,\"who\":...,\"unix_ms\":...,\"old_policy\":{...}|null,\n"
	    "\"new_policy\":{...}|null}.",
	.options = cmd_policy_options,
	.min_args = 0,
	.max_args = 0,
	.admin = 1,
	.exec = cmd_policy_history,
};

const struct cmd_entry cmd_policy_rollback_entry = {
	.name = "policy rollback",
	.usage = "VERSION",
	.summary = "restore an earlier policy version",
	.help = "Stores the values of policy version VERSION (see `certactl policy history`)\n"
	    "as a new version, applied from the next scheduling step.  Prints\n"
	    "`restored version V; policy NAME is now version N` (--json: the stored policy).",
	.options = cmd_policy_options,
	.min_args = 1,
	.max_args = 1,
	.admin = 1,
	.exec = cmd_policy_rollback,
};

/* --- output ------------------------------------------------------------------------------ */

/* One "key":number member of the JSON "values" object (a value that is not a number, which
 * the server never writes, is kept as a string). */
static int
cmd_policy_json_value(const char *key, const char *value, void *arg)
{
	struct jsonw *w = arg;
	char *end;
	double d = strtod(value, &end);

	if (end != value && *end == '\0')
		jsonw_kdouble(w, key, d);
	else
		jsonw_kstring(w, key, value);
	return 0;
}

/* {"name":...,"version":3,"text":"step_tokens = 64\n...","updated_unix_ms":...,
 *  "updated_by":...,"values":{"step_tokens":64,...}} or null */
static void
cmd_policy_json(struct jsonw *w, const Certa__V1__Policy *p)
{
	if (p == NULL) {
		jsonw_null(w);
		return;
	}
	jsonw_object_begin(w);
	jsonw_kstring(w, "name", p->name);
	jsonw_kuint(w, "version", p->version);
	jsonw_kstring(w, "text", p->text);
	jsonw_kint(w, "updated_unix_ms", p->updated_unix_ms);
	jsonw_kstring(w, "updated_by", p->updated_by);
	jsonw_key(w, "values");
	jsonw_object_begin(w);
	policykv_each(p->text, cmd_policy_json_value, w);
	jsonw_object_end(w);
	jsonw_object_end(w);
}

/* "# policy default version 3, updated 2024-05-01T12:00:00Z by admin" and the text, each line
 * written terminal-safe. */
static int
cmd_policy_text(const Certa__V1__Policy *p)
{
	const char *t = p->text;
	char tbuf[32], *line;
	size_t n;

	fputs("# policy ", stdout);
	output_text(stdout, p->name, 0);
	printf(" version %" PRIu32, p->version);
	if (p->updated_unix_ms > 0)
		printf(", updated %s", output_time(tbuf, sizeof tbuf, p->updated_unix_ms));
	if (*p->updated_by) {
		fputs(" by ", stdout);
		output_text(stdout, p->updated_by, 0);
	}
	fputc('\n', stdout);
	while (*t) {
		n = strcspn(t, "\n");
		line = strndup(t, n);
		if (line == NULL)
			return -ENOMEM;
		if (*line)
			output_text(stdout, line, 0);
		fputc('\n', stdout);
		free(line);
		t += n + (t[n] == '\n');
	}
	return 0;
}

/* Prints the Policy reply of GetPolicy (get) as text or one JSON line. */
static int
cmd_policy_print(struct output *out, const ProtobufCMessage *reply, const void *arg)
{
	const Certa__V1__Policy *p = (const Certa__V1__Policy *)reply;

	if (!output_is_json(out)) {
		int rc = cmd_policy_text(p);
		/* The global default: the risk controllers it drives, as comments. */
		if (rc == 0 && arg != NULL) {
			Certa__V1__StatsRequest sr = CERTA__V1__STATS_REQUEST__INIT;
			ProtobufCMessage *st = NULL;
			sr.tenant = (char *)"";
			if (cmd_admin_call((struct cmd_ctx *)arg, "GetStats", &sr.base, &st) ==
			    CLI_EXIT_OK && st != NULL) {
				fflush(stdout);
				cmd_stats_riskctl(stdout, (const Certa__V1__StatsReply *)st, "# ");
				protobuf_c_message_free_unpacked(st, NULL);
			}
		}
		return rc;
	}
	cmd_policy_json(output_jsonw(out), p);
	return output_json_line(out);
}

/* "policy default is now version 4" */
static void
cmd_policy_version_line(const Certa__V1__Policy *p)
{
	fputs("policy ", stdout);
	output_text(stdout, p->name, 0);
	printf(" is now version %" PRIu32 "\n", p->version);
}

/* Where one list of changes goes, and how it is punctuated. */
struct cmd_policy_changes {
	FILE *f;
	const char *sep, *arrow, *join;
	int n;
};

/* `KEY: OLD -> NEW` (set) or `KEY OLD->NEW` (history), terminal-safe. */
static void
cmd_policy_change(const char *key, const char *old, const char *new, void *arg)
{
	struct cmd_policy_changes *c = arg;

	if (c->n++ > 0)
		fputs(c->join, c->f);
	output_text(c->f, key, 0);
	fputs(c->sep, c->f);
	output_text(c->f, old != NULL ? old : "(none)", 0);
	fputs(c->arrow, c->f);
	output_text(c->f, new != NULL ? new : "(none)", 0);
}

/* The CHANGES cell of a history row (malloc'd; NULL: out of memory). */
static char *
cmd_policy_changes(const Certa__V1__PolicyAudit *e)
{
	struct cmd_policy_changes c = { NULL, " ", "->", ", ", 0 };
	char *buf = NULL;
	size_t len = 0;

	if (e->new_policy == NULL)
		return strdup("-");
	if (e->old_policy == NULL)
		return strdup("(first version)");
	c.f = open_memstream(&buf, &len);
	if (c.f == NULL)
		return NULL;
	policykv_diff(e->old_policy->text, e->new_policy->text, cmd_policy_change, &c);
	if (c.n == 0)
		fputs("(no change)", c.f);
	if (fclose(c.f) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

static int
cmd_policy_history_text(const Certa__V1__PolicyHistoryReply *r)
{
	static const char *const head[] = { "VERSION", "WHEN", "WHO", "CHANGES" };
	struct table *tb;
	char tbuf[32], *changes;
	size_t i;
	int rc;

	if (table_new(head, "rlll", 4, &tb) != 0)
		return -ENOMEM;
	table_set_max(tb, 2, 32);
	table_set_max(tb, 3, 0);
	for (i = 0; i < r->n_entries; i++) {
		const Certa__V1__PolicyAudit *e = r->entries[i];

		changes = cmd_policy_changes(e);
		table_cellf(tb, "%" PRIu32, e->version);
		table_cell(tb, output_time(tbuf, sizeof tbuf, e->unix_ms));
		table_cell(tb, e->who);
		table_cell(tb, changes != NULL ? changes : "?");
		free(changes);
	}
	rc = table_print(tb, stdout);
	table_free(tb);
	return rc;
}

/* The stored Policy reply of SetPolicy: `KEY: OLD -> NEW` lines and `policy NAME is now
 * version N` (--json: the policy); arg is the policy before the change. */
static int
cmd_policy_print_set(struct output *out, const ProtobufCMessage *reply, const void *arg)
{
	struct cmd_policy_changes c = { stdout, ": ", " -> ", "\n", 0 };
	const Certa__V1__Policy *stored = (const Certa__V1__Policy *)reply;
	const Certa__V1__Policy *before = arg;

	if (output_is_json(out))
		return cmd_policy_print(out, reply, NULL);
	policykv_diff(before->text, stored->text, cmd_policy_change, &c);
	if (c.n > 0)
		fputc('\n', stdout);
	cmd_policy_version_line(stored);
	return 0;
}

/* `policy history`: the table, or one audit entry per line. */
static int
cmd_policy_print_history(struct output *out, const ProtobufCMessage *reply, const void *arg)
{
	const Certa__V1__PolicyHistoryReply *r = (const Certa__V1__PolicyHistoryReply *)reply;
	struct jsonw *w = output_jsonw(out);
	size_t i;
	int rc;

	if (!output_is_json(out))
		return cmd_policy_history_text(r);
	for (rc = 0, i = 0; rc == 0 && i < r->n_entries; i++) {
		jsonw_object_begin(w);
		jsonw_kuint(w, "version", r->entries[i]->version);
		jsonw_kstring(w, "who", r->entries[i]->who);
		jsonw_kint(w, "unix_ms", r->entries[i]->unix_ms);
		jsonw_key(w, "old_policy");
		cmd_policy_json(w, r->entries[i]->old_policy);
		jsonw_key(w, "new_policy");
		cmd_policy_json(w, r->entries[i]->new_policy);
		jsonw_object_end(w);
		rc = output_json_line(out);
	}
	return rc;
}

/* The stored Policy reply of RollbackPolicy: `restored version V; policy NAME is now version
 * N` (--json: the policy); arg is the request. */
static int
cmd_policy_print_rollback(struct output *out, const ProtobufCMessage *reply, const void *arg)
{
	const Certa__V1__RollbackPolicyRequest *req = arg;

	if (output_is_json(out))
		return cmd_policy_print(out, reply, NULL);
	printf("restored version %" PRIu32 "; ", req->version);
	cmd_policy_version_line((const Certa__V1__Policy *)reply);
	return 0;
}

/* --- calls ------------------------------------------------------------------------------- */

/* --tenant T, or "" for the global default. */
static char *
cmd_policy_tenant(const struct cmd_args *args)
{
	const char *t = cmd_args_get(args, "tenant");

	return (char *)(t != NULL ? t : "");
}

/* --- commands ---------------------------------------------------------------------------- */

static int
cmd_policy_get(struct cmd_ctx *ctx, const struct cmd_args *args)
{
	Certa__V1__PolicyRef req = CERTA__V1__POLICY_REF__INIT;

	req.tenant = cmd_policy_tenant(args);
	return cmd_admin_run(ctx, "GetPolicy", &req.base, cmd_policy_print,
	    req.tenant[0] == '\0' ? ctx : NULL);
}

/*
 * The KEY=VALUE arguments become `key = value` lines, checked before anything is sent (a typo
 * is a usage error, exit 2, and the server is not asked); the server applies them on top of
 * the current policy and validates the ranges.  The policy is read first only to show what
 * changed.
 */
static int
cmd_policy_set(struct cmd_ctx *ctx, const struct cmd_args *args)
{
	Certa__V1__PolicyRef ref = CERTA__V1__POLICY_REF__INIT;
	Certa__V1__SetPolicyRequest req = CERTA__V1__SET_POLICY_REQUEST__INIT;
	Certa__V1__Policy pol = CERTA__V1__POLICY__INIT;
	const Certa__V1__Policy *before;
	ProtobufCMessage *old, *reply;
	char *as[CMD_POLICY_MAX_ASSIGN], *text, err[2048];
	int i, rc;

	for (i = 0; i < cmd_args_count(args); i++)
		as[i] = (char *)cmd_args_at(args, i);
	rc = policykv_text(as, (size_t)i, &text, err, sizeof err);
	if (rc == -ENOMEM)
		return cmd_admin_exit(-ENOMEM);
	if (rc != 0)
		return cmd_usage_error(args, "%s", err);
	ref.tenant = cmd_policy_tenant(args);
	rc = cmd_admin_call(ctx, "GetPolicy", &ref.base, &old);
	if (rc != CLI_EXIT_OK)
		goto fail_text;
	before = (const Certa__V1__Policy *)old;
	pol.name = before->name;
	pol.text = text;
	req.tenant = ref.tenant;
	req.policy = &pol;
	rc = cmd_admin_call(ctx, "SetPolicy", &req.base, &reply);
	if (rc != CLI_EXIT_OK)
		goto fail_old;
	rc = cmd_admin_print(ctx, reply, cmd_policy_print_set, before);
fail_old:
	protobuf_c_message_free_unpacked(old, NULL);
fail_text:
	free(text);
	return rc;
}

static int
cmd_policy_history(struct cmd_ctx *ctx, const struct cmd_args *args)
{
	Certa__V1__PolicyRef req = CERTA__V1__POLICY_REF__INIT;

	req.tenant = cmd_policy_tenant(args);
	return cmd_admin_run(ctx, "PolicyHistory", &req.base, cmd_policy_print_history, NULL);
}

static int
cmd_policy_rollback(struct cmd_ctx *ctx, const struct cmd_args *args)
{
	Certa__V1__RollbackPolicyRequest req = CERTA__V1__ROLLBACK_POLICY_REQUEST__INIT;
	const char *s = cmd_args_at(args, 0);
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (*s < '0' || *s > '9' || *end != '\0' || errno != 0 || v < 1 || v > UINT32_MAX)
		return cmd_usage_error(args, "VERSION expects a whole number from 1 to %lu, "
		    "not '%s'", (unsigned long)UINT32_MAX, s);
	req.tenant = cmd_policy_tenant(args);
	req.version = (uint32_t)v;
	return cmd_admin_run(ctx, "RollbackPolicy", &req.base, cmd_policy_print_rollback, &req);
}
