/*
 * test_llm_bad.c — certa-worker --engine llm on bad input, as a real process.
 *
 * At start: a missing model file, a truncated one (ends inside the metadata), one whose tensor
 * data runs past the end of the file, one without the GGUF magic, one of an unknown
 * architecture, one with a tensor type the engine cannot compute (q4_0), and --model naming a
 * different file than --model-file: each exits at once with a non-zero status and a log line
 * naming the file (or both files) and the problem.  The bad files are the tiny chat model
 * (scripts/llm/tiny_chat_model.py) patched here byte by byte.
 *
 * At run time, on a worker started the way the user line says (`--model PATH.gguf`) with a
 * KV memory that holds one sequence and the probe fork (capacity 1): Info names the model from
 * the file; a second sequence's Step is refused with RESOURCE_EXHAUSTED and the worker stays
 * up: Info answers, the first sequence steps on, releasing it brings active to 0, and the
 * refused sequence then steps; SIGTERM stops the worker with status 0.
 *
 * A device error during a step (`--device cpu-fault:3`: the CPU backend whose third forward
 * reports an injected device fault, as the CUDA backend reports a CUDA error): that Step fails
 * with INTERNAL naming the fault, the worker turns NOT_SERVING on grpc.health.v1 (both
 * services), Info's fault says why, and the next Step fails at once with INTERNAL ("worker
 * unhealthy ...") instead of computing on a broken device.
 *
 * Skips when NumPy is missing (the model generator needs it).
 */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>
#include <cmocka.h>
#include <grpc/grpc.h>

#include "certa/v1/worker.pb-c.h"
#include "grpc/health/v1/health.pb-c.h"
#include "lib/rpc.h"
#include "lib/rpc_client.h"
#include "tests/support/certa_client.h"
#include "tests/support/harness.h"
#include "tests/support/itest.h"

#define TEST_TIMEOUT_S 120
#define RPC_DEADLINE_MS 30000
#define MODEL_NAME "tiny-chat-qwen3"
#define PROBLEM "What is the sum of all the solutions of x^2 - 5x + 6 = 0?"

struct fx {
	char *dir;
	char model[512];
	unsigned char *bytes;    /* the model file */
	size_t len;
};

static int
setup(void **state)
{
	static const char *const pythons[] = { "python3", "/usr/bin/python3" };
	struct fx *f = calloc(1, sizeof *f);
	FILE *fp;
	size_t i;
	long n;
	int rc = -1;

	if (f == NULL)
		return -1;
	if (harness_fixture_setup(TEST_TIMEOUT_S, &f->dir, NULL) != 0) {
		free(f);
		return -1;
	}
	snprintf(f->model, sizeof f->model, "%s/tiny.gguf", f->dir);
	for (i = 0; i < sizeof pythons / sizeof pythons[0] && rc != 0; i++)
		rc = harness_sh("%s scripts/llm/tiny_chat_model.py --out %s >/dev/null 2>&1",
		    pythons[i], f->model);
	if (rc != 0) {
		if (rc != 77)
			fprintf(stderr, "tiny_chat_model.py failed (status %d)\n", rc);
		f->model[0] = '\0';
		*state = f;
		return 0;
	}
	fp = fopen(f->model, "rb");
	if (fp == NULL || fseek(fp, 0, SEEK_END) != 0 || (n = ftell(fp)) <= 0 ||
	    fseek(fp, 0, SEEK_SET) != 0 || (f->bytes = malloc((size_t)n)) == NULL ||
	    fread(f->bytes, 1, (size_t)n, fp) != (size_t)n) {
		if (fp != NULL)
			fclose(fp);
		return -1;
	}
	fclose(fp);
	f->len = (size_t)n;
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;

	harness_fixture_teardown(f->dir, NULL);
	free(f->bytes);
	free(f);
	return 0;
}

static void
need_model(struct fx *f)
{
	if (f->model[0] == '\0') {
		print_message("python3-numpy missing (or the model script failed): skipping\n");
		skip();
	}
}

static void
write_file(const char *path, const unsigned char *b, size_t n)
{
	FILE *fp = fopen(path, "wb");

	assert_non_null(fp);
	assert_int_equal(fwrite(b, 1, n, fp), n);
	assert_int_equal(fclose(fp), 0);
}

