/* cmd_tenant.c — tenant add/list/show/set/rm and tenant key rotate/revoke; see cmd_tenant.h. */
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "certa/v1/admin.pb-c.h"
#include "cli/cmd_admin.h"
#include "cli/cmd_tenant.h"
#include "cli/names.h"
#include "cli/output.h"
#include "cli/table.h"
#include "lib/jsonw.h"

static int cmd_tenant_add(struct cmd_ctx *ctx, const struct cmd_args *args);
static int cmd_tenant_list(struct cmd_ctx *ctx, const struct cmd_args *args);
static int cmd_tenant_show(struct cmd_ctx *ctx, const struct cmd_args *args);
static int cmd_tenant_set(struct cmd_ctx *ctx, const struct cmd_args *args);
static int cmd_tenant_rm(struct cmd_ctx *ctx, const struct cmd_args *args);
static int cmd_tenant_key_rotate(struct cmd_ctx *ctx, const struct cmd_args *args);
static int cmd_tenant_key_revoke(struct cmd_ctx *ctx, const struct cmd_args *args);

enum cmd_tenant_kind {
	CMD_TENANT_WEIGHT,
	CMD_TENANT_PRIORITY,
	CMD_TENANT_QUOTA32,
	CMD_TENANT_QUOTA64,
	CMD_TENANT_POLICY,
};

/*
 * The tenant settings `add` and `set` take, one row each: option, metavar, help, field path in
 * UpdateTenantRequest.fields, how the value is parsed and where it goes (the offset in
 * Certa__V1__Quota, for the quota kinds).  The rows are expanded into the option table the help
 * and getopt use, the table cmd_tenant_fill() parses with, and the option list of `tenant
 * set`'s "nothing to change" error, so the three cannot disagree.
 */
#define CMD_TENANT_FLAGS(X) \
	X("weight", "W", "fair-share weight, 1 or more (default 1)", \
	    "weight", CMD_TENANT_WEIGHT, 0) \
	X("priority", "P", "default priority class: low, normal or high (default normal)", \
	    "priority", CMD_TENANT_PRIORITY, 0) \
	X("max-concurrent", "N", "quota: programs queued or running at once (0: server default)", \
	    "quota.max_concurrent_programs", CMD_TENANT_QUOTA32, \
	    offsetof(Certa__V1__Quota, max_concurrent_programs)) \
	X("tokens-per-minute", "N", "quota: decode + probe tokens per minute, a token bucket " \
	    "(0: server default)", \
	    "quota.tokens_per_minute", CMD_TENANT_QUOTA64, \
	    offsetof(Certa__V1__Quota, tokens_per_minute)) \
	X("max-budget", "N", "quota: largest token budget of one program (0: server default)", \
	    "quota.max_budget_per_program", CMD_TENANT_QUOTA64, \
	    offsetof(Certa__V1__Quota, max_budget_per_program)) \
	X("max-sc-n", "N", "quota: most self-consistency chains per program (0: server default)", \
	    "quota.max_sc_n", CMD_TENANT_QUOTA32, offsetof(Certa__V1__Quota, max_sc_n)) \
	X("max-prompt-bytes", "N", "quota: longest problem text in bytes (0: server default)", \
	    "quota.max_prompt_bytes", CMD_TENANT_QUOTA32, \
	    offsetof(Certa__V1__Quota, max_prompt_bytes)) \
	X("policy", "NAME", "policy reference (\"\": the global default policy)", \
	    "policy", CMD_TENANT_POLICY, 0)

#define CMD_TENANT_OPTION(option, metavar, help, field, kind, offset) \
	{ option, metavar, help },
#define CMD_TENANT_FLAG(option, metavar, help, field, kind, offset) \
	{ option, field, kind, offset },
#define CMD_TENANT_FLAG_NAME(option, metavar, help, field, kind, offset) \
	"--" option ", "

