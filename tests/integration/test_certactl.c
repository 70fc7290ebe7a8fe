/*
 * test_certactl.c — certactl end to end: the real certactl binary as a child process against
 * the real certad and a real replay worker, checking its text and --json output and its exit
 * statuses (0 ok, 1 server error, 2 usage, 3 unavailable, 4 program failed, 130 interrupted).
 *
 * Each test that needs a server starts its own worker and certad on free ports (port files)
 * under a hard alarm; certad has no anonymous tenant, so programs need an API key made with
 * `certactl tenant add`, and the admin commands go through the local admin socket
 * (--server unix:DIR/admin.sock).  Every certactl run has a timeout: it is killed and the test
 * fails when it runs longer.
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
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>
#include <grpc/grpc.h>

#include "lib/error.h"
#include "lib/json.h"
#include "scheduler/answer.h"
#include "tests/support/harness.h"
#include "tests/support/itest.h"

/* Longest any one certactl run may take. */
#define CTL_TIMEOUT_MS 20000
/* Most arguments of one certactl run. */
#define CTL_MAX_ARGS 32
/* Hard timeout of one test. */
#define TEST_ALARM_S 60

struct env {
	struct itest it;            /* first */
	char *bin;                  /* $BUILD/bin/certactl */
	char admin[600];            /* "unix:DIR/admin.sock" */
	char server[64];            /* "127.0.0.1:DPORT" */
	char waddr[64];             /* "127.0.0.1:WPORT" */
	int nrun;                   /* certactl runs so far (names their output files) */
};

/* --- processes --------------------------------------------------------------------------- */

static int
setup(void **state)
{
	struct env *e;

	*state = NULL;
	e = itest_new(sizeof *e, TEST_ALARM_S, ITEST_TRACES_PICK);
	if (e == NULL)
		return 0;
	e->bin = harness_bin("certactl");
	assert_non_null(e->bin);
	*state = e;
	return 0;
}

static int
teardown(void **state)
{
	struct env *e = *state;

	if (e == NULL)
		return 0;
	free(e->bin);
	itest_free(&e->it);
	return 0;
}

/* A replay worker (steps of delay ms) and certad with the admin socket and no anonymous
 * tenant. */
static void
start(struct env *e, const char *delay)
{
	itest_start(&e->it, delay, ITEST_ADMIN, NULL);
	snprintf(e->admin, sizeof e->admin, "unix:%s/admin.sock", e->it.dir);
	snprintf(e->server, sizeof e->server, "127.0.0.1:%d", e->it.dport);
	snprintf(e->waddr, sizeof e->waddr, "127.0.0.1:%d", e->it.wport);
}

/* Builds "certactl ARGS..." from a NULL-terminated list; argv has CTL_MAX_ARGS + 2 slots. */
static void
ctl_argv(struct env *e, char **argv, va_list ap)
{
	const char *a;
	int n = 0;

	argv[n++] = e->bin;
	while ((a = va_arg(ap, const char *)) != NULL) {
		assert_true(n <= CTL_MAX_ARGS);
		argv[n++] = (char *)a;
	}
	argv[n] = NULL;
}

/* Prints a certactl run's argv, stdout and stderr (when a check on it fails). */
static void
ctl_dump(char *const *argv, const char *out, const char *err, int status)
{
	int i;

	fprintf(stderr, "--- certactl run:");
	for (i = 0; argv[i] != NULL; i++)
		fprintf(stderr, " '%s'", argv[i]);
	fprintf(stderr, "\n--- exit status %d; stdout:\n%s--- stderr:\n%s--- end\n", status,
	    out != NULL ? out : "", err != NULL ? err : "");
}

/* Starts certactl with ARGS (a NULL-terminated list) in the background, stdout and stderr to
 * DIR/ctl.N.out and DIR/ctl.N.err (their paths go to opath and epath). */
static struct harness_proc *
ctl_spawn(struct env *e, char *opath, char *epath, size_t len, char **argv)
{
	struct harness_proc *p = NULL;

	e->nrun++;
	snprintf(opath, len, "%s/ctl.%d.out", e->it.dir, e->nrun);
	snprintf(epath, len, "%s/ctl.%d.err", e->it.dir, e->nrun);
	assert_int_equal(harness_spawn_io(&p, opath, epath, argv), 0);
	return p;
}

/* The exit status of a wait status: the code, or 128 + the signal. */
static int
ctl_exit_code(int st)
{
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	if (WIFSIGNALED(st))
		return 128 + WTERMSIG(st);
	return -1;
}

/* Waits for a background certactl (killing it after CTL_TIMEOUT_MS: the test fails) and
 * reads its output files into *out and *err (malloc'd; either may be NULL: not wanted). */
