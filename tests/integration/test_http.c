/*
 * test_http.c — certad's OpenAI-compatible HTTP API (daemon/openai.c) driven by real clients
 * against the real daemon and a replay worker:
 *  - curl: server-sent events in OpenAI's chunk format (reasoning_content deltas, the answer,
 *    finish_reason, [DONE]; every event strict JSON), the program found over gRPC Get, the
 *    error shapes and statuses (401, 404, 400 naming the parameter, 405), /v1/models, 429
 *    with Retry-After for a quota, and a client that disconnects without cancelling;
 *  - the official `openai` npm package (tests/http/openai_client.cjs): chat completions with
 *    and without streaming, n=3, completions, and its error classes.  Installed into
 *    $BUILD/npm at test time (tests/http/npm-openai.sh); the test says SKIP with the reason
 *    when node, npm or the registry is missing.
 */
#include <errno.h>
#include <stdbool.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include <grpc/grpc.h>

#include "certa/v1/admin.pb-c.h"
#include "certa/v1/reasoning.pb-c.h"
#include "lib/json.h"
#include "lib/jsonw.h"
#include "tests/support/harness.h"
#include "tests/support/itest.h"

struct env {
	struct itest it;             /* first */
	int hport;                   /* the HTTP API */
	char key[160];               /* tenant "acme" */
	bool https;                  /* curl over TLS (DIR/ca.pem) */
};

static int
setup(void **state)
{
	*state = itest_new(sizeof(struct env), 240, ITEST_TRACES_PICK);
	return 0;
}

/* Skips the test when curl is missing (scripts/deps.sh installs it). */
static void
need_curl(void)
{
	if (harness_sh("command -v curl >/dev/null 2>&1") != 0) {
		print_message("SKIP: curl is not installed (scripts/deps.sh installs it)\n");
		skip();
	}
}

/* Starts the worker (with a step delay, or none) and certad with the HTTP API, and creates
 * tenant acme (quota: max concurrent programs, 0 = default). */
static void
start(struct env *e, const char *delay, uint32_t max_concurrent)
{
	char lset[640], pf[600], cert[640], key[640];
	const char *sets[] = { "http.listen=127.0.0.1:0", lset, NULL, NULL, NULL, NULL };
	Certa__V1__CreateTenantRequest req = CERTA__V1__CREATE_TENANT_REQUEST__INIT;
	Certa__V1__Tenant t = CERTA__V1__TENANT__INIT;
	Certa__V1__Quota q = CERTA__V1__QUOTA__INIT;
	Certa__V1__CreateTenantReply *r = NULL;
	char msg[512];

	need_curl();
	snprintf(pf, sizeof pf, "%s/h.port", e->it.dir);
	snprintf(lset, sizeof lset, "http.port_file=%s", pf);
	if (e->https) {
		snprintf(cert, sizeof cert, "tls.cert=%s/server.pem", e->it.dir);
		snprintf(key, sizeof key, "tls.key=%s/server.key", e->it.dir);
		sets[2] = "http.tls=true";
		sets[3] = cert;
		sets[4] = key;
	}
	itest_start(&e->it, delay, ITEST_ADMIN | ITEST_SETTLE, sets);
	assert_int_equal(harness_wait_port_file(pf, 20000, &e->hport), 0);
	t.name = (char *)"acme";
	q.max_concurrent_programs = max_concurrent;
	t.quota = &q;
	req.tenant = &t;
	assert_int_equal(itest_call(e->it.adm, "/certa.v1.Admin/CreateTenant", &req.base,
	    &certa__v1__create_tenant_reply__descriptor, NULL, (ProtobufCMessage **)&r, msg,
	    sizeof msg), GRPC_STATUS_OK);
	snprintf(e->key, sizeof e->key, "%s", r->api_key);
	protobuf_c_message_free_unpacked(&r->base, NULL);
}

/* Writes a chat request for the picked problem to DIR/name; `extra` is more members
 * (",\"stream\":true" ...) or "". */