static const struct cmd_option cmd_tenant_options[] = {
	CMD_TENANT_FLAGS(CMD_TENANT_OPTION)
	{ NULL, NULL, NULL },
};

static const struct cmd_tenant_flag {
	const char *option;
	const char *field;
	enum cmd_tenant_kind kind;
	size_t offset;
} cmd_tenant_flags[] = {
	CMD_TENANT_FLAGS(CMD_TENANT_FLAG)
};
#define CMD_TENANT_NFLAGS (sizeof cmd_tenant_flags / sizeof cmd_tenant_flags[0])

/* "--weight, --priority, ..., --policy, " (the caller drops the last ", "). */
static const char cmd_tenant_flag_names[] = CMD_TENANT_FLAGS(CMD_TENANT_FLAG_NAME);

const struct cmd_entry cmd_tenant_add_entry = {
	.name = "tenant add",
	.usage = "NAME",
	.summary = "create a tenant and print its first API key",
	.help =
	    "Creates tenant NAME with the given weight, priority, quotas and policy (unset\n"
	    "ones take the server defaults) and prints its first API key:\n"
	    "  created tenant acme\n"
	    "  api key: KEY\n"
	    "The key is shown only this once (the server stores only its hash); a warning on\n"
	    "standard error says so.  With --json: {\"tenant\":{...},\"api_key\":\"KEY\"}.",
	.options = cmd_tenant_options,
	.min_args = 1,
	.max_args = 1,
	.admin = 1,
	.exec = cmd_tenant_add,
};

const struct cmd_entry cmd_tenant_list_entry = {
	.name = "tenant list",
	.usage = "",
	.summary = "list tenants with their weights and quotas",
	.help = "Lists the tenants as a table:\n"
	    "  NAME WEIGHT PRIORITY POLICY MAX_PROGRAMS TOKENS/MIN MAX_BUDGET MAX_SC_N\n"
	    "  MAX_PROMPT KEYS\n"
	    "where - is the server default and KEYS counts the keys not revoked; with\n"
	    "--json, one tenant object per line.",
	.options = NULL,
	.min_args = 0,
	.max_args = 0,
	.admin = 1,
	.exec = cmd_tenant_list,
};

const struct cmd_entry cmd_tenant_show_entry = {
	.name = "tenant show",
	.usage = "NAME",
	.summary = "show a tenant: settings, quotas, API keys",
	.help = "Shows tenant NAME: weight, priority, policy, each quota and its API keys (their\n"
	    "public key ids, never the secrets).",
	.options = NULL,
	.min_args = 1,
	.max_args = 1,
	.admin = 1,
	.exec = cmd_tenant_show,
};

const struct cmd_entry cmd_tenant_set_entry = {
	.name = "tenant set",
	.usage = "NAME",
	.summary = "change weight, priority, quotas or policy",
	.help = "Changes only the settings given as options; the others keep their values.\n"
	    "Prints the tenant as `certactl tenant show` does.  Example:\n"
	    "  certactl tenant set acme --weight 4 --max-concurrent 16",
	.options = cmd_tenant_options,
	.min_args = 1,
	.max_args = 1,
	.admin = 1,
	.exec = cmd_tenant_set,
};

const struct cmd_entry cmd_tenant_rm_entry = {
	.name = "tenant rm",
	.usage = "NAME",
	.summary = "delete a tenant",
	.help = "Deletes tenant NAME, its API keys and its policy (with its history).  Refused\n"
	    "(FAILED_PRECONDITION) while the tenant has programs queued or running: cancel them\n"
	    "first.  Its finished programs are nobody's from then on, also for a tenant created\n"
	    "again under the same name, and retention removes them.",
	.options = NULL,
	.min_args = 1,
	.max_args = 1,
	.admin = 1,
	.exec = cmd_tenant_rm,
};

static const struct cmd_option cmd_tenant_rotate_options[] = {
	{ "revoke-others", NULL, "revoke every other key of the tenant at the same time" },
	{ NULL, NULL, NULL },
};