static int
ctl_finish(struct harness_proc *p, char **argv, const char *opath, const char *epath,
    char **out, char **err)
{
	char *o = NULL, *r = NULL;
	int st = 0, rc;

	rc = harness_wait_exit(p, CTL_TIMEOUT_MS, &st);
	if (rc == CERTA_ETIMEOUT)
		harness_kill9(p);
	harness_proc_free(p);
	assert_int_equal(harness_read_file(opath, &o), 0);
	assert_int_equal(harness_read_file(epath, &r), 0);
	if (rc != 0) {
		ctl_dump(argv, o, r, -1);
		fail_msg("certactl did not exit within %d ms", CTL_TIMEOUT_MS);
	}
	if (out != NULL)
		*out = o;
	else
		free(o);
	if (err != NULL)
		*err = r;
	else
		free(r);
	return ctl_exit_code(st);
}

/*
 * Runs certactl with ARGS (a NULL-terminated list of strings, each one argument: no shell) and
 * waits for it; stores its stdout and stderr in *out and *err (malloc'd; NULL: not wanted).
 * When want >= 0 and the exit status differs, prints the run and fails the test.  Returns
 * the exit status (128 + N when killed by signal N).
 */
static int
ctl(struct env *e, int want, char **out, char **err, ...)
{
	char *argv[CTL_MAX_ARGS + 2], opath[700], epath[700], *o = NULL, *r = NULL;
	struct harness_proc *p;
	va_list ap;
	int status;

	va_start(ap, err);
	ctl_argv(e, argv, ap);
	va_end(ap);
	p = ctl_spawn(e, opath, epath, sizeof opath, argv);
	status = ctl_finish(p, argv, opath, epath, &o, &r);
	if (want >= 0 && status != want) {
		ctl_dump(argv, o, r, status);
		free(o);
		free(r);
		fail_msg("certactl exited with %d, expected %d", status, want);
	}
	if (out != NULL)
		*out = o;
	else
		free(o);
	if (err != NULL)
		*err = r;
	else
		free(r);
	return status;
}

/* Fails unless hay contains needle, showing both. */
static void
contains(const char *hay, const char *needle)
{
	if (hay == NULL || strstr(hay, needle) == NULL)
		fail_msg("expected \"%s\" in:\n%s", needle, hay != NULL ? hay : "(null)");
}

/* Occurrences of needle in hay. */
static int
count_of(const char *hay, const char *needle)
{
	int n = 0;

	while ((hay = strstr(hay, needle)) != NULL) {
		n++;
		hay += strlen(needle);
	}
	return n;
}

/* --- JSON lines ---------------------------------------------------------------------------- */

#define JL_MAX 256

/* The lines of certactl --json output, each parsed (a line that does not parse fails). */
struct jlines {
	struct json_doc *doc[JL_MAX];
	size_t n;
};

static void
jlines_parse(const char *text, struct jlines *jl)
{
	const char *p = text, *nl;
	char err[256];
	size_t len;

	memset(jl, 0, sizeof *jl);
	while (*p) {
		nl = strchr(p, '\n');
		if (nl == NULL)
			fail_msg("--json output does not end in a newline:\n%s", text);
		len = (size_t)(nl - p);
		assert_true(jl->n < JL_MAX);
		if (json_parse(p, len, &jl->doc[jl->n], err, sizeof err) != 0)
			fail_msg("line %zu of --json output is not JSON (%s):\n%.*s", jl->n + 1,
			    err, (int)len, p);
		assert_int_equal(json_type(json_root(jl->doc[jl->n])), JSON_OBJECT);
		jl->n++;
		p = nl + 1;
	}
}

static void
jlines_free(struct jlines *jl)
{
	size_t i;

	for (i = 0; i < jl->n; i++)
		json_free(jl->doc[i]);
	jl->n = 0;
}

static const struct json_value *
jl_at(const struct jlines *jl, size_t i)
{
	assert_true(i < jl->n);
	return json_root(jl->doc[i]);
}

/* Member key of object v as a string; fails when it is missing or not a string. */
static const char *
jstr(const struct json_value *v, const char *key)
{
	const char *s = json_string(json_object_get(v, key), NULL);

	if (s == NULL)
		fail_msg("JSON member \"%s\" is missing or not a string", key);
	return s;
}

/* Member key of object v as an integer; fails when it is missing or not an integer. */
static int64_t
jint(const struct json_value *v, const char *key)
{
	const struct json_value *m = json_object_get(v, key);

	if (!json_is_int(m))
		fail_msg("JSON member \"%s\" is missing or not an integer", key);
	return json_int(m);
}

/* --- common steps -------------------------------------------------------------------------- */

/* `tenant add NAME --weight W` over the admin socket; the key it prints once goes to key. */
static void
add_tenant(struct env *e, const char *name, const char *weight, char *key, size_t keylen)
{
	char *out, *err, expect[128];
	const char *k;
	size_t n;

	ctl(e, 0, &out, &err, "--server", e->admin, "tenant", "add", name, "--weight", weight,
	    NULL);
	snprintf(expect, sizeof expect, "created tenant %s\n", name);
	contains(out, expect);
	assert_int_equal(count_of(out, "api key: "), 1);
	k = strstr(out, "api key: ") + strlen("api key: ");
	n = strcspn(k, "\n");
	assert_true(n > 6 && n < keylen);
	assert_memory_equal(k, "certa_", 6);
	memcpy(key, k, n);
	key[n] = '\0';
	/* The key is shown once; the warning on stderr says so (and does not repeat it). */
	contains(err, "only now");
	assert_null(strstr(err, key));
	free(out);
	free(err);
}

