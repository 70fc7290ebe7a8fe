/*
 * certa-worker — serves the certa.v1.Worker service for one accelerator (or the replay engine).
 *
 *   certa-worker --listen 127.0.0.1:7701 --engine replay --traces DIR [--capacity N]
 *                [--model NAME] [--config FILE] [--set key=value] [--port-file FILE]
 *
 * Besides certa.v1.Worker the server answers the standard grpc.health.v1.Health service
 * (lib/health): "" and "certa.v1.Worker" are SERVING once listening and NOT_SERVING from
 * SIGTERM on.  --print-config prints an example configuration file, --print-config-man the
 * roff OPTIONS section spliced into certa-worker(8) by scripts/gen-docs.sh.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <event2/event.h>

#include "lib/config.h"
#include "lib/cqbridge.h"
#include "lib/error.h"
#include "lib/health.h"
#include "lib/log.h"
#include "lib/proc.h"
#include "lib/rpc_server.h"
#include "lib/version.h"
#include "workers/engine.h"
#include "workers/worker.h"

static const char *const wmain_engines[] = { "replay", NULL };
static const char *const wmain_levels[] = { "err", "warn", "notice", "info", "debug", NULL };

static const struct config_option wmain_options[] = {
	{ "listen", CONFIG_STRING, "127.0.0.1:7701", 0, 0, NULL,
	  "gRPC address to serve the Worker service on (host:port, port 0 = any free port)" },
	{ "engine", CONFIG_ENUM, "replay", 0, 0, wmain_engines,
	  "decode engine" },
	{ "traces", CONFIG_STRING, NULL, 0, 0, NULL,
	  "replay engine: directory of recorded *.jsonl.gz traces" },
	{ "model", CONFIG_STRING, NULL, 0, 0, NULL,
	  "default model served (empty: the engine's first)" },
	{ "capacity", CONFIG_INT, "256", 1, 1000000, NULL,
	  "maximum concurrent requests held by this worker" },
	{ "step_delay", CONFIG_DURATION, "0", 0, 60000, NULL,
	  "hold each step this long before running it (simulated decode time)" },
	{ "log_level", CONFIG_ENUM, "info", 0, 0, wmain_levels,
	  "log level" },
	{ "port_file", CONFIG_STRING, NULL, 0, 0, NULL,
	  "write the bound port to this file once listening" },
};
#define WMAIN_NOPTIONS (sizeof wmain_options / sizeof wmain_options[0])

struct wmain {
	struct proc *proc;
	struct rpc_server *srv;
	struct health *health;
	int stopping;
};

static void
wmain_usage(FILE *f)
{
	fprintf(f,
	    "usage: certa-worker [--listen ADDR] [--engine NAME] [--traces DIR] [--capacity N]\n"
	    "                    [--model NAME] [--config FILE] [--set KEY=VALUE]\n"
	    "                    [--port-file FILE] [--step-delay MS] [--log-level LEVEL]\n"
	    "                    [--check-config]\n"
	    "                    [--print-config] [--print-config-man] [--version]\n"
	    "engines: %s\n", engine_names());
}

static void
wmain_server_done(void *arg)
{
	struct wmain *m = arg;

	m->srv = NULL;
	health_free(m->health);
	m->health = NULL;
	proc_finish(m->proc);
}

/* SIGTERM/SIGINT: stop serving (in-flight calls are cancelled) and exit. */
static void
wmain_on_signal(int sig, void *arg)
{
	struct wmain *m = arg;

	if (sig == SIGHUP) {
		log_info(LOG_MAIN, "SIGHUP: nothing to reload in the worker");
		return;
	}
	if (m->stopping)
		return;
	m->stopping = 1;
	log_info(LOG_MAIN, "shutting down");
	/* Probes see NOT_SERVING (watchers are told) before the server stops answering. */
	health_shutdown(m->health);
	rpc_server_shutdown(m->srv, wmain_server_done, m);
}

