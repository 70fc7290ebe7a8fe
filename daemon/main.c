/*
 * certad — the certa control daemon.
 *
 *   certad [--config FILE] [--listen ADDR] [--state-dir DIR] [--worker ADDR]...
 *          [--set KEY=VALUE]... [--port-file FILE] [--log-level LEVEL] [--check-config]
 *          [--print-config] [--print-config-man] [--init-state] [--verify-state]
 *
 * Signals: SIGTERM/SIGINT drain (stop accepting, finish in-flight steps, persist, exit 0);
 * SIGHUP reloads the configuration (a bad file is reported and the old one stays).
 */
#include <errno.h>
#include <stddef.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <grpc/grpc_security.h>
#include <event2/event.h>

#include "daemon/admin.h"
#include "daemon/auth.h"
#include "daemon/core.h"
#include "daemon/openai.h"
#include "daemon/telemetry.h"
#include "daemon/tenants.h"
#include "lib/health.h"
#include "lib/reflection.h"
#include "lib/metrics.h"
#include "lib/sdnotify.h"
#include "daemon/pool.h"
#include "daemon/reasoning.h"
#include "daemon/route.h"
#include "daemon/shadow.h"
#include "lib/cmdline.h"
#include "lib/config.h"
#include "lib/cred.h"
#include "lib/error.h"
#include "lib/log.h"
#include "lib/fileio.h"
#include "lib/proc.h"
#include "lib/rpc_server.h"
#include "lib/version.h"
#include "scheduler/policy.h"
#include "scheduler/sched.h"
#include "store/store.h"

static const char *const dmain_levels[] = { "err", "warn", "notice", "info", "debug", NULL };