const struct cmd_entry cmd_tenant_key_rotate_entry = {
	.name = "tenant key rotate",
	.usage = "NAME",
	.summary = "make a new API key for a tenant",
	.help = "Creates a new API key for tenant NAME and prints it:\n"
	    "  api key: KEY\n"
	    "  key id:  ID\n"
	    "The key is shown only this once.  The old keys keep working until revoked\n"
	    "(--revoke-others, or `certactl tenant key revoke NAME KEY_ID`), so clients can\n"
	    "switch over first.  With --json: {\"tenant\":...,\"api_key\":...,\"info\":{...},\n"
	    "\"revoked_others\":false}.",
	.options = cmd_tenant_rotate_options,
	.min_args = 1,
	.max_args = 1,
	.admin = 1,
	.exec = cmd_tenant_key_rotate,
};

const struct cmd_entry cmd_tenant_key_revoke_entry = {
	.name = "tenant key revoke",
	.usage = "NAME KEY_ID",
	.summary = "revoke one API key of a tenant",
	.help = "Revokes the key KEY_ID (as `certactl tenant show NAME` lists it) of tenant\n"
	    "NAME; requests with it are refused with UNAUTHENTICATED from then on.",
	.options = NULL,
	.min_args = 2,
	.max_args = 2,
	.admin = 1,
	.exec = cmd_tenant_key_revoke,
};

static const Certa__V1__Quota cmd_tenant_no_quota = CERTA__V1__QUOTA__INIT;

/* --- output ------------------------------------------------------------------------------ */

/* UNSPECIFIED is NORMAL (common.proto); NULL for a value newer than this build. */
static const char *
cmd_tenant_priority(Certa__V1__Priority p)
{
	return p == CERTA__V1__PRIORITY__PRIORITY_UNSPECIFIED ? "normal" : names_priority(p);
}

static const Certa__V1__Quota *
cmd_tenant_quota(const Certa__V1__Tenant *t)
{
	return t->quota != NULL ? t->quota : &cmd_tenant_no_quota;
}

/* {"key_id":...,"created_unix_ms":...,"revoked":false,"revoked_unix_ms":0} */
static void
cmd_tenant_key_json(struct jsonw *w, const Certa__V1__ApiKeyInfo *k)
{
	jsonw_object_begin(w);
	jsonw_kstring(w, "key_id", k->key_id);
	jsonw_kint(w, "created_unix_ms", k->created_unix_ms);
	jsonw_kbool(w, "revoked", k->revoked);
	jsonw_kint(w, "revoked_unix_ms", k->revoked_unix_ms);
	jsonw_object_end(w);
}

/* {"name":...,"weight":1,"priority":"normal","policy":"","created_unix_ms":...,
 *  "quota":{"max_concurrent_programs":0,"tokens_per_minute":0,"max_budget_per_program":0,
 *  "max_sc_n":0,"max_prompt_bytes":0},"keys":[{...}]}  (0 in a quota: server default) */
static void
cmd_tenant_json(struct jsonw *w, const Certa__V1__Tenant *t)
{
	const Certa__V1__Quota *q = cmd_tenant_quota(t);
	size_t i;

	jsonw_object_begin(w);
	jsonw_kstring(w, "name", t->name);
	jsonw_kuint(w, "weight", t->weight);
	jsonw_kstring(w, "priority", cmd_tenant_priority(t->priority));
	jsonw_kstring(w, "policy", t->policy);
	jsonw_kint(w, "created_unix_ms", t->created_unix_ms);
	jsonw_key(w, "quota");
	jsonw_object_begin(w);
	jsonw_kuint(w, "max_concurrent_programs", q->max_concurrent_programs);
	jsonw_kuint(w, "tokens_per_minute", q->tokens_per_minute);
	jsonw_kuint(w, "max_budget_per_program", q->max_budget_per_program);
	jsonw_kuint(w, "max_sc_n", q->max_sc_n);
	jsonw_kuint(w, "max_prompt_bytes", q->max_prompt_bytes);
	jsonw_object_end(w);
	jsonw_key(w, "keys");
	jsonw_array_begin(w);
	for (i = 0; i < t->n_keys; i++)
		cmd_tenant_key_json(w, t->keys[i]);
	jsonw_array_end(w);
	jsonw_object_end(w);
}