/* Offset of the first occurrence of needle (n bytes) in the model, or fails. */
static size_t
find(const struct fx *f, const void *needle, size_t n)
{
	size_t i;

	for (i = 0; i + n <= f->len; i++)
		if (memcmp(f->bytes + i, needle, n) == 0)
			return i;
	fail_msg("pattern not found in the model");
	return 0;
}

/* Runs certa-worker with argv[1..] (NULL-terminated, at most 12), expects it to exit with
 * status want within 20 s, and its log to hold every string of musts (NULL-terminated). */
static void
expect_refusal(struct fx *f, const char *tag, const char *const args[], int want,
    const char *const musts[])
{
	char *bin = harness_bin("certa-worker"), log[600], *argv[16], *text = NULL;
	struct harness_proc *p = NULL;
	size_t i, n = 0;
	int status = 0;

	assert_non_null(bin);
	argv[n++] = bin;
	for (i = 0; args[i] != NULL && n < 15; i++)
		argv[n++] = (char *)args[i];
	argv[n] = NULL;
	snprintf(log, sizeof log, "%s/%s.log", f->dir, tag);
	assert_int_equal(harness_spawn(&p, log, argv), 0);
	assert_int_equal(harness_wait_exit(p, 20000, &status), 0);
	assert_int_equal(harness_read_file(log, &text), 0);
	print_message("%s: %s", tag, text);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), want);
	for (i = 0; musts[i] != NULL; i++)
		if (strstr(text, musts[i]) == NULL)
			fail_msg("%s: log lacks '%s'", tag, musts[i]);
	free(text);
	harness_proc_free(p);
	free(bin);
}

/* Writes a bad model DIR/TAG.gguf (n bytes of b) and expects the worker to refuse it. */
static void
bad_model(struct fx *f, const char *tag, const unsigned char *b, size_t n, const char *problem)
{
	char path[600];
	const char *args[] = { "--engine", "llm", "--model", path, "--threads", "1",
	    "--listen", "127.0.0.1:0", NULL };
	const char *musts[] = { path, problem, NULL };

	snprintf(path, sizeof path, "%s/%s.gguf", f->dir, tag);
	if (b != NULL)
		write_file(path, b, n);
	expect_refusal(f, tag, args, 1, musts);
}

static void
test_bad_files(void **state)
{
	struct fx *f = *state;
	static const char embd[] = "token_embd.weight";
	unsigned char *b;
	uint64_t nlen = sizeof embd - 1;
	uint32_t nd, q4_0 = 2;
	size_t i, at;
	char other[600];

	need_model(f);
	bad_model(f, "missing", NULL, 0, "No such file or directory");
	bad_model(f, "truncated", f->bytes, 5000, "runs past the end of the file");
	bad_model(f, "data-past-end", f->bytes, f->len - 100, "runs past the end of the file");
	b = malloc(f->len);
	assert_non_null(b);
	memcpy(b, f->bytes, f->len);
	memcpy(b, "XGUF", 4);
	bad_model(f, "magic", b, f->len, "no \"GGUF\" magic");
	/* Every "qwen3" (general.architecture and the keys it prefixes) becomes "zzzz3". */
	memcpy(b, f->bytes, f->len);
	for (i = 0; i + 5 <= f->len; i++)
		if (memcmp(b + i, "qwen3", 5) == 0)
			memcpy(b + i, "zzzz", 4);
	bad_model(f, "arch", b, f->len, "unknown architecture 'zzzz3'");
	/* token_embd.weight's type (after its name, n_dims and dims) becomes q4_0, which the
	 * reader knows (the data still fits) and the engine does not compute. */
	memcpy(b, f->bytes, f->len);
	{
		unsigned char pat[8 + sizeof embd - 1];
		memcpy(pat, &nlen, 8);
		memcpy(pat + 8, embd, sizeof embd - 1);
		at = find(f, pat, sizeof pat) + sizeof pat;
	}
	memcpy(&nd, b + at, 4);
	assert_true(nd >= 1 && nd <= 4);
	memcpy(b + at + 4 + 8 * nd, &q4_0, 4);
	bad_model(f, "type", b, f->len, "type q4_0 not supported");
	free(b);

	/* --model and --model-file naming two files: a configuration error (status 2). */
	snprintf(other, sizeof other, "%s/other.gguf", f->dir);
	{
		const char *args[] = { "--engine", "llm", "--model", f->model, "--model-file",
		    other, "--listen", "127.0.0.1:0", NULL };
		const char *musts[] = { f->model, other, "name two files", NULL };
		expect_refusal(f, "two-files", args, 2, musts);
	}
}