static void
write_chat(struct env *e, const char *name, const char *model, const char *extra)
{
	struct jsonw *w;
	const char *data;
	char path[600];

	assert_int_equal(jsonw_new(&w), 0);
	jsonw_object_begin(w);
	jsonw_kstring(w, "model", model);
	jsonw_key(w, "messages");
	jsonw_array_begin(w);
	jsonw_object_begin(w);
	jsonw_kstring(w, "role", "user");
	jsonw_kstring(w, "content", e->it.tr->problem);
	jsonw_object_end(w);
	jsonw_array_end(w);
	jsonw_object_end(w);
	data = jsonw_data(w, NULL);
	assert_non_null(data);
	snprintf(path, sizeof path, "%s/%s", e->it.dir, name);
	/* Splice the extra members in before the closing brace. */
	assert_int_equal(harness_write_file(path, "%.*s%s}", (int)strlen(data) - 1, data, extra),
	    0);
	jsonw_free(w);
}

/*
 * curl METHOD PATH with the bearer (NULL: none) and the body file DIR/body (NULL: none);
 * returns the HTTP status; the body goes to DIR/out, the headers to DIR/out.hdr (read into
 * *body / *hdr when not NULL; caller frees).
 */
static int
curl(struct env *e, const char *method, const char *path, const char *bearer, const char *body,
    const char *out, int max_time_s, char **bodyp, char **hdrp)
{
	char auth[256] = "", data[700] = "", outp[600], hdrpath[620], codep[620], tls[640] = "";
	char *code = NULL;
	int status;

	if (bearer != NULL)
		snprintf(auth, sizeof auth, "-H 'Authorization: Bearer %s'", bearer);
	if (body != NULL)
		snprintf(data, sizeof data, "-H 'Content-Type: application/json' "
		    "--data-binary @%s/%s", e->it.dir, body);
	snprintf(outp, sizeof outp, "%s/%s", e->it.dir, out);
	snprintf(hdrpath, sizeof hdrpath, "%s.hdr", outp);
	snprintf(codep, sizeof codep, "%s.code", outp);
	if (e->https)
		snprintf(tls, sizeof tls, "--cacert %s/ca.pem", e->it.dir);
	(void)harness_sh("curl -sS -N --max-time %d -X %s %s %s %s -D %s -o %s -w '%%{http_code}' "
	    "%s://localhost:%d%s > %s 2>>%s/curl.err", max_time_s, method, auth, data, tls,
	    hdrpath, outp, e->https ? "https" : "http", e->hport, path, codep, e->it.dir);
	assert_int_equal(harness_read_file(codep, &code), 0);
	status = atoi(code);
	free(code);
	if (bodyp != NULL)
		assert_int_equal(harness_read_file(outp, bodyp), 0);
	if (hdrp != NULL)
		assert_int_equal(harness_read_file(hdrpath, hdrp), 0);
	return status;
}

/* An error reply in OpenAI's shape: {"error": {"message", "type", "param", "code"}}; checks
 * param (NULL: JSON null) and code (NULL: any). */
static void
check_error(const char *body, const char *param, const char *code)
{
	struct json_doc *doc;
	const struct json_value *er;
	char jerr[128];

	if (json_parse(body, strlen(body), &doc, jerr, sizeof jerr) != 0)
		fail_msg("error body is not JSON (%s): %s", jerr, body);
	er = json_object_get(json_root(doc), "error");
	assert_int_equal(json_type(er), JSON_OBJECT);
	assert_int_equal(json_type(json_object_get(er, "message")), JSON_STRING);
	assert_true(strlen(json_string(json_object_get(er, "message"), NULL)) > 0);
	assert_int_equal(json_type(json_object_get(er, "type")), JSON_STRING);
	assert_non_null(json_object_get(er, "param"));
	assert_non_null(json_object_get(er, "code"));
	if (param == NULL)
		assert_int_equal(json_type(json_object_get(er, "param")), JSON_NULL);
	else
		assert_string_equal(json_string(json_object_get(er, "param"), NULL), param);
	if (code != NULL)
		assert_string_equal(json_string(json_object_get(er, "code"), NULL), code);
	json_free(doc);
}

