/*
 * certad — the certa control daemon.
 *
 *   certad [--config FILE] [--listen ADDR] [--state-dir DIR] [--worker ADDR]...
 *          [--set KEY=VALUE]... [--port-file FILE] [--check-config] [--print-config]
 *
 * Signals: SIGTERM/SIGINT drain (stop accepting, finish in-flight steps, persist, exit 0);
 * SIGHUP reloads the configuration (a bad file is reported and the old one stays).
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <event2/event.h>

#include "daemon/core.h"
#include "daemon/pool.h"
#include "daemon/reasoning.h"
#include "lib/config.h"
#include "lib/error.h"
#include "lib/log.h"
#include "lib/proc.h"
#include "lib/rpc_server.h"
#include "lib/version.h"
#include "scheduler/sched.h"

static const char *const dmain_levels[] = { "err", "warn", "notice", "info", "debug", NULL };

static const struct config_option dmain_options[] = {
	{ "listen", CONFIG_STRING, "127.0.0.1:7700", 0, 0, NULL,
	  "gRPC address of the Reasoning service (host:port; port 0 = any free port)" },
	{ "state_dir", CONFIG_STRING, "/var/lib/certa", 0, 0, NULL,
	  "directory of the LMDB environment (programs, history, tenants, policies)" },
	{ "map_size", CONFIG_SIZE, "64M", 1048576, 1099511627776.0, NULL,
	  "initial LMDB map size; grows automatically up to max_map_size" },
	{ "max_map_size", CONFIG_SIZE, "64G", 1048576, 17592186044416.0, NULL,
	  "largest LMDB map size the store may grow to" },
	{ "log_level", CONFIG_ENUM, "info", 0, 0, dmain_levels, "log level" },
	{ "port_file", CONFIG_STRING, NULL, 0, 0, NULL,
	  "write the bound port here once listening (for supervisors and tests)" },
	{ "workers.worker", CONFIG_LIST, NULL, 0, 0, NULL,
	  "worker address (host:port); repeat the line for each worker" },
	{ "workers.health_interval", CONFIG_DURATION, "1s", 50, 3600000, NULL,
	  "period of Info health checks on each worker" },
	{ "workers.info_timeout", CONFIG_DURATION, "2s", 10, 600000, NULL,
	  "deadline of one health check" },
	{ "workers.step_timeout", CONFIG_DURATION, "30s", 100, 3600000, NULL,
	  "deadline of one Step call" },
	{ "workers.max_attempts", CONFIG_INT, "5", 1, 1000, NULL,
	  "failed steps in a row before a program fails" },
	{ "workers.retry_backoff", CONFIG_DURATION, "200ms", 0, 600000, NULL,
	  "wait before retrying a failed step (times the attempt number)" },
	{ "policy.step_tokens", CONFIG_INT, "64", 1, 4096, NULL,
	  "decode tokens per chain per step (a probe follows each step)" },
	{ "policy.default_budget", CONFIG_INT, "16384", 1, 1048576, NULL,
	  "decode tokens per chain when a program gives no budget" },
	{ "policy.default_sc_n", CONFIG_INT, "3", 1, 64, NULL,
	  "chains of an sc program that gives no n" },
	{ "policy.max_sc_n", CONFIG_INT, "16", 1, 64, NULL,
	  "largest n an sc program may ask for" },
	{ "policy.max_budget", CONFIG_INT, "1048576", 1, 1073741824, NULL,
	  "largest total token budget a program may ask for" },
	{ "limits.max_prompt_bytes", CONFIG_SIZE, "64K", 1, 16777216, NULL,
	  "largest problem text accepted" },
	{ "limits.tick", CONFIG_DURATION, "50ms", 1, 10000, NULL,
	  "period of the dispatch pass that retries waiting programs" },
};
#define DMAIN_NOPTIONS (sizeof dmain_options / sizeof dmain_options[0])

struct dmain {
	struct proc *proc;
	struct rpc_server *srv;
	struct core *core;
	struct config *cfg;
	const char *config_path;
	char **sets;
	size_t nsets;
	int stopping;
	int exit_code;
};

static void
dmain_usage(FILE *f)
{
	fprintf(f,
	    "usage: certad [--config FILE] [--listen ADDR] [--state-dir DIR] [--worker ADDR]...\n"
	    "              [--set KEY=VALUE]... [--port-file FILE] [--log-level LEVEL]\n"
	    "              [--check-config] [--print-config] [--version]\n"
	    "Options in the file use the names printed by --print-config; --set overrides any.\n");
}

/* Builds a config: defaults, then the file, then command-line overrides. */
static int
dmain_load(struct dmain *m, struct config **out, char *err, size_t errlen)
{
	struct config *cfg;
	size_t i;
	int rc;

	rc = config_new(dmain_options, DMAIN_NOPTIONS, &cfg);
	if (rc != 0) {
		snprintf(err, errlen, "%s", certa_strerror(rc));
		return rc;
	}
	if (m->config_path != NULL) {
		rc = config_load_file(cfg, m->config_path, err, errlen);
		if (rc != 0)
			goto fail;
	}
	for (i = 0; i < m->nsets; i++) {
		char name[128];
		const char *eq = strchr(m->sets[i], '=');
		char sub[400];
		if (eq == NULL || (size_t)(eq - m->sets[i]) >= sizeof name) {
			snprintf(err, errlen, "--set expects KEY=VALUE, got '%s'", m->sets[i]);
			rc = CERTA_ECONFIG;
			goto fail;
		}
		memcpy(name, m->sets[i], (size_t)(eq - m->sets[i]));
		name[eq - m->sets[i]] = '\0';
		rc = config_set(cfg, name, eq + 1, sub, sizeof sub);
		if (rc != 0) {
			snprintf(err, errlen, "--set: %s", sub);
			goto fail;
		}
	}
	*out = cfg;
	return 0;
fail:
	config_free(cfg);
	return rc;
}

