/*
 * certa-worker — serves the certa.v1.Worker service for one accelerator (or the replay engine).
 *
 *   certa-worker --listen 127.0.0.1:7701 --engine replay --traces DIR [--capacity N]
 *                [--model NAME] [--config FILE] [--set key=value] [--port-file FILE]
 *   certa-worker --engine llm --model PATH.gguf [--device cpu] [--kv-memory SIZE]
 *                [--max-batch-tokens N] [--threads N] [--alias NAME] ...
 *   certa-worker --engine openai --upstream URL [--upstream URL ...]
 *                [--upstream-key-file FILE] --model NAME [--capacity N] ...
 *
 * --model (model) names what the engine serves: a model of the traces for replay, the GGUF
 * file for llm (--model-file, llm.model_file, is the explicit form; the llm engine's served
 * name is the file's general.name or llm.alias).
 *
 * Besides certa.v1.Worker the server answers the standard grpc.health.v1.Health service
 * (lib/health): "" and "certa.v1.Worker" are SERVING once listening and NOT_SERVING from
 * SIGTERM on; it needs no credential (workers/wauth.h).  Worker calls can require a shared token
 * (--token-file) and/or a client certificate (tls.cert, tls.key, tls.client_ca: mTLS); a worker
 * with neither that listens beyond loopback says so at startup.  --print-config prints an example configuration file, --print-config-man the
 * roff OPTIONS section spliced into certa-worker(8) by scripts/gen-docs.sh.
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <event2/event.h>
#include <grpc/grpc_security.h>

#include "lib/cmdline.h"
#include "lib/config.h"
#include "lib/cqbridge.h"
#include "lib/cred.h"
#include "lib/error.h"
#include "lib/health.h"
#include "lib/reflection.h"
#include "lib/log.h"
#include "lib/proc.h"
#include "lib/rpc_server.h"
#include "lib/version.h"
#include "workers/engine.h"
#include "workers/wauth.h"
#include "workers/worker.h"

static const char *const wmain_engines[] = { "replay", "llm", "openai", NULL };
static const char *const wmain_levels[] = { "err", "warn", "notice", "info", "debug", NULL };

static const struct config_option wmain_options[] = {
	{ .name = "listen",
	  .type = CONFIG_STRING,
	  .def = "127.0.0.1:7701",
	  .help = "gRPC address to serve the Worker service on (host:port, port 0 = any free "
	          "port)" },
	{ .name = "engine",
	  .type = CONFIG_ENUM,
	  .def = "replay",
	  .choices = wmain_engines,
	  .help = "decode engine" },
	{ .name = "traces",
	  .type = CONFIG_STRING,
	  .help = "replay engine: directory of recorded *.jsonl.gz traces" },
	{ .name = "model",
	  .type = CONFIG_STRING,
	  .help = "replay engine: default model served (empty: the engine's first); llm engine: "
	          "the GGUF model file (as llm.model_file); openai engine: the upstream's model "
	          "name, also the name served" },
	{ .name = "capacity",
	  .type = CONFIG_INT,
	  .def = "256",
	  .min = 1,
	  .max = 1000000,
	  .help = "maximum concurrent requests held by this worker" },
	{ .name = "llm.model_file",
	  .type = CONFIG_STRING,
	  .help = "llm engine: the GGUF model file (llama, qwen2, qwen3, qwen3moe); model says "
	          "the same" },
	{ .name = "llm.alias",
	  .type = CONFIG_STRING,
	  .help = "llm engine: model name served and reported by Info (empty: the file's "
	          "general.name)" },
	{ .name = "llm.threads",
	  .type = CONFIG_INT,
	  .def = "0",
	  .min = 0,
	  .max = 1024,
	  .help = "llm engine: compute threads (0: one per online CPU)" },
	{ .name = "llm.kv_memory",
	  .type = CONFIG_SIZE,
	  .def = "1G",
	  .min = 1048576,
	  .max = 1099511627776.0,
	  .help = "llm engine: memory for the KV cache of all sequences; capacity is this over "
	          "the KV size of one sequence at full context (probes need one more)" },
	{ .name = "llm.context",
	  .type = CONFIG_INT,
	  .def = "0",
	  .min = 0,
	  .max = 1048576,
	  .help = "llm engine: positions per sequence, prompt included (0: the model's "
	          "context length)" },
	{ .name = "llm.probe_suffix",
	  .type = CONFIG_STRING,
	  .help = "llm engine: text appended to a fork of the chain to probe its answer (empty: "
	          "Dynasor's, ending in an opened \\boxed{); the probe stops at the matching "
	          "closing brace" },
	{ .name = "llm.chat_format",
	  .type = CONFIG_STRING,
	  .help = "llm engine: prompt format (chatml, qwen3, qwq, deepseek-r1, llama3, none; "
	          "empty: from the model's metadata)" },
	{ .name = "llm.max_batch_tokens",
	  .type = CONFIG_INT,
	  .def = "512",
	  .min = 1,
	  .max = 65536,
	  .help = "llm engine: tokens per batched iteration (decodes, probe tokens and prefill "
	          "chunks of all running steps together); longer prefills are chunked" },
	{ .name = "llm.device",
	  .type = CONFIG_STRING,
	  .def = "cpu",
	  .help = "llm engine: compute backend: cpu, or cuda / cuda:N (CUDA device N, as "
	          "CUDA_VISIBLE_DEVICES leaves them) where built with CUDA" },
	{ .name = "upstream",
	  .type = CONFIG_LIST,
	  .help = "openai engine: base URL of an OpenAI-compatible completions server "
	          "(http://HOST:PORT or https://...; /v1/completions is appended); repeat for "
	          "data-parallel replicas" },
	{ .name = "upstream_key_file",
	  .type = CONFIG_STRING,
	  .help = "openai engine: file whose first line is the upstream's API key (sent as "
	          "'Authorization: Bearer KEY')" },
	{ .name = "openai.chat_format",
	  .type = CONFIG_STRING,
	  .def = "chatml",
	  .help = "openai engine: prompt format the worker applies (chatml, qwen3, qwq, "
	          "deepseek-r1, llama3, none)" },
	{ .name = "openai.probe_suffix",
	  .type = CONFIG_STRING,
	  .help = "openai engine: text appended to the chain to probe its answer (empty: "
	          "Dynasor's, as llm.probe_suffix)" },
	{ .name = "openai.timeout",
	  .type = CONFIG_DURATION,
	  .def = "300s",
	  .min = 100,
	  .max = 86400000,
	  .help = "openai engine: longest wait for one completion (then the upstream counts as "
	          "unavailable)" },
	{ .name = "openai.connect_timeout",
	  .type = CONFIG_DURATION,
	  .def = "5s",
	  .min = 10,
	  .max = 600000,
	  .help = "openai engine: longest wait for a connection to the upstream" },
	{ .name = "openai.retries",
	  .type = CONFIG_INT,
	  .def = "3",
	  .min = 0,
	  .max = 100,
	  .help = "openai engine: retries of a request the upstream answers 429 (after its "
	          "Retry-After, at most 10 s; then RESOURCE_EXHAUSTED)" },
	{ .name = "openai.logprobs",
	  .type = CONFIG_INT,
	  .def = "5",
	  .min = 1,
	  .max = 20,
	  .help = "openai engine: alternatives per token asked for (logprobs), for the entropy "
	          "estimate; vLLM allows up to its --max-logprobs (20)" },
	{ .name = "openai.ca_file",
	  .type = CONFIG_STRING,
	  .help = "openai engine: CA bundle (PEM) for https upstreams (empty: the system's)" },
	{ .name = "step_delay",
	  .type = CONFIG_DURATION,
	  .def = "0",
	  .min = 0,
	  .max = 60000,
	  .help = "hold each step this long before running it (simulated decode time)" },
	{ .name = "gpu_profile",
	  .type = CONFIG_STRING,
	  .help = "replay engine: GPU timing model (profiles/*.gpu, workers/gpuprof.h): steps "
	          "take the time a continuous-batching engine would, given what else runs; empty: "
	          "steps return at once" },
	{ .name = "time_scale",
	  .type = CONFIG_DOUBLE,
	  .def = "0",
	  .min = 0,
	  .max = 1000,
	  .help = "replay engine with gpu_profile: wall seconds per modelled GPU second (0: the "
	          "profile's time_scale)" },
	{ .name = "log_level",
	  .type = CONFIG_ENUM,
	  .def = "info",
	  .choices = wmain_levels,
	  .help = "log level" },
	{ .name = "port_file",
	  .type = CONFIG_STRING,
	  .help = "write the bound port to this file once listening" },
	{ .name = "token_file",
	  .type = CONFIG_STRING,
	  .help = "file holding the shared worker token: Worker calls must carry 'authorization: "
	          "Bearer TOKEN' (first line, at least 16 characters; certad's "
	          "workers.token_file)" },
	{ .name = "tls.cert",
	  .type = CONFIG_STRING,
	  .help = "server certificate (PEM); set: the worker serves TLS only (needs tls.key)" },
	{ .name = "tls.key",
	  .type = CONFIG_STRING,
	  .help = "private key of tls.cert (PEM)" },
	{ .name = "tls.client_ca",
	  .type = CONFIG_STRING,
	  .help = "CA bundle that signs client certificates (PEM): every client must present one "
	          "(mTLS; certad's workers.tls_cert)" },
	{ .name = "tls.allowed_cn",
	  .type = CONFIG_LIST,
	  .help = "client certificate common name allowed to call the Worker service; repeat for "
	          "each (none: any certificate tls.client_ca signed)" },
};
#define WMAIN_NOPTIONS (sizeof wmain_options / sizeof wmain_options[0])

struct wmain {
	struct proc *proc;
	struct rpc_server *srv;
	struct health *health;
	struct wauth *auth;
	struct engine *engine;   /* aborted at SIGTERM: in-flight steps end now */
	int stopping;
};