static grpc_status_code
call(struct rpc_channel *ch, const char *method, const ProtobufCMessage *req,
    const ProtobufCMessageDescriptor *rd, ProtobufCMessage **reply, char **details)
{
	return itest_call_ms(ch, method, req, rd, RPC_DEADLINE_MS, reply, details);
}

static Certa__V1__InfoReply *
info(struct rpc_channel *ch)
{
	return itest_worker_info(ch, RPC_DEADLINE_MS);
}

static uint32_t
active(struct rpc_channel *ch)
{
	return itest_worker_active(ch, RPC_DEADLINE_MS);
}

/* One item's step (4 new tokens from resume); returns the status (details in *details). */
static grpc_status_code
step(struct rpc_channel *ch, const char *id, uint64_t resume, uint64_t *total, char **details)
{
	Certa__V1__StepRequest req = CERTA__V1__STEP_REQUEST__INIT;
	Certa__V1__StepItem item = CERTA__V1__STEP_ITEM__INIT, *ptr = &item;
	Certa__V1__SamplingParams sp = CERTA__V1__SAMPLING_PARAMS__INIT;
	ProtobufCMessage *r = NULL;
	grpc_status_code st;

	item.request_id = (char *)id;
	item.prompt = (char *)PROBLEM;
	item.resume_tokens = resume;
	item.max_new_tokens = 4;
	item.seed = 7;
	sp.temperature = 0.8f;
	sp.top_p = 0.95f;
	item.sampling = &sp;
	req.n_items = 1;
	req.items = &ptr;
	st = call(ch, "/certa.v1.Worker/Step", &req.base, &certa__v1__step_reply__descriptor, &r,
	    details);
	if (st == GRPC_STATUS_OK) {
		Certa__V1__StepReply *sr = (Certa__V1__StepReply *)r;
		assert_int_equal(sr->n_results, 1);
		assert_int_equal(sr->results[0]->new_tokens, 4);
		*total = sr->results[0]->total_tokens;
	}
	if (r != NULL)
		protobuf_c_message_free_unpacked(r, NULL);
	return st;
}

static void
release(struct rpc_channel *ch, const char *id)
{
	Certa__V1__ReleaseRequest req = CERTA__V1__RELEASE_REQUEST__INIT;
	ProtobufCMessage *r = NULL;
	char *ids[1] = { (char *)id };

	req.n_request_ids = 1;
	req.request_ids = ids;
	assert_int_equal(call(ch, "/certa.v1.Worker/Release", &req.base,
	    &certa__v1__release_reply__descriptor, &r, NULL), GRPC_STATUS_OK);
	assert_int_equal(((Certa__V1__ReleaseReply *)r)->released, 1);
	protobuf_c_message_free_unpacked(r, NULL);
}