/* Maps a long option to the config name it overrides. */
static const struct {
	const char *opt;
	const char *name;
} wmain_flag_map[] = {
	{ "listen", "listen" }, { "engine", "engine" }, { "traces", "traces" },
	{ "model", "model" }, { "capacity", "capacity" }, { "log-level", "log_level" },
	{ "port-file", "port_file" }, { "step-delay", "step_delay" },
};

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "listen", required_argument, NULL, 0 },
		{ "engine", required_argument, NULL, 0 },
		{ "traces", required_argument, NULL, 0 },
		{ "model", required_argument, NULL, 0 },
		{ "capacity", required_argument, NULL, 0 },
		{ "log-level", required_argument, NULL, 0 },
		{ "port-file", required_argument, NULL, 0 },
		{ "step-delay", required_argument, NULL, 0 },
		{ "config", required_argument, NULL, 'c' },
		{ "set", required_argument, NULL, 's' },
		{ "check-config", no_argument, NULL, 'C' },
		{ "print-config", no_argument, NULL, 'P' },
		{ "print-config-man", no_argument, NULL, 'M' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct config *cfg = NULL;
	struct engine *engine = NULL;
	struct worker *w = NULL;
	struct wmain m;
	struct engine_options eo;
	const struct rpc_method *methods, *hmethods;
	size_t nmethods, nhmethods, i;
	char err[512];
	const char *config_path = NULL, *port_file;
	enum log_level lvl;
	int c, idx, rc, port = 0, check_only = 0;
	char **sets = calloc((size_t)argc + 1, sizeof *sets);
	size_t nsets = 0;

	memset(&m, 0, sizeof m);
	log_init("certa-worker", LOG_FORMAT_AUTO, LOG_LVL_INFO);
	if (sets == NULL || config_new(wmain_options, WMAIN_NOPTIONS, &cfg) != 0)
		return 1;
	/* First pass: collect overrides; the config file (if any) is applied before them. */
	while ((c = getopt_long(argc, argv, "c:s:hV", longopts, &idx)) != -1) {
		switch (c) {
		case 0:
			for (i = 0; i < sizeof wmain_flag_map / sizeof wmain_flag_map[0]; i++) {
				if (strcmp(wmain_flag_map[i].opt, longopts[idx].name) != 0)
					continue;
				if (asprintf(&sets[nsets++], "%s=%s", wmain_flag_map[i].name,
				    optarg) < 0)
					return 1;
			}
			break;
		case 'c':
			config_path = optarg;
			break;
		case 's':
			sets[nsets++] = strdup(optarg);
			break;
		case 'C':
			check_only = 1;
			break;
		case 'P':
		case 'M':
			/* Documentation exits at once; free what was parsed so far (LSan-clean). */
			config_write_doc(wmain_options, WMAIN_NOPTIONS, stdout,
			    c == 'P' ? CONFIG_DOC_INI : CONFIG_DOC_MAN);
			config_free(cfg);
			for (i = 0; i < nsets; i++)
				free(sets[i]);
			free(sets);
			return ferror(stdout) ? 1 : 0;
		case 'h':
			wmain_usage(stdout);
			return 0;
		case 'V':
			printf("certa-worker %s\n", CERTA_VERSION);
			return 0;
		default:
			wmain_usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "certa-worker: unexpected argument '%s'\n", argv[optind]);
		wmain_usage(stderr);
		return 2;
	}
	if (config_path != NULL && config_load_file(cfg, config_path, err, sizeof err) != 0) {
		fprintf(stderr, "certa-worker: %s\n", err);
		return 2;
	}
	for (i = 0; i < nsets; i++) {
		char *eq = strchr(sets[i], '=');
		if (eq == NULL) {
			fprintf(stderr, "certa-worker: --set expects KEY=VALUE, got '%s'\n", sets[i]);
			return 2;
		}
		*eq = '\0';
		if (config_set(cfg, sets[i], eq + 1, err, sizeof err) != 0) {
			fprintf(stderr, "certa-worker: --set: %s\n", err);
			return 2;
		}
		free(sets[i]);
	}
	free(sets);
	if (check_only) {
		printf("certa-worker: configuration OK\n");
		config_free(cfg);
		return 0;
	}
	(void)log_level_parse(config_get_str(cfg, "log_level"), &lvl);
	log_set_level(lvl);

	memset(&eo, 0, sizeof eo);
	eo.traces_dir = config_get_str(cfg, "traces");
	eo.model = config_get_str(cfg, "model");
	eo.capacity = (uint32_t)config_get_int(cfg, "capacity");
	rc = engine_open(config_get_str(cfg, "engine"), &eo, &engine);
	if (rc != 0) {
		log_err(LOG_MAIN, "cannot start engine %s: %s", config_get_str(cfg, "engine"),
		    certa_strerror(rc));
		goto out_cfg;
	}
	/* gRPC starts threads: everything that might fork happened above. */
	rc = proc_new(wmain_on_signal, &m, &m.proc);
	if (rc != 0)
		goto out_engine;
	rc = worker_new(engine, proc_base(m.proc), (int)config_get_int(cfg, "step_delay"), &w);
	if (rc != 0)
		goto out_proc;
	methods = worker_methods(&nmethods);
	rc = health_new(&m.health);
	if (rc != 0)
		goto out_proc;
	rc = rpc_server_new(proc_bridge(m.proc), methods, nmethods, w, &m.srv);
	if (rc != 0) {
		health_free(m.health);
		goto out_proc;
	}
	hmethods = health_methods(&nhmethods);
	rc = rpc_server_add_methods(m.srv, hmethods, nhmethods, m.health);
	if (rc == 0)
		rc = rpc_server_listen(m.srv, config_get_str(cfg, "listen"), &port);
	if (rc == 0)
		rc = rpc_server_start(m.srv);
	if (rc != 0) {
		log_err(LOG_MAIN, "cannot serve on %s", config_get_str(cfg, "listen"));
		m.stopping = 1;
		rpc_server_shutdown(m.srv, wmain_server_done, &m);
		proc_run(m.proc);
		rc = CERTA_EUNAVAIL;
		goto out_proc;
	}
	/* SERVING before the port file appears: whoever waits on that file may probe at once. */
	(void)health_set(m.health, "", HEALTH_SERVING);
	(void)health_set(m.health, "certa.v1.Worker", HEALTH_SERVING);
	port_file = config_get_str(cfg, "port_file");
	if (port_file != NULL && (rc = proc_write_port_file(port_file, port)) != 0)
		log_warn(LOG_MAIN, "cannot write port file %s: %s", port_file, certa_strerror(rc));
	log_notice(LOG_MAIN, "certa-worker %s serving on %s port=%d engine=%s", CERTA_VERSION,
	    config_get_str(cfg, "listen"), port, config_get_str(cfg, "engine"));
	rc = proc_run(m.proc);
	log_notice(LOG_MAIN, "stopped after %llu steps", (unsigned long long)worker_steps(w));
out_proc:
	worker_free(w);
	proc_free(m.proc);
out_engine:
	engine_close(engine);
out_cfg:
	config_free(cfg);
	return rc == 0 ? 0 : 1;
}