/* A quota value, "-" for 0 (server default). */
static void
cmd_tenant_quota_cell(struct table *tb, uint64_t v)
{
	if (v == 0)
		table_cell(tb, "-");
	else
		table_cellf(tb, "%" PRIu64, v);
}

static size_t
cmd_tenant_active_keys(const Certa__V1__Tenant *t)
{
	size_t i, n = 0;

	for (i = 0; i < t->n_keys; i++)
		n += !t->keys[i]->revoked;
	return n;
}

/* Width of the labels of `tenant show` (`label:   value` lines). */
#define CMD_TENANT_LABEL_COLS 26

static void
cmd_tenant_quota_line(const char *label, uint64_t v)
{
	output_label(label, CMD_TENANT_LABEL_COLS);
	if (v == 0)
		printf("- (server default)\n");
	else
		printf("%" PRIu64 "\n", v);
}

static int
cmd_tenant_show_text(const Certa__V1__Tenant *t)
{
	static const char *const head[] = { "KEY_ID", "CREATED", "REVOKED" };
	const Certa__V1__Quota *q = cmd_tenant_quota(t);
	struct table *tb;
	char tbuf[32];
	size_t i;
	int rc;

	output_label("name:", CMD_TENANT_LABEL_COLS);
	output_text(stdout, t->name, 0);
	fputc('\n', stdout);
	output_label("weight:", CMD_TENANT_LABEL_COLS);
	printf("%" PRIu32 "\n", t->weight);
	output_label("priority:", CMD_TENANT_LABEL_COLS);
	printf("%s\n", output_or_dash(cmd_tenant_priority(t->priority)));
	output_label("policy:", CMD_TENANT_LABEL_COLS);
	if (*t->policy)
		output_text(stdout, t->policy, 0);
	else
		fputs("- (the global default)", stdout);
	fputc('\n', stdout);
	output_label("created:", CMD_TENANT_LABEL_COLS);
	printf("%s\n", output_time(tbuf, sizeof tbuf, t->created_unix_ms));
	cmd_tenant_quota_line("max_concurrent_programs:", q->max_concurrent_programs);
	cmd_tenant_quota_line("tokens_per_minute:", q->tokens_per_minute);
	cmd_tenant_quota_line("max_budget_per_program:", q->max_budget_per_program);
	cmd_tenant_quota_line("max_sc_n:", q->max_sc_n);
	cmd_tenant_quota_line("max_prompt_bytes:", q->max_prompt_bytes);
	if (t->n_keys == 0) {
		output_label("keys:", CMD_TENANT_LABEL_COLS);
		printf("none\n");
		return 0;
	}
	printf("keys:\n");
	if (table_new(head, "lll", 3, &tb) != 0)
		return -ENOMEM;
	table_set_indent(tb, 2);
	for (i = 0; i < t->n_keys; i++) {
		table_cell(tb, t->keys[i]->key_id);
		table_cell(tb, output_time(tbuf, sizeof tbuf, t->keys[i]->created_unix_ms));
		table_cell(tb, t->keys[i]->revoked ?
		    output_time(tbuf, sizeof tbuf, t->keys[i]->revoked_unix_ms) : "-");
	}
	rc = table_print(tb, stdout);
	table_free(tb);
	return rc;
}