/* Credentials read from the files the configuration names (each NULL when not set). */
struct wmain_cred {
	char *cert, *key, *client_ca, *token;
};

static void
wmain_usage(FILE *f)
{
	fprintf(f,
	    "usage: certa-worker [--listen ADDR] [--engine NAME] [--traces DIR] [--capacity N]\n"
	    "                    [--model NAME|PATH.gguf] [--config FILE] [--set KEY=VALUE]\n"
	    "                    [--port-file FILE] [--step-delay MS] [--log-level LEVEL]\n"
	    "                    [--token-file FILE] [--tls-cert FILE] [--tls-key FILE]\n"
	    "                    [--tls-client-ca FILE] [--check-config]\n"
	    "                    [--model-file PATH.gguf] [--threads N] [--kv-memory SIZE]\n"
	    "                    [--alias NAME] [--max-batch-tokens N] [--device cpu|cuda[:N]]\n"
	    "                    [--upstream URL ...] [--upstream-key-file FILE]\n"
	    "                    [--print-config] [--print-config-man] [--version]\n"
	    "                    [--gpu-profile FILE] [--time-scale X]\n"
	    "engines: %s\n"
	    "--model: replay, the default model of the traces; llm, the GGUF file (the served\n"
	    "name is its general.name or --alias); --model-file is the llm's explicit form;\n"
	    "openai, the upstream's model name (--engine openai --upstream URL --model NAME)\n",
	    engine_names());
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
	/* Steps waiting on an upstream end now, so the server's calls complete. */
	if (m->engine != NULL)
		engine_abort(m->engine);
	rpc_server_shutdown(m->srv, wmain_server_done, m);
}