static const struct config_option dmain_options[] = {
	{ .name = "listen",
	  .type = CONFIG_STRING,
	  .def = "127.0.0.1:7700",
	  .help = "gRPC address of the Reasoning service (host:port; port 0 = any free port)" },
	{ .name = "state_dir",
	  .type = CONFIG_STRING,
	  .def = "/var/lib/certa",
	  .help = "directory of the LMDB environment (programs, history, tenants, policies)" },
	{ .name = "map_size",
	  .type = CONFIG_SIZE,
	  .def = "64M",
	  .min = 1048576,
	  .max = 1099511627776.0,
	  .help = "initial LMDB map size; grows automatically up to max_map_size" },
	{ .name = "max_map_size",
	  .type = CONFIG_SIZE,
	  .def = "64G",
	  .min = 1048576,
	  .max = 17592186044416.0,
	  .help = "largest LMDB map size the store may grow to" },
	{ .name = "log_level",
	  .type = CONFIG_ENUM,
	  .def = "info",
	  .choices = dmain_levels,
	  .help = "log level" },
	{ .name = "port_file",
	  .type = CONFIG_STRING,
	  .help = "write the bound port here once listening (for supervisors and tests)" },
	{ .name = "workers.worker",
	  .type = CONFIG_LIST,
	  .help = "worker address (host:port); repeat the line for each worker" },
	{ .name = "workers.health_interval",
	  .type = CONFIG_DURATION,
	  .def = "1s",
	  .min = 50,
	  .max = 3600000,
	  .help = "period of Info health checks on each worker" },
	{ .name = "workers.info_timeout",
	  .type = CONFIG_DURATION,
	  .def = "2s",
	  .min = 10,
	  .max = 600000,
	  .help = "deadline of one health check" },
	{ .name = "workers.step_timeout",
	  .type = CONFIG_DURATION,
	  .def = "30s",
	  .min = 100,
	  .max = 3600000,
	  .help = "deadline of one Step call" },
	{ .name = "workers.max_attempts",
	  .type = CONFIG_INT,
	  .def = "5",
	  .min = 1,
	  .max = 1000,
	  .help = "failed steps in a row before a program fails" },
	{ .name = "workers.retry_backoff",
	  .type = CONFIG_DURATION,
	  .def = "200ms",
	  .min = 0,
	  .max = 600000,
	  .help = "wait before retrying a failed step (times the attempt number)" },
	{ .name = "workers.max_inflight",
	  .type = CONFIG_INT,
	  .def = "0",
	  .min = 0,
	  .max = 1000000,
	  .help = "chains in flight per worker (its step slots; 0 = the worker's capacity)" },
	{ .name = "workers.token_file",
	  .type = CONFIG_STRING,
	  .help = "file holding the shared worker token, sent as 'authorization: Bearer' on "
	          "every Worker call (first line, at least 16 characters; the workers' "
	          "--token-file)" },
	{ .name = "workers.tls_ca",
	  .type = CONFIG_STRING,
	  .help = "CA bundle that signs the workers' certificates (PEM); set: certad talks TLS "
	          "to every worker, whose certificate must name the host of its workers.worker "
	          "address" },
	{ .name = "workers.tls_cert",
	  .type = CONFIG_STRING,
	  .help = "client certificate certad presents to workers (PEM; mTLS, needs "
	          "workers.tls_ca)" },
	{ .name = "workers.tls_key",
	  .type = CONFIG_STRING,
	  .help = "private key of workers.tls_cert (PEM)" },
	{ .name = "policy.file",
	  .type = CONFIG_STRING,
	  .help = "default scheduling policy file (empty: the built-in calibrated policy); "
	          "per-tenant overrides are set with certactl policy" },
	{ .name = "auth.anonymous_tenant",
	  .type = CONFIG_STRING,
	  .help = "callers without an API key act as this tenant (empty: keys are required)" },
	{ .name = "admin.token_file",
	  .type = CONFIG_STRING,
	  .help = "file holding the admin bearer token for the Admin service over TCP" },
	{ .name = "admin.socket",
	  .type = CONFIG_STRING,
	  .def = "/run/certa/admin.sock",
	  .help = "unix socket serving Admin without a token (mode 0660: the service's group); "
	          "empty disables" },
	{ .name = "tls.listen",
	  .type = CONFIG_STRING,
	  .help = "mTLS listener address (host:port); needs tls.cert, tls.key and tls.ca" },
	{ .name = "tls.cert",
	  .type = CONFIG_STRING,
	  .help = "server certificate (PEM)" },
	{ .name = "tls.key",
	  .type = CONFIG_STRING,
	  .help = "server private key (PEM)" },
	{ .name = "tls.ca",
	  .type = CONFIG_STRING,
	  .help = "CA bundle that signs client certificates (PEM)" },
	{ .name = "tls.admin_cn",
	  .type = CONFIG_LIST,
	  .help = "client certificate common name with admin rights; repeat for each" },
	{ .name = "quota.max_concurrent_programs",
	  .type = CONFIG_INT,
	  .def = "1000",
	  .min = 0,
	  .max = 100000000,
	  .help = "default per-tenant limit of programs in progress (0 = unlimited)" },
	{ .name = "quota.tokens_per_minute",
	  .type = CONFIG_INT,
	  .def = "0",
	  .min = 0,
	  .max = 1e15,
	  .help = "default per-tenant decode+probe tokens per minute (0 = unlimited)" },
	{ .name = "quota.max_budget_per_program",
	  .type = CONFIG_INT,
	  .def = "0",
	  .min = 0,
	  .max = 1e12,
	  .help = "default per-tenant token budget limit per program (0 = the policy's "
	          "max_budget)" },
	{ .name = "quota.max_sc_n",
	  .type = CONFIG_INT,
	  .def = "0",
	  .min = 0,
	  .max = 64,
	  .help = "default per-tenant limit on sc chains (0 = the policy's max_sc_n)" },
	{ .name = "quota.max_prompt_bytes",
	  .type = CONFIG_SIZE,
	  .def = "0",
	  .min = 0,
	  .max = 16777216,
	  .help = "default per-tenant problem size limit (0 = limits.max_prompt_bytes)" },
	{ .name = "retention.max_age",
	  .type = CONFIG_DURATION,
	  .def = "720h",
	  .min = 0,
	  .max = 3.2e11,
	  .help = "finished programs, their chains and history older than this are removed (0 = "
	          "keep)" },
	{ .name = "retention.interval",
	  .type = CONFIG_DURATION,
	  .def = "1h",
	  .min = 100,
	  .max = 86400000,
	  .help = "how often old programs are pruned (at most 1000 per run)" },
	{ .name = "metrics.address",
	  .type = CONFIG_STRING,
	  .def = "127.0.0.1",
	  .help = "address of the HTTP endpoint serving /metrics, /healthz and /readyz" },
	{ .name = "metrics.port",
	  .type = CONFIG_INT,
	  .def = "7780",
	  .min = -1,
	  .max = 65535,
	  .help = "port of the metrics endpoint (0 = any free port, -1 = disabled)" },
	{ .name = "metrics.per_tenant",
	  .type = CONFIG_BOOL,
	  .def = "true",
	  .help = "one series per tenant in the tenant-labelled families (false: one for all "
	          "tenants, tenant=\"_all\"; the system account \"_system\" stays apart): for "
	          "thousands of tenants; restart to apply" },
	{ .name = "metrics.port_file",
	  .type = CONFIG_STRING,
	  .help = "write the metrics port here once listening (for tests)" },
	{ .name = "metrics.stall_timeout",
	  .type = CONFIG_DURATION,
	  .def = "2s",
	  .min = 100,
	  .max = 3600000,
	  .help = "/healthz and /readyz answer 503 \"loop stalled\" once the loop thread has not "
	          "run its heartbeat (every 50 ms) for this long (they are served by their own "
	          "thread; a liveness probe on /healthz should allow for slow disks); reloaded "
	          "on SIGHUP" },
	{ .name = "http.listen",
	  .type = CONFIG_STRING,
	  .help = "address of the OpenAI-compatible HTTP API (host:port; port 0 = any free "
	          "port; empty = off): /v1/chat/completions, /v1/completions, /v1/models "
	          "(docs/http-api.md)" },
	{ .name = "http.tls",
	  .type = CONFIG_BOOL,
	  .def = "false",
	  .help = "serve the HTTP API over TLS (https) with tls.cert and tls.key; clients "
	          "authenticate with API keys, no client certificate is asked" },
	{ .name = "http.port_file",
	  .type = CONFIG_STRING,
	  .help = "write the HTTP API's port here once listening (for tests)" },
	{ .name = "limits.max_prompt_bytes",
	  .type = CONFIG_SIZE,
	  .def = "64K",
	  .min = 1,
	  .max = 16777216,
	  .help = "largest problem text accepted" },
	{ .name = "limits.tick",
	  .type = CONFIG_DURATION,
	  .def = "50ms",
	  .min = 1,
	  .max = 10000,
	  .help = "period of the dispatch pass that retries waiting programs" },
	{ .name = "route.pool",
	  .type = CONFIG_LIST,
	  .help = "expert routing pool: NAME MODEL [COST] [moe] (relative cost per token, default 1; "
	          "moe: a mixture-of-experts model, its top-p may rise); "
	          "adds a pool or overrides the routing policy's pool NAME; any pool line turns "
	          "routing on (docs/routing.md)" },
	{ .name = "route.policy",
	  .type = CONFIG_STRING,
	  .help = "routing policy file (policy/route.policy syntax); set, routing is on; empty: "
	          "the built-in routing policy when route.pool lines are given, else routing "
	          "is off and programs run as submitted" },
	{ .name = "route.tenant",
	  .type = CONFIG_LIST,
	  .help = "a tenant's routing rules: TENANT [pools=P1,P2] [no-hints] [no-escalation] "
	          "(pools it may use, client hints ignored, no escalation); restart to apply" },
	{ .name = "policy.model_tokens",
	  .type = CONFIG_LIST,
	  .help = "a model's typical chain length: MODEL TOKENS (its median decode tokens per "
	          "chain), the prior of its model-relative unpromising bounds until certad has "
	          "learned it from model_tokens.min_samples finished chains, when the policy "
	          "gives no model_tokens (docs/certainty.md); restart to apply" },
};
#define DMAIN_NOPTIONS (sizeof dmain_options / sizeof dmain_options[0])