static int
cmd_tenant_list_text(Certa__V1__Tenant *const *ts, size_t n)
{
	static const char *const head[] = { "NAME", "WEIGHT", "PRIORITY", "POLICY",
	    "MAX_PROGRAMS", "TOKENS/MIN", "MAX_BUDGET", "MAX_SC_N", "MAX_PROMPT", "KEYS" };
	struct table *tb;
	size_t i;
	int rc;

	if (table_new(head, "lrllrrrrrr", 10, &tb) != 0)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		const Certa__V1__Tenant *t = ts[i];
		const Certa__V1__Quota *q = cmd_tenant_quota(t);

		table_cell(tb, t->name);
		table_cellf(tb, "%" PRIu32, t->weight);
		table_cell(tb, cmd_tenant_priority(t->priority));
		table_cell(tb, t->policy);
		cmd_tenant_quota_cell(tb, q->max_concurrent_programs);
		cmd_tenant_quota_cell(tb, q->tokens_per_minute);
		cmd_tenant_quota_cell(tb, q->max_budget_per_program);
		cmd_tenant_quota_cell(tb, q->max_sc_n);
		cmd_tenant_quota_cell(tb, q->max_prompt_bytes);
		table_cellf(tb, "%zu", cmd_tenant_active_keys(t));
	}
	rc = table_print(tb, stdout);
	table_free(tb);
	return rc;
}

/* Prints the Tenant reply of GetTenant or UpdateTenant (show, set) as text or one JSON line. */
static int
cmd_tenant_print(struct output *out, const ProtobufCMessage *reply, const void *arg)
{
	const Certa__V1__Tenant *t = (const Certa__V1__Tenant *)reply;

	if (!output_is_json(out))
		return cmd_tenant_show_text(t);
	cmd_tenant_json(output_jsonw(out), t);
	return output_json_line(out);
}

/* `tenant list`: the table, or one tenant object per line. */
static int
cmd_tenant_print_list(struct output *out, const ProtobufCMessage *reply, const void *arg)
{
	const Certa__V1__ListTenantsReply *r = (const Certa__V1__ListTenantsReply *)reply;
	size_t i;
	int rc;

	if (!output_is_json(out))
		return cmd_tenant_list_text(r->tenants, r->n_tenants);
	for (rc = 0, i = 0; rc == 0 && i < r->n_tenants; i++) {
		cmd_tenant_json(output_jsonw(out), r->tenants[i]);
		rc = output_json_line(out);
	}
	return rc;
}

/* `created tenant NAME` and `api key: KEY`, or {"tenant":{...},"api_key":...}; arg is the
 * NAME asked for, shown when the reply carries no tenant. */
static int
cmd_tenant_print_created(struct output *out, const ProtobufCMessage *reply, const void *arg)
{
	const Certa__V1__CreateTenantReply *r = (const Certa__V1__CreateTenantReply *)reply;
	struct jsonw *w;

	if (output_is_json(out)) {
		w = output_jsonw(out);
		jsonw_object_begin(w);
		jsonw_key(w, "tenant");
		if (r->tenant != NULL)
			cmd_tenant_json(w, r->tenant);
		else
			jsonw_null(w);
		jsonw_kstring(w, "api_key", r->api_key);
		jsonw_object_end(w);
		return output_json_line(out);
	}
	fputs("created tenant ", stdout);
	output_text(stdout, r->tenant != NULL && *r->tenant->name ? r->tenant->name :
	    (const char *)arg, 0);
	fputs("\napi key: ", stdout);
	output_text(stdout, r->api_key, 0);
	fputc('\n', stdout);
	return 0;
}

/* `api key: KEY`, `key id:  ID` (and whether the others were revoked), or
 * {"tenant":...,"api_key":...,"info":{...},"revoked_others":false}; arg is the request. */