/* The worker's own flags: each sets one option (lib/cmdline.h adds --config, --set, ...). */
static const struct cmdline_flag wmain_flags[] = {
	{ "listen", "listen" }, { "engine", "engine" }, { "traces", "traces" },
	{ "model", "model" }, { "capacity", "capacity" }, { "log-level", "log_level" },
	{ "port-file", "port_file" }, { "step-delay", "step_delay" },
	{ "token-file", "token_file" }, { "tls-cert", "tls.cert" }, { "tls-key", "tls.key" },
	{ "tls-client-ca", "tls.client_ca" }, { "model-file", "llm.model_file" },
	{ "threads", "llm.threads" }, { "kv-memory", "llm.kv_memory" }, { "alias", "llm.alias" },
	{ "max-batch-tokens", "llm.max_batch_tokens" }, { "device", "llm.device" },
	{ "upstream", "upstream" }, { "upstream-key-file", "upstream_key_file" },
	{ "gpu-profile", "gpu_profile" }, { "time-scale", "time_scale" },
};

static const struct cmdline_program wmain_cmdline = {
	.name = "certa-worker",
	.options = wmain_options,
	.noptions = WMAIN_NOPTIONS,
	.flags = wmain_flags,
	.nflags = sizeof wmain_flags / sizeof wmain_flags[0],
	.usage = wmain_usage,
};