struct dmain {
	struct proc *proc;
	struct rpc_server *srv;
	struct core *core;
	struct auth *auth;
	struct health *health;
	struct sdnotify *sn;
	struct telemetry *tel;
	struct metrics_http *mhttp;
	struct openai *http;  /* the OpenAI-compatible HTTP API (NULL: off) */
	int ready;
	int port;
	struct config *cfg;
	struct cmdline *cl;  /* rebuilds cfg on SIGHUP */
	int stopping;
	int exit_code;
};

static void
dmain_usage(FILE *f)
{
	fprintf(f,
	    "usage: certad [--config FILE] [--listen ADDR] [--state-dir DIR] [--worker ADDR]...\n"
	    "              [--set KEY=VALUE]... [--port-file FILE] [--log-level LEVEL]\n"
	    "              [--check-config] [--print-config] [--print-config-man] [--version]\n"
	    "              [--init-state] [--verify-state]\n"
	    "Options in the file use the names printed by --print-config; --set overrides any.\n");
}

/* Constraints across options and address syntax: everything that can be checked without the
 * network, so that --check-config, startup and SIGHUP reload agree (cmdline_load runs it). */
static int
dmain_validate(const struct config *cfg, char *err, size_t errlen)
{
	static const char *const listeners[] = { "listen", "tls.listen", "http.listen" };
	const char *const *items;
	size_t n = config_get_list(cfg, "workers.worker", &items), i;
	char sub[400];

	if (config_get_int(cfg, "map_size") > config_get_int(cfg, "max_map_size")) {
		snprintf(err, errlen, "map_size (%lld bytes) is larger than max_map_size "
		    "(%lld bytes)", config_get_int(cfg, "map_size"),
		    config_get_int(cfg, "max_map_size"));
		return CERTA_ECONFIG;
	}
	for (i = 0; i < n; i++) {
		if (config_check_address(items[i], 0, sub, sizeof sub) != 0) {
			snprintf(err, errlen, "workers.worker: %s", sub);
			return CERTA_ECONFIG;
		}
	}
	if (config_get_bool(cfg, "http.tls") && (config_get_str(cfg, "tls.cert") == NULL ||
	    config_get_str(cfg, "tls.cert")[0] == '\0' || config_get_str(cfg, "tls.key") == NULL ||
	    config_get_str(cfg, "tls.key")[0] == '\0')) {
		snprintf(err, errlen, "http.tls needs tls.cert and tls.key");
		return CERTA_ECONFIG;
	}
	for (i = 0; i < sizeof listeners / sizeof listeners[0]; i++) {
		const char *a = config_get_str(cfg, listeners[i]);
		if (a != NULL && a[0] != '\0' && config_check_address(a, 1, sub, sizeof sub) != 0) {
			snprintf(err, errlen, "%s: %s", listeners[i], sub);
			return CERTA_ECONFIG;
		}
	}
	return 0;
}

/* certad's own flags (lib/cmdline.h adds --config, --set, --check-config, --print-config...). */
static const struct cmdline_flag dmain_flags[] = {
	{ "listen", "listen" }, { "state-dir", "state_dir" }, { "worker", "workers.worker" },
	{ "port-file", "port_file" }, { "log-level", "log_level" },
	{ "init-state", NULL }, { "verify-state", NULL },
};

static const struct cmdline_program dmain_cmdline = {
	.name = "certad",
	.options = dmain_options,
	.noptions = DMAIN_NOPTIONS,
	.flags = dmain_flags,
	.nflags = sizeof dmain_flags / sizeof dmain_flags[0],
	.usage = dmain_usage,
	.validate = dmain_validate,
};

/* One line per damaged record for --verify-state, on stdout. */
static void
dmain_verify_report(enum store_db db, const char *key, const char *reason, void *arg)
{
	(void)arg;
	printf("corrupt: db=%s key=%s: %s\n", store_db_name(db), key, reason);
}

/*
 * --init-state (create the state when there is none, even in a non-empty directory or in
 * place of a lost one) and --verify-state (check every record): work on the state directory
 * only, then exit.  Returns the exit status: 0, or 1 when the state cannot be opened or
 * holds damaged records.
 */
static int
dmain_state_tool(const struct core_options *co, int verify)
{
	struct store_options so = { .map_size = co->map_size, .max_map_size = co->max_map_size,
		.create = verify ? STORE_CREATE_NEVER : STORE_CREATE_INIT };
	struct store *st;
	size_t records;
	int rc;

	rc = store_open(co->state_dir, &so, &st);
	if (rc < 0) {
		fprintf(stderr, "certad: cannot open state in %s: %s\n", co->state_dir,
		    certa_strerror(rc));
		return 1;
	}
	if (!verify) {
		printf("certad: state %s in %s is ready\n", store_state_id(st), co->state_dir);
		store_close(st);
		return 0;
	}
	rc = store_verify(st, dmain_verify_report, NULL, &records);
	store_close(st);
	if (rc < 0) {
		fprintf(stderr, "certad: cannot verify state in %s: %s\n", co->state_dir,
		    certa_strerror(rc));
		return 1;
	}
	printf("certad: %s: %zu records checked, %d corrupt\n", co->state_dir, records, rc);
	return rc > 0 ? 1 : 0;
}