static int
cmd_tenant_print_rotated(struct output *out, const ProtobufCMessage *reply, const void *arg)
{
	const Certa__V1__RotateKeyReply *r = (const Certa__V1__RotateKeyReply *)reply;
	const Certa__V1__RotateKeyRequest *req = arg;
	struct jsonw *w;

	if (output_is_json(out)) {
		w = output_jsonw(out);
		jsonw_object_begin(w);
		jsonw_kstring(w, "tenant", req->tenant);
		jsonw_kstring(w, "api_key", r->api_key);
		jsonw_key(w, "info");
		if (r->info != NULL)
			cmd_tenant_key_json(w, r->info);
		else
			jsonw_null(w);
		jsonw_kbool(w, "revoked_others", req->revoke_others);
		jsonw_object_end(w);
		return output_json_line(out);
	}
	fputs("api key: ", stdout);
	output_text(stdout, r->api_key, 0);
	fputs("\nkey id:  ", stdout);
	output_text(stdout, r->info != NULL ? r->info->key_id : NULL, 0);
	fputc('\n', stdout);
	if (req->revoke_others) {
		fputs("the other keys of ", stdout);
		output_text(stdout, req->tenant, 0);
		fputs(" are revoked\n", stdout);
	}
	return 0;
}

/* `deleted tenant NAME` or {"name":...,"deleted":true}; arg is the NAME. */
static int
cmd_tenant_print_deleted(struct output *out, const ProtobufCMessage *reply, const void *arg)
{
	struct jsonw *w = output_jsonw(out);

	if (!output_is_json(out)) {
		fputs("deleted tenant ", stdout);
		output_text(stdout, arg, 0);
		fputc('\n', stdout);
		return 0;
	}
	jsonw_object_begin(w);
	jsonw_kstring(w, "name", arg);
	jsonw_kbool(w, "deleted", true);
	jsonw_object_end(w);
	return output_json_line(out);
}

/* `revoked key ID of tenant NAME` or {"tenant":...,"key_id":...,"revoked":true}; arg is the
 * request. */
static int
cmd_tenant_print_revoked(struct output *out, const ProtobufCMessage *reply, const void *arg)
{
	const Certa__V1__RevokeKeyRequest *req = arg;
	struct jsonw *w = output_jsonw(out);

	if (!output_is_json(out)) {
		fputs("revoked key ", stdout);
		output_text(stdout, req->key_id, 0);
		fputs(" of tenant ", stdout);
		output_text(stdout, req->tenant, 0);
		fputc('\n', stdout);
		return 0;
	}
	jsonw_object_begin(w);
	jsonw_kstring(w, "tenant", req->tenant);
	jsonw_kstring(w, "key_id", req->key_id);
	jsonw_kbool(w, "revoked", true);
	jsonw_object_end(w);
	return output_json_line(out);
}

/* The warning that goes with every newly shown key. */
static void
cmd_tenant_key_warning(const char *key)
{
	if (key == NULL || *key == '\0') {
		fprintf(stderr, "certactl: warning: the server sent no API key\n");
		return;
	}
	fprintf(stderr, "certactl: warning: this API key is shown only now; the server keeps "
	    "only its hash.\ncertactl: store it safely (a lost key is replaced with `certactl "
	    "tenant key rotate`).\n");
}

/*
 * Prints a reply that carries a new API key (add, rotate) with print, then the warning that
 * goes with it, and frees the reply.  The key exists on the server from now on and is shown
 * nowhere else, so without memory for a printer it is still printed, plainly.
 */
static int
cmd_tenant_print_key(struct cmd_ctx *ctx, ProtobufCMessage *reply, const char *api_key,
    cmd_admin_print_fn print, const void *arg)
{
	struct output *out;
	int rc;

	if (output_new(ctx->json, &out) != 0) {
		fputs("api key: ", stdout);
		output_text(stdout, api_key, 0);
		fputc('\n', stdout);
		protobuf_c_message_free_unpacked(reply, NULL);
		return cmd_admin_exit(-ENOMEM);
	}
	rc = print(out, reply, arg);
	fflush(stdout);
	cmd_tenant_key_warning(api_key);
	output_free(out);
	protobuf_c_message_free_unpacked(reply, NULL);
	return cmd_admin_exit(rc);
}