static void
wmain_cred_clear(struct wmain_cred *wc)
{
	free(wc->cert);
	cred_free_secret(wc->key);
	free(wc->client_ca);
	cred_free_secret(wc->token);
	memset(wc, 0, sizeof *wc);
}

/* Reads token_file and tls.* (for startup and --check-config alike). */
static int
wmain_cred_load(const struct config *cfg, struct wmain_cred *wc, char *err, size_t errlen)
{
	const char *cert = config_get_str(cfg, "tls.cert"), *key = config_get_str(cfg, "tls.key");
	const char *ca = config_get_str(cfg, "tls.client_ca");
	const char *tok = config_get_str(cfg, "token_file");
	int rc = 0;

	memset(wc, 0, sizeof *wc);
#define WMAIN_SET(s) ((s) != NULL && (s)[0] != '\0')
	if (WMAIN_SET(cert) != WMAIN_SET(key)) {
		snprintf(err, errlen, "tls.cert and tls.key go together");
		return CERTA_ECONFIG;
	}
	if (WMAIN_SET(ca) && !WMAIN_SET(cert)) {
		snprintf(err, errlen, "tls.client_ca needs tls.cert and tls.key (mTLS)");
		return CERTA_ECONFIG;
	}
	if (config_is_set(cfg, "tls.allowed_cn") && !WMAIN_SET(ca)) {
		snprintf(err, errlen, "tls.allowed_cn needs tls.client_ca");
		return CERTA_ECONFIG;
	}
	if (WMAIN_SET(cert) &&
	    ((rc = cred_read_pem("tls.cert", cert, &wc->cert, err, errlen)) != 0 ||
	    (rc = cred_read_pem("tls.key", key, &wc->key, err, errlen)) != 0))
		goto fail;
	if (WMAIN_SET(ca) &&
	    (rc = cred_read_pem("tls.client_ca", ca, &wc->client_ca, err, errlen)) != 0)
		goto fail;
	if (WMAIN_SET(tok) &&
	    (rc = cred_read_token("token_file", tok, &wc->token, err, errlen)) != 0)
		goto fail;
#undef WMAIN_SET
	return 0;
fail:
	wmain_cred_clear(wc);
	return rc;
}

/*
 * The llm engine's GGUF file: llm.model_file, else model (the user's `--model PATH.gguf`).
 * Both set and different is refused: which file to load would be a guess.  *model is what the
 * engine gets as its default model name: NULL for llm (the name comes from the file).
 */
static int
wmain_llm_model(const struct config *cfg, const char **model_file, const char **model,
    char *err, size_t errlen)
{
	const char *file = config_get_str(cfg, "llm.model_file");
	const char *name = config_get_str(cfg, "model");
	bool has_file = file != NULL && file[0] != '\0', has_name = name != NULL && name[0];

	*model_file = file;
	*model = name;
	if (strcmp(config_get_str(cfg, "engine"), "llm") != 0)
		return 0;
	*model = NULL;
	if (has_file && has_name && strcmp(file, name) != 0) {
		snprintf(err, errlen, "--model %s and --model-file %s name two files: give one "
		    "(the served name is the file's general.name or --alias)", name, file);
		return CERTA_ECONFIG;
	}
	if (!has_file && has_name)
		*model_file = name;
	return 0;
}