/* The base scheduling policy: built-in calibrated defaults, or the configured file. */
static int
dmain_policy(const struct config *cfg, struct sched_policy *p, char *err, size_t errlen)
{
	const char *file = config_get_str(cfg, "policy.file");

	char *text;
	size_t len;
	int rc;

	sched_policy_default(p);
	if (file == NULL || file[0] == '\0')
		return sched_policy_validate(p, err, errlen);
	rc = fileio_read(file, POLICY_TEXT_MAX, &text, &len, err, errlen);
	if (rc != 0)
		return rc;
	rc = policy_parse(text, len, file, p, err, errlen);
	free(text);
	return rc;
}

/* The expert routing configuration ([route]; daemon/route.h). */
static int
dmain_route(const struct config *cfg, struct route_config *out, char *err, size_t errlen)
{
	const char *file = config_get_str(cfg, "route.policy");
	const char *const *pools, *const *tenants;
	size_t npools, ntenants;
	char *text = NULL;
	size_t len = 0;
	int rc;

	npools = config_get_list(cfg, "route.pool", &pools);
	ntenants = config_get_list(cfg, "route.tenant", &tenants);
	if (file != NULL && file[0] != '\0') {
		rc = fileio_read(file, ROUTER_TEXT_MAX, &text, &len, err, errlen);
		if (rc != 0)
			return rc;
	}
	rc = route_config_build(text, len, file, pools, npools, tenants, ntenants, out, err,
	    errlen);
	free(text);
	return rc;
}

/* Reads the admin token file (first line, trimmed) into buf. */
static int
dmain_admin_token(const struct config *cfg, char *buf, size_t len, char *err, size_t errlen)
{
	const char *path = config_get_str(cfg, "admin.token_file");
	char *tok;
	int rc;

	buf[0] = '\0';
	if (path == NULL || path[0] == '\0')
		return 0;
	rc = cred_read_token("admin.token_file", path, &tok, err, errlen);
	if (rc != 0)
		return rc;
	snprintf(buf, len, "%s", tok);
	cred_free_secret(tok);
	return 0;
}

/* What certad needs to talk to its workers: PEM text and the token, read from the files
 * named in cfg (each NULL when not configured). */
struct dmain_wcred {
	char *ca, *cert, *key, *token;
};

static void
dmain_wcred_clear(struct dmain_wcred *wc)
{
	free(wc->ca);
	free(wc->cert);
	cred_free_secret(wc->key);
	cred_free_secret(wc->token);
	memset(wc, 0, sizeof *wc);
}

/* Reads workers.tls_* and workers.token_file (also for --check-config). */
static int
dmain_wcred_load(const struct config *cfg, struct dmain_wcred *wc, char *err, size_t errlen)
{
	static const struct {
		const char *name;
		size_t off;
	} files[] = {
		{ "workers.tls_ca", offsetof(struct dmain_wcred, ca) },
		{ "workers.tls_cert", offsetof(struct dmain_wcred, cert) },
		{ "workers.tls_key", offsetof(struct dmain_wcred, key) },
	};
	const char *tok = config_get_str(cfg, "workers.token_file");
	size_t i;
	int rc;

	memset(wc, 0, sizeof *wc);
	for (i = 0; i < sizeof files / sizeof files[0]; i++) {
		const char *path = config_get_str(cfg, files[i].name);
		if (path == NULL || path[0] == '\0')
			continue;
		rc = cred_read_pem(files[i].name, path,
		    (char **)(void *)((char *)wc + files[i].off), err, errlen);
		if (rc != 0)
			goto fail;
	}
	rc = CERTA_ECONFIG;
	if ((wc->cert == NULL) != (wc->key == NULL)) {
		snprintf(err, errlen, "workers.tls_cert and workers.tls_key go together");
		goto fail;
	}
	if (wc->cert != NULL && wc->ca == NULL) {
		snprintf(err, errlen, "workers.tls_cert needs workers.tls_ca (the CA that signs "
		    "the workers' certificates)");
		goto fail;
	}
	if (tok != NULL && tok[0] != '\0' &&
	    (rc = cred_read_token("workers.token_file", tok, &wc->token, err, errlen)) != 0)
		goto fail;
	return 0;
fail:
	dmain_wcred_clear(wc);
	return rc;
}

/* Tenant quota defaults from the configuration. */
static void
dmain_quota(const struct config *cfg, struct tenant_quota *q)
{
	memset(q, 0, sizeof *q);
	q->max_concurrent_programs = (uint32_t)config_get_int(cfg, "quota.max_concurrent_programs");
	q->tokens_per_minute = (uint64_t)config_get_int(cfg, "quota.tokens_per_minute");
	q->max_budget_per_program = (uint64_t)config_get_int(cfg, "quota.max_budget_per_program");
	q->max_sc_n = (uint32_t)config_get_int(cfg, "quota.max_sc_n");
	q->max_prompt_bytes = (uint32_t)config_get_int(cfg, "quota.max_prompt_bytes");
}