/* --- calls ------------------------------------------------------------------------------- */

/*
 * Fills t and its quota q from the options that were given and lists their field paths in
 * fields (room for CMD_TENANT_NFLAGS).  Returns CLI_EXIT_OK or a usage error.
 */
static int
cmd_tenant_fill(const struct cmd_args *args, Certa__V1__Tenant *t, Certa__V1__Quota *q,
    char **fields, size_t *nfields)
{
	const struct cmd_tenant_flag *f;
	const char *s;
	uint64_t v = 0;
	size_t i;
	int rc;

	*nfields = 0;
	for (i = 0; i < CMD_TENANT_NFLAGS; i++) {
		f = &cmd_tenant_flags[i];
		s = cmd_args_get(args, f->option);
		if (s == NULL)
			continue;
		switch (f->kind) {
		case CMD_TENANT_WEIGHT:
			if ((rc = cmd_args_uint(args, f->option, 1, UINT32_MAX, &v)) != CLI_EXIT_OK)
				return rc;
			t->weight = (uint32_t)v;
			break;
		case CMD_TENANT_PRIORITY:
			if (names_priority_parse(s, &t->priority) != 0)
				return cmd_usage_error(args, "--priority expects %s, not '%s'",
				    names_priority_choices(), s);
			break;
		case CMD_TENANT_QUOTA32:
			if ((rc = cmd_args_uint(args, f->option, 0, UINT32_MAX, &v)) != CLI_EXIT_OK)
				return rc;
			*(uint32_t *)(void *)((char *)q + f->offset) = (uint32_t)v;
			break;
		case CMD_TENANT_QUOTA64:
			if ((rc = cmd_args_uint(args, f->option, 0, UINT64_MAX, &v)) != CLI_EXIT_OK)
				return rc;
			*(uint64_t *)(void *)((char *)q + f->offset) = v;
			break;
		case CMD_TENANT_POLICY:
			t->policy = (char *)s;
			break;
		}
		fields[(*nfields)++] = (char *)f->field;
	}
	return CLI_EXIT_OK;
}

/* --- commands ---------------------------------------------------------------------------- */

static int
cmd_tenant_add(struct cmd_ctx *ctx, const struct cmd_args *args)
{
	Certa__V1__CreateTenantRequest req = CERTA__V1__CREATE_TENANT_REQUEST__INIT;
	Certa__V1__Tenant t = CERTA__V1__TENANT__INIT;
	Certa__V1__Quota q = CERTA__V1__QUOTA__INIT;
	ProtobufCMessage *reply;
	char *fields[CMD_TENANT_NFLAGS];
	size_t nfields;
	int rc;

	t.name = (char *)cmd_args_at(args, 0);
	if ((rc = cmd_args_nonempty(args, 0, "tenant NAME")) != CLI_EXIT_OK ||
	    (rc = cmd_tenant_fill(args, &t, &q, fields, &nfields)) != CLI_EXIT_OK)
		return rc;
	t.quota = &q;
	req.tenant = &t;
	rc = cmd_admin_call(ctx, "CreateTenant", &req.base, &reply);
	if (rc != CLI_EXIT_OK)
		return rc;
	return cmd_tenant_print_key(ctx, reply,
	    ((const Certa__V1__CreateTenantReply *)reply)->api_key, cmd_tenant_print_created,
	    t.name);
}

static int
cmd_tenant_list(struct cmd_ctx *ctx, const struct cmd_args *args)
{
	Certa__V1__ListTenantsRequest req = CERTA__V1__LIST_TENANTS_REQUEST__INIT;

	return cmd_admin_run(ctx, "ListTenants", &req.base, cmd_tenant_print_list, NULL);
}