/* The program's state over gRPC Get with the tenant's key (what certactl get shows). */
static int
program_state(struct env *e, const char *id)
{
	Certa__V1__GetRequest req = CERTA__V1__GET_REQUEST__INIT;
	Certa__V1__Program *p = NULL;
	char msg[256];
	int st;

	req.program_id = (char *)id;
	assert_int_equal(itest_call(e->it.ch, "/certa.v1.Reasoning/Get", &req.base,
	    &certa__v1__program__descriptor, e->key, (ProtobufCMessage **)&p, msg, sizeof msg),
	    GRPC_STATUS_OK);
	st = (int)p->state;
	protobuf_c_message_free_unpacked(&p->base, NULL);
	return st;
}

/* The program id of the first event of an SSE body ("" when none). */
static void
sse_program_id(const char *sse, char *id, size_t len)
{
	const char *p = strstr(sse, "\"program_id\":\"");

	id[0] = '\0';
	if (p != NULL)
		snprintf(id, len, "%.*s", (int)strcspn(p + 14, "\""), p + 14);
}

/* Streaming over curl: every event is strict JSON in OpenAI's chunk format; the reasoning,
 * the answer, finish_reason, [DONE]; the program is the tenant's over gRPC. */
static void
test_curl_sse(void **state)
{
	struct env *e = *state;
	char *body = NULL, *hdr = NULL, *line, *save = NULL, id[64];
	size_t events = 0, reasoning = 0, content = 0, finish = 0, progress = 0, done = 0;
	const char *model;

	if (e == NULL)
		skip();
	start(e, NULL, 0);
	model = e->it.tr->model;
	write_chat(e, "stream.json", model, ",\"stream\":true,\"n\":2,"
	    "\"stream_options\":{\"include_usage\":true}");
	assert_int_equal(curl(e, "POST", "/v1/chat/completions", e->key, "stream.json", "sse.out",
	    60, &body, &hdr), 200);
	assert_non_null(strstr(hdr, "Content-Type: text/event-stream"));
	assert_int_equal(strncmp(body, "data: {", 7), 0);
	sse_program_id(body, id, sizeof id);
	assert_int_equal(strncmp(id, "p-", 2), 0);
	assert_true(strlen(body) > 14 &&
	    strcmp(body + strlen(body) - 14, "data: [DONE]\n\n") == 0);
	for (line = strtok_r(body, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
		struct json_doc *doc;
		const struct json_value *root, *choices;
		char jerr[128];
		size_t i;

		assert_int_equal(strncmp(line, "data: ", 6), 0);
		if (strcmp(line + 6, "[DONE]") == 0) {
			done++;
			continue;
		}
		assert_int_equal(done, 0);  /* nothing after [DONE] */
		if (json_parse(line + 6, strlen(line + 6), &doc, jerr, sizeof jerr) != 0)
			fail_msg("event %zu is not JSON (%s): %.200s", events, jerr, line);
		events++;
		root = json_root(doc);
		assert_string_equal(json_string(json_object_get(root, "object"), NULL),
		    "chat.completion.chunk");
		assert_string_equal(json_string(json_object_get(root, "model"), NULL), model);
		if (json_type(json_object_get(json_object_get(root, "certa"), "certaindex")) ==
		    JSON_NUMBER)
			progress++;
		choices = json_object_get(root, "choices");
		assert_int_equal(json_type(choices), JSON_ARRAY);
		for (i = 0; i < json_array_len(choices); i++) {
			const struct json_value *c = json_array_at(choices, i);
			const struct json_value *d = json_object_get(c, "delta");
			const char *s;
			assert_true(json_int(json_object_get(c, "index")) < 2);
			if ((s = json_string(json_object_get(d, "reasoning_content"), NULL)) != NULL)
				reasoning += strlen(s);
			if ((s = json_string(json_object_get(d, "content"), NULL)) != NULL)
				content += strlen(s);
			if ((s = json_string(json_object_get(c, "finish_reason"), NULL)) != NULL) {
				assert_true(strcmp(s, "stop") == 0 || strcmp(s, "length") == 0);
				finish++;
			}
		}
		json_free(doc);
	}
	assert_int_equal(done, 1);
	assert_true(events >= 4);
	assert_true(reasoning > 100);
	assert_true(content > 0);
	assert_int_equal(finish, 2);           /* one per choice (n = 2) */
	assert_true(progress > 0);
	free(body);
	free(hdr);
	/* certactl get finds it: the tenant's program, finished. */
	assert_int_equal(program_state(e, id), CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_FINISHED);
}

/* Error shapes and statuses, /v1/models, and the non-stream response. */
static void
test_curl_errors(void **state)
{
	struct env *e = *state;
	char *body = NULL, *hdr = NULL;

	if (e == NULL)
		skip();
	start(e, NULL, 0);
	write_chat(e, "ok.json", e->it.tr->model, "");
	write_chat(e, "nomodel.json", "no-such-model", "");
	write_chat(e, "badtemp.json", e->it.tr->model, ",\"temperature\":\"hot\"");
	write_chat(e, "badn.json", e->it.tr->model, ",\"n\":1.5");
	{
		char p[600];
		snprintf(p, sizeof p, "%s/garbage.json", e->it.dir);
		assert_int_equal(harness_write_file(p, "{\"model\": "), 0);
	}

	assert_int_equal(curl(e, "POST", "/v1/chat/completions", NULL, "ok.json", "e1", 20, &body,
	    NULL), 401);
	check_error(body, NULL, "invalid_api_key");
	free(body);
	assert_int_equal(curl(e, "POST", "/v1/chat/completions", "certa_bad_key", "ok.json", "e2",
	    20, &body, NULL), 401);
	check_error(body, NULL, "invalid_api_key");
	free(body);
	assert_int_equal(curl(e, "POST", "/v1/chat/completions", e->key, "nomodel.json", "e3", 20,
	    &body, NULL), 404);
	check_error(body, "model", "model_not_found");
	free(body);
	assert_int_equal(curl(e, "POST", "/v1/chat/completions", e->key, "badtemp.json", "e4", 20,
	    &body, NULL), 400);
	check_error(body, "temperature", NULL);
	free(body);
	assert_int_equal(curl(e, "POST", "/v1/chat/completions", e->key, "badn.json", "e5", 20,
	    &body, NULL), 400);
	check_error(body, "n", NULL);
	free(body);
	assert_int_equal(curl(e, "POST", "/v1/chat/completions", e->key, "garbage.json", "e6", 20,
	    &body, NULL), 400);
	check_error(body, NULL, NULL);
	free(body);
	assert_int_equal(curl(e, "GET", "/v1/chat/completions", e->key, NULL, "e7", 20, &body,
	    &hdr), 405);
	check_error(body, NULL, "method_not_allowed");
	assert_non_null(strstr(hdr, "Allow: POST"));
	free(body);
	free(hdr);
	assert_int_equal(curl(e, "GET", "/v1/embeddings", e->key, NULL, "e8", 20, &body, NULL),
	    404);
	check_error(body, NULL, "unknown_url");
	free(body);

	/* A program that fails (the replay worker has no trace of this problem) answers an
	 * error (its status follows the failure's), and a stream ends with an error event. */
	{
		char p[600];
		snprintf(p, sizeof p, "%s/unknown.json", e->it.dir);
		assert_int_equal(harness_write_file(p, "{\"model\":\"%s\",\"messages\":[{\"role\":"
		    "\"user\",\"content\":\"No trace has this problem.\"}]}", e->it.tr->model), 0);
		snprintf(p, sizeof p, "%s/unknown-stream.json", e->it.dir);
		assert_int_equal(harness_write_file(p, "{\"model\":\"%s\",\"stream\":true,"
		    "\"messages\":[{\"role\":\"user\",\"content\":\"No trace has this problem.\"}]}",
		    e->it.tr->model), 0);
	}
	{
		int st = curl(e, "POST", "/v1/chat/completions", e->key, "unknown.json", "f1", 30,
		    &body, NULL);
		assert_true(st >= 400 && st < 600);
		check_error(body, NULL, NULL);
		assert_non_null(strstr(body, "failed"));
		free(body);
	}
	assert_int_equal(curl(e, "POST", "/v1/chat/completions", e->key, "unknown-stream.json",
	    "f2", 30, &body, NULL), 200);
	assert_non_null(strstr(body, "data: {\"error\":{\"message\":"));
	assert_true(strlen(body) > 14 &&
	    strcmp(body + strlen(body) - 14, "data: [DONE]\n\n") == 0);
	free(body);

	/* /v1/models names the worker's model. */
	assert_int_equal(curl(e, "GET", "/v1/models", e->key, NULL, "models", 20, &body, NULL),
	    200);
	assert_non_null(strstr(body, "\"object\":\"list\""));
	{
		char want[300];
		snprintf(want, sizeof want, "{\"id\":\"%s\",\"object\":\"model\"", e->it.tr->model);
		assert_non_null(strstr(body, want));
	}
	free(body);

	/* The whole response at once. */
	assert_int_equal(curl(e, "POST", "/v1/chat/completions", e->key, "ok.json", "full", 60,
	    &body, NULL), 200);
	{
		struct json_doc *doc;
		const struct json_value *root, *c0, *u;
		char jerr[128];
		if (json_parse(body, strlen(body), &doc, jerr, sizeof jerr) != 0)
			fail_msg("not JSON (%s): %.300s", jerr, body);
		root = json_root(doc);
		assert_string_equal(json_string(json_object_get(root, "object"), NULL),
		    "chat.completion");
		c0 = json_array_at(json_object_get(root, "choices"), 0);
		assert_string_equal(json_string(json_object_get(json_object_get(c0, "message"),
		    "role"), NULL), "assistant");
		assert_true(strlen(json_string(json_object_get(json_object_get(c0, "message"),
		    "content"), NULL)) > 0);
		assert_true(strlen(json_string(json_object_get(json_object_get(c0, "message"),
		    "reasoning_content"), NULL)) > 100);
		u = json_object_get(root, "usage");
		assert_true(json_int(json_object_get(json_object_get(u, "completion_tokens_details"),
		    "reasoning_tokens")) > 0);
		assert_int_equal(strncmp(json_string(json_object_get(json_object_get(root, "certa"),
		    "program_id"), NULL), "p-", 2), 0);
		json_free(doc);
	}
	free(body);
}

/* A client that goes away does not cancel its program; a tenant at its concurrency quota
 * gets 429 with Retry-After. */
static void
test_disconnect_and_quota(void **state)
{
	struct env *e = *state;
	char *body = NULL, *hdr = NULL, id[64];
	int i, st = 0;

	if (e == NULL)
		skip();
	start(e, "100ms", 1);
	write_chat(e, "stream.json", e->it.tr->model, ",\"stream\":true");
	write_chat(e, "ok.json", e->it.tr->model, "");
	/* curl gives up after 1 s, long before the program ends (100 ms per step). */
	(void)curl(e, "POST", "/v1/chat/completions", e->key, "stream.json", "cut", 1, &body,
	    NULL);
	sse_program_id(body, id, sizeof id);
	free(body);
	assert_int_equal(strncmp(id, "p-", 2), 0);
	assert_int_equal(program_state(e, id), CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_RUNNING);
	/* It still runs: the second program of this tenant is over its quota of one. */
	assert_int_equal(curl(e, "POST", "/v1/chat/completions", e->key, "ok.json", "q", 20, &body,
	    &hdr), 429);
	check_error(body, NULL, "rate_limit_exceeded");
	assert_non_null(strstr(hdr, "Retry-After: "));
	free(body);
	free(hdr);
	/* ... and finishes. */
	for (i = 0; i < 600; i++) {
		st = program_state(e, id);
		if (st != CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_RUNNING &&
		    st != CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_QUEUED)
			break;
		usleep(100000);
	}
	assert_int_equal(st, CERTA__V1__PROGRAM_STATE__PROGRAM_STATE_FINISHED);
}

/* https with tls.cert / tls.key (http.tls): models, a stream to its [DONE], and a plain-HTTP
 * client refused. */
static void
test_https(void **state)
{
	struct env *e = *state;
	char *body = NULL;
	struct timespec t0, t1;

	if (e == NULL)
		skip();
	if (access("/usr/bin/openssl", X_OK) != 0 || harness_sh("cd %s && "
	    "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 "
	    "-subj /CN=certa-test-ca >/dev/null 2>&1 && "
	    "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > san.ext && "
	    "openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr "
	    "-subj /CN=localhost >/dev/null 2>&1 && "
	    "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
	    "-out server.pem -days 2 -extfile san.ext >/dev/null 2>&1", e->it.dir) != 0) {
		print_message("SKIP: the openssl command cannot make certificates\n");
		skip();
	}
	e->https = true;
	start(e, NULL, 0);
	assert_int_equal(curl(e, "GET", "/v1/models", e->key, NULL, "models", 20, &body, NULL),
	    200);
	assert_non_null(strstr(body, e->it.tr->model));
	free(body);
	write_chat(e, "stream.json", e->it.tr->model, ",\"stream\":true");
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(curl(e, "POST", "/v1/chat/completions", e->key, "stream.json", "sse", 60,
	    &body, NULL), 200);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (!(strlen(body) > 14 && strcmp(body + strlen(body) - 14, "data: [DONE]\n\n") == 0))
		/* seen once under load: say what the stream ended with, and when */
		print_message("https stream without [DONE] after %.1f s (%zu bytes), its end: %s\n",
		    (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9, strlen(body),
		    strlen(body) > 400 ? body + strlen(body) - 400 : body);
	assert_true(strlen(body) > 14 &&
	    strcmp(body + strlen(body) - 14, "data: [DONE]\n\n") == 0);
	assert_non_null(strstr(body, "\"reasoning_content\":"));
	free(body);
	/* Plain HTTP on the TLS port gets no HTTP answer. */
	e->https = false;
	assert_int_equal(curl(e, "GET", "/v1/models", e->key, NULL, "plain", 5, NULL, NULL), 0);
}

/* The official `openai` npm package: tests/http/openai_client.cjs. */
static void
test_openai_npm(void **state)
{
	struct env *e = *state;
	const char *build = getenv("BUILD");
	char npm[600], out[600], prob[600], url[128], *log = NULL;
	struct harness_proc *p = NULL;
	int rc, status = -1;

	if (e == NULL)
		skip();
	snprintf(npm, sizeof npm, "%s/npm", build != NULL && build[0] ? build : "build");
	snprintf(out, sizeof out, "%s/npm-openai.out", e->it.dir);
	rc = harness_sh("bash tests/http/npm-openai.sh %s > %s 2>&1", npm, out);
	if (rc != 0) {
		assert_int_equal(harness_read_file(out, &log), 0);
		print_message("%s", rc == 77 ? log : "SKIP: tests/http/npm-openai.sh failed\n");
		free(log);
		if (rc != 77)
			fail_msg("npm-openai.sh exited %d", rc);
		skip();
	}
	start(e, NULL, 0);
	snprintf(prob, sizeof prob, "%s/problem.txt", e->it.dir);
	assert_int_equal(harness_write_file(prob, "%s", e->it.tr->problem), 0);
	snprintf(url, sizeof url, "http://127.0.0.1:%d/v1", e->hport);
	{
		char *const argv[] = { (char *)"/usr/bin/env", (char *)"node",
		    (char *)"tests/http/openai_client.cjs", npm, url, e->key,
		    (char *)e->it.tr->model, prob, NULL };
		snprintf(out, sizeof out, "%s/node.out", e->it.dir);
		assert_int_equal(harness_spawn_io(&p, out, NULL, argv), 0);
	}
	rc = harness_wait_exit(p, 180000, &status);
	if (rc != 0)
		harness_kill9(p);
	assert_int_equal(harness_read_file(out, &log), 0);
	if (rc != 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		print_message("%s", log);
		free(log);
		harness_proc_free(p);
		fail_msg("the openai client failed (wait %d, status %d)", rc, status);
	}
	assert_non_null(strstr(log, " passed, 0 failed"));
	free(log);
	harness_proc_free(p);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_curl_sse, setup, itest_teardown),
		cmocka_unit_test_setup_teardown(test_curl_errors, setup, itest_teardown),
		cmocka_unit_test_setup_teardown(test_disconnect_and_quota, setup, itest_teardown),
		cmocka_unit_test_setup_teardown(test_https, setup, itest_teardown),
		cmocka_unit_test_setup_teardown(test_openai_npm, setup, itest_teardown),
	};
	int rc;

	grpc_init();
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	grpc_shutdown();
	return rc;
}