/* Authorizer options from a config; token is a caller buffer. */
static int
dmain_auth_options(const struct config *cfg, struct auth_options *ao, char *token, size_t tlen,
    char *err, size_t errlen)
{
	int rc = dmain_admin_token(cfg, token, tlen, err, errlen);

	if (rc != 0)
		return rc;
	memset(ao, 0, sizeof *ao);
	ao->admin_token = token;
	ao->nadmin_cns = config_get_list(cfg, "tls.admin_cn", &ao->admin_cns);
	ao->anonymous_tenant = config_get_str(cfg, "auth.anonymous_tenant");
	return 0;
}

static void
dmain_apply_log_level(const struct config *cfg)
{
	enum log_level lvl;

	if (log_level_parse(config_get_str(cfg, "log_level"), &lvl) == 0)
		log_set_level(lvl);
}

/* Adds workers named in cfg and removes those no longer named (when they hold nothing). */
static void
dmain_sync_workers(struct dmain *m, const struct config *cfg)
{
	struct pool *pl = core_pool(m->core);
	const char *const *items;
	size_t n = config_get_list(cfg, "workers.worker", &items), i, j;

	for (i = 0; i < n; i++) {
		int rc = pool_add(pl, items[i]);
		if (rc != 0 && rc != CERTA_EEXIST)
			log_err(LOG_CONFIG, "worker %s: %s", items[i], certa_strerror(rc));
	}
	for (i = 0; i < pool_count(pl);) {
		const char *addr = pool_worker_addr(pool_at(pl, i));
		int named = 0;
		for (j = 0; j < n; j++)
			named |= strcmp(items[j], addr) == 0;
		if (!named && pool_remove(pl, addr) == 0)
			continue;
		i++;
	}
}

/* SIGHUP: a bad new configuration is reported and the old one stays. */
static void
dmain_reload(struct dmain *m)
{
	struct config *cfg;
	struct sched_policy pol;
	char err[512];

	if (cmdline_load(m->cl, &cfg, err, sizeof err) != 0) {
		log_err(LOG_CONFIG, "reload failed, keeping the running configuration: %s", err);
		return;
	}
	if (dmain_policy(cfg, &pol, err, sizeof err) != 0) {
		log_err(LOG_CONFIG, "reload failed, keeping the running configuration: %s", err);
		config_free(cfg);
		return;
	}
	if (strcmp(config_get_str(cfg, "listen"), config_get_str(m->cfg, "listen")) != 0 ||
	    strcmp(config_get_str(cfg, "state_dir"), config_get_str(m->cfg, "state_dir")) != 0)
		log_warn(LOG_CONFIG, "listen and state_dir changes take effect after a restart");
	{
		static const char *const restart_only[] = { "workers.token_file", "workers.tls_ca",
		    "workers.tls_cert", "workers.tls_key", "http.listen" };
		size_t i;
		for (i = 0; i < sizeof restart_only / sizeof restart_only[0]; i++) {
			const char *a = config_get_str(cfg, restart_only[i]);
			const char *b = config_get_str(m->cfg, restart_only[i]);
			if (strcmp(a ? a : "", b ? b : "") != 0)
				log_warn(LOG_CONFIG, "%s changes take effect after a restart",
				    restart_only[i]);
		}
	}
	{
		struct auth_options ao;
		char token[512];
		struct tenant_quota q;
		if (dmain_auth_options(cfg, &ao, token, sizeof token, err, sizeof err) != 0) {
			log_err(LOG_CONFIG, "reload failed, keeping the running configuration: %s",
			    err);
			config_free(cfg);
			return;
		}
		auth_configure(m->auth, &ao);
		explicit_bzero(token, sizeof token);
		dmain_quota(cfg, &q);
		tenants_set_defaults(core_tenants(m->core), &q);
	}
	config_free(m->cfg);
	m->cfg = cfg;
	dmain_apply_log_level(cfg);
	core_set_policy(m->core, &pol);
	if (m->mhttp != NULL)      /* an atomic the HTTP thread reads */
		metrics_http_set_stall(m->mhttp, (int)config_get_int(cfg, "metrics.stall_timeout"));
	dmain_sync_workers(m, cfg);
	log_notice(LOG_CONFIG, "configuration reloaded");
}

static void
dmain_server_done(void *arg)
{
	struct dmain *m = arg;

	m->srv = NULL;
	if (m->mhttp != NULL)
		metrics_http_stop(m->mhttp);
	m->mhttp = NULL;
	openai_free(m->http);
	m->http = NULL;
	health_free(m->health);
	m->health = NULL;
	core_set_telemetry(m->core, NULL);
	telemetry_free(m->tel);
	m->tel = NULL;
	core_free(m->core);
	m->core = NULL;
	proc_finish(m->proc);
}

static void
dmain_drained(void *arg)
{
	struct dmain *m = arg;

	log_notice(LOG_MAIN, "drained; stopping the server");
	rpc_server_shutdown(m->srv, dmain_server_done, m);
}

static void
dmain_on_signal(int sig, void *arg)
{
	struct dmain *m = arg;

	if (sig == SIGHUP) {
		sdnotify_reloading(m->sn);
		dmain_reload(m);
		sdnotify_ready(m->sn, NULL);
		return;
	}
	if (m->stopping)
		return;
	m->stopping = 1;
	metrics_http_ready_changed(m->mhttp);
	sdnotify_stopping(m->sn);
	/* Probes see NOT_SERVING while in-flight steps finish. */
	health_shutdown(m->health);
	log_notice(LOG_MAIN, "shutting down: no new programs, finishing in-flight steps");
	core_drain(m->core, dmain_drained, m);
}