/* Whether a listen address only accepts local peers (unix socket, 127/8, ::1, localhost). */
static int
wmain_is_loopback(const char *addr)
{
	char host[256];
	const char *colon;
	size_t n;
	unsigned char a[16];

	if (strncmp(addr, "unix:", 5) == 0 || strncmp(addr, "unix-abstract:", 14) == 0)
		return 1;
	if (strncmp(addr, "ipv4:", 5) == 0 || strncmp(addr, "ipv6:", 5) == 0)
		addr += 5;
	colon = strrchr(addr, ':');
	n = colon != NULL ? (size_t)(colon - addr) : strlen(addr);
	if (n >= 2 && addr[0] == '[' && addr[n - 1] == ']') {
		addr++;
		n -= 2;
	}
	if (n >= sizeof host)
		return 0;
	memcpy(host, addr, n);
	host[n] = '\0';
	if (strcmp(host, "localhost") == 0)
		return 1;
	if (inet_pton(AF_INET, host, a) == 1)
		return a[0] == 127;
	if (inet_pton(AF_INET6, host, a) == 1) {
		static const unsigned char lo[16] = { [15] = 1 };
		return memcmp(a, lo, sizeof lo) == 0;
	}
	return 0;
}

/* Binds the listener: TLS (mTLS with a client CA) when a certificate is configured. */
static int
wmain_listen(struct wmain *m, const char *addr, const struct wmain_cred *wc, int *port)
{
	grpc_server_credentials *creds;
	int rc;

	if (wc->cert == NULL)
		return rpc_server_listen(m->srv, addr, port);
	creds = cred_server_tls(wc->cert, wc->key, wc->client_ca);
	if (creds == NULL)
		return CERTA_ECONFIG;
	rc = rpc_server_listen_creds(m->srv, addr, creds, port);
	grpc_server_credentials_release(creds);
	return rc;
}

/* The startup line about who may call: warns when anyone who reaches the port may. */
static void
wmain_log_auth(const char *addr, const struct wmain_cred *wc)
{
	if (wc->token == NULL && wc->client_ca == NULL) {
		if (wmain_is_loopback(addr))
			return;
		log_warn(LOG_MAIN, "listening on %s without authentication: anyone who can reach "
		    "this port can Step, Release and read Info; set --token-file and/or tls.cert, "
		    "tls.key and tls.client_ca (mTLS)", addr);
		return;
	}
	log_info(LOG_MAIN, "Worker calls need %s%s%s%s", wc->client_ca ? "a client certificate" :
	    "", wc->client_ca && wc->token ? " and " : "", wc->token ? "the worker token" : "",
	    wc->cert != NULL && wc->client_ca == NULL ? " (TLS without client certificates)" :
	    "");
}