/* The `worker list --json` state of the worker at addr ("" when not listed). */
static void
worker_state(struct env *e, const char *addr, char *state, size_t len)
{
	struct jlines jl;
	char *out;
	size_t i;

	ctl(e, 0, &out, NULL, "--server", e->admin, "worker", "list", "--json", NULL);
	jlines_parse(out, &jl);
	state[0] = '\0';
	for (i = 0; i < jl.n; i++)
		if (strcmp(jstr(jl_at(&jl, i), "address"), addr) == 0)
			snprintf(state, len, "%s", jstr(jl_at(&jl, i), "state"));
	jlines_free(&jl);
	free(out);
}

/* Polls `worker list --json` until the worker at addr is in state want (10 s at most). */
static void
wait_worker_state(struct env *e, const char *addr, const char *want)
{
	char st[64];
	int i;

	for (i = 0; i < 100; i++) {
		worker_state(e, addr, st, sizeof st);
		if (strcmp(st, want) == 0)
			return;
		usleep(100000);
	}
	fail_msg("worker %s is %s, not %s", addr, st[0] ? st : "not listed", want);
}

/* --- tests ------------------------------------------------------------------------------- */

/* Offline: `--help` of every command `certactl --help` lists exits 0 with that command's
 * usage; usage errors exit 2; no server exits 3. */