/* Reads a PEM file for the mTLS listener; NULL (with a logged reason) when it cannot. */
static char *
dmain_read_pem(const char *what, const char *path)
{
	char *buf = NULL, err[600];

	if (path == NULL || path[0] == '\0') {
		log_err(LOG_CONFIG, "tls.listen needs %s", what);
		return NULL;
	}
	if (cred_read_pem(what, path, &buf, err, sizeof err) != 0)
		log_err(LOG_CONFIG, "%s", err);
	return buf;
}

/* The local admin socket (group-only) and the optional mTLS listener. */
static int
dmain_listen_extra(struct dmain *m)
{
	const char *sock = config_get_str(m->cfg, "admin.socket");
	const char *tls = config_get_str(m->cfg, "tls.listen");
	char addr[600];
	int rc;

	if (sock != NULL && sock[0] != '\0') {
		snprintf(addr, sizeof addr, "unix:%s", sock);
		(void)unlink(sock);
		if (rpc_server_listen(m->srv, addr, NULL) != 0) {
			log_warn(LOG_ADMIN, "admin socket %s unavailable; Admin over TCP needs the "
			    "admin token", sock);
		} else if (chmod(sock, 0660) != 0) {
			log_err(LOG_ADMIN, "chmod %s: %s", sock, strerror(errno));
			return CERTA_ECONFIG;
		} else {
			log_info(LOG_ADMIN, "admin socket %s (mode 0660)", sock);
		}
	}
	if (tls != NULL && tls[0] != '\0') {
		grpc_server_credentials *creds;
		char *cert = dmain_read_pem("tls.cert", config_get_str(m->cfg, "tls.cert"));
		char *key = dmain_read_pem("tls.key", config_get_str(m->cfg, "tls.key"));
		char *ca = dmain_read_pem("tls.ca", config_get_str(m->cfg, "tls.ca"));
		int port = 0;

		rc = CERTA_ECONFIG;
		if (cert != NULL && key != NULL && ca != NULL) {
			creds = cred_server_tls(cert, key, ca);
			rc = creds != NULL ? rpc_server_listen_creds(m->srv, tls, creds, &port) :
			    CERTA_ECONFIG;
			if (creds != NULL)
				grpc_server_credentials_release(creds);
			if (rc == 0)
				log_info(LOG_MAIN, "mTLS listener on %s port=%d", tls, port);
		}
		free(cert);
		cred_free_secret(key);
		free(ca);
		if (rc != 0)
			return rc;
	}
	return 0;
}

/* STATUS= line for systemd. */
static void
dmain_status(char *buf, size_t len, void *arg)
{
	struct dmain *m = arg;
	size_t queued = 0, running = 0;
	uint64_t fin = 0;

	if (m->core == NULL) {
		snprintf(buf, len, "stopping");
		return;
	}
	core_counts(m->core, &queued, &running, &fin);
	snprintf(buf, len, "%s: programs running=%zu queued=%zu finished=%llu workers=%zu/%zu",
	    m->stopping ? "draining" : "serving", running, queued, (unsigned long long)fin,
	    pool_count_up(core_pool(m->core)), pool_count(core_pool(m->core)));
}

/* /readyz */
static int
dmain_is_ready(void *arg)
{
	struct dmain *m = arg;

	return m->ready && !m->stopping && !core_degraded(m->core);
}

/* Commits failing (programs wait for their writes) or succeeding again: the probes follow. */
static void
dmain_on_degraded(void *arg, int degraded)
{
	struct dmain *m = arg;
	enum health_status hs = degraded ? HEALTH_NOT_SERVING : HEALTH_SERVING;

	metrics_http_ready_changed(m->mhttp);
	if (!m->ready || m->stopping)
		return;
	health_set(m->health, "", hs);
	health_set(m->health, "certa.v1.Reasoning", hs);
	log_notice(LOG_MAIN, "%s", degraded ? "degraded: commits fail, programs wait for their "
	    "writes; health NOT_SERVING" : "commits succeed again; health SERVING");
}

/* LMDB open, listeners bound, workers probed: tell systemd and the probes. */
static void
dmain_on_ready(void *arg)
{
	struct dmain *m = arg;
	char st[160];

	m->ready = 1;
	metrics_http_ready_changed(m->mhttp);
	core_on_degraded(m->core, dmain_on_degraded, m);
	health_set(m->health, "", core_degraded(m->core) ? HEALTH_NOT_SERVING : HEALTH_SERVING);
	health_set(m->health, "certa.v1.Reasoning",
	    core_degraded(m->core) ? HEALTH_NOT_SERVING : HEALTH_SERVING);
	health_set(m->health, "certa.v1.Admin", HEALTH_SERVING);
	snprintf(st, sizeof st, "serving on port %d, %zu/%zu workers up", m->port,
	    pool_count_up(core_pool(m->core)), pool_count(core_pool(m->core)));
	sdnotify_ready(m->sn, st);
	log_notice(LOG_MAIN, "ready: %s", st);
}

/* The loop's heartbeat (metrics endpoint): how late it ran. */
static void
dmain_on_beat(void *arg, double lag_s)
{
	struct dmain *m = arg;

	telemetry_loop_lag(m->tel, lag_s);
}

/* The metrics endpoint (optional). */
static int
dmain_metrics(struct dmain *m)
{
	long long port = config_get_int(m->cfg, "metrics.port");
	const char *pf = config_get_str(m->cfg, "metrics.port_file");
	int bound = 0, rc;

	if (port < 0)
		return 0;
	rc = metrics_http_start(proc_base(m->proc), config_get_str(m->cfg, "metrics.address"),
	    (int)port, telemetry_metrics(m->tel), dmain_is_ready, m, &bound, &m->mhttp);
	if (rc != 0) {
		log_err(LOG_METRICS, "cannot serve metrics on %s:%lld: %s",
		    config_get_str(m->cfg, "metrics.address"), port, certa_strerror(rc));
		return rc;
	}
	metrics_http_set_stall(m->mhttp, (int)config_get_int(m->cfg, "metrics.stall_timeout"));
	metrics_http_on_beat(m->mhttp, dmain_on_beat, m);
	/* metrics_http_start logged the address. */
	if (pf != NULL && pf[0] != '\0')
		(void)proc_write_port_file(pf, bound);
	return 0;
}