static int
cmd_tenant_show(struct cmd_ctx *ctx, const struct cmd_args *args)
{
	Certa__V1__TenantRef req = CERTA__V1__TENANT_REF__INIT;
	int rc;

	req.name = (char *)cmd_args_at(args, 0);
	if ((rc = cmd_args_nonempty(args, 0, "tenant NAME")) != CLI_EXIT_OK)
		return rc;
	return cmd_admin_run(ctx, "GetTenant", &req.base, cmd_tenant_print, NULL);
}

static int
cmd_tenant_set(struct cmd_ctx *ctx, const struct cmd_args *args)
{
	Certa__V1__UpdateTenantRequest req = CERTA__V1__UPDATE_TENANT_REQUEST__INIT;
	Certa__V1__Tenant t = CERTA__V1__TENANT__INIT;
	Certa__V1__Quota q = CERTA__V1__QUOTA__INIT;
	char *fields[CMD_TENANT_NFLAGS];
	size_t nfields;
	int rc;

	t.name = (char *)cmd_args_at(args, 0);
	if ((rc = cmd_args_nonempty(args, 0, "tenant NAME")) != CLI_EXIT_OK ||
	    (rc = cmd_tenant_fill(args, &t, &q, fields, &nfields)) != CLI_EXIT_OK)
		return rc;
	if (nfields == 0)
		return cmd_usage_error(args, "nothing to change: give at least one of %.*s",
		    (int)(sizeof cmd_tenant_flag_names - 3), cmd_tenant_flag_names);
	t.quota = &q;
	req.tenant = &t;
	req.fields = fields;
	req.n_fields = nfields;
	return cmd_admin_run(ctx, "UpdateTenant", &req.base, cmd_tenant_print, NULL);
}

static int
cmd_tenant_rm(struct cmd_ctx *ctx, const struct cmd_args *args)
{
	Certa__V1__TenantRef req = CERTA__V1__TENANT_REF__INIT;
	int rc;

	req.name = (char *)cmd_args_at(args, 0);
	if ((rc = cmd_args_nonempty(args, 0, "tenant NAME")) != CLI_EXIT_OK)
		return rc;
	return cmd_admin_run(ctx, "DeleteTenant", &req.base, cmd_tenant_print_deleted, req.name);
}

static int
cmd_tenant_key_rotate(struct cmd_ctx *ctx, const struct cmd_args *args)
{
	Certa__V1__RotateKeyRequest req = CERTA__V1__ROTATE_KEY_REQUEST__INIT;
	ProtobufCMessage *reply;
	int rc;

	req.tenant = (char *)cmd_args_at(args, 0);
	req.revoke_others = cmd_args_get(args, "revoke-others") != NULL;
	if ((rc = cmd_args_nonempty(args, 0, "tenant NAME")) != CLI_EXIT_OK)
		return rc;
	rc = cmd_admin_call(ctx, "RotateKey", &req.base, &reply);
	if (rc != CLI_EXIT_OK)
		return rc;
	return cmd_tenant_print_key(ctx, reply,
	    ((const Certa__V1__RotateKeyReply *)reply)->api_key, cmd_tenant_print_rotated, &req);
}

static int
cmd_tenant_key_revoke(struct cmd_ctx *ctx, const struct cmd_args *args)
{
	Certa__V1__RevokeKeyRequest req = CERTA__V1__REVOKE_KEY_REQUEST__INIT;
	int rc;

	req.tenant = (char *)cmd_args_at(args, 0);
	req.key_id = (char *)cmd_args_at(args, 1);
	if ((rc = cmd_args_nonempty(args, 0, "tenant NAME")) != CLI_EXIT_OK ||
	    (rc = cmd_args_nonempty(args, 1, "KEY_ID")) != CLI_EXIT_OK)
		return rc;
	return cmd_admin_run(ctx, "RevokeKey", &req.base, cmd_tenant_print_revoked, &req);
}