static void
test_help_usage_unavailable(void **state)
{
	struct env *e = *state;
	char *out, *err, *help, *line, *save = NULL, *wsave, *argv[CTL_MAX_ARGS + 2], name[128];
	char opath[700], epath[700], usage[160];
	int in_cmds = 0, ncmds = 0, n;

	HARNESS_NEED_TRACES(e);
	ctl(e, 0, &help, NULL, "--help", NULL);
	contains(help, "\ncommands:\n");
	contains(help, "\nexit status:\n");
	for (line = strtok_r(help, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
		char *p, *words;
		size_t left;

		if (strcmp(line, "commands:") == 0) {
			in_cmds = 1;
			continue;
		}
		if (!in_cmds)
			continue;
		if (line[0] != ' ') {
			in_cmds = 0;    /* the next section */
			continue;
		}
		/* "  tenant add NAME   summary": the words before the usage; continuation lines
		 * (summaries of long entries) start with more spaces. */
		if (line[1] != ' ' || line[2] == ' ')
			continue;
		words = line + 2;
		p = strstr(words, "  ");
		left = p != NULL ? (size_t)(p - words) : strlen(words);
		words[left] = '\0';
		n = 0;
		argv[n++] = e->bin;
		name[0] = '\0';
		for (p = strtok_r(words, " ", &wsave); p != NULL; p = strtok_r(NULL, " ", &wsave)) {
			if (strspn(p, "abcdefghijklmnopqrstuvwxyz-") != strlen(p))
				break;          /* NAME, [COMMAND], KEY=VALUE...: the usage */
			argv[n++] = p;
			snprintf(name + strlen(name), sizeof name - strlen(name), "%s%s",
			    name[0] ? " " : "", p);
		}
		assert_true(n > 1);
		argv[n++] = (char *)"--help";
		argv[n] = NULL;
		{
			struct harness_proc *pr = ctl_spawn(e, opath, epath, sizeof opath, argv);
			int st = ctl_finish(pr, argv, opath, epath, &out, &err);

			if (st != 0) {
				ctl_dump(argv, out, err, st);
				fail_msg("certactl %s --help exited with %d", name, st);
			}
			snprintf(usage, sizeof usage, "usage: certactl %s", name);
			contains(out, usage);
			assert_string_equal(err, "");
			free(out);
			free(err);
		}
		ncmds++;
	}
	free(help);
	/* submit ... help: 23 commands in cli/cmd.c's table. */
	assert_int_equal(ncmds, 23);

	/* Usage errors: exit 2 and a message, nothing on stdout. */
	ctl(e, 2, &out, &err, "frobnicate", NULL);
	contains(err, "unknown command 'frobnicate'");
	assert_string_equal(out, "");
	free(out);
	free(err);
	ctl(e, 2, &out, &err, "tenant", "frobnicate", NULL);
	contains(err, "unknown subcommand 'frobnicate'");
	free(out);
	free(err);
	ctl(e, 2, &out, &err, "get", NULL);
	contains(err, "missing argument");
	contains(err, "usage: certactl get [options] ID");
	free(out);
	free(err);
	ctl(e, 2, NULL, &err, "submit", "x", "--sc", "two", NULL);
	contains(err, "--sc expects a whole number");
	free(err);
	ctl(e, 2, NULL, &err, "list", "--bogus", NULL);
	contains(err, "unknown option '--bogus'");
	free(err);

	/* Nothing listens on port 1: UNAVAILABLE, exit 3. */
	ctl(e, 3, &out, &err, "--server", "127.0.0.1:1", "--token", "certa_x", "list", NULL);
	contains(err, "UNAVAILABLE");
	assert_string_equal(out, "");
	free(out);
	free(err);
}

/* tenant add / list / show, and key rotation: the old key stops working, the new one works. */
static void
test_tenant_and_keys(void **state)
{
	struct env *e = *state;
	char key[256], key2[256], *out, *err, *kid;
	struct jlines jl;
	const struct json_value *t, *keys;
	const char *k;
	size_t i, n, found = 0;

	HARNESS_NEED_TRACES(e);
	start(e, "0");
	add_tenant(e, "acme", "2", key, sizeof key);

	ctl(e, 0, &out, NULL, "--server", e->admin, "tenant", "list", "--json", NULL);
	jlines_parse(out, &jl);
	for (i = 0; i < jl.n; i++) {
		t = jl_at(&jl, i);
		if (strcmp(jstr(t, "name"), "acme") != 0)
			continue;
		found++;
		assert_int_equal(jint(t, "weight"), 2);
		assert_string_equal(jstr(t, "priority"), "normal");
		keys = json_object_get(t, "keys");
		assert_int_equal(json_array_len(keys), 1);
		/* Listings show the public key id (the key's prefix), never the secret. */
		k = jstr(json_array_at(keys, 0), "key_id");
		assert_true(*k != '\0');
		assert_int_equal(strncmp(key + 6, k, strlen(k)), 0);
		assert_null(strstr(out, key));
		assert_false(json_bool(json_object_get(json_array_at(keys, 0), "revoked")));
	}
	assert_int_equal(found, 1);
	jlines_free(&jl);
	free(out);

	/* `tenant list` as a table. */
	ctl(e, 0, &out, NULL, "--server", e->admin, "tenant", "list", NULL);
	contains(out, "NAME");
	contains(out, "WEIGHT");
	contains(out, "\nacme ");
	free(out);

	ctl(e, 0, &out, NULL, "--server", e->admin, "tenant", "show", "acme", NULL);
	{
		const char *w = strstr(out, "\nweight:");

		assert_true(strncmp(out, "name:", 5) == 0);
		assert_int_equal(strncmp(out + 5 + strspn(out + 5, " "), "acme\n", 5), 0);
		assert_non_null(w);
		w += strlen("\nweight:");
		assert_int_equal(strncmp(w + strspn(w, " "), "2\n", 2), 0);
	}
	contains(out, "keys:\n");
	free(out);
	ctl(e, 1, NULL, &err, "--server", e->admin, "tenant", "show", "nobody", NULL);
	contains(err, "NOT_FOUND");
	free(err);

	/* The key works. */
	ctl(e, 0, &out, NULL, "--server", e->server, "--token", key, "list", NULL);
	contains(out, "ID");
	free(out);

	/* Rotate, revoking the others: a new key, printed once, with its id. */
	ctl(e, 0, &out, NULL, "--server", e->admin, "tenant", "key", "rotate", "acme",
	    "--revoke-others", NULL);
	assert_int_equal(count_of(out, "api key: "), 1);
	k = strstr(out, "api key: ") + strlen("api key: ");
	n = strcspn(k, "\n");
	assert_true(n > 6 && n < sizeof key2);
	memcpy(key2, k, n);
	key2[n] = '\0';
	assert_memory_equal(key2, "certa_", 6);
	assert_string_not_equal(key, key2);
	kid = strstr(out, "key id:");
	assert_non_null(kid);
	kid += strlen("key id:");
	kid += strspn(kid, " ");
	assert_int_equal(strncmp(key2 + 6, kid, strcspn(kid, "\n")), 0);
	contains(out, "are revoked");
	free(out);

	/* The old key is refused; the new one works. */
	ctl(e, 1, &out, &err, "--server", e->server, "--token", key, "list", NULL);
	contains(err, "UNAUTHENTICATED");
	assert_string_equal(out, "");
	free(out);
	free(err);
	ctl(e, 0, &out, NULL, "--server", e->server, "--token", key2, "list", "--json", NULL);
	assert_string_equal(out, "");     /* no programs yet: no lines */
	free(out);

	/* `tenant show --json` lists both keys, the first one revoked. */
	ctl(e, 0, &out, NULL, "--server", e->admin, "--json", "tenant", "show", "acme", NULL);
	jlines_parse(out, &jl);
	assert_int_equal(jl.n, 1);
	keys = json_object_get(jl_at(&jl, 0), "keys");
	assert_int_equal(json_array_len(keys), 2);
	for (i = 0, n = 0; i < 2; i++)
		n += json_bool(json_object_get(json_array_at(keys, i), "revoked"));
	assert_int_equal(n, 1);
	jlines_free(&jl);
	free(out);
}

/* What `submit --json` printed about one program. */
struct submitted {
	char id[128];
	char answer[512];
	char reason[32];
	int64_t tokens;
	int64_t probe_tokens;
	size_t nprogress;
};

/*
 * `submit PROBLEM --token KEY --json [--watch]` to the end (exit 0): the lines are accepted,
 * then (with --watch) progress with rising seq and tokens, then finished, all for one program
 * id.  The result is the recorded final answer after the whole recorded run, or an early stop
 * as certain.
 */
static void
submit_json(struct env *e, const char *key, int watch, struct submitted *r)
{
	const struct json_value *ev, *fin;
	struct jlines jl;
	char *out, *err;
	int64_t seq = -1, last_tokens = 0;
	size_t i;

	memset(r, 0, sizeof *r);
	ctl(e, 0, &out, &err, "--server", e->server, "submit", e->it.tr->problem, "--token", key,
	    "--json", watch ? "--watch" : NULL, NULL);
	assert_string_equal(err, "");
	jlines_parse(out, &jl);
	assert_true(jl.n >= 2);
	ev = jl_at(&jl, 0);
	assert_string_equal(jstr(ev, "event"), "accepted");
	snprintf(r->id, sizeof r->id, "%s", jstr(ev, "program_id"));
	assert_true(strncmp(r->id, "p-", 2) == 0);
	assert_false(json_bool(json_object_get(ev, "duplicate")));
	assert_true(jint(ev, "accepted_unix_ms") > 0);
	for (i = 0; i < jl.n; i++) {
		ev = jl_at(&jl, i);
		assert_string_equal(jstr(ev, "program_id"), r->id);
		assert_true(jint(ev, "seq") > seq);
		seq = jint(ev, "seq");
		if (i == 0 || i + 1 == jl.n)
			continue;
		assert_string_equal(jstr(ev, "event"), "progress");
		r->nprogress++;
		/* Tokens never go down; one chain (cot). */
		assert_true(jint(ev, "tokens_used") >= last_tokens);
		last_tokens = jint(ev, "tokens_used");
		assert_int_equal(json_array_len(json_object_get(ev, "requests")), 1);
	}
	if (watch)
		assert_true(r->nprogress >= 1);
	else
		assert_int_equal(r->nprogress, 0);
	fin = jl_at(&jl, jl.n - 1);
	assert_string_equal(jstr(fin, "event"), "finished");
	snprintf(r->answer, sizeof r->answer, "%s", jstr(fin, "answer"));
	snprintf(r->reason, sizeof r->reason, "%s", jstr(fin, "reason"));
	r->tokens = jint(fin, "tokens_used");
	assert_true(r->tokens >= last_tokens);
	r->probe_tokens = jint(fin, "probe_tokens");
	assert_true(r->probe_tokens > 0);
	assert_string_equal(jstr(fin, "error_message"), "");
	assert_int_equal(json_array_len(json_object_get(fin, "requests")), 1);
	if (strcmp(r->reason, "natural_end") == 0) {
		assert_true(answer_equivalent(r->answer, e->it.tr->final_answer));
		assert_int_equal(r->tokens, (int64_t)e->it.tr->tokens_used);
	} else {
		assert_string_equal(r->reason, "certain");
		assert_true(r->tokens < (int64_t)e->it.tr->tokens_used);
		assert_true(r->answer[0] != '\0');
	}
	jlines_free(&jl);
	free(out);
	free(err);
}

/* submit --json to the end, then get, list, cancel (of a finished program), stats and top. */
static void
test_submit_get_list_stats_top(void **state)
{
	struct env *e = *state;
	char key[256], *out, expect[300];
	const struct json_value *ev, *t, *tenants;
	struct submitted a, b;
	struct jlines jl;
	size_t i;

	HARNESS_NEED_TRACES(e);
	start(e, "0");
	add_tenant(e, "acme", "2", key, sizeof key);

	/* With --watch every event; without it, accepted and finished only.  Replay is
	 * deterministic: both end alike. */
	submit_json(e, key, 1, &a);
	submit_json(e, key, 0, &b);
	assert_string_not_equal(a.id, b.id);
	assert_string_equal(a.answer, b.answer);
	assert_string_equal(a.reason, b.reason);
	assert_int_equal(a.tokens, b.tokens);

	/* get --json: finished, with the same result. */
	ctl(e, 0, &out, NULL, "--server", e->server, "--token", key, "--json", "get", a.id, NULL);
	jlines_parse(out, &jl);
	assert_int_equal(jl.n, 1);
	ev = jl_at(&jl, 0);
	assert_string_equal(jstr(ev, "program_id"), a.id);
	assert_string_equal(jstr(ev, "tenant"), "acme");
	assert_string_equal(jstr(ev, "state"), "finished");
	assert_int_equal(jint(ev, "tokens_used"), a.tokens);
	assert_string_equal(jstr(json_object_get(ev, "spec"), "problem"), e->it.tr->problem);
	assert_string_equal(jstr(json_object_get(ev, "result"), "answer"), a.answer);
	assert_string_equal(jstr(json_object_get(ev, "result"), "reason"), a.reason);
	jlines_free(&jl);
	free(out);

	/* get as text. */
	ctl(e, 0, &out, NULL, "--server", e->server, "--token", key, "get", a.id, NULL);
	snprintf(expect, sizeof expect, "program:      %s\n", a.id);
	contains(out, expect);
	contains(out, "\nstate:        finished\n");
	contains(out, "\ntenant:       acme\n");
	snprintf(expect, sizeof expect, "  reason: %s  tokens: %lld  ", a.reason,
	    (long long)a.tokens);
	contains(out, expect);
	free(out);

	/* list --json: both programs, newest first. */
	ctl(e, 0, &out, NULL, "--server", e->server, "--token", key, "list", "--json", NULL);
	jlines_parse(out, &jl);
	assert_int_equal(jl.n, 2);
	assert_string_equal(jstr(jl_at(&jl, 0), "program_id"), b.id);
	assert_string_equal(jstr(jl_at(&jl, 1), "program_id"), a.id);
	for (i = 0; i < 2; i++) {
		assert_string_equal(jstr(jl_at(&jl, i), "state"), "finished");
		assert_string_equal(jstr(json_object_get(jl_at(&jl, i), "result"), "answer"),
		    a.answer);
	}
	jlines_free(&jl);
	free(out);
	ctl(e, 0, &out, NULL, "--server", e->server, "--token", key, "list", "--state",
	    "running", "--json", NULL);
	assert_string_equal(out, "");
	free(out);
	ctl(e, 0, &out, NULL, "--server", e->server, "--token", key, "list", "--limit", "1",
	    NULL);
	contains(out, b.id);
	assert_null(strstr(out, a.id));
	free(out);

	/* Cancelling a finished program: it stays finished, exit 0. */
	ctl(e, 0, &out, NULL, "--server", e->server, "--token", key, "cancel", a.id, NULL);
	snprintf(expect, sizeof expect, "%s: finished\n", a.id);
	assert_string_equal(out, expect);
	free(out);

	/* stats --json: one finished program for acme, its tokens, one worker up. */
	ctl(e, 0, &out, NULL, "--server", e->admin, "stats", "--json", NULL);
	jlines_parse(out, &jl);
	assert_int_equal(jl.n, 1);
	tenants = json_object_get(jl_at(&jl, 0), "tenants");
	t = NULL;
	for (i = 0; i < json_array_len(tenants); i++)
		if (strcmp(jstr(json_array_at(tenants, i), "tenant"), "acme") == 0)
			t = json_array_at(tenants, i);
	assert_non_null(t);
	assert_int_equal(jint(t, "finished"), 2);
	assert_int_equal(jint(t, "queued"), 0);
	assert_int_equal(jint(t, "running"), 0);
	assert_int_equal(jint(t, "cancelled"), 0);
	assert_int_equal(jint(t, "failed"), 0);
	/* Tokens served: decode and probe tokens (what quotas and fair share count). */
	assert_int_equal(jint(t, "tokens_used"), a.tokens + a.probe_tokens + b.tokens +
	    b.probe_tokens);
	assert_int_equal(jint(jl_at(&jl, 0), "workers_up"), 1);
	assert_true(jint(jl_at(&jl, 0), "steps_total") > 0);
	jlines_free(&jl);
	free(out);

	/* top: two blocks (not a terminal: separated by an empty line, no screen clearing). */
	ctl(e, 0, &out, NULL, "--server", e->admin, "top", "--count", "2", "--interval", "100",
	    NULL);
	assert_int_equal(count_of(out, "certa top  server "), 2);
	assert_int_equal(count_of(out, "workers up: 1"), 2);
	assert_int_equal(count_of(out, "\nacme "), 2);
	assert_int_equal(count_of(out, e->waddr), 2);
	assert_null(strchr(out, '\033'));
	contains(out, "\n\ncerta top  server ");
	free(out);
	ctl(e, 0, &out, NULL, "--server", e->admin, "--json", "top", "--count", "2",
	    "--interval", "100", NULL);
	jlines_parse(out, &jl);
	assert_int_equal(jl.n, 2);
	assert_int_equal(json_array_len(json_object_get(jl_at(&jl, 1), "workers")), 1);
	jlines_free(&jl);
	free(out);
}

/* Server errors exit 1 with the status name, a failed program exits 4. */
static void
test_exit_codes(void **state)
{
	struct env *e = *state;
	char key[256], *out, *err;
	const char *problem = "What is the airspeed velocity of an unladen swallow? (no trace)";

	HARNESS_NEED_TRACES(e);
	start(e, "0");
	add_tenant(e, "acme", "1", key, sizeof key);

	/* No token: certad has no anonymous tenant. */
	ctl(e, 1, &out, &err, "--server", e->server, "submit", e->it.tr->problem, NULL);
	contains(err, "UNAUTHENTICATED");
	assert_string_equal(out, "");
	free(out);
	free(err);
	ctl(e, 1, NULL, &err, "--server", e->server, "list", NULL);
	contains(err, "UNAUTHENTICATED");
	free(err);

	ctl(e, 1, &out, &err, "--server", e->server, "--token", key, "get", "p-doesnotexist",
	    NULL);
	contains(err, "NOT_FOUND");
	assert_string_equal(out, "");
	free(out);
	free(err);
	ctl(e, 1, NULL, &err, "--server", e->server, "--token", key, "cancel", "p-doesnotexist",
	    NULL);
	contains(err, "NOT_FOUND");
	free(err);

	/* More chains than the policy allows. */
	ctl(e, 1, &out, &err, "--server", e->server, "--token", key, "submit", e->it.tr->problem,
	    "--sc", "99", NULL);
	contains(err, "INVALID_ARGUMENT");
	assert_string_equal(out, "");
	free(out);
	free(err);

	/* A problem no trace has: accepted, then failed with the worker's reason (exit 4). */
	ctl(e, 4, &out, &err, "--server", e->server, "--token", key, "submit", problem, NULL);
	contains(out, "accepted: p-");
	contains(out, "reason: failed");
	contains(out, "no recorded trace");
	contains(out, harness_traces_dir());
	free(out);
	free(err);
	ctl(e, 4, &out, NULL, "--server", e->server, "--token", key, "--json", "submit", problem,
	    NULL);
	{
		struct jlines jl;
		const struct json_value *fin;

		jlines_parse(out, &jl);
		assert_true(jl.n >= 2);
		fin = jl_at(&jl, jl.n - 1);
		assert_string_equal(jstr(fin, "event"), "finished");
		assert_string_equal(jstr(fin, "reason"), "failed");
		contains(jstr(fin, "error_message"), harness_traces_dir());
		jlines_free(&jl);
	}
	free(out);
}

/* policy set: server-side validation (1), a stored version with history (0), typos (2). */
static void
test_policy(void **state)
{
	struct env *e = *state;
	char key[256], *out, *err;
	const struct json_value *np;
	struct jlines jl;

	HARNESS_NEED_TRACES(e);
	start(e, "0");
	add_tenant(e, "acme", "1", key, sizeof key);

	ctl(e, 1, &out, &err, "--server", e->admin, "policy", "set", "--tenant", "acme",
	    "step_tokens=0", NULL);
	contains(err, "INVALID_ARGUMENT");
	contains(err, "step_tokens");
	assert_string_equal(out, "");
	free(out);
	free(err);

	ctl(e, 0, &out, NULL, "--server", e->admin, "policy", "set", "--tenant", "acme",
	    "cot.threshold=0.99", NULL);
	contains(out, "cot.threshold: ");
	contains(out, " -> 0.99\n");
	contains(out, " is now version ");
	free(out);

	/* One audit entry: the refused change left none. */
	ctl(e, 0, &out, NULL, "--server", e->admin, "policy", "history", "--tenant", "acme",
	    "--json", NULL);
	jlines_parse(out, &jl);
	assert_int_equal(jl.n, 1);
	np = json_object_get(jl_at(&jl, 0), "new_policy");
	assert_int_equal(json_type(np), JSON_OBJECT);
	assert_true(json_number(json_object_get(json_object_get(np, "values"),
	    "cot.threshold")) == 0.99);
	assert_int_equal(jint(jl_at(&jl, 0), "version"), jint(np, "version"));
	jlines_free(&jl);
	free(out);

	ctl(e, 0, &out, NULL, "--server", e->admin, "policy", "get", "--tenant", "acme", NULL);
	assert_true(strncmp(out, "# policy ", 9) == 0);
	contains(out, "\ncot.threshold = 0.99\n");
	free(out);
	/* The global default is unchanged. */
	ctl(e, 0, &out, NULL, "--server", e->admin, "policy", "get", NULL);
	assert_null(strstr(out, "\ncot.threshold = 0.99\n"));
	contains(out, "\ncot.threshold = ");
	free(out);

	/* An unknown key is a usage error, found before the server is asked. */
	ctl(e, 2, &out, &err, "--server", e->admin, "policy", "set", "nosuchkey=1", NULL);
	contains(err, "nosuchkey");
	assert_string_equal(out, "");
	free(out);
	free(err);
	ctl(e, 2, NULL, &err, "--server", "127.0.0.1:1", "policy", "set", "nosuchkey=1", NULL);
	free(err);
}

/* worker list / drain / drain --undo / rm. */
static void
test_workers(void **state)
{
	struct env *e = *state;
	char *out, *err, expect[200];
	struct jlines jl;

	HARNESS_NEED_TRACES(e);
	start(e, "0");
	wait_worker_state(e, e->waddr, "up");

	ctl(e, 0, &out, NULL, "--server", e->admin, "worker", "list", "--json", NULL);
	jlines_parse(out, &jl);
	assert_int_equal(jl.n, 1);
	assert_string_equal(jstr(jl_at(&jl, 0), "address"), e->waddr);
	assert_string_equal(jstr(jl_at(&jl, 0), "state"), "up");
	assert_string_equal(jstr(jl_at(&jl, 0), "engine"), "replay");
	assert_int_equal(jint(jl_at(&jl, 0), "active"), 0);
	assert_true(jint(jl_at(&jl, 0), "capacity") > 0);
	assert_true(jint(jl_at(&jl, 0), "last_seen_unix_ms") > 0);
	jlines_free(&jl);
	free(out);

	ctl(e, 0, &out, NULL, "--server", e->admin, "worker", "drain", e->waddr, NULL);
	snprintf(expect, sizeof expect, "worker %s: draining\n", e->waddr);
	assert_string_equal(out, expect);
	free(out);
	ctl(e, 0, &out, NULL, "--server", e->admin, "worker", "list", NULL);
	contains(out, "ADDRESS");
	contains(out, e->waddr);
	contains(out, "draining");
	free(out);
	wait_worker_state(e, e->waddr, "draining");

	ctl(e, 0, &out, NULL, "--server", e->admin, "worker", "drain", e->waddr, "--undo", NULL);
	snprintf(expect, sizeof expect, "worker %s: ", e->waddr);
	contains(out, expect);
	assert_null(strstr(out, "draining"));
	free(out);
	wait_worker_state(e, e->waddr, "up");

	ctl(e, 1, &out, &err, "--server", e->admin, "worker", "rm", "127.0.0.1:1", NULL);
	contains(err, "NOT_FOUND");
	assert_string_equal(out, "");
	free(out);
	free(err);
	/* Still there. */
	wait_worker_state(e, e->waddr, "up");
}

/* Reads the file at path until it holds a line starting with prefix (15 s at most). */
static void
wait_for_line(const char *path, const char *prefix)
{
	char *s, *hit;
	int i;

	for (i = 0; i < 1500; i++) {
		if (harness_read_file(path, &s) == 0) {
			hit = strstr(s, prefix);
			if (hit != NULL && (hit == s || hit[-1] == '\n') && strchr(hit, '\n')) {
				free(s);
				return;
			}
			free(s);
		}
		usleep(10000);
	}
	fail_msg("no line starting with \"%s\" in %s", prefix, path);
}

/* Ctrl-C while following: exit 130 with a hint; the program keeps running and `watch` follows
 * it to its end. */
static void
test_interrupt_then_watch(void **state)
{
	struct env *e = *state;
	char key[256], id[128], hint[300], prefix[140], opath[700], epath[700];
	char *argv[CTL_MAX_ARGS + 2], *out, *err;
	struct harness_proc *p;
	const char *a;
	int st;

	HARNESS_NEED_TRACES(e);
	start(e, "50");
	add_tenant(e, "acme", "1", key, sizeof key);

	argv[0] = e->bin;
	argv[1] = (char *)"--server";
	argv[2] = e->server;
	argv[3] = (char *)"--token";
	argv[4] = key;
	argv[5] = (char *)"submit";
	argv[6] = (char *)e->it.tr->problem;
	argv[7] = (char *)"--watch";
	argv[8] = NULL;
	p = ctl_spawn(e, opath, epath, sizeof opath, argv);
	wait_for_line(opath, "[p-");
	assert_int_equal(harness_signal(p, SIGINT), 0);
	st = ctl_finish(p, argv, opath, epath, &out, &err);
	if (st != 130) {
		ctl_dump(argv, out, err, st);
		fail_msg("interrupted submit exited with %d, expected 130", st);
	}
	/* "accepted: ID", then progress lines "[ID] tokens=... certaindex=... answers: ...". */
	assert_true(strncmp(out, "accepted: p-", 12) == 0);
	a = out + strlen("accepted: ");
	snprintf(id, sizeof id, "%.*s", (int)strcspn(a, "\n"), a);
	snprintf(prefix, sizeof prefix, "\n[%s] tokens=", id);
	contains(out, prefix);
	contains(out, " answers: #0 ");
	assert_null(strstr(out, "\nanswer: "));         /* no result: it was interrupted */
	snprintf(hint, sizeof hint, "certactl --server %s watch %s", e->server, id);
	contains(err, "interrupted");
	contains(err, hint);
	free(out);
	free(err);

	/* The program keeps running; watch follows it to the end. */
	ctl(e, 0, &out, NULL, "--server", e->server, "--token", key, "watch", id, NULL);
	contains(out, "answer: ");
	a = strstr(out, "answer: ");
	assert_true(a == out || a[-1] == '\n');
	{
		char ans[512];
		size_t n = strcspn(a + 8, " \n");

		/* "answer: A  reason: R ..." */
		snprintf(ans, sizeof ans, "%.*s", (int)n, a + 8);
		if (strstr(a, "reason: natural_end") != NULL)
			assert_true(answer_equivalent(ans, e->it.tr->final_answer));
		else
			contains(a, "reason: certain");
	}
	free(out);
	ctl(e, 0, &out, NULL, "--server", e->server, "--token", key, "--json", "get", id, NULL);
	contains(out, "\"state\":\"finished\"");
	free(out);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_help_usage_unavailable, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tenant_and_keys, setup, teardown),
		cmocka_unit_test_setup_teardown(test_submit_get_list_stats_top, setup, teardown),
		cmocka_unit_test_setup_teardown(test_exit_codes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_policy, setup, teardown),
		cmocka_unit_test_setup_teardown(test_workers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_interrupt_then_watch, setup, teardown),
	};
	int rc;

	/* certactl reads these; the runs here pass everything on the command line. */
	unsetenv("CERTA_SERVER");
	unsetenv("CERTA_TOKEN");
	unsetenv("CERTA_ADMIN_TOKEN");
	grpc_init();
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	grpc_shutdown();
	return rc;
}