/* The OpenAI-compatible HTTP API (optional; daemon/openai.h). */
static int
dmain_http(struct dmain *m)
{
	const char *addr = config_get_str(m->cfg, "http.listen");
	const char *pf = config_get_str(m->cfg, "http.port_file");
	struct openai_options oo;
	int bound = 0, rc;

	if (addr == NULL || addr[0] == '\0')
		return 0;
	memset(&oo, 0, sizeof oo);
	oo.listen = addr;
	if (config_get_bool(m->cfg, "http.tls")) {
		oo.tls_cert = config_get_str(m->cfg, "tls.cert");
		oo.tls_key = config_get_str(m->cfg, "tls.key");
		if (oo.tls_cert == NULL || oo.tls_cert[0] == '\0' || oo.tls_key == NULL ||
		    oo.tls_key[0] == '\0') {
			log_err(LOG_CONFIG, "http.tls needs tls.cert and tls.key");
			return CERTA_ECONFIG;
		}
	}
	/* JSON may escape every byte of the problem (\uXXXX), plus the rest of the body. */
	oo.max_body = (size_t)config_get_int(m->cfg, "limits.max_prompt_bytes") * 6 + 65536;
	rc = openai_new(proc_base(m->proc), m->core, m->auth, &oo, &bound, &m->http);
	if (rc != 0) {
		log_err(LOG_MAIN, "cannot serve the HTTP API on %s: %s", addr, certa_strerror(rc));
		return rc;
	}
	log_info(LOG_MAIN, "HTTP API (OpenAI-compatible) on %s://%s port=%d",
	    oo.tls_cert != NULL ? "https" : "http", addr, bound);
	if (pf != NULL && pf[0] != '\0')
		(void)proc_write_port_file(pf, bound);
	return 0;
}