/* The scheduling policy held in a config. */
static int
dmain_policy(const struct config *cfg, struct sched_policy *p, char *err, size_t errlen)
{
	sched_policy_default(p);
	p->step_tokens = (uint32_t)config_get_int(cfg, "policy.step_tokens");
	p->default_sc_n = (uint32_t)config_get_int(cfg, "policy.default_sc_n");
	p->max_sc_n = (uint32_t)config_get_int(cfg, "policy.max_sc_n");
	p->max_budget = (uint64_t)config_get_int(cfg, "policy.max_budget");
	p->default_budget = (uint64_t)config_get_int(cfg, "policy.default_budget");
	return sched_policy_validate(p, err, errlen);
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

	if (dmain_load(m, &cfg, err, sizeof err) != 0) {
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
	config_free(m->cfg);
	m->cfg = cfg;
	dmain_apply_log_level(cfg);
	core_set_policy(m->core, &pol);
	dmain_sync_workers(m, cfg);
	log_notice(LOG_CONFIG, "configuration reloaded");
}

static void
dmain_server_done(void *arg)
{
	struct dmain *m = arg;

	m->srv = NULL;
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
		sd_notify(0, "RELOADING=1");
		dmain_reload(m);
		sd_notify(0, "READY=1");
		return;
	}
	if (m->stopping)
		return;
	m->stopping = 1;
	sd_notify(0, "STOPPING=1");
	log_notice(LOG_MAIN, "shutting down: no new programs, finishing in-flight steps");
	core_drain(m->core, dmain_drained, m);
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "set", required_argument, NULL, 's' },
		{ "listen", required_argument, NULL, 'l' },
		{ "state-dir", required_argument, NULL, 'd' },
		{ "worker", required_argument, NULL, 'w' },
		{ "port-file", required_argument, NULL, 'p' },
		{ "log-level", required_argument, NULL, 'L' },
		{ "check-config", no_argument, NULL, 'C' },
		{ "print-config", no_argument, NULL, 'P' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct dmain m;
	struct core_options co;
	const struct rpc_method *methods;
	size_t nmethods;
	char err[512];
	const char *port_file;
	int c, rc, port = 0, check_only = 0;

	memset(&m, 0, sizeof m);
	log_init("certad", LOG_FORMAT_AUTO, LOG_LVL_INFO);
	m.sets = calloc((size_t)argc + 1, sizeof *m.sets);
	if (m.sets == NULL)
		return 1;
	while ((c = getopt_long(argc, argv, "c:s:hV", longopts, NULL)) != -1) {
		const char *name = NULL;
		switch (c) {
		case 'c':
			m.config_path = optarg;
			continue;
		case 's':
			m.sets[m.nsets++] = strdup(optarg);
			continue;
		case 'l': name = "listen"; break;
		case 'd': name = "state_dir"; break;
		case 'w': name = "workers.worker"; break;
		case 'p': name = "port_file"; break;
		case 'L': name = "log_level"; break;
		case 'C':
			check_only = 1;
			continue;
		case 'P':
			config_write_doc(dmain_options, DMAIN_NOPTIONS, stdout, CONFIG_DOC_INI);
			return 0;
		case 'h':
			dmain_usage(stdout);
			return 0;
		case 'V':
			printf("certad %s\n", CERTA_VERSION);
			return 0;
		default:
			dmain_usage(stderr);
			return 2;
		}
		if (asprintf(&m.sets[m.nsets++], "%s=%s", name, optarg) < 0)
			return 1;
	}
	if (optind < argc) {
		fprintf(stderr, "certad: unexpected argument '%s'\n", argv[optind]);
		return 2;
	}
	if (dmain_load(&m, &m.cfg, err, sizeof err) != 0) {
		fprintf(stderr, "certad: %s\n", err);
		return 2;
	}
	memset(&co, 0, sizeof co);
	if (dmain_policy(m.cfg, &co.policy, err, sizeof err) != 0) {
		fprintf(stderr, "certad: policy: %s\n", err);
		return 2;
	}
	if (check_only) {
		printf("certad: configuration OK\n");
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

	rc = proc_new(dmain_on_signal, &m, &m.proc);
	if (rc != 0) {
		log_err(LOG_MAIN, "cannot start: %s", certa_strerror(rc));
		goto out_cfg;
	}
	rc = core_new(proc_base(m.proc), proc_bridge(m.proc), &co, &m.core);
	if (rc != 0) {
		log_err(LOG_MAIN, "cannot open state in %s: %s", co.state_dir, certa_strerror(rc));
		goto out_proc;
	}
	dmain_sync_workers(&m, m.cfg);
	methods = reasoning_methods(&nmethods);
	rc = rpc_server_new(proc_bridge(m.proc), methods, nmethods, m.core, &m.srv);
	if (rc == 0)
		rc = rpc_server_listen(m.srv, config_get_str(m.cfg, "listen"), &port);
	if (rc == 0)
		rc = rpc_server_start(m.srv);
	if (rc != 0) {
		log_err(LOG_MAIN, "cannot serve on %s", config_get_str(m.cfg, "listen"));
		m.exit_code = 1;
		m.stopping = 1;
		if (m.srv != NULL) {
			rpc_server_shutdown(m.srv, dmain_server_done, &m);
		} else {
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
	sd_notifyf(0, "READY=1\nSTATUS=serving on port %d", port);
	proc_run(m.proc);
	log_notice(LOG_MAIN, "stopped");
out_proc:
	proc_free(m.proc);
out_cfg:
	config_free(m.cfg);
	for (size_t i = 0; i < m.nsets; i++)
		free(m.sets[i]);
	free(m.sets);
	return m.exit_code;
}
