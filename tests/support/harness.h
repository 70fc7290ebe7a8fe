/*
 * harness.h — integration-test support: start the real certa binaries as child processes, wait
 * for them with hard timeouts, and never leave one behind.
 *
 * Processes.  harness_spawn() forks and execs a binary in its own process group with stdout and
 * stderr appended to a log file.  Every spawned process is recorded in a small registry; a safety
 * net (installed by the first harness_spawn(), or explicitly by harness_init()/harness_alarm())
 * kills the process group of every registered process with SIGKILL when the test binary exits
 * (atexit), when it receives SIGTERM/SIGINT/SIGHUP/SIGQUIT (e.g. from tests/run.sh's timeout),
 * and when the alarm set by harness_alarm() fires (a test that hangs).  Children also get
 * PR_SET_PDEATHSIG(SIGKILL), so even a SIGKILLed test binary leaves nothing running.  Nothing in
 * this module ever blocks without a timeout.
 *
 * Binaries.  harness_bin(name) is "$BUILD/bin/NAME": BUILD is the environment variable the
 * Makefile passes to tests/run.sh (e.g. build/asan), "build" when unset or empty; a relative
 * BUILD is relative to the current directory (the repository root under make).
 *
 * Errors: functions return 0 or a negative code from lib/error.h (-errno, CERTA_ETIMEOUT when a
 * wait ran out, CERTA_EUNAVAIL when a child exited before it was ready).  Out-parameters are
 * written only on success.
 *
 * Threads: main thread only (the registry is not locked; the signal handlers only read it).
 */
#ifndef CERTA_TESTS_SUPPORT_HARNESS_H
#define CERTA_TESTS_SUPPORT_HARNESS_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct harness_proc;
struct harness_trace;
struct traces;
struct trace;

/* Installs the safety net (atexit handler and signal handlers for SIGALRM, SIGTERM, SIGINT,
 * SIGHUP, SIGQUIT).  Idempotent; harness_spawn() and harness_alarm() call it. */
void harness_init(void);

/* Arms a hard timeout for the running test: after `seconds` every registered process group is
 * SIGKILLed, a line naming the timeout goes to stderr and the test binary dies of SIGALRM.
 * 0 disarms it.  Replaces any earlier alarm (use one per test, in its setup). */
void harness_alarm(unsigned seconds);

/* "$BUILD/bin/NAME" (see above) in a new malloc'd string the caller frees; NULL if out of
 * memory.  Does not check that the file exists. */
char *harness_bin(const char *name);

/* Creates a fresh private directory "$TMPDIR/certa-itest.XXXXXX" ("/tmp" when TMPDIR is unset)
 * and stores its malloc'd path in *out (caller frees; remove it with harness_rmrf()).  Returns 0
 * or -errno. */
int harness_tmpdir(char **out);

/* Removes path and everything below it (does not follow symbolic links).  A missing path is
 * not an error.  Returns 0 or the -errno of the first failure (it keeps removing the rest). */
int harness_rmrf(const char *path);

/*
 * Starts argv[0] (a path; no PATH search) with arguments argv (NULL-terminated) in a new process
 * group, stdin from /dev/null and stdout+stderr appended to log_path (created 0644 if needed).
 * On success stores a handle in *out, owned by the caller and released with
 * harness_proc_free().  A failing exec is reported in the log ("exec ...: reason") and shows as
 * exit status 127.  Returns 0, -ENOMEM, -EMFILE (registry full) or the -errno of open/fork.
 */
int harness_spawn(struct harness_proc **out, const char *log_path, char *const argv[]);

/*
 * As harness_spawn(), for commands whose output a test reads: stdout goes to out_path and
 * stderr to err_path (each created 0644 or truncated; NULL err_path: both to out_path), stdin
 * is /dev/null.  The process is registered with the safety net like any other;
 * harness_log_path() is out_path.  Wait for it with harness_wait_exit() (and harness_kill9()
 * when it runs too long).  Returns 0 or an error of harness_spawn().
 */
int harness_spawn_io(struct harness_proc **out, const char *out_path, const char *err_path,
    char *const argv[]);

/* The child's pid (also its process group id) and its log path (owned by p). */
pid_t harness_pid(const struct harness_proc *p);
const char *harness_log_path(const struct harness_proc *p);

/* Sends sig to the process (not its group).  Returns 0, -ESRCH if it has already been reaped
 * by harness_wait_exit(), or -errno of kill(2). */
int harness_signal(struct harness_proc *p, int sig);