int
main(int argc, char **argv)
{
	struct cmdline *cl = NULL;
	struct config *cfg = NULL;
	struct engine *engine = NULL;
	struct worker *w = NULL;
	struct reflection *refl = NULL;   /* gRPC server reflection; outlives the server */
	struct wmain m;
	struct engine_options eo;
	const struct rpc_method *methods, *hmethods;
	size_t nmethods, nhmethods;
	char err[512];
	const char *port_file;
	enum log_level lvl;
	struct wmain_cred wc;
	struct wauth_options wo;
	int rc, port = 0, check_only;

	memset(&m, 0, sizeof m);
	memset(&wc, 0, sizeof wc);
	memset(&eo, 0, sizeof eo);
	log_init("certa-worker", LOG_FORMAT_AUTO, LOG_LVL_INFO);
	rc = cmdline_parse(&wmain_cmdline, argc, argv, &cl, &cfg);
	if (rc != CMDLINE_RUN)
		return rc;
	check_only = cmdline_check_only(cl);
	cmdline_free(cl);
	if (wmain_cred_load(cfg, &wc, err, sizeof err) != 0) {
		fprintf(stderr, "certa-worker: %s\n", err);
		config_free(cfg);
		return 2;
	}
	if (wmain_llm_model(cfg, &eo.model_file, &eo.model, err, sizeof err) != 0) {
		fprintf(stderr, "certa-worker: %s\n", err);
		wmain_cred_clear(&wc);
		config_free(cfg);
		return 2;
	}
	if (check_only) {
		printf("certa-worker: configuration OK\n");
		wmain_cred_clear(&wc);
		config_free(cfg);
		return 0;
	}
	(void)log_level_parse(config_get_str(cfg, "log_level"), &lvl);
	log_set_level(lvl);

	eo.traces_dir = config_get_str(cfg, "traces");
	eo.capacity = (uint32_t)config_get_int(cfg, "capacity");
	eo.alias = config_get_str(cfg, "llm.alias");
	eo.threads = (uint32_t)config_get_int(cfg, "llm.threads");
	eo.kv_memory = (uint64_t)config_get_int(cfg, "llm.kv_memory");
	eo.context = (uint32_t)config_get_int(cfg, "llm.context");
	eo.probe_suffix = config_get_str(cfg, "llm.probe_suffix");
	eo.chat_format = config_get_str(cfg, "llm.chat_format");
	eo.max_batch_tokens = (uint32_t)config_get_int(cfg, "llm.max_batch_tokens");
	eo.device = config_get_str(cfg, "llm.device");
	if (strcmp(config_get_str(cfg, "engine"), "openai") == 0) {
		eo.probe_suffix = config_get_str(cfg, "openai.probe_suffix");
		eo.chat_format = config_get_str(cfg, "openai.chat_format");
	}
	eo.nupstreams = config_get_list(cfg, "upstream", &eo.upstreams);
	eo.upstream_key_file = config_get_str(cfg, "upstream_key_file");
	eo.ca_file = config_get_str(cfg, "openai.ca_file");
	eo.logprobs = (uint32_t)config_get_int(cfg, "openai.logprobs");
	eo.retries = (uint32_t)config_get_int(cfg, "openai.retries");
	eo.timeout_ms = (uint64_t)config_get_int(cfg, "openai.timeout");
	eo.connect_timeout_ms = (uint64_t)config_get_int(cfg, "openai.connect_timeout");
	eo.gpu_profile = config_get_str(cfg, "gpu_profile");
	eo.time_scale = config_get_double(cfg, "time_scale");
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
	/* Compute engines step on a thread of their own; completions come back to this loop. */
	rc = engine_attach(engine, proc_base(m.proc));
	if (rc != 0) {
		log_err(LOG_MAIN, "cannot start the engine thread: %s", certa_strerror(rc));
		goto out_proc;
	}
	m.engine = engine;
	rc = worker_new(engine, proc_base(m.proc), (int)config_get_int(cfg, "step_delay"), &w);
	if (rc != 0)
		goto out_proc;
	methods = worker_methods(&nmethods);
	rc = health_new(&m.health);
	if (rc != 0)
		goto out_proc;
	worker_set_health(w, m.health);     /* NOT_SERVING after a device error */
	rc = rpc_server_new(proc_bridge(m.proc), methods, nmethods, w, &m.srv);
	if (rc != 0) {
		health_free(m.health);
		goto out_proc;
	}
	hmethods = health_methods(&nhmethods);
	rc = rpc_server_add_methods(m.srv, hmethods, nhmethods, m.health);
	if (rc == 0 && (rc = reflection_new(&refl)) == 0) {
		hmethods = reflection_methods(&nhmethods);
		rc = rpc_server_add_methods(m.srv, hmethods, nhmethods, refl);
	}
	memset(&wo, 0, sizeof wo);
	wo.token = wc.token;
	wo.nallowed_cns = config_get_list(cfg, "tls.allowed_cn", &wo.allowed_cns);
	if (rc == 0 && (rc = wauth_new(&wo, &m.auth)) == 0)
		rpc_server_set_authorizer(m.srv, wauth_authorize, m.auth);
	if (rc == 0)
		rc = wmain_listen(&m, config_get_str(cfg, "listen"), &wc, &port);
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
	wmain_log_auth(config_get_str(cfg, "listen"), &wc);
	wmain_cred_clear(&wc);
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
	engine_detach(engine);
	proc_free(m.proc);
	wauth_free(m.auth);
	reflection_free(refl);
out_engine:
	engine_close(engine);
out_cfg:
	wmain_cred_clear(&wc);
	config_free(cfg);
	return rc == 0 ? 0 : 1;
}