static void
test_kv_exhausted(void **state)
{
	struct fx *f = *state;
	char *bin = harness_bin("certa-worker"), log[600], port[600], *details = NULL;
	/* The tiny model: 1 KiB of KV per token, 1024 positions: 2M holds a chain and a fork. */
	char *argv[] = { bin, "--engine", "llm", "--model", f->model, "--threads", "1",
	    "--kv-memory", "2M", "--listen", "127.0.0.1:0", "--port-file", port, NULL };
	struct harness_proc *p = NULL;
	struct rpc_channel *ch = NULL;
	Certa__V1__InfoReply *inf;
	uint64_t a_total = 0, b_total = 0, t = 0;
	int wport = 0, status = 0;

	need_model(f);
	assert_non_null(bin);
	snprintf(log, sizeof log, "%s/kv.log", f->dir);
	snprintf(port, sizeof port, "%s/kv.port", f->dir);
	assert_int_equal(harness_spawn(&p, log, argv), 0);
	if (harness_wait_port_file(port, 20000, &wport) != 0) {
		harness_dump_log(p);
		fail_msg("the llm worker did not start");
	}
	assert_int_equal(certa_client_channel(wport, &ch), 0);

	inf = info(ch);
	assert_string_equal(inf->engine, "llm");
	assert_string_equal(inf->model, MODEL_NAME);
	assert_int_equal(inf->capacity, 1);
	assert_string_equal(inf->fault, "");
	protobuf_c_message_free_unpacked(&inf->base, NULL);

	assert_int_equal(step(ch, "a", 0, &a_total, NULL), GRPC_STATUS_OK);
	assert_int_equal(step(ch, "b", 0, &t, &details), GRPC_STATUS_RESOURCE_EXHAUSTED);
	assert_non_null(details);
	print_message("second sequence: %s\n", details);
	assert_non_null(strstr(details, "capacity"));
	free(details);
	details = NULL;
	/* Still up: Info answers, the held chain steps on, Release frees it. */
	assert_int_equal(active(ch), 1);
	assert_int_equal(step(ch, "a", a_total, &t, NULL), GRPC_STATUS_OK);
	assert_int_equal(t, a_total + 4);
	release(ch, "a");
	assert_int_equal(active(ch), 0);
	assert_int_equal(step(ch, "b", 0, &b_total, NULL), GRPC_STATUS_OK);
	assert_int_equal(b_total, a_total);
	release(ch, "b");
	assert_int_equal(active(ch), 0);

	rpc_channel_free(ch);
	assert_int_equal(harness_signal(p, SIGTERM), 0);
	assert_int_equal(harness_wait_exit(p, 10000, &status), 0);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		harness_dump_log(p);
		fail_msg("worker did not stop cleanly on SIGTERM");
	}
	harness_proc_free(p);
	free(bin);
}

static void
test_device_fault(void **state)
{
	struct fx *f = *state;
	char *bin = harness_bin("certa-worker"), log[600], port[600], *details = NULL;
	char *argv[] = { bin, "--engine", "llm", "--model", f->model, "--threads", "1",
	    "--device", "cpu-fault:3", "--kv-memory", "4M", "--listen", "127.0.0.1:0",
	    "--port-file", port, NULL };
	struct harness_proc *p = NULL;
	struct rpc_channel *ch = NULL;
	Certa__V1__InfoReply *inf;
	uint64_t t = 0;
	int wport = 0, status = 0;

	need_model(f);
	assert_non_null(bin);
	snprintf(log, sizeof log, "%s/fault.log", f->dir);
	snprintf(port, sizeof port, "%s/fault.port", f->dir);
	assert_int_equal(harness_spawn(&p, log, argv), 0);
	if (harness_wait_port_file(port, 20000, &wport) != 0) {
		harness_dump_log(p);
		fail_msg("the llm worker did not start");
	}
	assert_int_equal(certa_client_channel(wport, &ch), 0);
	assert_int_equal(certa_client_health(wport, ""),
	    GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING);

	/* Prefill, decode, decode: the third forward meets the fault. */
	assert_int_equal(step(ch, "a", 0, &t, &details), GRPC_STATUS_INTERNAL);
	assert_non_null(details);
	print_message("step on a faulty device: %s\n", details);
	assert_non_null(strstr(details, "injected device fault"));
	free(details);
	details = NULL;
	assert_int_equal(certa_client_health(wport, ""),
	    GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING);
	assert_int_equal(certa_client_health(wport, "certa.v1.Worker"),
	    GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING);
	inf = info(ch);
	assert_non_null(strstr(inf->fault, "injected device fault"));
	protobuf_c_message_free_unpacked(&inf->base, NULL);
	/* Nothing computes any more: another sequence fails at once. */
	assert_int_equal(step(ch, "b", 0, &t, &details), GRPC_STATUS_INTERNAL);
	assert_non_null(details);
	assert_non_null(strstr(details, "worker unhealthy"));
	free(details);

	rpc_channel_free(ch);
	assert_int_equal(harness_signal(p, SIGTERM), 0);
	assert_int_equal(harness_wait_exit(p, 10000, &status), 0);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		harness_dump_log(p);
		fail_msg("worker did not stop cleanly on SIGTERM");
	}
	harness_proc_free(p);
	free(bin);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_bad_files, setup, teardown),
		cmocka_unit_test_setup_teardown(test_kv_exhausted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_device_fault, setup, teardown),
	};
	int rc;

	grpc_init();
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	grpc_shutdown();
	return rc;
}