/* Waits up to timeout_ms for the process to exit and reaps it; *status gets the raw wait
 * status (WIFEXITED/WEXITSTATUS...).  After the first success it keeps returning the same
 * status.  Returns 0, CERTA_ETIMEOUT (still running; nothing changed) or -errno of waitpid. */
int harness_wait_exit(struct harness_proc *p, int timeout_ms, int *status);

/* Nonzero while the process has not been seen to exit (reaps it if it just did). */
int harness_running(struct harness_proc *p);

/* SIGKILLs the whole process group and reaps the process (waits at most 5 s).  Returns 0 or
 * CERTA_ETIMEOUT if it could not be reaped.  Safe on an already-exited process. */
int harness_kill9(struct harness_proc *p);

/* Kills the process group if the process is still running (harness_kill9), unregisters it and
 * frees p.  NULL is a no-op. */
void harness_proc_free(struct harness_proc *p);

/* Prints the process's log to stderr between marker lines (the last 64 KiB if it is longer);
 * for test teardown on failure. */
void harness_dump_log(const struct harness_proc *p);

/* Reads the whole file at path into a new NUL-terminated malloc'd string (caller frees) and
 * stores it in *out.  Returns 0 or -errno. */
int harness_read_file(const char *path, char **out);

/* Polls path (every 10 ms, up to timeout_ms) until it exists and holds "PORT\n" with a port in
 * 1..65535 (the binaries write it atomically after they listen; see proc_write_port_file) and
 * stores the port in *port.  Returns 0, CERTA_ETIMEOUT or CERTA_EINVAL (the file exists but
 * does not hold a port). */
int harness_wait_port_file(const char *path, int timeout_ms, int *port);

/*
 * Starts "certa-worker --listen 127.0.0.1:0 --port-file DIR/wN.port --engine replay
 * --traces TRACES_DIR [extra...]" (N counts workers started by this test binary; the log is
 * DIR/wN.log), waits for the port file and then until a Worker.Info call with a 1 s deadline
 * succeeds, 20 s at most in all.  extra is a NULL-terminated list of additional arguments, or
 * NULL.  On success stores the process (caller frees with harness_proc_free) and its port.
 * On failure the log is dumped to stderr, the process is killed, and it returns
 * CERTA_EUNAVAIL (it exited), CERTA_ETIMEOUT, CERTA_EINVAL (bad port file) or a spawn error.
 * Needs grpc_init().
 */
int harness_start_worker(const char *dir, const char *traces_dir, const char *const extra[],
    struct harness_proc **proc, int *port);

/*
 * Spawns "certad ARGS..." with its log appended to DIR/d.log, after removing a stale
 * DIR/d.port (a restart must not read the previous port).  args is a NULL-terminated list, or
 * NULL.  On success stores the process (caller frees with harness_proc_free); the caller then
 * waits for it with harness_wait_certad().  Returns 0, -ENOMEM or a harness_spawn() error.
 */
int harness_spawn_certad(const char *dir, const char *const args[], struct harness_proc **out);

/* Waits up to 20 s for certad's port file DIR/d.port, giving up early when d exits, and
 * stores the port in *port.  On failure d's log is dumped to stderr (d is left running; the
 * caller frees it) and it returns CERTA_ETIMEOUT, CERTA_EUNAVAIL (it exited) or CERTA_EINVAL
 * (bad port file). */
int harness_wait_certad(const char *dir, struct harness_proc *d, int *port);

/*
 * Starts "certad --listen 127.0.0.1:0 --state-dir DIR/state --port-file DIR/d.port
 * [--worker 127.0.0.1:P for each of the nworkers ports in wports] [--set S for each S of sets]
 * [extra...]" with harness_spawn_certad() and waits for it with harness_wait_certad().  sets
 * ("key=value") and extra are NULL-terminated lists, or NULL.  On success stores the process
 * (caller frees with harness_proc_free) and its gRPC port.  On failure the log has been dumped,
 * the process is killed and freed, and it returns an error of those two functions.
 */
int harness_start_certad(const char *dir, const int wports[], size_t nworkers,
    const char *const sets[], const char *const extra[], struct harness_proc **out, int *port);

/* getenv("CERTA_TRACES") when it names a directory, else NULL (tests then skip()). */
const char *harness_traces_dir(void);

/* For cmocka tests whose setup leaves the state NULL when harness_traces_dir() is NULL: skips
 * the running test, saying why, when x is NULL.  Needs <cmocka.h>. */
#define HARNESS_NEED_TRACES(x) do { \
	if ((x) == NULL) { \
		print_message("skipped: set CERTA_TRACES to the recorded traces directory\n"); \
		skip(); \
	} \
} while (0)