int
main(int argc, char **argv)
{
	struct dmain m;
	struct core_options co;
	const struct rpc_method *methods;
	size_t nmethods;
	char err[512];
	const char *port_file;
	struct dmain_wcred wcred;
	struct route_config rcfg;
	struct reflection *refl = NULL;   /* gRPC server reflection; outlives the server */
	int rc, port = 0, init_state, verify_state;

	memset(&m, 0, sizeof m);
	memset(&wcred, 0, sizeof wcred);
	log_init("certad", LOG_FORMAT_AUTO, LOG_LVL_INFO);
	rc = cmdline_parse(&dmain_cmdline, argc, argv, &m.cl, &m.cfg);
	if (rc != CMDLINE_RUN)
		return rc;
	init_state = cmdline_switch(m.cl, "init-state");
	verify_state = cmdline_switch(m.cl, "verify-state");
	memset(&co, 0, sizeof co);
	memset(&rcfg, 0, sizeof rcfg);
	if (dmain_policy(m.cfg, &co.policy, err, sizeof err) != 0) {
		fprintf(stderr, "certad: policy: %s\n", err);
		m.exit_code = 2;
		goto out_cfg;
	}
	if (dmain_route(m.cfg, &rcfg, err, sizeof err) != 0) {
		fprintf(stderr, "certad: route: %s\n", err);
		m.exit_code = 2;
		goto out_cfg;
	}
	co.route = &rcfg;
	co.nmodel_tokens = config_get_list(m.cfg, "policy.model_tokens", &co.model_tokens);
	{
		size_t k;
		for (k = 0; k < co.nmodel_tokens; k++)
			if (shadow_prior_parse(co.model_tokens[k], NULL, 0, NULL, err,
			    sizeof err) != 0) {
				fprintf(stderr, "certad: policy.model_tokens: %s\n", err);
				m.exit_code = 2;
				goto out_cfg;
			}
	}
	if (dmain_wcred_load(m.cfg, &wcred, err, sizeof err) != 0) {
		fprintf(stderr, "certad: %s\n", err);
		m.exit_code = 2;
		goto out_cfg;
	}
	dmain_apply_log_level(m.cfg);
	co.state_dir = config_get_str(m.cfg, "state_dir");
	co.map_size = (size_t)config_get_int(m.cfg, "map_size");
	co.max_map_size = (size_t)config_get_int(m.cfg, "max_map_size");
	co.pool.health_interval_ms = (int)config_get_int(m.cfg, "workers.health_interval");
	co.pool.info_timeout_ms = (int)config_get_int(m.cfg, "workers.info_timeout");
	co.pool.step_timeout_ms = (int)config_get_int(m.cfg, "workers.step_timeout");
	co.max_attempts = (uint32_t)config_get_int(m.cfg, "workers.max_attempts");
	co.retry_backoff_ms = (int)config_get_int(m.cfg, "workers.retry_backoff");
	co.max_prompt_bytes = (uint32_t)config_get_int(m.cfg, "limits.max_prompt_bytes");
	co.tick_ms = (int)config_get_int(m.cfg, "limits.tick");
	co.pool.max_inflight = (uint32_t)config_get_int(m.cfg, "workers.max_inflight");
	co.pool.tls_ca = wcred.ca;
	co.pool.tls_cert = wcred.cert;
	co.pool.tls_key = wcred.key;
	co.pool.token = wcred.token;
	co.starvation_ms = co.policy.starvation_ms;
	co.anonymous_tenant = config_get_str(m.cfg, "auth.anonymous_tenant");
	co.retention_ms = config_get_int(m.cfg, "retention.max_age");
	co.retention_interval_ms = (int)config_get_int(m.cfg, "retention.interval");
	dmain_quota(m.cfg, &co.quota_defaults);
	if (init_state != 0 || verify_state != 0) {
		m.exit_code = dmain_state_tool(&co, verify_state > init_state);
		goto out_cfg;
	}
	{
		struct auth_options ao;
		char token[512];
		if (dmain_auth_options(m.cfg, &ao, token, sizeof token, err, sizeof err) != 0) {
			fprintf(stderr, "certad: %s\n", err);
			m.exit_code = 2;
			goto out_cfg;
		}
		explicit_bzero(token, sizeof token);
	}
	if (cmdline_check_only(m.cl)) {
		printf("certad: configuration OK\n");
		goto out_cfg;
	}

	rc = proc_new(dmain_on_signal, &m, &m.proc);
	if (rc != 0) {
		log_err(LOG_MAIN, "cannot start: %s", certa_strerror(rc));
		m.exit_code = 1;
		goto out_cfg;
	}
	rc = sdnotify_new(proc_base(m.proc), &m.sn);
	if (rc == 0)
		rc = sdnotify_set_status(m.sn, dmain_status, &m, 5000);
	if (rc != 0) {
		log_err(LOG_MAIN, "sd_notify: %s", certa_strerror(rc));
		m.exit_code = 1;
		goto out_proc;
	}
	rc = core_new(proc_base(m.proc), proc_bridge(m.proc), &co, &m.core);
	/* The pool kept what it built from the PEM text and the token. */
	co.pool.tls_ca = co.pool.tls_cert = co.pool.tls_key = co.pool.token = NULL;
	dmain_wcred_clear(&wcred);
	if (rc != 0) {
		log_err(LOG_MAIN, "cannot open state in %s: %s", co.state_dir, certa_strerror(rc));
		m.exit_code = 1;
		goto out_proc;
	}
	if ((rc = telemetry_new(m.core, &m.tel)) != 0 || (rc = health_new(&m.health)) != 0) {
		log_err(LOG_MAIN, "cannot start: %s", certa_strerror(rc));
		core_free(m.core);
		m.exit_code = 1;
		goto out_proc;
	}
	telemetry_set_per_tenant(m.tel, config_get_bool(m.cfg, "metrics.per_tenant"));
	core_set_telemetry(m.core, m.tel);
	dmain_sync_workers(&m, m.cfg);
	{
		struct auth_options ao;
		char token[512];
		(void)dmain_auth_options(m.cfg, &ao, token, sizeof token, err, sizeof err);
		rc = auth_new(core_tenants(m.core), &ao, &m.auth);
		explicit_bzero(token, sizeof token);
	}
	methods = reasoning_methods(&nmethods);
	if (rc == 0)
		rc = rpc_server_new(proc_bridge(m.proc), methods, nmethods, m.core, &m.srv);
	if (rc == 0) {
		methods = admin_methods(&nmethods);
		rc = rpc_server_add_methods(m.srv, methods, nmethods, m.core);
		rpc_server_set_authorizer(m.srv, auth_authorize, m.auth);
	}
	if (rc == 0) {
		methods = health_methods(&nmethods);
		rc = rpc_server_add_methods(m.srv, methods, nmethods, m.health);
	}
	if (rc == 0 && (rc = reflection_new(&refl)) == 0) {
		methods = reflection_methods(&nmethods);
		rc = rpc_server_add_methods(m.srv, methods, nmethods, refl);
	}
	if (rc == 0)
		rc = rpc_server_listen(m.srv, config_get_str(m.cfg, "listen"), &port);
	if (rc == 0)
		rc = dmain_listen_extra(&m);
	if (rc == 0)
		rc = rpc_server_start(m.srv);
	if (rc == 0)
		rc = dmain_metrics(&m);
	if (rc == 0)
		rc = dmain_http(&m);
	if (rc != 0) {
		log_err(LOG_MAIN, "cannot serve on %s", config_get_str(m.cfg, "listen"));
		m.exit_code = 1;
		m.stopping = 1;
		if (m.srv != NULL) {
			rpc_server_shutdown(m.srv, dmain_server_done, &m);
		} else {
			health_free(m.health);
			telemetry_free(m.tel);
			core_free(m.core);
			proc_finish(m.proc);
		}
		proc_run(m.proc);
		goto out_proc;
	}
	port_file = config_get_str(m.cfg, "port_file");
	if (port_file != NULL && (rc = proc_write_port_file(port_file, port)) != 0)
		log_warn(LOG_MAIN, "cannot write port file %s: %s", port_file, certa_strerror(rc));
	log_notice(LOG_MAIN, "certad %s serving on %s port=%d state=%s workers=%zu",
	    CERTA_VERSION, config_get_str(m.cfg, "listen"), port, co.state_dir,
	    pool_count(core_pool(m.core)));
	m.port = port;
	/* READY=1 after LMDB is open, listeners are bound and the workers were probed. */
	core_on_workers_probed(m.core, dmain_on_ready, &m,
	    (int)config_get_int(m.cfg, "workers.info_timeout") + 500);
	proc_run(m.proc);
	log_notice(LOG_MAIN, "stopped");
out_proc:
	sdnotify_free(m.sn);
	proc_free(m.proc);
	auth_free(m.auth);
	reflection_free(refl);
out_cfg:
	route_config_free(&rcfg);
	dmain_wcred_clear(&wcred);
	config_free(m.cfg);
	cmdline_free(m.cl);
	return m.exit_code;
}