/* The repository's demo traces (data/traces-demo; unit tests run from the source tree),
 * loaded at warning log level into *out: 0, -ENOENT when the directory is not there (tests
 * then skip), else traces_load()'s error. */
int harness_demo_traces(struct traces **out);

/* Sets tr to the demo traces (harness_demo_traces), skipping the running test when they are
 * not there and failing it when they do not load.  Needs <cmocka.h>. */
#define HARNESS_DEMO_TRACES(tr) do { \
	int harness_rc_ = harness_demo_traces(&(tr)); \
	if (harness_rc_ == -ENOENT) { \
		print_message("data/traces-demo not found (run from the source tree): skipping\n"); \
		skip(); \
	} \
	assert_int_equal(harness_rc_, 0); \
} while (0)

/*
 * The common start of an integration test: arms harness_alarm(timeout_s), creates a fresh
 * directory (harness_tmpdir) and, when tr is not NULL, picks the first usable "math500" problem
 * of the default model from harness_traces_dir() (harness_trace_pick).  On success stores the
 * directory (and the trace) for harness_fixture_teardown().  Returns 0, a harness_tmpdir() or
 * harness_trace_pick() error (nothing is left behind then), or CERTA_ENOTFOUND when a trace is
 * wanted and CERTA_TRACES names no directory.
 */
int harness_fixture_setup(unsigned timeout_s, char **dir, struct harness_trace **tr);

/* The common end: frees tr (NULL is fine), removes dir and everything below it, frees dir
 * (NULL is fine) and disarms the alarm.  Free the processes first (harness_proc_free). */
void harness_fixture_teardown(char *dir, struct harness_trace *tr);

/* Writes a file from a printf format (created 0644 or truncated).  Returns 0 or -errno. */
int harness_write_file(const char *path, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Runs a shell command made from a printf format with system(3); returns its exit status, or
 * -1 when it did not exit normally.  The command is cut at 4095 bytes. */
int harness_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Runs fn(arg) in a forked child with stderr on /dev/null and SIGABRT at its default action
 * (a test framework may catch it): 1 when the child died of SIGABRT (an always-on assertion,
 * abort()), 0 when it ended otherwise, -errno when it could not be run. */
int harness_aborts(void (*fn)(void *arg), void *arg);

/* A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, read, closed); another
 * process may take it before the caller does.  Returns the port, or -errno. */
int harness_free_port(void);

/* HTTP/1.0 GET of PATH on 127.0.0.1:PORT (the metrics endpoint): the status code (-1 when the
 * connection failed), the body (cut to len - 1 bytes) in buf. */
int harness_http_get(int port, const char *path, char *buf, size_t len);

/* The value of the Prometheus sample SERIES (the name with its labels exactly as exposed,
 * e.g. `certa_tokens_generated_total{tenant="a"}`) from /metrics on 127.0.0.1:PORT, or -1
 * when the scrape failed or the sample is absent. */
double harness_metric(int port, const char *series);

/* CLOCK_MONOTONIC in microseconds, for benches. */
double harness_clock_us(void);

/* Sorts v[0..n) ascending in place and returns its p-quantile (0 <= p <= 1, nearest rank:
 * v[round(p * (n - 1))]); 0 when n is 0. */
double harness_percentile(double *v, size_t n, double p);

/* One recorded problem picked for a test.  All pointers point into `set`. */
struct harness_trace {
	struct traces *set;         /* the whole loaded set (owned by this struct) */
	const char *model;
	const char *dataset;
	const char *problem;        /* the exact problem text (the prompt to send) */
	const char *final_answer;   /* of sample 0 (lowest seed) */
	uint64_t tokens_used;       /* of sample 0 */
	size_t nsamples;            /* samples recorded, one per seed */
	const struct trace *const *samples; /* ordered by seed ascending */
};

/*
 * Loads the traces of dir (lib/traces) and picks the first problem, in program order, of model
 * (NULL or "": the first model in strcmp order, the replay engine's default) in dataset (e.g.
 * "math500") that makes a useful test case: at least two samples, pairwise different texts, and
 * for sample 0 a non-empty final answer, at least one probe and a thinking section that closes.
 * On success stores a new struct in *out (free with harness_trace_free).  Returns 0, the error
 * of traces_load(), or CERTA_ENOTFOUND when no problem qualifies.
 */
int harness_trace_pick(const char *dir, const char *model, const char *dataset,
    struct harness_trace **out);
void harness_trace_free(struct harness_trace *ht);

#endif
